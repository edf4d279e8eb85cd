/* The offline-first client end to end: two devices of organisation
 * mogender (coordinators), each with its own store, drive the napsync CLI
 * binary (as a user would) against a real napsyncd, PostgreSQL and TLS:
 * the "Done when" scenario (offline edits, merge, one conflict on
 * both, resolve, identical replicas), edits with the server down, a
 * refused change that blocks nothing, and a cursor the server no longer
 * knows. */
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

#include <cmocka.h>

#include "harness.h"

#define OUT_CAP 65536

typedef struct {
    nst_env *e;
    nst_device a, b;
    char store_a[NST_PATH], store_b[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];

/* Runs `napsync ARGS...` as device d with its store; stdout in `out`.
 * Returns the exit status. */
static int cli(fixture *f, const nst_device *d, const char *first, ...)
{
    const char *store = d == &f->a ? f->store_a : f->store_b;
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

static void must_sync(fixture *f, const nst_device *d)
{
    int rc = cli(f, d, "sync", "--json", NULL);
    if (rc != 0)
        nst_fail(f->e, "napsync sync as %s exited %d: %s", d->name, rc, out);
}

/* A new draft plan on device d; its id into id. */
static void must_create(fixture *f, const nst_device *d, const char *title, char id[40])
{
    char t[200];
    snprintf(t, sizeof(t), "title=%s", title);
    assert_int_equal(
        cli(f, d, "put", "plan", "new", t, "status=draft", NST_PLAN_ASSIGN, "--json", NULL), 0);
    nst_json_get(out, "record_id", id, 40);
}

/* `napsync get plan ID --json` without the fields that only describe this
 * device (pending and refused local changes): they come last. */
static void replica_of(fixture *f, const nst_device *d, const char *id, char *buf, size_t cap)
{
    assert_int_equal(cli(f, d, "get", "plan", id, "--json", NULL), 0);
    char *cut = strstr(out, ",\"pending\":");
    assert_non_null(cut);
    *cut = '\0';
    size_t n = strlen(out);
    assert_true(n < cap);
    memcpy(buf, out, n + 1);
}

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
    };
    return nst_group_start(&f->e, "client_sync", NULL, m, NST_COUNT(m));
}

/* The "Done when": A creates a plan, both have it; offline, A
 * changes the title, B the title and the summary; A syncs, B syncs: the
 * summary merges and the title is one conflict, seen on both; A takes
 * its own title; after a sync on both, the replicas are identical with A's
 * title and B's summary and no conflict is open. */
static void test_done_when(void **state)
{
    fixture *f = *state;
    char id[40];
    must_create(f, &f->a, "National Action Plan 2025", id);
    must_sync(f, &f->a);
    must_sync(f, &f->b);
    assert_int_equal(cli(f, &f->b, "get", "plan", id, "--json", NULL), 0);
    assert_non_null(strstr(out, "\"title\":\"National Action Plan 2025\""));

    assert_int_equal(cli(f, &f->a, "put", "plan", id, "title=NAP 1325 (A)", NULL), 0);
    assert_int_equal(cli(f, &f->b, "put", "plan", id, "title=NAP 1325 (B)",
                         "summary=Women, peace and security", NULL),
                     0);
    must_sync(f, &f->a);
    must_sync(f, &f->b);
    assert_int_equal(json_num(out, "open_conflicts"), 1);
    must_sync(f, &f->a);

    char cid_a[40], cid_b[40];
    assert_int_equal(cli(f, &f->a, "conflicts", "--json", NULL), 0);
    assert_int_equal(nst_count_lines(out), 1);
    nst_json_get(out, "id", cid_a, sizeof(cid_a));
    assert_non_null(strstr(out, "\"field\":\"title\""));
    assert_non_null(strstr(out, "\"kept_value\":\"NAP 1325 (A)\""));
    assert_non_null(strstr(out, "\"other_value\":\"NAP 1325 (B)\""));
    assert_non_null(strstr(out, "\"kept_by\":\"Amina Coordinator\""));
    assert_non_null(strstr(out, "\"other_by\":\"Bakari Coordinator\""));
    assert_int_equal(cli(f, &f->b, "conflicts", "--json", NULL), 0);
    assert_int_equal(nst_count_lines(out), 1);
    nst_json_get(out, "id", cid_b, sizeof(cid_b));
    assert_string_equal(cid_a, cid_b);

    /* merged already: both show B's summary and the kept title */
    char ra[4096], rb[4096];
    replica_of(f, &f->a, id, ra, sizeof(ra));
    replica_of(f, &f->b, id, rb, sizeof(rb));
    assert_string_equal(ra, rb);
    assert_non_null(strstr(ra, "\"summary\":\"Women, peace and security\""));

    int rc = cli(f, &f->a, "resolve", cid_a, "--take", "mine", "--json", NULL);
    if (rc != 0)
        nst_fail(f->e, "napsync resolve exited %d: %s", rc, out);
    must_sync(f, &f->a);
    must_sync(f, &f->b);
    replica_of(f, &f->a, id, ra, sizeof(ra));
    replica_of(f, &f->b, id, rb, sizeof(rb));
    assert_string_equal(ra, rb);
    assert_non_null(strstr(ra, "\"title\":\"NAP 1325 (A)\""));
    assert_non_null(strstr(ra, "\"summary\":\"Women, peace and security\""));
    assert_int_equal(cli(f, &f->a, "conflicts", "--json", NULL), 0);
    assert_string_equal(out, "");
    assert_int_equal(cli(f, &f->b, "conflicts", "--json", NULL), 0);
    assert_string_equal(out, "");
    nst_test_passed(f->e);
}

