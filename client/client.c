/* libnapsync: one client, at most one connection to napsyncd at a time.
 *
 * A client moves through one state machine (client_state, changed only by
 * set_state): IDLE → RESOLVING → CONNECTING → HELLO → READY → CLOSING → IDLE.
 * Every attempt or connection ends in connection_ended(), which hands the
 * outcome to every pending callback exactly once.
 *
 * Memory: the client is released only when nothing can call back into it
 * any more: its timer has closed, its ns_conn has reported on_close, and no
 * getaddrinfo request is in flight (`refs` counts them). ns_client_free()
 * only starts that; the last close callback (application loop) or the
 * function running the client's own loop finishes it, and never while one
 * of our callbacks is still on the stack (`depth`). */
#include "napsync.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client_internal.h"
#include "conf.h"
#include "compress.h"
#include "page_compact.h"
#include "conn.h"
#include "envelope.h"
#include "frame.h"
#include "store.h"
#include "tls.h"
#include "version.h"
#include "value.h"

#define NS_CLIENT_DEFAULT_TIMEOUT_MS 10000u
/* Addresses tried, in resolver order, for one connect. */
#define NS_CLIENT_MAX_ADDRS 8
/* Requests awaiting an answer on one connection. */
#define NS_CLIENT_MAX_INFLIGHT 32
/* Hello's client_name and client_version, as the protocol bounds them. */
#define NS_CLIENT_MAX_NAME 64
/* No string the server sends us is longer than this, whatever its field. */
#define NS_CLIENT_MAX_WIRE_TEXT 1024
/* Output the client may queue before it stops reading. */
#define NS_CLIENT_WRITE_LIMIT  (4u * 1024u * 1024u)
#define NS_CLIENT_PING_PAYLOAD 8
#define NS_CLIENT_SERVER_MAX   272

typedef Napsync__V1__Welcome ns_welcome;
typedef Napsync__V1__Error ns_wire_error;

typedef enum {
    ST_IDLE,       /* no connection */
    ST_RESOLVING,  /* getaddrinfo in flight */
    ST_CONNECTING, /* TCP connect and TLS handshake */
    ST_HELLO,      /* Hello sent, waiting for Welcome */
    ST_READY,      /* Welcome received: requests may be sent */
    ST_CLOSING,    /* ns_conn_close called; waiting for on_close */
} client_state;

/* Heap-allocated so that a resolve abandoned on timeout can finish in the
 * threadpool while the client starts another; it holds a ref on the client. */
typedef struct {
    uv_getaddrinfo_t req;
    ns_client *client;
} resolve_req;

typedef struct {
    uint64_t id;
    uint64_t sent_ns;     /* uv_hrtime() when sent, for the round trip */
    uint64_t deadline_ms; /* in uv_now() time */
    ns_ping_cb cb;
    void *ud;
} pending_ping;

/* A request of sync.c (client_internal.h) awaiting its answer. */
typedef struct {
    uint64_t id;
    uint64_t deadline_ms; /* in uv_now() time; 0: none (a stream past its first answer) */
    Napsync__V1__Envelope__BodyCase answer;
    int mode; /* NSC_ONCE, NSC_STREAM or NSC_PAGES */
    nsc_response_cb cb;
    void *ud;
} pending_req;

struct ns_client {
    uv_loop_t *loop; /* &own_loop or the application's */
    uv_loop_t own_loop;
    bool owns_loop;
    bool running_loop; /* a *_wait or ns_client_free is inside uv_run(own_loop) */
    bool freeing;      /* ns_client_free was called */
    int depth;         /* our callbacks on the stack */
    int refs;          /* timers + conn + resolves in flight */

    ns_tls_ctx *tls;
    bool have_cert;
    char host[256];
    uint16_t port;
    char server[NS_CLIENT_SERVER_MAX]; /* "host:port" as configured, for messages */
    uint32_t timeout_ms;
    char client_name[NS_CLIENT_MAX_NAME + 1];
    char client_version[NS_CLIENT_MAX_NAME + 1];

    uv_timer_t timer; /* the earliest deadline of the connect or of a request */
    uv_timer_t wake;  /* sync.c's backoff and keepalive (nsc_wake_after) */
    nsc_wake_fn wake_fn;
    void *wake_ud;
    ns_store *store;
    nsc_sync *sync;
    client_state state;
    resolve_req *resolve; /* the current resolve, NULL if none or abandoned */
    struct sockaddr_storage addrs[NS_CLIENT_MAX_ADDRS];
    size_t naddrs;
    size_t next_addr;
    char last_connect_error[160];
    ns_conn *conn;
    /* Compressed frames (compress.h): made at the first Welcome that agrees
     * on them, kept for later connections; zstd says whether this one did. */
    ns_compress *compress;
    bool zstd;
    /* This connection agreed on compact pages (page_compact.h): they are
     * expanded as they arrive, so the rest of the client sees ChangePages. */
    bool compact;
    uint64_t last_request_id;
    uint64_t hello_id;
    uint64_t connect_deadline_ms;

    ns_connect_cb connect_cb;
    void *connect_ud;
    pending_ping pings[NS_CLIENT_MAX_INFLIGHT];
    size_t npings;
    pending_req reqs[NS_CLIENT_MAX_INFLIGHT];
    size_t nreqs;
    bool disconnecting;
    ns_closed_cb closed_cb;
    void *closed_ud;
    /* Why we are closing, decided before ns_conn_close; NS_OK if undecided. */
    ns_error close_err;
    /* Why the last connection ended, when no callback was there to hear it:
     * the next call that needs the connection reports it. */
    ns_error unreported;
    /* A blocking call got its answer: later frames wait for the next one. */
    bool frames_held;

    /* TLS resumption: `session` is what the next connect offers (from the
     * store at first, then from the server); `fresh` is the latest session
     * of a connection not welcomed yet, adopted only once Welcome says the
     * device got in. Both owned here; secret (tls.h). */
    uint8_t *session;
    size_t session_len;
    uint8_t *fresh;
    size_t fresh_len;

    /* First flight (nsc_on_first_flight): the SHA-256 of our certificate
     * (hex; "" without one), which the kept Welcome must name; the hook;
     * early: the hook is running, so requests may go before Welcome;
     * ff_zstd: this Hello announced zstd for the frames behind it. */
    char cert_fp[65];
    nsc_first_flight_fn ff_fn;
    void *ff_ud;
    bool early;
    bool ff_zstd;
    bool pull_stream; /* the Welcome said the server streams Pull{stream} */
    /* Request flights (nsc_flights): a request sent after an answer
     * arrived starts a new one. */
    uint32_t flights;
    bool answered_since_send;

    ns_identity id;
};

static const ns_conn_callbacks conn_callbacks;

__attribute__((format(printf, 4, 5))) static void set_error(ns_error *e, ns_status st,
                                                            int server_code, const char *fmt, ...)
{
    if (e == NULL)
        return;
    e->status = st;
    e->server_code = server_code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    if (e->message[0] == '\0')
        snprintf(e->message, sizeof(e->message), "%s", ns_status_name(st));
}

/* ---- lifetime ---------------------------------------------------------- */

static void drop_blob(uint8_t **p, size_t *len)
{
    if (*p)
        explicit_bzero(*p, *len); /* a session is a credential */
    free(*p);
    *p = NULL;
    *len = 0;
}

static void release_memory(ns_client *c)
{
    drop_blob(&c->session, &c->session_len);
    drop_blob(&c->fresh, &c->fresh_len);
    nsc_sync_free(c->sync);
    ns_store_close(c->store);
    ns_tls_ctx_free(c->tls);
    ns_compress_free(c->compress);
    free(c);
}

static void enter(ns_client *c)
{
    c->depth++;
}

/* The last thing every callback from libuv or ns_conn does: when the client
 * runs on the application's loop, this is where its memory is released. */
static void leave(ns_client *c)
{
    c->depth--;
    if (c->depth == 0 && c->freeing && c->refs == 0 && !c->owns_loop)
        release_memory(c);
}

/* Own loop only: runs it until nothing refers to the client, then frees
 * both. Called with no callback of ours on the stack. */
static void finish_own(ns_client *c)
{
    c->running_loop = true;
    while (c->refs > 0 && uv_loop_alive(&c->own_loop))
        uv_run(&c->own_loop, UV_RUN_ONCE);
    if (uv_loop_close(&c->own_loop) != 0) {
        /* Only handles of ours were ever on this loop and all are closed,
         * so this is a bookkeeping bug: leak rather than free a live loop. */
        return;
    }
    release_memory(c);
}

/* ---- state and deadlines ----------------------------------------------- */

static void set_state(ns_client *c, client_state st)
{
    c->state = st;
    if (st != ST_READY)
        memset(&c->id, 0, sizeof(c->id));
}

static bool connecting(const ns_client *c)
{
    return c->state == ST_RESOLVING || c->state == ST_CONNECTING || c->state == ST_HELLO;
}

static void on_timer(uv_timer_t *t);

