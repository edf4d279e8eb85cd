/* The schema is ready to be distributed by Citus (docs/scaling.md, sql/011),
 * read from the catalogue of a migrated database: every table is placed
 * (distributed by a column, a reference table, or local to the
 * coordinator); every primary key, unique constraint and unique index of a
 * distributed table includes its distribution column; every foreign key
 * between distributed tables pairs their distribution columns, and none
 * crosses from a reference or local table to a distributed one. The
 * distributed tables are the non-directory types of sync_entity_types
 * (a synced type added later is checked without a word here) and the
 * engine tables placed below. The checker is shown to fail on tables
 * broken on purpose; what sql/011 put in place of the old keys (ids unique
 * across plans, plans their own tenant, lookups by id through an index,
 * the registry's conflict target) is checked too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "pgtest.h"
#include "registry.h"

/* ---- the distribution plan (docs/scaling.md, "Where each table goes") ---------------- */

/* Besides the plan-content types (sync_entity_types, not directory), which
 * are distributed by tenant_id: the engine's tables distributed, each with
 * its column (same position in both literals). */
static const char engine_distributed[] = "{sync_revisions,sync_conflicts,sync_mutations}";
static const char engine_columns[] = "{tenant_id,tenant_id,mutation_id}";
/* Besides the directory types: copied to every node. */
static const char reference_tables[] = "{sync_entity_types,napsync_references,wps_tags}";
/* On the coordinator only: the feed, whose head orders every commit, and
 * the migrations' own bookkeeping. */
static const char local_tables[] = "{sync_feed,sync_feed_head,napsync_migrations}";

/* One row per violation: the table and what is wrong, in order. $1, $2:
 * the engine's distributed tables and their columns; $3: the reference
 * tables, $4: the local ones (besides those sync_entity_types places). */
