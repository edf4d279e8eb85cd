/* PostgreSQL for the event loop (see db.h).
 *
 * Each pool connection is a small state machine changed only through
 * conn_set_state():
 *
 *   BACKOFF --timer--> CONNECTING --PQconnectPoll OK--> IDLE <--> BUSY
 *      ^                   |                              |        |
 *      +---- failure, timeout, lost socket ---------------+--------+
 *   (any) --ns_db_close--> CLOSED
 *
 * Rules that keep the re-entrancy manageable:
 *  - user callbacks run only from loop callbacks (poll, timer) and from
 *    ns_db_close, never inside ns_db_query, so a callback may query again;
 *  - a request is detached from the pool before its callback runs, and after
 *    any callback the caller re-checks db->closing before touching the pool;
 *  - nothing is freed synchronously by ns_db_close: the pool lives until the
 *    last handle's close callback, so stack frames below a callback that
 *    closed the pool stay valid.
 *
 * libpq limitation: PQconnectStartParams resolves a host name with a
 * blocking getaddrinfo(). Use a socket directory, an IP address or hostaddr=
 * in the connection string where that matters. */
#include "db.h"

#include <assert.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#define DB_POOL_MAX            256u
#define DB_MAX_PARAMS          65535 /* the protocol's parameter count is 16 bits */
#define DB_BACKOFF_START_MS    100u
#define DB_CONNECT_DEFAULT_MS  10000u
#define DB_CONNECT_MIN_MS      2000u /* libpq's own floor for connect_timeout */
#define DB_SWEEP_MIN_MS        10u
#define DB_SWEEP_MAX_MS        1000u
#define DB_TIMEOUT_SECONDS_MAX 86400

typedef enum {
    DB_CONN_BACKOFF,
    DB_CONN_CONNECTING,
    DB_CONN_IDLE,
    DB_CONN_BUSY,
    DB_CONN_CLOSED,
} db_conn_state;

/* One allocation: the struct, the parameter pointer array, then the SQL text
 * and the parameter texts. */
typedef struct db_req {
    struct db_req *next;
    ns_db_cb cb;
    void *ud;
    uint64_t enqueued_ms;
    int nparams;
    const char *sql;
    const char **values;
} db_req;

struct ns_db_result {
    const PGresult *pg; /* owned by db.c; NULL reads as an empty result */
};

typedef struct db_conn db_conn;

/* A poll handle outlives its connection's use of it (it is freed in its
 * close callback), so it is allocated on its own. finish is the PGconn to
 * PQfinish once libuv no longer watches the socket. */
typedef struct {
    uv_poll_t handle;
    ns_db *db;
    db_conn *conn; /* NULL once detached */
    PGconn *finish;
    int fd;
    int events;
} db_poll;

struct db_conn {
    ns_db *db;
    db_conn_state state;
    PGconn *pg;
    db_poll *poll;
    uv_timer_t timer;    /* connect deadline, reconnect delay, deferred break */
    uint64_t backoff_ms; /* next reconnect delay before jitter; 0 after a success */
    bool flushing;       /* PQflush returned 1: the query is not fully sent yet */
    db_req *inflight;
    PGresult *result; /* the query's result, kept until PQgetResult says done */
};

struct ns_db {
    uv_loop_t *loop;
    char *conninfo;
    uint32_t pool_size;
    uint32_t queue_limit;
    uint64_t queue_timeout_ms;
    uint64_t reconnect_max_ms;
    uint64_t connect_timeout_ms;
    uint64_t sweep_ms;
    db_conn *conns;
    db_req *qhead;
    db_req *qtail;
    uint32_t qlen;
    uv_timer_t sweep; /* fails queued requests older than queue_timeout_ms */
    uint32_t nup;     /* connections IDLE or BUSY */
    uint32_t open_handles;
    uint64_t rng;
    bool closing;
    void (*on_state)(bool up, const char *detail, void *ud);
    void *state_ud;
    char last_error[256]; /* why the last connection broke, for on_state */
    void (*done)(void *ud);
    void *done_ud;
};

