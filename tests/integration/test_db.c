/* Integration tests for daemon/db.c and daemon/migrate.c against a real,
 * private PostgreSQL cluster started with tests/lib/pg.sh (found through
 * NS_SOURCE_DIR, which ctest sets to the source directory). */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "db.h"
#include "migrate.h"

/* ---- the cluster ------------------------------------------------------------ */

static struct {
    char src[PATH_MAX];
    char tmp[PATH_MAX];
    char pgdir[PATH_MAX];
    char host[PATH_MAX];
    char port[16];
    char user[64];
    char conninfo[PATH_MAX + 128]; /* the database the pool tests share */
    bool pg_stopped;
    int ndb;
} G;

static bool path_ok_for_shell(const char *p)
{
    return strchr(p, '\'') == NULL;
}

/* dir + "/" + name, which must fit. */
static bool join(char *out, size_t outlen, const char *dir, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < outlen;
}

/* Runs pg.sh VERB on our cluster; stdout goes to out (may be NULL). */
static int pg_sh(const char *verb, char *out, size_t outlen)
{
    char cmd[3 * PATH_MAX];
    size_t used = 0;

    snprintf(cmd, sizeof cmd, "'%s/tests/lib/pg.sh' %s '%s'", G.src, verb, G.pgdir);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    if (out != NULL && outlen > 0) {
        size_t n;
        while (used + 1 < outlen && (n = fread(out + used, 1, outlen - 1 - used, p)) > 0)
            used += n;
        out[used] = '\0';
    }
    char sink[256];
    while (fread(sink, 1, sizeof sink, p) > 0)
        ;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void env_value(const char *text, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    out[0] = '\0';
    for (const char *l = text; l != NULL && *l != '\0';) {
        const char *nl = strchr(l, '\n');
        size_t len = nl != NULL ? (size_t)(nl - l) : strlen(l);
        if (len > klen && strncmp(l, key, klen) == 0 && l[klen] == '=') {
            snprintf(out, outlen, "%.*s", (int)(len - klen - 1), l + klen + 1);
            return;
        }
        l = nl != NULL ? nl + 1 : NULL;
    }
}

static bool make_conninfo(char *out, size_t outlen, const char *dbname)
{
    int n = snprintf(out, outlen, "host='%s' port=%s user=%s dbname=%s", G.host, G.port, G.user,
                     dbname);
    return n > 0 && (size_t)n < outlen;
}

/* Runs one statement on a short blocking connection; the first value of the
 * result goes to out. Returns 0 on success. */
static int admin_exec(const char *dbname, const char *sql, char *out, size_t outlen)
{
    char ci[sizeof G.conninfo];
    int rc = -1;

    if (!make_conninfo(ci, sizeof ci, dbname))
        return -1;
    PGconn *pg = PQconnectdb(ci);
    if (PQstatus(pg) == CONNECTION_OK) {
        PGresult *res = PQexec(pg, sql);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            rc = 0;
            if (out != NULL && outlen > 0)
                snprintf(out, outlen, "%s",
                         st == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)
                             ? PQgetvalue(res, 0, 0)
                             : "");
        } else {
            fprintf(stderr, "admin_exec(%s): %s", sql, PQerrorMessage(pg));
        }
        PQclear(res);
    } else {
        fprintf(stderr, "admin_exec: %s", PQerrorMessage(pg));
    }
    PQfinish(pg);
    return rc;
}

/* A fresh database; its connection string goes to out. */
static void new_database(char *out, size_t outlen)
{
    char name[32], sql[64];

    snprintf(name, sizeof name, "nst_%d", ++G.ndb);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    assert_int_equal(admin_exec("postgres", sql, NULL, 0), 0);
    assert_true(make_conninfo(out, outlen, name));
}

