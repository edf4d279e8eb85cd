/* Several daemons, one database (issue 6): three napsyncd processes on one
 * PostgreSQL database behind Debian's haproxy, configured from the shipped
 * deploy/haproxy.cfg (TCP mode, TLS passed through, health checks on each
 * daemon's /readyz), with the test's own global section, listen address
 * and server lines. Four writers and a subscriber (scaletest.h) sync
 * through HAProxy while
 *
 *  1. the daemon serving the subscriber (found through its /metrics) is
 *     killed with SIGKILL: HAProxy marks it down, the subscriber and the
 *     writers reconnect through HAProxy to the survivors and go on;
 *  2. the daemon serving the subscriber then is drained with SIGTERM while
 *     a push of the test's own, sent to it directly, waits on a row lock
 *     the test holds: HAProxy marks it down because its /readyz answers
 *     503 (check status L7STS) while it drains; once the lock goes, the push
 *     is answered, the daemon says Goodbye and exits 0, and the clients are
 *     all on the last daemon.
 *
 * Then sc_load_check: every change any client was told was saved is on the
 * server exactly once, nothing else is, and every replica (the writers',
 * and the subscriber's, which was never restarted) equals the server. The
 * shipped file itself must pass `haproxy -c`. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#include "harness.h"
#include "scaletest.h"

#define BODY(name) NAPSYNC__V1__ENVELOPE__BODY_##name
#define OUTCOME(x) NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_##x
#define OP(x)      NAPSYNC__V1__MUTATION_OP__MUTATION_OP_##x

#define NDAEMONS    3
#define NWRITERS    4
#define START_TRIES 3
/* Each writer's acknowledged changes between two steps of the test. */
#define PROGRESS 5
#define STAT_CAP (64 * 1024)

#define DRAIN_PLAN   "5ca1e000-0000-4000-8000-000000000001"
#define DRAIN_CREATE "5ca1e000-0000-4000-8000-0000000000c1"
#define DRAIN_RENAME "5ca1e000-0000-4000-8000-0000000000c2"

typedef struct {
    nst_env *e;           /* daemon 0; its directory and database are everyone's */
    nst_env *d[NDAEMONS]; /* d[0] == e; d[1], d[2] are peers */
    uint16_t http[NDAEMONS];
    double served[NDAEMONS]; /* mutations each daemon decided, read before it went */
    nst_device writers[NWRITERS];
    nst_device watcher;
    nst_device drainer; /* the test's own device, for the held push */
    char hap_cfg[NST_PATH];
    char hap_log[NST_PATH];
    char hap_sock[NST_PATH];
    char server[64]; /* HAProxy's address */
    pid_t haproxy;
    sc_load *load;
    PGconn *locker;
} fixture;
NST_FIXTURE_CHECK(fixture);

static char text[STAT_CAP];