static void db_on_poll(uv_poll_t *h, int status, int events);
static void conn_on_timer(uv_timer_t *t);
static void conn_broken(db_conn *c);
static void db_pump(ns_db *db);
static void db_on_sweep(uv_timer_t *t);

static uint64_t db_now_ms(void)
{
    /* Not uv_now(): the loop's cached time is stale when a query is queued
     * from outside the loop (before uv_run, or after a long blocking call),
     * which would make a fresh request look old to the sweep. */
    return uv_hrtime() / 1000000u;
}

static uint64_t db_rand(ns_db *db)
{
    /* xorshift64*: only spreads reconnect attempts, needs no strength. */
    db->rng ^= db->rng >> 12;
    db->rng ^= db->rng << 25;
    db->rng ^= db->rng >> 27;
    return db->rng * 2685821657736338717ull;
}

static void db_ignore_notice(void *arg, const PGresult *res)
{
    /* libpq prints notices to stderr by default, and "terminating connection
     * due to administrator command" reaches an idle connection as one; the
     * resulting broken connection is what callers see. */
    (void)arg;
    (void)res;
}

static void conn_set_state(db_conn *c, db_conn_state s)
{
    bool was_up = c->state == DB_CONN_IDLE || c->state == DB_CONN_BUSY;
    bool up = s == DB_CONN_IDLE || s == DB_CONN_BUSY;

    assert(c->state != DB_CONN_CLOSED);
    assert(s != DB_CONN_BUSY || c->state == DB_CONN_IDLE);
    assert(s != DB_CONN_IDLE || c->state == DB_CONN_CONNECTING || c->state == DB_CONN_BUSY);
    ns_db *db = c->db;
    if (was_up && !up)
        db->nup--;
    else if (!was_up && up)
        db->nup++;
    c->state = s;
    if (db->on_state == NULL || db->closing)
        return;
    if (was_up && !up && db->nup == 0)
        db->on_state(false, db->last_error[0] ? db->last_error : "connection lost", db->state_ud);
    else if (!was_up && up && db->nup == 1)
        db->on_state(true, "connected", db->state_ud);
}

/* Keeps libpq's first line of explanation for on_state. */
static void conn_note_error(db_conn *c)
{
    const char *msg = c->pg ? PQerrorMessage(c->pg) : NULL;
    if (msg == NULL || *msg == '\0')
        return;
    size_t n = strcspn(msg, "\n");
    if (n >= sizeof(c->db->last_error))
        n = sizeof(c->db->last_error) - 1;
    memcpy(c->db->last_error, msg, n);
    c->db->last_error[n] = '\0';
}

/* ---- the request queue ---------------------------------------------------- */

static db_req *req_new(const char *sql, int nparams, const char *const *values, ns_db_cb cb,
                       void *ud)
{
    size_t sql_len = strlen(sql) + 1;
    size_t total = sizeof(db_req) + (size_t)nparams * sizeof(char *) + sql_len;
    for (int i = 0; i < nparams; i++) {
        if (values[i] == NULL)
            continue;
        size_t len = strlen(values[i]) + 1;
        if (total > SIZE_MAX - len)
            return NULL;
        total += len;
    }
    db_req *q = malloc(total);
    if (q == NULL)
        return NULL;
    char *p = (char *)(q + 1);
    q->next = NULL;
    q->cb = cb;
    q->ud = ud;
    q->enqueued_ms = 0;
    q->nparams = nparams;
    q->values = nparams > 0 ? (const char **)(void *)p : NULL;
    p += (size_t)nparams * sizeof(char *);
    memcpy(p, sql, sql_len);
    q->sql = p;
    p += sql_len;
    for (int i = 0; i < nparams; i++) {
        if (values[i] == NULL) {
            q->values[i] = NULL;
            continue;
        }
        size_t len = strlen(values[i]) + 1;
        memcpy(p, values[i], len);
        q->values[i] = p;
        p += len;
    }
    return q;
}

static void db_queue_push_back(ns_db *db, db_req *q)
{
    q->next = NULL;
    if (db->qtail != NULL)
        db->qtail->next = q;
    else
        db->qhead = q;
    db->qtail = q;
    db->qlen++;
}