/* A change saved with the server down is sent by the next sync. */
static void test_put_offline(void **state)
{
    fixture *f = *state;
    assert_int_equal(nst_daemon_stop(f->e, SIGTERM, NST_STOP_MS), 0);
    char id[40];
    must_create(f, &f->a, "Drafted in the field", id);
    assert_int_equal(cli(f, &f->a, "sync", "--json", NULL), 3); /* connection */
    assert_int_equal(cli(f, &f->a, "status", "--json", NULL), 0);
    assert_int_equal(json_num(out, "pending"), 1);
    assert_int_equal(nst_daemon_start(f->e, NULL), 0);
    must_sync(f, &f->a);
    assert_int_equal(json_num(out, "pushed"), 1);
    assert_int_equal(cli(f, &f->a, "status", "--json", NULL), 0);
    assert_int_equal(json_num(out, "pending"), 0);
    must_sync(f, &f->b);
    assert_int_equal(cli(f, &f->b, "get", "plan", id, "--json", NULL), 0);
    assert_non_null(strstr(out, "\"title\":\"Drafted in the field\""));
    assert_non_null(strstr(out, "\"version\":1"));
    nst_test_passed(f->e);
}

/* A value of the wrong kind is refused by the server, naming the field;
 * the change stays visible with its reason and the next one goes through. */
static void test_rejected_does_not_block(void **state)
{
    fixture *f = *state;
    char bad[40], good[40];
    /* without :date the value is text, which adopted_on is not */
    assert_int_equal(cli(f, &f->a, "put", "plan", "new", "title=Wrong kind", "status=adopted",
                         NST_PLAN_ASSIGN, "adopted_on=2025-01-01", "--json", NULL),
                     0);
    nst_json_get(out, "record_id", bad, sizeof(bad));
    must_create(f, &f->a, "Right behind it", good);
    must_sync(f, &f->a);
    assert_int_equal(json_num(out, "pushed"), 2);
    assert_int_equal(json_num(out, "rejected"), 1);
    assert_int_equal(cli(f, &f->a, "status", "--json", NULL), 0);
    assert_int_equal(json_num(out, "pending"), 0);
    assert_int_equal(json_num(out, "rejected"), 1);
    assert_non_null(strstr(out, "\"state\":\"rejected\""));
    assert_non_null(strstr(out, "adopted_on"));
    assert_non_null(strstr(out, bad));
    /* a refused create makes no record, here or there */
    assert_int_equal(cli(f, &f->a, "get", "plan", bad, "--json", NULL), 2);
    /* the one behind it reached the other device */
    must_sync(f, &f->b);
    assert_int_equal(cli(f, &f->b, "get", "plan", good, "--json", NULL), 0);
    assert_int_not_equal(cli(f, &f->b, "get", "plan", bad, "--json", NULL), 0);
    /* with the kind given, the same change goes through */
    char ok[40];
    assert_int_equal(cli(f, &f->a, "put", "plan", "new", "title=Right kind", "status=adopted",
                         NST_PLAN_ASSIGN, "adopted_on:date=2025-01-01", "--json", NULL),
                     0);
    nst_json_get(out, "record_id", ok, sizeof(ok));
    must_sync(f, &f->a);
    assert_int_equal(json_num(out, "rejected"), 0);
    assert_int_equal(cli(f, &f->a, "get", "plan", ok, "--json", NULL), 0);
    assert_non_null(strstr(out, "\"adopted_on\":\"2025-01-01\""));
    assert_non_null(strstr(out, "\"version\":1"));
    nst_test_passed(f->e);
}

