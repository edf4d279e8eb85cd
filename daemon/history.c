#include "history.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "feed.h"
#include "fields_json.h"
#include "fields_pb.h"
#include "log.h"
#include "value.h"
#include "policy.h"
#include "reader.h"

#define ERR(name) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name
#define UUID_LEN  36
/* Longest entity type name (sync_entity_types.name). */
#define TYPE_MAX 32
/* The packed HistoryPage around its revisions: more (tag, value). */
#define PAGE_OVERHEAD 16

/* The first column says whether the record exists and its current plan is
 * readable (NULL: not found); a LEFT JOIN, so that it comes back with no
 * version. Then at most $5 versions below $4, newest first (a backward
 * range scan of sync_revisions_record_idx, sql/011: the request names no
 * tenant; however deep the page), each
 * with its changed fields as a JSON array of [name, before, after] in
 * field-name order: the keys of before and after whose values differ,
 * absent read as null. $1 type, $2 record id, $3 the principal's
 * organisation, $4 before_version, $5 the row limit, $6 whether the
 * principal reads only, $7 the principal, $8 whether it is an
 * administrator (policy.h: the record's latest version decides). */
static const char history_sql[] =
    "WITH latest AS ("
    "  SELECT r.tenant_id, r.entity_type, r.after FROM sync_revisions r"
    "   WHERE r.entity_type = $1 AND r.record_id = $2::uuid"
    "   ORDER BY r.version DESC LIMIT 1),"
    " visible AS ("
    "  SELECT bool_or(true) AS ok FROM latest l LEFT JOIN plans p ON p.id = l.tenant_id"
    "   WHERE (l.tenant_id = '" NS_DIRECTORY_TENANT
    "'::uuid OR (p.id IS NOT NULL AND " NS_FEED_PLAN_READABLE(
        "p",
        "$3") "))"
              "     AND " NS_POLICY_RECORD_READABLE(
                  "l.entity_type", "l.after", "$6::boolean", "$3", "$7",
                  "$8::boolean") ")"
                                 " SELECT v.ok, x.* FROM visible v LEFT JOIN LATERAL ("
                                 "  SELECT r.version, r.op, coalesce(pr.name, "
                                 "'" NS_FEED_ADMINISTRATOR "'), d.name,"
                                 "         to_char(r.at AT TIME ZONE 'UTC', "
                                 "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
                                 "         r.mutation_id::text, r.deleted,"
                                 "         (SELECT jsonb_agg(jsonb_build_array(k.key, k.b, k.a) "
                                 "ORDER BY "
                                 "k.key "
                                 "COLLATE \"C\")"
                                 "            FROM (SELECT u.key, coalesce(r.before -> u.key, "
                                 "'null'::jsonb) "
                                 "AS b,"
                                 "                         coalesce(r.after -> u.key, "
                                 "'null'::jsonb) AS a"
                                 "                    FROM (SELECT "
                                 "jsonb_object_keys(coalesce(r.before, "
                                 "'{}'::jsonb))"
                                 "                          UNION SELECT "
                                 "jsonb_object_keys(r.after)) AS "
                                 "u(key)) k"
                                 "           WHERE k.b IS DISTINCT FROM k.a)::text"
                                 "    FROM sync_revisions r"
                                 "    LEFT JOIN plans p ON p.id = r.tenant_id "
                                 "AND " NS_FEED_PLAN_READABLE(
                                     "p",
                                     "$3") "    LEFT JOIN principals pr ON pr.id = r.principal_id"
                                           "    LEFT JOIN devices d ON d.id = r.device_id"
                                           "   WHERE v.ok AND r.entity_type = $1 AND r.record_id = "
                                           "$2::uuid"
                                           "     AND (p.id IS NOT NULL"
                                           "          OR r.tenant_id = '" NS_DIRECTORY_TENANT
                                           "'::uuid)"
                                           "     AND r.version < $4::bigint"
                                           "   ORDER BY r.version DESC"
                                           "   LIMIT $5::int) x ON true"
                                           " ORDER BY x.version DESC";

