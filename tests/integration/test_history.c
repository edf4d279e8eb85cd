/* History (daemon/history.h) in process against a real PostgreSQL, on
 * test_push's fixture (pushtest.h: a fresh migrated database, the registry,
 * a loop, a pool, the push engine): versions are made with pushes, asked
 * for with protobuf History requests through ns_history_query, and the
 * pages checked field by field: order, authors, devices, ops, typed
 * values of the changed fields only, paging and its limits, the frame-size
 * cut, and readability (a draft of another organisation is NOT_FOUND). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <regex.h>

#include "history.h"
#include "pushtest.h"

/* ---- asking for the history ------------------------------------------------------------ */

typedef struct {
    bool done;
    int calls;
    int code;
    char msg[300];
    Napsync__V1__HistoryPage *page; /* a deep copy (packed and unpacked), owned */
    size_t packed;                  /* the page's packed size */
} hist_out;

static void on_history(int code, const char *message, const Napsync__V1__HistoryPage *page,
                       void *ud)
{
    hist_out *o = ud;
    o->calls++;
    o->done = true;
    o->code = code;
    snprintf(o->msg, sizeof(o->msg), "%s", message ? message : "");
    if (page == NULL)
        return;
    o->packed = napsync__v1__history_page__get_packed_size(page);
    uint8_t *buf = malloc(o->packed ? o->packed : 1);
    assert_non_null(buf);
    napsync__v1__history_page__pack(page, buf);
    o->page = napsync__v1__history_page__unpack(NULL, o->packed, buf);
    free(buf);
    assert_non_null(o->page);
}

static void out_free(hist_out *o)
{
    if (o->page)
        napsync__v1__history_page__free_unpacked(o->page, NULL);
    memset(o, 0, sizeof(*o));
}

/* Runs one request; returns ns_history_query's code (0: answered in o). */
static int ask(const ns_identity_info *who, const char *type, const char *id, uint64_t before,
               uint32_t limit, hist_out *o)
{
    memset(o, 0, sizeof(*o));
    Napsync__V1__History req = NAPSYNC__V1__HISTORY__INIT;
    req.entity_type = (char *)type;
    req.record_id = (char *)id;
    req.before_version = before;
    req.limit = limit;
    char err[256] = "";
    int code = ns_history_query(nst_pt.db, &nst_pt.reg, who, &req, on_history, o, err, sizeof(err));
    if (code != 0) {
        assert_true(err[0] != '\0');
        snprintf(o->msg, sizeof(o->msg), "%s", err);
        return code;
    }
    assert_false(o->done); /* never inside the call */
    nst_pt_run_until(&o->done);
    assert_int_equal(o->calls, 1);
    return 0;
}

/* A page, which must come: its revisions. */
static const Napsync__V1__HistoryPage *page_of(const ns_identity_info *who, const char *type,
                                               const char *id, uint64_t before, uint32_t limit,
                                               hist_out *o)
{
    int code = ask(who, type, id, before, limit, o);
    if (code != 0 || o->page == NULL)
        fail_msg("history of %s %s: code %d: %s", type, id, code ? code : o->code, o->msg);
    return o->page;
}

/* The versions of a page, newest first, as "4 3 2". */
static void versions(const Napsync__V1__HistoryPage *p, char *out, size_t outlen)
{
    out[0] = '\0';
    for (size_t i = 0; i < p->n_revisions; i++) {
        size_t n = strlen(out);
        snprintf(out + n, outlen - n, "%s%llu", i ? " " : "",
                 (unsigned long long)p->revisions[i]->version);
    }
}

/* A wire value as short text: null, "text", set[a,b], or the bare value. */
static void value_text(const Napsync__V1__Value *v, char *out, size_t outlen)
{
    switch (v ? v->kind_case : NAPSYNC__V1__VALUE__KIND__NOT_SET) {
    case NAPSYNC__V1__VALUE__KIND_NULL_VALUE:
        snprintf(out, outlen, "null");
        break;
    case NAPSYNC__V1__VALUE__KIND_TEXT_VALUE:
        snprintf(out, outlen, "\"%s\"", v->text_value);
        break;
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        snprintf(out, outlen, "dec:%s", v->decimal_value);
        break;
    case NAPSYNC__V1__VALUE__KIND_DATE_VALUE:
        snprintf(out, outlen, "date:%s", v->date_value);
        break;
    case NAPSYNC__V1__VALUE__KIND_REF_VALUE:
        snprintf(out, outlen, "ref:%s", v->ref_value);
        break;
    case NAPSYNC__V1__VALUE__KIND_SET_VALUE: {
        size_t n = (size_t)snprintf(out, outlen, "set[");
        for (size_t i = 0; v->set_value && i < v->set_value->n_items && n < outlen; i++)
            n +=
                (size_t)snprintf(out + n, outlen - n, "%s%s", i ? "," : "", v->set_value->items[i]);
        if (n < outlen)
            snprintf(out + n, outlen - n, "]");
        break;
    }
    default:
        snprintf(out, outlen, "?%d", v ? (int)v->kind_case : -1);
        break;
    }
}

