/* The HTTP listener (daemon/http.h) in process, on a loopback port the
 * kernel picks, without a daemon: what /healthz and /readyz answer for each
 * heartbeat age and readiness the loop could publish (a stuck loop
 * included, which a running daemon cannot be made to show on demand), and
 * what /metrics, other paths and other methods get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "http.h"
#include "metrics.h"

#define STALE_MS 2000
#define SECOND   1000000000ull

static char body[65536];

typedef struct {
    size_t len;
} sink;

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    size_t take = size * n;
    if (s->len + take >= sizeof(body))
        return 0;
    memcpy(body + s->len, ptr, take);
    s->len += take;
    body[s->len] = '\0';
    return take;
}

/* The status of METHOD http://127.0.0.1:port/path, its body in body and
 * Content-Type in ct; -1 when nothing answered. */
static long request(uint16_t port, const char *method, const char *path, char *ct, size_t ct_cap)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    sink s = {0};
    body[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        char *type = NULL;
        if (ct != NULL && curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK)
            snprintf(ct, ct_cap, "%s", type ? type : "");
    }
    curl_easy_cleanup(c);
    return status;
}

static long get(uint16_t port, const char *path)
{
    return request(port, "GET", path, NULL, 0);
}

static int setup(void **state)
{
    ns_metrics_reset();
    ns_http_options o = {"127.0.0.1", 0, STALE_MS};
    ns_http *h = NULL;
    if (ns_http_start(&o, &h) != 0)
        return -1;
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    ns_http_stop(*state);
    return 0;
}

static void test_healthz_follows_the_heartbeat(void **state)
{
    uint16_t port = ns_http_port(*state);
    assert_true(port != 0);
    /* Before the loop's first beat. */
    assert_int_equal(get(port, "/healthz"), 503);
    assert_non_null(strstr(body, "has not started"));
    ns_metrics_heartbeat(uv_hrtime());
    assert_int_equal(get(port, "/healthz"), 200);
    assert_string_equal(body, "ok\n");
    /* A loop that has not beaten for 10 s is stuck. */
    ns_metrics_heartbeat(uv_hrtime() - 10 * SECOND);
    assert_int_equal(get(port, "/healthz"), 503);
    assert_non_null(strstr(body, "has not run for"));
    ns_metrics_heartbeat(uv_hrtime());
    assert_int_equal(get(port, "/healthz"), 200);
}

static void test_readyz_follows_the_readiness(void **state)
{
    uint16_t port = ns_http_port(*state);
    ns_metrics_heartbeat(uv_hrtime());
    static const struct {
        ns_metrics_readiness r;
        long status;
        const char *says;
    } cases[] = {
        {NS_READY_STARTING, 503, "starting"},          {NS_READY_OK, 200, "ready\n"},
        {NS_READY_DB_UNREACHABLE, 503, "unreachable"}, {NS_READY_SCHEMA_BEHIND, 503, "migrations"},
        {NS_READY_DRAINING, 503, "draining"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ns_metrics_set_readiness(cases[i].r);
        assert_int_equal(get(port, "/readyz"), cases[i].status);
        if (strstr(body, cases[i].says) == NULL)
            fail_msg("readiness %d: /readyz said \"%s\"", (int)cases[i].r, body);
    }
    /* Ready, but the loop is stuck: not ready either. */
    ns_metrics_set_readiness(NS_READY_OK);
    ns_metrics_heartbeat(uv_hrtime() - 10 * SECOND);
    assert_int_equal(get(port, "/readyz"), 503);
    assert_non_null(strstr(body, "event loop"));
}

static void test_metrics_and_the_rest(void **state)
{
    uint16_t port = ns_http_port(*state);
    ns_metrics_inc(NS_METRIC_MUTATIONS_MERGED);
    char ct[128] = "";
    assert_int_equal(request(port, "GET", "/metrics", ct, sizeof(ct)), 200);
    assert_string_equal(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(body, "\nnapsync_mutations_total{outcome=\"merged\"} 1\n"));
    /* A query string names the same resource. */
    assert_int_equal(get(port, "/metrics?x=1"), 200);
    assert_int_equal(request(port, "POST", "/metrics", NULL, 0), 405);
    assert_int_equal(request(port, "DELETE", "/healthz", NULL, 0), 405);
    assert_int_equal(get(port, "/"), 404);
    assert_int_equal(get(port, "/metrics/"), 404);
}

int main(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_healthz_follows_the_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_follows_the_readiness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_and_the_rest, setup, teardown),
    };
    int rc = cmocka_run_group_tests_name("http", tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
