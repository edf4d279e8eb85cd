/* The metrics registry and its Prometheus text exposition:
 * daemon/metrics.h. Every line of the output must be a comment (# HELP,
 * # TYPE) or a sample of a declared family; names, labels, counters,
 * gauges and histograms (cumulative buckets, _sum, _count) are checked
 * against what was recorded. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

#define MS (1000000ull)

static int setup(void **state)
{
    (void)state;
    ns_metrics_reset();
    return 0;
}

static char *render(void)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(ns_metrics_render(0, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* The line of the sample whose name and labels are exactly series
 * ("name" or "name{k=\"v\"}"), or NULL. */
static const char *find_series(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line != NULL; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return line;
    }
    return NULL;
}

static bool has_series(const char *text, const char *series)
{
    return find_series(text, series) != NULL;
}

/* The value of that sample; fails the test when there is none. */
static double sample(const char *text, const char *series)
{
    const char *line = find_series(text, series);
    if (line == NULL)
        fail_msg("no sample %s in:\n%s", series, text);
    return strtod(line + strlen(series) + 1, NULL);
}

static bool name_char(char c, bool first)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':' ||
           (!first && isdigit((unsigned char)c));
}

/* Checks the whole text against the format: every sample line is
 * NAME[{LABEL="VALUE",...}] NUMBER, its family was declared by # HELP and
 * # TYPE before it, each family once, and a counter's name ends in _total. */
static void check_format(const char *text)
{
    char families[128][96];
    char types[128][16];
    size_t nfam = 0;
    char *copy = strdup(text);
    assert_non_null(copy);
    assert_true(strlen(copy) > 0 && copy[strlen(copy) - 1] == '\n');
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[96];
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%95s", name), 1);
            for (size_t i = 0; i < nfam; i++)
                if (strcmp(families[i], name) == 0)
                    fail_msg("family %s declared twice", name);
            assert_true(nfam < 128);
            snprintf(families[nfam], sizeof(families[nfam]), "%s", name);
            types[nfam][0] = '\0';
            assert_true(strlen(line) > 8 + strlen(name)); /* a help text follows */
            nfam++;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char type[16];
            assert_int_equal(sscanf(line + 7, "%95s %15s", name, type), 2);
            assert_true(nfam > 0);
            assert_string_equal(families[nfam - 1], name);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            snprintf(types[nfam - 1], sizeof(types[nfam - 1]), "%s", type);
            if (strcmp(type, "counter") == 0) {
                size_t n = strlen(name);
                assert_true(n > 6 && strcmp(name + n - 6, "_total") == 0);
            }
            continue;
        }
        assert_true(line[0] != '#');
        /* NAME */
        size_t i = 0;
        assert_true(name_char(line[0], true));
        while (name_char(line[i], false))
            i++;
        assert_true(i < sizeof(name));
        memcpy(name, line, i);
        name[i] = '\0';
        /* {LABEL="VALUE",...} */
        if (line[i] == '{') {
            i++;
            for (;;) {
                assert_true(name_char(line[i], true) && line[i] != ':');
                while (name_char(line[i], false))
                    i++;
                assert_int_equal(line[i++], '=');
                assert_int_equal(line[i++], '"');
                while (line[i] != '"') {
                    assert_true(line[i] != '\0' && line[i] != '\\' && line[i] != '\n');
                    i++;
                }
                i++;
                if (line[i] == ',') {
                    i++;
                    continue;
                }
                assert_int_equal(line[i++], '}');
                break;
            }
        }
        assert_int_equal(line[i++], ' ');
        char *end;
        (void)strtod(line + i, &end);
        assert_true(end != line + i && *end == '\0');
        /* its family: the last declared, the name itself or, for a
         * histogram, the name with _bucket, _sum or _count */
        assert_true(nfam > 0);
        const char *fam = families[nfam - 1];
        size_t fl = strlen(fam);
        bool ok = strcmp(name, fam) == 0;
        if (!ok && strcmp(types[nfam - 1], "histogram") == 0 && strncmp(name, fam, fl) == 0)
            ok = strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
                 strcmp(name + fl, "_count") == 0;
        if (!ok)
            fail_msg("sample %s outside its family %s", name, fam);
    }
    free(copy);
}

