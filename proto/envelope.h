/* Envelope encoding on top of protobuf-c, with the limits untrusted input
 * needs: unpacking is refused once it would allocate more than a budget
 * proportional to the frame, and strings can be checked for UTF-8. */
#ifndef NS_ENVELOPE_H
#define NS_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "napsync.pb-c.h"

typedef Napsync__V1__Envelope ns_envelope;

/* Returns NULL if the bytes are not a valid Envelope, or if one of its
 * strings holds a NUL byte (which a C string would silently cut). Free with
 * ns_envelope_free(); the result owns all its strings. */
ns_envelope *ns_envelope_unpack(const uint8_t *buf, size_t len);
void ns_envelope_free(ns_envelope *e);
/* Zeroed memory that ns_envelope_free releases as part of an Envelope: for
 * one built in place of an unpacked one (page_compact.c's expansion). NULL
 * when out of memory. */
void *ns_envelope_alloc(size_t size);

/* Packs into a new heap buffer (*out owned by the caller). Returns 0 or -1. */
__attribute__((warn_unused_result)) int ns_envelope_pack(const ns_envelope *e, uint8_t **out,
                                                         size_t *len);
/* Packs and queues one frame on conn. Returns 0 or a negative uv error. */
__attribute__((warn_unused_result)) int ns_envelope_send(ns_conn *c, const ns_envelope *e);

/* A bounded, valid UTF-8 string with no control characters but tab. */
bool ns_text_ok(const char *s, size_t max_bytes);

/* "MALFORMED", "UNKNOWN_DEVICE", ... for a Napsync__V1__ErrorCode value. */
const char *ns_error_code_name(int code);

#endif
