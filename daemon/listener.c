#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "session.h"

#define NS_LISTEN_BACKLOG 511

static void drop_pending(ns_server *s);

static void on_dropped(uv_handle_t *h)
{
    ns_server *s = h->data;
    if (h != (uv_handle_t *)&s->accept_spare) {
        free(h);
        return;
    }
    s->spare_in_use = false;
    if (s->accept_waiting) {
        s->accept_waiting = false;
        drop_pending(s);
    }
}

/* Takes a connection we cannot serve off the listening socket and closes
 * it: libuv watches the socket again only once the pending connection has
 * been accepted, so leaving it would refuse every later client too. */
static void drop_pending(ns_server *s)
{
    if (!s->listening)
        return; /* closing the listener closes what is pending */
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL) {
        if (s->spare_in_use) {
            s->accept_waiting = true; /* on_dropped retries with the spare */
            return;
        }
        t = &s->accept_spare;
        s->spare_in_use = true;
    }
    /* Cannot fail: a handle of unspecified family has no socket yet. */
    (void)uv_tcp_init(s->loop, t);
    t->data = s;
    /* UV_EAGAIN: the failed attempt had accepted it, and closed it. */
    (void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_dropped);
}

static void on_connection(uv_stream_t *listener, int status)
{
    ns_server *s = listener->data;
    if (status < 0) {
        ns_log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    /* Past max_sessions a few more still hear BUSY; beyond those a flood of
     * connections costs no TLS handshake and no session, and the log gets a
     * line when it begins and one when it ends (server.c), not one each. */
    if ((uint64_t)s->nsessions >= (uint64_t)s->cfg->max_sessions + NS_SERVER_BUSY_MARGIN) {
        ns_server_limit_hit(s, NS_LIMIT_MAX_SESSIONS);
        if (!s->refusing) {
            s->refusing = true;
            s->refused = 0;
            ns_log_warn("limit max_sessions: %u connections open; closing new ones at once "
                        "until fewer than %u remain",
                        s->nsessions, s->cfg->max_sessions);
        }
        s->refused++;
        drop_pending(s);
        return;
    }
    int rc = ns_session_accept(s);
    if (rc != 0) {
        ns_log_warn("refused a connection: %s", uv_strerror(rc));
        drop_pending(s);
    }
}

/* Resolution happens once, at start, before the loop serves anyone. */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage *out)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        ns_log_error("cannot resolve listen address %s: %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int ns_listener_start(ns_server *s)
{
    const ns_config *cfg = s->cfg;
    struct sockaddr_storage addr;
    if (resolve(cfg->listen_host, cfg->listen_port, &addr) != 0)
        return -1;
    int rc = uv_tcp_init(s->loop, &s->listener);
    if (rc != 0) {
        ns_log_error("cannot create listening socket: %s", uv_strerror(rc));
        return -1;
    }
    s->listener.data = s;
    s->listening = true;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, NS_LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        ns_log_error("cannot listen on %s:%u: %s", cfg->listen_host, cfg->listen_port,
                     uv_strerror(rc));
        ns_listener_stop(s);
        return -1;
    }
    ns_log_info("listening on %s:%u", cfg->listen_host, cfg->listen_port);
    return 0;
}

void ns_listener_stop(ns_server *s)
{
    if (!s->listening)
        return;
    s->listening = false;
    uv_close((uv_handle_t *)&s->listener, NULL); /* embedded in the server: nothing to free */
}
