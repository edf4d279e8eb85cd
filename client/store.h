/* The device's local store (internal to libnapsync): one SQLite file per
 * device holding the outbox of changes the server has not acknowledged, the
 * replica of the records in the device's scopes, the pull cursor and the
 * known conflicts.
 *
 * Durability: every function that changes the store has committed (WAL,
 * synchronous=FULL: fsync'd) before it returns NS_STORE_OK, so a crash of the
 * application at any later instant keeps the change; a function that fails
 * has changed nothing. One process at a time: ns_store_open takes an
 * exclusive lock on "<path>.lock" and holds it until ns_store_close.
 *
 * Threads and loops: calls block on disk I/O (an fsync per committed
 * change). A store is used by one thread at a time; on an event loop, run
 * the calls in the threadpool (uv_queue_work). Callbacks of the listing
 * functions run inside the call and must not call back into the store
 * (NS_STORE_STATE if they do).
 *
 * Errors: each function returns an ns_store_rc, precise enough for the sync
 * loop to decide what to do, and fills *err (when err is not NULL) with the
 * public ns_status and a message a person can act on. Inputs from the server
 * (pages, results, conflicts) are checked as untrusted: one bad item refuses
 * the whole call, with status NS_ERR_PROTOCOL. */
#ifndef NS_STORE_H
#define NS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "napsync.h"
#include "napsync.pb-c.h"
#include "value.h"

#define NS_STORE_UUID_SIZE   37  /* 8-4-4-4-12 lowercase hex and the NUL */
#define NS_STORE_TYPE_SIZE   64  /* an entity type: [a-z][a-z0-9_]*, at most 63 bytes */
#define NS_STORE_CURSOR_SIZE 128 /* a cursor: printable ASCII, at most 127 bytes */
#define NS_STORE_TIME_SIZE   40  /* RFC 3339 as the server sends it */
#define NS_STORE_META_SIZE   512 /* a meta value, NUL included */
#define NS_STORE_REASON_SIZE 1024
/* The server takes at most this many mutations in one Push. */
#define NS_STORE_MAX_BATCH 1000
/* Fields of one record or mutation. */
#define NS_STORE_MAX_FIELDS 1024
/* Packed fields of one mutation: far under the default frame size (1 MiB),
 * so that a Push of one mutation always fits a frame. */
#define NS_STORE_MAX_MUTATION_BYTES (256u * 1024u)
/* Records in one ChangePage (the server's maximum page size). */
#define NS_STORE_MAX_PAGE_RECORDS 5000
/* Scopes of one conflict listing. */
#define NS_STORE_MAX_SCOPES 64

typedef enum {
    NS_STORE_OK = 0,
    NS_STORE_INVALID = -1,   /* a bad argument (INVALID_ARGUMENT) or server input (PROTOCOL) */
    NS_STORE_NOT_FOUND = -2, /* no such record or mutation here (INVALID_ARGUMENT) */
    NS_STORE_EXISTS = -3,    /* a create of a record this store knows (INVALID_ARGUMENT) */
    NS_STORE_STATE = -4,     /* not valid now, e.g. discarding a pending change (STATE) */
    NS_STORE_LOCKED = -5,    /* another process has the store open, or it is busy (STATE) */
    NS_STORE_NEWER = -6,     /* written by a newer napsync: left untouched (STATE) */
    NS_STORE_FULL = -7,      /* the disk is full: nothing was saved (STATE) */
    NS_STORE_IO = -8,        /* the file cannot be created, read or written (STATE) */
    NS_STORE_CORRUPT = -9,   /* damaged, or not a napsync store (STATE) */
    NS_STORE_NOMEM = -10,    /* (NOMEM) */
} ns_store_rc;

typedef enum {
    NS_STORE_OP_CREATE = 1, /* the values of Napsync__V1__MutationOp */
    NS_STORE_OP_UPDATE = 2,
    NS_STORE_OP_DELETE = 3,
} ns_store_op;

typedef struct ns_store ns_store;

/* ---- lifetime ------------------------------------------------------------ */

/* Opens the store at path, creating it (mode 0600) and its schema if needed
 * and migrating an older one. Fails with NS_STORE_LOCKED if another open
 * store holds it (in this process or another), NS_STORE_NEWER if a newer
 * napsync wrote it, NS_STORE_CORRUPT if it is not a napsync store. *out is
 * set only on success. */
