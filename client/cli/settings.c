#include "settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

static const ns_setting_info infos[NS_SETTING_COUNT] = {
    [NS_SETTING_SERVER] = {"--server", "NAPSYNC_SERVER", "server", "HOST:PORT",
                           "the napsync server, e.g. napsync.example.org:7443"},
    [NS_SETTING_CA] = {"--ca", "NAPSYNC_CA", "ca", "FILE",
                       "the CA that issued the server's certificate (PEM)"},
    [NS_SETTING_CERT] = {"--cert", "NAPSYNC_CERT", "cert", "FILE",
                         "this device's certificate (PEM)"},
    [NS_SETTING_KEY] = {"--key", "NAPSYNC_KEY", "key", "FILE", "this device's private key (PEM)"},
    [NS_SETTING_STORE] = {"--store", "NAPSYNC_STORE", "store", "FILE",
                          "this device's local store (used by later commands)"},
    [NS_SETTING_TIMEOUT] = {"--timeout", NULL, "timeout_ms", "MS",
                            "connect and request timeout in milliseconds (default 10000)"},
};

const ns_setting_info *ns_settings_info(ns_setting_id id)
{
    return id < NS_SETTING_COUNT ? &infos[id] : NULL;
}

static bool is_path(ns_setting_id id)
{
    return id == NS_SETTING_CA || id == NS_SETTING_CERT || id == NS_SETTING_KEY ||
           id == NS_SETTING_STORE;
}

static bool printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* Checks value for setting id and stores it. base_dir (may be NULL) is
 * where a relative path from a config file is taken from. Messages are
 * written without the origin when from_file: the parser adds file:line. */
static int store(ns_setting *dst, ns_setting_id id, const char *value, const char *origin,
                 const char *base_dir, bool from_file, char *err, size_t errlen)
{
    const char *who = from_file ? infos[id].key : origin;
    if (value[0] == '\0') {
        snprintf(err, errlen, "%s: empty value", who);
        return -1;
    }
    size_t len = strlen(value);
    if (len >= NS_SETTINGS_MAX_VALUE) {
        snprintf(err, errlen, "%s: longer than %d bytes", who, NS_SETTINGS_MAX_VALUE - 1);
        return -1;
    }
    if (!printable(value)) {
        snprintf(err, errlen, "%s: contains a control character", who);
        return -1;
    }
    if (id == NS_SETTING_SERVER) {
        char host[256];
        uint16_t port;
        if (ns_conf_hostport(value, host, sizeof(host), &port) != 0) {
            snprintf(err, errlen,
                     "%s: \"%s\" is not HOST:PORT (e.g. napsync.example.org:7443 or "
                     "[2001:db8::1]:7443; port 1-65535)",
                     who, value);
            return -1;
        }
    }
    if (id == NS_SETTING_TIMEOUT) {
        uint64_t v;
        if (ns_conf_uint(value, 1, NS_SETTINGS_MAX_TIMEOUT_MS, &v) != 0) {
            snprintf(err, errlen, "%s: \"%s\" is not a number of milliseconds from 1 to %u", who,
                     value, NS_SETTINGS_MAX_TIMEOUT_MS);
            return -1;
        }
    }
    if (is_path(id) && base_dir && value[0] != '/') {
        int n = snprintf(dst->value, sizeof(dst->value), "%s/%s", base_dir, value);
        if (n < 0 || (size_t)n >= sizeof(dst->value)) {
            snprintf(err, errlen, "%s: the path is longer than %d bytes", who,
                     NS_SETTINGS_MAX_VALUE - 1);
            return -1;
        }
    } else {
        memcpy(dst->value, value, len + 1);
    }
    snprintf(dst->origin, sizeof(dst->origin), "%s", origin);
    dst->set = true;
    return 0;
}

typedef struct {
    ns_settings *out;
    const char *path;
    char dir[NS_SETTINGS_MAX_VALUE];
    bool has_dir;
    bool seen[NS_SETTING_COUNT];
} file_ctx;

static int on_file_setting(void *ud, const char *key, const char *value, char *err, size_t errlen)
{
    file_ctx *f = ud;
    for (int i = 0; i < NS_SETTING_COUNT; i++) {
        if (strcmp(key, infos[i].key) != 0)
            continue;
        if (f->seen[i]) {
            snprintf(err, errlen, "\"%s\" is set twice", key);
            return -1;
        }
        f->seen[i] = true;
        return store(&f->out->s[i], (ns_setting_id)i, value, f->path, f->has_dir ? f->dir : NULL,
                     true, err, errlen);
    }
    snprintf(err, errlen,
             "unknown setting \"%s\" (known: server, ca, cert, key, store, timeout_ms)", key);
    return -1;
}

