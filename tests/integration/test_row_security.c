/* Row-level security (sql/005), on its own: the database's check of the
 * authorisation rules, as an ordinary role (the daemon's situation), with no
 * daemon in between. Reads under each reader context; writes of rows and of
 * revisions that the rules allow, and ones they forbid, which PostgreSQL
 * must refuse (SQLSTATE 42501) even though nothing else stops them here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pgtest.h"

#define ORG_A   "0a000000-0000-4000-8000-00000000000a" /* ministry, owns the plans */
#define ORG_B   "0b000000-0000-4000-8000-00000000000b" /* police, implements */
#define ORG_P   "0c000000-0000-4000-8000-00000000000c" /* parliament, observes */
#define ALICE   "a1000000-0000-4000-8000-000000000001" /* coordinator of A */
#define BOB     "b0b00000-0000-4000-8000-000000000001" /* implementer of B */
#define OLGA    "01900000-0000-4000-8000-000000000001" /* observer of P */
#define ADA     "ada00000-0000-4000-8000-000000000001" /* administrator of A */
#define DEV_A   "de000000-0000-4000-8000-00000000000a" /* alice's device */
#define DEV_B   "de000000-0000-4000-8000-00000000000b" /* bob's device */
#define DIR     "d1ec7000-0000-4000-8000-000000000000" /* the directory tenant */
#define NAP     "9a000000-0000-4000-8000-000000000001" /* adopted */
#define DRAFT   "9a000000-0000-4000-8000-000000000002" /* A's draft */
#define IND_B   "1b000000-0000-4000-8000-000000000001" /* responsible: B */
#define IND_A   "1b000000-0000-4000-8000-000000000002" /* responsible: A */
#define REP_OK  "2c000000-0000-4000-8000-000000000001" /* approved */
#define REP_SUB "2c000000-0000-4000-8000-000000000002" /* submitted */
#define ACT_B   "3d000000-0000-4000-8000-000000000001" /* lead: B */

static nst_pgt_db db;
static PGconn *role_conn; /* as the ordinary role */
static char role[64];

static const char fixture[] =
    "INSERT INTO organisations (id, code, name, kind, country) VALUES"
    " ('" ORG_A "', 'moa', 'Ministry A', 'ministry', 'ZZ'),"
    " ('" ORG_B "', 'polb', 'Police B', 'police', 'ZZ'),"
    " ('" ORG_P "', 'parl', 'Parliament', 'parliament', 'ZZ');"
    "INSERT INTO principals (id, organisation_id, name) VALUES"
    " ('" ALICE "', '" ORG_A "', 'alice'), ('" BOB "', '" ORG_B "', 'bob'),"
    " ('" OLGA "', '" ORG_P "', 'olga'), ('" ADA "', '" ORG_A "', 'ada');"
    "INSERT INTO principal_roles VALUES ('" ALICE "', '" ORG_A "', 'coordinator'),"
    " ('" BOB "', '" ORG_B "', 'implementer'), ('" OLGA "', '" ORG_P "', 'observer'),"
    " ('" ADA "', '" ORG_A "', 'admin');"
    "INSERT INTO devices (id, principal_id, name, cert_sha256) VALUES"
    " ('" DEV_A "', '" ALICE "', 'dev-a', sha256('a')), ('" DEV_B "', '" BOB "', 'dev-b',"
    "  sha256('b'));"
    "INSERT INTO plans (id, version, tenant_id, changed_by, title, kind, status, period_start,"
    " period_end, owner_id) VALUES"
    " ('" NAP "', 1, '" NAP "', '" ALICE "', 'NAP', 'nap', 'adopted', '2021-01-01', '2025-12-31',"
    "  '" ORG_A "'),"
    " ('" DRAFT "', 1, '" DRAFT "', '" ALICE "', 'Next NAP', 'nap', 'draft', '2026-01-01',"
    "  '2030-12-31', '" ORG_A "');"
    "INSERT INTO indicators (id, version, tenant_id, changed_by, plan_id, title, value_type,"
    " responsible_id) VALUES"
    " ('" IND_B "', 1, '" NAP "', '" ALICE "', '" NAP "', 'Women officers', 'number', '" ORG_B "'),"
    " ('" IND_A "', 1, '" NAP "', '" ALICE "', '" NAP "', 'Budget share', 'percentage',"
    "  '" ORG_A "');"
    "INSERT INTO indicator_reports (id, version, tenant_id, changed_by, plan_id, indicator_id,"
    " period_start, period_end, value, status) VALUES"
    " ('" REP_OK "', 1, '" NAP "', '" ALICE "', '" NAP "', '" IND_B "', '2022-01-01',"
    "  '2022-12-31', 10, 'approved'),"
    " ('" REP_SUB "', 1, '" NAP "', '" BOB "', '" NAP "', '" IND_B "', '2023-01-01',"
    "  '2023-12-31', 12, 'submitted');"
    "INSERT INTO pillars (id, version, tenant_id, changed_by, plan_id, name, kind) VALUES"
    " ('4e000000-0000-4000-8000-000000000001', 1, '" NAP "', '" ALICE "', '" NAP "',"
    "  'Participation', 'participation');"
    "INSERT INTO objectives (id, version, tenant_id, changed_by, plan_id, pillar_id, title) VALUES"
    " ('5f000000-0000-4000-8000-000000000001', 1, '" NAP "', '" ALICE "', '" NAP "',"
    "  '4e000000-0000-4000-8000-000000000001', 'More women in the police');"
    "INSERT INTO actions (id, version, tenant_id, changed_by, plan_id, objective_id, title,"
    " lead_org_id, status) VALUES"
    " ('" ACT_B "', 1, '" NAP "', '" ALICE "', '" NAP "', '5f000000-0000-4000-8000-000000000001',"
    "  'Recruitment drive', '" ORG_B "', 'planned');";

