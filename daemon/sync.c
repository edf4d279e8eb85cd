/* Push (sync.h): validation, group commit, one pipelined transaction per
 * batch, the merge in memory, answers after COMMIT.
 *
 * Objects and who owns them:
 *  - a push (sync_push) owns its mutations (sync_mut, one array). It lives
 *    from ns_sync_push until it has been answered and no batch holds any of
 *    its mutations (refs);
 *  - the FIFO links validated mutations not yet in a batch;
 *  - a batch (sync_batch) borrows the mutations it took and owns at most one
 *    run at a time; it lives until its last range of mutations has ended;
 *  - a run (sync_run) is one transaction over a range of the batch's
 *    mutations: BEGIN, reads (flush 1, maybe flush 2), the merge, writes and
 *    COMMIT (flush 3). Its answers are drafts until COMMIT succeeds.
 *
 * A run's statements are all queued from callbacks of the same transaction
 * and each phase starts when the last statement of the one before has
 * answered (run->pending). The end callback decides what comes next:
 * success, a retry, a split in halves (bisect) or failing the batch. */
#include "sync.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields_json.h"
#include "fields_pb.h"
#include "log.h"
#include "envelope.h"
#include "merge.h"
#include "metrics.h"
#include "policy.h"
#include "reader.h"
#include "value.h"

#define UUID_LEN        36
#define REASON_MAX      256
#define FIELD_MAX       64
#define RETRY_MAX       3      /* deadlocks and serialization failures re-run as is */
#define BISECT_STACK    40     /* ranges waiting: at most one per halving (log2 of a batch) */
#define MAX_QUEUED      100000 /* mutations waiting in the FIFO before pushes are refused */
#define OWNER_FIELD     "owner_id"
#define KIND_FIELD      "kind"
#define STATUS_FIELD    "status"
#define PLAN_WORD_MAX   32 /* plans.kind and plans.status values the policy knows */
#define FEED_CHANNEL    "napsync_feed"
#define HASH_SEED       1469598103934665603ull
#define HASH_PRIME      1099511628211ull
#define MUTATION_ID_MSG "mutation_id is not a UUID"

typedef char uuid_str[UUID_LEN + 1];

/* ---- types ---------------------------------------------------------------------------- */

typedef struct {
    Napsync__V1__MutationOutcome outcome;
    uint64_t version;
    uuid_str *conflict_ids; /* owned */
    size_t nconflicts;
    Napsync__V1__ErrorCode reject_code;
    char reason[REASON_MAX];
    char field[FIELD_MAX]; /* the field at fault, "" when none */
    bool replayed;         /* read from sync_mutations: given before (metrics) */
} sync_answer;

typedef struct sync_push sync_push;
typedef struct sync_mut sync_mut;
typedef struct sync_batch sync_batch;
typedef struct sync_run sync_run;

struct sync_mut {
    sync_push *push;
    sync_mut *fifo_next;
    /* In a batch: the first mutation of the batch with this id (NULL: this
     * is it), the repeats that take its answer, and its record's index. */
    sync_mut *leader;
    sync_mut *followers, *next_follower;
    uint32_t rec;
    bool done; /* answered, or failed with its push */
    /* A dry run's answer that later runs of the batch keep (a rejection
     * the database forced): they replay the others, not this one. */
    bool settled;
    char echo[UUID_LEN + 1]; /* mutation_id as sent (for the answer) */
    uuid_str id;             /* canonical, lowercase */
    const ns_entity_type *type;
    uuid_str record_id;
    uint64_t base;
    ns_op op;
    ns_fieldset fields; /* a resolution's: the given value (VALUE), else empty */
    sync_answer answer;
    /* A conflict's resolution (ns_sync_resolve): op is NS_OP_UPDATE, base 0. */
    bool resolve;
    ns_resolve_kind rkind;
    uuid_str conflict_id;
    char *rfield; /* the conflict's field, owned; NULL: a whole-record conflict */
};

struct sync_push {
    ns_sync *s;
    sync_push *ready_next;
    ns_push_cb cb;
    ns_resolve_cb rcb; /* a resolution: answered with its one MutationResult */
    void *ud;
    Napsync__V1__PushMode mode;
    uuid_str principal, organisation;
    unsigned roles;  /* policy.h */
    uuid_str device; /* "" when the session has no device */
    sync_mut *muts;
    size_t n;
    size_t pending; /* mutations not done */
    int refs;       /* mutations held by batches */
    bool answered;
    Napsync__V1__ErrorCode err; /* the push failed as a whole */
    char errmsg[REASON_MAX];
};

typedef struct {
    uint32_t *slots; /* index + 1; 0 is empty */
    size_t mask;
} idx_table;

typedef struct {
    const ns_entity_type *type;
    const char *id; /* the record_id of the first mutation naming it */
} batch_rec;

typedef struct {
    size_t lo, hi;
} leader_range;

struct sync_batch {
    ns_sync *s;
    sync_batch *next;
    sync_mut **muts; /* every mutation taken, FIFO order */
    size_t nmuts;
    sync_mut **leaders; /* one per mutation id, FIFO order */
    size_t nleaders;
    batch_rec *recs;
    size_t nrecs;
    idx_table ids;  /* mutation id -> leader */
    idx_table rids; /* (type, record id) -> record */
    leader_range stack[BISECT_STACK];
    size_t nstack;
    size_t lo, hi; /* the leaders of the running range */
    int retries;
    /* The single leader lo is rejected with this database message, unless
     * the database-free checks reject it first. */
    bool forced;
    Napsync__V1__ErrorCode forced_code;
    char forced_reason[REASON_MAX];
    char forced_field[FIELD_MAX];
    /* The batch is one push in PUSH_MODE_DRY_RUN or PUSH_MODE_ATOMIC (such
     * a push is always a batch of its own), else PUSH_MODE_APPLY. */
    Napsync__V1__PushMode mode;
};

typedef struct {
    uint64_t version;
    bool deleted;
    uuid_str device;
    char *after; /* the revision's JSON until parsed */
    size_t after_len;
    bool parsed;
    ns_fieldset fields;
} hist_entry;

typedef struct {
    bool in_run;     /* some leader of the range names it */
    bool exists;     /* as the batch has left it so far */
    bool loaded;     /* the row was read */
    bool need_revs;  /* a stale mutation needs revisions from min_base */
    bool dirty;      /* to be written */
    bool unreadable; /* its row's fields could not be read: see bad */
    uint64_t db_version, version, min_base;
    bool deleted;
    uuid_str tenant, changed_by, changed_device;
    ns_fieldset fields;
    hist_entry *hist; /* sorted by version */
    size_t nhist, hcap;
    char bad[REASON_MAX];
} rec_state;

/* A plan as committed (the owners query). */
typedef struct {
    uuid_str plan, owner; /* owner "" when the plan has none */
    char kind[PLAN_WORD_MAX], status[PLAN_WORD_MAX];
} plan_owner;

/* A record's delegation field (policy.h) as committed: the facts query. */
typedef struct {
    const ns_entity_type *type;
    uuid_str id;
    bool queried, answered;
    bool found;   /* the record exists */
    uuid_str ref; /* its org_field or via_field, "" when null */
} deleg_fact;

/* A conflict a resolution of the run names, as locked in the run. */
typedef struct {
    uuid_str id;
    char *entity_type, *record_id, *field; /* owned; field NULL: whole record */
    bool resolved;                         /* already, or by a resolution of this run */
    bool other_deleted;
    char *other, *other_fields; /* JSON text, owned, NULL for SQL NULL */
} run_conflict;

typedef enum {
    STMT_SELECT,
    STMT_STORED,
    STMT_REVISIONS,
    STMT_OWNERS,
    STMT_CONFLICTS,
    STMT_FACTS,
    STMT_WRITE,
} stmt_kind;

typedef struct {
    sync_run *run;
    stmt_kind kind;
    const ns_entity_type *type; /* STMT_SELECT, STMT_FACTS */
} stmt_ctx;

typedef enum {
    RUN_BEGIN,
    RUN_READ1,
    RUN_READ2,
    RUN_FACTS,
    RUN_WRITE,
    RUN_ENDING,
} run_phase;

struct sync_run {
    sync_batch *b;
    sync_run *end_next; /* on ns_sync.end_retry */
    size_t lo, hi;
    ns_db_txn *txn;
    run_phase phase;
    bool committing; /* COMMIT (not ROLLBACK) was asked for */
    int pending;     /* statements not answered yet */
    rec_state *recs; /* one per batch record */
    sync_answer *drafts;
    bool *stored; /* answered from sync_mutations */
    stmt_ctx *ctx;
    size_t nctx;
    plan_owner *owners; /* sorted by plan */
    size_t nowners;
    deleg_fact *facts; /* unsorted; searched linearly (a handful per run) */
    size_t nfacts, factcap;
    int fact_rounds;
    run_conflict *confs; /* sorted by id */
    size_t nconfs;
    /* What went wrong, if anything; the first of each kind is kept. */
    ns_db_status transport; /* UNAVAILABLE or SHUTDOWN, else OK */
    bool failed;            /* the database refused a statement */
    char sqlstate[6];
    char message[REASON_MAX];
    char column[FIELD_MAX]; /* the column the refusal names, if any */
    /* ATOMIC: a mutation was rejected before anything was written, so the
     * run ends with ROLLBACK and the others are answered ABORTED. */
    bool refused;
    bool internal;
    char internal_msg[REASON_MAX];
    json_t *revisions, *conflicts, *mutations, *feed;
    json_t *resolved; /* the conflicts this run closes */
};

struct ns_sync {
    uv_loop_t *loop;
    ns_db *db;
    const ns_registry *reg;
    const ns_entity_type *tenant_type;
    char *sql_owners;
    /* Per registry type (same index): the facts query of a type with a
     * delegation (policy.h), else NULL. */
    char **sql_facts;
    uv_idle_t idle;
    sync_mut *fifo_head, *fifo_tail;
    size_t fifo_len;
    sync_push *ready_head, *ready_tail;
    sync_batch *batches;
    unsigned nbatches;
    /* Runs whose COMMIT or ROLLBACK could not be queued (out of memory):
     * asked again from the loop, since an open transaction holds its
     * connection and its row locks. */
    sync_run *end_retry;
    bool closing, handle_closing;
    void (*done)(void *ud);
    void *done_ud;
};

static void run_start(sync_batch *b);
static void run_end(sync_run *run);
static void batch_next(sync_batch *b);
static void wake(ns_sync *s);

/* ---- SQL ------------------------------------------------------------------------------ */

static const char sql_stored[] =
    "SELECT mutation_id::text, outcome, version, array_to_string(conflict_ids, ','),"
    " reject_code, reject_reason, reject_field FROM sync_mutations"
    " WHERE mutation_id = ANY($1::uuid[])";

/* By the primary key, the record's tenant first (sql/011). */
static const char sql_revisions[] =
    "SELECT r.entity_type, r.record_id::text, r.version, r.deleted, r.device_id::text,"
    " r.after::text"
    "  FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::uuid[]) AS q(t, id, base, tenant)"
    "  JOIN sync_revisions r ON r.tenant_id = q.tenant AND r.entity_type = q.t"
    "       AND r.record_id = q.id AND r.version >= q.base"
    " ORDER BY 1, 2, 3";

static const char sql_insert_revisions[] =
    "INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op, mutation_id,"
    " principal_id, device_id, deleted, before, after)"
    " SELECT entity_type, record_id, version, tenant_id, op, mutation_id, principal_id,"
    " device_id, deleted, before, after"
    " FROM jsonb_to_recordset($1::jsonb) AS x(entity_type text, record_id uuid,"
    " version bigint, tenant_id uuid, op text, mutation_id uuid, principal_id uuid,"
    " device_id uuid, deleted boolean, before jsonb, after jsonb)";

static const char sql_insert_conflicts[] =
    "INSERT INTO sync_conflicts (id, entity_type, record_id, tenant_id, field, base, kept,"
    " other, kept_deleted, other_deleted, other_fields, kept_principal, kept_device,"
    " other_principal, other_device, mutation_id)"
    " SELECT id, entity_type, record_id, tenant_id, field, base, kept, other, kept_deleted,"
    " other_deleted, other_fields, kept_principal, kept_device, other_principal,"
    " other_device, mutation_id"
    " FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, entity_type text, record_id uuid,"
    " tenant_id uuid, field text, base jsonb, kept jsonb, other jsonb, kept_deleted boolean,"
    " other_deleted boolean, other_fields jsonb, kept_principal uuid, kept_device uuid,"
    " other_principal uuid, other_device uuid, mutation_id uuid)";

/* The conflicts resolutions name, locked after the records (every
 * resolution locks its record first, so two resolutions of one conflict
 * queue on the record and never deadlock here). */
static const char sql_conflicts[] =
    "SELECT id::text, entity_type, record_id::text, field, resolved_at IS NOT NULL,"
    " other_deleted, other::text, other_fields::text"
    "  FROM sync_conflicts WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE";

static const char sql_resolve_conflicts[] =
    "UPDATE sync_conflicts c SET resolved_at = now(), resolved_by = x.resolved_by,"
    " resolution_version = x.version"
    " FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, resolved_by uuid, version bigint)"
    " WHERE c.id = x.id";

static const char sql_insert_mutations[] =
    "INSERT INTO sync_mutations (mutation_id, device_id, entity_type, record_id, outcome,"
    " version, conflict_ids, reject_code, reject_reason, reject_field)"
    " SELECT mutation_id, device_id, entity_type, record_id, outcome, version, conflict_ids,"
    " reject_code, reject_reason, reject_field"
    " FROM jsonb_to_recordset($1::jsonb) AS x(mutation_id uuid, device_id uuid,"
    " entity_type text, record_id uuid, outcome text, version bigint, conflict_ids uuid[],"
    " reject_code integer, reject_reason text, reject_field text)";

/* Numbers the changes under sync_feed_head's row lock, held until COMMIT,
 * and notifies in the same statement (design §4): seqs are contiguous and
 * in commit order. The last statement before COMMIT, to hold the lock for
 * as short a time as possible. */
static const char sql_feed[] =
    "WITH h AS (UPDATE sync_feed_head SET seq = seq + $2::bigint"
    "           RETURNING seq - $2::bigint AS base),"
    " ins AS (INSERT INTO sync_feed (seq, entity_type, record_id, version, tenant_id)"
    "         SELECT h.base + x.ord, x.entity_type, x.record_id, x.version, x.tenant_id"
    "           FROM h, ROWS FROM (jsonb_to_recordset($1::jsonb) AS (entity_type text,"
    "                record_id uuid, version bigint, tenant_id uuid))"
    "                WITH ORDINALITY AS x(entity_type, record_id, version, tenant_id, ord)"
    "         RETURNING seq)"
    " SELECT pg_notify('" FEED_CHANNEL "', (SELECT max(seq) FROM ins)::text)";

/* ---- small helpers -------------------------------------------------------------------- */

