#include "session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "log.h"

/* Output queued beyond this stops reading from the client until it drains,
 * so a client that never reads cannot make us buffer without bound. */
#define NS_SESSION_WRITE_LIMIT (4u * 1024u * 1024u)

static const char *const state_names[] = {"handshake", "await_hello", "authenticating",
                                          "authenticated", "closing"};

const char *ns_session_principal(const ns_session *s)
{
    return s->state >= NS_SESSION_AUTHENTICATED && s->identity.principal_name[0]
               ? s->identity.principal_name
               : NULL;
}

void ns_session_set_state(ns_session *s, ns_session_state st)
{
    if (s->state == st)
        return;
    ns_log(NS_LOG_DEBUG, s->id, ns_session_principal(s), "state %s -> %s", state_names[s->state],
           state_names[st]);
    s->state = st;
}

void ns_session_ref(ns_session *s)
{
    s->refs++;
}

void ns_session_unref(ns_session *s)
{
    if (--s->refs > 0)
        return;
    free(s);
}

void ns_session_close(ns_session *s, bool graceful)
{
    ns_session_set_state(s, NS_SESSION_CLOSING);
    if (s->conn)
        ns_conn_close(s->conn, graceful);
}

void ns_session_send(ns_session *s, const ns_envelope *env)
{
    if (s->conn == NULL || ns_conn_is_closing(s->conn))
        return;
    int rc = ns_envelope_send(s->conn, env);
    if (rc != 0) {
        ns_log(NS_LOG_WARN, s->id, ns_session_principal(s), "cannot send: %s", uv_strerror(rc));
        ns_session_close(s, false);
        return;
    }
    if (env->body_case != NAPSYNC__V1__ENVELOPE__BODY_ERROR)
        s->invalid_streak = 0;
}

void ns_session_send_error(ns_session *s, uint64_t request_id, int code, bool fatal,
                           uint32_t retry_after_ms, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    Napsync__V1__Error err = NAPSYNC__V1__ERROR__INIT;
    err.code = (Napsync__V1__ErrorCode)code;
    err.message = msg;
    err.fatal = fatal;
    err.retry_after_ms = retry_after_ms;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_ERROR;
    env.error = &err;
    ns_log(fatal ? NS_LOG_WARN : NS_LOG_DEBUG, s->id, ns_session_principal(s), "error %s%s: %s",
           ns_error_code_name(code), fatal ? " (closing)" : "", msg);
    ns_session_send(s, &env);
    if (fatal) {
        ns_session_close(s, true);
        return;
    }
    /* A client that sends only what we cannot serve would otherwise get an
     * Error frame per request, for ever. */
    bool invalid = code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED_MESSAGE ||
                   code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT;
    if (invalid && ++s->invalid_streak >= NS_SESSION_MAX_INVALID)
        ns_session_send_error(s, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_MALFORMED, true, 0,
                              "too many invalid requests (%d in a row)", NS_SESSION_MAX_INVALID);
}

static void send_goodbye(ns_session *s, Napsync__V1__GoodbyeReason reason, const char *msg)
{
    Napsync__V1__Goodbye bye = NAPSYNC__V1__GOODBYE__INIT;
    bye.reason = reason;
    bye.message = (char *)msg;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &bye;
    ns_session_send(s, &env);
}

static void finish_drain(ns_session *s)
{
    if (s->state == NS_SESSION_CLOSING)
        return;
    if (s->state == NS_SESSION_HANDSHAKE) {
        /* Nothing to say Goodbye over yet. */
        ns_session_close(s, false);
        return;
    }
    send_goodbye(s, NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_SHUTTING_DOWN,
                 "the server is shutting down; reconnect later or to another instance");
    ns_session_close(s, true);
}

void ns_session_drain(ns_session *s)
{
    s->draining = true;
    if (s->inflight == 0)
        finish_drain(s);
}

void ns_session_request_done(ns_session *s)
{
    if (s->inflight > 0)
        s->inflight--;
    if (s->draining && s->inflight == 0)
        finish_drain(s);
}

