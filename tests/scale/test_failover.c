/* PostgreSQL failover (issue 6): a primary and a streaming standby made by
 * the test (tests/lib/pg.sh start, then standby: pg_basebackup -R), with
 * synchronous replication (synchronous_standby_names = '*', set on the
 * primary once the standby streams), and one napsyncd given both as a
 * multi-host connection string with target_session_attrs=read-write.
 * Three writers and a subscriber (scaletest.h) sync through it while
 *
 *  1. the standby stops taking WAL (its walreceiver is stopped with
 *     SIGSTOP) until a commit on the primary waits for it; then the primary
 *     dies (pg_ctl stop -m immediate) and its port goes dark: a socket of
 *     the test's own takes the port with a full accept queue, so that
 *     connection attempts hang as they do for a machine that has gone,
 *     instead of being refused at once. The walreceiver is then killed
 *     (SIGKILL; the standby restarts its processes and stays a standby),
 *     and the WAL it had not read goes with its socket: the commit that
 *     was waiting is on no surviving server, and no client was told of it;
 *  2. once napsyncd has noticed ("database unreachable"), the standby is
 *     promoted (pg_ctl promote).
 *
 * napsyncd must find the new primary by itself (its attempts that hang on
 * the first host are cut at connect_timeout and the next attempt starts at
 * the next host: daemon/db.c) and the clients converge. With synchronous
 * replication a commit is acknowledged only once the standby has it, so
 * every change a client was told was saved is on the new primary exactly
 * once (sc_load_check, against the promoted standby), and the subscriber,
 * never restarted, ends with the whole state: the changes of the commit
 * that was lost are sent again by their clients (their outboxes kept them)
 * and applied once. With asynchronous replication the primary acknowledges
 * commits while the standby is stopped, and this check reports them lost
 * (docs/deploy.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
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
#include <libpq-fe.h>

#include "harness.h"
#include "scaletest.h"

#define NWRITERS 3
#define PROGRESS 5
/* Connections that fill the dark port's accept queue (backlog 0 holds 1). */
#define NFILL 2

typedef struct {
    nst_env *e;
    char dir[NST_PATH]; /* the two clusters */
    nst_pg primary;
    nst_pg standby;
    nst_device writers[NWRITERS];
    nst_device watcher;
    sc_load *load;
    int dark;        /* the listening socket on the dead primary's port, or -1 */
    int fill[NFILL]; /* its queued, never accepted connections */
    pid_t stopped;   /* the standby's walreceiver while it is stopped, or 0 */
} fixture;
NST_FIXTURE_CHECK(fixture);

/* ---- the clusters ------------------------------------------------------------------ */

