/* Conflicts (daemon/conflicts.h, and ns_sync_resolve in sync.h) in process
 * against a real PostgreSQL, set up as test_push does: a fresh migrated
 * database, the registry, a loop, a pool, the push engine and the
 * conflicts module; conflicts are made with pushes, listed and resolved
 * through the module's calls with protobuf requests, and the database read
 * back with plain libpq. Every test ends with the feed invariants of
 * test_push (contiguous, one row per revision, records at their last
 * revision). */
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
#include "migrate.h"
#include "registry.h"
#include "conflicts.h"
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
    char admin[1024];
    char conninfo[1024];
    char dbname[64];
    char sql_dir[1024];
    PGconn *pg;
    bool created;
    uv_loop_t loop;
    bool loop_ok;
    ns_db *db;
    ns_registry reg;
    ns_sync *sync;
    ns_conflicts *conf;
    /* Organisation A: alice (coordinator, device dev-a), bob (implementer,
     * dev-b), olga (observer, dev-o); organisation B: xavier (coordinator,
     * dev-x). */
    ns_identity_info alice, bob, olga, xavier;
    char org_a[40], org_b[40];
} G;

/* ---- connection strings and plain SQL ------------------------------------------------- */

static int conninfo_add(char *out, size_t cap, const char *key, const char *val)
{
    size_t o = strlen(out);
    int n = snprintf(out + o, cap - o, "%s%s='", o ? " " : "", key);
    if (n < 0 || (size_t)n >= cap - o)
        return -1;
    o += (size_t)n;
    for (const char *p = val; *p; p++) {
        if (o + 3 >= cap)
            return -1;
        if (*p == '\'' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    if (o + 2 > cap)
        return -1;
    out[o++] = '\'';
    out[o] = '\0';
    return 0;
}

static int make_conninfo(char *out, size_t cap, const char *dbname)
{
    const char *host = getenv("NS_TEST_PGHOST");
    const char *port = getenv("NS_TEST_PGPORT");
    const char *user = getenv("NS_TEST_PGUSER");
    if (!host || !*host || !port || !*port || !user || !*user) {
        fprintf(stderr, "test_conflicts: NS_TEST_PGHOST, NS_TEST_PGPORT and NS_TEST_PGUSER "
                        "must name the test cluster (tests/run.sh sets them)\n");
        return -1;
    }
    out[0] = '\0';
    if (conninfo_add(out, cap, "host", host) || conninfo_add(out, cap, "port", port) ||
        conninfo_add(out, cap, "user", user) || conninfo_add(out, cap, "dbname", dbname))
        return -1;
    return 0;
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int admin_exec(const char *sql)
{
    PGconn *pg = PQconnectdb(G.admin);
    int rc = -1;
    PQsetNoticeProcessor(pg, ignore_notice, NULL);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "test_conflicts: %s", PQerrorMessage(pg));
    } else {
        PGresult *res = PQexec(pg, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK)
            rc = 0;
        else
            fprintf(stderr, "test_conflicts: %s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
    }
    PQfinish(pg);
    return rc;
}

/* Values of the first row of a query, kept in rotating buffers until a few
 * more queries have run. NULL for SQL NULL or no row. */
static char qbuf[8][8192];
static unsigned qnext;

static const char *qv(const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(G.pg, sql, n, NULL, params, NULL, NULL, 0);
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
    PGresult *res = PQexec(G.pg, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        print_error("%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        fail();
    }
    PQclear(res);
}

/* ---- identities ----------------------------------------------------------------------- */

static int sql_row(const char *sql, int n, const char *const *params, char *out, size_t outlen)
{
    PGresult *res = PQexecParams(G.pg, sql, n, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    } else {
        fprintf(stderr, "test_conflicts: %s: %s", sql, PQresultErrorMessage(res));
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
    const char *src = getenv("NS_SOURCE_DIR");
    if (src == NULL || *src == '\0') {
        fprintf(stderr, "test_conflicts: set NS_SOURCE_DIR to the source directory\n");
        return -1;
    }
    snprintf(G.sql_dir, sizeof(G.sql_dir), "%s/sql", src);
    snprintf(G.dbname, sizeof(G.dbname), "nst_conf_%ld", (long)getpid());
    if (make_conninfo(G.admin, sizeof(G.admin), "postgres") != 0 ||
        make_conninfo(G.conninfo, sizeof(G.conninfo), G.dbname) != 0)
        return -1;
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", G.dbname);
    if (admin_exec(sql) != 0)
        return -1;
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", G.dbname);
    if (admin_exec(sql) != 0)
        return -1;
    G.created = true;
    char err[512];
    int applied = 0;
    if (ns_migrate_run(G.conninfo, G.sql_dir, &applied, err, sizeof(err)) != 0) {
        fprintf(stderr, "test_conflicts: migrations: %s\n", err);
        return -1;
    }
    G.pg = PQconnectdb(G.conninfo);
    if (PQstatus(G.pg) != CONNECTION_OK) {
        fprintf(stderr, "test_conflicts: %s", PQerrorMessage(G.pg));
        return -1;
    }
    PQsetNoticeProcessor(G.pg, ignore_notice, NULL);

    /* A type of this test's own whose CHECK constraint the engine cannot
     * know: a mutation of it fails inside the batch's transaction. */
    PGresult *res = PQexec(G.pg, "CREATE TABLE test_notes (" ENGINE_COLUMNS
                                 ", plan_id uuid, body text CHECK (body IS DISTINCT FROM "
                                 "'forbidden'));"
                                 "INSERT INTO sync_entity_types (name, table_name, tenant_field)"
                                 " VALUES ('test_note', 'test_notes', 'plan_id')");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "test_conflicts: test_notes: %s", PQresultErrorMessage(res));
    PQclear(res);
    if (rc != 0)
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

    if (ns_registry_load(G.conninfo, &G.reg, err, sizeof(err)) != 0) {
        fprintf(stderr, "test_conflicts: registry: %s\n", err);
        return -1;
    }
    if (uv_loop_init(&G.loop) != 0)
        return -1;
    G.loop_ok = true;
    ns_db_options o = {
        .conninfo = G.conninfo,
        .pool_size = 4,
        .queue_limit = 1000,
        .queue_timeout_ms = 10000,
        .reconnect_max_ms = 1000,
    };
    if (ns_db_open(&G.loop, &o, &G.db) != NS_DB_OK)
        return -1;
    if (ns_sync_new(&G.loop, G.db, &G.reg, &G.sync, err, sizeof(err)) != NS_SYNC_OK) {
        fprintf(stderr, "test_conflicts: ns_sync_new: %s\n", err);
        return -1;
    }
    if (ns_conflicts_open(G.db, &G.reg, G.sync, &G.conf) != 0)
        return -1;
    return 0;
}

static void on_flag(void *ud)
{
    *(bool *)ud = true;
}

static int group_teardown(void **state)
{
    (void)state;
    ns_conflicts_close(G.conf);
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
            fprintf(stderr, "test_conflicts: handles left open on the loop\n");
    }
    ns_registry_free(&G.reg);
    PQfinish(G.pg);
    if (G.created && getenv("NST_KEEP") == NULL) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", G.dbname);
        if (admin_exec(sql) != 0)
            return -1;
    }
    return 0;
}

/* Every test starts from empty tables and feed. */
static int test_setup(void **state)
{
    (void)state;
    PGresult *res = PQexec(G.pg, "TRUNCATE plans, indicators, indicator_reports, test_notes,"
                                 " sync_revisions, sync_feed, sync_mutations, sync_conflicts;"
                                 " UPDATE sync_feed_head SET seq = 0");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "test_conflicts: %s", PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

static int test_teardown(void **state)
{
    (void)state;
    check_feed();
    return 0;
}

/* A column of a revision, as text. */
static const char *rev(const char *id, const char *version, const char *expr)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT (%s)::text FROM sync_revisions WHERE record_id = $1 AND version = $2", expr);
    return Q(sql, id, version);
}

/* ---- listing and resolving ------------------------------------------------------------ */

#define KEEP  NAPSYNC__V1__RESOLUTION__RESOLUTION_KEEP
#define OTHER NAPSYNC__V1__RESOLUTION__RESOLUTION_OTHER
#define VALUE NAPSYNC__V1__RESOLUTION__RESOLUTION_VALUE

/* A wire value as short text: "null", a quoted text, or the value. */
static void value_text(const Napsync__V1__Value *v, char *out, size_t outlen)
{
    if (v == NULL) {
        snprintf(out, outlen, "-");
        return;
    }
    switch (v->kind_case) {
    case NAPSYNC__V1__VALUE__KIND_NULL_VALUE:
        snprintf(out, outlen, "null");
        break;
    case NAPSYNC__V1__VALUE__KIND_TEXT_VALUE:
        snprintf(out, outlen, "\"%s\"", v->text_value);
        break;
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        snprintf(out, outlen, "%s", v->decimal_value);
        break;
    case NAPSYNC__V1__VALUE__KIND_INT_VALUE:
        snprintf(out, outlen, "%lld", (long long)v->int_value);
        break;
    default:
        snprintf(out, outlen, "kind%d", (int)v->kind_case);
        break;
    }
}

typedef struct {
    bool done;
    int calls;
    int code;
    char msg[300];
    size_t n;
    char ids[16][40];
    char lines[16][700];
} list_out;

static void on_list(int code, const char *message, const Napsync__V1__ConflictList *list, void *ud)
{
    list_out *o = ud;
    o->calls++;
    o->done = true;
    o->code = code;
    snprintf(o->msg, sizeof(o->msg), "%s", message ? message : "");
    if (list == NULL)
        return;
    o->n = list->n_conflicts;
    for (size_t i = 0; i < list->n_conflicts && i < 16; i++) {
        const Napsync__V1__Conflict *c = list->conflicts[i];
        char base[100], kept[100], other[100], fields[200] = "-";
        value_text(c->base_value, base, sizeof(base));
        value_text(c->kept_value, kept, sizeof(kept));
        value_text(c->other_value, other, sizeof(other));
        if (c->other_fields != NULL) {
            size_t o2 = 0;
            for (size_t k = 0; k < c->other_fields->n_fields; k++) {
                char v[100];
                value_text(c->other_fields->fields[k]->value, v, sizeof(v));
                o2 += (size_t)snprintf(fields + o2, sizeof(fields) - o2, "%s%s=%s", k ? "," : "",
                                       c->other_fields->fields[k]->name, v);
                if (o2 >= sizeof(fields))
                    break;
            }
        }
        snprintf(o->ids[i], sizeof(o->ids[i]), "%s", c->id);
        snprintf(o->lines[i], sizeof(o->lines[i]),
                 "%s %s %s base=%s kept=%s other=%s kd=%d od=%d of=%s by=%s/%s vs %s/%s%s",
                 c->entity_type, c->record_id, c->field[0] ? c->field : "*", base, kept, other,
                 c->kept_deleted, c->other_deleted, fields, c->kept_by, c->kept_device, c->other_by,
                 c->other_device, c->resolved ? " resolved" : "");
        /* RFC 3339 UTC with microseconds; the tenant is the plan. */
        assert_int_equal(strlen(c->created_at), 27);
        assert_int_equal(c->created_at[26], 'Z');
        assert_int_equal(c->created_at[10], 'T');
        assert_non_null(c->tenant_id);
    }
}

static Napsync__V1__Scope scope_plan(const char *id)
{
    Napsync__V1__Scope s = NAPSYNC__V1__SCOPE__INIT;
    s.kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    s.plan_id = (char *)id;
    return s;
}

static Napsync__V1__Scope scope_org(const char *id)
{
    Napsync__V1__Scope s = NAPSYNC__V1__SCOPE__INIT;
    s.kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
    s.organisation_id = (char *)id;
    return s;
}

static void list(const ns_identity_info *who, Napsync__V1__Scope *scopes, size_t n, bool resolved,
                 list_out *o)
{
    memset(o, 0, sizeof(*o));
    Napsync__V1__Scope *ptrs[4];
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &scopes[i];
    Napsync__V1__ListConflicts req = NAPSYNC__V1__LIST_CONFLICTS__INIT;
    req.n_scopes = n;
    req.scopes = ptrs;
    req.include_resolved = resolved;
    char err[256];
    int rc = ns_conflicts_list(G.conf, who, &req, on_list, o, err, sizeof(err));
    if (rc != 0)
        fail_msg("ns_conflicts_list: %d %s", rc, err);
    assert_false(o->done);
    run_until(&o->done);
    assert_int_equal(o->calls, 1);
}

/* The list must have succeeded with n conflicts. */
static void list_ok(const ns_identity_info *who, Napsync__V1__Scope *scopes, size_t n,
                    bool resolved, list_out *o, size_t count)
{
    list(who, scopes, n, resolved, o);
    if (o->code != 0)
        fail_msg("list: %d %s", o->code, o->msg);
    assert_int_equal(o->n, count);
}

typedef struct {
    bool done;
    int calls;
    int code;
    char msg[300];
    bool has;
    res_copy r;
} res_out;

static void on_resolved(const Napsync__V1__MutationResult *m, Napsync__V1__ErrorCode code,
                        const char *message, void *ud)
{
    res_out *o = ud;
    o->calls++;
    o->done = true;
    o->code = code;
    snprintf(o->msg, sizeof(o->msg), "%s", message ? message : "");
    o->has = m != NULL;
    if (m == NULL)
        return;
    snprintf(o->r.mutation_id, sizeof(o->r.mutation_id), "%s", m->mutation_id);
    o->r.outcome = m->outcome;
    o->r.version = m->version;
    o->r.reject_code = m->reject_code;
    snprintf(o->r.reason, sizeof(o->r.reason), "%s", m->reject_reason);
    o->r.nconflicts = m->n_conflict_ids;
}

/* Resolves; value_spec is "field=value" as put_spec takes it (NULL: no value). */
static void resolve_with(const ns_identity_info *who, const char *cid, const char *mid,
                         int resolution, const char *value_spec, res_out *o)
{
    memset(o, 0, sizeof(*o));
    Napsync__V1__ResolveConflict req = NAPSYNC__V1__RESOLVE_CONFLICT__INIT;
    req.conflict_id = (char *)cid;
    req.mutation_id = (char *)mid;
    req.resolution = (Napsync__V1__Resolution)resolution;
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    Napsync__V1__Value pv = NAPSYNC__V1__VALUE__INIT;
    if (value_spec != NULL) {
        put_spec("plan", &fs, value_spec);
        assert_int_equal(ns_value_to_pb(&fs.values[0], &pv), 0);
        req.value = &pv;
    }
    char err[256];
    int rc = ns_conflicts_resolve(G.conf, who, &req, on_resolved, o, err, sizeof(err));
    ns_value_pb_clear(&pv);
    ns_fieldset_free(&fs);
    if (rc != 0)
        fail_msg("ns_conflicts_resolve: %d %s", rc, err);
    assert_false(o->done);
    run_until(&o->done);
    assert_int_equal(o->calls, 1);
    if (!o->has)
        fail_msg("resolve failed as a whole: %d %s", o->code, o->msg);
    assert_string_equal(o->r.mutation_id, mid);
}

static void resolved_at(const res_out *o, uint64_t version)
{
    if (o->r.outcome != OUT_APPLIED || o->r.version != version)
        fail_msg("resolve: outcome %d version %llu (%d %s), expected applied %llu", o->r.outcome,
                 (unsigned long long)o->r.version, o->r.reject_code, o->r.reason,
                 (unsigned long long)version);
}

static void refused(const res_out *o, int code, const char *needle)
{
    if (o->r.outcome != OUT_REJECTED || o->r.reject_code != code ||
        strstr(o->r.reason, needle) == NULL)
        fail_msg("resolve: outcome %d code %d \"%s\", expected rejected %d \"%s\"", o->r.outcome,
                 o->r.reject_code, o->r.reason, code, needle);
    assert_int_equal(o->r.version, 0);
}

static long long open_conflicts(void)
{
    return QN0("SELECT count(*) FROM sync_conflicts WHERE resolved_at IS NULL");
}

/* A draft plan with a title conflict (alice's title kept, bob's lost; bob's
 * summary merged: v3). Returns the conflict id (a rotating buffer). */
static const char *title_conflict(const char *plan, unsigned m0)
{
    apply1(&G.alice, MID(m0), "plan", plan, OP_CREATE, 0,
           F("title=T0", "summary=S0", "status=draft"), OUT_APPLIED, 1);
    apply1(&G.alice, MID(m0 + 1), "plan", plan, OP_UPDATE, 1, F("title=Title by A"), OUT_APPLIED,
           2);
    push_out o;
    push1(&G.bob, MID(m0 + 2), "plan", plan, OP_UPDATE, 1,
          F("title=Title by B", "summary=Summary by B"), &o);
    expect(&o, 0, OUT_CONFLICT, 3);
    static char ids[4][40];
    static unsigned next;
    char *id = ids[next++ % 4];
    snprintf(id, 40, "%s", o.r[0].conflicts[0]);
    out_free(&o);
    return id;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* The issue's scenario: A changes title; B changes title and summary; A
 * first; B's title is the conflict. A takes "mine" (the value A authored,
 * which the record kept): A's title, B's summary, no open conflict. */
static void test_issue_scenario(void **state)
{
    (void)state;
    const char *cid = title_conflict(PLAN_1, 1);
    Napsync__V1__Scope sc[] = {scope_plan(PLAN_1)};
    list_out l;
    list_ok(&G.alice, sc, 1, false, &l, 1);
    assert_string_equal(l.ids[0], cid);
    char want[700];
    snprintf(want, sizeof(want),
             "plan %s title base=\"T0\" kept=\"Title by A\" other=\"Title by B\" kd=0 od=0 of=- "
             "by=alice/dev-a vs bob/dev-b",
             PLAN_1);
    assert_string_equal(l.lines[0], want);

    res_out r;
    resolve_with(&G.alice, cid, MID(10), KEEP, NULL, &r);
    resolved_at(&r, 4);
    assert_string_equal(plan_field(PLAN_1, "title"), "Title by A");
    assert_string_equal(plan_field(PLAN_1, "summary"), "Summary by B");
    assert_string_equal(plan_field(PLAN_1, "version"), "4");
    assert_int_equal(open_conflicts(), 0);
    /* A versioned change like any other: revision "resolve", feed, answer. */
    assert_string_equal(rev(PLAN_1, "4", "op"), "resolve");
    assert_string_equal(rev(PLAN_1, "4", "mutation_id"), MID(10));
    assert_string_equal(rev(PLAN_1, "4", "principal_id"), G.alice.principal_id);
    assert_string_equal(rev(PLAN_1, "4", "after->>'title'"), "Title by A");
    assert_int_equal(
        QN("SELECT count(*) FROM sync_feed WHERE record_id = $1 AND version = 4", PLAN_1), 1);
    assert_string_equal(Q("SELECT outcome || ' ' || version FROM sync_mutations"
                          " WHERE mutation_id = $1",
                          MID(10)),
                        "applied 4");
    assert_string_equal(Q("SELECT (resolved_by = $2)::text || ' ' || resolution_version ||"
                          " ' ' || (resolved_at IS NOT NULL)::text"
                          " FROM sync_conflicts WHERE id = $1",
                          cid, G.alice.principal_id),
                        "true 4 true");
    /* Both devices list after their sync: nothing open. */
    list_ok(&G.alice, sc, 1, false, &l, 0);
    list_ok(&G.bob, sc, 1, false, &l, 0);
    list_ok(&G.bob, sc, 1, true, &l, 1);
    assert_non_null(strstr(l.lines[0], " resolved"));
}

static void test_resolve_other_and_value(void **state)
{
    (void)state;
    const char *c1 = title_conflict(PLAN_1, 1);
    res_out r;
    /* OTHER: the value that lost ("theirs" for alice, "mine" for bob). */
    resolve_with(&G.bob, c1, MID(10), OTHER, NULL, &r);
    resolved_at(&r, 4);
    assert_string_equal(plan_field(PLAN_1, "title"), "Title by B");
    assert_string_equal(plan_field(PLAN_1, "summary"), "Summary by B");
    assert_string_equal(plan_field(PLAN_1, "changed_by"), G.bob.principal_id);
    assert_string_equal(rev(PLAN_1, "4", "before->>'title'"), "Title by A");

    /* VALUE: a third value, checked against the field's type. */
    const char *c2 = title_conflict(PLAN_2, 20);
    resolve_with(&G.alice, c2, MID(30), VALUE, "title:int=5", &r);
    refused(&r, ERR(INVALID_ARGUMENT), "title");
    assert_int_equal(stored_count(MID(30)), 0);
    resolve_with(&G.alice, c2, MID(31), VALUE, "title=Agreed title", &r);
    resolved_at(&r, 4);
    assert_string_equal(plan_field(PLAN_2, "title"), "Agreed title");
    assert_int_equal(open_conflicts(), 0);
}

static void test_idempotent_and_double(void **state)
{
    (void)state;
    const char *cid = title_conflict(PLAN_1, 1);
    res_out r;
    resolve_with(&G.alice, cid, MID(10), OTHER, NULL, &r);
    resolved_at(&r, 4);
    /* The same resolution again (a lost answer): the stored answer, once. */
    resolve_with(&G.alice, cid, MID(10), OTHER, NULL, &r);
    resolved_at(&r, 4);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_1), 4);
    assert_int_equal(stored_count(MID(10)), 1);
    /* Another resolution of it: refused, and that answer is stored too. */
    resolve_with(&G.bob, cid, MID(11), KEEP, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "already resolved");
    assert_int_equal(stored_count(MID(11)), 1);
    assert_string_equal(plan_field(PLAN_1, "version"), "4");
    assert_string_equal(Q("SELECT resolution_version::text FROM sync_conflicts WHERE id = $1", cid),
                        "4");
    /* Two resolutions of one conflict at once: one wins, whichever the
     * engine takes first; the other is refused. */
    const char *c2 = title_conflict(PLAN_2, 20);
    Napsync__V1__ResolveConflict a = NAPSYNC__V1__RESOLVE_CONFLICT__INIT;
    a.conflict_id = (char *)c2;
    a.mutation_id = (char *)MID(30);
    a.resolution = KEEP;
    Napsync__V1__ResolveConflict b = a;
    b.mutation_id = (char *)MID(31);
    b.resolution = OTHER;
    res_out ra, rb;
    memset(&ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    char err[128];
    assert_int_equal(ns_conflicts_resolve(G.conf, &G.alice, &a, on_resolved, &ra, err, sizeof(err)),
                     0);
    assert_int_equal(ns_conflicts_resolve(G.conf, &G.bob, &b, on_resolved, &rb, err, sizeof(err)),
                     0);
    run_until(&ra.done);
    run_until(&rb.done);
    bool a_won = ra.r.outcome == OUT_APPLIED;
    resolved_at(a_won ? &ra : &rb, 4);
    refused(a_won ? &rb : &ra, ERR(INVALID_ARGUMENT), "already resolved");
    assert_string_equal(plan_field(PLAN_2, "title"), a_won ? "Title by A" : "Title by B");
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_2), 4);
}

