/* Reports end to end, through a real napsyncd, PostgreSQL and TLS
 * (docs/reports.md): the figures of the progress, region and coverage
 * reports against values computed by hand from a small fixture
 * (reports_fixture.sql, whose comments give the arithmetic); readability
 * (a draft plan of another organisation is NOT_FOUND and not counted; an
 * observer sees the same approved figures); a report submitted and
 * approved through the sync engine; the server's checks of a
 * ReportRequest on the wire and its refusal of a report larger than a
 * frame; the napsync CLI's Markdown, CSV and HTML; and the HTML page
 * opened in headless Chromium, whose own script records how its charts
 * rendered. Chromium is required: without it the test fails (install it
 * with tests/lib/deps.sh, as tests/run.sh does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "harness.h"

#define OUT_CAP (4 * 1024 * 1024)
#define ERR(x)  NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##x

#define PLAN_A  "a0000000-0000-4000-8000-000000000001" /* ZZ NAP, mogender, adopted */
#define PLAN_D  "a0000000-0000-4000-8000-000000000002" /* ZZ NAP, mofa, draft */
#define PLAN_L  "a0000000-0000-4000-8000-0000000000ff" /* made large by test_too_large */
#define I5      "10000000-0000-4000-8000-000000000005"
#define NOWHERE "a0000000-0000-4000-8000-00000000dead"

typedef struct {
    nst_env *e;
    nst_device coord, observer, mofa, regional, xx;
    char store[NST_PATH];
    char region_id[40]; /* the fixture's regional organisation */
    char mofa_id[40];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char *out;

/* ---- fixture ----------------------------------------------------------------------- */

static char *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *b = realloc(buf, cap);
            if (b == NULL) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
        if (got == 0)
            break;
    }
    fclose(fp);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Runs reports_fixture.sql in one transaction. */
static int load_fixture(nst_env *e)
{
    char path[NST_PATH];
    if (nst_path_join(path, e->source_dir, "tests/integration/reports_fixture.sql") != 0)
        return -1;
    char *sql = read_all(path, NULL);
    if (sql == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    const char *keys[] = {"host", "port", "user", "dbname", NULL};
    const char *vals[] = {e->pg.host, e->pg.port, e->pg.user, e->dbname, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 0);
    int rc = -1;
    if (conn && PQstatus(conn) == CONNECTION_OK) {
        PGresult *r = PQexec(conn, "BEGIN");
        PQclear(r);
        r = PQexec(conn, sql);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok)
            fprintf(stderr, "reports_fixture.sql: %s", PQerrorMessage(conn));
        PQclear(r);
        r = PQexec(conn, ok ? "COMMIT" : "ROLLBACK");
        if (ok && PQresultStatus(r) == PGRES_COMMAND_OK)
            rc = 0;
        else if (ok)
            fprintf(stderr, "reports_fixture.sql at COMMIT: %s", PQerrorMessage(conn));
        PQclear(r);
    } else {
        fprintf(stderr, "cannot connect: %s", conn ? PQerrorMessage(conn) : "out of memory\n");
    }
    PQfinish(conn);
    free(sql);
    return rc;
}

static int group_setup(void **state)
{
    out = malloc(OUT_CAP);
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL || out == NULL)
        return -1;
    f->e = nst_env_new("reports", NULL);
    if (f->e == NULL || nst_device_issue(f->e, false, "coord", &f->coord) != 0 ||
        nst_device_issue(f->e, false, "observer", &f->observer) != 0 ||
        nst_device_issue(f->e, false, "mofa-desk", &f->mofa) != 0 ||
        nst_device_issue(f->e, false, "regional-desk", &f->regional) != 0 ||
        nst_device_issue(f->e, false, "xx-desk", &f->xx) != 0 ||
        nst_daemon_start(f->e, NULL) != 0 || load_fixture(f->e) != 0 ||
        nst_device_register(f->e, "mogender", "Amina Coordinator", "coordinator", &f->coord) != 0 ||
        nst_device_register(f->e, "parliament", "Caucus Observer", "observer", &f->observer) != 0 ||
        nst_device_register(f->e, "mofa", "Desk Officer", "coordinator", &f->mofa) != 0 ||
        nst_device_register(f->e, "fixture-region", "Regional Officer", "regional", &f->regional) !=
            0 ||
        nst_device_register(f->e, "xx-gender", "XX Coordinator", "coordinator", &f->xx) != 0)
        return -1;
    if (nst_path_join(f->store, f->e->dir, "coord.store") != 0 ||
        nst_db_exec(f->e, "SELECT id FROM organisations WHERE code = 'fixture-region'", 0, NULL,
                    f->region_id, sizeof(f->region_id)) != 0 ||
        nst_db_exec(f->e, "SELECT id FROM organisations WHERE code = 'mofa'", 0, NULL, f->mofa_id,
                    sizeof(f->mofa_id)) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    int rc = nst_group_teardown(state);
    free(out);
    return rc;
}

/* ---- JSON ----------------------------------------------------------------------------- */

/* The member at path ("a/b/0/c": object keys and array indexes), or NULL. */
static const json_t *at(const json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, "/", &save); k && j; k = strtok_r(NULL, "/", &save)) {
        if (json_is_array(j)) {
            char *end;
            long i = strtol(k, &end, 10);
            j = *end == '\0' && i >= 0 ? json_array_get(j, (size_t)i) : NULL;
        } else {
            j = json_object_get(j, k);
        }
    }
    return j;
}

/* The element of array a whose member key is the string value. */
static const json_t *find(const json_t *a, const char *key, const char *value)
{
    size_t i;
    const json_t *x;
    json_array_foreach(a, i, x)
    {
        const json_t *v = at(x, key);
        if (json_is_string(v) && strcmp(json_string_value(v), value) == 0)
            return x;
    }
    fail_msg("no element with %s = \"%s\"", key, value);
    return NULL;
}

