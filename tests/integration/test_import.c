/* napsync import and export end to end, through real napsyncd instances,
 * PostgreSQL and TLS: the demo plans (deploy/demo/, JSON) imported by the
 * devices of the organisations that own them; a plan exported as JSON and
 * CSV, imported from the CSV into a second, fresh database and exported
 * there again, byte for byte the same; broken files (JSON and CSV) with
 * several problems at once refused whole, each problem printed with its
 * line or path and field, first those the file shows by itself (nothing is
 * sent), then those only the server sees (its dry run); nothing stored
 * either way. Also: --dry-run, a second import of the same plan, an
 * observer's import. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define OUT_CAP (1024 * 1024)
/* An import of the demo NAP under a sanitizer on a loaded machine. */
#define IMPORT_TIMEOUT "120000"

#define NAP_ZZ  "d0000000-0000-4000-8000-000000000001"
#define RAP     "d1000000-0000-4000-8000-000000000001"
#define SMALL   "a1000000-0000-4000-8000-000000000001"
#define ORG_MOG "0e000000-0000-4000-8000-000000000001"

typedef struct {
    nst_env *e;                           /* the first daemon and database */
    nst_env *e2;                          /* a second, fresh one */
    nst_device coord, regional, observer; /* of e */
    nst_device coord2, regional2;         /* of e2 */
    char store[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];

/* ---- helpers ------------------------------------------------------------------------ */

/* Runs `napsync ARGS...` as device d of env; stdout in `out`. */
static int cli(fixture *f, nst_env *e, const nst_device *d, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(e, d, f->store, out, sizeof(out), first, ap);
    va_end(ap);
    return rc;
}

/* The same with stdout and stderr together in `out` (the text messages). */
static int cli_all(nst_env *e, const nst_device *d, const char *const *args)
{
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)e->port);
    const char *argv[32] = {e->napsync, "--server", server, "--ca",      e->ca_cert,    "--cert",
                            d->cert,    "--key",    d->key, "--timeout", IMPORT_TIMEOUT};
    int n = 11;
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return nst_run_no_tty((char *const *)argv, out, sizeof(out));
}

static void write_text(const nst_env *e, const char *name, const char *text, char *path)
{
    assert_int_equal(nst_path_join(path, e->dir, name), 0);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static long count(nst_env *e, const char *sql, const char *param)
{
    char v[32];
    const char *params[1] = {param};
    assert_int_equal(nst_db_exec(e, sql, param ? 1 : 0, params, v, sizeof(v)), 0);
    return strtol(v, NULL, 10);
}

/* Everything of a plan the server stores: the records of every type and
 * their revisions. 0 means nothing of it was ever written. */
static long traces(nst_env *e, const char *plan)
{
    return count(e,
                 "SELECT (SELECT count(*) FROM sync_revisions WHERE tenant_id = $1::uuid)"
                 "     + (SELECT count(*) FROM plans WHERE id = $1::uuid)"
                 "     + (SELECT count(*) FROM pillars WHERE tenant_id = $1::uuid)"
                 "     + (SELECT count(*) FROM indicators WHERE tenant_id = $1::uuid)"
                 "     + (SELECT count(*) FROM report_values WHERE tenant_id = $1::uuid)",
                 plan);
}

/* A line of s holding every needle (NULL terminated) must exist. */
static void has_line(const nst_env *e, const char *s, const char *const *needles)
{
    const char *p = s;
    while (p && *p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        bool all = true;
        for (size_t i = 0; needles[i] && all; i++) {
            const char *hit = NULL;
            for (const char *q = p; q < p + n && !hit; q++)
                if (strncmp(q, needles[i], strlen(needles[i])) == 0)
                    hit = q;
            all = hit != NULL;
        }
        if (all)
            return;
        p = end ? end + 1 : NULL;
    }
    fprintf(stderr, "output:\n%s\n", s);
    nst_fail(e, "no line holds all of: %s%s%s%s", needles[0], needles[1] ? ", " : "",
             needles[1] ? needles[1] : "", needles[1] && needles[2] ? ", ..." : "");
}

#define HAS(e, s, ...) has_line(e, s, (const char *const[]){__VA_ARGS__, NULL})

static void demo_path(const nst_env *e, const char *file, char *path)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "deploy/demo/%s", file);
    assert_int_equal(nst_path_join(path, e->source_dir, rel), 0);
}

