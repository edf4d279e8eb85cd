/* Compressed frames (docs/protocol.md "Compression"): once a session has
 * agreed on COMPRESSION_ZSTD_1 (Hello offers it, Welcome chooses it), either
 * side may send any message as Envelope{zstd}: the message's own Envelope,
 * packed and compressed with zstd as one frame of its own, with the
 * napsync-1 dictionary (proto/zdict.c) so that a small record compresses
 * well too. Every frame decompresses on its own: no state is kept between
 * frames, so one ns_compress serves any number of sessions on one thread
 * and an idle session costs nothing.
 *
 * Not thread-safe: one ns_compress per thread (the daemon's loop, each
 * client). */
#ifndef NS_COMPRESS_H
#define NS_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

typedef struct ns_compress ns_compress;

typedef enum {
    NS_COMPRESS_OK = 0,
    NS_COMPRESS_NOMEM = -1,
    NS_COMPRESS_INVALID = -2,   /* not a zstd frame of our dictionary, or corrupt */
    NS_COMPRESS_TOO_LARGE = -3, /* it would decompress to more than allowed */
} ns_compress_status;

/* NULL when out of memory. Free with ns_compress_free (NULL is fine). */
ns_compress *ns_compress_new(void);
void ns_compress_free(ns_compress *z);

/* Packs e into a frame payload (*out, owned by the caller): Envelope{zstd}
 * when compressing makes it smaller, else e as it is. */
__attribute__((warn_unused_result)) ns_compress_status
ns_compress_pack(ns_compress *z, const ns_envelope *e, uint8_t **out, size_t *len);

/* Sends e on c as one frame: through ns_compress_pack when z is not NULL
 * (compression agreed), as it is otherwise. *sent (may be NULL) is the
 * frame's payload size. Returns 0 or a negative uv error. */
__attribute__((warn_unused_result)) int ns_compress_send(ns_compress *z, ns_conn *c,
                                                         const ns_envelope *e, size_t *sent);

/* Decompresses the bytes of an Envelope{zstd} (at most max bytes: a frame
 * the receiver accepts) and unpacks the Envelope they hold, which must not
 * itself be compressed. On NS_COMPRESS_OK *inner is owned by the caller
 * (ns_envelope_free). */
__attribute__((warn_unused_result)) ns_compress_status ns_compress_unpack(ns_compress *z,
                                                                          const uint8_t *data,
                                                                          size_t len, size_t max,
                                                                          ns_envelope **inner);

#endif
