/* Envelope pack/unpack, the unpack budget, ns_text_ok and error code names:
 * proto/envelope.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "envelope.h"

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint8_t *pack(const ns_envelope *e, size_t *len)
{
    uint8_t *buf = NULL;
    *len = SIZE_MAX;
    assert_int_equal(ns_envelope_pack(e, &buf, len), 0);
    assert_non_null(buf);
    assert_int_equal(*len, napsync__v1__envelope__get_packed_size(e));
    return buf;
}

static ns_envelope *round_trip(const ns_envelope *e)
{
    size_t len;
    uint8_t *buf = pack(e, &len);
    ns_envelope *out = ns_envelope_unpack(buf, len);
    free(buf);
    assert_non_null(out);
    assert_int_equal(out->request_id, e->request_id);
    assert_int_equal(out->body_case, e->body_case);
    return out;
}

/* Bytes a field with this varint value takes, tag included (tags < 16). */
static size_t varint_field_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return 1 + n;
}

/* ---- round trips --------------------------------------------------------- */

static void test_hello_round_trip(void **state)
{
    (void)state;
    Napsync__V1__Hello h = NAPSYNC__V1__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 3;
    h.client_name = "napsync-cli";
    h.client_version = "0.1.0";
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.request_id = 1;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    ns_envelope *out = round_trip(&e);
    assert_non_null(out->hello);
    assert_int_equal(out->hello->min_version, 1);
    assert_int_equal(out->hello->max_version, 3);
    assert_string_equal(out->hello->client_name, "napsync-cli");
    assert_string_equal(out->hello->client_version, "0.1.0");
    ns_envelope_free(out);
}

static void test_welcome_round_trip(void **state)
{
    (void)state;
    Napsync__V1__Principal pr = NAPSYNC__V1__PRINCIPAL__INIT;
    pr.id = "6f1c2a4e-0000-4000-8000-000000000001";
    pr.name = "Aminata Diallo";
    Napsync__V1__Organisation org = NAPSYNC__V1__ORGANISATION__INIT;
    org.id = "6f1c2a4e-0000-4000-8000-000000000002";
    org.name = "Minist\xc3\xa8re de la Sant\xc3\xa9";
    org.kind = "ministry";
    org.country = "SN";
    Napsync__V1__Device dev = NAPSYNC__V1__DEVICE__INIT;
    dev.id = "6f1c2a4e-0000-4000-8000-000000000003";
    dev.name = "laptop";
    char *roles[] = {"coordinator", "observer"};
    Napsync__V1__Welcome w = NAPSYNC__V1__WELCOME__INIT;
    w.version = 1;
    w.server_name = "napsyncd";
    w.server_version = "0.1.0";
    w.session_id = "7f3a";
    w.principal = &pr;
    w.organisation = &org;
    w.device = &dev;
    w.n_roles = 2;
    w.roles = roles;
    w.max_frame_size = 1048576;
    w.idle_timeout_ms = 300000;
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.request_id = UINT64_MAX;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_WELCOME;
    e.welcome = &w;

    ns_envelope *out = round_trip(&e);
    const Napsync__V1__Welcome *o = out->welcome;
    assert_non_null(o);
    assert_int_equal(o->version, 1);
    assert_string_equal(o->server_name, "napsyncd");
    assert_string_equal(o->server_version, "0.1.0");
    assert_string_equal(o->session_id, "7f3a");
    assert_non_null(o->principal);
    assert_string_equal(o->principal->id, pr.id);
    assert_string_equal(o->principal->name, "Aminata Diallo");
    assert_non_null(o->organisation);
    assert_string_equal(o->organisation->name, org.name);
    assert_string_equal(o->organisation->kind, "ministry");
    assert_string_equal(o->organisation->country, "SN");
    assert_non_null(o->device);
    assert_string_equal(o->device->name, "laptop");
    assert_int_equal(o->n_roles, 2);
    assert_string_equal(o->roles[0], "coordinator");
    assert_string_equal(o->roles[1], "observer");
    assert_int_equal(o->max_frame_size, 1048576);
    assert_int_equal(o->idle_timeout_ms, 300000);
    ns_envelope_free(out);
}

