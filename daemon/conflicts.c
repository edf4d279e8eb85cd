#include "conflicts.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"
#include "fields_json.h"
#include "fields_pb.h"
#include "log.h"
#include "reader.h"

#define ERR(name) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name
#define UUID_LEN  36

/* The first column is the first named plan that is not readable (then no
 * conflict is listed); a LEFT JOIN so that it comes back with no
 * conflict. $1 plan ids, $2 organisation ids, $3 the principal's
 * organisation, $4 include_resolved, $5 the limit. */
static const char list_sql[] = "WITH" NS_FEED_SCOPE_CTES(
    "$1", "$2",
    "$3") " SELECT d.id, x.* FROM denied d LEFT JOIN LATERAL ("
          "  SELECT c.id::text, c.entity_type, c.record_id::text, c.field, c.base::text,"
          "         c.kept::text, c.other::text, c.kept_deleted, c.other_deleted,"
          "         c.other_fields::text, kp.name, kd.name, op.name, od.name,"
          "         to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
          "         c.resolved_at IS NOT NULL, c.tenant_id::text, c.created_at AS ts"
          "    FROM sync_conflicts c"
          "    LEFT JOIN principals kp ON kp.id = c.kept_principal"
          "    LEFT JOIN devices kd ON kd.id = c.kept_device"
          "    JOIN principals op ON op.id = c.other_principal"
          "    LEFT JOIN devices od ON od.id = c.other_device"
          "   WHERE d.id IS NULL AND c.tenant_id IN (SELECT id FROM readable)"
          "     AND ($4::boolean OR c.resolved_at IS NULL)"
          "   ORDER BY c.created_at DESC, c.id"
          "   LIMIT $5::int) x ON true"
          " ORDER BY x.ts DESC, x.id";

enum {
    COL_DENIED,
    COL_ID,
    COL_TYPE,
    COL_RECORD,
    COL_FIELD,
    COL_BASE,
    COL_KEPT,
    COL_OTHER,
    COL_KEPT_DELETED,
    COL_OTHER_DELETED,
    COL_OTHER_FIELDS,
    COL_KEPT_BY,
    COL_KEPT_DEVICE,
    COL_OTHER_BY,
    COL_OTHER_DEVICE,
    COL_CREATED,
    COL_RESOLVED,
    COL_TENANT,
    COL_TS,
    NCOLS,
};

/* The conflict, if the principal whose organisation is $2 can read its
 * plan. */
static const char lookup_sql[] =
    "SELECT c.entity_type, c.record_id::text, c.field FROM sync_conflicts c"
    "  JOIN plans p ON p.id = c.tenant_id"
    " WHERE c.id = $1::uuid AND " NS_FEED_PLAN_READABLE("p", "$2");

struct ns_conflicts {
    ns_db *db;
    const ns_registry *reg;
    ns_sync *sync;
    int pending; /* queries not answered yet */
    bool closing;
};

typedef struct {
    ns_conflicts *c;
    ns_conflict_list_cb cb;
    void *ud;
} list_op;

typedef struct {
    ns_conflicts *c;
    ns_resolve_cb cb;
    void *ud;
    ns_identity_info who;
    char mutation_id[UUID_LEN + 1 + 64]; /* as sent, if short enough to echo */
    char conflict_id[UUID_LEN + 1];
    ns_resolve_kind kind;
    uint8_t *value; /* the packed Value for VALUE, owned */
    size_t value_len;
} resolve_op;

/* One conflict of a list under construction. */
typedef struct {
    ns_value v[3]; /* base, kept, other */
    Napsync__V1__Value pv[3];
    bool has[3];
    ns_fieldset fs;
    Napsync__V1__FieldSet pfs;
    bool has_fs;
} conflict_build;

int ns_conflicts_open(ns_db *db, const ns_registry *reg, ns_sync *sync, ns_conflicts **out)
{
    *out = NULL;
    if (db == NULL || reg == NULL || sync == NULL)
        return -1;
    ns_conflicts *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->db = db;
    c->reg = reg;
    c->sync = sync;
    *out = c;
    return 0;
}

static void maybe_free(ns_conflicts *c)
{
    if (c->closing && c->pending == 0)
        free(c);
}

void ns_conflicts_close(ns_conflicts *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = true;
    c->sync = NULL;
    maybe_free(c);
}

