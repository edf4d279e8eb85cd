/* Compact pages (page_compact.h).
 *
 * make: one pass over the page's records builds the tables (types by name
 * and field list, tenants, changed_by names) and each record's compact form,
 * borrowing every string it can from the page. Only what has exactly one
 * text form is carried as bytes or numbers (lowercase UUIDs, YYYY-MM-DD
 * dates in years 1000-9999, the feed's changed_at), so that the expansion
 * gives back the very bytes of the ordinary page; anything else stays text,
 * or, for the record's own id, tenant and time, makes the page UNFIT and it
 * goes out as it is.
 *
 * expand: the input is untrusted. Every table index, length and count is
 * checked before anything is built; the ordinary page is assembled from
 * borrowed pieces, its packed size checked against the caller's bound, then
 * packed and unpacked with ns_envelope_unpack, so the caller gets an
 * ordinary Envelope that ns_envelope_free releases and that passed the same
 * checks as one read from the wire. Memory is linear in the input: every
 * field of a record costs the sender at least one byte (a value, or a
 * position in null_fields). */
#include "page_compact.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UUID_BYTES 16
#define UUID_TEXT  36
/* "2025-01-01T00:00:00.000000Z", as the feed writes changed_at. */
#define TS_TEXT   27
#define DATE_TEXT 10
/* Bounds on the tables of a page from the wire, far above any schema's. */
#define MAX_TYPES       4096u
#define MAX_TYPE_FIELDS 4096u

#define US_PER_DAY 86400000000LL

typedef Napsync__V1__ChangePage page_t;
typedef Napsync__V1__ChangePage__Type type_t;
typedef Napsync__V1__Record record_t;
typedef Napsync__V1__Value value_t;

/* ---- text forms ------------------------------------------------------------------ */

