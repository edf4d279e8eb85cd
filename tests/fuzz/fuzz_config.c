/* libFuzzer target: napsyncd's configuration file (daemon/config.c on the
 * "key = value" parser of proto/conf.c, which the CLI's settings file
 * shares).
 *
 * Input: the file. It is loaded through ns_config_load_file from a memory
 * file, as the daemon loads it, and again through ns_conf_parse_buffer
 * with ns_config_set: both must agree. A setting refused for its value
 * never has the database connection string in its message (it may hold a
 * password). */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"
#include "config.h"
#include "fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];

typedef struct {
    ns_config *cfg;
    bool leaked; /* a refused database value appears in its message */
} set_ctx;

static int set_one(void *ud, const char *key, const char *value, char *err, size_t errlen)
{
    set_ctx *c = ud;
    int rc = ns_config_set(c->cfg, key, value, err, errlen);
    /* Long enough not to occur in the message's own words by chance. */
    if (rc != 0 && strcmp(key, "database") == 0 && strlen(value) >= 12 && strstr(err, value))
        c->leaked = true;
    return rc;
}

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void compare(const ns_config *a, const ns_config *b)
{
    if (strcmp(a->listen_host, b->listen_host) != 0 || a->listen_port != b->listen_port ||
        !same_string(a->tls_cert, b->tls_cert) || !same_string(a->tls_key, b->tls_key) ||
        !same_string(a->tls_ca, b->tls_ca) || !same_string(a->database, b->database) ||
        !same_string(a->sql_dir, b->sql_dir) || a->migrate_on_start != b->migrate_on_start ||
        a->db_pool_size != b->db_pool_size || a->db_queue_timeout_ms != b->db_queue_timeout_ms ||
        a->max_frame_size != b->max_frame_size || a->max_sessions != b->max_sessions ||
        a->handshake_timeout_ms != b->handshake_timeout_ms ||
        a->idle_timeout_ms != b->idle_timeout_ms ||
        a->shutdown_timeout_ms != b->shutdown_timeout_ms || a->log_level != b->log_level)
        nsf_die("the file and the buffer give different settings");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("napsyncd.conf", MFD_CLOEXEC);
        if (memfd < 0)
            nsf_die("memfd_create failed");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        nsf_die("cannot write the memory file");

    ns_config from_file, from_buf;
    ns_config_init(&from_file);
    ns_config_init(&from_buf);
    char err_file[1024] = "", err_buf[1024] = "";
    int rc_file = ns_config_load_file(&from_file, path, err_file, sizeof(err_file));
    set_ctx ctx = {&from_buf, false};
    int rc_buf = ns_conf_parse_buffer((const char *)data, size, path, set_one, &ctx, err_buf,
                                      sizeof(err_buf));
    if (rc_file != rc_buf || strcmp(err_file, err_buf) != 0)
        nsf_die("ns_config_load_file (%d: %s) and ns_conf_parse_buffer (%d: %s) disagree", rc_file,
                err_file, rc_buf, err_buf);
    if (ctx.leaked)
        nsf_die("a refused database setting is quoted in its message: %s", err_buf);
    if (rc_file != 0 && strncmp(err_file, path, strlen(path)) != 0)
        nsf_die("the message does not name the file: %s", err_file);
    compare(&from_file, &from_buf);
    char err[512];
    if (ns_config_validate(&from_file, err, sizeof(err)) != 0 && err[0] == '\0')
        nsf_die("ns_config_validate failed without a message");

    /* The value parsers the settings use, on the raw bytes as one string. */
    char text[128];
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    char host[64];
    uint16_t port;
    if (ns_conf_hostport(text, host, sizeof(host), &port) == 0 && (port == 0 || host[0] == '\0'))
        nsf_die("ns_conf_hostport accepted \"%s\" without a host or port", text);
    uint64_t u;
    if (ns_conf_uint(text, 5, 70000, &u) == 0 && (u < 5 || u > 70000))
        nsf_die("ns_conf_uint accepted %llu outside its range", (unsigned long long)u);

    ns_config_free(&from_file);
    ns_config_free(&from_buf);
    return 0;
}
