/* Three-way merge: daemon/merge.h. One test per case of design §5 and of the
 * rules in merge.h, a seeded property test over random concurrent pairs of
 * mutations (every field merged, or conflicted keeping the first committed
 * value; the result deterministic), and allocation failure at every
 * allocation of a merge: the allocator is wrapped at link time
 * (alloc_fail.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_fail.h"
#include "merge.h"

/* ---- schema of the test records ----------------------------------------------------- */

static const ns_field_type schema_types[] = {
    {NS_KIND_REF, true, 0, 0},      /* "owner" */
    {NS_KIND_INT, true, 0, 0},      /* "count" */
    {NS_KIND_BOOL, true, 0, 0},     /* "done" */
    {NS_KIND_DATE, true, 0, 0},     /* "due" */
    {NS_KIND_TEXT, true, 0, 0},     /* "status" */
    {NS_KIND_TEXT, true, 0, 0},     /* "summary" */
    {NS_KIND_TEXT_SET, true, 0, 8}, /* "tags" */
    {NS_KIND_TEXT, true, 0, 0},     /* "title" */
    {NS_KIND_DECIMAL, true, 0, 0},  /* "value" */
};
static const char *const schema_names[] = {"owner",   "count", "done",  "due",  "status",
                                           "summary", "tags",  "title", "value"};
#define SCHEMA_N (sizeof(schema_names) / sizeof(schema_names[0]))

static const ns_field_type *schema_type(const char *field)
{
    for (size_t i = 0; i < SCHEMA_N; i++) {
        if (strcmp(schema_names[i], field) == 0)
            return &schema_types[i];
    }
    return NULL;
}

static int type_calls;

static const ns_field_type *type_of(const char *field, void *ud)
{
    (void)ud;
    type_calls++;
    return schema_type(field);
}

/* ---- building and reading records ---------------------------------------------------- */

/* Sets one field from "name=text" (parsed by its schema kind), or "name"
 * alone for null. */
static void fs_put(ns_fieldset *fs, const char *spec)
{
    char name[32];
    const char *eq = strchr(spec, '=');
    size_t len = eq ? (size_t)(eq - spec) : strlen(spec);
    assert_true(len < sizeof(name));
    memcpy(name, spec, len);
    name[len] = '\0';
    const ns_field_type *t = schema_type(name);
    if (t == NULL)
        fail_msg("no field %s in the test schema", name);
    ns_value v;
    char err[128] = "";
    if (ns_value_parse(t, eq ? eq + 1 : NULL, &v, err, sizeof(err)) != NS_VALUE_OK)
        fail_msg("bad test value %s: %s", spec, err);
    assert_int_equal(ns_fieldset_set(fs, name, &v), 0);
    ns_value_free(&v);
}

/* A field set from specs: FS("title=T", "summary"). */
static ns_fieldset fs_from(const char *const *specs)
{
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    for (; *specs != NULL; specs++)
        fs_put(&fs, *specs);
    return fs;
}
#define FS(...) fs_from((const char *const[]){__VA_ARGS__, NULL})

/* A growable string, for dumps that are compared byte for byte. */
typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(need >= 0);
    if (b->len + (size_t)need + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)need;
        char *s = realloc(b->s, cap);
        assert_non_null(s);
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
}

/* A value as "kind:text", or "NULL": a null text differs from the text "null". */
static void sb_value(sbuf *b, const ns_value *v)
{
    if (v->is_null) {
        sb_add(b, "NULL");
        return;
    }
    char *s = ns_value_format(v);
    assert_non_null(s);
    sb_add(b, "%s:'%s'", ns_kind_name(v->kind), s);
    free(s);
}

static void sb_fields(sbuf *b, const ns_fieldset *fs)
{
    sb_add(b, "{");
    for (size_t i = 0; i < fs->n; i++) {
        sb_add(b, "%s%s=", i ? " " : "", fs->names[i]);
        sb_value(b, &fs->values[i]);
    }
    sb_add(b, "}");
}

/* Everything a result holds, in a fixed order. Caller frees. */
static char *dump_result(const ns_merge_result *r)
{
    sbuf b = {0};
    sb_add(&b, "outcome=%d changed=%d deleted=%d fields=", (int)r->outcome, r->changed, r->deleted);
    sb_fields(&b, &r->fields);
    for (size_t i = 0; i < r->nconflicts; i++) {
        const ns_merge_conflict *c = &r->conflicts[i];
        sb_add(&b, " conflict[%s base=", c->field ? c->field : "(record)");
        sb_value(&b, &c->base);
        sb_add(&b, " kept=");
        sb_value(&b, &c->kept);
        sb_add(&b, " other=");
        sb_value(&b, &c->other);
        sb_add(&b, " kept_deleted=%d other_deleted=%d other_fields=", c->kept_deleted,
               c->other_deleted);
        sb_fields(&b, &c->other_fields);
        sb_add(&b, "]");
    }
    return b.s;
}

static char *dump_fields(const ns_fieldset *fs)
{
    sbuf b = {0};
    sb_fields(&b, fs);
    return b.s;
}

/* The text form of fs[name], "NULL" for null, "absent" when fs lacks it. */
static char *field_text(const ns_fieldset *fs, const char *name)
{
    const ns_value *v = ns_fieldset_get(fs, name);
    if (v == NULL) {
        sbuf b = {0};
        sb_add(&b, "absent");
        return b.s;
    }
    sbuf b = {0};
    sb_value(&b, v);
    return b.s;
}

static void assert_field(const ns_fieldset *fs, const char *name, const char *want)
{
    char *got = field_text(fs, name);
    if (strcmp(got, want) != 0)
        fail_msg("field %s is %s, want %s", name, got, want);
    free(got);
}

static void assert_value_text(const ns_value *v, const char *want)
{
    sbuf b = {0};
    sb_value(&b, v);
    if (strcmp(b.s, want) != 0)
        fail_msg("value is %s, want %s", b.s, want);
    free(b.s);
}

static void assert_fields_equal(const ns_fieldset *a, const ns_fieldset *b)
{
    char *da = dump_fields(a), *db = dump_fields(b);
    if (strcmp(da, db) != 0)
        fail_msg("field sets differ:\n  %s\n  %s", da, db);
    free(da);
    free(db);
}

