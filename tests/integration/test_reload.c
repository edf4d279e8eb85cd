/* SIGHUP reloads the configuration file, not only the certificates: what can
 * change while napsyncd runs (the TLS files, the log level, the limits of
 * new sessions) applies at once, to new sessions only; what cannot (the
 * listening address, the database) is reported and waits for a restart; a
 * configuration that does not read, validate or load changes nothing. Open
 * sessions keep serving throughout.
 *
 * The daemon runs with --config FILE and no other flag (a flag would
 * override the file), on its own directory, CA and database. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* The role the harness creates for napsyncd (harness.c): not a superuser. */
#define DAEMON_ROLE    "napsyncd"
#define START_ATTEMPTS 3

typedef struct {
    nst_env *e;
    nst_device dev;
    char conf[NST_PATH];
    char cert[NST_PATH]; /* what tls_cert and tls_key name now */
    char key[NST_PATH];
    char log_level[8];
    uint32_t max_frame_size;
} fixture;
NST_FIXTURE_CHECK(fixture);

/* Writes the configuration file (by rename, as an administrator should),
 * with the fixture's values, then extra lines (may be NULL). */
static int write_config(const fixture *f, const char *extra)
{
    const nst_env *e = f->e;
    char tmp[NST_PATH];
    if (snprintf(tmp, sizeof(tmp), "%s.new", f->conf) >= (int)sizeof(tmp))
        return -1;
    FILE *out = fopen(tmp, "w");
    if (out == NULL)
        return -1;
    fprintf(out,
            "# test_reload\n"
            "listen = 127.0.0.1:%u\n"
            "tls_cert = %s\n"
            "tls_key = %s\n"
            "tls_ca = %s\n"
            "database = host=%s port=%s dbname=%s user=" DAEMON_ROLE "\n"
            "sql_dir = %s/sql\n"
            "log_level = %s\n"
            "max_frame_size = %u\n"
            "http_listen = off\n"
            "%s",
            (unsigned)e->port, f->cert, f->key, e->ca_cert, e->pg.host, e->pg.port, e->dbname,
            e->source_dir, f->log_level, (unsigned)f->max_frame_size, extra ? extra : "");
    if (fclose(out) != 0 || rename(tmp, f->conf) != 0)
        return -1;
    return 0;
}

/* napsyncd --config FILE, on a fresh port; waits until it listens. */
static int start_daemon(fixture *f)
{
    nst_env *e = f->e;
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        e->port = nst_free_port();
        if (e->port == 0 || write_config(f, NULL) != 0)
            return -1;
        size_t from = nst_log_size(e);
        char *argv[] = {e->napsyncd, "--config", f->conf, NULL};
        pid_t pid = nst_spawn(argv, e->log_path);
        if (pid < 0)
            return -1;
        e->pid = pid;
        char ready[64];
        snprintf(ready, sizeof(ready), "listening on 127.0.0.1:%u", (unsigned)e->port);
        if (nst_log_wait(e, from, ready, NST_WAIT_MS) == 0)
            return 0;
        bool taken = nst_log_wait(e, from, "cannot listen", 0) == 0;
        if (nst_daemon_running(e))
            (void)nst_daemon_stop(e, SIGKILL, NST_WAIT_MS);
        if (!taken) {
            nst_log_tail(e, 40);
            return -1;
        }
    }
    return -1;
}

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    f->e = nst_env_new("reload", NULL);
    if (f->e == NULL)
        return -1;
    nst_env *e = f->e;
    snprintf(f->cert, sizeof(f->cert), "%s", e->server_cert);
    snprintf(f->key, sizeof(f->key), "%s", e->server_key);
    snprintf(f->log_level, sizeof(f->log_level), "info");
    f->max_frame_size = 65536;
    /* The harness's start migrates the database and loads the demo
     * organisations; then the daemon under test runs from the file alone. */
    if (nst_path_join(f->conf, e->dir, "napsyncd.conf") != 0 ||
        nst_device_issue(e, false, "reload-desk", &f->dev) != 0 || nst_daemon_start(e, NULL) != 0 ||
        nst_device_register(e, "mogender", "Reload Desk", "coordinator", &f->dev) != 0 ||
        nst_daemon_stop(e, SIGTERM, NST_STOP_MS) != 0 || start_daemon(f) != 0)
        return -1;
    return 0;
}

