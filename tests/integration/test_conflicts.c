/* Conflicts (daemon/conflicts.h, and ns_sync_resolve in sync.h) in process
 * against a real PostgreSQL, on test_push's fixture (pushtest.h: a fresh
 * migrated database, the registry, a loop, a pool, the push engine) and
 * the conflicts module; conflicts are made with pushes, listed and resolved
 * through the module's calls with protobuf requests, and the database read
 * back with plain libpq. Every test ends with the feed invariants of
 * test_push (contiguous, one row per revision, records at their last
 * revision). */
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

#include "conflicts.h"
#include "pushtest.h"

static ns_conflicts *conflicts; /* on nst_pt's pool, registry and engine */

/* ---- fixture -------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (nst_pt_setup("conf") != 0)
        return -1;
    return ns_conflicts_open(nst_pt.db, &nst_pt.reg, nst_pt.sync, &conflicts);
}

static int group_teardown(void **state)
{
    (void)state;
    ns_conflicts_close(conflicts);
    return nst_pt_teardown();
}

/* ---- listing and resolving ------------------------------------------------------------ */

#define KEEP  NAPSYNC__V1__RESOLUTION__RESOLUTION_KEEP
#define OTHER NAPSYNC__V1__RESOLUTION__RESOLUTION_OTHER
#define VALUE NAPSYNC__V1__RESOLUTION__RESOLUTION_VALUE

/* A wire value as short text: "null", a quoted text, or the value. */
static void value_text(const Napsync__V1__Value *v, char *out, size_t outlen)
{
    if (v == NULL) {
        snprintf(out, outlen, "-");
        return;
    }
    switch (v->kind_case) {
    case NAPSYNC__V1__VALUE__KIND_NULL_VALUE:
        snprintf(out, outlen, "null");
        break;
    case NAPSYNC__V1__VALUE__KIND_TEXT_VALUE:
        snprintf(out, outlen, "\"%s\"", v->text_value);
        break;
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        snprintf(out, outlen, "%s", v->decimal_value);
        break;
    case NAPSYNC__V1__VALUE__KIND_INT_VALUE:
        snprintf(out, outlen, "%lld", (long long)v->int_value);
        break;
    default:
        snprintf(out, outlen, "kind%d", (int)v->kind_case);
        break;
    }
}

typedef struct {
    bool done;
    int calls;
    int code;
    char msg[300];
    size_t n;
    char ids[16][40];
    char lines[16][700];
} list_out;

static void on_list(int code, const char *message, const Napsync__V1__ConflictList *list, void *ud)
{
    list_out *o = ud;
    o->calls++;
    o->done = true;
    o->code = code;
    snprintf(o->msg, sizeof(o->msg), "%s", message ? message : "");
    if (list == NULL)
        return;
    o->n = list->n_conflicts;
    for (size_t i = 0; i < list->n_conflicts && i < 16; i++) {
        const Napsync__V1__Conflict *c = list->conflicts[i];
        char base[100], kept[100], other[100], fields[200] = "-";
        value_text(c->base_value, base, sizeof(base));
        value_text(c->kept_value, kept, sizeof(kept));
        value_text(c->other_value, other, sizeof(other));
        if (c->other_fields != NULL) {
            size_t o2 = 0;
            for (size_t k = 0; k < c->other_fields->n_fields; k++) {
                char v[100];
                value_text(c->other_fields->fields[k]->value, v, sizeof(v));
                o2 += (size_t)snprintf(fields + o2, sizeof(fields) - o2, "%s%s=%s", k ? "," : "",
                                       c->other_fields->fields[k]->name, v);
                if (o2 >= sizeof(fields))
                    break;
            }
        }
        snprintf(o->ids[i], sizeof(o->ids[i]), "%s", c->id);
        snprintf(o->lines[i], sizeof(o->lines[i]),
                 "%s %s %s base=%s kept=%s other=%s kd=%d od=%d of=%s by=%s/%s vs %s/%s%s",
                 c->entity_type, c->record_id, c->field[0] ? c->field : "*", base, kept, other,
                 c->kept_deleted, c->other_deleted, fields, c->kept_by, c->kept_device, c->other_by,
                 c->other_device, c->resolved ? " resolved" : "");
        /* RFC 3339 UTC with microseconds; the tenant is the plan. */
        assert_int_equal(strlen(c->created_at), 27);
        assert_int_equal(c->created_at[26], 'Z');
        assert_int_equal(c->created_at[10], 'T');
        assert_non_null(c->tenant_id);
    }
}

