/* One client connection: its state machine and its lifetime.
 *
 *   HANDSHAKE ─TLS up─► AWAIT_HELLO ─Hello─► AUTHENTICATING ─device found─► AUTHENTICATED
 *        └──────────────────┴─────────────────────┴──── any error, Goodbye ──► CLOSING
 *
 * Every state change goes through one function. A session is freed only
 * when its connection is closed and no asynchronous operation holds a
 * reference (ns_session_ref/unref), never inside its own callback. */
#ifndef NS_SESSION_H
#define NS_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "conn.h"
#include "envelope.h"
#include "server.h"

/* Requests refused in a row before a session is closed as broken. */
#define NS_SESSION_MAX_INVALID 64

typedef enum {
    NS_SESSION_HANDSHAKE,
    NS_SESSION_AWAIT_HELLO,
    NS_SESSION_AUTHENTICATING,
    NS_SESSION_AUTHENTICATED,
    NS_SESSION_CLOSING,
} ns_session_state;

struct ns_session {
    ns_server *server;
    ns_conn *conn; /* NULL once the connection has closed */
    ns_session *prev, *next;
    ns_session_state state;
    char id[20];
    int refs;     /* the connection holds one; each pending operation one */
    int inflight; /* requests being served */
    bool draining;
    bool reject_busy;  /* over max_sessions: refuse once TLS is up */
    bool place;        /* counted among its device's sessions (session.c) */
    bool zstd_offered; /* the Hello offered COMPRESSION_ZSTD_1 */
    bool zstd;         /* agreed: frames after the Welcome may be compressed, both ways */
    /* The Hello offered PAGE_FORMAT_COMPACT_1; compact: agreed, the
     * ChangePages after the Welcome go as compact_page (page_compact.h). */
    bool compact_offered;
    bool compact;
    /* Requests refused in a row as unsupported or invalid (see
     * ns_session_send_error); a successful answer resets it. */
    uint32_t invalid_streak;
    ns_feed_sub *sub; /* the live subscription, if any */
    bool sub_held;    /* sub paused until the output drains (on_writable) */
    /* A streamed Pull held until the output drains (dispatch.c); NULL if none. */
    void *pull_stream;
    uint32_t limits_logged;       /* bit per ns_limit already logged at info for this session */
    const char *handshake_result; /* counted in the metrics once decided; static text */
    uint64_t sub_request_id;      /* the Subscribe's request id, echoed by its pages */
    uint32_t version;             /* negotiated protocol version */
    uint8_t fingerprint[32];
    ns_identity_info identity; /* valid from AUTHENTICATED on */
    /* The revocation epoch in which the Hello's lookup was sent
     * (revocation.h): a later one at its answer makes it ask again. */
    uint64_t auth_epoch;
    /* The limits the session started with, which its connection enforces
     * and Welcome announces: a reload (SIGHUP) changes those of new
     * sessions only. */
    uint32_t max_frame_size;
    uint32_t idle_timeout_ms;
    uint32_t hello_timeout_ms; /* handshake_timeout_ms, for Hello */
    uint32_t send_timeout_ms;
    uint32_t max_queued_bytes;
    uint32_t max_push_mutations;
};

/* Accepts one pending connection from the server's listener. On failure the
 * connection may still be pending there (the failure came before
 * uv_accept): the caller must take it off, or libuv stops listening. */
__attribute__((warn_unused_result)) int ns_session_accept(ns_server *srv);

void ns_session_set_state(ns_session *s, ns_session_state st);
void ns_session_ref(ns_session *s);
void ns_session_unref(ns_session *s);

/* Sends an envelope; a failure to queue closes the session. Any answer
 * but an Error ends a streak of invalid requests. */
void ns_session_send(ns_session *s, const ns_envelope *env);
/* Sends Error{code, message}; a fatal one then closes the session. A
 * non-fatal one is logged at debug level only, since the client decides how
 * many it gets; after NS_SESSION_MAX_INVALID UNSUPPORTED_MESSAGE or
 * INVALID_ARGUMENT errors in a row the session ends with a fatal MALFORMED. */
void ns_session_send_error(ns_session *s, uint64_t request_id, int code, bool fatal,
                           uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* A limit refuses something of this session: counts it
 * (ns_server_limit_hit) and sends Error{code}, like ns_session_send_error,
 * with a log line naming the limit: warn when fatal, else info the first
 * time in this session and debug after that, so that a client that keeps
 * running into a limit cannot flood the log. */
void ns_session_refuse(ns_session *s, ns_limit limit, uint64_t request_id, int code, bool fatal,
                       uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Ends the session's subscription, if any, and frees its place among the
 * server's max_subscriptions. */
void ns_session_end_subscription(ns_session *s);

/* A request finished (its response is queued): lets a draining session go. */
void ns_session_request_done(ns_session *s);

/* Graceful stop: Goodbye once no request is in flight, then close. */
void ns_session_drain(ns_session *s);
/* Ends the session: graceful flushes what is queued first. */
void ns_session_close(ns_session *s, bool graceful);

/* The principal's name for logs, or NULL before authentication. */
const char *ns_session_principal(const ns_session *s);

#endif