/* Points the timer at the earliest deadline still pending. */
static void rearm(ns_client *c)
{
    if (c->freeing)
        return;
    uint64_t next = UINT64_MAX;
    if (connecting(c))
        next = c->connect_deadline_ms;
    /* Requests time out only on a ready connection (on_timer). On a closing
     * one they end with it, within the conn's linger: arming the timer for a
     * deadline already past would run on_timer again at once, forever, in
     * the same pass over libuv's timers, and nothing else would run. */
    if (c->state == ST_READY) {
        for (size_t i = 0; i < c->npings; i++)
            if (c->pings[i].deadline_ms < next)
                next = c->pings[i].deadline_ms;
        for (size_t i = 0; i < c->nreqs; i++)
            if (c->reqs[i].deadline_ms != 0 && c->reqs[i].deadline_ms < next)
                next = c->reqs[i].deadline_ms;
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = uv_now(c->loop);
    uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
}

static uint64_t next_request_id(ns_client *c)
{
    if (++c->last_request_id == 0)
        c->last_request_id = 1;
    return c->last_request_id;
}

/* Hands the outcome to every pending callback. They are taken out of the
 * client first, so a callback may start a new connect or free the client. */
static void fail_all(ns_client *c, const ns_error *e)
{
    ns_connect_cb ccb = c->connect_cb;
    void *cud = c->connect_ud;
    pending_ping pings[NS_CLIENT_MAX_INFLIGHT];
    size_t npings = c->npings;
    memcpy(pings, c->pings, npings * sizeof(pings[0]));
    pending_req reqs[NS_CLIENT_MAX_INFLIGHT];
    size_t nreqs = c->nreqs;
    memcpy(reqs, c->reqs, nreqs * sizeof(reqs[0]));
    ns_closed_cb clcb = c->closed_cb;
    void *clud = c->closed_ud;
    c->connect_cb = NULL;
    c->npings = 0;
    c->nreqs = 0;
    c->closed_cb = NULL;
    c->disconnecting = false;

    if (ccb)
        ccb(c, e, cud);
    for (size_t i = 0; i < npings; i++)
        pings[i].cb(c, e, 0, pings[i].ud);
    for (size_t i = 0; i < nreqs; i++)
        reqs[i].cb(c, e, NULL, reqs[i].ud);
    if (clcb)
        clcb(c, clud);
}

/* The attempt or the connection is over; the client is IDLE again. */
static void connection_ended(ns_client *c, const ns_error *e)
{
    bool heard =
        c->connect_cb || c->npings || c->nreqs || c->closed_cb || c->disconnecting || c->freeing;
    if (heard)
        memset(&c->unreported, 0, sizeof(c->unreported));
    else
        c->unreported = *e;
    c->frames_held = false;
    c->ff_fn = NULL;
    c->ff_zstd = false;
    set_state(c, ST_IDLE);
    c->naddrs = 0;
    c->next_addr = 0;
    memset(&c->close_err, 0, sizeof(c->close_err));
    rearm(c);
    fail_all(c, e);
}

/* Closes the connection for a reason decided here; the first reason wins
 * and reaches the callbacks from on_close. */
__attribute__((format(printf, 5, 6))) static void
close_with(ns_client *c, bool graceful, ns_status st, int server_code, const char *fmt, ...)
{
    if (c->conn == NULL || c->state == ST_CLOSING)
        return;
    c->close_err.status = st;
    c->close_err.server_code = server_code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->close_err.message, sizeof(c->close_err.message), fmt, ap);
    va_end(ap);
    set_state(c, ST_CLOSING);
    ns_conn_close(c->conn, graceful);
}

/* ---- TLS session resumption ---------------------------------------------- */

static int copy_blob(uint8_t **p, size_t *plen, const uint8_t *src, size_t len)
{
    uint8_t *b = malloc(len);
    if (b == NULL)
        return -1;
    memcpy(b, src, len);
    drop_blob(p, plen);
    *p = b;
    *plen = len;
    return 0;
}

/* The session to offer next, in memory and (so that the next process
 * resumes too) in the store. Failing to save it costs a full handshake
 * later, never this connection. */
static void adopt_session(ns_client *c, const uint8_t *session, size_t len)
{
    if (copy_blob(&c->session, &c->session_len, session, len) != 0)
        return;
    if (c->store && len <= NS_STORE_TLS_SESSION_MAX) {
        ns_store_rc rc = ns_store_tls_session_set(c->store, session, len, NULL);
        (void)rc; /* unsaved: the next process makes a full handshake */
    }
}

/* The server refused this device or the handshake failed: offer nothing
 * next time, so the next attempt is a full handshake that says why anew. */
static void forget_session(ns_client *c)
{
    drop_blob(&c->fresh, &c->fresh_len);
    if (c->session == NULL)
        return;
    drop_blob(&c->session, &c->session_len);
    if (c->store) {
        ns_store_rc rc = ns_store_tls_session_set(c->store, NULL, 0, NULL);
        (void)rc; /* kept: the next process offers it and falls back to a full handshake */
    }
}

static void load_session(ns_client *c)
{
    uint8_t *buf = malloc(NS_STORE_TLS_SESSION_MAX);
    size_t len = 0;
    if (buf == NULL)
        return;
    if (ns_store_tls_session_get(c->store, buf, NS_STORE_TLS_SESSION_MAX, &len, NULL) ==
            NS_STORE_OK &&
        len > 0)
        (void)copy_blob(&c->session, &c->session_len, buf, len);
    explicit_bzero(buf, NS_STORE_TLS_SESSION_MAX);
    free(buf);
}

/* ---- first flight ------------------------------------------------------------ */

/* The kept Welcome, when it was made with this certificate and server:
 * "1 CERT_SHA256 DEVICE ORGANISATION MAX_FRAME MAX_PUSH ZSTD SERVER".
 * Anything else, damaged or foreign, counts as nothing kept. */
static bool remembered_read(ns_client *c, nsc_remembered *out, bool *zstd)
{
    char v[NS_STORE_META_SIZE];
    if (c->store == NULL || c->cert_fp[0] == '\0' ||
        ns_store_meta_get(c->store, NS_STORE_META_FIRST_FLIGHT, v, NULL) != NS_STORE_OK)
        return false;
    char fp[65], server[NS_CLIENT_SERVER_MAX];
    unsigned z = 0;
    memset(out, 0, sizeof(*out));
    if (sscanf(v, "1 %64s %39s %39s %" SCNu32 " %" SCNu32 " %u %271s", fp, out->device_id,
               out->organisation_id, &out->max_frame_size, &out->max_push_mutations, &z,
               server) != 7)
        return false;
    if (strcmp(fp, c->cert_fp) != 0 || strcmp(server, c->server) != 0 || z > 1 ||
        out->max_frame_size == 0 || out->max_push_mutations == 0)
        return false;
    *zstd = z == 1;
    return true;
}

static bool remembered_zstd(ns_client *c)
{
    nsc_remembered r;
    bool z = false;
    return remembered_read(c, &r, &z) && z;
}

/* Failing to save costs the next connection its first flight, never this one. */
static void remember_welcome(ns_client *c, const ns_identity *id)
{
    if (c->store == NULL || c->cert_fp[0] == '\0' || strchr(c->server, ' '))
        return;
    char v[NS_STORE_META_SIZE];
    int n = snprintf(v, sizeof(v), "1 %s %s %s %" PRIu32 " %" PRIu32 " %d %s", c->cert_fp,
                     id->device_id, id->organisation_id, id->max_frame_size, id->max_push_mutations,
                     id->compressed ? 1 : 0, c->server);
    if (n > 0 && (size_t)n < sizeof(v) && id->device_id[0] && id->organisation_id[0] &&
        !strchr(id->device_id, ' ') && !strchr(id->organisation_id, ' ')) {
        ns_store_rc rc = ns_store_meta_set(c->store, NS_STORE_META_FIRST_FLIGHT, v, NULL);
        (void)rc; /* unsaved: the next connection waits for Welcome */
    }
}

static void forget_remembered(ns_client *c)
{
    if (c->store) {
        ns_store_rc rc = ns_store_meta_set(c->store, NS_STORE_META_FIRST_FLIGHT, "", NULL);
        (void)rc; /* kept: the server refuses it again, clearly */
    }
}

bool nsc_remembered_get(ns_client *c, nsc_remembered *out)
{
    bool z = false;
    return remembered_read(c, out, &z);
}

void nsc_on_first_flight(ns_client *c, nsc_first_flight_fn fn, void *ud)
{
    c->ff_fn = fn;
    c->ff_ud = ud;
}

bool nsc_pull_streams(const ns_client *c)
{
    return c->state != ST_READY || c->pull_stream;
}

uint32_t nsc_flights(const ns_client *c)
{
    return c->flights;
}

/* ---- mapping failures to ns_status --------------------------------------- */

static bool alert_is(const char *alert, const char *name)
{
    return strcasecmp(alert, name) == 0;
}

/* The engine words a peer alert as: ...TLS alert "<description>". */
static bool extract_alert(const char *msg, char *alert, size_t len)
{
    static const char marker[] = "TLS alert \"";
    const char *p = strstr(msg, marker);
    if (p == NULL)
        return false;
    p += sizeof(marker) - 1;
    const char *end = strchr(p, '"');
    if (end == NULL || (size_t)(end - p) >= len)
        return false;
    memcpy(alert, p, (size_t)(end - p));
    alert[end - p] = '\0';
    return true;
}

