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
    /* This device's store (SQLite file): outbox, replica, cursor, known
     * conflicts. NULL: no store (connection only: connect, ping). Created
     * if absent; one process at a time (NS_ERR_STATE if another has it). */
    const char *store_path;
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
    /* Most mutations the server takes in one Push (its max_push_mutations;
     * NS_MAX_PUSH_BATCH when it does not say). */
    uint32_t max_push_mutations;
    /* 1: this connection resumed an earlier TLS session (kept in memory
     * between connects of one client, and in the store when there is one)
     * instead of a full handshake; the server still checked the device. */
    int tls_resumed;
    /* 1: frames of this connection may be zstd-compressed, both ways
     * (docs/protocol.md "Compression"); 0 with a server that does not. */
    int compressed;
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

/* ---- the device store and sync (need ns_client_options.store_path) --------
 *
 * Local edits and reads work offline: they go to the store only. Each call
 * that changes the store has committed it to disk (fsync) before it returns
 * NS_OK, so nothing reported as saved is lost in a crash. These calls block
 * on the disk (an fsync per change, a few milliseconds) and run on the
 * calling thread, also when the client runs on the application's loop.
 *
 * Views passed to callbacks (records, outbox entries, conflicts) are valid
 * during the callback only; a callback returns non-zero to stop a listing
 * and must not call back into the store. */

/* A field as text: value is the text form of its kind (as FIELD=VALUE
 * takes it), NULL for null. kind: "bool", "int", "decimal", "text", "date",
 * "set", "ref". */
typedef struct {
    const char *name;
    const char *kind;
    const char *value;
} ns_field_view;

/* A record in the local view: the replica's row with this device's pending
 * changes applied in order. */
typedef struct {
    const char *entity_type;
    const char *id;
    uint64_t version;            /* the replica's; 0 while the server has not got it */
    int deleted;                 /* a tombstone (or a pending delete) */
    int pending;                 /* pending local changes are applied in this view */
    uint32_t rejected;           /* changes of this record the server refused */
    const char *tenant_id;       /* the plan it belongs to; "" until synced */
    const char *changed_by;      /* last change the replica knows of; "" if none */
    const char *changed_at;      /* RFC 3339 UTC; "" if none */
    const ns_field_view *fields; /* by name */
    size_t nfields;
} ns_record_view;

typedef int (*ns_record_fn)(const ns_record_view *r, void *ud);

/* What a local edit saved. */
typedef struct {
    char record_id[40];
    char mutation_id[40];
    uint64_t base_version; /* 0 for a create */
    int created;           /* the edit creates the record */
} ns_edit_result;

/* Creates or updates a record locally (and queues the change for the
 * server). id NULL: a new record with a fresh id; an id the local view
 * knows (not deleted): an update of the given fields; another id: a
 * create with that id. Each assignment is "FIELD=VALUE" or
 * "FIELD:KIND=VALUE" with KIND one of bool, int, decimal, text, date, set,
 * ref, null (then VALUE must be empty). Without a KIND the value is parsed
 * as the kind the field's current value has in the local view, else as
 * text. The server checks kinds against its schema and refuses a wrong one
 * naming the field (see ns_client_outbox). */
NS_API int ns_client_put(ns_client *c, const char *entity_type, const char *id,
                         const char *const *assignments, size_t n, ns_edit_result *out,
                         ns_error *err);
/* Deletes a record locally (queued for the server). */
NS_API int ns_client_delete(ns_client *c, const char *entity_type, const char *id,
                            ns_edit_result *out, ns_error *err);

/* One record of the local view (NS_ERR_INVALID_ARGUMENT "not found" when
 * unknown); fn is called once. */
NS_API int ns_client_get(ns_client *c, const char *entity_type, const char *id, ns_record_fn fn,
                         void *ud, ns_error *err);
/* The records of a type in the local view, by id. */
NS_API int ns_client_list(ns_client *c, const char *entity_type, int include_deleted,
                          ns_record_fn fn, void *ud, ns_error *err);

/* A change waiting in the outbox, or refused by the server. */
typedef struct {
    int64_t seq;
    const char *mutation_id;
    const char *entity_type;
    const char *record_id;
    const char *op; /* "create", "update", "delete" */
    uint64_t base_version;
    int64_t created_at_ms;
    int rejected;              /* refused by the server: kept until discarded */
    const char *reject_code;   /* e.g. "INVALID_ARGUMENT"; "" while pending */
    const char *reject_reason; /* names the field at fault; "" while pending */
    const ns_field_view *fields;
    size_t nfields;
} ns_outbox_view;

