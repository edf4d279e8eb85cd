-- 003: the Women, Peace and Security plan model (design §6). Plans form
-- lineages (generation, predecessor) and hierarchies (an implementation plan
-- implements a NAP or RAP); each plan holds pillars, objectives, the results
-- chain (outcomes and outputs), actions with their lead and supporting
-- organisations, indicators with baselines, per-period targets and
-- disaggregation, indicator reports (draft -> submitted -> approved or
-- returned) with disaggregated values, budget lines and comments. Every
-- table is a synced entity type whose tenant is its plan (plan_id).
--
-- Validation lives here, next to the data it protects, and says which field
-- is wrong: a BEFORE trigger per table checks a row's own fields (types,
-- vocabularies, ranges, dates in order) and raises check_violation with the
-- column set; deferred constraint triggers check what depends on other
-- records at COMMIT (references, periods inside the plan, disaggregated
-- values summing to the total, locked periods), so that a batch may create a
-- plan and its contents in any order. Messages read "<type>.<field>: <what
-- is wrong>". Never edit this file once landed.

-- ---- organisations: regional memberships -------------------------------------------

-- The member states of a regional organisation, by country: a member
-- state's plans are those whose country is listed here.
CREATE TABLE region_members (
    region_id uuid NOT NULL REFERENCES organisations (id),
    country   text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    since     date,
    PRIMARY KEY (region_id, country)
);

CREATE FUNCTION napsync_region_is_regional() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM organisations
                    WHERE id = NEW.region_id AND kind = 'regional_organisation') THEN
        RAISE EXCEPTION 'region_members.region_id: % is not a regional organisation', NEW.region_id
            USING ERRCODE = 'check_violation', COLUMN = 'region_id';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER region_members_regional BEFORE INSERT OR UPDATE ON region_members
    FOR EACH ROW EXECUTE FUNCTION napsync_region_is_regional();

-- ---- vocabularies --------------------------------------------------------------------

-- Thematic tags. Plans, actions and indicators may carry any tag of the
-- form below; the ones listed here have a label in reports. Extensible by
-- inserting rows.
CREATE TABLE wps_tags (
    code  text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9-]{0,47}$'),
    label text NOT NULL
);
INSERT INTO wps_tags (code, label) VALUES
    ('climate', 'Climate and security'),
    ('health-emergencies', 'Health emergencies'),
    ('cyber', 'Cyber and technology-facilitated violence'),
    ('small-arms', 'Small arms and light weapons'),
    ('youth-peace-security', 'Youth, peace and security'),
    ('violent-extremism', 'Preventing violent extremism'),
    ('trafficking', 'Trafficking in persons'),
    ('displacement', 'Refugees and displacement'),
    ('early-warning', 'Early warning'),
    ('sgbv-accountability', 'Accountability for sexual and gender-based violence'),
    ('security-sector', 'Security-sector reform'),
    ('transitional-justice', 'Transitional justice'),
    ('women-in-armed-forces', 'Women in the armed forces'),
    ('women-in-police', 'Women in the police'),
    ('peace-negotiations', 'Women in peace negotiations'),
    ('humanitarian', 'Humanitarian action'),
    ('disarmament', 'Disarmament and arms control');

-- ---- helpers -------------------------------------------------------------------------

