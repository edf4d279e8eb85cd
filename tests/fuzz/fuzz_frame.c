/* libFuzzer target: the frame codec (proto/frame.c).
 *
 * Input: byte 0 picks the maximum frame size, bytes 1-2 seed the sizes of
 * the chunks the rest is fed in (as a socket would split it); the rest is
 * the byte stream. The decoder's frames, and where it stops for an
 * oversized header, must equal those of a plain reading of the whole
 * stream at once, however it was split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    size_t off; /* of the payload in the stream */
    size_t len;
} ref_frame;

/* The stream read at once: whole frames, and whether a header announcing
 * more than max ends it. */
static size_t reference(const uint8_t *s, size_t n, uint32_t max, ref_frame *out, size_t cap,
                        int *too_large)
{
    size_t count = 0, pos = 0;
    *too_large = 0;
    while (n - pos >= NS_FRAME_HEADER_SIZE) {
        uint32_t len = ((uint32_t)s[pos] << 24) | ((uint32_t)s[pos + 1] << 16) |
                       ((uint32_t)s[pos + 2] << 8) | s[pos + 3];
        if (len > max) {
            *too_large = 1;
            break;
        }
        if (n - pos - NS_FRAME_HEADER_SIZE < len)
            break;
        if (count == cap)
            nsf_die("more frames than bytes");
        out[count].off = pos + NS_FRAME_HEADER_SIZE;
        out[count].len = len;
        count++;
        pos += NS_FRAME_HEADER_SIZE + len;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    /* Small maxima reach the limit often; 0 and 255 are the decoder's
     * own choices (0 falls back to the default). */
    uint32_t max = data[0] == 255 ? NS_FRAME_MAX_LIMIT + 1u : (uint32_t)data[0] * 3u;
    uint32_t rng = ((uint32_t)data[1] << 8) | data[2] | 1u;
    const uint8_t *s = data + 3;
    size_t n = size - 3;

    ns_frame_decoder d;
    ns_frame_decoder_init(&d, max);
    uint32_t eff = d.max_frame;

    size_t cap = n / NS_FRAME_HEADER_SIZE + 1;
    ref_frame *want = malloc(cap * sizeof(*want));
    if (want == NULL)
        return 0;
    int want_too_large;
    size_t nwant = reference(s, n, eff, want, cap, &want_too_large);

    size_t got = 0, pos = 0;
    int too_large = 0;
    while (pos < n && !too_large) {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        size_t chunk = 1 + rng % 64;
        if (chunk > n - pos)
            chunk = n - pos;
        ns_frame_status st = ns_frame_decoder_feed(&d, s + pos, chunk);
        if (st == NS_FRAME_TOO_LARGE)
            too_large = 1;
        else if (st != NS_FRAME_OK)
            nsf_die("feed returned %d", (int)st);
        pos += chunk;
        for (;;) {
            const uint8_t *p;
            size_t len;
            st = ns_frame_decoder_next(&d, &p, &len);
            if (st == NS_FRAME_NEED_MORE)
                break;
            if (st == NS_FRAME_TOO_LARGE) {
                too_large = 1;
                break;
            }
            if (st != NS_FRAME_OK)
                nsf_die("next returned %d", (int)st);
            if (got >= nwant || len != want[got].len ||
                (len && memcmp(p, s + want[got].off, len) != 0))
                nsf_die("frame %zu differs from a plain reading", got);
            got++;
        }
    }
    if (too_large) {
        /* The frames before the oversized header are all served first. */
        const uint8_t *p;
        size_t len;
        if (ns_frame_decoder_next(&d, &p, &len) != NS_FRAME_TOO_LARGE)
            nsf_die("the decoder did not stay failed");
        if (ns_frame_decoder_feed(&d, s, n) != NS_FRAME_TOO_LARGE)
            nsf_die("the decoder took bytes after an oversized header");
    }
    if (got != nwant || too_large != want_too_large)
        nsf_die("%zu frames (oversized: %d) where a plain reading finds %zu (%d)", got, too_large,
                nwant, want_too_large);
    if (!too_large) {
        /* What is left is the incomplete last frame. */
        size_t consumed = nwant ? want[nwant - 1].off + want[nwant - 1].len : 0;
        if (ns_frame_decoder_buffered(&d) != n - consumed)
            nsf_die("%zu bytes buffered, %zu expected", ns_frame_decoder_buffered(&d),
                    n - consumed);
    }
    uint8_t hdr[NS_FRAME_HEADER_SIZE];
    ns_frame_header(hdr, (uint32_t)n);
    if ((((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) | hdr[3]) !=
        (uint32_t)n)
        nsf_die("ns_frame_header does not read back");
    free(want);
    ns_frame_decoder_free(&d);
    return 0;
}
