#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#define NST_LOG_TAIL_LINES 60
/* No frame from our own daemon may be larger; a bigger header is a bug. */
#define NST_RAW_MAX_FRAME  (64u * 1024u * 1024u)
#define NST_START_ATTEMPTS 3
#define NST_START_WAIT_MS  30000
/* How long nst_env_free lets a daemon still running stop on SIGTERM. */
#define NST_FREE_STOP_MS 5000

/* ---- time -------------------------------------------------------------------- */

uint64_t nst_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void nst_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = nst_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* ---- processes ------------------------------------------------------------------ */

/* Only async-signal-safe calls between fork and exec: the test process may
 * have threads (libuv's pool) whose locks a child must not touch. */
static void child_exec(char *const argv[], int out_fd, int err_fd, bool die_with_parent,
                       bool new_session)
{
    if (die_with_parent)
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (new_session)
        setsid();
    signal(SIGPIPE, SIG_DFL); /* the test ignores it; children must not inherit that */
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0)
        dup2(devnull, 0);
    if (out_fd >= 0)
        dup2(out_fd, 1);
    else if (devnull >= 0)
        dup2(devnull, 1);
    if (err_fd >= 0)
        dup2(err_fd, 2);
    execv(argv[0], argv);
    _exit(127);
}

static int decode_status(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return -1;
}

static int run_child(char *const argv[], char *out, size_t cap, bool with_stderr, bool new_session)
{
    int pipefd[2] = {-1, -1};
    if (out && pipe(pipefd) != 0) {
        fprintf(stderr, "nst: pipe: %s\n", strerror(errno));
        return -1;
    }
    if (out) {
        /* Only the child's stdout may keep the write end open. */
        fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
        fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "nst: fork: %s\n", strerror(errno));
        if (out) {
            close(pipefd[0]);
            close(pipefd[1]);
        }
        return -1;
    }
    if (pid == 0)
        child_exec(argv, out ? pipefd[1] : -1, with_stderr && out ? pipefd[1] : -1, true,
                   new_session);
    if (out) {
        close(pipefd[1]);
        size_t used = 0;
        char sink[512];
        for (;;) {
            char *dst = used + 1 < cap ? out + used : sink;
            size_t room = used + 1 < cap ? cap - 1 - used : sizeof(sink);
            ssize_t n = read(pipefd[0], dst, room);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            if (dst != sink)
                used += (size_t)n;
        }
        out[used] = '\0';
        close(pipefd[0]);
    }
    int wstatus;
    while (waitpid(pid, &wstatus, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "nst: waitpid: %s\n", strerror(errno));
            return -1;
        }
    }
    return decode_status(wstatus);
}

int nst_run(char *const argv[], char *out, size_t cap)
{
    return run_child(argv, out, cap, false, false);
}

int nst_run_no_tty(char *const argv[], char *out, size_t cap)
{
    if (out == NULL || cap == 0)
        return -1;
    return run_child(argv, out, cap, true, true);
}

pid_t nst_spawn(char *const argv[], const char *log_path)
{
    int fd = -1;
    if (log_path) {
        fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) {
            fprintf(stderr, "nst: cannot open %s: %s\n", log_path, strerror(errno));
            return -1;
        }
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "nst: fork: %s\n", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (pid == 0)
        child_exec(argv, fd, fd, true, false);
    if (fd >= 0)
        close(fd);
    return pid;
}

int nst_wait_pid(pid_t pid, int timeout_ms, int *status)
{
    uint64_t deadline = nst_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int wstatus;
        pid_t r = waitpid(pid, &wstatus, WNOHANG);
        if (r == pid) {
            *status = decode_status(wstatus);
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "nst: waitpid(%d): %s\n", (int)pid, strerror(errno));
            *status = -1;
            return 0;
        }
        if (remaining_ms(deadline) == 0)
            return -1;
        nst_sleep_ms(20);
    }
}

uint16_t nst_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- files ------------------------------------------------------------------------ */

int nst_path_join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, NST_PATH, "%s/%s", a, b);
    if (n < 0 || n >= NST_PATH) {
        fprintf(stderr, "nst: path too long: %s/%s\n", a, b);
        return -1;
    }
    return 0;
}

