#include "session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "log.h"
#include "metrics.h"
#include "page_compact.h"

static const char *const state_names[] = {"handshake", "await_hello", "authenticating",
                                          "authenticated", "closing"};

const char *ns_session_principal(const ns_session *s)
{
    return s->state >= NS_SESSION_AUTHENTICATED && s->identity.principal_name[0]
               ? s->identity.principal_name
               : NULL;
}

/* How the handshake ended, counted once: "ok" (Welcome), the code of
 * the fatal Error that refused it, or how the connection closed first. */
static void handshake_end(ns_session *s, const char *result)
{
    if (s->handshake_result != NULL)
        return;
    s->handshake_result = result;
    ns_metrics_count(NS_FAMILY_HANDSHAKES, result);
}

/* ---- places under max_sessions_per_device --------------------------------
 *
 * The sessions that hold a place (from the TLS handshake until they close;
 * not those refused for max_sessions), counted per certificate fingerprint
 * in an open-addressing table (linear probing, backward-shift deletion) that
 * lives while it has an entry. The check at each handshake is then O(1): a
 * walk over every session made 10,000 devices reconnecting at once cost
 * O(n^2). The first 8 bytes of a SHA-256 fingerprint of a certificate our
 * CA issued are as good a hash as any, and nobody chooses them. */
typedef struct {
    uint8_t fp[32];
    uint32_t count; /* 0: a free slot */
} place_slot;

struct ns_places {
    place_slot *slots;
    size_t cap; /* a power of two */
    size_t used;
};

#define PLACES_MIN_CAP 64

static size_t place_home(const uint8_t fp[32], size_t cap)
{
    uint64_t h;
    memcpy(&h, fp, sizeof(h));
    return (size_t)h & (cap - 1);
}

/* The slot of fp, or the free slot where it would go. */
static place_slot *place_find(const struct ns_places *p, const uint8_t fp[32])
{
    size_t i = place_home(fp, p->cap);
    while (p->slots[i].count != 0 && memcmp(p->slots[i].fp, fp, 32) != 0)
        i = (i + 1) & (p->cap - 1);
    return &p->slots[i];
}

static uint32_t places_count(const ns_server *srv, const uint8_t fp[32])
{
    return srv->places != NULL ? place_find(srv->places, fp)->count : 0;
}

/* Room for one more device at most half full. Returns 0 or -1 (no memory:
 * the table is unchanged). */
static int places_reserve(ns_server *srv)
{
    struct ns_places *p = srv->places;
    if (p != NULL && (p->used + 1) * 2 <= p->cap)
        return 0;
    size_t cap = p != NULL ? p->cap * 2 : PLACES_MIN_CAP;
    place_slot *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return -1;
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL) {
            free(slots);
            return -1;
        }
        srv->places = p;
    }
    struct ns_places grown = {.slots = slots, .cap = cap, .used = p->used};
    for (size_t i = 0; p->slots != NULL && i < p->cap; i++)
        if (p->slots[i].count != 0)
            *place_find(&grown, p->slots[i].fp) = p->slots[i];
    free(p->slots);
    *p = grown;
    return 0;
}

static bool places_add(ns_server *srv, const uint8_t fp[32])
{
    if (places_count(srv, fp) == 0 && places_reserve(srv) != 0)
        return false;
    place_slot *e = place_find(srv->places, fp);
    if (e->count++ == 0) {
        memcpy(e->fp, fp, 32);
        srv->places->used++;
    }
    return true;
}

