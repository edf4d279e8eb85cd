/* The change feed (daemon/feed.h) in process, against a real PostgreSQL:
 * a fresh migrated database on the NS_TEST_PG* cluster, the registry
 * loaded from it, a uv loop with an ns_db pool and the feed. Changes are
 * written with SQL the way the push engine writes them: revisions, then the
 * design's one feed-append statement under sync_feed_head's row lock, which
 * also NOTIFYs.
 *
 * The gap tests drive writers on their own libpq connections so that a
 * transaction holding an early seq commits after a later one tried to:
 * the reader of "seq > cursor" never misses a change. The control runs the
 * same interleaving and the same reader against a second database where
 * seq comes from a plain sequence (nextval, no head lock) and the head is
 * the largest visible seq: there the reader does skip a change, so the
 * test would catch that bug. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <uv.h>

#include "db.h"
#include "feed.h"
#include "pgtest.h"
#include "registry.h"
#include "wps.h"

#define ERR(name) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name

/* Fixed ids, the same in both databases. */
#define ORG_A     "0a000000-0000-4000-8000-00000000000a"
#define ORG_B     "0b000000-0000-4000-8000-00000000000b"
#define ALICE     "a1000000-0000-4000-8000-0000000000a1" /* of A */
#define BOB       "b0000000-0000-4000-8000-0000000000b0" /* of B */
#define A_DRAFT   "aaaa0000-0000-4000-8000-000000000001"
#define A_ACTIVE  "aaaa0000-0000-4000-8000-000000000002"
#define B_DRAFT   "bbbb0000-0000-4000-8000-000000000001"
#define B_ACTIVE  "bbbb0000-0000-4000-8000-000000000002"
#define NO_PLAN   "cccc0000-0000-4000-8000-000000000009"
#define NOT_EPOCH "eeee0000-0000-4000-8000-00000000000e"

/* The design's feed append (sync-design.md, Push step 4), verbatim. */
#define FEED_APPEND_WITH(tail)                                                                     \
    "WITH h AS (UPDATE sync_feed_head SET seq = seq + $2 RETURNING seq - $2 AS base),"             \
    "     ins AS (INSERT INTO sync_feed SELECT h.base + x.ord, x.entity_type, x.record_id,"        \
    "                    x.version, x.tenant_id"                                                   \
    "               FROM h, ROWS FROM (jsonb_to_recordset($1::jsonb) AS (entity_type text,"        \
    "                    record_id uuid, version bigint, tenant_id uuid))"                         \
    "                    WITH ORDINALITY AS x(entity_type, record_id, version, tenant_id, ord)"    \
    "             RETURNING seq) " tail
static const char append_sql[] =
    FEED_APPEND_WITH("SELECT pg_notify('napsync_feed', (SELECT max(seq) FROM ins)::text)");
/* The same without the NOTIFY: a change the listener never hears of. */
static const char append_silent_sql[] = FEED_APPEND_WITH("SELECT max(seq) FROM ins");
/* The naive scheme of the control: a plain sequence, no head, no lock. */
static const char append_naive_sql[] =
    "WITH ins AS (INSERT INTO sync_feed SELECT nextval('naive_feed_seq'), x.entity_type,"
    "                    x.record_id, x.version, x.tenant_id"
    "               FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (entity_type text,"
    "                    record_id uuid, version bigint, tenant_id uuid))"
    "                    WITH ORDINALITY AS x(entity_type, record_id, version, tenant_id, ord)"
    "              ORDER BY x.ord"
    "             RETURNING seq) "
    "SELECT pg_notify('napsync_feed', (SELECT max(seq) FROM ins)::text)";

static const char revisions_sql[] =
    "INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op, principal_id,"
    "                            deleted, after)"
    " SELECT x.entity_type, x.record_id, x.version, x.tenant_id,"
    "        CASE WHEN x.deleted THEN 'delete' WHEN x.version = 1 THEN 'create' ELSE 'update' END,"
    "        x.principal_id, x.deleted, x.after"
    "   FROM jsonb_to_recordset($1::jsonb) AS x(entity_type text, record_id uuid, version bigint,"
    "        tenant_id uuid, principal_id uuid, deleted boolean, after jsonb)";

/* n new indicators of a plan by a principal, as a JSON array of changes. */
static const char indicators_sql[] =
    "SELECT jsonb_agg(jsonb_build_object('entity_type', 'indicator',"
    "         'record_id', gen_random_uuid(), 'version', 1, 'tenant_id', $1::uuid,"
    "         'principal_id', $2::uuid, 'deleted', false,"
    "         'after', jsonb_build_object('plan_id', $1::text, 'code', 'c' || g,"
    "                                     'title', 'indicator ' || g)) ORDER BY g)::text"
    "  FROM generate_series(1, $3::int) g";

typedef enum { APPEND_LOCKED, APPEND_SILENT, APPEND_NAIVE } append_mode;

static struct {
    nst_pgt_db pgdb;  /* the feed's database; pgdb.pg for the tests' own SQL */
    nst_pgt_db naive; /* the control's database */
    ns_registry reg;
    bool reg_loaded;
    ns_identity_info alice, bob;
    char epoch[40];
} G;

/* ---- plain SQL --------------------------------------------------------------------- */

/* The first value of the first row, as a long long. */
static long long exec_int(PGconn *c, const char *sql, int n, const char *const *v)
{
    PGresult *r = nst_pgt_query(c, sql, n, v);
    if (r == NULL || PQntuples(r) < 1 || PQgetisnull(r, 0, 0)) {
        PQclear(r);
        fail_msg("no value from %.80s", sql);
    }
    long long x = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return x;
}

/* JSON of n new indicators of plan by principal (caller frees). */
static char *indicators(PGconn *c, int n, const char *plan, const char *principal)
{
    char num[16];
    snprintf(num, sizeof(num), "%d", n);
    const char *v[3] = {plan, principal, num};
    PGresult *r = nst_pgt_query(c, indicators_sql, 3, v);
    assert_non_null(r);
    char *json = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    assert_non_null(json);
    return json;
}

/* BEGIN, the revisions and the feed append of n changes, without COMMIT:
 * the transaction holds its seq numbers (and, locked, the head's row). */
static void begin_changes(PGconn *c, const char *json, int n, append_mode mode)
{
    char num[16];
    snprintf(num, sizeof(num), "%d", n);
    const char *v[2] = {json, num};
    nst_pgt_exec_ok(c, "BEGIN", 0, NULL);
    nst_pgt_exec_ok(c, revisions_sql, 1, v);
    nst_pgt_exec_ok(c,
                    mode == APPEND_NAIVE    ? append_naive_sql
                    : mode == APPEND_SILENT ? append_silent_sql
                                            : append_sql,
                    mode == APPEND_NAIVE ? 1 : 2, v);
}

static void commit_changes(PGconn *c, const char *json, int n, append_mode mode)
{
    begin_changes(c, json, n, mode);
    nst_pgt_exec_ok(c, "COMMIT", 0, NULL);
}

/* n new indicators of plan by principal, committed in one transaction. */
static void add_indicators(int n, const char *plan, const char *principal)
{
    char *json = indicators(G.pgdb.pg, n, plan, principal);
    commit_changes(G.pgdb.pg, json, n, APPEND_LOCKED);
    free(json);
}

static long long head_seq(void)
{
    return exec_int(G.pgdb.pg, "SELECT seq FROM sync_feed_head", 0, NULL);
}

/* "record_id/version" of every change of the given tenants (uuid[] literal), in feed order. */
typedef struct {
    char (*ids)[48];
    size_t n, cap;
} id_list;

static void ids_add(id_list *l, const char *id, unsigned long long version)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->ids = realloc(l->ids, l->cap * sizeof(*l->ids));
        assert_non_null(l->ids);
    }
    snprintf(l->ids[l->n++], sizeof(l->ids[0]), "%.36s/%llu", id, version);
}

static void ids_free(id_list *l)
{
    free(l->ids);
    memset(l, 0, sizeof(*l));
}

static void truth(PGconn *c, const char *tenants, id_list *out)
{
    const char *v[1] = {tenants};
    PGresult *r = nst_pgt_query(c,
                                "SELECT record_id, version FROM sync_feed"
                                " WHERE tenant_id = ANY($1::uuid[]) ORDER BY seq",
                                1, v);
    assert_non_null(r);
    for (int i = 0; i < PQntuples(r); i++)
        ids_add(out, PQgetvalue(r, i, 0), strtoull(PQgetvalue(r, i, 1), NULL, 10));
    PQclear(r);
}

static void assert_same_ids(const id_list *got, const id_list *want)
{
    size_t n = got->n < want->n ? got->n : want->n;
    for (size_t i = 0; i < n; i++)
        if (strcmp(got->ids[i], want->ids[i]) != 0)
            fail_msg("change %zu: got %s, expected %s", i, got->ids[i], want->ids[i]);
    if (got->n != want->n)
        fail_msg("got %zu changes, expected %zu", got->n, want->n);
}

/* ---- group fixture ------------------------------------------------------------------- */

static const char seed_sql[] =
    "INSERT INTO organisations (id, code, name, kind) VALUES"
    " ('" ORG_A "', 'orga', 'Organisation A', 'ministry'),"
    " ('" ORG_B "', 'orgb', 'Organisation B', 'agency');"
    "INSERT INTO principals (id, organisation_id, name) VALUES"
    " ('" ALICE "', '" ORG_A "', 'alice'), ('" BOB "', '" ORG_B "', 'bob');"
    "INSERT INTO plans (id, version, tenant_id, changed_by, title, status, owner_id, kind,"
    "                   period_start, period_end)"
    " SELECT p.*, '" NST_PLAN_KIND "', DATE '" NST_PLAN_START "', DATE '" NST_PLAN_END "'"
    "   FROM (VALUES"
    " ('" A_DRAFT "'::uuid, 1, '" A_DRAFT "'::uuid, '" ALICE "'::uuid, 'A draft', 'draft',"
    "  '" ORG_A "'::uuid),"
    " ('" A_ACTIVE "', 1, '" A_ACTIVE "', '" ALICE "', 'A active', 'adopted', '" ORG_A "'),"
    " ('" B_DRAFT "', 1, '" B_DRAFT "', '" BOB "', 'B draft', 'draft', '" ORG_B "'),"
    " ('" B_ACTIVE "', 1, '" B_ACTIVE "', '" BOB "', 'B active', 'archived', '" ORG_B "')) p;";

