/* napsync: the command-line client, built on libnapsync.
 *
 * One table lists the commands (name, help, options, handler): a new
 * command is one entry and one function. Options of the connection
 * (settings.h) are accepted before or after the command; a command's own
 * options after it. Exit status: 0 ok, 1 other failure, 2 usage or
 * configuration error, 3 connection, TLS or refused device, 4 the server
 * answered with an error. */
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "napsync.h"
#include "report.h"
#include "planio.h"
#include "settings.h"

#define CLI_MAX_OPTS       8
#define CLI_MAX_ARGS       66 /* put TYPE ID and 64 FIELD=VALUE */
#define CLI_MAX_PLANS      64
#define CLI_MAX_PING_COUNT 10000u
#define CLI_MAX_HISTORY    100000u
/* Versions asked for per request: the server sends at most 500. */
#define CLI_HISTORY_PAGE 500u
/* Bytes of a text value shown by napsync history (the rest is elided). */
#define CLI_HISTORY_SHOWN 60
/* Longest argument echoed back in an error message. */
#define CLI_MAX_SHOWN 200

enum {
    EXIT_FAILURE_OTHER = 1,
    EXIT_USAGE = 2,
    EXIT_CONNECTION = 3,
    EXIT_SERVER = 4,
};

typedef struct cli cli;

typedef struct {
    const char *name;    /* "--count" */
    const char *metavar; /* "N", or NULL for a switch */
    const char *help;
} cli_opt;

typedef struct {
    const char *name;
    const char *summary;
    const char *usage; /* what follows "napsync NAME" */
    const char *description;
    cli_opt opts[CLI_MAX_OPTS]; /* ends at the first entry without a name */
    int min_args;               /* positional arguments required */
    int max_args;               /* positional arguments accepted */
    bool connects;              /* needs the connection settings */
    bool store;                 /* needs the device store (NAPSYNC_STORE) */
    int (*run)(cli *x);
} cli_cmd;

struct cli {
    const cli_cmd *cmd;
    const char *opt[CLI_MAX_OPTS]; /* value of cmd->opts[i]; "" for a switch given */
    const char *args[CLI_MAX_ARGS];
    int nargs;
    const char *plans[CLI_MAX_PLANS]; /* --plan, repeatable */
    size_t nplans;
    bool json;
    bool help;
    bool version;
    ns_settings_flags flags;
    ns_settings settings;
    ns_client *client;
    ns_identity id; /* a copy: the client's own is cleared when the connection ends */
};

static int cmd_ping(cli *x);
static int cmd_whoami(cli *x);
static int cmd_help(cli *x);
static int cmd_sync(cli *x);
static int cmd_list(cli *x);
static int cmd_get(cli *x);
static int cmd_put(cli *x);
static int cmd_delete(cli *x);
static int cmd_conflicts(cli *x);
static int cmd_resolve(cli *x);
static int cmd_status(cli *x);
static int cmd_discard(cli *x);
static int cmd_history(cli *x);
static int cmd_report(cli *x);
static int cmd_import(cli *x);
static int cmd_export(cli *x);

