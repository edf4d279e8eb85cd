/* Integration tests for daemon/db.c and daemon/migrate.c against a real,
 * private PostgreSQL cluster started with tests/lib/pg.sh (found through
 * NS_SOURCE_DIR, which ctest sets to the source directory), and for what
 * napsyncd (found through NS_BUILD_DIR) prints about a malformed connection
 * string. */
#define _GNU_SOURCE /* nftw, RTLD_NEXT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "db.h"
#include "migrate.h"
#include "registry.h"

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

/* ---- transactions ------------------------------------------------------------- */

static void notify_cb(const char *channel, const char *payload, void *ud);

typedef struct {
    int calls;
    int order;
    ns_db_status st;
    ns_db_txn *t;
} tbegin;

static void begin_cb(ns_db_status st, ns_db_txn *t, void *ud)
{
    tbegin *b = ud;
    b->calls++;
    b->order = ++g_completed;
    b->st = st;
    b->t = t;
}

static bool begun(void *arg)
{
    return ((tbegin *)arg)->calls > 0;
}

/* Begins a transaction and waits until it is handed over. */
static ns_db_txn *begin_txn(fx *f, tbegin *b)
{
    memset(b, 0, sizeof *b);
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, b), NS_DB_OK);
    assert_int_equal(b->calls, 0); /* never from inside the call */
    assert_true(fx_wait(f, begun, b, 10000));
    assert_int_equal(b->calls, 1);
    assert_int_equal(b->st, NS_DB_OK);
    assert_non_null(b->t);
    return b->t;
}

static void txn_q(ns_db_txn *t, const char *sql, int n, const char *const *vals, qres *q)
{
    memset(q, 0, sizeof *q);
    assert_int_equal(ns_db_txn_query(t, sql, n, vals, q_cb, q), NS_DB_OK);
    assert_int_equal(q->calls, 0);
}

/* The first value of a one-row query on a connection of its own. */
static void admin_value(const char *sql, char *out, size_t outlen)
{
    assert_int_equal(admin_exec("nst_pool", sql, out, outlen), 0);
}

static void txn_commit_visible(void **state)
{
    fx *f = *state;
    static tbegin b;
    static qres ins[3], sum, outside, commit;
    const char *v[3][2] = {{"1", "one"}, {"2", "zwei"}, {"3", "trois"}};
    char val[64];

    g_completed = 0;
    fx_open(f, 2, 16, 5000, 1000);
    assert_int_equal(admin_exec("nst_pool", "CREATE TABLE tx_basic (x int, s text)", NULL, 0), 0);
    ns_db_txn *t = begin_txn(f, &b);
    for (int i = 0; i < 3; i++)
        txn_q(t, "INSERT INTO tx_basic VALUES ($1::int, $2) RETURNING x * 10", 2, v[i], &ins[i]);
    /* The transaction sees its own rows. */
    txn_q(t, "SELECT sum(x), string_agg(s, ',' ORDER BY x) FROM tx_basic", 0, NULL, &sum);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK); /* nothing new: nothing sent */
    assert_true(fx_wait(f, q_done, &sum, 10000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ins[i].st, NS_DB_OK);
        assert_int_equal(ins[i].order, 2 + i);
        assert_int_equal(ins[i].rows, 1);
        assert_int_equal(atoi(ins[i].v[0]), 10 * (i + 1));
    }
    assert_int_equal(sum.order, 5);
    assert_string_equal(sum.v[0], "6");
    assert_string_equal(sum.v[1], "one,zwei,trois");

    /* Other connections do not see them before COMMIT: plain queries keep
     * running on the rest of the pool meanwhile. */
    run_query(f, "SELECT count(*) FROM tx_basic", 0, NULL, &outside);
    assert_int_equal(outside.st, NS_DB_OK);
    assert_string_equal(outside.v[0], "0");

    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_int_equal(commit.calls, 0);
    assert_true(fx_wait(f, q_done, &commit, 10000));
    assert_int_equal(commit.calls, 1);
    assert_int_equal(commit.st, NS_DB_OK);
    admin_value("SELECT count(*) FROM tx_basic", val, sizeof val);
    assert_string_equal(val, "3");
    assert_string_equal(ns_db_status_str(NS_DB_ABORTED),
                        "transaction aborted by an earlier statement");

    /* An explicit rollback leaves nothing behind. */
    static qres ins4, rb;
    const char *four[] = {"4", "vier"};
    t = begin_txn(f, &b);
    txn_q(t, "INSERT INTO tx_basic VALUES ($1::int, $2)", 2, four, &ins4);
    memset(&rb, 0, sizeof rb);
    assert_int_equal(ns_db_txn_rollback(t, q_cb, &rb), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &rb, 10000));
    assert_int_equal(ins4.st, NS_DB_OK);
    assert_true(ins4.order < rb.order);
    assert_int_equal(rb.st, NS_DB_OK);
    admin_value("SELECT count(*) FROM tx_basic", val, sizeof val);
    assert_string_equal(val, "3");
}

static void txn_bad_arguments(void **state)
{
    fx *f = *state;
    static tbegin b, b2, b3;
    static qres q, c1, c2;
    const char *one[] = {"1"};

    fx_open(f, 1, 2, 5000, 1000);
    assert_int_equal(ns_db_txn_begin(NULL, begin_cb, &b), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_begin(f->db, NULL, &b), NS_DB_INVALID);
    /* Waiting transactions count against queue_limit like queries. */
    memset(&b2, 0, sizeof b2);
    memset(&b3, 0, sizeof b3);
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, &b2), NS_DB_OK);
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, q_cb, &q), NS_DB_OK);
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, &b3), NS_DB_QUEUE_FULL);
    assert_true(fx_wait(f, begun, &b2, 10000));
    ns_db_txn *t = b2.t;

    assert_int_equal(ns_db_txn_query(NULL, "SELECT 1", 0, NULL, q_cb, &q), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_query(t, NULL, 0, NULL, q_cb, &q), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_query(t, "SELECT 1", 0, NULL, NULL, &q), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_query(t, "SELECT $1", 1, NULL, q_cb, &q), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_query(t, "SELECT 1", -1, one, q_cb, &q), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_query(t, "SELECT 1", 70000, one, q_cb, &q), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_flush(NULL), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_commit(NULL, q_cb, &c1), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_commit(t, NULL, &c1), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_rollback(t, NULL, &c1), NS_DB_INVALID);

    /* After commit the transaction takes nothing more. */
    memset(&c1, 0, sizeof c1);
    memset(&c2, 0, sizeof c2);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &c1), NS_DB_OK);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &c2), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_rollback(t, q_cb, &c2), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_query(t, "SELECT 1", 0, NULL, q_cb, &c2), NS_DB_INVALID);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_INVALID);
    assert_true(fx_wait(f, q_done, &c1, 10000));
    assert_int_equal(c1.st, NS_DB_OK); /* an empty transaction commits */
    assert_int_equal(c2.calls, 0);
    assert_true(fx_wait(f, q_done, &q, 10000));
    assert_int_equal(q.st, NS_DB_OK);
}

