/* napsync-faultclient: one device of the fault-injection test
 * (tests/faults/test_faults.c), as a process of its own on libnapsync's
 * public API, with its own store. It edits and syncs at random until
 * SIGTERM, and tells the test what it did through two files:
 *
 *  - LOG (appended, one line per event, each line one write(2)):
 *      start N                       started, the Nth time
 *      saved MID TYPE RID            ns_client_put returned NS_OK: the
 *                                    change MID is saved on the device
 *      found MID TYPE RID            at start: MID was in the outbox but not
 *                                    in the log (the process died between
 *                                    the put's commit and its log line)
 *      putfail STATUS MESSAGE        ns_client_put failed
 *      sync ok PUSHED REJECTED RECEIVED DISCONNECTS   (a one-shot sync; it
 *                                    reconnected DISCONNECTS times on the way)
 *      sync fail STATUS MESSAGE
 *      lost STATUS MESSAGE           a sync's connection was lost (it goes on)
 *      watch ok PUSHED REJECTED RECEIVED DISCONNECTS   (a watching sync,
 *                                    stopped; it reconnected DISCONNECTS times)
 *      watch fail STATUS MESSAGE
 *      openfail STATUS MESSAGE       ns_client_new failed (retried)
 *      stop                          SIGTERM honoured
 *  - PHASE (a shared mapping of a few bytes): byte 0 is what the process is
 *    doing now, so that the test can kill it in the middle of a put or a
 *    sync and know where the kill fell: 0 idle, 1 put, 2 sync, 3 offline,
 *    4 opening the store.
 *
 * Edits set unique values ("d<dev>.s<start>.n<k>"), so every change that
 * is applied or merged makes exactly one revision on the server. Most
 * edits go to records this principal changed last (--principal), the rest
 * anywhere, so that some changes conflict and most apply.
 *
 * Modes: mixed (puts, one-shot syncs that stay connected or not, offline
 * pauses), put (puts only), sync (a few puts, then a sync), watch (a
 * watching sync for a few seconds, with puts made while it runs, which it
 * pushes as they are saved; then offline, and again).
 *
 * Usage: napsync-faultclient --server H:P --ca F --cert F --key F
 *          --store F --log F --phase F --dev N --start N --seed N
 *          [--principal NAME] [--timeout MS] [--mode mixed|put|sync|watch]
 *          [--think-ms MS] [--offline-ms MS] */
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
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "napsync.h"
#include "wps.h"

enum { PH_IDLE = 0, PH_PUT = 1, PH_SYNC = 2, PH_OFFLINE = 3, PH_OPEN = 4 };
enum { MODE_MIXED, MODE_PUT, MODE_SYNC, MODE_WATCH };

#define MAX_RECORDS 512
#define MAX_PLANS   8
#define MAX_IND     48
#define NTAGS       6

typedef struct {
    const char *server, *ca, *cert, *key, *store, *log, *phase_path, *principal;
    unsigned dev, start;
    uint64_t seed;
    uint32_t timeout_ms;
    int mode;
    unsigned think_ms, offline_ms;
} options;

typedef struct {
    char id[40];
    char tags[128]; /* the set's text form */
    bool mine;      /* this principal changed it last */
} rec;

typedef struct {
    options o;
    int log_fd;
    volatile uint8_t *phase;
    uint64_t rng;
    ns_client *c;
    uint64_t edits;
    rec plans[MAX_RECORDS], inds[MAX_RECORDS];
    size_t nplans, ninds;
    /* On the client's loop while a sync runs: puts (watch mode), the end
     * of a watch, and a check for SIGTERM, which ends any sync at once. */
    uv_timer_t put_timer, stop_timer, term_timer;
    bool timers;
    uint64_t disconnects; /* of the sync running */
} driver;

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static uint64_t rnd(driver *d)
{
    uint64_t z = (d->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned below(driver *d, unsigned n)
{
    return n ? (unsigned)(rnd(d) % n) : 0;
}

static void set_phase(driver *d, uint8_t ph)
{
    __atomic_store_n(d->phase, ph, __ATOMIC_SEQ_CST);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stopping)
        ;
}

/* One line, one write: a kill leaves whole lines, or none. Newlines and
 * other control characters in messages become spaces. */
__attribute__((format(printf, 2, 3))) static void logf_line(driver *d, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 2;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] < 0x20)
            line[i] = ' ';
    line[len++] = '\n';
    for (size_t off = 0; off < len;) {
        ssize_t w = write(d->log_fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror("faultclient: log");
            exit(1);
        }
        off += (size_t)w;
    }
}

