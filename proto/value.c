/* Typed field values: parsing, validation, canonical forms (value.h).
 * Only libc: the same code runs in the daemon and the client, and every
 * check here guards data that arrives from a network or a command line. */
#include "value.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers --------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static ns_value_status
fail(ns_value_status st, char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ASCII only: strcasecmp follows the locale, and a literal keyword must not. */
static bool ascii_caseeq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a - 'A' + 'a') : *a;
        char y = (*b >= 'A' && *b <= 'Z') ? (char)(*b - 'A' + 'a') : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static uint32_t text_max(const ns_field_type *t)
{
    return t->max_bytes ? t->max_bytes : NS_TEXT_DEFAULT_MAX;
}

static uint32_t item_max(const ns_field_type *t)
{
    return t->max_bytes ? t->max_bytes : NS_SET_ITEM_DEFAULT_MAX;
}

static uint32_t items_max(const ns_field_type *t)
{
    return t->max_items ? t->max_items : NS_SET_DEFAULT_MAX_ITEMS;
}

/* ---- UTF-8 ------------------------------------------------------------------- */

/* Checks len bytes of UTF-8. Text may hold \t \n \r (multi-line narratives);
 * set items are one-line labels and hold no control character at all, and
 * no ',' (the separator of the text form). */
static ns_value_status utf8_check(const char *s, size_t len, bool set_item, char *err,
                                  size_t errlen)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (n < len) {
        unsigned char c = p[n];
        if (c < 0x80) {
            bool ws = c == '\t' || c == '\n' || c == '\r';
            if (c < 0x20 && !(ws && !set_item))
                return fail(NS_VALUE_INVALID, err, errlen, "control character at byte %zu", n);
            if (c == 0x7f)
                return fail(NS_VALUE_INVALID, err, errlen, "control character at byte %zu", n);
            if (c == ',' && set_item)
                return fail(NS_VALUE_INVALID, err, errlen, "',' inside a set item");
            n++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            extra = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return fail(NS_VALUE_INVALID, err, errlen, "invalid UTF-8 at byte %zu", n);
        }
        if (len - n <= extra)
            return fail(NS_VALUE_INVALID, err, errlen, "truncated UTF-8 at byte %zu", n);
        for (size_t i = 1; i <= extra; i++) {
            if ((p[n + i] & 0xc0) != 0x80)
                return fail(NS_VALUE_INVALID, err, errlen, "invalid UTF-8 at byte %zu", n);
            cp = (cp << 6) | (p[n + i] & 0x3f);
        }
        static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return fail(NS_VALUE_INVALID, err, errlen, "invalid UTF-8 at byte %zu", n);
        /* C1 controls: U+009B is an 8-bit CSI that terminals obey like ESC [. */
        if (cp <= 0x9f)
            return fail(NS_VALUE_INVALID, err, errlen, "control character at byte %zu", n);
        n += extra + 1;
    }
    return NS_VALUE_OK;
}

static ns_value_status text_check(const ns_field_type *t, const char *s, char *err, size_t errlen)
{
    size_t len = strlen(s);
    uint32_t max = text_max(t);
    ns_value_status st = utf8_check(s, len, false, err, errlen);
    if (st != NS_VALUE_OK)
        return st;
    if (len > max)
        return fail(NS_VALUE_TOO_LONG, err, errlen, "text longer than %" PRIu32 " bytes", max);
    return NS_VALUE_OK;
}

static ns_value_status item_check(const ns_field_type *t, const char *s, size_t len, char *err,
                                  size_t errlen)
{
    uint32_t max = item_max(t);
    ns_value_status st = utf8_check(s, len, true, err, errlen);
    if (st != NS_VALUE_OK)
        return st;
    if (len > max)
        return fail(NS_VALUE_TOO_LONG, err, errlen, "set item longer than %" PRIu32 " bytes", max);
    return NS_VALUE_OK;
}

/* ---- scalars ---------------------------------------------------------------------- */

