/* The memory soak (issue 5, item 6; docs/reliability.md, "Memory"): one
 * napsyncd, its PostgreSQL, and devices that push and pull for a while,
 * connecting and disconnecting, while the daemon's resident memory (VmRSS
 * of /proc/PID/status) is sampled every few seconds. The daemon's RSS must
 * stay flat: after a warm-up, it may not grow by more than a generous
 * bound (NS_SOAK_SLACK_MB), whatever the data grows to.
 *
 * Each device is a thread with libnapsync clients of its own (each client
 * its own loop), all coordinators of one organisation, so every sync pulls
 * what the others pushed. A device, round after round: opens a client on
 * its store, syncs (connect, Hello, push, pull, conflicts), makes 1 to 12
 * local edits (new indicators in its plan, retitled ones), syncs again,
 * and then, at random: keeps the connection for the next round or
 * disconnects and frees the client; now and then it also sends a direct
 * push of 100 new indicators, asks for a record's history or the coverage
 * report, or throws its store away and starts again from nothing (a full
 * catch-up of every plan). At the end every device syncs until its outbox
 * is empty and the server must hold exactly the indicators they made.
 *
 *   NS_SOAK_SECONDS   how long the load runs (default 40: the CI size)
 *   NS_SOAK_DEVICES   devices (threads), default 4
 *   NS_SOAK_SAMPLE_MS between RSS samples, default 2000
 *   NS_SOAK_SLACK_MB  the growth allowed after the warm-up, default 64
 *   NS_SOAK_OUT       a file for the samples (TSV), optional
 *
 * Nothing is timed or asserted about speed: tests/soak/run.sh runs the
 * long one and prints its figures. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define MAX_DEVICES  32
#define MAX_SAMPLES  4096
#define MAX_OWN_IDS  4096
#define BATCH_CREATE 100

typedef struct {
    uint64_t ms;
    long rss_kb, hwm_kb;
    uint64_t connects, syncs, mutations;
} sample;

typedef struct soak soak;

/* One device: a thread. Counters are written by it and read by the
 * sampler, hence atomic. */
typedef struct {
    soak *s;
    int index;
    nst_device dev;
    char dir[NST_PATH];
    char plan[40];
    unsigned store_gen;
    uint64_t rng;
    char (*ids)[40]; /* its indicators, to retitle and ask the history of */
    size_t nids;
    atomic_uint_fast64_t connects, disconnects, syncs, puts, creates, batches, histories, reports,
        fresh;
    char error[512]; /* the first failure; the thread stops there */
} device;

struct soak {
    nst_env *e;
    unsigned ndevices;
    uint64_t seconds, sample_ms;
    long slack_kb;
    const char *out;
    device dev[MAX_DEVICES];
    atomic_bool stop;
    sample samples[MAX_SAMPLES];
    size_t nsamples;
};

static uint64_t env_u64(const char *name, uint64_t dflt, uint64_t min, uint64_t max)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max)
        fail_msg("%s=%s: a number from %" PRIu64 " to %" PRIu64, name, v, min, max);
    return n;
}

static uint64_t rnd(device *d)
{
    /* xorshift64*: reproducible enough, and no shared state. */
    d->rng ^= d->rng >> 12;
    d->rng ^= d->rng << 25;
    d->rng ^= d->rng >> 27;
    return d->rng * 0x2545F4914F6CDD1DULL;
}

static long status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    long kb = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), fp))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':' &&
            sscanf(line + klen + 1, " %ld kB", &kb) == 1)
            break;
    fclose(fp);
    return kb;
}

