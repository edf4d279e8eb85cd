#include "reports.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"
#include "value.h"
#include "reader.h"

#define ERR(name) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name
#define UUID_LEN  36

/* Each statement returns one row: the report as JSON text when it is at
 * most the last parameter's bytes (NULL otherwise, so that an oversized
 * report stays in the database), and its size (NULL when the function
 * found nothing readable to report on). $1 is always the reader's
 * organisation. */
typedef struct {
    const char *name;
    const char *sql;
    int nparams; /* the size limit is the last one */
    const char *not_found;
} report_kind;

static const report_kind kinds[] = {
    {"progress",
     "SELECT CASE WHEN octet_length(x.t) <= $4::int THEN x.t END, octet_length(x.t)"
     " FROM (SELECT napsync_report_progress($1::uuid, $2::uuid, $3::int)::text AS t) x",
     4, "plan_id: no such plan, or it is not readable by this principal"},
    {"region",
     "SELECT CASE WHEN octet_length(x.t) <= $3::int THEN x.t END, octet_length(x.t)"
     " FROM (SELECT napsync_report_region($1::uuid, $2::uuid)::text AS t) x",
     3, "region_id: no such regional organisation"},
    {"coverage",
     "SELECT CASE WHEN octet_length(x.t) <= $2::int THEN x.t END, octet_length(x.t)"
     " FROM (SELECT napsync_report_coverage($1::uuid)::text AS t) x",
     2, "nothing to report"},
};

typedef struct {
    const report_kind *kind;
    size_t max_frame;
    ns_reports_cb cb;
    void *ud;
} report_op;

static int queue_error(ns_db_status st, char *err, size_t errlen)
{
    int code = st == NS_DB_SHUTDOWN                                ? ERR(SHUTTING_DOWN)
               : st == NS_DB_UNAVAILABLE || st == NS_DB_QUEUE_FULL ? ERR(UNAVAILABLE)
                                                                   : ERR(INTERNAL);
    snprintf(err, errlen, "%s",
             code == ERR(SHUTTING_DOWN) ? "the server is shutting down"
             : code == ERR(UNAVAILABLE) ? "the database is unavailable; retry"
                                        : "the report could not be computed");
    return code;
}

/* The size of the answer's Envelope, with the largest request id there is
 * (the dispatcher fills in the real one, which can only be shorter). */
static size_t envelope_size(Napsync__V1__ReportResult *result)
{
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = UINT64_MAX;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_REPORT_RESULT;
    env.report_result = result;
    return napsync__v1__envelope__get_packed_size(&env);
}

static void too_large(const report_op *op, unsigned long long bytes)
{
    char msg[256];
    snprintf(msg, sizeof(msg),
             "the %s report is %llu bytes, more than the %zu bytes one frame may carry; it is "
             "not sent in part",
             op->kind->name, bytes, op->max_frame);
    ns_log_warn("report %s of %llu bytes refused: above the frame limit of %zu", op->kind->name,
                bytes, op->max_frame);
    op->cb(ERR(FRAME_TOO_LARGE), msg, NULL, op->ud);
}

static void answer(const report_op *op, ns_db_status st, const ns_db_result *res)
{
    char msg[256];
    if (st != NS_DB_OK) {
        if (st == NS_DB_QUERY_FAILED) {
            const char *state = ns_db_result_sqlstate(res);
            /* 22023: a parameter the function refuses (checked here first,
             * so this means the two disagree). */
            bool invalid = state != NULL && strcmp(state, "22023") == 0;
            ns_log_error("report %s: %s %s", op->kind->name, state ? state : "",
                         ns_db_result_message(res));
            op->cb(invalid ? ERR(INVALID_ARGUMENT) : ERR(INTERNAL),
                   invalid ? "the report's parameters were refused"
                           : "the report could not be computed",
                   NULL, op->ud);
        } else {
            int code = queue_error(st, msg, sizeof(msg));
            op->cb(code, msg, NULL, op->ud);
        }
        return;
    }
    if (ns_db_result_rows(res) != 1 || ns_db_result_cols(res) != 2) {
        ns_log_error("report %s: unexpected result shape", op->kind->name);
        op->cb(ERR(INTERNAL), "the report could not be computed", NULL, op->ud);
        return;
    }
    const char *json = ns_db_result_value(res, 0, 0);
    const char *size = ns_db_result_value(res, 0, 1);
    if (size == NULL) {
        op->cb(ERR(NOT_FOUND), op->kind->not_found, NULL, op->ud);
        return;
    }
    char *end = NULL;
    unsigned long long bytes = strtoull(size, &end, 10);
    if (end == size || *end != '\0') {
        ns_log_error("report %s: malformed size", op->kind->name);
        op->cb(ERR(INTERNAL), "the report could not be computed", NULL, op->ud);
        return;
    }
    if (json == NULL) {
        too_large(op, bytes);
        return;
    }
    Napsync__V1__ReportResult result = NAPSYNC__V1__REPORT_RESULT__INIT;
    result.kind = (char *)op->kind->name; /* protobuf-c's strings are not const; only packed */
    result.json = (char *)json;
    if (envelope_size(&result) > op->max_frame) {
        too_large(op, bytes);
        return;
    }
    op->cb(0, NULL, &result, op->ud);
}