static int hex_lower(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* A lowercase 8-4-4-4-12 UUID into its bytes; false for anything else. */
static bool uuid_parse(const char *s, uint8_t out[UUID_BYTES])
{
    if (s == NULL || strlen(s) != UUID_TEXT)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < UUID_TEXT;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i++] != '-')
                return false;
            continue;
        }
        int hi = hex_lower(s[i]), lo = hex_lower(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[o++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return true;
}

static void uuid_format(const uint8_t b[UUID_BYTES], char out[UUID_TEXT + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < UUID_BYTES; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), and back. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* The dates a value may hold (value.h): years 1000-9999. */
#define DAYS_MIN (-354285) /* 1000-01-01 */
#define DAYS_MAX 2932896   /* 9999-12-31 */

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* "YYYY-MM-DD" at s (no more checked), a real date of years 1000-9999. */
static bool date_at(const char *s, int64_t *days)
{
    int y, m, d;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &m) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || y < 1000 || m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    int64_t z = days_from_civil(y, m, d);
    int yy, mm, dd;
    civil_from_days(z, &yy, &mm, &dd);
    if (yy != y || mm != m || dd != d)
        return false; /* 2025-02-30 */
    *days = z;
    return true;
}

static bool date_parse(const char *s, int32_t *days)
{
    int64_t z;
    if (s == NULL || strlen(s) != DATE_TEXT || !date_at(s, &z))
        return false;
    *days = (int32_t)z;
    return true;
}

/* v as n decimal digits, zero-padded (v < 10^n, v >= 0). */
static void put_digits(char *out, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* days within DAYS_MIN..DAYS_MAX (checked by the callers). */
static void date_format(int64_t days, char out[DATE_TEXT + 1])
{
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    put_digits(out, y, 4);
    out[4] = '-';
    put_digits(out + 5, m, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[DATE_TEXT] = '\0';
}

#define US_MIN ((int64_t)DAYS_MIN * US_PER_DAY)
#define US_MAX ((int64_t)DAYS_MAX * US_PER_DAY + US_PER_DAY - 1)

/* The feed's changed_at, exactly, into microseconds since 1970. */
static bool ts_parse(const char *s, int64_t *us)
{
    int64_t days;
    int hh, mi, ss, frac;
    if (s == NULL || strlen(s) != TS_TEXT || !date_at(s, &days) || s[10] != 'T' ||
        !digits(s + 11, 2, &hh) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &ss) || s[19] != '.' || !digits(s + 20, 6, &frac) || s[26] != 'Z' ||
        hh > 23 || mi > 59 || ss > 59)
        return false;
    *us = days * US_PER_DAY + ((int64_t)hh * 3600 + mi * 60 + ss) * 1000000 + frac;
    return true;
}

/* us within US_MIN..US_MAX (checked by the callers). */
static void ts_format(int64_t us, char out[TS_TEXT + 1])
{
    int64_t days = us / US_PER_DAY, rem = us % US_PER_DAY;
    if (rem < 0) {
        rem += US_PER_DAY;
        days--;
    }
    date_format(days, out);
    int64_t sec = rem / 1000000;
    out[10] = 'T';
    put_digits(out + 11, sec / 3600, 2);
    out[13] = ':';
    put_digits(out + 14, sec / 60 % 60, 2);
    out[16] = ':';
    put_digits(out + 17, sec % 60, 2);
    out[19] = '.';
    put_digits(out + 20, rem % 1000000, 6);
    out[26] = 'Z';
    out[TS_TEXT] = '\0';
}

/* ---- make ------------------------------------------------------------------------- */

struct ns_page_compact {
    ns_envelope env;
    page_t page;
    type_t *types; /* ntypes used of cap_types; fields arrays owned, names borrowed */
    type_t **type_ptrs;
    size_t ntypes, cap_types;
    record_t *recs;
    record_t **rec_ptrs;
    value_t *vals;
    value_t **val_ptrs;
    uint32_t *nulls;
    uint8_t *uuids; /* record ids and ref values, 16 bytes each */
    uint8_t *tenants;
    char **names; /* borrowed */
    size_t nnames;
};

typedef struct {
    uint8_t b[UUID_BYTES];
    uint32_t at;
} tenant_key;

static int tenant_key_cmp(const void *a, const void *b)
{
    return memcmp(((const tenant_key *)a)->b, ((const tenant_key *)b)->b, UUID_BYTES);
}

void ns_page_compact_free(ns_page_compact *pc)
{
    if (pc == NULL)
        return;
    for (size_t i = 0; i < pc->ntypes; i++)
        free(pc->types[i].fields);
    free(pc->types);
    free(pc->type_ptrs);
    free(pc->recs);
    free(pc->rec_ptrs);
    free(pc->vals);
    free(pc->val_ptrs);
    free(pc->nulls);
    free(pc->uuids);
    free(pc->tenants);
    free(pc->names);
    free(pc);
}

const ns_envelope *ns_page_compact_envelope(const ns_page_compact *pc)
{
    return &pc->env;
}

/* The index of the type entry for record r (name and field list), added
 * when new; SIZE_MAX when out of memory. */
static size_t type_of(ns_page_compact *pc, const record_t *r, size_t hint)
{
    const Napsync__V1__FieldSet *fs = r->fields;
    for (size_t k = 0; k < pc->ntypes; k++) {
        size_t t = (hint + k) % pc->ntypes; /* the last one used first */
        const type_t *ty = &pc->types[t];
        if (ty->n_fields != fs->n_fields || strcmp(ty->name, r->entity_type) != 0)
            continue;
        size_t i = 0;
        while (i < fs->n_fields && strcmp(ty->fields[i], fs->fields[i]->name) == 0)
            i++;
        if (i == fs->n_fields)
            return t;
    }
    if (pc->ntypes == pc->cap_types) {
        size_t cap = pc->cap_types ? pc->cap_types * 2 : 4;
        type_t *nt = realloc(pc->types, cap * sizeof(*nt));
        if (nt == NULL)
            return SIZE_MAX;
        pc->types = nt;
        pc->cap_types = cap;
    }
    type_t *ty = &pc->types[pc->ntypes];
    napsync__v1__change_page__type__init(ty);
    ty->name = r->entity_type;
    if (fs->n_fields > 0) {
        ty->fields = malloc(fs->n_fields * sizeof(*ty->fields));
        if (ty->fields == NULL)
            return SIZE_MAX;
        for (size_t i = 0; i < fs->n_fields; i++)
            ty->fields[i] = fs->fields[i]->name;
    }
    ty->n_fields = fs->n_fields;
    return pc->ntypes++;
}

/* The index of name in the names table, added when new. */
static size_t name_of(ns_page_compact *pc, char *name, size_t hint)
{
    if (hint < pc->nnames && strcmp(pc->names[hint], name) == 0)
        return hint;
    for (size_t i = 0; i < pc->nnames; i++)
        if (strcmp(pc->names[i], name) == 0)
            return i;
    pc->names[pc->nnames] = name; /* sized for one per record */
    return pc->nnames++;
}

/* The record's tenant among the listed (sorted keys) or the extras, which
 * are appended; SIZE_MAX when it is not a UUID. */
static size_t tenant_of(ns_page_compact *pc, const tenant_key *keys, size_t nlisted,
                        size_t *ntenants, const char *tenant)
{
    tenant_key k;
    if (!uuid_parse(tenant, k.b))
        return SIZE_MAX;
    const tenant_key *hit = nlisted ? bsearch(&k, keys, nlisted, sizeof(k), tenant_key_cmp) : NULL;
    if (hit != NULL)
        return hit->at;
    for (size_t i = nlisted; i < *ntenants; i++)
        if (memcmp(pc->tenants + i * UUID_BYTES, k.b, UUID_BYTES) == 0)
            return i;
    memcpy(pc->tenants + *ntenants * UUID_BYTES, k.b, UUID_BYTES);
    return (*ntenants)++;
}

/* One value into its compact form: refs and dates as bytes and days when
 * their text is the one canonical form, everything else as it is. */
static void value_compact(const value_t *src, value_t *dst, uint8_t *uuid)
{
    int32_t days;
    *dst = *src; /* borrows strings and sets */
    if (src->kind_case == NAPSYNC__V1__VALUE__KIND_REF_VALUE && uuid_parse(src->ref_value, uuid)) {
        dst->kind_case = NAPSYNC__V1__VALUE__KIND_REF_UUID;
        dst->ref_uuid.data = uuid;
        dst->ref_uuid.len = UUID_BYTES;
    } else if (src->kind_case == NAPSYNC__V1__VALUE__KIND_DATE_VALUE &&
               date_parse(src->date_value, &days)) {
        dst->kind_case = NAPSYNC__V1__VALUE__KIND_DATE_DAYS;
        dst->date_days = days;
    }
}

/* The allocations of make, sized from the page. */
static ns_page_compact_status make_alloc(ns_page_compact *pc, const page_t *p)
{
    size_t n = p->n_records, total = 0;
    for (size_t i = 0; i < n; i++) {
        const record_t *r = p->records[i];
        if (r == NULL || r->fields == NULL || r->entity_type == NULL ||
            (r->fields->n_fields > 0 && r->fields->fields == NULL))
            return NS_PAGE_COMPACT_UNFIT;
        for (size_t f = 0; f < r->fields->n_fields; f++)
            if (r->fields->fields[f] == NULL || r->fields->fields[f]->name == NULL ||
                r->fields->fields[f]->value == NULL)
                return NS_PAGE_COMPACT_UNFIT;
        total += r->fields->n_fields;
    }
    pc->recs = calloc(n ? n : 1, sizeof(*pc->recs));
    pc->rec_ptrs = calloc(n ? n : 1, sizeof(*pc->rec_ptrs));
    pc->names = calloc(n ? n : 1, sizeof(*pc->names));
    pc->vals = calloc(total ? total : 1, sizeof(*pc->vals));
    pc->val_ptrs = calloc(total ? total : 1, sizeof(*pc->val_ptrs));
    pc->nulls = calloc(total ? total : 1, sizeof(*pc->nulls));
    pc->uuids = calloc(n + total ? n + total : 1, UUID_BYTES);
    pc->tenants = calloc(p->n_tenant_ids + n ? p->n_tenant_ids + n : 1, UUID_BYTES);
    if (pc->recs == NULL || pc->rec_ptrs == NULL || pc->names == NULL || pc->vals == NULL ||
        pc->val_ptrs == NULL || pc->nulls == NULL || pc->uuids == NULL || pc->tenants == NULL)
        return NS_PAGE_COMPACT_NOMEM;
    return NS_PAGE_COMPACT_OK;
}

/* The listed tenants into pc->tenants, in order, and keys sorted for lookup. */
static ns_page_compact_status listed_tenants(ns_page_compact *pc, const page_t *p,
                                             tenant_key **keys)
{
    *keys = NULL;
    if (p->n_tenant_ids == 0)
        return NS_PAGE_COMPACT_OK;
    if (p->n_tenant_ids > UINT32_MAX || p->tenant_ids == NULL)
        return NS_PAGE_COMPACT_UNFIT;
    tenant_key *k = malloc(p->n_tenant_ids * sizeof(*k));
    if (k == NULL)
        return NS_PAGE_COMPACT_NOMEM;
    for (size_t i = 0; i < p->n_tenant_ids; i++) {
        if (!uuid_parse(p->tenant_ids[i], k[i].b)) {
            free(k);
            return NS_PAGE_COMPACT_UNFIT;
        }
        k[i].at = (uint32_t)i;
        memcpy(pc->tenants + i * UUID_BYTES, k[i].b, UUID_BYTES);
    }
    qsort(k, p->n_tenant_ids, sizeof(*k), tenant_key_cmp);
    *keys = k;
    return NS_PAGE_COMPACT_OK;
}

static ns_page_compact_status make_records(ns_page_compact *pc, const page_t *p,
                                           const tenant_key *keys)
{
    size_t ntenants = p->n_tenant_ids, v = 0, type_hint = 0, name_hint = 0;
    int64_t prev_at = 0;
    for (size_t i = 0; i < p->n_records; i++) {
        const record_t *src = p->records[i];
        record_t *r = &pc->recs[i];
        napsync__v1__record__init(r);
        pc->rec_ptrs[i] = r;
        int64_t at;
        uint8_t *id = pc->uuids + i * UUID_BYTES;
        size_t tenant = tenant_of(pc, keys, p->n_tenant_ids, &ntenants, src->tenant_id);
        if (!uuid_parse(src->id, id) || tenant == SIZE_MAX || src->changed_by == NULL ||
            !ts_parse(src->changed_at, &at))
            return NS_PAGE_COMPACT_UNFIT;
        size_t t = type_of(pc, src, type_hint);
        if (t == SIZE_MAX)
            return NS_PAGE_COMPACT_NOMEM;
        type_hint = t;
        name_hint = name_of(pc, src->changed_by, name_hint);
        r->type_index = (uint32_t)t;
        r->id_uuid.data = id;
        r->id_uuid.len = UUID_BYTES;
        r->version = src->version;
        r->deleted = src->deleted;
        r->tenant_index = (uint32_t)tenant;
        r->changed_by_index = (uint32_t)name_hint;
        r->changed_at_delta = at - prev_at;
        prev_at = at;
        const Napsync__V1__FieldSet *fs = src->fields;
        r->values = &pc->val_ptrs[v];
        r->null_fields = &pc->nulls[v]; /* never more than the fields, so it fits */
        for (size_t f = 0; f < fs->n_fields; f++) {
            const value_t *val = fs->fields[f]->value;
            if (val->kind_case == NAPSYNC__V1__VALUE__KIND_NULL_VALUE) {
                r->null_fields[r->n_null_fields++] = (uint32_t)f;
                continue;
            }
            value_compact(val, &pc->vals[v], pc->uuids + (p->n_records + v) * UUID_BYTES);
            r->values[r->n_values++] = &pc->vals[v];
            v++;
        }
        /* values and nulls share the slots of this record's fields */
        v += r->n_null_fields;
    }
    pc->page.tenant_uuids.data = pc->tenants;
    pc->page.tenant_uuids.len = ntenants * UUID_BYTES;
    return NS_PAGE_COMPACT_OK;
}

ns_page_compact_status ns_page_compact_make(const ns_envelope *env, ns_page_compact **out)
{
    *out = NULL;
    if (env == NULL || env->body_case != NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE ||
        env->change_page == NULL)
        return NS_PAGE_COMPACT_UNFIT;
    const page_t *p = env->change_page;
    if (p->n_records > 0 && p->records == NULL)
        return NS_PAGE_COMPACT_UNFIT;
    ns_page_compact *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        return NS_PAGE_COMPACT_NOMEM;
    napsync__v1__change_page__init(&pc->page);
    tenant_key *keys = NULL;
    ns_page_compact_status st = make_alloc(pc, p);
    if (st == NS_PAGE_COMPACT_OK)
        st = listed_tenants(pc, p, &keys);
    if (st == NS_PAGE_COMPACT_OK)
        st = make_records(pc, p, keys);
    free(keys);
    if (st == NS_PAGE_COMPACT_OK) {
        pc->type_ptrs = calloc(pc->ntypes ? pc->ntypes : 1, sizeof(*pc->type_ptrs));
        if (pc->type_ptrs == NULL)
            st = NS_PAGE_COMPACT_NOMEM;
    }
    if (st != NS_PAGE_COMPACT_OK) {
        ns_page_compact_free(pc);
        return st;
    }
    for (size_t t = 0; t < pc->ntypes; t++)
        pc->type_ptrs[t] = &pc->types[t];
    page_t *cp = &pc->page;
    cp->n_records = p->n_records;
    cp->records = p->n_records ? pc->rec_ptrs : NULL;
    cp->next_cursor = p->next_cursor;
    cp->more = p->more;
    cp->tenant_ids_truncated = p->tenant_ids_truncated;
    cp->conflicts_unchanged = p->conflicts_unchanged;
    cp->n_types = pc->ntypes;
    cp->types = pc->ntypes ? pc->type_ptrs : NULL;
    cp->tenants_listed = (uint32_t)p->n_tenant_ids;
    cp->n_names = pc->nnames;
    cp->names = pc->nnames ? pc->names : NULL;
    napsync__v1__envelope__init(&pc->env);
    pc->env.request_id = env->request_id;
    pc->env.body_case = NAPSYNC__V1__ENVELOPE__BODY_COMPACT_PAGE;
    pc->env.compact_page = cp;
    *out = pc;
    return NS_PAGE_COMPACT_OK;
}

/* ---- expand ------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static ns_page_compact_status bad(char *err, size_t errlen,
                                                                        const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return NS_PAGE_COMPACT_INVALID;
}

static bool is_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int uuid_cmp(const void *a, const void *b)
{
    return memcmp(a, b, UUID_BYTES);
}

/* Whether the n items of size sz at v are distinct: 1 yes, 0 no, -1 out of
 * memory. Sorted copies: O(n log n) whatever the sender chose. */
static int distinct(const void *v, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
    if (n < 2)
        return 1;
    char *copy = malloc(n * sz);
    if (copy == NULL)
        return -1;
    memcpy(copy, v, n * sz);
    qsort(copy, n, sz, cmp);
    int ok = 1;
    for (size_t i = 1; i < n && ok; i++)
        ok = cmp(copy + (i - 1) * sz, copy + i * sz) != 0;
    free(copy);
    return ok;
}

static ns_page_compact_status check_tables(const page_t *cp, size_t *ntenants, char *err,
                                           size_t errlen)
{
    if (cp->n_tenant_ids != 0)
        return bad(err, errlen, "a compact page lists tenant_ids as text");
    if (cp->n_types > MAX_TYPES || (cp->n_types > 0 && cp->types == NULL))
        return bad(err, errlen, "a compact page has %zu types (at most %u)", cp->n_types,
                   MAX_TYPES);
    for (size_t t = 0; t < cp->n_types; t++) {
        const type_t *ty = cp->types[t];
        if (ty == NULL || is_empty(ty->name))
            return bad(err, errlen, "type %zu has no name", t);
        if (ty->n_fields > MAX_TYPE_FIELDS || (ty->n_fields > 0 && ty->fields == NULL))
            return bad(err, errlen, "type %zu has %zu fields (at most %u)", t, ty->n_fields,
                       MAX_TYPE_FIELDS);
        for (size_t f = 0; f < ty->n_fields; f++)
            if (is_empty(ty->fields[f]))
                return bad(err, errlen, "type %zu: field %zu has no name", t, f);
        int d = distinct(ty->fields, ty->n_fields, sizeof(char *), str_ptr_cmp);
        if (d < 0)
            return NS_PAGE_COMPACT_NOMEM;
        if (d == 0)
            return bad(err, errlen, "type %zu names a field twice", t);
    }
    if (cp->tenant_uuids.len % UUID_BYTES != 0 || (cp->tenant_uuids.len && !cp->tenant_uuids.data))
        return bad(err, errlen, "tenant_uuids of %zu bytes is not whole UUIDs",
                   cp->tenant_uuids.len);
    *ntenants = cp->tenant_uuids.len / UUID_BYTES;
    if (cp->tenants_listed > *ntenants)
        return bad(err, errlen, "tenants_listed %u but %zu tenants", cp->tenants_listed, *ntenants);
    int d = distinct(cp->tenant_uuids.data, *ntenants, UUID_BYTES, uuid_cmp);
    if (d == 0)
        return bad(err, errlen, "a tenant appears twice in tenant_uuids");
    for (size_t i = 0; d > 0 && i < cp->n_names; i++)
        if (cp->names == NULL || cp->names[i] == NULL)
            return bad(err, errlen, "name %zu missing", i);
    if (d > 0)
        d = distinct(cp->names, cp->n_names, sizeof(char *), str_ptr_cmp);
    if (d < 0)
        return NS_PAGE_COMPACT_NOMEM;
    if (d == 0)
        return bad(err, errlen, "a name appears twice in names");
    return NS_PAGE_COMPACT_OK;
}

static ns_page_compact_status check_value(const value_t *v, size_t rec, char *err, size_t errlen)
{
    if (v == NULL || v->kind_case == NAPSYNC__V1__VALUE__KIND__NOT_SET)
        return bad(err, errlen, "record %zu: a value without a kind", rec);
    if (v->kind_case == NAPSYNC__V1__VALUE__KIND_REF_UUID) {
        if (v->ref_uuid.len != UUID_BYTES || v->ref_uuid.data == NULL)
            return bad(err, errlen, "record %zu: a ref_uuid of %zu bytes", rec, v->ref_uuid.len);
    } else if (v->kind_case == NAPSYNC__V1__VALUE__KIND_DATE_DAYS) {
        if (v->date_days < DAYS_MIN || v->date_days > DAYS_MAX)
            return bad(err, errlen, "record %zu: date_days %d out of range", rec,
                       (int)v->date_days);
    }
    return NS_PAGE_COMPACT_OK;
}

static ns_page_compact_status check_record(const page_t *cp, size_t i, size_t ntenants, int64_t *at,
                                           char *err, size_t errlen)
{
    const record_t *r = cp->records[i];
    if (r == NULL)
        return bad(err, errlen, "record %zu missing", i);
    if (!is_empty(r->entity_type) || !is_empty(r->id) || !is_empty(r->tenant_id) ||
        !is_empty(r->changed_by) || !is_empty(r->changed_at) || r->fields != NULL)
        return bad(err, errlen, "record %zu mixes the ordinary form into a compact page", i);
    if (r->type_index >= cp->n_types)
        return bad(err, errlen, "record %zu: type %u of %zu", i, r->type_index, cp->n_types);
    if (r->id_uuid.len != UUID_BYTES || r->id_uuid.data == NULL)
        return bad(err, errlen, "record %zu: an id of %zu bytes", i, r->id_uuid.len);
    if (r->tenant_index >= ntenants)
        return bad(err, errlen, "record %zu: tenant %u of %zu", i, r->tenant_index, ntenants);
    if (r->changed_by_index >= cp->n_names)
        return bad(err, errlen, "record %zu: name %u of %zu", i, r->changed_by_index, cp->n_names);
    /* Both ends of the sum are bounded, so it cannot overflow. */
    if (r->changed_at_delta < US_MIN - US_MAX || r->changed_at_delta > US_MAX - US_MIN ||
        *at + r->changed_at_delta < US_MIN || *at + r->changed_at_delta > US_MAX)
        return bad(err, errlen, "record %zu: changed_at out of range", i);
    *at += r->changed_at_delta;
    size_t nf = cp->types[r->type_index]->n_fields;
    if (r->n_null_fields > nf || r->n_values != nf - r->n_null_fields ||
        (r->n_values > 0 && r->values == NULL) || (r->n_null_fields > 0 && r->null_fields == NULL))
        return bad(err, errlen, "record %zu: %zu values and %zu nulls for %zu fields", i,
                   r->n_values, r->n_null_fields, nf);
    for (size_t k = 0; k < r->n_null_fields; k++)
        if (r->null_fields[k] >= nf || (k > 0 && r->null_fields[k] <= r->null_fields[k - 1]))
            return bad(err, errlen, "record %zu: null_fields not increasing positions", i);
    for (size_t k = 0; k < r->n_values; k++) {
        ns_page_compact_status st = check_value(r->values[k], i, err, errlen);
        if (st != NS_PAGE_COMPACT_OK)
            return st;
    }
    return NS_PAGE_COMPACT_OK;
}

/* ---- the exact size of the ordinary page ------------------------------------------------
 * Computed from the compact page before anything is built, so that a page
 * that would expand past the bound costs nothing; every field number of
 * these messages is below 16, so every tag is one byte. */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 128) {
        v >>= 7;
        n++;
    }
    return n;
}

