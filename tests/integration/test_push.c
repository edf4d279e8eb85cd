/* The push path (daemon/sync.h) in process against a real PostgreSQL: a
 * fresh database on the NS_TEST_PG* cluster migrated with ns_migrate_run,
 * the registry loaded from it, a uv loop and a pool, organisations,
 * principals and devices inserted with SQL; no daemon process. Pushes are
 * built as protobuf messages, answers checked, and the database read back
 * with plain libpq: records, revisions, the feed, conflicts and stored
 * answers. After every test the feed must be contiguous from 1, in step
 * with the revisions (one feed row each), and every record at the version
 * of its last revision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "fields_pb.h"
#include "pgtest.h"
#include "registry.h"
#include "sync.h"

#define OUT_APPLIED  NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED
#define OUT_MERGED   NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED
#define OUT_CONFLICT NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT
#define OUT_REJECTED NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED
#define OP_CREATE    NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE
#define OP_UPDATE    NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE
#define OP_DELETE    NAPSYNC__V1__MUTATION_OP__MUTATION_OP_DELETE
#define ERR(x)       NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##x

#define PLAN_1 "0a000000-0000-4000-8000-000000000001"
#define PLAN_2 "0a000000-0000-4000-8000-000000000002"
#define PLAN_X "0a000000-0000-4000-8000-0000000000ff" /* never created */
#define IND_1  "1b000000-0000-4000-8000-000000000001"
#define REP_1  "2c000000-0000-4000-8000-000000000001"

static struct {
    nst_pgt_db pgdb; /* the test database; pgdb.pg for the tests' own SQL */
    uv_loop_t loop;
    bool loop_ok;
    ns_db *db;
    ns_registry reg;
    ns_sync *sync;
    /* Organisation A: alice (coordinator, device dev-a), bob (implementer,
     * dev-b), olga (observer, dev-o); organisation B: xavier (coordinator,
     * dev-x). */
    ns_identity_info alice, bob, olga, xavier;
    char org_a[40], org_b[40];
} G;

/* ---- plain SQL ----------------------------------------------------------------------- */

/* Values of the first row of a query, kept in rotating buffers until a few
 * more queries have run. NULL for SQL NULL or no row. */
static char qbuf[8][8192];
static unsigned qnext;

static const char *qv(const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(G.pgdb.pg, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        print_error("%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        fail();
    }
    const char *out = NULL;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
        char *b = qbuf[qnext++ % 8];
        snprintf(b, sizeof(qbuf[0]), "%s", PQgetvalue(res, 0, 0));
        out = b;
    }
    PQclear(res);
    return out;
}

#define Q(sql, ...)                                                                                \
    qv(sql, (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *)),                    \
       (const char *const[]){__VA_ARGS__})

static long long qn(const char *sql, int n, const char *const *params)
{
    const char *v = qv(sql, n, params);
    if (v == NULL)
        fail_msg("%s: no value", sql);
    return strtoll(v, NULL, 10);
}

#define QN(sql, ...)                                                                               \
    qn(sql, (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *)),                    \
       (const char *const[]){__VA_ARGS__})
#define QN0(sql) qn(sql, 0, NULL)

static void exec_ok(const char *sql)
{
    nst_pgt_exec_ok(G.pgdb.pg, sql, 0, NULL);
}

/* ---- identities ----------------------------------------------------------------------- */

static int sql_row(const char *sql, int n, const char *const *params, char *out, size_t outlen)
{
    PGresult *res = PQexecParams(G.pgdb.pg, sql, n, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    } else {
        fprintf(stderr, "test_push: %s: %s", sql, PQresultErrorMessage(res));
    }
    PQclear(res);
    return rc;
}

static int make_identity(ns_identity_info *id, const char *org, const char *name, const char *role,
                         const char *device)
{
    memset(id, 0, sizeof(*id));
    snprintf(id->principal_name, sizeof(id->principal_name), "%s", name);
    snprintf(id->device_name, sizeof(id->device_name), "%s", device);
    snprintf(id->organisation_id, sizeof(id->organisation_id), "%s", org);
    snprintf(id->roles[0], sizeof(id->roles[0]), "%s", role);
    id->nroles = 1;
    const char *p1[] = {org, name};
    if (sql_row("INSERT INTO principals (organisation_id, name) VALUES ($1, $2) RETURNING id", 2,
                p1, id->principal_id, sizeof(id->principal_id)) != 0)
        return -1;
    const char *p2[] = {id->principal_id, org, role};
    char ignored[8];
    if (sql_row("INSERT INTO principal_roles (principal_id, organisation_id, role)"
                " VALUES ($1, $2, $3) RETURNING 'ok'",
                3, p2, ignored, sizeof(ignored)) != 0)
        return -1;
    const char *p3[] = {id->principal_id, device};
    return sql_row("INSERT INTO devices (principal_id, name, cert_sha256)"
                   " VALUES ($1, $2, sha256(convert_to($2, 'UTF8'))) RETURNING id",
                   2, p3, id->device_id, sizeof(id->device_id));
}

/* ---- the loop ------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    (void)t; /* only wakes the loop up so that the deadline is checked */
}

/* Runs the loop until *flag or a deadline. */
static void run_until(const bool *flag)
{
    uv_timer_t tick;
    uv_timer_init(&G.loop, &tick);
    uv_timer_start(&tick, on_tick, 50, 50);
    uint64_t deadline = uv_hrtime() + 30ull * 1000000000ull;
    while (!*flag && uv_hrtime() < deadline)
        uv_run(&G.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&G.loop, UV_RUN_NOWAIT);
    if (!*flag)
        fail_msg("timed out waiting for the loop");
}

/* ---- building pushes ------------------------------------------------------------------ */

typedef struct {
    Napsync__V1__Mutation m;
    Napsync__V1__FieldSet fpb;
    ns_fieldset fs;
    char mid[80], type[40], rid[80];
} mut_holder;

typedef struct {
    Napsync__V1__Push push;
    mut_holder **h;
    Napsync__V1__Mutation **ptrs;
    size_t n, cap;
} pbuild;

static void pb_init(pbuild *b)
{
    memset(b, 0, sizeof(*b));
    napsync__v1__push__init(&b->push);
}

static void pb_free(pbuild *b)
{
    for (size_t i = 0; i < b->n; i++) {
        ns_fieldset_pb_clear(&b->h[i]->fpb);
        ns_fieldset_free(&b->h[i]->fs);
        free(b->h[i]);
    }
    free(b->h);
    free(b->ptrs);
    pb_init(b);
}

static bool kind_named(const char *s, size_t len, ns_kind *k)
{
    static const struct {
        const char *name;
        ns_kind kind;
    } kinds[] = {{"bool", NS_KIND_BOOL}, {"int", NS_KIND_INT},   {"decimal", NS_KIND_DECIMAL},
                 {"text", NS_KIND_TEXT}, {"date", NS_KIND_DATE}, {"set", NS_KIND_TEXT_SET},
                 {"ref", NS_KIND_REF}};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strlen(kinds[i].name) == len && strncmp(kinds[i].name, s, len) == 0) {
            *k = kinds[i].kind;
            return true;
        }
    }
    return false;
}

/* One field from "name=value", "name" (null), or "name:kind=value" (a value
 * of that kind whatever the field's): the value is parsed by the field's
 * kind, or as text for a field the type lacks. */
static void put_spec(const char *type, ns_fieldset *fs, const char *spec)
{
    char name[64];
    const char *eq = strchr(spec, '=');
    const char *colon = strchr(spec, ':');
    if (colon != NULL && eq != NULL && colon > eq)
        colon = NULL;
    size_t len = colon ? (size_t)(colon - spec) : eq ? (size_t)(eq - spec) : strlen(spec);
    assert_true(len < sizeof(name));
    memcpy(name, spec, len);
    name[len] = '\0';
    ns_field_type ft = {NS_KIND_TEXT, true, 0, 0};
    const ns_entity_type *t = ns_registry_find(&G.reg, type);
    const ns_field_def *f = t ? ns_entity_field(t, name) : NULL;
    if (f != NULL)
        ft = f->type;
    ft.nullable = true;
    if (colon != NULL) {
        const char *kend = eq ? eq : colon + strlen(colon);
        if (!kind_named(colon + 1, (size_t)(kend - colon - 1), &ft.kind))
            fail_msg("bad kind in %s", spec);
    }
    ns_value v;
    char err[128];
    if (ns_value_parse(&ft, eq ? eq + 1 : NULL, &v, err, sizeof(err)) != NS_VALUE_OK)
        fail_msg("%s: %s", spec, err);
    assert_int_equal(ns_fieldset_set(fs, name, &v), 0);
    ns_value_free(&v);
}

