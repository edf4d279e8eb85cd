/* Convergence property test (issue 4): several devices of one organisation
 * (libnapsync clients, each with its own store, all coordinators) edit
 * overlapping records and fields offline, then sync in random subsets and
 * orders through a proxy that cuts connections at random points (in the
 * TLS handshake, mid-frame, between a commit and its answer), and finally
 * heal. Then:
 *
 *  (a) every replica equals every other one and a fresh device's full pull,
 *      field by field (all fields, versions, tombstones, tenants), and the
 *      modelled fields and versions equal PostgreSQL's typed tables, which
 *      equal the last revision of each record; no outbox holds anything;
 *  (b) every mutation the test made (it knows each id from ns_client_put)
 *      was answered exactly once and not refused (sync_mutations), and
 *      made exactly one revision if it changed the record and none if it
 *      did not, as an independent model of the merge rules predicts;
 *  (c) the server's history replays through that model: for each mutation,
 *      in the order the server serialised it (revision versions; a
 *      mutation that changed nothing sits at the version it answered),
 *      the model computes, from the state before it and from its
 *      effective base (the base version moved past the device's own
 *      unacknowledged edits), the new state, the outcome (applied, merged,
 *      conflict) and the conflicts: one per field that both sides changed
 *      to different values (three-way: mine != base, current != base,
 *      current != mine; sets merge as sets and never conflict here). The
 *      server's revision, outcome and sync_conflicts rows must be exactly
 *      those: every divergent same-field edit produced exactly one
 *      conflict, and nothing else did. Every device lists the open
 *      conflicts the server has (up to the 1,000 a listing carries).
 *
 * The revision chain is checked too (versions 1..n without gaps, each
 * revision's before equals the previous after), so the replay starts from
 * states the server really had.
 *
 * NS_TEST_SEED (default: from the clock; printed) makes the edits, the
 * sync subsets and orders, the disconnects and the proxy's fuses
 * reproducible; where a fuse falls relative to the protocol also depends
 * on TLS record sizes, which are stable. NS_TEST_ROUNDS, NS_TEST_DEVICES
 * and NS_TEST_PLANS scale the run (tests/converge/run-long.sh). */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "cutproxy.h"
#include "harness.h"

#define MAX_DEVICES  16
#define MAX_PLANS    32
#define IND_PER_PLAN 2
#define MAX_RECORDS  (MAX_PLANS * (1 + IND_PER_PLAN))
#define NTAGS        6
#define MAX_REPORTED 40

/* The fields the test edits, sorted by name as the server merges them. */
enum { F_BASELINE, F_STATUS, F_SUMMARY, F_TAGS, F_TITLE, NF };
static const char *const field_name[NF] = {"baseline", "status", "summary", "tags", "title"};
typedef enum { K_TEXT, K_DECIMAL, K_SET } kind;
static const kind field_kind[NF] = {K_DECIMAL, K_TEXT, K_TEXT, K_SET, K_TEXT};
enum { T_PLAN, T_INDICATOR };
static const char *const type_name[2] = {"plan", "indicator"};
static const int plan_fields[] = {F_STATUS, F_SUMMARY, F_TAGS, F_TITLE};
static const int indicator_fields[] = {F_BASELINE, F_TAGS, F_TITLE};

/* A value is its canonical text form, NULL for null. */
typedef struct {
    char *v[NF];
} fields;

typedef struct {
    int type;
    char id[40];
} record;

typedef struct {
    int dev;
    int rec;
    bool create;
    uint64_t base;
    char mid[40];
    bool has[NF];
    fields val;
} mutation;

typedef struct {
    uint64_t version;
    char device[40];
    char mid[40];
    char op[8];
    bool deleted;
    fields val;
} revision;

typedef struct {
    char id[40];
    char mid[40];
    char field[32];
    bool kept_deleted, other_deleted, open;
    char *base, *kept, *other;
    bool matched;
} conflict_row;

typedef struct {
    char mid[40];
    char device[40];
    char outcome[16];
    uint64_t version;
    int nconflicts;
} answer_row;

typedef struct {
    nst_env *e;
    int ndev, nplans, rounds;
    uint64_t seed, rng;
    nst_device dev[MAX_DEVICES + 1]; /* the last: a fresh device for the full pull */
    char dev_uuid[MAX_DEVICES + 1][40];
    ns_client *c[MAX_DEVICES + 1];
    char store[MAX_DEVICES + 1][NST_PATH];
    char server[64];
    nst_proxy *proxy;
    PGconn *db; /* for the per-sync outbox check */
    record rec[MAX_RECORDS];
    int nrec;
    mutation *mut;
    size_t nmut, capmut;
    unsigned violations;
    /* figures for the summary line */
    unsigned syncs, sync_failed, kept_open, cut_idle;
    unsigned fail_by_status[20];
    char first_failure[20][sizeof(
        ((ns_error *)0)->message)]; /* the message of the first failure of each status */
} fixture;
NST_FIXTURE_CHECK(fixture);

/* ---- small helpers ----------------------------------------------------------------------- */