/* A length-delimited field of len bytes, with its tag. */
static size_t delimited(size_t len)
{
    return 1 + varint_len(len) + len;
}

/* The expanded Value's own bytes. */
static size_t value_size(const value_t *v)
{
    if (v == NULL)
        return 2; /* null_value = true */
    if (v->kind_case == NAPSYNC__V1__VALUE__KIND_REF_UUID)
        return delimited(UUID_TEXT);
    if (v->kind_case == NAPSYNC__V1__VALUE__KIND_DATE_DAYS)
        return delimited(DATE_TEXT);
    return napsync__v1__value__get_packed_size(v);
}

/* The value of record r for field f of its type, NULL when it is null;
 * *nn and *nv walk null_fields and values. */
static const value_t *value_at(const record_t *r, size_t f, size_t *nn, size_t *nv)
{
    if (*nn < r->n_null_fields && r->null_fields[*nn] == f) {
        (*nn)++;
        return NULL;
    }
    return r->values[(*nv)++];
}

static size_t record_size(const page_t *cp, const record_t *r)
{
    const type_t *ty = cp->types[r->type_index];
    size_t fs = 0, nn = 0, nv = 0;
    for (size_t f = 0; f < ty->n_fields; f++) {
        size_t vs = value_size(value_at(r, f, &nn, &nv));
        fs += delimited(delimited(strlen(ty->fields[f])) + delimited(vs));
    }
    const char *by = cp->names[r->changed_by_index];
    return delimited(strlen(ty->name)) + delimited(UUID_TEXT) +
           (r->version ? 1 + varint_len(r->version) : 0) + (r->deleted ? 2 : 0) +
           delimited(UUID_TEXT) + delimited(fs) + (by[0] ? delimited(strlen(by)) : 0) +
           delimited(TS_TEXT);
}

