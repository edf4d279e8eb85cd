-- 006: reports computed by the server (docs/reports.md). Three functions,
-- each returning one JSON document, or NULL when what it is asked about
-- does not exist or is not readable:
--
--   napsync_report_progress(reader_org, plan, year)  the annual progress report
--   napsync_report_region(reader_org, region)         RAP indicators and members
--   napsync_report_coverage(reader_org)               cross-plan questions
--
-- Everything is computed here, in one statement's snapshot, from what the
-- reader may read: a plan is readable when it is not deleted and its owner
-- is the reader's organisation or its status is not 'draft' (the rule of
-- daemon/feed.h, NS_FEED_PLAN_READABLE). Only approved indicator reports
-- count as values. Decimals stay numeric and leave as JSON strings; counts
-- are JSON numbers; dates are "YYYY-MM-DD". Never edit this file once
-- landed.

-- ---- definitions shared by the reports ----------------------------------------------

-- Whether a plan is readable by organisation p_org.
CREATE FUNCTION napsync_report_readable(p_owner uuid, p_status text, p_deleted boolean,
                                        p_org uuid)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT NOT coalesce(p_deleted, false)
           AND (p_owner IS NOT DISTINCT FROM p_org OR p_status IS DISTINCT FROM 'draft')
$$;

-- A reporting period's due date: 60 days after it ends.
CREATE FUNCTION napsync_report_due(p_period_end date) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_period_end + 60
$$;

-- The values of indicators of the given plans: approved, live reports that
-- no approved, live report corrects (directly or through a chain of
-- corrections: napsync_report_corrects). A correction is always of the same
-- indicator and period (003), so only those are compared.
CREATE FUNCTION napsync_report_values(p_plans uuid[])
RETURNS TABLE (report_id uuid, indicator_id uuid, period_start date, period_end date,
               value numeric, value_text text)
LANGUAGE sql STABLE AS $$
    SELECT r.id, r.indicator_id, r.period_start, r.period_end, r.value, r.value_text
      FROM indicator_reports r
     WHERE r.tenant_id = ANY (p_plans) AND r.status = 'approved' AND NOT r.deleted
       AND NOT EXISTS (SELECT 1 FROM indicator_reports c
                        WHERE c.indicator_id = r.indicator_id AND c.id <> r.id
                          AND c.period_start = r.period_start AND c.period_end = r.period_end
                          AND c.status = 'approved' AND NOT c.deleted
                          AND napsync_report_corrects(c.id, r.id))
$$;

-- The reporting periods an indicator of frequency p_frequency owes inside
-- the plan period p_start..p_end: calendar years, half-years (January and
-- July), quarters or months, cut to the plan period; 'once' is the whole
-- plan period; no frequency owes nothing.
CREATE FUNCTION napsync_report_periods(p_frequency text, p_start date, p_end date)
RETURNS TABLE (period_start date, period_end date)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_start, p_end WHERE p_frequency = 'once' AND p_start <= p_end
    UNION ALL
    SELECT greatest(s::date, p_start), least((s + f.step - interval '1 day')::date, p_end)
      FROM (SELECT CASE p_frequency WHEN 'annual' THEN interval '1 year'
                                    WHEN 'semiannual' THEN interval '6 months'
                                    WHEN 'quarterly' THEN interval '3 months'
                                    WHEN 'monthly' THEN interval '1 month' END) AS f (step),
           generate_series(date_trunc('year', p_start::timestamp), p_end::timestamp, f.step) AS s
     WHERE f.step IS NOT NULL AND (s + f.step - interval '1 day')::date >= p_start
$$;

-- The expected reporting periods of a plan's live indicators and how each
-- was met, as of p_as_of: 'on_time' or 'late' when a live report of that
-- indicator and exactly that period is submitted or approved now, by the
-- date of its first submission (the earliest revision of a live report of
-- the indicator and period whose status was submitted or approved, i.e.
-- when it first became so; for a report without revisions, its changed_at)
-- against the due date; otherwise 'overdue' once the due date has passed,
-- else 'pending'.
CREATE FUNCTION napsync_report_schedule(p_plan uuid, p_as_of date)
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
           WHERE r.indicator_id = i.id AND NOT r.deleted
             AND r.period_start = e.period_start AND r.period_end = e.period_end) s
      CROSS JOIN LATERAL (
          SELECT min(v.at) AS first_at
            FROM indicator_reports r
            JOIN sync_revisions v ON v.entity_type = 'indicator_report' AND v.record_id = r.id
           WHERE s.reported AND r.indicator_id = i.id AND NOT r.deleted
             AND r.period_start = e.period_start AND r.period_end = e.period_end
             AND v.after ->> 'status' IN ('submitted', 'approved')) f
     WHERE p.id = p_plan
$$;

