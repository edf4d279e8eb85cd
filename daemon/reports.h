/* Reports (napsync.v1.ReportRequest): figures computed by PostgreSQL
 * (sql/006_reports.sql) from what the principal may read, answered as one
 * JSON document in a ReportResult (docs/reports.md).
 *
 * Kinds and their fields (a field a kind does not use must be empty or 0,
 * so that a mistaken request is refused rather than half-answered):
 *   "progress"  plan_id (UUID), year (1990..2100, or 0: the latest with data)
 *   "region"    region_id (UUID of a regional organisation)
 *   "coverage"  none
 *
 * Readability is the feed's (NS_FEED_PLAN_READABLE), applied inside the
 * SQL functions: a progress report of a plan that does not exist or is not
 * readable, and a region that is not a regional organisation, are
 * NOT_FOUND, with one message for both (nobody learns which drafts exist).
 *
 * Size: the answer goes out whole or not at all. The statement returns the
 * JSON only when it is at most max_frame bytes (its size otherwise, so an
 * oversized report never crosses into the daemon), and the packed Envelope
 * is measured again before the callback: a report that does not fit in
 * max_frame is refused with FRAME_TOO_LARGE (not fatal) and its size, never
 * truncated.
 *
 * One parameterised statement per request, no state between requests: the
 * answer comes from the pool's callback, which ns_db_close calls
 * (SHUTTING_DOWN) for a query still running. Threading: the loop's thread
 * only. */
#ifndef NS_REPORTS_H
#define NS_REPORTS_H

#include <stddef.h>

#include "auth.h"
#include "db.h"
#include "napsync.pb-c.h"

/* Longest kind accepted ("progress"); anything longer is not a kind. */
#define NS_REPORTS_MAX_KIND 16
#define NS_REPORTS_MIN_YEAR 1990
#define NS_REPORTS_MAX_YEAR 2100

/* code 0: result (valid during the call only: its json points into the
 * database result), message NULL. Else a Napsync__V1__ErrorCode (NOT_FOUND,
 * FRAME_TOO_LARGE, INVALID_ARGUMENT, UNAVAILABLE, SHUTTING_DOWN, INTERNAL)
 * and a message for the client, result NULL. */
typedef void (*ns_reports_cb)(int code, const char *message,
                              const Napsync__V1__ReportResult *result, void *ud);

/* Answers a ReportRequest. db is borrowed until cb has been called; who and
 * req are read during the call only. max_frame: the largest Envelope the
 * answer may pack to (the smallest frame a client accepts). Returns 0: cb
 * is called exactly once, later, from the loop. Else an error code
 * (INVALID_ARGUMENT for a field of the request, UNAVAILABLE or
 * SHUTTING_DOWN when the query cannot be queued, INTERNAL) with a message
 * in err; cb is never called. */
__attribute__((warn_unused_result)) int ns_reports_query(ns_db *db, const ns_identity_info *who,
                                                         const Napsync__V1__ReportRequest *req,
                                                         size_t max_frame, ns_reports_cb cb,
                                                         void *ud, char *err, size_t errlen);

#endif