/* ---- a device --------------------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static void dev_fail(device *d, const char *fmt, ...)
{
    if (d->error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof(d->error), fmt, ap);
    va_end(ap);
}

static ns_client *dev_open(device *d)
{
    char server[64], store[NST_PATH + 32];
    ns_client_options o;
    nst_client_options(d->s->e, d->dev.cert, d->dev.key, d->s->e->ca_cert, &o, server,
                       sizeof(server));
    snprintf(store, sizeof(store), "%s/store-%u.db", d->dir, d->store_gen);
    o.store_path = store;
    o.client_name = "soak";
    ns_client *c = NULL;
    ns_error err;
    if (ns_client_new(&o, NULL, &c, &err) != NS_OK) {
        dev_fail(d, "ns_client_new: %s", err.message);
        return NULL;
    }
    return c;
}

static bool dev_sync(device *d, ns_client *c)
{
    ns_sync_options so;
    memset(&so, 0, sizeof(so));
    const char *scope[1] = {d->plan};
    /* Mostly every plan of the organisation (what the others push); now
     * and then the device's own plan alone. */
    if (d->plan[0] != '\0' && rnd(d) % 4 == 0) {
        so.plan_ids = scope;
        so.nplans = 1;
    }
    ns_sync_status before;
    ns_error err;
    if (ns_client_status(c, &before, &err) != NS_OK) {
        dev_fail(d, "status: %s", err.message);
        return false;
    }
    ns_sync_stats st;
    if (ns_client_sync_wait(c, &so, &st, &err) != NS_OK) {
        dev_fail(d, "sync: %s", err.message);
        return false;
    }
    if (before.connection != NS_CONN_CONNECTED)
        atomic_fetch_add(&d->connects, 1);
    atomic_fetch_add(&d->syncs, 1);
    if (st.rejected > 0) {
        dev_fail(d, "sync: %" PRIu64 " changes refused", st.rejected);
        return false;
    }
    return true;
}

static bool dev_put(device *d, ns_client *c)
{
    char title[80];
    snprintf(title, sizeof(title), "title:text=Soak indicator %d-%" PRIu64, d->index,
             rnd(d) % 100000);
    ns_edit_result r;
    ns_error err;
    if (d->nids == 0 || (d->nids < MAX_OWN_IDS && rnd(d) % 2 == 0)) {
        char plan[60];
        snprintf(plan, sizeof(plan), "plan_id:ref=%s", d->plan);
        const char *a[3] = {plan, title, NST_INDICATOR_ASSIGN};
        if (ns_client_put(c, "indicator", NULL, a, 3, &r, &err) != NS_OK) {
            dev_fail(d, "put (create): %s", err.message);
            return false;
        }
        snprintf(d->ids[d->nids++], 40, "%s", r.record_id);
        atomic_fetch_add(&d->creates, 1);
    } else {
        const char *a[1] = {title};
        if (ns_client_put(c, "indicator", d->ids[rnd(d) % d->nids], a, 1, &r, &err) != NS_OK) {
            dev_fail(d, "put (update): %s", err.message);
            return false;
        }
    }
    atomic_fetch_add(&d->puts, 1);
    return true;
}

typedef struct {
    device *d;
    size_t bad;
} batch_check;

static int on_batch_result(size_t i, const ns_mutation_result *r, void *ud)
{
    (void)i;
    batch_check *b = ud;
    if (r->outcome != NS_OUTCOME_APPLIED)
        b->bad++;
    return 0;
}

