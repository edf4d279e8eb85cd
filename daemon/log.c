#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static ns_log_level min_level = NS_LOG_INFO;
static bool journal;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
/* syslog(3) priorities: LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR. */
static const int level_priorities[] = {7, 6, 4, 3};

void ns_log_set_level(ns_log_level level)
{
    min_level = level;
}

ns_log_level ns_log_get_level(void)
{
    return min_level;
}

int ns_log_parse_level(const char *s, ns_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (ns_log_level)i;
            return 0;
        }
    }
    return -1;
}

/* A decimal number of digits only, up to the byte stop. */
static bool parse_number(const char *s, char stop, uintmax_t *out, const char **end)
{
    if (*s < '0' || *s > '9')
        return false;
    char *e;
    *out = strtoumax(s, &e, 10);
    *end = e;
    return *e == stop;
}

bool ns_log_stderr_is_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    uintmax_t dev, ino;
    const char *end;
    if (v == NULL || !parse_number(v, ':', &dev, &end) || !parse_number(end + 1, '\0', &ino, &end))
        return false;
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void ns_log_set_journal(bool on)
{
    journal = on;
}

/* Quotes a logfmt value: the message may come from a peer, so every byte
 * that could forge a field or a line is escaped. */
static size_t quote(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    if (cap < 3)
        return 0;
    out[n++] = '"';
    for (; *s && n + 6 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

void ns_log(ns_log_level level, const char *session, const char *principal, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    char line[2600];
    size_t n;
    if (journal) {
        /* The journal keeps its own, more precise, timestamp per entry. */
        n = (size_t)snprintf(line, sizeof(line), "<%d>level=%s", level_priorities[level],
                             level_names[level]);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[40];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        n = (size_t)snprintf(line, sizeof(line), "ts=%s.%03ldZ level=%s", when,
                             ts.tv_nsec / 1000000, level_names[level]);
    }
    if (session && n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, " session=%s", session);
    if (principal && n < sizeof(line)) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, " principal=");
        if (n < sizeof(line))
            n += quote(line + n, sizeof(line) - n, principal);
    }
    if (n + 5 < sizeof(line)) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, " msg=");
        n += quote(line + n, sizeof(line) - n, msg);
    }
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line so lines from a supervisor's pipe never interleave. */
    fwrite(line, 1, n, stderr);
    fflush(stderr);
}
