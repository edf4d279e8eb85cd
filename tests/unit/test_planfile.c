/* The plan file (client/cli/planfile.h): JSON and CSV read into records
 * with canonical values, every problem found with its position (a CSV
 * line, a JSON path) and field, checks across records (duplicate ids,
 * the one plan, references within the plan), and the writers: a file
 * written, read and written again is the same bytes, in either format and
 * across them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "planfile.h"

#define PLAN    "d0000000-0000-4000-8000-000000000001"
#define PIL     "d0010000-0000-4000-8000-000000000001"
#define OBJ     "d0020000-0000-4000-8000-000000000001"
#define IND     "d0050000-0000-4000-8000-000000000001"
#define IND2    "d0050000-0000-4000-8000-000000000002"
#define REP     "d0070000-0000-4000-8000-000000000001"
#define MISSING "d0010000-0000-4000-8000-0000000000ff"
#define ORG     "0e000000-0000-4000-8000-000000000001"

/* ---- helpers ---------------------------------------------------------------------- */

static void parse(pf_file *f, pf_format fmt, const char *text)
{
    pf_file_init(f);
    assert_int_equal(pf_parse(f, fmt, text, strlen(text)), 0);
}

static void dump_errors(const pf_file *f)
{
    for (size_t i = 0; i < f->nerrors; i++)
        fprintf(stderr,
                "  error %zu: line %u:%u where \"%s\" type \"%s\" id \"%s\" field \"%s\": %s\n", i,
                f->errors[i].line, f->errors[i].column, f->errors[i].where, f->errors[i].type,
                f->errors[i].id, f->errors[i].field, f->errors[i].message);
}

static void expect_clean(const pf_file *f)
{
    if (f->errors_seen != 0) {
        dump_errors(f);
        fail_msg("%zu unexpected problems", f->errors_seen);
    }
}

/* An error at where (JSON path) or line (CSV) with this field whose
 * message holds needle must be among f's errors. */
static void expect_error(const pf_file *f, uint32_t line, const char *where, const char *field,
                         const char *needle)
{
    for (size_t i = 0; i < f->nerrors; i++) {
        const pf_error *e = &f->errors[i];
        if (e->line == line && strcmp(e->where, where) == 0 && strcmp(e->field, field) == 0 &&
            strstr(e->message, needle) != NULL)
            return;
    }
    dump_errors(f);
    fail_msg("no error at line %u \"%s\" field \"%s\" saying \"%s\"", line, where, field, needle);
}

static const pf_record *find(const pf_file *f, const char *type, const char *id)
{
    size_t t;
    assert_non_null(pf_type_find(type, &t));
    for (size_t i = 0; i < f->n; i++)
        if (f->records[i].type == t && strcmp(f->records[i].id, id) == 0)
            return &f->records[i];
    fail_msg("no %s %s", type, id);
    return NULL;
}

/* The value of a field as its text form ("" for null; caller frees). */
static char *value_of(const pf_record *r, const char *field)
{
    const pf_type *t = pf_type_at(r->type);
    int i = pf_field_index(t, field);
    assert_true(i >= 0);
    if (r->values[i].is_null)
        return strdup("");
    char *s = ns_value_format(&r->values[i]);
    assert_non_null(s);
    return s;
}

static void check_value(const pf_record *r, const char *field, const char *want)
{
    char *s = value_of(r, field);
    if (strcmp(s, want) != 0)
        fail_msg("%s: \"%s\", want \"%s\"", field, s, want);
    free(s);
}

/* Writes f's records (sorted by type, then id) in fmt. Caller frees. */
static int rec_cmp(const void *a, const void *b)
{
    const pf_record *x = *(const pf_record *const *)a, *y = *(const pf_record *const *)b;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    return strcmp(x->id, y->id);
}

static char *write_file(const pf_file *f, pf_format fmt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    const pf_record **sorted = calloc(f->n, sizeof(*sorted));
    assert_non_null(sorted);
    for (size_t i = 0; i < f->n; i++)
        sorted[i] = &f->records[i];
    qsort(sorted, f->n, sizeof(*sorted), rec_cmp);
    pf_writer *w = pf_writer_new(fmt, out);
    assert_non_null(w);
    for (size_t i = 0; i < f->n; i++)
        assert_int_equal(pf_writer_record(w, sorted[i]->type, sorted[i]->id, sorted[i]->values), 0);
    assert_int_equal(pf_writer_finish(w), 0);
    pf_writer_free(w);
    free(sorted);
    assert_int_equal(fclose(out), 0);
    return buf;
}

/* ---- JSON ------------------------------------------------------------------------- */