enum {
    COL_OK,
    COL_VERSION,
    COL_OP,
    COL_BY,
    COL_DEVICE,
    COL_AT,
    COL_MUTATION,
    COL_DELETED,
    COL_CHANGES,
    NCOLS,
};

typedef struct {
    const ns_entity_type *type;
    uint32_t limit;
    ns_history_cb cb;
    void *ud;
} history_op;

/* One revision of a page under construction; owns what its wire form
 * points to (the JSON keeps the field names). */
typedef struct {
    Napsync__V1__Revision pb;
    Napsync__V1__FieldChange *changes;
    Napsync__V1__FieldChange **ptrs;
    ns_value *values;        /* 2 per change: before, after */
    Napsync__V1__Value *pbv; /* 2 per change */
    size_t nvalues;          /* values built (for the cleanup) */
    json_t *json;
} rev_build;

static void rev_free(rev_build *b)
{
    for (size_t i = 0; i < b->nvalues; i++) {
        ns_value_pb_clear(&b->pbv[i]);
        ns_value_free(&b->values[i]);
    }
    free(b->pbv);
    free(b->values);
    free(b->ptrs);
    free(b->changes);
    json_decref(b->json);
    memset(b, 0, sizeof(*b));
}

static int queue_error(ns_db_status st, char *err, size_t errlen)
{
    int code = st == NS_DB_SHUTDOWN                                ? ERR(SHUTTING_DOWN)
               : st == NS_DB_UNAVAILABLE || st == NS_DB_QUEUE_FULL ? ERR(UNAVAILABLE)
                                                                   : ERR(INTERNAL);
    snprintf(err, errlen, "%s",
             code == ERR(SHUTTING_DOWN) ? "the server is shutting down"
             : code == ERR(UNAVAILABLE) ? "the database is unavailable; retry"
                                        : "the history could not be read");
    return code;
}

/* One stored JSON value as a wire value of the field's type (null allowed:
 * a field is null before the record's creation). Returns 0 or -1 with why. */