static ns_value_status int_parse(const char *s, int64_t *out, char *err, size_t errlen)
{
    const char *p = s;
    bool neg = false;
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
    }
    if (!is_digit(*p))
        return fail(NS_VALUE_INVALID, err, errlen, "not an integer");
    /* The magnitude of INT64_MIN is one more than INT64_MAX. */
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    uint64_t acc = 0;
    for (; is_digit(*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (acc > (limit - d) / 10u)
            return fail(NS_VALUE_INVALID, err, errlen, "integer out of range");
        acc = acc * 10u + d;
    }
    if (*p != '\0')
        return fail(NS_VALUE_INVALID, err, errlen, "not an integer");
    if (neg)
        *out = acc == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)acc;
    else
        *out = (int64_t)acc;
    return NS_VALUE_OK;
}

/* Canonicalises the decimal in into out (out may be in: the canonical form
 * is never longer, and each part moves only towards the start). */
static ns_value_status decimal_canon(const char *in, char *out, char *err, size_t errlen)
{
    const char *p = in;
    bool neg = false;
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
    }
    const char *ip = p;
    while (is_digit(*p))
        p++;
    size_t ilen = (size_t)(p - ip);
    if (ilen == 0)
        return fail(NS_VALUE_INVALID, err, errlen, "not a decimal number");
    const char *fp = NULL;
    size_t flen = 0;
    if (*p == '.') {
        fp = ++p;
        while (is_digit(*p))
            p++;
        flen = (size_t)(p - fp);
        if (flen == 0)
            return fail(NS_VALUE_INVALID, err, errlen, "not a decimal number (digits after '.')");
    }
    if (*p != '\0')
        return fail(NS_VALUE_INVALID, err, errlen, "not a decimal number");
    while (ilen > 0 && *ip == '0') {
        ip++;
        ilen--;
    }
    while (flen > 0 && fp[flen - 1] == '0')
        flen--;
    if (ilen + flen > NS_DECIMAL_MAX_DIGITS)
        return fail(NS_VALUE_TOO_LONG, err, errlen, "decimal with more than %u digits",
                    NS_DECIMAL_MAX_DIGITS);
    size_t o = 0;
    if (neg && (ilen > 0 || flen > 0))
        out[o++] = '-';
    if (ilen == 0) {
        out[o++] = '0';
    } else {
        memmove(out + o, ip, ilen);
        o += ilen;
    }
    if (flen > 0) {
        out[o++] = '.';
        memmove(out + o, fp, flen);
        o += flen;
    }
    out[o] = '\0';
    return NS_VALUE_OK;
}

static bool leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static ns_value_status date_check(const char *s, char *err, size_t errlen)
{
    static const char shape[] = "dddd-dd-dd";
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        bool ok = shape[i] == 'd' ? is_digit(s[i]) : s[i] == '-';
        if (!ok)
            return fail(NS_VALUE_INVALID, err, errlen, "not a date (YYYY-MM-DD)");
    }
    if (s[sizeof(shape) - 1] != '\0')
        return fail(NS_VALUE_INVALID, err, errlen, "not a date (YYYY-MM-DD)");
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    int d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 1000)
        return fail(NS_VALUE_INVALID, err, errlen, "year outside 1000-9999");
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12)
        return fail(NS_VALUE_INVALID, err, errlen, "no such month");
    int last = mdays[m - 1] + (m == 2 && leap_year(y) ? 1 : 0);
    if (d < 1 || d > last)
        return fail(NS_VALUE_INVALID, err, errlen, "no such day in that month");
    return NS_VALUE_OK;
}

bool ns_uuid_canon(const char *s, char out[NS_UUID_SIZE])
{
    if (s == NULL)
        return false;
    for (size_t i = 0; i < NS_UUID_SIZE - 1; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : hex_value(s[i]) < 0)
            return false; /* the terminator too: the string is short */
    }
    if (s[NS_UUID_SIZE - 1] != '\0')
        return false;
    for (size_t i = 0; i < NS_UUID_SIZE; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
    return true;
}

/* Validates a UUID in any hex case and writes it lowercase into out (may be s). */
static ns_value_status uuid_canon(const char *s, char *out, char *err, size_t errlen)
{
    if (!ns_uuid_canon(s, out))
        return fail(NS_VALUE_INVALID, err, errlen, "not a UUID");
    return NS_VALUE_OK;
}

