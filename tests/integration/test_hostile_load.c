/* Hostile and careless clients beside a well-behaved one (issue 5, item 3).
 *
 * One daemon with small limits. The good device keeps one session, G, that
 * pings between every step; hostile clients run concurrently with it (in
 * threads, which record what happened and never fail the test themselves:
 * the main thread judges). After each test: every ping of G was answered, a
 * fresh session of the good device authenticates, the daemon's RSS (VmRSS of
 * the process the harness started) stayed under its baseline + 64 MiB, and
 * each limit hit was logged once per event ("limit <setting>"), or once for a
 * whole flood of connections. Nothing here measures how fast anything was. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "harness.h"

#define ERR(name)  NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name
#define BODY(name) NAPSYNC__V1__ENVELOPE__BODY_##name

/* The daemon's limits for this program. */
#define MAX_SESSIONS    24
#define PER_DEVICE      5
#define HANDSHAKE_MS    3000
#define SEND_TIMEOUT_MS 2000
#define QUEUED_BYTES    (1024 * 1024)
#define PUSH_MAX        500
#define PAGE_MAX        400

/* deploy/demo.sql's lead ministry: the devices' organisation. */
#define ORG_ID "0e000000-0000-4000-8000-000000000001"
/* Plans made by the good device, so that pages are large: more than
 * PAGE_MAX, in one Push of PUSH_MAX. */
#define SEED_PLANS PUSH_MAX
#define TITLE_LEN  280

#define RSS_SLACK_KB (64L * 1024L)
/* Pings of G while the concurrent hostile clients run, at the least. */
#define MIN_GOOD_PINGS 20
#define NO_TLS_CONNS   3
#define FLOOD_MAX_FDS  400

static const char *const flags[] = {"--max-sessions",
                                    "24",
                                    "--max-sessions-per-device",
                                    "5",
                                    "--handshake-timeout-ms",
                                    "3000",
                                    "--idle-timeout-ms",
                                    "120000",
                                    "--send-timeout-ms",
                                    "2000",
                                    "--max-queued-bytes",
                                    "1048576",
                                    "--max-push-mutations",
                                    "500",
                                    "--max-pull-page-size",
                                    "400",
                                    "--max-subscriptions",
                                    "1",
                                    NULL};

typedef struct {
    nst_env *e;
    nst_device good, bad, crowd;
    nst_raw g; /* the good session */
    uint64_t g_rid;
    uint64_t pings_sent, pings_answered;
    long rss_base_kb, rss_max_kb;
    size_t page_len; /* bytes of a full ChangePage frame of the seeded plans */
    bool ready;
} fixture;
NST_FIXTURE_CHECK(fixture);

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    f->g.fd = -1;
#ifdef __SANITIZE_ADDRESS__
    /* ASan holds freed memory in a quarantine (256 MiB by default) before
     * reusing it, so the RSS of a sanitized daemon would measure ASan. A
     * small quarantine (the daemon inherits this) still catches a use after
     * free of what was freed recently. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=16", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
#endif
    const nst_member m[] = {
        {&f->good, "good-tablet", "mogender", "Good Officer", "coordinator", NULL, NULL},
        {&f->bad, "bad-laptop", "mogender", "Bad Officer", "coordinator", NULL, NULL},
        {&f->crowd, "crowd-phone", "mogender", "Crowd Officer", "coordinator", NULL, NULL},
    };
    return nst_group_start(&f->e, "hostile_load", flags, m, NST_COUNT(m));
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f != NULL)
        nst_raw_close(&f->g);
    return nst_group_teardown(state);
}

/* ---- the daemon's memory and log ------------------------------------------------- */

/* VmRSS of the daemon in KiB, or -1. */
static long daemon_rss_kb(const nst_env *e)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)e->pid);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(fp);
    return kb;
}

static void sample_rss(fixture *f)
{
    long kb = daemon_rss_kb(f->e);
    if (kb < 0)
        nst_fail(f->e, "cannot read the daemon's VmRSS");
    if (kb > f->rss_max_kb)
        f->rss_max_kb = kb;
}

/* Occurrences of needle in the daemon log after offset from, on lines
 * above debug level (the harness runs the daemon at debug level; what an
 * operator sees at the default level is what "once" is about). */
static int log_count(const fixture *f, size_t from, const char *needle)
{
    FILE *fp = fopen(f->e->log_path, "r");
    if (fp == NULL)
        return -1;
    if (fseek(fp, (long)from, SEEK_SET) != 0) {
        fclose(fp);
        return -1;
    }
    int n = 0;
    char line[4096];
    while (fgets(line, sizeof(line), fp)) {
        if (strstr(line, "level=debug") != NULL)
            continue;
        for (const char *p = line; (p = strstr(p, needle)) != NULL; p += strlen(needle))
            n++;
    }
    fclose(fp);
    return n;
}

