/* History (napsync.v1.History): the versions of one record, newest first,
 * each with who changed it (principal and device names), when, the op,
 * the mutation and the fields that differ from the version before.
 *
 * Served from sync_revisions (before and after are whole field sets, so a
 * version's changes are the fields whose value differs between the two;
 * absent and null are the same). The diff is computed by PostgreSQL, so
 * only the changed fields travel; their values are typed by the registry
 * (fields_json) and put on the wire with fields_pb. A field the registry
 * no longer has (a column a later migration dropped) is left out.
 *
 * Readability: the plan the record belongs to now (the tenant of its
 * latest revision) must be readable by the principal, by the feed's rule
 * (NS_FEED_PLAN_READABLE). A record that is not readable, or has no
 * revision, is NOT_FOUND: the two are not told apart, so nobody learns
 * which drafts exist. Versions from a time the record belonged to a plan
 * the principal cannot read are left out as well.
 *
 * Page: versions below before_version (0: from the latest), at most limit
 * (0: NS_HISTORY_DEFAULT_LIMIT, capped at NS_HISTORY_MAX_LIMIT) and, packed,
 * about NS_HISTORY_MAX_PAGE_BYTES (one version always goes out alone if it
 * is larger). more: older versions remain.
 *
 * One parameterised statement per request; no state between requests, so
 * nothing to open or close: the answer comes from the pool's callback,
 * which ns_db_close calls (SHUTTING_DOWN) for a query still running.
 * Threading: the loop's thread only. */
#ifndef NS_HISTORY_H
#define NS_HISTORY_H

#include <stddef.h>

#include "auth.h"
#include "db.h"
#include "frame.h"
#include "napsync.pb-c.h"
#include "registry.h"

#define NS_HISTORY_DEFAULT_LIMIT 50
#define NS_HISTORY_MAX_LIMIT     500
/* Leaves room under the smallest frame a client accepts, as the feed does. */
#define NS_HISTORY_MAX_PAGE_BYTES (NS_FRAME_DEFAULT_MAX - 4096u)

/* code 0: page (valid during the call only; its strings point into the
 * database result), message NULL. Else a Napsync__V1__ErrorCode (NOT_FOUND,
 * UNAVAILABLE, SHUTTING_DOWN, INTERNAL) and a message for the client, page
 * NULL. */
typedef void (*ns_history_cb)(int code, const char *message, const Napsync__V1__HistoryPage *page,
                              void *ud);

/* Answers a History request. db and reg are borrowed: db until cb has been
 * called, reg as long as the pool may call back (the server's registry
 * outlives its pool). who and req are read during the call only. Returns
 * 0: cb is called exactly once, later, from the loop. Else an error code
 * (UNKNOWN_ENTITY for the type, INVALID_ARGUMENT for the record id or
 * before_version, UNAVAILABLE or SHUTTING_DOWN when the query cannot be
 * queued, INTERNAL) with a message in err; cb is never called. */
__attribute__((warn_unused_result)) int ns_history_query(ns_db *db, const ns_registry *reg,
                                                         const ns_identity_info *who,
                                                         const Napsync__V1__History *req,
                                                         ns_history_cb cb, void *ud, char *err,
                                                         size_t errlen);

#endif
