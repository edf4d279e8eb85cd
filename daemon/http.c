#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <uv.h>

#include "log.h"
#include "metrics.h"

/* Why a thread of its own rather than MHD's descriptors on the libuv loop
 * (uv_poll): /healthz must tell a stuck loop, which an HTTP server on that
 * loop could not even answer, and a scrape must never cost the loop a
 * rendering or a slow client. So the listener reads only atomics
 * (metrics.c), which the loop writes without locks, and the loop never
 * waits for this thread except at exit (ns_http_stop). */

/* Operators' tools, not clients: few connections, short-lived. */
#define HTTP_MAX_CONNECTIONS 32
#define HTTP_TIMEOUT_S       10
#define HTTP_BACKLOG         64

struct ns_http {
    struct MHD_Daemon *mhd;
    int fd;
    uint16_t port;
    uint64_t stale_ns;
};

/* Queues body (copied) with status; MHD owns the copy from then on. */
static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
                               char *owned, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, owned, free);
    if (r == NULL) {
        free(owned);
        return MHD_NO; /* MHD closes the connection */
    }
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (ok == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (ok == MHD_YES)
        ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r); /* the queued response holds its own reference */
    return ok;
}

__attribute__((format(printf, 3, 4))) static enum MHD_Result
respond_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return MHD_NO;
    size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return MHD_NO;
    memcpy(copy, buf, len + 1);
    return respond(c, status, "text/plain; charset=utf-8", copy, len);
}

/* How long ago the loop last beat, or UINT64_MAX before the first beat. */
static uint64_t heartbeat_age(uint64_t now)
{
    uint64_t beat = ns_metrics_last_heartbeat();
    if (beat == 0)
        return UINT64_MAX;
    return now > beat ? now - beat : 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **state)
{
    const ns_http *h = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)state;
    /* Answered on the first call: a body, which none of these takes, is
     * never read (MHD discards it or closes the connection). */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    uint64_t now = uv_hrtime();
    uint64_t age = heartbeat_age(now);
    bool alive = age < h->stale_ns;
    if (strcmp(url, "/healthz") == 0) {
        if (alive)
            return respond_text(c, MHD_HTTP_OK, "ok\n");
        if (age == UINT64_MAX)
            return respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                "unhealthy: the event loop has not started\n");
        return respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                            "unhealthy: the event loop has not run for %llu ms\n",
                            (unsigned long long)(age / 1000000u));
    }
    if (strcmp(url, "/readyz") == 0) {
        ns_metrics_readiness r = ns_metrics_get_readiness();
        if (!alive)
            return respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                "not ready: the event loop is not running\n");
        if (r != NS_READY_OK)
            return respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s\n",
                                ns_metrics_readiness_text(r));
        return respond_text(c, MHD_HTTP_OK, "ready\n");
    }
    if (strcmp(url, "/metrics") == 0) {
        char *text;
        size_t len;
        if (ns_metrics_render(now, &text, &len) != 0)
            return respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
    }
    return respond_text(c, MHD_HTTP_NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n");
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    ns_log_warn("HTTP listener: %s", msg);
}

/* A listening socket on host:port, or -1 after logging why. */
static int listen_socket(const char *host, uint16_t port, uint16_t *bound)
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
        ns_log_error("http_listen: cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, HTTP_BACKLOG) != 0) {
        ns_log_error("http_listen: cannot bind the HTTP listener to %s:%u: %s", host, port,
                     strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *bound = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            *bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            *bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return fd;
}

int ns_http_start(const ns_http_options *opt, ns_http **out)
{
    ns_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        ns_log_error("http_listen: out of memory");
        return -1;
    }
    h->stale_ns = (uint64_t)opt->stale_ms * 1000000u;
    h->fd = listen_socket(opt->host, opt->port, &h->port);
    if (h->fd < 0) {
        free(h);
        return -1;
    }
    /* The listener's thread inherits this mask: signals stay with the
     * loop's thread, where libuv handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    h->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL,
        NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)h->fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (h->mhd == NULL) {
        /* MHD closes the socket on most failures, but not all (an option
         * it refuses): not closed here, since it may be closed and its
         * number reused. The daemon exits after this failure anyway. */
        ns_log_error("http_listen: cannot start the HTTP listener on %s:%u", opt->host, h->port);
        free(h);
        return -1;
    }
    ns_log_info("HTTP listener on %s:%u (/healthz /readyz /metrics)", opt->host, h->port);
    *out = h;
    return 0;
}

uint16_t ns_http_port(const ns_http *h)
{
    return h->port;
}

void ns_http_stop(ns_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->mhd);
    /* A socket given with MHD_OPTION_LISTEN_SOCKET is closed by MHD too
     * (it owns it once started), so nothing is left here. */
    free(h);
}
