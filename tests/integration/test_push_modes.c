/* Push modes (docs/protocol.md "Push"): a dry run answers every mutation as
 * it would be, each on the state the ones before it leave, the database's
 * deferred checks included, and stores nothing; an atomic push applies all
 * or nothing. And the field at fault (reject_field), kept with a stored
 * answer. In process, on the push fixture (pushtest.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pushtest.h"

#define DRY    NAPSYNC__V1__PUSH_MODE__PUSH_MODE_DRY_RUN
#define ATOMIC NAPSYNC__V1__PUSH_MODE__PUSH_MODE_ATOMIC

static void expect_rejected(const nst_pt_out *o, size_t i, int code, const char *field,
                            const char *needle)
{
    nst_pt_expect(o, i, OUT_REJECTED, 0);
    const nst_pt_result *r = &o->r[i];
    if (r->reject_code != code)
        fail_msg("result %zu: reject code %d (%s), expected %d", i, r->reject_code, r->reason,
                 code);
    if (strstr(r->reason, needle) == NULL)
        fail_msg("result %zu: reason \"%s\" lacks \"%s\"", i, r->reason, needle);
    if (strcmp(r->field, field) != 0)
        fail_msg("result %zu: field \"%s\", expected \"%s\" (%s)", i, r->field, field, r->reason);
}

/* Nothing at all was stored. */
static void expect_nothing_stored(void)
{
    assert_int_equal(QN0("SELECT count(*) FROM plans"), 0);
    assert_int_equal(QN0("SELECT count(*) FROM indicators"), 0);
    assert_int_equal(QN0("SELECT count(*) FROM indicator_reports"), 0);
    assert_int_equal(QN0("SELECT count(*) FROM sync_revisions"), 0);
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), 0);
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 0);
    assert_int_equal(QN0("SELECT seq FROM sync_feed_head"), 0);
}

#define REP_OUT "2c000000-0000-4000-8000-0000000000f0"
#define VAL_1   "3e000000-0000-4000-8000-000000000001"
#define VAL_2   "3e000000-0000-4000-8000-000000000002"
#define IND_2   "1b000000-0000-4000-8000-000000000002"

/* A plan, an indicator, a report and values, where each later mutation
 * needs the earlier ones, and faults of every kind in between. */
static void build_import(nst_pt_pbuild *b)
{
    nst_pt_pb_init(b);
    nst_pt_pb_add(b, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=Imported"));
    nst_pt_pb_add(b, MID(2), "indicator", IND_1, OP_CREATE, 0,
                  IND_F(PLAN_1, "value_type=number", "disaggregation=sex"));
    /* A row's own check: not a value type. */
    nst_pt_pb_add(b, MID(3), "indicator", IND_2, OP_CREATE, 0,
                  IND_F(PLAN_1, "value_type=fraction"));
    /* A check at COMMIT: outside the plan's period. */
    nst_pt_pb_add(b, MID(4), "indicator_report", REP_OUT, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "period_start=2040-01-01", "period_end=2040-12-31"));
    nst_pt_pb_add(b, MID(5), "indicator_report", REP_1, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "value=10"));
    nst_pt_pb_add(
        b, MID(6), "report_value", VAL_1, OP_CREATE, 0,
        F("plan_id=" PLAN_1, "report_id=" REP_1, "dimension=sex", "category=female", "value=6"));
    nst_pt_pb_add(
        b, MID(7), "report_value", VAL_2, OP_CREATE, 0,
        F("plan_id=" PLAN_1, "report_id=" REP_1, "dimension=sex", "category=male", "value=3"));
    /* A check at COMMIT across records, when the report is submitted: 6 +
     * 3 is not 10. A draft may be incomplete. */
    nst_pt_pb_add(b, MID(8), "indicator_report", REP_1, OP_UPDATE, 1, F("status=submitted"));
}

static void test_dry_run(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    build_import(&b);
    b.push.mode = DRY;
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_results_ok(&o, 8);
    nst_pt_expect(&o, 0, OUT_APPLIED, 1);
    nst_pt_expect(&o, 1, OUT_APPLIED, 1); /* its plan exists only in this dry run */
    expect_rejected(&o, 2, ERR(INVALID_ARGUMENT), "value_type",
                    "indicator.value_type: \"fraction\" is not one of");
    expect_rejected(&o, 3, ERR(INVALID_ARGUMENT), "period_start",
                    "is not inside the plan's period");
    nst_pt_expect(&o, 4, OUT_APPLIED, 1);
    nst_pt_expect(&o, 5, OUT_APPLIED, 1);
    nst_pt_expect(&o, 6, OUT_APPLIED, 1);
    expect_rejected(&o, 7, ERR(INVALID_ARGUMENT), "value",
                    "indicator_report.value: the \"sex\" values of report " REP_1
                    " sum to 9, the report's value is 10");
    nst_pt_out_free(&o);
    expect_nothing_stored();

    /* The same mutations sent to apply: a dry run kept no answer, so they
     * are answered afresh (and the valid ones applied). */
    b.push.mode = NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 8);
    nst_pt_expect(&o, 0, OUT_APPLIED, 1);
    nst_pt_expect(&o, 1, OUT_APPLIED, 1);
    expect_rejected(&o, 2, ERR(INVALID_ARGUMENT), "value_type", "is not one of");
    expect_rejected(&o, 7, ERR(INVALID_ARGUMENT), "value", "sum to 9");
    nst_pt_out_free(&o);
    assert_int_equal(QN0("SELECT count(*) FROM report_values"), 2);
    assert_string_equal(Q("SELECT status FROM indicator_reports WHERE id = $1", REP_1), "draft");
}

