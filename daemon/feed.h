/* The change feed (design §4, sync design "Feed, Pull, Subscribe"): Pull
 * pages, cursors, scopes resolved to tenants, live subscriptions woken by
 * NOTIFY 'napsync_feed'.
 *
 * Cursor: "v1.<epoch>.<seq>", where epoch is sync_feed_head.epoch (a
 * lowercase UUID) and seq a feed position. The empty cursor is the start
 * of the feed. A well-formed cursor of another epoch, or above the head,
 * is CURSOR_UNKNOWN; anything else that is not exactly this form is
 * INVALID_ARGUMENT.
 *
 * Scopes: 1 to NS_FEED_MAX_SCOPES, each a plan or an organisation by UUID
 * (any hex case). A plan is readable when the principal's organisation owns
 * it (plans.owner_id) or its status is not 'draft'. A plan scope names one
 * plan: PERMISSION_DENIED if it is not readable or does not exist (the two
 * are not told apart, so nobody learns which drafts exist). An
 * organisation scope stands for every readable plan it owns, now: scopes
 * are resolved again in every page query, in the page's own snapshot, so a
 * plan created (or published) later is part of the next page.
 *
 * Tenants: every page lists in tenant_ids the readable plans its scopes
 * resolved to in its snapshot, sorted, at most 10,000 (then
 * tenant_ids_truncated): the client purges the records of a tenant that
 * left the set and backfills one that joined it.
 *
 * Every page is one statement: the head, the epoch, the readable tenants and
 * at most page_size + 1 feed rows joined with their revisions, all in one
 * snapshot. seq is assigned under sync_feed_head's row lock, held until
 * COMMIT, so every change numbered below a visible head is visible too: a
 * reader of "seq > cursor" never skips a change that commits late.
 *
 * Page: at most page_size records (0 = default_page_size, capped at
 * max_page_size) and, packed, about max_page_bytes (a record larger than
 * that still goes out alone). more = another page is ready now;
 * next_cursor = the last record's seq when more, else the head read in the
 * same snapshot (every change in scope up to the head was in the page), so
 * an idle client's cursor moves past changes outside its scopes. Memory per
 * page query is bounded by the page, whatever the backlog.
 *
 * Subscriptions: the first pages catch the subscriber up (the first page
 * is always delivered, empty or not: it acknowledges the Subscribe and
 * carries the head as the cursor; then pages follow while more). Once
 * caught up, every NOTIFY 'napsync_feed' (payload: the new head) wakes the
 * subscribers whose cursor is below it, and a NULL payload (the listener
 * (re)connected, so something may have been missed) wakes all of them. A
 * woken subscriber runs one page query; a page is delivered only when it
 * holds records or its tenant set differs from the last one delivered. At most one query per
 * subscriber is in flight; wake-ups meanwhile coalesce into one more query after it. At most
 * max_sub_queries subscription queries run at once over the whole feed; the others wait their turn
 * in FIFO order (a subscriber with more pages to send goes to the back after each page), so
 * subscribers never crowd the pool's queue.
 *
 * The fast path: a subscriber that is caught up (its last page delivered,
 * no query due or running, not paused, at most 64 tenants, a complete
 * set) runs no query of its own when woken. One shared read per NOTIFY
 * (coalesced while one is in flight), as the engine, reads in one snapshot
 * the head, the epoch, at most 1,000 feed rows after the lowest such
 * cursor with their plan's owner and status and whether the write opened or
 * resolved a conflict, and fingerprints of the plans and of the principals
 * and roles. Each subscriber's page is then picked in C with policy.h's
 * twins of the SQL rules, from the tenants its last own page listed; the
 * records are built once and shared by every page of the read (the
 * callback must only read them). A subscriber goes back to its own query
 * (row-level security, scopes resolved again) when that read cannot decide
 * for it: a plan row of its scopes or tenants (any plan row with an
 * organisation scope), a fingerprint that differs from the one its last own
 * query started after, another epoch, more than one page of records, a
 * failed or cut read. A directory change of its principal, roles or
 * organisation (or one seen only by the fingerprint) keeps it on its own
 * queries for good: the session's roles may no longer be the database's.
 * Its pages set conflicts_unchanged when no row of its tenants opened or
 * resolved a conflict. docs/authorisation.md states the trade.
 *
 * Threading: everything runs on the loop's thread. Callbacks are never
 * called from inside the call that registered them. */
