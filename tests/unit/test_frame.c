/* Frame codec: proto/frame.h. The decoder must give the same frames however
 * the byte stream is cut into reads, and must refuse an oversized length
 * before it allocates anything for that frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

/* ---- helpers ------------------------------------------------------------- */

/* A byte stream of whole frames plus what each frame's payload should be. */
typedef struct {
    uint8_t *bytes;
    size_t len;
    size_t nframes;
    size_t *frame_len;
    size_t *frame_off; /* offset of each payload inside bytes */
} stream;

static uint8_t payload_byte(size_t frame, size_t i)
{
    return (uint8_t)(frame * 31u + i * 7u + 1u);
}

static void stream_build(stream *s, const size_t *lens, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += NS_FRAME_HEADER_SIZE + lens[i];
    s->bytes = malloc(total ? total : 1);
    s->frame_len = malloc((n ? n : 1) * sizeof(size_t));
    s->frame_off = malloc((n ? n : 1) * sizeof(size_t));
    assert_non_null(s->bytes);
    assert_non_null(s->frame_len);
    assert_non_null(s->frame_off);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        ns_frame_header(s->bytes + pos, (uint32_t)lens[i]);
        pos += NS_FRAME_HEADER_SIZE;
        s->frame_off[i] = pos;
        s->frame_len[i] = lens[i];
        for (size_t j = 0; j < lens[i]; j++)
            s->bytes[pos + j] = payload_byte(i, j);
        pos += lens[i];
    }
    s->len = total;
    s->nframes = n;
}

static void stream_free(stream *s)
{
    free(s->bytes);
    free(s->frame_len);
    free(s->frame_off);
    memset(s, 0, sizeof(*s));
}

/* Takes every complete frame out of d, checking each against s in order.
 * *got counts frames seen so far over the whole stream. */
static void drain_expect(ns_frame_decoder *d, const stream *s, size_t *got)
{
    for (;;) {
        const uint8_t *p = NULL;
        size_t n = 0;
        ns_frame_status st = ns_frame_decoder_next(d, &p, &n);
        if (st == NS_FRAME_NEED_MORE)
            return;
        assert_int_equal(st, NS_FRAME_OK);
        assert_true(*got < s->nframes);
        assert_int_equal(n, s->frame_len[*got]);
        if (n > 0)
            assert_memory_equal(p, s->bytes + s->frame_off[*got], n);
        (*got)++;
    }
}

static void feed_ok(ns_frame_decoder *d, const uint8_t *data, size_t len)
{
    assert_int_equal(ns_frame_decoder_feed(d, data, len), NS_FRAME_OK);
}

static void expect_need_more(ns_frame_decoder *d)
{
    const uint8_t *p;
    size_t n;
    assert_int_equal(ns_frame_decoder_next(d, &p, &n), NS_FRAME_NEED_MORE);
}

/* xorshift64*: a fixed seed gives the same "random" bytes on every machine. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A stream with frames of assorted sizes, including empty ones and ones
 * whose headers and payloads straddle any split point. */
static const size_t mixed_lens[] = {0, 1, 3, 0, 255, 256, 257, 4, 1000, 0, 2, 513};
#define MIXED_N (sizeof(mixed_lens) / sizeof(mixed_lens[0]))

/* ---- header -------------------------------------------------------------- */

static void test_header_big_endian(void **state)
{
    (void)state;
    uint8_t h[NS_FRAME_HEADER_SIZE];
    ns_frame_header(h, 0x01020304u);
    assert_int_equal(h[0], 0x01);
    assert_int_equal(h[1], 0x02);
    assert_int_equal(h[2], 0x03);
    assert_int_equal(h[3], 0x04);
    ns_frame_header(h, 0);
    assert_int_equal(h[0] | h[1] | h[2] | h[3], 0);
    ns_frame_header(h, UINT32_MAX);
    assert_int_equal(h[0] & h[1] & h[2] & h[3], 0xff);
}