static uint64_t rnd(fixture *f)
{
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rnd_below(fixture *f, unsigned n)
{
    return (unsigned)(rnd(f) % n);
}

static char *xstrdup(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static bool veq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static const char *show(const char *v)
{
    return v ? v : "(null)";
}

static void fields_free(fields *fs)
{
    for (int i = 0; i < NF; i++) {
        free(fs->v[i]);
        fs->v[i] = NULL;
    }
}

static void fields_copy(fields *dst, const fields *src)
{
    for (int i = 0; i < NF; i++)
        dst->v[i] = xstrdup(src->v[i]);
}

static void violation(fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(fixture *f, const char *fmt, ...)
{
    if (f->violations++ < MAX_REPORTED) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "converge: VIOLATION: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A set's canonical text: items sorted (strcmp) and unique, ','-joined. */
static char *set_canon(const char *s)
{
    if (s == NULL)
        return NULL;
    char *copy = xstrdup(s);
    const char *items[300];
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && n < 300;
         t = strtok_r(NULL, ",", &save))
        if (*t)
            items[n++] = t;
    qsort(items, n, sizeof(items[0]), cmp_str);
    size_t len = strlen(s) + 1;
    char *out = calloc(1, len);
    assert_non_null(out);
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

/* A decimal's canonical text: no '+', no leading zeros, no trailing
 * fraction zeros, no "-0". */
static char *dec_canon(const char *s)
{
    if (s == NULL)
        return NULL;
    bool neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    while (s[0] == '0' && s[1] >= '0' && s[1] <= '9')
        s++;
    char *out = calloc(1, strlen(s) + 2);
    assert_non_null(out);
    strcpy(out + 1, s);
    char *dot = strchr(out + 1, '.');
    if (dot) {
        char *end = dot + strlen(dot) - 1;
        while (end > dot && *end == '0')
            *end-- = '\0';
        if (end == dot)
            *dot = '\0';
    }
    if (neg && strcmp(out + 1, "0") != 0) {
        out[0] = '-';
        return out;
    }
    memmove(out, out + 1, strlen(out + 1) + 1);
    return out;
}

static char *canon(int field, const char *v)
{
    switch (field_kind[field]) {
    case K_SET:
        return set_canon(v);
    case K_DECIMAL:
        return dec_canon(v);
    default:
        return xstrdup(v);
    }
}

static bool set_has(const char *set, const char *item)
{
    if (set == NULL)
        return false;
    size_t n = strlen(item);
    for (const char *p = set; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, item, n) == 0)
            return true;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return false;
}

static void set_append(char *out, size_t cap, const char *item)
{
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s%s", len ? "," : "", item);
}

/* ---- PostgreSQL ------------------------------------------------------------------------- */

static PGresult *db_query(fixture *f, PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        nst_fail(f->e, "query failed: %s\n%s", PQerrorMessage(db), sql);
    return res;
}

static const char *col(PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

/* The canonical text of a JSON field value (as sync_revisions and
 * sync_conflicts keep them): a set's items ','-joined, a string as is. */
#define JTEXT(x)                                                                                   \
    "CASE jsonb_typeof(" x ") WHEN 'array' THEN coalesce((SELECT string_agg(e, ',') FROM "         \
    "jsonb_array_elements_text(" x ") e), '') WHEN 'null' THEN NULL ELSE (" x ") #>> '{}' END"

/* ---- the devices ---------------------------------------------------------------------- */

static void must_put(fixture *f, int dev, int rec, bool create, const char *const *assign, size_t n,
                     const bool has[NF], const fields *val)
{
    ns_edit_result res;
    ns_error err;
    const char *type = type_name[create ? rec : f->rec[rec].type];
    int rc = ns_client_put(f->c[dev], type, create ? NULL : f->rec[rec].id, assign, n, &res, &err);
    if (rc != NS_OK)
        nst_fail(f->e, "ns_client_put on device %d: %s: %s", dev, ns_status_name(err.status),
                 err.message);
    if (f->nmut == f->capmut) {
        f->capmut = f->capmut ? f->capmut * 2 : 256;
        f->mut = realloc(f->mut, f->capmut * sizeof(*f->mut));
        assert_non_null(f->mut);
    }
    mutation *m = &f->mut[f->nmut++];
    memset(m, 0, sizeof(*m));
    m->dev = dev;
    m->create = create;
    m->base = res.base_version;
    snprintf(m->mid, sizeof(m->mid), "%s", res.mutation_id);
    for (int i = 0; i < NF; i++) {
        m->has[i] = has[i];
        m->val.v[i] = has[i] ? canon(i, val->v[i]) : NULL;
    }
    if (create) {
        assert_true(f->nrec < MAX_RECORDS);
        m->rec = f->nrec;
        f->rec[f->nrec].type = rec;
        snprintf(f->rec[f->nrec].id, sizeof(f->rec[0].id), "%s", res.record_id);
        f->nrec++;
    } else {
        m->rec = rec;
        if (strcmp(res.record_id, f->rec[rec].id) != 0 || res.created)
            nst_fail(f->e, "ns_client_put of known record %s made a create", f->rec[rec].id);
    }
}

typedef struct {
    char (*id)[40];
    size_t n;
} id_list;

static int collect_outbox(const ns_outbox_view *e, void *ud)
{
    id_list *l = ud;
    char(*grown)[40] = realloc(l->id, (l->n + 1) * sizeof(*l->id));
    assert_non_null(grown);
    l->id = grown;
    snprintf(l->id[l->n++], sizeof(l->id[0]), "%s", e->mutation_id);
    return 0;
}

static id_list outbox_ids(fixture *f, int dev)
{
    id_list l = {NULL, 0};
    ns_error err;
    if (ns_client_outbox(f->c[dev], collect_outbox, &l, &err) != NS_OK)
        nst_fail(f->e, "ns_client_outbox on device %d: %s", dev, err.message);
    return l;
}

static bool id_in(const id_list *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->id[i], id) == 0)
            return true;
    return false;
}

/* One sync attempt. Returns the status; on success the client may stay
 * connected. Whatever the outcome, a change leaves the outbox only once
 * the server has it: every id gone from the outbox must be answered in
 * sync_mutations (a failed sync that dropped an unconfirmed change would
 * lose it), and a sync adds nothing to the outbox. */
static int try_sync(fixture *f, int dev, ns_error *err)
{
    ns_sync_options o = {0};
    ns_sync_stats st;
    id_list before = outbox_ids(f, dev);
    f->syncs++;
    int rc = ns_client_sync_wait(f->c[dev], &o, &st, err);
    if (rc != NS_OK) {
        f->sync_failed++;
        int idx = -rc;
        idx = idx >= 0 && idx < 20 ? idx : 0;
        if (f->fail_by_status[idx]++ == 0)
            snprintf(f->first_failure[idx], sizeof(f->first_failure[idx]), "%s", err->message);
    }
    id_list after = outbox_ids(f, dev);
    size_t cap = before.n * 41 + 3, len = 1, gone = 0;
    char *arr = malloc(cap);
    assert_non_null(arr);
    strcpy(arr, "{");
    for (size_t i = 0; i < before.n; i++)
        if (!id_in(&after, before.id[i])) {
            len += (size_t)snprintf(arr + len, cap - len, "%s%s", gone ? "," : "", before.id[i]);
            gone++;
        }
    snprintf(arr + len, cap - len, "}");
    for (size_t i = 0; i < after.n; i++)
        if (!id_in(&before, after.id[i]))
            violation(f, "device %d: mutation %s appeared in the outbox during a sync", dev,
                      after.id[i]);
    if (gone > 0) {
        const char *params[] = {arr};
        PGresult *res = PQexecParams(
            f->db, "SELECT count(*) FROM sync_mutations WHERE mutation_id = ANY($1::uuid[])", 1,
            NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            nst_fail(f->e, "outbox check: %s", PQerrorMessage(f->db));
        size_t answered = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        if (answered != gone)
            violation(f,
                      "device %d: %zu changes left the outbox in a sync (%s), the server "
                      "answered %zu of them",
                      dev, gone, rc == NS_OK ? "succeeded" : ns_status_name((ns_status)rc),
                      answered);
        PQclear(res);
    }
    free(arr);
    free(before.id);
    free(after.id);
    return rc;
}

static uint64_t pending_of(fixture *f, int dev, uint64_t *rejected)
{
    ns_sync_status st;
    ns_error err;
    if (ns_client_status(f->c[dev], &st, &err) != NS_OK)
        nst_fail(f->e, "ns_client_status: %s", err.message);
    if (rejected)
        *rejected = st.rejected;
    return st.pending;
}

typedef struct {
    char *tags;
    bool found;
} tags_probe;

static int probe_tags(const ns_record_view *r, void *ud)
{
    tags_probe *t = ud;
    t->found = true;
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, "tags") == 0)
            t->tags = xstrdup(r->fields[i].value);
    return 0;
}

/* One random local edit of one record on device dev: one or two of its
 * fields, from small pools so that devices often collide, sometimes with
 * the same value. */
static void random_edit(fixture *f, int dev)
{
    int rec = (int)rnd_below(f, (unsigned)f->nrec);
    const int *flist = f->rec[rec].type == T_PLAN ? plan_fields : indicator_fields;
    unsigned nfl = f->rec[rec].type == T_PLAN ? 4 : 3;
    bool has[NF] = {false};
    fields val = {{NULL}};
    const char *assign[2];
    char buf[2][256];
    size_t n = 1 + rnd_below(f, 2);
    for (size_t k = 0; k < n; k++) {
        int fi;
        do
            fi = flist[rnd_below(f, nfl)];
        while (has[fi]);
        has[fi] = true;
        unsigned r = rnd_below(f, 4);
        switch (fi) {
        case F_TITLE:
            snprintf(buf[k], sizeof(buf[k]), "Title %c", 'A' + r);
            val.v[fi] = xstrdup(buf[k]);
            snprintf(buf[k], sizeof(buf[k]), "title:text=Title %c", 'A' + r);
            break;
        case F_SUMMARY:
            if (rnd_below(f, 8) == 0) {
                snprintf(buf[k], sizeof(buf[k]), "summary:null=");
            } else {
                snprintf(buf[k], sizeof(buf[k]), "Summary %u", r);
                val.v[fi] = xstrdup(buf[k]);
                snprintf(buf[k], sizeof(buf[k]), "summary:text=Summary %u", r);
            }
            break;
        case F_STATUS: {
            /* The domain model's statuses only (a draft is readable here:
             * every device is of the owning organisation), but not
             * archived: an archived plan's records are read only, and
             * this test is about merging edits, not refusing them. */
            static const char *const st[] = {"draft", "adopted"};
            unsigned which = rnd_below(f, 2);
            val.v[fi] = xstrdup(st[which]);
            snprintf(buf[k], sizeof(buf[k]), "status:text=%s", st[which]);
            break;
        }
        case F_BASELINE: {
            static const char *const dec[] = {"1.5", "2", "10.25", "0.75"};
            val.v[fi] = xstrdup(dec[r]);
            snprintf(buf[k], sizeof(buf[k]), "baseline:decimal=%s", dec[r]);
            break;
        }
        default: { /* tags: toggle one tag in the local view's set */
            tags_probe tp = {NULL, false};
            ns_error err;
            if (ns_client_get(f->c[dev], type_name[f->rec[rec].type], f->rec[rec].id, probe_tags,
                              &tp, &err) != NS_OK ||
                !tp.found)
                nst_fail(f->e, "ns_client_get %s on device %d: %s", f->rec[rec].id, dev,
                         err.message);
            char tag[8], set[128] = "";
            snprintf(tag, sizeof(tag), "t%u", rnd_below(f, NTAGS));
            for (unsigned i = 0; i < NTAGS; i++) {
                char t[8];
                snprintf(t, sizeof(t), "t%u", i);
                bool in = set_has(tp.tags, t);
                if (strcmp(t, tag) == 0)
                    in = !in;
                if (in)
                    set_append(set, sizeof(set), t);
            }
            free(tp.tags);
            val.v[fi] = xstrdup(set);
            snprintf(buf[k], sizeof(buf[k]), "tags:set=%s", set);
            break;
        }
        }
        assign[k] = buf[k];
    }
    must_put(f, dev, rec, false, assign, n, has, &val);
    fields_free(&val);
}

/* ---- setup ------------------------------------------------------------------------------ */

static unsigned env_uint(const char *name, unsigned def, unsigned lo, unsigned hi)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return def;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "converge: %s must be %u to %u; using %u\n", name, lo, hi, def);
        return def;
    }
    return (unsigned)v;
}

