/* The device's local store (store.h): one SQLite file per device.
 *
 * Durability comes from SQLite: WAL with synchronous=FULL fsyncs every
 * commit, and each function that changes something does it in one
 * transaction that has committed before it returns. A failure rolls the
 * transaction back, so a function either did all of its work or none.
 *
 * Field sets are kept as packed napsync.v1.FieldSet. The client has no
 * schema, so a value's kind is the one it arrived in, checked (and
 * canonicalised) by ns_value_check with the default limits, which are the
 * widest the server's registry grants. What the server sends is checked
 * before anything is written; what we read back from our own file is
 * checked again, and a blob that fails is reported as damage.
 *
 * The schema is versioned with PRAGMA user_version; `migrations` below is
 * append-only: a migration that has shipped is never edited. */
#include "store.h"
#include "value.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "envelope.h"
#include "fields_pb.h"

/* PRAGMA application_id: "NPSY", so that another program's SQLite file is
 * never mistaken for a store (or migrated into one). */
#define STORE_APPLICATION_ID  0x4e505359
#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_PATH_MAX        4000
/* What a message quotes of a string the caller or the server gave us. */
#define QUOTE_MAX 64

/* Numbered migrations, applied in order, each in its own transaction with
 * its user_version. Append only. */
static const struct {
    int version;
    const char *sql;
} migrations[] = {
    {1, "CREATE TABLE meta (\n"
        "    key   TEXT PRIMARY KEY,\n"
        "    value TEXT NOT NULL\n"
        ");\n"
        "CREATE TABLE records (\n"
        "    entity_type TEXT NOT NULL,\n"
        "    id          TEXT NOT NULL,\n"
        "    version     INTEGER NOT NULL CHECK (version > 0),\n"
        "    deleted     INTEGER NOT NULL CHECK (deleted IN (0, 1)),\n"
        "    tenant_id   TEXT NOT NULL,\n"
        "    fields      BLOB NOT NULL,\n"
        "    changed_by  TEXT NOT NULL,\n"
        "    changed_at  TEXT NOT NULL,\n"
        "    PRIMARY KEY (entity_type, id)\n"
        ");\n"
        "CREATE INDEX records_tenant ON records (tenant_id);\n"
        "CREATE TABLE outbox (\n"
        "    seq           INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    mutation_id   TEXT NOT NULL UNIQUE,\n"
        "    entity_type   TEXT NOT NULL,\n"
        "    record_id     TEXT NOT NULL,\n"
        "    base_version  INTEGER NOT NULL CHECK (base_version >= 0),\n"
        "    op            TEXT NOT NULL CHECK (op IN ('create', 'update', 'delete')),\n"
        "    fields        BLOB NOT NULL,\n"
        "    created_at    INTEGER NOT NULL,\n"
        "    state         TEXT NOT NULL DEFAULT 'pending'\n"
        "                  CHECK (state IN ('pending', 'rejected')),\n"
        "    reject_code   INTEGER,\n"
        "    reject_reason TEXT,\n"
        "    CHECK ((state = 'rejected') = (reject_code IS NOT NULL))\n"
        ");\n"
        "CREATE INDEX outbox_record ON outbox (entity_type, record_id, seq);\n"
        "CREATE INDEX outbox_state ON outbox (state, seq);\n"
        "CREATE TABLE conflicts (\n"
        "    scope       TEXT NOT NULL,\n"
        "    id          TEXT NOT NULL,\n"
        "    entity_type TEXT NOT NULL,\n"
        "    record_id   TEXT NOT NULL,\n"
        "    tenant_id   TEXT NOT NULL,\n"
        "    created_at  TEXT NOT NULL,\n"
        "    resolved    INTEGER NOT NULL CHECK (resolved IN (0, 1)),\n"
        "    blob        BLOB NOT NULL,\n"
        "    PRIMARY KEY (scope, id)\n"
        ");\n"
        "CREATE INDEX conflicts_id ON conflicts (id);\n"
        "CREATE INDEX conflicts_tenant ON conflicts (tenant_id);\n"
        "PRAGMA application_id = 1313887065;\n"},
    /* The tenants the device has synced (synced = 1) or must backfill
     * (0). A store of format 1 knows its tenants from its records only:
     * they count as synced, so the first page purges those no longer
     * readable. */
    {2, "CREATE TABLE tenants (\n"
        "    id     TEXT PRIMARY KEY,\n"
        "    synced INTEGER NOT NULL CHECK (synced IN (0, 1))\n"
        ") WITHOUT ROWID;\n"
        "INSERT INTO tenants (id, synced) SELECT DISTINCT tenant_id, 1 FROM records;\n"},
};

#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

typedef enum {
    Q_META_GET,
    Q_META_SET,
    Q_META_DEL,
    Q_RECORD_STATE,
    Q_RECORD_GET,
    Q_RECORD_UPSERT,
    Q_RECORD_KEYS,
    Q_RECORDS_RESET,
    Q_RECORDS_PURGE,
    Q_OUTBOX_OPS,
    Q_OUTBOX_OF_RECORD,
    Q_OUTBOX_INSERT,
    Q_OUTBOX_BATCH,
    Q_OUTBOX_ALL,
    Q_OUTBOX_STATE_OF,
    Q_OUTBOX_DELETE,
    Q_OUTBOX_REJECT,
    Q_CONFLICTS_DEL_SCOPE,
    Q_CONFLICTS_PURGE,
    Q_CONFLICT_PUT,
    Q_CONFLICT_LIST,
    Q_CONFLICT_GET,
    Q_COUNT_OUTBOX,
    Q_COUNT_RECORDS,
    Q_COUNT_CONFLICTS,
    Q_TENANTS_ALL,
    Q_TENANT_ADD,
    Q_TENANT_DEL,
    Q_TENANT_SYNCED,
    Q_TENANTS_PENDING,
    Q_TENANTS_RESET,
    Q_COUNT
} query_id;

/* The latest listing of a conflict wins when several scope sets list it. */
#define LATEST_CONFLICT "c.rowid = (SELECT max(d.rowid) FROM conflicts d WHERE d.id = c.id)"

static const char *const query_sql[Q_COUNT] = {
    [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [Q_META_SET] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [Q_META_DEL] = "DELETE FROM meta WHERE key = ?1",
    [Q_RECORD_STATE] = "SELECT version, deleted FROM records WHERE entity_type = ?1 AND id = ?2",
    [Q_RECORD_GET] = "SELECT version, deleted, tenant_id, fields, changed_by, changed_at"
                     " FROM records WHERE entity_type = ?1 AND id = ?2",
    [Q_RECORD_UPSERT] =
        "INSERT INTO records (entity_type, id, version, deleted, tenant_id, fields, changed_by,"
        " changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        " ON CONFLICT (entity_type, id) DO UPDATE SET version = excluded.version,"
        " deleted = excluded.deleted, tenant_id = excluded.tenant_id, fields = excluded.fields,"
        " changed_by = excluded.changed_by, changed_at = excluded.changed_at"
        " WHERE excluded.version > records.version",
    [Q_RECORD_KEYS] = "SELECT id FROM records WHERE entity_type = ?1 UNION"
                      " SELECT record_id FROM outbox WHERE entity_type = ?1 AND state = 'pending'"
                      " ORDER BY 1",
    [Q_RECORDS_RESET] = "DELETE FROM records",
    [Q_RECORDS_PURGE] = "DELETE FROM records WHERE tenant_id = ?1",
    [Q_OUTBOX_OPS] = "SELECT op FROM outbox WHERE entity_type = ?1 AND record_id = ?2"
                     " AND state = 'pending' ORDER BY seq",
    [Q_OUTBOX_OF_RECORD] = "SELECT op, fields, state FROM outbox"
                           " WHERE entity_type = ?1 AND record_id = ?2 ORDER BY seq",
    [Q_OUTBOX_INSERT] = "INSERT INTO outbox (mutation_id, entity_type, record_id, base_version,"
                        " op, fields, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_OUTBOX_BATCH] = "SELECT mutation_id, entity_type, record_id, base_version, op, fields"
                       " FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?1",
    [Q_OUTBOX_ALL] = "SELECT seq, mutation_id, entity_type, record_id, base_version, op, fields,"
                     " created_at, state, reject_code, reject_reason FROM outbox ORDER BY seq",
    [Q_OUTBOX_STATE_OF] = "SELECT state FROM outbox WHERE mutation_id = ?1",
    [Q_OUTBOX_DELETE] = "DELETE FROM outbox WHERE mutation_id = ?1",
    [Q_OUTBOX_REJECT] = "UPDATE outbox SET state = 'rejected', reject_code = ?2,"
                        " reject_reason = ?3 WHERE mutation_id = ?1",
    [Q_CONFLICTS_DEL_SCOPE] = "DELETE FROM conflicts WHERE scope = ?1",
    [Q_CONFLICTS_PURGE] = "DELETE FROM conflicts WHERE tenant_id = ?1",
    [Q_CONFLICT_PUT] = "INSERT OR REPLACE INTO conflicts (scope, id, entity_type, record_id,"
                       " tenant_id, created_at, resolved, blob)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [Q_CONFLICT_LIST] = "SELECT c.blob FROM conflicts c WHERE " LATEST_CONFLICT
                        " AND (?1 OR c.resolved = 0) ORDER BY c.created_at, c.id",
    [Q_CONFLICT_GET] = "SELECT blob FROM conflicts WHERE id = ?1 ORDER BY rowid DESC LIMIT 1",
    [Q_COUNT_OUTBOX] = "SELECT coalesce(sum(state = 'pending'), 0),"
                       " coalesce(sum(state = 'rejected'), 0) FROM outbox",
    [Q_COUNT_RECORDS] = "SELECT count(*) FROM records",
    [Q_COUNT_CONFLICTS] =
        "SELECT count(*) FROM conflicts c WHERE " LATEST_CONFLICT " AND c.resolved = 0",
    [Q_TENANTS_ALL] = "SELECT id FROM tenants ORDER BY id",
    [Q_TENANT_ADD] = "INSERT INTO tenants (id, synced) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
    [Q_TENANT_DEL] = "DELETE FROM tenants WHERE id = ?1",
    [Q_TENANT_SYNCED] = "UPDATE tenants SET synced = 1 WHERE id = ?1",
    [Q_TENANTS_PENDING] = "SELECT id FROM tenants WHERE synced = 0 ORDER BY id LIMIT ?1",
    [Q_TENANTS_RESET] = "DELETE FROM tenants",
};

struct ns_store {
    sqlite3 *db;
    int lock_fd;
    /* A call is running: a callback that calls back in is refused. */
    bool busy;
    char *path;
    sqlite3_stmt *q[Q_COUNT];
};

/* ---- errors --------------------------------------------------------------- */

static ns_status status_of(ns_store_rc rc)
{
    switch (rc) {
    case NS_STORE_OK:
        return NS_OK;
    case NS_STORE_INVALID:
    case NS_STORE_NOT_FOUND:
    case NS_STORE_EXISTS:
        return NS_ERR_INVALID_ARGUMENT;
    case NS_STORE_NOMEM:
        return NS_ERR_NOMEM;
    case NS_STORE_STATE:
    case NS_STORE_LOCKED:
    case NS_STORE_NEWER:
    case NS_STORE_FULL:
    case NS_STORE_IO:
    case NS_STORE_CORRUPT:
        break;
    }
    return NS_ERR_STATE;
}

__attribute__((format(printf, 3, 0))) static void vset_error(ns_error *err, ns_status st,
                                                             const char *fmt, va_list ap)
{
    if (err == NULL)
        return;
    err->status = st;
    err->server_code = 0;
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    if (err->message[0] == '\0')
        snprintf(err->message, sizeof(err->message), "%s", ns_status_name(st));
}

__attribute__((format(printf, 3, 4))) static ns_store_rc fail(ns_error *err, ns_store_rc rc,
                                                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset_error(err, status_of(rc), fmt, ap);
    va_end(ap);
    return rc;
}

/* Something the server sent cannot be stored: a protocol error. */
__attribute__((format(printf, 2, 3))) static ns_store_rc fail_server(ns_error *err, const char *fmt,
                                                                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset_error(err, NS_ERR_PROTOCOL, fmt, ap);
    va_end(ap);
    return NS_STORE_INVALID;
}

/* Maps an SQLite failure while `doing` something. */
static ns_store_rc fail_sql(ns_store *s, int rc, ns_error *err, const char *doing)
{
    const char *msg = s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return fail(err, NS_STORE_FULL,
                    "the device's disk is full: nothing was saved (%s in %s: %s)", doing, s->path,
                    msg);
    case SQLITE_NOMEM:
        return fail(err, NS_STORE_NOMEM, "out of memory %s %s", doing, s->path);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return fail(err, NS_STORE_LOCKED, "the store %s is busy: another program is using it (%s)",
                    s->path, msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return fail(err, NS_STORE_CORRUPT, "the store %s is damaged (%s): %s", s->path, doing, msg);
    case SQLITE_CONSTRAINT:
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
        return fail(err, NS_STORE_INVALID, "%s %s: %s", doing, s->path, msg);
    default:
        return fail(err, NS_STORE_IO, "the store %s could not be read or written (%s): %s", s->path,
                    doing, msg);
    }
}

/* A string from a caller or the server, fit for a message. */
static const char *quoted(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; s != NULL && s[i] != '\0' && o + 4 < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == QUOTE_MAX) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    buf[o] = '\0';
    return buf;
}

