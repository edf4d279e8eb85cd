/* napsyncd's settings: daemon/config.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "frame.h"

typedef struct {
    ns_config cfg;
    char err[1024];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    ns_config_init(&f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ns_config_free(&f->cfg);
    free(f);
    return 0;
}

static void set_ok(fixture *f, const char *key, const char *value)
{
    f->err[0] = '\0';
    if (ns_config_set(&f->cfg, key, value, f->err, sizeof(f->err)) != 0)
        fail_msg("%s = '%s' refused: %s", key, value, f->err);
}

/* Refused, with a message that names the setting. */
static void set_bad(fixture *f, const char *key, const char *value)
{
    f->err[0] = '\0';
    if (ns_config_set(&f->cfg, key, value, f->err, sizeof(f->err)) != -1)
        fail_msg("%s = '%s' accepted", key, value);
    if (strstr(f->err, key) == NULL)
        fail_msg("message for %s = '%s' does not name it: \"%s\"", key, value, f->err);
}

#define TEMP_TEMPLATE "/tmp/ns_test_config_XXXXXX"

/* Writes text to a new temporary file, loads it with ns_config_load_file
 * and removes the file again (before any assertion can skip that). Its name
 * is copied to path unless that is NULL, for the messages that must quote it. */
static int load_temp_file(fixture *f, const char *text, char path[sizeof(TEMP_TEMPLATE)])
{
    char name[] = TEMP_TEMPLATE;
    int fd = mkstemp(name);
    assert_true(fd >= 0);
    if (path != NULL)
        memcpy(path, name, sizeof(name));
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    bool written = close(fd) == 0 && w == (ssize_t)len;
    int rc = written ? ns_config_load_file(&f->cfg, name, f->err, sizeof(f->err)) : -1;
    unlink(name);
    if (!written)
        fail_msg("writing %zu bytes to %s failed (wrote %zd)", len, name, w);
    return rc;
}

static void set_required(fixture *f)
{
    set_ok(f, "tls_cert", "/etc/napsync/server.crt");
    set_ok(f, "tls_key", "/etc/napsync/server.key");
    set_ok(f, "tls_ca", "/etc/napsync/ca.crt");
    set_ok(f, "database", "host=/run/postgresql dbname=napsync");
}

/* ---- defaults ------------------------------------------------------------ */

static void test_defaults(void **state)
{
    fixture *f = *state;
    const ns_config *c = &f->cfg;
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 7443);
    assert_int_equal(c->max_frame_size, 1048576);
    assert_int_equal(c->max_frame_size, NS_FRAME_DEFAULT_MAX);
    assert_int_equal(c->db_pool_size, 4);
    assert_int_equal(c->db_queue_timeout_ms, 5000);
    assert_int_equal(c->max_sessions, 10000);
    assert_int_equal(c->handshake_timeout_ms, 10000);
    assert_int_equal(c->idle_timeout_ms, 300000);
    assert_int_equal(c->max_sessions_per_device, 8);
    assert_int_equal(c->max_queued_bytes, 4194304);
    assert_int_equal(c->send_timeout_ms, 60000);
    assert_int_equal(c->max_push_mutations, 1000);
    assert_int_equal(c->max_pull_page_size, 5000);
    assert_int_equal(c->max_subscriptions, 1000);
    assert_int_equal(c->shutdown_timeout_ms, 10000);
    assert_int_equal(c->log_level, NS_LOG_INFO);
    assert_true(c->migrate_on_start);
    /* nothing that identifies a deployment has a default */
    assert_null(c->tls_cert);
    assert_null(c->tls_key);
    assert_null(c->tls_ca);
    assert_null(c->database);
    /* migrations default to an installed, absolute location */
    assert_non_null(c->sql_dir);
    assert_int_equal(c->sql_dir[0], '/');
}

/* Each default is itself a value the setter accepts, so the defaults can
 * never be something a config file could not say. */
