/* Hostile data (issue 5, item 5) through a real napsyncd, its PostgreSQL and
 * libnapsync's device stores: every text field of every entity type, read
 * from the schema when the test runs (sync_entity_types and the tables'
 * columns, as daemon/registry.c reads them: the directory's types of
 * sql/009 included, and a type added later is tried as soon as it exists),
 * gets
 *
 *  - SQL and JSON metacharacters, quotes, escapes, format directives,
 *    markup, bidi and other Unicode, line breaks and a 10,000-byte value,
 *    through ns_client_put and a sync: each is a typed refusal (kept in the
 *    outbox with its code and the field in its reason) or stored, and then
 *    it reads back byte for byte from PostgreSQL, from the writer's store
 *    and from another device's store after a pull;
 *  - invalid UTF-8, control characters, values above the limits (10,001
 *    bytes and 1 MiB) and NUL bytes, in raw Push frames (libnapsync refuses
 *    to send them): each is refused with INVALID_ARGUMENT naming the field
 *    (a NUL: the frame is MALFORMED, since a C string would cut the value)
 *    and nothing changes in the database.
 *
 * Batches of several mutations with one bad one, in APPLY and ATOMIC mode,
 * with a value refused before the database and one refused by it: APPLY
 * stores the others, ATOMIC nothing. Imports of hostile plan files (deep
 * nesting, huge files, NUL and invalid UTF-8) are refused with a message
 * and import nothing; report and export output names (paths with "..",
 * control characters, existing files, directories, symbolic links) write
 * only where asked and never replace a file without --force
 * (docs/reports.md, docs/import-export.md). The daemon must survive all of
 * it (the teardown checks it serves, and stops cleanly). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"
#include "value.h"

#define ERR(name)  NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name
#define BODY(name) NAPSYNC__V1__ENVELOPE__BODY_##name
#define OUTCOME(x) NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_##x

/* The daemon takes frames of up to 4 MiB here, so that a 1 MiB value
 * reaches the value checks instead of the frame limit (test_hostile covers
 * that one). */
#define MAX_FRAME "4194304"
#define MIB       (1024u * 1024u)

#define MAX_TYPES  32
#define MAX_FIELDS 160
#define VALUE_CAP  (NS_TEXT_DEFAULT_MAX + 64)

/* Writers: the coordinator (plan content), mogender's administrator (its
 * directory) and the regional organisation's (its memberships). Readers,
 * with stores of their own: another coordinator (drafts of reports are
 * its organisation's to read) and another administrator (the people and
 * devices of its organisation). */
enum { D_COORD, D_ADMIN, D_RADMIN, D_READ_COORD, D_READ_ADMIN, NDEV };
static const char *const dev_names[NDEV] = {"hd-coordinator", "hd-admin", "hd-region-admin",
                                            "hd-reader-coordinator", "hd-reader-admin"};

/* The reader of a writer's records. */
static int reader_of(int writer)
{
    return writer == D_COORD ? D_READ_COORD : D_READ_ADMIN;
}

/* A text field (text, varchar, varchar(n)) or set of text (text[]) of an
 * entity type, as the schema says. */
typedef struct {
    char type[40];
    char table[64];
    char name[64];
    bool set;
    int rec; /* index into fixture.recs */
    /* Outcome of the current round. */
    char mutation[40];
    bool put_refused; /* ns_client_put refused it */
    bool rejected;
    char code[32];
    char reason[512];
} tfield;

/* The record of a type whose fields the test changes. */
typedef struct {
    char type[40];
    char table[64];
    char id[40];
    int writer; /* D_COORD, D_ADMIN or D_RADMIN */
} trecord;

typedef struct {
    nst_env *e;
    PGconn *db; /* the test's own reads, as the cluster's superuser */
    nst_device dev[NDEV];
    char store[NDEV][NST_PATH];
    ns_client *c[NDEV];
    char org_mogender[40], org_police[40], org_regional[40];
    char principal_coord[40];
    char plan[40];
    unsigned seq;
    trecord recs[MAX_TYPES];
    size_t nrecs;
    tfield fields[MAX_FIELDS];
    size_t nfields;
    bool ready; /* the records exist (test_records ran) */
} fixture;
NST_FIXTURE_CHECK(fixture);

static void fresh_id(fixture *f, char out[40])
{
    f->seq++;
    snprintf(out, 40, "%08x-0000-4000-8000-%012x", 0x4d000000u + f->seq, f->seq);
}

/* ---- the database ----------------------------------------------------------------------- */

/* The first column of the first row ("" when none) of a query on the test
 * database, on one connection kept for the whole program (a connection per
 * query would cost more than the queries, in sanitizer builds above all). */
static void db_value(fixture *f, const char *sql, int n, const char *const *params, char *out,
                     size_t cap)
{
    if (f->db == NULL) {
        const char *keys[] = {"host", "port", "user", "dbname", NULL};
        const char *vals[] = {f->e->pg.host, f->e->pg.port, f->e->pg.user, f->e->dbname, NULL};
        f->db = PQconnectdbParams(keys, vals, 0);
        if (PQstatus(f->db) != CONNECTION_OK)
            nst_fail(f->e, "cannot connect to the test database: %s", PQerrorMessage(f->db));
    }
    PGresult *res = PQexecParams(f->db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(f->db));
        PQclear(res);
        nst_fail(f->e, "SQL failed: %s: %s", sql, msg);
    }
    const char *v = PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "";
    snprintf(out, cap, "%s", v);
    PQclear(res);
}

