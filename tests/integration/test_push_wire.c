/* Sync through the real daemon: a device's Push frame reaches the sync
 * engine and its PushResult comes back on the same session, in request
 * order, with the request id echoed; bad pushes get typed answers and leave
 * the session serving; Pull and Subscribe deliver the records;
 * ListConflicts and ResolveConflict round-trip. The engine's, the feed's
 * and the conflicts' rules are covered in depth in-process by test_push,
 * test_feed and test_conflicts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define ERR(name)  NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name
#define BODY(name) NAPSYNC__V1__ENVELOPE__BODY_##name
#define OUTCOME(x) NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_##x

#define PLAN_ID "7a000000-0000-4000-8000-000000000001"

typedef struct {
    nst_env *e;
    nst_device coordinator; /* mogender, owns the plan */
    nst_device observer;    /* parliament: may read, never write */
    nst_device officer;     /* mogender too: a second writer, for conflicts */
} fixture;
NST_FIXTURE_CHECK(fixture);

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    const nst_member m[] = {
        {&f->coordinator, "coordinator-laptop", "mogender", "NAP Coordinator", "coordinator", NULL,
         NULL},
        {&f->observer, "caucus-tablet", "parliament", "Caucus Clerk", "observer", NULL, NULL},
        {&f->officer, "officer-phone", "mogender", "Gender Officer", "coordinator", NULL, NULL},
    };
    return nst_group_start(&f->e, "push_wire", NULL, m, NST_COUNT(m));
}

/* One text field, for the mutations below. */
typedef struct {
    Napsync__V1__Value value;
    Napsync__V1__Field field;
    Napsync__V1__Field *fields[1];
    Napsync__V1__FieldSet set;
    Napsync__V1__Mutation m;
    Napsync__V1__Mutation *ms[1];
    Napsync__V1__Push push;
    ns_envelope env;
} one_push;

static void build_push(one_push *p, uint64_t rid, const char *mutation_id, const char *type,
                       Napsync__V1__MutationOp op, uint64_t base, const char *field,
                       const char *text)
{
    memset(p, 0, sizeof(*p));
    napsync__v1__value__init(&p->value);
    p->value.kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    p->value.text_value = (char *)text;
    napsync__v1__field__init(&p->field);
    p->field.name = (char *)field;
    p->field.value = &p->value;
    p->fields[0] = &p->field;
    napsync__v1__field_set__init(&p->set);
    p->set.n_fields = field ? 1 : 0;
    p->set.fields = p->fields;
    napsync__v1__mutation__init(&p->m);
    p->m.mutation_id = (char *)mutation_id;
    p->m.entity_type = (char *)type;
    p->m.record_id = PLAN_ID;
    p->m.base_version = base;
    p->m.op = op;
    p->m.fields = &p->set;
    p->ms[0] = &p->m;
    napsync__v1__push__init(&p->push);
    p->push.n_mutations = 1;
    p->push.mutations = p->ms;
    napsync__v1__envelope__init(&p->env);
    p->env.request_id = rid;
    p->env.body_case = BODY(PUSH);
    p->env.push = &p->push;
}

/* build_push of a create of an adopted plan (readable by every
 * organisation, the observer's included) that the server accepts
 * (harness.h): title, and what the domain model requires. */
static void build_plan_create(one_push *p, nst_plan_pb *fields, uint64_t rid,
                              const char *mutation_id, const char *title)
{
    build_push(p, rid, mutation_id, "plan", NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE, 0, NULL,
               NULL);
    nst_plan_pb_init(fields, title, "adopted");
    p->m.fields = &fields->set;
}

/* The next frame is the PushResult for rid, with one result; returns it
 * (the caller frees the envelope). */
static ns_envelope *expect_result(const nst_env *e, nst_raw *r, uint64_t rid,
                                  Napsync__V1__MutationOutcome outcome)
{
    ns_envelope *env = nst_expect_frame(e, r, BODY(PUSH_RESULT));
    assert_int_equal(env->request_id, rid);
    assert_int_equal(env->push_result->n_results, 1);
    const Napsync__V1__MutationResult *res = env->push_result->results[0];
    if ((int)res->outcome != (int)outcome)
        nst_fail(e, "outcome %d, expected %d (reject %d: %s)", res->outcome, outcome,
                 res->reject_code, res->reject_reason);
    return env;
}

