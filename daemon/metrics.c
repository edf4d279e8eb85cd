#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "version.h"

/* A metric's name, its fixed labels (NULL: none) and help. Consecutive
 * entries of one name form one family: HELP and TYPE are written once,
 * from the first. */
typedef struct {
    const char *name;
    const char *labels;
    const char *help;
} metric_desc;

static const metric_desc counter_desc[NS_METRIC_NCOUNTERS] = {
    [NS_METRIC_SESSIONS_ACCEPTED] = {"napsync_sessions_total", NULL,
                                     "Client connections accepted, each a session."},
    [NS_METRIC_FRAMES_IN] = {"napsync_frames_received_total", NULL,
                             "Frames received from clients."},
    [NS_METRIC_FRAMES_OUT] = {"napsync_frames_sent_total", NULL, "Frames queued to clients."},
    [NS_METRIC_BYTES_IN] = {"napsync_frame_bytes_received_total", NULL,
                            "Bytes of frames received (length header and payload, before TLS)."},
    [NS_METRIC_BYTES_OUT] = {"napsync_frame_bytes_sent_total", NULL,
                             "Bytes of frames queued (length header and payload, before TLS)."},
    [NS_METRIC_MUTATIONS_APPLIED] = {"napsync_mutations_total", "outcome=\"applied\"",
                                     "Mutations decided by this daemon, by outcome (replays and "
                                     "dry runs not counted)."},
    [NS_METRIC_MUTATIONS_MERGED] = {"napsync_mutations_total", "outcome=\"merged\"", NULL},
    [NS_METRIC_MUTATIONS_CONFLICT] = {"napsync_mutations_total", "outcome=\"conflict\"", NULL},
    [NS_METRIC_MUTATIONS_REJECTED] = {"napsync_mutations_total", "outcome=\"rejected\"", NULL},
    [NS_METRIC_MUTATION_REPLAYS] = {"napsync_mutation_replays_total", NULL,
                                    "Re-sent mutations (an outbox replayed after a lost answer) "
                                    "answered from the stored answer."},
    [NS_METRIC_DB_CONNECTION_FAILURES] = {"napsync_db_connection_failures_total", NULL,
                                          "PostgreSQL connections (pool and LISTEN) lost or "
                                          "failed to connect."},
    [NS_METRIC_DB_NOTIFICATIONS] = {"napsync_db_notifications_total", NULL,
                                    "Notifications (NOTIFY) received on the LISTEN connection."},
};

static const metric_desc gauge_desc[NS_METRIC_NGAUGES] = {
    [NS_GAUGE_SESSIONS_OPEN] = {"napsync_sessions_open", NULL, "Client sessions open."},
    [NS_GAUGE_SUBSCRIBERS] = {"napsync_feed_subscribers", NULL, "Live subscriptions."},
    [NS_GAUGE_SUBSCRIBERS_BEHIND] = {"napsync_feed_subscribers_behind", NULL,
                                     "Subscriptions whose cursor is below the feed head."},
    [NS_GAUGE_FEED_HEAD] = {"napsync_feed_head", NULL,
                            "The newest feed position this daemon has heard of."},
    [NS_GAUGE_FEED_LAG_MAX] = {"napsync_feed_lag_max", NULL,
                               "Feed positions between the head and the furthest subscriber."},
    [NS_GAUGE_DB_BACKOFF] = {"napsync_db_connections", "state=\"backoff\"",
                             "PostgreSQL pool connections by state."},
    [NS_GAUGE_DB_CONNECTING] = {"napsync_db_connections", "state=\"connecting\"", NULL},
    [NS_GAUGE_DB_IDLE] = {"napsync_db_connections", "state=\"idle\"", NULL},
    [NS_GAUGE_DB_BUSY] = {"napsync_db_connections", "state=\"busy\"", NULL},
    [NS_GAUGE_DB_TXN] = {"napsync_db_connections", "state=\"transaction\"", NULL},
    [NS_GAUGE_DB_QUEUED] = {"napsync_db_queued", NULL,
                            "Queries and transactions waiting for a pool connection."},
    [NS_GAUGE_DB_LISTENER_UP] = {"napsync_db_listener_up", NULL,
                                 "1 while the LISTEN connection is connected."},
};

