/* The load both scale tests run (tests/scale/): writers and a subscriber,
 * libnapsync clients in threads of the test program, each with its own
 * store and device, all of one organisation (mogender), against one
 * address (HAProxy's, or a daemon's), while the test breaks things under
 * them. Then the checks that nothing the clients were told was lost or
 * applied twice.
 *
 *  - Each writer creates SC_PLANS plans and then, round after round,
 *    renames one of them 1 to 3 times (ns_client_put) and syncs once
 *    (ns_client_sync_wait, no watch). A failed sync is tried again in the
 *    next round: the outbox keeps every change until the server answers
 *    it, and a re-sent change is answered from sync_mutations. Every
 *    mutation's id, plan, title and the version it must make are kept;
 *    a change that left the outbox was answered ("acknowledged").
 *  - The subscriber watches (ns_client_sync with watch) on a loop of the
 *    test's own, counting its connections, losses and changes.
 *  - At the end every writer syncs until its outbox is empty, writer 0
 *    renames its first plan once more (the sentinel), and the subscriber
 *    stops as soon as its replica holds the sentinel: the feed is in commit
 *    order, so it then holds everything before it.
 *  - sc_load_check compares, for every mutation, what the server keeps
 *    (sync_mutations: one answer, applied or merged, with the version the
 *    mutation makes; sync_revisions: exactly one revision with its title;
 *    no conflict; nothing the clients did not send) and the plans' final
 *    versions and titles with every writer's replica and the subscriber's.
 *
 * Threads never call cmocka: they keep their first problem in a message
 * that the main thread reports. Every wait is bounded; nothing is timed. */
#ifndef SC_SCALETEST_H
#define SC_SCALETEST_H

#include <stdbool.h>
#include <stdint.h>

#include "harness.h"

#define SC_MAX_WRITERS 8
#define SC_PLANS       2
/* Bounded waits: each covers a sanitizer build on a busy machine. */
#define SC_WAIT_MS 60000

typedef struct sc_load sc_load;

typedef struct {
    nst_env *e;         /* the CA and the database to check against */
    const char *server; /* host:port every client connects to */
    const nst_device *writers;
    int nwriters; /* 1..SC_MAX_WRITERS */
    const nst_device *watcher;
} sc_load_opts;

/* What the subscriber has seen so far. */
typedef struct {
    uint64_t connected;    /* NS_SYNC_CONNECTED events */
    uint64_t disconnected; /* NS_SYNC_DISCONNECTED events */
    uint64_t caught_up;
    uint64_t changes; /* records applied from the server */
} sc_watch_counts;

/* Starts the subscriber and, once it has caught up, the writers. *out is
 * set first, so that a teardown frees what was started when this fails
 * the test (a client that cannot start). Free with sc_load_free. */
void sc_load_start(const sc_load_opts *o, sc_load **out);
/* Waits until every writer has had at least n more of its changes
 * acknowledged than when this was called; fails the test after
 * SC_WAIT_MS, naming the writers that did not and their last errors. */
void sc_load_wait_progress(sc_load *l, uint64_t n, const char *what);
void sc_load_watch_counts(sc_load *l, sc_watch_counts *out);
/* Waits until the subscriber has connected at least n times in all. */
void sc_load_wait_connected(sc_load *l, uint64_t n, const char *what);
/* A mutation made by the test itself (not by a writer), for the checks:
 * acknowledged with this version and title, on a plan it owns alone. */
void sc_load_note(sc_load *l, const char *device, const char *plan_id, const char *mutation_id,
                  uint64_t version, const char *title);
/* Stops the writers, lets each sync until its outbox is empty, sends the
 * sentinel, and stops the subscriber once it holds the sentinel. */
void sc_load_finish(sc_load *l);
/* The checks above, on e's database (e->pg: where the data is now). */
void sc_load_check(sc_load *l, nst_env *e);
/* Ends whatever still runs (a failed test) and frees everything. */
void sc_load_free(sc_load *l);

#endif