static int group_setup(void **state)
{
    (void)state;
    const char *src = getenv("NS_SOURCE_DIR");
    char out[4 * PATH_MAX];

    if (src == NULL || *src == '\0') {
        fprintf(stderr, "test_db: set NS_SOURCE_DIR to the source directory\n");
        return -1;
    }
    snprintf(G.src, sizeof G.src, "%s", src);
    snprintf(G.tmp, sizeof G.tmp, "/tmp/napsync-test-db-XXXXXX");
    if (mkdtemp(G.tmp) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    if (!join(G.pgdir, sizeof G.pgdir, G.tmp, "pg"))
        return -1;
    if (!path_ok_for_shell(G.src) || !path_ok_for_shell(G.pgdir)) {
        fprintf(stderr, "test_db: paths with a quote are not supported\n");
        return -1;
    }
    if (pg_sh("start", out, sizeof out) != 0) {
        fprintf(stderr, "test_db: pg.sh start failed\n");
        return -1;
    }
    env_value(out, "PGHOST", G.host, sizeof G.host);
    env_value(out, "PGPORT", G.port, sizeof G.port);
    env_value(out, "PGUSER", G.user, sizeof G.user);
    if (G.host[0] == '\0' || G.port[0] == '\0' || G.user[0] == '\0') {
        fprintf(stderr, "test_db: unexpected pg.sh output:\n%s\n", out);
        return -1;
    }
    if (admin_exec("postgres", "CREATE DATABASE nst_pool", NULL, 0) != 0)
        return -1;
    return make_conninfo(G.conninfo, sizeof G.conninfo, "nst_pool") ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0)
        perror(path);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (G.pgdir[0] != '\0' && pg_sh("stop", NULL, 0) != 0)
        fprintf(stderr, "test_db: pg.sh stop failed\n");
    if (G.tmp[0] != '\0')
        nftw(G.tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- a loop per test ---------------------------------------------------------- */

typedef struct {
    uv_loop_t loop;
    uv_timer_t waiter;
    ns_db *db;
    bool close_called;
    bool closed;
    uint64_t deadline;
    bool (*cond)(void *);
    void *cond_arg;
    int ups, downs; /* on_state reports */
    char down_detail[256];
} fx;

static void on_pool_state(bool up, const char *detail, void *ud)
{
    fx *f = ud;
    if (up) {
        f->ups++;
        return;
    }
    f->downs++;
    snprintf(f->down_detail, sizeof(f->down_detail), "%s", detail);
}

static void on_closed(void *ud)
{
    ((fx *)ud)->closed = true;
}

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL || uv_loop_init(&f->loop) != 0)
        return -1;
    uv_timer_init(&f->loop, &f->waiter);
    f->waiter.data = f;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    int rc = 0;

    if (f->db != NULL && !f->close_called) {
        f->close_called = true;
        ns_db_close(f->db, on_closed, f);
    }
    uv_close((uv_handle_t *)&f->waiter, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    if (f->db != NULL && !f->closed) {
        fprintf(stderr, "fx_teardown: ns_db_close never called done\n");
        rc = -1;
    }
    if (uv_loop_close(&f->loop) != 0) {
        fprintf(stderr, "fx_teardown: handles left on the loop\n");
        rc = -1;
    }
    free(f);
    /* A failed test may leave the cluster stopped; later tests need it. */
    if (G.pg_stopped && pg_sh("start", NULL, 0) == 0)
        G.pg_stopped = false;
    return rc;
}

static void fx_open_ci(fx *f, const char *conninfo, uint32_t pool, uint32_t qlimit,
                       uint32_t qtimeout, uint32_t recon)
{
    ns_db_options o = {
        .conninfo = conninfo,
        .pool_size = pool,
        .queue_limit = qlimit,
        .queue_timeout_ms = qtimeout,
        .reconnect_max_ms = recon,
        .on_state = on_pool_state,
        .state_ud = f,
    };
    assert_int_equal(ns_db_open(&f->loop, &o, &f->db), NS_DB_OK);
    assert_non_null(f->db);
}

static void fx_open(fx *f, uint32_t pool, uint32_t qlimit, uint32_t qtimeout, uint32_t recon)
{
    fx_open_ci(f, G.conninfo, pool, qlimit, qtimeout, recon);
}

static void waiter_cb(uv_timer_t *t)
{
    fx *f = t->data;
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
    uv_timer_start(&f->waiter, waiter_cb, 5, 5);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&f->waiter);
    return cond(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static bool db_up(void *arg)
{
    return ns_db_connected(((fx *)arg)->db);
}

static bool db_down(void *arg)
{
    return !ns_db_connected(((fx *)arg)->db);
}

/* What a query callback saw. Tests keep these (and the other callback
 * targets) static: if an assertion fails while queries are pending, the
 * teardown's ns_db_close still calls back into valid memory. */
typedef struct {
    int calls;
    int order; /* position among completed queries, from 1 */
    ns_db_status st;
    bool had_result;
    int rows, cols;
    char v[4][64];
    bool null[4];
    char sqlstate[8];
    char message[256];
} qres;

static int g_completed;

static void q_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    qres *q = ud;

    q->calls++;
    q->order = ++g_completed;
    q->st = st;
    q->had_result = r != NULL;
    q->rows = ns_db_result_rows(r);
    q->cols = ns_db_result_cols(r);
    for (int i = 0; i < 4; i++) {
        const char *v = ns_db_result_value(r, 0, i);
        q->null[i] = v == NULL;
        snprintf(q->v[i], sizeof q->v[i], "%s", v != NULL ? v : "");
    }
    snprintf(q->sqlstate, sizeof q->sqlstate, "%s", ns_db_result_sqlstate(r));
    snprintf(q->message, sizeof q->message, "%s", ns_db_result_message(r));
}

static bool q_done(void *arg)
{
    return ((qres *)arg)->calls > 0;
}

static void run_query(fx *f, const char *sql, int n, const char *const *vals, qres *q)
{
    memset(q, 0, sizeof *q);
    assert_int_equal(ns_db_query(f->db, sql, n, vals, q_cb, q), NS_DB_OK);
    assert_true(fx_wait(f, q_done, q, 10000));
    assert_int_equal(q->calls, 1);
}

/* ---- pool tests ----------------------------------------------------------- */

static void check_row_values(void **state)
{
    fx *f = *state;
    static qres q;
    const char *vals[] = {"41", "héllo wörld", NULL};
    const char *evil[] = {"'; DROP TABLE x; --"};
    const char *three[] = {"3"};

    fx_open(f, 2, 16, 5000, 1000);
    run_query(f, "SELECT $1::int + 1, $2::text, $3::text IS NULL, $3::text", 3, vals, &q);
    assert_int_equal(q.st, NS_DB_OK);
    assert_true(q.had_result);
    assert_int_equal(q.rows, 1);
    assert_int_equal(q.cols, 4);
    assert_string_equal(q.v[0], "42");
    assert_string_equal(q.v[1], "héllo wörld");
    assert_string_equal(q.v[2], "t");
    assert_true(q.null[3]);
    assert_true(ns_db_connected(f->db));

    run_query(f, "SELECT $1::text", 1, evil, &q);
    assert_int_equal(q.st, NS_DB_OK);
    assert_string_equal(q.v[0], evil[0]);

    run_query(f, "SELECT g, g * 10 FROM generate_series(1, $1::int) AS g", 1, three, &q);
    assert_int_equal(q.st, NS_DB_OK);
    assert_int_equal(q.rows, 3);
    assert_int_equal(q.cols, 2);
    assert_string_equal(q.v[1], "10");
    assert_true(q.null[2]); /* out of range column */

    run_query(f, "CREATE TEMP TABLE t (x int)", 0, NULL, &q);
    assert_int_equal(q.st, NS_DB_OK);
    assert_int_equal(q.rows, 0);
}

typedef struct {
    qres q;
    char out[8];
} range_probe;

static void range_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    range_probe *p = ud;
    q_cb(st, r, &p->q);
    /* Out of range rows and columns, and negative ones, read as NULL. */
    bool all_null = ns_db_result_value(r, 1, 0) == NULL && ns_db_result_value(r, -1, 0) == NULL &&
                    ns_db_result_value(r, 0, -1) == NULL && ns_db_result_value(r, 0, 1) == NULL &&
                    ns_db_result_value(NULL, 0, 0) == NULL;
    snprintf(p->out, sizeof p->out, "%s", all_null ? "ok" : "bad");
}

