#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "session.h"

#define NS_LISTEN_BACKLOG 511

static void on_connection(uv_stream_t *listener, int status)
{
    ns_server *s = listener->data;
    if (status < 0) {
        ns_log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    int rc = ns_session_accept(s);
    if (rc != 0)
        ns_log_warn("cannot accept a connection: %s", uv_strerror(rc));
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