static void txn_failed_statement(void **state)
{
    fx *f = *state;
    static tbegin b;
    static qres pid, ins1, bad, ins2, late, commit, after, plain_pid;
    const char *one[] = {"1"}, *two[] = {"2"}, *three[] = {"3"};
    char val[64];

    g_completed = 0;
    fx_open(f, 1, 16, 5000, 1000);
    assert_int_equal(admin_exec("nst_pool", "CREATE TABLE tx_fail (x int)", NULL, 0), 0);
    ns_db_txn *t = begin_txn(f, &b);
    txn_q(t, "SELECT pg_backend_pid()", 0, NULL, &pid);
    txn_q(t, "INSERT INTO tx_fail VALUES ($1::int)", 1, one, &ins1);
    txn_q(t, "SELECT 1/0", 0, NULL, &bad);
    txn_q(t, "INSERT INTO tx_fail VALUES ($1::int)", 1, two, &ins2);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &ins2, 10000));
    assert_int_equal(pid.st, NS_DB_OK);
    assert_int_equal(ins1.st, NS_DB_OK);
    assert_int_equal(bad.st, NS_DB_QUERY_FAILED);
    assert_true(bad.had_result);
    assert_string_equal(bad.sqlstate, "22012");
    assert_int_equal(ins2.st, NS_DB_ABORTED);
    assert_false(ins2.had_result);
    assert_true(ins1.order < bad.order && bad.order < ins2.order);

    /* Accepted, never sent, answered from the loop. */
    txn_q(t, "INSERT INTO tx_fail VALUES ($1::int)", 1, three, &late);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    assert_int_equal(late.calls, 0);
    assert_true(fx_wait(f, q_done, &late, 10000));
    assert_int_equal(late.st, NS_DB_ABORTED);

    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &commit, 10000));
    assert_int_equal(commit.st, NS_DB_ABORTED);
    assert_false(commit.had_result);
    admin_value("SELECT count(*) FROM tx_fail", val, sizeof val);
    assert_string_equal(val, "0");

    /* The same connection (pool_size 1, same backend) serves plain queries
     * again: out of pipeline mode, out of the transaction. */
    run_query(f, "SELECT pg_backend_pid()", 0, NULL, &plain_pid);
    assert_int_equal(plain_pid.st, NS_DB_OK);
    assert_string_equal(plain_pid.v[0], pid.v[0]);
    run_query(f, "INSERT INTO tx_fail VALUES ($1::int)", 1, one, &after);
    assert_int_equal(after.st, NS_DB_OK);
    admin_value("SELECT count(*) FROM tx_fail", val, sizeof val);
    assert_string_equal(val, "1");
}

/* COMMIT queued behind the failing statement, in the same pipeline segment:
 * the server skips it and stays in the aborted transaction, which must be
 * rolled back before the connection serves anyone else. */
static void txn_failed_with_commit_queued(void **state)
{
    fx *f = *state;
    static tbegin b;
    static qres ins1, bad, ins2, commit, after;
    const char *one[] = {"1"}, *two[] = {"2"}, *nan[] = {"x"};
    char val[64];

    g_completed = 0;
    fx_open(f, 1, 16, 5000, 1000);
    assert_int_equal(admin_exec("nst_pool", "CREATE TABLE tx_fail2 (x int)", NULL, 0), 0);
    ns_db_txn *t = begin_txn(f, &b);
    txn_q(t, "INSERT INTO tx_fail2 VALUES ($1::int)", 1, one, &ins1);
    txn_q(t, "INSERT INTO tx_fail2 VALUES ($1::int)", 1, nan, &bad);
    txn_q(t, "INSERT INTO tx_fail2 VALUES ($1::int)", 1, two, &ins2);
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &commit, 10000));
    assert_int_equal(ins1.st, NS_DB_OK);
    assert_int_equal(bad.st, NS_DB_QUERY_FAILED);
    assert_string_equal(bad.sqlstate, "22P02");
    assert_int_equal(ins2.st, NS_DB_ABORTED);
    assert_int_equal(commit.st, NS_DB_ABORTED);
    assert_true(ins2.order < commit.order);

    /* Committed at once (visible to others): not inside a transaction. */
    run_query(f, "INSERT INTO tx_fail2 VALUES ($1::int)", 1, two, &after);
    assert_int_equal(after.st, NS_DB_OK);
    admin_value("SELECT string_agg(x::text, ',') FROM tx_fail2", val, sizeof val);
    assert_string_equal(val, "2");
}

static void txn_commit_fails(void **state)
{
    fx *f = *state;
    static tbegin b;
    static qres i1, i2, commit, after;
    const char *one[] = {"7"};
    char val[64];

    fx_open(f, 1, 16, 5000, 1000);
    assert_int_equal(
        admin_exec("nst_pool",
                   "CREATE TABLE tx_deferred (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)", NULL,
                   0),
        0);
    ns_db_txn *t = begin_txn(f, &b);
    txn_q(t, "INSERT INTO tx_deferred VALUES ($1::int)", 1, one, &i1);
    txn_q(t, "INSERT INTO tx_deferred VALUES ($1::int)", 1, one, &i2);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &i2, 10000));
    assert_int_equal(i1.st, NS_DB_OK);
    assert_int_equal(i2.st, NS_DB_OK); /* checked at COMMIT only */
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &commit, 10000));
    assert_int_equal(commit.st, NS_DB_QUERY_FAILED);
    assert_true(commit.had_result);
    assert_string_equal(commit.sqlstate, "23505");
    assert_non_null(strstr(commit.message, "tx_deferred"));
    admin_value("SELECT count(*) FROM tx_deferred", val, sizeof val);
    assert_string_equal(val, "0");
    run_query(f, "INSERT INTO tx_deferred VALUES ($1::int)", 1, one, &after);
    assert_int_equal(after.st, NS_DB_OK);
}

/* Callbacks drive the transaction: a statement callback queues more and
 * flushes again, another commits, the commit callback begins the next
 * transaction, whose commit callback closes the pool. */
typedef struct {
    fx *f;
    ns_db_txn *t;
    int step;
    int failures;
    qres third_insert;
    ns_db_status last_commit;
} driver;

static void drv_commit_b(ns_db_status st, const ns_db_result *r, void *ud);

static void drv_check(driver *d, ns_db_status st, ns_db_status want)
{
    if (st != want)
        d->failures++;
}

static void drv_stmt3(ns_db_status st, const ns_db_result *r, void *ud)
{
    driver *d = ud;
    drv_check(d, st, NS_DB_OK);
    const char *v = ns_db_result_value(r, 0, 0);
    if (d->step++ != 3 || v == NULL || strcmp(v, "third") != 0)
        d->failures++;
}

static void drv_commit_a(ns_db_status st, const ns_db_result *r, void *ud);

static void drv_stmt2(ns_db_status st, const ns_db_result *r, void *ud)
{
    driver *d = ud;
    (void)r;
    drv_check(d, st, NS_DB_OK);
    if (d->step++ != 2)
        d->failures++;
    /* Commit from a statement callback: the statement queued before it
     * still runs first. */
    if (ns_db_txn_commit(d->t, drv_commit_a, d) != NS_DB_OK)
        d->failures++;
}

static void drv_stmt1(ns_db_status st, const ns_db_result *r, void *ud)
{
    driver *d = ud;
    const char *third[] = {"third"};
    (void)r;
    drv_check(d, st, NS_DB_OK);
    if (d->step++ != 1)
        d->failures++;
    if (ns_db_txn_query(d->t, "INSERT INTO tx_drive VALUES (2)", 0, NULL, drv_stmt2, d) !=
            NS_DB_OK ||
        ns_db_txn_query(d->t, "SELECT $1::text", 1, third, drv_stmt3, d) != NS_DB_OK ||
        ns_db_txn_flush(d->t) != NS_DB_OK)
        d->failures++;
}

static void drv_begin_a(ns_db_status st, ns_db_txn *t, void *ud)
{
    driver *d = ud;
    drv_check(d, st, NS_DB_OK);
    d->t = t;
    if (d->step++ != 0)
        d->failures++;
    if (ns_db_txn_query(t, "INSERT INTO tx_drive VALUES (1)", 0, NULL, drv_stmt1, d) != NS_DB_OK ||
        ns_db_txn_flush(t) != NS_DB_OK)
        d->failures++;
}

