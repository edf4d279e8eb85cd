/* TLS 1.3 session resumption against a real napsyncd.
 *
 * A client keeps the session the server hands it and offers it on the next
 * connect: the handshake skips the certificate exchange, yet the daemon
 * must still know exactly which device is there (it computes the
 * fingerprint from the certificate the ticket carries) and still check it
 * on every session. A session is never offered where it does not belong
 * (another device, another trust) and one the server cannot honour (another
 * instance, a reload) costs a full handshake, never a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "conn.h"
#include "envelope.h"
#include "harness.h"
#include "store.h"
#include "tls.h"
#include "version.h"

#define PRINCIPAL "Amina Diallo"
#define OUT_CAP   8192

typedef struct {
    nst_env *e;
    nst_device a;       /* registered */
    nst_device b;       /* registered, another device of the same principal */
    nst_device revoked; /* registered; revoked by its test */
} fixture;
NST_FIXTURE_CHECK(fixture);

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    const nst_member m[] = {
        {&f->a, "resume-laptop", "mogender", PRINCIPAL, "coordinator", NULL, NULL},
        {&f->b, "resume-phone", "mogender", PRINCIPAL, "coordinator", NULL, NULL},
        {&f->revoked, "resume-lost-tablet", "mogender", PRINCIPAL, "coordinator", NULL, NULL},
    };
    return nst_group_start(&f->e, "resume", NULL, m, NST_COUNT(m));
}

/* ---- helpers ----------------------------------------------------------------- */

static ns_client *new_client(const nst_env *e, const nst_device *d, const char *store)
{
    char server[64];
    ns_client_options o;
    nst_client_options(e, d->cert, d->key, e->ca_cert, &o, server, sizeof(server));
    o.store_path = store;
    ns_client *c = NULL;
    ns_error err;
    if (ns_client_new(&o, NULL, &c, &err) != NS_OK)
        nst_fail(e, "ns_client_new for %s: %s", d->name, err.message);
    return c;
}

/* Connects, checks that the Welcome names d and PRINCIPAL, pings, and
 * returns whether TLS resumed; the client stays connected. */
static bool must_connect(const nst_env *e, ns_client *c, const nst_device *d)
{
    ns_error err;
    int rc = ns_client_connect_wait(c, &err);
    if (rc != NS_OK)
        nst_fail(e, "%s could not connect: %s: %s", d->name, ns_status_name((ns_status)rc),
                 err.message);
    const ns_identity *id = ns_client_identity(c);
    assert_non_null(id);
    assert_string_equal(id->device_name, d->name);
    assert_string_equal(id->principal_name, PRINCIPAL);
    assert_true(id->tls_resumed == 0 || id->tls_resumed == 1);
    bool resumed = id->tls_resumed == 1;
    nst_must_ping(e, c);
    return resumed;
}

static void must_disconnect(ns_client *c)
{
    assert_int_equal(ns_client_disconnect_wait(c), NS_OK);
}

static void store_path(const nst_env *e, const char *name, char out[NST_PATH])
{
    assert_int_equal(nst_path_join(out, e->dir, name), 0);
}

/* The session a (closed) store keeps; returns its length, 0 if none. */
static size_t stored_session(const nst_env *e, const char *path, uint8_t *buf, size_t cap)
{
    ns_store *st = NULL;
    ns_error err;
    if (ns_store_open(path, &st, &err) != NS_STORE_OK)
        nst_fail(e, "cannot open the store %s: %s", path, err.message);
    size_t len = 0;
    ns_store_rc rc = ns_store_tls_session_get(st, buf, cap, &len, &err);
    ns_store_close(st);
    if (rc != NS_STORE_OK)
        nst_fail(e, "cannot read the TLS session of %s: %s", path, err.message);
    return len;
}

/* ---- one client reconnecting ------------------------------------------------- */

/* The second and later connects of one client resume, and the daemon still
 * names the right principal and device: it found the fingerprint on a
 * session that exchanged no certificate. */
