/* napsyncd's settings: defaults, then the configuration file, then
 * command-line flags (--some-key VALUE sets some_key). One setter serves
 * both, so a setting means the same wherever it comes from. */
#ifndef NS_CONFIG_H
#define NS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

/* Ceilings of settings that modules enforce again on their own. */
#define NS_CONFIG_MAX_PUSH_MUTATIONS 1000u /* = NS_SYNC_MAX_BATCH */
#define NS_CONFIG_MAX_PULL_PAGE_SIZE 5000u /* = NS_FEED_MAX_PAGE_SIZE */

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
    uint32_t max_sessions_per_device; /* by certificate, counted from the TLS handshake on */
    uint32_t handshake_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t max_queued_bytes; /* output waiting for one client before it is read no more */
    uint32_t send_timeout_ms;  /* a client taking none of its waiting output is cut */
    uint32_t max_push_mutations;
    uint32_t max_pull_page_size;
    uint32_t max_subscriptions; /* live subscriptions on the server */
    uint32_t shutdown_timeout_ms;
    ns_log_level log_level;
    /* http_listen: /healthz, /readyz and /metrics (http.h), unless off */
    char http_host[256];
    uint16_t http_port;
    bool http_enabled;
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

/* A setting that differs between the running configuration and one read
 * again (SIGHUP): its name, both values as text (NULL for a secret, which is
 * never shown), and whether it now applies (else it waits for a restart). */
typedef void (*ns_config_change_fn)(void *ud, const char *key, const char *old_value,
                                    const char *new_value, bool applied);

/* For a reload: compares fresh (read again, and validated) with live. The
 * settings that can change while the daemon runs move from fresh to live:
 * the TLS files (for a context the caller loads from them), the log level,
 * and the limits and timeouts given to sessions that start from now on.
 * The others (the listening address, the database, the pool, migrations)
 * stay, and take effect at the next start. report (may be NULL) hears of
 * each difference. Returns how many settings differ. fresh keeps what live
 * gave up: the caller frees it with ns_config_free. */
int ns_config_update(ns_config *live, ns_config *fresh, ns_config_change_fn report, void *ud);

#endif