/* Names from the catalogue go into SQL: only plain ones. */
static bool plain(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* A field's value in PostgreSQL, as text (a set: its items joined by
 * commas, as the client's text form has them); *null when NULL. */
static void db_field(fixture *f, const tfield *tf, char *out, size_t cap, bool *null)
{
    char sql[300];
    if (tf->set)
        snprintf(sql, sizeof(sql),
                 "SELECT CASE WHEN %s IS NULL THEN 'N' ELSE 'V' || array_to_string(%s, ',') END "
                 "FROM %s WHERE id = $1::uuid",
                 tf->name, tf->name, tf->table);
    else
        snprintf(sql, sizeof(sql),
                 "SELECT CASE WHEN %s IS NULL THEN 'N' ELSE 'V' || %s END FROM %s WHERE id = "
                 "$1::uuid",
                 tf->name, tf->name, tf->table);
    const char *p[1] = {f->recs[tf->rec].id};
    char *buf = malloc(cap + 2);
    assert_non_null(buf);
    db_value(f, sql, 1, p, buf, cap + 2);
    if (buf[0] == '\0')
        nst_fail(f->e, "%s %s is not in the database", tf->type, p[0]);
    *null = buf[0] == 'N';
    snprintf(out, cap, "%s", buf + 1);
    free(buf);
}

/* Every record's "id:version" of the test's records, in one string: what a
 * refused push must leave as it was. */
static char *db_versions(fixture *f)
{
    size_t cap = 64 * MAX_TYPES;
    char *all = calloc(1, cap);
    assert_non_null(all);
    for (size_t i = 0; i < f->nrecs; i++) {
        char sql[200], v[32];
        snprintf(sql, sizeof(sql), "SELECT version FROM %s WHERE id = $1::uuid", f->recs[i].table);
        const char *p[1] = {f->recs[i].id};
        db_value(f, sql, 1, p, v, sizeof(v));
        size_t n = strlen(all);
        snprintf(all + n, cap - n, "%s:%s ", f->recs[i].type, v);
    }
    return all;
}

static uint64_t db_version(fixture *f, const trecord *r)
{
    char sql[200], v[32];
    snprintf(sql, sizeof(sql), "SELECT version FROM %s WHERE id = $1::uuid", r->table);
    const char *p[1] = {r->id};
    db_value(f, sql, 1, p, v, sizeof(v));
    return strtoull(v, NULL, 10);
}

/* The text fields of every synced type, from the schema (the query
 * daemon/registry.c makes, narrowed to text and sets of text). */
static void read_catalogue(fixture *f)
{
    static const char sql[] =
        "SELECT string_agg(t.name || ' ' || t.table_name || ' ' || a.attname || ' ' ||"
        "       (format_type(a.atttypid, a.atttypmod) = 'text[]')::int, E'\\n'"
        "       ORDER BY t.name COLLATE \"C\", a.attname COLLATE \"C\")"
        "  FROM sync_entity_types t"
        "  JOIN pg_attribute a ON a.attrelid = to_regclass(t.table_name)"
        "       AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY (t.server_columns)"
        " WHERE a.attname NOT IN ('id', 'version', 'tenant_id', 'deleted', 'changed_by',"
        "                         'changed_device', 'changed_at')"
        "   AND (format_type(a.atttypid, a.atttypmod) IN ('text', 'text[]', 'character varying')"
        "        OR format_type(a.atttypid, a.atttypmod) ~ '^character varying\\(\\d+\\)$')";
    static char buf[32768];
    db_value(f, sql, 0, NULL, buf, sizeof(buf));
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (f->nfields == MAX_FIELDS)
            nst_fail(f->e, "more than %d text fields: raise MAX_FIELDS", MAX_FIELDS);
        tfield *tf = &f->fields[f->nfields];
        memset(tf, 0, sizeof(*tf));
        int set = 0;
        if (sscanf(line, "%39s %63s %63s %d", tf->type, tf->table, tf->name, &set) != 4 ||
            !plain(tf->type) || !plain(tf->table) || !plain(tf->name))
            nst_fail(f->e, "catalogue line \"%s\"", line);
        tf->set = set != 0;
        f->nfields++;
    }
    /* The types themselves, with their tables (every one must get a record,
     * text fields or not). */
    static char types[4096];
    db_value(f,
             "SELECT string_agg(name || ' ' || table_name, E'\\n' ORDER BY name COLLATE \"C\") "
             "FROM sync_entity_types",
             0, NULL, types, sizeof(types));
    for (char *line = strtok_r(types, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (f->nrecs == MAX_TYPES)
            nst_fail(f->e, "more than %d entity types: raise MAX_TYPES", MAX_TYPES);
        trecord *r = &f->recs[f->nrecs];
        if (sscanf(line, "%39s %63s", r->type, r->table) != 2 || !plain(r->table))
            nst_fail(f->e, "entity type line \"%s\"", line);
        f->nrecs++;
    }
}

static trecord *rec_of(fixture *f, const char *type)
{
    for (size_t i = 0; i < f->nrecs; i++)
        if (strcmp(f->recs[i].type, type) == 0)
            return &f->recs[i];
    return NULL;
}

static void org_id(fixture *f, const char *code, char out[40])
{
    const char *p[1] = {code};
    db_value(f, "SELECT id FROM organisations WHERE code = $1", 1, p, out, 40);
    if (out[0] == '\0')
        nst_fail(f->e, "no organisation %s", code);
}

/* ---- the device stores ------------------------------------------------------------------ */

static ns_client *store_client(fixture *f, int d)
{
    if (f->c[d] != NULL)
        return f->c[d];
    char server[64];
    ns_client_options o;
    nst_client_options(f->e, f->dev[d].cert, f->dev[d].key, f->e->ca_cert, &o, server,
                       sizeof(server));
    o.store_path = f->store[d];
    ns_error err;
    if (ns_client_new(&o, NULL, &f->c[d], &err) != NS_OK)
        nst_fail(f->e, "%s: ns_client_new: %s", dev_names[d], err.message);
    return f->c[d];
}

/* One sync of the organisation's plans and the directory. */
static void must_sync(fixture *f, int d)
{
    ns_sync_options o;
    memset(&o, 0, sizeof(o));
    o.directory = 1;
    ns_sync_stats st;
    ns_error err;
    if (ns_client_sync_wait(store_client(f, d), &o, &st, &err) != NS_OK)
        nst_fail(f->e, "%s: sync: %s", dev_names[d], err.message);
}

/* A put that must be taken by the store. */
static void must_put(fixture *f, int d, const char *type, const char *id, const char *const *a,
                     size_t n)
{
    ns_edit_result r;
    ns_error err;
    if (ns_client_put(store_client(f, d), type, id, a, n, &r, &err) != NS_OK)
        nst_fail(f->e, "%s: put %s %s: %s", dev_names[d], type, id, err.message);
}

typedef struct {
    fixture *f;
    size_t pending, rejected;
} outbox_scan;

/* Marks the test's fields whose mutations the server refused. */
static int on_outbox(const ns_outbox_view *v, void *ud)
{
    outbox_scan *s = ud;
    if (!v->rejected) {
        s->pending++;
        return 0;
    }
    s->rejected++;
    for (size_t i = 0; i < s->f->nfields; i++) {
        tfield *tf = &s->f->fields[i];
        if (strcmp(tf->mutation, v->mutation_id) == 0) {
            tf->rejected = true;
            snprintf(tf->code, sizeof(tf->code), "%s", v->reject_code);
            snprintf(tf->reason, sizeof(tf->reason), "%s", v->reject_reason);
        }
    }
    return 0;
}

typedef struct {
    const char *name;
    char *value;
    size_t cap;
    bool found, null;
} view_field;

static int on_view(const ns_record_view *v, void *ud)
{
    view_field *w = ud;
    for (size_t i = 0; i < v->nfields; i++) {
        if (strcmp(v->fields[i].name, w->name) == 0) {
            w->found = true;
            w->null = v->fields[i].value == NULL;
            snprintf(w->value, w->cap, "%s", w->null ? "" : v->fields[i].value);
        }
    }
    return 0;
}

/* A field in a device's local view. */
static void view_value(fixture *f, int d, const tfield *tf, char *out, size_t cap, bool *null)
{
    view_field w = {tf->name, out, cap, false, false};
    ns_error err;
    if (ns_client_get(store_client(f, d), tf->type, f->recs[tf->rec].id, on_view, &w, &err) !=
        NS_OK)
        nst_fail(f->e, "%s: get %s %s: %s", dev_names[d], tf->type, f->recs[tf->rec].id,
                 err.message);
    if (!w.found)
        nst_fail(f->e, "%s: %s %s has no field %s", dev_names[d], tf->type, f->recs[tf->rec].id,
                 tf->name);
    *null = w.null;
}

/* ---- a record of every type ------------------------------------------------------------- */

/* The fields of a valid record of type, as ns_client_put assignments
 * (kinds explicit), and the device that writes it. A type without an entry
 * fails the test: a new entity type must get one here, so that its text
 * fields are tried too. */
static size_t recipe(fixture *f, const char *type, const char **a, int *writer)
{
    static char buf[24][160];
    size_t n = 0;
#define A(...) (snprintf(buf[n], sizeof(buf[n]), __VA_ARGS__), a[n] = buf[n], n++)
    const char *ref = NULL;
    *writer = D_COORD;
    if (strcmp(type, "organisation") == 0) {
        *writer = D_ADMIN;
        A("code:text=hostile-unit-%u", f->seq);
        A("name:text=A unit of its own");
        A("kind:text=agency");
        A("default_role:text=implementer");
        A("parent_id:ref=%s", f->org_mogender);
        return n;
    }
    if (strcmp(type, "principal") == 0) {
        *writer = D_ADMIN;
        A("organisation_id:ref=%s", f->org_mogender);
        A("name:text=Hostile Person");
        return n;
    }
    if (strcmp(type, "principal_role") == 0 || strcmp(type, "device") == 0) {
        *writer = D_ADMIN;
        if ((ref = rec_of(f, "principal")->id)[0] == '\0')
            nst_fail(f->e, "the principal comes first");
        A("organisation_id:ref=%s", f->org_mogender);
        A("principal_id:ref=%s", ref);
        if (type[0] == 'p') {
            A("role:text=observer");
        } else {
            A("name:text=hostile-device");
            A("fingerprint:text=%064x", 0x4d00u + f->seq);
        }
        return n;
    }
    if (strcmp(type, "region_membership") == 0) {
        *writer = D_RADMIN;
        A("region_id:ref=%s", f->org_regional);
        A("country:text=XH");
        A("since:date=2020-01-01");
        return n;
    }
    if (strcmp(type, "plan") == 0) {
        A("title:text=Hostile data plan");
        A("kind:text=nap");
        A("status:text=adopted");
        A("period_start:date=2021-01-01");
        A("period_end:date=2030-12-31");
        return n;
    }
    A("plan_id:ref=%s", f->plan);
#define REF(field, t)                                                                              \
    do {                                                                                           \
        if ((ref = rec_of(f, t)->id)[0] == '\0')                                                   \
            nst_fail(f->e, "%s comes before %s", t, type);                                         \
        A(field ":ref=%s", ref);                                                                   \
    } while (0)
    if (strcmp(type, "pillar") == 0) {
        A("name:text=Protection");
        A("kind:text=protection");
    } else if (strcmp(type, "objective") == 0) {
        REF("pillar_id", "pillar");
        A("title:text=Survivors get services");
    } else if (strcmp(type, "result") == 0) {
        REF("objective_id", "objective");
        A("level:text=outcome");
        A("title:text=Shelters open");
    } else if (strcmp(type, "action") == 0) {
        REF("objective_id", "objective");
        A("title:text=Train gender desk officers");
        A("lead_org_id:ref=%s", f->org_police);
        A("status:text=planned");
    } else if (strcmp(type, "indicator") == 0) {
        A("title:text=Gender desks open");
        A("value_type:text=number");
        A("disaggregation:set=sex");
        A("responsible_id:ref=%s", f->org_police);
    } else if (strcmp(type, "indicator_target") == 0) {
        REF("indicator_id", "indicator");
        A("period_end:date=2030-12-31");
        A("value:decimal=80");
    } else if (strcmp(type, "indicator_report") == 0) {
        REF("indicator_id", "indicator");
        A("period_start:date=2024-01-01");
        A("period_end:date=2024-12-31");
        A("value:decimal=7");
        A("status:text=draft");
    } else if (strcmp(type, "report_value") == 0) {
        REF("report_id", "indicator_report");
        A("dimension:text=sex");
        A("category:text=female");
        A("value:decimal=4");
    } else if (strcmp(type, "budget_line") == 0) {
        REF("action_id", "action");
        A("fiscal_year:int=2025");
        A("currency:text=USD");
        A("costed:decimal=12500.50");
        A("funding_source:text=donor_basket_fund");
    } else if (strcmp(type, "comment") == 0) {
        A("subject_type:text=plan");
        A("subject_id:ref=%s", f->plan);
        A("author_id:ref=%s", f->principal_coord);
        A("body:text=Which budget line funds this?");
    } else {
        nst_fail(f->e,
                 "entity type %s has no recipe in test_hostile_data.c: add one, so that its "
                 "text fields are tried too",
                 type);
    }
    return n;
#undef REF
#undef A
}

/* The order records are made in: what a record refers to first. */
static const char *const make_order[] = {
    "plan",         "pillar",         "objective",        "result",
    "action",       "indicator",      "indicator_target", "indicator_report",
    "report_value", "budget_line",    "comment",          "organisation",
    "principal",    "principal_role", "device",           "region_membership"};

static int type_rank(const char *type)
{
    for (size_t i = 0; i < sizeof(make_order) / sizeof(make_order[0]); i++)
        if (strcmp(make_order[i], type) == 0)
            return (int)i;
    return (int)(sizeof(make_order) / sizeof(make_order[0])); /* unknown: last (recipe fails) */
}

static void make_records(fixture *f)
{
    trecord *sorted[MAX_TYPES];
    for (size_t i = 0; i < f->nrecs; i++)
        sorted[i] = &f->recs[i];
    for (size_t i = 1; i < f->nrecs; i++)
        for (size_t j = i; j > 0 && type_rank(sorted[j]->type) < type_rank(sorted[j - 1]->type);
             j--) {
            trecord *t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    for (size_t i = 0; i < f->nrecs; i++) {
        trecord *r = sorted[i];
        char id[40];
        fresh_id(f, id);
        if (strcmp(r->type, "plan") == 0)
            snprintf(f->plan, sizeof(f->plan), "%s", id);
        const char *a[24];
        size_t n = recipe(f, r->type, a, &r->writer);
        snprintf(r->id, sizeof(r->id), "%s", id);
        must_put(f, r->writer, r->type, id, a, n);
    }
    for (int d = D_COORD; d <= D_RADMIN; d++)
        must_sync(f, d);
    for (int d = D_COORD; d <= D_RADMIN; d++) {
        outbox_scan s = {f, 0, 0};
        ns_error err;
        assert_int_equal(ns_client_outbox(store_client(f, d), on_outbox, &s, &err), NS_OK);
        if (s.pending + s.rejected > 0) {
            char dump[4096] = "";
            nst_fail(f->e, "%s: %zu of the records' creates refused or pending%s", dev_names[d],
                     s.pending + s.rejected, dump);
        }
    }
    for (size_t i = 0; i < f->nrecs; i++)
        if (db_version(f, &f->recs[i]) != 1)
            nst_fail(f->e, "%s %s was not created", f->recs[i].type, f->recs[i].id);
    for (size_t i = 0; i < f->nfields; i++) {
        trecord *r = rec_of(f, f->fields[i].type);
        if (r == NULL)
            nst_fail(f->e, "field %s of an unknown type %s", f->fields[i].name, f->fields[i].type);
        f->fields[i].rec = (int)(r - f->recs);
    }
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    static const char *const orgs[NDEV] = {"mogender", "mogender", "regional", "mogender",
                                           "mogender"};
    static const char *const roles[NDEV] = {"coordinator", "admin", "admin", "coordinator",
                                            "admin"};
    static const char *const people[NDEV] = {"Hostile Coordinator", "Hostile Admin",
                                             "Hostile Region Admin", "Hostile Reader",
                                             "Hostile Reading Admin"};
    static const char *const flags[] = {"--max-frame-size", MAX_FRAME, NULL};
    f->e = nst_env_new("hostile_data", NULL);
    if (f->e == NULL || nst_daemon_start(f->e, flags) != 0)
        return -1;
    for (int d = 0; d < NDEV; d++) {
        if (nst_device_issue(f->e, false, dev_names[d], &f->dev[d]) != 0 ||
            nst_device_register(f->e, orgs[d], people[d], roles[d], &f->dev[d]) != 0)
            return -1;
        char name[64];
        snprintf(name, sizeof(name), "%s.store", dev_names[d]);
        if (nst_path_join(f->store[d], f->e->dir, name) != 0)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f == NULL)
        return 0;
    for (int d = 0; d < NDEV; d++)
        if (f->c[d] != NULL)
            ns_client_free(f->c[d]);
    PQfinish(f->db);
    int rc = nst_env_close(f->e);
    free(f);
    return rc;
}

/* The records every other test works on; the others skip nothing but fail
 * at once when these could not be made. */
static void need_records(fixture *f)
{
    if (f->ready)
        return;
    org_id(f, "mogender", f->org_mogender);
    org_id(f, "police", f->org_police);
    org_id(f, "regional", f->org_regional);
    const char *p[1] = {"Hostile Coordinator"};
    db_value(f, "SELECT id FROM principals WHERE name = $1", 1, p, f->principal_coord,
             sizeof(f->principal_coord));
    read_catalogue(f);
    if (f->nfields < 40 || rec_of(f, "plan") == NULL || rec_of(f, "device") == NULL)
        nst_fail(f->e, "the schema lists %zu text fields in %zu types: not the model's", f->nfields,
                 f->nrecs);
    make_records(f);
    f->ready = true;
}

/* ---- metacharacters, through the device stores ---------------------------------------- */

/* Values a field must either refuse with a typed error or store as they
 * are. The last one is built: NS_TEXT_DEFAULT_MAX bytes of them. */
static const char *const meta_values[] = {
    "'; DROP TABLE plans; --",
    "Robert'); DELETE FROM sync_feed WHERE ('1' = '1",
    "$1 $$dollar$$ $tag$x$tag$ %s %n %x %% \\ \\\\ \\x00 \\u0000 \\' \"q\" E'\\\\'",
    "{\"json\": [1, {\"k\": \"v\\\"\"}], \"nul\": \"\\u0000\", \"x\": null} ]}",
    "<script>alert('x')</script> &amp; &lt;/* */ ; COMMIT; ROLLBACK; \\. \\copy",
    "\xc3\x9cn\xc3\xaf"
    "c\xc3\xb6"
    "d\xc3\xa9 \xe2\x80\x94 \xe5\xa5\xb3\xe6\x80\xa7 \xf0\x9f\x95\x8a "
    "\xe2\x80\xae evil \xe2\x80\xac \xef\xbb\xbf BOM \xd7\xa2\xd7\x91",
    "line one\nline two\r\n\ttabbed\n",
    "  leading and trailing spaces  ",
    NULL, /* the long one */
};
#define NMETA (sizeof(meta_values) / sizeof(meta_values[0]))

static char *long_meta(void)
{
    static const char unit[] = "'\";--$1%s\\";
    char *s = malloc(NS_TEXT_DEFAULT_MAX + 1);
    assert_non_null(s);
    for (size_t i = 0; i < NS_TEXT_DEFAULT_MAX; i++)
        s[i] = unit[i % (sizeof(unit) - 1)];
    s[NS_TEXT_DEFAULT_MAX] = '\0';
    return s;
}

/* What a set field is given for a value: one item, as the text form of a
 * set takes it (no commas, no control characters, at most 100 bytes). */
static void as_set_item(const char *v, char *out, size_t cap)
{
    size_t n = 0;
    for (; *v && n + 1 < cap && n < 100; v++)
        out[n++] = *v == ',' || (unsigned char)*v < 0x20 ? ';' : *v;
    /* Do not cut a UTF-8 sequence. */
    while (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0x80)
        n--;
    if (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0xc0)
        n--;
    out[n] = '\0';
}

static void expect_stored(fixture *f, const char *where, const tfield *tf, const char *want,
                          const char *got, bool null)
{
    if (null || strcmp(want, got) != 0)
        nst_fail(f->e,
                 "%s.%s was stored, but %s holds %s%.60s%s (%zu bytes) instead of \"%.60s\" "
                 "(%zu bytes)",
                 tf->type, tf->name, where, null ? "NULL" : "\"", null ? "" : got, null ? "" : "\"",
                 strlen(got), want, strlen(want));
}

typedef struct {
    unsigned stored, refused, put_refused;
} tally;

/* One round: value v into every text field at once (a put each), a sync
 * of every writer, then each field refused with a typed error or stored
 * byte for byte, in PostgreSQL, in the writer's store and, after its pull,
 * in the reader's. */
static void meta_round(fixture *f, const char *v, tally *t)
{
    size_t vlen = strlen(v);
    char *assign = malloc(vlen + 80), *want = malloc(vlen + 1);
    char *got = malloc(VALUE_CAP);
    assert_true(assign && want && got);
    for (size_t i = 0; i < f->nfields; i++) {
        tfield *tf = &f->fields[i];
        tf->mutation[0] = tf->code[0] = tf->reason[0] = '\0';
        tf->put_refused = tf->rejected = false;
        if (tf->set)
            as_set_item(v, want, vlen + 1);
        else
            memcpy(want, v, vlen + 1);
        snprintf(assign, vlen + 80, "%s:%s=%s", tf->name, tf->set ? "set" : "text", want);
        const char *a[1] = {assign};
        const trecord *r = &f->recs[tf->rec];
        ns_edit_result res;
        ns_error err;
        int rc = ns_client_put(store_client(f, r->writer), tf->type, r->id, a, 1, &res, &err);
        if (rc == NS_ERR_INVALID_ARGUMENT) {
            tf->put_refused = true; /* a typed error before anything is stored */
            continue;
        }
        if (rc != NS_OK)
            nst_fail(f->e, "put %s.%s: %s", tf->type, tf->name, err.message);
        snprintf(tf->mutation, sizeof(tf->mutation), "%s", res.mutation_id);
    }
    for (int d = D_COORD; d <= D_RADMIN; d++) {
        must_sync(f, d);
        outbox_scan s = {f, 0, 0};
        ns_error err;
        assert_int_equal(ns_client_outbox(store_client(f, d), on_outbox, &s, &err), NS_OK);
        if (s.pending > 0)
            nst_fail(f->e, "%s: %zu changes still pending after a sync", dev_names[d], s.pending);
    }
    must_sync(f, D_READ_COORD);
    must_sync(f, D_READ_ADMIN);
    for (size_t i = 0; i < f->nfields; i++) {
        tfield *tf = &f->fields[i];
        const trecord *r = &f->recs[tf->rec];
        if (tf->set)
            as_set_item(v, want, vlen + 1);
        else
            memcpy(want, v, vlen + 1);
        bool null = false;
        if (tf->put_refused) {
            t->put_refused++;
            continue;
        }
        if (tf->rejected) {
            t->refused++;
            if (strcmp(tf->code, "INVALID_ARGUMENT") != 0 &&
                strcmp(tf->code, "PERMISSION_DENIED") != 0)
                nst_fail(f->e, "%s.%s refused with %s (\"%s\"): not a typed refusal of the value",
                         tf->type, tf->name, tf->code, tf->reason);
            if (strstr(tf->reason, tf->name) == NULL)
                nst_fail(f->e, "%s.%s refused (%s) with a reason that does not name the field: %s",
                         tf->type, tf->name, tf->code, tf->reason);
            db_field(f, tf, got, VALUE_CAP, &null);
            if (!null && strcmp(got, want) == 0 && vlen > 0)
                nst_fail(f->e, "%s.%s was refused, yet the database holds the value", tf->type,
                         tf->name);
            ns_error err;
            if (ns_client_discard(store_client(f, r->writer), tf->mutation, &err) != NS_OK)
                nst_fail(f->e, "discard %s: %s", tf->mutation, err.message);
            continue;
        }
        t->stored++;
        db_field(f, tf, got, VALUE_CAP, &null);
        expect_stored(f, "PostgreSQL", tf, want, got, null);
        view_value(f, r->writer, tf, got, VALUE_CAP, &null);
        expect_stored(f, "the writer's store", tf, want, got, null);
        view_value(f, reader_of(r->writer), tf, got, VALUE_CAP, &null);
        expect_stored(f, "the reader's store after a pull", tf, want, got, null);
    }
    free(assign);
    free(want);
    free(got);
}

static const tfield *field_of(fixture *f, const char *type, const char *name)
{
    for (size_t i = 0; i < f->nfields; i++)
        if (strcmp(f->fields[i].type, type) == 0 && strcmp(f->fields[i].name, name) == 0)
            return &f->fields[i];
    nst_fail(f->e, "no text field %s.%s in the schema", type, name);
}

static void test_metacharacters(void **state)
{
    fixture *f = *state;
    need_records(f);
    char *longv = long_meta();
    tally t = {0};
    for (size_t k = 0; k < NMETA; k++) {
        const char *v = meta_values[k] ? meta_values[k] : longv;
        tally before = t;
        meta_round(f, v, &t);
        /* Free text takes all of them: the test is not vacuous. */
        static const char *const free_text[][2] = {
            {"plan", "summary"}, {"indicator_report", "narrative"}, {"budget_line", "note"}};
        for (size_t i = 0; i < sizeof(free_text) / sizeof(free_text[0]); i++) {
            const tfield *tf = field_of(f, free_text[i][0], free_text[i][1]);
            if (tf->rejected || tf->put_refused)
                nst_fail(f->e, "%s.%s refused value %zu: %s %s", tf->type, tf->name, k, tf->code,
                         tf->reason);
        }
        print_message("value %zu (%zu bytes): %u fields stored it, %u refused it\n", k, strlen(v),
                      t.stored - before.stored,
                      t.refused + t.put_refused - before.refused - before.put_refused);
    }
    free(longv);
    print_message("%zu text fields of %zu types x %zu values: %u stored and read back, %u refused "
                  "by the server, %u by the client\n",
                  f->nfields, f->nrecs, NMETA, t.stored, t.refused, t.put_refused);
    assert_true(t.stored > f->nfields);
    nst_test_passed(f->e);
}

/* ---- raw frames: what libnapsync would never send ---------------------------------------- */

/* One mutation of a raw Push: an update of one field (text or set). */
typedef struct {
    Napsync__V1__Value value;
    Napsync__V1__TextSet items;
    char *item[1];
    Napsync__V1__Field field;
    Napsync__V1__Field *fields[1];
    Napsync__V1__FieldSet set;
    Napsync__V1__Mutation m;
    char mutation_id[40];
} raw_mut;

typedef struct {
    raw_mut *muts;
    Napsync__V1__Mutation **ptrs;
    size_t n, cap;
    Napsync__V1__Push push;
    ns_envelope env;
} raw_push;

static void raw_push_init(raw_push *p, size_t cap)
{
    memset(p, 0, sizeof(*p));
    p->muts = calloc(cap, sizeof(*p->muts));
    p->ptrs = calloc(cap, sizeof(*p->ptrs));
    assert_true(p->muts != NULL && p->ptrs != NULL);
    p->cap = cap;
}

static void raw_push_free(raw_push *p)
{
    free(p->muts);
    free(p->ptrs);
}

/* Adds an update of field (a set: one item) of record r to value, which
 * must outlive the push; base is the record's version in PostgreSQL. */
static void raw_add(fixture *f, raw_push *p, const trecord *r, const char *field, bool set,
                    const char *value)
{
    assert_true(p->n < p->cap);
    raw_mut *x = &p->muts[p->n];
    napsync__v1__value__init(&x->value);
    if (set) {
        napsync__v1__text_set__init(&x->items);
        x->item[0] = (char *)value;
        x->items.n_items = 1;
        x->items.items = x->item;
        x->value.kind_case = NAPSYNC__V1__VALUE__KIND_SET_VALUE;
        x->value.set_value = &x->items;
    } else {
        x->value.kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
        x->value.text_value = (char *)value;
    }
    napsync__v1__field__init(&x->field);
    x->field.name = (char *)field;
    x->field.value = &x->value;
    x->fields[0] = &x->field;
    napsync__v1__field_set__init(&x->set);
    x->set.n_fields = 1;
    x->set.fields = x->fields;
    napsync__v1__mutation__init(&x->m);
    f->seq++;
    snprintf(x->mutation_id, sizeof(x->mutation_id), "6d%06x-0000-4000-8000-%012x",
             f->seq & 0xffffffu, f->seq);
    x->m.mutation_id = x->mutation_id;
    x->m.entity_type = (char *)r->type;
    x->m.record_id = (char *)r->id;
    x->m.op = NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE;
    x->m.base_version = db_version(f, r);
    x->m.fields = &x->set;
    p->ptrs[p->n] = &x->m;
    p->n++;
}

static ns_envelope *raw_env(raw_push *p, uint64_t rid, Napsync__V1__PushMode mode)
{
    napsync__v1__push__init(&p->push);
    p->push.n_mutations = p->n;
    p->push.mutations = p->ptrs;
    p->push.mode = mode;
    napsync__v1__envelope__init(&p->env);
    p->env.request_id = rid;
    p->env.body_case = BODY(PUSH);
    p->env.push = &p->push;
    return &p->env;
}

/* Sends the push and returns its PushResult (the caller frees it). */
static ns_envelope *raw_send(fixture *f, nst_raw *r, raw_push *p, uint64_t rid,
                             Napsync__V1__PushMode mode)
{
    if (nst_raw_send_env(r, raw_env(p, rid, mode)) != 0)
        nst_fail(f->e, "sending a push of %zu mutations: %s", p->n, r->error);
    ns_envelope *res = nst_expect_frame(f->e, r, BODY(PUSH_RESULT));
    assert_int_equal(res->request_id, rid);
    assert_int_equal(res->push_result->n_results, p->n);
    return res;
}

/* Every mutation of the answer refused as INVALID_ARGUMENT naming its field. */
static void expect_all_invalid(fixture *f, const raw_push *p, const ns_envelope *res,
                               const char *what)
{
    for (size_t i = 0; i < p->n; i++) {
        const Napsync__V1__MutationResult *m = res->push_result->results[i];
        const raw_mut *x = &p->muts[i];
        if (m->outcome != OUTCOME(REJECTED) || m->reject_code != ERR(INVALID_ARGUMENT) ||
            strcmp(m->reject_field, x->field.name) != 0)
            nst_fail(f->e, "%s in %s.%s: outcome %d, code %s, field \"%s\" (%s)", what,
                     x->m.entity_type, x->field.name, m->outcome,
                     ns_error_code_name(m->reject_code), m->reject_field, m->reject_reason);
    }
}

/* Values no text may hold, each refused on its own: UTF-8 that is not, or
 * characters the protocol excludes. */
static const char *const bad_values[] = {
    "bad \xff byte",
    "overlong \xc0\xaf slash",
    "surrogate \xed\xa0\x80 half",
    "truncated \xe2\x82",
    "beyond unicode \xf4\x90\x80\x80",
    "C1 \xc2\x9b\x33\x31m csi",
    "escape \x1b[31m red",
    "delete \x7f",
    "bell \x07",
};
#define NBAD (sizeof(bad_values) / sizeof(bad_values[0]))

static const nst_device *writer_dev(fixture *f, int d)
{
    return &f->dev[d];
}

/* For each writer, one push of every field of its records set to value,
 * all refused with INVALID_ARGUMENT naming the field. */
static void push_everywhere(fixture *f, const char *value, const char *what, uint64_t *rid)
{
    for (int d = D_COORD; d <= D_RADMIN; d++) {
        raw_push p;
        raw_push_init(&p, f->nfields);
        for (size_t i = 0; i < f->nfields; i++) {
            const tfield *tf = &f->fields[i];
            if (f->recs[tf->rec].writer == d)
                raw_add(f, &p, &f->recs[tf->rec], tf->name, tf->set, value);
        }
        if (p.n > 0) {
            nst_raw r;
            nst_must_raw_auth(f->e, &r, writer_dev(f, d), ++*rid);
            ns_envelope *res = raw_send(f, &r, &p, ++*rid, NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY);
            expect_all_invalid(f, &p, res, what);
            ns_envelope_free(res);
            nst_must_raw_ping(f->e, &r, ++*rid); /* the session goes on */
            nst_raw_close(&r);
        }
        raw_push_free(&p);
    }
}

static void test_invalid_text_on_the_wire(void **state)
{
    fixture *f = *state;
    need_records(f);
    char *before = db_versions(f);
    uint64_t rid = 100;
    for (size_t k = 0; k < NBAD; k++) {
        char what[64];
        snprintf(what, sizeof(what), "bad value %zu", k);
        push_everywhere(f, bad_values[k], what, &rid);
    }
    /* One byte above the limit of a text, and of a set's item. */
    char *over = malloc(NS_TEXT_DEFAULT_MAX + 2);
    assert_non_null(over);
    memset(over, 'x', NS_TEXT_DEFAULT_MAX + 1);
    over[NS_TEXT_DEFAULT_MAX + 1] = '\0';
    push_everywhere(f, over, "10,001 bytes", &rid);
    free(over);
    char *after = db_versions(f);
    if (strcmp(before, after) != 0)
        nst_fail(f->e, "refused pushes changed records: before %s, after %s", before, after);
    free(before);
    free(after);
    nst_test_passed(f->e);
}

/* A 1 MiB value in every field, one push each (the daemon's frames may be
 * 4 MiB here): refused by the value's limit, the session going on. */
static void test_mebibyte_values(void **state)
{
    fixture *f = *state;
    need_records(f);
    char *before = db_versions(f);
    char *big = malloc(MIB + 1);
    assert_non_null(big);
    for (size_t i = 0; i < MIB; i++)
        big[i] = "'\";--"[i % 5];
    big[MIB] = '\0';
    uint64_t rid = 1;
    for (int d = D_COORD; d <= D_RADMIN; d++) {
        nst_raw r;
        nst_must_raw_auth(f->e, &r, writer_dev(f, d), rid++);
        for (size_t i = 0; i < f->nfields; i++) {
            const tfield *tf = &f->fields[i];
            if (f->recs[tf->rec].writer != d)
                continue;
            raw_push p;
            raw_push_init(&p, 1);
            raw_add(f, &p, &f->recs[tf->rec], tf->name, tf->set, big);
            ns_envelope *res = raw_send(f, &r, &p, rid++, NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY);
            expect_all_invalid(f, &p, res, "1 MiB");
            ns_envelope_free(res);
            raw_push_free(&p);
        }
        nst_must_raw_ping(f->e, &r, rid++);
        nst_raw_close(&r);
    }
    free(big);
    char *after = db_versions(f);
    if (strcmp(before, after) != 0)
        nst_fail(f->e, "refused pushes changed records: before %s, after %s", before, after);
    free(before);
    free(after);
    nst_test_passed(f->e);
}

/* Packs the push, turns every '@' of the values into a NUL, and sends it
 * as one frame. */
static void send_with_nuls(fixture *f, nst_raw *r, raw_push *p, uint64_t rid,
                           Napsync__V1__PushMode mode)
{
    uint8_t *buf = NULL, *frame = NULL;
    size_t len = 0, flen = 0;
    assert_int_equal(ns_envelope_pack(raw_env(p, rid, mode), &buf, &len), 0);
    size_t nuls = 0;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '@') {
            buf[i] = 0;
            nuls++;
        }
    assert_true(nuls > 0);
    assert_int_equal(nst_frame_append(&frame, &flen, buf, len), 0);
    nst_must_raw_write(f->e, r, frame, flen);
    free(buf);
    free(frame);
}

/* A NUL byte inside a text: the whole frame is MALFORMED (fatal), never a
 * value cut at the NUL and stored as if it were what was sent. Every text
 * field, one connection each. */
static void test_nul_bytes(void **state)
{
    fixture *f = *state;
    need_records(f);
    char *before = db_versions(f);
    uint64_t rid = 1;
    for (size_t i = 0; i < f->nfields; i++) {
        const tfield *tf = &f->fields[i];
        const trecord *rec = &f->recs[tf->rec];
        raw_push p;
        raw_push_init(&p, 1);
        raw_add(f, &p, rec, tf->name, tf->set, "cut@here");
        nst_raw r;
        nst_must_raw_auth(f->e, &r, writer_dev(f, rec->writer), rid++);
        send_with_nuls(f, &r, &p, rid++, NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY);
        nst_expect_fatal_error(f->e, &r, 0, ERR(MALFORMED));
        nst_raw_close(&r);
        raw_push_free(&p);
    }
    char *after = db_versions(f);
    if (strcmp(before, after) != 0)
        nst_fail(f->e, "frames with NUL bytes changed records: before %s, after %s", before, after);
    free(before);
    free(after);
    nst_test_passed(f->e);
}

/* ---- batches with one bad mutation -------------------------------------------------------- */

static const char *result_code(const Napsync__V1__MutationResult *m)
{
    return m->outcome == OUTCOME(REJECTED) ? ns_error_code_name(m->reject_code) : "-";
}

static void expect_outcome(fixture *f, const ns_envelope *res, size_t i, int outcome, int code,
                           const char *field, const char *what)
{
    const Napsync__V1__MutationResult *m = res->push_result->results[i];
    bool ok = outcome == OUTCOME(APPLIED)
                  ? m->outcome == OUTCOME(APPLIED) || m->outcome == OUTCOME(MERGED)
                  : m->outcome == (Napsync__V1__MutationOutcome)outcome &&
                        m->reject_code == (Napsync__V1__ErrorCode)code &&
                        (field == NULL || strcmp(m->reject_field, field) == 0);
    if (!ok)
        nst_fail(f->e, "%s: mutation %zu: outcome %d %s field \"%s\" (%s)", what, i, m->outcome,
                 result_code(m), m->reject_field, m->reject_reason);
}

static void text_of(fixture *f, const char *type, const char *field, char *out, size_t cap)
{
    const tfield *tf = field_of(f, type, field);
    bool null = false;
    db_field(f, tf, out, cap, &null);
    if (null)
        out[0] = '\0';
}

/* Three updates of three records: a good one, the bad one, a good one. In
 * APPLY mode the good ones are stored and the bad one refused; in ATOMIC
 * mode nothing is stored. The bad one is refused before the database
 * (invalid UTF-8) or by it (a plan title above its 300 characters: sql/003,
 * the batch is split until the culprit is alone). */
static void test_batches(void **state)
{
    fixture *f = *state;
    need_records(f);
    trecord *plan = rec_of(f, "plan"), *pillar = rec_of(f, "pillar"),
            *objective = rec_of(f, "objective");
    char title301[302];
    memset(title301, 'T', 301);
    title301[301] = '\0';
    static const struct {
        const char *bad_field;
        const char *bad_value;
        int code; /* of the bad one, in APPLY mode */
    } cases[] = {
        {"description", "bad \xff byte", ERR(INVALID_ARGUMENT)},
        {"title", NULL, ERR(INVALID_ARGUMENT)}, /* title301 */
    };
    nst_raw r;
    uint64_t rid = 1;
    nst_must_raw_auth(f->e, &r, &f->dev[D_COORD], rid++);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *bad = cases[c].bad_value ? cases[c].bad_value : title301;
        /* The bad one goes to the pillar's description or the plan's title. */
        trecord *bad_rec = cases[c].bad_value ? pillar : plan;
        for (int atomic = 0; atomic <= 1; atomic++) {
            char good1[64], good2[64], what[64];
            snprintf(good1, sizeof(good1), "batch %zu-%d first 'good' one", c, atomic);
            snprintf(good2, sizeof(good2), "batch %zu-%d third \"good\" one", c, atomic);
            snprintf(what, sizeof(what), "%s batch, bad %s", atomic ? "ATOMIC" : "APPLY",
                     cases[c].bad_field);
            char *before = db_versions(f);
            char old1[VALUE_CAP], old2[VALUE_CAP];
            text_of(f, "plan", "summary", old1, sizeof(old1));
            text_of(f, "objective", "description", old2, sizeof(old2));
            raw_push p;
            raw_push_init(&p, 3);
            raw_add(f, &p, plan, "summary", false, good1);
            raw_add(f, &p, bad_rec, cases[c].bad_field, false, bad);
            raw_add(f, &p, objective, "description", false, good2);
            ns_envelope *res = raw_send(f, &r, &p, rid++,
                                        atomic ? NAPSYNC__V1__PUSH_MODE__PUSH_MODE_ATOMIC
                                               : NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY);
            char got1[VALUE_CAP], got2[VALUE_CAP];
            text_of(f, "plan", "summary", got1, sizeof(got1));
            text_of(f, "objective", "description", got2, sizeof(got2));
            if (!atomic) {
                expect_outcome(f, res, 0, OUTCOME(APPLIED), 0, NULL, what);
                expect_outcome(f, res, 1, OUTCOME(REJECTED), cases[c].code, cases[c].bad_field,
                               what);
                expect_outcome(f, res, 2, OUTCOME(APPLIED), 0, NULL, what);
                if (strcmp(got1, good1) != 0 || strcmp(got2, good2) != 0)
                    nst_fail(f->e, "%s: the good ones hold \"%s\" and \"%s\"", what, got1, got2);
            } else {
                /* Each refused: the bad one for itself (before the
                 * database), or all ABORTED with the database's reason. */
                for (size_t i = 0; i < 3; i++) {
                    const Napsync__V1__MutationResult *m = res->push_result->results[i];
                    if (m->outcome != OUTCOME(REJECTED) ||
                        (m->reject_code != ERR(ABORTED) && (int)m->reject_code != cases[c].code))
                        nst_fail(f->e, "%s: mutation %zu: outcome %d %s (%s)", what, i, m->outcome,
                                 result_code(m), m->reject_reason);
                }
                char *after = db_versions(f);
                if (strcmp(before, after) != 0 || strcmp(got1, old1) != 0 ||
                    strcmp(got2, old2) != 0)
                    nst_fail(f->e, "%s: something was stored: %s -> %s", what, before, after);
                free(after);
            }
            ns_envelope_free(res);
            raw_push_free(&p);
            free(before);
        }
    }
    nst_must_raw_ping(f->e, &r, rid++);
    nst_raw_close(&r);

    /* A NUL in the middle mutation: the frame is refused whole, in either
     * mode, and nothing of it is stored. */
    for (int atomic = 0; atomic <= 1; atomic++) {
        char *before = db_versions(f);
        raw_push p;
        raw_push_init(&p, 3);
        raw_add(f, &p, plan, "summary", false, "NUL batch first");
        raw_add(f, &p, pillar, "description", false, "NUL@batch");
        raw_add(f, &p, objective, "description", false, "NUL batch third");
        nst_must_raw_auth(f->e, &r, &f->dev[D_COORD], rid++);
        send_with_nuls(f, &r, &p, rid++,
                       atomic ? NAPSYNC__V1__PUSH_MODE__PUSH_MODE_ATOMIC
                              : NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY);
        nst_expect_fatal_error(f->e, &r, 0, ERR(MALFORMED));
        nst_raw_close(&r);
        raw_push_free(&p);
        char *after = db_versions(f);
        if (strcmp(before, after) != 0)
            nst_fail(f->e, "a refused frame stored something: %s -> %s", before, after);
        free(before);
        free(after);
    }
    nst_test_passed(f->e);
}