static void pb_add(pbuild *b, const char *mid, const char *type, const char *rid, int op,
                   uint64_t base, const char *const *specs)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->h = realloc(b->h, b->cap * sizeof(*b->h));
        b->ptrs = realloc(b->ptrs, b->cap * sizeof(*b->ptrs));
        assert_non_null(b->h);
        assert_non_null(b->ptrs);
    }
    mut_holder *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    napsync__v1__mutation__init(&x->m);
    napsync__v1__field_set__init(&x->fpb);
    ns_fieldset_init(&x->fs);
    snprintf(x->mid, sizeof(x->mid), "%s", mid);
    snprintf(x->type, sizeof(x->type), "%s", type);
    snprintf(x->rid, sizeof(x->rid), "%s", rid);
    x->m.mutation_id = x->mid;
    x->m.entity_type = x->type;
    x->m.record_id = x->rid;
    x->m.op = (Napsync__V1__MutationOp)op;
    x->m.base_version = base;
    for (size_t i = 0; specs != NULL && specs[i] != NULL; i++)
        put_spec(type, &x->fs, specs[i]);
    if (x->fs.n > 0) {
        assert_int_equal(ns_fieldset_to_pb(&x->fs, &x->fpb), 0);
        x->m.fields = &x->fpb;
    }
    b->h[b->n] = x;
    b->ptrs[b->n] = &x->m;
    b->n++;
    b->push.n_mutations = b->n;
    b->push.mutations = b->ptrs;
}

#define F(...)   ((const char *const[]){__VA_ARGS__, NULL})
#define NOFIELDS ((const char *const[]){NULL})

/* Deterministic UUIDs: tag and number. Rotating buffers. */
static const char *uid(unsigned tag, unsigned n)
{
    static char bufs[16][40];
    static unsigned next;
    char *b = bufs[next++ % 16];
    snprintf(b, 40, "%08x-0000-4000-8000-%012x", tag, n);
    return b;
}

#define MID(n) uid(0xee000000u, (n))

/* ---- running pushes ------------------------------------------------------------------- */

typedef struct {
    char mutation_id[48];
    int outcome;
    uint64_t version;
    char conflicts[4][40];
    size_t nconflicts;
    int reject_code;
    char reason[300];
} res_copy;

typedef struct {
    bool done;
    int calls;
    int code;
    char msg[300];
    bool has_result;
    res_copy *r;
    size_t n;
} push_out;

static void on_push(const Napsync__V1__PushResult *result, Napsync__V1__ErrorCode code,
                    const char *message, void *ud)
{
    push_out *o = ud;
    o->calls++;
    o->done = true;
    o->code = code;
    snprintf(o->msg, sizeof(o->msg), "%s", message ? message : "");
    o->has_result = result != NULL;
    if (result == NULL)
        return;
    o->n = result->n_results;
    o->r = calloc(o->n ? o->n : 1, sizeof(*o->r));
    for (size_t i = 0; i < o->n; i++) {
        const Napsync__V1__MutationResult *m = result->results[i];
        res_copy *c = &o->r[i];
        snprintf(c->mutation_id, sizeof(c->mutation_id), "%s", m->mutation_id);
        c->outcome = m->outcome;
        c->version = m->version;
        c->reject_code = m->reject_code;
        snprintf(c->reason, sizeof(c->reason), "%s", m->reject_reason);
        c->nconflicts = m->n_conflict_ids;
        for (size_t k = 0; k < m->n_conflict_ids && k < 4; k++)
            snprintf(c->conflicts[k], sizeof(c->conflicts[k]), "%s", m->conflict_ids[k]);
    }
}

static void out_free(push_out *o)
{
    free(o->r);
    memset(o, 0, sizeof(*o));
}

static void submit(ns_sync *s, pbuild *b, const ns_identity_info *who, push_out *o)
{
    memset(o, 0, sizeof(*o));
    assert_int_equal(ns_sync_push(s, who, &b->push, on_push, o), NS_SYNC_OK);
    /* Never inside the call. */
    assert_false(o->done);
}

static void run_push(pbuild *b, const ns_identity_info *who, push_out *o)
{
    submit(G.sync, b, who, o);
    run_until(&o->done);
    assert_int_equal(o->calls, 1);
}

/* The push must have succeeded with n results. */
static void results_ok(const push_out *o, size_t n)
{
    if (!o->has_result)
        fail_msg("the push failed: code %d: %s", o->code, o->msg);
    assert_int_equal(o->code, 0);
    assert_int_equal(o->n, n);
}

static void expect(const push_out *o, size_t i, int outcome, uint64_t version)
{
    assert_true(i < o->n);
    const res_copy *r = &o->r[i];
    if (r->outcome != outcome || r->version != version)
        fail_msg("result %zu: outcome %d version %llu (code %d: %s), expected %d version %llu", i,
                 r->outcome, (unsigned long long)r->version, r->reject_code, r->reason, outcome,
                 (unsigned long long)version);
    if (outcome != OUT_REJECTED)
        assert_int_equal(r->reject_code, 0);
    if (outcome != OUT_CONFLICT)
        assert_int_equal(r->nconflicts, 0);
}

static void expect_rejected(const push_out *o, size_t i, int code, const char *needle)
{
    expect(o, i, OUT_REJECTED, 0);
    const res_copy *r = &o->r[i];
    if (r->reject_code != code)
        fail_msg("result %zu: reject code %d (%s), expected %d", i, r->reject_code, r->reason,
                 code);
    if (strstr(r->reason, needle) == NULL)
        fail_msg("result %zu: reason \"%s\" lacks \"%s\"", i, r->reason, needle);
}

/* One mutation, one push, its one result. */
static void push1(const ns_identity_info *who, const char *mid, const char *type, const char *rid,
                  int op, uint64_t base, const char *const *specs, push_out *o)
{
    pbuild b;
    pb_init(&b);
    pb_add(&b, mid, type, rid, op, base, specs);
    run_push(&b, who, o);
    pb_free(&b);
    results_ok(o, 1);
    assert_string_equal(o->r[0].mutation_id, mid);
}

static void apply1(const ns_identity_info *who, const char *mid, const char *type, const char *rid,
                   int op, uint64_t base, const char *const *specs, int outcome, uint64_t version)
{
    push_out o;
    push1(who, mid, type, rid, op, base, specs, &o);
    expect(&o, 0, outcome, version);
    out_free(&o);
}

/* ---- the database as the engine left it ----------------------------------------------- */

static const char *plan_field(const char *id, const char *column)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT %s::text FROM plans WHERE id = $1", column);
    return Q(sql, id);
}

static long long stored_count(const char *mid)
{
    return QN("SELECT count(*) FROM sync_mutations WHERE mutation_id = $1", mid);
}

/* The invariants every test ends with. */
static void check_feed(void)
{
    long long n = QN0("SELECT count(*) FROM sync_feed");
    assert_int_equal(QN0("SELECT seq FROM sync_feed_head"), n);
    if (n > 0) {
        assert_int_equal(QN0("SELECT min(seq) FROM sync_feed"), 1);
        assert_int_equal(QN0("SELECT max(seq) FROM sync_feed"), n);
    }
    /* One feed row per revision and no other. */
    assert_int_equal(QN0("SELECT count(*) FROM sync_revisions r FULL JOIN sync_feed f"
                         " USING (entity_type, record_id, version)"
                         " WHERE f.seq IS NULL OR r.op IS NULL"),
                     0);
    /* A record's versions follow one another in feed order. */
    assert_int_equal(QN0("SELECT count(*) FROM (SELECT version, lag(version) OVER"
                         " (PARTITION BY entity_type, record_id ORDER BY seq) AS prev"
                         " FROM sync_feed) x WHERE version <> coalesce(prev, 0) + 1"),
                     0);
    /* Every record is at the version of its last revision, and holds it. */
    static const char *const tables[][2] = {{"plans", "plan"},
                                            {"indicators", "indicator"},
                                            {"indicator_reports", "indicator_report"},
                                            {"test_notes", "test_note"}};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM %s t JOIN sync_revisions r ON r.entity_type = $1"
                 " AND r.record_id = t.id AND r.version = t.version"
                 " WHERE r.deleted <> t.deleted OR r.tenant_id <> t.tenant_id"
                 " OR r.version <> (SELECT max(version) FROM sync_revisions x"
                 "   WHERE x.entity_type = $1 AND x.record_id = t.id)",
                 tables[i][0]);
        assert_int_equal(QN(sql, tables[i][1]), 0);
        snprintf(sql, sizeof(sql),
                 "SELECT (SELECT count(*) FROM %s) - (SELECT count(DISTINCT record_id)"
                 " FROM sync_revisions WHERE entity_type = $1)",
                 tables[i][0]);
        assert_int_equal(QN(sql, tables[i][1]), 0);
    }
}

