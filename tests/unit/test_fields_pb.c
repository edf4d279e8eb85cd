/* Typed values and field sets on the wire: proto/fields_pb.h. Round trips
 * through real protobuf bytes for every kind, canonicalisation on the way
 * in, every class of bad input (wrong oneof case for each kind, no value,
 * unknown and duplicate fields, invalid values), each refused with a
 * message naming the field and nothing left in the output, output that
 * borrows the value's strings, and allocation failure at every allocation
 * of both directions: the allocator is wrapped at link time
 * (alloc_fail.h), so a leak on any path shows as a nonzero
 * balance. */
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
#include "fieldtest.h"
#include "fields_pb.h"

/* ---- the fields of the test records --------------------------------------------------- */

typedef struct {
    const char *name;
    ns_field_type type;
} field_def;

/* Sorted by name. */
static const field_def defs[] = {
    {"active", {NS_KIND_BOOL, true, 0, 0}},    {"amount", {NS_KIND_DECIMAL, true, 0, 0}},
    {"code", {NS_KIND_TEXT, false, 8, 0}}, /* NOT NULL, at most 8 bytes */
    {"count", {NS_KIND_INT, true, 0, 0}},      {"due", {NS_KIND_DATE, true, 0, 0}},
    {"notes", {NS_KIND_TEXT, true, 0, 0}},     {"owner", {NS_KIND_REF, true, 0, 0}},
    {"tags", {NS_KIND_TEXT_SET, true, 12, 3}}, /* 3 items of 12 bytes */
};
#define NDEFS (sizeof(defs) / sizeof(defs[0]))

static int type_calls;

static const ns_field_type *type_of(const char *field, void *ud)
{
    assert_ptr_equal(ud, &type_calls);
    type_calls++;
    for (size_t i = 0; i < NDEFS; i++) {
        if (strcmp(defs[i].name, field) == 0)
            return &defs[i].type;
    }
    return NULL;
}

static const ns_field_type *def_type(const char *name)
{
    for (size_t i = 0; i < NDEFS; i++) {
        if (strcmp(defs[i].name, name) == 0)
            return &defs[i].type;
    }
    fail_msg("no field %s", name);
    return NULL;
}

/* Sets one field from its text form; text NULL is null. */
static void put(ns_fieldset *fs, const char *name, const char *text)
{
    nst_ft_put(fs, name, def_type(name), text);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("\"%s\" lacks \"%s\"", haystack, needle);
}

/* ---- building wire field sets by hand ------------------------------------------------- */

#define MAX_WIRE 12

/* A FieldSet on the stack: fields point at values held beside them. */
typedef struct {
    Napsync__V1__FieldSet set;
    Napsync__V1__Field *ptrs[MAX_WIRE];
    Napsync__V1__Field fields[MAX_WIRE];
    Napsync__V1__Value values[MAX_WIRE];
    Napsync__V1__TextSet sets[MAX_WIRE];
} wire;

static void wire_init(wire *w)
{
    memset(w, 0, sizeof(*w));
    napsync__v1__field_set__init(&w->set);
    w->set.fields = w->ptrs;
}

/* Appends a field and returns its value, NOT_SET, for the caller to fill. */
static Napsync__V1__Value *wire_add(wire *w, const char *name)
{
    size_t i = w->set.n_fields++;
    assert_true(i < MAX_WIRE);
    napsync__v1__field__init(&w->fields[i]);
    napsync__v1__value__init(&w->values[i]);
    w->fields[i].name = (char *)name;
    w->fields[i].value = &w->values[i];
    w->ptrs[i] = &w->fields[i];
    return &w->values[i];
}

static void wire_text(wire *w, const char *name, const char *s)
{
    Napsync__V1__Value *v = wire_add(w, name);
    v->kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    v->text_value = (char *)s;
}