static void expect_logged(const fixture *f, size_t from, const char *needle, int times)
{
    int n = log_count(f, from, needle);
    if (n != times)
        nst_fail(f->e, "\"%s\" logged %d times, expected %d", needle, n, times);
}

/* ---- the good session ----------------------------------------------------------- */

/* One ping of G: counted as answered only when its Pong arrives. */
static void good_ping(fixture *f)
{
    uint64_t rid = f->g_rid++;
    f->pings_sent++;
    if (nst_raw_send_ping(&f->g, rid, "g", 1) != 0)
        nst_fail(f->e, "the good session could not send ping %llu: %s", (unsigned long long)rid,
                 f->g.error);
    ns_envelope *env = NULL;
    nst_read_status st = nst_raw_read(&f->g, NST_WAIT_MS, &env);
    bool pong = st == NST_READ_FRAME && env->body_case == BODY(PONG) && env->request_id == rid;
    ns_envelope_free(env);
    if (pong)
        f->pings_answered++;
    sample_rss(f);
}

static int append_pull(uint8_t **buf, size_t *len, uint64_t rid, uint32_t page_size)
{
    Napsync__V1__Scope sc = NAPSYNC__V1__SCOPE__INIT;
    sc.kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
    sc.organisation_id = ORG_ID;
    Napsync__V1__Scope *scopes[1] = {&sc};
    Napsync__V1__Pull pull = NAPSYNC__V1__PULL__INIT;
    pull.cursor = "";
    pull.n_scopes = 1;
    pull.scopes = scopes;
    pull.page_size = page_size;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = BODY(PULL);
    env.pull = &pull;
    return nst_frame_append_env(buf, len, &env);
}

static int append_subscribe(uint8_t **buf, size_t *len, uint64_t rid)
{
    Napsync__V1__Scope sc = NAPSYNC__V1__SCOPE__INIT;
    sc.kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
    sc.organisation_id = ORG_ID;
    Napsync__V1__Scope *scopes[1] = {&sc};
    Napsync__V1__Subscribe sub = NAPSYNC__V1__SUBSCRIBE__INIT;
    sub.cursor = "";
    sub.n_scopes = 1;
    sub.scopes = scopes;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = BODY(SUBSCRIBE);
    env.subscribe = &sub;
    return nst_frame_append_env(buf, len, &env);
}

static void send_frames(fixture *f, nst_raw *r, uint8_t *buf, size_t len)
{
    nst_must_raw_write(f->e, r, buf, len);
    free(buf);
}

/* A Push of n plan creates, numbered from first (titles "<prefix>-<i>",
 * padded to TITLE_LEN), as one frame appended to buf. */
static int append_plan_push(uint8_t **buf, size_t *len, uint64_t rid, const char *prefix,
                            unsigned first, unsigned n)
{
    Napsync__V1__Mutation *m = calloc(n, sizeof(*m));
    Napsync__V1__Mutation **ms = calloc(n, sizeof(*ms));
    nst_plan_pb *fields = calloc(n, sizeof(*fields));
    char(*ids)[2][37] = calloc(n, sizeof(*ids));
    char(*titles)[TITLE_LEN + 1] = calloc(n, sizeof(*titles));
    int rc = -1;
    if (m == NULL || ms == NULL || fields == NULL || ids == NULL || titles == NULL)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        unsigned k = first + i;
        snprintf(ids[i][0], sizeof(ids[i][0]), "5e000000-0000-4000-8000-%012x", k);
        snprintf(ids[i][1], sizeof(ids[i][1]), "5f000000-0000-4000-8000-%012x", k);
        int t = snprintf(titles[i], sizeof(titles[i]), "%s-%u ", prefix, k);
        memset(titles[i] + t, 'x', TITLE_LEN - (size_t)t);
        nst_plan_pb_init(&fields[i], titles[i], "adopted");
        napsync__v1__mutation__init(&m[i]);
        m[i].mutation_id = ids[i][1];
        m[i].entity_type = "plan";
        m[i].record_id = ids[i][0];
        m[i].op = NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE;
        m[i].fields = &fields[i].set;
        ms[i] = &m[i];
    }
    Napsync__V1__Push push = NAPSYNC__V1__PUSH__INIT;
    push.n_mutations = n;
    push.mutations = ms;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = BODY(PUSH);
    env.push = &push;
    rc = nst_frame_append_env(buf, len, &env);
out:
    free(m);
    free(ms);
    free(fields);
    free(ids);
    free(titles);
    return rc;
}

