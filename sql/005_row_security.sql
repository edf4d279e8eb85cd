-- 005: row-level security, the database's own check of docs/authorisation.md
-- (the daemon decides first, in daemon/policy.c; this is defence in depth,
-- written independently, so that a fault in the daemon's code cannot read
-- or write what the rules forbid).
--
-- Writes: every revision (sync_revisions, one per change, with its principal,
-- before and after) must be one its principal may make, step by step, the
-- reporting workflow included; every row of a synced table must be one its
-- last author (changed_by) may hold. Reads: every row of a synced table, of
-- sync_revisions and of sync_conflicts is visible only under a reader
-- context the daemon sets per statement or transaction:
--   napsync.reader = '<principal uuid>'  what that principal may read;
--   napsync.reader = 'report:<uuid>'     the plans that principal may read,
--                                        every record of them: the
--                                        server-computed reports, which
--                                        publish approved figures only but
--                                        count submissions to do so;
--   napsync.reader = 'engine'            the sync engine's own transactions,
--                                        which read records to merge them;
--   unset or empty                       nothing.
-- Superusers and roles with BYPASSRLS are not subject to any of this: the
-- daemon must connect as an ordinary role (the database's owner; FORCE makes
-- the owner subject too). Never edit this file once landed.

-- The organisation and roles of a principal (roles in its own organisation).
CREATE FUNCTION napsync_rls_actor(p_principal uuid, OUT org uuid, OUT roles text[])
LANGUAGE sql STABLE AS $$
    SELECT p.organisation_id,
           coalesce(array_agg(r.role) FILTER (WHERE r.role IS NOT NULL), '{}')
      FROM principals p
      LEFT JOIN principal_roles r ON r.principal_id = p.id AND r.organisation_id = p.organisation_id
     WHERE p.id = p_principal
     GROUP BY p.organisation_id
$$;