static void places_remove(ns_server *srv, const uint8_t fp[32])
{
    struct ns_places *p = srv->places;
    place_slot *e = p != NULL ? place_find(p, fp) : NULL;
    if (e == NULL || e->count == 0 || --e->count > 0)
        return;
    /* Backward shift: later entries of the run move up, so that a lookup
     * never stops at the hole. */
    size_t hole = (size_t)(e - p->slots), i = hole;
    for (;;) {
        i = (i + 1) & (p->cap - 1);
        if (p->slots[i].count == 0)
            break;
        size_t home = place_home(p->slots[i].fp, p->cap);
        /* Movable when its home is not cyclically within (hole, i]. */
        if (((i - home) & (p->cap - 1)) >= ((i - hole) & (p->cap - 1))) {
            p->slots[hole] = p->slots[i];
            hole = i;
        }
    }
    p->slots[hole].count = 0;
    if (--p->used == 0) {
        free(p->slots);
        free(p);
        srv->places = NULL;
    }
}

void ns_session_set_state(ns_session *s, ns_session_state st)
{
    if (s->state == st)
        return;
    if (st == NS_SESSION_AUTHENTICATED)
        handshake_end(s, "ok");
    ns_log(NS_LOG_DEBUG, s->id, ns_session_principal(s), "state %s -> %s", state_names[s->state],
           state_names[st]);
    s->state = st;
    /* Out of memory, a session goes uncounted: its device may then have one
     * session more than the limit, which is better than refusing it. */
    bool hold = !s->reject_busy && st > NS_SESSION_HANDSHAKE && st < NS_SESSION_CLOSING;
    if (hold && !s->place)
        s->place = places_add(s->server, s->fingerprint);
    else if (!hold && s->place) {
        places_remove(s->server, s->fingerprint);
        s->place = false;
    }
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
    size_t sent = 0;
    /* Every ChangePage (a Pull's, a streamed or a subscription's) in the
     * compact form when the session agreed on it and the page fits it. */
    ns_page_compact *pc = NULL;
    if (s->compact && env->body_case == NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE &&
        ns_page_compact_make(env, &pc) == NS_PAGE_COMPACT_OK)
        env = ns_page_compact_envelope(pc);
    int rc = ns_compress_send(s->zstd ? s->server->compress : NULL, s->conn, env, &sent);
    bool is_error = env->body_case == NAPSYNC__V1__ENVELOPE__BODY_ERROR;
    ns_page_compact_free(pc); /* env may point into it */
    if (rc != 0) {
        ns_log(NS_LOG_WARN, s->id, ns_session_principal(s), "cannot send: %s", uv_strerror(rc));
        ns_session_close(s, false);
        return;
    }
    ns_metrics_inc(NS_METRIC_FRAMES_OUT);
    ns_metrics_add(NS_METRIC_BYTES_OUT, 4 + sent);
    if (!is_error)
        s->invalid_streak = 0;
}

/* Sends Error{code, msg}, logged at lvl (with the limit's name when one
 * refused the request); see ns_session_send_error. */
static void send_error(ns_session *s, uint64_t request_id, int code, bool fatal,
                       uint32_t retry_after_ms, ns_log_level lvl, const char *limit,
                       const char *msg)
{
    Napsync__V1__Error err = NAPSYNC__V1__ERROR__INIT;
    err.code = (Napsync__V1__ErrorCode)code;
    err.message = (char *)msg; /* only read while packing */
    err.fatal = fatal;
    err.retry_after_ms = retry_after_ms;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_ERROR;
    env.error = &err;
    ns_log(lvl, s->id, ns_session_principal(s), "%s%s%serror %s%s: %s", limit ? "limit " : "",
           limit ? limit : "", limit ? ": " : "", ns_error_code_name(code),
           fatal ? " (closing)" : "", msg);
    ns_metrics_count(NS_FAMILY_ERRORS_SENT, ns_error_code_name(code));
    if (fatal && s->state < NS_SESSION_AUTHENTICATED)
        handshake_end(s, ns_error_code_name(code));
    ns_session_send(s, &env);
    if (fatal) {
        ns_session_close(s, true);
        return;
    }
    /* A client that sends only what we cannot serve would otherwise get an
     * Error frame per request, for ever. */
    bool invalid = code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED_MESSAGE ||
                   code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT;
    if (invalid && ++s->invalid_streak >= NS_SESSION_MAX_INVALID) {
        ns_metrics_limit_hit("invalid_requests");
        ns_session_send_error(s, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_MALFORMED, true, 0,
                              "too many invalid requests (%d in a row)", NS_SESSION_MAX_INVALID);
    }
}