/* Once: G authenticates, pushes the seed plans, pulls a full page (so that
 * the daemon has built one before its RSS is taken as the baseline). */
static void ensure_ready(fixture *f)
{
    if (f->ready)
        return;
    nst_env *e = f->e;
    f->g_rid = 1000;
    nst_must_raw_auth(e, &f->g, &f->good, f->g_rid++);

    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t rid = f->g_rid++;
    assert_int_equal(append_plan_push(&buf, &len, rid, "seed", 0, SEED_PLANS), 0);
    send_frames(f, &f->g, buf, len);
    ns_envelope *res = nst_expect_frame(e, &f->g, BODY(PUSH_RESULT));
    assert_int_equal(res->request_id, rid);
    assert_int_equal(res->push_result->n_results, SEED_PLANS);
    for (size_t i = 0; i < res->push_result->n_results; i++)
        if (res->push_result->results[i]->outcome !=
            NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED)
            nst_fail(e, "seed plan %zu was not applied: %s", i,
                     res->push_result->results[i]->reject_reason);
    ns_envelope_free(res);

    buf = NULL;
    len = 0;
    rid = f->g_rid++;
    assert_int_equal(append_pull(&buf, &len, rid, PAGE_MAX), 0);
    send_frames(f, &f->g, buf, len);
    ns_envelope *page = nst_expect_frame(e, &f->g, BODY(CHANGE_PAGE));
    assert_int_equal(page->request_id, rid);
    assert_int_equal(page->change_page->n_records, PAGE_MAX);
    f->page_len = napsync__v1__envelope__get_packed_size(page) + NS_FRAME_HEADER_SIZE;
    ns_envelope_free(page);

    good_ping(f);
    f->rss_base_kb = daemon_rss_kb(e);
    f->rss_max_kb = f->rss_base_kb;
    assert_true(f->rss_base_kb > 0);
    f->ready = true;
}

/* What must hold after every test. */
static void others_unaffected(fixture *f)
{
    good_ping(f);
    nst_raw fresh;
    nst_must_raw_auth(f->e, &fresh, &f->good, 1);
    nst_must_raw_ping(f->e, &fresh, 2);
    nst_raw_close(&fresh);
    good_ping(f);
    if (f->pings_answered != f->pings_sent)
        nst_fail(f->e, "the good session had %llu of %llu pings answered",
                 (unsigned long long)f->pings_answered, (unsigned long long)f->pings_sent);
    if (f->rss_max_kb > f->rss_base_kb + RSS_SLACK_KB)
        nst_fail(f->e, "the daemon's RSS reached %ld KiB, from a baseline of %ld KiB",
                 f->rss_max_kb, f->rss_base_kb);
}

/* ---- hostile clients, one per thread -------------------------------------------------- */

/* Thread-safe pieces: they report, never fail the test. */
static int raw_tls(const nst_env *e, nst_raw *r, const nst_device *d)
{
    nst_raw_opts o = {.cert = d->cert, .key = d->key, .ca = e->ca_cert};
    return nst_raw_connect(r, e->port, &o);
}

static int raw_auth(const nst_env *e, nst_raw *r, const nst_device *d)
{
    if (raw_tls(e, r, d) != 0 || nst_raw_send_hello(r, 1, 1, 1) != 0)
        return -1;
    ns_envelope *env = NULL;
    bool ok =
        nst_raw_read(r, NST_WAIT_MS, &env) == NST_READ_FRAME && env->body_case == BODY(WELCOME);
    ns_envelope_free(env);
    return ok ? 0 : -1;
}

/* The next frame within NST_WAIT_MS is a fatal Error{code}, then the end. */
static bool fatal_then_closed(nst_raw *r, int code)
{
    ns_envelope *env = NULL;
    bool ok = nst_raw_read(r, NST_WAIT_MS, &env) == NST_READ_FRAME &&
              env->body_case == BODY(ERROR) && (int)env->error->code == code && env->error->fatal;
    ns_envelope_free(env);
    env = NULL;
    ok = ok && nst_raw_read(r, NST_WAIT_MS, &env) == NST_READ_CLOSED;
    ns_envelope_free(env);
    return ok;
}

