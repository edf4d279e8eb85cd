/* Crash and fault injection under load (issue 5, item 2).
 *
 * Several client processes (napsync-faultclient, tests/faults/faultclient.c:
 * libnapsync with a store of its own each) edit and sync at random, with
 * random offline periods, through a loopback proxy (integration/cutproxy.h)
 * to a real napsyncd with mutual TLS and a real PostgreSQL (a private
 * cluster this program starts, so that it may stop it). Meanwhile each
 * scenario breaks something:
 *
 *  daemon_kill  napsyncd killed with SIGKILL at random instants and
 *               restarted each time (NS_FAULT_DAEMON_KILLS times);
 *  postgres     PostgreSQL stopped (fast, then immediate) and started
 *               again, and paused with SIGSTOP for longer than the clients'
 *               timeout (NS_FAULT_PG_CYCLES cycles of the three);
 *  links        connections cut, stalled and slowed by the proxy: each new
 *               connection may get a fuse (cut after a random number of
 *               bytes: in the TLS handshake, mid-frame), a stall or
 *               slowness, and at random instants every open connection is
 *               cut or stalled (NS_FAULT_LINK_SECONDS);
 *  client_kill  a client process killed with SIGKILL in the middle of a put
 *               and in the middle of a sync (NS_FAULT_CLIENT_KILLS of each):
 *               its store is checked while it is dead, then it restarts;
 *  disk_full    the clients' stores on a small tmpfs that the test fills
 *               (NS_FAULT_DISK_CYCLES times): puts and syncs fail with the
 *               disk-full error, a client killed meanwhile loses nothing.
 *
 * and closing_deadline, the regression test of a client hang the postgres
 * scenario found (see there).
 *
 * Every scenario ends with the same check, after the faults stop and every
 * device has synced until its outbox is empty ("heal"):
 *
 *  1. exactly once: every change a client was told was saved (its log's
 *     "saved" lines, and "found" ones: see faultclient.c) has one answer in
 *     sync_mutations, for its device and record, not refused; at most one
 *     revision, exactly one when applied or merged (every edit writes a
 *     unique value); conflict rows when it conflicted. The server holds no
 *     answer from these devices and no revision for any change nobody
 *     saved;
 *  2. the feed has no gap: positions 1..head, one per revision and one
 *     revision per position; every record's revisions numbered 1..n, its
 *     row at the last one;
 *  3. every replica equals the server: the same plans and indicators, with
 *     versions, tombstones, tenants, titles, summaries and tags as
 *     PostgreSQL has them; all devices equal field by field; no outbox
 *     holds anything.
 *
 * Before the heal, and after each client kill, each store is checked on
 * its own: it opens, SQLite's quick_check passes, every saved change is in
 * its outbox or answered on the server (nothing lost), nothing is refused,
 * and its replica is a whole prefix of the feed: every change in its scope
 * up to its cursor is there (at that version or later), and every replica
 * row is a version the server wrote, with that version's title.
 *
 * NS_TEST_SEED (default: from the clock; printed) reproduces the test's
 * choices: which client, which fault, the delays, the proxy's draws, the
 * clients' edits. Where a fault falls relative to what the processes are
 * doing depends on timing, so a rerun exercises the same plan, not the same
 * interleaving. NS_FAULT_ONLY=NAME runs one scenario (a cmocka filter, e.g.
 * "*daemon_kill"). The counts above default to a CI-sized run;
 * tests/faults/run-long.sh runs the full ones. Nothing here asserts how
 * long anything took. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "cutproxy.h"
#include "harness.h"

#define MAX_CLIENTS   8
#define MAX_REPORTED  40
#define MAX_STATUSES  24
#define PRINCIPAL_FMT "Fault Coordinator %d"
/* The disk_full scenario's tmpfs. */
#define DISK_SIZE "32m"

enum { PH_IDLE = 0, PH_PUT = 1, PH_SYNC = 2, PH_OFFLINE = 3, PH_OPEN = 4 };
static const char *const phase_name[] = {"idle", "put", "sync", "offline", "open"};

/* A change a client was told was saved. */
typedef struct {
    char mid[40];
    char type[16];
    char rid[40];
    int dev;
} saved;

/* What the clients' logs say, summed over the scenario. */
typedef struct {
    saved *v;
    size_t n, cap;
    unsigned starts, found, sync_ok, sync_fail, watch_ok, watch_fail, put_fail, open_fail, put_full;
    unsigned watch_disconnects, sync_disconnects;
    unsigned lost, lost_handshake, lost_before_welcome; /* connections a sync lost */
    unsigned nstatus;
    struct {
        char name[32];
        unsigned count;
        char first[160];
    } status[MAX_STATUSES]; /* failures by "what status" */
} logsum;

typedef struct {
    pid_t pid;
    unsigned starts;
    char store[NST_PATH], log[NST_PATH], phase_path[NST_PATH], out[NST_PATH];
    volatile uint8_t *phase;
} driver;

typedef struct {
    nst_env *e;
    /* the program */
    char pg_root[NST_PATH];
    nst_pg pg;
    bool pg_started;
    uint64_t seed, rng;
    int nclients_all;
    uint32_t timeout_ms;
    char faultclient[NST_PATH];
    /* the scenario */
    const char *scenario;
    int nclients; /* nclients_all, or fewer */
    uint64_t t0;
    nst_device dev[MAX_CLIENTS];
    char dev_uuid[MAX_CLIENTS][40];
    char org_id[40];
    driver drv[MAX_CLIENTS];
    nst_proxy *proxy;
    char server[64];
    char disk[NST_PATH]; /* the mounted tmpfs, "" when none */
    pid_t paused[256];   /* PostgreSQL's processes while SIGSTOPped */
    int npaused;
    unsigned violations;
    unsigned store_checks;
    char faults[512]; /* the scenario's own figures, for the summary */
} fixture;
NST_FIXTURE_CHECK(fixture);

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t rnd(fixture *f)
{
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned between(fixture *f, unsigned lo, unsigned hi)
{
    return hi > lo ? lo + (unsigned)(rnd(f) % (hi - lo + 1u)) : lo;
}

static unsigned env_uint(const char *name, unsigned def, unsigned lo, unsigned hi)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return def;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "faults: %s must be %u to %u; using %u\n", name, lo, hi, def);
        return def;
    }
    return (unsigned)v;
}

static void violation(fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(fixture *f, const char *fmt, ...)
{
    if (f->violations++ < MAX_REPORTED) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "faults: %s: VIOLATION: ", f->scenario);
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
}