static void db_queue_push_front(ns_db *db, db_req *q)
{
    q->next = db->qhead;
    db->qhead = q;
    if (db->qtail == NULL)
        db->qtail = q;
    db->qlen++;
}

static db_req *db_queue_pop(ns_db *db)
{
    db_req *q = db->qhead;
    if (q == NULL)
        return NULL;
    db->qhead = q->next;
    if (db->qhead == NULL)
        db->qtail = NULL;
    db->qlen--;
    q->next = NULL;
    return q;
}

/* The sweep runs only while something waits, so an idle pool costs no
 * wake-ups. */
static void db_sweep_update(ns_db *db)
{
    bool active = uv_is_active((uv_handle_t *)&db->sweep);
    if (db->qhead != NULL && !active)
        uv_timer_start(&db->sweep, db_on_sweep, db->sweep_ms, db->sweep_ms);
    else if (db->qhead == NULL && active)
        uv_timer_stop(&db->sweep);
}

/* ---- handles and teardown ------------------------------------------------- */

static void db_finalize(ns_db *db)
{
    void (*done)(void *) = db->done;
    void *ud = db->done_ud;

    explicit_bzero(db->conninfo, strlen(db->conninfo));
    free(db->conninfo);
    free(db->conns);
    free(db);
    if (done != NULL)
        done(ud);
}

static void db_handle_closed(ns_db *db)
{
    assert(db->open_handles > 0);
    db->open_handles--;
    if (db->open_handles == 0 && db->closing)
        db_finalize(db);
}

static void db_poll_closed(uv_handle_t *h)
{
    db_poll *p = h->data;
    ns_db *db = p->db;

    if (p->finish != NULL)
        PQfinish(p->finish);
    free(p);
    db_handle_closed(db);
}

static void db_timer_closed(uv_handle_t *h)
{
    db_conn *c = h->data;
    db_handle_closed(c->db);
}

static void db_sweep_closed(uv_handle_t *h)
{
    db_handle_closed(h->data);
}

/* Stops and closes the poll handle; finish (if any) is PQfinish-ed in the
 * close callback, when libuv no longer watches its socket. */
static void conn_close_poll(db_conn *c, PGconn *finish)
{
    db_poll *p = c->poll;

    c->poll = NULL;
    p->conn = NULL;
    p->finish = finish;
    uv_poll_stop(&p->handle);
    uv_close((uv_handle_t *)&p->handle, db_poll_closed);
}

/* Watches the connection's current socket for events, replacing the poll
 * handle if libpq moved to another socket (it does while connecting, when
 * it tries the next address). While connecting the poll is re-armed even on
 * an unchanged descriptor number: libpq may have closed the socket and
 * opened a new one that got the same number, which the kernel dropped from
 * the epoll set. */
static int conn_watch(db_conn *c, int events)
{
    int fd = PQsocket(c->pg);

    if (fd < 0)
        return -1;
    if (c->poll != NULL && c->poll->fd != fd)
        conn_close_poll(c, NULL);
    if (c->poll == NULL) {
        db_poll *p = calloc(1, sizeof *p);
        if (p == NULL)
            return -1;
        if (uv_poll_init(c->db->loop, &p->handle, fd) != 0) {
            free(p); /* an uninitialised handle needs no uv_close */
            return -1;
        }
        p->handle.data = p;
        p->db = c->db;
        p->conn = c;
        p->fd = fd;
        c->db->open_handles++;
        c->poll = p;
    } else if (c->poll->events == events && c->state != DB_CONN_CONNECTING &&
               uv_is_active((uv_handle_t *)&c->poll->handle)) {
        return 0;
    }
    if (uv_poll_start(&c->poll->handle, events, db_on_poll) != 0)
        return -1;
    c->poll->events = events;
    return 0;
}

/* Releases the connection's libpq and libuv resources; runs no callback. */
static void conn_drop(db_conn *c)
{
    uv_timer_stop(&c->timer);
    if (c->result != NULL) {
        PQclear(c->result);
        c->result = NULL;
    }
    c->flushing = false;
    if (c->poll != NULL)
        conn_close_poll(c, c->pg);
    else if (c->pg != NULL)
        PQfinish(c->pg); /* its socket was never watched */
    c->pg = NULL;
}

