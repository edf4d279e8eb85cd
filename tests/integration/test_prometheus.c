/* Health and metrics end to end: napsyncd with its HTTP listener on a free
 * loopback port (http_listen), a real sync through the napsync CLI and a
 * few raw sessions (a replayed mutation, a rejected one, an unknown device,
 * a frame over the limit), then
 *  - /healthz, /readyz and /metrics read with libcurl: the counters moved
 *    by what was done, and promtool (Debian's prometheus package) finds the
 *    exposition well formed;
 *  - Debian's Prometheus server scraping napsyncd every second, queried
 *    back through its HTTP API (up, and napsync metrics equal to what
 *    /metrics says);
 *  - SIGTERM with a push held in flight (a row lock taken by the test):
 *    /readyz says 503 while the daemon drains, /healthz stays 200, and the
 *    daemon still exits 0 once the push is answered.
 * Prometheus is always stopped by the test's teardown, pass or fail. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "harness.h"

#define ERR(name)  NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name
#define BODY(name) NAPSYNC__V1__ENVELOPE__BODY_##name
#define OUTCOME(x) NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_##x

#define BODY_CAP    (1024 * 1024)
#define OUT_CAP     65536
#define POLL_MS     200
#define START_TRIES 3
/* Prometheus's start and first scrapes, under ASan on a busy machine. */
#define PROM_WAIT_MS 90000

typedef struct {
    nst_env *e;
    nst_device coordinator;
    nst_device stranger; /* issued by the daemon's CA, never registered */
    char store[NST_PATH];
    uint16_t http_port;
    pid_t prometheus; /* 0 when none runs */
    char prom_log[NST_PATH];
    PGconn *locker; /* the test's own connection holding a row lock, or NULL */
} fixture;
NST_FIXTURE_CHECK(fixture);

static char body[BODY_CAP];

/* ---- HTTP with libcurl -------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} sink;

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    size_t take = size * n;
    if (s->len + take >= s->cap)
        return 0; /* too large: curl fails the transfer */
    memcpy(s->buf + s->len, ptr, take);
    s->len += take;
    s->buf[s->len] = '\0';
    return take;
}

/* GET (or another method) of url into body. Returns the HTTP status, or
 * -1 when no answer came (refused, timed out); content_type gets the
 * Content-Type when not NULL. */
static long http(const char *method, const char *url, char *content_type, size_t ct_cap)
{
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    sink s = {body, 0, sizeof(body)};
    body[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        char *ct = NULL;
        if (content_type != NULL && curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK)
            snprintf(content_type, ct_cap, "%s", ct ? ct : "");
    }
    curl_easy_cleanup(c);
    return status;
}

static long daemon_get(const fixture *f, const char *path)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)f->http_port, path);
    return http("GET", url, NULL, 0);
}

/* The value of one series in a Prometheus text ("name" or
 * "name{k=\"v\"}", exactly), or -1 when the text has none. */
static double series_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line != NULL; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    return -1;
}

/* Reads /metrics; the value of series in it (which must be there). */
static double metric(const fixture *f, const char *series)
{
    long st = daemon_get(f, "/metrics");
    if (st != 200)
        nst_fail(f->e, "GET /metrics: status %ld", st);
    double v = series_value(body, series);
    if (v < 0)
        nst_fail(f->e, "/metrics has no %s", series);
    return v;
}

/* Waits until series reaches at least min (gauges are sampled every
 * second, notifications arrive on their own connection). */
static double metric_at_least(const fixture *f, const char *series, double min)
{
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    double v;
    while ((v = metric(f, series)) < min) {
        if (nst_now_ms() > deadline)
            nst_fail(f->e, "%s stayed at %g, below %g", series, v, min);
        nst_sleep_ms(POLL_MS);
    }
    return v;
}

/* Waits until path answers status (a bounded wait). */
static void wait_status(const fixture *f, const char *path, long status)
{
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    long st;
    while ((st = daemon_get(f, path)) != status) {
        if (nst_now_ms() > deadline)
            nst_fail(f->e, "GET %s: status %ld (%s), expected %ld", path, st, body, status);
        nst_sleep_ms(POLL_MS);
    }
}