static ns_client *new_client(fixture *f, int d)
{
    ns_client_options o;
    char unused[64];
    nst_client_options(f->e, f->dev[d].cert, f->dev[d].key, f->e->ca_cert, &o, unused,
                       sizeof(unused));
    o.server = f->server;
    o.store_path = f->store[d];
    o.timeout_ms = 8000;
    ns_client *c;
    ns_error err;
    if (ns_client_new(&o, NULL, &c, &err) != NS_OK) {
        fprintf(stderr, "converge: ns_client_new: %s\n", err.message);
        return NULL;
    }
    return c;
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    const char *s = getenv("NS_TEST_SEED");
    f->seed = s && *s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ nst_now_ms();
    f->rng = f->seed;
    f->ndev = (int)env_uint("NS_TEST_DEVICES", 5, 2, MAX_DEVICES);
    f->nplans = (int)env_uint("NS_TEST_PLANS", 3, 1, MAX_PLANS);
    f->rounds = (int)env_uint("NS_TEST_ROUNDS", 30, 1, 1000000);
    fprintf(stderr,
            "converge: seed=%" PRIu64 " devices=%d plans=%d rounds=%d "
            "(NS_TEST_SEED=%" PRIu64 " reproduces this run)\n",
            f->seed, f->ndev, f->nplans, f->rounds, f->seed);
    f->e = nst_env_new("converge", NULL);
    if (f->e == NULL || nst_daemon_start(f->e, NULL) != 0)
        return -1;
    for (int d = 0; d <= f->ndev; d++) {
        char name[32], principal[64];
        snprintf(name, sizeof(name), "conv-device-%d", d);
        snprintf(principal, sizeof(principal), "Converge Coordinator %d", d);
        if (nst_device_issue(f->e, false, name, &f->dev[d]) != 0 ||
            nst_device_register(f->e, "mogender", principal, "coordinator", &f->dev[d]) != 0)
            return -1;
        const char *params[] = {name};
        if (nst_db_exec(f->e, "SELECT id::text FROM devices WHERE name = $1", 1, params,
                        f->dev_uuid[d], sizeof(f->dev_uuid[d])) != 0 ||
            f->dev_uuid[d][0] == '\0')
            return -1;
        char file[40];
        snprintf(file, sizeof(file), "device-%d.store", d);
        if (nst_path_join(f->store[d], f->e->dir, file) != 0)
            return -1;
    }
    const char *keys[] = {"host", "port", "user", "dbname", NULL};
    const char *vals[] = {f->e->pg.host, f->e->pg.port, f->e->pg.user, f->e->dbname, NULL};
    f->db = PQconnectdbParams(keys, vals, 0);
    if (f->db == NULL || PQstatus(f->db) != CONNECTION_OK) {
        fprintf(stderr, "converge: cannot connect to the test database: %s",
                f->db ? PQerrorMessage(f->db) : "out of memory\n");
        return -1;
    }
    f->proxy = nst_proxy_start(f->e->port, f->seed ^ 0x5bd1e995u);
    if (f->proxy == NULL)
        return -1;
    snprintf(f->server, sizeof(f->server), "127.0.0.1:%u", (unsigned)nst_proxy_port(f->proxy));
    for (int d = 0; d < f->ndev; d++)
        if ((f->c[d] = new_client(f, d)) == NULL)
            return -1;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f == NULL)
        return 0;
    for (int d = 0; d <= MAX_DEVICES; d++)
        ns_client_free(f->c[d]);
    nst_proxy_stop(f->proxy);
    PQfinish(f->db);
    for (size_t i = 0; i < f->nmut; i++)
        fields_free(&f->mut[i].val);
    free(f->mut);
    int rc = nst_env_close(f->e);
    free(f);
    return rc;
}

