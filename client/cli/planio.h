/* `napsync import` and `napsync export` (import.c, export.c): a plan and
 * everything in it, to and from a JSON or CSV plan file (planfile.h,
 * docs/import-export.md). napsync.c parses the command line and lends
 * them its connection and its way of reporting failures. */
#ifndef NS_PLANIO_H
#define NS_PLANIO_H

#include <stdbool.h>

#include "napsync.h"

typedef struct {
    /* Connects with the command's settings: 0 with *out connected (the
     * client stays napsync.c's), or an exit code after reporting why. */
    int (*connect)(void *ud, ns_client **out);
    /* Says Goodbye on a connection made by connect. */
    void (*disconnect)(void *ud);
    /* Reports a failure (stderr; with --json also stdout) and returns the
     * exit code for st. */
    int (*fail)(void *ud, ns_status st, const char *msg);
    void *ud;
    bool json; /* --json: results and problems as JSON lines on stdout */
} cli_env;

/* napsync import WHAT FILE: reads and checks the whole file, then has the
 * server check every record (a dry run), then imports them all in one
 * transaction, or nothing. format: "json", "csv" or NULL (from the file
 * name). dry_run: stop after the server's check. Returns the exit code. */
int cli_import(const cli_env *env, const char *what, const char *file, const char *format,
               bool dry_run);

/* napsync export WHAT ID: the plan as the server has it, in a plan file
 * (output NULL: standard output; an existing output file is replaced only
 * with force: outfile.h). format: "json", "csv" or NULL (from the output's
 * name, else JSON). Returns the exit code. */
int cli_export(const cli_env *env, const char *what, const char *plan_id, const char *format,
               const char *output, bool force);

#endif
