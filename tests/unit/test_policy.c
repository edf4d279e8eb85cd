/* The authorisation policy (daemon/policy.h) decision by decision: plans,
 * content of one's own and of other organisations' plans, delegation to a
 * lead or responsible organisation, the report workflow, comments and
 * conflict resolutions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

#define ORG_A  "0a000000-0000-4000-8000-00000000000a"
#define ORG_B  "0b000000-0000-4000-8000-00000000000b"
#define ALICE  "a1000000-0000-4000-8000-000000000001"
#define BOB    "b0b00000-0000-4000-8000-000000000001"
#define PLAN   "9a000000-0000-4000-8000-000000000001"
#define ERR(x) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##x

/* ---- building facts ----------------------------------------------------------------------- */

static void put(ns_fieldset *fs, const char *name, ns_kind kind, const char *text)
{
    ns_value v;
    ns_value_init_null(&v, kind);
    if (text != NULL) {
        char err[128];
        ns_field_type t = {.kind = kind, .nullable = true};
        assert_int_equal(ns_value_parse(&t, text, &v, err, sizeof(err)), NS_VALUE_OK);
    }
    assert_int_equal(ns_fieldset_set(fs, name, &v), 0);
    ns_value_free(&v);
}

/* A fieldset from "name=value" pairs, NULL-terminated; names ending in
 * _id are references, the rest text. */
static void fields(ns_fieldset *fs, ...)
{
    ns_fieldset_init(fs);
    va_list ap;
    va_start(ap, fs);
    const char *spec;
    while ((spec = va_arg(ap, const char *)) != NULL) {
        char name[64];
        const char *eq = strchr(spec, '=');
        assert_non_null(eq);
        size_t n = (size_t)(eq - spec);
        memcpy(name, spec, n);
        name[n] = '\0';
        bool ref = n > 3 && strcmp(name + n - 3, "_id") == 0;
        put(fs, name, ref ? NS_KIND_REF : NS_KIND_TEXT, eq[1] ? eq + 1 : NULL);
    }
    va_end(ap);
}

static const ns_policy_plan nap_a = {PLAN, ORG_A, "nap", "adopted"};
static const ns_policy_plan draft_a = {PLAN, ORG_A, "nap", "draft"};
static const ns_policy_plan archived_a = {PLAN, ORG_A, "nap", "archived"};
static const ns_policy_plan implplan_b = {PLAN, ORG_B, "implementation", "adopted"};
static const ns_policy_plan rap_b = {PLAN, ORG_B, "rap", "adopted"};

static ns_policy_actor actor(const char *org, unsigned roles)
{
    ns_policy_actor a = {strcmp(org, ORG_A) == 0 ? ALICE : BOB, org, roles};
    return a;
}

typedef struct {
    ns_fieldset cur, chg;
    ns_policy_write w;
    ns_policy_refusal why;
} wr;

static void wr_free(wr *x)
{
    ns_fieldset_free(&x->cur);
    ns_fieldset_free(&x->chg);
}

/* 0 allowed, else the refusal's code. */
static int check(const ns_policy_actor *a, wr *x)
{
    x->w.change = &x->chg;
    int rc = ns_policy_check_write(a, &x->w, &x->why);
    if (rc == 0)
        return 0;
    assert_true(x->why.reason[0] != '\0');
    return (int)x->why.code;
}

/* ---- roles ------------------------------------------------------------------------------------
 */

static void test_roles(void **state)
{
    (void)state;
    ns_identity_info id;
    memset(&id, 0, sizeof(id));
    strcpy(id.roles[0], "observer");
    strcpy(id.roles[1], "chief");
    id.nroles = 2;
    unsigned r = ns_policy_roles(&id);
    assert_int_equal(r, NS_ROLE_OBSERVER);
    assert_true(ns_policy_reads_only(r));
    assert_true(ns_policy_reads_only(NS_ROLE_ADMIN));
    assert_false(ns_policy_reads_only(NS_ROLE_IMPLEMENTER | NS_ROLE_OBSERVER));
    assert_null(ns_policy_delegation_of("pillar"));
    assert_string_equal(ns_policy_delegation_of("report_value")->via_type, "indicator_report");
}

/* ---- plans ------------------------------------------------------------------------------------
 */