static int uuid_random(uuid_str out)
{
    unsigned char b[16];
    /* No loop, no callback: synchronous, from the kernel's CSPRNG. */
    if (uv_random(NULL, NULL, b, sizeof(b), 0, NULL) != 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

/* Untrusted text for a message: printable ASCII, at most max bytes. */
static void quote(char *out, size_t outlen, const char *s, size_t max)
{
    size_t o = 0;
    for (size_t i = 0; s != NULL && s[i] != '\0' && o + 1 < outlen; i++) {
        if (i == max) {
            for (int k = 0; k < 3 && o + 1 < outlen; k++)
                out[o++] = '.';
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (outlen > 0)
        out[o] = '\0';
}

static void copy_uuid_or_empty(uuid_str out, const char *s)
{
    if (!ns_uuid_canon(s, out))
        out[0] = '\0';
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* fields_json.h reports running out of memory only in its message; that
 * must fail the run (to be retried), not reject a mutation for good. */
static bool out_of_memory(const char *why)
{
    return strstr(why, "out of memory") != NULL;
}

static const ns_field_type *field_type_of(const char *field, void *ud)
{
    const ns_field_def *d = ns_entity_field((const ns_entity_type *)ud, field);
    return d != NULL ? &d->type : NULL;
}

/* Sets a->field to the first field of fpb (in wire order) whose value t
 * refuses, as ns_fieldset_from_pb found it: its message names the field for
 * people, reject_field for programs. Only known fields get here, so the
 * name is one of the schema's. */
static void name_refused_field(sync_answer *a, const Napsync__V1__FieldSet *fpb,
                               const ns_entity_type *t)
{
    for (size_t i = 0; fpb != NULL && fpb->fields != NULL && i < fpb->n_fields; i++) {
        const Napsync__V1__Field *f = fpb->fields[i];
        const ns_field_type *ft = f && f->name ? field_type_of(f->name, (void *)t) : NULL;
        if (ft == NULL)
            continue;
        ns_value v;
        char why[16];
        if (ns_value_from_pb(f->value, ft, &v, why, sizeof(why)) == NS_VALUE_OK) {
            ns_value_free(&v);
            continue;
        }
        snprintf(a->field, sizeof(a->field), "%s", f->name);
        return;
    }
}

/* A growing string; on allocation failure it is NULL and stays so. */
typedef struct {
    char *s;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_add(sbuf *b, const char *s)
{
    if (b->failed)
        return;
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *ns = realloc(b->s, ncap);
        if (ns == NULL) {
            free(b->s);
            *b = (sbuf){.failed = true};
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

/* Appends an item to a PostgreSQL array literal being built ("{a,b"); the
 * items are UUIDs, numbers or plain identifiers, which need no quoting. */
static void sb_item(sbuf *b, const char *item)
{
    sb_add(b, b->len == 0 ? "{" : ",");
    sb_add(b, item);
}

static char *sb_array_end(sbuf *b)
{
    if (b->len == 0)
        sb_add(b, "{");
    sb_add(b, "}");
    return b->failed ? NULL : b->s;
}

/* ---- answers -------------------------------------------------------------------------- */

static void answer_clear(sync_answer *a)
{
    free(a->conflict_ids);
    memset(a, 0, sizeof(*a));
}

__attribute__((format(printf, 3, 4))) static int reject(sync_answer *a, Napsync__V1__ErrorCode code,
                                                        const char *fmt, ...)
{
    answer_clear(a);
    a->outcome = NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED;
    a->version = 0;
    a->reject_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof(a->reason), fmt, ap);
    va_end(ap);
    return 0;
}

/* The database refused this mutation alone (run_done). */
static int reject_forced(const sync_batch *b, sync_answer *a)
{
    reject(a, b->forced_code, "%s", b->forced_reason);
    memcpy(a->field, b->forced_field, sizeof(a->field));
    return 0;
}

static int answer_copy(sync_answer *dst, const sync_answer *src)
{
    *dst = *src;
    dst->conflict_ids = NULL;
    if (src->nconflicts > 0) {
        dst->conflict_ids = malloc(src->nconflicts * sizeof(*dst->conflict_ids));
        if (dst->conflict_ids == NULL) {
            dst->nconflicts = 0;
            return -1;
        }
        memcpy(dst->conflict_ids, src->conflict_ids, src->nconflicts * sizeof(uuid_str));
    }
    return 0;
}

static const char *outcome_text(Napsync__V1__MutationOutcome o)
{
    switch (o) {
    case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED:
        return "applied";
    case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED:
        return "merged";
    case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT:
        return "conflict";
    default:
        return "rejected";
    }
}

static int outcome_parse(const char *s, Napsync__V1__MutationOutcome *out)
{
    static const Napsync__V1__MutationOutcome all[] = {
        NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED,
        NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED,
        NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT,
        NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED,
    };
    for (size_t i = 0; s != NULL && i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(s, outcome_text(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

/* ---- pushes --------------------------------------------------------------------------- */

static void push_free(sync_push *p)
{
    for (size_t i = 0; i < p->n; i++) {
        ns_fieldset_free(&p->muts[i].fields);
        answer_clear(&p->muts[i].answer);
        free(p->muts[i].rfield);
    }
    free(p->muts);
    free(p);
}

/* The first failure of a push is the one it reports. */
__attribute__((format(printf, 3, 4))) static void
push_fail(sync_push *p, Napsync__V1__ErrorCode code, const char *fmt, ...)
{
    if (p->err != NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED)
        return;
    p->err = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
    va_end(ap);
}

static void push_ready(sync_push *p)
{
    ns_sync *s = p->s;
    p->ready_next = NULL;
    if (s->ready_tail != NULL)
        s->ready_tail->ready_next = p;
    else
        s->ready_head = p;
    s->ready_tail = p;
    wake(s);
}

static void mut_done(sync_mut *m)
{
    if (m->done)
        return;
    m->done = true;
    if (--m->push->pending == 0)
        push_ready(m->push);
}

/* Counts what was decided for each mutation of an answered push: an
 * answer read back from sync_mutations is a replay, decided before; a dry
 * run decides nothing. */
static void push_count(const sync_push *p)
{
    if (p->mode == NAPSYNC__V1__PUSH_MODE__PUSH_MODE_DRY_RUN)
        return;
    for (size_t i = 0; i < p->n; i++) {
        const sync_answer *a = &p->muts[i].answer;
        if (a->replayed) {
            ns_metrics_inc(NS_METRIC_MUTATION_REPLAYS);
            continue;
        }
        switch (a->outcome) {
        case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED:
            ns_metrics_inc(NS_METRIC_MUTATIONS_APPLIED);
            break;
        case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED:
            ns_metrics_inc(NS_METRIC_MUTATIONS_MERGED);
            break;
        case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT:
            ns_metrics_inc(NS_METRIC_MUTATIONS_CONFLICT);
            break;
        case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED:
            ns_metrics_inc(NS_METRIC_MUTATIONS_REJECTED);
            ns_metrics_count(NS_FAMILY_REJECTIONS, ns_error_code_name(a->reject_code));
            break;
        default:
            break;
        }
    }
}

/* Builds the PushResult (pointing into the push) and calls back. */
static void push_answer(sync_push *p)
{
    if (p->err != NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED) {
        if (p->rcb != NULL)
            p->rcb(NULL, p->err, p->errmsg, p->ud);
        else
            p->cb(NULL, p->err, p->errmsg, p->ud);
        return;
    }
    push_count(p);
    size_t n = p->n, nids = 0;
    for (size_t i = 0; i < n; i++)
        nids += p->muts[i].answer.nconflicts;
    Napsync__V1__MutationResult *res = calloc(n ? n : 1, sizeof(*res));
    Napsync__V1__MutationResult **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    char **ids = calloc(nids ? nids : 1, sizeof(*ids));
    if (res == NULL || ptrs == NULL || ids == NULL) {
        free(res);
        free(ptrs);
        free(ids);
        if (p->rcb != NULL)
            p->rcb(NULL, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory", p->ud);
        else
            p->cb(NULL, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory", p->ud);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        sync_mut *m = &p->muts[i];
        Napsync__V1__MutationResult *r = &res[i];
        napsync__v1__mutation_result__init(r);
        r->mutation_id = m->echo;
        r->outcome = m->answer.outcome;
        r->version = m->answer.version;
        r->reject_code = m->answer.reject_code;
        r->reject_reason = m->answer.reason;
        r->reject_field = m->answer.field;
        r->n_conflict_ids = m->answer.nconflicts;
        r->conflict_ids = m->answer.nconflicts ? &ids[k] : NULL;
        for (size_t c = 0; c < m->answer.nconflicts; c++)
            ids[k++] = m->answer.conflict_ids[c];
        ptrs[i] = r;
    }
    Napsync__V1__PushResult pr = NAPSYNC__V1__PUSH_RESULT__INIT;
    pr.n_results = n;
    pr.results = n ? ptrs : NULL;
    if (p->rcb != NULL)
        p->rcb(ptrs[0], NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED, NULL, p->ud);
    else
        p->cb(&pr, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED, NULL, p->ud);
    free(ids);
    free(ptrs);
    free(res);
}

/* Answers every push that is complete. A callback may push again or close
 * the engine: each push is taken off the list before its callback. */
static void flush_ready(ns_sync *s)
{
    while (s->ready_head != NULL) {
        sync_push *p = s->ready_head;
        s->ready_head = p->ready_next;
        if (s->ready_head == NULL)
            s->ready_tail = NULL;
        push_answer(p);
        p->answered = true;
        if (p->refs == 0)
            push_free(p);
    }
}

/* ---- validation ----------------------------------------------------------------------- */

#define READS_ONLY_MSG                                                                             \
    "observers and administrators read plans and comment on them; they do not change them"

/* Comments are the one type every reader writes (policy.h). */
static bool reader_writable(const ns_entity_type *t)
{
    return strcmp(t->name, "comment") == 0;
}

/* Checks one mutation against the registry and the request alone, and
 * fills m. Returns 1 when it goes on to the FIFO, 0 when it is rejected
 * (the rejection is its answer), -1 when out of memory. */
static int validate(ns_sync *s, sync_push *p, const Napsync__V1__Mutation *pb, sync_mut *m)
{
    sync_answer *a = &m->answer;
    char q[80];

    ns_fieldset_init(&m->fields);
    if (pb == NULL)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, "empty mutation");
    if (ns_uuid_canon(pb->mutation_id, m->id)) {
        memcpy(m->echo, pb->mutation_id, UUID_LEN + 1);
    } else {
        /* Echoed only if it is short, printable text. */
        m->echo[0] = '\0';
        if (pb->mutation_id != NULL && strlen(pb->mutation_id) <= UUID_LEN)
            quote(m->echo, sizeof(m->echo), pb->mutation_id, UUID_LEN);
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, MUTATION_ID_MSG);
    }
    m->type = pb->entity_type ? ns_registry_find(s->reg, pb->entity_type) : NULL;
    if (m->type == NULL) {
        quote(q, sizeof(q), pb->entity_type, 64);
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_ENTITY,
                      "unknown entity type \"%s\"", q);
    }
    const ns_entity_type *t = m->type;
    if (!ns_uuid_canon(pb->record_id, m->record_id))
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                      "record_id is not a UUID");
    switch (pb->op) {
    case NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE:
        m->op = NS_OP_CREATE;
        break;
    case NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE:
        m->op = NS_OP_UPDATE;
        break;
    case NAPSYNC__V1__MUTATION_OP__MUTATION_OP_DELETE:
        m->op = NS_OP_DELETE;
        break;
    default:
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                      "op must be create, update or delete");
    }
    m->base = pb->base_version;

    /* Unknown fields first: their own code, whatever else is wrong. */
    const Napsync__V1__FieldSet *fpb = pb->fields;
    for (size_t i = 0; fpb != NULL && i < fpb->n_fields; i++) {
        const Napsync__V1__Field *f = fpb->fields[i];
        if (f != NULL && f->name != NULL && ns_entity_field(t, f->name) == NULL) {
            quote(q, sizeof(q), f->name, 64);
            return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_ENTITY,
                          "unknown field \"%s\" of entity type %s", q, t->name);
        }
    }
    char why[REASON_MAX];
    ns_value_status st =
        ns_fieldset_from_pb(fpb, field_type_of, (void *)t, &m->fields, why, sizeof(why));
    if (st == NS_VALUE_NOMEM)
        return -1;
    if (st != NS_VALUE_OK) {
        reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, "%s", why);
        name_refused_field(a, fpb, t);
        return 0;
    }

    if (m->op == NS_OP_CREATE && m->base != 0)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                      "base_version must be 0 for a create");
    if (m->op == NS_OP_UPDATE && m->fields.n == 0)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                      "an update changes at least one field");
    if (m->op == NS_OP_DELETE && m->fields.n > 0)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                      "a delete carries no fields");
    if (t->tenant_field != NULL && m->op == NS_OP_CREATE) {
        const ns_value *v = ns_fieldset_get(&m->fields, t->tenant_field);
        if (v == NULL || v->is_null)
            return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                          "field %s (the record's plan) is required on create", t->tenant_field);
    }
    /* The cheap part of the policy, before anything is queued. */
    if (!t->directory && ns_policy_reads_only(p->roles) && !reader_writable(t))
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED, READS_ONLY_MSG);
    if (t == s->tenant_type) {
        const ns_value *owner = ns_fieldset_get(&m->fields, OWNER_FIELD);
        if (m->op == NS_OP_CREATE) {
            if (owner != NULL && !owner->is_null && strcmp(owner->u.s, p->organisation) != 0)
                return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED,
                              "field %s: a plan is created for the principal's own organisation",
                              OWNER_FIELD);
            if (owner == NULL || owner->is_null) {
                ns_value v;
                ns_value_init_null(&v, NS_KIND_REF);
                v.is_null = false;
                v.u.s = p->organisation; /* copied by ns_fieldset_set */
                if (ns_fieldset_set(&m->fields, OWNER_FIELD, &v) != 0)
                    return -1;
            }
        } else if (owner != NULL && owner->is_null) {
            /* A plan nobody owns could never be written again. */
            return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                          "field %s may not be null", OWNER_FIELD);
        }
    }
    m->answer.outcome = NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_UNSPECIFIED;
    return 1; /* valid: goes to the FIFO */
}

