/* PostgreSQL for the event loop (see db.h).
 *
 * Each connection is a small state machine changed only through
 * ns_db_conn_set_state():
 *
 *   BACKOFF --timer--> [RESOLVING] --> CONNECTING --PQconnectPoll OK--> IDLE <--> BUSY (a query)
 *      ^                    |              |                          ^ \
 *      |                    |              |                          |  +--> TXN (a transaction)
 *      +---- failure, timeout, lost socket ---------------------------+-------+
 *   (any) --ns_db_close--> CLOSED
 *
 * (RESOLVING only when the connection string names a host: see below.)
 *
 * Rules that keep the re-entrancy manageable:
 *  - user callbacks run only from loop callbacks (poll, timers) and from
 *    ns_db_close, never inside the API call that made them due, so a
 *    callback may call the API again. What an API call cannot finish itself
 *    goes to a zero timer: a broken send to the connection's timer, a
 *    transaction's callbacks to the pool's defer timer;
 *  - a request is detached from the pool before its callback runs, and after
 *    any callback the caller re-checks db->closing before touching the pool;
 *  - nothing is freed synchronously by ns_db_close: the pool and its
 *    transactions live until the last handle's close callback, so stack
 *    frames below a callback that closed the pool stay valid;
 *  - before a transaction's last callback (the end, or a failed begin) it
 *    is unlinked from the pool, so nothing else reaches it; it is freed
 *    when that callback returns.
 *
 * Host names. libpq resolves a host name with a blocking getaddrinfo()
 * inside PQconnectStartParams and PQconnectPoll (again for each next host
 * of a list), which would freeze the whole loop - sessions, TLS, signals -
 * for as long as DNS takes, seconds when a server does not answer. So the
 * connection string is parsed once, at ns_db_open, and every host= entry
 * that is a name (not a socket directory, not an IP address) and has no
 * hostaddr= of its own is looked up here, with uv_getaddrinfo in libuv's
 * threadpool, before each connection attempt. The attempt then passes the
 * addresses as hostaddr= and keeps host= as it was (libpq still uses it for
 * sslmode=verify-full, SNI and the password file). A name with several
 * addresses becomes one host entry per address (at most DB_ADDRS_PER_NAME,
 * in getaddrinfo's order, port= repeated alongside when it is a list), so
 * libpq tries them in turn as it would have, and target_session_attrs sees
 * every one; a name that does not resolve is left out, as libpq skips it.
 * One round of lookups at a time serves the whole pool and the listener: a
 * connection that starts meanwhile waits for it, and its result is reused
 * for DB_RESOLVE_TTL_MS, so that a pool starting together costs one lookup
 * per name while a reconnect after a failover looks the names up again.
 * Limits: a host that comes only from a service file (service= or
 * PGSERVICE) is still resolved by libpq; a lookup already running in the
 * threadpool cannot be stopped, so ns_db_close's done may wait for it (at
 * most the resolver's timeout).
 *
 * Host lists. A connection string naming several hosts (a primary and its
 * standbys, with target_session_attrs=read-write) goes through the same
 * path even when no entry is a name, so that each attempt passes the list
 * itself: an attempt that our connect deadline cut while libpq waited on
 * one host starts the next one a host further (conn_connect), and a dead
 * first host cannot keep napsyncd from the new primary after a failover.
 *
 * gssencmode=disable is set unless the connection string sets gssencmode:
 * negotiating GSSAPI encryption may talk to a Kerberos KDC from inside
 * PQconnectPoll, blocking the loop.
 *
 * A server that vanishes (its machine lost, a network cut) sends no FIN or
 * reset: an idle connection would wait for the system's TCP keepalive (two
 * hours by default) and a query sent into it for the retransmissions to
 * give up (about fifteen minutes), while the pool stays "up". So unless the
 * connection string says otherwise, TCP keepalive probes start after
 * DB_KEEPALIVE_IDLE seconds of silence, and data the server does not
 * acknowledge within DB_TCP_USER_TIMEOUT_MS breaks the connection
 * (tcp_user_timeout), which then reconnects like any other: after a
 * failover, to the new primary. */
#include "db_internal.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DB_POOL_MAX            256u
#define DB_MAX_PARAMS          65535 /* the protocol's parameter count is 16 bits */
#define DB_BACKOFF_START_MS    100u
#define DB_CONNECT_DEFAULT_MS  10000u
#define DB_CONNECT_MIN_MS      2000u /* libpq's own floor for connect_timeout */
#define DB_SWEEP_MIN_MS        10u
#define DB_SWEEP_MAX_MS        1000u
#define DB_TIMEOUT_SECONDS_MAX 86400
#define DB_ADDRS_PER_NAME      8u
#define DB_ADDR_MAX            64 /* a numeric IPv6 address with a scope */
#define DB_RESOLVE_TTL_MS      1000u
/* Dead-server detection defaults (see the top); libpq takes them as text. */
#define DB_KEEPALIVE_IDLE      "30"
#define DB_KEEPALIVE_INTERVAL  "10"
#define DB_KEEPALIVE_COUNT     "3"
#define DB_TCP_USER_TIMEOUT_MS "30000"

struct ns_db_result {
    const PGresult *pg; /* owned by db.c; NULL reads as an empty result */
};

/* What a transaction waits for from the server, in the order libpq returns
 * it: every command handed to libpq and every sync point has a step, so a
 * result is matched to its callback by position. */
typedef enum {
    STEP_BEGIN,
    STEP_STMT,    /* the owner's statement */
    STEP_SKIP,    /* the owner's statement after a failure: never sent */
    STEP_END,     /* COMMIT, or ROLLBACK, for ns_db_txn_commit/rollback */
    STEP_CLEANUP, /* our own ROLLBACK when the server is still in the transaction */
    STEP_SYNC,    /* a pipeline sync point */
} db_step_kind;

typedef struct db_step {
    struct db_step *next;
    db_step_kind kind;
    bool invalid; /* the statement started a sub-protocol (COPY) */
    ns_db_cb cb;
    void *ud;
} db_step;

struct ns_db_txn {
    ns_db *db;
    ns_db_txn *prev, *next; /* db->txns */
    db_req req;             /* its place in the queue while it waits for a connection */
    db_conn *conn;          /* while it holds one */
    ns_db_txn_cb begin_cb;
    void *begin_ud;
    db_step *head, *tail;
    uint32_t unsynced; /* commands handed to libpq since the last sync point */
    bool kicked;       /* the defer timer has work for it */
    bool announced;    /* begin_cb was called with NS_DB_OK */
    bool failed;       /* a statement failed: later ones are ABORTED */
    bool broken;       /* its connection was lost */
    bool ending;       /* commit or rollback was called */
    bool commit;
    bool cleanup;   /* our own ROLLBACK was sent */
    bool end_known; /* COMMIT's (or ROLLBACK's) answer is in end_st */
    ns_db_cb end_cb;
    void *end_ud;
    ns_db_status end_st;
    PGresult *end_res;
};

static void db_on_poll(uv_poll_t *h, int status, int events);
static void conn_on_timer(uv_timer_t *t);
static void db_pump(ns_db *db);
static void db_on_sweep(uv_timer_t *t);
static void db_on_defer(uv_timer_t *t);
static void txn_lost(ns_db_txn *t);
static void db_params_free(ns_db *db);

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