static void test_push_round_trip_in_request_order(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_must_raw_auth(e, &r, &f->coordinator, 1);

    /* A Push and a Ping in one write: the answers keep the order. */
    one_push p;
    nst_plan_pb plan;
    build_plan_create(&p, &plan, 10, "7a000000-0000-4000-8000-0000000000a1",
                      "National Action Plan 2026-2030");
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(nst_frame_append_env(&buf, &len, &p.env), 0);
    assert_int_equal(nst_frame_append_ping(&buf, &len, 11, "after", 5), 0);
    nst_must_raw_write(e, &r, buf, len);
    free(buf);
    ns_envelope *env = expect_result(e, &r, 10, OUTCOME(APPLIED));
    assert_int_equal(env->push_result->results[0]->version, 1);
    assert_string_equal(env->push_result->results[0]->mutation_id,
                        "7a000000-0000-4000-8000-0000000000a1");
    ns_envelope_free(env);
    nst_expect_pong(e, &r, 11, "after", 5);

    /* The record is in PostgreSQL, owned by the pusher's organisation. */
    char value[256];
    const char *params[1] = {PLAN_ID};
    assert_int_equal(nst_db_exec(e,
                                 "SELECT p.title || '|' || o.code FROM plans p JOIN organisations o"
                                 " ON o.id = p.owner_id WHERE p.id = $1",
                                 1, params, value, sizeof(value)),
                     0);
    assert_string_equal(value, "National Action Plan 2026-2030|mogender");

    /* The same push again: the stored answer, applied once. */
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    env = expect_result(e, &r, 10, OUTCOME(APPLIED));
    assert_int_equal(env->push_result->results[0]->version, 1);
    ns_envelope_free(env);
    assert_int_equal(nst_db_exec(e, "SELECT count(*) FROM sync_revisions WHERE record_id = $1", 1,
                                 params, value, sizeof(value)),
                     0);
    assert_string_equal(value, "1");

    /* An update on the current version. */
    build_push(&p, 12, "7a000000-0000-4000-8000-0000000000a2", "plan",
               NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE, 1, "summary",
               "Participation, protection, prevention, relief and recovery");
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    env = expect_result(e, &r, 12, OUTCOME(APPLIED));
    assert_int_equal(env->push_result->results[0]->version, 2);
    ns_envelope_free(env);
    nst_raw_close(&r);
    nst_test_passed(e);
}

static void test_bad_pushes_get_typed_answers(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_must_raw_auth(e, &r, &f->coordinator, 1);

    one_push p;
    build_push(&p, 20, "7a000000-0000-4000-8000-0000000000b1", "expense_claim",
               NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE, 0, "title", "x");
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    ns_envelope *env = expect_result(e, &r, 20, OUTCOME(REJECTED));
    assert_int_equal(env->push_result->results[0]->reject_code, ERR(UNKNOWN_ENTITY));
    ns_envelope_free(env);

    build_push(&p, 21, "7a000000-0000-4000-8000-0000000000b2", "plan",
               NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE, 0, "no_such_field", "x");
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    env = expect_result(e, &r, 21, OUTCOME(REJECTED));
    assert_int_equal(env->push_result->results[0]->reject_code, ERR(UNKNOWN_ENTITY));
    assert_non_null(strstr(env->push_result->results[0]->reject_reason, "no_such_field"));
    ns_envelope_free(env);

    /* A text value for a date field. */
    build_push(&p, 22, "7a000000-0000-4000-8000-0000000000b3", "plan",
               NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE, 0, "period_start", "2026-01-01");
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    env = expect_result(e, &r, 22, OUTCOME(REJECTED));
    assert_int_equal(env->push_result->results[0]->reject_code, ERR(INVALID_ARGUMENT));
    assert_non_null(strstr(env->push_result->results[0]->reject_reason, "period_start"));
    ns_envelope_free(env);

    /* Still serving. */
    nst_must_raw_ping(e, &r, 23);
    nst_raw_close(&r);
    nst_test_passed(e);
}

static void test_observer_may_not_write(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw r;
    nst_must_raw_auth(e, &r, &f->observer, 1);
    one_push p;
    build_push(&p, 30, "7a000000-0000-4000-8000-0000000000c1", "plan",
               NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE, 2, "title", "Hijacked");
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    ns_envelope *env = expect_result(e, &r, 30, OUTCOME(REJECTED));
    assert_int_equal(env->push_result->results[0]->reject_code, ERR(PERMISSION_DENIED));
    ns_envelope_free(env);
    nst_raw_close(&r);
    nst_test_passed(e);
}

static void build_scope_plan(Napsync__V1__Scope *scope, Napsync__V1__Scope **scopes)
{
    napsync__v1__scope__init(scope);
    scope->kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    scope->plan_id = PLAN_ID;
    scopes[0] = scope;
}

/* Pull and Subscribe through the daemon: a device pulls the plan it pushed;
 * a second session subscribed to the plan receives the next change as it
 * commits. */
