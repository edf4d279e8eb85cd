/* The in-process push fixture: see pushtest.h. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "pushtest.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PROG program_invocation_short_name

nst_pt_fixture nst_pt;

/* ---- plain SQL ----------------------------------------------------------------------- */

/* nst_pt_q's rotating buffers. */
static char qbuf[8][8192];
static unsigned qnext;

const char *nst_pt_q(const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(nst_pt.pgdb.pg, sql, n, NULL, params, NULL, NULL, 0);
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

long long nst_pt_qn(const char *sql, int n, const char *const *params)
{
    const char *v = nst_pt_q(sql, n, params);
    if (v == NULL)
        fail_msg("%s: no value", sql);
    return strtoll(v, NULL, 10);
}

void nst_pt_exec_ok(const char *sql)
{
    nst_pgt_exec_ok(nst_pt.pgdb.pg, sql, 0, NULL);
}

/* ---- identities ----------------------------------------------------------------------- */

static int sql_row(const char *sql, int n, const char *const *params, char *out, size_t outlen)
{
    PGresult *res = PQexecParams(nst_pt.pgdb.pg, sql, n, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    } else {
        fprintf(stderr, "%s: %s: %s", PROG, sql, PQresultErrorMessage(res));
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

void nst_pt_run_until(const bool *flag)
{
    uv_timer_t tick;
    uv_timer_init(&nst_pt.loop, &tick);
    uv_timer_start(&tick, on_tick, 50, 50);
    uint64_t deadline = uv_hrtime() + 30ull * 1000000000ull;
    while (!*flag && uv_hrtime() < deadline)
        uv_run(&nst_pt.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&nst_pt.loop, UV_RUN_NOWAIT);
    if (!*flag)
        fail_msg("timed out waiting for the loop");
}

/* ---- building pushes ------------------------------------------------------------------ */

void nst_pt_pb_init(nst_pt_pbuild *b)
{
    memset(b, 0, sizeof(*b));
    napsync__v1__push__init(&b->push);
}

void nst_pt_pb_free(nst_pt_pbuild *b)
{
    for (size_t i = 0; i < b->n; i++) {
        ns_fieldset_pb_clear(&b->h[i]->fpb);
        ns_fieldset_free(&b->h[i]->fs);
        free(b->h[i]);
    }
    free(b->h);
    free(b->ptrs);
    nst_pt_pb_init(b);
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

void nst_pt_put_spec(const char *type, ns_fieldset *fs, const char *spec)
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
    const ns_entity_type *t = ns_registry_find(&nst_pt.reg, type);
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

void nst_pt_pb_add(nst_pt_pbuild *b, const char *mid, const char *type, const char *rid, int op,
                   uint64_t base, const char *const *specs)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->h = realloc(b->h, b->cap * sizeof(*b->h));
        b->ptrs = realloc(b->ptrs, b->cap * sizeof(*b->ptrs));
        assert_non_null(b->h);
        assert_non_null(b->ptrs);
    }
    nst_pt_mut *x = calloc(1, sizeof(*x));
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
        nst_pt_put_spec(type, &x->fs, specs[i]);
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

const char *nst_pt_uid(unsigned tag, unsigned n)
{
    static char bufs[16][40];
    static unsigned next;
    char *b = bufs[next++ % 16];
    snprintf(b, 40, "%08x-0000-4000-8000-%012x", tag, n);
    return b;
}

/* ---- running pushes ------------------------------------------------------------------- */

void nst_pt_on_push(const Napsync__V1__PushResult *result, Napsync__V1__ErrorCode code,
                    const char *message, void *ud)
{
    nst_pt_out *o = ud;
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
        nst_pt_result *c = &o->r[i];
        snprintf(c->mutation_id, sizeof(c->mutation_id), "%s", m->mutation_id);
        c->outcome = m->outcome;
        c->version = m->version;
        c->reject_code = m->reject_code;
        snprintf(c->reason, sizeof(c->reason), "%s", m->reject_reason);
        snprintf(c->field, sizeof(c->field), "%s", m->reject_field ? m->reject_field : "");
        c->nconflicts = m->n_conflict_ids;
        for (size_t k = 0; k < m->n_conflict_ids && k < 4; k++)
            snprintf(c->conflicts[k], sizeof(c->conflicts[k]), "%s", m->conflict_ids[k]);
    }
}

void nst_pt_out_free(nst_pt_out *o)
{
    free(o->r);
    memset(o, 0, sizeof(*o));
}

void nst_pt_submit(ns_sync *s, nst_pt_pbuild *b, const ns_identity_info *who, nst_pt_out *o)
{
    memset(o, 0, sizeof(*o));
    assert_int_equal(ns_sync_push(s, who, &b->push, nst_pt_on_push, o), NS_SYNC_OK);
    /* Never inside the call. */
    assert_false(o->done);
}

void nst_pt_run_push(nst_pt_pbuild *b, const ns_identity_info *who, nst_pt_out *o)
{
    nst_pt_submit(nst_pt.sync, b, who, o);
    nst_pt_run_until(&o->done);
    assert_int_equal(o->calls, 1);
}

void nst_pt_results_ok(const nst_pt_out *o, size_t n)
{
    if (!o->has_result)
        fail_msg("the push failed: code %d: %s", o->code, o->msg);
    assert_int_equal(o->code, 0);
    assert_int_equal(o->n, n);
}

void nst_pt_expect(const nst_pt_out *o, size_t i, int outcome, uint64_t version)
{
    assert_true(i < o->n);
    const nst_pt_result *r = &o->r[i];
    if (r->outcome != outcome || r->version != version)
        fail_msg("result %zu: outcome %d version %llu (code %d: %s), expected %d version %llu", i,
                 r->outcome, (unsigned long long)r->version, r->reject_code, r->reason, outcome,
                 (unsigned long long)version);
    if (outcome != OUT_REJECTED)
        assert_int_equal(r->reject_code, 0);
    if (outcome != OUT_CONFLICT)
        assert_int_equal(r->nconflicts, 0);
}

void nst_pt_push1(const ns_identity_info *who, const char *mid, const char *type, const char *rid,
                  int op, uint64_t base, const char *const *specs, nst_pt_out *o)
{
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, mid, type, rid, op, base, specs);
    nst_pt_run_push(&b, who, o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(o, 1);
    assert_string_equal(o->r[0].mutation_id, mid);
}

void nst_pt_apply1(const ns_identity_info *who, const char *mid, const char *type, const char *rid,
                   int op, uint64_t base, const char *const *specs, int outcome, uint64_t version)
{
    nst_pt_out o;
    nst_pt_push1(who, mid, type, rid, op, base, specs, &o);
    nst_pt_expect(&o, 0, outcome, version);
    nst_pt_out_free(&o);
}

/* ---- the database as the engine left it ----------------------------------------------- */

const char *nst_pt_plan_field(const char *id, const char *column)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT %s::text FROM plans WHERE id = $1", column);
    return Q(sql, id);
}

long long nst_pt_stored_count(const char *mid)
{
    return QN("SELECT count(*) FROM sync_mutations WHERE mutation_id = $1", mid);
}

const char *nst_pt_rev(const char *id, const char *version, const char *expr)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT (%s)::text FROM sync_revisions WHERE record_id = $1 AND version = $2", expr);
    return Q(sql, id, version);
}

