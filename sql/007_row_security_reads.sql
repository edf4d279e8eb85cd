-- 007: the read policies of 005, rewritten so that PostgreSQL evaluates the
-- reader once per statement, not once per row. 005 called a PL/pgSQL
-- function for every row, which looked up the reader and the record's plan
-- each time (about 0.2 ms a row: a few thousand records a second). Here the
-- reader's mode, organisation and rights are scalar subqueries (InitPlans,
-- computed once), the plan test is a semi-join on plans (whose own policy
-- decides what the reader sees of them) and the record rule is an inlined
-- SQL expression. The rules are the same (docs/authorisation.md); only
-- reads change. Never edit this file once landed.

-- The reader context: 'engine', 'report' (report:<uuid>), 'principal'
-- (<uuid>), or NULL (none, or not of these forms: nothing is visible).
CREATE FUNCTION napsync_rls_reader_mode() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN napsync_rls_reader() = 'engine' THEN 'engine'
        WHEN (SELECT org FROM napsync_rls_reader_actor()) IS NULL THEN NULL
        WHEN napsync_rls_reader() LIKE 'report:%' THEN 'report'
        ELSE 'principal'
    END
$$;

-- The reader principal's organisation (NULL: none).
CREATE FUNCTION napsync_rls_reader_org() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT org FROM napsync_rls_reader_actor()
$$;

-- Whether the reader sees every record of the plans it sees: the engine,
-- the reports, and principals with a role that writes plan content.
CREATE FUNCTION napsync_rls_reader_sees_all() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE napsync_rls_reader_mode()
        WHEN 'engine' THEN true
        WHEN 'report' THEN true
        WHEN 'principal' THEN
            (SELECT roles && ARRAY['coordinator', 'implementer', 'regional']
               FROM napsync_rls_reader_actor())
        ELSE false
    END
$$;

-- What a principal who only reads sees of a record (inlined into the
-- policies): approved reports, no disaggregated values.
CREATE FUNCTION napsync_rls_record_for_readers(p_type text, p_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_type <> 'report_value' AND (p_type <> 'indicator_report' OR p_status = 'approved')
$$;

DROP POLICY revisions_read ON sync_revisions;
CREATE POLICY revisions_read ON sync_revisions FOR SELECT
    USING ((SELECT napsync_rls_reader_mode()) = 'engine'
           OR (tenant_id IN (SELECT p.id FROM plans p)
               AND ((SELECT napsync_rls_reader_sees_all())
                    OR napsync_rls_record_for_readers(entity_type, after ->> 'status'))));

DROP POLICY conflicts_read ON sync_conflicts;
CREATE POLICY conflicts_read ON sync_conflicts FOR SELECT
    USING ((SELECT napsync_rls_reader_mode()) = 'engine'
           OR (tenant_id IN (SELECT p.id FROM plans p)
               AND ((SELECT napsync_rls_reader_sees_all())
                    OR napsync_rls_record_for_readers(entity_type, NULL))));

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT name, table_name FROM sync_entity_types ORDER BY name LOOP
        EXECUTE format('DROP POLICY %I ON %I', t.table_name || '_read', t.table_name);
        IF t.name = 'plan' THEN
            EXECUTE format('CREATE POLICY %I ON %I FOR SELECT USING ('
                           '(SELECT napsync_rls_reader_mode()) = ''engine'''
                           ' OR ((SELECT napsync_rls_reader_mode()) IS NOT NULL'
                           '     AND (status IS DISTINCT FROM ''draft'''
                           '          OR owner_id = (SELECT napsync_rls_reader_org()))))',
                           t.table_name || '_read', t.table_name);
        ELSE
            EXECUTE format('CREATE POLICY %I ON %I FOR SELECT USING ('
                           '(SELECT napsync_rls_reader_mode()) = ''engine'''
                           ' OR (tenant_id IN (SELECT p.id FROM plans p)'
                           '     AND ((SELECT napsync_rls_reader_sees_all())'
                           '          OR napsync_rls_record_for_readers(%L, %s))))',
                           t.table_name || '_read', t.table_name, t.name,
                           CASE WHEN t.name = 'indicator_report' THEN 'status' ELSE 'NULL' END);
        END IF;
    END LOOP;
END $$;

-- 005's per-row read functions, no longer used by any policy.
DROP FUNCTION napsync_rls_may_read(uuid, text, jsonb);
DROP FUNCTION napsync_rls_plan_visible(uuid, text);