/* ---- small checks ------------------------------------------------------------ */

/* An entity type or field name: as the server's registry allows them. */
static bool plain_identifier(const char *s)
{
    if (s == NULL || !(*s >= 'a' && *s <= 'z'))
        return false;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
        if (n == NS_STORE_TYPE_SIZE - 1)
            return false;
    }
    return true;
}

/* in as a canonical UUID in out, or INVALID with a message naming what the
 * id should have been ("record", "tenant"...). */
static ns_store_rc want_uuid(const char *in, char out[NS_STORE_UUID_SIZE], const char *what,
                             ns_error *err)
{
    if (ns_uuid_canon(in, out))
        return NS_STORE_OK;
    char q[QUOTE_MAX + 4];
    return fail(err, NS_STORE_INVALID, "\"%s\" is not a %s id (a UUID)", quoted(in, q, sizeof(q)),
                what);
}

/* Printable ASCII without spaces, 1 to size-1 bytes: cursors and times. */
static bool token_ok(const char *s, size_t size)
{
    if (s == NULL || s[0] == '\0')
        return false;
    for (size_t i = 0; s[i] != '\0'; i++)
        if (i + 1 >= size || s[i] <= 0x20 || s[i] >= 0x7f)
            return false;
    return true;
}

/* A time from the server is shown, never parsed: absent is acceptable. */
static bool time_ok(const char *s)
{
    return s != NULL && (s[0] == '\0' || token_ok(s, NS_STORE_TIME_SIZE));
}

static int64_t now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *op_name(ns_store_op op)
{
    switch (op) {
    case NS_STORE_OP_CREATE:
        return "create";
    case NS_STORE_OP_UPDATE:
        return "update";
    case NS_STORE_OP_DELETE:
        return "delete";
    }
    return NULL;
}

/* 0 for a value that is not one of ours (a damaged row). */
static ns_store_op op_from_name(const unsigned char *name)
{
    if (name == NULL)
        return (ns_store_op)0;
    if (strcmp((const char *)name, "create") == 0)
        return NS_STORE_OP_CREATE;
    if (strcmp((const char *)name, "update") == 0)
        return NS_STORE_OP_UPDATE;
    if (strcmp((const char *)name, "delete") == 0)
        return NS_STORE_OP_DELETE;
    return (ns_store_op)0;
}

ns_store_rc ns_store_new_uuid(char out[NS_STORE_UUID_SIZE], ns_error *err)
{
    unsigned char b[16];
    int rc = uv_random(NULL, NULL, b, sizeof(b), 0, NULL);
    if (rc != 0)
        return fail(err, NS_STORE_IO, "no random numbers from the system: %s", uv_strerror(rc));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < sizeof(b); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
    return NS_STORE_OK;
}

int ns_store_schema_version(void)
{
    return migrations[NMIGRATIONS - 1].version;
}

/* ---- field sets: wire form <-> ns_fieldset ------------------------------------- */

/* protobuf-c answers NULL both for bytes that do not decode and for a
 * failed allocation; telling them apart keeps an out-of-memory from being
 * reported as a damaged store (which a user might delete, outbox and all).
 * So every message this file unpacks is allocated by unpack_alloc, which
 * notes a failure in unpack_oom (cleared before each unpack), and freed by
 * it too, as protobuf-c requires, also where a caller frees one
 * (ns_store_conflict_free): NULL would reach libprotobuf-c's own free(),
 * not necessarily the one this file's malloc() pairs with. The flag lives
 * per thread rather than in allocator_data so that this one allocator
 * outlives every message it made while stores on other threads keep their
 * own flag. */
static _Thread_local bool unpack_oom;

static void *unpack_alloc_fn(void *ud, size_t n)
{
    (void)ud;
    void *p = malloc(n);
    if (p == NULL)
        unpack_oom = true;
    return p;
}

static void unpack_free_fn(void *ud, void *p)
{
    (void)ud;
    free(p);
}

static ProtobufCAllocator unpack_alloc = {
    .alloc = unpack_alloc_fn,
    .free = unpack_free_fn,
    .allocator_data = NULL,
};

/* Kinds come from the value's own oneof case; a null has no kind of its
 * own (a null equals any null). */
static ns_kind kind_of_case(Napsync__V1__Value__KindCase c)
{
    switch (c) {
    case NAPSYNC__V1__VALUE__KIND_BOOL_VALUE:
        return NS_KIND_BOOL;
    case NAPSYNC__V1__VALUE__KIND_INT_VALUE:
        return NS_KIND_INT;
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        return NS_KIND_DECIMAL;
    case NAPSYNC__V1__VALUE__KIND_DATE_VALUE:
        return NS_KIND_DATE;
    case NAPSYNC__V1__VALUE__KIND_SET_VALUE:
        return NS_KIND_TEXT_SET;
    case NAPSYNC__V1__VALUE__KIND_REF_VALUE:
        return NS_KIND_REF;
    default:
        return NS_KIND_TEXT;
    }
}

typedef struct {
    const Napsync__V1__Field **sorted; /* by name */
    size_t n;
    ns_field_type scratch; /* the answer of the last lookup */
} wire_types;

static int field_ptr_cmp(const void *a, const void *b)
{
    const Napsync__V1__Field *x = *(const Napsync__V1__Field *const *)a;
    const Napsync__V1__Field *y = *(const Napsync__V1__Field *const *)b;
    return strcmp(x->name, y->name);
}

static const ns_field_type *wire_type_of(const char *field, void *ud)
{
    wire_types *t = ud;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->sorted[mid]->name, field);
        if (c == 0) {
            const Napsync__V1__Value *v = t->sorted[mid]->value;
            t->scratch.kind =
                kind_of_case(v != NULL ? v->kind_case : NAPSYNC__V1__VALUE__KIND__NOT_SET);
            t->scratch.nullable = true;
            t->scratch.max_bytes = 0;
            t->scratch.max_items = 0;
            return &t->scratch;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Checks and canonicalises a wire field set. On failure why says what is
 * wrong (naming the field) and *out is empty. */
static ns_store_rc fields_from_wire(const Napsync__V1__FieldSet *pb, ns_fieldset *out, char *why,
                                    size_t whylen)
{
    ns_fieldset_init(out);
    if (pb == NULL || pb->n_fields == 0)
        return NS_STORE_OK;
    size_t n = pb->n_fields;
    if (n > NS_STORE_MAX_FIELDS) {
        snprintf(why, whylen, "%zu fields (at most %d)", n, NS_STORE_MAX_FIELDS);
        return NS_STORE_INVALID;
    }
    if (pb->fields == NULL) {
        snprintf(why, whylen, "a field set without its fields");
        return NS_STORE_INVALID;
    }
    const Napsync__V1__Field **sorted = malloc(n * sizeof(*sorted));
    if (sorted == NULL) {
        snprintf(why, whylen, "out of memory");
        return NS_STORE_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const Napsync__V1__Field *f = pb->fields[i];
        if (f == NULL || !plain_identifier(f->name)) {
            char q[QUOTE_MAX + 4];
            snprintf(why, whylen, "\"%s\" is not a field name",
                     quoted(f != NULL ? f->name : NULL, q, sizeof(q)));
            free(sorted);
            return NS_STORE_INVALID;
        }
        sorted[i] = f;
    }
    qsort(sorted, n, sizeof(*sorted), field_ptr_cmp);
    wire_types types = {.sorted = sorted, .n = n};
    ns_value_status st = ns_fieldset_from_pb(pb, wire_type_of, &types, out, why, whylen);
    free(sorted);
    if (st == NS_VALUE_OK)
        return NS_STORE_OK;
    return st == NS_VALUE_NOMEM ? NS_STORE_NOMEM : NS_STORE_INVALID;
}

/* Packs fs; *blob is NULL when there is nothing to pack (*len 0). */
static ns_store_rc fields_to_blob(const ns_fieldset *fs, uint8_t **blob, size_t *len)
{
    *blob = NULL;
    *len = 0;
    Napsync__V1__FieldSet pb;
    if (ns_fieldset_to_pb(fs, &pb) != 0)
        return NS_STORE_NOMEM;
    size_t n = napsync__v1__field_set__get_packed_size(&pb);
    if (n > 0) {
        *blob = malloc(n);
        if (*blob == NULL) {
            ns_fieldset_pb_clear(&pb);
            return NS_STORE_NOMEM;
        }
        *len = napsync__v1__field_set__pack(&pb, *blob);
    }
    ns_fieldset_pb_clear(&pb);
    return NS_STORE_OK;
}

/* Reads back a field set this store wrote. */
static ns_store_rc fields_from_blob(const void *blob, size_t len, ns_fieldset *out, char *why,
                                    size_t whylen)
{
    static const uint8_t empty[1];
    ns_fieldset_init(out);
    unpack_oom = false;
    Napsync__V1__FieldSet *pb =
        napsync__v1__field_set__unpack(&unpack_alloc, len, blob != NULL ? blob : empty);
    if (pb == NULL) {
        snprintf(why, whylen, "%s",
                 unpack_oom ? "out of memory" : "a field set that does not decode");
        return unpack_oom ? NS_STORE_NOMEM : NS_STORE_CORRUPT;
    }
    ns_store_rc rc = fields_from_wire(pb, out, why, whylen);
    napsync__v1__field_set__free_unpacked(pb, &unpack_alloc);
    return rc == NS_STORE_INVALID ? NS_STORE_CORRUPT : rc;
}

/* A caller's ns_fieldset must be complete before it can be converted. */
static bool fieldset_well_formed(const ns_fieldset *fs)
{
    if (fs->n > 0 && (fs->names == NULL || fs->values == NULL))
        return false;
    for (size_t i = 0; i < fs->n; i++) {
        const ns_value *v = &fs->values[i];
        if (fs->names[i] == NULL)
            return false;
        if (v->is_null)
            continue;
        switch (v->kind) {
        case NS_KIND_DECIMAL:
        case NS_KIND_TEXT:
        case NS_KIND_DATE:
        case NS_KIND_REF:
            if (v->u.s == NULL)
                return false;
            break;
        case NS_KIND_TEXT_SET:
            if (v->u.set.n > 0 && v->u.set.items == NULL)
                return false;
            break;
        case NS_KIND_BOOL:
        case NS_KIND_INT:
            break;
        default:
            return false;
        }
    }
    return true;
}

/* A wire value standing alone (in a conflict): checked against its own
 * kind. Absent is acceptable (a field that had no base). */
static ns_store_rc wire_value_check(const Napsync__V1__Value *v, char *why, size_t whylen)
{
    if (v == NULL || v->kind_case == NAPSYNC__V1__VALUE__KIND__NOT_SET)
        return NS_STORE_OK;
    ns_field_type t = {.kind = kind_of_case(v->kind_case), .nullable = true};
    ns_value tmp;
    ns_value_status st = ns_value_from_pb(v, &t, &tmp, why, whylen);
    if (st == NS_VALUE_OK)
        ns_value_free(&tmp);
    if (st == NS_VALUE_NOMEM)
        return NS_STORE_NOMEM;
    return st == NS_VALUE_OK ? NS_STORE_OK : NS_STORE_INVALID;
}

/* ---- statements and transactions -------------------------------------------------- */

/* Statements are reset and unbound after every use, so that text and blobs
 * bound without a copy are never read after the call returns. */
static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static int bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
    if (n == 0)
        return sqlite3_bind_zeroblob(st, i, 0); /* empty, not NULL */
    return sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC);
}