static const cli_cmd commands[] = {
    {
        .name = "ping",
        .summary = "check that the server answers, and as whom",
        .usage = "[--count N] [--json]",
        .description = "Connects to the server, says Hello, and sends N pings (default 1),\n"
                       "printing the round-trip time of each and who the server says this\n"
                       "device is.",
        .opts = {{"--count", "N", "number of pings, 1 to 10000 (default 1)"},
                 {"--json", NULL, "print one JSON object per pong"}},
        .max_args = 0,
        .connects = true,
        .run = cmd_ping,
    },
    {
        .name = "whoami",
        .summary = "show who the server says this device is",
        .usage = "[--json]",
        .description = "Connects to the server and prints the organisation (name, kind,\n"
                       "country), the principal and its roles, the device, the session id\n"
                       "and the protocol version in use.",
        .opts = {{"--json", NULL, "print one JSON object"}},
        .max_args = 0,
        .connects = true,
        .run = cmd_whoami,
    },
    {
        .name = "sync",
        .summary = "push local changes, pull the server's, refresh conflicts",
        .usage = "[--watch] [--plan ID]... [--directory] [--json]",
        .description =
            "Connects, sends the changes waiting in the store's outbox (in order; a change\n"
            "the server refuses stays in the outbox with its reason, see napsync status,\n"
            "and holds back nothing), applies every change after the store's cursor, and\n"
            "refreshes the known conflicts. The scope is every plan of this device's\n"
            "organisation, or the plans given with --plan; with --directory also the\n"
            "directory (organisations, the people and roles of this organisation, and\n"
            "the devices an administrator manages). With --watch it stays\n"
            "connected, applies changes as they happen and reconnects (with backoff)\n"
            "until interrupted (SIGINT or SIGTERM).",
        .opts = {{"--watch", NULL, "stay subscribed until interrupted"},
                 {"--plan", "ID", "sync this plan (repeatable) instead of the organisation"},
                 {"--directory", NULL, "also sync the directory"},
                 {"--json", NULL, "print one JSON object per line"}},
        .max_args = 0,
        .connects = true,
        .store = true,
        .run = cmd_sync,
    },
    {
        .name = "list",
        .summary = "list the records of a type in the local store",
        .usage = "TYPE [--deleted] [--json]",
        .description = "Lists the records of TYPE (plan, indicator, indicator_report, ...;\n"
                       "organisation, principal, principal_role, device with sync --directory)\n"
                       "as this device sees them: the last synced state with the local changes\n"
                       "not yet sent applied. Works offline.",
        .opts = {{"--deleted", NULL, "include deleted records"},
                 {"--json", NULL, "print one JSON object per record"}},
        .min_args = 1,
        .max_args = 1,
        .store = true,
        .run = cmd_list,
    },
    {
        .name = "get",
        .summary = "show one record from the local store",
        .usage = "TYPE ID [--json]",
        .description = "Shows a record as this device sees it (see napsync list). Works offline.",
        .opts = {{"--json", NULL, "print one JSON object"}},
        .min_args = 2,
        .max_args = 2,
        .store = true,
        .run = cmd_get,
    },
    {
        .name = "put",
        .summary = "create or update a record locally",
        .usage = "TYPE ID|new FIELD=VALUE... [--json]",
        .description =
            "Saves a change in the store (durable when the command returns; sent by the\n"
            "next napsync sync). ID \"new\" creates a record with a fresh id; an id the\n"
            "store knows is updated (only the fields given); another id is created.\n"
            "VALUE is parsed as the kind of the field's current value, else as text;\n"
            "FIELD:KIND=VALUE forces a kind: bool, int, decimal, date (YYYY-MM-DD), set\n"
            "(comma-separated), ref (UUID), text; FIELD:null= sets null. Prints the\n"
            "record id and the change's id. Works offline.",
        .opts = {{"--json", NULL, "print one JSON object"}},
        .min_args = 3,
        .max_args = CLI_MAX_ARGS,
        .store = true,
        .run = cmd_put,
    },
    {
        .name = "delete",
        .summary = "delete a record locally",
        .usage = "TYPE ID [--json]",
        .description = "Saves the deletion in the store (sent by the next napsync sync).",
        .opts = {{"--json", NULL, "print one JSON object"}},
        .min_args = 2,
        .max_args = 2,
        .store = true,
        .run = cmd_delete,
    },
    {
        .name = "conflicts",
        .summary = "list the conflicts known since the last sync",
        .usage = "[--all] [--json]",
        .description = "Lists the open conflicts: the record kept one value of a field edited\n"
                       "on two sides, the other is kept here. Shows the conflict id, the\n"
                       "record, the field, both values and who wrote each. Run napsync sync\n"
                       "first for the latest list.",
        .opts = {{"--all", NULL, "include resolved conflicts"},
                 {"--json", NULL, "print one JSON object per conflict"}},
        .store = true,
        .run = cmd_conflicts,
    },
    {
        .name = "resolve",
        .summary = "resolve a conflict on the server, then sync",
        .usage = "ID (--take mine|theirs | --value V) [--json]",
        .description =
            "Resolves conflict ID: --take mine keeps the value this device (else this\n"
            "principal) wrote, --take theirs the other one, --value V sets V (parsed as\n"
            "the field's kind). The resolution is a normal change that reaches every\n"
            "device; this command then syncs this one. Needs the server.",
        .opts = {{"--take", "mine|theirs", "which side to keep"},
                 {"--value", "V", "the value to set instead"},
                 {"--json", NULL, "print one JSON object"}},
        .min_args = 1,
        .max_args = 1,
        .connects = true,
        .store = true,
        .run = cmd_resolve,
    },
    {
        .name = "status",
        .summary = "show the store: outbox, cursor, last sync, refused changes",
        .usage = "[--json]",
        .description = "Shows how many changes wait to be sent and how many the server refused\n"
                       "(each with its reason), the records and open conflicts known, the cursor\n"
                       "and when the last sync completed. Works offline.",
        .opts = {{"--json", NULL, "print one JSON object"}},
        .store = true,
        .run = cmd_status,
    },
    {
        .name = "discard",
        .summary = "drop a change the server refused",
        .usage = "MUTATION_ID",
        .description = "Removes a refused change (see napsync status) from the outbox.",
        .opts = {{NULL, NULL, NULL}},
        .min_args = 1,
        .max_args = 1,
        .store = true,
        .run = cmd_discard,
    },
    {
        .name = "history",
        .summary = "show who changed a record, what and when",
        .usage = "TYPE ID [--limit N] [--json]",
        .description =
            "Asks the server for the versions of record ID of TYPE, newest first: the\n"
            "version, when (UTC), who (principal and device), the operation, and the\n"
            "fields that changed with their values before and after (a create lists the\n"
            "fields it set). Shows the latest 50 versions, or N with --limit. Needs the\n"
            "server; a record this principal may not read is \"not found\".",
        .opts = {{"--limit", "N", "versions to show, 1 to 100000 (default 50)"},
                 {"--json", NULL, "print one JSON object per version"}},
        .min_args = 2,
        .max_args = 2,
        .connects = true,
        .run = cmd_history,
    },
    {
        .name = "import",
        .summary = "import a plan from a JSON or CSV plan file, all or nothing",
        .usage = "plan FILE [--format json|csv] [--dry-run] [--json]",
        .description =
            "Reads FILE (a plan and everything in it: docs/import-export.md) and checks it\n"
            "whole; every problem is printed with its line (CSV) or path (JSON) and field,\n"
            "and then nothing is sent. Otherwise the server checks every record without\n"
            "storing anything (each refusal printed the same way), and only if it accepts\n"
            "them all are they imported, in one transaction: all or nothing. The plan's\n"
            "owner is this device's organisation. Needs the server, not the store.",
        .opts = {{"--format", "json|csv", "the file's format (default: from its name)"},
                 {"--dry-run", NULL, "stop after the server's check: import nothing"},
                 {"--json", NULL, "print each problem, and the outcome, as a JSON line"}},
        .min_args = 2,
        .max_args = 2,
        .connects = true,
        .run = cmd_import,
    },
    {
        .name = "export",
        .summary = "write a plan and everything in it to a JSON or CSV plan file",
        .usage = "plan ID [--format json|csv] [-o FILE]",
        .description =
            "Fetches plan ID and every record in it from the server and writes them as a\n"
            "plan file (docs/import-export.md), ordered by type and id: the same plan\n"
            "gives the same bytes, and napsync import reads it back. Needs the server;\n"
            "a plan this principal may not read is refused.",
        .opts = {{"--format", "json|csv", "the format (default: from -o's name, else json)"},
                 {"-o", "FILE", "write to FILE, complete or not at all (default: standard output)"},
                 {"--output", "FILE", "the same as -o"},
                 {"--force", NULL, "replace FILE if it exists"}},
        .min_args = 2,
        .max_args = 2,
        .connects = true,
        .run = cmd_export,
    },
    {
        .name = "report",
        .summary = NS_CLI_REPORT_SUMMARY,
        .usage = NS_CLI_REPORT_USAGE,
        .description = NS_CLI_REPORT_HELP,
        .opts = {{"--plan", "ID", "progress: the plan"},
                 {"--year", "Y", "progress: the reporting year (default: the latest with data)"},
                 {"--region", "ID", "region: the regional organisation"},
                 {"--format", "FMT", "md, csv, html or json (default md)"},
                 {"-o", "FILE", "write to FILE, complete or not at all (default: standard output)"},
                 {"--force", NULL, "replace FILE if it exists"},
                 {"--json", NULL, "print the server's JSON (the same as --format json)"}},
        .min_args = 1,
        .max_args = 1,
        .connects = true,
        .run = cmd_report,
    },
    {
        .name = "help",
        .summary = "show help for napsync or for one command",
        .usage = "[COMMAND]",
        .description = "Shows the commands and options of napsync, or the help of COMMAND\n"
                       "(the same as napsync COMMAND --help).",
        .opts = {{NULL, NULL, NULL}},
        .max_args = 1,
        .connects = false,
        .run = cmd_help,
    },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ---- output ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p, or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A JSON string. Text from the server is valid UTF-8 already; file names
 * in error messages may not be, so invalid bytes become U+FFFD. */
static void json_str(const char *s)
{
    putchar('"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            putchar('\\');
            putchar(c);
            p++;
        } else if (c == '\n') {
            fputs("\\n", stdout);
            p++;
        } else if (c == '\t') {
            fputs("\\t", stdout);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
            p++;
        } else {
            size_t n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", stdout);
                p++;
            } else {
                fwrite(p, 1, n, stdout);
                p += n;
            }
        }
    }
    putchar('"');
}

static void json_field(bool *first, const char *key)
{
    if (!*first)
        putchar(',');
    *first = false;
    json_str(key);
    putchar(':');
}

static void json_str_field(bool *first, const char *key, const char *value)
{
    json_field(first, key);
    json_str(value);
}

/* An argument echoed in a message: only if short and printable. */
static const char *shown(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p < 0x20 || *p == 0x7f || n >= CLI_MAX_SHOWN)
            return "(argument not shown: too long or not printable)";
    return s;
}