static void wire_set(wire *w, const char *name, char **items, size_t n)
{
    size_t i = w->set.n_fields;
    Napsync__V1__Value *v = wire_add(w, name);
    napsync__v1__text_set__init(&w->sets[i]);
    w->sets[i].items = items;
    w->sets[i].n_items = n;
    v->kind_case = NAPSYNC__V1__VALUE__KIND_SET_VALUE;
    v->set_value = &w->sets[i];
}

/* Reads w, which must be refused with st and a message holding needle. */
static void refused(const wire *w, ns_value_status st, const char *needle)
{
    ns_fieldset out;
    char err[256] = "";
    long before = ns_af_live();
    ns_value_status got =
        ns_fieldset_from_pb(&w->set, type_of, &type_calls, &out, err, sizeof(err));
    if (got != st)
        fail_msg("status %d, expected %d (%s)", got, st, err);
    assert_int_equal(out.n, 0);
    assert_null(out.names);
    assert_null(out.values);
    assert_contains(err, needle);
    assert_int_equal(ns_af_live(), before);
}

/* ---- round trips ---------------------------------------------------------------------- */

/* fs -> FieldSet -> bytes -> FieldSet -> fields: the same fields. */
static void round_trip(const ns_fieldset *fs)
{
    Napsync__V1__FieldSet pb;
    assert_int_equal(ns_fieldset_to_pb(fs, &pb), 0);
    size_t len = napsync__v1__field_set__get_packed_size(&pb);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    assert_int_equal(napsync__v1__field_set__pack(&pb, buf), len);
    ns_fieldset_pb_clear(&pb);
    assert_int_equal(pb.n_fields, 0);
    assert_null(pb.fields);

    Napsync__V1__FieldSet *back = napsync__v1__field_set__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(back);
    ns_fieldset got;
    char err[256] = "";
    if (ns_fieldset_from_pb(back, type_of, &type_calls, &got, err, sizeof(err)) != NS_VALUE_OK)
        fail_msg("from_pb: %s", err);
    napsync__v1__field_set__free_unpacked(back, NULL);
    nst_ft_assert_equal(fs, &got);
    ns_fieldset_free(&got);
}

static void test_round_trip_every_kind(void **state)
{
    (void)state;
    long before = ns_af_live();
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    put(&fs, "active", "true");
    put(&fs, "amount", "-12345678901234567890.123456789012345678");
    put(&fs, "code", "A-1");
    put(&fs, "count", "-9223372036854775808");
    put(&fs, "due", "2024-02-29");
    put(&fs, "notes", "multi\nline \xc3\xa9\xe2\x82\xac\xf0\x9f\x8c\x8d \"quoted\"\ttab");
    put(&fs, "owner", "0a000000-0000-4000-8000-00000000000f");
    put(&fs, "tags", "yps,climate,cyber");
    round_trip(&fs);

    /* The other extremes: false, zero, empty text and set. */
    put(&fs, "active", "false");
    put(&fs, "count", "9223372036854775807");
    put(&fs, "notes", "");
    put(&fs, "tags", "");
    put(&fs, "amount", "0");
    round_trip(&fs);
    ns_fieldset_free(&fs);

    /* An empty field set. */
    round_trip(&fs);
    assert_int_equal(ns_af_live(), before);
}

static void test_round_trip_nulls(void **state)
{
    (void)state;
    long before = ns_af_live();
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    for (size_t i = 0; i < NDEFS; i++) {
        if (defs[i].type.nullable)
            put(&fs, defs[i].name, NULL);
    }
    Napsync__V1__FieldSet pb;
    assert_int_equal(ns_fieldset_to_pb(&fs, &pb), 0);
    assert_int_equal(pb.n_fields, NDEFS - 1);
    for (size_t i = 0; i < pb.n_fields; i++)
        assert_int_equal(pb.fields[i]->value->kind_case, NAPSYNC__V1__VALUE__KIND_NULL_VALUE);
    ns_fieldset_pb_clear(&pb);
    round_trip(&fs);
    ns_fieldset_free(&fs);
    assert_int_equal(ns_af_live(), before);
}