/* ---- HTTP: the daemons' /metrics ---------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} sink;

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    size_t take = size * n;
    if (s->len + take >= s->cap)
        return 0;
    memcpy(s->buf + s->len, ptr, take);
    s->len += take;
    s->buf[s->len] = '\0';
    return take;
}

/* GET of a daemon's path into text; the HTTP status, or -1. */
static long http_get(uint16_t port, const char *path)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    sink s = {text, 0, sizeof(text)};
    text[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

/* The value of one series of a Prometheus text, or -1 when absent. */
static double series_value(const char *t, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = t; line != NULL; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    return -1;
}

static double metric(fixture *f, int i, const char *series)
{
    long st = http_get(f->http[i], "/metrics");
    if (st != 200)
        nst_fail(f->d[i], "daemon %d: GET /metrics: status %ld", i, st);
    double v = series_value(text, series);
    if (v < 0)
        nst_fail(f->d[i], "daemon %d: /metrics has no %s", i, series);
    return v;
}

static double decided(fixture *f, int i)
{
    return metric(f, i, "napsync_mutations_total{outcome=\"applied\"}") +
           metric(f, i, "napsync_mutations_total{outcome=\"merged\"}");
}

/* The running daemon whose /metrics counts the subscriber (the gauges are
 * published every second, so this waits for them to settle). */
static int subscriber_daemon(fixture *f)
{
    uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
    for (;;) {
        int found = -1, count = 0;
        for (int i = 0; i < NDAEMONS; i++) {
            if (!nst_daemon_running(f->d[i]))
                continue;
            if (metric(f, i, "napsync_feed_subscribers") >= 1) {
                found = i;
                count++;
            }
        }
        if (count == 1)
            return found;
        if (nst_now_ms() > deadline)
            nst_fail(f->e, "%d daemons count a subscriber, not 1, after %d ms", count, SC_WAIT_MS);
        nst_sleep_ms(100);
    }
}

/* ---- HAProxy ------------------------------------------------------------------------ */

/* One command on HAProxy's stats socket; its answer into text. */
static int hap_command(const fixture *f, const char *cmd)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    if (strlen(f->hap_sock) >= sizeof(a.sun_path)) {
        close(fd);
        return -1;
    }
    memcpy(a.sun_path, f->hap_sock, strlen(f->hap_sock) + 1);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, text + len, sizeof(text) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(text) - 1)
            break;
    }
    text[len] = '\0';
    close(fd);
    return 0;
}

/* Field number col (0-based) of a CSV line, into out. */
static void csv_field(const char *line, int col, char *out, size_t cap)
{
    for (int i = 0; i < col && line; i++) {
        line = strpbrk(line, ",\n");
        line = line && *line == ',' ? line + 1 : NULL;
    }
    size_t n = line ? strcspn(line, ",\n") : 0;
    if (n >= cap)
        n = cap - 1;
    if (line)
        memcpy(out, line, n);
    out[n] = '\0';
}

static int csv_column(const char *header, const char *name)
{
    char field[64];
    for (int col = 0; col < 128; col++) {
        csv_field(header, col, field, sizeof(field));
        if (strcmp(field, name) == 0)
            return col;
        if (field[0] == '\0' && col > 0)
            break;
    }
    return -1;
}

/* HAProxy's view of server napsyncd-(i+1): status ("UP", "DOWN", ...) and
 * the last check's status ("L7OK", "L7STS", "L4CON", ...). */