typedef int (*ns_outbox_fn)(const ns_outbox_view *e, void *ud);

NS_API int ns_client_outbox(ns_client *c, ns_outbox_fn fn, void *ud, ns_error *err);
/* Drops a refused change (the user gives up on it). */
NS_API int ns_client_discard(ns_client *c, const char *mutation_id, ns_error *err);

/* A conflict the server reported: the record kept one value, the other is
 * kept here. field "" is a whole-record conflict (edit versus delete). */
typedef struct {
    const char *id;
    const char *entity_type;
    const char *record_id;
    const char *tenant_id;
    const char *field;
    const char *base_value; /* text forms as in ns_field_view; NULL for null */
    const char *kept_value;
    const char *other_value;
    int kept_deleted;
    int other_deleted;
    const char *kept_by; /* principal names and device names */
    const char *kept_device;
    const char *other_by;
    const char *other_device;
    const char *created_at;
    int resolved;
} ns_conflict_view;

typedef int (*ns_conflict_fn)(const ns_conflict_view *cf, void *ud);

/* The conflicts known to the store as of the last sync, oldest first. */
NS_API int ns_client_conflicts(ns_client *c, int include_resolved, ns_conflict_fn fn, void *ud,
                               ns_error *err);

typedef enum {
    NS_CONN_DISCONNECTED = 0,
    NS_CONN_CONNECTING = 1,
    NS_CONN_CONNECTED = 2,
} ns_conn_state;

typedef struct {
    uint64_t pending;         /* changes not yet acknowledged by the server */
    uint64_t rejected;        /* changes the server refused (see ns_client_outbox) */
    uint64_t records;         /* replica rows, tombstones included */
    uint64_t open_conflicts;  /* known conflicts not resolved */
    char cursor[128];         /* the pull cursor; "" before the first sync */
    int64_t last_sync_ms;     /* Unix time of the last completed sync; 0 if never */
    ns_conn_state connection; /* of this client, now */
    int syncing;              /* a sync (or watch) is running */
} ns_sync_status;

NS_API int ns_client_status(ns_client *c, ns_sync_status *out, ns_error *err);

/* ---- sync ------------------------------------------------------------------ */

typedef enum {
    NS_SYNC_CONNECTED = 1,    /* a connection is up (Welcome received) */
    NS_SYNC_DISCONNECTED = 2, /* it went down: err says why; retry_in_ms when watching */
    NS_SYNC_PUSHED = 3,       /* count changes answered (rejected: how many refused) */
    NS_SYNC_CHANGES = 4,      /* count records from the server applied to the replica */
    NS_SYNC_CONFLICTS = 5,    /* the conflict list was refreshed: count open ones */
    NS_SYNC_CURSOR_RESET = 6, /* the server did not know the cursor: the replica is re-fetched */
    NS_SYNC_CAUGHT_UP = 7,    /* push, pull and conflicts done (once per connection) */
} ns_sync_event_kind;

typedef struct {
    ns_sync_event_kind kind;
    uint64_t count;
    uint64_t rejected;
    uint32_t retry_in_ms;
    const ns_error *err; /* NS_SYNC_DISCONNECTED only */
} ns_sync_event;

typedef void (*ns_sync_event_cb)(ns_client *c, const ns_sync_event *ev, void *ud);

typedef struct {
    /* Scopes: plan ids. None: every plan of the organisation the server
     * says this device belongs to. At most 64. */
    const char *const *plan_ids;
    size_t nplans;
    /* Also sync the directory: organisations, the people and roles of this
     * device's organisation, and the devices its administrators manage
     * (entity types organisation, principal, principal_role, device). */
    int directory;
    /* After catching up, stay subscribed: apply changes as they commit,
     * push local edits as they are made, and reconnect with exponential
     * backoff and jitter whenever the connection is lost, until
     * ns_client_sync_stop. */
    int watch;
    ns_sync_event_cb on_event; /* may be NULL */
    void *event_ud;
    /* Records per page of the streamed pull (docs/client.md "Round
     * trips"): pages cost no round trip, so smaller ones bound what a cut
     * loses, larger ones compress better and cost the server fewer page
     * queries. 0: NS_SYNC_STREAM_PAGE_SIZE; the server caps it. */
    uint32_t page_size;
} ns_sync_options;