/* The control's database: seq from a plain sequence, and the head (which
 * the feed reads) is what a naive reader would take: the largest visible
 * seq. */
static const char naive_sql[] =
    "DROP TABLE sync_feed_head;"
    "CREATE SEQUENCE naive_feed_seq;"
    "CREATE TABLE naive_epoch (epoch uuid NOT NULL DEFAULT gen_random_uuid());"
    "INSERT INTO naive_epoch DEFAULT VALUES;"
    "CREATE VIEW sync_feed_head AS SELECT true AS single,"
    "       coalesce((SELECT max(seq) FROM sync_feed), 0) AS seq, epoch FROM naive_epoch;";

static void identity(ns_identity_info *who, const char *org, const char *principal,
                     const char *name)
{
    memset(who, 0, sizeof(*who));
    snprintf(who->organisation_id, sizeof(who->organisation_id), "%s", org);
    snprintf(who->principal_id, sizeof(who->principal_id), "%s", principal);
    snprintf(who->principal_name, sizeof(who->principal_name), "%s", name);
}

static int group_setup(void **state)
{
    (void)state;
    if (nst_pgt_create(&G.pgdb, "feed") != 0 || nst_pgt_create(&G.naive, "feed_naive") != 0)
        return -1;
    PGresult *r;
    if ((r = nst_pgt_query(G.pgdb.pg, seed_sql, 0, NULL)) == NULL)
        return -1;
    PQclear(r);
    if ((r = nst_pgt_query(G.naive.pg, seed_sql, 0, NULL)) == NULL)
        return -1;
    PQclear(r);
    if ((r = nst_pgt_query(G.naive.pg, naive_sql, 0, NULL)) == NULL)
        return -1;
    PQclear(r);
    if ((r = nst_pgt_query(G.pgdb.pg, "SELECT epoch FROM sync_feed_head", 0, NULL)) == NULL)
        return -1;
    snprintf(G.epoch, sizeof(G.epoch), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    char err[512];
    if (ns_registry_load(G.pgdb.conninfo, &G.reg, err, sizeof(err)) != 0) {
        fprintf(stderr, "test_feed: registry: %s\n", err);
        return -1;
    }
    G.reg_loaded = true;
    identity(&G.alice, ORG_A, ALICE, "alice");
    identity(&G.bob, ORG_B, BOB, "bob");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (G.reg_loaded)
        ns_registry_free(&G.reg);
    rc |= nst_pgt_drop(&G.pgdb);
    rc |= nst_pgt_drop(&G.naive);
    return rc;
}

/* ---- a loop, a pool and a feed per test ------------------------------------------------ */

#define MAX_PAGES 400

/* What one Pull, or one subscription, was given: copies of the pages
 * (packed and unpacked again, which also proves they pack). */
typedef struct {
    int calls;
    int code;
    char msg[256];
    Napsync__V1__ChangePage *pages[MAX_PAGES];
    size_t packed[MAX_PAGES];
    size_t npages;
    ns_feed_sub *sub;
    bool unsubscribe_in_cb;
    bool pause_in_cb;
} got;

typedef struct fx fx;

/* A reader that pulls again as soon as a page comes, until told to stop. */
typedef struct {
    fx *f;
    const ns_identity_info *who;
    const char *plan;
    uint32_t page_size;
    char cursor[NS_FEED_CURSOR_MAX + 1];
    id_list seen;
    int pulls;
    int errors;
    atomic_int *stop; /* set by the writers: the next pull is the final round */
    bool final_round; /* the pull in flight started after stop */
    bool finished;
} reader;

struct fx {
    uv_loop_t loop;
    uv_timer_t waiter;
    ns_db *db;
    ns_feed *feed;
    uint64_t deadline;
    bool (*cond)(void *);
    void *cond_arg;
    bool closed;
    unsigned stall_us; /* the waiter's timer sleeps this long on every tick */
    got pull;
    got subs[12];
    reader rd;
};

static void free_got(got *g)
{
    for (size_t i = 0; i < g->npages; i++)
        napsync__v1__change_page__free_unpacked(g->pages[i], NULL);
    memset(g, 0, sizeof(*g));
}

static void on_db_closed(void *ud)
{
    ((fx *)ud)->closed = true;
}

static void reset_feed(void)
{
    nst_pgt_exec_ok(G.pgdb.pg, "TRUNCATE sync_feed, sync_revisions", 0, NULL);
    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE sync_feed_head SET seq = 0", 0, NULL);
    nst_pgt_exec_ok(G.naive.pg, "TRUNCATE sync_feed, sync_revisions", 0, NULL);
    nst_pgt_exec_ok(G.naive.pg, "ALTER SEQUENCE naive_feed_seq RESTART", 0, NULL);
}

static fx *fx_new(const char *conninfo, const ns_feed_options *opt)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->waiter);
    f->waiter.data = f;
    ns_db_options o = {
        .conninfo = conninfo,
        .pool_size = 2,
        .queue_limit = 1000,
        .queue_timeout_ms = 10000,
        .reconnect_max_ms = 200,
    };
    assert_int_equal(ns_db_open(&f->loop, &o, &f->db), NS_DB_OK);
    assert_int_equal(ns_feed_open(&f->loop, f->db, &G.reg, opt, &f->feed), 0);
    return f;
}

static int test_setup(void **state)
{
    (void)state;
    reset_feed();
    return 0;
}

/* Closes the pool (which answers whatever is owed), then the feed, and
 * runs the loop until every handle is gone. */