typedef struct {
    const nst_env *e;
    const nst_device *bad;
    size_t page_len;
    atomic_bool stop; /* set by the main thread when the others may end */
    /* Results, read after join. */
    int no_tls_closed;         /* of NO_TLS_CONNS silent TCP connections */
    bool slowloris_closed;     /* a TLS ClientHello trickled at a byte per second */
    bool trickle_timeout;      /* a Hello trickled a byte per second: Error TIMEOUT */
    bool huge_refused;         /* a 4 GiB frame announced: Error FRAME_TOO_LARGE */
    uint64_t flood_pongs;      /* pings flooded and answered */
    bool flood_ok;             /* every Pong in order */
    bool reader_cut;           /* the client that never read was closed */
    uint64_t reader_requested; /* bytes of answers it asked for */
    atomic_int done;           /* threads finished, but for the flood and the reader */
} hostile;

static void *no_tls_worker(void *arg)
{
    hostile *h = arg;
    int fds[NO_TLS_CONNS];
    for (int i = 0; i < NO_TLS_CONNS; i++)
        fds[i] = nst_tcp_connect(h->e->port);
    for (int i = 0; i < NO_TLS_CONNS; i++) {
        if (fds[i] >= 0 && nst_fd_wait_closed(fds[i], HANDSHAKE_MS + NST_WAIT_MS) == 0)
            h->no_tls_closed++;
        if (fds[i] >= 0)
            close(fds[i]);
    }
    atomic_fetch_add(&h->done, 1);
    return NULL;
}

/* The start of a TLS 1.2 ClientHello record, a byte per second. */
static void *slowloris_worker(void *arg)
{
    hostile *h = arg;
    static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03,
                                    0x03, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
    int fd = nst_tcp_connect(h->e->port);
    if (fd >= 0) {
        uint64_t deadline = nst_now_ms() + HANDSHAKE_MS + NST_WAIT_MS;
        for (size_t i = 0; !h->slowloris_closed && nst_now_ms() < deadline; i++) {
            if (i < sizeof(hello))
                (void)send(fd, hello + i, 1, MSG_NOSIGNAL);
            h->slowloris_closed = nst_fd_wait_closed(fd, 1000) == 0;
        }
        close(fd);
    }
    atomic_fetch_add(&h->done, 1);
    return NULL;
}

/* TLS, then a Hello a byte per second: the Hello deadline ends it. */
static void *trickle_worker(void *arg)
{
    hostile *h = arg;
    nst_raw r;
    uint8_t *hello = NULL;
    size_t len = 0;
    if (raw_tls(h->e, &r, h->bad) == 0 && nst_frame_append_hello(&hello, &len, 1, 1, 1) == 0) {
        ns_envelope *env = NULL;
        nst_read_status st = NST_READ_TIMEOUT;
        uint64_t deadline = nst_now_ms() + HANDSHAKE_MS + NST_WAIT_MS;
        for (size_t i = 0; st == NST_READ_TIMEOUT && nst_now_ms() < deadline; i++) {
            if (i < len - 1) /* never the last byte */
                (void)nst_raw_write(&r, hello + i, 1);
            st = nst_raw_read(&r, 1000, &env);
        }
        h->trickle_timeout = st == NST_READ_FRAME && env->body_case == BODY(ERROR) &&
                             env->error->code == ERR(TIMEOUT) && env->error->fatal;
        ns_envelope_free(env);
    }
    free(hello);
    nst_raw_close(&r);
    atomic_fetch_add(&h->done, 1);
    return NULL;
}

static void *huge_frame_worker(void *arg)
{
    hostile *h = arg;
    nst_raw r;
    if (raw_auth(h->e, &r, h->bad) == 0) {
        uint8_t hdr[NS_FRAME_HEADER_SIZE];
        ns_frame_header(hdr, 0xffffffffu); /* 4 GiB - 1 */
        h->huge_refused =
            nst_raw_write(&r, hdr, sizeof(hdr)) == 0 && fatal_then_closed(&r, ERR(FRAME_TOO_LARGE));
    }
    nst_raw_close(&r);
    atomic_fetch_add(&h->done, 1);
    return NULL;
}

/* Pings as fast as the daemon answers them, in trains of 256, until told
 * to stop. */
static void *flood_worker(void *arg)
{
    hostile *h = arg;
    enum { TRAIN = 256 };
    nst_raw r;
    h->flood_ok = raw_auth(h->e, &r, h->bad) == 0;
    uint64_t rid = 2;
    while (h->flood_ok && !atomic_load(&h->stop)) {
        uint8_t *buf = NULL;
        size_t len = 0;
        for (uint64_t i = 0; i < TRAIN; i++)
            h->flood_ok = h->flood_ok && nst_frame_append_ping(&buf, &len, rid + i, "f", 1) == 0;
        h->flood_ok = h->flood_ok && nst_raw_write(&r, buf, len) == 0;
        free(buf);
        for (uint64_t i = 0; h->flood_ok && i < TRAIN; i++) {
            ns_envelope *env = NULL;
            h->flood_ok = nst_raw_read(&r, NST_WAIT_MS, &env) == NST_READ_FRAME &&
                          env->body_case == BODY(PONG) && env->request_id == rid + i;
            ns_envelope_free(env);
            if (h->flood_ok)
                h->flood_pongs++;
        }
        rid += TRAIN;
    }
    nst_raw_close(&r);
    return NULL;
}

