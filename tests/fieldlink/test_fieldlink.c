/* The CI-sized field-link test: napsync over the simulated "fair" line of
 * tests/fieldlink (256 kbit/s, 150 ms each way, 1 % loss), correctness only.
 *
 * link.sh makes two network namespaces joined by a shaped, lossy veth
 * pair; napsyncd and napsync-linkproxy (the line's delay) run in the server
 * namespace, the device's napsync CLI in the client namespace, so every
 * byte between them crosses the simulated line. PostgreSQL stays where it
 * is: the daemon reaches it through its Unix socket, which no network
 * namespace hides. A coordinator's device imports a plan on the server's
 * side (its loopback, unshaped); a field device of the same organisation
 * then syncs it over the line, reports new values and syncs again.
 *
 * Asserted: each sync completes; the device ends with exactly the server's
 * records; the server decided each pushed mutation once and was sent none
 * again (napsyncd's napsync_mutation_replays_total stays 0: a replay is an
 * acknowledged mutation re-sent); a sync with nothing new pushes nothing;
 * the bytes went through the line. Nothing about time. Needs root. */
#define _GNU_SOURCE /* setns */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define PRINCIPAL "Field Link Coordinator"
#define ORG       "mogender"
#define OUT_CAP   65536

/* The CI-sized plan: a plan, its indicators and four quarterly reports of
 * each for 2025, in sizes like the benchmark's (tests/fieldlink/run.sh). */
#define N_INDICATORS 15
#define N_REPORTS    (4 * N_INDICATORS)
#define N_NEW        10 /* reports the field device adds */
#define PLAN_ID      "fa000000-0000-4000-8000-000000000001"
#define PROXY_PORT   "7443"
/* The line's one-way delay: link.sh's fair profile (checked in setup). */
#define FAIR_DELAY_MS "150"