/* ---- options ------------------------------------------------------------------------ */

__attribute__((noreturn)) static void usage(const char *why)
{
    fprintf(stderr, "napsync-faultclient: %s (see tests/faults/faultclient.c)\n", why);
    exit(2);
}

static uint64_t number(const char *s, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v > max)
        usage("bad number");
    return v;
}

static void parse(options *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 2000;
    o->think_ms = 60;
    o->offline_ms = 1500;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            usage("an option without its value");
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--server") == 0)
            o->server = v;
        else if (strcmp(k, "--ca") == 0)
            o->ca = v;
        else if (strcmp(k, "--cert") == 0)
            o->cert = v;
        else if (strcmp(k, "--key") == 0)
            o->key = v;
        else if (strcmp(k, "--store") == 0)
            o->store = v;
        else if (strcmp(k, "--log") == 0)
            o->log = v;
        else if (strcmp(k, "--phase") == 0)
            o->phase_path = v;
        else if (strcmp(k, "--dev") == 0)
            o->dev = (unsigned)number(v, 1000);
        else if (strcmp(k, "--start") == 0)
            o->start = (unsigned)number(v, 1000000);
        else if (strcmp(k, "--seed") == 0)
            o->seed = number(v, UINT64_MAX);
        else if (strcmp(k, "--timeout") == 0)
            o->timeout_ms = (uint32_t)number(v, 3600000);
        else if (strcmp(k, "--think-ms") == 0)
            o->think_ms = (unsigned)number(v, 60000);
        else if (strcmp(k, "--offline-ms") == 0)
            o->offline_ms = (unsigned)number(v, 600000);
        else if (strcmp(k, "--mode") == 0 && strcmp(v, "mixed") == 0)
            o->mode = MODE_MIXED;
        else if (strcmp(k, "--mode") == 0 && strcmp(v, "put") == 0)
            o->mode = MODE_PUT;
        else if (strcmp(k, "--mode") == 0 && strcmp(v, "sync") == 0)
            o->mode = MODE_SYNC;
        else if (strcmp(k, "--mode") == 0 && strcmp(v, "watch") == 0)
            o->mode = MODE_WATCH;
        else if (strcmp(k, "--principal") == 0)
            o->principal = v;
        else
            usage("unknown option");
    }
    if (!o->server || !o->ca || !o->cert || !o->key || !o->store || !o->log || !o->phase_path)
        usage("--server, --ca, --cert, --key, --store, --log and --phase are required");
}

/* ---- the store ---------------------------------------------------------------------- */

/* Ids already in the log, as one string of "MID\n" lines. */
static char *logged_ids(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t cap = 4096, len = 0;
    char *ids = calloc(1, cap);
    if (ids == NULL)
        exit(1);
    if (f == NULL)
        return ids;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        char mid[40];
        if (sscanf(line, "saved %39s", mid) != 1 && sscanf(line, "found %39s", mid) != 1)
            continue;
        if (len + 42 > cap) {
            cap *= 2;
            char *grown = realloc(ids, cap);
            if (grown == NULL)
                exit(1);
            ids = grown;
        }
        len += (size_t)snprintf(ids + len, cap - len, "%s\n", mid);
    }
    fclose(f);
    return ids;
}

typedef struct {
    driver *d;
    const char *ids;
} reconcile_ctx;

static int reconcile_one(const ns_outbox_view *e, void *ud)
{
    reconcile_ctx *x = ud;
    char needle[44];
    snprintf(needle, sizeof(needle), "%s\n", e->mutation_id);
    if (strstr(x->ids, needle) == NULL)
        logf_line(x->d, "found %s %s %s", e->mutation_id, e->entity_type, e->record_id);
    return 0;
}

