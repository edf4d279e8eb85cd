/* TLS posture of napsyncd, checked from outside with `openssl s_client`
 * (docs/security.md lists the cases): TLS 1.2 and 1.3 only, forward-secret
 * AEAD suites only (static RSA key exchange is tried against an RSA server
 * certificate, the only kind that could offer it), the server's suite
 * order, no compression, no renegotiation, a client certificate from the
 * deployment's CA required, which sessions resume, and revocation: a
 * revoked device's open sessions end with Error{DEVICE_REVOKED} - also when
 * the notification was lost - and its new ones are refused.
 *
 * Every s_client that completes a handshake sends a Hello frame through
 * its stdin; "served" means the Welcome came back (its principal's name is
 * in s_client's output), not merely that TLS came up. Refusals must come
 * from the server: the alert it sent is named in the output. */
#define _GNU_SOURCE /* memmem, pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <openssl/rand.h>

#include "harness.h"
#include "version.h"

#define PRINCIPAL_A "Posture Alpha"
#define PRINCIPAL_B "Posture Beta"
#define PRINCIPAL_R "Posture Revoked"
#define OUT_CAP     (64 * 1024)

typedef struct {
    nst_env *e;
    nst_device a;       /* PRINCIPAL_A of mogender */
    nst_device a2;      /* another device of PRINCIPAL_A */
    nst_device b;       /* PRINCIPAL_B of mofa */
    nst_device r1;      /* PRINCIPAL_R: revoked while connected */
    nst_device r2;      /* PRINCIPAL_R: revoked while napsyncd does not listen */
    nst_device foreign; /* from a CA napsyncd does not trust */
    bool rsa_installed; /* test_tls12_no_static_rsa replaced the server's certificate */
    char openssl[NST_PATH];
    char addr[32];
} fixture;
NST_FIXTURE_CHECK(fixture);

static int find_openssl(char out[NST_PATH])
{
    const char *path = getenv("PATH");
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        if (nst_path_join(out, dir, "openssl") == 0 && access(out, X_OK) == 0)
            return 0;
    }
    fprintf(stderr, "test_tls_posture: no openssl in PATH (Debian package openssl)\n");
    return -1;
}

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    if (find_openssl(f->openssl) != 0)
        return -1;
    static const char *const flags[] = {"--idle-timeout-ms", "600000", NULL};
    const nst_member m[] = {
        {&f->a, "posture-a", "mogender", PRINCIPAL_A, "coordinator", NULL, NULL},
        {&f->a2, "posture-a2", "mogender", PRINCIPAL_A, "coordinator", NULL, NULL},
        {&f->b, "posture-b", "mofa", PRINCIPAL_B, "implementer", NULL, NULL},
        {&f->r1, "posture-r1", "mogender", PRINCIPAL_R, "coordinator", NULL, NULL},
        {&f->r2, "posture-r2", "mogender", PRINCIPAL_R, "coordinator", NULL, NULL},
    };
    if (nst_group_start(&f->e, "tlsposture", flags, m, NST_COUNT(m)) != 0 ||
        nst_device_issue(f->e, true, "posture-foreign", &f->foreign) != 0)
        return -1;
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", (unsigned)f->e->port);
    return 0;
}

/* ---- openssl s_client ------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    int in; /* its stdin; -1 once closed */
    char out_path[NST_PATH];
    bool exited;
    int status;
    char out[OUT_CAP]; /* stdout and stderr so far */
    size_t len;
} sclient;

#define SC_MAX_ARGS 24

/* Starts `openssl s_client -connect (the daemon) -CAfile (its CA)
 * -verify_return_error ARGS...` with its stdin a pipe of ours and its
 * stdout and stderr into a file. Fails the test if it cannot. */
