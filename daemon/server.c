#include "server.h"

#include <stdio.h>
#include <string.h>

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "session.h"

static int load_tls(const ns_config *cfg, ns_tls_ctx **out)
{
    ns_tls_config tc = {
        .cert_file = cfg->tls_cert,
        .key_file = cfg->tls_key,
        .ca_file = cfg->tls_ca,
    };
    char err[512];
    if (ns_tls_ctx_new(NS_TLS_SERVER, &tc, out, err, sizeof(err)) != NS_TLS_OK) {
        ns_log_error("TLS configuration: %s", err);
        return -1;
    }
    return 0;
}

static void log_change(void *ud, const char *key, const char *old_value, const char *new_value,
                       bool applied)
{
    (void)ud;
    if (old_value == NULL || new_value == NULL)
        ns_log_warn("reload: %s changed (value not shown)%s", key,
                    applied ? "" : "; it takes effect at the next restart");
    else if (applied)
        ns_log_info("reload: %s changed from %s to %s", key, old_value, new_value);
    else
        ns_log_warn("reload: %s changed from %s to %s; it takes effect at the next restart", key,
                    old_value, new_value);
}

int ns_server_reload(ns_server *s)
{
    if (s->reread == NULL)
        return ns_server_reload_tls(s);
    ns_config fresh;
    char err[1024];
    if (s->reread(s->reread_ud, &fresh, err, sizeof(err)) != 0) {
        ns_log_error("reload refused: %s; keeping the previous configuration and certificates",
                     err);
        return -1;
    }
    ns_tls_ctx *tls;
    if (load_tls(&fresh, &tls) != 0) {
        ns_log_warn("reload refused: keeping the previous certificates and configuration");
        ns_config_free(&fresh);
        return -1;
    }
    int changed = ns_config_update(s->cfg, &fresh, log_change, s);
    ns_config_free(&fresh);
    ns_log_set_level(s->cfg->log_level);
    /* Live connections hold their own reference to the old context. */
    ns_tls_ctx_free(s->tls);
    s->tls = tls;
    ns_log_info("reloaded TLS certificate, key and CA, and the configuration (%d setting(s) "
                "changed)",
                changed);
    return 0;
}

int ns_server_reload_tls(ns_server *s)
{
    ns_tls_ctx *fresh;
    if (load_tls(s->cfg, &fresh) != 0) {
        ns_log_warn("keeping the previous certificates");
        return -1;
    }
    /* Live connections hold their own reference to the old context. */
    ns_tls_ctx_free(s->tls);
    s->tls = fresh;
    ns_log_info("reloaded TLS certificate, key and CA");
    return 0;
}

_Static_assert(NS_CONFIG_MAX_PUSH_MUTATIONS <= NS_SYNC_MAX_BATCH,
               "max_push_mutations may not exceed what the engine takes");
_Static_assert(NS_CONFIG_MAX_PULL_PAGE_SIZE <= NS_FEED_MAX_PAGE_SIZE,
               "max_pull_page_size may not exceed what the feed allows");

void ns_server_limit_hit(ns_server *s, ns_limit limit)
{
    if (limit < NS_LIMIT_COUNT)
        s->limit_hits[limit]++;
    ns_metrics_limit_hit(ns_limit_name(limit));
}

const char *ns_limit_name(ns_limit limit)
{
    static const char *const names[NS_LIMIT_COUNT] = {
        [NS_LIMIT_MAX_SESSIONS] = "max_sessions",
        [NS_LIMIT_MAX_SESSIONS_PER_DEVICE] = "max_sessions_per_device",
        [NS_LIMIT_HANDSHAKE_TIMEOUT] = "handshake_timeout_ms",
        [NS_LIMIT_IDLE_TIMEOUT] = "idle_timeout_ms",
        [NS_LIMIT_SEND_TIMEOUT] = "send_timeout_ms",
        [NS_LIMIT_MAX_FRAME_SIZE] = "max_frame_size",
        [NS_LIMIT_MAX_PUSH_MUTATIONS] = "max_push_mutations",
        [NS_LIMIT_MAX_SUBSCRIPTIONS] = "max_subscriptions",
        [NS_LIMIT_MAX_QUEUED_BYTES] = "max_queued_bytes",
    };
    return limit < NS_LIMIT_COUNT ? names[limit] : "?";
}

void ns_server_add_session(ns_server *s, ns_session *sess)
{
    sess->prev = NULL;
    sess->next = s->sessions;
    if (s->sessions)
        s->sessions->prev = sess;
    s->sessions = sess;
    s->nsessions++;
}

static void finish_shutdown(ns_server *s);

void ns_server_remove_session(ns_server *s, ns_session *sess)
{
    if (sess->prev)
        sess->prev->next = sess->next;
    else
        s->sessions = sess->next;
    if (sess->next)
        sess->next->prev = sess->prev;
    sess->prev = sess->next = NULL;
    s->nsessions--;
    if (s->refusing && s->nsessions < s->cfg->max_sessions) {
        s->refusing = false;
        ns_log_info("accepting connections again: %llu closed at accept meanwhile (max_sessions "
                    "%u)",
                    (unsigned long long)s->refused, s->cfg->max_sessions);
    }
    if (s->draining && s->nsessions == 0)
        finish_shutdown(s);
}

