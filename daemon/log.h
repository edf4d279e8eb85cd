/* Structured logs to stderr, one line per event, logfmt:
 *   ts=2026-11-24T03:10:58.123Z level=info session=7f3a principal=… msg="…" key=value…
 * When stderr is the systemd journal, the same line without ts= and with a
 * syslog priority prefix, which the journal turns into the entry's priority
 * (and strips) and stamps with its own time:
 *   <6>level=info session=7f3a principal=… msg="…"
 * Never pass secrets (keys, connection strings with passwords) to these. */
#ifndef NS_LOG_H
#define NS_LOG_H

#include <stdbool.h>

typedef enum { NS_LOG_DEBUG = 0, NS_LOG_INFO, NS_LOG_WARN, NS_LOG_ERROR } ns_log_level;

void ns_log_set_level(ns_log_level level);
ns_log_level ns_log_get_level(void);
/* "debug", "info", "warn", "error". Returns 0 or -1. */
int ns_log_parse_level(const char *s, ns_log_level *out);

/* Whether stderr is a stream to the journal: systemd sets JOURNAL_STREAM
 * to "DEVICE:INODE" of the stream it connects a unit's stderr to, and a
 * stderr that is still that stream has the same device and inode (a child
 * whose stderr a shell redirected elsewhere inherits the variable but not
 * the stream). */
bool ns_log_stderr_is_journal(void);
/* Journal format (true) or the plain one with timestamps (false, the
 * default). main() sets it from ns_log_stderr_is_journal(). */
void ns_log_set_journal(bool on);

/* session and principal may be NULL. fmt is the message text. */
void ns_log(ns_log_level level, const char *session, const char *principal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define ns_log_info(...)  ns_log(NS_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define ns_log_warn(...)  ns_log(NS_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define ns_log_error(...) ns_log(NS_LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