/* Asks for far more than the daemon may hold for it (full pages of the
 * seeded plans), never reads, and waits to be cut off. */
static void *reader_worker(void *arg)
{
    hostile *h = arg;
    nst_raw r;
    if (raw_auth(h->e, &r, h->bad) == 0) {
        size_t npulls = (size_t)(2 * RSS_SLACK_KB * 1024 / (long)h->page_len) + 1;
        uint8_t *buf = NULL;
        size_t len = 0;
        bool built = true;
        for (size_t i = 0; built && i < npulls; i++)
            built = append_pull(&buf, &len, 2 + i, PAGE_MAX) == 0;
        if (built && nst_raw_write(&r, buf, len) == 0)
            h->reader_requested = (uint64_t)npulls * h->page_len;
        free(buf);
        while (!atomic_load(&h->stop))
            nst_sleep_ms(50);
        /* Whatever the kernel still holds for it, then the end. */
        ns_envelope *env = NULL;
        nst_read_status st;
        uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
        while ((st = nst_raw_read(&r, NST_WAIT_MS, &env)) == NST_READ_FRAME &&
               nst_now_ms() < deadline) {
            ns_envelope_free(env);
            env = NULL;
        }
        ns_envelope_free(env);
        h->reader_cut = st == NST_READ_CLOSED;
    }
    nst_raw_close(&r);
    return NULL;
}

/* Every kind of hostile client at once, beside G. */
static void test_concurrent_hostile_clients(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ensure_ready(f);
    size_t log_from = nst_log_size(e);
    hostile h = {.e = e, .bad = &f->bad, .page_len = f->page_len};
    atomic_init(&h.stop, false);
    atomic_init(&h.done, 0);
    void *(*const finite[])(void *) = {no_tls_worker, slowloris_worker, trickle_worker,
                                       huge_frame_worker};
    enum { NFINITE = sizeof(finite) / sizeof(finite[0]) };
    pthread_t tids[NFINITE + 2];
    for (int i = 0; i < NFINITE; i++)
        assert_int_equal(pthread_create(&tids[i], NULL, finite[i], &h), 0);
    assert_int_equal(pthread_create(&tids[NFINITE], NULL, flood_worker, &h), 0);
    assert_int_equal(pthread_create(&tids[NFINITE + 1], NULL, reader_worker, &h), 0);

    /* G pings until the finite clients are done and the reader was cut,
     * and at least MIN_GOOD_PINGS times. */
    uint64_t pings = 0;
    uint64_t deadline = nst_now_ms() + HANDSHAKE_MS + 3 * NST_WAIT_MS;
    while (pings < MIN_GOOD_PINGS || atomic_load(&h.done) < NFINITE ||
           log_count(f, log_from, "limit send_timeout_ms") < 1) {
        if (nst_now_ms() > deadline)
            break;
        good_ping(f);
        pings++;
        nst_sleep_ms(20);
    }
    atomic_store(&h.stop, true);
    for (int i = 0; i < NFINITE + 2; i++)
        pthread_join(tids[i], NULL);

    print_message("RSS baseline %ld KiB, at most %ld KiB; the reader asked for %llu MiB; "
                  "%llu Pongs to the flood; G pinged %llu times\n",
                  f->rss_base_kb, f->rss_max_kb, (unsigned long long)(h.reader_requested >> 20),
                  (unsigned long long)h.flood_pongs, (unsigned long long)pings);
    if (h.no_tls_closed != NO_TLS_CONNS)
        nst_fail(e, "%d of %d connections that never started TLS were closed", h.no_tls_closed,
                 NO_TLS_CONNS);
    if (!h.slowloris_closed)
        nst_fail(e, "a TLS handshake trickled a byte per second was not cut");
    if (!h.trickle_timeout)
        nst_fail(e, "a Hello trickled a byte per second did not get Error TIMEOUT");
    if (!h.huge_refused)
        nst_fail(e, "a 4 GiB frame was not refused with a fatal FRAME_TOO_LARGE and a close");
    if (!h.flood_ok || h.flood_pongs == 0)
        nst_fail(e, "the ping flood was not answered in order (%llu Pongs)",
                 (unsigned long long)h.flood_pongs);
    if (!h.reader_cut)
        nst_fail(e, "the client that never read was not cut off");
    /* The premise: it asked for far more than the daemon's RSS may grow. */
    if (h.reader_requested < 2 * (uint64_t)RSS_SLACK_KB * 1024)
        nst_fail(e, "the reader asked for only %llu bytes", (unsigned long long)h.reader_requested);
    if (pings < MIN_GOOD_PINGS)
        nst_fail(e, "the hostile clients were not done in time (%llu pings of G)",
                 (unsigned long long)pings);

    /* Three silent connections, the trickled ClientHello, the trickled Hello. */
    expect_logged(f, log_from, "limit handshake_timeout_ms", NO_TLS_CONNS + 2);
    expect_logged(f, log_from, "limit max_frame_size", 1);
    expect_logged(f, log_from, "limit send_timeout_ms", 1);
    others_unaffected(f);
    nst_test_passed(e);
}