static void test_ping_pong_round_trip(void **state)
{
    (void)state;
    static const uint8_t payload[] = {0, 1, 2, 0xff, 0, 'p'};
    Napsync__V1__Ping p = NAPSYNC__V1__PING__INIT;
    p.payload.data = (uint8_t *)payload;
    p.payload.len = sizeof(payload);
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.request_id = 42;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_PING;
    e.ping = &p;
    ns_envelope *out = round_trip(&e);
    assert_non_null(out->ping);
    assert_int_equal(out->ping->payload.len, sizeof(payload));
    assert_memory_equal(out->ping->payload.data, payload, sizeof(payload));
    ns_envelope_free(out);

    Napsync__V1__Pong q = NAPSYNC__V1__PONG__INIT;
    ns_envelope f = NAPSYNC__V1__ENVELOPE__INIT;
    f.request_id = 42;
    f.body_case = NAPSYNC__V1__ENVELOPE__BODY_PONG;
    f.pong = &q; /* empty payload */
    out = round_trip(&f);
    assert_non_null(out->pong);
    assert_int_equal(out->pong->payload.len, 0);
    ns_envelope_free(out);
}

static void test_error_round_trip(void **state)
{
    (void)state;
    Napsync__V1__Error er = NAPSYNC__V1__ERROR__INIT;
    er.code = NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE;
    er.message = "database unavailable";
    er.fatal = 0;
    er.retry_after_ms = 2500;
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.request_id = 7;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_ERROR;
    e.error = &er;
    ns_envelope *out = round_trip(&e);
    assert_non_null(out->error);
    assert_int_equal(out->error->code, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE);
    assert_string_equal(out->error->message, "database unavailable");
    assert_false(out->error->fatal);
    assert_int_equal(out->error->retry_after_ms, 2500);
    ns_envelope_free(out);

    er.code = NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED;
    er.fatal = 1;
    er.retry_after_ms = 0;
    e.request_id = 0;
    out = round_trip(&e);
    assert_int_equal(out->error->code, NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED);
    assert_true(out->error->fatal);
    ns_envelope_free(out);
}

static void test_goodbye_round_trip(void **state)
{
    (void)state;
    Napsync__V1__Goodbye g = NAPSYNC__V1__GOODBYE__INIT;
    g.reason = NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_SHUTTING_DOWN;
    g.message = "server stopping";
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_GOODBYE;
    e.goodbye = &g;
    ns_envelope *out = round_trip(&e);
    assert_int_equal(out->goodbye->reason,
                     NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_SHUTTING_DOWN);
    assert_string_equal(out->goodbye->message, "server stopping");
    ns_envelope_free(out);
}

/* An Envelope with no body is zero bytes, and zero bytes are that Envelope. */
static void test_empty_envelope(void **state)
{
    (void)state;
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    size_t len;
    uint8_t *buf = pack(&e, &len);
    assert_int_equal(len, 0);
    ns_envelope *out = ns_envelope_unpack(buf, 0);
    assert_non_null(out);
    assert_int_equal(out->request_id, 0);
    assert_int_equal(out->body_case, NAPSYNC__V1__ENVELOPE__BODY__NOT_SET);
    ns_envelope_free(out);
    free(buf);
    ns_envelope_free(NULL);
}

/* A body from a later protocol version is an unknown field: the Envelope
 * still decodes, so the receiver can answer UNSUPPORTED_MESSAGE with the
 * request id. */
static void test_unknown_body_decodes(void **state)
{
    (void)state;
    uint8_t buf[3 + 3 + 100];
    size_t n = 0;
    buf[n++] = 0x08; /* field 1, varint: request_id = 9 */
    buf[n++] = 0x09;
    buf[n++] = 0x9a; /* field 99, length-delimited: 0x31a = (99 << 3) | 2 */
    buf[n++] = 0x06;
    buf[n++] = 100;
    memset(buf + n, 0x55, 100);
    n += 100;
    ns_envelope *out = ns_envelope_unpack(buf, n);
    assert_non_null(out);
    assert_int_equal(out->request_id, 9);
    assert_int_equal(out->body_case, NAPSYNC__V1__ENVELOPE__BODY__NOT_SET);
    ns_envelope_free(out);
}