static void note(fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "faults: %s: ", f->scenario);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void faults_append(fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void faults_append(fixture *f, const char *fmt, ...)
{
    size_t len = strlen(f->faults);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->faults + len, sizeof(f->faults) - len, fmt, ap);
    va_end(ap);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A set's text with its items sorted and unique; NULL stays NULL. */
static char *set_canon(const char *s)
{
    if (s == NULL)
        return NULL;
    char *copy = strdup(s);
    char *out = calloc(1, strlen(s) + 1);
    assert_true(copy && out);
    const char *items[64] = {NULL};
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && n < 64;
         t = strtok_r(NULL, ",", &save))
        items[n++] = t;
    qsort(items, n, sizeof(items[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(items[i], items[i - 1]) == 0)
            continue;
        if (out[0])
            strcat(out, ",");
        strcat(out, items[i]);
    }
    free(copy);
    return out;
}

static bool veq(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static const char *show(const char *v)
{
    return v ? v : "(null)";
}

/* ---- PostgreSQL ------------------------------------------------------------------- */

static PGconn *db_open(fixture *f)
{
    const char *keys[] = {"host", "port", "user", "dbname", "connect_timeout", NULL};
    const char *vals[] = {f->pg.host, f->pg.port, f->pg.user, f->e->dbname, "10", NULL};
    PGconn *db = PQconnectdbParams(keys, vals, 0);
    if (db == NULL || PQstatus(db) != CONNECTION_OK)
        nst_fail(f->e, "cannot connect to the test database: %s",
                 db ? PQerrorMessage(db) : "out of memory");
    return db;
}

static PGresult *db_query(fixture *f, PGconn *db, const char *sql, int n, const char *const *p)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        nst_fail(f->e, "query failed: %s\n%s", PQerrorMessage(db), sql);
    return res;
}

static const char *col(PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

/* A sorted list of strings from the first column of a query. */
typedef struct {
    char **v;
    size_t n;
} strset;

static strset db_strset(fixture *f, PGconn *db, const char *sql, int n, const char *const *p)
{
    PGresult *res = db_query(f, db, sql, n, p);
    strset s = {calloc((size_t)PQntuples(res) + 1, sizeof(char *)), (size_t)PQntuples(res)};
    assert_non_null(s.v);
    for (size_t i = 0; i < s.n; i++) {
        s.v[i] = strdup(PQgetvalue(res, (int)i, 0));
        assert_non_null(s.v[i]);
    }
    PQclear(res);
    qsort(s.v, s.n, sizeof(char *), cmp_str);
    return s;
}

static bool strset_has(const strset *s, const char *x)
{
    return s->n > 0 && bsearch(&x, s->v, s->n, sizeof(char *), cmp_str) != NULL;
}

static void strset_free(strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* ---- the clients' logs ------------------------------------------------------------ */

static void count_status(logsum *ls, const char *what, const char *msg)
{
    unsigned i = 0;
    while (i < ls->nstatus && strcmp(ls->status[i].name, what) != 0)
        i++;
    if (i == ls->nstatus) {
        if (ls->nstatus == MAX_STATUSES)
            return;
        ls->nstatus++;
        snprintf(ls->status[i].name, sizeof(ls->status[i].name), "%s", what);
        snprintf(ls->status[i].first, sizeof(ls->status[i].first), "%s", msg);
    }
    ls->status[i].count++;
}

static void add_saved(logsum *ls, int dev, const char *mid, const char *type, const char *rid)
{
    if (ls->n == ls->cap) {
        ls->cap = ls->cap ? ls->cap * 2 : 1024;
        ls->v = realloc(ls->v, ls->cap * sizeof(*ls->v));
        assert_non_null(ls->v);
    }
    saved *s = &ls->v[ls->n++];
    snprintf(s->mid, sizeof(s->mid), "%s", mid);
    snprintf(s->type, sizeof(s->type), "%s", type);
    snprintf(s->rid, sizeof(s->rid), "%s", rid);
    s->dev = dev;
}

static int cmp_saved(const void *a, const void *b)
{
    return strcmp(((const saved *)a)->mid, ((const saved *)b)->mid);
}

static const saved *find_saved(const logsum *ls, const char *mid)
{
    saved key;
    memset(&key, 0, sizeof(key));
    snprintf(key.mid, sizeof(key.mid), "%s", mid);
    return ls->n ? bsearch(&key, ls->v, ls->n, sizeof(saved), cmp_saved) : NULL;
}

/* Reads every client's log (all of dev's, or of every device for -1). */
static void read_logs(fixture *f, int only, logsum *ls)
{
    memset(ls, 0, sizeof(*ls));
    for (int d = 0; d < f->nclients; d++) {
        if (only >= 0 && d != only)
            continue;
        FILE *in = fopen(f->drv[d].log, "r");
        if (in == NULL)
            continue;
        char line[1200];
        while (fgets(line, sizeof(line), in)) {
            line[strcspn(line, "\n")] = '\0';
            char a[40], b[40], c[40], st[32];
            int off = 0;
            if (sscanf(line, "saved %39s %39s %39s", a, b, c) == 3) {
                add_saved(ls, d, a, b, c);
            } else if (sscanf(line, "found %39s %39s %39s", a, b, c) == 3) {
                add_saved(ls, d, a, b, c);
                ls->found++;
            } else if (strncmp(line, "start ", 6) == 0) {
                ls->starts++;
            } else if (strncmp(line, "sync ok", 7) == 0) {
                unsigned long long x[4];
                if (sscanf(line, "sync ok %llu %llu %llu %llu", &x[0], &x[1], &x[2], &x[3]) == 4)
                    ls->sync_disconnects += (unsigned)x[3];
                ls->sync_ok++;
            } else if (strncmp(line, "watch ok", 8) == 0) {
                unsigned long long x[4];
                if (sscanf(line, "watch ok %llu %llu %llu %llu", &x[0], &x[1], &x[2], &x[3]) == 4)
                    ls->watch_disconnects += (unsigned)x[3];
                ls->watch_ok++;
            } else if (sscanf(line, "watch fail %31s %n", st, &off) == 1) {
                char what[40];
                snprintf(what, sizeof(what), "watch:%s", st);
                count_status(ls, what, line + off);
                ls->watch_fail++;
            } else if (sscanf(line, "sync fail %31s %n", st, &off) == 1) {
                char what[40];
                snprintf(what, sizeof(what), "sync:%s", st);
                count_status(ls, what, line + off);
                ls->sync_fail++;
            } else if (sscanf(line, "putfail %31s %n", st, &off) == 1) {
                char what[40];
                snprintf(what, sizeof(what), "put:%s", st);
                count_status(ls, what, line + off);
                ls->put_fail++;
                if (strstr(line + off, "disk is full"))
                    ls->put_full++;
            } else if (sscanf(line, "lost %31s %n", st, &off) == 1) {
                char what[40];
                snprintf(what, sizeof(what), "lost:%s", st);
                count_status(ls, what, line + off);
                ls->lost++;
                ls->lost_handshake += strstr(line + off, "during the TLS handshake") != NULL;
                ls->lost_before_welcome += strstr(line + off, "before the server answered") != NULL;
            } else if (sscanf(line, "openfail %31s %n", st, &off) == 1) {
                char what[40];
                snprintf(what, sizeof(what), "open:%s", st);
                count_status(ls, what, line + off);
                ls->open_fail++;
            }
        }
        fclose(in);
    }
    if (ls->n)
        qsort(ls->v, ls->n, sizeof(saved), cmp_saved);
    for (size_t i = 1; i < ls->n; i++)
        if (strcmp(ls->v[i].mid, ls->v[i - 1].mid) == 0)
            violation(f, "change %s saved twice (devices %d and %d)", ls->v[i].mid,
                      ls->v[i - 1].dev, ls->v[i].dev);
}

static void logsum_free(logsum *ls)
{
    free(ls->v);
    ls->v = NULL;
}

/* ---- client processes ---------------------------------------------------------------- */

/* The last client (of three or more) watches; the others sync now and
 * then. */
static const char *driver_mode(const fixture *f, int d)
{
    return f->nclients >= 3 && d == f->nclients - 1 ? "watch" : "mixed";
}

static void driver_start(fixture *f, int d)
{
    driver *x = &f->drv[d];
    char dev[16], start[16], seed[32], timeout[16], principal[64];
    snprintf(dev, sizeof(dev), "%d", d);
    snprintf(principal, sizeof(principal), PRINCIPAL_FMT, d);
    snprintf(start, sizeof(start), "%u", ++x->starts);
    snprintf(seed, sizeof(seed), "%" PRIu64, rnd(f));
    snprintf(timeout, sizeof(timeout), "%u", f->timeout_ms);
    char *argv[] = {f->faultclient,
                    "--server",
                    f->server,
                    "--ca",
                    f->e->ca_cert,
                    "--cert",
                    f->dev[d].cert,
                    "--key",
                    f->dev[d].key,
                    "--store",
                    x->store,
                    "--log",
                    x->log,
                    "--phase",
                    x->phase_path,
                    "--dev",
                    dev,
                    "--start",
                    start,
                    "--seed",
                    seed,
                    "--timeout",
                    timeout,
                    "--principal",
                    principal,
                    "--mode",
                    (char *)driver_mode(f, d),
                    NULL};
    x->pid = nst_spawn(argv, x->out);
    if (x->pid < 0)
        nst_fail(f->e, "cannot start %s", f->faultclient);
}

static void driver_tail(const fixture *f, int d)
{
    FILE *in = fopen(f->drv[d].out, "r");
    if (in == NULL)
        return;
    char line[512];
    int n = 0;
    fprintf(stderr, "---- %s ----\n", f->drv[d].out);
    while (fgets(line, sizeof(line), in) && n++ < 60)
        fputs(line, stderr);
    fclose(in);
}

/* A client that exited without being told to is a crash (or a sanitizer
 * report): a violation; it is started again so that the load goes on. */
static void drivers_watch(fixture *f)
{
    for (int d = 0; d < f->nclients; d++) {
        driver *x = &f->drv[d];
        int st;
        if (x->pid <= 0 || nst_wait_pid(x->pid, 0, &st) != 0)
            continue;
        x->pid = 0;
        violation(f, "client %d exited by itself with status %d", d, st);
        driver_tail(f, d);
        driver_start(f, d);
    }
}

static void driver_kill(fixture *f, int d)
{
    driver *x = &f->drv[d];
    if (x->pid <= 0)
        return;
    kill(x->pid, SIGKILL);
    int st;
    if (nst_wait_pid(x->pid, NST_WAIT_MS, &st) != 0)
        nst_fail(f->e, "client %d did not die on SIGKILL", d);
    x->pid = 0;
}

/* Where a client that does not stop is stuck, when gdb is there to say. */
static void driver_backtrace(const fixture *f, int d)
{
    if (access("/usr/bin/gdb", X_OK) != 0)
        return;
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)f->drv[d].pid);
    char *argv[] = {"/usr/bin/gdb", "-p", pid, "-batch", "-ex", "thread apply all bt", NULL};
    static char out[32768];
    fprintf(stderr, "---- client %d (pid %s): gdb -p %s -batch -ex 'thread apply all bt' ----\n", d,
            pid, pid);
    if (nst_run_no_tty(argv, out, sizeof(out)) >= 0)
        fputs(out, stderr);
}

/* SIGTERM: a client finishes what it does (a sync takes at most its
 * timeout) and exits 0. */
static void drivers_stop(fixture *f)
{
    for (int d = 0; d < f->nclients; d++)
        if (f->drv[d].pid > 0)
            kill(f->drv[d].pid, SIGTERM);
    for (int d = 0; d < f->nclients; d++) {
        driver *x = &f->drv[d];
        if (x->pid <= 0)
            continue;
        int st;
        if (nst_wait_pid(x->pid, (int)f->timeout_ms * 4 + NST_WAIT_MS, &st) != 0) {
            violation(f, "client %d did not stop on SIGTERM", d);
            driver_backtrace(f, d);
            driver_kill(f, d);
            driver_tail(f, d);
            continue;
        }
        x->pid = 0;
        if (st != 0) {
            violation(f, "client %d exited with status %d on SIGTERM", d, st);
            driver_tail(f, d);
        }
    }
}

static uint8_t driver_phase(const fixture *f, int d)
{
    return __atomic_load_n(f->drv[d].phase, __ATOMIC_SEQ_CST);
}

/* How many clients are in the middle of a sync now. */
static unsigned syncing_now(const fixture *f)
{
    unsigned n = 0;
    for (int d = 0; d < f->nclients; d++)
        n += f->drv[d].pid > 0 && driver_phase(f, d) == PH_SYNC;
    return n;
}

/* Runs the load for ms while watching the clients. */
static void load_for(fixture *f, unsigned ms)
{
    uint64_t end = nst_now_ms() + ms;
    while (nst_now_ms() < end) {
        drivers_watch(f);
        uint64_t left = end - nst_now_ms();
        nst_sleep_ms(left > 50 ? 50 : (int)(left + 1));
    }
    drivers_watch(f);
}

/* ---- the libnapsync side of the checks ---------------------------------------------- */

static ns_client *store_client(fixture *f, int d, ns_error *err)
{
    ns_client_options o;
    char unused[64];
    nst_client_options(f->e, f->dev[d].cert, f->dev[d].key, f->e->ca_cert, &o, unused,
                       sizeof(unused));
    o.server = f->server;
    o.store_path = f->drv[d].store;
    o.timeout_ms = 10000;
    ns_client *c = NULL;
    if (ns_client_new(&o, NULL, &c, err) != NS_OK)
        return NULL;
    return c;
}

typedef struct {
    char key[64]; /* type/id */
    uint64_t version;
    int deleted, pending, rejected;
    char tenant[40];
    char *title, *summary, *tags;
    char *all; /* everything the view says, for device-to-device comparison */
} snap;

typedef struct {
    snap *v;
    size_t n, cap;
} snaps;

static int cmp_snap(const void *a, const void *b)
{
    return strcmp(((const snap *)a)->key, ((const snap *)b)->key);
}

static int collect_snap(const ns_record_view *r, void *ud)
{
    snaps *ss = ud;
    if (ss->n == ss->cap) {
        ss->cap = ss->cap ? ss->cap * 2 : 256;
        ss->v = realloc(ss->v, ss->cap * sizeof(*ss->v));
        assert_non_null(ss->v);
    }
    snap *s = &ss->v[ss->n++];
    memset(s, 0, sizeof(*s));
    snprintf(s->key, sizeof(s->key), "%s/%s", r->entity_type, r->id);
    s->version = r->version;
    s->deleted = r->deleted;
    s->pending = r->pending;
    s->rejected = (int)r->rejected;
    snprintf(s->tenant, sizeof(s->tenant), "%s", r->tenant_id);
    size_t cap = 128 + strlen(r->tenant_id) + strlen(r->changed_by) + strlen(r->changed_at),
           len = 0;
    for (size_t i = 0; i < r->nfields; i++)
        cap +=
            strlen(r->fields[i].name) + (r->fields[i].value ? strlen(r->fields[i].value) : 0) + 16;
    s->all = malloc(cap);
    assert_non_null(s->all);
    len += (size_t)snprintf(s->all, cap, "v%" PRIu64 " d%d t%s by %s at %s", r->version, r->deleted,
                            r->tenant_id, r->changed_by, r->changed_at);
    for (size_t i = 0; i < r->nfields; i++) {
        const ns_field_view *fv = &r->fields[i];
        char *v = strcmp(fv->kind, "set") == 0 ? set_canon(fv->value)
                                               : (fv->value ? strdup(fv->value) : NULL);
        len += (size_t)snprintf(s->all + len, cap - len, " %s:%s=%s", fv->name, fv->kind,
                                v ? v : "(null)");
        if (strcmp(fv->name, "title") == 0)
            s->title = v ? strdup(v) : NULL;
        else if (strcmp(fv->name, "summary") == 0)
            s->summary = v ? strdup(v) : NULL;
        else if (strcmp(fv->name, "tags") == 0)
            s->tags = v ? strdup(v) : NULL;
        free(v);
    }
    return 0;
}

static void snaps_free(snaps *ss)
{
    for (size_t i = 0; i < ss->n; i++) {
        free(ss->v[i].title);
        free(ss->v[i].summary);
        free(ss->v[i].tags);
        free(ss->v[i].all);
    }
    free(ss->v);
    memset(ss, 0, sizeof(*ss));
}

static void list_view(fixture *f, ns_client *c, snaps *out)
{
    memset(out, 0, sizeof(*out));
    ns_error err;
    if (ns_client_list(c, "plan", 1, collect_snap, out, &err) != NS_OK ||
        ns_client_list(c, "indicator", 1, collect_snap, out, &err) != NS_OK)
        nst_fail(f->e, "ns_client_list: %s: %s", ns_status_name(err.status), err.message);
    if (out->n)
        qsort(out->v, out->n, sizeof(snap), cmp_snap);
}

static const snap *find_snap(const snaps *ss, const char *key)
{
    snap k;
    memset(&k, 0, sizeof(k));
    snprintf(k.key, sizeof(k.key), "%s", key);
    return ss->n ? bsearch(&k, ss->v, ss->n, sizeof(snap), cmp_snap) : NULL;
}

typedef struct {
    char **mid;
    size_t n;
    unsigned rejected;
    char first_reject[200];
} outbox_list;

static int collect_outbox(const ns_outbox_view *e, void *ud)
{
    outbox_list *l = ud;
    char **grown = realloc(l->mid, (l->n + 1) * sizeof(char *));
    assert_non_null(grown);
    l->mid = grown;
    l->mid[l->n] = strdup(e->mutation_id);
    assert_non_null(l->mid[l->n]);
    l->n++;
    if (e->rejected && l->rejected++ == 0)
        snprintf(l->first_reject, sizeof(l->first_reject), "%s: %s %s", e->mutation_id,
                 e->reject_code, e->reject_reason);
    return 0;
}

static void outbox_free(outbox_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->mid[i]);
    free(l->mid);
    memset(l, 0, sizeof(*l));
}