/* Sends SIGHUP and waits for the log line that says how it ended. */
static void reload(fixture *f, const char *expect)
{
    nst_env *e = f->e;
    size_t from = nst_log_size(e);
    assert_int_equal(nst_daemon_signal(e, SIGHUP), 0);
    if (nst_log_wait(e, from, expect, NST_WAIT_MS) != 0)
        nst_fail(e, "after SIGHUP, no log line with \"%s\"", expect);
}

/* SIGHUP, and the reload is refused with a message holding detail. */
static void refused(fixture *f, const char *detail)
{
    size_t from = nst_log_size(f->e);
    assert_int_equal(nst_daemon_signal(f->e, SIGHUP), 0);
    if (nst_log_wait(f->e, from, detail, NST_WAIT_MS) != 0)
        nst_fail(f->e, "after SIGHUP, no log line with \"%s\"", detail);
    const char *line[] = {"reload refused: ", detail, NULL};
    if (!nst_log_has_line(f->e, line))
        nst_fail(f->e, "\"%s\" is not logged as a refused reload", detail);
}

/* TLS and Hello on a new session: the certificate it was shown, and the
 * max_frame_size its Welcome announced. */
static uint32_t open_session(fixture *f, nst_raw *r, uint64_t rid, char fp[65])
{
    nst_must_raw_tls(f->e, r, &f->dev);
    memcpy(fp, r->peer_fp, 65);
    if (nst_raw_send_hello(r, rid, 1, 1) != 0)
        nst_fail(f->e, "sending Hello failed: %s", r->error);
    ns_envelope *env = nst_expect_frame(f->e, r, NAPSYNC__V1__ENVELOPE__BODY_WELCOME);
    uint32_t max = env->welcome->max_frame_size;
    ns_envelope_free(env);
    return max;
}

/* A Ping of 100000 bytes: past 65536, within 131072. */
#define BIG_PING 100000

static void test_reload_applies_runtime_settings(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char old_fp[65], fp[65];
    nst_raw a;
    assert_int_equal(open_session(f, &a, 1, old_fp), 65536);
    nst_must_raw_ping(e, &a, 2);

    /* A renewed certificate under new file names, a larger frame limit
     * and debug logging, all in the file. */
    char cert2[NST_PATH], key2[NST_PATH], new_fp[65];
    assert_int_equal(nst_server_cert_issue(e, "server-renewed", cert2, key2), 0);
    assert_int_equal(nst_cert_fingerprint(cert2, new_fp), 0);
    assert_string_not_equal(new_fp, old_fp);
    snprintf(f->cert, sizeof(f->cert), "%s", cert2);
    snprintf(f->key, sizeof(f->key), "%s", key2);
    snprintf(f->log_level, sizeof(f->log_level), "debug");
    f->max_frame_size = 131072;
    assert_int_equal(write_config(f, NULL), 0);
    size_t from = nst_log_size(e);
    reload(f, "reloaded TLS certificate, key and CA, and the configuration (4 setting(s) changed)");
    const char *frame_change[] = {"reload: max_frame_size changed from 65536 to 131072", NULL};
    const char *level_change[] = {"reload: log_level changed from info to debug", NULL};
    if (!nst_log_has_line(e, frame_change) || !nst_log_has_line(e, level_change))
        nst_fail(e, "the reload did not log each change");

    /* A new session: the new certificate and the new limit. */
    nst_raw b;
    assert_int_equal(open_session(f, &b, 1, fp), 131072);
    assert_string_equal(fp, new_fp);
    /* Debug logging now: the new session's TLS step is logged. */
    if (nst_log_wait(e, from, "TLS established", NST_WAIT_MS) != 0)
        nst_fail(e, "no debug line after log_level changed to debug");
    char big[BIG_PING];
    memset(big, 'x', sizeof(big));
    assert_int_equal(nst_raw_send_ping(&b, 2, big, sizeof(big)), 0);
    /* Within the frame limit: refused by the Ping's own rule, not fatal. */
    nst_expect_error(e, &b, 2, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, false);
    nst_must_raw_ping(e, &b, 3);

    /* The session from before: still served, with the limit it began with. */
    nst_must_raw_ping(e, &a, 3);
    assert_int_equal(nst_raw_send_ping(&a, 4, big, sizeof(big)), 0);
    nst_expect_fatal_error(e, &a, 0, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE);
    nst_raw_close(&a);
    nst_raw_close(&b);
    nst_test_passed(e);
}