/* A large, legitimate message fits the budget. */
static void test_large_ping_fits_budget(void **state)
{
    (void)state;
    size_t plen = 1024 * 1024;
    uint8_t *payload = malloc(plen);
    assert_non_null(payload);
    for (size_t i = 0; i < plen; i++)
        payload[i] = (uint8_t)(i * 13);
    Napsync__V1__Ping p = NAPSYNC__V1__PING__INIT;
    p.payload.data = payload;
    p.payload.len = plen;
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.request_id = 5;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_PING;
    e.ping = &p;
    ns_envelope *out = round_trip(&e);
    assert_int_equal(out->ping->payload.len, plen);
    assert_memory_equal(out->ping->payload.data, payload, plen);
    ns_envelope_free(out);
    free(payload);
}

/* A well-formed frame crafted to make the decoder allocate far more than its
 * own size (each 3-byte unknown field costs a 24-byte record and a copy of
 * its value) is refused by the budget instead of being decoded.
 * LeakSanitizer checks that the partial message is freed on that path. */
static void test_budget_refuses_amplification(void **state)
{
    (void)state;
    size_t count = 200000;
    uint8_t *buf = malloc(3 * count);
    assert_non_null(buf);
    for (size_t i = 0; i < count; i++) {
        buf[3 * i] = 0xf8; /* field 1023 (unknown), varint: a 2-byte tag */
        buf[3 * i + 1] = 0x3f;
        buf[3 * i + 2] = 0x00;
    }
    assert_null(ns_envelope_unpack(buf, 3 * count));
    /* a handful of the same fields is fine */
    ns_envelope *out = ns_envelope_unpack(buf, 3 * 16);
    assert_non_null(out);
    ns_envelope_free(out);
    free(buf);
}

/* ---- garbage ------------------------------------------------------------- */

/* A NUL byte inside a string, at any depth (Envelope > Push > Mutation >
 * FieldSet > Field > Value > text), makes the frame malformed: protobuf-c
 * would hand over the string cut at the NUL. Bytes and unknown fields may
 * hold NULs. */
static void test_nul_in_strings_refused(void **state)
{
    (void)state;
    Napsync__V1__Value v = NAPSYNC__V1__VALUE__INIT;
    v.kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    v.text_value = "ab@cd";
    Napsync__V1__Field fld = NAPSYNC__V1__FIELD__INIT;
    fld.name = "title";
    fld.value = &v;
    Napsync__V1__Field *fp[1] = {&fld};
    Napsync__V1__FieldSet set = NAPSYNC__V1__FIELD_SET__INIT;
    set.n_fields = 1;
    set.fields = fp;
    Napsync__V1__Mutation m = NAPSYNC__V1__MUTATION__INIT;
    m.mutation_id = "m";
    m.entity_type = "plan";
    m.record_id = "r";
    m.fields = &set;
    Napsync__V1__Mutation *mp[1] = {&m};
    Napsync__V1__Push push = NAPSYNC__V1__PUSH__INIT;
    push.n_mutations = 1;
    push.mutations = mp;
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.request_id = 7;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_PUSH;
    e.push = &push;
    size_t len;
    uint8_t *buf = pack(&e, &len);
    ns_envelope *ok = ns_envelope_unpack(buf, len);
    assert_non_null(ok);
    assert_string_equal(ok->push->mutations[0]->fields->fields[0]->value->text_value, "ab@cd");
    ns_envelope_free(ok);
    /* The same bytes with the '@' turned into a NUL. */
    uint8_t *at = memchr(buf, '@', len);
    assert_non_null(at);
    *at = 0;
    assert_null(ns_envelope_unpack(buf, len));
    free(buf);

    /* A NUL in a bytes field (a Ping's payload) is data. */
    uint8_t payload[3] = {'x', 0, 'y'};
    Napsync__V1__Ping ping = NAPSYNC__V1__PING__INIT;
    ping.payload.data = payload;
    ping.payload.len = sizeof(payload);
    ns_envelope pe = NAPSYNC__V1__ENVELOPE__INIT;
    pe.body_case = NAPSYNC__V1__ENVELOPE__BODY_PING;
    pe.ping = &ping;
    buf = pack(&pe, &len);
    ns_envelope *pok = ns_envelope_unpack(buf, len);
    assert_non_null(pok);
    assert_int_equal(pok->ping->payload.len, 3);
    ns_envelope_free(pok);
    free(buf);

    /* An unknown field (number 99, length-delimited) holding a NUL is kept
     * as unknown bytes, not read as a string. */
    uint8_t unknown[] = {0x08, 0x01, 0x9a, 0x06, 0x03, 'a', 0, 'b'};
    ns_envelope *u = ns_envelope_unpack(unknown, sizeof(unknown));
    assert_non_null(u);
    assert_int_equal(u->request_id, 1);
    ns_envelope_free(u);
}