static int exit_code(ns_status st)
{
    switch (st) {
    case NS_OK:
        return 0;
    case NS_ERR_INVALID_ARGUMENT:
    case NS_ERR_CONFIG:
        return EXIT_USAGE;
    case NS_ERR_RESOLVE:
    case NS_ERR_CONNECT:
    case NS_ERR_TIMEOUT:
    case NS_ERR_TLS:
    case NS_ERR_SERVER_CERT:
    case NS_ERR_CERT_REFUSED:
    case NS_ERR_UNKNOWN_DEVICE:
    case NS_ERR_DEVICE_REVOKED:
    case NS_ERR_CLOSED:
        return EXIT_CONNECTION;
    case NS_ERR_VERSION:
    case NS_ERR_PROTOCOL:
    case NS_ERR_SERVER:
    case NS_ERR_UNAVAILABLE:
        return EXIT_SERVER;
    case NS_ERR_NOMEM:
    case NS_ERR_STATE:
        return EXIT_FAILURE_OTHER;
    }
    return EXIT_FAILURE_OTHER;
}

/* Reports a failure on stderr (and stdout as JSON) and gives the exit code. */
static int fail(const cli *x, ns_status st, const char *msg)
{
    fflush(stdout);
    fprintf(stderr, "napsync: %s\n", msg);
    if (x->json) {
        bool first = true;
        putchar('{');
        json_str_field(&first, "error", ns_status_name(st));
        json_str_field(&first, "message", msg);
        fputs("}\n", stdout);
    }
    return exit_code(st);
}

__attribute__((format(printf, 2, 3))) static int usage_error(const cli *x, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    bool of_command = x->cmd && x->cmd->run != cmd_help;
    snprintf(msg + n, sizeof(msg) - n, " (see napsync %s%s--help)", of_command ? x->cmd->name : "",
             of_command ? " " : "");
    return fail(x, NS_ERR_INVALID_ARGUMENT, msg);
}

/* ---- help --------------------------------------------------------------- */

static void print_connection_options(FILE *f)
{
    fprintf(f, "Connection options (flag, environment variable, config file key):\n");
    for (int i = 0; i < NS_SETTING_COUNT; i++) {
        const ns_setting_info *in = ns_settings_info((ns_setting_id)i);
        char lhs[64];
        snprintf(lhs, sizeof(lhs), "%s %s", in->flag, in->metavar);
        fprintf(f, "  %-20s %s\n", lhs, in->help);
        fprintf(f, "  %-20s %s%s%s\n", "", in->env ? in->env : "",
                in->env ? ", config key " : "config key ", in->key);
    }
    fprintf(f, "  %-20s %s\n", NS_SETTINGS_CONFIG_FLAG " FILE",
            "read settings from FILE (\"key = value\" lines)");
    fprintf(f, "  %-20s %s\n", "", NS_SETTINGS_CONFIG_ENV);
    fprintf(f, "Flags override the environment, which overrides the config file. Relative\n"
               "paths in a config file are taken from the file's directory.\n");
}

static void print_global_help(FILE *f)
{
    fprintf(f, "Usage: napsync [OPTIONS] COMMAND [COMMAND OPTIONS]\n\n"
               "The command-line client of napsync: talks to a napsync server (napsyncd)\n"
               "over mutual TLS, as this device.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n");
    print_connection_options(f);
    fprintf(f, "\nOther options:\n"
               "  -h, --help           show this help, or a command's help after it\n"
               "  --version            show the version\n\n"
               "Exit status: 0 success, 1 other failure, 2 usage or configuration error,\n"
               "3 connection, TLS or device certificate refused, 4 error from the server.\n"
               "With --json, an error is also printed on stdout as\n"
               "{\"error\": NAME, \"message\": TEXT}.\n\n"
               "Run \"napsync help COMMAND\" for the options of a command.\n");
}

static void print_command_help(FILE *f, const cli_cmd *c)
{
    fprintf(f, "Usage: napsync %s %s\n\n%s\n", c->name, c->usage, c->description);
    if (c->opts[0].name) {
        fprintf(f, "\nOptions:\n");
        for (int i = 0; i < CLI_MAX_OPTS && c->opts[i].name; i++) {
            char lhs[64];
            snprintf(lhs, sizeof(lhs), "%s%s%s", c->opts[i].name, c->opts[i].metavar ? " " : "",
                     c->opts[i].metavar ? c->opts[i].metavar : "");
            fprintf(f, "  %-20s %s\n", lhs, c->opts[i].help);
        }
    }
    if (c->connects) {
        fprintf(f, "\n");
        print_connection_options(f);
    }
}

static const cli_cmd *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int cmd_help(cli *x)
{
    if (x->nargs == 0) {
        print_global_help(stdout);
        return 0;
    }
    const cli_cmd *c = find_command(x->args[0]);
    if (c == NULL)
        return usage_error(x, "unknown command \"%s\"", shown(x->args[0]));
    print_command_help(stdout, c);
    return 0;
}

/* ---- arguments ------------------------------------------------------------- */

static const char *opt_value(const cli *x, const char *name)
{
    for (int i = 0; i < CLI_MAX_OPTS && x->cmd->opts[i].name; i++)
        if (strcmp(x->cmd->opts[i].name, name) == 0)
            return x->opt[i];
    return NULL;
}

static const char **opt_slot(cli *x, const char *name)
{
    for (int i = 0; i < CLI_MAX_OPTS && x->cmd->opts[i].name; i++)
        if (strcmp(x->cmd->opts[i].name, name) == 0)
            return &x->opt[i];
    return NULL;
}

/* Whether arg (maybe "--name=value") names the option name. */
static bool opt_matches(const char *arg, size_t namelen, const char *name)
{
    return strlen(name) == namelen && strncmp(arg, name, namelen) == 0;
}

