/* Compact pages (proto/page_compact.h): a page made compact, sent (packed,
 * unpacked) and expanded is byte for byte the ordinary page, for every value
 * kind, deleted records, empty pages, many types, unicode; what the compact
 * form cannot carry exactly is refused (UNFIT); and hostile compact pages —
 * indexes out of range, short UUIDs, huge tables, duplicate names — are
 * refused with a typed error, without expanding anything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_fail.h"
#include "page_compact.h"

#define MAXR 80
#define MAXF 12
#define MAXT 4

/* An ordinary page built in place; every string is a literal or in text. */
typedef struct {
    ns_envelope env;
    Napsync__V1__ChangePage page;
    Napsync__V1__Record rec[MAXR];
    Napsync__V1__Record *recp[MAXR];
    Napsync__V1__FieldSet fs[MAXR];
    Napsync__V1__Field f[MAXR][MAXF];
    Napsync__V1__Field *fp[MAXR][MAXF];
    Napsync__V1__Value v[MAXR][MAXF];
    char *tenants[MAXT];
    char text[MAXR][40];
} pagebuf;

static const char *const T1 = "0b7e3c55-1d2f-4a6b-8c9d-0e1f2a3b4c5d";
static const char *const T2 = "1c8f4d66-2e3a-4b7c-9d0e-1f2a3b4c5d6e";
static const char *const DIRECTORY = "d1ec7000-0000-4000-8000-000000000000";

static pagebuf *pb_new(void)
{
    pagebuf *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    napsync__v1__change_page__init(&p->page);
    p->page.next_cursor = "v1.5b0a3c1e-0000-4000-8000-000000000001.42";
    p->page.more = 1;
    p->tenants[0] = (char *)T1;
    p->tenants[1] = (char *)T2;
    p->page.tenant_ids = p->tenants;
    p->page.n_tenant_ids = 2;
    p->page.records = p->recp;
    napsync__v1__envelope__init(&p->env);
    p->env.request_id = 7;
    p->env.body_case = NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE;
    p->env.change_page = &p->page;
    return p;
}

/* Adds a record; its id is made from i. */
static size_t pb_rec(pagebuf *p, const char *type, const char *tenant, const char *by,
                     const char *at, int deleted)
{
    size_t i = p->page.n_records++;
    assert_true(i < MAXR);
    Napsync__V1__Record *r = &p->rec[i];
    napsync__v1__record__init(r);
    snprintf(p->text[i], sizeof(p->text[i]), "%08zx-aaaa-4bbb-8ccc-%012zx", i * 7919, i);
    r->entity_type = (char *)type;
    r->id = p->text[i];
    r->version = 1 + i;
    r->deleted = deleted;
    r->tenant_id = (char *)tenant;
    r->changed_by = (char *)by;
    r->changed_at = (char *)at;
    napsync__v1__field_set__init(&p->fs[i]);
    p->fs[i].fields = p->fp[i];
    r->fields = &p->fs[i];
    p->recp[i] = r;
    return i;
}

/* Adds a field to record i; returns its value to fill in. */
static Napsync__V1__Value *pb_field(pagebuf *p, size_t i, const char *name)
{
    size_t k = p->fs[i].n_fields++;
    assert_true(k < MAXF);
    Napsync__V1__Field *f = &p->f[i][k];
    napsync__v1__field__init(f);
    f->name = (char *)name;
    Napsync__V1__Value *v = &p->v[i][k];
    napsync__v1__value__init(v);
    f->value = v;
    p->fp[i][k] = f;
    return v;
}

static void set_text(Napsync__V1__Value *v, Napsync__V1__Value__KindCase c, const char *s)
{
    v->kind_case = c;
    if (c == NAPSYNC__V1__VALUE__KIND_TEXT_VALUE)
        v->text_value = (char *)s;
    else if (c == NAPSYNC__V1__VALUE__KIND_DATE_VALUE)
        v->date_value = (char *)s;
    else if (c == NAPSYNC__V1__VALUE__KIND_REF_VALUE)
        v->ref_value = (char *)s;
    else
        v->decimal_value = (char *)s;
}