static void test_reconnect_resumes(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ns_client *c = new_client(e, &f->a, NULL);
    assert_false(must_connect(e, c, &f->a));
    must_disconnect(c);
    if (!must_connect(e, c, &f->a))
        nst_fail(e, "the reconnect made a full handshake instead of resuming");
    must_disconnect(c);
    /* The ticket of a resumed session resumes too. */
    if (!must_connect(e, c, &f->a))
        nst_fail(e, "the third connect did not resume with the ticket of the second");
    must_disconnect(c);
    /* Another device of the same principal is another device. */
    ns_client *other = new_client(e, &f->b, NULL);
    assert_false(must_connect(e, other, &f->b));
    must_disconnect(other);
    nst_client_close(other);
    nst_client_close(c);
    nst_test_passed(e);
}

/* ---- across processes, through the store ---------------------------------------- */

/* `napsync CMD --json` as device d on store; stdout in out (OUT_CAP bytes). */
static int cli(fixture *f, const nst_device *d, const char *store, const char *cmd, char *out)
{
    return nst_cli(f->e, d, store, out, OUT_CAP, cmd, "--json", NULL);
}

/* Two clients one after the other on one store, as two runs of the CLI:
 * the second resumes from the session the first saved; and so do the CLI's
 * whoami and ping, which say so. */
static void test_store_resumes_in_the_next_process(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    store_path(e, "a-next.store", path);
    ns_client *first = new_client(e, &f->a, path);
    assert_false(must_connect(e, first, &f->a));
    must_disconnect(first);
    nst_client_close(first);
    uint8_t buf[NS_STORE_TLS_SESSION_MAX];
    if (stored_session(e, path, buf, sizeof(buf)) == 0)
        nst_fail(e, "no TLS session was saved in the store");

    ns_client *second = new_client(e, &f->a, path);
    if (!must_connect(e, second, &f->a))
        nst_fail(e, "a new client on the same store did not resume");
    must_disconnect(second);
    nst_client_close(second);

    char out[OUT_CAP];
    int rc = cli(f, &f->a, path, "whoami", out);
    if (rc != 0 || strstr(out, "\"tls_resumed\":true") == NULL || strstr(out, f->a.name) == NULL)
        nst_fail(e, "napsync whoami --json did not resume (exit %d): %s", rc, out);
    rc = cli(f, &f->a, path, "ping", out);
    if (rc != 0 || strstr(out, "\"tls_resumed\":true") == NULL)
        nst_fail(e, "napsync ping --json did not resume (exit %d): %s", rc, out);
    nst_test_passed(e);
}

/* A store used with another device's certificate: the session it holds is
 * bound to the first device's certificate and is not offered, so the
 * server sees (and names) the device whose certificate is presented. */
static void test_session_not_offered_by_another_device(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    store_path(e, "shared.store", path);
    ns_client *c = new_client(e, &f->a, path);
    assert_false(must_connect(e, c, &f->a));
    must_disconnect(c);
    nst_client_close(c);

    ns_client *b = new_client(e, &f->b, path);
    if (must_connect(e, b, &f->b))
        nst_fail(e, "device B resumed the session device A left in the store");
    must_disconnect(b);
    nst_client_close(b);
    nst_test_passed(e);
}

/* ---- sessions the server cannot honour ------------------------------------------ */

/* A second napsyncd on the same database, CA and certificate: it keeps its
 * own sessions, so A's session from the first instance does not resume
 * there; the full handshake succeeds. */
