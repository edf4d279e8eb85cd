/* napsyncd: configuration, migrations, then the event loop until stopped. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin.h"
#include "config.h"
#include "db.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "migrate.h"
#include "server.h"
#include "version.h"

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out, "Usage: napsyncd [--config FILE] [--SETTING VALUE]... [ACTION]\n"
                 "\n"
                 "napsyncd serves napsync clients over mutual TLS and keeps their data in\n"
                 "PostgreSQL. Settings come from defaults, then FILE (\"setting = value\" lines),\n"
                 "then flags; a flag overrides the file.\n"
                 "\n"
                 "Actions:\n"
                 "  (none)                   run the server until SIGTERM or SIGINT\n"
                 "  --migrate                apply missing database migrations and exit\n"
                 "  --check-config           check the settings and TLS files, then exit\n"
                 "  admin OBJECT VERB ...    administer organisations, people, roles, devices\n"
                 "                           and the feed in the database, then exit (settings\n"
                 "                           before it; napsyncd admin --help lists the commands)\n"
                 "  --help                   show this help and exit\n"
                 "  --version                show the version and exit\n"
                 "\n"
                 "Settings (as flags; in FILE write them with '_' instead of '-'):\n"
                 "  --config FILE            read settings from FILE\n");
    if (out == stdout)
        ns_config_print_help();
    fprintf(out,
            "\nHTTP (http_listen, default 127.0.0.1:9187; off disables it): GET /healthz is 200\n"
            "while the event loop runs, /readyz is 200 while PostgreSQL answers with every\n"
            "migration applied and the daemon is not draining (else 503), /metrics is the\n"
            "Prometheus text format (docs/operations.md lists every metric).\n");
    fprintf(out, "\nSignals: SIGTERM/SIGINT drain and stop (exit 0); SIGHUP reads the settings\n"
                 "again and applies the TLS files, the log level and the limits of new sessions\n"
                 "(the others wait for a restart); open sessions are kept.\n"
                 "\nExit status: 0 success; 1 failure at run time (database, migrations, TLS\n"
                 "files, listening); 2 bad arguments or settings, including a --database\n"
                 "connection string libpq cannot parse (checked first for every action, and\n"
                 "never echoed: it may hold the password). admin has its own (napsyncd admin\n"
                 "--help).\n");
}

typedef enum { ACTION_RUN, ACTION_MIGRATE, ACTION_CHECK } action;

/* Where "admin" starts `napsyncd [SETTINGS] admin ...`, or argc: the flags
 * are walked as load_settings reads them, so that a setting's value that
 * happens to be "admin" is not taken for it. What follows belongs to the
 * admin command (admin.h). */
static int admin_index(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "admin") == 0)
            return i;
        if (strncmp(a, "--", 2) != 0)
            return argc; /* load_settings refuses it */
        if (strcmp(a, "--migrate") != 0 && strcmp(a, "--check-config") != 0 &&
            strcmp(a, "--help") != 0 && strcmp(a, "--version") != 0 && strchr(a, '=') == NULL)
            i++; /* --setting VALUE */
    }
    return argc;
}

/* --some-key VALUE or --some-key=VALUE to "some_key" and VALUE. */
static int split_flag(const char *arg, const char *next, char *key, size_t keylen,
                      const char **value, int *consumed)
{
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    if (len == 0 || len >= keylen)
        return -1;
    for (size_t i = 0; i < len; i++)
        key[i] = name[i] == '-' ? '_' : name[i];
    key[len] = '\0';
    if (eq) {
        *value = eq + 1;
        *consumed = 1;
    } else {
        if (next == NULL)
            return -1;
        *value = next;
        *consumed = 2;
    }
    return 0;
}

/* Defaults, then the file (wherever --config stands, so flags always win),
 * then the flags, then the checks: into cfg, which this initialises. At
 * start and again for SIGHUP. For the admin command (admin) only the
 * database matters, and only once a command needs it. Returns 0, or -1
 * with a message in err and nothing in cfg to free. */
static int load_settings(int argc, char **argv, bool admin, ns_config *cfg, action *act, char *err,
                         size_t errlen)
{
    ns_config_init(cfg);
    *act = ACTION_RUN;
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        if (path && ns_config_load_file(cfg, path, err, errlen) != 0)
            goto fail;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--migrate") == 0) {
            *act = ACTION_MIGRATE;
            continue;
        }
        if (strcmp(a, "--check-config") == 0) {
            *act = ACTION_CHECK;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            goto fail;
        }
        char key[64];
        const char *value;
        int consumed;
        if (split_flag(a, i + 1 < argc ? argv[i + 1] : NULL, key, sizeof(key), &value, &consumed) !=
            0) {
            snprintf(err, errlen, "%s needs a value (see --help)", a);
            goto fail;
        }
        i += consumed - 1;
        if (strcmp(key, "config") == 0)
            continue;
        if (ns_config_set(cfg, key, value, err, errlen) != 0)
            goto fail;
    }
    if (!admin && ns_config_validate(cfg, err, errlen) != 0)
        goto fail;
    /* Before any action hands the string to libpq, whose complaint about a
     * malformed one quotes it, password and all. */
    if ((!admin || cfg->database != NULL) && ns_db_conninfo_check(cfg->database, err, errlen) != 0)
        goto fail;
    return 0;