static void check_value_bounds(void **state)
{
    fx *f = *state;
    static range_probe p;

    memset(&p, 0, sizeof p);
    fx_open(f, 1, 4, 5000, 1000);
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, range_cb, &p), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &p.q, 10000));
    assert_int_equal(p.q.st, NS_DB_OK);
    assert_string_equal(p.out, "ok");
    assert_int_equal(ns_db_result_rows(NULL), 0);
    assert_string_equal(ns_db_result_sqlstate(NULL), "");
}

static void sql_error_keeps_connection(void **state)
{
    fx *f = *state;
    static qres pid1, err, pid2, copy, after;

    memset(&pid1, 0, sizeof pid1);
    memset(&err, 0, sizeof err);
    memset(&pid2, 0, sizeof pid2);
    g_completed = 0;
    fx_open(f, 1, 8, 5000, 1000);
    /* Queued together on one connection: FIFO order is kept. */
    assert_int_equal(ns_db_query(f->db, "SELECT pg_backend_pid()", 0, NULL, q_cb, &pid1), NS_DB_OK);
    assert_int_equal(ns_db_query(f->db, "SELECT 1/0", 0, NULL, q_cb, &err), NS_DB_OK);
    assert_int_equal(ns_db_query(f->db, "SELECT pg_backend_pid()", 0, NULL, q_cb, &pid2), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &pid2, 10000));
    assert_int_equal(pid1.order, 1);
    assert_int_equal(err.order, 2);
    assert_int_equal(pid2.order, 3);

    assert_int_equal(pid1.st, NS_DB_OK);
    assert_int_equal(err.st, NS_DB_QUERY_FAILED);
    assert_true(err.had_result);
    assert_string_equal(err.sqlstate, "22012");
    assert_non_null(strstr(err.message, "division by zero"));
    assert_int_equal(err.rows, 0);
    assert_int_equal(pid2.st, NS_DB_OK);
    /* Same backend: the error did not cost the connection. */
    assert_string_equal(pid1.v[0], pid2.v[0]);

    /* A unique violation gives its own SQLSTATE. */
    run_query(f, "CREATE TEMP TABLE u (x int PRIMARY KEY)", 0, NULL, &after);
    assert_int_equal(after.st, NS_DB_OK);
    const char *one[] = {"1"};
    run_query(f, "INSERT INTO u VALUES ($1::int)", 1, one, &after);
    assert_int_equal(after.st, NS_DB_OK);
    run_query(f, "INSERT INTO u VALUES ($1::int)", 1, one, &after);
    assert_int_equal(after.st, NS_DB_QUERY_FAILED);
    assert_string_equal(after.sqlstate, "23505");

    /* COPY needs a conversation ns_db_query does not offer: refused, and
     * the pool replaces the connection. */
    run_query(f, "COPY (SELECT 1) TO STDOUT", 0, NULL, &copy);
    assert_int_equal(copy.st, NS_DB_INVALID);
    assert_false(copy.had_result);
    assert_true(fx_wait(f, db_up, f, 10000));
    run_query(f, "SELECT 7", 0, NULL, &after);
    assert_int_equal(after.st, NS_DB_OK);
    assert_string_equal(after.v[0], "7");
}

