/* A watching device lists its conflicts again only when a live page says
 * they may have changed (ChangePage.conflicts_unchanged, docs/protocol.md):
 * a plain change of an indicator brings a page and no listing; a change
 * that opens a conflict brings a page and a listing that finds it. The
 * live pages come from the subscriptions' shared read (feed.h). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define OUT_CAP 65536

typedef struct {
    nst_env *e;
    nst_device a, b, w;
    char store_a[NST_PATH], store_b[NST_PATH], store_w[NST_PATH];
} fixture;

static char out[OUT_CAP];

static int cli(fixture *f, const nst_device *d, const char *first, ...)
{
    const char *store = d == &f->a ? f->store_a : d == &f->b ? f->store_b : f->store_w;
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(f->e, d, store, out, sizeof(out), first, ap);
    va_end(ap);
    return rc;
}

static void must(fixture *f, int rc, const char *what)
{
    if (rc != 0)
        nst_fail(f->e, "%s exited %d: %s", what, rc, out);
}

/* How many lines of the log hold needle. */
static int log_count(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), fp) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(fp);
    return n;
}

static bool wait_count(const char *path, const char *needle, int want)
{
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    while (log_count(path, needle) < want && nst_now_ms() < deadline)
        nst_sleep_ms(50);
    return log_count(path, needle) >= want;
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    f->e = nst_env_new("watch_conflicts", NULL);
    if (f->e == NULL || nst_device_issue(f->e, false, "office-a", &f->a) != 0 ||
        nst_device_issue(f->e, false, "office-b", &f->b) != 0 ||
        nst_device_issue(f->e, false, "office-w", &f->w) != 0 ||
        nst_daemon_start(f->e, NULL) != 0 ||
        nst_device_register(f->e, "mogender", "Amina Coordinator", "coordinator", &f->a) != 0 ||
        nst_device_register(f->e, "mogender", "Bakari Coordinator", "coordinator", &f->b) != 0 ||
        nst_device_register(f->e, "mogender", "Wanjiru Coordinator", "coordinator", &f->w) != 0)
        return -1;
    if (nst_path_join(f->store_a, f->e->dir, "a.store") != 0 ||
        nst_path_join(f->store_b, f->e->dir, "b.store") != 0 ||
        nst_path_join(f->store_w, f->e->dir, "w.store") != 0)
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

static void test_watch_lists_conflicts_when_told(void **state)
{
    fixture *f = *state;
    char plan[40], ind[40], plan_arg[64];
    must(f,
         cli(f, &f->a, "put", "plan", "new", "title=Watched", "status=draft", NST_PLAN_ASSIGN,
             "--json", NULL),
         "put plan");
    nst_json_get(out, "record_id", plan, sizeof(plan));
    snprintf(plan_arg, sizeof(plan_arg), "plan_id:ref=%s", plan);
    must(f,
         cli(f, &f->a, "put", "indicator", "new", plan_arg, "title=Seats held by women",
             NST_INDICATOR_ASSIGN, "--json", NULL),
         "put indicator");
    nst_json_get(out, "record_id", ind, sizeof(ind));
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync a");
    must(f, cli(f, &f->b, "sync", "--json", NULL), "sync b");

    char log[NST_PATH], server[64];
    assert_int_equal(nst_path_join(log, f->e->dir, "watch.log"), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)f->e->port);
    char *const argv[] = {f->e->napsync, "--server", server,    "--ca",   f->e->ca_cert,
                          "--cert",      f->w.cert,  "--key",   f->w.key, "--store",
                          f->store_w,    "sync",     "--watch", "--json", NULL};
    pid_t pid = nst_spawn(argv, log);
    assert_true(pid > 0);
    bool ok = wait_count(log, "\"event\":\"caught_up\"", 1);
    nst_sleep_ms(300);
    int changes = log_count(log, "\"event\":\"changes\"");
    int listed = log_count(log, "\"event\":\"conflicts\"");
    /* A first live change: the daemon's first shared read has nothing to
     * compare its fingerprints with, so this page comes from the
     * subscriber's own query, which cannot tell: a listing follows. */
    must(f, cli(f, &f->a, "put", "indicator", ind, "unit=seats", NULL), "put unit");
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync a (unit)");
    ok = ok && wait_count(log, "\"event\":\"changes\"", ++changes);
    ok = ok && wait_count(log, "\"event\":\"conflicts\"", ++listed);

    /* A plain change: a page, no new listing. */
    must(f, cli(f, &f->a, "put", "indicator", ind, "title=Seats (A)", NULL), "put title a");
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync a (title)");
    ok = ok && wait_count(log, "\"event\":\"changes\"", ++changes);
    nst_sleep_ms(500);
    int after_plain = log_count(log, "\"event\":\"conflicts\"");

    /* B edits the title from the older version, and the definition: the
     * definition merges, the title is a conflict. */
    must(
        f,
        cli(f, &f->b, "put", "indicator", ind, "title=Seats (B)", "definition=Elected seats", NULL),
        "put title b");
    must(f, cli(f, &f->b, "sync", "--json", NULL), "sync b (conflict)");
    ok = ok && wait_count(log, "\"event\":\"changes\"", ++changes);
    ok = ok && wait_count(log, "\"event\":\"conflicts\",\"count\":1", 1);
    kill(pid, SIGTERM);
    int status = -1;
    assert_int_equal(nst_wait_pid(pid, NST_WAIT_MS, &status), 0);
    if (!ok)
        nst_fail(f->e, "the watching device did not see the pages or the conflict (see %s)", log);
    assert_int_equal(after_plain, listed);
    assert_int_equal(status, 0);
    must(f, cli(f, &f->w, "conflicts", "--json", NULL), "conflicts w");
    assert_int_equal(nst_count_lines(out), 1);
    assert_non_null(strstr(out, "\"field\":\"title\""));
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_watch_lists_conflicts_when_told),
    };
    return cmocka_run_group_tests_name("integration: a watching client lists conflicts when told",
                                       tests, group_setup, group_teardown);
}