static int fx_teardown(void **state)
{
    fx *f = *state;
    int rc = 0;
    if (f == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(f->subs) / sizeof(f->subs[0]); i++) {
        ns_feed_unsubscribe(f->subs[i].sub);
        f->subs[i].sub = NULL;
    }
    ns_db_close(f->db, on_db_closed, f);
    ns_feed_close(f->feed);
    uv_close((uv_handle_t *)&f->waiter, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    if (!f->closed) {
        fprintf(stderr, "test_feed: ns_db_close never called done\n");
        rc = -1;
    }
    if (uv_loop_close(&f->loop) != 0) {
        fprintf(stderr, "test_feed: handles left on the loop\n");
        rc = -1;
    }
    free_got(&f->pull);
    for (size_t i = 0; i < sizeof(f->subs) / sizeof(f->subs[0]); i++)
        free_got(&f->subs[i]);
    ids_free(&f->rd.seen);
    free(f);
    *state = NULL;
    /* A failed test may have left a transaction open. */
    PQclear(PQexec(G.pgdb.pg, "ROLLBACK"));
    PQclear(PQexec(G.naive.pg, "ROLLBACK"));
    return rc;
}

static void waiter_cb(uv_timer_t *t)
{
    fx *f = t->data;
    /* A loop busy elsewhere: answers and notifications pile up meanwhile
     * and are then handled in whatever order the poll reports them. */
    if (f->stall_us > 0)
        usleep(f->stall_us);
    if (f->cond(f->cond_arg) || uv_now(t->loop) >= f->deadline)
        uv_stop(t->loop);
}

/* Runs the loop until cond holds or timeout_ms pass; returns cond. */
static bool fx_wait(fx *f, bool (*cond)(void *), void *arg, uint64_t timeout_ms)
{
    if (cond(arg))
        return true;
    f->cond = cond;
    f->cond_arg = arg;
    uv_update_time(&f->loop);
    f->deadline = uv_now(&f->loop) + timeout_ms;
    uv_timer_start(&f->waiter, waiter_cb, 2, 2);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&f->waiter);
    return cond(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Runs the loop for ms: what should not happen gets its chance to. */
static void fx_idle(fx *f, uint64_t ms)
{
    (void)fx_wait(f, never, NULL, ms);
}

static void record_page(got *g, int code, const char *msg, const Napsync__V1__ChangePage *page)
{
    g->calls++;
    g->code = code;
    snprintf(g->msg, sizeof(g->msg), "%s", msg != NULL ? msg : "");
    if (code != 0) {
        assert_null(page);
        assert_non_null(msg);
        return;
    }
    assert_non_null(page);
    assert_null(msg);
    assert_true(g->npages < MAX_PAGES);
    size_t len = napsync__v1__change_page__get_packed_size(page);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    assert_int_equal(napsync__v1__change_page__pack(page, buf), len);
    g->pages[g->npages] = napsync__v1__change_page__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(g->pages[g->npages]);
    g->packed[g->npages] = len;
    g->npages++;
}

static void on_page(int code, const char *msg, const Napsync__V1__ChangePage *page, void *ud)
{
    got *g = ud;
    record_page(g, code, msg, page);
    if (g->unsubscribe_in_cb) {
        ns_feed_unsubscribe(g->sub);
        g->sub = NULL;
    }
    if (g->pause_in_cb)
        ns_feed_sub_pause(g->sub);
}

/* ---- requests ---------------------------------------------------------------------------- */

/* Scopes by value (the tests copy them around): the pointer array the
 * request needs is made from s when it is used. */
typedef struct {
    Napsync__V1__Scope s[80];
    Napsync__V1__Scope *p[80];
    size_t n;
} scopes;

static Napsync__V1__Scope **scope_ptrs(scopes *sc)
{
    for (size_t i = 0; i < sc->n; i++)
        sc->p[i] = &sc->s[i];
    return sc->p;
}

static scopes *scope_add(scopes *sc, bool plan, const char *id)
{
    assert_true(sc->n < 80);
    Napsync__V1__Scope *s = &sc->s[sc->n];
    napsync__v1__scope__init(s);
    if (plan) {
        s->kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
        s->plan_id = (char *)id;
    } else {
        s->kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
        s->organisation_id = (char *)id;
    }
    sc->n++;
    return sc;
}

static scopes one_scope(bool plan, const char *id)
{
    scopes sc;
    memset(&sc, 0, sizeof(sc));
    scope_add(&sc, plan, id);
    return sc;
}

static bool got_called(void *arg)
{
    return ((got *)arg)->calls > 0;
}

/* Starts a Pull; returns ns_feed_pull's code (err gets its message). */
static int pull_start(fx *f, const ns_identity_info *who, const char *cursor, scopes *sc,
                      uint32_t page_size, char *err, size_t errlen)
{
    Napsync__V1__Pull req = NAPSYNC__V1__PULL__INIT;
    req.cursor = (char *)cursor;
    req.n_scopes = sc->n;
    req.scopes = scope_ptrs(sc);
    req.page_size = page_size;
    free_got(&f->pull);
    return ns_feed_pull(f->feed, who, &req, on_page, &f->pull, err, errlen);
}

/* Pulls one page and waits for it: the code, and the page in f->pull.pages[0]. */
static int pull(fx *f, const ns_identity_info *who, const char *cursor, scopes *sc,
                uint32_t page_size)
{
    char err[256] = "";
    int rc = pull_start(f, who, cursor, sc, page_size, err, sizeof(err));
    if (rc != 0)
        fail_msg("ns_feed_pull refused the request (%d): %s", rc, err);
    assert_true(fx_wait(f, got_called, &f->pull, 10000));
    assert_int_equal(f->pull.calls, 1);
    return f->pull.code;
}

static const Napsync__V1__ChangePage *pull_ok(fx *f, const ns_identity_info *who,
                                              const char *cursor, scopes *sc, uint32_t page_size)
{
    int code = pull(f, who, cursor, sc, page_size);
    if (code != 0)
        fail_msg("pull failed (%d): %s", code, f->pull.msg);
    assert_int_equal(f->pull.npages, 1);
    return f->pull.pages[0];
}

/* A request refused before any query: the code, and a message. */
static int pull_refused(fx *f, const ns_identity_info *who, const char *cursor, scopes *sc)
{
    char err[256] = "";
    int rc = pull_start(f, who, cursor, sc, 0, err, sizeof(err));
    assert_int_not_equal(rc, 0);
    assert_true(err[0] != '\0');
    return rc;
}

static void head_cursor(char *out, size_t outlen, long long seq)
{
    snprintf(out, outlen, "v1.%s.%lld", G.epoch, seq);
}

/* Pulls from cursor until a page says no more; appends every record to out
 * and leaves the final cursor in cursor. Returns the number of pages. */
static size_t pull_all(fx *f, const ns_identity_info *who, char *cursor, size_t cursorlen,
                       scopes *sc, uint32_t page_size, uint32_t max_records, id_list *out)
{
    size_t pages = 0;
    for (;;) {
        const Napsync__V1__ChangePage *p = pull_ok(f, who, cursor, sc, page_size);
        pages++;
        assert_true(p->n_records <= max_records);
        for (size_t i = 0; i < p->n_records; i++)
            ids_add(out, p->records[i]->id, p->records[i]->version);
        assert_true(strlen(p->next_cursor) < cursorlen);
        snprintf(cursor, cursorlen, "%s", p->next_cursor);
        if (!p->more)
            return pages;
        assert_true(p->n_records > 0);
    }
}

static ns_feed_sub *subscribe(fx *f, got *g, const ns_identity_info *who, const char *cursor,
                              scopes *sc)
{
    Napsync__V1__Subscribe req = NAPSYNC__V1__SUBSCRIBE__INIT;
    req.cursor = (char *)cursor;
    req.n_scopes = sc->n;
    req.scopes = scope_ptrs(sc);
    char err[256] = "";
    int rc = ns_feed_subscribe(f->feed, who, &req, on_page, g, &g->sub, err, sizeof(err));
    if (rc != 0)
        fail_msg("ns_feed_subscribe refused (%d): %s", rc, err);
    assert_non_null(g->sub);
    return g->sub;
}

typedef struct {
    got *g;
    size_t pages;
} pages_at_least;

static bool has_pages(void *arg)
{
    pages_at_least *w = arg;
    return w->g->npages >= w->pages;
}

static void wait_pages(fx *f, got *g, size_t n)
{
    pages_at_least w = {g, n};
    if (!fx_wait(f, has_pages, &w, 10000))
        fail_msg("%zu pages delivered, expected %zu (calls %d, last code %d %s)", g->npages, n,
                 g->calls, g->code, g->msg);
}

/* ---- tests: Pull ----------------------------------------------------------------------------- */

static const Napsync__V1__Value *field_of(const Napsync__V1__Record *r, const char *name)
{
    assert_non_null(r->fields);
    for (size_t i = 0; i < r->fields->n_fields; i++)
        if (strcmp(r->fields->fields[i]->name, name) == 0)
            return r->fields->fields[i]->value;
    fail_msg("record %s has no field %s", r->id, name);
    return NULL;
}

static bool rfc3339_utc(const char *s)
{
    /* YYYY-MM-DDTHH:MM:SS.ffffffZ */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (strlen(s) != sizeof(shape) - 1)
        return false;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    return true;
}

/* The page's tenant_ids as "{a,b}", the form the cases write the
 * readable plans in, to compare with them. */
static void assert_tenants(const Napsync__V1__ChangePage *p, const char *want)
{
    char have[512] = "{";
    size_t len = 1;
    assert_false(p->tenant_ids_truncated);
    for (size_t i = 0; i < p->n_tenant_ids; i++) {
        if (i > 0 && strcmp(p->tenant_ids[i - 1], p->tenant_ids[i]) >= 0)
            fail_msg("tenant_ids not sorted: %s before %s", p->tenant_ids[i - 1], p->tenant_ids[i]);
        int w =
            snprintf(have + len, sizeof(have) - len, "%s%s", i > 0 ? "," : "", p->tenant_ids[i]);
        assert_true(w > 0 && (size_t)w < sizeof(have) - len);
        len += (size_t)w;
    }
    assert_true(len + 1 < sizeof(have));
    memcpy(have + len, "}", 2);
    assert_string_equal(have, want);
}

/* Records carry every field of their type (from the revision's after,
 * canonical), the version, the tombstone, the tenant, who and when. */
static void test_pull_records(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    static const char json[] =
        "[{\"entity_type\": \"indicator\", \"record_id\": \"11110000-0000-4000-8000-000000000001\","
        "  \"version\": 1, \"tenant_id\": \"" A_ACTIVE "\", \"principal_id\": \"" ALICE "\","
        "  \"deleted\": false, \"after\": {\"plan_id\": \"" A_ACTIVE "\", \"code\": \"I-1\","
        "  \"baseline\": \"1.50\", \"baseline_date\": \"2026-01-31\","
        "  \"tags\": [\"water\", \"health\", \"water\"]}},"
        " {\"entity_type\": \"indicator\", \"record_id\": \"11110000-0000-4000-8000-000000000001\","
        "  \"version\": 2, \"tenant_id\": \"" A_ACTIVE "\", \"principal_id\": \"" BOB "\","
        "  \"deleted\": true, \"after\": {\"plan_id\": \"" A_ACTIVE "\", \"code\": \"I-1\"}},"
        " {\"entity_type\": \"plan\", \"record_id\": \"" A_ACTIVE "\","
        "  \"version\": 2, \"tenant_id\": \"" A_ACTIVE "\", \"principal_id\": \"" ALICE "\","
        "  \"deleted\": false, \"after\": {\"title\": \"A active\", \"status\": \"adopted\","
        "  \"owner_id\": \"" ORG_A "\"}}]";
    commit_changes(G.pgdb.pg, json, 3, APPEND_LOCKED);

    scopes sc = one_scope(true, A_ACTIVE);
    const Napsync__V1__ChangePage *p = pull_ok(f, &G.alice, "", &sc, 0);
    assert_int_equal(p->n_records, 3);
    assert_false(p->more);
    char want[80];
    head_cursor(want, sizeof(want), 3);
    assert_string_equal(p->next_cursor, want);

    const Napsync__V1__Record *r = p->records[0];
    assert_string_equal(r->entity_type, "indicator");
    assert_string_equal(r->id, "11110000-0000-4000-8000-000000000001");
    assert_int_equal(r->version, 1);
    assert_false(r->deleted);
    assert_string_equal(r->tenant_id, A_ACTIVE);
    assert_string_equal(r->changed_by, "alice");
    assert_true(rfc3339_utc(r->changed_at));
    const ns_entity_type *ind = ns_registry_find(&G.reg, "indicator");
    assert_non_null(ind);
    assert_int_equal(r->fields->n_fields, ind->nfields);
    const Napsync__V1__Value *v = field_of(r, "baseline");
    assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE);
    assert_string_equal(v->decimal_value, "1.5");
    v = field_of(r, "baseline_date");
    assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_DATE_VALUE);
    assert_string_equal(v->date_value, "2026-01-31");
    v = field_of(r, "tags");
    assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_SET_VALUE);
    assert_int_equal(v->set_value->n_items, 2);
    assert_string_equal(v->set_value->items[0], "health");
    assert_string_equal(v->set_value->items[1], "water");
    v = field_of(r, "plan_id");
    assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_REF_VALUE);
    assert_string_equal(v->ref_value, A_ACTIVE);
    /* Not in the revision: null, but present. */
    v = field_of(r, "target");
    assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_NULL_VALUE);

    r = p->records[1];
    assert_int_equal(r->version, 2);
    assert_true(r->deleted);
    assert_string_equal(r->changed_by, "bob");
    assert_int_equal(field_of(r, "baseline")->kind_case, NAPSYNC__V1__VALUE__KIND_NULL_VALUE);

    r = p->records[2];
    assert_string_equal(r->entity_type, "plan");
    assert_string_equal(r->id, A_ACTIVE);
    assert_int_equal(r->fields->n_fields, ns_registry_find(&G.reg, "plan")->nfields);
    assert_string_equal(field_of(r, "status")->text_value, "adopted");

    /* From its own cursor: nothing new, the same cursor. */
    char cur[80];
    snprintf(cur, sizeof(cur), "%s", p->next_cursor);
    p = pull_ok(f, &G.alice, cur, &sc, 0);
    assert_int_equal(p->n_records, 0);
    assert_false(p->more);
    assert_string_equal(p->next_cursor, cur);
}

