/* What a reload (SIGHUP) takes from a configuration read again:
 * ns_config_update in daemon/config.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "version.h"

#define MAX_CHANGES 16

typedef struct {
    char key[32];
    char old_value[300];
    char new_value[300];
    bool shown; /* the values were given (not a secret) */
    bool applied;
} change;

typedef struct {
    ns_config live, fresh;
    change changes[MAX_CHANGES];
    int nchanges;
} fixture;

static void set(ns_config *cfg, const char *key, const char *value)
{
    char err[256];
    if (ns_config_set(cfg, key, value, err, sizeof(err)) != 0)
        fail_msg("%s = %s refused: %s", key, value, err);
}

/* Both as a daemon would have them: what is required, set alike. */
static void base(ns_config *cfg)
{
    ns_config_init(cfg);
    set(cfg, "tls_cert", "/etc/napsync/tls/napsyncd.crt");
    set(cfg, "tls_key", "/etc/napsync/tls/napsyncd.key");
    set(cfg, "tls_ca", "/etc/napsync/tls/devices-ca.crt");
    set(cfg, "database", "host=db dbname=napsync user=napsync password=s3cret");
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    base(&f->live);
    base(&f->fresh);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ns_config_free(&f->live);
    ns_config_free(&f->fresh);
    free(f);
    return 0;
}

static void record(void *ud, const char *key, const char *old_value, const char *new_value,
                   bool applied)
{
    fixture *f = ud;
    assert_true(f->nchanges < MAX_CHANGES);
    change *c = &f->changes[f->nchanges++];
    snprintf(c->key, sizeof(c->key), "%s", key);
    /* Both or neither: a secret hides both values. */
    assert_true((old_value == NULL) == (new_value == NULL));
    c->shown = old_value != NULL;
    snprintf(c->old_value, sizeof(c->old_value), "%s", old_value ? old_value : "");
    snprintf(c->new_value, sizeof(c->new_value), "%s", new_value ? new_value : "");
    c->applied = applied;
}

static const change *find(const fixture *f, const char *key)
{
    for (int i = 0; i < f->nchanges; i++)
        if (strcmp(f->changes[i].key, key) == 0)
            return &f->changes[i];
    fail_msg("no change reported for %s", key);
    return NULL;
}

static void test_same_settings_change_nothing(void **state)
{
    fixture *f = *state;
    assert_int_equal(ns_config_update(&f->live, &f->fresh, record, f), 0);
    assert_int_equal(f->nchanges, 0);
}

static void test_runtime_settings_are_applied(void **state)
{
    fixture *f = *state;
    set(&f->fresh, "tls_cert", "/etc/napsync/tls/renewed.crt");
    set(&f->fresh, "log_level", "debug");
    set(&f->fresh, "max_frame_size", "65536");
    set(&f->fresh, "max_sessions", "20");
    set(&f->fresh, "handshake_timeout_ms", "2000");
    set(&f->fresh, "idle_timeout_ms", "0");
    set(&f->fresh, "shutdown_timeout_ms", "500");
    assert_int_equal(ns_config_update(&f->live, &f->fresh, record, f), 7);
    assert_int_equal(f->nchanges, 7);

    assert_string_equal(f->live.tls_cert, "/etc/napsync/tls/renewed.crt");
    assert_int_equal(f->live.log_level, NS_LOG_DEBUG);
    assert_int_equal(f->live.max_frame_size, 65536);
    assert_int_equal(f->live.max_sessions, 20);
    assert_int_equal(f->live.handshake_timeout_ms, 2000);
    assert_int_equal(f->live.idle_timeout_ms, 0);
    assert_int_equal(f->live.shutdown_timeout_ms, 500);
    /* fresh now holds the string live gave up, for ns_config_free. */
    assert_string_equal(f->fresh.tls_cert, "/etc/napsync/tls/napsyncd.crt");

    const change *c = find(f, "tls_cert");
    assert_true(c->applied && c->shown);
    assert_string_equal(c->old_value, "/etc/napsync/tls/napsyncd.crt");
    assert_string_equal(c->new_value, "/etc/napsync/tls/renewed.crt");
    c = find(f, "log_level");
    assert_true(c->applied);
    assert_string_equal(c->old_value, "info");
    assert_string_equal(c->new_value, "debug");
    c = find(f, "max_frame_size");
    assert_true(c->applied);
    assert_string_equal(c->old_value, "1048576");
    assert_string_equal(c->new_value, "65536");

    /* Applied once: reading the same file again changes nothing more. */
    ns_config again;
    base(&again);
    set(&again, "tls_cert", "/etc/napsync/tls/renewed.crt");
    set(&again, "log_level", "debug");
    set(&again, "max_frame_size", "65536");
    set(&again, "max_sessions", "20");
    set(&again, "handshake_timeout_ms", "2000");
    set(&again, "idle_timeout_ms", "0");
    set(&again, "shutdown_timeout_ms", "500");
    f->nchanges = 0;
    assert_int_equal(ns_config_update(&f->live, &again, record, f), 0);
    ns_config_free(&again);
}

/* The listener, the pool and the schema were set up at start: a change
 * is reported and waits for a restart. */
static void test_start_settings_wait_for_a_restart(void **state)
{
    fixture *f = *state;
    set(&f->fresh, "listen", "[::1]:8443");
    set(&f->fresh, "sql_dir", "/srv/napsync/sql");
    set(&f->fresh, "db_pool_size", "8");
    set(&f->fresh, "migrate_on_start", "false");
    set(&f->fresh, "database", "host=db2 dbname=napsync user=napsync password=other");
    assert_int_equal(ns_config_update(&f->live, &f->fresh, record, f), 5);

    assert_string_equal(f->live.listen_host, "127.0.0.1");
    assert_int_equal(f->live.listen_port, 7443);
    assert_string_equal(f->live.sql_dir, NS_SQL_INSTALL_DIR);
    assert_int_equal(f->live.db_pool_size, 4);
    assert_true(f->live.migrate_on_start);
    assert_string_equal(f->live.database, "host=db dbname=napsync user=napsync password=s3cret");

    const change *c = find(f, "listen");
    assert_false(c->applied);
    assert_string_equal(c->old_value, "127.0.0.1:7443");
    assert_string_equal(c->new_value, "[::1]:8443");
    c = find(f, "db_pool_size");
    assert_false(c->applied);
    assert_string_equal(c->new_value, "8");
    assert_false(find(f, "sql_dir")->applied);
    assert_false(find(f, "migrate_on_start")->applied);
    /* The connection string may hold a password: never shown. */
    c = find(f, "database");
    assert_false(c->applied);
    assert_false(c->shown);
}

static void test_report_may_be_null(void **state)
{
    fixture *f = *state;
    set(&f->fresh, "log_level", "error");
    set(&f->fresh, "db_pool_size", "2");
    assert_int_equal(ns_config_update(&f->live, &f->fresh, NULL, NULL), 2);
    assert_int_equal(f->live.log_level, NS_LOG_ERROR);
    assert_int_equal(f->live.db_pool_size, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_settings_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_settings_are_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_settings_wait_for_a_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_may_be_null, setup, teardown),
    };
    return cmocka_run_group_tests_name("unit: configuration reload", tests, NULL, NULL);
}