/* Copies a text column; false if it does not fit (our own rows always
 * fit: a longer one is damage). NULL reads as "". */
static bool column_text(sqlite3_stmt *st, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (t == NULL) {
        out[0] = '\0';
        return sqlite3_column_type(st, i) == SQLITE_NULL;
    }
    if (n >= size)
        return false;
    memcpy(out, t, n);
    out[n] = '\0';
    return true;
}

static ns_store_rc exec(ns_store *s, const char *sql, ns_error *err, const char *doing)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? NS_STORE_OK : fail_sql(s, rc, err, doing);
}

static void rollback(ns_store *s)
{
    /* SQLite may have rolled back already (SQLITE_FULL, IOERR, NOMEM). */
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* A write transaction takes the write lock at once, so that its first
 * statement cannot fail for want of it. */
static ns_store_rc begin_write(ns_store *s, ns_error *err, const char *doing)
{
    return exec(s, "BEGIN IMMEDIATE", err, doing);
}

/* A read transaction: one consistent snapshot for a whole listing. */
static ns_store_rc begin_read(ns_store *s, ns_error *err, const char *doing)
{
    return exec(s, "BEGIN", err, doing);
}

static ns_store_rc commit(ns_store *s, ns_error *err, const char *doing)
{
    ns_store_rc rc = exec(s, "COMMIT", err, doing);
    if (rc != NS_STORE_OK)
        rollback(s);
    return rc;
}

/* Ends a transaction after a failure, or a read transaction. */
static ns_store_rc finish(ns_store *s, ns_store_rc rc)
{
    rollback(s);
    return rc;
}

static ns_store_rc enter(ns_store *s, ns_error *err)
{
    if (s == NULL)
        return fail(err, NS_STORE_INVALID, "no store");
    if (s->busy)
        return fail(err, NS_STORE_STATE, "the store was called from one of its own callbacks");
    s->busy = true;
    return NS_STORE_OK;
}

static ns_store_rc leave(ns_store *s, ns_store_rc rc)
{
    s->busy = false;
    return rc;
}

/* ---- meta ---------------------------------------------------------------------------- */

static ns_store_rc meta_read(ns_store *s, const char *key, char *out, size_t size, ns_error *err)
{
    sqlite3_stmt *st = s->q[Q_META_GET];
    out[0] = '\0';
    int rc = bind_text(st, 1, key);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        bool ok = column_text(st, 0, out, size);
        done(st);
        if (!ok)
            return fail(err, NS_STORE_CORRUPT, "the store %s is damaged: its %s is unreadable",
                        s->path, key);
        return NS_STORE_OK;
    }
    done(st);
    return rc == SQLITE_DONE ? NS_STORE_OK : fail_sql(s, rc, err, "reading");
}

static ns_store_rc meta_write(ns_store *s, const char *key, const char *value, ns_error *err)
{
    sqlite3_stmt *st = s->q[Q_META_SET];
    int rc = bind_text(st, 1, key);
    if (rc == SQLITE_OK)
        rc = bind_text(st, 2, value);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    done(st);
    return rc == SQLITE_DONE ? NS_STORE_OK : fail_sql(s, rc, err, "saving");
}

static const char *meta_key_name(ns_store_meta key)
{
    switch (key) {
    case NS_STORE_META_SERVER:
        return "server";
    case NS_STORE_META_DEVICE_ID:
        return "device_id";
    case NS_STORE_META_FIRST_FLIGHT:
        return "first_flight";
    }
    return NULL;
}

ns_store_rc ns_store_meta_get(ns_store *s, ns_store_meta key, char out[NS_STORE_META_SIZE],
                              ns_error *err)
{
    const char *name = meta_key_name(key);
    if (name == NULL || out == NULL)
        return fail(err, NS_STORE_INVALID, "no such store setting");
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    return leave(s, meta_read(s, name, out, NS_STORE_META_SIZE, err));
}

ns_store_rc ns_store_meta_set(ns_store *s, ns_store_meta key, const char *value, ns_error *err)
{
    const char *name = meta_key_name(key);
    if (name == NULL)
        return fail(err, NS_STORE_INVALID, "no such store setting");
    if (value == NULL || !ns_text_ok(value, NS_STORE_META_SIZE))
        return fail(err, NS_STORE_INVALID, "the store's %s must be text of at most %d bytes", name,
                    NS_STORE_META_SIZE - 1);
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    /* One statement commits on its own (autocommit), durably. */
    return leave(s, meta_write(s, name, value, err));
}

/* The one meta value that is a blob (TEXT affinity keeps blobs as they are);
 * only these two functions read or write it. */
#define META_TLS_SESSION "tls_session"

ns_store_rc ns_store_tls_session_get(ns_store *s, uint8_t *out, size_t cap, size_t *len,
                                     ns_error *err)
{
    if (out == NULL || len == NULL)
        return fail(err, NS_STORE_INVALID, "no buffer for the TLS session");
    *len = 0;
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    sqlite3_stmt *st = s->q[Q_META_GET];
    int sr = bind_text(st, 1, META_TLS_SESSION);
    if (sr == SQLITE_OK)
        sr = sqlite3_step(st);
    if (sr == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(st, 0);
        int n = sqlite3_column_bytes(st, 0);
        bool ok = sqlite3_column_type(st, 0) == SQLITE_BLOB && p != NULL && n > 0 &&
                  (size_t)n <= cap && (size_t)n <= NS_STORE_TLS_SESSION_MAX;
        if (ok) {
            memcpy(out, p, (size_t)n);
            *len = (size_t)n;
        }
        done(st);
        if (!ok)
            return leave(s,
                         fail(err, NS_STORE_CORRUPT,
                              "the store %s is damaged: its TLS session is unreadable", s->path));
        return leave(s, NS_STORE_OK);
    }
    done(st);
    return leave(s, sr == SQLITE_DONE ? NS_STORE_OK : fail_sql(s, sr, err, "reading"));
}

ns_store_rc ns_store_tls_session_set(ns_store *s, const uint8_t *session, size_t len, ns_error *err)
{
    if (len > NS_STORE_TLS_SESSION_MAX || (len > 0 && session == NULL))
        return fail(err, NS_STORE_INVALID, "a TLS session must be at most %d bytes",
                    NS_STORE_TLS_SESSION_MAX);
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    /* One statement commits on its own (autocommit), durably. */
    sqlite3_stmt *st = s->q[len ? Q_META_SET : Q_META_DEL];
    int sr = bind_text(st, 1, META_TLS_SESSION);
    if (sr == SQLITE_OK && len)
        sr = bind_blob(st, 2, session, len);
    if (sr == SQLITE_OK)
        sr = sqlite3_step(st);
    done(st);
    return leave(s, sr == SQLITE_DONE ? NS_STORE_OK : fail_sql(s, sr, err, "saving"));
}

ns_store_rc ns_store_cursor(ns_store *s, char out[NS_STORE_CURSOR_SIZE], ns_error *err)
{
    if (out == NULL)
        return fail(err, NS_STORE_INVALID, "no buffer for the cursor");
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    return leave(s, meta_read(s, "cursor", out, NS_STORE_CURSOR_SIZE, err));
}

ns_store_rc ns_store_set_last_sync(ns_store *s, int64_t unix_ms, ns_error *err)
{
    if (unix_ms < 0)
        return fail(err, NS_STORE_INVALID, "a sync time before 1970");
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, unix_ms);
    return leave(s, meta_write(s, "last_sync_at", buf, err));
}

/* ---- open and close ----------------------------------------------------------------------- */

static ns_store_rc pragma_int(ns_store *s, const char *sql, int64_t *out, ns_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? NS_STORE_OK : fail_sql(s, rc, err, "opening");
}

/* Refuses a file that is not ours or is newer than this build. Reads only:
 * a refused file is left exactly as it was. */
static ns_store_rc check_format(ns_store *s, int64_t *version, ns_error *err)
{
    int64_t app = 0, tables = 0;
    ns_store_rc rc = pragma_int(s, "PRAGMA application_id", &app, err);
    if (rc == NS_STORE_OK)
        rc = pragma_int(s, "PRAGMA user_version", version, err);
    if (rc == NS_STORE_OK)
        rc = pragma_int(s, "SELECT count(*) FROM sqlite_schema", &tables, err);
    if (rc != NS_STORE_OK)
        return rc;
    bool fresh = app == 0 && *version == 0 && tables == 0;
    if (!fresh && app != STORE_APPLICATION_ID)
        return fail(err, NS_STORE_CORRUPT,
                    "%s is not a napsync store (another program's database): left untouched",
                    s->path);
    if (*version > ns_store_schema_version())
        return fail(err, NS_STORE_NEWER,
                    "this store was written by a newer napsync (store format %" PRId64
                    "; this napsync knows formats up to %d): %s was left untouched",
                    *version, ns_store_schema_version(), s->path);
    return NS_STORE_OK;
}

static ns_store_rc configure(ns_store *s, ns_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    bool wal = false;
    if (rc == SQLITE_ROW) {
        const unsigned char *mode = sqlite3_column_text(st, 0);
        wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return fail_sql(s, rc, err, "opening");
    if (!wal)
        return fail(err, NS_STORE_IO,
                    "the store %s cannot use a write-ahead log on this file system", s->path);
    return exec(s,
                "PRAGMA synchronous = FULL;"
                "PRAGMA foreign_keys = ON;"
                "PRAGMA trusted_schema = OFF;",
                err, "opening");
}

static ns_store_rc migrate(ns_store *s, int64_t from, ns_error *err)
{
    for (int i = 0; i < NMIGRATIONS; i++) {
        if (migrations[i].version <= from)
            continue;
        char doing[64];
        snprintf(doing, sizeof(doing), "creating store format %d", migrations[i].version);
        ns_store_rc rc = begin_write(s, err, doing);
        if (rc != NS_STORE_OK)
            return rc;
        char bump[48];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", migrations[i].version);
        rc = exec(s, migrations[i].sql, err, doing);
        if (rc == NS_STORE_OK)
            rc = exec(s, bump, err, doing);
        if (rc == NS_STORE_OK)
            rc = commit(s, err, doing);
        if (rc != NS_STORE_OK)
            return finish(s, rc);
    }
    return NS_STORE_OK;
}

static ns_store_rc prepare_all(ns_store *s, ns_error *err)
{
    for (int i = 0; i < Q_COUNT; i++) {
        int rc =
            sqlite3_prepare_v3(s->db, query_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL);
        if (rc != SQLITE_OK)
            return fail_sql(s, rc, err, "opening");
    }
    return NS_STORE_OK;
}

static ns_store_rc take_lock(ns_store *s, ns_error *err)
{
    size_t n = strlen(s->path);
    char *lock_path = malloc(n + sizeof(".lock"));
    if (lock_path == NULL)
        return fail(err, NS_STORE_NOMEM, "out of memory");
    memcpy(lock_path, s->path, n);
    memcpy(lock_path + n, ".lock", sizeof(".lock"));
    ns_store_rc rc = NS_STORE_OK;
    s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lock_fd < 0) {
        rc = fail(err, NS_STORE_IO, "cannot create the store's lock file %s: %s", lock_path,
                  strerror(errno));
    } else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        /* flock, not fcntl: its lock belongs to the open file, so a second
         * open in the same process is refused too, and closing some other
         * descriptor of the file cannot drop it. */
        if (errno == EWOULDBLOCK)
            rc = fail(err, NS_STORE_LOCKED,
                      "the store %s is in use by another napsync (it holds %s): wait for it to "
                      "finish",
                      s->path, lock_path);
        else
            rc = fail(err, NS_STORE_IO, "cannot lock %s: %s", lock_path, strerror(errno));
    }
    free(lock_path);
    return rc;
}

