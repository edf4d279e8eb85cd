/* Compact pages (docs/protocol.md "Compact pages"): a ChangePage that says
 * nothing twice. When a session agreed on PAGE_FORMAT_COMPACT_1 (Hello
 * offers it, Welcome chooses it), the server sends a page as
 * Envelope{compact_page}: entity types and their field names once per page,
 * each record's values in its type's field order (nulls as a list of
 * positions), ids, tenants and refs as 16 raw bytes, the tenant and the
 * changed_by name as indexes into tables of the page, changed_at as a delta
 * in microseconds, dates as days. The receiver expands it back to the
 * ordinary ChangePage, byte for byte what the server would have sent
 * otherwise, so that everything after the expansion is unchanged.
 *
 * Tables are per page, not per session: a page stands on its own, so a cut
 * link, a resumed pull or a lost subscription page never leaves the
 * receiver without the tables it needs (the cost, measured in
 * docs/benchmarks.md "Bytes per record", is about a hundred bytes per page
 * after zstd). */
#ifndef NS_PAGE_COMPACT_H
#define NS_PAGE_COMPACT_H

#include <stddef.h>

#include "envelope.h"

typedef enum {
    NS_PAGE_COMPACT_OK = 0,
    NS_PAGE_COMPACT_NOMEM = -1,
    /* expand: the compact page is malformed (an index or a length out of
     * range, a duplicate name, a field of the ordinary form set); the error
     * text says what. */
    NS_PAGE_COMPACT_INVALID = -2,
    /* expand: the ordinary page would be larger than allowed. */
    NS_PAGE_COMPACT_TOO_LARGE = -3,
    /* make: the page holds something the compact form does not carry
     * exactly (an id that is not a lowercase UUID, a changed_at not in the
     * feed's form): send it as it is. */
    NS_PAGE_COMPACT_UNFIT = -4,
} ns_page_compact_status;

/* A compacted page: an Envelope{compact_page} that borrows the strings of
 * the page it was made from, so it lives no longer than that page. */
typedef struct ns_page_compact ns_page_compact;

/* Makes the compact form of env, an Envelope{change_page} (request_id
 * kept). On NS_PAGE_COMPACT_OK *out is owned by the caller
 * (ns_page_compact_free) and ns_page_compact_envelope gives what to send. */
__attribute__((warn_unused_result)) ns_page_compact_status
ns_page_compact_make(const ns_envelope *env, ns_page_compact **out);
const ns_envelope *ns_page_compact_envelope(const ns_page_compact *pc);
void ns_page_compact_free(ns_page_compact *pc);

/* Expands env, an Envelope{compact_page} from the wire (untrusted), into
 * the Envelope{change_page} it stands for, of at most max_bytes packed.
 * On NS_PAGE_COMPACT_OK *out is owned by the caller (ns_envelope_free);
 * otherwise *out is NULL and err (may be NULL) says why. */
__attribute__((warn_unused_result)) ns_page_compact_status
ns_page_compact_expand(const ns_envelope *env, size_t max_bytes, ns_envelope **out, char *err,
                       size_t errlen);

#endif