static void test_other_instance_makes_full_handshake(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    store_path(e, "a-two-servers.store", path);
    ns_client *c = new_client(e, &f->a, path);
    assert_false(must_connect(e, c, &f->a));
    must_disconnect(c);
    nst_client_close(c);

    nst_env *peer = nst_env_peer(e, "second");
    if (peer == NULL)
        nst_fail(e, "no environment for a second napsyncd");
    nst_test_begin(peer);
    if (nst_daemon_start(peer, NULL) != 0)
        nst_fail(peer, "the second napsyncd did not start");
    ns_client *p = new_client(peer, &f->a, path);
    if (must_connect(peer, p, &f->a))
        nst_fail(peer, "the second instance resumed a session of the first");
    must_disconnect(p);
    nst_client_close(p);
    /* It saved the second instance's session: that one resumes there. */
    p = new_client(peer, &f->a, path);
    if (!must_connect(peer, p, &f->a))
        nst_fail(peer, "the second instance did not resume its own session");
    must_disconnect(p);
    nst_client_close(p);
    nst_test_passed(peer);
    assert_int_equal(nst_env_close(peer), 0);
    nst_test_passed(e);
}

/* SIGHUP with a new server certificate: the new context has new ticket
 * keys, old sessions make a full handshake (verifying the new certificate),
 * and the sessions it issues resume again. */
static void test_reload_voids_sessions(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ns_client *c = new_client(e, &f->a, NULL);
    assert_false(must_connect(e, c, &f->a));
    must_disconnect(c);
    assert_true(must_connect(e, c, &f->a));
    must_disconnect(c);

    char cert2[NST_PATH], key2[NST_PATH];
    assert_int_equal(nst_server_cert_issue(e, "server-resume-renewed", cert2, key2), 0);
    assert_int_equal(nst_server_cert_install(e, cert2, key2), 0);
    size_t from = nst_log_size(e);
    assert_int_equal(nst_daemon_signal(e, SIGHUP), 0);
    if (nst_log_wait(e, from, "reloaded TLS", NST_WAIT_MS) != 0)
        nst_fail(e, "no reload logged after SIGHUP");

    if (must_connect(e, c, &f->a))
        nst_fail(e, "a session from before the reload resumed");
    must_disconnect(c);
    if (!must_connect(e, c, &f->a))
        nst_fail(e, "a session from after the reload did not resume");
    must_disconnect(c);
    nst_client_close(c);
    nst_test_passed(e);
}

/* ---- a revoked device with a saved session -------------------------------------- */

typedef struct {
    bool ready;
    bool resumed;
    bool closed;
    int body;       /* body case of the first frame, 0 if none */
    int error_code; /* its Error code, if it was one */
    char close_msg[320];
    uint8_t next[NS_TLS_SESSION_MAX]; /* the session the server gave, if any */
    size_t next_len;
} raw_result;

static void raw_on_tls_session(ns_conn *c, const uint8_t *session, size_t len, void *ud)
{
    (void)c;
    raw_result *r = ud;
    if (len <= sizeof(r->next)) {
        memcpy(r->next, session, len);
        r->next_len = len;
    }
}

static void raw_on_ready(ns_conn *c, void *ud)
{
    raw_result *r = ud;
    r->ready = true;
    r->resumed = ns_conn_tls_resumed(c);
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Hello hello = NAPSYNC__V1__HELLO__INIT;
    hello.min_version = NS_PROTOCOL_VERSION_MIN;
    hello.max_version = NS_PROTOCOL_VERSION_MAX;
    hello.client_name = "test_resume";
    hello.client_version = "1";
    env.request_id = 1;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    if (ns_envelope_send(c, &env) != 0)
        ns_conn_close(c, false);
}

static void raw_on_frame(ns_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    raw_result *r = ud;
    ns_envelope *env = ns_envelope_unpack(payload, len);
    if (r->body == 0 && env != NULL) {
        r->body = (int)env->body_case;
        if (env->body_case == NAPSYNC__V1__ENVELOPE__BODY_ERROR)
            r->error_code = (int)env->error->code;
    }
    ns_envelope_free(env);
    ns_conn_close(c, false);
}

static void raw_on_too_large(ns_conn *c, void *ud)
{
    (void)ud;
    ns_conn_close(c, false);
}