/* The changed fields of a revision as "name: before -> after; ...". */
static void changes_text(const Napsync__V1__Revision *r, char *out, size_t outlen)
{
    out[0] = '\0';
    for (size_t i = 0; i < r->n_changed_fields; i++) {
        const Napsync__V1__FieldChange *c = r->changed_fields[i];
        char b[256], a[256];
        value_text(c->before, b, sizeof(b));
        value_text(c->after, a, sizeof(a));
        size_t n = strlen(out);
        snprintf(out + n, outlen - n, "%s%s: %s -> %s", i ? "; " : "", c->name, b, a);
    }
}

static void expect_rev(const Napsync__V1__Revision *r, uint64_t version, const char *op,
                       const ns_identity_info *who, const char *mid, bool deleted,
                       const char *changes)
{
    assert_int_equal(r->version, version);
    assert_string_equal(r->op, op);
    assert_string_equal(r->changed_by, who->principal_name);
    assert_string_equal(r->device, who->device_name);
    assert_string_equal(r->mutation_id, mid);
    assert_int_equal(r->deleted, deleted);
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    if (regexec(&re, r->at, 0, NULL, 0) != 0)
        fail_msg("version %llu: \"%s\" is not RFC 3339 UTC", (unsigned long long)version, r->at);
    regfree(&re);
    char got[4096];
    changes_text(r, got, sizeof(got));
    if (strcmp(got, changes) != 0)
        fail_msg("version %llu changes:\n  got      %s\n  expected %s", (unsigned long long)version,
                 got, changes);
}

/* ---- tests ------------------------------------------------------------------------------ */

/* Create, update, a merged edit with a conflict, delete: who, what, when,
 * newest first, only the changed fields, typed. */
static void test_versions(void **state)
{
    (void)state;
    const ns_identity_info *alice = &nst_pt.alice, *bob = &nst_pt.bob;
    nst_pt_apply1(alice, MID(1), "plan", PLAN_1, OP_CREATE, 0,
                  PLAN_F("title=T0", "summary=S0", "tags=yps, climate"), OUT_APPLIED, 1);
    nst_pt_apply1(alice, MID(2), "plan", PLAN_1, OP_UPDATE, 1, F("title=Title by A"), OUT_APPLIED,
                  2);
    /* bob edits version 1: summary merges, title conflicts (A's is kept). */
    nst_pt_apply1(bob, MID(3), "plan", PLAN_1, OP_UPDATE, 1,
                  F("title=Title by B", "summary=Summary by B"), OUT_CONFLICT, 3);
    nst_pt_apply1(alice, MID(4), "plan", PLAN_1, OP_UPDATE, 3, F("tags=climate, peace"),
                  OUT_APPLIED, 4);
    nst_pt_apply1(alice, MID(5), "plan", PLAN_1, OP_DELETE, 4, NOFIELDS, OUT_APPLIED, 5);

    hist_out o;
    const Napsync__V1__HistoryPage *p = page_of(alice, "plan", PLAN_1, 0, 0, &o);
    char v[64];
    versions(p, v, sizeof(v));
    assert_string_equal(v, "5 4 3 2 1");
    assert_false(p->more);
    expect_rev(p->revisions[0], 5, "delete", alice, MID(5), true, "");
    expect_rev(p->revisions[1], 4, "update", alice, MID(4), false,
               "tags: set[climate,yps] -> set[climate,peace]");
    expect_rev(p->revisions[2], 3, "update", bob, MID(3), false,
               "summary: \"S0\" -> \"Summary by B\"");
    expect_rev(p->revisions[3], 2, "update", alice, MID(2), false,
               "title: \"T0\" -> \"Title by A\"");
    /* A create: every field it set (the owner by the engine), from null. */
    char created[512];
    snprintf(created, sizeof(created),
             "kind: null -> \"" NST_PLAN_KIND "\"; owner_id: null -> ref:%s; "
             "period_end: null -> date:" NST_PLAN_END "; "
             "period_start: null -> date:" NST_PLAN_START "; status: null -> \"draft\"; "
             "summary: null -> \"S0\"; tags: null -> set[climate,yps]; title: null -> \"T0\"",
             nst_pt.org_a);
    expect_rev(p->revisions[4], 1, "create", alice, MID(1), false, created);
    out_free(&o);

    /* The same for another principal of the organisation, and any case of
     * the id. */
    char upper[40];
    snprintf(upper, sizeof(upper), "%s", PLAN_1);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    p = page_of(&nst_pt.olga, "plan", upper, 0, 0, &o);
    assert_int_equal(p->n_revisions, 5);
    out_free(&o);
}

