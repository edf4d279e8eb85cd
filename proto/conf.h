/* The "key = value" configuration format shared by napsyncd.conf and the
 * client's NAPSYNC_CONFIG file, and the value parsers both need.
 *
 * One setting per line; blank lines and lines starting with '#' are ignored;
 * whitespace around key and value is dropped; a value may be wrapped in
 * double quotes to keep leading or trailing spaces. Keys are [a-z0-9_]. */
#ifndef NS_CONF_H
#define NS_CONF_H

#include <stddef.h>
#include <stdint.h>

#define NS_CONF_MAX_FILE (1024 * 1024)
#define NS_CONF_MAX_LINE 4096

/* Called once per setting; returns 0, or -1 after writing a message to err
 * (the parser prefixes it with "file:line: "). */
typedef int (*ns_conf_fn)(void *ud, const char *key, const char *value, char *err, size_t errlen);

/* Returns 0, or -1 with a message naming the file and line in err. */
__attribute__((warn_unused_result)) int ns_conf_parse_buffer(const char *buf, size_t len,
                                                             const char *name, ns_conf_fn fn,
                                                             void *ud, char *err, size_t errlen);
__attribute__((warn_unused_result)) int ns_conf_parse_file(const char *path, ns_conf_fn fn,
                                                           void *ud, char *err, size_t errlen);

/* Decimal integer in [min, max], no sign, no trailing junk. */
__attribute__((warn_unused_result)) int ns_conf_uint(const char *s, uint64_t min, uint64_t max,
                                                     uint64_t *out);
/* true/false, yes/no, on/off, 1/0. */
__attribute__((warn_unused_result)) int ns_conf_bool(const char *s, int *out);
/* "host:port", "[v6addr]:port"; host non-empty, port 1..65535. */
__attribute__((warn_unused_result)) int ns_conf_hostport(const char *s, char *host, size_t hostlen,
                                                         uint16_t *port);

#endif