static bool state_up(db_conn_state s)
{
    return s == DB_CONN_IDLE || s == DB_CONN_BUSY || s == DB_CONN_TXN;
}

void ns_db_conn_set_state(db_conn *c, db_conn_state s)
{
    bool was_up = state_up(c->state);
    bool up = state_up(s);

    assert(c->state != DB_CONN_CLOSED);
    assert(s != DB_CONN_RESOLVING || c->state == DB_CONN_BACKOFF);
    assert(s != DB_CONN_CONNECTING || c->state == DB_CONN_BACKOFF || c->state == DB_CONN_RESOLVING);
    assert((s != DB_CONN_BUSY && s != DB_CONN_TXN) || c->state == DB_CONN_IDLE);
    assert(s != DB_CONN_IDLE || c->state == DB_CONN_CONNECTING || c->state == DB_CONN_BUSY ||
           c->state == DB_CONN_TXN);
    c->state = s;
    if (c->listener)
        return; /* nup and on_state describe the pool */
    ns_db *db = c->db;
    if (was_up && !up)
        db->nup--;
    else if (!was_up && up)
        db->nup++;
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
    q->txn = NULL;
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

/* ---- transaction bookkeeping ---------------------------------------------- */

static db_step *step_new(db_step_kind kind, ns_db_cb cb, void *ud)
{
    db_step *s = malloc(sizeof *s);
    if (s != NULL)
        *s = (db_step){.kind = kind, .cb = cb, .ud = ud};
    return s;
}

static void txn_append(ns_db_txn *t, db_step *s)
{
    s->next = NULL;
    if (t->tail != NULL)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
}

static db_step *txn_pop(ns_db_txn *t)
{
    db_step *s = t->head;
    t->head = s->next;
    if (t->head == NULL)
        t->tail = NULL;
    return s;
}

/* Frees t and what it still holds; runs no callback. */
static void txn_release(ns_db_txn *t)
{
    while (t->head != NULL)
        free(txn_pop(t));
    PQclear(t->end_res);
    free(t);
}

/* Takes t out of the pool's sight before its last callback: neither the
 * defer timer nor ns_db_close (from inside that callback) will find it, and
 * the owner's calls on it are refused (it is ending). */
static void txn_unlink(ns_db_txn *t)
{
    ns_db *db = t->db;

    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        db->txns = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        db->txns_tail = t->prev;
    t->prev = t->next = NULL;
    if (t->kicked)
        db->nkicked--;
    t->kicked = false;
    t->ending = true;
}

/* Asks the defer timer to look at t, for callbacks that are due but may not
 * run inside the API call that made them due. */
static void txn_kick(ns_db_txn *t)
{
    ns_db *db = t->db;

    if (!t->kicked) {
        t->kicked = true;
        db->nkicked++;
    }
    if (!uv_is_active((uv_handle_t *)&db->defer))
        uv_timer_start(&db->defer, db_on_defer, 0, 0);
}

/* ---- handles and teardown ------------------------------------------------- */

static void db_finalize(ns_db *db)
{
    void (*done)(void *) = db->done;
    void *ud = db->done_ud;

    /* ns_db_close called every transaction back; their owners were told
     * not to use them once done runs. */
    while (db->txns != NULL) {
        ns_db_txn *t = db->txns;
        db->txns = t->next;
        txn_release(t);
    }
    db_params_free(db);
    free(db->conns);
    free(db->notify);
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

static void db_own_timer_closed(uv_handle_t *h)
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

int ns_db_conn_flush(db_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0)
        return -1;
    /* libpq: while output remains, either readiness calls for PQflush (the
     * server may be waiting for us to read before it reads more). */
    c->flushing = r == 1;
    return conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

void ns_db_conn_defer_break(db_conn *c)
{
    c->doomed = true;
    uv_timer_start(&c->timer, conn_on_timer, 0, 0);
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
    c->doomed = false;
    if (c->poll != NULL)
        conn_close_poll(c, c->pg);
    else if (c->pg != NULL)
        PQfinish(c->pg); /* its socket was never watched */
    c->pg = NULL;
}

static void conn_shutdown(db_conn *c)
{
    conn_drop(c);
    ns_db_conn_set_state(c, DB_CONN_CLOSED);
    uv_close((uv_handle_t *)&c->timer, db_timer_closed);
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

/* ---- host names (see the top of the file) ----------------------------------- */

typedef struct {
    char *host;     /* one entry of host=; "" is libpq's default socket directory */
    char *hostaddr; /* its hostaddr= entry, "" when none */
    char *port;     /* its port= entry when port= is a list, else NULL */
    bool lookup;    /* a name without hostaddr: looked up here */
} db_host;

typedef struct db_round db_round;

typedef struct {
    uv_getaddrinfo_t req;
    db_round *round;
    struct addrinfo *res;
    int status;
    bool running;
} db_lookup;

/* One round of lookups; freed when its last callback has run. */
struct db_round {
    ns_db *db;
    size_t pending;
    db_lookup lk[]; /* one per host entry, used where the entry is a lookup */
};

struct db_resolver {
    db_host *hosts;
    size_t nhosts;
    size_t nlookups; /* entries that are names to look up */
    bool port_list;
    db_round *round; /* in flight, or NULL */
    /* The last round's parameters for libpq (host NULL: none usable). */
    char *host, *hostaddr, *port;
    uint64_t done_ms;
};

/* A growing comma list. */
typedef struct {
    char *p;
    size_t len, cap;
    size_t n; /* elements */
    bool nomem;
} db_list;

static const char *opt_get(const PQconninfoOption *opts, const char *key)
{
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, key) == 0)
            return o->val;
    return NULL;
}

/* libpq's lists are plain: elements end at a comma, with no escapes. */
static size_t list_count(const char *s)
{
    size_t n = 1;
    for (; *s != '\0'; s++)
        n += *s == ',';
    return n;
}

/* s from its entry k on, then its entries before k (k < list_count(s)). */
static char *list_rotate(const char *s, size_t k)
{
    size_t len = strlen(s);
    const char *p = s;

    for (size_t i = 0; i < k; i++)
        p = strchr(p, ',') + 1;
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t tail = len - (size_t)(p - s);
    memcpy(out, p, tail);
    if (k > 0) {
        out[tail] = ',';
        memcpy(out + tail + 1, s, (size_t)(p - s) - 1);
    }
    out[len] = '\0';
    return out;
}

static char *list_item(const char *s, size_t i)
{
    for (; i > 0; i--)
        s = strchr(s, ',') + 1; /* i < list_count(s) */
    return strndup(s, strcspn(s, ","));
}

static void list_add(db_list *l, const char *item)
{
    size_t n = strlen(item);
    size_t need = l->len + (l->n > 0) + n + 1;

    if (l->nomem)
        return;
    if (need > l->cap) {
        size_t cap = l->cap != 0 ? l->cap : 64;
        while (cap < need)
            cap *= 2;
        char *p = realloc(l->p, cap);
        if (p == NULL) {
            l->nomem = true;
            return;
        }
        l->p = p;
        l->cap = cap;
    }
    if (l->n > 0)
        l->p[l->len++] = ',';
    memcpy(l->p + l->len, item, n + 1);
    l->len += n;
    l->n++;
}

/* What libpq would look up: not "" (the default socket directory), not a
 * socket directory ('/') or abstract socket ('@'), not an IP address. */
static bool host_is_name(const char *h)
{
    unsigned char addr[sizeof(struct in6_addr)];

    if (h[0] == '\0' || h[0] == '/' || h[0] == '@')
        return false;
    return inet_pton(AF_INET, h, addr) != 1 && inet_pton(AF_INET6, h, addr) != 1;
}

static void resolver_free(db_resolver *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nhosts; i++) {
        free(r->hosts[i].host);
        free(r->hosts[i].hostaddr);
        free(r->hosts[i].port);
    }
    free(r->hosts);
    free(r->host);
    free(r->hostaddr);
    free(r->port);
    free(r);
}