/* ---- sets ---------------------------------------------------------------------------- */

static int item_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Index where item belongs in the sorted items[0..n); *found if present. */
static size_t item_find(char *const *items, size_t n, const char *item, size_t len, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(items[mid], item, len);
        if (c == 0 && items[mid][len] != '\0')
            c = 1; /* items[mid] has item as a proper prefix: it sorts after */
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void set_free_items(char **items, size_t n)
{
    if (items == NULL)
        return; /* a malformed set from the wire may claim n items without them */
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

/* Builds the canonical set from its text form. Items are inserted in order
 * as they are read, so the item limit is enforced before more memory than
 * max_items items is ever held. */
static ns_value_status set_parse(const ns_field_type *t, const char *text, ns_value *out, char *err,
                                 size_t errlen)
{
    uint32_t maxn = items_max(t);
    char **items = NULL;
    size_t n = 0, cap = 0;
    ns_value_status st = NS_VALUE_OK;
    const char *p = text;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *a = p;
        while (len > 0 && *a == ' ') {
            a++;
            len--;
        }
        while (len > 0 && a[len - 1] == ' ')
            len--;
        if (len > 0) {
            st = item_check(t, a, len, err, errlen);
            if (st != NS_VALUE_OK)
                goto fail;
            bool found;
            size_t at = item_find(items, n, a, len, &found);
            if (!found) {
                if (n >= maxn) {
                    st = fail(NS_VALUE_TOO_LONG, err, errlen, "more than %" PRIu32 " set items",
                              maxn);
                    goto fail;
                }
                if (n == cap) {
                    size_t ncap = cap ? cap * 2 : 8;
                    char **grown = realloc(items, ncap * sizeof(*items));
                    if (grown == NULL)
                        goto nomem;
                    items = grown;
                    cap = ncap;
                }
                char *copy = dup_n(a, len);
                if (copy == NULL)
                    goto nomem;
                memmove(items + at + 1, items + at, (n - at) * sizeof(*items));
                items[at] = copy;
                n++;
            }
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    out->kind = NS_KIND_TEXT_SET;
    out->is_null = false;
    out->u.set.items = items;
    out->u.set.n = n;
    return NS_VALUE_OK;
nomem:
    st = fail(NS_VALUE_NOMEM, err, errlen, "out of memory");
fail:
    set_free_items(items, n);
    return st;
}

/* Canonicalises a set built elsewhere, in place: trims items, drops empty
 * ones, validates, sorts, removes duplicates. Never allocates. */
static ns_value_status set_check(const ns_field_type *t, ns_value *v, char *err, size_t errlen)
{
    char **items = v->u.set.items;
    size_t n = v->u.set.n;
    if (n > 0 && items == NULL)
        return fail(NS_VALUE_INVALID, err, errlen, "set without items");
    for (size_t i = 0; i < n; i++) {
        if (items[i] == NULL)
            return fail(NS_VALUE_INVALID, err, errlen, "set item missing");
    }
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char *it = items[i];
        size_t len = strlen(it);
        size_t a = 0;
        while (a < len && it[a] == ' ')
            a++;
        while (len > a && it[len - 1] == ' ')
            len--;
        if (len == a) {
            free(it);
            continue;
        }
        memmove(it, it + a, len - a);
        it[len - a] = '\0';
        items[w++] = it;
    }
    v->u.set.n = n = w;
    for (size_t i = 0; i < n; i++) {
        ns_value_status st = item_check(t, items[i], strlen(items[i]), err, errlen);
        if (st != NS_VALUE_OK)
            return st;
    }
    if (n > 1)
        qsort(items, n, sizeof(*items), item_cmp);
    w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && strcmp(items[w - 1], items[i]) == 0) {
            free(items[i]);
            continue;
        }
        items[w++] = items[i];
    }
    v->u.set.n = n = w;
    uint32_t maxn = items_max(t);
    if (n > maxn)
        return fail(NS_VALUE_TOO_LONG, err, errlen, "more than %" PRIu32 " set items", maxn);
    return NS_VALUE_OK;
}

/* ---- public ----------------------------------------------------------------------- */

