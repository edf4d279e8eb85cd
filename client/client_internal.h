/* What client.c (the connection) offers sync.c (the device store and the
 * sync loop) inside libnapsync. Nothing here is exported.
 *
 * Requests: nsc_request sends one request Envelope and routes its answer
 * (the body `answer`, or an Error with its request id) to cb. A plain
 * request hears exactly once; a stream (Subscribe) hears every page, with
 * resp set and err NULL, until an Error or the end of the connection, which
 * is its last call (err set, resp NULL). Envelopes passed to cb are valid
 * during the call only. Every callback runs on the client's loop, never
 * from inside nsc_request. */
#ifndef NS_CLIENT_INTERNAL_H
#define NS_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "napsync.h"
#include "napsync.pb-c.h"
#include "store.h"

typedef void (*nsc_response_cb)(ns_client *c, const ns_error *err,
                                const Napsync__V1__Envelope *resp, void *ud);

/* How a request is answered: once; by a stream (Subscribe) until an
 * Error or the end of the connection; or by pages (a streamed Pull) until
 * the page with more = false, which is its last call. */
enum { NSC_ONCE = 0, NSC_STREAM = 1, NSC_PAGES = 2 };

/* Sends env (its request_id is set here) and waits for an answer of body
 * `answer`. A plain request must be answered within the client's timeout,
 * a stream's first answer too; later pages of a Subscribe have no
 * deadline, each page of a streamed Pull has the timeout from the one
 * before. `mode` is one of NSC_*. Returns NS_OK, or an error without
 * calling cb. */
int nsc_request(ns_client *c, Napsync__V1__Envelope *env, Napsync__V1__Envelope__BodyCase answer,
                int mode, nsc_response_cb cb, void *ud, ns_error *err);

/* First flight (docs/protocol.md "First flight"): what the last Welcome
 * from this server to this certificate said, as kept in the store.
 * Returns false when nothing usable is kept (no store, another
 * certificate or server, never welcomed). */
typedef struct {
    char device_id[40];
    char organisation_id[40];
    uint32_t max_frame_size;
    uint32_t max_push_mutations;
} nsc_remembered;
bool nsc_remembered_get(ns_client *c, nsc_remembered *out);
/* fn runs once, right after the next connection's Hello is sent and
 * before its Welcome: requests it sends (nsc_request) travel in the same
 * flight, compressed as the server chose last time. NULL clears it; a
 * connection that ends clears it too. */
typedef void (*nsc_first_flight_fn)(ns_client *c, void *ud);
void nsc_on_first_flight(ns_client *c, nsc_first_flight_fn fn, void *ud);
/* Request flights sent since the client was made: a flight is the
 * requests sent between two answers (Hello and what follows it before
 * Welcome are one), so a sync's round trips are the difference. */
uint32_t nsc_flights(const ns_client *c);
/* Whether the server streams Pull{stream} (Welcome.pull_stream); true
 * before Welcome, where a request of the first flight is converted if not. */
bool nsc_pull_streams(const ns_client *c);

/* The device store (NULL when ns_client_options.store_path was not set). */
ns_store *nsc_store(ns_client *c);

/* One timer for sync.c (reconnect backoff and keepalive): fn runs once
 * after ms, unless re-armed or stopped first. */
typedef void (*nsc_wake_fn)(ns_client *c, void *ud);
void nsc_wake_after(ns_client *c, uint64_t ms, nsc_wake_fn fn, void *ud);
void nsc_wake_stop(ns_client *c);

/* The connection's state for ns_client_status. */
ns_conn_state nsc_conn_state(const ns_client *c);

/* The sync loop's state, owned by the client (freed with it). */
typedef struct nsc_sync nsc_sync;
nsc_sync **nsc_sync_slot(ns_client *c);
void nsc_sync_free(nsc_sync *s);

/* Blocking forms: whether a *_wait call may run the own loop now, and
 * running it until *done (false: a callback freed the client, which is gone
 * when this returns). */
int nsc_can_wait(ns_client *c, ns_error *err);
bool nsc_run_until(ns_client *c, const bool *done);
/* Keeps frames that arrive after a blocking call's answer for the next one. */
void nsc_hold_frames(ns_client *c);

__attribute__((format(printf, 4, 5))) void nsc_set_error(ns_error *e, ns_status st, int server_code,
                                                         const char *fmt, ...);

#endif
