/* A framed TLS connection on a libuv loop: TCP socket → TLS engine → frame
 * codec. Both ends use it: napsyncd for each accepted client, libnapsync for
 * its connection to the server. It knows bytes and frames, not messages.
 *
 * Lifetime: a conn is created by ns_conn_accept() or ns_conn_connect() and
 * owned by the conn itself until on_close has returned, after which it is
 * freed. The owner calls ns_conn_close() (any number of times) to end it and
 * must not touch the conn after on_close. Callbacks never run inside a call
 * the owner makes, except on_frame and on_tls_session inside
 * ns_conn_resume(). */
#ifndef NS_CONN_H
#define NS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tls.h"

typedef struct ns_conn ns_conn;

typedef enum {
    NS_CONN_CLOSED_BY_US = 0,   /* ns_conn_close() was called */
    NS_CONN_CLOSED_BY_PEER = 1, /* EOF or close_notify */
    NS_CONN_TLS_FAILED = 2,     /* handshake or record failure; message says why */
    NS_CONN_IO_FAILED = 3,      /* connect or socket error */
    NS_CONN_TIMED_OUT = 4,      /* handshake not finished in time */
    NS_CONN_NOMEM = 5,
} ns_conn_close_reason;

typedef struct {
    /* TLS is established; frames may be sent from now on. */
    void (*on_ready)(ns_conn *c, void *ud);
    /* One whole frame. payload is valid only during the call. The owner may
     * call ns_conn_pause() to stop further frames until ns_conn_resume(). */
    void (*on_frame)(ns_conn *c, const uint8_t *payload, size_t len, void *ud);
    /* The peer announced a frame above the maximum. Reading has stopped; the
     * owner normally sends an error frame and closes. */
    void (*on_frame_too_large)(ns_conn *c, void *ud);
    /* Nothing arrived for idle_timeout_ms after the handshake. */
    void (*on_idle)(ns_conn *c, void *ud);
    /* No whole frame within first_frame_timeout_ms of on_ready. NULL: the
     * conn closes itself (NS_CONN_TIMED_OUT). */
    void (*on_first_frame_timeout)(ns_conn *c, void *ud);
    /* Output has been waiting for send_timeout_ms and the peer took none of
     * it meanwhile: a peer that does not read. NULL: the conn closes itself
     * (NS_CONN_TIMED_OUT). */
    void (*on_send_timeout)(ns_conn *c, void *ud);
    /* May be NULL: the output waiting fell to write_queue_limit or below
     * after it had been above. */
    void (*on_writable)(ns_conn *c, void *ud);
    /* Exactly once; the conn is freed when it returns. msg is never NULL. */
    void (*on_close)(ns_conn *c, ns_conn_close_reason reason, const char *msg, void *ud);
    /* Client, may be NULL: the server sent a session this client may offer
     * on a later connect (ns_conn_options.tls_session). session is valid
     * during the call only and is secret (see tls.h). */
    void (*on_tls_session)(ns_conn *c, const uint8_t *session, size_t len, void *ud);
} ns_conn_callbacks;

typedef struct {
    uint32_t max_frame;            /* largest payload accepted from the peer */
    uint32_t handshake_timeout_ms; /* from creation until TLS is established; 0 = none */
    uint32_t idle_timeout_ms;      /* after the handshake; 0 = none */
    /* From on_ready until the first whole frame, however much trickles in
     * meanwhile; 0 = none. */
    uint32_t first_frame_timeout_ms;
    /* While more than this waits to be written, no input is read and no
     * frame already received is handed to on_frame. */
    size_t write_queue_limit;
    /* While open: output waiting with none of it taken by the peer for this
     * long ends the connection (on_send_timeout); 0 = none. */
    uint32_t send_timeout_ms;
    /* A graceful close asked for with ns_conn_close ends as soon as our
     * last bytes, close_notify and FIN are with the kernel, without waiting
     * for the peer's EOF: for a client that has every answer it needs, the
     * wait would cost a round trip and bring nothing (docs/protocol.md §6). */
    bool close_without_peer_eof;
    /* ns_conn_connect only, may be NULL: a session from on_tls_session of
     * an earlier connection, to resume (read during the call, not kept). One
     * that does not fit this server is dropped and the handshake is full. */
    const uint8_t *tls_session;
    size_t tls_session_len;
} ns_conn_options;

/* Accepts one pending connection from a listening stream. On error nothing
 * is left behind and no callback is ever called. */
__attribute__((warn_unused_result)) int ns_conn_accept(uv_stream_t *listener, ns_tls_ctx *tls,
                                                       const ns_conn_options *opt,
                                                       const ns_conn_callbacks *cb, void *ud,
                                                       ns_conn **out);

/* Connects to addr and starts the TLS handshake; peer_name is what the
 * server certificate must match. Failures after a 0 return arrive through
 * on_close. */
__attribute__((warn_unused_result)) int
ns_conn_connect(uv_loop_t *loop, const struct sockaddr *addr, const char *peer_name,
                ns_tls_ctx *tls, const ns_conn_options *opt, const ns_conn_callbacks *cb, void *ud,
                ns_conn **out);

/* Queues one frame (copied). Returns 0, or a negative uv error code when the
 * conn is not established or is closing. */
__attribute__((warn_unused_result)) int ns_conn_send(ns_conn *c, const uint8_t *payload,
                                                     size_t len);

void ns_conn_pause(ns_conn *c);
void ns_conn_resume(ns_conn *c);

/* graceful: flush what is queued, send TLS close_notify and TCP FIN, and
 * read (dropping it) whatever the peer still sends until its EOF, so that
 * unread input never makes the kernel reset the connection and discard our
 * last bytes; each step bounded by a short linger, the dropped input by a
 * cap. Otherwise close at once, dropping queued output; that also cuts a
 * graceful close short. Sockets of both ends use TCP keepalive. */
void ns_conn_close(ns_conn *c, bool graceful);

bool ns_conn_is_closing(const ns_conn *c);
size_t ns_conn_write_queue_bytes(const ns_conn *c);
int ns_conn_peer_fingerprint(const ns_conn *c, uint8_t out[32]);
/* "address:port" of the peer, or "?" */
const char *ns_conn_peer_address(const ns_conn *c);
const char *ns_conn_tls_version(const ns_conn *c);
/* Whether the TLS handshake resumed a session (valid from on_ready). */
bool ns_conn_tls_resumed(const ns_conn *c);

#endif