__attribute__((warn_unused_result)) ns_store_rc ns_store_open(const char *path, ns_store **out,
                                                              ns_error *err);
/* Closes the file and releases the lock. NULL is accepted. */
void ns_store_close(ns_store *s);

/* The store format this build writes (PRAGMA user_version after open). */
int ns_store_schema_version(void);

/* A fresh random (version 4) UUID from the system CSPRNG. */
__attribute__((warn_unused_result)) ns_store_rc ns_store_new_uuid(char out[NS_STORE_UUID_SIZE],
                                                                  ns_error *err);

/* ---- the outbox ------------------------------------------------------------ */

typedef struct {
    char mutation_id[NS_STORE_UUID_SIZE];
    char record_id[NS_STORE_UUID_SIZE];
    uint64_t base_version; /* the replica's version of the record; 0 for a create */
} ns_store_enqueued;

/* Saves a change made on this device. The local view decides what is
 * allowed: a create needs a record id this store has never seen (no replica
 * row, no pending change); an update (at least one field) or a delete (no
 * fields) needs a record that exists and is not deleted in the local view
 * (NS_STORE_NOT_FOUND otherwise). record_id NULL on a create makes a new id.
 * fields: values as ns_value_parse makes them (canonical); borrowed. *out
 * (may be NULL) receives the new mutation id, the record id and the base
 * version. Committed before it returns. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_enqueue(ns_store *s, ns_store_op op, const char *entity_type, const char *record_id,
                 const ns_fieldset *fields, ns_store_enqueued *out, ns_error *err);

/* The next pending mutations in outbox order, ready for Push.mutations:
 * at most max_count (capped at NS_STORE_MAX_BATCH) and, after the first,
 * no more than max_bytes of packed mutations in all. Rejected mutations
 * are skipped. The Push adds a tag and a length (at most 6 bytes) per
 * mutation and the Envelope its own few bytes: pass the frame limit less
 * that headroom. Free with ns_store_batch_free (also after a failure). */
typedef struct {
    Napsync__V1__Mutation **mutations; /* owned */
    size_t n;
    size_t packed_bytes; /* the sum of the mutations' packed sizes */
} ns_store_batch;

__attribute__((warn_unused_result)) ns_store_rc ns_store_outbox_batch(ns_store *s, size_t max_count,
                                                                      size_t max_bytes,
                                                                      ns_store_batch *out,
                                                                      ns_error *err);
void ns_store_batch_free(ns_store_batch *b);

/* Records the server's answers, in one transaction: APPLIED, MERGED and
 * CONFLICT remove the mutation from the outbox; REJECTED keeps it with its
 * code and reason, no longer pending (it blocks nothing behind it). Answers
 * for mutations this store does not hold (already answered) change nothing
 * and are counted in *unmatched (may be NULL). A malformed answer refuses
 * them all (NS_STORE_INVALID, nothing recorded). */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_record_results(ns_store *s, const Napsync__V1__MutationResult *const *results, size_t n,
                        size_t *unmatched, ns_error *err);

/* Drops a rejected mutation (the user gave up on it). A pending one may
 * already be applied on the server: NS_STORE_STATE. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_discard(ns_store *s, const char *mutation_id, ns_error *err);

typedef enum {
    NS_STORE_PENDING = 0,
    NS_STORE_REJECTED = 1,
} ns_store_state;

/* One outbox entry as the user sees it; valid during the callback only. */
typedef struct {
    int64_t seq;
    char mutation_id[NS_STORE_UUID_SIZE];
    char entity_type[NS_STORE_TYPE_SIZE];
    char record_id[NS_STORE_UUID_SIZE];
    uint64_t base_version;
    ns_store_op op;
    ns_fieldset fields;
    int64_t created_at_ms; /* Unix time in milliseconds */
    ns_store_state state;
    int reject_code; /* Napsync__V1__ErrorCode; 0 while pending */
    char reject_reason[NS_STORE_REASON_SIZE];
} ns_store_outbox_entry;

/* Returns non-zero to stop the listing. */
typedef int (*ns_store_outbox_fn)(const ns_store_outbox_entry *e, void *ud);

/* Every outbox entry, pending and rejected, in outbox order. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_outbox_list(ns_store *s, ns_store_outbox_fn fn, void *ud, ns_error *err);

/* ---- the replica and the local view ------------------------------------------ */

