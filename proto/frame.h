/* Frame codec: a 4-byte big-endian length, then that many bytes of payload.
 *
 * The decoder is pure (no I/O): feed it bytes as they arrive, in any split,
 * and take whole frames out. A frame's length is checked against the maximum
 * as soon as its header is complete, before any buffer grows for it. */
#ifndef NS_FRAME_H
#define NS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define NS_FRAME_HEADER_SIZE 4
/* No configuration may raise the maximum frame size above this. */
#define NS_FRAME_MAX_LIMIT   (64u * 1024u * 1024u)
#define NS_FRAME_DEFAULT_MAX (1024u * 1024u)

typedef enum {
    NS_FRAME_OK = 0,
    NS_FRAME_NEED_MORE = 1,  /* no whole frame buffered yet */
    NS_FRAME_TOO_LARGE = -1, /* a header announced more than the maximum */
    NS_FRAME_NOMEM = -2,
    NS_FRAME_INVALID_ARG = -3,
} ns_frame_status;

typedef struct {
    uint8_t *buf; /* owned; freed by ns_frame_decoder_free */
    size_t len;   /* bytes buffered */
    size_t cap;
    size_t head; /* start of the first frame not yet returned by next() */
    size_t scan; /* start of the first frame not yet complete in buf */
    uint32_t max_frame;
    int failed; /* sticky: an oversized header sits at scan; nothing after it */
} ns_frame_decoder;

void ns_frame_decoder_init(ns_frame_decoder *d, uint32_t max_frame);
void ns_frame_decoder_free(ns_frame_decoder *d);

/* Appends bytes. Fails with NS_FRAME_TOO_LARGE as soon as a complete header
 * announces an oversized frame; nothing of that frame or after it is
 * buffered then, but the whole frames before it are still returned by
 * ns_frame_decoder_next(), which reports TOO_LARGE once they are taken. */
__attribute__((warn_unused_result)) ns_frame_status
ns_frame_decoder_feed(ns_frame_decoder *d, const uint8_t *data, size_t len);

/* Takes the next whole frame. On NS_FRAME_OK, *payload points into the
 * decoder's buffer and stays valid until the next feed/next/free call. */
__attribute__((warn_unused_result)) ns_frame_status
ns_frame_decoder_next(ns_frame_decoder *d, const uint8_t **payload, size_t *len);

/* Bytes buffered but not yet returned as frames. */
size_t ns_frame_decoder_buffered(const ns_frame_decoder *d);

/* Writes the 4-byte header for a payload of the given length. */
void ns_frame_header(uint8_t out[NS_FRAME_HEADER_SIZE], uint32_t payload_len);

#endif