void ns_store_close(ns_store *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->q[i]);
    /* Closed before the lock is released: the last checkpoint is ours. */
    sqlite3_close_v2(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->path);
    free(s);
}

ns_store_rc ns_store_open(const char *path, ns_store **out, ns_error *err)
{
    if (path == NULL || path[0] == '\0' || out == NULL)
        return fail(err, NS_STORE_INVALID, "no path for the store");
    size_t n = strlen(path);
    if (n > STORE_PATH_MAX)
        return fail(err, NS_STORE_INVALID, "the store's path is longer than %d bytes",
                    STORE_PATH_MAX);
    ns_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return fail(err, NS_STORE_NOMEM, "out of memory");
    s->lock_fd = -1;
    s->path = malloc(n + 1);
    if (s->path == NULL) {
        free(s);
        return fail(err, NS_STORE_NOMEM, "out of memory");
    }
    memcpy(s->path, path, n + 1);

    ns_store_rc rc = take_lock(s, err);
    if (rc != NS_STORE_OK)
        goto fail;
    /* Created here so that it (and SQLite's -wal and -shm files, which
     * take its mode) is readable by this user only. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc =
            fail(err, NS_STORE_IO, "cannot open or create the store %s: %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    int src = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXRESCODE, NULL);
    if (src != SQLITE_OK) {
        rc = fail_sql(s, src, err, "opening");
        goto fail;
    }
    /* Before the first read: a reader such as the sqlite3 shell may hold
     * a lock for a moment. */
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    int64_t version = 0;
    rc = check_format(s, &version, err);
    if (rc == NS_STORE_OK)
        rc = configure(s, err);
    if (rc == NS_STORE_OK)
        rc = migrate(s, version, err);
    if (rc == NS_STORE_OK)
        rc = prepare_all(s, err);
    if (rc != NS_STORE_OK)
        goto fail;
    *out = s;
    return NS_STORE_OK;
fail:
    ns_store_close(s);
    return rc;
}

/* ---- the local view of records ------------------------------------------------------ */

typedef struct {
    bool has_row;
    bool row_deleted;
    uint64_t row_version;
    uint32_t pending;
    bool exists; /* in the local view, not deleted */
} record_state;

/* What enqueue needs to know of a record, without decoding its fields. */
static ns_store_rc load_state(ns_store *s, const char *type, const char *id, record_state *rs,
                              ns_error *err)
{
    memset(rs, 0, sizeof(*rs));
    sqlite3_stmt *st = s->q[Q_RECORD_STATE];
    int src = bind_text(st, 1, type);
    if (src == SQLITE_OK)
        src = bind_text(st, 2, id);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        rs->has_row = true;
        rs->row_version = (uint64_t)sqlite3_column_int64(st, 0);
        rs->row_deleted = sqlite3_column_int(st, 1) != 0;
        src = SQLITE_DONE;
    }
    done(st);
    if (src != SQLITE_DONE)
        return fail_sql(s, src, err, "reading");
    rs->exists = rs->has_row && !rs->row_deleted;

    st = s->q[Q_OUTBOX_OPS];
    src = bind_text(st, 1, type);
    if (src == SQLITE_OK)
        src = bind_text(st, 2, id);
    while (src == SQLITE_OK || src == SQLITE_ROW) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW)
            break;
        ns_store_op op = op_from_name(sqlite3_column_text(st, 0));
        rs->pending++;
        if (op == NS_STORE_OP_CREATE)
            rs->exists = true;
        else if (op == NS_STORE_OP_DELETE)
            rs->exists = false;
    }
    done(st);
    return src == SQLITE_DONE ? NS_STORE_OK : fail_sql(s, src, err, "reading the outbox");
}

static ns_store_rc overlay(ns_fieldset *dst, const ns_fieldset *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (ns_fieldset_set(dst, src->names[i], &src->values[i]) != 0)
            return NS_STORE_NOMEM;
    return NS_STORE_OK;
}

static ns_store_rc damaged(ns_store *s, ns_error *err, const char *what, const char *type,
                           const char *id, const char *why)
{
    return fail(err, NS_STORE_CORRUPT, "the store %s is damaged: %s of %s %s cannot be read (%s)",
                s->path, what, type, id, why);
}

/* The local view of one record; *found false (and r empty) when nothing
 * knows it. type and id are canonical. */
static ns_store_rc load_view(ns_store *s, const char *type, const char *id, ns_store_record *r,
                             bool *found, ns_error *err)
{
    memset(r, 0, sizeof(*r));
    ns_fieldset_init(&r->fields);
    snprintf(r->entity_type, sizeof(r->entity_type), "%s", type);
    snprintf(r->id, sizeof(r->id), "%s", id);
    *found = false;
    char why[256] = "";
    ns_store_rc rc = NS_STORE_OK;

    sqlite3_stmt *st = s->q[Q_RECORD_GET];
    int src = bind_text(st, 1, type);
    if (src == SQLITE_OK)
        src = bind_text(st, 2, id);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *found = true;
        r->version = (uint64_t)sqlite3_column_int64(st, 0);
        r->deleted = sqlite3_column_int(st, 1) != 0;
        if (!column_text(st, 2, r->tenant_id, sizeof(r->tenant_id)) ||
            !column_text(st, 4, r->changed_by, sizeof(r->changed_by)) ||
            !column_text(st, 5, r->changed_at, sizeof(r->changed_at))) {
            rc = damaged(s, err, "the row", type, id, "a column is too long");
        } else {
            rc = fields_from_blob(sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3),
                                  &r->fields, why, sizeof(why));
            if (rc == NS_STORE_CORRUPT)
                rc = damaged(s, err, "the fields", type, id, why);
            else if (rc != NS_STORE_OK)
                rc = fail(err, rc, "out of memory");
        }
        src = SQLITE_DONE;
    }
    done(st);
    if (rc == NS_STORE_OK && src != SQLITE_DONE)
        rc = fail_sql(s, src, err, "reading");
    if (rc != NS_STORE_OK)
        goto fail;

    st = s->q[Q_OUTBOX_OF_RECORD];
    src = bind_text(st, 1, type);
    if (src == SQLITE_OK)
        src = bind_text(st, 2, id);
    while (rc == NS_STORE_OK && (src == SQLITE_OK || src == SQLITE_ROW)) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW)
            break;
        const unsigned char *state = sqlite3_column_text(st, 2);
        if (state != NULL && strcmp((const char *)state, "rejected") == 0) {
            r->rejected++;
            continue;
        }
        ns_store_op op = op_from_name(sqlite3_column_text(st, 0));
        ns_fieldset change;
        rc = fields_from_blob(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1),
                              &change, why, sizeof(why));
        if (rc == NS_STORE_OK && op == 0) {
            snprintf(why, sizeof(why), "no such operation");
            rc = NS_STORE_CORRUPT;
        }
        if (rc == NS_STORE_OK)
            rc = overlay(&r->fields, &change);
        ns_fieldset_free(&change);
        if (rc == NS_STORE_CORRUPT)
            rc = damaged(s, err, "a pending change", type, id, why);
        else if (rc != NS_STORE_OK)
            rc = fail(err, rc, "out of memory");
        if (rc != NS_STORE_OK)
            break;
        *found = true;
        r->has_pending = true;
        if (op == NS_STORE_OP_CREATE)
            r->deleted = false;
        else if (op == NS_STORE_OP_DELETE)
            r->deleted = true;
    }
    done(st);
    if (rc == NS_STORE_OK && src != SQLITE_DONE)
        rc = fail_sql(s, src, err, "reading the outbox");
    if (rc != NS_STORE_OK)
        goto fail;
    if (!*found)
        ns_store_record_free(r);
    return NS_STORE_OK;
fail:
    ns_store_record_free(r);
    *found = false;
    return rc;
}

void ns_store_record_free(ns_store_record *r)
{
    if (r != NULL)
        ns_fieldset_free(&r->fields);
}

static ns_store_rc check_type_id(const char *type, const char *id, char canon[NS_STORE_UUID_SIZE],
                                 ns_error *err)
{
    char q[QUOTE_MAX + 4];
    if (!plain_identifier(type))
        return fail(err, NS_STORE_INVALID, "\"%s\" is not an entity type",
                    quoted(type, q, sizeof(q)));
    if (want_uuid(id, canon, "record", err) != NS_STORE_OK)
        return NS_STORE_INVALID;
    return NS_STORE_OK;
}

ns_store_rc ns_store_get(ns_store *s, const char *entity_type, const char *id, ns_store_record *out,
                         ns_error *err)
{
    char rid[NS_STORE_UUID_SIZE];
    ns_store_rc rc = check_type_id(entity_type, id, rid, err);
    if (rc != NS_STORE_OK)
        return rc;
    if (out == NULL)
        return fail(err, NS_STORE_INVALID, "no record to fill");
    rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = begin_read(s, err, "reading");
    if (rc != NS_STORE_OK)
        return leave(s, rc);
    ns_store_record r;
    bool found = false;
    rc = finish(s, load_view(s, entity_type, rid, &r, &found, err));
    if (rc == NS_STORE_OK && !found)
        rc = fail(err, NS_STORE_NOT_FOUND, "there is no %s %s on this device", entity_type, rid);
    if (rc == NS_STORE_OK)
        *out = r;
    return leave(s, rc);
}

ns_store_rc ns_store_list(ns_store *s, const char *entity_type, bool include_deleted,
                          ns_store_record_fn fn, void *ud, ns_error *err)
{
    char q[QUOTE_MAX + 4];
    if (!plain_identifier(entity_type))
        return fail(err, NS_STORE_INVALID, "\"%s\" is not an entity type",
                    quoted(entity_type, q, sizeof(q)));
    if (fn == NULL)
        return fail(err, NS_STORE_INVALID, "no callback");
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = begin_read(s, err, "reading");
    if (rc != NS_STORE_OK)
        return leave(s, rc);
    sqlite3_stmt *st = s->q[Q_RECORD_KEYS];
    int src = bind_text(st, 1, entity_type);
    bool stop = false;
    while (rc == NS_STORE_OK && !stop && (src == SQLITE_OK || src == SQLITE_ROW)) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW)
            break;
        char id[NS_STORE_UUID_SIZE];
        if (!column_text(st, 0, id, sizeof(id))) {
            rc = fail(err, NS_STORE_CORRUPT, "the store %s is damaged: a record id is too long",
                      s->path);
            break;
        }
        ns_store_record r;
        bool found = false;
        rc = load_view(s, entity_type, id, &r, &found, err);
        if (rc != NS_STORE_OK || !found)
            continue;
        if (!r.deleted || include_deleted)
            stop = fn(&r, ud) != 0;
        ns_store_record_free(&r);
    }
    done(st);
    if (rc == NS_STORE_OK && !stop && src != SQLITE_DONE)
        rc = fail_sql(s, src, err, "reading");
    return leave(s, finish(s, rc));
}