static void queue_full_and_bad_arguments(void **state)
{
    fx *f = *state;
    static qres q1, q2, q3;
    ns_db *sentinel = (ns_db *)&sentinel;
    ns_db *out = sentinel;
    const char *one[] = {"1"};

    memset(&q1, 0, sizeof q1);
    memset(&q2, 0, sizeof q2);
    memset(&q3, 0, sizeof q3);

    /* Bad options: refused, output untouched. */
    ns_db_options o = {
        .conninfo = G.conninfo,
        .pool_size = 0,
        .queue_limit = 1,
        .queue_timeout_ms = 1000,
        .reconnect_max_ms = 1000,
    };
    assert_int_equal(ns_db_open(&f->loop, &o, &out), NS_DB_INVALID);
    o.pool_size = 1;
    o.queue_limit = 0;
    assert_int_equal(ns_db_open(&f->loop, &o, &out), NS_DB_INVALID);
    o.queue_limit = 1;
    o.conninfo = "this is not a connection string";
    assert_int_equal(ns_db_open(&f->loop, &o, &out), NS_DB_INVALID);
    o.conninfo = NULL;
    assert_int_equal(ns_db_open(&f->loop, &o, &out), NS_DB_INVALID);
    assert_ptr_equal(out, sentinel);

    /* Before the loop runs nothing is connected: everything queues. */
    fx_open(f, 1, 2, 5000, 1000);
    assert_false(ns_db_connected(f->db));
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, q_cb, &q1), NS_DB_OK);
    assert_int_equal(ns_db_query(f->db, "SELECT 2", 0, NULL, q_cb, &q2), NS_DB_OK);
    assert_int_equal(ns_db_query(f->db, "SELECT 3", 0, NULL, q_cb, &q3), NS_DB_QUEUE_FULL);

    assert_int_equal(ns_db_query(f->db, NULL, 0, NULL, q_cb, &q3), NS_DB_INVALID);
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, NULL, &q3), NS_DB_INVALID);
    assert_int_equal(ns_db_query(f->db, "SELECT $1", 1, NULL, q_cb, &q3), NS_DB_INVALID);
    assert_int_equal(ns_db_query(f->db, "SELECT 1", -1, one, q_cb, &q3), NS_DB_INVALID);
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 70000, one, q_cb, &q3), NS_DB_INVALID);
    assert_int_equal(ns_db_query(NULL, "SELECT 1", 0, NULL, q_cb, &q3), NS_DB_INVALID);

    assert_true(fx_wait(f, q_done, &q2, 10000));
    assert_int_equal(q1.st, NS_DB_OK);
    assert_string_equal(q1.v[0], "1");
    assert_int_equal(q2.st, NS_DB_OK);
    assert_string_equal(q2.v[0], "2");
    /* Refused queries never call back. */
    assert_int_equal(q3.calls, 0);
    assert_string_equal(ns_db_status_str(NS_DB_QUEUE_FULL), "database queue full");
}

/* A callback that queries again, five times. */
typedef struct {
    fx *f;
    int n;
    int failures;
    char last[16];
} chain;

static void chain_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    chain *c = ud;
    char arg[16];

    if (st != NS_DB_OK || atoi(ns_db_result_value(r, 0, 0)) != c->n) {
        c->failures++;
        return;
    }
    snprintf(c->last, sizeof c->last, "%s", ns_db_result_value(r, 0, 0));
    if (++c->n > 5)
        return;
    snprintf(arg, sizeof arg, "%d", c->n);
    const char *vals[] = {arg};
    if (ns_db_query(c->f->db, "SELECT $1::int", 1, vals, chain_cb, c) != NS_DB_OK)
        c->failures++;
}

static bool chain_done(void *arg)
{
    chain *c = arg;
    return c->n > 5 || c->failures > 0;
}

/* The owner closes the pool from a query callback. */
typedef struct {
    fx *f;
    qres q;
    ns_db_status requery;
} closer;

static void closer_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    closer *c = ud;
    q_cb(st, r, &c->q);
    c->f->close_called = true;
    ns_db_close(c->f->db, on_closed, c->f);
    ns_db_close(c->f->db, on_closed, c->f); /* a second call does nothing */
}

typedef struct {
    qres q;
    ns_db *db;
    ns_db_status requery;
} shut;

static void shut_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    shut *s = ud;
    q_cb(st, r, &s->q);
    s->requery = ns_db_query(s->db, "SELECT 1", 0, NULL, q_cb, &s->q);
}

static bool fx_closed(void *arg)
{
    return ((fx *)arg)->closed;
}

static void callbacks_reenter(void **state)
{
    fx *f = *state;
    static chain c;
    const char *vals[] = {"1"};

    memset(&c, 0, sizeof c);
    c.f = f;
    c.n = 1;

    fx_open(f, 1, 4, 5000, 1000);
    assert_int_equal(ns_db_query(f->db, "SELECT $1::int", 1, vals, chain_cb, &c), NS_DB_OK);
    assert_true(fx_wait(f, chain_done, &c, 10000));
    assert_int_equal(c.failures, 0);
    assert_string_equal(c.last, "5");

    static closer cl;
    static shut s1, s2;
    memset(&cl, 0, sizeof cl);
    memset(&s1, 0, sizeof s1);
    memset(&s2, 0, sizeof s2);
    cl.f = f;
    s1.db = s2.db = f->db;
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, closer_cb, &cl), NS_DB_OK);
    assert_int_equal(ns_db_query(f->db, "SELECT 2", 0, NULL, shut_cb, &s1), NS_DB_OK);
    assert_int_equal(ns_db_query(f->db, "SELECT 3", 0, NULL, shut_cb, &s2), NS_DB_OK);
    assert_true(fx_wait(f, fx_closed, f, 10000));
    assert_int_equal(cl.q.st, NS_DB_OK);
    assert_int_equal(s1.q.calls, 1);
    assert_int_equal(s1.q.st, NS_DB_SHUTDOWN);
    assert_false(s1.q.had_result);
    assert_int_equal(s1.requery, NS_DB_SHUTDOWN);
    assert_int_equal(s2.q.calls, 1);
    assert_int_equal(s2.q.st, NS_DB_SHUTDOWN);
}

