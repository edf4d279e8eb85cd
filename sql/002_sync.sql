-- 002: the versioned-record engine. Every synced entity type is a typed
-- table with the same leading columns; the engine learns each type's fields
-- from the table itself (sync_entity_types names the tables). Every change
-- is a revision (the merge base and the audit history) and a position in
-- one totally ordered feed. Never edit this file once landed.

-- The entity types the engine serves. The typed table must have the columns
-- id, version, tenant_id, deleted, changed_by, changed_device, changed_at;
-- every other column is a field.
CREATE TABLE sync_entity_types (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,31}$'),
    table_name   text NOT NULL UNIQUE CHECK (table_name ~ '^[a-z][a-z0-9_]{0,62}$'),
    -- The field whose value is the record's tenant key (a plan id); NULL: the
    -- record is its own tenant (plans).
    tenant_field text CHECK (tenant_field ~ '^[a-z][a-z0-9_]{0,62}$'),
    -- A record whose freeze_field equals freeze_value is never changed by a
    -- merge (an approved indicator report).
    freeze_field text,
    freeze_value text
);

-- Plans: National, Regional, local and implementation plans. The domain
-- issue adds the rest of the model; these fields make the engine usable.
CREATE TABLE plans (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    title          text,
    summary        text,
    kind           text,
    status         text,
    period_start   date,
    period_end     date,
    owner_id       uuid,
    tags           text[]
);

CREATE TABLE indicators (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    code           text,
    title          text,
    definition     text,
    unit           text,
    baseline       numeric,
    baseline_date  date,
    target         numeric,
    target_date    date,
    responsible_id uuid,
    tags           text[]
);
CREATE INDEX indicators_tenant_idx ON indicators (tenant_id);

CREATE TABLE indicator_reports (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    indicator_id   uuid,
    period_start   date,
    period_end     date,
    value          numeric,
    narrative      text,
    evidence       text,
    status         text
);
CREATE INDEX indicator_reports_tenant_idx ON indicator_reports (tenant_id);

INSERT INTO sync_entity_types (name, table_name, tenant_field, freeze_field, freeze_value) VALUES
    ('plan', 'plans', NULL, NULL, NULL),
    ('indicator', 'indicators', 'plan_id', NULL, NULL),
    ('indicator_report', 'indicator_reports', 'plan_id', 'status', 'approved');

-- Every version of every record: who, from which device, when, and the
-- fields before and after (JSON objects: decimals and dates as strings, text
-- sets as arrays). This is both the merge base and the audit history.
CREATE TABLE sync_revisions (
    entity_type  text NOT NULL REFERENCES sync_entity_types (name),
    record_id    uuid NOT NULL,
    version      bigint NOT NULL,
    tenant_id    uuid NOT NULL,
    op           text NOT NULL CHECK (op IN ('create', 'update', 'delete', 'resolve')),
    mutation_id  uuid,
    principal_id uuid NOT NULL REFERENCES principals (id),
    device_id    uuid REFERENCES devices (id),
    at           timestamptz NOT NULL DEFAULT now(),
    deleted      boolean NOT NULL,
    before       jsonb,
    after        jsonb NOT NULL,
    PRIMARY KEY (entity_type, record_id, version)
);

-- The feed: one row per committed change, numbered in commit order. seq is
-- taken from sync_feed_head under its row lock, held until commit, so a
-- reader of "seq > cursor" can never miss a change that commits later with
-- a smaller number (a plain sequence would allow that).
CREATE TABLE sync_feed (
    seq         bigint PRIMARY KEY,
    entity_type text NOT NULL,
    record_id   uuid NOT NULL,
    version     bigint NOT NULL,
    tenant_id   uuid NOT NULL
);
CREATE INDEX sync_feed_tenant_seq_idx ON sync_feed (tenant_id, seq);

CREATE TABLE sync_feed_head (
    single boolean PRIMARY KEY DEFAULT true CHECK (single),
    seq    bigint NOT NULL,
    -- Changes when the database is restored or recreated, so that cursors
    -- issued by another history are recognised as unknown.
    epoch  uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO sync_feed_head (seq) VALUES (0);

-- The answer given to every mutation, by its idempotency key: a mutation
-- sent again (after a lost answer, or a crash between commit and reply)
-- gets the same answer and is applied once.
CREATE TABLE sync_mutations (
    mutation_id   uuid PRIMARY KEY,
    device_id     uuid REFERENCES devices (id),
    entity_type   text NOT NULL,
    record_id     uuid NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('applied', 'merged', 'conflict', 'rejected')),
    version       bigint NOT NULL DEFAULT 0,
    conflict_ids  uuid[] NOT NULL DEFAULT '{}',
    reject_code   integer NOT NULL DEFAULT 0,
    reject_reason text NOT NULL DEFAULT '',
    at            timestamptz NOT NULL DEFAULT now()
);

-- The same field changed differently on two sides: the record keeps one
-- value, the other is kept here with both authors and the base until a
-- coordinator resolves it. field NULL: edit versus delete of the record.
CREATE TABLE sync_conflicts (
    id              uuid PRIMARY KEY,
    entity_type     text NOT NULL,
    record_id       uuid NOT NULL,
    tenant_id       uuid NOT NULL,
    field           text,
    base            jsonb,
    kept            jsonb,
    other           jsonb,
    kept_deleted    boolean NOT NULL DEFAULT false,
    other_deleted   boolean NOT NULL DEFAULT false,
    other_fields    jsonb,
    kept_principal  uuid REFERENCES principals (id),
    kept_device     uuid REFERENCES devices (id),
    other_principal uuid NOT NULL REFERENCES principals (id),
    other_device    uuid REFERENCES devices (id),
    mutation_id     uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    resolved_by     uuid REFERENCES principals (id),
    resolution_version bigint
);
CREATE INDEX sync_conflicts_open_idx ON sync_conflicts (tenant_id) WHERE resolved_at IS NULL;