static bool resolver_build(db_resolver *r, const db_round *rd, char *err, size_t errlen);

/* The host entries of the parsed connection string; *out stays NULL when
 * there is one host and it is not a name to look up. Values the string leaves unset come from the
 * environment, as libpq takes them. */
static ns_db_status resolver_new(const PQconninfoOption *opts, db_resolver **out)
{
    const char *host = opt_get(opts, "host");
    const char *hostaddr = opt_get(opts, "hostaddr");
    const char *port = opt_get(opts, "port");

    *out = NULL;
    /* libpq fills unset values from a service file before the environment;
     * what a service file holds is libpq's business (see the top). */
    if (opt_get(opts, "service") != NULL || getenv("PGSERVICE") != NULL)
        return NS_DB_OK;
    if (host == NULL)
        host = getenv("PGHOST");
    if (hostaddr == NULL)
        hostaddr = getenv("PGHOSTADDR");
    if (port == NULL)
        port = getenv("PGPORT");
    if (host == NULL || host[0] == '\0')
        return NS_DB_OK;
    size_t n = list_count(host);
    bool have_addr = hostaddr != NULL && hostaddr[0] != '\0';
    bool port_list = port != NULL && port[0] != '\0' && list_count(port) > 1;
    /* Lists of different lengths are libpq's to refuse, with its message. */
    if ((have_addr && list_count(hostaddr) != n) || (port_list && list_count(port) != n))
        return NS_DB_OK;

    db_resolver *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NS_DB_NOMEM;
    r->hosts = calloc(n, sizeof *r->hosts);
    if (r->hosts == NULL) {
        free(r);
        return NS_DB_NOMEM;
    }
    r->nhosts = n;
    r->port_list = port_list;
    for (size_t i = 0; i < n; i++) {
        db_host *h = &r->hosts[i];
        h->host = list_item(host, i);
        h->hostaddr = have_addr ? list_item(hostaddr, i) : strdup("");
        h->port = port_list ? list_item(port, i) : NULL;
        if (h->host == NULL || h->hostaddr == NULL || (port_list && h->port == NULL)) {
            resolver_free(r);
            return NS_DB_NOMEM;
        }
        h->lookup = h->hostaddr[0] == '\0' && host_is_name(h->host);
        r->nlookups += h->lookup;
    }
    /* Several hosts and no name: nothing to look up, but each attempt still
     * passes the list itself, so that it can start at another host
     * (conn_connect). */
    if (r->nlookups == 0 && n < 2) {
        resolver_free(r);
        return NS_DB_OK;
    }
    if (r->nlookups == 0) {
        char err[128];
        if (!resolver_build(r, NULL, err, sizeof err)) {
            resolver_free(r);
            return NS_DB_NOMEM;
        }
    }
    *out = r;
    return NS_DB_OK;
}

static void round_free(db_round *rd, size_t nhosts)
{
    for (size_t i = 0; i < nhosts; i++)
        if (rd->lk[i].res != NULL)
            uv_freeaddrinfo(rd->lk[i].res);
    free(rd);
}

/* One host entry per address of lk's name; returns how many. */
static size_t round_addresses(const db_host *h, const db_lookup *lk, bool port_list, db_list out[3])
{
    char addrs[DB_ADDRS_PER_NAME][DB_ADDR_MAX];
    size_t n = 0;

    for (const struct addrinfo *ai = lk->res; ai != NULL && n < DB_ADDRS_PER_NAME;
         ai = ai->ai_next) {
        /* NI_NUMERICHOST: formatting only, no lookup. */
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addrs[n], sizeof addrs[n], NULL, 0,
                        NI_NUMERICHOST) != 0)
            continue;
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = strcmp(addrs[j], addrs[n]) == 0;
        if (seen)
            continue;
        list_add(&out[0], h->host);
        list_add(&out[1], addrs[n]);
        if (port_list)
            list_add(&out[2], h->port);
        n++;
    }
    return n;
}

/* The parameters for libpq, from the host entries and the round's
 * addresses for those that are names (rd is NULL when none is): r->host,
 * r->hostaddr and r->port, parallel lists (hostaddr NULL when every entry
 * is a socket directory or an address; port NULL unless the string gave a
 * list). false with err when no host is left or memory ran out; the
 * parameters are then NULL. */
static bool resolver_build(db_resolver *r, const db_round *rd, char *err, size_t errlen)
{
    db_list out[3] = {{0}};
    size_t entries = 0;

    err[0] = '\0';
    for (size_t i = 0; i < r->nhosts; i++) {
        const db_host *h = &r->hosts[i];
        if (!h->lookup) {
            list_add(&out[0], h->host);
            list_add(&out[1], h->hostaddr);
            if (r->port_list)
                list_add(&out[2], h->port);
            entries++;
            continue;
        }
        const db_lookup *lk = &rd->lk[i];
        size_t n = lk->status == 0 ? round_addresses(h, lk, r->port_list, out) : 0;
        entries += n;
        if (n == 0 && err[0] == '\0')
            snprintf(err, errlen, "could not look up the database host \"%s\": %s", h->host,
                     lk->status != 0 ? uv_strerror(lk->status) : "no address");
    }
    bool ok = entries > 0 && !out[0].nomem && !out[1].nomem && !out[2].nomem;
    if (ok && out[1].p != NULL && strspn(out[1].p, ",") == out[1].len) {
        /* Only socket directories and IP addresses are left, none with a
         * hostaddr: pass none, as the string did. */
        free(out[1].p);
        out[1].p = NULL;
    }
    free(r->host);
    free(r->hostaddr);
    free(r->port);
    r->host = r->hostaddr = r->port = NULL;
    if (ok) {
        r->host = out[0].p;
        r->hostaddr = out[1].p;
        r->port = out[2].p;
        r->done_ms = db_now_ms();
    } else {
        for (int i = 0; i < 3; i++)
            free(out[i].p);
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory looking up the database host");
    }
    return ok;
}

static void conn_connect(db_conn *c);

/* The round is over: its parameters become the pool's, and every connection
 * waiting for them connects, or backs off if no host is left. Runs no
 * callback of the owner's. */
static void resolver_done(ns_db *db, db_round *rd)
{
    db_resolver *r = db->resolver;
    char err[sizeof db->last_error];

    r->round = NULL;
    bool ok = resolver_build(r, rd, err, sizeof err);
    round_free(rd, r->nhosts);
    for (uint32_t i = 0; i <= db->pool_size; i++) {
        db_conn *c = i < db->pool_size ? &db->conns[i] : db->listener;
        if (c == NULL || c->state != DB_CONN_RESOLVING)
            continue;
        uv_timer_stop(&c->timer);
        if (ok) {
            conn_connect(c);
        } else {
            if (!c->listener)
                memcpy(db->last_error, err, sizeof err);
            ns_db_conn_broken(c);
        }
    }
}