/* ---- fixture -------------------------------------------------------------------------- */

#define ENGINE_COLUMNS                                                                             \
    "id uuid PRIMARY KEY, version bigint NOT NULL, tenant_id uuid NOT NULL,"                       \
    " deleted boolean NOT NULL DEFAULT false,"                                                     \
    " changed_by uuid NOT NULL REFERENCES principals (id),"                                        \
    " changed_device uuid REFERENCES devices (id), changed_at timestamptz NOT NULL DEFAULT now()"

static int group_setup(void **state)
{
    (void)state;
    if (nst_pgt_create(&G.pgdb, "push") != 0)
        return -1;

    /* A type of this test's own whose CHECK constraint the engine cannot
     * know: a mutation of it fails inside the batch's transaction. */
    if (nst_pgt_exec(G.pgdb.pg, "CREATE TABLE test_notes (" ENGINE_COLUMNS
                                ", plan_id uuid, body text CHECK (body IS DISTINCT FROM "
                                "'forbidden'));"
                                "INSERT INTO sync_entity_types (name, table_name, tenant_field)"
                                " VALUES ('test_note', 'test_notes', 'plan_id')") != 0)
        return -1;

    const char *none[1] = {NULL};
    if (sql_row("INSERT INTO organisations (code, name, kind) VALUES ('mogec', 'Ministry',"
                " 'ministry') RETURNING id",
                0, none, G.org_a, sizeof(G.org_a)) != 0 ||
        sql_row("INSERT INTO organisations (code, name, kind) VALUES ('cso-b', 'Other',"
                " 'cso') RETURNING id",
                0, none, G.org_b, sizeof(G.org_b)) != 0)
        return -1;
    if (make_identity(&G.alice, G.org_a, "alice", "coordinator", "dev-a") != 0 ||
        make_identity(&G.bob, G.org_a, "bob", "implementer", "dev-b") != 0 ||
        make_identity(&G.olga, G.org_a, "olga", "observer", "dev-o") != 0 ||
        make_identity(&G.xavier, G.org_b, "xavier", "coordinator", "dev-x") != 0)
        return -1;

    char err[512];
    if (ns_registry_load(G.pgdb.conninfo, &G.reg, err, sizeof(err)) != 0) {
        fprintf(stderr, "test_push: registry: %s\n", err);
        return -1;
    }
    if (uv_loop_init(&G.loop) != 0)
        return -1;
    G.loop_ok = true;
    ns_db_options o = {
        .conninfo = G.pgdb.conninfo,
        .pool_size = 4,
        .queue_limit = 1000,
        .queue_timeout_ms = 10000,
        .reconnect_max_ms = 1000,
    };
    if (ns_db_open(&G.loop, &o, &G.db) != NS_DB_OK)
        return -1;
    if (ns_sync_new(&G.loop, G.db, &G.reg, &G.sync, err, sizeof(err)) != NS_SYNC_OK) {
        fprintf(stderr, "test_push: ns_sync_new: %s\n", err);
        return -1;
    }
    return 0;
}

static void on_flag(void *ud)
{
    *(bool *)ud = true;
}

static int group_teardown(void **state)
{
    (void)state;
    if (G.sync != NULL) {
        bool done = false;
        ns_sync_close(G.sync, on_flag, &done);
        while (!done)
            uv_run(&G.loop, UV_RUN_ONCE);
    }
    if (G.db != NULL) {
        bool done = false;
        ns_db_close(G.db, on_flag, &done);
        while (!done)
            uv_run(&G.loop, UV_RUN_ONCE);
    }
    if (G.loop_ok) {
        uv_run(&G.loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&G.loop) != 0)
            fprintf(stderr, "test_push: handles left open on the loop\n");
    }
    ns_registry_free(&G.reg);
    return nst_pgt_drop(&G.pgdb);
}

/* Every test starts from empty tables and feed. */
static int test_setup(void **state)
{
    (void)state;
    return nst_pgt_exec(G.pgdb.pg, "TRUNCATE plans, indicators, indicator_reports, test_notes,"
                                   " sync_revisions, sync_feed, sync_mutations, sync_conflicts;"
                                   " UPDATE sync_feed_head SET seq = 0");
}

static int test_teardown(void **state)
{
    (void)state;
    check_feed();
    return 0;
}

/* ---- tests: applied, merged, conflict
 * ------------------------------------------------------------ */

/* A column of a revision, as text. */
static const char *rev(const char *id, const char *version, const char *expr)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT (%s)::text FROM sync_revisions WHERE record_id = $1 AND version = $2", expr);
    return Q(sql, id, version);
}

/* The notifications that arrived on the test's connection: their payloads,
 * space separated. */
static void notified(char *out, size_t outlen)
{
    out[0] = '\0';
    assert_int_equal(PQconsumeInput(G.pgdb.pg), 1);
    PGnotify *n;
    while ((n = PQnotifies(G.pgdb.pg)) != NULL) {
        assert_string_equal(n->relname, "napsync_feed");
        size_t o = strlen(out);
        snprintf(out + o, outlen - o, "%s%s", o ? " " : "", n->extra);
        PQfreemem(n);
    }
}

static void test_create_update_delete(void **state)
{
    (void)state;
    char notes[128];
    exec_ok("LISTEN napsync_feed");
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0,
           F("title=National Action Plan", "kind=NAP", "tags=yps, climate"), OUT_APPLIED, 1);

    assert_string_equal(plan_field(PLAN_1, "version"), "1");
    assert_string_equal(plan_field(PLAN_1, "tenant_id"), PLAN_1);
    assert_string_equal(plan_field(PLAN_1, "title"), "National Action Plan");
    assert_string_equal(plan_field(PLAN_1, "tags"), "{climate,yps}");
    assert_null(plan_field(PLAN_1, "summary"));
    /* Created for the principal's organisation. */
    assert_string_equal(plan_field(PLAN_1, "owner_id"), G.org_a);
    assert_string_equal(plan_field(PLAN_1, "changed_by"), G.alice.principal_id);
    assert_string_equal(plan_field(PLAN_1, "changed_device"), G.alice.device_id);
    assert_string_equal(plan_field(PLAN_1, "deleted"), "false");

    /* The revision: who, from which device, which mutation, before, after
     * (every field, absent ones null). */
    assert_string_equal(rev(PLAN_1, "1", "op"), "create");
    assert_string_equal(rev(PLAN_1, "1", "principal_id"), G.alice.principal_id);
    assert_string_equal(rev(PLAN_1, "1", "device_id"), G.alice.device_id);
    assert_string_equal(rev(PLAN_1, "1", "mutation_id"), MID(1));
    assert_string_equal(rev(PLAN_1, "1", "tenant_id"), PLAN_1);
    assert_null(rev(PLAN_1, "1", "before"));
    assert_string_equal(rev(PLAN_1, "1", "after->>'title'"), "National Action Plan");
    assert_string_equal(rev(PLAN_1, "1", "after->'tags'"), "[\"climate\", \"yps\"]");
    assert_string_equal(rev(PLAN_1, "1", "after->'summary'"), "null");
    assert_string_equal(rev(PLAN_1, "1", "after->>'owner_id'"), G.org_a);

    /* Its feed position and its stored answer. */
    assert_string_equal(Q("SELECT seq || ' ' || entity_type || ' ' || version || ' ' ||"
                          " (record_id = $1 AND tenant_id = $1)::text FROM sync_feed",
                          PLAN_1),
                        "1 plan 1 true");
    assert_string_equal(Q("SELECT outcome || ' ' || version || ' ' || reject_code || ' ' ||"
                          " (device_id = $2)::text || ' ' || (record_id = $3)::text || ' ' ||"
                          " entity_type || ' ' || cardinality(conflict_ids)"
                          " FROM sync_mutations WHERE mutation_id = $1",
                          MID(1), G.alice.device_id, PLAN_1),
                        "applied 1 0 true true plan 0");

    /* The commit notified the new head of the feed. */
    notified(notes, sizeof(notes));
    assert_string_equal(notes, "1");

    /* An update on the current version. */
    apply1(&G.alice, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=NAP 2024-2028", "summary"),
           OUT_APPLIED, 2);
    assert_string_equal(plan_field(PLAN_1, "title"), "NAP 2024-2028");
    assert_string_equal(rev(PLAN_1, "2", "op"), "update");
    assert_string_equal(rev(PLAN_1, "2", "before->>'title'"), "National Action Plan");
    assert_string_equal(rev(PLAN_1, "2", "after->>'title'"), "NAP 2024-2028");
    assert_string_equal(rev(PLAN_1, "2", "after->>'kind'"), "NAP");
    assert_int_equal(QN0("SELECT max(seq) FROM sync_feed"), 2);

    /* Nothing changes: applied on the current version, no new version. */
    notified(notes, sizeof(notes));
    assert_string_equal(notes, "2");
    apply1(&G.alice, MID(3), "plan", PLAN_1, OP_UPDATE, 2, F("title=NAP 2024-2028"), OUT_APPLIED,
           2);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_1), 2);
    assert_int_equal(stored_count(MID(3)), 1);
    notified(notes, sizeof(notes));
    assert_string_equal(notes, ""); /* no change, no notification */

    /* Delete: a tombstone that keeps its fields. */
    apply1(&G.alice, MID(4), "plan", PLAN_1, OP_DELETE, 2, NOFIELDS, OUT_APPLIED, 3);
    assert_string_equal(plan_field(PLAN_1, "deleted"), "true");
    assert_string_equal(plan_field(PLAN_1, "title"), "NAP 2024-2028");
    assert_string_equal(rev(PLAN_1, "3", "op"), "delete");
    assert_string_equal(rev(PLAN_1, "3", "deleted"), "true");
    /* Deleting it again changes nothing. */
    apply1(&G.alice, MID(5), "plan", PLAN_1, OP_DELETE, 3, NOFIELDS, OUT_APPLIED, 3);
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), 3);
    notified(notes, sizeof(notes));
    assert_string_equal(notes, "3");
    exec_ok("UNLISTEN napsync_feed");
}