#ifndef NS_FEED_H
#define NS_FEED_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "db.h"
#include "napsync.pb-c.h"
#include "registry.h"

#define NS_FEED_CHANNEL           "napsync_feed"
#define NS_FEED_MAX_SCOPES        64
#define NS_FEED_DEFAULT_PAGE_SIZE 500
#define NS_FEED_MAX_PAGE_SIZE     5000
/* "v1." + UUID + "." + at most 19 digits (int64). */
#define NS_FEED_CURSOR_MAX 59

typedef struct ns_feed ns_feed;
typedef struct ns_feed_sub ns_feed_sub;

typedef struct {
    uint32_t default_page_size; /* 0: NS_FEED_DEFAULT_PAGE_SIZE; also a subscription's page */
    uint32_t max_page_size;     /* 0: NS_FEED_MAX_PAGE_SIZE; at most NS_FEED_MAX_PAGE_SIZE */
    /* Packed size a page's records may reach before the page is cut (at
     * least one record per page). Leave room under the smallest frame a
     * client accepts. 0: NS_FRAME_DEFAULT_MAX minus 4 KiB. */
    uint32_t max_page_bytes;
    uint32_t max_sub_queries; /* subscription page queries in flight at once; 0: 4 */
    /* A subscription query that could not run (pool unavailable or queue
     * full) is retried after this long; 0: 1000 ms. */
    uint32_t retry_ms;
} ns_feed_options;

/* The result of a Pull, or one delivery of a subscription.
 *  code 0: page is the ChangePage, owned by the feed and valid during the
 *    call only (its strings point into the database result); message NULL.
 *  code != 0: a Napsync__V1__ErrorCode (UNAVAILABLE, SHUTTING_DOWN,
 *    CURSOR_UNKNOWN, PERMISSION_DENIED, INTERNAL); message (valid during the
 *    call) is fit for the client; page NULL. For a subscription this is the
 *    last call: it has ended (the owner still calls ns_feed_unsubscribe).
 * The callback may call any ns_feed_* function, ns_feed_unsubscribe of this
 * very subscription included; it must not call ns_feed_close. */
typedef void (*ns_feed_page_cb)(int code, const char *message, const Napsync__V1__ChangePage *page,
                                void *ud);

/* The readability rule and the scopes as SQL and parameters, for every
 * module that answers by scope (conflicts.c): one rule, one place.
 * NS_FEED_PLAN_READABLE: P (a plans row's alias) is readable by the
 * principal whose organisation is the uuid parameter ORG.
 * NS_FEED_SCOPE_CTES: two common table expressions, "readable" (id: every
 * readable plan the scopes name or whose owner they name, resolved in the
 * statement's snapshot) and "denied" (id: the smallest named plan that is
 * not readable or does not exist, as text; NULL when there is none), over
 * the parameters PLANS and ORGS (uuid[] literals) and ORG. */
/* Who a revision made through SQL, not by a principal, is shown as. */
#define NS_FEED_ADMINISTRATOR "administrator"

#define NS_FEED_PLAN_READABLE(P, ORG)                                                              \
    "(" P ".owner_id = " ORG "::uuid OR " P ".status IS DISTINCT FROM 'draft')"
#define NS_FEED_SCOPE_CTES(PLANS, ORGS, ORG)                                                       \
    " readable AS ("                                                                               \
    "  SELECT p.id FROM plans p"                                                                   \
    "   WHERE (p.id = ANY(" PLANS "::uuid[]) OR p.owner_id = ANY(" ORGS "::uuid[]))"               \
    "     AND " NS_FEED_PLAN_READABLE(                                                             \
        "p", ORG) "  UNION ALL SELECT x.id FROM unnest(" PLANS "::uuid[]) AS x(id)"                \
                  "   WHERE x.id = '" NS_DIRECTORY_TENANT "'::uuid),"                              \
                  " denied AS ("                                                                   \
                  "  SELECT min(x.id::text) AS id FROM unnest(" PLANS "::uuid[]) AS x(id)"         \
                  "   WHERE NOT EXISTS (SELECT 1 FROM readable r WHERE r.id = x.id))"

/* The parameters of NS_FEED_SCOPE_CTES. */
typedef struct {
    char org[37]; /* the principal's organisation, lowercase */
    char *plans;  /* uuid[] literal; owns the one allocation (orgs points into it) */
    char *orgs;
} ns_feed_scopes;

