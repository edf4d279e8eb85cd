/* napsync-loadgen: the benchmark suite's load generator (tests/bench/run.sh
 * drives it; docs/benchmarks.md has its figures).
 *
 * Every client is an ns_client on ONE libuv loop, this process's only
 * thread: the load is many devices' sessions multiplexed the way a real
 * server sees them, not one thread per client. fanout alone spreads its
 * subscribers over a few processes (--procs), a loop each, so that their
 * own work on each page does not delay the others'. It speaks only the
 * public libnapsync API (napsync.h).
 *
 *   napsync-loadgen push    -- N devices each create a plan as their
 *                              organisation's coordinator, then push
 *                              batches of B indicator creates (mode APPLY),
 *                              one push in flight per device: mutations/s
 *                              and per-push ack latency (monotonic clock)
 *   napsync-loadgen seed    -- one device creates a plan and pushes K
 *                              changes into it: the backlog for catchup
 *   napsync-loadgen catchup -- a fresh device pulls that plan, either
 *                              streamed (ns_client_pull_plan, nothing kept)
 *                              or by a real sync into a new store (SQLite):
 *                              records/s, bytes read per record, peak RSS
 *                              of this process and of the server
 *   napsync-loadgen fanout  -- N devices watch one plan (ns_client_sync,
 *                              watch, a store each) while one writer adds
 *                              an indicator at a time: from the writer's
 *                              ack to each subscriber's delivery
 *   napsync-loadgen conns   -- N idle authenticated sessions: sessions/s of
 *                              full TLS handshakes, then of resumed ones
 *                              (the same clients reconnecting), and the
 *                              server's RSS per idle session
 *   napsync-loadgen storm-prepare -- N device stores sync once, then each
 *                              queues K local changes (a plan and K - 1
 *                              indicators in it) in its outbox, offline
 *   napsync-loadgen storm   -- those N devices sync at once (after the
 *                              daemon has restarted): time until every
 *                              outbox is drained, and the round trips of
 *                              one well-behaved client pinging meanwhile
 *   napsync-loadgen peer-prepare -- the records of a data set (tests/bench/
 *                              peer.js gen) saved in a new store, queued
 *   napsync-loadgen peer-push -- that store syncs its plan: time until the
 *                              server has answered every queued change
 *   napsync-loadgen peer-live -- one device watches the plan of a data set
 *                              while a writer pushes its reports one at a
 *                              time: from each push to the watcher's store
 *                              (figure 6 compares these and catchup --store
 *                              with PouchDB doing the same)
 *
 * Devices are certificates DIR/PREFIXnnnn.crt and .key (deploy/ca.sh device
 * DIR PREFIXnnnn), registered beforehand (napsync_register_device); with
 * --devices D, client i uses device PREFIX(first + i mod D), so that more
 * sessions than certificates can be opened (the server's
 * max_sessions_per_device permitting). Results
 * go to stdout as one logfmt line (key=value ...), progress and errors to
 * stderr. The exit status is 0 only when all the work was done and
 * checked: every mutation answered APPLIED at version 1, every record
 * received; it asserts nothing about speed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "napsync.h"

#define LG_PATH        512
#define LG_UUID        37
#define LG_MAX_CLIENTS 20000
/* Seeding keeps a few pushes in flight so that the engine's group commit
 * has work queued; the per-session order of answers is kept by the server. */
#define LG_SEED_INFLIGHT 4
#define LG_SEED_BATCH    1000
/* Fields of one indicator create (plan_id, title, value_type). */
#define LG_IND_FIELDS 3
/* storm: the well-behaved client's request timeout. */
#define LG_PINGER_TIMEOUT_MS 120000
#define LG_PLAN_FIELDS       5

typedef enum {
    LG_PUSH,
    LG_SEED,
    LG_CATCHUP,
    LG_FANOUT,
    LG_CONNS,
    LG_STORM_PREP,
    LG_STORM,
    LG_PEER_PREP,
    LG_PEER_PUSH,
    LG_PEER_LIVE,
} lg_mode;

typedef struct {
    lg_mode mode;
    const char *server;
    const char *ca;
    const char *certs;
    const char *prefix;
    const char *device; /* seed, catchup: the device's name */
    unsigned clients;
    unsigned first; /* index of the first device (PREFIX%04u) */
    unsigned batch;
    double duration_s;
    double warmup_s;
    uint64_t pushes; /* per client; 0: timed by duration_s */
    uint64_t changes;
    const char *status; /* of the plans created */
    const char *plan;
    uint64_t expect;
    bool sync;         /* catchup into a store instead of a stream */
    const char *store; /* catchup --sync: a path that must not exist yet */
    long server_pid;   /* for CPU and peak RSS of napsyncd; 0: none */
    uint32_t timeout_ms;
    unsigned devices;   /* distinct certificates the clients cycle through; 0: clients */
    const char *writer; /* fanout: the writing device */
    const char *pinger; /* storm: the well-behaved device */
    const char *stores; /* fanout, storm: directory of the device stores */
    unsigned writes;    /* fanout: measured writes (one more warms up) */
    unsigned gap_ms;    /* fanout: pause after every subscriber has a write */
    unsigned procs;     /* fanout: subscriber processes; 0: the online CPUs */
    unsigned window;    /* connects (or first syncs) in flight at once */
    unsigned ping_ms;   /* storm: the pinger's interval */
    double hold_s;      /* conns: idle time before the server's RSS is read */
    const char *data;   /* peer modes: the records (peer.js gen's NAME.tsv) */
} lg_opts;

/* ---- small helpers -------------------------------------------------------------------------- */

/* "napsync-loadgen: [WHAT: ]MESSAGE" on stderr (lg_die, and the *_fail
 * functions of the modes before they stop their run). */
static void lg_vsay(const char *what, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void lg_vsay(const char *what, const char *fmt, va_list ap)
{
    fputs("napsync-loadgen: ", stderr);
    if (what != NULL)
        fprintf(stderr, "%s: ", what);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void lg_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void lg_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_vsay(NULL, fmt, ap);
    va_end(ap);
    exit(2);
}

/* Closes a mode's loop once it has run dry; a handle still open there is a
 * bug of the mode, said but not fatal (the results are in already). */
static void lg_loop_close(uv_loop_t *loop)
{
    if (uv_loop_close(loop) != 0)
        fprintf(stderr, "napsync-loadgen: the loop still had handles at the end\n");
}

/* CLOCK_MONOTONIC: one clock for every process of the machine (fanout's
 * subscriber processes time deliveries that the parent's writer acked). */
static uint64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xoshiro256** seeded from the kernel: record ids need to be unique, not
 * secret, and getrandom per id would cost a system call each. */
static uint64_t lg_rng[4];

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t lg_rand(void)
{
    uint64_t r = rotl(lg_rng[1] * 5, 7) * 9, t = lg_rng[1] << 17;
    lg_rng[2] ^= lg_rng[0];
    lg_rng[3] ^= lg_rng[1];
    lg_rng[1] ^= lg_rng[2];
    lg_rng[0] ^= lg_rng[3];
    lg_rng[2] ^= t;
    lg_rng[3] = rotl(lg_rng[3], 45);
    return r;
}

static void lg_rand_init(void)
{
    if (getrandom(lg_rng, sizeof(lg_rng), 0) != (ssize_t)sizeof(lg_rng))
        lg_die("getrandom: %s", strerror(errno));
    if ((lg_rng[0] | lg_rng[1] | lg_rng[2] | lg_rng[3]) == 0)
        lg_rng[0] = 1;
}

/* A random (version 4) UUID, lowercase. */
static void lg_uuid(char out[LG_UUID])
{
    uint64_t hi = lg_rand(), lo = lg_rand();
    hi = (hi & ~UINT64_C(0xf000)) | UINT64_C(0x4000);
    lo = (lo & ~(UINT64_C(3) << 62)) | (UINT64_C(2) << 62);
    snprintf(out, LG_UUID, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64,
             hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48, lo & UINT64_C(0xffffffffffff));
}

static bool lg_is_uuid(const char *s)
{
    static const char pat[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (s == NULL || strlen(s) != sizeof(pat) - 1)
        return false;
    for (size_t i = 0; pat[i]; i++) {
        bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
        if (pat[i] == '-' ? s[i] != '-' : !hex)
            return false;
    }
    return true;
}

/* A "Key:   value kB" line of /proc/PID/status, in kB; -1 when unreadable. */
static long lg_proc_status_kb(long pid, const char *key)
{
    char path[64], line[256];
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    else
        snprintf(path, sizeof(path), "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kb = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Resets the peak RSS (VmHWM) of pid to its current RSS (Linux 4.0+,
 * clear_refs "5"), so that a peak is the peak of what follows. */
static bool lg_reset_hwm(long pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/clear_refs", pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok;
}

/* Bytes this process has read through read(2)-like calls (/proc/self/io
 * rchar): with no file read meanwhile, what arrived on its sockets. */
static int64_t lg_rchar(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (f == NULL)
        return -1;
    char line[128];
    int64_t v = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "rchar:", 6) == 0) {
            v = strtoll(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* CPU seconds (user + system) of pid from /proc/PID/stat; -1 on failure. */
static double lg_proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: fields are counted after its ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? (double)(ut + st) / (double)hz : -1;
}

static double lg_self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Busy and total jiffies of the whole machine (/proc/stat "cpu" line). */
typedef struct {
    unsigned long long busy, total;
} lg_cpu_snap;

static lg_cpu_snap lg_machine_cpu(void)
{
    lg_cpu_snap s = {0, 0};
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return s;
    unsigned long long v[8] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            s.total += v[i];
        s.busy = s.total - v[3] - v[4]; /* minus idle and iowait */
    }
    fclose(f);
    return s;
}

/* ---- latencies ------------------------------------------------------------------------------ */

typedef struct {
    uint32_t *us;
    size_t n, cap;
} lg_lat;

static void lg_lat_add(lg_lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        uint32_t *p = realloc(l->us, cap * sizeof(*p));
        if (p == NULL)
            lg_die("out of memory for latencies");
        l->us = p;
        l->cap = cap;
    }
    uint64_t us = ns / 1000u;
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int lg_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile in milliseconds; the array must be sorted. */
static double lg_pct_ms(const lg_lat *l, double q)
{
    if (l->n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)l->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > l->n)
        rank = l->n;
    return l->us[rank - 1] / 1000.0;
}

/* ---- clients -------------------------------------------------------------------------------- */

typedef struct lg_run lg_run;

typedef struct {
    lg_run *run;
    ns_client *c;
    unsigned idx;
    char name[72];
    char plan_id[LG_UUID];
    uint64_t sent_ns;
    uint64_t pushes_done;
    unsigned inflight;
    bool ready; /* its plan exists */
} lg_client;

typedef enum {
    PH_SETUP,   /* connecting, creating plans */
    PH_WARMUP,  /* pushing, not counted */
    PH_MEASURE, /* pushing, counted */
    PH_DRAIN,   /* no new pushes: waiting for the answers in flight */
    PH_DONE,
} lg_phase;

struct lg_run {
    uv_loop_t *loop;
    const lg_opts *o;
    lg_client *cl;
    unsigned n;
    unsigned ready;
    lg_phase phase;
    uv_timer_t timer;
    bool timer_open;
    uint64_t t_start, t_end;
    uint64_t applied_total; /* indicator creates answered APPLIED, every phase */
    uint64_t sent_total;    /* indicator creates sent (seed: to send) */
    uint64_t window_mutations, window_pushes;
    lg_lat lat;
    double self_cpu0, server_cpu0;
    lg_cpu_snap mach0;
    double self_cpu, server_cpu, machine_busy_pct;
    unsigned open_clients;
    bool failed;
};

/* Scratch for building one batch: ns_client_push_batch copies what it is
 * given, so one set of buffers serves every client in turn. */
static ns_mutation *lg_muts;
static ns_field_view *lg_fields;
static char (*lg_ids)[LG_UUID];
static char (*lg_titles)[48];
static uint64_t lg_title_seq;

static void lg_scratch_init(unsigned batch)
{
    lg_muts = calloc(batch, sizeof(*lg_muts));
    lg_fields = calloc((size_t)batch * LG_IND_FIELDS, sizeof(*lg_fields));
    lg_ids = calloc(batch, sizeof(*lg_ids));
    lg_titles = calloc(batch, sizeof(*lg_titles));
    if (!lg_muts || !lg_fields || !lg_ids || !lg_titles)
        lg_die("out of memory");
}

static void lg_scratch_free(void)
{
    free(lg_muts);
    free(lg_fields);
    free(lg_ids);
    free(lg_titles);
}

static void lg_fail(lg_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lg_stop_all(lg_run *r);

static void lg_fail(lg_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_vsay(NULL, fmt, ap);
    va_end(ap);
    if (!r->failed) {
        r->failed = true;
        lg_stop_all(r);
    }
}

static void lg_client_paths(const lg_opts *o, const char *name, char *cert, char *key)
{
    if (snprintf(cert, LG_PATH, "%s/%s.crt", o->certs, name) >= LG_PATH ||
        snprintf(key, LG_PATH, "%s/%s.key", o->certs, name) >= LG_PATH)
        lg_die("certificate path too long for device %s", name);
}

static ns_client *lg_client_new(const lg_opts *o, uv_loop_t *loop, const char *name,
                                const char *store)
{
    char cert[LG_PATH], key[LG_PATH];
    lg_client_paths(o, name, cert, key);
    ns_client_options opt = {
        .server = o->server,
        .ca_file = o->ca,
        .cert_file = cert,
        .key_file = key,
        .timeout_ms = o->timeout_ms,
        .client_name = "napsync-loadgen",
        .store_path = store,
    };
    ns_client *c;
    ns_error err;
    if (ns_client_new(&opt, loop, &c, &err) != NS_OK)
        lg_die("device %s: %s: %s", name, ns_status_name(err.status), err.message);
    return c;
}

/* Closes a mode's timer once; its memory is the mode's, so no close
 * callback is needed (the loop runs dry before the mode is freed). */
static void lg_timer_close(uv_timer_t *t, bool *open)
{
    if (*open) {
        *open = false;
        uv_close((uv_handle_t *)t, NULL);
    }
}

static void lg_on_closed(ns_client *c, void *ud)
{
    (void)ud;
    ns_client_free(c);
}

/* Ends every client's session (Goodbye) and the timer; the loop then runs
 * dry. Safe to call more than once. */
static void lg_stop_all(lg_run *r)
{
    if (r->phase == PH_DONE)
        return;
    r->phase = PH_DONE;
    lg_timer_close(&r->timer, &r->timer_open);
    for (unsigned i = 0; i < r->n; i++) {
        lg_client *k = &r->cl[i];
        if (k->c == NULL)
            continue;
        ns_client *c = k->c;
        k->c = NULL;
        /* Not connected (a failed connect): nothing to say goodbye to. */
        if (ns_client_disconnect(c, lg_on_closed, NULL) != NS_OK)
            ns_client_free(c);
    }
}

/* Fills the scratch with n indicator creates for plan, and returns it. */
static const ns_mutation *lg_make_indicators(const char *plan, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lg_uuid(lg_ids[i]);
        snprintf(lg_titles[i], sizeof(lg_titles[i]), "load indicator %" PRIu64, ++lg_title_seq);
        ns_field_view *f = &lg_fields[i * LG_IND_FIELDS];
        f[0] = (ns_field_view){.name = "plan_id", .kind = "ref", .value = plan};
        f[1] = (ns_field_view){.name = "title", .kind = "text", .value = lg_titles[i]};
        f[2] = (ns_field_view){.name = "value_type", .kind = "text", .value = "number"};
        lg_muts[i] = (ns_mutation){
            .mutation_id = NULL, /* a fresh one, chosen by the library */
            .entity_type = "indicator",
            .record_id = lg_ids[i],
            .op = NS_MUTATION_CREATE,
            .fields = f,
            .nfields = LG_IND_FIELDS,
        };
    }
    return lg_muts;
}

/* Checks that every answer of a batch of creates is APPLIED at version 1.
 * Returns the index of the first that is not, or n. */
static size_t lg_first_bad(const ns_mutation_result *rs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rs[i].outcome != NS_OUTCOME_APPLIED || rs[i].version != 1)
            return i;
    return n;
}