/* want NULL: the member must be JSON null. Decimals are strings. */
static void expect_str(const json_t *j, const char *path, const char *want)
{
    const json_t *v = at(j, path);
    if (want == NULL) {
        if (!json_is_null(v))
            fail_msg("%s: expected null", path);
        return;
    }
    if (!json_is_string(v))
        fail_msg("%s: expected the string \"%s\", got %s", path, want,
                 v ? (json_is_null(v) ? "null" : "another type") : "nothing");
    if (strcmp(json_string_value(v), want) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", path, want, json_string_value(v));
}

static void expect_int(const json_t *j, const char *path, long long want)
{
    const json_t *v = at(j, path);
    if (!json_is_integer(v))
        fail_msg("%s: expected the integer %lld", path, want);
    if (json_integer_value(v) != want)
        fail_msg("%s: expected %lld, got %lld", path, want, (long long)json_integer_value(v));
}

/* Asks for a report as device d; fails the test unless it comes. */
static json_t *report(fixture *f, const nst_device *d, const char *kind, const char *plan,
                      uint32_t year, const char *region)
{
    ns_client *c = nst_must_connect(f->e, d);
    ns_report_request req = {.kind = kind, .plan_id = plan, .year = year, .region_id = region};
    char *text = NULL;
    ns_error err;
    if (ns_client_report_wait(c, &req, &text, &err) != NS_OK)
        nst_fail(f->e, "report %s as %s: %s", kind, d->name, err.message);
    nst_client_close(c);
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (doc == NULL)
        nst_fail(f->e, "report %s: not JSON: %s", kind, jerr.text);
    expect_str(doc, "kind", kind);
    return doc;
}

/* The report must be refused with this server code, and the session must
 * go on serving. */
static void expect_refused(fixture *f, const nst_device *d, const char *kind, const char *plan,
                           uint32_t year, const char *region, int code)
{
    ns_client *c = nst_must_connect(f->e, d);
    ns_report_request req = {.kind = kind, .plan_id = plan, .year = year, .region_id = region};
    char *text = NULL;
    ns_error err;
    int rc = ns_client_report_wait(c, &req, &text, &err);
    if (rc != NS_ERR_SERVER || err.server_code != code)
        nst_fail(f->e, "report %s: %d (server code %d) %s; expected server code %d", kind, rc,
                 err.server_code, rc == NS_OK ? "" : err.message, code);
    assert_null(text);
    nst_must_ping(f->e, c);
    nst_client_close(c);
}

/* ---- the figures -------------------------------------------------------------------- */

static void test_progress_figures(void **state)
{
    fixture *f = *state;
    json_t *r = report(f, &f->coord, "progress", PLAN_A, 2022, NULL);
    expect_int(r, "year", 2022);
    expect_int(r, "due_days", 60);
    expect_str(r, "plan/code", "ZZ-NAP2");
    expect_str(r, "plan/owner/code", "mogender");
    /* Pillars: P1 = avg(80.0, 24.0) = 52.0; P2 = 50.0 (I3 has no value). */
    const json_t *pillars = at(r, "pillars");
    assert_int_equal(json_array_size(pillars), 2);
    const json_t *p1 = at(pillars, "0"), *p2 = at(pillars, "1");
    expect_str(p1, "code", "P1");
    expect_str(p1, "progress_pct", "52.0");
    expect_int(p1, "indicators", 2);
    expect_int(p1, "with_value", 2);
    expect_int(p1, "with_progress", 2);
    expect_int(p1, "achieved", 0);
    expect_str(p2, "code", "P2");
    expect_str(p2, "progress_pct", "50.0");
    expect_int(p2, "indicators", 2);
    expect_int(p2, "with_value", 1);
    /* I1: 2022 value 18 (the approved correction of 16), the 2022 target 20:
     * (18 - 10) / (20 - 10) = 80.0 %; previous 2021 = 14: up by 4. */
    const json_t *i1 = find(at(p1, "objectives/0/indicators"), "code", "I1");
    expect_str(i1, "latest/value", "18");
    expect_str(i1, "latest/report_id", "20000000-0000-4000-8000-000000000013");
    expect_str(i1, "latest/period_end", "2022-12-31");
    expect_str(i1, "target", "20");
    expect_str(i1, "target_source", "year");
    expect_str(i1, "baseline", "10");
    expect_str(i1, "pct_of_target", "80.0");
    expect_str(i1, "previous/value", "14");
    expect_str(i1, "change", "4");
    expect_str(i1, "trend", "up");
    expect_str(i1, "responsible/code", "defence");
    /* I5: Q4 2021 = 12, headline target 50, no baseline: 24.0 %. */
    const json_t *i5 = find(at(p1, "objectives/0/indicators"), "code", "I5");
    expect_str(i5, "latest/value", "12");
    expect_str(i5, "target_source", "headline");
    expect_str(i5, "pct_of_target", "24.0");
    expect_str(i5, "trend", NULL);
    /* I2 reached through its result: 150 after 180 against a target below
     * the baseline: (150 - 200) / (100 - 200) = 50.0 %, down by 30. */
    const json_t *i2 = find(at(p2, "objectives/0/indicators"), "code", "I2");
    expect_str(i2, "latest/value", "150");
    expect_str(i2, "latest/period_start", "2022-07-01");
    expect_str(i2, "previous/value", "180");
    expect_str(i2, "pct_of_target", "50.0");
    expect_str(i2, "change", "-30");
    expect_str(i2, "trend", "down");
    /* I3 reached through its action: no value. */
    const json_t *i3 = find(at(p2, "objectives/0/indicators"), "code", "I3");
    expect_str(i3, "latest", NULL);
    expect_str(i3, "pct_of_target", NULL);
    /* I4 has no objective; its value is text. */
    assert_int_equal(json_array_size(at(r, "unassigned_indicators")), 1);
    expect_str(r, "unassigned_indicators/0/code", "I4");
    expect_str(r, "unassigned_indicators/0/latest/value_text", "Good progress");
    expect_str(r, "unassigned_indicators/0/latest/value", NULL);
    /* Summary: avg(80.0, 50.0, 24.0) = 51.3. */
    expect_int(r, "summary/indicators", 5);
    expect_int(r, "summary/with_value", 4);
    expect_int(r, "summary/with_progress", 3);
    expect_str(r, "summary/progress_pct", "51.3");
    /* Reporting periods ending in 2022: I1 (on time), I2 H1 (late), I2 H2
     * (on time), I4 (late), I5 Q1-Q4 (overdue): 2 of 8 on time. */
    expect_int(r, "reporting/expected", 8);
    expect_int(r, "reporting/on_time", 2);
    expect_int(r, "reporting/late", 2);
    expect_int(r, "reporting/overdue", 4);
    expect_int(r, "reporting/pending", 0);
    expect_str(r, "reporting/on_time_pct", "25.0");
    assert_int_equal(json_array_size(at(r, "reporting/periods")), 8);
    const json_t *h1 = find(at(r, "reporting/periods"), "period_end", "2022-06-30");
    expect_str(h1, "indicator/code", "I2");
    expect_str(h1, "due", "2022-08-29");
    expect_str(h1, "status", "late");
    expect_str(h1, "first_submitted_at", "2022-09-10T10:00:00Z");
    /* Overdue up to 2022: I2 2021 H1 and H2, I4 2021, I5 2021 Q1-Q3 and 2022 Q1-Q4. */
    assert_int_equal(json_array_size(at(r, "reporting/overdue_reports")), 10);
    expect_str(r, "reporting/overdue_reports/0/indicator/code", "I5");
    expect_str(r, "reporting/overdue_reports/0/due", "2021-05-30");
    /* Per organisation. */
    const json_t *orgs = at(r, "organisations");
    const json_t *def = find(orgs, "organisation/code", "defence");
    expect_int(def, "reporting/expected", 5);
    expect_int(def, "reporting/on_time", 1);
    expect_int(def, "reporting/overdue", 4);
    expect_str(def, "reporting/on_time_pct", "20.0");
    expect_int(def, "actions/total", 1);
    expect_int(def, "actions/ongoing", 1);
    expect_int(def, "indicators", 2);
    expect_str(def, "budget/0/currency", "USD");
    expect_str(def, "budget/0/costed", "3000.50");
    expect_str(def, "budget/0/spent", "1700.50");
    const json_t *pol = find(orgs, "organisation/code", "police");
    expect_str(pol, "reporting/on_time_pct", "50.0");
    expect_str(find(orgs, "organisation/code", "wpsnet"), "reporting/on_time_pct", "0.0");
    const json_t *mog = find(orgs, "organisation/code", "mogender");
    expect_int(mog, "reporting/expected", 0);
    expect_str(mog, "reporting/on_time_pct", NULL);
    expect_int(mog, "actions/delayed", 1);
    /* Budget 2022, exact sums. */
    const json_t *src = at(r, "budget/by_funding_source");
    assert_int_equal(json_array_size(src), 3);
    const json_t *nat = find(src, "funding_source", "national_budget");
    expect_int(nat, "lines", 2);
    expect_str(nat, "costed", "1300.75");
    expect_str(nat, "allocated", "1100.25");
    expect_str(nat, "disbursed", "600");
    expect_str(nat, "spent", "600.10");
    const json_t *donor = find(src, "funding_source", "donor_basket_fund");
    expect_str(donor, "costed", "2000");
    expect_str(donor, "spent", "1200.40");
    const json_t *other = find(src, "funding_source", "other_fund");
    expect_str(other, "currency", "EUR");
    expect_str(other, "costed", "50");
    expect_str(other, "spent", "0");
    const json_t *usd = find(at(r, "budget/totals"), "currency", "USD");
    expect_int(usd, "lines", 3);
    expect_str(usd, "costed", "3300.75");
    expect_str(usd, "allocated", "2600.25");
    expect_str(usd, "spent", "1800.50");
    expect_str(usd, "gender_responsive_costed", "2000");
    expect_str(find(at(r, "budget/plan_totals"), "currency", "USD"), "costed", "4299.75");
    expect_str(find(at(r, "budget/by_organisation"), "organisation/code", "police"), "costed",
               "300.25");
    json_decref(r);

    /* 2023: the 2023 report of I1 is only submitted, so the value is still
     * 2022's 18, now against the headline target 30: 40.0 %. */
    r = report(f, &f->coord, "progress", PLAN_A, 2023, NULL);
    const json_t *j1 = find(at(r, "pillars/0/objectives/0/indicators"), "code", "I1");
    expect_str(j1, "latest/value", "18");
    expect_str(j1, "target", "30");
    expect_str(j1, "target_source", "headline");
    expect_str(j1, "pct_of_target", "40.0");
    json_decref(r);
    /* Year 0: the latest year a value ends in. */
    r = report(f, &f->coord, "progress", PLAN_A, 0, NULL);
    expect_int(r, "year", 2022);
    json_decref(r);
    nst_test_passed(f->e);
}

static void test_region_figures(void **state)
{
    fixture *f = *state;
    json_t *r = report(f, &f->regional, "region", NULL, 0, f->region_id);
    expect_str(r, "region/code", "fixture-region");
    assert_int_equal(json_array_size(at(r, "members")), 3);
    const json_t *zz = find(at(r, "members"), "country", "ZZ");
    expect_int(zz, "indicators_reported", 1);
    expect_int(zz, "indicators_total", 2);
    /* XX's only NAP is a draft of xx-gender: not readable here. */
    assert_int_equal(json_array_size(at(find(at(r, "members"), "country", "XX"), "naps")), 0);
    assert_int_equal(json_array_size(at(r, "raps")), 1);
    const json_t *inds = at(r, "raps/0/indicators");
    /* RI1: ZZ's I1 (18, 2022) and YY's Y1 (26, 2023, after 22 in 2021). */
    const json_t *ri1 = find(inds, "code", "RI1");
    expect_int(ri1, "members_total", 3);
    expect_int(ri1, "members_mapped", 2);
    expect_int(ri1, "members_reported", 2);
    expect_int(ri1, "aggregate/n", 2);
    expect_str(ri1, "aggregate/sum", "44");
    expect_str(ri1, "aggregate/mean", "22.0000");
    expect_str(ri1, "aggregate/min", "18");
    expect_str(ri1, "aggregate/max", "26");
    assert_int_equal(json_array_size(at(ri1, "not_reported")), 1);
    expect_str(ri1, "not_reported/0", "XX");
    const json_t *yy = find(at(ri1, "members"), "country", "YY");
    expect_str(yy, "status", "reported");
    expect_str(yy, "latest/value", "26");
    expect_str(yy, "indicator/code", "Y1");
    expect_str(find(at(ri1, "members"), "country", "XX"), "status", "not_mapped");
    /* RI2: only ZZ maps it (I3), without a value. */
    const json_t *ri2 = find(inds, "code", "RI2");
    expect_int(ri2, "members_mapped", 1);
    expect_int(ri2, "members_reported", 0);
    expect_int(ri2, "aggregate/n", 0);
    expect_str(ri2, "aggregate/sum", NULL);
    assert_int_equal(json_array_size(at(ri2, "not_reported")), 3);
    const json_t *zz2 = find(at(ri2, "members"), "country", "ZZ");
    expect_str(zz2, "status", "not_reported");
    expect_str(zz2, "indicator/code", "I3");
    json_decref(r);
    /* xx-gender reads its own draft: XX counts for it (30). */
    r = report(f, &f->xx, "region", NULL, 0, f->region_id);
    const json_t *x1 = find(at(r, "raps/0/indicators"), "code", "RI1");
    expect_int(x1, "aggregate/n", 3);
    expect_str(x1, "aggregate/sum", "74");
    expect_str(x1, "aggregate/max", "30");
    assert_int_equal(json_array_size(at(x1, "not_reported")), 0);
    json_decref(r);
    nst_test_passed(f->e);
}

static void test_coverage_figures(void **state)
{
    fixture *f = *state;
    /* Adopted NAPs: A (ZZ) and Y (YY); D and X are drafts. */
    json_t *r = report(f, &f->coord, "coverage", NULL, 0, NULL);
    expect_int(r, "adopted_naps", 2);
    const json_t *q = at(r, "questions");
    expect_int(find(q, "id", "costed_budget"), "plans", 1);
    expect_str(find(q, "id", "costed_budget"), "share_pct", "50.0");
    expect_str(find(q, "id", "gender_responsive_budget"), "share_pct", "50.0");
    expect_str(find(q, "id", "sex_disaggregated_indicators"), "share_pct", "50.0");
    expect_str(find(q, "id", "regional_mapping"), "share_pct", "100.0");
    expect_str(find(q, "id", "approved_values"), "share_pct", "100.0");
    expect_int(find(q, "id", "indicators"), "of", 2);
    const json_t *tags = at(r, "tags");
    /* Women in the armed forces in both plans' actions, SGBV
     * accountability in A's only; climate on Y and one of its indicators. */
    const json_t *waf = find(tags, "tag", "women-in-armed-forces");
    expect_int(waf, "actions/plans", 2);
    expect_str(waf, "actions/share_pct", "100.0");
    expect_str(waf, "indicators/share_pct", "50.0");
    const json_t *sgbv = find(tags, "tag", "sgbv-accountability");
    expect_int(sgbv, "actions/plans", 1);
    expect_str(sgbv, "actions/share_pct", "50.0");
    const json_t *climate = find(tags, "tag", "climate");
    expect_str(climate, "actions/share_pct", "0.0");
    expect_str(climate, "indicators/share_pct", "50.0");
    expect_str(climate, "plan_tag/share_pct", "50.0");
    expect_str(climate, "label", "Climate and security");
    expect_str(find(tags, "tag", "border-communities"), "label", NULL);
    assert_int_equal(json_array_size(at(r, "plans")), 2);
    json_decref(r);
    nst_test_passed(f->e);
}

/* ---- readability ------------------------------------------------------------------------ */

static void drop_generated_at(json_t *doc)
{
    json_object_del(doc, "generated_at");
}

static void test_readability(void **state)
{
    fixture *f = *state;
    /* mofa's draft: NOT_FOUND for mogender, like a plan that does not exist. */
    expect_refused(f, &f->coord, "progress", PLAN_D, 0, NULL, ERR(NOT_FOUND));
    expect_refused(f, &f->coord, "progress", NOWHERE, 0, NULL, ERR(NOT_FOUND));
    json_t *r = report(f, &f->mofa, "progress", PLAN_D, 0, NULL);
    expect_int(r, "year", 2024);
    expect_str(r, "unassigned_indicators/0/latest/value", "3");
    json_decref(r);
    /* A region must be a regional organisation. */
    expect_refused(f, &f->coord, "region", NULL, 0, f->mofa_id, ERR(NOT_FOUND));
    /* An observer sees the same approved figures as the coordinator. */
    json_t *a = report(f, &f->coord, "progress", PLAN_A, 2022, NULL);
    json_t *b = report(f, &f->observer, "progress", PLAN_A, 2022, NULL);
    drop_generated_at(a);
    drop_generated_at(b);
    if (!json_equal(a, b))
        nst_fail(f->e, "the observer's progress report differs from the coordinator's");
    json_decref(a);
    json_decref(b);
    a = report(f, &f->coord, "coverage", NULL, 0, NULL);
    b = report(f, &f->observer, "coverage", NULL, 0, NULL);
    drop_generated_at(a);
    drop_generated_at(b);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    nst_test_passed(f->e);
}

/* ---- through the sync engine ------------------------------------------------------------- */

static int cli(fixture *f, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(f->e, &f->coord, f->store, out, OUT_CAP, first, ap);
    va_end(ap);
    return rc;
}

static void must(fixture *f, int rc, const char *what)
{
    if (rc != 0)
        nst_fail(f->e, "napsync %s exited %d: %.2000s", what, rc, out);
}

/* A report of I5 for Q1 2023, submitted now (due 2023-05-30: late) and
 * then approved, each through napsync put and sync: the revisions the
 * engine writes are what the report reads. */
static void test_submitted_through_sync(void **state)
{
    fixture *f = *state;
    char id[40];
    must(f, cli(f, "sync", "--json", NULL), "sync");
    must(f,
         cli(f, "put", "indicator_report", "new", "plan_id:ref=" PLAN_A, "indicator_id:ref=" I5,
             "period_start:date=2023-01-01", "period_end:date=2023-03-31", "value:decimal=20",
             "status:text=submitted", "--json", NULL),
         "put");
    nst_json_get(out, "record_id", id, sizeof(id));
    must(f, cli(f, "sync", "--json", NULL), "sync");
    must(f, cli(f, "status", "--json", NULL), "status");
    if (strstr(out, "\"rejected\":0") == NULL)
        nst_fail(f->e, "the report was refused: %s", out);
    json_t *r = report(f, &f->coord, "progress", PLAN_A, 2023, NULL);
    const json_t *q1 = find(at(r, "reporting/periods"), "period_end", "2023-03-31");
    expect_str(q1, "indicator/code", "I5");
    expect_str(q1, "status", "late");
    /* Submitted now: well after the due date, 2023-05-30. */
    const char *first = json_string_value(at(q1, "first_submitted_at"));
    if (first == NULL || strcmp(first, "2023-05-31") < 0)
        nst_fail(f->e, "first_submitted_at %s is not after the due date", first ? first : "null");
    /* Submitted is not a value yet. */
    expect_str(find(at(r, "pillars/0/objectives/0/indicators"), "code", "I5"), "latest/value",
               "12");
    json_decref(r);
    must(f, cli(f, "put", "indicator_report", id, "status:text=approved", NULL), "put");
    must(f, cli(f, "sync", "--json", NULL), "sync");
    r = report(f, &f->coord, "progress", PLAN_A, 2023, NULL);
    const json_t *i5 = find(at(r, "pillars/0/objectives/0/indicators"), "code", "I5");
    expect_str(i5, "latest/value", "20");
    expect_str(i5, "latest/report_id", id);
    expect_str(i5, "previous/value", "12");
    expect_str(i5, "change", "8");
    expect_str(i5, "trend", "up");
    expect_str(i5, "pct_of_target", "40.0");
    /* The first submission still decides: late. */
    expect_str(find(at(r, "reporting/periods"), "period_end", "2023-03-31"), "status", "late");
    json_decref(r);
    nst_test_passed(f->e);
}

/* ---- the request on the wire -------------------------------------------------------------- */

static void send_report(const nst_env *e, nst_raw *raw, uint64_t rid, const char *kind,
                        const char *plan, uint32_t year, const char *region)
{
    Napsync__V1__ReportRequest rq = NAPSYNC__V1__REPORT_REQUEST__INIT;
    rq.kind = (char *)kind;
    rq.plan_id = (char *)plan;
    rq.year = year;
    rq.region_id = (char *)region;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_REPORT_REQUEST;
    env.report_request = &rq;
    if (nst_raw_send_env(raw, &env) != 0)
        nst_fail(e, "cannot send a ReportRequest");
}

static void test_wire_checks(void **state)
{
    fixture *f = *state;
    nst_raw raw;
    nst_must_raw_auth(f->e, &raw, &f->coord, 1);
    struct {
        const char *kind, *plan;
        uint32_t year;
        const char *region;
        int code;
    } cases[] = {
        {"nonsense", "", 0, "", ERR(INVALID_ARGUMENT)},
        {"", "", 0, "", ERR(INVALID_ARGUMENT)},
        {"progress", "", 0, "", ERR(INVALID_ARGUMENT)},
        {"progress", "not-a-uuid", 0, "", ERR(INVALID_ARGUMENT)},
        {"progress", PLAN_A, 1989, "", ERR(INVALID_ARGUMENT)},
        {"progress", PLAN_A, 2101, "", ERR(INVALID_ARGUMENT)},
        {"progress", PLAN_A, 2022, NOWHERE, ERR(INVALID_ARGUMENT)},
        {"region", PLAN_A, 0, NOWHERE, ERR(INVALID_ARGUMENT)},
        {"region", "", 0, "", ERR(INVALID_ARGUMENT)},
        {"coverage", "", 2022, "", ERR(INVALID_ARGUMENT)},
        {"progress", PLAN_D, 0, "", ERR(NOT_FOUND)},
        {"region", "", 0, NOWHERE, ERR(NOT_FOUND)},
    };
    uint64_t rid = 10;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++, rid++) {
        send_report(f->e, &raw, rid, cases[i].kind, cases[i].plan, cases[i].year, cases[i].region);
        nst_expect_error(f->e, &raw, rid, cases[i].code, false);
    }
    /* Upper-case UUIDs are UUIDs. */
    char upper[40];
    snprintf(upper, sizeof(upper), "%s", PLAN_A);
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    send_report(f->e, &raw, rid, "progress", upper, 2022, "");
    ns_envelope *env = nst_expect_frame(f->e, &raw, NAPSYNC__V1__ENVELOPE__BODY_REPORT_RESULT);
    assert_int_equal(env->request_id, rid);
    assert_string_equal(env->report_result->kind, "progress");
    assert_non_null(strstr(env->report_result->json, "\"ZZ-NAP2\""));
    ns_envelope_free(env);
    nst_must_raw_ping(f->e, &raw, ++rid);
    nst_raw_close(&raw);
    nst_test_passed(f->e);
}