static int load_file(ns_settings *out, const char *path, const char *origin, char *err,
                     size_t errlen)
{
    if (path[0] == '\0' || strlen(path) >= NS_SETTINGS_MAX_VALUE || !printable(path)) {
        snprintf(err, errlen, "%s: not a usable file name", origin);
        return -1;
    }
    static file_ctx f; /* large; the CLI loads settings once */
    memset(&f, 0, sizeof(f));
    f.out = out;
    f.path = path;
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(f.dir, path, n);
        f.dir[n] = '\0';
        f.has_dir = true;
    }
    char why[NS_SETTINGS_MAX_VALUE + 256];
    if (ns_conf_parse_file(path, on_file_setting, &f, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "config file (%s): %s", origin, why);
        return -1;
    }
    return 0;
}

int ns_settings_load(ns_settings *out, const ns_settings_flags *flags, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *config = flags->config;
    const char *config_origin = NS_SETTINGS_CONFIG_FLAG;
    if (config == NULL) {
        config = getenv(NS_SETTINGS_CONFIG_ENV);
        config_origin = NS_SETTINGS_CONFIG_ENV;
        if (config && config[0] == '\0')
            config = NULL; /* an empty variable is an unset one */
    }
    if (config && load_file(out, config, config_origin, err, errlen) != 0)
        return -1;

    for (int i = 0; i < NS_SETTING_COUNT; i++) {
        const char *env = infos[i].env ? getenv(infos[i].env) : NULL;
        if (env && env[0] &&
            store(&out->s[i], (ns_setting_id)i, env, infos[i].env, NULL, false, err, errlen) != 0)
            return -1;
    }
    for (int i = 0; i < NS_SETTING_COUNT; i++) {
        const char *v = flags->value[i];
        if (v &&
            store(&out->s[i], (ns_setting_id)i, v, infos[i].flag, NULL, false, err, errlen) != 0)
            return -1;
    }

    const ns_setting *cert = &out->s[NS_SETTING_CERT];
    const ns_setting *key = &out->s[NS_SETTING_KEY];
    if (cert->set != key->set) {
        const ns_setting *have = cert->set ? cert : key;
        const ns_setting_info *miss = &infos[cert->set ? NS_SETTING_KEY : NS_SETTING_CERT];
        snprintf(err, errlen,
                 "%s sets the device %s but not its %s: set %s or pass %s (a device "
                 "certificate and its key go together)",
                 have->origin, cert->set ? "certificate" : "key", cert->set ? "key" : "certificate",
                 miss->env, miss->flag);
        return -1;
    }

    out->timeout_ms = NS_SETTINGS_DEFAULT_TIMEOUT_MS;
    if (out->s[NS_SETTING_TIMEOUT].set) {
        uint64_t v = 0;
        if (ns_conf_uint(out->s[NS_SETTING_TIMEOUT].value, 1, NS_SETTINGS_MAX_TIMEOUT_MS, &v) !=
            0) {
            snprintf(err, errlen, "%s: not a number of milliseconds",
                     out->s[NS_SETTING_TIMEOUT].origin);
            return -1;
        }
        out->timeout_ms = (uint32_t)v;
    }
    return 0;
}

const char *ns_settings_get(const ns_settings *s, ns_setting_id id)
{
    return id < NS_SETTING_COUNT && s->s[id].set ? s->s[id].value : NULL;
}

int ns_settings_require(const ns_settings *s, ns_setting_id id, const char *why, char *err,
                        size_t errlen)
{
    if (ns_settings_get(s, id))
        return 0;
    const ns_setting_info *in = &infos[id];
    if (in->env)
        snprintf(err, errlen,
                 "%s: set %s=%s or pass %s %s (or put \"%s = ...\" in the file named by %s)", why,
                 in->env, in->metavar, in->flag, in->metavar, in->key, NS_SETTINGS_CONFIG_ENV);
    else
        snprintf(err, errlen, "%s: pass %s %s (or put \"%s = ...\" in the file named by %s)", why,
                 in->flag, in->metavar, in->key, NS_SETTINGS_CONFIG_ENV);
    return -1;
}
