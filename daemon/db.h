/* PostgreSQL for the event loop: a small pool of non-blocking libpq
 * connections, each driven by a uv_poll on its socket, that reconnect by
 * themselves with backoff when the server goes away. Nothing but db*.c
 * includes libpq; callers see statuses, rows and text values.
 *
 * Queries are queued FIFO and run on the first idle connection. A query in
 * flight when its connection breaks fails with NS_DB_UNAVAILABLE (it may or
 * may not have committed: callers that care make their writes idempotent);
 * queued queries wait for a connection up to queue_timeout_ms.
 *
 * Every callback runs from the loop (or from ns_db_close), never inside the
 * call that queued it, so a callback may call any function here again,
 * ns_db_close included.
 *
 * Nothing here blocks the loop on the network: host names in the
 * connection string are looked up in libuv's threadpool before each
 * connection attempt (one lookup serves the pool for a second; a name with
 * several addresses is tried address by address, as libpq would) and
 * passed to libpq as hostaddr=, host= kept for TLS verification and the
 * password file. The exception: a host that only a service file names is
 * looked up by libpq itself. gssencmode defaults to disable (GSSAPI
 * encryption negotiation may block); the connection string may set it.
 *
 * Failover: with several hosts in the connection string (and
 * target_session_attrs=read-write), an attempt cut by connect_timeout
 * while one host does not answer is followed by one that starts at the
 * next host; TCP keepalive (30 s idle, then every 10 s, 3 probes) and
 * tcp_user_timeout (30 s) are on unless the string sets them, so a server
 * that vanishes without closing its connections is noticed. */
#ifndef NS_DB_H
#define NS_DB_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct ns_db ns_db;
typedef struct ns_db_result ns_db_result;

typedef enum {
    NS_DB_OK = 0,
    NS_DB_UNAVAILABLE = -1,  /* no connection within the timeout, or it broke */
    NS_DB_QUERY_FAILED = -2, /* the server refused the statement; see sqlstate */
    NS_DB_QUEUE_FULL = -3,   /* more than queue_limit queries waiting */
    NS_DB_SHUTDOWN = -4,     /* ns_db_close() was called */
    NS_DB_NOMEM = -5,
    NS_DB_INVALID = -6, /* bad arguments */
    NS_DB_ABORTED = -7, /* an earlier statement of the transaction failed */
} ns_db_status;

/* Whether conninfo is a connection string libpq can parse (key=value pairs
 * or a URI; not empty or blank). Connects to nothing. Returns 0, or -1 with
 * a fixed message in err: libpq's own explanation quotes the offending
 * text, which may be the password, so it is never passed on. Callers
 * check a configured string with it before anything logs a libpq error. */
int ns_db_conninfo_check(const char *conninfo, char *err, size_t errlen);

typedef struct {
    const char *conninfo;      /* libpq connection string; parsed and kept; never logged */
    uint32_t pool_size;        /* connections kept open, >= 1 */
    uint32_t queue_limit;      /* queries waiting for a connection, >= 1 */
    uint32_t queue_timeout_ms; /* how long a query may wait for a connection */
    uint32_t reconnect_max_ms; /* backoff ceiling between reconnect attempts */
    /* Optional: told when the pool gains its first live connection (up) or
     * loses its last one (down, with libpq's reason, which holds no
     * password). It may log; it must not call into the pool. The LISTEN
     * connection (ns_db_listen) is not part of the pool and not reported. */
    void (*on_state)(bool up, const char *detail, void *ud);
    void *state_ud;
} ns_db_options;

/* Called exactly once per accepted query. res is valid only during the call;
 * it is NULL unless st is NS_DB_OK or NS_DB_QUERY_FAILED. */
typedef void (*ns_db_cb)(ns_db_status st, const ns_db_result *res, void *ud);

/* Starts connecting the pool (returns before any connection is up).
 * NS_DB_INVALID for bad options, or for a connection string libpq cannot
 * parse (ns_db_conninfo_check tells that case apart, without quoting it). */
__attribute__((warn_unused_result)) int ns_db_open(uv_loop_t *loop, const ns_db_options *opt,
                                                   ns_db **out);