static size_t envelope_size(const ns_envelope *env)
{
    const page_t *cp = env->compact_page;
    size_t page = 0;
    for (size_t i = 0; i < cp->n_records; i++)
        page += delimited(record_size(cp, cp->records[i]));
    if (cp->next_cursor != NULL && cp->next_cursor[0] != '\0')
        page += delimited(strlen(cp->next_cursor));
    page += (cp->more ? 2 : 0) + cp->tenants_listed * delimited(UUID_TEXT) +
            (cp->tenant_ids_truncated ? 2 : 0) + (cp->conflicts_unchanged ? 2 : 0);
    return (env->request_id ? 1 + varint_len(env->request_id) : 0) + delimited(page);
}

/* ---- the ordinary page, built ---------------------------------------------------------
 * In memory that ns_envelope_free releases, as if ns_envelope_unpack had
 * made it from the ordinary page's bytes (building it directly costs the
 * client less than packing and parsing it again). Every string and array
 * is its own allocation, as protobuf-c frees them; a count is raised only
 * once its element is in place, so that a page cut short by a failed
 * allocation is still freed whole. */

static char *own_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ns_envelope_alloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static char *own_uuid(const uint8_t *b)
{
    char *d = ns_envelope_alloc(UUID_TEXT + 1);
    if (d != NULL)
        uuid_format(b, d);
    return d;
}

