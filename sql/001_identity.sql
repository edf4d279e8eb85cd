-- 001: who may connect. Organisations, the principals (people or services)
-- that act for them, their roles, and the devices whose certificates
-- identify a principal. Never edit this file once landed: add a new one.

CREATE TABLE organisations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Short stable handle used by administrators and scripts ("mogec").
    code         text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind         text NOT NULL CHECK (kind IN ('ministry', 'agency', 'armed_forces', 'police',
                                               'cso', 'local_government', 'regional_organisation',
                                               'parliament', 'donor')),
    -- ISO 3166-1 alpha-2; NULL for regional organisations.
    country      text CHECK (country ~ '^[A-Z]{2}$'),
    parent_id    uuid REFERENCES organisations (id),
    -- The role a new principal of this organisation gets unless told otherwise.
    default_role text NOT NULL DEFAULT 'implementer'
                 CHECK (default_role IN ('admin', 'coordinator', 'implementer', 'regional', 'observer')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE principals (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organisation_id, name)
);

-- Roles are held per organisation, so a principal can later act for a
-- second organisation (a regional body's member, say) with other rights.
CREATE TABLE principal_roles (
    principal_id    uuid NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    role            text NOT NULL
                    CHECK (role IN ('admin', 'coordinator', 'implementer', 'regional', 'observer')),
    PRIMARY KEY (principal_id, organisation_id, role)
);

CREATE TABLE devices (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    principal_id   uuid NOT NULL REFERENCES principals (id),
    name           text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    -- SHA-256 of the device certificate (DER): what napsyncd looks up.
    cert_sha256    bytea NOT NULL UNIQUE CHECK (length(cert_sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text
);

CREATE INDEX devices_principal_idx ON devices (principal_id);

-- Administration goes through these functions so that scripts, the dev
-- environment and production use one definition of "register" and "revoke".

-- Registers a device for a principal of an organisation, creating the
-- principal (with the given role, or the organisation's default role) if it
-- does not exist. Returns the device id.
CREATE FUNCTION napsync_register_device(p_org_code text, p_principal text, p_role text,
                                        p_device text, p_cert_sha256_hex text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_org       organisations%ROWTYPE;
    v_principal uuid;
    v_device    uuid;
BEGIN
    SELECT * INTO v_org FROM organisations WHERE code = p_org_code;
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
    END IF;
    INSERT INTO principal_roles (principal_id, organisation_id, role)
    VALUES (v_principal, v_org.id, coalesce(nullif(p_role, ''), v_org.default_role))
    ON CONFLICT DO NOTHING;
    INSERT INTO devices (principal_id, name, cert_sha256)
    VALUES (v_principal, p_device, decode(p_cert_sha256_hex, 'hex'))
    RETURNING id INTO v_device;
    RETURN v_device;
END $$;

-- Revokes a device by name. Returns false if there is no such device.
CREATE FUNCTION napsync_revoke_device(p_device text, p_reason text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE devices SET revoked_at = coalesce(revoked_at, now()),
                       revoked_reason = coalesce(p_reason, revoked_reason)
     WHERE name = p_device;
    RETURN FOUND;
END $$;