static int hap_server(const fixture *f, int i, char *status, size_t scap, char *check, size_t ccap)
{
    if (hap_command(f, "show stat\n") != 0 || strncmp(text, "# ", 2) != 0)
        return -1;
    const char *header = text + 2;
    int c_px = csv_column(header, "pxname"), c_sv = csv_column(header, "svname");
    int c_st = csv_column(header, "status"), c_ck = csv_column(header, "check_status");
    if (c_px < 0 || c_sv < 0 || c_st < 0 || c_ck < 0)
        return -1;
    char name[32];
    snprintf(name, sizeof(name), "napsyncd-%d", i + 1);
    for (const char *line = strchr(text, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        char px[64], sv[64];
        csv_field(line + 1, c_px, px, sizeof(px));
        csv_field(line + 1, c_sv, sv, sizeof(sv));
        if (strcmp(px, "napsyncd") == 0 && strcmp(sv, name) == 0) {
            csv_field(line + 1, c_st, status, scap);
            csv_field(line + 1, c_ck, check, ccap);
            return 0;
        }
    }
    return -1;
}

/* Waits until HAProxy reports server i with this status and, unless NULL,
 * this last check status (a prefix of each). */
static void hap_wait(fixture *f, int i, const char *status, const char *check)
{
    char st[64] = "", ck[64] = "";
    uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
    for (;;) {
        if (hap_server(f, i, st, sizeof(st), ck, sizeof(ck)) == 0 &&
            strncmp(st, status, strlen(status)) == 0 &&
            (check == NULL || strncmp(ck, check, strlen(check)) == 0))
            return;
        if (nst_now_ms() > deadline)
            nst_fail(f->e,
                     "HAProxy reports napsyncd-%d as %s (check %s), not %s (check %s), "
                     "after %d ms (its log: %s)",
                     i + 1, st[0] ? st : "?", ck[0] ? ck : "?", status, check ? check : "any",
                     SC_WAIT_MS, f->hap_log);
        nst_sleep_ms(100);
    }
}

static void hap_stop(fixture *f)
{
    if (f->haproxy <= 0)
        return;
    kill(f->haproxy, SIGTERM);
    int st;
    if (nst_wait_pid(f->haproxy, NST_WAIT_MS, &st) != 0) {
        kill(f->haproxy, SIGKILL);
        (void)nst_wait_pid(f->haproxy, NST_WAIT_MS, &st);
    }
    f->haproxy = 0;
}

/* deploy/haproxy.cfg with this test's global section (no chroot, user or
 * syslog; a stats socket in the test's directory; the log on stderr), its
 * listen address and its three servers; everything else as shipped. */
static int hap_write_config(fixture *f, uint16_t port)
{
    char example[NST_PATH];
    if (nst_path_join(example, f->e->source_dir, "deploy/haproxy.cfg") != 0)
        return -1;
    FILE *in = fopen(example, "r");
    FILE *out = fopen(f->hap_cfg, "w");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "cannot read %s or write %s\n", example, f->hap_cfg);
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return -1;
    }
    fprintf(out,
            "global\n    maxconn 1000\n    stats socket %s mode 600 level admin\n"
            "    log stderr format raw local0\n\n",
            f->hap_sock);
    char line[1024];
    bool in_global = false, servers = false, bound = false;
    while (fgets(line, sizeof(line), in)) {
        const char *t = line + strspn(line, " \t");
        if (line[0] != ' ' && line[0] != '\t' && line[0] != '#' && line[0] != '\n')
            in_global = strncmp(line, "global", 6) == 0;
        if (in_global)
            continue;
        if (strncmp(t, "bind ", 5) == 0) {
            fprintf(out, "    bind 127.0.0.1:%u\n", (unsigned)port);
            bound = true;
        } else if (strncmp(t, "server ", 7) == 0) {
            for (int i = 0; i < NDAEMONS && !servers; i++)
                fprintf(out, "    server napsyncd-%d 127.0.0.1:%u port %u\n", i + 1,
                        (unsigned)f->d[i]->port, (unsigned)f->http[i]);
            servers = true;
        } else {
            fputs(line, out);
        }
    }
    fclose(in);
    if (fclose(out) != 0 || !servers || !bound) {
        fprintf(stderr, "%s: no bind or server line to replace\n", example);
        return -1;
    }
    return 0;
}

static int hap_start(fixture *f)
{
    if (access("/usr/sbin/haproxy", X_OK) != 0) {
        fprintf(stderr, "/usr/sbin/haproxy is missing: install Debian's haproxy "
                        "(tests/lib/deps.sh --test)\n");
        return -1;
    }
    char *check[] = {"/usr/sbin/haproxy", "-c", "-q", "-f", f->hap_cfg, NULL};
    char *run[] = {"/usr/sbin/haproxy", "-db", "-f", f->hap_cfg, NULL};
    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        uint16_t port = nst_free_port();
        if (port == 0 || hap_write_config(f, port) != 0)
            return -1;
        if (nst_run(check, NULL, 0) != 0) {
            fprintf(stderr, "haproxy -c refuses %s\n", f->hap_cfg);
            return -1;
        }
        f->haproxy = nst_spawn(run, f->hap_log);
        if (f->haproxy < 0)
            return -1;
        snprintf(f->server, sizeof(f->server), "127.0.0.1:%u", (unsigned)port);
        /* Serving once the stats socket answers and the port accepts. */
        uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
        while (nst_now_ms() < deadline) {
            int st;
            if (nst_wait_pid(f->haproxy, 0, &st) == 0) {
                f->haproxy = 0;
                break; /* exited: the port was taken, most likely; try another */
            }
            int fd = nst_tcp_connect(port);
            if (fd >= 0) {
                close(fd);
                if (hap_command(f, "show info\n") == 0 && strstr(text, "Name: HAProxy"))
                    return 0;
            }
            nst_sleep_ms(50);
        }
        hap_stop(f);
    }
    fprintf(stderr, "HAProxy did not start (its log: %s)\n", f->hap_log);
    return -1;
}