/* A merge of a stale or current UPDATE/DELETE with the test schema. */
static ns_merge_input input(ns_op op, bool stale, const ns_fieldset *base,
                            const ns_fieldset *current, const ns_fieldset *change)
{
    ns_merge_input in = {
        .op = op,
        .stale = stale,
        .base = base,
        .base_deleted = false,
        .current = current,
        .current_deleted = false,
        .change = change,
        .type_of = type_of,
        .type_ud = NULL,
        .frozen = false,
    };
    return in;
}

static void merge_ok(const ns_merge_input *in, ns_merge_result *r)
{
    assert_int_equal(ns_merge(in, r), 0);
}

/* ---- field sets -------------------------------------------------------------------------------
 */

static void test_fieldset(void **state)
{
    (void)state;
    ns_fieldset fs = FS("title=B", "summary=S", "count=3", "value=1.50");
    assert_int_equal(fs.n, 4);
    assert_string_equal(fs.names[0], "count");
    assert_string_equal(fs.names[1], "summary");
    assert_string_equal(fs.names[2], "title");
    assert_string_equal(fs.names[3], "value");
    assert_field(&fs, "value", "decimal:'1.5'");
    assert_null(ns_fieldset_get(&fs, "tags"));
    assert_null(ns_fieldset_get(&fs, ""));
    assert_null(ns_fieldset_get(&fs, "zzz"));

    fs_put(&fs, "title=C"); /* replaces */
    fs_put(&fs, "summary"); /* null, still present */
    assert_int_equal(fs.n, 4);
    assert_field(&fs, "title", "text:'C'");
    assert_field(&fs, "summary", "NULL");

    ns_fieldset copy;
    assert_int_equal(ns_fieldset_copy(&copy, &fs), 0);
    assert_fields_equal(&fs, &copy);
    ns_fieldset_free(&fs);
    assert_int_equal(fs.n, 0);
    assert_field(&copy, "title", "text:'C'"); /* the copy owns its own memory */
    ns_fieldset_free(&copy);
    ns_fieldset_free(&copy);

    ns_fieldset empty;
    assert_int_equal(ns_fieldset_copy(&empty, NULL), 0);
    assert_int_equal(empty.n, 0);
    assert_null(ns_fieldset_get(NULL, "x"));

    /* Many names in a scrambled order: sorted, each found by binary search. */
    ns_fieldset big;
    ns_fieldset_init(&big);
    ns_value v;
    ns_value_init_null(&v, NS_KIND_INT);
    v.is_null = false;
    for (unsigned i = 0; i < 97; i++) {
        char name[16];
        unsigned k = (i * 37u) % 97u;
        snprintf(name, sizeof(name), "f%03u", k);
        v.u.i = k;
        assert_int_equal(ns_fieldset_set(&big, name, &v), 0);
    }
    assert_int_equal(big.n, 97);
    for (size_t i = 1; i < big.n; i++)
        assert_true(strcmp(big.names[i - 1], big.names[i]) < 0);
    for (unsigned k = 0; k < 97; k++) {
        char name[16];
        snprintf(name, sizeof(name), "f%03u", k);
        const ns_value *got = ns_fieldset_get(&big, name);
        assert_non_null(got);
        assert_int_equal(got->u.i, k);
    }
    ns_fieldset_free(&big);
}

/* ---- not stale ----------------------------------------------------------------------------- */

static void test_current_update_applies(void **state)
{
    (void)state;
    ns_fieldset cur = FS("title=T", "summary=S", "count=1");
    ns_fieldset change = FS("title=T2", "tags=b,a");
    ns_merge_input in = input(NS_OP_UPDATE, false, NULL, &cur, &change);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_APPLIED);
    assert_true(r.changed);
    assert_false(r.deleted);
    assert_int_equal(r.nconflicts, 0);
    assert_field(&r.fields, "title", "text:'T2'");
    assert_field(&r.fields, "tags", "text set:'a,b'");
    assert_field(&r.fields, "summary", "text:'S'");
    assert_field(&r.fields, "count", "integer:'1'");
    ns_merge_result_free(&r);

    /* The same values again: applied, but nothing to version. */
    ns_fieldset same = FS("title=T", "summary"); /* summary: S -> null */
    in.change = &same;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_APPLIED);
    assert_true(r.changed);
    ns_merge_result_free(&r);
    ns_fieldset_free(&same);
    same = FS("title=T", "value"); /* value: absent reads as null */
    in.change = &same;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_APPLIED);
    assert_false(r.changed);
    assert_field(&r.fields, "value", "NULL");
    ns_merge_result_free(&r);

    /* Frozen holds back merges, not an edit made on the current version. */
    in.change = &change;
    in.frozen = true;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_APPLIED);
    assert_field(&r.fields, "title", "text:'T2'");
    ns_merge_result_free(&r);

    ns_fieldset_free(&same);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
}

static void test_current_delete_applies(void **state)
{
    (void)state;
    ns_fieldset cur = FS("title=T");
    ns_fieldset none;
    ns_fieldset_init(&none);
    ns_merge_input in = input(NS_OP_DELETE, false, NULL, &cur, &none);
    in.frozen = true;
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_APPLIED);
    assert_true(r.deleted);
    assert_true(r.changed);
    assert_int_equal(r.nconflicts, 0);
    assert_field(&r.fields, "title", "text:'T'"); /* the tombstone keeps its last state */
    ns_merge_result_free(&r);
    ns_fieldset_free(&cur);
}

static void test_create(void **state)
{
    (void)state;
    ns_fieldset change = FS("title=New", "tags=x");
    ns_merge_input in = input(NS_OP_CREATE, false, NULL, NULL, &change);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_APPLIED);
    assert_true(r.changed);
    assert_false(r.deleted);
    assert_fields_equal(&r.fields, &change);
    ns_merge_result_free(&r);
    ns_fieldset_free(&change);
}

/* ---- stale updates ------------------------------------------------------------------------- */

