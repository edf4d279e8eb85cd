/* The push path (daemon/sync.h) in process against a real PostgreSQL: a
 * fresh database on the NS_TEST_PG* cluster migrated with ns_migrate_run,
 * the registry loaded from it, a uv loop and a pool, organisations,
 * principals and devices inserted with SQL; no daemon process. Pushes are
 * built as protobuf messages, answers checked, and the database read back
 * with plain libpq: records, revisions, the feed, conflicts and stored
 * answers. After every test the feed must be contiguous from 1, in step
 * with the revisions (one feed row each), and every record at the version
 * of its last revision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "pushtest.h"

/* ---- checks -------------------------------------------------------------------------- */

static void expect_rejected(const nst_pt_out *o, size_t i, int code, const char *needle)
{
    nst_pt_expect(o, i, OUT_REJECTED, 0);
    const nst_pt_result *r = &o->r[i];
    if (r->reject_code != code)
        fail_msg("result %zu: reject code %d (%s), expected %d", i, r->reject_code, r->reason,
                 code);
    if (strstr(r->reason, needle) == NULL)
        fail_msg("result %zu: reason \"%s\" lacks \"%s\"", i, r->reason, needle);
}

/* ---- fixture -------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    return nst_pt_setup("push");
}

static int group_teardown(void **state)
{
    (void)state;
    return nst_pt_teardown();
}

/* ---- tests: applied, merged, conflict
 * ------------------------------------------------------------ */

/* The notifications that arrived on the test's connection: their payloads,
 * space separated. */
static void notified(char *out, size_t outlen)
{
    out[0] = '\0';
    assert_int_equal(PQconsumeInput(nst_pt.pgdb.pg), 1);
    PGnotify *n;
    while ((n = PQnotifies(nst_pt.pgdb.pg)) != NULL) {
        assert_string_equal(n->relname, "napsync_feed");
        size_t o = strlen(out);
        snprintf(out + o, outlen - o, "%s%s", o ? " " : "", n->extra);
        PQfreemem(n);
    }
}

static void test_create_update_delete(void **state)
{
    (void)state;
    char notes[128];
    nst_pt_exec_ok("LISTEN napsync_feed");
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0,
                  PLAN_F("title=National Action Plan", "tags=yps, climate"), OUT_APPLIED, 1);

    assert_string_equal(nst_pt_plan_field(PLAN_1, "version"), "1");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "tenant_id"), PLAN_1);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "National Action Plan");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "tags"), "{climate,yps}");
    assert_null(nst_pt_plan_field(PLAN_1, "summary"));
    /* Created for the principal's organisation. */
    assert_string_equal(nst_pt_plan_field(PLAN_1, "owner_id"), nst_pt.org_a);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "changed_by"), nst_pt.alice.principal_id);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "changed_device"), nst_pt.alice.device_id);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "deleted"), "false");

    /* The revision: who, from which device, which mutation, before, after
     * (every field, absent ones null). */
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "op"), "create");
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "principal_id"), nst_pt.alice.principal_id);
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "device_id"), nst_pt.alice.device_id);
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "mutation_id"), MID(1));
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "tenant_id"), PLAN_1);
    assert_null(nst_pt_rev(PLAN_1, "1", "before"));
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "after->>'title'"), "National Action Plan");
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "after->'tags'"), "[\"climate\", \"yps\"]");
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "after->'summary'"), "null");
    assert_string_equal(nst_pt_rev(PLAN_1, "1", "after->>'owner_id'"), nst_pt.org_a);

    /* Its feed position and its stored answer. */
    assert_string_equal(Q("SELECT seq || ' ' || entity_type || ' ' || version || ' ' ||"
                          " (record_id = $1 AND tenant_id = $1)::text FROM sync_feed",
                          PLAN_1),
                        "1 plan 1 true");
    assert_string_equal(Q("SELECT outcome || ' ' || version || ' ' || reject_code || ' ' ||"
                          " (device_id = $2)::text || ' ' || (record_id = $3)::text || ' ' ||"
                          " entity_type || ' ' || cardinality(conflict_ids)"
                          " FROM sync_mutations WHERE mutation_id = $1",
                          MID(1), nst_pt.alice.device_id, PLAN_1),
                        "applied 1 0 true true plan 0");

    /* The commit notified the new head of the feed. */
    notified(notes, sizeof(notes));
    assert_string_equal(notes, "1");

    /* An update on the current version. */
    nst_pt_apply1(&nst_pt.alice, MID(2), "plan", PLAN_1, OP_UPDATE, 1,
                  F("title=NAP 2024-2028", "summary"), OUT_APPLIED, 2);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "NAP 2024-2028");
    assert_string_equal(nst_pt_rev(PLAN_1, "2", "op"), "update");
    assert_string_equal(nst_pt_rev(PLAN_1, "2", "before->>'title'"), "National Action Plan");
    assert_string_equal(nst_pt_rev(PLAN_1, "2", "after->>'title'"), "NAP 2024-2028");
    assert_string_equal(nst_pt_rev(PLAN_1, "2", "after->>'kind'"), NST_PLAN_KIND);
    assert_int_equal(QN0("SELECT max(seq) FROM sync_feed"), 2);

    /* Nothing changes: applied on the current version, no new version. */
    notified(notes, sizeof(notes));
    assert_string_equal(notes, "2");
    nst_pt_apply1(&nst_pt.alice, MID(3), "plan", PLAN_1, OP_UPDATE, 2, F("title=NAP 2024-2028"),
                  OUT_APPLIED, 2);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_1), 2);
    assert_int_equal(nst_pt_stored_count(MID(3)), 1);
    notified(notes, sizeof(notes));
    assert_string_equal(notes, ""); /* no change, no notification */

    /* Delete: a tombstone that keeps its fields. */
    nst_pt_apply1(&nst_pt.alice, MID(4), "plan", PLAN_1, OP_DELETE, 2, NOFIELDS, OUT_APPLIED, 3);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "deleted"), "true");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "NAP 2024-2028");
    assert_string_equal(nst_pt_rev(PLAN_1, "3", "op"), "delete");
    assert_string_equal(nst_pt_rev(PLAN_1, "3", "deleted"), "true");
    /* Deleting it again changes nothing. */
    nst_pt_apply1(&nst_pt.alice, MID(5), "plan", PLAN_1, OP_DELETE, 3, NOFIELDS, OUT_APPLIED, 3);
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), 3);
    notified(notes, sizeof(notes));
    assert_string_equal(notes, "3");
    nst_pt_exec_ok("UNLISTEN napsync_feed");
}

/* A conflict row, as text: field base kept other kept_by kept_device
 * other_by other_device. */
static const char *conflict_row(const char *id)
{
    return Q("SELECT coalesce(field, '-') || ' ' || coalesce(base::text, '-') || ' ' ||"
             " coalesce(kept::text, '-') || ' ' || coalesce(other::text, '-') || ' ' ||"
             " kept_deleted || ' ' || other_deleted || ' ' || coalesce(other_fields::text, '-')"
             " FROM sync_conflicts WHERE id = $1",
             id);
}