/* ---- one limit at a time, G pinging in between -------------------------------------- */

/* Subscriptions: at most 1 on the server. A second is BUSY (not fatal);
 * a second on the same session INVALID_ARGUMENT; the place comes back when
 * the first subscriber goes. */
static void test_max_subscriptions(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ensure_ready(f);
    size_t log_from = nst_log_size(e);
    nst_raw a, b;
    nst_must_raw_auth(e, &a, &f->bad, 1);
    nst_must_raw_auth(e, &b, &f->bad, 1);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(append_subscribe(&buf, &len, 2), 0);
    send_frames(f, &a, buf, len);
    /* Catch-up pages until the subscriber is current. */
    for (bool more = true; more;) {
        ns_envelope *page = nst_expect_frame(e, &a, BODY(CHANGE_PAGE));
        assert_int_equal(page->request_id, 2);
        more = page->change_page->more;
        ns_envelope_free(page);
    }
    good_ping(f);

    /* B twice, so that the second refusal shows it is logged once. */
    for (uint64_t rid = 2; rid <= 3; rid++) {
        buf = NULL;
        len = 0;
        assert_int_equal(append_subscribe(&buf, &len, rid), 0);
        send_frames(f, &b, buf, len);
        ns_envelope *env = nst_expect_frame(e, &b, BODY(ERROR));
        bool busy = env->request_id == rid && env->error->code == ERR(BUSY) && !env->error->fatal &&
                    strstr(env->error->message, "max_subscriptions");
        ns_envelope_free(env);
        if (!busy)
            nst_fail(e, "a subscription over max_subscriptions was not refused with BUSY");
    }
    nst_must_raw_ping(e, &b, 4);

    buf = NULL;
    len = 0;
    assert_int_equal(append_subscribe(&buf, &len, 3), 0);
    send_frames(f, &a, buf, len);
    nst_expect_error(e, &a, 3, ERR(INVALID_ARGUMENT), false);
    nst_raw_close(&a);
    good_ping(f);

    /* A's place is free once the daemon has seen it go. */
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    for (uint64_t rid = 5;; rid++) {
        buf = NULL;
        len = 0;
        assert_int_equal(append_subscribe(&buf, &len, rid), 0);
        send_frames(f, &b, buf, len);
        ns_envelope *env = NULL;
        nst_read_status st = nst_raw_read(&b, NST_WAIT_MS, &env);
        bool page =
            st == NST_READ_FRAME && env->body_case == BODY(CHANGE_PAGE) && env->request_id == rid;
        bool busy = st == NST_READ_FRAME && env->body_case == BODY(ERROR) &&
                    env->error->code == ERR(BUSY) && !env->error->fatal;
        ns_envelope_free(env);
        if (page)
            break;
        if (!busy || nst_now_ms() > deadline)
            nst_fail(e, "the subscription's place did not come back (status %d)", st);
        nst_sleep_ms(100);
    }
    nst_raw_close(&b);
    expect_logged(f, log_from, "limit max_subscriptions", 1);
    others_unaffected(f);
    nst_test_passed(e);
}

/* Subscribes r (request ids from *rid on) once the server's one place is
 * free (a subscriber that has just gone may hold it a moment longer), and
 * reads the catch-up pages until it is current. */
static void subscribe_when_free(fixture *f, nst_raw *r, uint64_t *rid)
{
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    for (;; (*rid)++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(append_subscribe(&buf, &len, *rid), 0);
        send_frames(f, r, buf, len);
        ns_envelope *env = NULL;
        nst_read_status st = nst_raw_read(r, NST_WAIT_MS, &env);
        bool page =
            st == NST_READ_FRAME && env->body_case == BODY(CHANGE_PAGE) && env->request_id == *rid;
        bool busy = st == NST_READ_FRAME && env->body_case == BODY(ERROR) &&
                    env->error->code == ERR(BUSY) && !env->error->fatal;
        bool more = page && env->change_page->more;
        ns_envelope_free(env);
        if (page) {
            while (more) {
                env = nst_expect_frame(f->e, r, BODY(CHANGE_PAGE));
                assert_int_equal(env->request_id, *rid);
                more = env->change_page->more;
                ns_envelope_free(env);
            }
            (*rid)++;
            return;
        }
        if (!busy || nst_now_ms() > deadline)
            nst_fail(f->e, "could not subscribe (status %d)", st);
        nst_sleep_ms(100);
    }
}