/* A conflict row, as text: field base kept other kept_by kept_device
 * other_by other_device. */
static const char *conflict_row(const char *id)
{
    return Q("SELECT coalesce(field, '-') || ' ' || coalesce(base::text, '-') || ' ' ||"
             " coalesce(kept::text, '-') || ' ' || coalesce(other::text, '-') || ' ' ||"
             " kept_deleted || ' ' || other_deleted || ' ' || coalesce(other_fields::text, '-')"
             " FROM sync_conflicts WHERE id = $1",
             id);
}

static void conflict_authors(const char *id, const ns_identity_info *kept,
                             const ns_identity_info *other)
{
    assert_string_equal(Q("SELECT kept_principal FROM sync_conflicts WHERE id = $1", id),
                        kept->principal_id);
    assert_string_equal(Q("SELECT kept_device FROM sync_conflicts WHERE id = $1", id),
                        kept->device_id);
    assert_string_equal(Q("SELECT other_principal FROM sync_conflicts WHERE id = $1", id),
                        other->principal_id);
    assert_string_equal(Q("SELECT other_device FROM sync_conflicts WHERE id = $1", id),
                        other->device_id);
    assert_null(Q("SELECT resolved_at FROM sync_conflicts WHERE id = $1", id));
}

/* The issue's scenario: A changes title, B changes title and summary, both
 * on v1; A's push lands first. */
static void scenario(bool one_batch)
{
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0", "summary=S0"), OUT_APPLIED,
           1);
    pbuild a, b;
    pb_init(&a);
    pb_init(&b);
    pb_add(&a, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=Title by A"));
    pb_add(&b, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=Title by B", "summary=Summary by B"));
    push_out oa, ob;
    if (one_batch) {
        /* Both arrive in one turn of the loop: one transaction, in order. */
        submit(G.sync, &a, &G.alice, &oa);
        submit(G.sync, &b, &G.bob, &ob);
        run_until(&oa.done);
        run_until(&ob.done);
    } else {
        run_push(&a, &G.alice, &oa);
        run_push(&b, &G.bob, &ob);
    }
    pb_free(&a);
    pb_free(&b);
    results_ok(&oa, 1);
    results_ok(&ob, 1);
    expect(&oa, 0, OUT_APPLIED, 2);
    /* summary merged (a new version), title kept: one conflict. */
    expect(&ob, 0, OUT_CONFLICT, 3);
    assert_int_equal(ob.r[0].nconflicts, 1);
    const char *cid = ob.r[0].conflicts[0];
    assert_string_equal(plan_field(PLAN_1, "title"), "Title by A");
    assert_string_equal(plan_field(PLAN_1, "summary"), "Summary by B");
    assert_string_equal(plan_field(PLAN_1, "version"), "3");
    assert_string_equal(conflict_row(cid),
                        "title \"T0\" \"Title by A\" \"Title by B\" false false -");
    conflict_authors(cid, &G.alice, &G.bob);
    assert_string_equal(Q("SELECT tenant_id || ' ' || entity_type || ' ' || mutation_id"
                          " FROM sync_conflicts WHERE record_id = $1",
                          PLAN_1),
                        Q("SELECT $1 || ' plan ' || $2", PLAN_1, MID(3)));
    assert_int_equal(QN0("SELECT count(*) FROM sync_conflicts"), 1);
    assert_string_equal(
        Q("SELECT outcome || ' ' || version || ' ' || (conflict_ids = ARRAY[$2]::uuid[])"
          " FROM sync_mutations WHERE mutation_id = $1",
          MID(3), cid),
        "conflict 3 true");
    assert_string_equal(rev(PLAN_1, "3", "principal_id"), G.bob.principal_id);
    assert_string_equal(rev(PLAN_1, "3", "after->>'title'"), "Title by A");
    if (one_batch)
        assert_int_equal(QN("SELECT count(DISTINCT xmin::text) FROM sync_revisions"
                            " WHERE record_id = $1 AND version > 1",
                            PLAN_1),
                         1);
    out_free(&oa);
    out_free(&ob);
}

static void test_issue_scenario(void **state)
{
    (void)state;
    scenario(false);
}

static void test_issue_scenario_one_batch(void **state)
{
    (void)state;
    scenario(true);
}

/* A device's edits of a record whose earlier edits it has not seen
 * acknowledged carry the base it last saw; they are not conflicts. */
static void test_own_device_edits(void **state)
{
    (void)state;
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0", "summary=S0"), OUT_APPLIED,
           1);
    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=X"));
    pb_add(&b, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=Y"));
    push_out o;
    run_push(&b, &G.alice, &o);
    pb_free(&b);
    results_ok(&o, 2);
    expect(&o, 0, OUT_APPLIED, 2);
    expect(&o, 1, OUT_APPLIED, 3);
    out_free(&o);
    /* In a later push, still on base 1. */
    apply1(&G.alice, MID(4), "plan", PLAN_1, OP_UPDATE, 1, F("title=Z"), OUT_APPLIED, 4);
    assert_string_equal(plan_field(PLAN_1, "title"), "Z");

    /* Someone else's change breaks the run: the next edit on base 1 is
     * merged against v4, the device's last own version. */
    apply1(&G.bob, MID(5), "plan", PLAN_1, OP_UPDATE, 4, F("summary=SB"), OUT_APPLIED, 5);
    apply1(&G.alice, MID(6), "plan", PLAN_1, OP_UPDATE, 1, F("title=W"), OUT_MERGED, 6);
    assert_string_equal(plan_field(PLAN_1, "title"), "W");
    assert_string_equal(plan_field(PLAN_1, "summary"), "SB");
    assert_int_equal(QN0("SELECT count(*) FROM sync_conflicts"), 0);

    /* Another device's edit on base 1 does conflict; it changes nothing,
     * so its version is the current one. */
    push_out c;
    push1(&G.bob, MID(7), "plan", PLAN_1, OP_UPDATE, 1, F("title=B"), &c);
    expect(&c, 0, OUT_CONFLICT, 6);
    assert_string_equal(conflict_row(c.r[0].conflicts[0]),
                        "title \"T0\" \"W\" \"B\" false false -");
    conflict_authors(c.r[0].conflicts[0], &G.alice, &G.bob);
    out_free(&c);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_1), 6);
}

