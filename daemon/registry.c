#include "registry.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

/* Columns every entity table has and the engine itself maintains. */
static const char *const engine_columns[] = {
    "id", "version", "tenant_id", "deleted", "changed_by", "changed_device", "changed_at",
};

/* One row per column, in a stable order; the engine's own columns are kept
 * so that a type whose table lacks one of them is caught below, the
 * columns the server maintains (server_columns) are left out. With each
 * column, how many columns the table's primary key has and whether this
 * is one of them (the upsert's conflict target, see generate_sql). */
static const char catalogue_sql[] =
    "SELECT t.name, t.table_name, t.tenant_field, t.freeze_field, t.freeze_value,"
    "       a.attname, format_type(a.atttypid, a.atttypmod), to_regclass(t.table_name) IS NULL,"
    "       t.directory, coalesce(k.indnkeyatts, 0), a.attnum = ANY (k.indkey::int2[])"
    "  FROM sync_entity_types t"
    "  LEFT JOIN pg_index k ON k.indrelid = to_regclass(t.table_name) AND k.indisprimary"
    "  LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(t.table_name)"
    "       AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY (t.server_columns)"
    " ORDER BY t.name COLLATE \"C\", a.attname COLLATE \"C\"";

enum { COL_PK_COLUMNS = 9, COL_IN_PK = 10 };

/* A growing string for generated SQL; on allocation failure it stays NULL. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 512;
        while (ncap < b->len + (size_t)n + 1)
            ncap *= 2;
        char *ns = realloc(b->s, ncap);
        if (ns == NULL) {
            free(b->s);
            b->s = NULL;
            b->failed = 1;
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
}

static int is_engine_column(const char *col)
{
    for (size_t i = 0; i < sizeof(engine_columns) / sizeof(engine_columns[0]); i++)
        if (strcmp(col, engine_columns[i]) == 0)
            return 1;
    return 0;
}

/* Identifiers go into generated SQL, so only plain lowercase names pass. */
static int plain_identifier(const char *s)
{
    if (s == NULL || !(*s >= 'a' && *s <= 'z'))
        return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return n <= 63;
}

static int map_type(const char *sqltype, ns_field_type *out)
{
    memset(out, 0, sizeof(*out));
    out->nullable = true;
    unsigned len = 0;
    int end = 0;
    if (strcmp(sqltype, "text") == 0 || strcmp(sqltype, "character varying") == 0) {
        out->kind = NS_KIND_TEXT;
    } else if (sscanf(sqltype, "character varying(%u)%n", &len, &end) == 1 && len > 0 && end > 0 &&
               sqltype[end] == '\0') {
        /* Whole name matched: "character varying(8)[]" is an array. */
        out->kind = NS_KIND_TEXT;
        /* varchar(n) counts characters, max_bytes bytes: n bytes is the
         * largest limit under which no value the engine accepts is refused
         * by PostgreSQL (n characters may take up to 4n bytes). */
        out->max_bytes = len < NS_TEXT_DEFAULT_MAX ? len : NS_TEXT_DEFAULT_MAX;
    } else if (strcmp(sqltype, "numeric") == 0) {
        /* Unconstrained only: numeric(p,s) rounds a longer fraction
         * silently (the stored value would differ from the one
         * acknowledged), and numeric[] is an array. */
        out->kind = NS_KIND_DECIMAL;
    } else if (strcmp(sqltype, "bigint") == 0) {
        /* Only bigint: an INT field takes the whole int64 range, which a
         * narrower column would refuse inside a grouped transaction. */
        out->kind = NS_KIND_INT;
    } else if (strcmp(sqltype, "boolean") == 0) {
        out->kind = NS_KIND_BOOL;
    } else if (strcmp(sqltype, "date") == 0) {
        out->kind = NS_KIND_DATE;
    } else if (strcmp(sqltype, "text[]") == 0) {
        out->kind = NS_KIND_TEXT_SET;
    } else if (strcmp(sqltype, "uuid") == 0) {
        out->kind = NS_KIND_REF;
    } else {
        return -1;
    }
    return 0;
}

/* The JSON expression for one field as the engine reads it: exact decimals
 * and dates travel as strings, whatever the session's DateStyle. */
static void field_json_expr(sbuf *b, const ns_field_def *f)
{
    switch (f->type.kind) {
    case NS_KIND_DECIMAL:
        sb_printf(b, "t.\"%s\"::text", f->name);
        break;
    case NS_KIND_DATE:
        sb_printf(b, "to_char(t.\"%s\", 'YYYY-MM-DD')", f->name);
        break;
    default:
        sb_printf(b, "t.\"%s\"", f->name);
        break;
    }
}

/* jsonb_build_object takes at most 100 arguments: build it in pieces. */
#define FIELDS_PER_OBJECT 40

