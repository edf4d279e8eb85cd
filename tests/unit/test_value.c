/* Typed field values: proto/value.h. Every kind at its edges, the canonical
 * forms that make equal values compare equal, the round trip through the
 * text form, the limits counted in bytes, and the null rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "value.h"

/* ---- helpers ------------------------------------------------------------- */

static ns_field_type type_of(ns_kind kind)
{
    ns_field_type t = {.kind = kind, .nullable = true, .max_bytes = 0, .max_items = 0};
    return t;
}

static const char *status_name(ns_value_status st)
{
    switch (st) {
    case NS_VALUE_OK:
        return "OK";
    case NS_VALUE_INVALID:
        return "INVALID";
    case NS_VALUE_TOO_LONG:
        return "TOO_LONG";
    case NS_VALUE_NULL_NOT_ALLOWED:
        return "NULL_NOT_ALLOWED";
    case NS_VALUE_NOMEM:
        return "NOMEM";
    }
    return "?";
}

/* Parses text, expects success and the canonical text form want; then checks
 * that the text form parses back to an equal value with the same form. */
static void expect_canon_t(const ns_field_type *t, const char *text, const char *want)
{
    ns_value v, back;
    char err[128] = "";
    ns_value_status st = ns_value_parse(t, text, &v, err, sizeof(err));
    if (st != NS_VALUE_OK)
        fail_msg("%s \"%s\": %s (%s), want OK", ns_kind_name(t->kind), text, status_name(st), err);
    assert_int_equal(v.kind, t->kind);
    char *s = ns_value_format(&v);
    assert_non_null(s);
    if (strcmp(s, want) != 0)
        fail_msg("%s \"%s\": formats as \"%s\", want \"%s\"", ns_kind_name(t->kind), text, s, want);
    st = ns_value_parse(t, s, &back, err, sizeof(err));
    if (st != NS_VALUE_OK)
        fail_msg("%s \"%s\": its form \"%s\" does not parse back: %s", ns_kind_name(t->kind), text,
                 s, err);
    assert_true(ns_value_equal(&v, &back));
    char *s2 = ns_value_format(&back);
    assert_non_null(s2);
    assert_string_equal(s, s2);
    free(s);
    free(s2);
    ns_value_free(&v);
    ns_value_free(&back);
}

static void expect_canon(ns_kind kind, const char *text, const char *want)
{
    ns_field_type t = type_of(kind);
    expect_canon_t(&t, text, want);
}

/* Expects parsing to fail with want, a message in err and a freeable null out. */
static void expect_fail_t(const ns_field_type *t, const char *text, ns_value_status want)
{
    ns_value v;
    char err[128] = "";
    ns_value_status st = ns_value_parse(t, text, &v, err, sizeof(err));
    if (st != want)
        fail_msg("%s \"%s\": %s (%s), want %s", ns_kind_name(t->kind), text ? text : "(NULL)",
                 status_name(st), err, status_name(want));
    assert_true(err[0] != '\0');
    assert_true(v.is_null);
    assert_int_equal(v.kind, t->kind);
    ns_value_free(&v);
}