static void test_header_round_trip(void **state)
{
    (void)state;
    static const uint32_t lens[] = {0, 1, 255, 256, 65535, 65536, 1000000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        ns_frame_decoder d;
        ns_frame_decoder_init(&d, NS_FRAME_DEFAULT_MAX);
        uint8_t *buf = calloc(1, NS_FRAME_HEADER_SIZE + lens[i]);
        assert_non_null(buf);
        ns_frame_header(buf, lens[i]);
        if (lens[i] > 0)
            buf[NS_FRAME_HEADER_SIZE + lens[i] - 1] = 0xa5;
        feed_ok(&d, buf, NS_FRAME_HEADER_SIZE + lens[i]);
        const uint8_t *p = NULL;
        size_t n = SIZE_MAX;
        assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
        assert_int_equal(n, lens[i]);
        if (n > 0)
            assert_int_equal(p[n - 1], 0xa5);
        expect_need_more(&d);
        assert_int_equal(ns_frame_decoder_buffered(&d), 0);
        free(buf);
        ns_frame_decoder_free(&d);
    }
}

/* ---- init ---------------------------------------------------------------- */

static void test_init_max_frame(void **state)
{
    (void)state;
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    assert_int_equal(d.max_frame, NS_FRAME_DEFAULT_MAX);
    ns_frame_decoder_free(&d);

    ns_frame_decoder_init(&d, NS_FRAME_MAX_LIMIT + 1u);
    assert_int_equal(d.max_frame, NS_FRAME_DEFAULT_MAX);
    ns_frame_decoder_free(&d);

    ns_frame_decoder_init(&d, UINT32_MAX);
    assert_int_equal(d.max_frame, NS_FRAME_DEFAULT_MAX);
    ns_frame_decoder_free(&d);

    ns_frame_decoder_init(&d, NS_FRAME_MAX_LIMIT);
    assert_int_equal(d.max_frame, NS_FRAME_MAX_LIMIT);
    ns_frame_decoder_free(&d);

    ns_frame_decoder_init(&d, 1);
    assert_int_equal(d.max_frame, 1);
    ns_frame_decoder_free(&d);
}

/* The fallback is not just a field value: the decoder enforces it. */
static void test_init_fallback_is_enforced(void **state)
{
    (void)state;
    static const uint32_t bad[] = {0, NS_FRAME_MAX_LIMIT + 1u};
    for (size_t i = 0; i < 2; i++) {
        ns_frame_decoder d;
        uint8_t h[NS_FRAME_HEADER_SIZE];

        ns_frame_decoder_init(&d, bad[i]);
        ns_frame_header(h, NS_FRAME_DEFAULT_MAX);
        feed_ok(&d, h, sizeof(h));
        expect_need_more(&d);
        ns_frame_decoder_free(&d);

        ns_frame_decoder_init(&d, bad[i]);
        ns_frame_header(h, NS_FRAME_DEFAULT_MAX + 1u);
        assert_int_equal(ns_frame_decoder_feed(&d, h, sizeof(h)), NS_FRAME_TOO_LARGE);
        ns_frame_decoder_free(&d);
    }
}

static void test_empty_decoder(void **state)
{
    (void)state;
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    expect_need_more(&d);
    assert_int_equal(ns_frame_decoder_buffered(&d), 0);
    feed_ok(&d, NULL, 0);
    expect_need_more(&d);
    assert_int_equal(ns_frame_decoder_feed(&d, NULL, 1), NS_FRAME_INVALID_ARG);
    ns_frame_decoder_free(&d);
    /* free leaves a state that can be freed again */
    ns_frame_decoder_free(&d);
}

/* ---- partial reads ------------------------------------------------------- */

