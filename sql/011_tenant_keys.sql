-- 011: every table that would be distributed by Citus is keyed by its
-- distribution column (docs/scaling.md). Citus places each row on the
-- shard of its distribution column's value and can enforce a primary key,
-- a unique constraint or a foreign key only when it includes that column
-- (for a foreign key, on both sides and paired), since each shard checks
-- its own rows only. The plan-content tables, sync_revisions and
-- sync_conflicts are distributed by tenant_id, the plan (co-located: one
-- plan's records, revisions and conflicts on one shard); sync_mutations by
-- its own key, mutation_id; the directory tables (tenant: a constant,
-- sql/009) and the vocabularies become reference tables, copied to every
-- node; the feed and its head stay on the coordinator. What the plan
-- needs of the schema is checked by tests/integration/test_citus_ready.c.
--
-- A record is still named by its entity type and id alone (the protocol,
-- the merge, the references between records): every table keeps an index
-- on id, so that lookups by id stay index scans, and a deferred check
-- below keeps an id unique within its type across plans, which the
-- primary key no longer says. Rewrites the indexes of these tables: on a
-- large database, take a backup and allow for the time. Never edit this
-- file once landed.

-- ---- ids unique within their type -------------------------------------------------------

-- At COMMIT, after the engine's feed statement took sync_feed_head's row
-- lock (held until COMMIT, sql/002): every transaction that writes through
-- the engine runs this check after the ones before it have committed, so
-- two creates of one id in two plans, racing through two daemons, cannot
-- both pass; the second is refused with unique_violation, as the primary
-- key on id alone refused it before. (Reads under the writer's reader
-- context, as sql/003's checks do: the engine reads everything.)

-- The refusal.
CREATE FUNCTION napsync_id_taken(p_table text, p_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_type text;
BEGIN
    SELECT name INTO v_type FROM sync_entity_types WHERE table_name = p_table;
    -- The other plan is not named: the writer may not be allowed to read it.
    RAISE EXCEPTION '%.id: % is the id of a record of another plan', v_type, p_id
        USING ERRCODE = 'unique_violation', COLUMN = 'id', TABLE = p_table;
END $$;

-- Gives table p_table (a synced type keyed by (tenant_id, id)) the check:
-- a trigger function of its own, whose query PL/pgSQL plans once per
-- session (a query built per row would be planned per row), and the
-- deferred trigger. For every synced type keyed this way, later ones too
-- (tests/integration/test_citus_ready.c looks for the trigger).
CREATE FUNCTION napsync_keep_ids_unique(p_table text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE FUNCTION %I() RETURNS trigger LANGUAGE plpgsql AS %L',
                   'napsync_id_unique_' || p_table,
                   format('
BEGIN
    IF EXISTS (SELECT 1 FROM %I WHERE id = NEW.id AND tenant_id <> NEW.tenant_id) THEN
        PERFORM napsync_id_taken(%L, NEW.id);
    END IF;
    RETURN NULL;
END', p_table, p_table));
    EXECUTE format('CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE OF id, tenant_id ON %I'
                   ' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %I()',
                   p_table || '_id_unique', p_table, 'napsync_id_unique_' || p_table);
END $$;

-- ---- plan content: (tenant_id, id) ------------------------------------------------------

-- A plan is its own tenant (the engine sets tenant_id to the plan's id),
-- which is what places a plan on the shard of its content.
ALTER TABLE plans ADD CONSTRAINT plans_own_tenant CHECK (tenant_id = id);

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT table_name FROM sync_entity_types WHERE NOT directory ORDER BY name LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t.table_name, t.table_name || '_pkey');
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (tenant_id, id)',
                       t.table_name, t.table_name || '_pkey');
        -- The engine, the checks and the reports look records up by id.
        EXECUTE format('CREATE INDEX %I ON %I (id)', t.table_name || '_id_idx', t.table_name);
        -- The primary key's leading column serves what this index did.
        EXECUTE format('DROP INDEX IF EXISTS %I', t.table_name || '_tenant_idx');
        PERFORM napsync_keep_ids_unique(t.table_name);
    END LOOP;
END $$;

-- ---- the engine's tables ----------------------------------------------------------------

-- Revisions: with their record, by plan. History (daemon/history.c) looks
-- a record's revisions up by its id alone, newest first.
ALTER TABLE sync_revisions DROP CONSTRAINT sync_revisions_pkey;
ALTER TABLE sync_revisions ADD CONSTRAINT sync_revisions_pkey
    PRIMARY KEY (tenant_id, entity_type, record_id, version);
CREATE INDEX sync_revisions_record_idx ON sync_revisions (record_id, version);

-- Conflicts: with their record, by plan; found by id when resolved.
ALTER TABLE sync_conflicts DROP CONSTRAINT sync_conflicts_pkey;
ALTER TABLE sync_conflicts ADD CONSTRAINT sync_conflicts_pkey PRIMARY KEY (tenant_id, id);
CREATE INDEX sync_conflicts_id_idx ON sync_conflicts (id);

-- sync_mutations keeps its key, mutation_id, and is distributed by it:
-- an answer is looked up by mutation id alone (a mutation sent again,
-- rejected ones included, which may name no plan at all).
-- sync_feed and sync_feed_head keep theirs: they stay on one node, where
-- the head's row lock orders every commit (docs/scaling.md, "The feed").

-- ---- the reports: joins within a plan say so --------------------------------------------

-- 006's functions with the plan added to the joins between records of one
-- plan, so that they use the primary keys and stay on one shard. Same
-- results: those records share their plan.
CREATE OR REPLACE FUNCTION napsync_report_values(p_plans uuid[])
RETURNS TABLE (report_id uuid, indicator_id uuid, period_start date, period_end date,
               value numeric, value_text text)
LANGUAGE sql STABLE AS $$
    SELECT r.id, r.indicator_id, r.period_start, r.period_end, r.value, r.value_text
      FROM indicator_reports r
     WHERE r.tenant_id = ANY (p_plans) AND r.status = 'approved' AND NOT r.deleted
       AND NOT EXISTS (SELECT 1 FROM indicator_reports c
                        WHERE c.tenant_id = r.tenant_id
                          AND c.indicator_id = r.indicator_id AND c.id <> r.id
                          AND c.period_start = r.period_start AND c.period_end = r.period_end
                          AND c.status = 'approved' AND NOT c.deleted
                          AND napsync_report_corrects(c.id, r.id))
$$;

CREATE OR REPLACE FUNCTION napsync_report_schedule(p_plan uuid, p_as_of date)
RETURNS TABLE (indicator_id uuid, responsible_id uuid, period_start date, period_end date,
               due date, first_submitted timestamptz, status text)
LANGUAGE sql STABLE AS $$
    SELECT i.id, i.responsible_id, e.period_start, e.period_end, napsync_report_due(e.period_end),
           coalesce(f.first_at, s.changed_at),
           CASE WHEN s.reported
                     AND (coalesce(f.first_at, s.changed_at) AT TIME ZONE 'UTC')::date
                         <= napsync_report_due(e.period_end) THEN 'on_time'
                WHEN s.reported THEN 'late'
                WHEN p_as_of > napsync_report_due(e.period_end) THEN 'overdue'
                ELSE 'pending' END
      FROM plans p
      JOIN indicators i ON i.tenant_id = p.id AND NOT i.deleted
      CROSS JOIN LATERAL napsync_report_periods(i.frequency, p.period_start, p.period_end) e
      CROSS JOIN LATERAL (
          SELECT coalesce(bool_or(r.status IN ('submitted', 'approved')), false) AS reported,
                 min(r.changed_at) FILTER (WHERE r.status IN ('submitted', 'approved')) AS changed_at
            FROM indicator_reports r
           WHERE r.tenant_id = i.tenant_id AND r.indicator_id = i.id AND NOT r.deleted
             AND r.period_start = e.period_start AND r.period_end = e.period_end) s
      CROSS JOIN LATERAL (
          SELECT min(v.at) AS first_at
            FROM indicator_reports r
            JOIN sync_revisions v ON v.tenant_id = r.tenant_id
                                 AND v.entity_type = 'indicator_report' AND v.record_id = r.id
           WHERE s.reported AND r.tenant_id = i.tenant_id AND r.indicator_id = i.id
             AND NOT r.deleted
             AND r.period_start = e.period_start AND r.period_end = e.period_end
             AND v.after ->> 'status' IN ('submitted', 'approved')) f
     WHERE p.tenant_id = p_plan AND p.id = p_plan
$$;