#define NS_SYNC_STREAM_PAGE_SIZE 250

typedef struct {
    uint64_t pushed;   /* changes the server answered */
    uint64_t rejected; /* of which refused */
    uint64_t received; /* records applied to the replica */
    uint64_t open_conflicts;
    uint32_t cursor_resets;
    int conflicts_listed; /* 0 if the server cannot list conflicts */
    /* Round trips of the run: flights of requests, each sent after an
     * answer arrived (Hello and what goes out behind it are one); 1 for a
     * sync whose outbox fits one Push on a store that synced before. */
    uint32_t round_trips;
    uint32_t pull_requests; /* Pull requests sent (a streamed pull is one) */
} ns_sync_stats;

typedef void (*ns_sync_cb)(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud);

/* One sync: connects if not connected, pushes the outbox in order (in
 * batches; a refused change stays in the outbox with its reason and does
 * not hold back the others), pulls every page after the cursor (each page
 * and its cursor applied in one transaction), refreshes the conflicts of
 * the scopes. A cursor the server does not know drops the replica and the
 * cursor (never the outbox) and pulls again. Without watch, cb runs once
 * that is done, and the connection stays open for the caller. With watch,
 * see ns_sync_options; cb runs after ns_client_sync_stop. One sync at a
 * time (NS_ERR_STATE). */
NS_API int ns_client_sync(ns_client *c, const ns_sync_options *o, ns_sync_cb cb, void *ud,
                          ns_error *err);
/* Ends a watching sync (or a sync in progress): its cb gets NS_OK if it
 * was watching, NS_ERR_CLOSED otherwise. Callable from any callback. */
NS_API int ns_client_sync_stop(ns_client *c);

/* Resolves a conflict on the server (needs a connection): the resolution
 * is a versioned change like any other, and the next sync brings it into
 * the replica and closes the conflict there. MINE takes the value this
 * device (else this principal) wrote, THEIRS the other one; VALUE parses
 * value as the kind of the conflict's values (text if both are null). */
typedef enum {
    NS_TAKE_MINE = 1,
    NS_TAKE_THEIRS = 2,
    NS_TAKE_VALUE = 3,
} ns_take;

typedef void (*ns_resolve_cb)(ns_client *c, const ns_error *err, uint64_t version, void *ud);

NS_API int ns_client_resolve(ns_client *c, const char *conflict_id, ns_take take, const char *value,
                             ns_resolve_cb cb, void *ud, ns_error *err);

/* Blocking forms (own loop). */
NS_API int ns_client_sync_wait(ns_client *c, const ns_sync_options *o, ns_sync_stats *st,
                               ns_error *err);
NS_API int ns_client_resolve_wait(ns_client *c, const char *conflict_id, ns_take take,
                                  const char *value, uint64_t *version, ns_error *err);

/* ---- history (needs a connection; no store) -------------------------------- */

/* A field that differs from the version before: text forms as in
 * ns_field_view, NULL for null (a create lists its fields that are not
 * null). kind is the values' ("text", "decimal", ...; "null" when both are
 * null). */
typedef struct {
    const char *name;
    const char *kind;
    const char *before;
    const char *after;
} ns_field_change_view;

/* One version of a record, as the server keeps it. */
typedef struct {
    uint64_t version;
    const char *op;                      /* "create", "update", "delete" or "resolve" */
    const char *changed_by;              /* principal name */
    const char *device;                  /* device name; "" when none */
    const char *at;                      /* RFC 3339 UTC, with microseconds */
    const char *mutation_id;             /* the change's id; "" when none */
    int deleted;                         /* the record is a tombstone as of this version */
    const ns_field_change_view *changes; /* in field-name order */
    size_t nchanges;
} ns_revision_view;

typedef struct {
    const ns_revision_view *revisions; /* newest first */
    size_t n;
    /* Older versions remain: ask again with before_version = the version of
     * the last revision. */
    int more;
} ns_history_page;

/* page is NULL unless err is NULL; valid during the call only. */
typedef void (*ns_history_cb)(ns_client *c, const ns_error *err, const ns_history_page *page,
                              void *ud);

/* Who changed a record, what and when: one page of its versions, newest
 * first, from the server. before_version 0 starts at the latest version;
 * limit 0 asks for the server's default (50; it sends at most 500, fewer
 * when they would not fit a frame). A record that does not exist, or whose
 * plan this principal may not read, is NS_ERR_SERVER with server_code
 * NOT_FOUND; an unknown type UNKNOWN_ENTITY. */