static void no_certificate(ns_error *e, const char *detail)
{
    set_error(e, NS_ERR_CERT_REFUSED, 0,
              "the server requires a device certificate%s%s%s: set NAPSYNC_CERT and "
              "NAPSYNC_KEY (or --cert/--key)",
              detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
}

static void cert_refused(ns_client *c, ns_error *e, const char *alert)
{
    char detail[128];
    snprintf(detail, sizeof(detail), "TLS alert \"%s\"", alert);
    if (!c->have_cert) {
        no_certificate(e, detail);
    } else if (alert_is(alert, "certificate revoked")) {
        set_error(e, NS_ERR_CERT_REFUSED, 0,
                  "the server refused this device's certificate as revoked (%s): ask the "
                  "administrator for a new device certificate",
                  detail);
    } else if (alert_is(alert, "certificate expired")) {
        set_error(e, NS_ERR_CERT_REFUSED, 0,
                  "the server refused this device's certificate as expired (%s): ask the "
                  "administrator for a new device certificate",
                  detail);
    } else {
        set_error(e, NS_ERR_CERT_REFUSED, 0,
                  "the server refused this device's certificate (%s): NAPSYNC_CERT must be a "
                  "device certificate issued by this deployment's CA",
                  detail);
    }
}

/* Our own verification of the server's certificate failed. */
static void server_cert_rejected(ns_client *c, ns_error *e, const char *why)
{
    if (strstr(why, "mismatch")) {
        set_error(e, NS_ERR_SERVER_CERT, 0,
                  "the server's certificate is not valid for \"%s\" (%s): connect using a name "
                  "or address listed in its subjectAltName",
                  c->host, why);
    } else if (strstr(why, "issuer") || strstr(why, "self-signed") || strstr(why, "self signed") ||
               strstr(why, "first certificate")) {
        set_error(e, NS_ERR_SERVER_CERT, 0,
                  "the server's certificate is not signed by NAPSYNC_CA (%s): is NAPSYNC_CA the "
                  "CA of the deployment at %s?",
                  why, c->server);
    } else {
        set_error(e, NS_ERR_SERVER_CERT, 0, "the server's certificate was rejected: %s", why);
    }
}

static void tls_failed(ns_client *c, const char *msg, ns_error *e)
{
    static const char rejected[] = "peer certificate rejected: ";
    /* Alerts a server sends when it does not accept the client certificate. */
    static const char *const refusals[] = {
        "unknown CA",
        "certificate required",
        "bad certificate",
        "certificate unknown",
        "certificate revoked",
        "certificate expired",
        "unsupported certificate",
        "access denied",
    };
    char alert[96];
    if (extract_alert(msg, alert, sizeof(alert))) {
        if (alert_is(alert, "protocol version")) {
            set_error(e, NS_ERR_TLS, 0,
                      "the server at %s and this client have no TLS version in common (TLS "
                      "alert \"%s\"): napsync needs TLS 1.2 or later",
                      c->server, alert);
            return;
        }
        for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
            if (alert_is(alert, refusals[i])) {
                cert_refused(c, e, alert);
                return;
            }
        }
        /* A bare handshake failure is about the certificate when we had
         * none to offer, or when it comes after our side of the handshake
         * was done (TLS 1.3: the server judges our certificate last).
         * OpenSSL 3.0 names TLS 1.3's certificate_required "unknown". */
        if ((alert_is(alert, "handshake failure") || alert_is(alert, "unknown")) &&
            (!c->have_cert || c->state == ST_HELLO)) {
            cert_refused(c, e, alert);
            return;
        }
        set_error(e, NS_ERR_TLS, 0, "TLS with %s failed: %s", c->server, msg);
        return;
    }
    const char *r = strstr(msg, rejected);
    if (r) {
        server_cert_rejected(c, e, r + sizeof(rejected) - 1);
        return;
    }
    set_error(e, NS_ERR_TLS, 0, "TLS with %s failed (is it a napsync server?): %s", c->server, msg);
}

/* The server closed the connection after the TLS handshake without a word:
 * with TLS 1.3 that is how a refused certificate looks when the alert did
 * not reach us before the connection went down. */
static void closed_after_handshake(ns_client *c, const char *msg, ns_error *e)
{
    if (!c->have_cert) {
        no_certificate(e, "");
        return;
    }
    /* napsyncd refuses a certificate with a TLS alert, which arrives before
     * the end of the stream and is reported as such; a silent close here is
     * a lost connection (a cut link, a restarting server), worth a retry. */
    set_error(e, NS_ERR_CLOSED, 0,
              "the connection to %s ended right after the TLS handshake, before the server "
              "answered Hello (%s); if this keeps happening, check that NAPSYNC_CERT is a "
              "device certificate issued by this deployment's CA",
              c->server, msg);
}

static void map_close(ns_client *c, ns_conn_close_reason reason, const char *msg, ns_error *e)
{
    static const char cannot_connect[] = "cannot connect: ";
    switch (reason) {
    case NS_CONN_CLOSED_BY_US:
        set_error(e, NS_ERR_CLOSED, 0, "the connection to %s was closed", c->server);
        return;
    case NS_CONN_CLOSED_BY_PEER:
        if (c->state == ST_HELLO)
            closed_after_handshake(c, msg, e);
        else if (c->state == ST_CONNECTING)
            set_error(e, NS_ERR_TLS, 0,
                      "%s closed the connection during the TLS handshake (is it a napsync "
                      "server?)",
                      c->server);
        else
            set_error(e, NS_ERR_CLOSED, 0, "the server at %s closed the connection", c->server);
        return;
    case NS_CONN_IO_FAILED:
        if (c->state == ST_CONNECTING &&
            strncmp(msg, cannot_connect, sizeof(cannot_connect) - 1) == 0)
            set_error(e, NS_ERR_CONNECT, 0, "cannot connect to %s: %s", c->server,
                      msg + sizeof(cannot_connect) - 1);
        else if (c->state == ST_CONNECTING)
            set_error(e, NS_ERR_CONNECT, 0,
                      "the connection to %s failed during the TLS handshake: %s", c->server, msg);
        else if (c->state == ST_HELLO)
            closed_after_handshake(c, msg, e);
        else
            set_error(e, NS_ERR_CLOSED, 0, "the connection to %s failed: %s", c->server, msg);
        return;
    case NS_CONN_TLS_FAILED:
        tls_failed(c, msg, e);
        return;
    case NS_CONN_TIMED_OUT:
        set_error(e, NS_ERR_TIMEOUT, 0, "%s did not answer in time: %s", c->server, msg);
        return;
    case NS_CONN_NOMEM:
        set_error(e, NS_ERR_NOMEM, 0, "out of memory");
        return;
    }
    set_error(e, NS_ERR_CLOSED, 0, "the connection to %s ended: %s", c->server, msg);
}

static ns_status status_of_code(int code)
{
    switch (code) {
    case NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_DEVICE:
        return NS_ERR_UNKNOWN_DEVICE;
    case NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED:
        return NS_ERR_DEVICE_REVOKED;
    case NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED_VERSION:
        return NS_ERR_VERSION;
    case NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE:
    case NAPSYNC__V1__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN:
    case NAPSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY:
        return NS_ERR_UNAVAILABLE;
    default:
        return NS_ERR_SERVER;
    }
}

/* Copies src into dst[cap]. Names may be cut (at a character boundary);
 * identifiers must fit. Returns false for text that is not valid. */