static void db_on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    db_lookup *lk = req->data;
    db_round *rd = lk->round;
    ns_db *db = rd->db;

    lk->running = false;
    lk->status = status;
    lk->res = res;
    if (--rd->pending == 0) {
        if (db->closing) {
            db->resolver->round = NULL;
            round_free(rd, db->resolver->nhosts);
        } else {
            resolver_done(db, rd);
        }
    }
    db_handle_closed(db); /* last: it may free the pool */
}

/* Starts a round: one lookup per name, all at once. A lookup that cannot
 * start counts as failed; returns the error if none started. */
static int resolver_start(ns_db *db)
{
    db_resolver *r = db->resolver;
    const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int err = UV_EAI_NONAME;

    db_round *rd = calloc(1, sizeof *rd + r->nhosts * sizeof rd->lk[0]);
    if (rd == NULL)
        return UV_ENOMEM;
    rd->db = db;
    for (size_t i = 0; i < r->nhosts; i++) {
        db_lookup *lk = &rd->lk[i];
        if (!r->hosts[i].lookup)
            continue;
        lk->round = rd;
        lk->req.data = lk;
        lk->status =
            uv_getaddrinfo(db->loop, &lk->req, db_on_lookup, r->hosts[i].host, NULL, &hints);
        if (lk->status != 0) {
            err = lk->status;
            continue;
        }
        lk->running = true;
        rd->pending++;
        db->open_handles++;
    }
    if (rd->pending == 0) {
        free(rd);
        return err;
    }
    r->round = rd;
    return 0;
}

/* ns_db_close: lookups still queued are dropped (their callbacks report
 * cancellation); one already running finishes first. */
static void resolver_cancel(ns_db *db)
{
    db_round *rd = db->resolver != NULL ? db->resolver->round : NULL;

    if (rd == NULL)
        return;
    for (size_t i = 0; i < db->resolver->nhosts; i++)
        if (rd->lk[i].running)
            (void)uv_cancel((uv_req_t *)&rd->lk[i].req);
}

/* ---- the connection parameters ---------------------------------------------- */

/* The parsed string holds the password. */
static void db_opts_free(PQconninfoOption *opts)
{
    if (opts == NULL)
        return;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (o->val != NULL)
            explicit_bzero(o->val, strlen(o->val));
    PQconninfoFree(opts);
}

static void db_params_free(ns_db *db)
{
    resolver_free(db->resolver);
    db->resolver = NULL;
    free(db->pq_keys);
    free(db->pq_vals);
    db->pq_keys = db->pq_vals = NULL;
    db_opts_free(db->opts);
    db->opts = NULL;
}

/* The arrays every attempt starts from, pointing into db->opts. libpq
 * applies keywords in order, a later one winning: the connection string may
 * override the application name, gssencmode and the keepalive and TCP
 * timeouts (see the top), not the encoding, because everything napsync sends and receives is UTF-8.
 * With a resolver, host=, hostaddr= and a port= list are left to each attempt. */
static ns_db_status db_params_init(ns_db *db)
{
    ns_db_status st = resolver_new(db->opts, &db->resolver);
    if (st != NS_DB_OK)
        return st;
    const db_resolver *r = db->resolver;
    size_t cap = 6 + 1 + 3 + 1; /* ours before, the encoding, the host parameters, NULL */
    for (const PQconninfoOption *o = db->opts; o->keyword != NULL; o++)
        cap += o->val != NULL;
    db->pq_keys = calloc(cap, sizeof *db->pq_keys);
    db->pq_vals = calloc(cap, sizeof *db->pq_vals);
    if (db->pq_keys == NULL || db->pq_vals == NULL)
        return NS_DB_NOMEM;
    size_t n = 0;
    db->pq_keys[n] = "fallback_application_name";
    db->pq_vals[n++] = "napsyncd";
    db->pq_keys[n] = "gssencmode";
    db->pq_vals[n++] = "disable";
    db->pq_keys[n] = "keepalives_idle";
    db->pq_vals[n++] = DB_KEEPALIVE_IDLE;
    db->pq_keys[n] = "keepalives_interval";
    db->pq_vals[n++] = DB_KEEPALIVE_INTERVAL;
    db->pq_keys[n] = "keepalives_count";
    db->pq_vals[n++] = DB_KEEPALIVE_COUNT;
    db->pq_keys[n] = "tcp_user_timeout";
    db->pq_vals[n++] = DB_TCP_USER_TIMEOUT_MS;
    for (const PQconninfoOption *o = db->opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (r != NULL && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
                          (r->port_list && strcmp(o->keyword, "port") == 0)))
            continue;
        db->pq_keys[n] = o->keyword;
        db->pq_vals[n++] = o->val;
    }
    db->pq_keys[n] = "client_encoding";
    db->pq_vals[n++] = "UTF8";
    db->pq_fixed = n;
    return NS_DB_OK;
}

/* ---- connecting ----------------------------------------------------------- */

void ns_db_conn_init(ns_db *db, db_conn *c)
{
    c->db = db;
    c->state = DB_CONN_BACKOFF;
    /* uv_timer_init cannot fail on an initialised loop. */
    uv_timer_init(db->loop, &c->timer);
    c->timer.data = c;
    db->open_handles++;
}

/* Timers count from the loop's cached time, which is stale when this runs
 * outside a loop callback (ns_db_open after the daemon's blocking start-up
 * work) or after slow work inside one: refresh it, so that a delay counts
 * from now. */
static void conn_timer_start(db_conn *c, uint64_t ms)
{
    uv_update_time(c->db->loop);
    uv_timer_start(&c->timer, conn_on_timer, ms, 0);
}

/* Starts the non-blocking connect, with the host parameters after the fixed
 * ones (see db_params_init).
 *
 * libpq tries the hosts of a list in order, and an attempt that hangs on
 * one (a machine that is gone drops the connection's packets: no refusal,
 * just silence until the kernel gives up, minutes later) is cut by our
 * deadline before libpq reaches the next host. The next attempt of this
 * connection therefore starts one host further (c->first_host, advanced by
 * the deadline), so that after a failover a dead first host cannot hide
 * the new primary; a success returns to the list's own order. */
static void conn_connect(db_conn *c)
{
    ns_db *db = c->db;
    const db_resolver *r = db->resolver;
    size_t n = db->pq_fixed;
    char *rot[3] = {NULL, NULL, NULL};

    if (r != NULL) {
        const char *host = r->host, *hostaddr = r->hostaddr, *port = r->port;
        size_t entries = list_count(r->host);
        size_t k = c->first_host % entries;
        if (k > 0) {
            host = rot[0] = list_rotate(r->host, k);
            hostaddr = rot[1] = r->hostaddr != NULL ? list_rotate(r->hostaddr, k) : NULL;
            port = rot[2] = r->port != NULL ? list_rotate(r->port, k) : NULL;
            if (host == NULL || (r->hostaddr != NULL && hostaddr == NULL) ||
                (r->port != NULL && port == NULL)) {
                for (int i = 0; i < 3; i++)
                    free(rot[i]);
                ns_db_conn_broken(c);
                return;
            }
        }
        db->pq_keys[n] = "host";
        db->pq_vals[n++] = host;
        if (hostaddr != NULL) {
            db->pq_keys[n] = "hostaddr";
            db->pq_vals[n++] = hostaddr;
        }
        if (port != NULL) {
            db->pq_keys[n] = "port";
            db->pq_vals[n++] = port;
        }
    }
    db->pq_keys[n] = NULL;
    db->pq_vals[n] = NULL;
    c->pg = PQconnectStartParams(db->pq_keys, db->pq_vals, 0);
    for (int i = 0; i < 3; i++) /* libpq has copied what it keeps */
        free(rot[i]);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        ns_db_conn_broken(c);
        return;
    }
    PQsetNoticeReceiver(c->pg, db_ignore_notice, NULL);
    ns_db_conn_set_state(c, DB_CONN_CONNECTING);
    /* libpq does not apply connect_timeout to an asynchronous connection. */
    conn_timer_start(c, db->connect_timeout_ms);
    /* As libpq documents: start as if PQconnectPoll said POLLING_WRITING. */
    if (conn_watch(c, UV_WRITABLE) != 0)
        ns_db_conn_broken(c);
}

