/* The reporting workflow (docs/authorisation.md "The reporting workflow")
 * through the sync engine: every transition, legal and illegal, for the
 * reporter (the indicator's responsible organisation) and the approver
 * (the plan's coordinator); approval locks the period; a correction takes
 * the approved value's place; and every step is in the report's history.
 *
 * Organisation A (alice, coordinator) owns an adopted NAP whose indicator
 * organisation B (xavier) is responsible for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pushtest.h"

#define REP_2 "2c000000-0000-4000-8000-000000000002"
#define REP_3 "2c000000-0000-4000-8000-000000000003"
#define VAL_1 "3e000000-0000-4000-8000-000000000001"
#define VAL_2 "3e000000-0000-4000-8000-000000000002"

static void expect_rejected(const nst_pt_out *o, int code, const char *needle)
{
    nst_pt_expect(o, 0, OUT_REJECTED, 0);
    if (o->r[0].reject_code != code || strstr(o->r[0].reason, needle) == NULL)
        fail_msg("rejected %d \"%s\", expected %d with \"%s\"", o->r[0].reject_code, o->r[0].reason,
                 code, needle);
}

/* One step that must be refused with code and needle, changing nothing. */
static void refused(const ns_identity_info *who, unsigned mid, const char *rid, int op,
                    uint64_t base, const char *const *specs, int code, const char *needle)
{
    const char *before = Q("SELECT version || status FROM indicator_reports WHERE id = $1", rid);
    char was[64];
    snprintf(was, sizeof(was), "%s", before ? before : "");
    nst_pt_out o;
    nst_pt_push1(who, MID(mid), "indicator_report", rid, op, base, specs, &o);
    expect_rejected(&o, code, needle);
    nst_pt_out_free(&o);
    const char *after = Q("SELECT version || status FROM indicator_reports WHERE id = $1", rid);
    assert_string_equal(was, after ? after : "");
}

static void setup_plan(void)
{
    nst_pt_apply1(&nst_pt.alice, MID(100), "plan", PLAN_1, OP_CREATE, 0,
                  PLAN_F("title=NAP", "status=adopted"), OUT_APPLIED, 1);
    const char *ind[] = {NST_PT_INDICATOR(PLAN_1), "disaggregation=sex", NULL, NULL};
    char resp[80];
    snprintf(resp, sizeof(resp), "responsible_id=%s", nst_pt.org_b);
    ind[4] = resp;
    nst_pt_apply1(&nst_pt.alice, MID(101), "indicator", IND_1, OP_CREATE, 0, ind, OUT_APPLIED, 1);
}

