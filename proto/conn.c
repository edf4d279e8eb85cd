#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* How long a graceful close waits for the peer to take our last bytes,
 * and then again for its EOF. */
#define NS_CONN_LINGER_MS 2000
/* Input read and dropped during a graceful close before we give up on the
 * peer's EOF: enough for the rest of a frame in flight, not a free sink. */
#define NS_CONN_DISCARD_LIMIT (1024u * 1024u)
/* Idle time before TCP probes a silent peer, so that one that vanished
 * (power loss, a NAT that forgot us) is found even without an idle timeout. */
#define NS_CONN_KEEPALIVE_S 60
#define NS_CONN_READ_BUF    65536

typedef enum {
    CONN_CONNECTING, /* TCP connect in progress (client) */
    CONN_HANDSHAKE,  /* TLS handshake in progress */
    CONN_OPEN,       /* established */
    CONN_DRAINING,   /* graceful close: flushing our output, then TCP FIN */
    CONN_LINGERING,  /* FIN sent: dropping input until the peer's EOF */
    CONN_CLOSED,     /* uv_close called on the handles */
} conn_state;

struct ns_conn {
    uv_tcp_t tcp;     /* tcp.data and timer.data point back here */
    uv_timer_t timer; /* handshake deadline, then the open deadlines, then linger */
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    int open_handles; /* freed when both close callbacks have run */
    conn_state state;
    ns_tls *tls;
    ns_frame_decoder frames;
    ns_conn_options opt;
    ns_conn_callbacks cb;
    void *ud;
    size_t write_queue_bytes;
    uint64_t first_frame_deadline; /* loop time; 0 when none or once a frame came */
    uint64_t idle_deadline;        /* loop time; moved by every read; 0 when none */
    uint64_t send_deadline;        /* loop time; moved by every write done; 0 when none */
    size_t discarded;              /* input dropped while closing */
    bool peer_eof;                 /* the peer's EOF arrived while closing */
    bool paused;                   /* the owner holds frames back */
    bool no_eof_wait;              /* our graceful close: opt.close_without_peer_eof */
    bool frame_error;              /* an oversized frame was announced: read no more */
    bool reading;                  /* uv_read_start is in effect */
    bool in_process;               /* guards against re-entering process() */
    ns_conn_close_reason close_reason;
    char close_msg[320];
    char peer[64];
};

typedef struct {
    uv_write_t req;
    ns_conn *conn;
    size_t len;
    uint8_t data[]; /* owned by the request until write_done */
} write_req;

static void process(ns_conn *c);
static void begin_close(ns_conn *c, ns_conn_close_reason why, const char *msg);
static void arm_open_timer(ns_conn *c);

/* One read buffer per thread: libuv hands it back in read_cb, which copies
 * it into the TLS engine before the next alloc. */
static _Thread_local char read_buf[NS_CONN_READ_BUF];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

static bool want_reading(const ns_conn *c)
{
    switch (c->state) {
    case CONN_HANDSHAKE:
        return c->write_queue_bytes <= c->opt.write_queue_limit;
    case CONN_OPEN:
        return !c->frame_error && !c->paused && c->write_queue_bytes <= c->opt.write_queue_limit;
    case CONN_DRAINING:
    case CONN_LINGERING:
        /* Closing a socket that holds unread input makes the kernel reset
         * the connection and drop what we have not transmitted yet: so
         * everything is read, and dropped, until the peer's EOF. */
        return !c->peer_eof;
    case CONN_CONNECTING:
    case CONN_CLOSED:
        break;
    }
    return false;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void update_reading(ns_conn *c)
{
    bool want = want_reading(c);
    if (want == c->reading)
        return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    ns_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    c->cb.on_close(c, c->close_reason, c->close_msg, c->ud);
    ns_tls_free(c->tls);
    ns_frame_decoder_free(&c->frames);
    free(c);
}

static void close_handles(ns_conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    c->state = CONN_CLOSED;
    c->reading = false;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_write_done(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    ns_conn *c = w->conn;
    bool was_over = c->write_queue_bytes > c->opt.write_queue_limit;
    c->write_queue_bytes -= w->len;
    free(w);
    if (c->state == CONN_CLOSED)
        return;
    if (status < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "write failed: %s", uv_strerror(status));
        begin_close(c, NS_CONN_IO_FAILED, msg);
        return;
    }
    /* The peer took something: what is still waiting gets a new term. */
    if (c->opt.send_timeout_ms && c->state == CONN_OPEN) {
        c->send_deadline =
            c->write_queue_bytes ? uv_now(c->timer.loop) + c->opt.send_timeout_ms : 0;
        arm_open_timer(c);
    }
    update_reading(c);
    if (!was_over || c->write_queue_bytes > c->opt.write_queue_limit || c->state != CONN_OPEN)
        return;
    if (c->cb.on_writable)
        c->cb.on_writable(c, c->ud);
    if (c->state == CONN_OPEN)
        process(c); /* the frames that waited for the output to drain */
}

/* The TLS engine's output: one heap request owns a copy until written. */
static int send_ciphertext(void *ud, const uint8_t *buf, size_t len)
{
    ns_conn *c = ud;
    if (c->state == CONN_CLOSED || c->state == CONN_CONNECTING)
        return -1;
    write_req *w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return -1;
    w->conn = c;
    w->len = len;
    memcpy(w->data, buf, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned int)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write_done);
    if (rc != 0) {
        free(w);
        return -1;
    }
    if (c->write_queue_bytes == 0 && c->opt.send_timeout_ms && c->state == CONN_OPEN) {
        c->send_deadline = uv_now(c->timer.loop) + c->opt.send_timeout_ms;
        arm_open_timer(c);
    }
    c->write_queue_bytes += len;
    return 0;
}

