/* TLS engine: OpenSSL behind a narrow, socket-free interface.
 *
 * The engine never touches a socket. Ciphertext from the network goes in with
 * ns_tls_feed(); ciphertext for the network comes out through the `send`
 * callback given at creation, which every call below drains before it
 * returns (reads too: TLS 1.3 tickets, key updates and alerts are writes).
 * Nothing but tls.c includes OpenSSL. */
#ifndef NS_TLS_H
#define NS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ns_tls_ctx ns_tls_ctx;
typedef struct ns_tls ns_tls;

typedef enum { NS_TLS_SERVER, NS_TLS_CLIENT } ns_tls_role;

typedef enum {
    NS_TLS_OK = 0,
    NS_TLS_WANT_READ = 1,       /* needs more ciphertext from the peer */
    NS_TLS_CLOSED = 2,          /* the peer sent close_notify */
    NS_TLS_SESSION_IGNORED = 3, /* ns_tls_set_session: not usable here; a full handshake follows */
    NS_TLS_ERR_CONFIG = -1,     /* certificate, key or CA unusable */
    NS_TLS_ERR_HANDSHAKE = -2,  /* handshake refused or failed; see ns_tls_error() */
    NS_TLS_ERR_PROTOCOL = -3,   /* failure after the handshake */
    NS_TLS_ERR_NOMEM = -4,
    NS_TLS_ERR_SEND = -5,  /* the send callback failed */
    NS_TLS_ERR_STATE = -6, /* call not valid in this state */
} ns_tls_status;

typedef struct {
    /* Server: the server's certificate chain and key (required).
     * Client: the device certificate and key (both NULL: connect without one). */
    const char *cert_file;
    const char *key_file;
    /* Server: the CA that client certificates must chain to.
     * Client: the CA that must have issued the server's certificate. */
    const char *ca_file;
} ns_tls_config;

/* Ciphertext ready for the network. The engine keeps no reference to buf
 * after the call returns: the callee copies. Return 0, or nonzero on failure. */
typedef int (*ns_tls_send_fn)(void *ud, const uint8_t *buf, size_t len);

/* Builds a context. On failure returns NS_TLS_ERR_CONFIG and writes a
 * message naming the file at fault into err. *out is written only on success. */
__attribute__((warn_unused_result)) int ns_tls_ctx_new(ns_tls_role role, const ns_tls_config *cfg,
                                                       ns_tls_ctx **out, char *err, size_t errlen);
/* Connections made from the context keep what they need: freeing it while
 * they live is safe (that is how certificates are reloaded). */
void ns_tls_ctx_free(ns_tls_ctx *ctx);
/* Server: how many sessions the context keeps for resumption (TLS 1.3
 * tickets, each good for one resumption; the oldest is dropped first),
 * 16384 unless set here, before the first connection. Returns NS_TLS_OK,
 * NS_TLS_ERR_STATE (a client context, or sessions kept already) or
 * NS_TLS_ERR_NOMEM. */
__attribute__((warn_unused_result)) int ns_tls_ctx_set_session_store_max(ns_tls_ctx *ctx,
                                                                         size_t max);

/* One connection. peer_name (client only, may be NULL): the host name or IP
 * address the server certificate must match. */
__attribute__((warn_unused_result)) int ns_tls_new(ns_tls_ctx *ctx, const char *peer_name,
                                                   ns_tls_send_fn send, void *send_ud,
                                                   ns_tls **out);
void ns_tls_free(ns_tls *t);

/* Hands ciphertext received from the network to the engine (copied). */
__attribute__((warn_unused_result)) int ns_tls_feed(ns_tls *t, const uint8_t *buf, size_t len);

/* Drives the handshake: NS_TLS_OK once established, NS_TLS_WANT_READ while
 * it needs the peer, or an error. A client calls it once to send its hello. */
__attribute__((warn_unused_result)) int ns_tls_handshake(ns_tls *t);
bool ns_tls_established(const ns_tls *t);

/* Plaintext from the peer: NS_TLS_OK with *n > 0, NS_TLS_WANT_READ when none
 * is buffered, NS_TLS_CLOSED on close_notify, or an error. */