/* ---- fixture ---------------------------------------------------------------------- */

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    f->e = nst_env_new("prometheus", NULL);
    if (f->e == NULL || nst_device_issue(f->e, false, "ops-desk", &f->coordinator) != 0 ||
        nst_device_issue(f->e, false, "stranger", &f->stranger) != 0 ||
        nst_path_join(f->store, f->e->dir, "ops.store") != 0 ||
        nst_path_join(f->prom_log, f->e->dir, "prometheus.log") != 0)
        return -1;
    /* The HTTP port is found free, then bound by the daemon: another
     * program may take it in between, so a failed start tries another. */
    for (int i = 0; i < START_TRIES; i++) {
        f->http_port = nst_free_port();
        char listen[32];
        snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)f->http_port);
        const char *extra[] = {"--http-listen", listen, "--shutdown-timeout-ms", "60000", NULL};
        if (nst_daemon_start(f->e, extra) == 0)
            return nst_device_register(f->e, "mogender", "Operations Desk", "coordinator",
                                       &f->coordinator);
    }
    return -1;
}

static void prometheus_stop(fixture *f)
{
    if (f->prometheus <= 0)
        return;
    int st;
    kill(f->prometheus, SIGTERM);
    if (nst_wait_pid(f->prometheus, NST_WAIT_MS, &st) != 0) {
        kill(f->prometheus, SIGKILL);
        (void)nst_wait_pid(f->prometheus, NST_WAIT_MS, &st);
    }
    f->prometheus = 0;
}

static int test_teardown(void **state)
{
    fixture *f = *state;
    prometheus_stop(f);
    if (f->locker != NULL) {
        PQfinish(f->locker); /* its transaction rolls back */
        f->locker = NULL;
    }
    nst_test_end(f->e);
    return 0;
}

static int test_setup(void **state)
{
    fixture *f = *state;
    nst_test_begin(f->e);
    return 0;
}

static int group_teardown(void **state)
{
    int rc = nst_group_teardown(state);
    curl_global_cleanup();
    return rc;
}

/* ---- what the test does through napsyncd ---------------------------------------------- */

/* One mutation in one Push. */
typedef struct {
    nst_plan_pb fields;
    Napsync__V1__Mutation m;
    Napsync__V1__Mutation *ms[1];
    Napsync__V1__Push push;
    ns_envelope env;
} one_push;

static void build_create(one_push *p, uint64_t rid, const char *mutation_id, const char *type,
                         const char *record_id, const char *title)
{
    memset(p, 0, sizeof(*p));
    nst_plan_pb_init(&p->fields, title, "draft");
    napsync__v1__mutation__init(&p->m);
    p->m.mutation_id = (char *)mutation_id;
    p->m.entity_type = (char *)type;
    p->m.record_id = (char *)record_id;
    p->m.op = NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE;
    p->m.fields = &p->fields.set;
    p->ms[0] = &p->m;
    napsync__v1__push__init(&p->push);
    p->push.n_mutations = 1;
    p->push.mutations = p->ms;
    napsync__v1__envelope__init(&p->env);
    p->env.request_id = rid;
    p->env.body_case = BODY(PUSH);
    p->env.push = &p->push;
}

/* Sends the push and expects one result with this outcome. */
static void push_expect(const fixture *f, nst_raw *r, one_push *p,
                        Napsync__V1__MutationOutcome outcome)
{
    assert_int_equal(nst_raw_send_env(r, &p->env), 0);
    ns_envelope *env = nst_expect_frame(f->e, r, BODY(PUSH_RESULT));
    assert_int_equal(env->request_id, p->env.request_id);
    assert_int_equal(env->push_result->n_results, 1);
    if (env->push_result->results[0]->outcome != outcome)
        nst_fail(f->e, "outcome %d, expected %d: %s", env->push_result->results[0]->outcome,
                 outcome, env->push_result->results[0]->reject_reason);
    ns_envelope_free(env);
}

/* A plan created and synced with the napsync CLI (push and pull), as a
 * device would. */
