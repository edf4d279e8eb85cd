/* Fewer round trips (docs/protocol.md "First flight", "Streamed pull";
 * docs/client.md "Round trips") against a real napsyncd, PostgreSQL and
 * TLS on loopback:
 *  - a sync on a store that synced before goes out in one flight behind
 *    Hello (counted by the client: ns_sync_stats.round_trips), pushes and
 *    pulls in it, and the next CLI run resumes TLS;
 *  - a streamed pull of many one-record pages is one Pull request;
 *  - a client that stops reading holds the stream: the daemon stops
 *    building pages (napsync_limit_hits_total{limit="max_queued_bytes"},
 *    napsync_frames_sent_total stands still) and goes on once it reads;
 *  - an old-style Hello and Pull work as before (one page per Pull);
 *  - hostile first-flight compressions and streamed Pulls get typed errors.
 * Nothing here measures time. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define OUT_CAP 65536
/* Records the stream tests page through: more, with their summaries, than
 * the kernel buffers of a loopback connection hold (tcp_wmem max 4 MiB). */
#define NRECORDS 700
/* A summary of this many bytes makes each record a few KiB on the wire. */
#define SUMMARY_BYTES 9000
#define START_TRIES   5

typedef struct {
    nst_env *e;
    nst_device a, b, c;
    char store_a[NST_PATH], store_b[NST_PATH];
    uint16_t http_port;
    char org[40]; /* mogender's id */
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];
static char metrics_text[1 << 20];

static int cli(fixture *f, const nst_device *d, const char *store, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(f->e, d, store, out, sizeof(out), first, ap);
    va_end(ap);
    return rc;
}

static long json_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    assert_non_null(p);
    return strtol(p + strlen(pat), NULL, 10);
}

/* GET /metrics over plain HTTP/1.0 (the daemon's HTTP listener). */
static void metrics_read(fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->http_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        nst_fail(f->e, "cannot connect to the daemon's HTTP port %u", (unsigned)f->http_port);
    }
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    size_t len = 0;
    ssize_t n;
    while (len + 1 < sizeof(metrics_text) &&
           (n = read(fd, metrics_text + len, sizeof(metrics_text) - 1 - len)) > 0)
        len += (size_t)n;
    metrics_text[len] = '\0';
    close(fd);
}

/* The value of one series ("name" or "name{k=\"v\"}", exactly); 0 when absent. */
static double metric(fixture *f, const char *series)
{
    metrics_read(f);
    size_t n = strlen(series);
    for (const char *line = metrics_text; line != NULL; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    return 0;
}

/* ---- fixture ---------------------------------------------------------------------- */

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    f->e = nst_env_new("round_trips", NULL);
    if (f->e == NULL || nst_device_issue(f->e, false, "post-a", &f->a) != 0 ||
        nst_device_issue(f->e, false, "post-b", &f->b) != 0 ||
        nst_device_issue(f->e, false, "post-c", &f->c) != 0 ||
        nst_path_join(f->store_a, f->e->dir, "a.store") != 0 ||
        nst_path_join(f->store_b, f->e->dir, "b.store") != 0)
        return -1;
    bool started = false;
    for (int i = 0; i < START_TRIES && !started; i++) {
        f->http_port = nst_free_port();
        char listen[32];
        snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)f->http_port);
        /* The smallest output queue the daemon allows: a client that does
         * not read holds its stream soon. Pushes of 100: make_records's
         * outbox takes seven. */
        const char *extra[] = {
            "--http-listen", listen, "--max-queued-bytes", "65536", "--max-push-mutations",
            "100",           NULL};
        started = nst_daemon_start(f->e, extra) == 0;
    }
    if (!started ||
        nst_device_register(f->e, "mogender", "Amina Coordinator", "coordinator", &f->a) != 0 ||
        nst_device_register(f->e, "mogender", "Bakari Coordinator", "coordinator", &f->b) != 0 ||
        nst_device_register(f->e, "mogender", "Chiku Coordinator", "coordinator", &f->c) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    int rc = f ? nst_env_close(f->e) : 0;
    free(f);
    return rc;
}

/* ---- libnapsync helpers ----------------------------------------------------------- */

static ns_client *store_client(fixture *f, const nst_device *d, const char *store)
{
    ns_client_options o;
    char buf[300];
    nst_client_options(f->e, d->cert, d->key, f->e->ca_cert, &o, buf, sizeof(buf));
    o.store_path = store;
    ns_client *c = NULL;
    ns_error err;
    if (ns_client_new(&o, NULL, &c, &err) != NS_OK)
        nst_fail(f->e, "ns_client_new: %s", err.message);
    return c;
}