static bool own_set(const Napsync__V1__TextSet *from, value_t *v)
{
    Napsync__V1__TextSet *ts = ns_envelope_alloc(sizeof(*ts));
    v->set_value = ts;
    if (ts == NULL)
        return false;
    napsync__v1__text_set__init(ts);
    if (from == NULL || from->n_items == 0)
        return true;
    ts->items = ns_envelope_alloc(from->n_items * sizeof(*ts->items));
    if (ts->items == NULL)
        return false;
    for (size_t i = 0; i < from->n_items; i++) {
        if ((ts->items[i] = own_str(from->items[i])) == NULL)
            return false;
        ts->n_items = i + 1;
    }
    return true;
}

/* src NULL: a null. */
static bool own_value(const value_t *src, value_t *v)
{
    if (src == NULL) {
        v->kind_case = NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
        v->null_value = 1;
        return true;
    }
    v->kind_case = src->kind_case;
    switch (src->kind_case) {
    case NAPSYNC__V1__VALUE__KIND_NULL_VALUE:
        v->null_value = 1; /* as null_fields expands, and as senders write it */
        return true;
    case NAPSYNC__V1__VALUE__KIND_BOOL_VALUE:
        v->bool_value = src->bool_value;
        return true;
    case NAPSYNC__V1__VALUE__KIND_INT_VALUE:
        v->int_value = src->int_value;
        return true;
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        return (v->decimal_value = own_str(src->decimal_value)) != NULL;
    case NAPSYNC__V1__VALUE__KIND_TEXT_VALUE:
        return (v->text_value = own_str(src->text_value)) != NULL;
    case NAPSYNC__V1__VALUE__KIND_DATE_VALUE:
        return (v->date_value = own_str(src->date_value)) != NULL;
    case NAPSYNC__V1__VALUE__KIND_REF_VALUE:
        return (v->ref_value = own_str(src->ref_value)) != NULL;
    case NAPSYNC__V1__VALUE__KIND_SET_VALUE:
        return own_set(src->set_value, v);
    case NAPSYNC__V1__VALUE__KIND_REF_UUID:
        v->kind_case = NAPSYNC__V1__VALUE__KIND_REF_VALUE;
        return (v->ref_value = own_uuid(src->ref_uuid.data)) != NULL;
    case NAPSYNC__V1__VALUE__KIND_DATE_DAYS:
        v->kind_case = NAPSYNC__V1__VALUE__KIND_DATE_VALUE;
        if ((v->date_value = ns_envelope_alloc(DATE_TEXT + 1)) == NULL)
            return false;
        date_format(src->date_days, v->date_value);
        return true;
    default: /* refused by check_value */
        v->kind_case = NAPSYNC__V1__VALUE__KIND__NOT_SET;
        return false;
    }
}