static void cli_sync(fixture *f, const char *title)
{
    static char out[OUT_CAP];
    char t[128];
    snprintf(t, sizeof(t), "title=%s", title);
    int rc = nst_cli(f->e, &f->coordinator, f->store, out, sizeof(out), "put", "plan", "new", t,
                     "status=draft", NST_PLAN_ASSIGN, NULL);
    if (rc != 0)
        nst_fail(f->e, "napsync put exited %d: %s", rc, out);
    rc = nst_cli(f->e, &f->coordinator, f->store, out, sizeof(out), "sync", NULL);
    if (rc != 0)
        nst_fail(f->e, "napsync sync exited %d: %s", rc, out);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_endpoints_and_counters(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char ct[128] = "";
    char url[128];

    assert_int_equal(daemon_get(f, "/healthz"), 200);
    assert_string_equal(body, "ok\n");
    wait_status(f, "/readyz", 200);
    assert_string_equal(body, "ready\n");
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/metrics", (unsigned)f->http_port);
    assert_int_equal(http("GET", url, ct, sizeof(ct)), 200);
    assert_true(strncmp(ct, "text/plain; version=0.0.4", 25) == 0);
    assert_int_equal(http("POST", url, NULL, 0), 405);
    assert_int_equal(http("HEAD", url, NULL, 0), 200);
    assert_string_equal(body, "");
    assert_int_equal(daemon_get(f, "/nothing-here"), 404);

    double applied0 = metric(f, "napsync_mutations_total{outcome=\"applied\"}");
    double replays0 = metric(f, "napsync_mutation_replays_total");
    double pushes0 = metric(f, "napsync_push_duration_seconds_count");
    double pulls0 = metric(f, "napsync_pull_duration_seconds_count");
    double sessions0 = metric(f, "napsync_sessions_total");
    double frames_in0 = metric(f, "napsync_frames_received_total");
    double bytes_out0 = metric(f, "napsync_frame_bytes_sent_total");
    double txns0 = metric(f, "napsync_db_transaction_duration_seconds_count");
    double notifies0 = metric(f, "napsync_db_notifications_total");

    /* A real sync: the CLI pushes its plan and pulls. */
    cli_sync(f, "Metrics Plan One");

    /* A raw session: a create, then the same mutation id again (an outbox
     * replayed after a lost answer), then a type nobody knows. */
    nst_raw r;
    nst_must_raw_auth(e, &r, &f->coordinator, 1);
    one_push p;
    build_create(&p, 2, "7b000000-0000-4000-8000-0000000000a1", "plan",
                 "7b000000-0000-4000-8000-000000000001", "Metrics Plan Two");
    push_expect(f, &r, &p, OUTCOME(APPLIED));
    p.env.request_id = 3;
    push_expect(f, &r, &p, OUTCOME(APPLIED));
    build_create(&p, 4, "7b000000-0000-4000-8000-0000000000a2", "no_such_type",
                 "7b000000-0000-4000-8000-000000000002", "Nothing");
    push_expect(f, &r, &p, OUTCOME(REJECTED));
    /* A frame over max_frame_size: the limit ends the session. */
    static const uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xff};
    nst_must_raw_write(e, &r, huge, sizeof(huge));
    nst_expect_fatal_error(e, &r, 0, ERR(FRAME_TOO_LARGE));
    nst_raw_close(&r);

    /* A device certificate from the right CA that nobody registered. */
    nst_must_raw_tls(e, &r, &f->stranger);
    assert_int_equal(nst_raw_send_hello(&r, 1, 1, 1), 0);
    nst_expect_fatal_error(e, &r, 1, ERR(UNKNOWN_DEVICE));
    nst_raw_close(&r);

    assert_true(metric(f, "napsync_mutations_total{outcome=\"applied\"}") >= applied0 + 2);
    assert_true(metric(f, "napsync_mutation_replays_total") == replays0 + 1);
    assert_true(metric(f, "napsync_mutations_rejected_total{reason=\"unknown_entity\"}") >= 1);
    assert_true(metric(f, "napsync_push_duration_seconds_count") >= pushes0 + 4);
    assert_true(metric(f, "napsync_push_duration_seconds_bucket{le=\"+Inf\"}") >= pushes0 + 4);
    assert_true(metric(f, "napsync_pull_duration_seconds_count") >= pulls0 + 1);
    assert_true(metric(f, "napsync_sessions_total") >= sessions0 + 3);
    assert_true(metric(f, "napsync_frames_received_total") > frames_in0 + 4);
    assert_true(metric(f, "napsync_frame_bytes_sent_total") > bytes_out0);
    assert_true(metric(f, "napsync_db_transaction_duration_seconds_count") > txns0);
    assert_true(metric(f, "napsync_db_query_duration_seconds_count") >= 1);
    assert_true(metric(f, "napsync_handshakes_total{result=\"ok\"}") >= 2);
    assert_true(metric(f, "napsync_handshakes_total{result=\"unknown_device\"}") >= 1);
    assert_true(metric(f, "napsync_limit_hits_total{limit=\"max_frame_size\"}") >= 1);
    assert_true(metric(f, "napsync_errors_sent_total{code=\"frame_too_large\"}") >= 1);
    /* Each commit NOTIFYs; the daemon LISTENs on its own connection. */
    metric_at_least(f, "napsync_db_notifications_total", notifies0 + 1);
    metric_at_least(f, "napsync_db_listener_up", 1);
    metric_at_least(f, "napsync_feed_head", 2);
    assert_true(metric(f, "napsync_db_connections{state=\"idle\"}") +
                    metric(f, "napsync_db_connections{state=\"busy\"}") +
                    metric(f, "napsync_db_connections{state=\"transaction\"}") >=
                1);
    assert_true(metric(f, "napsync_ready") == 1);
    assert_true(metric(f, "napsync_heartbeat_age_seconds") < 5);

    /* promtool's linter: the text format and the naming conventions. */
    char file[NST_PATH], cmd[NST_PATH + 64];
    assert_int_equal(daemon_get(f, "/metrics"), 200);
    assert_int_equal(nst_path_join(file, e->dir, "metrics.txt"), 0);
    FILE *out = fopen(file, "w");
    assert_non_null(out);
    assert_int_equal(fputs(body, out) >= 0 && fclose(out) == 0, 1);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", file);
    char *const sh[] = {"/bin/sh", "-c", cmd, NULL};
    static char lint[OUT_CAP];
    int rc = nst_run(sh, lint, sizeof(lint));
    if (rc != 0)
        nst_fail(e, "promtool check metrics exited %d: %s", rc, lint);
    nst_test_passed(e);
}