NS_API int ns_client_history(ns_client *c, const char *entity_type, const char *record_id,
                             uint64_t before_version, uint32_t limit, ns_history_cb cb, void *ud,
                             ns_error *err);

/* fn gets each revision of a page; non-zero stops the walk. */
typedef int (*ns_revision_fn)(const ns_revision_view *r, void *ud);

/* Blocking form (own loop): fn is called for each revision of the page,
 * newest first, before this returns; *more (may be NULL) as in
 * ns_history_page. fn must not call into the client. */
NS_API int ns_client_history_wait(ns_client *c, const char *entity_type, const char *record_id,
                                  uint64_t before_version, uint32_t limit, ns_revision_fn fn,
                                  void *ud, int *more, ns_error *err);

/* ---- direct pushes and whole-plan pulls (need a connection; no store) ------
 *
 * For tools that need the server's verdict at once, such as an import: a
 * batch of mutations goes straight to the server, not through the outbox,
 * and each mutation gets its answer; nothing is kept on the device, and a
 * batch whose answer is lost is simply not known to have applied (send it
 * again with the same mutation ids: the server answers them as before). */

typedef enum {
    NS_PUSH_APPLY = 0,   /* each mutation on its own: the refused ones rejected, the rest applied */
    NS_PUSH_DRY_RUN = 1, /* nothing stored: every mutation answered as it would be now */
    NS_PUSH_ATOMIC = 2,  /* all or nothing, one transaction: when any mutation is refused, none
                            applies and every other one is rejected with reject_code "ABORTED" */
} ns_push_mode;

/* The server takes at most this many mutations in one batch. */
#define NS_MAX_PUSH_BATCH 1000

typedef enum {
    NS_MUTATION_CREATE = 1,
    NS_MUTATION_UPDATE = 2,
    NS_MUTATION_DELETE = 3,
} ns_mutation_op;

/* One change. Fields are given as text forms, each with its kind (as
 * ns_field_view: "bool", "int", "decimal", "text", "date", "set", "ref",
 * or "null"; value NULL is null): a create's initial fields, an update's
 * changed fields (the field mask), none for a delete. */
typedef struct {
    const char *mutation_id; /* UUID, the idempotency key; NULL: a fresh one */
    const char *entity_type;
    const char *record_id; /* UUID; a create chooses it */
    ns_mutation_op op;
    uint64_t base_version; /* the version the change was made on; 0 for a create */
    const ns_field_view *fields;
    size_t nfields;
} ns_mutation;

typedef enum {
    NS_OUTCOME_APPLIED = 1,  /* taken as is (a dry run: would be) */
    NS_OUTCOME_MERGED = 2,   /* based on an older version; merged without collision */
    NS_OUTCOME_CONFLICT = 3, /* a field collided: see conflict_ids */
    NS_OUTCOME_REJECTED = 4, /* not applied: reject_code, reject_reason, reject_field */
} ns_outcome;

/* The server's answer to one mutation of a batch. */
typedef struct {
    const char *mutation_id;
    ns_outcome outcome;
    uint64_t version;          /* the record's version after it; 0 when rejected */
    const char *reject_code;   /* "INVALID_ARGUMENT", "PERMISSION_DENIED", "ABORTED" (another
                                  mutation of an atomic batch was refused), ...; "" unless rejected */
    const char *reject_reason; /* for people; names the field at fault; "" unless rejected */
    const char *reject_field;  /* the field at fault ("baseline"); "" when none is named */
    const char *const *conflict_ids;
    size_t nconflicts;
} ns_mutation_result;

/* results (n of them, in the order of the batch) is NULL unless err is
 * NULL; valid during the call only. */
typedef void (*ns_push_batch_cb)(ns_client *c, const ns_error *err,
                                 const ns_mutation_result *results, size_t n, void *ud);

/* Sends n (1 to NS_MAX_PUSH_BATCH) mutations in one Push with the given
 * mode and hands the answers to cb. Every mutation is checked first (ids,
 * type names, field names, each value parsed as its kind): a bad one is
 * NS_ERR_INVALID_ARGUMENT naming the mutation (from 0) and the field, and
 * nothing is sent; so is a batch too large for the server's frame size
 * (split it, or raise the server's max_frame_size). A mutation the server
 * refuses is an answer (NS_OUTCOME_REJECTED), not an error; the whole
 * request failing (UNAVAILABLE, ...) is err. Not connected: NS_ERR_STATE. */