static void test_refusals(void **state)
{
    (void)state;
    const char *cid = title_conflict(PLAN_1, 1);
    res_out r;
    /* Observers read, never resolve. */
    resolve_with(&G.olga, cid, MID(10), KEEP, NULL, &r);
    refused(&r, ERR(PERMISSION_DENIED), "observers");
    assert_int_equal(stored_count(MID(10)), 0);
    /* Another organisation: a draft it cannot see is not found... */
    resolve_with(&G.xavier, cid, MID(11), KEEP, NULL, &r);
    refused(&r, ERR(NOT_FOUND), "does not exist");
    /* ...a published plan it can read but not write is denied. */
    exec_ok("UPDATE plans SET status = 'published'");
    resolve_with(&G.xavier, cid, MID(12), KEEP, NULL, &r);
    refused(&r, ERR(PERMISSION_DENIED), "another organisation");
    resolve_with(&G.alice, uid(0x77000000u, 1), MID(13), KEEP, NULL, &r);
    refused(&r, ERR(NOT_FOUND), "does not exist");
    /* The request's form. */
    resolve_with(&G.alice, "not-a-uuid", MID(14), KEEP, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "conflict_id");
    resolve_with(&G.alice, cid, "bad", KEEP, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "mutation_id");
    resolve_with(&G.alice, cid, MID(15), 0, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "resolution");
    resolve_with(&G.alice, cid, MID(16), VALUE, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "needs a value");
    resolve_with(&G.alice, cid, MID(17), KEEP, "title=x", &r);
    refused(&r, ERR(INVALID_ARGUMENT), "only for");
    assert_int_equal(open_conflicts(), 1);
    assert_string_equal(plan_field(PLAN_1, "version"), "3");
    /* Only the refusal decided in the transaction (the plan's owner) is
     * stored; those of the request alone are not. */
    assert_string_equal(Q("SELECT string_agg(mutation_id::text, ' ') FROM sync_mutations"
                          " WHERE reject_code <> 0"),
                        MID(12));
}

