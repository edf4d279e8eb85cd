#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "frame.h"
#include "version.h"

#define NS_MAX_PATH 4096

typedef enum {
    T_HOSTPORT,
    T_HTTP_LISTEN, /* HOST:PORT or off: http_host, http_port, http_enabled */
    T_PATH,
    T_SECRET_STRING,
    T_BOOL,
    T_U32,
    T_LOG_LEVEL
} setting_type;

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
    {"max_sessions_per_device", T_U32, OFF(max_sessions_per_device), 1, 1000000, "8",
     "concurrent sessions of one device certificate"},
    {"handshake_timeout_ms", T_U32, OFF(handshake_timeout_ms), 100, 600000, "10000",
     "time allowed for the TLS handshake, and then again for Hello"},
    {"idle_timeout_ms", T_U32, OFF(idle_timeout_ms), 0, 86400000, "300000",
     "close a session silent for this long (0: never)"},
    {"max_queued_bytes", T_U32, OFF(max_queued_bytes), 65536, 1073741824, "4194304",
     "output waiting for one client beyond which its requests and subscription wait"},
    {"send_timeout_ms", T_U32, OFF(send_timeout_ms), 0, 86400000, "60000",
     "close a session that takes none of its waiting output for this long (0: never)"},
    {"max_push_mutations", T_U32, OFF(max_push_mutations), 1, NS_CONFIG_MAX_PUSH_MUTATIONS, "1000",
     "mutations in one Push"},
    {"max_pull_page_size", T_U32, OFF(max_pull_page_size), 1, NS_CONFIG_MAX_PULL_PAGE_SIZE, "5000",
     "records in one ChangePage (a larger page_size is cut to it)"},
    {"max_subscriptions", T_U32, OFF(max_subscriptions), 1, 1000000, "1000",
     "live subscriptions on the server (one per session)"},
    {"shutdown_timeout_ms", T_U32, OFF(shutdown_timeout_ms), 0, 600000, "10000",
     "on SIGTERM, how long in-flight requests may take before sessions are cut"},
    {"log_level", T_LOG_LEVEL, OFF(log_level), 0, 0, "info", "debug, info, warn or error"},
    {"http_listen", T_HTTP_LISTEN, 0, 0, 0, "127.0.0.1:9187",
     "HTTP address of /healthz, /readyz and /metrics, or off"},
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
    cfg->max_sessions_per_device = 8;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 300000;
    cfg->max_queued_bytes = 4u * 1024u * 1024u;
    cfg->send_timeout_ms = 60000;
    cfg->max_push_mutations = NS_CONFIG_MAX_PUSH_MUTATIONS;
    cfg->max_pull_page_size = NS_CONFIG_MAX_PULL_PAGE_SIZE;
    cfg->max_subscriptions = 1000;
    cfg->shutdown_timeout_ms = 10000;
    cfg->log_level = NS_LOG_INFO;
    snprintf(cfg->http_host, sizeof(cfg->http_host), "127.0.0.1");
    cfg->http_port = 9187;
    cfg->http_enabled = true;
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
    case T_HTTP_LISTEN: {
        char host[sizeof(cfg->http_host)];
        uint16_t port;
        if (strcmp(value, "off") == 0) {
            cfg->http_enabled = false;
            return 0;
        }
        if (ns_conf_hostport(value, host, sizeof(host), &port) != 0) {
            snprintf(err, errlen, "http_listen must be HOST:PORT, [IPv6]:PORT or off, not '%s'",
                     value);
            return -1;
        }
        memcpy(cfg->http_host, host, sizeof(host));
        cfg->http_port = port;
        cfg->http_enabled = true;
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
        /* A flag too long for the column gets a line of its own. */
        if (strlen(flag) > 24)
            printf("  %s\n  %-24s %s (default: %s)\n", flag, "", settings[i].help, settings[i].def);
        else
            printf("  %-24s %s (default: %s)\n", flag, settings[i].help, settings[i].def);
    }
}

/* What a reload applies; every other setting, including those added later,
 * waits for a restart unless it is listed here. */
static const char *const runtime_settings[] = {
    "tls_cert",
    "tls_key",
    "tls_ca",
    "max_frame_size",
    "max_sessions",
    "handshake_timeout_ms",
    "idle_timeout_ms",
    "shutdown_timeout_ms",
    "log_level",
    /* Read when a session starts, or when a limit is checked;
     * max_pull_page_size is the feed's from its start. */
    "max_sessions_per_device",
    "max_queued_bytes",
    "send_timeout_ms",
    "max_push_mutations",
    "max_subscriptions",
};

