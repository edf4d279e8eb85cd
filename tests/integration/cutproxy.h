/* A loopback TCP proxy for tests that cuts connections.
 *
 * It listens on 127.0.0.1 (a free port), forwards every connection to
 * 127.0.0.1:target, and can cut connections the way a network does: both
 * sides are closed abruptly (TCP reset, uv_tcp_close_reset), wherever the
 * byte stream happens to be: in the TLS handshake, in the middle of a
 * frame, between frames.
 *
 * Cuts come from two sources:
 *  - nst_proxy_cut_all: every open connection, now;
 *  - a fuse given to each new connection with probability fuse_percent:
 *    the connection is cut once it has forwarded a number of bytes (both
 *    directions together) drawn uniformly from [0, max_bytes]. The bytes
 *    up to the fuse are delivered first, so the peer sees a partial
 *    message and then the reset. The draws come from the proxy's own
 *    seeded generator, one per accepted connection in accept order, so a
 *    test that opens connections one at a time gets the same fuses for
 *    the same seed.
 *
 * The proxy runs its own libuv loop on its own thread. The functions below
 * may be called from any thread (one at a time per function is not
 * required: they take a mutex) except that nst_proxy_stop must be the last
 * call. */
#ifndef NST_CUTPROXY_H
#define NST_CUTPROXY_H

#include <stdint.h>

typedef struct nst_proxy nst_proxy;

typedef struct {
    uint64_t accepted;        /* connections accepted from clients */
    uint64_t upstream_failed; /* connections whose connect to the target failed */
    uint64_t cut;             /* connections cut (reset on both sides) */
    uint64_t fused;           /* of the cut ones, by their fuse */
    uint64_t bytes;           /* bytes forwarded, both directions */
    uint64_t open;            /* connections open now */
} nst_proxy_stats;

/* Starts a proxy to 127.0.0.1:target with the generator seeded by seed.
 * Returns NULL after printing why to stderr. */
nst_proxy *nst_proxy_start(uint16_t target, uint64_t seed);
/* The port it listens on (127.0.0.1). */
uint16_t nst_proxy_port(const nst_proxy *p);
/* Fuses for connections accepted from now on: each gets one with
 * probability fuse_percent (0-100), of at most max_bytes bytes.
 * fuse_percent 0 turns fuses off. */
void nst_proxy_set_fuses(nst_proxy *p, unsigned fuse_percent, uint32_t max_bytes);
/* Cuts every open connection; returns once the proxy's thread has done it
 * (so a connection opened after this call is not affected). */
void nst_proxy_cut_all(nst_proxy *p);
void nst_proxy_get_stats(nst_proxy *p, nst_proxy_stats *out);
/* Cuts everything, stops the thread and frees the proxy. NULL is a no-op. */
void nst_proxy_stop(nst_proxy *p);

#endif