static void must_sync(fixture *f, ns_client *c, uint32_t page_size, ns_sync_stats *st)
{
    ns_sync_options so = {.page_size = page_size};
    ns_error err;
    if (ns_client_sync_wait(c, &so, st, &err) != NS_OK)
        nst_fail(f->e, "sync: %s", err.message);
}

/* A's store gets NRECORDS plans with long summaries, pushed. */
static void make_records(fixture *f)
{
    static bool made;
    if (made)
        return;
    ns_client *c = store_client(f, &f->a, f->store_a);
    static char summary[SUMMARY_BYTES + 16];
    memcpy(summary, "summary=", 8);
    for (size_t i = 0; i < SUMMARY_BYTES; i++)
        summary[8 + i] = (char)('a' + (i * 7) % 26);
    summary[8 + SUMMARY_BYTES] = '\0';
    for (int i = 0; i < NRECORDS; i++) {
        char title[64];
        snprintf(title, sizeof(title), "title=Field plan %d", i);
        const char *as[] = {title, "status=adopted", summary, NST_PLAN_ASSIGN};
        ns_edit_result r;
        ns_error err;
        if (ns_client_put(c, "plan", NULL, as, sizeof(as) / sizeof(as[0]), &r, &err) != NS_OK)
            nst_fail(f->e, "put: %s", err.message);
    }
    ns_sync_stats st;
    must_sync(f, c, 0, &st);
    assert_int_equal(st.pushed, NRECORDS);
    assert_int_equal(st.rejected, 0);
    /* Six of the seven pushes were taken after the first pull began (the
     * server answers in order): the sync pulled again, so its replica has
     * every record it pushed. */
    assert_true(st.received >= NRECORDS);
    nst_client_close(c);
    made = true;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* The first sync of a store with an outbox or no plan named waits for
 * Welcome (nothing is known yet); every later one is one flight: Hello, Push, Pull{stream} and
 * ListConflicts together, answered without a second request. The CLI's
 * next run resumes TLS from the ticket its store keeps. */
static void test_first_flight(void **state)
{
    fixture *f = *state;
    char id[40];
    assert_int_equal(cli(f, &f->c, f->store_b, "put", "plan", "new", "title=Post report",
                         "status=adopted", NST_PLAN_ASSIGN, "--json", NULL),
                     0);
    nst_json_get(out, "record_id", id, sizeof(id));
    assert_int_equal(cli(f, &f->c, f->store_b, "sync", "--json", NULL), 0);
    assert_int_equal(json_num(out, "pushed"), 1);
    /* Welcome first, then the sync; the new plan is a tenant the device
     * did not have, which a backfill of its own asks for (a third). */
    assert_true(json_num(out, "round_trips") >= 2);
    assert_int_equal(json_num(out, "pull_requests"), 1);

    /* The daily report: an edit of a record the device has. */
    assert_int_equal(
        cli(f, &f->c, f->store_b, "put", "plan", id, "summary=Week 12: all posts reported", NULL),
        0);
    assert_int_equal(cli(f, &f->c, f->store_b, "sync", "--json", NULL), 0);
    assert_int_equal(json_num(out, "pushed"), 1);
    assert_int_equal(json_num(out, "rejected"), 0);
    assert_int_equal(json_num(out, "round_trips"), 1);
    assert_int_equal(json_num(out, "pull_requests"), 1);
    /* The pull of that flight saw its push: the record is back, applied. */
    assert_true(json_num(out, "received") >= 1);
    assert_int_equal(cli(f, &f->c, f->store_b, "get", "plan", id, "--json", NULL), 0);
    assert_non_null(strstr(out, "\"version\":2"));
    assert_non_null(strstr(out, "Week 12: all posts reported"));
    assert_int_equal(cli(f, &f->c, f->store_b, "status", "--json", NULL), 0);
    assert_int_equal(json_num(out, "pending"), 0);

    /* Nothing to push: still one flight. */
    assert_int_equal(cli(f, &f->c, f->store_b, "sync", "--json", NULL), 0);
    assert_int_equal(json_num(out, "round_trips"), 1);
    assert_int_equal(json_num(out, "pushed"), 0);

    /* A store that never synced, with its plan named and nothing to push:
     * its first pull goes out behind Hello too. */
    char fresh[NST_PATH];
    assert_int_equal(nst_path_join(fresh, f->e->dir, "fresh-plan.store"), 0);
    assert_int_equal(cli(f, &f->c, fresh, "sync", "--plan", id, "--json", NULL), 0);
    assert_int_equal(json_num(out, "round_trips"), 1);
    assert_int_equal(json_num(out, "pull_requests"), 1);
    assert_true(json_num(out, "received") >= 1);
    assert_int_equal(cli(f, &f->c, fresh, "get", "plan", id, "--json", NULL), 0);
    assert_non_null(strstr(out, "Week 12: all posts reported"));

    /* Resumption across CLI runs, from the store. */
    assert_int_equal(cli(f, &f->c, f->store_b, "whoami", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"tls_resumed\":true"));
    nst_test_passed(f->e);
}

/* A fresh store pulls NRECORDS one-record pages with a single Pull. */
static void test_stream_tiny_pages(void **state)
{
    fixture *f = *state;
    make_records(f);
    char path[NST_PATH];
    assert_int_equal(nst_path_join(path, f->e->dir, "tiny.store"), 0);
    ns_client *c = store_client(f, &f->b, path);
    ns_sync_stats st;
    must_sync(f, c, 1, &st);
    assert_true(st.received >= NRECORDS);
    assert_int_equal(st.pull_requests, 1);
    assert_int_equal(st.round_trips, 2);
    /* Again, with nothing new: one flight, one Pull, one empty page. */
    must_sync(f, c, 1, &st);
    assert_int_equal(st.received, 0);
    assert_int_equal(st.pull_requests, 1);
    assert_int_equal(st.round_trips, 1);
    nst_client_close(c);
    nst_test_passed(f->e);
}

static void send_hello_ff(fixture *f, nst_raw *r, uint64_t rid, bool offer_zstd, int first_flight)
{
    Napsync__V1__Hello h = NAPSYNC__V1__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 1;
    h.client_name = "round-trips-test";
    h.client_version = "1";
    Napsync__V1__Compression z[] = {NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1};
    h.n_compression = offer_zstd ? 1 : 0;
    h.compression = z;
    h.first_flight_compression = (Napsync__V1__Compression)first_flight;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    if (nst_raw_send_env(r, &env) != 0)
        nst_fail(f->e, "cannot send Hello");
}

/* Hello and Welcome on a raw connection; returns the organisation id. */
static void raw_auth(fixture *f, nst_raw *r, const nst_device *d)
{
    nst_must_raw_tls(f->e, r, d);
    send_hello_ff(f, r, 1, false, 0);
    ns_envelope *w = nst_expect_frame(f->e, r, NAPSYNC__V1__ENVELOPE__BODY_WELCOME);
    assert_true(w->welcome->pull_stream);
    snprintf(f->org, sizeof(f->org), "%s", w->welcome->organisation->id);
    ns_envelope_free(w);
}

static void send_pull(fixture *f, nst_raw *r, uint64_t rid, const char *cursor, size_t nscopes,
                      bool stream, uint32_t page_size)
{
    Napsync__V1__Scope sc[70];
    Napsync__V1__Scope *ptrs[70];
    assert_true(nscopes <= 70);
    for (size_t i = 0; i < nscopes; i++) {
        napsync__v1__scope__init(&sc[i]);
        sc[i].kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
        sc[i].organisation_id = f->org;
        ptrs[i] = &sc[i];
    }
    Napsync__V1__Pull p = NAPSYNC__V1__PULL__INIT;
    p.cursor = (char *)cursor;
    p.n_scopes = nscopes;
    p.scopes = ptrs;
    p.stream = stream;
    p.page_size = page_size;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PULL;
    env.pull = &p;
    if (nst_raw_send_env(r, &env) != 0)
        nst_fail(f->e, "cannot send Pull");
}

/* A client that stops reading: the stream is held at max_queued_bytes and
 * the daemon builds no more pages; once it reads, every page arrives. */
static void test_flow_control(void **state)
{
    fixture *f = *state;
    make_records(f);
    nst_raw r;
    raw_auth(f, &r, &f->b);
    /* The kernel buffers what fits in the daemon's send buffer and our
     * receive buffer (which does not grow while we read nothing); the rest
     * waits in the daemon's queue, which holds the stream. */
    double held0 = metric(f, "napsync_limit_hits_total{limit=\"max_queued_bytes\"}");
    send_pull(f, &r, 2, "", 1, true, 1);

    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    while (metric(f, "napsync_limit_hits_total{limit=\"max_queued_bytes\"}") <= held0) {
        if (nst_now_ms() > deadline)
            nst_fail(f->e, "the pull stream was never held for a client that does not read");
        nst_sleep_ms(50);
    }
    /* Held: no page is built while the client reads nothing. */
    double sent1 = metric(f, "napsync_frames_sent_total");
    nst_sleep_ms(1000);
    double sent2 = metric(f, "napsync_frames_sent_total");
    assert_true(sent2 == sent1);

    /* Reading resumes the stream: every page, in order, the last without more. */
    size_t pages = 0, records = 0;
    bool last = false;
    while (!last) {
        ns_envelope *env = nst_expect_frame(f->e, &r, NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE);
        assert_int_equal(env->request_id, 2);
        assert_true(env->change_page->n_records <= 1);
        records += env->change_page->n_records;
        pages++;
        last = !env->change_page->more;
        ns_envelope_free(env);
    }
    assert_true(records >= NRECORDS);
    assert_true(pages >= NRECORDS);
    /* The session serves the next request after the stream. */
    nst_must_raw_ping(f->e, &r, 3);
    nst_raw_close(&r);
    nst_test_passed(f->e);
}

/* Old-style Hello (no first-flight compression) and Pull (no stream):
 * exactly one page per Pull, as before. */
static void test_old_style(void **state)
{
    fixture *f = *state;
    make_records(f);
    nst_raw r;
    raw_auth(f, &r, &f->b);
    send_pull(f, &r, 2, "", 1, false, 5);
    ns_envelope *env = nst_expect_frame(f->e, &r, NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE);
    assert_int_equal(env->request_id, 2);
    assert_int_equal(env->change_page->n_records, 5);
    assert_true(env->change_page->more);
    ns_envelope_free(env);
    ns_envelope *none = NULL;
    assert_int_equal(nst_raw_read(&r, 500, &none), NST_READ_TIMEOUT);
    nst_must_raw_ping(f->e, &r, 3);
    nst_raw_close(&r);

    /* The library against the same daemon, with a store that never synced:
     * Hello, Welcome, then the sync (two flights). */
    char path[NST_PATH];
    assert_int_equal(nst_path_join(path, f->e->dir, "old.store"), 0);
    ns_client *c = store_client(f, &f->b, path);
    ns_sync_stats st;
    must_sync(f, c, 0, &st);
    assert_int_equal(st.round_trips, 2);
    nst_client_close(c);
    nst_test_passed(f->e);
}

/* Typed errors for what a first flight or a stream must not be. */
static void test_hostile(void **state)
{
    fixture *f = *state;
    nst_raw r;
    /* zstd for the first flight without offering zstd */
    nst_must_raw_tls(f->e, &r, &f->b);
    send_hello_ff(f, &r, 1, false, NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1);
    nst_expect_fatal_error(f->e, &r, 1, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT);
    nst_raw_close(&r);
    /* a compression nobody knows */
    nst_must_raw_tls(f->e, &r, &f->b);
    send_hello_ff(f, &r, 1, true, 77);
    nst_expect_fatal_error(f->e, &r, 1, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT);
    nst_raw_close(&r);

    raw_auth(f, &r, &f->b);
    /* a cursor that is not one */
    send_pull(f, &r, 2, "v1.not-a-cursor", 1, true, 1);
    nst_expect_error(f->e, &r, 2, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, false);
    /* one of another epoch */
    send_pull(f, &r, 3, "v1.00000000-0000-4000-8000-000000000000.1", 1, true, 1);
    nst_expect_error(f->e, &r, 3, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_CURSOR_UNKNOWN, false);
    /* too many scopes */
    send_pull(f, &r, 4, "", 65, true, 1);
    nst_expect_error(f->e, &r, 4, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, false);
    /* no scope */
    send_pull(f, &r, 5, "", 0, true, 1);
    nst_expect_error(f->e, &r, 5, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, false);
    /* an absurd page size is capped, not trusted: the stream still ends */
    send_pull(f, &r, 6, "", 1, true, UINT32_MAX);
    bool last = false;
    while (!last) {
        ns_envelope *env = nst_expect_frame(f->e, &r, NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE);
        assert_int_equal(env->request_id, 6);
        last = !env->change_page->more;
        ns_envelope_free(env);
    }
    nst_must_raw_ping(f->e, &r, 7);
    nst_raw_close(&r);
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_first_flight), NST_TEST(test_stream_tiny_pages), NST_TEST(test_flow_control),
        NST_TEST(test_old_style),    NST_TEST(test_hostile),
    };
    return cmocka_run_group_tests_name("integration: fewer round trips", tests, group_setup,
                                       group_teardown);
}