static const char check_sql[] =
    "WITH plan (name, kind, col) AS ("
    "  SELECT table_name, CASE WHEN directory THEN 'reference' ELSE 'distributed' END,"
    "         CASE WHEN directory THEN NULL ELSE 'tenant_id' END"
    "    FROM sync_entity_types"
    "  UNION ALL SELECT x.t, 'distributed', x.c FROM unnest($1::text[], $2::text[]) AS x(t, c)"
    "  UNION ALL SELECT x.t, 'reference', NULL FROM unnest($3::text[]) AS x(t)"
    "  UNION ALL SELECT x.t, 'local', NULL FROM unnest($4::text[]) AS x(t)),"
    " placed AS ("
    "  SELECT p.name, p.kind, p.col, c.oid AS rel, a.attnum, a.atttypid"
    "    FROM plan p"
    "    LEFT JOIN pg_class c ON c.oid = to_regclass(p.name)"
    "    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = p.col"
    "         AND NOT a.attisdropped),"
    " dist AS (SELECT * FROM placed WHERE kind = 'distributed' AND attnum IS NOT NULL)"
    " SELECT name::text, 'no such table' FROM placed WHERE rel IS NULL"
    " UNION ALL"
    " SELECT name, format('is placed %s times', count(*)) FROM placed GROUP BY name"
    "  HAVING count(*) > 1"
    " UNION ALL"
    " SELECT c.relname::text,"
    "        'is placed nowhere (distributed, reference or local: docs/scaling.md)'"
    "   FROM pg_class c"
    "  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
    "    AND NOT c.relispartition"
    "    AND c.oid NOT IN (SELECT rel FROM placed WHERE rel IS NOT NULL)"
    " UNION ALL"
    " SELECT name, format('has no column %s to be distributed by', col) FROM placed"
    "  WHERE kind = 'distributed' AND rel IS NOT NULL AND attnum IS NULL"
    " UNION ALL"
    " SELECT d.name, format('its %s is of type %s, unlike other tables distributed by %s',"
    "                      d.col, format_type(d.atttypid, NULL), d.col)"
    "   FROM dist d"
    "  WHERE EXISTS (SELECT 1 FROM dist o WHERE o.col = d.col AND o.atttypid <> d.atttypid)"
    " UNION ALL"
    " SELECT d.name, 'has no primary key' FROM dist d"
    "  WHERE NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = d.rel AND i.indisprimary)"
    " UNION ALL"
    " SELECT d.name, format('%s %s lacks %s',"
    "                      CASE WHEN i.indisprimary THEN 'primary key' ELSE 'unique index' END,"
    "                      i.indexrelid::regclass, d.col)"
    "   FROM dist d JOIN pg_index i ON i.indrelid = d.rel AND i.indisunique"
    "  WHERE NOT d.attnum = ANY (i.indkey::int2[])"
    " UNION ALL"
    " SELECT d.name, format('exclusion constraint %s lacks %s', k.conname, d.col)"
    "   FROM dist d JOIN pg_constraint k ON k.conrelid = d.rel AND k.contype = 'x'"
    "  WHERE NOT d.attnum = ANY (k.conkey)"
    " UNION ALL"
    " SELECT s.name, CASE"
    "     WHEN s.kind = 'distributed' AND t.kind = 'distributed' THEN"
    "       format('foreign key %s does not pair %s with %s.%s', k.conname, s.col, t.name, t.col)"
    "     WHEN s.kind = 'distributed' THEN"
    "       format('foreign key %s refers to %s, which is neither distributed nor a reference"
    " table', k.conname, k.confrelid::regclass)"
    "     WHEN s.kind = 'reference' THEN"
    "       format('foreign key %s of a reference table refers to %s, which is not one',"
    "              k.conname, k.confrelid::regclass)"
    "     ELSE format('foreign key %s of a local table refers to %s, which is distributed',"
    "                 k.conname, k.confrelid::regclass) END"
    "   FROM pg_constraint k"
    "   JOIN placed s ON s.rel = k.conrelid"
    "   LEFT JOIN placed t ON t.rel = k.confrelid"
    "  WHERE k.contype = 'f' AND NOT coalesce("
    "        (s.kind = 'distributed' AND t.kind = 'reference')"
    "     OR (s.kind = 'distributed' AND t.kind = 'distributed' AND s.col = t.col"
    "         AND s.atttypid = t.atttypid"
    "         AND EXISTS (SELECT 1 FROM unnest(k.conkey, k.confkey) AS x(a, b)"
    "                      WHERE x.a = s.attnum AND x.b = t.attnum))"
    "     OR (s.kind = 'reference' AND t.kind = 'reference')"
    "     OR (s.kind = 'local' AND t.kind IS DISTINCT FROM 'distributed'), false)"
    " ORDER BY 1, 2";

/* How many tables the plan distributes (the checker must not pass on an
 * empty plan). */
static const char count_sql[] =
    "SELECT (SELECT count(*) FROM sync_entity_types WHERE NOT directory)"
    "       + cardinality($1::text[])";

static nst_pgt_db db;

#define ORG    "0a000000-0000-4000-8000-00000000000a"
#define ALICE  "a1000000-0000-4000-8000-000000000001"
#define PLAN_1 "9a000000-0000-4000-8000-000000000001"
#define PLAN_2 "9a000000-0000-4000-8000-000000000002"
#define IND    "1b000000-0000-4000-8000-000000000001"
#define NOTE   "5e000000-0000-4000-8000-000000000001"
#define DIR    "d1ec7000-0000-4000-8000-000000000000" /* the directory tenant */