static void on_report(ns_db_status st, const ns_db_result *res, void *ud)
{
    report_op *op = ud;
    answer(op, st, res);
    free(op);
}

static bool is_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* Checks the fields req's kind uses and that the others are unset. Returns
 * 0 with the UUID parameter (plan or region) in id, or INVALID_ARGUMENT. */
static int check_fields(const report_kind *k, const Napsync__V1__ReportRequest *req,
                        char id[UUID_LEN + 1], char *err, size_t errlen)
{
    bool progress = strcmp(k->name, "progress") == 0;
    bool region = strcmp(k->name, "region") == 0;
    if (!progress && !is_empty(req->plan_id)) {
        snprintf(err, errlen, "plan_id: the %s report takes no plan", k->name);
        return ERR(INVALID_ARGUMENT);
    }
    if (!progress && req->year != 0) {
        snprintf(err, errlen, "year: the %s report takes no year", k->name);
        return ERR(INVALID_ARGUMENT);
    }
    if (!region && !is_empty(req->region_id)) {
        snprintf(err, errlen, "region_id: the %s report takes no region", k->name);
        return ERR(INVALID_ARGUMENT);
    }
    if (progress && !ns_uuid_canon(req->plan_id, id)) {
        snprintf(err, errlen, "plan_id: %s", is_empty(req->plan_id) ? "required" : "not a UUID");
        return ERR(INVALID_ARGUMENT);
    }
    if (progress && req->year != 0 &&
        (req->year < NS_REPORTS_MIN_YEAR || req->year > NS_REPORTS_MAX_YEAR)) {
        snprintf(err, errlen,
                 "year: %" PRIu32 " is not between %d and %d (0: the latest with data)", req->year,
                 NS_REPORTS_MIN_YEAR, NS_REPORTS_MAX_YEAR);
        return ERR(INVALID_ARGUMENT);
    }
    if (region && !ns_uuid_canon(req->region_id, id)) {
        snprintf(err, errlen, "region_id: %s",
                 is_empty(req->region_id) ? "required" : "not a UUID");
        return ERR(INVALID_ARGUMENT);
    }
    return 0;
}

int ns_reports_query(ns_db *db, const ns_identity_info *who, const Napsync__V1__ReportRequest *req,
                     size_t max_frame, ns_reports_cb cb, void *ud, char *err, size_t errlen)
{
    if (db == NULL || who == NULL || req == NULL || cb == NULL || max_frame == 0 ||
        max_frame > INT32_MAX) {
        snprintf(err, errlen, "no request");
        return ERR(INTERNAL);
    }
    const report_kind *k = NULL;
    if (req->kind != NULL && ns_text_ok(req->kind, NS_REPORTS_MAX_KIND))
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && k == NULL; i++)
            if (strcmp(kinds[i].name, req->kind) == 0)
                k = &kinds[i];
    if (k == NULL) {
        snprintf(err, errlen, "kind: not a report (progress, region or coverage)");
        return ERR(INVALID_ARGUMENT);
    }
    char id[UUID_LEN + 1] = "";
    int code = check_fields(k, req, id, err, errlen);
    if (code != 0)
        return code;
    report_op *op = malloc(sizeof(*op));
    if (op == NULL)
        return queue_error(NS_DB_NOMEM, err, errlen);
    *op = (report_op){.kind = k, .max_frame = max_frame, .cb = cb, .ud = ud};
    char year[16], limit[16];
    snprintf(year, sizeof(year), "%" PRIu32, req->year);
    snprintf(limit, sizeof(limit), "%zu", max_frame);
    const char *v[4] = {who->organisation_id, id, NULL, NULL};
    if (k->nparams == 4) {
        v[2] = year;
        v[3] = limit;
    } else if (k->nparams == 3) {
        v[2] = limit;
    } else {
        v[1] = limit;
    }
    /* Row-level security (sql/005): the plans this principal reads, every
     * record of them (the figures count submissions, publish approvals). */
    char reader[sizeof(NS_READER_REPORT_PREFIX) + sizeof(who->principal_id)];
    snprintf(reader, sizeof(reader), "%s%s", NS_READER_REPORT_PREFIX, who->principal_id);
    ns_db_status st = ns_reader_query(db, reader, k->sql, k->nparams, v, on_report, op);
    if (st != NS_DB_OK) {
        free(op);
        return queue_error(st, err, errlen);
    }
    return 0;
}