void ns_value_init_null(ns_value *v, ns_kind kind)
{
    memset(v, 0, sizeof(*v));
    v->kind = kind;
    v->is_null = true;
}

static bool kind_has_string(ns_kind k)
{
    return k == NS_KIND_DECIMAL || k == NS_KIND_TEXT || k == NS_KIND_DATE || k == NS_KIND_REF;
}

void ns_value_free(ns_value *v)
{
    if (v == NULL)
        return;
    if (kind_has_string(v->kind))
        free(v->u.s);
    else if (v->kind == NS_KIND_TEXT_SET)
        set_free_items(v->u.set.items, v->u.set.n);
    ns_value_init_null(v, v->kind);
}

ns_value_status ns_value_copy(ns_value *dst, const ns_value *src)
{
    ns_value_init_null(dst, src->kind);
    if (src->is_null)
        return NS_VALUE_OK;
    if (kind_has_string(src->kind)) {
        if (src->u.s == NULL)
            return NS_VALUE_INVALID;
        char *s = dup_n(src->u.s, strlen(src->u.s));
        if (s == NULL)
            return NS_VALUE_NOMEM;
        dst->u.s = s;
    } else if (src->kind == NS_KIND_TEXT_SET) {
        size_t n = src->u.set.n;
        char **items = NULL;
        if (n > 0) {
            if (src->u.set.items == NULL)
                return NS_VALUE_INVALID;
            items = calloc(n, sizeof(*items));
            if (items == NULL)
                return NS_VALUE_NOMEM;
            for (size_t i = 0; i < n; i++) {
                const char *it = src->u.set.items[i];
                items[i] = it ? dup_n(it, strlen(it)) : NULL;
                if (items[i] == NULL) {
                    set_free_items(items, i);
                    return it ? NS_VALUE_NOMEM : NS_VALUE_INVALID;
                }
            }
        }
        dst->u.set.items = items;
        dst->u.set.n = n;
    } else {
        dst->u = src->u;
    }
    dst->is_null = false;
    return NS_VALUE_OK;
}

ns_value_status ns_value_parse(const ns_field_type *t, const char *text, ns_value *out, char *err,
                               size_t errlen)
{
    ns_value_init_null(out, t->kind);
    bool null = text == NULL || (t->kind != NS_KIND_TEXT && ascii_caseeq(text, "null"));
    if (null) {
        if (!t->nullable)
            return fail(NS_VALUE_NULL_NOT_ALLOWED, err, errlen, "null not allowed");
        return NS_VALUE_OK;
    }
    ns_value_status st = NS_VALUE_OK;
    char *s = NULL;
    switch (t->kind) {
    case NS_KIND_BOOL:
        if (ascii_caseeq(text, "true"))
            out->u.b = true;
        else if (ascii_caseeq(text, "false"))
            out->u.b = false;
        else
            return fail(NS_VALUE_INVALID, err, errlen, "not a boolean (true or false)");
        break;
    case NS_KIND_INT:
        st = int_parse(text, &out->u.i, err, errlen);
        if (st != NS_VALUE_OK)
            return st;
        break;
    case NS_KIND_DECIMAL:
    case NS_KIND_DATE:
    case NS_KIND_REF:
    case NS_KIND_TEXT:
        /* Checked before the copy, so refused input never costs memory. */
        if (t->kind == NS_KIND_DATE)
            st = date_check(text, err, errlen);
        else if (t->kind == NS_KIND_TEXT)
            st = text_check(t, text, err, errlen);
        if (st != NS_VALUE_OK)
            return st;
        s = dup_n(text, strlen(text));
        if (s == NULL)
            return fail(NS_VALUE_NOMEM, err, errlen, "out of memory");
        if (t->kind == NS_KIND_DECIMAL)
            st = decimal_canon(s, s, err, errlen);
        else if (t->kind == NS_KIND_REF)
            st = uuid_canon(s, s, err, errlen);
        if (st != NS_VALUE_OK) {
            free(s);
            return st;
        }
        out->u.s = s;
        break;
    case NS_KIND_TEXT_SET:
        st = set_parse(t, text, out, err, errlen);
        if (st != NS_VALUE_OK) {
            ns_value_init_null(out, t->kind);
            return st;
        }
        break;
    default:
        return fail(NS_VALUE_INVALID, err, errlen, "unknown kind");
    }
    out->is_null = false;
    return NS_VALUE_OK;
}

