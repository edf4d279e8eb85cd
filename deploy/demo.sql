-- Demo organisations for ./deploy/dev.sh (not a migration: never loaded in
-- production). A fictional country, code ZZ, with a lead ministry that
-- coordinates its National Action Plan and the partners that implement it.
INSERT INTO organisations (code, name, kind, country, default_role) VALUES
    ('mogender',   'Ministry of Gender Equality and Social Protection', 'ministry', 'ZZ', 'coordinator'),
    ('mofa',       'Ministry of Foreign Affairs',                       'ministry', 'ZZ', 'implementer'),
    ('defence',    'Ministry of Defence',                               'ministry', 'ZZ', 'implementer'),
    ('police',     'National Police Service',                           'police',   'ZZ', 'implementer'),
    ('wpsnet',     'Women Peacebuilders Network',                       'cso',      'ZZ', 'implementer'),
    ('parliament', 'Parliamentary Caucus on Women, Peace and Security', 'parliament', 'ZZ', 'observer'),
    ('regional',   'Regional Economic Community (demo)',                'regional_organisation', NULL, 'regional')
ON CONFLICT (code) DO NOTHING;
