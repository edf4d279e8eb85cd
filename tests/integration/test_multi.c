/* Several napsyncd processes and crashes, against real daemons:
 *
 *  - two instances on one database: a change pushed through one reaches a
 *    subscriber of the other (LISTEN/NOTIFY across processes), and the
 *    survivor of a SIGKILL keeps serving pushes and subscriptions;
 *  - idempotency across a crash between commit and reply: a Push is sent,
 *    the daemon is killed with SIGKILL a varying moment later, restarted,
 *    and the same Push sent again must be applied exactly once with one
 *    version, whether or not the first attempt had committed.
 *
 * The crash instant cannot be forced without a hook in the daemon, so the
 * second test repeats with seeded kill delays: NS_TEST_ITERATIONS (default
 * 30) and NS_TEST_SEED (default: from the clock; printed) choose the run. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

#define BODY(name) NAPSYNC__V1__ENVELOPE__BODY_##name
#define OUTCOME(x) NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_##x
#define OP(x)      NAPSYNC__V1__MUTATION_OP__MUTATION_OP_##x

#define MULTI_PLAN "7b000000-0000-4000-8000-000000000001"
#define CRASH_PLAN "7b000000-0000-4000-8000-000000000002"

#define CI_ITERATIONS  30
#define MAX_ITERATIONS 100000
/* Kill delays are drawn from [0, MAX_KILL_DELAY_US], as the cube of a
 * uniform fraction of it: a Push commits within about a millisecond on an
 * idle machine (more under sanitizers or load), so uniform delays would
 * mostly land after the reply. About a third fall below 1 ms. */
#define MAX_KILL_DELAY_US 20000
/* From this many iterations on, both outcomes of a crash must have been
 * seen; a CI-sized run may by chance see only one. */
#define BOTH_CASES_FROM 200

typedef struct {
    nst_env *e;
    nst_device writer;  /* mogender's coordinator: owns the plans */
    nst_device watcher; /* a second mogender device that subscribes */
    nst_env *second;    /* a second napsyncd on e's database, while a test runs one */
} fixture;
NST_FIXTURE_CHECK(fixture);

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    const nst_member m[] = {
        {&f->writer, "coordinator-laptop", "mogender", "NAP Coordinator", "coordinator", NULL,
         NULL},
        {&f->watcher, "officer-phone", "mogender", "Gender Officer", "implementer", NULL, NULL},
    };
    return nst_group_start(&f->e, "multi", NULL, m, NST_COUNT(m));
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f != NULL)
        nst_env_free(f->second);
    return nst_group_teardown(state);
}

/* nst_teardown, after showing the second daemon's log if the test failed
 * while it ran, and killing it: it must not outlive the test. */
static int multi_teardown(void **state)
{
    fixture *f = *state;
    if (f->second) {
        nst_test_end(f->second);
        nst_env_free(f->second);
        f->second = NULL;
    }
    return nst_teardown(state);
}

/* ---- messages ---------------------------------------------------------------------- */

/* A Push of one mutation setting the title of a plan; a create sets what
 * else a draft plan needs (harness.h). The strings are borrowed: they must
 * outlive the sends. */
typedef struct {
    Napsync__V1__Value value;
    Napsync__V1__Field field;
    Napsync__V1__Field *fields[1];
    Napsync__V1__FieldSet set;
    nst_plan_pb plan; /* a create's fields */
    Napsync__V1__Mutation m;
    Napsync__V1__Mutation *ms[1];
    Napsync__V1__Push push;
    ns_envelope env;
} one_push;