ns_sync_status ns_sync_push(ns_sync *s, const ns_identity_info *who, const Napsync__V1__Push *push,
                            ns_push_cb cb, void *ud)
{
    if (s == NULL || who == NULL || push == NULL || cb == NULL)
        return NS_SYNC_INVALID;
    if (s->closing)
        return NS_SYNC_SHUTDOWN;
    sync_push *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NS_SYNC_NOMEM;
    p->s = s;
    p->cb = cb;
    p->ud = ud;
    if (!ns_uuid_canon(who->principal_id, p->principal) ||
        !ns_uuid_canon(who->organisation_id, p->organisation)) {
        free(p);
        return NS_SYNC_INVALID;
    }
    copy_uuid_or_empty(p->device, who->device_id);
    p->mode = push->mode;

    size_t n = push->n_mutations;
    if (p->mode != NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY &&
        p->mode != NAPSYNC__V1__PUSH_MODE__PUSH_MODE_DRY_RUN &&
        p->mode != NAPSYNC__V1__PUSH_MODE__PUSH_MODE_ATOMIC) {
        push_fail(p, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                  "unknown push mode %d: nothing was applied", (int)p->mode);
        push_ready(p);
        return NS_SYNC_OK;
    }
    if (n > NS_SYNC_MAX_BATCH || s->fifo_len + n > MAX_QUEUED) {
        if (n > NS_SYNC_MAX_BATCH)
            push_fail(p, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                      "a push holds at most %u mutations, this one %zu: nothing was applied",
                      NS_SYNC_MAX_BATCH, n);
        else
            push_fail(p, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
                      "too many mutations waiting: retry later");
        ns_metrics_limit_hit(n > NS_SYNC_MAX_BATCH ? "max_push_mutations" : "sync_queue");
        push_ready(p);
        return NS_SYNC_OK;
    }
    if (n > 0 && push->mutations == NULL) {
        free(p);
        return NS_SYNC_INVALID;
    }
    p->muts = calloc(n ? n : 1, sizeof(*p->muts));
    if (p->muts == NULL) {
        free(p);
        return NS_SYNC_NOMEM;
    }
    p->n = n;
    p->roles = ns_policy_roles(who);
    sync_mut *head = NULL, *tail = NULL;
    size_t valid = 0;
    for (size_t i = 0; i < n; i++) {
        sync_mut *m = &p->muts[i];
        m->push = p;
        int rc = validate(s, p, push->mutations[i], m);
        if (rc < 0) {
            push_free(p);
            return NS_SYNC_NOMEM;
        }
        if (rc == 0) {
            m->done = true;
            continue;
        }
        if (tail != NULL)
            tail->fifo_next = m;
        else
            head = m;
        tail = m;
        valid++;
    }
    if (p->mode == NAPSYNC__V1__PUSH_MODE__PUSH_MODE_ATOMIC && valid < n) {
        /* All or nothing, and something is refused already. */
        for (sync_mut *m = head; m != NULL; m = m->fifo_next) {
            reject(&m->answer, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_ABORTED,
                   "not applied: another mutation of the atomic push was refused");
            m->done = true;
        }
        valid = 0;
    }
    p->pending = valid;
    if (valid == 0) {
        push_ready(p);
        return NS_SYNC_OK;
    }
    if (s->fifo_tail != NULL)
        s->fifo_tail->fifo_next = head;
    else
        s->fifo_head = head;
    s->fifo_tail = tail;
    s->fifo_len += valid;
    wake(s);
    return NS_SYNC_OK;
}

ns_sync_status ns_sync_resolve(ns_sync *s, const ns_identity_info *who,
                               const ns_sync_resolution *res, ns_resolve_cb cb, void *ud)
{
    bool rejected = res != NULL && res->reject_code != 0;
    if (s == NULL || who == NULL || res == NULL || cb == NULL)
        return NS_SYNC_INVALID;
    if (!rejected &&
        (res->type == NULL ||
         (res->kind != NS_RESOLVE_KEEP && res->kind != NS_RESOLVE_OTHER &&
          res->kind != NS_RESOLVE_VALUE) ||
         (res->kind == NS_RESOLVE_VALUE && (res->field == NULL || res->value == NULL))))
        return NS_SYNC_INVALID;
    if (s->closing)
        return NS_SYNC_SHUTDOWN;
    sync_push *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NS_SYNC_NOMEM;
    p->s = s;
    p->rcb = cb;
    p->ud = ud;
    p->muts = calloc(1, sizeof(*p->muts));
    if (p->muts == NULL) {
        free(p);
        return NS_SYNC_NOMEM;
    }
    p->n = 1;
    sync_mut *m = &p->muts[0];
    m->push = p;
    m->resolve = true;
    m->rkind = res->kind;
    m->type = res->type;
    m->op = NS_OP_UPDATE;
    ns_fieldset_init(&m->fields);
    if (!ns_uuid_canon(who->principal_id, p->principal) ||
        !ns_uuid_canon(who->organisation_id, p->organisation) ||
        (!rejected && (!ns_uuid_canon(res->record_id, m->record_id) ||
                       !ns_uuid_canon(res->conflict_id, m->conflict_id)))) {
        push_free(p);
        return NS_SYNC_INVALID;
    }
    copy_uuid_or_empty(p->device, who->device_id);
    p->roles = ns_policy_roles(who);
    if (!rejected && res->field != NULL && (m->rfield = strdup(res->field)) == NULL) {
        push_free(p);
        return NS_SYNC_NOMEM;
    }
    if (!rejected && res->kind == NS_RESOLVE_VALUE &&
        ns_fieldset_set(&m->fields, res->field, res->value) != 0) {
        push_free(p);
        return NS_SYNC_NOMEM;
    }
    /* The same checks as a mutation's, in the same order; these answers are
     * not stored (they depend on the request alone). */
    if (ns_uuid_canon(res->mutation_id, m->id)) {
        memcpy(m->echo, res->mutation_id, UUID_LEN + 1);
    } else {
        m->echo[0] = '\0';
        if (res->mutation_id != NULL && strlen(res->mutation_id) <= UUID_LEN)
            quote(m->echo, sizeof(m->echo), res->mutation_id, UUID_LEN);
        reject(&m->answer, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, MUTATION_ID_MSG);
    }
    if (m->answer.outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_UNSPECIFIED &&
        rejected)
        reject(&m->answer, res->reject_code, "%s",
               res->reject_reason != NULL ? res->reject_reason : "rejected");
    if (m->answer.outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_UNSPECIFIED &&
        ns_policy_reads_only(ns_policy_roles(who)))
        reject(&m->answer, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED, READS_ONLY_MSG);
    if (m->answer.outcome != NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_UNSPECIFIED) {
        m->done = true;
        push_ready(p);
        return NS_SYNC_OK;
    }
    if (s->fifo_len + 1 > MAX_QUEUED) {
        ns_metrics_limit_hit("sync_queue");
        push_fail(p, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
                  "too many mutations waiting: retry later");
        m->done = true;
        push_ready(p);
        return NS_SYNC_OK;
    }
    p->pending = 1;
    if (s->fifo_tail != NULL)
        s->fifo_tail->fifo_next = m;
    else
        s->fifo_head = m;
    s->fifo_tail = m;
    s->fifo_len++;
    wake(s);
    return NS_SYNC_OK;
}

/* ---- hash tables of a batch ----------------------------------------------------------- */

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= HASH_PRIME;
    }
    return h;
}

static int idx_init(idx_table *t, size_t entries)
{
    size_t cap = 16;
    while (cap < entries * 2)
        cap <<= 1;
    t->slots = calloc(cap, sizeof(*t->slots));
    if (t->slots == NULL)
        return -1;
    t->mask = cap - 1;
    return 0;
}

/* The slot of a mutation id: holding its leader, or empty where it goes. */
static uint32_t *id_slot(const sync_batch *b, const char *id)
{
    size_t i = (size_t)hash_str(HASH_SEED, id) & b->ids.mask;
    for (;; i = (i + 1) & b->ids.mask) {
        uint32_t v = b->ids.slots[i];
        if (v == 0 || strcmp(b->leaders[v - 1]->id, id) == 0)
            return &b->ids.slots[i];
    }
}

static uint32_t *rec_slot(const sync_batch *b, const ns_entity_type *t, const char *id)
{
    size_t i = (size_t)hash_str(hash_str(HASH_SEED, t->name), id) & b->rids.mask;
    for (;; i = (i + 1) & b->rids.mask) {
        uint32_t v = b->rids.slots[i];
        if (v == 0 || (b->recs[v - 1].type == t && strcmp(b->recs[v - 1].id, id) == 0))
            return &b->rids.slots[i];
    }
}

/* ---- batches -------------------------------------------------------------------------- */

static void batch_free(sync_batch *b)
{
    free(b->muts);
    free(b->leaders);
    free(b->recs);
    free(b->ids.slots);
    free(b->rids.slots);
    free(b);
}

/* Another running batch holds this mutation id or record: m must wait, so
 * that a record's mutations apply in FIFO order. */
static bool busy_elsewhere(const ns_sync *s, const sync_mut *m)
{
    for (const sync_batch *o = s->batches; o != NULL; o = o->next) {
        if (*id_slot(o, m->id) != 0 || *rec_slot(o, m->type, m->record_id) != 0)
            return true;
    }
    return false;
}

/* Takes what it may from the head of the FIFO. NULL when the head must
 * wait (or memory ran out: *nomem). */
static sync_batch *batch_form(ns_sync *s, bool *nomem)
{
    size_t cap = s->fifo_len < NS_SYNC_MAX_BATCH ? s->fifo_len : NS_SYNC_MAX_BATCH;
    *nomem = false;
    /* A dry run or an atomic push is a batch of its own, whole (its
     * mutations are consecutive in the FIFO and at most a batch). */
    const sync_push *own = s->fifo_head->push;
    bool alone = own->mode != NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY;
    for (const sync_mut *m = s->fifo_head; m != NULL && (m == s->fifo_head || alone);
         m = m->fifo_next) {
        if (alone && m->push != own)
            break;
        if (busy_elsewhere(s, m))
            return NULL;
    }
    sync_batch *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->muts = calloc(cap, sizeof(*b->muts))) == NULL ||
        (b->leaders = calloc(cap, sizeof(*b->leaders))) == NULL ||
        (b->recs = calloc(cap, sizeof(*b->recs))) == NULL || idx_init(&b->ids, cap) != 0 ||
        idx_init(&b->rids, cap) != 0) {
        if (b != NULL)
            batch_free(b);
        *nomem = true;
        return NULL;
    }
    b->s = s;
    b->mode = own->mode;
    while (s->fifo_head != NULL && b->nmuts < cap) {
        sync_mut *m = s->fifo_head;
        if (alone ? m->push != own
                  : (m->push->mode != NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY ||
                     busy_elsewhere(s, m)))
            break;
        uint32_t *is = id_slot(b, m->id);
        if (*is != 0) {
            sync_mut *l = b->leaders[*is - 1];
            m->leader = l;
            m->rec = l->rec;
            m->next_follower = l->followers;
            l->followers = m;
        } else {
            uint32_t *rs = rec_slot(b, m->type, m->record_id);
            if (*rs == 0) {
                b->recs[b->nrecs].type = m->type;
                b->recs[b->nrecs].id = m->record_id;
                *rs = (uint32_t)++b->nrecs;
            }
            m->leader = NULL;
            m->followers = NULL;
            m->rec = *rs - 1;
            b->leaders[b->nleaders++] = m;
            *is = (uint32_t)b->nleaders;
        }
        s->fifo_head = m->fifo_next;
        if (s->fifo_head == NULL)
            s->fifo_tail = NULL;
        s->fifo_len--;
        m->fifo_next = NULL;
        m->push->refs++;
        b->muts[b->nmuts++] = m;
    }
    return b;
}

/* Every mutation of b not answered yet fails with its push. */
__attribute__((format(printf, 3, 4))) static void
batch_fail_rest(sync_batch *b, Napsync__V1__ErrorCode code, const char *fmt, ...)
{
    char msg[REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < b->nmuts; i++) {
        sync_mut *m = b->muts[i];
        if (!m->done) {
            push_fail(m->push, code, "%s", msg);
            mut_done(m);
        }
    }
}

static void maybe_finish(ns_sync *s);

static void batch_end(sync_batch *b)
{
    ns_sync *s = b->s;
    for (sync_batch **pp = &s->batches; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    s->nbatches--;
    /* refs counts every mutation of a push held by any batch: when it drops
     * to 0 here, no later mutation of this batch belongs to that push. */
    for (size_t i = 0; i < b->nmuts; i++) {
        sync_push *p = b->muts[i]->push;
        if (--p->refs == 0 && p->answered)
            push_free(p);
    }
    batch_free(b);
    if (s->closing) {
        flush_ready(s);
        maybe_finish(s);
    } else {
        wake(s);
    }
}

/* Starts batches while there is room and work. */
static void kick(ns_sync *s)
{
    while (!s->closing && s->nbatches < NS_SYNC_MAX_BATCHES && s->fifo_head != NULL) {
        bool nomem;
        sync_batch *b = batch_form(s, &nomem);
        if (b == NULL) {
            if (nomem) {
                /* Nothing was taken: the FIFO waits for the next wake-up
                 * (a push, or a batch's end). */
                ns_log_error("sync: out of memory forming a batch");
            }
            return;
        }
        b->next = s->batches;
        s->batches = b;
        s->nbatches++;
        b->lo = 0;
        b->hi = b->nleaders;
        run_start(b);
    }
}

static void on_idle(uv_idle_t *h)
{
    ns_sync *s = h->data;
    uv_idle_stop(h);
    sync_run *retry = s->end_retry;
    s->end_retry = NULL;
    while (retry != NULL) {
        sync_run *next = retry->end_next;
        run_end(retry);
        retry = next;
    }
    if (s->closing)
        return;
    flush_ready(s);
    kick(s);
}

/* Answers and batches are started from the loop, never inside the call
 * that made them due: an idle handle runs before the loop next waits, so
 * everything that arrived in this turn of the loop forms one batch. */
static void wake(ns_sync *s)
{
    if (!s->closing)
        uv_idle_start(&s->idle, on_idle);
}

/* ---- runs: records and their history -------------------------------------------------- */

static void hist_free(rec_state *r)
{
    for (size_t i = 0; i < r->nhist; i++) {
        free(r->hist[i].after);
        ns_fieldset_free(&r->hist[i].fields);
    }
    free(r->hist);
    r->hist = NULL;
    r->nhist = r->hcap = 0;
}

static hist_entry *hist_get(const rec_state *r, uint64_t version)
{
    size_t lo = 0, hi = r->nhist;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->hist[mid].version == version)
            return &r->hist[mid];
        if (r->hist[mid].version < version)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Inserts a version (ignored if present). Takes after (JSON text) or
 * copies fields. Returns 0 or -1. */
static int hist_add(rec_state *r, uint64_t version, bool deleted, const char *device, char *after,
                    size_t after_len, const ns_fieldset *fields)
{
    size_t at = 0;
    while (at < r->nhist && r->hist[at].version < version)
        at++;
    if (at < r->nhist && r->hist[at].version == version) {
        free(after);
        return 0;
    }
    if (r->nhist == r->hcap) {
        size_t ncap = r->hcap ? r->hcap * 2 : 4;
        hist_entry *h = realloc(r->hist, ncap * sizeof(*h));
        if (h == NULL) {
            free(after);
            return -1;
        }
        r->hist = h;
        r->hcap = ncap;
    }
    hist_entry e = {.version = version, .deleted = deleted};
    snprintf(e.device, sizeof(e.device), "%s", device);
    ns_fieldset_init(&e.fields);
    if (fields != NULL) {
        if (ns_fieldset_copy(&e.fields, fields) != 0)
            return -1;
        e.parsed = true;
    } else {
        e.after = after;
        e.after_len = after_len;
    }
    memmove(&r->hist[at + 1], &r->hist[at], (r->nhist - at) * sizeof(*r->hist));
    r->hist[at] = e;
    r->nhist++;
    return 0;
}

static void run_free(sync_run *run)
{
    for (size_t i = 0; i < run->b->nrecs && run->recs != NULL; i++) {
        ns_fieldset_free(&run->recs[i].fields);
        hist_free(&run->recs[i]);
    }
    free(run->recs);
    for (size_t i = 0; run->drafts != NULL && i < run->hi - run->lo; i++)
        answer_clear(&run->drafts[i]);
    free(run->drafts);
    free(run->stored);
    free(run->ctx);
    free(run->owners);
    free(run->facts);
    for (size_t i = 0; i < run->nconfs; i++) {
        run_conflict *c = &run->confs[i];
        free(c->entity_type);
        free(c->record_id);
        free(c->field);
        free(c->other);
        free(c->other_fields);
    }
    free(run->confs);
    json_decref(run->resolved);
    json_decref(run->revisions);
    json_decref(run->conflicts);
    json_decref(run->mutations);
    json_decref(run->feed);
    free(run);
}

__attribute__((format(printf, 2, 3))) static void run_internal(sync_run *run, const char *fmt, ...)
{
    if (run->internal)
        return;
    run->internal = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->internal_msg, sizeof(run->internal_msg), fmt, ap);
    va_end(ap);
}