/* Returns 0, or an exit code after reporting a usage error. */
static int parse_args(cli *x, int argc, char **argv)
{
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == '\0') {
            if (x->cmd == NULL) {
                x->cmd = find_command(a);
                if (x->cmd == NULL)
                    return usage_error(x, "unknown command \"%s\"", shown(a));
            } else if (x->nargs >= x->cmd->max_args) {
                return usage_error(x, "unexpected argument \"%s\"", shown(a));
            } else {
                x->args[x->nargs++] = a;
            }
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            x->help = true;
            continue;
        }
        if (strcmp(a, "--version") == 0) {
            x->version = true;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t namelen = eq ? (size_t)(eq - a) : strlen(a);
        const char **slot = NULL;
        const char *metavar = NULL;
        for (int s = 0; s < NS_SETTING_COUNT && slot == NULL; s++) {
            const ns_setting_info *in = ns_settings_info((ns_setting_id)s);
            if (opt_matches(a, namelen, in->flag)) {
                slot = &x->flags.value[s];
                metavar = in->metavar;
            }
        }
        if (slot == NULL && opt_matches(a, namelen, NS_SETTINGS_CONFIG_FLAG)) {
            slot = &x->flags.config;
            metavar = "FILE";
        }
        for (int o = 0; x->cmd && slot == NULL && o < CLI_MAX_OPTS && x->cmd->opts[o].name; o++) {
            if (opt_matches(a, namelen, x->cmd->opts[o].name)) {
                slot = &x->opt[o];
                metavar = x->cmd->opts[o].metavar;
            }
        }
        if (slot == NULL) {
            if (x->cmd == NULL)
                return usage_error(x,
                                   "unknown option \"%.*s\" (a command's options go after "
                                   "the command)",
                                   (int)(namelen < CLI_MAX_SHOWN ? namelen : CLI_MAX_SHOWN),
                                   shown(a));
            return usage_error(x, "unknown option \"%.*s\"",
                               (int)(namelen < CLI_MAX_SHOWN ? namelen : CLI_MAX_SHOWN), shown(a));
        }
        if (metavar == NULL) {
            if (eq)
                return usage_error(x, "%.*s takes no value", (int)namelen, a);
            *slot = "";
        } else if (eq) {
            *slot = eq + 1;
        } else if (i + 1 < argc) {
            *slot = argv[++i];
        } else {
            return usage_error(x, "%s needs a value (%s)", a, metavar);
        }
        if (x->cmd && slot == opt_slot(x, "--plan")) {
            if (x->nplans >= CLI_MAX_PLANS)
                return usage_error(x, "at most %d --plan", CLI_MAX_PLANS);
            x->plans[x->nplans++] = *slot;
        }
    }
    return 0;
}

/* ---- commands --------------------------------------------------------------- */

/* A client with the connection settings (and the store for commands that
 * use it); returns 0 or an exit code after reporting. */
static int new_client(cli *x)
{
    char err[1024];
    if (ns_settings_require(&x->settings, NS_SETTING_SERVER, "no server given", err, sizeof(err)) !=
            0 ||
        ns_settings_require(&x->settings, NS_SETTING_CA,
                            "no CA given (the server's certificate is checked against it)", err,
                            sizeof(err)) != 0)
        return fail(x, NS_ERR_CONFIG, err);
    ns_client_options o = {
        .server = ns_settings_get(&x->settings, NS_SETTING_SERVER),
        .ca_file = ns_settings_get(&x->settings, NS_SETTING_CA),
        .cert_file = ns_settings_get(&x->settings, NS_SETTING_CERT),
        .key_file = ns_settings_get(&x->settings, NS_SETTING_KEY),
        .timeout_ms = x->settings.timeout_ms,
        .client_name = "napsync-cli",
        .client_version = ns_version(),
        .store_path = x->cmd->store ? ns_settings_get(&x->settings, NS_SETTING_STORE) : NULL,
    };
    ns_error e;
    const char *store = ns_settings_get(&x->settings, NS_SETTING_STORE);
    if (!x->cmd->store && store && store[0] && access(store, F_OK) == 0) {
        /* ping and whoami need no store, but an existing one keeps the TLS
         * session that lets this run, and the next, resume; one another
         * process holds (sync --watch) is left alone. */
        o.store_path = store;
        if (ns_client_new(&o, NULL, &x->client, &e) == NS_OK)
            return 0;
        o.store_path = NULL;
    }
    if (ns_client_new(&o, NULL, &x->client, &e) != NS_OK)
        return fail(x, e.status, e.message);
    return 0;
}

/* Connects with the settings; returns 0 or an exit code after reporting. */
static int connect_client(cli *x)
{
    int rc = new_client(x);
    if (rc != 0)
        return rc;
    ns_error e;
    if (ns_client_connect_wait(x->client, &e) != NS_OK)
        return fail(x, e.status, e.message);
    x->id = *ns_client_identity(x->client);
    return 0;
}

static void disconnect_client(cli *x)
{
    if (ns_client_identity(x->client))
        (void)ns_client_disconnect_wait(x->client);
}

static int cmd_ping(cli *x)
{
    uint64_t count = 1;
    const char *cv = opt_value(x, "--count");
    if (cv && ns_conf_uint(cv, 1, CLI_MAX_PING_COUNT, &count) != 0)
        return usage_error(x, "--count: \"%s\" is not a number from 1 to %u", shown(cv),
                           CLI_MAX_PING_COUNT);
    int rc = connect_client(x);
    if (rc != 0)
        return rc;
    const ns_identity *id = &x->id;
    const char *address = ns_settings_get(&x->settings, NS_SETTING_SERVER);
    double min = 0, max = 0, sum = 0;
    for (uint64_t i = 1; i <= count; i++) {
        uint64_t rtt_us = 0;
        ns_error e;
        if (ns_client_ping_wait(x->client, &rtt_us, &e) != NS_OK)
            return fail(x, e.status, e.message);
        double ms = (double)rtt_us / 1000.0;
        min = i == 1 || ms < min ? ms : min;
        max = ms > max ? ms : max;
        sum += ms;
        if (x->json) {
            bool first = true;
            putchar('{');
            json_field(&first, "seq");
            printf("%llu", (unsigned long long)i);
            json_field(&first, "rtt_ms");
            printf("%.3f", ms);
            json_str_field(&first, "server_name", id->server_name);
            json_str_field(&first, "server_version", id->server_version);
            json_str_field(&first, "address", address);
            json_str_field(&first, "organisation", id->organisation_name);
            json_str_field(&first, "principal", id->principal_name);
            json_str_field(&first, "device", id->device_name);
            json_field(&first, "tls_resumed");
            fputs(id->tls_resumed ? "true" : "false", stdout);
            fputs("}\n", stdout);
        } else {
            printf("pong from %s %s at %s: %.2f ms (organisation: %s, principal: %s, device: "
                   "%s)\n",
                   id->server_name, id->server_version, address, ms, id->organisation_name,
                   id->principal_name, id->device_name);
        }
        fflush(stdout);
    }
    if (count > 1 && !x->json)
        printf("%llu pongs, round trip min/avg/max = %.2f/%.2f/%.2f ms\n",
               (unsigned long long)count, min, sum / (double)count, max);
    disconnect_client(x);
    return 0;
}

static void whoami_json(const ns_identity *id, const char *address)
{
    bool first = true;
    putchar('{');
    json_field(&first, "organisation");
    {
        bool f2 = true;
        putchar('{');
        json_str_field(&f2, "id", id->organisation_id);
        json_str_field(&f2, "name", id->organisation_name);
        json_str_field(&f2, "kind", id->organisation_kind);
        json_str_field(&f2, "country", id->country);
        putchar('}');
    }
    json_field(&first, "principal");
    {
        bool f2 = true;
        putchar('{');
        json_str_field(&f2, "id", id->principal_id);
        json_str_field(&f2, "name", id->principal_name);
        putchar('}');
    }
    json_field(&first, "roles");
    putchar('[');
    for (size_t i = 0; i < id->nroles; i++) {
        if (i)
            putchar(',');
        json_str(id->roles[i]);
    }
    putchar(']');
    json_field(&first, "device");
    {
        bool f2 = true;
        putchar('{');
        json_str_field(&f2, "id", id->device_id);
        json_str_field(&f2, "name", id->device_name);
        putchar('}');
    }
    json_str_field(&first, "session_id", id->session_id);
    json_field(&first, "protocol_version");
    printf("%u", (unsigned)id->protocol_version);
    json_field(&first, "server");
    {
        bool f2 = true;
        putchar('{');
        json_str_field(&f2, "name", id->server_name);
        json_str_field(&f2, "version", id->server_version);
        json_str_field(&f2, "address", address);
        putchar('}');
    }
    json_field(&first, "tls_resumed");
    fputs(id->tls_resumed ? "true" : "false", stdout);
    json_field(&first, "compression");
    json_str(id->compressed ? "zstd" : "none");
    fputs("}\n", stdout);
}

