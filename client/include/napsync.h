/* libnapsync: the client library of napsync.
 *
 * A client connects to napsyncd over TLS with a device certificate, says
 * Hello, and learns who it is (organisation, principal, roles, device).
 * Everything runs on a libuv loop: the application's own (pass it to
 * ns_client_new) or one the client creates and drives itself inside the
 * *_wait calls. Callbacks run on that loop's thread.
 *
 * Conventions (as in libuv): a function that takes a callback and returns an
 * error never calls that callback; a callback is called exactly once
 * otherwise. Errors are typed (ns_status) with a message a person can act on.
 * Pointers passed in are copied unless said otherwise. */
#ifndef NAPSYNC_H
#define NAPSYNC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NS_BUILDING_LIBRARY)
#define NS_API __attribute__((visibility("default")))
#else
#define NS_API
#endif

typedef enum {
    NS_OK = 0,
    NS_ERR_INVALID_ARGUMENT = -1, /* a bad option or argument; the message names it */
    NS_ERR_CONFIG = -2,           /* the CA, certificate or key file is unusable */
    NS_ERR_RESOLVE = -3,          /* the server's host name does not resolve */
    NS_ERR_CONNECT = -4,          /* TCP connection refused or unreachable */
    NS_ERR_TIMEOUT = -5,          /* no answer in time */
    NS_ERR_TLS = -6,              /* the TLS handshake failed for another reason */
    NS_ERR_SERVER_CERT = -7,      /* the server's certificate does not verify against our CA */
    NS_ERR_CERT_REFUSED = -8,     /* the server refused our certificate (none, or another CA) */
    NS_ERR_UNKNOWN_DEVICE = -9,   /* the certificate is valid but names no registered device */
    NS_ERR_DEVICE_REVOKED = -10,  /* this device has been revoked */
    NS_ERR_VERSION = -11,         /* no protocol version in common with the server */
    NS_ERR_PROTOCOL = -12,        /* the server sent something this client cannot understand */
    NS_ERR_SERVER = -13,          /* the server answered with another error (server_code) */
    NS_ERR_CLOSED = -14,          /* the connection closed */
    NS_ERR_UNAVAILABLE = -15,     /* the server is shutting down or its database is down */
    NS_ERR_NOMEM = -16,
    NS_ERR_STATE = -17, /* not valid now (e.g. ping before connect) */
} ns_status;

typedef struct {
    ns_status status;
    int server_code;   /* the protocol's ErrorCode if the server sent one, else 0 */
    char message[512]; /* never empty when status != NS_OK */
} ns_error;

/* "timeout", "cert_refused", ...: a stable identifier for scripts. */
NS_API const char *ns_status_name(ns_status st);

typedef struct {
    const char *server;         /* "host:port" or "[v6addr]:port" (required) */
    const char *ca_file;        /* CA that issued the server certificate (required) */
    const char *cert_file;      /* this device's certificate (PEM) */
    const char *key_file;       /* and its private key */
    uint32_t timeout_ms;        /* connect, handshake and each request; 0 = 10000 */
    const char *client_name;    /* for the server's logs; NULL = "libnapsync" */
    const char *client_version; /* NULL = the library's version */
} ns_client_options;

#define NS_MAX_ROLES 8
/* Room for an organisation or principal name: at most 200 characters, up
 * to 4 bytes each in UTF-8, and the NUL. */
#define NS_NAME_SIZE 801

/* Who the server says this device is; filled by a successful connect. */
typedef struct {
    char session_id[40];
    uint32_t protocol_version;
    char server_name[64];
    char server_version[32];
    char organisation_id[40];
    char organisation_name[NS_NAME_SIZE];
    char organisation_kind[32];
    char country[4];
    char principal_id[40];
    char principal_name[NS_NAME_SIZE];
    char device_id[40];
    char device_name[72];
    char roles[NS_MAX_ROLES][16];
    size_t nroles;
    uint32_t max_frame_size;
    /* The server closes a session silent for this long (0: never): an
     * application that stays connected pings more often than this. */
    uint32_t idle_timeout_ms;
} ns_identity;

typedef struct ns_client ns_client;

/* loop: the application's loop, or NULL for a loop of the client's own.
 * Loads and checks the TLS files now, so a bad path fails here. */
NS_API int ns_client_new(const ns_client_options *opt, uv_loop_t *loop, ns_client **out,
                         ns_error *err);

/* Closes any connection at once and frees the client. Pending callbacks are
 * called with NS_ERR_CLOSED before this returns when the client owns its
 * loop; with the application's loop, they run on that loop (the client's
 * memory is released only after the loop has closed its handles). */
NS_API void ns_client_free(ns_client *c);

/* err is NULL on success. */
typedef void (*ns_connect_cb)(ns_client *c, const ns_error *err, void *ud);
typedef void (*ns_ping_cb)(ns_client *c, const ns_error *err, uint64_t rtt_us, void *ud);
typedef void (*ns_closed_cb)(ns_client *c, void *ud);

/* Resolves, connects, handshakes and says Hello. */
NS_API int ns_client_connect(ns_client *c, ns_connect_cb cb, void *ud, ns_error *err);
/* One round trip to the server (requires a connection). */
NS_API int ns_client_ping(ns_client *c, ns_ping_cb cb, void *ud, ns_error *err);
/* Sends Goodbye and closes the connection in an orderly way. cb may be NULL. */
NS_API int ns_client_disconnect(ns_client *c, ns_closed_cb cb, void *ud);

/* The identity of the connected session, or NULL when not connected. */
NS_API const ns_identity *ns_client_identity(const ns_client *c);

/* Blocking forms for a client that owns its loop (ns_client_new with NULL):
 * they run the loop until the operation completes. With the application's
 * loop they return NS_ERR_STATE. */
NS_API int ns_client_connect_wait(ns_client *c, ns_error *err);
NS_API int ns_client_ping_wait(ns_client *c, uint64_t *rtt_us, ns_error *err);
NS_API int ns_client_disconnect_wait(ns_client *c);

/* The library's version, e.g. "0.1.0". */
NS_API const char *ns_version(void);

#ifdef __cplusplus
}
#endif

#endif