static void set_null(Napsync__V1__Value *v)
{
    v->kind_case = NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
    v->null_value = 1;
}

/* Packs env, or fails the test. */
static uint8_t *pack(const ns_envelope *env, size_t *len)
{
    uint8_t *b = NULL;
    assert_int_equal(ns_envelope_pack(env, &b, len), 0);
    return b;
}

/* The compact form of p, as the receiver unpacks it from the wire. */
static ns_envelope *compact_wire(const pagebuf *p, size_t *len)
{
    ns_page_compact *pc = NULL;
    assert_int_equal(ns_page_compact_make(&p->env, &pc), NS_PAGE_COMPACT_OK);
    uint8_t *b = pack(ns_page_compact_envelope(pc), len);
    ns_page_compact_free(pc);
    ns_envelope *w = ns_envelope_unpack(b, *len);
    free(b);
    assert_non_null(w);
    assert_int_equal(w->body_case, NAPSYNC__V1__ENVELOPE__BODY_COMPACT_PAGE);
    return w;
}

/* Make, send, expand: the very bytes of the ordinary page. Returns the
 * compact form's size. */
static size_t round_trip(const pagebuf *p)
{
    size_t olen, clen, xlen;
    uint8_t *ordinary = pack(&p->env, &olen);
    ns_envelope *w = compact_wire(p, &clen);
    ns_envelope *x = NULL;
    char err[200] = "";
    ns_page_compact_status st = ns_page_compact_expand(w, 1u << 20, &x, err, sizeof(err));
    if (st != NS_PAGE_COMPACT_OK)
        fail_msg("expand: %d %s", st, err);
    uint8_t *back = pack(x, &xlen);
    assert_int_equal(xlen, olen);
    assert_memory_equal(back, ordinary, olen);
    /* The bound is on exactly the expanded size. */
    ns_envelope *y = NULL;
    assert_int_equal(ns_page_compact_expand(w, olen, &y, NULL, 0), NS_PAGE_COMPACT_OK);
    ns_envelope_free(y);
    assert_int_equal(ns_page_compact_expand(w, olen - 1, &y, NULL, 0), NS_PAGE_COMPACT_TOO_LARGE);
    assert_null(y);
    free(back);
    free(ordinary);
    ns_envelope_free(x);
    ns_envelope_free(w);
    return clen;
}

/* Expands a (tampered) compact page and expects st. */
static void expect_refused(ns_envelope *w, ns_page_compact_status want, size_t max)
{
    ns_envelope *x = (ns_envelope *)1;
    char err[200] = "";
    assert_int_equal(ns_page_compact_expand(w, max, &x, err, sizeof(err)), want);
    assert_null(x);
    assert_true(err[0] != '\0');
}

/* ---- round trips --------------------------------------------------------------------- */

static pagebuf *every_kind(void)
{
    pagebuf *p = pb_new();
    size_t i = pb_rec(p, "indicator_report", T1, "Amina Okello", "2025-03-31T23:59:59.999999Z", 0);
    Napsync__V1__Value *v = pb_field(p, i, "approved");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_BOOL_VALUE;
    v->bool_value = 1;
    v = pb_field(p, i, "count");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_INT_VALUE;
    v->int_value = -9007199254740993LL;
    set_text(pb_field(p, i, "evidence"), NAPSYNC__V1__VALUE__KIND_TEXT_VALUE,
             "Registre de l’unité — 女性 🕊");
    set_text(pb_field(p, i, "indicator_id"), NAPSYNC__V1__VALUE__KIND_REF_VALUE,
             "9f1e2d3c-4b5a-4968-8776-655443322110");
    set_null(pb_field(p, i, "note"));
    /* Not the canonical form: stays text, and comes back as it was. */
    set_text(pb_field(p, i, "other_ref"), NAPSYNC__V1__VALUE__KIND_REF_VALUE,
             "9F1E2D3C-4B5A-4968-8776-655443322110");
    set_text(pb_field(p, i, "period_end"), NAPSYNC__V1__VALUE__KIND_DATE_VALUE, "2025-03-31");
    set_text(pb_field(p, i, "period_start"), NAPSYNC__V1__VALUE__KIND_DATE_VALUE, "1000-01-01");
    static char *items[] = {"north", "été", "z"};
    static Napsync__V1__TextSet set = NAPSYNC__V1__TEXT_SET__INIT;
    set.items = items;
    set.n_items = 3;
    v = pb_field(p, i, "tags");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_SET_VALUE;
    v->set_value = &set;
    set_text(pb_field(p, i, "value"), NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE, "-12.5");
    set_text(pb_field(p, i, "wrong_date"), NAPSYNC__V1__VALUE__KIND_DATE_VALUE, "2025-02-30");
    set_text(pb_field(p, i, "zzz_date"), NAPSYNC__V1__VALUE__KIND_DATE_VALUE, "9999-12-31");
    return p;
}