void ns_session_send_error(ns_session *s, uint64_t request_id, int code, bool fatal,
                           uint32_t retry_after_ms, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    send_error(s, request_id, code, fatal, retry_after_ms, fatal ? NS_LOG_WARN : NS_LOG_DEBUG, NULL,
               msg);
}

/* The level of a limit's log line: see ns_session_refuse. */
static ns_log_level limit_log_level(ns_session *s, ns_limit limit, bool fatal)
{
    ns_server_limit_hit(s->server, limit);
    if (fatal)
        return NS_LOG_WARN;
    uint32_t bit = 1u << limit;
    if (s->limits_logged & bit)
        return NS_LOG_DEBUG;
    s->limits_logged |= bit;
    return NS_LOG_INFO;
}

void ns_session_refuse(ns_session *s, ns_limit limit, uint64_t request_id, int code, bool fatal,
                       uint32_t retry_after_ms, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    send_error(s, request_id, code, fatal, retry_after_ms, limit_log_level(s, limit, fatal),
               ns_limit_name(limit), msg);
}

void ns_session_end_subscription(ns_session *s)
{
    if (s->sub == NULL)
        return;
    /* After this the feed never calls back for this session. */
    ns_feed_unsubscribe(s->sub);
    s->sub = NULL;
    s->sub_held = false;
    if (s->server->nsubscriptions > 0)
        s->server->nsubscriptions--;
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

/* The other sessions of s's certificate that hold a place: from the TLS
 * handshake on (a certificate is a device), until they close. */
static uint32_t device_sessions(const ns_session *s)
{
    uint32_t n = places_count(s->server, s->fingerprint);
    return s->place && n > 0 ? n - 1 : n;
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
        ns_session_refuse(s, NS_LIMIT_MAX_SESSIONS, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY,
                          true, 5000,
                          "the server has reached its limit of %u sessions (max_sessions); "
                          "retry later",
                          s->server->cfg->max_sessions);
        return;
    }
    uint32_t per_device = s->server->cfg->max_sessions_per_device;
    if (device_sessions(s) >= per_device) {
        ns_session_refuse(s, NS_LIMIT_MAX_SESSIONS_PER_DEVICE, 0,
                          NAPSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY, true, 5000,
                          "this device already has %u sessions (max_sessions_per_device); end "
                          "one or retry later",
                          per_device);
        return;
    }
    if (s->draining)
        finish_drain(s);
}

static void on_frame(ns_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    (void)c;
    ns_session *s = ud;
    ns_metrics_inc(NS_METRIC_FRAMES_IN);
    ns_metrics_add(NS_METRIC_BYTES_IN, 4 + len);
    if (s->state == NS_SESSION_CLOSING)
        return;
    ns_dispatch_frame(s, payload, len);
}

static void on_frame_too_large(ns_conn *c, void *ud)
{
    (void)c;
    ns_session *s = ud;
    ns_session_refuse(
        s, NS_LIMIT_MAX_FRAME_SIZE, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE, true, 0,
        "a frame exceeded the maximum of %u bytes (max_frame_size)", s->max_frame_size);
}

static void on_idle(ns_conn *c, void *ud)
{
    (void)c;
    ns_session *s = ud;
    ns_server_limit_hit(s->server, NS_LIMIT_IDLE_TIMEOUT);
    ns_log(NS_LOG_INFO, s->id, ns_session_principal(s),
           "limit idle_timeout_ms: closing idle session");
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
    ns_session_refuse(s, NS_LIMIT_HANDSHAKE_TIMEOUT, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_TIMEOUT,
                      true, 0, "no Hello within %u ms of the TLS handshake (handshake_timeout_ms)",
                      s->hello_timeout_ms);
}