static const char fixture[] =
    "INSERT INTO organisations (id, code, name, kind, country) VALUES"
    " ('" ORG "', 'moa', 'Ministry A', 'ministry', 'ZZ');"
    "INSERT INTO principals (id, organisation_id, name) VALUES ('" ALICE "', '" ORG "', 'alice');"
    "INSERT INTO plans (id, version, tenant_id, changed_by, title, kind, status, period_start,"
    " period_end, owner_id) VALUES"
    " ('" PLAN_1 "', 1, '" PLAN_1 "', '" ALICE "', 'NAP', 'nap', 'adopted', '2021-01-01',"
    "  '2025-12-31', '" ORG "'),"
    " ('" PLAN_2 "', 1, '" PLAN_2 "', '" ALICE "', 'Next NAP', 'nap', 'draft', '2026-01-01',"
    "  '2030-12-31', '" ORG "');"
    "INSERT INTO indicators (id, version, tenant_id, changed_by, plan_id, title, value_type)"
    " VALUES ('" IND "', 1, '" PLAN_1 "', '" ALICE "', '" PLAN_1 "', 'Women in office',"
    " 'number');";

static int group_setup(void **state)
{
    (void)state;
    /* The cluster's own user: a superuser, so row-level security does not
     * hide rows from the checks below. */
    if (nst_pgt_create(&db, "citus") != 0 || nst_pgt_exec(db.pg, fixture) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nst_pgt_drop(&db);
}

/* Before each test: no transaction or setting left by one that failed. */
static int clean_session(void **state)
{
    (void)state;
    return nst_pgt_exec(db.pg, "ROLLBACK; RESET ALL");
}

/* The checker's rows, one "table: problem" line each, in a heap string
 * (empty when there are none). */
static char *violations(void)
{
    const char *params[4] = {engine_distributed, engine_columns, reference_tables, local_tables};
    PGresult *r = nst_pgt_query(db.pg, check_sql, 4, params);
    if (r == NULL)
        fail_msg("the checker's query failed");
    size_t len = 1;
    for (int i = 0; i < PQntuples(r); i++)
        len += strlen(PQgetvalue(r, i, 0)) + strlen(PQgetvalue(r, i, 1)) + 3;
    char *out = malloc(len);
    assert_non_null(out);
    out[0] = '\0';
    size_t at = 0;
    for (int i = 0; i < PQntuples(r); i++)
        at += (size_t)snprintf(out + at, len - at, "%s: %s\n", PQgetvalue(r, i, 0),
                               PQgetvalue(r, i, 1));
    PQclear(r);
    return out;
}

/* Runs sql (several statements may travel in one string); returns its
 * SQLSTATE ("00000": it succeeded) and, on failure, the message in msg. */
static const char *state_of(const char *sql, char *msg, size_t msglen)
{
    static char st[6];
    PGresult *r = PQexec(db.pg, sql);
    ExecStatusType es = PQresultStatus(r);
    if (msg != NULL && msglen > 0)
        msg[0] = '\0';
    if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
        strcpy(st, "00000");
    } else {
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(st, sizeof(st), "%s", s != NULL ? s : "?????");
        if (msg != NULL)
            snprintf(msg, msglen, "%s", PQresultErrorMessage(r));
    }
    PQclear(r);
    return st;
}

static void exec_ok(const char *sql)
{
    nst_pgt_exec_ok(db.pg, sql, 0, NULL);
}

/* ---- the schema as migrated ------------------------------------------------------------- */

static void test_schema_is_ready(void **state)
{
    (void)state;
    const char *p[1] = {engine_distributed};
    PGresult *r = nst_pgt_query(db.pg, count_sql, 1, p);
    assert_non_null(r);
    /* 11 plan-content types and 3 engine tables today. */
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (n < 14)
        fail_msg("the plan distributes %ld tables; expected the plan content and the engine's", n);
    char *v = violations();
    bool ready = v[0] == '\0';
    if (!ready)
        print_error("The schema cannot be distributed as docs/scaling.md plans:\n%s", v);
    free(v);
    assert_true(ready);
}

/* ---- the checker fails on what breaks the plan ------------------------------------------ */

