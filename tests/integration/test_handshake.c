/* Handshake: who may connect, over which TLS, and what Hello/Welcome say.
 *
 * One napsyncd for the whole group, with a device of each kind: registered,
 * registered then revoked, issued by the right CA but never registered, and
 * issued by a foreign CA. A session opened in the group setup must keep
 * working through every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/pem.h>

#include "harness.h"

#define MAX_FRAME 65536
#define ORG_NAME  "Ministry of Gender Equality and Social Protection"
#define PRINCIPAL "Amina Diallo"

typedef struct {
    nst_env *e;
    nst_device coord;    /* registered: the demo ministry's coordinator */
    nst_device revoked;  /* registered, then revoked */
    nst_device stranger; /* issued by the daemon's CA, never registered */
    nst_device foreign;  /* issued by a CA the daemon does not trust */
    ns_client *other;    /* an authenticated session that must outlive every test */
} fixture;
NST_FIXTURE_CHECK(fixture);

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    static const char *const flags[] = {"--max-frame-size", "65536", "--idle-timeout-ms", "600000",
                                        NULL};
    const nst_member m[] = {
        {&f->coord, "coord-laptop", "mogender", PRINCIPAL, "coordinator", NULL, NULL},
        {&f->revoked, "coord-old-phone", "mogender", PRINCIPAL, "coordinator", NULL, NULL},
        {&f->stranger, "stranger-laptop", NULL, NULL, NULL, NULL, NULL},
    };
    if (nst_group_start(&f->e, "handshake", flags, m, NST_COUNT(m)) != 0)
        return -1;
    nst_env *e = f->e;
    if (nst_device_issue(e, true, "foreign-laptop", &f->foreign) != 0 ||
        nst_device_revoke(e, f->revoked.name) != 0)
        return -1;
    ns_error err;
    int rc = nst_client_connect(e, f->coord.cert, f->coord.key, e->ca_cert, &f->other, &err);
    if (rc != NS_OK) {
        fprintf(stderr, "group setup: the long-lived session could not connect: %s: %s\n",
                ns_status_name((ns_status)rc), err.message);
        nst_log_tail(e, 40);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f != NULL)
        nst_client_close(f->other);
    return nst_group_teardown(state);
}

/* The long-lived session still answers, and a new device session authenticates. */
static void still_serving(fixture *f)
{
    nst_must_ping(f->e, f->other);
    ns_client *c = nst_must_connect(f->e, &f->coord);
    nst_must_ping(f->e, c);
    nst_client_close(c);
}

/* A refused connection through libnapsync: status and server code. */
static void expect_refused(fixture *f, const char *cert, const char *key, const char *ca,
                           ns_status want, int want_code, ns_error *err)
{
    ns_client *c = NULL;
    int rc = nst_client_connect(f->e, cert, key, ca, &c, err);
    if (rc == NS_OK) {
        nst_client_close(c);
        nst_fail(f->e, "expected %s, but the connection was accepted", ns_status_name(want));
    }
    if (rc != (int)want || err->status != want)
        nst_fail(f->e, "expected %s, got %s (returned %d, err.status %d): %s", ns_status_name(want),
                 ns_status_name((ns_status)rc), rc, err->status, err->message);
    if (want_code && err->server_code != want_code)
        nst_fail(f->e, "expected server code %d, got %d: %s", want_code, err->server_code,
                 err->message);
    if (err->message[0] == '\0')
        nst_fail(f->e, "%s came without a message", ns_status_name(want));
}