static void lg_report_bad(lg_run *r, const lg_client *k, const ns_mutation_result *m)
{
    lg_fail(r, "device %s: mutation %s answered outcome %d version %" PRIu64 " (%s: %s)", k->name,
            m->mutation_id, (int)m->outcome, m->version, m->reject_code, m->reject_reason);
}

/* ---- push mode ------------------------------------------------------------------------------ */

static void lg_push_next(lg_client *k);

static bool lg_all_idle(const lg_run *r)
{
    for (unsigned i = 0; i < r->n; i++)
        if (r->cl[i].inflight)
            return false;
    return true;
}

/* The measured window ends: its time and the CPU used in it (not in the
 * drain that follows, which with deep queues lasts as long as a push). */
static void lg_window_close(lg_run *r, uint64_t now)
{
    r->t_end = now;
    r->self_cpu = lg_self_cpu_s() - r->self_cpu0;
    if (r->o->server_pid > 0)
        r->server_cpu = lg_proc_cpu_s(r->o->server_pid) - r->server_cpu0;
    lg_cpu_snap m = lg_machine_cpu();
    if (m.total > r->mach0.total)
        r->machine_busy_pct =
            100.0 * (double)(m.busy - r->mach0.busy) / (double)(m.total - r->mach0.total);
}

static void lg_window_open(lg_run *r)
{
    r->phase = PH_MEASURE;
    r->t_start = lg_now_ns();
    r->window_mutations = r->window_pushes = 0;
    r->lat.n = 0;
    r->self_cpu0 = lg_self_cpu_s();
    if (r->o->server_pid > 0)
        r->server_cpu0 = lg_proc_cpu_s(r->o->server_pid);
    r->mach0 = lg_machine_cpu();
}

static void lg_on_push(ns_client *c, const ns_error *err, const ns_mutation_result *rs, size_t n,
                       void *ud)
{
    (void)c;
    lg_client *k = ud;
    lg_run *r = k->run;
    uint64_t now = lg_now_ns();
    k->inflight--;
    if (r->phase == PH_DONE)
        return;
    if (err) {
        lg_fail(r, "device %s: push: %s: %s", k->name, ns_status_name(err->status), err->message);
        return;
    }
    size_t bad = lg_first_bad(rs, n);
    if (bad < n) {
        lg_report_bad(r, k, &rs[bad]);
        return;
    }
    r->applied_total += n;
    k->pushes_done++;
    if (r->phase == PH_MEASURE) {
        r->window_mutations += n;
        r->window_pushes++;
        lg_lat_add(&r->lat, now - k->sent_ns);
    }
    if (r->o->pushes > 0 && k->pushes_done >= r->o->pushes) {
        /* Fixed work: the window ends with the last answer. */
        if (lg_all_idle(r) && r->applied_total == r->sent_total) {
            lg_window_close(r, now);
            lg_stop_all(r);
        }
        return;
    }
    if (r->phase == PH_DRAIN) {
        if (lg_all_idle(r))
            lg_stop_all(r);
        return;
    }
    lg_push_next(k);
}

static void lg_push_next(lg_client *k)
{
    lg_run *r = k->run;
    const ns_mutation *m = lg_make_indicators(k->plan_id, r->o->batch);
    ns_error err;
    k->sent_ns = lg_now_ns();
    if (ns_client_push_batch(k->c, NS_PUSH_APPLY, m, r->o->batch, lg_on_push, k, &err) != NS_OK) {
        lg_fail(r, "device %s: push: %s: %s", k->name, ns_status_name(err.status), err.message);
        return;
    }
    k->inflight++;
    r->sent_total += r->o->batch;
}

static void lg_on_timer(uv_timer_t *t)
{
    lg_run *r = t->data;
    if (r->phase == PH_WARMUP) {
        lg_window_open(r);
        uv_timer_start(&r->timer, lg_on_timer, (uint64_t)(r->o->duration_s * 1000.0), 0);
    } else if (r->phase == PH_MEASURE) {
        lg_window_close(r, lg_now_ns());
        r->phase = PH_DRAIN;
        if (lg_all_idle(r))
            lg_stop_all(r);
    }
}

/* Every client has its plan: the load starts, for all at once. */
static void lg_start_load(lg_run *r)
{
    fprintf(stderr, "napsync-loadgen: %u clients connected with their plans; pushing\n", r->n);
    if (r->o->pushes > 0) {
        lg_window_open(r);
    } else {
        r->phase = PH_WARMUP;
        if (uv_timer_init(r->loop, &r->timer) != 0)
            lg_die("uv_timer_init failed");
        r->timer.data = r;
        r->timer_open = true;
        uint64_t warm = (uint64_t)(r->o->warmup_s * 1000.0);
        uv_timer_start(&r->timer, lg_on_timer, warm, 0);
    }
    for (unsigned i = 0; i < r->n && r->phase != PH_DONE; i++)
        lg_push_next(&r->cl[i]);
}

static void lg_on_plan(ns_client *c, const ns_error *err, const ns_mutation_result *rs, size_t n,
                       void *ud)
{
    (void)c;
    lg_client *k = ud;
    lg_run *r = k->run;
    k->inflight--;
    if (r->phase == PH_DONE)
        return;
    if (err) {
        lg_fail(r, "device %s: creating its plan: %s: %s", k->name, ns_status_name(err->status),
                err->message);
        return;
    }
    if (n != 1 || lg_first_bad(rs, n) != n) {
        lg_report_bad(r, k, &rs[0]);
        return;
    }
    k->ready = true;
    if (++r->ready == r->n)
        lg_start_load(r);
}

/* A plan the domain model accepts (sql/003): its owner is the pusher's
 * organisation, set by the engine. Fills a fresh id into plan_id; f and
 * title are the mutation's storage. */
static ns_mutation lg_make_plan(const char *device, const char *status, char plan_id[LG_UUID],
                                ns_field_view f[LG_PLAN_FIELDS], char title[96])
{
    static const char *period_start = "2024-01-01", *period_end = "2028-12-31";
    snprintf(title, 96, "Load test plan of %s", device);
    lg_uuid(plan_id);
    f[0] = (ns_field_view){.name = "title", .kind = "text", .value = title};
    f[1] = (ns_field_view){.name = "kind", .kind = "text", .value = "nap"};
    f[2] = (ns_field_view){.name = "status", .kind = "text", .value = status};
    f[3] = (ns_field_view){.name = "period_start", .kind = "date", .value = period_start};
    f[4] = (ns_field_view){.name = "period_end", .kind = "date", .value = period_end};
    return (ns_mutation){
        .entity_type = "plan",
        .record_id = plan_id,
        .op = NS_MUTATION_CREATE,
        .fields = f,
        .nfields = LG_PLAN_FIELDS,
    };
}

static void lg_push_plan(lg_client *k, const char *status, ns_push_batch_cb cb)
{
    char title[96];
    ns_field_view f[LG_PLAN_FIELDS];
    ns_mutation m = lg_make_plan(k->name, status, k->plan_id, f, title);
    ns_error err;
    if (ns_client_push_batch(k->c, NS_PUSH_APPLY, &m, 1, cb, k, &err) != NS_OK) {
        lg_fail(k->run, "device %s: creating its plan: %s", k->name, err.message);
        return;
    }
    k->inflight++;
}

static void lg_on_connect(ns_client *c, const ns_error *err, void *ud)
{
    (void)c;
    lg_client *k = ud;
    lg_run *r = k->run;
    if (r->phase == PH_DONE)
        return;
    if (err) {
        lg_fail(r, "device %s: connect: %s: %s", k->name, ns_status_name(err->status),
                err->message);
        return;
    }
    lg_push_plan(k, r->o->status, lg_on_plan);
}

static void lg_print_push(const lg_run *r, double setup_s)
{
    double secs = (double)(r->t_end - r->t_start) / 1e9;
    double mps = secs > 0 ? (double)r->window_mutations / secs : 0;
    printf("mode=push clients=%u batch=%u seconds=%.3f mutations=%" PRIu64 " pushes=%" PRIu64
           " mutations_per_s=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f"
           " applied_total=%" PRIu64 " plans=%u setup_s=%.2f loadgen_cpu_s=%.2f"
           " server_cpu_s=%.2f machine_busy_pct=%.1f\n",
           r->n, r->o->batch, secs, r->window_mutations, r->window_pushes, mps,
           lg_pct_ms(&r->lat, 0.50), lg_pct_ms(&r->lat, 0.90), lg_pct_ms(&r->lat, 0.99),
           lg_pct_ms(&r->lat, 1.0), r->applied_total, r->ready, setup_s, r->self_cpu,
           r->o->server_pid > 0 ? r->server_cpu : -1.0, r->machine_busy_pct);
}

static int lg_cmd_push(const lg_opts *o)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    lg_run r = {.loop = &loop, .o = o, .n = o->clients, .phase = PH_SETUP};
    r.cl = calloc(o->clients, sizeof(*r.cl));
    if (r.cl == NULL)
        lg_die("out of memory");
    lg_scratch_init(o->batch);
    uint64_t t0 = lg_now_ns();
    for (unsigned i = 0; i < o->clients; i++) {
        lg_client *k = &r.cl[i];
        k->run = &r;
        k->idx = o->first + i;
        snprintf(k->name, sizeof(k->name), "%s%04u", o->prefix, k->idx);
        k->c = lg_client_new(o, &loop, k->name, NULL);
    }
    for (unsigned i = 0; i < o->clients && r.phase != PH_DONE; i++) {
        ns_error err;
        lg_client *k = &r.cl[i];
        if (ns_client_connect(k->c, lg_on_connect, k, &err) != NS_OK)
            lg_fail(&r, "device %s: connect: %s", k->name, err.message);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    double setup_s = r.t_start > t0 ? (double)(r.t_start - t0) / 1e9 : 0;
    int rc = 1;
    if (!r.failed && r.applied_total != r.sent_total)
        fprintf(stderr, "napsync-loadgen: %" PRIu64 " mutations sent, %" PRIu64 " applied\n",
                r.sent_total, r.applied_total);
    else if (!r.failed && r.window_pushes == 0)
        fprintf(stderr, "napsync-loadgen: no push completed inside the measured window\n");
    else if (!r.failed) {
        qsort(r.lat.us, r.lat.n, sizeof(*r.lat.us), lg_cmp_u32);
        lg_print_push(&r, setup_s);
        rc = 0;
    }
    lg_loop_close(&loop);
    free(r.lat.us);
    free(r.cl);
    lg_scratch_free();
    return rc;
}

/* ---- seed mode ------------------------------------------------------------------------------ */

static void lg_seed_more(lg_client *k);

static void lg_on_seed(ns_client *c, const ns_error *err, const ns_mutation_result *rs, size_t n,
                       void *ud)
{
    (void)c;
    lg_client *k = ud;
    lg_run *r = k->run;
    k->inflight--;
    if (r->phase == PH_DONE)
        return;
    if (err) {
        lg_fail(r, "seed: push: %s: %s", ns_status_name(err->status), err->message);
        return;
    }
    size_t bad = lg_first_bad(rs, n);
    if (bad < n) {
        lg_report_bad(r, k, &rs[bad]);
        return;
    }
    r->applied_total += n;
    if (r->applied_total == r->o->changes) {
        r->t_end = lg_now_ns();
        lg_stop_all(r);
        return;
    }
    lg_seed_more(k);
}

static void lg_seed_more(lg_client *k)
{
    lg_run *r = k->run;
    while (k->inflight < LG_SEED_INFLIGHT && r->sent_total < r->o->changes) {
        uint64_t left = r->o->changes - r->sent_total;
        size_t n = left < r->o->batch ? (size_t)left : r->o->batch;
        const ns_mutation *m = lg_make_indicators(k->plan_id, n);
        ns_error err;
        if (ns_client_push_batch(k->c, NS_PUSH_APPLY, m, n, lg_on_seed, k, &err) != NS_OK) {
            lg_fail(r, "seed: push: %s", err.message);
            return;
        }
        k->inflight++;
        r->sent_total += n;
    }
}

static void lg_on_seed_plan(ns_client *c, const ns_error *err, const ns_mutation_result *rs,
                            size_t n, void *ud)
{
    (void)c;
    lg_client *k = ud;
    lg_run *r = k->run;
    k->inflight--;
    if (r->phase == PH_DONE)
        return;
    if (err || n != 1 || lg_first_bad(rs, n) != n) {
        if (err)
            lg_fail(r, "seed: creating the plan: %s", err->message);
        else
            lg_report_bad(r, k, &rs[0]);
        return;
    }
    r->phase = PH_MEASURE;
    r->t_start = lg_now_ns();
    if (r->o->changes == 0) {
        r->t_end = r->t_start;
        lg_stop_all(r);
        return;
    }
    lg_seed_more(k);
}

static void lg_on_seed_connect(ns_client *c, const ns_error *err, void *ud)
{
    (void)c;
    lg_client *k = ud;
    if (err) {
        lg_fail(k->run, "seed: connect: %s: %s", ns_status_name(err->status), err->message);
        return;
    }
    lg_push_plan(k, k->run->o->status, lg_on_seed_plan);
}