static void test_plan_create(void **state)
{
    (void)state;
    struct {
        const char *org;
        unsigned roles;
        const char *kind;
        int expect;
    } cases[] = {
        {ORG_A, NS_ROLE_COORDINATOR, "nap", 0},
        {ORG_A, NS_ROLE_COORDINATOR, "implementation", 0},
        {ORG_A, NS_ROLE_COORDINATOR, "rap", ERR(PERMISSION_DENIED)},
        {ORG_A, NS_ROLE_IMPLEMENTER, "nap", ERR(PERMISSION_DENIED)},
        {ORG_A, NS_ROLE_IMPLEMENTER, "implementation", 0},
        {ORG_A, NS_ROLE_REGIONAL, "rap", 0},
        {ORG_A, NS_ROLE_OBSERVER, "nap", ERR(PERMISSION_DENIED)},
        {ORG_A, NS_ROLE_ADMIN, "nap", ERR(PERMISSION_DENIED)},
        /* Not a kind at all: the request is wrong, whoever sends it. */
        {ORG_A, NS_ROLE_COORDINATOR, "strategy", ERR(INVALID_ARGUMENT)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wr x = {.w = {.type = "plan", .op = NS_OP_CREATE}};
        char kind[40];
        snprintf(kind, sizeof(kind), "kind=%s", cases[i].kind);
        fields(&x.cur, NULL);
        fields(&x.chg, kind, "owner_id=" ORG_A, NULL);
        ns_policy_actor a = actor(cases[i].org, cases[i].roles);
        int got = check(&a, &x);
        if (got != cases[i].expect)
            fail_msg("case %zu: got %d, want %d (%s)", i, got, cases[i].expect, x.why.reason);
        wr_free(&x);
    }
    /* For another organisation: never. */
    wr x = {.w = {.type = "plan", .op = NS_OP_CREATE}};
    fields(&x.cur, NULL);
    fields(&x.chg, "kind=nap", "owner_id=" ORG_B, NULL);
    ns_policy_actor a = actor(ORG_A, NS_ROLE_COORDINATOR);
    assert_int_equal(check(&a, &x), ERR(PERMISSION_DENIED));
    assert_string_equal(x.why.field, "owner_id");
    wr_free(&x);
}

static void test_plan_update(void **state)
{
    (void)state;
    ns_policy_actor coord_a = actor(ORG_A, NS_ROLE_COORDINATOR);
    ns_policy_actor coord_b = actor(ORG_B, NS_ROLE_COORDINATOR);
    wr x = {.w = {.type = "plan", .op = NS_OP_UPDATE, .plan = &nap_a}};
    fields(&x.cur, "kind=nap", "status=adopted", "owner_id=" ORG_A, NULL);
    fields(&x.chg, "title=New title", NULL);
    x.w.current = &x.cur;
    assert_int_equal(check(&coord_a, &x), 0);
    assert_int_equal(check(&coord_b, &x), ERR(PERMISSION_DENIED));
    x.w.plan = &draft_a; /* another organisation's draft does not exist for it */
    assert_int_equal(check(&coord_b, &x), ERR(NOT_FOUND));
    x.w.plan = &archived_a; /* archived: only the status changes */
    assert_int_equal(check(&coord_a, &x), ERR(PERMISSION_DENIED));
    ns_fieldset_free(&x.chg);
    fields(&x.chg, "status=adopted", NULL);
    assert_int_equal(check(&coord_a, &x), 0);
    x.w.plan = &nap_a;
    ns_fieldset_free(&x.chg);
    fields(&x.chg, "owner_id=" ORG_B, NULL);
    assert_int_equal(check(&coord_a, &x), ERR(PERMISSION_DENIED));
    assert_string_equal(x.why.field, "owner_id");
    ns_fieldset_free(&x.chg);
    fields(&x.chg, "kind=rap", NULL);
    assert_int_equal(check(&coord_a, &x), ERR(PERMISSION_DENIED));
    /* An implementer of the owner keeps implementation plans, not its NAP. */
    ns_fieldset_free(&x.chg);
    fields(&x.chg, "title=x", NULL);
    ns_policy_actor impl_a = actor(ORG_A, NS_ROLE_IMPLEMENTER);
    assert_int_equal(check(&impl_a, &x), ERR(PERMISSION_DENIED));
    /* Deleting: drafts only. */
    ns_fieldset_free(&x.chg);
    fields(&x.chg, NULL);
    x.w.op = NS_OP_DELETE;
    assert_int_equal(check(&coord_a, &x), ERR(PERMISSION_DENIED));
    x.w.plan = &draft_a;
    assert_int_equal(check(&coord_a, &x), 0);
    wr_free(&x);
}

/* ---- content ----------------------------------------------------------------------------------
 */

static void test_content(void **state)
{
    (void)state;
    ns_policy_actor coord_a = actor(ORG_A, NS_ROLE_COORDINATOR);
    ns_policy_actor impl_b = actor(ORG_B, NS_ROLE_IMPLEMENTER);
    ns_policy_actor obs_b = actor(ORG_B, NS_ROLE_OBSERVER);
    const ns_op ops[] = {NS_OP_CREATE, NS_OP_UPDATE, NS_OP_DELETE};
    const char *types[] = {"pillar",    "objective",        "result",      "action",
                           "indicator", "indicator_target", "budget_line", "report_value"};
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        for (size_t o = 0; o < 3; o++) {
            wr x = {.w = {.type = types[t], .op = ops[o], .plan = &nap_a}};
            fields(&x.cur, "title=t", NULL);
            fields(&x.chg, ops[o] == NS_OP_DELETE ? NULL : "title=u", NULL);
            x.w.current = ops[o] == NS_OP_CREATE ? NULL : &x.cur;
            assert_int_equal(check(&coord_a, &x), 0);
            assert_int_equal(check(&impl_b, &x), ERR(PERMISSION_DENIED));
            assert_int_equal(check(&obs_b, &x), ERR(PERMISSION_DENIED));
            x.w.plan = &draft_a;
            assert_int_equal(check(&impl_b, &x), ERR(NOT_FOUND));
            x.w.plan = &archived_a;
            assert_int_equal(check(&coord_a, &x), ERR(PERMISSION_DENIED));
            wr_free(&x);
        }
    }
    /* The owner of an implementation plan, as implementer, keeps it. */
    ns_policy_actor impl_own = actor(ORG_B, NS_ROLE_IMPLEMENTER);
    wr x = {.w = {.type = "action", .op = NS_OP_CREATE, .plan = &implplan_b}};
    fields(&x.cur, NULL);
    fields(&x.chg, "title=t", NULL);
    assert_int_equal(check(&impl_own, &x), 0);
    /* A RAP is the regional organisation's. */
    x.w.plan = &rap_b;
    assert_int_equal(check(&impl_own, &x), ERR(PERMISSION_DENIED));
    ns_policy_actor reg_b = actor(ORG_B, NS_ROLE_REGIONAL);
    assert_int_equal(check(&reg_b, &x), 0);
    wr_free(&x);
}