static void test_welcome_tells_identity(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ns_client *c = nst_must_connect(e, &f->coord);
    const ns_identity *id = ns_client_identity(c);
    assert_non_null(id);
    assert_string_equal(id->organisation_name, ORG_NAME);
    assert_string_equal(id->organisation_kind, "ministry");
    assert_string_equal(id->country, "ZZ");
    assert_string_equal(id->principal_name, PRINCIPAL);
    assert_string_equal(id->device_name, f->coord.name);
    assert_int_equal(id->nroles, 1);
    assert_string_equal(id->roles[0], "coordinator");
    assert_int_equal(id->protocol_version, 1);
    assert_int_equal(id->max_frame_size, MAX_FRAME);
    assert_int_equal(id->idle_timeout_ms, 600000);
    assert_string_equal(id->server_name, "napsyncd");
    assert_int_equal(strlen(id->organisation_id), 36); /* UUIDs */
    assert_int_equal(strlen(id->principal_id), 36);
    assert_int_equal(strlen(id->device_id), 36);
    assert_true(id->session_id[0] != '\0');

    /* The identity must be the database's, not a guess: compare ids. */
    char want[64];
    const char *params[] = {f->coord.name};
    assert_int_equal(
        nst_db_exec(e, "SELECT id FROM devices WHERE name = $1", 1, params, want, sizeof(want)), 0);
    assert_string_equal(id->device_id, want);

    uint64_t rtt = 0;
    ns_error err;
    assert_int_equal(ns_client_ping_wait(c, &rtt, &err), NS_OK);
    assert_true(rtt > 0);

    /* libnapsync negotiates TLS 1.3: the daemon logs the version per session. */
    char session[64];
    snprintf(session, sizeof(session), "session=%s ", id->session_id);
    const char *const tls13[] = {session, "TLS established (TLSv1.3)", NULL};
    if (!nst_log_has_line(e, tls13))
        nst_fail(e, "no 'TLS established (TLSv1.3)' log line for session %s", id->session_id);
    nst_client_close(c);
    nst_test_passed(e);
}

static void test_refused_without_client_certificate(void **state)
{
    fixture *f = *state;
    ns_error err;
    expect_refused(f, NULL, NULL, f->e->ca_cert, NS_ERR_CERT_REFUSED, 0, &err);
    still_serving(f);
    nst_test_passed(f->e);
}

static void test_refused_foreign_ca(void **state)
{
    fixture *f = *state;
    ns_error err;
    expect_refused(f, f->foreign.cert, f->foreign.key, f->e->ca_cert, NS_ERR_CERT_REFUSED, 0, &err);
    still_serving(f);
    nst_test_passed(f->e);
}

static void test_refused_unknown_device(void **state)
{
    fixture *f = *state;
    ns_error err;
    expect_refused(f, f->stranger.cert, f->stranger.key, f->e->ca_cert, NS_ERR_UNKNOWN_DEVICE,
                   NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_DEVICE, &err);
    /* The administrator needs the fingerprint to register the device. */
    if (strstr(err.message, f->stranger.fp) == NULL)
        nst_fail(f->e, "the message does not name the fingerprint %s: %s", f->stranger.fp,
                 err.message);
    still_serving(f);
    nst_test_passed(f->e);
}

static void test_refused_revoked_device(void **state)
{
    fixture *f = *state;
    ns_error err;
    expect_refused(f, f->revoked.cert, f->revoked.key, f->e->ca_cert, NS_ERR_DEVICE_REVOKED,
                   NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED, &err);
    still_serving(f);
    nst_test_passed(f->e);
}

static void test_client_refuses_wrong_server_ca(void **state)
{
    fixture *f = *state;
    ns_error err;
    expect_refused(f, f->coord.cert, f->coord.key, f->e->foreign_ca_cert, NS_ERR_SERVER_CERT, 0,
                   &err);
    still_serving(f);
    nst_test_passed(f->e);
}

static void test_tls11_refused(void **state)
{
    fixture *f = *state;
    nst_raw r;
    nst_raw_opts o = {.cert = f->coord.cert,
                      .key = f->coord.key,
                      .ca = f->e->ca_cert,
                      .min_version = TLS1_VERSION,
                      .max_version = TLS1_1_VERSION,
                      .legacy = true};
    int rc = nst_raw_connect(&r, f->e->port, &o);
    if (rc == 0) {
        const char *v = SSL_get_version(r.ssl);
        nst_raw_close(&r);
        nst_fail(f->e, "a TLS 1.1 client completed a handshake (%s)", v);
    }
    /* The refusal must be the server's: the client really offered 1.1 ... */
    if (r.hello_version != TLS1_1_VERSION)
        nst_fail(f->e, "the client did not send a TLS 1.1 ClientHello (version 0x%04x): %s",
                 r.hello_version, r.error);
    /* ... and the server said why. */
    if (r.alert_received != SSL_AD_PROTOCOL_VERSION)
        nst_fail(f->e, "expected a protocol_version alert from the server, got %d: %s",
                 r.alert_received, r.error);
    still_serving(f);
    nst_test_passed(f->e);
}

