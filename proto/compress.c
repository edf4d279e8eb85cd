/* zstd frames with the napsync-1 dictionary (compress.h). */
#include "compress.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "zdict.h"

/* zstd's level 3 (its default) costs little CPU and gains most of what
 * higher levels would on frames of a few kilobytes. */
#define NS_COMPRESS_LEVEL 3
/* Below this a frame is sent as it is: a Ping, a Pong, a small answer. */
#define NS_COMPRESS_MIN 96

struct ns_compress {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    ZSTD_CDict *cdict;
    ZSTD_DDict *ddict;
};

ns_compress *ns_compress_new(void)
{
    ns_compress *z = calloc(1, sizeof(*z));
    if (z == NULL)
        return NULL;
    z->cctx = ZSTD_createCCtx();
    z->dctx = ZSTD_createDCtx();
    z->cdict = ZSTD_createCDict(ns_zdict_1, ns_zdict_1_len, NS_COMPRESS_LEVEL);
    z->ddict = ZSTD_createDDict(ns_zdict_1, ns_zdict_1_len);
    if (z->cctx == NULL || z->dctx == NULL || z->cdict == NULL || z->ddict == NULL) {
        ns_compress_free(z);
        return NULL;
    }
    return z;
}

void ns_compress_free(ns_compress *z)
{
    if (z == NULL)
        return;
    ZSTD_freeCCtx(z->cctx);
    ZSTD_freeDCtx(z->dctx);
    ZSTD_freeCDict(z->cdict);
    ZSTD_freeDDict(z->ddict);
    free(z);
}

ns_compress_status ns_compress_pack(ns_compress *z, const ns_envelope *e, uint8_t **out,
                                    size_t *len)
{
    uint8_t *plain;
    size_t plain_len;
    if (ns_envelope_pack(e, &plain, &plain_len) != 0)
        return NS_COMPRESS_NOMEM;
    if (z == NULL || plain_len < NS_COMPRESS_MIN ||
        e->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
        *out = plain;
        *len = plain_len;
        return NS_COMPRESS_OK;
    }
    size_t cap = ZSTD_compressBound(plain_len);
    uint8_t *packed = malloc(cap);
    if (packed == NULL) {
        free(plain);
        return NS_COMPRESS_NOMEM;
    }
    size_t n = ZSTD_compress_usingCDict(z->cctx, packed, cap, plain, plain_len, z->cdict);
    ns_compress_status st = NS_COMPRESS_OK;
    /* Only when it pays for the wrapper (a tag and a length). */
    if (!ZSTD_isError(n) && n + 8 < plain_len) {
        ns_envelope outer = NAPSYNC__V1__ENVELOPE__INIT;
        outer.body_case = NAPSYNC__V1__ENVELOPE__BODY_ZSTD;
        outer.zstd.data = packed;
        outer.zstd.len = n;
        uint8_t *wrapped;
        size_t wrapped_len;
        if (ns_envelope_pack(&outer, &wrapped, &wrapped_len) != 0) {
            st = NS_COMPRESS_NOMEM;
        } else {
            free(plain);
            plain = wrapped;
            plain_len = wrapped_len;
        }
    }
    free(packed);
    if (st != NS_COMPRESS_OK) {
        free(plain);
        return st;
    }
    *out = plain;
    *len = plain_len;
    return NS_COMPRESS_OK;
}

int ns_compress_send(ns_compress *z, ns_conn *c, const ns_envelope *e, size_t *sent)
{
    if (z == NULL) {
        if (sent != NULL)
            *sent = napsync__v1__envelope__get_packed_size(e);
        return ns_envelope_send(c, e);
    }
    uint8_t *payload;
    size_t len;
    if (ns_compress_pack(z, e, &payload, &len) != NS_COMPRESS_OK)
        return UV_ENOMEM;
    int rc = ns_conn_send(c, payload, len);
    free(payload);
    if (sent != NULL)
        *sent = len;
    return rc;
}

ns_compress_status ns_compress_unpack(ns_compress *z, const uint8_t *data, size_t len, size_t max,
                                      ns_envelope **inner)
{
    *inner = NULL;
    if (z == NULL || data == NULL || len == 0)
        return NS_COMPRESS_INVALID;
    /* Our frames state their size: it is checked before anything is
     * allocated, so a small frame cannot claim a huge one. */
    unsigned long long size = ZSTD_getFrameContentSize(data, len);
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size == 0)
        return NS_COMPRESS_INVALID;
    if (size > max)
        return NS_COMPRESS_TOO_LARGE;
    uint8_t *plain = malloc((size_t)size);
    if (plain == NULL)
        return NS_COMPRESS_NOMEM;
    size_t n = ZSTD_decompress_usingDDict(z->dctx, plain, (size_t)size, data, len, z->ddict);
    if (ZSTD_isError(n) || n != size) {
        free(plain);
        return NS_COMPRESS_INVALID;
    }
    ns_envelope *e = ns_envelope_unpack(plain, n);
    free(plain);
    if (e == NULL)
        return NS_COMPRESS_INVALID;
    if (e->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
        ns_envelope_free(e);
        return NS_COMPRESS_INVALID; /* no frame within a frame */
    }
    *inner = e;
    return NS_COMPRESS_OK;
}
