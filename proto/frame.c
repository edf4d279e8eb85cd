#include "frame.h"

#include <stdlib.h>
#include <string.h>

void ns_frame_decoder_init(ns_frame_decoder *d, uint32_t max_frame)
{
    memset(d, 0, sizeof(*d));
    if (max_frame == 0 || max_frame > NS_FRAME_MAX_LIMIT)
        max_frame = NS_FRAME_DEFAULT_MAX;
    d->max_frame = max_frame;
}

void ns_frame_decoder_free(ns_frame_decoder *d)
{
    free(d->buf);
    memset(d, 0, sizeof(*d));
}

static uint32_t read_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void ns_frame_header(uint8_t out[NS_FRAME_HEADER_SIZE], uint32_t payload_len)
{
    out[0] = (uint8_t)(payload_len >> 24);
    out[1] = (uint8_t)(payload_len >> 16);
    out[2] = (uint8_t)(payload_len >> 8);
    out[3] = (uint8_t)payload_len;
}

size_t ns_frame_decoder_buffered(const ns_frame_decoder *d)
{
    return d->len - d->head;
}

/* Drop consumed bytes so the buffer never holds more than the unread tail. */
static void compact(ns_frame_decoder *d)
{
    if (d->head == 0)
        return;
    size_t live = d->len - d->head;
    if (live > 0)
        memmove(d->buf, d->buf + d->head, live);
    d->len = live;
    d->scan -= d->head;
    d->head = 0;
}

/* Moves d->scan over every complete frame and validates the header of the
 * frame being assembled, so a hostile length is refused before any buffer
 * grows for it. Returns the bytes still missing from that frame (at least 1). */
static ns_frame_status advance_scan(ns_frame_decoder *d, size_t *missing)
{
    for (;;) {
        size_t avail = d->len - d->scan;
        if (avail < NS_FRAME_HEADER_SIZE) {
            *missing = NS_FRAME_HEADER_SIZE - avail;
            return NS_FRAME_OK;
        }
        uint32_t flen = read_be32(d->buf + d->scan);
        if (flen > d->max_frame) {
            d->failed = 1;
            return NS_FRAME_TOO_LARGE;
        }
        size_t end = d->scan + NS_FRAME_HEADER_SIZE + flen;
        if (end > d->len) {
            *missing = end - d->len;
            return NS_FRAME_OK;
        }
        d->scan = end;
    }
}

static ns_frame_status reserve(ns_frame_decoder *d, size_t extra)
{
    if (d->len + extra <= d->cap)
        return NS_FRAME_OK;
    size_t ncap = d->cap ? d->cap : 256;
    while (ncap < d->len + extra)
        ncap *= 2;
    uint8_t *nb = realloc(d->buf, ncap);
    if (nb == NULL)
        return NS_FRAME_NOMEM;
    d->buf = nb;
    d->cap = ncap;
    return NS_FRAME_OK;
}

ns_frame_status ns_frame_decoder_feed(ns_frame_decoder *d, const uint8_t *data, size_t len)
{
    if (d->failed)
        return NS_FRAME_TOO_LARGE;
    if (len == 0)
        return NS_FRAME_OK;
    if (data == NULL)
        return NS_FRAME_INVALID_ARG;
    compact(d);
    while (len > 0) {
        size_t missing;
        ns_frame_status st = advance_scan(d, &missing);
        if (st != NS_FRAME_OK)
            return st;
        size_t take = missing < len ? missing : len;
        st = reserve(d, take);
        if (st != NS_FRAME_OK)
            return st;
        memcpy(d->buf + d->len, data, take);
        d->len += take;
        data += take;
        len -= take;
    }
    size_t missing;
    return advance_scan(d, &missing);
}

ns_frame_status ns_frame_decoder_next(ns_frame_decoder *d, const uint8_t **payload, size_t *len)
{
    /* Whole frames that arrived before the oversized header are still
     * served, so a peer's earlier requests get their answers. */
    if (d->failed && d->head >= d->scan)
        return NS_FRAME_TOO_LARGE;
    size_t avail = d->len - d->head;
    if (avail < NS_FRAME_HEADER_SIZE)
        return NS_FRAME_NEED_MORE;
    uint32_t flen = read_be32(d->buf + d->head);
    if (flen > d->max_frame) {
        d->failed = 1;
        return NS_FRAME_TOO_LARGE;
    }
    if (avail - NS_FRAME_HEADER_SIZE < flen)
        return NS_FRAME_NEED_MORE;
    *payload = d->buf + d->head + NS_FRAME_HEADER_SIZE;
    *len = flen;
    d->head += NS_FRAME_HEADER_SIZE + (size_t)flen;
    return NS_FRAME_OK;
}