static int lg_cmd_seed(const lg_opts *o)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    lg_client k = {.idx = 0};
    lg_run r = {.loop = &loop, .o = o, .n = 1, .cl = &k, .phase = PH_SETUP};
    k.run = &r;
    snprintf(k.name, sizeof(k.name), "%s", o->device);
    lg_scratch_init(o->batch);
    k.c = lg_client_new(o, &loop, k.name, NULL);
    ns_error err;
    if (ns_client_connect(k.c, lg_on_seed_connect, &k, &err) != NS_OK)
        lg_fail(&r, "seed: connect: %s", err.message);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = 1;
    if (!r.failed && r.applied_total == o->changes) {
        double secs = (double)(r.t_end - r.t_start) / 1e9;
        printf("mode=seed plan=%s changes=%" PRIu64 " records=%" PRIu64
               " seconds=%.3f mutations_per_s=%.1f\n",
               k.plan_id, r.applied_total, r.applied_total + 1, secs,
               secs > 0 ? (double)r.applied_total / secs : 0);
        rc = 0;
    } else if (!r.failed) {
        fprintf(stderr, "napsync-loadgen: seed: %" PRIu64 " of %" PRIu64 " changes applied\n",
                r.applied_total, o->changes);
    }
    lg_loop_close(&loop);
    lg_scratch_free();
    return rc;
}

/* ---- catchup mode --------------------------------------------------------------------------- */

typedef struct {
    const lg_opts *o;
    ns_client *c;
    uint64_t t_connect0, t0, t1;
    int64_t rchar0, rchar1;
    uint64_t records;
    uint64_t wrong_plan; /* records of another tenant: must stay 0 */
    uint64_t replica;    /* sync: replica rows after it */
    double cpu0, cpu1, server_cpu0, server_cpu1;
    bool server_reset;
    bool ok;
} lg_catch;

static int lg_on_record(const ns_record_view *rv, void *ud)
{
    lg_catch *k = ud;
    k->records++;
    if (strcmp(rv->tenant_id, k->o->plan) != 0)
        k->wrong_plan++;
    return 0;
}

static void lg_catch_mark_end(lg_catch *k)
{
    k->t1 = lg_now_ns();
    k->rchar1 = lg_rchar();
    k->cpu1 = lg_self_cpu_s();
    if (k->o->server_pid > 0)
        k->server_cpu1 = lg_proc_cpu_s(k->o->server_pid);
}

static void lg_catch_done(lg_catch *k)
{
    if (ns_client_disconnect(k->c, NULL, NULL) != NS_OK) {
        /* Nothing to close: freed below, after the loop. */
    }
}

static void lg_on_pulled(ns_client *c, const ns_error *err, void *ud)
{
    (void)c;
    lg_catch *k = ud;
    lg_catch_mark_end(k);
    if (err)
        fprintf(stderr, "napsync-loadgen: pull: %s: %s\n", ns_status_name(err->status),
                err->message);
    else
        k->ok = true;
    lg_catch_done(k);
}

static void lg_on_synced(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud)
{
    lg_catch *k = ud;
    lg_catch_mark_end(k);
    if (err) {
        fprintf(stderr, "napsync-loadgen: sync: %s: %s\n", ns_status_name(err->status),
                err->message);
    } else {
        k->records = st->received;
        ns_sync_status ss;
        ns_error e;
        if (ns_client_status(c, &ss, &e) != NS_OK)
            fprintf(stderr, "napsync-loadgen: status: %s\n", e.message);
        else {
            k->replica = ss.records;
            k->ok = true;
        }
    }
    lg_catch_done(k);
}

static void lg_on_catch_connect(ns_client *c, const ns_error *err, void *ud)
{
    lg_catch *k = ud;
    if (err) {
        fprintf(stderr, "napsync-loadgen: connect: %s: %s\n", ns_status_name(err->status),
                err->message);
        return;
    }
    if (k->o->server_pid > 0)
        k->server_reset = lg_reset_hwm(k->o->server_pid);
    ns_error e;
    if (k->o->server_pid > 0)
        k->server_cpu0 = lg_proc_cpu_s(k->o->server_pid);
    k->cpu0 = lg_self_cpu_s();
    k->rchar0 = lg_rchar();
    k->t0 = lg_now_ns();
    int rc;
    if (k->o->sync) {
        const char *plans[1] = {k->o->plan};
        ns_sync_options so = {.plan_ids = plans, .nplans = 1};
        rc = ns_client_sync(c, &so, lg_on_synced, k, &e);
    } else {
        rc = ns_client_pull_plan(c, k->o->plan, lg_on_record, k, lg_on_pulled, k, &e);
    }
    if (rc != NS_OK) {
        fprintf(stderr, "napsync-loadgen: %s: %s\n", k->o->sync ? "sync" : "pull", e.message);
        lg_catch_done(k);
    }
}

static int lg_cmd_catchup(const lg_opts *o)
{
    struct stat sb;
    if (o->sync && stat(o->store, &sb) == 0)
        lg_die("--store %s exists: a catch-up starts from a fresh device store", o->store);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    lg_catch k = {.o = o};
    k.c = lg_client_new(o, &loop, o->device, o->sync ? o->store : NULL);
    ns_error err;
    k.t_connect0 = lg_now_ns();
    if (ns_client_connect(k.c, lg_on_catch_connect, &k, &err) != NS_OK)
        lg_die("connect: %s", err.message);
    uv_run(&loop, UV_RUN_DEFAULT);
    ns_client_free(k.c);
    uv_run(&loop, UV_RUN_DEFAULT);
    lg_loop_close(&loop);
    if (!k.ok)
        return 1;
    int rc = 0;
    if (k.records != o->expect || k.wrong_plan != 0 || (o->sync && k.replica != o->expect)) {
        fprintf(stderr,
                "napsync-loadgen: expected %" PRIu64 " records, received %" PRIu64 " (%" PRIu64
                " of another plan), replica %" PRIu64 "\n",
                o->expect, k.records, k.wrong_plan, k.replica);
        rc = 1;
    }
    double secs = (double)(k.t1 - k.t0) / 1e9;
    int64_t wire = k.rchar0 >= 0 && k.rchar1 >= k.rchar0 ? k.rchar1 - k.rchar0 : -1;
    printf("mode=catchup via=%s records=%" PRIu64 " seconds=%.3f records_per_s=%.1f"
           " read_bytes=%" PRId64 " bytes_per_record=%.1f client_hwm_kb=%ld"
           " server_hwm_kb=%ld server_hwm_reset=%d connect_ms=%.1f client_cpu_s=%.2f"
           " server_cpu_s=%.2f\n",
           o->sync ? "sync" : "pull", k.records, secs, secs > 0 ? (double)k.records / secs : 0,
           wire, wire >= 0 && k.records ? (double)wire / (double)k.records : -1,
           lg_proc_status_kb(0, "VmHWM"),
           o->server_pid > 0 ? lg_proc_status_kb(o->server_pid, "VmHWM") : -1,
           k.server_reset ? 1 : 0, (double)(k.t0 - k.t_connect0) / 1e6, k.cpu1 - k.cpu0,
           o->server_pid > 0 ? k.server_cpu1 - k.server_cpu0 : -1.0);
    return rc;
}

/* ---- many devices: fanout, conns, storm ----------------------------------------------------- */

/* Client i's device: PREFIX(first + i mod devices). */
static void lg_device_name(const lg_opts *o, unsigned i, char *out, size_t len)
{
    unsigned d = o->devices ? o->devices : o->clients;
    snprintf(out, len, "%s%04u", o->prefix, o->first + i % d);
}

static void lg_store_path(const lg_opts *o, const char *tag, unsigned i, char out[LG_PATH])
{
    if (snprintf(out, LG_PATH, "%s/%s-%05u.db", o->stores, tag, i) >= LG_PATH)
        lg_die("--stores: path too long");
}

/* Sorts l and prints " NAME_p50_ms=... NAME_p99_ms=... NAME_max_ms=...". */
static void lg_print_pcts(lg_lat *l, const char *name)
{
    if (l->n > 0)
        qsort(l->us, l->n, sizeof(*l->us), lg_cmp_u32);
    printf(" %s_p50_ms=%.3f %s_p90_ms=%.3f %s_p99_ms=%.3f %s_max_ms=%.3f", name, lg_pct_ms(l, 0.50),
           name, lg_pct_ms(l, 0.90), name, lg_pct_ms(l, 0.99), name, lg_pct_ms(l, 1.0));
}

/* Failures that a reconnect may cure, as sync --watch sees them. */
static bool lg_is_loss(const ns_error *e)
{
    switch (e->status) {
    case NS_ERR_CLOSED:
    case NS_ERR_TIMEOUT:
    case NS_ERR_CONNECT:
    case NS_ERR_TLS:
    case NS_ERR_UNAVAILABLE:
        return true;
    default:
        return false;
    }
}

/* ---- fanout mode ---------------------------------------------------------------------------- */

/* The subscribers are spread over --procs processes (default: the online
 * CPUs), forked before any loop or session exists, each with its own libuv
 * loop and a contiguous share of the devices: one process applying 1,000
 * pages one after the other (decrypt, decode, SQLite) delays the last
 * subscriber by the sum of the others' work, whatever the server does. The
 * parent runs the writer and the bookkeeping. Timestamps are CLOCK_MONOTONIC
 * (lg_now_ns; libuv's loop time derives from it too), one clock for every
 * process of the machine, so the parent compares its ack times with the
 * children's delivery times directly.
 *
 * Parent to child, on a pipe: the plan's id (LG_UUID - 1 bytes) once the
 * writer has created it, then end of file to stop. Child to parent, on
 * another: fan_msg records, each whole (smaller than PIPE_BUF). */

typedef enum { FAN_MSG_READY = 1, FAN_MSG_DELIVERY = 2, FAN_MSG_DISCONNECT = 3 } fan_msg_kind;

typedef struct {
    uint32_t kind;       /* fan_msg_kind */
    uint32_t sub;        /* the subscriber's index among all of them */
    uint64_t record;     /* DELIVERY: records it had received before this one */
    uint64_t applied_ns; /* DELIVERY: lg_now_ns at its NS_SYNC_CHANGES */
    uint64_t arrived_ms; /* DELIVERY: its loop's time then (see fan_on_event) */
} fan_msg;

#define FAN_MAX_PROCS 256

typedef struct lg_fanw lg_fanw;

typedef struct {
    lg_fanw *w;
    ns_client *c;
    unsigned i; /* among all subscribers */
    char name[72];
    bool caught_up; /* its first catch-up is done (a Subscribe follows) */
    uint64_t got;   /* records received since then: one per write */
} lg_sub;

typedef enum { FANW_WAITING, FANW_SUBSCRIBING, FANW_WATCHING, FANW_STOPPING } lg_fanw_phase;

/* A subscriber process. */
struct lg_fanw {
    uv_loop_t *loop;
    const lg_opts *o;
    lg_fanw_phase phase;
    int out;       /* to the parent (blocking) */
    uv_pipe_t ctl; /* from the parent */
    bool ctl_open;
    char plan[LG_UUID];
    size_t plan_len;
    lg_sub *subs;
    unsigned n, ready, next_start, window;
    bool failed;
};

static void fanw_stop(lg_fanw *w);

static void fanw_fail(lg_fanw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fanw_fail(lg_fanw *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_vsay("fanout", fmt, ap);
    va_end(ap);
    w->failed = true;
    fanw_stop(w);
}

/* Ends every watch (each sync's callback then frees its client) and the
 * parent's pipe; the loop then runs dry. */
static void fanw_stop(lg_fanw *w)
{
    if (w->phase == FANW_STOPPING)
        return;
    w->phase = FANW_STOPPING;
    if (w->ctl_open) {
        w->ctl_open = false;
        uv_close((uv_handle_t *)&w->ctl, NULL);
    }
    for (unsigned i = 0; i < w->n; i++) {
        lg_sub *s = &w->subs[i];
        if (s->c != NULL && i >= w->next_start) {
            /* Never started: nothing runs on it. */
            ns_client_free(s->c);
            s->c = NULL;
        } else if (s->c != NULL && ns_client_sync_stop(s->c) != NS_OK) {
            ns_client_free(s->c);
            s->c = NULL;
        }
    }
}

/* A blocking write: the parent reads all the time, and the timestamps are
 * taken before. */
static void fanw_send(lg_fanw *w, const fan_msg *m)
{
    const char *p = (const char *)m;
    size_t left = sizeof(*m);
    while (left > 0 && !w->failed) {
        ssize_t k = write(w->out, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            fanw_fail(w, "writing to the parent: %s", strerror(errno));
            return;
        }
        p += k;
        left -= (size_t)k;
    }
}

static void fanw_on_synced(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud)
{
    (void)st;
    lg_sub *s = ud;
    if (s->w->phase != FANW_STOPPING)
        fanw_fail(s->w, "subscriber %s: its watch ended: %s: %s", s->name,
                  err ? ns_status_name(err->status) : "ok", err ? err->message : "");
    ns_client_free(c);
    s->c = NULL;
}

static void fanw_start_next(lg_fanw *w);

static void fanw_on_event(ns_client *c, const ns_sync_event *ev, void *ud)
{
    (void)c;
    lg_sub *s = ud;
    lg_fanw *w = s->w;
    if (w->phase == FANW_STOPPING)
        return;
    switch (ev->kind) {
    case NS_SYNC_CAUGHT_UP:
        if (s->caught_up)
            break; /* after a reconnect */
        s->caught_up = true;
        if (++w->ready == w->n) {
            w->phase = FANW_WATCHING;
            fanw_send(w, &(fan_msg){.kind = FAN_MSG_READY});
        } else {
            fanw_start_next(w);
        }
        break;
    case NS_SYNC_CHANGES: {
        if (!s->caught_up)
            break; /* the plan, in the first catch-up */
        /* Applied: now. Arrived: the loop's time, which libuv sets when
         * its poll returns, before this iteration's reads are decrypted,
         * decoded and applied (1 ms resolution). */
        fan_msg m = {.kind = FAN_MSG_DELIVERY,
                     .sub = s->i,
                     .applied_ns = lg_now_ns(),
                     .arrived_ms = uv_now(w->loop)};
        for (uint64_t k = 0; k < ev->count && !w->failed; k++) {
            m.record = s->got++;
            fanw_send(w, &m);
        }
        break;
    }
    case NS_SYNC_DISCONNECTED:
        fprintf(stderr, "napsync-loadgen: subscriber %s disconnected: %s\n", s->name,
                ev->err ? ev->err->message : "?");
        fanw_send(w, &(fan_msg){.kind = FAN_MSG_DISCONNECT, .sub = s->i});
        break;
    default:
        break;
    }
}

/* Starts the next subscribers' watches, at most its window catching up at once. */
static void fanw_start_next(lg_fanw *w)
{
    while (w->phase == FANW_SUBSCRIBING && w->next_start < w->n &&
           w->next_start - w->ready < w->window) {
        lg_sub *s = &w->subs[w->next_start++];
        const char *plans[1] = {w->plan};
        ns_sync_options so = {
            .plan_ids = plans, .nplans = 1, .watch = 1, .on_event = fanw_on_event, .event_ud = s};
        ns_error err;
        if (ns_client_sync(s->c, &so, fanw_on_synced, s, &err) != NS_OK) {
            fanw_fail(w, "subscriber %s: sync: %s", s->name, err.message);
            return;
        }
    }
}

static void fanw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    lg_fanw *w = h->data;
    /* The plan's id, then nothing: room for one byte more shows a surplus. */
    buf->base = w->plan + w->plan_len;
    buf->len = LG_UUID - w->plan_len;
}