static void set_close(ns_conn *c, ns_conn_close_reason why, const char *msg)
{
    if (c->close_msg[0])
        return; /* the first reason is the real one */
    c->close_reason = why;
    snprintf(c->close_msg, sizeof(c->close_msg), "%s", msg);
}

static void begin_close(ns_conn *c, ns_conn_close_reason why, const char *msg)
{
    set_close(c, why, msg);
    close_handles(c);
}

static void arm_timer(ns_conn *c, uint32_t ms);

static bool passed(uint64_t deadline, uint64_t now)
{
    return deadline != 0 && now >= deadline;
}

/* While open, one timer serves three deadlines: the idle timeout, moved by
 * every read; the fixed one for the first frame; and the send timeout,
 * moved by every write the peer takes. It is set for the earliest. */
static void arm_open_timer(ns_conn *c)
{
    uint64_t due = 0;
    const uint64_t deadlines[] = {c->idle_deadline, c->first_frame_deadline, c->send_deadline};
    for (size_t i = 0; i < sizeof(deadlines) / sizeof(deadlines[0]); i++)
        if (deadlines[i] != 0 && (due == 0 || deadlines[i] < due))
            due = deadlines[i];
    if (due == 0) {
        arm_timer(c, 0);
        return;
    }
    uint64_t now = uv_now(c->timer.loop);
    uint64_t left = due > now ? due - now : 1;
    arm_timer(c, left > UINT32_MAX ? UINT32_MAX : (uint32_t)left);
}

static void on_open_timer(ns_conn *c)
{
    uint64_t now = uv_now(c->timer.loop);
    if (passed(c->send_deadline, now)) {
        c->send_deadline = 0;
        if (c->cb.on_send_timeout)
            c->cb.on_send_timeout(c, c->ud);
        else
            begin_close(c, NS_CONN_TIMED_OUT, "the peer took none of our output in time");
    } else if (passed(c->first_frame_deadline, now)) {
        c->first_frame_deadline = 0;
        if (c->cb.on_first_frame_timeout)
            c->cb.on_first_frame_timeout(c, c->ud);
        else
            begin_close(c, NS_CONN_TIMED_OUT, "no frame arrived in time");
    } else if (passed(c->idle_deadline, now)) {
        c->idle_deadline = 0;
        if (c->cb.on_idle)
            c->cb.on_idle(c, c->ud);
        else
            begin_close(c, NS_CONN_TIMED_OUT, "idle timeout");
    }
    if (c->state == CONN_OPEN)
        arm_open_timer(c); /* the owner kept the conn: the other deadlines still hold */
}

static void on_timer(uv_timer_t *t)
{
    ns_conn *c = t->data;
    switch (c->state) {
    case CONN_CONNECTING:
    case CONN_HANDSHAKE:
        begin_close(c, NS_CONN_TIMED_OUT,
                    c->state == CONN_CONNECTING ? "connect timed out" : "TLS handshake timed out");
        break;
    case CONN_OPEN:
        on_open_timer(c);
        break;
    case CONN_DRAINING:
        begin_close(c, NS_CONN_CLOSED_BY_US, "closed (peer did not take our last bytes in time)");
        break;
    case CONN_LINGERING:
        begin_close(c, NS_CONN_CLOSED_BY_US, "closed (peer did not close its side in time)");
        break;
    case CONN_CLOSED:
        break;
    }
}