/* After a restore the server no longer knows the cursor: the client drops
 * its replica and cursor, keeps its outbox, and fetches everything again. */
static void test_cursor_unknown(void **state)
{
    fixture *f = *state;
    must_sync(f, &f->a);
    assert_int_equal(cli(f, &f->a, "status", "--json", NULL), 0);
    long records = json_num(out, "records");
    long rejected = json_num(out, "rejected");
    char cursor[128];
    nst_json_get(out, "cursor", cursor, sizeof(cursor));
    assert_true(records > 0);
    assert_true(rejected > 0); /* left by the previous test: must survive */
    assert_int_equal(
        nst_db_exec(f->e, "UPDATE sync_feed_head SET epoch = gen_random_uuid()", 0, NULL, NULL, 0),
        0);
    char id[40];
    must_create(f, &f->a, "Queued across the reset", id);
    must_sync(f, &f->a);
    assert_int_equal(json_num(out, "cursor_resets"), 1);
    assert_int_equal(cli(f, &f->a, "status", "--json", NULL), 0);
    assert_int_equal(json_num(out, "records"), records + 1);
    assert_int_equal(json_num(out, "rejected"), rejected);
    assert_int_equal(json_num(out, "pending"), 0);
    char cursor2[128];
    nst_json_get(out, "cursor", cursor2, sizeof(cursor2));
    assert_string_not_equal(cursor, cursor2);
    assert_int_equal(cli(f, &f->a, "get", "plan", id, "--json", NULL), 0);
    assert_non_null(strstr(out, "\"version\":1"));
    /* the next sync is an ordinary one */
    must_sync(f, &f->a);
    assert_int_equal(json_num(out, "cursor_resets"), 0);
    nst_test_passed(f->e);
}

/* Whether the file holds needle after the first `after` (NULL: anywhere). */
static bool file_has_after(const char *path, const char *after, const char *needle)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return false;
    static char buf[OUT_CAP];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *from = buf;
    if (after != NULL) {
        from = strstr(buf, after);
        if (from == NULL)
            return false;
        from += strlen(after);
    }
    return strstr(from, needle) != NULL;
}

static bool file_has(const char *path, const char *needle)
{
    return file_has_after(path, NULL, needle);
}

/* sync --watch applies a change pushed by another device as it commits,
 * and stops cleanly on SIGTERM. */
static void test_watch(void **state)
{
    fixture *f = *state;
    char log[NST_PATH], server[64];
    assert_int_equal(nst_path_join(log, f->e->dir, "watch.log"), 0);
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)f->e->port);
    char *const argv[] = {f->e->napsync, "--server", server,    "--ca",   f->e->ca_cert,
                          "--cert",      f->b.cert,  "--key",   f->b.key, "--store",
                          f->store_b,    "sync",     "--watch", "--json", NULL};
    pid_t pid = nst_spawn(argv, log);
    assert_true(pid > 0);
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    while (!file_has(log, "\"event\":\"caught_up\"") && nst_now_ms() < deadline)
        nst_sleep_ms(50);
    if (!file_has(log, "\"event\":\"caught_up\""))
        nst_fail(f->e, "napsync sync --watch did not catch up (see %s)", log);
    char id[40];
    must_create(f, &f->a, "Seen live", id);
    must_sync(f, &f->a);
    /* The live change, not one the catch-up applied before caught_up. */
    const char *caught = "\"event\":\"caught_up\"", *changes = "\"event\":\"changes\"";
    while (!file_has_after(log, caught, changes) && nst_now_ms() < deadline)
        nst_sleep_ms(50);
    bool live = file_has_after(log, caught, changes);
    kill(pid, SIGTERM);
    int status = -1;
    assert_int_equal(nst_wait_pid(pid, NST_WAIT_MS, &status), 0);
    if (!live)
        nst_fail(f->e, "the watching device did not receive the change (see %s)", log);
    assert_int_equal(status, 0);
    assert_int_equal(cli(f, &f->b, "get", "plan", id, "--json", NULL), 0);
    assert_non_null(strstr(out, "\"title\":\"Seen live\""));
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_done_when),
        NST_TEST(test_put_offline),
        NST_TEST(test_rejected_does_not_block),
        NST_TEST(test_cursor_unknown),
        NST_TEST(test_watch),
    };
    return cmocka_run_group_tests_name("integration: the client's sync through the CLI", tests,
                                       group_setup, nst_group_teardown);
}
