/* libFuzzer target: the client's decoding of the server's answers, by
 * libnapsync's own code (client/client.c: Welcome, Pong, Error, Goodbye,
 * server pings; client/sync.c: PushResult, ChangePage into the store,
 * ConflictList, a subscription's pages, MutationResult, HistoryPage;
 * client/direct.c: PushResult of a batch, the pages of a whole plan;
 * ReportResult), compressed frames among them once Welcome agreed on
 * them (proto/compress.c), and compact pages (proto/page_compact.c), which
 * the client expands before anything reads them, once Welcome agreed on
 * those (corpus/client/compact-*).
 *
 * A fake server in this process, on the daemon's own TLS and frame code
 * over loopback, answers the real client with the input. Input: byte 0
 * picks what the client does (connect and ping; sync with one change in the
 * outbox; the same, watching; history; a direct push; a whole-plan pull; a
 * report; sync, then resolve the first conflict listed); the rest are
 * frames (fixture.h). The fake server sends the next frame each time a
 * frame of the client arrives, and also when the client has been silent
 * for 20 ms (pages of a subscription, pings, frames nobody asked for); after
 * the last frame it closes the connection. The client's request
 * ids are 1 (Hello), 2, 3, ... in each input; in place of
 * NSF_TOKEN_MUTATION with digit k the fake server puts the id of mutation
 * k of the client's last Push or ResolveConflict, which the client draws
 * at random.
 *
 * What must hold, besides no crash, leak or undefined behaviour in the
 * client: the operation ends (with success or an error) within 30 s, and
 * the store can still be read afterwards (records, outbox, conflicts),
 * whatever the pages put in it. Each input gets a new client and a new
 * store (in /dev/shm when there is one: the store syncs every write). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "compress.h"
#include "conn.h"
#include "envelope.h"
#include "fixture.h"
#include "frame.h"
#include "messages.h"
#include "napsync.h"
#include "tls.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IDLE_MS        20
#define INPUT_WAIT_MS  30000
#define MAX_MUTATIONS  10
#define CLIENT_TIMEOUT 3000

enum {
    SC_PING,
    SC_SYNC,
    SC_WATCH,
    SC_HISTORY,
    SC_PUSH,
    SC_PULL_PLAN,
    SC_REPORT,
    SC_RESOLVE,
    SC_COUNT,
};

static struct {
    uv_loop_t loop;
    nsf_pki pki;
    char dir[NSF_PATH];
    ns_tls_ctx *server_tls;
    ns_compress *zstd; /* the fake server's, to read compressed requests */
    unsigned inputs;
} F;

/* ---- the fake server ----------------------------------------------------------------------- */

typedef struct {
    uv_tcp_t listener;
    ns_conn *conn; /* the one connection it serves at a time */
    uv_timer_t idle;
    const uint8_t *data; /* frames still to send */
    size_t size;
    char mids[MAX_MUTATIONS][NSF_TOKEN_LEN + 1];
} fake_server;