static void conflict_authors(const char *id, const ns_identity_info *kept,
                             const ns_identity_info *other)
{
    assert_string_equal(Q("SELECT kept_principal FROM sync_conflicts WHERE id = $1", id),
                        kept->principal_id);
    assert_string_equal(Q("SELECT kept_device FROM sync_conflicts WHERE id = $1", id),
                        kept->device_id);
    assert_string_equal(Q("SELECT other_principal FROM sync_conflicts WHERE id = $1", id),
                        other->principal_id);
    assert_string_equal(Q("SELECT other_device FROM sync_conflicts WHERE id = $1", id),
                        other->device_id);
    assert_null(Q("SELECT resolved_at FROM sync_conflicts WHERE id = $1", id));
}

/* The issue's scenario: A changes title, B changes title and summary, both
 * on v1; A's push lands first. */
static void scenario(bool one_batch)
{
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0,
                  PLAN_F("title=T0", "summary=S0"), OUT_APPLIED, 1);
    nst_pt_pbuild a, b;
    nst_pt_pb_init(&a);
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&a, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=Title by A"));
    nst_pt_pb_add(&b, MID(3), "plan", PLAN_1, OP_UPDATE, 1,
                  F("title=Title by B", "summary=Summary by B"));
    nst_pt_out oa, ob;
    if (one_batch) {
        /* Both arrive in one turn of the loop: one transaction, in order. */
        nst_pt_submit(nst_pt.sync, &a, &nst_pt.alice, &oa);
        nst_pt_submit(nst_pt.sync, &b, &nst_pt.bob, &ob);
        nst_pt_run_until(&oa.done);
        nst_pt_run_until(&ob.done);
    } else {
        nst_pt_run_push(&a, &nst_pt.alice, &oa);
        nst_pt_run_push(&b, &nst_pt.bob, &ob);
    }
    nst_pt_pb_free(&a);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&oa, 1);
    nst_pt_results_ok(&ob, 1);
    nst_pt_expect(&oa, 0, OUT_APPLIED, 2);
    /* summary merged (a new version), title kept: one conflict. */
    nst_pt_expect(&ob, 0, OUT_CONFLICT, 3);
    assert_int_equal(ob.r[0].nconflicts, 1);
    const char *cid = ob.r[0].conflicts[0];
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "Title by A");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "summary"), "Summary by B");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "version"), "3");
    assert_string_equal(conflict_row(cid),
                        "title \"T0\" \"Title by A\" \"Title by B\" false false -");
    conflict_authors(cid, &nst_pt.alice, &nst_pt.bob);
    assert_string_equal(Q("SELECT tenant_id || ' ' || entity_type || ' ' || mutation_id"
                          " FROM sync_conflicts WHERE record_id = $1",
                          PLAN_1),
                        Q("SELECT $1 || ' plan ' || $2", PLAN_1, MID(3)));
    assert_int_equal(QN0("SELECT count(*) FROM sync_conflicts"), 1);
    assert_string_equal(
        Q("SELECT outcome || ' ' || version || ' ' || (conflict_ids = ARRAY[$2]::uuid[])"
          " FROM sync_mutations WHERE mutation_id = $1",
          MID(3), cid),
        "conflict 3 true");
    assert_string_equal(nst_pt_rev(PLAN_1, "3", "principal_id"), nst_pt.bob.principal_id);
    assert_string_equal(nst_pt_rev(PLAN_1, "3", "after->>'title'"), "Title by A");
    if (one_batch)
        assert_int_equal(QN("SELECT count(DISTINCT xmin::text) FROM sync_revisions"
                            " WHERE record_id = $1 AND version > 1",
                            PLAN_1),
                         1);
    nst_pt_out_free(&oa);
    nst_pt_out_free(&ob);
}

static void test_issue_scenario(void **state)
{
    (void)state;
    scenario(false);
}

static void test_issue_scenario_one_batch(void **state)
{
    (void)state;
    scenario(true);
}

/* A device's edits of a record whose earlier edits it has not seen
 * acknowledged carry the base it last saw; they are not conflicts. */
static void test_own_device_edits(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0,
                  PLAN_F("title=T0", "summary=S0"), OUT_APPLIED, 1);
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=X"));
    nst_pt_pb_add(&b, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=Y"));
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 2);
    nst_pt_expect(&o, 0, OUT_APPLIED, 2);
    nst_pt_expect(&o, 1, OUT_APPLIED, 3);
    nst_pt_out_free(&o);
    /* In a later push, still on base 1. */
    nst_pt_apply1(&nst_pt.alice, MID(4), "plan", PLAN_1, OP_UPDATE, 1, F("title=Z"), OUT_APPLIED,
                  4);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "Z");

    /* Someone else's change breaks the run: the next edit on base 1 is
     * merged against v4, the device's last own version. */
    nst_pt_apply1(&nst_pt.bob, MID(5), "plan", PLAN_1, OP_UPDATE, 4, F("summary=SB"), OUT_APPLIED,
                  5);
    nst_pt_apply1(&nst_pt.alice, MID(6), "plan", PLAN_1, OP_UPDATE, 1, F("title=W"), OUT_MERGED, 6);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "W");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "summary"), "SB");
    assert_int_equal(QN0("SELECT count(*) FROM sync_conflicts"), 0);

    /* Another device's edit on base 1 does conflict; it changes nothing,
     * so its version is the current one. */
    nst_pt_out c;
    nst_pt_push1(&nst_pt.bob, MID(7), "plan", PLAN_1, OP_UPDATE, 1, F("title=B"), &c);
    nst_pt_expect(&c, 0, OUT_CONFLICT, 6);
    assert_string_equal(conflict_row(c.r[0].conflicts[0]),
                        "title \"T0\" \"W\" \"B\" false false -");
    conflict_authors(c.r[0].conflicts[0], &nst_pt.alice, &nst_pt.bob);
    nst_pt_out_free(&c);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_1), 6);
}

