/* The loop's side of /healthz, /readyz and the sampled gauges (http.c
 * serves them from another thread; metrics.h holds what they read).
 *
 * A uv_timer ticks every NS_HEALTH_TICK_MS on the loop: each tick is the
 * heartbeat (so a loop that stops running stops beating) and publishes the
 * gauges sampled from the server: sessions open, the feed's subscribers
 * and lag, the pool's connections by state and its queue. Every other
 * tick runs the readiness probe, one query on the pool:
 *   SELECT max(version) FROM napsync_migrations
 * ready when it answers with at least the newest migration in sql_dir;
 * not ready when it fails, is refused, or has not answered for
 * NS_HEALTH_PROBE_STALE_MS; always not ready once the server drains. */
#ifndef NS_HEALTH_H
#define NS_HEALTH_H

#include "server.h"

#define NS_HEALTH_TICK_MS        1000
#define NS_HEALTH_PROBE_STALE_MS 5000
/* /healthz fails once the heartbeat is this old: several missed ticks. */
#define NS_HEALTH_STALE_MS 5000

typedef struct ns_health ns_health;

/* Starts ticking on s->loop, probing s->db (the newest migration is read
 * from s->cfg->sql_dir now, blocking: call it before the loop runs).
 * Borrows s, whose pool and feed must outlive it (until ns_health_close).
 * Returns 0, or -1 after logging why. */
__attribute__((warn_unused_result)) int ns_health_start(ns_server *s, ns_health **out);

/* Stops ticking; the memory goes once the timer has closed and a probe
 * still running has answered (the pool's close answers it). h may be NULL. */
void ns_health_close(ns_health *h);

#endif
