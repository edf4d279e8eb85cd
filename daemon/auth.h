/* Who is connecting: the device certificate's fingerprint, looked up in
 * PostgreSQL, gives the device, its principal, the organisation and roles. */
#ifndef NS_AUTH_H
#define NS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"

#define NS_AUTH_MAX_ROLES 8
/* Principal and organisation names: at most 200 characters (the schema's
 * CHECK), up to 4 bytes each in UTF-8, and the NUL. */
#define NS_AUTH_NAME_SIZE 801

typedef struct {
    char device_id[40];
    char device_name[72]; /* ASCII, at most 64 (the schema's CHECK) */
    char principal_id[40];
    char principal_name[NS_AUTH_NAME_SIZE];
    char organisation_id[40];
    char organisation_name[NS_AUTH_NAME_SIZE];
    char organisation_kind[32];
    char country[4];
    char roles[NS_AUTH_MAX_ROLES][16];
    int nroles;
} ns_identity_info;

typedef enum {
    NS_AUTH_OK = 0,
    NS_AUTH_UNKNOWN_DEVICE = 1,
    NS_AUTH_REVOKED = 2,
    NS_AUTH_UNAVAILABLE = 3, /* the database could not answer */
} ns_auth_result;

/* id is valid only during the call, and only for NS_AUTH_OK and NS_AUTH_REVOKED. */
typedef void (*ns_auth_cb)(ns_auth_result r, const ns_identity_info *id, void *ud);

/* NS_DB_OK, or why the lookup could not even be queued (NS_DB_QUEUE_FULL,
 * NS_DB_SHUTDOWN, NS_DB_NOMEM, ...); then the callback is never called. */
__attribute__((warn_unused_result)) ns_db_status
ns_auth_lookup(ns_db *db, const uint8_t fingerprint[32], ns_auth_cb cb, void *ud);

/* ---- sessions already open (revocation.c) -------------------------------------
 * Their certificates looked up again, many in one query, under the rule of
 * ns_auth_lookup. */

/* Certificates per check: a bound on the query's parameter (65 bytes each). */
#define NS_AUTH_CHECK_MAX 100000

/* What a check found; valid during its callback only. */
typedef struct ns_auth_verdicts ns_auth_verdicts;

/* For one of the certificates checked, and the device a session
 * authenticated as with it: NS_AUTH_OK when it still may connect,
 * NS_AUTH_REVOKED when the device is refused, NS_AUTH_UNKNOWN_DEVICE when
 * the certificate belongs to no device now, or to another one. */
ns_auth_result ns_auth_verdict(const ns_auth_verdicts *v, const uint8_t fingerprint[32],
                               const char *device_id);

/* NS_DB_OK with v, or why the check failed (v is NULL). */
typedef void (*ns_auth_check_cb)(ns_db_status st, const ns_auth_verdicts *v, void *ud);

/* Checks n (1 to NS_AUTH_CHECK_MAX) certificates, whose fingerprints are
 * copied. NS_DB_OK, or why the query could not be queued; then the
 * callback is never called. */
__attribute__((warn_unused_result)) ns_db_status ns_auth_check(ns_db *db,
                                                               const uint8_t (*fingerprints)[32],
                                                               size_t n, ns_auth_check_cb cb,
                                                               void *ud);

#endif