static bool copy_text(char *dst, size_t cap, const char *src, bool may_cut)
{
    if (src == NULL)
        src = "";
    if (!ns_text_ok(src, NS_CLIENT_MAX_WIRE_TEXT))
        return false;
    size_t n = strlen(src);
    if (n >= cap) {
        if (!may_cut)
            return false;
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
    return true;
}

static void server_error(const ns_wire_error *w, ns_error *e)
{
    ns_status st = status_of_code((int)w->code);
    const char *name = ns_error_code_name((int)w->code);
    char text[400];
    if (!copy_text(text, sizeof(text), w->message, true) || text[0] == '\0') {
        set_error(e, st, (int)w->code, "the server answered with error %s", name);
        return;
    }
    /* The specific statuses speak for themselves; a generic one needs its code. */
    if (st == NS_ERR_SERVER)
        set_error(e, st, (int)w->code, "the server answered with error %s: %s", name, text);
    else
        set_error(e, st, (int)w->code, "%s", text);
}

/* ---- sending --------------------------------------------------------------- */

/* Sends one message, compressed when this connection agreed on it. */
static int client_send(ns_client *c, const ns_envelope *env)
{
    return ns_compress_send(c->zstd ? c->compress : NULL, c->conn, env, NULL);
}

static void send_error_reply(ns_client *c, uint64_t request_id, int code, const char *msg)
{
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Error err = NAPSYNC__V1__ERROR__INIT;
    err.code = (Napsync__V1__ErrorCode)code;
    err.message = (char *)msg;
    env.request_id = request_id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_ERROR;
    env.error = &err;
    if (client_send(c, &env) != 0)
        close_with(c, false, NS_ERR_CLOSED, 0, "cannot send to %s", c->server);
}

static void send_hello(ns_client *c)
{
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Hello hello = NAPSYNC__V1__HELLO__INIT;
    hello.min_version = NS_PROTOCOL_VERSION_MIN;
    hello.max_version = NS_PROTOCOL_VERSION_MAX;
    hello.client_name = c->client_name;
    hello.client_version = c->client_version;
    Napsync__V1__Compression offer[] = {NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1};
    hello.n_compression = 1;
    hello.compression = offer;
    Napsync__V1__PageFormat formats[] = {NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_COMPACT_1};
    hello.n_page_formats = 1;
    hello.page_formats = formats;
    c->zstd = false;
    c->compact = false;
    /* Frames behind this Hello may be compressed only as the server chose
     * the last time (kept in the store): it reads them before it answers. */
    c->ff_zstd = remembered_zstd(c) && (c->compress || (c->compress = ns_compress_new()) != NULL);
    if (c->ff_zstd)
        hello.first_flight_compression = NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1;
    c->hello_id = next_request_id(c);
    env.request_id = c->hello_id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    set_state(c, ST_HELLO);
    int rc = client_send(c, &env);
    if (rc != 0) {
        close_with(c, false, rc == UV_ENOMEM ? NS_ERR_NOMEM : NS_ERR_CONNECT, 0,
                   "cannot send Hello to %s: %s", c->server, uv_strerror(rc));
        return;
    }
    c->flights++;
    c->answered_since_send = false;
    c->zstd = c->ff_zstd;
    nsc_first_flight_fn fn = c->ff_fn;
    c->ff_fn = NULL;
    if (fn) {
        c->early = true;
        fn(c, c->ff_ud);
        c->early = false;
    }
}

/* ---- receiving --------------------------------------------------------------- */

static void on_welcome(ns_client *c, const ns_welcome *w)
{
    ns_identity id;
    memset(&id, 0, sizeof(id));
    if (w->version < NS_PROTOCOL_VERSION_MIN || w->version > NS_PROTOCOL_VERSION_MAX) {
        close_with(c, true, NS_ERR_VERSION, 0,
                   "the server at %s chose protocol version %u, but this client speaks %d to %d",
                   c->server, w->version, NS_PROTOCOL_VERSION_MIN, NS_PROTOCOL_VERSION_MAX);
        return;
    }
    if (w->organisation == NULL || w->principal == NULL || w->device == NULL) {
        close_with(c, true, NS_ERR_PROTOCOL, 0,
                   "the server's Welcome lacks the organisation, principal or device");
        return;
    }
    const char *bad = NULL;
    if (!copy_text(id.session_id, sizeof(id.session_id), w->session_id, false))
        bad = "session id";
    else if (!copy_text(id.server_name, sizeof(id.server_name), w->server_name, true) ||
             !copy_text(id.server_version, sizeof(id.server_version), w->server_version, true))
        bad = "server name or version";
    else if (!copy_text(id.organisation_id, sizeof(id.organisation_id), w->organisation->id,
                        false) ||
             !copy_text(id.organisation_name, sizeof(id.organisation_name), w->organisation->name,
                        true) ||
             !copy_text(id.organisation_kind, sizeof(id.organisation_kind), w->organisation->kind,
                        false) ||
             !copy_text(id.country, sizeof(id.country), w->organisation->country, false))
        bad = "organisation";
    else if (!copy_text(id.principal_id, sizeof(id.principal_id), w->principal->id, false) ||
             !copy_text(id.principal_name, sizeof(id.principal_name), w->principal->name, true))
        bad = "principal";
    else if (!copy_text(id.device_id, sizeof(id.device_id), w->device->id, false) ||
             !copy_text(id.device_name, sizeof(id.device_name), w->device->name, true))
        bad = "device";
    for (size_t i = 0; bad == NULL && i < w->n_roles && id.nroles < NS_MAX_ROLES; i++) {
        if (!copy_text(id.roles[id.nroles], sizeof(id.roles[0]), w->roles[i], false) ||
            id.roles[id.nroles][0] == '\0')
            bad = "role";
        else
            id.nroles++;
    }
    if (bad) {
        close_with(c, true, NS_ERR_PROTOCOL, 0, "the server sent an invalid %s in its Welcome",
                   bad);
        return;
    }
    id.protocol_version = w->version;
    id.max_frame_size = w->max_frame_size;
    id.idle_timeout_ms = w->idle_timeout_ms;
    id.max_push_mutations = w->max_push_mutations && w->max_push_mutations < NS_MAX_PUSH_BATCH
                                ? w->max_push_mutations
                                : NS_MAX_PUSH_BATCH;
    id.tls_resumed = ns_conn_tls_resumed(c->conn) ? 1 : 0;
    if (w->compression == NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1) {
        if (c->compress == NULL)
            c->compress = ns_compress_new();
        if (c->compress == NULL) {
            close_with(c, true, NS_ERR_NOMEM, 0, "out of memory");
            return;
        }
        c->zstd = true;
        id.compressed = 1;
    } else if (w->compression != NAPSYNC__V1__COMPRESSION__COMPRESSION_NONE) {
        close_with(c, true, NS_ERR_PROTOCOL, 0,
                   "the server chose compression %d, which this client did not offer",
                   (int)w->compression);
        return;
    } else if (c->ff_zstd) {
        /* It read our first flight as plain frames: it cannot have served it. */
        forget_remembered(c);
        close_with(c, true, NS_ERR_PROTOCOL, 0,
                   "the server at %s did not choose the compression this client's first flight "
                   "used; the next connection sends it uncompressed",
                   c->server);
        return;
    }
    remember_welcome(c, &id);
    /* A server that does not stream answers a streamed Pull of the first
     * flight with one page, as any Pull. */
    c->pull_stream = w->pull_stream;
    for (size_t i = 0; i < c->nreqs; i++)
        if (c->reqs[i].mode == NSC_PAGES && !c->pull_stream)
            c->reqs[i].mode = NSC_ONCE;
    /* Requests of the first flight waited for this answer: their time
     * counts from now. */
    uv_update_time(c->loop);
    for (size_t i = 0; i < c->nreqs; i++)
        c->reqs[i].deadline_ms = uv_now(c->loop) + c->timeout_ms;
    if (w->page_format != NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_ORDINARY &&
        w->page_format != NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_COMPACT_1) {
        close_with(c, true, NS_ERR_PROTOCOL, 0,
                   "the server chose page format %d, which this client did not offer",
                   (int)w->page_format);
        return;
    }
    c->compact = w->page_format == NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_COMPACT_1;
    if (c->fresh) {
        adopt_session(c, c->fresh, c->fresh_len);
        drop_blob(&c->fresh, &c->fresh_len);
    }
    c->id = id;
    set_state(c, ST_READY);
    rearm(c);
    ns_connect_cb cb = c->connect_cb;
    void *ud = c->connect_ud;
    c->connect_cb = NULL;
    if (cb)
        cb(c, NULL, ud);
}

static int find_ping(const ns_client *c, uint64_t id)
{
    for (size_t i = 0; i < c->npings; i++)
        if (c->pings[i].id == id)
            return (int)i;
    return -1;
}

static pending_ping take_ping(ns_client *c, int i)
{
    pending_ping p = c->pings[i];
    memmove(&c->pings[i], &c->pings[i + 1], (c->npings - (size_t)i - 1) * sizeof(c->pings[0]));
    c->npings--;
    rearm(c);
    return p;
}

static int find_req(const ns_client *c, uint64_t id)
{
    for (size_t i = 0; i < c->nreqs; i++)
        if (c->reqs[i].id == id)
            return (int)i;
    return -1;
}

static pending_req take_req(ns_client *c, int i)
{
    pending_req p = c->reqs[i];
    memmove(&c->reqs[i], &c->reqs[i + 1], (c->nreqs - (size_t)i - 1) * sizeof(c->reqs[0]));
    c->nreqs--;
    rearm(c);
    return p;
}

/* An answer to a request of sync.c: it must be the body that request
 * expects. A stream stays registered and has no deadline any more. */
static void on_response(ns_client *c, const ns_envelope *env)
{
    int i = c->state == ST_READY ? find_req(c, env->request_id) : -1;
    if (i < 0 || c->reqs[i].answer != env->body_case) {
        close_with(c, false, NS_ERR_PROTOCOL, 0,
                   "the server sent an answer (body %d) that request %llu does not expect",
                   (int)env->body_case, (unsigned long long)env->request_id);
        return;
    }
    if (c->reqs[i].mode == NSC_PAGES && (env->change_page == NULL || !env->change_page->more)) {
        pending_req q = take_req(c, i);
        q.cb(c, NULL, env, q.ud);
        return;
    }
    if (c->reqs[i].mode == NSC_PAGES) {
        /* The server answers in order: requests behind the stream wait for
         * its last page, however slow the link; each page shows it is
         * getting there, so their time, too, counts from the latest. */
        uv_update_time(c->loop);
        for (size_t k = 0; k < c->nreqs; k++)
            if (c->reqs[k].deadline_ms != 0) /* 0: a Subscribe past its first page */
                c->reqs[k].deadline_ms = uv_now(c->loop) + c->timeout_ms;
        nsc_response_cb cb = c->reqs[i].cb;
        void *ud = c->reqs[i].ud;
        rearm(c);
        cb(c, NULL, env, ud);
        return;
    }
    if (c->reqs[i].mode == NSC_STREAM) {
        c->reqs[i].deadline_ms = 0;
        nsc_response_cb cb = c->reqs[i].cb;
        void *ud = c->reqs[i].ud;
        rearm(c);
        cb(c, NULL, env, ud);
        return;
    }
    pending_req q = take_req(c, i);
    q.cb(c, NULL, env, q.ud);
}

static void ping_payload(uint64_t id, uint8_t out[NS_CLIENT_PING_PAYLOAD])
{
    for (int i = 0; i < NS_CLIENT_PING_PAYLOAD; i++)
        out[i] = (uint8_t)(id >> (8 * (NS_CLIENT_PING_PAYLOAD - 1 - i)));
}

static void on_pong(ns_client *c, uint64_t rid, const Napsync__V1__Pong *pong)
{
    int i = c->state == ST_READY ? find_ping(c, rid) : -1;
    if (i < 0) {
        close_with(c, false, NS_ERR_PROTOCOL, 0,
                   "the server sent a Pong answering no ping (request id %llu)",
                   (unsigned long long)rid);
        return;
    }
    uint8_t expect[NS_CLIENT_PING_PAYLOAD];
    ping_payload(rid, expect);
    if (pong->payload.len != sizeof(expect) ||
        memcmp(pong->payload.data, expect, sizeof(expect)) != 0) {
        close_with(c, false, NS_ERR_PROTOCOL, 0,
                   "the server's Pong does not echo the ping's payload");
        return;
    }
    pending_ping p = take_ping(c, i);
    uint64_t rtt_us = (uv_hrtime() - p.sent_ns) / 1000u;
    p.cb(c, NULL, rtt_us, p.ud);
}

static void on_server_error(ns_client *c, uint64_t rid, const ns_wire_error *w)
{
    ns_error e;
    server_error(w, &e);
    if (rid == 0) {
        /* Not tied to a request: fatal for the session, or a notice. */
        if (w->fatal || c->state == ST_HELLO)
            close_with(c, true, e.status, e.server_code, "%s", e.message);
        return;
    }
    if (c->state == ST_HELLO && rid == c->hello_id) {
        /* e.g. a server that will not read our first flight compressed:
         * the next Hello does not ask it again. */
        if (c->ff_zstd)
            forget_remembered(c);
        close_with(c, true, e.status, e.server_code, "%s", e.message);
        return;
    }
    int i = c->state == ST_READY ? find_ping(c, rid) : -1;
    int r = c->state == ST_READY && i < 0 ? find_req(c, rid) : -1;
    if (i < 0 && r < 0) {
        close_with(c, false, NS_ERR_PROTOCOL, 0,
                   "the server answered request %llu, which this client never sent",
                   (unsigned long long)rid);
        return;
    }
    if (i >= 0) {
        pending_ping p = take_ping(c, i);
        p.cb(c, &e, 0, p.ud);
    } else {
        pending_req q = take_req(c, r);
        q.cb(c, &e, NULL, q.ud);
    }
    if (w->fatal)
        close_with(c, true, e.status, e.server_code, "%s", e.message);
}

static void on_goodbye(ns_client *c, const Napsync__V1__Goodbye *g)
{
    char text[256];
    if (!copy_text(text, sizeof(text), g->message, true) || text[0] == '\0')
        snprintf(text, sizeof(text), "no reason given");
    switch (g->reason) {
    case NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_SHUTTING_DOWN:
        close_with(c, true, NS_ERR_UNAVAILABLE, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                   "the server at %s is shutting down: %s", c->server, text);
        break;
    case NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_IDLE:
        close_with(c, true, NS_ERR_CLOSED, 0, "the server at %s closed the idle session: %s",
                   c->server, text);
        break;
    default:
        close_with(c, true, NS_ERR_CLOSED, 0, "the server at %s ended the session: %s", c->server,
                   text);
        break;
    }
}

/* The server may probe us too; the protocol bounds the payload. */
static void on_server_ping(ns_client *c, uint64_t rid, const Napsync__V1__Ping *ping)
{
    if (ping->payload.len > 64) {
        close_with(c, false, NS_ERR_PROTOCOL, 0, "the server sent a Ping payload over 64 bytes");
        return;
    }
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Pong pong = NAPSYNC__V1__PONG__INIT;
    pong.payload = ping->payload;
    env.request_id = rid;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PONG;
    env.pong = &pong;
    if (client_send(c, &env) != 0)
        close_with(c, false, NS_ERR_CLOSED, 0, "cannot send to %s", c->server);
}

static void dispatch(ns_client *c, const ns_envelope *env)
{
    uint64_t rid = env->request_id;
    switch (env->body_case) {
    case NAPSYNC__V1__ENVELOPE__BODY_WELCOME:
        if (c->state != ST_HELLO || rid != c->hello_id) {
            close_with(c, false, NS_ERR_PROTOCOL, 0, "the server sent an unexpected Welcome");
            return;
        }
        on_welcome(c, env->welcome);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_PONG:
        on_pong(c, rid, env->pong);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_ERROR:
        on_server_error(c, rid, env->error);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_GOODBYE:
        on_goodbye(c, env->goodbye);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_PING:
        if (c->state != ST_READY) {
            close_with(c, false, NS_ERR_PROTOCOL, 0, "the server sent a Ping before Welcome");
            return;
        }
        on_server_ping(c, rid, env->ping);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_HELLO:
        close_with(c, false, NS_ERR_PROTOCOL, 0, "the server sent a Hello");
        return;
    case NAPSYNC__V1__ENVELOPE__BODY_PUSH_RESULT:
    case NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE:
    case NAPSYNC__V1__ENVELOPE__BODY_CONFLICT_LIST:
    case NAPSYNC__V1__ENVELOPE__BODY_MUTATION_RESULT:
    case NAPSYNC__V1__ENVELOPE__BODY_HISTORY_PAGE:
    case NAPSYNC__V1__ENVELOPE__BODY_REPORT_RESULT:
        on_response(c, env);
        return;
    case NAPSYNC__V1__ENVELOPE__BODY__NOT_SET:
    default:
        /* A message from a newer protocol: say so and keep the session. */
        send_error_reply(c, rid, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED_MESSAGE,
                         "this client does not know that message");
        return;
    }
}

/* ---- ns_conn callbacks ------------------------------------------------------- */

static void on_ready(ns_conn *conn, void *ud)
{
    (void)conn;
    ns_client *c = ud;
    enter(c);
    if (c->state == ST_CONNECTING)
        send_hello(c);
    leave(c);
}

/* Replaces *env, a compact page, with the ordinary page it stands for. A
 * bad one is a protocol error that closes the connection: nothing of it is
 * applied. Returns false when it closed (and freed *env). */
static bool expand_page(ns_client *c, ns_envelope **env)
{
    ns_envelope *page = NULL;
    char why[160] = "";
    ns_page_compact_status st =
        c->compact ? ns_page_compact_expand(*env, NS_FRAME_DEFAULT_MAX, &page, why, sizeof(why))
                   : NS_PAGE_COMPACT_INVALID;
    ns_envelope_free(*env);
    *env = page;
    if (st == NS_PAGE_COMPACT_OK)
        return true;
    if (st == NS_PAGE_COMPACT_NOMEM)
        close_with(c, false, NS_ERR_NOMEM, 0, "out of memory");
    else
        close_with(c, false, NS_ERR_PROTOCOL, 0, "the server at %s sent a bad compact page: %s",
                   c->server, c->compact ? why : "this connection did not agree on them");
    return false;
}

static void on_frame(ns_conn *conn, const uint8_t *payload, size_t len, void *ud)
{
    (void)conn;
    ns_client *c = ud;
    enter(c);
    c->answered_since_send = true;
    if (c->state == ST_HELLO || c->state == ST_READY) {
        ns_envelope *env = ns_envelope_unpack(payload, len);
        if (env != NULL && env->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
            ns_envelope *inner = NULL;
            ns_compress_status st =
                c->zstd ? ns_compress_unpack(c->compress, env->zstd.data, env->zstd.len,
                                             NS_FRAME_DEFAULT_MAX, &inner)
                        : NS_COMPRESS_INVALID;
            ns_envelope_free(env);
            env = inner;
            if (st == NS_COMPRESS_NOMEM) {
                close_with(c, false, NS_ERR_NOMEM, 0, "out of memory");
                leave(c);
                return;
            }
        }
        if (env != NULL && env->body_case == NAPSYNC__V1__ENVELOPE__BODY_COMPACT_PAGE &&
            !expand_page(c, &env)) {
            leave(c);
            return;
        }
        if (env == NULL)
            close_with(c, false, NS_ERR_PROTOCOL, 0,
                       "the server at %s sent a frame that is not a napsync Envelope", c->server);
        else
            dispatch(c, env);
        ns_envelope_free(env);
    }
    leave(c);
}

static void on_frame_too_large(ns_conn *conn, void *ud)
{
    (void)conn;
    ns_client *c = ud;
    enter(c);
    close_with(c, false, NS_ERR_PROTOCOL, 0, "the server at %s sent a frame larger than %u bytes",
               c->server, NS_FRAME_DEFAULT_MAX);
    leave(c);
}

static void on_tls_session(ns_conn *conn, const uint8_t *session, size_t len, void *ud)
{
    (void)conn;
    ns_client *c = ud;
    enter(c);
    if (c->state == ST_READY)
        adopt_session(c, session, len);
    else if (c->state == ST_CONNECTING || c->state == ST_HELLO)
        (void)copy_blob(&c->fresh, &c->fresh_len, session, len);
    leave(c);
}

/* Failures that a stale session could explain, or that make it useless. */
static bool refused(ns_status st)
{
    switch (st) {
    case NS_ERR_TLS:
    case NS_ERR_SERVER_CERT:
    case NS_ERR_CERT_REFUSED:
    case NS_ERR_UNKNOWN_DEVICE:
    case NS_ERR_DEVICE_REVOKED:
    case NS_ERR_PROTOCOL:
        return true;
    default:
        return false;
    }
}

static void try_next_addr(ns_client *c);

static void on_conn_close(ns_conn *conn, ns_conn_close_reason reason, const char *msg, void *ud)
{
    (void)conn;
    ns_client *c = ud;
    enter(c);
    c->conn = NULL;
    c->refs--;
    ns_error e;
    memset(&e, 0, sizeof(e));
    if (c->close_err.status != NS_OK) {
        e = c->close_err;
    } else if (c->freeing) {
        set_error(&e, NS_ERR_CLOSED, 0, "the client was freed");
    } else if (reason == NS_CONN_IO_FAILED && c->state == ST_CONNECTING &&
               c->next_addr < c->naddrs) {
        /* e.g. "localhost" gave ::1 first but the server listens on IPv4 only */
        snprintf(c->last_connect_error, sizeof(c->last_connect_error), "%s", msg);
        try_next_addr(c);
        leave(c);
        return;
    } else {
        map_close(c, reason, msg, &e);
    }
    drop_blob(&c->fresh, &c->fresh_len);
    if (refused(e.status))
        forget_session(c);
    connection_ended(c, &e);
    leave(c);
}

static const ns_conn_callbacks conn_callbacks = {
    .on_ready = on_ready,
    .on_frame = on_frame,
    .on_frame_too_large = on_frame_too_large,
    .on_idle = NULL,
    .on_close = on_conn_close,
    .on_tls_session = on_tls_session,
};

/* ---- connecting ----------------------------------------------------------- */

static void try_next_addr(ns_client *c)
{
    ns_conn_options opt = {
        .max_frame = NS_FRAME_DEFAULT_MAX,
        .handshake_timeout_ms = 0, /* our own deadline covers the whole connect */
        .idle_timeout_ms = 0,
        .write_queue_limit = NS_CLIENT_WRITE_LIMIT,
        /* Our Goodbye is sent once every answer is in: waiting for the
         * server's close would cost a round trip and bring nothing. */
        .close_without_peer_eof = true,
        .tls_session = c->session,
        .tls_session_len = c->session_len,
    };
    int rc = 0;
    while (c->next_addr < c->naddrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[c->next_addr++];
        rc = ns_conn_connect(c->loop, sa, c->host, c->tls, &opt, &conn_callbacks, c, &c->conn);
        if (rc == 0) {
            c->refs++;
            set_state(c, ST_CONNECTING);
            return;
        }
        snprintf(c->last_connect_error, sizeof(c->last_connect_error), "cannot connect: %s",
                 uv_strerror(rc));
    }
    static const char prefix[] = "cannot connect: ";
    ns_error e;
    const char *why = c->last_connect_error;
    if (strncmp(why, prefix, sizeof(prefix) - 1) == 0)
        why += sizeof(prefix) - 1;
    set_error(&e, NS_ERR_CONNECT, 0, "cannot connect to %s: %s", c->server, why);
    connection_ended(c, &e);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_req *r = req->data;
    ns_client *c = r->client;
    enter(c);
    c->refs--;
    bool current = c->resolve == r;
    free(r);
    if (!current) {
        /* abandoned after a timeout; the attempt has already ended */
        uv_freeaddrinfo(res);
        leave(c);
        return;
    }
    c->resolve = NULL;
    ns_error e;
    if (c->freeing || c->disconnecting) {
        uv_freeaddrinfo(res);
        set_error(&e, NS_ERR_CLOSED, 0,
                  c->freeing ? "the client was freed" : "disconnected before connecting");
        connection_ended(c, &e);
        leave(c);
        return;
    }
    if (status != 0) {
        uv_freeaddrinfo(res);
        set_error(&e, NS_ERR_RESOLVE, 0, "cannot resolve \"%s\": %s", c->host, uv_strerror(status));
        connection_ended(c, &e);
        leave(c);
        return;
    }
    c->naddrs = 0;
    c->next_addr = 0;
    for (const struct addrinfo *ai = res; ai && c->naddrs < NS_CLIENT_MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(c->addrs[0]))
            continue;
        memset(&c->addrs[c->naddrs], 0, sizeof(c->addrs[0]));
        memcpy(&c->addrs[c->naddrs], ai->ai_addr, ai->ai_addrlen);
        c->naddrs++;
    }
    uv_freeaddrinfo(res);
    if (c->naddrs == 0) {
        set_error(&e, NS_ERR_RESOLVE, 0, "\"%s\" has no IPv4 or IPv6 address", c->host);
        connection_ended(c, &e);
        leave(c);
        return;
    }
    try_next_addr(c);
    leave(c);
}

