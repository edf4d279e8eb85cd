/* A backup restored under devices that have read past it
 * (docs/operations.md, "Backup and restore"): pg_dump at T1, more changes,
 * a device syncs to T2 and then makes changes offline; the T1 dump is
 * restored (pg_restore into the database napsyncd uses, napsyncd stopped)
 * and the feed given a new epoch (`napsyncd admin feed new-epoch`); the
 * device syncs again. Its cursor is of the old epoch: it must be refused
 * (CURSOR_UNKNOWN), the device must re-fetch its scopes and end with a
 * replica equal to the server's (records changed after T1 gone, as they
 * are from the server), and its unsent changes must be pushed: those made
 * on versions the restore kept applied, the one made on a version the
 * restore lost refused with its reason and kept in its outbox.
 *
 * The device's unsent changes outnumber the changes after T1, so that its
 * push takes the restored feed's head past its old cursor: with the epoch
 * unchanged, that cursor would pass for valid and the device would keep
 * the lost records. pg_restore itself brings the dumped epoch back, which
 * the test checks, so the epoch step is what makes the difference. */
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "harness.h"

#define OUT_CAP 262144
/* napsyncd's own database role in the harness (harness.c). */
#define DAEMON_ROLE "napsyncd"

typedef struct {
    nst_env *e;
    nst_device a, b, c; /* a: the device under test; b: changes after T1; c: a fresh reader */
    char store_a[NST_PATH], store_b[NST_PATH], store_c[NST_PATH];
    char su[1024]; /* the test database as the cluster's superuser */
    char pg_bin[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];

/* The newest PostgreSQL's client programs, as tests/lib/pg.sh picks its
 * server (NS_PG_BIN overrides both). */
static int find_pg_bin(char *dst, size_t cap)
{
    const char *env = getenv("NS_PG_BIN");
    if (env != NULL && *env != '\0') {
        snprintf(dst, cap, "%s", env);
        return 0;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/pg_restore", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        fprintf(stderr, "test_restore: no /usr/lib/postgresql/*/bin/pg_restore\n");
        return -1;
    }
    const char *best = NULL;
    long best_v = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        if (v > best_v) {
            best_v = v;
            best = g.gl_pathv[i];
        }
    }
    snprintf(dst, cap, "%.*s", (int)(strlen(best) - strlen("/pg_restore")), best);
    globfree(&g);
    return 0;
}

static int cli(fixture *f, const nst_device *d, const char *first, ...) __attribute__((sentinel));
static int cli(fixture *f, const nst_device *d, const char *first, ...)
{
    const char *store = d == &f->a ? f->store_a : d == &f->b ? f->store_b : f->store_c;
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

static void must_sync(fixture *f, const nst_device *d)
{
    must(f, cli(f, d, "sync", "--json", NULL), "napsync sync");
}

/* A new adopted plan of d's organisation; its id into id. */
static void must_create(fixture *f, const nst_device *d, const char *title, char id[40])
{
    char t[200];
    snprintf(t, sizeof(t), "title=%s", title);
    must(f, cli(f, d, "put", "plan", "new", t, "status=adopted", NST_PLAN_ASSIGN, "--json", NULL),
         "napsync put plan new");
    nst_json_get(out, "record_id", id, 40);
}

static void must_edit(fixture *f, const nst_device *d, const char *id, const char *assign)
{
    must(f, cli(f, d, "put", "plan", id, assign, NULL), "napsync put plan");
}

/* The plans of device d's replica, one JSON line each, without the
 * fields that describe this device only (its pending and refused changes,
 * last on each line), into a malloc'd text. */
static char *replica(fixture *f, const nst_device *d)
{
    must(f, cli(f, d, "list", "plan", "--json", NULL), "napsync list plan");
    char *text = malloc(strlen(out) + 2);
    if (text == NULL)
        nst_fail(f->e, "out of memory");
    size_t n = 0;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *cut = strstr(line, ",\"pending\":");
        if (cut == NULL)
            nst_fail(f->e, "napsync list: no \"pending\" in %s", line);
        *cut = '\0';
        n += (size_t)sprintf(text + n, "%s\n", line);
    }
    text[n] = '\0';
    return text;
}

static void db_value(fixture *f, const char *sql, const char *param, char *val, size_t cap)
{
    const char *params[] = {param};
    if (nst_db_exec(f->e, sql, param ? 1 : 0, params, val, cap) != 0)
        nst_fail(f->e, "query failed: %s", sql);
}

/* One command on the maintenance database (identifiers quoted by libpq). */
static void maint(fixture *f, const char *before, const char *after)
{
    char info[1024];
    nst_conninfo(f->e, f->e->pg.user, "postgres", info, sizeof(info));
    PGconn *pg = PQconnectdb(info);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK)
        nst_fail(f->e, "cannot reach the maintenance database: %s",
                 pg ? PQerrorMessage(pg) : "out of memory");
    char *ident = PQescapeIdentifier(pg, f->e->dbname, strlen(f->e->dbname));
    char sql[512];
    snprintf(sql, sizeof(sql), "%s%s%s", before, ident ? ident : "\"\"", after);
    PQfreemem(ident);
    PGresult *res = PQexec(pg, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(pg));
    PQclear(res);
    PQfinish(pg);
    if (!ok)
        nst_fail(f->e, "%s failed", sql);
}

static void run_tool(fixture *f, char *const argv[], const char *what)
{
    int rc = nst_run_no_tty(argv, out, sizeof(out));
    if (rc != 0)
        nst_fail(f->e, "%s exited %d: %s", what, rc, out);
}

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL || find_pg_bin(f->pg_bin, sizeof(f->pg_bin)) != 0)
        return -1;
    const nst_member m[] = {
        {&f->a, "office-a", "mogender", "Amina Coordinator", "coordinator", f->store_a, "a.store"},
        {&f->b, "office-b", "mogender", "Bakari Coordinator", "coordinator", f->store_b, "b.store"},
        {&f->c, "reader-c", "mogender", "Chidi Reader", "coordinator", f->store_c, "c.store"},
    };
    if (nst_group_start(&f->e, "restore", NULL, m, NST_COUNT(m)) != 0)
        return -1;
    nst_conninfo(f->e, f->e->pg.user, f->e->dbname, f->su, sizeof(f->su));
    return 0;
}