-- Progress towards the target, in percent, rounded half away from zero to
-- one decimal: from the baseline when there is one that differs from the
-- target ((value - baseline) / (target - baseline): a target below the
-- baseline is progress downwards), else value / target; NULL without a
-- value or a target, or when the target is 0 and there is no baseline.
CREATE FUNCTION napsync_report_pct(p_value numeric, p_baseline numeric, p_target numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_value IS NULL OR p_target IS NULL THEN NULL
                WHEN p_baseline IS NOT NULL AND p_target <> p_baseline
                    THEN round((p_value - p_baseline) * 100 / (p_target - p_baseline), 1)
                WHEN p_target <> 0 THEN round(p_value * 100 / p_target, 1)
           END
$$;

-- k of n in percent, rounded half away from zero to one decimal, as text;
-- NULL when n is 0.
CREATE FUNCTION napsync_report_share(p_k bigint, p_n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_n > 0 THEN round(p_k * 100.0 / p_n, 1)::text END
$$;

CREATE FUNCTION napsync_report_org_json(p_org uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', o.id, 'code', o.code, 'name', o.name)
      FROM organisations o WHERE o.id = p_org
$$;

CREATE FUNCTION napsync_report_value_json(p_report uuid, p_start date, p_end date,
                                          p_value numeric, p_text text)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_report IS NOT NULL THEN
        jsonb_build_object('report_id', p_report, 'period_start', p_start, 'period_end', p_end,
                           'value', p_value::text, 'value_text', p_text) END
$$;

-- Counts of expected periods by status, and the share met on time among
-- those due (on_time + late + overdue).
CREATE FUNCTION napsync_report_rate_json(p_n bigint, p_on_time bigint, p_late bigint,
                                         p_overdue bigint, p_pending bigint)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('expected', coalesce(p_n, 0), 'on_time', coalesce(p_on_time, 0),
                              'late', coalesce(p_late, 0), 'overdue', coalesce(p_overdue, 0),
                              'pending', coalesce(p_pending, 0),
                              'on_time_pct', napsync_report_share(coalesce(p_on_time, 0),
                                  coalesce(p_on_time, 0) + coalesce(p_late, 0)
                                  + coalesce(p_overdue, 0)))
$$;

CREATE FUNCTION napsync_report_plan_json(p plans) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p.id, 'code', p.code, 'title', p.title, 'kind', p.kind,
                              'status', p.status, 'country', p.country,
                              'period_start', p.period_start, 'period_end', p.period_end,
                              'owner', napsync_report_org_json(p.owner_id))
$$;

CREATE FUNCTION napsync_report_now() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- ---- the annual progress report -------------------------------------------------------

-- p_year: the reporting year, 1990..2100; 0 or NULL: the latest year in
-- which a value of the plan ends, else the current year kept inside the
-- plan period.
CREATE FUNCTION napsync_report_progress(p_org uuid, p_plan uuid, p_year int)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_plan  plans%ROWTYPE;
    v_as_of date := (now() AT TIME ZONE 'UTC')::date;
    v_year  int := nullif(p_year, 0);
    v_start date;
    v_end   date;
    v_out   jsonb;
BEGIN
    IF v_year IS NOT NULL AND v_year NOT BETWEEN 1990 AND 2100 THEN
        RAISE EXCEPTION 'year: % is not between 1990 and 2100', v_year
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v_plan FROM plans pl
     WHERE pl.id = p_plan AND napsync_report_readable(pl.owner_id, pl.status, pl.deleted, p_org);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_year IS NULL THEN
        SELECT max(extract(year FROM v.period_end))::int INTO v_year
          FROM napsync_report_values(ARRAY[v_plan.id]) v
          JOIN indicators i ON i.id = v.indicator_id AND NOT i.deleted;
        v_year := coalesce(v_year, extract(year FROM least(greatest(v_as_of, v_plan.period_start),
                                                            v_plan.period_end))::int);
    END IF;
    v_start := make_date(v_year, 1, 1);
    v_end := make_date(v_year, 12, 31);

    WITH vals AS MATERIALIZED (
        SELECT * FROM napsync_report_values(ARRAY[v_plan.id])
    ),
    -- Every live indicator with its objective (its own, or its result's or
    -- action's), the target for the year, its latest value ending in or
    -- before the year, and the value of the period before that one.
    ind AS MATERIALIZED (
        SELECT i.id, i.code, i.title, i.unit, i.value_type, i.frequency, i.baseline,
               i.baseline_date, i.responsible_id,
               coalesce(i.objective_id, rs.objective_id, ac.objective_id) AS objective_id,
               coalesce(t.value, i.target) AS target,
               CASE WHEN t.value IS NOT NULL THEN 'year'
                    WHEN i.target IS NOT NULL THEN 'headline' END AS target_source,
               CASE WHEN t.value IS NOT NULL THEN t.period_end
                    WHEN i.target IS NOT NULL THEN i.target_date END AS target_date,
               l.report_id AS l_id, l.period_start AS l_start, l.period_end AS l_end,
               l.value AS l_value, l.value_text AS l_text,
               q.report_id AS q_id, q.period_start AS q_start, q.period_end AS q_end,
               q.value AS q_value, q.value_text AS q_text
          FROM indicators i
          LEFT JOIN results rs ON rs.id = i.result_id
          LEFT JOIN actions ac ON ac.id = i.action_id
          LEFT JOIN LATERAL (
              SELECT it.value, it.period_end FROM indicator_targets it
               WHERE it.indicator_id = i.id AND NOT it.deleted
                 AND it.period_end BETWEEN v_start AND v_end
               ORDER BY it.period_end DESC, it.id LIMIT 1) t ON true
          LEFT JOIN LATERAL (
              SELECT v.* FROM vals v
               WHERE v.indicator_id = i.id AND v.period_end <= v_end
               ORDER BY v.period_end DESC, v.period_start DESC, v.report_id LIMIT 1) l ON true
          LEFT JOIN LATERAL (
              SELECT v.* FROM vals v
               WHERE v.indicator_id = i.id AND v.period_end < l.period_start
               ORDER BY v.period_end DESC, v.period_start DESC, v.report_id LIMIT 1) q ON true
         WHERE i.tenant_id = v_plan.id AND NOT i.deleted
    ),
    ind2 AS MATERIALIZED (
        SELECT x.*, napsync_report_pct(x.l_value, x.baseline, x.target) AS pct,
               x.l_value - x.q_value AS change,
               CASE WHEN x.l_value IS NULL OR x.q_value IS NULL THEN NULL
                    WHEN x.l_value > x.q_value THEN 'up'
                    WHEN x.l_value < x.q_value THEN 'down'
                    ELSE 'flat' END AS trend
          FROM ind x
    ),
    indj AS MATERIALIZED (
        SELECT x.id, x.objective_id, x.code, x.title, x.pct, x.l_id, x.responsible_id,
               jsonb_build_object(
                   'id', x.id, 'code', x.code, 'title', x.title, 'unit', x.unit,
                   'value_type', x.value_type, 'frequency', x.frequency,
                   'responsible', napsync_report_org_json(x.responsible_id),
                   'baseline', x.baseline::text, 'baseline_date', x.baseline_date,
                   'target', x.target::text, 'target_source', x.target_source,
                   'target_date', x.target_date,
                   'latest', napsync_report_value_json(x.l_id, x.l_start, x.l_end, x.l_value,
                                                       x.l_text),
                   'pct_of_target', x.pct::text,
                   'previous', napsync_report_value_json(x.q_id, x.q_start, x.q_end, x.q_value,
                                                         x.q_text),
                   'change', x.change::text, 'trend', x.trend) AS j
          FROM ind2 x
    ),
    obj AS MATERIALIZED (
        SELECT o.id, o.pillar_id, o.position, o.code, o.title,
               jsonb_build_object(
                   'id', o.id, 'code', o.code, 'title', o.title,
                   'indicators', coalesce((SELECT jsonb_agg(x.j ORDER BY x.code, x.title, x.id)
                                             FROM indj x WHERE x.objective_id = o.id),
                                          '[]'::jsonb)) AS j
          FROM objectives o
         WHERE o.tenant_id = v_plan.id AND NOT o.deleted
    ),
    -- Indicator figures per pillar (grouped) and for the plan (the empty
    -- grouping set; pillar_id NULL there).
    pst AS (
        SELECT ob.pillar_id, GROUPING(ob.pillar_id) AS whole,
               count(x.id) AS n, count(x.l_id) AS with_value, count(x.pct) AS with_progress,
               count(x.id) FILTER (WHERE x.pct >= 100) AS achieved,
               -- greatest and least ignore NULLs: an indicator without progress
               -- must stay out of the average, not count as 0.
               round(avg(CASE WHEN x.pct IS NOT NULL THEN least(greatest(x.pct, 0), 100) END), 1)
                   AS progress
          FROM indj x
          LEFT JOIN obj ob ON ob.id = x.objective_id
         GROUP BY GROUPING SETS ((ob.pillar_id), ())
    ),
    pil AS (
        SELECT pl.id, pl.position, pl.code, pl.name,
               jsonb_build_object(
                   'id', pl.id, 'code', pl.code, 'name', pl.name, 'kind', pl.kind,
                   'indicators', coalesce(s.n, 0), 'with_value', coalesce(s.with_value, 0),
                   'with_progress', coalesce(s.with_progress, 0),
                   'achieved', coalesce(s.achieved, 0), 'progress_pct', s.progress::text,
                   'objectives', coalesce((SELECT jsonb_agg(ob.j ORDER BY ob.position, ob.code,
                                                            ob.title, ob.id)
                                             FROM obj ob WHERE ob.pillar_id = pl.id),
                                          '[]'::jsonb)) AS j
          FROM pillars pl
          LEFT JOIN pst s ON s.pillar_id = pl.id AND s.whole = 0
         WHERE pl.tenant_id = v_plan.id AND NOT pl.deleted
    ),
    acts AS MATERIALIZED (
        SELECT a.id, a.lead_org_id, a.status FROM actions a
         WHERE a.tenant_id = v_plan.id AND NOT a.deleted
    ),
    bl AS MATERIALIZED (
        SELECT b.fiscal_year, b.currency, b.funding_source, b.gender_responsive,
               coalesce(b.costed, 0) AS costed, coalesce(b.allocated, 0) AS allocated,
               coalesce(b.disbursed, 0) AS disbursed, coalesce(b.spent, 0) AS spent,
               a.lead_org_id
          FROM budget_lines b
          JOIN acts a ON a.id = b.action_id
         WHERE b.tenant_id = v_plan.id AND NOT b.deleted
    ),
    sched AS MATERIALIZED (
        SELECT s.*, x.code, x.title
          FROM napsync_report_schedule(v_plan.id, v_as_of) s
          JOIN ind x ON x.id = s.indicator_id
    ),
    -- Reporting figures for the periods ending in the year, per responsible
    -- organisation and for the plan (the empty grouping set).
    rst AS (
        SELECT s.responsible_id, GROUPING(s.responsible_id) AS whole,
               napsync_report_rate_json(count(*), count(*) FILTER (WHERE s.status = 'on_time'),
                                        count(*) FILTER (WHERE s.status = 'late'),
                                        count(*) FILTER (WHERE s.status = 'overdue'),
                                        count(*) FILTER (WHERE s.status = 'pending')) AS j
          FROM sched s
         WHERE s.period_end BETWEEN v_start AND v_end
         GROUP BY GROUPING SETS ((s.responsible_id), ())
    ),
    orgs AS (
        SELECT DISTINCT u.org_id
          FROM (SELECT x.responsible_id FROM ind x UNION ALL SELECT a.lead_org_id FROM acts a) u (org_id)
         WHERE u.org_id IS NOT NULL
    ),
    orgj AS (
        SELECT og.id, og.name,
               jsonb_build_object(
                   'organisation', napsync_report_org_json(og.id),
                   'actions', (SELECT jsonb_build_object(
                                   'total', count(*),
                                   'planned', count(*) FILTER (WHERE a.status = 'planned'),
                                   'ongoing', count(*) FILTER (WHERE a.status = 'ongoing'),
                                   'completed', count(*) FILTER (WHERE a.status = 'completed'),
                                   'delayed', count(*) FILTER (WHERE a.status = 'delayed'),
                                   'cancelled', count(*) FILTER (WHERE a.status = 'cancelled'))
                                 FROM acts a WHERE a.lead_org_id = og.id),
                   'indicators', (SELECT count(*) FROM ind x WHERE x.responsible_id = og.id),
                   'reporting', coalesce((SELECT r.j FROM rst r
                                           WHERE r.whole = 0 AND r.responsible_id = og.id),
                                         napsync_report_rate_json(0, 0, 0, 0, 0)),
                   'budget', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                           'currency', g.currency, 'lines', g.n,
                                           'costed', g.costed::text, 'allocated', g.allocated::text,
                                           'disbursed', g.disbursed::text, 'spent', g.spent::text)
                                           ORDER BY g.currency)
                                         FROM (SELECT b.currency, count(*) AS n,
                                                      sum(b.costed) AS costed,
                                                      sum(b.allocated) AS allocated,
                                                      sum(b.disbursed) AS disbursed,
                                                      sum(b.spent) AS spent
                                                 FROM bl b
                                                WHERE b.lead_org_id = og.id
                                                  AND b.fiscal_year = v_year
                                                GROUP BY b.currency) g),
                                      '[]'::jsonb)) AS j
          FROM orgs
          JOIN organisations og ON og.id = orgs.org_id
    )
    SELECT jsonb_build_object(
        'kind', 'progress',
        'generated_at', napsync_report_now(),
        'as_of', v_as_of,
        'year', v_year,
        'due_days', napsync_report_due(v_as_of) - v_as_of,
        'plan', napsync_report_plan_json(v_plan),
        'summary', (SELECT jsonb_build_object(
                        'indicators', s.n, 'with_value', s.with_value,
                        'with_progress', s.with_progress, 'achieved', s.achieved,
                        'progress_pct', s.progress::text)
                      FROM pst s WHERE s.whole = 1),
        'pillars', coalesce((SELECT jsonb_agg(p.j ORDER BY p.position, p.code, p.name, p.id)
                               FROM pil p), '[]'::jsonb),
        'unassigned_indicators', coalesce((SELECT jsonb_agg(x.j ORDER BY x.code, x.title, x.id)
                                             FROM indj x
                                            WHERE NOT EXISTS (SELECT 1 FROM obj ob
                                                               WHERE ob.id = x.objective_id)),
                                          '[]'::jsonb),
        'organisations', coalesce((SELECT jsonb_agg(o.j ORDER BY o.name, o.id) FROM orgj o),
                                  '[]'::jsonb),
        'budget', jsonb_build_object(
            'fiscal_year', v_year,
            'by_funding_source', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'funding_source', g.funding_source, 'currency', g.currency,
                           'lines', g.n, 'costed', g.costed::text,
                           'allocated', g.allocated::text, 'disbursed', g.disbursed::text,
                           'spent', g.spent::text)
                           ORDER BY g.funding_source, g.currency)
                  FROM (SELECT b.funding_source, b.currency, count(*) AS n,
                               sum(b.costed) AS costed, sum(b.allocated) AS allocated,
                               sum(b.disbursed) AS disbursed, sum(b.spent) AS spent
                          FROM bl b WHERE b.fiscal_year = v_year
                         GROUP BY b.funding_source, b.currency) g), '[]'::jsonb),
            'by_organisation', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'organisation', napsync_report_org_json(g.lead_org_id),
                           'currency', g.currency, 'lines', g.n, 'costed', g.costed::text,
                           'allocated', g.allocated::text, 'disbursed', g.disbursed::text,
                           'spent', g.spent::text)
                           ORDER BY og.name, g.lead_org_id, g.currency)
                  FROM (SELECT b.lead_org_id, b.currency, count(*) AS n,
                               sum(b.costed) AS costed, sum(b.allocated) AS allocated,
                               sum(b.disbursed) AS disbursed, sum(b.spent) AS spent
                          FROM bl b WHERE b.fiscal_year = v_year
                         GROUP BY b.lead_org_id, b.currency) g
                  JOIN organisations og ON og.id = g.lead_org_id), '[]'::jsonb),
            'totals', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'currency', g.currency, 'lines', g.n, 'costed', g.costed::text,
                           'allocated', g.allocated::text, 'disbursed', g.disbursed::text,
                           'spent', g.spent::text,
                           'gender_responsive_costed', g.gr_costed::text)
                           ORDER BY g.currency)
                  FROM (SELECT b.currency, count(*) AS n,
                               sum(b.costed) AS costed, sum(b.allocated) AS allocated,
                               sum(b.disbursed) AS disbursed, sum(b.spent) AS spent,
                               coalesce(sum(b.costed) FILTER (WHERE b.gender_responsive), 0)
                                   AS gr_costed
                          FROM bl b WHERE b.fiscal_year = v_year
                         GROUP BY b.currency) g), '[]'::jsonb),
            'plan_totals', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'currency', g.currency, 'lines', g.n, 'costed', g.costed::text,
                           'allocated', g.allocated::text, 'disbursed', g.disbursed::text,
                           'spent', g.spent::text)
                           ORDER BY g.currency)
                  FROM (SELECT b.currency, count(*) AS n,
                               sum(b.costed) AS costed, sum(b.allocated) AS allocated,
                               sum(b.disbursed) AS disbursed, sum(b.spent) AS spent
                          FROM bl b GROUP BY b.currency) g), '[]'::jsonb)),
        'reporting', coalesce((SELECT r.j FROM rst r WHERE r.whole = 1),
                              napsync_report_rate_json(0, 0, 0, 0, 0))
                     || jsonb_build_object(
            'periods', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'indicator', jsonb_build_object('id', s.indicator_id, 'code', s.code,
                                                           'title', s.title),
                           'organisation', napsync_report_org_json(s.responsible_id),
                           'period_start', s.period_start, 'period_end', s.period_end,
                           'due', s.due, 'status', s.status,
                           'first_submitted_at',
                           to_char(s.first_submitted AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
                           ORDER BY s.period_end, s.period_start, s.code, s.title, s.indicator_id)
                  FROM sched s WHERE s.period_end BETWEEN v_start AND v_end), '[]'::jsonb),
            'overdue_reports', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'indicator', jsonb_build_object('id', s.indicator_id, 'code', s.code,
                                                           'title', s.title),
                           'organisation', napsync_report_org_json(s.responsible_id),
                           'period_start', s.period_start, 'period_end', s.period_end,
                           'due', s.due, 'days_overdue', v_as_of - s.due)
                           ORDER BY s.due, s.code, s.title, s.indicator_id)
                  FROM sched s WHERE s.period_end <= v_end AND s.status = 'overdue'),
                '[]'::jsonb)))
      INTO v_out;
    RETURN v_out;