/* The delay before the next attempt: doubling from DB_BACKOFF_START_MS up to
 * reconnect_max_ms, less up to a quarter of it at random so that several
 * daemons do not return in lockstep after a database restart (taking the
 * jitter off keeps the ceiling a ceiling). */
static uint64_t conn_next_delay(db_conn *c)
{
    ns_db *db = c->db;
    uint64_t base = c->backoff_ms != 0 ? c->backoff_ms : DB_BACKOFF_START_MS;

    if (base > db->reconnect_max_ms)
        base = db->reconnect_max_ms;
    c->backoff_ms = base > db->reconnect_max_ms / 2 ? db->reconnect_max_ms : base * 2;
    uint64_t spread = base / 4;
    return base - spread + (spread > 0 ? db_rand(db) % (spread + 1) : 0);
}

/* ---- connecting ----------------------------------------------------------- */

static void conn_start(db_conn *c)
{
    ns_db *db = c->db;
    /* Keywords are applied in order: the connection string may override the
     * application name, but not the encoding, because everything napsync
     * sends and receives is UTF-8. */
    static const char *const keys[] = {"fallback_application_name", "dbname", "client_encoding",
                                       NULL};
    const char *const vals[] = {"napsyncd", db->conninfo, "UTF8", NULL};

    c->pg = PQconnectStartParams(keys, vals, 1);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_broken(c);
        return;
    }
    PQsetNoticeReceiver(c->pg, db_ignore_notice, NULL);
    conn_set_state(c, DB_CONN_CONNECTING);
    /* libpq does not apply connect_timeout to an asynchronous connection. */
    uv_timer_start(&c->timer, conn_on_timer, db->connect_timeout_ms, 0);
    /* As libpq documents: start as if PQconnectPoll said POLLING_WRITING. */
    if (conn_watch(c, UV_WRITABLE) != 0)
        conn_broken(c);
}

static void conn_connect_step(db_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(c, UV_READABLE) != 0)
            conn_broken(c);
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, UV_WRITABLE) != 0)
            conn_broken(c);
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        conn_broken(c);
        return;
    }
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_broken(c);
        return;
    }
    uv_timer_stop(&c->timer);
    c->backoff_ms = 0;
    conn_set_state(c, DB_CONN_IDLE);
    /* Idle connections keep watching: a server shutdown arrives as a message
     * and then end-of-file, and is noticed before a query is sent into it. */
    if (conn_watch(c, UV_READABLE) != 0) {
        conn_broken(c);
        return;
    }
    db_pump(c->db);
}

/* The connection is gone or unusable: free it, fail the query it was
 * running (it may or may not have committed), and retry later. The caller
 * must return right after: the callback may have closed the pool. */
static void conn_broken(db_conn *c)
{
    db_req *q = c->inflight;

    c->inflight = NULL;
    conn_note_error(c);
    conn_drop(c);
    conn_set_state(c, DB_CONN_BACKOFF);
    uv_timer_start(&c->timer, conn_on_timer, conn_next_delay(c), 0);
    if (q != NULL) {
        q->cb(NS_DB_UNAVAILABLE, NULL, q->ud);
        free(q);
    }
}

static void conn_on_timer(uv_timer_t *t)
{
    db_conn *c = t->data;

    switch (c->state) {
    case DB_CONN_BACKOFF:
        conn_start(c);
        break;
    case DB_CONN_CONNECTING: /* connect deadline */
    case DB_CONN_BUSY:       /* a break deferred out of ns_db_query */
        conn_broken(c);
        break;
    default:
        break;
    }
}

/* ---- queries -------------------------------------------------------------- */

static bool db_result_failed(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR || st == PGRES_FATAL_ERROR;
}

/* Sends q on an idle connection. Returns -1 if the server cannot have
 * received all of it (q was not run; the caller queues it again and breaks
 * the connection), 0 once q is in flight. */
