/* What the fuzz targets share: see fixture.h. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH and FTW_PHYS */
#include "fixture.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef NS_FUZZ_SOURCE_DIR
#error "NS_FUZZ_SOURCE_DIR must name the checkout (tests/fuzz/CMakeLists.txt sets it)"
#endif

#define MAX_TMPDIRS 4

const char *nsf_source_dir(void)
{
    const char *s = getenv("NS_SOURCE_DIR");
    return s && *s ? s : NS_FUZZ_SOURCE_DIR;
}

static char tmpdirs[MAX_TMPDIRS][NSF_PATH];
static int ntmpdirs;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "fuzz: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void remove_tmpdirs(void)
{
    for (int i = 0; i < ntmpdirs; i++)
        (void)nftw(tmpdirs[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    ntmpdirs = 0;
}

void nsf_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    /* abort() skips atexit: the keys of the test CA go now. */
    remove_tmpdirs();
    abort();
}

void nsf_tmpdir(char out[NSF_PATH], const char *tag)
{
    if (ntmpdirs == MAX_TMPDIRS)
        nsf_die("too many temporary directories");
    const char *base = getenv("TMPDIR");
    int n =
        snprintf(out, NSF_PATH, "%s/napsync-fuzz-%s.XXXXXX", base && *base ? base : "/tmp", tag);
    if (n < 0 || n >= NSF_PATH || mkdtemp(out) == NULL)
        nsf_die("cannot create a temporary directory for %s: %s", tag, strerror(errno));
    if (ntmpdirs == 0)
        atexit(remove_tmpdirs);
    snprintf(tmpdirs[ntmpdirs++], NSF_PATH, "%s", out);
}

void nsf_run(char *const argv[], char *out, size_t cap)
{
    int fds[2];
    if (cap == 0 || pipe(fds) != 0)
        nsf_die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        nsf_die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    for (;;) {
        char chunk[1024];
        ssize_t r = read(fds[0], chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t take = (size_t)r < cap - 1 - used ? (size_t)r : cap - 1 - used;
        memcpy(out + used, chunk, take);
        used += take;
    }
    out[used] = '\0';
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            nsf_die("waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        nsf_die("%s %s failed (status %d)", argv[0], argv[1] ? argv[1] : "", st);
}

static void path_join(char out[NSF_PATH], const char *dir, const char *name)
{
    int n = snprintf(out, NSF_PATH, "%s/%s", dir, name);
    if (n < 0 || n >= NSF_PATH)
        nsf_die("path too long: %s/%s", dir, name);
}

static void ca_sh(char *const args[], char *out, size_t cap)
{
    char script[NSF_PATH];
    path_join(script, nsf_source_dir(), "deploy/ca.sh");
    char *argv[8] = {script};
    for (int i = 0; args[i] && i < 6; i++)
        argv[i + 1] = args[i];
    nsf_run(argv, out, cap);
}

void nsf_pki_device(const char *dir, const char *device, char cert[NSF_PATH], char key[NSF_PATH],
                    char fp[65])
{
    char out[4096], name[80];
    char *dev[] = {"device", (char *)dir, (char *)device, NULL};
    ca_sh(dev, out, sizeof(out));
    /* The last line of ca.sh device is the fingerprint. */
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '\n')
        out[--len] = '\0';
    const char *last = strrchr(out, '\n');
    last = last ? last + 1 : out;
    if (strlen(last) != 64)
        nsf_die("unexpected output from ca.sh device: %s", out);
    memcpy(fp, last, 65);
    snprintf(name, sizeof(name), "%s.crt", device);
    path_join(cert, dir, name);
    snprintf(name, sizeof(name), "%s.key", device);
    path_join(key, dir, name);
}

void nsf_pki_make(nsf_pki *p, const char *dir, const char *device)
{
    char out[4096];
    memset(p, 0, sizeof(*p));
    char *init[] = {"init", (char *)dir, "napsync fuzz CA", NULL};
    ca_sh(init, out, sizeof(out));
    char *server[] = {"server", (char *)dir, "server", "IP:127.0.0.1", NULL};
    ca_sh(server, out, sizeof(out));
    path_join(p->ca, dir, "ca.crt");
    path_join(p->server_cert, dir, "server.crt");
    path_join(p->server_key, dir, "server.key");
    nsf_pki_device(dir, device, p->device_cert, p->device_key, p->device_fp);
}

bool nsf_next_frame(const uint8_t **data, size_t *size, const uint8_t **payload, size_t *len)
{
    if (*size == 0)
        return false;
    uint32_t want = 0;
    size_t hdr = *size < 4 ? *size : 4;
    for (size_t i = 0; i < 4; i++)
        want = (want << 8) | (i < hdr ? (*data)[i] : 0);
    size_t have = *size - hdr;
    size_t take = want < have ? want : have;
    *payload = *data + hdr;
    *len = take;
    *data += hdr + take;
    *size -= hdr + take;
    return true;
}

void nsf_replace(uint8_t *buf, size_t len, const char *token, const char *value)
{
    if (len < NSF_TOKEN_LEN)
        return;
    for (size_t i = 0; i + NSF_TOKEN_LEN <= len;) {
        if (buf[i] == (uint8_t)token[0] && memcmp(buf + i, token, NSF_TOKEN_LEN) == 0) {
            memcpy(buf + i, value, NSF_TOKEN_LEN);
            i += NSF_TOKEN_LEN;
        } else {
            i++;
        }
    }
}

static void on_expired(uv_timer_t *t)
{
    nsf_waiter *w = t->data;
    w->expired = true;
}

void nsf_waiter_init(nsf_waiter *w, uv_loop_t *loop)
{
    w->loop = loop;
    w->expired = false;
    if (uv_timer_init(loop, &w->timer) != 0)
        nsf_die("uv_timer_init failed");
    w->timer.data = w;
}

static bool wait_until(nsf_waiter *w, nsf_pred pred, void *ud, uint64_t timeout_ms)
{
    w->expired = false;
    uv_timer_start(&w->timer, on_expired, timeout_ms, 0);
    while (!pred(ud) && !w->expired)
        uv_run(w->loop, UV_RUN_ONCE);
    uv_timer_stop(&w->timer);
    return pred(ud);
}

void nsf_wait(nsf_waiter *w, nsf_pred pred, void *ud, uint64_t timeout_ms, const char *what)
{
    if (!wait_until(w, pred, ud, timeout_ms))
        nsf_die("%s: not done within %llu ms", what, (unsigned long long)timeout_ms);
}

void nsf_waiter_close(nsf_waiter *w)
{
    uv_close((uv_handle_t *)&w->timer, NULL);
}