/* A revision "type/id/version" and its title, pointing into a result. */
typedef struct {
    const char *key, *title;
} revkey;

static int cmp_revkey(const void *a, const void *b)
{
    return strcmp(((const revkey *)a)->key, ((const revkey *)b)->key);
}

/* SQLite's own verdict on the file. */
static void check_sqlite(fixture *f, int d)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(f->drv[d].store, &db, SQLITE_OPEN_READWRITE, NULL);
    char verdict[256] = "";
    if (rc == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            snprintf(verdict, sizeof(verdict), "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    if (rc != SQLITE_OK)
        snprintf(verdict, sizeof(verdict), "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    if (strcmp(verdict, "ok") != 0)
        violation(f, "client %d: store %s: quick_check: %s", d, f->drv[d].store, verdict);
}

/* The store of client d (not running) on its own: see the top of the file.
 * Returns false when the library could not open it (err says why). */
static bool check_store(fixture *f, int d, const char *when, ns_error *open_err, unsigned *unlogged)
{
    f->store_checks++;
    check_sqlite(f, d);
    ns_client *c = store_client(f, d, open_err);
    if (c == NULL)
        return false;
    PGconn *db = db_open(f);
    logsum ls;
    read_logs(f, d, &ls);
    const char *p_dev[] = {f->dev_uuid[d]};
    strset answered = db_strset(
        f, db, "SELECT mutation_id::text FROM sync_mutations WHERE device_id = $1::uuid", 1, p_dev);

    /* Nothing lost: saved means in the outbox or answered. */
    outbox_list ob = {0};
    ns_error err;
    if (ns_client_outbox(c, collect_outbox, &ob, &err) != NS_OK)
        nst_fail(f->e, "client %d: ns_client_outbox (%s): %s", d, when, err.message);
    if (ob.n)
        qsort(ob.mid, ob.n, sizeof(char *), cmp_str);
    strset in_outbox = {ob.mid, ob.n};
    for (size_t i = 0; i < ob.n && unlogged; i++)
        *unlogged += find_saved(&ls, ob.mid[i]) == NULL;
    for (size_t i = 0; i < ls.n; i++)
        if (!strset_has(&in_outbox, ls.v[i].mid) && !strset_has(&answered, ls.v[i].mid))
            violation(f,
                      "client %d (%s): saved change %s (%s %s) is neither in the outbox nor "
                      "on the server",
                      d, when, ls.v[i].mid, ls.v[i].type, ls.v[i].rid);
    if (ob.rejected)
        violation(f, "client %d (%s): %u changes refused, e.g. %s", d, when, ob.rejected,
                  ob.first_reject);

    /* A whole prefix of the feed up to the cursor. */
    ns_sync_status st;
    if (ns_client_status(c, &st, &err) != NS_OK)
        nst_fail(f->e, "client %d: ns_client_status (%s): %s", d, when, err.message);
    PGresult *head = db_query(f, db, "SELECT epoch::text FROM sync_feed_head", 0, NULL);
    char seq[32] = "0";
    if (st.cursor[0]) {
        const char *epoch = PQgetvalue(head, 0, 0);
        size_t elen = strlen(epoch);
        if (strncmp(st.cursor, "v1.", 3) != 0 || strncmp(st.cursor + 3, epoch, elen) != 0 ||
            st.cursor[3 + elen] != '.')
            violation(f, "client %d (%s): cursor %s is not of the feed's epoch %s", d, when,
                      st.cursor, epoch);
        else
            snprintf(seq, sizeof(seq), "%s", st.cursor + 4 + elen);
    }
    PQclear(head);
    snaps view;
    list_view(f, c, &view);
    const char *p_prefix[] = {seq, f->org_id};
    PGresult *res =
        db_query(f, db,
                 "SELECT f.entity_type || '/' || f.record_id, max(f.version) FROM sync_feed f"
                 " WHERE f.seq <= $1::bigint AND f.tenant_id IN (SELECT id FROM plans"
                 " WHERE owner_id = $2::uuid) GROUP BY f.entity_type, f.record_id",
                 2, p_prefix);
    for (int i = 0; i < PQntuples(res); i++) {
        const snap *s = find_snap(&view, PQgetvalue(res, i, 0));
        uint64_t v = strtoull(PQgetvalue(res, i, 1), NULL, 10);
        if (s == NULL || s->version < v)
            violation(f,
                      "client %d (%s): gap: the feed up to its cursor (seq %s) has %s at "
                      "version %" PRIu64 ", the replica %s %" PRIu64,
                      d, when, seq, PQgetvalue(res, i, 0), v, s ? "at" : "does not have it",
                      s ? s->version : 0);
    }
    PQclear(res);
    /* Every replica row a version the server wrote, with its title. */
    res = db_query(f, db,
                   "SELECT entity_type || '/' || record_id || '/' || version, after->>'title'"
                   " FROM sync_revisions WHERE entity_type IN ('plan', 'indicator')",
                   0, NULL);
    size_t nrev = (size_t)PQntuples(res);
    revkey *revs = calloc(nrev + 1, sizeof(*revs));
    assert_non_null(revs);
    for (size_t r = 0; r < nrev; r++) {
        revs[r].key = PQgetvalue(res, (int)r, 0);
        revs[r].title = col(res, (int)r, 1);
    }
    qsort(revs, nrev, sizeof(*revs), cmp_revkey);
    for (size_t i = 0; i < view.n; i++) {
        const snap *s = &view.v[i];
        if (s->version == 0 || s->pending)
            continue;
        char key[96];
        snprintf(key, sizeof(key), "%s/%" PRIu64, s->key, s->version);
        revkey k = {key, NULL};
        const revkey *hit = nrev ? bsearch(&k, revs, nrev, sizeof(*revs), cmp_revkey) : NULL;
        if (hit == NULL)
            violation(f, "client %d (%s): %s v%" PRIu64 " is no version the server wrote", d, when,
                      s->key, s->version);
        else if (!veq(hit->title, s->title))
            violation(f, "client %d (%s): %s v%" PRIu64 " has title %s, the server's %s", d, when,
                      s->key, s->version, show(s->title), show(hit->title));
    }
    free(revs);
    PQclear(res);
    snaps_free(&view);
    outbox_free(&ob);
    strset_free(&answered);
    logsum_free(&ls);
    PQfinish(db);
    ns_client_free(c);
    return true;
}

/* ---- the end of every scenario ------------------------------------------------------- */

static void set_no_faults(fixture *f)
{
    nst_proxy_set_fuses(f->proxy, 0, 0);
    nst_proxy_link_faults none = {0};
    nst_proxy_set_link_faults(f->proxy, &none);
}

/* Writes "found" lines for outbox entries the log does not know, as the
 * client would at its next start. */
static void reconcile(fixture *f, int d, ns_client *c)
{
    logsum ls;
    read_logs(f, d, &ls);
    outbox_list ob = {0};
    ns_error err;
    if (ns_client_outbox(c, collect_outbox, &ob, &err) != NS_OK)
        nst_fail(f->e, "client %d: ns_client_outbox: %s", d, err.message);
    FILE *log = fopen(f->drv[d].log, "a");
    assert_non_null(log);
    for (size_t i = 0; i < ob.n; i++)
        if (find_saved(&ls, ob.mid[i]) == NULL)
            fprintf(log, "found %s ? ?\n", ob.mid[i]);
    fclose(log);
    outbox_free(&ob);
    logsum_free(&ls);
}

/* Syncs every device until its outbox is empty, then each once more. */
static void heal(fixture *f, ns_client **c)
{
    set_no_faults(f);
    for (int round = 0; round < 2; round++) {
        for (int d = 0; d < f->nclients; d++) {
            uint64_t deadline = nst_now_ms() + 60000;
            ns_error err;
            for (;;) {
                ns_sync_options so;
                memset(&so, 0, sizeof(so));
                ns_sync_stats st;
                ns_sync_status ss;
                int rc = ns_client_sync_wait(c[d], &so, &st, &err);
                if (rc == NS_OK && ns_client_status(c[d], &ss, &err) == NS_OK && ss.pending == 0)
                    break;
                if (nst_now_ms() > deadline)
                    nst_fail(f->e,
                             "client %d could not empty its outbox once the faults stopped: "
                             "%s: %s",
                             d, ns_status_name(err.status), err.message);
                ns_client_disconnect_wait(c[d]);
                nst_sleep_ms(200);
            }
            ns_client_disconnect_wait(c[d]);
        }
    }
}

/* 1 and 2 of the top of the file. Returns the saved count. */
static size_t check_server(fixture *f, PGconn *db, const logsum *ls, unsigned outcome[3])
{
    char devs[MAX_CLIENTS * 40 + 4] = "{";
    for (int d = 0; d < f->nclients; d++)
        snprintf(devs + strlen(devs), sizeof(devs) - strlen(devs), "%s%s", d ? "," : "",
                 f->dev_uuid[d]);
    strcat(devs, "}");
    const char *p_devs[] = {devs};
    PGresult *res =
        db_query(f, db,
                 "SELECT m.mutation_id::text, m.device_id::text, m.outcome, m.entity_type,"
                 " m.record_id::text,"
                 " (SELECT count(*) FROM sync_revisions r WHERE r.mutation_id = m.mutation_id),"
                 " (SELECT count(*) FROM sync_conflicts c WHERE c.mutation_id = m.mutation_id)"
                 " FROM sync_mutations m WHERE m.device_id = ANY($1::uuid[]) ORDER BY 1",
                 1, p_devs);
    int rows = PQntuples(res);
    size_t matched = 0;
    for (int i = 0; i < rows; i++) {
        const char *mid = PQgetvalue(res, i, 0), *outc = PQgetvalue(res, i, 2);
        long revs = strtol(PQgetvalue(res, i, 5), NULL, 10);
        long confl = strtol(PQgetvalue(res, i, 6), NULL, 10);
        const saved *s = find_saved(ls, mid);
        if (s == NULL) {
            violation(f, "the server answered change %s (%s %s, %s) that no client saved", mid,
                      PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), outc);
            continue;
        }
        matched++;
        if (strcmp(PQgetvalue(res, i, 1), f->dev_uuid[s->dev]) != 0)
            violation(f, "change %s of client %d is answered for device %s", mid, s->dev,
                      PQgetvalue(res, i, 1));
        if (strcmp(s->type, "?") != 0 && (strcmp(PQgetvalue(res, i, 3), s->type) != 0 ||
                                          strcmp(PQgetvalue(res, i, 4), s->rid) != 0))
            violation(f, "change %s was saved for %s %s, answered for %s %s", mid, s->type, s->rid,
                      PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
        if (strcmp(outc, "applied") == 0 || strcmp(outc, "merged") == 0) {
            outcome[strcmp(outc, "applied") == 0 ? 0 : 1]++;
            if (revs != 1)
                violation(f, "change %s (%s) made %ld revisions, not 1", mid, outc, revs);
        } else if (strcmp(outc, "conflict") == 0) {
            outcome[2]++;
            if (revs > 1 || confl == 0)
                violation(f, "change %s (conflict) made %ld revisions and %ld conflicts", mid, revs,
                          confl);
        } else {
            violation(f, "change %s of client %d was %s", mid, s->dev, outc);
        }
    }
    PQclear(res);
    if (matched != ls->n) {
        /* Which ones: the answered ids against the saved list. */
        strset answered = db_strset(f, db,
                                    "SELECT mutation_id::text FROM sync_mutations"
                                    " WHERE device_id = ANY($1::uuid[])",
                                    1, p_devs);
        for (size_t i = 0; i < ls->n; i++)
            if (!strset_has(&answered, ls->v[i].mid))
                violation(f, "change %s (%s %s) saved by client %d is not on the server: lost",
                          ls->v[i].mid, ls->v[i].type, ls->v[i].rid, ls->v[i].dev);
        strset_free(&answered);
    }

    static const struct {
        const char *what, *sql;
    } zero[] = {
        {"revisions of changes nobody sent",
         "SELECT count(*) FROM sync_revisions r WHERE r.mutation_id IS NOT NULL AND NOT EXISTS"
         " (SELECT 1 FROM sync_mutations m WHERE m.mutation_id = r.mutation_id)"},
        {"feed positions out of 1..head, or missing",
         "SELECT abs(h.seq - (SELECT count(*) FROM sync_feed))"
         " + (SELECT count(*) FROM sync_feed WHERE seq < 1 OR seq > h.seq)"
         " FROM sync_feed_head h"},
        {"revisions without a feed position",
         "SELECT count(*) FROM sync_revisions r WHERE NOT EXISTS (SELECT 1 FROM sync_feed f"
         " WHERE f.entity_type = r.entity_type AND f.record_id = r.record_id"
         " AND f.version = r.version)"},
        {"feed positions without a revision, or twice for one",
         "SELECT count(*) FROM sync_feed f WHERE NOT EXISTS (SELECT 1 FROM sync_revisions r"
         " WHERE f.entity_type = r.entity_type AND f.record_id = r.record_id"
         " AND f.version = r.version) OR EXISTS (SELECT 1 FROM sync_feed g WHERE g.seq <> f.seq"
         " AND g.entity_type = f.entity_type AND g.record_id = f.record_id"
         " AND g.version = f.version)"},
        {"records whose revisions are not numbered 1..n",
         "SELECT count(*) FROM (SELECT 1 FROM sync_revisions GROUP BY entity_type, record_id"
         " HAVING min(version) <> 1 OR max(version) <> count(*)) x"},
        {"plans or indicators not at their last revision",
         "SELECT count(*) FROM (SELECT 'plan' AS t, id, version, deleted FROM plans UNION ALL"
         " SELECT 'indicator', id, version, deleted FROM indicators) x WHERE NOT EXISTS"
         " (SELECT 1 FROM sync_revisions r WHERE r.entity_type = x.t AND r.record_id = x.id"
         " AND r.version = x.version AND r.deleted = x.deleted AND NOT EXISTS"
         " (SELECT 1 FROM sync_revisions s WHERE s.entity_type = x.t AND s.record_id = x.id"
         " AND s.version > x.version))"},
    };
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
        res = db_query(f, db, zero[i].sql, 0, NULL);
        if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
            violation(f, "%s: %s", zero[i].what, PQgetvalue(res, 0, 0));
        PQclear(res);
    }
    return ls->n;
}

/* 3 of the top of the file. */
static void check_replicas(fixture *f, PGconn *db, ns_client **c)
{
    const char *p_org[] = {f->org_id};
    PGresult *res = db_query(
        f, db,
        "SELECT 'plan/' || id, version, deleted, tenant_id::text, title, summary,"
        " array_to_string(tags, ',') FROM plans WHERE owner_id = $1::uuid"
        " UNION ALL SELECT 'indicator/' || id, version, deleted, tenant_id::text, title, NULL,"
        " array_to_string(tags, ',') FROM indicators WHERE tenant_id IN"
        " (SELECT id FROM plans WHERE owner_id = $1::uuid)",
        1, p_org);
    snaps first;
    list_view(f, c[0], &first);
    for (int d = 0; d < f->nclients; d++) {
        snaps view;
        if (d == 0)
            view = first;
        else
            list_view(f, c[d], &view);
        if (view.n != (size_t)PQntuples(res))
            violation(f, "client %d holds %zu plans and indicators, the server %d", d, view.n,
                      PQntuples(res));
        for (int i = 0; i < PQntuples(res); i++) {
            const char *key = PQgetvalue(res, i, 0);
            const snap *s = find_snap(&view, key);
            if (s == NULL) {
                violation(f, "client %d lacks %s", d, key);
                continue;
            }
            char *tags = set_canon(col(res, i, 6));
            bool is_plan = strncmp(key, "plan/", 5) == 0;
            if (s->version != strtoull(PQgetvalue(res, i, 1), NULL, 10) ||
                s->deleted != (strcmp(PQgetvalue(res, i, 2), "t") == 0) ||
                strcmp(s->tenant, PQgetvalue(res, i, 3)) != 0 || s->pending || s->rejected ||
                !veq(s->title, col(res, i, 4)) || (is_plan && !veq(s->summary, col(res, i, 5))) ||
                !veq(s->tags ? s->tags : "", tags ? tags : ""))
                violation(f,
                          "client %d: %s is v%" PRIu64 " title %s summary %s tags %s; the "
                          "server's v%s title %s summary %s tags %s",
                          d, key, s->version, show(s->title), show(s->summary), show(s->tags),
                          PQgetvalue(res, i, 1), show(col(res, i, 4)), show(col(res, i, 5)),
                          show(tags));
            free(tags);
        }
        if (d > 0) {
            for (size_t i = 0; i < view.n && i < first.n; i++)
                if (strcmp(view.v[i].key, first.v[i].key) != 0 ||
                    strcmp(view.v[i].all, first.v[i].all) != 0) {
                    violation(f, "clients 0 and %d differ: %s %s | %s %s", d, first.v[i].key,
                              first.v[i].all, view.v[i].key, view.v[i].all);
                    break;
                }
            snaps_free(&view);
        }
        ns_sync_status st;
        ns_error err;
        if (ns_client_status(c[d], &st, &err) != NS_OK)
            nst_fail(f->e, "ns_client_status: %s", err.message);
        if (st.pending || st.rejected)
            violation(f, "client %d: outbox not empty: %" PRIu64 " pending, %" PRIu64 " refused", d,
                      st.pending, st.rejected);
    }
    snaps_free(&first);
    PQclear(res);
}

/* Stops the clients, checks each store, heals, checks everything, prints
 * the summary and fails the test on any violation. */
static void finish(fixture *f)
{
    drivers_stop(f);
    set_no_faults(f);
    for (int d = 0; d < f->nclients; d++) {
        ns_error err;
        if (!check_store(f, d, "at the end of the faults", &err, NULL))
            violation(f, "client %d: the store does not open: %s: %s", d,
                      ns_status_name(err.status), err.message);
    }
    ns_client *c[MAX_CLIENTS] = {NULL};
    for (int d = 0; d < f->nclients; d++) {
        ns_error err;
        c[d] = store_client(f, d, &err);
        if (c[d] == NULL)
            nst_fail(f->e, "client %d: the store does not open: %s", d, err.message);
        reconcile(f, d, c[d]);
    }
    uint64_t heal_start = nst_now_ms();
    heal(f, c);
    uint64_t heal_ms = nst_now_ms() - heal_start;
    logsum ls;
    read_logs(f, -1, &ls);
    PGconn *db = db_open(f);
    unsigned outcome[3] = {0, 0, 0};
    size_t checked = check_server(f, db, &ls, outcome);
    check_replicas(f, db, c);
    PQfinish(db);
    for (int d = 0; d < f->nclients; d++)
        ns_client_free(c[d]);

    nst_proxy_stats ps;
    nst_proxy_get_stats(f->proxy, &ps);
    char fails[1024] = "";
    for (unsigned i = 0; i < ls.nstatus; i++)
        snprintf(fails + strlen(fails), sizeof(fails) - strlen(fails), "%s%s %u", i ? ", " : "",
                 ls.status[i].name, ls.status[i].count);
    fprintf(stderr,
            "faults: %s: seed=%" PRIu64 " clients=%d %s mutations=%zu (applied %u, merged %u, "
            "conflict %u; %u found in an outbox after a kill) client_starts=%u syncs=%u "
            "(reconnected %u times) failed=%u watches=%u (reconnected %u times) failed=%u "
            "put_failed=%u connections_lost_by_syncs=%u (in the TLS handshake %u, after it and "
            "before Welcome %u) by_status=(%s) store_checks=%u connections=%" PRIu64 " cut=%" PRIu64
            " (by fuse %" PRIu64 ") stalled=%" PRIu64 " slowed=%" PRIu64
            " heal=%.1fs elapsed=%.1fs violations=%u\n",
            f->scenario, f->seed, f->nclients, f->faults, checked, outcome[0], outcome[1],
            outcome[2], ls.found, ls.starts, ls.sync_ok + ls.sync_fail, ls.sync_disconnects,
            ls.sync_fail, ls.watch_ok + ls.watch_fail, ls.watch_disconnects, ls.watch_fail,
            ls.put_fail, ls.lost, ls.lost_handshake, ls.lost_before_welcome,
            fails[0] ? fails : "none", f->store_checks, ps.accepted, ps.cut, ps.fused, ps.stalled,
            ps.slowed, (double)heal_ms / 1000.0, (double)(nst_now_ms() - f->t0) / 1000.0,
            f->violations);
    if (getenv("NS_FAULT_VERBOSE"))
        for (unsigned i = 0; i < ls.nstatus; i++)
            fprintf(stderr, "faults: %s:   %s: %u, e.g. %s\n", f->scenario, ls.status[i].name,
                    ls.status[i].count, ls.status[i].first);
    logsum_free(&ls);
    if (checked == 0)
        violation(f, "no change was saved: the clients did nothing");
    if (f->violations)
        nst_fail(f->e,
                 "%u violations (seed %" PRIu64 ": NS_TEST_SEED=%" PRIu64 " reproduces the "
                 "run's choices)",
                 f->violations, f->seed, f->seed);
}

/* ---- setup ------------------------------------------------------------------------------ */

static const char *const daemon_flags[] = {"--db-queue-timeout-ms", "1000", "--log-level", "info",
                                           NULL};

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    const char *s = getenv("NS_TEST_SEED");
    f->seed = s && *s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ nst_now_ms();
    f->nclients = f->nclients_all = (int)env_uint("NS_FAULT_CLIENTS", 4, 2, MAX_CLIENTS);
    f->timeout_ms = env_uint("NS_FAULT_TIMEOUT_MS", 2000, 200, 600000);
    fprintf(stderr,
            "faults: seed=%" PRIu64 " clients=%d timeout=%ums (NS_TEST_SEED=%" PRIu64
            " reproduces this run's choices)\n",
            f->seed, f->nclients, f->timeout_ms, f->seed);
    const char *build = getenv("NS_BUILD_DIR");
    if (build == NULL || nst_path_join(f->faultclient, build, "napsync-faultclient") != 0 ||
        access(f->faultclient, X_OK) != 0) {
        fprintf(stderr, "faults: napsync-faultclient is not built in NS_BUILD_DIR\n");
        return -1;
    }
    snprintf(f->pg_root, sizeof(f->pg_root), "/tmp/nst-faults-pg-XXXXXX");
    if (mkdtemp(f->pg_root) == NULL) {
        f->pg_root[0] = '\0';
        return -1;
    }
    char dir[NST_PATH];
    if (nst_path_join(dir, f->pg_root, "pg") != 0 || nst_pg_private_start(&f->pg, dir) != 0)
        return -1;
    f->pg_started = true;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f == NULL)
        return 0;
    if (f->pg_started && nst_pg_ctl(&f->pg, "stop") != 0)
        fprintf(stderr, "faults: could not stop the private PostgreSQL\n");
    if (f->pg_root[0] && getenv("NST_KEEP") == NULL)
        nst_rmtree(f->pg_root);
    free(f);
    return 0;
}

