/* Hostile input: one bad session must never disturb another.
 *
 * Session B authenticates in the group setup and then stays idle while a
 * fresh session A misbehaves in each test. After each, B must still answer a
 * ping and a new session must authenticate. The last tests restart the
 * daemon with a session limit of 1, and with short handshake and idle
 * timeouts. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "harness.h"

#define MAX_FRAME         65536u
#define KEEPALIVE_POLL_MS 200

#define ERR(name)  NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name
#define BODY(name) NAPSYNC__V1__ENVELOPE__BODY_##name

typedef struct {
    nst_env *e;
    nst_device dev;
    nst_raw b; /* the bystander session */
    uint64_t b_rid;
} fixture;
NST_FIXTURE_CHECK(fixture);

static const char *const default_flags[] = {"--max-frame-size", "65536", NULL};

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    f->b.fd = -1;
    const nst_member m[] = {
        {&f->dev, "field-tablet", "mogender", "Field Officer", "coordinator", NULL, NULL},
    };
    return nst_group_start(&f->e, "hostile", default_flags, m, NST_COUNT(m));
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f != NULL)
        nst_raw_close(&f->b);
    return nst_group_teardown(state);
}

/* B is authenticated (once, lazily, so a failure is a test failure). */
static void ensure_b(fixture *f)
{
    if (f->b.ssl != NULL)
        return;
    f->b_rid = 1000;
    nst_must_raw_auth(f->e, &f->b, &f->dev, f->b_rid++);
}

static void b_ping(fixture *f)
{
    nst_must_raw_ping(f->e, &f->b, f->b_rid++);
}

/* What must hold after every misbehaving session. */
static void others_unaffected(fixture *f)
{
    b_ping(f);
    nst_raw fresh;
    nst_must_raw_auth(f->e, &fresh, &f->dev, 1);
    nst_must_raw_ping(f->e, &fresh, 2);
    nst_raw_close(&fresh);
    b_ping(f);
}

static void send_frame(fixture *f, nst_raw *r, const void *payload, size_t len)
{
    uint8_t *buf = NULL;
    size_t blen = 0;
    assert_int_equal(nst_frame_append(&buf, &blen, payload, len), 0);
    nst_must_raw_write(f->e, r, buf, blen);
    free(buf);
}

/* Not an Envelope: field 1 with wire type 7, which protobuf does not have. */
static const uint8_t garbage[] = {0x0f, 0xff, 0xfe, 0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef};

static void test_garbage_payload(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    ns_envelope *probe = ns_envelope_unpack(garbage, sizeof(garbage));
    assert_null(probe); /* the test's own premise */

    /* Authenticated session. */
    nst_raw a;
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    send_frame(f, &a, garbage, sizeof(garbage));
    nst_expect_fatal_error(f->e, &a, 0, ERR(MALFORMED));
    nst_raw_close(&a);
    others_unaffected(f);

    /* Before Hello. */
    nst_must_raw_tls(f->e, &a, &f->dev);
    send_frame(f, &a, garbage, sizeof(garbage));
    nst_expect_fatal_error(f->e, &a, 0, ERR(MALFORMED));
    nst_raw_close(&a);
    others_unaffected(f);
    nst_test_passed(f->e);
}

static void oversized_header(fixture *f, uint32_t announced)
{
    nst_raw a;
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    uint8_t hdr[NS_FRAME_HEADER_SIZE];
    ns_frame_header(hdr, announced);
    /* The header alone: the daemon must refuse before any body arrives. */
    nst_must_raw_write(f->e, &a, hdr, sizeof(hdr));
    nst_expect_fatal_error(f->e, &a, 0, ERR(FRAME_TOO_LARGE));
    nst_raw_close(&a);
    others_unaffected(f);
}

static void test_frame_one_above_maximum(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    oversized_header(f, MAX_FRAME + 1);
    nst_test_passed(f->e);
}

static void test_frame_header_2_pow_31(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    oversized_header(f, 0x80000000u);
    oversized_header(f, 0xffffffffu);
    nst_test_passed(f->e);
}

