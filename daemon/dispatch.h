/* Protocol messages to handlers: decodes one frame, checks that the message
 * is allowed in the session's state, and answers it. */
#ifndef NS_DISPATCH_H
#define NS_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "session.h"

void ns_dispatch_frame(ns_session *s, const uint8_t *payload, size_t len);

/* A streamed Pull (docs/protocol.md "Streamed pull") builds its next page
 * only while the session's output is at most max_queued_bytes; held above
 * it, it goes on when the output drains (session.c, on_writable). When the
 * connection closes, the stream is dropped (on_close). Both do nothing
 * when no stream is held. */
void ns_dispatch_stream_writable(ns_session *s);
void ns_dispatch_stream_drop(ns_session *s);

#endif
