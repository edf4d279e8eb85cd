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
 * Besides cuts it can stall and slow connections (for tests/faults):
 *  - link faults given to each new connection that has no fuse, drawn from
 *    the same generator after the fuse draws (so a proxy without link
 *    faults draws exactly as before): a stall stops forwarding in both
 *    directions once the connection has forwarded a number of bytes drawn
 *    from [0, stall_max_bytes], for a time drawn from [stall_min_ms,
 *    stall_max_ms], then goes on; a slow connection forwards at most
 *    slow_chunk bytes, then nothing for slow_delay_ms, and so on. Either
 *    way the connection stays open and nothing is lost: the bytes wait in
 *    the proxy (and in the kernel's buffers once it stops reading);
 *  - nst_proxy_stall_all: every open connection stalls now, for a time.
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
    uint64_t stalled;         /* stalls: by a connection's link fault, or stall_all */
    uint64_t slowed;          /* connections accepted slow */
} nst_proxy_stats;

/* Link faults for connections accepted from now on (see above). All zero:
 * none. Percentages of the connections without a fuse. */
typedef struct {
    unsigned stall_percent;
    uint32_t stall_max_bytes;
    uint32_t stall_min_ms, stall_max_ms;
    unsigned slow_percent;
    uint32_t slow_chunk; /* at least 1 */
    uint32_t slow_delay_ms;
} nst_proxy_link_faults;

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
void nst_proxy_set_link_faults(nst_proxy *p, const nst_proxy_link_faults *f);
/* Stops forwarding on every open connection for ms (a stalled connection's
 * stall starts over); returns once the proxy's thread has done it. */
void nst_proxy_stall_all(nst_proxy *p, uint32_t ms);
/* Connections accepted from now on go to 127.0.0.1:target (a daemon
 * restarted on another port); open ones keep theirs. */
void nst_proxy_set_target(nst_proxy *p, uint16_t target);
void nst_proxy_get_stats(nst_proxy *p, nst_proxy_stats *out);
/* Cuts everything, stops the thread and frees the proxy. NULL is a no-op. */
void nst_proxy_stop(nst_proxy *p);

#endif
