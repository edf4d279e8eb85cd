/* `napsyncd admin ...`: the directory (organisations, people, their roles
 * and devices) and the change feed's epoch, administered from the command
 * line against the database the settings name (docs/operations.md).
 *
 * Writes go through PostgreSQL like an administrator's SQL: sql/001's
 * functions (napsync_register_device, napsync_revoke_device) and plain
 * INSERTs and UPDATEs, so that sql/009's triggers give every change a new
 * version, a revision by "the administrator" and a feed position. The
 * directory's row-level security lets only a role that bypasses it write
 * that way: the cluster's superuser or a BYPASSRLS role; the admin
 * commands say so, and exit NS_ADMIN_DENIED, when given another.
 *
 * A command of its own, never part of the running daemon: it uses blocking
 * libpq and exits. */
#ifndef NS_ADMIN_H
#define NS_ADMIN_H

/* Exit statuses of `napsyncd admin` (with --json, the error's name in
 * parentheses is printed as {"error":NAME,"message":...}). */
typedef enum {
    NS_ADMIN_OK = 0,
    NS_ADMIN_FAILED = 1,    /* cannot connect ("unavailable"), the schema is too old, another
                             * database failure ("failed") */
    NS_ADMIN_USAGE = 2,     /* unknown command or option, a missing or malformed argument, a
                             * value the schema's rules refuse ("invalid_argument") */
    NS_ADMIN_NOT_FOUND = 3, /* the organisation, person, role or device named does not exist
                             * ("not_found") */
    NS_ADMIN_EXISTS = 4,    /* it exists already, differently ("already_exists") */
    NS_ADMIN_DENIED = 5,    /* the database role may not do it ("permission_denied") */
} ns_admin_exit;

/* Runs one admin command: argv[0..argc) are the words after "admin" (the
 * caller keeps them). conninfo is the libpq connection string of the
 * settings, checked by ns_db_conninfo_check, never printed; NULL when none
 * is set (only --help works then). Output goes to stdout, errors to stderr.
 * Returns an ns_admin_exit. */
int ns_admin_main(const char *conninfo, int argc, char **argv);

#endif