/* Asks "SELECT pg_backend_pid()" every 100 ms while the pool says it is
 * connected, until one answers. */
typedef struct {
    fx *f;
    uv_timer_t timer;
    bool busy;
    bool ok;
    int unexpected;
    char pid[32];
} prober;

static void probe_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    prober *p = ud;
    p->busy = false;
    if (st == NS_DB_OK) {
        p->ok = true;
        snprintf(p->pid, sizeof p->pid, "%s", ns_db_result_value(r, 0, 0));
    } else if (st != NS_DB_UNAVAILABLE) {
        p->unexpected++;
    }
}

static void probe_tick(uv_timer_t *t)
{
    prober *p = t->data;
    if (p->ok || p->busy || !ns_db_connected(p->f->db))
        return;
    if (ns_db_query(p->f->db, "SELECT pg_backend_pid()", 0, NULL, probe_cb, p) == NS_DB_OK)
        p->busy = true;
}

static bool probe_done(void *arg)
{
    prober *p = arg;
    return p->ok || p->unexpected > 0;
}

/* Waits, up to 30 s, for the pool to answer again. */
static void probe_until_ok(fx *f, prober *p)
{
    memset(p, 0, sizeof *p);
    p->f = f;
    uv_timer_init(&f->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, probe_tick, 0, 100);
    bool ok = fx_wait(f, probe_done, p, 30000);
    uv_close((uv_handle_t *)&p->timer, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the close callback, before p goes */
    assert_true(ok);
    assert_int_equal(p->unexpected, 0);
}

static void survives_restart(void **state)
{
    fx *f = *state;
    static prober before, after;
    static qres q;

    fx_open(f, 2, 16, 20000, 500);
    probe_until_ok(f, &before);

    /* The loop is not running: idle connections find out afterwards, by
     * polling readable. */
    assert_int_equal(pg_sh("restart", NULL, 0), 0);

    /* Sent into a connection whose server is gone: it either fails as
     * unavailable (it was in flight) or waits for a new connection. */
    memset(&q, 0, sizeof q);
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, q_cb, &q), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &q, 30000));
    assert_true(q.st == NS_DB_OK || q.st == NS_DB_UNAVAILABLE);

    probe_until_ok(f, &after);
    assert_string_not_equal(before.pid, after.pid);
    assert_true(ns_db_connected(f->db));

    /* The owner heard the pool go down once (with libpq's reason) and come
     * back: up at start, down at the restart, up again. */
    assert_int_equal(f->downs, 1);
    assert_true(f->down_detail[0] != '\0');
    assert_int_equal(f->ups, 2);

    /* Both connections came back. */
    static qres a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(ns_db_query(f->db, "SELECT pg_sleep(0.2), 1", 0, NULL, q_cb, &a), NS_DB_OK);
    assert_int_equal(ns_db_query(f->db, "SELECT pg_sleep(0.2), 2", 0, NULL, q_cb, &b), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &b, 10000));
    assert_true(fx_wait(f, q_done, &a, 10000));
    assert_int_equal(a.st, NS_DB_OK);
    assert_int_equal(b.st, NS_DB_OK);
}

static void terminated_backend(void **state)
{
    fx *f = *state;
    static prober idle, busy, after;
    static qres q;
    char sql[96];

    fx_open(f, 1, 8, 20000, 300);
    probe_until_ok(f, &idle);

    /* An idle connection whose backend is told to go (the message a server
     * shutdown sends) notices it from the loop and is replaced. */
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", idle.pid);
    assert_int_equal(admin_exec("postgres", sql, NULL, 0), 0);
    assert_true(fx_wait(f, db_down, f, 10000));
    probe_until_ok(f, &busy);
    assert_string_not_equal(idle.pid, busy.pid);

    /* A query in flight on a terminated backend gets a FATAL error and then
     * end of file: it is unavailable, not a failed statement. */
    memset(&q, 0, sizeof q);
    assert_int_equal(ns_db_query(f->db, "SELECT pg_sleep(30)", 0, NULL, q_cb, &q), NS_DB_OK);
    fx_wait(f, never, NULL, 100);
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", busy.pid);
    assert_int_equal(admin_exec("postgres", sql, NULL, 0), 0);
    assert_true(fx_wait(f, q_done, &q, 10000));
    assert_int_equal(q.st, NS_DB_UNAVAILABLE);
    assert_false(q.had_result);
    probe_until_ok(f, &after);
    assert_string_not_equal(busy.pid, after.pid);
}