static Napsync__V1__Scope scope_plan(const char *id)
{
    Napsync__V1__Scope s = NAPSYNC__V1__SCOPE__INIT;
    s.kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    s.plan_id = (char *)id;
    return s;
}

static Napsync__V1__Scope scope_org(const char *id)
{
    Napsync__V1__Scope s = NAPSYNC__V1__SCOPE__INIT;
    s.kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
    s.organisation_id = (char *)id;
    return s;
}

static void list(const ns_identity_info *who, Napsync__V1__Scope *scopes, size_t n, bool resolved,
                 list_out *o)
{
    memset(o, 0, sizeof(*o));
    Napsync__V1__Scope *ptrs[4];
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &scopes[i];
    Napsync__V1__ListConflicts req = NAPSYNC__V1__LIST_CONFLICTS__INIT;
    req.n_scopes = n;
    req.scopes = ptrs;
    req.include_resolved = resolved;
    char err[256];
    int rc = ns_conflicts_list(conflicts, who, &req, on_list, o, err, sizeof(err));
    if (rc != 0)
        fail_msg("ns_conflicts_list: %d %s", rc, err);
    assert_false(o->done);
    nst_pt_run_until(&o->done);
    assert_int_equal(o->calls, 1);
}

/* The list must have succeeded with n conflicts. */
static void list_ok(const ns_identity_info *who, Napsync__V1__Scope *scopes, size_t n,
                    bool resolved, list_out *o, size_t count)
{
    list(who, scopes, n, resolved, o);
    if (o->code != 0)
        fail_msg("list: %d %s", o->code, o->msg);
    assert_int_equal(o->n, count);
}

typedef struct {
    bool done;
    int calls;
    int code;
    char msg[300];
    bool has;
    nst_pt_result r;
} res_out;

static void on_resolved(const Napsync__V1__MutationResult *m, Napsync__V1__ErrorCode code,
                        const char *message, void *ud)
{
    res_out *o = ud;
    o->calls++;
    o->done = true;
    o->code = code;
    snprintf(o->msg, sizeof(o->msg), "%s", message ? message : "");
    o->has = m != NULL;
    if (m == NULL)
        return;
    snprintf(o->r.mutation_id, sizeof(o->r.mutation_id), "%s", m->mutation_id);
    o->r.outcome = m->outcome;
    o->r.version = m->version;
    o->r.reject_code = m->reject_code;
    snprintf(o->r.reason, sizeof(o->r.reason), "%s", m->reject_reason);
    o->r.nconflicts = m->n_conflict_ids;
}