static void raw_on_close(ns_conn *c, ns_conn_close_reason reason, const char *msg, void *ud)
{
    (void)c;
    (void)reason;
    raw_result *r = ud;
    r->closed = true;
    snprintf(r->close_msg, sizeof(r->close_msg), "%s", msg);
}

/* Offers session (as ns_conn does for libnapsync), says Hello, and reads
 * the first answer. */
static void raw_hello(const nst_env *e, const nst_device *d, const uint8_t *session, size_t len,
                      raw_result *r)
{
    memset(r, 0, sizeof(*r));
    ns_tls_config tc = {.cert_file = d->cert, .key_file = d->key, .ca_file = e->ca_cert};
    ns_tls_ctx *tls = NULL;
    char err[512];
    assert_int_equal(ns_tls_ctx_new(NS_TLS_CLIENT, &tc, &tls, err, sizeof(err)), NS_TLS_OK);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct sockaddr_in sa;
    assert_int_equal(uv_ip4_addr("127.0.0.1", e->port, &sa), 0);
    static const ns_conn_callbacks cb = {
        .on_ready = raw_on_ready,
        .on_frame = raw_on_frame,
        .on_frame_too_large = raw_on_too_large,
        .on_close = raw_on_close,
        .on_tls_session = raw_on_tls_session,
    };
    ns_conn_options opt = {
        .max_frame = 1u << 20,
        .handshake_timeout_ms = NST_WAIT_MS,
        .idle_timeout_ms = NST_WAIT_MS,
        .write_queue_limit = 1u << 20,
        .tls_session = session,
        .tls_session_len = len,
    };
    ns_conn *conn = NULL;
    assert_int_equal(
        ns_conn_connect(&loop, (const struct sockaddr *)&sa, "127.0.0.1", tls, &opt, &cb, r, &conn),
        0);
    while (!r->closed && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    ns_tls_ctx_free(tls);
}

/* Revoking a device takes effect on sessions it resumes: the daemon looks
 * the fingerprint up on every session, resumed or not. */
static void test_revoked_device_cannot_resume(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    store_path(e, "lost-tablet.store", path);
    ns_client *c = new_client(e, &f->revoked, path);
    assert_false(must_connect(e, c, &f->revoked));
    must_disconnect(c);
    nst_client_close(c);
    uint8_t session[NS_STORE_TLS_SESSION_MAX];
    size_t len = stored_session(e, path, session, sizeof(session));
    if (len == 0)
        nst_fail(e, "no TLS session was saved in the store");

    /* Before the revocation the saved session gets in, resumed. */
    raw_result r;
    raw_hello(e, &f->revoked, session, len, &r);
    if (!r.ready || !r.resumed || r.body != NAPSYNC__V1__ENVELOPE__BODY_WELCOME)
        nst_fail(
            e,
            "the saved session did not resume into a Welcome (ready %d, resumed %d, body %d: %s)",
            r.ready, r.resumed, r.body, r.close_msg);

    /* A ticket resumes once: the next connection offers the one the server
     * gave on this one. */
    if (r.next_len == 0)
        nst_fail(e, "the resumed connection brought no new session");
    memcpy(session, r.next, r.next_len);
    len = r.next_len;

    assert_int_equal(nst_device_revoke(e, f->revoked.name), 0);
    raw_hello(e, &f->revoked, session, len, &r);
    if (!r.ready || !r.resumed)
        nst_fail(e,
                 "the handshake with the saved session did not resume (ready %d, resumed %d: %s)",
                 r.ready, r.resumed, r.close_msg);
    if (r.body != NAPSYNC__V1__ENVELOPE__BODY_ERROR ||
        r.error_code != NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED)
        nst_fail(e, "a revoked device got body %d (error %d) on a resumed session", r.body,
                 r.error_code);

    /* libnapsync says so, and forgets the session it offered. */
    c = new_client(e, &f->revoked, path);
    ns_error err;
    int rc = ns_client_connect_wait(c, &err);
    if (rc != NS_ERR_DEVICE_REVOKED)
        nst_fail(e, "a revoked device connected with %s: %s", ns_status_name((ns_status)rc),
                 err.message);
    nst_client_close(c);
    assert_int_equal(stored_session(e, path, session, sizeof(session)), 0);
    nst_test_passed(e);
}

/* A ticket resumes one connection: offered again, it gets a full handshake
 * (and still a Welcome); the ticket the resumed connection brought resumes
 * the next one. So a ticket seen in a ClientHello is never seen again. */
static void test_ticket_resumes_once(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    store_path(e, "once.store", path);
    ns_client *c = new_client(e, &f->b, path);
    assert_false(must_connect(e, c, &f->b));
    must_disconnect(c);
    nst_client_close(c);
    uint8_t session[NS_STORE_TLS_SESSION_MAX];
    size_t len = stored_session(e, path, session, sizeof(session));
    if (len == 0)
        nst_fail(e, "no TLS session was saved in the store");
    raw_result *r = malloc(sizeof(*r));
    assert_non_null(r);
    raw_hello(e, &f->b, session, len, r);
    if (!r->resumed || r->body != NAPSYNC__V1__ENVELOPE__BODY_WELCOME || r->next_len == 0)
        nst_fail(e, "the saved session did not resume into a Welcome with a new session (%s)",
                 r->close_msg);
    uint8_t *next = malloc(r->next_len);
    assert_non_null(next);
    size_t next_len = r->next_len;
    memcpy(next, r->next, next_len);
    raw_hello(e, &f->b, session, len, r);
    if (!r->ready || r->resumed || r->body != NAPSYNC__V1__ENVELOPE__BODY_WELCOME)
        nst_fail(e, "a ticket offered twice: ready %d, resumed %d, body %d (%s)", r->ready,
                 r->resumed, r->body, r->close_msg);
    raw_hello(e, &f->b, next, next_len, r);
    if (!r->resumed || r->body != NAPSYNC__V1__ENVELOPE__BODY_WELCOME)
        nst_fail(e, "the ticket of a resumed connection did not resume (%s)", r->close_msg);
    free(next);
    free(r);
    nst_test_passed(e);
}

/* ---- the server's store of sessions, in memory ------------------------------------ */

typedef struct {
    uint8_t buf[16384];
    size_t len;
} mem_pipe;

typedef struct {
    uint8_t session[NS_TLS_SESSION_MAX];
    size_t len;
} mem_ticket;

static int mem_send(void *ud, const uint8_t *buf, size_t len)
{
    mem_pipe *p = ud;
    if (len > sizeof(p->buf) - p->len)
        return -1;
    memcpy(p->buf + p->len, buf, len);
    p->len += len;
    return 0;
}

static void mem_keep(void *ud, const uint8_t *session, size_t len)
{
    mem_ticket *t = ud;
    if (len <= sizeof(t->session)) {
        memcpy(t->session, session, len);
        t->len = len;
    }
}

static void mem_pass(mem_pipe *p, ns_tls *to)
{
    if (p->len > 0)
        assert_int_equal(ns_tls_feed(to, p->buf, p->len), NS_TLS_OK);
    p->len = 0;
}

/* One connection between the two contexts, both ends here; offers
 * `offer` (if any), keeps the ticket the server gives in *got. Returns 1
 * when it resumed, 0 for a full handshake, -1 when the handshake failed. */
static int mem_connect(ns_tls_ctx *sctx, ns_tls_ctx *cctx, const mem_ticket *offer, mem_ticket *got)
{
    static mem_pipe up, down;
    up.len = down.len = 0;
    ns_tls *srv = NULL, *cli = NULL;
    assert_int_equal(ns_tls_new(cctx, "127.0.0.1", mem_send, &up, &cli), NS_TLS_OK);
    assert_int_equal(ns_tls_new(sctx, NULL, mem_send, &down, &srv), NS_TLS_OK);
    ns_tls_on_session(cli, mem_keep, got);
    got->len = 0;
    if (offer)
        assert_int_equal(ns_tls_set_session(cli, offer->session, offer->len), NS_TLS_OK);
    bool failed = false;
    for (int step = 0; step < 6 && !failed && !(ns_tls_established(cli) && ns_tls_established(srv));
         step++) {
        int rc = ns_tls_handshake(cli);
        failed = rc != NS_TLS_OK && rc != NS_TLS_WANT_READ;
        mem_pass(&up, srv);
        rc = ns_tls_handshake(srv);
        failed |= rc != NS_TLS_OK && rc != NS_TLS_WANT_READ;
        mem_pass(&down, cli);
    }
    uint8_t scratch[64];
    size_t n = 0;
    mem_pass(&up, srv); /* the client's Finished, if still on its way */
    if (failed || ns_tls_read(srv, scratch, sizeof(scratch), &n) != NS_TLS_WANT_READ) {
        ns_tls_free(cli);
        ns_tls_free(srv);
        return -1;
    }
    mem_pass(&down, cli); /* the ticket */
    assert_int_equal(ns_tls_read(cli, scratch, sizeof(scratch), &n), NS_TLS_WANT_READ);
    assert_true(ns_tls_established(cli) && ns_tls_established(srv));
    assert_true(got->len > 0);
    bool resumed = ns_tls_resumed(cli);
    assert_int_equal(resumed, ns_tls_resumed(srv));
    ns_tls_free(cli);
    ns_tls_free(srv);
    return resumed ? 1 : 0;
}

/* The server keeps at most session_store_max sessions, dropping the oldest
 * first: its ticket then makes a full handshake; the others still resume.
 * A client context offers the sessions it decoded (the last two) and any
 * other alike. */
static void test_session_store_bounded(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char err[512];
    ns_tls_config sc = {
        .cert_file = e->server_cert, .key_file = e->server_key, .ca_file = e->ca_cert};
    ns_tls_config cc = {.cert_file = f->a.cert, .key_file = f->a.key, .ca_file = e->ca_cert};
    ns_tls_ctx *sctx = NULL, *cctx = NULL;
    assert_int_equal(ns_tls_ctx_new(NS_TLS_SERVER, &sc, &sctx, err, sizeof(err)), NS_TLS_OK);
    assert_int_equal(ns_tls_ctx_new(NS_TLS_CLIENT, &cc, &cctx, err, sizeof(err)), NS_TLS_OK);
    assert_int_equal(ns_tls_ctx_set_session_store_max(cctx, 2), NS_TLS_ERR_STATE);
    assert_int_equal(ns_tls_ctx_set_session_store_max(sctx, 2), NS_TLS_OK);
    static mem_ticket t[4], next;
    for (int i = 0; i < 3; i++)
        assert_int_equal(0, mem_connect(sctx, cctx, NULL, &t[i]));
    /* Sessions kept: no more resizing. */
    assert_int_equal(ns_tls_ctx_set_session_store_max(sctx, 8), NS_TLS_ERR_STATE);
    /* t[0] was dropped for t[2]; t[0] is no longer in the client's ring
     * either (it keeps two), so this also decodes it from its bytes. */
    assert_int_equal(0, mem_connect(sctx, cctx, &t[0], &t[3]));
    /* t[3] pushed t[1] out. */
    assert_int_equal(0, mem_connect(sctx, cctx, &t[1], &next));
    assert_int_equal(1, mem_connect(sctx, cctx, &next, &t[1]));
    assert_int_equal(1, mem_connect(sctx, cctx, &t[1], &next));
    /* Once only, even in memory. */
    assert_int_equal(0, mem_connect(sctx, cctx, &t[1], &next));
    ns_tls_ctx_free(cctx);
    ns_tls_ctx_free(sctx);
    nst_test_passed(e);
}

/* A device certificate of the test CA that expires `seconds` from now,
 * signed here (ca.sh issues certificates for days), in dir/short.{crt,key}. */
static void short_lived_cert(const nst_env *e, long seconds, char cert[NST_PATH],
                             char key[NST_PATH])
{
    char ca_key[NST_PATH];
    assert_int_equal(nst_path_join(ca_key, e->ca_dir, "ca.key"), 0);
    assert_int_equal(nst_path_join(cert, e->dir, "short.crt"), 0);
    assert_int_equal(nst_path_join(key, e->dir, "short.key"), 0);
    FILE *f = fopen(e->ca_cert, "r");
    assert_non_null(f);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    f = fopen(ca_key, "r");
    assert_non_null(f);
    EVP_PKEY *ca_pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_true(ca && ca_pkey && pkey && x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL)), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), seconds));
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                                (const unsigned char *)"resume-short-lived", -1, -1,
                                                0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(ca)), 1);
    assert_int_equal(X509_set_pubkey(x, pkey), 1);
    assert_true(X509_sign(x, ca_pkey, EVP_sha256()) > 0);
    f = fopen(cert, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(key, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(ca_pkey);
}

/* A session whose client certificate has expired since is not resumed: the
 * handshake is a full one, where the certificate is refused. */
static void test_expired_certificate_not_resumed(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char cert[NST_PATH], key[NST_PATH], err[512];
    short_lived_cert(e, 2, cert, key);
    ns_tls_config sc = {
        .cert_file = e->server_cert, .key_file = e->server_key, .ca_file = e->ca_cert};
    ns_tls_config cc = {.cert_file = cert, .key_file = key, .ca_file = e->ca_cert};
    ns_tls_ctx *sctx = NULL, *cctx = NULL;
    assert_int_equal(ns_tls_ctx_new(NS_TLS_SERVER, &sc, &sctx, err, sizeof(err)), NS_TLS_OK);
    assert_int_equal(ns_tls_ctx_new(NS_TLS_CLIENT, &cc, &cctx, err, sizeof(err)), NS_TLS_OK);
    static mem_ticket t[2], next;
    assert_int_equal(mem_connect(sctx, cctx, NULL, &t[0]), 0);
    assert_int_equal(mem_connect(sctx, cctx, NULL, &t[1]), 0);
    assert_int_equal(mem_connect(sctx, cctx, &t[0], &next), 1); /* the control */
    sleep(3);
    assert_int_equal(mem_connect(sctx, cctx, &t[1], &next), -1);
    ns_tls_ctx_free(cctx);
    ns_tls_ctx_free(sctx);
    nst_test_passed(e);
}

/* ---- what ns_tls_set_session accepts ---------------------------------------------- */

static int discard_send(void *ud, const uint8_t *buf, size_t len)
{
    (void)ud;
    (void)buf;
    (void)len;
    return 0;
}

static int offer(const nst_env *e, const nst_device *d, const char *peer, const uint8_t *s,
                 size_t len)
{
    ns_tls_config tc = {
        .cert_file = d ? d->cert : NULL, .key_file = d ? d->key : NULL, .ca_file = e->ca_cert};
    ns_tls_ctx *ctx = NULL;
    char err[512];
    assert_int_equal(ns_tls_ctx_new(NS_TLS_CLIENT, &tc, &ctx, err, sizeof(err)), NS_TLS_OK);
    ns_tls *t = NULL;
    assert_int_equal(ns_tls_new(ctx, peer, discard_send, NULL, &t), NS_TLS_OK);
    int rc = ns_tls_set_session(t, s, len);
    ns_tls_free(t);
    ns_tls_ctx_free(ctx);
    return rc;
}

/* A session is offered only to the peer name, certificate and CA it was
 * made with; anything else is ignored without harm. */
static void test_session_binding(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    store_path(e, "binding.store", path);
    ns_client *c = new_client(e, &f->a, path);
    assert_false(must_connect(e, c, &f->a));
    must_disconnect(c);
    nst_client_close(c);
    uint8_t s[NS_STORE_TLS_SESSION_MAX];
    size_t len = stored_session(e, path, s, sizeof(s));
    assert_true(len > 0);

    assert_int_equal(offer(e, &f->a, "127.0.0.1", s, len), NS_TLS_OK);
    assert_int_equal(offer(e, &f->a, "localhost", s, len), NS_TLS_SESSION_IGNORED);
    assert_int_equal(offer(e, &f->a, "127.0.0.2", s, len), NS_TLS_SESSION_IGNORED);
    assert_int_equal(offer(e, &f->b, "127.0.0.1", s, len), NS_TLS_SESSION_IGNORED);
    assert_int_equal(offer(e, NULL, "127.0.0.1", s, len), NS_TLS_SESSION_IGNORED);
    for (size_t cut = 0; cut < len; cut += len / 7 + 1)
        assert_int_equal(offer(e, &f->a, "127.0.0.1", s, cut), NS_TLS_SESSION_IGNORED);
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(offer(e, &f->a, "127.0.0.1", junk, sizeof(junk)), NS_TLS_SESSION_IGNORED);
    assert_int_equal(offer(e, &f->a, "127.0.0.1", NULL, 0), NS_TLS_SESSION_IGNORED);

    /* Another CA: a context trusting the foreign CA instead. */
    ns_tls_config tc = {
        .cert_file = f->a.cert, .key_file = f->a.key, .ca_file = e->foreign_ca_cert};
    ns_tls_ctx *ctx = NULL;
    char err[512];
    assert_int_equal(ns_tls_ctx_new(NS_TLS_CLIENT, &tc, &ctx, err, sizeof(err)), NS_TLS_OK);
    ns_tls *t = NULL;
    assert_int_equal(ns_tls_new(ctx, "127.0.0.1", discard_send, NULL, &t), NS_TLS_OK);
    assert_int_equal(ns_tls_set_session(t, s, len), NS_TLS_SESSION_IGNORED);
    ns_tls_free(t);
    ns_tls_ctx_free(ctx);

    /* Servers resume nothing the client chooses, and a handshake under way
     * takes no session. */
    tc = (ns_tls_config){
        .cert_file = e->server_cert, .key_file = e->server_key, .ca_file = e->ca_cert};
    assert_int_equal(ns_tls_ctx_new(NS_TLS_SERVER, &tc, &ctx, err, sizeof(err)), NS_TLS_OK);
    assert_int_equal(ns_tls_new(ctx, NULL, discard_send, NULL, &t), NS_TLS_OK);
    assert_int_equal(ns_tls_set_session(t, s, len), NS_TLS_ERR_STATE);
    ns_tls_free(t);
    ns_tls_ctx_free(ctx);
    tc = (ns_tls_config){.cert_file = f->a.cert, .key_file = f->a.key, .ca_file = e->ca_cert};
    assert_int_equal(ns_tls_ctx_new(NS_TLS_CLIENT, &tc, &ctx, err, sizeof(err)), NS_TLS_OK);
    assert_int_equal(ns_tls_new(ctx, "127.0.0.1", discard_send, NULL, &t), NS_TLS_OK);
    assert_int_equal(ns_tls_handshake(t), NS_TLS_WANT_READ);
    assert_int_equal(ns_tls_set_session(t, s, len), NS_TLS_ERR_STATE);
    assert_false(ns_tls_resumed(t));
    ns_tls_free(t);
    ns_tls_ctx_free(ctx);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_reconnect_resumes),
        NST_TEST(test_store_resumes_in_the_next_process),
        NST_TEST(test_session_not_offered_by_another_device),
        NST_TEST(test_session_binding),
        NST_TEST(test_revoked_device_cannot_resume),
        NST_TEST(test_ticket_resumes_once),
        NST_TEST(test_session_store_bounded),
        NST_TEST(test_expired_certificate_not_resumed),
        NST_TEST(test_other_instance_makes_full_handshake),
        NST_TEST(test_reload_voids_sessions),
    };
    return cmocka_run_group_tests_name("resume", tests, group_setup, nst_group_teardown);
}
