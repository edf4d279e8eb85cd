/* The cutting proxy (cutproxy.h). Everything under "loop thread" runs on
 * the proxy's own loop; the public functions talk to it through a mutex,
 * counters and one uv_async. */
#include "cutproxy.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <uv.h>

/* Stop reading a side while the other side has this much unsent. */
#define PAUSE_AT (1024u * 1024u)

typedef struct pconn pconn;

struct nst_proxy {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    uv_async_t async;
    uint16_t port;
    uint16_t target;
    pconn *conns; /* loop thread only */

    uv_mutex_t mu; /* guards everything below */
    uv_cond_t cond;
    unsigned fuse_percent;
    uint32_t max_bytes;
    uint64_t cut_req;  /* cut_all requests made */
    uint64_t cut_done; /* and carried out */
    bool stop_req;
    uint64_t rng;
    nst_proxy_stats stats;
};

/* side 0: the client's connection (accepted), side 1: the target's. */
struct pconn {
    nst_proxy *p;
    uv_tcp_t side[2];
    uv_connect_t creq;
    bool upstream_connected;
    bool eof[2];
    bool paused[2];
    bool closing;
    int closed;
    unsigned pending; /* writes and shutdowns not yet called back */
    bool has_fuse;
    bool fuse_blown;
    uint64_t fuse;
    uint64_t forwarded;
    pconn *prev, *next;
};

typedef struct {
    uv_write_t req;
    pconn *c;
    int dst;
    char *data;
} pwrite;

typedef struct {
    uv_shutdown_t req;
    pconn *c;
} pshutdown;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- loop thread ------------------------------------------------------------------------ */

static void on_conn_closed(uv_handle_t *h)
{
    pconn *c = h->data;
    if (++c->closed < 2)
        return;
    nst_proxy *p = c->p;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_mutex_lock(&p->mu);
    p->stats.open--;
    uv_mutex_unlock(&p->mu);
    free(c);
}

/* Resets both sides. A side that cannot be reset (the target's connect
 * still running, a shutdown under way) is closed, which for a connected
 * socket with unread data is a reset too. */
static void conn_cut(pconn *c, bool by_fuse)
{
    if (c->closing)
        return;
    c->closing = true;
    for (int i = 0; i < 2; i++) {
        uv_handle_t *h = (uv_handle_t *)&c->side[i];
        bool connected = i == 0 || c->upstream_connected;
        if (!connected || uv_tcp_close_reset(&c->side[i], on_conn_closed) != 0)
            uv_close(h, on_conn_closed);
    }
    uv_mutex_lock(&c->p->mu);
    c->p->stats.cut++;
    if (by_fuse)
        c->p->stats.fused++;
    uv_mutex_unlock(&c->p->mu);
}

