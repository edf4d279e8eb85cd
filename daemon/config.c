#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "frame.h"
#include "version.h"

#define NS_MAX_PATH 4096

typedef enum { T_HOSTPORT, T_PATH, T_SECRET_STRING, T_BOOL, T_U32, T_LOG_LEVEL } setting_type;

typedef struct {
    const char *key;
    setting_type type;
    size_t offset;
    uint64_t min, max; /* for T_U32 */
    const char *def;   /* shown by --help */
    const char *help;
} setting;

#define OFF(f) offsetof(ns_config, f)

static const setting settings[] = {
    {"listen", T_HOSTPORT, 0, 0, 0, "127.0.0.1:7443", "address and port to accept clients on"},
    {"tls_cert", T_PATH, OFF(tls_cert), 0, 0, "(required)", "server certificate chain, PEM"},
    {"tls_key", T_PATH, OFF(tls_key), 0, 0, "(required)", "server private key, PEM"},
    {"tls_ca", T_PATH, OFF(tls_ca), 0, 0, "(required)",
     "CA certificate(s) that device certificates must chain to, PEM"},
    {"database", T_SECRET_STRING, OFF(database), 0, 0, "(required)",
     "libpq connection string, e.g. \"host=db dbname=napsync user=napsync\""},
    {"sql_dir", T_PATH, OFF(sql_dir), 0, 0, NS_SQL_INSTALL_DIR, "directory of SQL migrations"},
    {"migrate_on_start", T_BOOL, OFF(migrate_on_start), 0, 0, "true",
     "apply missing migrations at start (else refuse to start if any is missing)"},
    {"db_pool_size", T_U32, OFF(db_pool_size), 1, 64, "4", "PostgreSQL connections"},
    {"db_queue_timeout_ms", T_U32, OFF(db_queue_timeout_ms), 100, 600000, "5000",
     "how long a request waits for a database connection"},
    {"max_frame_size", T_U32, OFF(max_frame_size), 64, NS_FRAME_MAX_LIMIT, "1048576",
     "largest frame accepted from a client, bytes"},
    {"max_sessions", T_U32, OFF(max_sessions), 1, 1000000, "10000", "concurrent client sessions"},
    {"handshake_timeout_ms", T_U32, OFF(handshake_timeout_ms), 100, 600000, "10000",
     "time allowed for the TLS handshake, and then again for Hello"},
    {"idle_timeout_ms", T_U32, OFF(idle_timeout_ms), 0, 86400000, "300000",
     "close a session silent for this long (0: never)"},
    {"shutdown_timeout_ms", T_U32, OFF(shutdown_timeout_ms), 0, 600000, "10000",
     "on SIGTERM, how long in-flight requests may take before sessions are cut"},
    {"log_level", T_LOG_LEVEL, OFF(log_level), 0, 0, "info", "debug, info, warn or error"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

void ns_config_init(ns_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 7443;
    cfg->sql_dir = strdup(NS_SQL_INSTALL_DIR);
    cfg->migrate_on_start = true;
    cfg->db_pool_size = 4;
    cfg->db_queue_timeout_ms = 5000;
    cfg->max_frame_size = NS_FRAME_DEFAULT_MAX;
    cfg->max_sessions = 10000;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 300000;
    cfg->shutdown_timeout_ms = 10000;
    cfg->log_level = NS_LOG_INFO;
}

void ns_config_free(ns_config *cfg)
{
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->tls_ca);
    free(cfg->database);
    free(cfg->sql_dir);
    memset(cfg, 0, sizeof(*cfg));
}

/* "max_frame_size" -> "--max-frame-size" */
static void flag_name(const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "--%s", key);
    for (char *p = out; *p; p++)
        if (*p == '_')
            *p = '-';
}

static const setting *find(const char *key)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

static int set_string(char **slot, const char *value, size_t max, const char *key, char *err,
                      size_t errlen)
{
    size_t len = strlen(value);
    if (len == 0 || len > max) {
        snprintf(err, errlen, "%s must be 1 to %zu characters", key, max);
        return -1;
    }
    char *copy = strdup(value);
    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(*slot);
    *slot = copy;
    return 0;
}

int ns_config_set(ns_config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const setting *s = find(key);
    if (s == NULL) {
        snprintf(err, errlen, "unknown setting '%s' (napsyncd --help lists them)", key);
        return -1;
    }
    char *base = (char *)cfg;
    switch (s->type) {
    case T_HOSTPORT: {
        char host[sizeof(cfg->listen_host)];
        uint16_t port;
        if (ns_conf_hostport(value, host, sizeof(host), &port) != 0) {
            snprintf(err, errlen, "listen must be HOST:PORT or [IPv6]:PORT, not '%s'", value);
            return -1;
        }
        memcpy(cfg->listen_host, host, sizeof(host));
        cfg->listen_port = port;
        return 0;
    }
    case T_PATH:
        return set_string((char **)(base + s->offset), value, NS_MAX_PATH, key, err, errlen);
    case T_SECRET_STRING:
        /* The value may hold a password: never echo it in the message. */
        return set_string((char **)(base + s->offset), value, 8192, key, err, errlen);
    case T_BOOL: {
        int b;
        if (ns_conf_bool(value, &b) != 0) {
            snprintf(err, errlen, "%s must be true or false, not '%s'", key, value);
            return -1;
        }
        *(bool *)(base + s->offset) = b != 0;
        return 0;
    }
    case T_U32: {
        uint64_t v;
        if (ns_conf_uint(value, s->min, s->max, &v) != 0) {
            snprintf(err, errlen, "%s must be a whole number from %llu to %llu, not '%s'", key,
                     (unsigned long long)s->min, (unsigned long long)s->max, value);
            return -1;
        }
        *(uint32_t *)(base + s->offset) = (uint32_t)v;
        return 0;
    }
    case T_LOG_LEVEL:
        if (ns_log_parse_level(value, (ns_log_level *)(base + s->offset)) != 0) {
            snprintf(err, errlen, "log_level must be debug, info, warn or error, not '%s'", value);
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "internal error: setting '%s' has no type", key);
    return -1;
}

static int file_setting(void *ud, const char *key, const char *value, char *err, size_t errlen)
{
    return ns_config_set(ud, key, value, err, errlen);
}

int ns_config_load_file(ns_config *cfg, const char *path, char *err, size_t errlen)
{
    return ns_conf_parse_file(path, file_setting, cfg, err, errlen);
}

int ns_config_validate(const ns_config *cfg, char *err, size_t errlen)
{
    static const struct {
        const char *key;
        size_t offset;
    } required[] = {
        {"tls_cert", OFF(tls_cert)},
        {"tls_key", OFF(tls_key)},
        {"tls_ca", OFF(tls_ca)},
        {"database", OFF(database)},
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (*(char *const *)((const char *)cfg + required[i].offset) == NULL) {
            char flag[64];
            flag_name(required[i].key, flag, sizeof(flag));
            snprintf(err, errlen, "%s is not set: give it in the config file or as %s",
                     required[i].key, flag);
            return -1;
        }
    }
    return 0;
}

void ns_config_print_help(void)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        char flag[64];
        flag_name(settings[i].key, flag, sizeof(flag));
        printf("  %-24s %s (default: %s)\n", flag, settings[i].help, settings[i].def);
    }
}
