/* Valid protocol messages for the fuzz targets: the seed corpora
 * (mkcorpus.c) and the session target's own setup are built from them, so
 * that seeds are messages a real client or server sends.
 *
 * Messages are built in an arena: every string and struct an arena hands
 * out lives until nsf_arena_free. Out of memory dies (fixture.h). */
#ifndef NSF_MESSAGES_H
#define NSF_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "napsync.pb-c.h"

/* Rows of deploy/demo.sql. */
#define NSF_ORG_ID      "0e000000-0000-4000-8000-000000000001" /* mogender, coordinator */
#define NSF_ORG_CODE    "mogender"
#define NSF_REGION_ID   "0e000000-0000-4000-8000-000000000007" /* regional */
#define NSF_XA_ORG_CODE "xa-women" /* another country's ministry, coordinator */

/* Records the session target creates before fuzzing. */
#define NSF_PLAN_ID      "f0000000-0000-4000-8000-000000000001"
#define NSF_INDICATOR_ID "f0000000-0000-4000-8000-000000000002"
/* The other ministry's plan, and its indicator the lead ministry answers for. */
#define NSF_XA_PLAN_ID      "f0000000-0000-4000-8000-000000000011"
#define NSF_XA_INDICATOR_ID "f0000000-0000-4000-8000-000000000012"
/* Records the seeds create. */
#define NSF_PLAN2_ID      "f0000000-0000-4000-8000-000000000003"
#define NSF_INDICATOR2_ID "f0000000-0000-4000-8000-000000000004"

/* Placeholders (fixture.h): the session target puts the id of the
 * conflict its setup made in place of NSF_TOKEN_CONFLICT; the client
 * target's fake server puts the id of mutation k of the client's last
 * request in place of NSF_TOKEN_MUTATION with digit k. */
#define NSF_TOKEN_CONFLICT "@nsf-conflict-id-placeholder-------@"
#define NSF_TOKEN_MUTATION "@nsf-mutation-id-0-placeholder-----@"
#define NSF_TOKEN_DIGIT    17 /* where k goes in NSF_TOKEN_MUTATION */

typedef struct nsf_arena nsf_arena;
nsf_arena *nsf_arena_new(void);
void nsf_arena_free(nsf_arena *a);
/* Zeroed memory that lives as long as the arena. */
void *nsf_alloc(nsf_arena *a, size_t n);
char *nsf_str(nsf_arena *a, const char *s);

/* Values of every kind. */
Napsync__V1__Value *nsf_null(nsf_arena *a);
Napsync__V1__Value *nsf_bool(nsf_arena *a, int b);
Napsync__V1__Value *nsf_int(nsf_arena *a, int64_t i);
Napsync__V1__Value *nsf_dec(nsf_arena *a, const char *s);
Napsync__V1__Value *nsf_text(nsf_arena *a, const char *s);
Napsync__V1__Value *nsf_date(nsf_arena *a, const char *s);
Napsync__V1__Value *nsf_ref(nsf_arena *a, const char *s);
/* A set of n items. */
Napsync__V1__Value *nsf_set(nsf_arena *a, size_t n, const char *const *items);

/* A field set of n name/value pairs: name, value, name, value, ... */
Napsync__V1__FieldSet *nsf_fields(nsf_arena *a, size_t n, ...);

/* The fields of a plan the domain model accepts (owner: the pusher's
 * organisation), and of an indicator of a plan. */
Napsync__V1__FieldSet *nsf_plan_fields(nsf_arena *a, const char *title, const char *status);
Napsync__V1__FieldSet *nsf_indicator_fields(nsf_arena *a, const char *plan_id, const char *title);

Napsync__V1__Mutation *nsf_mutation(nsf_arena *a, const char *mutation_id, const char *type,
                                    const char *record_id, Napsync__V1__MutationOp op,
                                    uint64_t base_version, Napsync__V1__FieldSet *fields);
Napsync__V1__Scope *nsf_plan_scope(nsf_arena *a, const char *plan_id);
Napsync__V1__Scope *nsf_org_scope(nsf_arena *a, const char *org_id);
Napsync__V1__Scope *nsf_directory_scope(nsf_arena *a);

/* An Envelope with a request id and no body: the caller sets one. */
ns_envelope *nsf_env(nsf_arena *a, uint64_t request_id);