static bool is_runtime(const char *key)
{
    for (size_t i = 0; i < sizeof(runtime_settings) / sizeof(runtime_settings[0]); i++)
        if (strcmp(runtime_settings[i], key) == 0)
            return true;
    return false;
}

/* A setting's value as text, for the change report; NULL for a secret. */
static const char *value_text(const ns_config *cfg, const setting *s, char *buf, size_t cap)
{
    const char *base = (const char *)cfg;
    switch (s->type) {
    case T_HOSTPORT:
        snprintf(buf, cap, strchr(cfg->listen_host, ':') ? "[%s]:%u" : "%s:%u", cfg->listen_host,
                 (unsigned)cfg->listen_port);
        return buf;
    case T_HTTP_LISTEN:
        if (!cfg->http_enabled)
            return "off";
        snprintf(buf, cap, strchr(cfg->http_host, ':') ? "[%s]:%u" : "%s:%u", cfg->http_host,
                 (unsigned)cfg->http_port);
        return buf;
    case T_PATH: {
        const char *v = *(char *const *)(base + s->offset);
        return v ? v : "(unset)";
    }
    case T_SECRET_STRING:
        return NULL;
    case T_BOOL:
        return *(const bool *)(base + s->offset) ? "true" : "false";
    case T_U32:
        snprintf(buf, cap, "%u", (unsigned)*(const uint32_t *)(base + s->offset));
        return buf;
    case T_LOG_LEVEL: {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        unsigned l = (unsigned)*(const ns_log_level *)(base + s->offset);
        return l < 4 ? names[l] : "?";
    }
    }
    return "?";
}

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Whether a setting has the same value in a and b. */
static bool same_value(const ns_config *a, const ns_config *b, const setting *s)
{
    const char *pa = (const char *)a + s->offset, *pb = (const char *)b + s->offset;
    switch (s->type) {
    case T_HOSTPORT:
        return strcmp(a->listen_host, b->listen_host) == 0 && a->listen_port == b->listen_port;
    case T_HTTP_LISTEN:
        return a->http_enabled == b->http_enabled &&
               (!a->http_enabled ||
                (strcmp(a->http_host, b->http_host) == 0 && a->http_port == b->http_port));
    case T_PATH:
    case T_SECRET_STRING:
        return same_string(*(char *const *)pa, *(char *const *)pb);
    case T_BOOL:
        return *(const bool *)pa == *(const bool *)pb;
    case T_U32:
        return *(const uint32_t *)pa == *(const uint32_t *)pb;
    case T_LOG_LEVEL:
        return *(const ns_log_level *)pa == *(const ns_log_level *)pb;
    }
    return false;
}

/* Moves one runtime setting from fresh to live; a string is swapped, so
 * fresh frees the old one. */
static void take_value(ns_config *live, ns_config *fresh, const setting *s)
{
    char *pl = (char *)live + s->offset, *pf = (char *)fresh + s->offset;
    switch (s->type) {
    case T_HOSTPORT:
    case T_HTTP_LISTEN:
        break; /* the listening addresses are never runtime settings */
    case T_PATH:
    case T_SECRET_STRING: {
        char *tmp = *(char **)pl;
        *(char **)pl = *(char **)pf;
        *(char **)pf = tmp;
        break;
    }
    case T_BOOL:
        *(bool *)pl = *(bool *)pf;
        break;
    case T_U32:
        *(uint32_t *)pl = *(uint32_t *)pf;
        break;
    case T_LOG_LEVEL:
        *(ns_log_level *)pl = *(ns_log_level *)pf;
        break;
    }
}

int ns_config_update(ns_config *live, ns_config *fresh, ns_config_change_fn report, void *ud)
{
    int changed = 0;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        if (same_value(live, fresh, s))
            continue;
        changed++;
        bool applied = is_runtime(s->key) && s->type != T_HOSTPORT;
        if (report) {
            char old_buf[300], new_buf[300];
            report(ud, s->key, value_text(live, s, old_buf, sizeof(old_buf)),
                   value_text(fresh, s, new_buf, sizeof(new_buf)), applied);
        }
        if (applied)
            take_value(live, fresh, s);
    }
    return changed;
}