static void test_partial_reads(void **state)
{
    (void)state;
    static const uint8_t frame[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);

    feed_ok(&d, frame, 2); /* half a header */
    expect_need_more(&d);
    assert_int_equal(ns_frame_decoder_buffered(&d), 2);

    feed_ok(&d, frame + 2, 2); /* header complete, no payload */
    expect_need_more(&d);
    assert_int_equal(ns_frame_decoder_buffered(&d), 4);

    feed_ok(&d, frame + 4, 4); /* all but the last payload byte */
    expect_need_more(&d);
    assert_int_equal(ns_frame_decoder_buffered(&d), 8);

    feed_ok(&d, frame + 8, 1);
    const uint8_t *p;
    size_t n;
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(p, "hello", 5);
    expect_need_more(&d);
    assert_int_equal(ns_frame_decoder_buffered(&d), 0);
    ns_frame_decoder_free(&d);
}

/* Feeds the whole of s to a new decoder in pieces that end at the ascending
 * offsets cuts[0..ncuts) and then at s->len. It drains after every piece,
 * or only after the last when drain_each is false, and must get every frame
 * of s in order with nothing left over. */
static void decode_in_pieces(const stream *s, const size_t *cuts, size_t ncuts, bool drain_each)
{
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    size_t got = 0;
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : s->len;
        assert_true(from <= to && to <= s->len);
        feed_ok(&d, s->bytes + from, to - from);
        if (drain_each || i == ncuts)
            drain_expect(&d, s, &got);
        from = to;
    }
    assert_int_equal(got, s->nframes);
    assert_int_equal(ns_frame_decoder_buffered(&d), 0);
    ns_frame_decoder_free(&d);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    stream s;
    stream_build(&s, mixed_lens, MIXED_N);
    /* a cut after every byte: s.len pieces of one byte */
    size_t *cuts = malloc(s.len * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i + 1 < s.len; i++)
        cuts[i] = i + 1;
    decode_in_pieces(&s, cuts, s.len - 1, true);
    free(cuts);
    stream_free(&s);
}

/* Every split point, draining after each half: the frames and their order
 * must not depend on where the read boundary fell. */
static void test_split_at_every_byte(void **state)
{
    (void)state;
    stream s;
    stream_build(&s, mixed_lens, MIXED_N);
    for (size_t cut = 0; cut <= s.len; cut++)
        decode_in_pieces(&s, &cut, 1, true);
    stream_free(&s);
}

/* Same, but the reader only drains after both halves arrived. */
static void test_split_at_every_byte_drain_late(void **state)
{
    (void)state;
    stream s;
    stream_build(&s, mixed_lens, MIXED_N);
    for (size_t cut = 0; cut <= s.len; cut++)
        decode_in_pieces(&s, &cut, 1, false);
    stream_free(&s);
}

/* Three cuts, so a frame can also be split in three (header | part | rest). */
static void test_split_in_three(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 9, 2, 0, 17};
    stream s;
    stream_build(&s, lens, sizeof(lens) / sizeof(lens[0]));
    for (size_t a = 0; a <= s.len; a++)
        for (size_t b = a; b <= s.len; b++)
            decode_in_pieces(&s, (const size_t[]){a, b}, 2, true);
    stream_free(&s);
}

/* ---- several frames, zero-length, many frames ------------------------------ */

static void test_several_frames_one_feed(void **state)
{
    (void)state;
    static const size_t lens[] = {3, 0, 11};
    stream s;
    stream_build(&s, lens, 3);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    feed_ok(&d, s.bytes, s.len);
    assert_int_equal(ns_frame_decoder_buffered(&d), s.len);
    size_t got = 0;
    drain_expect(&d, &s, &got);
    assert_int_equal(got, 3);
    assert_int_equal(ns_frame_decoder_buffered(&d), 0);
    ns_frame_decoder_free(&d);
    stream_free(&s);
}

/* Whole frames followed by a partial one: the whole ones come out, the tail
 * waits for the rest. */