static void fanw_on_ctl(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    lg_fanw *w = st->data;
    if (nread == 0 || w->phase == FANW_STOPPING)
        return;
    if (nread < 0) {
        /* End of file: the parent is done (or gone). */
        if (w->phase != FANW_WATCHING)
            fanw_fail(w, "the parent ended the run before it began (%s)", uv_strerror((int)nread));
        else
            fanw_stop(w);
        return;
    }
    w->plan_len += (size_t)nread;
    if (w->phase != FANW_WAITING || w->plan_len >= LG_UUID) {
        fanw_fail(w, "unexpected bytes from the parent");
        return;
    }
    if (w->plan_len < LG_UUID - 1)
        return;
    w->plan[LG_UUID - 1] = '\0';
    if (!lg_is_uuid(w->plan)) {
        fanw_fail(w, "the parent's plan id is no UUID");
        return;
    }
    w->phase = FANW_SUBSCRIBING;
    fanw_start_next(w);
}

/* A subscriber process's life: subscribers first .. first + n - 1; never
 * returns. in and out are its ends of the two pipes. */
static void fanw_main(const lg_opts *o, unsigned first, unsigned n, unsigned window, int in,
                      int out) __attribute__((noreturn));
static void fanw_main(const lg_opts *o, unsigned first, unsigned n, unsigned window, int in,
                      int out)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    lg_fanw w = {.loop = &loop, .o = o, .out = out, .n = n, .window = window};
    w.subs = calloc(n, sizeof(*w.subs));
    if (w.subs == NULL)
        lg_die("out of memory");
    if (uv_pipe_init(&loop, &w.ctl, 0) != 0 || uv_pipe_open(&w.ctl, in) != 0)
        lg_die("fanout: the parent's pipe");
    w.ctl.data = &w;
    w.ctl_open = true;
    if (uv_read_start((uv_stream_t *)&w.ctl, fanw_alloc, fanw_on_ctl) != 0)
        lg_die("fanout: reading the parent's pipe");
    for (unsigned k = 0; k < n; k++) {
        lg_sub *s = &w.subs[k];
        s->w = &w;
        s->i = first + k;
        lg_device_name(o, s->i, s->name, sizeof(s->name));
        char store[LG_PATH];
        lg_store_path(o, "fan", s->i, store);
        s->c = lg_client_new(o, &loop, s->name, store);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    lg_loop_close(&loop);
    free(w.subs);
    close(out);
    exit(w.failed ? 1 : 0);
}

/* The parent: the writer and the bookkeeping. */

typedef struct lg_fan lg_fan;

typedef struct {
    lg_fan *f;
    unsigned k;
    pid_t pid;
    int ctl;   /* to the child; closed: stop */
    int in_fd; /* from the child, then read through in */
    uv_pipe_t in;
    bool in_open, ready;
    unsigned first, n;
    unsigned char buf[sizeof(fan_msg)];
    size_t have;
    double cpu0, cpu;
} lg_fanproc;

typedef enum { FAN_SETUP, FAN_SUBSCRIBING, FAN_WRITING, FAN_STOPPING } lg_fan_phase;

struct lg_fan {
    uv_loop_t *loop;
    const lg_opts *o;
    lg_fan_phase phase;
    ns_client *wc; /* the writer */
    char plan[LG_UUID];
    lg_fanproc *procs;
    unsigned nprocs, ready;
    unsigned n;       /* subscribers */
    uint64_t *got;    /* per subscriber: records it reported since its catch-up */
    uv_timer_t timer; /* settle, the pause between writes, and each write's deadline */
    bool timer_open;
    unsigned total; /* writes: one to warm up, then the measured ones */
    unsigned write; /* the write in progress */
    bool acked;
    unsigned delivered;            /* subscribers that have the write in progress */
    uint64_t *ack_ns;              /* lg_now_ns in the writer's push callback */
    uint64_t *deliv_ns, *deliv_ms; /* [write * n + subscriber]: fan_msg's times */
    uint64_t t0, t_ready, t_first, t_last;
    double cpu0, srv_cpu0, cpu, srv_cpu;
    uint32_t disconnects;
    bool failed;
};

static void fan_stop(lg_fan *f);

static void fan_fail(lg_fan *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fan_fail(lg_fan *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_vsay("fanout", fmt, ap);
    va_end(ap);
    if (!f->failed) {
        f->failed = true;
        fan_stop(f);
    }
}

/* Tells every subscriber process to stop (end of file on its pipe: it ends
 * its watches and exits; its own pipe then ends too), ends the writer's
 * session and the timer. */
static void fan_stop(lg_fan *f)
{
    if (f->phase == FAN_STOPPING)
        return;
    f->phase = FAN_STOPPING;
    lg_timer_close(&f->timer, &f->timer_open);
    for (unsigned k = 0; k < f->nprocs; k++) {
        if (f->procs[k].ctl >= 0) {
            close(f->procs[k].ctl);
            f->procs[k].ctl = -1;
        }
    }
    if (f->wc != NULL) {
        ns_client *c = f->wc;
        f->wc = NULL;
        if (ns_client_disconnect(c, lg_on_closed, NULL) != NS_OK)
            ns_client_free(c);
    }
}

static void fan_write(lg_fan *f);

static void fan_on_timeout(uv_timer_t *t)
{
    lg_fan *f = t->data;
    fan_fail(f, "write %u: %u of %u subscribers had it after %u ms (acked: %s)", f->write,
             f->delivered, f->n, f->o->timeout_ms, f->acked ? "yes" : "no");
}

static void fan_on_gap(uv_timer_t *t)
{
    fan_write(t->data);
}

/* Every subscriber has the write in progress: the next one after a pause,
 * or the end. */
static void fan_write_done(lg_fan *f)
{
    if (f->write + 1 == f->total) {
        f->t_last = lg_now_ns();
        f->cpu = lg_self_cpu_s() - f->cpu0;
        for (unsigned k = 0; k < f->nprocs; k++)
            f->procs[k].cpu = lg_proc_cpu_s(f->procs[k].pid) - f->procs[k].cpu0;
        if (f->o->server_pid > 0)
            f->srv_cpu = lg_proc_cpu_s(f->o->server_pid) - f->srv_cpu0;
        fan_stop(f);
        return;
    }
    f->write++;
    uv_timer_start(&f->timer, fan_on_gap, f->o->gap_ms, 0);
}

static void fan_on_ack(ns_client *c, const ns_error *err, const ns_mutation_result *rs, size_t n,
                       void *ud)
{
    (void)c;
    lg_fan *f = ud;
    uint64_t now = lg_now_ns();
    if (f->phase != FAN_WRITING)
        return;
    if (err) {
        fan_fail(f, "the writer's push: %s: %s", ns_status_name(err->status), err->message);
        return;
    }
    if (n != 1 || lg_first_bad(rs, n) != n) {
        fan_fail(f, "the writer's indicator was answered outcome %d (%s: %s)", (int)rs[0].outcome,
                 rs[0].reject_code, rs[0].reject_reason);
        return;
    }
    f->ack_ns[f->write] = now;
    f->acked = true;
    if (f->delivered == f->n)
        fan_write_done(f);
}

static void fan_write(lg_fan *f)
{
    if (f->phase != FAN_WRITING)
        return;
    if (f->write == 1) {
        /* The measured writes begin. */
        f->t_first = lg_now_ns();
        f->cpu0 = lg_self_cpu_s();
        for (unsigned k = 0; k < f->nprocs; k++)
            f->procs[k].cpu0 = lg_proc_cpu_s(f->procs[k].pid);
        if (f->o->server_pid > 0)
            f->srv_cpu0 = lg_proc_cpu_s(f->o->server_pid);
    }
    f->acked = false;
    f->delivered = 0;
    const ns_mutation *m = lg_make_indicators(f->plan, 1);
    ns_error err;
    if (ns_client_push_batch(f->wc, NS_PUSH_APPLY, m, 1, fan_on_ack, f, &err) != NS_OK) {
        fan_fail(f, "the writer's push: %s", err.message);
        return;
    }
    uv_timer_start(&f->timer, fan_on_timeout, f->o->timeout_ms, 0);
}

static void fan_on_settled(uv_timer_t *t)
{
    lg_fan *f = t->data;
    f->phase = FAN_WRITING;
    f->write = 0;
    fan_write(f);
}

/* One message of subscriber process p. */
static void fan_on_msg(lg_fan *f, lg_fanproc *p, const fan_msg *m)
{
    if (f->phase == FAN_STOPPING)
        return;
    switch (m->kind) {
    case FAN_MSG_READY:
        if (f->phase != FAN_SUBSCRIBING || p->ready) {
            fan_fail(f, "subscriber process %u: ready out of turn", p->k);
            return;
        }
        p->ready = true;
        if (++f->ready == f->nprocs) {
            /* Give the last Subscribes time to be acknowledged; the
             * warm-up write then proves every subscription live. */
            f->t_ready = lg_now_ns();
            fprintf(stderr, "napsync-loadgen: %u subscribers caught up in %u processes; writing\n",
                    f->n, f->nprocs);
            uv_timer_start(&f->timer, fan_on_settled, 500, 0);
        }
        return;
    case FAN_MSG_DISCONNECT:
        f->disconnects++;
        return;
    case FAN_MSG_DELIVERY:
        break;
    default:
        fan_fail(f, "subscriber process %u: unknown message %" PRIu32, p->k, m->kind);
        return;
    }
    if (m->sub < p->first || m->sub - p->first >= p->n) {
        fan_fail(f, "subscriber process %u: a delivery to subscriber %" PRIu32 ", not its own",
                 p->k, m->sub);
        return;
    }
    uint64_t w = m->record;
    if (f->phase != FAN_WRITING || w > f->write) {
        fan_fail(f, "subscriber %" PRIu32 " received a record no write made (record %" PRIu64 ")",
                 m->sub, w);
        return;
    }
    if (w != f->got[m->sub]) {
        fan_fail(f, "subscriber %" PRIu32 ": record %" PRIu64 " reported after %" PRIu64, m->sub, w,
                 f->got[m->sub]);
        return;
    }
    f->got[m->sub]++;
    f->deliv_ns[w * f->n + m->sub] = m->applied_ns;
    f->deliv_ms[w * f->n + m->sub] = m->arrived_ms;
    if (w == f->write && ++f->delivered == f->n && f->acked)
        fan_write_done(f);
}

static void fan_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    lg_fanproc *p = h->data;
    /* Up to the end of the message being assembled: each is handled as it
     * completes. */
    buf->base = (char *)p->buf + p->have;
    buf->len = sizeof(p->buf) - p->have;
}

static void fan_on_child(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    lg_fanproc *p = st->data;
    lg_fan *f = p->f;
    if (nread == 0)
        return;
    if (nread < 0) {
        p->in_open = false;
        uv_close((uv_handle_t *)&p->in, NULL);
        if (f->phase != FAN_STOPPING)
            fan_fail(f, "subscriber process %u (pid %ld) ended early", p->k, (long)p->pid);
        return;
    }
    p->have += (size_t)nread;
    if (p->have < sizeof(p->buf))
        return;
    fan_msg m;
    memcpy(&m, p->buf, sizeof(m));
    p->have = 0;
    fan_on_msg(f, p, &m);
}

static void fan_on_plan(ns_client *c, const ns_error *err, const ns_mutation_result *rs, size_t n,
                        void *ud)
{
    (void)c;
    lg_fan *f = ud;
    if (f->phase != FAN_SETUP)
        return;
    if (err || n != 1 || lg_first_bad(rs, n) != n) {
        fan_fail(f, "the writer's plan: %s", err ? err->message : rs[0].reject_reason);
        return;
    }
    f->phase = FAN_SUBSCRIBING;
    /* The subscribers may begin: 36 bytes, far below PIPE_BUF, on a pipe
     * nobody has written to yet, so the write completes at once. */
    for (unsigned k = 0; k < f->nprocs; k++) {
        if (write(f->procs[k].ctl, f->plan, LG_UUID - 1) != LG_UUID - 1) {
            fan_fail(f, "subscriber process %u: sending the plan: %s", k, strerror(errno));
            return;
        }
    }
}

static void fan_on_writer(ns_client *c, const ns_error *err, void *ud)
{
    lg_fan *f = ud;
    if (f->phase != FAN_SETUP)
        return;
    if (err) {
        fan_fail(f, "the writer: connect: %s: %s", ns_status_name(err->status), err->message);
        return;
    }
    char title[96];
    ns_field_view fv[LG_PLAN_FIELDS];
    /* Adopted: readable by every organisation (sql/003). */
    ns_mutation m = lg_make_plan(f->o->writer, "adopted", f->plan, fv, title);
    ns_error e;
    if (ns_client_push_batch(c, NS_PUSH_APPLY, &m, 1, fan_on_plan, f, &e) != NS_OK)
        fan_fail(f, "the writer's plan: %s", e.message);
}

