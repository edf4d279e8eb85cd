/* History end to end, through a real napsyncd, PostgreSQL and TLS: the
 * napsync CLI as two devices of organisation mogender (the edit,
 * conflict and resolution, then `napsync history` in JSON and text), and
 * libnapsync's ns_client_history_wait: paging, typed errors that leave
 * the session serving (an unknown type, a record that does not exist, a
 * draft plan of another organisation: NOT_FOUND), and the checks made
 * before anything is sent. */
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

#define OUT_CAP 65536
#define ERR(x)  NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##x

typedef struct {
    nst_env *e;
    nst_device a, b, m; /* a, b: mogender coordinators; m: mofa */
    char store_a[NST_PATH], store_b[NST_PATH], store_m[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];

/* Runs `napsync ARGS...` as device d with its store; stdout in `out`.
 * Returns the exit status. */
static int cli(fixture *f, const nst_device *d, const char *first, ...)
{
    const char *store = d == &f->a ? f->store_a : d == &f->b ? f->store_b : f->store_m;
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(f->e, d, store, out, sizeof(out), first, ap);
    va_end(ap);
    return rc;
}

static void must(fixture *f, int rc, const char *what)
{
    if (rc != 0)
        nst_fail(f->e, "napsync %s exited %d: %s", what, rc, out);
}

/* Line i (from 0) of s, without its newline. */
static void line_of(const char *s, int i, char *buf, size_t cap)
{
    for (; i > 0 && s != NULL; i--) {
        s = strchr(s, '\n');
        s = s ? s + 1 : NULL;
    }
    assert_non_null(s);
    size_t n = strcspn(s, "\n");
    assert_true(n < cap);
    memcpy(buf, s, n);
    buf[n] = '\0';
}

/* The line must hold every needle (NULL terminated). */
static void line_has(const char *line, const char *const *needles)
{
    for (size_t i = 0; needles[i] != NULL; i++)
        if (strstr(line, needles[i]) == NULL)
            fail_msg("\"%s\" lacks %s", line, needles[i]);
}

#define HAS(line, ...) line_has(line, (const char *const[]){__VA_ARGS__, NULL})

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    const nst_member m[] = {
        {&f->a, "field-office-a", "mogender", "Amina Coordinator", "coordinator", f->store_a,
         "a.store"},
        {&f->b, "field-office-b", "mogender", "Bakari Coordinator", "coordinator", f->store_b,
         "b.store"},
        {&f->m, "mofa-desk", "mofa", "Desk Officer", "implementer", f->store_m, "m.store"},
    };
    return nst_group_start(&f->e, "history_wire", NULL, m, NST_COUNT(m));
}

/* A creates a plan; offline, A changes the title, B the title and the
 * summary; both sync (summary merges, title conflicts); A resolves taking
 * its own. The history tells each step: who, from which device, what. */
