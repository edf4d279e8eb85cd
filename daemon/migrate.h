/* Schema migrations: the numbered files sql/NNN_name.sql, applied in order,
 * each in its own transaction, recorded with a checksum in
 * napsync_migrations. A landed migration is never edited: a changed checksum
 * stops the daemon. Several daemons starting at once serialise on an
 * advisory lock.
 *
 * Runs before the event loop starts (or alone, for `napsyncd --migrate`),
 * so it uses blocking libpq. */
#ifndef NS_MIGRATE_H
#define NS_MIGRATE_H

#include <stddef.h>

/* Applies what is missing. *applied is set to the number of migrations
 * applied now. Returns 0, or -1 with a message in err. */
__attribute__((warn_unused_result)) int ns_migrate_run(const char *conninfo, const char *sql_dir,
                                                       int *applied, char *err, size_t errlen);

/* Returns 1 if every migration in sql_dir is applied, 0 if not, -1 on error. */
int ns_migrate_check(const char *conninfo, const char *sql_dir, char *err, size_t errlen);

/* The highest migration number in sql_dir (reads the directory only), or
 * -1 with a message in err. */
int ns_migrate_latest(const char *sql_dir, char *err, size_t errlen);

#endif