static void test_edit_versus_delete(void **state)
{
    (void)state;
    /* Delete first, then an edit on the same base: the edit is a
     * conflict, kept in other_fields; the record stays deleted. */
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0"),
                  OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.alice, MID(2), "plan", PLAN_1, OP_DELETE, 1, NOFIELDS, OUT_APPLIED, 2);
    nst_pt_out o;
    nst_pt_push1(&nst_pt.bob, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=edited"), &o);
    nst_pt_expect(&o, 0, OUT_CONFLICT, 2);
    assert_string_equal(conflict_row(o.r[0].conflicts[0]),
                        "- - - - true false {\"title\": \"edited\"}");
    conflict_authors(o.r[0].conflicts[0], &nst_pt.alice, &nst_pt.bob);
    nst_pt_out_free(&o);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "deleted"), "true");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "T0");

    /* Edit first, then a delete on the same base: the delete is a
     * conflict; the record stays, edited. */
    nst_pt_apply1(&nst_pt.alice, MID(4), "plan", PLAN_2, OP_CREATE, 0, PLAN_F("title=T0"),
                  OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.alice, MID(5), "plan", PLAN_2, OP_UPDATE, 1, F("title=edited"),
                  OUT_APPLIED, 2);
    nst_pt_push1(&nst_pt.bob, MID(6), "plan", PLAN_2, OP_DELETE, 1, NOFIELDS, &o);
    nst_pt_expect(&o, 0, OUT_CONFLICT, 2);
    assert_string_equal(conflict_row(o.r[0].conflicts[0]), "- - - - false true -");
    conflict_authors(o.r[0].conflicts[0], &nst_pt.alice, &nst_pt.bob);
    nst_pt_out_free(&o);
    assert_string_equal(nst_pt_plan_field(PLAN_2, "deleted"), "false");
    assert_string_equal(nst_pt_plan_field(PLAN_2, "title"), "edited");

    /* A stale delete of a record that is back where its base was merges. */
    nst_pt_apply1(&nst_pt.bob, MID(7), "plan", PLAN_2, OP_UPDATE, 2, F("title=T0"), OUT_APPLIED, 3);
    nst_pt_apply1(&nst_pt.bob, MID(8), "plan", PLAN_2, OP_DELETE, 1, NOFIELDS, OUT_MERGED, 4);
    assert_string_equal(nst_pt_plan_field(PLAN_2, "deleted"), "true");
}

/* An approved indicator report is never changed by a stale edit. */
static void test_approved_report(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T"),
                  OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.alice, MID(8), "indicator", IND_1, OP_CREATE, 0,
                  F(NST_PT_INDICATOR(PLAN_1)), OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.alice, MID(2), "indicator_report", REP_1, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "value=10.5", "status=approved", "narrative=n0"),
                  OUT_APPLIED, 1);
    /* An approved value is never overwritten, silently or not: on the
     * current version, on an old one (a device that did not know), by its
     * approver or anyone, as an edit, a reopening or a delete. */
    nst_pt_out o;
    nst_pt_push1(&nst_pt.alice, MID(3), "indicator_report", REP_1, OP_UPDATE, 1, F("evidence=e1"),
                 &o);
    expect_rejected(&o, 0, ERR(PERMISSION_DENIED), "approved: it is final");
    nst_pt_out_free(&o);
    nst_pt_push1(&nst_pt.bob, MID(4), "indicator_report", REP_1, OP_UPDATE, 1,
                 F("status=returned", "return_reason=Check the source"), &o);
    expect_rejected(&o, 0, ERR(PERMISSION_DENIED), "approved: it is final");
    nst_pt_out_free(&o);
    nst_pt_push1(&nst_pt.bob, MID(5), "indicator_report", REP_1, OP_DELETE, 1, NOFIELDS, &o);
    expect_rejected(&o, 0, ERR(PERMISSION_DENIED), "approved: it is final");
    nst_pt_out_free(&o);
    assert_string_equal(Q("SELECT value::text || ' ' || narrative || ' ' || version || ' ' ||"
                          " status FROM indicator_reports WHERE id = $1",
                          REP_1),
                        "10.5 n0 1 approved");
    assert_int_equal(QN0("SELECT count(*) FROM sync_conflicts"), 0);
    /* The way to change it: a correction, approved in its turn. */
    nst_pt_apply1(&nst_pt.bob, MID(6), "indicator_report", nst_pt_uid(0x2c000000u, 9), OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "value=12", "status=submitted", "corrects_id=" REP_1),
                  OUT_APPLIED, 1);
    /* Anything else for that period is refused: it is locked. */
    nst_pt_push1(&nst_pt.bob, MID(7), "indicator_report", nst_pt_uid(0x2c000000u, 10), OP_CREATE, 0,
                 REPORT_F(PLAN_1, IND_1, "value=13"), &o);
    expect_rejected(&o, 0, ERR(INVALID_ARGUMENT), "is locked");
    assert_string_equal(o.r[0].field, "period_start");
    nst_pt_out_free(&o);
}

/* ---- tests: idempotency and group commit
 * ------------------------------------------------------------ */

static void assert_same_results(const nst_pt_out *a, const nst_pt_out *b)
{
    nst_pt_results_ok(a, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const nst_pt_result *x = &a->r[i], *y = &b->r[i];
        assert_string_equal(x->mutation_id, y->mutation_id);
        assert_int_equal(x->outcome, y->outcome);
        assert_true(x->version == y->version);
        assert_int_equal(x->reject_code, y->reject_code);
        assert_string_equal(x->reason, y->reason);
        assert_int_equal(x->nconflicts, y->nconflicts);
        for (size_t k = 0; k < x->nconflicts && k < 4; k++)
            assert_string_equal(x->conflicts[k], y->conflicts[k]);
    }
}

/* Pushes b again as who, as a client does when the answer was lost: it
 * must be answered with first, from what the engine stored. */
static void expect_replay(nst_pt_pbuild *b, const ns_identity_info *who, const nst_pt_out *first)
{
    nst_pt_out again;
    nst_pt_run_push(b, who, &again);
    assert_same_results(&again, first);
    nst_pt_out_free(&again);
}

static void test_idempotent(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0"),
                  OUT_APPLIED, 1);
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=A"));
    nst_pt_pb_add(&b, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=B", "summary=S"));
    nst_pt_pb_add(&b, MID(4), "plan", PLAN_X, OP_UPDATE, 1, F("title=nowhere"));
    nst_pt_pb_add(&b, MID(5), "plan", PLAN_2, OP_CREATE, 0, PLAN_F("title=P2"));
    nst_pt_out first;
    nst_pt_run_push(&b, &nst_pt.bob, &first);
    nst_pt_results_ok(&first, 4);
    nst_pt_expect(&first, 0, OUT_APPLIED, 2);
    nst_pt_expect(&first, 1, OUT_APPLIED, 3); /* bob's own run: not a conflict */
    expect_rejected(&first, 2, ERR(NOT_FOUND), "does not exist");
    nst_pt_expect(&first, 3, OUT_APPLIED, 1);

    /* The answer was lost: the same push again. */
    expect_replay(&b, &nst_pt.bob, &first);
    /* And again from another device: the mutation ids decide. */
    expect_replay(&b, &nst_pt.alice, &first);
    nst_pt_out_free(&first);
    nst_pt_pb_free(&b);
    assert_int_equal(QN0("SELECT count(*) FROM sync_revisions"), 4);
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 5);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "B");

    /* A conflict's answer, conflict id included, is stored too. */
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(6), "plan", PLAN_1, OP_UPDATE, 1, F("title=C"));
    nst_pt_run_push(&b, &nst_pt.alice, &first);
    nst_pt_results_ok(&first, 1);
    nst_pt_expect(&first, 0, OUT_CONFLICT, 3);
    expect_replay(&b, &nst_pt.alice, &first);
    nst_pt_out_free(&first);
    nst_pt_pb_free(&b);
    assert_int_equal(QN0("SELECT count(*) FROM sync_conflicts"), 1);
}