static bool ping_overdue(const ns_client *c, uint64_t now)
{
    for (size_t i = 0; i < c->npings; i++)
        if (now >= c->pings[i].deadline_ms)
            return true;
    for (size_t i = 0; i < c->nreqs; i++)
        if (c->reqs[i].deadline_ms != 0 && now >= c->reqs[i].deadline_ms)
            return true;
    return false;
}

static void on_timer(uv_timer_t *t)
{
    ns_client *c = t->data;
    enter(c);
    uint64_t now = uv_now(c->loop);
    if (connecting(c) && now >= c->connect_deadline_ms) {
        const char *phase = c->state == ST_RESOLVING    ? "resolving its name"
                            : c->state == ST_CONNECTING ? "connecting and negotiating TLS"
                                                        : "waiting for the answer to Hello";
        if (c->state == ST_RESOLVING) {
            /* The threadpool may be stuck in the resolver: abandon the
             * request (it still holds a ref) rather than wait for it. */
            if (c->resolve)
                uv_cancel((uv_req_t *)&c->resolve->req);
            c->resolve = NULL;
            ns_error e;
            set_error(&e, NS_ERR_TIMEOUT, 0, "no answer from %s within %u ms (%s)", c->server,
                      c->timeout_ms, phase);
            connection_ended(c, &e);
        } else {
            close_with(c, false, NS_ERR_TIMEOUT, 0, "no answer from %s within %u ms (%s)",
                       c->server, c->timeout_ms, phase);
        }
    } else if (c->state == ST_READY && ping_overdue(c, now)) {
        /* A lost answer leaves the connection in doubt: end it, so that a
         * late answer can never be taken for another request's. */
        close_with(c, false, NS_ERR_TIMEOUT, 0, "no answer to a request from %s within %u ms",
                   c->server, c->timeout_ms);
    } else {
        rearm(c);
    }
    leave(c);
}