static void test_empty_registry_is_well_formed(void **state)
{
    (void)state;
    char *text = render();
    check_format(text);
    assert_true(strstr(text, "# TYPE napsync_mutations_total counter\n") != NULL);
    assert_true(strstr(text, "# TYPE napsync_push_duration_seconds histogram\n") != NULL);
    assert_true(strstr(text, "# TYPE napsync_sessions_open gauge\n") != NULL);
    assert_int_equal(sample(text, "napsync_mutations_total{outcome=\"applied\"}"), 0);
    assert_int_equal(sample(text, "napsync_push_duration_seconds_bucket{le=\"+Inf\"}"), 0);
    assert_int_equal(sample(text, "napsync_push_duration_seconds_count"), 0);
    assert_int_equal(sample(text, "napsync_ready"), 0);
    /* A family without label values yet has a header and no sample. */
    assert_true(strstr(text, "# TYPE napsync_limit_hits_total counter\n") != NULL);
    assert_null(strstr(text, "napsync_limit_hits_total{"));
    free(text);
}

static void test_counters_and_gauges(void **state)
{
    (void)state;
    ns_metrics_inc(NS_METRIC_MUTATIONS_APPLIED);
    ns_metrics_inc(NS_METRIC_MUTATIONS_APPLIED);
    ns_metrics_inc(NS_METRIC_MUTATIONS_CONFLICT);
    ns_metrics_add(NS_METRIC_BYTES_IN, 1234567890123ull);
    ns_metrics_set(NS_GAUGE_SESSIONS_OPEN, 7);
    ns_metrics_set(NS_GAUGE_SESSIONS_OPEN, 5); /* a gauge is set, not added */
    ns_metrics_set(NS_GAUGE_DB_IDLE, 3);
    ns_metrics_set(NS_GAUGE_FEED_LAG_MAX, -1); /* gauges are signed */
    char *text = render();
    check_format(text);
    assert_int_equal(sample(text, "napsync_mutations_total{outcome=\"applied\"}"), 2);
    assert_int_equal(sample(text, "napsync_mutations_total{outcome=\"merged\"}"), 0);
    assert_int_equal(sample(text, "napsync_mutations_total{outcome=\"conflict\"}"), 1);
    assert_true(strstr(text, "napsync_frame_bytes_received_total 1234567890123\n") != NULL);
    assert_int_equal(sample(text, "napsync_sessions_open"), 5);
    assert_int_equal(sample(text, "napsync_db_connections{state=\"idle\"}"), 3);
    assert_int_equal(sample(text, "napsync_db_connections{state=\"busy\"}"), 0);
    assert_int_equal(sample(text, "napsync_feed_lag_max"), -1);
    /* One HELP and TYPE for the four outcomes. */
    const char *first = strstr(text, "# TYPE napsync_mutations_total");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE napsync_mutations_total"));
    free(text);
}

static void test_histogram_buckets_are_cumulative(void **state)
{
    (void)state;
    ns_metrics_observe(NS_HIST_PUSH, 700000);     /* 0.7 ms: le 0.001 */
    ns_metrics_observe(NS_HIST_PUSH, 1 * MS);     /* exactly 1 ms: le 0.001 too */
    ns_metrics_observe(NS_HIST_PUSH, 3 * MS);     /* le 0.005 */
    ns_metrics_observe(NS_HIST_PUSH, 20000 * MS); /* 20 s: only +Inf */
    ns_metrics_observe(NS_HIST_PULL, 0);
    char *text = render();
    check_format(text);
    static const struct {
        const char *le;
        int count;
    } want[] = {{"0.0005", 0}, {"0.001", 2}, {"0.0025", 2}, {"0.005", 3}, {"0.01", 3},
                {"0.025", 3},  {"0.05", 3},  {"0.1", 3},    {"0.25", 3},  {"0.5", 3},
                {"1", 3},      {"2.5", 3},   {"5", 3},      {"10", 3},    {"+Inf", 4}};
    char series[128];
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(series, sizeof(series), "napsync_push_duration_seconds_bucket{le=\"%s\"}",
                 want[i].le);
        if ((int)sample(text, series) != want[i].count)
            fail_msg("%s is %g, expected %d", series, sample(text, series), want[i].count);
    }
    assert_int_equal(sample(text, "napsync_push_duration_seconds_count"), 4);
    assert_true(strstr(text, "napsync_push_duration_seconds_sum 20.004700000\n") != NULL);
    /* The buckets come in increasing order, +Inf last. */
    const char *a = strstr(text, "napsync_push_duration_seconds_bucket{le=\"0.0005\"}");
    const char *b = strstr(text, "napsync_push_duration_seconds_bucket{le=\"10\"}");
    const char *c = strstr(text, "napsync_push_duration_seconds_bucket{le=\"+Inf\"}");
    assert_true(a != NULL && b != NULL && c != NULL && a < b && b < c);
    /* Each histogram is its own. */
    assert_int_equal(sample(text, "napsync_pull_duration_seconds_bucket{le=\"0.0005\"}"), 1);
    assert_int_equal(sample(text, "napsync_pull_duration_seconds_count"), 1);
    assert_int_equal(sample(text, "napsync_db_query_duration_seconds_count"), 0);
    free(text);
}