static void pg_resume(fixture *f)
{
    for (int i = 0; i < f->npaused; i++)
        kill(f->paused[i], SIGCONT);
    f->npaused = 0;
}

/* A scenario's environment: a daemon on a database of its own, the
 * devices (coordinators of one organisation), the proxy, the clients'
 * files in the environment's directory. nclients 0: NS_FAULT_CLIENTS. */
static void scenario_begin(fixture *f, const char *name, unsigned index, int nclients)
{
    f->nclients = nclients > 0 ? nclients : f->nclients_all;
    f->scenario = name;
    f->t0 = nst_now_ms();
    f->rng = f->seed ^ ((uint64_t)index * 0xd1b54a32d192ed03ull);
    f->violations = 0;
    f->store_checks = 0;
    f->faults[0] = '\0';
    f->e = nst_env_new("faults", &f->pg);
    if (f->e == NULL)
        fail_msg("faults: %s: no environment", name);
    nst_test_begin(f->e);
    if (nst_daemon_start(f->e, daemon_flags) != 0)
        nst_fail(f->e, "napsyncd did not start");
    const char *p_org[] = {"mogender"};
    if (nst_db_exec(f->e, "SELECT id::text FROM organisations WHERE code = $1", 1, p_org, f->org_id,
                    sizeof(f->org_id)) != 0 ||
        f->org_id[0] == '\0')
        nst_fail(f->e, "no organisation mogender");
    for (int d = 0; d < f->nclients; d++) {
        char dname[32], principal[64];
        snprintf(dname, sizeof(dname), "fault-client-%d", d);
        snprintf(principal, sizeof(principal), PRINCIPAL_FMT, d);
        const char *p_dev[] = {dname};
        if (nst_device_issue(f->e, false, dname, &f->dev[d]) != 0 ||
            nst_device_register(f->e, "mogender", principal, "coordinator", &f->dev[d]) != 0 ||
            nst_db_exec(f->e, "SELECT id::text FROM devices WHERE name = $1", 1, p_dev,
                        f->dev_uuid[d], sizeof(f->dev_uuid[d])) != 0)
            nst_fail(f->e, "cannot make device %s", dname);
        driver *x = &f->drv[d];
        memset(x, 0, sizeof(*x));
        char file[48];
        snprintf(file, sizeof(file), "client-%d.store", d);
        if (nst_path_join(x->store, f->e->dir, file) != 0)
            nst_fail(f->e, "path too long");
        snprintf(file, sizeof(file), "client-%d.log", d);
        (void)nst_path_join(x->log, f->e->dir, file);
        snprintf(file, sizeof(file), "client-%d.phase", d);
        (void)nst_path_join(x->phase_path, f->e->dir, file);
        snprintf(file, sizeof(file), "client-%d.out", d);
        (void)nst_path_join(x->out, f->e->dir, file);
        int fd = open(x->phase_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, 64) != 0)
            nst_fail(f->e, "cannot make %s", x->phase_path);
        void *map = mmap(NULL, 64, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (map == MAP_FAILED)
            nst_fail(f->e, "cannot map %s", x->phase_path);
        x->phase = map;
    }
    f->proxy = nst_proxy_start(f->e->port, rnd(f));
    if (f->proxy == NULL)
        nst_fail(f->e, "no proxy");
    snprintf(f->server, sizeof(f->server), "127.0.0.1:%u", (unsigned)nst_proxy_port(f->proxy));
    note(f, "daemon on %u behind the proxy on %u, %d clients", (unsigned)f->e->port,
         (unsigned)nst_proxy_port(f->proxy), f->nclients);
}