END $$;

-- ---- the regional report -----------------------------------------------------------------

-- The region's readable RAPs, each regional indicator with the latest value
-- of every member state: members are the countries of region_members; a
-- member's indicators are the live indicators of its readable NAPs
-- (plans.kind 'nap', plans.country the member) whose regional_indicator_id
-- is the RAP indicator. A member's value is the latest (period_end, then
-- period_start) of their values.
CREATE FUNCTION napsync_report_region(p_org uuid, p_region uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_region organisations%ROWTYPE;
    v_out    jsonb;
BEGIN
    SELECT * INTO v_region FROM organisations o
     WHERE o.id = p_region AND o.kind = 'regional_organisation';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    WITH members AS MATERIALIZED (
        SELECT m.country, m.since FROM region_members m WHERE m.region_id = p_region
    ),
    naps AS MATERIALIZED (
        SELECT pl.* FROM plans pl JOIN members m ON m.country = pl.country
         WHERE pl.kind = 'nap' AND napsync_report_readable(pl.owner_id, pl.status, pl.deleted, p_org)
    ),
    raps AS MATERIALIZED (
        SELECT pl.id, pl.period_start, napsync_report_plan_json(pl) AS j FROM plans pl
         WHERE pl.owner_id = p_region AND pl.kind = 'rap'
           AND napsync_report_readable(pl.owner_id, pl.status, pl.deleted, p_org)
    ),
    rind AS MATERIALIZED (
        SELECT i.id, i.tenant_id, i.code, i.title, i.unit, i.value_type FROM indicators i
          JOIN raps r ON r.id = i.tenant_id
         WHERE NOT i.deleted
    ),
    mind AS MATERIALIZED (
        SELECT i.id, i.code, i.title, i.tenant_id, i.regional_indicator_id, n.country
          FROM indicators i
          JOIN naps n ON n.id = i.tenant_id
         WHERE NOT i.deleted AND i.regional_indicator_id IN (SELECT r.id FROM rind r)
    ),
    mval AS MATERIALIZED (
        SELECT DISTINCT ON (mi.regional_indicator_id, mi.country)
               mi.regional_indicator_id, mi.country, mi.tenant_id AS plan_id,
               mi.id AS indicator_id, mi.code, mi.title,
               v.report_id, v.period_start, v.period_end, v.value, v.value_text
          FROM mind mi
          JOIN napsync_report_values(ARRAY(SELECT n.id FROM naps n)) v ON v.indicator_id = mi.id
         ORDER BY mi.regional_indicator_id, mi.country, v.period_end DESC, v.period_start DESC,
                  v.report_id
    ),
    rj AS (
        SELECT ri.tenant_id, ri.code, ri.title, ri.id,
               jsonb_build_object(
                   'id', ri.id, 'code', ri.code, 'title', ri.title, 'unit', ri.unit,
                   'value_type', ri.value_type,
                   'members_total', (SELECT count(*) FROM members),
                   'members_mapped', (SELECT count(DISTINCT mi.country) FROM mind mi
                                       WHERE mi.regional_indicator_id = ri.id),
                   'members_reported', (SELECT count(*) FROM mval v
                                         WHERE v.regional_indicator_id = ri.id),
                   'aggregate', (SELECT jsonb_build_object(
                                     'n', count(v.value), 'sum', sum(v.value)::text,
                                     'mean', round(avg(v.value), 4)::text,
                                     'min', min(v.value)::text, 'max', max(v.value)::text)
                                   FROM mval v WHERE v.regional_indicator_id = ri.id),
                   'not_reported', coalesce((SELECT jsonb_agg(m.country ORDER BY m.country)
                                               FROM members m
                                              WHERE NOT EXISTS (
                                                  SELECT 1 FROM mval v
                                                   WHERE v.regional_indicator_id = ri.id
                                                     AND v.country = m.country)), '[]'::jsonb),
                   'members', coalesce((
                       SELECT jsonb_agg(jsonb_build_object(
                                  'country', m.country,
                                  'status', CASE WHEN v.country IS NOT NULL THEN 'reported'
                                                 WHEN mm.id IS NOT NULL THEN 'not_reported'
                                                 ELSE 'not_mapped' END,
                                  'plan_id', coalesce(v.plan_id, mm.tenant_id),
                                  'indicator', CASE WHEN v.country IS NOT NULL THEN
                                                   jsonb_build_object('id', v.indicator_id,
                                                                      'code', v.code,
                                                                      'title', v.title)
                                               WHEN mm.id IS NOT NULL THEN
                                                   jsonb_build_object('id', mm.id, 'code', mm.code,
                                                                      'title', mm.title) END,
                                  'latest', napsync_report_value_json(v.report_id, v.period_start,
                                                                      v.period_end, v.value,
                                                                      v.value_text))
                                  ORDER BY m.country)
                         FROM members m
                         LEFT JOIN mval v ON v.regional_indicator_id = ri.id
                                         AND v.country = m.country
                         -- the member's mapped indicator when it has no value
                         LEFT JOIN LATERAL (SELECT mi.id, mi.code, mi.title, mi.tenant_id
                                              FROM mind mi
                                             WHERE mi.regional_indicator_id = ri.id
                                               AND mi.country = m.country
                                             ORDER BY mi.code, mi.id LIMIT 1) mm ON true),
                                       '[]'::jsonb)) AS j
          FROM rind ri
    )
    SELECT jsonb_build_object(
        'kind', 'region',
        'generated_at', napsync_report_now(),
        'region', jsonb_build_object('id', v_region.id, 'code', v_region.code,
                                     'name', v_region.name),
        'members', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'country', m.country, 'since', m.since,
                       'naps', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                                  'id', n.id, 'code', n.code, 'title', n.title,
                                                  'status', n.status,
                                                  'period_start', n.period_start,
                                                  'period_end', n.period_end)
                                                  ORDER BY n.period_start DESC, n.id)
                                           FROM naps n WHERE n.country = m.country), '[]'::jsonb),
                       'indicators_reported', (SELECT count(*) FROM mval v
                                                WHERE v.country = m.country),
                       'indicators_total', (SELECT count(*) FROM rind))
                       ORDER BY m.country)
              FROM members m), '[]'::jsonb),
        'raps', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'plan', r.j,
                       'indicators', coalesce((SELECT jsonb_agg(x.j ORDER BY x.code, x.title, x.id)
                                                 FROM rj x WHERE x.tenant_id = r.id),
                                              '[]'::jsonb))
                       ORDER BY r.period_start DESC, r.id)
              FROM raps r), '[]'::jsonb))
      INTO v_out;
    RETURN v_out;
