/* The scale tests' load and checks: see scaletest.h. */
#include "scaletest.h"

#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

/* Between a writer's rounds: enough to keep two shared cores usable. */
#define SC_PACE_MS 20
/* After a failed sync, before the next attempt (the test's own pacing;
 * the client has no backoff outside watch mode). */
#define SC_RETRY_MS  100
#define SC_TITLE     64
#define SC_ID        40
#define SC_MSG       512
#define SC_MAX_NOTES 16

typedef struct {
    char id[SC_ID];      /* mutation id */
    char plan_id[SC_ID]; /* the plan it renames (or creates) */
    char title[SC_TITLE];
    const char *device;
    uint64_t version; /* the version it makes */
    bool acked;       /* it left the outbox: the server answered it */
    bool answered;    /* sc_load_check: found in sync_mutations */
    int revisions;    /* sc_load_check: rows in sync_revisions */
} sc_mut;

typedef struct {
    sc_load *load;
    int index;
    nst_device dev;
    char store[NST_PATH];
    ns_client *c;
    pthread_t thread;
    bool started;
    uint64_t rng;
    char plan_ids[SC_PLANS][SC_ID];
    uint64_t plan_versions[SC_PLANS];
    sc_mut *muts;
    size_t nmuts, cap, first_unacked;
    uint64_t pending; /* outbox entries after the last sync */
    bool last_ok;     /* the last sync succeeded */
    _Atomic uint64_t acked;
    _Atomic uint64_t syncs_ok, syncs_failed;
    _Atomic bool done;
    char problem[SC_MSG]; /* a fatal one; under load->mu */
    char last_error[SC_MSG];
} sc_writer;

typedef struct {
    sc_load *load;
    nst_device dev;
    char store[NST_PATH];
    pthread_t thread;
    bool started;
    uv_loop_t loop;
    uv_async_t async;
    ns_client *c;
    _Atomic uint64_t connected, disconnected, caught_up, changes;
    /* 1: stop once the replica holds the sentinel; 2: stop now. Written
     * after the sentinel fields, so a reader that sees it sees them. */
    _Atomic int want_stop;
    char sentinel_id[SC_ID];
    char sentinel_title[SC_TITLE];
    _Atomic bool saw_sentinel;
    bool async_open; /* under load->mu: uv_async_send only while open */
    _Atomic bool done;
    char problem[SC_MSG];
    char last_error[SC_MSG];
} sc_watcher;

struct sc_load {
    nst_env *e;
    char server[64];
    pthread_mutex_t mu; /* the message buffers */
    _Atomic bool stop;
    sc_writer w[SC_MAX_WRITERS];
    int nwriters;
    sc_watcher watcher;
    sc_mut notes[SC_MAX_NOTES];
    size_t nnotes;
};

/* ---- small helpers ------------------------------------------------------------- */