static bool own_fields(const type_t *ty, const record_t *src, Napsync__V1__FieldSet *fs)
{
    if (ty->n_fields == 0)
        return true;
    fs->fields = ns_envelope_alloc(ty->n_fields * sizeof(*fs->fields));
    if (fs->fields == NULL)
        return false;
    size_t nn = 0, nv = 0;
    for (size_t i = 0; i < ty->n_fields; i++) {
        Napsync__V1__Field *f = ns_envelope_alloc(sizeof(*f));
        if (f == NULL)
            return false;
        napsync__v1__field__init(f);
        fs->fields[i] = f;
        fs->n_fields = i + 1;
        value_t *v = ns_envelope_alloc(sizeof(*v));
        if (v == NULL)
            return false;
        napsync__v1__value__init(v);
        f->value = v;
        if ((f->name = own_str(ty->fields[i])) == NULL || !own_value(value_at(src, i, &nn, &nv), v))
            return false;
    }
    return true;
}

static bool own_record(const page_t *cp, const record_t *src, int64_t at, record_t *r)
{
    const type_t *ty = cp->types[src->type_index];
    r->version = src->version;
    r->deleted = src->deleted;
    if ((r->entity_type = own_str(ty->name)) == NULL ||
        (r->id = own_uuid(src->id_uuid.data)) == NULL ||
        (r->tenant_id = own_uuid(cp->tenant_uuids.data + src->tenant_index * UUID_BYTES)) == NULL ||
        (r->changed_by = own_str(cp->names[src->changed_by_index])) == NULL ||
        (r->changed_at = ns_envelope_alloc(TS_TEXT + 1)) == NULL)
        return false;
    ts_format(at, r->changed_at);
    Napsync__V1__FieldSet *fs = ns_envelope_alloc(sizeof(*fs));
    if (fs == NULL)
        return false;
    napsync__v1__field_set__init(fs);
    r->fields = fs;
    return own_fields(ty, src, fs);
}