/* A refused first host: libpq goes on to the next one, on a new socket,
 * and the pool must follow it (127.0.0.2 is loopback, where nothing listens
 * on our port). */
static void follows_next_host(void **state)
{
    fx *f = *state;
    char ci[sizeof G.conninfo];
    static prober p;

    snprintf(ci, sizeof ci, "host=127.0.0.2,127.0.0.1 port=%s,%s user=%s dbname=nst_pool", G.port,
             G.port, G.user);
    fx_open_ci(f, ci, 2, 8, 5000, 1000);
    probe_until_ok(f, &p);
}

static void unavailable_while_stopped(void **state)
{
    fx *f = *state;
    static qres q;
    static prober p;

    fx_open(f, 2, 16, 400, 300);
    probe_until_ok(f, &p);

    G.pg_stopped = true;
    assert_int_equal(pg_sh("stop", NULL, 0), 0);
    assert_true(fx_wait(f, db_down, f, 10000));

    memset(&q, 0, sizeof q);
    uint64_t t0 = uv_hrtime();
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, q_cb, &q), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &q, 10000));
    uint64_t waited_ms = (uv_hrtime() - t0) / 1000000u;
    assert_int_equal(q.st, NS_DB_UNAVAILABLE);
    assert_false(q.had_result);
    assert_true(waited_ms >= 399);
    assert_true(waited_ms < 5000);
    assert_false(ns_db_connected(f->db));

    /* And back. */
    assert_int_equal(pg_sh("start", NULL, 0), 0);
    G.pg_stopped = false;
    probe_until_ok(f, &p);
}

static void close_fails_outstanding(void **state)
{
    fx *f = *state;
    static qres q[4];
    static prober p;

    /* Closing while still connecting. */
    fx_open(f, 3, 4, 5000, 1000);
    f->close_called = true;
    ns_db_close(f->db, on_closed, f);
    assert_true(fx_wait(f, fx_closed, f, 10000));

    /* Closing with a query in flight and others queued. */
    f->closed = f->close_called = false;
    fx_open(f, 1, 8, 5000, 1000);
    probe_until_ok(f, &p);
    memset(q, 0, sizeof q);
    assert_int_equal(ns_db_query(f->db, "SELECT pg_sleep(2)", 0, NULL, q_cb, &q[0]), NS_DB_OK);
    for (int i = 1; i < 4; i++)
        assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, q_cb, &q[i]), NS_DB_OK);
    fx_wait(f, never, NULL, 200);
    assert_int_equal(q[0].calls, 0);

    f->close_called = true;
    ns_db_close(f->db, on_closed, f);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(q[i].calls, 1);
        assert_int_equal(q[i].st, NS_DB_SHUTDOWN);
        assert_false(q[i].had_result);
    }
    assert_false(f->closed); /* done comes from the loop, once all is freed */

    uv_close((uv_handle_t *)&f->waiter, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(f->closed);
    assert_false(uv_loop_alive(&f->loop));
    assert_int_equal(uv_loop_close(&f->loop), 0);
    /* Let the fixture's teardown find a fresh, empty loop. */
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->waiter);
    f->waiter.data = f;
    f->db = NULL;
}

/* ---- migrations ----------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[PATH_MAX];
    assert_true(join(path, sizeof path, dir, name));
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    write_file(dir, name, text, strlen(text));
}

static void make_dir(char *out, size_t outlen, const char *name)
{
    assert_true(join(out, outlen, G.tmp, name));
    assert_int_equal(mkdir(out, 0755), 0);
}

static void count_rows(const char *conninfo, const char *sql, char *out, size_t outlen)
{
    const char *db = strstr(conninfo, "dbname=");
    assert_non_null(db);
    assert_int_equal(admin_exec(db + strlen("dbname="), sql, out, outlen), 0);
}

static void sha256_hex(const char *path, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char buf[1 << 16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FILE *fp = fopen(path, "rb");
    size_t n;

    assert_non_null(ctx);
    assert_non_null(fp);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        assert_int_equal(EVP_DigestUpdate(ctx, buf, n), 1);
    fclose(fp);
    assert_int_equal(EVP_DigestFinal_ex(ctx, md, &mdlen), 1);
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void migrate_project_sql(void **state)
{
    (void)state;
    char ci[sizeof G.conninfo], dir[PATH_MAX], err[1024], val[128], sum[65], path[PATH_MAX];
    int applied = -1;

    new_database(ci, sizeof ci);
    assert_true(join(dir, sizeof dir, G.src, "sql"));

    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), 0);
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), 0);
    assert_true(applied >= 1);
    count_rows(ci, "SELECT count(*) FROM napsync_migrations", val, sizeof val);
    assert_int_equal(atoi(val), applied);
    count_rows(ci, "SELECT to_regclass('devices') IS NOT NULL", val, sizeof val);
    assert_string_equal(val, "t");

    /* The checksum PostgreSQL computed is the file's SHA-256. */
    assert_true(join(path, sizeof path, dir, "001_identity.sql"));
    sha256_hex(path, sum);
    count_rows(ci, "SELECT checksum FROM napsync_migrations WHERE version = 1", val, sizeof val);
    assert_string_equal(val, sum);
    count_rows(ci, "SELECT name FROM napsync_migrations WHERE version = 1", val, sizeof val);
    assert_string_equal(val, "001_identity.sql");

    applied = -1;
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), 0);
    assert_int_equal(applied, 0);
    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), 1);
}

