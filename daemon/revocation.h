/* Revocation reaches sessions already open. A device revoked, given another
 * certificate or deleted (with its principal or organisation) NOTIFYs
 * 'napsync_revocation' with "device:<id>", "principal:<id>" or
 * "organisation:<id>" when its transaction commits (sql/010). The LISTEN
 * connection (db_notify.c) hands that here; the certificates of the
 * authenticated sessions it concerns are looked up again in one query,
 * under the rule of a Hello (ns_auth_check), and a session refused now ends
 * with a fatal Error{DEVICE_REVOKED} (or UNKNOWN_DEVICE) and a graceful
 * close. A NULL payload (LISTEN took effect again after a reconnect, so a
 * notification may have been lost) checks every authenticated session.
 *
 * A check that fails (the database is away) leaves every session to check
 * again after a backoff (0.5 s doubling to 30 s): sessions stay up meanwhile,
 * as they do while the database is away.
 *
 * The epoch closes the one gap left: a Hello's lookup that the database
 * answered before a revocation committed, but whose answer reaches the loop
 * after the notification did. Every notification advances the epoch; a
 * session records the epoch in which its lookup was sent (auth_epoch), a
 * lookup answered in a later epoch is made again (dispatch.c), and a check
 * judges only sessions authenticated by lookups sent before it.
 *
 * Everything runs on the loop's thread. */
#ifndef NS_REVOCATION_H
#define NS_REVOCATION_H

#include <stdint.h>

#define NS_REVOCATION_CHANNEL "napsync_revocation"

struct ns_server;
typedef struct ns_revocation ns_revocation;

/* LISTENs on srv->db, which must be open; srv outlives *out. Returns 0, or
 * -1 (out of memory, or the pool refused the channel). */
__attribute__((warn_unused_result)) int ns_revocation_open(struct ns_server *srv,
                                                           ns_revocation **out);
/* Once the pool has closed (it calls nothing back after that): stops the
 * retry timer; the memory goes in its close callback. r may be NULL. */
void ns_revocation_close(ns_revocation *r);

/* The current epoch (0 for a NULL r). */
uint64_t ns_revocation_epoch(const ns_revocation *r);

#endif