/* A plan whose progress report passes a frame (1 MiB): refused whole with
 * FRAME_TOO_LARGE, not fatal. */
static void test_too_large(void **state)
{
    fixture *f = *state;
    const char *plan =
        "INSERT INTO plans (id, version, tenant_id, changed_by, code, title, kind,"
        " status, period_start, period_end, owner_id, country)"
        " SELECT '" PLAN_L "', 1, '" PLAN_L "', p.id, 'BIG', 'A large plan', 'local',"
        " 'adopted', '2022-01-01', '2022-12-31', p.organisation_id, 'ZZ'"
        " FROM principals p WHERE p.name = 'Fixture Loader'";
    const char *inds =
        "INSERT INTO indicators (id, version, tenant_id, changed_by, plan_id, code, title,"
        " value_type, frequency, target)"
        " SELECT gen_random_uuid(), 1, '" PLAN_L "', p.id, '" PLAN_L "', 'L' || g,"
        " 'Indicator ' || g || ' ' || repeat('x', 400), 'number', 'annual', 10"
        " FROM principals p, generate_series(1, 2500) g WHERE p.name = 'Fixture Loader'";
    if (nst_db_exec(f->e, plan, 0, NULL, NULL, 0) != 0 ||
        nst_db_exec(f->e, inds, 0, NULL, NULL, 0) != 0)
        nst_fail(f->e, "cannot make the large plan");
    size_t from = nst_log_size(f->e);
    ns_client *c = nst_must_connect(f->e, &f->coord);
    ns_report_request req = {.kind = "progress", .plan_id = PLAN_L, .year = 2022};
    char *text = NULL;
    ns_error err;
    int rc = ns_client_report_wait(c, &req, &text, &err);
    if (rc != NS_ERR_SERVER || err.server_code != ERR(FRAME_TOO_LARGE))
        nst_fail(f->e, "a report over 1 MiB: %d (server code %d)", rc, err.server_code);
    assert_null(text);
    if (strstr(err.message, "bytes") == NULL || strstr(err.message, "not sent in part") == NULL)
        nst_fail(f->e, "unclear message: %s", err.message);
    nst_must_ping(f->e, c);
    nst_client_close(c);
    assert_int_equal(nst_log_wait(f->e, from, "above the frame limit", NST_WAIT_MS), 0);
    nst_test_passed(f->e);
}

