/* napsync-tls-bench: the TLS engine alone (proto/tls.c), both ends in one
 * process, in memory: CPU time per handshake of the server and of the
 * client, full and resumed, the way napsyncd and libnapsync drive it
 * (context made once, one engine per connection, the client offering the
 * last session the server gave it). Prints numbers; asserts nothing but that
 * every handshake completes and every resumption resumes.
 *
 *   napsync-tls-bench --ca CA --server-cert C --server-key K
 *                     --client-cert C --client-key K [--rounds N] [--peer NAME]
 *                     [--full-rounds N]
 *
 * --full-rounds (default: --rounds) sets the full handshakes apart, so that
 * a profiler can see resumed ones almost alone (--full-rounds 1).
 *
 * Not a test: docs/benchmarks.md ("Connections") quotes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tls.h"

#define BUF_MAX (64 * 1024)

typedef struct {
    uint8_t data[BUF_MAX];
    size_t len;
} pipe_buf;

typedef struct {
    uint8_t session[NS_TLS_SESSION_MAX];
    size_t len;
    unsigned got;
} kept_session;

static int to_pipe(void *ud, const uint8_t *buf, size_t len)
{
    pipe_buf *p = ud;
    if (len > BUF_MAX - p->len)
        return -1;
    memcpy(p->data + p->len, buf, len);
    p->len += len;
    return 0;
}

static void keep_session(void *ud, const uint8_t *session, size_t len)
{
    kept_session *k = ud;
    if (len > sizeof(k->session))
        return;
    memcpy(k->session, session, len);
    k->len = len;
    k->got++;
}

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Hands what one end wrote to the other. */
static int deliver(pipe_buf *from, ns_tls *to)
{
    if (from->len == 0)
        return 0;
    int rc = ns_tls_feed(to, from->data, from->len);
    from->len = 0;
    return rc == NS_TLS_OK ? 0 : -1;
}

/* One connection; adds each end's CPU time. Returns 1 resumed, 0 full, -1
 * on failure. */
static int connect_once(ns_tls_ctx *sctx, ns_tls_ctx *cctx, const char *peer, kept_session *k,
                        double *server_us, double *client_us)
{
    pipe_buf *c2s = calloc(1, sizeof(*c2s));
    pipe_buf *s2c = calloc(1, sizeof(*s2c));
    ns_tls *srv = NULL, *cli = NULL;
    int result = -1;
    if (c2s == NULL || s2c == NULL)
        goto out;
    double t0 = cpu_us();
    if (ns_tls_new(cctx, peer, to_pipe, c2s, &cli) != NS_TLS_OK)
        goto out;
    ns_tls_on_session(cli, keep_session, k);
    if (k->len > 0 && ns_tls_set_session(cli, k->session, k->len) != NS_TLS_OK) {
        fprintf(stderr, "the kept session cannot be offered (%d)\n",
                ns_tls_set_session(cli, k->session, k->len));
        goto out;
    }
    int crc = ns_tls_handshake(cli);
    double t1 = cpu_us();
    *client_us += t1 - t0;
    if (ns_tls_new(sctx, NULL, to_pipe, s2c, &srv) != NS_TLS_OK)
        goto out;
    *server_us += cpu_us() - t1;
    int src = NS_TLS_WANT_READ;
    for (int step = 0; step < 8 && (crc != NS_TLS_OK || src != NS_TLS_OK); step++) {
        t0 = cpu_us();
        if (deliver(c2s, srv) != 0)
            goto out;
        if (src != NS_TLS_OK)
            src = ns_tls_handshake(srv);
        t1 = cpu_us();
        *server_us += t1 - t0;
        if (deliver(s2c, cli) != 0)
            goto out;
        if (crc != NS_TLS_OK)
            crc = ns_tls_handshake(cli);
        *client_us += cpu_us() - t1;
        if ((crc != NS_TLS_OK && crc != NS_TLS_WANT_READ) ||
            (src != NS_TLS_OK && src != NS_TLS_WANT_READ)) {
            fprintf(stderr, "handshake failed: client %s; server %s\n", ns_tls_error(cli),
                    ns_tls_error(srv));
            goto out;
        }
    }
    /* The client's Finished may still be on its way, and the tickets come
     * after it: the server reads it, the client reads the tickets. */
    uint8_t scratch[256];
    size_t n = 0;
    unsigned before = k->got;
    t0 = cpu_us();
    if (deliver(c2s, srv) != 0)
        goto out;
    int r = ns_tls_read(srv, scratch, sizeof(scratch), &n);
    t1 = cpu_us();
    *server_us += t1 - t0;
    if (r != NS_TLS_WANT_READ || deliver(s2c, cli) != 0) {
        fprintf(stderr, "server: %s\n", ns_tls_error(srv));
        goto out;
    }
    r = ns_tls_read(cli, scratch, sizeof(scratch), &n);
    *client_us += cpu_us() - t1;
    if (r != NS_TLS_WANT_READ || k->got == before) {
        fprintf(stderr, "no session ticket after the handshake\n");
        goto out;
    }
    result = ns_tls_resumed(cli) ? 1 : 0;
out:
    t0 = cpu_us();
    ns_tls_free(cli);
    t1 = cpu_us();
    *client_us += t1 - t0;
    ns_tls_free(srv);
    *server_us += cpu_us() - t1;
    free(c2s);
    free(s2c);
    return result;
}