/* The value of an instant query's first sample, as text, into val; false
 * when the query has no result yet. */
static bool prom_query(const fixture *f, uint16_t web, const char *query, char *val, size_t cap)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char *q = curl_easy_escape(c, query, 0);
    curl_easy_cleanup(c);
    assert_non_null(q);
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/v1/query?query=%s", (unsigned)web, q);
    curl_free(q);
    long st = http("GET", url, NULL, 0);
    if (st != 200)
        return false;
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    if (doc == NULL)
        nst_fail(f->e, "Prometheus answered %s with no JSON: %s", query, jerr.text);
    const char *status = json_string_value(json_object_get(doc, "status"));
    json_t *result = json_object_get(json_object_get(doc, "data"), "result");
    bool found = false;
    if (status != NULL && strcmp(status, "success") == 0 && json_array_size(result) > 0) {
        const char *v = json_string_value(
            json_array_get(json_object_get(json_array_get(result, 0), "value"), 1));
        if (v != NULL) {
            snprintf(val, cap, "%s", v);
            found = true;
        }
    }
    json_decref(doc);
    return found;
}

/* Polls query until it yields want. */
static void prom_expect(const fixture *f, uint16_t web, const char *query, const char *want)
{
    char val[64] = "";
    uint64_t deadline = nst_now_ms() + PROM_WAIT_MS;
    while (!prom_query(f, web, query, val, sizeof(val)) || strcmp(val, want) != 0) {
        if (nst_now_ms() > deadline)
            nst_fail(f->e, "Prometheus: %s is \"%s\", expected %s (its log: %s)", query, val, want,
                     f->prom_log);
        nst_sleep_ms(POLL_MS);
    }
}

/* Starts Prometheus on a free port; returns the port once it is ready. */
static uint16_t prometheus_start(fixture *f)
{
    nst_env *e = f->e;
    char conf[NST_PATH], data[NST_PATH];
    assert_int_equal(nst_path_join(conf, e->dir, "prometheus.yml"), 0);
    assert_int_equal(nst_path_join(data, e->dir, "prometheus-data"), 0);
    FILE *out = fopen(conf, "w");
    assert_non_null(out);
    fprintf(out,
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: napsync\n"
            "    static_configs:\n"
            "      - targets: ['127.0.0.1:%u']\n",
            (unsigned)f->http_port);
    assert_int_equal(fclose(out), 0);
    for (int i = 0; i < START_TRIES; i++) {
        uint16_t web = nst_free_port();
        char cfg_flag[NST_PATH + 32], data_flag[NST_PATH + 32], web_flag[64];
        snprintf(cfg_flag, sizeof(cfg_flag), "--config.file=%s", conf);
        snprintf(data_flag, sizeof(data_flag), "--storage.tsdb.path=%s", data);
        snprintf(web_flag, sizeof(web_flag), "--web.listen-address=127.0.0.1:%u", (unsigned)web);
        char *const argv[] = {"/usr/bin/prometheus", cfg_flag, data_flag, web_flag,
                              "--log.level=warn",    NULL};
        f->prometheus = nst_spawn(argv, f->prom_log);
        assert_true(f->prometheus > 0);
        char url[96];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/-/ready", (unsigned)web);
        uint64_t deadline = nst_now_ms() + PROM_WAIT_MS;
        while (nst_now_ms() < deadline) {
            if (http("GET", url, NULL, 0) == 200)
                return web;
            int st;
            if (nst_wait_pid(f->prometheus, 0, &st) == 0) {
                f->prometheus = 0; /* exited: its port was taken? try another */
                break;
            }
            nst_sleep_ms(POLL_MS);
        }
        prometheus_stop(f);
    }
    nst_fail(e, "Prometheus did not start (its log: %s)", f->prom_log);
}

