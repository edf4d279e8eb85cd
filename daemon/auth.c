#include "auth.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row per device; roles folded into one comma-separated column so the
 * answer is a single row whatever the number of roles. $1 is an array of
 * fingerprints in hex: one for a Hello, those of every session concerned
 * when sessions already open are checked again (ns_auth_check), so that
 * both decide by the same rule. A device whose person or organisation has
 * been deleted (sql/009) is refused as revoked; withdrawn roles do not
 * count. */
static const char lookup_sql[] =
    "SELECT d.id, d.name, d.revoked_at IS NOT NULL OR d.deleted OR p.deleted OR o.deleted,"
    "       p.id, p.name, o.id, o.name, o.kind,"
    "       coalesce(o.country, ''),"
    "       coalesce(string_agg(r.role, ',' ORDER BY r.role), ''),"
    "       encode(d.cert_sha256, 'hex')"
    "  FROM devices d"
    "  JOIN principals p ON p.id = d.principal_id"
    "  JOIN organisations o ON o.id = p.organisation_id"
    "  LEFT JOIN principal_roles r ON r.principal_id = p.id AND r.organisation_id = o.id"
    "       AND NOT r.deleted"
    " WHERE d.cert_sha256 = ANY (ARRAY(SELECT decode(f, 'hex') FROM unnest($1::text[]) AS f))"
    " GROUP BY d.id, p.id, o.id";
/* Columns of lookup_sql used by both. */
#define COL_DEVICE_ID   0
#define COL_REFUSED     2
#define COL_FINGERPRINT 10

typedef struct {
    ns_auth_cb cb;
    void *ud;
} lookup_op;

/* Cuts a value too long for dst at a character boundary: it goes into
 * Welcome, and a client refuses text that is not valid UTF-8. */
static void copy(char *dst, size_t cap, const char *src)
{
    if (src == NULL)
        src = "";
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--; /* src[n] continues a character: cut before that character */
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void split_roles(ns_identity_info *id, const char *list)
{
    id->nroles = 0;
    while (list && *list && id->nroles < NS_AUTH_MAX_ROLES) {
        const char *comma = strchr(list, ',');
        size_t len = comma ? (size_t)(comma - list) : strlen(list);
        if (len > 0 && len < sizeof(id->roles[0])) {
            memcpy(id->roles[id->nroles], list, len);
            id->roles[id->nroles][len] = '\0';
            id->nroles++;
        }
        list = comma ? comma + 1 : NULL;
    }
}

static void on_lookup(ns_db_status st, const ns_db_result *res, void *ud)
{
    lookup_op op = *(lookup_op *)ud;
    free(ud);
    if (st != NS_DB_OK) {
        op.cb(NS_AUTH_UNAVAILABLE, NULL, op.ud);
        return;
    }
    if (ns_db_result_rows(res) != 1) {
        op.cb(NS_AUTH_UNKNOWN_DEVICE, NULL, op.ud);
        return;
    }
    ns_identity_info id;
    memset(&id, 0, sizeof(id));
    copy(id.device_id, sizeof(id.device_id), ns_db_result_value(res, 0, 0));
    copy(id.device_name, sizeof(id.device_name), ns_db_result_value(res, 0, 1));
    const char *revoked = ns_db_result_value(res, 0, COL_REFUSED);
    copy(id.principal_id, sizeof(id.principal_id), ns_db_result_value(res, 0, 3));
    copy(id.principal_name, sizeof(id.principal_name), ns_db_result_value(res, 0, 4));
    copy(id.organisation_id, sizeof(id.organisation_id), ns_db_result_value(res, 0, 5));
    copy(id.organisation_name, sizeof(id.organisation_name), ns_db_result_value(res, 0, 6));
    copy(id.organisation_kind, sizeof(id.organisation_kind), ns_db_result_value(res, 0, 7));
    copy(id.country, sizeof(id.country), ns_db_result_value(res, 0, 8));
    split_roles(&id, ns_db_result_value(res, 0, 9));
    op.cb(revoked && revoked[0] == 't' ? NS_AUTH_REVOKED : NS_AUTH_OK, &id, op.ud);
}

static void hex32(const uint8_t fp[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[fp[i] >> 4];
        out[2 * i + 1] = digits[fp[i] & 15];
    }
    out[64] = '\0';
}

ns_db_status ns_auth_lookup(ns_db *db, const uint8_t fingerprint[32], ns_auth_cb cb, void *ud)
{
    char hexfp[65];
    hex32(fingerprint, hexfp);
    char array[68];
    snprintf(array, sizeof(array), "{%s}", hexfp);
    lookup_op *op = malloc(sizeof(*op));
    if (op == NULL)
        return NS_DB_NOMEM;
    op->cb = cb;
    op->ud = ud;
    const char *params[1] = {array};
    ns_db_status st = ns_db_query(db, lookup_sql, 1, params, on_lookup, op);
    if (st != NS_DB_OK)
        free(op);
    return st;
}

/* ---- sessions already open ------------------------------------------------- */

typedef struct {
    char fp[65]; /* hex, as the query returns it */
    char device_id[40];
    bool refused;
} verdict_row;

struct ns_auth_verdicts {
    verdict_row *rows; /* sorted by fp */
    size_t n;
};

typedef struct {
    ns_auth_check_cb cb;
    void *ud;
} check_op;

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const verdict_row *)a)->fp, ((const verdict_row *)b)->fp);
}