/* A subscriber that stops reading while it asks for much more: once its
 * output is above max_queued_bytes, the pages of changes in its scopes are
 * held back (not queued without end), and the send timeout cuts it off. */
static void test_subscriber_that_does_not_read(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ensure_ready(f);
    size_t log_from = nst_log_size(e);
    nst_raw s;
    nst_must_raw_auth(e, &s, &f->bad, 1);
    uint64_t rid = 2;
    subscribe_when_free(f, &s, &rid);
    uint8_t *buf = NULL;
    size_t len = 0;
    size_t npulls = (size_t)(8 * QUEUED_BYTES) / f->page_len + 1;
    for (size_t i = 0; i < npulls; i++)
        assert_int_equal(append_pull(&buf, &len, rid++, PAGE_MAX), 0);
    send_frames(f, &s, buf, len);
    /* Changes in its scope, one per Push of G, until one found the
     * subscription's output full. */
    static const char *const held = "holding back the subscription";
    bool found = false;
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    for (unsigned n = 0; !found && nst_now_ms() < deadline; n++) {
        buf = NULL;
        len = 0;
        uint64_t prid = f->g_rid++;
        assert_int_equal(append_plan_push(&buf, &len, prid, "wake", 200000 + n, 1), 0);
        send_frames(f, &f->g, buf, len);
        ns_envelope *res = nst_expect_frame(e, &f->g, BODY(PUSH_RESULT));
        assert_int_equal(res->request_id, prid);
        ns_envelope_free(res);
        found = nst_log_wait(e, log_from, held, 100) == 0;
    }
    if (!found)
        nst_fail(e, "the subscription of a client that does not read was not held back");
    if (nst_log_wait(e, log_from, "limit send_timeout_ms", NST_WAIT_MS) != 0)
        nst_fail(e, "the subscriber that does not read was not cut off");
    nst_raw_close(&s);
    expect_logged(f, log_from, "limit send_timeout_ms", 1);
    others_unaffected(f);
    nst_test_passed(e);
}

/* A Push above max_push_mutations: refused whole (INVALID_ARGUMENT, not
 * fatal), nothing applied; Welcome announces the limit. The seed Push of
 * exactly max_push_mutations was taken (ensure_ready). */
static void test_max_push_mutations(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ensure_ready(f);
    size_t log_from = nst_log_size(e);
    nst_raw a;
    nst_must_raw_tls(e, &a, &f->bad);
    assert_int_equal(nst_raw_send_hello(&a, 1, 1, 1), 0);
    ns_envelope *w = nst_expect_frame(e, &a, BODY(WELCOME));
    assert_int_equal(w->welcome->max_push_mutations, PUSH_MAX);
    ns_envelope_free(w);
    for (uint64_t rid = 2; rid <= 3; rid++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(append_plan_push(&buf, &len, rid, "over", 100000, PUSH_MAX + 1), 0);
        send_frames(f, &a, buf, len);
        ns_envelope *env = nst_expect_frame(e, &a, BODY(ERROR));
        bool refused = env->request_id == rid && env->error->code == ERR(INVALID_ARGUMENT) &&
                       !env->error->fatal && strstr(env->error->message, "max_push_mutations");
        ns_envelope_free(env);
        if (!refused)
            nst_fail(e, "a Push of %d mutations was not refused as over max_push_mutations",
                     PUSH_MAX + 1);
        good_ping(f);
    }
    nst_must_raw_ping(e, &a, 4);
    nst_raw_close(&a);
    char n[32];
    static const char *const like[] = {"over-%"};
    assert_int_equal(
        nst_db_exec(e, "SELECT count(*) FROM plans WHERE title LIKE $1", 1, like, n, sizeof(n)), 0);
    assert_string_equal(n, "0");
    expect_logged(f, log_from, "limit max_push_mutations", 1);
    others_unaffected(f);
    nst_test_passed(e);
}

/* A page_size above max_pull_page_size is cut to it; more says the rest
 * is there. */