static void sc_start(fixture *f, sclient *c, const char *const *args)
{
    nst_env *e = f->e;
    memset(c, 0, sizeof(*c));
    c->in = -1;
    static unsigned seq;
    char name[64];
    snprintf(name, sizeof(name), "s_client-%u.out", ++seq);
    assert_int_equal(nst_path_join(c->out_path, e->dir, name), 0);
    const char *argv[SC_MAX_ARGS + 10];
    size_t n = 0;
    argv[n++] = f->openssl;
    argv[n++] = "s_client";
    argv[n++] = "-connect";
    argv[n++] = f->addr;
    argv[n++] = "-CAfile";
    argv[n++] = e->ca_cert;
    argv[n++] = "-verify_return_error";
    for (size_t i = 0; args && args[i]; i++) {
        assert_true(i < SC_MAX_ARGS);
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    int out = open(c->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int pipefd[2];
    assert_true(out >= 0);
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Async-signal-safe calls only: the test may have threads. */
        signal(SIGPIPE, SIG_DFL);
        dup2(pipefd[0], 0);
        dup2(out, 1);
        dup2(out, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[0]);
    close(out);
    c->pid = pid;
    c->in = pipefd[1];
}

static void sc_read(sclient *c)
{
    int fd = open(c->out_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = pread(fd, c->out, sizeof(c->out) - 1, 0);
    close(fd);
    c->len = n > 0 ? (size_t)n : 0;
    c->out[c->len] = '\0';
}

static bool sc_has(const sclient *c, const char *needle)
{
    return memmem(c->out, c->len, needle, strlen(needle)) != NULL;
}

static bool sc_poll_exit(sclient *c)
{
    if (!c->exited && nst_wait_pid(c->pid, 0, &c->status) == 0)
        c->exited = true;
    return c->exited;
}

/* Waits up to timeout_ms for needle in the output; false if it did not
 * come (the process exited without it, or time ran out). */
static bool sc_wait_for(sclient *c, const char *needle, int timeout_ms)
{
    uint64_t deadline = nst_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        bool done = sc_poll_exit(c);
        sc_read(c);
        if (sc_has(c, needle))
            return true;
        if (done || nst_now_ms() >= deadline)
            return false;
        nst_sleep_ms(50);
    }
}

/* Waits up to timeout_ms for the process to exit by itself. */
static bool sc_wait_exit(sclient *c, int timeout_ms)
{
    bool done = c->exited || nst_wait_pid(c->pid, timeout_ms, &c->status) == 0;
    if (done)
        c->exited = true;
    sc_read(c);
    return done;
}

static void sc_write(sclient *c, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0 && c->in >= 0) {
        ssize_t n = write(c->in, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* it exited: what it printed tells why */
        p += n;
        len -= (size_t)n;
    }
}

static void sc_send_hello(sclient *c)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(
        nst_frame_append_hello(&buf, &len, 1, NS_PROTOCOL_VERSION_MIN, NS_PROTOCOL_VERSION_MAX), 0);
    sc_write(c, buf, len);
    free(buf);
}

/* Closes its stdin (s_client then sends close_notify and exits) and waits;
 * a process that does not exit is killed. */
static void sc_end(sclient *c)
{
    if (c->in >= 0) {
        close(c->in);
        c->in = -1;
    }
    if (!sc_wait_exit(c, NST_WAIT_MS)) {
        kill(c->pid, SIGKILL);
        (void)nst_wait_pid(c->pid, NST_WAIT_MS, &c->status);
        c->exited = true;
        sc_read(c);
    }
}

static void sc_fail(const nst_env *e, sclient *c, const char *what)
{
    sc_end(c);
    fprintf(stderr, "---- s_client output (%s) ----\n%.*s\n---- end ----\n", c->out_path,
            (int)(c->len > 6000 ? 6000 : c->len), c->out);
    nst_fail(e, "%s", what);
}

/* Where a case's arguments end: a device's certificate and key, then the
 * case's own, NULL terminated. */
static void case_args(const char **argv, const nst_device *d, const char *const *extra)
{
    size_t n = 0;
    if (d) {
        argv[n++] = "-cert";
        argv[n++] = d->cert;
        argv[n++] = "-key";
        argv[n++] = d->key;
    }
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
}

/* The handshake completes, the Hello is answered with a Welcome naming
 * principal, and the output holds expect (e.g. "New, TLSv1.3, Cipher is
 * TLS_AES_256_GCM_SHA384"). c is left running, for the caller to use and
 * end (sc_end). */
static void open_served(fixture *f, sclient *c, const nst_device *d, const char *principal,
                        const char *expect, const char *const *extra)
{
    const char *argv[SC_MAX_ARGS];
    case_args(argv, d, extra);
    sc_start(f, c, argv);
    sc_send_hello(c);
    char what[256];
    if (!sc_wait_for(c, principal, NST_WAIT_MS)) {
        snprintf(what, sizeof(what), "s_client as %s: no Welcome naming \"%s\"", d->name,
                 principal);
        sc_fail(f->e, c, what);
    }
    if (expect && !sc_has(c, expect)) {
        snprintf(what, sizeof(what), "s_client as %s: served, but not with \"%s\"", d->name,
                 expect);
        sc_fail(f->e, c, what);
    }
}

static void expect_served(fixture *f, const nst_device *d, const char *principal,
                          const char *expect, const char *const *extra)
{
    sclient c;
    open_served(f, &c, d, principal, expect, extra);
    sc_end(&c);
}

/* The server refuses: s_client exits by itself, its output names the
 * alert (e.g. "SSL alert number 70"), and no Welcome came. d may be NULL
 * (no client certificate). */
static void expect_refused(fixture *f, const nst_device *d, const char *alert,
                           const char *const *extra)
{
    const char *argv[SC_MAX_ARGS];
    case_args(argv, d, extra);
    sclient c;
    sc_start(f, &c, argv);
    /* If the handshake went through after all, this would be served. */
    sc_send_hello(&c);
    char what[256];
    if (!sc_wait_exit(&c, NST_WAIT_MS)) {
        snprintf(what, sizeof(what), "s_client%s%s was not refused", d ? " as " : "",
                 d ? d->name : " without a certificate");
        sc_fail(f->e, &c, what);
    }
    if (!sc_has(&c, alert) || sc_has(&c, PRINCIPAL_A) || sc_has(&c, PRINCIPAL_B) ||
        sc_has(&c, PRINCIPAL_R)) {
        snprintf(what, sizeof(what), "s_client%s%s: expected a refusal with \"%s\"",
                 d ? " as " : "", d ? d->name : " without a certificate", alert);
        sc_fail(f->e, &c, what);
    }
    sc_end(&c);
}

/* ---- protocol versions ------------------------------------------------------------ */

static void test_tls10_and_tls11_refused(void **state)
{
    fixture *f = *state;
    /* Security level 0 lets s_client offer them at all; the alert then
     * comes from napsyncd (70: protocol_version). */
    static const char *const tls10[] = {"-tls1", "-cipher", "DEFAULT:@SECLEVEL=0", NULL};
    static const char *const tls11[] = {"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", NULL};
    expect_refused(f, &f->a, "SSL alert number 70", tls10);
    expect_refused(f, &f->a, "SSL alert number 70", tls11);
    nst_test_passed(f->e);
}

static void test_tls13_served(void **state)
{
    fixture *f = *state;
    static const char *const any[] = {"-tls1_3", NULL};
    static const char *const chacha[] = {"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256",
                                         NULL};
    static const char *const aes128[] = {"-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256",
                                         NULL};
    /* AES-CCM is not among the suites napsyncd names (CCM_8's tag is
     * short), whatever the system's OpenSSL configuration allows. */
    static const char *const ccm[] = {"-tls1_3", "-ciphersuites",
                                      "TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256", NULL};
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384", any);
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.3, Cipher is TLS_CHACHA20_POLY1305_SHA256",
                  chacha);
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256", aes128);
    expect_refused(f, &f->a, "SSL alert number 40", ccm);
    nst_test_passed(f->e);
}