static void test_defaults_are_settable(void **state)
{
    fixture *f = *state;
    char v[32];
    set_ok(f, "listen", "127.0.0.1:7443");
#define RESET_U32(field)                                                                           \
    do {                                                                                           \
        snprintf(v, sizeof(v), "%u", (unsigned)f->cfg.field);                                      \
        set_ok(f, #field, v);                                                                      \
    } while (0)
    RESET_U32(db_pool_size);
    RESET_U32(db_queue_timeout_ms);
    RESET_U32(max_frame_size);
    RESET_U32(max_sessions);
    RESET_U32(handshake_timeout_ms);
    RESET_U32(idle_timeout_ms);
    RESET_U32(shutdown_timeout_ms);
    RESET_U32(max_sessions_per_device);
    RESET_U32(max_queued_bytes);
    RESET_U32(send_timeout_ms);
    RESET_U32(max_push_mutations);
    RESET_U32(max_pull_page_size);
    RESET_U32(max_subscriptions);
#undef RESET_U32
}

/* ---- every key ------------------------------------------------------------ */

static void test_every_key_settable(void **state)
{
    fixture *f = *state;
    const ns_config *c = &f->cfg;
    set_ok(f, "listen", "[::1]:8443");
    assert_string_equal(c->listen_host, "::1");
    assert_int_equal(c->listen_port, 8443);
    set_ok(f, "tls_cert", "/a/cert.pem");
    assert_string_equal(c->tls_cert, "/a/cert.pem");
    set_ok(f, "tls_key", "/a/key.pem");
    assert_string_equal(c->tls_key, "/a/key.pem");
    set_ok(f, "tls_ca", "/a/ca.pem");
    assert_string_equal(c->tls_ca, "/a/ca.pem");
    set_ok(f, "database", "host=db port=5433 dbname=napsync");
    assert_string_equal(c->database, "host=db port=5433 dbname=napsync");
    set_ok(f, "sql_dir", "/opt/napsync/sql");
    assert_string_equal(c->sql_dir, "/opt/napsync/sql");
    set_ok(f, "migrate_on_start", "false");
    assert_false(c->migrate_on_start);
    set_ok(f, "migrate_on_start", "yes");
    assert_true(c->migrate_on_start);
    set_ok(f, "db_pool_size", "8");
    assert_int_equal(c->db_pool_size, 8);
    set_ok(f, "db_queue_timeout_ms", "1500");
    assert_int_equal(c->db_queue_timeout_ms, 1500);
    set_ok(f, "max_frame_size", "65536");
    assert_int_equal(c->max_frame_size, 65536);
    set_ok(f, "max_sessions", "123");
    assert_int_equal(c->max_sessions, 123);
    set_ok(f, "handshake_timeout_ms", "2500");
    assert_int_equal(c->handshake_timeout_ms, 2500);
    set_ok(f, "idle_timeout_ms", "0");
    assert_int_equal(c->idle_timeout_ms, 0);
    set_ok(f, "shutdown_timeout_ms", "20000");
    assert_int_equal(c->shutdown_timeout_ms, 20000);
    set_ok(f, "max_sessions_per_device", "2");
    assert_int_equal(c->max_sessions_per_device, 2);
    set_ok(f, "max_queued_bytes", "65536");
    assert_int_equal(c->max_queued_bytes, 65536);
    set_ok(f, "send_timeout_ms", "0");
    assert_int_equal(c->send_timeout_ms, 0);
    set_ok(f, "max_push_mutations", "10");
    assert_int_equal(c->max_push_mutations, 10);
    set_ok(f, "max_pull_page_size", "100");
    assert_int_equal(c->max_pull_page_size, 100);
    set_ok(f, "max_subscriptions", "50");
    assert_int_equal(c->max_subscriptions, 50);
    set_ok(f, "log_level", "debug");
    assert_int_equal(c->log_level, NS_LOG_DEBUG);
    set_ok(f, "log_level", "warn");
    assert_int_equal(c->log_level, NS_LOG_WARN);
    set_ok(f, "log_level", "error");
    assert_int_equal(c->log_level, NS_LOG_ERROR);
    set_ok(f, "log_level", "info");
    assert_int_equal(c->log_level, NS_LOG_INFO);
}

static void test_unknown_key(void **state)
{
    fixture *f = *state;
    static const char *bad[] = {"lisen", "max_frame", "LISTEN", "listen ", "", "tls-cert"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f->err[0] = '\0';
        assert_int_equal(ns_config_set(&f->cfg, bad[i], "1", f->err, sizeof(f->err)), -1);
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
        if (strstr(f->err, quoted) == NULL)
            fail_msg("message for unknown key \"%s\" does not name it: \"%s\"", bad[i], f->err);
    }
}

/* ---- refused values -------------------------------------------------------- */

static void test_max_frame_size_range(void **state)
{
    fixture *f = *state;
    set_bad(f, "max_frame_size", "0");
    set_bad(f, "max_frame_size", "67108865"); /* 64 MiB + 1 */
    set_bad(f, "max_frame_size", "4294967296");
    set_bad(f, "max_frame_size", "-1");
    set_bad(f, "max_frame_size", "1M");
    set_bad(f, "max_frame_size", "");
    assert_int_equal(f->cfg.max_frame_size, NS_FRAME_DEFAULT_MAX); /* unchanged */
    set_ok(f, "max_frame_size", "67108864");
    assert_int_equal(f->cfg.max_frame_size, NS_FRAME_MAX_LIMIT);
}

/* The limits whose ceiling a module enforces too may not be set above it. */
static void test_limit_ranges(void **state)
{
    fixture *f = *state;
    set_bad(f, "max_push_mutations", "0");
    set_bad(f, "max_push_mutations", "1001");
    set_bad(f, "max_pull_page_size", "0");
    set_bad(f, "max_pull_page_size", "5001");
    set_bad(f, "max_queued_bytes", "65535");
    set_bad(f, "max_sessions_per_device", "0");
    set_bad(f, "max_subscriptions", "0");
    set_ok(f, "max_push_mutations", "1000");
    set_ok(f, "max_pull_page_size", "5000");
}

static void test_db_pool_size_range(void **state)
{
    fixture *f = *state;
    set_bad(f, "db_pool_size", "0");
    set_bad(f, "db_pool_size", "65");
    set_ok(f, "db_pool_size", "1");
    assert_int_equal(f->cfg.db_pool_size, 1);
    set_ok(f, "db_pool_size", "64");
    assert_int_equal(f->cfg.db_pool_size, 64);
}

/* No number setting takes junk, a sign, or something past 32 bits. */
static void test_numbers_junk(void **state)
{
    fixture *f = *state;
    static const char *keys[] = {
        "db_pool_size",        "db_queue_timeout_ms",     "max_frame_size",
        "max_sessions",        "handshake_timeout_ms",    "idle_timeout_ms",
        "shutdown_timeout_ms", "max_sessions_per_device", "max_queued_bytes",
        "send_timeout_ms",     "max_push_mutations",      "max_pull_page_size",
        "max_subscriptions"};
    static const char *junk[] = {"",   "-1",  "+5",  "5 ",         " 5",
                                 "5x", "0x5", "5.0", "4294967296", "18446744073709551616",
                                 "ten"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        for (size_t j = 0; j < sizeof(junk) / sizeof(junk[0]); j++)
            set_bad(f, keys[k], junk[j]);
    /* and a refused value leaves the previous one in place */
    assert_int_equal(f->cfg.db_pool_size, 4);
    assert_int_equal(f->cfg.idle_timeout_ms, 300000);
}

static void test_bad_listen(void **state)
{
    fixture *f = *state;
    static const char *bad[] = {
        "",      "7443",   "localhost",  "localhost:", ":7443",       "::1:7443",
        "[::1]", "host:0", "host:65536", "host:port",  "[::1]:7443x", "127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        set_bad(f, "listen", bad[i]);
    assert_string_equal(f->cfg.listen_host, "127.0.0.1");
    assert_int_equal(f->cfg.listen_port, 7443);

    /* a host name longer than listen_host can hold */
    char big[600];
    memset(big, 'h', 500);
    strcpy(big + 500, ":7443");
    set_bad(f, "listen", big);
    assert_string_equal(f->cfg.listen_host, "127.0.0.1");
}

/* http_listen: on at 127.0.0.1:9187 unless set, HOST:PORT like listen, or off. */
static void test_http_listen(void **state)
{
    fixture *f = *state;
    const ns_config *c = &f->cfg;
    assert_true(c->http_enabled);
    assert_string_equal(c->http_host, "127.0.0.1");
    assert_int_equal(c->http_port, 9187);
    set_ok(f, "http_listen", "off");
    assert_false(c->http_enabled);
    set_ok(f, "http_listen", "[::1]:9100");
    assert_true(c->http_enabled);
    assert_string_equal(c->http_host, "::1");
    assert_int_equal(c->http_port, 9100);
    static const char *bad[] = {"", "OFF", "no", "9187", "host:0", "host:65536", "[::1]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        set_bad(f, "http_listen", bad[i]);
    assert_true(c->http_enabled);
    assert_string_equal(c->http_host, "::1");
    assert_int_equal(c->http_port, 9100);
    /* The client port is another setting. */
    assert_int_equal(c->listen_port, 7443);
}

static void test_bad_bool(void **state)
{
    fixture *f = *state;
    set_bad(f, "migrate_on_start", "maybe");
    set_bad(f, "migrate_on_start", "");
    set_bad(f, "migrate_on_start", "2");
    assert_true(f->cfg.migrate_on_start);
}

static void test_bad_log_level(void **state)
{
    fixture *f = *state;
    set_bad(f, "log_level", "verbose");
    set_bad(f, "log_level", "");
    set_bad(f, "log_level", "warning");
    set_bad(f, "log_level", "3");
    assert_int_equal(f->cfg.log_level, NS_LOG_INFO);
}

static void test_bad_strings(void **state)
{
    fixture *f = *state;
    set_bad(f, "tls_cert", "");
    set_bad(f, "sql_dir", "");
    set_bad(f, "database", "");
    assert_null(f->cfg.tls_cert);
    assert_non_null(f->cfg.sql_dir);

    /* a path longer than any file system allows */
    char *path = malloc(5000);
    assert_non_null(path);
    path[0] = '/';
    memset(path + 1, 'p', 4998);
    path[4999] = '\0';
    set_bad(f, "tls_key", path);
    assert_null(f->cfg.tls_key);
    free(path);
}

/* The connection string may hold a password: no message may repeat it. */
static void test_database_never_echoed(void **state)
{
    fixture *f = *state;
    size_t n = 20000;
    char *conninfo = malloc(n + 1);
    assert_non_null(conninfo);
    memset(conninfo, ' ', n);
    memcpy(conninfo, "host=db password=hunter2", 24);
    conninfo[n] = '\0';
    set_bad(f, "database", conninfo);
    assert_null(strstr(f->err, "hunter2"));
    assert_null(f->cfg.database);
    free(conninfo);
}

/* ---- order: later wins ----------------------------------------------------- */

static void test_later_overrides_earlier(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_temp_file(f,
                                    "max_sessions = 10\n"
                                    "tls_cert = /first.crt\n"
                                    "tls_cert = /second.crt\n"
                                    "log_level = debug\n",
                                    NULL),
                     0);
    assert_int_equal(f->cfg.max_sessions, 10);
    assert_string_equal(f->cfg.tls_cert, "/second.crt"); /* the first is freed (LSan) */
    assert_int_equal(f->cfg.log_level, NS_LOG_DEBUG);
    /* then a flag */
    set_ok(f, "max_sessions", "20");
    set_ok(f, "tls_cert", "/flag.crt");
    assert_int_equal(f->cfg.max_sessions, 20);
    assert_string_equal(f->cfg.tls_cert, "/flag.crt");
    assert_int_equal(f->cfg.log_level, NS_LOG_DEBUG); /* untouched by the flags */
}

/* ---- files ----------------------------------------------------------------- */

static void test_load_file(void **state)
{
    fixture *f = *state;
    int rc = load_temp_file(f,
                            "# napsyncd test configuration\r\n"
                            "listen = 0.0.0.0:9443\r\n"
                            "tls_cert = /etc/napsync/server.crt\n"
                            "tls_key = /etc/napsync/server.key\n"
                            "tls_ca = /etc/napsync/ca.crt\n"
                            "database = \"host=/tmp/pg dbname=napsync\"\n"
                            "\n"
                            "migrate_on_start = off\n"
                            "db_pool_size = 2\n"
                            "max_frame_size = 4096\n"
                            "idle_timeout_ms = 0\n"
                            "log_level = warn\n",
                            NULL);
    assert_int_equal(rc, 0);
    const ns_config *c = &f->cfg;
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 9443);
    assert_string_equal(c->tls_cert, "/etc/napsync/server.crt");
    assert_string_equal(c->tls_key, "/etc/napsync/server.key");
    assert_string_equal(c->tls_ca, "/etc/napsync/ca.crt");
    assert_string_equal(c->database, "host=/tmp/pg dbname=napsync");
    assert_false(c->migrate_on_start);
    assert_int_equal(c->db_pool_size, 2);
    assert_int_equal(c->max_frame_size, 4096);
    assert_int_equal(c->idle_timeout_ms, 0);
    assert_int_equal(c->log_level, NS_LOG_WARN);
    /* untouched keys keep their defaults */
    assert_int_equal(c->max_sessions, 10000);
    assert_int_equal(ns_config_validate(c, f->err, sizeof(f->err)), 0);
}

/* A bad value in a file: the message has the file, the line and the key. */
static void test_load_file_bad_value(void **state)
{
    fixture *f = *state;
    char path[sizeof(TEMP_TEMPLATE)];
    assert_int_equal(load_temp_file(f,
                                    "listen = 127.0.0.1:7443\n"
                                    "\n"
                                    "db_pool_size = 0\n",
                                    path),
                     -1);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s:3: ", path);
    if (strncmp(f->err, prefix, strlen(prefix)) != 0)
        fail_msg("\"%s\" does not start with \"%s\"", f->err, prefix);
    assert_non_null(strstr(f->err, "db_pool_size"));
}

static void test_load_file_unknown_key(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_temp_file(f, "max_frame = 10\n", NULL), -1);
    assert_non_null(strstr(f->err, ":1: "));
    assert_non_null(strstr(f->err, "'max_frame'"));
}

static void test_load_file_missing(void **state)
{
    fixture *f = *state;
    assert_int_equal(
        ns_config_load_file(&f->cfg, "/nonexistent/napsyncd.conf", f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "/nonexistent/napsyncd.conf"));
}

/* The example shipped for real installations must load and validate. */
static void test_example_config_loads(void **state)
{
    fixture *f = *state;
    const char *src = getenv("NS_SOURCE_DIR");
    if (src == NULL) {
        skip();
        return;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/deploy/napsyncd.conf.example", src);
    if (ns_config_load_file(&f->cfg, path, f->err, sizeof(f->err)) != 0)
        fail_msg("%s", f->err);
    if (ns_config_validate(&f->cfg, f->err, sizeof(f->err)) != 0)
        fail_msg("%s", f->err);
}

/* ---- validate -------------------------------------------------------------- */

static void test_validate_complete(void **state)
{
    fixture *f = *state;
    set_required(f);
    assert_int_equal(ns_config_validate(&f->cfg, f->err, sizeof(f->err)), 0);
}

static void test_validate_missing(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        const char *flag;
    } required[] = {
        {"tls_cert", "--tls-cert"},
        {"tls_key", "--tls-key"},
        {"tls_ca", "--tls-ca"},
        {"database", "--database"},
    };
    for (size_t i = 0; i < 4; i++) {
        fixture f;
        ns_config_init(&f.cfg);
        /* everything but required[i] */
        for (size_t j = 0; j < 4; j++) {
            if (j == i)
                continue;
            const char *v = strcmp(required[j].key, "database") == 0 ? "dbname=x" : "/x";
            set_ok(&f, required[j].key, v);
        }
        f.err[0] = '\0';
        assert_int_equal(ns_config_validate(&f.cfg, f.err, sizeof(f.err)), -1);
        if (strstr(f.err, required[i].key) == NULL || strstr(f.err, required[i].flag) == NULL)
            fail_msg("missing %s: message \"%s\" should name %s and %s", required[i].key, f.err,
                     required[i].key, required[i].flag);
        ns_config_free(&f.cfg);
    }

    fixture f;
    ns_config_init(&f.cfg);
    assert_int_equal(ns_config_validate(&f.cfg, f.err, sizeof(f.err)), -1);
    ns_config_free(&f.cfg);
}

/* ---- --help ---------------------------------------------------------------- */

static void test_help_lists_every_key(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ns_test_help_XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    ns_config_print_help();
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);

    char text[8192];
    assert_true(lseek(fd, 0, SEEK_SET) == 0);
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    unlink(tmpl);
    assert_true(n > 0);
    text[n] = '\0';
    static const char *flags[] = {
        "--listen",
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
        "--database",
        "--sql-dir",
        "--migrate-on-start",
        "--db-pool-size",
        "--db-queue-timeout-ms",
        "--max-frame-size",
        "--max-sessions",
        "--handshake-timeout-ms",
        "--idle-timeout-ms",
        "--shutdown-timeout-ms",
        "--log-level",
        "--http-listen",
    };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (strstr(text, flags[i]) == NULL)
            fail_msg("--help does not mention %s", flags[i]);
    assert_non_null(strstr(text, "127.0.0.1:7443"));
    assert_non_null(strstr(text, "1048576"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_defaults_are_settable),
        T(test_every_key_settable),
        T(test_unknown_key),
        T(test_max_frame_size_range),
        T(test_db_pool_size_range),
        T(test_limit_ranges),
        T(test_numbers_junk),
        T(test_bad_listen),
        T(test_http_listen),
        T(test_bad_bool),
        T(test_bad_log_level),
        T(test_bad_strings),
        T(test_database_never_echoed),
        T(test_later_overrides_earlier),
        T(test_load_file),
        T(test_load_file_bad_value),
        T(test_load_file_unknown_key),
        T(test_load_file_missing),
        T(test_example_config_loads),
        T(test_validate_complete),
        cmocka_unit_test(test_validate_missing),
        T(test_help_lists_every_key),
    };
#undef T
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