static void test_edit_versus_delete(void **state)
{
    (void)state;
    /* Delete first, then an edit on the same base: the edit is a
     * conflict, kept in other_fields; the record stays deleted. */
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"), OUT_APPLIED, 1);
    apply1(&G.alice, MID(2), "plan", PLAN_1, OP_DELETE, 1, NOFIELDS, OUT_APPLIED, 2);
    push_out o;
    push1(&G.bob, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=edited"), &o);
    expect(&o, 0, OUT_CONFLICT, 2);
    assert_string_equal(conflict_row(o.r[0].conflicts[0]),
                        "- - - - true false {\"title\": \"edited\"}");
    conflict_authors(o.r[0].conflicts[0], &G.alice, &G.bob);
    out_free(&o);
    assert_string_equal(plan_field(PLAN_1, "deleted"), "true");
    assert_string_equal(plan_field(PLAN_1, "title"), "T0");

    /* Edit first, then a delete on the same base: the delete is a
     * conflict; the record stays, edited. */
    apply1(&G.alice, MID(4), "plan", PLAN_2, OP_CREATE, 0, F("title=T0"), OUT_APPLIED, 1);
    apply1(&G.alice, MID(5), "plan", PLAN_2, OP_UPDATE, 1, F("title=edited"), OUT_APPLIED, 2);
    push1(&G.bob, MID(6), "plan", PLAN_2, OP_DELETE, 1, NOFIELDS, &o);
    expect(&o, 0, OUT_CONFLICT, 2);
    assert_string_equal(conflict_row(o.r[0].conflicts[0]), "- - - - false true -");
    conflict_authors(o.r[0].conflicts[0], &G.alice, &G.bob);
    out_free(&o);
    assert_string_equal(plan_field(PLAN_2, "deleted"), "false");
    assert_string_equal(plan_field(PLAN_2, "title"), "edited");

    /* A stale delete of a record that is back where its base was merges. */
    apply1(&G.bob, MID(7), "plan", PLAN_2, OP_UPDATE, 2, F("title=T0"), OUT_APPLIED, 3);
    apply1(&G.bob, MID(8), "plan", PLAN_2, OP_DELETE, 1, NOFIELDS, OUT_MERGED, 4);
    assert_string_equal(plan_field(PLAN_2, "deleted"), "true");
}

/* An approved indicator report is never changed by a stale edit. */
static void test_approved_report(void **state)
{
    (void)state;
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T"), OUT_APPLIED, 1);
    apply1(&G.alice, MID(2), "indicator_report", REP_1, OP_CREATE, 0,
           F("plan_id=" PLAN_1, "value=10.5", "status=approved", "narrative=n0"), OUT_APPLIED, 1);
    apply1(&G.alice, MID(3), "indicator_report", REP_1, OP_UPDATE, 1, F("evidence=e1"), OUT_APPLIED,
           2);
    /* Bob, on v1: value and narrative differ from what is held; evidence
     * he did not touch. Every field he changed is a conflict. */
    push_out o;
    push1(&G.bob, MID(4), "indicator_report", REP_1, OP_UPDATE, 1, F("value=12", "narrative=n1"),
          &o);
    expect(&o, 0, OUT_CONFLICT, 2);
    assert_int_equal(o.r[0].nconflicts, 2);
    out_free(&o);
    assert_string_equal(Q("SELECT value::text || ' ' || narrative || ' ' || version"
                          " FROM indicator_reports WHERE id = $1",
                          REP_1),
                        "10.5 n0 2");
    assert_int_equal(
        QN("SELECT count(*) FROM sync_conflicts WHERE record_id = $1 AND field IN ('value',"
           " 'narrative') AND tenant_id = $2",
           REP_1, PLAN_1),
        2);
    assert_string_equal(Q("SELECT kept::text || ' ' || other::text FROM sync_conflicts"
                          " WHERE field = 'value'"),
                        "\"10.5\" \"12\"");
    /* A stale delete is a conflict too. */
    push1(&G.bob, MID(5), "indicator_report", REP_1, OP_DELETE, 1, NOFIELDS, &o);
    expect(&o, 0, OUT_CONFLICT, 2);
    out_free(&o);
    /* On the current version the edit is taken: whoever approved may
     * reopen (status) on purpose. */
    apply1(&G.bob, MID(6), "indicator_report", REP_1, OP_UPDATE, 2, F("status=returned"),
           OUT_APPLIED, 3);
    /* No longer approved: a stale edit merges. */
    apply1(&G.bob, MID(7), "indicator_report", REP_1, OP_UPDATE, 1, F("narrative=n2"), OUT_MERGED,
           4);
}

/* ---- tests: idempotency and group commit
 * ------------------------------------------------------------ */

static void assert_same_results(const push_out *a, const push_out *b)
{
    results_ok(a, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const res_copy *x = &a->r[i], *y = &b->r[i];
        assert_string_equal(x->mutation_id, y->mutation_id);
        assert_int_equal(x->outcome, y->outcome);
        assert_true(x->version == y->version);
        assert_int_equal(x->reject_code, y->reject_code);
        assert_string_equal(x->reason, y->reason);
        assert_int_equal(x->nconflicts, y->nconflicts);
        for (size_t k = 0; k < x->nconflicts && k < 4; k++)
            assert_string_equal(x->conflicts[k], y->conflicts[k]);
    }
}

/* Pushes b again as who, as a client does when the answer was lost: it
 * must be answered with first, from what the engine stored. */
static void expect_replay(pbuild *b, const ns_identity_info *who, const push_out *first)
{
    push_out again;
    run_push(b, who, &again);
    assert_same_results(&again, first);
    out_free(&again);
}

static void test_idempotent(void **state)
{
    (void)state;
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"), OUT_APPLIED, 1);
    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=A"));
    pb_add(&b, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=B", "summary=S"));
    pb_add(&b, MID(4), "plan", PLAN_X, OP_UPDATE, 1, F("title=nowhere"));
    pb_add(&b, MID(5), "plan", PLAN_2, OP_CREATE, 0, F("title=P2"));
    push_out first;
    run_push(&b, &G.bob, &first);
    results_ok(&first, 4);
    expect(&first, 0, OUT_APPLIED, 2);
    expect(&first, 1, OUT_APPLIED, 3); /* bob's own run: not a conflict */
    expect_rejected(&first, 2, ERR(NOT_FOUND), "does not exist");
    expect(&first, 3, OUT_APPLIED, 1);

    /* The answer was lost: the same push again. */
    expect_replay(&b, &G.bob, &first);
    /* And again from another device: the mutation ids decide. */
    expect_replay(&b, &G.alice, &first);
    out_free(&first);
    pb_free(&b);
    assert_int_equal(QN0("SELECT count(*) FROM sync_revisions"), 4);
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 5);
    assert_string_equal(plan_field(PLAN_1, "title"), "B");

    /* A conflict's answer, conflict id included, is stored too. */
    pb_init(&b);
    pb_add(&b, MID(6), "plan", PLAN_1, OP_UPDATE, 1, F("title=C"));
    run_push(&b, &G.alice, &first);
    results_ok(&first, 1);
    expect(&first, 0, OUT_CONFLICT, 3);
    expect_replay(&b, &G.alice, &first);
    out_free(&first);
    pb_free(&b);
    assert_int_equal(QN0("SELECT count(*) FROM sync_conflicts"), 1);
}

/* Two pushes by alice of the same one-mutation update or create, the
 * second submitted in the same turn of the loop as the first (one batch),
 * or, staggered, once the first's batch has started: both get the first's
 * answer, outcome APPLIED at version. */
static void push_twice(const char *mid, const char *rid, int op, uint64_t base, const char *spec,
                       bool staggered, uint64_t version)
{
    pbuild x, y;
    pb_init(&x);
    pb_init(&y);
    pb_add(&x, mid, "plan", rid, op, base, F(spec));
    pb_add(&y, mid, "plan", rid, op, base, F(spec));
    push_out ox, oy;
    submit(G.sync, &x, &G.alice, &ox);
    if (staggered)
        uv_run(&G.loop, UV_RUN_NOWAIT); /* the first batch starts */
    submit(G.sync, &y, &G.alice, &oy);
    run_until(&ox.done);
    run_until(&oy.done);
    results_ok(&ox, 1);
    expect(&ox, 0, OUT_APPLIED, version);
    assert_same_results(&oy, &ox);
    out_free(&ox);
    out_free(&oy);
    pb_free(&x);
    pb_free(&y);
}

/* A mutation id repeated within a push, within a batch, and while its
 * first occurrence is still running. */
static void test_repeats(void **state)
{
    (void)state;
    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"));
    pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"));
    pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=T1"));
    push_out o;
    run_push(&b, &G.alice, &o);
    pb_free(&b);
    results_ok(&o, 3);
    expect(&o, 0, OUT_APPLIED, 1);
    expect(&o, 1, OUT_APPLIED, 1);
    expect(&o, 2, OUT_APPLIED, 2);
    out_free(&o);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_1), 2);

    /* Two pushes in one turn of the loop (one batch). */
    push_twice(MID(3), PLAN_2, OP_CREATE, 0, "title=P2", false, 1);
    /* The second arrives while the first's batch runs: it waits for it,
     * then is answered from what the first stored. */
    push_twice(MID(4), PLAN_2, OP_UPDATE, 1, "summary=S", true, 2);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_2), 2);
}

#define SESSIONS 8

/* Pushes that arrive together share a transaction: the feed rows of N
 * sessions' changes carry fewer than N transaction ids. */
