/* The model's validation (docs/domain.md "Validation", sql/003) through the
 * sync engine: one refused record per rule, each answered INVALID_ARGUMENT
 * with the field at fault and a reason naming it, stored nowhere but in its
 * answer; and the cases that must be accepted (a target beyond the plan's
 * end, exact decimals, a record created before the one it refers to in the
 * same push). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pushtest.h"

#define PIL_1 "4e000000-0000-4000-8000-000000000001"
#define OBJ_1 "5f000000-0000-4000-8000-000000000001"
#define RES_1 "6a000000-0000-4000-8000-000000000001"
#define ACT_1 "7b000000-0000-4000-8000-000000000001"
#define NOORG "00000000-0000-4000-8000-0000000000aa"

/* The skeleton every case needs: a plan, an action, a pillar, an
 * objective, an outcome, an indicator (percentage), in one push, the
 * action's references pointing forward. */
static void skeleton(void)
{
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    /* The plan first (a record's plan must exist before it), then the
     * action: the objective and result it names come later in the push. */
    nst_pt_pb_add(&b, MID(100), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=NAP"));
    char lead[80];
    snprintf(lead, sizeof(lead), "lead_org_id=%s", nst_pt.org_a);
    nst_pt_pb_add(&b, MID(105), "action", ACT_1, OP_CREATE, 0,
                  F("plan_id=" PLAN_1, "objective_id=" OBJ_1, "result_id=" RES_1,
                    "title=Train mediators", "status=planned", "start_date=2025-01-01",
                    "end_date=2025-06-30", lead));
    nst_pt_pb_add(&b, MID(101), "pillar", PIL_1, OP_CREATE, 0,
                  F("plan_id=" PLAN_1, "name=Participation", "kind=participation"));
    nst_pt_pb_add(&b, MID(102), "objective", OBJ_1, OP_CREATE, 0,
                  F("plan_id=" PLAN_1, "pillar_id=" PIL_1, "title=Women at the table"));
    nst_pt_pb_add(&b, MID(103), "result", RES_1, OP_CREATE, 0,
                  F("plan_id=" PLAN_1, "objective_id=" OBJ_1, "level=outcome",
                    "title=Mediation teams include women"));
    nst_pt_pb_add(&b, MID(104), "indicator", IND_1, OP_CREATE, 0,
                  IND_F(PLAN_1, "value_type=percentage", "baseline=12.5",
                        "baseline_date=2024-01-01", "target=30"));
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 6);
    for (size_t i = 0; i < 6; i++)
        nst_pt_expect(&o, i, OUT_APPLIED, 1);
    nst_pt_out_free(&o);
}

typedef struct {
    const char *type;
    const char *const *specs;
    const char *field;
    const char *needle;
} bad_case;

