/* `napsync report`: reports computed by the server (docs/reports.md),
 * written as Markdown, CSV, HTML or the server's JSON.
 *
 *   napsync report progress --plan ID [--year Y] [--format md|csv|html|json] [-o FILE]
 *   napsync report region --region ID [--format ...] [-o FILE]
 *   napsync report coverage [--json] [--format ...] [-o FILE]
 *
 * napsync.c parses the command line (its table lists the options below)
 * and connects; this module checks what it was given, asks the server,
 * parses the answer with jansson and writes it (report_render.h). */
#ifndef NS_CLI_REPORT_H
#define NS_CLI_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "napsync.h"

#define NS_CLI_REPORT_SUMMARY "compute a report on the server: progress, region, coverage"
#define NS_CLI_REPORT_USAGE                                                                        \
    "progress|region|coverage [--plan ID] [--year Y] [--region ID] [--format md|csv|html|json] "   \
    "[-o FILE [--force]] [--json]"
#define NS_CLI_REPORT_HELP                                                                         \
    "Asks the server for a report computed from what this device's organisation may\n"             \
    "read (only approved values count) and writes it to standard output, or to FILE:\n"            \
    "  progress  the annual progress report of plan ID (--plan): per pillar, objective\n"          \
    "            and indicator the baseline, the target, the latest approved value, the\n"         \
    "            % of target and the trend; per organisation its actions, reporting\n"             \
    "            (on time, late, overdue) and budget; the budget costed, allocated\n"              \
    "            and spent per funding source; the reports overdue. --year Y\n"                    \
    "            (1990-2100) is the reporting year, by default the latest with an\n"               \
    "            approved value.\n"                                                                \
    "  region    the regional indicators of the Regional Action Plans of regional\n"               \
    "            organisation ID (--region), each with its member states' latest\n"                \
    "            approved values, their aggregate and the members that have not\n"                 \
    "            reported.\n"                                                                      \
    "  coverage  shares of the adopted National Action Plans with a costed budget,\n"              \
    "            indicators disaggregated by sex, actions or indicators per thematic\n"            \
    "            tag, and more.\n"                                                                 \
    "--format: md (Markdown, the default), csv (one RFC 4180 table), html (one\n"                  \
    "self-contained page with SVG charts) or json (the server's document;\n"                       \
    "the same as --json). -o FILE writes FILE, only once the report is complete;\n"                \
    "an existing FILE is replaced only with --force. See docs/reports.md for every\n"              \
    "definition."

/* The command's arguments as napsync.c parsed them; NULL when not given. */
typedef struct {
    const char *kind;   /* the sub-command */
    const char *plan;   /* --plan */
    size_t nplans;      /* how many --plan were given */
    const char *year;   /* --year */
    const char *region; /* --region */
    const char *format; /* --format */
    const char *output; /* -o */
    bool force;         /* --force: -o may replace an existing file */
    bool json;          /* --json */
} ns_cli_report_args;

/* Checks the arguments before anything connects. NS_OK, or
 * NS_ERR_INVALID_ARGUMENT with a message naming the option. */
int ns_cli_report_check(const ns_cli_report_args *a, ns_error *err);

/* Asks the connected client c for the report and writes it. NS_OK, or the
 * failure with its message (the server's error, a malformed answer, the
 * output file). */
int ns_cli_report_run(ns_client *c, const ns_cli_report_args *a, ns_error *err);

#endif