static void drv_begin_b(ns_db_status st, ns_db_txn *t, void *ud)
{
    driver *d = ud;
    drv_check(d, st, NS_DB_OK);
    if (d->step++ != 5)
        d->failures++;
    /* No flush: commit sends what is queued. */
    if (ns_db_txn_query(t, "INSERT INTO tx_drive VALUES (3)", 0, NULL, q_cb, &d->third_insert) !=
        NS_DB_OK)
        d->failures++;
    if (ns_db_txn_commit(t, drv_commit_b, d) != NS_DB_OK)
        d->failures++;
}

static void drv_commit_a(ns_db_status st, const ns_db_result *r, void *ud)
{
    driver *d = ud;
    (void)r;
    drv_check(d, st, NS_DB_OK);
    if (d->step++ != 4)
        d->failures++;
    /* Still allocated while its end callback runs, and refusing. */
    if (ns_db_txn_query(d->t, "SELECT 1", 0, NULL, q_cb, &d->third_insert) != NS_DB_INVALID ||
        ns_db_txn_rollback(d->t, q_cb, &d->third_insert) != NS_DB_INVALID)
        d->failures++;
    if (ns_db_txn_begin(d->f->db, drv_begin_b, d) != NS_DB_OK)
        d->failures++;
}

static void drv_commit_b(ns_db_status st, const ns_db_result *r, void *ud)
{
    driver *d = ud;
    (void)r;
    d->last_commit = st;
    if (d->step++ != 6)
        d->failures++;
    d->f->close_called = true;
    ns_db_close(d->f->db, on_closed, d->f);
}

static void txn_callbacks_drive(void **state)
{
    fx *f = *state;
    static driver d;
    char val[64];

    memset(&d, 0, sizeof d);
    d.f = f;
    d.last_commit = NS_DB_INVALID;
    fx_open(f, 1, 16, 5000, 1000);
    assert_int_equal(admin_exec("nst_pool", "CREATE TABLE tx_drive (x int)", NULL, 0), 0);
    assert_int_equal(ns_db_txn_begin(f->db, drv_begin_a, &d), NS_DB_OK);
    assert_true(fx_wait(f, fx_closed, f, 10000));
    assert_int_equal(d.failures, 0);
    assert_int_equal(d.step, 7);
    assert_int_equal(d.last_commit, NS_DB_OK);
    assert_int_equal(d.third_insert.st, NS_DB_OK);
    assert_true(d.third_insert.calls == 1);
    admin_value("SELECT string_agg(x::text, ',' ORDER BY x) FROM tx_drive", val, sizeof val);
    assert_string_equal(val, "1,2,3");
}

/* 10000 statements in one flush, with results large enough that neither
 * side can buffer a whole direction: the pipeline must keep reading while
 * it writes. */
#define BIG_N 10000
static int big_next;
static int big_bad;

static void big_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    int i = *(const int *)ud;
    const char *v = ns_db_result_value(r, 0, 0);
    if (st != NS_DB_OK || i != big_next || v == NULL || atoi(v) != i || strlen(v) < 200)
        big_bad++;
    big_next++;
}

static bool big_done(void *arg)
{
    (void)arg;
    return big_next == BIG_N || big_bad > 0;
}

static void txn_ten_thousand(void **state)
{
    fx *f = *state;
    static tbegin b;
    static qres commit;
    static int idx[BIG_N];
    char num[16], pad[256], val[64];

    fx_open(f, 1, 16, 5000, 1000);
    assert_int_equal(admin_exec("nst_pool", "CREATE TABLE tx_big (x int, pad text)", NULL, 0), 0);
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    big_next = big_bad = 0;
    ns_db_txn *t = begin_txn(f, &b);
    for (int i = 0; i < BIG_N; i++) {
        idx[i] = i;
        snprintf(num, sizeof num, "%d", i);
        const char *vals[] = {num, pad};
        assert_int_equal(ns_db_txn_query(t,
                                         "INSERT INTO tx_big VALUES ($1::int, $2) "
                                         "RETURNING x::text || pad",
                                         2, vals, big_cb, &idx[i]),
                         NS_DB_OK);
    }
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    assert_true(fx_wait(f, big_done, NULL, 60000));
    assert_int_equal(big_bad, 0);
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &commit, 30000));
    assert_int_equal(commit.st, NS_DB_OK);
    admin_value("SELECT count(DISTINCT x) FROM tx_big", val, sizeof val);
    assert_string_equal(val, "10000");
}

/* Results that libpq reads inside an API call. While the server sleeps, the
 * statements queued after a flush fill the socket; once the results of the
 * flush are waiting in it, one more statement makes libpq (which cannot
 * send) read them into its own buffer, inside ns_db_txn_query. The queued
 * statements produce too little output for the server to send anything
 * before their sync, so no readable event follows: the results must be
 * delivered anyway, without another flush. */
#define ABSORB_N     200
#define ABSORB_PARAM (32 * 1024)
static int absorb_done;

static void absorb_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    (void)r;
    (void)ud;
    absorb_done += st == NS_DB_OK ? 1 : 1000;
}

static void txn_results_read_inside_call(void **state)
{
    fx *f = *state;
    static tbegin b;
    static qres slept, commit;
    static char pad[ABSORB_PARAM];
    const char *vals[] = {pad};

    fx_open(f, 1, 16, 5000, 1000);
    memset(pad, 'q', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    absorb_done = 0;
    ns_db_txn *t = begin_txn(f, &b);
    txn_q(t, "SELECT pg_sleep(0.1), 'slept'", 0, NULL, &slept);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    for (int i = 0; i < ABSORB_N; i++)
        assert_int_equal(
            ns_db_txn_query(t, "SELECT WHERE $1::text IS NULL", 1, vals, absorb_cb, NULL),
            NS_DB_OK);
    usleep(500 * 1000); /* outside the loop: the results reach the socket */
    assert_int_equal(ns_db_txn_query(t, "SELECT WHERE $1::text IS NULL", 1, vals, absorb_cb, NULL),
                     NS_DB_OK);
    assert_true(fx_wait(f, q_done, &slept, 5000));
    assert_int_equal(slept.st, NS_DB_OK);
    assert_string_equal(slept.v[1], "slept");
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &commit, 30000));
    assert_int_equal(absorb_done, ABSORB_N + 1);
    assert_int_equal(commit.st, NS_DB_OK);
}

static void txn_terminated(void **state)
{
    fx *f = *state;
    static tbegin b;
    static qres pid, sleeper, s1, s2, commit, pid2, sleeper2, rb;
    static prober p;
    char sql[96];

    g_completed = 0;
    fx_open(f, 1, 16, 20000, 300);
    ns_db_txn *t = begin_txn(f, &b);
    txn_q(t, "SELECT pg_backend_pid()", 0, NULL, &pid);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &pid, 10000));
    txn_q(t, "SELECT pg_sleep(30)", 0, NULL, &sleeper);
    txn_q(t, "SELECT 1", 0, NULL, &s1);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    txn_q(t, "SELECT 2", 0, NULL, &s2);
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    fx_wait(f, never, NULL, 200);
    assert_int_equal(sleeper.calls, 0);
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", pid.v[0]);
    assert_int_equal(admin_exec("postgres", sql, NULL, 0), 0);
    assert_true(fx_wait(f, q_done, &commit, 10000));
    /* Every pending statement, in order, then the commit: outcome unknown. */
    qres *pending[] = {&sleeper, &s1, &s2, &commit};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pending[i]->calls, 1);
        assert_int_equal(pending[i]->st, NS_DB_UNAVAILABLE);
        assert_false(pending[i]->had_result);
        if (i > 0)
            assert_true(pending[i - 1]->order < pending[i]->order);
    }

    /* Lost before the owner ended it: the transaction stays, broken. */
    probe_until_ok(f, &p);
    t = begin_txn(f, &b);
    txn_q(t, "SELECT pg_backend_pid()", 0, NULL, &pid2);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &pid2, 10000));
    assert_string_not_equal(pid.v[0], pid2.v[0]);
    txn_q(t, "SELECT pg_sleep(30)", 0, NULL, &sleeper2);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    fx_wait(f, never, NULL, 100);
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", pid2.v[0]);
    assert_int_equal(admin_exec("postgres", sql, NULL, 0), 0);
    assert_true(fx_wait(f, q_done, &sleeper2, 10000));
    assert_int_equal(sleeper2.st, NS_DB_UNAVAILABLE);
    assert_int_equal(ns_db_txn_query(t, "SELECT 1", 0, NULL, q_cb, &rb), NS_DB_UNAVAILABLE);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_UNAVAILABLE);
    memset(&rb, 0, sizeof rb);
    assert_int_equal(ns_db_txn_rollback(t, q_cb, &rb), NS_DB_OK);
    assert_int_equal(rb.calls, 0);
    assert_true(fx_wait(f, q_done, &rb, 10000));
    assert_int_equal(rb.st, NS_DB_UNAVAILABLE);
    probe_until_ok(f, &p);
}