/* Decimals, dates and references come typed; the indicator's history is
 * its own. */
static void test_typed_values(void **state)
{
    (void)state;
    const ns_identity_info *alice = &nst_pt.alice;
    nst_pt_apply1(alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=P"), OUT_APPLIED, 1);
    nst_pt_apply1(alice, MID(2), "indicator", IND_1, OP_CREATE, 0,
                  IND_F(PLAN_1, "code=I1", "baseline=12.50", "baseline_date=2024-01-31"),
                  OUT_APPLIED, 1);
    nst_pt_apply1(alice, MID(3), "indicator", IND_1, OP_UPDATE, 1,
                  F("baseline=13", "target=40.25", "target_date=2030-12-31", "code"), OUT_APPLIED,
                  2);
    hist_out o;
    const Napsync__V1__HistoryPage *p = page_of(alice, "indicator", IND_1, 0, 0, &o);
    assert_int_equal(p->n_revisions, 2);
    expect_rev(p->revisions[0], 2, "update", alice, MID(3), false,
               "baseline: dec:12.5 -> dec:13; code: \"I1\" -> null; target: null -> dec:40.25; "
               "target_date: null -> date:2030-12-31");
    char created[512];
    snprintf(created, sizeof(created),
             "baseline: null -> dec:12.5; baseline_date: null -> date:2024-01-31; "
             "code: null -> \"I1\"; plan_id: null -> ref:%s; title: null -> \"Indicator\"; "
             "value_type: null -> \"" NST_INDICATOR_TYPE "\"",
             PLAN_1);
    expect_rev(p->revisions[1], 1, "create", alice, MID(2), false, created);
    out_free(&o);
    /* The plan's history holds only the plan's versions. */
    p = page_of(alice, "plan", PLAN_1, 0, 0, &o);
    assert_int_equal(p->n_revisions, 1);
    out_free(&o);
}

/* Pages of `limit` versions below before_version; more says whether older
 * ones remain. */
static void test_paging(void **state)
{
    (void)state;
    const ns_identity_info *alice = &nst_pt.alice;
    nst_pt_apply1(alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=v1"), OUT_APPLIED, 1);
    for (unsigned i = 2; i <= 5; i++) {
        char title[32];
        snprintf(title, sizeof(title), "title=v%u", i);
        nst_pt_apply1(alice, MID(i), "plan", PLAN_1, OP_UPDATE, i - 1, F(title), OUT_APPLIED, i);
    }
    hist_out o;
    char v[64];
    const Napsync__V1__HistoryPage *p = page_of(alice, "plan", PLAN_1, 0, 2, &o);
    versions(p, v, sizeof(v));
    assert_string_equal(v, "5 4");
    assert_true(p->more);
    out_free(&o);
    p = page_of(alice, "plan", PLAN_1, 4, 2, &o);
    versions(p, v, sizeof(v));
    assert_string_equal(v, "3 2");
    assert_true(p->more);
    out_free(&o);
    p = page_of(alice, "plan", PLAN_1, 2, 2, &o);
    versions(p, v, sizeof(v));
    assert_string_equal(v, "1");
    assert_false(p->more);
    out_free(&o);
    /* Nothing below version 1, and a before_version above the latest
     * starts at the latest. */
    p = page_of(alice, "plan", PLAN_1, 1, 2, &o);
    assert_int_equal(p->n_revisions, 0);
    assert_false(p->more);
    out_free(&o);
    p = page_of(alice, "plan", PLAN_1, 1000, 1, &o);
    versions(p, v, sizeof(v));
    assert_string_equal(v, "5");
    assert_true(p->more);
    out_free(&o);
}

/* limit 0 is 50; a limit above 500 is 500. */
static void test_limits(void **state)
{
    (void)state;
    const ns_identity_info *alice = &nst_pt.alice;
    enum { VERSIONS = 520, BATCH = 130 };
    nst_pt_apply1(alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=v1"), OUT_APPLIED, 1);
    for (unsigned from = 2; from <= VERSIONS; from += BATCH) {
        nst_pt_pbuild b;
        nst_pt_pb_init(&b);
        unsigned to = from + BATCH - 1 < VERSIONS ? from + BATCH - 1 : VERSIONS;
        for (unsigned i = from; i <= to; i++) {
            char title[32];
            snprintf(title, sizeof(title), "title=v%u", i);
            nst_pt_pb_add(&b, MID(i), "plan", PLAN_1, OP_UPDATE, i - 1, F(title));
        }
        nst_pt_out out;
        nst_pt_run_push(&b, alice, &out);
        nst_pt_results_ok(&out, to - from + 1);
        for (unsigned i = from; i <= to; i++)
            nst_pt_expect(&out, i - from, OUT_APPLIED, i);
        nst_pt_out_free(&out);
        nst_pt_pb_free(&b);
    }
    hist_out o;
    const Napsync__V1__HistoryPage *p = page_of(alice, "plan", PLAN_1, 0, 0, &o);
    assert_int_equal(p->n_revisions, NS_HISTORY_DEFAULT_LIMIT);
    assert_int_equal(p->revisions[0]->version, VERSIONS);
    assert_true(p->more);
    out_free(&o);
    p = page_of(alice, "plan", PLAN_1, 0, 100000, &o);
    assert_int_equal(p->n_revisions, NS_HISTORY_MAX_LIMIT);
    assert_int_equal(p->revisions[NS_HISTORY_MAX_LIMIT - 1]->version,
                     VERSIONS - NS_HISTORY_MAX_LIMIT + 1);
    assert_true(p->more);
    out_free(&o);
    p = page_of(alice, "plan", PLAN_1, VERSIONS - NS_HISTORY_MAX_LIMIT + 1, 100000, &o);
    assert_int_equal(p->n_revisions, VERSIONS - NS_HISTORY_MAX_LIMIT);
    assert_false(p->more);
    out_free(&o);
}

/* Versions whose changes would not fit a frame go to the next page. */
static void test_page_bytes(void **state)
{
    (void)state;
    const ns_identity_info *alice = &nst_pt.alice;
    enum { VERSIONS = 100, TEXT = 9000, BATCH = 20 };
    static char spec[TEXT + 16];
    nst_pt_apply1(alice, MID(1), "plan", PLAN_1, OP_CREATE, 0, PLAN_F("title=big"), OUT_APPLIED, 1);
    for (unsigned from = 2; from <= VERSIONS; from += BATCH) {
        nst_pt_pbuild b;
        nst_pt_pb_init(&b);
        unsigned to = from + BATCH - 1 < VERSIONS ? from + BATCH - 1 : VERSIONS;
        for (unsigned i = from; i <= to; i++) {
            /* A different summary each time: before and after are both large. */
            int n = snprintf(spec, sizeof(spec), "summary=%u ", i);
            memset(spec + n, 'a' + (char)(i % 26), TEXT - (size_t)n);
            spec[TEXT] = '\0';
            nst_pt_pb_add(&b, MID(i), "plan", PLAN_1, OP_UPDATE, i - 1, F(spec));
        }
        nst_pt_out out;
        nst_pt_run_push(&b, alice, &out);
        nst_pt_results_ok(&out, to - from + 1);
        nst_pt_out_free(&out);
        nst_pt_pb_free(&b);
    }
    hist_out o;
    const Napsync__V1__HistoryPage *p = page_of(alice, "plan", PLAN_1, 0, VERSIONS, &o);
    size_t first = p->n_revisions;
    assert_true(first > 10 && first < VERSIONS - 1);
    assert_true(p->more);
    assert_true(o.packed <= NS_HISTORY_MAX_PAGE_BYTES);
    uint64_t last = p->revisions[first - 1]->version;
    assert_int_equal(last, VERSIONS - first + 1);
    out_free(&o);
    /* The rest, page by page, without a gap. */
    size_t total = first;
    while (true) {
        p = page_of(alice, "plan", PLAN_1, last, VERSIONS, &o);
        assert_true(p->n_revisions > 0);
        assert_int_equal(p->revisions[0]->version, last - 1);
        assert_true(o.packed <= NS_HISTORY_MAX_PAGE_BYTES);
        total += p->n_revisions;
        last = p->revisions[p->n_revisions - 1]->version;
        bool more = p->more;
        out_free(&o);
        if (!more)
            break;
    }
    assert_int_equal(total, VERSIONS);
    assert_int_equal(last, 1);
}

/* A draft plan of another organisation, and what is in it, is NOT_FOUND,
 * like a record that does not exist; adopted, it is readable. */
static void test_readability(void **state)
{
    (void)state;
    const ns_identity_info *alice = &nst_pt.alice, *xavier = &nst_pt.xavier;
    nst_pt_apply1(alice, MID(1), "plan", PLAN_1, OP_CREATE, 0,
                  PLAN_F("title=Draft", "status=draft"), OUT_APPLIED, 1);
    nst_pt_apply1(alice, MID(2), "indicator", IND_1, OP_CREATE, 0, IND_F(PLAN_1, "code=I1"),
                  OUT_APPLIED, 1);

    hist_out o, none;
    assert_int_equal(ask(xavier, "plan", PLAN_1, 0, 0, &o), 0);
    assert_int_equal(o.code, ERR(NOT_FOUND));
    assert_null(o.page);
    assert_int_equal(ask(xavier, "plan", PLAN_X, 0, 0, &none), 0);
    assert_int_equal(none.code, ERR(NOT_FOUND));
    /* The two answers cannot be told apart. */
    assert_string_equal(o.msg, none.msg);
    out_free(&o);
    out_free(&none);
    assert_int_equal(ask(xavier, "indicator", IND_1, 0, 0, &o), 0);
    assert_int_equal(o.code, ERR(NOT_FOUND));
    out_free(&o);
    /* A record id of another type is not found either. */
    assert_int_equal(ask(alice, "indicator", PLAN_1, 0, 0, &o), 0);
    assert_int_equal(o.code, ERR(NOT_FOUND));
    out_free(&o);

    nst_pt_apply1(alice, MID(3), "plan", PLAN_1, OP_UPDATE, 1, F("status=adopted"), OUT_APPLIED, 2);
    const Napsync__V1__HistoryPage *p = page_of(xavier, "plan", PLAN_1, 0, 0, &o);
    assert_int_equal(p->n_revisions, 2);
    expect_rev(p->revisions[0], 2, "update", alice, MID(3), false,
               "status: \"draft\" -> \"adopted\"");
    out_free(&o);
    p = page_of(xavier, "indicator", IND_1, 0, 0, &o);
    assert_int_equal(p->n_revisions, 1);
    out_free(&o);
}

/* Requests of the wrong form are refused at once; the callback never runs. */
static void test_bad_requests(void **state)
{
    (void)state;
    const ns_identity_info *alice = &nst_pt.alice;
    hist_out o;
    assert_int_equal(ask(alice, "nosuch", PLAN_1, 0, 0, &o), ERR(UNKNOWN_ENTITY));
    assert_int_equal(ask(alice, "", PLAN_1, 0, 0, &o), ERR(UNKNOWN_ENTITY));
    assert_int_equal(ask(alice, NULL, PLAN_1, 0, 0, &o), ERR(UNKNOWN_ENTITY));
    assert_int_equal(ask(alice, "plan", "not-a-uuid", 0, 0, &o), ERR(INVALID_ARGUMENT));
    assert_int_equal(ask(alice, "plan", NULL, 0, 0, &o), ERR(INVALID_ARGUMENT));
    assert_int_equal(ask(alice, "plan", PLAN_1 "0", 0, 0, &o), ERR(INVALID_ARGUMENT));
    assert_int_equal(ask(alice, "plan", PLAN_1, (uint64_t)INT64_MAX + 1, 0, &o),
                     ERR(INVALID_ARGUMENT));
    assert_string_equal(o.msg, "before_version: above the largest version");
    assert_false(o.done);
    char err[64];
    Napsync__V1__History req = NAPSYNC__V1__HISTORY__INIT;
    assert_int_equal(
        ns_history_query(NULL, &nst_pt.reg, alice, &req, on_history, &o, err, sizeof(err)),
        ERR(INTERNAL));
}

static int group_setup(void **state)
{
    (void)state;
    return nst_pt_setup("hist");
}

static int group_teardown(void **state)
{
    (void)state;
    return nst_pt_teardown();
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, nst_pt_test_setup, nst_pt_test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_versions),   T(test_typed_values), T(test_paging),       T(test_limits),
        T(test_page_bytes), T(test_readability),  T(test_bad_requests),
    };
#undef T
    return cmocka_run_group_tests_name("history", tests, group_setup, group_teardown);
}