static void build_push(one_push *p, uint64_t rid, const char *mutation_id, const char *plan,
                       Napsync__V1__MutationOp op, uint64_t base, const char *title)
{
    memset(p, 0, sizeof(*p));
    napsync__v1__value__init(&p->value);
    p->value.kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    p->value.text_value = (char *)title;
    napsync__v1__field__init(&p->field);
    p->field.name = "title";
    p->field.value = &p->value;
    p->fields[0] = &p->field;
    napsync__v1__field_set__init(&p->set);
    p->set.n_fields = 1;
    p->set.fields = p->fields;
    napsync__v1__mutation__init(&p->m);
    p->m.mutation_id = (char *)mutation_id;
    p->m.entity_type = "plan";
    p->m.record_id = (char *)plan;
    p->m.base_version = base;
    p->m.op = op;
    p->m.fields = &p->set;
    if (op == OP(CREATE)) {
        nst_plan_pb_init(&p->plan, title, "draft");
        p->m.fields = &p->plan.set;
    }
    p->ms[0] = &p->m;
    napsync__v1__push__init(&p->push);
    p->push.n_mutations = 1;
    p->push.mutations = p->ms;
    napsync__v1__envelope__init(&p->env);
    p->env.request_id = rid;
    p->env.body_case = BODY(PUSH);
    p->env.push = &p->push;
}

/* The next frame is the PushResult for rid: one APPLIED result for
 * mutation_id. Returns its version. */
static uint64_t expect_applied(const nst_env *e, nst_raw *r, uint64_t rid, const char *mutation_id)
{
    ns_envelope *env = nst_expect_frame(e, r, BODY(PUSH_RESULT));
    uint64_t got_rid = env->request_id;
    size_t n = env->push_result->n_results;
    const Napsync__V1__MutationResult *res = n == 1 ? env->push_result->results[0] : NULL;
    char why[600] = "";
    if (res && (int)res->outcome != (int)OUTCOME(APPLIED))
        snprintf(why, sizeof(why), "outcome %d (reject %d: %s)", res->outcome, res->reject_code,
                 res->reject_reason ? res->reject_reason : "");
    else if (res && (res->mutation_id == NULL || strcmp(res->mutation_id, mutation_id) != 0))
        snprintf(why, sizeof(why), "the result names mutation %s",
                 res->mutation_id ? res->mutation_id : "(none)");
    uint64_t version = res ? res->version : 0;
    ns_envelope_free(env);
    if (got_rid != rid || n != 1)
        nst_fail(e, "PushResult for request %llu with %zu results, expected request %llu with 1",
                 (unsigned long long)got_rid, n, (unsigned long long)rid);
    if (why[0])
        nst_fail(e, "mutation %s was not APPLIED: %s", mutation_id, why);
    return version;
}

static uint64_t must_push(const nst_env *e, nst_raw *r, uint64_t rid, const char *mutation_id,
                          const char *plan, Napsync__V1__MutationOp op, uint64_t base,
                          const char *title)
{
    one_push p;
    build_push(&p, rid, mutation_id, plan, op, base, title);
    if (nst_raw_send_env(r, &p.env) != 0)
        nst_fail(e, "sending Push %llu failed: %s", (unsigned long long)rid, r->error);
    return expect_applied(e, r, rid, mutation_id);
}

/* Subscribes r to plan with request rid and reads the catch-up pages. */
static void must_subscribe(const nst_env *e, nst_raw *r, uint64_t rid, const char *plan)
{
    Napsync__V1__Scope scope = NAPSYNC__V1__SCOPE__INIT;
    scope.kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    scope.plan_id = (char *)plan;
    Napsync__V1__Scope *scopes[1] = {&scope};
    Napsync__V1__Subscribe sub = NAPSYNC__V1__SUBSCRIBE__INIT;
    sub.n_scopes = 1;
    sub.scopes = scopes;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = BODY(SUBSCRIBE);
    env.subscribe = &sub;
    if (nst_raw_send_env(r, &env) != 0)
        nst_fail(e, "sending Subscribe failed: %s", r->error);
    for (bool more = true; more;) {
        ns_envelope *got = nst_expect_frame(e, r, BODY(CHANGE_PAGE));
        uint64_t got_rid = got->request_id;
        more = got->change_page->more;
        ns_envelope_free(got);
        if (got_rid != rid)
            nst_fail(e, "a catch-up page answers request %llu, not the Subscribe's %llu",
                     (unsigned long long)got_rid, (unsigned long long)rid);
    }
}

