-- The small fixture of test_reports.c, loaded after deploy/demo.sql (its
-- organisations: mogender, mofa, defence, police, wpsnet, parliament...;
-- the demo's regional organisation is not used: the fixture has its own,
-- fixture-region, with member states ZZ, YY and XX). Every figure test_reports.c expects is computed by hand from
-- the rows below; the comments say how. All periods lie in the past, so
-- "overdue" does not depend on the day the test runs.
--
--   plan A  ZZ NAP, mogender, adopted, 2021-2023 (the progress report)
--   plan D  ZZ NAP, mofa, draft                  (not readable by mogender)
--   plan R  RAP of fixture-region, adopted, 2021-2025
--   plan Y  YY NAP, yy-gender, adopted, 2021-2025
--   plan X  XX NAP, xx-gender, draft             (readable by xx-gender only)
--
-- Submission times are set through sync_revisions, as the sync engine
-- records them (one revision per status change).

INSERT INTO organisations (id, code, name, kind, country, default_role) VALUES
    ('0a000000-0000-4000-8000-000000000001', 'yy-gender', 'YY Ministry of Gender', 'ministry', 'YY', 'coordinator'),
    ('0a000000-0000-4000-8000-000000000002', 'xx-gender', 'XX Ministry of Gender', 'ministry', 'XX', 'coordinator'),
    ('0a000000-0000-4000-8000-000000000003', 'fixture-region', 'Fixture Regional Community', 'regional_organisation', NULL, 'regional');
INSERT INTO principals (id, organisation_id, name)
SELECT 'f0000000-0000-4000-8000-000000000001', id, 'Fixture Loader' FROM organisations WHERE code = 'mogender';
INSERT INTO region_members (region_id, country, since)
SELECT id, c, DATE '2020-01-01' FROM organisations, unnest(ARRAY['ZZ', 'YY', 'XX']) c WHERE code = 'fixture-region';

-- ---- plans ------------------------------------------------------------------------------
INSERT INTO plans (id, version, tenant_id, changed_by, code, title, kind, status, period_start, period_end,
                   owner_id, country, tags)
SELECT v.id::uuid, 1, v.id::uuid, 'f0000000-0000-4000-8000-000000000001', v.code, v.title, v.kind, v.status,
       v.ps::date, v.pe::date, o.id, v.country, v.tags::text[]
  FROM (VALUES
    ('a0000000-0000-4000-8000-000000000001', 'ZZ-NAP2', 'ZZ National Action Plan 2021-2023', 'nap', 'adopted', '2021-01-01', '2023-12-31', 'mogender', 'ZZ', '{}'),
    ('a0000000-0000-4000-8000-000000000002', 'ZZ-NAP3', 'ZZ draft NAP 2024-2027', 'nap', 'draft', '2024-01-01', '2027-12-31', 'mofa', 'ZZ', '{}'),
    ('a0000000-0000-4000-8000-000000000003', 'RAP1', 'Regional Action Plan 2021-2025', 'rap', 'adopted', '2021-01-01', '2025-12-31', 'fixture-region', NULL, '{}'),
    ('a0000000-0000-4000-8000-000000000004', 'YY-NAP1', 'YY National Action Plan', 'nap', 'adopted', '2021-01-01', '2025-12-31', 'yy-gender', 'YY', '{climate}'),
    ('a0000000-0000-4000-8000-000000000005', 'XX-NAP1', 'XX National Action Plan (draft)', 'nap', 'draft', '2021-01-01', '2025-12-31', 'xx-gender', 'XX', '{}')
  ) AS v (id, code, title, kind, status, ps, pe, owner, country, tags)
  JOIN organisations o ON o.code = v.owner;