/* Applies one page of the feed and its next_cursor in one transaction
 * (and reconciles the tenant set, as ns_store_apply_page_tenants): all
 * of it or, on any error (a record that fails its checks included), none
 * of it. A record whose version is not newer than the stored one is
 * ignored; a deleted record is kept as a tombstone, so an older change
 * arriving later cannot bring it back. *napplied (may be NULL) counts the
 * records that changed the replica. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_apply_page(ns_store *s, const Napsync__V1__ChangePage *page, size_t *napplied,
                    ns_error *err);

/* Tenants one page may list (ChangePage.tenant_ids). */
#define NS_STORE_MAX_PAGE_TENANTS 10000

/* What applying a page did. */
typedef struct {
    size_t applied;     /* records that changed the replica */
    size_t purged;      /* tenants that left the readable set: their records removed */
    size_t new_tenants; /* tenants that joined it and wait for a backfill */
} ns_store_page_outcome;

/* ns_store_apply_page, and in the same transaction the store's set of
 * synced tenants is brought in line with page->tenant_ids (unless
 * tenant_ids_truncated: then the set is left as it is): a tenant that left
 * the set is purged as ns_store_purge_tenant does; a tenant that joined it
 * is added, as synced when the store's cursor was empty before the page
 * (this pull brings all of its records) and otherwise as pending a
 * backfill (ns_store_tenants_pending). *out may be NULL. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_apply_page_tenants(ns_store *s, const Napsync__V1__ChangePage *page,
                            ns_store_page_outcome *out, ns_error *err);

/* Up to cap tenants pending a backfill, in id order, into out; *n their
 * number. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_tenants_pending(ns_store *s, char (*out)[NS_STORE_UUID_SIZE], size_t cap, size_t *n,
                         ns_error *err);

/* Applies one page of a backfill of tenant_id (a Pull with that plan as
 * the only scope, from the empty cursor), without touching the cursor or
 * the tenant set: every record must be of that tenant; versions not newer
 * than the stored one are ignored. The last page (more false) marks the
 * tenant synced, in the same transaction. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_apply_backfill(ns_store *s, const char *tenant_id, const Napsync__V1__ChangePage *page,
                        size_t *napplied, ns_error *err);

/* Removes every record and conflict of a tenant (a scope the principal may
 * no longer read) and drops it from the synced tenants, so that it is
 * backfilled when it is readable again. The outbox is kept: the server
 * answers for it (a pending change of a tenant no longer readable is
 * rejected, and kept as rejected for the user). */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_purge_tenant(ns_store *s, const char *tenant_id, ns_error *err);

/* Forgets the replica, the synced tenants and the cursor (the server does
 * not know the cursor: re-fetch everything) and keeps the outbox and the known conflicts. */
__attribute__((warn_unused_result)) ns_store_rc ns_store_reset_replica(ns_store *s, ns_error *err);

/* A record as the user sees it: the replica row with the pending outbox
 * mutations of the record applied in order (create and update set their
 * fields, create undeletes, delete marks deleted). Rejected mutations are
 * not applied; they are counted. Free the fields with ns_store_record_free. */
typedef struct {
    char entity_type[NS_STORE_TYPE_SIZE];
    char id[NS_STORE_UUID_SIZE];
    uint64_t version; /* the replica's; 0 while the server has not got the record */
    bool deleted;
    bool has_pending;                    /* pending mutations are applied in this view */
    uint32_t rejected;                   /* rejected mutations of the record (not applied) */
    char tenant_id[NS_STORE_UUID_SIZE];  /* "" until the server has the record */
    char changed_by[NS_NAME_SIZE];       /* last change known to the replica */
    char changed_at[NS_STORE_TIME_SIZE]; /* RFC 3339 */
    ns_fieldset fields;
} ns_store_record;

void ns_store_record_free(ns_store_record *r);

/* NS_STORE_NOT_FOUND when neither the replica nor a pending mutation knows
 * the record. A deleted record is found, with deleted set. *out is filled
 * only on success. */
__attribute__((warn_unused_result)) ns_store_rc ns_store_get(ns_store *s, const char *entity_type,
                                                             const char *id, ns_store_record *out,
                                                             ns_error *err);

/* Returns non-zero to stop the listing. r is valid during the call only. */
typedef int (*ns_store_record_fn)(const ns_store_record *r, void *ud);

/* The records of a type in the local view (pending creates included), by
 * id; deleted ones only if include_deleted. */
