/* The Debian package, as an administrator meets it: deploy/build-deb.sh
 * makes the .deb; `dpkg -i` installs it into a throwaway Debian 12 root
 * (tests/package/debroot.sh: debootstrap, cached) whose only other packages
 * are those it depends on, so its Depends must be right; its postinst
 * creates the napsync system user; its systemd unit passes systemd-analyze
 * there. Then napsyncd runs FROM THE INSTALLED FILES, as that user, with the
 * installed example configuration (only its listen and database lines
 * edited) and the default sql_dir, against its own database on the
 * NS_TEST_PG* cluster: it migrates, logs in the journal's format when its
 * stderr is the journal's stream, serves a TLS client (libnapsync from the
 * test, and the installed napsync CLI in the root) and reloads on SIGHUP.
 * Finally the package is reinstalled (the edited conffile stays) and purged.
 *
 * The tests run in order on one root. Needs root (chroot). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* The role the harness creates for napsyncd (harness.c): not a superuser. */
#define DAEMON_ROLE "napsyncd"
#define CHROOT      "/usr/sbin/chroot"
#define CONF        "/etc/napsync/napsyncd.conf"
#define OUT_CAP     65536
/* The unit's exposure as systemd-analyze security rates it, times ten:
 * 1.2 today; above 2.0 a hardening option went missing. */
#define MAX_EXPOSURE "20"

typedef struct {
    nst_env *e;
    char deb[NST_PATH];
    char version[64];
    char root[NST_PATH];
    char out[OUT_CAP]; /* the last command's output */
    unsigned uid, gid; /* of napsync in the root */
    nst_device dev;
} fixture;
NST_FIXTURE_CHECK(fixture);

/* Runs argv (NULL terminated, at most 31) with stdout and stderr into
 * f->out. Returns the exit status, or -1. */
static int run(fixture *f, const char *arg0, ...)
{
    const char *argv[32];
    int n = 0;
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a != NULL && n < 31; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return nst_run_no_tty((char *const *)argv, f->out, sizeof(f->out));
}

/* run() that must exit 0; fails the test with the output otherwise. */
#define MUST_RUN(f, ...)                                                                           \
    do {                                                                                           \
        int rc_ = run((f), __VA_ARGS__, (char *)NULL);                                             \
        if (rc_ != 0)                                                                              \
            nst_fail((f)->e, "%s exited with %d:\n%s", #__VA_ARGS__, rc_, (f)->out);               \
    } while (0)

/* ROOT/path */
static void in_root(const fixture *f, char *out, const char *path)
{
    if (nst_path_join(out, f->root, path[0] == '/' ? path + 1 : path) != 0)
        fail_msg("path too long: %s%s", f->root, path);
}

/* The last line of f->out, without its newline, into out. */
static int last_line(const fixture *f, char *out, size_t cap)
{
    size_t len = strlen(f->out);
    while (len > 0 && f->out[len - 1] == '\n')
        len--;
    size_t start = len;
    while (start > 0 && f->out[start - 1] != '\n')
        start--;
    if (len == start || len - start >= cap)
        return -1;
    memcpy(out, f->out + start, len - start);
    out[len - start] = '\0';
    return 0;
}

static int copy_into_root(fixture *f, const char *from, const char *to, mode_t mode, gid_t gid)
{
    char dst[NST_PATH];
    in_root(f, dst, to);
    if (run(f, "/bin/cp", from, dst, (char *)NULL) != 0) {
        fprintf(stderr, "cp %s %s: %s\n", from, dst, f->out);
        return -1;
    }
    if (chown(dst, 0, gid) != 0 || chmod(dst, mode) != 0) {
        fprintf(stderr, "chown/chmod %s: %s\n", dst, strerror(errno));
        return -1;
    }
    return 0;
}

static int count_sql_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int n = 0;
    const struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t len = strlen(ent->d_name);
        n += len > 4 && strcmp(ent->d_name + len - 4, ".sql") == 0;
    }
    closedir(d);
    return n;
}

