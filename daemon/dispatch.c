#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "version.h"

#define NS_MAX_CLIENT_LABEL 64
#define NS_MAX_PING_PAYLOAD 64

#define ERR(name) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void send_welcome(ns_session *s, uint64_t request_id)
{
    const ns_identity_info *id = &s->identity;
    Napsync__V1__Principal principal = NAPSYNC__V1__PRINCIPAL__INIT;
    principal.id = (char *)id->principal_id;
    principal.name = (char *)id->principal_name;
    Napsync__V1__Organisation org = NAPSYNC__V1__ORGANISATION__INIT;
    org.id = (char *)id->organisation_id;
    org.name = (char *)id->organisation_name;
    org.kind = (char *)id->organisation_kind;
    org.country = (char *)id->country;
    Napsync__V1__Device dev = NAPSYNC__V1__DEVICE__INIT;
    dev.id = (char *)id->device_id;
    dev.name = (char *)id->device_name;
    char *roles[NS_AUTH_MAX_ROLES];
    for (int i = 0; i < id->nroles; i++)
        roles[i] = (char *)id->roles[i];

    Napsync__V1__Welcome w = NAPSYNC__V1__WELCOME__INIT;
    w.version = s->version;
    w.server_name = "napsyncd";
    w.server_version = NS_VERSION;
    w.session_id = s->id;
    w.principal = &principal;
    w.organisation = &org;
    w.device = &dev;
    w.n_roles = (size_t)id->nroles;
    w.roles = roles;
    w.max_frame_size = s->server->cfg->max_frame_size;
    w.idle_timeout_ms = s->server->cfg->idle_timeout_ms;

    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_WELCOME;
    env.welcome = &w;
    ns_session_send(s, &env);
}

typedef struct {
    ns_session *session; /* holds a reference until the callback */
    uint64_t request_id;
} hello_op;

static void on_identity(ns_auth_result r, const ns_identity_info *id, void *ud)
{
    hello_op op = *(hello_op *)ud;
    free(ud);
    ns_session *s = op.session;
    if (s->conn == NULL || s->state != NS_SESSION_AUTHENTICATING) {
        ns_session_unref(s); /* the client went away meanwhile */
        return;
    }
    char fp[65];
    hex(s->fingerprint, sizeof(s->fingerprint), fp);
    switch (r) {
    case NS_AUTH_OK:
        s->identity = *id;
        ns_session_set_state(s, NS_SESSION_AUTHENTICATED);
        ns_log(NS_LOG_INFO, s->id, id->principal_name,
               "authenticated device=%s organisation=%s protocol=%u", id->device_name,
               id->organisation_name, s->version);
        send_welcome(s, op.request_id);
        ns_conn_resume(s->conn);
        break;
    case NS_AUTH_REVOKED:
        ns_session_send_error(s, op.request_id, ERR(DEVICE_REVOKED), true, 0,
                              "device \"%s\" has been revoked; ask your administrator for a "
                              "new device certificate",
                              id->device_name);
        break;
    case NS_AUTH_UNKNOWN_DEVICE:
        ns_session_send_error(s, op.request_id, ERR(UNKNOWN_DEVICE), true, 0,
                              "no device is registered for this certificate (SHA-256 %s); ask "
                              "your administrator to register it",
                              fp);
        break;
    case NS_AUTH_UNAVAILABLE:
        ns_session_send_error(s, op.request_id, ERR(UNAVAILABLE), true, 2000,
                              "the server cannot reach its database; retry shortly");
        break;
    }
    ns_session_request_done(s);
    ns_session_unref(s);
}

/* The lookup of a Hello could not be queued: the session ends, with words
 * that tell the client whether and when to come back. */
static void refuse_hello(ns_session *s, uint64_t request_id, ns_db_status st)
{
    switch (st) {
    case NS_DB_QUEUE_FULL:
        ns_session_send_error(s, request_id, ERR(UNAVAILABLE), true, 2000,
                              "the server is overloaded; retry shortly");
        break;
    case NS_DB_UNAVAILABLE:
        ns_session_send_error(s, request_id, ERR(UNAVAILABLE), true, 2000,
                              "the server cannot reach its database; retry shortly");
        break;
    case NS_DB_SHUTDOWN:
        ns_session_send_error(s, request_id, ERR(SHUTTING_DOWN), true, 0,
                              "the server is shutting down; reconnect later or to another "
                              "instance");
        break;
    default:
        ns_session_send_error(s, request_id, ERR(INTERNAL), true, 1000,
                              "the server could not look the device up (%s)", ns_db_status_str(st));
        break;
    }
}

