/* The daemon as a whole: one loop, the listening socket, the TLS context,
 * the database pool, the list of sessions, and the signals that reload or
 * stop it. Holds no authoritative state: everything durable is in PostgreSQL. */
#ifndef NS_SERVER_H
#define NS_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "compress.h"
#include "config.h"
#include "conflicts.h"
#include "db.h"
#include "feed.h"
#include "registry.h"
#include "revocation.h"
#include "sync.h"
#include "tls.h"

typedef struct ns_session ns_session;

/* Reads the settings again as at start (defaults, the file, the flags) into
 * *out, which it initialises; for SIGHUP. Returns 0, or -1 with a message in
 * err and nothing in *out to free. */
typedef int (*ns_server_reread_fn)(void *ud, ns_config *out, char *err, size_t errlen);

/* Connections beyond max_sessions that still get a TLS handshake and an
 * Error BUSY telling them to come back later; past these the listener
 * closes new connections at once, before any TLS. */
#define NS_SERVER_BUSY_MARGIN 64

/* The limits a client can run into (docs/protocol.md §8), each named by
 * its setting. ns_server_limit_hit counts every refusal or cut by one. */
typedef enum {
    NS_LIMIT_MAX_SESSIONS,            /* told BUSY, or closed at accept */
    NS_LIMIT_MAX_SESSIONS_PER_DEVICE, /* told BUSY */
    NS_LIMIT_HANDSHAKE_TIMEOUT,       /* TLS handshake or Hello too late */
    NS_LIMIT_IDLE_TIMEOUT,            /* Goodbye IDLE */
    NS_LIMIT_SEND_TIMEOUT,            /* a client that does not read: cut */
    NS_LIMIT_MAX_FRAME_SIZE,          /* Error FRAME_TOO_LARGE */
    NS_LIMIT_MAX_PUSH_MUTATIONS,      /* Error INVALID_ARGUMENT */
    NS_LIMIT_MAX_SUBSCRIPTIONS,       /* Error BUSY, not fatal */
    NS_LIMIT_MAX_QUEUED_BYTES,        /* a pull stream held until the client reads */
    NS_LIMIT_COUNT
} ns_limit;

typedef struct ns_server {
    uv_loop_t *loop;
    /* Owned by the caller; outlives the server. A reload (SIGHUP) changes
     * its runtime settings (ns_config_update), which sessions read when they
     * start. */
    ns_config *cfg;
    ns_server_reread_fn reread; /* NULL: SIGHUP reloads the TLS files only */
    void *reread_ud;
    ns_tls_ctx *tls; /* replaced on SIGHUP; sessions keep what they use */
    /* Compresses and decompresses every session's frames (compress.h: no
     * state between frames, so one serves all on this thread). */
    ns_compress *compress;
    ns_db *db;
    const ns_registry *registry; /* owned by the caller; outlives the server */
    ns_sync *sync;               /* the push engine */
    ns_feed *feed;               /* pull and subscriptions */
    ns_conflicts *conflicts;     /* listing and resolving conflicts */
    ns_revocation *revocation;   /* cuts the sessions of revoked devices */
    struct ns_health *health;    /* heartbeat and readiness (health.h); NULL without HTTP */
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
    /* Sessions holding a place, per device certificate (session.c, for
     * max_sessions_per_device); NULL when there are none. */
    struct ns_places *places;
    uint32_t nsubscriptions; /* live subscriptions, at most cfg->max_subscriptions */
    /* Connections closed at accept since `refusing` began (listener.c):
     * logged when it begins and when it ends, not once per connection. */
    bool refusing;
    uint64_t refused;
    uint64_t limit_hits[NS_LIMIT_COUNT]; /* by ns_server_limit_hit, for metrics */
    bool draining;
    bool stopped; /* everything closed; the loop will end */
} ns_server;

/* Loads TLS, opens the pool, starts the sync engine on the registry (read
 * from the schema before the loop started), binds and listens, installs
 * signal handlers. Returns 0, or -1 after logging why. After -1 handles may
 * still be closing: the caller runs the loop until it ends (as after a
 * shutdown) before it discards the server. */
__attribute__((warn_unused_result)) int
ns_server_start(ns_server *s, uv_loop_t *loop, ns_config *cfg, const ns_registry *registry);

/* Graceful stop (what SIGTERM does): stop accepting, let in-flight requests
 * finish, say Goodbye, close sessions, then the sync engine, the pool and
 * every handle. */
void ns_server_shutdown(ns_server *s);

/* Re-reads the certificate, key and CA (what SIGHUP does). On failure the
 * old context stays in use. Returns 0 or -1. */
int ns_server_reload_tls(ns_server *s);

/* What SIGHUP does: reads the settings again (s->reread), loads the TLS
 * files they name into a new context, then applies what may change while
 * running (ns_config_update: the TLS context, the log level, the limits of
 * new sessions) and logs each difference; open sessions keep their context
 * and limits. A configuration that does not read, validate or load changes
 * nothing, and the log says why. Without s->reread, ns_server_reload_tls.
 * Returns 0 or -1. */
int ns_server_reload(ns_server *s);

/* Where every limit is hit: counts it in s->limit_hits. Logging is the
 * caller's (once per event, or per episode for connection floods). */
void ns_server_limit_hit(ns_server *s, ns_limit limit);
/* The setting that names a limit ("max_sessions"). */
const char *ns_limit_name(ns_limit limit);

/* Session bookkeeping, for session.c. */
void ns_server_add_session(ns_server *s, ns_session *sess);
void ns_server_remove_session(ns_server *s, ns_session *sess);

/* Listening socket, for listener.c and server.c. */
__attribute__((warn_unused_result)) int ns_listener_start(ns_server *s);
void ns_listener_stop(ns_server *s);

#endif