static const char *record_title(const Napsync__V1__Record *rec)
{
    if (rec->fields == NULL)
        return NULL;
    for (size_t i = 0; i < rec->fields->n_fields; i++) {
        const Napsync__V1__Field *fl = rec->fields->fields[i];
        if (fl->name && strcmp(fl->name, "title") == 0 && fl->value &&
            fl->value->kind_case == NAPSYNC__V1__VALUE__KIND_TEXT_VALUE)
            return fl->value->text_value;
    }
    return NULL;
}

/* The subscription rid of r must deliver plan at version with title, in a
 * page of its own. Pages without records (the cursor moving past changes
 * out of scope) are skipped; any other record fails the test. */
static void expect_change(const nst_env *e, nst_raw *r, uint64_t rid, const char *plan,
                          uint64_t version, const char *title)
{
    for (;;) {
        ns_envelope *got = nst_expect_frame(e, r, BODY(CHANGE_PAGE));
        const Napsync__V1__ChangePage *page = got->change_page;
        char why[512] = "";
        bool found = false;
        if (got->request_id != rid)
            snprintf(why, sizeof(why), "a page for request %llu, not the Subscribe's %llu",
                     (unsigned long long)got->request_id, (unsigned long long)rid);
        else if (page->n_records > 1)
            snprintf(why, sizeof(why), "a page of %zu records where one change was due",
                     page->n_records);
        else if (page->n_records == 1) {
            const Napsync__V1__Record *rec = page->records[0];
            const char *t = record_title(rec);
            if (strcmp(rec->id, plan) != 0 || rec->version != version || t == NULL ||
                strcmp(t, title) != 0)
                snprintf(why, sizeof(why),
                         "record %s version %llu title \"%s\", expected %s %llu \"%s\"", rec->id,
                         (unsigned long long)rec->version, t ? t : "(none)", plan,
                         (unsigned long long)version, title);
            else
                found = true;
        }
        ns_envelope_free(got);
        if (why[0])
            nst_fail(e, "subscription: %s", why);
        if (found)
            return;
    }
}

/* ---- two instances ----------------------------------------------------------------- */

/* A subscriber of instance 2 sees what instance 1 commits, and when
 * instance 1 dies without a word, instance 2 goes on serving pushes and
 * subscriptions; a restarted instance 1 is heard again. */