static void arm_timer(ns_conn *c, uint32_t ms)
{
    if (ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    ns_conn *c = req->data;
    if (c->state != CONN_DRAINING)
        return; /* closed meanwhile: libuv cancels the request */
    if (status < 0 || c->peer_eof || c->no_eof_wait) {
        close_handles(c);
        return;
    }
    c->state = CONN_LINGERING;
    arm_timer(c, NS_CONN_LINGER_MS);
}

/* A graceful end: libuv writes what is queued and then sends FIN
 * (uv_shutdown); meanwhile input is read and dropped until the peer's EOF,
 * each phase bounded by the linger timer. */
static void begin_drain(ns_conn *c)
{
    c->state = CONN_DRAINING;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        close_handles(c);
        return;
    }
    arm_timer(c, NS_CONN_LINGER_MS);
    update_reading(c);
}

static void discard_input(ns_conn *c, ssize_t nread)
{
    if (nread > 0) {
        c->discarded += (size_t)nread;
        if (c->discarded > NS_CONN_DISCARD_LIMIT)
            close_handles(c); /* a peer that keeps sending gets no more patience */
        return;
    }
    if (nread != UV_EOF) {
        close_handles(c); /* reset or error: nothing more will get through */
        return;
    }
    c->peer_eof = true;
    if (c->state == CONN_LINGERING)
        close_handles(c);
    else
        update_reading(c); /* close once our FIN is out (on_shutdown) */
}

static void fail_tls(ns_conn *c, int rc)
{
    char msg[320];
    if (rc == NS_TLS_ERR_SEND)
        snprintf(msg, sizeof(msg), "could not queue TLS output");
    else
        snprintf(msg, sizeof(msg), "%s", ns_tls_error(c->tls));
    /* The alert we may just have queued is worth a short linger. */
    if (c->write_queue_bytes > 0 && rc != NS_TLS_ERR_SEND) {
        set_close(c, NS_CONN_TLS_FAILED, msg);
        begin_drain(c);
        return;
    }
    begin_close(c, NS_CONN_TLS_FAILED, msg);
}

/* Handshake, then frames, for as long as the owner wants them and the
 * engine has plaintext. Safe against the owner closing or pausing from
 * inside a callback: the conn is only freed from a close callback. */
static void process(ns_conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    if (c->state == CONN_HANDSHAKE) {
        int rc = ns_tls_handshake(c->tls);
        if (rc == NS_TLS_WANT_READ)
            goto out;
        if (rc != NS_TLS_OK) {
            fail_tls(c, rc);
            goto out;
        }
        c->state = CONN_OPEN;
        uint64_t now = uv_now(c->timer.loop);
        if (c->opt.first_frame_timeout_ms)
            c->first_frame_deadline = now + c->opt.first_frame_timeout_ms;
        if (c->opt.idle_timeout_ms)
            c->idle_deadline = now + c->opt.idle_timeout_ms;
        /* Handshake output still waiting is now subject to the send timeout. */
        if (c->opt.send_timeout_ms && c->write_queue_bytes)
            c->send_deadline = now + c->opt.send_timeout_ms;
        arm_open_timer(c);
        c->cb.on_ready(c, c->ud);
    }
    /* Frames already buffered wait too while the output is over its limit:
     * else a client that pipelines many small requests and never reads
     * would have every answer queued. */
    while (c->state == CONN_OPEN && !c->paused && !c->frame_error &&
           c->write_queue_bytes <= c->opt.write_queue_limit) {
        const uint8_t *payload;
        size_t len;
        ns_frame_status fs = ns_frame_decoder_next(&c->frames, &payload, &len);
        if (fs == NS_FRAME_OK) {
            if (c->first_frame_deadline != 0) {
                c->first_frame_deadline = 0;
                arm_open_timer(c);
            }
            c->cb.on_frame(c, payload, len, c->ud);
            continue;
        }
        if (fs == NS_FRAME_TOO_LARGE) {
            c->frame_error = true;
            c->cb.on_frame_too_large(c, c->ud);
            break;
        }
        /* No whole frame buffered: take more plaintext from TLS, but never
         * more than one frame's worth beyond what is already waiting. */
        uint8_t plain[16384];
        size_t n = 0;
        int rc = ns_tls_read(c->tls, plain, sizeof(plain), &n);
        if (rc == NS_TLS_WANT_READ)
            break;
        if (rc == NS_TLS_CLOSED) {
            begin_close(c, NS_CONN_CLOSED_BY_PEER, "the peer closed the connection");
            break;
        }
        if (rc != NS_TLS_OK) {
            fail_tls(c, rc);
            break;
        }
        fs = ns_frame_decoder_feed(&c->frames, plain, n);
        if (fs == NS_FRAME_NOMEM) {
            begin_close(c, NS_CONN_NOMEM, "out of memory");
            break;
        }
        /* TOO_LARGE is reported by the next call to next(). */
    }
out:
    c->in_process = false;
    if (c->state != CONN_CLOSED)
        update_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ns_conn *c = s->data;
    if (nread == 0)
        return; /* EAGAIN, not EOF */
    if (c->state == CONN_DRAINING || c->state == CONN_LINGERING) {
        discard_input(c, nread);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF)
            begin_close(c, NS_CONN_CLOSED_BY_PEER,
                        c->state == CONN_HANDSHAKE
                            ? "the peer closed the connection during the TLS handshake"
                            : "the peer closed the connection");
        else {
            char msg[128];
            snprintf(msg, sizeof(msg), "read failed: %s", uv_strerror((int)nread));
            begin_close(c, NS_CONN_IO_FAILED, msg);
        }
        return;
    }
    if (c->state == CONN_OPEN && c->opt.idle_timeout_ms) {
        c->idle_deadline = uv_now(c->timer.loop) + c->opt.idle_timeout_ms;
        arm_open_timer(c);
    }
    if (ns_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) != NS_TLS_OK) {
        begin_close(c, NS_CONN_NOMEM, "out of memory");
        return;
    }
    process(c);
}