/* BATCH_CREATE new indicators in one direct push (not through the store). */
static bool dev_batch(device *d, ns_client *c)
{
    ns_mutation m[BATCH_CREATE];
    ns_field_view fv[BATCH_CREATE][3];
    char ids[BATCH_CREATE][40], titles[BATCH_CREATE][48];
    size_t n = 0;
    for (; n < BATCH_CREATE && d->nids < MAX_OWN_IDS; n++) {
        uint64_t x = rnd(d);
        snprintf(ids[n], sizeof(ids[n]), "%08" PRIx32 "-%04x-4%03x-8%03x-%012" PRIx64, (uint32_t)x,
                 (unsigned)(x >> 32) & 0xffffu, (unsigned)(x >> 48) & 0xfffu,
                 (unsigned)d->index & 0xfffu, (uint64_t)(rnd(d) & 0xffffffffffffULL));
        snprintf(titles[n], sizeof(titles[n]), "Soak batch %d-%zu", d->index, n);
        fv[n][0] = (ns_field_view){"plan_id", "ref", d->plan};
        fv[n][1] = (ns_field_view){"title", "text", titles[n]};
        fv[n][2] = (ns_field_view){"value_type", "text", NST_INDICATOR_TYPE};
        m[n] = (ns_mutation){NULL, "indicator", ids[n], NS_MUTATION_CREATE, 0, fv[n], 3};
    }
    if (n == 0)
        return true;
    batch_check b = {d, 0};
    ns_error err;
    if (ns_client_push_batch_wait(c, NS_PUSH_APPLY, m, n, on_batch_result, &b, &err) != NS_OK) {
        dev_fail(d, "direct push: %s", err.message);
        return false;
    }
    if (b.bad > 0) {
        dev_fail(d, "direct push: %zu of %zu not applied", b.bad, n);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        memcpy(d->ids[d->nids++], ids[i], sizeof(ids[i]));
    atomic_fetch_add(&d->creates, n);
    atomic_fetch_add(&d->batches, 1);
    return true;
}

static int count_revision(const ns_revision_view *r, void *ud)
{
    (void)r;
    (*(size_t *)ud)++;
    return 0;
}

static bool dev_extras(device *d, ns_client *c)
{
    ns_error err;
    uint64_t pick = rnd(d) % 16;
    if (pick == 0 && d->nids > 0) {
        size_t n = 0;
        /* Every indicator it made is on the server by now (the last
         * sync pushed the outbox). */
        if (ns_client_history_wait(c, "indicator", d->ids[rnd(d) % d->nids], 0, 20, count_revision,
                                   &n, NULL, &err) != NS_OK ||
            n == 0) {
            dev_fail(d, "history: %s", n == 0 ? "no revision" : err.message);
            return false;
        }
        atomic_fetch_add(&d->histories, 1);
    } else if (pick == 1) {
        ns_report_request rq = {.kind = "coverage"};
        char *json = NULL;
        int rc = ns_client_report_wait(c, &rq, &json, &err);
        free(json);
        if (rc != NS_OK) {
            dev_fail(d, "report: %s", err.message);
            return false;
        }
        atomic_fetch_add(&d->reports, 1);
    } else if (pick == 2) {
        return dev_batch(d, c);
    }
    return true;
}

static void close_client(device *d, ns_client **c)
{
    if (*c == NULL)
        return;
    ns_client_disconnect_wait(*c);
    ns_client_free(*c);
    *c = NULL;
    atomic_fetch_add(&d->disconnects, 1);
}

/* Removes the store's files (SQLite's, and the store's lock file). */
static void drop_store(device *d)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", ".lock"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char path[NST_PATH + 64];
        snprintf(path, sizeof(path), "%s/store-%u.db%s", d->dir, d->store_gen, suffixes[i]);
        unlink(path);
    }
}

static void *device_main(void *arg)
{
    device *d = arg;
    ns_client *c = NULL;
    while (!atomic_load(&d->s->stop) && d->error[0] == '\0') {
        if (c == NULL && (c = dev_open(d)) == NULL)
            break;
        if (!dev_sync(d, c))
            break;
        unsigned edits = 1 + (unsigned)(rnd(d) % 12);
        for (unsigned i = 0; i < edits; i++)
            if (!dev_put(d, c))
                break;
        if (d->error[0] != '\0' || !dev_sync(d, c) || !dev_extras(d, c))
            break;
        uint64_t next = rnd(d) % 100;
        if (next < 50) {
            close_client(d, &c); /* disconnect; a new client next round */
        } else if (next < 53) {
            /* A new store: everything again from the server. Only with an
             * empty outbox (the last sync pushed it all). */
            close_client(d, &c);
            drop_store(d);
            d->store_gen++;
            atomic_fetch_add(&d->fresh, 1);
        }
    }
    close_client(d, &c);
    return NULL;
}

/* ---- the fixture and the run ------------------------------------------------------------- */