/* Resolves; value_spec is "field=value" as nst_pt_put_spec takes it (NULL: no value). */
static void resolve_with(const ns_identity_info *who, const char *cid, const char *mid,
                         int resolution, const char *value_spec, res_out *o)
{
    memset(o, 0, sizeof(*o));
    Napsync__V1__ResolveConflict req = NAPSYNC__V1__RESOLVE_CONFLICT__INIT;
    req.conflict_id = (char *)cid;
    req.mutation_id = (char *)mid;
    req.resolution = (Napsync__V1__Resolution)resolution;
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    Napsync__V1__Value pv = NAPSYNC__V1__VALUE__INIT;
    if (value_spec != NULL) {
        nst_pt_put_spec("plan", &fs, value_spec);
        assert_int_equal(ns_value_to_pb(&fs.values[0], &pv), 0);
        req.value = &pv;
    }
    char err[256];
    int rc = ns_conflicts_resolve(conflicts, who, &req, on_resolved, o, err, sizeof(err));
    ns_value_pb_clear(&pv);
    ns_fieldset_free(&fs);
    if (rc != 0)
        fail_msg("ns_conflicts_resolve: %d %s", rc, err);
    assert_false(o->done);
    nst_pt_run_until(&o->done);
    assert_int_equal(o->calls, 1);
    if (!o->has)
        fail_msg("resolve failed as a whole: %d %s", o->code, o->msg);
    assert_string_equal(o->r.mutation_id, mid);
}

static void resolved_at(const res_out *o, uint64_t version)
{
    if (o->r.outcome != OUT_APPLIED || o->r.version != version)
        fail_msg("resolve: outcome %d version %llu (%d %s), expected applied %llu", o->r.outcome,
                 (unsigned long long)o->r.version, o->r.reject_code, o->r.reason,
                 (unsigned long long)version);
}

static void refused(const res_out *o, int code, const char *needle)
{
    if (o->r.outcome != OUT_REJECTED || o->r.reject_code != code ||
        strstr(o->r.reason, needle) == NULL)
        fail_msg("resolve: outcome %d code %d \"%s\", expected rejected %d \"%s\"", o->r.outcome,
                 o->r.reject_code, o->r.reason, code, needle);
    assert_int_equal(o->r.version, 0);
}

static long long open_conflicts(void)
{
    return QN0("SELECT count(*) FROM sync_conflicts WHERE resolved_at IS NULL");
}

/* A draft plan with a title conflict (alice's title kept, bob's lost; bob's
 * summary merged: v3). Returns the conflict id (a rotating buffer). */
static const char *title_conflict(const char *plan, unsigned m0)
{
    nst_pt_apply1(&nst_pt.alice, MID(m0), "plan", plan, OP_CREATE, 0,
                  PLAN_F("title=T0", "summary=S0", "status=draft"), OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.alice, MID(m0 + 1), "plan", plan, OP_UPDATE, 1, F("title=Title by A"),
                  OUT_APPLIED, 2);
    nst_pt_out o;
    nst_pt_push1(&nst_pt.bob, MID(m0 + 2), "plan", plan, OP_UPDATE, 1,
                 F("title=Title by B", "summary=Summary by B"), &o);
    nst_pt_expect(&o, 0, OUT_CONFLICT, 3);
    static char ids[4][40];
    static unsigned next;
    char *id = ids[next++ % 4];
    snprintf(id, 40, "%s", o.r[0].conflicts[0]);
    nst_pt_out_free(&o);
    return id;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* The issue's scenario: A changes title; B changes title and summary; A
 * first; B's title is the conflict. A takes "mine" (the value A authored,
 * which the record kept): A's title, B's summary, no open conflict. */
