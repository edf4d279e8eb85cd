#include "dispatch.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "history.h"
#include "log.h"
#include "metrics.h"
#include "reports.h"
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
    w.max_frame_size = s->max_frame_size;
    w.idle_timeout_ms = s->idle_timeout_ms;
    w.max_push_mutations = s->max_push_mutations;
    w.pull_stream = 1;
    w.compression = s->zstd_offered ? NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1
                                    : NAPSYNC__V1__COMPRESSION__COMPRESSION_NONE;
    w.page_format = s->compact_offered ? NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_COMPACT_1
                                       : NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_ORDINARY;

    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_WELCOME;
    env.welcome = &w;
    ns_session_send(s, &env);
    /* From the next frame on, both ways (docs/protocol.md "Compression"). */
    s->zstd = s->zstd_offered;
    s->compact = s->compact_offered;
}

typedef struct {
    ns_session *session; /* holds a reference until the callback */
    uint64_t request_id;
} hello_op;

static void refuse_hello(ns_session *s, uint64_t request_id, ns_db_status st);

static void on_identity(ns_auth_result r, const ns_identity_info *id, void *ud)
{
    hello_op op = *(hello_op *)ud;
    free(ud);
    ns_session *s = op.session;
    if (s->conn == NULL || s->state != NS_SESSION_AUTHENTICATING) {
        ns_session_unref(s); /* the client went away meanwhile */
        return;
    }
    /* A device's access changed while the lookup ran (revocation.h): the
     * answer may predate the change. Ask again; the reference and the
     * request in flight go with the new lookup. */
    uint64_t epoch = ns_revocation_epoch(s->server->revocation);
    if (r == NS_AUTH_OK && s->auth_epoch != epoch) {
        s->auth_epoch = epoch;
        hello_op *again = malloc(sizeof(*again));
        ns_db_status st = NS_DB_NOMEM;
        if (again) {
            *again = op;
            st = ns_auth_lookup(s->server->db, s->fingerprint, on_identity, again);
            if (st == NS_DB_OK)
                return;
            free(again);
        }
        refuse_hello(s, op.request_id, st);
        ns_session_request_done(s);
        ns_session_unref(s);
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
    /* Unknown values (a newer client's) are skipped: the list says what the
     * client can read, and this server picks what it knows. */
    for (size_t i = 0; i < h->n_compression; i++)
        s->zstd_offered |= h->compression[i] == NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1;
    for (size_t i = 0; i < h->n_page_formats; i++)
        s->compact_offered |= h->page_formats[i] == NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_COMPACT_1;
    /* Frames already sent behind Hello use the compression the client
     * expects this server to choose; one it will not choose could not be
     * read: say so plainly rather than fail on the first such frame. */
    if (h->first_flight_compression != NAPSYNC__V1__COMPRESSION__COMPRESSION_NONE &&
        (h->first_flight_compression != NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1 ||
         !s->zstd_offered)) {
        ns_session_send_error(s, request_id, ERR(INVALID_ARGUMENT), true, 0,
                              "first_flight_compression %d is not a compression this server "
                              "chooses for this Hello: send the first flight uncompressed",
                              (int)h->first_flight_compression);
        return;
    }
    ns_log(NS_LOG_DEBUG, s->id, NULL, "hello from %s %s%s", h->client_name, h->client_version,
           s->zstd_offered ? " (zstd)" : "");

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
    s->auth_epoch = ns_revocation_epoch(s->server->revocation);
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

/* An asynchronous request: the session is held (a reference) and its
 * later frames wait until the answer is sent, so answers keep the order of
 * requests. */
typedef struct {
    ns_session *session;
    uint64_t request_id;
    uint64_t started_ns; /* uv_hrtime() at the request: the latency metrics */
} request_op;

/* NULL (after answering INTERNAL) when memory is short. */
static request_op *begin_request(ns_session *s, uint64_t request_id)
{
    request_op *op = malloc(sizeof(*op));
    if (op == NULL) {
        ns_session_send_error(s, request_id, ERR(INTERNAL), false, 1000, "out of memory");
        return NULL;
    }
    op->session = s;
    op->request_id = request_id;
    op->started_ns = uv_hrtime();
    return op;
}

/* The request was accepted by its module: hold the session until its answer. */
static void hold_for_answer(ns_session *s)
{
    ns_session_ref(s);
    s->inflight++;
    ns_conn_pause(s->conn);
}

/* Returns whether the session can still take an answer. */
static bool answerable(const ns_session *s)
{
    return s->conn != NULL && s->state == NS_SESSION_AUTHENTICATED;
}

static void end_request(ns_session *s)
{
    ns_session_request_done(s);
    /* A draining session serves no new requests. */
    if (answerable(s) && !s->draining)
        ns_conn_resume(s->conn);
    ns_session_unref(s);
}

/* Answers an asynchronous request and lets its session go on: with env
 * (its body set; the request id is filled in here) or, when env is NULL,
 * with Error{code, message}, not fatal. ud is the request's request_op. */
static void answer_request(void *ud, ns_envelope *env, int code, const char *message)
{
    request_op op = *(request_op *)ud;
    free(ud);
    ns_session *s = op.session;
    if (answerable(s)) {
        if (env) {
            env->request_id = op.request_id;
            ns_session_send(s, env);
        } else {
            ns_session_send_error(s, op.request_id, code, false,
                                  code == ERR(UNAVAILABLE) ? 1000 : 0, "%s", message);
        }
    }
    end_request(s);
}

/* A module refused the request at once (its callback will never come). */
static void refuse_request(ns_session *s, request_op *op, uint64_t request_id, int code,
                           const char *err)
{
    free(op);
    ns_session_send_error(s, request_id, code, code == ERR(SHUTTING_DOWN),
                          code == ERR(UNAVAILABLE) ? 1000 : 0, "%s", err);
}

static void on_push_done(const Napsync__V1__PushResult *result, Napsync__V1__ErrorCode code,
                         const char *message, void *ud)
{
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PUSH_RESULT;
    env.push_result = (Napsync__V1__PushResult *)result;
    uint64_t started = ((const request_op *)ud)->started_ns;
    answer_request(ud, result ? &env : NULL, (int)code, message);
    ns_metrics_observe_since(NS_HIST_PUSH, started);
}

static void handle_push(ns_session *s, uint64_t request_id, const Napsync__V1__Push *push)
{
    if (push->n_mutations > s->max_push_mutations) {
        ns_session_refuse(s, NS_LIMIT_MAX_PUSH_MUTATIONS, request_id, ERR(INVALID_ARGUMENT), false,
                          0,
                          "a push holds at most %u mutations (max_push_mutations), this one %zu: "
                          "nothing was applied",
                          s->max_push_mutations, push->n_mutations);
        return;
    }
    request_op *op = begin_request(s, request_id);
    if (op == NULL)
        return;
    ns_sync_status st = ns_sync_push(s->server->sync, &s->identity, push, on_push_done, op);
    if (st != NS_SYNC_OK) {
        free(op);
        if (st == NS_SYNC_SHUTDOWN)
            ns_session_send_error(s, request_id, ERR(SHUTTING_DOWN), true, 0,
                                  "the server is shutting down; reconnect later or to another "
                                  "instance");
        else
            ns_session_send_error(s, request_id, ERR(INTERNAL), false, 1000,
                                  "the server could not take the push; retry shortly");
        return;
    }
    hold_for_answer(s);
}

static void send_page(ns_session *s, uint64_t request_id, const Napsync__V1__ChangePage *page)
{
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE;
    env.change_page = (Napsync__V1__ChangePage *)page;
    ns_session_send(s, &env);
}

static void on_pull_done(int code, const char *message, const Napsync__V1__ChangePage *page,
                         void *ud)
{
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE;
    env.change_page = (Napsync__V1__ChangePage *)page;
    uint64_t started = ((const request_op *)ud)->started_ns;
    answer_request(ud, page ? &env : NULL, code, message);
    ns_metrics_observe_since(NS_HIST_PULL, started);
}

/* ---- streamed Pull -------------------------------------------------------------------------
 *
 * One Pull{stream}, every page: each page's query starts when the page
 * before it is queued, so the stream costs the client no round trip per
 * page. The session is held (as for any request) until the last page
 * (more = false) or an error is queued, and the next page is built only
 * while the output waiting for the client is at most max_queued_bytes: a
 * slow link holds the stream (s->pull_stream) until on_writable, so the
 * server buffers at most that plus one page per session. */
typedef struct {
    ns_session *session; /* a reference, as hold_for_answer takes it */
    uint64_t request_id;
    uint64_t started_ns;
    Napsync__V1__Pull *req; /* a copy of the request; later pages point req->cursor at cursor */
    char *req_cursor;       /* the copy's own cursor, put back before it is freed */
    char cursor[NS_FEED_CURSOR_MAX + 1]; /* the last page's next_cursor (the server's own) */
} pull_stream;

static void stream_free(pull_stream *ps)
{
    ps->req->cursor = ps->req_cursor;
    napsync__v1__pull__free_unpacked(ps->req, NULL);
    free(ps);
}

/* The stream is over (its last answer queued, or the session gone). */
static void stream_end(pull_stream *ps)
{
    ns_session *s = ps->session;
    if (s->pull_stream == ps)
        s->pull_stream = NULL;
    stream_free(ps);
    end_request(s);
}

static void stream_next(pull_stream *ps);

static void on_stream_page(int code, const char *message, const Napsync__V1__ChangePage *page,
                           void *ud)
{
    pull_stream *ps = ud;
    ns_session *s = ps->session;
    ns_metrics_observe_since(NS_HIST_PULL, ps->started_ns);
    if (!answerable(s)) {
        stream_end(ps);
        return;
    }
    if (page == NULL) {
        ns_session_send_error(s, ps->request_id, code, false, code == ERR(UNAVAILABLE) ? 1000 : 0,
                              "%s", message);
        stream_end(ps);
        return;
    }
    send_page(s, ps->request_id, page);
    if (!page->more || s->conn == NULL || ns_conn_is_closing(s->conn)) {
        stream_end(ps);
        return;
    }
    snprintf(ps->cursor, sizeof(ps->cursor), "%s", page->next_cursor);
    if (ns_conn_write_queue_bytes(s->conn) > s->max_queued_bytes) {
        ns_server_limit_hit(s->server, NS_LIMIT_MAX_QUEUED_BYTES);
        ns_log(NS_LOG_DEBUG, s->id, ns_session_principal(s),
               "holding the pull stream: %zu bytes wait for the client",
               ns_conn_write_queue_bytes(s->conn));
        s->pull_stream = ps;
        return;
    }
    stream_next(ps);
}

static void stream_next(pull_stream *ps)
{
    ns_session *s = ps->session;
    char err[512];
    ps->req->cursor = ps->cursor;
    ps->started_ns = uv_hrtime();
    int code =
        ns_feed_pull(s->server->feed, &s->identity, ps->req, on_stream_page, ps, err, sizeof(err));
    if (code != 0) {
        ns_session_send_error(s, ps->request_id, code, code == ERR(SHUTTING_DOWN),
                              code == ERR(UNAVAILABLE) ? 1000 : 0, "%s", err);
        stream_end(ps);
    }
}

void ns_dispatch_stream_writable(ns_session *s)
{
    pull_stream *ps = s->pull_stream;
    if (ps == NULL)
        return;
    s->pull_stream = NULL;
    if (!answerable(s)) {
        stream_end(ps);
        return;
    }
    ns_log(NS_LOG_DEBUG, s->id, ns_session_principal(s), "resuming the pull stream");
    stream_next(ps);
}

void ns_dispatch_stream_drop(ns_session *s)
{
    pull_stream *ps = s->pull_stream;
    if (ps != NULL)
        stream_end(ps);
}

static void handle_pull_stream(ns_session *s, uint64_t request_id, const Napsync__V1__Pull *pull)
{
    /* The request is checked (and its first page asked for) as a plain
     * Pull; the copy serves the pages after it. */
    size_t len = napsync__v1__pull__get_packed_size(pull);
    uint8_t *buf = malloc(len ? len : 1);
    pull_stream *ps = calloc(1, sizeof(*ps));
    if (buf == NULL || ps == NULL) {
        free(buf);
        free(ps);
        ns_session_send_error(s, request_id, ERR(INTERNAL), false, 1000, "out of memory");
        return;
    }
    napsync__v1__pull__pack(pull, buf);
    ps->req = napsync__v1__pull__unpack(NULL, len, buf);
    free(buf);
    if (ps->req == NULL) {
        free(ps);
        ns_session_send_error(s, request_id, ERR(INTERNAL), false, 1000, "out of memory");
        return;
    }
    ps->req_cursor = ps->req->cursor; /* the client's, checked by the feed */
    ps->session = s;
    ps->request_id = request_id;
    ps->started_ns = uv_hrtime();
    char err[512];
    int code =
        ns_feed_pull(s->server->feed, &s->identity, ps->req, on_stream_page, ps, err, sizeof(err));
    if (code != 0) {
        stream_free(ps);
        ns_session_send_error(s, request_id, code, code == ERR(SHUTTING_DOWN),
                              code == ERR(UNAVAILABLE) ? 1000 : 0, "%s", err);
        return;
    }
    hold_for_answer(s);
}

static void handle_pull(ns_session *s, uint64_t request_id, const Napsync__V1__Pull *pull)
{
    if (pull->stream) {
        handle_pull_stream(s, request_id, pull);
        return;
    }
    request_op *op = begin_request(s, request_id);
    if (op == NULL)
        return;
    char err[512];
    int code =
        ns_feed_pull(s->server->feed, &s->identity, pull, on_pull_done, op, err, sizeof(err));
    if (code != 0) {
        refuse_request(s, op, request_id, code, err);
        return;
    }
    hold_for_answer(s);
}

static void on_conflicts_listed(int code, const char *message,
                                const Napsync__V1__ConflictList *list, void *ud)
{
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_CONFLICT_LIST;
    env.conflict_list = (Napsync__V1__ConflictList *)list;
    answer_request(ud, list ? &env : NULL, code, message);
}

static void handle_list_conflicts(ns_session *s, uint64_t request_id,
                                  const Napsync__V1__ListConflicts *req)
{
    request_op *op = begin_request(s, request_id);
    if (op == NULL)
        return;
    char err[512];
    int code = ns_conflicts_list(s->server->conflicts, &s->identity, req, on_conflicts_listed, op,
                                 err, sizeof(err));
    if (code != 0) {
        refuse_request(s, op, request_id, code, err);
        return;
    }
    hold_for_answer(s);
}

static void on_resolved(const Napsync__V1__MutationResult *result, Napsync__V1__ErrorCode code,
                        const char *message, void *ud)
{
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_MUTATION_RESULT;
    env.mutation_result = (Napsync__V1__MutationResult *)result;
    answer_request(ud, result ? &env : NULL, (int)code, message);
}

static void handle_resolve_conflict(ns_session *s, uint64_t request_id,
                                    const Napsync__V1__ResolveConflict *req)
{
    request_op *op = begin_request(s, request_id);
    if (op == NULL)
        return;
    char err[512];
    int code = ns_conflicts_resolve(s->server->conflicts, &s->identity, req, on_resolved, op, err,
                                    sizeof(err));
    if (code != 0) {
        refuse_request(s, op, request_id, code, err);
        return;
    }
    hold_for_answer(s);
}

static void on_history_done(int code, const char *message, const Napsync__V1__HistoryPage *page,
                            void *ud)
{
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_HISTORY_PAGE;
    env.history_page = (Napsync__V1__HistoryPage *)page;
    answer_request(ud, page ? &env : NULL, code, message);
}

static void handle_history(ns_session *s, uint64_t request_id, const Napsync__V1__History *req)
{
    request_op *op = begin_request(s, request_id);
    if (op == NULL)
        return;
    char err[512];
    int code = ns_history_query(s->server->db, s->server->registry, &s->identity, req,
                                on_history_done, op, err, sizeof(err));
    if (code != 0) {
        refuse_request(s, op, request_id, code, err);
        return;
    }
    hold_for_answer(s);
}

static void on_report_done(int code, const char *message, const Napsync__V1__ReportResult *result,
                           void *ud)
{
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_REPORT_RESULT;
    env.report_result = (Napsync__V1__ReportResult *)result;
    answer_request(ud, result ? &env : NULL, code, message);
}

/* The answer must fit in the smallest frame a client accepts. */
static void handle_report(ns_session *s, uint64_t request_id, const Napsync__V1__ReportRequest *req)
{
    request_op *op = begin_request(s, request_id);
    if (op == NULL)
        return;
    char err[512];
    int code = ns_reports_query(s->server->db, &s->identity, req, NS_FRAME_DEFAULT_MAX,
                                on_report_done, op, err, sizeof(err));
    if (code != 0) {
        refuse_request(s, op, request_id, code, err);
        return;
    }
    hold_for_answer(s);
}

/* Pages of a subscription arrive whenever the feed has them; the session
 * unsubscribes when it closes, after which this is never called. */
static void on_subscription_page(int code, const char *message, const Napsync__V1__ChangePage *page,
                                 void *ud)
{
    ns_session *s = ud;
    if (page) {
        send_page(s, s->sub_request_id, page);
        /* A client that does not keep up gets no more pages until its output
         * drains (session.c, on_writable). */
        if (s->sub && s->conn && ns_conn_write_queue_bytes(s->conn) > s->max_queued_bytes) {
            ns_log(NS_LOG_DEBUG, s->id, ns_session_principal(s),
                   "holding back the subscription: %zu bytes wait for the client",
                   ns_conn_write_queue_bytes(s->conn));
            ns_feed_sub_pause(s->sub);
            s->sub_held = true;
        }
        return;
    }
    /* An error ends the subscription: the feed calls no more. */
    ns_session_end_subscription(s);
    ns_session_send_error(s, s->sub_request_id, code, false, code == ERR(UNAVAILABLE) ? 1000 : 0,
                          "%s", message);
}

static void handle_subscribe(ns_session *s, uint64_t request_id, const Napsync__V1__Subscribe *sub)
{
    if (s->sub) {
        ns_session_send_error(s, request_id, ERR(INVALID_ARGUMENT), false, 0,
                              "this session is already subscribed (one subscription per "
                              "session)");
        return;
    }
    ns_server *srv = s->server;
    if (srv->nsubscriptions >= srv->cfg->max_subscriptions) {
        ns_session_refuse(s, NS_LIMIT_MAX_SUBSCRIPTIONS, request_id, ERR(BUSY), false, 5000,
                          "the server has reached its limit of %u subscriptions "
                          "(max_subscriptions); pull instead, or retry later",
                          srv->cfg->max_subscriptions);
        return;
    }
    char err[512];
    s->sub_request_id = request_id;
    int code = ns_feed_subscribe(srv->feed, &s->identity, sub, on_subscription_page, s, &s->sub,
                                 err, sizeof(err));
    if (code != 0) {
        s->sub = NULL;
        ns_session_send_error(s, request_id, code, code == ERR(SHUTTING_DOWN),
                              code == ERR(UNAVAILABLE) ? 1000 : 0, "%s", err);
        return;
    }
    srv->nsubscriptions++;
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
    case NAPSYNC__V1__ENVELOPE__BODY_PUSH:
        handle_push(s, rid, env->push);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_PULL:
        handle_pull(s, rid, env->pull);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_SUBSCRIBE:
        handle_subscribe(s, rid, env->subscribe);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_LIST_CONFLICTS:
        handle_list_conflicts(s, rid, env->list_conflicts);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_RESOLVE_CONFLICT:
        handle_resolve_conflict(s, rid, env->resolve_conflict);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_HISTORY:
        handle_history(s, rid, env->history);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_REPORT_REQUEST:
        handle_report(s, rid, env->report_request);
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
    case NAPSYNC__V1__ENVELOPE__BODY_PUSH_RESULT:
    case NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE:
    case NAPSYNC__V1__ENVELOPE__BODY_CONFLICT_LIST:
    case NAPSYNC__V1__ENVELOPE__BODY_MUTATION_RESULT:
    case NAPSYNC__V1__ENVELOPE__BODY_HISTORY_PAGE:
    case NAPSYNC__V1__ENVELOPE__BODY_REPORT_RESULT:
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
    if (env->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
        ns_envelope *inner = NULL;
        ns_compress_status st = !s->zstd
                                    ? NS_COMPRESS_INVALID
                                    : ns_compress_unpack(s->server->compress, env->zstd.data,
                                                         env->zstd.len, s->max_frame_size, &inner);
        ns_envelope_free(env);
        if (st == NS_COMPRESS_TOO_LARGE) {
            ns_session_send_error(s, 0, ERR(FRAME_TOO_LARGE), true, 0,
                                  "a compressed frame holds more than %" PRIu32 " bytes",
                                  s->max_frame_size);
            return;
        }
        if (st != NS_COMPRESS_OK) {
            ns_session_send_error(s, 0, ERR(MALFORMED), true, 0,
                                  s->zstd ? "a compressed frame of %zu bytes does not decompress "
                                            "to an Envelope"
                                          : "a compressed frame of %zu bytes, but this session "
                                            "agreed on no compression",
                                  len);
            return;
        }
        env = inner;
    }
    dispatch(s, env);
    ns_envelope_free(env);
}