/* ---- the CLI: hostile plan files, output names ------------------------------------------ */

/* napsync as the coordinator (a store of its own: the test's client holds
 * the coordinator's), stdout into out. Returns the exit status. */
static int cli(fixture *f, char *out, size_t cap, const char *first, ...) __attribute__((sentinel));
static int cli(fixture *f, char *out, size_t cap, const char *first, ...)
{
    char store[NST_PATH];
    if (nst_path_join(store, f->e->dir, "cli.store") != 0)
        nst_fail(f->e, "path too long");
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(f->e, &f->dev[D_COORD], store, out, cap, first, ap);
    va_end(ap);
    return rc;
}

static void write_bytes(fixture *f, const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(data, 1, len, fp) != len || fclose(fp) != 0)
        nst_fail(f->e, "cannot write %s", path);
}

/* A growing buffer for the files below. */
typedef struct {
    char *s;
    size_t len, cap;
} gbuf;

static void gb_add(gbuf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        assert_non_null(s);
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void gb_str(gbuf *b, const char *s)
{
    gb_add(b, s, strlen(s));
}

static void gb_rep(gbuf *b, const char *s, size_t times)
{
    for (size_t i = 0; i < times; i++)
        gb_str(b, s);
}

static void gb_fill(gbuf *b, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gb_add(b, &c, 1);
}

#define PLAN_HEAD                                                                                  \
    "{\"format\":\"napsync-plan\",\"version\":1,\"plan\":{\"id\":\"4d0f0000-0000-4000-8000-"       \
    "000000000001\",\"kind\":\"nap\",\"status\":\"draft\",\"period_start\":\"2024-01-01\","        \
    "\"period_end\":\"2027-12-31\",\"title\":"
#define CSV_HEAD                                                                                   \
    "type,id,title,kind,status,period_start,period_end\r\n"                                        \
    "plan,4d0f0000-0000-4000-8000-000000000002,"
#define CSV_TAIL ",nap,draft,2024-01-01,2027-12-31\r\n"

static void revisions(fixture *f, char *out, size_t cap)
{
    db_value(f, "SELECT count(*) FROM sync_revisions", 0, NULL, out, cap);
}

/* napsync import plan FILE must refuse the file (exit 2, a JSON error
 * line) and import nothing. */
static void expect_import_refused(fixture *f, const char *name, const gbuf *content, off_t sparse,
                                  const char *want)
{
    char path[NST_PATH];
    if (nst_path_join(path, f->e->dir, name) != 0)
        nst_fail(f->e, "path too long");
    if (content != NULL) {
        write_bytes(f, path, content->s, content->len);
    } else {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, sparse) != 0 || close(fd) != 0)
            nst_fail(f->e, "cannot make %s", path);
    }
    char before[32], after[32];
    revisions(f, before, sizeof(before));
    static char out[1 << 16];
    uint64_t t0 = nst_now_ms();
    int rc = cli(f, out, sizeof(out), "import", "plan", path, "--json", NULL);
    uint64_t ms = nst_now_ms() - t0;
    revisions(f, after, sizeof(after));
    if (rc != 2 || strstr(out, "\"error\"") == NULL || strstr(out, want) == NULL)
        nst_fail(f->e, "import of %s: exit %d, expected 2 with \"%s\"; it printed: %.600s", name,
                 rc, want, out);
    if (strcmp(before, after) != 0)
        nst_fail(f->e, "import of %s was refused, yet revisions went from %s to %s", name, before,
                 after);
    print_message("%s refused in %llu ms\n", name, (unsigned long long)ms);
    unlink(path);
}

