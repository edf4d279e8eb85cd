/* The directory (sql/009, docs/authorisation.md "The directory") through
 * the sync engine: administrators create people, grant roles and register
 * and revoke devices of their own organisation, and create and change the
 * organisations whose parent it is; nobody else writes the directory; the
 * server's rules on devices (fingerprint, revocation) name the field; and
 * every change is a revision with a feed row, whether it came from a
 * principal or from SQL administration.
 *
 * Organisation A: ada (administrator), alice (coordinator); organisation B:
 * xavier (coordinator). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pushtest.h"

#define PERSON       "d0000000-0000-4000-8000-000000000001"
#define PERSON_B     "d0000000-0000-4000-8000-000000000002"
#define ROLE         "d1000000-0000-4000-8000-000000000001"
#define DEVICE       "d2000000-0000-4000-8000-000000000001"
#define CHILD        "d3000000-0000-4000-8000-000000000001"
#define MEMBERSHIP   "d4000000-0000-4000-8000-000000000001"
#define MEMBERSHIP_2 "d4000000-0000-4000-8000-000000000002"

static char org_a_spec[80], org_b_spec[80], person_spec[80];

static void expect_refused(const ns_identity_info *who, unsigned mid, const char *type,
                           const char *rid, int op, uint64_t base, const char *const *specs,
                           int code, const char *field, const char *needle)
{
    nst_pt_out o;
    nst_pt_push1(who, MID(mid), type, rid, op, base, specs, &o);
    nst_pt_expect(&o, 0, OUT_REJECTED, 0);
    if (o.r[0].reject_code != code || strstr(o.r[0].reason, needle) == NULL ||
        strcmp(o.r[0].field, field) != 0)
        fail_msg("rejected %d \"%s\" (field \"%s\"), expected %d with \"%s\" (field \"%s\")",
                 o.r[0].reject_code, o.r[0].reason, o.r[0].field, code, needle, field);
    nst_pt_out_free(&o);
}

/* A device spec list: the fixed ones, then the fingerprint. */
#define DEVICE_F(fp) F(person_spec, org_a_spec, "name=field-laptop", fp)

