#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row per device; roles folded into one comma-separated column so the
 * answer is a single row whatever the number of roles. A device whose
 * person or organisation has been deleted (sql/009) is refused as revoked;
 * withdrawn roles do not count. */
static const char lookup_sql[] =
    "SELECT d.id, d.name, d.revoked_at IS NOT NULL OR d.deleted OR p.deleted OR o.deleted,"
    "       p.id, p.name, o.id, o.name, o.kind,"
    "       coalesce(o.country, ''),"
    "       coalesce(string_agg(r.role, ',' ORDER BY r.role), '')"
    "  FROM devices d"
    "  JOIN principals p ON p.id = d.principal_id"
    "  JOIN organisations o ON o.id = p.organisation_id"
    "  LEFT JOIN principal_roles r ON r.principal_id = p.id AND r.organisation_id = o.id"
    "       AND NOT r.deleted"
    " WHERE d.cert_sha256 = decode($1, 'hex')"
    " GROUP BY d.id, p.id, o.id";

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
    const char *revoked = ns_db_result_value(res, 0, 2);
    copy(id.principal_id, sizeof(id.principal_id), ns_db_result_value(res, 0, 3));
    copy(id.principal_name, sizeof(id.principal_name), ns_db_result_value(res, 0, 4));
    copy(id.organisation_id, sizeof(id.organisation_id), ns_db_result_value(res, 0, 5));
    copy(id.organisation_name, sizeof(id.organisation_name), ns_db_result_value(res, 0, 6));
    copy(id.organisation_kind, sizeof(id.organisation_kind), ns_db_result_value(res, 0, 7));
    copy(id.country, sizeof(id.country), ns_db_result_value(res, 0, 8));
    split_roles(&id, ns_db_result_value(res, 0, 9));
    op.cb(revoked && revoked[0] == 't' ? NS_AUTH_REVOKED : NS_AUTH_OK, &id, op.ud);
}

ns_db_status ns_auth_lookup(ns_db *db, const uint8_t fingerprint[32], ns_auth_cb cb, void *ud)
{
    char hexfp[65];
    for (int i = 0; i < 32; i++)
        snprintf(hexfp + 2 * i, 3, "%02x", fingerprint[i]);
    lookup_op *op = malloc(sizeof(*op));
    if (op == NULL)
        return NS_DB_NOMEM;
    op->cb = cb;
    op->ud = ud;
    const char *params[1] = {hexfp};
    ns_db_status st = ns_db_query(db, lookup_sql, 1, params, on_lookup, op);
    if (st != NS_DB_OK)
        free(op);
    return st;
}