/* ---- the CLI -------------------------------------------------------------------------------- */

/* Splits RFC 4180 text into records; returns how many, each field count
 * in nfields[] (at most max records), and whether every record ends in
 * CRLF. The field of record row, column col is copied into cell. */
static int csv_parse(const char *s, int *nfields, int max, bool *crlf, int row, int col, char *cell,
                     size_t cap)
{
    int rec = 0, field = 0;
    size_t cl = 0;
    *crlf = true;
    if (cell)
        cell[0] = '\0';
    while (*s) {
        bool quoted = *s == '"';
        if (quoted)
            s++;
        for (;;) {
            char ch;
            if (quoted) {
                if (*s == '\0')
                    return -1;
                if (*s == '"' && s[1] == '"') {
                    ch = '"';
                    s += 2;
                } else if (*s == '"') {
                    s++;
                    break;
                } else {
                    ch = *s++;
                }
            } else {
                if (*s == ',' || *s == '\r' || *s == '\n' || *s == '\0')
                    break;
                ch = *s++;
            }
            if (cell && rec == row && field == col && cl + 1 < cap) {
                cell[cl++] = ch;
                cell[cl] = '\0';
            }
        }
        if (*s == ',') {
            s++;
            field++;
            continue;
        }
        if (*s == '\r' && s[1] == '\n') {
            s += 2;
        } else {
            *crlf = false;
            s += *s ? 1 : 0;
        }
        if (rec < max)
            nfields[rec] = field + 1;
        rec++;
        field = 0;
    }
    return rec;
}