static const char good_json[] =
    "{\n"
    "  \"format\": \"napsync-plan\",\n"
    "  \"version\": 1,\n"
    "  \"plan\": {\"id\": \"" PLAN "\", \"title\": \"NAP \\u00e9 \\\"2\\\"\\nline\", "
    "\"kind\": \"nap\", \"status\": \"adopted\", \"period_start\": \"2023-01-01\", "
    "\"period_end\": \"2027-12-31\", \"owner_id\": \"0E000000-0000-4000-8000-000000000001\", "
    "\"tags\": [\"small-arms\", \"climate\", \"climate\"], \"generation\": 2, \"summary\": null},\n"
    "  \"pillars\": [{\"id\": \"" PIL
    "\", \"name\": \"Participation\", \"kind\": \"participation\", "
    "\"position\": 1}],\n"
    "  \"objectives\": [{\"id\": \"" OBJ "\", \"pillar_id\": \"" PIL "\", \"title\": \"O\"}],\n"
    "  \"indicators\": [\n"
    "    {\"id\": \"" IND "\", \"objective_id\": \"" OBJ "\", \"title\": \"Share\", "
    "\"value_type\": \"percentage\", \"baseline\": 12.50, \"target\": \"35.0\", "
    "\"baseline_date\": \"2022-12-31\", \"disaggregation\": [\"sex\"]},\n"
    "    {\"id\": \"" IND2 "\", \"title\": \"Exact\", \"value_type\": \"number\", "
    "\"baseline\": 12345678901234567890.123456789012345678, \"target\": -0.000}\n"
    "  ],\n"
    "  \"indicator_reports\": [{\"id\": \"" REP "\", \"indicator_id\": \"" IND "\", "
    "\"period_start\": \"2023-01-01\", \"period_end\": \"2023-12-31\", \"status\": \"approved\", "
    "\"value\": 20}],\n"
    "  \"budget_lines\": [{\"id\": \"d0090000-0000-4000-8000-000000000001\", \"action_id\": null, "
    "\"fiscal_year\": 2025, \"currency\": \"USD\", \"costed\": \"1500000.00\", "
    "\"gender_responsive\": false}]\n"
    "}\n";

static void test_json_good(void **state)
{
    (void)state;
    pf_file f;
    parse(&f, PF_JSON, good_json);
    expect_clean(&f);
    assert_int_equal(f.n, 7);
    assert_true(f.has_plan);
    const pf_record *plan = find(&f, "plan", PLAN);
    assert_ptr_equal(&f.records[f.plan], plan);
    check_value(plan, "title", "NAP \xc3\xa9 \"2\"\nline");
    check_value(plan, "owner_id", ORG); /* canonical: lower case */
    check_value(plan, "tags", "climate,small-arms");
    check_value(plan, "generation", "2");
    check_value(plan, "summary", "");
    const pf_record *ind = find(&f, "indicator", IND);
    check_value(ind, "baseline", "12.5"); /* a JSON number, read from its text */
    check_value(ind, "target", "35");     /* a JSON string */
    check_value(ind, "disaggregation", "sex");
    /* 38 digits: any trip through a double would lose them. */
    const pf_record *ind2 = find(&f, "indicator", IND2);
    check_value(ind2, "baseline", "12345678901234567890.123456789012345678");
    check_value(ind2, "target", "0");
    const pf_record *bl = find(&f, "budget_line", "d0090000-0000-4000-8000-000000000001");
    check_value(bl, "costed", "1500000");
    check_value(bl, "gender_responsive", "false");
    check_value(bl, "fiscal_year", "2025");
    check_value(find(&f, "indicator_report", REP), "value", "20");
    pf_file_free(&f);
}