static void drivers_start(fixture *f)
{
    for (int d = 0; d < f->nclients; d++)
        driver_start(f, d);
}

static int scenario_teardown(void **state)
{
    fixture *f = *state;
    if (f->e == NULL)
        return 0;
    nst_test_end(f->e);
    pg_resume(f);
    for (int d = 0; d < f->nclients; d++) {
        driver_kill(f, d);
        if (f->drv[d].phase) {
            munmap((void *)f->drv[d].phase, 64);
            f->drv[d].phase = NULL;
        }
    }
    nst_proxy_stop(f->proxy);
    f->proxy = NULL;
    int rc = 0;
    /* Before the environment's directory, which holds the mount point, goes. */
    if (f->disk[0]) {
        if (umount2(f->disk, MNT_DETACH) != 0)
            fprintf(stderr, "faults: umount %s: %s\n", f->disk, strerror(errno));
        f->disk[0] = '\0';
    }
    if (nst_pg_ctl(&f->pg, "start") != 0)
        rc = -1;
    /* The daemon must still stop cleanly after all that. */
    if (nst_env_close(f->e) != 0)
        rc = -1;
    f->e = NULL;
    return rc;
}

/* ---- the scenarios -------------------------------------------------------------------- */

static void daemon_restart(fixture *f)
{
    if (nst_daemon_start(f->e, daemon_flags) != 0)
        nst_fail(f->e, "napsyncd did not start again");
    nst_proxy_set_target(f->proxy, f->e->port);
}