/* ---- runs: the end -------------------------------------------------------------------- */

static void run_succeeded(sync_run *run, bool was_forced);

/* Answers a leader and its repeats with a. */
static void answer_leader(sync_mut *m, const sync_answer *a)
{
    answer_clear(&m->answer);
    if (answer_copy(&m->answer, a) != 0)
        push_fail(m->push, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    for (sync_mut *f = m->followers; f != NULL; f = f->next_follower) {
        answer_clear(&f->answer);
        if (answer_copy(&f->answer, a) != 0)
            push_fail(f->push, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
        f->answer.replayed = true; /* a repeat of m's id: m's answer, decided once */
        mut_done(f);
    }
    mut_done(m);
}

/* ATOMIC, the database refused the transaction: every mutation not yet
 * answered is rejected, none applied. */
static void atomic_abort_all(sync_batch *b, const char *msg, const char *column)
{
    sync_answer a = {0};
    reject(&a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_ABORTED,
           "nothing of the atomic push was applied: %s", msg);
    snprintf(a.field, sizeof(a.field), "%s", column);
    for (size_t i = 0; i < b->nleaders; i++) {
        if (!b->leaders[i]->done)
            answer_leader(b->leaders[i], &a);
    }
}

/* ATOMIC, some mutation was rejected before anything was written (the run
 * rolled back): the rejected keep their answers, the others are ABORTED. */
static void atomic_refused(sync_run *run)
{
    for (size_t k = 0; k < run->hi - run->lo; k++) {
        sync_answer *d = &run->drafts[k];
        if (!run->stored[k] &&
            d->outcome != NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED)
            reject(d, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_ABORTED,
                   "not applied: another mutation of the atomic push was refused");
    }
    run_succeeded(run, false);
}

/* The run committed (a dry run: would have): drafts become answers. */
static void run_succeeded(sync_run *run, bool was_forced)
{
    sync_batch *b = run->b;
    bool dry = b->mode == NAPSYNC__V1__PUSH_MODE__PUSH_MODE_DRY_RUN;
    if (dry && was_forced)
        b->leaders[b->lo]->settled = true;
    for (size_t i = run->lo; i < run->hi; i++) {
        sync_mut *m = b->leaders[i];
        if (m->settled && !(dry && was_forced && i == b->lo))
            continue;
        sync_answer *d = &run->drafts[i - run->lo];
        if (dry) {
            /* Nothing was stored: no conflict id names a record. */
            free(d->conflict_ids);
            d->conflict_ids = NULL;
            d->nconflicts = 0;
        }
        answer_leader(m, d);
        answer_clear(d);
    }
}

static bool sqlstate_class(const char *st, const char *cls)
{
    return strncmp(st, cls, 2) == 0;
}

/* What to do after the run, which the end callback has just freed the
 * transaction of. Frees run. */
static void run_done(sync_run *run)
{
    sync_batch *b = run->b;
    ns_sync *s = b->s;
    bool was_forced = b->forced;
    b->forced = false;

    if (run->transport != NS_DB_OK) {
        bool down = run->transport == NS_DB_SHUTDOWN;
        ns_log_warn("sync: a batch of %zu mutations failed: %s", run->hi - run->lo,
                    ns_db_status_str(run->transport));
        run_free(run);
        if (down)
            batch_fail_rest(b, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                            "the server is shutting down; send the push again");
        else
            batch_fail_rest(b, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
                            "the database is unavailable; send the push again");
        batch_end(b);
        return;
    }
    if (run->internal) {
        ns_log_error("sync: a batch of %zu mutations failed: %s", run->hi - run->lo,
                     run->internal_msg);
        run_free(run);
        batch_fail_rest(b, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "internal error");
        batch_end(b);
        return;
    }
    if (!run->failed) {
        if (run->refused)
            atomic_refused(run);
        else
            run_succeeded(run, was_forced);
        run_free(run);
        b->retries = 0;
        batch_next(b);
        return;
    }

    /* The database refused something. */
    char state[6], msg[REASON_MAX - 64]; /* room for the prefix of forced_reason */
    char column[FIELD_MAX];
    memcpy(state, run->sqlstate, sizeof(state));
    memcpy(column, run->column, sizeof(column));
    quote(msg, sizeof(msg), run->message, sizeof(msg) - 4);
    /* The range under test (a dry run's run also replays the leaders
     * before it). */
    size_t lo = b->lo, hi = b->hi;
    run_free(run);
    if (sqlstate_class(state, "40") && b->retries < RETRY_MAX) {
        /* A deadlock or serialization failure: nobody's data is at fault. */
        b->retries++;
        b->forced = was_forced;
        run_start(b);
        return;
    }
    b->retries = 0;
    bool data = sqlstate_class(state, "22") || sqlstate_class(state, "23") ||
                sqlstate_class(state, "P0") || strcmp(state, "42501") == 0;
    if (!data || s->closing || was_forced) {
        bool transient = sqlstate_class(state, "40") || sqlstate_class(state, "53") ||
                         sqlstate_class(state, "55") || sqlstate_class(state, "57") ||
                         sqlstate_class(state, "58");
        ns_log_warn("sync: a batch of %zu mutations failed: SQLSTATE %s: %s", hi - lo, state, msg);
        batch_fail_rest(b,
                        transient ? NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE
                                  : NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                        transient ? "the database is busy; send the push again" : "internal error");
        batch_end(b);
        return;
    }
    if (b->mode == NAPSYNC__V1__PUSH_MODE__PUSH_MODE_ATOMIC) {
        /* All or nothing: nothing was applied. Which mutation's data it
         * was is not searched for (a dry run does that). */
        atomic_abort_all(b, msg, column);
        batch_end(b);
        return;
    }
    if (hi - lo > 1) {
        /* One mutation's data: halve until it is alone. The second half
         * waits on the stack and runs after the first, keeping the order. */
        size_t mid = lo + (hi - lo) / 2;
        b->stack[b->nstack].lo = mid;
        b->stack[b->nstack].hi = hi;
        b->nstack++;
        b->lo = lo;
        b->hi = mid;
        run_start(b);
        return;
    }
    /* Alone and still refused: rejected with the database's reason, and
     * that answer is stored like any other. A check_violation is the
     * model's validation (sql/003), whose message already reads
     * "<type>.<field>: <what is wrong>". */
    b->forced = true;
    /* insufficient_privilege: row-level security refused the row. */
    b->forced_code = strcmp(state, "42501") == 0
                         ? NAPSYNC__V1__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED
                         : NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT;
    if (strcmp(state, "23514") == 0 && column[0] != '\0')
        snprintf(b->forced_reason, sizeof(b->forced_reason), "%s", msg);
    else
        snprintf(b->forced_reason, sizeof(b->forced_reason), "refused by the database: %s", msg);
    memcpy(b->forced_field, column, sizeof(b->forced_field));
    run_start(b);
}

/* The callback of COMMIT or ROLLBACK; the transaction is gone after it. */
static void on_end(ns_db_status st, const ns_db_result *res, void *ud)
{
    sync_run *run = ud;
    run->txn = NULL;
    /* After ROLLBACK the run already knows why; after COMMIT, its answer
     * decides. A statement refused meanwhile (a write) made COMMIT a
     * ROLLBACK: the data error decides, not what the end heard. */
    if (run->committing && !run->failed && !run->internal && run->transport == NS_DB_OK) {
        switch (st) {
        case NS_DB_OK:
            break;
        case NS_DB_QUERY_FAILED:
            /* COMMIT itself refused (a deferred constraint). */
            run->failed = true;
            snprintf(run->sqlstate, sizeof(run->sqlstate), "%s", ns_db_result_sqlstate(res));
            snprintf(run->message, sizeof(run->message), "%s", ns_db_result_message(res));
            snprintf(run->column, sizeof(run->column), "%s", ns_db_result_column(res));
            break;
        case NS_DB_UNAVAILABLE:
        case NS_DB_SHUTDOWN:
            run->transport = st; /* the outcome of COMMIT is unknown */
            break;
        default:
            run_internal(run, "COMMIT: %s", ns_db_status_str(st));
            break;
        }
    }
    run_done(run);
}

/* Ends the transaction: COMMIT when everything went well, else ROLLBACK. */
static void run_end(sync_run *run)
{
    run->phase = RUN_ENDING;
    run->committing = !run->failed && !run->internal && !run->refused &&
                      run->transport == NS_DB_OK &&
                      run->b->mode != NAPSYNC__V1__PUSH_MODE__PUSH_MODE_DRY_RUN;
    ns_db_status st = run->committing ? ns_db_txn_commit(run->txn, on_end, run)
                                      : ns_db_txn_rollback(run->txn, on_end, run);
    if (st == NS_DB_NOMEM) {
        ns_sync *s = run->b->s;
        run->end_next = s->end_retry;
        s->end_retry = run;
        uv_idle_start(&s->idle, on_idle); /* closing or not: the handle is open */
        return;
    }
    if (st != NS_DB_OK) {
        /* Only a pool being closed refuses an end (the transaction is then
         * the pool's to finish): nothing more will be heard of it. */
        run->txn = NULL;
        if (run->transport == NS_DB_OK)
            run->transport = st == NS_DB_SHUTDOWN ? NS_DB_SHUTDOWN : NS_DB_UNAVAILABLE;
        run->committing = false;
        run_done(run);
    }
}

/* ---- runs: statements ----------------------------------------------------------------- */

static void on_stmt(ns_db_status st, const ns_db_result *res, void *ud);

static int run_query(sync_run *run, stmt_ctx *ctx, const char *sql, int n,
                     const char *const *values)
{
    ns_db_status st = ns_db_txn_query(run->txn, sql, n, values, on_stmt, ctx);
    if (st == NS_DB_OK) {
        run->pending++;
        return 0;
    }
    if (st == NS_DB_UNAVAILABLE || st == NS_DB_SHUTDOWN) {
        if (run->transport == NS_DB_OK)
            run->transport = st;
    } else {
        run_internal(run, "queueing a statement: %s", ns_db_status_str(st));
    }
    return -1;
}

static stmt_ctx *ctx_new(sync_run *run, stmt_kind kind, const ns_entity_type *t)
{
    if (run->nctx == run->b->s->reg->ntypes * 2 + 8)
        return NULL;
    stmt_ctx *c = &run->ctx[run->nctx++];
    c->run = run;
    c->kind = kind;
    c->type = t;
    return c;
}

/* Sends what was queued, or ends the run if something failed meanwhile
 * (nothing pending) or queueing did. */
static void run_flush(sync_run *run, bool queued_all)
{
    if (queued_all) {
        ns_db_status st = ns_db_txn_flush(run->txn);
        if (st == NS_DB_OK && run->pending > 0)
            return; /* the last statement's callback goes on */
        if (st == NS_DB_UNAVAILABLE || st == NS_DB_SHUTDOWN) {
            if (run->transport == NS_DB_OK)
                run->transport = st;
        } else if (st != NS_DB_OK) {
            run_internal(run, "flush: %s", ns_db_status_str(st));
        }
    }
    /* ROLLBACK sends whatever was queued; those statements answer before
     * the end callback, which then sees why. */
    run_end(run);
}

/* Flush 1: every record of the range, locked, type by type in name order,
 * then the stored answers (after the locks: a mutation another daemon is
 * applying right now is then seen as answered). */
static void queue_reads1(sync_run *run)
{
    sync_batch *b = run->b;
    const ns_registry *reg = b->s->reg;
    bool ok = true;
    /* The engine reads every record it merges (row-level security,
     * sql/005); what it writes is checked row by row regardless. */
    const char *engine = NS_READER_ENGINE;
    stmt_ctx *rc = ctx_new(run, STMT_WRITE, NULL);
    if (rc == NULL) {
        run_internal(run, "out of memory");
        ok = false;
    } else if (run_query(run, rc, NS_READER_SET_SQL, 1, &engine) != 0) {
        ok = false;
    }
    for (size_t t = 0; ok && t < reg->ntypes; t++) {
        const ns_entity_type *type = &reg->types[t];
        sbuf ids = {0};
        for (size_t i = 0; i < b->nrecs; i++) {
            if (run->recs[i].in_run && b->recs[i].type == type)
                sb_item(&ids, b->recs[i].id);
        }
        if (ids.len == 0 && !ids.failed)
            continue;
        const char *param = sb_array_end(&ids);
        stmt_ctx *c = ctx_new(run, STMT_SELECT, type);
        if (param == NULL || c == NULL) {
            run_internal(run, "out of memory");
            ok = false;
        } else if (run_query(run, c, type->sql_select_for_update, 1, &param) != 0) {
            ok = false;
        }
        free(ids.s);
    }
    if (ok) {
        sbuf ids = {0};
        for (size_t i = run->lo; i < run->hi; i++) {
            if (b->leaders[i]->resolve)
                sb_item(&ids, b->leaders[i]->conflict_id);
        }
        if (ids.len > 0 || ids.failed) {
            const char *param = sb_array_end(&ids);
            stmt_ctx *c = ctx_new(run, STMT_CONFLICTS, NULL);
            if (param == NULL || c == NULL) {
                run_internal(run, "out of memory");
                ok = false;
            } else if (run_query(run, c, sql_conflicts, 1, &param) != 0) {
                ok = false;
            }
        }
        free(ids.s);
    }
    if (ok) {
        sbuf ids = {0};
        for (size_t i = run->lo; i < run->hi; i++)
            sb_item(&ids, b->leaders[i]->id);
        const char *param = sb_array_end(&ids);
        stmt_ctx *c = ctx_new(run, STMT_STORED, NULL);
        if (param == NULL || c == NULL) {
            run_internal(run, "out of memory");
            ok = false;
        } else if (run_query(run, c, sql_stored, 1, &param) != 0) {
            ok = false;
        }
        free(ids.s);
    }
    run->phase = RUN_READ1;
    run_flush(run, ok);
}

static void on_begin(ns_db_status st, ns_db_txn *txn, void *ud)
{
    sync_run *run = ud;
    if (st != NS_DB_OK) {
        run->transport = st == NS_DB_SHUTDOWN ? NS_DB_SHUTDOWN : NS_DB_UNAVAILABLE;
        run_done(run);
        return;
    }
    run->txn = txn;
    queue_reads1(run);
}

static void run_start(sync_batch *b)
{
    ns_sync *s = b->s;
    sync_run *run = calloc(1, sizeof(*run));
    /* A dry run keeps nothing, so each run replays the leaders before its
     * range (their answers do not change) to test the range on the state
     * they leave. */
    size_t lo = b->mode == NAPSYNC__V1__PUSH_MODE__PUSH_MODE_DRY_RUN ? 0 : b->lo;
    size_t n = b->hi - lo;
    if (run != NULL) {
        run->b = b;
        run->lo = lo;
        run->hi = b->hi;
        run->recs = calloc(b->nrecs ? b->nrecs : 1, sizeof(*run->recs));
        run->drafts = calloc(n ? n : 1, sizeof(*run->drafts));
        run->stored = calloc(n ? n : 1, sizeof(*run->stored));
        run->ctx = calloc(s->reg->ntypes * 2 + 8, sizeof(*run->ctx));
    }
    if (run == NULL || run->recs == NULL || run->drafts == NULL || run->stored == NULL ||
        run->ctx == NULL) {
        if (run != NULL)
            run_free(run);
        ns_log_error("sync: out of memory starting a batch");
        batch_fail_rest(b, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
        batch_end(b);
        return;
    }
    for (size_t i = 0; i < b->nrecs; i++)
        ns_fieldset_init(&run->recs[i].fields);
    for (size_t i = run->lo; i < run->hi; i++)
        run->recs[b->leaders[i]->rec].in_run = true;
    ns_db_status st = ns_db_txn_begin(s->db, on_begin, run);
    if (st != NS_DB_OK) {
        run->transport = st == NS_DB_SHUTDOWN ? NS_DB_SHUTDOWN : NS_DB_UNAVAILABLE;
        run_done(run);
    }
}

static void batch_next(sync_batch *b)
{
    if (b->nstack > 0 && !b->s->closing) {
        b->nstack--;
        b->lo = b->stack[b->nstack].lo;
        b->hi = b->stack[b->nstack].hi;
        run_start(b);
        return;
    }
    batch_fail_rest(b, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                    "the server is shutting down; send the push again");
    batch_end(b);
}

/* ---- runs: reading the results -------------------------------------------------------- */

static void read_select(sync_run *run, const ns_entity_type *t, const ns_db_result *res)
{
    sync_batch *b = run->b;
    int rows = ns_db_result_rows(res);
    for (int row = 0; row < rows && !run->internal; row++) {
        uuid_str id;
        if (!ns_uuid_canon(ns_db_result_value(res, row, 0), id)) {
            run_internal(run, "%s: the database returned a malformed id", t->name);
            return;
        }
        uint32_t at = *rec_slot(b, t, id);
        if (at == 0)
            continue;
        rec_state *r = &run->recs[at - 1];
        if (r->loaded) {
            /* A second row: the id in two plans, which sql/011's check
             * refuses at COMMIT; rows written around it (SQL with the
             * triggers disabled) are left alone, neither is changed. */
            r->unreadable = true;
            snprintf(r->bad, sizeof(r->bad), "its id names records of two plans");
            continue;
        }
        const char *fields = ns_db_result_value(res, row, 4);
        if (parse_u64(ns_db_result_value(res, row, 1), &r->version) != 0 || fields == NULL ||
            !ns_uuid_canon(ns_db_result_value(res, row, 3), r->tenant)) {
            run_internal(run, "%s %s: the database returned a malformed row", t->name, id);
            return;
        }
        r->loaded = r->exists = true;
        r->db_version = r->version;
        const char *del = ns_db_result_value(res, row, 2);
        r->deleted = del != NULL && strcmp(del, "t") == 0;
        copy_uuid_or_empty(r->changed_by, ns_db_result_value(res, row, 5));
        copy_uuid_or_empty(r->changed_device, ns_db_result_value(res, row, 6));
        char why[REASON_MAX];
        if (ns_fields_from_json_text(t, fields, strlen(fields), &r->fields, why, sizeof(why)) !=
            0) {
            if (out_of_memory(why)) {
                run_internal(run, "out of memory");
                return;
            }
            /* Only the mutations of this record fail (see compute_one). */
            r->unreadable = true;
            snprintf(r->bad, sizeof(r->bad), "%s", why);
            continue;
        }
        if (hist_add(r, r->version, r->deleted, r->changed_device, NULL, 0, &r->fields) != 0)
            run_internal(run, "out of memory");
    }
}

static void read_stored(sync_run *run, const ns_db_result *res)
{
    sync_batch *b = run->b;
    int rows = ns_db_result_rows(res);
    for (int row = 0; row < rows && !run->internal; row++) {
        uuid_str id;
        if (!ns_uuid_canon(ns_db_result_value(res, row, 0), id))
            continue;
        uint32_t at = *id_slot(b, id);
        if (at == 0 || at - 1 < run->lo || at - 1 >= run->hi)
            continue;
        size_t k = at - 1 - run->lo;
        sync_answer *a = &run->drafts[k];
        answer_clear(a);
        uint64_t code;
        const char *ids = ns_db_result_value(res, row, 3);
        if (outcome_parse(ns_db_result_value(res, row, 1), &a->outcome) != 0 ||
            parse_u64(ns_db_result_value(res, row, 2), &a->version) != 0 ||
            parse_u64(ns_db_result_value(res, row, 4), &code) != 0 || code > 1000 || ids == NULL) {
            run_internal(run, "mutation %s: malformed stored answer", id);
            return;
        }
        a->reject_code = (Napsync__V1__ErrorCode)code;
        a->replayed = true;
        snprintf(a->reason, sizeof(a->reason), "%s",
                 ns_db_result_value(res, row, 5) ? ns_db_result_value(res, row, 5) : "");
        snprintf(a->field, sizeof(a->field), "%s",
                 ns_db_result_value(res, row, 6) ? ns_db_result_value(res, row, 6) : "");
        size_t n = *ids ? 1 : 0;
        for (const char *c = ids; *c; c++)
            n += *c == ',';
        if (n > 0) {
            a->conflict_ids = calloc(n, sizeof(*a->conflict_ids));
            if (a->conflict_ids == NULL) {
                run_internal(run, "out of memory");
                return;
            }
            const char *c = ids;
            for (size_t i = 0; i < n; i++) {
                char one[UUID_LEN + 1];
                size_t len = strcspn(c, ",");
                if (len != UUID_LEN) {
                    run_internal(run, "mutation %s: malformed stored conflict id", id);
                    return;
                }
                memcpy(one, c, UUID_LEN);
                one[UUID_LEN] = '\0';
                if (!ns_uuid_canon(one, a->conflict_ids[i])) {
                    run_internal(run, "mutation %s: malformed stored conflict id", id);
                    return;
                }
                a->nconflicts = i + 1;
                c += len + (c[len] == ',');
            }
        }
        run->stored[k] = true;
    }
}

static void read_revisions(sync_run *run, const ns_db_result *res)
{
    sync_batch *b = run->b;
    int rows = ns_db_result_rows(res);
    for (int row = 0; row < rows && !run->internal; row++) {
        const char *tname = ns_db_result_value(res, row, 0);
        const ns_entity_type *t = tname ? ns_registry_find(b->s->reg, tname) : NULL;
        uuid_str id, device;
        uint64_t version;
        const char *after = ns_db_result_value(res, row, 5);
        if (t == NULL || !ns_uuid_canon(ns_db_result_value(res, row, 1), id) ||
            parse_u64(ns_db_result_value(res, row, 2), &version) != 0 || after == NULL) {
            run_internal(run, "the database returned a malformed revision");
            return;
        }
        uint32_t at = *rec_slot(b, t, id);
        if (at == 0)
            continue;
        rec_state *r = &run->recs[at - 1];
        if (version >= r->db_version)
            continue; /* the row itself is the current version */
        copy_uuid_or_empty(device, ns_db_result_value(res, row, 4));
        const char *del = ns_db_result_value(res, row, 3);
        size_t len = strlen(after);
        char *copy = malloc(len + 1);
        if (copy == NULL) {
            run_internal(run, "out of memory");
            return;
        }
        memcpy(copy, after, len + 1);
        if (hist_add(r, version, del != NULL && strcmp(del, "t") == 0, device, copy, len, NULL) !=
            0)
            run_internal(run, "out of memory");
    }
}

static int owner_cmp(const void *a, const void *b)
{
    return strcmp(((const plan_owner *)a)->plan, ((const plan_owner *)b)->plan);
}

static void read_owners(sync_run *run, const ns_db_result *res)
{
    int rows = ns_db_result_rows(res);
    if (rows <= 0)
        return;
    run->owners = calloc((size_t)rows, sizeof(*run->owners));
    if (run->owners == NULL) {
        run_internal(run, "out of memory");
        return;
    }
    for (int row = 0; row < rows; row++) {
        plan_owner *o = &run->owners[run->nowners];
        if (!ns_uuid_canon(ns_db_result_value(res, row, 0), o->plan))
            continue;
        copy_uuid_or_empty(o->owner, ns_db_result_value(res, row, 1));
        const char *kind = ns_db_result_value(res, row, 2);
        const char *status = ns_db_result_value(res, row, 3);
        snprintf(o->kind, sizeof(o->kind), "%s", kind != NULL ? kind : "");
        snprintf(o->status, sizeof(o->status), "%s", status != NULL ? status : "");
        run->nowners++;
    }
    qsort(run->owners, run->nowners, sizeof(*run->owners), owner_cmp);
}

static int conf_cmp(const void *a, const void *b)
{
    return strcmp(((const run_conflict *)a)->id, ((const run_conflict *)b)->id);
}

static char *dup_or_null(const char *s, bool *ok)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *ok = false;
    return d;
}

static void read_conflicts(sync_run *run, const ns_db_result *res)
{
    int rows = ns_db_result_rows(res);
    if (rows <= 0)
        return;
    run->confs = calloc((size_t)rows, sizeof(*run->confs));
    if (run->confs == NULL) {
        run_internal(run, "out of memory");
        return;
    }
    bool ok = true;
    for (int row = 0; row < rows && ok; row++) {
        run_conflict *c = &run->confs[run->nconfs];
        const char *type = ns_db_result_value(res, row, 1);
        const char *rid = ns_db_result_value(res, row, 2);
        const char *resolved = ns_db_result_value(res, row, 4);
        const char *odel = ns_db_result_value(res, row, 5);
        if (!ns_uuid_canon(ns_db_result_value(res, row, 0), c->id) || type == NULL || rid == NULL ||
            resolved == NULL || odel == NULL) {
            run_internal(run, "the database returned a malformed conflict");
            return;
        }
        run->nconfs++;
        c->resolved = strcmp(resolved, "t") == 0;
        c->other_deleted = strcmp(odel, "t") == 0;
        c->entity_type = dup_or_null(type, &ok);
        c->record_id = dup_or_null(rid, &ok);
        c->field = dup_or_null(ns_db_result_value(res, row, 3), &ok);
        c->other = dup_or_null(ns_db_result_value(res, row, 6), &ok);
        c->other_fields = dup_or_null(ns_db_result_value(res, row, 7), &ok);
    }
    if (!ok) {
        run_internal(run, "out of memory");
        return;
    }
    qsort(run->confs, run->nconfs, sizeof(*run->confs), conf_cmp);
}

static void compute_and_write(sync_run *run);
static void facts_next(sync_run *run);
static void read_facts(sync_run *run, const ns_entity_type *t, const ns_db_result *res);

/* Flush 2, when needed: the revisions stale mutations merge against, and
 * the owners of the plans whose records the range writes. */
static void queue_reads2(sync_run *run)
{
    sync_batch *b = run->b;
    ns_sync *s = b->s;
    for (size_t i = run->lo; i < run->hi; i++) {
        sync_mut *m = b->leaders[i];
        rec_state *r = &run->recs[m->rec];
        if (run->stored[i - run->lo] || m->resolve || m->op == NS_OP_CREATE || !r->loaded ||
            r->unreadable || m->base >= r->db_version)
            continue;
        if (!r->need_revs || m->base < r->min_base)
            r->min_base = m->base;
        r->need_revs = true;
    }
    sbuf types = {0}, ids = {0}, bases = {0}, tenants = {0}, plans = {0};
    for (size_t i = 0; i < b->nrecs; i++) {
        if (!run->recs[i].need_revs)
            continue;
        char num[24];
        snprintf(num, sizeof(num), "%" PRIu64, run->recs[i].min_base);
        sb_item(&types, b->recs[i].type->name);
        sb_item(&ids, b->recs[i].id);
        sb_item(&bases, num);
        sb_item(&tenants, run->recs[i].tenant); /* read with the row: it exists */
    }
    for (size_t i = run->lo; i < run->hi; i++) {
        sync_mut *m = b->leaders[i];
        if (run->stored[i - run->lo] || m->type->tenant_field == NULL)
            continue;
        rec_state *r = &run->recs[m->rec];
        if (m->op == NS_OP_CREATE)
            sb_item(&plans, ns_fieldset_get(&m->fields, m->type->tenant_field)->u.s);
        else if (r->loaded)
            sb_item(&plans, r->tenant);
    }
    bool need_revs = types.len > 0, need_owners = plans.len > 0;
    bool ok = true;
    if (types.failed || ids.failed || bases.failed || tenants.failed || plans.failed) {
        /* Without them the merge would go wrong, not just fail. */
        run_internal(run, "out of memory");
        need_revs = need_owners = ok = false;
    }
    if (need_revs) {
        const char *params[4] = {sb_array_end(&types), sb_array_end(&ids), sb_array_end(&bases),
                                 sb_array_end(&tenants)};
        stmt_ctx *c = ctx_new(run, STMT_REVISIONS, NULL);
        if (params[0] == NULL || params[1] == NULL || params[2] == NULL || params[3] == NULL ||
            c == NULL) {
            run_internal(run, "out of memory");
            ok = false;
        } else if (run_query(run, c, sql_revisions, 4, params) != 0) {
            ok = false;
        }
    }
    if (ok && need_owners) {
        const char *param = sb_array_end(&plans);
        stmt_ctx *c = ctx_new(run, STMT_OWNERS, NULL);
        if (param == NULL || c == NULL) {
            run_internal(run, "out of memory");
            ok = false;
        } else if (run_query(run, c, s->sql_owners, 1, &param) != 0) {
            ok = false;
        }
    }
    free(types.s);
    free(ids.s);
    free(bases.s);
    free(tenants.s);
    free(plans.s);
    if (!need_revs && !need_owners && !run->internal) {
        facts_next(run);
        return;
    }
    run->phase = RUN_READ2;
    run_flush(run, ok);
}

static void on_stmt(ns_db_status st, const ns_db_result *res, void *ud)
{
    stmt_ctx *c = ud;
    sync_run *run = c->run;
    run->pending--;
    if (st == NS_DB_OK && !run->failed && !run->internal) {
        switch (c->kind) {
        case STMT_SELECT:
            read_select(run, c->type, res);
            break;
        case STMT_STORED:
            read_stored(run, res);
            break;
        case STMT_REVISIONS:
            read_revisions(run, res);
            break;
        case STMT_OWNERS:
            read_owners(run, res);
            break;
        case STMT_CONFLICTS:
            read_conflicts(run, res);
            break;
        case STMT_FACTS:
            read_facts(run, c->type, res);
            break;
        case STMT_WRITE:
            break;
        }
    } else if (st == NS_DB_QUERY_FAILED) {
        if (!run->failed) {
            run->failed = true;
            snprintf(run->sqlstate, sizeof(run->sqlstate), "%s", ns_db_result_sqlstate(res));
            snprintf(run->message, sizeof(run->message), "%s", ns_db_result_message(res));
            snprintf(run->column, sizeof(run->column), "%s", ns_db_result_column(res));
        }
    } else if (st == NS_DB_ABORTED) {
        run->failed = true; /* the failed statement before it says why */
    } else if (st == NS_DB_UNAVAILABLE || st == NS_DB_SHUTDOWN) {
        if (run->transport == NS_DB_OK)
            run->transport = st;
    } else if (st != NS_DB_OK) {
        run_internal(run, "statement: %s", ns_db_status_str(st));
    }
    if (run->pending > 0 || run->phase == RUN_ENDING || run->phase == RUN_WRITE)
        return; /* in the write phase, the end callback follows by itself */
    if (run->failed || run->internal || run->transport != NS_DB_OK) {
        run_end(run);
        return;
    }
    if (run->phase == RUN_READ1)
        queue_reads2(run);
    else
        facts_next(run);
}

/* ---- runs: delegation facts ----------------------------------------------------------- */

static const char *resp_of(sync_run *run, const ns_entity_type *t, const ns_fieldset *change,
                           const ns_fieldset *current, int hops, bool *missing);
static deleg_fact *fact_find(sync_run *run, const ns_entity_type *t, const char *id);

static void read_facts(sync_run *run, const ns_entity_type *t, const ns_db_result *res)
{
    int rows = ns_db_result_rows(res);
    for (int row = 0; row < rows; row++) {
        uuid_str id;
        if (!ns_uuid_canon(ns_db_result_value(res, row, 0), id))
            continue;
        deleg_fact *f = fact_find(run, t, id);
        if (f == NULL)
            continue;
        f->found = true;
        copy_uuid_or_empty(f->ref, ns_db_result_value(res, row, 1));
    }
    for (size_t i = 0; i < run->nfacts; i++) {
        if (run->facts[i].type == t && run->facts[i].queried)
            run->facts[i].answered = true;
    }
}

/* Before the merge: the committed records the policy's delegation chains
 * pass through (policy.h), read round by round (a chain's next record is
 * known once the one before it is read), at most NS_POLICY_MAX_HOPS + 1
 * rounds. Then compute_and_write. */
static void facts_next(sync_run *run)
{
    sync_batch *b = run->b;
    ns_sync *s = b->s;
    if (run->fact_rounds <= NS_POLICY_MAX_HOPS) {
        for (size_t i = run->lo; i < run->hi; i++) {
            sync_mut *m = b->leaders[i];
            if (run->stored[i - run->lo] || m->settled || m->resolve)
                continue;
            const rec_state *r = &run->recs[m->rec];
            const ns_fieldset *current = r->exists ? &r->fields : NULL;
            bool missing = false;
            (void)resp_of(run, m->type, &m->fields, current, 0, &missing);
            if (current != NULL)
                (void)resp_of(run, m->type, NULL, current, 0, &missing);
        }
    }
    bool ok = !run->internal, queued = false;
    for (size_t t = 0; ok && t < s->reg->ntypes && run->fact_rounds <= NS_POLICY_MAX_HOPS; t++) {
        const ns_entity_type *type = &s->reg->types[t];
        sbuf ids = {0};
        for (size_t i = 0; i < run->nfacts; i++) {
            deleg_fact *f = &run->facts[i];
            if (f->type != type || f->queried)
                continue;
            f->queried = true;
            if (s->sql_facts[t] == NULL)
                f->answered = true; /* no delegation field: nothing to read */
            else
                sb_item(&ids, f->id);
        }
        if (ids.len == 0 && !ids.failed) {
            free(ids.s);
            continue;
        }
        const char *param = sb_array_end(&ids);
        stmt_ctx *c = ctx_new(run, STMT_FACTS, type);
        if (param == NULL || c == NULL) {
            run_internal(run, "out of memory");
            ok = false;
        } else if (run_query(run, c, s->sql_facts[t], 1, &param) != 0) {
            ok = false;
        } else {
            queued = true;
        }
        free(ids.s);
    }
    run->fact_rounds++;
    if (!queued && ok) {
        compute_and_write(run);
        return;
    }
    run->phase = RUN_FACTS;
    run_flush(run, ok);
}

/* ---- runs: the merge ------------------------------------------------------------------ */

/* JSON helpers: each takes its value (jansson's _new convention) and
 * reports failure through *ok. */
static void jset(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (o == NULL) {
        json_decref(v);
        *ok = false;
    } else if (json_object_set_new(o, key, v) != 0) {
        *ok = false;
    }
}

static json_t *juuid(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static void jappend(json_t **arr, json_t *v, bool *ok)
{
    if (v == NULL) {
        *ok = false;
    } else if (*arr == NULL && (*arr = json_array()) == NULL) {
        json_decref(v);
        *ok = false;
    } else if (json_array_append_new(*arr, v) != 0) {
        *ok = false;
    }
}

/* The text of a field, NULL when null or absent. */
static const char *field_text(const ns_fieldset *fs, const char *name)
{
    const ns_value *v = fs != NULL ? ns_fieldset_get(fs, name) : NULL;
    return v != NULL && !v->is_null && (v->kind == NS_KIND_TEXT || v->kind == NS_KIND_REF) ? v->u.s
                                                                                           : NULL;
}

static const char *empty_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

/* A plan as this run sees it: as the batch has left it, if the range holds
 * it, else as committed. Returns false when there is no such plan. The
 * strings point into the run. */
static bool tenant_plan(sync_run *run, const char *plan, ns_policy_plan *out)
{
    sync_batch *b = run->b;
    memset(out, 0, sizeof(*out));
    out->id = plan;
    uint32_t at = *rec_slot(b, b->s->tenant_type, plan);
    if (at != 0 && run->recs[at - 1].in_run && run->recs[at - 1].exists) {
        const ns_fieldset *fs = &run->recs[at - 1].fields;
        out->owner = field_text(fs, OWNER_FIELD);
        out->kind = field_text(fs, KIND_FIELD);
        out->status = field_text(fs, STATUS_FIELD);
        return true;
    }
    plan_owner key;
    memcpy(key.plan, plan, sizeof(key.plan));
    const plan_owner *o = run->owners == NULL ? NULL
                                              : bsearch(&key, run->owners, run->nowners,
                                                        sizeof(*run->owners), owner_cmp);
    if (o == NULL)
        return false;
    out->owner = empty_null(o->owner);
    out->kind = empty_null(o->kind);
    out->status = empty_null(o->status);
    return true;
}

/* ---- the policy: delegation facts and the decision --------------------------------------- */

/* The value a write leaves in a field: the change's, else the record's. */
static const char *after_text(const ns_fieldset *change, const ns_fieldset *current,
                              const char *name)
{
    if (change != NULL && ns_fieldset_get(change, name) != NULL)
        return field_text(change, name);
    return field_text(current, name);
}

static deleg_fact *fact_find(sync_run *run, const ns_entity_type *t, const char *id)
{
    for (size_t i = 0; i < run->nfacts; i++) {
        if (run->facts[i].type == t && strcmp(run->facts[i].id, id) == 0)
            return &run->facts[i];
    }
    return NULL;
}

/* Asks for the committed delegation field of record id of t (queried in
 * the next round of facts_next). */
static void fact_need(sync_run *run, const ns_entity_type *t, const char *id)
{
    if (fact_find(run, t, id) != NULL)
        return;
    if (run->nfacts == run->factcap) {
        size_t ncap = run->factcap ? run->factcap * 2 : 16;
        deleg_fact *f = realloc(run->facts, ncap * sizeof(*f));
        if (f == NULL) {
            run_internal(run, "out of memory");
            return;
        }
        run->facts = f;
        run->factcap = ncap;
    }
    deleg_fact *f = &run->facts[run->nfacts++];
    memset(f, 0, sizeof(*f));
    f->type = t;
    memcpy(f->id, id, sizeof(f->id));
}

static const char *resp_of_id(sync_run *run, const ns_entity_type *t, const char *id, int hops,
                              bool *missing);

/* The organisation a record's delegated rights follow (policy.h), its
 * fields being change over current; NULL when none. A committed record on
 * the way whose fact has not been read sets *missing (and is asked for). */
static const char *resp_of(sync_run *run, const ns_entity_type *t, const ns_fieldset *change,
                           const ns_fieldset *current, int hops, bool *missing)
{
    const ns_policy_delegation *d = ns_policy_delegation_of(t->name);
    if (d == NULL || hops > NS_POLICY_MAX_HOPS)
        return NULL;
    if (d->org_field != NULL)
        return after_text(change, current, d->org_field);
    const char *ref = after_text(change, current, d->via_field);
    const ns_entity_type *vt = ns_registry_find(run->b->s->reg, d->via_type);
    if (ref == NULL || vt == NULL)
        return NULL;
    return resp_of_id(run, vt, ref, hops + 1, missing);
}

static const char *resp_of_id(sync_run *run, const ns_entity_type *t, const char *id, int hops,
                              bool *missing)
{
    uuid_str canon;
    if (!ns_uuid_canon(id, canon))
        return NULL;
    uint32_t at = *rec_slot(run->b, t, canon);
    if (at != 0 && run->recs[at - 1].in_run && run->recs[at - 1].exists)
        return resp_of(run, t, NULL, &run->recs[at - 1].fields, hops, missing);
    deleg_fact *f = fact_find(run, t, canon);
    if (f == NULL || !f->answered) {
        fact_need(run, t, canon);
        *missing = true;
        return NULL;
    }
    if (!f->found || f->ref[0] == '\0')
        return NULL;
    const ns_policy_delegation *d = ns_policy_delegation_of(t->name);
    if (d == NULL)
        return NULL;
    if (d->org_field != NULL)
        return f->ref;
    const ns_entity_type *vt = ns_registry_find(run->b->s->reg, d->via_type);
    return vt != NULL && hops < NS_POLICY_MAX_HOPS ? resp_of_id(run, vt, f->ref, hops + 1, missing)
                                                   : NULL;
}

/* 0: the policy lets the principal make m on r (whose plan is tenant, or
 * which is a plan); 1: rejected into a, and logged. */
/* The policy's refusal as m's answer, logged once here. Returns 1. */
static int refused(const sync_mut *m, sync_answer *a, const ns_policy_refusal *why)
{
    if (why->code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND && m->op != NS_OP_CREATE)
        /* A record of a plan this principal may not see: the answer for a
         * record that does not exist, word for word, so that it names
         * nothing the sender did not send (the policy's reason names the
         * record's plan; the log keeps it). */
        reject(a, why->code, "%s %s does not exist", m->type->name, m->record_id);
    else
        reject(a, why->code, "%s", why->reason);
    snprintf(a->field, sizeof(a->field), "%s", why->field);
    ns_log(NS_LOG_INFO, NULL, m->push->principal, "refused: %s of %s %s: %s",
           m->op == NS_OP_CREATE   ? "create"
           : m->op == NS_OP_DELETE ? "delete"
                                   : "update",
           m->type->name, m->record_id, why->reason);
    return 1;
}

static int authorise(sync_run *run, const sync_mut *m, const rec_state *r, const char *tenant,
                     sync_answer *a)
{
    const sync_push *p = m->push;
    const ns_policy_actor actor = {p->principal, p->organisation, p->roles};
    const ns_fieldset *current = r->exists ? &r->fields : NULL;
    ns_policy_refusal why;
    if (m->type->directory) {
        ns_policy_write w = {
            .type = m->type->name, .op = m->op, .current = current, .change = &m->fields};
        if (ns_policy_check_directory(&actor, m->record_id, &w, &why) == 0)
            return 0;
        return refused(m, a, &why);
    }
    ns_policy_plan plan = {0};
    bool have_plan;
    if (m->type == run->b->s->tenant_type) {
        have_plan = current != NULL;
        plan.id = m->record_id;
        plan.owner = field_text(current, OWNER_FIELD);
        plan.kind = field_text(current, KIND_FIELD);
        plan.status = field_text(current, STATUS_FIELD);
    } else {
        have_plan = tenant_plan(run, tenant, &plan);
    }
    bool missing = false;
    ns_policy_write w = {
        .type = m->type->name,
        .op = m->op,
        .current = current,
        .change = &m->fields,
        .plan = have_plan ? &plan : NULL,
    };
    w.responsible = resp_of(run, m->type, &m->fields, current, 0, &missing);
    w.responsible_now = current != NULL ? resp_of(run, m->type, NULL, current, 0, &missing) : NULL;
    if (ns_policy_check_write(&actor, &w, &why) == 0)
        return 0;
    return refused(m, a, &why);
}

static int is_frozen(const ns_entity_type *t, const ns_fieldset *fs, bool *frozen)
{
    *frozen = false;
    if (t->freeze_field == NULL || t->freeze_value == NULL)
        return 0;
    const ns_value *v = ns_fieldset_get(fs, t->freeze_field);
    if (v == NULL || v->is_null)
        return 0;
    char *text = ns_value_format(v);
    if (text == NULL)
        return -1;
    *frozen = strcmp(text, t->freeze_value) == 0;
    free(text);
    return 0;
}

/* A revision row and a feed entry for r's new version. */
static int add_change(sync_run *run, const sync_mut *m, const rec_state *r, const char *op,
                      json_t *before)
{
    const sync_push *p = m->push;
    bool ok = true;
    json_t *rev = json_object();
    jset(rev, "entity_type", json_string(m->type->name), &ok);
    jset(rev, "record_id", json_string(m->record_id), &ok);
    jset(rev, "version", json_integer((json_int_t)r->version), &ok);
    jset(rev, "tenant_id", json_string(r->tenant), &ok);
    jset(rev, "op", json_string(op), &ok);
    jset(rev, "mutation_id", json_string(m->id), &ok);
    jset(rev, "principal_id", json_string(p->principal), &ok);
    jset(rev, "device_id", juuid(p->device), &ok);
    jset(rev, "deleted", json_boolean(r->deleted), &ok);
    jset(rev, "before", before, &ok);
    jset(rev, "after", ns_fields_to_json(&r->fields), &ok);
    jappend(&run->revisions, rev, &ok);

    json_t *feed = json_object();
    jset(feed, "entity_type", json_string(m->type->name), &ok);
    jset(feed, "record_id", json_string(m->record_id), &ok);
    jset(feed, "version", json_integer((json_int_t)r->version), &ok);
    jset(feed, "tenant_id", json_string(r->tenant), &ok);
    jappend(&run->feed, feed, &ok);
    return ok ? 0 : -1;
}

static int add_conflict(sync_run *run, const sync_mut *m, const rec_state *r,
                        const ns_merge_conflict *c, const char *id, const char *kept_by,
                        const char *kept_device)
{
    const sync_push *p = m->push;
    bool ok = true;
    bool whole = c->field == NULL;
    json_t *o = json_object();
    jset(o, "id", json_string(id), &ok);
    jset(o, "entity_type", json_string(m->type->name), &ok);
    jset(o, "record_id", json_string(m->record_id), &ok);
    jset(o, "tenant_id", json_string(r->tenant), &ok);
    jset(o, "field", whole ? json_null() : json_string(c->field), &ok);
    jset(o, "base", whole ? json_null() : ns_value_to_json(&c->base), &ok);
    jset(o, "kept", whole ? json_null() : ns_value_to_json(&c->kept), &ok);
    jset(o, "other", whole ? json_null() : ns_value_to_json(&c->other), &ok);
    jset(o, "kept_deleted", json_boolean(c->kept_deleted), &ok);
    jset(o, "other_deleted", json_boolean(c->other_deleted), &ok);
    jset(o, "other_fields",
         whole && !c->other_deleted ? ns_fields_to_json(&c->other_fields) : json_null(), &ok);
    jset(o, "kept_principal", juuid(kept_by), &ok);
    jset(o, "kept_device", juuid(kept_device), &ok);
    jset(o, "other_principal", json_string(p->principal), &ok);
    jset(o, "other_device", juuid(p->device), &ok);
    jset(o, "mutation_id", json_string(m->id), &ok);
    jappend(&run->conflicts, o, &ok);
    return ok ? 0 : -1;
}

static int apply_create(sync_run *run, const sync_mut *m, rec_state *r, const char *tenant,
                        sync_answer *a)
{
    const ns_entity_type *t = m->type;
    ns_fieldset fs;
    if (ns_fieldset_copy(&fs, &m->fields) != 0)
        return -1;
    /* Whole records: a field the create leaves out is null. */
    for (size_t i = 0; i < t->nfields; i++) {
        if (ns_fieldset_get(&fs, t->fields[i].name) != NULL)
            continue;
        ns_value null;
        ns_value_init_null(&null, t->fields[i].type.kind);
        if (ns_fieldset_set(&fs, t->fields[i].name, &null) != 0) {
            ns_fieldset_free(&fs);
            return -1;
        }
    }
    ns_fieldset_free(&r->fields);
    r->fields = fs;
    r->exists = true;
    r->deleted = false;
    r->version = 1;
    r->dirty = true;
    memcpy(r->tenant, tenant, sizeof(r->tenant));
    memcpy(r->changed_by, m->push->principal, sizeof(r->changed_by));
    memcpy(r->changed_device, m->push->device, sizeof(r->changed_device));
    if (hist_add(r, 1, false, r->changed_device, NULL, 0, &r->fields) != 0 ||
        add_change(run, m, r, "create", json_null()) != 0)
        return -1;
    answer_clear(a);
    a->outcome = NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED;
    a->version = 1;
    return 0;
}

static int apply_merge(sync_run *run, const sync_mut *m, rec_state *r, ns_merge_result *mr,
                       sync_answer *a)
{
    uuid_str kept_by, kept_device;
    memcpy(kept_by, r->changed_by, sizeof(kept_by));
    memcpy(kept_device, r->changed_device, sizeof(kept_device));
    answer_clear(a);
    if (mr->changed) {
        json_t *before = ns_fields_to_json(&r->fields);
        if (before == NULL)
            return -1;
        ns_fieldset_free(&r->fields);
        r->fields = mr->fields;
        ns_fieldset_init(&mr->fields);
        r->deleted = mr->deleted;
        r->version++;
        r->dirty = true;
        memcpy(r->changed_by, m->push->principal, sizeof(r->changed_by));
        memcpy(r->changed_device, m->push->device, sizeof(r->changed_device));
        if (hist_add(r, r->version, r->deleted, r->changed_device, NULL, 0, &r->fields) != 0) {
            json_decref(before);
            return -1;
        }
        if (add_change(run, m, r, m->op == NS_OP_DELETE ? "delete" : "update", before) != 0)
            return -1;
    }
    if (mr->nconflicts > 0) {
        a->conflict_ids = calloc(mr->nconflicts, sizeof(*a->conflict_ids));
        if (a->conflict_ids == NULL)
            return -1;
        for (size_t i = 0; i < mr->nconflicts; i++) {
            if (uuid_random(a->conflict_ids[i]) != 0 ||
                add_conflict(run, m, r, &mr->conflicts[i], a->conflict_ids[i], kept_by,
                             kept_device) != 0)
                return -1;
            a->nconflicts = i + 1;
        }
    }
    switch (mr->outcome) {
    case NS_MERGE_APPLIED:
        a->outcome = NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED;
        break;
    case NS_MERGE_MERGED:
        a->outcome = NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED;
        break;
    case NS_MERGE_CONFLICT:
        a->outcome = NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT;
        break;
    }
    a->version = r->version;
    return 0;
}

/* 0: the principal may resolve conflicts of r; 1: rejected into a. */
static int authorise_resolve(sync_run *run, const sync_mut *m, const rec_state *r, sync_answer *a)
{
    const sync_push *p = m->push;
    const ns_policy_actor actor = {p->principal, p->organisation, p->roles};
    ns_policy_refusal why;
    if (m->type->directory) {
        ns_policy_write w = {.type = m->type->name, .op = NS_OP_UPDATE, .current = &r->fields};
        if (ns_policy_check_directory(&actor, m->record_id, &w, &why) == 0)
            return 0;
        reject(a, why.code, "%s", why.reason);
        ns_log(NS_LOG_INFO, NULL, p->principal, "refused: resolution of conflict %s: %s",
               m->conflict_id, why.reason);
        return 1;
    }
    ns_policy_plan plan = {0};
    bool have_plan;
    if (m->type == run->b->s->tenant_type) {
        have_plan = true;
        plan.id = m->record_id;
        plan.owner = field_text(&r->fields, OWNER_FIELD);
        plan.kind = field_text(&r->fields, KIND_FIELD);
        plan.status = field_text(&r->fields, STATUS_FIELD);
    } else {
        have_plan = tenant_plan(run, r->tenant, &plan);
    }
    if (ns_policy_check_resolve(&actor, have_plan ? &plan : NULL, &why) == 0)
        return 0;
    if (why.code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND)
        /* As for a conflict that does not exist (the reason would name
         * the plan of a record this principal may not see). */
        reject(a, why.code, "conflict %s does not exist", m->conflict_id);
    else
        reject(a, why.code, "%s", why.reason);
    ns_log(NS_LOG_INFO, NULL, p->principal, "refused: resolution of conflict %s: %s",
           m->conflict_id, why.reason);
    return 1;
}

/* Sets the field a resolution chose into fs, unless the engine's own rules
 * refuse the value there (1: rejected into a). Returns 0, 1, or -1 when out
 * of memory. */
static int resolve_set(const sync_mut *m, const rec_state *r, const char *field, const ns_value *v,
                       ns_fieldset *fs, sync_answer *a)
{
    const ns_entity_type *t = m->type;
    if (t->tenant_field != NULL && strcmp(field, t->tenant_field) == 0 &&
        (v->is_null || strcmp(v->u.s, r->tenant) != 0)) {
        reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
               "field %s (the record's plan) cannot change", field);
        return 1;
    }
    if (t->tenant_field == NULL && strcmp(field, OWNER_FIELD) == 0 && v->is_null) {
        reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT, "field %s may not be null",
               OWNER_FIELD);
        return 1;
    }
    return ns_fieldset_set(fs, field, v) != 0 ? -1 : 0;
}

/* The record's state a resolution asks for, into fs and *deleted (fs
 * starts as a copy of the record). Returns 0, 1 (rejected into a), or -1. */
static int resolve_state(const sync_mut *m, const rec_state *r, const run_conflict *c,
                         ns_fieldset *fs, bool *deleted, sync_answer *a)
{
    const ns_entity_type *t = m->type;
    char why[REASON_MAX];
    *deleted = r->deleted;
    if (m->rkind == NS_RESOLVE_KEEP)
        return 0;
    if (c->field == NULL) {
        if (m->rkind != NS_RESOLVE_OTHER) {
            reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                   "a conflict of the whole record is resolved with KEEP or OTHER");
            return 1;
        }
        if (c->other_deleted) {
            *deleted = true;
            return 0;
        }
        /* The edit that lost to a delete: the record comes back with it. */
        ns_fieldset edit;
        const char *text = c->other_fields != NULL ? c->other_fields : "{}";
        if (ns_fields_from_json_text(t, text, strlen(text), &edit, why, sizeof(why)) != 0) {
            if (out_of_memory(why))
                return -1;
            reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                   "conflict %s cannot be read: %s", c->id, why);
            return 1;
        }
        int rc = 0;
        for (size_t i = 0; i < edit.n && rc == 0; i++)
            rc = resolve_set(m, r, edit.names[i], &edit.values[i], fs, a);
        ns_fieldset_free(&edit);
        *deleted = false;
        return rc;
    }
    if (r->deleted) {
        reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
               "%s %s is deleted: only KEEP closes a conflict of one of its fields", t->name,
               m->record_id);
        return 1;
    }
    if (m->rkind == NS_RESOLVE_VALUE) {
        const ns_value *v = ns_fieldset_get(&m->fields, c->field);
        if (v == NULL || m->rfield == NULL || strcmp(m->rfield, c->field) != 0) {
            reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                   "the value is not one for field %s", c->field);
            return 1;
        }
        return resolve_set(m, r, c->field, v, fs, a);
    }
    const ns_field_def *fd = ns_entity_field(t, c->field);
    json_error_t jerr;
    json_t *j = c->other != NULL ? json_loads(c->other, JSON_DECODE_ANY, &jerr) : json_null();
    ns_value v;
    if (fd == NULL || j == NULL || ns_value_from_json(j, &fd->type, &v, why, sizeof(why)) != 0) {
        json_decref(j);
        reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
               "conflict %s: the other value of field %s cannot be read", c->id, c->field);
        return 1;
    }
    json_decref(j);
    int rc = resolve_set(m, r, c->field, &v, fs, a);
    ns_value_free(&v);
    return rc;
}