static void fan_print(lg_fan *f)
{
    lg_lat delivered = {0}, arrived = {0}, last = {0}, arrived_last = {0};
    unsigned before_ack = 0;
    for (unsigned w = 1; w < f->total; w++) {
        uint64_t worst = 0, worst_seen = 0, a = f->ack_ns[w];
        for (unsigned i = 0; i < f->n; i++) {
            uint64_t d = f->deliv_ns[(size_t)w * f->n + i];
            /* The loop's millisecond, by its middle, and no later than the
             * delivery that followed it. */
            uint64_t seen = f->deliv_ms[(size_t)w * f->n + i] * 1000000u + 500000u;
            if (seen > d)
                seen = d;
            if (d < a)
                before_ack++;
            uint64_t lat = d > a ? d - a : 0, lat_seen = seen > a ? seen - a : 0;
            lg_lat_add(&delivered, lat);
            lg_lat_add(&arrived, lat_seen);
            if (lat > worst)
                worst = lat;
            if (lat_seen > worst_seen)
                worst_seen = lat_seen;
        }
        lg_lat_add(&last, worst);
        lg_lat_add(&arrived_last, worst_seen);
    }
    double secs = (double)(f->t_last - f->t_first) / 1e9, total_cpu = f->cpu;
    printf("mode=fanout subscribers=%u devices=%u procs=%u writes=%u deliveries=%zu", f->n,
           f->o->devices ? f->o->devices : f->n, f->nprocs, f->total - 1, delivered.n);
    lg_print_pcts(&delivered, "delivered");
    lg_print_pcts(&arrived, "arrived");
    lg_print_pcts(&last, "last");
    lg_print_pcts(&arrived_last, "arrived_last");
    printf(" before_ack=%u disconnects=%u setup_s=%.2f seconds=%.3f writer_cpu_s=%.2f"
           " subscriber_cpu_s=",
           before_ack, f->disconnects, (double)(f->t_ready - f->t0) / 1e9, secs, f->cpu);
    for (unsigned k = 0; k < f->nprocs; k++) {
        printf("%s%.2f", k ? "," : "", f->procs[k].cpu);
        total_cpu += f->procs[k].cpu;
    }
    printf(" loadgen_cpu_s=%.2f server_cpu_s=%.2f\n", total_cpu,
           f->o->server_pid > 0 ? f->srv_cpu : -1.0);
    free(delivered.us);
    free(arrived.us);
    free(last.us);
    free(arrived_last.us);
}

/* Forks the subscriber processes: f->procs filled, the parent's ends of
 * their pipes kept (and closed in every later child). */
static void fan_fork(lg_fan *f)
{
    unsigned per = f->n / f->nprocs, extra = f->n % f->nprocs, first = 0;
    unsigned window = f->o->window / f->nprocs;
    if (window == 0)
        window = 1;
    fflush(stdout);
    fflush(stderr);
    for (unsigned k = 0; k < f->nprocs; k++) {
        lg_fanproc *p = &f->procs[k];
        int down[2], up[2];
        if (pipe(down) != 0 || pipe(up) != 0)
            lg_die("fanout: pipe: %s", strerror(errno));
        p->f = f;
        p->k = k;
        p->first = first;
        p->n = per + (k < extra ? 1 : 0);
        first += p->n;
        p->pid = fork();
        if (p->pid < 0)
            lg_die("fanout: fork: %s", strerror(errno));
        if (p->pid == 0) {
            for (unsigned j = 0; j < k; j++) {
                close(f->procs[j].ctl);
                close(f->procs[j].in_fd);
            }
            close(down[1]);
            close(up[0]);
            fanw_main(f->o, p->first, p->n, window, down[0], up[1]);
        }
        close(down[0]);
        close(up[1]);
        p->ctl = down[1];
        p->in_fd = up[0];
    }
}

/* Waits for every subscriber process; false unless each exited 0. */
static bool fan_reap(lg_fan *f)
{
    bool ok = true;
    for (unsigned k = 0; k < f->nprocs; k++) {
        int st;
        pid_t r;
        do
            r = waitpid(f->procs[k].pid, &st, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "napsync-loadgen: fanout: subscriber process %u (pid %ld) failed\n", k,
                    (long)f->procs[k].pid);
            ok = false;
        }
    }
    return ok;
}

static int lg_cmd_fanout(const lg_opts *o)
{
    lg_fan f = {.o = o, .n = o->clients, .total = o->writes + 1};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    f.nprocs = o->procs ? o->procs : (cpus > 0 ? (unsigned)cpus : 1);
    if (f.nprocs > FAN_MAX_PROCS)
        f.nprocs = FAN_MAX_PROCS;
    if (f.nprocs > f.n)
        f.nprocs = f.n;
    for (unsigned i = 0; i < f.n; i++) {
        char store[LG_PATH];
        lg_store_path(o, "fan", i, store);
        struct stat sb;
        if (stat(store, &sb) == 0)
            lg_die("fanout: %s exists: the stores must be new", store);
    }
    f.procs = calloc(f.nprocs, sizeof(*f.procs));
    f.got = calloc(f.n, sizeof(uint64_t));
    f.ack_ns = calloc(f.total, sizeof(uint64_t));
    f.deliv_ns = calloc((size_t)f.total * f.n, sizeof(uint64_t));
    f.deliv_ms = calloc((size_t)f.total * f.n, sizeof(uint64_t));
    if (!f.procs || !f.got || !f.ack_ns || !f.deliv_ns || !f.deliv_ms)
        lg_die("out of memory");
    f.t0 = lg_now_ns();
    /* Before any loop, session or thread exists in this process. */
    fan_fork(&f);

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    f.loop = &loop;
    for (unsigned k = 0; k < f.nprocs; k++) {
        lg_fanproc *p = &f.procs[k];
        if (uv_pipe_init(&loop, &p->in, 0) != 0 || uv_pipe_open(&p->in, p->in_fd) != 0)
            lg_die("fanout: a subscriber process's pipe");
        p->in.data = p;
        p->in_open = true;
        if (uv_read_start((uv_stream_t *)&p->in, fan_alloc, fan_on_child) != 0)
            lg_die("fanout: reading a subscriber process's pipe");
    }
    lg_scratch_init(1);
    if (uv_timer_init(&loop, &f.timer) != 0)
        lg_die("uv_timer_init failed");
    f.timer.data = &f;
    f.timer_open = true;
    f.wc = lg_client_new(o, &loop, o->writer, NULL);
    ns_error err;
    if (ns_client_connect(f.wc, fan_on_writer, &f, &err) != NS_OK)
        fan_fail(&f, "the writer: connect: %s", err.message);
    uv_run(&loop, UV_RUN_DEFAULT);
    bool reaped = fan_reap(&f);
    int rc = 1;
    if (!f.failed && reaped && f.t_last != 0) {
        fan_print(&f);
        rc = 0;
    } else if (!f.failed && reaped) {
        fprintf(stderr, "napsync-loadgen: fanout: ended before the last write was delivered\n");
    }
    lg_loop_close(&loop);
    free(f.procs);
    free(f.got);
    free(f.ack_ns);
    free(f.deliv_ns);
    free(f.deliv_ms);
    lg_scratch_free();
    return rc;
}

/* ---- conns mode ----------------------------------------------------------------------------- */

typedef struct lg_conns lg_conns;

typedef struct {
    lg_conns *r;
    ns_client *c;
    char name[72];
    uint64_t t0;
} lg_sess;

struct lg_conns {
    uv_loop_t *loop;
    const lg_opts *o;
    lg_sess *s;
    unsigned n;
    int round; /* 0: full handshakes; 1: the same clients resuming */
    unsigned next, up, closed, resumed[2];
    uint64_t t_start[2], t_end[2];
    lg_lat lat[2];
    double cpu0, srv0, cpu[2], srv[2];
    long srv_rss0, srv_rss[2], self_rss0, self_rss1;
    uv_timer_t timer;
    bool timer_open;
    bool failed, stopping;
};

static void conns_stop(lg_conns *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    lg_timer_close(&r->timer, &r->timer_open);
    for (unsigned i = 0; i < r->n; i++)
        if (r->s[i].c != NULL)
            (void)ns_client_disconnect(r->s[i].c, NULL, NULL);
}

static void conns_fail(lg_conns *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conns_fail(lg_conns *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_vsay("conns", fmt, ap);
    va_end(ap);
    if (!r->failed) {
        r->failed = true;
        conns_stop(r);
    }
}

static void conns_fill(lg_conns *r);
static void conns_round(lg_conns *r);

static void conns_on_pause(uv_timer_t *t)
{
    conns_round(t->data);
}

static void conns_on_closed(ns_client *c, void *ud)
{
    (void)c;
    lg_conns *r = ud;
    if (++r->closed < r->n || r->stopping)
        return;
    /* Every session of the round has ended; the next round begins once the
     * server has let them go (its lingering close is short). */
    if (r->round == 0) {
        r->round = 1;
        uv_timer_start(&r->timer, conns_on_pause, 1000, 0);
    } else {
        conns_stop(r);
    }
}

/* The sessions have idled for --hold: the server's RSS, then all leave. */
static void conns_on_held(uv_timer_t *t)
{
    lg_conns *r = t->data;
    if (r->o->server_pid > 0)
        r->srv_rss[r->round] = lg_proc_status_kb(r->o->server_pid, "VmRSS");
    if (r->round == 0)
        r->self_rss1 = lg_proc_status_kb(0, "VmRSS");
    r->closed = 0;
    for (unsigned i = 0; i < r->n; i++)
        if (ns_client_disconnect(r->s[i].c, conns_on_closed, r) != NS_OK) {
            conns_fail(r, "device %s: disconnect refused", r->s[i].name);
            return;
        }
}

static void conns_on_connect(ns_client *c, const ns_error *err, void *ud)
{
    lg_sess *s = ud;
    lg_conns *r = s->r;
    uint64_t now = lg_now_ns();
    if (r->stopping)
        return;
    if (err) {
        conns_fail(r, "device %s: connect (%s handshakes): %s: %s", s->name,
                   r->round ? "resumed" : "full", ns_status_name(err->status), err->message);
        return;
    }
    lg_lat_add(&r->lat[r->round], now - s->t0);
    const ns_identity *id = ns_client_identity(c);
    if (id != NULL && id->tls_resumed)
        r->resumed[r->round]++;
    if (++r->up < r->n) {
        conns_fill(r);
        return;
    }
    r->t_end[r->round] = now;
    r->cpu[r->round] = lg_self_cpu_s() - r->cpu0;
    if (r->o->server_pid > 0)
        r->srv[r->round] = lg_proc_cpu_s(r->o->server_pid) - r->srv0;
    fprintf(stderr, "napsync-loadgen: %u sessions up (%s handshakes); idling %.1f s\n", r->n,
            r->round ? "resumed" : "full", r->o->hold_s);
    uv_timer_start(&r->timer, conns_on_held, (uint64_t)(r->o->hold_s * 1000.0), 0);
}

static void conns_fill(lg_conns *r)
{
    while (!r->stopping && r->next < r->n && r->next - r->up < r->o->window) {
        lg_sess *s = &r->s[r->next++];
        ns_error err;
        s->t0 = lg_now_ns();
        if (ns_client_connect(s->c, conns_on_connect, s, &err) != NS_OK) {
            conns_fail(r, "device %s: connect: %s", s->name, err.message);
            return;
        }
    }
}

static void conns_round(lg_conns *r)
{
    r->next = r->up = 0;
    r->cpu0 = lg_self_cpu_s();
    if (r->o->server_pid > 0)
        r->srv0 = lg_proc_cpu_s(r->o->server_pid);
    r->t_start[r->round] = lg_now_ns();
    conns_fill(r);
}

static double conns_rate(const lg_conns *r, int k)
{
    double secs = (double)(r->t_end[k] - r->t_start[k]) / 1e9;
    return secs > 0 ? r->n / secs : 0;
}

static int lg_cmd_conns(const lg_opts *o)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    lg_conns r = {.loop = &loop, .o = o, .n = o->clients};
    r.s = calloc(r.n, sizeof(*r.s));
    if (r.s == NULL)
        lg_die("out of memory");
    if (uv_timer_init(&loop, &r.timer) != 0)
        lg_die("uv_timer_init failed");
    r.timer.data = &r;
    r.timer_open = true;
    r.self_rss0 = lg_proc_status_kb(0, "VmRSS");
    for (unsigned i = 0; i < r.n; i++) {
        lg_sess *s = &r.s[i];
        s->r = &r;
        lg_device_name(o, i, s->name, sizeof(s->name));
        s->c = lg_client_new(o, &loop, s->name, NULL);
    }
    if (o->server_pid > 0)
        r.srv_rss0 = lg_proc_status_kb(o->server_pid, "VmRSS");
    conns_round(&r);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < r.n; i++)
        ns_client_free(r.s[i].c);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = 1;
    if (!r.failed && r.t_end[1] != 0 && r.resumed[1] == r.n && r.resumed[0] == 0) {
        for (int k = 0; k < 2; k++)
            qsort(r.lat[k].us, r.lat[k].n, sizeof(uint32_t), lg_cmp_u32);
        long per = r.srv_rss0 > 0 && r.srv_rss[0] > 0 ? r.srv_rss[0] - r.srv_rss0 : -1;
        long per_r = r.srv_rss0 > 0 && r.srv_rss[1] > 0 ? r.srv_rss[1] - r.srv_rss0 : -1;
        printf("mode=conns sessions=%u devices=%u window=%u full_s=%.3f full_per_s=%.1f"
               " full_p50_ms=%.3f full_p99_ms=%.3f resumed_s=%.3f resumed_per_s=%.1f"
               " resumed_p50_ms=%.3f resumed_p99_ms=%.3f resumed=%u ratio=%.2f"
               " server_rss0_kb=%ld server_rss_kb=%ld server_rss_resumed_kb=%ld"
               " per_session_kb=%.2f per_session_resumed_kb=%.2f loadgen_per_client_kb=%.1f"
               " full_loadgen_cpu_s=%.2f full_server_cpu_s=%.2f resumed_loadgen_cpu_s=%.2f"
               " resumed_server_cpu_s=%.2f\n",
               r.n, o->devices ? o->devices : r.n, o->window,
               (double)(r.t_end[0] - r.t_start[0]) / 1e9, conns_rate(&r, 0),
               lg_pct_ms(&r.lat[0], 0.5), lg_pct_ms(&r.lat[0], 0.99),
               (double)(r.t_end[1] - r.t_start[1]) / 1e9, conns_rate(&r, 1),
               lg_pct_ms(&r.lat[1], 0.5), lg_pct_ms(&r.lat[1], 0.99), r.resumed[1],
               conns_rate(&r, 0) > 0 ? conns_rate(&r, 1) / conns_rate(&r, 0) : 0, r.srv_rss0,
               r.srv_rss[0], r.srv_rss[1], per >= 0 ? (double)per / r.n : -1.0,
               per_r >= 0 ? (double)per_r / r.n : -1.0, (double)(r.self_rss1 - r.self_rss0) / r.n,
               r.cpu[0], r.srv[0], r.cpu[1], r.srv[1]);
        rc = 0;
    } else if (!r.failed) {
        fprintf(stderr,
                "napsync-loadgen: conns: %u of %u sessions resumed a TLS session on reconnect"
                " (%u on the first connect): expected all, and none\n",
                r.resumed[1], r.n, r.resumed[0]);
    }
    lg_loop_close(&loop);
    free(r.lat[0].us);
    free(r.lat[1].us);
    free(r.s);
    return rc;
}