static void test_every_kind(void **state)
{
    (void)state;
    pagebuf *p = every_kind();
    round_trip(p);
    free(p);
}

static void test_deleted_and_directory(void **state)
{
    (void)state;
    pagebuf *p = pb_new();
    /* A tombstone without fields, one with its fields null, and a record
     * whose tenant is not among the listed ones (the directory's). */
    pb_rec(p, "indicator", T1, "ana", "2025-01-01T00:00:00.000000Z", 1);
    size_t i = pb_rec(p, "indicator", T2, "ana", "2024-12-31T23:59:59.000001Z", 1);
    set_null(pb_field(p, i, "code"));
    set_null(pb_field(p, i, "title"));
    i = pb_rec(p, "organisation", DIRECTORY, "", "2026-11-24T12:00:00.123456Z", 0);
    set_text(pb_field(p, i, "name"), NAPSYNC__V1__VALUE__KIND_TEXT_VALUE, "Ministère");
    round_trip(p);
    free(p);
}

static void test_empty_pages(void **state)
{
    (void)state;
    pagebuf *p = pb_new();
    round_trip(p);
    p->page.n_tenant_ids = 0;
    p->page.more = 0;
    p->page.tenant_ids_truncated = 1;
    round_trip(p);
    free(p);
}

static void test_many_types_and_names(void **state)
{
    (void)state;
    static char types[MAXR][24], names[MAXR][24], fields[MAXR][24];
    pagebuf *p = pb_new();
    for (size_t k = 0; k < MAXR; k++) {
        snprintf(types[k], sizeof(types[k]), "типа_%zu", k % 37);
        snprintf(names[k], sizeof(names[k]), "person %zu", k % 11);
        snprintf(fields[k], sizeof(fields[k]), "f%zu", k % 5);
        size_t i = pb_rec(p, types[k], k % 2 ? T1 : T2, names[k], "2025-06-01T10:00:00.000000Z", 0);
        /* The same type with two layouts: two entries of the table. */
        for (size_t f = 0; f <= k % 3; f++)
            set_text(pb_field(p, i, fields[(k + f) % MAXR]), NAPSYNC__V1__VALUE__KIND_TEXT_VALUE,
                     "x");
    }
    round_trip(p);
    free(p);
}

/* A page like the field-link benchmark's: the compact form is much smaller. */
static void test_smaller(void **state)
{
    (void)state;
    static char at[MAXR][32];
    pagebuf *p = pb_new();
    for (size_t k = 0; k < MAXR; k++) {
        snprintf(at[k], sizeof(at[k]), "2026-11-24T09:%02zu:%02zu.%06zuZ", k / 60, k % 60, k * 37);
        size_t i = pb_rec(p, "indicator_report", T1, "Field Officer", at[k], 0);
        set_text(pb_field(p, i, "indicator_id"), NAPSYNC__V1__VALUE__KIND_REF_VALUE, T2);
        set_null(pb_field(p, i, "note"));
        set_text(pb_field(p, i, "period_end"), NAPSYNC__V1__VALUE__KIND_DATE_VALUE, "2025-03-31");
        set_text(pb_field(p, i, "period_start"), NAPSYNC__V1__VALUE__KIND_DATE_VALUE, "2025-01-01");
        set_text(pb_field(p, i, "plan_id"), NAPSYNC__V1__VALUE__KIND_REF_VALUE, T1);
        set_text(pb_field(p, i, "status"), NAPSYNC__V1__VALUE__KIND_TEXT_VALUE, "submitted");
    }
    size_t olen;
    free(pack(&p->env, &olen));
    size_t clen = round_trip(p);
    assert_true(clen * 3 < olen);
    free(p);
}