static void test_daemon_kill(void **state)
{
    fixture *f = *state;
    unsigned kills = env_uint("NS_FAULT_DAEMON_KILLS", 12, 1, 100000);
    scenario_begin(f, "daemon_kill", 1, 0);
    drivers_start(f);
    load_for(f, 1000);
    uint64_t down_ms = 0;
    unsigned mid_sync = 0;
    for (unsigned k = 0; k < kills; k++) {
        load_for(f, between(f, 0, 1200));
        mid_sync += syncing_now(f);
        if (nst_daemon_signal(f->e, SIGKILL) != 0)
            nst_fail(f->e, "napsyncd was not running before kill %u", k + 1);
        int st;
        if (nst_daemon_wait_exit(f->e, NST_WAIT_MS, &st) != 0 || st != 128 + SIGKILL)
            nst_fail(f->e, "napsyncd did not die of SIGKILL (status %d)", st);
        uint64_t t = nst_now_ms();
        load_for(f, between(f, 0, 300)); /* the clients find nobody there */
        daemon_restart(f);
        down_ms += nst_now_ms() - t;
    }
    load_for(f, 1000);
    faults_append(f,
                  "daemon_kills=%u restarts=%u (down %.1fs in all; %u clients mid-sync at "
                  "the kills)",
                  kills, kills, (double)down_ms / 1000.0, mid_sync);
    finish(f);
    nst_test_passed(f->e);
}