static void test_hostile_plan_files(void **state)
{
    fixture *f = *state;
    need_records(f);
    gbuf b = {0};

    /* Nesting far deeper than any plan file: as the document, inside the
     * plan, as a value. */
    gb_rep(&b, "[", 200000);
    gb_rep(&b, "]", 200000);
    expect_import_refused(f, "deep-array.json", &b, 0, "\"error\"");
    b.len = 0;
    gb_str(&b, "{\"format\":\"napsync-plan\",\"version\":1,\"plan\":");
    gb_rep(&b, "{\"a\":", 100000);
    gb_str(&b, "1");
    gb_rep(&b, "}", 100001);
    expect_import_refused(f, "deep-object.json", &b, 0, "\"error\"");
    b.len = 0;
    gb_str(&b, PLAN_HEAD);
    gb_rep(&b, "[", 100000);
    gb_rep(&b, "]", 100000);
    gb_str(&b, "}}");
    expect_import_refused(f, "deep-value.json", &b, 0, "title");

    /* Sizes: above the 64 MiB a file may have; a 32 MiB text; more
     * columns and records than a plan file may have. */
    expect_import_refused(f, "huge.json", NULL, (off_t)64 * MIB + 1, "larger than");
    expect_import_refused(f, "huge.csv", NULL, (off_t)64 * MIB + 1, "larger than");
    b.len = 0;
    gb_str(&b, PLAN_HEAD "\"");
    gb_fill(&b, 'x', 32 * MIB);
    gb_str(&b, "\"}}");
    expect_import_refused(f, "long-text.json", &b, 0, "title");
    b.len = 0;
    gb_str(&b, CSV_HEAD "\"");
    gb_fill(&b, 'y', 32 * MIB);
    gb_str(&b, "\"" CSV_TAIL);
    expect_import_refused(f, "long-text.csv", &b, 0, "longer than");
    b.len = 0;
    gb_str(&b, "type,id");
    for (int i = 0; i < 300; i++) {
        char col[24];
        snprintf(col, sizeof(col), ",c%d", i);
        gb_str(&b, col);
    }
    gb_str(&b, "\r\n");
    expect_import_refused(f, "wide.csv", &b, 0, "columns");
    b.len = 0;
    gb_str(&b, CSV_HEAD "\"A plan\"" CSV_TAIL);
    for (unsigned i = 0; i < 100001; i++) {
        char row[96];
        snprintf(row, sizeof(row), "pillar,4d1%05x-0000-4000-8000-%012x,,,,,\r\n", i & 0xfffffu, i);
        gb_str(&b, row);
    }
    expect_import_refused(f, "many.csv", &b, 0, "\"error\"");

    /* Text no plan may hold: NUL (raw, and as a JSON escape), invalid
     * UTF-8, control characters. */
    static const char nul_escape[] = PLAN_HEAD "\"cut\\u0000here\"}}";
    b.len = 0;
    gb_str(&b, nul_escape);
    expect_import_refused(f, "nul-escape.json", &b, 0, "title");
    static const char raw_nul[] = PLAN_HEAD "\"cut\0here\"}}";
    b.len = 0;
    gb_add(&b, raw_nul, sizeof(raw_nul) - 1);
    expect_import_refused(f, "raw-nul.json", &b, 0, "\"error\"");
    b.len = 0;
    gb_str(&b, PLAN_HEAD "\"bad \xff byte\"}}");
    expect_import_refused(f, "bad-utf8.json", &b, 0, "\"error\"");
    b.len = 0;
    gb_str(&b, PLAN_HEAD "\"escape \\u001b[31m red\"}}");
    expect_import_refused(f, "escape.json", &b, 0, "title");
    static const char csv_nul[] = CSV_HEAD "cut\0here" CSV_TAIL;
    b.len = 0;
    gb_add(&b, csv_nul, sizeof(csv_nul) - 1);
    expect_import_refused(f, "nul.csv", &b, 0, "\"error\"");
    b.len = 0;
    gb_str(&b, CSV_HEAD "bad \xff byte" CSV_TAIL);
    expect_import_refused(f, "bad-utf8.csv", &b, 0, "\"error\"");
    b.len = 0;
    gb_str(&b, CSV_HEAD "\"never closed" CSV_TAIL);
    expect_import_refused(f, "unclosed.csv", &b, 0, "\"error\"");
    free(b.s);

    /* The control: SQL and JSON metacharacters are text like any other. */
    char path[NST_PATH], out[4096], got[512];
    static const char title[] = "'; DROP TABLE plans; -- \\\"quoted\\\" $1 %s \\u00e9 \\\\";
    static const char stored[] = "'; DROP TABLE plans; -- \"quoted\" $1 %s \xc3\xa9 \\";
    b = (gbuf){0};
    gb_str(&b, PLAN_HEAD "\"");
    gb_str(&b, title);
    gb_str(&b, "\"}}");
    assert_int_equal(nst_path_join(path, f->e->dir, "meta.json"), 0);
    write_bytes(f, path, b.s, b.len);
    free(b.s);
    int rc = cli(f, out, sizeof(out), "import", "plan", path, "--json", NULL);
    if (rc != 0)
        nst_fail(f->e, "import of meta.json: exit %d: %s", rc, out);
    const char *p[1] = {"4d0f0000-0000-4000-8000-000000000001"};
    db_value(f, "SELECT title FROM plans WHERE id = $1", 1, p, got, sizeof(got));
    assert_string_equal(got, stored);
    nst_test_passed(f->e);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    gbuf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        gb_add(&b, chunk, n);
    fclose(fp);
    if (b.s == NULL)
        gb_str(&b, "");
    return b.s;
}

