#include "server.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
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
    s->db = NULL;
    ns_tls_ctx_free(s->tls);
    s->tls = NULL;
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
        ns_log_info("SIGHUP: reloading certificates");
        (void)ns_server_reload_tls(s);
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

int ns_server_start(ns_server *s, uv_loop_t *loop, const ns_config *cfg,
                    const ns_registry *registry)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->cfg = cfg;
    s->registry = registry;
    if (load_tls(cfg, &s->tls) != 0)
        return -1;
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
        return -1;
    }
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    char err[512];
    if (ns_sync_new(loop, s->db, registry, &s->sync, err, sizeof(err)) != NS_SYNC_OK) {
        ns_log_error("cannot start the sync engine: %s", err);
        s->sync = NULL;
    } else if (ns_feed_open(loop, s->db, registry, NULL, &s->feed) != 0) {
        ns_log_error("cannot start the change feed");
        s->feed = NULL;
    } else if (ns_conflicts_open(s->db, registry, s->sync, &s->conflicts) != 0) {
        ns_log_error("cannot start the conflicts module: out of memory");
        s->conflicts = NULL;
    }
    uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_hup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(loop, sigs[i]);
        sigs[i]->data = s;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    if (s->sync == NULL || s->feed == NULL || s->conflicts == NULL || ns_listener_start(s) != 0) {
        /* Unwind through the normal path so every handle is closed. */
        s->draining = true;
        finish_shutdown(s);
        return -1;
    }
    return 0;
}
