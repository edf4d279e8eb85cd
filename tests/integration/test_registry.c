/* The entity registry (daemon/registry.h) against a real PostgreSQL: a fresh
 * database on the NS_TEST_PG* cluster, migrated with ns_migrate_run. The
 * shipped types load with their fields and kinds; records of every kind go
 * through the generated upsert (with fields_json.h) and come back unchanged
 * through the generated select-for-update; a schema the engine cannot
 * serve is refused with a message naming what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "fields_json.h"
#include "migrate.h"
#include "pgtest.h"
#include "registry.h"
#include "wps.h"

/* An organisation's id in capitals: stored and read back canonical. */
#define OWNER_UPPER "ABCDEF01-2345-6789-ABCD-EF0123456789"

static struct {
    nst_pgt_db pgdb;    /* the test database; pgdb.pg for the tests' own SQL */
    char principal[40]; /* a principal the records are changed by */
    char shipped[1024]; /* the migrated entity types, as a text[] literal */
    int nshipped;
} G;

/* ---- plain SQL ----------------------------------------------------------------------- */

/* Runs sql (no parameters) on the test database; it must succeed. */
static void exec_ok(const char *sql)
{
    nst_pgt_exec_ok(G.pgdb.pg, sql, 0, NULL);
}

/* ---- fixture ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    if (nst_pgt_create(&G.pgdb, "registry") != 0)
        return -1;
    if (G.pgdb.migrations < 2) {
        fprintf(stderr, "test_registry: expected at least 2 migrations, applied %d\n",
                G.pgdb.migrations);
        return -1;
    }
    PGresult *res = PQexec(G.pgdb.pg, "WITH o AS (INSERT INTO organisations (code, name, kind) "
                                      "VALUES ('mogec', 'Ministry', 'ministry') RETURNING id) "
                                      "INSERT INTO principals (organisation_id, name) "
                                      "SELECT id, 'registry test' FROM o RETURNING id");
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        snprintf(G.principal, sizeof(G.principal), "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    } else {
        fprintf(stderr, "test_registry: principal: %s", PQresultErrorMessage(res));
    }
    PQclear(res);
    if (rc != 0)
        return -1;
    /* The owner of the round trip's plans, named in capitals there. */
    res = nst_pgt_query(G.pgdb.pg,
                        "INSERT INTO organisations (id, code, name, kind) VALUES"
                        " (lower('" OWNER_UPPER "')::uuid, 'owner', 'Owner', 'ministry');"
                        "SELECT '{' || string_agg(name, ',') || '}', count(*)"
                        " FROM sync_entity_types",
                        0, NULL);
    if (res == NULL || PQntuples(res) != 1 || (size_t)PQgetlength(res, 0, 0) >= sizeof(G.shipped)) {
        PQclear(res);
        return -1;
    }
    snprintf(G.shipped, sizeof(G.shipped), "%s", PQgetvalue(res, 0, 0));
    G.nshipped = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nst_pgt_drop(&G.pgdb);
}

/* Whatever a test did, the next starts from the migrated schema: a failed
 * test may have left a transaction open, settings changed, or its own
 * tables registered. */
static const char *const test_tables[] = {
    "test_kinds", "test_wide", "bad_things",     "bad_times",
    "bad_arrays", "bad_names", "partial_things", "odd_things",
};

static int test_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (PQtransactionStatus(G.pgdb.pg) != PQTRANS_IDLE)
        rc |= nst_pgt_exec(G.pgdb.pg, "ROLLBACK");
    rc |= nst_pgt_exec(G.pgdb.pg, "RESET ALL");
    const char *shipped[1] = {G.shipped};
    PGresult *res = nst_pgt_query(
        G.pgdb.pg, "DELETE FROM sync_entity_types WHERE name <> ALL ($1::text[])", 1, shipped);
    rc |= res != NULL ? 0 : -1;
    PQclear(res);
    for (size_t i = 0; i < sizeof(test_tables) / sizeof(test_tables[0]); i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", test_tables[i]);
        rc |= nst_pgt_exec(G.pgdb.pg, sql);
    }
    return rc;
}

/* ---- registry helpers ---------------------------------------------------------------- */

static void load_ok(ns_registry *r)
{
    char err[512] = "";
    if (ns_registry_load(G.pgdb.conninfo, r, err, sizeof(err)) != 0)
        fail_msg("ns_registry_load: %s", err);
}