static void test_restore_under_newer_cursor(void **state)
{
    fixture *f = *state;
    char p1[40], p2[40], q[40], r1[40], r2[40], epoch_t1[64], epoch[64], n[64];

    /* Before T1: two plans, on both devices. */
    must_create(f, &f->a, "P1", p1);
    must_create(f, &f->a, "P2", p2);
    must_sync(f, &f->a);
    must_sync(f, &f->b);

    /* T1: the backup. */
    char dump[NST_PATH], pg_dump[NST_PATH], pg_restore[NST_PATH];
    if (nst_path_join(dump, f->e->dir, "napsync.dump") != 0 ||
        nst_path_join(pg_dump, f->pg_bin, "pg_dump") != 0 ||
        nst_path_join(pg_restore, f->pg_bin, "pg_restore") != 0)
        nst_fail(f->e, "paths too long");
    char *dump_argv[] = {pg_dump, "--format=custom", "--file", dump, "--dbname", f->su, NULL};
    run_tool(f, dump_argv, "pg_dump");
    db_value(f, "SELECT epoch FROM sync_feed_head", NULL, epoch_t1, sizeof(epoch_t1));

    /* After T1: two changes by B (a new plan, an edit of P1), which the
     * restore will lose; A syncs them, its cursor now past T1. */
    must_create(f, &f->b, "Q (after the backup)", q);
    must_edit(f, &f->b, p1, "title=P1 edited after the backup");
    must_sync(f, &f->b);
    must_sync(f, &f->a);
    char *a_before = replica(f, &f->a);
    if (strstr(a_before, q) == NULL || strstr(a_before, "P1 edited after the backup") == NULL)
        nst_fail(f->e, "A did not receive B's changes:\n%s", a_before);
    free(a_before);

    /* A works offline: two new plans and an edit of P2 (on the version the
     * backup holds), and an edit of P1 on the version the restore loses. */
    must_create(f, &f->a, "R1 (offline)", r1);
    must_create(f, &f->a, "R2 (offline)", r2);
    must_edit(f, &f->a, p2, "summary=P2 edited offline");
    must_edit(f, &f->a, p1, "summary=P1 edited offline on a lost version");

    /* The restore: napsyncd stopped, the database made again from the
     * dump, a new epoch, napsyncd started. */
    if (nst_daemon_stop(f->e, SIGTERM, NST_STOP_MS) != 0)
        nst_fail(f->e, "napsyncd did not stop cleanly");
    maint(f, "DROP DATABASE ", " WITH (FORCE)");
    maint(f, "CREATE DATABASE ", " OWNER " DAEMON_ROLE);
    char *restore_argv[] = {
        pg_restore, "--exit-on-error", "--single-transaction", "--dbname", f->su, dump, NULL};
    run_tool(f, restore_argv, "pg_restore");
    db_value(f, "SELECT epoch FROM sync_feed_head", NULL, epoch, sizeof(epoch));
    if (strcmp(epoch, epoch_t1) != 0)
        nst_fail(f->e,
                 "pg_restore changed the epoch (%s, dumped %s): docs/operations.md says it "
                 "brings the dumped one back",
                 epoch, epoch_t1);
    db_value(f, "SELECT count(*) FROM plans WHERE id = $1::uuid", q, n, sizeof(n));
    if (strcmp(n, "0") != 0)
        nst_fail(f->e, "the restored database holds Q, made after the backup");
    char *epoch_argv[] = {f->e->napsyncd, "--database", f->su, "admin", "feed", "new-epoch", NULL};
    run_tool(f, epoch_argv, "napsyncd admin feed new-epoch");
    db_value(f, "SELECT epoch FROM sync_feed_head", NULL, epoch, sizeof(epoch));
    if (strcmp(epoch, epoch_t1) == 0)
        nst_fail(f->e, "the epoch did not change");
    if (nst_daemon_start(f->e, NULL) != 0)
        nst_fail(f->e, "napsyncd did not start on the restored database");

    /* A syncs: its outbox first (3 applied, 1 refused), then its cursor,
     * of the old epoch, is refused and it re-fetches its scopes. */
    must_sync(f, &f->a);
    json_t *st = json_loads(out, 0, NULL);
    if (st == NULL || json_integer_value(json_object_get(st, "pushed")) != 4 ||
        json_integer_value(json_object_get(st, "rejected")) != 1 ||
        json_integer_value(json_object_get(st, "cursor_resets")) != 1)
        nst_fail(f->e,
                 "A's sync after the restore: %s (expected 4 pushed, 1 rejected, 1 cursor "
                 "reset)",
                 out);
    json_decref(st);

    /* The server has A's unsent changes made on versions it kept. */
    char ids[256], titles[1024];
    snprintf(ids, sizeof(ids), "{%s,%s,%s,%s}", p1, p2, r1, r2);
    db_value(f,
             "SELECT string_agg(title || '|' || coalesce(summary, ''), ';' ORDER BY title)"
             " FROM plans WHERE id = ANY ($1::uuid[])",
             ids, titles, sizeof(titles));
    if (strcmp(titles, "P1|;P2|P2 edited offline;R1 (offline)|;R2 (offline)|") != 0)
        nst_fail(f->e, "the server's plans after A's sync: %s", titles);

    /* The change on the lost version stays in A's outbox, refused with why. */
    must(f, cli(f, &f->a, "status", "--json", NULL), "napsync status");
    json_t *status = json_loads(out, 0, NULL);
    json_t *outbox = json_object_get(status, "outbox");
    json_t *refused = json_array_get(outbox, 0);
    const char *why = json_string_value(json_object_get(refused, "reject_reason"));
    if (status == NULL || json_integer_value(json_object_get(status, "pending")) != 0 ||
        json_integer_value(json_object_get(status, "rejected")) != 1 ||
        json_array_size(outbox) != 1 ||
        strcmp(json_string_value(json_object_get(refused, "record_id")), p1) != 0 || why == NULL ||
        strstr(why, "newer than the record's version") == NULL)
        nst_fail(f->e, "A's outbox after the restore: %s", out);
    json_decref(status);

    /* A's replica is the server's: the same as a device that never synced
     * before, and the versions the database holds; Q is gone. */
    char *a_after = replica(f, &f->a);
    must_sync(f, &f->c);
    char *c_after = replica(f, &f->c);
    if (strcmp(a_after, c_after) != 0)
        nst_fail(f->e, "A's replica differs from a fresh device's:\nA:\n%s\nfresh:\n%s", a_after,
                 c_after);
    if (strstr(a_after, q) != NULL)
        nst_fail(f->e, "A still holds Q, which the server lost in the restore:\n%s", a_after);
    char versions[512], expect[512] = "";
    db_value(f,
             "SELECT string_agg(id || ':' || version, ',' ORDER BY id) FROM plans"
             " WHERE owner_id = '0e000000-0000-4000-8000-000000000001'",
             NULL, versions, sizeof(versions));
    json_error_t jerr;
    for (char *line = strtok(a_after, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        /* replica() cut each line short of its closing brace. */
        char obj[65536];
        snprintf(obj, sizeof(obj), "%s}", line);
        json_t *rec = json_loads(obj, 0, &jerr);
        if (rec == NULL)
            nst_fail(f->e, "A's replica line is not JSON (%s): %s", jerr.text, line);
        size_t len = strlen(expect);
        snprintf(expect + len, sizeof(expect) - len, "%s%s:%lld", len ? "," : "",
                 json_string_value(json_object_get(rec, "id")),
                 (long long)json_integer_value(json_object_get(rec, "version")));
        json_decref(rec);
    }
    if (strcmp(expect, versions) != 0)
        nst_fail(f->e, "A's replica (%s) is not the server's (%s)", expect, versions);
    free(a_after);
    free(c_after);

    /* B, also past T1 and with nothing unsent, starts over too. */
    must_sync(f, &f->b);
    if (strstr(out, "\"cursor_resets\":1") == NULL)
        nst_fail(f->e, "B's sync after the restore: %s", out);
    char *b_after = replica(f, &f->b);
    char *a_again = replica(f, &f->a);
    if (strcmp(b_after, a_again) != 0)
        nst_fail(f->e, "B's replica differs from A's:\nB:\n%s\nA:\n%s", b_after, a_again);
    free(b_after);
    free(a_again);
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_restore_under_newer_cursor),
    };
    return cmocka_run_group_tests(tests, group_setup, nst_group_teardown);
}