__attribute__((warn_unused_result)) ns_store_rc ns_store_list(ns_store *s, const char *entity_type,
                                                              bool include_deleted,
                                                              ns_store_record_fn fn, void *ud,
                                                              ns_error *err);

/* ---- conflicts ------------------------------------------------------------------ */

/* Replaces the conflicts known for a set of scopes with the server's list
 * for that set (ListConflicts(scopes) -> ConflictList), in one transaction.
 * Conflicts listed under other scope sets are untouched; a conflict listed
 * under several is shown once, as listed last. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_replace_conflicts(ns_store *s, const Napsync__V1__Scope *const *scopes, size_t nscopes,
                           const Napsync__V1__Conflict *const *conflicts, size_t n, ns_error *err);

typedef int (*ns_store_conflict_fn)(const Napsync__V1__Conflict *c, void *ud);

/* Known conflicts (open ones, and resolved ones if include_resolved), oldest
 * first. */
__attribute__((warn_unused_result)) ns_store_rc ns_store_list_conflicts(ns_store *s,
                                                                        bool include_resolved,
                                                                        ns_store_conflict_fn fn,
                                                                        void *ud, ns_error *err);

/* One known conflict; *out is owned by the caller: free it with
 * ns_store_conflict_free (not napsync__v1__conflict__free_unpacked(*out,
 * NULL): protobuf-c frees with the allocator that unpacked, the store's). */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_get_conflict(ns_store *s, const char *id, Napsync__V1__Conflict **out, ns_error *err);

/* Frees a conflict from ns_store_get_conflict; NULL is ignored. */
void ns_store_conflict_free(Napsync__V1__Conflict *c);

/* ---- cursor, meta and status ----------------------------------------------------- */

/* The pull cursor, "" when there is none (pull from the beginning). */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_cursor(ns_store *s, char out[NS_STORE_CURSOR_SIZE], ns_error *err);

/* When the last sync completed (push, pull and conflicts), Unix ms. */
__attribute__((warn_unused_result)) ns_store_rc ns_store_set_last_sync(ns_store *s, int64_t unix_ms,
                                                                       ns_error *err);

/* What a store is bound to, so that a store made for one server or device
 * is not silently used with another. */
typedef enum {
    NS_STORE_META_SERVER,    /* "host:port" */
    NS_STORE_META_DEVICE_ID, /* the device's UUID from Welcome */
    /* What the last Welcome said, for the next first flight (client.c):
     * the certificate, server, device, organisation, limits, compression. */
    NS_STORE_META_FIRST_FLIGHT,
} ns_store_meta;

/* out receives "" when the key was never set. Values are printable text
 * shorter than NS_STORE_META_SIZE. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_meta_get(ns_store *s, ns_store_meta key, char out[NS_STORE_META_SIZE], ns_error *err);
__attribute__((warn_unused_result)) ns_store_rc ns_store_meta_set(ns_store *s, ns_store_meta key,
                                                                  const char *value, ns_error *err);

/* The TLS session this device may resume on its next connect (tls.h), kept
 * in meta as a blob so that the next process resumes too. It is secret: it
 * lets whoever holds it resume as this device until the server's ticket
 * expires (the store file is 0600, like the key beside it). At most
 * NS_STORE_TLS_SESSION_MAX bytes. */
#define NS_STORE_TLS_SESSION_MAX 16384
/* *len = 0 when none is kept. out holds cap bytes. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_tls_session_get(ns_store *s, uint8_t *out, size_t cap, size_t *len, ns_error *err);
/* Replaces the kept session; len 0 forgets it. Committed before it returns. */
__attribute__((warn_unused_result)) ns_store_rc
ns_store_tls_session_set(ns_store *s, const uint8_t *session, size_t len, ns_error *err);

typedef struct {
    uint64_t pending;                  /* outbox mutations waiting to be sent */
    uint64_t rejected;                 /* outbox mutations the server refused */
    uint64_t records;                  /* replica rows, tombstones included */
    uint64_t open_conflicts;           /* known conflicts not resolved */
    char cursor[NS_STORE_CURSOR_SIZE]; /* "" if none */
    int64_t last_sync_ms;              /* 0 if never */
} ns_store_status;

__attribute__((warn_unused_result)) ns_store_rc
ns_store_get_status(ns_store *s, ns_store_status *out, ns_error *err);

#endif
