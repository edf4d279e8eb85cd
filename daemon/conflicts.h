/* Conflicts (sync design "Conflicts"): ListConflicts and ResolveConflict.
 *
 * List: the conflicts of the readable plans in the scopes (the feed's
 * scopes and readability rule, feed.h: a named plan that is not readable
 * is PERMISSION_DENIED), open ones only unless include_resolved, newest
 * first (created_at, then id), at most NS_CONFLICTS_MAX_LIST. Values come
 * typed by the registry: base/kept/other for a field conflict; for a
 * whole-record conflict (field "") kept_deleted/other_deleted and, when the
 * edit lost, other_fields. Authors are principal names, devices device
 * names ("" when none), created_at RFC 3339 UTC with microseconds.
 *
 * Resolve: the conflict must exist and belong to a plan the principal can
 * read, else the answer is REJECTED NOT_FOUND (the two are not told apart).
 * The request's form is checked (conflict_id a UUID, resolution KEEP,
 * OTHER or VALUE, value present exactly for VALUE and of the field's type;
 * VALUE on a whole-record conflict is refused): REJECTED INVALID_ARGUMENT.
 * These answers are not stored. Then the resolution runs through the push
 * engine (ns_sync_resolve, sync.h), which authorises, applies and stores
 * it like any mutation. Every answer is one MutationResult, given through
 * the callback, from the loop, never inside the call.
 *
 * Threading: the loop's thread only. */
#ifndef NS_CONFLICTS_H
#define NS_CONFLICTS_H

#include <stddef.h>

#include "auth.h"
#include "db.h"
#include "napsync.pb-c.h"
#include "registry.h"
#include "sync.h"

#define NS_CONFLICTS_MAX_LIST 1000

typedef struct ns_conflicts ns_conflicts;

/* db, reg and sync are borrowed: db and reg must outlive the module; sync
 * must stay open until ns_conflicts_close. Returns 0, or -1 (out of
 * memory). */
__attribute__((warn_unused_result)) int ns_conflicts_open(ns_db *db, const ns_registry *reg,
                                                          ns_sync *sync, ns_conflicts **out);

/* Takes no more requests and lets go of sync: resolutions whose lookup is
 * still running are answered SHUTTING_DOWN. The memory goes when the last
 * query of the module has answered (ns_db_close answers all of them). */
void ns_conflicts_close(ns_conflicts *c);

/* code 0: list (valid during the call only), message NULL. Else a
 * Napsync__V1__ErrorCode (PERMISSION_DENIED, UNAVAILABLE, SHUTTING_DOWN,
 * INTERNAL) and a message for the client, list NULL. */
typedef void (*ns_conflict_list_cb)(int code, const char *message,
                                    const Napsync__V1__ConflictList *list, void *ud);

/* Returns 0: cb is called exactly once, later. Else an error code
 * (INVALID_ARGUMENT for the scopes, UNAVAILABLE, SHUTTING_DOWN, INTERNAL)
 * with a message in err; cb is never called. req is read during the call
 * only. */
__attribute__((warn_unused_result)) int ns_conflicts_list(ns_conflicts *c,
                                                          const ns_identity_info *who,
                                                          const Napsync__V1__ListConflicts *req,
                                                          ns_conflict_list_cb cb, void *ud,
                                                          char *err, size_t errlen);

/* Returns 0: cb (sync.h) is called exactly once, later. Else UNAVAILABLE,
 * SHUTTING_DOWN or INTERNAL with a message in err; cb is never called. req
 * is read during the call only. */
__attribute__((warn_unused_result)) int
ns_conflicts_resolve(ns_conflicts *c, const ns_identity_info *who,
                     const Napsync__V1__ResolveConflict *req, ns_resolve_cb cb, void *ud, char *err,
                     size_t errlen);

#endif