static void expect_invalid(ns_kind kind, const char *text)
{
    ns_field_type t = type_of(kind);
    expect_fail_t(&t, text, NS_VALUE_INVALID);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static ns_value parse_ok(const ns_field_type *t, const char *text)
{
    ns_value v;
    char err[128] = "";
    ns_value_status st = ns_value_parse(t, text, &v, err, sizeof(err));
    if (st != NS_VALUE_OK)
        fail_msg("%s \"%s\": %s (%s)", ns_kind_name(t->kind), text, status_name(st), err);
    return v;
}

/* ---- bool ------------------------------------------------------------------- */

static void test_bool(void **state)
{
    (void)state;
    expect_canon(NS_KIND_BOOL, "true", "true");
    expect_canon(NS_KIND_BOOL, "TRUE", "true");
    expect_canon(NS_KIND_BOOL, "False", "false");
    expect_canon(NS_KIND_BOOL, "false", "false");
    const char *bad[] = {"", "yes", "no", "1", "0", "t", "tru", "truex", " true", "true ", "on"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(NS_KIND_BOOL, bad[i]);

    ns_field_type t = type_of(NS_KIND_BOOL);
    ns_value a = parse_ok(&t, "true"), b = parse_ok(&t, "TRUE"), c = parse_ok(&t, "false");
    assert_true(a.u.b);
    assert_false(c.u.b);
    assert_true(ns_value_equal(&a, &b));
    assert_false(ns_value_equal(&a, &c));
}

/* ---- integer -------------------------------------------------------------------- */

static void test_int(void **state)
{
    (void)state;
    expect_canon(NS_KIND_INT, "0", "0");
    expect_canon(NS_KIND_INT, "-0", "0");
    expect_canon(NS_KIND_INT, "+5", "5");
    expect_canon(NS_KIND_INT, "007", "7");
    expect_canon(NS_KIND_INT, "-42", "-42");
    expect_canon(NS_KIND_INT, "9223372036854775807", "9223372036854775807");
    expect_canon(NS_KIND_INT, "-9223372036854775808", "-9223372036854775808");
    expect_canon(NS_KIND_INT, "00000000000000000000000001", "1");

    ns_field_type t = type_of(NS_KIND_INT);
    ns_value v = parse_ok(&t, "-9223372036854775808");
    assert_true(v.u.i == INT64_MIN);
    v = parse_ok(&t, "9223372036854775807");
    assert_true(v.u.i == INT64_MAX);

    const char *bad[] = {"9223372036854775808",
                         "-9223372036854775809",
                         "18446744073709551616",
                         "99999999999999999999",
                         "",
                         "-",
                         "+",
                         "--1",
                         "+-1",
                         "1.0",
                         "1e3",
                         " 1",
                         "1 ",
                         "0x10",
                         "1,000",
                         "٣"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(NS_KIND_INT, bad[i]);
}

/* ---- decimal -------------------------------------------------------------------- */

static void test_decimal_canonical(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        {"1.50", "1.5"},      {"+1.50", "1.5"},   {"1.5", "1.5"},         {"-0", "0"},
        {"+0", "0"},          {"-0.000", "0"},    {"0.0", "0"},           {"000", "0"},
        {"007.0100", "7.01"}, {"-12.5", "-12.5"}, {"100", "100"},         {"100.00", "100"},
        {"0.05", "0.05"},     {"-0.5", "-0.5"},   {"-000.0500", "-0.05"}, {"10", "10"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_canon(NS_KIND_DECIMAL, cases[i][0], cases[i][1]);

    ns_field_type t = type_of(NS_KIND_DECIMAL);
    ns_value a = parse_ok(&t, "1.50"), b = parse_ok(&t, "1.5"), c = parse_ok(&t, "1.05"),
             z1 = parse_ok(&t, "-0.0"), z2 = parse_ok(&t, "0");
    assert_true(ns_value_equal(&a, &b));
    assert_false(ns_value_equal(&a, &c));
    assert_true(ns_value_equal(&z1, &z2));
    ns_value_free(&a);
    ns_value_free(&b);
    ns_value_free(&c);
    ns_value_free(&z1);
    ns_value_free(&z2);
}

static void test_decimal_invalid(void **state)
{
    (void)state;
    const char *bad[] = {"",    "-",     "+",   ".",      "1.",   ".5",  "-.5",      "1e5",
                         "1E5", "1,5",   " 1",  "1 ",     "NaN",  "nan", "Infinity", "--1",
                         "+-1", "1.2.3", "0x1", "1.5e-3", "1..5", "١.٥", "1.-5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(NS_KIND_DECIMAL, bad[i]);
}

static void test_decimal_digits(void **state)
{
    (void)state;
    ns_field_type t = type_of(NS_KIND_DECIMAL);
    char buf[256];

    /* 38 integer digits fit; 39 do not. */
    char *n38 = repeat('9', 38), *n39 = repeat('9', 39);
    expect_canon(NS_KIND_DECIMAL, n38, n38);
    expect_fail_t(&t, n39, NS_VALUE_TOO_LONG);
    snprintf(buf, sizeof(buf), "-%s", n38);
    expect_canon(NS_KIND_DECIMAL, buf, buf);
    snprintf(buf, sizeof(buf), "-%s", n39);
    expect_fail_t(&t, buf, NS_VALUE_TOO_LONG);

    /* 38 fraction digits, leading fraction zeros counted, the lone "0" not. */
    char *z37 = repeat('0', 37), *z38 = repeat('0', 38);
    snprintf(buf, sizeof(buf), "0.%s1", z37);
    expect_canon(NS_KIND_DECIMAL, buf, buf);
    snprintf(buf, sizeof(buf), "0.%s1", z38);
    expect_fail_t(&t, buf, NS_VALUE_TOO_LONG);

    /* Integer and fraction digits together. */
    char *n20 = repeat('1', 20), *n18 = repeat('2', 18), *n19 = repeat('2', 19);
    snprintf(buf, sizeof(buf), "%s.%s", n20, n18);
    expect_canon(NS_KIND_DECIMAL, buf, buf);
    snprintf(buf, sizeof(buf), "%s.%s", n20, n19);
    expect_fail_t(&t, buf, NS_VALUE_TOO_LONG);

    /* Counted after canonicalisation: padding zeros cost nothing. */
    char *z50 = repeat('0', 50);
    snprintf(buf, sizeof(buf), "%s%s.5%s", z50, n38 + 1, z50);
    char want[64];
    snprintf(want, sizeof(want), "%s.5", n38 + 1);
    expect_canon(NS_KIND_DECIMAL, buf, want);

    free(n38);
    free(n39);
    free(z37);
    free(z38);
    free(n20);
    free(n18);
    free(n19);
    free(z50);
}

/* ---- date ------------------------------------------------------------------------- */

static void test_date(void **state)
{
    (void)state;
    const char *good[] = {"2024-02-29", "2000-02-29", "2023-02-28", "1900-02-28", "2024-04-30",
                          "2024-12-31", "2024-01-31", "1000-01-01", "9999-12-31"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        expect_canon(NS_KIND_DATE, good[i], good[i]);
    const char *bad[] = {
        "2023-02-29", "1900-02-29",  "2100-02-29",  "2024-02-30",  "2024-04-31", "2024-06-31",
        "2024-13-01", "2024-00-10",  "2024-01-00",  "2024-01-32",  "2024-1-01",  "2024-01-1",
        "24-01-01",   "02024-01-01", "2024-01-01 ", " 2024-01-01", "2024/01/01", "2024-01-01T00:00",
        "0999-12-31", "0000-01-01",  "+2024-01-01", "2024-0a-01",  "",           "2024-01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(NS_KIND_DATE, bad[i]);
}

/* ---- reference ---------------------------------------------------------------------- */

static void test_ref(void **state)
{
    (void)state;
    expect_canon(NS_KIND_REF, "123E4567-E89B-12D3-A456-426614174000",
                 "123e4567-e89b-12d3-a456-426614174000");
    expect_canon(NS_KIND_REF, "00000000-0000-0000-0000-000000000000",
                 "00000000-0000-0000-0000-000000000000");
    ns_field_type t = type_of(NS_KIND_REF);
    ns_value a = parse_ok(&t, "ABCDEF01-2345-6789-ABCD-EF0123456789");
    ns_value b = parse_ok(&t, "abcdef01-2345-6789-abcd-ef0123456789");
    assert_true(ns_value_equal(&a, &b));
    ns_value_free(&a);
    ns_value_free(&b);
    const char *bad[] = {
        "123e4567e89b12d3a456426614174000",      "{123e4567-e89b-12d3-a456-426614174000}",
        "123e4567-e89b-12d3-a456-42661417400",   "123e4567-e89b-12d3-a456-4266141740000",
        "123e4567-e89b-12d3-a456-42661417400g",  "123e4567-e89b-12d3-a4560426614174000",
        "123e4567-e89b-12d3-a456-426614174000 ", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(NS_KIND_REF, bad[i]);
}

/* ---- text --------------------------------------------------------------------------- */

static void test_text_utf8(void **state)
{
    (void)state;
    const char *good[] = {"",
                          "plain",
                          "Ünïcödé ✓ 😀",
                          "line one\nline two\r\n\ttabbed",
                          "\xc2\xa0", /* U+00A0, first code point after C1 */
                          "\xef\xbf\xbd",
                          "\xf4\x8f\xbf\xbf", /* U+10FFFF */
                          "null"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        expect_canon(NS_KIND_TEXT, good[i], good[i]);
    const char *bad[] = {
        "\x01",
        "a\x1b[31mred",
        "\x7f",
        "\xc2\x80",
        "\xc2\x9b",
        "\xc2\x9f",
        "\xc0\xaf",
        "\xc1\xbf",
        "\xe0\x80\xaf",
        "\xf0\x80\x80\xaf",
        "\xed\xa0\x80",
        "\xed\xbf\xbf",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xe2\x82",
        "abc\xe2",
        "\x80",
        "\xff",
        "\xfe",
        "\xe2\x28\xa1",
        "\xf8\x88\x80\x80\x80",
        /* Overlong forms of code points past the C1 range, so that only the
         * overlong check can refuse them. */
        "\xe0\x82\xa0",
        "\xe0\x9f\xbf",
        "\xf0\x80\xa0\x80",
        "\xf0\x8f\xbf\xbf",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(NS_KIND_TEXT, bad[i]);
}

static void test_text_limits(void **state)
{
    (void)state;
    ns_field_type t = type_of(NS_KIND_TEXT);
    t.max_bytes = 4;
    expect_canon_t(&t, "abcd", "abcd");
    expect_canon_t(&t, "éé", "éé"); /* 2 characters, 4 bytes */
    expect_canon_t(&t, "😀", "😀");   /* 1 character, 4 bytes */
    expect_fail_t(&t, "abcde", NS_VALUE_TOO_LONG);
    expect_fail_t(&t, "ééa", NS_VALUE_TOO_LONG);  /* 3 characters, 5 bytes */
    expect_fail_t(&t, "aaaé", NS_VALUE_TOO_LONG); /* 4 characters, 5 bytes */
    expect_fail_t(&t, "😀a", NS_VALUE_TOO_LONG);

    ns_field_type d = type_of(NS_KIND_TEXT);
    char *max = repeat('a', NS_TEXT_DEFAULT_MAX), *over = repeat('a', NS_TEXT_DEFAULT_MAX + 1);
    expect_canon_t(&d, max, max);
    expect_fail_t(&d, over, NS_VALUE_TOO_LONG);
    free(max);
    free(over);
}

/* ---- text set --------------------------------------------------------------------------- */

static void test_set_canonical(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        {" b , a,,a , c", "a,b,c"},
        {"", ""},
        {" , ,  ", ""},
        {"single", "single"},
        {"b,B,ä,a", "B,a,b,ä"}, /* bytewise: uppercase before lowercase before UTF-8 */
        {"climate, youth-peace-security ,climate", "climate,youth-peace-security"},
        {"two words, two  words", "two  words,two words"},
        {" null ", "null,"}, /* the set {"null"} is not the null literal */
        {"NULL,", "NULL,"},
        {"null,x", "null,x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_canon(NS_KIND_TEXT_SET, cases[i][0], cases[i][1]);

    ns_field_type t = type_of(NS_KIND_TEXT_SET);
    ns_value a = parse_ok(&t, "c,a,b"), b = parse_ok(&t, "b , c,a,a"), e = parse_ok(&t, "");
    assert_int_equal(a.u.set.n, 3);
    assert_string_equal(a.u.set.items[0], "a");
    assert_string_equal(a.u.set.items[2], "c");
    assert_true(ns_value_equal(&a, &b));
    assert_false(e.is_null);
    assert_int_equal(e.u.set.n, 0);
    assert_false(ns_value_equal(&a, &e));
    ns_value n1 = parse_ok(&t, "null");
    assert_true(n1.is_null);
    assert_false(ns_value_equal(&n1, &e)); /* the empty set is not null */
    ns_value_free(&a);
    ns_value_free(&b);
    ns_value_free(&e);
    ns_value_free(&n1);
}

static void test_set_invalid_items(void **state)
{
    (void)state;
    const char *bad[] = {"a,b\tc", "a\nb", "x,\x01", "a,\x7f", "a,\xc2\x85", "a,\xc0\xaf", "\xff"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(NS_KIND_TEXT_SET, bad[i]);
}

static void test_set_limits(void **state)
{
    (void)state;
    ns_field_type t = type_of(NS_KIND_TEXT_SET);
    t.max_items = 3;
    expect_canon_t(&t, "a,b,c", "a,b,c");
    expect_canon_t(&t, "a,b,c,a,b,c", "a,b,c"); /* duplicates are one item */
    expect_fail_t(&t, "a,b,c,d", NS_VALUE_TOO_LONG);

    ns_field_type w = type_of(NS_KIND_TEXT_SET);
    w.max_bytes = 2;
    expect_canon_t(&w, "é, ab ,  xy", "ab,xy,é");  /* trimmed before measuring */
    expect_fail_t(&w, "ok,éa", NS_VALUE_TOO_LONG); /* 2 characters, 3 bytes */
    expect_fail_t(&w, "abc", NS_VALUE_TOO_LONG);

    ns_field_type d = type_of(NS_KIND_TEXT_SET);
    char *max = repeat('a', NS_SET_ITEM_DEFAULT_MAX),
         *over = repeat('a', NS_SET_ITEM_DEFAULT_MAX + 1);
    expect_canon_t(&d, max, max);
    expect_fail_t(&d, over, NS_VALUE_TOO_LONG);
    free(max);
    free(over);

    /* The default item count: exactly NS_SET_DEFAULT_MAX_ITEMS distinct items. */
    size_t cap = (NS_SET_DEFAULT_MAX_ITEMS + 1) * 6;
    char *many = malloc(cap);
    assert_non_null(many);
    size_t o = 0;
    for (unsigned i = 0; i < NS_SET_DEFAULT_MAX_ITEMS; i++)
        o += (size_t)snprintf(many + o, cap - o, "%s%04u", i ? "," : "", i);
    ns_value v = parse_ok(&d, many);
    assert_int_equal(v.u.set.n, NS_SET_DEFAULT_MAX_ITEMS);
    ns_value_free(&v);
    snprintf(many + o, cap - o, ",9999");
    expect_fail_t(&d, many, NS_VALUE_TOO_LONG);
    free(many);
}

/* ---- null rules ------------------------------------------------------------------------ */

static void test_null_rules(void **state)
{
    (void)state;
    const ns_kind kinds[] = {NS_KIND_BOOL, NS_KIND_INT,      NS_KIND_DECIMAL, NS_KIND_TEXT,
                             NS_KIND_DATE, NS_KIND_TEXT_SET, NS_KIND_REF};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        ns_field_type t = type_of(kinds[i]);
        ns_value v;
        char err[64] = "";
        /* text == NULL is null for every kind. */
        assert_int_equal(ns_value_parse(&t, NULL, &v, err, sizeof(err)), NS_VALUE_OK);
        assert_true(v.is_null);
        assert_int_equal(v.kind, kinds[i]);
        char *s = ns_value_format(&v);
        assert_string_equal(s, "null");
        free(s);
        ns_value_free(&v);

        t.nullable = false;
        expect_fail_t(&t, NULL, NS_VALUE_NULL_NOT_ALLOWED);
        if (kinds[i] == NS_KIND_TEXT) {
            /* "null" is just text for TEXT. */
            expect_canon_t(&t, "null", "null");
            continue;
        }
        expect_fail_t(&t, "null", NS_VALUE_NULL_NOT_ALLOWED);
        expect_fail_t(&t, "NuLL", NS_VALUE_NULL_NOT_ALLOWED);
        t.nullable = true;
        const char *lits[] = {"null", "NULL", "Null"};
        for (size_t j = 0; j < 3; j++) {
            assert_int_equal(ns_value_parse(&t, lits[j], &v, NULL, 0), NS_VALUE_OK);
            assert_true(v.is_null);
            ns_value_free(&v);
        }
        /* Only the bare literal: with spaces it is not null. */
        ns_value_status st = ns_value_parse(&t, " null", &v, NULL, 0);
        if (kinds[i] == NS_KIND_TEXT_SET) {
            assert_int_equal(st, NS_VALUE_OK);
            assert_false(v.is_null);
        } else {
            assert_int_equal(st, NS_VALUE_INVALID);
        }
        ns_value_free(&v);
    }
}

/* ---- equality, copy ------------------------------------------------------------------- */

static void test_equality(void **state)
{
    (void)state;
    ns_value n1, n2;
    ns_value_init_null(&n1, NS_KIND_TEXT);
    ns_value_init_null(&n2, NS_KIND_INT);
    assert_true(ns_value_equal(&n1, &n2)); /* an absent field reads as any null */

    ns_field_type ti = type_of(NS_KIND_INT), td = type_of(NS_KIND_DECIMAL),
                  tt = type_of(NS_KIND_TEXT);
    ns_value i1 = parse_ok(&ti, "1"), d1 = parse_ok(&td, "1"), t1 = parse_ok(&tt, "1");
    assert_false(ns_value_equal(&i1, &d1));
    assert_false(ns_value_equal(&d1, &t1));
    assert_false(ns_value_equal(&i1, &n2));
    assert_false(ns_value_equal(&n1, &t1));
    ns_value_free(&d1);
    ns_value_free(&t1);

    ns_field_type ts = type_of(NS_KIND_TEXT_SET);
    ns_value s1 = parse_ok(&ts, "a,b"), s2 = parse_ok(&ts, "a,b,c"), s3 = parse_ok(&ts, "a,c");
    assert_false(ns_value_equal(&s1, &s2));
    assert_false(ns_value_equal(&s1, &s3));
    assert_true(ns_value_equal(&s1, &s1));
    ns_value_free(&s1);
    ns_value_free(&s2);
    ns_value_free(&s3);
}

static void test_copy(void **state)
{
    (void)state;
    static const struct {
        ns_kind kind;
        const char *text;
    } cases[] = {
        {NS_KIND_BOOL, "true"},       {NS_KIND_INT, "-7"},
        {NS_KIND_DECIMAL, "12.25"},   {NS_KIND_TEXT, "Ünïcödé"},
        {NS_KIND_DATE, "2024-02-29"}, {NS_KIND_TEXT_SET, "x,y,z"},
        {NS_KIND_TEXT_SET, ""},       {NS_KIND_REF, "123e4567-e89b-12d3-a456-426614174000"},
        {NS_KIND_INT, NULL},          {NS_KIND_TEXT_SET, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ns_field_type t = type_of(cases[i].kind);
        ns_value v = parse_ok(&t, cases[i].text), c;
        char *before = ns_value_format(&v);
        assert_int_equal(ns_value_copy(&c, &v), NS_VALUE_OK);
        assert_true(ns_value_equal(&v, &c));
        assert_int_equal(c.kind, v.kind);
        if ((cases[i].kind == NS_KIND_TEXT || cases[i].kind == NS_KIND_DECIMAL) && !v.is_null)
            assert_ptr_not_equal(c.u.s, v.u.s);
        if (cases[i].kind == NS_KIND_TEXT_SET && !v.is_null && v.u.set.n > 0)
            assert_ptr_not_equal(c.u.set.items[0], v.u.set.items[0]);
        /* The copy outlives the original. */
        ns_value_free(&v);
        assert_true(v.is_null);
        char *after = ns_value_format(&c);
        assert_string_equal(before, after);
        free(before);
        free(after);
        ns_value_free(&c);
        ns_value_free(&c); /* freeing twice is harmless */
    }
}

/* ---- values from the wire -------------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static void test_check_canonicalises(void **state)
{
    (void)state;
    char err[128];

    ns_field_type td = type_of(NS_KIND_DECIMAL);
    ns_value d = {.kind = NS_KIND_DECIMAL, .is_null = false};
    d.u.s = xstrdup("+0012.5000");
    assert_int_equal(ns_value_check(&td, &d, err, sizeof(err)), NS_VALUE_OK);
    assert_string_equal(d.u.s, "12.5");
    ns_value_free(&d);
    d.is_null = false;
    d.u.s = xstrdup("-0.00");
    assert_int_equal(ns_value_check(&td, &d, err, sizeof(err)), NS_VALUE_OK);
    assert_string_equal(d.u.s, "0");
    ns_value_free(&d);
    d.is_null = false;
    d.u.s = xstrdup("1e3");
    assert_int_equal(ns_value_check(&td, &d, err, sizeof(err)), NS_VALUE_INVALID);
    ns_value_free(&d);

    ns_field_type tr = type_of(NS_KIND_REF);
    ns_value r = {.kind = NS_KIND_REF, .is_null = false};
    r.u.s = xstrdup("ABCDEF01-2345-6789-ABCD-EF0123456789");
    assert_int_equal(ns_value_check(&tr, &r, err, sizeof(err)), NS_VALUE_OK);
    assert_string_equal(r.u.s, "abcdef01-2345-6789-abcd-ef0123456789");
    ns_value_free(&r);

    ns_field_type ts = type_of(NS_KIND_TEXT_SET);
    ns_value s = {.kind = NS_KIND_TEXT_SET, .is_null = false};
    const char *raw[] = {"  pear", "apple ", "", "pear", "   ", "fig", "apple"};
    s.u.set.n = sizeof(raw) / sizeof(raw[0]);
    s.u.set.items = calloc(s.u.set.n, sizeof(char *));
    assert_non_null(s.u.set.items);
    for (size_t i = 0; i < s.u.set.n; i++)
        s.u.set.items[i] = xstrdup(raw[i]);
    assert_int_equal(ns_value_check(&ts, &s, err, sizeof(err)), NS_VALUE_OK);
    char *f = ns_value_format(&s);
    assert_string_equal(f, "apple,fig,pear");
    free(f);
    ns_value_free(&s);
}

/* A set item from the wire, refused for what it holds. */
static void check_set_item(const char *item, ns_value_status want, uint32_t max_items)
{
    ns_field_type ts = type_of(NS_KIND_TEXT_SET);
    ts.max_items = max_items;
    ns_value s = {.kind = NS_KIND_TEXT_SET, .is_null = false};
    s.u.set.n = 3;
    s.u.set.items = calloc(3, sizeof(char *));
    assert_non_null(s.u.set.items);
    s.u.set.items[0] = xstrdup("a");
    s.u.set.items[1] = xstrdup(item);
    s.u.set.items[2] = xstrdup("b");
    char err[128] = "";
    ns_value_status st = ns_value_check(&ts, &s, err, sizeof(err));
    if (st != want)
        fail_msg("set item \"%s\": %s (%s), want %s", item, status_name(st), err,
                 status_name(want));
    ns_value_free(&s); /* whatever check did, the value stays freeable */
}

static void test_check_refuses(void **state)
{
    (void)state;
    char err[128];
    check_set_item("x,y", NS_VALUE_INVALID, 0); /* no ',' from the wire either */
    check_set_item("x\ty", NS_VALUE_INVALID, 0);
    check_set_item("\xed\xa0\x80", NS_VALUE_INVALID, 0);
    check_set_item("c", NS_VALUE_TOO_LONG, 2);
    check_set_item("a", NS_VALUE_OK, 2); /* a duplicate does not count */

    /* A set claiming items it does not have. */
    ns_field_type ts = type_of(NS_KIND_TEXT_SET);
    ns_value s = {.kind = NS_KIND_TEXT_SET, .is_null = false};
    s.u.set.n = 2;
    s.u.set.items = NULL;
    assert_int_equal(ns_value_check(&ts, &s, err, sizeof(err)), NS_VALUE_INVALID);
    ns_value_free(&s);
    assert_true(s.is_null);

    /* Kind mismatch. */
    ns_field_type ti = type_of(NS_KIND_INT);
    ns_value b = {.kind = NS_KIND_BOOL, .is_null = false};
    assert_int_equal(ns_value_check(&ti, &b, err, sizeof(err)), NS_VALUE_INVALID);
    ns_value i = {.kind = NS_KIND_INT, .is_null = false};
    i.u.i = INT64_MIN;
    assert_int_equal(ns_value_check(&ti, &i, err, sizeof(err)), NS_VALUE_OK);

    /* A text value without its string. */
    ns_field_type tt = type_of(NS_KIND_TEXT);
    ns_value t = {.kind = NS_KIND_TEXT, .is_null = false};
    assert_int_equal(ns_value_check(&tt, &t, err, sizeof(err)), NS_VALUE_INVALID);
    t.u.s = xstrdup("bad \x1b[2J");
    assert_int_equal(ns_value_check(&tt, &t, err, sizeof(err)), NS_VALUE_INVALID);
    ns_value_free(&t);

    ns_field_type tdate = type_of(NS_KIND_DATE);
    ns_value dt = {.kind = NS_KIND_DATE, .is_null = false};
    dt.u.s = xstrdup("2023-02-29");
    assert_int_equal(ns_value_check(&tdate, &dt, err, sizeof(err)), NS_VALUE_INVALID);
    ns_value_free(&dt);

    /* Null: refused where not nullable, and any payload left on it is freed
     * (the sanitizer build reports the leak otherwise). */
    tt.nullable = false;
    ns_value nt = {.kind = NS_KIND_TEXT, .is_null = true};
    nt.u.s = xstrdup("left behind");
    assert_int_equal(ns_value_check(&tt, &nt, err, sizeof(err)), NS_VALUE_NULL_NOT_ALLOWED);
    assert_null(nt.u.s);
    tt.nullable = true;
    nt.u.s = xstrdup("left behind");
    assert_int_equal(ns_value_check(&tt, &nt, err, sizeof(err)), NS_VALUE_OK);
    assert_null(nt.u.s);
    assert_true(nt.is_null);
}

/* ---- round trips ----------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    static const struct {
        ns_kind kind;
        const char *text;
    } cases[] = {
        {NS_KIND_BOOL, "false"},
        {NS_KIND_INT, "-9223372036854775808"},
        {NS_KIND_DECIMAL, "-0.000000000000000000000000000000000001"},
        {NS_KIND_DECIMAL, "12345678901234567890.123456789012345678"},
        {NS_KIND_TEXT, "a, b , c"},
        {NS_KIND_TEXT, " spaced \n"},
        {NS_KIND_DATE, "1000-01-01"},
        {NS_KIND_TEXT_SET, "Ünï,zeta,alpha beta"},
        {NS_KIND_TEXT_SET, "null"},
        {NS_KIND_TEXT_SET, "NULL,"},
        {NS_KIND_REF, "ffffffff-ffff-ffff-ffff-ffffffffffff"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ns_field_type t = type_of(cases[i].kind);
        ns_value v = parse_ok(&t, cases[i].text);
        char *s = ns_value_format(&v);
        assert_non_null(s);
        ns_value back = parse_ok(&t, s);
        if (!ns_value_equal(&v, &back))
            fail_msg("%s \"%s\" -> \"%s\" reads back differently", ns_kind_name(t.kind),
                     cases[i].text, s);
        assert_int_equal(v.is_null, back.is_null);
        free(s);
        ns_value_free(&v);
        ns_value_free(&back);
    }
}

static void test_kind_names(void **state)
{
    (void)state;
    const ns_kind kinds[] = {NS_KIND_BOOL, NS_KIND_INT,      NS_KIND_DECIMAL, NS_KIND_TEXT,
                             NS_KIND_DATE, NS_KIND_TEXT_SET, NS_KIND_REF};
    size_t n = sizeof(kinds) / sizeof(kinds[0]);
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(ns_kind_name(kinds[i]), "unknown");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(ns_kind_name(kinds[i]), ns_kind_name(kinds[j]));
    }
    assert_string_equal(ns_kind_name((ns_kind)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_decimal_canonical),
        cmocka_unit_test(test_decimal_invalid),
        cmocka_unit_test(test_decimal_digits),
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_ref),
        cmocka_unit_test(test_text_utf8),
        cmocka_unit_test(test_text_limits),
        cmocka_unit_test(test_set_canonical),
        cmocka_unit_test(test_set_invalid_items),
        cmocka_unit_test(test_set_limits),
        cmocka_unit_test(test_null_rules),
        cmocka_unit_test(test_equality),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_check_canonicalises),
        cmocka_unit_test(test_check_refuses),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_kind_names),
    };
    return cmocka_run_group_tests_name("value", tests, NULL, NULL);
}