static void test_whole_record(void **state)
{
    (void)state;
    /* The delete won, the edit lost: OTHER brings the record back with
     * the edit. */
    apply1(&G.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T0", "summary=S0"), OUT_APPLIED,
           1);
    apply1(&G.alice, MID(2), "plan", PLAN_1, OP_DELETE, 1, NOFIELDS, OUT_APPLIED, 2);
    push_out o;
    push1(&G.bob, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=edited"), &o);
    expect(&o, 0, OUT_CONFLICT, 2);
    char c1[40];
    snprintf(c1, sizeof(c1), "%s", o.r[0].conflicts[0]);
    out_free(&o);

    /* The edit won, the delete lost: OTHER deletes. */
    apply1(&G.alice, MID(4), "plan", PLAN_2, OP_CREATE, 0, F("title=T0"), OUT_APPLIED, 1);
    apply1(&G.alice, MID(5), "plan", PLAN_2, OP_UPDATE, 1, F("title=edited"), OUT_APPLIED, 2);
    push1(&G.bob, MID(6), "plan", PLAN_2, OP_DELETE, 1, NOFIELDS, &o);
    expect(&o, 0, OUT_CONFLICT, 2);
    char c2[40];
    snprintf(c2, sizeof(c2), "%s", o.r[0].conflicts[0]);
    out_free(&o);

    Napsync__V1__Scope sc[] = {scope_org(G.org_a)};
    list_out l;
    list_ok(&G.olga, sc, 1, false, &l, 2);
    /* Newest first. */
    assert_string_equal(l.ids[0], c2);
    assert_string_equal(l.ids[1], c1);
    char want[700];
    snprintf(want, sizeof(want),
             "plan %s * base=- kept=- other=- kd=0 od=1 of=- by=alice/dev-a vs bob/dev-b", PLAN_2);
    assert_string_equal(l.lines[0], want);
    snprintf(want, sizeof(want),
             "plan %s * base=- kept=- other=- kd=1 od=0 of=title=\"edited\" by=alice/dev-a vs "
             "bob/dev-b",
             PLAN_1);
    assert_string_equal(l.lines[1], want);

    res_out r;
    resolve_with(&G.bob, c1, MID(10), VALUE, "title=x", &r);
    refused(&r, ERR(INVALID_ARGUMENT), "KEEP or OTHER");
    resolve_with(&G.bob, c1, MID(11), OTHER, NULL, &r);
    resolved_at(&r, 3);
    assert_string_equal(plan_field(PLAN_1, "deleted"), "false");
    assert_string_equal(plan_field(PLAN_1, "title"), "edited");
    assert_string_equal(plan_field(PLAN_1, "summary"), "S0");
    assert_string_equal(rev(PLAN_1, "3", "deleted"), "false");

    resolve_with(&G.bob, c2, MID(12), OTHER, NULL, &r);
    resolved_at(&r, 3);
    assert_string_equal(plan_field(PLAN_2, "deleted"), "true");
    assert_string_equal(plan_field(PLAN_2, "title"), "edited");
    assert_string_equal(rev(PLAN_2, "3", "op"), "resolve");
    assert_int_equal(open_conflicts(), 0);
}

/* A field conflict of a record deleted since: KEEP closes it, the record
 * stays deleted; OTHER is refused. */
static void test_field_conflict_of_deleted(void **state)
{
    (void)state;
    const char *cid = title_conflict(PLAN_1, 1);
    apply1(&G.alice, MID(5), "plan", PLAN_1, OP_DELETE, 3, NOFIELDS, OUT_APPLIED, 4);
    res_out r;
    resolve_with(&G.alice, cid, MID(10), OTHER, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "is deleted");
    resolve_with(&G.alice, cid, MID(11), KEEP, NULL, &r);
    resolved_at(&r, 5);
    assert_string_equal(plan_field(PLAN_1, "deleted"), "true");
    assert_int_equal(open_conflicts(), 0);
}

static void test_list_scopes(void **state)
{
    (void)state;
    const char *c1 = title_conflict(PLAN_1, 1);
    /* An indicator conflict on a decimal field, typed as such. */
    apply1(&G.alice, MID(10), "indicator", IND_1, OP_CREATE, 0, F("plan_id=" PLAN_1, "target=10"),
           OUT_APPLIED, 1);
    apply1(&G.alice, MID(11), "indicator", IND_1, OP_UPDATE, 1, F("target=12.5"), OUT_APPLIED, 2);
    push_out o;
    push1(&G.bob, MID(12), "indicator", IND_1, OP_UPDATE, 1, F("target=11"), &o);
    expect(&o, 0, OUT_CONFLICT, 2);
    out_free(&o);
    const char *c2 = title_conflict(PLAN_2, 20);

    Napsync__V1__Scope one[] = {scope_plan(PLAN_1)};
    list_out l;
    list_ok(&G.alice, one, 1, false, &l, 2);
    char want[700];
    snprintf(want, sizeof(want),
             "indicator %s target base=10 kept=12.5 other=11 kd=0 od=0 of=- by=alice/dev-a vs "
             "bob/dev-b",
             IND_1);
    assert_string_equal(l.lines[0], want);
    assert_string_equal(l.ids[1], c1);
    Napsync__V1__Scope org[] = {scope_org(G.org_a)};
    list_ok(&G.alice, org, 1, false, &l, 3);
    assert_string_equal(l.ids[0], c2);
    Napsync__V1__Scope both[] = {scope_plan(PLAN_2), scope_plan(PLAN_1)};
    list_ok(&G.olga, both, 2, false, &l, 3);

    /* Another organisation: drafts are not readable. */
    list(&G.xavier, one, 1, false, &l);
    assert_int_equal(l.code, ERR(PERMISSION_DENIED));
    assert_non_null(strstr(l.msg, PLAN_1));
    list_ok(&G.xavier, org, 1, false, &l, 0);
    Napsync__V1__Scope x[] = {scope_plan(PLAN_X)};
    list(&G.alice, x, 1, false, &l);
    assert_int_equal(l.code, ERR(PERMISSION_DENIED));
    /* Published: readable by everyone. */
    exec_ok("UPDATE plans SET status = 'published' WHERE id = '" PLAN_2 "'");
    list_ok(&G.xavier, org, 1, false, &l, 1);
    assert_string_equal(l.ids[0], c2);

    /* include_resolved. */
    res_out r;
    resolve_with(&G.alice, c1, MID(40), KEEP, NULL, &r);
    resolved_at(&r, 4);
    list_ok(&G.alice, org, 1, false, &l, 2);
    list_ok(&G.alice, org, 1, true, &l, 3);

    /* Scopes are checked as Pull checks them. */
    char err[256];
    Napsync__V1__ListConflicts req = NAPSYNC__V1__LIST_CONFLICTS__INIT;
    assert_int_equal(ns_conflicts_list(G.conf, &G.alice, &req, on_list, &l, err, sizeof(err)),
                     ERR(INVALID_ARGUMENT));
    assert_non_null(strstr(err, "at least one scope"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, test_setup, test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_issue_scenario),        T(test_resolve_other_and_value),
        T(test_idempotent_and_double), T(test_refusals),
        T(test_whole_record),          T(test_field_conflict_of_deleted),
        T(test_list_scopes),
    };
#undef T
    return cmocka_run_group_tests_name("conflicts", tests, group_setup, group_teardown);
}