/* The client has taken none of its waiting output for send_timeout_ms: it
 * does not read. What is queued is dropped with the connection, at once:
 * an Error would only queue behind what it does not read. */
static void on_send_timeout(ns_conn *c, void *ud)
{
    ns_session *s = ud;
    ns_server_limit_hit(s->server, NS_LIMIT_SEND_TIMEOUT);
    ns_log(NS_LOG_WARN, s->id, ns_session_principal(s),
           "limit send_timeout_ms: the client took none of %zu queued bytes in %u ms; closing",
           ns_conn_write_queue_bytes(c), s->send_timeout_ms);
    ns_session_close(s, false);
}

/* The output has drained to max_queued_bytes: the subscription, held back
 * while it was above, may deliver again. Reading resumes by itself. */
static void on_writable(ns_conn *c, void *ud)
{
    ns_session *s = ud;
    if (s->sub && s->sub_held) {
        ns_log(NS_LOG_DEBUG, s->id, ns_session_principal(s),
               "resuming the subscription: %zu bytes wait for the client",
               ns_conn_write_queue_bytes(c));
        s->sub_held = false;
        ns_feed_sub_resume(s->sub);
    }
    ns_dispatch_stream_writable(s);
}

static void on_close(ns_conn *c, ns_conn_close_reason reason, const char *msg, void *ud)
{
    (void)c;
    ns_session *s = ud;
    ns_log_level lvl =
        reason == NS_CONN_TLS_FAILED || reason == NS_CONN_TIMED_OUT ? NS_LOG_WARN : NS_LOG_INFO;
    if (reason == NS_CONN_TIMED_OUT && s->state == NS_SESSION_HANDSHAKE) {
        ns_server_limit_hit(s->server, NS_LIMIT_HANDSHAKE_TIMEOUT);
        ns_log(lvl, s->id, NULL, "limit handshake_timeout_ms: session closed: %s", msg);
    } else {
        ns_log(lvl, s->id, ns_session_principal(s), "session closed: %s", msg);
    }
    handshake_end(s, reason == NS_CONN_TLS_FAILED       ? "tls_failed"
                     : reason == NS_CONN_TIMED_OUT      ? "timeout"
                     : reason == NS_CONN_CLOSED_BY_PEER ? "closed_by_client"
                                                        : "closed");
    s->conn = NULL;
    ns_session_set_state(s, NS_SESSION_CLOSING);
    ns_session_end_subscription(s);
    ns_dispatch_stream_drop(s);
    ns_server_remove_session(s->server, s);
    ns_session_unref(s);
}

static const ns_conn_callbacks callbacks = {
    .on_ready = on_ready,
    .on_frame = on_frame,
    .on_frame_too_large = on_frame_too_large,
    .on_idle = on_idle,
    .on_first_frame_timeout = on_first_frame_timeout,
    .on_send_timeout = on_send_timeout,
    .on_writable = on_writable,
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
        .write_queue_limit = cfg->max_queued_bytes,
        .send_timeout_ms = cfg->send_timeout_ms,
    };
    int rc = ns_conn_accept((uv_stream_t *)&srv->listener, srv->tls, &opt, &callbacks, s, &s->conn);
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->reject_busy = srv->nsessions >= cfg->max_sessions;
    s->max_frame_size = opt.max_frame;
    s->idle_timeout_ms = opt.idle_timeout_ms;
    s->hello_timeout_ms = opt.first_frame_timeout_ms;
    s->send_timeout_ms = opt.send_timeout_ms;
    s->max_queued_bytes = (uint32_t)opt.write_queue_limit;
    s->max_push_mutations = cfg->max_push_mutations;
    s->draining = srv->draining;
    ns_server_add_session(srv, s);
    ns_metrics_inc(NS_METRIC_SESSIONS_ACCEPTED);
    ns_log(NS_LOG_INFO, s->id, NULL, "connection from %s", ns_conn_peer_address(s->conn));
    return 0;
}