static void test_known_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    } cases[] = {
        {"truncated tag", {0x80}, 1},
        {"tag without value", {0x08}, 1},
        {"truncated varint", {0x08, 0x80}, 2},
        {"varint longer than 10 bytes",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         12},
        {"length past the end", {0x1a, 0x05, 0x08, 0x01}, 4},
        {"huge length", {0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f}, 6},
        {"bad varint inside a body", {0x1a, 0x02, 0x08, 0x80}, 4},
        {"wire type 7", {0x0f, 0x00}, 2},
        {"wire type 6", {0x0e, 0x00}, 2},
        {"field number 0", {0x00, 0x00}, 2},
        {"end group without start", {0x0c}, 1},
        {"body with wrong wire type", {0x18, 0x01}, 2},
        {"string field truncated", {0x1a, 0x04, 0x1a, 0x05, 'a', 'b'}, 6},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ns_envelope *out = ns_envelope_unpack(cases[i].bytes, cases[i].len);
        if (out != NULL) {
            ns_envelope_free(out);
            fail_msg("decoded malformed input: %s", cases[i].what);
        }
    }
}

/* Cutting a valid encoding anywhere must give NULL, except where the cut
 * falls between top-level fields: before anything, or after request_id. */
static void check_truncations(const ns_envelope *e)
{
    size_t len;
    uint8_t *full = pack(e, &len);
    size_t rid_len = e->request_id ? varint_field_len(e->request_id) : 0;
    for (size_t cut = 0; cut < len; cut++) {
        /* an exact-size copy, so ASan sees any read past the cut */
        uint8_t *b = malloc(cut ? cut : 1);
        assert_non_null(b);
        memcpy(b, full, cut);
        ns_envelope *out = ns_envelope_unpack(b, cut);
        int boundary = cut == 0 || cut == rid_len;
        if (boundary) {
            if (out == NULL)
                fail_msg("prefix of %zu bytes (a field boundary) refused", cut);
            assert_int_equal(out->body_case, NAPSYNC__V1__ENVELOPE__BODY__NOT_SET);
        } else if (out != NULL) {
            ns_envelope_free(out);
            fail_msg("truncation to %zu of %zu bytes decoded", cut, len);
        }
        ns_envelope_free(out);
        free(b);
    }
    free(full);
}

static void test_truncated_encodings(void **state)
{
    (void)state;
    Napsync__V1__Hello h = NAPSYNC__V1__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 1;
    h.client_name = "napsync-cli";
    h.client_version = "0.1.0";
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.request_id = 300;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    check_truncations(&e);

    Napsync__V1__Principal pr = NAPSYNC__V1__PRINCIPAL__INIT;
    pr.id = "p";
    pr.name = "Principal";
    Napsync__V1__Organisation org = NAPSYNC__V1__ORGANISATION__INIT;
    org.name = "Org";
    char *roles[] = {"admin", "regional"};
    Napsync__V1__Welcome w = NAPSYNC__V1__WELCOME__INIT;
    w.version = 1;
    w.server_name = "napsyncd";
    w.principal = &pr;
    w.organisation = &org;
    w.n_roles = 2;
    w.roles = roles;
    w.max_frame_size = 1048576;
    e.request_id = 0x123456789ULL;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_WELCOME;
    e.welcome = &w;
    check_truncations(&e);

    static uint8_t pl[] = "0123456789";
    Napsync__V1__Ping p = NAPSYNC__V1__PING__INIT;
    p.payload.data = pl;
    p.payload.len = 10;
    e.request_id = 1;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_PING;
    e.ping = &p;
    check_truncations(&e);

    Napsync__V1__Error er = NAPSYNC__V1__ERROR__INIT;
    er.code = NAPSYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED;
    er.message = "send Hello first";
    er.fatal = 1;
    er.retry_after_ms = 1;
    e.request_id = 0; /* no request_id field: only the empty prefix decodes */
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_ERROR;
    e.error = &er;
    check_truncations(&e);
}