static void test_issue_scenario(void **state)
{
    (void)state;
    const char *cid = title_conflict(PLAN_1, 1);
    Napsync__V1__Scope sc[] = {scope_plan(PLAN_1)};
    list_out l;
    list_ok(&nst_pt.alice, sc, 1, false, &l, 1);
    assert_string_equal(l.ids[0], cid);
    char want[700];
    snprintf(want, sizeof(want),
             "plan %s title base=\"T0\" kept=\"Title by A\" other=\"Title by B\" kd=0 od=0 of=- "
             "by=alice/dev-a vs bob/dev-b",
             PLAN_1);
    assert_string_equal(l.lines[0], want);

    res_out r;
    resolve_with(&nst_pt.alice, cid, MID(10), KEEP, NULL, &r);
    resolved_at(&r, 4);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "Title by A");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "summary"), "Summary by B");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "version"), "4");
    assert_int_equal(open_conflicts(), 0);
    /* A versioned change like any other: revision "resolve", feed, answer. */
    assert_string_equal(nst_pt_rev(PLAN_1, "4", "op"), "resolve");
    assert_string_equal(nst_pt_rev(PLAN_1, "4", "mutation_id"), MID(10));
    assert_string_equal(nst_pt_rev(PLAN_1, "4", "principal_id"), nst_pt.alice.principal_id);
    assert_string_equal(nst_pt_rev(PLAN_1, "4", "after->>'title'"), "Title by A");
    assert_int_equal(
        QN("SELECT count(*) FROM sync_feed WHERE record_id = $1 AND version = 4", PLAN_1), 1);
    assert_string_equal(Q("SELECT outcome || ' ' || version FROM sync_mutations"
                          " WHERE mutation_id = $1",
                          MID(10)),
                        "applied 4");
    assert_string_equal(Q("SELECT (resolved_by = $2)::text || ' ' || resolution_version ||"
                          " ' ' || (resolved_at IS NOT NULL)::text"
                          " FROM sync_conflicts WHERE id = $1",
                          cid, nst_pt.alice.principal_id),
                        "true 4 true");
    /* Both devices list after their sync: nothing open. */
    list_ok(&nst_pt.alice, sc, 1, false, &l, 0);
    list_ok(&nst_pt.bob, sc, 1, false, &l, 0);
    list_ok(&nst_pt.bob, sc, 1, true, &l, 1);
    assert_non_null(strstr(l.lines[0], " resolved"));
}

static void test_resolve_other_and_value(void **state)
{
    (void)state;
    const char *c1 = title_conflict(PLAN_1, 1);
    res_out r;
    /* OTHER: the value that lost ("theirs" for alice, "mine" for bob). */
    resolve_with(&nst_pt.bob, c1, MID(10), OTHER, NULL, &r);
    resolved_at(&r, 4);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "Title by B");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "summary"), "Summary by B");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "changed_by"), nst_pt.bob.principal_id);
    assert_string_equal(nst_pt_rev(PLAN_1, "4", "before->>'title'"), "Title by A");

    /* VALUE: a third value, checked against the field's type. */
    const char *c2 = title_conflict(PLAN_2, 20);
    resolve_with(&nst_pt.alice, c2, MID(30), VALUE, "title:int=5", &r);
    refused(&r, ERR(INVALID_ARGUMENT), "title");
    assert_int_equal(nst_pt_stored_count(MID(30)), 0);
    resolve_with(&nst_pt.alice, c2, MID(31), VALUE, "title=Agreed title", &r);
    resolved_at(&r, 4);
    assert_string_equal(nst_pt_plan_field(PLAN_2, "title"), "Agreed title");
    assert_int_equal(open_conflicts(), 0);
}