NS_API int ns_client_push_batch(ns_client *c, ns_push_mode mode, const ns_mutation *m, size_t n,
                                ns_push_batch_cb cb, void *ud, ns_error *err);

/* fn gets each answer (i from 0, in batch order); non-zero stops the walk. */
typedef int (*ns_mutation_result_fn)(size_t i, const ns_mutation_result *r, void *ud);

/* Blocking form (own loop): fn is called for each answer before this
 * returns. fn must not call into the client. */
NS_API int ns_client_push_batch_wait(ns_client *c, ns_push_mode mode, const ns_mutation *m,
                                     size_t n, ns_mutation_result_fn fn, void *ud, ns_error *err);

/* err NULL: done. */
typedef void (*ns_done_cb)(ns_client *c, const ns_error *err, void *ud);

/* Every record of a plan (the plan itself included), from the server: a
 * Pull of the plan alone from the start of the feed, page after page, each
 * record handed to fn as it arrives (memory holds one page, whatever the
 * plan's size). Records come in feed order; one changed several times
 * comes once per version kept in the feed, the last one current, and
 * deleted records come as tombstones (deleted set): a caller that wants
 * the plan as it is keeps the highest version of each id. pending and
 * rejected are 0 (nothing local is involved). fn returns non-zero to stop
 * (cb then gets NULL: stopping is not an error); it must not call into the
 * client. A plan this principal may not read, or that does not exist, is
 * NS_ERR_SERVER with server_code PERMISSION_DENIED. cb runs once at the
 * end. Views are valid during the fn call only. */
NS_API int ns_client_pull_plan(ns_client *c, const char *plan_id, ns_record_fn fn, void *ud,
                               ns_done_cb cb, void *cb_ud, ns_error *err);
/* Blocking form (own loop). */
NS_API int ns_client_pull_plan_wait(ns_client *c, const char *plan_id, ns_record_fn fn, void *ud,
                                    ns_error *err);

/* ---- reports (need a connection; no store) --------------------------------
 *
 * Figures the server computes from what this principal may read, as one
 * JSON document whose shape docs/reports.md describes (decimals are JSON
 * strings, exact). */

typedef struct {
    const char *kind;      /* "progress", "region" or "coverage" */
    const char *plan_id;   /* progress: the plan (UUID); NULL for the others */
    uint32_t year;         /* progress: 1990..2100, or 0 for the latest year with data */
    const char *region_id; /* region: the regional organisation (UUID); NULL for the others */
} ns_report_request;

/* json (len bytes, NUL-terminated) is NULL unless err is NULL; valid
 * during the call only. */
typedef void (*ns_report_cb)(ns_client *c, const ns_error *err, const char *json, size_t len,
                             void *ud);

/* Asks the server for a report. The request is checked first (a kind, the
 * fields that kind takes and no others, UUIDs, the year's range):
 * NS_ERR_INVALID_ARGUMENT naming the field, and nothing is sent. A plan
 * that does not exist or that this principal may not read, and a region
 * that is not a regional organisation, are NS_ERR_SERVER with server_code
 * NOT_FOUND; a report too large for one frame (about 1 MiB) is
 * NS_ERR_SERVER with FRAME_TOO_LARGE (it is never sent in part). The
 * document is checked as text (UTF-8, no control characters), not
 * parsed. Not connected: NS_ERR_STATE. */
NS_API int ns_client_report(ns_client *c, const ns_report_request *req, ns_report_cb cb, void *ud,
                            ns_error *err);
/* Blocking form (own loop): *json is the document (NUL-terminated, the
 * caller frees it with free()), NULL on error. */
NS_API int ns_client_report_wait(ns_client *c, const ns_report_request *req, char **json,
                                 ns_error *err);

/* The loop the client runs on (its own, or the application's): e.g. to
 * watch signals that call ns_client_sync_stop during ns_client_sync_wait.
 * Handles added to the client's own loop must be closed before
 * ns_client_free. */
NS_API uv_loop_t *ns_client_loop(ns_client *c);

/* The library's version, e.g. "0.1.0". */
NS_API const char *ns_version(void);

#ifdef __cplusplus
}
#endif

#endif