/* The names in dir, one per line, sorted: what a refused command must
 * leave as it was. */
static char *listing(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[256];
    size_t n = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 256)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            names[n++] = strdup(de->d_name);
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j], names[j - 1]) < 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    gbuf b = {0};
    gb_str(&b, "");
    for (size_t i = 0; i < n; i++) {
        gb_str(&b, names[i]);
        gb_str(&b, "\n");
        free(names[i]);
    }
    return b.s;
}

/* -o FILE of napsync report (args after "report": progress ... ) and
 * napsync export. */
static int report_to(fixture *f, char *out, size_t cap, const char *path, bool force)
{
    return force ? cli(f, out, cap, "report", "coverage", "--json", "-o", path, "--force", NULL)
                 : cli(f, out, cap, "report", "coverage", "--json", "-o", path, NULL);
}

static int export_to(fixture *f, char *out, size_t cap, const char *path, bool force)
{
    return force ? cli(f, out, cap, "export", "plan", f->plan, "-o", path, "--force", NULL)
                 : cli(f, out, cap, "export", "plan", f->plan, "-o", path, NULL);
}

typedef int (*writer_fn)(fixture *f, char *out, size_t cap, const char *path, bool force);

static void expect_refused_name(fixture *f, writer_fn w, const char *dir, const char *path,
                                bool force, int want_rc, const char *what)
{
    char *before = listing(dir);
    char out[2048];
    int rc = w(f, out, sizeof(out), path, force);
    char *after = listing(dir);
    if (rc != want_rc)
        nst_fail(f->e, "%s: exit %d, expected %d: %s", what, rc, want_rc, out);
    if (strcmp(before, after) != 0)
        nst_fail(f->e, "%s: refused, yet the directory changed:\n%s---\n%s", what, before, after);
    free(before);
    free(after);
}