/* ---- the outbox ---------------------------------------------------------------------- */

/* The canonical packed fields of a change, checked as the server would
 * check their form (not their types: the server knows those). */
static ns_store_rc change_blob(const ns_fieldset *fields, uint8_t **blob, size_t *len,
                               ns_error *err)
{
    *blob = NULL;
    *len = 0;
    if (fields == NULL || fields->n == 0)
        return NS_STORE_OK;
    if (!fieldset_well_formed(fields))
        return fail(err, NS_STORE_INVALID, "a field without a name or value");
    if (fields->n > NS_STORE_MAX_FIELDS)
        return fail(err, NS_STORE_INVALID, "%zu fields in one change (at most %d)", fields->n,
                    NS_STORE_MAX_FIELDS);
    Napsync__V1__FieldSet pb;
    if (ns_fieldset_to_pb(fields, &pb) != 0)
        return fail(err, NS_STORE_NOMEM, "out of memory");
    ns_fieldset canon;
    char why[256] = "";
    ns_store_rc rc = fields_from_wire(&pb, &canon, why, sizeof(why));
    ns_fieldset_pb_clear(&pb);
    if (rc == NS_STORE_INVALID)
        return fail(err, rc, "%s", why);
    if (rc != NS_STORE_OK)
        return fail(err, rc, "out of memory");
    rc = fields_to_blob(&canon, blob, len);
    ns_fieldset_free(&canon);
    if (rc != NS_STORE_OK)
        return fail(err, rc, "out of memory");
    if (*len > NS_STORE_MAX_MUTATION_BYTES) {
        free(*blob);
        *blob = NULL;
        return fail(err, NS_STORE_INVALID, "the change is too large (%zu bytes; at most %u)", *len,
                    NS_STORE_MAX_MUTATION_BYTES);
    }
    return NS_STORE_OK;
}

static ns_store_rc enqueue_tx(ns_store *s, ns_store_op op, const char *type,
                              const ns_store_enqueued *e, uint64_t *base, const uint8_t *blob,
                              size_t len, ns_error *err)
{
    static const char doing[] = "saving the change";
    ns_store_rc rc = begin_write(s, err, doing);
    if (rc != NS_STORE_OK)
        return rc;
    record_state rs;
    rc = load_state(s, type, e->record_id, &rs, err);
    if (rc != NS_STORE_OK)
        return finish(s, rc);
    if (op == NS_STORE_OP_CREATE) {
        if (rs.has_row || rs.pending > 0)
            return finish(s, fail(err, NS_STORE_EXISTS,
                                  "%s %s already exists on this device%s: update it instead", type,
                                  e->record_id, rs.exists ? "" : " (deleted)"));
        *base = 0;
    } else {
        if (!rs.exists)
            return finish(s, fail(err, NS_STORE_NOT_FOUND, "there is no %s %s on this device%s",
                                  type, e->record_id,
                                  rs.has_row || rs.pending > 0 ? " (it is deleted)" : ""));
        *base = rs.has_row ? rs.row_version : 0;
    }
    sqlite3_stmt *st = s->q[Q_OUTBOX_INSERT];
    int src = bind_text(st, 1, e->mutation_id);
    if (src == SQLITE_OK)
        src = bind_text(st, 2, type);
    if (src == SQLITE_OK)
        src = bind_text(st, 3, e->record_id);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int64(st, 4, (sqlite3_int64)*base);
    if (src == SQLITE_OK)
        src = bind_text(st, 5, op_name(op));
    if (src == SQLITE_OK)
        src = bind_blob(st, 6, blob, len);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int64(st, 7, now_ms());
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    done(st);
    if (src != SQLITE_DONE)
        return finish(s, fail_sql(s, src, err, doing));
    return commit(s, err, doing);
}

ns_store_rc ns_store_enqueue(ns_store *s, ns_store_op op, const char *entity_type,
                             const char *record_id, const ns_fieldset *fields,
                             ns_store_enqueued *out, ns_error *err)
{
    char q[QUOTE_MAX + 4];
    if (op_name(op) == NULL)
        return fail(err, NS_STORE_INVALID, "no such operation (%d)", (int)op);
    if (!plain_identifier(entity_type))
        return fail(err, NS_STORE_INVALID, "\"%s\" is not an entity type",
                    quoted(entity_type, q, sizeof(q)));
    size_t nfields = fields != NULL ? fields->n : 0;
    if (op == NS_STORE_OP_UPDATE && nfields == 0)
        return fail(err, NS_STORE_INVALID, "an update must change at least one field");
    if (op == NS_STORE_OP_DELETE && nfields != 0)
        return fail(err, NS_STORE_INVALID, "a delete takes no fields");

    ns_store_enqueued e;
    ns_store_rc rc;
    if (record_id == NULL && op == NS_STORE_OP_CREATE) {
        rc = ns_store_new_uuid(e.record_id, err);
        if (rc != NS_STORE_OK)
            return rc;
    } else if (want_uuid(record_id, e.record_id, "record", err) != NS_STORE_OK) {
        return NS_STORE_INVALID;
    }
    rc = ns_store_new_uuid(e.mutation_id, err);
    if (rc != NS_STORE_OK)
        return rc;

    uint8_t *blob = NULL;
    size_t len = 0;
    rc = change_blob(fields, &blob, &len, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = enter(s, err);
    if (rc == NS_STORE_OK)
        rc = leave(s, enqueue_tx(s, op, entity_type, &e, &e.base_version, blob, len, err));
    free(blob);
    if (rc == NS_STORE_OK && out != NULL)
        *out = e;
    return rc;
}

/* One mutation of a batch and the strings it points to: one allocation. */
typedef struct {
    Napsync__V1__Mutation m; /* first: the batch holds &item->m */
    char mutation_id[NS_STORE_UUID_SIZE];
    char entity_type[NS_STORE_TYPE_SIZE];
    char record_id[NS_STORE_UUID_SIZE];
} batch_item;

static void batch_item_free(Napsync__V1__Mutation *m)
{
    if (m == NULL)
        return;
    if (m->fields != NULL)
        napsync__v1__field_set__free_unpacked(m->fields, &unpack_alloc);
    free((batch_item *)(void *)m);
}

void ns_store_batch_free(ns_store_batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        batch_item_free(b->mutations[i]);
    free(b->mutations);
    b->mutations = NULL;
    b->n = 0;
    b->packed_bytes = 0;
}

static ns_store_rc batch_item_read(ns_store *s, sqlite3_stmt *st, Napsync__V1__Mutation **out,
                                   ns_error *err)
{
    *out = NULL;
    batch_item *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return fail(err, NS_STORE_NOMEM, "out of memory");
    napsync__v1__mutation__init(&it->m);
    ns_store_op op = op_from_name(sqlite3_column_text(st, 4));
    if (!column_text(st, 0, it->mutation_id, sizeof(it->mutation_id)) ||
        !column_text(st, 1, it->entity_type, sizeof(it->entity_type)) ||
        !column_text(st, 2, it->record_id, sizeof(it->record_id)) || op == 0) {
        free(it);
        return fail(err, NS_STORE_CORRUPT, "the store %s is damaged: an outbox row is unreadable",
                    s->path);
    }
    it->m.mutation_id = it->mutation_id;
    it->m.entity_type = it->entity_type;
    it->m.record_id = it->record_id;
    it->m.base_version = (uint64_t)sqlite3_column_int64(st, 3);
    it->m.op = (Napsync__V1__MutationOp)op;
    size_t len = (size_t)sqlite3_column_bytes(st, 5);
    if (len > 0) {
        unpack_oom = false;
        it->m.fields =
            napsync__v1__field_set__unpack(&unpack_alloc, len, sqlite3_column_blob(st, 5));
        if (it->m.fields == NULL && unpack_oom) {
            free(it);
            return fail(err, NS_STORE_NOMEM, "out of memory");
        }
        if (it->m.fields == NULL) {
            fail(err, NS_STORE_CORRUPT,
                 "the store %s is damaged: the fields of change %s cannot be read", s->path,
                 it->mutation_id);
            free(it);
            return NS_STORE_CORRUPT;
        }
    }
    *out = &it->m;
    return NS_STORE_OK;
}

ns_store_rc ns_store_outbox_batch(ns_store *s, size_t max_count, size_t max_bytes,
                                  ns_store_batch *out, ns_error *err)
{
    if (out == NULL)
        return fail(err, NS_STORE_INVALID, "no batch to fill");
    out->mutations = NULL;
    out->n = 0;
    out->packed_bytes = 0;
    if (max_count == 0)
        return fail(err, NS_STORE_INVALID, "a batch of no mutations");
    if (max_count > NS_STORE_MAX_BATCH)
        max_count = NS_STORE_MAX_BATCH;
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    out->mutations = calloc(max_count, sizeof(*out->mutations));
    if (out->mutations == NULL)
        return leave(s, fail(err, NS_STORE_NOMEM, "out of memory"));
    rc = begin_read(s, err, "reading the outbox");
    if (rc != NS_STORE_OK)
        return leave(s, rc);
    sqlite3_stmt *st = s->q[Q_OUTBOX_BATCH];
    int src = sqlite3_bind_int64(st, 1, (sqlite3_int64)max_count);
    while (rc == NS_STORE_OK && (src == SQLITE_OK || src == SQLITE_ROW)) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW)
            break;
        Napsync__V1__Mutation *m = NULL;
        rc = batch_item_read(s, st, &m, err);
        if (rc != NS_STORE_OK)
            break;
        size_t size = napsync__v1__mutation__get_packed_size(m);
        if (out->n > 0 && (size > max_bytes || out->packed_bytes > max_bytes - size)) {
            batch_item_free(m);
            src = SQLITE_DONE;
            break;
        }
        out->mutations[out->n++] = m;
        out->packed_bytes += size;
    }
    done(st);
    if (rc == NS_STORE_OK && src != SQLITE_DONE)
        rc = fail_sql(s, src, err, "reading the outbox");
    rc = finish(s, rc);
    if (rc != NS_STORE_OK)
        ns_store_batch_free(out);
    return leave(s, rc);
}

/* A reason from the server as stored: valid text, at most
 * NS_STORE_REASON_SIZE - 1 bytes, cut at a character boundary; anything
 * else becomes printable ASCII. */
static void clean_reason(const char *in, char out[NS_STORE_REASON_SIZE])
{
    size_t n = in != NULL ? strlen(in) : 0;
    if (n >= NS_STORE_REASON_SIZE) {
        n = NS_STORE_REASON_SIZE - 1;
        while (n > 0 && ((unsigned char)in[n] & 0xc0) == 0x80)
            n--;
    }
    if (n > 0)
        memcpy(out, in, n);
    out[n] = '\0';
    if (ns_text_ok(out, NS_STORE_REASON_SIZE))
        return;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x7f)
            out[i] = '?';
}