/* ---- what the compact form does not carry --------------------------------------------- */

static void test_unfit(void **state)
{
    (void)state;
    pagebuf *p = pb_new();
    size_t i = pb_rec(p, "plan", T1, "ana", "2025-01-01T00:00:00.000000Z", 0);
    ns_page_compact *pc = NULL;
    const char *bad_at[] = {"2025-01-01T00:00:00Z", "2025-01-01 00:00:00.000000Z",
                            "0999-12-31T00:00:00.000000Z", "2025-13-01T00:00:00.000000Z",
                            "2025-01-01T24:00:00.000000Z"};
    for (size_t k = 0; k < sizeof(bad_at) / sizeof(bad_at[0]); k++) {
        p->rec[i].changed_at = (char *)bad_at[k];
        assert_int_equal(ns_page_compact_make(&p->env, &pc), NS_PAGE_COMPACT_UNFIT);
        assert_null(pc);
    }
    p->rec[i].changed_at = "2025-01-01T00:00:00.000000Z";
    p->rec[i].id = "0B7E3C55-1D2F-4A6B-8C9D-0E1F2A3B4C5D"; /* not lowercase */
    assert_int_equal(ns_page_compact_make(&p->env, &pc), NS_PAGE_COMPACT_UNFIT);
    p->rec[i].id = p->text[i];
    p->rec[i].tenant_id = "";
    assert_int_equal(ns_page_compact_make(&p->env, &pc), NS_PAGE_COMPACT_UNFIT);
    p->rec[i].tenant_id = (char *)T1;
    p->tenants[1] = "not a uuid";
    assert_int_equal(ns_page_compact_make(&p->env, &pc), NS_PAGE_COMPACT_UNFIT);
    p->tenants[1] = (char *)T2;
    assert_int_equal(ns_page_compact_make(&p->env, &pc), NS_PAGE_COMPACT_OK);
    ns_page_compact_free(pc);
    free(p);
}

/* ---- hostile compact pages ------------------------------------------------------------- */

/* A valid compact page from the wire, to tamper with. */
static ns_envelope *victim(void)
{
    pagebuf *p = every_kind();
    size_t i = pb_rec(p, "indicator_report", T2, "Brian Ochieng", "2025-04-01T00:00:00.000000Z", 0);
    for (size_t k = 0; k < p->fs[0].n_fields; k++) {
        Napsync__V1__Value *v = pb_field(p, i, p->f[0][k].name);
        *v = p->v[0][k];
    }
    size_t len;
    ns_envelope *w = compact_wire(p, &len);
    free(p);
    assert_int_equal(w->compact_page->n_records, 2);
    assert_int_equal(w->compact_page->n_types, 1);
    assert_int_equal(w->compact_page->n_names, 2);
    return w;
}

static Napsync__V1__Record *rec0(ns_envelope *w)
{
    return w->compact_page->records[0];
}

static void test_hostile_indexes(void **state)
{
    (void)state;
    ns_envelope *w = victim();
    rec0(w)->type_index = 1;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    rec0(w)->type_index = 0;
    rec0(w)->tenant_index = 3;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    rec0(w)->tenant_index = 0;
    rec0(w)->changed_by_index = 2;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    rec0(w)->changed_by_index = 0;
    /* One null too many, a position out of range, positions not increasing. */
    uint32_t saved = rec0(w)->null_fields[0];
    rec0(w)->null_fields[0] = 99;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    rec0(w)->null_fields[0] = saved;
    rec0(w)->n_values--;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    rec0(w)->n_values++;
    w->compact_page->tenants_listed = 9;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    w->compact_page->tenants_listed = 2;
    rec0(w)->changed_at_delta = INT64_MAX;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    w->compact_page->records[1]->changed_at_delta = INT64_MIN;
    rec0(w)->changed_at_delta = 0;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    ns_envelope_free(w);
}