static void test_frames_then_partial(void **state)
{
    (void)state;
    static const size_t lens[] = {2, 6};
    stream s;
    stream_build(&s, lens, 2);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    size_t got = 0;
    feed_ok(&d, s.bytes, s.len - 3);
    drain_expect(&d, &s, &got);
    assert_int_equal(got, 1);
    assert_int_equal(ns_frame_decoder_buffered(&d), NS_FRAME_HEADER_SIZE + 6 - 3);
    feed_ok(&d, s.bytes + s.len - 3, 3);
    drain_expect(&d, &s, &got);
    assert_int_equal(got, 2);
    ns_frame_decoder_free(&d);
    stream_free(&s);
}

static void test_zero_length_frames(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'x', 0, 0, 0, 0};
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    feed_ok(&d, bytes, sizeof(bytes));
    const uint8_t *p;
    size_t n;
    n = 99;
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 0);
    n = 99;
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 1);
    assert_int_equal(p[0], 'x');
    n = 99;
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 0);
    expect_need_more(&d);
    ns_frame_decoder_free(&d);
}

/* A zero-length frame is legal even with the smallest maximum. */
static void test_zero_length_with_max_one(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0, 0, 0, 0, 0, 0, 0, 1, 'y'};
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 1);
    feed_ok(&d, bytes, sizeof(bytes));
    const uint8_t *p;
    size_t n;
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 1);
    assert_int_equal(p[0], 'y');
    ns_frame_decoder_free(&d);
}

static void test_many_tiny_frames_one_feed(void **state)
{
    (void)state;
    enum { N = 10000 };
    size_t *lens = malloc(N * sizeof(size_t));
    assert_non_null(lens);
    for (size_t i = 0; i < N; i++)
        lens[i] = i % 3; /* 0, 1, 2 bytes */
    stream s;
    stream_build(&s, lens, N);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    feed_ok(&d, s.bytes, s.len);
    size_t got = 0;
    drain_expect(&d, &s, &got);
    assert_int_equal(got, N);
    assert_int_equal(ns_frame_decoder_buffered(&d), 0);
    ns_frame_decoder_free(&d);
    stream_free(&s);
    free(lens);
}

/* A long conversation whose frames are consumed as they arrive must not
 * make the buffer grow with the length of the conversation. */
static void test_buffer_reused_when_drained(void **state)
{
    (void)state;
    static const size_t lens[] = {100, 0, 37};
    stream s;
    stream_build(&s, lens, 3);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    for (int round = 0; round < 2000; round++) {
        size_t got = 0;
        /* a ragged split so partial frames carry over between feeds */
        size_t cut = (size_t)round % s.len;
        feed_ok(&d, s.bytes, cut);
        drain_expect(&d, &s, &got);
        feed_ok(&d, s.bytes + cut, s.len - cut);
        drain_expect(&d, &s, &got);
        assert_int_equal(got, 3);
    }
    assert_true(d.cap <= 4 * s.len);
    ns_frame_decoder_free(&d);
    stream_free(&s);
}

/* ---- maximum size -------------------------------------------------------- */

static void test_exactly_max_accepted(void **state)
{
    (void)state;
    enum { MAX = 1000 };
    static const size_t lens[] = {MAX, 0, MAX};
    stream s;
    stream_build(&s, lens, 3);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, MAX);
    feed_ok(&d, s.bytes, s.len);
    size_t got = 0;
    drain_expect(&d, &s, &got);
    assert_int_equal(got, 3);
    ns_frame_decoder_free(&d);
    stream_free(&s);
}

static void test_default_max_accepted(void **state)
{
    (void)state;
    static const size_t lens[] = {NS_FRAME_DEFAULT_MAX};
    stream s;
    stream_build(&s, lens, 1);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    /* in uneven reads, like a socket would deliver it */
    size_t got = 0;
    for (size_t pos = 0; pos < s.len;) {
        size_t chunk = s.len - pos < 16381 ? s.len - pos : 16381;
        feed_ok(&d, s.bytes + pos, chunk);
        pos += chunk;
        drain_expect(&d, &s, &got);
    }
    assert_int_equal(got, 1);
    ns_frame_decoder_free(&d);
    stream_free(&s);
}