static ns_store_rc results_tx(ns_store *s, const Napsync__V1__MutationResult *const *results,
                              size_t n, size_t *unmatched, ns_error *err)
{
    static const char doing[] = "recording the server's answers";
    ns_store_rc rc = begin_write(s, err, doing);
    if (rc != NS_STORE_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const Napsync__V1__MutationResult *r = results[i];
        char id[NS_STORE_UUID_SIZE];
        ns_uuid_canon(r->mutation_id, id); /* checked before */
        sqlite3_stmt *st;
        int src;
        if (r->outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED) {
            char reason[NS_STORE_REASON_SIZE];
            clean_reason(r->reject_reason, reason);
            st = s->q[Q_OUTBOX_REJECT];
            src = bind_text(st, 1, id);
            if (src == SQLITE_OK)
                src = sqlite3_bind_int(st, 2, (int)r->reject_code);
            if (src == SQLITE_OK)
                src = bind_text(st, 3, reason);
            if (src == SQLITE_OK)
                src = sqlite3_step(st);
        } else {
            st = s->q[Q_OUTBOX_DELETE];
            src = bind_text(st, 1, id);
            if (src == SQLITE_OK)
                src = sqlite3_step(st);
        }
        done(st);
        if (src != SQLITE_DONE)
            return finish(s, fail_sql(s, src, err, doing));
        if (sqlite3_changes(s->db) == 0)
            (*unmatched)++;
    }
    return commit(s, err, doing);
}

ns_store_rc ns_store_record_results(ns_store *s, const Napsync__V1__MutationResult *const *results,
                                    size_t n, size_t *unmatched, ns_error *err)
{
    size_t none = 0;
    if (unmatched == NULL)
        unmatched = &none;
    *unmatched = 0;
    if (n > 0 && results == NULL)
        return fail(err, NS_STORE_INVALID, "no results");
    if (n > NS_STORE_MAX_BATCH)
        return fail_server(err, "%zu answers to one push (at most %d)", n, NS_STORE_MAX_BATCH);
    for (size_t i = 0; i < n; i++) {
        const Napsync__V1__MutationResult *r = results[i];
        char id[NS_STORE_UUID_SIZE], q[QUOTE_MAX + 4];
        if (r == NULL || !ns_uuid_canon(r->mutation_id, id))
            return fail_server(err, "answer %zu names no mutation (\"%s\")", i,
                               quoted(r != NULL ? r->mutation_id : NULL, q, sizeof(q)));
        switch (r->outcome) {
        case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED:
        case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED:
        case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT:
            break;
        case NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED:
            if ((int)r->reject_code <= 0)
                return fail_server(err, "mutation %s was rejected without a reason code", id);
            break;
        default:
            return fail_server(err, "mutation %s has no known outcome (%d)", id, (int)r->outcome);
        }
    }
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = results_tx(s, results, n, unmatched, err);
    if (rc != NS_STORE_OK)
        *unmatched = 0;
    return leave(s, rc);
}

static ns_store_rc discard_tx(ns_store *s, const char *id, ns_error *err)
{
    static const char doing[] = "discarding the change";
    ns_store_rc rc = begin_write(s, err, doing);
    if (rc != NS_STORE_OK)
        return rc;
    sqlite3_stmt *st = s->q[Q_OUTBOX_STATE_OF];
    int src = bind_text(st, 1, id);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    bool found = src == SQLITE_ROW;
    bool rejected = found && sqlite3_column_text(st, 0) != NULL &&
                    strcmp((const char *)sqlite3_column_text(st, 0), "rejected") == 0;
    done(st);
    if (!found && src != SQLITE_DONE)
        return finish(s, fail_sql(s, src, err, doing));
    if (!found)
        return finish(s, fail(err, NS_STORE_NOT_FOUND, "there is no change %s on this device", id));
    if (!rejected)
        return finish(s, fail(err, NS_STORE_STATE,
                              "change %s is still waiting to be sent (the server may have it "
                              "already): only a rejected change can be discarded",
                              id));
    st = s->q[Q_OUTBOX_DELETE];
    src = bind_text(st, 1, id);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    done(st);
    if (src != SQLITE_DONE)
        return finish(s, fail_sql(s, src, err, doing));
    return commit(s, err, doing);
}

ns_store_rc ns_store_discard(ns_store *s, const char *mutation_id, ns_error *err)
{
    char id[NS_STORE_UUID_SIZE];
    if (want_uuid(mutation_id, id, "change", err) != NS_STORE_OK)
        return NS_STORE_INVALID;
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    return leave(s, discard_tx(s, id, err));
}

static ns_store_rc outbox_entry_read(ns_store *s, sqlite3_stmt *st, ns_store_outbox_entry *e,
                                     ns_error *err)
{
    memset(e, 0, sizeof(*e));
    ns_fieldset_init(&e->fields);
    e->seq = sqlite3_column_int64(st, 0);
    e->base_version = (uint64_t)sqlite3_column_int64(st, 4);
    e->op = op_from_name(sqlite3_column_text(st, 5));
    e->created_at_ms = sqlite3_column_int64(st, 7);
    const unsigned char *state = sqlite3_column_text(st, 8);
    e->state = state != NULL && strcmp((const char *)state, "rejected") == 0 ? NS_STORE_REJECTED
                                                                             : NS_STORE_PENDING;
    e->reject_code = sqlite3_column_int(st, 9);
    if (!column_text(st, 1, e->mutation_id, sizeof(e->mutation_id)) ||
        !column_text(st, 2, e->entity_type, sizeof(e->entity_type)) ||
        !column_text(st, 3, e->record_id, sizeof(e->record_id)) ||
        !column_text(st, 10, e->reject_reason, sizeof(e->reject_reason)) || e->op == 0)
        return fail(err, NS_STORE_CORRUPT, "the store %s is damaged: an outbox row is unreadable",
                    s->path);
    char why[256] = "";
    ns_store_rc rc =
        fields_from_blob(sqlite3_column_blob(st, 6), (size_t)sqlite3_column_bytes(st, 6),
                         &e->fields, why, sizeof(why));
    if (rc == NS_STORE_CORRUPT)
        return damaged(s, err, "a pending change", e->entity_type, e->record_id, why);
    if (rc != NS_STORE_OK)
        return fail(err, rc, "out of memory");
    return NS_STORE_OK;
}

ns_store_rc ns_store_outbox_list(ns_store *s, ns_store_outbox_fn fn, void *ud, ns_error *err)
{
    if (fn == NULL)
        return fail(err, NS_STORE_INVALID, "no callback");
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = begin_read(s, err, "reading the outbox");
    if (rc != NS_STORE_OK)
        return leave(s, rc);
    sqlite3_stmt *st = s->q[Q_OUTBOX_ALL];
    int src = SQLITE_OK;
    bool stop = false;
    while (rc == NS_STORE_OK && !stop) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW)
            break;
        ns_store_outbox_entry e;
        rc = outbox_entry_read(s, st, &e, err);
        if (rc == NS_STORE_OK)
            stop = fn(&e, ud) != 0;
        ns_fieldset_free(&e.fields);
    }
    done(st);
    if (rc == NS_STORE_OK && !stop && src != SQLITE_DONE)
        rc = fail_sql(s, src, err, "reading the outbox");
    return leave(s, finish(s, rc));
}

/* ---- pages from the feed ----------------------------------------------------------------- */

/* Runs a statement whose only parameter is one tenant id. */
static ns_store_rc tenant_stmt(ns_store *s, query_id q, const char *tenant, int synced,
                               ns_error *err, const char *doing)
{
    sqlite3_stmt *st = s->q[q];
    int src = bind_text(st, 1, tenant);
    if (src == SQLITE_OK && q == Q_TENANT_ADD)
        src = sqlite3_bind_int(st, 2, synced);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    done(st);
    return src == SQLITE_DONE ? NS_STORE_OK : fail_sql(s, src, err, doing);
}

/* Removes a tenant's records, conflicts and membership of the synced set,
 * inside the caller's transaction. */
static ns_store_rc purge_one(ns_store *s, const char *tenant, ns_error *err)
{
    static const char doing[] = "removing records";
    const query_id qs[] = {Q_RECORDS_PURGE, Q_CONFLICTS_PURGE, Q_TENANT_DEL};
    ns_store_rc rc = NS_STORE_OK;
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]) && rc == NS_STORE_OK; i++)
        rc = tenant_stmt(s, qs[i], tenant, 0, err, doing);
    return rc;
}

static int tenant_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The page's tenant set, checked and canonical, sorted; *out owned by the
 * caller (free), NULL when the set is empty. */
static ns_store_rc page_tenants(const Napsync__V1__ChangePage *page,
                                char (**out)[NS_STORE_UUID_SIZE], ns_error *err)
{
    *out = NULL;
    if (page->n_tenant_ids == 0)
        return NS_STORE_OK;
    if (page->n_tenant_ids > NS_STORE_MAX_PAGE_TENANTS || page->tenant_ids == NULL)
        return fail_server(err, "a page with %zu tenants (at most %d)", page->n_tenant_ids,
                           NS_STORE_MAX_PAGE_TENANTS);
    char(*t)[NS_STORE_UUID_SIZE] = calloc(page->n_tenant_ids, sizeof(*t));
    if (t == NULL)
        return fail(err, NS_STORE_NOMEM, "out of memory");
    for (size_t i = 0; i < page->n_tenant_ids; i++) {
        char q[QUOTE_MAX + 4];
        if (!ns_uuid_canon(page->tenant_ids[i], t[i])) {
            ns_store_rc rc = fail_server(err, "tenant %zu of the page is not a UUID (\"%s\")", i,
                                         quoted(page->tenant_ids[i], q, sizeof(q)));
            free(t);
            return rc;
        }
    }
    qsort(t, page->n_tenant_ids, sizeof(*t), tenant_cmp);
    *out = t;
    return NS_STORE_OK;
}

/* Brings the synced tenant set in line with the page's: tenants that left
 * it are purged, new ones added, as synced when the page was pulled from
 * the empty cursor (that pull brings all of their records) and as due for
 * a backfill otherwise. *npurged and *nnew count them. */
static ns_store_rc tenants_reconcile(ns_store *s, const Napsync__V1__ChangePage *page,
                                     char (*set)[NS_STORE_UUID_SIZE], size_t *npurged, size_t *nnew,
                                     ns_error *err)
{
    static const char doing[] = "updating the synced tenants";
    char cursor[NS_STORE_CURSOR_SIZE];
    ns_store_rc rc = meta_read(s, "cursor", cursor, sizeof(cursor), err);
    if (rc != NS_STORE_OK)
        return rc;
    size_t n = page->n_tenant_ids;
    /* The stored set first (a listing cannot run while rows are deleted),
     * then the purges. */
    size_t have_n = 0, have_cap = 0;
    char(*have)[NS_STORE_UUID_SIZE] = NULL;
    sqlite3_stmt *st = s->q[Q_TENANTS_ALL];
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (have_n == have_cap) {
            size_t cap = have_cap ? have_cap * 2 : 16;
            void *p = realloc(have, cap * sizeof(*have));
            if (p == NULL) {
                done(st);
                free(have);
                return fail(err, NS_STORE_NOMEM, "out of memory");
            }
            have = p;
            have_cap = cap;
        }
        if (!column_text(st, 0, have[have_n], NS_STORE_UUID_SIZE)) {
            done(st);
            free(have);
            return fail(err, NS_STORE_CORRUPT, "the store %s is damaged: a tenant is unreadable",
                        s->path);
        }
        have_n++;
    }
    done(st);
    if (src != SQLITE_DONE) {
        free(have);
        return fail_sql(s, src, err, doing);
    }
    for (size_t i = 0; i < have_n && rc == NS_STORE_OK; i++) {
        if (n > 0 && bsearch(have[i], set, n, sizeof(*set), tenant_cmp) != NULL)
            continue;
        rc = purge_one(s, have[i], err);
        (*npurged)++;
    }
    free(have);
    for (size_t i = 0; i < n && rc == NS_STORE_OK; i++) {
        rc = tenant_stmt(s, Q_TENANT_ADD, set[i], cursor[0] == '\0' ? 1 : 0, err, doing);
        if (rc == NS_STORE_OK && cursor[0] != '\0')
            *nnew += (size_t)sqlite3_changes(s->db);
    }
    return rc;
}