-- The plan kinds a role set keeps as owner.
CREATE FUNCTION napsync_rls_keeps(p_roles text[], p_kind text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT ('coordinator' = ANY (p_roles) AND p_kind IN ('nap', 'local', 'implementation'))
        OR ('implementer' = ANY (p_roles) AND p_kind IN ('implementation', 'local'))
        OR ('regional' = ANY (p_roles) AND p_kind = 'rap')
$$;

-- The organisation delegated rights of a record follow: an action's lead,
-- a budget line's action's lead, an indicator's responsible organisation, a
-- report's indicator's, a disaggregated value's report's indicator's.
CREATE FUNCTION napsync_rls_responsible(p_type text, p_row jsonb) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT CASE p_type
        WHEN 'action' THEN (p_row ->> 'lead_org_id')::uuid
        WHEN 'budget_line' THEN
            (SELECT a.lead_org_id FROM actions a WHERE a.id = (p_row ->> 'action_id')::uuid)
        WHEN 'indicator_report' THEN
            (SELECT i.responsible_id FROM indicators i WHERE i.id = (p_row ->> 'indicator_id')::uuid)
        WHEN 'report_value' THEN
            (SELECT i.responsible_id FROM indicator_reports r JOIN indicators i ON i.id = r.indicator_id
              WHERE r.id = (p_row ->> 'report_id')::uuid)
    END
$$;

-- Whether principal p may make one change of a record of type p_type in
-- plan p_tenant: p_op as in sync_revisions ('create', 'update', 'delete',
-- 'resolve'; 'row' for a synced table's row, whose earlier state is not
-- known), p_before and p_after its fields (NULL when none).
CREATE FUNCTION napsync_rls_may_write(p uuid, p_type text, p_tenant uuid, p_op text,
                                      p_before jsonb, p_after jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    a           record;
    v_plan      record;
    v_pl_owner  uuid;
    v_pl_kind   text;
    v_pl_status text;
    v_owner     boolean;
    v_writer boolean;
    v_from   text;
    v_to     text;
    v_resp   uuid;
    v_deleg  boolean;
    v_keys   text[];
BEGIN
    SELECT * INTO a FROM napsync_rls_actor(p);
    IF a.org IS NULL THEN
        RETURN false;
    END IF;
    IF p_op = 'resolve' THEN
        -- Conflicts are resolved by the plan's owner writers.
        RETURN EXISTS (SELECT 1 FROM plans WHERE id = p_tenant AND owner_id = a.org
                          AND napsync_rls_keeps(a.roles, kind));
    END IF;
    IF p_type = 'plan' THEN
        IF p_op IN ('create', 'row') THEN
            -- A plan is held by its owner's writers; a row's earlier state
            -- is on its revision (checked there).
            RETURN (p_after ->> 'owner_id')::uuid = a.org
               AND napsync_rls_keeps(a.roles, p_after ->> 'kind');
        END IF;
        v_pl_owner := (p_before ->> 'owner_id')::uuid;
        v_pl_kind := p_before ->> 'kind';
        v_pl_status := p_before ->> 'status';
        IF v_pl_status = 'archived' AND p_after IS NOT NULL
           AND (p_before - 'status') IS DISTINCT FROM (p_after - 'status') THEN
            RETURN false;
        END IF;
        RETURN v_pl_owner = a.org
           AND napsync_rls_keeps(a.roles, v_pl_kind)
           AND (p_after IS NULL OR (p_after ->> 'owner_id')::uuid = a.org)
           AND (p_op <> 'delete' OR v_pl_status = 'draft');
    END IF;

    SELECT owner_id, kind, status INTO v_plan FROM plans WHERE id = p_tenant;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    v_owner := v_plan.owner_id = a.org;
    IF NOT v_owner AND v_plan.status = 'draft' THEN
        RETURN false;
    END IF;
    IF v_plan.status = 'archived' THEN
        RETURN false;
    END IF;
    v_writer := v_owner AND napsync_rls_keeps(a.roles, v_plan.kind);

    IF p_type = 'comment' THEN
        IF p_op = 'delete' THEN
            RETURN v_writer OR (p_before ->> 'author_id')::uuid = p;
        END IF;
        RETURN (p_after ->> 'author_id')::uuid = p
           AND (p_before IS NULL OR (p_before ->> 'author_id')::uuid = p);
    END IF;

    v_resp := napsync_rls_responsible(p_type, coalesce(p_after, p_before));
    v_deleg := (a.roles && ARRAY['coordinator', 'implementer']) AND v_resp = a.org
               AND (p_before IS NULL OR p_op = 'row'
                    OR napsync_rls_responsible(p_type, p_before) = a.org);

    IF p_type = 'indicator_report' THEN
        v_from := coalesce(p_before ->> 'status', 'draft');
        v_to := coalesce(p_after ->> 'status', v_from);
        IF p_op = 'row' THEN
            -- The row as it ends: approved only by the plan's approver's
            -- revision (checked on sync_revisions); here, who may hold it.
            RETURN v_writer OR v_deleg
                OR (v_owner AND ('coordinator' = ANY (a.roles)
                                 OR ('regional' = ANY (a.roles) AND v_plan.kind = 'rap')));
        END IF;
        IF p_before IS NOT NULL AND v_from = 'approved' THEN
            RETURN false;
        END IF;
        IF v_from = 'submitted' AND v_to IN ('approved', 'returned')
           OR (p_op = 'create' AND v_to = 'approved') THEN
            RETURN v_owner AND ('coordinator' = ANY (a.roles)
                                OR ('regional' = ANY (a.roles) AND v_plan.kind = 'rap'));
        END IF;
        IF p_op = 'create' AND v_to NOT IN ('draft', 'submitted') THEN
            RETURN false;
        END IF;
        IF p_op = 'update' AND v_from <> v_to
           AND NOT ((v_from = 'draft' AND v_to = 'submitted')
                    OR (v_from = 'returned' AND v_to IN ('draft', 'submitted'))
                    OR (v_from = 'submitted' AND v_to = 'draft')) THEN
            RETURN false;
        END IF;
        IF p_op = 'update' AND v_from = 'submitted' AND v_to = 'submitted' THEN
            RETURN false;
        END IF;
        IF p_op = 'delete' AND v_from = 'submitted' THEN
            RETURN false;
        END IF;
        RETURN v_writer OR v_deleg;
    END IF;

    IF v_writer THEN
        RETURN true;
    END IF;
    IF p_type = 'action' AND v_deleg THEN
        IF p_op = 'row' THEN
            RETURN true;
        END IF;
        IF p_op <> 'update' THEN
            RETURN false;
        END IF;
        -- Only the status differs.
        SELECT array_agg(k) INTO v_keys FROM (
            SELECT key AS k FROM jsonb_each(p_before)
            UNION SELECT key FROM jsonb_each(p_after)) ks
         WHERE (p_before -> k) IS DISTINCT FROM (p_after -> k);
        RETURN coalesce(v_keys, '{}') <@ ARRAY['status'];
    END IF;
    RETURN p_type IN ('budget_line', 'report_value') AND v_deleg;
END $$;

-- The reader context (see the head of this file).
CREATE FUNCTION napsync_rls_reader() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('napsync.reader', true), '')
$$;

-- The reader principal's organisation and roles (NULL org: no principal).
CREATE FUNCTION napsync_rls_reader_actor(OUT org uuid, OUT roles text[])
LANGUAGE sql STABLE AS $$
    SELECT a.org, a.roles FROM napsync_rls_actor(
        (SELECT m[1]::uuid FROM regexp_match(napsync_rls_reader(),
            '^(?:report:)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$') AS m)) a
$$;

-- Whether the reader context sees a plan (its own columns only: the
-- policy of plans must not query plans).
CREATE FUNCTION napsync_rls_plan_visible(p_owner uuid, p_status text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN napsync_rls_reader() IS NULL THEN false
        WHEN napsync_rls_reader() = 'engine' THEN true
        ELSE coalesce((SELECT p_owner = a.org OR p_status IS DISTINCT FROM 'draft'
                         FROM napsync_rls_reader_actor() a WHERE a.org IS NOT NULL), false)
    END
$$;

-- Whether the reader context sees a record of type p_type in plan p_tenant
-- whose fields are p_fields (NULL: not needed). The plan is looked up under
-- the plans policy, so an invisible plan hides its records.
CREATE FUNCTION napsync_rls_may_read(p_tenant uuid, p_type text, p_fields jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_reader text := napsync_rls_reader();
    a        record;
BEGIN
    IF v_reader IS NULL THEN
        RETURN false;
    END IF;
    IF v_reader = 'engine' THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM plans p WHERE p.id = p_tenant) THEN
        RETURN false;
    END IF;
    IF v_reader LIKE 'report:%' THEN
        RETURN true;
    END IF;
    SELECT * INTO a FROM napsync_rls_reader_actor();
    IF a.roles && ARRAY['coordinator', 'implementer', 'regional'] THEN
        RETURN true;
    END IF;
    -- Principals who only read: approved reports, no disaggregated values.
    RETURN p_type <> 'report_value'
       AND (p_type <> 'indicator_report' OR p_fields ->> 'status' = 'approved');
END $$;

-- ---- the policies ------------------------------------------------------------------------

ALTER TABLE sync_revisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_revisions FORCE ROW LEVEL SECURITY;
CREATE POLICY revisions_read ON sync_revisions FOR SELECT
    USING (napsync_rls_may_read(tenant_id, entity_type, after));
CREATE POLICY revisions_write ON sync_revisions FOR INSERT
    WITH CHECK (napsync_rls_may_write(principal_id, entity_type, tenant_id, op, before,
                                      CASE WHEN deleted THEN NULL ELSE after END));

ALTER TABLE sync_conflicts ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_conflicts FORCE ROW LEVEL SECURITY;
CREATE POLICY conflicts_read ON sync_conflicts FOR SELECT
    USING (napsync_rls_may_read(tenant_id, entity_type, NULL));
CREATE POLICY conflicts_insert ON sync_conflicts FOR INSERT WITH CHECK (true);
CREATE POLICY conflicts_resolve ON sync_conflicts FOR UPDATE
    USING (true)
    WITH CHECK (resolved_by IS NULL
                OR napsync_rls_may_write(resolved_by, entity_type, tenant_id, 'resolve', NULL, NULL));

-- Every synced table: read by the reader context, written by rows their
-- author may hold.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT name, table_name FROM sync_entity_types ORDER BY name LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.table_name);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t.table_name);
        -- The read rule needs a report's status, nothing else; plans are
        -- judged by their own columns.
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT USING (%s)',
                       t.table_name || '_read', t.table_name,
                       CASE WHEN t.name = 'plan'
                            THEN 'napsync_rls_plan_visible(owner_id, status)'
                            ELSE format('napsync_rls_may_read(tenant_id, %L, %s)', t.name,
                                        CASE WHEN t.name = 'indicator_report'
                                             THEN 'jsonb_build_object(''status'', status)'
                                             ELSE 'NULL' END) END);
        EXECUTE format('CREATE POLICY %I ON %I FOR INSERT WITH CHECK '
                       '(napsync_rls_may_write(changed_by, %L, tenant_id, ''row'', NULL,'
                       ' CASE WHEN deleted THEN NULL ELSE to_jsonb(%I) END) OR deleted)',
                       t.table_name || '_insert', t.table_name, t.name, t.table_name);
        EXECUTE format('CREATE POLICY %I ON %I FOR UPDATE USING (true) WITH CHECK '
                       '(napsync_rls_may_write(changed_by, %L, tenant_id, ''row'', NULL,'
                       ' CASE WHEN deleted THEN NULL ELSE to_jsonb(%I) END) OR deleted)',
                       t.table_name || '_update', t.table_name, t.name, t.table_name);
    END LOOP;
END $$;
