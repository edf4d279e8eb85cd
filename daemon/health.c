#include "health.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "migrate.h"

#define PROBE_SQL "SELECT coalesce(max(version), -1)::text FROM napsync_migrations"

struct ns_health {
    ns_server *server;
    uv_timer_t timer;
    int latest; /* the newest migration this daemon has */
    uint64_t ticks;
    bool probing;        /* a probe query is in flight */
    uint64_t probe_sent; /* uv_hrtime() of the one in flight */
    bool closing;
    bool timer_closed;
    ns_metrics_readiness last; /* the last probe's verdict */
};

static void health_free_if_done(ns_health *h)
{
    if (h->closing && h->timer_closed && !h->probing)
        free(h);
}

/* Draining overrides whatever the probe found. */
static void publish_readiness(ns_health *h)
{
    ns_metrics_set_readiness(h->server->draining ? NS_READY_DRAINING : h->last);
}

static void on_probe(ns_db_status st, const ns_db_result *res, void *ud)
{
    ns_health *h = ud;
    h->probing = false;
    if (h->closing) {
        health_free_if_done(h);
        return;
    }
    ns_metrics_readiness r = NS_READY_DB_UNREACHABLE;
    const char *v = st == NS_DB_OK ? ns_db_result_value(res, 0, 0) : NULL;
    if (v != NULL) {
        r = atoi(v) >= h->latest ? NS_READY_OK : NS_READY_SCHEMA_BEHIND;
    } else if (st == NS_DB_QUERY_FAILED) {
        /* No napsync_migrations table at all, or no right to read it. */
        r = NS_READY_SCHEMA_BEHIND;
    }
    if (r != h->last && r != NS_READY_OK)
        ns_log_warn("not ready: %s (%s)", ns_metrics_readiness_text(r),
                    st == NS_DB_QUERY_FAILED ? ns_db_result_message(res) : ns_db_status_str(st));
    else if (r != h->last)
        ns_log_info("ready: the database answers and has every migration");
    h->last = r;
    publish_readiness(h);
}

static void probe(ns_health *h)
{
    uint64_t now = uv_hrtime();
    if (h->probing) {
        /* A probe that does not come back is a database that does not
         * answer: the pool has no deadline for a query already sent. */
        if (now - h->probe_sent > (uint64_t)NS_HEALTH_PROBE_STALE_MS * 1000000u &&
            h->last != NS_READY_DB_UNREACHABLE) {
            ns_log_warn("not ready: the readiness probe has not been answered for %d ms",
                        NS_HEALTH_PROBE_STALE_MS);
            h->last = NS_READY_DB_UNREACHABLE;
        }
        return;
    }
    ns_db_status st = ns_db_query(h->server->db, PROBE_SQL, 0, NULL, on_probe, h);
    if (st == NS_DB_OK) {
        h->probing = true;
        h->probe_sent = now;
    } else if (st != NS_DB_SHUTDOWN) {
        h->last = NS_READY_DB_UNREACHABLE; /* the queue is full */
    }
}

/* Gauges that are state, not events: sampled here rather than updated
 * wherever the state changes. */
static void publish_gauges(const ns_server *s)
{
    ns_metrics_set(NS_GAUGE_SESSIONS_OPEN, s->nsessions);
    if (s->feed != NULL) {
        ns_feed_stats fs;
        ns_feed_stats_get(s->feed, &fs);
        ns_metrics_set(NS_GAUGE_SUBSCRIBERS, fs.subscribers);
        ns_metrics_set(NS_GAUGE_SUBSCRIBERS_BEHIND, fs.behind);
        ns_metrics_set(NS_GAUGE_FEED_HEAD, fs.head);
        ns_metrics_set(NS_GAUGE_FEED_LAG_MAX, fs.max_lag);
    }
    if (s->db != NULL) {
        ns_db_stats ds;
        ns_db_stats_get(s->db, &ds);
        ns_metrics_set(NS_GAUGE_DB_BACKOFF, ds.backoff);
        ns_metrics_set(NS_GAUGE_DB_CONNECTING, ds.connecting);
        ns_metrics_set(NS_GAUGE_DB_IDLE, ds.idle);
        ns_metrics_set(NS_GAUGE_DB_BUSY, ds.busy);
        ns_metrics_set(NS_GAUGE_DB_TXN, ds.txn);
        ns_metrics_set(NS_GAUGE_DB_QUEUED, ds.queued);
        ns_metrics_set(NS_GAUGE_DB_LISTENER_UP, ds.listener_up ? 1 : 0);
    }
}

static void on_tick(uv_timer_t *t)
{
    ns_health *h = t->data;
    ns_metrics_heartbeat(uv_hrtime());
    publish_gauges(h->server);
    if (h->ticks++ % 2 == 0 && !h->server->draining)
        probe(h);
    publish_readiness(h);
}

static void on_timer_closed(uv_handle_t *handle)
{
    ns_health *h = handle->data;
    h->timer_closed = true;
    health_free_if_done(h);
}

int ns_health_start(ns_server *s, ns_health **out)
{
    char err[512];
    int latest = ns_migrate_latest(s->cfg->sql_dir, err, sizeof(err));
    if (latest < 0) {
        ns_log_error("readiness probe: %s", err);
        return -1;
    }
    ns_health *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        ns_log_error("readiness probe: out of memory");
        return -1;
    }
    h->server = s;
    h->latest = latest;
    h->last = NS_READY_STARTING;
    if (uv_timer_init(s->loop, &h->timer) != 0) {
        ns_log_error("readiness probe: cannot create its timer");
        free(h);
        return -1;
    }
    h->timer.data = h;
    ns_metrics_set_readiness(NS_READY_STARTING);
    ns_metrics_heartbeat(uv_hrtime());
    /* The first tick at once: readiness as soon as the database answers. */
    uv_timer_start(&h->timer, on_tick, 0, NS_HEALTH_TICK_MS);
    *out = h;
    return 0;
}

void ns_health_close(ns_health *h)
{
    if (h == NULL || h->closing)
        return;
    h->closing = true;
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}