/* Two pushes by alice of the same one-mutation update or create, the
 * second submitted in the same turn of the loop as the first (one batch),
 * or, staggered, once the first's batch has started: both get the first's
 * answer, outcome APPLIED at version. */
static void push_twice(const char *mid, const char *rid, int op, uint64_t base, const char *spec,
                       bool staggered, uint64_t version)
{
    nst_pt_pbuild x, y;
    nst_pt_pb_init(&x);
    nst_pt_pb_init(&y);
    const char *const *specs = op == OP_CREATE ? PLAN_F(spec) : F(spec);
    nst_pt_pb_add(&x, mid, "plan", rid, op, base, specs);
    nst_pt_pb_add(&y, mid, "plan", rid, op, base, specs);
    nst_pt_out ox, oy;
    nst_pt_submit(nst_pt.sync, &x, &nst_pt.alice, &ox);
    if (staggered)
        uv_run(&nst_pt.loop, UV_RUN_NOWAIT); /* the first batch starts */
    nst_pt_submit(nst_pt.sync, &y, &nst_pt.alice, &oy);
    nst_pt_run_until(&ox.done);
    nst_pt_run_until(&oy.done);
    nst_pt_results_ok(&ox, 1);
    nst_pt_expect(&ox, 0, OUT_APPLIED, version);
    assert_same_results(&oy, &ox);
    nst_pt_out_free(&ox);
    nst_pt_out_free(&oy);
    nst_pt_pb_free(&x);
    nst_pt_pb_free(&y);
}

/* A mutation id repeated within a push, within a batch, and while its
 * first occurrence is still running. */
static void test_repeats(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0"));
    nst_pt_pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0"));
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=T1"));
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 3);
    nst_pt_expect(&o, 0, OUT_APPLIED, 1);
    nst_pt_expect(&o, 1, OUT_APPLIED, 1);
    nst_pt_expect(&o, 2, OUT_APPLIED, 2);
    nst_pt_out_free(&o);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_1), 2);

    /* Two pushes in one turn of the loop (one batch). */
    push_twice(MID(3), PLAN_2, OP_CREATE, 0, "title=P2", false, 1);
    /* The second arrives while the first's batch runs: it waits for it,
     * then is answered from what the first stored. */
    push_twice(MID(4), PLAN_2, OP_UPDATE, 1, "summary=S", true, 2);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_2), 2);
}

#define SESSIONS 8

/* Pushes that arrive together share a transaction: the feed rows of N
 * sessions' changes carry fewer than N transaction ids. */
static void test_group_commit(void **state)
{
    (void)state;
    nst_pt_pbuild b[SESSIONS + 2];
    nst_pt_out o[SESSIONS + 2];
    for (unsigned i = 0; i < SESSIONS; i++) {
        nst_pt_pb_init(&b[i]);
        nst_pt_pb_add(&b[i], MID(i + 1), "plan", nst_pt_uid(0x0b000000u, i + 1), OP_CREATE, 0,
                      PLAN_F("title=T"));
        nst_pt_submit(nst_pt.sync, &b[i], i % 2 ? &nst_pt.alice : &nst_pt.bob, &o[i]);
    }
    for (unsigned i = 0; i < SESSIONS; i++) {
        nst_pt_run_until(&o[i].done);
        nst_pt_results_ok(&o[i], 1);
        nst_pt_expect(&o[i], 0, OUT_APPLIED, 1);
        nst_pt_out_free(&o[i]);
        nst_pt_pb_free(&b[i]);
    }
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), SESSIONS);
    assert_int_equal(QN0("SELECT count(DISTINCT xmin::text) FROM sync_feed"), 1);

    /* Under load: two batches run, and what arrives meanwhile waits and
     * goes in the next one, however many sessions sent it. */
    nst_pt_exec_ok("TRUNCATE plans, sync_revisions, sync_feed, sync_mutations;"
                   " UPDATE sync_feed_head SET seq = 0");
    for (unsigned i = 0; i < SESSIONS + 2; i++) {
        nst_pt_pb_init(&b[i]);
        nst_pt_pb_add(&b[i], MID(100 + i), "plan", nst_pt_uid(0x0c000000u, i + 1), OP_CREATE, 0,
                      PLAN_F("title=T"));
        nst_pt_submit(nst_pt.sync, &b[i], &nst_pt.alice, &o[i]);
        if (i < 2)
            uv_run(&nst_pt.loop, UV_RUN_NOWAIT); /* a batch starts with this push alone */
    }
    for (unsigned i = 0; i < SESSIONS + 2; i++) {
        nst_pt_run_until(&o[i].done);
        nst_pt_results_ok(&o[i], 1);
        nst_pt_expect(&o[i], 0, OUT_APPLIED, 1);
        nst_pt_out_free(&o[i]);
        nst_pt_pb_free(&b[i]);
    }
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), SESSIONS + 2);
    assert_int_equal(QN0("SELECT count(DISTINCT xmin::text) FROM sync_feed"), 3);
}

/* ---- tests: rejections
 * ------------------------------------------------------------------------------ */