/* ---- the run ---------------------------------------------------------------------------- */

static void create_records(fixture *f)
{
    for (int p = 0; p < f->nplans; p++) {
        bool has[NF] = {false};
        fields val = {{NULL}};
        char title[64], summary[64];
        snprintf(title, sizeof(title), "title:text=Plan %d", p);
        snprintf(summary, sizeof(summary), "summary:text=Summary of plan %d", p);
        /* And what else the domain model requires (harness.h), never
         * edited afterwards. */
        const char *assign[] = {title, summary, "status:text=draft", "tags:set=t0,t1",
                                NST_PLAN_ASSIGN};
        has[F_TITLE] = has[F_SUMMARY] = has[F_STATUS] = has[F_TAGS] = true;
        val.v[F_TITLE] = title + strlen("title:text=");
        val.v[F_SUMMARY] = summary + strlen("summary:text=");
        val.v[F_STATUS] = "draft";
        val.v[F_TAGS] = "t0,t1";
        must_put(f, 0, T_PLAN, true, assign, sizeof(assign) / sizeof(assign[0]), has, &val);
        int plan = f->nrec - 1;
        for (int i = 0; i < IND_PER_PLAN; i++) {
            bool ihas[NF] = {false};
            fields ival = {{NULL}};
            char ref[80], ititle[64];
            snprintf(ref, sizeof(ref), "plan_id:ref=%s", f->rec[plan].id);
            snprintf(ititle, sizeof(ititle), "title:text=Indicator %d.%d", p, i);
            /* A baseline needs its date (never edited: the baseline is). */
            const char *iassign[] = {ref,
                                     ititle,
                                     "baseline:decimal=1.5",
                                     "tags:set=t2",
                                     NST_INDICATOR_ASSIGN,
                                     "baseline_date:date=2024-01-31"};
            ihas[F_TITLE] = ihas[F_BASELINE] = ihas[F_TAGS] = true;
            ival.v[F_TITLE] = ititle + strlen("title:text=");
            ival.v[F_BASELINE] = "1.5";
            ival.v[F_TAGS] = "t2";
            must_put(f, 0, T_INDICATOR, true, iassign, sizeof(iassign) / sizeof(iassign[0]), ihas,
                     &ival);
        }
    }
}

/* Syncs dev until its outbox is empty (no cuts are being made). */
static void heal(fixture *f, int dev)
{
    ns_error err;
    for (int attempt = 0; attempt < 6; attempt++) {
        int rc = try_sync(f, dev, &err);
        uint64_t rejected;
        if (rc == NS_OK && pending_of(f, dev, &rejected) == 0) {
            if (rejected != 0)
                nst_fail(f->e, "device %d: %" PRIu64 " changes refused", dev, rejected);
            return;
        }
        if (rc != NS_OK)
            fprintf(stderr, "converge: heal: device %d: %s: %s (retrying)\n", dev,
                    ns_status_name(err.status), err.message);
    }
    nst_fail(f->e, "device %d could not empty its outbox without cuts", dev);
}

static void run_rounds(fixture *f)
{
    nst_proxy_set_fuses(f->proxy, 50, 16000);
    for (int round = 0; round < f->rounds; round++) {
        for (int d = 0; d < f->ndev; d++) {
            unsigned edits = rnd_below(f, 4);
            for (unsigned k = 0; k < edits; k++)
                random_edit(f, d);
        }
        int order[MAX_DEVICES];
        for (int d = 0; d < f->ndev; d++)
            order[d] = d;
        for (int d = f->ndev - 1; d > 0; d--) {
            int j = (int)rnd_below(f, (unsigned)d + 1);
            int t = order[d];
            order[d] = order[j];
            order[j] = t;
        }
        for (int k = 0; k < f->ndev; k++) {
            int d = order[k];
            if (rnd_below(f, 10) < 3)
                continue; /* stays offline this round */
            ns_error err;
            (void)try_sync(f, d, &err); /* a failure is retried in a later round */
            if (rnd_below(f, 2) == 0)
                ns_client_disconnect_wait(f->c[d]);
            else
                f->kept_open++;
        }
        if (rnd_below(f, 5) == 0) {
            nst_proxy_cut_all(f->proxy); /* connections kept open die while idle */
            f->cut_idle++;
        }
    }
}

/* ---- checks: replicas ---------------------------------------------------------------- */

typedef struct {
    char id[40];
    char *line; /* everything the view says, for replica-to-replica equality */
    uint64_t version;
    bool deleted;
    int pending;
    char tenant[40];
    fields val;
} snap;

typedef struct {
    snap *s;
    size_t n;
} snaps;