static void test_two_instances_share_the_feed(void **state)
{
    fixture *f = *state;
    nst_env *one = f->e;
    nst_env *two = f->second = nst_env_peer(one, "second");
    if (two == NULL)
        nst_fail(one, "no environment for a second napsyncd");
    nst_test_begin(two);
    if (nst_daemon_start(two, NULL) != 0)
        nst_fail(two, "the second napsyncd did not start");
    assert_int_not_equal(one->port, two->port);

    nst_raw w1, sub;
    nst_must_raw_auth(one, &w1, &f->writer, 1);
    uint64_t v = must_push(one, &w1, 2, "7b000000-0000-4000-8000-0000000000a1", MULTI_PLAN,
                           OP(CREATE), 0, "Created through instance 1");
    assert_int_equal(v, 1);

    nst_must_raw_auth(two, &sub, &f->watcher, 1);
    must_subscribe(two, &sub, 7, MULTI_PLAN);

    /* Pushed through 1, heard by 2's subscriber as it commits. */
    v = must_push(one, &w1, 3, "7b000000-0000-4000-8000-0000000000a2", MULTI_PLAN, OP(UPDATE), v,
                  "Updated through instance 1");
    assert_int_equal(v, 2);
    expect_change(two, &sub, 7, MULTI_PLAN, v, "Updated through instance 1");

    /* Instance 1 is killed: its session dies, instance 2 serves on. */
    assert_int_equal(nst_daemon_signal(one, SIGKILL), 0);
    int status;
    assert_int_equal(nst_daemon_wait_exit(one, NST_WAIT_MS, &status), 0);
    assert_int_equal(status, 128 + SIGKILL);
    nst_raw_abort(&w1);

    nst_raw w2, late;
    nst_must_raw_auth(two, &w2, &f->writer, 1);
    v = must_push(two, &w2, 2, "7b000000-0000-4000-8000-0000000000a3", MULTI_PLAN, OP(UPDATE), v,
                  "Updated through instance 2");
    assert_int_equal(v, 3);
    expect_change(two, &sub, 7, MULTI_PLAN, v, "Updated through instance 2");
    /* A subscription made after the crash works too. */
    nst_must_raw_auth(two, &late, &f->watcher, 1);
    must_subscribe(two, &late, 9, MULTI_PLAN);
    v = must_push(two, &w2, 3, "7b000000-0000-4000-8000-0000000000a4", MULTI_PLAN, OP(UPDATE), v,
                  "Again through instance 2");
    assert_int_equal(v, 4);
    expect_change(two, &sub, 7, MULTI_PLAN, v, "Again through instance 2");
    expect_change(two, &late, 9, MULTI_PLAN, v, "Again through instance 2");

    /* Instance 1 restarted (on a new port): 2's subscribers hear it again. */
    if (nst_daemon_start(one, NULL) != 0)
        nst_fail(one, "instance 1 did not restart");
    nst_must_raw_auth(one, &w1, &f->writer, 1);
    v = must_push(one, &w1, 2, "7b000000-0000-4000-8000-0000000000a5", MULTI_PLAN, OP(UPDATE), v,
                  "Through the restarted instance 1");
    assert_int_equal(v, 5);
    expect_change(two, &sub, 7, MULTI_PLAN, v, "Through the restarted instance 1");
    expect_change(two, &late, 9, MULTI_PLAN, v, "Through the restarted instance 1");

    nst_must_raw_ping(two, &sub, 8);
    nst_raw_close(&w1);
    nst_raw_close(&w2);
    nst_raw_close(&sub);
    nst_raw_close(&late);
    nst_test_passed(two);
    f->second = NULL;
    if (nst_env_close(two) != 0)
        nst_fail(one, "the second napsyncd did not stop cleanly on SIGTERM");
    nst_test_passed(one);
}

/* ---- idempotency across crashes ----------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A decimal environment variable in [lo, hi], or def when unset. */
static uint64_t env_number(const char *name, uint64_t def, uint64_t lo, uint64_t hi)
{
    const char *s = getenv(name);
    if (s == NULL || s[0] == '\0')
        return def;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "%s=\"%s\" is not a number in [%llu, %llu]\n", name, s,
                (unsigned long long)lo, (unsigned long long)hi);
        exit(2);
    }
    return v;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* What the database holds about one mutation and its plan. */
typedef struct {
    uint64_t plan_version;
    int revisions;   /* sync_revisions rows of the mutation */
    char answer[64]; /* sync_mutations "outcome:version", or "none" */
    int feed_rows;   /* sync_feed rows of the plan's current version */
} db_state;

static void read_state(nst_env *e, const char *plan, const char *mutation_id, db_state *s)
{
    const char *params[2] = {plan, mutation_id};
    char value[160];
    if (nst_db_exec(e,
                    "SELECT p.version || ' ' ||"
                    " (SELECT count(*) FROM sync_revisions WHERE mutation_id = $2) || ' ' ||"
                    " coalesce((SELECT outcome || ':' || version FROM sync_mutations"
                    "           WHERE mutation_id = $2), 'none') || ' ' ||"
                    " (SELECT count(*) FROM sync_feed WHERE record_id = p.id"
                    "  AND version = p.version)"
                    " FROM plans p WHERE p.id = $1",
                    2, params, value, sizeof(value)) != 0)
        nst_fail(e, "reading the state of mutation %s failed", mutation_id);
    unsigned long long pv;
    if (sscanf(value, "%llu %d %63s %d", &pv, &s->revisions, s->answer, &s->feed_rows) != 4)
        nst_fail(e, "unexpected state \"%s\" for mutation %s", value, mutation_id);
    s->plan_version = pv;
}

/* Waits until no connection of a napsyncd is left on the database: then
 * every transaction of a killed daemon has committed or rolled back, and
 * what the database holds is final. */