static void test_hostile_lengths(void **state)
{
    (void)state;
    ns_envelope *w = victim();
    rec0(w)->id_uuid.len = 15;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    rec0(w)->id_uuid.len = 16;
    w->compact_page->tenant_uuids.len -= 1;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    w->compact_page->tenant_uuids.len += 1;
    Napsync__V1__Value *ref = NULL, *date = NULL;
    for (size_t k = 0; k < rec0(w)->n_values; k++) {
        Napsync__V1__Value *v = rec0(w)->values[k];
        if (v->kind_case == NAPSYNC__V1__VALUE__KIND_REF_UUID)
            ref = v;
        if (v->kind_case == NAPSYNC__V1__VALUE__KIND_DATE_DAYS)
            date = v;
    }
    assert_non_null(ref);
    assert_non_null(date);
    ref->ref_uuid.len = 4;
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    ref->ref_uuid.len = 16;
    int32_t d = date->date_days;
    date->date_days = 2932897; /* 10000-01-01 */
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    date->date_days = d;
    /* The ordinary form mixed in. */
    rec0(w)->deleted = 0;
    char *id = rec0(w)->id;
    rec0(w)->id = "x";
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    rec0(w)->id = id;
    /* Too large once expanded. */
    expect_refused(w, NS_PAGE_COMPACT_TOO_LARGE, 200);
    ns_envelope *x = NULL;
    assert_int_equal(ns_page_compact_expand(w, 1u << 20, &x, NULL, 0), NS_PAGE_COMPACT_OK);
    ns_envelope_free(x);
    ns_envelope_free(w);
}

static void test_hostile_duplicates(void **state)
{
    (void)state;
    ns_envelope *w = victim();
    Napsync__V1__ChangePage *cp = w->compact_page;
    /* Duplicate changed_by names ("Amina Okello" / "Brian Ochieng", cut
     * to the same length). */
    char *a = cp->names[0], *b = cp->names[1];
    char sa = a[5], sb = b[5];
    a[5] = '\0';
    b[5] = '\0';
    memcpy(b, a, 5);
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    a[5] = sa;
    b[5] = sb;
    memcpy(b, "Brian", 5);
    /* A field named twice in its type. */
    char **f = cp->types[0]->fields;
    char s0 = f[0][1], s1 = f[1][1];
    f[0][1] = '\0';
    f[1][1] = '\0';
    f[1][0] = f[0][0];
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    f[0][1] = s0;
    f[1][1] = s1;
    f[1][0] = 'c';
    /* A tenant twice. */
    uint8_t saved[16];
    memcpy(saved, cp->tenant_uuids.data + 16, 16);
    memcpy(cp->tenant_uuids.data + 16, cp->tenant_uuids.data, 16);
    expect_refused(w, NS_PAGE_COMPACT_INVALID, 1u << 20);
    memcpy(cp->tenant_uuids.data + 16, saved, 16);
    ns_envelope *x = NULL;
    assert_int_equal(ns_page_compact_expand(w, 1u << 20, &x, NULL, 0), NS_PAGE_COMPACT_OK);
    ns_envelope_free(x);
    ns_envelope_free(w);
}

/* Tables above the bounds, and a type of many fields used by a record that
 * sends none: refused before anything is expanded. */