static char *slurp(const char *path)
{
    FILE *in = fopen(path, "r");
    if (in == NULL)
        return NULL;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - 1 - len, in);
        len += n;
        if (n == 0)
            break;
        if (len + 1 == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(in);
    if (buf)
        buf[len] = '\0';
    return buf;
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    if (geteuid() != 0) {
        fprintf(stderr, "test_package: needs root, to chroot into the Debian root it installs "
                        "the package in\n");
        return -1;
    }
    f->e = nst_env_new("package", NULL);
    if (f->e == NULL)
        return -1;
    nst_env *e = f->e;

    char script[NST_PATH], pkg_dir[NST_PATH];
    const char *build = getenv("NS_BUILD_DIR");
    if (build == NULL || nst_path_join(script, e->source_dir, "deploy/build-deb.sh") != 0 ||
        nst_path_join(pkg_dir, build, "package") != 0)
        return -1;
    if (run(f, "/bin/bash", script, pkg_dir, (char *)NULL) != 0 ||
        last_line(f, f->deb, sizeof(f->deb))) {
        fprintf(stderr, "test_package: deploy/build-deb.sh failed:\n%s\n", f->out);
        return -1;
    }
    if (run(f, "/usr/bin/dpkg-deb", "-f", f->deb, "Version", (char *)NULL) != 0 ||
        last_line(f, f->version, sizeof(f->version)) != 0)
        return -1;

    if (nst_path_join(script, e->source_dir, "tests/package/debroot.sh") != 0 ||
        nst_path_join(f->root, e->dir, "root") != 0)
        return -1;
    if (run(f, "/bin/bash", script, f->deb, f->root, (char *)NULL) != 0) {
        fprintf(stderr, "test_package: tests/package/debroot.sh failed:\n%s\n", f->out);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f == NULL)
        return 0;
    int rc = nst_env_close(f->e); /* removes the root with the directory */
    free(f);
    return rc;
}