/* Random bytes never crash the decoder. Whatever it does accept must be a
 * real Envelope: it packs again and decodes to the same thing. */
static void test_random_garbage(void **state)
{
    (void)state;
    uint64_t rng = 0x656e76656c6f7065ULL; /* fixed: failures must reproduce */
    uint8_t buf[512];
    size_t refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = 1 + (size_t)(rng_next(&rng) % sizeof(buf));
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rng_next(&rng);
        ns_envelope *out = ns_envelope_unpack(buf, len);
        if (out == NULL) {
            refused++;
            continue;
        }
        ns_envelope_free(round_trip(out));
        ns_envelope_free(out);
    }
    /* noise is overwhelmingly invalid; if it all decoded, unpack would not
     * be checking anything */
    assert_true(refused > 15000);
}

/* Valid encodings with a few bytes changed: the likeliest hostile input. */
static void test_mutated_encodings(void **state)
{
    (void)state;
    char *roles[] = {"coordinator"};
    Napsync__V1__Principal pr = NAPSYNC__V1__PRINCIPAL__INIT;
    pr.name = "someone";
    Napsync__V1__Welcome w = NAPSYNC__V1__WELCOME__INIT;
    w.version = 1;
    w.server_name = "napsyncd";
    w.session_id = "abcd";
    w.principal = &pr;
    w.n_roles = 1;
    w.roles = roles;
    ns_envelope e = NAPSYNC__V1__ENVELOPE__INIT;
    e.request_id = 77;
    e.body_case = NAPSYNC__V1__ENVELOPE__BODY_WELCOME;
    e.welcome = &w;
    size_t len;
    uint8_t *full = pack(&e, &len);
    uint8_t *b = malloc(len);
    assert_non_null(b);
    uint64_t rng = 0x6d75746174650aULL;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(b, full, len);
        int flips = 1 + (int)(rng_next(&rng) % 3);
        for (int k = 0; k < flips; k++)
            b[rng_next(&rng) % len] = (uint8_t)rng_next(&rng);
        ns_envelope *out = ns_envelope_unpack(b, len);
        ns_envelope_free(out);
    }
    free(b);
    free(full);
}

/* ---- ns_text_ok ---------------------------------------------------------- */

static void expect_text(const char *s, size_t max, bool ok)
{
    if (ns_text_ok(s, max) != ok) {
        char hex[128] = "";
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *)s; *p && o + 4 < sizeof(hex); p++)
            o += (size_t)snprintf(hex + o, sizeof(hex) - o, "%02x ", *p);
        fail_msg("ns_text_ok(\"%s\", %zu) should be %s", hex, max, ok ? "true" : "false");
    }
}

static void test_text_ascii(void **state)
{
    (void)state;
    expect_text("", 0, true);
    expect_text("", 64, true);
    expect_text("napsync-cli 0.1.0", 64, true);
    expect_text("tab\tis allowed", 64, true);
    expect_text("~ !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", 64, true);
}