/* ---- raw pushes, for the held one --------------------------------------------------- */

typedef struct {
    Napsync__V1__Value value;
    Napsync__V1__Field field;
    Napsync__V1__Field *fields[1];
    Napsync__V1__FieldSet set;
    nst_plan_pb plan;
    Napsync__V1__Mutation m;
    Napsync__V1__Mutation *ms[1];
    Napsync__V1__Push push;
    ns_envelope env;
} one_push;

/* A Push renaming a plan, or creating it (a draft of the pusher's
 * organisation) when base is 0. The strings are borrowed. */
static void build_push(one_push *p, uint64_t rid, const char *mutation_id, uint64_t base,
                       const char *title)
{
    memset(p, 0, sizeof(*p));
    napsync__v1__value__init(&p->value);
    p->value.kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    p->value.text_value = (char *)title;
    napsync__v1__field__init(&p->field);
    p->field.name = "title";
    p->field.value = &p->value;
    p->fields[0] = &p->field;
    napsync__v1__field_set__init(&p->set);
    p->set.n_fields = 1;
    p->set.fields = p->fields;
    napsync__v1__mutation__init(&p->m);
    p->m.mutation_id = (char *)mutation_id;
    p->m.entity_type = "plan";
    p->m.record_id = DRAIN_PLAN;
    p->m.base_version = base;
    p->m.op = base == 0 ? OP(CREATE) : OP(UPDATE);
    p->m.fields = &p->set;
    if (base == 0) {
        nst_plan_pb_init(&p->plan, title, "draft");
        p->m.fields = &p->plan.set;
    }
    p->ms[0] = &p->m;
    napsync__v1__push__init(&p->push);
    p->push.n_mutations = 1;
    p->push.mutations = p->ms;
    napsync__v1__envelope__init(&p->env);
    p->env.request_id = rid;
    p->env.body_case = BODY(PUSH);
    p->env.push = &p->push;
}

/* The next frame must answer request rid: mutation applied at version. */
static void expect_applied(const nst_env *e, nst_raw *r, uint64_t rid, uint64_t version)
{
    ns_envelope *env = nst_expect_frame(e, r, BODY(PUSH_RESULT));
    const Napsync__V1__PushResult *pr = env->push_result;
    bool ok = env->request_id == rid && pr->n_results == 1 &&
              (int)pr->results[0]->outcome == (int)OUTCOME(APPLIED) &&
              pr->results[0]->version == version;
    uint64_t got = pr->n_results == 1 ? pr->results[0]->version : 0;
    ns_envelope_free(env);
    if (!ok)
        nst_fail(e, "the held push was not answered APPLIED version %" PRIu64 " (got %" PRIu64 ")",
                 version, got);
}

/* Waits until a statement of the test database waits for a lock. */
static void wait_lock_waiter(fixture *f)
{
    uint64_t deadline = nst_now_ms() + SC_WAIT_MS;
    for (;;) {
        char n[16] = "";
        if (nst_db_exec(f->e,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'",
                        0, NULL, n, sizeof(n)) == 0 &&
            atoi(n) >= 1)
            return;
        if (nst_now_ms() > deadline)
            nst_fail(f->e, "the push did not reach the held lock within %d ms", SC_WAIT_MS);
        nst_sleep_ms(50);
    }
}

/* ---- fixture -------------------------------------------------------------------------- */