/* Checks one record from the server and writes it unless the replica has
 * the same or a newer version. */
static ns_store_rc put_record(ns_store *s, const Napsync__V1__Record *r, size_t i, size_t *napplied,
                              ns_error *err)
{
    char id[NS_STORE_UUID_SIZE], tenant[NS_STORE_UUID_SIZE], q[QUOTE_MAX + 4];
    if (r == NULL)
        return fail_server(err, "record %zu of the page is missing", i);
    if (!plain_identifier(r->entity_type))
        return fail_server(err, "record %zu of the page has no valid entity type (\"%s\")", i,
                           quoted(r->entity_type, q, sizeof(q)));
    if (!ns_uuid_canon(r->id, id))
        return fail_server(err, "record %zu of the page has no valid id (\"%s\")", i,
                           quoted(r->id, q, sizeof(q)));
    if (r->version == 0 || r->version > INT64_MAX)
        return fail_server(err, "%s %s has version %" PRIu64, r->entity_type, id, r->version);
    if (!ns_uuid_canon(r->tenant_id, tenant))
        return fail_server(err, "%s %s has no valid tenant (\"%s\")", r->entity_type, id,
                           quoted(r->tenant_id, q, sizeof(q)));
    if (r->changed_by == NULL || !ns_text_ok(r->changed_by, NS_NAME_SIZE))
        return fail_server(err, "%s %s has no valid author", r->entity_type, id);
    if (!time_ok(r->changed_at))
        return fail_server(err, "%s %s has no valid change time", r->entity_type, id);
    ns_fieldset fs;
    char why[256] = "";
    ns_store_rc rc = fields_from_wire(r->fields, &fs, why, sizeof(why));
    if (rc == NS_STORE_INVALID)
        return fail_server(err, "%s %s cannot be stored: %s", r->entity_type, id, why);
    if (rc != NS_STORE_OK)
        return fail(err, rc, "out of memory");
    uint8_t *blob = NULL;
    size_t len = 0;
    rc = fields_to_blob(&fs, &blob, &len);
    ns_fieldset_free(&fs);
    if (rc != NS_STORE_OK)
        return fail(err, rc, "out of memory");
    sqlite3_stmt *st = s->q[Q_RECORD_UPSERT];
    int src = bind_text(st, 1, r->entity_type);
    if (src == SQLITE_OK)
        src = bind_text(st, 2, id);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int64(st, 3, (sqlite3_int64)r->version);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int(st, 4, r->deleted ? 1 : 0);
    if (src == SQLITE_OK)
        src = bind_text(st, 5, tenant);
    if (src == SQLITE_OK)
        src = bind_blob(st, 6, blob, len);
    if (src == SQLITE_OK)
        src = bind_text(st, 7, r->changed_by);
    if (src == SQLITE_OK)
        src = bind_text(st, 8, r->changed_at);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    done(st);
    free(blob);
    if (src != SQLITE_DONE)
        return fail_sql(s, src, err, "applying changes from the server");
    *napplied += (size_t)sqlite3_changes(s->db);
    return NS_STORE_OK;
}

static ns_store_rc apply_tx(ns_store *s, const Napsync__V1__ChangePage *page,
                            char (*set)[NS_STORE_UUID_SIZE], ns_store_page_outcome *out,
                            ns_error *err)
{
    static const char doing[] = "applying changes from the server";
    ns_store_rc rc = begin_write(s, err, doing);
    if (rc != NS_STORE_OK)
        return rc;
    /* Purges first: a record of the page is never of a purged tenant. */
    if (!page->tenant_ids_truncated)
        rc = tenants_reconcile(s, page, set, &out->purged, &out->new_tenants, err);
    for (size_t i = 0; i < page->n_records && rc == NS_STORE_OK; i++)
        rc = put_record(s, page->records[i], i, &out->applied, err);
    if (rc == NS_STORE_OK)
        rc = meta_write(s, "cursor", page->next_cursor, err);
    if (rc != NS_STORE_OK)
        return finish(s, rc);
    return commit(s, err, doing);
}

/* Checks what every page must be: records and cursor. */
static ns_store_rc page_check(const Napsync__V1__ChangePage *page, ns_error *err)
{
    if (page == NULL)
        return fail(err, NS_STORE_INVALID, "no page");
    if (page->n_records > NS_STORE_MAX_PAGE_RECORDS)
        return fail_server(err, "a page of %zu records (at most %d)", page->n_records,
                           NS_STORE_MAX_PAGE_RECORDS);
    if (page->n_records > 0 && page->records == NULL)
        return fail_server(err, "a page without its records");
    char q[QUOTE_MAX + 4];
    if (!token_ok(page->next_cursor, NS_STORE_CURSOR_SIZE))
        return fail_server(err, "a page with no valid next cursor (\"%s\")",
                           quoted(page->next_cursor, q, sizeof(q)));
    return NS_STORE_OK;
}

ns_store_rc ns_store_apply_page_tenants(ns_store *s, const Napsync__V1__ChangePage *page,
                                        ns_store_page_outcome *out, ns_error *err)
{
    ns_store_page_outcome none;
    if (out == NULL)
        out = &none;
    memset(out, 0, sizeof(*out));
    ns_store_rc rc = page_check(page, err);
    if (rc != NS_STORE_OK)
        return rc;
    char(*set)[NS_STORE_UUID_SIZE] = NULL;
    rc = page_tenants(page, &set, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = enter(s, err);
    if (rc == NS_STORE_OK) {
        rc = apply_tx(s, page, set, out, err);
        if (rc != NS_STORE_OK)
            memset(out, 0, sizeof(*out));
        rc = leave(s, rc);
    }
    free(set);
    return rc;
}

static ns_store_rc backfill_tx(ns_store *s, const char *tenant, const Napsync__V1__ChangePage *page,
                               size_t *napplied, ns_error *err)
{
    static const char doing[] = "applying a backfill from the server";
    ns_store_rc rc = begin_write(s, err, doing);
    if (rc != NS_STORE_OK)
        return rc;
    for (size_t i = 0; i < page->n_records && rc == NS_STORE_OK; i++) {
        char t[NS_STORE_UUID_SIZE];
        const Napsync__V1__Record *r = page->records[i];
        if (r != NULL && (!ns_uuid_canon(r->tenant_id, t) || strcmp(t, tenant) != 0))
            rc = fail_server(err, "the backfill of tenant %s holds a record of another tenant",
                             tenant);
        else
            rc = put_record(s, r, i, napplied, err);
    }
    if (rc == NS_STORE_OK && !page->more)
        rc = tenant_stmt(s, Q_TENANT_SYNCED, tenant, 0, err, doing);
    if (rc != NS_STORE_OK)
        return finish(s, rc);
    return commit(s, err, doing);
}

ns_store_rc ns_store_apply_backfill(ns_store *s, const char *tenant_id,
                                    const Napsync__V1__ChangePage *page, size_t *napplied,
                                    ns_error *err)
{
    size_t none = 0;
    if (napplied == NULL)
        napplied = &none;
    *napplied = 0;
    char tenant[NS_STORE_UUID_SIZE];
    if (want_uuid(tenant_id, tenant, "tenant", err) != NS_STORE_OK)
        return NS_STORE_INVALID;
    ns_store_rc rc = page_check(page, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = backfill_tx(s, tenant, page, napplied, err);
    if (rc != NS_STORE_OK)
        *napplied = 0;
    return leave(s, rc);
}

ns_store_rc ns_store_tenants_pending(ns_store *s, char (*out)[NS_STORE_UUID_SIZE], size_t cap,
                                     size_t *n, ns_error *err)
{
    *n = 0;
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    sqlite3_stmt *st = s->q[Q_TENANTS_PENDING];
    int src = sqlite3_bind_int64(st, 1, (sqlite3_int64)cap);
    while (src == SQLITE_OK || src == SQLITE_ROW) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW)
            break;
        if (*n >= cap || !column_text(st, 0, out[*n], NS_STORE_UUID_SIZE)) {
            done(st);
            *n = 0;
            return leave(s, fail(err, NS_STORE_CORRUPT,
                                 "the store %s is damaged: a tenant is unreadable", s->path));
        }
        (*n)++;
    }
    done(st);
    if (src != SQLITE_DONE) {
        *n = 0;
        rc = fail_sql(s, src, err, "reading");
    }
    return leave(s, rc);
}

ns_store_rc ns_store_apply_page(ns_store *s, const Napsync__V1__ChangePage *page, size_t *napplied,
                                ns_error *err)
{
    ns_store_page_outcome o;
    ns_store_rc rc = ns_store_apply_page_tenants(s, page, &o, err);
    if (napplied != NULL)
        *napplied = o.applied;
    return rc;
}

static ns_store_rc purge_tx(ns_store *s, const char *tenant, ns_error *err)
{
    static const char doing[] = "removing records";
    ns_store_rc rc = begin_write(s, err, doing);
    if (rc != NS_STORE_OK)
        return rc;
    rc = purge_one(s, tenant, err);
    if (rc != NS_STORE_OK)
        return finish(s, rc);
    return commit(s, err, doing);
}

ns_store_rc ns_store_purge_tenant(ns_store *s, const char *tenant_id, ns_error *err)
{
    char tenant[NS_STORE_UUID_SIZE];
    if (want_uuid(tenant_id, tenant, "tenant", err) != NS_STORE_OK)
        return NS_STORE_INVALID;
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    return leave(s, purge_tx(s, tenant, err));
}

static ns_store_rc reset_tx(ns_store *s, ns_error *err)
{
    static const char doing[] = "forgetting the replica";
    ns_store_rc rc = begin_write(s, err, doing);
    if (rc != NS_STORE_OK)
        return rc;
    sqlite3_stmt *st = s->q[Q_RECORDS_RESET];
    int src = sqlite3_step(st);
    done(st);
    if (src == SQLITE_DONE) {
        /* The next page comes from the empty cursor: every tenant in it
         * is synced by that pull. */
        st = s->q[Q_TENANTS_RESET];
        src = sqlite3_step(st);
        done(st);
    }
    if (src == SQLITE_DONE) {
        st = s->q[Q_META_DEL];
        src = bind_text(st, 1, "cursor");
        if (src == SQLITE_OK)
            src = sqlite3_step(st);
        done(st);
    }
    if (src != SQLITE_DONE)
        return finish(s, fail_sql(s, src, err, doing));
    return commit(s, err, doing);
}

ns_store_rc ns_store_reset_replica(ns_store *s, ns_error *err)
{
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    return leave(s, reset_tx(s, err));
}

/* ---- conflicts ------------------------------------------------------------------------------ */

/* "organisation:<uuid>" or "plan:<uuid>", the longest a scope gets. */
#define SCOPE_KEY_ONE 50
#define SCOPE_KEY_MAX (NS_STORE_MAX_SCOPES * SCOPE_KEY_ONE)