void ns_db_conn_start(db_conn *c)
{
    ns_db *db = c->db;
    const db_resolver *r = db->resolver;

    if (r == NULL ||
        (r->host != NULL && (r->nlookups == 0 || db_now_ms() - r->done_ms < DB_RESOLVE_TTL_MS))) {
        conn_connect(c);
        return;
    }
    if (r->round == NULL) {
        int err = resolver_start(db);
        if (err != 0) {
            if (!c->listener)
                snprintf(db->last_error, sizeof db->last_error,
                         "could not look up the database host: %s", uv_strerror(err));
            ns_db_conn_broken(c);
            return;
        }
    }
    ns_db_conn_set_state(c, DB_CONN_RESOLVING);
    /* The deadline covers the lookup too: a resolver that does not answer
     * costs an attempt, and the attempt after it joins the same round. */
    conn_timer_start(c, db->connect_timeout_ms);
}

static void conn_connect_step(db_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(c, UV_READABLE) != 0)
            ns_db_conn_broken(c);
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, UV_WRITABLE) != 0)
            ns_db_conn_broken(c);
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        ns_db_conn_broken(c);
        return;
    }
    if (PQsetnonblocking(c->pg, 1) != 0) {
        ns_db_conn_broken(c);
        return;
    }
    uv_timer_stop(&c->timer);
    c->backoff_ms = 0;
    c->first_host = 0;
    ns_db_conn_set_state(c, DB_CONN_IDLE);
    /* Idle connections keep watching: a server shutdown arrives as a message
     * and then end-of-file, and is noticed before a query is sent into it. */
    if (conn_watch(c, UV_READABLE) != 0) {
        ns_db_conn_broken(c);
        return;
    }
    if (c->listener)
        ns_db_notify_ready(c);
    else
        db_pump(c->db);
}

/* The connection is gone or unusable: free it, fail what it was running (a
 * query, or a transaction's pending statements: they may or may not have
 * committed), and retry later. The caller must return right after: a
 * callback may have closed the pool. */
void ns_db_conn_broken(db_conn *c)
{
    db_req *q = c->inflight;
    ns_db_txn *t = c->txn;

    c->inflight = NULL;
    c->txn = NULL;
    ns_metrics_inc(NS_METRIC_DB_CONNECTION_FAILURES);
    if (!c->listener)
        conn_note_error(c);
    conn_drop(c);
    ns_db_conn_set_state(c, DB_CONN_BACKOFF);
    conn_timer_start(c, conn_next_delay(c));
    if (c->listener)
        ns_db_notify_lost(c);
    if (q != NULL) {
        q->cb(NS_DB_UNAVAILABLE, NULL, q->ud);
        free(q);
    } else if (t != NULL) {
        txn_lost(t);
    }
}