__attribute__((warn_unused_result)) int ns_tls_read(ns_tls *t, uint8_t *buf, size_t cap, size_t *n);

/* Encrypts all of buf (only once established). */
__attribute__((warn_unused_result)) int ns_tls_write(ns_tls *t, const uint8_t *buf, size_t len);

/* Sends close_notify. Safe to call more than once. */
void ns_tls_shutdown(ns_tls *t);

/* Why the last call failed, in words a person can act on. Never NULL. */
const char *ns_tls_error(const ns_tls *t);

/* SHA-256 of the peer certificate (DER). Returns 0, or -1 if there is none. */
int ns_tls_peer_fingerprint(const ns_tls *t, uint8_t out[32]);
/* "TLSv1.3" etc., or "" before the handshake. */
const char *ns_tls_version(const ns_tls *t);

/* ---- certificate files (administration) -----------------------------------
 *
 * What `napsyncd admin device register --cert FILE` needs to know of a device
 * certificate before its fingerprint is registered. */
#define NS_TLS_CERT_FILE_MAX (1024 * 1024)
typedef struct {
    uint8_t sha256[32];  /* of the certificate's DER: what napsyncd looks devices up by */
    char subject_cn[65]; /* the subject's first commonName, cut to 64 bytes; "" if none */
    char not_after[21];  /* "YYYY-MM-DDTHH:MM:SSZ" */
    bool expired;        /* not_after has passed */
    bool client_auth;    /* usable as a TLS client certificate (keyUsage, extendedKeyUsage) */
} ns_tls_cert_info;

/* Reads the first certificate of a PEM file (a chain's first is the leaf)
 * or a DER file (the whole file, at most NS_TLS_CERT_FILE_MAX bytes).
 * Returns 0 and fills *out, or -1 with a message naming the file in err. */
__attribute__((warn_unused_result)) int
ns_tls_cert_file_info(const char *path, ns_tls_cert_info *out, char *err, size_t errlen);

/* ---- session resumption (client) ------------------------------------------
 *
 * A client that kept a session from an earlier connection offers it on the
 * next one and skips the certificate exchange (TLS 1.3 PSK with a fresh
 * ECDHE, so it keeps forward secrecy). Sessions travel as opaque bytes: the
 * DER form of the OpenSSL session behind a header that binds it to the
 * peer name and to this context's trust (our certificate and the CA), so
 * that a session is never offered to another server name, after the CA or
 * the device certificate changed, or by another device. Only TLS 1.3
 * sessions are handed out: a TLS 1.2 session holds the master secret of the
 * connection it came from, which would decrypt a recording of it.
 *
 * The bytes are secret (whoever holds them may resume as this device until
 * the server's ticket expires, though the server still checks the device on
 * every session): keep them as carefully as the private key. */
#define NS_TLS_SESSION_MAX 16384

/* A new session from the server (TLS 1.3 NewSessionTicket), valid during
 * the call only: the callee copies. Called from inside ns_tls_read (and
 * ns_tls_handshake), which must not be re-entered from it; the engine must
 * not be freed from it either. */
typedef void (*ns_tls_session_fn)(void *ud, const uint8_t *session, size_t len);
/* Client only, before the handshake; fn NULL turns it off. */
void ns_tls_on_session(ns_tls *t, ns_tls_session_fn fn, void *ud);

/* Offers a session kept from an earlier connection (bytes from the callback
 * above). Client only, before the first ns_tls_handshake. NS_TLS_OK: it
 * will be offered; NS_TLS_SESSION_IGNORED: it is for another peer name,
 * another certificate or CA, expired, or not a session at all, and the
 * handshake will be a full one; NS_TLS_ERR_STATE or NS_TLS_ERR_NOMEM. A
 * server that cannot or will not resume it (restarted, reloaded, another
 * instance) answers with a full handshake too. */
__attribute__((warn_unused_result)) int ns_tls_set_session(ns_tls *t, const uint8_t *session,
                                                           size_t len);

/* Whether the established connection resumed a session (no certificate was
 * exchanged: the peer's identity is the one the session was made with). */
bool ns_tls_resumed(const ns_tls *t);

#endif
