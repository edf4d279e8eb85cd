/* napsync-loadgen: the benchmark suite's load generator (tests/bench/run.sh
 * drives it; docs/benchmarks.md has its figures).
 *
 * Every client is an ns_client on ONE libuv loop, this process's only
 * thread: the load is many devices' sessions multiplexed the way a real
 * server sees them, not one thread per client. It speaks only the public
 * libnapsync API (napsync.h).
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
 *
 * Devices are certificates DIR/PREFIXnnnn.crt and .key (deploy/ca.sh device
 * DIR PREFIXnnnn), registered beforehand (napsync_register_device). Results
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
#include <unistd.h>

#include <uv.h>

#include "napsync.h"

#define LG_PATH        512
#define LG_UUID        37
#define LG_MAX_CLIENTS 4096
/* Seeding keeps a few pushes in flight so that the engine's group commit
 * has work queued; the per-session order of answers is kept by the server. */
#define LG_SEED_INFLIGHT 4
#define LG_SEED_BATCH    1000
/* Fields of one indicator create (plan_id, title, value_type). */
#define LG_IND_FIELDS  3
#define LG_PLAN_FIELDS 5

typedef enum { LG_PUSH, LG_SEED, LG_CATCHUP } lg_mode;

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
} lg_opts;

/* ---- small helpers -------------------------------------------------------------------------- */

static void lg_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void lg_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("napsync-loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t lg_now_ns(void)
{
    return uv_hrtime();
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
    fputs("napsync-loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
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
    if (r->timer_open) {
        r->timer_open = false;
        uv_close((uv_handle_t *)&r->timer, NULL);
    }
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
 * organisation, set by the engine. */
static void lg_push_plan(lg_client *k, const char *status, ns_push_batch_cb cb)
{
    static const char *period_start = "2024-01-01", *period_end = "2028-12-31";
    char title[96];
    snprintf(title, sizeof(title), "Load test plan of %s", k->name);
    lg_uuid(k->plan_id);
    ns_field_view f[LG_PLAN_FIELDS] = {
        {.name = "title", .kind = "text", .value = title},
        {.name = "kind", .kind = "text", .value = "nap"},
        {.name = "status", .kind = "text", .value = status},
        {.name = "period_start", .kind = "date", .value = period_start},
        {.name = "period_end", .kind = "date", .value = period_end},
    };
    ns_mutation m = {
        .entity_type = "plan",
        .record_id = k->plan_id,
        .op = NS_MUTATION_CREATE,
        .fields = f,
        .nfields = LG_PLAN_FIELDS,
    };
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
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "napsync-loadgen: the loop still had handles at the end\n");
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
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "napsync-loadgen: the loop still had handles at the end\n");
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
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "napsync-loadgen: the loop still had handles at the end\n");
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

/* ---- command line --------------------------------------------------------------------------- */

static void lg_usage(FILE *f)
{
    fputs("usage: napsync-loadgen push|seed|catchup OPTIONS\n"
          "\n"
          "common:  --server HOST:PORT --ca FILE --certs DIR   (DIR/NAME.crt and .key)\n"
          "         [--timeout-ms MS] [--server-pid PID] [--status draft|adopted]\n"
          "push:    --clients N --batch B [--prefix bench-] [--first I]\n"
          "         (--duration S [--warmup S] | --pushes P)\n"
          "seed:    --device NAME --changes K [--batch B]\n"
          "catchup: --device NAME --plan ID --expect RECORDS [--store FILE (a sync into it)]\n",
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
    else
        lg_die("unknown command \"%s\" (push, seed or catchup)", argv[1]);
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
        else
            lg_die("unknown option %s (see napsync-loadgen --help)", f);
    }
    if (!o->server || !o->ca || !o->certs)
        lg_die("--server, --ca and --certs are required");
    if (strcmp(o->status, "draft") != 0 && strcmp(o->status, "adopted") != 0)
        lg_die("--status: draft or adopted");
    switch (o->mode) {
    case LG_PUSH:
        if (o->clients == 0 || o->batch == 0)
            lg_die("push: --clients and --batch are required");
        if (o->pushes == 0 && o->duration_s <= 0)
            lg_die("push: --duration S or --pushes P is required");
        if (o->first + o->clients > 10000)
            lg_die("push: device indexes run from 0 to 9999");
        break;
    case LG_SEED:
        if (!o->device)
            lg_die("seed: --device is required");
        if (o->batch == 0)
            o->batch = LG_SEED_BATCH;
        break;
    case LG_CATCHUP:
        if (!o->device || !o->plan)
            lg_die("catchup: --device and --plan are required");
        if (!lg_is_uuid(o->plan))
            lg_die("catchup: --plan must be a lowercase UUID");
        if (o->expect == 0)
            lg_die("catchup: --expect RECORDS is required (the plan counts as one)");
        break;
    }
}

int main(int argc, char **argv)
{
    /* A server that vanishes mid-write must fail that client, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    /* Results are read by a script: line-buffered even into a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    lg_opts o = {.prefix = "bench-", .status = "draft", .timeout_ms = 120000, .warmup_s = 2};
    lg_parse(argc, argv, &o);
    lg_rand_init();
    switch (o.mode) {
    case LG_PUSH:
        return lg_cmd_push(&o);
    case LG_SEED:
        return lg_cmd_seed(&o);
    case LG_CATCHUP:
        return lg_cmd_catchup(&o);
    }
    return 2;
}