/* Tries to use the transaction from a callback ns_db_close makes. */
typedef struct {
    qres q;
    ns_db_txn *t;
    ns_db_status again, commit;
} shut_txn;

static void shut_txn_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    shut_txn *s = ud;
    q_cb(st, r, &s->q);
    s->again = ns_db_txn_query(s->t, "SELECT 1", 0, NULL, q_cb, &s->q);
    s->commit = ns_db_txn_commit(s->t, q_cb, &s->q);
}

static void txn_close_open(void **state)
{
    fx *f = *state;
    static tbegin a, b, c;
    static shut_txn sleeper;
    static qres after, commit, plain;

    g_completed = 0;
    fx_open(f, 2, 16, 5000, 1000);
    ns_db_txn *ta = begin_txn(f, &a);
    ns_db_txn *tb = begin_txn(f, &b);
    (void)tb; /* left open with nothing pending: freed by close, silently */
    memset(&sleeper, 0, sizeof sleeper);
    sleeper.t = ta;
    assert_int_equal(ns_db_txn_query(ta, "SELECT pg_sleep(5)", 0, NULL, shut_txn_cb, &sleeper),
                     NS_DB_OK);
    txn_q(ta, "SELECT 1", 0, NULL, &after);
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(ta, q_cb, &commit), NS_DB_OK);
    memset(&c, 0, sizeof c);
    memset(&plain, 0, sizeof plain);
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, &c), NS_DB_OK); /* waits: pool full */
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, q_cb, &plain), NS_DB_OK);
    fx_wait(f, never, NULL, 200);
    assert_int_equal(sleeper.q.calls, 0);
    assert_int_equal(c.calls, 0);

    f->close_called = true;
    ns_db_close(f->db, on_closed, f);
    assert_int_equal(sleeper.q.calls, 1);
    assert_int_equal(sleeper.q.st, NS_DB_SHUTDOWN);
    assert_int_equal(sleeper.again, NS_DB_SHUTDOWN);
    assert_int_equal(sleeper.commit, NS_DB_SHUTDOWN);
    assert_int_equal(after.calls, 1);
    assert_int_equal(after.st, NS_DB_SHUTDOWN);
    assert_int_equal(commit.calls, 1);
    assert_int_equal(commit.st, NS_DB_SHUTDOWN);
    assert_true(sleeper.q.order < after.order && after.order < commit.order);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.st, NS_DB_SHUTDOWN);
    assert_null(c.t);
    assert_int_equal(plain.calls, 1);
    assert_int_equal(plain.st, NS_DB_SHUTDOWN);
    /* Until done, a transaction refuses everything. */
    assert_int_equal(ns_db_txn_query(tb, "SELECT 1", 0, NULL, q_cb, &plain), NS_DB_SHUTDOWN);
    assert_int_equal(ns_db_txn_rollback(tb, q_cb, &plain), NS_DB_SHUTDOWN);
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, &c), NS_DB_SHUTDOWN);
    assert_int_equal(ns_db_listen(f->db, "too_late", notify_cb, NULL), NS_DB_SHUTDOWN);
    assert_int_equal(plain.calls, 1);
    assert_true(fx_wait(f, fx_closed, f, 10000));
}

/* The pool closed from a statement callback, with more of the
 * transaction pending behind it. */
typedef struct {
    fx *f;
    qres q;
} stmt_closer;

static void stmt_closer_cb(ns_db_status st, const ns_db_result *r, void *ud)
{
    stmt_closer *c = ud;
    q_cb(st, r, &c->q);
    c->f->close_called = true;
    ns_db_close(c->f->db, on_closed, c->f);
}

static void txn_close_from_statement(void **state)
{
    fx *f = *state;
    static tbegin b;
    static stmt_closer first;
    static qres second, commit;

    g_completed = 0;
    fx_open(f, 1, 16, 5000, 1000);
    ns_db_txn *t = begin_txn(f, &b);
    memset(&first, 0, sizeof first);
    first.f = f;
    assert_int_equal(ns_db_txn_query(t, "SELECT 1", 0, NULL, stmt_closer_cb, &first), NS_DB_OK);
    txn_q(t, "SELECT pg_sleep(5)", 0, NULL, &second);
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, fx_closed, f, 10000));
    assert_int_equal(first.q.st, NS_DB_OK);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.st, NS_DB_SHUTDOWN);
    assert_int_equal(commit.calls, 1);
    assert_int_equal(commit.st, NS_DB_SHUTDOWN);
    assert_true(first.q.order < second.order && second.order < commit.order);
}

static void txn_pool_exhausted(void **state)
{
    fx *f = *state;
    static tbegin a, late, slow;
    static qres q, ins, commit, commit2;
    char val[64];

    g_completed = 0;
    fx_open(f, 1, 16, 400, 1000);
    assert_int_equal(admin_exec("nst_pool", "CREATE TABLE tx_excl (x int)", NULL, 0), 0);
    ns_db_txn *t = begin_txn(f, &a);
    memset(&q, 0, sizeof q);
    memset(&late, 0, sizeof late);
    assert_int_equal(ns_db_query(f->db, "SELECT count(*) FROM tx_excl", 0, NULL, q_cb, &q),
                     NS_DB_OK);
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, &late), NS_DB_OK);
    txn_q(t, "INSERT INTO tx_excl VALUES (1)", 0, NULL, &ins);
    assert_int_equal(ns_db_txn_flush(t), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &ins, 10000));
    fx_wait(f, never, NULL, 100);
    assert_int_equal(q.calls, 0); /* the only connection is the transaction's */
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, begun, &late, 10000));
    assert_int_equal(commit.st, NS_DB_OK);
    assert_int_equal(q.st, NS_DB_OK);
    assert_string_equal(q.v[0], "1"); /* ran after the commit */
    assert_int_equal(late.st, NS_DB_OK);
    /* FIFO across both kinds of request. */
    assert_true(commit.order < q.order && q.order < late.order);

    /* The waiting line times out like a query's. */
    memset(&slow, 0, sizeof slow);
    uint64_t t0 = uv_hrtime();
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, &slow), NS_DB_OK);
    assert_true(fx_wait(f, begun, &slow, 10000));
    uint64_t waited_ms = (uv_hrtime() - t0) / 1000000u;
    assert_int_equal(slow.st, NS_DB_UNAVAILABLE);
    assert_null(slow.t);
    assert_true(waited_ms >= 399 && waited_ms < 5000);
    memset(&commit2, 0, sizeof commit2);
    assert_int_equal(ns_db_txn_commit(late.t, q_cb, &commit2), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &commit2, 10000));
    assert_int_equal(commit2.st, NS_DB_OK);
    admin_value("SELECT count(*) FROM tx_excl", val, sizeof val);
    assert_string_equal(val, "1");
}

