/* libFuzzer target: the server's handling of a whole request sequence
 * after Hello, by the daemon's own code in this process (daemon/server.c,
 * session.c, dispatch.c and the modules behind them: sync, feed,
 * conflicts, history, reports, auth) against a real PostgreSQL: the test
 * cluster of tests/run.sh (NS_TEST_PGHOST, NS_TEST_PGPORT, NS_TEST_PGUSER),
 * in a database of this program's own, migrated as napsyncd migrates it,
 * with deploy/demo.sql's organisations and three registered devices:
 * two of one coordinator of the lead ministry, and one of the coordinator
 * of another country's ministry.
 *
 * Each input is one session: byte 0 picks the device (its low 7 bits
 * modulo 3) and whether Hello offers compressed frames (its high bit), the
 * rest are frames (fixture.h: 4-byte length, payload, the length cut
 * to what is left). A TLS connection over loopback with the device's
 * certificate (the daemon's real listener, TLS and frame code), Hello,
 * then the frames, all sent at once as a pipelining client would, then a
 * Ping. The session is done when that Ping is answered (answers keep the
 * order of requests) or the server closes; then the client closes and the
 * next input waits until the server has let the session go.
 *
 * What must hold, besides no crash, leak or undefined behaviour in the
 * daemon: every frame the server sends is an Envelope (compressed only
 * when agreed, and then one that decompresses) whose strings are
 * UTF-8, with an Error message the client can show; it answers only
 * request ids it was sent (or 0); and it finishes the session within
 * 20 s. Before fuzzing, sessions create a plan with an indicator and a
 * conflict (both devices of the coordinator edit its title from the same
 * version), and the other ministry's plan with an indicator for which the
 * lead ministry is responsible; inputs that name NSF_TOKEN_CONFLICT get
 * that conflict's id in its place. The server takes frames of at most
 * 2 KiB, so that larger ones meet that limit.
 *
 * The database lives as long as the process, so an input runs against
 * what the earlier ones left (as a server's sessions do). */
#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "compress.h"
#include "config.h"
#include "envelope.h"
#include "fixture.h"
#include "frame.h"
#include "log.h"
#include "messages.h"
#include "migrate.h"
#include "registry.h"
#include "server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DAEMON_ROLE       "napsyncd"
#define SESSION_WAIT_MS   20000u
#define MARKER_ID         (UINT64_MAX - 1)
#define MARKER_PAYLOAD    "napsync-fuzz-end"
#define MAX_REQUEST_IDS   4096
#define CLIENT_TEXT_LIMIT 1024 /* what libnapsync shows of a server's message */
#define MAX_FRAME         "2048"
#define NDEVICES          3

/* The devices inputs choose from. */
static const struct {
    const char *org_code;
    const char *principal;
    const char *name;
} devices[NDEVICES] = {
    {NSF_ORG_CODE, "fuzzer", "fuzz-device"},
    {NSF_ORG_CODE, "fuzzer", "fuzz-device-2"},
    {NSF_XA_ORG_CODE, "xa-fuzzer", "fuzz-xa-device"},
};

static struct {
    uv_loop_t loop;
    nsf_waiter w;
    nsf_pki pki; /* its device is devices[0] */
    char dir[NSF_PATH];
    struct {
        char cert[NSF_PATH], key[NSF_PATH], fp[65];
        ns_tls_ctx *tls;
        uint8_t *ticket; /* the last TLS session the server issued it, to resume */
        size_t ticket_len;
    } dev[NDEVICES];
    char dbname[64];
    char admin_postgres[1024]; /* the cluster's maintenance database, as superuser */
    char admin_db[1024];       /* our database, as superuser */
    char daemon_db[1024];      /* our database, as the daemon's role */
    bool db_created;
    ns_config cfg;
    ns_registry reg;
    ns_server srv;
    bool srv_started;
    struct sockaddr_in addr;
    uint8_t *hello[2]; /* without and with compression offered */
    size_t hello_len[2];
    ns_compress *zstd;
    uint8_t *marker;
    size_t marker_len;
    char conflict_id[NSF_TOKEN_LEN + 1];
} F;

/* ---- the database ------------------------------------------------------------------------ */