void nst_pt_check_feed(void)
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

int nst_pt_setup(const char *tag)
{
    if (nst_pgt_create(&nst_pt.pgdb, tag) != 0)
        return -1;

    /* A type of the tests' own whose CHECK constraint the engine cannot
     * know: a mutation of it fails inside the batch's transaction. */
    if (nst_pgt_exec(nst_pt.pgdb.pg,
                     "CREATE TABLE test_notes (" ENGINE_COLUMNS
                     ", plan_id uuid, body text CHECK (body IS DISTINCT FROM "
                     "'forbidden'));"
                     "INSERT INTO sync_entity_types (name, table_name, tenant_field)"
                     " VALUES ('test_note', 'test_notes', 'plan_id')") != 0)
        return -1;

    const char *none[1] = {NULL};
    if (sql_row("INSERT INTO organisations (code, name, kind) VALUES ('mogec', 'Ministry',"
                " 'ministry') RETURNING id",
                0, none, nst_pt.org_a, sizeof(nst_pt.org_a)) != 0 ||
        sql_row("INSERT INTO organisations (code, name, kind) VALUES ('cso-b', 'Other',"
                " 'cso') RETURNING id",
                0, none, nst_pt.org_b, sizeof(nst_pt.org_b)) != 0)
        return -1;
    if (make_identity(&nst_pt.alice, nst_pt.org_a, "alice", "coordinator", "dev-a") != 0 ||
        make_identity(&nst_pt.bob, nst_pt.org_a, "bob", "coordinator", "dev-b") != 0 ||
        make_identity(&nst_pt.olga, nst_pt.org_a, "olga", "observer", "dev-o") != 0 ||
        make_identity(&nst_pt.xavier, nst_pt.org_b, "xavier", "coordinator", "dev-x") != 0 ||
        make_identity(&nst_pt.ada, nst_pt.org_a, "ada", "admin", "dev-ad") != 0)
        return -1;

    char err[512];
    if (ns_registry_load(nst_pt.pgdb.conninfo, &nst_pt.reg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: registry: %s\n", PROG, err);
        return -1;
    }
    if (uv_loop_init(&nst_pt.loop) != 0)
        return -1;
    nst_pt.loop_ok = true;
    ns_db_options o = {
        .conninfo = nst_pt.pgdb.conninfo,
        .pool_size = 4,
        .queue_limit = 1000,
        .queue_timeout_ms = 10000,
        .reconnect_max_ms = 1000,
    };
    if (ns_db_open(&nst_pt.loop, &o, &nst_pt.db) != NS_DB_OK)
        return -1;
    if (ns_sync_new(&nst_pt.loop, nst_pt.db, &nst_pt.reg, &nst_pt.sync, err, sizeof(err)) !=
        NS_SYNC_OK) {
        fprintf(stderr, "%s: ns_sync_new: %s\n", PROG, err);
        return -1;
    }
    return 0;
}

void nst_pt_on_flag(void *ud)
{
    *(bool *)ud = true;
}

int nst_pt_teardown(void)
{
    if (nst_pt.sync != NULL) {
        bool done = false;
        ns_sync_close(nst_pt.sync, nst_pt_on_flag, &done);
        while (!done)
            uv_run(&nst_pt.loop, UV_RUN_ONCE);
    }
    if (nst_pt.db != NULL) {
        bool done = false;
        ns_db_close(nst_pt.db, nst_pt_on_flag, &done);
        while (!done)
            uv_run(&nst_pt.loop, UV_RUN_ONCE);
    }
    if (nst_pt.loop_ok) {
        uv_run(&nst_pt.loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&nst_pt.loop) != 0)
            fprintf(stderr, "%s: handles left open on the loop\n", PROG);
    }
    ns_registry_free(&nst_pt.reg);
    return nst_pgt_drop(&nst_pt.pgdb);
}

int nst_pt_test_setup(void **state)
{
    (void)state;
    /* Every synced table of plan content, whatever the migrations made
     * (the directory's hold the test's identities). */
    return nst_pgt_exec(nst_pt.pgdb.pg,
                        "DO $$ BEGIN EXECUTE (SELECT 'TRUNCATE ' || string_agg(format('%I',"
                        " table_name), ', ') FROM sync_entity_types WHERE NOT directory); END $$;"
                        " TRUNCATE sync_revisions, sync_feed, sync_mutations, sync_conflicts;"
                        " UPDATE sync_feed_head SET seq = 0");
}

int nst_pt_test_teardown(void **state)
{
    (void)state;
    nst_pt_check_feed();
    return 0;
}