static int collect(const ns_record_view *r, void *ud)
{
    snaps *ss = ud;
    snap *grown = realloc(ss->s, (ss->n + 1) * sizeof(*ss->s));
    assert_non_null(grown);
    ss->s = grown;
    snap *s = &ss->s[ss->n++];
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", r->id);
    s->version = r->version;
    s->deleted = r->deleted;
    s->pending = r->pending;
    snprintf(s->tenant, sizeof(s->tenant), "%s", r->tenant_id);
    size_t cap = 512, len = 0;
    for (size_t i = 0; i < r->nfields; i++)
        cap +=
            strlen(r->fields[i].name) + 16 + (r->fields[i].value ? strlen(r->fields[i].value) : 0);
    s->line = malloc(cap);
    assert_non_null(s->line);
    len += (size_t)snprintf(s->line, cap, "v%" PRIu64 " del=%d rej=%u tenant=%s by=%s at=%s |",
                            r->version, r->deleted, r->rejected, r->tenant_id, r->changed_by,
                            r->changed_at);
    for (size_t i = 0; i < r->nfields; i++) {
        const ns_field_view *fv = &r->fields[i];
        len += (size_t)snprintf(s->line + len, cap - len, " %s:%s=%s", fv->name, fv->kind,
                                fv->value ? fv->value : "<null>");
        for (int k = 0; k < NF; k++)
            if (strcmp(fv->name, field_name[k]) == 0)
                s->val.v[k] = canon(k, fv->value);
    }
    return 0;
}

static void snaps_free(snaps *ss)
{
    for (size_t i = 0; i < ss->n; i++) {
        free(ss->s[i].line);
        fields_free(&ss->s[i].val);
    }
    free(ss->s);
    ss->s = NULL;
    ss->n = 0;
}

static void list_device(fixture *f, int d, int type, snaps *out)
{
    ns_error err;
    memset(out, 0, sizeof(*out));
    if (ns_client_list(f->c[d], type_name[type], 1, collect, out, &err) != NS_OK)
        nst_fail(f->e, "ns_client_list on device %d: %s", d, err.message);
}

static const snap *find_snap(const snaps *ss, const char *id)
{
    for (size_t i = 0; i < ss->n; i++)
        if (strcmp(ss->s[i].id, id) == 0)
            return &ss->s[i];
    return NULL;
}

/* (a): all replicas equal the fresh device's, which equals the typed tables. */
static void check_replicas(fixture *f, PGconn *db)
{
    static const char *const sql[2] = {
        "SELECT id::text, version, deleted, tenant_id::text, NULL, status, summary,"
        " array_to_string(tags, ','), title FROM plans ORDER BY id",
        "SELECT id::text, version, deleted, tenant_id::text, baseline::text, NULL, NULL,"
        " array_to_string(tags, ','), title FROM indicators ORDER BY id",
    };
    int fresh = f->ndev;
    for (int type = 0; type < 2; type++) {
        snaps ref;
        list_device(f, fresh, type, &ref);
        for (int d = 0; d < f->ndev; d++) {
            snaps ss;
            list_device(f, d, type, &ss);
            if (ss.n != ref.n)
                violation(f, "device %d has %zu %s records, a fresh pull %zu", d, ss.n,
                          type_name[type], ref.n);
            for (size_t i = 0; i < ss.n; i++) {
                const snap *r = find_snap(&ref, ss.s[i].id);
                if (ss.s[i].pending)
                    violation(f, "device %d: %s %s still has pending changes", d, type_name[type],
                              ss.s[i].id);
                if (r == NULL)
                    violation(f, "device %d has %s %s, a fresh pull does not", d, type_name[type],
                              ss.s[i].id);
                else if (strcmp(r->line, ss.s[i].line) != 0)
                    violation(
                        f,
                        "device %d: %s %s differs from a fresh pull:\n  device: %s\n  fresh:  %s",
                        d, type_name[type], ss.s[i].id, ss.s[i].line, r->line);
            }
            snaps_free(&ss);
        }
        PGresult *res = db_query(f, db, sql[type]);
        int n = PQntuples(res);
        if ((size_t)n != ref.n)
            violation(f, "the server has %d %s records, a fresh pull %zu", n, type_name[type],
                      ref.n);
        for (int row = 0; row < n; row++) {
            const snap *r = find_snap(&ref, col(res, row, 0));
            if (r == NULL) {
                violation(f, "%s %s is on the server, not in a fresh pull", type_name[type],
                          col(res, row, 0));
                continue;
            }
            uint64_t version = strtoull(col(res, row, 1), NULL, 10);
            bool deleted = strcmp(col(res, row, 2), "t") == 0;
            if (version != r->version || deleted != r->deleted ||
                strcmp(col(res, row, 3), r->tenant) != 0)
                violation(f,
                          "%s %s: server v%" PRIu64 " deleted=%d tenant=%s, replica v%" PRIu64
                          " deleted=%d tenant=%s",
                          type_name[type], r->id, version, deleted, col(res, row, 3), r->version,
                          r->deleted, r->tenant);
            for (int k = 0; k < NF; k++) {
                char *sv = canon(k, col(res, row, 4 + k));
                if (!veq(sv, r->val.v[k]))
                    violation(f, "%s %s field %s: server %s, replicas %s", type_name[type], r->id,
                              field_name[k], show(sv), show(r->val.v[k]));
                free(sv);
            }
        }
        PQclear(res);
        snaps_free(&ref);
    }
}

/* ---- checks: history, answers, conflicts ------------------------------------------------ */

typedef struct {
    revision *rev[MAX_RECORDS]; /* rev[r][v] for v in 1..nrev[r]; [0] unused */
    uint64_t nrev[MAX_RECORDS];
    answer_row *ans;
    int nans;
    conflict_row *cf;
    int ncf;
} server_state;

static int rec_index(const fixture *f, const char *id)
{
    for (int i = 0; i < f->nrec; i++)
        if (strcmp(f->rec[i].id, id) == 0)
            return i;
    return -1;
}

static int cmp_answer(const void *a, const void *b)
{
    return strcmp(((const answer_row *)a)->mid, ((const answer_row *)b)->mid);
}