static uint64_t sc_rng(uint64_t *s)
{
    /* xorshift64: only spreads the edits */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void sc_set(sc_load *l, char *dst, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sc_set(sc_load *l, char *dst, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&l->mu);
    va_start(ap, fmt);
    vsnprintf(dst, SC_MSG, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&l->mu);
}

/* The first fatal problem of a thread is kept; later ones follow from it. */
static void sc_problem(sc_load *l, char *dst, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sc_problem(sc_load *l, char *dst, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&l->mu);
    if (dst[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(dst, SC_MSG, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&l->mu);
}

static void sc_copy(sc_load *l, char *out, size_t cap, const char *src)
{
    pthread_mutex_lock(&l->mu);
    snprintf(out, cap, "%s", src);
    pthread_mutex_unlock(&l->mu);
}

static void sc_client_options(const sc_load *l, const nst_device *d, const char *store,
                              ns_client_options *o)
{
    memset(o, 0, sizeof(*o));
    o->server = l->server;
    o->ca_file = l->e->ca_cert;
    o->cert_file = d->cert;
    o->key_file = d->key;
    o->timeout_ms = NST_WAIT_MS;
    o->client_name = "nst-scale";
    o->client_version = "1";
    o->store_path = store;
}

static const char *sc_field(const ns_record_view *r, const char *name)
{
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            return r->fields[i].value;
    return NULL;
}

/* ---- writers -------------------------------------------------------------------- */

static bool writer_ok(sc_writer *w)
{
    pthread_mutex_lock(&w->load->mu);
    bool ok = w->problem[0] == '\0';
    pthread_mutex_unlock(&w->load->mu);
    return ok;
}

static sc_mut *writer_add(sc_writer *w)
{
    if (w->nmuts == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        sc_mut *m = realloc(w->muts, cap * sizeof(*m));
        if (m == NULL) {
            sc_problem(w->load, w->problem, "out of memory");
            return NULL;
        }
        w->muts = m;
        w->cap = cap;
    }
    sc_mut *m = &w->muts[w->nmuts];
    memset(m, 0, sizeof(*m));
    m->device = w->dev.name;
    return m;
}

/* A local edit of plan p: its creation when it has no id yet. */
static void writer_edit(sc_writer *w, int p)
{
    sc_mut *m = writer_add(w);
    if (m == NULL)
        return;
    uint64_t version = w->plan_versions[p] + 1;
    snprintf(m->title, sizeof(m->title), "w%d plan %d rename %" PRIu64, w->index, p, version);
    char title[SC_TITLE + 8];
    snprintf(title, sizeof(title), "title=%s", m->title);
    const char *create[] = {title, "status:text=draft", NST_PLAN_ASSIGN};
    const char *rename[] = {title};
    bool creating = w->plan_ids[p][0] == '\0';
    ns_edit_result res;
    ns_error err;
    int rc = creating ? ns_client_put(w->c, "plan", NULL, create, 5, &res, &err)
                      : ns_client_put(w->c, "plan", w->plan_ids[p], rename, 1, &res, &err);
    if (rc != NS_OK) {
        sc_problem(w->load, w->problem, "ns_client_put: %s: %s", ns_status_name(err.status),
                   err.message);
        return;
    }
    if (creating)
        snprintf(w->plan_ids[p], SC_ID, "%s", res.record_id);
    if (res.created != creating || strcmp(res.record_id, w->plan_ids[p]) != 0) {
        sc_problem(w->load, w->problem, "ns_client_put of plan %s saved %s of %s", w->plan_ids[p],
                   res.created ? "a create" : "an update", res.record_id);
        return;
    }
    snprintf(m->id, sizeof(m->id), "%s", res.mutation_id);
    snprintf(m->plan_id, sizeof(m->plan_id), "%s", w->plan_ids[p]);
    m->version = version;
    w->plan_versions[p] = version;
    w->nmuts++;
}

typedef struct {
    sc_writer *w;
    char (*ids)[SC_ID];
    size_t n, cap;
} outbox_list;

static int collect_outbox(const ns_outbox_view *e, void *ud)
{
    outbox_list *l = ud;
    if (e->rejected) {
        sc_problem(l->w->load, l->w->problem, "the server refused mutation %s of plan %s: %s %s",
                   e->mutation_id, e->record_id, e->reject_code, e->reject_reason);
        return 1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char(*ids)[SC_ID] = realloc(l->ids, cap * sizeof(*ids));
        if (ids == NULL)
            return 1;
        l->ids = ids;
        l->cap = cap;
    }
    snprintf(l->ids[l->n++], SC_ID, "%s", e->mutation_id);
    return 0;
}

/* What left the outbox was answered by the server. */
static void writer_refresh(sc_writer *w)
{
    outbox_list l = {.w = w};
    ns_error err;
    if (ns_client_outbox(w->c, collect_outbox, &l, &err) != NS_OK) {
        sc_problem(w->load, w->problem, "ns_client_outbox: %s", err.message);
        free(l.ids);
        return;
    }
    w->pending = l.n;
    for (size_t i = w->first_unacked; i < w->nmuts; i++) {
        sc_mut *m = &w->muts[i];
        if (m->acked)
            continue;
        bool pending = false;
        for (size_t j = 0; j < l.n && !pending; j++)
            pending = strcmp(l.ids[j], m->id) == 0;
        if (!pending) {
            m->acked = true;
            atomic_fetch_add(&w->acked, 1);
        }
    }
    while (w->first_unacked < w->nmuts && w->muts[w->first_unacked].acked)
        w->first_unacked++;
    free(l.ids);
}

static int writer_sync(sc_writer *w)
{
    ns_sync_options o;
    memset(&o, 0, sizeof(o));
    ns_sync_stats st;
    ns_error err;
    int rc = ns_client_sync_wait(w->c, &o, &st, &err);
    writer_refresh(w);
    w->last_ok = rc == NS_OK;
    if (rc == NS_OK) {
        atomic_fetch_add(&w->syncs_ok, 1);
        /* A sync that succeeded has had every change of the outbox answered. */
        if (w->pending > 0)
            sc_problem(w->load, w->problem,
                       "a sync succeeded with %" PRIu64 " changes still in the outbox", w->pending);
    } else {
        atomic_fetch_add(&w->syncs_failed, 1);
        sc_set(w->load, w->last_error, "%s: %s", ns_status_name(err.status), err.message);
    }
    return rc;
}

/* Syncs until the outbox is empty and a sync has succeeded since. */
static void writer_drain(sc_writer *w)
{
    uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
    while (writer_ok(w) && (w->pending > 0 || !w->last_ok)) {
        if (nst_now_ms() > deadline) {
            char last[SC_MSG];
            sc_copy(w->load, last, sizeof(last), w->last_error);
            sc_problem(w->load, w->problem,
                       "%" PRIu64 " changes still in the outbox after %d ms (last error: %s)",
                       w->pending, SC_WAIT_MS, last);
            return;
        }
        if (writer_sync(w) != NS_OK)
            nst_sleep_ms(SC_RETRY_MS);
    }
}

static void *writer_main(void *arg)
{
    sc_writer *w = arg;
    sc_load *l = w->load;
    for (int p = 0; p < SC_PLANS && writer_ok(w); p++)
        writer_edit(w, p);
    while (!atomic_load(&l->stop) && writer_ok(w)) {
        int n = 1 + (int)(sc_rng(&w->rng) % 3);
        for (int i = 0; i < n && writer_ok(w); i++)
            writer_edit(w, (int)(sc_rng(&w->rng) % SC_PLANS));
        if (!writer_ok(w))
            break;
        nst_sleep_ms(writer_sync(w) == NS_OK ? SC_PACE_MS : SC_RETRY_MS);
    }
    writer_drain(w);
    atomic_store(&w->done, true);
    return NULL;
}

/* ---- the subscriber ---------------------------------------------------------------- */

typedef struct {
    const char *title;
    bool match;
} sentinel_probe;

static int probe_title(const ns_record_view *r, void *ud)
{
    sentinel_probe *p = ud;
    const char *t = sc_field(r, "title");
    p->match = t != NULL && strcmp(t, p->title) == 0;
    return 0;
}

/* On the watcher's loop: stop once the replica holds the sentinel. */
static void watcher_check(sc_watcher *w)
{
    if (atomic_load(&w->want_stop) != 1 || atomic_load(&w->saw_sentinel))
        return;
    sentinel_probe p = {w->sentinel_title, false};
    ns_error err;
    /* Not found (not synced yet) is an error here, and simply not a match. */
    (void)ns_client_get(w->c, "plan", w->sentinel_id, probe_title, &p, &err);
    if (p.match) {
        atomic_store(&w->saw_sentinel, true);
        (void)ns_client_sync_stop(w->c);
    }
}

static void watcher_event(ns_client *c, const ns_sync_event *ev, void *ud)
{
    (void)c;
    sc_watcher *w = ud;
    switch (ev->kind) {
    case NS_SYNC_CONNECTED:
        atomic_fetch_add(&w->connected, 1);
        break;
    case NS_SYNC_DISCONNECTED:
        atomic_fetch_add(&w->disconnected, 1);
        if (ev->err)
            sc_set(w->load, w->last_error, "%s: %s", ns_status_name(ev->err->status),
                   ev->err->message);
        break;
    case NS_SYNC_CAUGHT_UP:
        atomic_fetch_add(&w->caught_up, 1);
        watcher_check(w);
        break;
    case NS_SYNC_CHANGES:
        atomic_fetch_add(&w->changes, ev->count);
        watcher_check(w);
        break;
    default:
        break;
    }
}

/* On the watcher's loop, once: no wake-up can come after this. */
static void watcher_close_async(sc_watcher *w)
{
    pthread_mutex_lock(&w->load->mu);
    w->async_open = false;
    pthread_mutex_unlock(&w->load->mu);
    uv_close((uv_handle_t *)&w->async, NULL);
}

static void watcher_done(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud)
{
    (void)st;
    sc_watcher *w = ud;
    if (atomic_load(&w->want_stop) == 0)
        sc_problem(w->load, w->problem, "the watch ended by itself: %s: %s",
                   err ? ns_status_name(err->status) : "ok", err ? err->message : "");
    else if (err != NULL && err->status != NS_OK)
        sc_problem(w->load, w->problem, "the watch ended with %s: %s", ns_status_name(err->status),
                   err->message);
    ns_client_free(c);
    w->c = NULL;
    watcher_close_async(w);
}

static void watcher_wake(uv_async_t *a)
{
    sc_watcher *w = a->data;
    if (w->c == NULL)
        return;
    if (atomic_load(&w->want_stop) == 2)
        (void)ns_client_sync_stop(w->c);
    else
        watcher_check(w);
}

static void *watcher_main(void *arg)
{
    sc_watcher *w = arg;
    ns_client_options o;
    sc_client_options(w->load, &w->dev, w->store, &o);
    ns_error err;
    int rc = ns_client_new(&o, &w->loop, &w->c, &err);
    if (rc == NS_OK) {
        ns_sync_options so;
        memset(&so, 0, sizeof(so));
        so.watch = 1;
        so.on_event = watcher_event;
        so.event_ud = w;
        rc = ns_client_sync(w->c, &so, watcher_done, w, &err);
        if (rc != NS_OK) {
            ns_client_free(w->c);
            w->c = NULL;
        }
    }
    if (rc != NS_OK) {
        sc_problem(w->load, w->problem, "the subscriber could not start: %s: %s",
                   ns_status_name(err.status), err.message);
        watcher_close_async(w);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_store(&w->done, true);
    return NULL;
}

/* ---- the load ----------------------------------------------------------------------- */

static uint64_t sc_seed(void)
{
    const char *s = getenv("NS_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : nst_now_ms();
    return seed ? seed : 1;
}

static bool watcher_failed(sc_load *l, char *out, size_t cap)
{
    pthread_mutex_lock(&l->mu);
    bool failed = l->watcher.problem[0] != '\0';
    if (failed)
        snprintf(out, cap, "%s", l->watcher.problem);
    pthread_mutex_unlock(&l->mu);
    return failed;
}

void sc_load_start(const sc_load_opts *o, sc_load **out)
{
    assert_true(o->nwriters >= 1 && o->nwriters <= SC_MAX_WRITERS);
    sc_load *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    *out = l;
    l->e = o->e;
    snprintf(l->server, sizeof(l->server), "%s", o->server);
    pthread_mutex_init(&l->mu, NULL);
    uint64_t seed = sc_seed();
    fprintf(stderr, "scale: seed %" PRIu64 " (NS_TEST_SEED), %d writers through %s\n", seed,
            o->nwriters, l->server);

    sc_watcher *w = &l->watcher;
    w->load = l;
    w->dev = *o->watcher;
    char name[sizeof(w->dev.name) + 4];
    snprintf(name, sizeof(name), "%s.db", w->dev.name);
    if (nst_path_join(w->store, l->e->dir, name) != 0 || uv_loop_init(&w->loop) != 0 ||
        uv_async_init(&w->loop, &w->async, watcher_wake) != 0)
        nst_fail(l->e, "cannot set up the subscriber");
    w->async.data = w;
    w->async_open = true;
    assert_int_equal(pthread_create(&w->thread, NULL, watcher_main, w), 0);
    w->started = true;

    /* Writers start once the subscriber is in: it then sees every change
     * arrive through its subscription, not in its first pull. */
    char why[SC_MSG];
    uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
    while (atomic_load(&w->caught_up) == 0) {
        if (watcher_failed(l, why, sizeof(why)))
            nst_fail(l->e, "subscriber: %s", why);
        if (nst_now_ms() > deadline) {
            sc_copy(l, why, sizeof(why), w->last_error);
            nst_fail(l->e, "the subscriber did not catch up within %d ms (last error: %s)",
                     SC_WAIT_MS, why);
        }
        nst_sleep_ms(20);
    }

    l->nwriters = o->nwriters;
    for (int i = 0; i < l->nwriters; i++) {
        sc_writer *wr = &l->w[i];
        wr->load = l;
        wr->index = i;
        wr->dev = o->writers[i];
        wr->rng = seed * 2654435761u + (uint64_t)i * 40503u + 1u;
        snprintf(name, sizeof(name), "%s.db", wr->dev.name);
        ns_client_options co;
        ns_error err;
        if (nst_path_join(wr->store, l->e->dir, name) != 0)
            nst_fail(l->e, "store path too long");
        sc_client_options(l, &wr->dev, wr->store, &co);
        if (ns_client_new(&co, NULL, &wr->c, &err) != NS_OK)
            nst_fail(l->e, "writer %d: ns_client_new: %s", i, err.message);
        assert_int_equal(pthread_create(&wr->thread, NULL, writer_main, wr), 0);
        wr->started = true;
    }
}

void sc_load_wait_progress(sc_load *l, uint64_t n, const char *what)
{
    uint64_t target[SC_MAX_WRITERS];
    for (int i = 0; i < l->nwriters; i++)
        target[i] = atomic_load(&l->w[i].acked) + n;
    uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
    for (;;) {
        bool all = true;
        for (int i = 0; i < l->nwriters; i++) {
            sc_writer *w = &l->w[i];
            char problem[SC_MSG];
            sc_copy(l, problem, sizeof(problem), w->problem);
            if (problem[0])
                nst_fail(l->e, "%s: writer %d: %s", what, i, problem);
            all = all && atomic_load(&w->acked) >= target[i];
        }
        if (all)
            return;
        if (nst_now_ms() > deadline) {
            char msg[4 * SC_MSG] = "";
            for (int i = 0; i < l->nwriters; i++) {
                char last[SC_MSG];
                sc_copy(l, last, sizeof(last), l->w[i].last_error);
                size_t len = strlen(msg);
                snprintf(msg + len, sizeof(msg) - len,
                         " [writer %d: %" PRIu64 " of %" PRIu64 " acknowledged; last error: %s]", i,
                         atomic_load(&l->w[i].acked), target[i], last[0] ? last : "none");
            }
            nst_fail(l->e, "%s: the writers made no progress within %d ms:%s", what, SC_WAIT_MS,
                     msg);
        }
        nst_sleep_ms(20);
    }
}

void sc_load_watch_counts(sc_load *l, sc_watch_counts *out)
{
    out->connected = atomic_load(&l->watcher.connected);
    out->disconnected = atomic_load(&l->watcher.disconnected);
    out->caught_up = atomic_load(&l->watcher.caught_up);
    out->changes = atomic_load(&l->watcher.changes);
}

void sc_load_wait_connected(sc_load *l, uint64_t n, const char *what)
{
    uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
    char why[SC_MSG];
    while (atomic_load(&l->watcher.connected) < n) {
        if (watcher_failed(l, why, sizeof(why)))
            nst_fail(l->e, "%s: subscriber: %s", what, why);
        if (nst_now_ms() > deadline) {
            sc_copy(l, why, sizeof(why), l->watcher.last_error);
            nst_fail(l->e,
                     "%s: the subscriber connected %" PRIu64 " times, not %" PRIu64
                     ", within %d ms (last error: %s)",
                     what, atomic_load(&l->watcher.connected), n, SC_WAIT_MS, why);
        }
        nst_sleep_ms(20);
    }
}

void sc_load_note(sc_load *l, const char *device, const char *plan_id, const char *mutation_id,
                  uint64_t version, const char *title)
{
    assert_true(l->nnotes < SC_MAX_NOTES);
    sc_mut *m = &l->notes[l->nnotes++];
    memset(m, 0, sizeof(*m));
    snprintf(m->id, sizeof(m->id), "%s", mutation_id);
    snprintf(m->plan_id, sizeof(m->plan_id), "%s", plan_id);
    snprintf(m->title, sizeof(m->title), "%s", title);
    m->device = device;
    m->version = version;
    m->acked = true;
}

static void join_writers(sc_load *l)
{
    atomic_store(&l->stop, true);
    /* Each writer's own drain is bounded by SC_WAIT_MS. */
    for (int i = 0; i < l->nwriters; i++) {
        if (l->w[i].started)
            pthread_join(l->w[i].thread, NULL);
        l->w[i].started = false;
    }
}

/* Asks the subscriber to stop (how: 1 or 2) and waits for its thread. */
static bool stop_watcher(sc_load *l, int how, int timeout_ms)
{
    sc_watcher *w = &l->watcher;
    if (!w->started)
        return true;
    atomic_store(&w->want_stop, how);
    pthread_mutex_lock(&l->mu);
    if (w->async_open)
        uv_async_send(&w->async);
    pthread_mutex_unlock(&l->mu);
    uint64_t deadline = nst_now_ms() + (uint64_t)timeout_ms;
    while (!atomic_load(&w->done) && nst_now_ms() < deadline)
        nst_sleep_ms(20);
    if (!atomic_load(&w->done))
        return false;
    pthread_join(w->thread, NULL);
    w->started = false;
    uv_loop_close(&w->loop);
    return true;
}

void sc_load_finish(sc_load *l)
{
    join_writers(l);
    for (int i = 0; i < l->nwriters; i++) {
        char problem[SC_MSG];
        sc_copy(l, problem, sizeof(problem), l->w[i].problem);
        if (problem[0])
            nst_fail(l->e, "writer %d: %s", i, problem);
    }
    /* The sentinel: the last change, made once every other one is in. */
    sc_writer *w0 = &l->w[0];
    writer_edit(w0, 0);
    w0->last_ok = false;
    writer_drain(w0);
    const sc_mut *sentinel = &w0->muts[w0->nmuts - 1];
    /* Every other writer pulls it too, so all replicas end equal. */
    for (int i = 1; i < l->nwriters; i++) {
        l->w[i].last_ok = false;
        writer_drain(&l->w[i]);
    }
    for (int i = 0; i < l->nwriters; i++) {
        char problem[SC_MSG];
        sc_copy(l, problem, sizeof(problem), l->w[i].problem);
        if (problem[0])
            nst_fail(l->e, "writer %d, at the end: %s", i, problem);
    }

    sc_watcher *w = &l->watcher;
    snprintf(w->sentinel_id, sizeof(w->sentinel_id), "%s", sentinel->plan_id);
    snprintf(w->sentinel_title, sizeof(w->sentinel_title), "%s", sentinel->title);
    if (!stop_watcher(l, 1, SC_WAIT_MS)) {
        char last[SC_MSG];
        sc_copy(l, last, sizeof(last), w->last_error);
        (void)stop_watcher(l, 2, SC_WAIT_MS);
        nst_fail(l->e,
                 "the subscriber did not receive the last change (plan %s \"%s\") within "
                 "%d ms: %" PRIu64 " changes, %" PRIu64 " connections (last error: %s)",
                 w->sentinel_id, w->sentinel_title, SC_WAIT_MS, atomic_load(&w->changes),
                 atomic_load(&w->connected), last[0] ? last : "none");
    }
    char why[SC_MSG];
    if (watcher_failed(l, why, sizeof(why)))
        nst_fail(l->e, "subscriber: %s", why);
    fprintf(stderr,
            "scale: subscriber: %" PRIu64 " connections, %" PRIu64 " losses, %" PRIu64
            " changes received\n",
            atomic_load(&w->connected), atomic_load(&w->disconnected), atomic_load(&w->changes));
    for (int i = 0; i < l->nwriters; i++)
        fprintf(stderr,
                "scale: writer %d: %zu changes, %" PRIu64 " syncs (%" PRIu64 " failed and "
                "retried)\n",
                i, l->w[i].nmuts,
                atomic_load(&l->w[i].syncs_ok) + atomic_load(&l->w[i].syncs_failed),
                atomic_load(&l->w[i].syncs_failed));
}

/* ---- checks ---------------------------------------------------------------------------- */

typedef struct {
    char id[SC_ID];
    uint64_t version;
    const char *title;
} sc_plan;

static int mut_cmp(const void *a, const void *b)
{
    return strcmp((*(sc_mut *const *)a)->id, (*(sc_mut *const *)b)->id);
}

static sc_mut *mut_find(sc_mut **all, size_t n, const char *id)
{
    sc_mut key;
    snprintf(key.id, sizeof(key.id), "%s", id);
    const sc_mut *k = &key;
    sc_mut **hit = bsearch(&k, all, n, sizeof(*all), mut_cmp);
    return hit ? *hit : NULL;
}

static PGresult *sc_query(nst_env *e, PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[SC_MSG];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
        PQclear(res);
        PQfinish(pg);
        nst_fail(e, "%s: %s", sql, msg);
    }
    return res;
}

typedef struct {
    const sc_plan *plans;
    size_t nplans;
    size_t seen;
    char where[64];
    char problem[SC_MSG];
} replica_cmp;

static int compare_record(const ns_record_view *r, void *ud)
{
    replica_cmp *x = ud;
    for (size_t i = 0; i < x->nplans; i++) {
        const sc_plan *p = &x->plans[i];
        if (strcmp(p->id, r->id) != 0)
            continue;
        const char *t = sc_field(r, "title");
        x->seen++;
        if (r->version != p->version || t == NULL || strcmp(t, p->title) != 0 || r->deleted ||
            r->pending || r->rejected) {
            snprintf(x->problem, sizeof(x->problem),
                     "%s: plan %s is version %" PRIu64 " \"%s\"%s%s, the server's is %" PRIu64
                     " \"%s\"",
                     x->where, r->id, r->version, t ? t : "(none)", r->pending ? " (pending)" : "",
                     r->rejected ? " (refused)" : "", p->version, p->title);
            return 1;
        }
        return 0;
    }
    snprintf(x->problem, sizeof(x->problem), "%s: holds plan %s, which no client wrote", x->where,
             r->id);
    return 1;
}

static void check_replica(nst_env *e, ns_client *c, const char *where, const sc_plan *plans,
                          size_t nplans)
{
    replica_cmp x = {.plans = plans, .nplans = nplans};
    snprintf(x.where, sizeof(x.where), "%s", where);
    ns_error err;
    if (ns_client_list(c, "plan", 1, compare_record, &x, &err) != NS_OK && x.problem[0] == '\0')
        nst_fail(e, "%s: ns_client_list: %s", where, err.message);
    if (x.problem[0])
        nst_fail(e, "%s", x.problem);
    if (x.seen != nplans)
        nst_fail(e, "%s: holds %zu of the %zu plans", where, x.seen, nplans);
    ns_sync_status st;
    if (ns_client_status(c, &st, &err) != NS_OK)
        nst_fail(e, "%s: ns_client_status: %s", where, err.message);
    if (st.pending != 0 || st.rejected != 0)
        nst_fail(e, "%s: %" PRIu64 " changes pending, %" PRIu64 " refused", where, st.pending,
                 st.rejected);
}

void sc_load_check(sc_load *l, nst_env *e)
{
    /* Every mutation any client made, sorted by id. */
    size_t n = l->nnotes;
    for (int i = 0; i < l->nwriters; i++)
        n += l->w[i].nmuts;
    sc_mut **all = calloc(n ? n : 1, sizeof(*all));
    assert_non_null(all);
    size_t k = 0;
    for (int i = 0; i < l->nwriters; i++)
        for (size_t j = 0; j < l->w[i].nmuts; j++)
            all[k++] = &l->w[i].muts[j];
    for (size_t j = 0; j < l->nnotes; j++)
        all[k++] = &l->notes[j];
    qsort(all, n, sizeof(*all), mut_cmp);
    for (size_t i = 0; i < n; i++)
        if (!all[i]->acked)
            nst_fail(e, "mutation %s (plan %s) was never acknowledged", all[i]->id,
                     all[i]->plan_id);

    /* The plans and what they must end as: their last mutation. */
    sc_plan *plans = calloc(n ? n : 1, sizeof(*plans));
    assert_non_null(plans);
    size_t nplans = 0;
    for (size_t i = 0; i < n; i++) {
        size_t p = 0;
        while (p < nplans && strcmp(plans[p].id, all[i]->plan_id) != 0)
            p++;
        if (p == nplans)
            snprintf(plans[nplans++].id, SC_ID, "%s", all[i]->plan_id);
        if (all[i]->version > plans[p].version) {
            plans[p].version = all[i]->version;
            plans[p].title = all[i]->title;
        }
    }

    const char *keys[] = {"host", "port", "user", "dbname", NULL};
    const char *vals[] = {e->pg.host, e->pg.port, e->pg.user, e->dbname, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 0);
    if (PQstatus(pg) != CONNECTION_OK) {
        char msg[SC_MSG];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
        PQfinish(pg);
        nst_fail(e, "cannot connect to the test database: %s", msg);
    }

    /* Every answer the server keeps is for a mutation a client sent, from
     * its device, applied or merged (nothing collides: each plan has one
     * writer), with the version the mutation makes. */
    PGresult *res = sc_query(e, pg,
                             "SELECT m.mutation_id, coalesce(d.name, ''), m.outcome, m.version,"
                             " m.record_id, m.entity_type FROM sync_mutations m"
                             " LEFT JOIN devices d ON d.id = m.device_id");
    char problem[SC_MSG] = "";
    for (int r = 0; r < PQntuples(res) && !problem[0]; r++) {
        const char *id = PQgetvalue(res, r, 0);
        sc_mut *m = mut_find(all, n, id);
        uint64_t version = strtoull(PQgetvalue(res, r, 3), NULL, 10);
        const char *outcome = PQgetvalue(res, r, 2);
        if (m == NULL)
            snprintf(problem, sizeof(problem),
                     "sync_mutations answers mutation %s (%s of %s %s), which no client sent", id,
                     outcome, PQgetvalue(res, r, 5), PQgetvalue(res, r, 4));
        else if (strcmp(PQgetvalue(res, r, 1), m->device) != 0 ||
                 strcmp(PQgetvalue(res, r, 4), m->plan_id) != 0 ||
                 strcmp(PQgetvalue(res, r, 5), "plan") != 0 || version != m->version ||
                 (strcmp(outcome, "applied") != 0 && strcmp(outcome, "merged") != 0))
            snprintf(problem, sizeof(problem),
                     "mutation %s was answered %s version %" PRIu64 " for device %s on %s %s; "
                     "it is %s's change of plan %s to version %" PRIu64,
                     id, outcome, version, PQgetvalue(res, r, 1), PQgetvalue(res, r, 5),
                     PQgetvalue(res, r, 4), m->device, m->plan_id, m->version);
        else
            m->answered = true;
    }
    PQclear(res);
    if (problem[0]) {
        PQfinish(pg);
        nst_fail(e, "%s", problem);
    }

    /* Exactly one revision per mutation, with its title; none made by
     * anything else. */
    res = sc_query(e, pg,
                   "SELECT record_id, version, coalesce(mutation_id::text, ''),"
                   " coalesce(after->>'title', ''), entity_type FROM sync_revisions"
                   " WHERE entity_type = 'plan' OR mutation_id IS NOT NULL");
    for (int r = 0; r < PQntuples(res) && !problem[0]; r++) {
        const char *id = PQgetvalue(res, r, 2);
        sc_mut *m = id[0] ? mut_find(all, n, id) : NULL;
        uint64_t version = strtoull(PQgetvalue(res, r, 1), NULL, 10);
        if (m == NULL)
            snprintf(problem, sizeof(problem),
                     "revision %" PRIu64 " of %s %s was made by mutation \"%s\", which no "
                     "client sent",
                     version, PQgetvalue(res, r, 4), PQgetvalue(res, r, 0), id);
        else if (++m->revisions > 1)
            snprintf(problem, sizeof(problem), "mutation %s (plan %s) was applied twice", id,
                     m->plan_id);
        else if (strcmp(PQgetvalue(res, r, 0), m->plan_id) != 0 || version != m->version ||
                 strcmp(PQgetvalue(res, r, 3), m->title) != 0)
            snprintf(problem, sizeof(problem),
                     "mutation %s made revision %" PRIu64 " of %s titled \"%s\", not %" PRIu64
                     " of %s titled \"%s\"",
                     id, version, PQgetvalue(res, r, 0), PQgetvalue(res, r, 3), m->version,
                     m->plan_id, m->title);
    }
    PQclear(res);
    if (problem[0]) {
        PQfinish(pg);
        nst_fail(e, "%s", problem);
    }
    for (size_t i = 0; i < n; i++)
        if (!all[i]->answered || all[i]->revisions != 1) {
            PQfinish(pg);
            nst_fail(e, "acknowledged mutation %s (%s, plan %s version %" PRIu64 ") %s", all[i]->id,
                     all[i]->device, all[i]->plan_id, all[i]->version,
                     !all[i]->answered ? "has no answer on the server: lost"
                                       : "has no revision on the server: lost");
        }

    res = sc_query(e, pg, "SELECT count(*) FROM sync_conflicts");
    long conflicts = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (conflicts != 0) {
        PQfinish(pg);
        nst_fail(e, "%ld conflicts, where no two devices edit one plan", conflicts);
    }

    /* The plans as the server has them: the last mutation of each. */
    res = sc_query(e, pg, "SELECT id, version, coalesce(title, ''), deleted FROM plans");
    if ((size_t)PQntuples(res) != nplans)
        snprintf(problem, sizeof(problem), "the server has %d plans, the clients wrote %zu",
                 PQntuples(res), nplans);
    for (int r = 0; r < PQntuples(res) && !problem[0]; r++) {
        size_t p = 0;
        while (p < nplans && strcmp(plans[p].id, PQgetvalue(res, r, 0)) != 0)
            p++;
        uint64_t version = strtoull(PQgetvalue(res, r, 1), NULL, 10);
        if (p == nplans)
            snprintf(problem, sizeof(problem), "the server has plan %s, which no client wrote",
                     PQgetvalue(res, r, 0));
        else if (version != plans[p].version || strcmp(PQgetvalue(res, r, 2), plans[p].title) ||
                 strcmp(PQgetvalue(res, r, 3), "f") != 0)
            snprintf(problem, sizeof(problem),
                     "plan %s is version %" PRIu64 " \"%s\" on the server, not %" PRIu64 " \"%s\"",
                     plans[p].id, version, PQgetvalue(res, r, 2), plans[p].version, plans[p].title);
    }
    PQclear(res);
    PQfinish(pg);
    if (problem[0])
        nst_fail(e, "%s", problem);

    /* Every replica: the writers' (still open) and the subscriber's store,
     * opened again now that its watch has ended. */
    for (int i = 0; i < l->nwriters; i++) {
        char where[32];
        snprintf(where, sizeof(where), "writer %d", i);
        check_replica(e, l->w[i].c, where, plans, nplans);
    }
    ns_client_options o;
    sc_client_options(l, &l->watcher.dev, l->watcher.store, &o);
    ns_client *c = NULL;
    ns_error err;
    if (ns_client_new(&o, NULL, &c, &err) != NS_OK)
        nst_fail(e, "reopening the subscriber's store: %s", err.message);
    check_replica(e, c, "the subscriber", plans, nplans);
    ns_client_free(c);
    fprintf(stderr,
            "scale: %zu mutations on %zu plans, each answered and applied exactly once; every "
            "replica equals the server\n",
            n, nplans);
    free(plans);
    free(all);
}

void sc_load_free(sc_load *l)
{
    if (l == NULL)
        return;
    join_writers(l);
    if (!stop_watcher(l, 2, SC_WAIT_MS)) {
        /* Its thread still uses the load: leave both to the process's exit. */
        fprintf(stderr, "scale: the subscriber's thread did not end\n");
        return;
    }
    for (int i = 0; i < l->nwriters; i++) {
        ns_client_free(l->w[i].c);
        free(l->w[i].muts);
    }
    pthread_mutex_destroy(&l->mu);
    free(l);
}
