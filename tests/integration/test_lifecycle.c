/* Lifecycle: the daemon rides out PostgreSQL restarts and outages, reloads
 * its certificate on SIGHUP, and drains on SIGTERM.
 *
 * This program runs its own PostgreSQL cluster (tests/lib/pg.sh), so that
 * stopping and restarting it disturbs no other test. Each test starts its own
 * napsyncd and the teardown stops it, expecting a clean exit. */
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

/* The pool reconnects with a backoff of up to 5 s; allow several rounds. */
#define RECOVER_MS          30000
#define SHUTDOWN_TIMEOUT_MS 5000
#define POLL_MS             100

typedef struct {
    char pg_root[NST_PATH]; /* temporary directory holding the cluster */
    nst_pg pg;
    bool pg_started;
    nst_env *e;
    nst_device dev;
    char server_cert[NST_PATH]; /* the first server certificate, as issued */
    char server_key[NST_PATH];
} fixture;

static const char *const flags[] = {"--db-queue-timeout-ms", "1000", "--shutdown-timeout-ms",
                                    "5000", NULL};

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    snprintf(f->pg_root, sizeof(f->pg_root), "/tmp/nst-pg-XXXXXX");
    if (mkdtemp(f->pg_root) == NULL) {
        f->pg_root[0] = '\0';
        return -1;
    }
    char dir[NST_PATH];
    if (nst_path_join(dir, f->pg_root, "pg") != 0 || nst_pg_private_start(&f->pg, dir) != 0)
        return -1;
    f->pg_started = true;
    f->e = nst_env_new("lifecycle", &f->pg);
    if (f->e == NULL)
        return -1;
    nst_env *e = f->e;
    /* The first start applies the migrations the registration needs. */
    if (nst_device_issue(e, false, "ops-laptop", &f->dev) != 0 ||
        nst_server_cert_issue(e, "server", f->server_cert, f->server_key) != 0 ||
        nst_daemon_start(e, flags) != 0 ||
        nst_device_register(e, "mogender", "Operations Desk", "coordinator", &f->dev) != 0 ||
        nst_daemon_stop(e, SIGTERM, NST_STOP_MS) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f == NULL)
        return 0;
    nst_env_free(f->e);
    if (f->pg_started && nst_pg_ctl(&f->pg, "stop") != 0)
        fprintf(stderr, "group teardown: could not stop the private PostgreSQL\n");
    if (getenv("NST_KEEP") == NULL)
        nst_rmtree(f->pg_root);
    free(f);
    return 0;
}