static bool own_page(const page_t *cp, page_t *p)
{
    p->more = cp->more;
    p->tenant_ids_truncated = cp->tenant_ids_truncated;
    p->conflicts_unchanged = cp->conflicts_unchanged;
    if ((p->next_cursor = own_str(cp->next_cursor ? cp->next_cursor : "")) == NULL)
        return false;
    if (cp->tenants_listed > 0) {
        p->tenant_ids = ns_envelope_alloc(cp->tenants_listed * sizeof(*p->tenant_ids));
        if (p->tenant_ids == NULL)
            return false;
        for (size_t i = 0; i < cp->tenants_listed; i++) {
            if ((p->tenant_ids[i] = own_uuid(cp->tenant_uuids.data + i * UUID_BYTES)) == NULL)
                return false;
            p->n_tenant_ids = i + 1;
        }
    }
    if (cp->n_records == 0)
        return true;
    p->records = ns_envelope_alloc(cp->n_records * sizeof(*p->records));
    if (p->records == NULL)
        return false;
    int64_t at = 0;
    for (size_t i = 0; i < cp->n_records; i++) {
        record_t *r = ns_envelope_alloc(sizeof(*r));
        if (r == NULL)
            return false;
        napsync__v1__record__init(r);
        p->records[i] = r;
        p->n_records = i + 1;
        at += cp->records[i]->changed_at_delta;
        if (!own_record(cp, cp->records[i], at, r))
            return false;
    }
    return true;
}