/* Fails every queued and in-flight query with NS_DB_SHUTDOWN, closes all
 * connections and handles, frees the pool, then calls done (may be NULL).
 *
 * Transactions: every callback still owed is called before ns_db_close
 * returns, in order - a waiting ns_db_txn_begin gets NS_DB_SHUTDOWN and no
 * transaction, pending statements get NS_DB_SHUTDOWN, and the commit or
 * rollback callback, if one was requested, gets NS_DB_SHUTDOWN (or the
 * answer, if COMMIT's had already come). An open transaction is rolled
 * back by the server when its connection closes; if no end was requested
 * the owner hears nothing more about it. Until done runs, every ns_db_txn_*
 * call returns NS_DB_SHUTDOWN; after done the owner must not use any
 * ns_db_txn pointer again. A host name lookup already running in the
 * threadpool cannot be stopped: done (and the loop) wait for it to end. */
void ns_db_close(ns_db *db, void (*done)(void *ud), void *ud);

/* Runs one statement with text parameters ($1..$n; values copied, NULL
 * means SQL NULL). On a non-OK return the callback is never called. */
__attribute__((warn_unused_result)) ns_db_status ns_db_query(ns_db *db, const char *sql,
                                                             int nparams, const char *const *values,
                                                             ns_db_cb cb, void *ud);

/* True when at least one connection is up. */
bool ns_db_connected(const ns_db *db);

/* The pool's state now, for the metrics (health.c samples it). */
typedef struct {
    uint32_t backoff;    /* connections waiting to reconnect */
    uint32_t connecting; /* looking the host up, or connecting */
    uint32_t idle;
    uint32_t busy;    /* running a plain query */
    uint32_t txn;     /* held by a transaction */
    uint32_t queued;  /* queries and transactions waiting for a connection */
    bool listener_up; /* the LISTEN connection (ns_db_listen) is connected */
} ns_db_stats;
void ns_db_stats_get(const ns_db *db, ns_db_stats *out);

int ns_db_result_rows(const ns_db_result *r);
int ns_db_result_cols(const ns_db_result *r);
/* Text value, or NULL for SQL NULL or out of range. */
const char *ns_db_result_value(const ns_db_result *r, int row, int col);
/* Five-character SQLSTATE and the server's message, for NS_DB_QUERY_FAILED. */
const char *ns_db_result_sqlstate(const ns_db_result *r);
const char *ns_db_result_message(const ns_db_result *r);
/* The column a refused statement names (PG_DIAG_COLUMN_NAME: a NOT NULL or
 * CHECK violation, or a trigger's RAISE ... COLUMN), "" when none. */
const char *ns_db_result_column(const ns_db_result *r);

const char *ns_db_status_str(ns_db_status st);

/* ---- transactions ----------------------------------------------------------
 * A transaction holds one connection from BEGIN to COMMIT or ROLLBACK and
 * runs its statements in libpq's pipeline mode: statements queued before a
 * flush travel to the server together and their results come back in order,
 * so a transaction of many statements costs few round trips (BEGIN itself
 * costs none: it travels with the first flush). Plain queries and other
 * transactions use the rest of the pool meanwhile: with pool_size 1, a
 * plain query issued while a transaction is open runs after it ends (or
 * times out, if the owner waits for it before ending the transaction).
 *
 * If the connection breaks, every pending statement gets
 * NS_DB_UNAVAILABLE, in order, and the transaction is "broken": it stays
 * allocated, ns_db_txn_query and ns_db_txn_flush return NS_DB_UNAVAILABLE
 * (no callback), and ns_db_txn_commit/rollback are accepted and call back
 * NS_DB_UNAVAILABLE, which frees it. The owner must still end it. */
typedef struct ns_db_txn ns_db_txn;

/* txn is NULL unless st is NS_DB_OK. */
typedef void (*ns_db_txn_cb)(ns_db_status st, ns_db_txn *txn, void *ud);

/* Waits for a connection like a query does (one FIFO with plain queries,
 * counted against queue_limit, at most queue_timeout_ms, then
 * NS_DB_UNAVAILABLE), queues BEGIN, then calls cb with the transaction.
 * On a non-OK return the callback is never called. */