/* Both directions ended in order and everything was delivered. */
static void conn_maybe_finish(pconn *c)
{
    if (c->closing || !c->eof[0] || !c->eof[1] || c->pending > 0)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->side[0], on_conn_closed);
    uv_close((uv_handle_t *)&c->side[1], on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    pwrite *w = (pwrite *)req;
    pconn *c = w->c;
    int dst = w->dst, src = 1 - dst;
    free(w->data);
    free(w);
    c->pending--;
    if (c->closing)
        return;
    if (status < 0) {
        conn_cut(c, false);
        return;
    }
    if (c->fuse_blown) {
        if (c->pending == 0)
            conn_cut(c, true);
        return;
    }
    if (c->paused[src] &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->side[dst]) < PAUSE_AT / 2) {
        c->paused[src] = false;
        if (uv_read_start((uv_stream_t *)&c->side[src], on_alloc, on_read) != 0)
            conn_cut(c, false);
        return;
    }
    conn_maybe_finish(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    pshutdown *sd = (pshutdown *)req;
    pconn *c = sd->c;
    free(sd);
    c->pending--;
    if (c->closing)
        return;
    if (status < 0)
        conn_cut(c, false);
    else
        conn_maybe_finish(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pconn *c = s->data;
    int src = s == (uv_stream_t *)&c->side[0] ? 0 : 1;
    int dst = 1 - src;
    if (c->closing || nread == 0) {
        free(buf->base);
        return;
    }
    if (nread == UV_EOF) {
        free(buf->base);
        c->eof[src] = true;
        uv_read_stop(s);
        pshutdown *sd = calloc(1, sizeof(*sd));
        if (sd == NULL) {
            conn_cut(c, false);
            return;
        }
        sd->c = c;
        if (uv_shutdown(&sd->req, (uv_stream_t *)&c->side[dst], on_shutdown) != 0) {
            free(sd);
            conn_cut(c, false);
            return;
        }
        c->pending++;
        return;
    }
    if (nread < 0) { /* a reset or an error: pass it on as a reset */
        free(buf->base);
        conn_cut(c, false);
        return;
    }
    size_t n = (size_t)nread;
    if (c->has_fuse && c->forwarded + n >= c->fuse) {
        n = (size_t)(c->fuse - c->forwarded);
        c->fuse_blown = true;
    }
    c->forwarded += n;
    uv_mutex_lock(&c->p->mu);
    c->p->stats.bytes += n;
    uv_mutex_unlock(&c->p->mu);
    if (n > 0) {
        pwrite *w = calloc(1, sizeof(*w));
        if (w == NULL) {
            free(buf->base);
            conn_cut(c, false);
            return;
        }
        w->c = c;
        w->dst = dst;
        w->data = buf->base;
        uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
        if (uv_write(&w->req, (uv_stream_t *)&c->side[dst], &out, 1, on_write) != 0) {
            free(w->data);
            free(w);
            conn_cut(c, false);
            return;
        }
        c->pending++;
    } else {
        free(buf->base);
    }
    if (c->fuse_blown) {
        /* Deliver what came before the fuse, then cut (on_write). */
        uv_read_stop((uv_stream_t *)&c->side[0]);
        uv_read_stop((uv_stream_t *)&c->side[1]);
        if (c->pending == 0)
            conn_cut(c, true);
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->side[dst]) >= PAUSE_AT) {
        c->paused[src] = true;
        uv_read_stop(s);
    }
}

static void on_upstream(uv_connect_t *req, int status)
{
    pconn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        uv_mutex_lock(&c->p->mu);
        c->p->stats.upstream_failed++;
        uv_mutex_unlock(&c->p->mu);
        conn_cut(c, false);
        return;
    }
    c->upstream_connected = true;
    uv_tcp_nodelay(&c->side[1], 1);
    if (c->has_fuse && c->fuse == 0) {
        conn_cut(c, true);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->side[0], on_alloc, on_read) != 0 ||
        uv_read_start((uv_stream_t *)&c->side[1], on_alloc, on_read) != 0)
        conn_cut(c, false);
}

static void on_accept_failed(uv_handle_t *h)
{
    free(h->data); /* the pconn: never listed, side[1] never initialised */
}

static void on_connection(uv_stream_t *server, int status)
{
    nst_proxy *p = server->data;
    if (status < 0)
        return;
    pconn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->p = p;
    uv_tcp_init(&p->loop, &c->side[0]);
    c->side[0].data = c;
    if (uv_accept(server, (uv_stream_t *)&c->side[0]) != 0) {
        uv_close((uv_handle_t *)&c->side[0], on_accept_failed);
        return;
    }
    uv_tcp_init(&p->loop, &c->side[1]);
    c->side[1].data = c;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    uv_tcp_nodelay(&c->side[0], 1);

    uv_mutex_lock(&p->mu);
    p->stats.accepted++;
    p->stats.open++;
    uint64_t r1 = splitmix64(&p->rng), r2 = splitmix64(&p->rng);
    if (p->fuse_percent > 0 && r1 % 100 < p->fuse_percent) {
        c->has_fuse = true;
        c->fuse = r2 % ((uint64_t)p->max_bytes + 1);
    }
    uv_mutex_unlock(&p->mu);

    struct sockaddr_in to;
    uv_ip4_addr("127.0.0.1", p->target, &to);
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->side[1], (const struct sockaddr *)&to, on_upstream) != 0) {
        uv_mutex_lock(&p->mu);
        p->stats.upstream_failed++;
        uv_mutex_unlock(&p->mu);
        conn_cut(c, false);
    }
}

