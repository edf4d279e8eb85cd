-- 012: the same checks of a push, at a fraction of their cost. A profile of
-- pushes (docs/benchmarks.md, push throughput) found PostgreSQL spending
-- most of a pushed record's time planning, not checking:
--
--  * napsync_check_references (003, 009) built its queries with EXECUTE
--    format(...) for every reference of every row, planned each time and
--    never cached. Here one trigger function per synced table is generated
--    from the catalogue of references (napsync_references,
--    sync_entity_types) with static queries, which PL/pgSQL plans once per
--    session. Same checks, in the same order, with the same messages,
--    SQLSTATE and column.
--  * The reader helpers of 005/007/009 were SQL functions that PostgreSQL
--    cannot inline (a sub-select, a function in FROM): every statement
--    under a read policy parsed and planned their bodies again, and
--    napsync_rls_may_write's lookup of the plan runs under the plans read
--    policy for every row and revision a push writes. Here the engine's
--    reader (every push) is an inlinable SQL expression and the rest
--    PL/pgSQL, whose plans are kept for the session. Same results.
--
-- A migration that adds a synced type or a reference calls
-- napsync_build_reference_checks() again. Never edit this file once landed.

-- ---- reference checks ----------------------------------------------------------------

-- (Re)creates, for every synced table, the function napsync_refs_<table>
-- and the deferred constraint trigger <table>_references that runs it (the
-- trigger keeps its name, and so its place among the triggers fired at
-- COMMIT). The generated body does what 009's napsync_check_references
-- did for that table: each reference field names a live record of its
-- type (of the same plan where required); a record being deleted is
-- referred to by no live record.
CREATE FUNCTION napsync_build_reference_checks() RETURNS void LANGUAGE plpgsql AS $build$
DECLARE
    t      record;
    r      record;
    v_body text;
    v_fn   text;
BEGIN
    FOR t IN SELECT name, table_name FROM sync_entity_types ORDER BY name LOOP
        v_body := E'DECLARE\n    v_tenant uuid;\n    v_gone boolean;\n    v_n bigint;\nBEGIN\n'
                  '    IF NEW.deleted THEN\n'
                  '        IF TG_OP = ''UPDATE'' AND NOT OLD.deleted THEN\n';
        FOR r IN SELECT f.entity_type, f.field, s.table_name
                   FROM napsync_references f
                   JOIN sync_entity_types s ON s.name = f.entity_type
                  WHERE f.target_type = t.name
                  ORDER BY f.entity_type, f.field LOOP
            v_body := v_body || format(
                E'            SELECT count(*) INTO v_n FROM %I WHERE %I = NEW.id AND NOT deleted;\n'
                '            IF v_n > 0 THEN\n'
                '                PERFORM napsync_invalid(%L, ''deleted'', format(%L, v_n, %L, %L));\n'
                '            END IF;\n',
                r.table_name, r.field, t.name,
                '%s live %s record(s) refer to it through %s; delete or move them first',
                r.entity_type, r.field);
        END LOOP;
        v_body := v_body || E'        END IF;\n        RETURN NULL;\n    END IF;\n';
        FOR r IN SELECT f.field, f.target_type, f.same_plan, s.table_name
                   FROM napsync_references f
                   JOIN sync_entity_types s ON s.name = f.target_type
                  WHERE f.entity_type = t.name
                  ORDER BY f.field LOOP
            v_body := v_body || format(
                E'    IF NEW.%1$I IS NOT NULL THEN\n'
                '        SELECT tenant_id, deleted INTO v_tenant, v_gone FROM %2$I WHERE id = NEW.%1$I;\n'
                '        IF v_tenant IS NULL THEN\n'
                '            PERFORM napsync_invalid(%3$L, %4$L, format(''no %%s %%s'', %5$L, NEW.%1$I));\n'
                '        ELSIF v_gone THEN\n'
                '            PERFORM napsync_invalid(%3$L, %4$L, format(''%%s %%s is deleted'', %5$L, NEW.%1$I));\n'
                '%6$s'
                '        END IF;\n'
                '    END IF;\n',
                r.field, r.table_name, t.name, r.field, r.target_type,
                CASE WHEN r.same_plan THEN format(
                    E'        ELSIF v_tenant <> NEW.tenant_id THEN\n'
                    '            PERFORM napsync_invalid(%L, %L, format(''%%s %%s belongs to another plan'', %L, NEW.%I));\n',
                    t.name, r.field, r.target_type, r.field)
                ELSE '' END);
        END LOOP;
        v_body := v_body || E'    RETURN NULL;\nEND';
        v_fn := 'napsync_refs_' || t.table_name;
        EXECUTE format('CREATE OR REPLACE FUNCTION %I() RETURNS trigger LANGUAGE plpgsql AS %L',
                       v_fn, v_body);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t.table_name || '_references', t.table_name);
        EXECUTE format('CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE ON %I'
                       ' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %I()',
                       t.table_name || '_references', t.table_name, v_fn);
    END LOOP;
END $build$;

SELECT napsync_build_reference_checks();

-- 009's generic version, no longer run by any trigger: one implementation only.
DROP FUNCTION napsync_check_references();

-- ---- the reader helpers, as PL/pgSQL -------------------------------------------------------

-- 005's reader principal's organisation and roles (NULL org: no principal).
CREATE OR REPLACE FUNCTION napsync_rls_reader_actor(OUT org uuid, OUT roles text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT a.org, a.roles INTO org, roles FROM napsync_rls_actor(
        (SELECT m[1]::uuid FROM regexp_match(napsync_rls_reader(),
            '^(?:report:)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$') AS m)) a;
END $$;

-- 007's reader mode: 'engine', 'report', 'principal' or NULL. The engine's
-- case, that of every push, is an inlinable SQL expression (a setting
-- compared, no function call); the others look the reader up in PL/pgSQL.
CREATE FUNCTION napsync_rls_reader_mode_other() RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (SELECT org FROM napsync_rls_reader_actor()) IS NULL THEN
        RETURN NULL;
    END IF;
    IF napsync_rls_reader() LIKE 'report:%' THEN
        RETURN 'report';
    END IF;
    RETURN 'principal';
END $$;

CREATE OR REPLACE FUNCTION napsync_rls_reader_mode() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN napsync_rls_reader() = 'engine' THEN 'engine'
                ELSE napsync_rls_reader_mode_other() END
$$;

-- 007's reader organisation.
CREATE OR REPLACE FUNCTION napsync_rls_reader_org() RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT org FROM napsync_rls_reader_actor());
END $$;

-- 007's "sees every record of the plans it sees": the engine, the reports,
-- and principals with a role that writes plan content.
CREATE OR REPLACE FUNCTION napsync_rls_reader_sees_all() RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_mode text := napsync_rls_reader_mode();
BEGIN
    IF v_mode IN ('engine', 'report') THEN
        RETURN true;
    END IF;
    IF v_mode = 'principal' THEN
        RETURN (SELECT roles && ARRAY['coordinator', 'implementer', 'regional']
                  FROM napsync_rls_reader_actor());
    END IF;
    RETURN false;
END $$;

-- 009's "the reader is an administrator".
CREATE OR REPLACE FUNCTION napsync_rls_reader_is_admin() RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((SELECT 'admin' = ANY (roles) FROM napsync_rls_reader_actor()), false);
END $$;