static void test_stale_one_side_each(void **state)
{
    (void)state;
    /* A changed summary and count (committed); B, from the same base,
     * changes title and sends count unchanged in its mask. */
    ns_fieldset base = FS("title=T0", "summary=S0", "count=1");
    ns_fieldset cur = FS("title=T0", "summary=SA", "count=2");
    ns_fieldset change = FS("title=TB", "count=1");
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_MERGED);
    assert_true(r.changed);
    assert_int_equal(r.nconflicts, 0);
    assert_field(&r.fields, "title", "text:'TB'");
    assert_field(&r.fields, "summary", "text:'SA'");
    assert_field(&r.fields, "count", "integer:'2'"); /* B did not change count */
    ns_merge_result_free(&r);

    /* A stale mutation that changes nothing merges with nothing to do. */
    ns_fieldset noop = FS("title=T0");
    in.change = &noop;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_MERGED);
    assert_false(r.changed);
    assert_fields_equal(&r.fields, &cur);
    ns_merge_result_free(&r);

    ns_fieldset_free(&noop);
    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
}

static void test_stale_same_change(void **state)
{
    (void)state;
    ns_fieldset base = FS("title=T0", "value=1");
    ns_fieldset cur = FS("title=Same", "value=2.50");
    ns_fieldset change = FS("title=Same", "value=2.5");
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_MERGED);
    assert_false(r.changed);
    assert_int_equal(r.nconflicts, 0);
    assert_fields_equal(&r.fields, &cur);
    ns_merge_result_free(&r);
    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
}

static void test_stale_same_field_differs(void **state)
{
    (void)state;
    ns_fieldset base = FS("value=10", "title=T");
    ns_fieldset cur = FS("value=12", "title=T");
    ns_fieldset change = FS("value=11");
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    assert_false(r.changed);
    assert_false(r.deleted);
    assert_fields_equal(&r.fields, &cur);
    assert_int_equal(r.nconflicts, 1);
    const ns_merge_conflict *c = &r.conflicts[0];
    assert_string_equal(c->field, "value");
    assert_value_text(&c->base, "decimal:'10'");
    assert_value_text(&c->kept, "decimal:'12'");
    assert_value_text(&c->other, "decimal:'11'");
    assert_false(c->kept_deleted);
    assert_false(c->other_deleted);
    assert_int_equal(c->other_fields.n, 0);
    ns_merge_result_free(&r);
    assert_int_equal(r.nconflicts, 0);
    assert_null(r.conflicts);
    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
}

/* The scenario of issue 4: A changes title; B changes title and summary.
 * A commits first; B's push merges summary and conflicts on title. */
static void test_issue_scenario(void **state)
{
    (void)state;
    ns_fieldset base = FS("title=National Action Plan 2024", "summary=Draft", "status=draft");
    ns_fieldset a = FS("title=NAP 2024-2028");
    ns_fieldset b = FS("title=WPS NAP 2024", "summary=Adopted by cabinet");

    ns_merge_input in = input(NS_OP_UPDATE, false, &base, &base, &a);
    ns_merge_result ra;
    merge_ok(&in, &ra);
    assert_int_equal(ra.outcome, NS_MERGE_APPLIED);

    in = input(NS_OP_UPDATE, true, &base, &ra.fields, &b);
    ns_merge_result rb;
    merge_ok(&in, &rb);
    assert_int_equal(rb.outcome, NS_MERGE_CONFLICT);
    assert_true(rb.changed);
    assert_field(&rb.fields, "title", "text:'NAP 2024-2028'");
    assert_field(&rb.fields, "summary", "text:'Adopted by cabinet'");
    assert_field(&rb.fields, "status", "text:'draft'");
    assert_int_equal(rb.nconflicts, 1);
    assert_string_equal(rb.conflicts[0].field, "title");
    assert_value_text(&rb.conflicts[0].base, "text:'National Action Plan 2024'");
    assert_value_text(&rb.conflicts[0].kept, "text:'NAP 2024-2028'");
    assert_value_text(&rb.conflicts[0].other, "text:'WPS NAP 2024'");

    ns_merge_result_free(&ra);
    ns_merge_result_free(&rb);
    ns_fieldset_free(&base);
    ns_fieldset_free(&a);
    ns_fieldset_free(&b);
}

static void test_several_fields_some_conflict(void **state)
{
    (void)state;
    ns_fieldset base = FS("title=T", "summary=S", "count=1", "due=2024-01-31", "done=false");
    ns_fieldset cur = FS("title=TA", "summary=S", "count=5", "due=2024-01-31", "done=true");
    ns_fieldset change = FS("title=TB", "summary=SB", "count=7", "due=2024-02-29", "done=true");
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    assert_true(r.changed);
    assert_field(&r.fields, "title", "text:'TA'");
    assert_field(&r.fields, "count", "integer:'5'");
    assert_field(&r.fields, "summary", "text:'SB'");
    assert_field(&r.fields, "due", "date:'2024-02-29'");
    assert_field(&r.fields, "done", "bool:'true'");
    /* In field-name order. */
    assert_int_equal(r.nconflicts, 2);
    assert_string_equal(r.conflicts[0].field, "count");
    assert_value_text(&r.conflicts[0].kept, "integer:'5'");
    assert_value_text(&r.conflicts[0].other, "integer:'7'");
    assert_value_text(&r.conflicts[0].base, "integer:'1'");
    assert_string_equal(r.conflicts[1].field, "title");
    ns_merge_result_free(&r);
    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
}

/* ---- sets ------------------------------------------------------------------------------------ */

/* Merges a stale tag change; returns the result's tags as text. */
static char *merge_tags(const char *base_tags, const char *cur_tags, const char *mine_tags,
                        ns_merge_outcome want, bool want_changed)
{
    ns_fieldset base = FS("title=T", base_tags);
    ns_fieldset cur = FS("title=T", cur_tags);
    ns_fieldset change = FS(mine_tags);
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    ns_merge_result r;
    merge_ok(&in, &r);
    if (r.outcome != want || r.changed != want_changed) {
        char *d = dump_result(&r);
        fail_msg("tags %s / %s / %s: %s", base_tags, cur_tags, mine_tags, d);
    }
    char *t = field_text(&r.fields, "tags");
    ns_merge_result_free(&r);
    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
    return t;
}

