/* A test program's own database on the test cluster: see pgtest.h. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "pgtest.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate.h"

#define PROG program_invocation_short_name

/* Appends key='value' with the quoting libpq expects. Returns -1 if it does
 * not fit. */
static int conninfo_add(char *out, size_t cap, const char *key, const char *val)
{
    size_t o = strlen(out);
    int n = snprintf(out + o, cap - o, "%s%s='", o ? " " : "", key);
    if (n < 0 || (size_t)n >= cap - o)
        return -1;
    o += (size_t)n;
    for (const char *p = val; *p; p++) {
        if (o + 3 >= cap)
            return -1;
        if (*p == '\'' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    if (o + 2 > cap)
        return -1;
    out[o++] = '\'';
    out[o] = '\0';
    return 0;
}

int nst_pgt_conninfo(char *out, size_t cap, const char *dbname)
{
    const char *host = getenv("NS_TEST_PGHOST");
    const char *port = getenv("NS_TEST_PGPORT");
    const char *user = getenv("NS_TEST_PGUSER");
    if (!host || !*host || !port || !*port || !user || !*user) {
        fprintf(stderr,
                "%s: NS_TEST_PGHOST, NS_TEST_PGPORT and NS_TEST_PGUSER "
                "must name the test cluster (tests/run.sh sets them)\n",
                PROG);
        return -1;
    }
    if (cap == 0)
        return -1;
    out[0] = '\0';
    if (conninfo_add(out, cap, "host", host) || conninfo_add(out, cap, "port", port) ||
        conninfo_add(out, cap, "user", user) || conninfo_add(out, cap, "dbname", dbname)) {
        fprintf(stderr, "%s: the conninfo of %s does not fit in %zu bytes\n", PROG, dbname, cap);
        return -1;
    }
    return 0;
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

PGconn *nst_pgt_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s: %s", PROG, c ? PQerrorMessage(c) : "out of memory\n");
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL);
    return c;
}

PGresult *nst_pgt_query(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = n == 0 ? PQexec(c, sql) : PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %.120s: %s", PROG, sql,
                r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        PQclear(r);
        return NULL;
    }
    return r;
}

int nst_pgt_exec(PGconn *c, const char *sql)
{
    PGresult *r = nst_pgt_query(c, sql, 0, NULL);
    PQclear(r);
    return r != NULL ? 0 : -1;
}

void nst_pgt_exec_ok(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = nst_pgt_query(c, sql, n, params);
    if (r == NULL)
        fail_msg("SQL failed: %.120s", sql);
    PQclear(r);
}

/* One statement on a short connection to the cluster's postgres database:
 * CREATE and DROP DATABASE cannot run on the database they name. */
static int admin_exec(const char *sql)
{
    char conninfo[1024];
    if (nst_pgt_conninfo(conninfo, sizeof(conninfo), "postgres") != 0)
        return -1;
    PGconn *c = nst_pgt_connect(conninfo);
    if (c == NULL)
        return -1;
    int rc = nst_pgt_exec(c, sql);
    PQfinish(c);
    return rc;
}

/* The name goes into SQL as an identifier (which cannot be a parameter):
 * it is made of these characters only, so it needs no quoting. */
static bool tag_ok(const char *tag)
{
    if (*tag == '\0')
        return false;
    for (const char *p = tag; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

int nst_pgt_create(nst_pgt_db *db, const char *tag)
{
    memset(db, 0, sizeof(*db));
    const char *src = getenv("NS_SOURCE_DIR");
    if (src == NULL || *src == '\0') {
        fprintf(stderr, "%s: set NS_SOURCE_DIR to the source directory\n", PROG);
        return -1;
    }
    char sql_dir[1024];
    int n = snprintf(sql_dir, sizeof(sql_dir), "%s/sql", src);
    if (n < 0 || (size_t)n >= sizeof(sql_dir)) {
        fprintf(stderr, "%s: NS_SOURCE_DIR is too long\n", PROG);
        return -1;
    }
    if (!tag_ok(tag)) {
        fprintf(stderr, "%s: database tag \"%s\" is not [a-z0-9_]+\n", PROG, tag);
        return -1;
    }
    n = snprintf(db->name, sizeof(db->name), "nst_%s_%ld", tag, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(db->name)) {
        fprintf(stderr, "%s: database tag \"%s\" is too long\n", PROG, tag);
        return -1;
    }
    if (nst_pgt_conninfo(db->conninfo, sizeof(db->conninfo), db->name) != 0)
        return -1;

    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->name);
    if (admin_exec(sql) != 0)
        return -1;
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db->name);
    if (admin_exec(sql) != 0)
        return -1;
    db->created = true;

    char err[512];
    if (ns_migrate_run(db->conninfo, sql_dir, &db->migrations, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: migrations: %s\n", PROG, err);
        return -1;
    }
    /* A new database with nothing to apply: sql_dir is not the tree's. */
    if (db->migrations < 1) {
        fprintf(stderr, "%s: no migration applied from %s\n", PROG, sql_dir);
        return -1;
    }
    db->pg = nst_pgt_connect(db->conninfo);
    return db->pg != NULL ? 0 : -1;
}

int nst_pgt_drop(nst_pgt_db *db)
{
    PQfinish(db->pg);
    db->pg = NULL;
    if (!db->created || getenv("NST_KEEP") != NULL)
        return 0;
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", db->name);
    if (admin_exec(sql) != 0)
        return -1;
    db->created = false;
    return 0;
}