/* Rejections that depend only on the request: answered, nothing stored. */
static void test_rejected_by_validation(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.alice, MID(90), "plan", PLAN_2, OP_CREATE, 0, PLAN_F("title=P2"),
                  OUT_APPLIED, 1);
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(1), "expense_claim", PLAN_1, OP_CREATE, 0, F("title=T"));
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_1, OP_CREATE, 0, F("title=T", "colour=red"));
    nst_pt_pb_add(&b, MID(3), "plan", PLAN_1, OP_CREATE, 0, F("version:int=3"));
    nst_pt_pb_add(&b, MID(4), "plan", PLAN_1, OP_CREATE, 0, F("title:int=5"));
    nst_pt_pb_add(&b, MID(5), "plan", PLAN_1, OP_CREATE, 0, F("period_start=2024-01-01"));
    /* Only the wire can carry this date. */
    b.h[4]->fpb.fields[0]->value->date_value = (char *)"2023-02-29";
    nst_pt_pb_add(&b, "not-a-uuid", "plan", PLAN_1, OP_CREATE, 0, F("title=T"));
    nst_pt_pb_add(&b, MID(7), "plan", "0A000000-nope", OP_CREATE, 0, F("title=T"));
    nst_pt_pb_add(&b, MID(8), "plan", PLAN_1, OP_CREATE, 1, F("title=T"));
    nst_pt_pb_add(&b, MID(9), "plan", PLAN_2, OP_UPDATE, 1, NOFIELDS);
    nst_pt_pb_add(&b, MID(10), "plan", PLAN_2, OP_DELETE, 1, F("title=T"));
    nst_pt_pb_add(&b, MID(11), "plan", PLAN_1, 0, 0, F("title=T"));
    nst_pt_pb_add(&b, MID(12), "indicator", IND_1, OP_CREATE, 0, F("code=1.1"));
    nst_pt_pb_add(&b, MID(13), "indicator", IND_1, OP_CREATE, 0, F("code=1.1", "plan_id"));
    nst_pt_pb_add(&b, MID(14), "plan", PLAN_1, OP_CREATE, 0,
                  F("title=T", "owner_id=00000000-0000-4000-8000-000000000000"));
    nst_pt_pb_add(&b, MID(15), "plan", PLAN_2, OP_UPDATE, 1, F("owner_id"));
    nst_pt_pb_add(&b, MID(16), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=the good one"));
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 16);
    expect_rejected(&o, 0, ERR(UNKNOWN_ENTITY), "unknown entity type \"expense_claim\"");
    expect_rejected(&o, 1, ERR(UNKNOWN_ENTITY), "unknown field \"colour\" of entity type plan");
    expect_rejected(&o, 2, ERR(UNKNOWN_ENTITY), "unknown field \"version\"");
    expect_rejected(&o, 3, ERR(INVALID_ARGUMENT), "field title: int_value where text_value");
    expect_rejected(&o, 4, ERR(INVALID_ARGUMENT), "field period_start: ");
    expect_rejected(&o, 5, ERR(INVALID_ARGUMENT), "mutation_id is not a UUID");
    assert_string_equal(o.r[5].mutation_id, "not-a-uuid"); /* echoed */
    expect_rejected(&o, 6, ERR(INVALID_ARGUMENT), "record_id is not a UUID");
    expect_rejected(&o, 7, ERR(INVALID_ARGUMENT), "base_version must be 0");
    expect_rejected(&o, 8, ERR(INVALID_ARGUMENT), "at least one field");
    expect_rejected(&o, 9, ERR(INVALID_ARGUMENT), "a delete carries no fields");
    expect_rejected(&o, 10, ERR(INVALID_ARGUMENT), "op must be");
    expect_rejected(&o, 11, ERR(INVALID_ARGUMENT), "field plan_id (the record's plan) is required");
    expect_rejected(&o, 12, ERR(INVALID_ARGUMENT), "field plan_id (the record's plan) is required");
    expect_rejected(&o, 13, ERR(PERMISSION_DENIED), "owner_id");
    expect_rejected(&o, 14, ERR(INVALID_ARGUMENT), "owner_id may not be null");
    nst_pt_expect(&o, 15, OUT_APPLIED, 1);
    nst_pt_out_free(&o);
    /* Nothing of the rejected is stored, so a corrected re-send can apply. */
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 2);
    assert_int_equal(QN0("SELECT count(*) FROM plans"), 2);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "the good one");

    /* An observer may not write at all. */
    nst_pt_out r;
    nst_pt_push1(&nst_pt.olga, MID(20), "plan", nst_pt_uid(0x0d000000u, 1), OP_CREATE, 0,
                 PLAN_F("title=T"), &r);
    expect_rejected(&r, 0, ERR(PERMISSION_DENIED), "observers");
    nst_pt_out_free(&r);
    nst_pt_push1(&nst_pt.olga, MID(21), "plan", PLAN_1, OP_UPDATE, 1, F("title=T"), &r);
    expect_rejected(&r, 0, ERR(PERMISSION_DENIED), "observers");
    nst_pt_out_free(&r);
    assert_int_equal(nst_pt_stored_count(MID(20)) + nst_pt_stored_count(MID(21)), 0);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "the good one");
}

static void expect_stored_rejection(const char *mid, int code)
{
    char want[32];
    snprintf(want, sizeof(want), "rejected 0 %d", code);
    assert_string_equal(Q("SELECT outcome || ' ' || version || ' ' || reject_code"
                          " FROM sync_mutations WHERE mutation_id = $1",
                          mid),
                        want);
}

/* Rejections that depend on the database: stored like any answer. */
static void test_rejected_by_state(void **state)
{
    (void)state;
    nst_pt_out o;
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0"),
                  OUT_APPLIED, 1);

    nst_pt_push1(&nst_pt.alice, MID(2), "plan", PLAN_X, OP_UPDATE, 1, F("title=T"), &o);
    expect_rejected(&o, 0, ERR(NOT_FOUND), "plan " PLAN_X " does not exist");
    nst_pt_out_free(&o);
    expect_stored_rejection(MID(2), ERR(NOT_FOUND));

    nst_pt_push1(&nst_pt.alice, MID(3), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=again"), &o);
    expect_rejected(&o, 0, ERR(ALREADY_EXISTS), "already exists");
    nst_pt_out_free(&o);
    expect_stored_rejection(MID(3), ERR(ALREADY_EXISTS));

    /* Another organisation's draft does not exist for xavier... */
    nst_pt_push1(&nst_pt.xavier, MID(4), "plan", PLAN_1, OP_UPDATE, 1, F("title=mine now"), &o);
    expect_rejected(&o, 0, ERR(NOT_FOUND), "plan " PLAN_1 " does not exist");
    nst_pt_out_free(&o);
    expect_stored_rejection(MID(4), ERR(NOT_FOUND));
    nst_pt_push1(&nst_pt.xavier, MID(5), "indicator", IND_1, OP_CREATE, 0,
                 F(NST_PT_INDICATOR(PLAN_1)), &o);
    expect_rejected(&o, 0, ERR(NOT_FOUND), "plan " PLAN_1 " does not exist");
    nst_pt_out_free(&o);
    /* ...and an adopted one is not his to change. */
    nst_pt_apply1(&nst_pt.alice, MID(14), "plan", PLAN_2, OP_CREATE, 0,
                  PLAN_F("title=Adopted", "status=adopted"), OUT_APPLIED, 1);
    nst_pt_push1(&nst_pt.xavier, MID(15), "plan", PLAN_2, OP_UPDATE, 1, F("title=mine now"), &o);
    expect_rejected(&o, 0, ERR(PERMISSION_DENIED), "belongs to another organisation");
    nst_pt_out_free(&o);
    expect_stored_rejection(MID(15), ERR(PERMISSION_DENIED));
    nst_pt_push1(&nst_pt.xavier, MID(16), "indicator", nst_pt_uid(0x1b000000u, 7), OP_CREATE, 0,
                 F(NST_PT_INDICATOR(PLAN_2)), &o);
    expect_rejected(&o, 0, ERR(PERMISSION_DENIED), "belongs to another organisation");
    nst_pt_out_free(&o);
    nst_pt_push1(&nst_pt.alice, MID(6), "indicator", IND_1, OP_CREATE, 0,
                 F(NST_PT_INDICATOR(PLAN_X)), &o);
    expect_rejected(&o, 0, ERR(NOT_FOUND), "plan " PLAN_X " does not exist");
    nst_pt_out_free(&o);

    /* A record of a plan: its tenant is the plan, and never changes. */
    nst_pt_apply1(&nst_pt.bob, MID(7), "indicator", IND_1, OP_CREATE, 0,
                  IND_F(PLAN_1, "code=1.1", "baseline=0.25", "baseline_date=2024-01-31"),
                  OUT_APPLIED, 1);
    assert_string_equal(Q("SELECT tenant_id FROM indicators WHERE id = $1", IND_1), PLAN_1);
    assert_string_equal(Q("SELECT tenant_id FROM sync_feed WHERE record_id = $1", IND_1), PLAN_1);
    nst_pt_push1(&nst_pt.bob, MID(8), "indicator", IND_1, OP_UPDATE, 1, F("plan_id=" PLAN_2), &o);
    expect_rejected(&o, 0, ERR(INVALID_ARGUMENT),
                    "field plan_id (the record's plan) cannot change");
    nst_pt_out_free(&o);
    expect_stored_rejection(MID(8), ERR(INVALID_ARGUMENT));
    nst_pt_apply1(&nst_pt.bob, MID(9), "indicator", IND_1, OP_UPDATE, 1,
                  F("plan_id=" PLAN_1, "code=1.2"), OUT_APPLIED, 2);
    nst_pt_push1(&nst_pt.xavier, MID(10), "indicator", IND_1, OP_UPDATE, 2, F("code=x"), &o);
    expect_rejected(&o, 0, ERR(NOT_FOUND), "does not exist");
    nst_pt_out_free(&o);

    nst_pt_push1(&nst_pt.bob, MID(11), "indicator", IND_1, OP_UPDATE, 9, F("code=1.3"), &o);
    expect_rejected(&o, 0, ERR(INVALID_ARGUMENT),
                    "base_version 9 is newer than the record's version 2");
    nst_pt_out_free(&o);

    /* A deleted record still exists: no create over it. */
    nst_pt_apply1(&nst_pt.alice, MID(12), "plan", PLAN_1, OP_DELETE, 1, NOFIELDS, OUT_APPLIED, 2);
    nst_pt_push1(&nst_pt.alice, MID(13), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=reborn"), &o);
    expect_rejected(&o, 0, ERR(ALREADY_EXISTS), "already exists");
    nst_pt_out_free(&o);
    assert_string_equal(Q("SELECT code FROM indicators WHERE id = $1", IND_1), "1.2");
}

/* One bad mutation among good ones: only it is rejected, and nothing of
 * it is applied. */
static void test_mixed_push(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0"),
                  OUT_APPLIED, 1);
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("summary=S1"));
    nst_pt_pb_add(&b, MID(3), "plan", PLAN_1, OP_UPDATE, 1,
                  F("title=half", "period_end=2024-01-01"));
    b.h[1]->fpb.fields[0]->value->date_value = (char *)"2024-13-01";
    nst_pt_pb_add(&b, MID(4), "plan", PLAN_X, OP_UPDATE, 1, F("title=T"));
    nst_pt_pb_add(&b, MID(5), "plan", PLAN_1, OP_UPDATE, 1, F("kind=local"));
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 4);
    nst_pt_expect(&o, 0, OUT_APPLIED, 2);
    expect_rejected(&o, 1, ERR(INVALID_ARGUMENT), "field period_end");
    expect_rejected(&o, 2, ERR(NOT_FOUND), "does not exist");
    nst_pt_expect(&o, 3, OUT_APPLIED, 3);
    nst_pt_out_free(&o);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "T0");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "period_end"), NST_PLAN_END);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "summary"), "S1");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "kind"), "local");
}

