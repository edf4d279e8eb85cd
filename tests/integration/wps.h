/* The values a test record needs to be valid under the WPS domain model
 * (sql/003_wps_model.sql), in one place for every fixture: pushtest.h turns
 * them into field specs, harness.h into napsync put assignments and wire
 * fields, and the tests that write rows with SQL (test_feed, test_registry)
 * use them as literals. A test that checks another value of one of these
 * fields sets it itself.
 *
 * What 003 requires: a plan has a title, a kind (nap, rap, local,
 * implementation: a RAP needs a regional organisation as owner, an
 * implementation plan the plan it implements, so the tests use nap), a
 * status (draft, adopted, archived: a draft is readable by its owner's
 * organisation only, so the tests choose it) and a period; the owner is the
 * pusher's organisation, set by the engine. An indicator has a title and a
 * value type; a baseline needs its date. An indicator report names its
 * indicator, has a period inside its plan's and a status, and is the only
 * live report of its indicator for that period. */
#ifndef NS_TEST_WPS_H
#define NS_TEST_WPS_H

#define NST_PLAN_KIND  "nap"
#define NST_PLAN_START "2024-01-01"
#define NST_PLAN_END   "2028-12-31"

/* number: any decimal (percentages lie in 0..100, yes_no is 0 or 1). */
#define NST_INDICATOR_TYPE "number"

/* Inside NST_PLAN_START..NST_PLAN_END. */
#define NST_REPORT_START "2025-01-01"
#define NST_REPORT_END   "2025-12-31"

#endif
