-- Demo organisations for ./deploy/dev.sh (not a migration: never loaded in
-- production). A fictional country, code ZZ, with a lead ministry that
-- coordinates its National Action Plan and the partners that implement it;
-- a regional organisation whose member states are ZZ and two more
-- fictional countries, XA and XB (user-assigned ISO 3166 codes), each
-- with the ministry that coordinates its own NAP; and a group of donors.
--
-- The ids are fixed because the demo plan files (deploy/demo/*.json) name
-- these organisations as owners, lead organisations, funders and
-- reporters. A database where these codes already exist with other ids
-- (made before the ids were fixed) keeps its rows; dev.sh then skips the
-- demo plans and says how to start afresh.
INSERT INTO organisations (id, code, name, kind, country, default_role) VALUES
    ('0e000000-0000-4000-8000-000000000001', 'mogender',
     'Ministry of Gender Equality and Social Protection', 'ministry', 'ZZ', 'coordinator'),
    ('0e000000-0000-4000-8000-000000000002', 'mofa',
     'Ministry of Foreign Affairs', 'ministry', 'ZZ', 'implementer'),
    ('0e000000-0000-4000-8000-000000000003', 'defence',
     'Ministry of Defence', 'ministry', 'ZZ', 'implementer'),
    ('0e000000-0000-4000-8000-000000000004', 'police',
     'National Police Service', 'police', 'ZZ', 'implementer'),
    ('0e000000-0000-4000-8000-000000000005', 'wpsnet',
     'Women Peacebuilders Network', 'cso', 'ZZ', 'implementer'),
    ('0e000000-0000-4000-8000-000000000006', 'parliament',
     'Parliamentary Caucus on Women, Peace and Security', 'parliament', 'ZZ', 'observer'),
    ('0e000000-0000-4000-8000-000000000007', 'regional',
     'Regional Economic Community (demo)', 'regional_organisation', NULL, 'regional'),
    ('0e000000-0000-4000-8000-000000000008', 'donors',
     'Women, Peace and Security Basket Fund donors group', 'donor', NULL, 'observer'),
    ('0e000000-0000-4000-8000-000000000009', 'xa-women',
     'Ministry of Women''s Affairs of Xandria', 'ministry', 'XA', 'coordinator'),
    ('0e000000-0000-4000-8000-00000000000a', 'xb-gender',
     'Ministry of Gender and Family of Xebonia', 'ministry', 'XB', 'coordinator')
ON CONFLICT (code) DO NOTHING;

-- The regional organisation's member states.
INSERT INTO region_members (region_id, country, since)
SELECT o.id, m.country, m.since::date
  FROM organisations o,
       (VALUES ('ZZ', '2001-05-28'), ('XA', '2001-05-28'), ('XB', '2009-07-01')) AS m (country, since)
 WHERE o.code = 'regional'
ON CONFLICT DO NOTHING;