static void test_administrator_enrols_a_person_and_a_device(void **state)
{
    (void)state;
    /* One push, in an order the references do not follow: checked at COMMIT. */
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(
        &b, MID(1), "device", DEVICE, OP_CREATE, 0,
        F(person_spec, org_a_spec, "name=field-laptop",
          "fingerprint=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    nst_pt_pb_add(&b, MID(2), "principal_role", ROLE, OP_CREATE, 0,
                  F(person_spec, org_a_spec, "role=implementer"));
    nst_pt_pb_add(&b, MID(3), "principal", PERSON, OP_CREATE, 0, F(org_a_spec, "name=Fatima"));
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.ada, &o);
    nst_pt_results_ok(&o, 3);
    for (size_t i = 0; i < 3; i++)
        nst_pt_expect(&o, i, OUT_APPLIED, 1);
    nst_pt_out_free(&o);
    nst_pt_pb_free(&b);
    /* What authentication reads follows from the fields. */
    assert_string_equal(Q("SELECT encode(cert_sha256, 'hex') FROM devices WHERE id = $1", DEVICE),
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    assert_string_equal(Q("SELECT tenant_id::text FROM principals WHERE id = $1", PERSON),
                        "d1ec7000-0000-4000-8000-000000000000");
    assert_string_equal(Q("SELECT changed_by::text FROM devices WHERE id = $1", DEVICE),
                        nst_pt.ada.principal_id);

    /* Revoked, with a reason: the revocation time is the server's. */
    nst_pt_apply1(&nst_pt.ada, MID(4), "device", DEVICE, OP_UPDATE, 1,
                  F("revoked=true", "revoked_reason=lost in transit"), OUT_APPLIED, 2);
    assert_string_equal(Q("SELECT revoked_at IS NOT NULL FROM devices WHERE id = $1", DEVICE), "t");
    /* A revoked device stays revoked; its certificate is its identity. */
    expect_refused(&nst_pt.ada, 5, "device", DEVICE, OP_UPDATE, 2, F("revoked=false"),
                   ERR(INVALID_ARGUMENT), "revoked", "stays revoked");
    expect_refused(
        &nst_pt.ada, 6, "device", DEVICE, OP_UPDATE, 2,
        F("fingerprint=1111111111111111111111111111111111111111111111111111111111111111"),
        ERR(INVALID_ARGUMENT), "fingerprint", "cannot change");
    /* A role is withdrawn by deleting it. */
    nst_pt_apply1(&nst_pt.ada, MID(7), "principal_role", ROLE, OP_DELETE, 1, NOFIELDS, OUT_APPLIED,
                  2);
}

static void test_field_rules(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.ada, MID(10), "principal", PERSON, OP_CREATE, 0,
                  F(org_a_spec, "name=Fatima"), OUT_APPLIED, 1);
    expect_refused(&nst_pt.ada, 11, "device", DEVICE, OP_CREATE, 0, DEVICE_F("fingerprint=abc"),
                   ERR(INVALID_ARGUMENT), "fingerprint", "64 lowercase hex digits");
    expect_refused(&nst_pt.ada, 12, "principal_role", ROLE, OP_CREATE, 0,
                   F(person_spec, org_a_spec, "role=emperor"), ERR(INVALID_ARGUMENT), "role",
                   "not one of");
    expect_refused(&nst_pt.ada, 13, "principal", PERSON_B, OP_CREATE, 0, F(org_a_spec, "name=  "),
                   ERR(INVALID_ARGUMENT), "name", "not blank");
    /* A device of a person of another organisation. */
    char xavier[80];
    snprintf(xavier, sizeof(xavier), "principal_id=%s", nst_pt.xavier.principal_id);
    expect_refused(
        &nst_pt.ada, 14, "device", DEVICE, OP_CREATE, 0,
        F(xavier, org_a_spec, "name=stolen",
          "fingerprint=2222222222222222222222222222222222222222222222222222222222222222"),
        ERR(INVALID_ARGUMENT), "organisation_id", "not the organisation");
}

static void test_only_administrators_of_the_organisation(void **state)
{
    (void)state;
    /* A coordinator writes plans, not the directory. */
    expect_refused(&nst_pt.alice, 20, "principal", PERSON, OP_CREATE, 0,
                   F(org_a_spec, "name=Fatima"), ERR(PERMISSION_DENIED), "", "only administrators");
    /* An administrator of A, in B. */
    expect_refused(&nst_pt.ada, 21, "principal", PERSON_B, OP_CREATE, 0, F(org_b_spec, "name=Mole"),
                   ERR(PERMISSION_DENIED), "organisation_id", "their own organisation");
    char name[80];
    snprintf(name, sizeof(name), "name=renamed");
    nst_pt_out o;
    nst_pt_push1(&nst_pt.ada, MID(22), "principal", nst_pt.xavier.principal_id, OP_UPDATE, 1,
                 F(name), &o);
    nst_pt_expect(&o, 0, OUT_REJECTED, 0);
    assert_int_equal(o.r[0].reject_code, ERR(PERMISSION_DENIED));
    nst_pt_out_free(&o);
    assert_string_equal(Q("SELECT name FROM principals WHERE id = $1", nst_pt.xavier.principal_id),
                        "xavier");
}