/* ---- TLS 1.2 suites ------------------------------------------------------------------ */

static void test_tls12_aead_with_ecdhe_only(void **state)
{
    fixture *f = *state;
    static const char *const gcm128[] = {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256",
                                         NULL};
    static const char *const gcm256[] = {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384",
                                         NULL};
    static const char *const chacha[] = {"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305",
                                         NULL};
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256",
                  gcm128);
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384",
                  gcm256);
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.2, Cipher is ECDHE-ECDSA-CHACHA20-POLY1305",
                  chacha);

    /* Forward secret but not AEAD (CBC with HMAC): refused (40:
     * handshake_failure, no suite in common). */
    static const char *const cbc256[] = {"-tls1_2", "-cipher",
                                         "ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0", NULL};
    static const char *const cbc1[] = {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0",
                                       NULL};
    expect_refused(f, &f->a, "SSL alert number 40", cbc256);
    expect_refused(f, &f->a, "SSL alert number 40", cbc1);

    /* The server's order decides, not the client's: ChaCha20 first in the
     * offer, AES-128-GCM first in napsyncd's list. */
    static const char *const order[] = {
        "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256", NULL};
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256",
                  order);
    nst_test_passed(f->e);
}

/* An RSA server certificate signed by the test CA, for SANs 127.0.0.1 and
 * localhost: with it a server could offer static RSA key exchange (no
 * forward secrecy), which an ECDSA key cannot. */