static void test_pull_and_subscribe(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw writer, watcher;
    nst_must_raw_auth(e, &writer, &f->coordinator, 1);
    nst_must_raw_auth(e, &watcher, &f->coordinator, 1);

    Napsync__V1__Scope scope, *scopes[1];
    build_scope_plan(&scope, scopes);
    Napsync__V1__Pull pull = NAPSYNC__V1__PULL__INIT;
    pull.n_scopes = 1;
    pull.scopes = scopes;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = 40;
    env.body_case = BODY(PULL);
    env.pull = &pull;
    assert_int_equal(nst_raw_send_env(&writer, &env), 0);
    ns_envelope *got = nst_expect_frame(e, &writer, BODY(CHANGE_PAGE));
    assert_int_equal(got->request_id, 40);
    /* The plan's latest version is in the page (earlier tests made v1, v2). */
    uint64_t latest = 0;
    for (size_t i = 0; i < got->change_page->n_records; i++) {
        const Napsync__V1__Record *rec = got->change_page->records[i];
        assert_string_equal(rec->id, PLAN_ID);
        assert_string_equal(rec->entity_type, "plan");
        if (rec->version > latest)
            latest = rec->version;
    }
    assert_true(latest >= 2);
    assert_false(got->change_page->more);
    assert_true(strncmp(got->change_page->next_cursor, "v1.", 3) == 0);
    ns_envelope_free(got);

    /* The watcher subscribes from the start: catch-up first. */
    Napsync__V1__Subscribe sub = NAPSYNC__V1__SUBSCRIBE__INIT;
    sub.n_scopes = 1;
    sub.scopes = scopes;
    ns_envelope senv = NAPSYNC__V1__ENVELOPE__INIT;
    senv.request_id = 50;
    senv.body_case = BODY(SUBSCRIBE);
    senv.subscribe = &sub;
    assert_int_equal(nst_raw_send_env(&watcher, &senv), 0);
    got = nst_expect_frame(e, &watcher, BODY(CHANGE_PAGE));
    assert_int_equal(got->request_id, 50);
    assert_true(got->change_page->n_records >= 1);
    ns_envelope_free(got);

    /* A change pushed by the writer reaches the watcher as it commits. */
    one_push p;
    build_push(&p, 41, "7a000000-0000-4000-8000-0000000000d1", "plan",
               NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE, latest, "status", "archived");
    assert_int_equal(nst_raw_send_env(&writer, &p.env), 0);
    got = expect_result(e, &writer, 41, OUTCOME(APPLIED));
    uint64_t next = got->push_result->results[0]->version;
    assert_int_equal(next, latest + 1);
    ns_envelope_free(got);
    got = nst_expect_frame(e, &watcher, BODY(CHANGE_PAGE));
    assert_int_equal(got->request_id, 50);
    assert_int_equal(got->change_page->n_records, 1);
    assert_int_equal(got->change_page->records[0]->version, next);
    ns_envelope_free(got);

    /* A cursor from the future is refused with CURSOR_UNKNOWN, not fatal. */
    pull.cursor = "v1.00000000-0000-4000-8000-000000000000.999999";
    env.request_id = 42;
    assert_int_equal(nst_raw_send_env(&writer, &env), 0);
    nst_expect_error(e, &writer, 42, ERR(CURSOR_UNKNOWN), false);
    nst_must_raw_ping(e, &writer, 43);

    nst_raw_close(&writer);
    nst_raw_close(&watcher);
    nst_test_passed(e);
}

#define CONFLICT_PLAN "7a000000-0000-4000-8000-000000000002"

static ns_envelope *list_conflicts(const nst_env *e, nst_raw *r, uint64_t rid,
                                   Napsync__V1__Scope **scopes)
{
    Napsync__V1__ListConflicts lc = NAPSYNC__V1__LIST_CONFLICTS__INIT;
    lc.n_scopes = 1;
    lc.scopes = scopes;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = BODY(LIST_CONFLICTS);
    env.list_conflicts = &lc;
    assert_int_equal(nst_raw_send_env(r, &env), 0);
    ns_envelope *got = nst_expect_frame(e, r, BODY(CONFLICT_LIST));
    assert_int_equal(got->request_id, rid);
    return got;
}

static ns_envelope *resolve(const nst_env *e, nst_raw *r, uint64_t rid, const char *cid,
                            const char *mid)
{
    Napsync__V1__ResolveConflict rc = NAPSYNC__V1__RESOLVE_CONFLICT__INIT;
    rc.conflict_id = (char *)cid;
    rc.mutation_id = (char *)mid;
    rc.resolution = NAPSYNC__V1__RESOLUTION__RESOLUTION_KEEP;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = BODY(RESOLVE_CONFLICT);
    env.resolve_conflict = &rc;
    assert_int_equal(nst_raw_send_env(r, &env), 0);
    ns_envelope *got = nst_expect_frame(e, r, BODY(MUTATION_RESULT));
    assert_int_equal(got->request_id, rid);
    assert_string_equal(got->mutation_result->mutation_id, mid);
    return got;
}