/* ---- storm modes ---------------------------------------------------------------------------- */

typedef struct lg_storm lg_storm;

typedef struct {
    lg_storm *r;
    ns_client *c;
    unsigned i;
    char name[72];
    bool drained, done;
    uint32_t retries;
} lg_sdev;

struct lg_storm {
    uv_loop_t *loop;
    const lg_opts *o;
    lg_sdev *d;
    unsigned n;
    bool prepare;
    unsigned next, done, drained, closed;
    uint64_t t0, t_drained, t_done;
    lg_lat drain;
    uint32_t retries;  /* syncs that failed and were started again */
    uint32_t connects; /* sessions the devices' syncs opened (NS_SYNC_CONNECTED) */
    /* The well-behaved client: one ping every ping_ms, never two at once. */
    ns_client *pc;
    uv_timer_t ptimer;
    bool ptimer_open, ping_inflight;
    unsigned baseline; /* pings answered before the storm */
    lg_lat ping_before, ping_during;
    uint64_t pings_skipped; /* ticks that found the previous ping unanswered */
    double cpu0, srv0, cpu, srv;
    bool storm_on, failed, stopping;
};

static void storm_stop(lg_storm *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    lg_timer_close(&r->ptimer, &r->ptimer_open);
    if (r->pc != NULL)
        (void)ns_client_disconnect(r->pc, NULL, NULL);
    for (unsigned i = 0; i < r->n; i++)
        if (r->d[i].c != NULL && ns_client_sync_stop(r->d[i].c) != NS_OK)
            (void)ns_client_disconnect(r->d[i].c, NULL, NULL);
}

static void storm_fail(lg_storm *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void storm_fail(lg_storm *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_vsay(r->prepare ? "storm-prepare" : "storm", fmt, ap);
    va_end(ap);
    if (!r->failed) {
        r->failed = true;
        storm_stop(r);
    }
}

/* storm-prepare: the outbox of one device, offline: its plan (a draft of
 * its organisation) and changes - 1 indicators in it. */
static bool storm_queue(lg_storm *r, lg_sdev *d)
{
    char title[96], ref[64];
    snprintf(title, sizeof(title), "title=Storm plan %u of %s", d->i, d->name);
    const char *pa[] = {title, "kind=nap", "status=draft", "period_start:date=2024-01-01",
                        "period_end:date=2028-12-31"};
    ns_edit_result res;
    ns_error err;
    if (ns_client_put(d->c, "plan", NULL, pa, 5, &res, &err) != NS_OK) {
        storm_fail(r, "device %s: put plan: %s", d->name, err.message);
        return false;
    }
    snprintf(ref, sizeof(ref), "plan_id:ref=%s", res.record_id);
    for (uint64_t k = 1; k < r->o->changes; k++) {
        snprintf(title, sizeof(title), "title=Storm indicator %" PRIu64, k);
        const char *ia[] = {ref, title, "value_type=number"};
        if (ns_client_put(d->c, "indicator", NULL, ia, 3, &res, &err) != NS_OK) {
            storm_fail(r, "device %s: put indicator: %s", d->name, err.message);
            return false;
        }
    }
    return true;
}

static void storm_start_next(lg_storm *r);

static void prep_on_closed(ns_client *c, void *ud)
{
    (void)c;
    lg_storm *r = ud;
    r->closed++;
    storm_start_next(r);
}

static void prep_on_synced(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud)
{
    (void)st;
    lg_sdev *d = ud;
    lg_storm *r = d->r;
    if (r->stopping)
        return;
    if (err) {
        storm_fail(r, "device %s: first sync: %s: %s", d->name, ns_status_name(err->status),
                   err->message);
        return;
    }
    if (!storm_queue(r, d))
        return;
    d->done = true;
    r->done++;
    if (ns_client_disconnect(c, prep_on_closed, r) != NS_OK)
        storm_fail(r, "device %s: disconnect refused", d->name);
}

static void storm_start_next(lg_storm *r)
{
    while (!r->stopping && r->next < r->n && r->next - r->closed < r->o->window) {
        lg_sdev *d = &r->d[r->next++];
        ns_error err;
        if (ns_client_sync(d->c, NULL, prep_on_synced, d, &err) != NS_OK) {
            storm_fail(r, "device %s: sync: %s", d->name, err.message);
            return;
        }
    }
    if (r->closed == r->n) {
        r->t_done = lg_now_ns();
        r->stopping = true;
    }
}

/* storm: a device's outbox may be empty now. */
static void storm_check_drained(lg_storm *r, lg_sdev *d)
{
    ns_sync_status ss;
    ns_error err;
    if (d->drained)
        return;
    if (ns_client_status(d->c, &ss, &err) != NS_OK) {
        storm_fail(r, "device %s: status: %s", d->name, err.message);
        return;
    }
    if (ss.rejected != 0) {
        storm_fail(r, "device %s: %" PRIu64 " changes refused by the server", d->name, ss.rejected);
        return;
    }
    if (ss.pending != 0)
        return;
    uint64_t now = lg_now_ns();
    d->drained = true;
    lg_lat_add(&r->drain, now - r->t0);
    if (++r->drained == r->n) {
        r->t_drained = now;
        r->cpu = lg_self_cpu_s() - r->cpu0;
        if (r->o->server_pid > 0)
            r->srv = lg_proc_cpu_s(r->o->server_pid) - r->srv0;
        fprintf(stderr, "napsync-loadgen: every outbox drained after %.2f s\n",
                (double)(now - r->t0) / 1e9);
    }
}

static void storm_on_event(ns_client *c, const ns_sync_event *ev, void *ud)
{
    (void)c;
    lg_sdev *d = ud;
    if (ev->kind == NS_SYNC_CONNECTED)
        d->r->connects++;
    if (ev->kind == NS_SYNC_PUSHED && !d->r->stopping)
        storm_check_drained(d->r, d);
}

static void storm_sync(lg_sdev *d);

static void lg_free_handle(uv_handle_t *h)
{
    free(h);
}

static void storm_on_retry(uv_timer_t *t)
{
    lg_sdev *d = t->data;
    uv_close((uv_handle_t *)t, lg_free_handle);
    if (!d->r->stopping)
        storm_sync(d);
}

static void storm_on_synced(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud)
{
    (void)c;
    (void)st;
    lg_sdev *d = ud;
    lg_storm *r = d->r;
    if (r->stopping)
        return;
    if (err && lg_is_loss(err)) {
        /* As sync --watch would: again after a jittered backoff from 0.5 s. */
        uint32_t base = 500u << (d->retries < 7 ? d->retries : 7);
        uint64_t ms = base / 2 + lg_rand() % (base / 2 + 1);
        d->retries++;
        r->retries++;
        uv_timer_t *t = malloc(sizeof(*t));
        if (t == NULL || uv_timer_init(r->loop, t) != 0) {
            free(t);
            storm_fail(r, "device %s: cannot schedule a retry", d->name);
            return;
        }
        t->data = d;
        uv_timer_start(t, storm_on_retry, ms, 0);
        return;
    }
    if (err) {
        storm_fail(r, "device %s: sync: %s: %s", d->name, ns_status_name(err->status),
                   err->message);
        return;
    }
    storm_check_drained(r, d);
    if (!d->drained) {
        if (!r->failed)
            storm_fail(r, "device %s: the sync ended with changes still pending", d->name);
        return;
    }
    d->done = true;
    if (++r->done == r->n) {
        r->t_done = lg_now_ns();
        storm_stop(r);
    }
}

static void storm_sync(lg_sdev *d)
{
    ns_sync_options so = {.on_event = storm_on_event, .event_ud = d};
    ns_error err;
    if (ns_client_sync(d->c, &so, storm_on_synced, d, &err) != NS_OK)
        storm_fail(d->r, "device %s: sync: %s", d->name, err.message);
}

static void storm_begin(lg_storm *r)
{
    fprintf(stderr, "napsync-loadgen: %u pings as the baseline; %u devices sync now\n", r->baseline,
            r->n);
    r->storm_on = true;
    r->t0 = lg_now_ns();
    r->cpu0 = lg_self_cpu_s();
    if (r->o->server_pid > 0)
        r->srv0 = lg_proc_cpu_s(r->o->server_pid);
    for (unsigned i = 0; i < r->n && !r->stopping; i++)
        storm_sync(&r->d[i]);
}

static void storm_on_pong(ns_client *c, const ns_error *err, uint64_t rtt_us, void *ud)
{
    (void)c;
    lg_storm *r = ud;
    r->ping_inflight = false;
    if (r->stopping)
        return;
    if (err) {
        storm_fail(r, "the pinger: %s: %s", ns_status_name(err->status), err->message);
        return;
    }
    if (!r->storm_on) {
        lg_lat_add(&r->ping_before, rtt_us * 1000u);
        /* Two seconds of pings before the storm. */
        if (++r->baseline * r->o->ping_ms >= 2000)
            storm_begin(r);
    } else if (r->drained < r->n) {
        lg_lat_add(&r->ping_during, rtt_us * 1000u);
    }
}

static void storm_on_tick(uv_timer_t *t)
{
    lg_storm *r = t->data;
    if (r->stopping)
        return;
    if (r->ping_inflight) {
        r->pings_skipped++;
        return;
    }
    ns_error err;
    if (ns_client_ping(r->pc, storm_on_pong, r, &err) != NS_OK) {
        storm_fail(r, "the pinger: %s", err.message);
        return;
    }
    r->ping_inflight = true;
}

static void storm_on_pinger(ns_client *c, const ns_error *err, void *ud)
{
    (void)c;
    lg_storm *r = ud;
    if (r->stopping)
        return;
    if (err) {
        storm_fail(r, "the pinger: connect: %s: %s", ns_status_name(err->status), err->message);
        return;
    }
    uv_timer_start(&r->ptimer, storm_on_tick, 0, r->o->ping_ms);
}

static int lg_cmd_storm(const lg_opts *o, bool prepare)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    lg_storm r = {.loop = &loop, .o = o, .n = o->clients, .prepare = prepare};
    r.d = calloc(r.n, sizeof(*r.d));
    if (r.d == NULL)
        lg_die("out of memory");
    uint64_t pending = 0;
    for (unsigned i = 0; i < r.n; i++) {
        lg_sdev *d = &r.d[i];
        d->r = &r;
        d->i = i;
        lg_device_name(o, i, d->name, sizeof(d->name));
        char store[LG_PATH];
        lg_store_path(o, "storm", i, store);
        struct stat sb;
        if (prepare && stat(store, &sb) == 0)
            lg_die("storm-prepare: %s exists: the stores must be new", store);
        if (!prepare && stat(store, &sb) != 0)
            lg_die("storm: %s is missing: run storm-prepare first", store);
        d->c = lg_client_new(o, &loop, d->name, store);
        if (!prepare) {
            ns_sync_status ss;
            ns_error err;
            if (ns_client_status(d->c, &ss, &err) != NS_OK)
                lg_die("storm: device %s: status: %s", d->name, err.message);
            pending += ss.pending;
        }
    }
    if (!prepare && pending != (uint64_t)r.n * o->changes)
        lg_die("storm: the outboxes hold %" PRIu64 " changes, expected %" PRIu64, pending,
               (uint64_t)r.n * o->changes);
    uint64_t t0 = lg_now_ns();
    if (prepare) {
        storm_start_next(&r);
    } else {
        if (uv_timer_init(&loop, &r.ptimer) != 0)
            lg_die("uv_timer_init failed");
        r.ptimer.data = &r;
        r.ptimer_open = true;
        /* Its pings wait as long as they take: a slow one is a figure. */
        lg_opts po = *o;
        po.timeout_ms = LG_PINGER_TIMEOUT_MS;
        r.pc = lg_client_new(&po, &loop, o->pinger, NULL);
        ns_error err;
        if (ns_client_connect(r.pc, storm_on_pinger, &r, &err) != NS_OK)
            storm_fail(&r, "the pinger: connect: %s", err.message);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < r.n; i++)
        ns_client_free(r.d[i].c);
    ns_client_free(r.pc);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = 1;
    if (!r.failed && prepare && r.done == r.n) {
        printf("mode=storm-prepare clients=%u devices=%u changes=%" PRIu64 " seconds=%.3f\n", r.n,
               o->devices ? o->devices : r.n, (uint64_t)r.n * o->changes,
               (double)(r.t_done - t0) / 1e9);
        rc = 0;
    } else if (!r.failed && !prepare && r.done == r.n) {
        printf("mode=storm clients=%u devices=%u changes=%" PRIu64 " drained_s=%.3f"
               " synced_s=%.3f connects=%u retries=%u pings_before=%zu pings=%zu"
               " pings_skipped=%" PRIu64,
               r.n, o->devices ? o->devices : r.n, (uint64_t)r.n * o->changes,
               (double)(r.t_drained - r.t0) / 1e9, (double)(r.t_done - r.t0) / 1e9, r.connects,
               r.retries, r.ping_before.n, r.ping_during.n, r.pings_skipped);
        lg_print_pcts(&r.drain, "drain");
        lg_print_pcts(&r.ping_before, "ping_before");
        lg_print_pcts(&r.ping_during, "ping");
        printf(" loadgen_cpu_s=%.2f server_cpu_s=%.2f server_hwm_kb=%ld\n", r.cpu,
               o->server_pid > 0 ? r.srv : -1.0,
               o->server_pid > 0 ? lg_proc_status_kb(o->server_pid, "VmHWM") : -1);
        rc = 0;
    } else if (!r.failed) {
        fprintf(stderr, "napsync-loadgen: %s: %u of %u devices done\n",
                prepare ? "storm-prepare" : "storm", r.done, r.n);
    }
    lg_loop_close(&loop);
    free(r.drain.us);
    free(r.ping_before.us);
    free(r.ping_during.us);
    free(r.d);
    return rc;
}

/* ---- peer modes: the records of figure 6 ---------------------------------------------------- */

/* A data set of tests/bench/peer.js gen (NAME.tsv), the records PouchDB
 * gets as documents: one a line, its entity type, its id and its
 * FIELD:KIND=VALUE assignments (ns_client_put's form), tab-separated. The
 * file is read whole and split in place. */
#define LG_REC_MAX_FIELDS 16
#define LG_DATA_MAX_BYTES ((size_t)512 << 20)