static void test_atomic_refused_by_validation(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=Imported"));
    nst_pt_pb_add(&b, MID(2), "indicator", IND_1, OP_CREATE, 0, IND_F(PLAN_1, "colour=red"));
    b.push.mode = ATOMIC;
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 2);
    expect_rejected(&o, 0, ERR(ABORTED), "", "another mutation of the atomic push");
    expect_rejected(&o, 1, ERR(UNKNOWN_ENTITY), "", "unknown field \"colour\"");
    nst_pt_out_free(&o);
    expect_nothing_stored();
}

static void test_atomic_refused_at_commit(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    build_import(&b);
    b.push.mode = ATOMIC;
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 8);
    /* The row check of mutation 3 refuses the transaction before COMMIT:
     * every mutation is aborted with the database's reason. */
    for (size_t i = 0; i < 8; i++)
        expect_rejected(&o, i, ERR(ABORTED), "value_type", "nothing of the atomic push");
    nst_pt_out_free(&o);
    expect_nothing_stored();
}

static void test_atomic_refused_by_policy(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0,
                  PLAN_F("title=A's", "status=adopted"), OUT_APPLIED, 1);
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_2, OP_CREATE, 0, PLAN_F("title=X's own"));
    nst_pt_pb_add(&b, MID(3), "indicator", IND_1, OP_CREATE, 0, IND_F(PLAN_1, "code=1"));
    b.push.mode = ATOMIC;
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.xavier, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 2);
    expect_rejected(&o, 0, ERR(ABORTED), "", "another mutation of the atomic push");
    expect_rejected(&o, 1, ERR(PERMISSION_DENIED), "", "belongs to another organisation");
    nst_pt_out_free(&o);
    assert_int_equal(QN0("SELECT count(*) FROM plans"), 1);
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 1);
}

static void test_atomic_applies_all_once(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        nst_pt_pbuild b;
        nst_pt_pb_init(&b);
        nst_pt_pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=Imported"));
        nst_pt_pb_add(&b, MID(2), "indicator", IND_1, OP_CREATE, 0, IND_F(PLAN_1, "code=1"));
        nst_pt_pb_add(&b, MID(3), "indicator_report", REP_1, OP_CREATE, 0,
                      REPORT_F(PLAN_1, IND_1, "value=4"));
        b.push.mode = ATOMIC;
        nst_pt_out o;
        nst_pt_run_push(&b, &nst_pt.alice, &o);
        nst_pt_pb_free(&b);
        nst_pt_results_ok(&o, 3);
        for (size_t i = 0; i < 3; i++)
            nst_pt_expect(&o, i, OUT_APPLIED, 1);
        nst_pt_out_free(&o);
        /* Sent again (a lost answer): the same answers, applied once. */
        assert_int_equal(QN0("SELECT count(*) FROM sync_revisions"), 3);
        assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 3);
    }
}

static void test_reject_field_is_kept(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=P"),
                  OUT_APPLIED, 1);
    for (int round = 0; round < 2; round++) {
        nst_pt_out o;
        nst_pt_push1(&nst_pt.alice, MID(2), "indicator", IND_1, OP_CREATE, 0,
                     IND_F(PLAN_1, "baseline=5"), &o);
        expect_rejected(&o, 0, ERR(INVALID_ARGUMENT), "baseline_date",
                        "indicator.baseline_date: a baseline needs its date");
        nst_pt_out_free(&o);
    }
    assert_int_equal(nst_pt_stored_count(MID(2)), 1);
    assert_string_equal(
        Q("SELECT reject_field FROM sync_mutations WHERE mutation_id = $1::uuid", MID(2)),
        "baseline_date");
}

static void test_unknown_mode(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=P"));
    b.push.mode = (Napsync__V1__PushMode)7;
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    assert_false(o.has_result);
    assert_int_equal(o.code, ERR(INVALID_ARGUMENT));
    assert_non_null(strstr(o.msg, "unknown push mode"));
    nst_pt_out_free(&o);
    expect_nothing_stored();
}

static int group_setup(void **state)
{
    (void)state;
    return nst_pt_setup("modes");
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
        T(test_dry_run),
        T(test_atomic_refused_by_validation),
        T(test_atomic_refused_at_commit),
        T(test_atomic_refused_by_policy),
        T(test_atomic_applies_all_once),
        T(test_reject_field_is_kept),
        T(test_unknown_mode),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