static void test_delegation(void **state)
{
    (void)state;
    ns_policy_actor impl_b = actor(ORG_B, NS_ROLE_IMPLEMENTER);
    /* The lead organisation of an action changes its status, nothing else. */
    wr x = {.w = {.type = "action", .op = NS_OP_UPDATE, .plan = &nap_a}};
    fields(&x.cur, "status=planned", NULL);
    fields(&x.chg, "status=ongoing", NULL);
    x.w.current = &x.cur;
    x.w.responsible = x.w.responsible_now = ORG_B;
    assert_int_equal(check(&impl_b, &x), 0);
    ns_fieldset_free(&x.chg);
    fields(&x.chg, "status=ongoing", "title=Mine now", NULL);
    assert_int_equal(check(&impl_b, &x), ERR(PERMISSION_DENIED));
    x.w.op = NS_OP_DELETE;
    assert_int_equal(check(&impl_b, &x), ERR(PERMISSION_DENIED));
    wr_free(&x);

    /* Budget lines of its actions: all of it; moving one from another
     * organisation's action to its own is not. */
    wr y = {.w = {.type = "budget_line", .op = NS_OP_UPDATE, .plan = &nap_a}};
    fields(&y.cur, "currency=USD", NULL);
    fields(&y.chg, "currency=EUR", NULL);
    y.w.current = &y.cur;
    y.w.responsible = y.w.responsible_now = ORG_B;
    assert_int_equal(check(&impl_b, &y), 0);
    y.w.responsible_now = ORG_A;
    assert_int_equal(check(&impl_b, &y), ERR(PERMISSION_DENIED));
    y.w.op = NS_OP_CREATE;
    y.w.current = NULL;
    y.w.responsible_now = NULL;
    assert_int_equal(check(&impl_b, &y), 0);
    y.w.responsible = ORG_A;
    assert_int_equal(check(&impl_b, &y), ERR(PERMISSION_DENIED));
    /* An observer of the lead organisation is no delegate. */
    ns_policy_actor obs_b = actor(ORG_B, NS_ROLE_OBSERVER);
    y.w.responsible = ORG_B;
    assert_int_equal(check(&obs_b, &y), ERR(PERMISSION_DENIED));
    wr_free(&y);
}