#define HOSTILE_MD                                                                                 \
    "=cmd\\|' /C calc'!A0 &lt;script&gt;alert(\"x\")&lt;/script&gt; &amp; more, \"quoted\""
#define HOSTILE_HTML                                                                               \
    "=cmd|&#39; /C calc&#39;!A0 &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more, "    \
    "&quot;quoted&quot;"
#define HOSTILE_CSV "'=cmd|' /C calc'!A0 <script>alert(\"x\")</script> & more,\n\"quoted\""

/* sha256-BASE64 of the text between open and close in html, for the CSP. */
static void csp_hash(const char *html, const char *open, const char *close, char *outb, size_t cap)
{
    const char *a = strstr(html, open);
    assert_non_null(a);
    a += strlen(open);
    const char *b = strstr(a, close);
    assert_non_null(b);
    unsigned char md[32];
    unsigned int mdlen = 0;
    assert_int_equal(EVP_Digest(a, (size_t)(b - a), md, &mdlen, EVP_sha256(), NULL), 1);
    unsigned char b64[64];
    EVP_EncodeBlock(b64, md, (int)mdlen);
    snprintf(outb, cap, "'sha256-%s'", b64);
}

static void test_cli_formats(void **state)
{
    fixture *f = *state;
    /* Markdown: escaped text, exact figures. */
    must(f, cli(f, "report", "progress", "--plan", PLAN_A, "--year", "2022", NULL), "report md");
    assert_non_null(
        strstr(out, "# Annual progress report 2022: ZZ National Action Plan 2021-2023"));
    assert_non_null(strstr(out, HOSTILE_MD));
    assert_null(strstr(out, "<script>"));
    assert_non_null(strstr(out, "| I1 | Women in the armed forces | Ministry of Defence | 10 | 20 "
                                "(this year) | 18 | 2022-01-01 – 2022-12-31 | 80.0 % | up (4) |"));
    assert_non_null(
        strstr(out, "| national budget | USD | 2 | 1300.75 | 1100.25 | 600 | 600.10 |"));
    /* CSV: one RFC 4180 table. */
    must(f,
         cli(f, "report", "progress", "--plan", PLAN_A, "--year", "2022", "--format", "csv", NULL),
         "report csv");
    int nf[512];
    bool crlf = false;
    char cell[1024];
    int nrec = csv_parse(out, nf, 512, &crlf, -1, -1, NULL, 0);
    assert_true(nrec > 1 && nrec < 512);
    assert_true(crlf);
    for (int i = 0; i < nrec; i++)
        assert_int_equal(nf[i], 28);
    assert_true(strncmp(out, "section,pillar,objective,code,name,organisation,", 48) == 0);
    /* 1 header, 2 pillars, 4 + 1 indicators, 4 organisations, 3 + 3 + 2 + 2
     * budget rows, 8 periods, 10 overdue. */
    assert_int_equal(nrec, 1 + 2 + 5 + 4 + 10 + 8 + 10);
    int hostile = -1;
    for (int i = 1; i < nrec && hostile < 0; i++) {
        csv_parse(out, nf, 512, &crlf, i, 3, cell, sizeof(cell));
        if (strcmp(cell, "I4") == 0)
            hostile = i;
    }
    assert_true(hostile > 0);
    csv_parse(out, nf, 512, &crlf, hostile, 4, cell, sizeof(cell));
    assert_string_equal(cell, HOSTILE_CSV);
    /* --json is the server's document; region and coverage render too. */
    must(f, cli(f, "report", "coverage", "--json", NULL), "report coverage --json");
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    assert_non_null(doc);
    expect_int(doc, "adopted_naps", 2);
    json_decref(doc);
    must(f, cli(f, "report", "coverage", NULL), "report coverage");
    assert_non_null(strstr(out, "| adopted NAPs with a costed budget (a budget line with costed "
                                "&gt; 0) | 1 | 2 | 50.0 % |"));
    must(f, cli(f, "report", "region", "--region", f->region_id, "--format", "csv", NULL),
         "report region csv");
    assert_non_null(strstr(out, "aggregate,RAP1,RI1,Women in the armed forces (%),,,,,,,2,2,3,2,"
                                "44,22.0000,18,26\r\n"));
    /* HTML to a file: self-contained. */
    char html_path[NST_PATH];
    assert_int_equal(nst_path_join(html_path, f->e->dir, "progress.html"), 0);
    must(f,
         cli(f, "report", "progress", "--plan", PLAN_A, "--year", "2022", "--format", "html", "-o",
             html_path, NULL),
         "report html");
    assert_string_equal(out, "");
    char *html = read_all(html_path, NULL);
    assert_non_null(html);
    assert_non_null(strstr(html, HOSTILE_HTML));
    assert_null(strstr(html, "<script>alert"));
    assert_int_equal(strncmp(html, "<!DOCTYPE html>", 15), 0);
    /* Nothing is fetched: the only URL is the SVG namespace, and the
     * Content-Security-Policy allows exactly the page's style and script. */
    static const char *const fetches[] = {"src=",  "href=", "url(",    "@import",
                                          "<link", "<img",  "<iframe", "<object"};
    for (size_t i = 0; i < sizeof(fetches) / sizeof(fetches[0]); i++)
        if (strstr(html, fetches[i]) != NULL)
            nst_fail(f->e, "the HTML report holds %s", fetches[i]);
    const char *ns = "xmlns=\"http://www.w3.org/2000/svg\"";
    int urls = 0, svgs = 0;
    for (const char *p = html; (p = strstr(p, "://")) != NULL; p++)
        urls++;
    for (const char *p = html; (p = strstr(p, ns)) != NULL; p++)
        svgs++;
    assert_int_equal(svgs, 3);
    assert_int_equal(urls, svgs);
    char hash[80], csp[512];
    const char *csp_attr = "http-equiv=\"Content-Security-Policy\" content=\"";
    const char *meta = strstr(html, csp_attr);
    assert_non_null(meta);
    meta += strlen(csp_attr);
    snprintf(csp, sizeof(csp), "%.*s", (int)strcspn(meta, "\""), meta);
    assert_non_null(strstr(csp, "default-src 'none'"));
    csp_hash(html, "<style>", "</style>", hash, sizeof(hash));
    if (strstr(csp, hash) == NULL)
        nst_fail(f->e, "the CSP (%s) lacks the style's hash %s", csp, hash);
    csp_hash(html, "<script>", "</script>", hash, sizeof(hash));
    if (strstr(csp, hash) == NULL)
        nst_fail(f->e, "the CSP (%s) lacks the script's hash %s", csp, hash);
    free(html);
    /* Usage errors (exit 2) before connecting; the server's refusal (4). */
    assert_int_equal(cli(f, "report", NULL), 2);
    assert_int_equal(cli(f, "report", "bogus", NULL), 2);
    assert_int_equal(cli(f, "report", "progress", NULL), 2);
    assert_int_equal(cli(f, "report", "progress", "--plan", "x", NULL), 2);
    assert_int_equal(cli(f, "report", "progress", "--plan", PLAN_A, "--year", "1989", NULL), 2);
    assert_int_equal(cli(f, "report", "progress", "--plan", PLAN_A, "--format", "pdf", NULL), 2);
    assert_int_equal(
        cli(f, "report", "progress", "--plan", PLAN_A, "--json", "--format", "csv", NULL), 2);
    assert_int_equal(cli(f, "report", "region", "--plan", PLAN_A, NULL), 2);
    assert_int_equal(cli(f, "report", "coverage", "--year", "2022", "--json", NULL), 2);
    assert_non_null(strstr(out, "\"error\":\"invalid_argument\""));
    assert_non_null(strstr(out, "--year: only the progress report takes a year"));
    assert_int_equal(cli(f, "report", "progress", "--plan", PLAN_D, "--json", NULL), 4);
    assert_non_null(strstr(out, "NOT_FOUND"));
    must(f, cli(f, "report", "--help", NULL), "report --help");
    assert_non_null(strstr(out, "Usage: napsync report progress|region|coverage"));
    nst_test_passed(f->e);
}