static void expect_tags(const char *base_tags, const char *cur_tags, const char *mine_tags,
                        ns_merge_outcome want, bool want_changed, const char *want_tags)
{
    char *t = merge_tags(base_tags, cur_tags, mine_tags, want, want_changed);
    if (strcmp(t, want_tags) != 0)
        fail_msg("tags %s / %s / %s: got %s, want %s", base_tags, cur_tags, mine_tags, t,
                 want_tags);
    free(t);
}

static void test_set_merge(void **state)
{
    (void)state;
    /* A removed b, added d; B removed c, added e: all four kept. */
    expect_tags("tags=a,b,c", "tags=a,c,d", "tags=a,b,e", NS_MERGE_MERGED, true,
                "text set:'a,d,e'");
    /* Both added x; B also added y. */
    expect_tags("tags=a", "tags=a,x", "tags=a,x,y", NS_MERGE_MERGED, true, "text set:'a,x,y'");
    /* Both removed b; B also added c. */
    expect_tags("tags=a,b", "tags=a", "tags=a,c", NS_MERGE_MERGED, true, "text set:'a,c'");
    /* A removed b, B removed everything it saw: nothing is left. */
    expect_tags("tags=a,b", "tags=a", "tags=", NS_MERGE_MERGED, true, "text set:''");
    /* B removed c, which A had kept, and A removed b, which B kept: a stays. */
    expect_tags("tags=a,b,c", "tags=a,c", "tags=a,b", NS_MERGE_MERGED, true, "text set:'a'");
    /* B's removals were already made by A: the merge leaves current as is. */
    expect_tags("tags=a,b,c", "tags=a", "tags=a,b", NS_MERGE_MERGED, false, "text set:'a'");
    /* A null (or absent) set reads as empty. */
    expect_tags("tags", "tags=x", "tags=y", NS_MERGE_MERGED, true, "text set:'x,y'");
    expect_tags("title=T", "tags=x", "tags=y", NS_MERGE_MERGED, true, "text set:'x,y'");
    expect_tags("tags=x,y", "tags", "tags=x,y,z", NS_MERGE_MERGED, true, "text set:'z'");
    /* An empty result where current is null stays null: no invented value. */
    expect_tags("tags=x,y", "tags", "tags=x", NS_MERGE_MERGED, false, "NULL");
    /* More items than the field allows (8) cannot be merged: conflict. */
    expect_tags("tags=", "tags=a1,a2,a3,a4,a5", "tags=b1,b2,b3,b4", NS_MERGE_CONFLICT, false,
                "text set:'a1,a2,a3,a4,a5'");
    expect_tags("tags=", "tags=a1,a2,a3,a4", "tags=b1,b2,b3,b4", NS_MERGE_MERGED, true,
                "text set:'a1,a2,a3,a4,b1,b2,b3,b4'");
}

static void test_set_without_type_of(void **state)
{
    (void)state;
    ns_fieldset base = FS("tags=a,b");
    ns_fieldset cur = FS("tags=a,b,c");
    ns_fieldset change = FS("tags=a");
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    in.type_of = NULL; /* the value's kind decides */
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_MERGED);
    assert_field(&r.fields, "tags", "text set:'a,c'");
    ns_merge_result_free(&r);

    /* Given type_of, the schema decides. */
    type_calls = 0;
    in.type_of = type_of;
    merge_ok(&in, &r);
    assert_true(type_calls > 0);
    ns_merge_result_free(&r);

    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
}

/* ---- edit versus delete, delete versus delete ----------------------------------------------- */

static void test_update_on_deleted(void **state)
{
    (void)state;
    ns_fieldset base = FS("title=T", "summary=S");
    ns_fieldset change = FS("title=T2");
    for (int stale = 1; stale >= 0; stale--) {
        ns_merge_input in = input(NS_OP_UPDATE, stale, &base, &base, &change);
        in.current_deleted = true;
        ns_merge_result r;
        merge_ok(&in, &r);
        assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
        assert_true(r.deleted); /* not resurrected */
        assert_false(r.changed);
        assert_fields_equal(&r.fields, &base);
        assert_int_equal(r.nconflicts, 1);
        const ns_merge_conflict *c = &r.conflicts[0];
        assert_null(c->field);
        assert_true(c->kept_deleted);
        assert_false(c->other_deleted);
        assert_fields_equal(&c->other_fields, &change);
        assert_true(c->base.is_null && c->kept.is_null && c->other.is_null);
        ns_merge_result_free(&r);
    }
    ns_fieldset_free(&base);
    ns_fieldset_free(&change);
}

static void test_stale_delete_of_changed(void **state)
{
    (void)state;
    ns_fieldset base = FS("title=T", "tags=a");
    ns_fieldset cur = FS("title=T", "tags=a,b");
    ns_fieldset none;
    ns_fieldset_init(&none);
    ns_merge_input in = input(NS_OP_DELETE, true, &base, &cur, &none);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    assert_false(r.deleted);
    assert_false(r.changed);
    assert_fields_equal(&r.fields, &cur);
    assert_int_equal(r.nconflicts, 1);
    assert_null(r.conflicts[0].field);
    assert_false(r.conflicts[0].kept_deleted);
    assert_true(r.conflicts[0].other_deleted);
    assert_int_equal(r.conflicts[0].other_fields.n, 0);
    ns_merge_result_free(&r);

    /* A field only current has counts as a change too. */
    ns_fieldset cur2 = FS("title=T", "tags=a", "summary=new");
    in.current = &cur2;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    ns_merge_result_free(&r);
    ns_fieldset_free(&cur2);

    /* ... and a field only base has. */
    ns_fieldset cur3 = FS("title=T");
    in.current = &cur3;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    ns_merge_result_free(&r);
    ns_fieldset_free(&cur3);

    /* Restored since the delete's base (base was a tombstone). */
    in.current = &base;
    in.base_deleted = true;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    assert_false(r.deleted);
    ns_merge_result_free(&r);

    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
}

static void test_stale_delete_of_unchanged(void **state)
{
    (void)state;
    /* Only other records changed since base; an explicit null in current
     * equals a field base lacks. */
    ns_fieldset base = FS("title=T", "tags=a");
    ns_fieldset cur = FS("title=T", "tags=a", "summary");
    ns_fieldset none;
    ns_fieldset_init(&none);
    ns_merge_input in = input(NS_OP_DELETE, true, &base, &cur, &none);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_MERGED);
    assert_true(r.deleted);
    assert_true(r.changed);
    assert_int_equal(r.nconflicts, 0);
    ns_merge_result_free(&r);
    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
}

