/* Record fields as JSON: daemon/fields_json.h. No database: the entity type
 * is built by hand with a field of every kind. Round trips, the exact text
 * the engine hands PostgreSQL, canonicalisation on the way in, every class
 * of bad input (each refused with a message naming the field where there is
 * one, and nothing left in the output), and allocation failure at every
 * allocation of both directions, jansson's own included: the allocator is
 * wrapped at link time (alloc_fail.h) and jansson is pointed at the
 * wrapped functions, so a leak on any path shows as a nonzero balance. */
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
#include "fields_json.h"
#include "fieldtest.h"

/* ---- the entity type ----------------------------------------------------------- */

/* Sorted by name, as the registry keeps them. */
static ns_field_def defs[] = {
    {.name = "active", .type = {NS_KIND_BOOL, true, 0, 0}},
    {.name = "amount", .type = {NS_KIND_DECIMAL, true, 0, 0}},
    {.name = "code", .type = {NS_KIND_TEXT, false, 8, 0}}, /* NOT NULL, at most 8 bytes */
    {.name = "count", .type = {NS_KIND_INT, true, 0, 0}},
    {.name = "due", .type = {NS_KIND_DATE, true, 0, 0}},
    {.name = "notes", .type = {NS_KIND_TEXT, true, 0, 0}},
    {.name = "owner", .type = {NS_KIND_REF, true, 0, 0}},
    {.name = "tags", .type = {NS_KIND_TEXT_SET, true, 12, 3}}, /* 3 items of 12 bytes */
};
#define NDEFS (sizeof(defs) / sizeof(defs[0]))

static const ns_entity_type thing = {
    .name = "thing",
    .table = "things",
    .fields = defs,
    .nfields = NDEFS,
};

/* ---- helpers ------------------------------------------------------------------- */

/* Sets one field of thing from its text form; text NULL is null. */
static void put(ns_fieldset *fs, const char *name, const char *text)
{
    const ns_field_def *f = ns_entity_field(&thing, name);
    if (f == NULL)
        fail_msg("no field %s", name);
    nst_ft_put(fs, name, &f->type, text);
}

/* Compact JSON text of fs, as the engine sends it to PostgreSQL (caller frees). */
static char *dump(const ns_fieldset *fs)
{
    json_t *j = ns_fields_to_json(fs);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    assert_non_null(s);
    return s;
}

