/* The cutting proxy (cutproxy.h). Everything under "loop thread" runs on
 * the proxy's own loop; the public functions talk to it through a mutex,
 * counters and one uv_async.
 *
 * Bytes read from a side wait in that side's held buffer until pump()
 * forwards them, as far as the connection's faults allow: a fuse ends the
 * forwarding, a stall or a slow step closes the gate (a timer) for a while.
 * A side is read only while its held bytes and the other side's write
 * queue are small and the gate is open, so a stalled or slow connection
 * pushes back on its peers through TCP instead of growing the proxy. */
#include "cutproxy.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <uv.h>

/* Stop reading a side while the other side has this much unsent. */
#define PAUSE_AT (1024u * 1024u)
/* Stop reading a side while this much of it waits to be forwarded. */
#define HOLD_MAX (256u * 1024u)

typedef struct pconn pconn;

struct nst_proxy {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    uv_async_t async;
    uint16_t port;
    pconn *conns; /* loop thread only */

    uv_mutex_t mu; /* guards everything below */
    uv_cond_t cond;
    uint16_t target;
    unsigned fuse_percent;
    uint32_t max_bytes;
    nst_proxy_link_faults link;
    uint64_t cut_req;  /* cut_all requests made */
    uint64_t cut_done; /* and carried out */
    uint64_t stall_req, stall_done;
    uint32_t stall_ms; /* of the latest stall_all request */
    bool stop_req;
    uint64_t rng;
    nst_proxy_stats stats;
};

typedef struct {
    char *data;
    size_t off, len, cap; /* data[off, len) waits */
} held_buf;

/* side 0: the client's connection (accepted), side 1: the target's. */
struct pconn {
    nst_proxy *p;
    uv_tcp_t side[2];
    uv_timer_t gate; /* running: nothing is forwarded until it fires */
    uv_connect_t creq;
    bool upstream_connected;
    bool reading[2];
    bool eof[2];      /* side i ended its stream (its held bytes may still wait) */
    bool shut[2];     /* shutdown requested on side i */
    held_buf held[2]; /* read from side i, not yet written to the other */
    bool gated;
    bool closing;
    int closed;
    unsigned pending; /* writes and shutdowns not yet called back */
    bool has_fuse;
    bool fuse_blown;
    uint64_t fuse;
    bool has_stall, stall_done;
    uint64_t stall_at;
    uint32_t stall_ms;
    bool slow;
    uint32_t slow_chunk, slow_delay_ms;
    int turn; /* the direction a slow connection forwards first */
    uint64_t forwarded;
    pconn *prev, *next;
};

