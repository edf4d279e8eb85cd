-- 008: the helpers of 005's write checks as PL/pgSQL. As SQL functions
-- returning a record or called from PL/pgSQL, PostgreSQL parsed and planned
-- them again on every call, once or more per revision and per row a push
-- writes (the benchmark's profile: most of a push's database time at 16
-- clients). PL/pgSQL keeps their plans for the session. Same bodies, same
-- results. Never edit this file once landed.

CREATE OR REPLACE FUNCTION napsync_rls_actor(p_principal uuid, OUT org uuid, OUT roles text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT p.organisation_id,
           coalesce(array_agg(r.role) FILTER (WHERE r.role IS NOT NULL), '{}')
      INTO org, roles
      FROM principals p
      LEFT JOIN principal_roles r ON r.principal_id = p.id AND r.organisation_id = p.organisation_id
     WHERE p.id = p_principal
     GROUP BY p.organisation_id;
END $$;

CREATE OR REPLACE FUNCTION napsync_rls_keeps(p_roles text[], p_kind text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN coalesce(('coordinator' = ANY (p_roles) AND p_kind IN ('nap', 'local', 'implementation'))
                    OR ('implementer' = ANY (p_roles) AND p_kind IN ('implementation', 'local'))
                    OR ('regional' = ANY (p_roles) AND p_kind = 'rap'), false);
END $$;

CREATE OR REPLACE FUNCTION napsync_rls_responsible(p_type text, p_row jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v uuid;
BEGIN
    CASE p_type
    WHEN 'action' THEN
        v := (p_row ->> 'lead_org_id')::uuid;
    WHEN 'budget_line' THEN
        SELECT a.lead_org_id INTO v FROM actions a WHERE a.id = (p_row ->> 'action_id')::uuid;
    WHEN 'indicator_report' THEN
        SELECT i.responsible_id INTO v FROM indicators i
         WHERE i.id = (p_row ->> 'indicator_id')::uuid;
    WHEN 'report_value' THEN
        SELECT i.responsible_id INTO v FROM indicator_reports r JOIN indicators i ON i.id = r.indicator_id
         WHERE r.id = (p_row ->> 'report_id')::uuid;
    ELSE
        v := NULL;
    END CASE;
    RETURN v;
END $$;