static int group_setup(void **state)
{
    (void)state;
    if (nst_pgt_create(&db, "rls") != 0 || nst_pgt_exec(db.pg, fixture) != 0)
        return -1;
    snprintf(role, sizeof(role), "nst_rls_%ld", (long)getpid());
    char sql[512];
    snprintf(sql, sizeof(sql),
             "DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS;"
             "GRANT USAGE ON SCHEMA public TO %s;"
             "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO %s;",
             role, role, role, role);
    if (nst_pgt_exec(db.pg, sql) != 0)
        return -1;
    char conninfo[1100];
    snprintf(conninfo, sizeof(conninfo), "%s user=%s", db.conninfo, role);
    role_conn = nst_pgt_connect(conninfo);
    return role_conn != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    PQfinish(role_conn);
    role_conn = NULL;
    int rc = nst_pgt_drop(&db);
    char conninfo[1024], sql[160];
    if (role[0] == '\0')
        return rc;
    if (nst_pgt_conninfo(conninfo, sizeof(conninfo), "postgres") != 0)
        return -1;
    PGconn *admin = nst_pgt_connect(conninfo);
    snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS %s", role);
    if (admin == NULL || nst_pgt_exec(admin, sql) != 0)
        rc = -1;
    PQfinish(admin);
    return rc;
}

/* Runs sql as the role under reader (NULL: none) in a transaction that is
 * rolled back; returns the SQLSTATE ("00000" on success) and the first
 * value of the last statement in value (if any). */