/* fs -> JSON text -> fields: equal to fs. */
static void round_trip(const ns_fieldset *fs)
{
    char *s = dump(fs);
    ns_fieldset back;
    char err[256] = "";
    int rc = ns_fields_from_json_text(&thing, s, strlen(s), &back, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", s, err);
    nst_ft_assert_equal(fs, &back);
    ns_fieldset_free(&back);
    free(s);
}

static void parse_ok(const char *text, ns_fieldset *out)
{
    char err[256] = "";
    if (ns_fields_from_json_text(&thing, text, strlen(text), out, err, sizeof(err)) != 0)
        fail_msg("%s: %s", text, err);
}

/* text (len bytes) must be refused with a message holding needle, and the
 * output must be empty. */
static void refused_n(const char *text, size_t len, const char *needle)
{
    static char *junk[1];
    ns_fieldset out;
    char err[256] = "";
    long live = ns_af_live();
    /* A fieldset that is not empty on entry: it is overwritten, not read. */
    out.n = 7;
    out.names = junk;
    out.values = NULL;
    int rc = ns_fields_from_json_text(&thing, text, len, &out, err, sizeof(err));
    if (rc != -1)
        fail_msg("accepted: %.*s", (int)(len < 200 ? len : 200), text);
    assert_int_equal(out.n, 0);
    assert_null(out.names);
    assert_null(out.values);
    assert_int_equal(ns_af_live(), live);
    if (strstr(err, needle) == NULL)
        fail_msg("%.*s: message \"%s\" lacks \"%s\"", (int)(len < 200 ? len : 200), text, err,
                 needle);
    /* Messages go into logs: printable ASCII only, whatever the input held. */
    for (const char *p = err; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            fail_msg("unprintable byte in message \"%s\"", err);
    }
}

static void refused(const char *text, const char *needle)
{
    refused_n(text, strlen(text), needle);
}

/* ---- round trips ---------------------------------------------------------------- */

static void test_round_trip_every_kind(void **state)
{
    (void)state;
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    put(&fs, "active", "true");
    put(&fs, "amount", "-12345678901234567890.123456789012345678"); /* 38 digits */
    put(&fs, "code", "null");                                       /* TEXT: the word */
    put(&fs, "count", "-9223372036854775808");
    put(&fs, "due", "2024-02-29");
    put(&fs, "notes",
        "quote \" backslash \\ slash / tab\tnewline\n\xc3\xa9\xe2\x82\xac\xf0\x9f\x8c\x8d");
    put(&fs, "owner", "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0");
    put(&fs, "tags", "yps, climate,cyber, climate");
    round_trip(&fs);

    put(&fs, "active", "false");
    put(&fs, "amount", "99999999999999999999999999999999999999"); /* 38 integer digits */
    put(&fs, "count", "9223372036854775807");
    put(&fs, "due", "1000-01-01");
    put(&fs, "tags", "");
    round_trip(&fs);

    put(&fs, "amount", "0.00000000000000000000000000000000000001"); /* 38 fraction digits */
    put(&fs, "count", "0");
    put(&fs, "due", "9999-12-31");
    put(&fs, "tags", "null,"); /* the set holding the word */
    round_trip(&fs);
    ns_fieldset_free(&fs);
}

static void test_round_trip_nulls(void **state)
{
    (void)state;
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    for (size_t i = 0; i < NDEFS; i++) {
        if (defs[i].type.nullable)
            put(&fs, defs[i].name, NULL);
    }
    assert_int_equal(fs.n, NDEFS - 1);
    char *s = dump(&fs);
    assert_string_equal(s, "{\"active\":null,\"amount\":null,\"count\":null,\"due\":null,"
                           "\"notes\":null,\"owner\":null,\"tags\":null}");
    free(s);
    round_trip(&fs);
    ns_fieldset_free(&fs);

    /* No field at all, both ways. */
    ns_fieldset_init(&fs);
    round_trip(&fs);
    s = dump(&fs);
    assert_string_equal(s, "{}");
    free(s);
}

/* The exact form PostgreSQL receives: decimals, dates and refs as strings, a
 * set as an array of strings, names in order. */
static void test_exact_text(void **state)
{
    (void)state;
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    put(&fs, "tags", "b,a");
    put(&fs, "owner", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    put(&fs, "notes", "x\"y");
    put(&fs, "due", "2024-02-29");
    put(&fs, "count", "-3");
    put(&fs, "code", "AB");
    put(&fs, "amount", "+0012.50");
    put(&fs, "active", "TRUE");
    char *s = dump(&fs);
    assert_string_equal(s, "{\"active\":true,\"amount\":\"12.5\",\"code\":\"AB\",\"count\":-3,"
                           "\"due\":\"2024-02-29\",\"notes\":\"x\\\"y\","
                           "\"owner\":\"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\","
                           "\"tags\":[\"a\",\"b\"]}");
    free(s);
    ns_fieldset_free(&fs);

    /* Each value alone. */
    ns_value v;
    ns_value_init_null(&v, NS_KIND_INT);
    v.is_null = false;
    v.u.i = INT64_MIN;
    json_t *j = ns_value_to_json(&v);
    assert_true(json_is_integer(j));
    assert_true(json_integer_value(j) == INT64_MIN);
    json_decref(j);
    ns_value_init_null(&v, NS_KIND_TEXT_SET);
    j = ns_value_to_json(&v);
    assert_true(json_is_null(j));
    json_decref(j);
}

/* What arrives is canonicalised as ns_value_check does. */
static void test_canonicalised_on_read(void **state)
{
    (void)state;
    ns_fieldset fs;
    parse_ok("{\"tags\":[\"yps\",\" climate \",\"\",\"cyber\",\"climate\",\"yps\"],"
             "\"owner\":\"0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0\","
             "\"amount\":\"-000.500\",\"count\":-0,\"code\":\"\"}",
             &fs);
    assert_int_equal(fs.n, 5);
    assert_string_equal(fs.names[0], "amount");
    assert_string_equal(fs.values[0].u.s, "-0.5");
    assert_string_equal(fs.names[1], "code");
    assert_false(fs.values[1].is_null);
    assert_string_equal(fs.values[1].u.s, "");
    assert_string_equal(fs.names[2], "count");
    assert_true(fs.values[2].u.i == 0);
    assert_string_equal(fs.names[3], "owner");
    assert_string_equal(fs.values[3].u.s, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    assert_string_equal(fs.names[4], "tags");
    assert_int_equal(fs.values[4].u.set.n, 3);
    assert_string_equal(fs.values[4].u.set.items[0], "climate");
    assert_string_equal(fs.values[4].u.set.items[1], "cyber");
    assert_string_equal(fs.values[4].u.set.items[2], "yps");
    ns_fieldset_free(&fs);

    /* "-0" as a decimal, an empty set, escapes, whitespace around tokens. */
    parse_ok(" { \"amount\" : \"-0.000\" , \"tags\" : [ ] , \"notes\" : \"\\u00e9\\n\" } ", &fs);
    assert_int_equal(fs.n, 3);
    assert_string_equal(fs.values[0].u.s, "0");
    assert_string_equal(fs.values[1].u.s, "\xc3\xa9\n");
    assert_false(fs.values[2].is_null);
    assert_int_equal(fs.values[2].u.set.n, 0);
    ns_fieldset_free(&fs);

    /* A JSON null is SQL NULL; the string "null" is text. */
    parse_ok("{\"notes\":null,\"code\":\"null\"}", &fs);
    assert_int_equal(fs.n, 2);
    assert_false(fs.values[0].is_null);
    assert_string_equal(fs.values[0].u.s, "null");
    assert_true(fs.values[1].is_null);
    assert_int_equal(fs.values[1].kind, NS_KIND_TEXT);
    ns_fieldset_free(&fs);

    /* Every input value in range of int64 and of the 38 digits. */
    parse_ok("{\"count\":-9223372036854775808,"
             "\"amount\":\"-99999999999999999999999999999999999999\"}",
             &fs);
    assert_true(fs.values[1].u.i == INT64_MIN);
    assert_string_equal(fs.values[0].u.s, "-99999999999999999999999999999999999999");
    ns_fieldset_free(&fs);
}

/* ---- refusals -------------------------------------------------------------------- */

static void test_unknown_key(void **state)
{
    (void)state;
    refused("{\"nope\":1}", "unknown field nope of entity type thing");
    /* Reported even when it comes after a good field, and before a bad one. */
    refused("{\"count\":1,\"Count\":2}", "unknown field Count");
    refused("{\"count\":\"x\",\"zzz\":2}", "unknown field zzz");
    /* A key with bytes that must not reach a log line. */
    refused("{\"a\\u001b[31mb\\n\":1}", "unknown field a?[31mb?");
    refused("{\"\":1}", "unknown field  of entity type");
}

static void test_wrong_json_type_per_kind(void **state)
{
    (void)state;
    refused("{\"active\":\"true\"}", "field active: a string where a boolean is expected");
    refused("{\"active\":1}", "field active: an integer where a boolean is expected");
    refused("{\"active\":[]}", "field active: an array");
    refused("{\"count\":\"1\"}", "field count: a string where an integer is expected");
    refused("{\"count\":true}", "field count: a boolean where an integer is expected");
    refused("{\"count\":{}}", "field count: an object where an integer is expected");
    refused("{\"amount\":1}", "field amount: an integer where a string (decimal) is expected");
    refused("{\"amount\":false}", "field amount: a boolean where a string (decimal)");
    refused("{\"notes\":5}", "field notes: an integer where a string (text) is expected");
    refused("{\"notes\":[\"x\"]}", "field notes: an array where a string (text)");
    refused("{\"due\":20240229}", "field due: an integer where a string (date) is expected");
    refused("{\"owner\":{\"id\":\"x\"}}", "field owner: an object where a string (reference)");
    refused("{\"tags\":\"a,b\"}", "field tags: a string where an array of strings is expected");
    refused("{\"tags\":[\"a\",1]}", "field tags: set item 1 is an integer, not a string");
    refused("{\"tags\":[null]}", "field tags: set item 0 is null, not a string");
    refused("{\"tags\":[[\"a\"]]}", "field tags: set item 0 is an array");
}

static void test_real_numbers(void **state)
{
    (void)state;
    refused("{\"amount\":2.5}", "field amount: a real number where a string (decimal)");
    refused("{\"amount\":1e3}", "field amount: a real number");
    refused("{\"count\":1.0}", "field count: a real number where an integer is expected");
    refused("{\"count\":1e3}", "field count: a real number");
    refused("{\"count\":-0.0}", "field count: a real number");
    refused("{\"notes\":0.1}", "field notes: a real number");
    refused("{\"tags\":[1.5]}", "field tags: set item 0 is a real number");
    /* Too large even for a double: refused by the parser. */
    refused("{\"count\":1e400}", "real number overflow");
}

static void test_int64_overflow(void **state)
{
    (void)state;
    refused("{\"count\":9223372036854775808}", "too big integer");
    refused("{\"count\":-9223372036854775809}", "too big negative integer");
    refused("{\"count\":99999999999999999999999999999}", "too big integer");
}

static void test_values_checked(void **state)
{
    (void)state;
    refused("{\"due\":\"2023-02-29\"}", "field due: no such day in that month");
    refused("{\"due\":\"2024-2-29\"}", "field due: not a date");
    refused("{\"due\":\"0999-01-01\"}", "field due: year outside");
    refused("{\"amount\":\"1e3\"}", "field amount: not a decimal number");
    refused("{\"amount\":\"NaN\"}", "field amount: not a decimal number");
    refused("{\"amount\":\"\"}", "field amount: not a decimal number");
    refused("{\"amount\":\"1000000000000000000000000000000000000000\"}",
            "field amount: decimal with more than 38 digits");
    refused("{\"owner\":\"{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}\"}", "field owner: not a UUID");
    refused("{\"owner\":\"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg\"}", "field owner: not a UUID");
    refused("{\"code\":null}", "field code: null not allowed");
    refused("{\"code\":\"123456789\"}", "field code: text longer than 8 bytes");
    refused("{\"notes\":\"bell\\u0007\"}", "field notes: control character at byte 4");
    refused("{\"notes\":\"csi\\u009b\"}", "field notes: control character");
    refused("{\"tags\":[\"a\",\"b\",\"c\",\"d\"]}", "field tags: more than 3 set items");
    refused("{\"tags\":[\"1234567890123\"]}", "field tags: set item longer than 12 bytes");
    refused("{\"tags\":[\"a,b\"]}", "field tags: ',' inside a set item");
    refused("{\"tags\":[\"a\\nb\"]}", "field tags: control character");
    /* Duplicates and empties do not count against the limit. */
    ns_fieldset fs;
    parse_ok("{\"tags\":[\"a\",\"b\",\"c\",\"a\",\"\",\" c\"]}", &fs);
    assert_int_equal(fs.values[0].u.set.n, 3);
    ns_fieldset_free(&fs);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    refused("{\"notes\":\"\xff\"}", "invalid JSON: not valid UTF-8 at byte");
    refused("{\"notes\":\"\xc3\x28\"}", "not valid UTF-8");
    refused("{\"notes\":\"\xc0\xaf\"}", "not valid UTF-8");         /* overlong '/' */
    refused("{\"notes\":\"\xed\xa0\x80\"}", "not valid UTF-8");     /* a surrogate */
    refused("{\"notes\":\"\xf4\x90\x80\x80\"}", "not valid UTF-8"); /* past U+10FFFF */
    refused("{\"tags\":[\"ok\",\"\xe2\x82\"]}", "not valid UTF-8"); /* truncated */
    refused("{\"no\xfftes\":1}", "not valid UTF-8");
    /* Escapes that would decode to what UTF-8 cannot hold. */
    refused("{\"notes\":\"\\ud800\"}", "invalid JSON at byte");
    refused("{\"notes\":\"\\udc00\\ud800\"}", "invalid Unicode");
    /* NUL, raw or escaped. */
    refused("{\"notes\":\"a\\u0000b\"}", "invalid JSON");
    refused_n("{\"notes\":\"a\0b\"}", 15, "invalid JSON");
    refused("{\"a\\u0000\":1}", "invalid JSON");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    refused("{\"count\":1,\"count\":1}", "duplicate object key");
    refused("{\"notes\":\"a\",\"due\":null,\"notes\":\"b\"}", "duplicate object key");
    /* The same name spelled with an escape is the same key. */
    refused("{\"count\":1,\"\\u0063ount\":2}", "duplicate object key");
}

static void test_not_an_object(void **state)
{
    (void)state;
    refused("[]", "JSON fields must be an object, not an array");
    refused("[{\"count\":1}]", "not an array");
    refused("42", "invalid JSON at byte");
    refused("\"x\"", "invalid JSON");
    refused("null", "invalid JSON");
    refused("", "invalid JSON");
    refused("   ", "invalid JSON");
    refused("{\"count\":1", "invalid JSON");
    refused("{\"count\":1}{}", "end of file expected");
    refused("{\"count\":1} x", "end of file expected");
    refused("{count:1}", "invalid JSON");
    refused("{\"count\":01}", "invalid JSON");
    refused("{\"count\":1,}", "invalid JSON");

    ns_fieldset out;
    char err[128] = "";
    assert_int_equal(ns_fields_from_json_text(&thing, NULL, 0, &out, err, sizeof(err)), -1);
    assert_int_equal(out.n, 0);
    assert_string_equal(err, "no JSON text");
    /* A NULL or zero-length message buffer is allowed. */
    assert_int_equal(ns_fields_from_json_text(&thing, "[]", 2, &out, NULL, 0), -1);
    assert_int_equal(ns_fields_from_json_text(&thing, "{\"x\":1}", 7, &out, err, 0), -1);
    assert_int_equal(out.n, 0);
}

/* Deep nesting must not exhaust the stack: jansson bounds the depth. */
static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 100000;
    size_t len = 9 + 2 * depth + 1;
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, "{\"tags\":", 8);
    memset(s + 8, '[', depth);
    memset(s + 8 + depth, ']', depth);
    s[8 + 2 * depth] = '}';
    s[9 + 2 * depth] = '\0';
    refused_n(s, strlen(s), "maximum parsing depth");
    free(s);
}

/* Refused by length before any parsing; just under the limit is parsed. */
static void test_oversize(void **state)
{
    (void)state;
    size_t limit = 16u * 1024u * 1024u;
    char *s = malloc(limit + 2);
    assert_non_null(s);
    static const char obj[] = "{\"count\":7}";
    memset(s, ' ', limit + 1);
    memcpy(s + limit - (sizeof(obj) - 1), obj, sizeof(obj) - 1);
    s[limit + 1] = '\0';

    ns_fieldset fs;
    char err[256] = "";
    if (ns_fields_from_json_text(&thing, s, limit, &fs, err, sizeof(err)) != 0)
        fail_msg("at the limit: %s", err);
    assert_int_equal(fs.n, 1);
    assert_true(fs.values[0].u.i == 7);
    ns_fieldset_free(&fs);

    /* One byte more (trailing whitespace, otherwise valid JSON). */
    memmove(s, s + 1, limit);
    s[limit] = ' ';
    refused_n(s, limit + 1, "JSON text of 16777217 bytes is longer than the limit of 16777216");
    /* A length that would overflow anything derived from it. */
    refused_n(s, SIZE_MAX, "longer than the limit");
    free(s);
}

/* ---- single values ---------------------------------------------------------------- */

static void test_value_from_json(void **state)
{
    (void)state;
    const ns_field_type ft_int = {NS_KIND_INT, false, 0, 0};
    const ns_field_type ft_ref = {NS_KIND_REF, true, 0, 0};
    ns_value v;
    char err[128] = "";

    json_t *j = json_integer(-42);
    assert_int_equal(ns_value_from_json(j, &ft_int, &v, err, sizeof(err)), 0);
    assert_false(v.is_null);
    assert_true(v.u.i == -42);
    json_decref(j);

    j = json_null();
    assert_int_equal(ns_value_from_json(j, &ft_int, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "null not allowed");
    assert_true(v.is_null);
    assert_int_equal(ns_value_from_json(j, &ft_ref, &v, err, sizeof(err)), 0);
    assert_true(v.is_null);
    assert_int_equal(v.kind, NS_KIND_REF);

    assert_int_equal(ns_value_from_json(NULL, &ft_ref, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "no value");
    assert_true(v.is_null);

    /* A string holding NUL, which only a program can build. */
    j = json_stringn("0f1e2d3c\0", 9);
    assert_non_null(j);
    assert_int_equal(ns_value_from_json(j, &ft_ref, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "string holds a NUL character");
    assert_true(v.is_null);
    json_decref(j);

    j = json_string("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0");
    assert_int_equal(ns_value_from_json(j, &ft_ref, &v, err, sizeof(err)), 0);
    assert_string_equal(v.u.s, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    ns_value_free(&v);
    json_decref(j);
}

/* Malformed values (only a program can build them) give NULL, not a crash. */
static void test_to_json_malformed(void **state)
{
    (void)state;
    ns_value v;
    ns_value_init_null(&v, NS_KIND_TEXT);
    v.is_null = false; /* a text without its string */
    assert_null(ns_value_to_json(&v));
    ns_value_init_null(&v, NS_KIND_TEXT_SET);
    v.is_null = false;
    v.u.set.n = 2; /* items missing */
    assert_null(ns_value_to_json(&v));
    char *items[] = {"a", NULL};
    v.u.set.items = items;
    assert_null(ns_value_to_json(&v));
    ns_value_init_null(&v, NS_KIND_TEXT);
    v.is_null = false;
    v.u.s = "\xff"; /* not UTF-8: jansson refuses it */
    assert_null(ns_value_to_json(&v));

    ns_fieldset fs;
    ns_fieldset_init(&fs);
    put(&fs, "count", "1");
    put(&fs, "notes", "x");
    long live = ns_af_live();
    char *saved = fs.values[1].u.s;
    fs.values[1].u.s = NULL;
    assert_null(ns_fields_to_json(&fs));
    assert_int_equal(ns_af_live(), live);
    fs.values[1].u.s = saved;
    ns_fieldset_free(&fs);
}

/* ---- allocation failure ------------------------------------------------------------- */

static const char full_text[] =
    "{\"active\":true,\"amount\":\"-1.5\",\"code\":\"AB\",\"count\":3,\"due\":\"2024-02-29\","
    "\"notes\":\"n\",\"owner\":\"0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0\","
    "\"tags\":[\"b\",\"a\",\"b\"]}";

static void test_allocation_failure_from_json(void **state)
{
    (void)state;
    ns_fieldset want;
    parse_ok(full_text, &want);
    assert_int_equal(want.n, NDEFS);
    long failures = 0;
    for (long at = 0;; at++) {
        long live = ns_af_live();
        ns_fieldset fs;
        char err[256] = "";
        ns_af_arm(at);
        int rc =
            ns_fields_from_json_text(&thing, full_text, strlen(full_text), &fs, err, sizeof(err));
        bool hit = ns_af_disarm();
        if (rc == 0) {
            assert_false(hit);
            nst_ft_assert_equal(&want, &fs);
            ns_fieldset_free(&fs);
            assert_int_equal(ns_af_live(), live);
            break;
        }
        assert_true(hit);
        failures++;
        assert_int_equal(fs.n, 0);
        assert_null(fs.names);
        assert_null(fs.values);
        /* Ours say "out of memory"; jansson reports some of its own as the
         * syntax error it ran into (a string it could not store), so only
         * a message at all is required. */
        if (err[0] == '\0')
            fail_msg("allocation %ld failed without a message", at);
        assert_int_equal(ns_af_live(), live);
    }
    assert_true(failures > (long)NDEFS); /* jansson's and ours were all reached */
    ns_fieldset_free(&want);
}

static void test_allocation_failure_to_json(void **state)
{
    (void)state;
    ns_fieldset fs;
    parse_ok(full_text, &fs);
    char *want = dump(&fs);
    for (long at = 0;; at++) {
        long live = ns_af_live();
        ns_af_arm(at);
        json_t *j = ns_fields_to_json(&fs);
        bool hit = ns_af_disarm();
        if (j == NULL) {
            assert_true(hit);
            assert_int_equal(ns_af_live(), live);
            continue;
        }
        assert_false(hit);
        char *s = json_dumps(j, JSON_COMPACT);
        assert_string_equal(s, want);
        free(s);
        json_decref(j);
        assert_int_equal(ns_af_live(), live);
        break;
    }
    free(want);
    ns_fieldset_free(&fs);
}

static int group_setup(void **state)
{
    (void)state;
    /* jansson allocates through these, so its blocks are counted and can fail too. */
    json_set_alloc_funcs(__wrap_malloc, __wrap_free);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_kind),
        cmocka_unit_test(test_round_trip_nulls),
        cmocka_unit_test(test_exact_text),
        cmocka_unit_test(test_canonicalised_on_read),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_json_type_per_kind),
        cmocka_unit_test(test_real_numbers),
        cmocka_unit_test(test_int64_overflow),
        cmocka_unit_test(test_values_checked),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_value_from_json),
        cmocka_unit_test(test_to_json_malformed),
        cmocka_unit_test(test_allocation_failure_from_json),
        cmocka_unit_test(test_allocation_failure_to_json),
    };
    return cmocka_run_group_tests_name("fields_json", tests, group_setup, NULL);
}