/* A conflict's resolution on the record as the batch has left it: a new
 * version with op "resolve" (KEEP included: every replica then sees the
 * closing in the feed), and the conflict closed. Returns 0 or -1. */
static int compute_resolve(sync_run *run, sync_mut *m, sync_answer *a, bool forced)
{
    const ns_entity_type *t = m->type;
    rec_state *r = &run->recs[m->rec];
    run_conflict key;
    memcpy(key.id, m->conflict_id, sizeof(key.id));
    run_conflict *c = run->confs == NULL
                          ? NULL
                          : bsearch(&key, run->confs, run->nconfs, sizeof(*run->confs), conf_cmp);
    if (c == NULL || strcmp(c->entity_type, t->name) != 0 ||
        strcmp(c->record_id, m->record_id) != 0)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND,
                      "conflict %s does not exist", m->conflict_id);
    if (c->resolved)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                      "conflict %s is already resolved", m->conflict_id);
    if (r->unreadable)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "%s %s cannot be read: %s",
                      t->name, m->record_id, r->bad);
    if (!r->exists)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND, "%s %s does not exist",
                      t->name, m->record_id);
    if (authorise_resolve(run, m, r, a) != 0)
        return 0;
    if (forced)
        return reject_forced(run->b, a);
    ns_fieldset fs;
    bool deleted;
    if (ns_fieldset_copy(&fs, &r->fields) != 0)
        return -1;
    int rc = resolve_state(m, r, c, &fs, &deleted, a);
    if (rc != 0) {
        ns_fieldset_free(&fs);
        return rc < 0 ? -1 : 0;
    }
    json_t *before = ns_fields_to_json(&r->fields);
    if (before == NULL) {
        ns_fieldset_free(&fs);
        return -1;
    }
    ns_fieldset_free(&r->fields);
    r->fields = fs;
    r->deleted = deleted;
    r->version++;
    r->dirty = true;
    memcpy(r->changed_by, m->push->principal, sizeof(r->changed_by));
    memcpy(r->changed_device, m->push->device, sizeof(r->changed_device));
    if (hist_add(r, r->version, r->deleted, r->changed_device, NULL, 0, &r->fields) != 0) {
        json_decref(before);
        return -1;
    }
    if (add_change(run, m, r, "resolve", before) != 0)
        return -1;
    bool ok = true;
    json_t *o = json_object();
    jset(o, "id", json_string(c->id), &ok);
    jset(o, "resolved_by", json_string(m->push->principal), &ok);
    jset(o, "version", json_integer((json_int_t)r->version), &ok);
    jappend(&run->resolved, o, &ok);
    if (!ok)
        return -1;
    c->resolved = true;
    answer_clear(a);
    a->outcome = NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED;
    a->version = r->version;
    return 0;
}