typedef struct {
    uv_write_t req;
    pconn *c;
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

/* Each connection has three handles: both sides and the gate. */
#define CONN_HANDLES 3

static void on_conn_closed(uv_handle_t *h)
{
    pconn *c = h->data;
    if (++c->closed < CONN_HANDLES)
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
    free(c->held[0].data);
    free(c->held[1].data);
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
    uv_close((uv_handle_t *)&c->gate, on_conn_closed);
    uv_mutex_lock(&c->p->mu);
    c->p->stats.cut++;
    if (by_fuse)
        c->p->stats.fused++;
    uv_mutex_unlock(&c->p->mu);
}

static size_t held_size(const held_buf *b)
{
    return b->len - b->off;
}

/* Both directions ended in order and everything was delivered. */
static void conn_maybe_finish(pconn *c)
{
    if (c->closing || !c->eof[0] || !c->eof[1] || !c->shut[0] || !c->shut[1] || c->pending > 0)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->side[0], on_conn_closed);
    uv_close((uv_handle_t *)&c->side[1], on_conn_closed);
    uv_close((uv_handle_t *)&c->gate, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads side i exactly when it may: connected, not ended, the gate open,
 * no fuse blown, and room on both ends of its direction. */
static void update_reading(pconn *c)
{
    if (c->closing || !c->upstream_connected)
        return;
    for (int i = 0; i < 2; i++) {
        uv_stream_t *src = (uv_stream_t *)&c->side[i];
        uv_stream_t *dst = (uv_stream_t *)&c->side[1 - i];
        bool want = !c->eof[i] && !c->gated && !c->fuse_blown &&
                    held_size(&c->held[i]) < HOLD_MAX &&
                    uv_stream_get_write_queue_size(dst) < PAUSE_AT;
        if (want == c->reading[i])
            continue;
        if (want && uv_read_start(src, on_alloc, on_read) != 0) {
            conn_cut(c, false);
            return;
        }
        if (!want)
            uv_read_stop(src);
        c->reading[i] = want;
    }
}

static void on_gate_open(uv_timer_t *t);

static void gate_close(pconn *c, uint32_t ms)
{
    c->gated = true;
    uv_timer_start(&c->gate, on_gate_open, ms, 0);
}

static void on_write(uv_write_t *req, int status);
static void on_shutdown(uv_shutdown_t *req, int status);

/* Writes n held bytes of side src to the other side. false: the
 * connection was cut. */
static bool forward(pconn *c, int src, size_t n)
{
    held_buf *b = &c->held[src];
    pwrite *w = calloc(1, sizeof(*w));
    char *data = malloc(n);
    if (w == NULL || data == NULL) {
        free(w);
        free(data);
        conn_cut(c, false);
        return false;
    }
    memcpy(data, b->data + b->off, n);
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
    w->c = c;
    w->data = data;
    uv_buf_t out = uv_buf_init(data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->side[1 - src], &out, 1, on_write) != 0) {
        free(data);
        free(w);
        conn_cut(c, false);
        return false;
    }
    c->pending++;
    c->forwarded += n;
    uv_mutex_lock(&c->p->mu);
    c->p->stats.bytes += n;
    uv_mutex_unlock(&c->p->mu);
    return true;
}

/* Forwards what is held, in both directions, as far as the faults allow;
 * passes an end of stream on once everything before it went through. */
static void pump(pconn *c)
{
    for (int k = 0; k < 2; k++) {
        /* A slow connection alternates directions, so neither starves. */
        int src = (c->turn + k) % 2;
        while (!c->closing && !c->gated && !c->fuse_blown && held_size(&c->held[src]) > 0) {
            size_t n = held_size(&c->held[src]);
            bool blow = false, stall = false;
            if (c->has_fuse && c->forwarded + n >= c->fuse) {
                n = (size_t)(c->fuse - c->forwarded);
                blow = true;
            }
            if (c->has_stall && !c->stall_done && c->forwarded + n >= c->stall_at) {
                n = (size_t)(c->stall_at - c->forwarded);
                stall = true;
            }
            if (c->slow && n > c->slow_chunk)
                n = c->slow_chunk;
            if (n > 0 && !forward(c, src, n))
                return;
            if (blow) {
                /* Deliver what came before the fuse, then cut (on_write). */
                c->fuse_blown = true;
                uv_read_stop((uv_stream_t *)&c->side[0]);
                uv_read_stop((uv_stream_t *)&c->side[1]);
                c->reading[0] = c->reading[1] = false;
                if (c->pending == 0)
                    conn_cut(c, true);
                return;
            }
            if (stall) {
                c->stall_done = true;
                uv_mutex_lock(&c->p->mu);
                c->p->stats.stalled++;
                uv_mutex_unlock(&c->p->mu);
                gate_close(c, c->stall_ms);
            } else if (c->slow) {
                c->turn = 1 - src;
                gate_close(c, c->slow_delay_ms);
            }
        }
    }
    if (c->closing || c->fuse_blown)
        return;
    for (int src = 0; src < 2; src++) {
        int dst = 1 - src;
        if (!c->eof[src] || c->shut[dst] || held_size(&c->held[src]) > 0)
            continue;
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
        c->shut[dst] = true;
        c->pending++;
    }
    update_reading(c);
    conn_maybe_finish(c);
}

static void on_gate_open(uv_timer_t *t)
{
    pconn *c = t->data;
    c->gated = false;
    if (!c->closing)
        pump(c);
}

static void on_write(uv_write_t *req, int status)
{
    pwrite *w = (pwrite *)req;
    pconn *c = w->c;
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
    pump(c);
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

static bool held_append(held_buf *b, const char *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            return false;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return true;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pconn *c = s->data;
    int src = s == (uv_stream_t *)&c->side[0] ? 0 : 1;
    if (c->closing || nread == 0) {
        free(buf->base);
        return;
    }
    if (nread == UV_EOF) {
        free(buf->base);
        c->eof[src] = true;
        pump(c);
        return;
    }
    if (nread < 0) { /* a reset or an error: pass it on as a reset */
        free(buf->base);
        conn_cut(c, false);
        return;
    }
    bool ok = held_append(&c->held[src], buf->base, (size_t)nread);
    free(buf->base);
    if (!ok) {
        conn_cut(c, false);
        return;
    }
    pump(c);
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
    if (c->has_stall && c->stall_at == 0) {
        c->stall_done = true;
        uv_mutex_lock(&c->p->mu);
        c->p->stats.stalled++;
        uv_mutex_unlock(&c->p->mu);
        gate_close(c, c->stall_ms);
    }
    update_reading(c);
}

static void on_accept_failed(uv_handle_t *h)
{
    free(h->data); /* the pconn: never listed, side[1] never initialised */
}

static uint32_t draw_between(uint64_t r, uint32_t lo, uint32_t hi)
{
    return hi > lo ? lo + (uint32_t)(r % ((uint64_t)hi - lo + 1)) : lo;
}

/* The connection's faults, under p->mu: the fuse draws as they always were
 * (two per connection), then the link faults' draws only when any is set. */
static void draw_faults(nst_proxy *p, pconn *c)
{
    uint64_t r1 = splitmix64(&p->rng), r2 = splitmix64(&p->rng);
    if (p->fuse_percent > 0 && r1 % 100 < p->fuse_percent) {
        c->has_fuse = true;
        c->fuse = r2 % ((uint64_t)p->max_bytes + 1);
    }
    const nst_proxy_link_faults *l = &p->link;
    if (l->stall_percent == 0 && l->slow_percent == 0)
        return;
    uint64_t r3 = splitmix64(&p->rng), r4 = splitmix64(&p->rng), r5 = splitmix64(&p->rng);
    if (c->has_fuse)
        return;
    unsigned pick = (unsigned)(r3 % 100);
    if (pick < l->stall_percent) {
        c->has_stall = true;
        c->stall_at = r4 % ((uint64_t)l->stall_max_bytes + 1);
        c->stall_ms = draw_between(r5, l->stall_min_ms, l->stall_max_ms);
    } else if (pick < l->stall_percent + l->slow_percent) {
        c->slow = true;
        c->slow_chunk = l->slow_chunk ? l->slow_chunk : 1;
        c->slow_delay_ms = l->slow_delay_ms;
        p->stats.slowed++;
    }
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
    uv_timer_init(&p->loop, &c->gate);
    c->gate.data = c;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    uv_tcp_nodelay(&c->side[0], 1);

    uv_mutex_lock(&p->mu);
    p->stats.accepted++;
    p->stats.open++;
    draw_faults(p, c);
    uint16_t target = p->target;
    uv_mutex_unlock(&p->mu);

    struct sockaddr_in to;
    uv_ip4_addr("127.0.0.1", target, &to);
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->side[1], (const struct sockaddr *)&to, on_upstream) != 0) {
        uv_mutex_lock(&p->mu);
        p->stats.upstream_failed++;
        uv_mutex_unlock(&p->mu);
        conn_cut(c, false);
    }
}