/* Requests. */
/* zstd: offer compressed frames (Hello.compression). */
ns_envelope *nsf_hello(nsf_arena *a, uint64_t rid, int zstd);
ns_envelope *nsf_ping(nsf_arena *a, uint64_t rid, const char *payload);
ns_envelope *nsf_push(nsf_arena *a, uint64_t rid, Napsync__V1__PushMode mode, size_t n,
                      Napsync__V1__Mutation *const *m);
ns_envelope *nsf_pull(nsf_arena *a, uint64_t rid, const char *cursor, uint32_t page_size,
                      Napsync__V1__Scope *scope);
ns_envelope *nsf_subscribe(nsf_arena *a, uint64_t rid, const char *cursor,
                           Napsync__V1__Scope *scope);
ns_envelope *nsf_list_conflicts(nsf_arena *a, uint64_t rid, Napsync__V1__Scope *scope,
                                int include_resolved);
ns_envelope *nsf_resolve(nsf_arena *a, uint64_t rid, const char *conflict_id,
                         const char *mutation_id, Napsync__V1__Resolution r,
                         Napsync__V1__Value *value);
ns_envelope *nsf_history(nsf_arena *a, uint64_t rid, const char *type, const char *record_id,
                         uint64_t before_version, uint32_t limit);
ns_envelope *nsf_report(nsf_arena *a, uint64_t rid, const char *kind, const char *plan_id,
                        uint32_t year, const char *region_id);
ns_envelope *nsf_goodbye(nsf_arena *a, uint64_t rid, Napsync__V1__GoodbyeReason reason,
                         const char *message);
ns_envelope *nsf_error(nsf_arena *a, uint64_t rid, Napsync__V1__ErrorCode code, int fatal,
                       const char *message);

/* Answers, as napsyncd sends them. */
/* zstd: agree on compressed frames (Welcome.compression). */
ns_envelope *nsf_welcome(nsf_arena *a, uint64_t rid, int zstd);
ns_envelope *nsf_pong(nsf_arena *a, uint64_t rid, const uint8_t *payload, size_t len);
Napsync__V1__MutationResult *nsf_result(nsf_arena *a, const char *mutation_id,
                                        Napsync__V1__MutationOutcome outcome, uint64_t version,
                                        const char *conflict_id);
ns_envelope *nsf_push_result(nsf_arena *a, uint64_t rid, size_t n,
                             Napsync__V1__MutationResult *const *results);
ns_envelope *nsf_mutation_result(nsf_arena *a, uint64_t rid, Napsync__V1__MutationResult *r);
Napsync__V1__Record *nsf_record(nsf_arena *a, const char *type, const char *id, uint64_t version,
                                const char *tenant_id, Napsync__V1__FieldSet *fields);
ns_envelope *nsf_change_page(nsf_arena *a, uint64_t rid, size_t n, Napsync__V1__Record *const *r,
                             const char *next_cursor, int more, const char *tenant_id);
Napsync__V1__Conflict *nsf_conflict(nsf_arena *a, const char *id, const char *tenant_id,
                                    const char *record_id, const char *field);
ns_envelope *nsf_conflict_list(nsf_arena *a, uint64_t rid, size_t n,
                               Napsync__V1__Conflict *const *c);
ns_envelope *nsf_history_page(nsf_arena *a, uint64_t rid, const char *mutation_id);
ns_envelope *nsf_report_result(nsf_arena *a, uint64_t rid, const char *kind, const char *json);

/* Dies unless every string in m and the messages in it is valid UTF-8
 * (proto3 requires it of string fields: a peer's library may refuse the
 * whole message otherwise). who names the sender for the message. */
void nsf_check_strings(const ProtobufCMessage *m, const char *who);

/* A growing byte buffer. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} nsf_buf;
void nsf_buf_free(nsf_buf *b);
void nsf_buf_put(nsf_buf *b, const void *data, size_t n);
/* The packed envelope alone (an envelope seed). */
void nsf_buf_envelope(nsf_buf *b, const ns_envelope *env);
/* A frame: the 4-byte length, then the packed envelope. */
void nsf_buf_frame(nsf_buf *b, const ns_envelope *env);
/* The same, the envelope compressed as Envelope{zstd} (proto/compress.h)
 * whether or not that makes it smaller. */
void nsf_buf_zstd_frame(nsf_buf *b, const ns_envelope *env);
/* The packed Envelope{zstd} alone (an envelope seed). */
void nsf_buf_zstd_envelope(nsf_buf *b, const ns_envelope *env);

#endif