static void cut_everything(nst_proxy *p)
{
    pconn *c = p->conns;
    while (c) {
        pconn *next = c->next; /* c stays listed until its close callbacks */
        conn_cut(c, false);
        c = next;
    }
}

static void on_async(uv_async_t *a)
{
    nst_proxy *p = a->data;
    uv_mutex_lock(&p->mu);
    bool stop = p->stop_req;
    uint64_t want = p->cut_req;
    uv_mutex_unlock(&p->mu);
    cut_everything(p);
    uv_mutex_lock(&p->mu);
    p->cut_done = want;
    uv_cond_broadcast(&p->cond);
    uv_mutex_unlock(&p->mu);
    if (stop) {
        uv_close((uv_handle_t *)&p->listener, NULL);
        uv_close((uv_handle_t *)&p->async, NULL);
    }
}

static void proxy_thread(void *arg)
{
    nst_proxy *p = arg;
    uv_run(&p->loop, UV_RUN_DEFAULT);
}

/* ---- any thread --------------------------------------------------------------------------- */

nst_proxy *nst_proxy_start(uint16_t target, uint64_t seed)
{
    nst_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->target = target;
    p->rng = seed;
    int rc = uv_loop_init(&p->loop);
    if (rc != 0) {
        fprintf(stderr, "cutproxy: uv_loop_init: %s\n", uv_strerror(rc));
        free(p);
        return NULL;
    }
    uv_mutex_init(&p->mu);
    uv_cond_init(&p->cond);
    uv_tcp_init(&p->loop, &p->listener);
    p->listener.data = p;
    uv_async_init(&p->loop, &p->async, on_async);
    p->async.data = p;
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    struct sockaddr_in bound;
    int len = sizeof(bound);
    rc = uv_tcp_bind(&p->listener, (const struct sockaddr *)&any, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->listener, 128, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(&p->listener, (struct sockaddr *)&bound, &len);
    if (rc == 0)
        p->port = ntohs(bound.sin_port);
    if (rc == 0)
        rc = uv_thread_create(&p->thread, proxy_thread, p);
    if (rc != 0) {
        fprintf(stderr, "cutproxy: cannot listen on 127.0.0.1: %s\n", uv_strerror(rc));
        uv_close((uv_handle_t *)&p->listener, NULL);
        uv_close((uv_handle_t *)&p->async, NULL);
        uv_run(&p->loop, UV_RUN_DEFAULT);
        uv_loop_close(&p->loop);
        uv_cond_destroy(&p->cond);
        uv_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    return p;
}

uint16_t nst_proxy_port(const nst_proxy *p)
{
    return p->port;
}

void nst_proxy_set_fuses(nst_proxy *p, unsigned fuse_percent, uint32_t max_bytes)
{
    uv_mutex_lock(&p->mu);
    p->fuse_percent = fuse_percent > 100 ? 100 : fuse_percent;
    p->max_bytes = max_bytes;
    uv_mutex_unlock(&p->mu);
}

void nst_proxy_cut_all(nst_proxy *p)
{
    uv_mutex_lock(&p->mu);
    uint64_t mine = ++p->cut_req;
    uv_async_send(&p->async);
    while (p->cut_done < mine)
        uv_cond_wait(&p->cond, &p->mu);
    uv_mutex_unlock(&p->mu);
}

void nst_proxy_get_stats(nst_proxy *p, nst_proxy_stats *out)
{
    uv_mutex_lock(&p->mu);
    *out = p->stats;
    uv_mutex_unlock(&p->mu);
}

void nst_proxy_stop(nst_proxy *p)
{
    if (p == NULL)
        return;
    uv_mutex_lock(&p->mu);
    p->stop_req = true;
    uv_async_send(&p->async);
    uv_mutex_unlock(&p->mu);
    uv_thread_join(&p->thread);
    uv_loop_close(&p->loop);
    uv_cond_destroy(&p->cond);
    uv_mutex_destroy(&p->mu);
    free(p);
}