static void conninfo(char *out, size_t cap, const char *dbname, const char *user)
{
    const char *host = getenv("NS_TEST_PGHOST");
    const char *port = getenv("NS_TEST_PGPORT");
    /* Values quoted as libpq reads them; the environment's are paths and numbers. */
    int n =
        snprintf(out, cap, "host='%s' port='%s' user='%s' dbname='%s'", host, port, user, dbname);
    if (n < 0 || (size_t)n >= cap || strchr(host, '\'') || strchr(port, '\''))
        nsf_die("NS_TEST_PGHOST or NS_TEST_PGPORT is unusable");
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *pg_connect(const char *info)
{
    PGconn *c = PQconnectdb(info);
    if (PQstatus(c) != CONNECTION_OK)
        nsf_die("cannot connect to PostgreSQL: %s", PQerrorMessage(c));
    /* "... does not exist, skipping" would only clutter the output. */
    PQsetNoticeProcessor(c, ignore_notice, NULL);
    return c;
}

/* Runs sql with text parameters on info's database; returns the first
 * column of the first row (a static buffer, "" if none). */
static const char *pg_exec(const char *info, const char *sql, int n, const char *const *params)
{
    static char value[256];
    PGconn *c = pg_connect(info);
    PGresult *r = n ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        nsf_die("%.80s: %s", sql, PQresultErrorMessage(r));
    value[0] = '\0';
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0)
        snprintf(value, sizeof(value), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return value;
}

static void drop_database(void)
{
    if (!F.db_created || getenv("NSF_KEEP"))
        return;
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", F.dbname);
    PGconn *c = PQconnectdb(F.admin_postgres);
    if (PQstatus(c) == CONNECTION_OK)
        PQclear(PQexec(c, sql));
    PQfinish(c);
    F.db_created = false;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        nsf_die("cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 65536;
            char *b = realloc(buf, cap);
            if (b == NULL)
                nsf_die("out of memory");
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void database_setup(void)
{
    const char *user = getenv("NS_TEST_PGUSER");
    if (!getenv("NS_TEST_PGHOST") || !getenv("NS_TEST_PGPORT") || !user) {
        fprintf(stderr, "fuzz_session: NS_TEST_PGHOST, NS_TEST_PGPORT and NS_TEST_PGUSER must "
                        "name a PostgreSQL cluster (tests/fuzz/run-long.sh starts one)\n");
        exit(2);
    }
    snprintf(F.dbname, sizeof(F.dbname), "nsfuzz_session_%ld", (long)getpid());
    conninfo(F.admin_postgres, sizeof(F.admin_postgres), "postgres", user);
    conninfo(F.admin_db, sizeof(F.admin_db), F.dbname, user);
    conninfo(F.daemon_db, sizeof(F.daemon_db), F.dbname, DAEMON_ROLE);

    /* As the integration harness: an ordinary role that owns the database,
     * so that row-level security applies to the daemon. */
    pg_exec(F.admin_postgres,
            "DO $$ BEGIN CREATE ROLE " DAEMON_ROLE " LOGIN NOSUPERUSER NOBYPASSRLS;"
            " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
            0, NULL);
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", F.dbname);
    pg_exec(F.admin_postgres, sql, 0, NULL);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s OWNER " DAEMON_ROLE, F.dbname);
    pg_exec(F.admin_postgres, sql, 0, NULL);
    F.db_created = true;
    atexit(drop_database);

    char path[NSF_PATH], err[1024];
    snprintf(path, sizeof(path), "%s/sql", nsf_source_dir());
    int applied = 0;
    if (ns_migrate_run(F.daemon_db, path, &applied, err, sizeof(err)) != 0 || applied < 1)
        nsf_die("migrations: %s", err);
    snprintf(path, sizeof(path), "%s/deploy/demo.sql", nsf_source_dir());
    char *demo = read_file(path);
    pg_exec(F.admin_db, demo, 0, NULL);
    free(demo);
    for (int i = 0; i < NDEVICES; i++) {
        const char *params[] = {devices[i].org_code, devices[i].principal, "coordinator",
                                devices[i].name, F.dev[i].fp};
        pg_exec(F.admin_db, "SELECT napsync_register_device($1, $2, $3, $4, $5)", 5, params);
    }
    if (ns_registry_load(F.daemon_db, &F.reg, err, sizeof(err)) != 0)
        nsf_die("entity registry: %s", err);
}

/* ---- the daemon ------------------------------------------------------------------------- */

static void server_setup(void)
{
    char err[512], sql_dir[NSF_PATH];
    snprintf(sql_dir, sizeof(sql_dir), "%s/sql", nsf_source_dir());
    ns_config_init(&F.cfg);
    if (ns_config_set(&F.cfg, "tls_cert", F.pki.server_cert, err, sizeof(err)) != 0 ||
        ns_config_set(&F.cfg, "tls_key", F.pki.server_key, err, sizeof(err)) != 0 ||
        ns_config_set(&F.cfg, "tls_ca", F.pki.ca, err, sizeof(err)) != 0 ||
        ns_config_set(&F.cfg, "database", F.daemon_db, err, sizeof(err)) != 0 ||
        ns_config_set(&F.cfg, "sql_dir", sql_dir, err, sizeof(err)) != 0 ||
        ns_config_set(&F.cfg, "db_pool_size", "2", err, sizeof(err)) != 0 ||
        ns_config_set(&F.cfg, "max_frame_size", MAX_FRAME, err, sizeof(err)) != 0)
        nsf_die("configuration: %s", err);
    F.cfg.listen_port = 0; /* any free port: read back below */
    ns_log_level level = NS_LOG_ERROR;
    const char *env = getenv("NSF_LOG_LEVEL");
    if (env && ns_log_parse_level(env, &level) != 0)
        nsf_die("NSF_LOG_LEVEL must be debug, info, warn or error");
    ns_log_set_level(level);

    if (uv_loop_init(&F.loop) != 0)
        nsf_die("uv_loop_init failed");
    nsf_waiter_init(&F.w, &F.loop);
    if (ns_server_start(&F.srv, &F.loop, &F.cfg, &F.reg) != 0)
        nsf_die("the server did not start");
    F.srv_started = true;
    int len = sizeof(F.addr);
    if (uv_tcp_getsockname(&F.srv.listener, (struct sockaddr *)&F.addr, &len) != 0)
        nsf_die("cannot read the listening port");

    for (int i = 0; i < NDEVICES; i++) {
        ns_tls_config tc = {F.dev[i].cert, F.dev[i].key, F.pki.ca};
        if (ns_tls_ctx_new(NS_TLS_CLIENT, &tc, &F.dev[i].tls, err, sizeof(err)) != NS_TLS_OK)
            nsf_die("client TLS: %s", err);
    }
}

static bool server_stopped(void *ud)
{
    (void)ud;
    return F.srv.stopped;
}

/* A normal exit stops the daemon as SIGTERM would, so that LeakSanitizer
 * sees what a shutdown leaves. */
static void server_stop(void)
{
    if (!F.srv_started)
        return;
    F.srv_started = false;
    ns_server_shutdown(&F.srv);
    nsf_wait(&F.w, server_stopped, NULL, 30000, "shutdown");
    nsf_waiter_close(&F.w);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&F.loop) != 0)
        fprintf(stderr, "fuzz_session: handles still open after the shutdown\n");
    for (int i = 0; i < NDEVICES; i++) {
        ns_tls_ctx_free(F.dev[i].tls);
        free(F.dev[i].ticket);
    }
    ns_registry_free(&F.reg);
    ns_config_free(&F.cfg);
    free(F.hello[0]);
    free(F.hello[1]);
    ns_compress_free(F.zstd);
    free(F.marker);
}

/* ---- one session ------------------------------------------------------------------------ */

typedef struct {
    ns_conn *conn;
    const uint8_t *data; /* the frames to send after Welcome */
    size_t size;
    int device;  /* index in devices */
    bool zstd;   /* Hello offers compressed frames */
    bool agreed; /* Welcome took them */
    bool welcomed, finished, closed;
    uint64_t ids[MAX_REQUEST_IDS]; /* request ids sent */
    size_t nids;
    bool ids_full;
} session;

static bool id_sent(const session *s, uint64_t id)
{
    if (id == 0 || id == 1 || id == MARKER_ID || s->ids_full)
        return true;
    for (size_t i = 0; i < s->nids; i++)
        if (s->ids[i] == id)
            return true;
    return false;
}

static void send_or_die(session *s, const uint8_t *p, size_t len)
{
    int rc = ns_conn_send(s->conn, p, len);
    if (rc != 0)
        nsf_die("cannot send a frame: %s", uv_strerror(rc));
}

static void send_frames(session *s)
{
    const uint8_t *data = s->data;
    size_t size = s->size;
    const uint8_t *payload;
    size_t len;
    while (nsf_next_frame(&data, &size, &payload, &len)) {
        uint8_t *copy = malloc(len ? len : 1);
        if (copy == NULL)
            nsf_die("out of memory");
        if (len)
            memcpy(copy, payload, len);
        nsf_replace(copy, len, NSF_TOKEN_CONFLICT, F.conflict_id);
        /* The request id the server may answer: a compressed frame's is
         * inside it. */
        ns_envelope *e = ns_envelope_unpack(copy, len);
        if (e && e->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
            ns_envelope *inner = NULL;
            if (ns_compress_unpack(F.zstd, e->zstd.data, e->zstd.len, NS_FRAME_DEFAULT_MAX,
                                   &inner) != NS_COMPRESS_OK)
                inner = NULL;
            ns_envelope_free(e);
            e = inner;
        }
        if (e) {
            if (s->nids < MAX_REQUEST_IDS)
                s->ids[s->nids++] = e->request_id;
            else
                s->ids_full = true;
            ns_envelope_free(e);
        }
        send_or_die(s, copy, len);
        free(copy);
    }
    send_or_die(s, F.marker, F.marker_len);
}

/* NSF_VERBOSE set: each answer on stderr, to see how far the seeds get. */
static void verbose(const ns_envelope *e)
{
    fprintf(stderr, "fuzz_session: answer to %llu:", (unsigned long long)e->request_id);
    switch (e->body_case) {
    case NAPSYNC__V1__ENVELOPE__BODY_ERROR:
        fprintf(stderr, " error %s: %s", ns_error_code_name(e->error->code), e->error->message);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_PUSH_RESULT:
        for (size_t i = 0; i < e->push_result->n_results; i++)
            fprintf(stderr, " [outcome %d version %llu %s]",
                    (int)e->push_result->results[i]->outcome,
                    (unsigned long long)e->push_result->results[i]->version,
                    e->push_result->results[i]->reject_reason);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE:
        fprintf(stderr, " page of %zu records", e->change_page->n_records);
        break;
    default:
        fprintf(stderr, " body %d", (int)e->body_case);
        break;
    }
    fputc('\n', stderr);
}

static void on_ready(ns_conn *c, void *ud)
{
    (void)c;
    session *s = ud;
    send_or_die(s, F.hello[s->zstd], F.hello_len[s->zstd]);
}

static void on_frame(ns_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    (void)c;
    session *s = ud;
    ns_envelope *e = ns_envelope_unpack(payload, len);
    if (e == NULL)
        nsf_die("the server sent a frame of %zu bytes that is not an Envelope", len);
    if (e->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
        if (!s->agreed)
            nsf_die("the server sent a compressed frame without agreeing on compression");
        ns_envelope *inner = NULL;
        ns_compress_status st =
            ns_compress_unpack(F.zstd, e->zstd.data, e->zstd.len, NS_FRAME_DEFAULT_MAX, &inner);
        if (st != NS_COMPRESS_OK)
            nsf_die("the server sent a compressed frame that does not decompress (%d)", (int)st);
        ns_envelope_free(e);
        e = inner;
    }
    nsf_check_strings(&e->base, "the server");
    if (!id_sent(s, e->request_id))
        nsf_die("the server answered request %llu, which it was never sent",
                (unsigned long long)e->request_id);
    if (e->body_case == NAPSYNC__V1__ENVELOPE__BODY_ERROR) {
        const char *m = e->error->message;
        if (m == NULL || !ns_text_ok(m, CLIENT_TEXT_LIMIT))
            nsf_die("the server sent an Error (%s) whose message a client cannot show: "
                    "\"%.300s\"",
                    ns_error_code_name(e->error->code), m ? m : "(none)");
    }
    if (getenv("NSF_VERBOSE"))
        verbose(e);
    if (!s->welcomed) {
        if (e->body_case != NAPSYNC__V1__ENVELOPE__BODY_WELCOME || e->request_id != 1)
            nsf_die("the server did not welcome the fuzzer's device (body %d)", (int)e->body_case);
        s->welcomed = true;
        s->agreed = e->welcome->compression == NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1;
        if (s->agreed != s->zstd)
            nsf_die("the server answered an offer of compression %d with %d", (int)s->zstd,
                    (int)e->welcome->compression);
        send_frames(s);
    } else if (e->body_case == NAPSYNC__V1__ENVELOPE__BODY_PONG && e->request_id == MARKER_ID &&
               e->pong->payload.len == strlen(MARKER_PAYLOAD) &&
               memcmp(e->pong->payload.data, MARKER_PAYLOAD, e->pong->payload.len) == 0) {
        s->finished = true;
    }
    ns_envelope_free(e);
}

static void on_close(ns_conn *c, ns_conn_close_reason reason, const char *msg, void *ud)
{
    (void)c;
    session *s = ud;
    s->conn = NULL;
    s->closed = true;
    /* Only the server may end a session, and only after the TLS handshake. */
    if (!s->welcomed)
        nsf_die("the session ended before Welcome (%d): %s", (int)reason, msg);
}

static void on_tls_session(ns_conn *c, const uint8_t *ticket, size_t len, void *ud)
{
    (void)c;
    const session *s = ud;
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return;
    memcpy(copy, ticket, len);
    free(F.dev[s->device].ticket);
    F.dev[s->device].ticket = copy;
    F.dev[s->device].ticket_len = len;
}

static const ns_conn_callbacks callbacks = {
    .on_ready = on_ready,
    .on_frame = on_frame,
    .on_close = on_close,
    .on_tls_session = on_tls_session,
};

static bool session_over(void *ud)
{
    const session *s = ud;
    return s->finished || s->closed;
}

static bool all_gone(void *ud)
{
    const session *s = ud;
    return s->closed && F.srv.nsessions == 0;
}

/* One session of a device (index in devices), offering compression or not. */
static void run_session(int device, bool zstd, const uint8_t *data, size_t size)
{
    session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        nsf_die("out of memory");
    s->data = data;
    s->size = size;
    s->device = device;
    s->zstd = zstd;
    ns_conn_options opt = {
        .max_frame = NS_FRAME_DEFAULT_MAX,
        .handshake_timeout_ms = SESSION_WAIT_MS,
        .write_queue_limit = 64u * 1024u * 1024u,
        .tls_session = F.dev[device].ticket,
        .tls_session_len = F.dev[device].ticket_len,
    };
    int rc = ns_conn_connect(&F.loop, (const struct sockaddr *)&F.addr, "127.0.0.1",
                             F.dev[device].tls, &opt, &callbacks, s, &s->conn);
    if (rc != 0)
        nsf_die("cannot connect: %s", uv_strerror(rc));
    nsf_wait(&F.w, session_over, s, SESSION_WAIT_MS, "the session");
    if (!s->closed)
        ns_conn_close(s->conn, true);
    /* The graceful close lingers at most 2 s on each side. */
    nsf_wait(&F.w, all_gone, s, SESSION_WAIT_MS, "closing the session");
    free(s);
}

/* ---- setup: a plan, an indicator and a conflict --------------------------------------- */

/* Runs one session of a device with the given frames. */
static void run_frames(int device, nsf_buf *b)
{
    run_session(device, false, b->p, b->len);
    nsf_buf_free(b);
}

static void fixture_records(void)
{
    nsf_arena *a = nsf_arena_new();
    nsf_buf b = {0};
    Napsync__V1__Mutation *create[] = {
        nsf_mutation(a, "f1000000-0000-4000-8000-0000000000a1", "plan", NSF_PLAN_ID,
                     NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE, 0,
                     nsf_plan_fields(a, "National Action Plan on WPS", "draft")),
        nsf_mutation(a, "f1000000-0000-4000-8000-0000000000a2", "indicator", NSF_INDICATOR_ID,
                     NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE, 0,
                     nsf_indicator_fields(a, NSF_PLAN_ID, "Share of women among negotiators")),
    };
    nsf_buf_frame(&b, nsf_push(a, 2, NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY, 2, create));
    run_frames(0, &b);
    /* Both devices edit the title from version 1: the second edit collides. */
    for (int i = 0; i < 2; i++) {
        Napsync__V1__Mutation *edit[] = {nsf_mutation(
            a, i ? "f1000000-0000-4000-8000-0000000000a4" : "f1000000-0000-4000-8000-0000000000a3",
            "plan", NSF_PLAN_ID, NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE, 1,
            nsf_fields(
                a, 1, "title",
                nsf_text(a, i ? "NAP on WPS 2024-2028" : "National Action Plan 2024-2028")))};
        nsf_buf_frame(&b, nsf_push(a, 2, NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY, 1, edit));
        run_frames(i, &b);
    }
    /* The other ministry's adopted plan, and an indicator of it that the
     * lead ministry answers for (it may write it: a delegation). */
    Napsync__V1__Mutation *xa[] = {
        nsf_mutation(a, "f1000000-0000-4000-8000-0000000000a5", "plan", NSF_XA_PLAN_ID,
                     NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE, 0,
                     nsf_plan_fields(a, "Xandria National Action Plan", "adopted")),
        nsf_mutation(a, "f1000000-0000-4000-8000-0000000000a6", "indicator", NSF_XA_INDICATOR_ID,
                     NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE, 0,
                     nsf_fields(a, 4, "plan_id", nsf_ref(a, NSF_XA_PLAN_ID), "title",
                                nsf_text(a, "Women in peace delegations"), "value_type",
                                nsf_text(a, "number"), "responsible_id", nsf_ref(a, NSF_ORG_ID))),
    };
    nsf_buf_frame(&b, nsf_push(a, 2, NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY, 2, xa));
    run_frames(2, &b);
    nsf_arena_free(a);

    const char *params[] = {NSF_PLAN_ID};
    const char *id = pg_exec(
        F.admin_db, "SELECT id FROM sync_conflicts WHERE record_id = $1 LIMIT 1", 1, params);
    if (strlen(id) != NSF_TOKEN_LEN)
        nsf_die("the setup sessions made no conflict");
    memcpy(F.conflict_id, id, sizeof(F.conflict_id));
    const char *xa_params[] = {NSF_XA_INDICATOR_ID};
    if (strcmp(pg_exec(F.admin_db, "SELECT count(*) FROM indicators WHERE id = $1", 1, xa_params),
               "1") != 0)
        nsf_die("the setup sessions made no plan of the other ministry");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A write to a session the server has closed must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    nsf_tmpdir(F.dir, "session");
    nsf_pki_make(&F.pki, F.dir, devices[0].name);
    memcpy(F.dev[0].cert, F.pki.device_cert, NSF_PATH);
    memcpy(F.dev[0].key, F.pki.device_key, NSF_PATH);
    memcpy(F.dev[0].fp, F.pki.device_fp, sizeof(F.dev[0].fp));
    for (int i = 1; i < NDEVICES; i++)
        nsf_pki_device(F.dir, devices[i].name, F.dev[i].cert, F.dev[i].key, F.dev[i].fp);
    database_setup();
    server_setup();
    atexit(server_stop);

    nsf_arena *a = nsf_arena_new();
    nsf_buf b = {0};
    for (int z = 0; z < 2; z++) {
        nsf_buf_envelope(&b, nsf_hello(a, 1, z));
        F.hello[z] = b.p;
        F.hello_len[z] = b.len;
        memset(&b, 0, sizeof(b));
    }
    F.zstd = ns_compress_new();
    if (F.zstd == NULL)
        nsf_die("out of memory");
    nsf_buf_envelope(&b, nsf_ping(a, MARKER_ID, MARKER_PAYLOAD));
    F.marker = b.p;
    F.marker_len = b.len;
    nsf_arena_free(a);

    fixture_records();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    run_session((data[0] & 0x7f) % NDEVICES, (data[0] & 0x80) != 0, data + 1, size - 1);
    return 0;
}