/* The output points into the value: nothing is copied but the structs. */
static void test_to_pb_borrows(void **state)
{
    (void)state;
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    put(&fs, "notes", "hello");
    put(&fs, "tags", "b,a");
    put(&fs, "amount", "1.5");
    put(&fs, "owner", "0A000000-0000-4000-8000-00000000000F");
    put(&fs, "due", "2025-01-31");
    put(&fs, "count", "7");
    put(&fs, "active", "true");
    Napsync__V1__FieldSet pb;
    assert_int_equal(ns_fieldset_to_pb(&fs, &pb), 0);
    assert_int_equal(pb.n_fields, fs.n);
    for (size_t i = 0; i < fs.n; i++) {
        assert_ptr_equal(pb.fields[i]->name, fs.names[i]);
        const Napsync__V1__Value *v = pb.fields[i]->value;
        const ns_value *src = &fs.values[i];
        switch (src->kind) {
        case NS_KIND_BOOL:
            assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_BOOL_VALUE);
            assert_true(v->bool_value);
            break;
        case NS_KIND_INT:
            assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_INT_VALUE);
            assert_int_equal(v->int_value, 7);
            break;
        case NS_KIND_DECIMAL:
            assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE);
            assert_ptr_equal(v->decimal_value, src->u.s);
            break;
        case NS_KIND_TEXT:
            assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_TEXT_VALUE);
            assert_ptr_equal(v->text_value, src->u.s);
            break;
        case NS_KIND_DATE:
            assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_DATE_VALUE);
            assert_ptr_equal(v->date_value, src->u.s);
            break;
        case NS_KIND_REF:
            assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_REF_VALUE);
            assert_ptr_equal(v->ref_value, src->u.s);
            assert_string_equal(v->ref_value, "0a000000-0000-4000-8000-00000000000f");
            break;
        case NS_KIND_TEXT_SET:
            assert_int_equal(v->kind_case, NAPSYNC__V1__VALUE__KIND_SET_VALUE);
            assert_ptr_equal(v->set_value->items, src->u.set.items);
            assert_int_equal(v->set_value->n_items, 2);
            break;
        }
    }
    ns_fieldset_pb_clear(&pb);
    ns_fieldset_pb_clear(&pb); /* harmless on the cleared message */

    /* One value, the same way. */
    Napsync__V1__Value one;
    assert_int_equal(ns_value_to_pb(ns_fieldset_get(&fs, "tags"), &one), 0);
    assert_int_equal(one.kind_case, NAPSYNC__V1__VALUE__KIND_SET_VALUE);
    ns_value_pb_clear(&one);
    assert_int_equal(one.kind_case, NAPSYNC__V1__VALUE__KIND__NOT_SET);
    ns_fieldset_free(&fs);
}

/* A value without its payload cannot be encoded. */
static void test_to_pb_malformed(void **state)
{
    (void)state;
    long before = ns_af_live();
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    put(&fs, "tags", "a");
    put(&fs, "notes", "x");
    put(&fs, "amount", "1");
    ns_value *notes = &fs.values[1];
    assert_string_equal(fs.names[1], "notes");
    char *keep = notes->u.s;
    notes->u.s = NULL;
    Napsync__V1__FieldSet pb;
    assert_int_equal(ns_fieldset_to_pb(&fs, &pb), -1);
    assert_int_equal(pb.n_fields, 0);
    assert_null(pb.fields);
    notes->u.s = keep;

    ns_value bad;
    ns_value_init_null(&bad, NS_KIND_TEXT_SET);
    bad.is_null = false;
    bad.u.set.n = 2; /* items NULL */
    Napsync__V1__Value v;
    assert_int_equal(ns_value_to_pb(&bad, &v), -1);
    ns_fieldset_free(&fs);
    assert_int_equal(ns_af_live(), before);
}

/* ---- reading: canonical forms --------------------------------------------------------- */