static void test_refusals_name_the_field(void **state)
{
    (void)state;
    skeleton();
    const bad_case cases[] = {
        {"plan", PLAN_F("kind=strategy"), "kind", "plan.kind: \"strategy\" is not one of"},
        {"plan", PLAN_F("period_end=2023-12-31"), "period_end", "is before period_start"},
        {"plan", PLAN_F("title=   "), "title", "not blank"},
        {"plan", PLAN_F("country=Zedland"), "country", "ISO 3166-1"},
        {"plan", PLAN_F("kind=implementation"), "implements_id", "names the plan it implements"},
        {"pillar", F("plan_id=" PLAN_1, "name=P", "kind=peace"), "kind", "is not one of"},
        {"objective", F("plan_id=" PLAN_1, "title=O"), "pillar_id", "is required"},
        {"objective", F("plan_id=" PLAN_1, "title=O", "pillar_id=" OBJ_1), "pillar_id",
         "no pillar " OBJ_1},
        {"result",
         F("plan_id=" PLAN_1, "objective_id=" OBJ_1, "level=output", "title=R", "parent_id=" ACT_1),
         "parent_id", "the parent of an output is an outcome"},
        {"action", F("plan_id=" PLAN_1, "objective_id=" OBJ_1, "title=A", "status=planned"),
         "lead_org_id", "is required"},
        {"action",
         F("plan_id=" PLAN_1, "objective_id=" OBJ_1, "title=A", "status=started",
           "lead_org_id=" NOORG),
         "status", "is not one of planned, ongoing"},
        {"action",
         F("plan_id=" PLAN_1, "objective_id=" OBJ_1, "title=A", "status=planned",
           "lead_org_id=" NOORG),
         "lead_org_id", "no organisation " NOORG},
        {"indicator",
         IND_F(PLAN_1, "value_type=percentage", "baseline=120", "baseline_date=2024-01-01"),
         "baseline", "120 is outside 0..100"},
        {"indicator", IND_F(PLAN_1, "value_type=yes_no", "target=2"), "target",
         "takes 0 (no) or 1 (yes)"},
        {"indicator", IND_F(PLAN_1, "baseline=3"), "baseline_date", "a baseline needs its date"},
        {"indicator", IND_F(PLAN_1, "disaggregation=Sex"), "disaggregation",
         "is not a dimension name"},
        {"indicator_target", F("plan_id=" PLAN_1, "indicator_id=" IND_1, "period_end=2030-12-31"),
         "value", "is required"},
        {"indicator_report", REPORT_F(PLAN_1, IND_1, "value=101"), "value",
         "101 is outside 0..100"},
        {"indicator_report", REPORT_F(PLAN_1, IND_1, "period_start=2020-01-01"), "period_start",
         "is not inside the plan's period"},
        {"indicator_report", REPORT_F(PLAN_1, IND_1, "status=submitted"), "value",
         "a submitted report has a value"},
        {"budget_line",
         F("plan_id=" PLAN_1, "action_id=" ACT_1, "fiscal_year=2025", "currency=usd",
           "funding_source=national_budget"),
         "currency", "ISO 4217"},
        {"budget_line",
         F("plan_id=" PLAN_1, "action_id=" ACT_1, "fiscal_year=2025", "currency=USD",
           "funding_source=national_budget", "spent=-1"),
         "spent", "-1 is outside 0.."},
        {"budget_line",
         F("plan_id=" PLAN_1, "action_id=" ACT_1, "fiscal_year=2025", "currency=USD",
           "funding_source=lottery"),
         "funding_source", "is not one of national_budget"},

    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bad_case *c = &cases[i];
        nst_pt_out o;
        const char *rid = nst_pt_uid(0x99000000u, (unsigned)i + 1);
        nst_pt_push1(&nst_pt.alice, MID(200 + (unsigned)i), c->type, rid, OP_CREATE, 0, c->specs,
                     &o);
        nst_pt_expect(&o, 0, OUT_REJECTED, 0);
        const nst_pt_result *r = &o.r[0];
        if (r->reject_code != ERR(INVALID_ARGUMENT))
            fail_msg("case %zu (%s): code %d \"%s\"", i, c->type, r->reject_code, r->reason);
        if (strcmp(r->field, c->field) != 0 || strstr(r->reason, c->needle) == NULL)
            fail_msg("case %zu (%s): field \"%s\" reason \"%s\", expected field \"%s\" with \"%s\"",
                     i, c->type, r->field, r->reason, c->field, c->needle);
        nst_pt_out_free(&o);
        assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", rid), 0);
    }
    /* A comment on a record that is not of its subject type. */
    char author[80];
    snprintf(author, sizeof(author), "author_id=%s", nst_pt.alice.principal_id);
    nst_pt_out o;
    nst_pt_push1(&nst_pt.alice, MID(300), "comment", nst_pt_uid(0x99100000u, 1), OP_CREATE, 0,
                 F("plan_id=" PLAN_1, "subject_type=budget_line", "subject_id=" ACT_1, author,
                   "body=Which line?"),
                 &o);
    nst_pt_expect(&o, 0, OUT_REJECTED, 0);
    assert_string_equal(o.r[0].field, "subject_id");
    assert_non_null(strstr(o.r[0].reason, "no live budget_line"));
    nst_pt_out_free(&o);
}

static void test_accepted(void **state)
{
    (void)state;
    skeleton();
    /* A long-horizon target, beyond the plan's end (2028): accepted. */
    nst_pt_apply1(
        &nst_pt.alice, MID(1), "indicator_target", nst_pt_uid(0x8c000000u, 1), OP_CREATE, 0,
        F("plan_id=" PLAN_1, "indicator_id=" IND_1, "period_end=2035-12-31", "value=50.125"),
        OUT_APPLIED, 1);
    /* Exact decimals, kept as given. */
    nst_pt_apply1(&nst_pt.alice, MID(2), "budget_line", nst_pt_uid(0x8d000000u, 1), OP_CREATE, 0,
                  F("plan_id=" PLAN_1, "action_id=" ACT_1, "fiscal_year=2025", "currency=USD",
                    "funding_source=donor_basket_fund", "costed=1234567890123.4567890123",
                    "allocated=0.1", "spent=0.2"),
                  OUT_APPLIED, 1);
    assert_string_equal(Q("SELECT costed::text || ' ' || (allocated + spent)::text"
                          " FROM budget_lines"),
                        "1234567890123.4567890123 0.3");
    /* An output under its outcome, in the same objective. */
    nst_pt_apply1(&nst_pt.alice, MID(3), "result", nst_pt_uid(0x8e000000u, 1), OP_CREATE, 0,
                  F("plan_id=" PLAN_1, "objective_id=" OBJ_1, "level=output", "parent_id=" RES_1,
                    "title=Roster of women mediators"),
                  OUT_APPLIED, 1);
    /* A record that live records name cannot be deleted. */
    nst_pt_out o;
    nst_pt_push1(&nst_pt.alice, MID(4), "objective", OBJ_1, OP_DELETE, 1, NOFIELDS, &o);
    nst_pt_expect(&o, 0, OUT_REJECTED, 0);
    assert_string_equal(o.r[0].field, "deleted");
    assert_non_null(strstr(o.r[0].reason, "refer to it through objective_id"));
    nst_pt_out_free(&o);
}

static int group_setup(void **state)
{
    (void)state;
    return nst_pt_setup("validation");
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
        T(test_refusals_name_the_field),
        T(test_accepted),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