/* A plan created earlier in the same batch is the owner of records that
 * follow it there. */
static void test_plan_in_same_batch(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    /* Adopted, so that another organisation sees it and is refused for
     * want of rights (a draft would not exist for it). */
    nst_pt_pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0", "status=adopted"));
    nst_pt_pb_add(&b, MID(2), "indicator", IND_1, OP_CREATE, 0, IND_F(PLAN_1, "code=1"));
    nst_pt_pb_add(&b, MID(3), "indicator", IND_1, OP_UPDATE, 1, F("code=2"));
    nst_pt_out o, x;
    nst_pt_submit(nst_pt.sync, &b, &nst_pt.bob, &o);
    /* In the same batch, from another organisation: refused. */
    nst_pt_pbuild c;
    nst_pt_pb_init(&c);
    nst_pt_pb_add(&c, MID(4), "plan", PLAN_2, OP_CREATE, 0, PLAN_F("title=theirs"));
    nst_pt_pb_add(&c, MID(5), "indicator", nst_pt_uid(0x1b000000u, 2), OP_CREATE, 0,
                  F(NST_PT_INDICATOR(PLAN_1)));
    nst_pt_pb_add(&c, MID(6), "indicator", nst_pt_uid(0x1b000000u, 3), OP_CREATE, 0,
                  F(NST_PT_INDICATOR(PLAN_2)));
    nst_pt_submit(nst_pt.sync, &c, &nst_pt.xavier, &x);
    nst_pt_run_until(&o.done);
    nst_pt_run_until(&x.done);
    nst_pt_results_ok(&o, 3);
    nst_pt_expect(&o, 0, OUT_APPLIED, 1);
    nst_pt_expect(&o, 1, OUT_APPLIED, 1);
    nst_pt_expect(&o, 2, OUT_APPLIED, 2);
    nst_pt_results_ok(&x, 3);
    nst_pt_expect(&x, 0, OUT_APPLIED, 1);
    expect_rejected(&x, 1, ERR(PERMISSION_DENIED), "belongs to another organisation");
    nst_pt_expect(&x, 2, OUT_APPLIED, 1);
    nst_pt_out_free(&o);
    nst_pt_out_free(&x);
    nst_pt_pb_free(&b);
    nst_pt_pb_free(&c);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "owner_id"), nst_pt.org_a);
    assert_string_equal(nst_pt_plan_field(PLAN_2, "owner_id"), nst_pt.org_b);
    assert_int_equal(QN0("SELECT count(DISTINCT xmin::text) FROM sync_feed"), 1);
}

/* More than a batch in one push: refused as a whole, nothing applied. */
static void test_oversized_push(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    for (unsigned i = 0; i < NS_SYNC_MAX_BATCH + 1; i++)
        nst_pt_pb_add(&b, MID(i + 1), "plan", nst_pt_uid(0x0e000000u, i + 1), OP_CREATE, 0,
                      PLAN_F("title=T"));
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    assert_false(o.has_result);
    assert_int_equal(o.code, ERR(INVALID_ARGUMENT));
    assert_non_null(strstr(o.msg, "at most 1000 mutations"));
    nst_pt_out_free(&o);
    assert_int_equal(QN0("SELECT count(*) FROM plans"), 0);
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 0);

    /* A full batch goes through, in one transaction. */
    b.n = b.push.n_mutations = NS_SYNC_MAX_BATCH;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_results_ok(&o, NS_SYNC_MAX_BATCH);
    for (size_t i = 0; i < NS_SYNC_MAX_BATCH; i++)
        nst_pt_expect(&o, i, OUT_APPLIED, 1);
    nst_pt_out_free(&o);
    b.n = NS_SYNC_MAX_BATCH + 1;
    nst_pt_pb_free(&b);
    assert_int_equal(QN0("SELECT count(*) FROM sync_feed"), NS_SYNC_MAX_BATCH);
    assert_int_equal(QN0("SELECT count(DISTINCT xmin::text) FROM sync_feed"), 1);
}