static void test_delete_of_deleted(void **state)
{
    (void)state;
    ns_fieldset base = FS("title=T");
    ns_fieldset cur = FS("title=Changed");
    for (int stale = 1; stale >= 0; stale--) {
        ns_merge_input in = input(NS_OP_DELETE, stale, &base, &cur, NULL);
        in.current_deleted = true;
        ns_merge_result r;
        merge_ok(&in, &r);
        assert_int_equal(r.outcome, stale ? NS_MERGE_MERGED : NS_MERGE_APPLIED);
        assert_true(r.deleted);
        assert_false(r.changed);
        assert_int_equal(r.nconflicts, 0);
        assert_fields_equal(&r.fields, &cur);
        ns_merge_result_free(&r);
    }
    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
}

/* ---- frozen (an approved indicator report) ----------------------------------------------------
 */

static void test_frozen(void **state)
{
    (void)state;
    ns_fieldset base =
        FS("value=10", "summary=N", "status=submitted", "due=2024-06-30", "tags=sex:f");
    ns_fieldset cur =
        FS("value=12", "summary=N", "status=approved", "due=2024-06-30", "tags=sex:f");
    /* value: both changed; summary: only the mutation changed it (would
     * merge if not frozen); status: same as current; due: unchanged by the
     * mutation; tags: a set change that would merge. */
    ns_fieldset change =
        FS("value=11", "summary=N2", "status=approved", "due=2024-06-30", "tags=sex:f,age:15-24");
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    in.frozen = true;
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    assert_false(r.changed);
    assert_fields_equal(&r.fields, &cur);
    assert_int_equal(r.nconflicts, 3);
    assert_string_equal(r.conflicts[0].field, "summary");
    assert_value_text(&r.conflicts[0].kept, "text:'N'");
    assert_value_text(&r.conflicts[0].other, "text:'N2'");
    assert_string_equal(r.conflicts[1].field, "tags");
    assert_string_equal(r.conflicts[2].field, "value");
    assert_value_text(&r.conflicts[2].base, "decimal:'10'");
    assert_value_text(&r.conflicts[2].kept, "decimal:'12'");
    assert_value_text(&r.conflicts[2].other, "decimal:'11'");
    ns_merge_result_free(&r);

    /* Equal fields only: nothing to hold back. */
    ns_fieldset equal = FS("value=12.0", "status=approved", "due=2024-06-30");
    in.change = &equal;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_MERGED);
    assert_false(r.changed);
    assert_int_equal(r.nconflicts, 0);
    ns_merge_result_free(&r);
    ns_fieldset_free(&equal);

    /* Deleting a frozen record with a stale base is a conflict, even unchanged. */
    in = input(NS_OP_DELETE, true, &cur, &cur, NULL);
    in.frozen = true;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    assert_false(r.deleted);
    assert_true(r.conflicts[0].other_deleted);
    ns_merge_result_free(&r);

    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
}

/* ---- absent fields
 * -------------------------------------------------------------------------------- */

static void test_absent_reads_as_null(void **state)
{
    (void)state;
    /* summary absent on both sides: B's value is a one-side change. */
    ns_fieldset base = FS("title=T");
    ns_fieldset cur = FS("title=TA", "count"); /* count: explicit null */
    ns_fieldset change = FS("summary=S", "count=4", "value");
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    ns_merge_result r;
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_MERGED);
    assert_field(&r.fields, "summary", "text:'S'");
    assert_field(&r.fields, "count", "integer:'4'");
    assert_field(&r.fields, "value", "absent"); /* null == absent in base: unchanged */
    ns_merge_result_free(&r);

    /* A removed summary (absent now), B changed it: conflict keeping null. */
    ns_fieldset base2 = FS("summary=S");
    ns_fieldset cur2 = FS("title=T");
    ns_fieldset change2 = FS("summary=S2");
    in = input(NS_OP_UPDATE, true, &base2, &cur2, &change2);
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_CONFLICT);
    assert_value_text(&r.conflicts[0].base, "text:'S'");
    assert_value_text(&r.conflicts[0].kept, "NULL");
    assert_value_text(&r.conflicts[0].other, "text:'S2'");
    assert_field(&r.fields, "summary", "absent");
    ns_merge_result_free(&r);

    /* NULL base and current read as empty records. */
    in = input(NS_OP_UPDATE, true, NULL, NULL, &change2);
    merge_ok(&in, &r);
    assert_int_equal(r.outcome, NS_MERGE_MERGED);
    assert_field(&r.fields, "summary", "text:'S2'");
    ns_merge_result_free(&r);

    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
    ns_fieldset_free(&base2);
    ns_fieldset_free(&cur2);
    ns_fieldset_free(&change2);
}

/* ---- property: random concurrent pairs from a common base ------------------------------------ */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* splitmix64: the same sequence on every platform and libc. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rng_below(unsigned n)
{
    return (unsigned)(rng_next() % n);
}

static const char *const tag_pool[] = {"p", "q", "r", "s"};

/* A small random value for a field, so that both sides often pick the same. */
static void random_put(ns_fieldset *fs, const char *name)
{
    const ns_field_type *t = schema_type(name);
    char spec[160];
    if (rng_below(6) == 0) {
        snprintf(spec, sizeof(spec), "%s", name);
        fs_put(fs, spec);
        return;
    }
    static const char *const texts[] = {"a", "b", "null"};
    static const char *const decimals[] = {"0", "1.50", "2"};
    static const char *const dates[] = {"2024-02-29", "2025-01-01"};
    static const char *const refs[] = {"00000000-0000-0000-0000-00000000000A",
                                       "00000000-0000-0000-0000-00000000000b"};
    switch (t->kind) {
    case NS_KIND_TEXT:
        snprintf(spec, sizeof(spec), "%s=%s", name, texts[rng_below(3)]);
        break;
    case NS_KIND_INT:
        snprintf(spec, sizeof(spec), "%s=%u", name, rng_below(3));
        break;
    case NS_KIND_DECIMAL:
        snprintf(spec, sizeof(spec), "%s=%s", name, decimals[rng_below(3)]);
        break;
    case NS_KIND_DATE:
        snprintf(spec, sizeof(spec), "%s=%s", name, dates[rng_below(2)]);
        break;
    case NS_KIND_REF:
        snprintf(spec, sizeof(spec), "%s=%s", name, refs[rng_below(2)]);
        break;
    case NS_KIND_BOOL:
        snprintf(spec, sizeof(spec), "%s=%s", name, rng_below(2) ? "true" : "false");
        break;
    case NS_KIND_TEXT_SET: {
        unsigned mask = rng_below(16);
        size_t o = (size_t)snprintf(spec, sizeof(spec), "%s=", name);
        for (unsigned i = 0; i < 4; i++) {
            if (mask & (1u << i))
                o += (size_t)snprintf(spec + o, sizeof(spec) - o, "%s,", tag_pool[i]);
        }
        break;
    }
    }
    fs_put(fs, spec);
}