static void test_tls12_modern_suite(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_raw_opts o = {.cert = f->coord.cert,
                      .key = f->coord.key,
                      .ca = e->ca_cert,
                      .max_version = TLS1_2_VERSION};
    if (nst_raw_connect(&r, e->port, &o) != 0)
        nst_fail(e, "TLS 1.2 handshake failed: %s", r.error);
    assert_int_equal(SSL_version(r.ssl), TLS1_2_VERSION);
    const SSL_CIPHER *cipher = SSL_get_current_cipher(r.ssl);
    assert_non_null(cipher);
    if (SSL_CIPHER_get_kx_nid(cipher) != NID_kx_ecdhe || SSL_CIPHER_is_aead(cipher) != 1)
        nst_fail(e, "TLS 1.2 negotiated %s, not an ECDHE AEAD suite", SSL_CIPHER_get_name(cipher));
    /* The protocol works over it too. */
    assert_int_equal(nst_raw_send_hello(&r, 7, 1, 1), 0);
    nst_expect_welcome(e, &r, 7, &f->coord);
    nst_must_raw_ping(e, &r, 8);
    nst_raw_close(&r);

    /* In TLS 1.2 the client certificate is checked inside the handshake. */
    nst_raw_opts anon = {.ca = e->ca_cert, .max_version = TLS1_2_VERSION};
    if (nst_raw_connect(&r, e->port, &anon) == 0) {
        nst_raw_close(&r);
        nst_fail(e, "a TLS 1.2 handshake without a client certificate succeeded");
    }
    still_serving(f);
    nst_test_passed(e);
}

static void test_unsupported_version(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_must_raw_tls(e, &r, &f->coord);
    assert_int_equal(nst_raw_send_hello(&r, 5, 7, 9), 0);
    nst_expect_fatal_error(e, &r, 5, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED_VERSION);
    nst_raw_close(&r);
    still_serving(f);
    nst_test_passed(e);
}

/* A compressed frame from a client that offered no compression (the raw
 * Hello offers none): refused as malformed, and the Welcome says none. */