typedef struct {
    const char *entity_type;
    const char *id;
    char *assign[LG_REC_MAX_FIELDS];
    size_t n;
} lg_rec;

typedef struct {
    char *buf;    /* the file, owned; every pointer of recs points into it */
    lg_rec *recs; /* owned */
    size_t n;
} lg_data;

static void lg_data_load(const char *path, lg_data *d)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        lg_die("--data %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size <= 0 || (uint64_t)sb.st_size > LG_DATA_MAX_BYTES)
        lg_die("--data %s: unreadable, empty or larger than %zu MiB", path,
               LG_DATA_MAX_BYTES >> 20);
    size_t len = (size_t)sb.st_size, lines = 1;
    d->buf = malloc(len + 1);
    if (d->buf == NULL)
        lg_die("out of memory for --data");
    if (fread(d->buf, 1, len, f) != len)
        lg_die("--data %s: short read", path);
    fclose(f);
    d->buf[len] = '\0';
    if (memchr(d->buf, '\0', len) != NULL)
        lg_die("--data %s: not text", path);
    for (size_t i = 0; i < len; i++)
        lines += d->buf[i] == '\n';
    d->recs = calloc(lines, sizeof(*d->recs));
    if (d->recs == NULL)
        lg_die("out of memory for --data");
    d->n = 0;
    for (char *p = d->buf; *p != '\0';) {
        char *nl = strchr(p, '\n'), *next = nl ? nl + 1 : p + strlen(p);
        if (nl)
            *nl = '\0';
        if (*p != '\0') {
            lg_rec *r = &d->recs[d->n];
            char *cols[LG_REC_MAX_FIELDS + 2];
            size_t nc = 0;
            for (char *q = p;;) {
                if (nc == LG_REC_MAX_FIELDS + 2)
                    lg_die("--data %s: record %zu has more than %d fields", path, d->n + 1,
                           LG_REC_MAX_FIELDS);
                cols[nc++] = q;
                char *tab = strchr(q, '\t');
                if (tab == NULL)
                    break;
                *tab = '\0';
                q = tab + 1;
            }
            if (nc < 3 || !lg_is_uuid(cols[1]))
                lg_die("--data %s: record %zu: entity type, a lowercase UUID and fields expected",
                       path, d->n + 1);
            r->entity_type = cols[0];
            r->id = cols[1];
            r->n = nc - 2;
            memcpy(r->assign, cols + 2, r->n * sizeof(*r->assign));
            d->n++;
        }
        p = next;
    }
    if (d->n == 0 || strcmp(d->recs[0].entity_type, "plan") != 0)
        lg_die("--data %s: the first record must be the plan", path);
}

static void lg_data_free(lg_data *d)
{
    free(d->recs);
    free(d->buf);
}

/* Record r as a create for ns_client_push_batch: splits each FIELD:KIND=VALUE
 * in place (so the record cannot be put afterwards); fv holds
 * LG_REC_MAX_FIELDS views and is the mutation's storage. */
static ns_mutation lg_rec_mutation(lg_rec *r, ns_field_view *fv)
{
    for (size_t i = 0; i < r->n; i++) {
        char *a = r->assign[i], *colon = strchr(a, ':'), *eq = colon ? strchr(colon, '=') : NULL;
        if (eq == NULL)
            lg_die("--data: record %s: \"%s\" is not FIELD:KIND=VALUE", r->id, a);
        *colon = *eq = '\0';
        fv[i] = (ns_field_view){.name = a, .kind = colon + 1, .value = eq + 1};
    }
    return (ns_mutation){.entity_type = r->entity_type,
                         .record_id = r->id,
                         .op = NS_MUTATION_CREATE,
                         .fields = fv,
                         .nfields = r->n};
}

/* peer-prepare: every record of --data saved in a new store (ns_client_put,
 * as an application saves its edits), queued for the server. Not timed by
 * the figure: PouchDB's documents are written into its local database
 * before its replication too. */
static int lg_cmd_peer_prepare(const lg_opts *o)
{
    struct stat sb;
    if (stat(o->store, &sb) == 0)
        lg_die("peer-prepare: --store %s exists: the store must be new", o->store);
    lg_data d;
    lg_data_load(o->data, &d);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    ns_client *c = lg_client_new(o, &loop, o->device, o->store);
    uint64_t t0 = lg_now_ns();
    for (size_t i = 0; i < d.n; i++) {
        const lg_rec *r = &d.recs[i];
        ns_edit_result res;
        ns_error err;
        if (ns_client_put(c, r->entity_type, r->id, (const char *const *)r->assign, r->n, &res,
                          &err) != NS_OK)
            lg_die("peer-prepare: record %zu (%s %s): %s", i + 1, r->entity_type, r->id,
                   err.message);
    }
    double secs = (double)(lg_now_ns() - t0) / 1e9;
    ns_sync_status st;
    ns_error err;
    if (ns_client_status(c, &st, &err) != NS_OK)
        lg_die("peer-prepare: status: %s", err.message);
    ns_client_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    lg_loop_close(&loop);
    int rc = st.pending == d.n ? 0 : 1;
    if (rc)
        fprintf(stderr, "napsync-loadgen: peer-prepare: %zu records put, %" PRIu64 " pending\n",
                d.n, st.pending);
    printf("mode=peer-prepare records=%zu pending=%" PRIu64 " seconds=%.3f\n", d.n, st.pending,
           secs);
    lg_data_free(&d);
    return rc;
}

/* peer-push: a store whose outbox holds --expect changes (peer-prepare)
 * syncs its plan once, as `napsync sync --plan` does: connect, push the
 * outbox (batches of up to 1,000 changes, one in flight), then pull back.
 * Timed from the sync's call (before the connection) to the answer of the
 * push that leaves nothing pending: each answer comes after the server's
 * COMMIT, so every change is durable there. */
typedef struct {
    const lg_opts *o;
    ns_client *c;
    uint64_t t0, t_pushed, t_done;
    uint64_t pushed, rejected;
    ns_sync_status st;
    double cpu0, cpu1, srv0, srv1;
    bool ok;
} lg_ppush;

static void ppush_on_event(ns_client *c, const ns_sync_event *ev, void *ud)
{
    (void)c;
    lg_ppush *k = ud;
    if (ev->kind != NS_SYNC_PUSHED)
        return;
    k->pushed += ev->count;
    k->rejected += ev->rejected;
    if (k->t_pushed == 0 && k->pushed >= k->o->expect) {
        k->t_pushed = lg_now_ns();
        k->cpu1 = lg_self_cpu_s();
        if (k->o->server_pid > 0)
            k->srv1 = lg_proc_cpu_s(k->o->server_pid);
    }
}

static void ppush_on_synced(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud)
{
    (void)st;
    lg_ppush *k = ud;
    k->t_done = lg_now_ns();
    ns_error e;
    if (err)
        fprintf(stderr, "napsync-loadgen: peer-push: sync: %s: %s\n", ns_status_name(err->status),
                err->message);
    else if (ns_client_status(c, &k->st, &e) != NS_OK)
        fprintf(stderr, "napsync-loadgen: peer-push: status: %s\n", e.message);
    else
        k->ok = true;
    (void)ns_client_disconnect(c, NULL, NULL);
}

static int lg_cmd_peer_push(const lg_opts *o)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    struct stat sb;
    if (stat(o->store, &sb) != 0)
        lg_die("peer-push: --store %s: %s (peer-prepare makes it)", o->store, strerror(errno));
    lg_ppush k = {.o = o};
    k.c = lg_client_new(o, &loop, o->device, o->store);
    const char *plans[1] = {o->plan};
    ns_sync_options so = {
        .plan_ids = plans, .nplans = 1, .on_event = ppush_on_event, .event_ud = &k};
    ns_error err;
    k.cpu0 = lg_self_cpu_s();
    if (o->server_pid > 0)
        k.srv0 = lg_proc_cpu_s(o->server_pid);
    k.t0 = lg_now_ns();
    if (ns_client_sync(k.c, &so, ppush_on_synced, &k, &err) != NS_OK)
        lg_die("peer-push: sync: %s", err.message);
    uv_run(&loop, UV_RUN_DEFAULT);
    ns_client_free(k.c);
    uv_run(&loop, UV_RUN_DEFAULT);
    lg_loop_close(&loop);
    if (!k.ok)
        return 1;
    if (k.t_pushed == 0 || k.pushed != o->expect || k.rejected != 0 || k.st.pending != 0 ||
        k.st.records != o->expect) {
        fprintf(stderr,
                "napsync-loadgen: peer-push: %" PRIu64 " changes answered (%" PRIu64
                " refused), %" PRIu64 " pending, replica %" PRIu64 "; expected %" PRIu64 "\n",
                k.pushed, k.rejected, k.st.pending, k.st.records, o->expect);
        return 1;
    }
    double secs = (double)(k.t_pushed - k.t0) / 1e9;
    printf("mode=peer-push records=%" PRIu64 " seconds=%.3f records_per_s=%.1f sync_seconds=%.3f"
           " replica=%" PRIu64 " client_cpu_s=%.2f server_cpu_s=%.2f\n",
           k.pushed, secs, secs > 0 ? (double)k.pushed / secs : 0, (double)(k.t_done - k.t0) / 1e9,
           k.st.records, k.cpu1 - k.cpu0, o->server_pid > 0 ? k.srv1 - k.srv0 : -1.0);
    return 0;
}

/* peer-live: one device (--device, a store) watches the plan of --data
 * (ns_client_sync with watch, as `napsync sync --watch --plan`) while a
 * writer (--writer, no store) pushes its reports one at a time: 1 to warm
 * up, then --writes measured, each --gap-ms after the one before reached
 * the subscriber. Latency: from the writer's ns_client_push_batch call to
 * the subscriber's NS_SYNC_CHANGES event (the record applied to its store
 * with its cursor). The plan and its other records are pushed first, in one
 * batch, and caught up before the first write. */
typedef enum { PL_SETUP, PL_CATCHUP, PL_WRITING, PL_STOPPING } lg_plive_phase;

typedef struct {
    uv_loop_t *loop;
    const lg_opts *o;
    lg_data d;
    ns_field_view *fv; /* LG_REC_MAX_FIELDS per record */
    size_t *reports;   /* indexes of the reports in d, in order */
    size_t nreports;
    ns_client *wc, *sc;
    lg_plive_phase phase;
    uv_timer_t timer;
    bool timer_open;
    unsigned total, write;
    bool acked, delivered;
    uint64_t got; /* records the subscriber received since it caught up */
    uint64_t sent_ns;
    lg_lat lat, ack; /* to the subscriber's store; to the writer's answer */
    uint32_t disconnects;
    bool failed, done;
} lg_plive;

static void plive_stop(lg_plive *k)
{
    if (k->phase == PL_STOPPING)
        return;
    k->phase = PL_STOPPING;
    lg_timer_close(&k->timer, &k->timer_open);
    if (k->sc != NULL && ns_client_sync_stop(k->sc) != NS_OK) {
        ns_client_free(k->sc);
        k->sc = NULL;
    }
    if (k->wc != NULL) {
        ns_client *c = k->wc;
        k->wc = NULL;
        if (ns_client_disconnect(c, lg_on_closed, NULL) != NS_OK)
            ns_client_free(c);
    }
}