static void test_text_control_chars(void **state)
{
    (void)state;
    expect_text("line\nbreak", 64, false);
    expect_text("carriage\rreturn", 64, false);
    expect_text("\x01", 64, false);
    expect_text("bell\x07", 64, false);
    expect_text("\x1b[31mred", 64, false);
    expect_text("\x1f", 64, false);
    expect_text("del\x7f", 64, false);
    /* C1 controls are control characters too; U+009B is an 8-bit CSI that
     * some terminals obey like ESC [ */
    expect_text("\xc2\x80", 64, false);
    expect_text("\xc2\x85", 64, false);
    expect_text("\xc2\x9b"
                "31m",
                64, false);
    expect_text("\xc2\x9f", 64, false);
    /* the first character after them is fine */
    expect_text("\xc2\xa0", 64, true);
}

static void test_text_multibyte(void **state)
{
    (void)state;
    expect_text("\xc3\xa9", 64, true);                 /* é U+00E9 */
    expect_text("\xdf\xbf", 64, true);                 /* U+07FF, last 2-byte */
    expect_text("\xe0\xa0\x80", 64, true);             /* U+0800, first 3-byte */
    expect_text("\xe2\x82\xac", 64, true);             /* € */
    expect_text("\xe6\x97\xa5\xe6\x9c\xac", 64, true); /* 日本 */
    expect_text("\xed\x9f\xbf", 64, true);             /* U+D7FF, before surrogates */
    expect_text("\xee\x80\x80", 64, true);             /* U+E000, after them */
    expect_text("\xef\xbf\xbd", 64, true);             /* U+FFFD */
    expect_text("\xf0\x90\x80\x80", 64, true);         /* U+10000, first 4-byte */
    expect_text("\xf0\x9f\x8c\x8d", 64, true);         /* 🌍 */
    expect_text("\xf4\x8f\xbf\xbf", 64, true);         /* U+10FFFF, the last */
    expect_text("Gr\xc3\xbc\xc3\x9f"
                "e \xe2\x80\x94 \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85",
                64, true);
}

static void test_text_overlong(void **state)
{
    (void)state;
    expect_text("\xc0\x80", 64, false);             /* NUL */
    expect_text("\xc0\xaf", 64, false);             /* '/' */
    expect_text("\xc1\xbf", 64, false);             /* U+007F */
    expect_text("\xe0\x80\x80", 64, false);         /* NUL in 3 bytes */
    expect_text("\xe0\x9f\xbf", 64, false);         /* U+07FF in 3 bytes */
    expect_text("\xf0\x80\x80\x80", 64, false);     /* NUL in 4 bytes */
    expect_text("\xf0\x8f\xbf\xbf", 64, false);     /* U+FFFF in 4 bytes */
    expect_text("\xf8\x88\x80\x80\x80", 64, false); /* 5-byte form */
    expect_text("\xfc\x84\x80\x80\x80\x80", 64, false);
}

static void test_text_surrogates(void **state)
{
    (void)state;
    expect_text("\xed\xa0\x80", 64, false); /* U+D800 */
    expect_text("\xed\xaf\xbf", 64, false); /* U+DBFF */
    expect_text("\xed\xb0\x80", 64, false); /* U+DC00 */
    expect_text("\xed\xbf\xbf", 64, false); /* U+DFFF */
    /* a CESU-8 pair for U+10000 */
    expect_text("\xed\xa0\x80\xed\xb0\x80", 64, false);
}

static void test_text_beyond_unicode(void **state)
{
    (void)state;
    expect_text("\xf4\x90\x80\x80", 64, false); /* U+110000 */
    expect_text("\xf5\x80\x80\x80", 64, false);
    expect_text("\xf7\xbf\xbf\xbf", 64, false); /* U+1FFFFF */
    expect_text("\xfe", 64, false);
    expect_text("\xff", 64, false);
}

static void test_text_bad_sequences(void **state)
{
    (void)state;
    expect_text("\x80", 64, false); /* lone continuation bytes */
    expect_text("\xbf", 64, false);
    expect_text("a\x80"
                "b",
                64, false);
    expect_text("\xc3", 64, false); /* truncated at the end of the string */
    expect_text("\xe2\x82", 64, false);
    expect_text("\xf0\x9f\x8c", 64, false);
    expect_text("\xc3"
                "A",
                64, false); /* truncated, then ASCII */
    expect_text("\xe2\x82"
                "A",
                64, false);
    expect_text("\xf0\x9f\x8c"
                "A",
                64, false);
    expect_text("\xc3\xa9\xa9", 64, false); /* one continuation too many */
}