/* Several problems at once, each at its path and field; reading goes on. */
static void test_json_errors(void **state)
{
    (void)state;
    static const char text[] =
        "{\"format\": \"napsync-plan\", \"version\": 1, \"extra\": {\"a\": [1, 2]},\n"
        " \"plan\": {\"id\": \"" PLAN "\", \"period_end\": \"2027-02-30\", \"colour\": \"red\", "
        "\"generation\": 1.5, \"tags\": [\"a\", 3, \"b,c\"], \"title\": [\"x\"]},\n"
        " \"pillars\": [{\"id\": \"" PIL "\", \"position\": \"1\", \"plan_id\": \"" PLAN "\"}, 7,\n"
        "               {\"name\": \"no id\"}, {\"id\": \"" PIL "\"}],\n"
        " \"objectives\": [{\"title\": {\"nested\": true}, \"pillar_id\": \"" MISSING "\", "
        "\"id\": \"" OBJ "\"}],\n"
        " \"indicators\": [{\"id\": \"" IND "\", \"baseline\": true, \"target\": \"1e3\", "
        "\"baseline_date\": \"2022-12-31\", \"baseline_date\": \"2022-12-31\"}],\n"
        " \"plans\": []\n"
        "}";
    pf_file f;
    parse(&f, PF_JSON, text);
    expect_error(&f, 0, "$.extra", "", "unknown key");
    expect_error(&f, 0, "$.plan.period_end", "period_end", "no such day");
    expect_error(&f, 0, "$.plan.colour", "colour", "plan has no field \"colour\"");
    expect_error(&f, 0, "$.plan.generation", "generation", "not an integer");
    expect_error(&f, 0, "$.plan.tags[1]", "tags", "set items are strings");
    expect_error(&f, 0, "$.plan.tags[2]", "tags", "no comma");
    expect_error(&f, 0, "$.plan.title", "title", "found an array");
    expect_error(&f, 0, "$.pillars[0].position", "position", "expected a whole number");
    expect_error(&f, 0, "$.pillars[0].plan_id", "plan_id", "implied");
    expect_error(&f, 0, "$.pillars[1]", "", "a record is a JSON object");
    expect_error(&f, 0, "$.pillars[2]", "", "no \"id\"");
    expect_error(&f, 0, "$.pillars[3].id", "id", "already in the file ($.pillars[0])");
    expect_error(&f, 0, "$.objectives[0].pillar_id", "pillar_id", "no pillar " MISSING);
    expect_error(&f, 0, "$.objectives[0].title", "title", "found an object");
    expect_error(&f, 0, "$.indicators[0].baseline", "baseline", "found a boolean");
    expect_error(&f, 0, "$.indicators[0].target", "target", "\"1e3\": not a decimal");
    expect_error(&f, 0, "$.indicators[0].baseline_date", "baseline_date", "given twice");
    expect_error(&f, 0, "$.plans", "", "unknown key");
    assert_int_equal(f.errors_seen, 18);
    assert_int_equal(f.nerrors, 18);
    /* An error found before the record's id was read still names it. */
    for (size_t i = 0; i < f.nerrors; i++)
        if (strcmp(f.errors[i].where, "$.objectives[0].title") == 0)
            assert_string_equal(f.errors[i].id, OBJ);
    pf_file_free(&f);
}