static void on_db_closed(void *ud)
{
    ns_server *s = ud;
    /* The feed goes after the pool: its LISTEN registration lives as long
     * as the pool, which has answered everything it owed by now. */
    if (s->feed) {
        ns_feed_close(s->feed);
        s->feed = NULL;
    }
    ns_revocation_close(s->revocation); /* the same */
    s->revocation = NULL;
    s->db = NULL;
    ns_tls_ctx_free(s->tls);
    s->tls = NULL;
    ns_compress_free(s->compress);
    s->compress = NULL;
    s->stopped = true;
    ns_log_info("stopped");
}

static void on_sync_closed(void *ud)
{
    ns_server *s = ud;
    ns_db_close(s->db, on_db_closed, s);
}

static void finish_shutdown(ns_server *s)
{
    if (s->stopped || s->db == NULL)
        return;
    ns_health_close(s->health); /* a probe in flight is answered by ns_db_close */
    s->health = NULL;
    uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
    /* Conflict lookups still running are answered without the engine. */
    if (s->conflicts) {
        ns_conflicts_close(s->conflicts);
        s->conflicts = NULL;
    }
    /* The engine finishes its running batches on the pool, then the pool
     * closes. */
    if (s->sync) {
        ns_sync *sync = s->sync;
        s->sync = NULL;
        ns_sync_close(sync, on_sync_closed, s);
        return;
    }
    ns_db_close(s->db, on_db_closed, s);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    ns_server *s = t->data;
    ns_log_warn("shutdown timeout: closing %u remaining session(s)", s->nsessions);
    /* A close may unlink the session: walk with a saved next. */
    ns_session *next;
    for (ns_session *sess = s->sessions; sess; sess = next) {
        next = sess->next;
        ns_session_close(sess, false);
    }
}

void ns_server_shutdown(ns_server *s)
{
    if (s->draining)
        return;
    s->draining = true;
    ns_metrics_set_readiness(NS_READY_DRAINING); /* /readyz: 503 from now on */
    ns_log_info("shutting down: %u session(s) to drain", s->nsessions);
    ns_listener_stop(s);
    /* Draining may close a session and unlink it: walk with a saved next. */
    ns_session *next;
    for (ns_session *sess = s->sessions; sess; sess = next) {
        next = sess->next;
        ns_session_drain(sess);
    }
    if (s->nsessions == 0) {
        finish_shutdown(s);
        return;
    }
    uv_timer_start(&s->shutdown_timer, on_shutdown_timeout, s->cfg->shutdown_timeout_ms, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    ns_server *s = h->data;
    if (signum == SIGHUP) {
        ns_log_info("SIGHUP: reloading the configuration and certificates");
        (void)ns_server_reload(s);
        return;
    }
    ns_log_info("%s received", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    ns_server_shutdown(s);
}

static void on_db_state(bool up, const char *detail, void *ud)
{
    (void)ud;
    if (up)
        ns_log_info("database connected");
    else
        ns_log_warn("database unreachable, reconnecting: %s", detail);
}

int ns_server_start(ns_server *s, uv_loop_t *loop, ns_config *cfg, const ns_registry *registry)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->cfg = cfg;
    s->registry = registry;
    if (load_tls(cfg, &s->tls) != 0)
        return -1;
    s->compress = ns_compress_new();
    if (s->compress == NULL) {
        ns_log_error("cannot start: out of memory");
        ns_tls_ctx_free(s->tls);
        return -1;
    }
    ns_db_options dbo = {
        .conninfo = cfg->database,
        .pool_size = cfg->db_pool_size,
        .queue_limit = 4096,
        .queue_timeout_ms = cfg->db_queue_timeout_ms,
        .reconnect_max_ms = 5000,
        .on_state = on_db_state,
        .state_ud = s,
    };
    if (ns_db_open(loop, &dbo, &s->db) != 0) {
        ns_log_error("cannot start the database pool");
        ns_tls_ctx_free(s->tls);
        ns_compress_free(s->compress);
        return -1;
    }
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    char err[512];
    ns_feed_options feed_opt = {.max_page_size = cfg->max_pull_page_size};
    if (ns_sync_new(loop, s->db, registry, &s->sync, err, sizeof(err)) != NS_SYNC_OK) {
        ns_log_error("cannot start the sync engine: %s", err);
        s->sync = NULL;
    } else if (ns_feed_open(loop, s->db, registry, &feed_opt, &s->feed) != 0) {
        ns_log_error("cannot start the change feed");
        s->feed = NULL;
    } else if (ns_conflicts_open(s->db, registry, s->sync, &s->conflicts) != 0) {
        ns_log_error("cannot start the conflicts module: out of memory");
        s->conflicts = NULL;
    } else if (ns_revocation_open(s, &s->revocation) != 0) {
        ns_log_error("cannot listen for revocations (out of memory, or too many channels)");
        s->revocation = NULL;
    }
    uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_hup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(loop, sigs[i]);
        sigs[i]->data = s;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    if (s->sync == NULL || s->feed == NULL || s->conflicts == NULL || s->revocation == NULL ||
        ns_listener_start(s) != 0 || (cfg->http_enabled && ns_health_start(s, &s->health) != 0)) {
        /* Unwind through the normal path so every handle is closed. */
        s->draining = true;
        finish_shutdown(s);
        return -1;
    }
    return 0;
}