/* Two devices edit one title: the conflict is listed with names, resolved
 * with KEEP (a new version), and no longer listed; the resolution is
 * idempotent and an observer may not resolve. */
static void test_conflicts_list_and_resolve(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    nst_raw a, b, o;
    nst_must_raw_auth(e, &a, &f->coordinator, 1);
    nst_must_raw_auth(e, &b, &f->officer, 1);
    nst_must_raw_auth(e, &o, &f->observer, 1);

    one_push p;
    nst_plan_pb plan;
    build_plan_create(&p, &plan, 60, "7a000000-0000-4000-8000-0000000000e1", "T0");
    p.m.record_id = CONFLICT_PLAN;
    assert_int_equal(nst_raw_send_env(&a, &p.env), 0);
    ns_envelope_free(expect_result(e, &a, 60, OUTCOME(APPLIED)));
    build_push(&p, 61, "7a000000-0000-4000-8000-0000000000e2", "plan",
               NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE, 1, "title", "Title by A");
    p.m.record_id = CONFLICT_PLAN;
    assert_int_equal(nst_raw_send_env(&a, &p.env), 0);
    ns_envelope_free(expect_result(e, &a, 61, OUTCOME(APPLIED)));
    build_push(&p, 62, "7a000000-0000-4000-8000-0000000000e3", "plan",
               NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE, 1, "title", "Title by B");
    p.m.record_id = CONFLICT_PLAN;
    assert_int_equal(nst_raw_send_env(&b, &p.env), 0);
    ns_envelope *got = expect_result(e, &b, 62, OUTCOME(CONFLICT));
    assert_int_equal(got->push_result->results[0]->n_conflict_ids, 1);
    char cid[40];
    snprintf(cid, sizeof(cid), "%s", got->push_result->results[0]->conflict_ids[0]);
    ns_envelope_free(got);

    Napsync__V1__Scope scope, *scopes[1];
    build_scope_plan(&scope, scopes);
    scope.plan_id = CONFLICT_PLAN;
    got = list_conflicts(e, &b, 63, scopes);
    assert_int_equal(got->conflict_list->n_conflicts, 1);
    const Napsync__V1__Conflict *c = got->conflict_list->conflicts[0];
    assert_string_equal(c->id, cid);
    assert_string_equal(c->field, "title");
    assert_string_equal(c->record_id, CONFLICT_PLAN);
    assert_string_equal(c->kept_value->text_value, "Title by A");
    assert_string_equal(c->other_value->text_value, "Title by B");
    assert_string_equal(c->base_value->text_value, "T0");
    assert_string_equal(c->kept_by, "NAP Coordinator");
    assert_string_equal(c->kept_device, "coordinator-laptop");
    assert_string_equal(c->other_by, "Gender Officer");
    assert_string_equal(c->other_device, "officer-phone");
    assert_false(c->resolved);
    ns_envelope_free(got);

    /* An observer: refused, in a MutationResult. */
    got = resolve(e, &o, 64, cid, "7a000000-0000-4000-8000-0000000000e4");
    assert_int_equal(got->mutation_result->outcome, OUTCOME(REJECTED));
    assert_int_equal(got->mutation_result->reject_code, ERR(PERMISSION_DENIED));
    ns_envelope_free(got);

    /* "Take mine" on A: KEEP, a new version; again: the same answer. */
    for (uint64_t rid = 65; rid <= 66; rid++) {
        got = resolve(e, &a, rid, cid, "7a000000-0000-4000-8000-0000000000e5");
        assert_int_equal(got->mutation_result->outcome, OUTCOME(APPLIED));
        assert_int_equal(got->mutation_result->version, 3);
        ns_envelope_free(got);
    }
    got = list_conflicts(e, &b, 67, scopes);
    assert_int_equal(got->conflict_list->n_conflicts, 0);
    ns_envelope_free(got);
    char value[64];
    const char *params[1] = {CONFLICT_PLAN};
    assert_int_equal(nst_db_exec(e, "SELECT title || ' ' || version FROM plans WHERE id = $1", 1,
                                 params, value, sizeof(value)),
                     0);
    assert_string_equal(value, "Title by A 3");
    nst_must_raw_ping(e, &a, 68);
    nst_raw_close(&a);
    nst_raw_close(&b);
    nst_raw_close(&o);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_push_round_trip_in_request_order),
        NST_TEST(test_bad_pushes_get_typed_answers),
        NST_TEST(test_observer_may_not_write),
        NST_TEST(test_pull_and_subscribe),
        NST_TEST(test_conflicts_list_and_resolve),
    };
    return cmocka_run_group_tests_name("integration: push over the wire", tests, group_setup,
                                       nst_group_teardown);
}