static const char *as_reader(const char *reader, const char *sql, char *value, size_t vlen)
{
    static char state[6];
    if (value != NULL && vlen > 0)
        value[0] = '\0';
    PGresult *r = PQexec(role_conn, "BEGIN");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    if (reader != NULL) {
        const char *p[1] = {reader};
        r = PQexecParams(role_conn, "SELECT set_config('napsync.reader', $1, true)", 1, NULL, p,
                         NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
    }
    r = PQexec(role_conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        strcpy(state, "00000");
        if (value != NULL && st == PGRES_TUPLES_OK && PQntuples(r) > 0)
            snprintf(value, vlen, "%s", PQgetvalue(r, 0, 0));
    } else {
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(state, sizeof(state), "%s", s != NULL ? s : "?????");
    }
    PQclear(r);
    r = PQexec(role_conn, "ROLLBACK");
    PQclear(r);
    return state;
}

static long count_as(const char *reader, const char *sql)
{
    char v[32];
    const char *st = as_reader(reader, sql, v, sizeof(v));
    if (strcmp(st, "00000") != 0)
        fail_msg("%s as %s: SQLSTATE %s", sql, reader ? reader : "nobody", st);
    return strtol(v, NULL, 10);
}

static void expect_state(const char *reader, const char *sql, const char *want)
{
    const char *st = as_reader(reader, sql, NULL, 0);
    if (strcmp(st, want) != 0)
        fail_msg("as %s: %s\n  SQLSTATE %s, want %s", reader ? reader : "nobody", sql, st, want);
}

/* ---- reads -------------------------------------------------------------------------------- */

static void test_no_reader_sees_nothing(void **state)
{
    (void)state;
    assert_int_equal(count_as(NULL, "SELECT count(*) FROM plans"), 0);
    assert_int_equal(count_as(NULL, "SELECT count(*) FROM indicator_reports"), 0);
    assert_int_equal(count_as("not-a-uuid", "SELECT count(*) FROM plans"), 0);
    assert_int_equal(count_as(NULL, "SELECT count(*) FROM sync_revisions"), 0);
}

static void test_readers(void **state)
{
    (void)state;
    /* The owner sees its draft; nobody else does. */
    assert_int_equal(count_as(ALICE, "SELECT count(*) FROM plans"), 2);
    assert_int_equal(count_as(BOB, "SELECT count(*) FROM plans"), 1);
    assert_int_equal(count_as(OLGA, "SELECT count(*) FROM plans"), 1);
    /* Reports: writers see every status, an observer the approved ones. */
    assert_int_equal(count_as(BOB, "SELECT count(*) FROM indicator_reports"), 2);
    assert_int_equal(count_as(OLGA, "SELECT count(*) FROM indicator_reports"), 1);
    assert_int_equal(count_as(OLGA, "SELECT count(*) FROM indicator_reports WHERE status = "
                                    "'submitted'"),
                     0);
    assert_int_equal(count_as(OLGA, "SELECT count(*) FROM actions"), 1);
    assert_int_equal(count_as("engine", "SELECT count(*) FROM plans"), 2);
    /* The reports' context: every record of the plans the principal reads. */
    assert_int_equal(count_as("report:" OLGA, "SELECT count(*) FROM indicator_reports"), 2);
    assert_int_equal(count_as("report:" OLGA, "SELECT count(*) FROM plans"), 1);
    assert_int_equal(count_as("report:not-a-uuid", "SELECT count(*) FROM plans"), 0);
}

/* ---- writes -------------------------------------------------------------------------------- */

static void test_rows(void **state)
{
    (void)state;
    static const char pillar[] =
        "INSERT INTO pillars (id, version, tenant_id, changed_by, plan_id, name, kind) VALUES"
        " (gen_random_uuid(), 1, '" NAP "', '%s', '" NAP "', 'Protection', 'protection')";
    char sql[512];
    snprintf(sql, sizeof(sql), pillar, ALICE);
    expect_state("engine", sql, "00000");
    snprintf(sql, sizeof(sql), pillar, OLGA);
    expect_state("engine", sql, "42501");
    snprintf(sql, sizeof(sql), pillar, BOB);
    expect_state("engine", sql, "42501");
    /* A plan for another organisation. */
    expect_state("engine",
                 "INSERT INTO plans (id, version, tenant_id, changed_by, title, kind, status,"
                 " period_start, period_end, owner_id, implements_id) VALUES (gen_random_uuid(),"
                 " 1, gen_random_uuid(), '" BOB "', 'Not ours', 'implementation', 'draft',"
                 " '2024-01-01', '2024-12-31', '" ORG_A "', '" NAP "')",
                 "42501");
    /* Budget lines of the lead organisation's action: allowed. */
    expect_state("engine",
                 "INSERT INTO budget_lines (id, version, tenant_id, changed_by, plan_id, action_id,"
                 " fiscal_year, currency, costed, funding_source) VALUES (gen_random_uuid(), 1,"
                 " '" NAP "', '" BOB "', '" NAP "', '" ACT_B "', 2024, 'USD', 1000,"
                 " 'national_budget')",
                 "00000");
}

/* A revision as the engine writes it. */
static void revision(char *out, size_t n, const char *type, const char *id, const char *op,
                     const char *who, const char *before, const char *after)
{
    snprintf(out, n,
             "INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op,"
             " principal_id, deleted, before, after) VALUES ('%s', '%s', 2, '" NAP "', '%s',"
             " '%s', false, %s, '%s')",
             type, id, op, who, before, after);
}

static void test_revisions(void **state)
{
    (void)state;
    char sql[1024];
    /* Approving: the plan's coordinator, not the reporter. */
    revision(sql, sizeof(sql), "indicator_report", REP_SUB, "update", BOB,
             "'{\"status\": \"submitted\", \"indicator_id\": \"" IND_B "\"}'",
             "{\"status\": \"approved\", \"indicator_id\": \"" IND_B "\"}");
    expect_state("engine", sql, "42501");
    revision(sql, sizeof(sql), "indicator_report", REP_SUB, "update", ALICE,
             "'{\"status\": \"submitted\", \"indicator_id\": \"" IND_B "\"}'",
             "{\"status\": \"approved\", \"indicator_id\": \"" IND_B "\"}");
    expect_state("engine", sql, "00000");
    /* Submitting: the responsible organisation, for its own indicator only. */
    revision(sql, sizeof(sql), "indicator_report", REP_SUB, "update", BOB,
             "'{\"status\": \"draft\", \"indicator_id\": \"" IND_B "\"}'",
             "{\"status\": \"submitted\", \"indicator_id\": \"" IND_B "\"}");
    expect_state("engine", sql, "00000");
    revision(sql, sizeof(sql), "indicator_report", REP_SUB, "update", BOB,
             "'{\"status\": \"draft\", \"indicator_id\": \"" IND_A "\"}'",
             "{\"status\": \"submitted\", \"indicator_id\": \"" IND_A "\"}");
    expect_state("engine", sql, "42501");
    /* An approved report is final, even for its coordinator. */
    revision(sql, sizeof(sql), "indicator_report", REP_OK, "update", ALICE,
             "'{\"status\": \"approved\", \"value\": \"10\", \"indicator_id\": \"" IND_B "\"}'",
             "{\"status\": \"approved\", \"value\": \"11\", \"indicator_id\": \"" IND_B "\"}");
    expect_state("engine", sql, "42501");
    /* The lead organisation changes an action's status, nothing else. */
    revision(sql, sizeof(sql), "action", ACT_B, "update", BOB,
             "'{\"status\": \"planned\", \"title\": \"t\", \"lead_org_id\": \"" ORG_B "\"}'",
             "{\"status\": \"ongoing\", \"title\": \"t\", \"lead_org_id\": \"" ORG_B "\"}");
    expect_state("engine", sql, "00000");
    revision(sql, sizeof(sql), "action", ACT_B, "update", BOB,
             "'{\"status\": \"planned\", \"title\": \"t\", \"lead_org_id\": \"" ORG_B "\"}'",
             "{\"status\": \"planned\", \"title\": \"mine\", \"lead_org_id\": \"" ORG_B "\"}");
    expect_state("engine", sql, "42501");
    /* Comments: in one's own name. */
    revision(sql, sizeof(sql), "comment", "6a000000-0000-4000-8000-000000000001", "create", OLGA,
             "NULL", "{\"author_id\": \"" OLGA "\", \"body\": \"why?\"}");
    expect_state("engine", sql, "00000");
    revision(sql, sizeof(sql), "comment", "6a000000-0000-4000-8000-000000000001", "create", OLGA,
             "NULL", "{\"author_id\": \"" ALICE "\", \"body\": \"why?\"}");
    expect_state("engine", sql, "42501");
    /* An adopted plan is archived, not deleted; a draft may be. */
    static const char del[] =
        "INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op,"
        " principal_id, deleted, before, after) VALUES ('plan', '%s', 2, '%s', 'delete',"
        " '" ALICE "', true, '{\"owner_id\": \"" ORG_A "\", \"kind\": \"nap\","
        " \"status\": \"%s\"}', '{}')";
    snprintf(sql, sizeof(sql), del, NAP, NAP, "adopted");
    expect_state("engine", sql, "42501");
    snprintf(sql, sizeof(sql), del, DRAFT, DRAFT, "draft");
    expect_state("engine", sql, "00000");
}

/* ---- the directory (sql/009) ------------------------------------------------------------ */

static void test_directory(void **state)
{
    (void)state;
    /* Written through SQL by the fixture: one revision each, by nobody. */
    assert_int_equal(count_as("engine",
                              "SELECT count(*) FROM sync_revisions WHERE tenant_id = '" DIR
                              "' AND principal_id IS NULL AND version = 1"),
                     3 + 4 + 4 + 2);
    /* Every principal reads every organisation, the people and roles of its
     * own, and devices: its own, or all of its organisation's if admin. */
    static const char revs[] = "SELECT count(*) FROM sync_revisions WHERE entity_type = ";
    char sql[512];
    snprintf(sql, sizeof(sql), "%s'organisation'", revs);
    assert_int_equal(count_as(OLGA, sql), 3);
    snprintf(sql, sizeof(sql), "%s'principal'", revs);
    assert_int_equal(count_as(ALICE, sql), 2); /* alice, ada */
    assert_int_equal(count_as(BOB, sql), 1);
    snprintf(sql, sizeof(sql), "%s'device'", revs);
    assert_int_equal(count_as(ALICE, sql), 1);
    assert_int_equal(count_as(ADA, sql), 1); /* dev-a, not B's */
    assert_int_equal(count_as(OLGA, sql), 0);
    assert_int_equal(count_as("report:" ADA, sql), 0);
    assert_int_equal(count_as(NULL, sql), 0);

    /* Rows: an administrator of A holds A's people, nobody else does. */
    static const char person[] =
        "INSERT INTO principals (id, version, tenant_id, changed_by, organisation_id, name)"
        " VALUES (gen_random_uuid(), 1, '" DIR "', '%s', '%s', 'new person')";
    snprintf(sql, sizeof(sql), person, ADA, ORG_A);
    expect_state("engine", sql, "00000");
    snprintf(sql, sizeof(sql), person, ALICE, ORG_A);
    expect_state("engine", sql, "42501");
    snprintf(sql, sizeof(sql), person, ADA, ORG_B);
    expect_state("engine", sql, "42501");
    /* Revisions: the same rule, step by step. */
    static const char rev[] =
        "INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op, principal_id,"
        " deleted, before, after) VALUES ('device', '%s', 2, '" DIR "', 'update', '%s', false,"
        " '{\"organisation_id\": \"%s\"}', '{\"organisation_id\": \"%s\", \"revoked\": true}')";
    snprintf(sql, sizeof(sql), rev, DEV_A, ADA, ORG_A, ORG_A);
    expect_state("engine", sql, "00000");
    snprintf(sql, sizeof(sql), rev, DEV_A, ALICE, ORG_A, ORG_A);
    expect_state("engine", sql, "42501");
    snprintf(sql, sizeof(sql), rev, DEV_B, ADA, ORG_B, ORG_B);
    expect_state("engine", sql, "42501");
    /* Nobody's revision (what SQL administration writes) needs a role that
     * bypasses row-level security. */
    expect_state(NULL, "UPDATE devices SET revoked = true WHERE id = '" DEV_A "'", "42501");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_reader_sees_nothing),
        cmocka_unit_test(test_readers),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_revisions),
        cmocka_unit_test(test_directory),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