/* ---- the HTML page in a browser ------------------------------------------------------------- */

/* The value of attribute name in the first tag holding needle, in dom. */
static bool attr_of(const char *dom, const char *needle, const char *name, char *val, size_t cap)
{
    const char *p = strstr(dom, needle);
    if (p == NULL)
        return false;
    const char *start = p;
    while (start > dom && *start != '<')
        start--;
    const char *end = strchr(p, '>');
    char key[64];
    snprintf(key, sizeof(key), " %s=\"", name);
    const char *a = strstr(start, key);
    if (a == NULL || end == NULL || a > end)
        return false;
    a += strlen(key);
    size_t n = strcspn(a, "\"");
    snprintf(val, cap, "%.*s", (int)n, a);
    return true;
}

static long attr_long(const nst_env *e, const char *dom, const char *needle, const char *name)
{
    char v[64];
    if (!attr_of(dom, needle, name, v, sizeof(v)))
        nst_fail(e, "the rendered page has no %s on %s", name, needle);
    return strtol(v, NULL, 10);
}

/* The rendered width of the bar of this data-value in chart id (in
 * tenths), checked against the width the data asks for. */
static void expect_bar(const nst_env *e, const char *dom, const char *chart, const char *cls,
                       const char *value, double want)
{
    const char *c = strstr(dom, chart);
    assert_non_null(c);
    char needle[128];
    snprintf(needle, sizeof(needle), "class=\"bar %s\" data-value=\"%s\"", cls, value);
    const char *b = strstr(c, needle);
    if (b == NULL)
        nst_fail(e, "chart %s has no %s bar of %s", chart, cls, value);
    char v[32];
    if (!attr_of(b, needle, "data-rendered-w", v, sizeof(v)))
        nst_fail(e, "the %s bar of %s was not measured by the page's script", cls, value);
    double w = strtod(v, NULL);
    if (w < want - 1.0 || w > want + 1.0)
        nst_fail(e, "chart %s: the %s bar of %s is %s wide, not about %.1f", chart, cls, value, v,
                 want);
}

