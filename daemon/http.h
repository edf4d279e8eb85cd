/* The HTTP listener for operators (setting http_listen): GET /healthz,
 * /readyz and /metrics, served by libmicrohttpd.
 *
 *   /healthz  200 "ok" while the event loop's heartbeat (health.c, every
 *             second) is younger than stale_ms; else 503: the loop is
 *             stuck, restart the process.
 *   /readyz   200 "ready" when the loop is alive and the last readiness
 *             probe found PostgreSQL reachable with every migration
 *             applied, and the daemon is not draining; else 503 with the
 *             reason. Load balancers send clients only where it is 200.
 *   /metrics  the Prometheus text format (metrics.h).
 *
 * It runs in libmicrohttpd's own thread, not on the event loop: it reads
 * only what metrics.c keeps in atomics, so a slow or hostile HTTP client
 * never costs the loop anything, and a stuck loop is still reported (as a
 * stale heartbeat) instead of a scrape that hangs. */
#ifndef NS_HTTP_H
#define NS_HTTP_H

#include <stdint.h>

typedef struct ns_http ns_http;

typedef struct {
    const char *host;  /* numeric address or name, resolved once at start */
    uint16_t port;     /* 0: any free port (the log says which) */
    uint32_t stale_ms; /* heartbeat age from which /healthz fails */
} ns_http_options;

/* Binds, listens and starts the listener's thread. Blocking (name lookup,
 * bind): call it before the loop runs. Returns 0, or -1 after logging why. */
__attribute__((warn_unused_result)) int ns_http_start(const ns_http_options *opt, ns_http **out);

/* The port it listens on: the one given, or the one chosen for port 0. */
uint16_t ns_http_port(const ns_http *h);

/* Stops the thread (waiting for it: a request being answered finishes)
 * and closes the socket. h may be NULL. */
void ns_http_stop(ns_http *h);

#endif