static void test_prometheus_scrapes(void **state)
{
    fixture *f = *state;
    cli_sync(f, "Metrics Plan Three");
    uint16_t web = prometheus_start(f);
    /* up is Prometheus's own verdict on the last scrape. */
    prom_expect(f, web, "up{job=\"napsync\"}", "1");
    prom_expect(f, web, "napsync_ready{job=\"napsync\"}", "1");
    /* Nothing changes in the daemon now: Prometheus must come to what
     * /metrics says. */
    char want[32];
    snprintf(want, sizeof(want), "%.0f", metric(f, "napsync_mutations_total{outcome=\"applied\"}"));
    assert_true(strcmp(want, "0") != 0);
    prom_expect(f, web, "napsync_mutations_total{job=\"napsync\",outcome=\"applied\"}", want);
    snprintf(want, sizeof(want), "%.0f", metric(f, "napsync_push_duration_seconds_count"));
    prom_expect(f, web, "sum(napsync_push_duration_seconds_bucket{job=\"napsync\",le=\"+Inf\"})",
                want);
    prometheus_stop(f);
    nst_test_passed(f->e);
}

/* SIGTERM while a push waits for a row lock the test holds: the daemon
 * drains (/readyz 503, /healthz 200) until the push is answered, then
 * exits 0. Last: it stops the daemon. */
static void test_readyz_while_draining(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    wait_status(f, "/readyz", 200);
    const char *keys[] = {"host", "port", "user", "dbname", NULL};
    const char *vals[] = {e->pg.host, e->pg.port, e->pg.user, e->dbname, NULL};
    f->locker = PQconnectdbParams(keys, vals, 0);
    assert_int_equal(PQstatus(f->locker), CONNECTION_OK);
    PGresult *res = PQexec(f->locker, "BEGIN; SELECT seq FROM sync_feed_head FOR UPDATE");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);

    nst_raw r;
    nst_must_raw_auth(e, &r, &f->coordinator, 1);
    one_push p;
    build_create(&p, 2, "7b000000-0000-4000-8000-0000000000a3", "plan",
                 "7b000000-0000-4000-8000-000000000003", "Metrics Plan Drained");
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    /* The push waits on the lock once its transaction writes the feed. */
    metric_at_least(f, "napsync_db_connections{state=\"transaction\"}", 1);

    assert_int_equal(nst_daemon_signal(e, SIGTERM), 0);
    wait_status(f, "/readyz", 503);
    assert_true(strstr(body, "draining") != NULL);
    assert_int_equal(daemon_get(f, "/healthz"), 200);
    assert_true(metric(f, "napsync_draining") == 1);
    assert_true(metric(f, "napsync_ready") == 0);

    res = PQexec(f->locker, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    /* The push is answered, then Goodbye, then the daemon stops. */
    ns_envelope *env = nst_expect_frame(e, &r, BODY(PUSH_RESULT));
    assert_int_equal(env->push_result->results[0]->outcome, OUTCOME(APPLIED));
    ns_envelope_free(env);
    env = nst_expect_frame(e, &r, BODY(GOODBYE));
    ns_envelope_free(env);
    nst_raw_close(&r);
    int status;
    assert_int_equal(nst_daemon_wait_exit(e, NST_STOP_MS, &status), 0);
    assert_int_equal(status, 0);
    /* The listener went with the daemon. */
    assert_int_equal(daemon_get(f, "/healthz"), -1);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_endpoints_and_counters, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_scrapes, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_readyz_while_draining, test_setup, test_teardown),
    };
    return cmocka_run_group_tests_name("prometheus", tests, group_setup, group_teardown);
}