static void conn_on_timer(uv_timer_t *t)
{
    db_conn *c = t->data;

    if (c->doomed) { /* a break deferred out of an API call */
        ns_db_conn_broken(c);
        return;
    }
    switch (c->state) {
    case DB_CONN_BACKOFF:
        ns_db_conn_start(c);
        break;
    case DB_CONN_RESOLVING: /* connect deadline, still looking up */
        if (!c->listener)
            snprintf(c->db->last_error, sizeof c->db->last_error,
                     "timed out looking up the database host");
        ns_db_conn_broken(c);
        break;
    case DB_CONN_CONNECTING: /* connect deadline: the next attempt starts further on */
        c->first_host++;
        ns_db_conn_broken(c);
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
    ns_db_conn_set_state(c, DB_CONN_BUSY);
    /* The query may be running: it must fail as in flight, but not from
     * inside ns_db_query. */
    if (conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0)
        ns_db_conn_defer_break(c);
    return 0;
}

/* Pipeline mode from BEGIN on. BEGIN is only queued in libpq: it travels
 * with the first flush, so a transaction costs no round trip of its own. Its
 * step is already first in t's FIFO. */
static int txn_start(db_conn *c, ns_db_txn *t)
{
    if (PQenterPipelineMode(c->pg) != 1 ||
        !PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
        return -1;
    c->txn = t;
    t->conn = c;
    t->unsynced = 1;
    ns_db_conn_set_state(c, DB_CONN_TXN);
    txn_kick(t); /* begin_cb, from the loop */
    return 0;
}

/* Hands queued requests to idle connections, first idle first. Runs no
 * callback, so it is never re-entered. */
static void db_pump(ns_db *db)
{
    uint32_t i = 0;

    while (db->qhead != NULL && i < db->pool_size) {
        db_conn *c = &db->conns[i];
        if (c->state != DB_CONN_IDLE || c->doomed) {
            i++;
            continue;
        }
        db_req *q = db_queue_pop(db);
        int rc = q->txn != NULL ? txn_start(c, q->txn) : conn_send(c, q);
        if (rc != 0) {
            db_queue_push_front(db, q);
            ns_db_conn_broken(c); /* nothing in flight: no callback */
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
    ns_db_conn_set_state(c, DB_CONN_IDLE);
    ns_metrics_observe_since(NS_HIST_DB_QUERY, q->started_ns);
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
    ns_db_conn_broken(c);
    q->cb(NS_DB_INVALID, NULL, q->ud);
    free(q);
}

/* Keeps r as the current statement's result: one statement gives one
 * result; should there be more, the first error wins, else the last. */
static void conn_keep_result(db_conn *c, PGresult *r)
{
    if (c->result != NULL && db_result_failed(c->result)) {
        PQclear(r);
    } else {
        PQclear(c->result);
        c->result = r;
    }
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
            conn_keep_result(c, r);
            break;
        default:
            PQclear(r);
            conn_misuse(c);
            return;
        }
    }
}

/* ---- transactions --------------------------------------------------------- */

/* Hands one command to libpq; it leaves at the next flush (or earlier, when
 * libpq's buffer fills). A failure means the connection is gone: the step
 * stays queued and is answered when the deferred break runs.
 *
 * When the socket is full, libpq reads whatever the server sent meanwhile
 * into its own buffer, and no readable event will announce those results:
 * the kick makes the loop look at them. */
static void txn_send(ns_db_txn *t, db_step *s, const char *sql, int nparams,
                     const char *const *values)
{
    db_conn *c = t->conn;

    txn_append(t, s);
    t->unsynced++;
    if (!c->doomed && !PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0))
        ns_db_conn_defer_break(c);
    txn_kick(t);
}

/* A sync point: the server answers everything before it, and an error
 * aborts the pipeline only up to it. Then as much as the socket takes is
 * sent; the rest goes as it becomes writable. */
static void txn_sync(ns_db_txn *t, db_step *s)
{
    db_conn *c = t->conn;

    txn_append(t, s);
    t->unsynced = 0;
    if (c->doomed)
        return;
    if (!PQpipelineSync(c->pg) || ns_db_conn_flush(c) != 0)
        ns_db_conn_defer_break(c);
    txn_kick(t); /* as in txn_send */
}

static bool db_result_fatal(const PGresult *r)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    return sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

/* What the end callback hears from the answer to COMMIT, or to the ROLLBACK
 * sent in its place. */
static ns_db_status txn_end_status(const ns_db_txn *t, PGresult *res)
{
    if (!t->commit)
        return NS_DB_OK; /* rolled back, one way or another (see txn_finish) */
    if (t->failed || res == NULL || PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
        return NS_DB_ABORTED;
    if (db_result_failed(res))
        return NS_DB_QUERY_FAILED; /* e.g. a deferred constraint */
    /* COMMIT in a transaction the server had already aborted answers
     * ROLLBACK. */
    return strcmp(PQcmdStatus(res), "COMMIT") == 0 ? NS_DB_OK : NS_DB_ABORTED;
}

/* The head step's results are all in (c->result). Returns false when the
 * caller must stop: the connection broke or the pool closed. */
static bool txn_step_done(db_conn *c)
{
    ns_db *db = c->db;
    ns_db_txn *t = c->txn;
    PGresult *res = c->result;
    bool failed = res != NULL && db_result_failed(res);
    db_step_kind kind = t->head->kind;

    /* A FATAL error ends the session (a terminated backend, a server
     * shutdown): everything pending is unavailable, not failed. BEGIN and
     * our own ROLLBACK cannot fail on a healthy session either. */
    if (failed && (db_result_fatal(res) || PQstatus(c->pg) == CONNECTION_BAD ||
                   kind == STEP_BEGIN || kind == STEP_CLEANUP)) {
        ns_db_conn_broken(c);
        return false;
    }
    c->result = NULL;
    db_step *s = txn_pop(t);
    if (kind == STEP_STMT) {
        bool aborted = t->failed || (res != NULL && PQresultStatus(res) == PGRES_PIPELINE_ABORTED);
        ns_db_status st = aborted ? NS_DB_ABORTED : failed ? NS_DB_QUERY_FAILED : NS_DB_OK;
        ns_db_result r = {res};
        if (failed)
            t->failed = true;
        s->cb(st, aborted ? NULL : &r, s->ud);
        PQclear(res);
        free(s);
        return !db->closing;
    }
    if (kind == STEP_END) {
        t->end_known = true;
        t->end_st = txn_end_status(t, res);
        if (t->end_st == NS_DB_OK || t->end_st == NS_DB_QUERY_FAILED) {
            t->end_res = res;
            res = NULL;
        }
    }
    PQclear(res);
    free(s);
    return true;
}

/* The last sync point after COMMIT or ROLLBACK was answered: the
 * connection goes back to the pool, then the owner hears the outcome. */
static void txn_finish(db_conn *c)
{
    ns_db *db = c->db;
    ns_db_txn *t = c->txn;

    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        /* Still inside the transaction: COMMIT or ROLLBACK was skipped
         * because a statement before it in the same pipeline segment
         * failed. End it before anyone else gets the connection. */
        db_step *e = t->cleanup ? NULL : step_new(STEP_CLEANUP, NULL, NULL);
        db_step *s = e != NULL ? step_new(STEP_SYNC, NULL, NULL) : NULL;
        if (s == NULL) {
            free(e);
            ns_db_conn_broken(c);
            return;
        }
        t->cleanup = true;
        txn_send(t, e, "ROLLBACK", 0, NULL);
        txn_sync(t, s);
        return;
    }
    ns_db_cb cb = t->end_cb;
    void *ud = t->end_ud;
    ns_db_status st = t->end_st;
    PGresult *res = t->end_res;
    ns_db_result r = {res};

    t->end_res = NULL;
    c->txn = NULL;
    t->conn = NULL;
    txn_unlink(t);
    if (PQexitPipelineMode(c->pg) == 1)
        ns_db_conn_set_state(c, DB_CONN_IDLE);
    else
        ns_db_conn_broken(c); /* no transaction on it any more: no callback */
    ns_metrics_observe_since(NS_HIST_DB_TXN, t->req.started_ns);
    cb(st, res != NULL ? &r : NULL, ud);
    PQclear(res);
    txn_release(t);
    if (!db->closing)
        db_pump(db);
}

/* Matches the results libpq has to the steps in order and answers them.
 * Returns when input runs out, the transaction ended, the connection broke
 * or the pool closed. */
static void txn_collect(db_conn *c)
{
    ns_db *db = c->db;
    ns_db_txn *t = c->txn;

    while (t->head != NULL && !c->doomed) {
        db_step *s = t->head;
        if (s->kind == STEP_SKIP) {
            txn_pop(t);
            s->cb(NS_DB_ABORTED, NULL, s->ud);
            free(s);
            if (db->closing)
                return;
            continue;
        }
        if (PQisBusy(c->pg))
            return;
        PGresult *r = PQgetResult(c->pg);
        if (s->kind == STEP_SYNC) {
            bool in_step = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
            PQclear(r);
            if (!in_step) {
                ns_db_conn_broken(c);
                return;
            }
            free(txn_pop(t));
            if (t->head == NULL && t->ending) {
                txn_finish(c);
                return;
            }
            continue;
        }
        if (r == NULL) {
            if (!txn_step_done(c))
                return;
            continue;
        }
        switch (PQresultStatus(r)) {
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
        case PGRES_EMPTY_QUERY:
        case PGRES_BAD_RESPONSE:
        case PGRES_NONFATAL_ERROR:
        case PGRES_FATAL_ERROR:
        case PGRES_PIPELINE_ABORTED:
            conn_keep_result(c, r);
            break;
        default:
            /* COPY has no place in a pipeline; anything else means we are
             * out of step with libpq. Either way the connection goes. */
            PQclear(r);
            s->invalid = true;
            ns_db_conn_broken(c);
            return;
        }
    }
}

/* The commit or rollback callback of a transaction whose connection was
 * lost: the answer if it had come, else unknown. */
static void txn_end_broken(ns_db_txn *t)
{
    ns_db_cb cb = t->end_cb;
    void *ud = t->end_ud;
    ns_db_status st = t->end_known ? t->end_st : NS_DB_UNAVAILABLE;
    PGresult *res = t->end_res;
    ns_db_result r = {res};

    t->end_res = NULL;
    txn_unlink(t);
    cb(st, res != NULL ? &r : NULL, ud);
    PQclear(res);
    txn_release(t);
}

/* t's connection broke; the caller has already reset it. */
static void txn_lost(ns_db_txn *t)
{
    ns_db *db = t->db;

    t->conn = NULL;
    t->unsynced = 0;
    if (!t->announced) {
        /* Only BEGIN was sent, so nothing of the owner's is lost: the
         * transaction waits for another connection, keeping its place and
         * its age. */
        db_queue_push_front(db, &t->req);
        db_pump(db);
        return;
    }
    t->broken = true;
    while (t->head != NULL) {
        db_step *s = txn_pop(t);
        bool owners = s->kind == STEP_STMT || s->kind == STEP_SKIP;
        if (owners)
            s->cb(s->invalid ? NS_DB_INVALID : NS_DB_UNAVAILABLE, NULL, s->ud);
        free(s);
        if (owners && db->closing)
            return;
    }
    if (t->ending)
        txn_end_broken(t);
}

/* What the defer timer does for t. */
static void txn_run(ns_db_txn *t)
{
    if (t->conn == NULL) {
        if (t->broken && t->ending)
            txn_end_broken(t);
        return; /* else it waits for a connection, or for its owner */
    }
    if (!t->announced) {
        t->announced = true;
        t->begin_cb(NS_DB_OK, t, t->begin_ud);
        return;
    }
    if (!t->conn->doomed)
        txn_collect(t->conn);
}

static void db_on_defer(uv_timer_t *h)
{
    ns_db *db = h->data;
    ns_db_txn *t = db->txns;

    /* A callback frees no other transaction (only a transaction's own end
     * does, and ns_db_close frees nothing), so next stays valid across
     * txn_run. What is kicked again meanwhile waits for the next turn. */
    while (t != NULL && db->nkicked > 0 && !db->closing) {
        ns_db_txn *next = t->next;
        if (t->kicked) {
            t->kicked = false;
            db->nkicked--;
            txn_run(t);
        }
        t = next;
    }
    if (!db->closing && db->nkicked > 0)
        uv_timer_start(&db->defer, db_on_defer, 0, 0);
}

/* ns_db_close: every callback t still owes, with NS_DB_SHUTDOWN. t stays
 * allocated (and refuses everything) until the pool is freed. */
static void txn_shutdown(ns_db_txn *t)
{
    t->conn = NULL;
    t->kicked = false;
    if (!t->announced) {
        t->announced = t->broken = t->ending = true; /* refuse everything */
        t->begin_cb(NS_DB_SHUTDOWN, NULL, t->begin_ud);
        return;
    }
    while (t->head != NULL) {
        db_step *s = txn_pop(t);
        if (s->kind == STEP_STMT || s->kind == STEP_SKIP)
            s->cb(NS_DB_SHUTDOWN, NULL, s->ud);
        free(s);
    }
    if (t->ending && t->end_cb != NULL) {
        ns_db_cb cb = t->end_cb;
        ns_db_result r = {t->end_res};
        t->end_cb = NULL;
        if (t->end_known)
            cb(t->end_st, t->end_res != NULL ? &r : NULL, t->end_ud);
        else
            cb(NS_DB_SHUTDOWN, NULL, t->end_ud);
    }
}

/* ---- loop callbacks ------------------------------------------------------- */

static void conn_io(db_conn *c, int events)
{
    if (c->doomed)
        return;
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        ns_db_conn_broken(c);
        return;
    }
    if (c->flushing && ns_db_conn_flush(c) != 0) {
        ns_db_conn_broken(c);
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        ns_db_conn_broken(c);
        return;
    }
    if (c->listener) {
        ns_db_notify_input(c);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) /* pool connections LISTEN to nothing */
        PQfreemem(n);
    if (c->state == DB_CONN_BUSY)
        conn_collect(c);
    else if (c->state == DB_CONN_TXN)
        txn_collect(c);
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
        ns_db_conn_broken(c);
        return;
    }
    conn_io(c, events);
}