static void on_ready(ns_conn *c, void *ud)
{
    ns_session *s = ud;
    ns_log(NS_LOG_DEBUG, s->id, NULL, "TLS established (%s)", ns_conn_tls_version(c));
    if (ns_conn_peer_fingerprint(c, s->fingerprint) != 0) {
        /* Cannot happen with verify-peer, but never serve without identity. */
        ns_session_close(s, false);
        return;
    }
    ns_session_set_state(s, NS_SESSION_AWAIT_HELLO);
    if (s->reject_busy) {
        ns_session_send_error(s, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY, true, 5000,
                              "the server has reached its limit of %u sessions; retry later",
                              s->server->cfg->max_sessions);
        return;
    }
    if (s->draining)
        finish_drain(s);
}

static void on_frame(ns_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    (void)c;
    ns_session *s = ud;
    if (s->state == NS_SESSION_CLOSING)
        return;
    ns_dispatch_frame(s, payload, len);
}

static void on_frame_too_large(ns_conn *c, void *ud)
{
    (void)c;
    ns_session *s = ud;
    ns_session_send_error(s, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE, true, 0,
                          "a frame exceeded the maximum of %u bytes",
                          s->server->cfg->max_frame_size);
}

static void on_idle(ns_conn *c, void *ud)
{
    (void)c;
    ns_session *s = ud;
    ns_log(NS_LOG_INFO, s->id, ns_session_principal(s), "closing idle session");
    if (s->state == NS_SESSION_AUTHENTICATED || s->state == NS_SESSION_AWAIT_HELLO)
        send_goodbye(s, NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_IDLE,
                     "no traffic for too long; reconnect when you need to");
    ns_session_close(s, true);
}

/* TLS is up but the client has not said Hello in time: however slowly it
 * trickles bytes, and whatever idle_timeout_ms says (it may be 0). */
static void on_first_frame_timeout(ns_conn *c, void *ud)
{
    (void)c;
    ns_session *s = ud;
    if (s->state != NS_SESSION_AWAIT_HELLO)
        return;
    ns_session_send_error(s, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_TIMEOUT, true, 0,
                          "no Hello within %u ms of the TLS handshake",
                          s->server->cfg->handshake_timeout_ms);
}

static void on_close(ns_conn *c, ns_conn_close_reason reason, const char *msg, void *ud)
{
    (void)c;
    ns_session *s = ud;
    ns_log_level lvl =
        reason == NS_CONN_TLS_FAILED || reason == NS_CONN_TIMED_OUT ? NS_LOG_WARN : NS_LOG_INFO;
    ns_log(lvl, s->id, ns_session_principal(s), "session closed: %s", msg);
    s->conn = NULL;
    ns_session_set_state(s, NS_SESSION_CLOSING);
    if (s->sub) {
        /* After this the feed never calls back for this session. */
        ns_feed_unsubscribe(s->sub);
        s->sub = NULL;
    }
    ns_server_remove_session(s->server, s);
    ns_session_unref(s);
}

static const ns_conn_callbacks callbacks = {
    .on_ready = on_ready,
    .on_frame = on_frame,
    .on_frame_too_large = on_frame_too_large,
    .on_idle = on_idle,
    .on_first_frame_timeout = on_first_frame_timeout,
    .on_close = on_close,
};

int ns_session_accept(ns_server *srv)
{
    ns_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->server = srv;
    s->refs = 1;
    s->state = NS_SESSION_HANDSHAKE;
    uint8_t rnd[8];
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0)
        memset(rnd, 0, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(s->id + 2 * i, 3, "%02x", rnd[i]);

    const ns_config *cfg = srv->cfg;
    ns_conn_options opt = {
        .max_frame = cfg->max_frame_size,
        .handshake_timeout_ms = cfg->handshake_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .first_frame_timeout_ms = cfg->handshake_timeout_ms, /* for Hello */
        .write_queue_limit = NS_SESSION_WRITE_LIMIT,
    };
    int rc = ns_conn_accept((uv_stream_t *)&srv->listener, srv->tls, &opt, &callbacks, s, &s->conn);
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->reject_busy = srv->nsessions >= cfg->max_sessions;
    s->draining = srv->draining;
    ns_server_add_session(srv, s);
    ns_log(NS_LOG_INFO, s->id, NULL, "connection from %s", ns_conn_peer_address(s->conn));
    return 0;
}