static void whoami_text(const ns_identity *id, const char *address)
{
    printf("organisation: %s (%s%s%s)\n", id->organisation_name, id->organisation_kind,
           id->country[0] ? ", " : "", id->country);
    printf("              id %s\n", id->organisation_id);
    printf("principal:    %s\n", id->principal_name);
    printf("              id %s\n", id->principal_id);
    printf("roles:        ");
    for (size_t i = 0; i < id->nroles; i++)
        printf("%s%s", i ? ", " : "", id->roles[i]);
    printf("%s\n", id->nroles ? "" : "(none)");
    printf("device:       %s\n", id->device_name);
    printf("              id %s\n", id->device_id);
    printf("session:      %s\n", id->session_id);
    printf("protocol:     %u\n", (unsigned)id->protocol_version);
    printf("server:       %s %s at %s\n", id->server_name, id->server_version, address);
    printf("tls:          %s\n", id->tls_resumed ? "resumed session" : "full handshake");
    printf("compression:  %s\n", id->compressed ? "zstd" : "none");
}

static int cmd_whoami(cli *x)
{
    int rc = connect_client(x);
    if (rc != 0)
        return rc;
    const ns_identity *id = &x->id;
    const char *address = ns_settings_get(&x->settings, NS_SETTING_SERVER);
    if (x->json)
        whoami_json(id, address);
    else
        whoami_text(id, address);
    disconnect_client(x);
    return 0;
}

/* ---- the store and sync ----------------------------------------------------- */

static int require_store(cli *x)
{
    char err[1024];
    if (ns_settings_require(&x->settings, NS_SETTING_STORE,
                            "no device store given (the file that keeps this device's records "
                            "and unsent changes)",
                            err, sizeof(err)) != 0)
        return fail(x, NS_ERR_CONFIG, err);
    return 0;
}

/* A client with the store only: local commands never need the server. */
static int open_store(cli *x)
{
    int rc = require_store(x);
    if (rc != 0)
        return rc;
    ns_client_options o = {.store_path = ns_settings_get(&x->settings, NS_SETTING_STORE)};
    ns_error e;
    if (ns_client_new(&o, NULL, &x->client, &e) != NS_OK)
        return fail(x, e.status, e.message);
    return 0;
}

static void json_u64_field(bool *first, const char *key, uint64_t v)
{
    json_field(first, key);
    printf("%llu", (unsigned long long)v);
}

static void json_bool_field(bool *first, const char *key, bool v)
{
    json_field(first, key);
    fputs(v ? "true" : "false", stdout);
}

static void json_str_or_null(const char *s)
{
    if (s)
        json_str(s);
    else
        fputs("null", stdout);
}

/* A value in JSON by its kind: numbers and booleans as such, sets as
 * arrays, decimals (exact) and the rest as strings, null as null. */
static void json_value(const char *kind, const char *value)
{
    if (value == NULL) {
        fputs("null", stdout);
    } else if (strcmp(kind, "int") == 0 || strcmp(kind, "bool") == 0) {
        fputs(value, stdout);
    } else if (strcmp(kind, "set") == 0) {
        putchar('[');
        const char *p = value;
        bool first = true;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            char item[256];
            if (n >= sizeof(item))
                n = sizeof(item) - 1;
            memcpy(item, p, n);
            item[n] = '\0';
            if (!first)
                putchar(',');
            first = false;
            json_str(item);
            p += comma ? (size_t)(comma - p) + 1 : strlen(p);
        }
        putchar(']');
    } else {
        json_str(value);
    }
}