static void pg_sh(fixture *f, const char *action, const char *mode)
{
    char script[NST_PATH];
    if (nst_path_join(script, f->e->source_dir, "tests/lib/pg.sh") != 0)
        nst_fail(f->e, "path too long");
    char *argv[] = {"/bin/bash", script, (char *)action, f->pg.dir, (char *)mode, NULL};
    if (nst_run(argv, NULL, 0) != 0)
        nst_fail(f->e, "pg.sh %s %s %s failed", action, f->pg.dir, mode ? mode : "");
}

/* The postmaster and every process it started, stopped with SIGSTOP
 * (postmaster first, so that it starts nothing new meanwhile). */
static void pg_pause(fixture *f)
{
    char path[NST_PATH], line[64] = "";
    if (nst_path_join(path, f->pg.dir, "data/postmaster.pid") != 0)
        nst_fail(f->e, "path too long");
    FILE *in = fopen(path, "r");
    if (in == NULL || fgets(line, sizeof(line), in) == NULL)
        nst_fail(f->e, "cannot read %s", path);
    fclose(in);
    pid_t pm = (pid_t)strtol(line, NULL, 10);
    if (pm <= 1 || kill(pm, SIGSTOP) != 0)
        nst_fail(f->e, "cannot stop the postmaster %d", (int)pm);
    f->npaused = 0;
    f->paused[f->npaused++] = pm;
    DIR *proc = opendir("/proc");
    assert_non_null(proc);
    struct dirent *de;
    while ((de = readdir(proc)) != NULL && f->npaused < (int)(sizeof(f->paused) / sizeof(pid_t))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        char stat_path[300], buf[512];
        snprintf(stat_path, sizeof(stat_path), "/proc/%s/stat", de->d_name);
        FILE *sf = fopen(stat_path, "r");
        if (sf == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, sf);
        fclose(sf);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')'); /* the command may hold spaces */
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == pm) {
            pid_t child = (pid_t)strtol(de->d_name, NULL, 10);
            if (kill(child, SIGSTOP) == 0)
                f->paused[f->npaused++] = child;
        }
    }
    closedir(proc);
}

static void daemon_must_run(fixture *f, const char *after)
{
    if (!nst_daemon_running(f->e)) {
        violation(f, "napsyncd exited (status %d) after %s", f->e->exit_status, after);
        nst_log_tail(f->e, 40);
        daemon_restart(f);
    }
}

static void test_postgres(void **state)
{
    fixture *f = *state;
    unsigned cycles = env_uint("NS_FAULT_PG_CYCLES", 1, 1, 10000);
    scenario_begin(f, "postgres", 2, 0);
    drivers_start(f);
    load_for(f, 1000);
    unsigned fast = 0, immediate = 0, pauses = 0, mid_sync = 0;
    uint64_t paused_ms = 0, down_ms = 0;
    for (unsigned k = 0; k < cycles; k++) {
        static const char *const modes[] = {"fast", "immediate"};
        for (int m = 0; m < 2; m++) {
            load_for(f, between(f, 300, 1500));
            uint64_t t = nst_now_ms();
            mid_sync += syncing_now(f);
            pg_sh(f, "stop", modes[m]);
            load_for(f, between(f, 200, 2000));
            pg_sh(f, "start", NULL);
            down_ms += nst_now_ms() - t;
            *(m ? &immediate : &fast) += 1;
            daemon_must_run(f, m ? "an immediate stop of PostgreSQL" : "a fast stop of PostgreSQL");
        }
        load_for(f, between(f, 300, 1500));
        unsigned ms = between(f, f->timeout_ms + 1000, f->timeout_ms * 2 + 1000);
        mid_sync += syncing_now(f);
        pg_pause(f);
        load_for(f, ms);
        pg_resume(f);
        paused_ms += ms;
        pauses++;
        daemon_must_run(f, "PostgreSQL paused with SIGSTOP");
    }
    load_for(f, 2000);
    faults_append(f,
                  "pg_fast_stops=%u pg_immediate_stops=%u (down %.1fs in all) pg_pauses=%u "
                  "(%.1fs in all, each longer than the clients' %ums timeout; %u clients "
                  "mid-sync at the faults)",
                  fast, immediate, (double)down_ms / 1000.0, pauses, (double)paused_ms / 1000.0,
                  f->timeout_ms, mid_sync);
    finish(f);
    nst_test_passed(f->e);
}

