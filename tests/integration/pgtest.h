/* A database of a test program's own on the test cluster, for the tests
 * that run the daemon's modules in process (test_push, test_registry,
 * test_feed). The cluster is named by NS_TEST_PGHOST, NS_TEST_PGPORT and
 * NS_TEST_PGUSER (tests/run.sh exports them; trust authentication); the
 * migrations are read from $NS_SOURCE_DIR/sql, as the daemon reads them.
 *
 * Every function that returns an error has printed why on stderr, prefixed
 * with the program's name, so a fixture only returns -1. */
#ifndef NS_TEST_PGTEST_H
#define NS_TEST_PGTEST_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

typedef struct {
    char name[64];       /* nst_<tag>_<pid>: programs running at once do not meet */
    char conninfo[1024]; /* for ns_migrate_run, ns_registry_load, ns_db_open */
    int migrations;      /* how many ns_migrate_run applied */
    PGconn *pg;          /* on the database, notices silenced, for the tests' own SQL */
    bool created;        /* the database exists and nst_pgt_drop drops it */
} nst_pgt_db;

/* Writes the conninfo of database dbname on the test cluster to out (cap
 * bytes). Returns 0, or -1 if the environment names no cluster or it does
 * not fit. */
int nst_pgt_conninfo(char *out, size_t cap, const char *dbname);

/* Creates database nst_<tag>_<pid> (tag: [a-z0-9_], dropping a leftover of
 * a crashed run first), migrates it and connects db->pg. Returns 0 or -1;
 * either way nst_pgt_drop(db) releases whatever was made. */
int nst_pgt_create(nst_pgt_db *db, const char *tag);

/* Closes db->pg and drops the database, unless NST_KEEP is set (to look at
 * it after a failure). Returns 0 or -1. */
int nst_pgt_drop(nst_pgt_db *db);

/* A connection with notices silenced ("... does not exist, skipping" would
 * only clutter the output). Returns it (the caller PQfinishes it) or NULL. */
PGconn *nst_pgt_connect(const char *conninfo);

/* Runs sql with n text parameters; with none, several statements may travel
 * in one string. Returns the result (the caller PQclears it) if it is
 * COMMAND_OK or TUPLES_OK, else NULL. */
PGresult *nst_pgt_query(PGconn *c, const char *sql, int n, const char *const *params);

/* nst_pgt_query without parameters, for fixtures: returns 0 or -1. */
int nst_pgt_exec(PGconn *c, const char *sql);

/* nst_pgt_query for a test: fails the running cmocka test if sql fails. */
void nst_pgt_exec_ok(PGconn *c, const char *sql, int n, const char *const *params);

#endif