static void issue_rsa_server_cert(fixture *f, char cert[NST_PATH], char key[NST_PATH])
{
    nst_env *e = f->e;
    char csr[NST_PATH], ext[NST_PATH], ca_key[NST_PATH], serial[40];
    assert_int_equal(nst_path_join(cert, e->dir, "server-rsa.crt"), 0);
    assert_int_equal(nst_path_join(key, e->dir, "server-rsa.key"), 0);
    assert_int_equal(nst_path_join(csr, e->dir, "server-rsa.csr"), 0);
    assert_int_equal(nst_path_join(ext, e->dir, "server-rsa.ext"), 0);
    assert_int_equal(nst_path_join(ca_key, e->ca_dir, "ca.key"), 0);
    FILE *x = fopen(ext, "w");
    assert_non_null(x);
    fprintf(x, "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
               "extendedKeyUsage = serverAuth\n"
               "keyUsage = critical, digitalSignature, keyEncipherment\n"
               "basicConstraints = critical, CA:FALSE\n");
    assert_int_equal(fclose(x), 0);
    unsigned char rnd[8];
    assert_int_equal(RAND_bytes(rnd, sizeof(rnd)), 1);
    snprintf(serial, sizeof(serial), "0x%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0] & 0x7f, rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    char out[4096];
    char *req[] = {f->openssl, "req",     "-new", "-newkey", "rsa:2048",
                   "-nodes",   "-keyout", key,    "-subj",   "/CN=napsyncd-rsa",
                   "-out",     csr,       NULL};
    if (nst_run_no_tty(req, out, sizeof(out)) != 0)
        nst_fail(e, "openssl req failed: %s", out);
    char *sign[] = {f->openssl, "x509", "-req",        "-in",  csr,     "-CA", e->ca_cert,
                    "-CAkey",   ca_key, "-set_serial", serial, "-days", "2",   "-sha256",
                    "-extfile", ext,    "-out",        cert,   NULL};
    if (nst_run_no_tty(sign, out, sizeof(out)) != 0)
        nst_fail(e, "openssl x509 -req failed: %s", out);
}

static void reload(fixture *f)
{
    size_t from = nst_log_size(f->e);
    assert_int_equal(nst_daemon_signal(f->e, SIGHUP), 0);
    if (nst_log_wait(f->e, from, "reloaded TLS", NST_WAIT_MS) != 0)
        nst_fail(f->e, "no reload logged after SIGHUP");
}

/* Where the daemon's own (ECDSA) certificate and key are kept while the
 * RSA one is installed. */
static void ecdsa_copies(const nst_env *e, char cert[NST_PATH], char key[NST_PATH])
{
    assert_int_equal(nst_path_join(cert, e->dir, "server-ecdsa.crt"), 0);
    assert_int_equal(nst_path_join(key, e->dir, "server-ecdsa.key"), 0);
}

static void test_tls12_no_static_rsa(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char rsa_cert[NST_PATH], rsa_key[NST_PATH], ecdsa_cert[NST_PATH], ecdsa_key[NST_PATH];
    issue_rsa_server_cert(f, rsa_cert, rsa_key);
    ecdsa_copies(e, ecdsa_cert, ecdsa_key);
    char *cp[] = {"/bin/cp", e->server_cert, ecdsa_cert, NULL};
    char *cpk[] = {"/bin/cp", e->server_key, ecdsa_key, NULL};
    assert_int_equal(nst_run(cp, NULL, 0), 0);
    assert_int_equal(nst_run(cpk, NULL, 0), 0);
    f->rsa_installed = true; /* from here on the teardown puts them back */
    assert_int_equal(nst_server_cert_install(e, rsa_cert, rsa_key), 0);
    reload(f);

    /* Forward secret with the RSA key: served. */
    static const char *const ecdhe[] = {"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", NULL};
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256",
                  ecdhe);
    /* AEAD, but the key exchange is the server's RSA key: a recording
     * would be decrypted by whoever later obtains that key. Refused, and
     * so is finite-field DHE (not offered, though forward secret). */
    static const char *const rsa128[] = {"-tls1_2", "-cipher", "AES128-GCM-SHA256", NULL};
    static const char *const rsa256[] = {"-tls1_2", "-cipher", "AES256-GCM-SHA384", NULL};
    static const char *const dhe[] = {"-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256", NULL};
    expect_refused(f, &f->a, "SSL alert number 40", rsa128);
    expect_refused(f, &f->a, "SSL alert number 40", rsa256);
    expect_refused(f, &f->a, "SSL alert number 40", dhe);
    nst_test_passed(e);
}