static void test_compressed_frame_not_agreed(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_must_raw_tls(e, &r, &f->coord);
    assert_int_equal(nst_raw_send_hello(&r, 1, 1, 1), 0);
    ns_envelope *w = nst_expect_frame(e, &r, NAPSYNC__V1__ENVELOPE__BODY_WELCOME);
    assert_int_equal(w->welcome->compression, NAPSYNC__V1__COMPRESSION__COMPRESSION_NONE);
    ns_envelope_free(w);
    static const uint8_t junk[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x00};
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = 2;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_ZSTD;
    env.zstd.data = (uint8_t *)junk;
    env.zstd.len = sizeof(junk);
    assert_int_equal(nst_raw_send_env(&r, &env), 0);
    nst_expect_fatal_error(e, &r, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
    nst_raw_close(&r);
    still_serving(f);
    nst_test_passed(e);
}

static void test_ping_before_hello(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_must_raw_tls(e, &r, &f->coord);
    assert_int_equal(nst_raw_send_ping(&r, 9, "x", 1), 0);
    nst_expect_fatal_error(e, &r, 9, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED);
    nst_raw_close(&r);
    still_serving(f);
    nst_test_passed(e);
}

static void test_request_ids_echoed(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_must_raw_tls(e, &r, &f->coord);
    assert_int_equal(nst_raw_send_hello(&r, 42, 1, 1), 0);
    ns_envelope *env = nst_expect_frame(e, &r, NAPSYNC__V1__ENVELOPE__BODY_WELCOME);
    assert_int_equal(env->request_id, 42);
    assert_int_equal(env->welcome->version, 1);
    assert_int_equal(env->welcome->max_frame_size, MAX_FRAME);
    assert_int_equal(env->welcome->idle_timeout_ms, 600000);
    assert_non_null(env->welcome->organisation);
    assert_string_equal(env->welcome->organisation->name, ORG_NAME);
    ns_envelope_free(env);

    /* Binary payload, with a NUL and high bytes, echoed byte for byte. */
    static const uint8_t payload[] = {'p', 0x00, 0xff, 0x80, '\n', 'q'};
    assert_int_equal(nst_raw_send_ping(&r, 43, payload, sizeof(payload)), 0);
    nst_expect_pong(e, &r, 43, payload, sizeof(payload));

    /* A large request id survives the round trip as well. */
    nst_must_raw_ping(e, &r, UINT64_MAX - 1);

    /* A second Hello on an authenticated session is a protocol violation. */
    assert_int_equal(nst_raw_send_hello(&r, 44, 1, 1), 0);
    nst_expect_fatal_error(e, &r, 44, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE);
    nst_raw_close(&r);
    still_serving(f);
    nst_test_passed(e);
}

/* Every message before Hello, even one with no body and an Error, is
 * refused with HELLO_REQUIRED. */
static void test_anything_before_hello_refused(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_must_raw_tls(e, &r, &f->coord);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(nst_frame_append(&buf, &len, NULL, 0), 0);
    nst_must_raw_write(e, &r, buf, len);
    free(buf);
    nst_expect_fatal_error(e, &r, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED);
    nst_raw_close(&r);

    nst_must_raw_tls(e, &r, &f->coord);
    Napsync__V1__Error err = NAPSYNC__V1__ERROR__INIT;
    err.code = NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL;
    err.message = "a client in trouble";
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = 3;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_ERROR;
    env.error = &err;
    assert_int_equal(nst_raw_send_env(&r, &env), 0);
    nst_expect_fatal_error(e, &r, 3, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED);
    nst_raw_close(&r);
    still_serving(f);
    nst_test_passed(e);
}

/* s = n copies of the UTF-8 character ch. */
static void repeat_char(char *s, size_t cap, const char *ch, int n)
{
    size_t len = strlen(ch);
    assert_true((size_t)n * len < cap);
    for (int i = 0; i < n; i++)
        memcpy(s + (size_t)i * len, ch, len);
    s[(size_t)n * len] = '\0';
}

/* Names may have 200 characters, which in UTF-8 can take 800 bytes. They
 * must reach the device whole: cut anywhere, a name would at best be
 * wrong, and cut inside a character it would make the client refuse the
 * Welcome, so that the device could never connect. */
static void test_longest_names_arrive_whole(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char principal[401], organisation[801];
    repeat_char(principal, sizeof(principal), "\xd0\xb6", 200);               /* ж: 2 bytes */
    repeat_char(organisation, sizeof(organisation), "\xf0\x9d\x84\x9e", 200); /* 𝄞: 4 bytes */
    const char *params[] = {organisation};
    if (nst_db_exec(e,
                    "INSERT INTO organisations (code, name, kind, country) "
                    "VALUES ('long-names', $1, 'agency', 'ZZ')",
                    1, params, NULL, 0) != 0)
        nst_fail(e, "cannot create an organisation with a 200-character name");
    nst_device d;
    if (nst_device_issue(e, false, "long-names-laptop", &d) != 0 ||
        nst_device_register(e, "long-names", principal, "observer", &d) != 0)
        nst_fail(e, "cannot register a device for a 200-character principal name");

    ns_client *c = nst_must_connect(e, &d);
    const ns_identity *id = ns_client_identity(c);
    assert_non_null(id);
    /* libnapsync offers compression and napsyncd agrees: the Welcome,
     * full of long names, is the last plain frame. */
    assert_int_equal(id->compressed, 1);
    assert_string_equal(id->principal_name, principal);
    assert_string_equal(id->organisation_name, organisation);
    nst_must_ping(e, c);
    nst_client_close(c);

    /* And what `napsync whoami` shows a person. */
    char cli[NST_PATH], server[32], out[4096];
    const char *build = getenv("NS_BUILD_DIR");
    assert_non_null(build);
    assert_int_equal(nst_path_join(cli, build, "napsync"), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%u", e->port);
    char *argv[] = {cli,    "--server", server, "--ca",   e->ca_cert, "--cert",
                    d.cert, "--key",    d.key,  "whoami", NULL};
    int rc = nst_run_no_tty(argv, out, sizeof(out));
    if (rc != 0)
        nst_fail(e, "napsync whoami exited with %d: %s", rc, out);
    char want[1024];
    snprintf(want, sizeof(want), "principal:    %s\n", principal);
    if (strstr(out, want) == NULL)
        nst_fail(e, "napsync whoami does not show the whole principal name: %s", out);
    snprintf(want, sizeof(want), "organisation: %s (", organisation);
    if (strstr(out, want) == NULL)
        nst_fail(e, "napsync whoami does not show the whole organisation name: %s", out);
    if (strstr(out, "compression:  zstd\n") == NULL)
        nst_fail(e, "napsync whoami does not say its frames are compressed: %s", out);
    still_serving(f);
    nst_test_passed(e);
}

/* Writes the daemon's key, encrypted with a passphrase, to path; traditional
 * selects the legacy PEM encryption (Proc-Type header) over PKCS#8. */
static int write_encrypted_key(const nst_env *e, const char *path, bool traditional)
{
    BIO *in = BIO_new_file(e->server_key, "r");
    EVP_PKEY *key = in ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL) : NULL;
    BIO_free(in);
    BIO *out = key ? BIO_new_file(path, "w") : NULL;
    int ok = 0;
    if (out) {
        static unsigned char pass[] = "correct horse";
        int len = (int)sizeof(pass) - 1;
        ok = traditional
                 ? PEM_write_bio_PrivateKey_traditional(out, key, EVP_aes_256_cbc(), pass, len,
                                                        NULL, NULL)
                 : PEM_write_bio_PrivateKey(out, key, EVP_aes_256_cbc(), pass, len, NULL, NULL);
        BIO_free(out);
    }
    EVP_PKEY_free(key);
    return ok == 1 ? 0 : -1;
}

/* An encrypted private key is refused with words that say so, and nothing
 * ever asks for its passphrase (a daemon reloading on SIGHUP must not wait
 * on a terminal). The check runs without a terminal, so a prompt would
 * fail rather than hang. */
static void test_encrypted_key_refused(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    for (int traditional = 0; traditional <= 1; traditional++) {
        char key[NST_PATH], out[4096];
        assert_int_equal(nst_path_join(key, e->dir, traditional ? "enc-trad.key" : "enc.key"), 0);
        if (write_encrypted_key(e, key, traditional) != 0)
            nst_fail(e, "cannot write an encrypted copy of %s", e->server_key);
        char *argv[] = {
            e->napsyncd, "--check-config", "--tls-cert", e->server_cert,  "--tls-key", key,
            "--tls-ca",  e->ca_cert,       "--database", "dbname=unused", NULL};
        int rc = nst_run_no_tty(argv, out, sizeof(out));
        if (rc == 0)
            nst_fail(e, "napsyncd accepted an encrypted key: %s", out);
        if (strstr(out, "encrypted private keys are not supported") == NULL)
            nst_fail(e, "the refusal of an encrypted key does not say why (exit %d): %s", rc, out);
    }
    nst_test_passed(e);
}

/* Both ends ask TCP to probe a peer that has been silent for 60 s, so one
 * that vanished (power loss, a NAT that forgot the connection) is found
 * even when the daemon's idle timeout is 0. */
static void test_tcp_keepalive_on_both_ends(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    uint16_t before[16], after[16];
    int nbefore = nst_own_tcp_ports(e->port, before, 16);
    ns_client *c = nst_must_connect(e, &f->coord);
    int nafter = nst_own_tcp_ports(e->port, after, 16);
    if (nbefore < 0 || nafter != nbefore + 1 || nafter > 16)
        nst_fail(e, "cannot find the client's socket (%d sockets before, %d after)", nbefore,
                 nafter);
    uint16_t port = 0;
    for (int i = 0; i < nafter && port == 0; i++) {
        bool old = false;
        for (int j = 0; j < nbefore; j++)
            old = old || before[j] == after[i];
        if (!old)
            port = after[i];
    }
    assert_true(port != 0);
    int due = -1;
    if (nst_tcp_keepalive_due(port, e->port, NST_WAIT_MS, &due) != 0 || due > 60)
        nst_fail(e, "libnapsync's socket has no 60 s keepalive (due in %d s)", due);
    due = -1;
    if (nst_tcp_keepalive_due(e->port, port, NST_WAIT_MS, &due) != 0 || due > 60)
        nst_fail(e, "napsyncd's socket has no 60 s keepalive (due in %d s)", due);
    nst_must_ping(e, c);
    nst_client_close(c);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_welcome_tells_identity),
        /* Refusals, through libnapsync and over raw TLS. */
        NST_TEST(test_refused_without_client_certificate),
        NST_TEST(test_refused_foreign_ca),
        NST_TEST(test_refused_unknown_device),
        NST_TEST(test_refused_revoked_device),
        NST_TEST(test_client_refuses_wrong_server_ca),
        NST_TEST(test_tls11_refused),
        /* Sessions that speak the protocol frame by frame. */
        NST_TEST(test_tls12_modern_suite),
        NST_TEST(test_unsupported_version),
        NST_TEST(test_ping_before_hello),
        NST_TEST(test_anything_before_hello_refused),
        NST_TEST(test_request_ids_echoed),
        NST_TEST(test_compressed_frame_not_agreed),
        NST_TEST(test_longest_names_arrive_whole),
        NST_TEST(test_encrypted_key_refused),
        NST_TEST(test_tcp_keepalive_on_both_ends),
    };
    return cmocka_run_group_tests_name("integration: handshake", tests, group_setup,
                                       group_teardown);
}