static int start_daemon(fixture *f, int i)
{
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)f->http[i]);
    /* Long enough a drain for HAProxy's checks to see it (the held push). */
    const char *extra[] = {"--http-listen", listen, "--shutdown-timeout-ms", "120000", NULL};
    return nst_daemon_start(f->d[i], extra);
}

static int group_setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    f->e = nst_env_new("haproxy", NULL);
    if (f->e == NULL)
        return -1;
    f->d[0] = f->e;
    for (int i = 0; i < NDAEMONS; i++)
        f->http[i] = nst_free_port();
    if (nst_path_join(f->hap_cfg, f->e->dir, "haproxy.cfg") != 0 ||
        nst_path_join(f->hap_log, f->e->dir, "haproxy.log") != 0 ||
        nst_path_join(f->hap_sock, f->e->dir, "haproxy.sock") != 0 || start_daemon(f, 0) != 0)
        return -1;
    for (int i = 0; i < NWRITERS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "writer-%d", i);
        if (nst_device_issue(f->e, false, name, &f->writers[i]) != 0 ||
            nst_device_register(f->e, "mogender", name, "coordinator", &f->writers[i]) != 0)
            return -1;
    }
    if (nst_device_issue(f->e, false, "watcher", &f->watcher) != 0 ||
        nst_device_register(f->e, "mogender", "Watcher", "implementer", &f->watcher) != 0 ||
        nst_device_issue(f->e, false, "drainer", &f->drainer) != 0 ||
        nst_device_register(f->e, "mogender", "Drainer", "coordinator", &f->drainer) != 0)
        return -1;
    for (int i = 1; i < NDAEMONS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "daemon%d", i);
        f->d[i] = nst_env_peer(f->e, name);
        if (f->d[i] == NULL || start_daemon(f, i) != 0)
            return -1;
    }
    return hap_start(f);
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f == NULL)
        return 0;
    sc_load_free(f->load);
    if (f->locker)
        PQfinish(f->locker);
    hap_stop(f);
    int rc = 0;
    for (int i = NDAEMONS - 1; i >= 0; i--)
        if (f->d[i] && nst_env_close(f->d[i]) != 0)
            rc = -1;
    free(f);
    curl_global_cleanup();
    return rc;
}

static int test_teardown(void **state)
{
    fixture *f = *state;
    nst_test_end(f->e);
    if (!f->e->test_passed) {
        for (int i = 1; i < NDAEMONS; i++)
            if (f->d[i])
                nst_log_tail(f->d[i], 40);
        fprintf(stderr, "HAProxy's log: %s\n", f->hap_log);
    }
    return 0;
}

/* ---- the test ------------------------------------------------------------------------------ */