/* ---- the report workflow ------------------------------------------------------------------- */

typedef struct {
    const char *who; /* "coord" (of the owner), "impl" (of the owner), "deleg", "other" */
    ns_op op;
    const char *from; /* current status; NULL: create */
    const char *to;   /* the change's status; NULL: not in the change */
    const char *also; /* another field in the change, "name=value" */
    int expect;
} step;

static void test_workflow(void **state)
{
    (void)state;
    const step steps[] = {
        {"deleg", NS_OP_CREATE, NULL, "draft", "value=1", 0},
        {"deleg", NS_OP_CREATE, NULL, "submitted", "value=1", 0},
        {"deleg", NS_OP_CREATE, NULL, "approved", "value=1", ERR(PERMISSION_DENIED)},
        {"deleg", NS_OP_CREATE, NULL, "returned", "value=1", ERR(PERMISSION_DENIED)},
        {"coord", NS_OP_CREATE, NULL, "approved", "value=1", 0},
        {"other", NS_OP_CREATE, NULL, "draft", "value=1", ERR(PERMISSION_DENIED)},
        {"deleg", NS_OP_UPDATE, "draft", NULL, "value=2", 0},
        {"deleg", NS_OP_UPDATE, "draft", "submitted", NULL, 0},
        {"deleg", NS_OP_UPDATE, "draft", "approved", NULL, ERR(INVALID_ARGUMENT)},
        {"coord", NS_OP_UPDATE, "draft", "approved", NULL, ERR(INVALID_ARGUMENT)},
        {"deleg", NS_OP_UPDATE, "submitted", "approved", NULL, ERR(PERMISSION_DENIED)},
        {"impl", NS_OP_UPDATE, "submitted", "approved", NULL, ERR(PERMISSION_DENIED)},
        {"coord", NS_OP_UPDATE, "submitted", "approved", NULL, 0},
        {"coord", NS_OP_UPDATE, "submitted", "approved", "value=9", ERR(INVALID_ARGUMENT)},
        {"coord", NS_OP_UPDATE, "submitted", "returned", "return_reason=source missing", 0},
        {"deleg", NS_OP_UPDATE, "submitted", "returned", "return_reason=x", ERR(PERMISSION_DENIED)},
        {"deleg", NS_OP_UPDATE, "submitted", NULL, "value=3", ERR(PERMISSION_DENIED)},
        {"deleg", NS_OP_UPDATE, "submitted", "draft", NULL, 0},
        {"deleg", NS_OP_UPDATE, "returned", "submitted", "value=4", 0},
        {"deleg", NS_OP_UPDATE, "returned", "draft", NULL, 0},
        {"deleg", NS_OP_UPDATE, "returned", "approved", NULL, ERR(INVALID_ARGUMENT)},
        {"coord", NS_OP_UPDATE, "approved", NULL, "narrative=late fix", ERR(PERMISSION_DENIED)},
        {"coord", NS_OP_UPDATE, "approved", "submitted", NULL, ERR(PERMISSION_DENIED)},
        {"coord", NS_OP_DELETE, "approved", NULL, NULL, ERR(PERMISSION_DENIED)},
        {"deleg", NS_OP_DELETE, "submitted", NULL, NULL, ERR(PERMISSION_DENIED)},
        {"deleg", NS_OP_DELETE, "draft", NULL, NULL, 0},
        {"other", NS_OP_DELETE, "draft", NULL, NULL, ERR(PERMISSION_DENIED)},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const step *st = &steps[i];
        ns_policy_actor a = strcmp(st->who, "coord") == 0  ? actor(ORG_A, NS_ROLE_COORDINATOR)
                            : strcmp(st->who, "impl") == 0 ? actor(ORG_A, NS_ROLE_IMPLEMENTER)
                                                           : actor(ORG_B, NS_ROLE_IMPLEMENTER);
        wr x = {.w = {.type = "indicator_report", .op = st->op, .plan = &nap_a}};
        char from[40], to[40];
        snprintf(from, sizeof(from), "status=%s", st->from != NULL ? st->from : "");
        snprintf(to, sizeof(to), "status=%s", st->to != NULL ? st->to : "");
        fields(&x.cur, from, NULL);
        if (st->to != NULL)
            fields(&x.chg, to, st->also, NULL);
        else
            fields(&x.chg, st->also, NULL);
        x.w.current = st->from != NULL ? &x.cur : NULL;
        const char *resp = strcmp(st->who, "deleg") == 0 ? ORG_B : ORG_A;
        x.w.responsible = resp;
        x.w.responsible_now = st->from != NULL ? resp : NULL;
        int got = check(&a, &x);
        if (got != st->expect)
            fail_msg("step %zu (%s %s -> %s): got %d, want %d (%s)", i, st->who,
                     st->from ? st->from : "create", st->to ? st->to : "-", got, st->expect,
                     x.why.reason);
        wr_free(&x);
    }
    /* A RAP's reports are approved by the regional organisation. */
    ns_policy_actor reg_b = actor(ORG_B, NS_ROLE_REGIONAL);
    wr x = {.w = {.type = "indicator_report", .op = NS_OP_UPDATE, .plan = &rap_b}};
    fields(&x.cur, "status=submitted", NULL);
    fields(&x.chg, "status=approved", NULL);
    x.w.current = &x.cur;
    assert_int_equal(check(&reg_b, &x), 0);
    wr_free(&x);
}