ns_value_status ns_value_check(const ns_field_type *t, ns_value *v, char *err, size_t errlen)
{
    if (v->kind != t->kind)
        return fail(NS_VALUE_INVALID, err, errlen, "%s where %s expected", ns_kind_name(v->kind),
                    ns_kind_name(t->kind));
    if (v->is_null) {
        /* A null carries no payload; drop one a sender left behind. */
        ns_value_free(v);
        if (!t->nullable)
            return fail(NS_VALUE_NULL_NOT_ALLOWED, err, errlen, "null not allowed");
        return NS_VALUE_OK;
    }
    if (kind_has_string(t->kind) && v->u.s == NULL)
        return fail(NS_VALUE_INVALID, err, errlen, "%s without a value", ns_kind_name(t->kind));
    switch (t->kind) {
    case NS_KIND_BOOL:
    case NS_KIND_INT:
        return NS_VALUE_OK;
    case NS_KIND_DECIMAL:
        return decimal_canon(v->u.s, v->u.s, err, errlen);
    case NS_KIND_DATE:
        return date_check(v->u.s, err, errlen);
    case NS_KIND_REF:
        return uuid_canon(v->u.s, v->u.s, err, errlen);
    case NS_KIND_TEXT:
        return text_check(t, v->u.s, err, errlen);
    case NS_KIND_TEXT_SET:
        return set_check(t, v, err, errlen);
    default:
        return fail(NS_VALUE_INVALID, err, errlen, "unknown kind");
    }
}

bool ns_value_equal(const ns_value *a, const ns_value *b)
{
    if (a->is_null || b->is_null)
        return a->is_null && b->is_null;
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case NS_KIND_BOOL:
        return a->u.b == b->u.b;
    case NS_KIND_INT:
        return a->u.i == b->u.i;
    case NS_KIND_DECIMAL:
    case NS_KIND_TEXT:
    case NS_KIND_DATE:
    case NS_KIND_REF:
        if (a->u.s == NULL || b->u.s == NULL)
            return a->u.s == b->u.s;
        return strcmp(a->u.s, b->u.s) == 0;
    case NS_KIND_TEXT_SET:
        if (a->u.set.n != b->u.set.n)
            return false;
        for (size_t i = 0; i < a->u.set.n; i++) {
            if (strcmp(a->u.set.items[i], b->u.set.items[i]) != 0)
                return false;
        }
        return true;
    default:
        return false;
    }
}

char *ns_value_format(const ns_value *v)
{
    if (v->is_null)
        return dup_n("null", 4);
    switch (v->kind) {
    case NS_KIND_BOOL:
        return v->u.b ? dup_n("true", 4) : dup_n("false", 5);
    case NS_KIND_INT: {
        char buf[24];
        int len = snprintf(buf, sizeof(buf), "%" PRId64, v->u.i);
        return dup_n(buf, (size_t)len);
    }
    case NS_KIND_DECIMAL:
    case NS_KIND_TEXT:
    case NS_KIND_DATE:
    case NS_KIND_REF:
        return v->u.s ? dup_n(v->u.s, strlen(v->u.s)) : NULL;
    case NS_KIND_TEXT_SET: {
        size_t n = v->u.set.n, total = 0;
        for (size_t i = 0; i < n; i++)
            total += strlen(v->u.set.items[i]) + 1;
        /* The set {"null"} would print as the null literal: a trailing ','
         * (an empty item, dropped on parse) keeps it a set. */
        bool guard = n == 1 && ascii_caseeq(v->u.set.items[0], "null");
        char *s = malloc(total + 2);
        if (s == NULL)
            return NULL;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(v->u.set.items[i]);
            if (i > 0)
                s[o++] = ',';
            memcpy(s + o, v->u.set.items[i], len);
            o += len;
        }
        if (guard)
            s[o++] = ',';
        s[o] = '\0';
        return s;
    }
    default:
        return NULL;
    }
}