static void test_canonicalised_on_read(void **state)
{
    (void)state;
    wire w;
    wire_init(&w);
    Napsync__V1__Value *v = wire_add(&w, "owner");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_REF_VALUE;
    v->ref_value = "ABCDEF01-2345-6789-ABCD-EF0123456789";
    v = wire_add(&w, "amount");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE;
    v->decimal_value = "+0012.5000";
    char *items[] = {"  b ", "a", "b", "", "a "};
    wire_set(&w, "tags", items, 5);
    v = wire_add(&w, "count");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_INT_VALUE;
    v->int_value = -5;
    v = wire_add(&w, "active");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_BOOL_VALUE;
    v->bool_value = 1;
    wire_text(&w, "code", "c");

    ns_fieldset out;
    char err[256] = "";
    type_calls = 0;
    assert_int_equal(ns_fieldset_from_pb(&w.set, type_of, &type_calls, &out, err, sizeof(err)),
                     NS_VALUE_OK);
    assert_true(type_calls > 0);
    /* Sorted by name whatever the wire order. */
    static const char *const order[] = {"active", "amount", "code", "count", "owner", "tags"};
    assert_int_equal(out.n, 6);
    for (size_t i = 0; i < out.n; i++)
        assert_string_equal(out.names[i], order[i]);
    ns_fieldset want;
    ns_fieldset_init(&want);
    put(&want, "owner", "abcdef01-2345-6789-abcd-ef0123456789");
    put(&want, "amount", "12.5");
    put(&want, "tags", "a,b");
    put(&want, "count", "-5");
    put(&want, "active", "true");
    put(&want, "code", "c");
    nst_ft_assert_equal(&want, &out);
    assert_string_equal(ns_fieldset_get(&out, "amount")->u.s, "12.5");
    ns_fieldset_free(&want);
    ns_fieldset_free(&out);

    /* No fields, or no field set at all: empty. */
    wire_init(&w);
    assert_int_equal(ns_fieldset_from_pb(&w.set, type_of, &type_calls, &out, err, sizeof(err)),
                     NS_VALUE_OK);
    assert_int_equal(out.n, 0);
    assert_int_equal(ns_fieldset_from_pb(NULL, type_of, &type_calls, &out, err, sizeof(err)),
                     NS_VALUE_OK);
    assert_int_equal(out.n, 0);
}

static void test_nulls_on_read(void **state)
{
    (void)state;
    wire w;
    wire_init(&w);
    Napsync__V1__Value *v = wire_add(&w, "notes");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
    v->null_value = 0; /* the bool's value is ignored */
    v = wire_add(&w, "tags");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
    v->null_value = 1;
    ns_fieldset out;
    char err[256] = "";
    assert_int_equal(ns_fieldset_from_pb(&w.set, type_of, &type_calls, &out, err, sizeof(err)),
                     NS_VALUE_OK);
    assert_int_equal(out.n, 2);
    assert_true(ns_fieldset_get(&out, "notes")->is_null);
    assert_int_equal(ns_fieldset_get(&out, "notes")->kind, NS_KIND_TEXT);
    assert_true(ns_fieldset_get(&out, "tags")->is_null);
    assert_int_equal(ns_fieldset_get(&out, "tags")->kind, NS_KIND_TEXT_SET);
    ns_fieldset_free(&out);

    /* code is NOT NULL. */
    v = wire_add(&w, "code");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
    refused(&w, NS_VALUE_NULL_NOT_ALLOWED, "field code: null not allowed");
}

/* ---- reading: refused input ----------------------------------------------------------- */

static const Napsync__V1__Value__KindCase all_cases[] = {
    NAPSYNC__V1__VALUE__KIND_BOOL_VALUE,    NAPSYNC__V1__VALUE__KIND_INT_VALUE,
    NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE, NAPSYNC__V1__VALUE__KIND_TEXT_VALUE,
    NAPSYNC__V1__VALUE__KIND_DATE_VALUE,    NAPSYNC__V1__VALUE__KIND_SET_VALUE,
    NAPSYNC__V1__VALUE__KIND_REF_VALUE,
};