static void test_max_plus_one_refused(void **state)
{
    (void)state;
    enum { MAX = 1000 };
    uint8_t h[NS_FRAME_HEADER_SIZE];
    ns_frame_header(h, MAX + 1);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, MAX);
    /* The verdict comes with the fourth header byte, not before. */
    feed_ok(&d, h, 1);
    feed_ok(&d, h + 1, 1);
    feed_ok(&d, h + 2, 1);
    assert_int_equal(ns_frame_decoder_feed(&d, h + 3, 1), NS_FRAME_TOO_LARGE);
    const uint8_t *p;
    size_t n;
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_TOO_LARGE);
    ns_frame_decoder_free(&d);
}

/* A header announcing 2 GiB must be refused from the header alone: the
 * decoder may not have grown its buffer for the announced length. */
static void test_huge_header_refused_before_allocation(void **state)
{
    (void)state;
    static const uint32_t huge[] = {0x80000000u, UINT32_MAX, NS_FRAME_MAX_LIMIT + 1u,
                                    NS_FRAME_DEFAULT_MAX + 1u};
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        uint8_t buf[NS_FRAME_HEADER_SIZE + 64];
        memset(buf, 0x41, sizeof(buf));
        ns_frame_header(buf, huge[i]);
        ns_frame_decoder d;
        ns_frame_decoder_init(&d, 0);
        /* with payload bytes following in the same read */
        assert_int_equal(ns_frame_decoder_feed(&d, buf, sizeof(buf)), NS_FRAME_TOO_LARGE);
        assert_true(ns_frame_decoder_buffered(&d) <= NS_FRAME_HEADER_SIZE);
        assert_true(d.cap <= 4096);
        ns_frame_decoder_free(&d);
    }
}

/* Same after a valid frame in the same read: the valid frame is still
 * handed out (its request deserves an answer), then TOO_LARGE. */
static void test_huge_header_after_valid_frame(void **state)
{
    (void)state;
    uint8_t buf[2 * NS_FRAME_HEADER_SIZE + 3 + 16];
    memset(buf, 0x42, sizeof(buf));
    ns_frame_header(buf, 3);
    ns_frame_header(buf + NS_FRAME_HEADER_SIZE + 3, 0x80000000u);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    assert_int_equal(ns_frame_decoder_feed(&d, buf, sizeof(buf)), NS_FRAME_TOO_LARGE);
    assert_true(ns_frame_decoder_buffered(&d) <= 2 * NS_FRAME_HEADER_SIZE + 3);
    assert_true(d.cap <= 4096);
    const uint8_t *p;
    size_t n;
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(p, buf + NS_FRAME_HEADER_SIZE, 3);
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_TOO_LARGE);
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_TOO_LARGE);
    ns_frame_decoder_free(&d);
}

/* A legal but large announced length is not allocated up front either: a
 * peer that announces 64 MiB and then goes quiet costs only what it sent. */
static void test_large_header_grows_with_data(void **state)
{
    (void)state;
    uint8_t buf[NS_FRAME_HEADER_SIZE + 100];
    memset(buf, 0x43, sizeof(buf));
    ns_frame_header(buf, NS_FRAME_MAX_LIMIT);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, NS_FRAME_MAX_LIMIT);
    feed_ok(&d, buf, sizeof(buf));
    expect_need_more(&d);
    assert_int_equal(ns_frame_decoder_buffered(&d), sizeof(buf));
    assert_true(d.cap <= 4096);
    ns_frame_decoder_free(&d);
}