static void test_group_commit(void **state)
{
    (void)state;
    pbuild b[SESSIONS + 2];
    push_out o[SESSIONS + 2];
    for (unsigned i = 0; i < SESSIONS; i++) {
        pb_init(&b[i]);
        pb_add(&b[i], MID(i + 1), "plan", uid(0x0b000000u, i + 1), OP_CREATE, 0, F("title=T"));
        submit(G.sync, &b[i], i % 2 ? &G.alice : &G.bob, &o[i]);
    }
    for (unsigned i = 0; i < SESSIONS; i++) {
        run_until(&o[i].done);
        results_ok(&o[i], 1);
        expect(&o[i], 0, OUT_APPLIED, 1);
        out_free(&o[i]);
        pb_free(&b[i]);
    }
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), SESSIONS);
    assert_int_equal(QN0("SELECT count(DISTINCT xmin::text) FROM sync_feed"), 1);

    /* Under load: two batches run, and what arrives meanwhile waits and
     * goes in the next one, however many sessions sent it. */
    exec_ok("TRUNCATE plans, sync_revisions, sync_feed, sync_mutations;"
            " UPDATE sync_feed_head SET seq = 0");
    for (unsigned i = 0; i < SESSIONS + 2; i++) {
        pb_init(&b[i]);
        pb_add(&b[i], MID(100 + i), "plan", uid(0x0c000000u, i + 1), OP_CREATE, 0, F("title=T"));
        submit(G.sync, &b[i], &G.alice, &o[i]);
        if (i < 2)
            uv_run(&G.loop, UV_RUN_NOWAIT); /* a batch starts with this push alone */
    }
    for (unsigned i = 0; i < SESSIONS + 2; i++) {
        run_until(&o[i].done);
        results_ok(&o[i], 1);
        expect(&o[i], 0, OUT_APPLIED, 1);
        out_free(&o[i]);
        pb_free(&b[i]);
    }
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), SESSIONS + 2);
    assert_int_equal(QN0("SELECT count(DISTINCT xmin::text) FROM sync_feed"), 3);
}

/* ---- tests: rejections
 * ------------------------------------------------------------------------------ */

/* Rejections that depend only on the request: answered, nothing stored. */
static void test_rejected_by_validation(void **state)
{
    (void)state;
    apply1(&G.alice, MID(90), "plan", PLAN_2, OP_CREATE, 0, F("title=P2"), OUT_APPLIED, 1);
    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(1), "budget_line", PLAN_1, OP_CREATE, 0, F("title=T"));
    pb_add(&b, MID(2), "plan", PLAN_1, OP_CREATE, 0, F("title=T", "colour=red"));
    pb_add(&b, MID(3), "plan", PLAN_1, OP_CREATE, 0, F("version:int=3"));
    pb_add(&b, MID(4), "plan", PLAN_1, OP_CREATE, 0, F("title:int=5"));
    pb_add(&b, MID(5), "plan", PLAN_1, OP_CREATE, 0, F("period_start=2024-01-01"));
    /* Only the wire can carry this date. */
    b.h[4]->fpb.fields[0]->value->date_value = (char *)"2023-02-29";
    pb_add(&b, "not-a-uuid", "plan", PLAN_1, OP_CREATE, 0, F("title=T"));
    pb_add(&b, MID(7), "plan", "0A000000-nope", OP_CREATE, 0, F("title=T"));
    pb_add(&b, MID(8), "plan", PLAN_1, OP_CREATE, 1, F("title=T"));
    pb_add(&b, MID(9), "plan", PLAN_2, OP_UPDATE, 1, NOFIELDS);
    pb_add(&b, MID(10), "plan", PLAN_2, OP_DELETE, 1, F("title=T"));
    pb_add(&b, MID(11), "plan", PLAN_1, 0, 0, F("title=T"));
    pb_add(&b, MID(12), "indicator", IND_1, OP_CREATE, 0, F("code=1.1"));
    pb_add(&b, MID(13), "indicator", IND_1, OP_CREATE, 0, F("code=1.1", "plan_id"));
    pb_add(&b, MID(14), "plan", PLAN_1, OP_CREATE, 0,
           F("title=T", "owner_id=00000000-0000-4000-8000-000000000000"));
    pb_add(&b, MID(15), "plan", PLAN_2, OP_UPDATE, 1, F("owner_id"));
    pb_add(&b, MID(16), "plan", PLAN_1, OP_CREATE, 0, F("title=the good one"));
    push_out o;
    run_push(&b, &G.alice, &o);
    pb_free(&b);
    results_ok(&o, 16);
    expect_rejected(&o, 0, ERR(UNKNOWN_ENTITY), "unknown entity type \"budget_line\"");
    expect_rejected(&o, 1, ERR(UNKNOWN_ENTITY), "unknown field \"colour\" of entity type plan");
    expect_rejected(&o, 2, ERR(UNKNOWN_ENTITY), "unknown field \"version\"");
    expect_rejected(&o, 3, ERR(INVALID_ARGUMENT), "field title: int_value where text_value");
    expect_rejected(&o, 4, ERR(INVALID_ARGUMENT), "field period_start: ");
    expect_rejected(&o, 5, ERR(INVALID_ARGUMENT), "mutation_id is not a UUID");
    assert_string_equal(o.r[5].mutation_id, "not-a-uuid"); /* echoed */
    expect_rejected(&o, 6, ERR(INVALID_ARGUMENT), "record_id is not a UUID");
    expect_rejected(&o, 7, ERR(INVALID_ARGUMENT), "base_version must be 0");
    expect_rejected(&o, 8, ERR(INVALID_ARGUMENT), "at least one field");
    expect_rejected(&o, 9, ERR(INVALID_ARGUMENT), "a delete carries no fields");
    expect_rejected(&o, 10, ERR(INVALID_ARGUMENT), "op must be");
    expect_rejected(&o, 11, ERR(INVALID_ARGUMENT), "field plan_id (the record's plan) is required");
    expect_rejected(&o, 12, ERR(INVALID_ARGUMENT), "field plan_id (the record's plan) is required");
    expect_rejected(&o, 13, ERR(PERMISSION_DENIED), "owner_id");
    expect_rejected(&o, 14, ERR(INVALID_ARGUMENT), "owner_id may not be null");
    expect(&o, 15, OUT_APPLIED, 1);
    out_free(&o);
    /* Nothing of the rejected is stored, so a corrected re-send can apply. */
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 2);
    assert_int_equal(QN0("SELECT count(*) FROM plans"), 2);
    assert_string_equal(plan_field(PLAN_1, "title"), "the good one");

    /* An observer may not write at all. */
    push_out r;
    push1(&G.olga, MID(20), "plan", uid(0x0d000000u, 1), OP_CREATE, 0, F("title=T"), &r);
    expect_rejected(&r, 0, ERR(PERMISSION_DENIED), "observers");
    out_free(&r);
    push1(&G.olga, MID(21), "plan", PLAN_1, OP_UPDATE, 1, F("title=T"), &r);
    expect_rejected(&r, 0, ERR(PERMISSION_DENIED), "observers");
    out_free(&r);
    assert_int_equal(stored_count(MID(20)) + stored_count(MID(21)), 0);
    assert_string_equal(plan_field(PLAN_1, "title"), "the good one");
}

static void expect_stored_rejection(const char *mid, int code)
{
    char want[32];
    snprintf(want, sizeof(want), "rejected 0 %d", code);
    assert_string_equal(Q("SELECT outcome || ' ' || version || ' ' || reject_code"
                          " FROM sync_mutations WHERE mutation_id = $1",
                          mid),
                        want);
}

