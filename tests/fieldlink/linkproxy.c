/* napsync-linkproxy: the latency and the cuts of the field-link simulator.
 *
 *   napsync-linkproxy --listen HOST:PORT --target HOST:PORT [--delay MS]
 *                     [--cut-every MS [--cut-first MS]] [--stats FILE]
 *
 * tests/fieldlink/link.sh gives a pair of network namespaces their
 * bandwidth (tc tbf) and their loss (iptables statistic); this kernel has
 * no netem, so the delay of the line is this TCP proxy's: every chunk read
 * from either side is written to the other side --delay milliseconds later,
 * in order. A TCP handshake costs no delay here (the kernel completes it
 * before the proxy sees the connection), so a new connection's bytes from
 * the client wait one more round trip (2 x delay) until the first bytes of
 * the target have reached the client: on the real line the client could
 * not have sent them earlier.
 *
 * --cut-every cuts every open connection (a TCP reset on both sides) that
 * often, the first time --cut-first after the start (by default the same).
 * --stats writes, when the proxy stops (SIGTERM or SIGINT), the bytes it
 * delivered each way (TCP payload: TLS records or HTTP, without TCP/IP
 * headers or retransmissions) and the connections it accepted and cut, one
 * "key value" per line.
 *
 * A side is read only while less than PENDING_HIGH bytes of it wait to be
 * delivered, so a slow side pushes back through TCP instead of growing the
 * proxy. IPv4 only: the simulator's addresses are link-local IPv4. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <uv.h>

#define READ_SIZE    65536
#define PENDING_HIGH (256u * 1024u)
#define PENDING_LOW  (64u * 1024u)
#define MAX_CONNS    512
#define MAX_DELAY_MS 60000u
#define MAX_CUT_MS   3600000u
/* How long a reset waits for the bytes before it to leave (then it goes). */
#define RESET_DRAIN_MS 30000u
#define RESET_POLL_MS  20u

/* Direction 0: read from the client (side 0), written to the target (side
 * 1): up. Direction 1: read from the target, written to the client: down. */
enum { UP = 0, DOWN = 1 };

typedef struct lp_conn lp_conn;

typedef struct lp_chunk {
    struct lp_chunk *next;
    lp_conn *c;
    int dir;
    uint64_t due; /* uv_now() time it may be written */
    size_t len;
    bool eof;   /* the side ended its stream: shut the other side down */
    bool reset; /* the side was reset: reset the other side */
    uv_write_t req;
    char data[];
} lp_chunk;

typedef struct {
    lp_chunk *head, *tail; /* waiting for their time, oldest first */
    uint64_t last_due;
    size_t pending; /* bytes waiting or being written */
    bool eof_read;  /* the side this direction reads from has ended */
    bool eof_sent;  /* and the other side was shut down */
} lp_dir;

typedef struct {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t cut_timer;
    uv_signal_t sig[2];
    struct sockaddr_in listen_addr, target_addr;
    uint64_t delay_ms, cut_ms, cut_first_ms;
    bool cut_first_set;
    const char *stats_path;
    lp_conn *conns;
    size_t nconns;
    bool stopping;
    char rbuf[READ_SIZE]; /* every read lands here and is copied into a chunk */
    uint64_t bytes[2];    /* delivered, by direction */
    uint64_t accepted, cut_conns, cuts, next_id;
} lp_proxy;

struct lp_conn {
    lp_proxy *p;
    lp_conn *prev, *next;
    uint64_t id;
    uv_tcp_t side[2];
    uv_timer_t timer[2]; /* per direction: fires when its head is due */
    uv_connect_t creq;
    uv_shutdown_t sreq[2]; /* per side shut down */
    lp_dir d[2];
    uint64_t bytes[2];
    bool connected; /* to the target */
    bool reading[2];
    bool dead[2];      /* side i was reset by its peer: nothing more is written to it */
    bool answered;     /* bytes of the target have been written to the client */
    bool resetting;    /* a reset is due: waiting for the bytes before it to leave */
    uint64_t reset_by; /* uv_now() time it goes regardless */
    int reset_side;    /* the side it resets */
    bool closing;
    int open_handles;
};