/* A cursor from the future or of another epoch is CURSOR_UNKNOWN (from the
 * query, not fatal); a malformed cursor and bad scopes are refused before
 * any query. */
static void test_cursors_and_requests(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    add_indicators(3, A_ACTIVE, ALICE);
    assert_int_equal(head_seq(), 3);
    scopes sc = one_scope(false, ORG_A);
    char cur[128];

    head_cursor(cur, sizeof(cur), 4);
    assert_int_equal(pull(f, &G.alice, cur, &sc, 0), ERR(CURSOR_UNKNOWN));
    head_cursor(cur, sizeof(cur), INT64_MAX);
    assert_int_equal(pull(f, &G.alice, cur, &sc, 0), ERR(CURSOR_UNKNOWN));
    snprintf(cur, sizeof(cur), "v1.%s.1", NOT_EPOCH);
    assert_int_equal(pull(f, &G.alice, cur, &sc, 0), ERR(CURSOR_UNKNOWN));
    snprintf(cur, sizeof(cur), "v1.%s.0", NOT_EPOCH);
    assert_int_equal(pull(f, &G.alice, cur, &sc, 0), ERR(CURSOR_UNKNOWN));
    /* The head itself and below are fine. */
    head_cursor(cur, sizeof(cur), 3);
    assert_int_equal(pull_ok(f, &G.alice, cur, &sc, 0)->n_records, 0);
    head_cursor(cur, sizeof(cur), 1);
    assert_int_equal(pull_ok(f, &G.alice, cur, &sc, 0)->n_records, 2);
    head_cursor(cur, sizeof(cur), 0);
    assert_int_equal(pull_ok(f, &G.alice, cur, &sc, 0)->n_records, 3);

    char upper[40];
    snprintf(upper, sizeof(upper), "%s", G.epoch);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    const char *bad_tails[] = {
        "01", "", "-1", "1x", "+1", " 1", "99999999999999999999", "9223372036854775808"};
    for (size_t i = 0; i < sizeof(bad_tails) / sizeof(bad_tails[0]); i++) {
        snprintf(cur, sizeof(cur), "v1.%s.%s", G.epoch, bad_tails[i]);
        assert_int_equal(pull_refused(f, &G.alice, cur, &sc), ERR(INVALID_ARGUMENT));
    }
    /* Around the epoch: what comes before it and what after. */
    const char *bad_around[][2] = {{"v2.", ".1"}, {"v1.", "1"},   {"v1..", ".1"},
                                   {"V1.", ".1"}, {"v1.", ".1."}, {" v1.", ".1"}};
    for (size_t i = 0; i < sizeof(bad_around) / sizeof(bad_around[0]); i++) {
        snprintf(cur, sizeof(cur), "%s%s%s", bad_around[i][0], G.epoch, bad_around[i][1]);
        assert_int_equal(pull_refused(f, &G.alice, cur, &sc), ERR(INVALID_ARGUMENT));
    }
    snprintf(cur, sizeof(cur), "v1.%s.1", upper);
    assert_int_equal(pull_refused(f, &G.alice, cur, &sc), ERR(INVALID_ARGUMENT));
    snprintf(cur, sizeof(cur), "v1.%.35s.1", G.epoch);
    assert_int_equal(pull_refused(f, &G.alice, cur, &sc), ERR(INVALID_ARGUMENT));
    char longc[200];
    memset(longc, '1', sizeof(longc) - 1);
    longc[sizeof(longc) - 1] = '\0';
    memcpy(longc, cur, strlen(cur));
    assert_int_equal(pull_refused(f, &G.alice, longc, &sc), ERR(INVALID_ARGUMENT));

    /* Scopes: at least one, at most 64, UUIDs, a kind. */
    scopes none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(pull_refused(f, &G.alice, "", &none), ERR(INVALID_ARGUMENT));
    scopes many;
    memset(&many, 0, sizeof(many));
    for (int i = 0; i < NS_FEED_MAX_SCOPES; i++)
        scope_add(&many, false, ORG_A);
    assert_int_equal(pull_ok(f, &G.alice, "", &many, 0)->n_records, 3);
    scope_add(&many, true, A_ACTIVE);
    assert_int_equal(pull_refused(f, &G.alice, "", &many), ERR(INVALID_ARGUMENT));
    const char *bad_ids[] = {"",
                             "not-a-uuid",
                             "aaaa0000-0000-4000-8000-00000000000",
                             "aaaa0000-0000-4000-8000-0000000000011",
                             "aaaa0000x0000-4000-8000-000000000001",
                             "{aaaa0000-0000-4000-8000-000000000001}",
                             "aaaa0000-0000-4000-8000-00000000000g"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        scopes b = one_scope(i % 2 == 0, bad_ids[i]);
        assert_int_equal(pull_refused(f, &G.alice, "", &b), ERR(INVALID_ARGUMENT));
    }
    scopes unset = one_scope(true, A_ACTIVE);
    unset.s[0].kind_case = NAPSYNC__V1__SCOPE__KIND__NOT_SET;
    assert_int_equal(pull_refused(f, &G.alice, "", &unset), ERR(INVALID_ARGUMENT));
    /* Nothing is called back for a refused request. */
    fx_idle(f, 50);
    assert_int_equal(f->pull.calls, 0);
    /* Upper-case scope ids are UUIDs too. */
    scopes upper_plan = one_scope(true, "AAAA0000-0000-4000-8000-000000000002");
    assert_int_equal(pull_ok(f, &G.alice, "", &upper_plan, 0)->n_records, 3);
}

/* Scopes resolve to readable plans: an organisation's own plans, and other
 * organisations' plans that are not drafts; a named unreadable (or
 * unknown) plan is refused. */
static void test_scopes_and_readability(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    add_indicators(1, A_DRAFT, ALICE);  /* seq 1 */
    add_indicators(2, A_ACTIVE, ALICE); /* 2-3 */
    add_indicators(3, B_DRAFT, BOB);    /* 4-6 */
    add_indicators(4, B_ACTIVE, BOB);   /* 7-10 */
    add_indicators(1, A_ACTIVE, BOB);   /* 11 */
    add_indicators(1, B_DRAFT, BOB);    /* 12 */

    struct {
        const ns_identity_info *who;
        bool plan;
        const char *id;
        const char *tenants; /* NULL: PERMISSION_DENIED */
    } cases[] = {
        {&G.alice, false, ORG_A, "{" A_DRAFT "," A_ACTIVE "}"},
        {&G.alice, false, ORG_B, "{" B_ACTIVE "}"},
        {&G.alice, true, A_DRAFT, "{" A_DRAFT "}"},
        {&G.alice, true, B_ACTIVE, "{" B_ACTIVE "}"},
        {&G.alice, true, B_DRAFT, NULL},
        {&G.alice, true, NO_PLAN, NULL},
        {&G.alice, false, NO_PLAN, "{}"}, /* an organisation without plans */
        {&G.bob, false, ORG_A, "{" A_ACTIVE "}"},
        {&G.bob, false, ORG_B, "{" B_DRAFT "," B_ACTIVE "}"},
        {&G.bob, true, A_DRAFT, NULL},
        {&G.bob, true, B_DRAFT, "{" B_DRAFT "}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        scopes sc = one_scope(cases[i].plan, cases[i].id);
        if (cases[i].tenants == NULL) {
            assert_int_equal(pull(f, cases[i].who, "", &sc, 0), ERR(PERMISSION_DENIED));
            assert_non_null(strstr(f->pull.msg, cases[i].id));
            continue;
        }
        id_list want = {0}, seen = {0};
        truth(G.pgdb.pg, cases[i].tenants, &want);
        char cur[80] = "";
        pull_all(f, cases[i].who, cur, sizeof(cur), &sc, 0, NS_FEED_DEFAULT_PAGE_SIZE, &seen);
        assert_same_ids(&seen, &want);
        /* The last page lists the readable plans in scope, sorted. */
        assert_tenants(f->pull.pages[0], cases[i].tenants);
        /* The cursor moved to the head, past changes outside the scope. */
        char head[80];
        head_cursor(head, sizeof(head), 12);
        assert_string_equal(cur, head);
        ids_free(&want);
        ids_free(&seen);
    }

    /* Several scopes: one feed order; a denied plan among them refuses all. */
    scopes both = one_scope(false, ORG_A);
    scope_add(&both, false, ORG_B);
    id_list want = {0}, seen = {0};
    truth(G.pgdb.pg, "{" A_DRAFT "," A_ACTIVE "," B_ACTIVE "}", &want);
    char cur[80] = "";
    pull_all(f, &G.alice, cur, sizeof(cur), &both, 0, 500, &seen);
    assert_same_ids(&seen, &want);
    assert_tenants(f->pull.pages[0], "{" A_DRAFT "," A_ACTIVE "," B_ACTIVE "}");
    ids_free(&want);
    ids_free(&seen);
    scope_add(&both, true, B_DRAFT);
    assert_int_equal(pull(f, &G.alice, "", &both, 0), ERR(PERMISSION_DENIED));

    /* Scopes are resolved in every page: a plan adopted later is in. */
    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE plans SET status = 'adopted' WHERE id = '" B_DRAFT "'", 0,
                    NULL);
    scopes orgb = one_scope(false, ORG_B);
    truth(G.pgdb.pg, "{" B_DRAFT "," B_ACTIVE "}", &want);
    cur[0] = '\0';
    pull_all(f, &G.alice, cur, sizeof(cur), &orgb, 0, 500, &seen);
    assert_tenants(f->pull.pages[0], "{" B_DRAFT "," B_ACTIVE "}");
    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE plans SET status = 'draft' WHERE id = '" B_DRAFT "'", 0,
                    NULL);
    assert_same_ids(&seen, &want);
    /* A draft again: gone from the next page's set (its records were
     * pulled above: the client purges them by this set). */
    assert_tenants(pull_ok(f, &G.alice, cur, &orgb, 0), "{" B_ACTIVE "}");
    ids_free(&want);
    ids_free(&seen);
}

