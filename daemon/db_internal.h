/* Shared by db.c (the pool, queries, transactions) and db_notify.c (the
 * LISTEN connection) and by nothing else: the structures of the pool and the
 * few connection functions the listener reuses, so that it connects,
 * watches its socket and backs off exactly like a pool connection. */
#ifndef NS_DB_INTERNAL_H
#define NS_DB_INTERNAL_H

#include "db.h"

#include <libpq-fe.h>

typedef enum {
    DB_CONN_BACKOFF,
    DB_CONN_RESOLVING, /* waiting for the pool's host name lookup (db.c) */
    DB_CONN_CONNECTING,
    DB_CONN_IDLE,
    DB_CONN_BUSY, /* a plain query, or the listener's LISTEN batch */
    DB_CONN_TXN,  /* held by a transaction, in pipeline mode */
    DB_CONN_CLOSED,
} db_conn_state;

/* A waiting or running plain query: one allocation holding the struct, the
 * parameter pointer array, then the SQL text and the parameter texts. A
 * waiting ns_db_txn_begin is a db_req embedded in its transaction (txn set,
 * no SQL), so that queries and transactions share one queue and one
 * timeout. */
typedef struct db_req {
    struct db_req *next;
    ns_db_cb cb;
    void *ud;
    ns_db_txn *txn;
    uint64_t enqueued_ms;
    uint64_t started_ns; /* uv_hrtime() when asked for: the latency metrics */
    int nparams;
    const char *sql;
    const char **values;
} db_req;

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
    bool listener; /* the notification connection: not part of the pool */
    PGconn *pg;
    db_poll *poll;
    uv_timer_t timer;    /* connect deadline, reconnect delay, deferred break */
    uint64_t backoff_ms; /* next reconnect delay before jitter; 0 after a success */
    uint32_t first_host; /* host entry the next attempt starts at (db.c conn_connect) */
    bool flushing;       /* PQflush returned 1: output is not fully sent yet */
    bool doomed;         /* a break is deferred to the timer: touch nothing */
    db_req *inflight;    /* BUSY with a plain query */
    ns_db_txn *txn;      /* TXN */
    PGresult *result;    /* the current statement's result, until libpq says done */
};

typedef struct db_notify db_notify;     /* db_notify.c; one allocation, freed by db.c */
typedef struct db_resolver db_resolver; /* db.c: host names looked up off the loop */

struct ns_db {
    uv_loop_t *loop;
    /* The connection string, parsed once (it holds the password: wiped
     * before it is freed), and the keyword/value arrays every connection
     * starts from: pq_fixed entries of them are set once, the few after
     * them are the looked-up host parameters of each attempt. */
    PQconninfoOption *opts;
    const char **pq_keys;
    const char **pq_vals;
    size_t pq_fixed;
    db_resolver *resolver; /* NULL when no host entry is a name to look up */
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
    uv_timer_t defer; /* runs transaction callbacks due outside an API call */
    ns_db_txn *txns;  /* every live transaction, oldest first */
    ns_db_txn *txns_tail;
    uint32_t nkicked;      /* transactions with work for the defer timer */
    uint32_t nup;          /* pool connections IDLE, BUSY or TXN */
    uint32_t open_handles; /* libuv handles, and host name lookups in flight */
    uint64_t rng;
    bool closing;
    void (*on_state)(bool up, const char *detail, void *ud);
    void *state_ud;
    char last_error[256]; /* why the last connection broke, for on_state */
    void (*done)(void *ud);
    void *done_ud;
    db_notify *notify; /* NULL until the first ns_db_listen */
    db_conn *listener; /* inside notify */
};

/* db.c, for the listener. */
void ns_db_conn_init(ns_db *db, db_conn *c);
/* One connection attempt: the host names first (shared with the pool, off
 * the loop), then the non-blocking connect. From BACKOFF. */
void ns_db_conn_start(db_conn *c);
void ns_db_conn_set_state(db_conn *c, db_conn_state s);
void ns_db_conn_broken(db_conn *c);
/* For use inside an API call: the connection breaks from the loop. */
void ns_db_conn_defer_break(db_conn *c);
/* PQflush, watching writable while output remains; 0, or -1 if broken. */
int ns_db_conn_flush(db_conn *c);

/* db_notify.c, called by db.c for the listener connection. */
void ns_db_notify_ready(db_conn *c); /* connected: LISTEN */
void ns_db_notify_input(db_conn *c); /* input consumed: results, NOTIFYs */
void ns_db_notify_lost(db_conn *c);  /* the connection broke: nothing is LISTENed */

#endif