/* A frame of exactly the maximum is read and answered: here a Ping whose
 * payload is over the ping limit, refused with a non-fatal error. */
static void test_frame_at_maximum_accepted(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    size_t plen = MAX_FRAME - 16;
    uint8_t *payload = calloc(1, MAX_FRAME);
    assert_non_null(payload);
    uint8_t *frame = NULL;
    size_t flen = 0;
    for (; plen < MAX_FRAME; plen++) {
        free(frame);
        frame = NULL;
        flen = 0;
        assert_int_equal(nst_frame_append_ping(&frame, &flen, 5, payload, plen), 0);
        if (flen - NS_FRAME_HEADER_SIZE >= MAX_FRAME)
            break;
    }
    free(payload);
    assert_int_equal(flen - NS_FRAME_HEADER_SIZE, MAX_FRAME);

    nst_raw a;
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    nst_must_raw_write(f->e, &a, frame, flen);
    free(frame);
    nst_expect_error(f->e, &a, 5, ERR(INVALID_ARGUMENT), false);
    nst_must_raw_ping(f->e, &a, 6);
    nst_raw_close(&a);
    others_unaffected(f);
    nst_test_passed(f->e);
}

/* The payload of ping rid in test_final_frames_survive_unread_input: the
 * largest a Ping may carry, so that the answers outgrow the sockets' buffers. */
static void train_payload(uint64_t rid, uint8_t out[64])
{
    for (size_t i = 0; i < 64; i += sizeof(rid))
        memcpy(out + i, &rid, sizeof(rid));
}

/* A client sends a train of pings without reading, then a frame above the
 * maximum (header and body, as a client would send it), and reads only once
 * the daemon has refused it. Every Pong must still arrive, in order, then
 * the Error, then close_notify. The Pongs are more than the sockets can
 * buffer, so the daemon still has answers to transmit when it closes; the
 * body it never reads must not turn that close into a TCP reset, which
 * would throw those answers away. */
static void test_final_frames_survive_unread_input(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    enum { NPINGS = 3000 };
    nst_raw a;
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    uint8_t *buf = NULL;
    size_t len = 0;
    uint8_t payload[64];
    for (uint64_t rid = 2; rid < 2 + NPINGS; rid++) {
        train_payload(rid, payload);
        assert_int_equal(nst_frame_append_ping(&buf, &len, rid, payload, sizeof(payload)), 0);
    }
    uint8_t *body = calloc(1, MAX_FRAME + 1);
    assert_non_null(body);
    assert_int_equal(nst_frame_append(&buf, &len, body, MAX_FRAME + 1), 0);
    free(body);
    size_t log_from = nst_log_size(f->e);
    nst_must_raw_write(f->e, &a, buf, len);
    free(buf);
    /* Read only after the daemon has answered everything and begun to
     * close, so that its close meets a client that has not read yet. */
    if (nst_log_wait(f->e, log_from, "error FRAME_TOO_LARGE", NST_WAIT_MS) != 0)
        nst_fail(f->e, "the daemon did not refuse the oversized frame");
    nst_sleep_ms(300);
    for (uint64_t rid = 2; rid < 2 + NPINGS; rid++) {
        train_payload(rid, payload);
        nst_expect_pong(f->e, &a, rid, payload, sizeof(payload));
    }
    nst_expect_error(f->e, &a, 0, ERR(FRAME_TOO_LARGE), true);
    nst_expect_close_notify(f->e, &a);
    nst_raw_close(&a);
    others_unaffected(f);
    nst_test_passed(f->e);
}

/* Writes buf one byte per TLS record. */
static void write_bytewise(fixture *f, nst_raw *r, const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (nst_raw_write(r, buf + i, 1) != 0)
            nst_fail(f->e, "write of byte %zu failed: %s", i, r->error);
}

