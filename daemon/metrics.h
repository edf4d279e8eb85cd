/* napsyncd's counters, gauges and histograms, and their Prometheus text
 * exposition (docs/operations.md, "Health and metrics", lists every one).
 *
 * The registry is process-wide and static: nothing to create or free, and
 * every metric is declared once, in metrics.c, with its name, type and
 * help. Code that decides something records it with a one-line call
 * (ns_metrics_inc(NS_METRIC_FRAMES_IN), ns_metrics_limit_hit("max_sessions")).
 *
 * Threads: the loop records; the HTTP listener's own thread (http.c)
 * renders and reads the health values. Every value is a C11 atomic,
 * recorded with relaxed ordering (an atomic add, no lock), so a scrape
 * never waits for the loop nor the loop for a scrape, and reads each value
 * whole. Gauges and readiness are what the loop last published (health.c
 * publishes the sampled ones every second). A histogram's buckets are read
 * one by one during a scrape: _count is the sum of the buckets as read, so
 * the cumulative series is always consistent; _sum may include an
 * observation the buckets do not yet show. The first use of a label value
 * (ns_metrics_count) takes a mutex that only writers share. */
#ifndef NS_METRICS_H
#define NS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    NS_METRIC_SESSIONS_ACCEPTED, /* connections accepted (a session each) */
    NS_METRIC_FRAMES_IN,
    NS_METRIC_FRAMES_OUT,
    NS_METRIC_BYTES_IN, /* frame bytes: 4-byte header + payload, before TLS */
    NS_METRIC_BYTES_OUT,
    NS_METRIC_MUTATIONS_APPLIED, /* answers decided now (not replays, not dry runs) */
    NS_METRIC_MUTATIONS_MERGED,
    NS_METRIC_MUTATIONS_CONFLICT,
    NS_METRIC_MUTATIONS_REJECTED,
    NS_METRIC_MUTATION_REPLAYS,       /* a re-sent mutation id answered from sync_mutations */
    NS_METRIC_DB_CONNECTION_FAILURES, /* pool and LISTEN connections lost or not made */
    NS_METRIC_DB_NOTIFICATIONS,       /* NOTIFYs received on the LISTEN connection */
    NS_METRIC_NCOUNTERS
} ns_metrics_counter;

typedef enum {
    NS_GAUGE_SESSIONS_OPEN,
    NS_GAUGE_SUBSCRIBERS,
    NS_GAUGE_SUBSCRIBERS_BEHIND, /* subscribers whose cursor is below the feed head */
    NS_GAUGE_FEED_HEAD,          /* the newest feed position this daemon heard of */
    NS_GAUGE_FEED_LAG_MAX,       /* feed positions the furthest subscriber is behind */
    NS_GAUGE_DB_BACKOFF,         /* pool connections by state */
    NS_GAUGE_DB_CONNECTING,
    NS_GAUGE_DB_IDLE,
    NS_GAUGE_DB_BUSY,
    NS_GAUGE_DB_TXN,
    NS_GAUGE_DB_QUEUED, /* queries and transactions waiting for a connection */
    NS_GAUGE_DB_LISTENER_UP,
    NS_METRIC_NGAUGES
} ns_metrics_gauge;

typedef enum {
    NS_HIST_PUSH,     /* Push received to PushResult sent */
    NS_HIST_PULL,     /* Pull received to ChangePage sent */
    NS_HIST_DB_QUERY, /* a plain query: queued to its result, waiting included */
    NS_HIST_DB_TXN,   /* a transaction: begin requested to COMMIT/ROLLBACK answered */
    NS_METRIC_NHISTOGRAMS
} ns_metrics_histogram;

/* Counters under one label whose values are not known in advance. */
typedef enum {
    NS_FAMILY_HANDSHAKES,  /* result: ok, or why a connection never got to Welcome */
    NS_FAMILY_REJECTIONS,  /* reason: a rejected mutation's error code */
    NS_FAMILY_LIMITS,      /* limit: see ns_metrics_limit_hit */
    NS_FAMILY_ERRORS_SENT, /* code: Error frames sent to clients */
    NS_METRIC_NFAMILIES
} ns_metrics_family;

/* Label values of a family: this many distinct values at most; more are
 * counted under "other", as are values that are not 1 to
 * NS_METRICS_LABEL_MAX characters of [A-Za-z0-9_] (upper case is folded to
 * lower case). The values come from the code, never from a client. */
#define NS_METRICS_FAMILY_SLOTS 48
#define NS_METRICS_LABEL_MAX    40

void ns_metrics_add(ns_metrics_counter c, uint64_t n);
void ns_metrics_inc(ns_metrics_counter c);
void ns_metrics_set(ns_metrics_gauge g, int64_t v);
/* One observation of elapsed_ns nanoseconds. Every histogram has the
 * same buckets, from 0.5 ms to 10 s (metrics.c). */
void ns_metrics_observe(ns_metrics_histogram h, uint64_t elapsed_ns);
/* One observation of the time since start_ns (a uv_hrtime() reading). */
void ns_metrics_observe_since(ns_metrics_histogram h, uint64_t start_ns);
/* Adds one under the family's label value. */
void ns_metrics_count(ns_metrics_family f, const char *label);

/* A limit refused or delayed something: napsync_limit_hits_total{limit}.
 * limit names the setting or constant that was hit, in snake_case
 * ("max_sessions", "max_frame_size", "db_queue"); pass a constant string. */
void ns_metrics_limit_hit(const char *limit);

/* ---- health, published by the loop (health.c), read by http.c ------------- */

typedef enum {
    NS_READY_STARTING = 0, /* no readiness probe has answered yet */
    NS_READY_OK,
    NS_READY_DB_UNREACHABLE, /* the last probe failed, or none answered lately */
    NS_READY_SCHEMA_BEHIND,  /* the database lacks migrations this daemon has */
    NS_READY_DRAINING,       /* SIGTERM: finishing requests, accepting none */
} ns_metrics_readiness;

/* The loop is alive: now_ns is a uv_hrtime() reading. */
void ns_metrics_heartbeat(uint64_t now_ns);
/* The last heartbeat, 0 before the first. */
uint64_t ns_metrics_last_heartbeat(void);
void ns_metrics_set_readiness(ns_metrics_readiness r);
ns_metrics_readiness ns_metrics_get_readiness(void);
/* "ready", "starting", "database unreachable", ... for /readyz. */
const char *ns_metrics_readiness_text(ns_metrics_readiness r);

/* ---- exposition ---------------------------------------------------------- */

/* The Prometheus text format (version 0.0.4) of every metric, now; now_ns
 * (uv_hrtime()) dates the heartbeat's age. On 0, *out is a NUL-terminated
 * text of *len bytes that the caller frees; -1 when out of memory. */
__attribute__((warn_unused_result)) int ns_metrics_render(uint64_t now_ns, char **out, size_t *len);

/* Zeroes every value and forgets every label value (tests only: it must
 * not race with recording). */
void ns_metrics_reset(void);

#endif
