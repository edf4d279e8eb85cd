/* Field-level three-way merge of one mutation into one record (design §5).
 * Pure: no I/O, no database; the sync engine feeds it the record as now
 * committed, the revision the mutation was based on, and the mutation. */
#ifndef NS_MERGE_H
#define NS_MERGE_H

#include <stdbool.h>
#include <stddef.h>

#include "value.h"

typedef enum {
    NS_OP_CREATE,
    NS_OP_UPDATE,
    NS_OP_DELETE,
} ns_op;

/* What the mutation did to the record. */
typedef enum {
    NS_MERGE_APPLIED, /* based on the current version: taken as is */
    NS_MERGE_MERGED,  /* based on an older version; no field collided */
    NS_MERGE_CONFLICT /* at least one collision; see conflicts (other fields still merged) */
} ns_merge_outcome;

/* One collision. field is NULL for a whole-record conflict (edit versus
 * delete); then kept_deleted/other_deleted say which side deleted and
 * other_fields holds the edit that lost (empty when the mutation was the
 * delete), and base/kept/other are nulls of kind NS_KIND_BOOL (no meaning).
 * For a field conflict other_fields is empty. */
typedef struct {
    char *field;
    ns_value base;  /* the field at the mutation's base version (null kind if field NULL) */
    ns_value kept;  /* what the record keeps (the value committed first) */
    ns_value other; /* the mutation's value, kept only in the conflict record */
    bool kept_deleted;
    bool other_deleted;
    ns_fieldset other_fields;
} ns_merge_conflict;

/* conflicts are in field-name order; a whole-record conflict is alone. */
typedef struct {
    ns_merge_outcome outcome;
    bool changed;       /* the record's state differs from current (a new version is due) */
    bool deleted;       /* the record is a tombstone after the merge */
    ns_fieldset fields; /* the record's fields after the merge (a tombstone keeps the
                           fields it had when deleted) */
    ns_merge_conflict *conflicts;
    size_t nconflicts;
} ns_merge_result;

void ns_merge_result_free(ns_merge_result *r);

typedef struct {
    ns_op op;
    bool stale;              /* base version older than the current version */
    const ns_fieldset *base; /* fields at the base version (required when stale) */
    bool base_deleted;
    const ns_fieldset *current; /* fields as committed now */
    bool current_deleted;
    const ns_fieldset *change; /* the mutation's fields (its field mask); empty for DELETE */
    /* Kinds of the fields, for set semantics: returns NULL for an unknown field. */
    const ns_field_type *(*type_of)(const char *field, void *ud);
    void *type_ud;
    /* The record must never change by a merge (an approved indicator report):
     * with a stale base every differing field is a conflict. */
    bool frozen;
} ns_merge_input;

/* Merges. r is overwritten, not freed first; the result owns copies of
 * everything it holds (free with ns_merge_result_free). Returns 0, or -1 on
 * allocation failure (or an op outside ns_op): r is then empty and nothing
 * is leaked. Pure and deterministic: equal inputs give equal results.
 * Rules:
 *  - not stale: UPDATE sets every field in change; DELETE deletes; outcome
 *    APPLIED (frozen does not apply: only a merge is held back).
 *  - stale UPDATE on a live record, per field f of change, in name order:
 *      mine == base[f]            -> nothing (the mutation did not change f)
 *      current[f] == base[f]      -> take mine (f changed on one side only)
 *      current[f] == mine         -> nothing (both made the same change)
 *      TEXT_SET                   -> current ∪ (mine − base) − (base − mine)
 *      otherwise                  -> conflict: keep current[f], record mine
 *    TEXT_SET is the kind type_of gives, or mine's kind when type_of is NULL
 *    or does not know f. In the set rule a null reads as the empty set; an
 *    empty result where current[f] is null stays null; a result with more
 *    than the field's max_items is a conflict instead (the merge must not
 *    produce a value the schema refuses).
 *    frozen: every f the mutation changed (mine != base[f]) with
 *    mine != current[f] is a conflict, even where current[f] == base[f]
 *    and for sets; a field the mutation did not change never conflicts
 *    (it carries no intent to overwrite anything).
 *  - UPDATE on a deleted record (current_deleted), stale or not: whole-record
 *    conflict (edit versus delete; an edit never resurrects): stays
 *    deleted; the edit is kept in the conflict's other_fields.
 *  - stale DELETE of a live record changed since base (any field differs
 *    from base, or base_deleted, i.e. it was restored since, or frozen):
 *    whole-record conflict: the record stays as it is.
 *    Unchanged since base: deleted, MERGED.
 *  - DELETE of a deleted record: nothing changes, MERGED (or APPLIED if not stale).
 *  - CREATE is handled by the caller (no merge); passing it returns APPLIED
 *    with fields = change.
 * A field absent from base or current reads as null; NULL base, current or
 * change read as empty field sets. A field the result sets to null is held
 * as an explicit null. changed is false when every value set equals the
 * current one. */
__attribute__((warn_unused_result)) int ns_merge(const ns_merge_input *in, ns_merge_result *r);

#endif