static int group_setup(void **state)
{
    soak *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    *state = s;
    s->seconds = env_u64("NS_SOAK_SECONDS", 40, 5, 7 * 24 * 3600);
    s->ndevices = (unsigned)env_u64("NS_SOAK_DEVICES", 4, 1, MAX_DEVICES);
    s->sample_ms = env_u64("NS_SOAK_SAMPLE_MS", 2000, 100, 600000);
    s->slack_kb = (long)env_u64("NS_SOAK_SLACK_MB", 64, 1, 65536) * 1024;
    s->out = getenv("NS_SOAK_OUT");
#ifdef __SANITIZE_ADDRESS__
    /* ASan keeps freed memory in a quarantine (256 MiB by default) before
     * reusing it: the daemon (which inherits this) would measure ASan. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=16", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
#endif
    s->e = nst_env_new("soak", NULL);
    if (s->e == NULL || nst_daemon_start(s->e, NULL) != 0)
        return -1;
    for (unsigned i = 0; i < s->ndevices; i++) {
        device *d = &s->dev[i];
        d->s = s;
        d->index = (int)i;
        d->rng = 0x9e3779b97f4a7c15ULL * (i + 1);
        d->ids = calloc(MAX_OWN_IDS, sizeof(*d->ids));
        char name[32], person[48];
        snprintf(name, sizeof(name), "soak-%02u", i);
        snprintf(person, sizeof(person), "Soak Officer %02u", i);
        if (d->ids == NULL || nst_path_join(d->dir, s->e->dir, name) != 0 ||
            mkdir(d->dir, 0700) != 0 || nst_device_issue(s->e, false, name, &d->dev) != 0 ||
            nst_device_register(s->e, "mogender", person, "coordinator", &d->dev) != 0)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    soak *s = *state;
    if (s == NULL)
        return 0;
    if (s->e != NULL)
        nst_test_end(s->e);
    int rc = nst_env_close(s->e);
    for (unsigned i = 0; i < s->ndevices; i++)
        free(s->dev[i].ids);
    free(s);
    return rc;
}

static uint64_t total(const soak *s, size_t offset)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < s->ndevices; i++)
        n += atomic_load((const atomic_uint_fast64_t *)((const char *)&s->dev[i] + offset));
    return n;
}

#define TOTAL(s, field) total((s), offsetof(device, field))

static void take_sample(soak *s, uint64_t t0)
{
    if (s->nsamples == MAX_SAMPLES)
        return;
    sample *x = &s->samples[s->nsamples];
    x->ms = nst_now_ms() - t0;
    x->rss_kb = status_kb(s->e->pid, "VmRSS");
    x->hwm_kb = status_kb(s->e->pid, "VmHWM");
    x->connects = TOTAL(s, connects);
    x->syncs = TOTAL(s, syncs);
    x->mutations = TOTAL(s, puts) + TOTAL(s, batches) * BATCH_CREATE;
    if (x->rss_kb < 0)
        nst_fail(s->e, "cannot read the daemon's VmRSS (pid %ld)", (long)s->e->pid);
    s->nsamples++;
}

/* Each device's plan, made and synced before the clock starts. */
static void make_plans(soak *s)
{
    for (unsigned i = 0; i < s->ndevices; i++) {
        device *d = &s->dev[i];
        ns_client *c = dev_open(d);
        if (c == NULL)
            nst_fail(s->e, "device %u: %s", i, d->error);
        char title[64];
        snprintf(title, sizeof(title), "title:text=Soak plan %02u", i);
        const char *a[] = {title, "status:text=adopted", NST_PLAN_ASSIGN};
        ns_edit_result r;
        ns_error err;
        if (ns_client_put(c, "plan", NULL, a, sizeof(a) / sizeof(a[0]), &r, &err) != NS_OK)
            nst_fail(s->e, "device %u: plan: %s", i, err.message);
        snprintf(d->plan, sizeof(d->plan), "%s", r.record_id);
        if (!dev_sync(d, c))
            nst_fail(s->e, "device %u: %s", i, d->error);
        close_client(d, &c);
    }
}

typedef struct {
    size_t pending;
} outbox_count;

static int on_outbox(const ns_outbox_view *v, void *ud)
{
    (void)v;
    ((outbox_count *)ud)->pending++;
    return 0;
}

/* Every device syncs once more with the outbox empty after it; the server
 * holds exactly the indicators the devices made. */
static void final_check(soak *s)
{
    uint64_t made = 0;
    for (unsigned i = 0; i < s->ndevices; i++) {
        device *d = &s->dev[i];
        ns_client *c = dev_open(d);
        if (c == NULL || !dev_sync(d, c))
            nst_fail(s->e, "device %u, last sync: %s", i, d->error);
        outbox_count oc = {0};
        ns_error err;
        if (ns_client_outbox(c, on_outbox, &oc, &err) != NS_OK || oc.pending != 0)
            nst_fail(s->e, "device %u: %zu changes left in the outbox", i, oc.pending);
        close_client(d, &c);
        made += atomic_load(&d->creates);
    }
    char n[32];
    if (nst_db_exec(s->e, "SELECT count(*) FROM indicators WHERE NOT deleted", 0, NULL, n,
                    sizeof(n)) != 0)
        nst_fail(s->e, "counting indicators");
    if (strtoull(n, NULL, 10) != made)
        nst_fail(s->e, "the devices made %" PRIu64 " indicators; the server holds %s", made, n);
}

static void write_samples(const soak *s)
{
    if (s->out == NULL || *s->out == '\0')
        return;
    FILE *fp = fopen(s->out, "w");
    if (fp == NULL)
        nst_fail(s->e, "cannot write %s", s->out);
    fprintf(fp, "seconds\trss_kib\thwm_kib\tconnects\tsyncs\tmutations\n");
    for (size_t i = 0; i < s->nsamples; i++)
        fprintf(fp, "%.1f\t%ld\t%ld\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n",
                s->samples[i].ms / 1000.0, s->samples[i].rss_kb, s->samples[i].hwm_kb,
                s->samples[i].connects, s->samples[i].syncs, s->samples[i].mutations);
    if (fclose(fp) != 0)
        nst_fail(s->e, "cannot write %s", s->out);
}

static void test_soak(void **state)
{
    soak *s = *state;
    nst_test_begin(s->e);
    make_plans(s);
    pthread_t th[MAX_DEVICES];
    uint64_t t0 = nst_now_ms();
    take_sample(s, t0);
    for (unsigned i = 0; i < s->ndevices; i++)
        assert_int_equal(pthread_create(&th[i], NULL, device_main, &s->dev[i]), 0);
    uint64_t end = t0 + s->seconds * 1000;
    bool failed = false;
    while (nst_now_ms() < end && !failed) {
        uint64_t next = nst_now_ms() + s->sample_ms;
        while (nst_now_ms() < next && nst_now_ms() < end && !failed) {
            nst_sleep_ms(50);
            for (unsigned i = 0; i < s->ndevices; i++)
                failed |= s->dev[i].error[0] != '\0';
        }
        if (!nst_daemon_running(s->e))
            nst_fail(s->e, "napsyncd exited (status %d)", s->e->exit_status);
        take_sample(s, t0);
    }
    atomic_store(&s->stop, true);
    for (unsigned i = 0; i < s->ndevices; i++)
        pthread_join(th[i], NULL);
    take_sample(s, t0);
    write_samples(s);
    for (unsigned i = 0; i < s->ndevices; i++)
        if (s->dev[i].error[0] != '\0')
            nst_fail(s->e, "device %u: %s", i, s->dev[i].error);
    final_check(s);

    /* The baseline: the first sample after a tenth of the run (at least
     * one sample in: the daemon's pools and caches warm up first). */
    size_t warm = s->nsamples / 10 > 0 ? s->nsamples / 10 : 1;
    if (warm >= s->nsamples)
        warm = s->nsamples - 1;
    long base = s->samples[warm].rss_kb, max = base, min = base;
    for (size_t i = warm; i < s->nsamples; i++) {
        max = s->samples[i].rss_kb > max ? s->samples[i].rss_kb : max;
        min = s->samples[i].rss_kb < min ? s->samples[i].rss_kb : min;
    }
    const sample *first = &s->samples[0], *mid = &s->samples[s->nsamples / 2],
                 *last = &s->samples[s->nsamples - 1];
    print_message("soak: %u devices, %.0f s, %zu samples; connections %" PRIu64
                  " (disconnects %" PRIu64 "), syncs %" PRIu64 ", local edits %" PRIu64
                  ", direct pushes %" PRIu64 ", indicators made %" PRIu64 ", histories %" PRIu64
                  ", reports %" PRIu64 ", fresh stores %" PRIu64 "\n",
                  s->ndevices, last->ms / 1000.0, s->nsamples, TOTAL(s, connects),
                  TOTAL(s, disconnects), TOTAL(s, syncs), TOTAL(s, puts), TOTAL(s, batches),
                  TOTAL(s, creates), TOTAL(s, histories), TOTAL(s, reports), TOTAL(s, fresh));
    print_message("soak: daemon VmRSS KiB: start %ld, warm %ld (%.0f s), middle %ld (%.0f s), end "
                  "%ld (%.0f s); after warm-up min %ld max %ld\n",
                  first->rss_kb, base, s->samples[warm].ms / 1000.0, mid->rss_kb, mid->ms / 1000.0,
                  last->rss_kb, last->ms / 1000.0, min, max);
    if (max - base > s->slack_kb)
        nst_fail(s->e,
                 "the daemon's RSS grew from %ld KiB to %ld KiB after the warm-up (allowed: "
                 "%ld KiB more)",
                 base, max, s->slack_kb);
    nst_test_passed(s->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_soak)};
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