static const metric_desc hist_desc[NS_METRIC_NHISTOGRAMS] = {
    [NS_HIST_PUSH] = {"napsync_push_duration_seconds", NULL,
                      "Push requests, from the request to its answer."},
    [NS_HIST_PULL] = {"napsync_pull_duration_seconds", NULL,
                      "Pull requests, from the request to its page."},
    [NS_HIST_DB_QUERY] = {"napsync_db_query_duration_seconds", NULL,
                          "Plain queries, from queueing to the result (waiting for a "
                          "connection included)."},
    [NS_HIST_DB_TXN] = {"napsync_db_transaction_duration_seconds", NULL,
                        "Transactions, from asking for a connection to the answer to "
                        "COMMIT or ROLLBACK."},
};

/* name, label key, help */
static const metric_desc family_desc[NS_METRIC_NFAMILIES] = {
    [NS_FAMILY_HANDSHAKES] = {"napsync_handshakes_total", "result",
                              "Connections by how the handshake ended: ok (Welcome sent) or why "
                              "not."},
    [NS_FAMILY_REJECTIONS] = {"napsync_mutations_rejected_total", "reason",
                              "Rejected mutations by reason (the error code)."},
    [NS_FAMILY_LIMITS] = {"napsync_limit_hits_total", "limit",
                          "Times a limit refused or delayed something, by limit."},
    [NS_FAMILY_ERRORS_SENT] = {"napsync_errors_sent_total", "code",
                               "Error frames sent to clients, by code."},
};

/* Upper bounds of the buckets in nanoseconds, and as written (le). */
#define NBUCKETS 14
static const uint64_t bucket_ns[NBUCKETS] = {
    500000u,    1000000u,   2500000u,   5000000u,    10000000u,   25000000u,   50000000u,
    100000000u, 250000000u, 500000000u, 1000000000u, 2500000000u, 5000000000u, 10000000000u,
};
static const char *const bucket_le[NBUCKETS] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                                "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                                "1",      "2.5",   "5",      "10"};

typedef struct {
    atomic_uint_fast64_t buckets[NBUCKETS + 1]; /* not cumulative; the last is +Inf */
    atomic_uint_fast64_t sum_ns;
} histogram;

/* A family's label value: written once under family_lock, then published
 * by storing SLOT_READY (release); readers load state with acquire before
 * they read value. */
enum { SLOT_EMPTY = 0, SLOT_READY = 1 };
typedef struct {
    atomic_int state;
    char value[NS_METRICS_LABEL_MAX + 1];
    atomic_uint_fast64_t count;
} family_slot;

typedef struct {
    family_slot slots[NS_METRICS_FAMILY_SLOTS];
    atomic_uint_fast64_t other;
} family;

static atomic_uint_fast64_t counters[NS_METRIC_NCOUNTERS];
static atomic_int_fast64_t gauges[NS_METRIC_NGAUGES];
static histogram histograms[NS_METRIC_NHISTOGRAMS];
static family families[NS_METRIC_NFAMILIES];
static pthread_mutex_t family_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t heartbeat_ns;
static atomic_int readiness;