static int conn_send(db_conn *c, db_req *q)
{
    if (!PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->values, NULL, NULL, 0))
        return -1;
    int r = PQflush(c->pg);
    if (r < 0)
        return -1;
    c->inflight = q;
    c->flushing = r == 1;
    conn_set_state(c, DB_CONN_BUSY);
    if (conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0) {
        /* The query may be running: it must fail as in flight, but not from
         * inside ns_db_query. The timer breaks the connection next turn. */
        uv_timer_start(&c->timer, conn_on_timer, 0, 0);
    }
    return 0;
}

/* Hands queued requests to idle connections, first idle first. Runs no
 * callback, so it is never re-entered. */
static void db_pump(ns_db *db)
{
    uint32_t i = 0;

    while (db->qhead != NULL && i < db->pool_size) {
        db_conn *c = &db->conns[i];
        if (c->state != DB_CONN_IDLE) {
            i++;
            continue;
        }
        db_req *q = db_queue_pop(db);
        if (conn_send(c, q) != 0) {
            db_queue_push_front(db, q);
            conn_broken(c); /* nothing in flight: no callback */
        }
    }
    db_sweep_update(db);
}

static void conn_complete(db_conn *c)
{
    ns_db *db = c->db;
    db_req *q = c->inflight;
    PGresult *res = c->result;
    ns_db_result r = {res};

    c->inflight = NULL;
    c->result = NULL;
    conn_set_state(c, DB_CONN_IDLE);
    q->cb(res != NULL && db_result_failed(res) ? NS_DB_QUERY_FAILED : NS_DB_OK, &r, q->ud);
    PQclear(res);
    free(q);
    if (!db->closing)
        db_pump(db);
}

/* COPY and other sub-protocols need a conversation ns_db_query does not
 * offer, and the connection cannot return to idle without one: replace it
 * and refuse the statement. */
static void conn_misuse(db_conn *c)
{
    db_req *q = c->inflight;

    c->inflight = NULL;
    conn_broken(c);
    q->cb(NS_DB_INVALID, NULL, q->ud);
    free(q);
}

/* Collects results until libpq reports the query done. The callback runs
 * only then: a FATAL error (server shutdown) is followed by end-of-file, not
 * by ReadyForQuery, and must fail as NS_DB_UNAVAILABLE, not QUERY_FAILED. */
static void conn_collect(db_conn *c)
{
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            conn_complete(c);
            return;
        }
        switch (PQresultStatus(r)) {
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
        case PGRES_EMPTY_QUERY:
        case PGRES_BAD_RESPONSE:
        case PGRES_NONFATAL_ERROR:
        case PGRES_FATAL_ERROR:
            /* One statement gives one result; should there be more, the
             * first error wins, else the last result. */
            if (c->result != NULL && db_result_failed(c->result)) {
                PQclear(r);
            } else {
                PQclear(c->result);
                c->result = r;
            }
            break;
        default:
            PQclear(r);
            conn_misuse(c);
            return;
        }
    }
}

static void conn_io(db_conn *c, int events)
{
    if (events & UV_READABLE) {
        if (!PQconsumeInput(c->pg)) {
            conn_broken(c);
            return;
        }
        PGnotify *n;
        while ((n = PQnotifies(c->pg)) != NULL)
            PQfreemem(n);
    }
    /* libpq: while a send is incomplete, either readiness calls for PQflush
     * (the server may be waiting for us to read before it reads more). */
    if (c->flushing) {
        int r = PQflush(c->pg);
        if (r < 0) {
            conn_broken(c);
            return;
        }
        if (r == 0) {
            c->flushing = false;
            if (conn_watch(c, UV_READABLE) != 0) {
                conn_broken(c);
                return;
            }
        }
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_broken(c);
        return;
    }
    if (c->state == DB_CONN_BUSY)
        conn_collect(c);
}

static void db_on_poll(uv_poll_t *h, int status, int events)
{
    db_poll *p = h->data;
    db_conn *c = p->conn;

    if (c == NULL)
        return;
    /* While connecting, an error on the socket (a refused address) is for
     * PQconnectPoll to read: it goes on to the next address. */
    if (c->state == DB_CONN_CONNECTING) {
        conn_connect_step(c);
        return;
    }
    if (status < 0) {
        conn_broken(c);
        return;
    }
    conn_io(c, events);
}