/* NULL when out of memory. */
static ns_envelope *own_envelope(const ns_envelope *compact)
{
    ns_envelope *e = ns_envelope_alloc(sizeof(*e));
    if (e == NULL)
        return NULL;
    napsync__v1__envelope__init(e);
    e->request_id = compact->request_id;
    page_t *p = ns_envelope_alloc(sizeof(*p));
    if (p == NULL) {
        ns_envelope_free(e);
        return NULL;
    }
    napsync__v1__change_page__init(p);
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE;
    e->change_page = p;
    if (!own_page(compact->compact_page, p)) {
        ns_envelope_free(e);
        return NULL;
    }
    return e;
}

ns_page_compact_status ns_page_compact_expand(const ns_envelope *env, size_t max_bytes,
                                              ns_envelope **out, char *err, size_t errlen)
{
    *out = NULL;
    if (env == NULL || env->body_case != NAPSYNC__V1__ENVELOPE__BODY_COMPACT_PAGE ||
        env->compact_page == NULL)
        return bad(err, errlen, "not a compact page");
    const page_t *cp = env->compact_page;
    size_t ntenants = 0;
    ns_page_compact_status st = check_tables(cp, &ntenants, err, errlen);
    if (st != NS_PAGE_COMPACT_OK)
        return st;
    if (cp->n_records > 0 && cp->records == NULL)
        return bad(err, errlen, "records missing");
    int64_t at = 0;
    for (size_t i = 0; i < cp->n_records; i++) {
        st = check_record(cp, i, ntenants, &at, err, errlen);
        if (st != NS_PAGE_COMPACT_OK)
            return st;
    }
    size_t size = envelope_size(env);
    if (size > max_bytes) {
        bad(err, errlen, "the page expands to %zu bytes (at most %zu)", size, max_bytes);
        return NS_PAGE_COMPACT_TOO_LARGE;
    }
    *out = own_envelope(env);
    return *out != NULL ? NS_PAGE_COMPACT_OK : NS_PAGE_COMPACT_NOMEM;
}