/* One mutation on the records as the batch has left them. Returns 0 (the
 * answer is in a, a rejection included), or -1 when out of memory. */
static int compute_one(sync_run *run, const sync_mut *m, sync_answer *a, bool forced)
{
    const sync_push *p = m->push;
    const ns_entity_type *t = m->type;
    rec_state *r = &run->recs[m->rec];
    bool own_tenant = t->tenant_field == NULL && !t->directory;

    if (r->unreadable)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "%s %s cannot be read: %s",
                      t->name, m->record_id, r->bad);
    if (m->op == NS_OP_CREATE) {
        if (r->exists)
            return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_ALREADY_EXISTS,
                          "%s %s already exists", t->name, m->record_id);
        const char *tenant = t->directory ? NS_DIRECTORY_TENANT
                             : own_tenant ? m->record_id
                                          : ns_fieldset_get(&m->fields, t->tenant_field)->u.s;
        ns_policy_plan plan;
        if (!own_tenant && !t->directory && !tenant_plan(run, tenant, &plan))
            return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND,
                          "plan %s does not exist", tenant);
        if (authorise(run, m, r, tenant, a) != 0)
            return 0;
        if (forced)
            return reject_forced(run->b, a);
        return apply_create(run, m, r, tenant, a);
    }

    if (!r->exists)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND, "%s %s does not exist",
                      t->name, m->record_id);
    if (authorise(run, m, r, r->tenant, a) != 0)
        return 0;
    if (t->tenant_field != NULL) {
        const ns_value *tv = ns_fieldset_get(&m->fields, t->tenant_field);
        if (tv != NULL && (tv->is_null || strcmp(tv->u.s, r->tenant) != 0))
            return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                          "field %s (the record's plan) cannot change", t->tenant_field);
    }
    if (m->base > r->version)
        return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                      "base_version %" PRIu64 " is newer than the record's version %" PRIu64,
                      m->base, r->version);

    /* The effective base: the device's own unbroken run of versions right
     * after its base are edits it made without having seen them
     * acknowledged, not concurrent changes. */
    uint64_t eff = m->base;
    while (eff < r->version) {
        const hist_entry *e = hist_get(r, eff + 1);
        if (e == NULL || p->device[0] == '\0' || strcmp(e->device, p->device) != 0)
            break;
        eff++;
    }
    bool stale = eff < r->version;
    const ns_fieldset *base = NULL;
    bool base_deleted = false;
    if (stale) {
        if (eff == 0)
            return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
                          "base_version 0 names no version of %s %s", t->name, m->record_id);
        hist_entry *e = hist_get(r, eff);
        if (e == NULL)
            return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                          "revision %" PRIu64 " of %s %s is missing: the edit cannot be merged",
                          eff, t->name, m->record_id);
        if (!e->parsed) {
            char why[REASON_MAX];
            if (ns_fields_from_json_text(t, e->after, e->after_len, &e->fields, why, sizeof(why)) !=
                0) {
                if (out_of_memory(why))
                    return -1;
                return reject(a, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                              "revision %" PRIu64 " of %s %s cannot be read: %s", eff, t->name,
                              m->record_id, why);
            }
            e->parsed = true;
            free(e->after);
            e->after = NULL;
        }
        base = &e->fields;
        base_deleted = e->deleted;
    }
    if (forced)
        return reject_forced(run->b, a);
    bool frozen;
    if (is_frozen(t, &r->fields, &frozen) != 0)
        return -1;
    ns_merge_input in = {
        .op = m->op,
        .stale = stale,
        .base = base,
        .base_deleted = base_deleted,
        .current = &r->fields,
        .current_deleted = r->deleted,
        .change = &m->fields,
        .type_of = field_type_of,
        .type_ud = (void *)t,
        .frozen = frozen,
    };
    ns_merge_result mr;
    if (ns_merge(&in, &mr) != 0)
        return -1;
    int rc = apply_merge(run, m, r, &mr, a);
    ns_merge_result_free(&mr);
    return rc;
}