static void db_on_sweep(uv_timer_t *t)
{
    ns_db *db = t->data;

    /* FIFO: the oldest are first. A callback may queue more; those are
     * younger than now, so the loop stops at them. */
    while (!db->closing && db->qhead != NULL &&
           db->qhead->enqueued_ms + db->queue_timeout_ms <= db_now_ms()) {
        db_req *q = db_queue_pop(db);
        q->cb(NS_DB_UNAVAILABLE, NULL, q->ud);
        free(q);
    }
    if (!db->closing)
        db_sweep_update(db);
}

/* ---- API ------------------------------------------------------------------ */

/* libpq honours connect_timeout only when it blocks; do it ourselves, with
 * the same meaning (seconds, at least 2; unset or <= 0: our default). */
static uint64_t db_connect_timeout(const PQconninfoOption *opts)
{
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "connect_timeout") != 0 || o->val == NULL)
            continue;
        char *end;
        long s = strtol(o->val, &end, 10);
        if (end == o->val || *end != '\0' || s <= 0)
            return DB_CONNECT_DEFAULT_MS;
        if (s > DB_TIMEOUT_SECONDS_MAX)
            s = DB_TIMEOUT_SECONDS_MAX;
        uint64_t ms = (uint64_t)s * 1000u;
        return ms < DB_CONNECT_MIN_MS ? DB_CONNECT_MIN_MS : ms;
    }
    return DB_CONNECT_DEFAULT_MS;
}

int ns_db_open(uv_loop_t *loop, const ns_db_options *opt, ns_db **out)
{
    if (loop == NULL || opt == NULL || out == NULL || opt->conninfo == NULL || opt->pool_size < 1 ||
        opt->pool_size > DB_POOL_MAX || opt->queue_limit < 1 || opt->queue_timeout_ms < 1 ||
        opt->reconnect_max_ms < 1)
        return NS_DB_INVALID;

    /* A malformed string would only ever fail to connect: refuse it now. */
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(opt->conninfo, &perr);
    if (parsed == NULL) {
        int st = perr != NULL ? NS_DB_INVALID : NS_DB_NOMEM;
        PQfreemem(perr);
        return st;
    }
    uint64_t connect_ms = db_connect_timeout(parsed);
    PQconninfoFree(parsed);

    ns_db *db = calloc(1, sizeof *db);
    if (db == NULL)
        return NS_DB_NOMEM;
    db->conns = calloc(opt->pool_size, sizeof *db->conns);
    db->conninfo = strdup(opt->conninfo);
    if (db->conns == NULL || db->conninfo == NULL) {
        free(db->conns);
        free(db->conninfo);
        free(db);
        return NS_DB_NOMEM;
    }
    db->loop = loop;
    db->pool_size = opt->pool_size;
    db->queue_limit = opt->queue_limit;
    db->queue_timeout_ms = opt->queue_timeout_ms;
    db->reconnect_max_ms = opt->reconnect_max_ms;
    db->on_state = opt->on_state;
    db->state_ud = opt->state_ud;
    db->connect_timeout_ms = connect_ms;
    db->sweep_ms = opt->queue_timeout_ms / 10;
    if (db->sweep_ms < DB_SWEEP_MIN_MS)
        db->sweep_ms = DB_SWEEP_MIN_MS;
    if (db->sweep_ms > DB_SWEEP_MAX_MS)
        db->sweep_ms = DB_SWEEP_MAX_MS;
    db->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)db) | 1u;

    /* uv_timer_init cannot fail on an initialised loop. */
    uv_timer_init(loop, &db->sweep);
    db->sweep.data = db;
    db->open_handles++;
    for (uint32_t i = 0; i < db->pool_size; i++) {
        db_conn *c = &db->conns[i];
        c->db = db;
        c->state = DB_CONN_BACKOFF;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        db->open_handles++;
    }
    for (uint32_t i = 0; i < db->pool_size; i++)
        conn_start(&db->conns[i]);
    *out = db;
    return NS_DB_OK;
}