static void on_async(uv_async_t *a)
{
    nst_proxy *p = a->data;
    uv_mutex_lock(&p->mu);
    bool stop = p->stop_req;
    uint64_t want_cut = p->cut_req, want_stall = p->stall_req;
    bool cut = stop || p->cut_done < want_cut;
    bool stall = p->stall_done < want_stall;
    uint32_t stall_ms = p->stall_ms;
    uv_mutex_unlock(&p->mu);
    uint64_t stalled = 0;
    for (pconn *c = p->conns, *next; c; c = next) {
        next = c->next; /* c stays listed until its close callbacks */
        if (cut)
            conn_cut(c, false);
        else if (stall && !c->closing) {
            gate_close(c, stall_ms);
            update_reading(c);
            stalled++;
        }
    }
    uv_mutex_lock(&p->mu);
    p->cut_done = want_cut;
    p->stall_done = want_stall;
    p->stats.stalled += stalled;
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

void nst_proxy_set_link_faults(nst_proxy *p, const nst_proxy_link_faults *f)
{
    uv_mutex_lock(&p->mu);
    p->link = *f;
    if (p->link.stall_percent > 100)
        p->link.stall_percent = 100;
    if (p->link.slow_percent > 100 - p->link.stall_percent)
        p->link.slow_percent = 100 - p->link.stall_percent;
    uv_mutex_unlock(&p->mu);
}

void nst_proxy_set_target(nst_proxy *p, uint16_t target)
{
    uv_mutex_lock(&p->mu);
    p->target = target;
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

void nst_proxy_stall_all(nst_proxy *p, uint32_t ms)
{
    uv_mutex_lock(&p->mu);
    uint64_t mine = ++p->stall_req;
    p->stall_ms = ms;
    uv_async_send(&p->async);
    while (p->stall_done < mine)
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