ns_auth_result ns_auth_verdict(const ns_auth_verdicts *v, const uint8_t fingerprint[32],
                               const char *device_id)
{
    verdict_row key = {.refused = false};
    hex32(fingerprint, key.fp);
    const verdict_row *row = v->n ? bsearch(&key, v->rows, v->n, sizeof(*v->rows), cmp_row) : NULL;
    /* A certificate that now names another device (deleted, then
     * registered again) is not the device the session authenticated. */
    if (row == NULL || strcmp(row->device_id, device_id) != 0)
        return NS_AUTH_UNKNOWN_DEVICE;
    return row->refused ? NS_AUTH_REVOKED : NS_AUTH_OK;
}

static void on_check(ns_db_status st, const ns_db_result *res, void *ud)
{
    check_op op = *(check_op *)ud;
    free(ud);
    if (st != NS_DB_OK) {
        op.cb(st, NULL, op.ud);
        return;
    }
    int rows = ns_db_result_rows(res);
    ns_auth_verdicts v = {NULL, 0};
    if (rows > 0) {
        v.rows = calloc((size_t)rows, sizeof(*v.rows));
        if (v.rows == NULL) {
            op.cb(NS_DB_NOMEM, NULL, op.ud);
            return;
        }
    }
    for (int i = 0; i < rows; i++) {
        const char *fp = ns_db_result_value(res, i, COL_FINGERPRINT);
        const char *id = ns_db_result_value(res, i, COL_DEVICE_ID);
        const char *refused = ns_db_result_value(res, i, COL_REFUSED);
        if (fp == NULL || strlen(fp) != 64 || id == NULL)
            continue;
        verdict_row *r = &v.rows[v.n++];
        memcpy(r->fp, fp, 65);
        copy(r->device_id, sizeof(r->device_id), id);
        r->refused = refused == NULL || refused[0] != 'f';
    }
    if (v.n > 1)
        qsort(v.rows, v.n, sizeof(*v.rows), cmp_row);
    op.cb(NS_DB_OK, &v, op.ud);
    free(v.rows);
}

ns_db_status ns_auth_check(ns_db *db, const uint8_t (*fingerprints)[32], size_t n,
                           ns_auth_check_cb cb, void *ud)
{
    if (n == 0 || n > NS_AUTH_CHECK_MAX)
        return NS_DB_INVALID;
    /* "{hex,hex,...}": 65 bytes per fingerprint with its comma, the
     * braces and the NUL. */
    char *array = malloc(n * 65 + 2);
    check_op *op = malloc(sizeof(*op));
    if (array == NULL || op == NULL) {
        free(array);
        free(op);
        return NS_DB_NOMEM;
    }
    char *p = array;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *p++ = ',';
        hex32(fingerprints[i], p);
        p += 64;
    }
    *p++ = '}';
    *p = '\0';
    op->cb = cb;
    op->ud = ud;
    const char *params[1] = {array};
    ns_db_status st = ns_db_query(db, lookup_sql, 1, params, on_check, op);
    free(array); /* ns_db_query copied it */
    if (st != NS_DB_OK)
        free(op);
    return st;
}