static int value_build(const ns_field_def *fd, const json_t *j, ns_value *v, Napsync__V1__Value *pb,
                       char *why, size_t whylen)
{
    ns_field_type ft = fd->type;
    ft.nullable = true;
    if (ns_value_from_json(j, &ft, v, why, whylen) != 0)
        return -1;
    napsync__v1__value__init(pb);
    if (ns_value_to_pb(v, pb) != 0) {
        ns_value_free(v);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

/* The changed fields of a revision from its JSON array of [name, before,
 * after]. Returns 0, or -1 with why. */
static int changes_build(const ns_entity_type *t, const char *text, rev_build *b, char *why,
                         size_t whylen)
{
    if (text == NULL)
        return 0; /* no field changed (a delete, or a resolution that kept the value) */
    json_error_t jerr;
    b->json = json_loads(text, 0, &jerr);
    if (b->json == NULL || !json_is_array(b->json)) {
        snprintf(why, whylen, "malformed changes");
        return -1;
    }
    size_t n = json_array_size(b->json);
    if (n == 0)
        return 0;
    b->changes = calloc(n, sizeof(*b->changes));
    b->ptrs = calloc(n, sizeof(*b->ptrs));
    b->values = calloc(2 * n, sizeof(*b->values));
    b->pbv = calloc(2 * n, sizeof(*b->pbv));
    if (b->changes == NULL || b->ptrs == NULL || b->values == NULL || b->pbv == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(b->json, i);
        const char *name = json_string_value(json_array_get(c, 0));
        if (!json_is_array(c) || json_array_size(c) != 3 || name == NULL) {
            snprintf(why, whylen, "malformed change");
            return -1;
        }
        const ns_field_def *fd = ns_entity_field(t, name);
        if (fd == NULL)
            continue; /* dropped from the schema since: it cannot be typed */
        Napsync__V1__FieldChange *fc = &b->changes[k];
        napsync__v1__field_change__init(fc);
        fc->name = (char *)name; /* protobuf-c's strings are not const; the page is only packed */
        for (int s = 0; s < 2; s++) {
            if (value_build(fd, json_array_get(c, (size_t)s + 1), &b->values[b->nvalues],
                            &b->pbv[b->nvalues], why, whylen) != 0) {
                char field[300];
                snprintf(field, sizeof(field), "field %.64s: %s", name, why);
                snprintf(why, whylen, "%s", field);
                return -1;
            }
            b->nvalues++;
        }
        fc->before = &b->pbv[b->nvalues - 2];
        fc->after = &b->pbv[b->nvalues - 1];
        b->ptrs[k] = fc;
        k++;
    }
    b->pb.n_changed_fields = k;
    b->pb.changed_fields = k > 0 ? b->ptrs : NULL;
    return 0;
}

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

/* Fills b from row i. Returns 0, or -1 with why. */
static int rev_from_row(const history_op *op, const ns_db_result *res, int row, rev_build *b,
                        char *why, size_t whylen)
{
    const char *v[NCOLS];
    for (int k = 0; k < NCOLS; k++)
        v[k] = ns_db_result_value(res, row, k);
    napsync__v1__revision__init(&b->pb);
    char *end = NULL;
    unsigned long long version = v[COL_VERSION] ? strtoull(v[COL_VERSION], &end, 10) : 0;
    if (version == 0 || end == NULL || *end != '\0' || v[COL_OP] == NULL || v[COL_BY] == NULL ||
        v[COL_AT] == NULL || v[COL_DELETED] == NULL) {
        snprintf(why, whylen, "malformed row");
        return -1;
    }
    b->pb.version = version;
    b->pb.op = (char *)v[COL_OP];
    b->pb.changed_by = (char *)v[COL_BY];
    b->pb.device = (char *)or_empty(v[COL_DEVICE]);
    b->pb.at = (char *)v[COL_AT];
    b->pb.mutation_id = (char *)or_empty(v[COL_MUTATION]);
    b->pb.deleted = strcmp(v[COL_DELETED], "t") == 0;
    return changes_build(op->type, v[COL_CHANGES], b, why, whylen);
}

static size_t varint_size(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static void answer(const history_op *op, ns_db_status st, const ns_db_result *res)
{
    char msg[256];
    if (st != NS_DB_OK) {
        if (st == NS_DB_QUERY_FAILED) {
            ns_log_error("history: %s %s", ns_db_result_sqlstate(res), ns_db_result_message(res));
            op->cb(ERR(INTERNAL), "the history could not be read", NULL, op->ud);
        } else {
            int code = queue_error(st, msg, sizeof(msg));
            op->cb(code, msg, NULL, op->ud);
        }
        return;
    }
    int rows = ns_db_result_rows(res);
    if (rows < 1 || ns_db_result_cols(res) != NCOLS || rows > (int)op->limit + 1) {
        ns_log_error("history: unexpected result shape");
        op->cb(ERR(INTERNAL), "the history could not be read", NULL, op->ud);
        return;
    }
    if (ns_db_result_value(res, 0, COL_OK) == NULL) {
        op->cb(ERR(NOT_FOUND), "no such record, or it is not readable by this principal", NULL,
               op->ud);
        return;
    }
    size_t found = ns_db_result_value(res, 0, COL_VERSION) == NULL ? 0 : (size_t)rows;
    size_t take = found > op->limit ? op->limit : found;
    bool more = found > take;
    rev_build *b = calloc(take ? take : 1, sizeof(*b));
    Napsync__V1__Revision **ptrs = calloc(take ? take : 1, sizeof(*ptrs));
    char why[320] = "out of memory";
    int rc = b != NULL && ptrs != NULL ? 0 : -1;
    size_t n = 0, used = 0;
    for (size_t i = 0; rc == 0 && i < take; i++) {
        rc = rev_from_row(op, res, (int)i, &b[i], why, sizeof(why));
        if (rc != 0) {
            rev_free(&b[i]);
            break;
        }
        size_t sz = napsync__v1__revision__get_packed_size(&b[i].pb);
        sz += 1 + varint_size(sz);
        if (i > 0 && used + sz > NS_HISTORY_MAX_PAGE_BYTES - PAGE_OVERHEAD) {
            /* Cut here: this version starts the next page. */
            rev_free(&b[i]);
            more = true;
            break;
        }
        used += sz;
        ptrs[i] = &b[i].pb;
        n = i + 1;
    }
    if (rc == 0) {
        Napsync__V1__HistoryPage page = NAPSYNC__V1__HISTORY_PAGE__INIT;
        page.n_revisions = n;
        page.revisions = n ? ptrs : NULL;
        page.more = more;
        op->cb(0, NULL, &page, op->ud);
    } else {
        ns_log_error("history of a %s: %s", op->type->name, why);
        op->cb(ERR(INTERNAL), "the history could not be read", NULL, op->ud);
    }
    for (size_t i = 0; b != NULL && i < n; i++)
        rev_free(&b[i]);
    free(ptrs);
    free(b);
}

static void on_history(ns_db_status st, const ns_db_result *res, void *ud)
{
    history_op *op = ud;
    answer(op, st, res);
    free(op);
}

int ns_history_query(ns_db *db, const ns_registry *reg, const ns_identity_info *who,
                     const Napsync__V1__History *req, ns_history_cb cb, void *ud, char *err,
                     size_t errlen)
{
    if (db == NULL || reg == NULL || who == NULL || req == NULL || cb == NULL) {
        snprintf(err, errlen, "no request");
        return ERR(INTERNAL);
    }
    const ns_entity_type *t = NULL;
    if (req->entity_type != NULL && ns_text_ok(req->entity_type, TYPE_MAX))
        t = ns_registry_find(reg, req->entity_type);
    if (t == NULL) {
        snprintf(err, errlen, "entity_type: not a type this server syncs");
        return ERR(UNKNOWN_ENTITY);
    }
    char id[UUID_LEN + 1];
    if (!ns_uuid_canon(req->record_id, id)) {
        snprintf(err, errlen, "record_id: not a UUID");
        return ERR(INVALID_ARGUMENT);
    }
    if (req->before_version > (uint64_t)INT64_MAX) {
        snprintf(err, errlen, "before_version: above the largest version");
        return ERR(INVALID_ARGUMENT);
    }
    uint32_t limit = req->limit == 0                     ? NS_HISTORY_DEFAULT_LIMIT
                     : req->limit > NS_HISTORY_MAX_LIMIT ? NS_HISTORY_MAX_LIMIT
                                                         : req->limit;
    history_op *op = malloc(sizeof(*op));
    if (op == NULL)
        return queue_error(NS_DB_NOMEM, err, errlen);
    op->type = t;
    op->limit = limit;
    op->cb = cb;
    op->ud = ud;
    char before[24], rows[16];
    /* 0 is "from the latest": below any version there can be. */
    snprintf(before, sizeof(before), "%" PRIu64,
             req->before_version ? req->before_version : (uint64_t)INT64_MAX);
    snprintf(rows, sizeof(rows), "%" PRIu32, limit + 1);
    unsigned roles = ns_policy_roles(who);
    const char *v[8] = {t->name,
                        id,
                        who->organisation_id,
                        before,
                        rows,
                        ns_policy_reads_only(roles) ? "true" : "false",
                        who->principal_id,
                        (roles & NS_ROLE_ADMIN) ? "true" : "false"};
    ns_db_status st = ns_reader_query(db, who->principal_id, history_sql, 8, v, on_history, op);
    if (st != NS_DB_OK) {
        free(op);
        return queue_error(st, err, errlen);
    }
    return 0;
}