static void load_server(fixture *f, PGconn *db, server_state *s)
{
    memset(s, 0, sizeof(*s));
    /* The test's records: the directory's (sql/009) are not its own. */
    /* clang-format off */
    static const char sql[] =
        "SELECT record_id::text, version, coalesce(device_id::text, ''),"
        " coalesce(mutation_id::text, ''), op, deleted, "
        JTEXT("after->'baseline'") ", " JTEXT("after->'status'") ", "
        JTEXT("after->'summary'") ", " JTEXT("after->'tags'") ", " JTEXT("after->'title'")
        " FROM sync_revisions WHERE tenant_id <> 'd1ec7000-0000-4000-8000-000000000000'"
        " ORDER BY record_id, version";
    /* clang-format on */
    PGresult *res = db_query(f, db, sql);
    for (int row = 0; row < PQntuples(res); row++) {
        int r = rec_index(f, col(res, row, 0));
        if (r < 0) {
            violation(f, "a revision of %s, a record the test never made", col(res, row, 0));
            continue;
        }
        uint64_t v = strtoull(col(res, row, 1), NULL, 10);
        if (v != s->nrev[r] + 1) {
            violation(f, "%s: revision %" PRIu64 " follows %" PRIu64, f->rec[r].id, v, s->nrev[r]);
            continue;
        }
        revision *grown = realloc(s->rev[r], (v + 1) * sizeof(revision));
        assert_non_null(grown);
        s->rev[r] = grown;
        revision *rv = &s->rev[r][v];
        memset(rv, 0, sizeof(*rv));
        s->nrev[r] = v;
        rv->version = v;
        snprintf(rv->device, sizeof(rv->device), "%s", col(res, row, 2));
        snprintf(rv->mid, sizeof(rv->mid), "%s", col(res, row, 3));
        snprintf(rv->op, sizeof(rv->op), "%s", col(res, row, 4));
        rv->deleted = strcmp(col(res, row, 5), "t") == 0;
        for (int k = 0; k < NF; k++)
            rv->val.v[k] = canon(k, col(res, row, 6 + k));
    }
    PQclear(res);

    /* Each revision continues the one before it. */
    res = db_query(f, db,
                   "SELECT r.record_id::text, r.version FROM sync_revisions r"
                   " JOIN sync_revisions p ON p.entity_type = r.entity_type"
                   " AND p.record_id = r.record_id AND p.version = r.version - 1"
                   " WHERE r.before IS DISTINCT FROM p.after");
    for (int row = 0; row < PQntuples(res); row++)
        violation(f, "%s v%s: before differs from the previous version's after", col(res, row, 0),
                  col(res, row, 1));
    PQclear(res);

    res = db_query(f, db,
                   "SELECT mutation_id::text, coalesce(device_id::text, ''), outcome, version,"
                   " coalesce(array_length(conflict_ids, 1), 0) FROM sync_mutations");
    s->nans = PQntuples(res);
    s->ans = calloc((size_t)s->nans + 1, sizeof(*s->ans));
    assert_non_null(s->ans);
    for (int row = 0; row < s->nans; row++) {
        answer_row *a = &s->ans[row];
        snprintf(a->mid, sizeof(a->mid), "%s", col(res, row, 0));
        snprintf(a->device, sizeof(a->device), "%s", col(res, row, 1));
        snprintf(a->outcome, sizeof(a->outcome), "%s", col(res, row, 2));
        a->version = strtoull(col(res, row, 3), NULL, 10);
        a->nconflicts = atoi(col(res, row, 4));
    }
    PQclear(res);
    qsort(s->ans, (size_t)s->nans, sizeof(*s->ans), cmp_answer);

    res = db_query(f, db,
                   "SELECT id::text, mutation_id::text, coalesce(field, ''), kept_deleted,"
                   " other_deleted, resolved_at IS NULL, " JTEXT("base") ", " JTEXT(
                       "kept") ", " JTEXT("other") " FROM sync_conflicts");
    s->ncf = PQntuples(res);
    s->cf = calloc((size_t)s->ncf + 1, sizeof(*s->cf));
    assert_non_null(s->cf);
    for (int row = 0; row < s->ncf; row++) {
        conflict_row *c = &s->cf[row];
        snprintf(c->id, sizeof(c->id), "%s", col(res, row, 0));
        snprintf(c->mid, sizeof(c->mid), "%s", col(res, row, 1));
        snprintf(c->field, sizeof(c->field), "%s", col(res, row, 2));
        c->kept_deleted = strcmp(col(res, row, 3), "t") == 0;
        c->other_deleted = strcmp(col(res, row, 4), "t") == 0;
        c->open = strcmp(col(res, row, 5), "t") == 0;
        int k = F_TITLE;
        for (int i = 0; i < NF; i++)
            if (strcmp(c->field, field_name[i]) == 0)
                k = i;
        c->base = canon(k, col(res, row, 6));
        c->kept = canon(k, col(res, row, 7));
        c->other = canon(k, col(res, row, 8));
    }
    PQclear(res);
}

static void server_free(fixture *f, server_state *s)
{
    for (int r = 0; r < f->nrec; r++) {
        for (uint64_t v = 1; v <= s->nrev[r]; v++)
            fields_free(&s->rev[r][v].val);
        free(s->rev[r]);
    }
    for (int i = 0; i < s->ncf; i++) {
        free(s->cf[i].base);
        free(s->cf[i].kept);
        free(s->cf[i].other);
    }
    free(s->cf);
    free(s->ans);
}

/* cur ∪ (mine − base) − (base − mine); a null reads as the empty set, and
 * an empty result where cur is null stays null. */
static char *set_merge(const char *base, const char *cur, const char *mine)
{
    char out[256] = "";
    for (unsigned i = 0; i < NTAGS; i++) {
        char t[8];
        snprintf(t, sizeof(t), "t%u", i);
        bool in_b = set_has(base, t), in_c = set_has(cur, t), in_m = set_has(mine, t);
        if ((in_c || (in_m && !in_b)) && !(in_b && !in_m))
            set_append(out, sizeof(out), t);
    }
    if (out[0] == '\0' && cur == NULL)
        return NULL;
    return xstrdup(out);
}

typedef struct {
    int field;
    const char *base, *kept, *other;
} model_conflict;

static bool fields_equal(const fields *a, const fields *b)
{
    for (int k = 0; k < NF; k++)
        if (!veq(a->v[k], b->v[k]))
            return false;
    return true;
}

/* Replays one update through the model; reports what the server did
 * differently. Returns whether the model changed the record. */
