/* The napsync CLI's connection settings and where each came from.
 *
 * Precedence: command-line flags, then the environment (NAPSYNC_SERVER,
 * NAPSYNC_CA, ...), then the config file named by --config or
 * NAPSYNC_CONFIG ("key = value", see proto/conf.h). Every value is checked
 * here (length, printable text, numbers, host:port), so an error names the
 * flag, variable or file:line it came from. */
#ifndef NS_SETTINGS_H
#define NS_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest value of any setting, paths included. */
#define NS_SETTINGS_MAX_VALUE          4096
#define NS_SETTINGS_DEFAULT_TIMEOUT_MS 10000u
#define NS_SETTINGS_MAX_TIMEOUT_MS     3600000u

typedef enum {
    NS_SETTING_SERVER,
    NS_SETTING_CA,
    NS_SETTING_CERT,
    NS_SETTING_KEY,
    NS_SETTING_STORE,
    NS_SETTING_TIMEOUT,
    NS_SETTING_COUNT
} ns_setting_id;

typedef struct {
    const char *flag;    /* "--server" */
    const char *env;     /* "NAPSYNC_SERVER", or NULL if none */
    const char *key;     /* "server" in the config file */
    const char *metavar; /* "HOST:PORT" */
    const char *help;
} ns_setting_info;

typedef struct {
    bool set;
    char value[NS_SETTINGS_MAX_VALUE];
    char origin[NS_SETTINGS_MAX_VALUE + 16]; /* "--ca", "NAPSYNC_CA" or "FILE:LINE" */
} ns_setting;

typedef struct {
    ns_setting s[NS_SETTING_COUNT];
    uint32_t timeout_ms;
} ns_settings;

/* Values given on the command line; NULL where a flag was not given. */
typedef struct {
    const char *value[NS_SETTING_COUNT];
    const char *config; /* --config */
} ns_settings_flags;

const ns_setting_info *ns_settings_info(ns_setting_id id);

/* The flag that names the config file, and its environment variable. */
#define NS_SETTINGS_CONFIG_FLAG "--config"
#define NS_SETTINGS_CONFIG_ENV  "NAPSYNC_CONFIG"

/* Fills *out from flags, environment and config file. Returns 0, or -1
 * with a message naming the source at fault in err. */
__attribute__((warn_unused_result)) int
ns_settings_load(ns_settings *out, const ns_settings_flags *flags, char *err, size_t errlen);

/* The value, or NULL when no source set it. */
const char *ns_settings_get(const ns_settings *s, ns_setting_id id);

/* Returns 0 if the setting has a value, else -1 with a message saying which
 * flag, variable or config key to set. */
__attribute__((warn_unused_result)) int ns_settings_require(const ns_settings *s, ns_setting_id id,
                                                            const char *why, char *err,
                                                            size_t errlen);

#endif