static void time_text(int64_t unix_ms, char *out, size_t cap)
{
    if (unix_ms <= 0) {
        snprintf(out, cap, "never");
        return;
    }
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int print_record(const ns_record_view *r, void *ud)
{
    const cli *x = ud;
    if (x->json) {
        bool first = true;
        putchar('{');
        json_str_field(&first, "type", r->entity_type);
        json_str_field(&first, "id", r->id);
        json_u64_field(&first, "version", r->version);
        json_bool_field(&first, "deleted", r->deleted);
        json_str_field(&first, "tenant_id", r->tenant_id);
        json_str_field(&first, "changed_by", r->changed_by);
        json_str_field(&first, "changed_at", r->changed_at);
        json_field(&first, "fields");
        putchar('{');
        for (size_t i = 0; i < r->nfields; i++) {
            if (i)
                putchar(',');
            json_str(r->fields[i].name);
            putchar(':');
            json_value(r->fields[i].kind, r->fields[i].value);
        }
        putchar('}');
        json_bool_field(&first, "pending", r->pending);
        json_u64_field(&first, "rejected", r->rejected);
        fputs("}\n", stdout);
        return 0;
    }
    printf("%s %s version %llu%s%s", r->entity_type, r->id, (unsigned long long)r->version,
           r->deleted ? " (deleted)" : "", r->pending ? " (local changes not yet synced)" : "");
    if (r->rejected)
        printf(" (%u refused change%s: see napsync status)", r->rejected,
               r->rejected == 1 ? "" : "s");
    printf("\n");
    if (r->changed_by[0])
        printf("  last change by %s at %s\n", r->changed_by, r->changed_at);
    for (size_t i = 0; i < r->nfields; i++)
        printf("  %s: %s\n", r->fields[i].name, r->fields[i].value ? r->fields[i].value : "null");
    return 0;
}

static int cmd_list(cli *x)
{
    int rc = open_store(x);
    if (rc != 0)
        return rc;
    ns_error e;
    if (ns_client_list(x->client, x->args[0], opt_value(x, "--deleted") != NULL, print_record, x,
                       &e) != NS_OK)
        return fail(x, e.status, e.message);
    return 0;
}

static int cmd_get(cli *x)
{
    int rc = open_store(x);
    if (rc != 0)
        return rc;
    ns_error e;
    if (ns_client_get(x->client, x->args[0], x->args[1], print_record, x, &e) != NS_OK)
        return fail(x, e.status, e.message);
    return 0;
}

static void print_edit(const cli *x, const char *type, const char *op, const ns_edit_result *r)
{
    if (x->json) {
        bool first = true;
        putchar('{');
        json_str_field(&first, "type", type);
        json_str_field(&first, "record_id", r->record_id);
        json_str_field(&first, "mutation_id", r->mutation_id);
        json_str_field(&first, "op", op);
        json_u64_field(&first, "base_version", r->base_version);
        fputs("}\n", stdout);
    } else {
        printf("%s %s %s (change %s, saved; sent by the next napsync sync)\n", op, type,
               r->record_id, r->mutation_id);
    }
}

static int cmd_put(cli *x)
{
    int rc = open_store(x);
    if (rc != 0)
        return rc;
    const char *id = strcmp(x->args[1], "new") == 0 ? NULL : x->args[1];
    ns_edit_result r;
    ns_error e;
    if (ns_client_put(x->client, x->args[0], id, x->args + 2, (size_t)(x->nargs - 2), &r, &e) !=
        NS_OK)
        return fail(x, e.status, e.message);
    print_edit(x, x->args[0], r.created ? "create" : "update", &r);
    return 0;
}

static int cmd_delete(cli *x)
{
    int rc = open_store(x);
    if (rc != 0)
        return rc;
    ns_edit_result r;
    ns_error e;
    if (ns_client_delete(x->client, x->args[0], x->args[1], &r, &e) != NS_OK)
        return fail(x, e.status, e.message);
    print_edit(x, x->args[0], "delete", &r);
    return 0;
}

static int print_conflict(const ns_conflict_view *cf, void *ud)
{
    const cli *x = ud;
    if (x->json) {
        bool first = true;
        putchar('{');
        json_str_field(&first, "id", cf->id);
        json_str_field(&first, "type", cf->entity_type);
        json_str_field(&first, "record", cf->record_id);
        json_str_field(&first, "field", cf->field);
        json_field(&first, "kept_value");
        json_str_or_null(cf->kept_value);
        json_str_field(&first, "kept_by", cf->kept_by);
        json_str_field(&first, "kept_device", cf->kept_device);
        json_bool_field(&first, "kept_deleted", cf->kept_deleted);
        json_field(&first, "other_value");
        json_str_or_null(cf->other_value);
        json_str_field(&first, "other_by", cf->other_by);
        json_str_field(&first, "other_device", cf->other_device);
        json_bool_field(&first, "other_deleted", cf->other_deleted);
        json_field(&first, "base_value");
        json_str_or_null(cf->base_value);
        json_str_field(&first, "tenant_id", cf->tenant_id);
        json_str_field(&first, "created_at", cf->created_at);
        json_bool_field(&first, "resolved", cf->resolved);
        fputs("}\n", stdout);
        return 0;
    }
    printf("conflict %s%s: %s %s, %s\n", cf->id, cf->resolved ? " (resolved)" : "", cf->entity_type,
           cf->record_id, cf->field[0] ? cf->field : "the whole record (edit versus delete)");
    printf("  kept:  %s  (by %s on %s)\n",
           cf->kept_deleted ? "(deleted)"
           : cf->kept_value ? cf->kept_value
                            : "null",
           cf->kept_by, cf->kept_device);
    printf("  other: %s  (by %s on %s)\n",
           cf->other_deleted ? "(deleted)"
           : cf->other_value ? cf->other_value
                             : "null",
           cf->other_by, cf->other_device);
    return 0;
}

static int cmd_conflicts(cli *x)
{
    int rc = open_store(x);
    if (rc != 0)
        return rc;
    ns_error e;
    if (ns_client_conflicts(x->client, opt_value(x, "--all") != NULL, print_conflict, x, &e) !=
        NS_OK)
        return fail(x, e.status, e.message);
    return 0;
}

static int print_outbox(const ns_outbox_view *o, void *ud)
{
    bool *first_entry = ud;
    if (!*first_entry)
        putchar(',');
    *first_entry = false;
    bool first = true;
    putchar('{');
    json_str_field(&first, "mutation_id", o->mutation_id);
    json_str_field(&first, "type", o->entity_type);
    json_str_field(&first, "record_id", o->record_id);
    json_str_field(&first, "op", o->op);
    json_str_field(&first, "state", o->rejected ? "rejected" : "pending");
    json_str_field(&first, "reject_code", o->reject_code);
    json_str_field(&first, "reject_reason", o->reject_reason);
    putchar('}');
    return 0;
}

static int print_rejected(const ns_outbox_view *o, void *ud)
{
    (void)ud;
    if (o->rejected)
        printf("  refused %s of %s %s (change %s): %s: %s\n", o->op, o->entity_type, o->record_id,
               o->mutation_id, o->reject_code, o->reject_reason);
    return 0;
}

static const char *conn_name(ns_conn_state s)
{
    return s == NS_CONN_CONNECTED    ? "connected"
           : s == NS_CONN_CONNECTING ? "connecting"
                                     : "disconnected";
}

static int cmd_status(cli *x)
{
    int rc = open_store(x);
    if (rc != 0)
        return rc;
    ns_sync_status st;
    ns_error e;
    if (ns_client_status(x->client, &st, &e) != NS_OK)
        return fail(x, e.status, e.message);
    char last[40];
    time_text(st.last_sync_ms, last, sizeof(last));
    if (x->json) {
        bool first = true;
        putchar('{');
        json_u64_field(&first, "pending", st.pending);
        json_u64_field(&first, "rejected", st.rejected);
        json_u64_field(&first, "records", st.records);
        json_u64_field(&first, "open_conflicts", st.open_conflicts);
        json_str_field(&first, "cursor", st.cursor);
        json_field(&first, "last_sync");
        json_str_or_null(st.last_sync_ms > 0 ? last : NULL);
        json_str_field(&first, "connection", conn_name(st.connection));
        json_field(&first, "outbox");
        putchar('[');
        bool first_entry = true;
        rc = ns_client_outbox(x->client, print_outbox, &first_entry, &e);
        putchar(']');
        fputs("}\n", stdout);
        if (rc != NS_OK)
            return fail(x, e.status, e.message);
        return 0;
    }
    printf("outbox:     %llu change%s waiting, %llu refused\n", (unsigned long long)st.pending,
           st.pending == 1 ? "" : "s", (unsigned long long)st.rejected);
    if (st.rejected && ns_client_outbox(x->client, print_rejected, NULL, &e) != NS_OK)
        return fail(x, e.status, e.message);
    printf("records:    %llu\n", (unsigned long long)st.records);
    printf("conflicts:  %llu open\n", (unsigned long long)st.open_conflicts);
    printf("cursor:     %s\n", st.cursor[0] ? st.cursor : "(none: never synced)");
    printf("last sync:  %s\n", last);
    printf("connection: %s (this command works from the store only)\n", conn_name(st.connection));
    return 0;
}

static int cmd_discard(cli *x)
{
    int rc = open_store(x);
    if (rc != 0)
        return rc;
    ns_error e;
    if (ns_client_discard(x->client, x->args[0], &e) != NS_OK)
        return fail(x, e.status, e.message);
    if (!x->json)
        printf("discarded change %s\n", x->args[0]);
    return 0;
}

static void print_event(ns_client *c, const ns_sync_event *ev, void *ud)
{
    (void)c;
    const cli *x = ud;
    static const char *const names[] = {"",        "connected", "disconnected", "pushed",
                                        "changes", "conflicts", "cursor_reset", "caught_up"};
    const char *name = (size_t)ev->kind < sizeof(names) / sizeof(names[0]) ? names[ev->kind] : "";
    if (x->json) {
        bool first = true;
        putchar('{');
        json_str_field(&first, "event", name);
        json_u64_field(&first, "count", ev->count);
        if (ev->kind == NS_SYNC_PUSHED)
            json_u64_field(&first, "rejected", ev->rejected);
        if (ev->kind == NS_SYNC_DISCONNECTED) {
            json_u64_field(&first, "retry_in_ms", ev->retry_in_ms);
            json_str_field(&first, "message", ev->err ? ev->err->message : "");
        }
        fputs("}\n", stdout);
    } else {
        switch (ev->kind) {
        case NS_SYNC_DISCONNECTED:
            printf("disconnected: %s; retrying in %.1f s\n", ev->err ? ev->err->message : "",
                   ev->retry_in_ms / 1000.0);
            break;
        case NS_SYNC_CHANGES:
            printf("received %llu change%s\n", (unsigned long long)ev->count,
                   ev->count == 1 ? "" : "s");
            break;
        case NS_SYNC_CURSOR_RESET:
            printf("the server did not know this store's cursor: fetching everything again "
                   "(unsent changes are kept)\n");
            break;
        case NS_SYNC_CONNECTED:
            printf("connected\n");
            break;
        default:
            break;
        }
    }
    fflush(stdout);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    ns_client_sync_stop(h->data);
}

static void print_sync_stats(const cli *x, const ns_sync_stats *st)
{
    if (x->json) {
        bool first = true;
        putchar('{');
        json_u64_field(&first, "pushed", st->pushed);
        json_u64_field(&first, "rejected", st->rejected);
        json_u64_field(&first, "received", st->received);
        json_u64_field(&first, "open_conflicts", st->open_conflicts);
        json_u64_field(&first, "cursor_resets", st->cursor_resets);
        json_bool_field(&first, "conflicts_listed", st->conflicts_listed);
        json_u64_field(&first, "round_trips", st->round_trips);
        json_u64_field(&first, "pull_requests", st->pull_requests);
        fputs("}\n", stdout);
        return;
    }
    printf("synced: %llu change%s sent (%llu refused: see napsync status), %llu received, %llu "
           "open conflict%s%s\n",
           (unsigned long long)st->pushed, st->pushed == 1 ? "" : "s",
           (unsigned long long)st->rejected, (unsigned long long)st->received,
           (unsigned long long)st->open_conflicts, st->open_conflicts == 1 ? "" : "s",
           st->conflicts_listed ? "" : " (this server does not list conflicts)");
}

/* Runs one sync (or a watch) on the connected client. */
static int run_sync(cli *x, bool watch, bool events)
{
    ns_sync_options so = {
        .plan_ids = x->plans,
        .nplans = x->nplans,
        .directory = opt_value(x, "--directory") != NULL,
        .watch = watch,
        .on_event = events ? print_event : NULL,
        .event_ud = x,
    };
    uv_signal_t sigs[2];
    int nsig = 0;
    if (watch) {
        const int which[2] = {SIGINT, SIGTERM};
        for (int i = 0; i < 2; i++) {
            if (uv_signal_init(ns_client_loop(x->client), &sigs[nsig]) == 0) {
                sigs[nsig].data = x->client;
                uv_signal_start(&sigs[nsig], on_stop_signal, which[i]);
                nsig++;
            }
        }
    }
    ns_sync_stats st;
    ns_error e;
    int rc = ns_client_sync_wait(x->client, &so, &st, &e);
    for (int i = 0; i < nsig; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
    if (nsig)
        uv_run(ns_client_loop(x->client), UV_RUN_NOWAIT);
    if (rc != NS_OK)
        return fail(x, e.status, e.message);
    print_sync_stats(x, &st);
    return 0;
}

static int cmd_sync(cli *x)
{
    int rc = require_store(x);
    if (rc != 0)
        return rc;
    bool watch = opt_value(x, "--watch") != NULL;
    if (watch) {
        /* the sync connects itself, and again after every loss */
        rc = new_client(x);
        if (rc != 0)
            return rc;
        return run_sync(x, true, true);
    }
    /* The sync connects itself, so that its requests go out right behind
     * Hello (docs/client.md "Round trips"). */
    rc = new_client(x);
    if (rc != 0)
        return rc;
    rc = run_sync(x, false, false);
    disconnect_client(x);
    return rc;
}

static int cmd_resolve(cli *x)
{
    const char *take = opt_value(x, "--take");
    const char *value = opt_value(x, "--value");
    if ((take == NULL) == (value == NULL))
        return usage_error(x, "give either --take mine|theirs or --value V");
    ns_take how = NS_TAKE_VALUE;
    if (take && strcmp(take, "mine") == 0)
        how = NS_TAKE_MINE;
    else if (take && strcmp(take, "theirs") == 0)
        how = NS_TAKE_THEIRS;
    else if (take)
        return usage_error(x, "--take: \"%s\" is neither mine nor theirs", shown(take));
    int rc = require_store(x);
    if (rc != 0)
        return rc;
    rc = connect_client(x);
    if (rc != 0)
        return rc;
    uint64_t version = 0;
    ns_error e;
    if (ns_client_resolve_wait(x->client, x->args[0], how, value, &version, &e) != NS_OK)
        return fail(x, e.status, e.message);
    if (x->json) {
        bool first = true;
        putchar('{');
        json_str_field(&first, "resolved", x->args[0]);
        json_u64_field(&first, "version", version);
        fputs("}\n", stdout);
    } else {
        printf("resolved conflict %s: the record is now at version %llu\n", x->args[0],
               (unsigned long long)version);
    }
    rc = run_sync(x, false, false);
    disconnect_client(x);
    return rc;
}

/* ---- history ------------------------------------------------------------------ */

/* A value of a change for the text output: null bare, numbers, booleans
 * and dates bare, the rest quoted, escaped and cut after CLI_HISTORY_SHOWN
 * bytes (at a character boundary). */
static void print_change_value(const char *kind, const char *value)
{
    if (value == NULL) {
        fputs("null", stdout);
        return;
    }
    if (strcmp(kind, "text") != 0 && strcmp(kind, "set") != 0) {
        fputs(value, stdout);
        return;
    }
    putchar('"');
    const unsigned char *p = (const unsigned char *)value;
    size_t shown_bytes = 0;
    while (*p) {
        size_t n = *p < 0x20 || *p == '"' || *p == '\\' ? 1 : utf8_len(p);
        if (n == 0)
            n = 1;
        if (shown_bytes + n > CLI_HISTORY_SHOWN) {
            fputs("…", stdout);
            break;
        }
        if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p == '\t')
            fputs("\\t", stdout);
        else if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            fwrite(p, 1, n, stdout);
        shown_bytes += n;
        p += n;
    }
    putchar('"');
}

/* "2026-11-24T10:00:00.123456Z" to the second: "2026-11-24T10:00:00Z". */
static void short_time(const char *at, char *out, size_t cap)
{
    const char *dot = strchr(at, '.');
    if (dot != NULL && dot[strcspn(dot, "Z")] == 'Z')
        snprintf(out, cap, "%.*sZ", (int)(dot - at), at);
    else
        snprintf(out, cap, "%s", at);
}

typedef struct {
    const cli *x;
    uint64_t shown;
    uint64_t last_version;
} history_walk;

static int print_revision(const ns_revision_view *r, void *ud)
{
    history_walk *w = ud;
    const cli *x = w->x;
    w->shown++;
    w->last_version = r->version;
    if (x->json) {
        bool first = true;
        putchar('{');
        json_u64_field(&first, "version", r->version);
        json_str_field(&first, "at", r->at);
        json_str_field(&first, "changed_by", r->changed_by);
        json_str_field(&first, "device", r->device);
        json_str_field(&first, "op", r->op);
        json_str_field(&first, "mutation_id", r->mutation_id);
        json_bool_field(&first, "deleted", r->deleted);
        json_field(&first, "changes");
        putchar('[');
        for (size_t i = 0; i < r->nchanges; i++) {
            const ns_field_change_view *c = &r->changes[i];
            bool f2 = true;
            printf("%s{", i ? "," : "");
            json_str_field(&f2, "field", c->name);
            json_str_field(&f2, "kind", c->kind);
            json_field(&f2, "before");
            json_value(c->kind, c->before);
            json_field(&f2, "after");
            json_value(c->kind, c->after);
            putchar('}');
        }
        fputs("]}\n", stdout);
        return 0;
    }
    char when[64];
    short_time(r->at, when, sizeof(when));
    printf("v%llu  %s  %s", (unsigned long long)r->version, when, r->changed_by);
    if (r->device[0])
        printf(" (%s)", r->device);
    printf("  %s", r->op);
    bool create = strcmp(r->op, "create") == 0;
    for (size_t i = 0; i < r->nchanges; i++) {
        const ns_field_change_view *c = &r->changes[i];
        printf("%s%s: ", i ? "; " : "  ", c->name);
        if (!create) {
            print_change_value(c->kind, c->before);
            fputs(" → ", stdout);
        }
        print_change_value(c->kind, c->after);
    }
    if (r->deleted && strcmp(r->op, "delete") != 0)
        fputs("  (deleted)", stdout);
    putchar('\n');
    return 0;
}

static int cmd_history(cli *x)
{
    uint64_t limit = 50;
    const char *lv = opt_value(x, "--limit");
    if (lv && ns_conf_uint(lv, 1, CLI_MAX_HISTORY, &limit) != 0)
        return usage_error(x, "--limit: \"%s\" is not a number from 1 to %u", shown(lv),
                           CLI_MAX_HISTORY);
    int rc = connect_client(x);
    if (rc != 0)
        return rc;
    history_walk w = {.x = x};
    int more = 1;
    while (more && w.shown < limit) {
        uint64_t want = limit - w.shown;
        uint64_t before = w.last_version;
        ns_error e;
        if (ns_client_history_wait(x->client, x->args[0], x->args[1], before,
                                   (uint32_t)(want < CLI_HISTORY_PAGE ? want : CLI_HISTORY_PAGE),
                                   print_revision, &w, &more, &e) != NS_OK)
            return fail(x, e.status, e.message);
        if (w.last_version == before)
            break; /* an empty page: nothing older */
    }
    if (more && !x->json)
        printf("(older versions remain: napsync history %s %s --limit %llu)\n", x->args[0],
               x->args[1],
               (unsigned long long)(limit < CLI_MAX_HISTORY / 2 ? limit * 2 : CLI_MAX_HISTORY));
    disconnect_client(x);
    return 0;
}

/* ---- import and export (import.c, export.c) -------------------------------- */

static int env_connect(void *ud, ns_client **out)
{
    cli *x = ud;
    int rc = connect_client(x);
    *out = x->client;
    return rc;
}

static void env_disconnect(void *ud)
{
    disconnect_client(ud);
}

static int env_fail(void *ud, ns_status st, const char *msg)
{
    return fail(ud, st, msg);
}

static int cmd_import(cli *x)
{
    cli_env env = {env_connect, env_disconnect, env_fail, x, x->json};
    return cli_import(&env, x->args[0], x->args[1], opt_value(x, "--format"),
                      opt_value(x, "--dry-run") != NULL);
}

static int cmd_export(cli *x)
{
    cli_env env = {env_connect, env_disconnect, env_fail, x, x->json};
    const char *o = opt_value(x, "-o");
    return cli_export(&env, x->args[0], x->args[1], opt_value(x, "--format"),
                      o ? o : opt_value(x, "--output"), opt_value(x, "--force") != NULL);
}

/* ---- report (report.c) ------------------------------------------------------- */

static int cmd_report(cli *x)
{
    ns_cli_report_args a = {
        .kind = x->args[0],
        .plan = opt_value(x, "--plan"),
        .nplans = x->nplans,
        .year = opt_value(x, "--year"),
        .region = opt_value(x, "--region"),
        .format = opt_value(x, "--format"),
        .output = opt_value(x, "-o"),
        .force = opt_value(x, "--force") != NULL,
        .json = opt_value(x, "--json") != NULL,
    };
    ns_error e;
    if (ns_cli_report_check(&a, &e) != NS_OK)
        return usage_error(x, "%s", e.message);
    int rc = connect_client(x);
    if (rc != 0)
        return rc;
    if (ns_cli_report_run(x->client, &a, &e) != NS_OK)
        return fail(x, e.status, e.message);
    disconnect_client(x);
    return 0;
}

/* ---- main ------------------------------------------------------------------- */

/* --json must shape even the errors found while parsing the rest. */
static bool wants_json(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--json") == 0)
            return true;
    }
    return false;
}