-- Raises the validation error every check below uses.
CREATE FUNCTION napsync_invalid(p_type text, p_field text, p_problem text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.%: %', p_type, p_field, p_problem
        USING ERRCODE = 'check_violation', COLUMN = p_field;
END $$;

CREATE FUNCTION napsync_require(p_type text, p_field text, p_value anyelement)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NULL THEN
        PERFORM napsync_invalid(p_type, p_field, 'is required');
    END IF;
END $$;

CREATE FUNCTION napsync_check_enum(p_type text, p_field text, p_value text, p_allowed text[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NOT NULL AND NOT p_value = ANY (p_allowed) THEN
        PERFORM napsync_invalid(p_type, p_field,
            format('"%s" is not one of %s', p_value, array_to_string(p_allowed, ', ')));
    END IF;
END $$;

CREATE FUNCTION napsync_check_order(p_type text, p_field text, p_first date, p_last date,
                                    p_first_field text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_first IS NOT NULL AND p_last IS NOT NULL AND p_last < p_first THEN
        PERFORM napsync_invalid(p_type, p_field,
            format('%s is before %s %s', p_last, p_first_field, p_first));
    END IF;
END $$;

CREATE FUNCTION napsync_check_tags(p_type text, p_field text, p_tags text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_tag text;
BEGIN
    FOREACH v_tag IN ARRAY coalesce(p_tags, '{}') LOOP
        IF v_tag !~ '^[a-z0-9][a-z0-9-]{0,47}$' THEN
            PERFORM napsync_invalid(p_type, p_field,
                format('"%s" is not a tag (lowercase letters, digits and hyphens)', v_tag));
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION napsync_check_range(p_type text, p_field text, p_value numeric,
                                    p_min numeric, p_max numeric)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NOT NULL AND ((p_min IS NOT NULL AND p_value < p_min)
                                OR (p_max IS NOT NULL AND p_value > p_max)) THEN
        PERFORM napsync_invalid(p_type, p_field,
            format('%s is outside %s..%s', p_value, coalesce(p_min::text, ''),
                   coalesce(p_max::text, '')));
    END IF;
END $$;

CREATE FUNCTION napsync_check_text(p_type text, p_field text, p_value text, p_max int)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NOT NULL AND (length(btrim(p_value)) = 0 OR length(p_value) > p_max) THEN
        PERFORM napsync_invalid(p_type, p_field,
            format('must be 1 to %s characters and not blank', p_max));
    END IF;
END $$;

-- A value of an indicator of value_type p_kind: percentages lie in 0..100,
-- yes/no is 0 or 1, text indicators carry no number.
CREATE FUNCTION napsync_check_indicator_value(p_type text, p_field text, p_kind text,
                                              p_value numeric)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NULL THEN
        RETURN;
    END IF;
    IF p_kind = 'percentage' THEN
        PERFORM napsync_check_range(p_type, p_field, p_value, 0, 100);
    ELSIF p_kind = 'yes_no' AND p_value NOT IN (0, 1) THEN
        PERFORM napsync_invalid(p_type, p_field, 'a yes/no indicator takes 0 (no) or 1 (yes)');
    ELSIF p_kind = 'text' THEN
        PERFORM napsync_invalid(p_type, p_field, 'a text indicator takes no number (use value_text)');
    END IF;
END $$;

-- ---- plans -----------------------------------------------------------------------------

ALTER TABLE plans
    ADD COLUMN code          varchar(32),
    ADD COLUMN country       text,
    ADD COLUMN orientation   text,
    ADD COLUMN generation    bigint,
    ADD COLUMN predecessor_id uuid,
    ADD COLUMN implements_id uuid,
    ADD COLUMN adopted_on    date;
CREATE INDEX plans_owner_idx ON plans (owner_id);

CREATE FUNCTION napsync_validate_plan() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN
        RETURN NEW;
    END IF;
    PERFORM napsync_require('plan', 'title', NEW.title);
    PERFORM napsync_check_text('plan', 'title', NEW.title, 300);
    PERFORM napsync_require('plan', 'kind', NEW.kind);
    PERFORM napsync_check_enum('plan', 'kind', NEW.kind,
                               '{nap,rap,local,implementation}');
    PERFORM napsync_require('plan', 'status', NEW.status);
    PERFORM napsync_check_enum('plan', 'status', NEW.status, '{draft,adopted,archived}');
    PERFORM napsync_require('plan', 'period_start', NEW.period_start);
    PERFORM napsync_require('plan', 'period_end', NEW.period_end);
    PERFORM napsync_check_order('plan', 'period_end', NEW.period_start, NEW.period_end,
                                'period_start');
    PERFORM napsync_require('plan', 'owner_id', NEW.owner_id);
    PERFORM napsync_check_enum('plan', 'orientation', NEW.orientation,
                               '{inward,outward,both}');
    PERFORM napsync_check_range('plan', 'generation', NEW.generation, 1, 100);
    PERFORM napsync_check_tags('plan', 'tags', NEW.tags);
    IF NEW.country IS NOT NULL AND NEW.country !~ '^[A-Z]{2}$' THEN
        PERFORM napsync_invalid('plan', 'country', 'must be an ISO 3166-1 alpha-2 code such as "KE"');
    END IF;
    IF NEW.code IS NOT NULL AND NEW.code !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$' THEN
        PERFORM napsync_invalid('plan', 'code', 'letters, digits, ".", "_" and "-" only');
    END IF;
    IF NEW.predecessor_id = NEW.id THEN
        PERFORM napsync_invalid('plan', 'predecessor_id', 'a plan cannot succeed itself');
    END IF;
    IF NEW.implements_id = NEW.id THEN
        PERFORM napsync_invalid('plan', 'implements_id', 'a plan cannot implement itself');
    END IF;
    IF NEW.kind = 'implementation' AND NEW.implements_id IS NULL THEN
        PERFORM napsync_invalid('plan', 'implements_id',
                                'an implementation plan names the plan it implements');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER plans_validate BEFORE INSERT OR UPDATE ON plans
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_plan();

-- ---- plan content tables ---------------------------------------------------------------
-- Every one has the engine's leading columns (002) and plan_id, its tenant.

CREATE TABLE pillars (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    code           varchar(32),
    name           varchar(200),
    kind           text,
    description    text,
    position       bigint
);
CREATE INDEX pillars_tenant_idx ON pillars (tenant_id);

CREATE TABLE objectives (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    pillar_id      uuid,
    code           varchar(32),
    title          varchar(500),
    description    text,
    position       bigint
);
CREATE INDEX objectives_tenant_idx ON objectives (tenant_id);
CREATE INDEX objectives_pillar_idx ON objectives (pillar_id);

-- The results chain under an objective: outcomes, and outputs under them.
CREATE TABLE results (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    objective_id   uuid,
    parent_id      uuid,
    level          text,
    code           varchar(32),
    title          varchar(500),
    position       bigint
);
CREATE INDEX results_tenant_idx ON results (tenant_id);
CREATE INDEX results_objective_idx ON results (objective_id);

CREATE TABLE actions (
    id                 uuid PRIMARY KEY,
    version            bigint NOT NULL CHECK (version > 0),
    tenant_id          uuid NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    changed_by         uuid NOT NULL REFERENCES principals (id),
    changed_device     uuid REFERENCES devices (id),
    changed_at         timestamptz NOT NULL DEFAULT now(),
    plan_id            uuid,
    objective_id       uuid,
    result_id          uuid,
    code               varchar(32),
    title              varchar(500),
    description        text,
    lead_org_id        uuid,
    -- Organisation ids (UUID text): a set, so that adds and removes from
    -- two sides both survive a merge.
    supporting_org_ids text[],
    start_date         date,
    end_date           date,
    status             text,
    tags               text[],
    position           bigint
);
CREATE INDEX actions_tenant_idx ON actions (tenant_id);
CREATE INDEX actions_objective_idx ON actions (objective_id);
CREATE INDEX actions_lead_idx ON actions (lead_org_id);

ALTER TABLE indicators
    ADD COLUMN objective_id          uuid,
    ADD COLUMN result_id             uuid,
    ADD COLUMN action_id             uuid,
    ADD COLUMN value_type            text,
    ADD COLUMN frequency             text,
    ADD COLUMN disaggregation        text[],
    ADD COLUMN verification          text,
    ADD COLUMN regional_indicator_id uuid,
    ADD COLUMN global_indicator      varchar(32);
CREATE INDEX indicators_objective_idx ON indicators (objective_id);
CREATE INDEX indicators_regional_idx ON indicators (regional_indicator_id);
CREATE INDEX indicators_responsible_idx ON indicators (responsible_id);

-- Targets per period; a target may lie beyond the plan's end (a 2030
-- target in a 2021-2025 plan). The indicator's own target and target_date
-- are its headline (end-of-plan) target.
CREATE TABLE indicator_targets (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    indicator_id   uuid,
    period_end     date,
    value          numeric,
    note           text
);
CREATE INDEX indicator_targets_tenant_idx ON indicator_targets (tenant_id);
CREATE INDEX indicator_targets_indicator_idx ON indicator_targets (indicator_id);

ALTER TABLE indicator_reports
    ADD COLUMN value_text    text,
    ADD COLUMN reporter_id   uuid,
    ADD COLUMN return_reason text,
    ADD COLUMN corrects_id   uuid;
CREATE INDEX indicator_reports_indicator_idx ON indicator_reports (indicator_id, period_start);

-- A report's value broken down by one disaggregation dimension (sex, age,
-- location...): one row per category. For number indicators the categories
-- of a dimension sum to the report's value.
CREATE TABLE report_values (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    report_id      uuid,
    dimension      varchar(32),
    category       varchar(100),
    value          numeric
);
CREATE INDEX report_values_tenant_idx ON report_values (tenant_id);
CREATE INDEX report_values_report_idx ON report_values (report_id);

CREATE TABLE budget_lines (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    action_id      uuid,
    fiscal_year    bigint,
    currency       varchar(3),
    costed         numeric,
    allocated      numeric,
    disbursed      numeric,
    spent          numeric,
    funding_source text,
    funder_id      uuid,
    gender_responsive boolean,
    note           text
);
CREATE INDEX budget_lines_tenant_idx ON budget_lines (tenant_id);
CREATE INDEX budget_lines_action_idx ON budget_lines (action_id);

CREATE TABLE comments (
    id             uuid PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    tenant_id      uuid NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    changed_by     uuid NOT NULL REFERENCES principals (id),
    changed_device uuid REFERENCES devices (id),
    changed_at     timestamptz NOT NULL DEFAULT now(),
    plan_id        uuid,
    subject_type   varchar(32),
    subject_id     uuid,
    author_id      uuid,
    body           varchar(5000)
);
CREATE INDEX comments_tenant_idx ON comments (tenant_id);
CREATE INDEX comments_subject_idx ON comments (subject_id);

INSERT INTO sync_entity_types (name, table_name, tenant_field, freeze_field, freeze_value) VALUES
    ('pillar', 'pillars', 'plan_id', NULL, NULL),
    ('objective', 'objectives', 'plan_id', NULL, NULL),
    ('result', 'results', 'plan_id', NULL, NULL),
    ('action', 'actions', 'plan_id', NULL, NULL),
    ('indicator_target', 'indicator_targets', 'plan_id', NULL, NULL),
    ('report_value', 'report_values', 'plan_id', NULL, NULL),
    ('budget_line', 'budget_lines', 'plan_id', NULL, NULL),
    ('comment', 'comments', 'plan_id', NULL, NULL);

-- ---- references ------------------------------------------------------------------------

-- Which field of which type refers to which type. same_plan: the target
-- must be a record of the same plan. The target 'organisation' is a row of
-- organisations, 'principal' a row of principals. A record that live
-- records refer to cannot be deleted.
CREATE TABLE napsync_references (
    entity_type text NOT NULL REFERENCES sync_entity_types (name),
    field       text NOT NULL,
    target_type text NOT NULL,
    same_plan   boolean NOT NULL,
    PRIMARY KEY (entity_type, field)
);
INSERT INTO napsync_references (entity_type, field, target_type, same_plan) VALUES
    ('plan', 'owner_id', 'organisation', false),
    ('plan', 'predecessor_id', 'plan', false),
    ('plan', 'implements_id', 'plan', false),
    ('objective', 'pillar_id', 'pillar', true),
    ('result', 'objective_id', 'objective', true),
    ('result', 'parent_id', 'result', true),
    ('action', 'objective_id', 'objective', true),
    ('action', 'result_id', 'result', true),
    ('action', 'lead_org_id', 'organisation', false),
    ('indicator', 'objective_id', 'objective', true),
    ('indicator', 'result_id', 'result', true),
    ('indicator', 'action_id', 'action', true),
    ('indicator', 'responsible_id', 'organisation', false),
    ('indicator', 'regional_indicator_id', 'indicator', false),
    ('indicator_target', 'indicator_id', 'indicator', true),
    ('indicator_report', 'indicator_id', 'indicator', true),
    ('indicator_report', 'reporter_id', 'organisation', false),
    ('indicator_report', 'corrects_id', 'indicator_report', true),
    ('report_value', 'report_id', 'indicator_report', true),
    ('budget_line', 'action_id', 'action', true),
    ('budget_line', 'funder_id', 'organisation', false),
    ('comment', 'author_id', 'principal', false);

-- Deferred (at COMMIT) for every synced table: each reference field names a
-- live record of its type (of the same plan where required), the tenant
-- field names an existing plan, and a record being deleted is referred to
-- by no live record.
CREATE FUNCTION napsync_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
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
        IF v_ref.target_type = 'organisation' THEN
            IF NOT EXISTS (SELECT 1 FROM organisations WHERE id = v_target) THEN
                PERFORM napsync_invalid(v_type, v_ref.field,
                                        format('no organisation %s', v_target));
            END IF;
            CONTINUE;
        END IF;
        IF v_ref.target_type = 'principal' THEN
            IF NOT EXISTS (SELECT 1 FROM principals WHERE id = v_target) THEN
                PERFORM napsync_invalid(v_type, v_ref.field, format('no person %s', v_target));
            END IF;
            CONTINUE;
        END IF;
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

-- ---- per-type rules --------------------------------------------------------------------

CREATE FUNCTION napsync_validate_pillar() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN RETURN NEW; END IF;
    PERFORM napsync_require('pillar', 'name', NEW.name);
    PERFORM napsync_check_text('pillar', 'name', NEW.name, 200);
    PERFORM napsync_require('pillar', 'kind', NEW.kind);
    PERFORM napsync_check_enum('pillar', 'kind', NEW.kind,
        '{participation,protection,prevention,relief_recovery,other}');
    PERFORM napsync_check_range('pillar', 'position', NEW.position, 0, 10000);
    RETURN NEW;
END $$;
CREATE TRIGGER pillars_validate BEFORE INSERT OR UPDATE ON pillars
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_pillar();

CREATE FUNCTION napsync_validate_objective() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN RETURN NEW; END IF;
    PERFORM napsync_require('objective', 'title', NEW.title);
    PERFORM napsync_check_text('objective', 'title', NEW.title, 500);
    PERFORM napsync_require('objective', 'pillar_id', NEW.pillar_id);
    PERFORM napsync_check_range('objective', 'position', NEW.position, 0, 10000);
    RETURN NEW;
END $$;
CREATE TRIGGER objectives_validate BEFORE INSERT OR UPDATE ON objectives
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_objective();

CREATE FUNCTION napsync_validate_result() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN RETURN NEW; END IF;
    PERFORM napsync_require('result', 'title', NEW.title);
    PERFORM napsync_check_text('result', 'title', NEW.title, 500);
    PERFORM napsync_require('result', 'objective_id', NEW.objective_id);
    PERFORM napsync_require('result', 'level', NEW.level);
    PERFORM napsync_check_enum('result', 'level', NEW.level, '{outcome,output}');
    IF NEW.parent_id = NEW.id THEN
        PERFORM napsync_invalid('result', 'parent_id', 'a result cannot be its own parent');
    END IF;
    IF NEW.level = 'outcome' AND NEW.parent_id IS NOT NULL THEN
        PERFORM napsync_invalid('result', 'parent_id', 'an outcome has no parent (outputs do)');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER results_validate BEFORE INSERT OR UPDATE ON results
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_result();

CREATE FUNCTION napsync_validate_action() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_org text;
BEGIN
    IF NEW.deleted THEN RETURN NEW; END IF;
    PERFORM napsync_require('action', 'title', NEW.title);
    PERFORM napsync_check_text('action', 'title', NEW.title, 500);
    PERFORM napsync_require('action', 'objective_id', NEW.objective_id);
    PERFORM napsync_require('action', 'lead_org_id', NEW.lead_org_id);
    PERFORM napsync_require('action', 'status', NEW.status);
    PERFORM napsync_check_enum('action', 'status', NEW.status,
        '{planned,ongoing,completed,delayed,cancelled}');
    PERFORM napsync_check_order('action', 'end_date', NEW.start_date, NEW.end_date, 'start_date');
    PERFORM napsync_check_tags('action', 'tags', NEW.tags);
    FOREACH v_org IN ARRAY coalesce(NEW.supporting_org_ids, '{}') LOOP
        IF v_org !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
           OR NOT EXISTS (SELECT 1 FROM organisations WHERE id = v_org::uuid) THEN
            PERFORM napsync_invalid('action', 'supporting_org_ids',
                                    format('"%s" is not an organisation id', v_org));
        END IF;
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER actions_validate BEFORE INSERT OR UPDATE ON actions
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_action();

CREATE FUNCTION napsync_validate_indicator() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_dim text;
BEGIN
    IF NEW.deleted THEN RETURN NEW; END IF;
    PERFORM napsync_require('indicator', 'title', NEW.title);
    PERFORM napsync_check_text('indicator', 'title', NEW.title, 1000);
    PERFORM napsync_require('indicator', 'value_type', NEW.value_type);
    PERFORM napsync_check_enum('indicator', 'value_type', NEW.value_type,
                               '{number,percentage,yes_no,text}');
    PERFORM napsync_check_enum('indicator', 'frequency', NEW.frequency,
                               '{annual,semiannual,quarterly,monthly,once}');
    PERFORM napsync_check_indicator_value('indicator', 'baseline', NEW.value_type, NEW.baseline);
    PERFORM napsync_check_indicator_value('indicator', 'target', NEW.value_type, NEW.target);
    PERFORM napsync_check_tags('indicator', 'tags', NEW.tags);
    IF NEW.baseline IS NOT NULL AND NEW.baseline_date IS NULL THEN
        PERFORM napsync_invalid('indicator', 'baseline_date', 'a baseline needs its date');
    END IF;
    FOREACH v_dim IN ARRAY coalesce(NEW.disaggregation, '{}') LOOP
        IF v_dim !~ '^[a-z][a-z0-9_]{0,31}$' THEN
            PERFORM napsync_invalid('indicator', 'disaggregation',
                format('"%s" is not a dimension name (such as sex, age, location)', v_dim));
        END IF;
    END LOOP;
    IF NEW.code IS NOT NULL AND (length(NEW.code) > 32 OR NEW.code !~ '^[A-Za-z0-9][A-Za-z0-9._-]*$') THEN
        PERFORM napsync_invalid('indicator', 'code',
                                'at most 32 letters, digits, ".", "_" and "-"');
    END IF;
    IF NEW.regional_indicator_id = NEW.id THEN
        PERFORM napsync_invalid('indicator', 'regional_indicator_id',
                                'an indicator cannot map to itself');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER indicators_validate BEFORE INSERT OR UPDATE ON indicators
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_indicator();

CREATE FUNCTION napsync_validate_indicator_target() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN RETURN NEW; END IF;
    PERFORM napsync_require('indicator_target', 'indicator_id', NEW.indicator_id);
    PERFORM napsync_require('indicator_target', 'period_end', NEW.period_end);
    PERFORM napsync_require('indicator_target', 'value', NEW.value);
    RETURN NEW;
END $$;
CREATE TRIGGER indicator_targets_validate BEFORE INSERT OR UPDATE ON indicator_targets
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_indicator_target();

CREATE FUNCTION napsync_validate_indicator_report() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN
        IF TG_OP = 'UPDATE' AND OLD.status = 'approved' AND NOT OLD.deleted THEN
            PERFORM napsync_invalid('indicator_report', 'deleted',
                'an approved report is kept; submit a correction (corrects_id) instead');
        END IF;
        RETURN NEW;
    END IF;
    PERFORM napsync_require('indicator_report', 'indicator_id', NEW.indicator_id);
    PERFORM napsync_require('indicator_report', 'period_start', NEW.period_start);
    PERFORM napsync_require('indicator_report', 'period_end', NEW.period_end);
    PERFORM napsync_check_order('indicator_report', 'period_end', NEW.period_start,
                                NEW.period_end, 'period_start');
    PERFORM napsync_require('indicator_report', 'status', NEW.status);
    PERFORM napsync_check_enum('indicator_report', 'status', NEW.status,
                               '{draft,submitted,approved,returned}');
    IF NEW.status = 'returned' AND coalesce(btrim(NEW.return_reason), '') = '' THEN
        PERFORM napsync_invalid('indicator_report', 'return_reason',
                                'a returned report says why it was returned');
    END IF;
    IF NEW.status IN ('submitted', 'approved') AND NEW.value IS NULL AND NEW.value_text IS NULL THEN
        PERFORM napsync_invalid('indicator_report', 'value', 'a submitted report has a value');
    END IF;
    IF NEW.corrects_id = NEW.id THEN
        PERFORM napsync_invalid('indicator_report', 'corrects_id', 'a report cannot correct itself');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER indicator_reports_validate BEFORE INSERT OR UPDATE ON indicator_reports
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_indicator_report();

CREATE FUNCTION napsync_validate_report_value() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted AND TG_OP = 'INSERT' THEN RETURN NEW; END IF;
    IF NOT NEW.deleted THEN
        PERFORM napsync_require('report_value', 'report_id', NEW.report_id);
        PERFORM napsync_require('report_value', 'dimension', NEW.dimension);
        PERFORM napsync_require('report_value', 'category', NEW.category);
        PERFORM napsync_check_text('report_value', 'category', NEW.category, 100);
        PERFORM napsync_require('report_value', 'value', NEW.value);
        IF NEW.dimension !~ '^[a-z][a-z0-9_]{0,31}$' THEN
            PERFORM napsync_invalid('report_value', 'dimension',
                format('"%s" is not a dimension name', NEW.dimension));
        END IF;
    END IF;
    -- The breakdown of a submitted or approved report is as fixed as its
    -- value: it changes with the report back in draft (or returned).
    -- (Submitted in an earlier transaction: a batch may still write the
    -- breakdown with the report it submits; reports are written first.)
    IF EXISTS (SELECT 1 FROM indicator_reports r
                WHERE r.id IN (NEW.report_id, OLD.report_id)
                  AND r.status IN ('submitted', 'approved') AND r.changed_at < now()) THEN
        PERFORM napsync_invalid('report_value', 'report_id',
                                'the report is submitted or approved; its values change only '
                                'with the report back in draft');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER report_values_validate BEFORE INSERT OR UPDATE ON report_values
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_report_value();

CREATE FUNCTION napsync_validate_budget_line() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN RETURN NEW; END IF;
    PERFORM napsync_require('budget_line', 'action_id', NEW.action_id);
    PERFORM napsync_require('budget_line', 'currency', NEW.currency);
    IF NEW.currency !~ '^[A-Z]{3}$' THEN
        PERFORM napsync_invalid('budget_line', 'currency',
                                'must be an ISO 4217 code such as "USD"');
    END IF;
    PERFORM napsync_require('budget_line', 'fiscal_year', NEW.fiscal_year);
    PERFORM napsync_check_range('budget_line', 'fiscal_year', NEW.fiscal_year, 1990, 2100);
    PERFORM napsync_check_range('budget_line', 'costed', NEW.costed, 0, NULL);
    PERFORM napsync_check_range('budget_line', 'allocated', NEW.allocated, 0, NULL);
    PERFORM napsync_check_range('budget_line', 'disbursed', NEW.disbursed, 0, NULL);
    PERFORM napsync_check_range('budget_line', 'spent', NEW.spent, 0, NULL);
    PERFORM napsync_require('budget_line', 'funding_source', NEW.funding_source);
    PERFORM napsync_check_enum('budget_line', 'funding_source', NEW.funding_source,
                               '{national_budget,donor_basket_fund,other_fund}');
    RETURN NEW;
END $$;
CREATE TRIGGER budget_lines_validate BEFORE INSERT OR UPDATE ON budget_lines
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_budget_line();

CREATE FUNCTION napsync_validate_comment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN RETURN NEW; END IF;
    PERFORM napsync_require('comment', 'subject_type', NEW.subject_type);
    PERFORM napsync_require('comment', 'subject_id', NEW.subject_id);
    PERFORM napsync_require('comment', 'author_id', NEW.author_id);
    PERFORM napsync_require('comment', 'body', NEW.body);
    PERFORM napsync_check_text('comment', 'body', NEW.body, 5000);
    IF NOT EXISTS (SELECT 1 FROM sync_entity_types WHERE name = NEW.subject_type)
       OR NEW.subject_type = 'comment' THEN
        PERFORM napsync_invalid('comment', 'subject_type',
                                format('"%s" is not a record type one can comment on',
                                       NEW.subject_type));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER comments_validate BEFORE INSERT OR UPDATE ON comments
    FOR EACH ROW EXECUTE FUNCTION napsync_validate_comment();

-- ---- rules across records (at COMMIT) ----------------------------------------------------

-- A plan's lineage and hierarchy: a predecessor is a plan of the same kind;
-- an implementation plan implements a NAP, RAP or local plan; a RAP is
-- owned by a regional organisation.
CREATE FUNCTION napsync_check_plan() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_kind text;
BEGIN
    IF NEW.deleted THEN RETURN NULL; END IF;
    IF NEW.predecessor_id IS NOT NULL THEN
        SELECT kind INTO v_kind FROM plans WHERE id = NEW.predecessor_id;
        IF v_kind IS DISTINCT FROM NEW.kind THEN
            PERFORM napsync_invalid('plan', 'predecessor_id',
                                    format('the predecessor is a %s plan, this one a %s plan',
                                           coalesce(v_kind, 'missing'), NEW.kind));
        END IF;
    END IF;
    IF NEW.implements_id IS NOT NULL THEN
        SELECT kind INTO v_kind FROM plans WHERE id = NEW.implements_id;
        IF v_kind NOT IN ('nap', 'rap', 'local') THEN
            PERFORM napsync_invalid('plan', 'implements_id',
                                    'an implementation plan implements a NAP, RAP or local plan');
        END IF;
    END IF;
    IF NEW.kind = 'rap' AND NOT EXISTS (SELECT 1 FROM organisations
                                         WHERE id = NEW.owner_id AND kind = 'regional_organisation') THEN
        PERFORM napsync_invalid('plan', 'owner_id', 'a RAP is owned by a regional organisation');
    END IF;
    RETURN NULL;
END $$;

-- An objective's pillar, a result's objective and parent, an action's
-- result and objective agree with each other.
CREATE FUNCTION napsync_check_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_objective uuid;
    v_level     text;
BEGIN
    IF NEW.deleted THEN RETURN NULL; END IF;
    -- (Nested: PL/pgSQL resolves NEW.parent_id even where an AND would
    -- not need it, and actions have no parent_id.)
    IF TG_TABLE_NAME = 'results' THEN
        IF NEW.parent_id IS NOT NULL THEN
            SELECT objective_id, level INTO v_objective, v_level FROM results WHERE id = NEW.parent_id;
            IF v_level IS DISTINCT FROM 'outcome' THEN
                PERFORM napsync_invalid('result', 'parent_id', 'the parent of an output is an outcome');
            ELSIF v_objective IS DISTINCT FROM NEW.objective_id THEN
                PERFORM napsync_invalid('result', 'parent_id', 'the parent belongs to another objective');
            END IF;
        END IF;
    ELSIF NEW.result_id IS NOT NULL THEN
        SELECT objective_id INTO v_objective FROM results WHERE id = NEW.result_id;
        IF v_objective IS DISTINCT FROM NEW.objective_id THEN
            PERFORM napsync_invalid('action', 'result_id', 'the result belongs to another objective');
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- An indicator maps only to an indicator of a RAP.
CREATE FUNCTION napsync_check_indicator() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted OR NEW.regional_indicator_id IS NULL THEN RETURN NULL; END IF;
    IF NOT EXISTS (SELECT 1 FROM indicators i JOIN plans p ON p.id = i.tenant_id
                    WHERE i.id = NEW.regional_indicator_id AND p.kind = 'rap') THEN
        PERFORM napsync_invalid('indicator', 'regional_indicator_id',
                                'maps to an indicator of a Regional Action Plan only');
    END IF;
    RETURN NULL;
END $$;

-- A comment's subject is a live record of its type in the same plan.
CREATE FUNCTION napsync_check_comment() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_table  text;
    v_tenant uuid;
    v_gone   boolean;
BEGIN
    IF NEW.deleted THEN RETURN NULL; END IF;
    SELECT table_name INTO v_table FROM sync_entity_types WHERE name = NEW.subject_type;
    EXECUTE format('SELECT tenant_id, deleted FROM %I WHERE id = $1', v_table)
       INTO v_tenant, v_gone USING NEW.subject_id;
    IF v_tenant IS DISTINCT FROM NEW.tenant_id OR v_gone THEN
        PERFORM napsync_invalid('comment', 'subject_id',
            format('no live %s %s in this plan', NEW.subject_type, NEW.subject_id));
    END IF;
    RETURN NULL;
END $$;

-- A report: its period lies inside the plan's period and matches no other
-- live report of the indicator unless it corrects the approved one; the
-- value fits the indicator's type; the breakdown sums to the total.
-- Whether report p_from corrects p_to, directly or through corrections of
-- corrections.
CREATE FUNCTION napsync_report_corrects(p_from uuid, p_to uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain (id, depth) AS (
        SELECT corrects_id, 1 FROM indicator_reports WHERE id = p_from
        UNION ALL
        SELECT r.corrects_id, c.depth + 1 FROM chain c JOIN indicator_reports r ON r.id = c.id
         WHERE c.depth < 100
    )
    SELECT EXISTS (SELECT 1 FROM chain WHERE id = p_to)
$$;

CREATE FUNCTION napsync_check_report(p_report uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r   indicator_reports%ROWTYPE;
    i   indicators%ROWTYPE;
    p   plans%ROWTYPE;
    v_other record;
    v_dim   record;
BEGIN
    SELECT * INTO r FROM indicator_reports WHERE id = p_report;
    IF NOT FOUND OR r.deleted THEN RETURN; END IF;
    SELECT * INTO i FROM indicators WHERE id = r.indicator_id;
    SELECT * INTO p FROM plans WHERE id = r.tenant_id;
    IF r.period_start < p.period_start OR r.period_end > p.period_end THEN
        PERFORM napsync_invalid('indicator_report', 'period_start',
            format('the period %s..%s is not inside the plan''s period %s..%s',
                   r.period_start, r.period_end, p.period_start, p.period_end));
    END IF;
    IF i.value_type = 'text' AND r.value IS NOT NULL THEN
        PERFORM napsync_invalid('indicator_report', 'value',
                                'a text indicator takes value_text, not a number');
    END IF;
    IF i.value_type <> 'text' AND r.value_text IS NOT NULL AND r.value IS NULL THEN
        PERFORM napsync_invalid('indicator_report', 'value',
                                format('a %s indicator takes a number', i.value_type));
    END IF;
    PERFORM napsync_check_indicator_value('indicator_report', 'value', i.value_type, r.value);
    -- One live report per indicator and period; an approved one locks the
    -- period: only a correction of it (corrects_id, possibly a correction
    -- of a correction) may follow it.
    FOR v_other IN SELECT id, status FROM indicator_reports
                    WHERE indicator_id = r.indicator_id AND NOT deleted AND id <> r.id
                      AND period_start = r.period_start AND period_end = r.period_end
                    ORDER BY id LOOP
        CONTINUE WHEN napsync_report_corrects(r.id, v_other.id)
                   OR napsync_report_corrects(v_other.id, r.id);
        IF v_other.status = 'approved' THEN
            PERFORM napsync_invalid('indicator_report', 'period_start',
                format('the period %s..%s of this indicator is locked: report %s is approved; '
                       'submit a correction of it (corrects_id)',
                       r.period_start, r.period_end, v_other.id));
        ELSE
            PERFORM napsync_invalid('indicator_report', 'period_start',
                format('report %s already covers %s..%s for this indicator',
                       v_other.id, r.period_start, r.period_end));
        END IF;
    END LOOP;
    IF r.corrects_id IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM indicator_reports c
            WHERE c.id = r.corrects_id AND c.status = 'approved' AND NOT c.deleted
              AND c.indicator_id = r.indicator_id AND c.period_start = r.period_start
              AND c.period_end = r.period_end) THEN
        PERFORM napsync_invalid('indicator_report', 'corrects_id',
                                'corrects only an approved report of the same indicator and period');
    END IF;
    -- A draft may be incomplete; what is submitted adds up.
    IF i.value_type = 'number' AND r.value IS NOT NULL
       AND r.status IN ('submitted', 'approved') THEN
        FOR v_dim IN SELECT dimension, sum(value) AS total FROM report_values
                      WHERE report_id = r.id AND NOT deleted
                      GROUP BY dimension ORDER BY dimension LOOP
            IF v_dim.total <> r.value THEN
                PERFORM napsync_invalid('indicator_report', 'value',
                    format('the "%s" values of report %s sum to %s, the report''s value is %s',
                           v_dim.dimension, r.id, v_dim.total, r.value));
            END IF;
        END LOOP;
    END IF;
END $$;

CREATE FUNCTION napsync_check_report_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM napsync_check_report(NEW.id);
    RETURN NULL;
END $$;

-- A disaggregated value names a dimension its indicator is disaggregated
-- by. (Its sum is the report's rule, checked when the report is submitted:
-- values cannot change afterwards.)
CREATE FUNCTION napsync_check_report_value() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted THEN RETURN NULL; END IF;
    IF NOT EXISTS (SELECT 1 FROM indicator_reports r JOIN indicators i ON i.id = r.indicator_id
                    WHERE r.id = NEW.report_id
                      AND NEW.dimension = ANY (coalesce(i.disaggregation, '{}'))) THEN
        PERFORM napsync_invalid('report_value', 'dimension',
            format('the report''s indicator is not disaggregated by "%s"', NEW.dimension));
    END IF;
    RETURN NULL;
END $$;

-- Deferred triggers, one set per table.
DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['plans', 'indicators', 'indicator_reports', 'pillars',
                                   'objectives', 'results', 'actions', 'indicator_targets',
                                   'report_values', 'budget_lines', 'comments'] LOOP
        EXECUTE format('CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE ON %I'
                       ' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW'
                       ' EXECUTE FUNCTION napsync_check_references()',
                       v_table || '_references', v_table);
    END LOOP;
END $$;
CREATE CONSTRAINT TRIGGER plans_rules AFTER INSERT OR UPDATE ON plans
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION napsync_check_plan();
CREATE CONSTRAINT TRIGGER results_chain AFTER INSERT OR UPDATE ON results
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION napsync_check_chain();
CREATE CONSTRAINT TRIGGER actions_chain AFTER INSERT OR UPDATE ON actions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION napsync_check_chain();
CREATE CONSTRAINT TRIGGER comments_rules AFTER INSERT OR UPDATE ON comments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION napsync_check_comment();
CREATE CONSTRAINT TRIGGER indicators_rules AFTER INSERT OR UPDATE ON indicators
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION napsync_check_indicator();
CREATE CONSTRAINT TRIGGER indicator_reports_rules AFTER INSERT OR UPDATE ON indicator_reports
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION napsync_check_report_trigger();
CREATE CONSTRAINT TRIGGER report_values_rules AFTER INSERT OR UPDATE ON report_values
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION napsync_check_report_value();