static int queue_error(ns_db_status st, char *err, size_t errlen)
{
    int code = st == NS_DB_SHUTDOWN                                ? ERR(SHUTTING_DOWN)
               : st == NS_DB_UNAVAILABLE || st == NS_DB_QUEUE_FULL ? ERR(UNAVAILABLE)
                                                                   : ERR(INTERNAL);
    snprintf(err, errlen, "%s",
             code == ERR(SHUTTING_DOWN) ? "the server is shutting down"
             : code == ERR(UNAVAILABLE) ? "the database is unavailable; retry"
                                        : "the conflicts could not be read");
    return code;
}

/* ---- list ------------------------------------------------------------------------------- */

static void build_free(conflict_build *b, size_t n)
{
    for (size_t i = 0; b != NULL && i < n; i++) {
        for (int k = 0; k < 3; k++) {
            if (b[i].has[k]) {
                ns_value_pb_clear(&b[i].pv[k]);
                ns_value_free(&b[i].v[k]);
            }
        }
        if (b[i].has_fs) {
            ns_fieldset_pb_clear(&b[i].pfs);
            ns_fieldset_free(&b[i].fs);
        }
    }
    free(b);
}

/* One stored JSON value as a wire value of the field's type. Returns 0 or -1. */
static int value_build(const ns_field_def *fd, const char *text, conflict_build *b, int k,
                       char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *j = text != NULL ? json_loads(text, JSON_DECODE_ANY, &jerr) : json_null();
    if (j == NULL) {
        snprintf(why, whylen, "malformed JSON");
        return -1;
    }
    int rc = ns_value_from_json(j, &fd->type, &b->v[k], why, whylen);
    json_decref(j);
    if (rc != 0)
        return -1;
    napsync__v1__value__init(&b->pv[k]);
    if (ns_value_to_pb(&b->v[k], &b->pv[k]) != 0) {
        ns_value_free(&b->v[k]);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    b->has[k] = true;
    return 0;
}

static bool is_true(const char *s)
{
    return s != NULL && strcmp(s, "t") == 0;
}

/* Fills conflict i of the list from row i. Returns 0, or -1 with why. */
static int conflict_from_row(const ns_conflicts *c, const ns_db_result *res, int row,
                             Napsync__V1__Conflict *pb, conflict_build *b, char *why, size_t whylen)
{
    const char *v[NCOLS];
    for (int k = 0; k < NCOLS; k++)
        v[k] = ns_db_result_value(res, row, k);
    if (v[COL_ID] == NULL || v[COL_TYPE] == NULL || v[COL_RECORD] == NULL ||
        v[COL_OTHER_BY] == NULL || v[COL_CREATED] == NULL || v[COL_TENANT] == NULL) {
        snprintf(why, whylen, "malformed row");
        return -1;
    }
    const ns_entity_type *t = ns_registry_find(c->reg, v[COL_TYPE]);
    if (t == NULL) {
        snprintf(why, whylen, "entity type %.40s is unknown to this daemon", v[COL_TYPE]);
        return -1;
    }
    napsync__v1__conflict__init(pb);
    /* protobuf-c's strings are not const; the list is only packed. */
    pb->id = (char *)v[COL_ID];
    pb->entity_type = t->name;
    pb->record_id = (char *)v[COL_RECORD];
    pb->field = v[COL_FIELD] != NULL ? (char *)v[COL_FIELD] : "";
    pb->kept_deleted = is_true(v[COL_KEPT_DELETED]);
    pb->other_deleted = is_true(v[COL_OTHER_DELETED]);
    pb->kept_by = v[COL_KEPT_BY] != NULL ? (char *)v[COL_KEPT_BY] : "";
    pb->kept_device = v[COL_KEPT_DEVICE] != NULL ? (char *)v[COL_KEPT_DEVICE] : "";
    pb->other_by = (char *)v[COL_OTHER_BY];
    pb->other_device = v[COL_OTHER_DEVICE] != NULL ? (char *)v[COL_OTHER_DEVICE] : "";
    pb->created_at = (char *)v[COL_CREATED];
    pb->resolved = is_true(v[COL_RESOLVED]);
    pb->tenant_id = (char *)v[COL_TENANT];
    if (v[COL_FIELD] != NULL) {
        const ns_field_def *fd = ns_entity_field(t, v[COL_FIELD]);
        if (fd == NULL) {
            snprintf(why, whylen, "field %.64s is unknown to this daemon", v[COL_FIELD]);
            return -1;
        }
        if (value_build(fd, v[COL_BASE], b, 0, why, whylen) != 0 ||
            value_build(fd, v[COL_KEPT], b, 1, why, whylen) != 0 ||
            value_build(fd, v[COL_OTHER], b, 2, why, whylen) != 0)
            return -1;
        pb->base_value = &b->pv[0];
        pb->kept_value = &b->pv[1];
        pb->other_value = &b->pv[2];
    } else if (v[COL_OTHER_FIELDS] != NULL) {
        const char *text = v[COL_OTHER_FIELDS];
        if (ns_fields_from_json_text(t, text, strlen(text), &b->fs, why, whylen) != 0)
            return -1;
        napsync__v1__field_set__init(&b->pfs);
        if (ns_fieldset_to_pb(&b->fs, &b->pfs) != 0) {
            ns_fieldset_free(&b->fs);
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        b->has_fs = true;
        pb->other_fields = &b->pfs;
    }
    return 0;
}

static void list_answer(list_op *op, ns_db_status st, const ns_db_result *res)
{
    char msg[256];
    if (st != NS_DB_OK) {
        if (st == NS_DB_QUERY_FAILED) {
            ns_log_error("conflicts: list: %s %s", ns_db_result_sqlstate(res),
                         ns_db_result_message(res));
            op->cb(ERR(INTERNAL), "the conflicts could not be read", NULL, op->ud);
        } else {
            int code = queue_error(st, msg, sizeof(msg));
            op->cb(code, msg, NULL, op->ud);
        }
        return;
    }
    int rows = ns_db_result_rows(res);
    if (rows < 1 || ns_db_result_cols(res) != NCOLS || rows > NS_CONFLICTS_MAX_LIST) {
        ns_log_error("conflicts: list: unexpected result shape");
        op->cb(ERR(INTERNAL), "the conflicts could not be read", NULL, op->ud);
        return;
    }
    const char *denied = ns_db_result_value(res, 0, COL_DENIED);
    if (denied != NULL) {
        snprintf(msg, sizeof(msg),
                 "plan %.36s is not readable by this principal, or does not exist", denied);
        op->cb(ERR(PERMISSION_DENIED), msg, NULL, op->ud);
        return;
    }
    size_t n = ns_db_result_value(res, 0, COL_ID) == NULL ? 0 : (size_t)rows;
    Napsync__V1__Conflict *pbs = calloc(n ? n : 1, sizeof(*pbs));
    Napsync__V1__Conflict **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    conflict_build *b = calloc(n ? n : 1, sizeof(*b));
    size_t done = 0;
    char why[256] = "out of memory";
    int rc = pbs != NULL && ptrs != NULL && b != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = conflict_from_row(op->c, res, (int)i, &pbs[i], &b[i], why, sizeof(why));
        ptrs[i] = &pbs[i];
        done = i + 1;
    }
    if (rc == 0) {
        Napsync__V1__ConflictList list = NAPSYNC__V1__CONFLICT_LIST__INIT;
        list.n_conflicts = n;
        list.conflicts = n ? ptrs : NULL;
        op->cb(0, NULL, &list, op->ud);
    } else {
        ns_log_error("conflicts: list: %s", why);
        op->cb(ERR(INTERNAL), "the conflicts could not be read", NULL, op->ud);
    }
    build_free(b, done);
    free(ptrs);
    free(pbs);
}

static void on_list(ns_db_status st, const ns_db_result *res, void *ud)
{
    list_op *op = ud;
    ns_conflicts *c = op->c;
    list_answer(op, st, res);
    free(op);
    c->pending--;
    maybe_free(c);
}

int ns_conflicts_list(ns_conflicts *c, const ns_identity_info *who,
                      const Napsync__V1__ListConflicts *req, ns_conflict_list_cb cb, void *ud,
                      char *err, size_t errlen)
{
    if (c == NULL || req == NULL || cb == NULL) {
        snprintf(err, errlen, "no request");
        return ERR(INVALID_ARGUMENT);
    }
    if (c->closing)
        return queue_error(NS_DB_SHUTDOWN, err, errlen);
    ns_feed_scopes sc;
    int code = ns_feed_scopes_parse(who, req->n_scopes, req->scopes, &sc, err, errlen);
    if (code != 0)
        return code;
    list_op *op = malloc(sizeof(*op));
    if (op == NULL) {
        ns_feed_scopes_free(&sc);
        return queue_error(NS_DB_NOMEM, err, errlen);
    }
    op->c = c;
    op->cb = cb;
    op->ud = ud;
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", NS_CONFLICTS_MAX_LIST);
    const char *v[5] = {sc.plans, sc.orgs, sc.org, req->include_resolved ? "true" : "false", limit};
    ns_db_status st = ns_reader_query(c->db, who->principal_id, list_sql, 5, v, on_list, op);
    ns_feed_scopes_free(&sc);
    if (st != NS_DB_OK) {
        free(op);
        return queue_error(st, err, errlen);
    }
    c->pending++;
    return 0;
}

/* ---- resolve ---------------------------------------------------------------------------- */

static void resolve_op_free(resolve_op *op)
{
    free(op->value);
    free(op);
}

/* Hands the resolution (or its rejection) to the engine, which answers
 * it from the loop; an engine that refuses it is answered here. */
static void submit(resolve_op *op, ns_sync *sync, const ns_sync_resolution *res)
{
    ns_sync_status st =
        sync != NULL ? ns_sync_resolve(sync, &op->who, res, op->cb, op->ud) : NS_SYNC_SHUTDOWN;
    if (st == NS_SYNC_SHUTDOWN)
        op->cb(NULL, ERR(SHUTTING_DOWN), "the server is shutting down; send it again", op->ud);
    else if (st != NS_SYNC_OK)
        op->cb(NULL, ERR(INTERNAL), "the resolution could not be taken; retry", op->ud);
}

static void reject_with(resolve_op *op, ns_sync *sync, Napsync__V1__ErrorCode code,
                        const char *reason)
{
    ns_sync_resolution res = {
        .mutation_id = op->mutation_id,
        .reject_code = code,
        .reject_reason = reason,
    };
    submit(op, sync, &res);
}

static void resolve_answer(resolve_op *op, ns_db_status st, const ns_db_result *res)
{
    ns_conflicts *c = op->c;
    char msg[300];
    if (c->closing) {
        op->cb(NULL, ERR(SHUTTING_DOWN), "the server is shutting down; send it again", op->ud);
        return;
    }
    if (st != NS_DB_OK) {
        if (st == NS_DB_QUERY_FAILED) {
            ns_log_error("conflicts: lookup: %s %s", ns_db_result_sqlstate(res),
                         ns_db_result_message(res));
            op->cb(NULL, ERR(INTERNAL), "the conflict could not be read", op->ud);
        } else {
            int code = queue_error(st, msg, sizeof(msg));
            op->cb(NULL, (Napsync__V1__ErrorCode)code, msg, op->ud);
        }
        return;
    }
    if (ns_db_result_rows(res) != 1) {
        snprintf(msg, sizeof(msg), "conflict %s does not exist", op->conflict_id);
        reject_with(op, c->sync, ERR(NOT_FOUND), msg);
        return;
    }
    const char *tname = ns_db_result_value(res, 0, 0);
    const char *record = ns_db_result_value(res, 0, 1);
    const char *field = ns_db_result_value(res, 0, 2);
    const ns_entity_type *t = tname != NULL ? ns_registry_find(c->reg, tname) : NULL;
    const ns_field_def *fd = t != NULL && field != NULL ? ns_entity_field(t, field) : NULL;
    if (t == NULL || record == NULL || (field != NULL && fd == NULL)) {
        ns_log_error("conflicts: conflict %s names a type or field unknown to this daemon",
                     op->conflict_id);
        op->cb(NULL, ERR(INTERNAL), "the conflict could not be read", op->ud);
        return;
    }
    ns_sync_resolution r = {
        .mutation_id = op->mutation_id,
        .conflict_id = op->conflict_id,
        .type = t,
        .record_id = record,
        .field = field,
        .kind = op->kind,
    };
    if (op->kind != NS_RESOLVE_VALUE) {
        submit(op, c->sync, &r);
        return;
    }
    if (fd == NULL) {
        reject_with(op, c->sync, ERR(INVALID_ARGUMENT),
                    "a conflict of the whole record is resolved with KEEP or OTHER");
        return;
    }
    Napsync__V1__Value *pv = napsync__v1__value__unpack(NULL, op->value_len, op->value);
    if (pv == NULL) {
        op->cb(NULL, ERR(INTERNAL), "out of memory", op->ud);
        return;
    }
    ns_value v;
    char why[200];
    ns_value_status vs = ns_value_from_pb(pv, &fd->type, &v, why, sizeof(why));
    napsync__v1__value__free_unpacked(pv, NULL);
    if (vs == NS_VALUE_NOMEM) {
        op->cb(NULL, ERR(INTERNAL), "out of memory", op->ud);
        return;
    }
    if (vs != NS_VALUE_OK) {
        snprintf(msg, sizeof(msg), "value: field %s: %s", field, why);
        reject_with(op, c->sync, ERR(INVALID_ARGUMENT), msg);
        return;
    }
    r.value = &v;
    submit(op, c->sync, &r);
    ns_value_free(&v);
}

static void on_lookup(ns_db_status st, const ns_db_result *res, void *ud)
{
    resolve_op *op = ud;
    ns_conflicts *c = op->c;
    resolve_answer(op, st, res);
    resolve_op_free(op);
    c->pending--;
    maybe_free(c);
}

/* The request's form; NULL when it is fine, else why it is rejected. */
static const char *form_error(const Napsync__V1__ResolveConflict *req, char *canon)
{
    const char *id = req->conflict_id;
    if (id == NULL || strnlen(id, UUID_LEN + 1) != UUID_LEN)
        return "conflict_id is not a UUID";
    for (size_t i = 0; i < UUID_LEN; i++) {
        char ch = id[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? ch != '-'
                 : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                     (ch >= 'A' && ch <= 'F')))
            return "conflict_id is not a UUID";
        canon[i] = ch >= 'A' && ch <= 'F' ? (char)(ch - 'A' + 'a') : ch;
    }
    canon[UUID_LEN] = '\0';
    switch (req->resolution) {
    case NAPSYNC__V1__RESOLUTION__RESOLUTION_KEEP:
    case NAPSYNC__V1__RESOLUTION__RESOLUTION_OTHER:
        if (req->value != NULL)
            return "value is only for RESOLUTION_VALUE";
        return NULL;
    case NAPSYNC__V1__RESOLUTION__RESOLUTION_VALUE:
        if (req->value == NULL)
            return "RESOLUTION_VALUE needs a value";
        return NULL;
    default:
        return "resolution must be KEEP, OTHER or VALUE";
    }
}