static int setup(void **state)
{
    fixture *f = *state;
    nst_test_begin(f->e);
    /* Each test starts from the first certificate, whatever the last one did. */
    if (nst_server_cert_install(f->e, f->server_cert, f->server_key) != 0 ||
        nst_daemon_start(f->e, flags) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nst_test_end(f->e);
    int rc = 0;
    /* A test that failed with PostgreSQL stopped must not break the next. */
    if (nst_pg_ctl(&f->pg, "start") != 0)
        rc = -1;
    if (f->e->pid > 0 && nst_daemon_stop(f->e, SIGTERM, SHUTDOWN_TIMEOUT_MS + NST_WAIT_MS) != 0)
        rc = -1;
    return rc;
}

/* New sessions until one authenticates; only "unavailable" may be retried.
 * The bystander, if any, is pinged between attempts. */
static ns_client *connect_when_recovered(fixture *f, ns_client *bystander)
{
    uint64_t deadline = nst_now_ms() + RECOVER_MS;
    ns_error err;
    int attempts = 0;
    for (;;) {
        ns_client *c;
        int rc = nst_client_connect(f->e, f->dev.cert, f->dev.key, f->e->ca_cert, &c, &err);
        attempts++;
        if (rc == NS_OK)
            return c;
        if (rc != NS_ERR_UNAVAILABLE)
            nst_fail(f->e, "connecting after the database came back: %s: %s",
                     ns_status_name((ns_status)rc), err.message);
        if (nst_now_ms() >= deadline)
            nst_fail(f->e, "still %s after %d attempts in %d ms: %s", ns_status_name((ns_status)rc),
                     attempts, RECOVER_MS, err.message);
        if (bystander)
            nst_must_ping(f->e, bystander);
        nst_sleep_ms(250);
    }
}

static void test_postgres_restart(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ns_client *b = nst_must_connect(e, &f->dev);
    nst_must_ping(e, b);

    char log[NST_PATH];
    assert_int_equal(nst_path_join(log, e->dir, "pg-restart.log"), 0);
    pid_t pid = nst_pg_ctl_async(&f->pg, "restart", log);
    assert_true(pid > 0);
    /* The established session answers while PostgreSQL goes down and up:
     * a ping needs no database. */
    int status = -1, pings = 0;
    uint64_t deadline = nst_now_ms() + 120000;
    while (nst_wait_pid(pid, POLL_MS, &status) != 0) {
        if (nst_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            (void)nst_wait_pid(pid, NST_WAIT_MS, &status);
            nst_fail(e, "pg.sh restart did not finish");
        }
        nst_must_ping(e, b);
        pings++;
    }
    if (status != 0)
        nst_fail(e, "pg.sh restart failed with status %d (see %s)", status, log);
    nst_must_ping(e, b);

    ns_client *c = connect_when_recovered(f, b);
    nst_must_ping(e, c);
    nst_must_ping(e, b);
    print_message("pinged %d time(s) during the restart\n", pings);
    nst_client_close(c);
    nst_client_close(b);
    nst_test_passed(e);
}

static void test_postgres_down_then_up(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    ns_client *b = nst_must_connect(e, &f->dev);
    if (nst_pg_ctl(&f->pg, "stop") != 0)
        nst_fail(e, "could not stop PostgreSQL");
    nst_must_ping(e, b);

    /* libnapsync: a typed "unavailable" with the server's code. */
    ns_client *c;
    ns_error err;
    int rc = nst_client_connect(e, f->dev.cert, f->dev.key, e->ca_cert, &c, &err);
    if (rc == NS_OK) {
        nst_client_close(c);
        nst_fail(e, "a session authenticated while PostgreSQL was stopped");
    }
    if (rc != NS_ERR_UNAVAILABLE ||
        err.server_code != NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE)
        nst_fail(e, "expected unavailable (server code 9), got %s (server code %d): %s",
                 ns_status_name((ns_status)rc), err.server_code, err.message);

    /* On the wire: Error UNAVAILABLE for the Hello, with a retry hint. */
    nst_raw r;
    nst_must_raw_tls(e, &r, &f->dev);
    assert_int_equal(nst_raw_send_hello(&r, 21, 1, 1), 0);
    ns_envelope *env = nst_expect_frame(e, &r, NAPSYNC__V1__ENVELOPE__BODY_ERROR);
    assert_int_equal(env->request_id, 21);
    assert_int_equal(env->error->code, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE);
    assert_true(env->error->retry_after_ms > 0);
    ns_envelope_free(env);
    nst_raw_close(&r);
    nst_must_ping(e, b);

    if (nst_pg_ctl(&f->pg, "start") != 0)
        nst_fail(e, "could not start PostgreSQL again");
    c = connect_when_recovered(f, b);
    nst_must_ping(e, c);
    nst_client_close(c);
    nst_must_ping(e, b);
    nst_client_close(b);
    nst_test_passed(e);
}

/* The server certificate a new TLS connection is shown. */
static void peer_fingerprint(fixture *f, char fp[65])
{
    nst_raw r;
    nst_must_raw_tls(f->e, &r, &f->dev);
    memcpy(fp, r.peer_fp, 65);
    nst_raw_close(&r);
}

static void test_sighup_reloads_certificate(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char old_fp[65], new_fp[65], seen[65];
    assert_int_equal(nst_cert_fingerprint(f->server_cert, old_fp), 0);
    peer_fingerprint(f, seen);
    assert_string_equal(seen, old_fp);
    ns_client *b = nst_must_connect(e, &f->dev);

    /* A new certificate from the same CA (new key, new serial). */
    char cert2[NST_PATH], key2[NST_PATH];
    assert_int_equal(nst_server_cert_issue(e, "server-renewed", cert2, key2), 0);
    assert_int_equal(nst_cert_fingerprint(cert2, new_fp), 0);
    assert_string_not_equal(new_fp, old_fp);
    assert_int_equal(nst_server_cert_install(e, cert2, key2), 0);
    size_t from = nst_log_size(e);
    assert_int_equal(nst_daemon_signal(e, SIGHUP), 0);
    if (nst_log_wait(e, from, "reloaded TLS", NST_WAIT_MS) != 0)
        nst_fail(e, "no reload logged after SIGHUP");
    peer_fingerprint(f, seen);
    assert_string_equal(seen, new_fp);
    ns_client *c = nst_must_connect(e, &f->dev);
    nst_must_ping(e, c);
    nst_client_close(c);
    nst_must_ping(e, b); /* a session from before the reload is unaffected */

    /* An unusable certificate file: the daemon keeps what it has. */
    char junk[NST_PATH];
    assert_int_equal(nst_path_join(junk, e->dir, "junk.crt"), 0);
    FILE *j = fopen(junk, "w");
    assert_non_null(j);
    fputs("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n", j);
    fclose(j);
    assert_int_equal(nst_server_cert_install(e, junk, key2), 0);
    from = nst_log_size(e);
    assert_int_equal(nst_daemon_signal(e, SIGHUP), 0);
    if (nst_log_wait(e, from, "keeping the previous certificates", NST_WAIT_MS) != 0)
        nst_fail(e, "no refused reload logged after SIGHUP with a broken certificate");
    assert_true(nst_daemon_running(e));
    peer_fingerprint(f, seen);
    assert_string_equal(seen, new_fp);
    c = nst_must_connect(e, &f->dev);
    nst_must_ping(e, c);
    nst_client_close(c);
    nst_must_ping(e, b);
    nst_client_close(b);
    nst_test_passed(e);
}

static void expect_shutdown_goodbye(fixture *f, nst_raw *r)
{
    ns_envelope *env = nst_expect_frame(f->e, r, NAPSYNC__V1__ENVELOPE__BODY_GOODBYE);
    int reason = env->goodbye->reason;
    uint64_t rid = env->request_id;
    ns_envelope_free(env);
    if (reason != NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_SHUTTING_DOWN || rid != 0)
        nst_fail(f->e,
                 "expected Goodbye SHUTTING_DOWN with request id 0, got reason %d, "
                 "request id %llu",
                 reason, (unsigned long long)rid);
    nst_expect_closed(f->e, r);
}

static void test_sigterm_drains_and_exits_zero(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw s1, s2;
    nst_must_raw_auth(e, &s1, &f->dev, 1);
    nst_must_raw_auth(e, &s2, &f->dev, 1);
    nst_must_raw_ping(e, &s1, 2);
    nst_must_raw_ping(e, &s2, 2);
    uint16_t port = e->port;

    assert_int_equal(nst_daemon_signal(e, SIGTERM), 0);
    expect_shutdown_goodbye(f, &s1);
    expect_shutdown_goodbye(f, &s2);
    nst_raw_close(&s1);
    nst_raw_close(&s2);

    int status;
    if (nst_daemon_wait_exit(e, SHUTDOWN_TIMEOUT_MS + NST_WAIT_MS, &status) != 0)
        nst_fail(e, "napsyncd did not exit after SIGTERM");
    if (status != 0)
        nst_fail(e, "napsyncd exited with status %d after SIGTERM", status);
    int fd = nst_tcp_connect(port);
    if (fd >= 0) {
        close(fd);
        nst_fail(e, "port %u still accepts connections after exit", port);
    }
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_postgres_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_postgres_down_then_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sighup_reloads_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_drains_and_exits_zero, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration: lifecycle", tests, group_setup,
                                       group_teardown);
}