static void conn_close(lp_conn *c, bool reset);
static void schedule(lp_conn *c, int dir);
static void reset_poll(uv_timer_t *t);

static void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("linkproxy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

/* ---- reading ---------------------------------------------------------------------------- */

static void free_queue(lp_dir *d)
{
    while (d->head) {
        lp_chunk *next = d->head->next;
        free(d->head);
        d->head = next;
    }
    d->tail = NULL;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    lp_conn *c = h->data;
    /* One read at a time on this single thread: the read callback copies
     * the bytes out before the next read can ask for the buffer. */
    *buf = uv_buf_init(c->p->rbuf, sizeof(c->p->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void read_start(lp_conn *c, int side)
{
    if (c->closing || c->reading[side] || c->d[side].eof_read)
        return;
    if (side == 1 && !c->connected)
        return;
    if (uv_read_start((uv_stream_t *)&c->side[side], on_alloc, on_read) == 0)
        c->reading[side] = true;
}

static void read_stop(lp_conn *c, int side)
{
    if (!c->reading[side])
        return;
    uv_read_stop((uv_stream_t *)&c->side[side]);
    c->reading[side] = false;
}

static void enqueue(lp_conn *c, int dir, lp_chunk *ch)
{
    lp_dir *d = &c->d[dir];
    uint64_t due = uv_now(c->p->loop) + c->p->delay_ms;
    /* The client's bytes before the target's first answer has reached it
     * stand for bytes sent right after a TCP handshake on the real line:
     * one round trip later than here. */
    if (dir == UP && !c->answered)
        due += 2 * c->p->delay_ms;
    if (due < d->last_due)
        due = d->last_due; /* in order, whatever the clock did */
    d->last_due = due;
    ch->due = due;
    ch->c = c;
    ch->dir = dir;
    ch->next = NULL;
    if (d->tail)
        d->tail->next = ch;
    else
        d->head = ch;
    d->tail = ch;
    d->pending += ch->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    lp_conn *c = s->data;
    int dir = (uv_tcp_t *)s == &c->side[0] ? UP : DOWN;
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        read_stop(c, dir);
        c->d[dir].eof_read = true;
        lp_chunk *ch = calloc(1, sizeof(*ch));
        if (ch == NULL) {
            conn_close(c, true);
            return;
        }
        ch->eof = true;
        enqueue(c, dir, ch);
        schedule(c, dir);
        return;
    }
    if (nread < 0) {
        log_msg("connection %" PRIu64 ": %s side: %s", c->id, dir == UP ? "client" : "target",
                uv_strerror((int)nread));
        /* As on a line: what the side sent before its reset still arrives,
         * then the reset; what was on its way to it is lost. */
        read_stop(c, dir);
        c->d[dir].eof_read = true;
        c->dead[dir] = true;
        if (c->dead[1 - dir]) {
            conn_close(c, true); /* both ends are gone */
            return;
        }
        lp_dir *back = &c->d[1 - dir];
        uv_timer_stop(&c->timer[1 - dir]);
        for (lp_chunk *w = back->head; w; w = w->next)
            back->pending -= w->len;
        free_queue(back);
        lp_chunk *ch = calloc(1, sizeof(*ch));
        if (ch == NULL) {
            conn_close(c, true);
            return;
        }
        ch->reset = true;
        enqueue(c, dir, ch);
        schedule(c, dir);
        return;
    }
    lp_chunk *ch = malloc(sizeof(*ch) + (size_t)nread);
    if (ch == NULL) {
        conn_close(c, true);
        return;
    }
    memset(ch, 0, sizeof(*ch));
    memcpy(ch->data, c->p->rbuf, (size_t)nread);
    ch->len = (size_t)nread;
    enqueue(c, dir, ch);
    if (c->d[dir].pending > PENDING_HIGH)
        read_stop(c, dir);
    schedule(c, dir);
}

/* ---- writing ---------------------------------------------------------------------------- */

static void maybe_finish(lp_conn *c)
{
    /* Both sides ended and everything was delivered: an orderly close. */
    for (int dir = 0; dir < 2; dir++)
        if (!c->d[dir].eof_sent || c->d[dir].pending != 0)
            return;
    conn_close(c, false);
}

static void on_write(uv_write_t *req, int status)
{
    lp_chunk *ch = req->data;
    lp_conn *c = ch->c;
    int dir = ch->dir;
    c->d[dir].pending -= ch->len;
    if (status == 0) {
        c->p->bytes[dir] += ch->len;
        c->bytes[dir] += ch->len;
    }
    free(ch);
    if (c->closing)
        return;
    if (status < 0) {
        /* Writing to a side that was reset fails: its reset is already
         * on its way to the other side, behind what that side sent. */
        if (!c->dead[dir == UP ? 1 : 0])
            conn_close(c, true);
        return;
    }
    if (c->d[dir].pending < PENDING_LOW)
        read_start(c, dir);
    maybe_finish(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    lp_conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        if (!c->dead[req == &c->sreq[0] ? 0 : 1])
            conn_close(c, true);
        return;
    }
    maybe_finish(c);
}

/* Resets the connection once the side to be reset has no unsent bytes
 * (SIOCOUTQ) and no write pending, or at reset_by. */
static void reset_poll(uv_timer_t *t)
{
    lp_conn *c = t->data;
    int dir = c->reset_side == 1 ? UP : DOWN;
    uv_os_fd_t fd;
    int unsent = 0;
    if (uv_fileno((uv_handle_t *)&c->side[c->reset_side], &fd) != 0 ||
        ioctl(fd, SIOCOUTQ, &unsent) != 0)
        unsent = 0;
    if ((unsent > 0 || c->d[dir].pending > 0) && uv_now(c->p->loop) < c->reset_by) {
        uv_timer_start(t, reset_poll, RESET_POLL_MS, 0);
        return;
    }
    conn_close(c, true);
}

static void on_due(uv_timer_t *t)
{
    lp_conn *c = t->data;
    if (!c->resetting)
        schedule(c, t == &c->timer[UP] ? UP : DOWN);
}

/* Writes every chunk of dir that is due, then sets the timer for the next. */
static void schedule(lp_conn *c, int dir)
{
    if (c->closing)
        return;
    lp_dir *d = &c->d[dir];
    uv_stream_t *out = (uv_stream_t *)&c->side[dir == UP ? 1 : 0];
    if (dir == UP && !c->connected)
        return; /* on_connect schedules again */
    if (c->dead[dir == UP ? 1 : 0])
        return;
    uint64_t now = uv_now(c->p->loop);
    while (d->head && d->head->due <= now) {
        lp_chunk *ch = d->head;
        d->head = ch->next;
        if (d->head == NULL)
            d->tail = NULL;
        if (ch->reset) {
            free(ch);
            /* A reset overtakes the bytes still in the kernel's send
             * queue; on the line it arrives after them. */
            c->resetting = true;
            c->reset_side = dir == UP ? 1 : 0;
            c->reset_by = now + RESET_DRAIN_MS;
            reset_poll(&c->timer[dir]);
            return;
        }
        if (ch->eof) {
            free(ch);
            int side = dir == UP ? 1 : 0;
            c->sreq[side].data = c;
            if (uv_shutdown(&c->sreq[side], out, on_shutdown) != 0) {
                conn_close(c, true);
                return;
            }
            d->eof_sent = true;
            continue;
        }
        if (dir == DOWN)
            c->answered = true;
        ch->req.data = ch;
        uv_buf_t b = uv_buf_init(ch->data, (unsigned)ch->len);
        if (uv_write(&ch->req, out, &b, 1, on_write) != 0) {
            d->pending -= ch->len;
            free(ch);
            conn_close(c, true);
            return;
        }
    }
    if (d->head)
        uv_timer_start(&c->timer[dir], on_due, d->head->due - now, 0);
}

/* ---- connections ------------------------------------------------------------------------ */

static void on_conn_closed(uv_handle_t *h)
{
    lp_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    /* Every write and shutdown has been called back (libuv does that
     * before a stream's close callback): only waiting chunks remain. */
    free_queue(&c->d[UP]);
    free_queue(&c->d[DOWN]);
    free(c);
}

static void close_side(uv_tcp_t *t, bool reset)
{
    if (uv_is_closing((uv_handle_t *)t))
        return;
    /* A reset is what a cut line looks like to both ends; it is refused
     * while a shutdown is under way, then the close is an orderly one. */
    if (reset && uv_tcp_close_reset(t, on_conn_closed) == 0)
        return;
    uv_close((uv_handle_t *)t, on_conn_closed);
}

static void conn_close(lp_conn *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    lp_proxy *p = c->p;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->nconns--;
    log_msg("connection %" PRIu64 " %s (up %" PRIu64 ", down %" PRIu64 " bytes)", c->id,
            reset ? "reset" : "closed", c->bytes[UP], c->bytes[DOWN]);
    for (int i = 0; i < 2; i++) {
        uv_timer_stop(&c->timer[i]);
        uv_close((uv_handle_t *)&c->timer[i], on_conn_closed);
        close_side(&c->side[i], reset);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    lp_conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        log_msg("connection %" PRIu64 ": cannot reach the target: %s", c->id, uv_strerror(status));
        conn_close(c, true);
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->side[1], 1);
    read_start(c, 1);
    schedule(c, UP);
}

static void on_accept(uv_stream_t *server, int status)
{
    lp_proxy *p = server->data;
    if (status < 0) {
        log_msg("accept: %s", uv_strerror(status));
        return;
    }
    lp_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->p = p;
    c->id = ++p->next_id;
    uv_tcp_init(p->loop, &c->side[0]);
    uv_tcp_init(p->loop, &c->side[1]);
    uv_timer_init(p->loop, &c->timer[0]);
    uv_timer_init(p->loop, &c->timer[1]);
    c->side[0].data = c->side[1].data = c->timer[0].data = c->timer[1].data = c;
    c->open_handles = 4;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->side[0]) != 0 || p->stopping ||
        p->nconns > MAX_CONNS) {
        conn_close(c, true);
        return;
    }
    p->accepted++;
    log_msg("connection %" PRIu64 " accepted", c->id);
    uv_tcp_nodelay(&c->side[0], 1);
    c->creq.data = c;
    int rc =
        uv_tcp_connect(&c->creq, &c->side[1], (const struct sockaddr *)&p->target_addr, on_connect);
    if (rc != 0) {
        log_msg("connection %" PRIu64 ": cannot connect to the target: %s", c->id, uv_strerror(rc));
        conn_close(c, true);
        return;
    }
    read_start(c, 0);
}

/* ---- cuts, signals, stats --------------------------------------------------------------- */

static void on_cut(uv_timer_t *t)
{
    lp_proxy *p = t->data;
    size_t n = p->nconns;
    while (p->conns)
        conn_close(p->conns, true);
    p->cuts++;
    p->cut_conns += n;
    log_msg("cut %zu connection%s", n, n == 1 ? "" : "s");
}

static void on_signal(uv_signal_t *s, int signum)
{
    lp_proxy *p = s->data;
    if (p->stopping)
        return;
    log_msg("signal %d: stopping", signum);
    p->stopping = true;
    uv_close((uv_handle_t *)&p->listener, NULL);
    uv_close((uv_handle_t *)&p->cut_timer, NULL);
    while (p->conns)
        conn_close(p->conns, true);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&p->sig[i], NULL);
}