static void migrate_changed_file(void **state)
{
    (void)state;
    char ci[sizeof G.conninfo], dir[PATH_MAX], err[1024];
    int applied = -1;

    new_database(ci, sizeof ci);
    make_dir(dir, sizeof dir, "mig_changed");
    write_text(dir, "001_first.sql", "CREATE TABLE t1 (x int);\n");
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), 0);
    assert_int_equal(applied, 1);

    write_text(dir, "001_first.sql", "CREATE TABLE t1 (x bigint);\n");
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), -1);
    assert_int_equal(applied, 0);
    assert_non_null(strstr(err, "001_first.sql"));
    assert_non_null(strstr(err, "changed"));
    err[0] = '\0';
    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), -1);
    assert_non_null(strstr(err, "001_first.sql"));
}

static void migrate_file_names(void **state)
{
    (void)state;
    char ci[sizeof G.conninfo], dir[PATH_MAX], dup[PATH_MAX], err[1024], val[64];
    int applied = -1;
    /* None of these match ^[0-9]{3}_[a-z0-9_]+\.sql$: they are ignored, so
     * their content (not SQL) is never read. */
    static const char *const ignored[] = {"README.md",     "003_Upper.sql",   "3_short.sql",
                                          "0004_long.sql", "004_backup.sql~", "004-dash.sql",
                                          "005_.sql",      ".005_hidden.sql", "006_x.SQL"};

    new_database(ci, sizeof ci);
    make_dir(dir, sizeof dir, "mig_names");
    /* Numbers, not the directory's order, decide: 010 after 002. */
    write_text(dir, "010_c.sql", "ALTER TABLE b ADD COLUMN y int;\n");
    write_text(dir, "002_b.sql", "CREATE TABLE b (x int REFERENCES a);\n");
    write_text(dir, "001_a.sql", "CREATE TABLE a (x int PRIMARY KEY);\n");
    for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++)
        write_text(dir, ignored[i], "this is not SQL;\n");
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), 0);
    assert_int_equal(applied, 3);
    count_rows(ci, "SELECT string_agg(name, ',' ORDER BY version) FROM napsync_migrations", val,
               sizeof val);
    assert_string_equal(val, "001_a.sql,002_b.sql,010_c.sql");
    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), 1);

    /* A migration that changes session settings (search_path, encoding)
     * affects neither its own record nor the next file's. */
    write_text(dir, "020_schema.sql",
               "CREATE SCHEMA other;\nSET search_path = other;\nSET client_encoding = 'LATIN1';\n"
               "CREATE TABLE napsync_migrations (version int);\n");
    write_text(dir, "021_after.sql", "CREATE TABLE after_schema (note text DEFAULT 'wörld');\n");
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), 0);
    assert_int_equal(applied, 2);
    count_rows(ci, "SELECT count(*) FROM public.napsync_migrations", val, sizeof val);
    assert_string_equal(val, "5");
    count_rows(ci, "SELECT count(*) FROM other.napsync_migrations", val, sizeof val);
    assert_string_equal(val, "0");
    count_rows(ci, "SELECT to_regclass('public.after_schema') IS NOT NULL", val, sizeof val);
    assert_string_equal(val, "t");
    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), 1);

    /* A new file is pending for check; a lower number than one applied is
     * refused rather than run out of order. */
    write_text(dir, "031_d.sql", "CREATE TABLE d (x int);\n");
    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), 0);
    write_text(dir, "005_late.sql", "CREATE TABLE late (x int);\n");
    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), -1);
    assert_non_null(strstr(err, "005_late.sql"));
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "005_late.sql"));
    assert_non_null(strstr(err, "out of order"));

    /* Two files with one number. */
    make_dir(dup, sizeof dup, "mig_dup");
    write_text(dup, "001_one.sql", "SELECT 1;\n");
    write_text(dup, "001_other.sql", "SELECT 1;\n");
    assert_int_equal(ns_migrate_run(ci, dup, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "001_one.sql"));
    assert_non_null(strstr(err, "001_other.sql"));
}