static void test_sticky_failure(void **state)
{
    (void)state;
    static const uint8_t good[] = {0, 0, 0, 1, 'z'};
    uint8_t bad[NS_FRAME_HEADER_SIZE];
    ns_frame_header(bad, 0x80000000u);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    assert_int_equal(ns_frame_decoder_feed(&d, bad, sizeof(bad)), NS_FRAME_TOO_LARGE);
    /* nothing afterwards revives the stream */
    assert_int_equal(ns_frame_decoder_feed(&d, good, sizeof(good)), NS_FRAME_TOO_LARGE);
    assert_int_equal(ns_frame_decoder_feed(&d, NULL, 0), NS_FRAME_TOO_LARGE);
    const uint8_t *p;
    size_t n;
    for (int i = 0; i < 3; i++)
        assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_TOO_LARGE);
    ns_frame_decoder_free(&d);
}

/* ---- payload lifetime ---------------------------------------------------- */

/* The payload points into the decoder's own buffer (no copy) and holds the
 * frame; a later feed that forces the buffer to move still yields correct
 * frames. ASan checks that nothing reads freed memory. */
static void test_payload_pointer(void **state)
{
    (void)state;
    static const size_t lens[] = {5, 3000, 7};
    stream s;
    stream_build(&s, lens, 3);
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, 0);
    /* first frame and a sliver of the second */
    size_t first = NS_FRAME_HEADER_SIZE + 5 + 2;
    feed_ok(&d, s.bytes, first);
    const uint8_t *p;
    size_t n;
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 5);
    assert_true(p >= d.buf && p + n <= d.buf + d.len);
    assert_memory_equal(p, s.bytes + s.frame_off[0], 5);
    size_t cap_before = d.cap;
    /* the rest: large enough to need a bigger buffer */
    feed_ok(&d, s.bytes + first, s.len - first);
    assert_true(d.cap > cap_before);
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 3000);
    assert_true(p >= d.buf && p + n <= d.buf + d.len);
    assert_memory_equal(p, s.bytes + s.frame_off[1], 3000);
    assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_OK);
    assert_int_equal(n, 7);
    assert_memory_equal(p, s.bytes + s.frame_off[2], 7);
    ns_frame_decoder_free(&d);
    stream_free(&s);
}

/* ---- garbage ------------------------------------------------------------- */

/* What a correct decoder must make of a byte stream: the frames before the
 * first oversized header, then either TOO_LARGE or a partial tail. */
typedef struct {
    size_t nframes;
    size_t off[4096];
    size_t len[4096];
    int too_large;
    size_t tail; /* bytes of an incomplete frame at the end */
} reference;

static void reference_parse(const uint8_t *b, size_t len, uint32_t max, reference *r)
{
    memset(r, 0, sizeof(*r));
    size_t pos = 0;
    while (len - pos >= NS_FRAME_HEADER_SIZE) {
        uint32_t flen = ((uint32_t)b[pos] << 24) | ((uint32_t)b[pos + 1] << 16) |
                        ((uint32_t)b[pos + 2] << 8) | b[pos + 3];
        if (flen > max) {
            r->too_large = 1;
            return;
        }
        if (len - pos - NS_FRAME_HEADER_SIZE < flen)
            break;
        assert_true(r->nframes < sizeof(r->off) / sizeof(r->off[0]));
        r->off[r->nframes] = pos + NS_FRAME_HEADER_SIZE;
        r->len[r->nframes] = flen;
        r->nframes++;
        pos += NS_FRAME_HEADER_SIZE + flen;
    }
    r->tail = len - pos;
}

/* Feeds b in chunks chosen by rng, draining after each feed. Frames that
 * come out must be exactly the reference's, in order, including every whole
 * frame before an oversized header, which then ends the stream with
 * TOO_LARGE; a stream without one must keep only the tail. */