const char *ns_kind_name(ns_kind k)
{
    switch (k) {
    case NS_KIND_BOOL:
        return "bool";
    case NS_KIND_INT:
        return "integer";
    case NS_KIND_DECIMAL:
        return "decimal";
    case NS_KIND_TEXT:
        return "text";
    case NS_KIND_DATE:
        return "date";
    case NS_KIND_TEXT_SET:
        return "text set";
    case NS_KIND_REF:
        return "reference";
    }
    return "unknown";
}

const char *ns_kind_word(ns_kind k)
{
    switch (k) {
    case NS_KIND_BOOL:
        return "bool";
    case NS_KIND_INT:
        return "int";
    case NS_KIND_DECIMAL:
        return "decimal";
    case NS_KIND_TEXT:
        return "text";
    case NS_KIND_DATE:
        return "date";
    case NS_KIND_TEXT_SET:
        return "set";
    case NS_KIND_REF:
        return "ref";
    }
    return "text";
}

/* ---- field sets ------------------------------------------------------------------- */

void ns_fieldset_init(ns_fieldset *fs)
{
    fs->names = NULL;
    fs->values = NULL;
    fs->n = 0;
}

void ns_fieldset_free(ns_fieldset *fs)
{
    if (fs == NULL)
        return;
    for (size_t i = 0; i < fs->n; i++) {
        free(fs->names[i]);
        ns_value_free(&fs->values[i]);
    }
    free(fs->names);
    free(fs->values);
    ns_fieldset_init(fs);
}

/* Index of name, or where it belongs; *found says which. */
static size_t fieldset_find(const ns_fieldset *fs, const char *name, bool *found)
{
    size_t lo = 0, hi = fs->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(fs->names[mid], name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

const ns_value *ns_fieldset_get(const ns_fieldset *fs, const char *name)
{
    if (fs == NULL)
        return NULL;
    bool found;
    size_t at = fieldset_find(fs, name, &found);
    return found ? &fs->values[at] : NULL;
}

int ns_fieldset_set(ns_fieldset *fs, const char *name, const ns_value *v)
{
    ns_value copy;
    if (ns_value_copy(&copy, v) != NS_VALUE_OK)
        return -1;
    bool found;
    size_t at = fieldset_find(fs, name, &found);
    if (found) {
        ns_value_free(&fs->values[at]);
        fs->values[at] = copy;
        return 0;
    }
    size_t len = strlen(name);
    char *dup = malloc(len + 1);
    if (dup == NULL)
        goto fail;
    memcpy(dup, name, len + 1);
    /* Grown one slot at a time: records have tens of fields, and with no
     * capacity in the struct, the array length is always n. A failed second
     * realloc leaves a longer names array, which is harmless. */
    char **names = realloc(fs->names, (fs->n + 1) * sizeof(*names));
    if (names == NULL)
        goto fail;
    fs->names = names;
    ns_value *values = realloc(fs->values, (fs->n + 1) * sizeof(*values));
    if (values == NULL)
        goto fail;
    fs->values = values;
    memmove(names + at + 1, names + at, (fs->n - at) * sizeof(*names));
    memmove(values + at + 1, values + at, (fs->n - at) * sizeof(*values));
    names[at] = dup;
    values[at] = copy;
    fs->n++;
    return 0;
fail:
    free(dup);
    ns_value_free(&copy);
    return -1;
}

int ns_fieldset_copy(ns_fieldset *dst, const ns_fieldset *src)
{
    ns_fieldset_init(dst);
    if (src == NULL || src->n == 0)
        return 0;
    dst->names = calloc(src->n, sizeof(*dst->names));
    dst->values = calloc(src->n, sizeof(*dst->values));
    if (dst->names == NULL || dst->values == NULL)
        goto fail;
    for (size_t i = 0; i < src->n; i++) {
        size_t len = strlen(src->names[i]);
        char *name = malloc(len + 1);
        if (name == NULL)
            goto fail;
        memcpy(name, src->names[i], len + 1);
        if (ns_value_copy(&dst->values[i], &src->values[i]) != NS_VALUE_OK) {
            free(name);
            goto fail;
        }
        dst->names[i] = name;
        dst->n = i + 1;
    }
    return 0;
fail:
    ns_fieldset_free(dst);
    return -1;
}