static void expect_mode(fixture *f, const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    char p[NST_PATH];
    in_root(f, p, path);
    struct stat st;
    if (stat(p, &st) != 0)
        nst_fail(f->e, "%s is missing: %s", path, strerror(errno));
    if ((st.st_mode & 07777) != mode || st.st_uid != uid || st.st_gid != gid)
        nst_fail(f->e, "%s is %04o %u:%u, expected %04o %u:%u", path,
                 (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid,
                 (unsigned)mode, (unsigned)uid, (unsigned)gid);
}

static void test_dpkg_installs_it(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;

    /* Depends: dpkg-shlibdeps's libraries, and adduser for postinst. */
    MUST_RUN(f, "/usr/bin/dpkg-deb", "-f", f->deb, "Depends");
    const char *needed[] = {"adduser", "libc6",          "libuv1",       "libpq5",
                            "libssl3", "libprotobuf-c1", "libsqlite3-0", "libjansson4"};
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
        if (strstr(f->out, needed[i]) == NULL)
            nst_fail(e, "Depends lacks %s: %s", needed[i], f->out);

    char tmp_deb[NST_PATH];
    in_root(f, tmp_deb, "/tmp/napsync.deb");
    MUST_RUN(f, "/bin/cp", f->deb, tmp_deb);
    MUST_RUN(f, CHROOT, f->root, "dpkg", "-i", "/tmp/napsync.deb");
    MUST_RUN(f, CHROOT, f->root, "dpkg-query", "-W", "-f", "${Status} ${Version}", "napsync");
    char want[128];
    snprintf(want, sizeof(want), "install ok installed %s", f->version);
    assert_string_equal(f->out, want);
    MUST_RUN(f, CHROOT, f->root, "dpkg-query", "-W", "-f", "${Conffiles}", "napsync");
    if (strstr(f->out, CONF " ") == NULL)
        nst_fail(e, CONF " is not a conffile: %s", f->out);

    /* The system user postinst made: no home, no shell. */
    MUST_RUN(f, CHROOT, f->root, "getent", "passwd", "napsync");
    unsigned uid, gid;
    char rest[256];
    if (sscanf(f->out, "napsync:x:%u:%u:%255s", &uid, &gid, rest) != 3)
        nst_fail(e, "unexpected passwd entry: %s", f->out);
    if (uid == 0 || uid >= 1000 || strstr(f->out, ":/nonexistent:/usr/sbin/nologin") == NULL)
        nst_fail(e, "napsync is not a system user without home and shell: %s", f->out);
    MUST_RUN(f, CHROOT, f->root, "getent", "group", "napsync");
    char want_group[64];
    snprintf(want_group, sizeof(want_group), "napsync:x:%u:", gid);
    if (strncmp(f->out, want_group, strlen(want_group)) != 0)
        nst_fail(e, "napsync's group is not its own: %s", f->out);
    f->uid = uid;
    f->gid = gid;
    expect_mode(f, "/etc/napsync", 0750, 0, gid);
    expect_mode(f, "/etc/napsync/tls", 0750, 0, gid);
    expect_mode(f, CONF, 0640, 0, gid);

    /* What it installed, where napsyncd and a developer look for it. */
    MUST_RUN(f, CHROOT, f->root, "dpkg", "-L", "napsync");
    const char *files[] = {"\n/usr/sbin/napsyncd\n",
                           "\n/usr/bin/napsync\n",
                           "/libnapsync.so.0\n",
                           "/libnapsync.a\n",
                           "/pkgconfig/napsync.pc\n",
                           "\n/usr/include/napsync.h\n",
                           "\n/usr/share/napsync/sql/001_identity.sql\n",
                           "\n/usr/lib/systemd/system/napsyncd.service\n",
                           "\n" CONF "\n"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (strstr(f->out, files[i]) == NULL)
            nst_fail(e, "dpkg -L napsync lacks %s", files[i]);
    char sql_src[NST_PATH], sql_dst[NST_PATH];
    assert_int_equal(nst_path_join(sql_src, e->source_dir, "sql"), 0);
    in_root(f, sql_dst, "/usr/share/napsync/sql");
    assert_true(count_sql_files(sql_src) > 0);
    assert_int_equal(count_sql_files(sql_dst), count_sql_files(sql_src));

    /* The CLI finds libnapsync.so.0 by its soname, among Debian's libraries. */
    MUST_RUN(f, CHROOT, f->root, "/usr/bin/napsync", "--version");
    MUST_RUN(f, CHROOT, f->root, "/usr/sbin/napsyncd", "--version");
    if (strstr(f->out, f->version) == NULL)
        nst_fail(e, "napsyncd --version does not say %s: %s", f->version, f->out);

    /* napsync.pc names the installed places. */
    MUST_RUN(f, CHROOT, f->root, "sh", "-c", "cat /usr/lib/*/pkgconfig/napsync.pc");
    char want_version[80];
    snprintf(want_version, sizeof(want_version), "Version: %s\n", f->version);
    if (strstr(f->out, "prefix=/usr\n") == NULL || strstr(f->out, "libdir=/usr/lib/") == NULL ||
        strstr(f->out, "includedir=/usr/include\n") == NULL ||
        strstr(f->out, want_version) == NULL || strstr(f->out, "-lnapsync") == NULL)
        nst_fail(e, "napsync.pc does not describe the installed library:\n%s", f->out);

    /* The unit, checked where it is installed; systemd-analyze exits 0 on
     * mere warnings, so any output fails too. */
    MUST_RUN(f, "/usr/bin/systemd-analyze", "verify", "--root", f->root, "napsyncd.service");
    if (f->out[0] != '\0')
        nst_fail(e, "systemd-analyze verify napsyncd.service:\n%s", f->out);
    if (run(f, "/usr/bin/systemd-analyze", "security", "--offline=true", "--root", f->root,
            "--threshold=" MAX_EXPOSURE, "napsyncd.service", (char *)NULL) != 0)
        nst_fail(e, "the unit's exposure is above %s/10:\n%s", MAX_EXPOSURE, f->out);
    char unit_path[NST_PATH];
    in_root(f, unit_path, "/usr/lib/systemd/system/napsyncd.service");
    char *unit = slurp(unit_path);
    assert_non_null(unit);
    const char *hardening[] = {"\nUser=napsync\n",
                               "\nExecStart=/usr/sbin/napsyncd --config " CONF "\n",
                               "\nProtectSystem=strict\n",
                               "\nProtectHome=yes\n",
                               "\nPrivateTmp=yes\n",
                               "\nNoNewPrivileges=yes\n",
                               "\nCapabilityBoundingSet=\n",
                               "\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
                               "\nSystemCallFilter=@system-service\n"};
    for (size_t i = 0; i < sizeof(hardening) / sizeof(hardening[0]); i++)
        if (strstr(unit, hardening[i]) == NULL) {
            free(unit);
            nst_fail(e, "the installed unit lacks %s", hardening[i] + 1);
        }
    free(unit);
    nst_test_passed(e);
}

/* Edits the installed configuration as an administrator would: its listen
 * and database lines, and http_listen off (tests run side by side; the
 * example's TLS paths are used as they are, sql_dir is left to its
 * default). The file keeps its owner and mode. */
static void configure(fixture *f)
{
    nst_env *e = f->e;
    char path[NST_PATH];
    in_root(f, path, CONF);
    char *text = slurp(path);
    assert_non_null(text);
    size_t cap = strlen(text) + 4096;
    char *edited = malloc(cap);
    assert_non_null(edited);
    size_t len = 0;
    int replaced = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (strncmp(line, "listen = ", 9) == 0) {
            len += (size_t)snprintf(edited + len, cap - len, "listen = 127.0.0.1:%u\n",
                                    (unsigned)e->port);
            replaced++;
        } else if (strncmp(line, "database = ", 11) == 0) {
            /* TCP: the cluster's socket directory is outside the root. */
            len += (size_t)snprintf(edited + len, cap - len,
                                    "database = host=127.0.0.1 port=%s dbname=%s user=" DAEMON_ROLE
                                    " connect_timeout=10 application_name=napsyncd\n",
                                    e->pg.port, e->dbname);
            replaced++;
        } else if (strncmp(line, "http_listen = ", 14) == 0) {
            /* dropped: set below */
        } else {
            memcpy(edited + len, line, n);
            len += n;
        }
        line += n;
    }
    free(text);
    len += (size_t)snprintf(edited + len, cap - len, "http_listen = off\n");
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    assert_int_equal(fwrite(edited, 1, len, out), len);
    assert_int_equal(fclose(out), 0);
    free(edited);
    if (replaced != 2)
        nst_fail(e, "the example configuration has no active listen and database lines");
}

static void test_napsyncd_runs_from_the_package(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    assert_true(f->uid != 0);

    /* The TLS files where the example configuration names them. */
    assert_int_equal(
        copy_into_root(f, e->server_cert, "/etc/napsync/tls/napsyncd.crt", 0640, f->gid), 0);
    assert_int_equal(
        copy_into_root(f, e->server_key, "/etc/napsync/tls/napsyncd.key", 0640, f->gid), 0);
    assert_int_equal(copy_into_root(f, e->ca_cert, "/etc/napsync/tls/devices-ca.crt", 0640, f->gid),
                     0);
    e->port = nst_free_port();
    assert_true(e->port != 0);
    configure(f);

    char user[32];
    snprintf(user, sizeof(user), "--userspec=%u:%u", f->uid, f->gid);
    MUST_RUN(f, CHROOT, user, f->root, "/usr/sbin/napsyncd", "--config", CONF, "--check-config");
    if (strstr(f->out, "configuration OK") == NULL)
        nst_fail(e, "--check-config as napsync: %s", f->out);

    /* Started as the unit starts it, with stderr as the journal's stream:
     * the log file, named by JOURNAL_STREAM as systemd names its socket. */
    int fd = open(e->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    struct stat st;
    assert_int_equal(stat(e->log_path, &st), 0);
    char stream[64];
    snprintf(stream, sizeof(stream), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
    assert_int_equal(setenv("JOURNAL_STREAM", stream, 1), 0);
    char *argv[] = {CHROOT, user, f->root, "/usr/sbin/napsyncd", "--config", CONF, NULL};
    e->pid = nst_spawn(argv, e->log_path);
    unsetenv("JOURNAL_STREAM");
    assert_true(e->pid > 0);
    char ready[64];
    snprintf(ready, sizeof(ready), "listening on 127.0.0.1:%u", (unsigned)e->port);
    if (nst_log_wait(e, 0, ready, NST_WAIT_MS) != 0)
        nst_fail(e, "the installed napsyncd did not start listening");

    /* It found the migrations at its default sql_dir and applied them all. */
    char sql_src[NST_PATH], applied[96], count[16];
    assert_int_equal(nst_path_join(sql_src, e->source_dir, "sql"), 0);
    int nsql = count_sql_files(sql_src);
    snprintf(applied, sizeof(applied), "database schema is current (%d migration(s) applied now)",
             nsql);
    const char *migrated[] = {"<6>level=info", applied, NULL};
    if (!nst_log_has_line(e, migrated))
        nst_fail(e, "no \"%s\" line at priority 6", applied);
    assert_int_equal(
        nst_db_exec(e, "SELECT count(*) FROM napsync_migrations", 0, NULL, count, sizeof(count)),
        0);
    assert_int_equal(atoi(count), nsql);
    /* Journal format: each line has its priority and no timestamp. */
    char *log = slurp(e->log_path);
    assert_non_null(log);
    bool plain = strstr(log, "ts=") != NULL;
    bool first_ok = strncmp(log, "<6>level=info msg=\"napsyncd ", 28) == 0;
    free(log);
    if (plain || !first_ok)
        nst_fail(e, "napsyncd did not log in the journal's format");

    /* A device, and a TLS client: libnapsync here, and the installed CLI
     * (with the installed libnapsync.so.0) in the root. */
    const char *org[] = {"pkgtest", "Package Test Ministry"};
    assert_int_equal(nst_db_exec(e,
                                 "INSERT INTO organisations (code, name, kind, country, "
                                 "default_role) VALUES ($1, $2, 'ministry', 'ZZ', 'coordinator')",
                                 2, org, NULL, 0),
                     0);
    assert_int_equal(nst_device_issue(e, false, "pkg-desk", &f->dev), 0);
    assert_int_equal(nst_device_register(e, "pkgtest", "Package Tester", "", &f->dev), 0);
    ns_client *c = nst_must_connect(e, &f->dev);
    nst_must_ping(e, c);
    assert_int_equal(copy_into_root(f, e->ca_cert, "/tmp/ca.crt", 0644, 0), 0);
    assert_int_equal(copy_into_root(f, f->dev.cert, "/tmp/device.crt", 0644, 0), 0);
    assert_int_equal(copy_into_root(f, f->dev.key, "/tmp/device.key", 0600, 0), 0);
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)e->port);
    MUST_RUN(f, CHROOT, f->root, "/usr/bin/napsync", "--server", server, "--ca", "/tmp/ca.crt",
             "--cert", "/tmp/device.crt", "--key", "/tmp/device.key", "--store", "/tmp/store.db",
             "whoami");
    if (strstr(f->out, "Package Tester") == NULL)
        nst_fail(e, "the installed CLI's whoami does not name the principal: %s", f->out);

    /* systemctl reload: ExecReload sends SIGHUP; the session stays. */
    size_t from = nst_log_size(e);
    assert_int_equal(nst_daemon_signal(e, SIGHUP), 0);
    if (nst_log_wait(e, from, "reloaded TLS certificate, key and CA", NST_WAIT_MS) != 0)
        nst_fail(e, "no reload after SIGHUP");
    nst_must_ping(e, c);
    nst_client_close(c);

    /* systemctl stop: SIGTERM, a clean exit. */
    assert_int_equal(nst_daemon_stop(e, SIGTERM, NST_STOP_MS), 0);
    nst_test_passed(e);
}

/* An upgrade (here the same version again) keeps the administrator's
 * configuration; a purge takes the package's files and its conffile, and
 * leaves the TLS keys an administrator put in /etc/napsync/tls. */
static void test_reinstall_keeps_configuration_and_purge_cleans_up(void **state)
{
    fixture *f = *state;
    nst_env *e = f->e;
    char conf[NST_PATH], path[NST_PATH];
    in_root(f, conf, CONF);
    char *before = slurp(conf);
    assert_non_null(before);
    MUST_RUN(f, CHROOT, f->root, "dpkg", "-i", "/tmp/napsync.deb");
    char *after = slurp(conf);
    assert_non_null(after);
    bool kept = strcmp(before, after) == 0 && strstr(after, "listen = 127.0.0.1:") != NULL;
    free(before);
    free(after);
    if (!kept)
        nst_fail(e, "reinstalling the package changed the edited %s", CONF);
    expect_mode(f, CONF, 0640, 0, f->gid);

    MUST_RUN(f, CHROOT, f->root, "dpkg", "--purge", "napsync");
    const char *gone[] = {"/usr/sbin/napsyncd",
                          "/usr/bin/napsync",
                          "/usr/include/napsync.h",
                          "/usr/share/napsync/sql",
                          "/usr/lib/systemd/system/napsyncd.service",
                          CONF};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        in_root(f, path, gone[i]);
        if (access(path, F_OK) == 0)
            nst_fail(e, "%s is still there after dpkg --purge", gone[i]);
    }
    expect_mode(f, "/etc/napsync/tls/napsyncd.key", 0640, 0, f->gid);
    MUST_RUN(f, CHROOT, f->root, "getent", "passwd", "napsync");
    nst_test_passed(e);
}

/* Per test: the daemon log's tail when one fails (nst_test_end). Unlike
 * nst_setup/nst_teardown, no daemon must run between the tests. */
static int setup(void **state)
{
    fixture *f = *state;
    nst_test_begin(f->e);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nst_test_end(f->e);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dpkg_installs_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_napsyncd_runs_from_the_package, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reinstall_keeps_configuration_and_purge_cleans_up,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("integration: Debian package", tests, group_setup,
                                       group_teardown);
}