static void test_html_in_chromium(void **state)
{
    fixture *f = *state;
    const char *chromium = NULL;
    static const char *const where[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser"};
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]) && chromium == NULL; i++)
        if (access(where[i], X_OK) == 0)
            chromium = where[i];
    if (chromium == NULL)
        fail_msg("Chromium is not installed (/usr/bin/chromium): run tests/lib/deps.sh chromium, "
                 "as tests/run.sh does; this test does not skip");
    char html_path[NST_PATH], url[NST_PATH + 16], profile[NST_PATH], profile_flag[NST_PATH + 32];
    assert_int_equal(nst_path_join(html_path, f->e->dir, "chromium.html"), 0);
    assert_int_equal(nst_path_join(profile, f->e->dir, "chromium-profile"), 0);
    must(f,
         cli(f, "report", "progress", "--plan", PLAN_A, "--year", "2022", "--format", "html", "-o",
             html_path, NULL),
         "report html");
    snprintf(url, sizeof(url), "file://%s", html_path);
    snprintf(profile_flag, sizeof(profile_flag), "--user-data-dir=%s", profile);
    char *const argv[] = {"/usr/bin/timeout",
                          "120",
                          (char *)chromium,
                          "--headless",
                          "--no-sandbox",
                          "--disable-gpu",
                          "--disable-background-networking",
                          "--no-first-run",
                          profile_flag,
                          "--dump-dom",
                          url,
                          NULL};
    /* Chromium's stderr (D-Bus complaints in a container) goes to a file,
     * shown when it fails. */
    char log[NST_PATH];
    assert_int_equal(nst_path_join(log, f->e->dir, "chromium.log"), 0);
    int saved = dup(2);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    int rc = nst_run(argv, out, OUT_CAP);
    dup2(saved, 2);
    close(saved);
    if (rc != 0) {
        char *text = read_all(log, NULL);
        nst_fail(f->e, "chromium exited %d: %.4000s", rc, text ? text : "");
    }
    const char *dom = out;
    /* The page's script ran (its hash is in the CSP) and so did its style. */
    assert_int_equal(attr_long(f->e, dom, "data-charts-rendered", "data-charts-rendered"), 3);
    assert_int_equal(attr_long(f->e, dom, "data-style-applied", "data-style-applied"), 1);
    struct {
        const char *id;
        long bars, drawn;
    } charts[] = {
        /* 2 pillars, both above 0 */
        {"data-chart=\"pillar-progress\"", 2, 2},
        /* 3 sources x (costed, allocated, spent); other fund has 0 allocated and spent */
        {"data-chart=\"budget-by-source\"", 9, 7},
        /* defence (on time, overdue), police (on time, late), wpsnet (late)
         * by 4 statuses; mogender owes nothing in 2022 */
        {"data-chart=\"reporting-by-organisation\"", 12, 5},
    };
    for (size_t i = 0; i < sizeof(charts) / sizeof(charts[0]); i++) {
        if (attr_long(f->e, dom, charts[i].id, "data-rendered-width") <= 0 ||
            attr_long(f->e, dom, charts[i].id, "data-rendered-height") <= 0)
            nst_fail(f->e, "chart %s has no rendered size", charts[i].id);
        assert_int_equal(attr_long(f->e, dom, charts[i].id, "data-bars"), charts[i].bars);
        if (attr_long(f->e, dom, charts[i].id, "data-rendered-bars") != charts[i].drawn)
            nst_fail(f->e, "chart %s drew %ld bars, not %ld", charts[i].id,
                     attr_long(f->e, dom, charts[i].id, "data-rendered-bars"), charts[i].drawn);
    }
    /* Bars as wide as the figures say, on a plot 360 units wide. */
    expect_bar(f->e, dom, "data-chart=\"pillar-progress\"", "progress", "52.0", 187);
    expect_bar(f->e, dom, "data-chart=\"pillar-progress\"", "progress", "50.0", 180);
    expect_bar(f->e, dom, "data-chart=\"budget-by-source\"", "costed", "2000", 360);
    expect_bar(f->e, dom, "data-chart=\"budget-by-source\"", "costed", "1300.75", 234);
    expect_bar(f->e, dom, "data-chart=\"budget-by-source\"", "spent", "1200.40", 216);
    expect_bar(f->e, dom, "data-chart=\"budget-by-source\"", "costed", "50", 360);
    expect_bar(f->e, dom, "data-chart=\"reporting-by-organisation\"", "overdue", "4", 288);
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_progress_figures), NST_TEST(test_region_figures),
        NST_TEST(test_coverage_figures), NST_TEST(test_readability),
        NST_TEST(test_wire_checks),      NST_TEST(test_cli_formats),
        NST_TEST(test_html_in_chromium), NST_TEST(test_submitted_through_sync),
        NST_TEST(test_too_large),
    };
    return cmocka_run_group_tests_name("reports", tests, group_setup, group_teardown);
}