/* Reads a whole file (NUL terminated). Returns NULL if it cannot. */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return NULL;
    }
    for (;;) {
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
    size_t len;
    char *data = read_file(from, &len);
    if (data == NULL) {
        fprintf(stderr, "nst: cannot read %s: %s\n", from, strerror(errno));
        return -1;
    }
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    int rc = -1;
    if (fd >= 0) {
        size_t off = 0;
        while (off < len) {
            ssize_t n = write(fd, data + off, len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        rc = off == len && close(fd) == 0 ? 0 : -1;
    }
    if (rc != 0)
        fprintf(stderr, "nst: cannot write %s: %s\n", to, strerror(errno));
    free(data);
    return rc;
}

/* Copies then renames, so the daemon never reads a half-written file. */
static int replace_file(const char *from, const char *to, mode_t mode)
{
    char tmp[NST_PATH];
    if (snprintf(tmp, sizeof(tmp), "%s.new", to) >= (int)sizeof(tmp))
        return -1;
    if (copy_file(from, tmp, mode) != 0)
        return -1;
    if (rename(tmp, to) != 0) {
        fprintf(stderr, "nst: rename %s: %s\n", to, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void nst_rmtree(const char *dir)
{
    struct stat st;
    if (dir[0] == '\0' || lstat(dir, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(dir);
        if (d) {
            const struct dirent *ent;
            while ((ent = readdir(d)) != NULL) {
                if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
                    continue;
                char child[NST_PATH];
                if (nst_path_join(child, dir, ent->d_name) == 0)
                    nst_rmtree(child);
            }
            closedir(d);
        }
    }
    if (remove(dir) != 0)
        fprintf(stderr, "nst: cannot remove %s: %s\n", dir, strerror(errno));
}

/* The last line of s (without its newline) into out. */
static int last_line(const char *s, char *out, size_t cap)
{
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    size_t start = len;
    while (start > 0 && s[start - 1] != '\n')
        start--;
    if (len - start + 1 > cap)
        return -1;
    memcpy(out, s + start, len - start);
    out[len - start] = '\0';
    return 0;
}

static bool is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* ---- PostgreSQL --------------------------------------------------------------------- */

static int copy_str(char *dst, size_t cap, const char *src, const char *what)
{
    if (src == NULL || src[0] == '\0' || strlen(src) >= cap) {
        fprintf(stderr, "nst: %s is missing or too long\n", what);
        return -1;
    }
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

int nst_pg_from_env(nst_pg *pg)
{
    memset(pg, 0, sizeof(*pg));
    if (copy_str(pg->host, sizeof(pg->host), getenv("NS_TEST_PGHOST"), "NS_TEST_PGHOST") != 0 ||
        copy_str(pg->port, sizeof(pg->port), getenv("NS_TEST_PGPORT"), "NS_TEST_PGPORT") != 0 ||
        copy_str(pg->user, sizeof(pg->user), getenv("NS_TEST_PGUSER"), "NS_TEST_PGUSER") != 0) {
        fprintf(stderr, "nst: integration tests need a PostgreSQL cluster: tests/run.sh "
                        "starts one, or see tests/CMakeLists.txt\n");
        return -1;
    }
    return 0;
}

static int pg_sh(char *out, size_t cap)
{
    const char *src = getenv("NS_SOURCE_DIR");
    if (src == NULL || snprintf(out, cap, "%s/tests/lib/pg.sh", src) >= (int)cap) {
        fprintf(stderr, "nst: NS_SOURCE_DIR is not set\n");
        return -1;
    }
    return 0;
}

int nst_pg_private_start(nst_pg *pg, const char *dir)
{
    memset(pg, 0, sizeof(*pg));
    char script[NST_PATH];
    if (pg_sh(script, sizeof(script)) != 0 ||
        copy_str(pg->dir, sizeof(pg->dir), dir, "cluster directory") != 0)
        return -1;
    /* A throwaway cluster: durability buys nothing but slower tests. */
    setenv("NS_PG_FSYNC", "off", 0);
    char out[4096];
    char *argv[] = {"/bin/bash", script, "start", pg->dir, NULL};
    int rc = nst_run(argv, out, sizeof(out));
    if (rc != 0) {
        fprintf(stderr, "nst: pg.sh start %s failed (exit %d)\n", dir, rc);
        return -1;
    }
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "PGHOST=", 7) == 0)
            snprintf(pg->host, sizeof(pg->host), "%s", line + 7);
        else if (strncmp(line, "PGPORT=", 7) == 0)
            snprintf(pg->port, sizeof(pg->port), "%s", line + 7);
        else if (strncmp(line, "PGUSER=", 7) == 0)
            snprintf(pg->user, sizeof(pg->user), "%s", line + 7);
    }
    if (!pg->host[0] || !pg->port[0] || !pg->user[0]) {
        fprintf(stderr, "nst: pg.sh start printed no PGHOST/PGPORT/PGUSER\n");
        return -1;
    }
    return 0;
}

int nst_pg_ctl(const nst_pg *pg, const char *action)
{
    char script[NST_PATH];
    if (pg->dir[0] == '\0' || pg_sh(script, sizeof(script)) != 0)
        return -1;
    char *argv[] = {"/bin/bash", script, (char *)action, (char *)pg->dir, NULL};
    int rc = nst_run(argv, NULL, 0);
    if (rc != 0) {
        fprintf(stderr, "nst: pg.sh %s %s failed (exit %d)\n", action, pg->dir, rc);
        return -1;
    }
    return 0;
}

pid_t nst_pg_ctl_async(const nst_pg *pg, const char *action, const char *log_path)
{
    char script[NST_PATH];
    if (pg->dir[0] == '\0' || pg_sh(script, sizeof(script)) != 0)
        return -1;
    char *argv[] = {"/bin/bash", script, (char *)action, (char *)pg->dir, NULL};
    return nst_spawn(argv, log_path);
}

static PGconn *pg_connect(const nst_pg *pg, const char *dbname)
{
    const char *keys[] = {"host", "port", "user", "dbname", "connect_timeout", NULL};
    const char *vals[] = {pg->host, pg->port, pg->user, dbname, "10", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 0);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "nst: cannot connect to database %s on %s:%s: %s", dbname, pg->host,
                pg->port, conn ? PQerrorMessage(conn) : "out of memory\n");
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* The ordinary role napsyncd connects as, as in production
 * (docs/deploy.md): not a superuser, so that PostgreSQL's row-level
 * security (sql/005) applies to everything the daemon does in every test.
 * The database is its own; the tests' direct SQL runs as the cluster's
 * superuser. */
#define DAEMON_ROLE "napsyncd"

/* Creates DAEMON_ROLE unless it exists (test programs run at once: the
 * loser of a race is fine). */
static int pg_daemon_role(const nst_pg *pg)
{
    PGconn *conn = pg_connect(pg, "postgres");
    if (conn == NULL)
        return -1;
    PGresult *res =
        PQexec(conn, "DO $$ BEGIN CREATE ROLE " DAEMON_ROLE " LOGIN NOSUPERUSER NOBYPASSRLS;"
                     " EXCEPTION WHEN duplicate_object OR unique_violation THEN"
                     " NULL; END $$");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "nst: creating role " DAEMON_ROLE ": %s", PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
    return rc;
}

/* An admin command on the maintenance database: identifiers cannot be
 * parameters, so the name is quoted by libpq (and built from [a-z0-9_]). */
static int pg_admin(const nst_pg *pg, const char *before, const char *dbname, const char *after)
{
    PGconn *conn = pg_connect(pg, "postgres");
    if (conn == NULL)
        return -1;
    int rc = -1;
    char *ident = PQescapeIdentifier(conn, dbname, strlen(dbname));
    if (ident) {
        char sql[256];
        snprintf(sql, sizeof(sql), "%s%s%s", before, ident, after);
        PGresult *res = PQexec(conn, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK)
            rc = 0;
        else
            fprintf(stderr, "nst: %s: %s", sql, PQerrorMessage(conn));
        PQclear(res);
        PQfreemem(ident);
    }
    PQfinish(conn);
    return rc;
}

int nst_db_exec(nst_env *e, const char *sql, int nparams, const char *const *params, char *value,
                size_t cap)
{
    PGconn *conn = pg_connect(&e->pg, e->dbname);
    if (conn == NULL)
        return -1;
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    int rc = -1;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        rc = 0;
        if (value && cap) {
            const char *v = PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "";
            snprintf(value, cap, "%s", v);
        }
    } else {
        fprintf(stderr, "nst: SQL failed: %s\n  %s", sql, PQerrorMessage(conn));
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

static int load_sql_file(nst_env *e, const char *path)
{
    char *sql = read_file(path, NULL);
    if (sql == NULL) {
        fprintf(stderr, "nst: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    PGconn *conn = pg_connect(&e->pg, e->dbname);
    int rc = -1;
    if (conn) {
        PGresult *res = PQexec(conn, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
            rc = 0;
        else
            fprintf(stderr, "nst: loading %s failed: %s", path, PQerrorMessage(conn));
        PQclear(res);
        PQfinish(conn);
    }
    free(sql);
    return rc;
}

/* ---- certificates ------------------------------------------------------------------ */

static int ca_sh(const nst_env *e, char *const args[], char *out, size_t cap)
{
    char script[NST_PATH];
    if (nst_path_join(script, e->source_dir, "deploy/ca.sh") != 0)
        return -1;
    char *argv[12];
    size_t n = 0;
    argv[n++] = "/bin/bash";
    argv[n++] = script;
    for (size_t i = 0; args[i] && n + 1 < sizeof(argv) / sizeof(argv[0]); i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = nst_run(argv, out, cap);
    if (rc != 0) {
        fprintf(stderr, "nst: ca.sh %s failed (exit %d)\n", args[0], rc);
        return -1;
    }
    return 0;
}

int nst_device_issue(nst_env *e, bool foreign, const char *name, nst_device *out)
{
    memset(out, 0, sizeof(*out));
    if (snprintf(out->name, sizeof(out->name), "%s", name) >= (int)sizeof(out->name))
        return -1;
    char text[4 * NST_PATH];
    char *args[] = {"device", foreign ? e->foreign_dir : e->ca_dir, (char *)name, NULL};
    if (ca_sh(e, args, text, sizeof(text)) != 0)
        return -1;
    /* Three lines: certificate, key, fingerprint. */
    char *save = NULL;
    char *crt = strtok_r(text, "\n", &save);
    char *key = strtok_r(NULL, "\n", &save);
    char *fp = strtok_r(NULL, "\n", &save);
    if (!crt || !key || !fp || !is_hex64(fp) ||
        snprintf(out->cert, sizeof(out->cert), "%s", crt) >= (int)sizeof(out->cert) ||
        snprintf(out->key, sizeof(out->key), "%s", key) >= (int)sizeof(out->key)) {
        fprintf(stderr, "nst: unexpected output from ca.sh device %s\n", name);
        return -1;
    }
    memcpy(out->fp, fp, 65);
    /* Cross-check ca.sh against OpenSSL: the daemon hashes the DER itself. */
    char mine[65];
    if (nst_cert_fingerprint(out->cert, mine) != 0 || strcmp(mine, out->fp) != 0) {
        fprintf(stderr, "nst: ca.sh fingerprint of %s differs from SHA-256 of its DER\n",
                out->cert);
        return -1;
    }
    return 0;
}

int nst_cert_fingerprint(const char *cert_file, char fp[65])
{
    FILE *f = fopen(cert_file, "r");
    if (f == NULL)
        return -1;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = X509_digest(x, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32;
    X509_free(x);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < 32; i++)
        snprintf(fp + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int nst_server_cert_issue(nst_env *e, const char *name, char *cert, char *key)
{
    char text[2 * NST_PATH];
    char *args[] = {"server", e->ca_dir, (char *)name, "IP:127.0.0.1", "DNS:localhost", NULL};
    if (ca_sh(e, args, text, sizeof(text)) != 0)
        return -1;
    char line[NST_PATH];
    if (last_line(text, line, sizeof(line)) != 0)
        return -1;
    snprintf(cert, NST_PATH, "%s", line);
    char keyname[128];
    snprintf(keyname, sizeof(keyname), "%s.key", name);
    return nst_path_join(key, e->ca_dir, keyname);
}

int nst_server_cert_install(nst_env *e, const char *cert, const char *key)
{
    /* Key first: a reload between the two renames then fails the key check
     * and keeps the old pair, instead of pairing a new key with nothing. */
    if (replace_file(key, e->server_key, 0600) != 0)
        return -1;
    return replace_file(cert, e->server_cert, 0644);
}

int nst_device_register(nst_env *e, const char *org_code, const char *principal, const char *role,
                        const nst_device *d)
{
    const char *params[] = {org_code, principal, role, d->name, d->fp};
    char id[64];
    if (nst_db_exec(e, "SELECT napsync_register_device($1, $2, $3, $4, $5)", 5, params, id,
                    sizeof(id)) != 0)
        return -1;
    if (id[0] == '\0') {
        fprintf(stderr, "nst: napsync_register_device returned no id for %s\n", d->name);
        return -1;
    }
    return 0;
}

int nst_device_revoke(nst_env *e, const char *device_name)
{
    const char *params[] = {device_name, "revoked by an integration test"};
    char found[8];
    if (nst_db_exec(e, "SELECT napsync_revoke_device($1, $2)", 2, params, found, sizeof(found)) !=
        0)
        return -1;
    if (strcmp(found, "t") != 0) {
        fprintf(stderr, "nst: napsync_revoke_device found no device %s\n", device_name);
        return -1;
    }
    return 0;
}

/* ---- environment --------------------------------------------------------------------- */

static int make_dir(nst_env *e, char *out, const char *name)
{
    if (nst_path_join(out, e->dir, name) != 0)
        return -1;
    if (mkdir(out, 0700) != 0) {
        fprintf(stderr, "nst: mkdir %s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

static int env_init(nst_env *e, const nst_pg *pg)
{
    const char *src = getenv("NS_SOURCE_DIR");
    const char *build = getenv("NS_BUILD_DIR");
    if (copy_str(e->source_dir, sizeof(e->source_dir), src, "NS_SOURCE_DIR") != 0 ||
        build == NULL || nst_path_join(e->napsyncd, build, "napsyncd") != 0 ||
        nst_path_join(e->napsync, build, "napsync") != 0)
        return -1;
    if (access(e->napsyncd, X_OK) != 0) {
        fprintf(stderr, "nst: %s is not an executable (build napsyncd first)\n", e->napsyncd);
        return -1;
    }
    if (pg)
        e->pg = *pg;
    else if (nst_pg_from_env(&e->pg) != 0)
        return -1;

    snprintf(e->dir, sizeof(e->dir), "/tmp/nst-%s-XXXXXX", e->name);
    if (mkdtemp(e->dir) == NULL) {
        fprintf(stderr, "nst: mkdtemp: %s\n", strerror(errno));
        e->dir[0] = '\0';
        return -1;
    }
    char tls_dir[NST_PATH];
    if (make_dir(e, e->ca_dir, "ca") != 0 || make_dir(e, e->foreign_dir, "foreign") != 0 ||
        make_dir(e, tls_dir, "tls") != 0 ||
        nst_path_join(e->log_path, e->dir, "napsyncd.log") != 0 ||
        nst_path_join(e->ca_cert, e->ca_dir, "ca.crt") != 0 ||
        nst_path_join(e->foreign_ca_cert, e->foreign_dir, "ca.crt") != 0 ||
        nst_path_join(e->server_cert, tls_dir, "server.crt") != 0 ||
        nst_path_join(e->server_key, tls_dir, "server.key") != 0)
        return -1;

    char out[NST_PATH * 2];
    char *init_main[] = {"init", e->ca_dir, "napsync test CA", NULL};
    char *init_foreign[] = {"init", e->foreign_dir, "foreign test CA", NULL};
    if (ca_sh(e, init_main, out, sizeof(out)) != 0 || ca_sh(e, init_foreign, out, sizeof(out)) != 0)
        return -1;
    char cert[NST_PATH], key[NST_PATH];
    if (nst_server_cert_issue(e, "server", cert, key) != 0 ||
        nst_server_cert_install(e, cert, key) != 0)
        return -1;

    /* Unique across parallel test programs and reruns. */
    unsigned char rnd[4];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -1;
    snprintf(e->dbname, sizeof(e->dbname), "nst_%s_%d_%02x%02x%02x%02x", e->name, (int)getpid(),
             rnd[0], rnd[1], rnd[2], rnd[3]);
    for (char *p = e->dbname; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            *p = '_';
    if (pg_daemon_role(&e->pg) != 0 ||
        pg_admin(&e->pg, "CREATE DATABASE ", e->dbname, " OWNER " DAEMON_ROLE) != 0)
        return -1;
    e->db_created = true;
    return 0;
}

nst_env *nst_env_new(const char *name, const nst_pg *pg)
{
    /* A write to a session the daemon has closed must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    nst_env *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->exit_status = -1;
    snprintf(e->name, sizeof(e->name), "%s", name);
    if (env_init(e, pg) != 0) {
        fprintf(stderr, "nst: setting up the %s environment failed\n", name);
        nst_env_free(e);
        return NULL;
    }
    return e;
}

nst_env *nst_env_peer(const nst_env *e, const char *name)
{
    if (!e->demo_loaded) {
        fprintf(stderr, "nst: start the first napsyncd of %s before a peer\n", e->name);
        return NULL;
    }
    nst_env *p = malloc(sizeof(*p));
    if (p == NULL)
        return NULL;
    *p = *e;
    p->peer = true;
    p->db_created = false;
    p->port = 0;
    p->pid = 0;
    p->exit_status = -1;
    p->test_passed = false;
    char log_name[64];
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(log_name, sizeof(log_name), "napsyncd-%s.log", p->name);
    if (nst_path_join(p->log_path, e->dir, log_name) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

void nst_env_free(nst_env *e)
{
    if (e == NULL)
        return;
    if (e->pid > 0) {
        /* SIGTERM first, so that the daemon exits on its own and a
         * sanitizer build's LeakSanitizer runs (a report fails
         * tests/run.sh); SIGKILL if it does not stop soon. SIGCONT for a
         * daemon a test left stopped. */
        int st = 0;
        kill(e->pid, SIGCONT);
        kill(e->pid, SIGTERM);
        if (nst_wait_pid(e->pid, NST_FREE_STOP_MS, &st) == 0) {
            if (st != 0 && st != 128 + SIGTERM) {
                fprintf(stderr, "nst: napsyncd exited with status %d at the end\n", st);
                nst_log_tail(e, NST_LOG_TAIL_LINES);
            }
        } else {
            kill(e->pid, SIGKILL);
            if (nst_wait_pid(e->pid, NST_WAIT_MS, &st) != 0)
                fprintf(stderr, "nst: napsyncd %d did not die\n", (int)e->pid);
        }
        e->pid = 0;
    }
    if (e->db_created)
        (void)pg_admin(&e->pg, "DROP DATABASE IF EXISTS ", e->dbname, " WITH (FORCE)");
    /* A peer's directory is the first environment's, removed with it. */
    if (!e->peer && getenv("NST_KEEP"))
        fprintf(stderr, "nst: keeping %s (NST_KEEP is set)\n", e->dir);
    else if (!e->peer)
        nst_rmtree(e->dir);
    free(e);
}

/* cmocka (1.1) prints a failed group teardown but leaves it out of the
 * count that becomes the program's exit status: a daemon that did not stop
 * cleanly at the end (a sanitizer's report makes it exit 134 or 23) would
 * pass. This makes the program exit 1 instead, once main returns. */
static void exit_failed(void)
{
#ifdef __SANITIZE_ADDRESS__
    /* What exit would have done after this handler: the test program's own
     * leak check. */
    __lsan_do_leak_check();
#endif
    fprintf(stderr, "nst: a group teardown failed (above): exit status 1\n");
    fflush(NULL);
    _exit(1);
}

static void fail_at_exit(void)
{
    static bool registered;
    if (!registered && atexit(exit_failed) == 0)
        registered = true;
}

int nst_env_close(nst_env *e)
{
    int rc = 0;
    if (e && nst_daemon_running(e) && nst_daemon_stop(e, SIGTERM, NST_STOP_MS) != 0) {
        fprintf(stderr, "nst: group teardown: napsyncd did not stop cleanly on SIGTERM\n");
        rc = -1;
        fail_at_exit();
    }
    nst_env_free(e);
    return rc;
}

/* ---- daemon ------------------------------------------------------------------------------ */

/* A libpq conninfo value in single quotes, escaped as libpq expects. */
static void conninfo_kv(char *out, size_t cap, const char *key, const char *val)
{
    size_t n = strlen(out);
    n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s='", n ? " " : "", key);
    for (const char *p = val; *p && n + 3 < cap; p++) {
        if (*p == '\'' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
    }
    if (n + 2 <= cap) {
        out[n++] = '\'';
        out[n] = '\0';
    }
}

void nst_conninfo(const nst_env *e, const char *user, const char *dbname, char *out, size_t cap)
{
    out[0] = '\0';
    conninfo_kv(out, cap, "host", e->pg.host);
    conninfo_kv(out, cap, "port", e->pg.port);
    conninfo_kv(out, cap, "dbname", dbname);
    conninfo_kv(out, cap, "user", user);
}

bool nst_daemon_running(nst_env *e)
{
    if (e->pid <= 0)
        return false;
    int wstatus;
    pid_t r = waitpid(e->pid, &wstatus, WNOHANG);
    if (r == e->pid) {
        e->exit_status = decode_status(wstatus);
        e->pid = 0;
        return false;
    }
    return true;
}

static bool port_accepts(uint16_t port)
{
    int fd = nst_tcp_connect(port);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Whether the log holds needle after byte from: a restarted daemon may get
 * the port an earlier one of this log had. */
static bool log_contains(const nst_env *e, size_t from, const char *needle)
{
    size_t len = 0;
    char *log = read_file(e->log_path, &len);
    bool found = log && len > from && strstr(log + from, needle) != NULL;
    free(log);
    return found;
}

/* One attempt: 1 = the port was taken (try another), 0 = serving, -1 = failed. */
static int daemon_try_start(nst_env *e, const char *const *extra)
{
    char listen[32], conninfo[2048] = "";
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", e->port);
    nst_conninfo(e, DAEMON_ROLE, e->dbname, conninfo, sizeof(conninfo));
    char sql_dir[NST_PATH];
    if (nst_path_join(sql_dir, e->source_dir, "sql") != 0)
        return -1;
    char *argv[64];
    size_t n = 0;
    /* No HTTP listener unless a test asks for one in extra (a later flag
     * wins): its default port would be taken by the daemons running beside. */
    char *fixed[] = {e->napsyncd,     "--listen",    listen,     "--tls-cert",  e->server_cert,
                     "--tls-key",     e->server_key, "--tls-ca", e->ca_cert,    "--database",
                     conninfo,        "--sql-dir",   sql_dir,    "--log-level", "debug",
                     "--http-listen", "off"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        argv[n++] = fixed[i];
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n + 1 >= sizeof(argv) / sizeof(argv[0]))
            return -1;
        argv[n++] = (char *)extra[i];
    }
    argv[n] = NULL;

    size_t log_start = nst_log_size(e);
    FILE *log = fopen(e->log_path, "a");
    if (log) {
        fprintf(log, "---- nst: starting napsyncd on %s ----\n", listen);
        fclose(log);
    }
    pid_t pid = nst_spawn(argv, e->log_path);
    if (pid < 0)
        return -1;
    e->pid = pid;

    char ready[64];
    snprintf(ready, sizeof(ready), "listening on 127.0.0.1:%u", e->port);
    uint64_t deadline = nst_now_ms() + NST_START_WAIT_MS;
    while (remaining_ms(deadline) > 0) {
        if (!nst_daemon_running(e)) {
            char *text = read_file(e->log_path, NULL);
            bool taken = text && strlen(text) > log_start &&
                         strstr(text + log_start, "cannot listen") != NULL;
            free(text);
            if (taken)
                return 1;
            fprintf(stderr, "nst: napsyncd exited with status %d before listening\n",
                    e->exit_status);
            nst_log_tail(e, NST_LOG_TAIL_LINES);
            return -1;
        }
        /* Both: the connect proves the socket is up, the log line that it is
         * ours and not another program's that took the port meanwhile. */
        if (log_contains(e, log_start, ready) && port_accepts(e->port))
            return 0;
        /* Short: tests that restart the daemon in a loop wait here each time. */
        nst_sleep_ms(5);
    }
    fprintf(stderr, "nst: napsyncd did not listen on %s within %d ms\n", listen, NST_START_WAIT_MS);
    nst_log_tail(e, NST_LOG_TAIL_LINES);
    kill(e->pid, SIGKILL);
    int st;
    (void)nst_wait_pid(e->pid, NST_WAIT_MS, &st);
    e->pid = 0;
    return -1;
}

int nst_daemon_start(nst_env *e, const char *const *extra)
{
    if (e->pid > 0) {
        fprintf(stderr, "nst: napsyncd is already running\n");
        return -1;
    }
    int rc = 1;
    for (int attempt = 0; attempt < NST_START_ATTEMPTS && rc == 1; attempt++) {
        e->port = nst_free_port();
        if (e->port == 0)
            return -1;
        rc = daemon_try_start(e, extra);
    }
    if (rc != 0)
        return -1;
    if (!e->demo_loaded) {
        char demo[NST_PATH];
        if (nst_path_join(demo, e->source_dir, "deploy/demo.sql") != 0 ||
            load_sql_file(e, demo) != 0) {
            nst_log_tail(e, NST_LOG_TAIL_LINES);
            return -1;
        }
        e->demo_loaded = true;
    }
    return 0;
}

int nst_daemon_signal(nst_env *e, int sig)
{
    if (!nst_daemon_running(e)) {
        fprintf(stderr, "nst: napsyncd is not running (last exit status %d)\n", e->exit_status);
        return -1;
    }
    return kill(e->pid, sig);
}

int nst_daemon_wait_exit(nst_env *e, int timeout_ms, int *status)
{
    if (e->pid <= 0) {
        *status = e->exit_status;
        return 0;
    }
    if (nst_wait_pid(e->pid, timeout_ms, status) != 0)
        return -1;
    e->exit_status = *status;
    e->pid = 0;
    return 0;
}

int nst_daemon_stop(nst_env *e, int sig, int timeout_ms)
{
    if (!nst_daemon_running(e)) {
        fprintf(stderr, "nst: napsyncd had already exited with status %d\n", e->exit_status);
        nst_log_tail(e, NST_LOG_TAIL_LINES);
        return -1;
    }
    kill(e->pid, sig);
    int status;
    if (nst_daemon_wait_exit(e, timeout_ms, &status) != 0) {
        fprintf(stderr, "nst: napsyncd did not exit within %d ms of signal %d; killing it\n",
                timeout_ms, sig);
        nst_log_tail(e, NST_LOG_TAIL_LINES);
        kill(e->pid, SIGKILL);
        (void)nst_wait_pid(e->pid, NST_WAIT_MS, &status);
        e->pid = 0;
        return -1;
    }
    if (status != 0) {
        fprintf(stderr, "nst: napsyncd exited with status %d\n", status);
        nst_log_tail(e, NST_LOG_TAIL_LINES);
    }
    return status;
}

/* ---- daemon log -------------------------------------------------------------------------- */

void nst_log_tail(const nst_env *e, int lines)
{
    char *text = read_file(e->log_path, NULL);
    if (text == NULL) {
        fprintf(stderr, "nst: no daemon log at %s\n", e->log_path);
        return;
    }
    size_t len = strlen(text);
    size_t start = len;
    int seen = 0;
    while (start > 0) {
        if (text[start - 1] == '\n' && start != len && ++seen >= lines)
            break;
        start--;
    }
    fprintf(stderr, "---- last lines of %s ----\n%s%s---- end of log ----\n", e->log_path,
            text + start, len && text[len - 1] != '\n' ? "\n" : "");
    free(text);
}

size_t nst_log_size(const nst_env *e)
{
    struct stat st;
    return stat(e->log_path, &st) == 0 ? (size_t)st.st_size : 0;
}

int nst_log_wait(const nst_env *e, size_t from, const char *needle, int timeout_ms)
{
    uint64_t deadline = nst_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        size_t len = 0;
        char *text = read_file(e->log_path, &len);
        bool found = text && len > from && strstr(text + from, needle) != NULL;
        free(text);
        if (found)
            return 0;
        if (remaining_ms(deadline) == 0)
            return -1;
        nst_sleep_ms(50);
    }
}

bool nst_log_has_line(const nst_env *e, const char *const *needles)
{
    char *text = read_file(e->log_path, NULL);
    if (text == NULL)
        return false;
    bool found = false;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !found;
         line = strtok_r(NULL, "\n", &save)) {
        found = true;
        for (size_t i = 0; needles[i] && found; i++)
            found = strstr(line, needles[i]) != NULL;
    }
    free(text);
    return found;
}

/* ---- test bookkeeping ---------------------------------------------------------------------- */

void nst_test_begin(nst_env *e)
{
    e->test_passed = false;
}

void nst_test_passed(nst_env *e)
{
    e->test_passed = true;
}

void nst_test_end(nst_env *e)
{
    if (!e->test_passed)
        nst_log_tail(e, NST_LOG_TAIL_LINES);
}

/* The environment of a group state laid out as NST_FIXTURE_CHECK demands:
 * a pointer to a struct also points to its first member (C11 6.7.2.1). */
static nst_env *fixture_env(void **state)
{
    return *(nst_env **)*state;
}

int nst_setup(void **state)
{
    nst_test_begin(fixture_env(state));
    return 0;
}

int nst_teardown(void **state)
{
    nst_env *e = fixture_env(state);
    nst_test_end(e);
    if (!nst_daemon_running(e)) {
        fprintf(stderr, "nst: napsyncd is no longer running (exit status %d)\n", e->exit_status);
        nst_log_tail(e, NST_LOG_TAIL_LINES);
        return -1;
    }
    return 0;
}

void *nst_fixture_new(void **state, size_t size)
{
    void *f = calloc(1, size);
    *state = f;
    return f;
}

int nst_group_start(nst_env **e, const char *name, const char *const *extra,
                    const nst_member *members, size_t n)
{
    /* Registration needs the organisations the daemon's first start loads. */
    *e = nst_env_new(name, NULL);
    if (*e == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (nst_device_issue(*e, false, members[i].name, members[i].dev) != 0)
            return -1;
    if (nst_daemon_start(*e, extra) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (members[i].org != NULL && nst_device_register(*e, members[i].org, members[i].principal,
                                                          members[i].role, members[i].dev) != 0)
            return -1;
    for (size_t i = 0; i < n; i++)
        if (members[i].store != NULL &&
            nst_path_join(members[i].store, (*e)->dir, members[i].file) != 0)
            return -1;
    return 0;
}

int nst_group_teardown(void **state)
{
    if (*state == NULL)
        return 0;
    int rc = nst_env_close(fixture_env(state));
    free(*state);
    *state = NULL;
    return rc;
}

void nst_fail(const nst_env *e, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* The teardown (nst_test_end) prints the daemon's log tail. */
    fail_msg("%s (daemon log: %s)", msg, e ? e->log_path : "none");
    abort(); /* not reached: cmocka leaves the test by longjmp */
}

/* ---- libnapsync ---------------------------------------------------------------------------------
 */

void nst_client_options(const nst_env *e, const char *cert, const char *key, const char *ca,
                        ns_client_options *o, char *buf, size_t cap)
{
    memset(o, 0, sizeof(*o));
    snprintf(buf, cap, "127.0.0.1:%u", e->port);
    o->server = buf;
    o->ca_file = ca;
    o->cert_file = cert;
    o->key_file = key;
    o->timeout_ms = NST_WAIT_MS;
    o->client_name = "nst";
    o->client_version = "1";
}

int nst_client_connect(const nst_env *e, const char *cert, const char *key, const char *ca,
                       ns_client **out, ns_error *err)
{
    *out = NULL;
    memset(err, 0, sizeof(*err));
    char server[64];
    ns_client_options o;
    nst_client_options(e, cert, key, ca, &o, server, sizeof(server));
    ns_client *c = NULL;
    int rc = ns_client_new(&o, NULL, &c, err);
    if (rc != NS_OK)
        return rc;
    rc = ns_client_connect_wait(c, err);
    if (rc != NS_OK) {
        ns_client_free(c);
        return rc;
    }
    *out = c;
    return NS_OK;
}

ns_client *nst_must_connect(const nst_env *e, const nst_device *d)
{
    ns_client *c;
    ns_error err;
    int rc = nst_client_connect(e, d->cert, d->key, e->ca_cert, &c, &err);
    if (rc != NS_OK)
        nst_fail(e, "device %s could not connect: %s (%d, server code %d): %s", d->name,
                 ns_status_name((ns_status)rc), rc, err.server_code, err.message);
    return c;
}

void nst_must_ping(const nst_env *e, ns_client *c)
{
    uint64_t rtt = 0;
    ns_error err;
    memset(&err, 0, sizeof(err));
    int rc = ns_client_ping_wait(c, &rtt, &err);
    if (rc != NS_OK)
        nst_fail(e, "ping failed: %s (%d): %s", ns_status_name((ns_status)rc), rc, err.message);
    if (rtt == 0)
        nst_fail(e, "ping succeeded with a round trip time of 0");
}

void nst_client_close(ns_client *c)
{
    if (c == NULL)
        return;
    (void)ns_client_disconnect_wait(c);
    ns_client_free(c);
}

/* ---- raw TLS client
 * ------------------------------------------------------------------------------ */

static void set_timeouts(int fd, int ms)
{
    if (ms < 1)
        ms = 1;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int nst_tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    set_timeouts(fd, NST_WAIT_MS);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int nst_fd_wait_closed(int fd, int timeout_ms)
{
    uint64_t deadline = nst_now_ms() + (uint64_t)timeout_ms;
    char buf[4096];
    for (;;) {
        int left = remaining_ms(deadline);
        if (left == 0)
            return -1;
        set_timeouts(fd, left);
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0)
            return 0;
        if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
            return 0;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return 0;
    }
}

/* ---- /proc/net/tcp ------------------------------------------------------------------ */

typedef struct {
    uint16_t local_port, remote_port;
    unsigned state, timer;
    unsigned long when; /* clock ticks until the timer fires */
    unsigned long inode;
} tcp_entry;

#define TCP_ESTABLISHED_STATE 1
#define TCP_TIMER_KEEPALIVE   2 /* "another timer": for an established socket, keepalive */

/* Calls fn for every IPv4 TCP socket of this network namespace; stops when
 * fn returns true. Returns 0, or -1 if the table cannot be read. */
static int tcp_scan(bool (*fn)(const tcp_entry *t, void *ud), void *ud)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL) {
        fprintf(stderr, "nst: /proc/net/tcp: %s\n", strerror(errno));
        return -1;
    }
    char line[512];
    if (fgets(line, sizeof(line), f) == NULL) { /* the header */
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        tcp_entry t;
        unsigned laddr, lport, raddr, rport;
        if (sscanf(line, " %*u: %X:%X %X:%X %X %*X:%*X %X:%lX %*X %*u %*u %lu", &laddr, &lport,
                   &raddr, &rport, &t.state, &t.timer, &t.when, &t.inode) != 8)
            continue;
        t.local_port = (uint16_t)lport;
        t.remote_port = (uint16_t)rport;
        if (fn(&t, ud))
            break;
    }
    fclose(f);
    return 0;
}

typedef struct {
    uint16_t local_port, remote_port;
    bool found;
    tcp_entry entry;
} tcp_find;

static bool tcp_match(const tcp_entry *t, void *ud)
{
    tcp_find *q = ud;
    if (t->state != TCP_ESTABLISHED_STATE || t->local_port != q->local_port ||
        t->remote_port != q->remote_port)
        return false;
    q->found = true;
    q->entry = *t;
    return true;
}

int nst_tcp_keepalive_due(uint16_t local_port, uint16_t remote_port, int timeout_ms, int *due_s)
{
    long ticks = sysconf(_SC_CLK_TCK);
    if (ticks <= 0)
        return -1;
    uint64_t deadline = nst_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        tcp_find q = {.local_port = local_port, .remote_port = remote_port};
        if (tcp_scan(tcp_match, &q) != 0 || !q.found)
            return -1;
        if (q.entry.timer == TCP_TIMER_KEEPALIVE) {
            *due_s = (int)(q.entry.when / (unsigned long)ticks);
            return 0;
        }
        if (q.entry.timer == 0 || remaining_ms(deadline) == 0)
            return -1; /* no timer at all: keepalive is off */
        nst_sleep_ms(50);
    }
}

typedef struct {
    uint16_t remote_port;
    const unsigned long *inodes;
    size_t ninodes;
    uint16_t *ports;
    int max, count;
} tcp_own;

static bool tcp_collect(const tcp_entry *t, void *ud)
{
    tcp_own *q = ud;
    if (t->state != TCP_ESTABLISHED_STATE || t->remote_port != q->remote_port)
        return false;
    for (size_t i = 0; i < q->ninodes; i++) {
        if (q->inodes[i] == t->inode) {
            if (q->count < q->max)
                q->ports[q->count] = t->local_port;
            q->count++;
            break;
        }
    }
    return false;
}

int nst_own_tcp_ports(uint16_t remote_port, uint16_t *ports, int max)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    unsigned long inodes[256];
    size_t n = 0;
    const struct dirent *ent;
    while ((ent = readdir(d)) != NULL && n < sizeof(inodes) / sizeof(inodes[0])) {
        char path[NST_PATH], target[64];
        if (ent->d_name[0] == '.' ||
            snprintf(path, sizeof(path), "/proc/self/fd/%s", ent->d_name) >= (int)sizeof(path))
            continue;
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (sscanf(target, "socket:[%lu]", &inodes[n]) == 1)
            n++;
    }
    closedir(d);
    tcp_own q = {
        .remote_port = remote_port, .inodes = inodes, .ninodes = n, .ports = ports, .max = max};
    if (tcp_scan(tcp_collect, &q) != 0)
        return -1;
    return q.count;
}

static void raw_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    nst_raw *r = arg;
    const uint8_t *b = buf;
    if (write_p && content_type == SSL3_RT_HANDSHAKE && len >= 6 && b[0] == SSL3_MT_CLIENT_HELLO)
        r->hello_version = (b[4] << 8) | b[5];
    if (!write_p && content_type == SSL3_RT_ALERT && len == 2)
        r->alert_received = b[1];
}

static void ssl_errors(nst_raw *r, const char *what)
{
    size_t n = (size_t)snprintf(r->error, sizeof(r->error), "%s", what);
    unsigned long e;
    while ((e = ERR_get_error()) != 0 && n + 4 < sizeof(r->error)) {
        char one[200];
        ERR_error_string_n(e, one, sizeof(one));
        n += (size_t)snprintf(r->error + n, sizeof(r->error) - n, "; %s", one);
    }
    if (r->alert_received >= 0 && n + 4 < sizeof(r->error))
        snprintf(r->error + n, sizeof(r->error) - n, "; alert from server: %s",
                 SSL_alert_desc_string_long(r->alert_received));
}

static void raw_free(nst_raw *r)
{
    SSL_free(r->ssl);
    SSL_CTX_free(r->ctx);
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    r->ssl = NULL;
    r->ctx = NULL;
    r->fd = -1;
    r->buf = NULL;
    r->len = r->cap = 0;
}

static int raw_setup_ctx(nst_raw *r, const nst_raw_opts *o)
{
    r->ctx = SSL_CTX_new(TLS_client_method());
    if (r->ctx == NULL)
        return -1;
    /* Set both bounds explicitly, so that a system-wide MinProtocol cannot
     * silently stop an old protocol from being offered at all. */
    if (o->min_version && SSL_CTX_set_min_proto_version(r->ctx, o->min_version) != 1)
        return -1;
    if (o->max_version && SSL_CTX_set_max_proto_version(r->ctx, o->max_version) != 1)
        return -1;
    if (o->legacy) {
        SSL_CTX_set_security_level(r->ctx, 0);
        if (SSL_CTX_set_cipher_list(r->ctx, "DEFAULT@SECLEVEL=0") != 1)
            return -1;
    }
    if (o->cert && (SSL_CTX_use_certificate_chain_file(r->ctx, o->cert) != 1 ||
                    SSL_CTX_use_PrivateKey_file(r->ctx, o->key, SSL_FILETYPE_PEM) != 1))
        return -1;
    if (o->ca) {
        if (SSL_CTX_load_verify_locations(r->ctx, o->ca, NULL) != 1)
            return -1;
        SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(r->ctx), "127.0.0.1") != 1)
            return -1;
    } else {
        SSL_CTX_set_verify(r->ctx, SSL_VERIFY_NONE, NULL);
    }
    SSL_CTX_set_msg_callback(r->ctx, raw_msg_cb);
    SSL_CTX_set_msg_callback_arg(r->ctx, r);
    return 0;
}

int nst_raw_connect(nst_raw *r, uint16_t port, const nst_raw_opts *o)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->alert_received = -1;
    ERR_clear_error();
    if (raw_setup_ctx(r, o) != 0) {
        ssl_errors(r, "client TLS setup failed");
        raw_free(r);
        return -1;
    }
    r->fd = nst_tcp_connect(port);
    if (r->fd < 0) {
        snprintf(r->error, sizeof(r->error), "TCP connect to 127.0.0.1:%u: %s", port,
                 strerror(errno));
        raw_free(r);
        return -1;
    }
    r->ssl = SSL_new(r->ctx);
    if (r->ssl == NULL || SSL_set_fd(r->ssl, r->fd) != 1) {
        ssl_errors(r, "SSL_new failed");
        raw_free(r);
        return -1;
    }
    int rc = SSL_connect(r->ssl);
    if (rc != 1) {
        int err = SSL_get_error(r->ssl, rc);
        char what[128];
        snprintf(what, sizeof(what), "TLS handshake failed (SSL error %d, errno %d)", err, errno);
        ssl_errors(r, what);
        raw_free(r);
        return -1;
    }
    X509 *peer = SSL_get1_peer_certificate(r->ssl);
    if (peer) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (X509_digest(peer, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32)
            for (unsigned i = 0; i < 32; i++)
                snprintf(r->peer_fp + 2 * i, 3, "%02x", md[i]);
        X509_free(peer);
    }
    return 0;
}

void nst_raw_close(nst_raw *r)
{
    if (r->ssl && r->fd >= 0) {
        set_timeouts(r->fd, 1000);
        ERR_clear_error();
        (void)SSL_shutdown(r->ssl); /* best effort: the server may be gone */
        ERR_clear_error();
    }
    raw_free(r);
}

void nst_raw_abort(nst_raw *r)
{
    raw_free(r);
}

void nst_must_raw_tls(const nst_env *e, nst_raw *r, const nst_device *d)
{
    nst_raw_opts o = {.cert = d->cert, .key = d->key, .ca = e->ca_cert};
    if (nst_raw_connect(r, e->port, &o) != 0)
        nst_fail(e, "raw TLS connect of %s failed: %s", d->name, r->error);
}

int nst_raw_write(nst_raw *r, const void *buf, size_t len)
{
    if (r->ssl == NULL)
        return -1;
    set_timeouts(r->fd, NST_WAIT_MS);
    const uint8_t *p = buf;
    while (len > 0) {
        ERR_clear_error();
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        int n = SSL_write(r->ssl, p, chunk);
        if (n <= 0) {
            ssl_errors(r, "SSL_write failed");
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void nst_must_raw_write(const nst_env *e, nst_raw *r, const void *buf, size_t len)
{
    if (nst_raw_write(r, buf, len) != 0)
        nst_fail(e, "write of %zu bytes failed: %s", len, r->error);
}

int nst_frame_append(uint8_t **buf, size_t *len, const void *payload, size_t plen)
{
    uint8_t *grown = realloc(*buf, *len + NS_FRAME_HEADER_SIZE + plen + 1);
    if (grown == NULL)
        return -1;
    *buf = grown;
    ns_frame_header(grown + *len, (uint32_t)plen);
    if (plen)
        memcpy(grown + *len + NS_FRAME_HEADER_SIZE, payload, plen);
    *len += NS_FRAME_HEADER_SIZE + plen;
    return 0;
}

int nst_frame_append_env(uint8_t **buf, size_t *len, const ns_envelope *env)
{
    uint8_t *packed = NULL;
    size_t plen = 0;
    if (ns_envelope_pack(env, &packed, &plen) != 0)
        return -1;
    int rc = nst_frame_append(buf, len, packed, plen);
    free(packed);
    return rc;
}

int nst_frame_append_hello(uint8_t **buf, size_t *len, uint64_t rid, uint32_t minv, uint32_t maxv)
{
    Napsync__V1__Hello h = NAPSYNC__V1__HELLO__INIT;
    h.min_version = minv;
    h.max_version = maxv;
    h.client_name = "nst-raw";
    h.client_version = "1";
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    return nst_frame_append_env(buf, len, &env);
}

int nst_frame_append_ping(uint8_t **buf, size_t *len, uint64_t rid, const void *payload,
                          size_t plen)
{
    Napsync__V1__Ping p = NAPSYNC__V1__PING__INIT;
    p.payload.data = (uint8_t *)payload;
    p.payload.len = plen;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = rid;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PING;
    env.ping = &p;
    return nst_frame_append_env(buf, len, &env);
}

static int send_and_free(nst_raw *r, uint8_t *buf, size_t len, int rc)
{
    if (rc == 0)
        rc = nst_raw_write(r, buf, len);
    free(buf);
    return rc;
}

int nst_raw_send_env(nst_raw *r, const ns_envelope *env)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    return send_and_free(r, buf, len, nst_frame_append_env(&buf, &len, env));
}

int nst_raw_send_hello(nst_raw *r, uint64_t rid, uint32_t minv, uint32_t maxv)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = nst_frame_append_hello(&buf, &len, rid, minv, maxv);
    return send_and_free(r, buf, len, rc);
}

int nst_raw_send_ping(nst_raw *r, uint64_t rid, const void *payload, size_t plen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = nst_frame_append_ping(&buf, &len, rid, payload, plen);
    return send_and_free(r, buf, len, rc);
}

/* A whole frame at the front of r->buf, if there is one. */
static nst_read_status take_frame(nst_raw *r, ns_envelope **out, bool *have)
{
    *have = false;
    if (r->len < NS_FRAME_HEADER_SIZE)
        return NST_READ_FRAME;
    uint32_t n = (uint32_t)r->buf[0] << 24 | (uint32_t)r->buf[1] << 16 | (uint32_t)r->buf[2] << 8 |
                 r->buf[3];
    if (n > NST_RAW_MAX_FRAME) {
        snprintf(r->error, sizeof(r->error), "the server announced a frame of %u bytes", n);
        return NST_READ_ERROR;
    }
    if (r->len < NS_FRAME_HEADER_SIZE + (size_t)n)
        return NST_READ_FRAME;
    *out = ns_envelope_unpack(r->buf + NS_FRAME_HEADER_SIZE, n);
    size_t used = NS_FRAME_HEADER_SIZE + (size_t)n;
    memmove(r->buf, r->buf + used, r->len - used);
    r->len -= used;
    if (*out == NULL) {
        snprintf(r->error, sizeof(r->error),
                 "the server sent a frame of %u bytes that is not "
                 "an Envelope",
                 n);
        return NST_READ_ERROR;
    }
    *have = true;
    return NST_READ_FRAME;
}

nst_read_status nst_raw_read(nst_raw *r, int timeout_ms, ns_envelope **out)
{
    *out = NULL;
    uint64_t deadline = nst_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        bool have;
        nst_read_status st = take_frame(r, out, &have);
        if (st != NST_READ_FRAME || have)
            return st;
        if (r->ssl == NULL)
            return NST_READ_CLOSED;
        int left = remaining_ms(deadline);
        if (left == 0)
            return NST_READ_TIMEOUT;
        if (r->cap - r->len < 16384) {
            uint8_t *grown = realloc(r->buf, r->cap + 65536);
            if (grown == NULL)
                return NST_READ_ERROR;
            r->buf = grown;
            r->cap += 65536;
        }
        set_timeouts(r->fd, left);
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(r->ssl, r->buf + r->len, (int)(r->cap - r->len));
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        int err = SSL_get_error(r->ssl, n);
        int saved = errno;
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            continue; /* the receive timeout expired: the deadline decides */
        if (err == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR))
            continue;
        /* close_notify, EOF, reset or a fatal alert: the session is over,
         * and OpenSSL allows no further call on it but free. */
        r->closed_ssl_error = err;
        r->closed_errno = saved;
        char what[96];
        snprintf(what, sizeof(what), "connection closed (SSL error %d, errno %d)", err, saved);
        ssl_errors(r, what);
        SSL_free(r->ssl);
        r->ssl = NULL;
        return NST_READ_CLOSED;
    }
}

static const char *body_name(int body)
{
    switch (body) {
    case NAPSYNC__V1__ENVELOPE__BODY_ERROR:
        return "Error";
    case NAPSYNC__V1__ENVELOPE__BODY_HELLO:
        return "Hello";
    case NAPSYNC__V1__ENVELOPE__BODY_WELCOME:
        return "Welcome";
    case NAPSYNC__V1__ENVELOPE__BODY_PING:
        return "Ping";
    case NAPSYNC__V1__ENVELOPE__BODY_PONG:
        return "Pong";
    case NAPSYNC__V1__ENVELOPE__BODY_GOODBYE:
        return "Goodbye";
    default:
        return "(no body)";
    }
}

static const char *read_status_name(nst_read_status st)
{
    switch (st) {
    case NST_READ_FRAME:
        return "a frame";
    case NST_READ_CLOSED:
        return "the connection closed";
    case NST_READ_TIMEOUT:
        return "nothing within the wait";
    default:
        return "an error";
    }
}

ns_envelope *nst_expect_frame(const nst_env *e, nst_raw *r, Napsync__V1__Envelope__BodyCase body)
{
    ns_envelope *env;
    nst_read_status st = nst_raw_read(r, NST_WAIT_MS, &env);
    if (st != NST_READ_FRAME)
        nst_fail(e, "expected %s, got %s: %s", body_name(body), read_status_name(st), r->error);
    if (env->body_case != body) {
        char detail[700] = "";
        if (env->body_case == NAPSYNC__V1__ENVELOPE__BODY_ERROR)
            snprintf(detail, sizeof(detail), " %s: %s", ns_error_code_name(env->error->code),
                     env->error->message);
        else if (env->body_case == NAPSYNC__V1__ENVELOPE__BODY_GOODBYE)
            snprintf(detail, sizeof(detail), " reason %d: %s", env->goodbye->reason,
                     env->goodbye->message);
        int got = env->body_case;
        ns_envelope_free(env);
        nst_fail(e, "expected %s, got %s%s", body_name(body), body_name(got), detail);
    }
    return env;
}

void nst_expect_error(const nst_env *e, nst_raw *r, uint64_t rid, int code, bool fatal)
{
    ns_envelope *env = nst_expect_frame(e, r, NAPSYNC__V1__ENVELOPE__BODY_ERROR);
    Napsync__V1__Error err = *env->error;
    uint64_t got_rid = env->request_id;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", err.message ? err.message : "");
    ns_envelope_free(env);
    if ((int)err.code != code || err.fatal != fatal || got_rid != rid)
        nst_fail(e,
                 "expected Error %s (fatal %d, request %llu), got %s (fatal %d, request %llu): "
                 "%s",
                 ns_error_code_name(code), fatal, (unsigned long long)rid,
                 ns_error_code_name(err.code), err.fatal, (unsigned long long)got_rid, msg);
    if (msg[0] == '\0')
        nst_fail(e, "Error %s came without a message", ns_error_code_name(code));
}

void nst_expect_fatal_error(const nst_env *e, nst_raw *r, uint64_t rid, int code)
{
    nst_expect_error(e, r, rid, code, true);
    nst_expect_closed(e, r);
}

void nst_expect_closed(const nst_env *e, nst_raw *r)
{
    ns_envelope *env;
    nst_read_status st = nst_raw_read(r, NST_WAIT_MS, &env);
    if (st == NST_READ_CLOSED)
        return;
    int body = env ? env->body_case : 0;
    ns_envelope_free(env);
    if (st == NST_READ_FRAME)
        nst_fail(e, "expected the server to close the session, got %s", body_name(body));
    nst_fail(e, "expected the server to close the session, got %s: %s", read_status_name(st),
             r->error);
}

void nst_expect_close_notify(const nst_env *e, nst_raw *r)
{
    nst_expect_closed(e, r);
    if (r->closed_ssl_error != SSL_ERROR_ZERO_RETURN)
        nst_fail(e, "the session ended without TLS close_notify (%s): %s",
                 r->closed_errno == ECONNRESET ? "connection reset" : "no close_notify", r->error);
}

void nst_expect_welcome(const nst_env *e, nst_raw *r, uint64_t rid, const nst_device *d)
{
    ns_envelope *env = nst_expect_frame(e, r, NAPSYNC__V1__ENVELOPE__BODY_WELCOME);
    uint64_t got = env->request_id;
    bool named = env->welcome->device && env->welcome->device->name &&
                 strcmp(env->welcome->device->name, d->name) == 0;
    ns_envelope_free(env);
    if (got != rid)
        nst_fail(e, "Welcome answered request %llu, expected %llu", (unsigned long long)got,
                 (unsigned long long)rid);
    if (!named)
        nst_fail(e, "Welcome does not name device %s", d->name);
}

void nst_must_raw_auth(const nst_env *e, nst_raw *r, const nst_device *d, uint64_t rid)
{
    nst_must_raw_tls(e, r, d);
    if (nst_raw_send_hello(r, rid, 1, 1) != 0)
        nst_fail(e, "sending Hello failed: %s", r->error);
    nst_expect_welcome(e, r, rid, d);
}

void nst_expect_pong(const nst_env *e, nst_raw *r, uint64_t rid, const void *payload, size_t plen)
{
    ns_envelope *env = nst_expect_frame(e, r, NAPSYNC__V1__ENVELOPE__BODY_PONG);
    uint64_t got = env->request_id;
    size_t got_len = env->pong->payload.len;
    bool echoed =
        got_len == plen && (plen == 0 || memcmp(env->pong->payload.data, payload, plen) == 0);
    ns_envelope_free(env);
    if (got != rid)
        nst_fail(e, "Pong %llu arrived where %llu was due", (unsigned long long)got,
                 (unsigned long long)rid);
    if (!echoed)
        nst_fail(e, "the Pong for request %llu carries %zu bytes, not the %zu sent",
                 (unsigned long long)rid, got_len, plen);
}

void nst_must_raw_ping(const nst_env *e, nst_raw *r, uint64_t rid)
{
    char payload[32];
    int plen = snprintf(payload, sizeof(payload), "nst-%llu", (unsigned long long)rid);
    if (nst_raw_send_ping(r, rid, payload, (size_t)plen) != 0)
        nst_fail(e, "sending Ping %llu failed: %s", (unsigned long long)rid, r->error);
    nst_expect_pong(e, r, rid, payload, (size_t)plen);
}

/* ---- the napsync CLI ---------------------------------------------------------------- */

/* The fixed arguments before the caller's, and the argv slots for both. */
#define NST_CLI_FIXED 11
#define NST_CLI_MAX   48

int nst_cli_v(const nst_env *e, const nst_device *d, const char *store, char *out, size_t cap,
              const char *first, va_list ap)
{
    if (out == NULL || cap == 0)
        return -1;
    out[0] = '\0';
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)e->port);
    const char *argv[NST_CLI_MAX + 1] = {e->napsync, "--server", server,  "--ca",
                                         e->ca_cert, "--cert",   d->cert, "--key",
                                         d->key,     "--store",  store};
    _Static_assert(NST_CLI_FIXED < NST_CLI_MAX, "room for the caller's arguments");
    int n = NST_CLI_FIXED;
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        /* Too many is a mistake in the test; running a shortened command
         * line would test something else. */
        if (n == NST_CLI_MAX) {
            fprintf(stderr, "nst: more than %d arguments for napsync\n", NST_CLI_MAX);
            return -1;
        }
        argv[n++] = a;
    }
    argv[n] = NULL;
    return nst_run((char *const *)argv, out, cap);
}

int nst_cli(const nst_env *e, const nst_device *d, const char *store, char *out, size_t cap,
            const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(e, d, store, out, cap, first, ap);
    va_end(ap);
    return rc;
}

void nst_json_get(const char *json, const char *key, char *val, size_t cap)
{
    char pat[64];
    assert_true((size_t)snprintf(pat, sizeof(pat), "\"%s\":\"", key) < sizeof(pat));
    const char *p = strstr(json, pat);
    if (p == NULL)
        fail_msg("no \"%s\" string in: %s", key, json);
    p += strlen(pat);
    const char *end = strchr(p, '"');
    assert_non_null(end);
    assert_true((size_t)(end - p) < cap);
    memcpy(val, p, (size_t)(end - p));
    val[end - p] = '\0';
}

int nst_count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- records the domain model accepts ----------------------------------------------------- */

static void plan_pb_field(nst_plan_pb *p, size_t i, const char *name,
                          Napsync__V1__Value__KindCase kind, const char *value)
{
    napsync__v1__value__init(&p->values[i]);
    p->values[i].kind_case = kind;
    if (kind == NAPSYNC__V1__VALUE__KIND_DATE_VALUE)
        p->values[i].date_value = (char *)value;
    else
        p->values[i].text_value = (char *)value;
    napsync__v1__field__init(&p->fields[i]);
    p->fields[i].name = (char *)name;
    p->fields[i].value = &p->values[i];
    p->ptrs[i] = &p->fields[i];
}

void nst_plan_pb_init(nst_plan_pb *p, const char *title, const char *status)
{
    memset(p, 0, sizeof(*p));
    plan_pb_field(p, 0, "title", NAPSYNC__V1__VALUE__KIND_TEXT_VALUE, title);
    plan_pb_field(p, 1, "status", NAPSYNC__V1__VALUE__KIND_TEXT_VALUE, status);
    plan_pb_field(p, 2, "kind", NAPSYNC__V1__VALUE__KIND_TEXT_VALUE, NST_PLAN_KIND);
    plan_pb_field(p, 3, "period_start", NAPSYNC__V1__VALUE__KIND_DATE_VALUE, NST_PLAN_START);
    plan_pb_field(p, 4, "period_end", NAPSYNC__V1__VALUE__KIND_DATE_VALUE, NST_PLAN_END);
    napsync__v1__field_set__init(&p->set);
    p->set.n_fields = NST_PLAN_PB_FIELDS;
    p->set.fields = p->ptrs;
}