typedef struct {
    nst_env *e;
    nst_device seed;  /* imports the plan, on the server's side */
    nst_device field; /* syncs over the line */
    char link_sh[NST_PATH], proxy_bin[NST_PATH];
    char fl_id[64], server_ns[96], client_ns[96], server_ip[32];
    bool link_up;
    int host_fd, server_fd, client_fd; /* network namespaces; -1 when not open */
    pid_t proxy;
    char proxy_log[NST_PATH], proxy_stats[NST_PATH];
    uint16_t http_port; /* napsyncd's metrics, in the server namespace */
    char seed_store[NST_PATH], field_store[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

/* ---- namespaces ------------------------------------------------------------------------- */

static int open_ns(const char *name)
{
    char path[NST_PATH];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fprintf(stderr, "test_fieldlink: cannot open %s: %s\n", path, strerror(errno));
    return fd;
}

/* Moves this thread (and so the processes it starts, and the sockets it
 * opens) into a network namespace. */
static int enter_ns(int fd)
{
    if (setns(fd, CLONE_NEWNET) != 0) {
        fprintf(stderr, "test_fieldlink: setns: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static void must_enter(const fixture *f, int fd)
{
    if (enter_ns(fd) != 0)
        nst_fail(f->e, "cannot enter a network namespace of the line");
}

/* The value of NAME=... in link.sh's output, into out. */
static int link_value(const char *text, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *v = p + n + 1;
            size_t len = strcspn(v, "\n");
            if (len == 0 || len >= cap)
                return -1;
            memcpy(out, v, len);
            out[len] = '\0';
            return 0;
        }
    }
    fprintf(stderr, "test_fieldlink: no %s in link.sh's output:\n%s\n", name, text);
    return -1;
}

/* ---- the plan ----------------------------------------------------------------------------- */

static void indicator_id(char out[37], int i)
{
    snprintf(out, 37, "fa010000-0000-4000-8000-%012d", i);
}

/* Writes the plan file: about 400 bytes of JSON per indicator and 300 per
 * report, as in the benchmark. */
static int write_plan(const char *path)
{
    FILE *fp = fopen(path, "w");
    if (fp == NULL) {
        fprintf(stderr, "test_fieldlink: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(fp,
            "{\"format\":\"napsync-plan\",\"version\":1,\n\"plan\":{\"id\":\"%s\","
            "\"title\":\"Field link test plan\",\"kind\":\"%s\",\"status\":\"adopted\","
            "\"period_start\":\"%s\",\"period_end\":\"%s\"},\n\"indicators\":[\n",
            PLAN_ID, NST_PLAN_KIND, NST_PLAN_START, NST_PLAN_END);
    for (int i = 1; i <= N_INDICATORS; i++) {
        char id[37];
        indicator_id(id, i);
        fprintf(fp,
                "%s{\"id\":\"%s\",\"code\":\"FL-%02d\",\"title\":\"Women among the staff of "
                "district office %d who completed the protection training\","
                "\"definition\":\"Share of the district office's staff who completed the "
                "training on the protection of women and girls, in per cent, counted at the end "
                "of each quarter.\",\"unit\":\"per cent\",\"value_type\":\"%s\","
                "\"frequency\":\"quarterly\",\"baseline\":\"12.5\",\"baseline_date\":"
                "\"2024-12-31\",\"target\":\"30\",\"target_date\":\"2028-12-31\","
                "\"verification\":\"Training attendance lists of the district office\"}\n",
                i == 1 ? "" : ",", id, i, i, NST_INDICATOR_TYPE);
    }
    fputs("],\n\"indicator_reports\":[\n", fp);
    static const char *const quarters[4][2] = {{"2025-01-01", "2025-03-31"},
                                               {"2025-04-01", "2025-06-30"},
                                               {"2025-07-01", "2025-09-30"},
                                               {"2025-10-01", "2025-12-31"}};
    for (int r = 0; r < N_REPORTS; r++) {
        int ind = r / 4 + 1, q = r % 4;
        char id[37], ind_id[37];
        snprintf(id, sizeof(id), "fa020000-0000-4000-8000-%012d", r + 1);
        indicator_id(ind_id, ind);
        fprintf(fp,
                "%s{\"id\":\"%s\",\"indicator_id\":\"%s\",\"period_start\":\"%s\","
                "\"period_end\":\"%s\",\"status\":\"submitted\",\"value\":\"%d.%d\","
                "\"narrative\":\"Quarter %d: the district office trained two more groups; "
                "figures checked by the focal point.\",\"evidence\":\"Attendance lists "
                "FL-%02d-Q%d, district office archive\"}\n",
                r == 0 ? "" : ",", id, ind_id, quarters[q][0], quarters[q][1], 12 + q, ind % 10,
                q + 1, ind, q + 1);
    }
    fputs("]}\n", fp);
    if (fclose(fp) != 0) {
        fprintf(stderr, "test_fieldlink: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* ---- processes ---------------------------------------------------------------------------- */

/* Waits for the proxy's "listening" line. */
static int proxy_wait_ready(const fixture *f)
{
    for (int i = 0; i < 500; i++) {
        FILE *fp = fopen(f->proxy_log, "r");
        if (fp) {
            char line[512];
            bool ready = false;
            while (!ready && fgets(line, sizeof(line), fp))
                ready = strstr(line, "linkproxy: listening on") != NULL;
            fclose(fp);
            if (ready)
                return 0;
        }
        int st;
        if (nst_wait_pid(f->proxy, 10, &st) == 0) {
            fprintf(stderr, "test_fieldlink: napsync-linkproxy exited with status %d\n", st);
            return -1;
        }
    }
    fprintf(stderr, "test_fieldlink: napsync-linkproxy did not listen\n");
    return -1;
}

/* Stops the proxy (it writes its stats file then). Returns its exit status
 * or -1. */
static int proxy_stop(fixture *f)
{
    if (f->proxy <= 0)
        return -1;
    kill(f->proxy, SIGTERM);
    int st = -1;
    if (nst_wait_pid(f->proxy, NST_WAIT_MS, &st) != 0) {
        kill(f->proxy, SIGKILL);
        (void)nst_wait_pid(f->proxy, NST_WAIT_MS, &st);
        st = -1;
    }
    f->proxy = 0;
    return st;
}

/* A value of the proxy's stats file, or -1. */
static long long proxy_stat(const fixture *f, const char *key)
{
    FILE *fp = fopen(f->proxy_stats, "r");
    if (fp == NULL)
        return -1;
    char k[64];
    long long v, found = -1;
    while (fscanf(fp, "%63s %lld", k, &v) == 2)
        if (strcmp(k, key) == 0)
            found = v;
    fclose(fp);
    return found;
}

/* The field device's `napsync sync --plan PLAN_ID --json`, in the client
 * namespace, through the line. A timeout far above what the line needs:
 * this test never asserts time. */
static int field_sync(fixture *f, char *out, size_t cap)
{
    char server[64];
    snprintf(server, sizeof(server), "%s:%s", f->server_ip, PROXY_PORT);
    const char *argv[] = {f->e->napsync,  "--server",    server,   "--ca",       f->e->ca_cert,
                          "--cert",       f->field.cert, "--key",  f->field.key, "--store",
                          f->field_store, "--timeout",   "120000", "sync",       "--plan",
                          PLAN_ID,        "--json",      NULL};
    must_enter(f, f->client_fd);
    int rc = nst_run((char *const *)argv, out, cap);
    must_enter(f, f->host_fd);
    return rc;
}

/* One series of napsyncd's /metrics (read in the server namespace, over
 * plain HTTP/1.0), a counter; fails the test when it is not there. */
static long long metric(fixture *f, const char *series)
{
    must_enter(f, f->server_fd);
    int fd = nst_tcp_connect(f->http_port);
    must_enter(f, f->host_fd);
    if (fd < 0)
        nst_fail(f->e, "cannot connect to napsyncd's HTTP port %u", (unsigned)f->http_port);
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        close(fd);
        nst_fail(f->e, "cannot ask napsyncd for its metrics");
    }
    static char body[1 << 18];
    size_t len = 0;
    ssize_t r;
    while (len + 1 < sizeof(body) && (r = read(fd, body + len, sizeof(body) - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    body[len] = '\0';
    size_t n = strlen(series);
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return (long long)strtod(p + n + 1, NULL);
    nst_fail(f->e, "no %s in napsyncd's metrics", series);
}

/* ---- setup and teardown -------------------------------------------------------------------- */

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f == NULL)
        return 0;
    int rc = 0;
    if (f->host_fd >= 0 && enter_ns(f->host_fd) != 0)
        rc = -1;
    if (f->proxy > 0)
        (void)proxy_stop(f);
    if (nst_env_close(f->e) != 0)
        rc = -1;
    if (f->link_up) {
        char *argv[] = {f->link_sh, "down", f->fl_id, NULL};
        if (nst_run(argv, NULL, 0) != 0)
            rc = -1;
    }
    int fds[] = {f->host_fd, f->server_fd, f->client_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(f);
    return rc;
}

static int setup_line(fixture *f)
{
    const char *src = getenv("NS_SOURCE_DIR");
    const char *build = getenv("NS_BUILD_DIR");
    if (src == NULL || build == NULL) {
        fprintf(stderr, "test_fieldlink: NS_SOURCE_DIR and NS_BUILD_DIR must be set (ctest)\n");
        return -1;
    }
    if (nst_path_join(f->link_sh, src, "tests/fieldlink/link.sh") != 0 ||
        nst_path_join(f->proxy_bin, build, "napsync-linkproxy") != 0)
        return -1;
    char out[2048], owner[24];
    snprintf(owner, sizeof(owner), "%ld", (long)getpid());
    char *up[] = {f->link_sh, "up", "ci", "--owner", owner, NULL};
    if (nst_run(up, out, sizeof(out)) != 0) {
        fprintf(stderr, "test_fieldlink: link.sh up failed:\n%s\n", out);
        return -1;
    }
    if (link_value(out, "FL_ID", f->fl_id, sizeof(f->fl_id)) != 0)
        return -1;
    f->link_up = true;
    if (link_value(out, "FL_SERVER_NS", f->server_ns, sizeof(f->server_ns)) != 0 ||
        link_value(out, "FL_CLIENT_NS", f->client_ns, sizeof(f->client_ns)) != 0 ||
        link_value(out, "FL_SERVER_IP", f->server_ip, sizeof(f->server_ip)) != 0)
        return -1;
    char *shape[] = {f->link_sh, "shape", f->fl_id, "fair", NULL};
    char *prof[] = {f->link_sh, "profile", "fair", NULL};
    char delay[16];
    if (nst_run(shape, NULL, 0) != 0 || nst_run(prof, out, sizeof(out)) != 0 ||
        link_value(out, "FL_DELAY_MS", delay, sizeof(delay)) != 0)
        return -1;
    if (strcmp(delay, FAIR_DELAY_MS) != 0) {
        fprintf(stderr, "test_fieldlink: link.sh's fair delay is %s ms, the test's %s\n", delay,
                FAIR_DELAY_MS);
        return -1;
    }
    f->server_fd = open_ns(f->server_ns);
    f->client_fd = open_ns(f->client_ns);
    return f->server_fd >= 0 && f->client_fd >= 0 ? 0 : -1;
}

/* A server certificate that also names the server's address on the line,
 * which the field device connects to. */
static int install_server_cert(fixture *f)
{
    nst_env *e = f->e;
    char script[NST_PATH], out[4096], cert[NST_PATH], key[NST_PATH], san[48];
    snprintf(san, sizeof(san), "IP:%s", f->server_ip);
    if (nst_path_join(script, e->source_dir, "deploy/ca.sh") != 0 ||
        nst_path_join(cert, e->ca_dir, "fieldlink.crt") != 0 ||
        nst_path_join(key, e->ca_dir, "fieldlink.key") != 0)
        return -1;
    char *argv[] = {script,         "server",        e->ca_dir, "fieldlink",
                    "IP:127.0.0.1", "DNS:localhost", san,       NULL};
    if (nst_run(argv, out, sizeof(out)) != 0) {
        fprintf(stderr, "test_fieldlink: ca.sh server failed:\n%s\n", out);
        return -1;
    }
    return nst_server_cert_install(e, cert, key);
}

/* napsyncd (with its metrics on a loopback port) and the proxy, both in the
 * server namespace; this thread returns to its own namespace after. */
static int start_server_side(fixture *f)
{
    nst_env *e = f->e;
    if (enter_ns(f->server_fd) != 0)
        return -1;
    f->http_port = nst_free_port();
    char http[32];
    snprintf(http, sizeof(http), "127.0.0.1:%u", (unsigned)f->http_port);
    const char *extra[] = {"--http-listen", http, NULL};
    int rc = f->http_port == 0 ? -1 : nst_daemon_start(e, extra);
    if (rc == 0) {
        char listen[64], target[32];
        snprintf(listen, sizeof(listen), "%s:%s", f->server_ip, PROXY_PORT);
        snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)e->port);
        char *argv[] = {f->proxy_bin, "--listen",    listen,    "--target",     target,
                        "--delay",    FAIR_DELAY_MS, "--stats", f->proxy_stats, NULL};
        f->proxy = nst_spawn(argv, f->proxy_log);
        rc = f->proxy > 0 ? proxy_wait_ready(f) : -1;
    }
    if (enter_ns(f->host_fd) != 0)
        rc = -1;
    return rc;
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    f->host_fd = f->server_fd = f->client_fd = -1;
    if (geteuid() != 0) {
        fprintf(stderr, "test_fieldlink: needs root, to make the network namespaces of the "
                        "simulated line (tests/fieldlink/link.sh)\n");
        return -1;
    }
    f->host_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (f->host_fd < 0) {
        fprintf(stderr, "test_fieldlink: cannot open /proc/self/ns/net: %s\n", strerror(errno));
        return -1;
    }
    f->e = nst_env_new("fieldlink", NULL);
    if (f->e == NULL)
        return -1;
    nst_env *e = f->e;
    if (e->pg.host[0] != '/') {
        fprintf(stderr,
                "test_fieldlink: NS_TEST_PGHOST must be PostgreSQL's socket directory (not "
                "'%s'): napsyncd runs in a network namespace of its own\n",
                e->pg.host);
        return -1;
    }
    char plan[NST_PATH];
    if (nst_path_join(f->proxy_log, e->dir, "linkproxy.log") != 0 ||
        nst_path_join(f->proxy_stats, e->dir, "linkproxy.stats") != 0 ||
        nst_path_join(f->seed_store, e->dir, "seed.db") != 0 ||
        nst_path_join(f->field_store, e->dir, "field.db") != 0 ||
        nst_path_join(plan, e->dir, "plan.json") != 0 || write_plan(plan) != 0)
        return -1;
    if (setup_line(f) != 0 || install_server_cert(f) != 0 ||
        nst_device_issue(e, false, "fl-seed", &f->seed) != 0 ||
        nst_device_issue(e, false, "fl-field", &f->field) != 0 || start_server_side(f) != 0 ||
        nst_device_register(e, ORG, PRINCIPAL, "coordinator", &f->seed) != 0 ||
        nst_device_register(e, ORG, PRINCIPAL, "coordinator", &f->field) != 0)
        return -1;
    /* The plan reaches the server on its own side, not over the line. */
    char out[OUT_CAP];
    if (enter_ns(f->server_fd) != 0)
        return -1;
    int rc = nst_cli(e, &f->seed, f->seed_store, out, sizeof(out), "import", "plan", plan, "--json",
                     NULL);
    if (enter_ns(f->host_fd) != 0)
        return -1;
    if (rc != 0) {
        fprintf(stderr, "test_fieldlink: napsync import exited %d:\n%s\n", rc, out);
        return -1;
    }
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static long long json_u64(const fixture *f, const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (p == NULL)
        nst_fail(f->e, "no \"%s\" in: %s", key, json);
    return strtoll(p + strlen(pat), NULL, 10);
}

/* Live records of a type in the plan, as the server has them. */
static long long server_count(fixture *f, const char *table)
{
    char sql[160], v[32];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE plan_id = $1 AND NOT deleted", table);
    const char *params[] = {PLAN_ID};
    if (nst_db_exec(f->e, sql, 1, params, v, sizeof(v)) != 0)
        nst_fail(f->e, "cannot count %s", table);
    return atoll(v);
}

/* Records of a type in the field device's replica (napsync list). */
static int replica_count(fixture *f, const char *type)
{
    static char out[1 << 20];
    char *argv[] = {f->e->napsync, "--store", f->field_store, "list", (char *)type, "--json", NULL};
    int rc = nst_run(argv, out, sizeof(out));
    if (rc != 0)
        nst_fail(f->e, "napsync list %s exited %d", type, rc);
    return nst_count_lines(out);
}

static void must_sync(fixture *f, char *out, size_t cap)
{
    int rc = field_sync(f, out, cap);
    if (rc != 0)
        nst_fail(f->e, "napsync sync over the fair line exited %d: %s (proxy log: %s)", rc, out,
                 f->proxy_log);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* A fresh device pulls the whole plan over the line. */
static void test_first_pull(void **state)
{
    fixture *f = *state;
    char out[OUT_CAP];
    must_sync(f, out, sizeof(out));
    assert_int_equal(json_u64(f, out, "pushed"), 0);
    assert_int_equal(json_u64(f, out, "rejected"), 0);
    /* The plan, its indicators and reports: each once (one version each). */
    assert_int_equal(json_u64(f, out, "received"), 1 + N_INDICATORS + N_REPORTS);
    assert_int_equal(replica_count(f, "plan"), 1);
    assert_int_equal(replica_count(f, "indicator"), server_count(f, "indicators"));
    assert_int_equal(replica_count(f, "indicator_report"), N_REPORTS);
    nst_test_passed(f->e);
}

/* New reports saved offline, then one sync: pushed once each, applied
 * once each, none re-sent. */
static void test_push_then_pull(void **state)
{
    fixture *f = *state;
    long long applied0 = metric(f, "napsync_mutations_total{outcome=\"applied\"}");
    long long replays0 = metric(f, "napsync_mutation_replays_total");
    char out[OUT_CAP];
    for (int i = 1; i <= N_NEW; i++) {
        char ind[64], value[32];
        snprintf(ind, sizeof(ind), "indicator_id:ref=fa010000-0000-4000-8000-%012d",
                 (i - 1) % N_INDICATORS + 1);
        snprintf(value, sizeof(value), "value:decimal=%d.5", 15 + i % 7);
        /* A store command: offline, in this namespace. */
        char *argv[] = {f->e->napsync,
                        "--store",
                        f->field_store,
                        "put",
                        "indicator_report",
                        "new",
                        "plan_id:ref=" PLAN_ID,
                        ind,
                        (i - 1) / N_INDICATORS == 0 ? "period_start:date=2026-01-01"
                                                    : "period_start:date=2026-04-01",
                        (i - 1) / N_INDICATORS == 0 ? "period_end:date=2026-03-31"
                                                    : "period_end:date=2026-06-30",
                        "status:text=submitted",
                        value,
                        "narrative:text=Reported from the district office over the field line.",
                        "evidence:text=Attendance lists, district office archive",
                        NULL};
        int rc = nst_run(argv, out, sizeof(out));
        if (rc != 0)
            nst_fail(f->e, "napsync put exited %d: %s", rc, out);
    }
    must_sync(f, out, sizeof(out));
    assert_int_equal(json_u64(f, out, "pushed"), N_NEW);
    assert_int_equal(json_u64(f, out, "rejected"), 0);
    assert_int_equal(server_count(f, "indicator_reports"), N_REPORTS + N_NEW);
    assert_int_equal(replica_count(f, "indicator_report"), N_REPORTS + N_NEW);
    /* Decided once each, and not one of them sent a second time. */
    assert_int_equal(metric(f, "napsync_mutations_total{outcome=\"applied\"}") - applied0, N_NEW);
    assert_int_equal(metric(f, "napsync_mutation_replays_total") - replays0, 0);
    char v[32];
    const char *params[] = {f->field.name};
    if (nst_db_exec(f->e,
                    "SELECT count(*) FROM sync_mutations m JOIN devices d ON d.id = m.device_id "
                    "WHERE d.name = $1",
                    1, params, v, sizeof(v)) != 0)
        nst_fail(f->e, "cannot count the field device's mutations");
    assert_int_equal(atoll(v), N_NEW);
    nst_test_passed(f->e);
}

/* Nothing new on either side: the sync sends no mutation, receives none,
 * and the device's outbox is empty. */
static void test_resync_sends_nothing(void **state)
{
    fixture *f = *state;
    long long replays0 = metric(f, "napsync_mutation_replays_total");
    char out[OUT_CAP];
    must_sync(f, out, sizeof(out));
    assert_int_equal(json_u64(f, out, "pushed"), 0);
    assert_int_equal(json_u64(f, out, "received"), 0);
    assert_int_equal(metric(f, "napsync_mutation_replays_total") - replays0, 0);
    char *argv[] = {f->e->napsync, "--store", f->field_store, "status", "--json", NULL};
    int rc = nst_run(argv, out, sizeof(out));
    if (rc != 0)
        nst_fail(f->e, "napsync status exited %d", rc);
    assert_int_equal(json_u64(f, out, "pending"), 0);
    assert_int_equal(json_u64(f, out, "rejected"), 0);
    nst_test_passed(f->e);
}

/* Every sync went through the line: the proxy carried it, and the line's
 * interfaces sent more than that (TCP/IP headers, retransmissions). Last:
 * it stops the proxy to read its counts. */
static void test_traffic_crossed_the_line(void **state)
{
    fixture *f = *state;
    if (proxy_stop(f) != 0)
        nst_fail(f->e, "napsync-linkproxy did not stop cleanly (log: %s)", f->proxy_log);
    long long up = proxy_stat(f, "up_bytes"), down = proxy_stat(f, "down_bytes");
    long long conns = proxy_stat(f, "connections");
    assert_int_equal(conns, 3); /* one connection per sync */
    assert_int_equal(proxy_stat(f, "cut_connections"), 0);
    /* At least the records themselves came down, and the new reports went up:
     * compact pages and zstd bring a record to about 70 bytes on the wire
     * (docs/benchmarks.md "Bytes per record"), of which its 16-byte id and
     * its text cannot shrink further. */
    assert_true(down > (1 + N_INDICATORS + N_REPORTS) * 40);
    assert_true(up > N_NEW * 100);
    char out[256], *argv[] = {f->link_sh, "wire", f->fl_id, NULL};
    if (nst_run(argv, out, sizeof(out)) != 0)
        nst_fail(f->e, "link.sh wire failed");
    long long wire_up = -1, wire_down = -1;
    if (sscanf(out, "FL_WIRE_UP=%lld FL_WIRE_DOWN=%lld", &wire_up, &wire_down) != 2)
        nst_fail(f->e, "unexpected output from link.sh wire: %s", out);
    assert_true(wire_up > up);
    assert_true(wire_down > down);
    nst_test_passed(f->e);
}

int main(void)
{
    /* In order: each test goes on from the state the one before left. */
    const struct CMUnitTest tests[] = {
        NST_TEST(test_first_pull),
        NST_TEST(test_push_then_pull),
        NST_TEST(test_resync_sends_nothing),
        NST_TEST(test_traffic_crossed_the_line),
    };
    return cmocka_run_group_tests_name("fieldlink", tests, group_setup, group_teardown);
}