/* A request that never got a connection. A transaction's owner never saw
 * it, so it goes before the callback. */
static void req_fail(db_req *q, ns_db_status st)
{
    if (q->txn != NULL) {
        ns_db_txn *t = q->txn;
        ns_db_txn_cb cb = t->begin_cb;
        void *ud = t->begin_ud;
        txn_unlink(t);
        txn_release(t);
        cb(st, NULL, ud);
        return;
    }
    q->cb(st, NULL, q->ud);
    free(q);
}

static void db_on_sweep(uv_timer_t *t)
{
    ns_db *db = t->data;

    /* FIFO: the oldest are first. A callback may queue more; those are
     * younger than now, so the loop stops at them. */
    while (!db->closing && db->qhead != NULL &&
           db->qhead->enqueued_ms + db->queue_timeout_ms <= db_now_ms()) {
        ns_metrics_limit_hit("db_queue_timeout_ms");
        req_fail(db_queue_pop(db), NS_DB_UNAVAILABLE);
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

/* libpq's parse error may quote the password. */
static void db_errmsg_free(char *msg)
{
    if (msg != NULL)
        explicit_bzero(msg, strlen(msg));
    PQfreemem(msg);
}

int ns_db_conninfo_check(const char *conninfo, char *err, size_t errlen)
{
    const char *msg = NULL;

    if (conninfo == NULL || conninfo[strspn(conninfo, " \t\r\n\f\v")] == '\0') {
        msg = "the database connection string is empty";
    } else {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
        if (opts == NULL)
            msg = perr != NULL ? "the database connection string is malformed (libpq's "
                                 "explanation is withheld because it may quote the password)"
                               : "out of memory checking the database connection string";
        db_errmsg_free(perr);
        db_opts_free(opts);
    }
    if (msg == NULL)
        return 0;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return -1;
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
        db_errmsg_free(perr);
        return st;
    }
    ns_db *db = calloc(1, sizeof *db);
    if (db == NULL) {
        db_opts_free(parsed);
        return NS_DB_NOMEM;
    }
    db->opts = parsed;
    db->conns = calloc(opt->pool_size, sizeof *db->conns);
    ns_db_status st = db->conns != NULL ? db_params_init(db) : NS_DB_NOMEM;
    if (st != NS_DB_OK) {
        db_params_free(db);
        free(db->conns);
        free(db);
        return st;
    }
    db->connect_timeout_ms = db_connect_timeout(db->opts);
    db->loop = loop;
    db->pool_size = opt->pool_size;
    db->queue_limit = opt->queue_limit;
    db->queue_timeout_ms = opt->queue_timeout_ms;
    db->reconnect_max_ms = opt->reconnect_max_ms;
    db->on_state = opt->on_state;
    db->state_ud = opt->state_ud;
    db->sweep_ms = opt->queue_timeout_ms / 10;
    if (db->sweep_ms < DB_SWEEP_MIN_MS)
        db->sweep_ms = DB_SWEEP_MIN_MS;
    if (db->sweep_ms > DB_SWEEP_MAX_MS)
        db->sweep_ms = DB_SWEEP_MAX_MS;
    db->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)db) | 1u;

    uv_timer_init(loop, &db->sweep);
    db->sweep.data = db;
    db->open_handles++;
    uv_timer_init(loop, &db->defer);
    db->defer.data = db;
    db->open_handles++;
    for (uint32_t i = 0; i < db->pool_size; i++)
        ns_db_conn_init(db, &db->conns[i]);
    for (uint32_t i = 0; i < db->pool_size; i++)
        ns_db_conn_start(&db->conns[i]);
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
     * blocks in libpq 15); the server ends it, and rolls back an open
     * transaction, when it notices the client is gone. Detach everything
     * before any callback runs, so that a callback that calls the API (and
     * gets NS_DB_SHUTDOWN) or closes again finds an empty, closing pool.
     * In-flight queries go first: they are the oldest; then transactions,
     * then the queries still waiting. */
    db_req *inflight = NULL;
    db_req **tail = &inflight;
    for (uint32_t i = 0; i < db->pool_size; i++) {
        db_conn *c = &db->conns[i];
        if (c->inflight != NULL) {
            *tail = c->inflight;
            tail = &c->inflight->next;
            c->inflight->next = NULL;
            c->inflight = NULL;
        }
        c->txn = NULL;
        conn_shutdown(c);
    }
    if (db->listener != NULL)
        conn_shutdown(db->listener);
    resolver_cancel(db);
    /* A waiting transaction is called back with the other transactions. */
    db_req *queued = NULL;
    tail = &queued;
    for (db_req *q = db_queue_pop(db); q != NULL; q = db_queue_pop(db)) {
        if (q->txn == NULL) {
            *tail = q;
            tail = &q->next;
        }
    }
    db->nkicked = 0;
    uv_close((uv_handle_t *)&db->sweep, db_own_timer_closed);
    uv_close((uv_handle_t *)&db->defer, db_own_timer_closed);

    while (inflight != NULL) {
        db_req *q = inflight;
        inflight = q->next;
        q->cb(NS_DB_SHUTDOWN, NULL, q->ud);
        free(q);
    }
    for (ns_db_txn *t = db->txns; t != NULL; t = t->next)
        txn_shutdown(t);
    while (queued != NULL) {
        db_req *q = queued;
        queued = q->next;
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
    if (db->qlen >= db->queue_limit) {
        ns_metrics_limit_hit("db_queue");
        return NS_DB_QUEUE_FULL;
    }
    db_req *q = req_new(sql, nparams, values, cb, ud);
    if (q == NULL)
        return NS_DB_NOMEM;
    q->enqueued_ms = db_now_ms();
    q->started_ns = uv_hrtime();
    db_queue_push_back(db, q);
    db_pump(db);
    return NS_DB_OK;
}