/* Frees a conn whose creation failed after both handles were initialised,
 * without calling the owner (who was told of the failure by a return code). */
static void on_abandoned_closed(uv_handle_t *h)
{
    ns_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    ns_tls_free(c->tls);
    ns_frame_decoder_free(&c->frames);
    free(c);
}

/* A session from the engine, for the owner. */
static void on_engine_session(void *ud, const uint8_t *session, size_t len)
{
    ns_conn *c = ud;
    if (c->state != CONN_CLOSED && c->cb.on_tls_session)
        c->cb.on_tls_session(c, session, len, c->ud);
}

static int conn_new(uv_loop_t *loop, ns_tls_ctx *tls, const char *peer_name,
                    const ns_conn_options *opt, const ns_conn_callbacks *cb, void *ud,
                    ns_conn **out)
{
    ns_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    c->opt = *opt;
    c->opt.tls_session = NULL; /* borrowed for this call only */
    c->opt.tls_session_len = 0;
    c->cb = *cb;
    c->ud = ud;
    snprintf(c->peer, sizeof(c->peer), "?");
    ns_frame_decoder_init(&c->frames, opt->max_frame);
    if (ns_tls_new(tls, peer_name, send_ciphertext, c, &c->tls) != NS_TLS_OK) {
        free(c);
        return UV_ENOMEM;
    }
    c->timer.data = c;
    c->tcp.data = c;
    uv_timer_init(loop, &c->timer); /* cannot fail */
    int rc = uv_tcp_init(loop, &c->tcp);
    if (rc != 0) {
        /* The timer is initialised: it may only go through uv_close. */
        c->open_handles = 1;
        c->state = CONN_CLOSED;
        uv_close((uv_handle_t *)&c->timer, on_abandoned_closed);
        return rc;
    }
    c->open_handles = 2;
    *out = c;
    return 0;
}

static void abandon(ns_conn *c)
{
    c->state = CONN_CLOSED;
    uv_close((uv_handle_t *)&c->timer, on_abandoned_closed);
    uv_close((uv_handle_t *)&c->tcp, on_abandoned_closed);
}

static void format_peer(ns_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(c->peer, sizeof(c->peer), "[%s]:%d", host, port);
    }
}

int ns_conn_accept(uv_stream_t *listener, ns_tls_ctx *tls, const ns_conn_options *opt,
                   const ns_conn_callbacks *cb, void *ud, ns_conn **out)
{
    ns_conn *c;
    int rc = conn_new(listener->loop, tls, NULL, opt, cb, ud, &c);
    if (rc != 0)
        return rc;
    rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        abandon(c);
        return rc;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* Failing leaves only that safety net off. */
    (void)uv_tcp_keepalive(&c->tcp, 1, NS_CONN_KEEPALIVE_S);
    format_peer(c);
    c->state = CONN_HANDSHAKE;
    arm_timer(c, opt->handshake_timeout_ms);
    update_reading(c);
    if (!c->reading) {
        abandon(c);
        return UV_EIO;
    }
    *out = c;
    return 0;
}