/* The database refuses one mutation (a CHECK the engine cannot know, or
 * a rule of the domain model): the batch is split until that mutation is
 * alone; it is rejected with the database's reason, stored, and every
 * other mutation applies. */
static void test_bisect(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0"));
    for (unsigned i = 1; i <= 6; i++)
        nst_pt_pb_add(&b, MID(1 + i), "test_note", nst_pt_uid(0x3e000000u, i), OP_CREATE, 0,
                      i == 4 ? F("plan_id=" PLAN_1, "body=forbidden")
                             : F("plan_id=" PLAN_1, "body=ok"));
    nst_pt_pb_add(&b, MID(8), "test_note", nst_pt_uid(0x3e000000u, 1), OP_UPDATE, 1,
                  F("body=fine"));
    nst_pt_out o;
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_results_ok(&o, 8);
    nst_pt_expect(&o, 0, OUT_APPLIED, 1);
    for (size_t i = 1; i <= 6; i++) {
        if (i == 4)
            expect_rejected(&o, i, ERR(INVALID_ARGUMENT), "check constraint");
        else
            nst_pt_expect(&o, i, OUT_APPLIED, 1);
    }
    nst_pt_expect(&o, 7, OUT_APPLIED, 2);
    assert_non_null(strstr(o.r[4].reason, "refused by the database"));
    expect_stored_rejection(MID(5), ERR(INVALID_ARGUMENT));
    assert_int_equal(QN0("SELECT count(*) FROM test_notes"), 5);
    assert_null(Q("SELECT id FROM test_notes WHERE body = 'forbidden'"));

    /* The same push again: the same answers, nothing applied twice. */
    nst_pt_out again;
    nst_pt_run_push(&b, &nst_pt.alice, &again);
    assert_same_results(&again, &o);
    nst_pt_out_free(&again);
    nst_pt_out_free(&o);
    nst_pt_pb_free(&b);

    /* An update the database refuses, after another of the same record.
     * (Constraints see the records as the batch leaves them: a state a
     * later mutation of the batch replaces is never checked by them.) */
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(20), "test_note", nst_pt_uid(0x3e000000u, 1), OP_UPDATE, 2,
                  F("body=one"));
    nst_pt_pb_add(&b, MID(21), "test_note", nst_pt_uid(0x3e000000u, 1), OP_UPDATE, 3,
                  F("body=forbidden"));
    nst_pt_pb_add(&b, MID(22), "test_note", nst_pt_uid(0x3e000000u, 2), OP_UPDATE, 1,
                  F("body=two"));
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 3);
    nst_pt_expect(&o, 0, OUT_APPLIED, 3);
    expect_rejected(&o, 1, ERR(INVALID_ARGUMENT), "check constraint");
    nst_pt_expect(&o, 2, OUT_APPLIED, 2);
    nst_pt_out_free(&o);
    assert_string_equal(Q("SELECT body || ' ' || version FROM test_notes WHERE id = $1",
                          nst_pt_uid(0x3e000000u, 1)),
                        "one 3");
    assert_string_equal(Q("SELECT body || ' ' || version FROM test_notes WHERE id = $1",
                          nst_pt_uid(0x3e000000u, 2)),
                        "two 2");

    /* The domain model (sql/003) refuses data the same way: a field of the
     * row itself at once (a BEFORE trigger), a rule across records only at
     * COMMIT (a deferred trigger: a report's period inside its plan's).
     * Each is split down to its mutation and rejected naming the field. */
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(30), "indicator", IND_1, OP_CREATE, 0, F(NST_PT_INDICATOR(PLAN_1)));
    nst_pt_pb_add(&b, MID(31), "plan", PLAN_2, OP_CREATE, 0,
                  PLAN_F("title=P2", "status=published"));
    nst_pt_pb_add(&b, MID(32), "indicator_report", REP_1, OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "period_end=2030-12-31"));
    nst_pt_pb_add(&b, MID(33), "indicator_report", nst_pt_uid(0x2c000000u, 2), OP_CREATE, 0,
                  REPORT_F(PLAN_1, IND_1, "period_start=2026-01-01", "period_end=2026-12-31"));
    nst_pt_pb_add(&b, MID(34), "test_note", nst_pt_uid(0x3e000000u, 3), OP_UPDATE, 1,
                  F("body=three"));
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_pb_free(&b);
    nst_pt_results_ok(&o, 5);
    nst_pt_expect(&o, 0, OUT_APPLIED, 1);
    /* The model's own messages, as they are, with the field. */
    expect_rejected(&o, 1, ERR(INVALID_ARGUMENT), "plan.status: \"published\" is not one of");
    assert_string_equal(o.r[1].field, "status");
    expect_rejected(&o, 2, ERR(INVALID_ARGUMENT), "indicator_report.period_start: ");
    assert_non_null(strstr(o.r[2].reason, "not inside the plan's period"));
    assert_string_equal(o.r[2].field, "period_start");
    nst_pt_expect(&o, 3, OUT_APPLIED, 1);
    nst_pt_expect(&o, 4, OUT_APPLIED, 2);
    nst_pt_out_free(&o);
    expect_stored_rejection(MID(31), ERR(INVALID_ARGUMENT));
    expect_stored_rejection(MID(32), ERR(INVALID_ARGUMENT));
    assert_null(nst_pt_plan_field(PLAN_2, "id"));
    assert_int_equal(QN("SELECT count(*) FROM indicator_reports WHERE id = $1", REP_1), 0);
    assert_int_equal(QN0("SELECT count(*) FROM indicator_reports"), 1);
}

/* ---- tests: failures and shutdown
 * ---------------------------------------------------------------- */

/* No database: the push fails as a whole with UNAVAILABLE (retry). */
static void test_database_unavailable(void **state)
{
    (void)state;
    ns_db_options opt = {
        .conninfo = "host=/nonexistent/napsync port=1 user=nobody dbname=nothing",
        .pool_size = 1,
        .queue_limit = 10,
        .queue_timeout_ms = 300,
        .reconnect_max_ms = 200,
    };
    ns_db *db;
    assert_int_equal(ns_db_open(&nst_pt.loop, &opt, &db), NS_DB_OK);
    ns_sync *s;
    char err[256];
    assert_int_equal(ns_sync_new(&nst_pt.loop, db, &nst_pt.reg, &s, err, sizeof(err)), NS_SYNC_OK);
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(1), "plan", PLAN_1, OP_CREATE, 0, F("title=T"));
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_1, OP_CREATE, 0, F("nope=1"));
    nst_pt_out o;
    nst_pt_submit(s, &b, &nst_pt.alice, &o);
    nst_pt_run_until(&o.done);
    assert_false(o.has_result);
    assert_int_equal(o.code, ERR(UNAVAILABLE));
    assert_non_null(strstr(o.msg, "send the push again"));
    nst_pt_out_free(&o);
    nst_pt_pb_free(&b);
    bool done = false;
    ns_sync_close(s, nst_pt_on_flag, &done);
    nst_pt_run_until(&done);
    done = false;
    ns_db_close(db, nst_pt_on_flag, &done);
    nst_pt_run_until(&done);
}