/* A truncated sequence at the very end of an exactly sized buffer: the
 * check must stop at the NUL, not read past it (ASan would tell). */
static void test_text_truncated_no_overread(void **state)
{
    (void)state;
    static const char *tails[] = {"\xc3", "\xe2\x82", "\xf0\x9f\x8c", "\xf0"};
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        size_t n = strlen(tails[i]) + 1;
        char *s = malloc(n);
        assert_non_null(s);
        memcpy(s, tails[i], n);
        expect_text(s, 64, false);
        free(s);
    }
}

static void test_text_max_bytes(void **state)
{
    (void)state;
    expect_text("abcd", 4, true);
    expect_text("abcd", 3, false);
    expect_text("a", 0, false);
    expect_text("\xc3\xa9", 2, true); /* the limit counts bytes, not characters */
    expect_text("\xc3\xa9", 1, false);
    expect_text("a\xc3\xa9", 2, false); /* a character straddling the limit */
    expect_text("\xf0\x9f\x8c\x8d", 4, true);
    expect_text("\xf0\x9f\x8c\x8d", 3, false);

    char s[66];
    memset(s, 'x', 65);
    s[65] = '\0';
    expect_text(s, 65, true);
    expect_text(s, 64, false);
    s[64] = '\0';
    expect_text(s, 64, true);
}

/* ---- ns_error_code_name -------------------------------------------------- */

static void test_error_code_names(void **state)
{
    (void)state;
    assert_string_equal(ns_error_code_name(NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED),
                        "UNSPECIFIED");
    assert_string_equal(ns_error_code_name(NAPSYNC__V1__ERROR_CODE__ERROR_CODE_MALFORMED),
                        "MALFORMED");
    assert_string_equal(ns_error_code_name(NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_DEVICE),
                        "UNKNOWN_DEVICE");
    assert_string_equal(ns_error_code_name(NAPSYNC__V1__ERROR_CODE__ERROR_CODE_DEVICE_REVOKED),
                        "DEVICE_REVOKED");
    assert_string_equal(ns_error_code_name(NAPSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY), "BUSY");
    assert_string_equal(ns_error_code_name(-1), "UNKNOWN");
    assert_string_equal(ns_error_code_name(9999), "UNKNOWN");

    /* every code has a short, distinct name */
    const ProtobufCEnumDescriptor *d = &napsync__v1__error_code__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        const char *name = ns_error_code_name(d->values[i].value);
        assert_true(strlen(name) > 0);
        assert_null(strstr(name, "ERROR_CODE_"));
        assert_string_not_equal(name, "UNKNOWN");
        for (unsigned j = 0; j < i; j++)
            assert_string_not_equal(name, ns_error_code_name(d->values[j].value));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_welcome_round_trip),
        cmocka_unit_test(test_ping_pong_round_trip),
        cmocka_unit_test(test_error_round_trip),
        cmocka_unit_test(test_goodbye_round_trip),
        cmocka_unit_test(test_empty_envelope),
        cmocka_unit_test(test_unknown_body_decodes),
        cmocka_unit_test(test_large_ping_fits_budget),
        cmocka_unit_test(test_budget_refuses_amplification),
        cmocka_unit_test(test_known_malformed),
        cmocka_unit_test(test_nul_in_strings_refused),
        cmocka_unit_test(test_truncated_encodings),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_mutated_encodings),
        cmocka_unit_test(test_text_ascii),
        cmocka_unit_test(test_text_control_chars),
        cmocka_unit_test(test_text_multibyte),
        cmocka_unit_test(test_text_overlong),
        cmocka_unit_test(test_text_surrogates),
        cmocka_unit_test(test_text_beyond_unicode),
        cmocka_unit_test(test_text_bad_sequences),
        cmocka_unit_test(test_text_truncated_no_overread),
        cmocka_unit_test(test_text_max_bytes),
        cmocka_unit_test(test_error_code_names),
    };
    return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