static void test_kill_and_drain_behind_haproxy(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;

    /* The shipped example is valid as it stands. */
    char example[NST_PATH];
    assert_int_equal(nst_path_join(example, e->source_dir, "deploy/haproxy.cfg"), 0);
    char *check[] = {"/usr/sbin/haproxy", "-c", "-q", "-f", example, NULL};
    assert_int_equal(nst_run(check, NULL, 0), 0);

    /* Every daemon passes HAProxy's /readyz check before traffic starts. */
    for (int i = 0; i < NDAEMONS; i++)
        hap_wait(f, i, "UP", "L7OK");

    sc_load_opts o = {.e = e,
                      .server = f->server,
                      .writers = f->writers,
                      .nwriters = NWRITERS,
                      .watcher = &f->watcher};
    sc_load_start(&o, &f->load);
    sc_load_wait_progress(f->load, PROGRESS, "with three daemons");

    /* 1. SIGKILL the subscriber's daemon. */
    int killed = subscriber_daemon(f);
    f->served[killed] = decided(f, killed);
    sc_watch_counts before;
    sc_load_watch_counts(f->load, &before);
    assert_int_equal(nst_daemon_signal(f->d[killed], SIGKILL), 0);
    int status;
    assert_int_equal(nst_daemon_wait_exit(f->d[killed], NST_WAIT_MS, &status), 0);
    assert_int_equal(status, 128 + SIGKILL);
    fprintf(stderr, "scale: killed daemon %d (SIGKILL)\n", killed);
    hap_wait(f, killed, "DOWN", NULL);
    sc_load_wait_connected(f->load, before.connected + 1, "after SIGKILL");
    sc_load_wait_progress(f->load, PROGRESS, "after SIGKILL");

    /* 2. Drain the subscriber's daemon now, with a push of ours held in it. */
    int drained = subscriber_daemon(f);
    assert_int_not_equal(drained, killed);
    nst_raw r;
    nst_must_raw_auth(f->d[drained], &r, &f->drainer, 1);
    one_push p;
    build_push(&p, 2, DRAIN_CREATE, 0, "Drained plan");
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    expect_applied(f->d[drained], &r, 2, 1);
    const char *keys[] = {"host", "port", "user", "dbname", NULL};
    const char *vals[] = {e->pg.host, e->pg.port, e->pg.user, e->dbname, NULL};
    f->locker = PQconnectdbParams(keys, vals, 0);
    assert_int_equal(PQstatus(f->locker), CONNECTION_OK);
    const char *params[] = {DRAIN_PLAN};
    PGresult *res = PQexec(f->locker, "BEGIN");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    res = PQexecParams(f->locker, "SELECT 1 FROM plans WHERE id = $1 FOR UPDATE", 1, NULL, params,
                       NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    PQclear(res);
    build_push(&p, 3, DRAIN_RENAME, 1, "Drained plan, renamed while draining");
    assert_int_equal(nst_raw_send_env(&r, &p.env), 0);
    wait_lock_waiter(f);

    f->served[drained] = decided(f, drained);
    sc_load_watch_counts(f->load, &before);
    assert_int_equal(nst_daemon_signal(f->d[drained], SIGTERM), 0);
    fprintf(stderr, "scale: draining daemon %d (SIGTERM)\n", drained);
    /* Down because its /readyz says 503 while it drains: an HTTP status
     * check failure, while the daemon is still running. */
    hap_wait(f, drained, "DOWN", "L7STS");
    assert_true(nst_daemon_running(f->d[drained]));
    sc_load_wait_connected(f->load, before.connected + 1, "while a daemon drains");

    res = PQexec(f->locker, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(f->locker);
    f->locker = NULL;
    expect_applied(f->d[drained], &r, 3, 2);
    ns_envelope *env = nst_expect_frame(f->d[drained], &r, BODY(GOODBYE));
    ns_envelope_free(env);
    nst_raw_close(&r);
    assert_int_equal(nst_daemon_wait_exit(f->d[drained], NST_STOP_MS, &status), 0);
    assert_int_equal(status, 0);
    sc_load_note(f->load, f->drainer.name, DRAIN_PLAN, DRAIN_CREATE, 1, "Drained plan");
    sc_load_note(f->load, f->drainer.name, DRAIN_PLAN, DRAIN_RENAME, 2,
                 "Drained plan, renamed while draining");
    sc_load_wait_progress(f->load, PROGRESS, "on the last daemon");

    int last = 3 - killed - drained;
    f->served[last] = decided(f, last);
    sc_load_finish(f->load);
    sc_load_check(f->load, e);

    /* The clients really were spread over the daemons. */
    int serving = 0;
    for (int i = 0; i < NDAEMONS; i++) {
        fprintf(stderr, "scale: daemon %d decided %.0f mutations%s\n", i, f->served[i],
                i == killed    ? " (then SIGKILL)"
                : i == drained ? " (then SIGTERM)"
                               : "");
        serving += f->served[i] > 0;
    }
    assert_true(serving >= 2);
    nst_test_passed(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_and_drain_behind_haproxy, NULL, test_teardown),
    };
    return cmocka_run_group_tests_name("haproxy", tests, group_setup, group_teardown);
}