/* Opens the store (retrying while it cannot: a full disk, say) and logs
 * the changes it holds that the log does not know. */
static bool open_store(driver *d)
{
    ns_client_options co = {
        .server = d->o.server,
        .ca_file = d->o.ca,
        .cert_file = d->o.cert,
        .key_file = d->o.key,
        .timeout_ms = d->o.timeout_ms,
        .client_name = "napsync-faultclient",
        .store_path = d->o.store,
    };
    set_phase(d, PH_OPEN);
    while (!stopping) {
        ns_error err;
        if (ns_client_new(&co, NULL, &d->c, &err) == NS_OK)
            break;
        logf_line(d, "openfail %s %s", ns_status_name(err.status), err.message);
        d->c = NULL;
        sleep_ms(200);
    }
    if (d->c == NULL)
        return false;
    char *ids = logged_ids(d->o.log);
    reconcile_ctx x = {d, ids};
    ns_error err;
    int rc = ns_client_outbox(d->c, reconcile_one, &x, &err);
    free(ids);
    if (rc != NS_OK) {
        /* Without the outbox the log could miss a saved change: stop, the
         * test restarts or reports it. */
        logf_line(d, "openfail %s outbox: %s", ns_status_name(err.status), err.message);
        return false;
    }
    set_phase(d, PH_IDLE);
    return true;
}

static int collect(const ns_record_view *r, void *ud)
{
    driver *d = ud;
    bool plan = strcmp(r->entity_type, "plan") == 0;
    rec *list = plan ? d->plans : d->inds;
    size_t *n = plan ? &d->nplans : &d->ninds;
    if (r->deleted || *n >= MAX_RECORDS)
        return 0;
    rec *x = &list[(*n)++];
    snprintf(x->id, sizeof(x->id), "%s", r->id);
    x->mine = d->o.principal && strcmp(r->changed_by, d->o.principal) == 0;
    x->tags[0] = '\0';
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, "tags") == 0 && r->fields[i].value)
            snprintf(x->tags, sizeof(x->tags), "%s", r->fields[i].value);
    return 0;
}

static bool load_view(driver *d)
{
    ns_error err;
    d->nplans = d->ninds = 0;
    if (ns_client_list(d->c, "plan", 0, collect, d, &err) != NS_OK ||
        ns_client_list(d->c, "indicator", 0, collect, d, &err) != NS_OK) {
        logf_line(d, "putfail %s listing: %s", ns_status_name(err.status), err.message);
        return false;
    }
    return true;
}

/* The set with tag tN toggled. */
static void toggle_tag(char *out, size_t cap, const char *set, unsigned n)
{
    char tag[8];
    snprintf(tag, sizeof(tag), "t%u", n);
    size_t len = (size_t)snprintf(out, cap, "tags:set=");
    bool had = false;
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", set);
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, tag) == 0) {
            had = true;
            continue;
        }
        len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s",
                                out[len - 1] == '=' ? "" : ",", t);
    }
    if (!had)
        snprintf(out + len, len < cap ? cap - len : 0, "%s%s", out[len - 1] == '=' ? "" : ",", tag);
}

/* Mostly one of the records this principal changed last (a pending local
 * edit counts: the view shows it), else any. n > 0. */
static const rec *pick(driver *d, const rec *list, size_t n)
{
    if (below(d, 100) < 80) {
        size_t mine = 0;
        for (size_t i = 0; i < n; i++)
            mine += list[i].mine;
        if (mine > 0) {
            size_t k = below(d, (unsigned)mine);
            for (size_t i = 0; i < n; i++)
                if (list[i].mine && k-- == 0)
                    return &list[i];
        }
    }
    return &list[below(d, (unsigned)n)];
}

