/* Who may write what (design §7, docs/authorisation.md): the daemon's
 * decision for every mutation, made from facts the sync engine gathers in
 * the mutation's own transaction. Pure: no I/O, no allocation; PostgreSQL's
 * row-level security checks the same rules again on its own.
 *
 * Roles are held per organisation (the principal's own). "Owner writer" of
 * a plan: a principal of the organisation that owns it with the role
 * coordinator; implementer for an implementation or local plan; regional
 * for a RAP. An owner writer creates, changes and deletes every record of
 * the plan; only a coordinator (regional for a RAP) of the owner approves
 * or returns reports. Others write by delegation, in plans they can read:
 * the lead organisation of an action (its status only) and of its budget
 * lines; the responsible organisation of an indicator for its reports and
 * their disaggregated values (draft and submitted only). Everyone who can
 * read a plan comments on it and edits only their own comments. A draft
 * plan does not exist for other organisations; an archived plan is read
 * only, except its own status. */
#ifndef NS_POLICY_H
#define NS_POLICY_H

#include <stdbool.h>

#include "auth.h"
#include "merge.h"
#include "napsync.pb-c.h"
#include "value.h"

enum {
    NS_ROLE_ADMIN = 1u << 0,
    NS_ROLE_COORDINATOR = 1u << 1,
    NS_ROLE_IMPLEMENTER = 1u << 2,
    NS_ROLE_REGIONAL = 1u << 3,
    NS_ROLE_OBSERVER = 1u << 4,
};

/* The role bits of an identity (unknown role names are ignored). */
unsigned ns_policy_roles(const ns_identity_info *who);

/* Whether the principal reads only: no role that writes plan content.
 * Such a reader sees indicator reports once approved, and no
 * disaggregated values (the approved figures reach it through reports). */
bool ns_policy_reads_only(unsigned roles);

/* The record-level read rule as SQL, for every module that serves
 * records or their history (feed.c, history.c): over a revision's entity
 * type T and after JSON A, for a principal who reads only when the boolean
 * SQL expression RO is true: indicator reports once approved, no
 * disaggregated values. Of the directory, every principal reads every
 * organisation and every region's member states, the people and roles of
 * its own organisation ORG (a uuid expression), and its devices if ADMIN (a
 * boolean expression: the principal is an administrator), else its own
 * (ME, the principal's id). */
#define NS_POLICY_RECORD_READABLE(T, A, RO, ORG, ME, ADMIN)                                        \
    "(CASE WHEN " T " IN ('organisation', 'principal', 'principal_role', 'device',"                \
    " 'region_membership') THEN (" T " IN ('organisation', 'region_membership') OR ((" A           \
    " ->> 'organisation_id')::uuid = " ORG "::uuid AND (" T " <> 'device' OR " ADMIN " OR (" A     \
    " ->> 'principal_id')::uuid = " ME "::uuid)))"                                                 \
    " ELSE (NOT " RO " OR (" T " <> 'report_value' AND (" T " <> 'indicator_report' OR " A         \
    " ->> 'status' = 'approved'))) END)"

/* The C twins of NS_POLICY_RECORD_READABLE and NS_FEED_PLAN_READABLE
 * (feed.h), for the subscriptions' shared read (feed.c), which reads the
 * new feed rows once as the engine and decides per subscriber here.
 * Three-valued as the SQL is: a NULL (absent) input makes its comparison
 * unknown, and unknown is not readable. UUIDs compare as uuid values (any
 * hex case). test_policy_read checks both against PostgreSQL on generated
 * rows, so that they cannot drift apart. */
typedef struct {
    const char *organisation; /* the principal's organisation (ORG) */
    const char *principal;    /* the principal (ME) */
    bool reads_only;          /* RO */
    bool admin;               /* ADMIN */
} ns_policy_reader;

/* What the record rule reads of a revision: its entity type and
 * after ->> 'organisation_id', 'principal_id', 'status' (NULL: absent or
 * null). */
typedef struct {
    const char *type;
    const char *organisation_id;
    const char *principal_id;
    const char *status;
} ns_policy_row;

/* Fills out from a record's fields (borrowed: out points into after). */
void ns_policy_row_of(const char *type, const ns_fieldset *after, ns_policy_row *out);
bool ns_policy_record_readable(const ns_policy_reader *r, const ns_policy_row *row);
/* A plan of owner and status (NULL: unknown) is readable by org. */
bool ns_policy_plan_readable(const char *org, const char *owner, const char *status);

typedef struct {
    const char *principal;    /* lowercase UUID */
    const char *organisation; /* lowercase UUID */
    unsigned roles;
} ns_policy_actor;

/* A plan as the mutation's transaction sees it. kind and status may be
 * NULL (unknown: treated as the most restrictive). */
typedef struct {
    const char *id, *owner, *kind, *status;
} ns_policy_plan;

typedef struct {
    const char *type; /* entity type name */
    ns_op op;
    /* The record as it is now; NULL for a create. */
    const ns_fieldset *current;
    /* The mutation's fields (a create's initial fields, an update's mask). */
    const ns_fieldset *change;
    /* The record's plan; for a plan record, the plan itself as it is now
     * (NULL for a create: the change says what it will be). */
    const ns_policy_plan *plan;
    /* The organisation delegated rights follow (ns_policy_delegation_of),
     * as the record will be and as it is now (NULL for a create); NULL if
     * none or unknown. Delegation needs both to be the principal's. */
    const char *responsible;
    const char *responsible_now;
} ns_policy_write;

typedef struct {
    Napsync__V1__ErrorCode code; /* PERMISSION_DENIED, NOT_FOUND or INVALID_ARGUMENT */
    char field[64];              /* the field at fault, "" when none */
    char reason[256];
} ns_policy_refusal;

/* The directory (organisations, regions' member states, people, their
 * roles and devices: sql/009) is written by administrators only, each that
 * of their own organisation: its people, roles and devices, the
 * organisation itself (its parent excepted), the organisations whose parent
 * it is (create, change, delete) and, for a regional organisation, its
 * member states. The write's plan and responsible fields are unused; record_id
 * is the record's id. A resolution of a conflict on a directory record is
 * checked as an update that leaves the record as it is. */
bool ns_policy_is_directory(const char *type);
int ns_policy_check_directory(const ns_policy_actor *a, const char *record_id,
                              const ns_policy_write *w, ns_policy_refusal *out);

/* Returns 0 when a may make the write, 1 when not (why in *out). */
int ns_policy_check_write(const ns_policy_actor *a, const ns_policy_write *w,
                          ns_policy_refusal *out);

/* A conflict's resolution in plan p (a plan record's own: p is that plan):
 * an owner writer's. Returns 0 or 1 as ns_policy_check_write. */
int ns_policy_check_resolve(const ns_policy_actor *a, const ns_policy_plan *p,
                            ns_policy_refusal *out);

/* The organisation a type's delegated rights follow: the record's own
 * org_field, or, through its reference via_field, that of a via_type
 * record. NULL for types without delegation. Chains are at most
 * NS_POLICY_MAX_HOPS long. */
typedef struct {
    const char *type;
    const char *org_field; /* non-NULL: the record's own field */
    const char *via_field; /* else: follow this reference... */
    const char *via_type;  /* ...to a record of this type */
} ns_policy_delegation;

#define NS_POLICY_MAX_HOPS 3

const ns_policy_delegation *ns_policy_delegation_of(const char *type);

#endif