static void test_broken_tables_are_caught(void **state)
{
    (void)state;
    exec_ok("BEGIN");
    /* A synced type keyed by id alone, unique on a code, referring to a
     * plan with the tenant columns crossed, and to the feed. */
    exec_ok("CREATE TABLE citus_bad_notes (id uuid PRIMARY KEY, tenant_id uuid NOT NULL,"
            " plan_ref uuid, code text UNIQUE, seq_ref bigint REFERENCES sync_feed (seq),"
            " deleted boolean NOT NULL DEFAULT false,"
            " FOREIGN KEY (tenant_id, plan_ref) REFERENCES plans (id, tenant_id));"
            "CREATE UNIQUE INDEX citus_bad_notes_live ON citus_bad_notes (code, id) WHERE NOT"
            " deleted;"
            "INSERT INTO sync_entity_types (name, table_name, tenant_field)"
            " VALUES ('citus_bad_note', 'citus_bad_notes', 'plan_ref');"
            /* A directory type (a reference table) referring to plans. */
            "CREATE TABLE citus_bad_people (id uuid PRIMARY KEY, tenant_id uuid, plan_ref uuid,"
            " FOREIGN KEY (tenant_id, plan_ref) REFERENCES plans (tenant_id, id));"
            "INSERT INTO sync_entity_types (name, table_name, directory)"
            " VALUES ('citus_bad_person', 'citus_bad_people', true);"
            /* A synced type without the column; a table nobody placed. */
            "CREATE TABLE citus_bad_untenanted (id uuid PRIMARY KEY);"
            "INSERT INTO sync_entity_types (name, table_name)"
            " VALUES ('citus_bad_untenanted', 'citus_bad_untenanted');"
            "CREATE TABLE citus_stray (x int)");
    char *v = violations();
    exec_ok("ROLLBACK");
    static const char want[] =
        "citus_bad_notes: foreign key citus_bad_notes_seq_ref_fkey refers to sync_feed, which is"
        " neither distributed nor a reference table\n"
        "citus_bad_notes: foreign key citus_bad_notes_tenant_id_plan_ref_fkey does not pair"
        " tenant_id with plans.tenant_id\n"
        "citus_bad_notes: primary key citus_bad_notes_pkey lacks tenant_id\n"
        "citus_bad_notes: unique index citus_bad_notes_code_key lacks tenant_id\n"
        "citus_bad_notes: unique index citus_bad_notes_live lacks tenant_id\n"
        "citus_bad_people: foreign key citus_bad_people_tenant_id_plan_ref_fkey of a reference"
        " table refers to plans, which is not one\n"
        "citus_bad_untenanted: has no column tenant_id to be distributed by\n"
        "citus_stray: is placed nowhere (distributed, reference or local: docs/scaling.md)\n";
    bool caught = strcmp(v, want) == 0;
    if (!caught)
        print_error("got:\n%swant:\n%s", v, want);
    free(v);
    assert_true(caught);
    /* And after the rollback, the schema is clean again. */
    v = violations();
    assert_string_equal(v, "");
    free(v);
}

/* ---- what replaced the keys on id ------------------------------------------------------- */