static void load_fails(const char *needle)
{
    ns_registry r;
    char err[512] = "";
    if (ns_registry_load(G.pgdb.conninfo, &r, err, sizeof(err)) == 0) {
        ns_registry_free(&r);
        fail_msg("ns_registry_load succeeded; expected an error with \"%s\"", needle);
    }
    assert_null(r.types);
    assert_int_equal(r.ntypes, 0);
    ns_registry_free(&r); /* harmless on the empty registry */
    if (strstr(err, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err, needle);
}

static const ns_entity_type *must_find(const ns_registry *r, const char *name)
{
    const ns_entity_type *t = ns_registry_find(r, name);
    if (t == NULL)
        fail_msg("no entity type %s", name);
    return t;
}

typedef struct {
    const char *name;
    ns_kind kind;
} want_field;

static void assert_fields(const ns_entity_type *t, const want_field *want, size_t n)
{
    if (t->nfields != n) {
        for (size_t i = 0; i < t->nfields; i++)
            print_error("  %s: %s\n", t->fields[i].name, ns_kind_name(t->fields[i].type.kind));
        fail_msg("%s has %zu fields, expected %zu", t->name, t->nfields, n);
    }
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(t->fields[i].name, want[i].name);
        if (t->fields[i].type.kind != want[i].kind)
            fail_msg("%s.%s is %s, expected %s", t->name, want[i].name,
                     ns_kind_name(t->fields[i].type.kind), ns_kind_name(want[i].kind));
        assert_true(t->fields[i].type.nullable);
        assert_ptr_equal(ns_entity_field(t, want[i].name), &t->fields[i]);
    }
}

/* The engine's columns that a test table must have. */
#define ENGINE_COLUMNS                                                                             \
    "id uuid PRIMARY KEY, version bigint NOT NULL, tenant_id uuid NOT NULL,"                       \
    " deleted boolean NOT NULL DEFAULT false,"                                                     \
    " changed_by uuid NOT NULL REFERENCES principals (id),"                                        \
    " changed_device uuid REFERENCES devices (id), changed_at timestamptz NOT NULL DEFAULT now()"

/* ---- records through the generated SQL ------------------------------------------------- */

typedef struct {
    const char *id;
    const char *tenant;
    int64_t version;
    bool deleted;
    ns_fieldset fs;
    char tenant_read[40]; /* the tenant column as read back */
} record;

/* Sets one field from its text form (ns_value_parse by the field's kind); NULL is null. */
static void put(const ns_entity_type *t, ns_fieldset *fs, const char *name, const char *text)
{
    const ns_field_def *f = ns_entity_field(t, name);
    if (f == NULL)
        fail_msg("%s has no field %s", t->name, name);
    ns_value v;
    char err[128];
    if (ns_value_parse(&f->type, text, &v, err, sizeof(err)) != NS_VALUE_OK)
        fail_msg("%s.%s=%s: %s", t->name, name, text ? text : "NULL", err);
    assert_int_equal(ns_fieldset_set(fs, name, &v), 0);
    ns_value_free(&v);
}