/* Imports a plan file; returns the number of records imported. */
static long must_import(fixture *f, nst_env *e, const nst_device *d, const char *path)
{
    int rc = cli(f, e, d, "import", "plan", path, "--timeout", IMPORT_TIMEOUT, "--json", NULL);
    if (rc != 0)
        nst_fail(e, "napsync import plan %s exited %d: %s", path, rc, out);
    HAS(e, out, "\"imported\":true");
    const char *n = strstr(out, "\"records\":");
    assert_non_null(n);
    return strtol(n + strlen("\"records\":"), NULL, 10);
}

/* ---- fixture ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    f->e = nst_env_new("import", NULL);
    f->e2 = nst_env_new("import2", NULL);
    if (f->e == NULL || f->e2 == NULL || nst_daemon_start(f->e, NULL) != 0 ||
        nst_daemon_start(f->e2, NULL) != 0 ||
        nst_device_issue(f->e, false, "mog-desk", &f->coord) != 0 ||
        nst_device_issue(f->e, false, "rec-desk", &f->regional) != 0 ||
        nst_device_issue(f->e, false, "mp-desk", &f->observer) != 0 ||
        nst_device_issue(f->e2, false, "mog-desk-2", &f->coord2) != 0 ||
        nst_device_issue(f->e2, false, "rec-desk-2", &f->regional2) != 0 ||
        nst_device_register(f->e, "mogender", "Amina Coordinator", "coordinator", &f->coord) != 0 ||
        nst_device_register(f->e, "regional", "Regional Officer", "regional", &f->regional) != 0 ||
        nst_device_register(f->e, "parliament", "MP Observer", "observer", &f->observer) != 0 ||
        nst_device_register(f->e2, "mogender", "Amina Coordinator", "coordinator", &f->coord2) !=
            0 ||
        nst_device_register(f->e2, "regional", "Regional Officer", "regional", &f->regional2) != 0)
        return -1;
    if (nst_path_join(f->store, f->e->dir, "unused.store") != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    int rc = 0;
    if (f) {
        rc = nst_env_close(f->e2);
        rc |= nst_env_close(f->e);
    }
    free(f);
    return rc;
}

/* ---- the demo plans, and a round trip through a second database -------------------- */