static void test_max_pull_page_size(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ensure_ready(f);
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t rid = f->g_rid++;
    assert_int_equal(append_pull(&buf, &len, rid, 100000), 0);
    send_frames(f, &f->g, buf, len);
    ns_envelope *page = nst_expect_frame(e, &f->g, BODY(CHANGE_PAGE));
    assert_int_equal(page->request_id, rid);
    assert_int_equal(page->change_page->n_records, PAGE_MAX);
    assert_true(page->change_page->more);
    ns_envelope_free(page);
    others_unaffected(f);
    nst_test_passed(e);
}

/* A device at max_sessions_per_device: its next connection is told BUSY
 * (fatal); other devices connect as before; once one of its sessions has
 * gone, it connects again. */
static void test_max_sessions_per_device(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ensure_ready(f);
    size_t log_from = nst_log_size(e);
    nst_raw crowd[PER_DEVICE];
    for (int i = 0; i < PER_DEVICE; i++)
        nst_must_raw_auth(e, &crowd[i], &f->crowd, 1);
    good_ping(f);
    nst_raw over;
    nst_must_raw_tls(e, &over, &f->crowd);
    ns_envelope *env = nst_expect_frame(e, &over, BODY(ERROR));
    bool busy = env->error->code == ERR(BUSY) && env->error->fatal &&
                strstr(env->error->message, "max_sessions_per_device");
    ns_envelope_free(env);
    if (!busy)
        nst_fail(e, "a device's session over max_sessions_per_device was not told BUSY");
    nst_expect_close_notify(e, &over);
    nst_raw_close(&over);
    others_unaffected(f);

    nst_raw_close(&crowd[0]);
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    for (;;) {
        nst_raw again;
        nst_must_raw_tls(e, &again, &f->crowd);
        assert_int_equal(nst_raw_send_hello(&again, 1, 1, 1), 0);
        env = NULL;
        nst_read_status st = nst_raw_read(&again, NST_WAIT_MS, &env);
        bool welcome = st == NST_READ_FRAME && env->body_case == BODY(WELCOME);
        ns_envelope_free(env);
        nst_raw_close(&again);
        if (welcome)
            break;
        if (nst_now_ms() > deadline)
            nst_fail(e, "the device could not connect again after one of its sessions ended");
        nst_sleep_ms(100);
    }
    for (int i = 1; i < PER_DEVICE; i++)
        nst_raw_close(&crowd[i]);
    /* The retries above may have met the limit again; each refusal is one line. */
    if (log_count(f, log_from, "limit max_sessions_per_device") < 1)
        nst_fail(e, "the refusal was not logged");
    others_unaffected(f);
    nst_test_passed(e);
}

/* Connections, with no TLS at all, until the daemon closes them at accept
 * (beyond max_sessions and the BUSY margin): G keeps its session, the log
 * has one line when it begins and one, with the count, when it ends. */
static void test_connections_until_refused(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ensure_ready(f);
    size_t log_from = nst_log_size(e);
    static const char *const refusing = "closing new ones at once";
    int fds[FLOOD_MAX_FDS];
    int n = 0;
    bool refused = false;
    while (n < FLOOD_MAX_FDS && !refused) {
        int fd = nst_tcp_connect(e->port);
        if (fd < 0)
            break; /* the backlog is full: refused as well */
        fds[n++] = fd;
        if (n % 8 == 0)
            refused = log_count(f, log_from, refusing) > 0;
    }
    if (!refused)
        refused = nst_log_wait(e, log_from, refusing, NST_WAIT_MS) == 0;
    /* More while it refuses: still one line. */
    for (int i = 0; i < 16 && n < FLOOD_MAX_FDS; i++) {
        int fd = nst_tcp_connect(e->port);
        if (fd >= 0)
            fds[n++] = fd;
    }
    good_ping(f);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    if (!refused)
        nst_fail(e, "%d connections were not refused (max_sessions %d)", n, MAX_SESSIONS);
    if (nst_log_wait(e, log_from, "accepting connections again", NST_WAIT_MS + HANDSHAKE_MS) != 0)
        nst_fail(e, "the daemon did not say it accepts connections again");
    expect_logged(f, log_from, refusing, 1);
    expect_logged(f, log_from, "accepting connections again", 1);
    others_unaffected(f);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_concurrent_hostile_clients),
        NST_TEST(test_max_subscriptions),
        NST_TEST(test_subscriber_that_does_not_read),
        NST_TEST(test_max_push_mutations),
        NST_TEST(test_max_pull_page_size),
        NST_TEST(test_max_sessions_per_device),
        NST_TEST(test_connections_until_refused),
    };
    return cmocka_run_group_tests_name("integration: hostile clients under load", tests,
                                       group_setup, group_teardown);
}