static void wait_backends_gone(nst_env *e)
{
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    for (;;) {
        char n[32];
        if (nst_db_exec(e,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name LIKE 'napsyncd%'",
                        0, NULL, n, sizeof(n)) != 0)
            nst_fail(e, "reading pg_stat_activity failed");
        if (strcmp(n, "0") == 0)
            return;
        if (nst_now_ms() >= deadline)
            nst_fail(e, "%s connections of the killed napsyncd are still open", n);
        nst_sleep_ms(2);
    }
}

/* One round: Push, SIGKILL after delay_us, look, restart, Push again.
 * Returns whether the first attempt had committed; *answered says whether
 * its answer had reached the client before the kill. */
static bool crash_round(fixture *f, int i, long delay_us, uint64_t *version, bool *answered)
{
    nst_env *e = f->e;
    char mid[40], title[64];
    snprintf(mid, sizeof(mid), "7b000000-0000-4000-8000-%012x", 0x100000u + (unsigned)i);
    snprintf(title, sizeof(title), "Crash round %d", i);
    uint64_t base = *version;

    nst_raw r;
    nst_must_raw_auth(e, &r, &f->writer, 1);
    one_push p;
    build_push(&p, 2, mid, CRASH_PLAN, OP(UPDATE), base, title);
    if (nst_raw_send_env(&r, &p.env) != 0)
        nst_fail(e, "round %d: sending the Push failed: %s", i, r.error);
    sleep_us(delay_us);
    if (nst_daemon_signal(e, SIGKILL) != 0)
        nst_fail(e, "round %d: napsyncd was not running to be killed", i);
    int status = -1;
    if (nst_daemon_wait_exit(e, NST_WAIT_MS, &status) != 0 || status != 128 + SIGKILL)
        nst_fail(e, "round %d: napsyncd did not die of SIGKILL (status %d)", i, status);

    /* Not part of the protocol under test (the client acts as if nothing
     * came): only to tell the crash windows apart in the statistics. */
    ns_envelope *early = NULL;
    *answered =
        nst_raw_read(&r, 1000, &early) == NST_READ_FRAME && early->body_case == BODY(PUSH_RESULT);
    ns_envelope_free(early);
    nst_raw_abort(&r);

    wait_backends_gone(e);
    db_state s;
    read_state(e, CRASH_PLAN, mid, &s);
    char applied[64];
    snprintf(applied, sizeof(applied), "applied:%llu", (unsigned long long)(base + 1));
    bool committed = strcmp(s.answer, "none") != 0;
    if (committed && (strcmp(s.answer, applied) != 0 || s.revisions != 1 ||
                      s.plan_version != base + 1 || s.feed_rows != 1))
        nst_fail(e,
                 "round %d: after the crash the mutation is stored as %s with %d revisions,"
                 " the plan at version %llu with %d feed rows; expected %s, 1, %llu, 1",
                 i, s.answer, s.revisions, (unsigned long long)s.plan_version, s.feed_rows, applied,
                 (unsigned long long)(base + 1));
    if (!committed && (s.revisions != 0 || s.plan_version != base))
        nst_fail(e,
                 "round %d: no answer is stored but the mutation has %d revisions and the"
                 " plan is at version %llu (base %llu): half applied",
                 i, s.revisions, (unsigned long long)s.plan_version, (unsigned long long)base);
    if (*answered && !committed)
        nst_fail(e, "round %d: the client got an answer for a mutation that did not commit", i);

    if (nst_daemon_start(e, NULL) != 0)
        nst_fail(e, "round %d: napsyncd did not restart", i);
    nst_must_raw_auth(e, &r, &f->writer, 1);
    uint64_t v = must_push(e, &r, 3, mid, CRASH_PLAN, OP(UPDATE), base, title);
    if (v != base + 1)
        nst_fail(e, "round %d: the re-sent mutation got version %llu, expected %llu", i,
                 (unsigned long long)v, (unsigned long long)(base + 1));
    nst_raw_close(&r);

    read_state(e, CRASH_PLAN, mid, &s);
    if (strcmp(s.answer, applied) != 0 || s.revisions != 1 || s.plan_version != base + 1 ||
        s.feed_rows != 1)
        nst_fail(e,
                 "round %d: after the re-send the mutation is stored as %s with %d revisions,"
                 " the plan at version %llu with %d feed rows; expected %s, 1, %llu, 1",
                 i, s.answer, s.revisions, (unsigned long long)s.plan_version, s.feed_rows, applied,
                 (unsigned long long)(base + 1));
    *version = v;
    return committed;
}