static void test_organisations(void **state)
{
    (void)state;
    char parent_a[80];
    snprintf(parent_a, sizeof(parent_a), "parent_id=%s", nst_pt.org_a);
    /* A's administrator creates a unit under A, renames it, and A itself. */
    nst_pt_apply1(&nst_pt.ada, MID(30), "organisation", CHILD, OP_CREATE, 0,
                  F("code=moa-gender-unit", "name=Gender Unit", "kind=agency", "country=KE",
                    "default_role=implementer", parent_a),
                  OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.ada, MID(31), "organisation", CHILD, OP_UPDATE, 1,
                  F("name=Gender and Inclusion Unit"), OUT_APPLIED, 2);
    expect_refused(&nst_pt.ada, 32, "organisation", CHILD, OP_UPDATE, 2, F("code=other"),
                   ERR(INVALID_ARGUMENT), "code", "cannot change");
    /* Nobody adopts an organisation, nor moves their own. */
    expect_refused(&nst_pt.ada, 33, "organisation", CHILD, OP_UPDATE, 2, F("parent_id"),
                   ERR(PERMISSION_DENIED), "parent_id", "stays");
    char parent_b[80];
    snprintf(parent_b, sizeof(parent_b), "parent_id=%s", nst_pt.org_b);
    expect_refused(&nst_pt.ada, 34, "organisation", nst_pt.org_a, OP_UPDATE, 1, F(parent_b),
                   ERR(PERMISSION_DENIED), "parent_id", "parent's administrators");
    /* Another organisation's administrators, or a coordinator, do not. */
    expect_refused(&nst_pt.alice, 35, "organisation", CHILD, OP_UPDATE, 2, F("name=x"),
                   ERR(PERMISSION_DENIED), "", "only administrators");
    expect_refused(&nst_pt.ada, 36, "organisation", nst_pt.org_b, OP_UPDATE, 1, F("name=x"),
                   ERR(PERMISSION_DENIED), "", "administered by its own");
    /* A unit nobody refers to any more is deleted by its parent's administrators. */
    nst_pt_apply1(&nst_pt.ada, MID(37), "organisation", CHILD, OP_DELETE, 2, NOFIELDS, OUT_APPLIED,
                  3);
}

static void test_sql_administration_is_in_the_feed(void **state)
{
    (void)state;
    long long before = QN0("SELECT seq FROM sync_feed_head");
    assert_string_equal(Q("SELECT napsync_revoke_device($1, 'left the ministry')::text", "dev-o"),
                        "true");
    assert_int_equal(QN0("SELECT seq FROM sync_feed_head"), before + 1);
    const char *id = nst_pt.olga.device_id;
    assert_string_equal(Q("SELECT version::text || ' ' || op || ' ' || coalesce(principal_id::text,"
                          " 'administrator') || ' ' || (after ->> 'revoked')"
                          " FROM sync_revisions WHERE record_id = $1 ORDER BY version DESC"
                          " LIMIT 1",
                          id),
                        "2 update administrator true");
    assert_string_equal(Q("SELECT revoked_at IS NOT NULL FROM devices WHERE id = $1", id), "t");
}