static void test_hostile_tables(void **state)
{
    (void)state;
    enum { NTYPES = 4097 };
    Napsync__V1__ChangePage__Type *types = calloc(NTYPES, sizeof(*types));
    Napsync__V1__ChangePage__Type **tp = calloc(NTYPES, sizeof(*tp));
    char **fields = calloc(5000, sizeof(*fields));
    assert_non_null(types);
    assert_non_null(tp);
    assert_non_null(fields);
    for (size_t i = 0; i < NTYPES; i++) {
        napsync__v1__change_page__type__init(&types[i]);
        types[i].name = "t";
        tp[i] = &types[i];
    }
    for (size_t i = 0; i < 5000; i++)
        fields[i] = "f";
    Napsync__V1__ChangePage cp = NAPSYNC__V1__CHANGE_PAGE__INIT;
    cp.types = tp;
    cp.n_types = NTYPES;
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_COMPACT_PAGE;
    e.compact_page = &cp;
    expect_refused(&e, NS_PAGE_COMPACT_INVALID, 1u << 20);
    cp.n_types = 1;
    types[0].fields = fields;
    types[0].n_fields = 5000;
    expect_refused(&e, NS_PAGE_COMPACT_INVALID, 1u << 20);
    types[0].n_fields = 3; /* "f" three times */
    expect_refused(&e, NS_PAGE_COMPACT_INVALID, 1u << 20);
    /* A record with no values for a type of one field. */
    types[0].n_fields = 1;
    uint8_t id[16] = {1};
    char *names[] = {"ana"};
    uint8_t tenant[16] = {2};
    cp.names = names;
    cp.n_names = 1;
    cp.tenant_uuids.data = tenant;
    cp.tenant_uuids.len = 16;
    Napsync__V1__Record r = NAPSYNC__V1__RECORD__INIT;
    Napsync__V1__Record *rp = &r;
    r.id_uuid.data = id;
    r.id_uuid.len = 16;
    r.changed_at_delta = 1;
    cp.records = &rp;
    cp.n_records = 1;
    expect_refused(&e, NS_PAGE_COMPACT_INVALID, 1u << 20);
    uint32_t nul = 0;
    r.null_fields = &nul;
    r.n_null_fields = 1;
    ns_envelope *x = NULL;
    assert_int_equal(ns_page_compact_expand(&e, 1u << 20, &x, NULL, 0), NS_PAGE_COMPACT_OK);
    assert_string_equal(x->change_page->records[0]->changed_at, "1970-01-01T00:00:00.000001Z");
    assert_string_equal(x->change_page->records[0]->id, "01000000-0000-0000-0000-000000000000");
    ns_envelope_free(x);
    free(types);
    free(tp);
    free(fields);
}

/* Every allocation of make and of expand failing in turn: a typed error,
 * nothing leaked, nothing half-built handed out. */
static void test_allocation_failures(void **state)
{
    (void)state;
    pagebuf *p = every_kind();
    size_t len;
    ns_envelope *w = compact_wire(p, &len);
    for (long at = 0;; at++) {
        long live = ns_af_live();
        ns_page_compact *pc = NULL;
        ns_af_arm(at);
        ns_page_compact_status st = ns_page_compact_make(&p->env, &pc);
        bool hit = ns_af_disarm();
        assert_int_equal(st, hit ? NS_PAGE_COMPACT_NOMEM : NS_PAGE_COMPACT_OK);
        ns_page_compact_free(pc);
        assert_int_equal(ns_af_live(), live);
        if (!hit)
            break;
    }
    for (long at = 0;; at++) {
        long live = ns_af_live();
        ns_envelope *x = NULL;
        ns_af_arm(at);
        ns_page_compact_status st = ns_page_compact_expand(w, 1u << 20, &x, NULL, 0);
        bool hit = ns_af_disarm();
        assert_int_equal(st, hit ? NS_PAGE_COMPACT_NOMEM : NS_PAGE_COMPACT_OK);
        assert_true((x != NULL) == !hit);
        ns_envelope_free(x);
        assert_int_equal(ns_af_live(), live);
        if (!hit)
            break;
    }
    ns_envelope_free(w);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind),
        cmocka_unit_test(test_deleted_and_directory),
        cmocka_unit_test(test_empty_pages),
        cmocka_unit_test(test_many_types_and_names),
        cmocka_unit_test(test_smaller),
        cmocka_unit_test(test_unfit),
        cmocka_unit_test(test_hostile_indexes),
        cmocka_unit_test(test_hostile_lengths),
        cmocka_unit_test(test_hostile_duplicates),
        cmocka_unit_test(test_hostile_tables),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
