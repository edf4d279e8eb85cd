/* The read rules' C twins (policy.h: ns_policy_record_readable,
 * ns_policy_plan_readable) against the SQL they mirror
 * (NS_POLICY_RECORD_READABLE, NS_FEED_PLAN_READABLE), evaluated by a real
 * PostgreSQL on generated rows and readers: the subscriptions' fast path
 * (feed.c) decides with the C, every Pull with the SQL, so the two must
 * agree on every input, NULLs and the case of UUIDs included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "feed.h"
#include "pgtest.h"
#include "policy.h"

#define ROWS 3000

static const char *const org_a = "0a000000-0000-4000-8000-00000000000a";
static const char *const org_a_upper = "0A000000-0000-4000-8000-00000000000A";
static const char *const org_b = "0b000000-0000-4000-8000-00000000000b";
static const char *const me = "1e000000-0000-4000-8000-00000000001e";
static const char *const other = "2f000000-0000-4000-8000-00000000002f";

/* xorshift64*: deterministic, the seed printed on failure. */
static uint64_t rng_state;
static unsigned pick(unsigned n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (unsigned)((rng_state * 2685821657736338717ull) >> 33) % n;
}

static const char *pick_of(const char *const *v, unsigned n)
{
    return v[pick(n)];
}

/* Appends "name": value (or null, or nothing) to a JSON object under way. */
static void json_add(char *buf, size_t cap, const char *name, const char *value)
{
    size_t len = strlen(buf);
    if (value == NULL) {
        if (pick(2) == 0) /* absent and null are both NULL to ->> */
            return;
        snprintf(buf + len, cap - len, "%s\"%s\": null", len > 1 ? ", " : "", name);
        return;
    }
    snprintf(buf + len, cap - len, "%s\"%s\": \"%s\"", len > 1 ? ", " : "", name, value);
}

static bool sql_bool(PGresult *r)
{
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    /* NULL (unknown) reads as not readable, as in a WHERE clause. */
    return !PQgetisnull(r, 0, 0) && PQgetvalue(r, 0, 0)[0] == 't';
}

static void test_record_rule(void **state)
{
    nst_pgt_db *db = *state;
    static const char *const types[] = {"organisation",     "region_membership",
                                        "principal",        "principal_role",
                                        "device",           "plan",
                                        "action",           "indicator",
                                        "indicator_report", "report_value",
                                        "comment",          "budget_line"};
    const char *const orgs[] = {org_a, org_a_upper, org_b, NULL};
    const char *const people[] = {me, other, NULL};
    static const char *const statuses[] = {"approved", "submitted", "draft", "Approved", NULL};
    static const char sql[] = "SELECT " NS_POLICY_RECORD_READABLE(
        "$1::text", "$2::jsonb", "$3::boolean", "$4::uuid", "$5::uuid", "$6::boolean");
    size_t readable = 0;
    for (int i = 0; i < ROWS; i++) {
        ns_policy_row row = {.type = pick_of(types, 12),
                             .organisation_id = pick_of(orgs, 4),
                             .principal_id = pick_of(people, 3),
                             .status = pick_of(statuses, 5)};
        ns_policy_reader rd = {.organisation = pick(2) ? org_a : org_b,
                               .principal = pick(4) ? me : other,
                               .reads_only = pick(2) == 0,
                               .admin = pick(2) == 0};
        char after[512] = "{";
        json_add(after, sizeof(after), "organisation_id", row.organisation_id);
        json_add(after, sizeof(after), "principal_id", row.principal_id);
        json_add(after, sizeof(after), "status", row.status);
        strcat(after, "}");
        const char *v[6] = {row.type,        after,        rd.reads_only ? "true" : "false",
                            rd.organisation, rd.principal, rd.admin ? "true" : "false"};
        PGresult *r = nst_pgt_query(db->pg, sql, 6, v);
        bool want = sql_bool(r);
        PQclear(r);
        bool got = ns_policy_record_readable(&rd, &row);
        if (got != want)
            fail_msg("row %d: %s %s, reader org %s me %s ro %d admin %d: SQL %d, C %d", i, row.type,
                     after, rd.organisation, rd.principal, rd.reads_only, rd.admin, want, got);
        readable += want;
    }
    /* Both answers occur often enough for the comparison to mean something. */
    assert_true(readable > ROWS / 5 && readable < ROWS - ROWS / 5);
}

static void test_plan_rule(void **state)
{
    nst_pgt_db *db = *state;
    const char *const owners[] = {org_a, org_a_upper, org_b, NULL};
    static const char *const statuses[] = {"draft", "active", "archived", "Draft", NULL};
    static const char sql[] = "SELECT " NS_FEED_PLAN_READABLE(
        "p", "$3") " FROM (VALUES ($1::uuid, $2::text)) AS p(owner_id, status)";
    size_t readable = 0;
    for (int i = 0; i < ROWS / 4; i++) {
        const char *owner = pick_of(owners, 4), *status = pick_of(statuses, 5);
        const char *org = pick(2) ? org_a : org_b;
        const char *v[3] = {owner, status, org};
        PGresult *r = nst_pgt_query(db->pg, sql, 3, v);
        bool want = sql_bool(r);
        PQclear(r);
        bool got = ns_policy_plan_readable(org, owner, status);
        if (got != want)
            fail_msg("plan of %s, %s, for %s: SQL %d, C %d", owner ? owner : "NULL",
                     status ? status : "NULL", org, want, got);
        readable += want;
    }
    assert_true(readable > 0 && readable < ROWS / 4);
}

static int setup(void **state)
{
    static nst_pgt_db db;
    if (nst_pgt_create(&db, "policy_read") != 0)
        return -1;
    const char *seed = getenv("NST_SEED");
    rng_state = seed != NULL ? strtoull(seed, NULL, 10) : 0x9e3779b97f4a7c15ull;
    if (rng_state == 0)
        rng_state = 1;
    printf("# NST_SEED=%llu\n", (unsigned long long)rng_state);
    *state = &db;
    return 0;
}

static int teardown(void **state)
{
    return nst_pgt_drop(*state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_rule),
        cmocka_unit_test(test_plan_rule),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