/* Each bad configuration is refused whole: the certificate, the limit and
 * the log level stay what they were, and the daemon keeps serving. */
static void test_bad_configuration_changes_nothing(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char fp[65], expect_fp[65];
    assert_int_equal(nst_cert_fingerprint(f->cert, expect_fp), 0);
    uint32_t expect_max = f->max_frame_size;
    nst_raw a;
    assert_int_equal(open_session(f, &a, 1, fp), expect_max);

    fixture bad = *f;
    bad.max_frame_size = 4096;
    assert_int_equal(nst_path_join(bad.key, e->dir, "no-such.key"), 0);
    assert_int_equal(write_config(&bad, NULL), 0);
    refused(f, "keeping the previous certificates and configuration");

    assert_int_equal(write_config(f, "max_sessions = lots\n"), 0);
    refused(f, "max_sessions must be a whole number");

    assert_int_equal(write_config(f, "frobnicate = yes\n"), 0);
    refused(f, "unknown setting 'frobnicate'");

    assert_int_equal(unlink(f->conf), 0);
    refused(f, "cannot open");

    assert_true(nst_daemon_running(e));
    nst_raw b;
    assert_int_equal(open_session(f, &b, 1, fp), expect_max);
    assert_string_equal(fp, expect_fp);
    nst_must_raw_ping(e, &a, 2);
    nst_must_raw_ping(e, &b, 2);
    nst_raw_close(&a);
    nst_raw_close(&b);
    assert_int_equal(write_config(f, NULL), 0);
    nst_test_passed(e);
}

/* What was set up at start is reported and kept until a restart; the rest
 * of the same file still applies. */
static void test_start_settings_wait_for_a_restart(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char fp[65];
    nst_raw a;
    (void)open_session(f, &a, 1, fp);

    uint16_t port = e->port;
    uint16_t other = nst_free_port();
    assert_true(other != 0 && other != port);
    e->port = other;
    f->max_frame_size = 262144;
    assert_int_equal(write_config(f, "db_pool_size = 2\n"), 0);
    e->port = port;
    reload(f, "reloaded TLS certificate, key and CA, and the configuration (3 setting(s) changed)");
    char listen_change[160];
    snprintf(listen_change, sizeof(listen_change),
             "reload: listen changed from 127.0.0.1:%u to 127.0.0.1:%u; it takes effect at the "
             "next restart",
             (unsigned)port, (unsigned)other);
    const char *lines[] = {listen_change, NULL};
    const char *pool[] = {"reload: db_pool_size changed from 4 to 2; it takes effect at the next "
                          "restart",
                          NULL};
    if (!nst_log_has_line(e, lines) || !nst_log_has_line(e, pool))
        nst_fail(e, "the reload did not report the settings that wait for a restart");

    /* Still on the old port, with the new limit. */
    nst_raw b;
    assert_int_equal(open_session(f, &b, 1, fp), 262144);
    nst_must_raw_ping(e, &a, 2);
    nst_must_raw_ping(e, &b, 2);
    nst_raw_close(&a);
    nst_raw_close(&b);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_reload_applies_runtime_settings),
        NST_TEST(test_bad_configuration_changes_nothing),
        NST_TEST(test_start_settings_wait_for_a_restart),
    };
    return cmocka_run_group_tests_name("integration: reload", tests, group_setup,
                                       nst_group_teardown);
}