static void test_frame_split_into_single_bytes(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    nst_raw a;
    nst_must_raw_tls(f->e, &a, &f->dev);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(nst_frame_append_hello(&buf, &len, 11, 1, 1), 0);
    write_bytewise(f, &a, buf, len);
    free(buf);
    nst_expect_welcome(f->e, &a, 11, &f->dev);

    static const char payload[] = "split";
    buf = NULL;
    len = 0;
    assert_int_equal(nst_frame_append_ping(&buf, &len, 12, payload, 5), 0);
    write_bytewise(f, &a, buf, len);
    free(buf);
    nst_expect_pong(f->e, &a, 12, payload, 5);
    nst_raw_close(&a);
    others_unaffected(f);
    nst_test_passed(f->e);
}

/* Hello and a train of pings in one write: the pings wait behind the Hello's
 * database lookup and are all answered, in order. */
static void test_many_frames_in_one_write(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    enum { NPINGS = 64 };
    nst_raw a;
    nst_must_raw_tls(f->e, &a, &f->dev);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(nst_frame_append_hello(&buf, &len, 1, 1, 1), 0);
    for (uint64_t rid = 2; rid < 2 + NPINGS; rid++) {
        char p[16];
        int n = snprintf(p, sizeof(p), "p%llu", (unsigned long long)rid);
        assert_int_equal(nst_frame_append_ping(&buf, &len, rid, p, (size_t)n), 0);
    }
    nst_must_raw_write(f->e, &a, buf, len);
    free(buf);

    nst_expect_welcome(f->e, &a, 1, &f->dev);
    for (uint64_t rid = 2; rid < 2 + NPINGS; rid++) {
        char p[16];
        int n = snprintf(p, sizeof(p), "p%llu", (unsigned long long)rid);
        nst_expect_pong(f->e, &a, rid, p, (size_t)n);
    }
    nst_raw_close(&a);
    others_unaffected(f);
    nst_test_passed(f->e);
}