-- ---- structure -------------------------------------------------------------------------
INSERT INTO pillars (id, version, tenant_id, changed_by, plan_id, code, name, kind, position) VALUES
    ('b0000000-0000-4000-8000-000000000001', 1, 'a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'P1', 'Participation', 'participation', 1),
    ('b0000000-0000-4000-8000-000000000002', 1, 'a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'P2', 'Protection', 'protection', 2),
    ('b0000000-0000-4000-8000-000000000004', 1, 'a0000000-0000-4000-8000-000000000004', 'f0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000004', 'P1', 'Participation', 'participation', 1);
INSERT INTO objectives (id, version, tenant_id, changed_by, plan_id, pillar_id, code, title, position) VALUES
    ('c0000000-0000-4000-8000-000000000001', 1, 'a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000001', 'O1', 'More women in the security sector', 1),
    ('c0000000-0000-4000-8000-000000000002', 1, 'a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000002', 'O2', 'Accountability for SGBV', 1),
    ('c0000000-0000-4000-8000-000000000004', 1, 'a0000000-0000-4000-8000-000000000004', 'f0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000004', 'b0000000-0000-4000-8000-000000000004', 'O1', 'Women in defence', 1);
INSERT INTO results (id, version, tenant_id, changed_by, plan_id, objective_id, level, code, title) VALUES
    ('d0000000-0000-4000-8000-000000000001', 1, 'a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000002', 'outcome', 'R1', 'Faster SGBV trials');
INSERT INTO actions (id, version, tenant_id, changed_by, plan_id, objective_id, code, title, lead_org_id, status, tags)
SELECT v.id::uuid, 1, v.plan::uuid, 'f0000000-0000-4000-8000-000000000001', v.plan::uuid, v.obj::uuid, v.code, v.title, o.id,
       v.status, v.tags::text[]
  FROM (VALUES
    ('e0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000001', 'A1', 'Recruit women officers', 'defence', 'ongoing', '{women-in-armed-forces}'),
    ('e0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000002', 'A2', 'Train prosecutors', 'police', 'completed', '{sgbv-accountability}'),
    ('e0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000002', 'A3', 'Open gender desks', 'mogender', 'delayed', '{}'),
    ('e0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000004', 'c0000000-0000-4000-8000-000000000004', 'A1', 'Recruit women soldiers', 'yy-gender', 'ongoing', '{women-in-armed-forces,border-communities}')
  ) AS v (id, plan, obj, code, title, lead, status, tags)
  JOIN organisations o ON o.code = v.lead;

-- ---- indicators --------------------------------------------------------------------------
-- Plan A, reporting year 2022:
--  I1 (O1) percentage, annual, baseline 10, headline 30, 2022 target 20, defence
--  I2 (R1, so O2) number, semiannual, baseline 200, target 100 (downwards), police
--  I3 (A3, so O2) yes/no, once, target 1, mogender
--  I4 (no objective) text, annual, wpsnet; its title tests escaping
--  I5 (O1) number, quarterly, target 50, no baseline, defence
INSERT INTO indicators (id, version, tenant_id, changed_by, plan_id, objective_id, result_id, action_id, code, title,
                        unit, value_type, frequency, baseline, baseline_date, target, target_date, responsible_id,
                        disaggregation, regional_indicator_id, tags)
SELECT v.id::uuid, 1, v.plan::uuid, 'f0000000-0000-4000-8000-000000000001', v.plan::uuid, v.obj::uuid, v.res::uuid,
       v.act::uuid, v.code, v.title, v.unit, v.vt, v.freq, v.baseline::numeric, v.bdate::date, v.target::numeric,
       v.tdate::date, o.id, v.dis::text[], v.regional::uuid, v.tags::text[]
  FROM (VALUES
    -- the RAP's regional indicators first (members map to them)
    ('10000000-0000-4000-8000-000000000031', 'a0000000-0000-4000-8000-000000000003', NULL, NULL, NULL, 'RI1', 'Women in the armed forces (%)', '%', 'percentage', 'annual', NULL, NULL, '30', '2025-12-31', 'fixture-region', '{}', NULL, '{women-in-armed-forces}'),
    ('10000000-0000-4000-8000-000000000032', 'a0000000-0000-4000-8000-000000000003', NULL, NULL, NULL, 'RI2', 'Gender desks established', NULL, 'yes_no', 'once', NULL, NULL, '1', '2025-12-31', 'fixture-region', '{}', NULL, '{}'),
    ('10000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000001', NULL, NULL, 'I1', 'Women in the armed forces', '%', 'percentage', 'annual', '10', '2020-12-31', '30', '2023-12-31', 'defence', '{sex}', '10000000-0000-4000-8000-000000000031', '{women-in-armed-forces}'),
    ('10000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', NULL, 'd0000000-0000-4000-8000-000000000001', NULL, 'I2', 'SGBV cases pending trial', 'cases', 'number', 'semiannual', '200', '2020-12-31', '100', '2023-12-31', 'police', '{}', NULL, '{sgbv-accountability}'),
    ('10000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', NULL, NULL, 'e0000000-0000-4000-8000-000000000003', 'I3', 'Gender desks in police stations', NULL, 'yes_no', 'once', NULL, NULL, '1', '2023-12-31', 'mogender', '{}', '10000000-0000-4000-8000-000000000032', '{}'),
    ('10000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000001', NULL, NULL, NULL, 'I4', E'=cmd|'' /C calc''!A0 <script>alert("x")</script> & more,\n"quoted"', NULL, 'text', 'annual', NULL, NULL, NULL, NULL, 'wpsnet', '{}', NULL, '{}'),
    ('10000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000001', NULL, NULL, 'I5', 'Women peacekeepers deployed', 'persons', 'number', 'quarterly', NULL, NULL, '50', '2023-12-31', 'defence', '{}', NULL, '{}'),
    ('10000000-0000-4000-8000-000000000021', 'a0000000-0000-4000-8000-000000000002', NULL, NULL, NULL, 'D1', 'Draft indicator', NULL, 'number', 'annual', NULL, NULL, '5', NULL, 'mofa', '{}', NULL, '{}'),
    ('10000000-0000-4000-8000-000000000041', 'a0000000-0000-4000-8000-000000000004', 'c0000000-0000-4000-8000-000000000004', NULL, NULL, 'Y1', 'Women in the YY armed forces', '%', 'percentage', 'annual', '15', '2020-12-31', '35', '2025-12-31', 'yy-gender', '{}', '10000000-0000-4000-8000-000000000031', '{climate}'),
    ('10000000-0000-4000-8000-000000000051', 'a0000000-0000-4000-8000-000000000005', NULL, NULL, NULL, 'X1', 'Women in the XX armed forces', '%', 'percentage', 'annual', NULL, NULL, '40', NULL, 'xx-gender', '{}', '10000000-0000-4000-8000-000000000031', '{}')
  ) AS v (id, plan, obj, res, act, code, title, unit, vt, freq, baseline, bdate, target, tdate, resp, dis, regional, tags)
  JOIN organisations o ON o.code = v.resp;

INSERT INTO indicator_targets (id, version, tenant_id, changed_by, plan_id, indicator_id, period_end, value) VALUES
    ('30000000-0000-4000-8000-000000000001', 1, 'a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', '2022-12-31', 20);

-- ---- reports -------------------------------------------------------------------------------
-- sub: when it was first submitted (revision 1, status submitted); app:
-- when it was approved (revision 2), NULL if it is still submitted.
--  I1 2021  14  approved          submitted 2022-02-01 (due 2022-03-01: on time)
--  I1 2022  16  approved          submitted 2023-02-15 (due 2023-03-01: on time)
--  I1 2022  18  approved, corrects the 16 (so the 2022 value is 18)
--  I1 2023  25  submitted only    (not a value)
--  I2 2022H1 180 approved         submitted 2022-09-10 (due 2022-08-29: late)
--  I2 2022H2 150 approved         submitted 2023-01-20 (due 2023-03-01: on time)
--  I4 2022  text approved         submitted 2023-03-05 (due 2023-03-01: late)
--  I5 2021Q4 12 approved          submitted 2022-01-15 (due 2022-03-01: on time)
--  D1 2024  3  approved (draft plan of mofa)
--  Y1 2021  22, Y1 2023 26 approved; X1 2022 30 approved (draft plan of xx-gender)
CREATE TEMPORARY TABLE fixture_reports (id uuid, plan uuid, indicator uuid, ps date, pe date, value numeric,
                                        value_text text, status text, corrects uuid, sub timestamptz,
                                        app timestamptz) ON COMMIT DROP;
INSERT INTO fixture_reports VALUES
    ('20000000-0000-4000-8000-000000000011', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', '2021-01-01', '2021-12-31', 14, NULL, 'approved', NULL, '2022-02-01 10:00Z', '2022-02-10 10:00Z'),
    ('20000000-0000-4000-8000-000000000012', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', '2022-01-01', '2022-12-31', 16, NULL, 'approved', NULL, '2023-02-15 10:00Z', '2023-02-20 10:00Z'),
    ('20000000-0000-4000-8000-000000000013', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', '2022-01-01', '2022-12-31', 18, NULL, 'approved', '20000000-0000-4000-8000-000000000012', '2023-05-02 10:00Z', '2023-05-03 10:00Z'),
    ('20000000-0000-4000-8000-000000000014', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', '2023-01-01', '2023-12-31', 25, NULL, 'submitted', NULL, '2024-01-10 10:00Z', NULL),
    ('20000000-0000-4000-8000-000000000021', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000002', '2022-01-01', '2022-06-30', 180, NULL, 'approved', NULL, '2022-09-10 10:00Z', '2022-09-12 10:00Z'),
    ('20000000-0000-4000-8000-000000000022', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000002', '2022-07-01', '2022-12-31', 150, NULL, 'approved', NULL, '2023-01-20 10:00Z', '2023-01-25 10:00Z'),
    ('20000000-0000-4000-8000-000000000041', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000004', '2022-01-01', '2022-12-31', NULL, 'Good progress', 'approved', NULL, '2023-03-05 10:00Z', '2023-03-06 10:00Z'),
    ('20000000-0000-4000-8000-000000000051', 'a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000005', '2021-10-01', '2021-12-31', 12, NULL, 'approved', NULL, '2022-01-15 10:00Z', '2022-01-16 10:00Z'),
    ('20000000-0000-4000-8000-000000000061', 'a0000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000021', '2024-01-01', '2024-12-31', 3, NULL, 'approved', NULL, '2024-12-01 10:00Z', '2024-12-02 10:00Z'),
    ('20000000-0000-4000-8000-000000000071', 'a0000000-0000-4000-8000-000000000004', '10000000-0000-4000-8000-000000000041', '2021-01-01', '2021-12-31', 22, NULL, 'approved', NULL, '2022-01-20 10:00Z', '2022-01-21 10:00Z'),
    ('20000000-0000-4000-8000-000000000072', 'a0000000-0000-4000-8000-000000000004', '10000000-0000-4000-8000-000000000041', '2023-01-01', '2023-12-31', 26, NULL, 'approved', NULL, '2024-01-20 10:00Z', '2024-01-21 10:00Z'),
    ('20000000-0000-4000-8000-000000000081', 'a0000000-0000-4000-8000-000000000005', '10000000-0000-4000-8000-000000000051', '2022-01-01', '2022-12-31', 30, NULL, 'approved', NULL, '2023-01-20 10:00Z', '2023-01-21 10:00Z');

-- Approved reports first: a correction names an approved report.
INSERT INTO indicator_reports (id, version, tenant_id, changed_by, changed_at, plan_id, indicator_id, period_start,
                               period_end, value, value_text, status, corrects_id)
SELECT id, CASE WHEN app IS NULL THEN 1 ELSE 2 END, plan, 'f0000000-0000-4000-8000-000000000001',
       coalesce(app, sub), plan, indicator, ps, pe, value, value_text, status, corrects
  FROM fixture_reports ORDER BY corrects NULLS FIRST;
INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op, principal_id, at, deleted, before, after)
SELECT 'indicator_report', r.id, s.version, r.plan, CASE s.version WHEN 1 THEN 'create' ELSE 'update' END,
       'f0000000-0000-4000-8000-000000000001', s.at, false,
       CASE s.version WHEN 2 THEN s.fields - 'status' || jsonb_build_object('status', 'submitted') END,
       s.fields
  FROM fixture_reports r
 CROSS JOIN LATERAL (
     SELECT 1 AS version, r.sub AS at,
            jsonb_build_object('plan_id', r.plan, 'indicator_id', r.indicator, 'period_start', r.ps,
                               'period_end', r.pe, 'value', r.value::text, 'value_text', r.value_text,
                               'status', 'submitted', 'corrects_id', r.corrects) AS fields
     UNION ALL
     SELECT 2, r.app,
            jsonb_build_object('plan_id', r.plan, 'indicator_id', r.indicator, 'period_start', r.ps,
                               'period_end', r.pe, 'value', r.value::text, 'value_text', r.value_text,
                               'status', 'approved', 'corrects_id', r.corrects)
      WHERE r.app IS NOT NULL) s;

-- ---- budget lines --------------------------------------------------------------------------
-- 2022: A1 national USD 1000.50 / 800.25 / 600 / 500.10; A1 donor basket USD 2000 / 1500 / - /
-- 1200.40 (gender-responsive); A2 national USD 300.25 / 300 / - / 100; A3 other fund EUR 50 / 0.
-- 2021: A1 national USD 999 (only in plan_totals).
INSERT INTO budget_lines (id, version, tenant_id, changed_by, plan_id, action_id, fiscal_year, currency, costed,
                          allocated, disbursed, spent, funding_source, gender_responsive)
SELECT v.id::uuid, 1, 'a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001',
       'a0000000-0000-4000-8000-000000000001', v.act::uuid, v.fy, v.cur, v.costed::numeric, v.alloc::numeric,
       v.disb::numeric, v.spent::numeric, v.src, v.gr
  FROM (VALUES
    ('40000000-0000-4000-8000-000000000001', 'e0000000-0000-4000-8000-000000000001', 2022, 'USD', '1000.50', '800.25', '600', '500.10', 'national_budget', false),
    ('40000000-0000-4000-8000-000000000002', 'e0000000-0000-4000-8000-000000000001', 2022, 'USD', '2000', '1500', NULL, '1200.40', 'donor_basket_fund', true),
    ('40000000-0000-4000-8000-000000000003', 'e0000000-0000-4000-8000-000000000002', 2022, 'USD', '300.25', '300', NULL, '100', 'national_budget', false),
    ('40000000-0000-4000-8000-000000000004', 'e0000000-0000-4000-8000-000000000003', 2022, 'EUR', '50', '0', NULL, NULL, 'other_fund', NULL),
    ('40000000-0000-4000-8000-000000000005', 'e0000000-0000-4000-8000-000000000001', 2021, 'USD', '999', NULL, NULL, NULL, 'national_budget', false)
  ) AS v (id, act, fy, cur, costed, alloc, disb, spent, src, gr);