static void do_put(driver *d)
{
    if (!load_view(d))
        return;
    char unique[64], title[96], summary[96], tags[160], ref[64];
    snprintf(unique, sizeof(unique), "d%u.s%u.n%" PRIu64, d->o.dev, d->o.start, d->edits++);
    const char *assign[8];
    size_t n = 0;
    const char *type, *id = NULL;
    unsigned r = below(d, 100);
    if (d->nplans == 0 || (r < 3 && d->nplans < MAX_PLANS)) {
        type = "plan";
        snprintf(title, sizeof(title), "title:text=Plan %s", unique);
        assign[n++] = title;
        assign[n++] = "status:text=draft";
        assign[n++] = "kind:text=" NST_PLAN_KIND;
        assign[n++] = "period_start:date=" NST_PLAN_START;
        assign[n++] = "period_end:date=" NST_PLAN_END;
    } else if (r < 10 && d->ninds < MAX_IND) {
        type = "indicator";
        snprintf(ref, sizeof(ref), "plan_id:ref=%s", d->plans[below(d, (unsigned)d->nplans)].id);
        snprintf(title, sizeof(title), "title:text=Indicator %s", unique);
        assign[n++] = ref;
        assign[n++] = title;
        assign[n++] = "value_type:text=" NST_INDICATOR_TYPE;
    } else {
        bool plan = d->ninds == 0 || below(d, 100) < 60;
        const rec *x = pick(d, plan ? d->plans : d->inds, plan ? d->nplans : d->ninds);
        type = plan ? "plan" : "indicator";
        id = x->id;
        snprintf(title, sizeof(title), "title:text=%s %s", plan ? "Plan" : "Indicator", unique);
        assign[n++] = title;
        if (plan && below(d, 100) < 40) {
            snprintf(summary, sizeof(summary), "summary:text=Summary %s", unique);
            assign[n++] = summary;
        }
        if (below(d, 100) < 30) {
            toggle_tag(tags, sizeof(tags), x->tags, below(d, NTAGS));
            assign[n++] = tags;
        }
    }
    ns_edit_result res;
    ns_error err;
    set_phase(d, PH_PUT);
    int rc = ns_client_put(d->c, type, id, assign, n, &res, &err);
    if (rc == NS_OK)
        logf_line(d, "saved %s %s %s", res.mutation_id, type, res.record_id);
    else
        logf_line(d, "putfail %s %s", ns_status_name(err.status), err.message);
    set_phase(d, PH_IDLE);
}

static void on_event(ns_client *c, const ns_sync_event *ev, void *ud)
{
    (void)c;
    driver *d = ud;
    if (ev->kind != NS_SYNC_DISCONNECTED)
        return;
    d->disconnects++;
    if (ev->err)
        logf_line(d, "lost %s %s", ns_status_name(ev->err->status), ev->err->message);
}

static void on_term_timer(uv_timer_t *t)
{
    driver *d = t->data;
    if (stopping)
        ns_client_sync_stop(d->c); /* NS_ERR_STATE once it is over */
}

static void on_put_timer(uv_timer_t *t);
static void on_stop_timer(uv_timer_t *t);

/* One sync (watch: a watching one that on_stop_timer ends), with the
 * SIGTERM check running; returns its status. */
static int run_sync(driver *d, bool watch, ns_sync_stats *st, ns_error *err)
{
    if (!d->timers) {
        uv_loop_t *loop = ns_client_loop(d->c);
        uv_timer_init(loop, &d->put_timer);
        uv_timer_init(loop, &d->stop_timer);
        uv_timer_init(loop, &d->term_timer);
        d->put_timer.data = d->stop_timer.data = d->term_timer.data = d;
        d->timers = true;
    }
    ns_sync_options so;
    memset(&so, 0, sizeof(so));
    so.watch = watch;
    so.on_event = on_event;
    so.event_ud = d;
    d->disconnects = 0;
    set_phase(d, PH_SYNC);
    uv_timer_start(&d->term_timer, on_term_timer, 100, 100);
    if (watch) {
        uv_timer_start(&d->put_timer, on_put_timer, 1 + below(d, 4 * d->o.think_ms + 1), 0);
        uv_timer_start(&d->stop_timer, on_stop_timer, 1000 + below(d, 4001), 0);
    }
    int rc = ns_client_sync_wait(d->c, &so, st, err);
    uv_timer_stop(&d->term_timer);
    uv_timer_stop(&d->put_timer);
    uv_timer_stop(&d->stop_timer);
    set_phase(d, PH_IDLE);
    return rc;
}