static void test_idempotent_and_double(void **state)
{
    (void)state;
    const char *cid = title_conflict(PLAN_1, 1);
    res_out r;
    resolve_with(&nst_pt.alice, cid, MID(10), OTHER, NULL, &r);
    resolved_at(&r, 4);
    /* The same resolution again (a lost answer): the stored answer, once. */
    resolve_with(&nst_pt.alice, cid, MID(10), OTHER, NULL, &r);
    resolved_at(&r, 4);
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_1), 4);
    assert_int_equal(nst_pt_stored_count(MID(10)), 1);
    /* Another resolution of it: refused, and that answer is stored too. */
    resolve_with(&nst_pt.bob, cid, MID(11), KEEP, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "already resolved");
    assert_int_equal(nst_pt_stored_count(MID(11)), 1);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "version"), "4");
    assert_string_equal(Q("SELECT resolution_version::text FROM sync_conflicts WHERE id = $1", cid),
                        "4");
    /* Two resolutions of one conflict at once: one wins, whichever the
     * engine takes first; the other is refused. */
    const char *c2 = title_conflict(PLAN_2, 20);
    Napsync__V1__ResolveConflict a = NAPSYNC__V1__RESOLVE_CONFLICT__INIT;
    a.conflict_id = (char *)c2;
    a.mutation_id = (char *)MID(30);
    a.resolution = KEEP;
    Napsync__V1__ResolveConflict b = a;
    b.mutation_id = (char *)MID(31);
    b.resolution = OTHER;
    res_out ra, rb;
    memset(&ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    char err[128];
    assert_int_equal(
        ns_conflicts_resolve(conflicts, &nst_pt.alice, &a, on_resolved, &ra, err, sizeof(err)), 0);
    assert_int_equal(
        ns_conflicts_resolve(conflicts, &nst_pt.bob, &b, on_resolved, &rb, err, sizeof(err)), 0);
    nst_pt_run_until(&ra.done);
    nst_pt_run_until(&rb.done);
    bool a_won = ra.r.outcome == OUT_APPLIED;
    resolved_at(a_won ? &ra : &rb, 4);
    refused(a_won ? &rb : &ra, ERR(INVALID_ARGUMENT), "already resolved");
    assert_string_equal(nst_pt_plan_field(PLAN_2, "title"), a_won ? "Title by A" : "Title by B");
    assert_int_equal(QN("SELECT count(*) FROM sync_revisions WHERE record_id = $1", PLAN_2), 4);
}

static void test_refusals(void **state)
{
    (void)state;
    const char *cid = title_conflict(PLAN_1, 1);
    res_out r;
    /* Observers read, never resolve. */
    resolve_with(&nst_pt.olga, cid, MID(10), KEEP, NULL, &r);
    refused(&r, ERR(PERMISSION_DENIED), "observers");
    assert_int_equal(nst_pt_stored_count(MID(10)), 0);
    /* Another organisation: a draft it cannot see is not found... */
    resolve_with(&nst_pt.xavier, cid, MID(11), KEEP, NULL, &r);
    refused(&r, ERR(NOT_FOUND), "does not exist");
    /* ...an adopted plan it can read but not write is denied. */
    nst_pt_exec_ok("UPDATE plans SET status = 'adopted'");
    resolve_with(&nst_pt.xavier, cid, MID(12), KEEP, NULL, &r);
    refused(&r, ERR(PERMISSION_DENIED), "another organisation");
    resolve_with(&nst_pt.alice, nst_pt_uid(0x77000000u, 1), MID(13), KEEP, NULL, &r);
    refused(&r, ERR(NOT_FOUND), "does not exist");
    /* The request's form. */
    resolve_with(&nst_pt.alice, "not-a-uuid", MID(14), KEEP, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "conflict_id");
    resolve_with(&nst_pt.alice, cid, "bad", KEEP, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "mutation_id");
    resolve_with(&nst_pt.alice, cid, MID(15), 0, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "resolution");
    resolve_with(&nst_pt.alice, cid, MID(16), VALUE, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "needs a value");
    resolve_with(&nst_pt.alice, cid, MID(17), KEEP, "title=x", &r);
    refused(&r, ERR(INVALID_ARGUMENT), "only for");
    assert_int_equal(open_conflicts(), 1);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "version"), "3");
    /* Only the refusal decided in the transaction (the plan's owner) is
     * stored; those of the request alone are not. */
    assert_string_equal(Q("SELECT string_agg(mutation_id::text, ' ') FROM sync_mutations"
                          " WHERE reject_code <> 0"),
                        MID(12));
}