static void test_region_memberships(void **state)
{
    (void)state;
    /* A regional organisation and its administrator, made by SQL. */
    static ns_identity_info rita;
    if (rita.principal_id[0] == '\0') {
        char region[40];
        snprintf(region, sizeof(region), "%s",
                 Q("INSERT INTO organisations (code, name, kind) VALUES ('eac', 'Community',"
                   " 'regional_organisation') RETURNING id::text"));
        snprintf(rita.organisation_id, sizeof(rita.organisation_id), "%s", region);
        snprintf(rita.principal_id, sizeof(rita.principal_id), "%s",
                 Q("INSERT INTO principals (organisation_id, name) VALUES ($1, 'rita')"
                   " RETURNING id::text",
                   region));
        Q("INSERT INTO principal_roles (principal_id, organisation_id, role)"
          " VALUES ($1, $2, 'admin') RETURNING 'ok'",
          rita.principal_id, region);
        snprintf(rita.device_id, sizeof(rita.device_id), "%s",
                 Q("INSERT INTO devices (principal_id, name, cert_sha256)"
                   " VALUES ($1, 'dev-r', sha256('r')) RETURNING id::text",
                   rita.principal_id));
        snprintf(rita.principal_name, sizeof(rita.principal_name), "rita");
        snprintf(rita.roles[0], sizeof(rita.roles[0]), "admin");
        rita.nroles = 1;
    }
    char region_arg[80];
    snprintf(region_arg, sizeof(region_arg), "region_id=%s", rita.organisation_id);
    nst_pt_apply1(&rita, MID(40), "region_membership", MEMBERSHIP, OP_CREATE, 0,
                  F(region_arg, "country=KE", "since:date=2019-07-01"), OUT_APPLIED, 1);
    assert_string_equal(
        Q("SELECT count(*)::text FROM region_members WHERE region_id = $1", rita.organisation_id),
        "1");
    /* Another organisation's administrator does not add members to it... */
    expect_refused(&nst_pt.ada, 41, "region_membership", MEMBERSHIP_2, OP_CREATE, 0,
                   F(region_arg, "country=UG"), ERR(PERMISSION_DENIED), "region_id",
                   "their own organisation");
    /* ...nor does a ministry have members. */
    char ministry_arg[80];
    snprintf(ministry_arg, sizeof(ministry_arg), "region_id=%s", nst_pt.org_a);
    expect_refused(&nst_pt.ada, 42, "region_membership", MEMBERSHIP_2, OP_CREATE, 0,
                   F(ministry_arg, "country=UG"), ERR(INVALID_ARGUMENT), "region_id",
                   "not a regional organisation");
    expect_refused(&rita, 43, "region_membership", MEMBERSHIP, OP_UPDATE, 1, F("country=TZ"),
                   ERR(INVALID_ARGUMENT), "country", "not changed");
    /* A country leaves: the live memberships the reports read lose it. */
    nst_pt_apply1(&rita, MID(44), "region_membership", MEMBERSHIP, OP_DELETE, 1, NOFIELDS,
                  OUT_APPLIED, 2);
    assert_string_equal(
        Q("SELECT count(*)::text FROM region_members WHERE region_id = $1", rita.organisation_id),
        "0");
}

static int group_setup(void **state)
{
    (void)state;
    if (nst_pt_setup("directory") != 0)
        return -1;
    snprintf(org_a_spec, sizeof(org_a_spec), "organisation_id=%s", nst_pt.org_a);
    snprintf(org_b_spec, sizeof(org_b_spec), "organisation_id=%s", nst_pt.org_b);
    snprintf(person_spec, sizeof(person_spec), "principal_id=%s", PERSON);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nst_pt_teardown();
}

/* Each test starts from the fixture's directory: what a test adds is
 * removed (as a superuser, past the engine) with its history. */
static int test_setup(void **state)
{
    (void)state;
    nst_pt_exec_ok(
        "DELETE FROM sync_feed WHERE record_id IN (SELECT id FROM devices WHERE name = "
        "'field-laptop' UNION SELECT id FROM principals WHERE name = 'Fatima' UNION"
        " SELECT '" ROLE "'::uuid UNION SELECT '" CHILD "'::uuid);"
        "DELETE FROM sync_revisions WHERE record_id IN ('" DEVICE "', '" ROLE "', '" PERSON
        "', '" CHILD "');"
        "DELETE FROM devices WHERE id = '" DEVICE "';"
        "DELETE FROM principal_roles WHERE id = '" ROLE "';"
        "DELETE FROM principals WHERE id = '" PERSON "';"
        "DELETE FROM organisations WHERE id = '" CHILD "';"
        "DELETE FROM sync_feed WHERE record_id IN ('" MEMBERSHIP "', '" MEMBERSHIP_2 "');"
        "DELETE FROM sync_revisions WHERE record_id IN ('" MEMBERSHIP "', '" MEMBERSHIP_2 "');"
        "DELETE FROM region_memberships WHERE id IN ('" MEMBERSHIP "', '" MEMBERSHIP_2 "');"
        "DELETE FROM sync_mutations;");
    return 0;
}

#define T(name) cmocka_unit_test_setup_teardown(name, test_setup, NULL)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_administrator_enrols_a_person_and_a_device), T(test_field_rules),
        T(test_only_administrators_of_the_organisation),    T(test_organisations),
        T(test_sql_administration_is_in_the_feed),          T(test_region_memberships),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