static void test_cli_history(void **state)
{
    fixture *f = *state;
    char id[40], line[4096];
    must(f,
         cli(f, &f->a, "put", "plan", "new", "title=National Action Plan 2025", "summary=S0",
             "status=draft", NST_PLAN_ASSIGN, "--json", NULL),
         "put");
    nst_json_get(out, "record_id", id, sizeof(id));
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync");
    must(f, cli(f, &f->b, "sync", "--json", NULL), "sync");
    must(f, cli(f, &f->a, "put", "plan", id, "title=NAP 1325 (A)", NULL), "put");
    must(f,
         cli(f, &f->b, "put", "plan", id, "title=NAP 1325 (B)", "summary=Women, peace and security",
             NULL),
         "put");
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync");
    must(f, cli(f, &f->b, "sync", "--json", NULL), "sync");
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync");
    char cid[40];
    must(f, cli(f, &f->a, "conflicts", "--json", NULL), "conflicts");
    nst_json_get(out, "id", cid, sizeof(cid));
    must(f, cli(f, &f->a, "resolve", cid, "--take", "mine", "--json", NULL), "resolve");

    /* Either device sees the same history, newest first. */
    must(f, cli(f, &f->b, "history", "plan", id, "--json", NULL), "history");
    assert_int_equal(nst_count_lines(out), 4);
    line_of(out, 0, line, sizeof(line));
    HAS(line, "\"version\":4", "\"op\":\"resolve\"", "\"changed_by\":\"Amina Coordinator\"",
        "\"device\":\"field-office-a\"", "\"deleted\":false", "\"changes\":[]");
    line_of(out, 1, line, sizeof(line));
    HAS(line, "\"version\":3", "\"op\":\"update\"", "\"changed_by\":\"Bakari Coordinator\"",
        "\"device\":\"field-office-b\"",
        "\"changes\":[{\"field\":\"summary\",\"kind\":\"text\",\"before\":\"S0\","
        "\"after\":\"Women, peace and security\"}]");
    line_of(out, 2, line, sizeof(line));
    HAS(line, "\"version\":2", "\"changed_by\":\"Amina Coordinator\"",
        "\"changes\":[{\"field\":\"title\",\"kind\":\"text\",\"before\":\"National Action Plan "
        "2025\",\"after\":\"NAP 1325 (A)\"}]");
    line_of(out, 3, line, sizeof(line));
    HAS(line, "\"version\":1", "\"op\":\"create\"",
        "{\"field\":\"kind\",\"kind\":\"text\",\"before\":null,\"after\":\"" NST_PLAN_KIND "\"}",
        "{\"field\":\"period_start\",\"kind\":\"date\",\"before\":null,\"after\":\"" NST_PLAN_START
        "\"}",
        "{\"field\":\"title\",\"kind\":\"text\",\"before\":null,\"after\":\"National Action "
        "Plan 2025\"}",
        "{\"field\":\"owner_id\",\"kind\":\"ref\",\"before\":null,\"after\":\"");
    char mid[40], at[64];
    nst_json_get(line, "mutation_id", mid, sizeof(mid));
    assert_int_equal(strlen(mid), 36);
    nst_json_get(line, "at", at, sizeof(at));
    assert_int_equal(strlen(at), strlen("2026-11-24T10:00:00.000000Z"));
    assert_int_equal(at[strlen(at) - 1], 'Z');

    /* Text: one line per version; --limit shows the newest and says that
     * older ones remain. */
    must(f, cli(f, &f->a, "history", "plan", id, "--limit", "2", NULL), "history");
    assert_int_equal(nst_count_lines(out), 3);
    line_of(out, 0, line, sizeof(line));
    assert_true(strncmp(line, "v4  ", 4) == 0);
    HAS(line, "Z  Amina Coordinator (field-office-a)  resolve");
    line_of(out, 1, line, sizeof(line));
    assert_true(strncmp(line, "v3  ", 4) == 0);
    HAS(line, "Z  Bakari Coordinator (field-office-b)  update  summary: \"S0\" → \"Women, "
              "peace and security\"");
    line_of(out, 2, line, sizeof(line));
    HAS(line, "older versions remain");
    must(f, cli(f, &f->a, "history", "plan", id, NULL), "history");
    assert_int_equal(nst_count_lines(out), 4);
    line_of(out, 2, line, sizeof(line));
    HAS(line, "update  title: \"National Action Plan 2025\" → \"NAP 1325 (A)\"");
    line_of(out, 3, line, sizeof(line));
    HAS(line, "create  ", "kind: \"" NST_PLAN_KIND "\"", "title: \"National Action Plan 2025\"");

    /* A record that does not exist: the server's NOT_FOUND, exit 4. */
    assert_int_equal(
        cli(f, &f->a, "history", "plan", "0a000000-0000-4000-8000-0000000000ff", "--json", NULL),
        4);
    HAS(out, "\"error\":\"server\"", "not readable");
    assert_int_equal(cli(f, &f->a, "history", "plan", "nope", NULL), 2);
    assert_int_equal(cli(f, &f->a, "history", "plan", id, "--limit", "0", NULL), 2);
    nst_test_passed(f->e);
}

typedef struct {
    uint64_t versions[8];
    size_t n;
    char by[8][64];
} seen;

static int collect(const ns_revision_view *r, void *ud)
{
    seen *s = ud;
    if (s->n < 8) {
        s->versions[s->n] = r->version;
        snprintf(s->by[s->n], sizeof(s->by[0]), "%s", r->changed_by);
        s->n++;
    }
    return 0;
}