fail:
    ns_config_free(cfg);
    return -1;
}

/* The command line, kept for SIGHUP: main's argv outlives the loop. */
typedef struct {
    int argc;
    char **argv;
} command_line;

static int reread_settings(void *ud, ns_config *out, char *err, size_t errlen)
{
    const command_line *cl = ud;
    action act;
    return load_settings(cl->argc, cl->argv, false, out, &act, err, errlen);
}

static int migrate(const ns_config *cfg, bool apply)
{
    char err[1024];
    if (apply) {
        int applied = 0;
        if (ns_migrate_run(cfg->database, cfg->sql_dir, &applied, err, sizeof(err)) != 0) {
            ns_log_error("migrations failed: %s", err);
            return -1;
        }
        ns_log_info("database schema is current (%d migration(s) applied now)", applied);
        return 0;
    }
    int current = ns_migrate_check(cfg->database, cfg->sql_dir, err, sizeof(err));
    if (current < 0) {
        ns_log_error("cannot check migrations: %s", err);
        return -1;
    }
    if (current == 0) {
        ns_log_error("the database lacks migrations from %s: run napsyncd --migrate", cfg->sql_dir);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int admin = admin_index(argc, argv);
    for (int i = 1; i < admin; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("napsyncd %s (protocol %d-%d)\n", NS_VERSION, NS_PROTOCOL_VERSION_MIN,
                   NS_PROTOCOL_VERSION_MAX);
            return 0;
        }
    }
    ns_config cfg;
    action act;
    char err[1024];
    if (load_settings(admin, argv, admin < argc, &cfg, &act, err, sizeof(err)) != 0) {
        fprintf(stderr, "napsyncd: %s\n", err);
        return EXIT_USAGE;
    }
    if (admin < argc) {
        int status = EXIT_USAGE;
        if (act != ACTION_RUN)
            fprintf(stderr, "napsyncd: admin is an action of its own: not with --migrate or "
                            "--check-config\n");
        else
            status = ns_admin_main(cfg.database, argc - admin - 1, argv + admin + 1);
        ns_config_free(&cfg);
        return status;
    }
    ns_log_set_level(cfg.log_level);
    ns_log_set_journal(ns_log_stderr_is_journal());
    /* A peer that vanishes mid-write must cost an error, not the process. */
    signal(SIGPIPE, SIG_IGN);

    int status = EXIT_SUCCESS;
    if (act == ACTION_MIGRATE) {
        status = migrate(&cfg, true) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        ns_config_free(&cfg);
        return status;
    }
    if (act == ACTION_CHECK) {
        ns_tls_ctx *tls;
        ns_tls_config tc = {cfg.tls_cert, cfg.tls_key, cfg.tls_ca};
        if (ns_tls_ctx_new(NS_TLS_SERVER, &tc, &tls, err, sizeof(err)) != NS_TLS_OK) {
            fprintf(stderr, "napsyncd: TLS configuration: %s\n", err);
            status = EXIT_FAILURE;
        } else {
            ns_tls_ctx_free(tls);
            printf("configuration OK\n");
        }
        ns_config_free(&cfg);
        return status;
    }

    ns_log_info("napsyncd %s starting", NS_VERSION);
    if (migrate(&cfg, cfg.migrate_on_start) != 0) {
        ns_config_free(&cfg);
        return EXIT_FAILURE;
    }
    /* The synced entity types come from the schema the migrations built:
     * a column the engine cannot sync stops the daemon here, not mid-push. */
    ns_registry registry;
    if (ns_registry_load(cfg.database, &registry, err, sizeof(err)) != 0) {
        ns_log_error("entity registry: %s", err);
        ns_config_free(&cfg);
        return EXIT_FAILURE;
    }
    if (registry.rls_bypassed)
        ns_log_warn("the database role is a superuser or has BYPASSRLS: PostgreSQL's own "
                    "authorisation checks (row-level security) do not apply; connect as an "
                    "ordinary role that owns the database (docs/deploy.md)");
    /* Before the loop and the server: a port already taken fails the start
     * here. Its thread reads only what the loop publishes (metrics.h). */
    ns_http *http = NULL;
    ns_http_options ho = {cfg.http_host, cfg.http_port, NS_HEALTH_STALE_MS};
    if (cfg.http_enabled && ns_http_start(&ho, &http) != 0) {
        ns_registry_free(&registry);
        ns_config_free(&cfg);
        return EXIT_FAILURE;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        ns_log_error("cannot create the event loop");
        ns_http_stop(http);
        ns_registry_free(&registry);
        ns_config_free(&cfg);
        return EXIT_FAILURE;
    }
    ns_server server;
    command_line cl = {argc, argv};
    if (ns_server_start(&server, &loop, &cfg, &registry) != 0) {
        status = EXIT_FAILURE;
    } else {
        server.reread = reread_settings;
        server.reread_ud = &cl;
        ns_log_info("ready");
    }
    /* Runs until every handle is closed: after a shutdown, or a failed start. */
    uv_run(&loop, UV_RUN_DEFAULT);
    ns_http_stop(http);
    if (uv_loop_close(&loop) != 0) {
        ns_log_error("handles still open at exit");
        status = EXIT_FAILURE;
    }
    ns_registry_free(&registry);
    ns_config_free(&cfg);
    return status;
}