static void plive_fail(lg_plive *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void plive_fail(lg_plive *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_vsay("peer-live", fmt, ap);
    va_end(ap);
    if (!k->failed) {
        k->failed = true;
        plive_stop(k);
    }
}

static void plive_write(lg_plive *k);

static void plive_on_gap(uv_timer_t *t)
{
    plive_write(t->data);
}

static void plive_on_timeout(uv_timer_t *t)
{
    lg_plive *k = t->data;
    plive_fail(k, "write %u: not delivered after %u ms (acked: %s)", k->write, k->o->timeout_ms,
               k->acked ? "yes" : "no");
}

/* The write in progress is acknowledged and delivered: the next one after
 * the gap, or the end. */
static void plive_settle(lg_plive *k)
{
    if (!k->acked || !k->delivered)
        return;
    if (++k->write == k->total) {
        k->done = true;
        plive_stop(k);
        return;
    }
    uv_timer_start(&k->timer, plive_on_gap, k->o->gap_ms, 0);
}

static void plive_on_ack(ns_client *c, const ns_error *err, const ns_mutation_result *rs, size_t n,
                         void *ud)
{
    (void)c;
    lg_plive *k = ud;
    if (k->phase != PL_WRITING)
        return;
    if (err || n != 1 || lg_first_bad(rs, n) != n) {
        plive_fail(k, "write %u: %s", k->write, err ? err->message : rs[0].reject_reason);
        return;
    }
    if (k->write > 0)
        lg_lat_add(&k->ack, lg_now_ns() - k->sent_ns);
    k->acked = true;
    plive_settle(k);
}

static void plive_write(lg_plive *k)
{
    if (k->phase != PL_WRITING)
        return;
    k->acked = k->delivered = false;
    size_t i = k->reports[k->write];
    ns_mutation m = lg_rec_mutation(&k->d.recs[i], &k->fv[i * LG_REC_MAX_FIELDS]);
    ns_error err;
    k->sent_ns = lg_now_ns();
    if (ns_client_push_batch(k->wc, NS_PUSH_APPLY, &m, 1, plive_on_ack, k, &err) != NS_OK) {
        plive_fail(k, "write %u: %s", k->write, err.message);
        return;
    }
    uv_timer_start(&k->timer, plive_on_timeout, k->o->timeout_ms, 0);
}

static void plive_on_settled(uv_timer_t *t)
{
    lg_plive *k = t->data;
    k->phase = PL_WRITING;
    plive_write(k);
}

static void plive_on_event(ns_client *c, const ns_sync_event *ev, void *ud)
{
    (void)c;
    lg_plive *k = ud;
    uint64_t now = lg_now_ns();
    if (k->phase == PL_STOPPING)
        return;
    if (ev->kind == NS_SYNC_CAUGHT_UP && k->phase == PL_CATCHUP) {
        /* As fanout: time for the Subscribe to be acknowledged. */
        uv_timer_start(&k->timer, plive_on_settled, 500, 0);
    } else if (ev->kind == NS_SYNC_CHANGES && k->phase == PL_WRITING) {
        k->got += ev->count;
        if (k->got != (uint64_t)k->write + 1) {
            plive_fail(k, "write %u: the subscriber has %" PRIu64 " records of the writes",
                       k->write, k->got);
            return;
        }
        if (k->write > 0)
            lg_lat_add(&k->lat, now - k->sent_ns);
        k->delivered = true;
        plive_settle(k);
    } else if (ev->kind == NS_SYNC_DISCONNECTED) {
        k->disconnects++;
    }
}

static void plive_on_synced(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud)
{
    (void)st;
    lg_plive *k = ud;
    if (k->phase != PL_STOPPING)
        plive_fail(k, "the watch ended: %s", err ? err->message : "ok");
    ns_client_free(c);
    k->sc = NULL;
}

static void plive_on_setup(ns_client *c, const ns_error *err, const ns_mutation_result *rs,
                           size_t n, void *ud)
{
    (void)c;
    lg_plive *k = ud;
    if (k->phase != PL_SETUP)
        return;
    if (err || lg_first_bad(rs, n) != n) {
        plive_fail(k, "the plan's records: %s",
                   err ? err->message : rs[lg_first_bad(rs, n)].reject_reason);
        return;
    }
    k->phase = PL_CATCHUP;
    const char *plans[1] = {k->d.recs[0].id};
    ns_sync_options so = {
        .plan_ids = plans, .nplans = 1, .watch = 1, .on_event = plive_on_event, .event_ud = k};
    ns_error e;
    if (ns_client_sync(k->sc, &so, plive_on_synced, k, &e) != NS_OK)
        plive_fail(k, "the subscriber's sync: %s", e.message);
}

static void plive_on_writer(ns_client *c, const ns_error *err, void *ud)
{
    lg_plive *k = ud;
    if (err) {
        plive_fail(k, "the writer: connect: %s", err->message);
        return;
    }
    /* Everything but the reports, in one push. */
    ns_mutation *m = calloc(k->d.n, sizeof(*m));
    if (m == NULL)
        lg_die("out of memory");
    size_t n = 0;
    for (size_t i = 0; i < k->d.n; i++)
        if (strcmp(k->d.recs[i].entity_type, "indicator_report") != 0)
            m[n++] = lg_rec_mutation(&k->d.recs[i], &k->fv[i * LG_REC_MAX_FIELDS]);
    ns_error e;
    if (n > NS_MAX_PUSH_BATCH)
        plive_fail(k, "more than %d records besides the reports", NS_MAX_PUSH_BATCH);
    else if (ns_client_push_batch(c, NS_PUSH_APPLY, m, n, plive_on_setup, k, &e) != NS_OK)
        plive_fail(k, "the plan's records: %s", e.message);
    free(m);
}

static int lg_cmd_peer_live(const lg_opts *o)
{
    struct stat sb;
    if (stat(o->store, &sb) == 0)
        lg_die("peer-live: --store %s exists: the store must be new", o->store);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        lg_die("uv_loop_init failed");
    lg_plive k = {.loop = &loop, .o = o, .total = o->writes + 1};
    lg_data_load(o->data, &k.d);
    k.fv = calloc(k.d.n * LG_REC_MAX_FIELDS, sizeof(*k.fv));
    k.reports = calloc(k.d.n, sizeof(*k.reports));
    if (k.fv == NULL || k.reports == NULL)
        lg_die("out of memory");
    for (size_t i = 0; i < k.d.n; i++)
        if (strcmp(k.d.recs[i].entity_type, "indicator_report") == 0)
            k.reports[k.nreports++] = i;
    if (k.nreports < k.total)
        lg_die("peer-live: %zu reports in --data, %u needed", k.nreports, k.total);
    if (uv_timer_init(&loop, &k.timer) != 0)
        lg_die("uv_timer_init failed");
    k.timer.data = &k;
    k.timer_open = true;
    k.sc = lg_client_new(o, &loop, o->device, o->store);
    k.wc = lg_client_new(o, &loop, o->writer, NULL);
    ns_error err;
    if (ns_client_connect(k.wc, plive_on_writer, &k, &err) != NS_OK)
        plive_fail(&k, "the writer: connect: %s", err.message);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = 1;
    if (!k.failed && k.done) {
        printf("mode=peer-live writes=%zu", k.lat.n);
        lg_print_pcts(&k.lat, "latency");
        lg_print_pcts(&k.ack, "ack");
        printf(" disconnects=%u\n", k.disconnects);
        rc = 0;
    } else if (!k.failed) {
        fprintf(stderr, "napsync-loadgen: peer-live: ended before the last write arrived\n");
    }
    lg_loop_close(&loop);
    free(k.lat.us);
    free(k.ack.us);
    free(k.fv);
    free(k.reports);
    lg_data_free(&k.d);
    return rc;
}

/* ---- command line --------------------------------------------------------------------------- */

static void lg_usage(FILE *f)
{
    fputs(
        "usage: napsync-loadgen push|seed|catchup|fanout|conns|storm-prepare|storm|\n"
        "                       peer-prepare|peer-push|peer-live OPTIONS\n"
        "\n"
        "common:  --server HOST:PORT --ca FILE --certs DIR   (DIR/NAME.crt and .key)\n"
        "         [--timeout-ms MS] [--server-pid PID] [--status draft|adopted]\n"
        "         [--prefix bench-] [--first I] [--devices D (client i: device first + i mod D)]\n"
        "push:    --clients N --batch B (--duration S [--warmup S] | --pushes P)\n"
        "seed:    --device NAME --changes K [--batch B]\n"
        "catchup: --device NAME --plan ID --expect RECORDS [--store FILE (a sync into it)]\n"
        "fanout:  --clients N --writer NAME --stores DIR --writes W [--gap-ms G] [--window K]\n"
        "         [--procs P (subscriber processes; default: the online CPUs)]\n"
        "conns:   --clients N [--window K] [--hold S]\n"
        "storm-prepare: --clients N --stores DIR --changes K [--window K]\n"
        "storm:   --clients N --stores DIR --changes K --pinger NAME [--ping-ms MS]\n"
        "peer-prepare: --device NAME --data FILE.tsv --store FILE (new)\n"
        "peer-push: --device NAME --plan ID --expect RECORDS --store FILE (prepared)\n"
        "peer-live: --device NAME --writer NAME --data FILE.tsv --store FILE (new) --writes W\n"
        "           [--gap-ms G]\n",
        f);
}

static uint64_t lg_num(const char *flag, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        lg_die("%s: expected a whole number from %" PRIu64 " to %" PRIu64 ", got \"%s\"", flag, min,
               max, s);
    return v;
}

static double lg_secs(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 3600))
        lg_die("%s: expected seconds from 0 to 3600, got \"%s\"", flag, s);
    return v;
}

static void lg_parse(int argc, char **argv, lg_opts *o)
{
    if (argc < 2) {
        lg_usage(stderr);
        exit(2);
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        lg_usage(stdout);
        exit(0);
    }
    if (strcmp(argv[1], "push") == 0)
        o->mode = LG_PUSH;
    else if (strcmp(argv[1], "seed") == 0)
        o->mode = LG_SEED;
    else if (strcmp(argv[1], "catchup") == 0)
        o->mode = LG_CATCHUP;
    else if (strcmp(argv[1], "fanout") == 0)
        o->mode = LG_FANOUT;
    else if (strcmp(argv[1], "conns") == 0)
        o->mode = LG_CONNS;
    else if (strcmp(argv[1], "storm-prepare") == 0)
        o->mode = LG_STORM_PREP;
    else if (strcmp(argv[1], "storm") == 0)
        o->mode = LG_STORM;
    else if (strcmp(argv[1], "peer-prepare") == 0)
        o->mode = LG_PEER_PREP;
    else if (strcmp(argv[1], "peer-push") == 0)
        o->mode = LG_PEER_PUSH;
    else if (strcmp(argv[1], "peer-live") == 0)
        o->mode = LG_PEER_LIVE;
    else
        lg_die("unknown command \"%s\" (see napsync-loadgen --help)", argv[1]);
    for (int i = 2; i < argc; i += 2) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            lg_die("%s needs a value", f);
        if (strcmp(f, "--server") == 0)
            o->server = v;
        else if (strcmp(f, "--ca") == 0)
            o->ca = v;
        else if (strcmp(f, "--certs") == 0)
            o->certs = v;
        else if (strcmp(f, "--prefix") == 0)
            o->prefix = v;
        else if (strcmp(f, "--device") == 0)
            o->device = v;
        else if (strcmp(f, "--clients") == 0)
            o->clients = (unsigned)lg_num(f, v, 1, LG_MAX_CLIENTS);
        else if (strcmp(f, "--first") == 0)
            o->first = (unsigned)lg_num(f, v, 0, 9999);
        else if (strcmp(f, "--batch") == 0)
            o->batch = (unsigned)lg_num(f, v, 1, NS_MAX_PUSH_BATCH);
        else if (strcmp(f, "--duration") == 0)
            o->duration_s = lg_secs(f, v);
        else if (strcmp(f, "--warmup") == 0)
            o->warmup_s = lg_secs(f, v);
        else if (strcmp(f, "--pushes") == 0)
            o->pushes = lg_num(f, v, 1, 100000000);
        else if (strcmp(f, "--changes") == 0)
            o->changes = lg_num(f, v, 0, 100000000);
        else if (strcmp(f, "--status") == 0)
            o->status = v;
        else if (strcmp(f, "--plan") == 0)
            o->plan = v;
        else if (strcmp(f, "--expect") == 0)
            o->expect = lg_num(f, v, 0, 1000000000);
        else if (strcmp(f, "--store") == 0) {
            o->store = v;
            o->sync = true;
        } else if (strcmp(f, "--server-pid") == 0)
            o->server_pid = (long)lg_num(f, v, 1, 4194304);
        else if (strcmp(f, "--timeout-ms") == 0)
            o->timeout_ms = (uint32_t)lg_num(f, v, 1, 3600000);
        else if (strcmp(f, "--devices") == 0)
            o->devices = (unsigned)lg_num(f, v, 1, 10000);
        else if (strcmp(f, "--writer") == 0)
            o->writer = v;
        else if (strcmp(f, "--pinger") == 0)
            o->pinger = v;
        else if (strcmp(f, "--stores") == 0)
            o->stores = v;
        else if (strcmp(f, "--writes") == 0)
            o->writes = (unsigned)lg_num(f, v, 1, 100000);
        else if (strcmp(f, "--gap-ms") == 0)
            o->gap_ms = (unsigned)lg_num(f, v, 0, 60000);
        else if (strcmp(f, "--procs") == 0)
            o->procs = (unsigned)lg_num(f, v, 1, FAN_MAX_PROCS);
        else if (strcmp(f, "--window") == 0)
            o->window = (unsigned)lg_num(f, v, 1, LG_MAX_CLIENTS);
        else if (strcmp(f, "--ping-ms") == 0)
            o->ping_ms = (unsigned)lg_num(f, v, 1, 60000);
        else if (strcmp(f, "--hold") == 0)
            o->hold_s = lg_secs(f, v);
        else if (strcmp(f, "--data") == 0)
            o->data = v;
        else
            lg_die("unknown option %s (see napsync-loadgen --help)", f);
    }
    if (!o->server || !o->ca || !o->certs)
        lg_die("--server, --ca and --certs are required");
    if (strcmp(o->status, "draft") != 0 && strcmp(o->status, "adopted") != 0)
        lg_die("--status: draft or adopted");
    unsigned ndev = o->devices ? o->devices : o->clients;
    if (o->first + (ndev < o->clients ? ndev : o->clients) > 10000)
        lg_die("device indexes run from 0 to 9999 (--first, --clients, --devices)");
    switch (o->mode) {
    case LG_PUSH:
        if (o->clients == 0 || o->batch == 0)
            lg_die("push: --clients and --batch are required");
        if (o->pushes == 0 && o->duration_s <= 0)
            lg_die("push: --duration S or --pushes P is required");
        break;
    case LG_SEED:
        if (!o->device)
            lg_die("seed: --device is required");
        if (o->batch == 0)
            o->batch = LG_SEED_BATCH;
        break;
    case LG_FANOUT:
        if (o->clients == 0 || !o->writer || !o->stores || o->writes == 0)
            lg_die("fanout: --clients, --writer, --stores and --writes are required");
        break;
    case LG_CONNS:
        if (o->clients == 0)
            lg_die("conns: --clients is required");
        break;
    case LG_STORM_PREP:
    case LG_STORM:
        if (o->clients == 0 || !o->stores || o->changes == 0)
            lg_die("storm: --clients, --stores and --changes are required");
        if (o->mode == LG_STORM && !o->pinger)
            lg_die("storm: --pinger is required");
        break;
    case LG_CATCHUP:
        if (!o->device || !o->plan)
            lg_die("catchup: --device and --plan are required");
        if (!lg_is_uuid(o->plan))
            lg_die("catchup: --plan must be a lowercase UUID");
        if (o->expect == 0)
            lg_die("catchup: --expect RECORDS is required (the plan counts as one)");
        break;
    case LG_PEER_PREP:
        if (!o->device || !o->data || !o->store)
            lg_die("peer-prepare: --device, --data and --store are required");
        break;
    case LG_PEER_PUSH:
        if (!o->device || !o->plan || !o->store || o->expect == 0)
            lg_die("peer-push: --device, --plan, --expect and --store are required");
        if (!lg_is_uuid(o->plan))
            lg_die("peer-push: --plan must be a lowercase UUID");
        break;
    case LG_PEER_LIVE:
        if (!o->device || !o->writer || !o->data || !o->store || o->writes == 0)
            lg_die("peer-live: --device, --writer, --data, --store and --writes are required");
        break;
    }
}

int main(int argc, char **argv)
{
    /* A server that vanishes mid-write must fail that client, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    /* Results are read by a script: line-buffered even into a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    lg_opts o = {.prefix = "bench-",
                 .status = "draft",
                 .timeout_ms = 120000,
                 .warmup_s = 2,
                 .gap_ms = 200,
                 .window = 64,
                 .ping_ms = 10,
                 .hold_s = 2};
    lg_parse(argc, argv, &o);
    lg_rand_init();
    switch (o.mode) {
    case LG_PUSH:
        return lg_cmd_push(&o);
    case LG_SEED:
        return lg_cmd_seed(&o);
    case LG_CATCHUP:
        return lg_cmd_catchup(&o);
    case LG_FANOUT:
        return lg_cmd_fanout(&o);
    case LG_CONNS:
        return lg_cmd_conns(&o);
    case LG_STORM_PREP:
        return lg_cmd_storm(&o, true);
    case LG_STORM:
        return lg_cmd_storm(&o, false);
    case LG_PEER_PREP:
        return lg_cmd_peer_prepare(&o);
    case LG_PEER_PUSH:
        return lg_cmd_peer_push(&o);
    case LG_PEER_LIVE:
        return lg_cmd_peer_live(&o);
    }
    return 2;
}
