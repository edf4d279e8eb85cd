/* The napsync-1 compression dictionary (docs/protocol.md "Compression"):
 * raw content that zstd refers back to, so that the names and words every
 * record repeats cost a few bits even in a frame of one record. Part of the
 * protocol: both ends must hold these exact bytes, so it never changes; a
 * new dictionary is a new Compression value. */
#ifndef NS_ZDICT_H
#define NS_ZDICT_H

#include <stddef.h>

extern const char ns_zdict_1[];
extern const size_t ns_zdict_1_len;

#endif