/* COPY needs a conversation a pipeline does not offer: the statement is
 * refused, the connection replaced, and the rest of the transaction is lost
 * with it. */
static void txn_copy_refused(void **state)
{
    fx *f = *state;
    static tbegin b;
    static qres q1, cp, q2, commit;
    static prober p;

    g_completed = 0;
    fx_open(f, 1, 16, 5000, 300);
    ns_db_txn *t = begin_txn(f, &b);
    txn_q(t, "SELECT 1", 0, NULL, &q1);
    txn_q(t, "COPY (SELECT 1) TO STDOUT", 0, NULL, &cp);
    txn_q(t, "SELECT 2", 0, NULL, &q2);
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(t, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &commit, 10000));
    assert_int_equal(q1.st, NS_DB_OK);
    assert_int_equal(cp.st, NS_DB_INVALID);
    assert_false(cp.had_result);
    assert_int_equal(q2.st, NS_DB_UNAVAILABLE);
    assert_int_equal(commit.st, NS_DB_UNAVAILABLE);
    assert_true(q1.order < cp.order && cp.order < q2.order && q2.order < commit.order);
    probe_until_ok(f, &p);
}

static void txn_two_at_once(void **state)
{
    fx *f = *state;
    static tbegin a, b;
    static qres pa, pb, ia, ib, seen, ca, cb;
    char val[64];

    fx_open(f, 2, 16, 5000, 1000);
    assert_int_equal(admin_exec("nst_pool", "CREATE TABLE tx_two (x int)", NULL, 0), 0);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, &a), NS_DB_OK);
    assert_int_equal(ns_db_txn_begin(f->db, begin_cb, &b), NS_DB_OK);
    assert_true(fx_wait(f, begun, &a, 10000));
    assert_true(fx_wait(f, begun, &b, 10000));
    assert_int_equal(a.st, NS_DB_OK);
    assert_int_equal(b.st, NS_DB_OK);
    txn_q(a.t, "SELECT pg_backend_pid()", 0, NULL, &pa);
    txn_q(b.t, "SELECT pg_backend_pid()", 0, NULL, &pb);
    txn_q(a.t, "INSERT INTO tx_two VALUES (1)", 0, NULL, &ia);
    txn_q(b.t, "INSERT INTO tx_two VALUES (2)", 0, NULL, &ib);
    /* b does not see a's uncommitted row. */
    txn_q(b.t, "SELECT count(*) FROM tx_two", 0, NULL, &seen);
    assert_int_equal(ns_db_txn_flush(a.t), NS_DB_OK);
    assert_int_equal(ns_db_txn_flush(b.t), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &ia, 10000));
    assert_true(fx_wait(f, q_done, &seen, 10000));
    assert_string_not_equal(pa.v[0], pb.v[0]);
    assert_int_equal(ia.st, NS_DB_OK);
    assert_int_equal(ib.st, NS_DB_OK);
    assert_string_equal(seen.v[0], "1");
    memset(&ca, 0, sizeof ca);
    memset(&cb, 0, sizeof cb);
    assert_int_equal(ns_db_txn_commit(b.t, q_cb, &cb), NS_DB_OK);
    assert_int_equal(ns_db_txn_commit(a.t, q_cb, &ca), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &ca, 10000));
    assert_true(fx_wait(f, q_done, &cb, 10000));
    assert_int_equal(ca.st, NS_DB_OK);
    assert_int_equal(cb.st, NS_DB_OK);
    admin_value("SELECT string_agg(x::text, ',' ORDER BY x) FROM tx_two", val, sizeof val);
    assert_string_equal(val, "1,2");
}

/* ---- notifications ------------------------------------------------------------ */

typedef struct {
    int calls;
    int nulls; /* "may have missed some" */
    int seen;  /* with a payload */
    char channel[64];
    char payload[128];
} nrec;

static void notify_cb(const char *channel, const char *payload, void *ud)
{
    nrec *n = ud;
    n->calls++;
    snprintf(n->channel, sizeof n->channel, "%s", channel);
    if (payload == NULL) {
        n->nulls++;
        return;
    }
    n->seen++;
    snprintf(n->payload, sizeof n->payload, "%s", payload);
}

static bool n_nulls(void *arg)
{
    return ((nrec *)arg)->nulls > 0;
}

static bool n_seen(void *arg)
{
    return ((nrec *)arg)->seen > 0;
}

static bool n_two_seen(void *arg)
{
    return ((nrec *)arg)->seen > 1;
}

static void notify_send_plain(fx *f, const char *channel, const char *payload)
{
    static qres q;
    const char *vals[] = {channel, payload};
    run_query(f, "SELECT pg_notify($1, $2)", 2, vals, &q);
    assert_int_equal(q.st, NS_DB_OK);
}

static void notify_basic(void **state)
{
    fx *f = *state;
    static nrec a, b, c, extra[16];
    static tbegin t;
    static qres inner, commit;
    char name[80];

    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    memset(extra, 0, sizeof extra);
    fx_open(f, 1, 16, 5000, 1000);
    /* Registered before anything is connected: LISTENs once it is. */
    assert_int_equal(ns_db_listen(f->db, "ch_a", notify_cb, &a), NS_DB_OK);
    assert_int_equal(a.calls, 0);
    assert_true(fx_wait(f, n_nulls, &a, 10000)); /* listening from now on */
    assert_int_equal(a.nulls, 1);
    assert_string_equal(a.channel, "ch_a");

    notify_send_plain(f, "ch_a", "hello");
    assert_true(fx_wait(f, n_seen, &a, 10000));
    assert_string_equal(a.payload, "hello");

    /* Registered on the live connection. */
    assert_int_equal(ns_db_listen(f->db, "ch_b", notify_cb, &b), NS_DB_OK);
    assert_int_equal(ns_db_listen(f->db, "_c9", notify_cb, &c), NS_DB_OK);
    assert_true(fx_wait(f, n_nulls, &b, 10000));
    assert_true(fx_wait(f, n_nulls, &c, 10000));
    notify_send_plain(f, "ch_b", "to b");
    notify_send_plain(f, "nobody", "lost");
    notify_send_plain(f, "_c9", "to c");
    notify_send_plain(f, "ch_a", "again");
    /* PostgreSQL delivers in commit order, whenever the listening backend
     * gets round to it: once the last one is here every earlier one is,
     * however loaded the machine (a fixed pause is only a bet on that). */
    assert_true(fx_wait(f, n_two_seen, &a, 10000));
    assert_int_equal(a.seen, 2);
    assert_string_equal(a.payload, "again");
    assert_int_equal(b.seen, 1);
    assert_string_equal(b.payload, "to b");
    assert_int_equal(c.seen, 1);
    assert_string_equal(c.payload, "to c");
    assert_int_equal(a.nulls + b.nulls + c.nulls, 3);

    /* A NOTIFY inside a transaction is delivered at COMMIT, not before. */
    const char *vals[] = {"ch_b", "committed"};
    ns_db_txn *tx = begin_txn(f, &t);
    txn_q(tx, "SELECT pg_notify($1, $2)", 2, vals, &inner);
    assert_int_equal(ns_db_txn_flush(tx), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &inner, 10000));
    fx_wait(f, never, NULL, 100);
    assert_int_equal(b.seen, 1);
    memset(&commit, 0, sizeof commit);
    assert_int_equal(ns_db_txn_commit(tx, q_cb, &commit), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &commit, 10000));
    assert_int_equal(commit.st, NS_DB_OK);
    assert_true(fx_wait(f, n_two_seen, &b, 10000));
    assert_string_equal(b.payload, "committed");

    /* Names: [a-z_][a-z0-9_]{0,62}, each once, at most 16. */
    static const char *const bad[] = {"", "Upper", "9lives", "a-b", "a\"b", "a b", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(ns_db_listen(f->db, bad[i], notify_cb, &a), NS_DB_INVALID);
    memset(name, 'n', 63);
    name[63] = '\0';
    assert_int_equal(ns_db_listen(f->db, name, notify_cb, &extra[0]), NS_DB_OK);
    memset(name, 'm', 64);
    name[64] = '\0';
    assert_int_equal(ns_db_listen(f->db, name, notify_cb, &a), NS_DB_INVALID);
    assert_int_equal(ns_db_listen(f->db, NULL, notify_cb, &a), NS_DB_INVALID);
    assert_int_equal(ns_db_listen(f->db, "ch_x", NULL, &a), NS_DB_INVALID);
    assert_int_equal(ns_db_listen(NULL, "ch_x", notify_cb, &a), NS_DB_INVALID);
    assert_int_equal(ns_db_listen(f->db, "ch_a", notify_cb, &a), NS_DB_INVALID);
    /* Four so far; twelve more make sixteen. */
    for (int i = 1; i <= 12; i++) {
        snprintf(name, sizeof name, "extra_%d", i);
        assert_int_equal(ns_db_listen(f->db, name, notify_cb, &extra[i]), NS_DB_OK);
    }
    assert_int_equal(ns_db_listen(f->db, "one_too_many", notify_cb, &a), NS_DB_INVALID);
    assert_true(fx_wait(f, n_nulls, &extra[12], 10000));
    for (int i = 0; i <= 12; i++)
        assert_int_equal(extra[i].nulls, 1);
    notify_send_plain(f, "extra_12", "last");
    assert_true(fx_wait(f, n_seen, &extra[12], 10000));
    assert_string_equal(extra[12].payload, "last");
}

