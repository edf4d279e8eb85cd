/* napsyncd's settings: defaults, then the configuration file, then
 * command-line flags (--some-key VALUE sets some_key). One setter serves
 * both, so a setting means the same wherever it comes from. */
#ifndef NS_CONFIG_H
#define NS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct {
    char listen_host[256];
    uint16_t listen_port;
    char *tls_cert; /* server certificate chain (PEM) */
    char *tls_key;  /* its private key */
    char *tls_ca;   /* CA that device certificates must chain to */
    char *database; /* libpq connection string; may hold a password: never logged */
    char *sql_dir;  /* migrations */
    bool migrate_on_start;
    uint32_t db_pool_size;
    uint32_t db_queue_timeout_ms;
    uint32_t max_frame_size;
    uint32_t max_sessions;
    uint32_t handshake_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t shutdown_timeout_ms;
    ns_log_level log_level;
} ns_config;

/* Fills in the defaults. Free with ns_config_free. */
void ns_config_init(ns_config *cfg);
void ns_config_free(ns_config *cfg);

/* Sets one setting by its file name ("max_frame_size"). Returns 0, or -1
 * with a message naming the setting and what it accepts. */
__attribute__((warn_unused_result)) int ns_config_set(ns_config *cfg, const char *key,
                                                      const char *value, char *err, size_t errlen);
__attribute__((warn_unused_result)) int ns_config_load_file(ns_config *cfg, const char *path,
                                                            char *err, size_t errlen);
/* Checks that what is required is there. Returns 0 or -1 with a message. */
__attribute__((warn_unused_result)) int ns_config_validate(const ns_config *cfg, char *err,
                                                           size_t errlen);

/* For --help: each setting with its default and meaning, one per line. */
void ns_config_print_help(void);

#endif