static void do_sync(driver *d)
{
    ns_sync_stats st;
    ns_error err;
    int rc = run_sync(d, false, &st, &err);
    if (rc == NS_OK)
        logf_line(d, "sync ok %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64, st.pushed, st.rejected,
                  st.received, d->disconnects);
    else
        logf_line(d, "sync fail %s %s", ns_status_name(err.status), err.message);
    if (rc != NS_OK || below(d, 2) == 0)
        (void)ns_client_disconnect_wait(d->c); /* NS_ERR_STATE when not connected */
}

/* Puts while the watching sync runs: it pushes them as they are saved. */
static void on_put_timer(uv_timer_t *t)
{
    driver *d = t->data;
    if (stopping)
        return; /* on_term_timer ends the sync */
    do_put(d);
    set_phase(d, PH_SYNC);
    uv_timer_start(&d->put_timer, on_put_timer, 1 + below(d, 4 * d->o.think_ms + 1), 0);
}

static void on_stop_timer(uv_timer_t *t)
{
    driver *d = t->data;
    ns_client_sync_stop(d->c);
}

/* A watching sync for one to five seconds. */
static void do_watch(driver *d)
{
    ns_sync_stats st;
    ns_error err;
    int rc = run_sync(d, true, &st, &err);
    if (rc == NS_OK)
        logf_line(d, "watch ok %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64, st.pushed,
                  st.rejected, st.received, d->disconnects);
    else
        logf_line(d, "watch fail %s %s", ns_status_name(err.status), err.message);
}

static void go_offline(driver *d)
{
    set_phase(d, PH_OFFLINE);
    (void)ns_client_disconnect_wait(d->c);
    sleep_ms(below(d, d->o.offline_ms + 1));
    set_phase(d, PH_IDLE);
}

int main(int argc, char **argv)
{
    driver d;
    memset(&d, 0, sizeof(d));
    parse(&d.o, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    d.rng = d.o.seed ^ ((uint64_t)d.o.dev << 40) ^ ((uint64_t)d.o.start * 0x9e3779b97f4a7c15ull);

    d.log_fd = open(d.o.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int pfd = open(d.o.phase_path, O_RDWR | O_CLOEXEC);
    if (d.log_fd < 0 || pfd < 0) {
        perror("faultclient: log or phase file");
        return 1;
    }
    void *map = mmap(NULL, 64, PROT_READ | PROT_WRITE, MAP_SHARED, pfd, 0);
    close(pfd);
    if (map == MAP_FAILED) {
        perror("faultclient: mmap");
        return 1;
    }
    d.phase = map;
    logf_line(&d, "start %u", d.o.start);
    if (!open_store(&d)) {
        ns_client_free(d.c);
        logf_line(&d, "stop");
        return stopping ? 0 : 1;
    }
    while (!stopping) {
        unsigned r = below(&d, 100);
        switch (d.o.mode) {
        case MODE_PUT:
            do_put(&d);
            break;
        case MODE_SYNC:
            for (unsigned k = below(&d, 3); k > 0; k--)
                do_put(&d);
            do_sync(&d);
            break;
        case MODE_WATCH:
            do_watch(&d);
            if (!stopping)
                go_offline(&d);
            break;
        default:
            if (r < 45)
                do_put(&d);
            else if (r < 85)
                do_sync(&d);
            else
                go_offline(&d);
        }
        if (d.o.think_ms)
            sleep_ms(below(&d, d.o.think_ms + 1));
    }
    set_phase(&d, PH_IDLE);
    if (d.timers) { /* closed by the loop run inside ns_client_free */
        uv_close((uv_handle_t *)&d.put_timer, NULL);
        uv_close((uv_handle_t *)&d.stop_timer, NULL);
        uv_close((uv_handle_t *)&d.term_timer, NULL);
    }
    ns_client_free(d.c);
    logf_line(&d, "stop");
    munmap(map, 64);
    close(d.log_fd);
    return 0;
}