/* Puts the daemon's ECDSA certificate back, whether the test passed or not,
 * so that the next tests run against it. */
static int rsa_teardown(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    int rc = 0;
    if (f->rsa_installed) {
        char cert[NST_PATH], key[NST_PATH];
        ecdsa_copies(e, cert, key);
        size_t from = nst_log_size(e);
        if (nst_server_cert_install(e, cert, key) != 0 || nst_daemon_signal(e, SIGHUP) != 0 ||
            nst_log_wait(e, from, "reloaded TLS", NST_WAIT_MS) != 0) {
            fprintf(stderr, "test_tls_posture: could not put the ECDSA certificate back\n");
            rc = -1;
        }
        f->rsa_installed = false;
    }
    return nst_teardown(state) != 0 ? -1 : rc;
}

/* ---- compression and renegotiation --------------------------------------------------- */

/* A TLS 1.2 ClientHello for ECDHE-ECDSA-AES128-GCM-SHA256 offering the
 * given compression methods (OpenSSL's s_client on Debian cannot offer any
 * but null: it is built without zlib). */
static size_t client_hello(uint8_t *out, const uint8_t *methods, size_t nmethods)
{
    /* Extensions: supported_groups {secp256r1}, ec_point_formats
     * {uncompressed}, signature_algorithms {ecdsa_secp256r1_sha256},
     * renegotiation_info (empty). */
    static const uint8_t exts[] = {0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, 0x00,
                                   0x0b, 0x00, 0x02, 0x01, 0x00, 0x00, 0x0d, 0x00, 0x04,
                                   0x00, 0x02, 0x04, 0x03, 0xff, 0x01, 0x00, 0x01, 0x00};
    uint8_t body[256];
    size_t n = 0;
    body[n++] = 0x03; /* client_version: TLS 1.2 */
    body[n++] = 0x03;
    assert_int_equal(RAND_bytes(body + n, 32), 1);
    n += 32;
    body[n++] = 0; /* no session id */
    body[n++] = 0x00;
    body[n++] = 0x02;
    body[n++] = 0xc0; /* TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
    body[n++] = 0x2b;
    body[n++] = (uint8_t)nmethods;
    memcpy(body + n, methods, nmethods);
    n += nmethods;
    body[n++] = 0;
    body[n++] = (uint8_t)sizeof(exts);
    memcpy(body + n, exts, sizeof(exts));
    n += sizeof(exts);

    size_t m = 0;
    out[m++] = 0x16; /* handshake record, TLS 1.0 record version as clients send */
    out[m++] = 0x03;
    out[m++] = 0x01;
    out[m++] = (uint8_t)((n + 4) >> 8);
    out[m++] = (uint8_t)(n + 4);
    out[m++] = 0x01; /* client_hello */
    out[m++] = 0;
    out[m++] = (uint8_t)(n >> 8);
    out[m++] = (uint8_t)n;
    memcpy(out + m, body, n);
    return m + n;
}