/* The JSON array the upsert takes: each record's fields plus the engine's columns. */
static char *records_json(const record *recs, size_t n)
{
    json_t *arr = json_array();
    assert_non_null(arr);
    for (size_t i = 0; i < n; i++) {
        json_t *o = ns_fields_to_json(&recs[i].fs);
        assert_non_null(o);
        assert_int_equal(json_object_set_new(o, "id", json_string(recs[i].id)), 0);
        assert_int_equal(json_object_set_new(o, "version", json_integer(recs[i].version)), 0);
        assert_int_equal(json_object_set_new(o, "tenant_id", json_string(recs[i].tenant)), 0);
        assert_int_equal(json_object_set_new(o, "deleted", json_boolean(recs[i].deleted)), 0);
        assert_int_equal(json_object_set_new(o, "changed_by", json_string(G.principal)), 0);
        assert_int_equal(json_object_set_new(o, "changed_device", json_null()), 0);
        assert_int_equal(json_array_append_new(arr, o), 0);
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    assert_non_null(s);
    return s;
}

static void upsert(const ns_entity_type *t, const record *recs, size_t n)
{
    char *json = records_json(recs, n);
    const char *params[1] = {json};
    PGresult *res = PQexecParams(G.pgdb.pg, t->sql_upsert, 1, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        print_error("%s\n$1 = %s\n%s", t->sql_upsert, json, PQresultErrorMessage(res));
    free(json);
    char count[24], done[24];
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(done, sizeof(done), "%s", PQcmdTuples(res));
    PQclear(res);
    assert_true(ok);
    assert_string_equal(done, count);
}

/* Reads back the records with these ids, in a transaction (the select locks
 * them). got[i] receives the row with ids[i]; ids must be in ascending
 * order, as the statement returns them, and all present. */
static void select_records(const ns_entity_type *t, const char *const *ids, size_t n, record *got)
{
    char arr[4096] = "{";
    for (size_t i = 0; i < n; i++) {
        size_t o = strlen(arr);
        snprintf(arr + o, sizeof(arr) - o, "%s%s", i ? "," : "", ids[i]);
    }
    size_t o = strlen(arr);
    snprintf(arr + o, sizeof(arr) - o, "}");

    exec_ok("BEGIN");
    const char *params[1] = {arr};
    PGresult *res =
        PQexecParams(G.pgdb.pg, t->sql_select_for_update, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        print_error("%s\n$1 = %s\n%s", t->sql_select_for_update, arr, PQresultErrorMessage(res));
        PQclear(res);
        fail();
    }
    /* id, version, deleted, tenant_id, fields, then the author of the
     * version: changed_by and changed_device (records_json writes NULL). */
    assert_int_equal(PQnfields(res), 7);
    assert_int_equal(PQntuples(res), (int)n);
    for (int row = 0; row < (int)n; row++) {
        record *g = &got[row];
        assert_string_equal(PQgetvalue(res, row, 0), ids[row]);
        assert_string_equal(PQgetvalue(res, row, 5), G.principal);
        assert_true(PQgetisnull(res, row, 6));
        g->id = ids[row];
        g->version = strtoll(PQgetvalue(res, row, 1), NULL, 10);
        g->deleted = strcmp(PQgetvalue(res, row, 2), "t") == 0;
        snprintf(g->tenant_read, sizeof(g->tenant_read), "%s", PQgetvalue(res, row, 3));
        char err[512] = "";
        if (ns_fields_from_json_text(t, PQgetvalue(res, row, 4), (size_t)PQgetlength(res, row, 4),
                                     &g->fs, err, sizeof(err)) != 0) {
            print_error("%s: %s\n", PQgetvalue(res, row, 4), err);
            PQclear(res);
            fail();
        }
    }
    PQclear(res);
    exec_ok("COMMIT");
}

/* Every field of the type reads back: equal to what was written, null where
 * nothing was. */
static void assert_record(const ns_entity_type *t, const record *want, const record *got)
{
    assert_string_equal(want->id, got->id);
    assert_string_equal(want->tenant, got->tenant_read);
    assert_true(want->version == got->version);
    assert_int_equal(want->deleted, got->deleted);
    assert_int_equal(got->fs.n, t->nfields);
    for (size_t i = 0; i < t->nfields; i++) {
        const char *name = t->fields[i].name;
        const ns_value *g = ns_fieldset_get(&got->fs, name);
        const ns_value *w = ns_fieldset_get(&want->fs, name);
        assert_non_null(g);
        assert_int_equal(g->kind, t->fields[i].type.kind);
        bool ok = w ? ns_value_equal(w, g) : g->is_null;
        if (!ok) {
            char *x = w ? ns_value_format(w) : NULL;
            char *y = ns_value_format(g);
            fail_msg("%s %s.%s: wrote %s, read %s", t->name, want->id, name, x ? x : "(absent)",
                     y ? y : "?");
        }
    }
}

/* Writes recs, reads them back (ids ascending in recs), compares. */
static void write_and_check(const ns_entity_type *t, record *recs, size_t n)
{
    upsert(t, recs, n);
    const char *ids[8];
    record got[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        ids[i] = recs[i].id;
        memset(&got[i], 0, sizeof(got[i]));
    }
    select_records(t, ids, n, got);
    for (size_t i = 0; i < n; i++) {
        assert_record(t, &recs[i], &got[i]);
        ns_fieldset_free(&got[i].fs);
    }
}

/* ---- tests: the shipped types ------------------------------------------------------------ */

static void test_shipped_types(void **state)
{
    (void)state;
    ns_registry r;
    load_ok(&r);
    /* The sync core's three (002), the rest of the WPS model (003) and the
     * directory (009), by name; every type but the plan and the directory's
     * belongs to a plan. */
    static const char *const names[] = {
        "action",
        "budget_line",
        "comment",
        "device",
        "indicator",
        "indicator_report",
        "indicator_target",
        "objective",
        "organisation",
        "pillar",
        "plan",
        "principal",
        "principal_role",
        "region_membership",
        "report_value",
        "result",
    };
    assert_int_equal(r.ntypes, sizeof(names) / sizeof(names[0]));
    assert_int_equal(r.ntypes, G.nshipped);
    for (size_t i = 0; i < r.ntypes; i++) {
        assert_string_equal(r.types[i].name, names[i]);
        bool directory =
            strcmp(names[i], "organisation") == 0 || strncmp(names[i], "principal", 9) == 0 ||
            strcmp(names[i], "device") == 0 || strcmp(names[i], "region_membership") == 0;
        assert_int_equal(r.types[i].directory, directory);
        if (directory || strcmp(names[i], "plan") == 0)
            assert_null(r.types[i].tenant_field);
        else
            assert_string_equal(r.types[i].tenant_field, "plan_id");
    }
    /* Server-maintained columns are not fields. */
    const ns_entity_type *device = must_find(&r, "device");
    assert_null(ns_entity_field(device, "cert_sha256"));
    assert_null(ns_entity_field(device, "revoked_at"));
    assert_non_null(ns_entity_field(device, "fingerprint"));
    assert_non_null(ns_entity_field(device, "revoked"));

    const ns_entity_type *plan = must_find(&r, "plan");
    assert_string_equal(plan->table, "plans");
    assert_null(plan->tenant_field);
    assert_null(plan->freeze_field);
    assert_null(plan->freeze_value);
    static const want_field plan_fields[] = {
        {"adopted_on", NS_KIND_DATE},    {"code", NS_KIND_TEXT},
        {"country", NS_KIND_TEXT},       {"generation", NS_KIND_INT},
        {"implements_id", NS_KIND_REF},  {"kind", NS_KIND_TEXT},
        {"orientation", NS_KIND_TEXT},   {"owner_id", NS_KIND_REF},
        {"period_end", NS_KIND_DATE},    {"period_start", NS_KIND_DATE},
        {"predecessor_id", NS_KIND_REF}, {"status", NS_KIND_TEXT},
        {"summary", NS_KIND_TEXT},       {"tags", NS_KIND_TEXT_SET},
        {"title", NS_KIND_TEXT},
    };
    assert_fields(plan, plan_fields, sizeof(plan_fields) / sizeof(plan_fields[0]));

    const ns_entity_type *ind = must_find(&r, "indicator");
    assert_string_equal(ind->table, "indicators");
    assert_string_equal(ind->tenant_field, "plan_id");
    assert_null(ind->freeze_field);
    static const want_field ind_fields[] = {
        {"action_id", NS_KIND_REF},
        {"baseline", NS_KIND_DECIMAL},
        {"baseline_date", NS_KIND_DATE},
        {"code", NS_KIND_TEXT},
        {"definition", NS_KIND_TEXT},
        {"disaggregation", NS_KIND_TEXT_SET},
        {"frequency", NS_KIND_TEXT},
        {"global_indicator", NS_KIND_TEXT},
        {"objective_id", NS_KIND_REF},
        {"plan_id", NS_KIND_REF},
        {"regional_indicator_id", NS_KIND_REF},
        {"responsible_id", NS_KIND_REF},
        {"result_id", NS_KIND_REF},
        {"tags", NS_KIND_TEXT_SET},
        {"target", NS_KIND_DECIMAL},
        {"target_date", NS_KIND_DATE},
        {"title", NS_KIND_TEXT},
        {"unit", NS_KIND_TEXT},
        {"value_type", NS_KIND_TEXT},
        {"verification", NS_KIND_TEXT},
    };
    assert_fields(ind, ind_fields, sizeof(ind_fields) / sizeof(ind_fields[0]));

    const ns_entity_type *rep = must_find(&r, "indicator_report");
    assert_string_equal(rep->table, "indicator_reports");
    assert_string_equal(rep->tenant_field, "plan_id");
    assert_string_equal(rep->freeze_field, "status");
    assert_string_equal(rep->freeze_value, "approved");
    static const want_field rep_fields[] = {
        {"corrects_id", NS_KIND_REF}, {"evidence", NS_KIND_TEXT},   {"indicator_id", NS_KIND_REF},
        {"narrative", NS_KIND_TEXT},  {"period_end", NS_KIND_DATE}, {"period_start", NS_KIND_DATE},
        {"plan_id", NS_KIND_REF},     {"reporter_id", NS_KIND_REF}, {"return_reason", NS_KIND_TEXT},
        {"status", NS_KIND_TEXT},     {"value", NS_KIND_DECIMAL},   {"value_text", NS_KIND_TEXT},
    };
    assert_fields(rep, rep_fields, sizeof(rep_fields) / sizeof(rep_fields[0]));

    for (size_t i = 0; i < r.ntypes; i++) {
        assert_non_null(r.types[i].sql_select_for_update);
        assert_non_null(r.types[i].sql_upsert);
        assert_ptr_equal(ns_registry_find(&r, r.types[i].name), &r.types[i]);
    }
    assert_null(ns_registry_find(&r, "plans"));
    assert_null(ns_registry_find(&r, ""));
    assert_null(ns_registry_find(&r, "zzz"));
    assert_null(ns_entity_field(plan, "id"));
    assert_null(ns_entity_field(plan, "version"));
    assert_null(ns_entity_field(plan, "changed_at"));
    assert_null(ns_entity_field(plan, "Title"));
    ns_registry_free(&r);
    assert_null(r.types);
    assert_int_equal(r.ntypes, 0);
    ns_registry_free(&r);
}

#define PLAN_A "0a000000-0000-4000-8000-000000000001"
#define PLAN_B "0a000000-0000-4000-8000-000000000002"
#define PLAN_C "0a000000-0000-4000-8000-000000000003"
#define IND_A  "1b000000-0000-4000-8000-000000000001"
#define REP_A  "2c000000-0000-4000-8000-000000000001"

static void test_round_trip_shipped_types(void **state)
{
    (void)state;
    ns_registry r;
    load_ok(&r);
    const ns_entity_type *plan = must_find(&r, "plan");
    const ns_entity_type *ind = must_find(&r, "indicator");
    const ns_entity_type *rep = must_find(&r, "indicator_report");

    /* Dates and decimals must not depend on the session's settings. */
    exec_ok("SET DateStyle = 'SQL, DMY'");
    exec_ok("SET extra_float_digits = -15");

    /* The records are valid under the domain model (sql/003: wps.h), which
     * checks live records only: B and C, tombstones, carry what a live plan
     * may not. */
    record plans[3] = {
        {.id = PLAN_A, .tenant = PLAN_A, .version = 1},
        {.id = PLAN_B, .tenant = PLAN_B, .version = 7, .deleted = true},
        {.id = PLAN_C, .tenant = PLAN_C, .version = 1, .deleted = true},
    };
    for (size_t i = 0; i < 3; i++)
        ns_fieldset_init(&plans[i].fs);
    put(plan, &plans[0].fs, "title",
        "Plan d'action national \"1325\" \\ \xc3\xa9\xe2\x82\xac\xf0\x9f\x8c\x8d\nline 2\ttab");
    put(plan, &plans[0].fs, "summary", "null"); /* the word, not NULL */
    put(plan, &plans[0].fs, "kind", NST_PLAN_KIND);
    put(plan, &plans[0].fs, "status", "adopted");
    put(plan, &plans[0].fs, "period_start", "2024-02-29");
    put(plan, &plans[0].fs, "period_end", "9999-12-31");
    put(plan, &plans[0].fs, "owner_id", OWNER_UPPER);
    put(plan, &plans[0].fs, "tags", "yps, climate,cyber, climate,1325");
    put(plan, &plans[0].fs, "code", "NAP-1325.v2");
    put(plan, &plans[0].fs, "country", "KE");
    put(plan, &plans[0].fs, "generation", "2");
    put(plan, &plans[0].fs, "adopted_on", NULL);
    /* B: empty text and set, the earliest date; every other field absent. */
    put(plan, &plans[1].fs, "title", "");
    put(plan, &plans[1].fs, "tags", "");
    put(plan, &plans[1].fs, "period_start", "1000-01-01");
    /* C: nothing at all. */
    write_and_check(plan, plans, 3);

    record inds[1] = {{.id = IND_A, .tenant = PLAN_A, .version = 3}};
    ns_fieldset_init(&inds[0].fs);
    put(ind, &inds[0].fs, "plan_id", PLAN_A);
    put(ind, &inds[0].fs, "title", "Women in peace delegations");
    put(ind, &inds[0].fs, "value_type", NST_INDICATOR_TYPE);
    put(ind, &inds[0].fs, "code", "1.2.3");
    put(ind, &inds[0].fs, "baseline", "-1234567890123456789012345678.9012345678"); /* 38 */
    put(ind, &inds[0].fs, "target", "0.00000000000000000000000000000000000001");   /* 38 */
    put(ind, &inds[0].fs, "baseline_date", "2024-02-29");
    put(ind, &inds[0].fs, "target_date", NULL);
    put(ind, &inds[0].fs, "responsible_id", NULL);
    put(ind, &inds[0].fs, "tags", "sgbv");
    write_and_check(ind, inds, 1);

    record reps[1] = {{.id = REP_A, .tenant = PLAN_A, .version = 1}};
    ns_fieldset_init(&reps[0].fs);
    put(rep, &reps[0].fs, "plan_id", PLAN_A);
    put(rep, &reps[0].fs, "indicator_id", IND_A);
    put(rep, &reps[0].fs, "value", "99999999999999999999999999999999999999"); /* 38 */
    put(rep, &reps[0].fs, "status", "approved");
    put(rep, &reps[0].fs, "period_start", "2025-04-01"); /* inside both of A's periods */
    put(rep, &reps[0].fs, "period_end", "2025-06-30");
    put(rep, &reps[0].fs, "narrative", "n");
    write_and_check(rep, reps, 1);

    /* An update of the same ids through the upsert: new values replace the
     * old, and a field the record leaves out (code, country, generation)
     * is written as NULL (the engine writes whole records). */
    ns_fieldset_free(&plans[0].fs);
    ns_fieldset_init(&plans[0].fs);
    plans[0].version = 2;
    put(plan, &plans[0].fs, "title", "Second title");
    put(plan, &plans[0].fs, "summary", NULL);
    put(plan, &plans[0].fs, "kind", NST_PLAN_KIND);
    put(plan, &plans[0].fs, "status", "archived");
    put(plan, &plans[0].fs, "period_start", "2025-01-01");
    put(plan, &plans[0].fs, "period_end", "9999-12-31");
    put(plan, &plans[0].fs, "owner_id", OWNER_UPPER);
    put(plan, &plans[0].fs, "tags", "climate,new");
    /* B restored: it needs what a live plan needs. */
    plans[1].version = 8;
    plans[1].deleted = false;
    put(plan, &plans[1].fs, "title", "restored");
    put(plan, &plans[1].fs, "kind", NST_PLAN_KIND);
    put(plan, &plans[1].fs, "status", "draft");
    put(plan, &plans[1].fs, "period_end", "1000-12-31");
    put(plan, &plans[1].fs, "owner_id", OWNER_UPPER);
    write_and_check(plan, plans, 2);

    ns_fieldset_free(&inds[0].fs);
    ns_fieldset_init(&inds[0].fs);
    inds[0].version = 4;
    put(ind, &inds[0].fs, "plan_id", PLAN_A);
    put(ind, &inds[0].fs, "title", "Women in peace delegations");
    put(ind, &inds[0].fs, "value_type", NST_INDICATOR_TYPE);
    put(ind, &inds[0].fs, "baseline", "-0.5");
    put(ind, &inds[0].fs, "baseline_date", "2025-01-31");
    put(ind, &inds[0].fs, "target", "100");
    write_and_check(ind, inds, 1);

    /* Only the ids asked for come back, in id order; unknown ids are skipped. */
    const char *ids[] = {PLAN_C, "ffffffff-ffff-4fff-bfff-ffffffffffff", PLAN_A};
    char arr[256];
    snprintf(arr, sizeof(arr), "{%s,%s,%s}", ids[0], ids[1], ids[2]);
    const char *params[1] = {arr};
    exec_ok("BEGIN");
    PGresult *res =
        PQexecParams(G.pgdb.pg, plan->sql_select_for_update, 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 2);
    assert_string_equal(PQgetvalue(res, 0, 0), PLAN_A);
    assert_string_equal(PQgetvalue(res, 1, 0), PLAN_C);
    PQclear(res);

    /* The rows are locked until the transaction ends. */
    PGconn *other = PQconnectdb(G.pgdb.conninfo);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    const char *one[1] = {PLAN_A};
    res = PQexecParams(other, "SELECT id FROM plans WHERE id = $1 FOR UPDATE NOWAIT", 1, NULL, one,
                       NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "55P03");
    PQclear(res);
    exec_ok("COMMIT");
    res = PQexecParams(other, "SELECT id FROM plans WHERE id = $1 FOR UPDATE NOWAIT", 1, NULL, one,
                       NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    PQfinish(other);

    exec_ok("RESET DateStyle");
    exec_ok("RESET extra_float_digits");
    for (size_t i = 0; i < 3; i++)
        ns_fieldset_free(&plans[i].fs);
    ns_fieldset_free(&inds[0].fs);
    ns_fieldset_free(&reps[0].fs);
    ns_registry_free(&r);
}

/* ---- tests: every kind and many fields, through types registered here -------------------------
 */

static void unregister(const char *name, const char *table)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DELETE FROM sync_entity_types WHERE name = '%s'", name);
    exec_ok(sql);
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", table);
    exec_ok(sql);
}

#define KIND_A "3d000000-0000-4000-8000-000000000001"
#define KIND_B "3d000000-0000-4000-8000-000000000002"

static void test_every_kind(void **state)
{
    (void)state;
    exec_ok("CREATE TABLE test_kinds (" ENGINE_COLUMNS ", flag boolean, big bigint,"
            " amount numeric, label varchar(20), note text, day date, labels text[],"
            " other uuid)");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('test_kind', 'test_kinds')");
    ns_registry r;
    load_ok(&r);
    assert_int_equal(r.ntypes, G.nshipped + 1);
    const ns_entity_type *t = must_find(&r, "test_kind");
    static const want_field fields[] = {
        {"amount", NS_KIND_DECIMAL}, {"big", NS_KIND_INT},    {"day", NS_KIND_DATE},
        {"flag", NS_KIND_BOOL},      {"label", NS_KIND_TEXT}, {"labels", NS_KIND_TEXT_SET},
        {"note", NS_KIND_TEXT},      {"other", NS_KIND_REF},
    };
    assert_fields(t, fields, sizeof(fields) / sizeof(fields[0]));
    /* varchar(20): 20 bytes, so that nothing accepted is refused by
     * PostgreSQL (21 characters would be, whatever their bytes). */
    const ns_field_type *label = &ns_entity_field(t, "label")->type;
    assert_int_equal(label->max_bytes, 20);
    assert_int_equal(ns_entity_field(t, "note")->type.max_bytes, 0);
    ns_value v;
    assert_int_equal(ns_value_parse(label, "twenty-one characters", &v, NULL, 0),
                     NS_VALUE_TOO_LONG);

    record recs[2] = {
        {.id = KIND_A, .tenant = KIND_A, .version = 1},
        {.id = KIND_B, .tenant = KIND_A, .version = 1},
    };
    ns_fieldset_init(&recs[0].fs);
    ns_fieldset_init(&recs[1].fs);
    put(t, &recs[0].fs, "flag", "true");
    put(t, &recs[0].fs, "big", "-9223372036854775808");
    put(t, &recs[0].fs, "amount", "12345678901234567890123456789012345678");
    put(t, &recs[0].fs, "label", "twenty characters ok");
    put(t, &recs[0].fs, "note", "{\"not\": \"json\"}");
    put(t, &recs[0].fs, "day", "2024-02-29");
    put(t, &recs[0].fs, "labels", "b,a,\"q\",{x}, c,\xc3\xa9lan");
    put(t, &recs[0].fs, "other", KIND_B);
    put(t, &recs[1].fs, "flag", "false");
    put(t, &recs[1].fs, "big", "9223372036854775807");
    put(t, &recs[1].fs, "amount", "-0.1");
    put(t, &recs[1].fs, "labels", "null,");
    put(t, &recs[1].fs, "note", NULL);
    write_and_check(t, recs, 2);

    /* Every kind to null. */
    for (size_t i = 0; i < t->nfields; i++)
        put(t, &recs[0].fs, t->fields[i].name, NULL);
    recs[0].version = 2;
    write_and_check(t, recs, 1);

    ns_fieldset_free(&recs[0].fs);
    ns_fieldset_free(&recs[1].fs);
    ns_registry_free(&r);
    unregister("test_kind", "test_kinds");
}

/* jsonb_build_object takes at most 100 arguments; the generated select must
 * split a wide record. */
static void test_many_fields(void **state)
{
    (void)state;
    char sql[4096] = "CREATE TABLE test_wide (" ENGINE_COLUMNS;
    for (int i = 0; i < 95; i++) {
        size_t o = strlen(sql);
        snprintf(sql + o, sizeof(sql) - o, ", f%02d %s", i, i % 2 ? "text" : "numeric");
    }
    strcat(sql, ")");
    exec_ok(sql);
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('test_wide', 'test_wide')");
    ns_registry r;
    load_ok(&r);
    const ns_entity_type *t = must_find(&r, "test_wide");
    assert_int_equal(t->nfields, 95);

    record rec = {.id = KIND_A, .tenant = KIND_A, .version = 1};
    ns_fieldset_init(&rec.fs);
    for (int i = 0; i < 95; i++) {
        char name[8], val[24];
        snprintf(name, sizeof(name), "f%02d", i);
        snprintf(val, sizeof(val), i % 2 ? "text %d" : "%d.25", i);
        put(t, &rec.fs, name, val);
    }
    write_and_check(t, &rec, 1);
    ns_fieldset_free(&rec.fs);
    ns_registry_free(&r);
    unregister("test_wide", "test_wide");
}

/* ---- tests: schemas the engine refuses ----------------------------------------------------- */

static void test_unsupported_column_type(void **state)
{
    (void)state;
    exec_ok("CREATE TABLE bad_things (" ENGINE_COLUMNS ", title text, payload jsonb)");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('bad', 'bad_things')");
    load_fails("column bad_things.payload has type jsonb, which napsync cannot sync");
    unregister("bad", "bad_things");

    exec_ok("CREATE TABLE bad_times (" ENGINE_COLUMNS ", seen_at timestamptz)");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('bad', 'bad_times')");
    load_fails("column bad_times.seen_at has type timestamp with time zone");
    unregister("bad", "bad_times");

    /* INT takes the whole int64 range: a narrower column would refuse a
     * validated value inside a grouped transaction. */
    exec_ok("CREATE TABLE bad_ints (" ENGINE_COLUMNS ", count integer)");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('bad', 'bad_ints')");
    load_fails("column bad_ints.count has type integer");
    unregister("bad", "bad_ints");

    exec_ok("CREATE TABLE bad_arrays (" ENGINE_COLUMNS ", counts integer[])");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('bad', 'bad_arrays')");
    load_fails("column bad_arrays.counts has type integer[]");
    unregister("bad", "bad_arrays");

    /* Arrays of the supported scalars are not those scalars. */
    exec_ok("CREATE TABLE bad_arrays (" ENGINE_COLUMNS ", amounts numeric[])");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('bad', 'bad_arrays')");
    load_fails("column bad_arrays.amounts has type numeric[]");
    unregister("bad", "bad_arrays");
    exec_ok("CREATE TABLE bad_arrays (" ENGINE_COLUMNS ", codes varchar(8)[])");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('bad', 'bad_arrays')");
    load_fails("column bad_arrays.codes has type character varying(8)[]");
    unregister("bad", "bad_arrays");

    /* A constrained numeric would round a longer fraction silently: the
     * stored value would differ from the one acknowledged. */
    exec_ok("CREATE TABLE bad_things (" ENGINE_COLUMNS ", price numeric(10,2))");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('bad', 'bad_things')");
    load_fails("column bad_things.price has type numeric(10,2)");
    unregister("bad", "bad_things");

    /* Names that could not be quoted into the generated SQL safely. */
    exec_ok("CREATE TABLE bad_names (" ENGINE_COLUMNS ", \"Title\" text)");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('bad', 'bad_names')");
    load_fails("column bad_names.Title: field names must be plain lowercase identifiers");
    unregister("bad", "bad_names");

    ns_registry r;
    load_ok(&r); /* back to the shipped types */
    assert_int_equal(r.ntypes, G.nshipped);
    ns_registry_free(&r);
}

static void test_missing_table(void **state)
{
    (void)state;
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('ghost', 'ghost_table')");
    load_fails("entity type ghost names table ghost_table, which does not exist");
    unregister("ghost", "ghost_table");
}

static void test_missing_engine_column(void **state)
{
    (void)state;
    /* Without changed_device. */
    exec_ok("CREATE TABLE partial_things (id uuid PRIMARY KEY, version bigint NOT NULL,"
            " tenant_id uuid NOT NULL, deleted boolean NOT NULL DEFAULT false,"
            " changed_by uuid NOT NULL, changed_at timestamptz NOT NULL DEFAULT now(),"
            " title text)");
    exec_ok("INSERT INTO sync_entity_types (name, table_name) VALUES ('partial', "
            "'partial_things')");
    load_fails("table partial_things of entity type partial lacks some of the engine's columns");
    /* A dropped column does not count. */
    exec_ok("ALTER TABLE partial_things ADD COLUMN changed_device uuid");
    ns_registry r;
    load_ok(&r);
    ns_registry_free(&r);
    exec_ok("ALTER TABLE partial_things DROP COLUMN changed_device");
    load_fails("table partial_things of entity type partial lacks");
    unregister("partial", "partial_things");
}

static void test_bad_tenant_and_freeze(void **state)
{
    (void)state;
    exec_ok("CREATE TABLE odd_things (" ENGINE_COLUMNS ", title text, plan_id uuid)");
    exec_ok("INSERT INTO sync_entity_types (name, table_name, tenant_field) "
            "VALUES ('odd', 'odd_things', 'title')");
    load_fails("entity type odd: tenant field title is not a uuid column");
    exec_ok("UPDATE sync_entity_types SET tenant_field = 'nowhere' WHERE name = 'odd'");
    load_fails("entity type odd: tenant field nowhere is not a uuid column");
    exec_ok("UPDATE sync_entity_types SET tenant_field = 'plan_id', freeze_field = 'title'"
            " WHERE name = 'odd'");
    load_fails("entity type odd: freeze_field and freeze_value are inconsistent");
    exec_ok("UPDATE sync_entity_types SET freeze_field = 'nowhere', freeze_value = 'x'"
            " WHERE name = 'odd'");
    load_fails("entity type odd: freeze_field and freeze_value are inconsistent");
    exec_ok("UPDATE sync_entity_types SET freeze_field = 'title' WHERE name = 'odd'");
    ns_registry r;
    load_ok(&r);
    const ns_entity_type *t = must_find(&r, "odd");
    assert_string_equal(t->tenant_field, "plan_id");
    assert_string_equal(t->freeze_field, "title");
    assert_string_equal(t->freeze_value, "x");
    ns_registry_free(&r);
    unregister("odd", "odd_things");
}

static void test_cannot_connect(void **state)
{
    (void)state;
    /* The same cluster, a database that does not exist. */
    char none[1024], ci[1100];
    assert_int_equal(nst_pgt_conninfo(none, sizeof(none), "nst_none"), 0);
    snprintf(ci, sizeof(ci), "%s connect_timeout=5", none);
    ns_registry r;
    char err[512] = "";
    assert_int_equal(ns_registry_load(ci, &r, err, sizeof(err)), -1);
    assert_null(r.types);
    assert_non_null(strstr(err, "cannot connect to the database"));
    /* A database without the migrations. */
    char admin[1024];
    assert_int_equal(nst_pgt_conninfo(admin, sizeof(admin), "postgres"), 0);
    assert_int_equal(ns_registry_load(admin, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read the entity types"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_shipped_types, test_teardown),
        cmocka_unit_test_teardown(test_round_trip_shipped_types, test_teardown),
        cmocka_unit_test_teardown(test_every_kind, test_teardown),
        cmocka_unit_test_teardown(test_many_fields, test_teardown),
        cmocka_unit_test_teardown(test_unsupported_column_type, test_teardown),
        cmocka_unit_test_teardown(test_missing_table, test_teardown),
        cmocka_unit_test_teardown(test_missing_engine_column, test_teardown),
        cmocka_unit_test_teardown(test_bad_tenant_and_freeze, test_teardown),
        cmocka_unit_test_teardown(test_cannot_connect, test_teardown),
    };
    return cmocka_run_group_tests_name("registry", tests, group_setup, group_teardown);
}