/* A backlog of 20 000 changes in scope (between changes out of it) is read
 * in pages of 500: every change exactly once, in feed order, 500 per page
 * but the last, and "more" on every page but the last. */
static void test_paging_backlog(void **state)
{
    /* Room for 5000 records a page: the record cap is what is tested here. */
    ns_feed_options o = {.max_page_bytes = 16u << 20};
    fx *f = *state = fx_new(G.pgdb.conninfo, &o);
    for (int i = 0; i < 20; i++) {
        add_indicators(1000, A_ACTIVE, ALICE);
        add_indicators(37, B_DRAFT, BOB);
    }
    id_list want = {0}, seen = {0};
    truth(G.pgdb.pg, "{" A_DRAFT "," A_ACTIVE "}", &want);
    assert_int_equal(want.n, 20000);

    scopes sc = one_scope(false, ORG_A);
    char cur[80] = "";
    size_t pages = 0;
    for (;;) {
        const Napsync__V1__ChangePage *p = pull_ok(f, &G.alice, cur, &sc, 500);
        pages++;
        if (p->more)
            assert_int_equal(p->n_records, 500);
        for (size_t i = 0; i < p->n_records; i++)
            ids_add(&seen, p->records[i]->id, p->records[i]->version);
        snprintf(cur, sizeof(cur), "%s", p->next_cursor);
        if (!p->more)
            break;
    }
    assert_int_equal(pages, 40);
    assert_same_ids(&seen, &want);
    char head[80];
    head_cursor(head, sizeof(head), head_seq());
    assert_string_equal(cur, head);
    ids_free(&seen);

    /* Page sizes: 0 is the default, anything above the maximum is capped. */
    const Napsync__V1__ChangePage *p = pull_ok(f, &G.alice, "", &sc, 0);
    assert_int_equal(p->n_records, NS_FEED_DEFAULT_PAGE_SIZE);
    assert_true(p->more);
    p = pull_ok(f, &G.alice, "", &sc, 1000000);
    assert_int_equal(p->n_records, NS_FEED_MAX_PAGE_SIZE);
    assert_true(p->more);
    p = pull_ok(f, &G.alice, "", &sc, 1);
    assert_int_equal(p->n_records, 1);
    assert_string_equal(p->records[0]->id, strtok(want.ids[0], "/"));
    ids_free(&want);
}

/* Pages are also cut by size, so that one always fits in a frame. */
static void test_page_bytes(void **state)
{
    ns_feed_options o = {.max_page_bytes = 2048};
    fx *f = *state = fx_new(G.pgdb.conninfo, &o);
    add_indicators(60, A_ACTIVE, ALICE);
    id_list want = {0}, seen = {0};
    truth(G.pgdb.pg, "{" A_ACTIVE "}", &want);
    scopes sc = one_scope(true, A_ACTIVE);
    char cur[80] = "";
    size_t pages = 0;
    for (;;) {
        const Napsync__V1__ChangePage *p = pull_ok(f, &G.alice, cur, &sc, 500);
        pages++;
        assert_true(f->pull.packed[0] <= 2048);
        assert_true(p->n_records > 0 || !p->more);
        for (size_t i = 0; i < p->n_records; i++)
            ids_add(&seen, p->records[i]->id, p->records[i]->version);
        snprintf(cur, sizeof(cur), "%s", p->next_cursor);
        if (!p->more)
            break;
    }
    assert_true(pages > 3);
    assert_same_ids(&seen, &want);
    ids_free(&want);
    ids_free(&seen);
}

/* ---- tests: gap-freedom ---------------------------------------------------------------------- */

/* Pulls once from r->cursor and appends what comes. */
static void reader_pull_once(reader *r)
{
    scopes sc = one_scope(true, r->plan);
    const Napsync__V1__ChangePage *p = pull_ok(r->f, r->who, r->cursor, &sc, r->page_size);
    for (size_t i = 0; i < p->n_records; i++)
        ids_add(&r->seen, p->records[i]->id, p->records[i]->version);
    snprintf(r->cursor, sizeof(r->cursor), "%s", p->next_cursor);
}

/* Waits (bounded) for an asynchronous query on c to finish; true if it did. */
static bool query_done_within(PGconn *c, int ms)
{
    for (int waited = 0; waited <= ms; waited += 5) {
        assert_int_equal(PQconsumeInput(c), 1);
        if (!PQisBusy(c))
            return true;
        usleep(5000);
    }
    return false;
}

/* Drains every result of c's asynchronous query; all must succeed. */
static void drain_ok(PGconn *c)
{
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            fail_msg("writer 2: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
}

/* Writer 1 takes its seq and holds it; writer 2 appends (and, unless the
 * lock stops it, commits); the reader pulls repeatedly meanwhile; then
 * writer 1 commits, writer 2 finishes, the reader catches up. Returns the
 * number of changes the reader missed. */
static size_t interleave(fx *f, const char *conninfo, PGconn *own, append_mode mode)
{
    PGconn *w1 = nst_pgt_connect(conninfo), *w2 = nst_pgt_connect(conninfo);
    assert_non_null(w1);
    assert_non_null(w2);
    reader *r = &f->rd;
    memset(r, 0, sizeof(*r));
    r->f = f;
    r->who = &G.alice;
    r->plan = A_ACTIVE;
    r->page_size = 100;

    reader_pull_once(r); /* the cursor at the head before anything */
    assert_int_equal(r->seen.n, 0);

    char *j1 = indicators(w1, 1, A_ACTIVE, ALICE);
    char *j2 = indicators(w2, 1, A_ACTIVE, ALICE);
    begin_changes(w1, j1, 1, mode); /* holds seq 1 */

    /* Writer 2's whole transaction, sent without waiting. */
    char *lit = PQescapeLiteral(w2, j2, strlen(j2));
    assert_non_null(lit);
    const char *append = mode == APPEND_NAIVE ? append_naive_sql : append_sql;
    size_t cap = strlen(revisions_sql) + strlen(append) + 2 * strlen(lit) + 256;
    char *sql = malloc(cap), *rev = malloc(cap), *app = malloc(cap);
    assert_non_null(sql);
    assert_non_null(rev);
    assert_non_null(app);
    /* Parameters spelled out: a multi-statement query takes none. */
    const char *dollar1 = strstr(revisions_sql, "$1");
    snprintf(rev, cap, "%.*s%s%s", (int)(dollar1 - revisions_sql), revisions_sql, lit, dollar1 + 2);
    size_t o = 0;
    for (const char *s = append; *s; s++) {
        if (s[0] == '$' && s[1] == '1') {
            o += (size_t)snprintf(app + o, cap - o, "%s", lit);
            s++;
        } else if (s[0] == '$' && s[1] == '2') {
            app[o++] = '1';
            s++;
        } else {
            app[o++] = *s;
        }
    }
    app[o] = '\0';
    snprintf(sql, cap, "BEGIN; %s; %s; COMMIT", rev, app);
    assert_int_equal(PQsendQuery(w2, sql), 1);
    bool w2_done = query_done_within(w2, 300);
    /* The head lock is what keeps writer 2 from committing first. */
    assert_true(mode == APPEND_NAIVE ? w2_done : !w2_done);

    for (int i = 0; i < 5; i++) {
        reader_pull_once(r);
        fx_idle(f, 10);
    }
    size_t seen_early = r->seen.n;

    nst_pgt_exec_ok(w1, "COMMIT", 0, NULL);
    assert_true(query_done_within(w2, 10000));
    drain_ok(w2);
    for (int i = 0; i < 3; i++)
        reader_pull_once(r);

    id_list want = {0};
    truth(own, "{" A_ACTIVE "}", &want);
    assert_int_equal(want.n, 2);
    size_t missed = 0;
    for (size_t i = 0; i < want.n; i++) {
        bool found = false;
        for (size_t k = 0; k < r->seen.n; k++)
            found = found || strcmp(want.ids[i], r->seen.ids[k]) == 0;
        missed += !found;
    }
    if (mode == APPEND_NAIVE) {
        /* Writer 2's change (seq 2) was visible while seq 1 was not. */
        assert_int_equal(seen_early, 1);
    } else {
        assert_int_equal(seen_early, 0);
        assert_same_ids(&r->seen, &want);
    }
    ids_free(&want);
    PQfreemem(lit);
    free(sql);
    free(rev);
    free(app);
    free(j1);
    free(j2);
    PQfinish(w1);
    PQfinish(w2);
    return missed;
}

static void test_gap_interleaved(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    assert_int_equal(interleave(f, G.pgdb.conninfo, G.pgdb.pg, APPEND_LOCKED), 0);
}

/* The control: the same interleaving and the same reader over a plain
 * sequence skip writer 1's change for good. */
static void test_gap_control_naive_sequence_skips(void **state)
{
    fx *f = *state = fx_new(G.naive.conninfo, NULL);
    assert_int_equal(interleave(f, G.naive.conninfo, G.naive.pg, APPEND_NAIVE), 1);
}

#define WRITERS        4
#define TXNS_PER_WRITE 25

typedef struct {
    int id;
    atomic_int *done;
    int failed;
} writer_arg;

/* Transactions of 1-3 changes that hold their seq (and the head lock) for
 * a random while before COMMIT, sometimes after a pause before the append,
 * so that the reader's pulls fall in every phase. */
static void *writer_main(void *p)
{
    writer_arg *w = p;
    PGconn *c = nst_pgt_connect(G.pgdb.conninfo);
    unsigned seed = 0x5eed0000u + (unsigned)w->id;
    if (c == NULL)
        w->failed = 1;
    for (int t = 0; t < TXNS_PER_WRITE && !w->failed; t++) {
        int n = 1 + (int)(rand_r(&seed) % 3);
        char num[16], sleep_before[32], sleep_after[32];
        snprintf(num, sizeof(num), "%d", n);
        snprintf(sleep_before, sizeof(sleep_before), "SELECT pg_sleep(%u / 1000.0)",
                 rand_r(&seed) % 8);
        snprintf(sleep_after, sizeof(sleep_after), "SELECT pg_sleep(%u / 1000.0)",
                 rand_r(&seed) % 25);
        const char *v[3] = {A_ACTIVE, ALICE, num};
        PGresult *r = PQexecParams(c, indicators_sql, 3, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            w->failed = 1;
            PQclear(r);
            break;
        }
        const char *jv[2] = {PQgetvalue(r, 0, 0), num};
        const char *steps[] = {"BEGIN",    sleep_before, revisions_sql,
                               append_sql, sleep_after,  "COMMIT"};
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]) && !w->failed; s++) {
            bool params = steps[s] == revisions_sql || steps[s] == append_sql;
            PGresult *x = PQexecParams(c, steps[s], params ? (steps[s] == append_sql ? 2 : 1) : 0,
                                       NULL, params ? jv : NULL, NULL, NULL, 0);
            ExecStatusType st = PQresultStatus(x);
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                fprintf(stderr, "writer %d: %s", w->id, PQresultErrorMessage(x));
                w->failed = 1;
            }
            PQclear(x);
        }
        PQclear(r);
    }
    PQfinish(c);
    atomic_fetch_add(w->done, 1);
    return NULL;
}

