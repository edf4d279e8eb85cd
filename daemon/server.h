/* The daemon as a whole: one loop, the listening socket, the TLS context,
 * the database pool, the list of sessions, and the signals that reload or
 * stop it. Holds no authoritative state: everything durable is in PostgreSQL. */
#ifndef NS_SERVER_H
#define NS_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "conflicts.h"
#include "db.h"
#include "feed.h"
#include "registry.h"
#include "sync.h"
#include "tls.h"

typedef struct ns_session ns_session;

typedef struct ns_server {
    uv_loop_t *loop;
    const ns_config *cfg; /* owned by the caller; outlives the server */
    ns_tls_ctx *tls;      /* replaced on SIGHUP; sessions keep what they use */
    ns_db *db;
    const ns_registry *registry; /* owned by the caller; outlives the server */
    ns_sync *sync;               /* the push engine */
    ns_feed *feed;               /* pull and subscriptions */
    ns_conflicts *conflicts;     /* listing and resolving conflicts */
    uv_tcp_t listener;
    bool listening;
    /* Takes a connection we cannot serve off the listener when not even a
     * throwaway handle can be allocated (listener.c). */
    uv_tcp_t accept_spare;
    bool spare_in_use;   /* open or closing */
    bool accept_waiting; /* a refused connection waits for accept_spare */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t shutdown_timer;
    ns_session *sessions; /* intrusive list of live sessions */
    uint32_t nsessions;
    bool draining;
    bool stopped; /* everything closed; the loop will end */
} ns_server;

/* Loads TLS, opens the pool, starts the sync engine on the registry (read
 * from the schema before the loop started), binds and listens, installs
 * signal handlers. Returns 0, or -1 after logging why. After -1 handles may
 * still be closing: the caller runs the loop until it ends (as after a
 * shutdown) before it discards the server. */
__attribute__((warn_unused_result)) int
ns_server_start(ns_server *s, uv_loop_t *loop, const ns_config *cfg, const ns_registry *registry);

/* Graceful stop (what SIGTERM does): stop accepting, let in-flight requests
 * finish, say Goodbye, close sessions, then the sync engine, the pool and
 * every handle. */
void ns_server_shutdown(ns_server *s);

/* Re-reads the certificate, key and CA (what SIGHUP does). On failure the
 * old context stays in use. Returns 0 or -1. */
int ns_server_reload_tls(ns_server *s);

/* Session bookkeeping, for session.c. */
void ns_server_add_session(ns_server *s, ns_session *sess);
void ns_server_remove_session(ns_server *s, ns_session *sess);

/* Listening socket, for listener.c and server.c. */
__attribute__((warn_unused_result)) int ns_listener_start(ns_server *s);
void ns_listener_stop(ns_server *s);

#endif