static void test_ids_unique_across_plans(void **state)
{
    (void)state;
    /* Every synced type keyed by (tenant_id, id) has the check
     * (napsync_keep_ids_unique, sql/011). */
    PGresult *r =
        nst_pgt_query(db.pg,
                      "SELECT string_agg(t.table_name, ', ') FROM sync_entity_types t"
                      " WHERE NOT t.directory AND NOT EXISTS ("
                      "   SELECT 1 FROM pg_trigger g WHERE g.tgrelid = to_regclass(t.table_name)"
                      "      AND g.tgname = t.table_name || '_id_unique' AND g.tgdeferrable"
                      "      AND g.tginitdeferred AND g.tgenabled <> 'D')",
                      0, NULL);
    assert_non_null(r);
    if (!PQgetisnull(r, 0, 0))
        fail_msg("no deferred check of ids across plans on: %s", PQgetvalue(r, 0, 0));
    PQclear(r);
    char msg[512];
    /* The same indicator id in another plan: refused at COMMIT, whoever
     * writes it (the primary key alone would allow it). */
    const char *st = state_of(
        "BEGIN; INSERT INTO indicators (id, version, tenant_id, changed_by, plan_id, title,"
        " value_type) VALUES ('" IND "', 1, '" PLAN_2 "', '" ALICE "', '" PLAN_2 "', 'Copy',"
        " 'number'); COMMIT",
        msg, sizeof(msg));
    exec_ok("ROLLBACK"); /* (a no-op when COMMIT ran) */
    assert_string_equal(st, "23505");
    if (strstr(msg, "indicator.id: " IND " is the id of a record of another plan") == NULL)
        fail_msg("message: %s", msg);
    /* In its own plan: the primary key, at once. */
    st = state_of("INSERT INTO indicators (id, version, tenant_id, changed_by, plan_id, title,"
                  " value_type) VALUES ('" IND "', 1, '" PLAN_1 "', '" ALICE "', '" PLAN_1 "',"
                  " 'Again', 'number')",
                  msg, sizeof(msg));
    assert_string_equal(st, "23505");
    /* An id of another type is another record. */
    exec_ok("INSERT INTO pillars (id, version, tenant_id, changed_by, plan_id, name, kind)"
            " VALUES ('" IND "', 1, '" PLAN_2 "', '" ALICE "', '" PLAN_2 "', 'Participation',"
            " 'participation')");
    /* A plan is its own tenant: what places it with its content. */
    st = state_of("INSERT INTO plans (id, version, tenant_id, changed_by, title, kind, status,"
                  " period_start, period_end, owner_id) VALUES (gen_random_uuid(), 1, '" PLAN_1
                  "', '" ALICE "', 'Elsewhere', 'nap', 'draft', '2021-01-01', '2021-12-31', '" ORG
                  "')",
                  msg, sizeof(msg));
    assert_string_equal(st, "23514");
    assert_non_null(strstr(msg, "plans_own_tenant"));
}

/* EXPLAINs sql and fails unless the plan scans an index. */
static void expect_index(const char *sql, const char *what)
{
    PGresult *r = nst_pgt_query(db.pg, sql, 0, NULL);
    assert_non_null(r);
    bool indexed = false;
    for (int k = 0; k < PQntuples(r); k++)
        indexed = indexed || strstr(PQgetvalue(r, k, 0), "Index") != NULL;
    PQclear(r);
    if (!indexed)
        fail_msg("%s: no index serves %s", what, sql);
}

/* Lookups without the tenant (the engine's by id, history's by record, a
 * conflict by id) have an index: with sequential scans priced out, the
 * plan must use one. */
static void test_lookups_by_id_use_an_index(void **state)
{
    (void)state;
    exec_ok("SET enable_seqscan = off");
    PGresult *types =
        nst_pgt_query(db.pg, "SELECT table_name FROM sync_entity_types ORDER BY name", 0, NULL);
    assert_non_null(types);
    for (int i = 0; i < PQntuples(types); i++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "EXPLAIN SELECT * FROM \"%s\" WHERE id = ANY ('{" IND "}'::uuid[])",
                 PQgetvalue(types, i, 0));
        expect_index(sql, PQgetvalue(types, i, 0));
    }
    PQclear(types);
    expect_index("EXPLAIN SELECT * FROM sync_revisions WHERE entity_type = 'indicator'"
                 " AND record_id = '" IND "' AND version < 10 ORDER BY version DESC LIMIT 5",
                 "history");
    expect_index("EXPLAIN SELECT * FROM sync_conflicts WHERE id = '" IND "'", "a conflict");
    exec_ok("RESET enable_seqscan");
}

/* ---- the registry's conflict target ----------------------------------------------------- */

#define NOTE_COLUMNS                                                                               \
    "id uuid NOT NULL, version bigint NOT NULL, tenant_id uuid NOT NULL,"                          \
    " deleted boolean NOT NULL DEFAULT false,"                                                     \
    " changed_by uuid NOT NULL REFERENCES principals (id),"                                        \
    " changed_device uuid REFERENCES devices (id), changed_at timestamptz NOT NULL DEFAULT now()," \
    " plan_id uuid, body text"