void ns_db_close(ns_db *db, void (*done)(void *ud), void *ud)
{
    if (db == NULL || db->closing)
        return;
    db->closing = true;
    db->done = done;
    db->done_ud = ud;

    /* A statement still running on the server is not cancelled (PQcancel
     * blocks in libpq 15); the server ends it when it notices the client is
     * gone. Detach every request before any callback runs, so that a callback
     * that queries (and gets NS_DB_SHUTDOWN) or closes again finds an empty,
     * closing pool. In-flight requests go first: they are the oldest. */
    db_req *list = NULL;
    db_req **tail = &list;
    for (uint32_t i = 0; i < db->pool_size; i++) {
        db_conn *c = &db->conns[i];
        if (c->inflight != NULL) {
            *tail = c->inflight;
            tail = &c->inflight->next;
            c->inflight->next = NULL;
            c->inflight = NULL;
        }
        conn_drop(c);
        conn_set_state(c, DB_CONN_CLOSED);
        uv_close((uv_handle_t *)&c->timer, db_timer_closed);
    }
    *tail = db->qhead;
    db->qhead = db->qtail = NULL;
    db->qlen = 0;
    uv_close((uv_handle_t *)&db->sweep, db_sweep_closed);

    while (list != NULL) {
        db_req *q = list;
        list = q->next;
        q->cb(NS_DB_SHUTDOWN, NULL, q->ud);
        free(q);
    }
}

ns_db_status ns_db_query(ns_db *db, const char *sql, int nparams, const char *const *values,
                         ns_db_cb cb, void *ud)
{
    if (db == NULL || sql == NULL || cb == NULL || nparams < 0 || nparams > DB_MAX_PARAMS ||
        (nparams > 0 && values == NULL))
        return NS_DB_INVALID;
    if (db->closing)
        return NS_DB_SHUTDOWN;
    if (db->qlen >= db->queue_limit)
        return NS_DB_QUEUE_FULL;
    db_req *q = req_new(sql, nparams, values, cb, ud);
    if (q == NULL)
        return NS_DB_NOMEM;
    q->enqueued_ms = db_now_ms();
    db_queue_push_back(db, q);
    db_pump(db);
    return NS_DB_OK;
}

bool ns_db_connected(const ns_db *db)
{
    return db != NULL && !db->closing && db->nup > 0;
}

int ns_db_result_rows(const ns_db_result *r)
{
    return r != NULL && r->pg != NULL ? PQntuples(r->pg) : 0;
}

int ns_db_result_cols(const ns_db_result *r)
{
    return r != NULL && r->pg != NULL ? PQnfields(r->pg) : 0;
}

const char *ns_db_result_value(const ns_db_result *r, int row, int col)
{
    if (row < 0 || col < 0 || row >= ns_db_result_rows(r) || col >= ns_db_result_cols(r))
        return NULL;
    if (PQgetisnull(r->pg, row, col))
        return NULL;
    return PQgetvalue(r->pg, row, col);
}

const char *ns_db_result_sqlstate(const ns_db_result *r)
{
    const char *s = r != NULL && r->pg != NULL ? PQresultErrorField(r->pg, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

const char *ns_db_result_message(const ns_db_result *r)
{
    if (r == NULL || r->pg == NULL)
        return "";
    const char *s = PQresultErrorField(r->pg, PG_DIAG_MESSAGE_PRIMARY);
    return s != NULL ? s : PQresultErrorMessage(r->pg);
}

const char *ns_db_status_str(ns_db_status st)
{
    switch (st) {
    case NS_DB_OK:
        return "ok";
    case NS_DB_UNAVAILABLE:
        return "database unavailable";
    case NS_DB_QUERY_FAILED:
        return "query failed";
    case NS_DB_QUEUE_FULL:
        return "database queue full";
    case NS_DB_SHUTDOWN:
        return "database shutting down";
    case NS_DB_NOMEM:
        return "out of memory";
    case NS_DB_INVALID:
        return "invalid database request";
    }
    return "unknown database status";
}