/* Checks scopes as Pull does (1 to NS_FEED_MAX_SCOPES, each a plan or an
 * organisation by UUID) and fills out. Returns 0 (free with
 * ns_feed_scopes_free), or INVALID_ARGUMENT / INTERNAL with a message in
 * err and nothing to free. */
__attribute__((warn_unused_result)) int
ns_feed_scopes_parse(const ns_identity_info *who, size_t nscopes, Napsync__V1__Scope *const *scopes,
                     ns_feed_scopes *out, char *err, size_t errlen);
void ns_feed_scopes_free(ns_feed_scopes *sc);

/* Creates the feed and LISTENs on NS_FEED_CHANNEL through db (one feed
 * per pool: the channel can be registered once). db and reg are borrowed
 * and must outlive the feed; opt may be NULL (defaults). Returns 0, or -1
 * (bad options, out of memory, or ns_db_listen refused); on -1 there is
 * nothing to free, but the loop must run to release a handle already
 * made. */
__attribute__((warn_unused_result)) int ns_feed_open(uv_loop_t *loop, ns_db *db,
                                                     const ns_registry *reg,
                                                     const ns_feed_options *opt, ns_feed **out);

/* Frees the feed. Call it only after ns_db_close(db) has been called (the
 * LISTEN registration cannot be undone and ns_db_close answers every
 * query still owed, so nothing of the feed is called after that), and
 * after every subscription was unsubscribed (subscriptions still open are
 * freed here, so their pointers become invalid). The memory goes in a
 * close callback: run the loop afterwards. */
void ns_feed_close(ns_feed *f);

/* Answers a Pull. who and req are read during the call only. Returns 0:
 * cb will be called exactly once, later, from the loop. Returns a
 * Napsync__V1__ErrorCode (INVALID_ARGUMENT for the request's form,
 * UNAVAILABLE or SHUTTING_DOWN when the query cannot be queued, INTERNAL)
 * with a message for the client in err: cb will never be called. */
__attribute__((warn_unused_result)) int ns_feed_pull(ns_feed *f, const ns_identity_info *who,
                                                     const Napsync__V1__Pull *req,
                                                     ns_feed_page_cb cb, void *ud, char *err,
                                                     size_t errlen);

/* Starts a subscription: pages to catch up, then live pages (see above).
 * who and req are read during the call only. Returns 0 and the
 * subscription in *out (owned by the caller until ns_feed_unsubscribe), or
 * an error code and message as ns_feed_pull does (*out untouched, cb never
 * called). Transient failures after the start (the pool unavailable) are
 * not reported: the query is retried; CURSOR_UNKNOWN, PERMISSION_DENIED (a
 * named plan no longer readable), INTERNAL and SHUTTING_DOWN end it. */
__attribute__((warn_unused_result)) int
ns_feed_subscribe(ns_feed *f, const ns_identity_info *who, const Napsync__V1__Subscribe *req,
                  ns_feed_page_cb cb, void *ud, ns_feed_sub **out, char *err, size_t errlen);

/* Ends a subscription (ended or not); call it exactly once per successful
 * ns_feed_subscribe, e.g. when the session closes. cb is never called
 * again after it returns, even with a query in flight (its memory then
 * goes when the query's answer comes). */
void ns_feed_unsubscribe(ns_feed_sub *sub);

/* Back-pressure from the owner (e.g. its write queue is above a mark):
 * while paused no new query starts, so at most the page of a query already
 * in flight is delivered. Wake-ups meanwhile are kept (coalesced) and run
 * on resume. Both are idempotent. */
void ns_feed_sub_pause(ns_feed_sub *sub);
void ns_feed_sub_resume(ns_feed_sub *sub);

/* The subscriptions now, for the metrics (health.c samples it). head is
 * the newest feed position this daemon has heard of (a NOTIFY's payload
 * or a page's head; 0 before any); a subscription is behind while its
 * cursor is below it, by head - cursor positions. */
typedef struct {
    uint32_t subscribers;
    uint32_t behind;
    int64_t head;
    int64_t max_lag; /* of the furthest subscription; 0 when none is behind */
    /* Since the feed opened: shared reads (one per change, for every
     * caught-up subscriber), pages they delivered, and subscription page
     * queries of one subscriber (first pages, catch-up, fallbacks). */
    uint64_t shared_reads, fast_pages, own_queries;
} ns_feed_stats;
void ns_feed_stats_get(const ns_feed *f, ns_feed_stats *out);

#endif