static void test_demo_and_round_trip(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e, *e2 = f->e2;
    char rap[NST_PATH], nap[NST_PATH];
    demo_path(e, "rap.json", rap);
    demo_path(e, "nap-zz.json", nap);

    /* The RAP by the regional organisation, the NAP (whose indicators map
     * to the RAP's) by the ministry that owns it. */
    must_import(f, e, &f->regional, rap);
    long records = must_import(f, e, &f->coord, nap);
    assert_true(records > 700 && records <= 1000);
    HAS(e, out, "\"plan\":\"" NAP_ZZ "\"", "\"indicator\":60", "\"action\":40", "\"objective\":10",
        "\"pillar\":4");
    assert_int_equal(count(e, "SELECT count(*) FROM indicators WHERE tenant_id = $1", NAP_ZZ), 60);
    assert_true(count(e,
                      "SELECT count(*) FROM indicators WHERE tenant_id = $1"
                      " AND regional_indicator_id IS NOT NULL",
                      NAP_ZZ) >= 8);
    assert_int_equal(count(e,
                           "SELECT count(DISTINCT funding_source) FROM budget_lines"
                           " WHERE tenant_id = $1",
                           NAP_ZZ),
                     3);
    /* Decimals arrive exactly, and every record was created by the import's device. */
    assert_int_equal(count(e,
                           "SELECT count(*) FROM budget_lines b JOIN devices d"
                           "    ON d.id = b.changed_device"
                           " WHERE b.tenant_id = $1 AND d.name = 'mog-desk'",
                           NAP_ZZ),
                     count(e, "SELECT count(*) FROM budget_lines WHERE tenant_id = $1", NAP_ZZ));

    /* Export it both ways. */
    char a_json[NST_PATH], a_csv[NST_PATH], b_json[NST_PATH], b_csv[NST_PATH];
    assert_int_equal(nst_path_join(a_json, e->dir, "a.json"), 0);
    assert_int_equal(nst_path_join(a_csv, e->dir, "a.csv"), 0);
    assert_int_equal(nst_path_join(b_json, e->dir, "b.json"), 0);
    assert_int_equal(nst_path_join(b_csv, e->dir, "b.csv"), 0);
    int rc = cli(f, e, &f->coord, "export", "plan", NAP_ZZ, "-o", a_json, NULL);
    if (rc != 0)
        nst_fail(e, "export exited %d: %s", rc, out);
    rc = cli(f, e, &f->coord, "export", "plan", NAP_ZZ, "--format", "csv", "--output", a_csv, NULL);
    if (rc != 0)
        nst_fail(e, "export exited %d: %s", rc, out);
    char done[128];
    snprintf(done, sizeof(done), "exported plan " NAP_ZZ ": %ld records to ", records);
    HAS(e, out, done);

    /* The second database gets the RAP, then the NAP from the CSV file. */
    must_import(f, e2, &f->regional2, rap);
    assert_int_equal(must_import(f, e2, &f->coord2, a_csv), records);
    assert_int_equal(count(e2, "SELECT count(*) FROM report_values WHERE tenant_id = $1", NAP_ZZ),
                     count(e, "SELECT count(*) FROM report_values WHERE tenant_id = $1", NAP_ZZ));
    rc = cli(f, e2, &f->coord2, "export", "plan", NAP_ZZ, "-o", b_json, NULL);
    if (rc != 0)
        nst_fail(e2, "export exited %d: %s", rc, out);
    rc = cli(f, e2, &f->coord2, "export", "plan", NAP_ZZ, "-o", b_csv, NULL);
    if (rc != 0)
        nst_fail(e2, "export exited %d: %s", rc, out);

    /* Byte for byte the same, in both formats. */
    size_t la, lb;
    char *x = slurp(a_json, &la), *y = slurp(b_json, &lb);
    assert_true(la > 100000);
    assert_int_equal(la, lb);
    assert_memory_equal(x, y, la);
    assert_non_null(strstr(x, "\"format\": \"napsync-plan\""));
    free(x);
    free(y);
    x = slurp(a_csv, &la);
    y = slurp(b_csv, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(x, y, la);
    assert_int_equal(strncmp(x, "type,id,title,summary,kind,status,", 34), 0);
    free(x);
    free(y);

    /* The demo file is what export writes for its plan: its own round trip. */
    x = slurp(a_json, &la);
    y = slurp(nap, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(x, y, la);
    free(x);
    free(y);

    /* To standard output, the same bytes. */
    rc = cli(f, e, &f->coord, "export", "plan", NAP_ZZ, NULL);
    if (rc != 0)
        nst_fail(e, "export exited %d: %s", rc, out);
    x = slurp(a_json, &la);
    assert_int_equal(strlen(out), la);
    assert_memory_equal(out, x, la);
    free(x);

    /* A second import of the same plan is refused whole: every record exists. */
    long before = traces(e, RAP);
    rc = cli(f, e, &f->regional, "import", "plan", rap, "--json", NULL);
    assert_int_equal(rc, 4);
    HAS(e, out, "\"path\":\"$.plan\"", "\"code\":\"ALREADY_EXISTS\"");
    HAS(e, out, "\"path\":\"$.indicators[7]\"", "\"code\":\"ALREADY_EXISTS\"");
    assert_int_equal(traces(e, RAP), before);
    nst_test_passed(e);
}

/* ---- broken files ------------------------------------------------------------------------ */

/* A small local plan. The file itself is sound; the server refuses four
 * things: a percentage above 100, an action status it does not know, a
 * currency in lower case, and a report whose breakdown by sex does not sum
 * to its value (6 + 5 is not 10). */
static const char server_refuses_json[] =
    "{\n"
    "  \"format\": \"napsync-plan\",\n"
    "  \"version\": 1,\n"
    "  \"plan\": {\"id\": \"" SMALL "\", \"title\": \"Capital District WPS plan\",\n"
    "    \"kind\": \"local\", \"status\": \"draft\", \"period_start\": \"2025-01-01\",\n"
    "    \"period_end\": \"2027-12-31\", \"owner_id\": \"" ORG_MOG "\"},\n"
    "  \"pillars\": [{\"id\": \"a1010000-0000-4000-8000-000000000001\", \"name\": \"Protection\",\n"
    "    \"kind\": \"protection\"}],\n"
    "  \"objectives\": [{\"id\": \"a1020000-0000-4000-8000-000000000001\",\n"
    "    \"pillar_id\": \"a1010000-0000-4000-8000-000000000001\", \"title\": \"Safer streets\"}],\n"
    "  \"actions\": [{\"id\": \"a1040000-0000-4000-8000-000000000001\",\n"
    "    \"objective_id\": \"a1020000-0000-4000-8000-000000000001\", \"title\": \"Street "
    "lights\",\n"
    "    \"lead_org_id\": \"" ORG_MOG "\", \"status\": \"started\"}],\n"
    "  \"indicators\": [\n"
    "    {\"id\": \"a1050000-0000-4000-8000-000000000001\", \"title\": \"Women feeling safe\",\n"
    "     \"value_type\": \"percentage\", \"baseline\": 120, \"baseline_date\": \"2024-12-31\"},\n"
    "    {\"id\": \"a1050000-0000-4000-8000-000000000002\", \"title\": \"Survivors assisted\",\n"
    "     \"value_type\": \"number\", \"disaggregation\": [\"sex\"]}\n"
    "  ],\n"
    "  \"indicator_reports\": [{\"id\": \"a1070000-0000-4000-8000-000000000001\",\n"
    "    \"indicator_id\": \"a1050000-0000-4000-8000-000000000002\", \"period_start\": "
    "\"2025-01-01\",\n"
    "    \"period_end\": \"2025-12-31\", \"status\": \"submitted\", \"value\": \"10\"}],\n"
    "  \"report_values\": [\n"
    "    {\"id\": \"a1080000-0000-4000-8000-000000000001\",\n"
    "     \"report_id\": \"a1070000-0000-4000-8000-000000000001\", \"dimension\": \"sex\",\n"
    "     \"category\": \"female\", \"value\": 6},\n"
    "    {\"id\": \"a1080000-0000-4000-8000-000000000002\",\n"
    "     \"report_id\": \"a1070000-0000-4000-8000-000000000001\", \"dimension\": \"sex\",\n"
    "     \"category\": \"male\", \"value\": 5}\n"
    "  ],\n"
    "  \"budget_lines\": [{\"id\": \"a1090000-0000-4000-8000-000000000001\",\n"
    "    \"action_id\": \"a1040000-0000-4000-8000-000000000001\", \"fiscal_year\": 2025,\n"
    "    \"currency\": \"usd\", \"costed\": \"1000.50\", \"funding_source\": "
    "\"national_budget\"}]\n"
    "}\n";

/* The same plan as CSV, with the same four problems. Line 1 is the header. */
static const char server_refuses_csv[] =
    "type,id,title,kind,status,period_start,period_end,owner_id,name,pillar_id,objective_id,"
    "lead_org_id,value_type,baseline,baseline_date,disaggregation,indicator_id,value,report_id,"
    "dimension,category,action_id,fiscal_year,currency,costed,funding_source\n"
    "plan," SMALL ",Capital District WPS plan,local,draft,2025-01-01,2027-12-31," ORG_MOG
    ",,,,,,,,,,,,,,,,,,\n"
    "pillar,a1010000-0000-4000-8000-000000000001,,protection,,,,,Protection,,,,,,,,,,,,,,,,,\n"
    "objective,a1020000-0000-4000-8000-000000000001,Safer streets,,,,,,,"
    "a1010000-0000-4000-8000-000000000001,,,,,,,,,,,,,,,,\n"
    "action,a1040000-0000-4000-8000-000000000001,Street lights,,started,,,,,,"
    "a1020000-0000-4000-8000-000000000001," ORG_MOG ",,,,,,,,,,,,,,\n"
    "indicator,a1050000-0000-4000-8000-000000000001,Women feeling safe,,,,,,,,,,percentage,120,"
    "2024-12-31,,,,,,,,,,,\n"
    "indicator,a1050000-0000-4000-8000-000000000002,Survivors assisted,,,,,,,,,,number,,,sex,,,"
    ",,,,,,,\n"
    "indicator_report,a1070000-0000-4000-8000-000000000001,,,submitted,2025-01-01,2025-12-31,"
    ",,,,,,,,,a1050000-0000-4000-8000-000000000002,10,,,,,,,,\n"
    "report_value,a1080000-0000-4000-8000-000000000001,,,,,,,,,,,,,,,,6,"
    "a1070000-0000-4000-8000-000000000001,sex,female,,,,,\n"
    "report_value,a1080000-0000-4000-8000-000000000002,,,,,,,,,,,,,,,,5,"
    "a1070000-0000-4000-8000-000000000001,sex,male,,,,,\n"
    "budget_line,a1090000-0000-4000-8000-000000000001,,,,,,,,,,,,,,,,,,,,"
    "a1040000-0000-4000-8000-000000000001,2025,usd,1000.50,national_budget\n";

/* Problems the file shows by itself: refused before anything is sent. */
static void test_broken_files(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    /* JSON: a date that does not exist, a field no objective has, a
     * reference to a pillar the file does not hold, and the breakdown that
     * does not sum up (which only the server would see: not reached). */
    static const char local_json[] =
        "{\"format\": \"napsync-plan\", \"version\": 1,\n"
        " \"plan\": {\"id\": \"" SMALL "\", \"title\": \"P\", \"kind\": \"local\",\n"
        "   \"status\": \"draft\", \"period_start\": \"2025-01-01\", \"period_end\": "
        "\"2027-02-30\"},\n"
        " \"pillars\": [{\"id\": \"a1010000-0000-4000-8000-000000000001\", \"name\": \"P\",\n"
        "   \"kind\": \"protection\"}],\n"
        " \"objectives\": [{\"id\": \"a1020000-0000-4000-8000-000000000001\",\n"
        "   \"pillar_id\": \"a1010000-0000-4000-8000-000000000009\", \"title\": \"O\",\n"
        "   \"colour\": \"red\"}]\n"
        "}\n";
    write_text(e, "local.json", local_json, path);
    size_t from = nst_log_size(e);
    int rc = cli(f, e, &f->coord, "import", "plan", path, "--json", NULL);
    assert_int_equal(rc, 2);
    HAS(e, out, "\"path\":\"$.plan.period_end\"", "\"field\":\"period_end\"", "no such day");
    HAS(e, out, "\"path\":\"$.objectives[0].colour\"", "\"field\":\"colour\"", "no field");
    HAS(e, out, "\"path\":\"$.objectives[0].pillar_id\"", "\"field\":\"pillar_id\"",
        "no pillar a1010000-0000-4000-8000-000000000009 in this file");
    HAS(e, out, "\"error\":\"invalid_argument\"", "3 problems in the file; nothing was imported");
    /* Nothing was sent: no session even. */
    assert_int_equal(nst_log_wait(e, from, "authenticated", 300), -1);
    assert_int_equal(traces(e, SMALL), 0);

    /* CSV: the same three, by line (the plan's title spans lines 2-3). */
    static const char local_csv[] =
        "type,id,title,kind,status,period_start,period_end,name,pillar_id,colour\n"
        "plan," SMALL ",\"Two-line\ntitle\",local,draft,2025-01-01,2027-02-30,,,\n"
        "pillar,a1010000-0000-4000-8000-000000000001,,protection,,,,P,,\n"
        "objective,a1020000-0000-4000-8000-000000000001,O,,,,,,"
        "a1010000-0000-4000-8000-000000000009,red\n";
    write_text(e, "local.csv", local_csv, path);
    const char *args[] = {"import", "plan", path, NULL};
    rc = cli_all(e, &f->coord, args);
    assert_int_equal(rc, 2);
    HAS(e, out, "local.csv:1: colour: no record type has a field \"colour\"");
    HAS(e, out, "local.csv:2: plan " SMALL ": period_end: \"2027-02-30\": no such day");
    HAS(e, out,
        "local.csv:5: objective a1020000-0000-4000-8000-000000000001: pillar_id: no pillar "
        "a1010000-0000-4000-8000-000000000009 in this file");
    HAS(e, out, "3 problems in the file; nothing was imported");
    assert_int_equal(traces(e, SMALL), 0);
    nst_test_passed(e);
}

/* Problems only the server sees: its dry run names each, mapped back to
 * the file; nothing is stored. */
static void test_server_refusals(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    write_text(e, "server.json", server_refuses_json, path);
    int rc = cli(f, e, &f->coord, "import", "plan", path, "--json", NULL);
    assert_int_equal(rc, 4);
    HAS(e, out, "\"path\":\"$.indicators[0].baseline\"", "\"field\":\"baseline\"",
        "outside 0..100");
    HAS(e, out, "\"path\":\"$.actions[0].status\"", "\"field\":\"status\"", "started");
    HAS(e, out, "\"path\":\"$.budget_lines[0].currency\"", "\"field\":\"currency\"", "ISO 4217");
    /* A submitted report is imported as a draft, its breakdown, then its
     * submission: the breakdown that does not add up is refused at the
     * report, whose value it names. */
    HAS(e, out, "\"path\":\"$.indicator_reports[", ".value\"", "\"field\":\"value\"",
        "the report's value is 10");
    HAS(e, out, "\"error\":\"server\"", "found by the server; nothing was imported");
    assert_int_equal(traces(e, SMALL), 0);

    write_text(e, "server.csv", server_refuses_csv, path);
    const char *args[] = {"import", "plan", path, NULL};
    rc = cli_all(e, &f->coord, args);
    assert_int_equal(rc, 4);
    HAS(e, out, "server.csv:6: indicator a1050000-0000-4000-8000-000000000001: baseline: ",
        "outside 0..100");
    HAS(e, out, "server.csv:5: action a1040000-0000-4000-8000-000000000001: status: ", "started");
    HAS(e, out,
        "server.csv:11: budget_line a1090000-0000-4000-8000-000000000001: currency: ", "ISO 4217");
    HAS(e, out, "server.csv:8: indicator_report a1070000-0000-4000-8000-000000000001: value: ",
        "the report's value is 10");
    assert_int_equal(traces(e, SMALL), 0);
    nst_test_passed(e);
}

/* --dry-run imports nothing; an observer may import nothing; a good small
 * plan then imports. */
static void test_dry_run_and_rights(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char path[NST_PATH];
    /* The refused file, mended. */
    char *good = strdup(server_refuses_json);
    assert_non_null(good);
    const char *const fixes[][2] = {
        {"\"baseline\": 120", "\"baseline\": 12 "},
        {"\"started\"", "\"ongoing\""},
        {"\"usd\"", "\"USD\""},
        {"\"value\": 5}", "\"value\": 4}"},
    };
    for (size_t i = 0; i < sizeof(fixes) / sizeof(fixes[0]); i++) {
        char *at = strstr(good, fixes[i][0]);
        assert_non_null(at);
        assert_int_equal(strlen(fixes[i][0]), strlen(fixes[i][1]));
        memcpy(at, fixes[i][1], strlen(fixes[i][1]));
    }
    write_text(e, "good.json", good, path);
    free(good);
    int rc = cli(f, e, &f->coord, "import", "plan", path, "--dry-run", "--json", NULL);
    if (rc != 0)
        nst_fail(e, "import --dry-run exited %d: %s", rc, out);
    HAS(e, out, "\"plan\":\"" SMALL "\"", "\"records\":10", "\"imported\":false");
    assert_int_equal(traces(e, SMALL), 0);

    rc = cli(f, e, &f->observer, "import", "plan", path, "--json", NULL);
    assert_int_equal(rc, 4);
    HAS(e, out, "\"path\":\"$.plan\"", "\"code\":\"PERMISSION_DENIED\"");
    assert_int_equal(traces(e, SMALL), 0);

    const char *args[] = {"import", "plan", path, NULL};
    rc = cli_all(e, &f->coord, args);
    if (rc != 0)
        nst_fail(e, "import exited %d: %s", rc, out);
    HAS(e, out, "imported plan " SMALL " from ", ": 10 records (1 plan, 1 pillar, 1 objective, ");
    assert_int_equal(count(e, "SELECT count(*) FROM report_values WHERE tenant_id = $1", SMALL), 2);
    assert_int_equal(count(e,
                           "SELECT count(*) FROM budget_lines WHERE tenant_id = $1"
                           " AND costed = 1000.5 AND currency = 'USD'",
                           SMALL),
                     1);
    nst_test_passed(e);
}

/* ---- the library calls under the commands ----------------------------------------------- */

typedef struct {
    size_t n;
    ns_mutation_result r[4];
    char code[4][32], field[4][64], reason[4][512];
} results;

static int keep_result(size_t i, const ns_mutation_result *r, void *ud)
{
    results *rs = ud;
    assert_true(i < 4);
    rs->r[i] = *r;
    snprintf(rs->code[i], sizeof(rs->code[i]), "%s", r->reject_code);
    snprintf(rs->field[i], sizeof(rs->field[i]), "%s", r->reject_field);
    snprintf(rs->reason[i], sizeof(rs->reason[i]), "%s", r->reject_reason);
    rs->n = i + 1;
    return 0;
}

static int count_record(const ns_record_view *r, void *ud)
{
    (void)r;
    (*(size_t *)ud)++;
    return 0;
}

static void test_api(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ns_client *c = nst_must_connect(e, &f->coord);
    ns_error err;
    const char *plan = "b1000000-0000-4000-8000-000000000001";
    const ns_field_view plan_fields[] = {
        {"title", "text", "API plan"},        {"kind", "text", "local"},
        {"status", "text", "draft"},          {"period_start", "date", "2025-01-01"},
        {"period_end", "date", "2026-12-31"},
    };
    const ns_field_view pillar_fields[] = {
        {"plan_id", "ref", plan}, {"name", "text", "Protection"}, {"kind", "text", "defence"}};
    ns_mutation m[2] = {
        {.entity_type = "plan",
         .record_id = plan,
         .op = NS_MUTATION_CREATE,
         .fields = plan_fields,
         .nfields = 5},
        {.entity_type = "pillar",
         .record_id = "b1010000-0000-4000-8000-000000000001",
         .op = NS_MUTATION_CREATE,
         .fields = pillar_fields,
         .nfields = 3},
    };

    /* Checked before anything is sent. */
    assert_int_equal(ns_client_push_batch_wait(c, NS_PUSH_ATOMIC, m, 0, NULL, NULL, &err),
                     NS_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        ns_client_push_batch_wait(c, NS_PUSH_ATOMIC, m, NS_MAX_PUSH_BATCH + 1, NULL, NULL, &err),
        NS_ERR_INVALID_ARGUMENT);
    ns_mutation bad = m[1];
    bad.record_id = "not-a-uuid";
    assert_int_equal(ns_client_push_batch_wait(c, NS_PUSH_APPLY, &bad, 1, NULL, NULL, &err),
                     NS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "mutation 0 (pillar): record id: not a UUID"));
    const ns_field_view bad_value[] = {{"plan_id", "ref", plan}, {"position", "int", "1.5"}};
    bad = m[1];
    bad.fields = bad_value;
    bad.nfields = 2;
    assert_int_equal(ns_client_push_batch_wait(c, NS_PUSH_APPLY, &bad, 1, NULL, NULL, &err),
                     NS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "field position: not a valid int"));

    /* Atomic: the database refuses the pillar's kind, so the plan is not
     * created either; both say why, naming the field. */
    results rs;
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(ns_client_push_batch_wait(c, NS_PUSH_ATOMIC, m, 2, keep_result, &rs, &err),
                     NS_OK);
    assert_int_equal(rs.n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(rs.r[i].outcome, NS_OUTCOME_REJECTED);
        assert_int_equal(rs.r[i].version, 0);
        assert_string_equal(rs.code[i], "ABORTED");
        assert_string_equal(rs.field[i], "kind");
        assert_non_null(strstr(rs.reason[i], "\"defence\""));
    }
    assert_int_equal(traces(e, plan), 0);
    /* Refused before the database (a field no pillar has): that one is
     * rejected for itself, the other aborted. */
    const ns_field_view unknown[] = {{"plan_id", "ref", plan}, {"colour", "text", "red"}};
    ns_mutation m2[2] = {m[0], m[1]};
    m2[1].fields = unknown;
    m2[1].nfields = 2;
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(ns_client_push_batch_wait(c, NS_PUSH_ATOMIC, m2, 2, keep_result, &rs, &err),
                     NS_OK);
    assert_string_equal(rs.code[0], "ABORTED");
    assert_string_equal(rs.code[1], "UNKNOWN_ENTITY");
    assert_non_null(strstr(rs.reason[1], "colour"));
    assert_int_equal(traces(e, plan), 0);

    /* A dry run of the mended batch: both would apply; nothing is stored. */
    const ns_field_view pillar_ok[] = {
        {"plan_id", "ref", plan}, {"name", "text", "Protection"}, {"kind", "text", "protection"}};
    m[1].fields = pillar_ok;
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(ns_client_push_batch_wait(c, NS_PUSH_DRY_RUN, m, 2, keep_result, &rs, &err),
                     NS_OK);
    assert_int_equal(rs.r[0].outcome, NS_OUTCOME_APPLIED);
    assert_int_equal(rs.r[1].outcome, NS_OUTCOME_APPLIED);
    assert_string_equal(rs.code[1], "");
    assert_int_equal(traces(e, plan), 0);
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(ns_client_push_batch_wait(c, NS_PUSH_ATOMIC, m, 2, keep_result, &rs, &err),
                     NS_OK);
    assert_int_equal(rs.r[0].outcome, NS_OUTCOME_APPLIED);
    assert_int_equal(rs.r[0].version, 1);
    assert_int_equal(rs.r[1].outcome, NS_OUTCOME_APPLIED);
    assert_true(traces(e, plan) > 0);

    /* The whole NAP, page after page (500 records a page). */
    size_t n = 0, all;
    assert_int_equal(ns_client_pull_plan_wait(c, NAP_ZZ, count_record, &n, &err), NS_OK);
    assert_true(n > 700);
    all = n;
    nst_client_close(c);

    /* The observer may read the adopted NAP (its approved reports only), not the
     * draft plan. */
    c = nst_must_connect(e, &f->observer);
    n = 0;
    assert_int_equal(ns_client_pull_plan_wait(c, NAP_ZZ, count_record, &n, &err), NS_OK);
    assert_true(n > 0 && n < all); /* not the reports waiting for approval */
    assert_int_equal(ns_client_pull_plan_wait(c, plan, count_record, &n, &err), NS_ERR_SERVER);
    assert_int_equal(err.server_code, 7 /* PERMISSION_DENIED */);
    nst_client_close(c);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_broken_files),
        NST_TEST(test_server_refusals),
        NST_TEST(test_dry_run_and_rights),
        NST_TEST(test_demo_and_round_trip),
        NST_TEST(test_api),
    };
    return cmocka_run_group_tests_name("import", tests, group_setup, group_teardown);
}