static void test_transitions(void **state)
{
    (void)state;
    setup_plan();
    /* The approver does not approve what was never submitted... */
    nst_pt_apply1(&nst_pt.xavier, MID(1), "indicator_report", REP_1, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "value=10"), OUT_APPLIED, 1);
    refused(&nst_pt.alice, 2, REP_1, OP_UPDATE, 1, F("status=approved"), ERR(INVALID_ARGUMENT),
            "not a step of the workflow");
    /* ...nor does anyone return a draft, or invent a status. */
    refused(&nst_pt.alice, 3, REP_1, OP_UPDATE, 1, F("status=returned", "return_reason=x"),
            ERR(INVALID_ARGUMENT), "not a step of the workflow");
    refused(&nst_pt.xavier, 4, REP_1, OP_UPDATE, 1, F("status=published"), ERR(INVALID_ARGUMENT),
            "not a step of the workflow");
    /* The reporter edits the draft and adds its breakdown. */
    nst_pt_apply1(&nst_pt.xavier, MID(5), "indicator_report", REP_1, OP_UPDATE, 1,
                  F("narrative=first count"), OUT_APPLIED, 2);
    nst_pt_apply1(
        &nst_pt.xavier, MID(6), "report_value", VAL_1, OP_CREATE, 0,
        F("plan_id=" PLAN_1, "report_id=" REP_1, "dimension=sex", "category=female", "value=6"),
        OUT_APPLIED, 1);
    /* Submitted with values that do not add up: refused, naming the value. */
    nst_pt_out o;
    nst_pt_push1(&nst_pt.xavier, MID(7), "indicator_report", REP_1, OP_UPDATE, 2,
                 F("status=submitted"), &o);
    expect_rejected(&o, ERR(INVALID_ARGUMENT), "sum to 6, the report's value is 10");
    assert_string_equal(o.r[0].field, "value");
    nst_pt_out_free(&o);
    nst_pt_apply1(
        &nst_pt.xavier, MID(8), "report_value", VAL_2, OP_CREATE, 0,
        F("plan_id=" PLAN_1, "report_id=" REP_1, "dimension=sex", "category=male", "value=4"),
        OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.xavier, MID(9), "indicator_report", REP_1, OP_UPDATE, 2,
                  F("status=submitted"), OUT_APPLIED, 3);
    /* Submitted: nobody changes it, its values are locked, the reporter
     * does not approve it, another organisation's coordinator neither. */
    refused(&nst_pt.xavier, 10, REP_1, OP_UPDATE, 3, F("value=11"), ERR(PERMISSION_DENIED),
            "withdraw it to draft");
    refused(&nst_pt.alice, 11, REP_1, OP_UPDATE, 3, F("value=11"), ERR(PERMISSION_DENIED),
            "withdraw it to draft");
    refused(&nst_pt.xavier, 12, REP_1, OP_UPDATE, 3, F("status=approved"), ERR(PERMISSION_DENIED),
            "only a coordinator of the plan's organisation");
    refused(&nst_pt.xavier, 13, REP_1, OP_DELETE, 3, NOFIELDS, ERR(PERMISSION_DENIED),
            "withdraw it to draft before deleting");
    nst_pt_push1(&nst_pt.xavier, MID(14), "report_value", VAL_2, OP_UPDATE, 1, F("value=5"), &o);
    nst_pt_expect(&o, 0, OUT_REJECTED, 0);
    assert_string_equal(o.r[0].field, "report_id");
    nst_pt_out_free(&o);
    /* Returned, with a reason; a return without one is refused. */
    refused(&nst_pt.alice, 15, REP_1, OP_UPDATE, 3, F("status=returned"), ERR(INVALID_ARGUMENT),
            "return_reason");
    refused(&nst_pt.alice, 16, REP_1, OP_UPDATE, 3,
            F("status=returned", "return_reason=source?", "value=3"), ERR(INVALID_ARGUMENT),
            "changes only status and return_reason");
    nst_pt_apply1(&nst_pt.alice, MID(17), "indicator_report", REP_1, OP_UPDATE, 3,
                  F("status=returned", "return_reason=Attach the recruitment register"),
                  OUT_APPLIED, 4);
    /* Returned: the reporter fixes it and submits again. */
    nst_pt_apply1(&nst_pt.xavier, MID(18), "indicator_report", REP_1, OP_UPDATE, 4,
                  F("evidence=register-2025.pdf", "status=submitted"), OUT_APPLIED, 5);
    /* Withdrawn to draft and submitted again: the reporter's steps. */
    nst_pt_apply1(&nst_pt.xavier, MID(19), "indicator_report", REP_1, OP_UPDATE, 5,
                  F("status=draft"), OUT_APPLIED, 6);
    nst_pt_apply1(&nst_pt.xavier, MID(20), "indicator_report", REP_1, OP_UPDATE, 6,
                  F("status=submitted"), OUT_APPLIED, 7);
    /* Approved by the plan's coordinator: final. */
    nst_pt_apply1(&nst_pt.alice, MID(21), "indicator_report", REP_1, OP_UPDATE, 7,
                  F("status=approved"), OUT_APPLIED, 8);
    refused(&nst_pt.alice, 22, REP_1, OP_UPDATE, 8, F("value=12"), ERR(PERMISSION_DENIED),
            "approved: it is final");
    refused(&nst_pt.alice, 23, REP_1, OP_UPDATE, 8, F("status=submitted"), ERR(PERMISSION_DENIED),
            "approved: it is final");
    refused(&nst_pt.alice, 24, REP_1, OP_DELETE, 8, NOFIELDS, ERR(PERMISSION_DENIED),
            "approved: it is final");

    /* Every step is in the history, with who made it. */
    assert_string_equal(Q("SELECT string_agg(coalesce(after->>'status', '-'), ',' ORDER BY version)"
                          " FROM sync_revisions WHERE record_id = $1",
                          REP_1),
                        "draft,draft,submitted,returned,submitted,draft,submitted,approved");
    assert_string_equal(Q("SELECT string_agg(p.name, ',' ORDER BY r.version) FROM sync_revisions r"
                          " JOIN principals p ON p.id = r.principal_id WHERE r.record_id = $1"
                          " AND r.version IN (4, 8)",
                          REP_1),
                        "alice,alice");
    nst_pt_out_free(&o);
}