static Napsync__V1__Value__KindCase right_case(ns_kind k)
{
    static const Napsync__V1__Value__KindCase by_kind[] = {
        [NS_KIND_BOOL] = NAPSYNC__V1__VALUE__KIND_BOOL_VALUE,
        [NS_KIND_INT] = NAPSYNC__V1__VALUE__KIND_INT_VALUE,
        [NS_KIND_DECIMAL] = NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE,
        [NS_KIND_TEXT] = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE,
        [NS_KIND_DATE] = NAPSYNC__V1__VALUE__KIND_DATE_VALUE,
        [NS_KIND_TEXT_SET] = NAPSYNC__V1__VALUE__KIND_SET_VALUE,
        [NS_KIND_REF] = NAPSYNC__V1__VALUE__KIND_REF_VALUE,
    };
    return by_kind[k];
}

/* Fills v with a well-formed payload of case c. */
static void fill_case(wire *w, Napsync__V1__Value *v, Napsync__V1__Value__KindCase c)
{
    static char *items[] = {"x"};
    v->kind_case = c;
    switch (c) {
    case NAPSYNC__V1__VALUE__KIND_BOOL_VALUE:
        v->bool_value = 1;
        break;
    case NAPSYNC__V1__VALUE__KIND_INT_VALUE:
        v->int_value = 1;
        break;
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        v->decimal_value = "1";
        break;
    case NAPSYNC__V1__VALUE__KIND_TEXT_VALUE:
        v->text_value = "1";
        break;
    case NAPSYNC__V1__VALUE__KIND_DATE_VALUE:
        v->date_value = "2024-01-01";
        break;
    case NAPSYNC__V1__VALUE__KIND_SET_VALUE: {
        size_t i = (size_t)(v - w->values);
        napsync__v1__text_set__init(&w->sets[i]);
        w->sets[i].items = items;
        w->sets[i].n_items = 1;
        v->set_value = &w->sets[i];
        break;
    }
    case NAPSYNC__V1__VALUE__KIND_REF_VALUE:
        v->ref_value = "0a000000-0000-4000-8000-000000000001";
        break;
    default:
        fail();
    }
}

/* Every kind, every case but its own: refused, naming the field and both cases. */
static void test_wrong_case_per_kind(void **state)
{
    (void)state;
    for (size_t d = 0; d < NDEFS; d++) {
        for (size_t c = 0; c < sizeof(all_cases) / sizeof(all_cases[0]); c++) {
            wire w;
            wire_init(&w);
            fill_case(&w, wire_add(&w, defs[d].name), all_cases[c]);
            if (all_cases[c] == right_case(defs[d].type.kind)) {
                ns_fieldset out;
                char err[256] = "";
                if (ns_fieldset_from_pb(&w.set, type_of, &type_calls, &out, err, sizeof(err)) !=
                    NS_VALUE_OK)
                    fail_msg("%s: %s", defs[d].name, err);
                ns_fieldset_free(&out);
                continue;
            }
            char needle[128];
            snprintf(needle, sizeof(needle), "field %s: ", defs[d].name);
            refused(&w, NS_VALUE_INVALID, needle);
            snprintf(needle, sizeof(needle), "(%s) is expected", ns_kind_name(defs[d].type.kind));
            refused(&w, NS_VALUE_INVALID, needle);
        }
    }
    /* The message names the cases. */
    wire w;
    wire_init(&w);
    fill_case(&w, wire_add(&w, "count"), NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE);
    refused(&w, NS_VALUE_INVALID,
            "field count: decimal_value where int_value (integer) is expected");
}