static int write_stats(const lp_proxy *p)
{
    if (p->stats_path == NULL)
        return 0;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", p->stats_path) >= sizeof(tmp)) {
        log_msg("--stats: path too long");
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        log_msg("cannot write %s", tmp);
        return -1;
    }
    fprintf(f, "up_bytes %" PRIu64 "\ndown_bytes %" PRIu64 "\n", p->bytes[UP], p->bytes[DOWN]);
    fprintf(f, "connections %" PRIu64 "\ncut_connections %" PRIu64 "\ncuts %" PRIu64 "\n",
            p->accepted, p->cut_conns, p->cuts);
    if (fclose(f) != 0 || rename(tmp, p->stats_path) != 0) {
        log_msg("cannot write %s", p->stats_path);
        return -1;
    }
    return 0;
}

/* ---- options ---------------------------------------------------------------------------- */

static int parse_addr(const char *opt, const char *s, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(host)) {
        fprintf(stderr, "linkproxy: %s must be IPv4:PORT, not '%s'\n", opt, s);
        return -1;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port == 0 || port > 65535 ||
        uv_ip4_addr(host, (int)port, out) != 0) {
        fprintf(stderr, "linkproxy: %s must be IPv4:PORT, not '%s'\n", opt, s);
        return -1;
    }
    return 0;
}

