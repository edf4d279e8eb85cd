/* Push: mutations from devices become versioned records (design §3, §5;
 * /tmp/sync-design.md "Push").
 *
 * A Push is validated without the database first: a mutation that is
 * malformed (ids, op, base version, field mask), names an unknown entity
 * type or field, holds a value of the wrong kind, lacks its tenant on
 * create, or comes from a principal who may not write, is REJECTED at once
 * and nothing about it is stored (the answer depends only on the request).
 *
 * The rest joins one FIFO. Group commit: whenever fewer than
 * NS_SYNC_MAX_BATCHES batches are running, the next batch takes up to
 * NS_SYNC_MAX_BATCH mutations from the head of the FIFO and runs them in one
 * pipelined transaction; there is no timer: while a batch commits the next
 * one fills up. Mutations of one record, and repeats of one mutation id,
 * are never in two running batches, so a record's mutations apply in FIFO
 * order. In a batch, each record is locked, each mutation merged in order
 * on the records as the batch has left them (design §5; an edit based on
 * an earlier unacknowledged edit of the same device is not stale), and
 * every change written with its revision, its feed position, any conflict
 * records and the mutation's answer, which makes a re-sent mutation get the
 * same answer and apply once. A batch the database refuses for one
 * mutation's data is split in halves until that mutation is alone; it is
 * then REJECTED (INVALID_ARGUMENT, the database's message, stored) and the
 * others apply. The database's constraints see each record as the batch
 * leaves it: a state that a later mutation of the same batch replaces is
 * in the record's history but was never checked by them.
 *
 * Answers per mutation (MutationResult):
 *   APPLIED / MERGED: version = the record's version after the mutation (the
 *     current version when it changed nothing);
 *   CONFLICT: conflict_ids, one per collision; version = the record's version
 *     after the mutation: new if the non-colliding fields changed it, else
 *     the current version, which is unchanged;
 *   REJECTED: version 0, reject_code and reject_reason (naming the field at
 *     fault where there is one): UNKNOWN_ENTITY, INVALID_ARGUMENT,
 *     PERMISSION_DENIED, NOT_FOUND (update or delete of a record that does
 *     not exist, or a record of a plan that does not exist), ALREADY_EXISTS
 *     (a create of an id that exists, deleted or not).
 *
 * Tenants and authorisation: the one entity type without a tenant field
 * (plan) is its own tenant and has the fields owner_id, kind and status;
 * every other type's tenant field names such a record, is required on
 * create and never changes. A plan's create sets owner_id to the
 * principal's organisation when absent, and may not name another. Then
 * every mutation is decided by the policy (policy.h, docs/authorisation.md)
 * on the records as the batch has left them: the plan's owner, kind and
 * status, and the organisation the record's delegated rights follow, read
 * through its references in rounds before the merge. Principals who only
 * read are refused at once for anything but comments. Push modes
 * (Push.mode): APPLY as above; DRY_RUN runs the push as a batch of its own
 * whose every run ends in ROLLBACK after SET CONSTRAINTS ALL IMMEDIATE
 * (the deferred checks), replays the leaders before its range (so each
 * mutation is judged on the state the ones before it leave), stores no
 * answer and takes no feed position; ATOMIC runs it as one transaction:
 * any rejection (before or in the batch) answers the others ABORTED and
 * rolls back, a refusal at COMMIT aborts all with the database's reason.
 * A mutation the database alone refuses carries its reason and, for the
 * model's validation (check_violation with a column), the field
 * (MutationResult.reject_field), stored with the answer.
 *
 * Every callback runs from the loop, never inside the call that made it due. */
#ifndef NS_SYNC_H
#define NS_SYNC_H

#include <stddef.h>
#include <uv.h>

#include "auth.h"
#include "db.h"
#include "napsync.pb-c.h"
#include "registry.h"

/* Mutations per Push (a larger Push is refused as a whole) and per batch. */
#define NS_SYNC_MAX_BATCH 1000u
/* Batches (transactions) running at once. */
#define NS_SYNC_MAX_BATCHES 2u

typedef struct ns_sync ns_sync;

typedef enum {
    NS_SYNC_OK = 0,
    NS_SYNC_NOMEM = -1,
    NS_SYNC_SHUTDOWN = -2, /* ns_sync_close was called */
    NS_SYNC_INVALID = -3,  /* bad arguments, or a registry the engine cannot serve */
} ns_sync_status;

/* The answer to one Push, called exactly once per accepted Push.
 * Either result is non-NULL and code is ERROR_CODE_UNSPECIFIED: one result
 * per mutation, in the order of Push.mutations; result and everything in it
 * belong to the engine and are valid during the call only.
 * Or result is NULL and the Push failed as a whole with code and message
 * (for an Error frame): INVALID_ARGUMENT (more than NS_SYNC_MAX_BATCH
 * mutations: nothing was applied); UNAVAILABLE (the database failed or
 * could not be reached, or too many mutations are waiting: some mutations
 * may have been applied; re-sending the Push is safe and answers those as
 * they were first answered);
 * SHUTTING_DOWN (ns_sync_close, same guarantee); INTERNAL. */