END $$;

-- ---- coverage across plans ---------------------------------------------------------------

-- Questions over the adopted NAPs (kind 'nap', status 'adopted', live)
-- readable by the reader: for each, how many of them and what share.
CREATE FUNCTION napsync_report_coverage(p_org uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_out jsonb;
BEGIN
    WITH naps AS MATERIALIZED (
        SELECT pl.* FROM plans pl
         WHERE pl.kind = 'nap' AND pl.status = 'adopted'
           AND napsync_report_readable(pl.owner_id, pl.status, pl.deleted, p_org)
    ),
    total AS (SELECT count(*) AS n FROM naps),
    acts AS MATERIALIZED (
        SELECT a.id, a.tenant_id, coalesce(a.tags, '{}') AS tags FROM actions a
          JOIN naps n ON n.id = a.tenant_id WHERE NOT a.deleted
    ),
    inds AS MATERIALIZED (
        SELECT i.id, i.tenant_id, coalesce(i.tags, '{}') AS tags,
               coalesce(i.disaggregation, '{}') AS disaggregation, i.regional_indicator_id
          FROM indicators i JOIN naps n ON n.id = i.tenant_id WHERE NOT i.deleted
    ),
    bls AS MATERIALIZED (
        SELECT b.tenant_id, b.costed, b.allocated, b.gender_responsive FROM budget_lines b
          JOIN acts a ON a.id = b.action_id WHERE NOT b.deleted
    ),
    vals AS MATERIALIZED (
        SELECT v.* FROM napsync_report_values(ARRAY(SELECT n.id FROM naps n)) v
          JOIN inds i ON i.id = v.indicator_id
    ),
    -- One row per plan with what it has.
    facts AS MATERIALIZED (
        SELECT n.id, n.code, n.title, n.country, n.period_start, n.period_end, n.tags AS plan_tags,
               EXISTS (SELECT 1 FROM bls b WHERE b.tenant_id = n.id AND b.costed > 0) AS costed,
               EXISTS (SELECT 1 FROM bls b WHERE b.tenant_id = n.id AND b.allocated > 0)
                   AS allocated,
               EXISTS (SELECT 1 FROM bls b WHERE b.tenant_id = n.id AND b.gender_responsive)
                   AS gender_responsive,
               EXISTS (SELECT 1 FROM inds i WHERE i.tenant_id = n.id) AS indicators,
               EXISTS (SELECT 1 FROM inds i WHERE i.tenant_id = n.id
                                              AND 'sex' = ANY (i.disaggregation)) AS sex,
               EXISTS (SELECT 1 FROM inds i WHERE i.tenant_id = n.id
                                              AND i.regional_indicator_id IS NOT NULL) AS mapped,
               EXISTS (SELECT 1 FROM vals v JOIN inds i ON i.id = v.indicator_id
                        WHERE i.tenant_id = n.id) AS approved,
               ARRAY(SELECT DISTINCT t FROM acts a, unnest(a.tags) t
                      WHERE a.tenant_id = n.id ORDER BY t) AS action_tags,
               ARRAY(SELECT DISTINCT t FROM inds i, unnest(i.tags) t
                      WHERE i.tenant_id = n.id ORDER BY t) AS indicator_tags
          FROM naps n
    ),
    tags AS (
        SELECT w.code, w.label FROM wps_tags w
        UNION
        SELECT u.t, NULL FROM (SELECT unnest(f.action_tags) FROM facts f
                               UNION SELECT unnest(f.indicator_tags) FROM facts f
                               UNION SELECT unnest(coalesce(f.plan_tags, '{}')) FROM facts f) u (t)
         WHERE NOT EXISTS (SELECT 1 FROM wps_tags w WHERE w.code = u.t)
    ),
    questions (ord, id, question, k) AS (
        VALUES
        (1, 'costed_budget', 'adopted NAPs with a costed budget (a budget line with costed > 0)',
         (SELECT count(*) FROM facts WHERE costed)),
        (2, 'allocated_budget', 'adopted NAPs with an allocated budget (a budget line with allocated > 0)',
         (SELECT count(*) FROM facts WHERE allocated)),
        (3, 'gender_responsive_budget', 'adopted NAPs with a gender-responsive budget line',
         (SELECT count(*) FROM facts WHERE gender_responsive)),
        (4, 'indicators', 'adopted NAPs with indicators',
         (SELECT count(*) FROM facts WHERE indicators)),
        (5, 'sex_disaggregated_indicators', 'adopted NAPs with an indicator disaggregated by sex',
         (SELECT count(*) FROM facts WHERE sex)),
        (6, 'regional_mapping', 'adopted NAPs with an indicator mapped to a regional indicator',
         (SELECT count(*) FROM facts WHERE mapped)),
        (7, 'approved_values', 'adopted NAPs with an approved indicator value',
         (SELECT count(*) FROM facts WHERE approved))
    )
    SELECT jsonb_build_object(
        'kind', 'coverage',
        'generated_at', napsync_report_now(),
        'adopted_naps', (SELECT n FROM total),
        'questions', (SELECT jsonb_agg(jsonb_build_object(
                                 'id', q.id, 'question', q.question, 'plans', q.k,
                                 'of', t.n, 'share_pct', napsync_report_share(q.k, t.n))
                                 ORDER BY q.ord)
                        FROM questions q, total t),
        'tags', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'tag', g.code, 'label', g.label,
                       'actions', jsonb_build_object('plans', g.a,
                                                     'share_pct', napsync_report_share(g.a, t.n)),
                       'indicators', jsonb_build_object('plans', g.i,
                                                        'share_pct', napsync_report_share(g.i, t.n)),
                       'plan_tag', jsonb_build_object('plans', g.p,
                                                      'share_pct', napsync_report_share(g.p, t.n)),
                       'any', jsonb_build_object('plans', g.y,
                                                 'share_pct', napsync_report_share(g.y, t.n)))
                       ORDER BY g.code)
              FROM (SELECT tg.code, tg.label,
                           count(*) FILTER (WHERE tg.code = ANY (f.action_tags)) AS a,
                           count(*) FILTER (WHERE tg.code = ANY (f.indicator_tags)) AS i,
                           count(*) FILTER (WHERE tg.code = ANY (coalesce(f.plan_tags, '{}'))) AS p,
                           count(*) FILTER (WHERE tg.code = ANY (f.action_tags)
                                               OR tg.code = ANY (f.indicator_tags)
                                               OR tg.code = ANY (coalesce(f.plan_tags, '{}'))) AS y
                      FROM tags tg LEFT JOIN facts f ON true
                     GROUP BY tg.code, tg.label) g, total t), '[]'::jsonb),
        'plans', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', f.id, 'code', f.code, 'title', f.title, 'country', f.country,
                       'period_start', f.period_start, 'period_end', f.period_end,
                       'costed_budget', f.costed, 'allocated_budget', f.allocated,
                       'gender_responsive_budget', f.gender_responsive,
                       'indicators', f.indicators, 'sex_disaggregated_indicators', f.sex,
                       'regional_mapping', f.mapped, 'approved_values', f.approved,
                       'action_tags', to_jsonb(f.action_tags),
                       'indicator_tags', to_jsonb(f.indicator_tags),
                       'plan_tags', to_jsonb(coalesce(f.plan_tags, '{}')))
                       ORDER BY f.country, f.period_start, f.id)
              FROM facts f), '[]'::jsonb))
      INTO v_out;
    RETURN v_out;
END $$;