/* ---- comments and resolutions ------------------------------------------------------------ */

static void test_comments(void **state)
{
    (void)state;
    ns_policy_actor obs_b = actor(ORG_B, NS_ROLE_OBSERVER);
    ns_policy_actor coord_a = actor(ORG_A, NS_ROLE_COORDINATOR);
    wr x = {.w = {.type = "comment", .op = NS_OP_CREATE, .plan = &nap_a}};
    fields(&x.cur, NULL);
    fields(&x.chg, "author_id=" BOB, "body=Why was this target lowered?", NULL);
    assert_int_equal(check(&obs_b, &x), 0);
    assert_int_equal(check(&coord_a, &x), ERR(PERMISSION_DENIED)); /* not in Alice's name */
    assert_string_equal(x.why.field, "author_id");
    x.w.plan = &draft_a;
    assert_int_equal(check(&obs_b, &x), ERR(NOT_FOUND));
    x.w.plan = &nap_a;
    ns_fieldset_free(&x.cur);
    fields(&x.cur, "author_id=" BOB, "body=b", NULL);
    x.w.current = &x.cur;
    x.w.op = NS_OP_UPDATE;
    ns_fieldset_free(&x.chg);
    fields(&x.chg, "body=edited", NULL);
    assert_int_equal(check(&obs_b, &x), 0);
    assert_int_equal(check(&coord_a, &x), ERR(PERMISSION_DENIED));
    x.w.op = NS_OP_DELETE; /* the owner moderates */
    assert_int_equal(check(&coord_a, &x), 0);
    ns_policy_actor other = actor(ORG_B, NS_ROLE_IMPLEMENTER);
    other.principal = "c0000000-0000-4000-8000-000000000001";
    assert_int_equal(check(&other, &x), ERR(PERMISSION_DENIED));
    wr_free(&x);
}

static void test_resolve(void **state)
{
    (void)state;
    ns_policy_refusal why;
    ns_policy_actor coord_a = actor(ORG_A, NS_ROLE_COORDINATOR);
    ns_policy_actor coord_b = actor(ORG_B, NS_ROLE_COORDINATOR);
    assert_int_equal(ns_policy_check_resolve(&coord_a, &nap_a, &why), 0);
    assert_int_equal(ns_policy_check_resolve(&coord_b, &nap_a, &why), 1);
    assert_int_equal(why.code, ERR(PERMISSION_DENIED));
    assert_int_equal(ns_policy_check_resolve(&coord_b, &draft_a, &why), 1);
    assert_int_equal(why.code, ERR(NOT_FOUND));
    assert_int_equal(ns_policy_check_resolve(&coord_a, NULL, &why), 1);
}

/* ---- the directory ------------------------------------------------------------------------ */

/* 0 allowed, else the refusal's code; the field at fault in field. */
static int check_dir(const ns_policy_actor *a, const char *id, wr *x, const char **field)
{
    x->w.change = &x->chg;
    int rc = ns_policy_check_directory(a, id, &x->w, &x->why);
    *field = x->why.field;
    return rc == 0 ? 0 : (int)x->why.code;
}