static void migrate_failures(void **state)
{
    (void)state;
    char ci[sizeof G.conninfo], dir[PATH_MAX], err[1024], val[64], bad_ci[PATH_MAX + 64];
    int applied = -1;

    new_database(ci, sizeof ci);
    make_dir(dir, sizeof dir, "mig_fail");
    write_text(dir, "001_ok.sql", "CREATE TABLE ok1 (x int);\n");
    write_text(dir, "002_bad.sql",
               "-- half of this must not survive\nCREATE TABLE half (x int);\nCREATE TABL oops;\n");
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), -1);
    assert_int_equal(applied, 1);
    assert_non_null(strstr(err, "002_bad.sql"));
    assert_non_null(strstr(err, "42601"));
    assert_non_null(strstr(err, "syntax error"));
    assert_non_null(strstr(err, "line 3"));
    assert_null(strchr(err, '\n'));
    count_rows(ci, "SELECT to_regclass('half') IS NULL", val, sizeof val);
    assert_string_equal(val, "t");
    count_rows(ci, "SELECT string_agg(version::text, ',') FROM napsync_migrations", val,
               sizeof val);
    assert_string_equal(val, "1");
    /* The lock was released: a second run does not wait. */
    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), 0);

    write_text(dir, "002_bad.sql", "CREATE TABLE half (x int);\nCOMMIT;\n");
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "002_bad.sql"));
    assert_non_null(strstr(err, "COMMIT"));

    write_text(dir, "002_bad.sql", "CREATE TABLE fixed (x int);\n");
    write_file(dir, "003_nul.sql", "SELECT 1;\0", 10);
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), -1);
    assert_int_equal(applied, 1); /* 002 went in before 003 was refused */
    assert_non_null(strstr(err, "003_nul.sql"));
    assert_non_null(strstr(err, "NUL"));

    char path[PATH_MAX];
    assert_true(join(path, sizeof path, dir, "003_nul.sql"));
    assert_int_equal(unlink(path), 0);
    char *big = malloc(1024 * 1024 + 2);
    assert_non_null(big);
    memset(big, ' ', 1024 * 1024 + 1);
    memcpy(big, "SELECT 1;", 9);
    write_file(dir, "003_big.sql", big, 1024 * 1024 + 1);
    free(big);
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "003_big.sql"));
    assert_non_null(strstr(err, "larger"));
    assert_true(join(path, sizeof path, dir, "003_big.sql"));
    assert_int_equal(unlink(path), 0);

    /* Not valid UTF-8: the server refuses the text, the message says which
     * file. */
    write_text(dir, "003_latin1.sql", "SELECT 'caf\xe9';\n");
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "003_latin1.sql"));
    assert_non_null(strstr(err, "UTF8"));
    assert_true(join(path, sizeof path, dir, "003_latin1.sql"));
    assert_int_equal(unlink(path), 0);

    /* A directory under a migration's name is unreadable as one. */
    assert_true(join(path, sizeof path, dir, "003_dir.sql"));
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "003_dir.sql"));
    assert_int_equal(rmdir(path), 0);

    assert_int_equal(ns_migrate_run(ci, dir, &applied, err, sizeof err), 0);
    assert_int_equal(applied, 0);
    assert_int_equal(ns_migrate_check(ci, dir, err, sizeof err), 1);

    /* No directory; no server. */
    assert_true(join(path, sizeof path, G.tmp, "no-such-dir"));
    assert_int_equal(ns_migrate_run(ci, path, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "no-such-dir"));
    int n =
        snprintf(bad_ci, sizeof bad_ci, "host='%s' port=1 user=%s dbname=postgres", G.host, G.user);
    assert_true(n > 0 && (size_t)n < sizeof bad_ci);
    assert_int_equal(ns_migrate_check(bad_ci, dir, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot connect"));
    assert_int_equal(ns_migrate_run(NULL, dir, &applied, err, sizeof err), -1);
}

typedef struct {
    const char *conninfo;
    const char *dir;
    int rc;
    int applied;
    char err[1024];
} mig_job;

static void *mig_thread(void *arg)
{
    mig_job *j = arg;
    j->rc = ns_migrate_run(j->conninfo, j->dir, &j->applied, j->err, sizeof j->err);
    return NULL;
}

/* Two daemons starting at once: the advisory lock makes one apply
 * everything and the other find nothing left. */
static void migrate_concurrently(void **state)
{
    (void)state;
    char ci[sizeof G.conninfo], dir[PATH_MAX], val[64];
    pthread_t t[2];
    mig_job j[2];

    new_database(ci, sizeof ci);
    make_dir(dir, sizeof dir, "mig_concurrent");
    for (int i = 1; i <= 4; i++) {
        char name[32], text[96];
        snprintf(name, sizeof name, "%03d_step%d.sql", i, i);
        snprintf(text, sizeof text, "SELECT pg_sleep(0.1);\nCREATE TABLE step%d (x int);\n", i);
        write_text(dir, name, text);
    }
    for (int i = 0; i < 2; i++) {
        memset(&j[i], 0, sizeof j[i]);
        j[i].conninfo = ci;
        j[i].dir = dir;
        assert_int_equal(pthread_create(&t[i], NULL, mig_thread, &j[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        if (j[i].rc != 0)
            fprintf(stderr, "migrate_concurrently: %s\n", j[i].err);
        assert_int_equal(j[i].rc, 0);
    }
    assert_int_equal(j[0].applied + j[1].applied, 4);
    assert_true(j[0].applied == 0 || j[1].applied == 0);
    count_rows(ci, "SELECT count(*) FROM napsync_migrations", val, sizeof val);
    assert_string_equal(val, "4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(check_row_values, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(check_value_bounds, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(sql_error_keeps_connection, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(queue_full_and_bad_arguments, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(callbacks_reenter, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(survives_restart, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(terminated_backend, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(follows_next_host, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(unavailable_while_stopped, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(close_fails_outstanding, fx_setup, fx_teardown),
        cmocka_unit_test(migrate_project_sql),
        cmocka_unit_test(migrate_changed_file),
        cmocka_unit_test(migrate_file_names),
        cmocka_unit_test(migrate_failures),
        cmocka_unit_test(migrate_concurrently),
    };
    return cmocka_run_group_tests_name("db", tests, group_setup, group_teardown);
}