static int add_answer_row(sync_run *run, const sync_mut *m, const sync_answer *a)
{
    bool ok = true;
    json_t *o = json_object();
    json_t *ids = json_array();
    if (ids == NULL)
        ok = false;
    for (size_t i = 0; ids != NULL && i < a->nconflicts; i++) {
        if (json_array_append_new(ids, json_string(a->conflict_ids[i])) != 0)
            ok = false;
    }
    jset(o, "mutation_id", json_string(m->id), &ok);
    jset(o, "device_id", juuid(m->push->device), &ok);
    jset(o, "entity_type", json_string(m->type->name), &ok);
    jset(o, "record_id", json_string(m->record_id), &ok);
    jset(o, "outcome", json_string(outcome_text(a->outcome)), &ok);
    jset(o, "version", json_integer((json_int_t)a->version), &ok);
    jset(o, "conflict_ids", ids, &ok);
    jset(o, "reject_code", json_integer((json_int_t)a->reject_code), &ok);
    jset(o, "reject_reason", json_string(a->reason), &ok);
    jset(o, "reject_field", json_string(a->field), &ok);
    jappend(&run->mutations, o, &ok);
    return ok ? 0 : -1;
}

static int queue_json(sync_run *run, const char *sql, json_t *arr, const char *count)
{
    char *text = json_dumps(arr, JSON_COMPACT);
    stmt_ctx *c = ctx_new(run, STMT_WRITE, NULL);
    if (text == NULL || c == NULL) {
        free(text);
        run_internal(run, "out of memory");
        return -1;
    }
    const char *params[2] = {text, count};
    int rc = run_query(run, c, sql, count ? 2 : 1, params);
    free(text);
    return rc;
}