void ns_metrics_add(ns_metrics_counter c, uint64_t n)
{
    if ((unsigned)c < NS_METRIC_NCOUNTERS)
        atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

void ns_metrics_inc(ns_metrics_counter c)
{
    ns_metrics_add(c, 1);
}

void ns_metrics_set(ns_metrics_gauge g, int64_t v)
{
    if ((unsigned)g < NS_METRIC_NGAUGES)
        atomic_store_explicit(&gauges[g], v, memory_order_relaxed);
}

void ns_metrics_observe(ns_metrics_histogram h, uint64_t elapsed_ns)
{
    if ((unsigned)h >= NS_METRIC_NHISTOGRAMS)
        return;
    size_t i = 0;
    while (i < NBUCKETS && elapsed_ns > bucket_ns[i])
        i++;
    atomic_fetch_add_explicit(&histograms[h].buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&histograms[h].sum_ns, elapsed_ns, memory_order_relaxed);
}

void ns_metrics_observe_since(ns_metrics_histogram h, uint64_t start_ns)
{
    uint64_t now = uv_hrtime();
    ns_metrics_observe(h, now > start_ns ? now - start_ns : 0);
}

/* The label value in lower case into out, or false when it is not one. */
static bool label_fold(const char *in, char out[NS_METRICS_LABEL_MAX + 1])
{
    size_t n = 0;
    if (in == NULL)
        return false;
    for (; in[n] != '\0'; n++) {
        char c = in[n];
        if (n >= NS_METRICS_LABEL_MAX)
            return false;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
        out[n] = c;
    }
    out[n] = '\0';
    return n > 0;
}

/* The slot of value, or NULL when the family has none (yet). */
static family_slot *slot_find(family *fam, const char *value)
{
    for (size_t i = 0; i < NS_METRICS_FAMILY_SLOTS; i++) {
        family_slot *s = &fam->slots[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY)
            return NULL; /* slots fill in order */
        if (strcmp(s->value, value) == 0)
            return s;
    }
    return NULL;
}

void ns_metrics_count(ns_metrics_family f, const char *label)
{
    if ((unsigned)f >= NS_METRIC_NFAMILIES)
        return;
    family *fam = &families[f];
    char value[NS_METRICS_LABEL_MAX + 1];
    if (!label_fold(label, value) || strcmp(value, "other") == 0) {
        atomic_fetch_add_explicit(&fam->other, 1, memory_order_relaxed);
        return;
    }
    family_slot *s = slot_find(fam, value);
    if (s == NULL) {
        pthread_mutex_lock(&family_lock);
        s = slot_find(fam, value); /* another writer may have added it */
        for (size_t i = 0; s == NULL && i < NS_METRICS_FAMILY_SLOTS; i++) {
            family_slot *e = &fam->slots[i];
            if (atomic_load_explicit(&e->state, memory_order_relaxed) == SLOT_EMPTY) {
                memcpy(e->value, value, sizeof(value));
                atomic_store_explicit(&e->state, SLOT_READY, memory_order_release);
                s = e;
            }
        }
        pthread_mutex_unlock(&family_lock);
    }
    atomic_fetch_add_explicit(s != NULL ? &s->count : &fam->other, 1, memory_order_relaxed);
}

void ns_metrics_limit_hit(const char *limit)
{
    ns_metrics_count(NS_FAMILY_LIMITS, limit);
}

void ns_metrics_heartbeat(uint64_t now)
{
    atomic_store_explicit(&heartbeat_ns, now, memory_order_relaxed);
}

uint64_t ns_metrics_last_heartbeat(void)
{
    return atomic_load_explicit(&heartbeat_ns, memory_order_relaxed);
}

void ns_metrics_set_readiness(ns_metrics_readiness r)
{
    atomic_store_explicit(&readiness, (int)r, memory_order_relaxed);
}

ns_metrics_readiness ns_metrics_get_readiness(void)
{
    return (ns_metrics_readiness)atomic_load_explicit(&readiness, memory_order_relaxed);
}

const char *ns_metrics_readiness_text(ns_metrics_readiness r)
{
    switch (r) {
    case NS_READY_OK:
        return "ready";
    case NS_READY_STARTING:
        return "starting: the database has not answered yet";
    case NS_READY_DB_UNREACHABLE:
        return "the database is unreachable";
    case NS_READY_SCHEMA_BEHIND:
        return "the database lacks migrations this daemon needs";
    case NS_READY_DRAINING:
        return "draining: shutting down";
    }
    return "unknown";
}

/* ---- exposition ------------------------------------------------------------ */

static void header(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes HELP and TYPE unless d continues the family of prev. */
static void family_start(FILE *out, const metric_desc *d, const metric_desc *prev, const char *type)
{
    if (prev == NULL || strcmp(prev->name, d->name) != 0)
        header(out, d->name, type, d->help);
}

static void sample_u64(FILE *out, const metric_desc *d, uint64_t v)
{
    if (d->labels != NULL)
        fprintf(out, "%s{%s} %llu\n", d->name, d->labels, (unsigned long long)v);
    else
        fprintf(out, "%s %llu\n", d->name, (unsigned long long)v);
}

static void render_histogram(FILE *out, const metric_desc *d, histogram *h)
{
    header(out, d->name, "histogram", d->help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= NBUCKETS; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        fprintf(out, "%s_bucket{le=\"%s\"} %llu\n", d->name, i < NBUCKETS ? bucket_le[i] : "+Inf",
                (unsigned long long)cumulative);
    }
    uint64_t sum = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    fprintf(out, "%s_sum %llu.%09llu\n", d->name, (unsigned long long)(sum / 1000000000u),
            (unsigned long long)(sum % 1000000000u));
    fprintf(out, "%s_count %llu\n", d->name, (unsigned long long)cumulative);
}

static void render_family(FILE *out, const metric_desc *d, family *fam)
{
    header(out, d->name, "counter", d->help);
    for (size_t i = 0; i < NS_METRICS_FAMILY_SLOTS; i++) {
        family_slot *s = &fam->slots[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY)
            break;
        fprintf(out, "%s{%s=\"%s\"} %llu\n", d->name, d->labels, s->value,
                (unsigned long long)atomic_load_explicit(&s->count, memory_order_relaxed));
    }
    uint64_t other = atomic_load_explicit(&fam->other, memory_order_relaxed);
    if (other > 0)
        fprintf(out, "%s{%s=\"other\"} %llu\n", d->name, d->labels, (unsigned long long)other);
}

static void render_health(FILE *out, uint64_t now)
{
    ns_metrics_readiness r = ns_metrics_get_readiness();
    header(out, "napsync_build_info", "gauge", "Always 1; the version is a label.");
    fprintf(out, "napsync_build_info{version=\"%s\"} 1\n", NS_VERSION);
    header(out, "napsync_ready", "gauge",
           "1 when /readyz answers 200: database reachable, migrations applied, not draining.");
    fprintf(out, "napsync_ready %d\n", r == NS_READY_OK ? 1 : 0);
    header(out, "napsync_draining", "gauge", "1 after SIGTERM, while sessions drain.");
    fprintf(out, "napsync_draining %d\n", r == NS_READY_DRAINING ? 1 : 0);
    uint64_t beat = ns_metrics_last_heartbeat();
    uint64_t age = beat != 0 && now > beat ? now - beat : 0;
    header(out, "napsync_heartbeat_age_seconds", "gauge",
           "Time since the event loop's last heartbeat (it beats every second).");
    fprintf(out, "napsync_heartbeat_age_seconds %llu.%03llu\n",
            (unsigned long long)(age / 1000000000u),
            (unsigned long long)(age % 1000000000u / 1000000u));
}

int ns_metrics_render(uint64_t now, char **out, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL)
        return -1;
    render_health(f, now);
    for (size_t i = 0; i < NS_METRIC_NCOUNTERS; i++) {
        family_start(f, &counter_desc[i], i > 0 ? &counter_desc[i - 1] : NULL, "counter");
        sample_u64(f, &counter_desc[i], atomic_load_explicit(&counters[i], memory_order_relaxed));
    }
    for (size_t i = 0; i < NS_METRIC_NFAMILIES; i++)
        render_family(f, &family_desc[i], &families[i]);
    for (size_t i = 0; i < NS_METRIC_NGAUGES; i++) {
        const metric_desc *d = &gauge_desc[i];
        family_start(f, d, i > 0 ? &gauge_desc[i - 1] : NULL, "gauge");
        long long v = (long long)atomic_load_explicit(&gauges[i], memory_order_relaxed);
        if (d->labels != NULL)
            fprintf(f, "%s{%s} %lld\n", d->name, d->labels, v);
        else
            fprintf(f, "%s %lld\n", d->name, v);
    }
    for (size_t i = 0; i < NS_METRIC_NHISTOGRAMS; i++)
        render_histogram(f, &hist_desc[i], &histograms[i]);
    /* fclose writes the buffer's final size; a failed write shows here. */
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = size;
    return 0;
}

void ns_metrics_reset(void)
{
    for (size_t i = 0; i < NS_METRIC_NCOUNTERS; i++)
        atomic_store(&counters[i], 0);
    for (size_t i = 0; i < NS_METRIC_NGAUGES; i++)
        atomic_store(&gauges[i], 0);
    for (size_t i = 0; i < NS_METRIC_NHISTOGRAMS; i++) {
        for (size_t b = 0; b <= NBUCKETS; b++)
            atomic_store(&histograms[i].buckets[b], 0);
        atomic_store(&histograms[i].sum_ns, 0);
    }
    pthread_mutex_lock(&family_lock);
    for (size_t i = 0; i < NS_METRIC_NFAMILIES; i++) {
        for (size_t k = 0; k < NS_METRICS_FAMILY_SLOTS; k++) {
            atomic_store(&families[i].slots[k].state, SLOT_EMPTY);
            atomic_store(&families[i].slots[k].count, 0);
            families[i].slots[k].value[0] = '\0';
        }
        atomic_store(&families[i].other, 0);
    }
    pthread_mutex_unlock(&family_lock);
    atomic_store(&heartbeat_ns, 0);
    atomic_store(&readiness, NS_READY_STARTING);
}