static void test_truncated_frame_then_close(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    /* Half a frame, then the TCP connection goes away without close_notify. */
    nst_raw a;
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    uint8_t part[NS_FRAME_HEADER_SIZE + 10] = {0};
    ns_frame_header(part, 100);
    nst_must_raw_write(f->e, &a, part, sizeof(part));
    nst_raw_abort(&a);
    others_unaffected(f);

    /* Half a TLS record: a header announcing 64 bytes, then 10 of them. */
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    static const uint8_t record[] = {0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(write(a.fd, record, sizeof(record)), (ssize_t)sizeof(record));
    nst_raw_abort(&a);
    others_unaffected(f);
    nst_test_passed(f->e);
}

static void test_plain_http_without_tls(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    int fd = nst_tcp_connect(f->e->port);
    assert_true(fd >= 0);
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    if (nst_fd_wait_closed(fd, NST_WAIT_MS) != 0) {
        close(fd);
        nst_fail(f->e, "the daemon kept a plain-text HTTP connection open");
    }
    close(fd);
    others_unaffected(f);
    nst_test_passed(f->e);
}

static void test_unknown_envelope_body(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    /* request_id = 77, then field 99 (length-delimited, 2 bytes): a message
     * from a newer protocol that this server cannot know. */
    static const uint8_t future[] = {0x08, 77, 0x9a, 0x06, 0x02, 'h', 'i'};
    ns_envelope *probe = ns_envelope_unpack(future, sizeof(future));
    assert_non_null(probe);
    assert_int_equal(probe->body_case, NAPSYNC__V1__ENVELOPE__BODY__NOT_SET);
    assert_int_equal(probe->request_id, 77);
    ns_envelope_free(probe);

    nst_raw a;
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    send_frame(f, &a, future, sizeof(future));
    nst_expect_error(f->e, &a, 77, ERR(UNSUPPORTED_MESSAGE), false);
    nst_must_raw_ping(f->e, &a, 78);
    /* An empty frame is an Envelope with no body at all: the same answer. */
    send_frame(f, &a, NULL, 0);
    nst_expect_error(f->e, &a, 0, ERR(UNSUPPORTED_MESSAGE), false);
    nst_must_raw_ping(f->e, &a, 79);
    nst_raw_close(&a);
    others_unaffected(f);
    nst_test_passed(f->e);
}

/* An Envelope from a newer protocol (field 99) with a one-byte request id. */
static void append_future(uint8_t **buf, size_t *len, uint64_t rid)
{
    assert_true(rid < 128);
    const uint8_t future[] = {0x08, (uint8_t)rid, 0x9a, 0x06, 0x02, 'h', 'i'};
    assert_int_equal(nst_frame_append(buf, len, future, sizeof(future)), 0);
}

/* A client that sends only what the daemon cannot serve gets a bounded
 * number of answers: after 64 refusals in a row the session ends with a
 * fatal MALFORMED, and the rest of what it sent is dropped. */
static void test_invalid_request_flood_closes_session(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    enum { NFRAMES = 100, LIMIT = 64 };
    nst_raw a;
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    uint8_t *buf = NULL;
    size_t len = 0;
    for (int i = 0; i < NFRAMES; i++)
        assert_int_equal(nst_frame_append(&buf, &len, NULL, 0), 0); /* an empty Envelope */
    nst_must_raw_write(f->e, &a, buf, len);
    free(buf);
    for (int i = 0; i < LIMIT; i++)
        nst_expect_error(f->e, &a, 0, ERR(UNSUPPORTED_MESSAGE), false);
    nst_expect_error(f->e, &a, 0, ERR(MALFORMED), true);
    nst_expect_close_notify(f->e, &a);
    nst_raw_close(&a);
    /* The client chose how many refusals it got: they are not worth an
     * info line each. */
    const char *const info_line[] = {"level=info", "error UNSUPPORTED_MESSAGE", NULL};
    if (nst_log_has_line(f->e, info_line))
        nst_fail(f->e, "a refused request was logged at info level");
    others_unaffected(f);
    nst_test_passed(f->e);
}

/* The limit counts refusals in a row: a session whose requests mostly fail
 * but that also makes valid ones is served for as long as it likes. */
static void test_invalid_requests_between_valid_ones(void **state)
{
    fixture *f = *state;
    ensure_b(f);
    enum { ROUNDS = 10, PER_ROUND = 10 };
    nst_raw a;
    nst_must_raw_auth(f->e, &a, &f->dev, 1);
    uint64_t rid = 2;
    for (int round = 0; round < ROUNDS; round++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        uint64_t first = rid;
        for (int i = 0; i < PER_ROUND; i++)
            append_future(&buf, &len, rid++);
        assert_int_equal(nst_frame_append_ping(&buf, &len, rid, "ok", 2), 0);
        nst_must_raw_write(f->e, &a, buf, len);
        free(buf);
        for (uint64_t r = first; r < rid; r++)
            nst_expect_error(f->e, &a, r, ERR(UNSUPPORTED_MESSAGE), false);
        nst_expect_pong(f->e, &a, rid++, "ok", 2);
    }
    nst_must_raw_ping(f->e, &a, rid);
    nst_raw_close(&a);
    others_unaffected(f);
    nst_test_passed(f->e);
}

/* Reads r's next frame or close, pinging B meanwhile so that B, unlike r,
 * is never idle long enough to be closed. */
static nst_read_status read_keeping_b(fixture *f, nst_raw *r, ns_envelope **out)
{
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    for (;;) {
        nst_read_status st = nst_raw_read(r, KEEPALIVE_POLL_MS, out);
        if (st != NST_READ_TIMEOUT || nst_now_ms() >= deadline)
            return st;
        b_ping(f);
    }
}

static void expect_idle_goodbye(fixture *f, nst_raw *r)
{
    ns_envelope *env = NULL;
    nst_read_status st = read_keeping_b(f, r, &env);
    if (st != NST_READ_FRAME)
        nst_fail(f->e, "expected Goodbye IDLE, got status %d: %s", st, r->error);
    if (env->body_case != BODY(GOODBYE) ||
        env->goodbye->reason != NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_IDLE) {
        int body = env->body_case;
        ns_envelope_free(env);
        nst_fail(f->e, "expected Goodbye IDLE, got a frame with body %d", body);
    }
    assert_int_equal(env->request_id, 0);
    ns_envelope_free(env);
    env = NULL;
    st = read_keeping_b(f, r, &env);
    ns_envelope_free(env);
    if (st != NST_READ_CLOSED)
        nst_fail(f->e, "the idle session was not closed after Goodbye (status %d)", st);
}

/* Error{TIMEOUT, fatal} for a session that did not say Hello in time, then
 * close_notify. */
static void expect_hello_timeout(fixture *f, nst_raw *r)
{
    ns_envelope *env = NULL;
    nst_read_status st = read_keeping_b(f, r, &env);
    if (st != NST_READ_FRAME)
        nst_fail(f->e, "expected Error TIMEOUT, got status %d: %s", st, r->error);
    bool timeout = env->body_case == BODY(ERROR) && env->error->code == ERR(TIMEOUT) &&
                   env->error->fatal && env->request_id == 0;
    int body = env->body_case;
    ns_envelope_free(env);
    if (!timeout)
        nst_fail(f->e, "expected a fatal Error TIMEOUT, got a frame with body %d", body);
    env = NULL;
    st = read_keeping_b(f, r, &env);
    ns_envelope_free(env);
    if (st != NST_READ_CLOSED || r->closed_ssl_error != SSL_ERROR_ZERO_RETURN)
        nst_fail(f->e, "the session was not closed with close_notify after TIMEOUT (status %d): %s",
                 st, r->error);
}

static void restart_daemon(fixture *f, const char *const *flags)
{
    nst_raw_close(&f->b);
    if (nst_daemon_stop(f->e, SIGTERM, NST_STOP_MS) != 0)
        nst_fail(f->e, "napsyncd did not stop cleanly before the restart");
    if (nst_daemon_start(f->e, flags) != 0)
        nst_fail(f->e, "napsyncd did not start again");
}

/* Authenticates r while the daemon is at its session limit of 1: a session
 * that has just gone (the harness's probe of the port, a closed one) may
 * hold the place a moment longer, so BUSY is retried until NST_WAIT_MS. */
static void auth_when_free(fixture *f, nst_raw *r, uint64_t rid)
{
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    for (;;) {
        nst_must_raw_tls(f->e, r, &f->dev);
        assert_int_equal(nst_raw_send_hello(r, rid, 1, 1), 0);
        ns_envelope *env = NULL;
        nst_read_status st = nst_raw_read(r, NST_WAIT_MS, &env);
        bool welcome = st == NST_READ_FRAME && env->body_case == BODY(WELCOME);
        bool busy =
            st == NST_READ_FRAME && env->body_case == BODY(ERROR) && env->error->code == ERR(BUSY);
        ns_envelope_free(env);
        if (welcome)
            return;
        nst_raw_close(r);
        if (!busy || nst_now_ms() >= deadline)
            nst_fail(f->e, "no session could start at the session limit (status %d)", st);
        nst_sleep_ms(100);
    }
}

/* Refused connections (here: over the session limit) must not stop the
 * daemon from accepting the next ones. */
static void test_accepting_continues_after_refusals(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    static const char *const flags[] = {"--max-frame-size", "65536", "--max-sessions", "1", NULL};
    restart_daemon(f, flags);
    f->b_rid = 1000;
    auth_when_free(f, &f->b, f->b_rid++); /* B is the one session allowed */
    enum { REFUSALS = 20 };
    for (int i = 0; i < REFUSALS; i++) {
        nst_raw r;
        nst_must_raw_tls(e, &r, &f->dev);
        nst_expect_error(e, &r, 0, ERR(BUSY), true);
        nst_expect_close_notify(e, &r);
        nst_raw_close(&r);
        /* And connections that go away before TLS. */
        int fd = nst_tcp_connect(e->port);
        assert_true(fd >= 0);
        close(fd);
    }
    b_ping(f);
    /* Once B has gone, its place is free. */
    nst_raw_close(&f->b);
    nst_raw r;
    auth_when_free(f, &r, 1);
    nst_must_raw_ping(e, &r, 2);
    nst_raw_close(&r);
    nst_test_passed(e);
}

static void test_handshake_and_idle_timeouts(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    static const char *const flags[] = {"--max-frame-size",
                                        "65536",
                                        "--handshake-timeout-ms",
                                        "1000",
                                        "--idle-timeout-ms",
                                        "2000",
                                        NULL};
    restart_daemon(f, flags);
    ensure_b(f);

    /* TCP without a single TLS byte: cut at the handshake deadline. */
    int fd = nst_tcp_connect(e->port);
    assert_true(fd >= 0);
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    int closed;
    while ((closed = nst_fd_wait_closed(fd, KEEPALIVE_POLL_MS)) != 0 && nst_now_ms() < deadline)
        b_ping(f);
    close(fd);
    if (closed != 0)
        nst_fail(e, "a connection that never started TLS was not closed");
    others_unaffected(f);

    /* TLS up but no Hello: Error TIMEOUT at the handshake deadline. An
     * authenticated session that goes silent: Goodbye IDLE. Both are
     * closed, while B (pinging) stays. */
    nst_raw quiet, silent;
    nst_must_raw_tls(e, &quiet, &f->dev);
    nst_must_raw_auth(e, &silent, &f->dev, 1);
    expect_hello_timeout(f, &quiet);
    expect_idle_goodbye(f, &silent);
    nst_raw_close(&quiet);
    nst_raw_close(&silent);
    others_unaffected(f);
    nst_test_passed(e);
}

/* Without any idle timeout, a session that completes TLS but never says
 * Hello is still bounded by the handshake timeout, however slowly it
 * trickles the bytes of a frame that would complete only later. */
static void test_hello_deadline_without_idle_timeout(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    static const char *const flags[] = {"--max-frame-size",
                                        "65536",
                                        "--handshake-timeout-ms",
                                        "1000",
                                        "--idle-timeout-ms",
                                        "0",
                                        NULL};
    restart_daemon(f, flags);
    ensure_b(f);
    nst_raw quiet, trickle;
    nst_must_raw_tls(e, &quiet, &f->dev);
    nst_must_raw_tls(e, &trickle, &f->dev);
    uint8_t *hello = NULL;
    size_t len = 0;
    assert_int_equal(nst_frame_append_hello(&hello, &len, 1, 1, 1), 0);
    /* A byte every 250 ms: the Hello would be whole after several seconds. */
    ns_envelope *env = NULL;
    nst_read_status st = NST_READ_TIMEOUT;
    uint64_t deadline = nst_now_ms() + NST_WAIT_MS;
    for (size_t i = 0; st == NST_READ_TIMEOUT && nst_now_ms() < deadline; i++) {
        if (i < len)
            (void)nst_raw_write(&trickle, hello + i, 1); /* fails once closed */
        st = nst_raw_read(&trickle, 250, &env);
    }
    free(hello);
    bool timeout = st == NST_READ_FRAME && env->body_case == BODY(ERROR) &&
                   env->error->code == ERR(TIMEOUT) && env->error->fatal;
    ns_envelope_free(env);
    if (!timeout)
        nst_fail(e, "the trickling session did not get Error TIMEOUT (status %d): %s", st,
                 trickle.error);
    nst_expect_close_notify(e, &trickle);
    expect_hello_timeout(f, &quiet);
    nst_raw_close(&quiet);
    nst_raw_close(&trickle);
    others_unaffected(f);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_garbage_payload),
        NST_TEST(test_frame_one_above_maximum),
        NST_TEST(test_frame_header_2_pow_31),
        NST_TEST(test_frame_at_maximum_accepted),
        NST_TEST(test_final_frames_survive_unread_input),
        NST_TEST(test_frame_split_into_single_bytes),
        NST_TEST(test_many_frames_in_one_write),
        NST_TEST(test_truncated_frame_then_close),
        NST_TEST(test_plain_http_without_tls),
        NST_TEST(test_unknown_envelope_body),
        NST_TEST(test_invalid_request_flood_closes_session),
        NST_TEST(test_invalid_requests_between_valid_ones),
        /* Last: each restarts the daemon with other settings. */
        NST_TEST(test_accepting_continues_after_refusals),
        NST_TEST(test_handshake_and_idle_timeouts),
        NST_TEST(test_hello_deadline_without_idle_timeout),
    };
    return cmocka_run_group_tests_name("integration: hostile input", tests, group_setup,
                                       group_teardown);
}