static void notify_survives_restart(void **state)
{
    fx *f = *state;
    static nrec a;
    static prober p;

    memset(&a, 0, sizeof a);
    fx_open(f, 1, 16, 20000, 300);
    assert_int_equal(ns_db_listen(f->db, "ch_restart", notify_cb, &a), NS_DB_OK);
    assert_true(fx_wait(f, n_nulls, &a, 10000));
    notify_send_plain(f, "ch_restart", "before");
    assert_true(fx_wait(f, n_seen, &a, 10000));

    assert_int_equal(pg_sh("restart", NULL, 0), 0);
    a.nulls = 0;
    assert_true(fx_wait(f, n_nulls, &a, 30000)); /* may have missed some */
    assert_int_equal(a.nulls, 1);
    probe_until_ok(f, &p);
    a.seen = 0;
    notify_send_plain(f, "ch_restart", "after");
    assert_true(fx_wait(f, n_seen, &a, 10000));
    assert_string_equal(a.payload, "after");
    assert_int_equal(a.nulls, 1);
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

/* ---- host names ------------------------------------------------------------------
 * This program defines getaddrinfo itself. The executable comes first in
 * symbol lookup, so libuv's threadpool and libpq alike call this one; it
 * answers for the test names below and hands every other name to the real
 * function (the next definition: libc's, or the sanitizer's wrapper of it).
 * The machine's resolver is never involved. */

enum { NAME_SLOW, NAME_TWO, NAME_MOVING, NAME_MISSING, NAME_COUNT };

static const char *const test_names[NAME_COUNT] = {
    "slow.napsync.test",    /* 127.0.0.1, after 2 s */
    "two.napsync.test",     /* 127.0.0.2 (where nothing listens), then 127.0.0.1 */
    "moving.napsync.test",  /* 127.0.0.1 */
    "missing.napsync.test", /* no such name */
};

#define SLOW_LOOKUP_MS 2000

static struct {
    pthread_mutex_t lock;
    pthread_t loop_thread; /* the thread every test loop runs on */
    int calls[NAME_COUNT];
    int on_loop_thread; /* test names looked up on the loop's thread */
} L = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
static gai_fn real_gai;
static pthread_once_t real_gai_once = PTHREAD_ONCE_INIT;

static void find_real_gai(void)
{
    /* POSIX's way to take a function pointer from dlsym. */
    *(void **)&real_gai = dlsym(RTLD_NEXT, "getaddrinfo");
}

/* Visible, so that it is exported (the build hides symbols by default). */
__attribute__((visibility("default"))) int getaddrinfo(const char *node, const char *service,
                                                       const struct addrinfo *hints,
                                                       struct addrinfo **res)
{
    int which = NAME_COUNT;

    pthread_once(&real_gai_once, find_real_gai);
    if (real_gai == NULL)
        return EAI_SYSTEM;
    for (int i = 0; i < NAME_COUNT && node != NULL; i++)
        if (strcmp(node, test_names[i]) == 0)
            which = i;
    if (which == NAME_COUNT)
        return real_gai(node, service, hints, res);
    pthread_mutex_lock(&L.lock);
    L.calls[which]++;
    if (pthread_equal(pthread_self(), L.loop_thread))
        L.on_loop_thread++;
    pthread_mutex_unlock(&L.lock);
    switch (which) {
    case NAME_SLOW: {
        struct timespec ts = {SLOW_LOOKUP_MS / 1000, (SLOW_LOOKUP_MS % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return real_gai("127.0.0.1", service, hints, res);
    }
    case NAME_TWO: {
        struct addrinfo *a = NULL, *b = NULL;
        int rc = real_gai("127.0.0.2", service, hints, &a);
        if (rc != 0)
            return rc;
        rc = real_gai("127.0.0.1", service, hints, &b);
        if (rc != 0) {
            freeaddrinfo(a);
            return rc;
        }
        /* glibc allocates every node on its own, so the chain frees as one. */
        struct addrinfo *t = a;
        while (t->ai_next != NULL)
            t = t->ai_next;
        t->ai_next = b;
        *res = a;
        return 0;
    }
    case NAME_MOVING:
        return real_gai("127.0.0.1", service, hints, res);
    default:
        return EAI_NONAME;
    }
}

static void lookups_reset(void)
{
    pthread_mutex_lock(&L.lock);
    memset(L.calls, 0, sizeof L.calls);
    L.on_loop_thread = 0;
    L.loop_thread = pthread_self();
    pthread_mutex_unlock(&L.lock);
}

static int lookups(int which)
{
    pthread_mutex_lock(&L.lock);
    int n = which < NAME_COUNT ? L.calls[which] : L.on_loop_thread;
    pthread_mutex_unlock(&L.lock);
    return n;
}

#define ON_LOOP_THREAD NAME_COUNT

/* The address the server sees the pool's connection come from ("" over a
 * Unix socket). */
static void client_addr(fx *f, char *out, size_t outlen)
{
    static qres q;
    run_query(f, "SELECT coalesce(host(inet_client_addr()), '')", 0, NULL, &q);
    assert_int_equal(q.st, NS_DB_OK);
    snprintf(out, outlen, "%s", q.v[0]);
}

typedef struct {
    uv_timer_t timer;
    int ticks;
} ticker;

static void tick_cb(uv_timer_t *t)
{
    ((ticker *)t->data)->ticks++;
}

/* A name that takes 2 s to resolve: the loop keeps running meanwhile (a 10
 * ms timer keeps firing), the lookup runs off the loop's thread, one lookup
 * serves the whole pool and the listener, and the connection then goes to
 * the address it found, over TCP, with host= still the name. */
static void lookup_off_loop(void **state)
{
    fx *f = *state;
    static ticker tk;
    static nrec n;
    char ci[sizeof G.conninfo], addr[64];

    snprintf(ci, sizeof ci, "host=%s port=%s user=%s dbname=nst_pool", test_names[NAME_SLOW],
             G.port, G.user);
    memset(&n, 0, sizeof n);
    memset(&tk, 0, sizeof tk);
    lookups_reset();
    uv_timer_init(&f->loop, &tk.timer);
    tk.timer.data = &tk;
    uv_timer_start(&tk.timer, tick_cb, 10, 10);
    uint64_t t0 = uv_hrtime();
    fx_open_ci(f, ci, 2, 8, 20000, 1000);
    assert_int_equal(ns_db_listen(f->db, "slow_ch", notify_cb, &n), NS_DB_OK);
    bool up = fx_wait(f, db_up, f, 15000);
    uint64_t waited_ms = (uv_hrtime() - t0) / 1000000u;
    int ticks = tk.ticks;
    uv_close((uv_handle_t *)&tk.timer, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);

    assert_true(up);
    assert_true(waited_ms >= SLOW_LOOKUP_MS - 100);
    if (ticks < 100)
        fprintf(stderr, "lookup_off_loop: %d ticks in %llu ms\n", ticks,
                (unsigned long long)waited_ms);
    assert_true(ticks >= 100);
    assert_true(fx_wait(f, n_nulls, &n, 10000)); /* the listener is up too */
    assert_int_equal(lookups(NAME_SLOW), 1);
    assert_int_equal(lookups(ON_LOOP_THREAD), 0);
    client_addr(f, addr, sizeof addr);
    assert_string_equal(addr, "127.0.0.1");
    assert_int_equal(f->downs, 0);
}

/* Multi-host strings keep working: a name that does not resolve is left
 * out, a name with two addresses is tried at both (the first refuses), the
 * port list stays aligned, and entries that are no names (a socket
 * directory) are kept as they are. libpq never looks a name up itself. */
static void lookup_every_address(void **state)
{
    fx *f = *state;
    static qres q;
    char ci[sizeof G.conninfo], addr[64];

    lookups_reset();
    snprintf(ci, sizeof ci,
             "host=%s,%s port=%s,%s user=%s dbname=nst_pool target_session_attrs=read-write",
             test_names[NAME_MISSING], test_names[NAME_TWO], G.port, G.port, G.user);
    fx_open_ci(f, ci, 1, 8, 10000, 500);
    assert_true(fx_wait(f, db_up, f, 10000));
    client_addr(f, addr, sizeof addr);
    assert_string_equal(addr, "127.0.0.1");
    assert_int_equal(lookups(NAME_MISSING), 1);
    assert_int_equal(lookups(NAME_TWO), 1);
    f->close_called = true;
    ns_db_close(f->db, on_closed, f);
    assert_true(fx_wait(f, fx_closed, f, 10000));

    f->closed = f->close_called = false;
    int w = snprintf(ci, sizeof ci, "host='%s,%s' port=%s user=%s dbname=nst_pool",
                     test_names[NAME_MISSING], G.host, G.port, G.user);
    assert_true(w > 0 && (size_t)w < sizeof ci);
    fx_open_ci(f, ci, 1, 8, 10000, 500);
    assert_true(fx_wait(f, db_up, f, 10000));
    client_addr(f, addr, sizeof addr);
    assert_string_equal(addr, ""); /* the socket directory */
    f->close_called = true;
    ns_db_close(f->db, on_closed, f);
    assert_true(fx_wait(f, fx_closed, f, 10000));

    /* Nothing resolves: queries wait, then time out; each attempt looks
     * the name up again. */
    f->closed = f->close_called = false;
    snprintf(ci, sizeof ci, "host=%s port=%s user=%s dbname=nst_pool", test_names[NAME_MISSING],
             G.port, G.user);
    int before = lookups(NAME_MISSING);
    fx_open_ci(f, ci, 1, 8, 1000, 200);
    memset(&q, 0, sizeof q);
    assert_int_equal(ns_db_query(f->db, "SELECT 1", 0, NULL, q_cb, &q), NS_DB_OK);
    assert_true(fx_wait(f, q_done, &q, 10000));
    assert_int_equal(q.st, NS_DB_UNAVAILABLE);
    assert_false(ns_db_connected(f->db));
    assert_true(lookups(NAME_MISSING) - before >= 2);
    assert_int_equal(lookups(ON_LOOP_THREAD), 0);
}

/* A reconnect after the connection is lost looks the name up again (a
 * failover moves the name), once the last lookup is older than a second. */
static void lookup_again_after_loss(void **state)
{
    fx *f = *state;
    static prober first, second;
    char ci[sizeof G.conninfo], sql[96];

    lookups_reset();
    snprintf(ci, sizeof ci, "host=%s port=%s user=%s dbname=nst_pool", test_names[NAME_MOVING],
             G.port, G.user);
    fx_open_ci(f, ci, 1, 8, 20000, 300);
    probe_until_ok(f, &first);
    assert_int_equal(lookups(NAME_MOVING), 1);
    fx_wait(f, never, NULL, 1100);

    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", first.pid);
    assert_int_equal(admin_exec("postgres", sql, NULL, 0), 0);
    assert_true(fx_wait(f, db_down, f, 10000));
    probe_until_ok(f, &second);
    assert_string_not_equal(first.pid, second.pid);
    assert_true(lookups(NAME_MOVING) >= 2);
    assert_int_equal(lookups(ON_LOOP_THREAD), 0);
}

/* A server that accepts connections and never says a word; it notes when
 * the first client hangs up. */
typedef struct {
    uv_tcp_t srv;
    uv_tcp_t peers[4];
    bool peer_open[4];
    int npeers;
    uint64_t first_hangup_ns;
} mute_server;

static void mute_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char sink[4096];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(sink, sizeof sink);
}

static void mute_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mute_server *m = s->data;
    (void)buf;
    if (nread >= 0)
        return;
    if (m->first_hangup_ns == 0)
        m->first_hangup_ns = uv_hrtime();
    for (int i = 0; i < m->npeers; i++) {
        if (&m->peers[i] == (uv_tcp_t *)s && m->peer_open[i]) {
            m->peer_open[i] = false;
            uv_close((uv_handle_t *)s, NULL);
        }
    }
}

static void mute_connection(uv_stream_t *srv, int status)
{
    mute_server *m = srv->data;
    if (status != 0 || m->npeers == 4)
        return;
    uv_tcp_t *p = &m->peers[m->npeers];
    uv_tcp_init(srv->loop, p);
    p->data = m;
    m->peer_open[m->npeers++] = true;
    if (uv_accept(srv, (uv_stream_t *)p) == 0)
        uv_read_start((uv_stream_t *)p, mute_alloc, mute_read);
}

static bool mute_hung_up(void *arg)
{
    return ((mute_server *)arg)->first_hangup_ns != 0;
}

/* The connect deadline counts from the attempt, not from the loop's cached
 * time: the pool is opened after 2.2 s of blocking work (as the daemon
 * opens it after its blocking migrations), with connect_timeout=2, to a
 * server that never answers. The first attempt must get its 2 s. */
static void deadline_from_now(void **state)
{
    fx *f = *state;
    static mute_server m;
    struct sockaddr_in sa;
    int salen = sizeof sa;
    char ci[256];

    memset(&m, 0, sizeof m);
    uv_tcp_init(&f->loop, &m.srv);
    m.srv.data = &m;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&m.srv, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&m.srv, 8, mute_connection), 0);
    assert_int_equal(uv_tcp_getsockname(&m.srv, (struct sockaddr *)&sa, &salen), 0);
    snprintf(ci, sizeof ci,
             "hostaddr=127.0.0.1 port=%d user=nobody dbname=nobody connect_timeout=2 "
             "sslmode=disable",
             ntohs(sa.sin_port));

    struct timespec ts = {2, 200000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    uint64_t t0 = uv_hrtime();
    fx_open_ci(f, ci, 1, 4, 10000, 10000);
    bool hung_up = fx_wait(f, mute_hung_up, &m, 10000);
    uint64_t after_ms = hung_up ? (m.first_hangup_ns - t0) / 1000000u : 0;
    /* Close the server before asserting: teardown runs the loop until every
     * handle is closed. */
    uv_close((uv_handle_t *)&m.srv, NULL);
    for (int i = 0; i < m.npeers; i++) {
        if (m.peer_open[i]) {
            m.peer_open[i] = false;
            uv_close((uv_handle_t *)&m.peers[i], NULL);
        }
    }
    assert_true(hung_up);
    if (after_ms < 1900)
        fprintf(stderr, "deadline_from_now: the first attempt was cut after %llu ms\n",
                (unsigned long long)after_ms);
    assert_true(after_ms >= 1900);
    assert_true(after_ms < 5000);
}