static ns_fieldset random_fields(unsigned percent)
{
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    for (size_t i = 0; i < SCHEMA_N; i++) {
        if (rng_below(100) < percent)
            random_put(&fs, schema_names[i]);
    }
    return fs;
}

static const ns_value null_value = {.kind = NS_KIND_BOOL, .is_null = true};

static const ns_value *get_or_null(const ns_fieldset *fs, const char *name)
{
    const ns_value *v = ns_fieldset_get(fs, name);
    return v ? v : &null_value;
}

/* Tags as a bit mask over tag_pool; null reads as empty. */
static unsigned tag_mask(const ns_value *v)
{
    unsigned m = 0;
    if (v->is_null)
        return 0;
    for (size_t i = 0; i < v->u.set.n; i++) {
        for (unsigned k = 0; k < 4; k++) {
            if (strcmp(v->u.set.items[i], tag_pool[k]) == 0)
                m |= 1u << k;
        }
    }
    return m;
}

static bool fields_differ(const ns_fieldset *a, const ns_fieldset *b)
{
    for (size_t i = 0; i < SCHEMA_N; i++) {
        if (!ns_value_equal(get_or_null(a, schema_names[i]), get_or_null(b, schema_names[i])))
            return true;
    }
    return false;
}

typedef struct {
    ns_op op;
    ns_fieldset fields;
} mutation;

static mutation random_mutation(void)
{
    mutation m;
    m.op = rng_below(5) == 0 ? NS_OP_DELETE : NS_OP_UPDATE;
    m.fields = m.op == NS_OP_DELETE ? random_fields(0) : random_fields(45);
    return m;
}

/* Checks B's stale merge on top of A against an oracle written from the
 * rules, not from merge.c. */
static void check_pair(unsigned iter, const ns_fieldset *base, const mutation *a,
                       const ns_merge_result *ra, const mutation *b, const ns_merge_result *rb,
                       bool frozen)
{
    char *d = dump_result(rb);
#define PROP_FAIL(...)                                                                             \
    do {                                                                                           \
        char *db_ = dump_fields(base), *da_ = dump_fields(&a->fields),                             \
             *dbb_ = dump_fields(&b->fields);                                                      \
        print_error("iteration %u (frozen %d): base %s\n A(op %d) %s\n B(op %d) %s\n result %s\n", \
                    iter, frozen, db_, a->op, da_, b->op, dbb_, d);                                \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)

    if (b->op == NS_OP_DELETE) {
        if (a->op == NS_OP_DELETE) {
            if (rb->outcome != NS_MERGE_MERGED || !rb->deleted || rb->changed || rb->nconflicts)
                PROP_FAIL("delete after delete must merge with nothing to do");
        } else if (frozen || fields_differ(base, &ra->fields)) {
            if (rb->outcome != NS_MERGE_CONFLICT || rb->deleted || rb->changed ||
                rb->nconflicts != 1 || rb->conflicts[0].field != NULL ||
                !rb->conflicts[0].other_deleted)
                PROP_FAIL("delete of a changed record must be a record conflict");
        } else if (rb->outcome != NS_MERGE_MERGED || !rb->deleted) {
            PROP_FAIL("delete of an unchanged record must merge");
        }
        free(d);
        return;
    }
    if (a->op == NS_OP_DELETE) {
        if (rb->outcome != NS_MERGE_CONFLICT || !rb->deleted || rb->nconflicts != 1 ||
            rb->conflicts[0].field != NULL || !rb->conflicts[0].kept_deleted)
            PROP_FAIL("edit after delete must be a record conflict");
        char *want = dump_fields(&b->fields), *got = dump_fields(&rb->conflicts[0].other_fields);
        if (strcmp(want, got) != 0)
            PROP_FAIL("the losing edit must be kept whole");
        free(want);
        free(got);
        free(d);
        return;
    }

    size_t want_conflicts = 0;
    for (size_t i = 0; i < SCHEMA_N; i++) {
        const char *f = schema_names[i];
        const ns_value *bv = get_or_null(base, f);
        const ns_value *av = get_or_null(&ra->fields, f); /* A's committed value */
        const ns_value *mv = ns_fieldset_get(&b->fields, f);
        const ns_value *got = get_or_null(&rb->fields, f);
        const ns_merge_conflict *c = NULL;
        for (size_t k = 0; k < rb->nconflicts; k++) {
            if (rb->conflicts[k].field && strcmp(rb->conflicts[k].field, f) == 0)
                c = &rb->conflicts[k];
        }
        /* A's own result: its mask applied to base. */
        const ns_value *amv = ns_fieldset_get(&a->fields, f);
        if (!ns_value_equal(av, amv ? amv : bv))
            PROP_FAIL("A was not applied as sent (field %s)", f);

        bool expect_conflict = false;
        const ns_value *expect = av;
        unsigned expect_tags = 0;
        bool tags_merge = false;
        if (mv == NULL || ns_value_equal(mv, bv)) {
            expect = av;
        } else if (frozen) {
            expect_conflict = !ns_value_equal(mv, av);
        } else if (ns_value_equal(av, bv)) {
            expect = mv;
        } else if (ns_value_equal(av, mv)) {
            expect = av;
        } else if (schema_type(f)->kind == NS_KIND_TEXT_SET) {
            unsigned bm = tag_mask(bv), am = tag_mask(av), mm = tag_mask(mv);
            expect_tags = (am | (mm & ~bm)) & ~(bm & ~mm);
            tags_merge = true;
        } else {
            expect_conflict = true;
        }

        if (expect_conflict) {
            want_conflicts++;
            if (c == NULL)
                PROP_FAIL("field %s changed differently on both sides: no conflict", f);
            if (!ns_value_equal(&c->kept, av) || !ns_value_equal(&c->other, mv) ||
                !ns_value_equal(&c->base, bv))
                PROP_FAIL("conflict on %s must keep A's value and record B's", f);
            if (!ns_value_equal(got, av))
                PROP_FAIL("field %s must keep A's value", f);
        } else if (c != NULL) {
            PROP_FAIL("unexpected conflict on %s", f);
        } else if (tags_merge) {
            if (expect_tags == 0 && av->is_null) {
                if (!got->is_null)
                    PROP_FAIL("empty merge of a null set must stay null");
            } else if (got->is_null || tag_mask(got) != expect_tags ||
                       got->u.set.n != (size_t)__builtin_popcount(expect_tags)) {
                PROP_FAIL("tags must merge as sets (want mask %u)", expect_tags);
            }
        } else if (!ns_value_equal(got, expect)) {
            PROP_FAIL("field %s has the wrong value", f);
        }
    }
    if (rb->nconflicts != want_conflicts)
        PROP_FAIL("%zu conflicts, want %zu", rb->nconflicts, want_conflicts);
    ns_merge_outcome want = want_conflicts ? NS_MERGE_CONFLICT : NS_MERGE_MERGED;
    if (rb->outcome != want || rb->deleted)
        PROP_FAIL("outcome %d, want %d", (int)rb->outcome, (int)want);
    if (rb->changed != fields_differ(&ra->fields, &rb->fields))
        PROP_FAIL("changed must say whether the record differs from A's");
#undef PROP_FAIL
    free(d);
}