static bool replay_update(fixture *f, server_state *s, const mutation *m, const answer_row *a,
                          unsigned *nconflicts)
{
    const char *rid = f->rec[m->rec].id;
    const revision *mine_rev = NULL;
    for (uint64_t v = 1; v <= s->nrev[m->rec]; v++)
        if (strcmp(s->rev[m->rec][v].mid, m->mid) == 0) {
            if (mine_rev)
                violation(f, "mutation %s made two revisions of %s", m->mid, rid);
            mine_rev = &s->rev[m->rec][v];
        }
    /* The version the record had when the server applied it. */
    uint64_t pre = mine_rev ? mine_rev->version - 1 : a->version;
    if (pre < 1 || pre > s->nrev[m->rec] || m->base > pre) {
        violation(f,
                  "mutation %s on %s: applied at version %" PRIu64 " (base %" PRIu64 ", %" PRIu64
                  " versions)",
                  m->mid, rid, pre, m->base, s->nrev[m->rec]);
        return mine_rev != NULL;
    }
    const revision *revs = s->rev[m->rec];
    uint64_t eff = m->base;
    while (eff < pre && strcmp(revs[eff + 1].device, f->dev_uuid[m->dev]) == 0)
        eff++;
    bool stale = eff < pre;
    const fields *cur = &revs[pre].val;
    const fields *base = &revs[eff].val;
    fields next;
    fields_copy(&next, cur);
    model_conflict mc[NF];
    int nmc = 0;
    for (int k = 0; k < NF; k++) {
        if (!m->has[k])
            continue;
        const char *mine = m->val.v[k];
        if (!stale || (!veq(mine, base->v[k]) && veq(cur->v[k], base->v[k]))) {
            free(next.v[k]);
            next.v[k] = xstrdup(mine);
        } else if (veq(mine, base->v[k]) || veq(cur->v[k], mine)) {
            continue;
        } else if (field_kind[k] == K_SET) {
            free(next.v[k]);
            next.v[k] = set_merge(base->v[k], cur->v[k], mine);
        } else {
            mc[nmc++] = (model_conflict){k, base->v[k], cur->v[k], mine};
        }
    }
    bool changed = !fields_equal(&next, cur);
    const char *want = !stale ? "applied" : nmc > 0 ? "conflict" : "merged";
    if (strcmp(a->outcome, want) != 0)
        violation(f,
                  "mutation %s on %s (base %" PRIu64 ", effective %" PRIu64 ", at %" PRIu64
                  "): outcome %s, the model says %s",
                  m->mid, rid, m->base, eff, pre, a->outcome, want);
    if (changed != (mine_rev != NULL))
        violation(f, "mutation %s on %s: %s a revision, the model %s the record", m->mid, rid,
                  mine_rev ? "made" : "made no", changed ? "changes" : "does not change");
    if (mine_rev && !fields_equal(&mine_rev->val, &next)) {
        for (int k = 0; k < NF; k++)
            if (!veq(mine_rev->val.v[k], next.v[k]))
                violation(f, "mutation %s on %s v%" PRIu64 ": %s is %s, the model says %s", m->mid,
                          rid, mine_rev->version, field_name[k], show(mine_rev->val.v[k]),
                          show(next.v[k]));
    }
    if (mine_rev && strcmp(mine_rev->device, f->dev_uuid[m->dev]) != 0)
        violation(f, "revision of mutation %s names another device", m->mid);
    /* Exactly the model's conflicts, one row each. */
    int rows = 0;
    for (int i = 0; i < s->ncf; i++) {
        conflict_row *c = &s->cf[i];
        if (strcmp(c->mid, m->mid) != 0)
            continue;
        rows++;
        c->matched = true;
        bool found = false;
        for (int j = 0; j < nmc; j++)
            if (strcmp(c->field, field_name[mc[j].field]) == 0 && !c->kept_deleted &&
                !c->other_deleted && veq(c->base, mc[j].base) && veq(c->kept, mc[j].kept) &&
                veq(c->other, mc[j].other))
                found = true;
        if (!found)
            violation(f,
                      "conflict %s of mutation %s on %s (field %s, base %s, kept %s, other "
                      "%s) is not one the model expects",
                      c->id, m->mid, rid, c->field, show(c->base), show(c->kept), show(c->other));
    }
    if (rows != nmc || a->nconflicts != nmc)
        violation(f,
                  "mutation %s on %s: %d conflict rows (%d ids in its answer), the model "
                  "expects %d",
                  m->mid, rid, rows, a->nconflicts, nmc);
    *nconflicts += (unsigned)nmc;
    fields_free(&next);
    return changed;
}

typedef struct {
    const server_state *s;
    int n, unknown;
} conflict_probe;

static int probe_conflict(const ns_conflict_view *cf, void *ud)
{
    conflict_probe *p = ud;
    p->n++;
    bool known = false;
    for (int i = 0; i < p->s->ncf; i++)
        if (strcmp(p->s->cf[i].id, cf->id) == 0 && p->s->cf[i].open)
            known = true;
    p->unknown += !known;
    return 0;
}