/* ---- connection strings that must not leak --------------------------------------- */

#define LEAKY_URI "postgresql://u:Sup3r%zzSecret@h/db"

static void conninfo_check_withholds(void **state)
{
    (void)state;
    static const char *const bad[] = {
        LEAKY_URI, "host=x password",   /* no '=' */
        "host=x Sup3rSecret",           /* a password without its key */
        "host=x password='Sup3rSecret", /* unterminated quote */
    };
    static const char *const expect = "the database connection string is malformed (libpq's "
                                      "explanation is withheld because it may quote the "
                                      "password)";
    char err[512], dir[PATH_MAX];
    ns_registry reg;

    /* What the check exists for: libpq itself quotes the secret. */
    char *perr = NULL;
    assert_null(PQconninfoParse(LEAKY_URI, &perr));
    assert_non_null(perr);
    assert_non_null(strstr(perr, "Sup3r"));
    PQfreemem(perr);

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(err, 0, sizeof err);
        assert_int_equal(ns_db_conninfo_check(bad[i], err, sizeof err), -1);
        assert_string_equal(err, expect);
    }
    assert_int_equal(ns_db_conninfo_check("", err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(ns_db_conninfo_check(" \t\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(ns_db_conninfo_check(NULL, err, sizeof err), -1);
    assert_int_equal(ns_db_conninfo_check(LEAKY_URI, NULL, 0), -1);
    assert_int_equal(ns_db_conninfo_check(G.conninfo, err, sizeof err), 0);
    assert_int_equal(ns_db_conninfo_check("postgresql://u:Sup3rSecret@h:5432/db", err, sizeof err),
                     0);

    /* The blocking users of the string say the same, not libpq's words. */
    make_dir(dir, sizeof dir, "mig_leaky");
    assert_int_equal(ns_migrate_check(LEAKY_URI, dir, err, sizeof err), -1);
    assert_null(strstr(err, "Sup3r"));
    assert_non_null(strstr(err, "malformed"));
    int applied = -1;
    assert_int_equal(ns_migrate_run(LEAKY_URI, dir, &applied, err, sizeof err), -1);
    assert_null(strstr(err, "Sup3r"));
    assert_int_equal(applied, 0);
    assert_int_equal(ns_registry_load(LEAKY_URI, &reg, err, sizeof err), -1);
    assert_null(strstr(err, "Sup3r"));
    assert_non_null(strstr(err, "malformed"));
}

/* Runs napsyncd with args (NULL-terminated, after the program name); its
 * stdout and stderr go to out. Returns its exit status, or -1 if it did not
 * exit within 10 s (it is killed). */
static int run_napsyncd(const char *const *args, char *out, size_t outlen)
{
    extern char **environ;
    const char *build = getenv("NS_BUILD_DIR");
    char prog[PATH_MAX];
    char *argv[16];
    int fds[2], n = 0;

    assert_non_null(build);
    assert_true(join(prog, sizeof prog, build, "napsyncd"));
    argv[n++] = prog;
    for (; *args != NULL && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    assert_int_equal(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    assert_int_equal(rc, 0);
    /* The reads end at EOF: when the daemon exits, or is killed below. */
    size_t used = 0;
    int flags = fcntl(fds[0], F_GETFL);
    assert_int_equal(fcntl(fds[0], F_SETFL, flags | O_NONBLOCK), 0);
    int st = 0;
    bool exited = false;
    for (int waited = 0; !exited && waited < 1000; waited++) {
        ssize_t got;
        while (used + 1 < outlen && (got = read(fds[0], out + used, outlen - 1 - used)) > 0)
            used += (size_t)got;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            exited = true;
            break;
        }
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    ssize_t got;
    while (used + 1 < outlen && (got = read(fds[0], out + used, outlen - 1 - used)) > 0)
        used += (size_t)got;
    out[used] = '\0';
    close(fds[0]);
    return exited && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Every action of napsyncd refuses a malformed --database before it does
 * anything, with exit status 2, and never prints the string. */
static void daemon_withholds_conninfo(void **state)
{
    (void)state;
    char out[8192], file[PATH_MAX], sql[PATH_MAX];
    /* Real migrations, so that --migrate would get as far as connecting. */
    assert_true(join(sql, sizeof sql, G.src, "sql"));
    const char *const flags[][2] = {
        {"--database", LEAKY_URI},
        {"--sql-dir", sql},
        {"--tls-cert", "/nonexistent/c.pem"},
        {"--tls-key", "/nonexistent/k.pem"},
        {"--tls-ca", "/nonexistent/ca.pem"},
    };
    const char *const actions[] = {"--check-config", "--migrate", NULL};

    for (size_t a = 0; a < sizeof actions / sizeof *actions; a++) {
        const char *args[16];
        size_t n = 0;
        for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
            args[n++] = flags[i][0];
            args[n++] = flags[i][1];
        }
        if (actions[a] != NULL)
            args[n++] = actions[a];
        args[n] = NULL;
        int st = run_napsyncd(args, out, sizeof out);
        if (st != 2 || strstr(out, "Sup3r") != NULL)
            fprintf(stderr, "napsyncd %s: exit %d, said:\n%s\n",
                    actions[a] != NULL ? actions[a] : "(run)", st, out);
        assert_int_equal(st, 2);
        assert_null(strstr(out, "Sup3r"));
        assert_non_null(strstr(out, "malformed"));
    }

    /* The same string from a configuration file. */
    assert_true(join(file, sizeof file, G.tmp, "leaky.conf"));
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fprintf(fp, "database = host=x Sup3rSecret\ntls_cert = /nonexistent/c.pem\n"
                "tls_key = /nonexistent/k.pem\ntls_ca = /nonexistent/ca.pem\n");
    assert_int_equal(fclose(fp), 0);
    const char *const from_file[] = {"--config", file, "--check-config", NULL};
    assert_int_equal(run_napsyncd(from_file, out, sizeof out), 2);
    assert_null(strstr(out, "Sup3r"));
    assert_non_null(strstr(out, "malformed"));
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
        cmocka_unit_test_setup_teardown(txn_commit_visible, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_bad_arguments, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_failed_statement, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_failed_with_commit_queued, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_commit_fails, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_callbacks_drive, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_ten_thousand, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_results_read_inside_call, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_terminated, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_close_open, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_close_from_statement, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_pool_exhausted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_two_at_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(txn_copy_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(notify_basic, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(notify_survives_restart, fx_setup, fx_teardown),
        cmocka_unit_test(migrate_project_sql),
        cmocka_unit_test(migrate_changed_file),
        cmocka_unit_test(migrate_file_names),
        cmocka_unit_test(migrate_failures),
        cmocka_unit_test(migrate_concurrently),
        cmocka_unit_test_setup_teardown(lookup_off_loop, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(lookup_every_address, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(lookup_again_after_loss, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(deadline_from_now, fx_setup, fx_teardown),
        cmocka_unit_test(conninfo_check_withholds),
        cmocka_unit_test(daemon_withholds_conninfo),
    };
    return cmocka_run_group_tests_name("db", tests, group_setup, group_teardown);
}