static void check_garbage(const uint8_t *b, size_t len, uint32_t max, uint64_t *rng,
                          const reference *r)
{
    ns_frame_decoder d;
    ns_frame_decoder_init(&d, max);
    size_t got = 0;
    int failed = 0;
    size_t pos = 0;
    while (pos < len && !failed) {
        size_t chunk = 1 + (size_t)(rng_next(rng) % 64);
        if (chunk > len - pos)
            chunk = len - pos;
        ns_frame_status st = ns_frame_decoder_feed(&d, b + pos, chunk);
        pos += chunk;
        /* TOO_LARGE from feed still leaves the whole frames before the bad
         * header to be taken; next() reports TOO_LARGE after them. */
        assert_true(st == NS_FRAME_OK || st == NS_FRAME_TOO_LARGE);
        for (;;) {
            const uint8_t *p;
            size_t n;
            st = ns_frame_decoder_next(&d, &p, &n);
            if (st == NS_FRAME_NEED_MORE)
                break;
            if (st == NS_FRAME_TOO_LARGE) {
                failed = 1;
                break;
            }
            assert_int_equal(st, NS_FRAME_OK);
            assert_true(got < r->nframes);
            assert_int_equal(n, r->len[got]);
            if (n > 0)
                assert_memory_equal(p, b + r->off[got], n);
            got++;
        }
    }
    assert_int_equal(failed, r->too_large);
    /* never more memory than the bytes that actually arrived justify */
    assert_true(d.cap <= 256 || d.cap < 2 * pos);
    if (failed) {
        const uint8_t *p;
        size_t n;
        assert_int_equal(got, r->nframes);
        assert_int_equal(ns_frame_decoder_next(&d, &p, &n), NS_FRAME_TOO_LARGE);
    } else {
        assert_int_equal(got, r->nframes);
        assert_int_equal(ns_frame_decoder_buffered(&d), r->tail);
    }
    ns_frame_decoder_free(&d);
}

static void test_garbage(void **state)
{
    (void)state;
    static reference r;
    uint64_t rng = 0x6e617073796e63ULL; /* fixed: failures must reproduce */
    uint8_t buf[2048];
    int saw_frames = 0, saw_too_large = 0, saw_clean = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = (size_t)(rng_next(&rng) % sizeof(buf));
        /* Half the streams are uniform noise (almost always an oversized
         * first header); the rest lean towards zero bytes so that plausible
         * small lengths, and thus real frames, come up too. */
        int zeroish = iter % 2;
        for (size_t i = 0; i < len; i++) {
            uint64_t v = rng_next(&rng);
            buf[i] = (zeroish && (v >> 40) % 4 != 0) ? 0 : (uint8_t)v;
        }
        uint32_t max = (iter % 3 == 0) ? 0 : (uint32_t)(1 + rng_next(&rng) % 300);
        reference_parse(buf, len, max ? max : NS_FRAME_DEFAULT_MAX, &r);
        check_garbage(buf, len, max, &rng, &r);
        saw_frames |= r.nframes > 0;
        saw_too_large |= r.too_large;
        saw_clean |= !r.too_large;
    }
    /* the generator really exercised both outcomes */
    assert_true(saw_frames);
    assert_true(saw_too_large);
    assert_true(saw_clean);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_big_endian),
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_init_max_frame),
        cmocka_unit_test(test_init_fallback_is_enforced),
        cmocka_unit_test(test_empty_decoder),
        cmocka_unit_test(test_partial_reads),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_split_at_every_byte),
        cmocka_unit_test(test_split_at_every_byte_drain_late),
        cmocka_unit_test(test_split_in_three),
        cmocka_unit_test(test_several_frames_one_feed),
        cmocka_unit_test(test_frames_then_partial),
        cmocka_unit_test(test_zero_length_frames),
        cmocka_unit_test(test_zero_length_with_max_one),
        cmocka_unit_test(test_many_tiny_frames_one_feed),
        cmocka_unit_test(test_buffer_reused_when_drained),
        cmocka_unit_test(test_exactly_max_accepted),
        cmocka_unit_test(test_default_max_accepted),
        cmocka_unit_test(test_max_plus_one_refused),
        cmocka_unit_test(test_huge_header_refused_before_allocation),
        cmocka_unit_test(test_huge_header_after_valid_frame),
        cmocka_unit_test(test_large_header_grows_with_data),
        cmocka_unit_test(test_sticky_failure),
        cmocka_unit_test(test_payload_pointer),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