static bool read_exact(int fd, uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* Sends a ClientHello with these compression methods and reads the first
 * record back: the compression method of the ServerHello (0: null), or -1
 * when the server answered with an alert or closed. */
static int server_compression(fixture *f, const uint8_t *methods, size_t nmethods)
{
    int fd = nst_tcp_connect(f->e->port);
    assert_true(fd >= 0);
    struct timeval tv = {NST_WAIT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t hello[512];
    size_t len = client_hello(hello, methods, nmethods);
    assert_int_equal(write(fd, hello, len), (ssize_t)len);
    uint8_t head[5];
    int result = -1;
    if (read_exact(fd, head, sizeof(head)) && head[0] == 0x16) {
        size_t rlen = ((size_t)head[3] << 8) | head[4];
        uint8_t *rec = malloc(rlen);
        assert_non_null(rec);
        /* server_hello: type, length(3), version(2), random(32),
         * session id (1 + n), suite(2), compression(1). */
        if (read_exact(fd, rec, rlen) && rlen > 39 && rec[0] == 0x02) {
            size_t sid = rec[38];
            if (39 + sid + 2 < rlen)
                result = rec[39 + sid + 2];
        }
        free(rec);
    }
    close(fd);
    return result;
}

static void test_no_compression(void **state)
{
    fixture *f = *state;
    static const char *const tls12[] = {"-tls1_2", NULL};
    static const char *const tls13[] = {"-tls1_3", NULL};
    expect_served(f, &f->a, PRINCIPAL_A, "Compression: NONE", tls12);
    expect_served(f, &f->a, PRINCIPAL_A, "Compression: NONE", tls13);
    /* DEFLATE (1) offered beside null (0): the server picks null. */
    static const uint8_t both[] = {1, 0};
    if (server_compression(f, both, sizeof(both)) != 0)
        nst_fail(f->e, "a ClientHello offering DEFLATE and null did not get null compression");
    /* DEFLATE alone: no handshake at all. */
    static const uint8_t deflate[] = {1};
    if (server_compression(f, deflate, sizeof(deflate)) != -1)
        nst_fail(f->e, "a ClientHello offering only DEFLATE got a ServerHello");
    nst_test_passed(f->e);
}

static void test_renegotiation_refused(void **state)
{
    fixture *f = *state;
    static const char *const tls12[] = {"-tls1_2", NULL};
    sclient c;
    open_served(f, &c, &f->a, PRINCIPAL_A, "New, TLSv1.2", tls12);
    /* s_client's "R" command: a renegotiation from the client. napsyncd
     * answers the new ClientHello with a no_renegotiation alert, which
     * s_client takes as fatal. */
    sc_write(&c, "R\n", 2);
    if (!sc_wait_for(&c, "RENEGOTIATING", NST_WAIT_MS))
        sc_fail(f->e, &c, "s_client did not try to renegotiate");
    if (!sc_wait_for(&c, "no renegotiation", NST_WAIT_MS))
        sc_fail(f->e, &c, "the renegotiation was not refused with no_renegotiation");
    sc_end(&c);
    nst_test_passed(f->e);
}

/* ---- client certificates --------------------------------------------------------------- */

static void test_client_certificate_required(void **state)
{
    fixture *f = *state;
    static const char *const tls12[] = {"-tls1_2", NULL};
    static const char *const tls13[] = {"-tls1_3", NULL};
    /* None: 116 certificate_required (TLS 1.3), 40 handshake_failure (1.2). */
    expect_refused(f, NULL, "SSL alert number 116", tls13);
    expect_refused(f, NULL, "SSL alert number 40", tls12);
    /* One from another CA: 48 unknown_ca. */
    expect_refused(f, &f->foreign, "SSL alert number 48", tls13);
    expect_refused(f, &f->foreign, "SSL alert number 48", tls12);
    nst_test_passed(f->e);
}

/* ---- session resumption ------------------------------------------------------------------ */

static void session_path(fixture *f, const char *name, char out[NST_PATH])
{
    assert_int_equal(nst_path_join(out, f->e->dir, name), 0);
}

static void test_resumption(void **state)
{
    fixture *f = *state;
    char a13[NST_PATH];
    session_path(f, "a13.sess", a13);

    /* TLS 1.3: a session of device a resumes for a (the control). */
    const char *const save13[] = {"-tls1_3", "-sess_out", a13, NULL};
    const char *const use13[] = {"-tls1_3", "-sess_in", a13, NULL};
    expect_served(f, &f->a, PRINCIPAL_A, "New, TLSv1.3", save13);
    expect_served(f, &f->a, PRINCIPAL_A, "Reused, TLSv1.3", use13);

    /* The same session offered with the certificate of b, a device of
     * another principal. A resumed handshake carries no certificate: the
     * server cannot see b's, and the session is a's (the ticket holds a's
     * certificate and the session's keys, which only a's client had). So
     * the connection is a's, resumed or not; never b's with a's session.
     * Our client library does not offer a session under another
     * certificate at all (test_resume). */
    sclient c;
    const char *const cross[] = {"-tls1_3", "-sess_in", a13, NULL};
    const char *argv[SC_MAX_ARGS];
    case_args(argv, &f->b, cross);
    sc_start(f, &c, argv);
    sc_send_hello(&c);
    if (!sc_wait_for(&c, "Posture ", NST_WAIT_MS))
        sc_fail(f->e, &c, "a's session offered with b's certificate was not answered");
    if (sc_has(&c, "Reused, TLSv1.3") ? !sc_has(&c, PRINCIPAL_A) || sc_has(&c, PRINCIPAL_B)
                                      : !sc_has(&c, PRINCIPAL_B) || sc_has(&c, PRINCIPAL_A))
        sc_fail(f->e, &c, "a connection mixed a's session with b's identity");
    sc_end(&c);

    /* TLS 1.2: nothing to resume, by ticket or by session id: a resumed
     * TLS 1.2 session skips the key exchange and reuses the earlier
     * connection's master secret. The server sends an empty session id and
     * no ticket, whether or not the client asks for one, so s_client has
     * no session to save. */
    static const char *const tls12[] = {"-tls1_2", NULL};
    static const char *const tls12_no_ticket[] = {"-tls1_2", "-no_ticket", NULL};
    open_served(f, &c, &f->a, PRINCIPAL_A, "New, TLSv1.2", tls12);
    if (!sc_has(&c, "    Session-ID: \n") || sc_has(&c, "TLS session ticket"))
        sc_fail(f->e, &c, "TLS 1.2 offered a session to resume (a session id or a ticket)");
    sc_end(&c);
    open_served(f, &c, &f->a, PRINCIPAL_A, "New, TLSv1.2", tls12_no_ticket);
    if (!sc_has(&c, "    Session-ID: \n") || sc_has(&c, "TLS session ticket"))
        sc_fail(f->e, &c, "TLS 1.2 offered a session id to resume");
    sc_end(&c);
    nst_test_passed(f->e);
}

/* ---- revocation ---------------------------------------------------------------------------- */

static void test_revocation_cuts_open_sessions(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    /* r1 twice (s_client and a raw session), and a session of another
     * device that must stay. */
    sclient c;
    static const char *const tls13[] = {"-tls1_3", NULL};
    open_served(f, &c, &f->r1, PRINCIPAL_R, NULL, tls13);
    nst_raw raw, other;
    nst_must_raw_auth(e, &raw, &f->r1, 1);
    nst_must_raw_auth(e, &other, &f->a2, 1);

    size_t from = nst_log_size(e);
    assert_int_equal(nst_device_revoke(e, f->r1.name), 0);
    /* Within NST_WAIT_MS: generous, never a measurement. */
    nst_expect_fatal_error(e, &raw, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED);
    if (!sc_wait_exit(&c, NST_WAIT_MS))
        sc_fail(e, &c, "the s_client session of the revoked device is still open");
    if (!sc_has(&c, "has been revoked"))
        sc_fail(e, &c, "the s_client session ended without the DEVICE_REVOKED message");
    sc_end(&c);
    if (nst_log_wait(e, from, "access changed for device:", NST_WAIT_MS) != 0)
        nst_fail(e, "napsyncd did not log the notification");
    nst_must_raw_ping(e, &other, 2);

    /* New connections of r1: TLS comes up (its certificate is fine), the
     * Hello is refused. */
    static const char *const tls12[] = {"-tls1_2", NULL};
    const char *argv[SC_MAX_ARGS];
    case_args(argv, &f->r1, tls12);
    sc_start(f, &c, argv);
    sc_send_hello(&c);
    if (!sc_wait_exit(&c, NST_WAIT_MS) || !sc_has(&c, "has been revoked") ||
        sc_has(&c, PRINCIPAL_R))
        sc_fail(e, &c, "a new session of the revoked device was not refused");
    sc_end(&c);
    nst_raw again;
    nst_must_raw_tls(e, &again, &f->r1);
    assert_int_equal(
        nst_raw_send_hello(&again, 7, NS_PROTOCOL_VERSION_MIN, NS_PROTOCOL_VERSION_MAX), 0);
    nst_expect_fatal_error(e, &again, 7, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED);
    nst_raw_close(&again);
    nst_raw_close(&raw);
    nst_raw_close(&other);
    nst_test_passed(e);
}

/* One statement on the test database as the cluster's superuser, on a
 * connection the caller holds. */
static void admin_exec(const nst_env *e, PGconn *pg, const char *sql, int nparams,
                       const char *const *params, char *value, size_t cap)
{
    PGresult *res = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
        PQclear(res);
        nst_fail(e, "SQL failed: %s: %s", sql, msg);
    }
    if (value)
        snprintf(value, cap, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
}

static PGconn *admin_connect(const nst_env *e, const char *dbname)
{
    const char *keys[] = {"host", "port", "user", "dbname", "connect_timeout", NULL};
    const char *vals[] = {e->pg.host, e->pg.port, e->pg.user, dbname, "10", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 0);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK)
        nst_fail(e, "cannot connect to database %s: %s", dbname,
                 pg ? PQerrorMessage(pg) : "out of memory");
    return pg;
}

/* ALTER DATABASE (the test's) ALLOW_CONNECTIONS on or off. */
static void allow_connections(const nst_env *e, PGconn *pg, bool on)
{
    char *ident = PQescapeIdentifier(pg, e->dbname, strlen(e->dbname));
    assert_non_null(ident);
    char sql[256];
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS %s", ident,
             on ? "true" : "false");
    PQfreemem(ident);
    admin_exec(e, pg, sql, 0, NULL, NULL, 0);
}