static void test_whole_record(void **state)
{
    (void)state;
    /* The delete won, the edit lost: OTHER brings the record back with
     * the edit. */
    nst_pt_apply1(&nst_pt.alice, MID(1), "plan", PLAN_1, OP_CREATE, 0,
                  PLAN_F("title=T0", "summary=S0"), OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.alice, MID(2), "plan", PLAN_1, OP_DELETE, 1, NOFIELDS, OUT_APPLIED, 2);
    nst_pt_out o;
    nst_pt_push1(&nst_pt.bob, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("title=edited"), &o);
    nst_pt_expect(&o, 0, OUT_CONFLICT, 2);
    char c1[40];
    snprintf(c1, sizeof(c1), "%s", o.r[0].conflicts[0]);
    nst_pt_out_free(&o);

    /* The edit won, the delete lost: OTHER deletes. */
    nst_pt_apply1(&nst_pt.alice, MID(4), "plan", PLAN_2, OP_CREATE, 0, PLAN_F("title=T0"),
                  OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.alice, MID(5), "plan", PLAN_2, OP_UPDATE, 1, F("title=edited"),
                  OUT_APPLIED, 2);
    nst_pt_push1(&nst_pt.bob, MID(6), "plan", PLAN_2, OP_DELETE, 1, NOFIELDS, &o);
    nst_pt_expect(&o, 0, OUT_CONFLICT, 2);
    char c2[40];
    snprintf(c2, sizeof(c2), "%s", o.r[0].conflicts[0]);
    nst_pt_out_free(&o);

    Napsync__V1__Scope sc[] = {scope_org(nst_pt.org_a)};
    list_out l;
    list_ok(&nst_pt.olga, sc, 1, false, &l, 2);
    /* Newest first. */
    assert_string_equal(l.ids[0], c2);
    assert_string_equal(l.ids[1], c1);
    char want[700];
    snprintf(want, sizeof(want),
             "plan %s * base=- kept=- other=- kd=0 od=1 of=- by=alice/dev-a vs bob/dev-b", PLAN_2);
    assert_string_equal(l.lines[0], want);
    snprintf(want, sizeof(want),
             "plan %s * base=- kept=- other=- kd=1 od=0 of=title=\"edited\" by=alice/dev-a vs "
             "bob/dev-b",
             PLAN_1);
    assert_string_equal(l.lines[1], want);

    res_out r;
    resolve_with(&nst_pt.bob, c1, MID(10), VALUE, "title=x", &r);
    refused(&r, ERR(INVALID_ARGUMENT), "KEEP or OTHER");
    resolve_with(&nst_pt.bob, c1, MID(11), OTHER, NULL, &r);
    resolved_at(&r, 3);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "deleted"), "false");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "title"), "edited");
    assert_string_equal(nst_pt_plan_field(PLAN_1, "summary"), "S0");
    assert_string_equal(nst_pt_rev(PLAN_1, "3", "deleted"), "false");

    resolve_with(&nst_pt.bob, c2, MID(12), OTHER, NULL, &r);
    resolved_at(&r, 3);
    assert_string_equal(nst_pt_plan_field(PLAN_2, "deleted"), "true");
    assert_string_equal(nst_pt_plan_field(PLAN_2, "title"), "edited");
    assert_string_equal(nst_pt_rev(PLAN_2, "3", "op"), "resolve");
    assert_int_equal(open_conflicts(), 0);
}

/* A field conflict of a record deleted since: KEEP closes it, the record
 * stays deleted; OTHER is refused. */
static void test_field_conflict_of_deleted(void **state)
{
    (void)state;
    const char *cid = title_conflict(PLAN_1, 1);
    nst_pt_apply1(&nst_pt.alice, MID(5), "plan", PLAN_1, OP_DELETE, 3, NOFIELDS, OUT_APPLIED, 4);
    res_out r;
    resolve_with(&nst_pt.alice, cid, MID(10), OTHER, NULL, &r);
    refused(&r, ERR(INVALID_ARGUMENT), "is deleted");
    resolve_with(&nst_pt.alice, cid, MID(11), KEEP, NULL, &r);
    resolved_at(&r, 5);
    assert_string_equal(nst_pt_plan_field(PLAN_1, "deleted"), "true");
    assert_int_equal(open_conflicts(), 0);
}

