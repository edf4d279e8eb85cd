#include "conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static int is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* Parses one line in place. Returns 1 for a setting, 0 for nothing, -1 on error. */
static int parse_line(char *line, char **key, char **value, char *err, size_t errlen)
{
    char *p = line;
    while (is_space(*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    *key = p;
    while (is_key_char(*p))
        p++;
    char *key_end = p;
    while (is_space(*p))
        p++;
    if (key_end == *key) {
        snprintf(err, errlen, "expected a setting name (lowercase letters, digits, '_')");
        return -1;
    }
    if (*p != '=') {
        snprintf(err, errlen, "expected '=' after '%.*s'", (int)(key_end - *key), *key);
        return -1;
    }
    *key_end = '\0';
    p++;
    while (is_space(*p))
        p++;
    char *end = p + strlen(p);
    while (end > p && is_space(end[-1]))
        end--;
    *end = '\0';
    if (*p == '"') {
        if (end - p < 2 || end[-1] != '"') {
            snprintf(err, errlen, "unterminated quoted value for '%.64s'", *key);
            return -1;
        }
        end[-1] = '\0';
        p++;
        if (strchr(p, '"')) {
            snprintf(err, errlen, "stray '\"' in the value of '%.64s'", *key);
            return -1;
        }
    }
    *value = p;
    return 1;
}

int ns_conf_parse_buffer(const char *buf, size_t len, const char *name, ns_conf_fn fn, void *ud,
                         char *err, size_t errlen)
{
    if (len > NS_CONF_MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %d bytes", name, NS_CONF_MAX_FILE);
        return -1;
    }
    char line[NS_CONF_MAX_LINE + 1];
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        if (ll > NS_CONF_MAX_LINE) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes", name, lineno,
                     NS_CONF_MAX_LINE);
            return -1;
        }
        if (memchr(buf + pos, '\0', ll)) {
            snprintf(err, errlen, "%s:%d: NUL byte in line", name, lineno);
            return -1;
        }
        memcpy(line, buf + pos, ll);
        line[ll] = '\0';
        pos += ll + (nl ? 1 : 0);
        char *key, *value;
        char why[512] = "";
        int r = parse_line(line, &key, &value, why, sizeof(why));
        if (r == 1 && fn(ud, key, value, why, sizeof(why)) != 0)
            r = -1;
        if (r < 0) {
            snprintf(err, errlen, "%s:%d: %s", name, lineno, why[0] ? why : "invalid setting");
            return -1;
        }
    }
    return 0;
}

int ns_conf_parse_file(const char *path, ns_conf_fn fn, void *ud, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(NS_CONF_MAX_FILE + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    size_t n = fread(buf, 1, NS_CONF_MAX_FILE + 1, f);
    int rd_err = ferror(f);
    fclose(f);
    int rc;
    if (rd_err) {
        snprintf(err, errlen, "cannot read %s", path);
        rc = -1;
    } else {
        rc = ns_conf_parse_buffer(buf, n, path, fn, ud, err, errlen);
    }
    free(buf);
    return rc;
}

int ns_conf_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int ns_conf_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int ns_conf_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;
    const char *hstart = s;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hstart = s + 1;
        hlen = (size_t)(close - hstart);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen))
            return -1; /* a bare IPv6 address needs brackets */
    }
    if (hlen == 0 || hlen >= hostlen)
        return -1;
    uint64_t p;
    if (ns_conf_uint(colon + 1, 1, 65535, &p) != 0)
        return -1;
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}