static PGconn *pg_open(const nst_pg *pg, const char *dbname, bool quiet)
{
    const char *keys[] = {"host", "port", "user", "dbname", "connect_timeout", NULL};
    const char *vals[] = {pg->host, pg->port, pg->user, dbname, "10", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    if (PQstatus(c) != CONNECTION_OK) {
        if (!quiet)
            fprintf(stderr, "cannot connect to %s:%s: %s", pg->host, pg->port, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* One statement as the cluster's superuser; the first value into out.
 * quiet: a wait that may fail until it succeeds; no message. */
static int pg_run_q(const nst_pg *pg, const char *sql, char *out, size_t cap, bool quiet)
{
    PGconn *c = pg_open(pg, "postgres", quiet);
    if (c == NULL)
        return -1;
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc != 0 && !quiet)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    else if (out)
        snprintf(out, cap, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    PQfinish(c);
    return rc;
}

static int pg_run(const nst_pg *pg, const char *sql, char *out, size_t cap)
{
    return pg_run_q(pg, sql, out, cap, false);
}

/* Waits until sql's first value on pg is want. */
static int pg_wait_value(const nst_pg *pg, const char *sql, const char *want)
{
    char got[64] = "";
    uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
    while (nst_now_ms() < deadline) {
        if (pg_run_q(pg, sql, got, sizeof(got), true) == 0 && strcmp(got, want) == 0)
            return 0;
        nst_sleep_ms(100);
    }
    fprintf(stderr, "%s: \"%s\", not \"%s\", after %d ms\n", sql, got, want, SC_WAIT_MS);
    return -1;
}

/* tests/lib/pg.sh with arguments; its PGHOST/PGPORT/PGUSER lines into pg
 * when pg is not NULL. */
static int pg_sh(nst_pg *pg, const char *source_dir, char *const args[])
{
    char script[NST_PATH];
    if (nst_path_join(script, source_dir, "tests/lib/pg.sh") != 0)
        return -1;
    char *argv[8] = {"/bin/bash", script};
    size_t n = 2;
    for (size_t i = 0; args[i] && n + 1 < sizeof(argv) / sizeof(argv[0]); i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char out[4096];
    int rc = nst_run(argv, out, sizeof(out));
    if (rc != 0) {
        fprintf(stderr, "pg.sh %s failed (exit %d)\n", args[0], rc);
        return -1;
    }
    if (pg == NULL)
        return 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "PGHOST=", 7) == 0)
            snprintf(pg->host, sizeof(pg->host), "%s", line + 7);
        else if (strncmp(line, "PGPORT=", 7) == 0)
            snprintf(pg->port, sizeof(pg->port), "%s", line + 7);
        else if (strncmp(line, "PGUSER=", 7) == 0)
            snprintf(pg->user, sizeof(pg->user), "%s", line + 7);
    }
    return pg->host[0] && pg->port[0] && pg->user[0] ? 0 : -1;
}

/* The dead primary's port, made dark: bound and listening with a full
 * accept queue, so that a SYN to it is dropped (Linux drops it when the
 * queue is full) and a connect hangs, as to a machine that is gone. */
static int go_dark(fixture *f)
{
    int port = atoi(f->primary.port);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    f->dark = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->dark < 0 || setsockopt(f->dark, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(f->dark, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(f->dark, 0) != 0) {
        fprintf(stderr, "cannot take port %d: %s\n", port, strerror(errno));
        return -1;
    }
    for (int i = 0; i < NFILL; i++) {
        f->fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (f->fill[i] < 0 ||
            (connect(f->fill[i], (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS))
            return -1;
    }
    /* The queue is full once a further connect does not complete. */
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
        return -1;
    bool hangs = connect(probe, (struct sockaddr *)&a, sizeof(a)) != 0 && errno == EINPROGRESS;
    if (hangs) {
        /* Writable once it completes or fails; a dropped SYN does neither. */
        struct pollfd p = {.fd = probe, .events = POLLOUT};
        hangs = poll(&p, 1, 300) == 0;
    }
    close(probe);
    if (!hangs)
        fprintf(stderr, "port %d does not look dark: a connect to it did not hang\n", port);
    return hangs ? 0 : -1;
}

/* Stops the standby's walreceiver: WAL stops reaching the standby. */
static int standby_pause(fixture *f)
{
    char pid[32] = "";
    if (pg_wait_value(&f->standby, "SELECT status FROM pg_stat_wal_receiver", "streaming") != 0 ||
        pg_run(&f->standby, "SELECT pid FROM pg_stat_wal_receiver", pid, sizeof(pid)) != 0 ||
        atoi(pid) <= 0 || kill((pid_t)atoi(pid), SIGSTOP) != 0)
        return -1;
    f->stopped = (pid_t)atoi(pid);
    return 0;
}

/* Kills the stopped walreceiver, so that the WAL still in its socket is
 * lost; the standby's postmaster restarts its processes (restart_after_crash)
 * and recovers as a standby. Waits until it serves again. */
static int standby_cut(fixture *f)
{
    if (f->stopped <= 0 || kill(f->stopped, SIGKILL) != 0)
        return -1;
    f->stopped = 0;
    return pg_wait_value(&f->standby, "SELECT pg_is_in_recovery()", "t");
}

static void standby_resume(fixture *f)
{
    if (f->stopped > 0)
        kill(f->stopped, SIGCONT);
    f->stopped = 0;
}

/* napsyncd's connections to the new primary probe a silent server after
 * 30 s (db.c's keepalive default), not after the system's two hours: the
 * kernel's keepalive timer on one of them says so. */
static void expect_keepalive(fixture *f)
{
    char ports[512] = "";
    if (nst_db_exec(f->e,
                    "SELECT string_agg(client_port::text, ',') FROM pg_stat_activity"
                    " WHERE application_name = 'napsyncd' AND client_port > 0",
                    0, NULL, ports, sizeof(ports)) != 0 ||
        ports[0] == '\0')
        nst_fail(f->e, "napsyncd has no TCP connection to the new primary");
    int best = -1;
    for (char *p = strtok(ports, ","); p; p = strtok(NULL, ",")) {
        int due;
        if (nst_tcp_keepalive_due((uint16_t)atoi(p), (uint16_t)atoi(f->standby.port), 2000, &due) ==
                0 &&
            (best < 0 || due < best))
            best = due;
    }
    if (best < 0 || best > 30)
        nst_fail(f->e,
                 "napsyncd's connections to PostgreSQL keep no keepalive timer due within "
                 "30 s (soonest: %d s)",
                 best);
}

/* ---- fixture ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    f->dark = -1;
    for (int i = 0; i < NFILL; i++)
        f->fill[i] = -1;
    const char *src = getenv("NS_SOURCE_DIR");
    snprintf(f->dir, sizeof(f->dir), "/tmp/nst-failover-pg-XXXXXX");
    if (src == NULL || mkdtemp(f->dir) == NULL) {
        f->dir[0] = '\0';
        return -1;
    }
    char primary_dir[NST_PATH], standby_dir[NST_PATH];
    if (nst_path_join(primary_dir, f->dir, "primary") != 0 ||
        nst_path_join(standby_dir, f->dir, "standby") != 0 ||
        nst_pg_private_start(&f->primary, primary_dir) != 0)
        return -1;
    /* The role and the database first, so that the base backup holds them. */
    f->e = nst_env_new("failover", &f->primary);
    if (f->e == NULL)
        return -1;
    char *standby[] = {"standby", primary_dir, standby_dir, NULL};
    if (pg_sh(&f->standby, src, standby) != 0)
        return -1;
    snprintf(f->standby.dir, sizeof(f->standby.dir), "%s", standby_dir);
    /* Synchronous once the standby streams: set on the primary only (the
     * standby, once promoted, has no standby of its own to wait for). */
    if (pg_wait_value(&f->primary, "SELECT state FROM pg_stat_replication", "streaming") != 0 ||
        pg_run(&f->primary, "ALTER SYSTEM SET synchronous_standby_names = '*'", NULL, 0) != 0 ||
        pg_run(&f->primary, "SELECT pg_reload_conf()", NULL, 0) != 0 ||
        pg_wait_value(&f->primary, "SELECT sync_state FROM pg_stat_replication", "sync") != 0)
        return -1;

    /* Both hosts, the primary first; attempts cut at 2 s (libpq's floor). */
    char conninfo[512];
    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1,127.0.0.1 port=%s,%s dbname=%s user=napsyncd "
             "target_session_attrs=read-write connect_timeout=2",
             f->primary.port, f->standby.port, f->e->dbname);
    const char *extra[] = {"--database", conninfo, NULL};
    if (nst_daemon_start(f->e, extra) != 0)
        return -1;
    for (int i = 0; i < NWRITERS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "writer-%d", i);
        if (nst_device_issue(f->e, false, name, &f->writers[i]) != 0 ||
            nst_device_register(f->e, "mogender", name, "coordinator", &f->writers[i]) != 0)
            return -1;
    }
    if (nst_device_issue(f->e, false, "watcher", &f->watcher) != 0 ||
        nst_device_register(f->e, "mogender", "Watcher", "implementer", &f->watcher) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f == NULL)
        return 0;
    standby_resume(f);
    sc_load_free(f->load);
    int rc = nst_env_close(f->e);
    for (int i = 0; i < NFILL; i++)
        if (f->fill[i] >= 0)
            close(f->fill[i]);
    if (f->dark >= 0)
        close(f->dark);
    if (f->dir[0]) {
        const char *src = getenv("NS_SOURCE_DIR");
        char primary_dir[NST_PATH], standby_dir[NST_PATH];
        if (src && nst_path_join(primary_dir, f->dir, "primary") == 0 &&
            nst_path_join(standby_dir, f->dir, "standby") == 0) {
            char *stop_standby[] = {"stop", standby_dir, "immediate", NULL};
            char *stop_primary[] = {"stop", primary_dir, "immediate", NULL};
            (void)pg_sh(NULL, src, stop_standby);
            (void)pg_sh(NULL, src, stop_primary);
        }
        if (getenv("NST_KEEP"))
            fprintf(stderr, "keeping %s (NST_KEEP is set)\n", f->dir);
        else
            nst_rmtree(f->dir);
    }
    free(f);
    return rc;
}

static int test_teardown(void **state)
{
    fixture *f = *state;
    nst_test_end(f->e);
    if (!f->e->test_passed)
        fprintf(stderr, "the clusters' logs: %s/{primary,standby}/postgres.log\n", f->dir);
    return 0;
}

/* ---- the test ---------------------------------------------------------------------------- */

static void test_primary_dies_standby_promoted(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)e->port);
    sc_load_opts o = {.e = e,
                      .server = server,
                      .writers = f->writers,
                      .nwriters = NWRITERS,
                      .watcher = &f->watcher};
    sc_load_start(&o, &f->load);
    sc_load_wait_progress(f->load, PROGRESS, "on the primary");

    /* 1. A commit waits for the standby, the primary dies with it, and its
     * address goes dark. */
    assert_int_equal(standby_pause(f), 0);
    if (pg_wait_value(&f->primary,
                      "SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
                      "t") != 0)
        nst_fail(e, "no commit waited for the stopped standby");
    size_t mark = nst_log_size(e);
    char *crash[] = {"stop", f->primary.dir, "immediate", NULL};
    assert_int_equal(pg_sh(NULL, e->source_dir, crash), 0);
    assert_int_equal(go_dark(f), 0);
    assert_int_equal(standby_cut(f), 0);
    fprintf(stderr, "scale: the primary died (immediate stop) with a commit the standby lacks; "
                    "its port is dark\n");
    if (nst_log_wait(e, mark, "database unreachable", SC_WAIT_MS) != 0)
        nst_fail(e, "napsyncd did not notice that the primary died");

    /* 2. The standby becomes the primary; napsyncd must find it alone. */
    mark = nst_log_size(e);
    char *promote[] = {"promote", f->standby.dir, NULL};
    assert_int_equal(pg_sh(NULL, e->source_dir, promote), 0);
    e->pg = f->standby; /* the test's own SQL goes there from now on */
    fprintf(stderr, "scale: the standby was promoted\n");
    if (nst_log_wait(e, mark, "database connected", SC_WAIT_MS) != 0)
        nst_fail(e, "napsyncd did not reconnect to the promoted standby");
    expect_keepalive(f);
    sc_load_wait_progress(f->load, PROGRESS, "after the promotion");
    assert_true(nst_daemon_running(e));

    sc_load_finish(f->load);
    sc_load_check(f->load, e);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_primary_dies_standby_promoted, NULL, test_teardown),
    };
    return cmocka_run_group_tests_name("failover", tests, group_setup, group_teardown);
}