static void on_reader_page(int code, const char *msg, const Napsync__V1__ChangePage *page,
                           void *ud);

static void reader_next(reader *r)
{
    scopes sc = one_scope(true, r->plan);
    Napsync__V1__Pull req = NAPSYNC__V1__PULL__INIT;
    req.cursor = r->cursor;
    req.n_scopes = sc.n;
    req.scopes = scope_ptrs(&sc);
    req.page_size = r->page_size;
    /* Writers all done before this pull starts: its snapshot has every change. */
    r->final_round = atomic_load(r->stop) == WRITERS;
    char err[256];
    if (ns_feed_pull(r->f->feed, r->who, &req, on_reader_page, r, err, sizeof(err)) != 0) {
        fprintf(stderr, "reader: %s\n", err);
        r->errors++;
        r->finished = true;
    }
}

static void on_reader_page(int code, const char *msg, const Napsync__V1__ChangePage *page, void *ud)
{
    reader *r = ud;
    r->pulls++;
    if (code != 0) {
        fprintf(stderr, "reader: %d %s\n", code, msg);
        r->errors++;
        r->finished = true;
        return;
    }
    for (size_t i = 0; i < page->n_records; i++)
        ids_add(&r->seen, page->records[i]->id, page->records[i]->version);
    snprintf(r->cursor, sizeof(r->cursor), "%s", page->next_cursor);
    if (r->final_round && !page->more) {
        r->finished = true;
        return;
    }
    reader_next(r);
}

static bool reader_finished(void *arg)
{
    return ((reader *)arg)->finished;
}

/* Four writers with random holds between append and commit, and a reader
 * pulling back to back in small pages the whole time: the reader sees
 * every change once, in feed order. */
static void test_gap_concurrent_writers(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    atomic_int done = 0;
    reader *r = &f->rd;
    memset(r, 0, sizeof(*r));
    r->f = f;
    r->who = &G.alice;
    r->plan = A_ACTIVE;
    r->page_size = 7;
    r->stop = &done;

    pthread_t th[WRITERS];
    writer_arg wa[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        wa[i] = (writer_arg){.id = i, .done = &done};
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &wa[i]), 0);
    }
    reader_next(r);
    bool ok = fx_wait(f, reader_finished, r, 120000);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    assert_true(ok);
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(wa[i].failed, 0);
    assert_int_equal(r->errors, 0);
    id_list want = {0};
    truth(G.pgdb.pg, "{" A_ACTIVE "}", &want);
    assert_true(want.n >= WRITERS * TXNS_PER_WRITE);
    assert_same_ids(&r->seen, &want);
    /* The reader did run while the writers did. */
    print_message("concurrent writers: %zu changes, %d pulls\n", want.n, r->pulls);
    assert_true(r->pulls > 20);
    ids_free(&want);
}

/* ---- tests: Subscribe ----------------------------------------------------------------------- */

static size_t page_records(const got *g, size_t from)
{
    size_t n = 0;
    for (size_t i = from; i < g->npages; i++)
        n += g->pages[i]->n_records;
    return n;
}

/* Catch-up pages while more, then one page per change in scope as it
 * commits; nothing for changes outside the scopes. */
static void test_subscribe_catch_up_and_live(void **state)
{
    ns_feed_options o = {.default_page_size = 100};
    fx *f = *state = fx_new(G.pgdb.conninfo, &o);
    add_indicators(250, A_ACTIVE, ALICE);
    add_indicators(5, B_DRAFT, BOB);
    got *g = &f->subs[0];
    scopes sc = one_scope(false, ORG_A);
    subscribe(f, g, &G.alice, "", &sc);
    wait_pages(f, g, 3);
    fx_idle(f, 100);
    assert_int_equal(g->npages, 3);
    assert_int_equal(g->pages[0]->n_records, 100);
    assert_true(g->pages[0]->more);
    assert_int_equal(g->pages[1]->n_records, 100);
    assert_true(g->pages[1]->more);
    assert_int_equal(g->pages[2]->n_records, 50);
    assert_false(g->pages[2]->more);
    char head[80];
    head_cursor(head, sizeof(head), 255);
    assert_string_equal(g->pages[2]->next_cursor, head);

    add_indicators(2, A_DRAFT, ALICE);
    wait_pages(f, g, 4);
    assert_int_equal(g->pages[3]->n_records, 2);
    assert_string_equal(g->pages[3]->records[0]->tenant_id, A_DRAFT);
    head_cursor(head, sizeof(head), 257);
    assert_string_equal(g->pages[3]->next_cursor, head);

    /* Outside the scopes: no page. */
    add_indicators(3, B_ACTIVE, BOB);
    add_indicators(3, B_DRAFT, BOB);
    fx_idle(f, 300);
    assert_int_equal(g->npages, 4);

    add_indicators(1, A_ACTIVE, BOB);
    wait_pages(f, g, 5);
    assert_int_equal(g->pages[4]->n_records, 1);
    assert_string_equal(g->pages[4]->records[0]->changed_by, "bob");
    head_cursor(head, sizeof(head), 264);
    assert_string_equal(g->pages[4]->next_cursor, head);

    /* All told: every change of the scope once, in order. */
    id_list want = {0}, seen = {0};
    truth(G.pgdb.pg, "{" A_DRAFT "," A_ACTIVE "}", &want);
    for (size_t i = 0; i < g->npages; i++)
        for (size_t k = 0; k < g->pages[i]->n_records; k++)
            ids_add(&seen, g->pages[i]->records[k]->id, g->pages[i]->records[k]->version);
    assert_same_ids(&seen, &want);
    assert_int_equal(g->code, 0);
    ids_free(&want);
    ids_free(&seen);
}

#define PAIRS 60

typedef struct {
    atomic_size_t delivered; /* records the subscriber has, as the loop last saw */
    atomic_int finished;
    int failed;
} burst_arg;

static int burst_commit(PGconn *c)
{
    const char *v[3] = {A_ACTIVE, ALICE, "1"};
    PGresult *r = PQexecParams(c, indicators_sql, 3, NULL, v, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
    const char *jv[2] = {rc == 0 ? PQgetvalue(r, 0, 0) : "", "1"};
    const char *steps[] = {"BEGIN", revisions_sql, append_sql, "COMMIT"};
    for (int s = 0; s < 4 && rc == 0; s++) {
        int np = s == 1 ? 1 : s == 2 ? 2 : 0;
        PGresult *x = PQexecParams(c, steps[s], np, NULL, np ? jv : NULL, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(x);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            rc = -1;
        PQclear(x);
    }
    PQclear(r);
    return rc;
}

/* Pairs of commits, the second a random moment after the first, so that
 * it often lands while the subscriber's query for the first is running;
 * then a wait until both have been delivered (3 s at most). */
static void *burst_main(void *p)
{
    burst_arg *b = p;
    PGconn *c = nst_pgt_connect(G.pgdb.conninfo);
    unsigned seed = 0xb0057u;
    if (c == NULL)
        b->failed = 1;
    for (size_t k = 0; k < PAIRS && !b->failed; k++) {
        if (burst_commit(c) != 0) {
            b->failed = 1;
            break;
        }
        usleep(rand_r(&seed) % 2000);
        if (burst_commit(c) != 0) {
            b->failed = 1;
            break;
        }
        int waited = 0;
        while (atomic_load(&b->delivered) < 2 * (k + 1) && waited < 3000) {
            usleep(1000);
            waited++;
        }
        if (atomic_load(&b->delivered) < 2 * (k + 1)) {
            fprintf(stderr, "test_feed: pair %zu: %zu of %zu changes delivered\n", k,
                    atomic_load(&b->delivered), 2 * (k + 1));
            b->failed = 2;
        }
    }
    PQfinish(c);
    atomic_store(&b->finished, 1);
    return NULL;
}

typedef struct {
    got *g;
    burst_arg *b;
} burst_watch;

static bool burst_over(void *arg)
{
    burst_watch *w = arg;
    atomic_store(&w->b->delivered, page_records(w->g, 0));
    return atomic_load(&w->b->finished) != 0;
}

/* Changes that commit while the subscriber's query for an earlier one is
 * running: their wake-ups are not lost (one more query follows the one in
 * flight), and every change arrives once, in order. */
static void test_subscribe_wakeup_during_query(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    got *g = &f->subs[0];
    scopes sc = one_scope(true, A_ACTIVE);
    subscribe(f, g, &G.alice, "", &sc);
    wait_pages(f, g, 1);
    burst_arg *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, burst_main, b), 0);
    burst_watch w = {g, b};
    f->stall_us = 3000;
    bool ok = fx_wait(f, burst_over, &w, 300000);
    f->stall_us = 0;
    pthread_join(th, NULL);
    int failed = b->failed;
    free(b);
    assert_true(ok);
    assert_int_equal(failed, 0);
    id_list want = {0}, seen = {0};
    truth(G.pgdb.pg, "{" A_ACTIVE "}", &want);
    assert_int_equal(want.n, 2 * PAIRS);
    for (size_t i = 0; i < g->npages; i++)
        for (size_t k = 0; k < g->pages[i]->n_records; k++)
            ids_add(&seen, g->pages[i]->records[k]->id, g->pages[i]->records[k]->version);
    assert_same_ids(&seen, &want);
    /* The acknowledgement, then only pages with records. */
    for (size_t i = 1; i < g->npages; i++)
        assert_true(g->pages[i]->n_records > 0);
    ids_free(&want);
    ids_free(&seen);
}

