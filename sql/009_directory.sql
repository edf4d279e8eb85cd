-- 009: the directory synced. Organisations, the member states of regional
-- organisations, people (principals), their roles and their devices become
-- entity types of the engine, like plan
-- content: versioned, merged, in the feed and the history, and written by
-- the administrators of each organisation from their own devices. They
-- belong to one tenant, the directory (napsync_directory_tenant()), which a
-- device subscribes to with the `directory` scope; what each principal
-- receives of it is filtered per record (docs/authorisation.md).
--
-- Administration through SQL (napsync_register_device, napsync_revoke_device,
-- scripts such as deploy/demo.sql) keeps working: a write to a directory
-- table that does not come from the engine is stamped and logged by the
-- triggers below (a new version, a revision whose principal is NULL, "the
-- administrator", and a feed row), so that devices see it like any change.
-- Such writes need a role that bypasses row-level security (a superuser, or
-- BYPASSRLS): the daemon's own role writes the directory only as a principal
-- through the engine. Never edit this file once landed.

CREATE FUNCTION napsync_directory_tenant() RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'd1ec7000-0000-4000-8000-000000000000'::uuid
$$;

-- directory: the type's records belong to the directory tenant.
-- server_columns: columns of the table that are not fields (the server
-- maintains them, the engine neither reads nor writes them).
ALTER TABLE sync_entity_types
    ADD COLUMN directory boolean NOT NULL DEFAULT false,
    ADD COLUMN server_columns text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT sync_entity_types_directory_tenant CHECK (NOT directory OR tenant_field IS NULL);

-- NULL: a change made by an administrator through SQL, not by a principal.
ALTER TABLE sync_revisions ALTER COLUMN principal_id DROP NOT NULL;

-- The migration runs as the database's owner, whom FORCE makes subject to
-- row-level security: the backfill below writes revisions no principal made.
-- Restored at the end of this file, in the same transaction.
ALTER TABLE sync_revisions NO FORCE ROW LEVEL SECURITY;

-- ---- the engine's columns --------------------------------------------------------------

-- 003's region_members becomes a synced table of its own; region_members
-- stays, as the live memberships (the reports read it; scripts insert
-- through it).
ALTER TABLE region_members RENAME TO region_memberships;

DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['organisations', 'principals', 'principal_roles', 'devices',
                                   'region_memberships'] LOOP
        EXECUTE format('ALTER TABLE %I'
                       ' ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version > 0),'
                       ' ADD COLUMN tenant_id uuid NOT NULL DEFAULT napsync_directory_tenant()'
                       '     CHECK (tenant_id = napsync_directory_tenant()),'
                       ' ADD COLUMN deleted boolean NOT NULL DEFAULT false,'
                       ' ADD COLUMN changed_by uuid REFERENCES principals (id),'
                       ' ADD COLUMN changed_device uuid REFERENCES devices (id),'
                       ' ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now()', v_table);
    END LOOP;
END $$;

-- A role is a record of its own: granted (created) and withdrawn (deleted).
ALTER TABLE principal_roles ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE principal_roles DROP CONSTRAINT principal_roles_pkey;
ALTER TABLE principal_roles ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX principal_roles_live_idx ON principal_roles (principal_id, organisation_id, role)
    WHERE NOT deleted;

-- So is a membership: a country joins (created) and leaves (deleted).
ALTER TABLE region_memberships ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE region_memberships DROP CONSTRAINT region_members_pkey;
ALTER TABLE region_memberships ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX region_memberships_live_idx ON region_memberships (region_id, country)
    WHERE NOT deleted;
-- security_invoker: a write through the view is checked as its writer (an
-- administrator's SQL), not as the view's owner.
CREATE VIEW region_members WITH (security_invoker = true) AS
    SELECT region_id, country, since FROM region_memberships WHERE NOT deleted;

-- A device belongs to its principal's organisation (its administrators
-- manage it); its certificate's fingerprint and whether it is revoked are
-- fields, cert_sha256 and revoked_at follow from them.
ALTER TABLE devices
    ADD COLUMN organisation_id uuid REFERENCES organisations (id),
    ADD COLUMN fingerprint text,
    ADD COLUMN revoked boolean DEFAULT false; -- NULL (created without it): not revoked
UPDATE devices d
   SET organisation_id = p.organisation_id, fingerprint = encode(d.cert_sha256, 'hex'),
       revoked = d.revoked_at IS NOT NULL
  FROM principals p WHERE p.id = d.principal_id;
ALTER TABLE devices ALTER COLUMN organisation_id SET NOT NULL,
                    ALTER COLUMN fingerprint SET NOT NULL;
CREATE INDEX devices_organisation_idx ON devices (organisation_id);
CREATE INDEX principals_organisation_idx ON principals (organisation_id);

-- One push may create a person, the role and the device together, in any
-- order: the references between directory records are checked at COMMIT.
ALTER TABLE principals ALTER CONSTRAINT principals_organisation_id_fkey
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE principal_roles ALTER CONSTRAINT principal_roles_principal_id_fkey
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE principal_roles ALTER CONSTRAINT principal_roles_organisation_id_fkey
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE devices ALTER CONSTRAINT devices_principal_id_fkey DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE devices ALTER CONSTRAINT devices_organisation_id_fkey DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE organisations ALTER CONSTRAINT organisations_parent_id_fkey
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE region_memberships ALTER CONSTRAINT region_members_region_id_fkey
    DEFERRABLE INITIALLY DEFERRED;

INSERT INTO sync_entity_types (name, table_name, tenant_field, directory, server_columns) VALUES
    ('organisation', 'organisations', NULL, true, '{created_at}'),
    ('principal', 'principals', NULL, true, '{created_at}'),
    ('principal_role', 'principal_roles', NULL, true, '{}'),
    ('device', 'devices', NULL, true, '{cert_sha256,created_at,revoked_at}'),
    ('region_membership', 'region_memberships', NULL, true, '{}');

INSERT INTO napsync_references (entity_type, field, target_type, same_plan) VALUES
    ('organisation', 'parent_id', 'organisation', false),
    ('principal', 'organisation_id', 'organisation', false),
    ('principal_role', 'principal_id', 'principal', false),
    ('principal_role', 'organisation_id', 'organisation', false),
    ('device', 'principal_id', 'principal', false),
    ('device', 'organisation_id', 'organisation', false),
    ('region_membership', 'region_id', 'organisation', false);

-- ---- the record's fields as the engine stores them ---------------------------------------

-- A directory row's fields as JSON, as the engine writes them in revisions
-- (the engine's columns and the type's server columns left out).
CREATE FUNCTION napsync_directory_fields(p_row jsonb, p_server text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_row - ARRAY['id', 'version', 'tenant_id', 'deleted', 'changed_by', 'changed_device',
                         'changed_at'] - p_server
$$;

-- The existing rows: version 1, one revision each and a feed row, so that
-- a device subscribing to the directory receives them.
DO $$
DECLARE
    t     record;
    v_n   bigint;
    v_seq bigint;
BEGIN
    FOR t IN SELECT name, table_name, server_columns FROM sync_entity_types
              WHERE directory ORDER BY name LOOP
        EXECUTE format('INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op,'
                       ' principal_id, device_id, at, deleted, before, after)'
                       ' SELECT $1, r.id, 1, r.tenant_id, ''create'', NULL, NULL, r.changed_at,'
                       ' false, NULL, napsync_directory_fields(to_jsonb(r), $2)'
                       ' FROM %I r', t.table_name)
            USING t.name, t.server_columns;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        CONTINUE WHEN v_n = 0;
        UPDATE sync_feed_head SET seq = seq + v_n RETURNING seq - v_n INTO v_seq;
        EXECUTE format('INSERT INTO sync_feed (seq, entity_type, record_id, version, tenant_id)'
                       ' SELECT $1 + row_number() OVER (ORDER BY r.id), $2, r.id, 1, r.tenant_id'
                       ' FROM %I r', t.table_name)
            USING v_seq, t.name;
    END LOOP;
END $$;

-- ---- validation ------------------------------------------------------------------------

CREATE FUNCTION napsync_validate_organisation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM napsync_require('organisation', 'code', NEW.code);
    IF NEW.code !~ '^[a-z0-9][a-z0-9-]{0,31}$' THEN
        PERFORM napsync_invalid('organisation', 'code',
            'lowercase letters, digits and hyphens, 1 to 32, starting with a letter or digit');
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.code <> OLD.code THEN
        PERFORM napsync_invalid('organisation', 'code', 'cannot change: scripts and certificates name it');
    END IF;
    PERFORM napsync_require('organisation', 'name', NEW.name);
    PERFORM napsync_check_text('organisation', 'name', NEW.name, 200);
    PERFORM napsync_require('organisation', 'kind', NEW.kind);
    PERFORM napsync_check_enum('organisation', 'kind', NEW.kind,
        ARRAY['ministry', 'agency', 'armed_forces', 'police', 'cso', 'local_government',
              'regional_organisation', 'parliament', 'donor']);
    IF NEW.country IS NOT NULL AND NEW.country !~ '^[A-Z]{2}$' THEN
        PERFORM napsync_invalid('organisation', 'country', 'an ISO 3166-1 alpha-2 code such as "KE"');
    END IF;
    IF NEW.parent_id = NEW.id THEN
        PERFORM napsync_invalid('organisation', 'parent_id', 'an organisation is not its own parent');
    END IF;
    PERFORM napsync_require('organisation', 'default_role', NEW.default_role);
    PERFORM napsync_check_enum('organisation', 'default_role', NEW.default_role,
        ARRAY['admin', 'coordinator', 'implementer', 'regional', 'observer']);
    RETURN NEW;
END $$;

CREATE FUNCTION napsync_validate_region_membership() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM napsync_require('region_membership', 'region_id', NEW.region_id);
    PERFORM napsync_require('region_membership', 'country', NEW.country);
    IF NEW.country !~ '^[A-Z]{2}$' THEN
        PERFORM napsync_invalid('region_membership', 'country', 'an ISO 3166-1 alpha-2 code such as "KE"');
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.region_id <> OLD.region_id OR NEW.country <> OLD.country)
       AND NOT NEW.deleted THEN
        PERFORM napsync_invalid('region_membership', 'country',
            'a country joins (a new membership) or leaves (deleted), it is not changed');
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION napsync_validate_principal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM napsync_require('principal', 'organisation_id', NEW.organisation_id);
    IF TG_OP = 'UPDATE' AND NEW.organisation_id <> OLD.organisation_id THEN
        PERFORM napsync_invalid('principal', 'organisation_id',
            'cannot change: a person acts for another organisation through a role there');
    END IF;
    PERFORM napsync_require('principal', 'name', NEW.name);
    PERFORM napsync_check_text('principal', 'name', NEW.name, 200);
    RETURN NEW;
END $$;

CREATE FUNCTION napsync_validate_principal_role() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM napsync_require('principal_role', 'principal_id', NEW.principal_id);
    PERFORM napsync_require('principal_role', 'organisation_id', NEW.organisation_id);
    PERFORM napsync_require('principal_role', 'role', NEW.role);
    PERFORM napsync_check_enum('principal_role', 'role', NEW.role,
        ARRAY['admin', 'coordinator', 'implementer', 'regional', 'observer']);
    IF TG_OP = 'UPDATE' AND (NEW.principal_id <> OLD.principal_id
                             OR NEW.organisation_id <> OLD.organisation_id
                             OR NEW.role <> OLD.role) AND NOT NEW.deleted THEN
        PERFORM napsync_invalid('principal_role', 'role',
            'a role is granted or withdrawn, not changed: delete it and grant another');
    END IF;
    RETURN NEW;
END $$;

-- Also keeps cert_sha256 and revoked_at, which napsyncd's authentication
-- reads, in step with the fields.
CREATE FUNCTION napsync_validate_device() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Written through SQL the way 001 wrote devices (a principal and the
    -- certificate's hash): the rest follows from them.
    IF TG_OP = 'INSERT' AND napsync_rls_reader() IS DISTINCT FROM 'engine' THEN
        IF NEW.organisation_id IS NULL THEN
            SELECT organisation_id INTO NEW.organisation_id FROM principals WHERE id = NEW.principal_id;
        END IF;
        IF NEW.fingerprint IS NULL AND NEW.cert_sha256 IS NOT NULL THEN
            NEW.fingerprint := encode(NEW.cert_sha256, 'hex');
        END IF;
        IF NEW.revoked_at IS NOT NULL THEN
            NEW.revoked := true;
        END IF;
    END IF;
    PERFORM napsync_require('device', 'name', NEW.name);
    IF NEW.name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' THEN
        PERFORM napsync_invalid('device', 'name',
            'letters, digits, dots, hyphens and underscores, 1 to 64, starting with a letter or digit');
    END IF;
    PERFORM napsync_require('device', 'principal_id', NEW.principal_id);
    PERFORM napsync_require('device', 'organisation_id', NEW.organisation_id);
    PERFORM napsync_require('device', 'fingerprint', NEW.fingerprint);
    IF NEW.fingerprint !~ '^[0-9a-f]{64}$' THEN
        PERFORM napsync_invalid('device', 'fingerprint',
            'the SHA-256 of the device certificate (DER): 64 lowercase hex digits');
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.fingerprint <> OLD.fingerprint THEN
            PERFORM napsync_invalid('device', 'fingerprint',
                'cannot change: register the new certificate as a new device');
        END IF;
        IF NEW.principal_id <> OLD.principal_id OR NEW.organisation_id <> OLD.organisation_id THEN
            PERFORM napsync_invalid('device', 'principal_id', 'a device cannot change hands');
        END IF;
        IF OLD.revoked IS TRUE AND NEW.revoked IS NOT TRUE THEN
            PERFORM napsync_invalid('device', 'revoked',
                'a revoked device stays revoked: register a new one');
        END IF;
    END IF;
    IF NEW.revoked_reason IS NOT NULL AND length(NEW.revoked_reason) > 500 THEN
        PERFORM napsync_invalid('device', 'revoked_reason', 'at most 500 characters');
    END IF;
    NEW.cert_sha256 := decode(NEW.fingerprint, 'hex');
    IF (NEW.revoked IS TRUE OR NEW.deleted) AND NEW.revoked_at IS NULL THEN
        NEW.revoked_at := now();
    END IF;
    RETURN NEW;
END $$;

-- At COMMIT: a device belongs to its principal's organisation; a role's
-- principal exists.
CREATE FUNCTION napsync_check_device() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN RETURN NULL; END IF;
    IF NOT EXISTS (SELECT 1 FROM principals p
                    WHERE p.id = NEW.principal_id AND p.organisation_id = NEW.organisation_id) THEN
        PERFORM napsync_invalid('device', 'organisation_id',
                                'is not the organisation of the device''s person');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER organisations_validate BEFORE INSERT OR UPDATE ON organisations
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_organisation();
CREATE TRIGGER principals_validate BEFORE INSERT OR UPDATE ON principals
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_principal();
CREATE TRIGGER principal_roles_validate BEFORE INSERT OR UPDATE ON principal_roles
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_principal_role();
CREATE TRIGGER devices_validate BEFORE INSERT OR UPDATE ON devices
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_device();
CREATE TRIGGER region_memberships_validate BEFORE INSERT OR UPDATE ON region_memberships
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_region_membership();
CREATE CONSTRAINT TRIGGER devices_rules AFTER INSERT OR UPDATE ON devices
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION napsync_check_device();

-- 003's reference check, now that organisations and principals are engine
-- records: a reference to one names a live one, and one that live records
-- refer to cannot be deleted, like any other record.
CREATE OR REPLACE FUNCTION napsync_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_type   text;
    v_row    jsonb := to_jsonb(NEW);
    v_ref    record;
    v_target uuid;
    v_table  text;
    v_tenant uuid;
    v_gone   boolean;
    v_n      bigint;
BEGIN
    SELECT name INTO v_type FROM sync_entity_types WHERE table_name = TG_TABLE_NAME;
    IF NEW.deleted THEN
        IF TG_OP = 'UPDATE' AND NOT OLD.deleted THEN
            FOR v_ref IN SELECT r.entity_type, r.field, t.table_name
                           FROM napsync_references r
                           JOIN sync_entity_types t ON t.name = r.entity_type
                          WHERE r.target_type = v_type
                          ORDER BY r.entity_type, r.field LOOP
                EXECUTE format('SELECT count(*) FROM %I WHERE %I = $1 AND NOT deleted',
                               v_ref.table_name, v_ref.field)
                   INTO v_n USING NEW.id;
                IF v_n > 0 THEN
                    PERFORM napsync_invalid(v_type, 'deleted',
                        format('%s live %s record(s) refer to it through %s; delete or move them first',
                               v_n, v_ref.entity_type, v_ref.field));
                END IF;
            END LOOP;
        END IF;
        RETURN NULL;
    END IF;
    FOR v_ref IN SELECT field, target_type, same_plan FROM napsync_references
                  WHERE entity_type = v_type ORDER BY field LOOP
        v_target := (v_row ->> v_ref.field)::uuid;
        CONTINUE WHEN v_target IS NULL;
        SELECT table_name INTO v_table FROM sync_entity_types WHERE name = v_ref.target_type;
        EXECUTE format('SELECT tenant_id, deleted FROM %I WHERE id = $1', v_table)
           INTO v_tenant, v_gone USING v_target;
        IF v_tenant IS NULL THEN
            PERFORM napsync_invalid(v_type, v_ref.field,
                                    format('no %s %s', v_ref.target_type, v_target));
        ELSIF v_gone THEN
            PERFORM napsync_invalid(v_type, v_ref.field,
                                    format('%s %s is deleted', v_ref.target_type, v_target));
        ELSIF v_ref.same_plan AND v_tenant <> NEW.tenant_id THEN
            PERFORM napsync_invalid(v_type, v_ref.field,
                format('%s %s belongs to another plan', v_ref.target_type, v_target));
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- ---- administration through SQL ----------------------------------------------------------

-- Before a write that does not come from the engine: a new version by "the
-- administrator" (the engine sets these columns itself).
CREATE FUNCTION napsync_directory_admin_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF napsync_rls_reader() IS NOT DISTINCT FROM 'engine' THEN
        RETURN NEW;
    END IF;
    NEW.tenant_id := napsync_directory_tenant();
    NEW.changed_by := NULL;
    NEW.changed_device := NULL;
    NEW.changed_at := now();
    NEW.version := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE OLD.version + 1 END;
    RETURN NEW;
END $$;

-- After it: the revision and the feed row the engine would have written,
-- and the notification that wakes subscribers.
CREATE FUNCTION napsync_directory_admin_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_type   text;
    v_server text[];
    v_seq    bigint;
BEGIN
    IF napsync_rls_reader() IS NOT DISTINCT FROM 'engine' THEN
        RETURN NULL;
    END IF;
    SELECT name, server_columns INTO v_type, v_server
      FROM sync_entity_types WHERE table_name = TG_TABLE_NAME;
    INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op, principal_id,
                                device_id, deleted, before, after)
    VALUES (v_type, NEW.id, NEW.version, NEW.tenant_id,
            CASE WHEN TG_OP = 'INSERT' THEN 'create'
                 WHEN NEW.deleted AND NOT OLD.deleted THEN 'delete'
                 ELSE 'update' END,
            NULL, NULL, NEW.deleted,
            CASE WHEN TG_OP = 'UPDATE' THEN napsync_directory_fields(to_jsonb(OLD), v_server) END,
            napsync_directory_fields(to_jsonb(NEW), v_server));
    UPDATE sync_feed_head SET seq = seq + 1 RETURNING seq INTO v_seq;
    INSERT INTO sync_feed (seq, entity_type, record_id, version, tenant_id)
    VALUES (v_seq, v_type, NEW.id, NEW.version, NEW.tenant_id);
    PERFORM pg_notify('napsync_feed', v_seq::text);
    RETURN NULL;
END $$;

DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['organisations', 'principals', 'principal_roles', 'devices',
                                   'region_memberships'] LOOP
        EXECUTE format('CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE ON %I'
                       ' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW'
                       ' EXECUTE FUNCTION napsync_check_references()',
                       v_table || '_references', v_table);
        -- "a_" sorts first: the stamp comes before the validation triggers.
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %I'
                       ' FOR EACH ROW EXECUTE FUNCTION napsync_directory_admin_stamp()',
                       v_table || '_a_stamp', v_table);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE ON %I'
                       ' FOR EACH ROW EXECUTE FUNCTION napsync_directory_admin_log()',
                       v_table || '_log', v_table);
    END LOOP;