static void on_connected(uv_connect_t *req, int status)
{
    ns_conn *c = req->data;
    if (c->state == CONN_CLOSED)
        return; /* timed out or closed meanwhile */
    if (status < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "cannot connect: %s", uv_strerror(status));
        begin_close(c, NS_CONN_IO_FAILED, msg);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    (void)uv_tcp_keepalive(&c->tcp, 1, NS_CONN_KEEPALIVE_S);
    format_peer(c);
    c->state = CONN_HANDSHAKE;
    int rc = ns_tls_handshake(c->tls); /* sends the ClientHello */
    if (rc != NS_TLS_WANT_READ && rc != NS_TLS_OK) {
        fail_tls(c, rc);
        return;
    }
    update_reading(c);
}

int ns_conn_connect(uv_loop_t *loop, const struct sockaddr *addr, const char *peer_name,
                    ns_tls_ctx *tls, const ns_conn_options *opt, const ns_conn_callbacks *cb,
                    void *ud, ns_conn **out)
{
    ns_conn *c;
    int rc = conn_new(loop, tls, peer_name, opt, cb, ud, &c);
    if (rc != 0)
        return rc;
    if (cb->on_tls_session)
        ns_tls_on_session(c->tls, on_engine_session, c);
    /* A session that does not fit (NS_TLS_SESSION_IGNORED) only costs a
     * full handshake. */
    if (opt->tls_session &&
        ns_tls_set_session(c->tls, opt->tls_session, opt->tls_session_len) == NS_TLS_ERR_NOMEM) {
        abandon(c);
        return UV_ENOMEM;
    }
    c->state = CONN_CONNECTING;
    c->connect_req.data = c;
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connected);
    if (rc != 0) {
        abandon(c);
        return rc;
    }
    arm_timer(c, opt->handshake_timeout_ms);
    *out = c;
    return 0;
}

int ns_conn_send(ns_conn *c, const uint8_t *payload, size_t len)
{
    if (c->state != CONN_OPEN)
        return UV_ENOTCONN;
    if (len > NS_FRAME_MAX_LIMIT)
        return UV_E2BIG;
    uint8_t stackbuf[4096];
    uint8_t *buf = stackbuf;
    size_t total = NS_FRAME_HEADER_SIZE + len;
    if (total > sizeof(stackbuf)) {
        buf = malloc(total);
        if (buf == NULL)
            return UV_ENOMEM;
    }
    ns_frame_header(buf, (uint32_t)len);
    if (len)
        memcpy(buf + NS_FRAME_HEADER_SIZE, payload, len);
    /* One TLS write, so header and payload share a record. */
    int rc = ns_tls_write(c->tls, buf, total);
    if (buf != stackbuf)
        free(buf);
    if (rc != NS_TLS_OK) {
        fail_tls(c, rc);
        return UV_EIO;
    }
    update_reading(c);
    return 0;
}

void ns_conn_pause(ns_conn *c)
{
    c->paused = true;
}

void ns_conn_resume(ns_conn *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    if (c->state == CONN_OPEN)
        process(c);
}

void ns_conn_close(ns_conn *c, bool graceful)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->state == CONN_DRAINING || c->state == CONN_LINGERING) {
        if (!graceful)
            close_handles(c); /* stop waiting for the peer */
        return;
    }
    set_close(c, NS_CONN_CLOSED_BY_US, "closed");
    if (!graceful || c->state != CONN_OPEN) {
        close_handles(c);
        return;
    }
    c->no_eof_wait = c->opt.close_without_peer_eof;
    ns_tls_shutdown(c->tls);
    begin_drain(c);
}

bool ns_conn_is_closing(const ns_conn *c)
{
    return c->state == CONN_DRAINING || c->state == CONN_LINGERING || c->state == CONN_CLOSED;
}

size_t ns_conn_write_queue_bytes(const ns_conn *c)
{
    return c->write_queue_bytes;
}

int ns_conn_peer_fingerprint(const ns_conn *c, uint8_t out[32])
{
    return ns_tls_peer_fingerprint(c->tls, out);
}

const char *ns_conn_peer_address(const ns_conn *c)
{
    return c->peer;
}

const char *ns_conn_tls_version(const ns_conn *c)
{
    return ns_tls_version(c->tls);
}

bool ns_conn_tls_resumed(const ns_conn *c)
{
    return ns_tls_resumed(c->tls);
}