static void test_no_value(void **state)
{
    (void)state;
    wire w;
    wire_init(&w);
    wire_add(&w, "notes"); /* NOT_SET */
    refused(&w, NS_VALUE_INVALID, "field notes: no value");

    wire_init(&w);
    wire_add(&w, "notes")->kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    w.values[0].text_value = NULL;
    refused(&w, NS_VALUE_INVALID, "field notes: text_value without a string");

    wire_init(&w);
    wire_text(&w, "notes", "x");
    w.fields[0].value = NULL; /* a Field without its Value */
    refused(&w, NS_VALUE_INVALID, "field notes: no value");

    wire_init(&w);
    wire_add(&w, "tags")->kind_case = NAPSYNC__V1__VALUE__KIND_SET_VALUE;
    refused(&w, NS_VALUE_INVALID, "field tags: set_value without a set");

    wire_init(&w);
    char *items[] = {"a", NULL};
    wire_set(&w, "tags", items, 2);
    refused(&w, NS_VALUE_INVALID, "field tags: set item 1 missing");

    wire_init(&w);
    wire_set(&w, "tags", NULL, 2);
    refused(&w, NS_VALUE_INVALID, "field tags: set_value without its items");

    /* A field without a name. */
    wire_init(&w);
    wire_text(&w, "notes", "x");
    w.fields[0].name = NULL;
    refused(&w, NS_VALUE_INVALID, "field 0 has no name");
    wire_init(&w);
    wire_text(&w, "notes", "x");
    w.ptrs[0] = NULL;
    refused(&w, NS_VALUE_INVALID, "field 0 has no name");
}

static void test_unknown_field(void **state)
{
    (void)state;
    wire w;
    wire_init(&w);
    wire_text(&w, "notes", "fine");
    wire_text(&w, "nope", "x");
    refused(&w, NS_VALUE_INVALID, "unknown field \"nope\"");

    /* Reported before any value error, wherever it is. */
    wire_init(&w);
    wire_add(&w, "notes"); /* NOT_SET */
    wire_text(&w, "", "x");
    refused(&w, NS_VALUE_INVALID, "unknown field \"\"");

    /* Names from the wire are quoted printable and bounded. */
    wire_init(&w);
    wire_text(&w, "bad\x01\xc3\xa9\nname", "x");
    refused(&w, NS_VALUE_INVALID, "unknown field \"bad????name\"");
    char longname[300];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    wire_init(&w);
    wire_text(&w, longname, "x");
    char err[256] = "";
    ns_fieldset out;
    assert_int_equal(ns_fieldset_from_pb(&w.set, type_of, &type_calls, &out, err, sizeof(err)),
                     NS_VALUE_INVALID);
    assert_true(strlen(err) < 100);
    assert_contains(err, "nnn...\"");
}

static void test_duplicate_field(void **state)
{
    (void)state;
    wire w;
    wire_init(&w);
    wire_text(&w, "notes", "a");
    wire_text(&w, "code", "c");
    wire_text(&w, "notes", "a"); /* even with the same value */
    refused(&w, NS_VALUE_INVALID, "field notes appears more than once");
}