static void handle_hello(ns_session *s, uint64_t request_id, const Napsync__V1__Hello *h)
{
    if (!ns_text_ok(h->client_name, NS_MAX_CLIENT_LABEL) ||
        !ns_text_ok(h->client_version, NS_MAX_CLIENT_LABEL)) {
        ns_session_send_error(s, request_id, ERR(MALFORMED), true, 0,
                              "client_name and client_version must be UTF-8 text of at most %d "
                              "bytes",
                              NS_MAX_CLIENT_LABEL);
        return;
    }
    uint32_t lo =
        h->min_version > NS_PROTOCOL_VERSION_MIN ? h->min_version : NS_PROTOCOL_VERSION_MIN;
    uint32_t hi =
        h->max_version < NS_PROTOCOL_VERSION_MAX ? h->max_version : NS_PROTOCOL_VERSION_MAX;
    if (h->min_version > h->max_version || lo > hi) {
        ns_session_send_error(s, request_id, ERR(UNSUPPORTED_VERSION), true, 0,
                              "this server speaks protocol versions %d to %d; the client "
                              "offered %u to %u",
                              NS_PROTOCOL_VERSION_MIN, NS_PROTOCOL_VERSION_MAX, h->min_version,
                              h->max_version);
        return;
    }
    s->version = hi;
    ns_log(NS_LOG_DEBUG, s->id, NULL, "hello from %s %s", h->client_name, h->client_version);

    hello_op *op = malloc(sizeof(*op));
    if (op == NULL) {
        ns_session_send_error(s, request_id, ERR(INTERNAL), true, 1000, "out of memory");
        return;
    }
    op->session = s;
    op->request_id = request_id;
    ns_session_ref(s);
    s->inflight++;
    ns_session_set_state(s, NS_SESSION_AUTHENTICATING);
    /* Requests pipelined behind Hello wait until we know who is asking. */
    ns_conn_pause(s->conn);
    ns_db_status st = ns_auth_lookup(s->server->db, s->fingerprint, on_identity, op);
    if (st != NS_DB_OK) {
        free(op);
        s->inflight--;
        refuse_hello(s, request_id, st);
        ns_session_unref(s); /* last: it may free s */
    }
}

static void handle_ping(ns_session *s, uint64_t request_id, const Napsync__V1__Ping *p)
{
    if (p->payload.len > NS_MAX_PING_PAYLOAD) {
        ns_session_send_error(s, request_id, ERR(INVALID_ARGUMENT), false, 0,
                              "ping payload is limited to %d bytes", NS_MAX_PING_PAYLOAD);
        return;
    }
    Napsync__V1__Pong pong = NAPSYNC__V1__PONG__INIT;
    pong.payload = p->payload;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PONG;
    env.pong = &pong;
    ns_session_send(s, &env);
}

static void dispatch(ns_session *s, const ns_envelope *env)
{
    uint64_t rid = env->request_id;
    if (s->state == NS_SESSION_AWAIT_HELLO) {
        if (env->body_case != NAPSYNC__V1__ENVELOPE__BODY_HELLO) {
            ns_session_send_error(s, rid, ERR(HELLO_REQUIRED), true, 0,
                                  "the first message of a session must be Hello");
            return;
        }
        handle_hello(s, rid, env->hello);
        return;
    }
    switch (env->body_case) {
    case NAPSYNC__V1__ENVELOPE__BODY_PING:
        handle_ping(s, rid, env->ping);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_GOODBYE:
        ns_log(NS_LOG_DEBUG, s->id, ns_session_principal(s), "client said goodbye");
        ns_session_close(s, true);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_ERROR:
        /* A client may report why it is about to give up; nothing to answer. */
        ns_log(NS_LOG_DEBUG, s->id, ns_session_principal(s), "client reported error %s",
               ns_error_code_name(env->error->code));
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_HELLO:
        ns_session_send_error(s, rid, ERR(UNEXPECTED_MESSAGE), true, 0,
                              "Hello was already received on this session");
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_WELCOME:
    case NAPSYNC__V1__ENVELOPE__BODY_PONG:
        ns_session_send_error(s, rid, ERR(UNEXPECTED_MESSAGE), true, 0,
                              "a client may not send server responses");
        return;
    case NAPSYNC__V1__ENVELOPE__BODY__NOT_SET:
    default:
        /* A newer client's message: say so and keep the session. */
        ns_session_send_error(s, rid, ERR(UNSUPPORTED_MESSAGE), false, 0,
                              "this server (protocol %d) does not know that message",
                              NS_PROTOCOL_VERSION_MAX);
        return;
    }
}

void ns_dispatch_frame(ns_session *s, const uint8_t *payload, size_t len)
{
    if (s->state != NS_SESSION_AWAIT_HELLO && s->state != NS_SESSION_AUTHENTICATED)
        return; /* handshake not done, or closing: nothing may be served */
    ns_envelope *env = ns_envelope_unpack(payload, len);
    if (env == NULL) {
        ns_session_send_error(s, 0, ERR(MALFORMED), true, 0,
                              "a frame of %zu bytes is not a valid Envelope", len);
        return;
    }
    dispatch(s, env);
    ns_envelope_free(env);
}