static void expect_server_error(fixture *f, ns_client *c, const char *type, const char *id,
                                int code)
{
    seen s = {0};
    ns_error err;
    int more = -1;
    int rc = ns_client_history_wait(c, type, id, 0, 0, collect, &s, &more, &err);
    if (rc != NS_ERR_SERVER || err.server_code != code)
        nst_fail(f->e, "history of %s %s: %d (server code %d): %s; expected server code %d", type,
                 id, rc, err.server_code, err.message, code);
    assert_int_equal(s.n, 0);
    assert_int_equal(more, -1);
    nst_must_ping(f->e, c); /* the session still serves */
}

/* The library's call through the daemon: pages, and errors that are typed
 * and leave the session serving. */
static void test_api_history(void **state)
{
    fixture *f = *state;
    char id[40], draft[40];
    must(f,
         cli(f, &f->a, "put", "plan", "new", "title=One", "status=adopted", NST_PLAN_ASSIGN,
             "--json", NULL),
         "put");
    nst_json_get(out, "record_id", id, sizeof(id));
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync");
    must(f, cli(f, &f->a, "put", "plan", id, "title=Two", NULL), "put");
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync");
    must(f, cli(f, &f->b, "sync", "--json", NULL), "sync");
    must(f, cli(f, &f->b, "put", "plan", id, "title=Three", NULL), "put");
    must(f, cli(f, &f->b, "sync", "--json", NULL), "sync");
    must(f,
         cli(f, &f->a, "put", "plan", "new", "title=Not yet public", "status=draft",
             NST_PLAN_ASSIGN, "--json", NULL),
         "put");
    nst_json_get(out, "record_id", draft, sizeof(draft));
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync");

    ns_client *c = nst_must_connect(f->e, &f->b);
    seen s = {0};
    ns_error err;
    int more = -1;
    if (ns_client_history_wait(c, "plan", id, 0, 2, collect, &s, &more, &err) != NS_OK)
        nst_fail(f->e, "history: %s", err.message);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.versions[0], 3);
    assert_int_equal(s.versions[1], 2);
    assert_string_equal(s.by[0], "Bakari Coordinator");
    assert_string_equal(s.by[1], "Amina Coordinator");
    assert_int_equal(more, 1);
    memset(&s, 0, sizeof(s));
    if (ns_client_history_wait(c, "plan", id, 2, 2, collect, &s, &more, &err) != NS_OK)
        nst_fail(f->e, "history: %s", err.message);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.versions[0], 1);
    assert_int_equal(more, 0);

    /* A draft is readable inside its organisation only. */
    memset(&s, 0, sizeof(s));
    if (ns_client_history_wait(c, "plan", draft, 0, 0, collect, &s, &more, &err) != NS_OK)
        nst_fail(f->e, "history: %s", err.message);
    assert_int_equal(s.n, 1);
    ns_client *m = nst_must_connect(f->e, &f->m);
    expect_server_error(f, m, "plan", draft, ERR(NOT_FOUND));
    memset(&s, 0, sizeof(s));
    if (ns_client_history_wait(m, "plan", id, 0, 0, collect, &s, &more, &err) != NS_OK)
        nst_fail(f->e, "history: %s", err.message);
    assert_int_equal(s.n, 3); /* not a draft: every organisation reads it */
    nst_client_close(m);

    expect_server_error(f, c, "plan", "0a000000-0000-4000-8000-0000000000ff", ERR(NOT_FOUND));
    expect_server_error(f, c, "nosuchtype", id, ERR(UNKNOWN_ENTITY));
    /* Refused before anything is sent. */
    assert_int_equal(ns_client_history_wait(c, "plan", "nope", 0, 0, collect, &s, NULL, &err),
                     NS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ns_client_history_wait(c, "Plan;", id, 0, 0, collect, &s, NULL, &err),
                     NS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ns_client_history_wait(c, NULL, id, 0, 0, collect, &s, NULL, &err),
                     NS_ERR_INVALID_ARGUMENT);
    nst_must_ping(f->e, c);
    assert_int_equal(ns_client_disconnect_wait(c), NS_OK);
    assert_int_equal(ns_client_history_wait(c, "plan", id, 0, 0, collect, &s, NULL, &err),
                     NS_ERR_STATE);
    ns_client_free(c);
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_cli_history),
        NST_TEST(test_api_history),
    };
    return cmocka_run_group_tests_name("integration: history through napsyncd and the CLI", tests,
                                       group_setup, nst_group_teardown);
}