static int scope_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The scope set as one key: its scopes sorted, without duplicates. */
static ns_store_rc scope_key(const Napsync__V1__Scope *const *scopes, size_t n, char *key,
                             ns_error *err)
{
    if (n == 0 || scopes == NULL)
        return fail(err, NS_STORE_INVALID, "no scopes");
    if (n > NS_STORE_MAX_SCOPES)
        return fail(err, NS_STORE_INVALID, "%zu scopes (at most %d)", n, NS_STORE_MAX_SCOPES);
    char(*one)[SCOPE_KEY_ONE] = calloc(n, sizeof(*one));
    if (one == NULL)
        return fail(err, NS_STORE_NOMEM, "out of memory");
    ns_store_rc rc = NS_STORE_OK;
    for (size_t i = 0; i < n && rc == NS_STORE_OK; i++) {
        const Napsync__V1__Scope *sc = scopes[i];
        char id[NS_STORE_UUID_SIZE];
        const char *kind = NULL, *raw = NULL;
        if (sc != NULL && sc->kind_case == NAPSYNC__V1__SCOPE__KIND_PLAN_ID) {
            kind = "plan";
            raw = sc->plan_id;
        } else if (sc != NULL && sc->kind_case == NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID) {
            kind = "organisation";
            raw = sc->organisation_id;
        } else if (sc != NULL && sc->kind_case == NAPSYNC__V1__SCOPE__KIND_DIRECTORY &&
                   sc->directory) {
            snprintf(one[i], SCOPE_KEY_ONE, "directory");
            continue;
        }
        if (kind == NULL || !ns_uuid_canon(raw, id))
            rc = fail(err, NS_STORE_INVALID,
                      "scope %zu is neither a plan, an organisation id nor the directory", i);
        else
            snprintf(one[i], SCOPE_KEY_ONE, "%s:%s", kind, id);
    }
    if (rc == NS_STORE_OK) {
        qsort(one, n, sizeof(*one), scope_cmp);
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && strcmp(one[i], one[i - 1]) == 0)
                continue;
            o += (size_t)snprintf(key + o, SCOPE_KEY_MAX - o, "%s%s", o > 0 ? "," : "", one[i]);
        }
    }
    free(one);
    return rc;
}

static ns_store_rc check_conflict(const Napsync__V1__Conflict *c, size_t i, ns_error *err)
{
    char id[NS_STORE_UUID_SIZE], other[NS_STORE_UUID_SIZE], why[256] = "", q[QUOTE_MAX + 4];
    if (c == NULL || !ns_uuid_canon(c->id, id))
        return fail_server(err, "conflict %zu has no valid id (\"%s\")", i,
                           quoted(c != NULL ? c->id : NULL, q, sizeof(q)));
    if (!plain_identifier(c->entity_type) || !ns_uuid_canon(c->record_id, other))
        return fail_server(err, "conflict %s names no valid record", id);
    if (c->field == NULL || (c->field[0] != '\0' && !plain_identifier(c->field)))
        return fail_server(err, "conflict %s names no valid field", id);
    if (c->tenant_id == NULL || (c->tenant_id[0] != '\0' && !ns_uuid_canon(c->tenant_id, other)))
        return fail_server(err, "conflict %s has no valid tenant", id);
    if (!ns_text_ok(c->kept_by, NS_NAME_SIZE) || !ns_text_ok(c->other_by, NS_NAME_SIZE) ||
        !ns_text_ok(c->kept_device, NS_NAME_SIZE) || !ns_text_ok(c->other_device, NS_NAME_SIZE))
        return fail_server(err, "conflict %s has an invalid author or device name", id);
    if (!time_ok(c->created_at))
        return fail_server(err, "conflict %s has no valid creation time", id);
    const Napsync__V1__Value *values[3] = {c->base_value, c->kept_value, c->other_value};
    ns_store_rc rc = NS_STORE_OK;
    for (size_t k = 0; k < 3 && rc == NS_STORE_OK; k++)
        rc = wire_value_check(values[k], why, sizeof(why));
    if (rc == NS_STORE_INVALID)
        return fail_server(err, "conflict %s has an invalid value: %s", id, why);
    if (rc != NS_STORE_OK)
        return fail(err, rc, "out of memory");
    ns_fieldset fs;
    rc = fields_from_wire(c->other_fields, &fs, why, sizeof(why));
    ns_fieldset_free(&fs);
    if (rc == NS_STORE_INVALID)
        return fail_server(err, "conflict %s has invalid fields: %s", id, why);
    if (rc != NS_STORE_OK)
        return fail(err, rc, "out of memory");
    return NS_STORE_OK;
}

static ns_store_rc put_conflict(ns_store *s, const char *key, const Napsync__V1__Conflict *c,
                                ns_error *err)
{
    char id[NS_STORE_UUID_SIZE], rid[NS_STORE_UUID_SIZE], tenant[NS_STORE_UUID_SIZE] = "";
    ns_uuid_canon(c->id, id); /* checked before */
    ns_uuid_canon(c->record_id, rid);
    if (c->tenant_id[0] != '\0')
        ns_uuid_canon(c->tenant_id, tenant);
    size_t len = napsync__v1__conflict__get_packed_size(c);
    uint8_t *blob = malloc(len > 0 ? len : 1);
    if (blob == NULL)
        return fail(err, NS_STORE_NOMEM, "out of memory");
    len = napsync__v1__conflict__pack(c, blob);
    sqlite3_stmt *st = s->q[Q_CONFLICT_PUT];
    int src = bind_text(st, 1, key);
    if (src == SQLITE_OK)
        src = bind_text(st, 2, id);
    if (src == SQLITE_OK)
        src = bind_text(st, 3, c->entity_type);
    if (src == SQLITE_OK)
        src = bind_text(st, 4, rid);
    if (src == SQLITE_OK)
        src = bind_text(st, 5, tenant);
    if (src == SQLITE_OK)
        src = bind_text(st, 6, c->created_at);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int(st, 7, c->resolved ? 1 : 0);
    if (src == SQLITE_OK)
        src = bind_blob(st, 8, blob, len);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    done(st);
    free(blob);
    return src == SQLITE_DONE ? NS_STORE_OK : fail_sql(s, src, err, "saving conflicts");
}

static ns_store_rc conflicts_tx(ns_store *s, const char *key,
                                const Napsync__V1__Conflict *const *conflicts, size_t n,
                                ns_error *err)
{
    static const char doing[] = "saving conflicts";
    ns_store_rc rc = begin_write(s, err, doing);
    if (rc != NS_STORE_OK)
        return rc;
    sqlite3_stmt *st = s->q[Q_CONFLICTS_DEL_SCOPE];
    int src = bind_text(st, 1, key);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    done(st);
    if (src != SQLITE_DONE)
        return finish(s, fail_sql(s, src, err, doing));
    for (size_t i = 0; i < n && rc == NS_STORE_OK; i++)
        rc = put_conflict(s, key, conflicts[i], err);
    if (rc != NS_STORE_OK)
        return finish(s, rc);
    return commit(s, err, doing);
}

ns_store_rc ns_store_replace_conflicts(ns_store *s, const Napsync__V1__Scope *const *scopes,
                                       size_t nscopes,
                                       const Napsync__V1__Conflict *const *conflicts, size_t n,
                                       ns_error *err)
{
    char key[SCOPE_KEY_MAX];
    ns_store_rc rc = scope_key(scopes, nscopes, key, err);
    if (rc != NS_STORE_OK)
        return rc;
    if (n > 0 && conflicts == NULL)
        return fail(err, NS_STORE_INVALID, "no conflicts");
    for (size_t i = 0; i < n; i++) {
        rc = check_conflict(conflicts[i], i, err);
        if (rc != NS_STORE_OK)
            return rc;
    }
    rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    return leave(s, conflicts_tx(s, key, conflicts, n, err));
}

static ns_store_rc conflict_unpack(ns_store *s, sqlite3_stmt *st, Napsync__V1__Conflict **out,
                                   ns_error *err)
{
    static const uint8_t empty[1];
    const void *blob = sqlite3_column_blob(st, 0);
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    unpack_oom = false;
    *out = napsync__v1__conflict__unpack(&unpack_alloc, len, blob != NULL ? blob : empty);
    if (*out == NULL && unpack_oom)
        return fail(err, NS_STORE_NOMEM, "out of memory");
    if (*out == NULL)
        return fail(err, NS_STORE_CORRUPT, "the store %s is damaged: a conflict cannot be read",
                    s->path);
    return NS_STORE_OK;
}

void ns_store_conflict_free(Napsync__V1__Conflict *c)
{
    if (c != NULL)
        napsync__v1__conflict__free_unpacked(c, &unpack_alloc);
}

ns_store_rc ns_store_list_conflicts(ns_store *s, bool include_resolved, ns_store_conflict_fn fn,
                                    void *ud, ns_error *err)
{
    if (fn == NULL)
        return fail(err, NS_STORE_INVALID, "no callback");
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = begin_read(s, err, "reading conflicts");
    if (rc != NS_STORE_OK)
        return leave(s, rc);
    sqlite3_stmt *st = s->q[Q_CONFLICT_LIST];
    int src = sqlite3_bind_int(st, 1, include_resolved ? 1 : 0);
    bool stop = false;
    while (rc == NS_STORE_OK && !stop && (src == SQLITE_OK || src == SQLITE_ROW)) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW)
            break;
        Napsync__V1__Conflict *c = NULL;
        rc = conflict_unpack(s, st, &c, err);
        if (rc != NS_STORE_OK)
            break;
        stop = fn(c, ud) != 0;
        ns_store_conflict_free(c);
    }
    done(st);
    if (rc == NS_STORE_OK && !stop && src != SQLITE_DONE)
        rc = fail_sql(s, src, err, "reading conflicts");
    return leave(s, finish(s, rc));
}

ns_store_rc ns_store_get_conflict(ns_store *s, const char *conflict_id, Napsync__V1__Conflict **out,
                                  ns_error *err)
{
    char id[NS_STORE_UUID_SIZE];
    if (out == NULL)
        return fail(err, NS_STORE_INVALID, "nowhere to put the conflict");
    *out = NULL;
    if (want_uuid(conflict_id, id, "conflict", err) != NS_STORE_OK)
        return NS_STORE_INVALID;
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    sqlite3_stmt *st = s->q[Q_CONFLICT_GET];
    int src = bind_text(st, 1, id);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        rc = conflict_unpack(s, st, out, err);
    else if (src == SQLITE_DONE)
        rc = fail(err, NS_STORE_NOT_FOUND, "there is no conflict %s on this device", id);
    else
        rc = fail_sql(s, src, err, "reading conflicts");
    done(st);
    return leave(s, rc);
}

/* ---- status ---------------------------------------------------------------------------------- */

static ns_store_rc count_row(ns_store *s, query_id q, uint64_t *a, uint64_t *b, ns_error *err)
{
    sqlite3_stmt *st = s->q[q];
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *a = (uint64_t)sqlite3_column_int64(st, 0);
        if (b != NULL)
            *b = (uint64_t)sqlite3_column_int64(st, 1);
        src = SQLITE_DONE;
    }
    done(st);
    return src == SQLITE_DONE ? NS_STORE_OK : fail_sql(s, src, err, "reading");
}

ns_store_rc ns_store_get_status(ns_store *s, ns_store_status *out, ns_error *err)
{
    if (out == NULL)
        return fail(err, NS_STORE_INVALID, "no status to fill");
    ns_store_rc rc = enter(s, err);
    if (rc != NS_STORE_OK)
        return rc;
    rc = begin_read(s, err, "reading");
    if (rc != NS_STORE_OK)
        return leave(s, rc);
    ns_store_status st;
    memset(&st, 0, sizeof(st));
    char last[24];
    rc = count_row(s, Q_COUNT_OUTBOX, &st.pending, &st.rejected, err);
    if (rc == NS_STORE_OK)
        rc = count_row(s, Q_COUNT_RECORDS, &st.records, NULL, err);
    if (rc == NS_STORE_OK)
        rc = count_row(s, Q_COUNT_CONFLICTS, &st.open_conflicts, NULL, err);
    if (rc == NS_STORE_OK)
        rc = meta_read(s, "cursor", st.cursor, sizeof(st.cursor), err);
    if (rc == NS_STORE_OK)
        rc = meta_read(s, "last_sync_at", last, sizeof(last), err);
    rc = finish(s, rc);
    if (rc == NS_STORE_OK) {
        st.last_sync_ms = strtoll(last, NULL, 10);
        *out = st;
    }
    return leave(s, rc);
}