typedef void (*ns_push_cb)(const Napsync__V1__PushResult *result, Napsync__V1__ErrorCode code,
                           const char *message, void *ud);

/* Starts the engine on loop with the pool db and the loaded registry, both
 * borrowed: they must outlive the engine (until ns_sync_close's done). The
 * registry must have exactly one type without a tenant field, with a
 * reference field owner_id, and every other type's tenant field refers to
 * it; else NS_SYNC_INVALID with a message in err. */
__attribute__((warn_unused_result)) ns_sync_status ns_sync_new(uv_loop_t *loop, ns_db *db,
                                                               const ns_registry *reg,
                                                               ns_sync **out, char *err,
                                                               size_t errlen);

/* Takes a Push from the principal who (a device's session). Everything
 * needed is copied before the call returns: the caller may free push and
 * who at once. On NS_SYNC_OK cb is called exactly once, later, from the
 * loop; on any other return it is never called. */
__attribute__((warn_unused_result)) ns_sync_status ns_sync_push(ns_sync *s,
                                                                const ns_identity_info *who,
                                                                const Napsync__V1__Push *push,
                                                                ns_push_cb cb, void *ud);

/* A conflict's resolution (sync_conflicts; conflicts.h takes it off the
 * wire and finds the conflict's record). It runs through the same FIFO,
 * batches and transactions as a Push and is one mutation in every sense:
 * idempotent by mutation_id (the answer is stored in sync_mutations; a
 * mutation id already answered, by a Push or a resolution, gets that
 * answer), authorised like an update of the record (writers only, of
 * plans their organisation owns). In its transaction, after the record,
 * the conflict row is locked and, unless it is already resolved or gone,
 * the record gets a new version whose revision has op "resolve" (KEEP
 * included, so that the closing is a change every replica receives) and
 * the conflict gets resolved_at, resolved_by and resolution_version:
 *   KEEP: the record's fields as they are;
 *   OTHER: a field conflict's field := the conflict's other value; a
 *     whole-record conflict: the delete that lost deletes the record, the
 *     edit that lost undeletes it with its fields (other_fields) set;
 *   VALUE: the field := value (a field conflict only; value already
 *     checked against the field's type by the caller).
 * A field conflict of a deleted record takes KEEP only. Answers (APPLIED
 * with the new version, or REJECTED): NOT_FOUND (the conflict does not
 * exist or is not of this record, or the record is gone),
 * INVALID_ARGUMENT ("already resolved"; VALUE or OTHER where they do not
 * apply; a value the tenant rules refuse; mutation_id not a UUID),
 * PERMISSION_DENIED (an observer; a plan of another organisation). */
typedef enum {
    NS_RESOLVE_KEEP = 1,
    NS_RESOLVE_OTHER = 2,
    NS_RESOLVE_VALUE = 3,
} ns_resolve_kind;

typedef struct {
    const char *mutation_id;    /* as sent: checked here, echoed in the answer */
    const char *conflict_id;    /* a UUID */
    const ns_entity_type *type; /* the conflict's record, from the registry */
    const char *record_id;      /* a UUID */
    const char *field;          /* the conflict's field; NULL: the whole record */
    ns_resolve_kind kind;
    const ns_value *value; /* VALUE: canonical for the field's type */
    /* Not 0: the caller has rejected the request already (its form, or a
     * conflict it may not see); the engine only answers it so, from the
     * loop, with the mutation id echoed (type and the ids may be NULL). */
    Napsync__V1__ErrorCode reject_code;
    const char *reject_reason;
} ns_sync_resolution;

/* The answer to one resolution, called exactly once: result (valid during
 * the call) and code ERROR_CODE_UNSPECIFIED, or result NULL and the whole
 * request failed with code and message as a Push would (UNAVAILABLE,
 * SHUTTING_DOWN, INTERNAL). */
typedef void (*ns_resolve_cb)(const Napsync__V1__MutationResult *result,
                              Napsync__V1__ErrorCode code, const char *message, void *ud);

/* Takes a resolution from the principal who; everything is copied before
 * it returns. On NS_SYNC_OK cb is called exactly once, later, from the
 * loop; otherwise never (NS_SYNC_INVALID: a missing or malformed argument
 * other than mutation_id). */
__attribute__((warn_unused_result)) ns_sync_status ns_sync_resolve(ns_sync *s,
                                                                   const ns_identity_info *who,
                                                                   const ns_sync_resolution *res,
                                                                   ns_resolve_cb cb, void *ud);

/* Stops taking pushes. Pushes whose mutations have not reached the database
 * are answered SHUTTING_DOWN, before ns_sync_close returns; running batches
 * finish (their pushes are answered with their results, or with the
 * database's failure). Then the engine's handle is closed, the engine
 * freed, and done (may be NULL) called from the loop. The pool must stay
 * allocated until done runs; ns_db_close may be called meanwhile (running
 * batches then end with SHUTTING_DOWN). A second call does nothing. */
void ns_sync_close(ns_sync *s, void (*done)(void *ud), void *ud);

#endif