END $$;

-- 001's functions, for the new columns: the device's organisation and
-- fingerprint; a withdrawn role or a deleted person is not reused.
CREATE OR REPLACE FUNCTION napsync_register_device(p_org_code text, p_principal text, p_role text,
                                                   p_device text, p_cert_sha256_hex text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_org       organisations%ROWTYPE;
    v_principal uuid;
    v_device    uuid;
BEGIN
    SELECT * INTO v_org FROM organisations WHERE code = p_org_code AND NOT deleted;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown organisation code "%"', p_org_code USING ERRCODE = 'no_data_found';
    END IF;
    IF p_cert_sha256_hex !~ '^[0-9a-fA-F]{64}$' THEN
        RAISE EXCEPTION 'certificate fingerprint must be 64 hex digits' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT id INTO v_principal FROM principals
     WHERE organisation_id = v_org.id AND name = p_principal;
    IF NOT FOUND THEN
        INSERT INTO principals (organisation_id, name) VALUES (v_org.id, p_principal)
        RETURNING id INTO v_principal;
    ELSIF EXISTS (SELECT 1 FROM principals WHERE id = v_principal AND deleted) THEN
        RAISE EXCEPTION 'person "%" of "%" has been deleted', p_principal, p_org_code
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO principal_roles (principal_id, organisation_id, role)
    SELECT v_principal, v_org.id, coalesce(nullif(p_role, ''), v_org.default_role)
     WHERE NOT EXISTS (SELECT 1 FROM principal_roles
                        WHERE principal_id = v_principal AND organisation_id = v_org.id
                          AND role = coalesce(nullif(p_role, ''), v_org.default_role)
                          AND NOT deleted);
    INSERT INTO devices (principal_id, organisation_id, name, fingerprint)
    VALUES (v_principal, v_org.id, p_device, lower(p_cert_sha256_hex))
    RETURNING id INTO v_device;
    RETURN v_device;
END $$;

CREATE OR REPLACE FUNCTION napsync_revoke_device(p_device text, p_reason text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE devices SET revoked = true, revoked_reason = coalesce(p_reason, revoked_reason)
     WHERE name = p_device AND revoked IS NOT TRUE;
    RETURN FOUND OR EXISTS (SELECT 1 FROM devices WHERE name = p_device);
END $$;

-- ---- row-level security ------------------------------------------------------------------

-- 008's actor, without withdrawn roles or deleted people.
CREATE OR REPLACE FUNCTION napsync_rls_actor(p_principal uuid, OUT org uuid, OUT roles text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT p.organisation_id,
           coalesce(array_agg(r.role) FILTER (WHERE r.role IS NOT NULL), '{}')
      INTO org, roles
      FROM principals p
      LEFT JOIN principal_roles r ON r.principal_id = p.id AND r.organisation_id = p.organisation_id
                                 AND NOT r.deleted
     WHERE p.id = p_principal AND NOT p.deleted
     GROUP BY p.organisation_id;
END $$;

-- Whether principal p may make one change of a directory record (p_op as
-- in napsync_rls_may_write; 'resolve' of a conflict on p_id). Only
-- administrators write the directory: the people, roles and devices of
-- their own organisation, their organisation itself (not its parent), the
-- organisations whose parent it is (create, change, delete), and the member
-- states of a regional organisation.
CREATE FUNCTION napsync_rls_directory_may_write(p uuid, p_type text, p_id uuid, p_op text,
                                                p_before jsonb, p_after jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    a       record;
    v_org   uuid;
    v_field text;
    v_table text;
BEGIN
    SELECT * INTO a FROM napsync_rls_actor(p);
    IF a.org IS NULL OR NOT ('admin' = ANY (a.roles)) THEN
        RETURN false;
    END IF;
    IF p_op = 'resolve' THEN
        SELECT table_name INTO v_table FROM sync_entity_types WHERE name = p_type AND directory;
        IF v_table IS NULL THEN
            RETURN false;
        END IF;
        EXECUTE format('SELECT to_jsonb(t) FROM %I t WHERE id = $1', v_table) INTO p_after USING p_id;
        IF p_after IS NULL THEN
            RETURN false;
        END IF;
        p_op := 'row';
    END IF;
    IF p_type = 'organisation' THEN
        IF p_op = 'row' THEN
            RETURN p_id = a.org OR (p_after ->> 'parent_id')::uuid = a.org;
        END IF;
        IF p_op = 'create' THEN
            RETURN (p_after ->> 'parent_id')::uuid = a.org;
        END IF;
        IF p_op = 'delete' THEN
            RETURN (p_before ->> 'parent_id')::uuid = a.org;
        END IF;
        -- An update: of one's own organisation, its parent unchanged; or of
        -- a child that stays one.
        RETURN (p_id = a.org AND (p_before -> 'parent_id') IS NOT DISTINCT FROM (p_after -> 'parent_id'))
            OR ((p_before ->> 'parent_id')::uuid = a.org AND (p_after ->> 'parent_id')::uuid = a.org);
    END IF;
    IF p_type NOT IN ('principal', 'principal_role', 'device', 'region_membership') THEN
        RETURN false;
    END IF;
    -- A membership is the regional organisation's.
    v_field := CASE p_type WHEN 'region_membership' THEN 'region_id' ELSE 'organisation_id' END;
    v_org := (coalesce(p_after, p_before) ->> v_field)::uuid;
    RETURN v_org = a.org
       AND (p_before IS NULL OR (p_before ->> v_field)::uuid = a.org);
END $$;

DROP POLICY revisions_write ON sync_revisions;
CREATE POLICY revisions_write ON sync_revisions FOR INSERT
    WITH CHECK (CASE WHEN tenant_id = napsync_directory_tenant()
                     THEN napsync_rls_directory_may_write(principal_id, entity_type, record_id, op,
                                                          before, CASE WHEN deleted THEN NULL ELSE after END)
                     ELSE napsync_rls_may_write(principal_id, entity_type, tenant_id, op, before,
                                                CASE WHEN deleted THEN NULL ELSE after END) END);

DROP POLICY conflicts_resolve ON sync_conflicts;
CREATE POLICY conflicts_resolve ON sync_conflicts FOR UPDATE
    USING (true)
    WITH CHECK (resolved_by IS NULL
                OR CASE WHEN tenant_id = napsync_directory_tenant()
                        THEN napsync_rls_directory_may_write(resolved_by, entity_type, record_id,
                                                             'resolve', NULL, NULL)
                        ELSE napsync_rls_may_write(resolved_by, entity_type, tenant_id, 'resolve',
                                                   NULL, NULL) END);

-- Whether the reader principal is an administrator of its organisation.
CREATE FUNCTION napsync_rls_reader_is_admin() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT 'admin' = ANY (roles) FROM napsync_rls_reader_actor()), false)
$$;

-- What a principal sees of the directory (inlined into the policies; R is
-- the reader's organisation, ME the reader context): every organisation;
-- every regional organisation's member states; the people and roles of its
-- own organisation; devices of its own organisation if an administrator,
-- else its own.
CREATE FUNCTION napsync_rls_directory_visible(p_type text, p_row jsonb, p_org uuid, p_reader text,
                                              p_admin boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_type IN ('organisation', 'region_membership')
        OR (p_type IN ('principal', 'principal_role', 'device')
            AND (p_row ->> 'organisation_id')::uuid = p_org
            AND (p_type <> 'device' OR p_admin OR p_row ->> 'principal_id' = p_reader))
$$;

DROP POLICY revisions_read ON sync_revisions;
CREATE POLICY revisions_read ON sync_revisions FOR SELECT
    USING ((SELECT napsync_rls_reader_mode()) = 'engine'
           OR (tenant_id IN (SELECT p.id FROM plans p)
               AND ((SELECT napsync_rls_reader_sees_all())
                    OR napsync_rls_record_for_readers(entity_type, after ->> 'status')))
           OR (tenant_id = napsync_directory_tenant()
               AND (SELECT napsync_rls_reader_mode()) = 'principal'
               AND napsync_rls_directory_visible(entity_type, after,
                                                 (SELECT napsync_rls_reader_org()),
                                                 (SELECT napsync_rls_reader()),
                                                 (SELECT napsync_rls_reader_is_admin()))));

DROP POLICY conflicts_read ON sync_conflicts;
CREATE POLICY conflicts_read ON sync_conflicts FOR SELECT
    USING ((SELECT napsync_rls_reader_mode()) = 'engine'
           OR (tenant_id IN (SELECT p.id FROM plans p)
               AND ((SELECT napsync_rls_reader_sees_all())
                    OR napsync_rls_record_for_readers(entity_type, NULL)))
           OR (tenant_id = napsync_directory_tenant()
               AND (SELECT napsync_rls_reader_mode()) = 'principal'
               AND (SELECT napsync_rls_reader_is_admin())));

-- The directory tables themselves: napsyncd authenticates devices and
-- looks up actors from them before any reader context exists, so they
-- are readable by the daemon's role; what a device receives of them comes
-- through sync_revisions, filtered above. Rows are written by the engine
-- for a principal who may hold them, or by a role that bypasses RLS.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT name, table_name FROM sync_entity_types WHERE directory ORDER BY name LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.table_name);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t.table_name);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT USING (true)',
                       t.table_name || '_read', t.table_name);
        EXECUTE format('CREATE POLICY %I ON %I FOR INSERT WITH CHECK '
                       '(napsync_rls_directory_may_write(changed_by, %L, id, ''row'', NULL,'
                       ' to_jsonb(%I)) OR deleted)',
                       t.table_name || '_insert', t.table_name, t.name, t.table_name);
        EXECUTE format('CREATE POLICY %I ON %I FOR UPDATE USING (true) WITH CHECK '
                       '(napsync_rls_directory_may_write(changed_by, %L, id, ''row'', NULL,'
                       ' to_jsonb(%I)) OR deleted)',
                       t.table_name || '_update', t.table_name, t.name, t.table_name);
    END LOOP;
END $$;

ALTER TABLE sync_revisions FORCE ROW LEVEL SECURITY;