static void on_wake(uv_timer_t *t)
{
    ns_client *c = t->data;
    enter(c);
    nsc_wake_fn fn = c->wake_fn;
    void *ud = c->wake_ud;
    c->wake_fn = NULL;
    if (fn && !c->freeing)
        fn(c, ud);
    leave(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    ns_client *c = h->data;
    enter(c);
    c->refs--;
    leave(c);
}

/* ---- public API ------------------------------------------------------------ */

/* A readable regular file, checked before OpenSSL gives a vaguer answer. */
static int check_file(const char *path, const char *what, ns_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        set_error(err, NS_ERR_CONFIG, 0, "cannot read the %s %s: %s", what, path, strerror(errno));
        return NS_ERR_CONFIG;
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(err, NS_ERR_CONFIG, 0, "the %s %s is not a regular file", what, path);
        return NS_ERR_CONFIG;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_error(err, NS_ERR_CONFIG, 0, "cannot read the %s %s: %s", what, path, strerror(errno));
        return NS_ERR_CONFIG;
    }
    close(fd);
    return NS_OK;
}

static int validate_options(const ns_client_options *opt, ns_error *err)
{
    bool store = opt->store_path && opt->store_path[0];
    if ((opt->server == NULL || opt->server[0] == '\0') && store)
        return NS_OK; /* a store-only client: local edits and reads */
    if (opt->server == NULL || opt->server[0] == '\0') {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "no server address (host:port) given");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (!ns_text_ok(opt->server, NS_CLIENT_SERVER_MAX - 1)) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "the server address is longer than %d bytes or not printable text",
                  NS_CLIENT_SERVER_MAX - 1);
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (opt->ca_file == NULL || opt->ca_file[0] == '\0') {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "no CA file given: the server's certificate must be checked against the "
                  "deployment's CA");
        return NS_ERR_INVALID_ARGUMENT;
    }
    bool cert = opt->cert_file && opt->cert_file[0];
    bool key = opt->key_file && opt->key_file[0];
    if (cert != key) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  cert ? "a certificate file is given without its key file"
                       : "a key file is given without its certificate file");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if ((opt->client_name && !ns_text_ok(opt->client_name, NS_CLIENT_MAX_NAME)) ||
        (opt->client_version && !ns_text_ok(opt->client_version, NS_CLIENT_MAX_NAME))) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "client_name and client_version must be printable text of at most %d bytes",
                  NS_CLIENT_MAX_NAME);
        return NS_ERR_INVALID_ARGUMENT;
    }
    return NS_OK;
}

int ns_client_new(const ns_client_options *opt, uv_loop_t *loop, ns_client **out, ns_error *err)
{
    if (opt == NULL || out == NULL) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "ns_client_new needs options and an output");
        return NS_ERR_INVALID_ARGUMENT;
    }
    int rc = validate_options(opt, err);
    if (rc != NS_OK)
        return rc;
    char host[256] = "";
    uint16_t port = 0;
    bool store_only = opt->server == NULL || opt->server[0] == '\0';
    if (!store_only && ns_conf_hostport(opt->server, host, sizeof(host), &port) != 0) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "the server address \"%s\" is not host:port (e.g. napsync.example.org:7443 "
                  "or [2001:db8::1]:7443)",
                  opt->server);
        return NS_ERR_INVALID_ARGUMENT;
    }
    bool have_cert = !store_only && opt->cert_file && opt->cert_file[0];
    if (!store_only && (rc = check_file(opt->ca_file, "CA file", err)) != NS_OK)
        return rc;
    if (have_cert && ((rc = check_file(opt->cert_file, "certificate file", err)) != NS_OK ||
                      (rc = check_file(opt->key_file, "key file", err)) != NS_OK))
        return rc;

    ns_tls_config tc = {
        .cert_file = have_cert ? opt->cert_file : NULL,
        .key_file = have_cert ? opt->key_file : NULL,
        .ca_file = opt->ca_file,
    };
    ns_tls_ctx *tls = NULL;
    char tls_err[512] = "";
    rc =
        store_only ? NS_TLS_OK : ns_tls_ctx_new(NS_TLS_CLIENT, &tc, &tls, tls_err, sizeof(tls_err));
    if (rc != NS_TLS_OK) {
        if (rc == NS_TLS_ERR_NOMEM) {
            set_error(err, NS_ERR_NOMEM, 0, "out of memory");
            return NS_ERR_NOMEM;
        }
        set_error(err, NS_ERR_CONFIG, 0, "%s", tls_err[0] ? tls_err : "unusable TLS files");
        return NS_ERR_CONFIG;
    }

    ns_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ns_tls_ctx_free(tls);
        set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    c->tls = tls;
    c->have_cert = have_cert;
    memcpy(c->host, host, sizeof(host));
    c->port = port;
    snprintf(c->server, sizeof(c->server), "%s", store_only ? "" : opt->server);
    if (opt->store_path && opt->store_path[0]) {
        ns_error se;
        if (ns_store_open(opt->store_path, &c->store, &se) != NS_STORE_OK) {
            release_memory(c);
            if (err)
                *err = se;
            return se.status;
        }
        if (c->tls)
            load_session(c);
        ns_tls_cert_info ci;
        char cerr[160];
        if (have_cert && ns_tls_cert_file_info(opt->cert_file, &ci, cerr, sizeof(cerr)) == 0)
            for (size_t i = 0; i < sizeof(ci.sha256); i++)
                snprintf(c->cert_fp + 2 * i, 3, "%02x", ci.sha256[i]);
    }
    c->timeout_ms = opt->timeout_ms ? opt->timeout_ms : NS_CLIENT_DEFAULT_TIMEOUT_MS;
    snprintf(c->client_name, sizeof(c->client_name), "%s",
             opt->client_name ? opt->client_name : "libnapsync");
    snprintf(c->client_version, sizeof(c->client_version), "%s",
             opt->client_version ? opt->client_version : NS_VERSION);
    if (loop == NULL) {
        rc = uv_loop_init(&c->own_loop);
        if (rc != 0) {
            set_error(err, NS_ERR_NOMEM, 0, "cannot create an event loop: %s", uv_strerror(rc));
            release_memory(c);
            return NS_ERR_NOMEM;
        }
        c->owns_loop = true;
        c->loop = &c->own_loop;
    } else {
        c->loop = loop;
    }
    uv_timer_init(c->loop, &c->timer); /* cannot fail */
    c->timer.data = c;
    uv_timer_init(c->loop, &c->wake);
    c->wake.data = c;
    c->refs = 2;
    set_state(c, ST_IDLE);
    *out = c;
    return NS_OK;
}