static void test_invalid_values(void **state)
{
    (void)state;
    static const struct {
        const char *field;
        Napsync__V1__Value__KindCase c;
        const char *s;
        ns_value_status st;
    } cases[] = {
        {"notes", NAPSYNC__V1__VALUE__KIND_TEXT_VALUE, "bad \xc3\x28 utf8", NS_VALUE_INVALID},
        {"notes", NAPSYNC__V1__VALUE__KIND_TEXT_VALUE, "bell \x07", NS_VALUE_INVALID},
        {"code", NAPSYNC__V1__VALUE__KIND_TEXT_VALUE, "nine byte", NS_VALUE_TOO_LONG},
        {"due", NAPSYNC__V1__VALUE__KIND_DATE_VALUE, "2023-02-29", NS_VALUE_INVALID},
        {"due", NAPSYNC__V1__VALUE__KIND_DATE_VALUE, "2024-1-01", NS_VALUE_INVALID},
        {"amount", NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE, "1e5", NS_VALUE_INVALID},
        {"amount", NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE, "NaN", NS_VALUE_INVALID},
        {"amount", NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE,
         "1234567890123456789012345678901234567890", NS_VALUE_TOO_LONG},
        {"owner", NAPSYNC__V1__VALUE__KIND_REF_VALUE, "not-a-uuid", NS_VALUE_INVALID},
        {"owner", NAPSYNC__V1__VALUE__KIND_REF_VALUE, "{0a000000-0000-4000-8000-000000000001}",
         NS_VALUE_INVALID},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wire w;
        wire_init(&w);
        wire_text(&w, "notes", "good");
        Napsync__V1__Value *v = wire_add(&w, cases[i].field);
        v->kind_case = cases[i].c;
        if (cases[i].c == NAPSYNC__V1__VALUE__KIND_TEXT_VALUE)
            v->text_value = (char *)cases[i].s;
        else if (cases[i].c == NAPSYNC__V1__VALUE__KIND_DATE_VALUE)
            v->date_value = (char *)cases[i].s;
        else if (cases[i].c == NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE)
            v->decimal_value = (char *)cases[i].s;
        else
            v->ref_value = (char *)cases[i].s;
        if (strcmp(cases[i].field, "notes") == 0)
            w.fields[0].name = "code"; /* keep names unique */
        char needle[64];
        snprintf(needle, sizeof(needle), "field %s: ", cases[i].field);
        refused(&w, cases[i].st, needle);
    }

    /* Sets: a comma in an item, too many items, an item too long. */
    wire w;
    wire_init(&w);
    char *comma[] = {"a,b"};
    wire_set(&w, "tags", comma, 1);
    refused(&w, NS_VALUE_INVALID, "field tags: ");
    wire_init(&w);
    char *many[] = {"a", "b", "c", "d"};
    wire_set(&w, "tags", many, 4);
    refused(&w, NS_VALUE_TOO_LONG, "field tags: ");
    /* Duplicates count once: four items, three distinct, fit. */
    char *dups[] = {"a", "b", "c", "a"};
    wire_init(&w);
    wire_set(&w, "tags", dups, 4);
    ns_fieldset out;
    char err[256] = "";
    assert_int_equal(ns_fieldset_from_pb(&w.set, type_of, &type_calls, &out, err, sizeof(err)),
                     NS_VALUE_OK);
    assert_int_equal(ns_fieldset_get(&out, "tags")->u.set.n, 3);
    ns_fieldset_free(&out);
    char *longitem[] = {"thirteen byte"};
    wire_init(&w);
    wire_set(&w, "tags", longitem, 1);
    refused(&w, NS_VALUE_TOO_LONG, "field tags: ");

    /* The first bad value in wire order is the one reported. */
    wire_init(&w);
    wire_text(&w, "notes", "\x01");
    Napsync__V1__Value *v = wire_add(&w, "amount");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE;
    v->decimal_value = "x";
    refused(&w, NS_VALUE_INVALID, "field notes: ");
}

static void test_value_from_pb(void **state)
{
    (void)state;
    ns_value out;
    char err[128] = "";
    Napsync__V1__Value v = NAPSYNC__V1__VALUE__INIT;
    assert_int_equal(ns_value_from_pb(NULL, def_type("notes"), &out, err, sizeof(err)),
                     NS_VALUE_INVALID);
    assert_string_equal(err, "no value");
    assert_true(out.is_null);
    assert_int_equal(out.kind, NS_KIND_TEXT);

    v.kind_case = NAPSYNC__V1__VALUE__KIND_DATE_VALUE;
    v.date_value = "2024-12-31";
    assert_int_equal(ns_value_from_pb(&v, def_type("due"), &out, err, sizeof(err)), NS_VALUE_OK);
    assert_false(out.is_null);
    assert_string_equal(out.u.s, "2024-12-31");
    ns_value_free(&out);

    /* A date string is not text, however it looks. */
    assert_int_equal(ns_value_from_pb(&v, def_type("notes"), &out, err, sizeof(err)),
                     NS_VALUE_INVALID);
    assert_string_equal(err, "date_value where text_value (text) is expected");
    assert_true(out.is_null);

    /* err may be NULL. */
    v.kind_case = NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
    assert_int_equal(ns_value_from_pb(&v, def_type("code"), &out, NULL, 0),
                     NS_VALUE_NULL_NOT_ALLOWED);
    v.kind_case = (Napsync__V1__Value__KindCase)42;
    assert_int_equal(ns_value_from_pb(&v, def_type("code"), &out, err, sizeof(err)),
                     NS_VALUE_INVALID);
    assert_contains(err, "an unknown case");
}