/* The record rows of one type, as its upsert takes them. */
static json_t *records_json(const sync_run *run, const ns_entity_type *t, bool *ok)
{
    const sync_batch *b = run->b;
    json_t *arr = NULL;
    for (size_t i = 0; i < b->nrecs && *ok; i++) {
        const rec_state *r = &run->recs[i];
        if (!r->in_run || !r->dirty || b->recs[i].type != t)
            continue;
        json_t *o = ns_fields_to_json(&r->fields);
        if (o == NULL) {
            *ok = false;
            break;
        }
        jset(o, "id", json_string(b->recs[i].id), ok);
        jset(o, "version", json_integer((json_int_t)r->version), ok);
        jset(o, "tenant_id", json_string(r->tenant), ok);
        jset(o, "deleted", json_boolean(r->deleted), ok);
        jset(o, "changed_by", juuid(r->changed_by), ok);
        jset(o, "changed_device", juuid(r->changed_device), ok);
        jappend(&arr, o, ok);
    }
    return arr;
}

static void queue_writes(sync_run *run)
{
    const ns_registry *reg = run->b->s->reg;
    const ns_entity_type *plans = run->b->s->tenant_type;
    bool ok = true;
    /* Plans first: the row checks of their records (sql/005) look them up. */
    for (size_t k = 0; ok && k <= reg->ntypes; k++) {
        const ns_entity_type *t = k == 0 ? plans : &reg->types[k - 1];
        if (t == NULL || (k > 0 && t == plans))
            continue;
        json_t *arr = records_json(run, t, &ok);
        if (!ok)
            run_internal(run, "out of memory");
        else if (arr != NULL && queue_json(run, t->sql_upsert, arr, NULL) != 0)
            ok = false;
        json_decref(arr);
    }
    if (ok && run->revisions != NULL)
        ok = queue_json(run, sql_insert_revisions, run->revisions, NULL) == 0;
    if (ok && run->conflicts != NULL)
        ok = queue_json(run, sql_insert_conflicts, run->conflicts, NULL) == 0;
    if (ok && run->resolved != NULL)
        ok = queue_json(run, sql_resolve_conflicts, run->resolved, NULL) == 0;
    if (run->b->mode == NAPSYNC__V1__PUSH_MODE__PUSH_MODE_DRY_RUN) {
        /* Nothing is kept: the deferred checks (sql/003) run now, since
         * ROLLBACK would skip them; no answer is stored, no feed position
         * taken. */
        if (ok) {
            stmt_ctx *c = ctx_new(run, STMT_WRITE, NULL);
            if (c == NULL)
                run_internal(run, "out of memory");
            else
                (void)run_query(run, c, "SET CONSTRAINTS ALL IMMEDIATE", 0, NULL);
        }
        run_end(run);
        return;
    }
    if (ok && run->mutations != NULL)
        ok = queue_json(run, sql_insert_mutations, run->mutations, NULL) == 0;
    if (ok && run->feed != NULL) {
        char count[24];
        snprintf(count, sizeof(count), "%zu", json_array_size(run->feed));
        ok = queue_json(run, sql_feed, run->feed, count) == 0;
    }
    /* COMMIT travels with the writes: one round trip. */
    run_end(run);
}

static void compute_and_write(sync_run *run)
{
    sync_batch *b = run->b;
    run->phase = RUN_WRITE;
    for (size_t i = run->lo; i < run->hi && !run->internal; i++) {
        size_t k = i - run->lo;
        if (run->stored[k])
            continue;
        sync_mut *m = b->leaders[i];
        if (m->settled)
            continue;
        bool forced = b->forced && i == b->lo;
        int rc = m->resolve ? compute_resolve(run, m, &run->drafts[k], forced)
                            : compute_one(run, m, &run->drafts[k], forced);
        if (rc != 0 || add_answer_row(run, m, &run->drafts[k]) != 0)
            run_internal(run, "out of memory");
        if (b->mode == NAPSYNC__V1__PUSH_MODE__PUSH_MODE_ATOMIC &&
            run->drafts[k].outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED)
            run->refused = true;
    }
    if (run->internal || run->refused) {
        run_end(run);
        return;
    }
    queue_writes(run);
}

/* ---- engine --------------------------------------------------------------------------- */

static void free_facts_sql(ns_sync *s, const ns_registry *reg)
{
    for (size_t i = 0; s->sql_facts != NULL && i < reg->ntypes; i++)
        free(s->sql_facts[i]);
    free(s->sql_facts);
    s->sql_facts = NULL;
}

/* The facts query of every type with a delegation (policy.h): its
 * delegation field by id. A delegation naming a field the type lacks is a
 * registry the engine cannot serve. */
static int facts_sql(ns_sync *s, const ns_registry *reg, char *err, size_t errlen)
{
    s->sql_facts = calloc(reg->ntypes ? reg->ntypes : 1, sizeof(*s->sql_facts));
    if (s->sql_facts == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < reg->ntypes; i++) {
        const ns_entity_type *t = &reg->types[i];
        const ns_policy_delegation *d = ns_policy_delegation_of(t->name);
        if (d == NULL)
            continue;
        const char *field = d->org_field != NULL ? d->org_field : d->via_field;
        const ns_field_def *f = ns_entity_field(t, field);
        if (f == NULL || f->type.kind != NS_KIND_REF) {
            snprintf(err, errlen, "entity type %s needs a reference field %s (policy)", t->name,
                     field);
            return -1;
        }
        sbuf sql = {0};
        /* Plain identifiers from the catalogue (registry.c). */
        sb_add(&sql, "SELECT id::text, \"");
        sb_add(&sql, field);
        sb_add(&sql, "\"::text FROM \"");
        sb_add(&sql, t->table);
        sb_add(&sql, "\" WHERE id = ANY($1::uuid[])");
        if (sql.failed) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        s->sql_facts[i] = sql.s;
    }
    return 0;
}

ns_sync_status ns_sync_new(uv_loop_t *loop, ns_db *db, const ns_registry *reg, ns_sync **out,
                           char *err, size_t errlen)
{
    *out = NULL;
    if (loop == NULL || db == NULL || reg == NULL) {
        snprintf(err, errlen, "missing loop, database or registry");
        return NS_SYNC_INVALID;
    }
    const ns_entity_type *tenant = NULL;
    for (size_t i = 0; i < reg->ntypes; i++) {
        const ns_entity_type *t = &reg->types[i];
        if (t->tenant_field != NULL || t->directory)
            continue;
        if (tenant != NULL) {
            snprintf(err, errlen, "entity types %s and %s both lack a tenant field: one plan type",
                     tenant->name, t->name);
            return NS_SYNC_INVALID;
        }
        tenant = t;
    }
    const ns_field_def *owner = tenant ? ns_entity_field(tenant, OWNER_FIELD) : NULL;
    const ns_field_def *kind = tenant ? ns_entity_field(tenant, KIND_FIELD) : NULL;
    const ns_field_def *status = tenant ? ns_entity_field(tenant, STATUS_FIELD) : NULL;
    if (tenant != NULL &&
        (owner == NULL || owner->type.kind != NS_KIND_REF || kind == NULL ||
         kind->type.kind != NS_KIND_TEXT || status == NULL || status->type.kind != NS_KIND_TEXT)) {
        snprintf(err, errlen, "entity type %s needs a reference field %s and text fields %s and %s",
                 tenant->name, OWNER_FIELD, KIND_FIELD, STATUS_FIELD);
        return NS_SYNC_INVALID;
    }
    if (tenant == NULL && reg->ntypes > 0) {
        snprintf(err, errlen, "no entity type is its own tenant (a plan type)");
        return NS_SYNC_INVALID;
    }
    ns_sync *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NS_SYNC_NOMEM;
    }
    if (tenant != NULL) {
        sbuf sql = {0};
        sb_add(&sql,
               "SELECT id::text, " OWNER_FIELD "::text, " KIND_FIELD ", " STATUS_FIELD " FROM \"");
        sb_add(&sql, tenant->table); /* a plain identifier (registry.c) */
        /* A plan is its own tenant (sql/011): the primary key finds it. */
        sb_add(&sql, "\" WHERE tenant_id = ANY($1::uuid[]) AND id = ANY($1::uuid[])");
        if (sql.failed) {
            free(s);
            snprintf(err, errlen, "out of memory");
            return NS_SYNC_NOMEM;
        }
        s->sql_owners = sql.s;
    }
    if (facts_sql(s, reg, err, errlen) != 0) {
        free_facts_sql(s, reg);
        free(s->sql_owners);
        free(s);
        return NS_SYNC_INVALID;
    }
    int rc = uv_idle_init(loop, &s->idle);
    if (rc != 0) {
        snprintf(err, errlen, "uv_idle_init: %s", uv_strerror(rc));
        free_facts_sql(s, reg);
        free(s->sql_owners);
        free(s);
        return NS_SYNC_INVALID;
    }
    s->idle.data = s;
    s->loop = loop;
    s->db = db;
    s->reg = reg;
    s->tenant_type = tenant;
    *out = s;
    return NS_SYNC_OK;
}

static void on_closed(uv_handle_t *h)
{
    ns_sync *s = h->data;
    void (*done)(void *) = s->done;
    void *ud = s->done_ud;
    free_facts_sql(s, s->reg);
    free(s->sql_owners);
    free(s);
    if (done != NULL)
        done(ud);
}

static void maybe_finish(ns_sync *s)
{
    if (s->closing && s->nbatches == 0 && s->ready_head == NULL && !s->handle_closing) {
        s->handle_closing = true;
        uv_close((uv_handle_t *)&s->idle, on_closed);
    }
}

void ns_sync_close(ns_sync *s, void (*done)(void *ud), void *ud)
{
    if (s == NULL || s->closing)
        return;
    s->closing = true;
    s->done = done;
    s->done_ud = ud;
    if (s->end_retry == NULL)
        uv_idle_stop(&s->idle);
    while (s->fifo_head != NULL) {
        sync_mut *m = s->fifo_head;
        s->fifo_head = m->fifo_next;
        m->fifo_next = NULL;
        push_fail(m->push, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                  "the server is shutting down; send the push again");
        mut_done(m);
    }
    s->fifo_tail = NULL;
    s->fifo_len = 0;
    flush_ready(s);
    maybe_finish(s);
}