void ns_client_free(ns_client *c)
{
    if (c == NULL || c->freeing)
        return;
    c->freeing = true;
    /* The pending callbacks hear NS_ERR_CLOSED from on_resolved or
     * on_conn_close, on the loop, never from inside this call. */
    if (c->resolve)
        uv_cancel((uv_req_t *)&c->resolve->req);
    if (c->conn) {
        if (c->state != ST_CLOSING) {
            set_error(&c->close_err, NS_ERR_CLOSED, 0, "the client was freed");
            set_state(c, ST_CLOSING);
        }
        ns_conn_close(c->conn, false);
    }
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    c->wake_fn = NULL;
    uv_close((uv_handle_t *)&c->wake, on_timer_closed);
    if (c->owns_loop && !c->running_loop && c->depth == 0)
        finish_own(c);
    /* Otherwise: the function running the own loop finishes, or (the
     * application's loop) the last close callback releases the memory. */
}

int ns_client_connect(ns_client *c, ns_connect_cb cb, void *ud, ns_error *err)
{
    if (c == NULL || cb == NULL) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "ns_client_connect needs a client and a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (c->freeing || c->state != ST_IDLE) {
        set_error(err, NS_ERR_STATE, 0,
                  c->freeing               ? "the client is being freed"
                  : c->state == ST_READY   ? "already connected"
                  : c->state == ST_CLOSING ? "the previous connection is still closing"
                                           : "a connect is already in progress");
        return NS_ERR_STATE;
    }
    if (c->tls == NULL) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "no server address (host:port) given: this client only has a store");
        return NS_ERR_INVALID_ARGUMENT;
    }
    resolve_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    r->client = c;
    r->req.data = r;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)c->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = uv_getaddrinfo(c->loop, &r->req, on_resolved, c->host, port, &hints);
    if (rc != 0) {
        free(r);
        set_error(err, rc == UV_ENOMEM ? NS_ERR_NOMEM : NS_ERR_RESOLVE, 0,
                  "cannot resolve \"%s\": %s", c->host, uv_strerror(rc));
        return rc == UV_ENOMEM ? NS_ERR_NOMEM : NS_ERR_RESOLVE;
    }
    c->refs++;
    c->resolve = r;
    memset(&c->unreported, 0, sizeof(c->unreported));
    c->connect_cb = cb;
    c->connect_ud = ud;
    memset(&c->close_err, 0, sizeof(c->close_err));
    c->last_connect_error[0] = '\0';
    /* The loop's clock may be stale if it has been idle (own loop). */
    uv_update_time(c->loop);
    c->connect_deadline_ms = uv_now(c->loop) + c->timeout_ms;
    set_state(c, ST_RESOLVING);
    rearm(c);
    return NS_OK;
}

int ns_client_ping(ns_client *c, ns_ping_cb cb, void *ud, ns_error *err)
{
    if (c == NULL || cb == NULL) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "ns_client_ping needs a client and a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (!c->freeing && c->state == ST_IDLE && c->unreported.status != NS_OK) {
        /* The connection ended while nothing was waiting: say why now. */
        ns_status st = c->unreported.status;
        if (err)
            *err = c->unreported;
        memset(&c->unreported, 0, sizeof(c->unreported));
        return st;
    }
    if (c->freeing || c->state != ST_READY) {
        set_error(err, NS_ERR_STATE, 0,
                  c->freeing ? "the client is being freed"
                             : "not connected: ns_client_connect must succeed first");
        return NS_ERR_STATE;
    }
    if (c->npings >= NS_CLIENT_MAX_INFLIGHT) {
        set_error(err, NS_ERR_STATE, 0, "too many requests awaiting an answer (at most %d)",
                  NS_CLIENT_MAX_INFLIGHT);
        return NS_ERR_STATE;
    }
    uint64_t id = next_request_id(c);
    uint8_t payload[NS_CLIENT_PING_PAYLOAD];
    ping_payload(id, payload);
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Ping ping = NAPSYNC__V1__PING__INIT;
    ping.payload.data = payload;
    ping.payload.len = sizeof(payload);
    env.request_id = id;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PING;
    env.ping = &ping;
    uint64_t sent_ns = uv_hrtime();
    int rc = client_send(c, &env);
    if (rc != 0) {
        /* ns_conn reports the cause itself through on_close. */
        set_error(err, rc == UV_ENOMEM ? NS_ERR_NOMEM : NS_ERR_CLOSED, 0,
                  "cannot send a ping to %s: %s", c->server, uv_strerror(rc));
        return rc == UV_ENOMEM ? NS_ERR_NOMEM : NS_ERR_CLOSED;
    }
    uv_update_time(c->loop);
    pending_ping *p = &c->pings[c->npings++];
    p->id = id;
    p->sent_ns = sent_ns;
    p->deadline_ms = uv_now(c->loop) + c->timeout_ms;
    p->cb = cb;
    p->ud = ud;
    rearm(c);
    return NS_OK;
}

int ns_client_disconnect(ns_client *c, ns_closed_cb cb, void *ud)
{
    if (c == NULL)
        return NS_ERR_INVALID_ARGUMENT;
    if (c->freeing || c->disconnecting || c->state == ST_IDLE)
        return NS_ERR_STATE;
    c->disconnecting = true;
    c->closed_cb = cb;
    c->closed_ud = ud;
    switch (c->state) {
    case ST_RESOLVING:
        /* on_resolved ends the attempt, whether or not the cancel succeeds */
        uv_cancel((uv_req_t *)&c->resolve->req);
        break;
    case ST_CONNECTING:
    case ST_HELLO:
        close_with(c, false, NS_ERR_CLOSED, 0, "disconnected before the connection was ready");
        break;
    case ST_READY: {
        Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
        Napsync__V1__Goodbye bye = NAPSYNC__V1__GOODBYE__INIT;
        bye.reason = NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_CLIENT_DONE;
        env.body_case = NAPSYNC__V1__ENVELOPE__BODY_GOODBYE;
        env.goodbye = &bye;
        /* Without the Goodbye the server still sees the TLS close_notify. */
        bool sent = client_send(c, &env) == 0;
        close_with(c, sent, NS_ERR_CLOSED, 0, "the connection was closed by ns_client_disconnect");
        break;
    }
    case ST_CLOSING: /* closing already; cb runs when it is done */
    case ST_IDLE:
        break;
    }
    return NS_OK;
}

const ns_identity *ns_client_identity(const ns_client *c)
{
    return c && c->state == ST_READY ? &c->id : NULL;
}

/* ---- blocking forms over the client's own loop ---------------------------- */

typedef struct {
    bool done;
    ns_error err;
    uint64_t rtt_us;
} waiter;

/* A blocking call returns once its answer is in, but the same read may
 * have brought more (a Goodbye right behind a Pong): those frames stay
 * with ns_conn until the next blocking call, so that what they say reaches
 * that call instead of changing the client between calls. */
static void hold_frames(ns_client *c)
{
    if (c->conn && !c->frames_held && c->state == ST_READY) {
        ns_conn_pause(c->conn);
        c->frames_held = true;
    }
}

static void release_frames(ns_client *c)
{
    if (!c->frames_held)
        return;
    c->frames_held = false;
    if (c->conn)
        ns_conn_resume(c->conn); /* may deliver frames now */
}

/* ---- for sync.c (client_internal.h) ------------------------------------------ */

void nsc_set_error(ns_error *e, ns_status st, int server_code, const char *fmt, ...)
{
    if (e == NULL)
        return;
    e->status = st;
    e->server_code = server_code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    if (e->message[0] == '\0')
        snprintf(e->message, sizeof(e->message), "%s", ns_status_name(st));
}

int nsc_request(ns_client *c, Napsync__V1__Envelope *env, Napsync__V1__Envelope__BodyCase answer,
                int mode, nsc_response_cb cb, void *ud, ns_error *err)
{
    if (!c->freeing && c->state == ST_IDLE && c->unreported.status != NS_OK) {
        ns_status st = c->unreported.status;
        if (err)
            *err = c->unreported;
        memset(&c->unreported, 0, sizeof(c->unreported));
        return st;
    }
    if (c->freeing || (c->state != ST_READY && !(c->state == ST_HELLO && c->early))) {
        set_error(err, NS_ERR_STATE, 0,
                  c->freeing ? "the client is being freed"
                             : "not connected: ns_client_connect must succeed first");
        return NS_ERR_STATE;
    }
    if (c->nreqs >= NS_CLIENT_MAX_INFLIGHT) {
        set_error(err, NS_ERR_STATE, 0, "too many requests awaiting an answer (at most %d)",
                  NS_CLIENT_MAX_INFLIGHT);
        return NS_ERR_STATE;
    }
    uint64_t id = next_request_id(c);
    env->request_id = id;
    int rc = client_send(c, env);
    if (rc != 0) {
        set_error(err, rc == UV_ENOMEM ? NS_ERR_NOMEM : NS_ERR_CLOSED, 0,
                  "cannot send a request to %s: %s", c->server, uv_strerror(rc));
        return rc == UV_ENOMEM ? NS_ERR_NOMEM : NS_ERR_CLOSED;
    }
    if (c->answered_since_send) {
        c->flights++;
        c->answered_since_send = false;
    }
    uv_update_time(c->loop);
    pending_req *q = &c->reqs[c->nreqs++];
    q->id = id;
    q->deadline_ms = uv_now(c->loop) + c->timeout_ms;
    q->answer = answer;
    q->mode = mode;
    q->cb = cb;
    q->ud = ud;
    rearm(c);
    return NS_OK;
}

ns_store *nsc_store(ns_client *c)
{
    return c->store;
}