static int generate_sql(ns_entity_type *t)
{
    sbuf sel = {0};
    sb_printf(&sel, "SELECT t.id, t.version, t.deleted, t.tenant_id, (");
    if (t->nfields == 0)
        sb_printf(&sel, "'{}'::jsonb");
    for (size_t i = 0; i < t->nfields; i++) {
        if (i % FIELDS_PER_OBJECT == 0)
            sb_printf(&sel, "%sjsonb_build_object(", i ? ") || " : "");
        else
            sb_printf(&sel, ", ");
        sb_printf(&sel, "'%s', ", t->fields[i].name);
        field_json_expr(&sel, &t->fields[i]);
    }
    if (t->nfields)
        sb_printf(&sel, ")");
    /* The author of the current version follows the fields: the sync
     * engine needs it for the effective base (own edits are not conflicts)
     * and for conflict records. Locking in id order keeps concurrent
     * batches (other daemons) from deadlocking on each other. */
    sb_printf(&sel,
              ")::text, t.changed_by, t.changed_device FROM \"%s\" t"
              " WHERE t.id = ANY($1::uuid[]) ORDER BY t.id FOR UPDATE",
              t->table);

    sbuf up = {0};
    sb_printf(&up,
              "INSERT INTO \"%s\" (id, version, tenant_id, deleted, changed_by, "
              "changed_device, changed_at",
              t->table);
    for (size_t i = 0; i < t->nfields; i++)
        sb_printf(&up, ", \"%s\"", t->fields[i].name);
    sb_printf(&up, ") SELECT r.id, r.version, r.tenant_id, r.deleted, r.changed_by, "
                   "r.changed_device, now()");
    for (size_t i = 0; i < t->nfields; i++)
        sb_printf(&up, ", r.\"%s\"", t->fields[i].name);
    /* The conflict target is the primary key, whichever of the two the
     * table has (check_type). A record's tenant never changes (sync.c), so
     * it is not set again: a distributed table's distribution column
     * cannot be updated (docs/scaling.md). */
    sb_printf(&up,
              " FROM jsonb_populate_recordset(NULL::\"%s\", $1::jsonb) r"
              " ON CONFLICT (%s) DO UPDATE SET version = EXCLUDED.version,"
              " deleted = EXCLUDED.deleted,"
              " changed_by = EXCLUDED.changed_by, changed_device = EXCLUDED.changed_device,"
              " changed_at = EXCLUDED.changed_at",
              t->table, t->tenant_keyed ? "tenant_id, id" : "id");
    for (size_t i = 0; i < t->nfields; i++)
        sb_printf(&up, ", \"%s\" = EXCLUDED.\"%s\"", t->fields[i].name, t->fields[i].name);

    if (sel.failed || up.failed) {
        free(sel.s);
        free(up.s);
        return -1;
    }
    t->sql_select_for_update = sel.s;
    t->sql_upsert = up.s;
    return 0;
}

static void free_type(ns_entity_type *t)
{
    for (size_t i = 0; i < t->nfields; i++)
        free(t->fields[i].name);
    free(t->fields);
    free(t->name);
    free(t->table);
    free(t->tenant_field);
    free(t->freeze_field);
    free(t->freeze_value);
    free(t->sql_select_for_update);
    free(t->sql_upsert);
}

void ns_registry_free(ns_registry *r)
{
    for (size_t i = 0; i < r->ntypes; i++)
        free_type(&r->types[i]);
    free(r->types);
    r->types = NULL;
    r->ntypes = 0;
}

static char *dup_or_null(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : strdup(PQgetvalue(res, row, col));
}

/* What the catalogue says of a table's primary key, column by column. */
typedef struct {
    long ncols;      /* its columns; 0: the table has none */
    int seen;        /* of them, among the table's columns read so far */
    bool id, tenant; /* id and tenant_id are among them */
} key_seen;

/* Checks what the catalogue cannot: the engine's columns are all there, the
 * primary key is (id) or (tenant_id, id), the tenant and freeze fields
 * exist with the right kinds. Sets t->tenant_keyed. */
static int check_type(ns_entity_type *t, int engine_cols_seen, const key_seen *key, char *err,
                      size_t errlen)
{
    if (engine_cols_seen != (int)(sizeof(engine_columns) / sizeof(engine_columns[0]))) {
        snprintf(err, errlen,
                 "table %s of entity type %s lacks some of the engine's columns (id, version, "
                 "tenant_id, deleted, changed_by, changed_device, changed_at)",
                 t->table, t->name);
        return -1;
    }
    /* The upsert's conflict target, and what keeps ids unique: (id) on one
     * database; (tenant_id, id) where the table is to be distributed by
     * its tenant, sql/011 keeping ids unique across tenants. */
    bool only_id = key->ncols == 1 && key->seen == 1 && key->id;
    bool tenant_and_id = key->ncols == 2 && key->seen == 2 && key->id && key->tenant;
    if (!only_id && !tenant_and_id) {
        snprintf(err, errlen,
                 "table %s of entity type %s: its primary key must be (id) or (tenant_id, id)",
                 t->table, t->name);
        return -1;
    }
    t->tenant_keyed = tenant_and_id;
    if (t->tenant_field) {
        const ns_field_def *f = ns_entity_field(t, t->tenant_field);
        if (f == NULL || f->type.kind != NS_KIND_REF) {
            snprintf(err, errlen, "entity type %s: tenant field %s is not a uuid column", t->name,
                     t->tenant_field);
            return -1;
        }
    }
    if ((t->freeze_field == NULL) != (t->freeze_value == NULL) ||
        (t->freeze_field && ns_entity_field(t, t->freeze_field) == NULL)) {
        snprintf(err, errlen, "entity type %s: freeze_field and freeze_value are inconsistent",
                 t->name);
        return -1;
    }
    return 0;
}