/* Runs iterations random pairs from seed; returns every result's dump,
 * concatenated, so two runs can be compared byte for byte. */
static char *run_property(uint64_t seed, unsigned iterations)
{
    rng_state = seed;
    sbuf all = {0};
    for (unsigned iter = 0; iter < iterations; iter++) {
        ns_fieldset base = random_fields(75);
        mutation a = random_mutation(), b = random_mutation();
        bool frozen = rng_below(8) == 0;

        ns_merge_input in = input(a.op, false, &base, &base, &a.fields);
        ns_merge_result ra;
        merge_ok(&in, &ra);
        assert_int_equal(ra.outcome, NS_MERGE_APPLIED);

        in = input(b.op, true, &base, &ra.fields, &b.fields);
        in.current_deleted = ra.deleted;
        in.frozen = frozen;
        ns_merge_result rb, again;
        merge_ok(&in, &rb);
        merge_ok(&in, &again);
        check_pair(iter, &base, &a, &ra, &b, &rb, frozen);

        char *d1 = dump_result(&rb), *d2 = dump_result(&again);
        assert_string_equal(d1, d2);
        sb_add(&all, "%s\n", d1);
        free(d1);
        free(d2);
        ns_merge_result_free(&ra);
        ns_merge_result_free(&rb);
        ns_merge_result_free(&again);
        ns_fieldset_free(&base);
        ns_fieldset_free(&a.fields);
        ns_fieldset_free(&b.fields);
    }
    return all.s;
}

static void test_property_concurrent_pairs(void **state)
{
    (void)state;
    const uint64_t seed = 0x6e617073796e63ull; /* "napsync" */
    const unsigned iterations = 3000;
    char *first = run_property(seed, iterations);
    char *second = run_property(seed, iterations);
    assert_string_equal(first, second);
    /* The generator must reach every interesting case, or the property
     * proves little: conflicts, set merges and record conflicts all occur. */
    assert_non_null(strstr(first, "outcome=2"));
    assert_non_null(strstr(first, "conflict[(record)"));
    assert_non_null(strstr(first, "conflict[title"));
    assert_non_null(strstr(first, "outcome=1 changed=1"));
    free(first);
    free(second);
}

/* ---- allocation failure ------------------------------------------------------------------- */

/* Runs the merge with each allocation failing in turn until one run needs
 * no more: each failure must return -1, leave r empty and leak nothing;
 * the run that succeeds must equal the reference result. */
static void merge_under_failures(const ns_merge_input *in)
{
    ns_merge_result ref;
    merge_ok(in, &ref);
    char *want = dump_result(&ref);
    ns_merge_result_free(&ref);

    long failures = 0;
    for (long at = 0;; at++) {
        long live = ns_af_live();
        ns_merge_result r;
        ns_af_arm(at);
        int rc = ns_merge(in, &r);
        bool hit = ns_af_disarm();
        if (rc != 0) {
            assert_int_equal(rc, -1);
            assert_true(hit);
            assert_int_equal(r.fields.n, 0);
            assert_null(r.fields.names);
            assert_null(r.fields.values);
            assert_null(r.conflicts);
            assert_int_equal(r.nconflicts, 0);
            assert_int_equal(ns_af_live(), live);
            ns_merge_result_free(&r);
            failures++;
            continue;
        }
        char *got = dump_result(&r);
        assert_string_equal(got, want);
        free(got);
        ns_merge_result_free(&r);
        assert_int_equal(ns_af_live(), live);
        if (!hit)
            break;
    }
    assert_true(failures > 3);
    free(want);
}

static void test_allocation_failure_merge(void **state)
{
    (void)state;
    ns_fieldset base = FS("title=T", "summary=S", "tags=a,b,c", "count=1");
    ns_fieldset cur = FS("title=TA", "summary=S", "tags=a,c,d", "count=1");
    ns_fieldset change = FS("title=TB", "summary=SB", "tags=a,b,e", "count=2");

    /* Stale update: a conflict, a one-side merge, a set merge. */
    ns_merge_input in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    merge_under_failures(&in);
    /* Frozen: several conflicts. */
    in.frozen = true;
    merge_under_failures(&in);
    /* Edit versus delete: the edit is copied into the conflict. */
    in = input(NS_OP_UPDATE, true, &base, &cur, &change);
    in.current_deleted = true;
    merge_under_failures(&in);
    /* Not stale; create; delete conflict; delete merge. */
    in = input(NS_OP_UPDATE, false, &base, &cur, &change);
    merge_under_failures(&in);
    in = input(NS_OP_CREATE, false, NULL, NULL, &change);
    merge_under_failures(&in);
    in = input(NS_OP_DELETE, true, &base, &cur, NULL);
    merge_under_failures(&in);
    in = input(NS_OP_DELETE, true, &cur, &cur, NULL);
    merge_under_failures(&in);

    ns_fieldset_free(&base);
    ns_fieldset_free(&cur);
    ns_fieldset_free(&change);
}