static void load_fails(const char *needle)
{
    ns_registry r;
    char err[512] = "";
    if (ns_registry_load(db.conninfo, &r, err, sizeof(err)) == 0) {
        ns_registry_free(&r);
        fail_msg("ns_registry_load succeeded; expected an error with \"%s\"", needle);
    }
    if (strstr(err, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err, needle);
}

/* Writes the note through the type's upsert (version v) and returns how
 * many rows of it the table holds at version v. */
static long upsert_note(const ns_entity_type *t, int v)
{
    char json[512];
    snprintf(json, sizeof(json),
             "[{\"id\": \"" NOTE "\", \"version\": %d, \"tenant_id\": \"" PLAN_1 "\","
             " \"deleted\": false, \"changed_by\": \"" ALICE "\", \"changed_device\": null,"
             " \"plan_id\": \"" PLAN_1 "\", \"body\": \"version %d\"}]",
             v, v);
    const char *p[1] = {json};
    nst_pgt_exec_ok(db.pg, t->sql_upsert, 1, p);
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM citus_notes WHERE id = '" NOTE "' AND version = %d"
             " AND body = 'version %d'",
             v, v);
    PGresult *r = nst_pgt_query(db.pg, sql, 0, NULL);
    assert_non_null(r);
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static void test_registry_keys(void **state)
{
    (void)state;
    ns_registry reg;
    char err[512];
    if (ns_registry_load(db.conninfo, &reg, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    size_t keyed = 0;
    for (size_t i = 0; i < reg.ntypes; i++) {
        const ns_entity_type *t = &reg.types[i];
        if (t->tenant_keyed == t->directory)
            fail_msg("%s: keyed by %s", t->name, t->tenant_keyed ? "(tenant_id, id)" : "(id)");
        keyed += t->tenant_keyed;
    }
    assert_true(keyed >= 11);
    ns_registry_free(&reg);

    /* A key the engine cannot upsert on, or none: refused at start. */
    exec_ok("CREATE TABLE citus_notes (" NOTE_COLUMNS ", PRIMARY KEY (id, version));"
            "INSERT INTO sync_entity_types (name, table_name, tenant_field)"
            " VALUES ('citus_note', 'citus_notes', 'plan_id')");
    load_fails("table citus_notes of entity type citus_note: its primary key must be (id) or"
               " (tenant_id, id)");
    exec_ok("ALTER TABLE citus_notes DROP CONSTRAINT citus_notes_pkey");
    load_fails("its primary key must be (id) or (tenant_id, id)");

    /* Either key: the upsert's conflict target, a create and then an update. */
    static const char *const keys[] = {"(tenant_id, id)", "(id)"};
    for (size_t k = 0; k < 2; k++) {
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "DELETE FROM citus_notes; ALTER TABLE citus_notes ADD PRIMARY KEY %s", keys[k]);
        exec_ok(sql);
        if (ns_registry_load(db.conninfo, &reg, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        const ns_entity_type *t = ns_registry_find(&reg, "citus_note");
        assert_non_null(t);
        assert_int_equal(t->tenant_keyed, k == 0);
        assert_int_equal(upsert_note(t, 1), 1);
        assert_int_equal(upsert_note(t, 2), 1);
        ns_registry_free(&reg);
        exec_ok("ALTER TABLE citus_notes DROP CONSTRAINT citus_notes_pkey");
    }
    exec_ok("DELETE FROM sync_entity_types WHERE name = 'citus_note'; DROP TABLE citus_notes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_schema_is_ready, clean_session),
        cmocka_unit_test_setup(test_broken_tables_are_caught, clean_session),
        cmocka_unit_test_setup(test_ids_unique_across_plans, clean_session),
        cmocka_unit_test_setup(test_lookups_by_id_use_an_index, clean_session),
        cmocka_unit_test_setup(test_registry_keys, clean_session),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
