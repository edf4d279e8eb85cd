/* PostgreSQL for the event loop: a small pool of non-blocking libpq
 * connections, each driven by a uv_poll on its socket, that reconnect by
 * themselves with backoff when the server goes away. Nothing but db.c
 * includes libpq; callers see statuses, rows and text values.
 *
 * Queries are queued FIFO and run on the first idle connection. A query in
 * flight when its connection breaks fails with NS_DB_UNAVAILABLE (it may or
 * may not have committed: callers that care make their writes idempotent);
 * queued queries wait for a connection up to queue_timeout_ms. */
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
} ns_db_status;

typedef struct {
    const char *conninfo;      /* libpq connection string; copied; never logged */
    uint32_t pool_size;        /* connections kept open, >= 1 */
    uint32_t queue_limit;      /* queries waiting for a connection, >= 1 */
    uint32_t queue_timeout_ms; /* how long a query may wait for a connection */
    uint32_t reconnect_max_ms; /* backoff ceiling between reconnect attempts */
    /* Optional: told when the pool gains its first live connection (up) or
     * loses its last one (down, with libpq's reason, which holds no
     * password). It may log; it must not call into the pool. */
    void (*on_state)(bool up, const char *detail, void *ud);
    void *state_ud;
} ns_db_options;

/* Called exactly once per accepted query. res is valid only during the call;
 * it is NULL unless st is NS_DB_OK or NS_DB_QUERY_FAILED. */
typedef void (*ns_db_cb)(ns_db_status st, const ns_db_result *res, void *ud);

/* Starts connecting the pool (returns before any connection is up). */
__attribute__((warn_unused_result)) int ns_db_open(uv_loop_t *loop, const ns_db_options *opt,
                                                   ns_db **out);

/* Fails every queued and in-flight query with NS_DB_SHUTDOWN, closes all
 * connections and handles, frees the pool, then calls done (may be NULL). */
void ns_db_close(ns_db *db, void (*done)(void *ud), void *ud);

/* Runs one statement with text parameters ($1..$n; values copied, NULL
 * means SQL NULL). On a non-OK return the callback is never called. */
__attribute__((warn_unused_result)) ns_db_status ns_db_query(ns_db *db, const char *sql,
                                                             int nparams, const char *const *values,
                                                             ns_db_cb cb, void *ud);

/* True when at least one connection is up. */
bool ns_db_connected(const ns_db *db);

int ns_db_result_rows(const ns_db_result *r);
int ns_db_result_cols(const ns_db_result *r);
/* Text value, or NULL for SQL NULL or out of range. */
const char *ns_db_result_value(const ns_db_result *r, int row, int col);
/* Five-character SQLSTATE and the server's message, for NS_DB_QUERY_FAILED. */
const char *ns_db_result_sqlstate(const ns_db_result *r);
const char *ns_db_result_message(const ns_db_result *r);

const char *ns_db_status_str(ns_db_status st);

#endif
