/* Protocol messages to handlers: decodes one frame, checks that the message
 * is allowed in the session's state, and answers it. */
#ifndef NS_DISPATCH_H
#define NS_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "session.h"

void ns_dispatch_frame(ns_session *s, const uint8_t *payload, size_t len);

#endif