/* ---- allocation failure --------------------------------------------------------------- */

static void test_allocation_failure_from_pb(void **state)
{
    (void)state;
    wire w;
    wire_init(&w);
    char *items[] = {"b", "a", "c"};
    wire_set(&w, "tags", items, 3);
    wire_text(&w, "notes", "some notes");
    Napsync__V1__Value *v = wire_add(&w, "amount");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE;
    v->decimal_value = "1.50";
    v = wire_add(&w, "count");
    v->kind_case = NAPSYNC__V1__VALUE__KIND_INT_VALUE;
    v->int_value = 3;

    long failures = 0;
    for (long at = 0;; at++) {
        long before = ns_af_live();
        ns_fieldset out;
        char err[256] = "";
        ns_af_arm(at);
        ns_value_status st =
            ns_fieldset_from_pb(&w.set, type_of, &type_calls, &out, err, sizeof(err));
        bool hit = ns_af_disarm();
        if (st == NS_VALUE_OK) {
            assert_false(hit);
            assert_int_equal(out.n, 4);
            assert_string_equal(ns_fieldset_get(&out, "amount")->u.s, "1.5");
            ns_fieldset_free(&out);
            assert_int_equal(ns_af_live(), before);
            break;
        }
        assert_true(hit);
        failures++;
        assert_int_equal(st, NS_VALUE_NOMEM);
        assert_contains(err, "out of memory");
        assert_int_equal(out.n, 0);
        assert_null(out.names);
        assert_null(out.values);
        assert_int_equal(ns_af_live(), before);
    }
    /* sorted, names, values, and per field a copy (plus the set's array
     * and items): every one of them was failed once. */
    assert_true(failures >= 3 + 4 + 3);
}

static void test_allocation_failure_to_pb(void **state)
{
    (void)state;
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    put(&fs, "tags", "x,y");
    put(&fs, "notes", "n");
    put(&fs, "active", "false");
    put(&fs, "count", NULL);
    long failures = 0;
    for (long at = 0;; at++) {
        long before = ns_af_live();
        Napsync__V1__FieldSet pb;
        ns_af_arm(at);
        int rc = ns_fieldset_to_pb(&fs, &pb);
        bool hit = ns_af_disarm();
        if (rc == 0) {
            assert_false(hit);
            assert_int_equal(pb.n_fields, 4);
            ns_fieldset_pb_clear(&pb);
            assert_int_equal(ns_af_live(), before);
            break;
        }
        assert_true(hit);
        failures++;
        assert_int_equal(pb.n_fields, 0);
        assert_null(pb.fields);
        assert_int_equal(ns_af_live(), before);
    }
    assert_int_equal(failures, 2); /* the block and the TextSet */

    Napsync__V1__Value v;
    ns_af_arm(0);
    assert_int_equal(ns_value_to_pb(ns_fieldset_get(&fs, "tags"), &v), -1);
    assert_true(ns_af_disarm());
    ns_fieldset_free(&fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_kind),
        cmocka_unit_test(test_round_trip_nulls),
        cmocka_unit_test(test_to_pb_borrows),
        cmocka_unit_test(test_to_pb_malformed),
        cmocka_unit_test(test_canonicalised_on_read),
        cmocka_unit_test(test_nulls_on_read),
        cmocka_unit_test(test_wrong_case_per_kind),
        cmocka_unit_test(test_no_value),
        cmocka_unit_test(test_unknown_field),
        cmocka_unit_test(test_duplicate_field),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_value_from_pb),
        cmocka_unit_test(test_allocation_failure_from_pb),
        cmocka_unit_test(test_allocation_failure_to_pb),
    };
    return cmocka_run_group_tests_name("fields_pb", tests, NULL, NULL);
}