__attribute__((warn_unused_result)) ns_db_status ns_db_txn_begin(ns_db *db, ns_db_txn_cb cb,
                                                                 void *ud);

/* Queues a statement (values copied). Its callback is called exactly once,
 * in queue order: NS_DB_OK or NS_DB_QUERY_FAILED with the result;
 * NS_DB_ABORTED without a result when an earlier statement of the
 * transaction failed (statements queued after the failure is known are
 * never sent); NS_DB_UNAVAILABLE when the connection broke; NS_DB_INVALID
 * for COPY, which a pipeline cannot carry (the connection is replaced and
 * the rest of the transaction is UNAVAILABLE). Results come after the next
 * ns_db_txn_flush() or commit; libpq may start sending earlier when its
 * buffer fills. May be called from any callback of the same transaction.
 * Returns NS_DB_INVALID for bad arguments or once commit or rollback was
 * called, NS_DB_UNAVAILABLE on a broken transaction. */
__attribute__((warn_unused_result)) ns_db_status ns_db_txn_query(ns_db_txn *t, const char *sql,
                                                                 int nparams,
                                                                 const char *const *values,
                                                                 ns_db_cb cb, void *ud);

/* Sends what is queued (one pipeline sync point; nothing if nothing new was
 * queued). Never blocks: what the socket does not take now goes out as it
 * becomes writable. Same returns as ns_db_txn_query. */
__attribute__((warn_unused_result)) ns_db_status ns_db_txn_flush(ns_db_txn *t);

/* Ends the transaction: COMMIT if no statement failed, else ROLLBACK. cb
 * gets NS_DB_OK only after a successful COMMIT; NS_DB_QUERY_FAILED with
 * the result when COMMIT itself fails (e.g. a deferred constraint);
 * NS_DB_ABORTED when a statement had failed and the transaction was rolled
 * back; NS_DB_UNAVAILABLE when the connection broke before COMMIT was
 * answered (its outcome is then unknown). Sends what is queued; statement
 * callbacks still pending run before cb. When cb runs the connection is
 * back in the pool, so cb may begin another transaction; t is freed when
 * cb returns (meanwhile every call on it returns NS_DB_INVALID).
 * ns_db_txn_rollback is the same with ROLLBACK: cb gets NS_DB_OK once the
 * transaction is rolled back, failed statements or not, or
 * NS_DB_UNAVAILABLE when the connection broke (the server rolls back a
 * transaction whose connection is gone). Either returns NS_DB_INVALID when
 * the transaction is already ending. */
__attribute__((warn_unused_result)) ns_db_status ns_db_txn_commit(ns_db_txn *t, ns_db_cb cb,
                                                                  void *ud);
__attribute__((warn_unused_result)) ns_db_status ns_db_txn_rollback(ns_db_txn *t, ns_db_cb cb,
                                                                    void *ud);

/* ---- notifications -----------------------------------------------------------
 * One extra connection, outside the pool (not counted in pool_size, not in
 * on_state or ns_db_connected), opened at the first ns_db_listen, LISTENs on
 * the registered channels and hands every NOTIFY to its channel's callback.
 * It connects and reconnects with the pool's backoff, and LISTENs again
 * after every reconnect.
 *
 * A notification sent while nobody LISTENs is gone, so each callback is
 * called with payload NULL whenever LISTEN takes effect for its channel:
 * once at first (when the connection is up, or at once if it already is),
 * and once after every reconnect following a loss. From that call on
 * nothing is missed; the owner (re)reads what it watches then. channel and
 * payload are valid during the call only. */
typedef void (*ns_db_notify_cb)(const char *channel, const char *payload, void *ud);

/* channel: [a-z_][a-z0-9_]{0,62}, each registered once, at most 16
 * channels; anything else is NS_DB_INVALID. There is no unlisten: a
 * registration lasts until ns_db_close, which calls no notify callback. */
__attribute__((warn_unused_result)) ns_db_status ns_db_listen(ns_db *db, const char *channel,
                                                              ns_db_notify_cb cb, void *ud);

#endif