static void output_names(fixture *f, writer_fn w, const char *tag)
{
    char dir[NST_PATH], sub[NST_PATH + 16], file[NST_PATH + 32], path[NST_PATH + 64], what[96];
    snprintf(what, sizeof(what), "out-%s", tag);
    assert_int_equal(nst_path_join(dir, f->e->dir, what), 0);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/a/b", dir);
    snprintf(path, sizeof(path), "%s/a", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    char out[2048];

    /* Written where asked, whole. */
    snprintf(file, sizeof(file), "%s/first.out", dir);
    int rc = w(f, out, sizeof(out), file, false);
    if (rc != 0)
        nst_fail(f->e, "%s -o %s: exit %d: %s", tag, file, rc, out);
    char *first = slurp(file);
    assert_non_null(first);
    assert_true(strlen(first) > 10);
    /* An existing file: refused without --force, replaced with it. */
    write_bytes(f, file, "marker", 6);
    snprintf(what, sizeof(what), "%s over an existing file", tag);
    expect_refused_name(f, w, dir, file, false, 2, what);
    char *kept = slurp(file);
    assert_string_equal(kept, "marker");
    free(kept);
    rc = w(f, out, sizeof(out), file, true);
    if (rc != 0)
        nst_fail(f->e, "%s --force: exit %d: %s", tag, rc, out);
    /* The output again (a report says when it was made: not the same
     * bytes), in place of the marker. */
    char *replaced = slurp(file);
    bool again = replaced != NULL && strlen(replaced) > 10 && replaced[0] == first[0];
    free(replaced);
    free(first);
    if (!again)
        nst_fail(f->e, "%s --force did not replace the file with the output", tag);

    /* ".." is a path like any other: written there, and only there. */
    snprintf(path, sizeof(path), "%s/a/b/../../dots.out", dir);
    rc = w(f, out, sizeof(out), path, false);
    if (rc != 0)
        nst_fail(f->e, "%s -o %s: exit %d: %s", tag, path, rc, out);
    snprintf(file, sizeof(file), "%s/dots.out", dir);
    assert_true(exists(file));
    char *in_a = listing(sub);
    assert_string_equal(in_a, "");
    free(in_a);

    /* Control characters in the name: refused, nothing created. */
    static const char *const bad_names[] = {"new\nline.out", "tab\there.out", "esc\x1b[31m.out",
                                            "cr\r.out", "del\x7f.out"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, bad_names[i]);
        snprintf(what, sizeof(what), "%s name %zu with a control character", tag, i);
        expect_refused_name(f, w, dir, path, false, 2, what);
        expect_refused_name(f, w, dir, path, true, 2, what);
    }
    /* A directory, a name ending in '/', a FIFO (never opened: it would
     * block), with or without --force. */
    snprintf(path, sizeof(path), "%s/a", dir);
    expect_refused_name(f, w, dir, path, false, 2, "a directory");
    expect_refused_name(f, w, dir, path, true, 2, "a directory, forced");
    snprintf(path, sizeof(path), "%s/new/", dir);
    expect_refused_name(f, w, dir, path, true, 2, "a name ending in /");
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    expect_refused_name(f, w, dir, path, true, 2, "a FIFO, forced");
    /* A symbolic link: refused; forced, the link itself is replaced and
     * what it points to is left alone. */
    snprintf(file, sizeof(file), "%s/target.txt", dir);
    write_bytes(f, file, "target", 6);
    snprintf(path, sizeof(path), "%s/link.out", dir);
    assert_int_equal(symlink(file, path), 0);
    expect_refused_name(f, w, dir, path, false, 2, "a symbolic link");
    rc = w(f, out, sizeof(out), path, true);
    if (rc != 0)
        nst_fail(f->e, "%s --force over a link: exit %d: %s", tag, rc, out);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    char *target = slurp(file);
    assert_string_equal(target, "target");
    free(target);
    /* A directory that does not exist: an error, nothing made. */
    snprintf(path, sizeof(path), "%s/missing/x.out", dir);
    expect_refused_name(f, w, dir, path, false, 1, "a missing directory");
    /* No temporary file is left behind by any of it. */
    char *all = listing(dir);
    if (strstr(all, ".tmp-") != NULL)
        nst_fail(f->e, "%s: temporary files left: %s", tag, all);
    free(all);
}

static void test_output_names(void **state)
{
    fixture *f = *state;
    need_records(f);
    output_names(f, report_to, "report");
    output_names(f, export_to, "export");
    char out[2048];
    int rc = cli(f, out, sizeof(out), "report", "coverage", "--json", "--force", NULL);
    if (rc != 2)
        nst_fail(f->e, "--force without -o: exit %d: %s", rc, out);
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_metacharacters),  NST_TEST(test_invalid_text_on_the_wire),
        NST_TEST(test_mebibyte_values), NST_TEST(test_nul_bytes),
        NST_TEST(test_batches),         NST_TEST(test_hostile_plan_files),
        NST_TEST(test_output_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