static void test_allocation_failure_fieldset(void **state)
{
    (void)state;
    ns_fieldset fs = FS("title=T", "tags=x,y");
    char *before = dump_fields(&fs);
    ns_value v;
    ns_field_type ts = {NS_KIND_TEXT_SET, true, 0, 0};
    assert_int_equal(ns_value_parse(&ts, "m,n,o", &v, NULL, 0), NS_VALUE_OK);

    /* Insert (new name) and replace (existing name): unchanged on failure. */
    const char *names[] = {"summary", "tags"};
    for (size_t k = 0; k < 2; k++) {
        long failures = 0;
        for (long at = 0;; at++) {
            ns_fieldset work;
            assert_int_equal(ns_fieldset_copy(&work, &fs), 0);
            long live = ns_af_live();
            ns_af_arm(at);
            int rc = ns_fieldset_set(&work, names[k], &v);
            bool hit = ns_af_disarm();
            if (rc != 0) {
                assert_int_equal(rc, -1);
                assert_int_equal(ns_af_live(), live);
                char *after = dump_fields(&work);
                assert_string_equal(after, before);
                free(after);
                ns_fieldset_free(&work);
                failures++;
                continue;
            }
            assert_field(&work, names[k], "text set:'m,n,o'");
            ns_fieldset_free(&work);
            if (!hit)
                break;
        }
        assert_true(failures >= 2);
    }

    /* Copy: empty and nothing leaked on failure. */
    long failures = 0;
    for (long at = 0;; at++) {
        ns_fieldset copy;
        long live = ns_af_live();
        ns_af_arm(at);
        int rc = ns_fieldset_copy(&copy, &fs);
        bool hit = ns_af_disarm();
        if (rc != 0) {
            assert_int_equal(copy.n, 0);
            assert_null(copy.names);
            assert_int_equal(ns_af_live(), live);
            failures++;
            continue;
        }
        assert_fields_equal(&copy, &fs);
        ns_fieldset_free(&copy);
        assert_int_equal(ns_af_live(), live);
        if (!hit)
            break;
    }
    assert_true(failures >= 4);

    ns_value_free(&v);
    free(before);
    ns_fieldset_free(&fs);
}

/* value.c allocates too, and test_value cannot fail allocations: its
 * failure paths are exercised here, where the allocator is wrapped. */
static void test_allocation_failure_value(void **state)
{
    (void)state;
    static const struct {
        ns_kind kind;
        const char *text;
    } cases[] = {
        {NS_KIND_TEXT_SET, " d, b ,a,c,b,e,f,g,h,i"},
        {NS_KIND_DECIMAL, "+001.2500"},
        {NS_KIND_TEXT, "text"},
        {NS_KIND_REF, "ABCDEF01-2345-6789-ABCD-EF0123456789"},
        {NS_KIND_DATE, "2024-02-29"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ns_field_type t = {cases[i].kind, true, 0, 0};
        long failures = 0;
        for (long at = 0;; at++) {
            ns_value v;
            char err[64] = "";
            long live = ns_af_live();
            ns_af_arm(at);
            ns_value_status st = ns_value_parse(&t, cases[i].text, &v, err, sizeof(err));
            bool hit = ns_af_disarm();
            if (st != NS_VALUE_OK) {
                assert_int_equal(st, NS_VALUE_NOMEM);
                assert_true(v.is_null);
                assert_string_equal(err, "out of memory");
                assert_int_equal(ns_af_live(), live);
                failures++;
                continue;
            }
            ns_value_free(&v);
            assert_int_equal(ns_af_live(), live);
            if (!hit)
                break;
        }
        assert_true(failures >= 1);

        /* Copy and format of the parsed value. */
        ns_value v;
        assert_int_equal(ns_value_parse(&t, cases[i].text, &v, NULL, 0), NS_VALUE_OK);
        for (long at = 0;; at++) {
            ns_value c;
            long live = ns_af_live();
            ns_af_arm(at);
            ns_value_status st = ns_value_copy(&c, &v);
            char *s = ns_value_format(&v);
            bool hit = ns_af_disarm();
            if (st == NS_VALUE_OK)
                assert_true(ns_value_equal(&c, &v));
            else
                assert_int_equal(st, NS_VALUE_NOMEM);
            assert_true(st != NS_VALUE_OK || !c.is_null);
            ns_value_free(&c);
            free(s);
            assert_int_equal(ns_af_live(), live);
            if (!hit)
                break;
        }
        ns_value_free(&v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fieldset),
        cmocka_unit_test(test_current_update_applies),
        cmocka_unit_test(test_current_delete_applies),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_stale_one_side_each),
        cmocka_unit_test(test_stale_same_change),
        cmocka_unit_test(test_stale_same_field_differs),
        cmocka_unit_test(test_issue_scenario),
        cmocka_unit_test(test_several_fields_some_conflict),
        cmocka_unit_test(test_set_merge),
        cmocka_unit_test(test_set_without_type_of),
        cmocka_unit_test(test_update_on_deleted),
        cmocka_unit_test(test_stale_delete_of_changed),
        cmocka_unit_test(test_stale_delete_of_unchanged),
        cmocka_unit_test(test_delete_of_deleted),
        cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_absent_reads_as_null),
        cmocka_unit_test(test_property_concurrent_pairs),
        cmocka_unit_test(test_allocation_failure_merge),
        cmocka_unit_test(test_allocation_failure_fieldset),
        cmocka_unit_test(test_allocation_failure_value),
    };
    return cmocka_run_group_tests_name("merge", tests, NULL, NULL);
}
