/* "key = value" files and value parsers: proto/conf.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

/* ---- fixture: records every setting the parser hands over ---------------- */

#define MAX_PAIRS 16

typedef struct {
    size_t n;
    char key[MAX_PAIRS][64];
    char value[MAX_PAIRS][NS_CONF_MAX_LINE + 1];
    const char *fail_key; /* the callback refuses this key */
    const char *fail_msg; /* with this message ("" = none) */
    char err[512];
} collector;

static int collect(void *ud, const char *key, const char *value, char *err, size_t errlen)
{
    collector *c = ud;
    if (c->fail_key && strcmp(key, c->fail_key) == 0) {
        if (c->fail_msg[0])
            snprintf(err, errlen, "%s", c->fail_msg);
        return -1;
    }
    assert_true(c->n < MAX_PAIRS);
    assert_true(strlen(key) < sizeof(c->key[0]));
    strcpy(c->key[c->n], key);
    strcpy(c->value[c->n], value);
    c->n++;
    return 0;
}

static int setup(void **state)
{
    collector *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static int parse(collector *c, const char *text)
{
    return ns_conf_parse_buffer(text, strlen(text), "t.conf", collect, c, c->err, sizeof(c->err));
}

typedef struct {
    const char *key;
    const char *value;
} pair;

#define NPAIRS(a) (sizeof(a) / sizeof((a)[0]))

/* The callback was handed exactly these settings, in this order. */
static void expect_collected(const collector *c, const pair *want, size_t n)
{
    assert_int_equal(c->n, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(c->key[i], want[i].key);
        assert_string_equal(c->value[i], want[i].value);
    }
}

/* text parses, into exactly these settings. */
static void expect_parsed(collector *c, const char *text, const pair *want, size_t n)
{
    assert_int_equal(parse(c, text), 0);
    expect_collected(c, want, n);
}

/* The error must start with "t.conf:<line>: " and mention what. */
static void expect_error(collector *c, const char *text, int line, const char *what)
{
    c->err[0] = '\0';
    assert_int_equal(parse(c, text), -1);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "t.conf:%d: ", line);
    if (strncmp(c->err, prefix, strlen(prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", c->err, prefix);
    if (strstr(c->err, what) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", c->err, what);
}

#define TEMP_TEMPLATE "/tmp/ns_test_conf_XXXXXX"

/* Writes data to a new temporary file, parses it with ns_conf_parse_file and
 * removes the file again (before any assertion can skip that). Its name is
 * copied to path unless that is NULL, for the messages that must quote it. */
static int parse_temp_file(collector *c, const char *data, size_t len,
                           char path[sizeof(TEMP_TEMPLATE)])
{
    char name[] = TEMP_TEMPLATE;
    int fd = mkstemp(name);
    assert_true(fd >= 0);
    if (path != NULL)
        memcpy(path, name, sizeof(name));
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    bool written = close(fd) == 0 && off == len;
    int rc = written ? ns_conf_parse_file(name, collect, c, c->err, sizeof(c->err)) : -1;
    unlink(name);
    if (!written)
        fail_msg("writing %zu bytes to %s failed after %zu", len, name, off);
    return rc;
}

/* ---- syntax -------------------------------------------------------------- */

static void test_simple(void **state)
{
    static const pair want[] = {{"listen", "127.0.0.1:7443"}, {"max_sessions", "10"}};
    expect_parsed(*state, "listen = 127.0.0.1:7443\nmax_sessions=10\n", want, NPAIRS(want));
}

static void test_empty_input(void **state)
{
    collector *c = *state;
    assert_int_equal(ns_conf_parse_buffer("", 0, "t.conf", collect, c, c->err, sizeof(c->err)), 0);
    assert_int_equal(c->n, 0);
}

static void test_comments_and_blank_lines(void **state)
{
    static const pair want[] = {{"a", "1"}};
    expect_parsed(*state,
                  "# a comment\n"
                  "\n"
                  "   \n"
                  "\t\n"
                  "  # indented comment = not a setting\n"
                  "#key = value\n"
                  "a = 1\n"
                  "\n",
                  want, NPAIRS(want));
}

/* '#' only starts a comment at the beginning of a line: a value (a
 * password in a connection string, say) may contain it. */
static void test_hash_inside_value(void **state)
{
    static const pair want[] = {{"database", "password=a#b"}};
    expect_parsed(*state, "database = password=a#b\n", want, NPAIRS(want));
}

static void test_whitespace(void **state)
{
    static const pair want[] = {
        {"key_1", "value with  inner  spaces"},
        {"k2", "v2"},
        {"k3", ""},
        {"k4", "a = b"},
    };
    expect_parsed(*state,
                  "  \t key_1 \t =  \t value with  inner  spaces \t \n"
                  "k2=v2\n"
                  "k3 =\n"
                  "k4 = a = b\n",
                  want, NPAIRS(want));
}

static void test_no_final_newline(void **state)
{
    static const pair want[] = {{"a", "1"}, {"b", "2"}};
    expect_parsed(*state, "a = 1\nb = 2", want, NPAIRS(want));
}

static void test_quoted_values(void **state)
{
    static const pair want[] = {
        {"a", "  spaced  "},
        {"b", ""},
        {"c", "x = y # z"},
        {"d", "q"},
    };
    expect_parsed(*state,
                  "a = \"  spaced  \"\n"
                  "b = \"\"\n"
                  "c = \"x = y # z\"\n"
                  "d =   \"q\"   \n",
                  want, NPAIRS(want));
}

static void test_crlf(void **state)
{
    static const pair want[] = {{"a", "1"}, {"b", " x "}, {"c", "3"}};
    expect_parsed(*state,
                  "# windows\r\n"
                  "\r\n"
                  "a = 1\r\n"
                  "b = \" x \"\r\n"
                  "c=3\r\n",
                  want, NPAIRS(want));
}

static void test_missing_equals(void **state)
{
    collector *c = *state;
    expect_error(c, "listen 127.0.0.1:7443\n", 1, "'='");
    expect_error(c, "a = 1\n\nlisten\n", 3, "listen");
}

static void test_bad_key(void **state)
{
    collector *c = *state;
    expect_error(c, "Listen = x\n", 1, "setting name");
    expect_error(c, "= x\n", 1, "setting name");
    expect_error(c, "my-key = x\n", 1, "'='");
    expect_error(c, "a.b = x\n", 1, "'='");
    expect_error(c, "\xc3\xa9t\xc3\xa9 = x\n", 1, "setting name");
    expect_error(c, "a b = x\n", 1, "'='");
    /* nothing before the bad line was lost, nothing after it was read */
    c->n = 0;
    expect_error(c, "a = 1\nB = 2\nc = 3\n", 2, "setting name");
    static const pair before[] = {{"a", "1"}};
    expect_collected(c, before, NPAIRS(before));
}

static void test_unterminated_quote(void **state)
{
    collector *c = *state;
    expect_error(c, "a = \"abc\n", 1, "unterminated");
    expect_error(c, "a = \"\n", 1, "unterminated");
    expect_error(c, "a = \"abc\" trailing\n", 1, "unterminated");
    expect_error(c, "x = 1\na = \"abc\r\n", 2, "unterminated");
}

static void test_stray_quote(void **state)
{
    collector *c = *state;
    expect_error(c, "a = \"ab\"c\"\n", 1, "stray");
    expect_error(c, "a = \"\"\"\n", 1, "stray");
}

static void test_line_length_limit(void **state)
{
    collector *c = *state;
    /* "k = " and the value: exactly NS_CONF_MAX_LINE bytes before '\n' */
    size_t vlen = NS_CONF_MAX_LINE - 4;
    char *text = malloc(NS_CONF_MAX_LINE + 16);
    assert_non_null(text);
    memcpy(text, "k = ", 4);
    memset(text + 4, 'v', vlen);
    strcpy(text + 4 + vlen, "\n");
    assert_int_equal(parse(c, text), 0);
    assert_int_equal(c->n, 1);
    assert_int_equal(strlen(c->value[0]), vlen);

    /* one byte more */
    memset(text + 4, 'v', vlen + 1);
    strcpy(text + 4 + vlen + 1, "\n");
    expect_error(c, text, 1, "longer");
    /* the same without the newline (last line of the file) */
    text[4 + vlen + 1] = '\0';
    expect_error(c, text, 1, "longer");
    free(text);
}

static void test_nul_byte(void **state)
{
    collector *c = *state;
    static const char text[] = "a = 1\nb = x\0y\nc = 3\n";
    assert_int_equal(
        ns_conf_parse_buffer(text, sizeof(text) - 1, "t.conf", collect, c, c->err, sizeof(c->err)),
        -1);
    assert_string_equal(c->err, "t.conf:2: NUL byte in line");
    assert_int_equal(c->n, 1);
}

static void test_buffer_too_large(void **state)
{
    collector *c = *state;
    char *text = malloc(NS_CONF_MAX_FILE + 1);
    assert_non_null(text);
    /* valid content throughout: only the size is wrong */
    for (size_t i = 0; i < NS_CONF_MAX_FILE + 1; i++)
        text[i] = (i % 64 == 63) ? '\n' : '#';
    assert_int_equal(ns_conf_parse_buffer(text, NS_CONF_MAX_FILE + 1, "t.conf", collect, c, c->err,
                                          sizeof(c->err)),
                     -1);
    assert_non_null(strstr(c->err, "t.conf"));
    assert_non_null(strstr(c->err, "larger"));
    /* exactly the limit is fine */
    assert_int_equal(
        ns_conf_parse_buffer(text, NS_CONF_MAX_FILE, "t.conf", collect, c, c->err, sizeof(c->err)),
        0);
    free(text);
}

static void test_callback_error_prefixed(void **state)
{
    collector *c = *state;
    c->fail_key = "bad";
    c->fail_msg = "bad: expected a number";
    assert_int_equal(parse(c, "good = 1\n# comment\nbad = x\nlater = 2\n"), -1);
    assert_string_equal(c->err, "t.conf:3: bad: expected a number");
    /* parsing stopped at the first error */
    static const pair before[] = {{"good", "1"}};
    expect_collected(c, before, NPAIRS(before));
}

static void test_callback_error_without_message(void **state)
{
    collector *c = *state;
    c->fail_key = "bad";
    c->fail_msg = "";
    assert_int_equal(parse(c, "bad = x\n"), -1);
    assert_string_equal(c->err, "t.conf:1: invalid setting");
}

/* A small error buffer truncates the message, never overflows. */
static void test_small_error_buffer(void **state)
{
    collector *c = *state;
    char err[8];
    memset(err, 'Z', sizeof(err));
    assert_int_equal(ns_conf_parse_buffer("nonsense\n", 9, "a-long-file-name.conf", collect, c, err,
                                          sizeof(err)),
                     -1);
    assert_int_equal(err[sizeof(err) - 1], '\0');
    assert_string_equal(err, "a-long-");
}

/* ---- files --------------------------------------------------------------- */

static void test_file(void **state)
{
    collector *c = *state;
    static const char text[] = "# napsyncd\nlisten = [::1]:7443\n\nlog_level = \"debug\"\n";
    assert_int_equal(parse_temp_file(c, text, sizeof(text) - 1, NULL), 0);
    static const pair want[] = {{"listen", "[::1]:7443"}, {"log_level", "debug"}};
    expect_collected(c, want, NPAIRS(want));
}

static void test_file_error_names_path(void **state)
{
    collector *c = *state;
    static const char text[] = "a = 1\nb 2\n";
    char path[sizeof(TEMP_TEMPLATE)];
    assert_int_equal(parse_temp_file(c, text, sizeof(text) - 1, path), -1);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s:2: ", path);
    assert_true(strncmp(c->err, prefix, strlen(prefix)) == 0);
}

static void test_file_too_large(void **state)
{
    collector *c = *state;
    size_t len = NS_CONF_MAX_FILE + 100;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '\n', len);
    char path[sizeof(TEMP_TEMPLATE)];
    int rc = parse_temp_file(c, text, len, path);
    free(text);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(c->err, path));
    assert_non_null(strstr(c->err, "larger"));
}

static void test_file_missing(void **state)
{
    collector *c = *state;
    assert_int_equal(
        ns_conf_parse_file("/nonexistent/napsync.conf", collect, c, c->err, sizeof(c->err)), -1);
    assert_non_null(strstr(c->err, "/nonexistent/napsync.conf"));
    assert_non_null(strstr(c->err, strerror(ENOENT)));
}

/* ---- ns_conf_uint -------------------------------------------------------- */

static void test_uint_valid(void **state)
{
    (void)state;
    uint64_t v = 12345;
    assert_int_equal(ns_conf_uint("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ns_conf_uint("42", 1, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(ns_conf_uint("1", 1, 100, &v), 0); /* both bounds inclusive */
    assert_int_equal(v, 1);
    assert_int_equal(ns_conf_uint("100", 1, 100, &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(ns_conf_uint("007", 0, 10, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(ns_conf_uint("18446744073709551615", 0, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(ns_conf_uint("67108864", 1, 67108864, &v), 0);
    assert_int_equal(v, 67108864);
}

static void test_uint_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1x",
        "x1",
        "0x10",
        "1.0",
        "1e3",
        "１",                    /* fullwidth digit one */
        "18446744073709551616",  /* UINT64_MAX + 1 */
        "99999999999999999999",  /* overflows in the middle */
        "184467440737095516150", /* UINT64_MAX * 10 */
        "000000000000000000000000000018446744073709551616",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 12345;
        if (ns_conf_uint(bad[i], 0, UINT64_MAX, &v) != -1)
            fail_msg("ns_conf_uint accepted \"%s\"", bad[i]);
        assert_int_equal(v, 12345); /* untouched on failure */
    }
    uint64_t v = 12345;
    assert_int_equal(ns_conf_uint(NULL, 0, 10, &v), -1);
    assert_int_equal(ns_conf_uint("0", 1, 100, &v), -1);
    assert_int_equal(ns_conf_uint("101", 1, 100, &v), -1);
    assert_int_equal(ns_conf_uint("65536", 1, 65535, &v), -1);
    assert_int_equal(ns_conf_uint("18446744073709551615", 0, UINT64_MAX - 1, &v), -1);
    assert_int_equal(v, 12345);
}

/* ---- ns_conf_bool -------------------------------------------------------- */

static void test_bool(void **state)
{
    (void)state;
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        int v = -7;
        assert_int_equal(ns_conf_bool(yes[i], &v), 0);
        assert_int_equal(v, 1);
        v = -7;
        assert_int_equal(ns_conf_bool(no[i], &v), 0);
        assert_int_equal(v, 0);
    }
    static const char *bad[] = {"", "2", "truee", "tru", " true", "true ", "nope", "-1", "01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int v = -7;
        if (ns_conf_bool(bad[i], &v) != -1)
            fail_msg("ns_conf_bool accepted \"%s\"", bad[i]);
        assert_int_equal(v, -7);
    }
}

/* ---- ns_conf_hostport ---------------------------------------------------- */

static void expect_hostport(const char *s, const char *host, unsigned port)
{
    char h[256];
    uint16_t p = 0;
    if (ns_conf_hostport(s, h, sizeof(h), &p) != 0)
        fail_msg("ns_conf_hostport refused \"%s\"", s);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
}

static void expect_hostport_bad(const char *s, size_t hostlen)
{
    char h[256];
    assert_true(hostlen <= sizeof(h));
    memset(h, 'Q', sizeof(h));
    uint16_t p = 4242;
    if (ns_conf_hostport(s, h, hostlen, &p) != -1)
        fail_msg("ns_conf_hostport accepted \"%s\" (buffer %zu)", s, hostlen);
    assert_int_equal(p, 4242);
    assert_int_equal(h[0], 'Q');
}

static void test_hostport_valid(void **state)
{
    (void)state;
    expect_hostport("127.0.0.1:7443", "127.0.0.1", 7443);
    expect_hostport("0.0.0.0:1", "0.0.0.0", 1);
    expect_hostport("localhost:65535", "localhost", 65535);
    expect_hostport("napsync.example.org:443", "napsync.example.org", 443);
    expect_hostport("[::1]:7443", "::1", 7443);
    expect_hostport("[::]:80", "::", 80);
    expect_hostport("[2001:db8::5]:8443", "2001:db8::5", 8443);
}

static void test_hostport_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "localhost",        /* no port */
        "localhost:",       /* empty port */
        ":7443",            /* no host */
        "[]:7443",          /* empty v6 host */
        "::1:7443",         /* bare v6 */
        "2001:db8::5:8443", /* bare v6 */
        "a:b:1",
        "[::1]7443", /* no colon after ']' */
        "[::1",
        "[::1]",
        "[::1]:",
        "host:0",
        "host:65536",
        "host:99999999999999999999999",
        "host:-1",
        "host:+80",
        "host:80x",
        "host:0x50",
        "host: 80",
        "host:80 ",
        "host:http",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_hostport_bad(bad[i], 256);
}

static void test_hostport_host_buffer(void **state)
{
    (void)state;
    char h[8];
    uint16_t p = 0;
    /* 7 characters and the NUL fit in 8 */
    assert_int_equal(ns_conf_hostport("abcdefg:1", h, sizeof(h), &p), 0);
    assert_string_equal(h, "abcdefg");
    assert_int_equal(p, 1);
    /* 8 characters do not */
    expect_hostport_bad("abcdefgh:1", 8);
    expect_hostport_bad("[1:2:3::4]:1", 8);
    expect_hostport_bad("a:1", 1);
    /* a name far longer than any buffer */
    char longname[600];
    memset(longname, 'n', 590);
    strcpy(longname + 590, ":7443");
    expect_hostport_bad(longname, 256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_simple, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comments_and_blank_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_inside_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whitespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_final_newline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quoted_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_equals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unterminated_quote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_quote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_length_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_error_prefixed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_error_without_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_error_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_error_names_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_missing, setup, teardown),
        cmocka_unit_test(test_uint_valid),
        cmocka_unit_test(test_uint_invalid),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_hostport_valid),
        cmocka_unit_test(test_hostport_invalid),
        cmocka_unit_test(test_hostport_host_buffer),
    };
    return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