static const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return dflt;
}

int main(int argc, char **argv)
{
    const char *ca = arg(argc, argv, "--ca", NULL);
    ns_tls_config scfg = {arg(argc, argv, "--server-cert", NULL),
                          arg(argc, argv, "--server-key", NULL), ca};
    ns_tls_config ccfg = {arg(argc, argv, "--client-cert", NULL),
                          arg(argc, argv, "--client-key", NULL), ca};
    const char *peer = arg(argc, argv, "--peer", "127.0.0.1");
    long rounds = strtol(arg(argc, argv, "--rounds", "500"), NULL, 10);
    long full = strtol(arg(argc, argv, "--full-rounds", "0"), NULL, 10);
    if (full == 0)
        full = rounds;
    if (ca == NULL || scfg.cert_file == NULL || ccfg.cert_file == NULL || rounds < 1 ||
        rounds > 1000000 || full < 1 || full > 1000000) {
        fprintf(stderr,
                "usage: %s --ca CA --server-cert C --server-key K --client-cert C "
                "--client-key K [--rounds N] [--peer NAME] [--full-rounds N]\n",
                argv[0]);
        return 2;
    }
    char err[512];
    ns_tls_ctx *sctx = NULL, *cctx = NULL;
    if (ns_tls_ctx_new(NS_TLS_SERVER, &scfg, &sctx, err, sizeof(err)) != NS_TLS_OK ||
        ns_tls_ctx_new(NS_TLS_CLIENT, &ccfg, &cctx, err, sizeof(err)) != NS_TLS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    kept_session *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return 1;
    /* Warm-up: OpenSSL loads its providers and algorithms at first use. */
    double ws = 0, wc = 0;
    for (int i = 0; i < 20; i++)
        if (connect_once(sctx, cctx, peer, k, &ws, &wc) < 0)
            return 1;
    double full_s = 0, full_c = 0, res_s = 0, res_c = 0;
    for (long i = 0; i < full; i++) {
        k->len = 0; /* nothing to offer: a full handshake */
        if (connect_once(sctx, cctx, peer, k, &full_s, &full_c) != 0) {
            fprintf(stderr, "full handshake %ld failed or resumed\n", i);
            return 1;
        }
    }
    for (long i = 0; i < rounds; i++) {
        if (connect_once(sctx, cctx, peer, k, &res_s, &res_c) != 1) {
            fprintf(stderr, "resumed handshake %ld failed or was a full one\n", i);
            return 1;
        }
    }
    printf("handshakes: %ld full, %ld resumed (CPU time per handshake, µs)\n", full, rounds);
    full_s /= (double)full;
    full_c /= (double)full;
    res_s /= (double)rounds;
    res_c /= (double)rounds;
    printf("full:    server %7.1f  client %7.1f\n", full_s, full_c);
    printf("resumed: server %7.1f  client %7.1f\n", res_s, res_c);
    printf("full / resumed: server %.2f  client %.2f\n", full_s / res_s, full_c / res_c);
    free(k);
    ns_tls_ctx_free(cctx);
    ns_tls_ctx_free(sctx);
    return 0;
}