static void test_directory(void **state)
{
    (void)state;
    const ns_policy_actor admin_a = actor(ORG_A, NS_ROLE_ADMIN);
    const ns_policy_actor coord_a = actor(ORG_A, NS_ROLE_COORDINATOR);
    const char *field;
    assert_true(ns_policy_is_directory("device"));
    assert_false(ns_policy_is_directory("plan"));

    /* People, roles and devices of one's own organisation only. */
    static const char *const types[] = {"principal", "principal_role", "device"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        wr x = {.w = {.type = types[i], .op = NS_OP_CREATE}};
        fields(&x.cur, NULL);
        fields(&x.chg, "organisation_id=" ORG_A, "name=n", NULL);
        assert_int_equal(check_dir(&admin_a, PLAN, &x, &field), 0);
        assert_int_equal(check_dir(&coord_a, PLAN, &x, &field), ERR(PERMISSION_DENIED));
        wr_free(&x);
        fields(&x.chg, "organisation_id=" ORG_B, NULL);
        fields(&x.cur, NULL);
        assert_int_equal(check_dir(&admin_a, PLAN, &x, &field), ERR(PERMISSION_DENIED));
        assert_string_equal(field, "organisation_id");
        wr_free(&x);
        /* Moving one of B's into A is not A's to do. */
        wr m = {.w = {.type = types[i], .op = NS_OP_UPDATE}};
        fields(&m.cur, "organisation_id=" ORG_B, NULL);
        fields(&m.chg, "organisation_id=" ORG_A, NULL);
        m.w.current = &m.cur;
        assert_int_equal(check_dir(&admin_a, PLAN, &m, &field), ERR(PERMISSION_DENIED));
        wr_free(&m);
    }

    /* Organisations: children created, changed, deleted by the parent's
     * administrators; one's own changed but not moved. */
    wr c = {.w = {.type = "organisation", .op = NS_OP_CREATE}};
    fields(&c.cur, NULL);
    fields(&c.chg, "parent_id=" ORG_A, "name=unit", NULL);
    assert_int_equal(check_dir(&admin_a, PLAN, &c, &field), 0);
    wr_free(&c);
    fields(&c.cur, NULL);
    fields(&c.chg, "name=orphan", NULL);
    assert_int_equal(check_dir(&admin_a, PLAN, &c, &field), ERR(PERMISSION_DENIED));
    assert_string_equal(field, "parent_id");
    wr_free(&c);

    wr own = {.w = {.type = "organisation", .op = NS_OP_UPDATE}};
    fields(&own.cur, "parent_id=", "name=A", NULL);
    fields(&own.chg, "name=A renamed", NULL);
    own.w.current = &own.cur;
    assert_int_equal(check_dir(&admin_a, ORG_A, &own, &field), 0);
    assert_int_equal(check_dir(&admin_a, ORG_B, &own, &field), ERR(PERMISSION_DENIED));
    ns_fieldset_free(&own.chg);
    fields(&own.chg, "parent_id=" ORG_B, NULL);
    assert_int_equal(check_dir(&admin_a, ORG_A, &own, &field), ERR(PERMISSION_DENIED));
    assert_string_equal(field, "parent_id");
    wr_free(&own);

    wr del = {.w = {.type = "organisation", .op = NS_OP_DELETE}};
    fields(&del.cur, "parent_id=" ORG_A, NULL);
    fields(&del.chg, NULL);
    del.w.current = &del.cur;
    assert_int_equal(check_dir(&admin_a, PLAN, &del, &field), 0);
    const ns_policy_actor admin_b = actor(ORG_B, NS_ROLE_ADMIN);
    assert_int_equal(check_dir(&admin_b, PLAN, &del, &field), ERR(PERMISSION_DENIED));
    wr_free(&del);

    /* A region's member states are its administrators'. */
    wr mem = {.w = {.type = "region_membership", .op = NS_OP_CREATE}};
    fields(&mem.cur, NULL);
    fields(&mem.chg, "region_id=" ORG_A, "country=KE", NULL);
    assert_int_equal(check_dir(&admin_a, PLAN, &mem, &field), 0);
    assert_int_equal(check_dir(&admin_b, PLAN, &mem, &field), ERR(PERMISSION_DENIED));
    assert_string_equal(field, "region_id");
    wr_free(&mem);

    /* Not a directory type: refused, not decided. */
    wr p = {.w = {.type = "plan", .op = NS_OP_CREATE}};
    fields(&p.cur, NULL);
    fields(&p.chg, NULL);
    assert_int_equal(check_dir(&admin_a, PLAN, &p, &field), ERR(INVALID_ARGUMENT));
    wr_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles),       cmocka_unit_test(test_plan_create),
        cmocka_unit_test(test_plan_update), cmocka_unit_test(test_content),
        cmocka_unit_test(test_delegation),  cmocka_unit_test(test_workflow),
        cmocka_unit_test(test_comments),    cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