/* The connection breaks while a batch's transaction is open: the push
 * fails as a whole with UNAVAILABLE, nothing of it is applied, and sending
 * it again applies it. */
static void test_connection_lost(void **state)
{
    (void)state;
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T0"),
                  OUT_APPLIED, 1);
    /* Hold the record's lock, so that the batch waits inside its
     * transaction. */
    PGconn *locker = PQconnectdb(nst_pt.pgdb.conninfo);
    assert_int_equal(PQstatus(locker), CONNECTION_OK);
    const char *id[1] = {PLAN_1};
    PGresult *res = PQexec(locker, "BEGIN");
    PQclear(res);
    res = PQexecParams(locker, "SELECT 1 FROM plans WHERE id = $1 FOR UPDATE", 1, NULL, id, NULL,
                       NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);

    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=T1"));
    nst_pt_pb_add(&b, MID(3), "plan", PLAN_2, OP_CREATE, 0, PLAN_F("title=P2"));
    nst_pt_out o;
    nst_pt_submit(nst_pt.sync, &b, &nst_pt.alice, &o);
    static const char waiting[] =
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'";
    long long n = 0;
    for (int i = 0; i < 400 && n == 0; i++) {
        uv_run(&nst_pt.loop, UV_RUN_NOWAIT);
        usleep(10000);
        n = QN0(waiting);
    }
    assert_int_equal(n, 1);
    assert_int_equal(QN0("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND wait_event_type = 'Lock'"),
                     1);
    nst_pt_run_until(&o.done);
    assert_false(o.has_result);
    assert_int_equal(o.code, ERR(UNAVAILABLE));
    nst_pt_out_free(&o);
    res = PQexec(locker, "ROLLBACK");
    PQclear(res);
    PQfinish(locker);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "T0");
    assert_int_equal(QN0("SELECT count(*) FROM sync_mutations"), 1);

    /* Sent again (the pool has reconnected meanwhile, or does now). */
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_results_ok(&o, 2);
    nst_pt_expect(&o, 0, OUT_APPLIED, 2);
    nst_pt_expect(&o, 1, OUT_APPLIED, 1);
    nst_pt_out_free(&o);
    nst_pt_pb_free(&b);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "T1");
}

static void test_close(void **state)
{
    (void)state;
    ns_sync *s;
    char err[256];
    assert_int_equal(ns_sync_new(&nst_pt.loop, nst_pt.db, &nst_pt.reg, &s, err, sizeof(err)),
                     NS_SYNC_OK);
    nst_pt_pbuild a, b;
    nst_pt_pb_init(&a);
    nst_pt_pb_init(&b);
    nst_pt_pb_add(&a, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=T"));
    nst_pt_pb_add(&b, MID(2), "plan", PLAN_2, OP_CREATE, 0, PLAN_F("title=T"));
    nst_pt_out oa, ob;
    /* a's batch is running when the engine closes; b is still queued. */
    nst_pt_submit(s, &a, &nst_pt.alice, &oa);
    uv_run(&nst_pt.loop, UV_RUN_NOWAIT);
    nst_pt_submit(s, &b, &nst_pt.alice, &ob);
    bool done = false;
    ns_sync_close(s, nst_pt_on_flag, &done);
    assert_true(ob.done); /* answered during the close */
    assert_false(ob.has_result);
    assert_int_equal(ob.code, ERR(SHUTTING_DOWN));
    assert_false(oa.done);
    nst_pt_out oc;
    memset(&oc, 0, sizeof(oc));
    assert_int_equal(ns_sync_push(s, &nst_pt.alice, &b.push, nst_pt_on_push, &oc),
                     NS_SYNC_SHUTDOWN);
    nst_pt_run_until(&done);
    /* The running batch finished first, and was answered. */
    assert_true(oa.done);
    nst_pt_results_ok(&oa, 1);
    nst_pt_expect(&oa, 0, OUT_APPLIED, 1);
    assert_false(oc.done);
    nst_pt_out_free(&oa);
    nst_pt_out_free(&ob);
    nst_pt_pb_free(&a);
    nst_pt_pb_free(&b);
    assert_int_equal(QN0("SELECT count(*) FROM plans"), 1);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    nst_pt_pbuild b;
    nst_pt_pb_init(&b);
    nst_pt_out o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(ns_sync_push(nst_pt.sync, NULL, &b.push, nst_pt_on_push, &o), NS_SYNC_INVALID);
    assert_int_equal(ns_sync_push(nst_pt.sync, &nst_pt.alice, NULL, nst_pt_on_push, &o),
                     NS_SYNC_INVALID);
    assert_int_equal(ns_sync_push(nst_pt.sync, &nst_pt.alice, &b.push, NULL, &o), NS_SYNC_INVALID);
    ns_identity_info nobody = nst_pt.alice;
    snprintf(nobody.principal_id, sizeof(nobody.principal_id), "x");
    assert_int_equal(ns_sync_push(nst_pt.sync, &nobody, &b.push, nst_pt_on_push, &o),
                     NS_SYNC_INVALID);
    assert_false(o.done);
    /* An empty push has an empty answer. */
    nst_pt_run_push(&b, &nst_pt.alice, &o);
    nst_pt_results_ok(&o, 0);
    nst_pt_out_free(&o);

    /* A registry without a plan type cannot be served. */
    ns_registry none = {0};
    ns_sync *s = NULL;
    char err[256] = "";
    ns_registry reg = nst_pt.reg;
    ns_entity_type *types = calloc(reg.ntypes, sizeof(*types));
    assert_non_null(types);
    size_t n = 0;
    for (size_t i = 0; i < reg.ntypes; i++) {
        if (reg.types[i].tenant_field != NULL)
            types[n++] = reg.types[i];
    }
    none.types = types;
    none.ntypes = n;
    assert_int_equal(ns_sync_new(&nst_pt.loop, nst_pt.db, &none, &s, err, sizeof(err)),
                     NS_SYNC_INVALID);
    assert_null(s);
    assert_non_null(strstr(err, "no entity type is its own tenant"));
    free(types);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, nst_pt_test_setup, nst_pt_test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_create_update_delete),
        T(test_issue_scenario),
        T(test_issue_scenario_one_batch),
        T(test_own_device_edits),
        T(test_edit_versus_delete),
        T(test_approved_report),
        T(test_idempotent),
        T(test_repeats),
        T(test_group_commit),
        T(test_rejected_by_validation),
        T(test_rejected_by_state),
        T(test_mixed_push),
        T(test_plan_in_same_batch),
        T(test_oversized_push),
        T(test_bisect),
        T(test_database_unavailable),
        T(test_connection_lost),
        T(test_close),
        T(test_bad_arguments),
    };
#undef T
    return cmocka_run_group_tests_name("push", tests, group_setup, group_teardown);
}