static int run(cli *x, int argc, char **argv)
{
    x->json = wants_json(argc, argv);
    int rc = parse_args(x, argc, argv);
    if (rc != 0)
        return rc;
    if (x->version) {
        printf("napsync %s\n", ns_version());
        return 0;
    }
    if (x->help) {
        if (x->cmd && x->cmd->run != cmd_help)
            print_command_help(stdout, x->cmd);
        else if (x->cmd && x->nargs > 0)
            return cmd_help(x);
        else
            print_global_help(stdout);
        return 0;
    }
    if (x->cmd == NULL) {
        char names[256] = "";
        for (size_t i = 0; i < NCOMMANDS; i++) {
            size_t n = strlen(names);
            snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "", commands[i].name);
        }
        return usage_error(x, "no command given (commands: %s)", names);
    }
    if (x->nargs < x->cmd->min_args)
        return usage_error(x, "%s needs %s", x->cmd->name, x->cmd->usage);
    if (x->cmd->connects || x->cmd->store) {
        char err[NS_SETTINGS_MAX_VALUE + 512];
        if (ns_settings_load(&x->settings, &x->flags, err, sizeof(err)) != 0)
            return fail(x, NS_ERR_CONFIG, err);
    }
    return x->cmd->run(x);
}

int main(int argc, char **argv)
{
    /* A server that goes away mid-write must give an error, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    static cli x; /* the settings are large */
    int rc = run(&x, argc, argv);
    ns_client_free(x.client);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "napsync: cannot write the output\n");
        return rc ? rc : EXIT_FAILURE_OTHER;
    }
    return rc;
}