ns_db_status ns_db_txn_begin(ns_db *db, ns_db_txn_cb cb, void *ud)
{
    if (db == NULL || cb == NULL)
        return NS_DB_INVALID;
    if (db->closing)
        return NS_DB_SHUTDOWN;
    if (db->qlen >= db->queue_limit) {
        ns_metrics_limit_hit("db_queue");
        return NS_DB_QUEUE_FULL;
    }
    ns_db_txn *t = calloc(1, sizeof *t);
    db_step *b = step_new(STEP_BEGIN, NULL, NULL);
    if (t == NULL || b == NULL) {
        free(t);
        free(b);
        return NS_DB_NOMEM;
    }
    t->db = db;
    t->begin_cb = cb;
    t->begin_ud = ud;
    t->req.txn = t;
    t->req.enqueued_ms = db_now_ms();
    t->req.started_ns = uv_hrtime();
    txn_append(t, b);
    t->prev = db->txns_tail;
    if (db->txns_tail != NULL)
        db->txns_tail->next = t;
    else
        db->txns = t;
    db->txns_tail = t;
    db_queue_push_back(db, &t->req);
    db_pump(db);
    return NS_DB_OK;
}

/* Whether the owner may still add to t. */
static ns_db_status txn_usable(const ns_db_txn *t)
{
    if (t->db->closing)
        return NS_DB_SHUTDOWN;
    if (t->ending || !t->announced)
        return NS_DB_INVALID;
    if (t->broken)
        return NS_DB_UNAVAILABLE;
    return NS_DB_OK;
}

ns_db_status ns_db_txn_query(ns_db_txn *t, const char *sql, int nparams, const char *const *values,
                             ns_db_cb cb, void *ud)
{
    if (t == NULL || sql == NULL || cb == NULL || nparams < 0 || nparams > DB_MAX_PARAMS ||
        (nparams > 0 && values == NULL))
        return NS_DB_INVALID;
    ns_db_status st = txn_usable(t);
    if (st != NS_DB_OK)
        return st;
    db_step *s = step_new(STEP_STMT, cb, ud);
    if (s == NULL)
        return NS_DB_NOMEM;
    if (t->failed) {
        s->kind = STEP_SKIP;
        txn_append(t, s);
        txn_kick(t);
        return NS_DB_OK;
    }
    txn_send(t, s, sql, nparams, values);
    return NS_DB_OK;
}

ns_db_status ns_db_txn_flush(ns_db_txn *t)
{
    if (t == NULL)
        return NS_DB_INVALID;
    ns_db_status st = txn_usable(t);
    if (st != NS_DB_OK || t->unsynced == 0)
        return st;
    db_step *s = step_new(STEP_SYNC, NULL, NULL);
    if (s == NULL)
        return NS_DB_NOMEM;
    txn_sync(t, s);
    return NS_DB_OK;
}

static ns_db_status txn_end(ns_db_txn *t, bool commit, ns_db_cb cb, void *ud)
{
    if (t == NULL || cb == NULL)
        return NS_DB_INVALID;
    ns_db_status st = txn_usable(t);
    if (st != NS_DB_OK && st != NS_DB_UNAVAILABLE)
        return st;
    db_step *e = NULL, *s = NULL;
    if (st == NS_DB_OK) {
        e = step_new(STEP_END, NULL, NULL);
        s = step_new(STEP_SYNC, NULL, NULL);
        if (e == NULL || s == NULL) {
            free(e);
            free(s);
            return NS_DB_NOMEM;
        }
    }
    t->ending = true;
    t->commit = commit;
    t->end_cb = cb;
    t->end_ud = ud;
    if (t->broken) {
        txn_kick(t); /* NS_DB_UNAVAILABLE, from the loop */
        return NS_DB_OK;
    }
    txn_send(t, e, commit && !t->failed ? "COMMIT" : "ROLLBACK", 0, NULL);
    txn_sync(t, s);
    return NS_DB_OK;
}

ns_db_status ns_db_txn_commit(ns_db_txn *t, ns_db_cb cb, void *ud)
{
    return txn_end(t, true, cb, ud);
}

ns_db_status ns_db_txn_rollback(ns_db_txn *t, ns_db_cb cb, void *ud)
{
    return txn_end(t, false, cb, ud);
}

bool ns_db_connected(const ns_db *db)
{
    return db != NULL && !db->closing && db->nup > 0;
}

void ns_db_stats_get(const ns_db *db, ns_db_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < db->pool_size; i++) {
        switch (db->conns[i].state) {
        case DB_CONN_BACKOFF:
            out->backoff++;
            break;
        case DB_CONN_RESOLVING:
        case DB_CONN_CONNECTING:
            out->connecting++;
            break;
        case DB_CONN_IDLE:
            out->idle++;
            break;
        case DB_CONN_BUSY:
            out->busy++;
            break;
        case DB_CONN_TXN:
            out->txn++;
            break;
        case DB_CONN_CLOSED:
            break;
        }
    }
    out->queued = db->qlen;
    out->listener_up = db->listener != NULL && state_up(db->listener->state);
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

const char *ns_db_result_column(const ns_db_result *r)
{
    if (r == NULL || r->pg == NULL)
        return "";
    const char *s = PQresultErrorField(r->pg, PG_DIAG_COLUMN_NAME);
    return s != NULL ? s : "";
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
    case NS_DB_ABORTED:
        return "transaction aborted by an earlier statement";
    }
    return "unknown database status";
}
