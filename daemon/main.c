/* napsyncd: configuration, migrations, then the event loop until stopped. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "db.h"
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
                 "  --help                   show this help and exit\n"
                 "  --version                show the version and exit\n"
                 "\n"
                 "Settings (as flags; in FILE write them with '_' instead of '-'):\n"
                 "  --config FILE            read settings from FILE\n");
    if (out == stdout)
        ns_config_print_help();
    fprintf(out, "\nSignals: SIGTERM/SIGINT drain and stop (exit 0); SIGHUP reloads the "
                 "certificate, key and CA.\n"
                 "\nExit status: 0 success; 1 failure at run time (database, migrations, TLS\n"
                 "files, listening); 2 bad arguments or settings, including a --database\n"
                 "connection string libpq cannot parse (checked first for every action, and\n"
                 "never echoed: it may hold the password).\n");
}

typedef enum { ACTION_RUN, ACTION_MIGRATE, ACTION_CHECK } action;

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

static int parse_args(int argc, char **argv, ns_config *cfg, action *act)
{
    char err[1024];
    *act = ACTION_RUN;
    /* The file first, wherever --config stands, so flags always win. */
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        if (path && ns_config_load_file(cfg, path, err, sizeof(err)) != 0) {
            fprintf(stderr, "napsyncd: %s\n", err);
            return -1;
        }
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
            fprintf(stderr, "napsyncd: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        char key[64];
        const char *value;
        int consumed;
        if (split_flag(a, i + 1 < argc ? argv[i + 1] : NULL, key, sizeof(key), &value, &consumed) !=
            0) {
            fprintf(stderr, "napsyncd: %s needs a value (see --help)\n", a);
            return -1;
        }
        i += consumed - 1;
        if (strcmp(key, "config") == 0)
            continue;
        if (ns_config_set(cfg, key, value, err, sizeof(err)) != 0) {
            fprintf(stderr, "napsyncd: %s\n", err);
            return -1;
        }
    }
    if (ns_config_validate(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "napsyncd: %s\n", err);
        return -1;
    }
    /* Before any action hands the string to libpq, whose complaint about a
     * malformed one quotes it, password and all. */
    if (ns_db_conninfo_check(cfg->database, err, sizeof(err)) != 0) {
        fprintf(stderr, "napsyncd: %s\n", err);
        return -1;
    }
    return 0;
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
    for (int i = 1; i < argc; i++) {
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
    ns_config_init(&cfg);
    action act;
    if (parse_args(argc, argv, &cfg, &act) != 0) {
        ns_config_free(&cfg);
        return EXIT_USAGE;
    }
    ns_log_set_level(cfg.log_level);
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
        char err[512];
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
    char err[1024];
    if (ns_registry_load(cfg.database, &registry, err, sizeof(err)) != 0) {
        ns_log_error("entity registry: %s", err);
        ns_config_free(&cfg);
        return EXIT_FAILURE;
    }
    if (registry.rls_bypassed)
        ns_log_warn("the database role is a superuser or has BYPASSRLS: PostgreSQL's own "
                    "authorisation checks (row-level security) do not apply; connect as an "
                    "ordinary role that owns the database (docs/deploy.md)");
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        ns_log_error("cannot create the event loop");
        ns_registry_free(&registry);
        ns_config_free(&cfg);
        return EXIT_FAILURE;
    }
    ns_server server;
    if (ns_server_start(&server, &loop, &cfg, &registry) != 0)
        status = EXIT_FAILURE;
    else
        ns_log_info("ready");
    /* Runs until every handle is closed: after a shutdown, or a failed start. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        ns_log_error("handles still open at exit");
        status = EXIT_FAILURE;
    }
    ns_registry_free(&registry);
    ns_config_free(&cfg);
    return status;
}
