/* Who is connecting: the device certificate's fingerprint, looked up in
 * PostgreSQL, gives the device, its principal, the organisation and roles. */
#ifndef NS_AUTH_H
#define NS_AUTH_H

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

#endif