static void test_push_survives_a_crash_before_the_reply(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    int iterations = (int)env_number("NS_TEST_ITERATIONS", CI_ITERATIONS, 1, MAX_ITERATIONS);
    uint64_t seed = env_number("NS_TEST_SEED", (uint64_t)time(NULL), 0, UINT64_MAX);
    printf("crash rounds: %d, kill delays 0..%d us, NS_TEST_SEED=%llu\n", iterations,
           MAX_KILL_DELAY_US, (unsigned long long)seed);

    nst_raw r;
    nst_must_raw_auth(e, &r, &f->writer, 1);
    uint64_t version = must_push(e, &r, 2, "7b000000-0000-4000-8000-0000000000b1", CRASH_PLAN,
                                 OP(CREATE), 0, "Before the crashes");
    nst_raw_close(&r);

    int not_applied = 0, applied_unanswered = 0, applied_answered = 0;
    uint64_t rng = seed;
    uint64_t started = nst_now_ms();
    for (int i = 0; i < iterations; i++) {
        double u = (double)(splitmix64(&rng) >> 11) / (double)(UINT64_C(1) << 53);
        long delay_us = (long)(u * u * u * MAX_KILL_DELAY_US);
        bool answered;
        bool committed = crash_round(f, i, delay_us, &version, &answered);
        if (!committed)
            not_applied++;
        else if (answered)
            applied_answered++;
        else
            applied_unanswered++;
        printf("round %d: SIGKILL %ld us after the send: %s\n", i, delay_us,
               !committed ? "not applied, the re-send applied it"
               : answered ? "applied and answered, the re-send got the stored answer"
                          : "applied, answer lost, the re-send got the stored answer");
    }

    /* Never twice: one revision and one feed row per version, the create's
     * and each round's. */
    char value[64];
    const char *params[1] = {CRASH_PLAN};
    assert_int_equal(nst_db_exec(e,
                                 "SELECT (SELECT count(*) FROM sync_revisions WHERE record_id = $1)"
                                 " || ' ' || (SELECT count(*) FROM sync_feed WHERE record_id = $1)"
                                 " || ' ' || (SELECT version FROM plans WHERE id = $1)",
                                 1, params, value, sizeof(value)),
                     0);
    char expected[64];
    snprintf(expected, sizeof(expected), "%d %d %d", iterations + 1, iterations + 1,
             iterations + 1);
    assert_string_equal(value, expected);

    printf("crash rounds done in %llu ms: %d not applied before the crash, %d applied with the "
           "answer lost, %d applied and answered (NS_TEST_SEED=%llu)\n",
           (unsigned long long)(nst_now_ms() - started), not_applied, applied_unanswered,
           applied_answered, (unsigned long long)seed);
    if (iterations >= BOTH_CASES_FROM &&
        (not_applied == 0 || applied_unanswered + applied_answered == 0))
        nst_fail(e, "%d rounds never saw %s: the kill delays miss a crash window", iterations,
                 not_applied == 0 ? "a crash before the commit" : "a crash after the commit");
    nst_test_passed(e);
}

int main(void)
{
    /* The round-by-round statistics interleave with cmocka's lines. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_instances_share_the_feed, nst_setup,
                                        multi_teardown),
        NST_TEST(test_push_survives_a_crash_before_the_reply),
    };
    return cmocka_run_group_tests_name("integration: several daemons and crashes", tests,
                                       group_setup, group_teardown);
}