static int build(const PGresult *res, ns_registry *out, char *err, size_t errlen)
{
    int rows = PQntuples(res);
    ns_entity_type *types = calloc((size_t)rows + 1, sizeof(*types));
    if (types == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t ntypes = 0;
    ns_entity_type *cur = NULL;
    int engine_seen = 0;
    key_seen key = {0};
    for (int row = 0; row < rows; row++) {
        const char *name = PQgetvalue(res, row, 0);
        if (cur == NULL || strcmp(cur->name, name) != 0) {
            if (cur && check_type(cur, engine_seen, &key, err, errlen) != 0)
                goto fail;
            cur = &types[ntypes++];
            engine_seen = 0;
            key = (key_seen){.ncols = strtol(PQgetvalue(res, row, COL_PK_COLUMNS), NULL, 10)};
            cur->name = strdup(name);
            cur->table = strdup(PQgetvalue(res, row, 1));
            cur->tenant_field = dup_or_null(res, row, 2);
            cur->freeze_field = dup_or_null(res, row, 3);
            cur->freeze_value = dup_or_null(res, row, 4);
            cur->directory = strcmp(PQgetvalue(res, row, 8), "t") == 0;
            cur->fields = calloc((size_t)rows, sizeof(*cur->fields));
            if (!cur->name || !cur->table || !cur->fields) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            if (strcmp(PQgetvalue(res, row, 7), "t") == 0) {
                snprintf(err, errlen, "entity type %s names table %s, which does not exist",
                         cur->name, cur->table);
                goto fail;
            }
            if (!plain_identifier(cur->table) ||
                (cur->tenant_field && !plain_identifier(cur->tenant_field))) {
                snprintf(err, errlen,
                         "entity type %s: table or field names must be plain "
                         "lowercase identifiers",
                         cur->name);
                goto fail;
            }
        }
        const char *col = PQgetvalue(res, row, 5);
        if (strcmp(PQgetvalue(res, row, COL_IN_PK), "t") == 0) {
            key.seen++;
            key.id = key.id || strcmp(col, "id") == 0;
            key.tenant = key.tenant || strcmp(col, "tenant_id") == 0;
        }
        if (is_engine_column(col)) {
            engine_seen++;
            continue;
        }
        if (!plain_identifier(col)) {
            snprintf(err, errlen, "column %s.%s: field names must be plain lowercase identifiers",
                     cur->table, col);
            goto fail;
        }
        ns_field_def *f = &cur->fields[cur->nfields];
        if (map_type(PQgetvalue(res, row, 6), &f->type) != 0) {
            snprintf(err, errlen, "column %s.%s has type %s, which napsync cannot sync", cur->table,
                     col, PQgetvalue(res, row, 6));
            goto fail;
        }
        f->name = strdup(col);
        if (f->name == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        cur->nfields++;
    }
    if (cur && check_type(cur, engine_seen, &key, err, errlen) != 0)
        goto fail;
    for (size_t i = 0; i < ntypes; i++) {
        if (generate_sql(&types[i]) != 0) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    out->types = types;
    out->ntypes = ntypes;
    return 0;
fail:
    for (size_t i = 0; i < ntypes; i++)
        free_type(&types[i]);
    free(types);
    return -1;
}

int ns_registry_load(const char *conninfo, ns_registry *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    /* libpq's complaint about a malformed string quotes it, password and
     * all: such a string never reaches it, so what PQerrorMessage says below
     * is about connecting, never parsing. */
    char why[256];
    if (ns_db_conninfo_check(conninfo, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot connect to the database: %s", why);
        return -1;
    }
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to the database: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return -1;
    }
    PGresult *res = PQexec(pg, catalogue_sql);
    int rc;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "cannot read the entity types: %s", PQresultErrorMessage(res));
        rc = -1;
    } else {
        rc = build(res, out, err, errlen);
    }
    PQclear(res);
    if (rc == 0) {
        res = PQexec(pg,
                     "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user");
        out->rls_bypassed = PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
                            strcmp(PQgetvalue(res, 0, 0), "f") != 0;
        PQclear(res);
    }
    PQfinish(pg);
    return rc;
}

const ns_entity_type *ns_registry_find(const ns_registry *r, const char *name)
{
    size_t lo = 0, hi = r->ntypes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, r->types[mid].name);
        if (c == 0)
            return &r->types[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const ns_field_def *ns_entity_field(const ns_entity_type *t, const char *field)
{
    size_t lo = 0, hi = t->nfields;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(field, t->fields[mid].name);
        if (c == 0)
            return &t->fields[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