static void test_label_families(void **state)
{
    (void)state;
    ns_metrics_limit_hit("max_sessions");
    ns_metrics_limit_hit("max_sessions");
    ns_metrics_limit_hit("db_queue");
    /* Upper case folds to lower case: error code names come that way. */
    ns_metrics_count(NS_FAMILY_REJECTIONS, "PERMISSION_DENIED");
    ns_metrics_count(NS_FAMILY_REJECTIONS, "permission_denied");
    /* What is not a plain word is never written into the text. */
    ns_metrics_limit_hit("bad\"label");
    ns_metrics_limit_hit("spa ce");
    ns_metrics_limit_hit("");
    ns_metrics_limit_hit(NULL);
    ns_metrics_limit_hit("x2345678901234567890123456789012345678901"); /* 41: too long */
    ns_metrics_limit_hit("y234567890123456789012345678901234567890");  /* 40: the most */
    char *text = render();
    check_format(text);
    assert_int_equal(sample(text, "napsync_limit_hits_total{limit=\"max_sessions\"}"), 2);
    assert_int_equal(sample(text, "napsync_limit_hits_total{limit=\"db_queue\"}"), 1);
    assert_int_equal(sample(text, "napsync_limit_hits_total{limit=\"other\"}"), 5);
    assert_int_equal(
        sample(text,
               "napsync_limit_hits_total{limit=\"y234567890123456789012345678901234567890\"}"),
        1);
    assert_int_equal(sample(text, "napsync_mutations_rejected_total{reason=\"permission_denied\"}"),
                     2);
    assert_false(
        has_series(text, "napsync_mutations_rejected_total{reason=\"PERMISSION_DENIED\"}"));
    assert_null(strstr(text, "bad"));
    free(text);
}

static void test_family_slots_are_bounded(void **state)
{
    (void)state;
    char label[64];
    for (int i = 0; i < NS_METRICS_FAMILY_SLOTS + 10; i++) {
        snprintf(label, sizeof(label), "code_%d", i);
        ns_metrics_count(NS_FAMILY_ERRORS_SENT, label);
    }
    ns_metrics_count(NS_FAMILY_ERRORS_SENT, "code_0"); /* a known one still counts as itself */
    char *text = render();
    check_format(text);
    assert_int_equal(sample(text, "napsync_errors_sent_total{code=\"code_0\"}"), 2);
    snprintf(label, sizeof(label), "napsync_errors_sent_total{code=\"code_%d\"}",
             NS_METRICS_FAMILY_SLOTS - 1);
    assert_int_equal(sample(text, label), 1);
    snprintf(label, sizeof(label), "napsync_errors_sent_total{code=\"code_%d\"}",
             NS_METRICS_FAMILY_SLOTS);
    assert_false(has_series(text, label));
    assert_int_equal(sample(text, "napsync_errors_sent_total{code=\"other\"}"), 10);
    free(text);
}

static void test_health_values(void **state)
{
    (void)state;
    assert_int_equal(ns_metrics_get_readiness(), NS_READY_STARTING);
    assert_int_equal(ns_metrics_last_heartbeat(), 0);
    ns_metrics_heartbeat(5000 * MS);
    ns_metrics_set_readiness(NS_READY_OK);
    char *text = NULL;
    size_t len;
    assert_int_equal(ns_metrics_render(7500 * MS, &text, &len), 0);
    check_format(text);
    assert_int_equal(sample(text, "napsync_ready"), 1);
    assert_int_equal(sample(text, "napsync_draining"), 0);
    assert_true(strstr(text, "napsync_heartbeat_age_seconds 2.500\n") != NULL);
    assert_true(strstr(text, "napsync_build_info{version=\"") != NULL);
    free(text);
    ns_metrics_set_readiness(NS_READY_DRAINING);
    assert_string_equal(ns_metrics_readiness_text(NS_READY_DRAINING), "draining: shutting down");
    text = render();
    assert_int_equal(sample(text, "napsync_ready"), 0);
    assert_int_equal(sample(text, "napsync_draining"), 1);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_empty_registry_is_well_formed, setup),
        cmocka_unit_test_setup(test_counters_and_gauges, setup),
        cmocka_unit_test_setup(test_histogram_buckets_are_cumulative, setup),
        cmocka_unit_test_setup(test_label_families, setup),
        cmocka_unit_test_setup(test_family_slots_are_bounded, setup),
        cmocka_unit_test_setup(test_health_values, setup),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