static void check_history(fixture *f, PGconn *db, unsigned *applied, unsigned *merged,
                          unsigned *conflicted, unsigned *noop, unsigned *nconflicts)
{
    server_state s;
    load_server(f, db, &s);
    unsigned revisions_expected = 0;
    for (size_t i = 0; i < f->nmut; i++) {
        const mutation *m = &f->mut[i];
        answer_row key;
        snprintf(key.mid, sizeof(key.mid), "%s", m->mid);
        const answer_row *a = bsearch(&key, s.ans, (size_t)s.nans, sizeof(*s.ans), cmp_answer);
        if (a == NULL) {
            violation(f, "mutation %s (device %d) was never answered", m->mid, m->dev);
            continue;
        }
        if (strcmp(a->device, f->dev_uuid[m->dev]) != 0)
            violation(f, "mutation %s is recorded for another device", m->mid);
        if (strcmp(a->outcome, "applied") == 0)
            (*applied)++;
        else if (strcmp(a->outcome, "merged") == 0)
            (*merged)++;
        else if (strcmp(a->outcome, "conflict") == 0)
            (*conflicted)++;
        else
            violation(f, "mutation %s: outcome %s", m->mid, a->outcome);
        if (m->create) {
            const revision *r1 = s.nrev[m->rec] >= 1 ? &s.rev[m->rec][1] : NULL;
            revisions_expected++;
            if (r1 == NULL || strcmp(r1->mid, m->mid) != 0 || strcmp(r1->op, "create") != 0 ||
                !fields_equal(&r1->val, &m->val) || strcmp(a->outcome, "applied") != 0)
                violation(f, "create %s of %s: not version 1 with the values sent", m->mid,
                          f->rec[m->rec].id);
            continue;
        }
        if (replay_update(f, &s, m, a, nconflicts))
            revisions_expected++;
        else
            (*noop)++;
    }
    unsigned revisions = 0;
    for (int r = 0; r < f->nrec; r++) {
        revisions += (unsigned)s.nrev[r];
        for (uint64_t v = 1; v <= s.nrev[r]; v++)
            if (s.rev[r][v].deleted)
                violation(f, "%s v%" PRIu64 " is deleted: nothing deleted it", f->rec[r].id, v);
    }
    if (revisions != revisions_expected)
        violation(f, "%u revisions, the model expects %u", revisions, revisions_expected);
    if ((size_t)s.nans != f->nmut)
        violation(f, "%d answers stored, %zu mutations made", s.nans, f->nmut);
    for (int i = 0; i < s.ncf; i++)
        if (!s.cf[i].matched)
            violation(f, "conflict %s belongs to no mutation of the test (%s)", s.cf[i].id,
                      s.cf[i].mid);

    /* The typed tables hold each record's last revision. */
    static const char *const sql[2] = {
        "SELECT id::text, version, NULL, status, summary, array_to_string(tags, ','), title"
        " FROM plans",
        "SELECT id::text, version, baseline::text, NULL, NULL, array_to_string(tags, ','),"
        " title FROM indicators",
    };
    for (int type = 0; type < 2; type++) {
        PGresult *res = db_query(f, db, sql[type]);
        for (int row = 0; row < PQntuples(res); row++) {
            int r = rec_index(f, col(res, row, 0));
            if (r < 0 || s.nrev[r] == 0)
                continue; /* reported above */
            const revision *last = &s.rev[r][s.nrev[r]];
            if (strtoull(col(res, row, 1), NULL, 10) != last->version)
                violation(f, "%s: the table says v%s, the last revision is v%" PRIu64, f->rec[r].id,
                          col(res, row, 1), last->version);
            for (int k = 0; k < NF; k++) {
                char *v = canon(k, col(res, row, 2 + k));
                if (!veq(v, last->val.v[k]))
                    violation(f, "%s: the table's %s is %s, the last revision's %s", f->rec[r].id,
                              field_name[k], show(v), show(last->val.v[k]));
                free(v);
            }
        }
        PQclear(res);
    }

    /* Every device lists the server's open conflicts (a listing holds at
     * most 1,000). */
    int open = 0;
    for (int i = 0; i < s.ncf; i++)
        open += s.cf[i].open;
    for (int d = 0; d <= f->ndev; d++) {
        conflict_probe p = {&s, 0, 0};
        ns_error err;
        if (ns_client_conflicts(f->c[d], 0, probe_conflict, &p, &err) != NS_OK)
            nst_fail(f->e, "ns_client_conflicts on device %d: %s", d, err.message);
        int want = open < 1000 ? open : 1000;
        if (p.n != want || p.unknown != 0)
            violation(f,
                      "device %d lists %d open conflicts (%d not open on the server), the "
                      "server has %d",
                      d, p.n, p.unknown, open);
    }
    server_free(f, &s);
}

static void test_converge(void **state)
{
    fixture *f = *state;
    uint64_t t0 = nst_now_ms();
    ns_error err;

    /* Setup: device 0 creates the records; everyone gets them, no cuts. */
    create_records(f);
    heal(f, 0);
    for (int d = 1; d < f->ndev; d++)
        heal(f, d);

    run_rounds(f);

    /* Heal: no more cuts; everyone pushes everything, then everyone pulls. */
    nst_proxy_set_fuses(f->proxy, 0, 0);
    nst_proxy_cut_all(f->proxy);
    for (int d = 0; d < f->ndev; d++)
        heal(f, d);
    for (int d = 0; d < f->ndev; d++)
        if (try_sync(f, d, &err) != NS_OK && try_sync(f, d, &err) != NS_OK)
            nst_fail(f->e, "device %d: final sync: %s", d, err.message);
    f->c[f->ndev] = new_client(f, f->ndev);
    if (f->c[f->ndev] == NULL || try_sync(f, f->ndev, &err) != NS_OK)
        nst_fail(f->e, "a fresh device could not pull: %s", err.message);
    for (int d = 0; d <= f->ndev; d++) {
        uint64_t rejected;
        if (pending_of(f, d, &rejected) != 0 || rejected != 0)
            violation(f, "device %d: outbox not empty after healing", d);
        ns_client_disconnect_wait(f->c[d]);
    }

    PGconn *db = f->db;
    check_replicas(f, db);
    unsigned applied = 0, merged = 0, conflicted = 0, noop = 0, nconflicts = 0;
    check_history(f, db, &applied, &merged, &conflicted, &noop, &nconflicts);

    nst_proxy_stats ps;
    nst_proxy_get_stats(f->proxy, &ps);
    char failures[512] = "";
    for (int i = 1; i < 20; i++)
        if (f->fail_by_status[i] > 0) {
            size_t len = strlen(failures);
            snprintf(failures + len, sizeof(failures) - len, "%s%s %u", len ? ", " : "",
                     ns_status_name((ns_status)-i), f->fail_by_status[i]);
        }
    for (int i = 1; i < 20; i++)
        if (f->fail_by_status[i] > 0)
            fprintf(stderr, "converge: first %s: %s\n", ns_status_name((ns_status)-i),
                    f->first_failure[i]);
    fprintf(stderr,
            "converge: seed=%" PRIu64 " devices=%d records=%d rounds=%d mutations=%zu "
            "(applied %u, merged %u, conflict %u; %u changed nothing) conflicts=%u "
            "syncs=%u failed=%u (%s) connections=%" PRIu64 " cut=%" PRIu64 " (by fuse %" PRIu64
            ", idle cuts %u) kept_open=%u bytes=%" PRIu64 " elapsed=%.1fs violations=%u\n",
            f->seed, f->ndev, f->nrec, f->rounds, f->nmut, applied, merged, conflicted, noop,
            nconflicts, f->syncs, f->sync_failed, failures, ps.accepted, ps.cut, ps.fused,
            f->cut_idle, f->kept_open, ps.bytes, (double)(nst_now_ms() - t0) / 1000.0,
            f->violations);
    if (f->violations > 0)
        nst_fail(f->e,
                 "%u violations (the first %d are printed above); NS_TEST_SEED=%" PRIu64
                 " reproduces the run",
                 f->violations, MAX_REPORTED, f->seed);
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_converge),
    };
    return cmocka_run_group_tests_name("integration: convergence under cut connections", tests,
                                       group_setup, group_teardown);
}