int ns_conflicts_resolve(ns_conflicts *c, const ns_identity_info *who,
                         const Napsync__V1__ResolveConflict *req, ns_resolve_cb cb, void *ud,
                         char *err, size_t errlen)
{
    if (c == NULL || who == NULL || req == NULL || cb == NULL) {
        snprintf(err, errlen, "no request");
        return ERR(INTERNAL);
    }
    if (c->closing || c->sync == NULL)
        return queue_error(NS_DB_SHUTDOWN, err, errlen);
    resolve_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return queue_error(NS_DB_NOMEM, err, errlen);
    op->c = c;
    op->cb = cb;
    op->ud = ud;
    op->who = *who;
    /* Echoed as sent when it is short; the engine checks it. */
    if (req->mutation_id != NULL && strlen(req->mutation_id) < sizeof(op->mutation_id))
        snprintf(op->mutation_id, sizeof(op->mutation_id), "%s", req->mutation_id);
    else
        op->mutation_id[0] = '\0';
    const char *bad = form_error(req, op->conflict_id);
    if (bad != NULL) {
        /* Answered through the engine, from the loop, like every answer. */
        ns_sync_resolution res = {
            .mutation_id = op->mutation_id,
            .reject_code = ERR(INVALID_ARGUMENT),
            .reject_reason = bad,
        };
        ns_sync_status st = ns_sync_resolve(c->sync, &op->who, &res, cb, ud);
        resolve_op_free(op);
        if (st == NS_SYNC_OK)
            return 0;
        return queue_error(st == NS_SYNC_SHUTDOWN ? NS_DB_SHUTDOWN : NS_DB_NOMEM, err, errlen);
    }
    op->kind = req->resolution == NAPSYNC__V1__RESOLUTION__RESOLUTION_KEEP    ? NS_RESOLVE_KEEP
               : req->resolution == NAPSYNC__V1__RESOLUTION__RESOLUTION_OTHER ? NS_RESOLVE_OTHER
                                                                              : NS_RESOLVE_VALUE;
    if (req->value != NULL) {
        op->value_len = napsync__v1__value__get_packed_size(req->value);
        op->value = malloc(op->value_len ? op->value_len : 1);
        if (op->value == NULL) {
            resolve_op_free(op);
            return queue_error(NS_DB_NOMEM, err, errlen);
        }
        napsync__v1__value__pack(req->value, op->value);
    }
    const char *v[2] = {op->conflict_id, op->who.organisation_id};
    ns_db_status st = ns_reader_query(c->db, op->who.principal_id, lookup_sql, 2, v, on_lookup, op);
    if (st != NS_DB_OK) {
        resolve_op_free(op);
        return queue_error(st, err, errlen);
    }
    c->pending++;
    return 0;
}
