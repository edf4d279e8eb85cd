/* Statements under a reader context: row-level security (sql/005) shows a
 * statement only what its reader may see, and the reader is named per
 * transaction (the setting napsync.reader). Every read the daemon makes on
 * behalf of a principal goes through here, with that principal's id; the
 * sync engine names itself "engine" in its own transactions. */
#ifndef NS_READER_H
#define NS_READER_H

#include "db.h"

#define NS_READER_ENGINE "engine"
/* The reports' reader: "report:" and the principal's UUID (sql/005). */
#define NS_READER_REPORT_PREFIX "report:"

/* The statement that names the reader ($1) for the rest of a transaction. */
#define NS_READER_SET_SQL "SELECT set_config('napsync.reader', $1::text, true)"

/* Runs sql ($1..$n, values copied) like ns_db_query, in a transaction of
 * its own whose reader is reader (a principal's UUID; copied). cb is called
 * exactly once, from the loop: with the statement's result (NS_DB_OK or
 * NS_DB_QUERY_FAILED, res valid during the call), or with the failure of
 * the transaction around it (NS_DB_UNAVAILABLE, NS_DB_SHUTDOWN, ...; res
 * NULL). On a non-OK return cb is never called. The connection is held
 * until the transaction's ROLLBACK (it only reads), which travels with the
 * statement: no extra round trip. */
__attribute__((warn_unused_result)) ns_db_status ns_reader_query(ns_db *db, const char *reader,
                                                                 const char *sql, int nparams,
                                                                 const char *const *values,
                                                                 ns_db_cb cb, void *ud);

#endif