static void test_locked_period_and_correction(void **state)
{
    (void)state;
    setup_plan();
    nst_pt_apply1(&nst_pt.xavier, MID(1), "indicator_report", REP_1, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "value=10", "status=submitted"), OUT_APPLIED, 1);
    /* One live report per indicator and period, approved or not. */
    nst_pt_out o;
    nst_pt_push1(&nst_pt.xavier, MID(2), "indicator_report", REP_2, OP_CREATE, 0,
                 REPORT_F(PLAN_1, IND_1, "value=11"), &o);
    expect_rejected(&o, ERR(INVALID_ARGUMENT), "already covers");
    nst_pt_out_free(&o);
    nst_pt_apply1(&nst_pt.alice, MID(3), "indicator_report", REP_1, OP_UPDATE, 1,
                  F("status=approved"), OUT_APPLIED, 2);
    /* Approved: the period is locked. */
    nst_pt_push1(&nst_pt.xavier, MID(4), "indicator_report", REP_2, OP_CREATE, 0,
                 REPORT_F(PLAN_1, IND_1, "value=11"), &o);
    expect_rejected(&o, ERR(INVALID_ARGUMENT), "is locked");
    assert_string_equal(o.r[0].field, "period_start");
    nst_pt_out_free(&o);
    /* A correction of it is the way in; approved, it is the value. */
    nst_pt_apply1(&nst_pt.xavier, MID(5), "indicator_report", REP_2, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "value=11", "status=submitted", "corrects_id=" REP_1),
                  OUT_APPLIED, 1);
    /* A correction of the wrong report, or a second one at once, is not. */
    nst_pt_push1(&nst_pt.xavier, MID(6), "indicator_report", REP_3, OP_CREATE, 0,
                 REPORT_F(PLAN_1, IND_1, "value=12", "corrects_id=" REP_1), &o);
    expect_rejected(&o, ERR(INVALID_ARGUMENT), "already covers");
    nst_pt_out_free(&o);
    nst_pt_apply1(&nst_pt.alice, MID(7), "indicator_report", REP_2, OP_UPDATE, 1,
                  F("status=approved"), OUT_APPLIED, 2);
    /* A correction of the correction. */
    nst_pt_apply1(&nst_pt.xavier, MID(8), "indicator_report", REP_3, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "value=12", "corrects_id=" REP_2), OUT_APPLIED, 1);
    assert_int_equal(
        QN0("SELECT count(*) FROM indicator_reports WHERE status = 'approved' AND NOT deleted"), 2);
}

static void test_reporter_is_the_responsible_organisation(void **state)
{
    (void)state;
    setup_plan();
    /* Another indicator, responsible A: xavier reports nothing there. */
    nst_pt_apply1(&nst_pt.alice, MID(1), "indicator", nst_pt_uid(0x1b000000u, 5), OP_CREATE, 0,
                  IND_F(PLAN_1, "title=A's own"), OUT_APPLIED, 1);
    nst_pt_out o;
    nst_pt_push1(&nst_pt.xavier, MID(2), "indicator_report", REP_2, OP_CREATE, 0,
                 REPORT_F(PLAN_1, "1b000000-0000-4000-8000-000000000005", "value=1"), &o);
    expect_rejected(&o, ERR(PERMISSION_DENIED), "not delegated to yours");
    nst_pt_out_free(&o);
    /* The observer reports nothing at all. */
    nst_pt_push1(&nst_pt.olga, MID(3), "indicator_report", REP_3, OP_CREATE, 0,
                 REPORT_F(PLAN_1, IND_1, "value=1"), &o);
    expect_rejected(&o, ERR(PERMISSION_DENIED), "observers");
    nst_pt_out_free(&o);
    /* The plan's owner reports on any indicator of it. */
    nst_pt_apply1(&nst_pt.bob, MID(4), "indicator_report", REP_1, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "value=2"), OUT_APPLIED, 1);
}

static int group_setup(void **state)
{
    (void)state;
    return nst_pt_setup("workflow");
}

static int group_teardown(void **state)
{
    (void)state;
    return nst_pt_teardown();
}

#define T(name) cmocka_unit_test_setup_teardown(name, nst_pt_test_setup, nst_pt_test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_transitions),
        T(test_locked_period_and_correction),
        T(test_reporter_is_the_responsible_organisation),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