/* Rejections that depend on the database: stored like any answer. */
static void test_rejected_by_state(void **state)
{
    (void)state;
    push_out o;
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"), OUT_APPLIED, 1);

    push1(&G.alice, MID(2), "plan", PLAN_X, OP_UPDATE, 1, F("title=T"), &o);
    expect_rejected(&o, 0, ERR(NOT_FOUND), "plan " PLAN_X " does not exist");
    out_free(&o);
    expect_stored_rejection(MID(2), ERR(NOT_FOUND));

    push1(&G.alice, MID(3), "plan", PLAN_1, OP_CREATE, 0, F("title=again"), &o);
    expect_rejected(&o, 0, ERR(ALREADY_EXISTS), "already exists");
    out_free(&o);
    expect_stored_rejection(MID(3), ERR(ALREADY_EXISTS));

    /* Another organisation's plan and its records. */
    push1(&G.xavier, MID(4), "plan", PLAN_1, OP_UPDATE, 1, F("title=mine now"), &o);
    expect_rejected(&o, 0, ERR(PERMISSION_DENIED), "belongs to another organisation");
    out_free(&o);
    expect_stored_rejection(MID(4), ERR(PERMISSION_DENIED));
    push1(&G.xavier, MID(5), "indicator", IND_1, OP_CREATE, 0, F("plan_id=" PLAN_1), &o);
    expect_rejected(&o, 0, ERR(PERMISSION_DENIED), "belongs to another organisation");
    out_free(&o);
    push1(&G.alice, MID(6), "indicator", IND_1, OP_CREATE, 0, F("plan_id=" PLAN_X), &o);
    expect_rejected(&o, 0, ERR(NOT_FOUND), "plan " PLAN_X " does not exist");
    out_free(&o);

    /* A record of a plan: its tenant is the plan, and never changes. */
    apply1(&G.bob, MID(7), "indicator", IND_1, OP_CREATE, 0,
           F("plan_id=" PLAN_1, "code=1.1", "baseline=0.25"), OUT_APPLIED, 1);
    assert_string_equal(Q("SELECT tenant_id FROM indicators WHERE id = $1", IND_1), PLAN_1);
    assert_string_equal(Q("SELECT tenant_id FROM sync_feed WHERE record_id = $1", IND_1), PLAN_1);
    push1(&G.bob, MID(8), "indicator", IND_1, OP_UPDATE, 1, F("plan_id=" PLAN_2), &o);
    expect_rejected(&o, 0, ERR(INVALID_ARGUMENT),
                    "field plan_id (the record's plan) cannot change");
    out_free(&o);
    expect_stored_rejection(MID(8), ERR(INVALID_ARGUMENT));
    apply1(&G.bob, MID(9), "indicator", IND_1, OP_UPDATE, 1, F("plan_id=" PLAN_1, "code=1.2"),
           OUT_APPLIED, 2);
    push1(&G.xavier, MID(10), "indicator", IND_1, OP_UPDATE, 2, F("code=x"), &o);
    expect_rejected(&o, 0, ERR(PERMISSION_DENIED), "belongs to another organisation");
    out_free(&o);

    push1(&G.bob, MID(11), "indicator", IND_1, OP_UPDATE, 9, F("code=1.3"), &o);
    expect_rejected(&o, 0, ERR(INVALID_ARGUMENT),
                    "base_version 9 is newer than the record's version 2");
    out_free(&o);

    /* A deleted record still exists: no create over it. */
    apply1(&G.alice, MID(12), "plan", PLAN_1, OP_DELETE, 1, NOFIELDS, OUT_APPLIED, 2);
    push1(&G.alice, MID(13), "plan", PLAN_1, OP_CREATE, 0, F("title=reborn"), &o);
    expect_rejected(&o, 0, ERR(ALREADY_EXISTS), "already exists");
    out_free(&o);
    assert_string_equal(Q("SELECT code FROM indicators WHERE id = $1", IND_1), "1.2");
}

/* One bad mutation among good ones: only it is rejected, and nothing of
 * it is applied. */
static void test_mixed_push(void **state)
{
    (void)state;
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"), OUT_APPLIED, 1);
    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("summary=S1"));
    pb_add(&b, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=half", "period_end=2024-01-01"));
    b.h[1]->fpb.fields[0]->value->date_value = (char *)"2024-13-01";
    pb_add(&b, MID(4), "plan", PLAN_X, OP_UPDATE, 1, F("title=T"));
    pb_add(&b, MID(5), "plan", PLAN_1, OP_UPDATE, 1, F("kind=NAP"));
    push_out o;
    run_push(&b, &G.alice, &o);
    pb_free(&b);
    results_ok(&o, 4);
    expect(&o, 0, OUT_APPLIED, 2);
    expect_rejected(&o, 1, ERR(INVALID_ARGUMENT), "field period_end");
    expect_rejected(&o, 2, ERR(NOT_FOUND), "does not exist");
    expect(&o, 3, OUT_APPLIED, 3);
    out_free(&o);
    assert_string_equal(plan_field(PLAN_1, "title"), "T0");
    assert_null(plan_field(PLAN_1, "period_end"));
    assert_string_equal(plan_field(PLAN_1, "summary"), "S1");
    assert_string_equal(plan_field(PLAN_1, "kind"), "NAP");
}

/* A plan created earlier in the same batch is the owner of records that
 * follow it there. */
static void test_plan_in_same_batch(void **state)
{
    (void)state;
    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"));
    pb_add(&b, MID(2), "indicator", IND_1, OP_CREATE, 0, F("plan_id=" PLAN_1, "code=1"));
    pb_add(&b, MID(3), "indicator", IND_1, OP_UPDATE, 1, F("code=2"));
    push_out o, x;
    submit(G.sync, &b, &G.bob, &o);
    /* In the same batch, from another organisation: refused. */
    pbuild c;
    pb_init(&c);
    pb_add(&c, MID(4), "plan", PLAN_2, OP_CREATE, 0, F("title=theirs"));
    pb_add(&c, MID(5), "indicator", uid(0x1b000000u, 2), OP_CREATE, 0, F("plan_id=" PLAN_1));
    pb_add(&c, MID(6), "indicator", uid(0x1b000000u, 3), OP_CREATE, 0, F("plan_id=" PLAN_2));
    submit(G.sync, &c, &G.xavier, &x);
    run_until(&o.done);
    run_until(&x.done);
    results_ok(&o, 3);
    expect(&o, 0, OUT_APPLIED, 1);
    expect(&o, 1, OUT_APPLIED, 1);
    expect(&o, 2, OUT_APPLIED, 2);
    results_ok(&x, 3);
    expect(&x, 0, OUT_APPLIED, 1);
    expect_rejected(&x, 1, ERR(PERMISSION_DENIED), "belongs to another organisation");
    expect(&x, 2, OUT_APPLIED, 1);
    out_free(&o);
    out_free(&x);
    pb_free(&b);
    pb_free(&c);
    assert_string_equal(plan_field(PLAN_1, "owner_id"), G.org_a);
    assert_string_equal(plan_field(PLAN_2, "owner_id"), G.org_b);
    assert_int_equal(QN0("SELECT count(DISTINCT xmin::text) FROM sync_feed"), 1);
}

/* More than a batch in one push: refused as a whole, nothing applied. */
static void test_oversized_push(void **state)
{
    (void)state;
    pbuild b;
    pb_init(&b);
    for (unsigned i = 0; i < NS_SYNC_MAX_BATCH + 1; i++)
        pb_add(&b, MID(i + 1), "plan", uid(0x0e000000u, i + 1), OP_CREATE, 0, F("title=T"));
    push_out o;
    run_push(&b, &G.alice, &o);
    assert_false(o.has_result);
    assert_int_equal(o.code, ERR(INVALID_ARGUMENT));
    assert_non_null(strstr(o.msg, "at most 1000 mutations"));
    out_free(&o);
    assert_int_equal(QN0("SELECT count(*) FROM plans"), 0);
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 0);

    /* A full batch goes through, in one transaction. */
    b.n = b.push.n_mutations = NS_SYNC_MAX_BATCH;
    run_push(&b, &G.alice, &o);
    results_ok(&o, NS_SYNC_MAX_BATCH);
    for (size_t i = 0; i < NS_SYNC_MAX_BATCH; i++)
        expect(&o, i, OUT_APPLIED, 1);
    out_free(&o);
    b.n = NS_SYNC_MAX_BATCH + 1;
    pb_free(&b);
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), NS_SYNC_MAX_BATCH);
    assert_int_equal(QN0("SELECT count(DISTINCT xmin::text) FROM sync_feed"), 1);
}

/* The database refuses one mutation (a CHECK the engine cannot know): the
 * batch is split until that mutation is alone; it is rejected with the
 * database's reason, stored, and every other mutation applies. */
static void test_bisect(void **state)
{
    (void)state;
    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"));
    for (unsigned i = 1; i <= 6; i++)
        pb_add(&b, MID(1 + i), "test_note", uid(0x3e000000u, i), OP_CREATE, 0,
               i == 4 ? F("plan_id=" PLAN_1, "body=forbidden") : F("plan_id=" PLAN_1, "body=ok"));
    pb_add(&b, MID(8), "test_note", uid(0x3e000000u, 1), OP_UPDATE, 1, F("body=fine"));
    push_out o;
    run_push(&b, &G.alice, &o);
    results_ok(&o, 8);
    expect(&o, 0, OUT_APPLIED, 1);
    for (size_t i = 1; i <= 6; i++) {
        if (i == 4)
            expect_rejected(&o, i, ERR(INVALID_ARGUMENT), "check constraint");
        else
            expect(&o, i, OUT_APPLIED, 1);
    }
    expect(&o, 7, OUT_APPLIED, 2);
    assert_non_null(strstr(o.r[4].reason, "refused by the database"));
    expect_stored_rejection(MID(5), ERR(INVALID_ARGUMENT));
    assert_int_equal(QN0("SELECT count(*) FROM test_notes"), 5);
    assert_null(Q("SELECT id FROM test_notes WHERE body = 'forbidden'"));

    /* The same push again: the same answers, nothing applied twice. */
    push_out again;
    run_push(&b, &G.alice, &again);
    assert_same_results(&again, &o);
    out_free(&again);
    out_free(&o);
    pb_free(&b);

    /* An update the database refuses, after another of the same record.
     * (Constraints see the records as the batch leaves them: a state a
     * later mutation of the batch replaces is never checked by them.) */
    pb_init(&b);
    pb_add(&b, MID(20), "test_note", uid(0x3e000000u, 1), OP_UPDATE, 2, F("body=one"));
    pb_add(&b, MID(21), "test_note", uid(0x3e000000u, 1), OP_UPDATE, 3, F("body=forbidden"));
    pb_add(&b, MID(22), "test_note", uid(0x3e000000u, 2), OP_UPDATE, 1, F("body=two"));
    run_push(&b, &G.alice, &o);
    pb_free(&b);
    results_ok(&o, 3);
    expect(&o, 0, OUT_APPLIED, 3);
    expect_rejected(&o, 1, ERR(INVALID_ARGUMENT), "check constraint");
    expect(&o, 2, OUT_APPLIED, 2);
    out_free(&o);
    assert_string_equal(
        Q("SELECT body || ' ' || version FROM test_notes WHERE id = $1", uid(0x3e000000u, 1)),
        "one 3");
    assert_string_equal(
        Q("SELECT body || ' ' || version FROM test_notes WHERE id = $1", uid(0x3e000000u, 2)),
        "two 2");
}