static int parse_ms(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || v > max) {
        fprintf(stderr, "linkproxy: %s must be 0 to %" PRIu64 " milliseconds, not '%s'\n", opt, max,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: napsync-linkproxy --listen IPv4:PORT --target IPv4:PORT [--delay MS]\n"
          "                         [--cut-every MS [--cut-first MS]] [--stats FILE]\n",
          f);
}

int main(int argc, char **argv)
{
    static lp_proxy proxy; /* the read buffer is large: not on the stack */
    lp_proxy *p = &proxy;
    bool have_listen = false, have_target = false;
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"target", required_argument, NULL, 't'},
        {"delay", required_argument, NULL, 'd'},
        {"cut-every", required_argument, NULL, 'c'},
        {"cut-first", required_argument, NULL, 'f'},
        {"stats", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'l':
            if (parse_addr("--listen", optarg, &p->listen_addr) != 0)
                return 2;
            have_listen = true;
            break;
        case 't':
            if (parse_addr("--target", optarg, &p->target_addr) != 0)
                return 2;
            have_target = true;
            break;
        case 'd':
            if (parse_ms("--delay", optarg, MAX_DELAY_MS, &p->delay_ms) != 0)
                return 2;
            break;
        case 'c':
            if (parse_ms("--cut-every", optarg, MAX_CUT_MS, &p->cut_ms) != 0)
                return 2;
            break;
        case 'f':
            if (parse_ms("--cut-first", optarg, MAX_CUT_MS, &p->cut_first_ms) != 0)
                return 2;
            p->cut_first_set = true;
            break;
        case 's':
            p->stats_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !have_listen || !have_target) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    p->loop = uv_default_loop();
    uv_tcp_init(p->loop, &p->listener);
    p->listener.data = p;
    int rc = uv_tcp_bind(&p->listener, (const struct sockaddr *)&p->listen_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->listener, 128, on_accept);
    if (rc != 0) {
        fprintf(stderr, "linkproxy: cannot listen: %s\n", uv_strerror(rc));
        return 1;
    }
    uv_timer_init(p->loop, &p->cut_timer);
    p->cut_timer.data = p;
    if (p->cut_ms > 0)
        uv_timer_start(&p->cut_timer, on_cut, p->cut_first_set ? p->cut_first_ms : p->cut_ms,
                       p->cut_ms);
    const int sigs[2] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(p->loop, &p->sig[i]);
        p->sig[i].data = p;
        uv_signal_start(&p->sig[i], on_signal, sigs[i]);
    }
    char la[32], ta[32];
    uv_ip4_name(&p->listen_addr, la, sizeof(la));
    uv_ip4_name(&p->target_addr, ta, sizeof(ta));
    log_msg("listening on %s:%u, to %s:%u, delay %" PRIu64 " ms each way, cut every %" PRIu64
            " ms (the first after %" PRIu64 " ms)",
            la, (unsigned)ntohs(p->listen_addr.sin_port), ta,
            (unsigned)ntohs(p->target_addr.sin_port), p->delay_ms, p->cut_ms,
            p->cut_first_set ? p->cut_first_ms : p->cut_ms);

    uv_run(p->loop, UV_RUN_DEFAULT);
    rc = write_stats(p);
    log_msg("stopped: up %" PRIu64 ", down %" PRIu64 " bytes, %" PRIu64 " connections, %" PRIu64
            " cut",
            p->bytes[UP], p->bytes[DOWN], p->accepted, p->cut_conns);
    if (uv_loop_close(p->loop) != 0)
        log_msg("handles left open at exit");
    return rc == 0 ? 0 : 1;
}