/* A subscriber already at the head gets one empty page (the
 * acknowledgement with the cursor), then only pages with records. */
static void test_subscribe_at_head(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    add_indicators(4, A_ACTIVE, ALICE);
    got *g = &f->subs[0];
    scopes sc = one_scope(true, A_ACTIVE);
    char cur[80];
    head_cursor(cur, sizeof(cur), 4);
    subscribe(f, g, &G.alice, cur, &sc);
    wait_pages(f, g, 1);
    assert_int_equal(g->pages[0]->n_records, 0);
    assert_false(g->pages[0]->more);
    assert_string_equal(g->pages[0]->next_cursor, cur);
    add_indicators(1, A_ACTIVE, ALICE);
    wait_pages(f, g, 2);
    assert_int_equal(g->pages[1]->n_records, 1);
}

/* A change committed without a NOTIFY is not seen until the listener
 * reconnects: its NULL wake-up makes every subscriber look. */
static void test_subscribe_null_wakeup(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    got *g = &f->subs[0];
    scopes sc = one_scope(false, ORG_A);
    subscribe(f, g, &G.alice, "", &sc);
    wait_pages(f, g, 1);
    fx_idle(f, 200); /* the listener's first NULL wake-up has come and gone */
    size_t before = g->npages;

    char *json = indicators(G.pgdb.pg, 2, A_ACTIVE, ALICE);
    commit_changes(G.pgdb.pg, json, 2, APPEND_SILENT);
    free(json);
    fx_idle(f, 300);
    assert_int_equal(g->npages, before);

    /* Cut the LISTEN connection: the pool's own connections stay. */
    assert_int_equal(exec_int(G.pgdb.pg,
                              "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND query LIKE 'LISTEN %'",
                              0, NULL),
                     1);
    wait_pages(f, g, before + 1);
    assert_int_equal(g->pages[before]->n_records, 2);
    assert_int_equal(g->code, 0);
}

/* A subscriber whose tenant set changes gets a page for it, with no
 * records: a plan adopted, then a draft again (the statuses change
 * without a feed row of the scope; a change elsewhere wakes the
 * subscriber). A wake-up that changes nothing delivers nothing. */
static void test_subscribe_tenant_set(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    add_indicators(2, B_ACTIVE, BOB);
    got *g = &f->subs[0];
    scopes sc = one_scope(false, ORG_B);
    subscribe(f, g, &G.alice, "", &sc);
    wait_pages(f, g, 1);
    assert_int_equal(g->pages[0]->n_records, 2);
    assert_tenants(g->pages[0], "{" B_ACTIVE "}");

    add_indicators(1, A_ACTIVE, ALICE); /* out of scope, same set */
    fx_idle(f, 300);
    assert_int_equal(g->npages, 1);

    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE plans SET status = 'adopted' WHERE id = '" B_DRAFT "'", 0,
                    NULL);
    add_indicators(1, A_ACTIVE, ALICE);
    wait_pages(f, g, 2);
    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE plans SET status = 'draft' WHERE id = '" B_DRAFT "'", 0,
                    NULL);
    assert_int_equal(g->pages[1]->n_records, 0);
    assert_false(g->pages[1]->more);
    assert_tenants(g->pages[1], "{" B_DRAFT "," B_ACTIVE "}");
    char head[80];
    head_cursor(head, sizeof(head), 4);
    assert_string_equal(g->pages[1]->next_cursor, head);

    add_indicators(1, A_ACTIVE, ALICE);
    wait_pages(f, g, 3);
    assert_int_equal(g->pages[2]->n_records, 0);
    assert_tenants(g->pages[2], "{" B_ACTIVE "}");
    fx_idle(f, 200);
    assert_int_equal(g->npages, 3);
    assert_int_equal(g->code, 0);
}

/* After ns_feed_unsubscribe the callback is never called again: with its
 * first query in flight, once caught up, and from inside the callback. */
static void test_unsubscribe(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    add_indicators(3, A_ACTIVE, ALICE);
    scopes sc = one_scope(false, ORG_A);

    got *early = &f->subs[0];
    subscribe(f, early, &G.alice, "", &sc);
    ns_feed_unsubscribe(early->sub); /* its query is in flight */
    early->sub = NULL;

    got *caught = &f->subs[1];
    subscribe(f, caught, &G.alice, "", &sc);
    got *inside = &f->subs[2];
    inside->unsubscribe_in_cb = true;
    subscribe(f, inside, &G.alice, "", &sc);
    got *stays = &f->subs[3];
    subscribe(f, stays, &G.alice, "", &sc);
    wait_pages(f, caught, 1);
    wait_pages(f, inside, 1);
    wait_pages(f, stays, 1);
    ns_feed_unsubscribe(caught->sub);
    caught->sub = NULL;

    add_indicators(2, A_ACTIVE, ALICE);
    wait_pages(f, stays, 2);
    fx_idle(f, 200);
    assert_int_equal(early->calls, 0);
    assert_int_equal(caught->calls, 1);
    assert_int_equal(inside->calls, 1);
    assert_null(inside->sub);
    assert_int_equal(stays->calls, 2);
}

/* Paused, a subscriber gets nothing new (at most the page in flight);
 * resumed, it gets what it missed. */
static void test_pause_resume(void **state)
{
    ns_feed_options o = {.default_page_size = 10};
    fx *f = *state = fx_new(G.pgdb.conninfo, &o);
    add_indicators(35, A_ACTIVE, ALICE);
    got *g = &f->subs[0];
    g->pause_in_cb = true; /* pauses during catch-up, at the first page */
    scopes sc = one_scope(true, A_ACTIVE);
    subscribe(f, g, &G.alice, "", &sc);
    wait_pages(f, g, 1);
    fx_idle(f, 200);
    assert_int_equal(g->npages, 1);
    assert_true(g->pages[0]->more);

    g->pause_in_cb = false;
    ns_feed_sub_resume(g->sub);
    wait_pages(f, g, 4);
    assert_int_equal(page_records(g, 0), 35);
    assert_false(g->pages[3]->more);

    ns_feed_sub_pause(g->sub);
    ns_feed_sub_pause(g->sub); /* idempotent */
    add_indicators(2, A_ACTIVE, ALICE);
    fx_idle(f, 300);
    assert_int_equal(g->npages, 4);
    ns_feed_sub_resume(g->sub);
    wait_pages(f, g, 5);
    assert_int_equal(g->pages[4]->n_records, 2);
}

/* Many subscribers, few query slots: every one of them gets the change. */
static void test_many_subscribers(void **state)
{
    ns_feed_options o = {.max_sub_queries = 2};
    fx *f = *state = fx_new(G.pgdb.conninfo, &o);
    size_t n = sizeof(f->subs) / sizeof(f->subs[0]);
    /* Both organisations' plans, as each principal may read them. */
    scopes both = one_scope(false, ORG_A);
    scope_add(&both, false, ORG_B);
    for (size_t i = 0; i < n; i++)
        subscribe(f, &f->subs[i], i % 2 ? &G.bob : &G.alice, "", &both);
    for (size_t i = 0; i < n; i++)
        wait_pages(f, &f->subs[i], 1);
    add_indicators(1, A_ACTIVE, ALICE); /* everyone may read it */
    for (size_t i = 0; i < n; i++) {
        wait_pages(f, &f->subs[i], 2);
        assert_int_equal(f->subs[i].pages[1]->n_records, 1);
    }
    add_indicators(1, B_DRAFT, BOB); /* a draft of B: only B's subscribers */
    for (size_t i = 1; i < n; i += 2)
        wait_pages(f, &f->subs[i], 3);
    fx_idle(f, 200);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(f->subs[i].npages, i % 2 ? 3 : 2);
}

/* Rows of any type and fields, committed in one transaction: json is an
 * array of {entity_type, tenant_id, after} (record ids made here). */
static void add_rows(const char *json, int n)
{
    const char *v[1] = {json};
    PGresult *r = nst_pgt_query(
        G.pgdb.pg,
        "SELECT jsonb_agg(x || jsonb_build_object('record_id', gen_random_uuid(), 'version', 1,"
        "                 'principal_id', '" BOB "', 'deleted', false))::text"
        "  FROM jsonb_array_elements($1::jsonb) AS x",
        1, v);
    assert_non_null(r);
    char *rows = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    commit_changes(G.pgdb.pg, rows, n, APPEND_LOCKED);
    free(rows);
}

static bool page_has(const got *g, size_t page, const char *type, const char *field,
                     const char *value)
{
    const Napsync__V1__ChangePage *p = g->pages[page];
    for (size_t i = 0; i < p->n_records; i++) {
        const Napsync__V1__Record *r = p->records[i];
        if (strcmp(r->entity_type, type) != 0)
            continue;
        const Napsync__V1__Value *v = field_of(r, field);
        if (v->kind_case == NAPSYNC__V1__VALUE__KIND_TEXT_VALUE &&
            strcmp(v->text_value, value) == 0)
            return true;
    }
    return false;
}

/* Waits until every subscription has caught up with the newest change (no
 * query of its own left to answer). */
static void wait_settled(fx *f)
{
    ns_feed_stats st;
    for (int i = 0; i < 500; i++) {
        fx_idle(f, 20);
        ns_feed_stats_get(f->feed, &st);
        if (st.behind == 0 && st.head == head_seq())
            return;
    }
    fail_msg("the subscriptions did not settle");
}

/* The shared read (feed.h, "fast path") decides with policy.c's twins of the
 * read rules what each caught-up subscriber gets: a reader who only reads
 * (bob, no role) never gets a report before approval nor a disaggregated
 * value, a subscriber by organisation no draft of another, and of the
 * directory nobody another organisation's device or, without admin, another
 * person's device. */