static void test_links(void **state)
{
    fixture *f = *state;
    unsigned seconds = env_uint("NS_FAULT_LINK_SECONDS", 15, 1, 1000000);
    scenario_begin(f, "links", 3, 0);
    /* A TLS handshake with both certificates is a few kilobytes: fuses
     * and stalls drawn from [0, 12000] bytes fall into it as often as
     * into the frames after it. */
    nst_proxy_set_fuses(f->proxy, 20, 12000);
    nst_proxy_link_faults lf = {
        .stall_percent = 15,
        .stall_max_bytes = 12000,
        .stall_min_ms = 100,
        .stall_max_ms = f->timeout_ms * 2,
        .slow_percent = 15,
        .slow_chunk = 200,
        .slow_delay_ms = 10,
    };
    nst_proxy_set_link_faults(f->proxy, &lf);
    drivers_start(f);
    unsigned cut_all = 0, stall_all = 0;
    uint64_t end = nst_now_ms() + (uint64_t)seconds * 1000u;
    while (nst_now_ms() < end) {
        load_for(f, between(f, 100, 1500));
        unsigned r = between(f, 0, 99);
        if (r < 35) {
            nst_proxy_cut_all(f->proxy);
            cut_all++;
        } else if (r < 65) {
            nst_proxy_stall_all(f->proxy, between(f, 100, f->timeout_ms * 2));
            stall_all++;
        }
    }
    faults_append(f, "link_seconds=%u cut_all=%u stall_all=%u", seconds, cut_all, stall_all);
    finish(f);
    nst_test_passed(f->e);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Kills client d once its phase is `want`, at a random instant inside it
 * (up to max_us after it was seen to start). Short phases (a put) are
 * watched and timed by spinning, since a sleep's own granularity is about
 * as long as a put's work before its commit. Returns the phase the
 * process died in, or -1 when it never got there. */
static int kill_in_phase(fixture *f, int d, uint8_t want, unsigned max_us)
{
    bool spin = max_us <= 10000;
    uint64_t deadline = nst_now_ms() + 30000, polls = 0;
    while (nst_now_ms() < deadline) {
        if (++polls % 4096 == 0 || !spin)
            drivers_watch(f);
        if (driver_phase(f, d) != want) {
            if (!spin) {
                struct timespec ts = {0, 100000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        unsigned us = between(f, 0, max_us);
        if (spin) {
            uint64_t until = now_us() + us;
            while (now_us() < until)
                ;
        } else {
            struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
            nanosleep(&ts, NULL);
        }
        if (driver_phase(f, d) != want)
            continue; /* it got out first: wait for the next one */
        pid_t pid = f->drv[d].pid;
        if (pid <= 0)
            continue;
        kill(pid, SIGKILL);
        int st;
        if (nst_wait_pid(pid, NST_WAIT_MS, &st) != 0)
            nst_fail(f->e, "client %d did not die on SIGKILL", d);
        f->drv[d].pid = 0;
        return driver_phase(f, d); /* what it was doing when it died */
    }
    return -1;
}

static void test_client_kill(void **state)
{
    fixture *f = *state;
    unsigned kills = env_uint("NS_FAULT_CLIENT_KILLS", 4, 1, 100000);
    scenario_begin(f, "client_kill", 4, 0);
    drivers_start(f);
    load_for(f, 1500);
    unsigned died_in[5] = {0}, missed = 0, put_committed = 0;
    for (unsigned k = 0; k < 2 * kills; k++) {
        int d = (int)between(f, 0, (unsigned)f->nclients - 1);
        bool in_put = k % 2 == 0;
        /* A put is one SQLite transaction (milliseconds, an fsync); a sync
         * is round trips and transactions (tens or hundreds of ms). */
        /* Half the put kills fall in its first 200 us, before the commit
         * as often as not; the others anywhere in it, mostly in the fsync
         * of the commit, after which the change is saved whether or not
         * the put got to return. */
        unsigned max_us = in_put ? (k % 4 == 0 ? 200 : 3000) : 400000;
        int ph = kill_in_phase(f, d, in_put ? PH_PUT : PH_SYNC, max_us);
        if (ph < 0) {
            missed++;
            continue;
        }
        died_in[ph < 5 ? ph : 0]++;
        char when[64];
        snprintf(when, sizeof(when), "killed in a %s", phase_name[ph < 5 ? ph : 0]);
        ns_error err;
        unsigned unlogged = 0;
        if (!check_store(f, d, when, &err, &unlogged))
            violation(f, "client %d (%s): the store does not open: %s: %s", d, when,
                      ns_status_name(err.status), err.message);
        if (ph == PH_PUT)
            put_committed += unlogged > 0;
        driver_start(f, d);
        load_for(f, between(f, 0, 500));
    }
    if (died_in[PH_PUT] == 0 || died_in[PH_SYNC] == 0)
        violation(f, "no client died in the middle of a %s (put %u, sync %u, missed %u)",
                  died_in[PH_PUT] == 0 ? "put" : "sync", died_in[PH_PUT], died_in[PH_SYNC], missed);
    load_for(f, 1000);
    faults_append(f,
                  "client_kills=%u (in a put %u: its change committed %u, not %u; in a sync %u; "
                  "elsewhere %u; %u missed)",
                  2 * kills - missed, died_in[PH_PUT], put_committed,
                  died_in[PH_PUT] - put_committed, died_in[PH_SYNC],
                  died_in[PH_IDLE] + died_in[PH_OFFLINE] + died_in[PH_OPEN], missed);
    finish(f);
    nst_test_passed(f->e);
}

/* Fills the tmpfs with a file until the kernel says it is full. */
static void disk_fill(fixture *f, const char *filler)
{
    int fd = open(filler, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        nst_fail(f->e, "cannot create %s: %s", filler, strerror(errno));
    static char block[16384];
    for (;;) {
        ssize_t n = write(fd, block, sizeof(block));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ENOSPC)
            break;
        if (n <= 0)
            nst_fail(f->e, "writing %s: %s", filler, strerror(errno));
        if (n < (ssize_t)sizeof(block)) /* the last bytes: the next write says ENOSPC */
            continue;
    }
    close(fd);
}

static void test_disk_full(void **state)
{
    fixture *f = *state;
    unsigned cycles = env_uint("NS_FAULT_DISK_CYCLES", 3, 1, 100000);
    if (geteuid() != 0) {
        fprintf(stderr, "faults: disk_full mounts a tmpfs and needs root: skipped\n");
        skip();
    }
    char disk[NST_PATH] = "";
    scenario_begin(f, "disk_full", 5, 0);
    /* The stores move to a tmpfs mounted in the environment's directory. */
    if (nst_path_join(disk, f->e->dir, "disk") != 0 || mkdir(disk, 0700) != 0)
        nst_fail(f->e, "cannot make %s", disk);
    if (mount("tmpfs", disk, "tmpfs", MS_NOSUID | MS_NODEV, "size=" DISK_SIZE ",mode=0700") != 0)
        nst_fail(f->e, "mount -t tmpfs %s: %s", disk, strerror(errno));
    snprintf(f->disk, sizeof(f->disk), "%s", disk);
    for (int d = 0; d < f->nclients; d++) {
        char file[48];
        snprintf(file, sizeof(file), "client-%d.store", d);
        (void)nst_path_join(f->drv[d].store, disk, file);
    }
    char filler[NST_PATH];
    (void)nst_path_join(filler, disk, "filler");
    drivers_start(f);
    load_for(f, 1500);
    unsigned killed_full = 0, opened_full = 0;
    for (unsigned k = 0; k < cycles; k++) {
        load_for(f, between(f, 300, 1500));
        disk_fill(f, filler);
        load_for(f, between(f, 300, 1200));
        /* A client dies while its disk is full: what it saved before must
         * all be there, whether or not the store opens now. */
        int d = (int)between(f, 0, (unsigned)f->nclients - 1);
        driver_kill(f, d);
        killed_full++;
        ns_error err;
        if (check_store(f, d, "killed with the disk full", &err, NULL))
            opened_full++;
        else if (err.status != NS_ERR_STATE || strstr(err.message, "disk is full") == NULL)
            violation(f, "client %d: with the disk full the store fails to open with %s: %s", d,
                      ns_status_name(err.status), err.message);
        driver_start(f, d);
        load_for(f, between(f, 300, 1200));
        if (unlink(filler) != 0)
            nst_fail(f->e, "unlink %s: %s", filler, strerror(errno));
    }
    load_for(f, 1500);
    logsum ls;
    read_logs(f, -1, &ls);
    if (ls.put_full == 0)
        violation(f, "no put reported a full disk: the scenario did not fill it");
    for (unsigned i = 0; i < ls.nstatus; i++)
        if (strncmp(ls.status[i].name, "put:", 4) == 0 &&
            (strcmp(ls.status[i].name, "put:state") != 0 ||
             strstr(ls.status[i].first, "disk is full") == NULL))
            violation(f, "a put failed otherwise than with a full disk: %s: %s", ls.status[i].name,
                      ls.status[i].first);
    faults_append(f,
                  "disk_fills=%u (tmpfs of " DISK_SIZE ") puts_refused_disk_full=%u "
                  "clients_killed_disk_full=%u (store opened %u)",
                  cycles, ls.put_full, killed_full, opened_full);
    logsum_free(&ls);
    finish(f);
    nst_test_passed(f->e);
}

/* Regression (found by the postgres scenario: a watching sync stopped while
 * the database was paused): a request whose deadline passed while its
 * connection was closing gracefully made the client's timer fire again at
 * once, forever (libuv runs a timer re-armed with 0 in the same pass over
 * its timers), so the process spun and never returned. Here a ping waits
 * behind a stalled link while the client disconnects; the disconnect must
 * return (within the conn's linger), in a child process with an alarm, so
 * that a hang fails the test quickly. */
static void on_pong_ignored(ns_client *c, const ns_error *err, uint64_t rtt_us, void *ud)
{
    (void)c;
    (void)err;
    (void)rtt_us;
    (void)ud;
}

static void closing_child(fixture *f, int go_fd, int ready_fd)
{
    alarm(30);
    ns_client_options o;
    char unused[64];
    nst_client_options(f->e, f->dev[0].cert, f->dev[0].key, f->e->ca_cert, &o, unused,
                       sizeof(unused));
    o.server = f->server;
    o.timeout_ms = 300;
    ns_client *c;
    ns_error err;
    if (ns_client_new(&o, NULL, &c, &err) != NS_OK || ns_client_connect_wait(c, &err) != NS_OK) {
        fprintf(stderr, "faults: closing_deadline: connect: %s\n", err.message);
        _exit(2);
    }
    char b = 'c';
    if (write(ready_fd, &b, 1) != 1 || read(go_fd, &b, 1) != 1)
        _exit(3);
    if (ns_client_ping(c, on_pong_ignored, NULL, &err) != NS_OK) {
        fprintf(stderr, "faults: closing_deadline: ping: %s\n", err.message);
        _exit(4);
    }
    ns_client_disconnect_wait(c); /* the ping's deadline passes meanwhile */
    ns_client_free(c);
    _exit(0);
}

static void test_closing_deadline(void **state)
{
    fixture *f = *state;
    scenario_begin(f, "closing_deadline", 6, 1);
    int go[2], ready[2];
    if (pipe(go) != 0 || pipe(ready) != 0)
        nst_fail(f->e, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        nst_fail(f->e, "fork: %s", strerror(errno));
    if (pid == 0)
        closing_child(f, go[0], ready[1]);
    close(go[0]);
    close(ready[1]);
    char b;
    bool connected = read(ready[0], &b, 1) == 1;
    if (connected) {
        nst_proxy_stall_all(f->proxy, 20000);
        if (write(go[1], "g", 1) != 1)
            connected = false;
    }
    close(go[1]);
    close(ready[0]);
    int st;
    if (nst_wait_pid(pid, 60000, &st) != 0) {
        kill(pid, SIGKILL);
        (void)nst_wait_pid(pid, NST_WAIT_MS, &st);
        st = -1;
    }
    if (st == 128 + SIGALRM)
        nst_fail(f->e, "ns_client_disconnect_wait did not return while a ping's deadline passed "
                       "on the closing connection (the client spun in its timer)");
    if (!connected || st != 0)
        nst_fail(f->e, "the client process exited with status %d", st);
    nst_test_passed(f->e);
}

int main(void)
{
    const char *only = getenv("NS_FAULT_ONLY");
    if (only && *only)
        cmocka_set_test_filter(only);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_daemon_kill, scenario_teardown),
        cmocka_unit_test_teardown(test_postgres, scenario_teardown),
        cmocka_unit_test_teardown(test_links, scenario_teardown),
        cmocka_unit_test_teardown(test_client_kill, scenario_teardown),
        cmocka_unit_test_teardown(test_disk_full, scenario_teardown),
        cmocka_unit_test_teardown(test_closing_deadline, scenario_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