static void test_list_scopes(void **state)
{
    (void)state;
    const char *c1 = title_conflict(PLAN_1, 1);
    /* An indicator conflict on a decimal field, typed as such. */
    nst_pt_apply1(&nst_pt.alice, MID(10), "indicator", IND_1, OP_CREATE, 0,
                  IND_F(PLAN_1, "target=10"), OUT_APPLIED, 1);
    nst_pt_apply1(&nst_pt.alice, MID(11), "indicator", IND_1, OP_UPDATE, 1, F("target=12.5"),
                  OUT_APPLIED, 2);
    nst_pt_out o;
    nst_pt_push1(&nst_pt.bob, MID(12), "indicator", IND_1, OP_UPDATE, 1, F("target=11"), &o);
    nst_pt_expect(&o, 0, OUT_CONFLICT, 2);
    nst_pt_out_free(&o);
    const char *c2 = title_conflict(PLAN_2, 20);

    Napsync__V1__Scope one[] = {scope_plan(PLAN_1)};
    list_out l;
    list_ok(&nst_pt.alice, one, 1, false, &l, 2);
    char want[700];
    snprintf(want, sizeof(want),
             "indicator %s target base=10 kept=12.5 other=11 kd=0 od=0 of=- by=alice/dev-a vs "
             "bob/dev-b",
             IND_1);
    assert_string_equal(l.lines[0], want);
    assert_string_equal(l.ids[1], c1);
    Napsync__V1__Scope org[] = {scope_org(nst_pt.org_a)};
    list_ok(&nst_pt.alice, org, 1, false, &l, 3);
    assert_string_equal(l.ids[0], c2);
    Napsync__V1__Scope both[] = {scope_plan(PLAN_2), scope_plan(PLAN_1)};
    list_ok(&nst_pt.olga, both, 2, false, &l, 3);

    /* Another organisation: drafts are not readable. */
    list(&nst_pt.xavier, one, 1, false, &l);
    assert_int_equal(l.code, ERR(PERMISSION_DENIED));
    assert_non_null(strstr(l.msg, PLAN_1));
    list_ok(&nst_pt.xavier, org, 1, false, &l, 0);
    Napsync__V1__Scope x[] = {scope_plan(PLAN_X)};
    list(&nst_pt.alice, x, 1, false, &l);
    assert_int_equal(l.code, ERR(PERMISSION_DENIED));
    /* Adopted: readable by everyone. */
    nst_pt_exec_ok("UPDATE plans SET status = 'adopted' WHERE id = '" PLAN_2 "'");
    list_ok(&nst_pt.xavier, org, 1, false, &l, 1);
    assert_string_equal(l.ids[0], c2);

    /* include_resolved. */
    res_out r;
    resolve_with(&nst_pt.alice, c1, MID(40), KEEP, NULL, &r);
    resolved_at(&r, 4);
    list_ok(&nst_pt.alice, org, 1, false, &l, 2);
    list_ok(&nst_pt.alice, org, 1, true, &l, 3);

    /* Scopes are checked as Pull checks them. */
    char err[256];
    Napsync__V1__ListConflicts req = NAPSYNC__V1__LIST_CONFLICTS__INIT;
    assert_int_equal(
        ns_conflicts_list(conflicts, &nst_pt.alice, &req, on_list, &l, err, sizeof(err)),
        ERR(INVALID_ARGUMENT));
    assert_non_null(strstr(err, "at least one scope"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, nst_pt_test_setup, nst_pt_test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_issue_scenario),        T(test_resolve_other_and_value),
        T(test_idempotent_and_double), T(test_refusals),
        T(test_whole_record),          T(test_field_conflict_of_deleted),
        T(test_list_scopes),
    };
#undef T
    return cmocka_run_group_tests_name("conflicts", tests, group_setup, group_teardown);
}