static void test_subscribe_fast_path_rules(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    got *plan = &f->subs[0], *org = &f->subs[1], *dir = &f->subs[2];
    scopes sp = one_scope(true, A_ACTIVE);
    subscribe(f, plan, &G.bob, "", &sp);
    scopes so = one_scope(false, ORG_A);
    subscribe(f, org, &G.bob, "", &so);
    scopes sd;
    memset(&sd, 0, sizeof(sd));
    napsync__v1__scope__init(&sd.s[0]);
    sd.s[0].kind_case = NAPSYNC__V1__SCOPE__KIND_DIRECTORY;
    sd.s[0].directory = true;
    sd.n = 1;
    subscribe(f, dir, &G.bob, "", &sd);
    wait_pages(f, plan, 1);
    wait_pages(f, org, 1);
    wait_pages(f, dir, 1);
    assert_tenants(org->pages[0], "{" A_ACTIVE "}");
    /* Woken by changes out of their scopes until each has run its own query
     * after a shared read (which gives it fingerprints to compare): the
     * next changes go through the shared read. */
    add_indicators(1, B_ACTIVE, BOB);
    wait_settled(f);
    add_indicators(1, B_ACTIVE, BOB);
    wait_settled(f);
    ns_feed_stats st0;
    ns_feed_stats_get(f->feed, &st0);

    add_rows("["
             "{\"entity_type\": \"indicator_report\", \"tenant_id\": \"" A_ACTIVE "\","
             " \"after\": {\"plan_id\": \"" A_ACTIVE "\", \"status\": \"submitted\"}},"
             "{\"entity_type\": \"report_value\", \"tenant_id\": \"" A_ACTIVE "\","
             " \"after\": {\"plan_id\": \"" A_ACTIVE "\"}},"
             "{\"entity_type\": \"indicator\", \"tenant_id\": \"" A_DRAFT "\","
             " \"after\": {\"plan_id\": \"" A_DRAFT "\", \"code\": \"hidden\"}},"
             "{\"entity_type\": \"device\", \"tenant_id\": \"" NS_DIRECTORY_TENANT "\","
             " \"after\": {\"name\": \"alices\", \"organisation_id\": \"" ORG_A "\","
             "            \"principal_id\": \"" ALICE "\"}},"
             "{\"entity_type\": \"device\", \"tenant_id\": \"" NS_DIRECTORY_TENANT "\","
             " \"after\": {\"name\": \"bobs\", \"organisation_id\": \"" ORG_B "\","
             "            \"principal_id\": \"" BOB "\"}},"
             "{\"entity_type\": \"indicator_report\", \"tenant_id\": \"" A_ACTIVE "\","
             " \"after\": {\"plan_id\": \"" A_ACTIVE "\", \"status\": \"approved\"}}"
             "]",
             6);
    wait_pages(f, plan, 2);
    wait_pages(f, org, 2);
    wait_pages(f, dir, 2);
    fx_idle(f, 300);
    ns_feed_stats st;
    ns_feed_stats_get(f->feed, &st);
    /* All three pages came from one shared read, none from a query of one
     * subscriber. */
    if (st.fast_pages - st0.fast_pages != 3 || st.own_queries != st0.own_queries)
        fail_msg("shared reads %llu, fast pages %llu, own queries %llu; pages %zu %zu %zu",
                 (unsigned long long)(st.shared_reads - st0.shared_reads),
                 (unsigned long long)(st.fast_pages - st0.fast_pages),
                 (unsigned long long)(st.own_queries - st0.own_queries), plan->npages, org->npages,
                 dir->npages);
    for (int k = 0; k < 2; k++) {
        got *g = k == 0 ? plan : org;
        assert_int_equal(g->npages, 2);
        assert_int_equal(g->pages[1]->n_records, 1);
        assert_true(page_has(g, 1, "indicator_report", "status", "approved"));
        assert_true(g->pages[1]->conflicts_unchanged);
        assert_tenants(g->pages[1], "{" A_ACTIVE "}");
    }
    assert_int_equal(dir->npages, 2);
    assert_int_equal(dir->pages[1]->n_records, 1);
    assert_true(page_has(dir, 1, "device", "name", "bobs"));
    assert_int_equal(plan->code, 0);
}

/* A plan that becomes readable or unreadable through the feed (its plan
 * record, as a write makes it) sends the subscribers whose set it may
 * change to their own query: the set is purged and backfilled as before. */
static void test_subscribe_fast_path_plan_change(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    got *g = &f->subs[0];
    scopes sc = one_scope(false, ORG_B);
    subscribe(f, g, &G.alice, "", &sc);
    wait_pages(f, g, 1);
    assert_tenants(g->pages[0], "{" B_ACTIVE "}");
    add_indicators(1, A_ACTIVE, ALICE);
    wait_settled(f);
    add_indicators(1, A_ACTIVE, ALICE);
    wait_settled(f);
    ns_feed_stats st0;
    ns_feed_stats_get(f->feed, &st0);
    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE plans SET status = 'adopted' WHERE id = '" B_DRAFT "'", 0,
                    NULL);
    add_rows("[{\"entity_type\": \"plan\", \"tenant_id\": \"" B_DRAFT "\","
             " \"after\": {\"title\": \"B draft\", \"status\": \"adopted\"}}]",
             1);
    wait_pages(f, g, 2);
    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE plans SET status = 'draft' WHERE id = '" B_DRAFT "'", 0,
                    NULL);
    assert_tenants(g->pages[1], "{" B_DRAFT "," B_ACTIVE "}");
    ns_feed_stats st;
    ns_feed_stats_get(f->feed, &st);
    assert_true(st.own_queries > st0.own_queries);
    add_indicators(1, A_ACTIVE, ALICE);
    wait_pages(f, g, 3);
    assert_tenants(g->pages[2], "{" B_ACTIVE "}");
    assert_int_equal(g->code, 0);
}

/* Errors end a subscription with one last call: a cursor from the future,
 * a plan that is not readable, a named plan that stops being readable. */
static void test_subscribe_errors(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    add_indicators(1, A_ACTIVE, ALICE);
    scopes sc = one_scope(true, A_ACTIVE);
    char cur[80];
    head_cursor(cur, sizeof(cur), 9);
    got *future = &f->subs[0];
    subscribe(f, future, &G.alice, cur, &sc);
    assert_true(fx_wait(f, got_called, future, 10000));
    assert_int_equal(future->code, ERR(CURSOR_UNKNOWN));

    scopes bd = one_scope(true, B_DRAFT);
    got *denied = &f->subs[1];
    subscribe(f, denied, &G.alice, "", &bd);
    assert_true(fx_wait(f, got_called, denied, 10000));
    assert_int_equal(denied->code, ERR(PERMISSION_DENIED));

    got *loses = &f->subs[2];
    subscribe(f, loses, &G.bob, "", &sc);
    wait_pages(f, loses, 1);
    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE plans SET status = 'draft' WHERE id = '" A_ACTIVE "'", 0,
                    NULL);
    add_indicators(1, A_ACTIVE, ALICE);
    bool ended = false;
    for (int i = 0; i < 1000 && !ended; i++) {
        fx_idle(f, 10);
        ended = loses->code != 0;
    }
    nst_pgt_exec_ok(G.pgdb.pg, "UPDATE plans SET status = 'adopted' WHERE id = '" A_ACTIVE "'", 0,
                    NULL);
    assert_true(ended);
    assert_int_equal(loses->code, ERR(PERMISSION_DENIED));
    int calls = loses->calls;

    /* Ended subscriptions are quiet; nothing more comes. */
    add_indicators(1, A_ACTIVE, ALICE);
    fx_idle(f, 300);
    assert_int_equal(future->calls, 1);
    assert_int_equal(denied->calls, 1);
    assert_int_equal(loses->calls, calls);

    /* Refused at once: no subscription, no callback. */
    Napsync__V1__Subscribe req = NAPSYNC__V1__SUBSCRIBE__INIT;
    req.cursor = "v1.x.1";
    req.n_scopes = sc.n;
    req.scopes = scope_ptrs(&sc);
    ns_feed_sub *s = NULL;
    char err[256];
    assert_int_equal(
        ns_feed_subscribe(f->feed, &G.alice, &req, on_page, &f->subs[3], &s, err, sizeof(err)),
        ERR(INVALID_ARGUMENT));
    assert_null(s);
}

/* A Pull and a subscription still waiting when the pool closes are answered. */
static void test_close_with_requests_pending(void **state)
{
    fx *f = *state = fx_new(G.pgdb.conninfo, NULL);
    scopes sc = one_scope(true, A_ACTIVE);
    char err[256];
    assert_int_equal(pull_start(f, &G.alice, "", &sc, 0, err, sizeof(err)), 0);
    got *g = &f->subs[0];
    subscribe(f, g, &G.alice, "", &sc);
    /* Closing the pool answers what is owed before it returns: the Pull
     * hears SHUTTING_DOWN (or its page, had it been quick), and the
     * subscription at most its end; then the feed goes, and nothing leaks. */
    ns_db_close(f->db, on_db_closed, f);
    assert_int_equal(f->pull.calls, 1);
    assert_true(f->pull.code == 0 || f->pull.code == ERR(SHUTTING_DOWN));
    assert_true(g->calls <= 1);
    ns_feed_unsubscribe(g->sub);
    g->sub = NULL;
    ns_feed_close(f->feed);
    uv_close((uv_handle_t *)&f->waiter, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(f->closed);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free_got(&f->pull);
    free_got(g);
    free(f);
    *state = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pull_records, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cursors_and_requests, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_scopes_and_readability, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_paging_backlog, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_page_bytes, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gap_interleaved, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gap_control_naive_sequence_skips, test_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_gap_concurrent_writers, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_catch_up_and_live, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_wakeup_during_query, test_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_at_head, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_null_wakeup, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_tenant_set, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_subscribers, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_errors, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_fast_path_rules, test_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_fast_path_plan_change, test_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_with_requests_pending, test_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("feed", tests, group_setup, group_teardown);
}