/* ---- tests: failures and shutdown
 * ---------------------------------------------------------------- */

/* No database: the push fails as a whole with UNAVAILABLE (retry). */
static void test_database_unavailable(void **state)
{
    (void)state;
    ns_db_options opt = {
        .conninfo = "host=/nonexistent/napsync port=1 user=nobody dbname=nothing",
        .pool_size = 1,
        .queue_limit = 10,
        .queue_timeout_ms = 300,
        .reconnect_max_ms = 200,
    };
    ns_db *db;
    assert_int_equal(ns_db_open(&G.loop, &opt, &db), NS_DB_OK);
    ns_sync *s;
    char err[256];
    assert_int_equal(ns_sync_new(&G.loop, db, &G.reg, &s, err, sizeof(err)), NS_SYNC_OK);
    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T"));
    pb_add(&b, MID(2), "plan", PLAN_1, OP_CREATE, 0, F("nope=1"));
    push_out o;
    submit(s, &b, &G.alice, &o);
    run_until(&o.done);
    assert_false(o.has_result);
    assert_int_equal(o.code, ERR(UNAVAILABLE));
    assert_non_null(strstr(o.msg, "send the push again"));
    out_free(&o);
    pb_free(&b);
    bool done = false;
    ns_sync_close(s, on_flag, &done);
    run_until(&done);
    done = false;
    ns_db_close(db, on_flag, &done);
    run_until(&done);
}

/* The connection breaks while a batch's transaction is open: the push
 * fails as a whole with UNAVAILABLE, nothing of it is applied, and sending
 * it again applies it. */
static void test_connection_lost(void **state)
{
    (void)state;
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0"), OUT_APPLIED, 1);
    /* Hold the record's lock, so that the batch waits inside its
     * transaction. */
    PGconn *locker = PQconnectdb(G.pgdb.conninfo);
    assert_int_equal(PQstatus(locker), CONNECTION_OK);
    const char *id[1] = {PLAN_1};
    PGresult *res = PQexec(locker, "BEGIN");
    PQclear(res);
    res = PQexecParams(locker, "SELECT 1 FROM plans WHERE id = $1 FOR UPDATE", 1, NULL, id, NULL,
                       NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);

    pbuild b;
    pb_init(&b);
    pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=T1"));
    pb_add(&b, MID(3), "plan", PLAN_2, OP_CREATE, 0, F("title=P2"));
    push_out o;
    submit(G.sync, &b, &G.alice, &o);
    static const char waiting[] =
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'";
    long long n = 0;
    for (int i = 0; i < 400 && n == 0; i++) {
        uv_run(&G.loop, UV_RUN_NOWAIT);
        usleep(10000);
        n = QN0(waiting);
    }
    assert_int_equal(n, 1);
    assert_int_equal(QN0("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND wait_event_type = 'Lock'"),
                     1);
    run_until(&o.done);
    assert_false(o.has_result);
    assert_int_equal(o.code, ERR(UNAVAILABLE));
    out_free(&o);
    res = PQexec(locker, "ROLLBACK");
    PQclear(res);
    PQfinish(locker);
    assert_string_equal(plan_field(PLAN_1, "title"), "T0");
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 1);

    /* Sent again (the pool has reconnected meanwhile, or does now). */
    run_push(&b, &G.alice, &o);
    results_ok(&o, 2);
    expect(&o, 0, OUT_APPLIED, 2);
    expect(&o, 1, OUT_APPLIED, 1);
    out_free(&o);
    pb_free(&b);
    assert_string_equal(plan_field(PLAN_1, "title"), "T1");
}

static void test_close(void **state)
{
    (void)state;
    ns_sync *s;
    char err[256];
    assert_int_equal(ns_sync_new(&G.loop, G.db, &G.reg, &s, err, sizeof(err)), NS_SYNC_OK);
    pbuild a, b;
    pb_init(&a);
    pb_init(&b);
    pb_add(&a, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T"));
    pb_add(&b, MID(2), "plan", PLAN_2, OP_CREATE, 0, F("title=T"));
    push_out oa, ob;
    /* a's batch is running when the engine closes; b is still queued. */
    submit(s, &a, &G.alice, &oa);
    uv_run(&G.loop, UV_RUN_NOWAIT);
    submit(s, &b, &G.alice, &ob);
    bool done = false;
    ns_sync_close(s, on_flag, &done);
    assert_true(ob.done); /* answered during the close */
    assert_false(ob.has_result);
    assert_int_equal(ob.code, ERR(SHUTTING_DOWN));
    assert_false(oa.done);
    push_out oc;
    memset(&oc, 0, sizeof(oc));
    assert_int_equal(ns_sync_push(s, &G.alice, &b.push, on_push, &oc), NS_SYNC_SHUTDOWN);
    run_until(&done);
    /* The running batch finished first, and was answered. */
    assert_true(oa.done);
    results_ok(&oa, 1);
    expect(&oa, 0, OUT_APPLIED, 1);
    assert_false(oc.done);
    out_free(&oa);
    out_free(&ob);
    pb_free(&a);
    pb_free(&b);
    assert_int_equal(QN0("SELECT count(*) FROM plans"), 1);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    pbuild b;
    pb_init(&b);
    push_out o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(ns_sync_push(G.sync, NULL, &b.push, on_push, &o), NS_SYNC_INVALID);
    assert_int_equal(ns_sync_push(G.sync, &G.alice, NULL, on_push, &o), NS_SYNC_INVALID);
    assert_int_equal(ns_sync_push(G.sync, &G.alice, &b.push, NULL, &o), NS_SYNC_INVALID);
    ns_identity_info nobody = G.alice;
    snprintf(nobody.principal_id, sizeof(nobody.principal_id), "x");
    assert_int_equal(ns_sync_push(G.sync, &nobody, &b.push, on_push, &o), NS_SYNC_INVALID);
    assert_false(o.done);
    /* An empty push has an empty answer. */
    run_push(&b, &G.alice, &o);
    results_ok(&o, 0);
    out_free(&o);

    /* A registry without a plan type cannot be served. */
    ns_registry none = {0};
    ns_sync *s = NULL;
    char err[256] = "";
    ns_registry reg = G.reg;
    ns_entity_type *types = calloc(reg.ntypes, sizeof(*types));
    assert_non_null(types);
    size_t n = 0;
    for (size_t i = 0; i < reg.ntypes; i++) {
        if (reg.types[i].tenant_field != NULL)
            types[n++] = reg.types[i];
    }
    none.types = types;
    none.ntypes = n;
    assert_int_equal(ns_sync_new(&G.loop, G.db, &none, &s, err, sizeof(err)), NS_SYNC_INVALID);
    assert_null(s);
    assert_non_null(strstr(err, "no entity type is its own tenant"));
    free(types);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, test_setup, test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_create_update_delete),
        T(test_issue_scenario),
        T(test_issue_scenario_one_batch),
        T(test_own_device_edits),
        T(test_edit_versus_delete),
        T(test_approved_report),
        T(test_idempotent),
        T(test_repeats),
        T(test_group_commit),
        T(test_rejected_by_validation),
        T(test_rejected_by_state),
        T(test_mixed_push),
        T(test_plan_in_same_batch),
        T(test_oversized_push),
        T(test_bisect),
        T(test_database_unavailable),
        T(test_connection_lost),
        T(test_close),
        T(test_bad_arguments),
    };
#undef T
    return cmocka_run_group_tests_name("push", tests, group_setup, group_teardown);
}