/* A revocation committed while napsyncd's LISTEN connection is down sends
 * a notification nobody hears: once LISTEN is back, every open session is
 * checked. The database refuses new connections while napsyncd's are
 * ended and the device is revoked, so napsyncd cannot be listening again
 * in time to hear it. */
static void test_revocation_missed_notification(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw raw, other;
    nst_must_raw_auth(e, &raw, &f->r2, 1);
    nst_must_raw_auth(e, &other, &f->b, 1);

    /* One connection to the test database (to revoke on), one to the
     * maintenance database (PostgreSQL refuses to lock out the database a
     * command runs in). */
    PGconn *db = admin_connect(e, e->dbname);
    PGconn *maint = admin_connect(e, "postgres");
    char id[64], heard[96], mine[16];
    const char *name[] = {f->r2.name};
    admin_exec(e, db, "SELECT id FROM devices WHERE name = $1", 1, name, id, sizeof(id));
    snprintf(heard, sizeof(heard), "access changed for device:%s", id);
    snprintf(mine, sizeof(mine), "%d", PQbackendPID(db));
    size_t from = nst_log_size(e);
    allow_connections(e, maint, false);
    char killed[32];
    const char *kill_params[] = {e->dbname, mine};
    /* The CTE is materialised first: PostgreSQL may evaluate a WHERE's
     * conditions in any order, and pg_terminate_backend must only ever see
     * napsyncd's connections (other tests share the cluster). */
    admin_exec(e, maint,
               "WITH theirs AS MATERIALIZED ("
               "  SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> $2::int)"
               " SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 20000)) FROM theirs",
               2, kill_params, killed, sizeof(killed));
    const char *params[] = {f->r2.name, "revoked by test_tls_posture, unheard"};
    char found[8];
    admin_exec(e, db, "SELECT napsync_revoke_device($1, $2)", 2, params, found, sizeof(found));
    allow_connections(e, maint, true);
    PQfinish(db);
    PQfinish(maint);
    if (atoi(killed) < 1 || strcmp(found, "t") != 0)
        nst_fail(e, "ended %s connection(s) of napsyncd; revoked: %s", killed, found);

    nst_expect_fatal_error(e, &raw, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED);
    if (nst_log_wait(e, from, "listening for revocations: checking", NST_WAIT_MS) != 0)
        nst_fail(e, "napsyncd did not check its sessions when LISTEN came back");
    if (nst_log_has_line(e, (const char *const[]){heard, NULL}))
        nst_fail(e, "the notification was heard after all: this test checks nothing");
    nst_must_raw_ping(e, &other, 2);
    nst_raw_close(&raw);
    nst_raw_close(&other);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_tls10_and_tls11_refused),
        NST_TEST(test_tls13_served),
        NST_TEST(test_tls12_aead_with_ecdhe_only),
        cmocka_unit_test_setup_teardown(test_tls12_no_static_rsa, nst_setup, rsa_teardown),
        NST_TEST(test_no_compression),
        NST_TEST(test_renegotiation_refused),
        NST_TEST(test_client_certificate_required),
        NST_TEST(test_resumption),
        NST_TEST(test_revocation_cuts_open_sessions),
        NST_TEST(test_revocation_missed_notification),
    };
    return cmocka_run_group_tests_name("tls_posture", tests, group_setup, nst_group_teardown);
}