void nsc_wake_after(ns_client *c, uint64_t ms, nsc_wake_fn fn, void *ud)
{
    if (c->freeing)
        return;
    c->wake_fn = fn;
    c->wake_ud = ud;
    uv_timer_start(&c->wake, on_wake, ms, 0);
}

void nsc_wake_stop(ns_client *c)
{
    c->wake_fn = NULL;
    if (!c->freeing)
        uv_timer_stop(&c->wake);
}

ns_conn_state nsc_conn_state(const ns_client *c)
{
    if (c->state == ST_READY)
        return NS_CONN_CONNECTED;
    return connecting(c) ? NS_CONN_CONNECTING : NS_CONN_DISCONNECTED;
}

nsc_sync **nsc_sync_slot(ns_client *c)
{
    return &c->sync;
}

uv_loop_t *ns_client_loop(ns_client *c)
{
    return c ? c->loop : NULL;
}

static void wait_connected(ns_client *c, const ns_error *e, void *ud)
{
    waiter *w = ud;
    w->done = true;
    if (e)
        w->err = *e;
    else
        hold_frames(c);
}

static void wait_pong(ns_client *c, const ns_error *e, uint64_t rtt_us, void *ud)
{
    waiter *w = ud;
    w->done = true;
    w->rtt_us = rtt_us;
    if (e)
        w->err = *e;
    else
        hold_frames(c);
}

static void wait_closed(ns_client *c, void *ud)
{
    (void)c;
    waiter *w = ud;
    w->done = true;
}

void nsc_hold_frames(ns_client *c)
{
    hold_frames(c);
}

static int can_wait(ns_client *c, ns_error *err)
{
    if (c == NULL) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "no client");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (!c->owns_loop) {
        set_error(err, NS_ERR_STATE, 0,
                  "the blocking forms need a client with its own loop (ns_client_new with NULL)");
        return NS_ERR_STATE;
    }
    if (c->running_loop) {
        set_error(err, NS_ERR_STATE, 0, "a blocking call cannot be made from inside a callback");
        return NS_ERR_STATE;
    }
    return NS_OK;
}

/* Runs the own loop until w is done. Returns false if a callback freed the
 * client meanwhile: it is gone when this returns. */
static bool run_until(ns_client *c, waiter *w)
{
    c->running_loop = true;
    release_frames(c);
    while (!w->done && !c->freeing && uv_loop_alive(&c->own_loop))
        uv_run(&c->own_loop, UV_RUN_ONCE);
    c->running_loop = false;
    if (c->freeing) {
        finish_own(c);
        return false;
    }
    return true;
}

int nsc_can_wait(ns_client *c, ns_error *err)
{
    return can_wait(c, err);
}

bool nsc_run_until(ns_client *c, const bool *done)
{
    c->running_loop = true;
    release_frames(c);
    while (!*done && !c->freeing && uv_loop_alive(&c->own_loop))
        uv_run(&c->own_loop, UV_RUN_ONCE);
    c->running_loop = false;
    if (c->freeing) {
        finish_own(c);
        return false;
    }
    return true;
}

static int wait_result(waiter *w, bool alive, ns_error *err)
{
    if (!w->done) {
        set_error(&w->err, NS_ERR_CLOSED, 0,
                  alive ? "the operation did not complete" : "the client was freed");
    }
    if (err)
        *err = w->err;
    return w->err.status;
}

int ns_client_connect_wait(ns_client *c, ns_error *err)
{
    int rc = can_wait(c, err);
    if (rc != NS_OK)
        return rc;
    waiter w;
    memset(&w, 0, sizeof(w));
    rc = ns_client_connect(c, wait_connected, &w, err);
    if (rc != NS_OK)
        return rc;
    bool alive = run_until(c, &w);
    return wait_result(&w, alive, err);
}

int ns_client_ping_wait(ns_client *c, uint64_t *rtt_us, ns_error *err)
{
    int rc = can_wait(c, err);
    if (rc != NS_OK)
        return rc;
    waiter w;
    memset(&w, 0, sizeof(w));
    rc = ns_client_ping(c, wait_pong, &w, err);
    if (rc != NS_OK)
        return rc;
    bool alive = run_until(c, &w);
    rc = wait_result(&w, alive, err);
    if (rc == NS_OK && rtt_us)
        *rtt_us = w.rtt_us;
    return rc;
}

int ns_client_disconnect_wait(ns_client *c)
{
    int rc = can_wait(c, NULL);
    if (rc != NS_OK)
        return rc;
    waiter w;
    memset(&w, 0, sizeof(w));
    rc = ns_client_disconnect(c, wait_closed, &w);
    if (rc != NS_OK)
        return rc;
    if (!run_until(c, &w))
        return NS_ERR_CLOSED;
    return w.done ? NS_OK : NS_ERR_CLOSED;
}

/* ---- reports ----------------------------------------------------------------- */

/* The kinds of report the server computes (napsync.h). */
static const char *const report_kinds[] = {"progress", "region", "coverage"};

typedef struct {
    ns_report_cb cb;
    void *ud;
    char kind[16];
} report_req;

static bool report_uuid_ok(const char *s)
{
    char canon[NS_UUID_SIZE];
    return ns_uuid_canon(s, canon);
}

static void on_report(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp, void *ud)
{
    report_req q = *(report_req *)ud;
    free(ud);
    if (e) {
        q.cb(c, e, NULL, 0, q.ud);
        return;
    }
    const Napsync__V1__ReportResult *r = resp->report_result;
    /* The document is checked as text here (bounded, UTF-8, no control
     * characters: JSON escapes them); parsing it is the caller's. */
    if (r == NULL || r->kind == NULL || strcmp(r->kind, q.kind) != 0 || r->json == NULL ||
        r->json[0] != '{' || !ns_text_ok(r->json, NS_FRAME_DEFAULT_MAX)) {
        ns_error re;
        set_error(&re, NS_ERR_PROTOCOL, 0, "the server sent a malformed %s report", q.kind);
        q.cb(c, &re, NULL, 0, q.ud);
        return;
    }
    q.cb(c, NULL, r->json, strlen(r->json), q.ud);
}

int ns_client_report(ns_client *c, const ns_report_request *req, ns_report_cb cb, void *ud,
                     ns_error *err)
{
    if (c == NULL || req == NULL || req->kind == NULL || cb == NULL) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "ns_client_report needs a client, a request with a kind and a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    const char *kind = NULL;
    for (size_t i = 0; i < sizeof(report_kinds) / sizeof(report_kinds[0]); i++)
        if (strcmp(req->kind, report_kinds[i]) == 0)
            kind = report_kinds[i];
    bool progress = kind != NULL && strcmp(kind, "progress") == 0;
    bool region = kind != NULL && strcmp(kind, "region") == 0;
    const char *bad = kind == NULL ? "kind: not a report (progress, region or coverage)"
                      : progress != (req->plan_id != NULL)
                          ? (progress ? "plan_id: the progress report needs a plan"
                                      : "plan_id: only the progress report takes a plan")
                      : region != (req->region_id != NULL)
                          ? (region ? "region_id: the region report needs a region"
                                    : "region_id: only the region report takes a region")
                      : !progress && req->year != 0 ? "year: only the progress report takes a year"
                      : req->year != 0 && (req->year < 1990 || req->year > 2100)
                          ? "year: not between 1990 and 2100 (0: the latest with data)"
                      : progress && !report_uuid_ok(req->plan_id) ? "plan_id: not a UUID"
                      : region && !report_uuid_ok(req->region_id) ? "region_id: not a UUID"
                                                                  : NULL;
    if (bad) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "%s", bad);
        return NS_ERR_INVALID_ARGUMENT;
    }
    report_req *q = malloc(sizeof(*q));
    if (q == NULL) {
        set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    *q = (report_req){.cb = cb, .ud = ud};
    snprintf(q->kind, sizeof(q->kind), "%s", kind);
    Napsync__V1__ReportRequest rm = NAPSYNC__V1__REPORT_REQUEST__INIT;
    rm.kind = (char *)kind;
    rm.plan_id = (char *)(progress ? req->plan_id : "");
    rm.year = req->year;
    rm.region_id = (char *)(region ? req->region_id : "");
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_REPORT_REQUEST;
    env.report_request = &rm;
    int rc =
        nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_REPORT_RESULT, false, on_report, q, err);
    if (rc != NS_OK)
        free(q);
    return rc;
}

typedef struct {
    bool done;
    ns_error err;
    char *json;
} report_waiter;

static void wait_report(ns_client *c, const ns_error *e, const char *json, size_t len, void *ud)
{
    report_waiter *w = ud;
    w->done = true;
    if (e) {
        w->err = *e;
        return;
    }
    hold_frames(c);
    w->json = malloc(len + 1);
    if (w->json == NULL) {
        set_error(&w->err, NS_ERR_NOMEM, 0, "out of memory");
        return;
    }
    memcpy(w->json, json, len + 1);
}

int ns_client_report_wait(ns_client *c, const ns_report_request *req, char **json, ns_error *err)
{
    if (json == NULL) {
        set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "ns_client_report_wait needs somewhere to put the report");
        return NS_ERR_INVALID_ARGUMENT;
    }
    *json = NULL;
    int rc = can_wait(c, err);
    if (rc != NS_OK)
        return rc;
    report_waiter w;
    memset(&w, 0, sizeof(w));
    rc = ns_client_report(c, req, wait_report, &w, err);
    if (rc != NS_OK)
        return rc;
    bool alive = nsc_run_until(c, &w.done);
    if (!w.done)
        set_error(&w.err, NS_ERR_CLOSED, 0,
                  alive ? "the operation did not complete" : "the client was freed");
    if (err)
        *err = w.err;
    if (w.err.status == NS_OK)
        *json = w.json;
    else
        free(w.json);
    return w.err.status;
}

const char *ns_version(void)
{
    return NS_VERSION;
}