static void test_json_syntax(void **state)
{
    (void)state;
    static const char text[] = "{\"format\": \"napsync-plan\", \"version\": 1,\n"
                               " \"plan\": {\"id\": \"" PLAN "\", \"title\": \"T\",\n"
                               "   \"period_start\": \"2023-13-01\",\n"
                               "   \"kind\" \"nap\"}}\n";
    pf_file f;
    parse(&f, PF_JSON, text);
    /* The problem before the syntax error is kept, then reading stops. */
    expect_error(&f, 0, "$.plan.period_start", "period_start", "no such month");
    bool found = false;
    for (size_t i = 0; i < f.nerrors; i++)
        if (f.errors[i].line == 4 && f.errors[i].column > 0 &&
            strstr(f.errors[i].message, "not valid JSON") != NULL)
            found = true;
    if (!found) {
        dump_errors(&f);
        fail_msg("no syntax error at line 4");
    }
    pf_file_free(&f);

    static const char *const bad[] = {"", "[]", "42", "{\"format\": \"other\", \"version\": 2}",
                                      "{} trailing"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parse(&f, PF_JSON, bad[i]);
        if (f.errors_seen == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
        pf_file_free(&f);
    }
    parse(&f, PF_JSON, "{\"format\": \"other\", \"version\": 2}");
    expect_error(&f, 0, "$.format", "", "napsync-plan");
    expect_error(&f, 0, "$.version", "", "version 1");
    expect_error(&f, 0, "$.plan", "", "no plan");
    pf_file_free(&f);
}

/* ---- CSV -------------------------------------------------------------------------- */

static const char good_csv[] =
    "\xEF\xBB\xBFtype,id,title,kind,status,period_start,period_end,tags,name,position,"
    "pillar_id,summary,baseline,gender_responsive\r\n"
    "plan," PLAN ",\"A \"\"quoted\"\", multi\nline title\",nap,adopted,2023-01-01,2027-12-31,"
    "\"climate,small-arms\",,,,\"\",,\r\n"
    "\r\n"
    "pillar," PIL ",,participation,,,,,  Participation  ,1,,,,\r\n"
    ",,,,,,,,,,,,,\n"
    "objective," OBJ ",O,,,,,,,2," PIL ",,,\n"
    "budget_line,d0090000-0000-4000-8000-000000000001,,,,,,,,,,,,TRUE";

static void test_csv_good(void **state)
{
    (void)state;
    pf_file f;
    parse(&f, PF_CSV, good_csv);
    expect_clean(&f);
    assert_int_equal(f.n, 4);
    const pf_record *plan = find(&f, "plan", PLAN);
    assert_int_equal(plan->line, 2);
    check_value(plan, "title", "A \"quoted\", multi\nline title");
    check_value(plan, "tags", "climate,small-arms");
    /* "" is the empty text; a blank cell is null. */
    int si = pf_field_index(pf_type_at(plan->type), "summary");
    assert_false(plan->values[si].is_null);
    assert_string_equal(plan->values[si].u.s, "");
    int ci = pf_field_index(pf_type_at(plan->type), "code");
    assert_true(plan->values[ci].is_null);
    const pf_record *pil = find(&f, "pillar", PIL);
    assert_int_equal(pil->line, 5); /* the plan spans lines 2 and 3, line 4 is blank */
    check_value(pil, "name", "  Participation  "); /* RFC 4180: spaces are data */
    assert_int_equal(find(&f, "objective", OBJ)->line, 7);
    check_value(find(&f, "budget_line", "d0090000-0000-4000-8000-000000000001"),
                "gender_responsive", "true");
    pf_file_free(&f);
}

static void test_csv_errors(void **state)
{
    (void)state;
    static const char text[] = "type,id,title,period_end,colour,plan_id,pillar_id,baseline,name,\n"
                               "plan," PLAN ",\"Two\nlines\",2027-02-30,,,,,,\n"
                               "pillar," PIL ",Title?,,,,,,P,\n"
                               "objective," OBJ ",O,,,,d0010000-0000-4000-8000-0000000000ff,,,\n"
                               "indicator," IND ",I,,,,,1.2.3,,\n"
                               "widget," IND2 ",,,,,,,,\n"
                               "pillar,not-a-uuid,,,,,,,P,\n"
                               "pillar," PIL ",,,,,,,P2,\n"
                               "indicator," IND2 ",I,,,,,,,,extra\n";
    pf_file f;
    parse(&f, PF_CSV, text);
    expect_error(&f, 1, "", "colour", "no record type has a field \"colour\"");
    expect_error(&f, 1, "", "plan_id", "implied");
    expect_error(&f, 1, "", "", "column 10 has no name");
    expect_error(&f, 2, "", "period_end", "no such day in that month");
    expect_error(&f, 4, "", "title", "pillar has no field title");
    expect_error(&f, 5, "", "pillar_id", "no pillar " MISSING);
    expect_error(&f, 6, "", "baseline", "\"1.2.3\": not a decimal");
    expect_error(&f, 7, "", "type", "\"widget\" is not a record type");
    expect_error(&f, 8, "", "id", "\"not-a-uuid\" is not a UUID");
    expect_error(&f, 9, "", "id", "already in the file (line 4)");
    expect_error(&f, 10, "", "", "more cells than the header's 10 columns");
    assert_int_equal(f.errors_seen, 11);
    /* In line order, whatever the order they were found in. */
    for (size_t i = 1; i < f.nerrors; i++)
        assert_true(f.errors[i - 1].line <= f.errors[i].line);
    pf_file_free(&f);

    parse(&f, PF_CSV, "type,id,title\nplan," PLAN ",\"not closed\n");
    expect_error(&f, 2, "", "", "not closed");
    pf_file_free(&f);
    parse(&f, PF_CSV, "type,id,title\nplan," PLAN ",a \"quote\" inside\nplan," PLAN ",x\n");
    expect_error(&f, 2, "", "", "not valid CSV");
    pf_file_free(&f);
    parse(&f, PF_CSV, "id,type\n");
    expect_error(&f, 1, "", "", "type,id");
    pf_file_free(&f);
    parse(&f, PF_CSV, "");
    expect_error(&f, 1, "", "", "empty");
    pf_file_free(&f);
    parse(&f, PF_CSV, "type,id,title\n");
    expect_error(&f, 0, "", "", "no row of type plan");
    pf_file_free(&f);
    parse(&f, PF_CSV, "type,id\nplan," PLAN "\nplan," IND "\n");
    expect_error(&f, 3, "", "", "one plan");
    pf_file_free(&f);
}

static void test_limits(void **state)
{
    (void)state;
    pf_file f;
    pf_file_init(&f);
    /* Refused by its size before a byte is read. */
    assert_int_equal(pf_parse(&f, PF_JSON, "{}", (size_t)PF_MAX_FILE_BYTES + 1), 0);
    expect_error(&f, 0, "", "", "larger than");
    pf_file_free(&f);
    /* Too long for the column (pillar.code is varchar(32)). */
    parse(&f, PF_CSV,
          "type,id,code\nplan," PLAN ",\npillar," PIL ",123456789012345678901234567890123\n");
    expect_error(&f, 3, "", "code", "longer than 32 bytes");
    pf_file_free(&f);
    /* More problems than are kept: all counted, the first ones kept. */
    size_t n = PF_MAX_ERRORS + 50;
    size_t cap = 64 + n * 64;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = (size_t)snprintf(text, cap, "type,id,position\nplan," PLAN ",\n");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(text + o, cap - o, "pillar,d0010000-0000-4000-8000-%012zx,x\n", i);
    parse(&f, PF_CSV, text);
    assert_int_equal(f.nerrors, PF_MAX_ERRORS);
    assert_int_equal(f.errors_seen, n);
    pf_file_free(&f);
    free(text);
}

/* ---- writing ---------------------------------------------------------------------- */

static void test_round_trips(void **state)
{
    (void)state;
    pf_file a, b, c;
    parse(&a, PF_JSON, good_json);
    expect_clean(&a);
    char *json1 = write_file(&a, PF_JSON);
    parse(&b, PF_JSON, json1);
    expect_clean(&b);
    char *json2 = write_file(&b, PF_JSON);
    assert_string_equal(json1, json2);
    /* Across formats: JSON -> CSV -> JSON gives the same JSON. */
    char *csv1 = write_file(&b, PF_CSV);
    parse(&c, PF_CSV, csv1);
    expect_clean(&c);
    char *csv2 = write_file(&c, PF_CSV);
    assert_string_equal(csv1, csv2);
    char *json3 = write_file(&c, PF_JSON);
    assert_string_equal(json1, json3);
    /* Decimals leave as JSON strings, exact; nulls are left out; the
     * empty text and set are kept apart from null in CSV. */
    assert_non_null(strstr(json1, "\"baseline\": \"12345678901234567890.123456789012345678\""));
    assert_null(strstr(json1, "summary"));
    assert_non_null(strstr(csv1, "type,id,title,summary,kind,"));
    assert_non_null(strstr(json1, "\"format\": \"napsync-plan\""));
    free(json1);
    free(json2);
    free(json3);
    free(csv1);
    free(csv2);
    pf_file_free(&a);
    pf_file_free(&b);
    pf_file_free(&c);

    parse(&a, PF_CSV, good_csv);
    csv1 = write_file(&a, PF_CSV);
    parse(&b, PF_CSV, csv1);
    expect_clean(&b);
    csv2 = write_file(&b, PF_CSV);
    assert_string_equal(csv1, csv2);
    assert_non_null(strstr(csv1, "\"A \"\"quoted\"\", multi\nline title\""));
    assert_non_null(strstr(csv1, ",\"  Participation  \","));
    free(csv1);
    free(csv2);
    pf_file_free(&a);
    pf_file_free(&b);
}

static void test_writer_order(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    ns_value vals[32];
    for (size_t i = 0; i < 32; i++)
        ns_value_init_null(&vals[i], NS_KIND_TEXT);
    pf_writer *w = pf_writer_new(PF_JSON, out);
    assert_non_null(w);
    /* The plan comes first. */
    assert_int_equal(pf_writer_record(w, 1, PIL, vals), -1);
    pf_writer_free(w);
    w = pf_writer_new(PF_JSON, out);
    assert_int_equal(pf_writer_record(w, 0, PLAN, vals), 0);
    assert_int_equal(pf_writer_record(w, 2, OBJ, vals), 0);
    assert_int_equal(pf_writer_record(w, 1, PIL, vals), -1);  /* type order */
    assert_int_equal(pf_writer_record(w, 2, OBJ, vals), -1);  /* id order */
    assert_int_equal(pf_writer_record(w, 0, PLAN, vals), -1); /* one plan */
    pf_writer_free(w);
    /* Nothing to finish without a plan. */
    w = pf_writer_new(PF_CSV, out);
    assert_int_equal(pf_writer_finish(w), -1);
    pf_writer_free(w);
    fclose(out);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_good),   cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_json_syntax), cmocka_unit_test(test_csv_good),
        cmocka_unit_test(test_csv_errors),  cmocka_unit_test(test_limits),
        cmocka_unit_test(test_round_trips), cmocka_unit_test(test_writer_order),
    };
    return cmocka_run_group_tests_name("planfile", tests, NULL, NULL);
}