static void send_next(fake_server *fs)
{
    if (fs->conn == NULL)
        return;
    const uint8_t *payload;
    size_t len;
    if (!nsf_next_frame(&fs->data, &fs->size, &payload, &len)) {
        ns_conn_close(fs->conn, true);
        return;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        nsf_die("out of memory");
    if (len)
        memcpy(copy, payload, len);
    char token[NSF_TOKEN_LEN + 1];
    memcpy(token, NSF_TOKEN_MUTATION, sizeof(token));
    for (int k = 0; k < MAX_MUTATIONS; k++) {
        if (fs->mids[k][0] == '\0')
            continue;
        token[NSF_TOKEN_DIGIT] = (char)('0' + k);
        nsf_replace(copy, len, token, fs->mids[k]);
    }
    /* A send refused because the client is closing is the client's choice. */
    (void)ns_conn_send(fs->conn, copy, len);
    free(copy);
    /* Nothing more to say: the client reads the last frame, then the end. */
    if (fs->size == 0)
        ns_conn_close(fs->conn, true);
}

static void on_idle(uv_timer_t *t)
{
    send_next(t->data);
}

static void arm_idle(fake_server *fs)
{
    uv_timer_start(&fs->idle, on_idle, IDLE_MS, IDLE_MS);
}

/* Remembers the mutation ids of the client's last Push or ResolveConflict. */
static void note_request(fake_server *fs, const uint8_t *payload, size_t len)
{
    ns_envelope *e = ns_envelope_unpack(payload, len);
    if (e == NULL)
        nsf_die("the client sent a frame that is not an Envelope");
    if (e->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
        /* The client compresses only what the script's Welcome agreed to;
         * what it sends must decompress whatever the fuzzer made of it. */
        ns_envelope *inner = NULL;
        ns_compress_status st =
            ns_compress_unpack(F.zstd, e->zstd.data, e->zstd.len, NS_FRAME_DEFAULT_MAX, &inner);
        if (st != NS_COMPRESS_OK)
            nsf_die("the client sent a compressed frame that does not decompress (%d)", (int)st);
        ns_envelope_free(e);
        e = inner;
    }
    nsf_check_strings(&e->base, "the client");
    if (e->body_case == NAPSYNC__V1__ENVELOPE__BODY_PUSH) {
        memset(fs->mids, 0, sizeof(fs->mids));
        for (size_t i = 0; i < e->push->n_mutations && i < MAX_MUTATIONS; i++)
            if (e->push->mutations[i]->mutation_id &&
                strlen(e->push->mutations[i]->mutation_id) == NSF_TOKEN_LEN)
                memcpy(fs->mids[i], e->push->mutations[i]->mutation_id, NSF_TOKEN_LEN + 1);
    } else if (e->body_case == NAPSYNC__V1__ENVELOPE__BODY_RESOLVE_CONFLICT) {
        memset(fs->mids, 0, sizeof(fs->mids));
        const char *mid = e->resolve_conflict->mutation_id;
        if (mid && strlen(mid) == NSF_TOKEN_LEN)
            memcpy(fs->mids[0], mid, NSF_TOKEN_LEN + 1);
    }
    ns_envelope_free(e);
}

static void fs_on_ready(ns_conn *c, void *ud)
{
    (void)c;
    arm_idle(ud);
}

static void fs_on_frame(ns_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    (void)c;
    fake_server *fs = ud;
    note_request(fs, payload, len);
    arm_idle(fs);
    send_next(fs);
}

static void fs_on_close(ns_conn *c, ns_conn_close_reason reason, const char *msg, void *ud)
{
    (void)reason;
    (void)msg;
    fake_server *fs = ud;
    if (fs->conn == c) {
        fs->conn = NULL;
        uv_timer_stop(&fs->idle);
    }
}

static const ns_conn_callbacks fs_callbacks = {
    .on_ready = fs_on_ready,
    .on_frame = fs_on_frame,
    .on_close = fs_on_close,
};

static void on_connection(uv_stream_t *listener, int status)
{
    fake_server *fs = listener->data;
    if (status < 0)
        return;
    ns_conn_options opt = {
        .max_frame = NS_FRAME_DEFAULT_MAX,
        .handshake_timeout_ms = INPUT_WAIT_MS,
        .write_queue_limit = 64u * 1024u * 1024u,
    };
    ns_conn *conn;
    if (ns_conn_accept(listener, F.server_tls, &opt, &fs_callbacks, fs, &conn) != 0)
        nsf_die("the fake server cannot accept");
    if (fs->conn)
        ns_conn_close(fs->conn, false); /* a reconnect: the old one is gone for the client */
    fs->conn = conn;
}

/* ---- the client's side: one operation ------------------------------------------------------ */

typedef struct {
    ns_client *c;
    fake_server *fs;
    int scenario;
    bool done;
    bool sync_stopped;
} run;

/* NSF_VERBOSE set: each operation's outcome on stderr, to see how far the
 * seeds get. */
static void finish(run *r, const ns_error *err)
{
    if (getenv("NSF_VERBOSE"))
        fprintf(stderr, "fuzz_client: scenario %d: %s\n", r->scenario, err ? err->message : "ok");
    r->done = true;
}

/* The store must read back whatever the operation put in it. */
static int count_record(const ns_record_view *v, void *ud)
{
    (void)v;
    ++*(size_t *)ud;
    return 0;
}

static int count_outbox(const ns_outbox_view *v, void *ud)
{
    (void)v;
    ++*(size_t *)ud;
    return 0;
}

static int count_conflict(const ns_conflict_view *v, void *ud)
{
    (void)v;
    ++*(size_t *)ud;
    return 0;
}

static void check_store(ns_client *c)
{
    static const char *const types[] = {"plan", "indicator", "pillar", "t"};
    size_t n = 0;
    ns_error err;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (ns_client_list(c, types[i], 1, count_record, &n, &err) != NS_OK)
            nsf_die("listing %s from the store failed: %s", types[i], err.message);
    if (ns_client_outbox(c, count_outbox, &n, &err) != NS_OK)
        nsf_die("reading the outbox failed: %s", err.message);
    if (ns_client_conflicts(c, 1, count_conflict, &n, &err) != NS_OK)
        nsf_die("reading the conflicts failed: %s", err.message);
    ns_sync_status st;
    if (ns_client_status(c, &st, &err) != NS_OK)
        nsf_die("reading the sync status failed: %s", err.message);
}

static void on_resolved(ns_client *c, const ns_error *err, uint64_t version, void *ud)
{
    (void)c;
    (void)version;
    finish(ud, err);
}

static int first_conflict(const ns_conflict_view *v, void *ud)
{
    snprintf(ud, 40, "%s", v->id);
    return 1;
}

static void on_synced(ns_client *c, const ns_error *err, const ns_sync_stats *st, void *ud)
{
    (void)st;
    run *r = ud;
    if (r->scenario == SC_RESOLVE && err == NULL) {
        char id[40] = "";
        ns_error e;
        if (ns_client_conflicts(c, 0, first_conflict, id, &e) != NS_OK)
            nsf_die("reading the conflicts failed: %s", e.message);
        if (id[0] && ns_client_resolve(c, id, NS_TAKE_THEIRS, NULL, on_resolved, r, &e) == NS_OK)
            return;
    }
    finish(r, err);
}

static void on_sync_event(ns_client *c, const ns_sync_event *ev, void *ud)
{
    run *r = ud;
    /* Watching would reconnect for ever: one connection is the input's. */
    if (ev->kind == NS_SYNC_DISCONNECTED && !r->sync_stopped) {
        r->sync_stopped = true;
        (void)ns_client_sync_stop(c);
    }
}

static void on_history(ns_client *c, const ns_error *err, const ns_history_page *page, void *ud)
{
    (void)c;
    (void)page;
    finish(ud, err);
}

static void on_batch(ns_client *c, const ns_error *err, const ns_mutation_result *results, size_t n,
                     void *ud)
{
    (void)c;
    (void)results;
    (void)n;
    finish(ud, err);
}

static int on_plan_record(const ns_record_view *v, void *ud)
{
    (void)v;
    (void)ud;
    return 0;
}

static void on_done(ns_client *c, const ns_error *err, void *ud)
{
    (void)c;
    finish(ud, err);
}

static void on_report(ns_client *c, const ns_error *err, const char *json, size_t len, void *ud)
{
    (void)c;
    (void)json;
    (void)len;
    finish(ud, err);
}

static void on_pong(ns_client *c, const ns_error *err, uint64_t rtt_us, void *ud)
{
    (void)c;
    (void)rtt_us;
    finish(ud, err);
}

static void start_request(run *r)
{
    ns_client *c = r->c;
    ns_error err;
    int rc = NS_OK;
    switch (r->scenario) {
    case SC_PING:
        rc = ns_client_ping(c, on_pong, r, &err);
        break;
    case SC_HISTORY:
        rc = ns_client_history(c, "plan", NSF_PLAN_ID, 0, 0, on_history, r, &err);
        break;
    case SC_PUSH: {
        ns_field_view plan[] = {{"title", "text", "National Action Plan"},
                                {"status", "text", "draft"},
                                {"kind", "text", "nap"},
                                {"period_start", "date", "2024-01-01"},
                                {"period_end", "date", "2028-12-31"}};
        ns_field_view ind[] = {{"plan_id", "ref", NSF_PLAN_ID},
                               {"title", "text", "Share of women"},
                               {"baseline", "decimal", "12.5"}};
        ns_mutation m[] = {
            {"f1000000-0000-4000-8000-0000000000c1", "plan", NSF_PLAN_ID, NS_MUTATION_CREATE, 0,
             plan, 5},
            {"f1000000-0000-4000-8000-0000000000c2", "indicator", NSF_INDICATOR_ID,
             NS_MUTATION_UPDATE, 3, ind, 3},
        };
        rc = ns_client_push_batch(c, NS_PUSH_APPLY, m, 2, on_batch, r, &err);
        break;
    }
    case SC_PULL_PLAN:
        rc = ns_client_pull_plan(c, NSF_PLAN_ID, on_plan_record, r, on_done, r, &err);
        break;
    case SC_REPORT: {
        ns_report_request req = {"progress", NSF_PLAN_ID, 0, NULL};
        rc = ns_client_report(c, &req, on_report, r, &err);
        break;
    }
    default:
        nsf_die("scenario %d has no request", r->scenario);
    }
    if (rc != NS_OK)
        nsf_die("the request of scenario %d was refused: %s", r->scenario, err.message);
}

static void on_connected(ns_client *c, const ns_error *err, void *ud)
{
    (void)c;
    run *r = ud;
    if (err) {
        finish(r, err);
        return;
    }
    start_request(r);
}

static void start(run *r)
{
    ns_error err;
    if (r->scenario == SC_SYNC || r->scenario == SC_WATCH || r->scenario == SC_RESOLVE) {
        /* One change for the outbox, so that the sync pushes. */
        const char *const assign[] = {"title:text=National Action Plan", "status:text=draft",
                                      "kind:text=nap", "period_start:date=2024-01-01",
                                      "period_end:date=2028-12-31"};
        ns_edit_result out;
        if (ns_client_put(r->c, "plan", NSF_PLAN2_ID, assign, 5, &out, &err) != NS_OK)
            nsf_die("ns_client_put failed: %s", err.message);
        const char *const plans[] = {NSF_PLAN_ID};
        ns_sync_options o = {
            .plan_ids = r->scenario == SC_RESOLVE ? NULL : plans,
            .nplans = r->scenario == SC_RESOLVE ? 0 : 1,
            .watch = r->scenario == SC_WATCH,
            .on_event = on_sync_event,
            .event_ud = r,
        };
        if (ns_client_sync(r->c, &o, on_synced, r, &err) != NS_OK)
            nsf_die("ns_client_sync failed: %s", err.message);
        return;
    }
    if (ns_client_connect(r->c, on_connected, r, &err) != NS_OK)
        nsf_die("ns_client_connect failed: %s", err.message);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    nsf_die("the input was not done within %d ms", INPUT_WAIT_MS);
}

static void remove_store(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", ".lock"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char p[NSF_PATH + 16];
        snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
        if (unlink(p) != 0 && errno != ENOENT)
            nsf_die("cannot remove %s: %s", p, strerror(errno));
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    char pki_dir[NSF_PATH];
    nsf_tmpdir(pki_dir, "client-pki");
    nsf_pki_make(&F.pki, pki_dir, "fuzz-device");
    /* The store syncs every write: memory makes that cheap. */
    const char *tmp = getenv("TMPDIR");
    if (access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    nsf_tmpdir(F.dir, "client-store");
    if (tmp)
        setenv("TMPDIR", tmp, 1);
    else
        unsetenv("TMPDIR");
    ns_tls_config tc = {F.pki.server_cert, F.pki.server_key, F.pki.ca};
    char err[512];
    if (ns_tls_ctx_new(NS_TLS_SERVER, &tc, &F.server_tls, err, sizeof(err)) != NS_TLS_OK)
        nsf_die("server TLS: %s", err);
    if (uv_loop_init(&F.loop) != 0)
        nsf_die("uv_loop_init failed");
    F.zstd = ns_compress_new();
    if (F.zstd == NULL)
        nsf_die("out of memory");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fake_server *fs = calloc(1, sizeof(*fs));
    run *r = calloc(1, sizeof(*r));
    if (fs == NULL || r == NULL)
        nsf_die("out of memory");
    fs->data = data + 1;
    fs->size = size - 1;
    r->fs = fs;
    r->scenario = data[0] % SC_COUNT;

    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_init(&F.loop, &fs->listener) != 0 ||
        uv_tcp_bind(&fs->listener, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&fs->listener, 16, on_connection) != 0)
        nsf_die("the fake server cannot listen");
    fs->listener.data = fs;
    int len = sizeof(addr);
    if (uv_tcp_getsockname(&fs->listener, (struct sockaddr *)&addr, &len) != 0)
        nsf_die("cannot read the fake server's port");
    uv_timer_init(&F.loop, &fs->idle);
    fs->idle.data = fs;

    char server[32], store[NSF_PATH];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
    snprintf(store, sizeof(store), "%s/store-%u.db", F.dir, F.inputs++);
    ns_client_options opt = {
        .server = server,
        .ca_file = F.pki.ca,
        .cert_file = F.pki.device_cert,
        .key_file = F.pki.device_key,
        .timeout_ms = CLIENT_TIMEOUT,
        .store_path = store,
    };
    ns_error err;
    if (ns_client_new(&opt, &F.loop, &r->c, &err) != NS_OK)
        nsf_die("ns_client_new failed: %s", err.message);

    uv_timer_t watchdog;
    uv_timer_init(&F.loop, &watchdog);
    uv_timer_start(&watchdog, on_watchdog, INPUT_WAIT_MS, 0);
    uv_unref((uv_handle_t *)&watchdog);

    start(r);
    while (!r->done)
        uv_run(&F.loop, UV_RUN_ONCE);
    check_store(r->c);

    /* Everything closes; the loop runs until nothing is left of this input. */
    ns_client_free(r->c);
    if (fs->conn)
        ns_conn_close(fs->conn, false);
    uv_close((uv_handle_t *)&fs->listener, NULL);
    uv_close((uv_handle_t *)&fs->idle, NULL);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    remove_store(store);
    free(fs);
    free(r);
    return 0;
}
