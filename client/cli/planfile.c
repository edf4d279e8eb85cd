/* The napsync plan file (planfile.h): the one table of the format, a JSON
 * reader on yajl's event parser (numbers come as their text, so decimals
 * stay exact), a CSV reader on libcsv (RFC 4180, strict), the checks
 * across records, and the writers of both forms. */
#include "planfile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

/* ---- the format: types and fields (sql/003_wps_model.sql) -------------------------- */

#define TEXT(n, max)                                                                               \
    {                                                                                              \
        n, NS_KIND_TEXT, max, NULL, NULL                                                           \
    }
#define OF(n, k)                                                                                   \
    {                                                                                              \
        n, k, 0, NULL, NULL                                                                        \
    }
#define REF(n, target)                                                                             \
    {                                                                                              \
        n, NS_KIND_REF, 0, target, NULL                                                            \
    }

static const pf_field plan_fields[] = {
    TEXT("title", 0),
    TEXT("summary", 0),
    TEXT("kind", 0),
    TEXT("status", 0),
    TEXT("code", 32),
    TEXT("country", 0),
    TEXT("orientation", 0),
    OF("period_start", NS_KIND_DATE),
    OF("period_end", NS_KIND_DATE),
    OF("adopted_on", NS_KIND_DATE),
    OF("generation", NS_KIND_INT),
    REF("owner_id", NULL),
    REF("predecessor_id", NULL),
    REF("implements_id", NULL),
    OF("tags", NS_KIND_TEXT_SET),
};

static const pf_field pillar_fields[] = {
    TEXT("code", 32),       TEXT("name", 200),           TEXT("kind", 0),
    TEXT("description", 0), OF("position", NS_KIND_INT),
};

static const pf_field objective_fields[] = {
    REF("pillar_id", "pillar"),  TEXT("code", 32), TEXT("title", 500), TEXT("description", 0),
    OF("position", NS_KIND_INT),
};

static const pf_field result_fields[] = {
    REF("objective_id", "objective"),
    REF("parent_id", "result"),
    TEXT("level", 0),
    TEXT("code", 32),
    TEXT("title", 500),
    OF("position", NS_KIND_INT),
};

static const pf_field action_fields[] = {
    REF("objective_id", "objective"),
    REF("result_id", "result"),
    TEXT("code", 32),
    TEXT("title", 500),
    TEXT("description", 0),
    REF("lead_org_id", NULL),
    OF("supporting_org_ids", NS_KIND_TEXT_SET),
    OF("start_date", NS_KIND_DATE),
    OF("end_date", NS_KIND_DATE),
    TEXT("status", 0),
    OF("tags", NS_KIND_TEXT_SET),
    OF("position", NS_KIND_INT),
};

static const pf_field indicator_fields[] = {
    REF("objective_id", "objective"),
    REF("result_id", "result"),
    REF("action_id", "action"),
    TEXT("code", 0),
    TEXT("title", 0),
    TEXT("definition", 0),
    TEXT("unit", 0),
    TEXT("value_type", 0),
    TEXT("frequency", 0),
    OF("disaggregation", NS_KIND_TEXT_SET),
    OF("baseline", NS_KIND_DECIMAL),
    OF("baseline_date", NS_KIND_DATE),
    OF("target", NS_KIND_DECIMAL),
    OF("target_date", NS_KIND_DATE),
    REF("responsible_id", NULL),
    TEXT("verification", 0),
    REF("regional_indicator_id", NULL),
    TEXT("global_indicator", 32),
    OF("tags", NS_KIND_TEXT_SET),
};

static const pf_field indicator_target_fields[] = {
    REF("indicator_id", "indicator"),
    OF("period_end", NS_KIND_DATE),
    OF("value", NS_KIND_DECIMAL),
    TEXT("note", 0),
};

static const pf_field indicator_report_fields[] = {
    REF("indicator_id", "indicator"),
    OF("period_start", NS_KIND_DATE),
    OF("period_end", NS_KIND_DATE),
    TEXT("status", 0),
    OF("value", NS_KIND_DECIMAL),
    TEXT("value_text", 0),
    TEXT("narrative", 0),
    TEXT("evidence", 0),
    REF("reporter_id", NULL),
    TEXT("return_reason", 0),
    REF("corrects_id", "indicator_report"),
};

static const pf_field report_value_fields[] = {
    REF("report_id", "indicator_report"),
    TEXT("dimension", 32),
    TEXT("category", 100),
    OF("value", NS_KIND_DECIMAL),
};

static const pf_field budget_line_fields[] = {
    REF("action_id", "action"),
    OF("fiscal_year", NS_KIND_INT),
    TEXT("currency", 3),
    OF("costed", NS_KIND_DECIMAL),
    OF("allocated", NS_KIND_DECIMAL),
    OF("disbursed", NS_KIND_DECIMAL),
    OF("spent", NS_KIND_DECIMAL),
    TEXT("funding_source", 0),
    REF("funder_id", NULL),
    OF("gender_responsive", NS_KIND_BOOL),
    TEXT("note", 0),
};

static const pf_field comment_fields[] = {
    TEXT("subject_type", 32),
    {"subject_id", NS_KIND_REF, 0, NULL, "subject_type"},
    REF("author_id", NULL),
    TEXT("body", 5000),
};

#define TYPE(n, k, f)                                                                              \
    {                                                                                              \
        n, k, f, sizeof(f) / sizeof(f[0])                                                          \
    }

static const pf_type types[] = {
    TYPE("plan", "plan", plan_fields),
    TYPE("pillar", "pillars", pillar_fields),
    TYPE("objective", "objectives", objective_fields),
    TYPE("result", "results", result_fields),
    TYPE("action", "actions", action_fields),
    TYPE("indicator", "indicators", indicator_fields),
    TYPE("indicator_target", "indicator_targets", indicator_target_fields),
    TYPE("indicator_report", "indicator_reports", indicator_report_fields),
    TYPE("report_value", "report_values", report_value_fields),
    TYPE("budget_line", "budget_lines", budget_line_fields),
    TYPE("comment", "comments", comment_fields),
};

#define NTYPES (sizeof(types) / sizeof(types[0]))
/* The plan is types[0]. */
#define PLAN_TYPE 0u
/* Longest field name of the table, and what a JSON key may be to match one. */
#define FIELD_NAME_MAX 63
/* Columns of a CSV file; items gathered for one set in JSON. */
#define CSV_MAX_COLUMNS    256u
#define JSON_MAX_SET_ITEMS (NS_SET_DEFAULT_MAX_ITEMS + 1u)

size_t pf_ntypes(void)
{
    return NTYPES;
}

const pf_type *pf_type_at(size_t i)
{
    return i < NTYPES ? &types[i] : NULL;
}

const pf_type *pf_type_find(const char *name, size_t *index)
{
    for (size_t i = 0; name != NULL && i < NTYPES; i++) {
        if (strcmp(types[i].name, name) == 0) {
            if (index)
                *index = i;
            return &types[i];
        }
    }
    return NULL;
}

int pf_field_index(const pf_type *t, const char *name)
{
    for (size_t i = 0; name != NULL && i < t->nfields; i++)
        if (strcmp(t->fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

const char *pf_kind_phrase(ns_kind k)
{
    switch (k) {
    case NS_KIND_BOOL:
        return "true or false";
    case NS_KIND_INT:
        return "a whole number";
    case NS_KIND_DECIMAL:
        return "a decimal number such as 12.5";
    case NS_KIND_TEXT:
        return "text";
    case NS_KIND_DATE:
        return "a date (YYYY-MM-DD)";
    case NS_KIND_TEXT_SET:
        return "a set of text items";
    case NS_KIND_REF:
        return "a UUID";
    }
    return "a value";
}

/* ---- the file and its problems ---------------------------------------------------- */

void pf_file_init(pf_file *f)
{
    memset(f, 0, sizeof(*f));
}

static void record_free(pf_record *r)
{
    const pf_type *t = &types[r->type];
    for (size_t i = 0; r->values != NULL && i < t->nfields; i++)
        ns_value_free(&r->values[i]);
    free(r->values);
    r->values = NULL;
}

void pf_file_free(pf_file *f)
{
    for (size_t i = 0; i < f->n; i++)
        record_free(&f->records[i]);
    free(f->records);
    free(f->errors);
    memset(f, 0, sizeof(*f));
}

/* Text from the file, made safe to print: at most max bytes, control
 * characters and quotes replaced. */
static void printable(char *out, size_t cap, const char *s, size_t n, size_t max)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < max && o + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[o++] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    if (n > max && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* Returns the new error, or NULL when the list is full (counted only). */
static pf_error *error_new(pf_file *f)
{
    f->errors_seen++;
    if (f->nerrors >= PF_MAX_ERRORS)
        return NULL;
    if (f->errors == NULL) {
        f->errors = calloc(PF_MAX_ERRORS, sizeof(*f->errors));
        if (f->errors == NULL)
            return NULL;
    }
    pf_error *e = &f->errors[f->nerrors++];
    memset(e, 0, sizeof(*e));
    return e;
}

__attribute__((format(printf, 7, 0))) static void verror(pf_file *f, uint32_t line,
                                                         const char *where, const char *type,
                                                         const char *id, const char *field,
                                                         const char *fmt, va_list ap)
{
    pf_error *e = error_new(f);
    if (e == NULL)
        return;
    e->line = line;
    snprintf(e->where, sizeof(e->where), "%s", where ? where : "");
    snprintf(e->type, sizeof(e->type), "%s", type ? type : "");
    snprintf(e->id, sizeof(e->id), "%s", id ? id : "");
    snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
}

__attribute__((format(printf, 7, 8))) static void error_at(pf_file *f, uint32_t line,
                                                           const char *where, const char *type,
                                                           const char *id, const char *field,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(f, line, where, type, id, field, fmt, ap);
    va_end(ap);
}

void pf_record_path(const pf_record *r, char *out, size_t cap)
{
    if (r->type == PLAN_TYPE)
        snprintf(out, cap, "$.plan");
    else
        snprintf(out, cap, "$.%s[%u]", types[r->type].key, (unsigned)r->index);
}

void pf_add_error(pf_file *f, const pf_record *r, const char *field, const char *code,
                  const char *fmt, ...)
{
    size_t before = f->nerrors;
    char where[192] = "";
    if (r != NULL && f->format == PF_JSON) {
        pf_record_path(r, where, sizeof(where));
        if (field != NULL && field[0] != '\0') {
            size_t n = strlen(where);
            snprintf(where + n, sizeof(where) - n, ".%s", field);
        }
    }
    va_list ap;
    va_start(ap, fmt);
    verror(f, r && f->format == PF_CSV ? r->line : 0, where, r ? types[r->type].name : NULL,
           r ? r->id : NULL, field, fmt, ap);
    va_end(ap);
    if (f->nerrors > before && code != NULL)
        snprintf(f->errors[before].code, sizeof(f->errors[before].code), "%s", code);
}

/* ---- records ---------------------------------------------------------------------- */

/* A new record of type t at the end of f, its values all null. Returns it,
 * or NULL when memory runs out or the file holds too many records (which
 * is reported). */
static pf_record *record_add(pf_file *f, size_t t, uint32_t line, uint32_t index)
{
    if (f->n >= PF_MAX_RECORDS) {
        if (!f->full)
            error_at(f, line, NULL, NULL, NULL, NULL, "more than %u records", PF_MAX_RECORDS);
        f->full = true;
        return NULL;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        pf_record *r = realloc(f->records, cap * sizeof(*r));
        if (r == NULL)
            return NULL;
        f->records = r;
        f->cap = cap;
    }
    pf_record *r = &f->records[f->n];
    memset(r, 0, sizeof(*r));
    r->values = calloc(types[t].nfields, sizeof(*r->values));
    if (r->values == NULL)
        return NULL;
    for (size_t i = 0; i < types[t].nfields; i++)
        ns_value_init_null(&r->values[i], types[t].fields[i].kind);
    r->type = t;
    r->line = line;
    r->index = index;
    f->n++;
    return r;
}

/* Parses text (n bytes, NUL-terminated at n) as field fd into *out.
 * Returns NS_VALUE_OK, NS_VALUE_NOMEM, or another status with why. */
static ns_value_status value_parse(const pf_field *fd, const char *text, size_t n, ns_value *out,
                                   char *why, size_t cap)
{
    if (memchr(text, '\0', n) != NULL) {
        ns_value_init_null(out, fd->kind);
        snprintf(why, cap, "holds a NUL character");
        return NS_VALUE_INVALID;
    }
    ns_field_type ft = {.kind = fd->kind, .nullable = true, .max_bytes = fd->max_bytes};
    return ns_value_parse(&ft, text, out, why, cap);
}

/* ---- checks across records ------------------------------------------------------------ */

typedef struct {
    size_t type;
    const char *id;
    size_t rec;
} id_entry;

static int id_cmp(const void *a, const void *b)
{
    const id_entry *x = a, *y = b;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    int c = strcmp(x->id, y->id);
    if (c != 0)
        return c;
    return x->rec < y->rec ? -1 : x->rec > y->rec;
}

static bool id_known(const id_entry *idx, size_t n, size_t type, const char *id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = idx[mid].type != type ? (idx[mid].type < type ? -1 : 1) : strcmp(idx[mid].id, id);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Duplicate ids, the one plan, references within the plan. */
static int check_across(pf_file *f)
{
    id_entry *idx = calloc(f->n ? f->n : 1, sizeof(*idx));
    if (idx == NULL)
        return -1;
    for (size_t i = 0; i < f->n; i++)
        idx[i] = (id_entry){.type = f->records[i].type, .id = f->records[i].id, .rec = i};
    qsort(idx, f->n, sizeof(*idx), id_cmp);
    for (size_t i = 1; i < f->n; i++) {
        if (idx[i].type == idx[i - 1].type && strcmp(idx[i].id, idx[i - 1].id) == 0) {
            const pf_record *first = &f->records[idx[i - 1].rec];
            char at[192];
            if (f->format == PF_CSV)
                snprintf(at, sizeof(at), "line %u", (unsigned)first->line);
            else
                pf_record_path(first, at, sizeof(at));
            pf_add_error(f, &f->records[idx[i].rec], "id", NULL,
                         "%s %s is already in the file (%s)", types[idx[i].type].name, idx[i].id,
                         at);
        }
    }
    size_t plans = 0;
    for (size_t i = 0; i < f->n; i++) {
        const pf_record *r = &f->records[i];
        if (r->type == PLAN_TYPE && plans++ == 0) {
            f->plan = i;
            f->has_plan = true;
        } else if (r->type == PLAN_TYPE) {
            pf_add_error(f, r, NULL, NULL, "a file holds one plan; this is another");
        }
        const pf_type *t = &types[r->type];
        for (size_t k = 0; k < t->nfields; k++) {
            const pf_field *fd = &t->fields[k];
            const ns_value *v = &r->values[k];
            if (v->is_null || (fd->ref == NULL && fd->ref_type_field == NULL))
                continue;
            size_t target = 0;
            if (fd->ref != NULL) {
                (void)pf_type_find(fd->ref, &target);
            } else {
                int tf = pf_field_index(t, fd->ref_type_field);
                const ns_value *tv = tf >= 0 ? &r->values[tf] : NULL;
                if (tv == NULL || tv->is_null)
                    continue; /* the server says it is required */
                if (pf_type_find(tv->u.s, &target) == NULL) {
                    pf_add_error(f, r, fd->ref_type_field, NULL,
                                 "\"%.40s\" is not a record type of a plan file", tv->u.s);
                    continue;
                }
            }
            if (target == PLAN_TYPE) {
                if (f->has_plan && strcmp(v->u.s, f->records[f->plan].id) == 0)
                    continue;
                if (!id_known(idx, f->n, target, v->u.s))
                    pf_add_error(f, r, fd->name, NULL, "no plan %s in this file", v->u.s);
                continue;
            }
            if (!id_known(idx, f->n, target, v->u.s))
                pf_add_error(f, r, fd->name, NULL, "no %s %s in this file", types[target].name,
                             v->u.s);
        }
    }
    if (plans == 0)
        error_at(f, 0, f->format == PF_JSON ? "$.plan" : "", "plan", NULL, NULL,
                 f->format == PF_JSON ? "the file has no plan (\"plan\": {\"id\": ..., ...})"
                                      : "the file has no row of type plan");
    free(idx);
    return 0;
}

/* ---- JSON ------------------------------------------------------------------------------ */

typedef enum {
    J_START,  /* before the document */
    J_TOP,    /* in the top object */
    J_ARRAY,  /* in a type's array */
    J_RECORD, /* in a record */
    J_SET,    /* in a set field's array */
    J_DONE,
} jstate;

typedef enum {
    K_NONE,
    K_FORMAT,
    K_VERSION,
    K_PLAN,
    K_TYPE,
    K_UNKNOWN,
} jkey;

#define FIELD_NONE (-1)
#define FIELD_ID   (-2)
#define FIELD_BAD  (-3) /* reported: its value is dropped */

typedef struct {
    pf_file *f;
    bool oom;
    jstate st;
    /* A value being dropped (reported already): its open containers, and
     * the state to go back to when it closes. */
    int skip;
    jstate resume;
    /* Top level. */
    jkey key;
    char key_text[80]; /* printable, for paths */
    bool seen_format, seen_version, seen_plan;
    bool seen_type[NTYPES];
    size_t arr_type;
    uint32_t next_index;
    /* The record being read. */
    size_t rec_type;
    uint32_t rec_index;
    char rec_id[PF_UUID_SIZE];
    bool seen_id, id_ok;
    ns_value *vals; /* one per field */
    bool *seen;
    size_t err_mark; /* errors of this record start here */
    int field;
    char field_text[80]; /* the key as a path step */
    char field_name[48]; /* the key, printable */
    /* A set being read. */
    char **items;
    size_t nitems;
    size_t item; /* the set element being read, kept or not: for paths */
    bool set_bad;
} jctx;

static bool key_is_identifier(const unsigned char *k, size_t n)
{
    if (n == 0 || n > FIELD_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
              (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
            return false;
    return true;
}

/* A key as a path step: .name, or ["..."] when it is not a plain name. */
static void key_step(char *out, size_t cap, const unsigned char *k, size_t n)
{
    if (key_is_identifier(k, n)) {
        snprintf(out, cap, ".%.*s", (int)n, (const char *)k);
        return;
    }
    char p[48];
    printable(p, sizeof(p), (const char *)k, n, 40);
    snprintf(out, cap, "[\"%s\"]", p);
}

/* The path of where the parser is: the record (and field, and set item). */
static void jpath(const jctx *x, char *out, size_t cap, bool with_field, long item)
{
    if (x->st == J_TOP || x->st == J_START || x->st == J_DONE) {
        snprintf(out, cap, "$%s", x->key == K_NONE ? "" : x->key_text);
        return;
    }
    if (x->st == J_ARRAY) {
        snprintf(out, cap, "$.%s[%u]", types[x->arr_type].key, (unsigned)(x->next_index - 1));
        return;
    }
    if (x->rec_type == PLAN_TYPE)
        snprintf(out, cap, "$.plan");
    else
        snprintf(out, cap, "$.%s[%u]", types[x->rec_type].key, (unsigned)x->rec_index);
    size_t n = strlen(out);
    if (with_field && x->field != FIELD_NONE)
        snprintf(out + n, cap - n, "%s", x->field_text);
    n = strlen(out);
    if (item >= 0)
        snprintf(out + n, cap - n, "[%ld]", item);
}

static const char *jfield_name(const jctx *x)
{
    if (x->field == FIELD_ID)
        return "id";
    if (x->field >= 0)
        return types[x->rec_type].fields[x->field].name;
    if (x->field == FIELD_BAD)
        return x->field_name;
    return NULL;
}

__attribute__((format(printf, 4, 5))) static void jerr(jctx *x, bool with_field, long item,
                                                       const char *fmt, ...)
{
    char where[192];
    jpath(x, where, sizeof(where), with_field, item);
    bool in_rec = x->st == J_RECORD || x->st == J_SET;
    va_list ap;
    va_start(ap, fmt);
    verror(x->f, 0, where, in_rec ? types[x->rec_type].name : NULL,
           in_rec && x->id_ok ? x->rec_id : NULL, with_field ? jfield_name(x) : NULL, fmt, ap);
    va_end(ap);
}

/* Starts dropping a container value (its opening has just been read). */
static void skip_begin(jctx *x)
{
    x->resume = x->st;
    x->skip = 1;
}

static void rec_begin(jctx *x, size_t type, uint32_t index)
{
    x->rec_type = type;
    x->rec_index = index;
    x->rec_id[0] = '\0';
    x->seen_id = x->id_ok = false;
    x->field = FIELD_NONE;
    x->err_mark = x->f->nerrors;
    for (size_t i = 0; i < types[type].nfields; i++) {
        ns_value_init_null(&x->vals[i], types[type].fields[i].kind);
        x->seen[i] = false;
    }
    x->st = J_RECORD;
}

static void vals_clear(jctx *x)
{
    for (size_t i = 0; i < types[x->rec_type].nfields; i++)
        ns_value_free(&x->vals[i]);
}

static void rec_end(jctx *x)
{
    if (!x->seen_id)
        jerr(x, false, -1, "the record has no \"id\"");
    /* Errors found before the id was read get it now. */
    for (size_t i = x->err_mark; x->id_ok && i < x->f->nerrors; i++)
        if (x->f->errors[i].id[0] == '\0')
            snprintf(x->f->errors[i].id, sizeof(x->f->errors[i].id), "%s", x->rec_id);
    pf_record *r = NULL;
    if (x->id_ok) {
        r = record_add(x->f, x->rec_type, 0, x->rec_index);
        if (r == NULL && x->f->n < PF_MAX_RECORDS)
            x->oom = true;
    }
    if (r != NULL) {
        memcpy(r->id, x->rec_id, sizeof(r->id));
        for (size_t i = 0; i < types[x->rec_type].nfields; i++) {
            ns_value_free(&r->values[i]);
            r->values[i] = x->vals[i]; /* moved */
            ns_value_init_null(&x->vals[i], types[x->rec_type].fields[i].kind);
        }
    } else {
        vals_clear(x);
    }
    x->field = FIELD_NONE;
    x->st = x->rec_type == PLAN_TYPE ? J_TOP : J_ARRAY;
}

static const char *json_kind(int tok)
{
    switch (tok) {
    case 'n':
        return "null";
    case 'b':
        return "a boolean";
    case '#':
        return "a number";
    case 's':
        return "a string";
    case '{':
        return "an object";
    case '[':
        return "an array";
    }
    return "a value";
}

/* A field's value from a scalar token ('n' null, 'b' bool, '#' number, 's'
 * string; text and n its text). */
static void field_scalar(jctx *x, int tok, const char *text, size_t n, bool b)
{
    int fi = x->field;
    if (fi == FIELD_ID) {
        ns_value v;
        /* Null until parsed: a string too long to be a UUID is refused
         * before value_parse, and v is freed either way. */
        ns_value_init_null(&v, NS_KIND_REF);
        char why[128], idtext[PF_UUID_SIZE + 1];
        static const pf_field id_field = {"id", NS_KIND_REF, 0, NULL, NULL};
        snprintf(idtext, sizeof(idtext), "%.*s", (int)(n < PF_UUID_SIZE ? n : PF_UUID_SIZE), text);
        if (tok != 's') {
            jerr(x, true, -1, "the id is a UUID string, not %s", json_kind(tok));
        } else if (n >= PF_UUID_SIZE ||
                   value_parse(&id_field, idtext, n, &v, why, sizeof(why)) != NS_VALUE_OK ||
                   v.is_null) {
            char p[48];
            printable(p, sizeof(p), text, n, 40);
            jerr(x, true, -1, "\"%s\" is not a UUID", p);
            ns_value_free(&v);
        } else {
            snprintf(x->rec_id, sizeof(x->rec_id), "%s", v.u.s);
            x->id_ok = true;
            ns_value_free(&v);
        }
    } else if (fi >= 0 && tok != 'n') { /* null: as if absent */
        const pf_field *fd = &types[x->rec_type].fields[fi];
        ns_value *dst = &x->vals[fi];
        bool fits =
            (fd->kind == NS_KIND_BOOL && tok == 'b') || (fd->kind == NS_KIND_INT && tok == '#') ||
            (fd->kind == NS_KIND_DECIMAL && (tok == '#' || tok == 's')) ||
            ((fd->kind == NS_KIND_TEXT || fd->kind == NS_KIND_DATE || fd->kind == NS_KIND_REF) &&
             tok == 's');
        char why[256];
        ns_value_status vs = NS_VALUE_OK;
        if (!fits) {
            jerr(x, true, -1, "expected %s%s, found %s", pf_kind_phrase(fd->kind),
                 fd->kind == NS_KIND_DECIMAL    ? " (a JSON string or number)"
                 : fd->kind == NS_KIND_TEXT_SET ? " (a JSON array of strings)"
                                                : "",
                 json_kind(tok));
        } else if (tok == 'b') {
            ns_value_init_null(dst, NS_KIND_BOOL);
            dst->is_null = false;
            dst->u.b = b;
        } else {
            char *s = malloc(n + 1);
            if (s == NULL) {
                x->oom = true;
                return;
            }
            memcpy(s, text, n);
            s[n] = '\0';
            vs = value_parse(fd, s, n, dst, why, sizeof(why));
            /* The word null in quotes is text, never a null. */
            if (vs == NS_VALUE_OK && dst->is_null) {
                vs = NS_VALUE_INVALID;
                snprintf(why, sizeof(why), "\"null\" in quotes (write null without quotes)");
            }
            free(s);
        }
        if (vs == NS_VALUE_NOMEM) {
            x->oom = true;
        } else if (vs != NS_VALUE_OK) {
            ns_value_free(dst);
            ns_value_init_null(dst, fd->kind);
            char shown[48];
            printable(shown, sizeof(shown), text, n, 40);
            jerr(x, true, -1, "\"%s\": %s", shown, why);
        }
    }
    x->field = FIELD_NONE;
}

static void set_items_free(jctx *x)
{
    for (size_t i = 0; i < x->nitems; i++)
        free(x->items[i]);
    x->nitems = 0;
}

static int j_scalar(jctx *x, int tok, const char *text, size_t n, bool b)
{
    if (x->skip > 0)
        return 1;
    switch (x->st) {
    case J_START:
        x->st = J_DONE;
        jerr(x, false, -1, "a plan file is a JSON object, not %s", json_kind(tok));
        break;
    case J_TOP:
        if (x->key == K_FORMAT) {
            if (tok != 's' || n != strlen("napsync-plan") || memcmp(text, "napsync-plan", n) != 0)
                jerr(x, false, -1, "must be \"napsync-plan\" (is this a napsync plan file?)");
        } else if (x->key == K_VERSION) {
            if (tok != '#' || n != 1 || text[0] != '1')
                jerr(x, false, -1, "this napsync reads version 1 of the plan file format");
        } else if (x->key == K_PLAN) {
            jerr(x, false, -1, "the plan is a JSON object, not %s", json_kind(tok));
        } else if (x->key == K_TYPE) {
            jerr(x, false, -1, "%s: a JSON array of records, not %s", types[x->arr_type].key,
                 json_kind(tok));
        }
        x->key = K_NONE;
        break;
    case J_ARRAY:
        x->next_index++;
        jerr(x, false, -1, "a record is a JSON object, not %s", json_kind(tok));
        break;
    case J_RECORD:
        field_scalar(x, tok, text, n, b);
        break;
    case J_SET:
        x->item++;
        if (tok != 's') {
            jerr(x, true, (long)x->item - 1, "set items are strings, not %s", json_kind(tok));
            x->set_bad = true;
        } else if (x->nitems >= JSON_MAX_SET_ITEMS) {
            if (!x->set_bad)
                jerr(x, true, (long)x->item - 1, "more than %u items", NS_SET_DEFAULT_MAX_ITEMS);
            x->set_bad = true;
        } else if (memchr(text, '\0', n) != NULL || memchr(text, ',', n) != NULL) {
            jerr(x, true, (long)x->item - 1, "a set item holds no comma and no NUL character");
            x->set_bad = true;
        } else {
            char *s = malloc(n + 1);
            if (s == NULL) {
                x->oom = true;
                return 0;
            }
            memcpy(s, text, n);
            s[n] = '\0';
            x->items[x->nitems++] = s;
        }
        break;
    case J_DONE:
        break;
    }
    return x->oom ? 0 : 1;
}

static int j_null(void *ctx)
{
    return j_scalar(ctx, 'n', "", 0, false);
}

static int j_bool(void *ctx, int b)
{
    return j_scalar(ctx, 'b', b ? "true" : "false", b ? 4 : 5, b != 0);
}

static int j_number(void *ctx, const char *s, size_t n)
{
    return j_scalar(ctx, '#', s, n, false);
}

static int j_string(void *ctx, const unsigned char *s, size_t n)
{
    return j_scalar(ctx, 's', (const char *)s, n, false);
}

static int j_start_map(void *ctx)
{
    jctx *x = ctx;
    if (x->skip > 0) {
        x->skip++;
        return 1;
    }
    switch (x->st) {
    case J_START:
        x->st = J_TOP;
        break;
    case J_TOP:
        if (x->key == K_PLAN) {
            rec_begin(x, PLAN_TYPE, 0);
        } else {
            if (x->key == K_TYPE)
                jerr(x, false, -1, "%s: a JSON array of records, not an object",
                     types[x->arr_type].key);
            else if (x->key == K_FORMAT || x->key == K_VERSION)
                jerr(x, false, -1, "not an object");
            skip_begin(x);
        }
        x->key = K_NONE;
        break;
    case J_ARRAY:
        rec_begin(x, x->arr_type, x->next_index++);
        break;
    case J_RECORD:
        if (x->field >= 0 || x->field == FIELD_ID)
            jerr(x, true, -1, "expected %s, found an object",
                 x->field == FIELD_ID ? "a UUID string"
                                      : pf_kind_phrase(types[x->rec_type].fields[x->field].kind));
        x->field = FIELD_NONE;
        skip_begin(x);
        break;
    case J_SET:
        jerr(x, true, (long)x->item++, "set items are strings, not objects");
        x->set_bad = true;
        skip_begin(x);
        break;
    case J_DONE:
        skip_begin(x);
        break;
    }
    return 1;
}

static int j_map_key(void *ctx, const unsigned char *k, size_t n)
{
    jctx *x = ctx;
    if (x->skip > 0)
        return 1;
    if (x->st == J_TOP) {
        key_step(x->key_text, sizeof(x->key_text), k, n);
        size_t t = NTYPES;
        for (size_t i = 1; i < NTYPES; i++)
            if (strlen(types[i].key) == n && memcmp(types[i].key, k, n) == 0)
                t = i;
        bool *seen = NULL;
        if (n == 6 && memcmp(k, "format", 6) == 0) {
            x->key = K_FORMAT;
            seen = &x->seen_format;
        } else if (n == 7 && memcmp(k, "version", 7) == 0) {
            x->key = K_VERSION;
            seen = &x->seen_version;
        } else if (n == 4 && memcmp(k, "plan", 4) == 0) {
            x->key = K_PLAN;
            seen = &x->seen_plan;
        } else if (t < NTYPES) {
            x->key = K_TYPE;
            x->arr_type = t;
            seen = &x->seen_type[t];
        } else {
            x->key = K_UNKNOWN;
            jerr(x, false, -1,
                 "unknown key (a plan file holds format, version, plan, pillars, objectives, "
                 "results, actions, indicators, indicator_targets, indicator_reports, "
                 "report_values, budget_lines and comments)");
        }
        if (seen != NULL && *seen) {
            jerr(x, false, -1, "given twice");
            x->key = K_UNKNOWN;
        } else if (seen != NULL) {
            *seen = true;
        }
        return 1;
    }
    if (x->st == J_RECORD) {
        key_step(x->field_text, sizeof(x->field_text), k, n);
        const pf_type *t = &types[x->rec_type];
        int fi = FIELD_BAD;
        if (n == 2 && memcmp(k, "id", 2) == 0) {
            fi = FIELD_ID;
        } else {
            for (size_t i = 0; i < t->nfields; i++)
                if (strlen(t->fields[i].name) == n && memcmp(t->fields[i].name, k, n) == 0)
                    fi = (int)i;
        }
        printable(x->field_name, sizeof(x->field_name), (const char *)k, n, 40);
        x->field = FIELD_NONE;
        if (fi == FIELD_BAD) {
            x->field = FIELD_BAD;
            if (strcmp(x->field_name, PF_TENANT_FIELD) == 0)
                jerr(x, true, -1,
                     "%s is implied: every record of the file belongs to the file's plan",
                     PF_TENANT_FIELD);
            else
                jerr(x, true, -1, "%s has no field \"%s\"", t->name, x->field_name);
        } else if (fi == FIELD_ID ? x->seen_id : x->seen[fi]) {
            x->field = fi;
            jerr(x, true, -1, "given twice");
            fi = FIELD_BAD;
        } else if (fi == FIELD_ID) {
            x->seen_id = true;
        } else {
            x->seen[fi] = true;
        }
        x->field = fi;
    }
    return 1;
}

static int j_end_map(void *ctx)
{
    jctx *x = ctx;
    if (x->skip > 0) {
        if (--x->skip == 0)
            x->st = x->resume;
        return 1;
    }
    if (x->st == J_RECORD) {
        rec_end(x);
    } else if (x->st == J_TOP) {
        x->st = J_DONE;
        x->key = K_NONE;
        if (!x->seen_format)
            jerr(x, false, -1, "no \"format\": \"napsync-plan\" (is this a napsync plan file?)");
        if (!x->seen_version)
            jerr(x, false, -1, "no \"version\": 1");
    }
    return x->oom ? 0 : 1;
}

static int j_start_array(void *ctx)
{
    jctx *x = ctx;
    if (x->skip > 0) {
        x->skip++;
        return 1;
    }
    switch (x->st) {
    case J_START:
        jerr(x, false, -1, "a plan file is a JSON object, not an array");
        x->st = J_DONE;
        skip_begin(x);
        break;
    case J_TOP:
        if (x->key == K_TYPE) {
            x->st = J_ARRAY;
            x->next_index = 0;
        } else {
            if (x->key == K_PLAN)
                jerr(x, false, -1, "the plan is one JSON object, not an array");
            else if (x->key == K_FORMAT || x->key == K_VERSION)
                jerr(x, false, -1, "not an array");
            skip_begin(x);
        }
        x->key = K_NONE;
        break;
    case J_ARRAY:
        x->next_index++;
        jerr(x, false, -1, "a record is a JSON object, not an array");
        skip_begin(x);
        break;
    case J_RECORD:
        if (x->field >= 0 && types[x->rec_type].fields[x->field].kind == NS_KIND_TEXT_SET) {
            x->st = J_SET;
            x->nitems = 0;
            x->item = 0;
            x->set_bad = false;
        } else {
            if (x->field >= 0 || x->field == FIELD_ID)
                jerr(x, true, -1, "expected %s, found an array",
                     x->field == FIELD_ID
                         ? "a UUID string"
                         : pf_kind_phrase(types[x->rec_type].fields[x->field].kind));
            x->field = FIELD_NONE;
            skip_begin(x);
        }
        break;
    case J_SET:
        jerr(x, true, (long)x->item++, "set items are strings, not arrays");
        x->set_bad = true;
        skip_begin(x);
        break;
    case J_DONE:
        skip_begin(x);
        break;
    }
    return 1;
}

static void set_end(jctx *x)
{
    const pf_field *fd = &types[x->rec_type].fields[x->field];
    ns_value *dst = &x->vals[x->field];
    x->st = J_RECORD;
    if (!x->set_bad) {
        ns_value v;
        ns_value_init_null(&v, NS_KIND_TEXT_SET);
        v.is_null = false;
        v.u.set.items = x->items;
        v.u.set.n = x->nitems;
        ns_field_type ft = {.kind = NS_KIND_TEXT_SET, .nullable = true};
        char why[256];
        ns_value_status vs = ns_value_check(&ft, &v, why, sizeof(why));
        if (vs == NS_VALUE_OK) {
            /* The items move into the record's value. */
            char **items = malloc((v.u.set.n ? v.u.set.n : 1) * sizeof(*items));
            if (items == NULL) {
                x->oom = true;
            } else {
                memcpy(items, v.u.set.items, v.u.set.n * sizeof(*items));
                ns_value_free(dst);
                *dst = v;
                dst->u.set.items = items;
                x->nitems = 0; /* owned by dst now */
            }
        } else if (vs == NS_VALUE_NOMEM) {
            x->oom = true;
        } else {
            jerr(x, true, -1, "not %s: %s", pf_kind_phrase(fd->kind), why);
            x->nitems = v.u.set.n; /* check may have dropped and freed empty items */
        }
    }
    set_items_free(x);
    x->field = FIELD_NONE;
}

static int j_end_array(void *ctx)
{
    jctx *x = ctx;
    if (x->skip > 0) {
        if (--x->skip == 0)
            x->st = x->resume;
        return 1;
    }
    if (x->st == J_ARRAY)
        x->st = J_TOP;
    else if (x->st == J_SET)
        set_end(x);
    return x->oom ? 0 : 1;
}

static const yajl_callbacks jcallbacks = {
    .yajl_null = j_null,
    .yajl_boolean = j_bool,
    .yajl_number = j_number,
    .yajl_string = j_string,
    .yajl_start_map = j_start_map,
    .yajl_map_key = j_map_key,
    .yajl_end_map = j_end_map,
    .yajl_start_array = j_start_array,
    .yajl_end_array = j_end_array,
};

/* Line and column (from 1, in bytes) of offset off. */
static void line_col(const char *data, size_t off, uint32_t *line, uint32_t *col)
{
    uint32_t l = 1;
    size_t start = 0;
    for (size_t i = 0; i < off; i++) {
        if (data[i] == '\n') {
            l++;
            start = i + 1;
        }
    }
    *line = l;
    *col = (uint32_t)(off - start + 1);
}

static int parse_json(pf_file *f, const char *data, size_t len)
{
    size_t maxf = 0;
    for (size_t i = 0; i < NTYPES; i++)
        maxf = types[i].nfields > maxf ? types[i].nfields : maxf;
    jctx x;
    memset(&x, 0, sizeof(x));
    x.f = f;
    x.st = J_START;
    x.field = FIELD_NONE;
    x.vals = calloc(maxf, sizeof(*x.vals));
    x.seen = calloc(maxf, sizeof(*x.seen));
    x.items = calloc(JSON_MAX_SET_ITEMS, sizeof(*x.items));
    yajl_handle h = NULL;
    int rc = -1;
    if (x.vals == NULL || x.seen == NULL || x.items == NULL ||
        (h = yajl_alloc(&jcallbacks, NULL, &x)) == NULL)
        goto done;
    for (size_t i = 0; i < maxf; i++)
        ns_value_init_null(&x.vals[i], NS_KIND_TEXT);
    yajl_status st = yajl_parse(h, (const unsigned char *)data, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (x.oom || st == yajl_status_client_canceled)
        goto done;
    if (st != yajl_status_ok) {
        unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)data, len);
        size_t off = yajl_get_bytes_consumed(h);
        uint32_t line, col;
        line_col(data, off < len ? off : len, &line, &col);
        char text[200];
        const char *m = msg ? (const char *)msg : "parse error";
        if (strncmp(m, "parse error: ", 13) == 0)
            m += 13;
        printable(text, sizeof(text), m, strcspn(m, "\n"), 160);
        char where[192];
        jpath(&x, where, sizeof(where), x.st == J_RECORD || x.st == J_SET, -1);
        pf_error *e = error_new(f);
        if (e != NULL) {
            e->line = line;
            e->column = col;
            snprintf(e->where, sizeof(e->where), "%s", where);
            snprintf(e->message, sizeof(e->message),
                     "not valid JSON: %s (reading stopped here; nothing after it was checked)",
                     text);
        }
        if (msg)
            yajl_free_error(h, msg);
    } else if (x.st != J_DONE) {
        error_at(f, 0, "$", NULL, NULL, NULL, "the file is empty");
    }
    rc = 0;
done:
    if (h)
        yajl_free(h);
    for (size_t i = 0; x.vals != NULL && i < maxf; i++)
        ns_value_free(&x.vals[i]);
    set_items_free(&x);
    free(x.items);
    free(x.vals);
    free(x.seen);
    return rc;
}

/* ---- CSV ------------------------------------------------------------------------------- */

#define COL_TYPE (-1)
#define COL_ID   (-2)
#define COL_BAD  (-3) /* reported in the header: its cells are ignored */

typedef struct {
    char *s; /* NULL: an empty cell without quotes */
    size_t n;
} ccell;

typedef struct {
    pf_file *f;
    bool oom;
    bool header_done;
    size_t ncols;
    int col_kind[CSV_MAX_COLUMNS]; /* COL_* or 0 for a field column */
    char col_name[CSV_MAX_COLUMNS][FIELD_NAME_MAX + 1];
    /* Per column and type: the field's index, or -1. */
    int col_field[CSV_MAX_COLUMNS][NTYPES];
    ccell cells[CSV_MAX_COLUMNS];
    size_t ncells;
    size_t extra; /* cells beyond the header's columns */
    bool in_row;
    uint32_t row_line;
    bool stop; /* a header so wrong that the rows cannot be read */
} cctx;

static void cells_free(cctx *x)
{
    for (size_t i = 0; i < x->ncells; i++)
        free(x->cells[i].s);
    x->ncells = 0;
    x->extra = 0;
}

static void c_field(void *s, size_t n, void *data)
{
    cctx *x = data;
    if (x->oom)
        return;
    size_t cap = x->header_done ? x->ncols : CSV_MAX_COLUMNS;
    if (x->ncells >= cap) {
        x->extra++;
        return;
    }
    ccell *c = &x->cells[x->ncells];
    c->s = NULL;
    c->n = n;
    if (s != NULL) {
        c->s = malloc(n + 1);
        if (c->s == NULL) {
            x->oom = true;
            return;
        }
        memcpy(c->s, s, n);
        c->s[n] = '\0';
    }
    x->ncells++;
}

static void header_row(cctx *x)
{
    pf_file *f = x->f;
    x->header_done = true;
    if (x->extra > 0)
        error_at(f, x->row_line, NULL, NULL, NULL, NULL, "more than %u columns", CSV_MAX_COLUMNS);
    x->ncols = x->ncells;
    if (x->ncells < 2 || x->cells[0].s == NULL || strcmp(x->cells[0].s, "type") != 0 ||
        x->cells[1].s == NULL || strcmp(x->cells[1].s, "id") != 0) {
        error_at(f, x->row_line, NULL, NULL, NULL, NULL,
                 "the first line is the header, and its first columns are type,id");
        x->stop = true;
        return;
    }
    x->col_kind[0] = COL_TYPE;
    x->col_kind[1] = COL_ID;
    for (size_t c = 2; c < x->ncells; c++) {
        const ccell *cell = &x->cells[c];
        char name[48];
        printable(name, sizeof(name), cell->s ? cell->s : "", cell->n, 40);
        x->col_kind[c] = 0;
        snprintf(x->col_name[c], sizeof(x->col_name[c]), "%s", name);
        bool any = false;
        for (size_t t = 0; t < NTYPES; t++) {
            x->col_field[c][t] =
                cell->s && strlen(cell->s) == cell->n ? pf_field_index(&types[t], cell->s) : -1;
            any = any || x->col_field[c][t] >= 0;
        }
        for (size_t d = 2; d < c && any; d++) {
            if (x->col_kind[d] == 0 && strcmp(x->col_name[d], name) == 0) {
                error_at(f, x->row_line, NULL, NULL, NULL, name, "column %s is given twice", name);
                any = false;
                x->col_kind[c] = COL_BAD;
            }
        }
        if (x->col_kind[c] == COL_BAD)
            continue;
        if (!any) {
            x->col_kind[c] = COL_BAD;
            if (cell->n == 0)
                error_at(f, x->row_line, NULL, NULL, NULL, NULL, "column %zu has no name", c + 1);
            else if (strcmp(name, PF_TENANT_FIELD) == 0)
                error_at(f, x->row_line, NULL, NULL, NULL, name,
                         "%s is implied: every record of the file belongs to the file's plan",
                         PF_TENANT_FIELD);
            else
                error_at(f, x->row_line, NULL, NULL, NULL, name,
                         "no record type has a field \"%s\"", name);
        }
    }
}

static void data_row(cctx *x)
{
    pf_file *f = x->f;
    uint32_t line = x->row_line;
    bool blank = true;
    for (size_t c = 0; c < x->ncells && blank; c++)
        blank = x->cells[c].s == NULL || x->cells[c].n == 0;
    if (blank && x->extra == 0)
        return; /* a row of empty cells, as spreadsheets leave */
    if (x->extra > 0)
        error_at(f, line, NULL, NULL, NULL, NULL, "more cells than the header's %zu columns",
                 x->ncols);
    const ccell *tc = &x->cells[0];
    size_t t;
    char tname[48];
    printable(tname, sizeof(tname), tc->s ? tc->s : "", tc->n, 40);
    if (tc->s == NULL || tc->n == 0) {
        error_at(f, line, NULL, NULL, NULL, "type", "no record type");
        return;
    }
    if (strlen(tc->s) != tc->n || pf_type_find(tc->s, &t) == NULL) {
        error_at(f, line, NULL, NULL, NULL, "type",
                 "\"%s\" is not a record type (plan, pillar, objective, result, action, "
                 "indicator, indicator_target, indicator_report, report_value, budget_line, "
                 "comment)",
                 tname);
        return;
    }
    const pf_type *ty = &types[t];
    char id[PF_UUID_SIZE] = "";
    const ccell *ic = x->ncells > 1 ? &x->cells[1] : NULL;
    static const pf_field id_field = {"id", NS_KIND_REF, 0, NULL, NULL};
    ns_value idv;
    char why[256];
    if (ic == NULL || ic->s == NULL || ic->n == 0) {
        error_at(f, line, NULL, ty->name, NULL, "id", "no id");
    } else if (value_parse(&id_field, ic->s, ic->n, &idv, why, sizeof(why)) != NS_VALUE_OK ||
               idv.is_null) {
        char p[48];
        printable(p, sizeof(p), ic->s, ic->n, 40);
        error_at(f, line, NULL, ty->name, NULL, "id", "\"%s\" is not a UUID", p);
        ns_value_free(&idv);
    } else {
        snprintf(id, sizeof(id), "%s", idv.u.s);
        ns_value_free(&idv);
    }
    pf_record *r = NULL;
    if (id[0] != '\0') {
        r = record_add(f, t, line, 0);
        if (r == NULL) {
            x->oom = f->n < PF_MAX_RECORDS;
            return;
        }
        memcpy(r->id, id, sizeof(r->id));
    }
    for (size_t c = 2; c < x->ncells; c++) {
        const ccell *cell = &x->cells[c];
        if (x->col_kind[c] == COL_BAD || cell->s == NULL)
            continue;
        int fi = x->col_field[c][t];
        if (fi < 0) {
            if (cell->n > 0)
                error_at(f, line, NULL, ty->name, id, x->col_name[c], "%s has no field %s",
                         ty->name, x->col_name[c]);
            continue;
        }
        const pf_field *fd = &ty->fields[fi];
        if (cell->n == 0 && fd->kind != NS_KIND_TEXT && fd->kind != NS_KIND_TEXT_SET)
            continue; /* "" is blank too */
        ns_value v;
        ns_value_status vs = value_parse(fd, cell->s, cell->n, &v, why, sizeof(why));
        if (vs == NS_VALUE_NOMEM) {
            x->oom = true;
            return;
        }
        if (vs != NS_VALUE_OK) {
            char shown[48];
            printable(shown, sizeof(shown), cell->s, cell->n, 40);
            error_at(f, line, NULL, ty->name, id, fd->name, "\"%s\": %s", shown, why);
        } else if (r != NULL) {
            ns_value_free(&r->values[fi]);
            r->values[fi] = v;
        } else {
            ns_value_free(&v);
        }
    }
}

static void c_row(int term, void *data)
{
    (void)term;
    cctx *x = data;
    x->in_row = false;
    if (!x->oom && !x->stop) {
        if (!x->header_done)
            header_row(x);
        else
            data_row(x);
    }
    cells_free(x);
}

static int no_space(unsigned char c)
{
    (void)c;
    return 0; /* RFC 4180: spaces belong to the field */
}

/* The longest cell read. A text holds at most NS_TEXT_DEFAULT_MAX bytes
 * and a set at most 256 items of 100; a longer cell is refused as it
 * grows, instead of being gathered whole first: libcsv grows its buffer by
 * one block at a time, which costs a copy of the cell per block where
 * realloc cannot extend in place. The reader is fed this much at a time. */
#define CSV_MAX_CELL_BYTES (64u * 1024u)
#define CSV_FEED_BYTES     (16u * 1024u)

static int parse_csv(pf_file *f, const char *data, size_t len)
{
    cctx *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    x->f = f;
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL | CSV_EMPTY_IS_NULL) != 0) {
        free(x);
        return -1;
    }
    csv_set_space_func(&p, no_space);
    const char *s = data, *end = data + len;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3; /* the byte order mark spreadsheets write */
    /* Fed a line at a time, so that every row knows the line it starts on. */
    uint32_t line = 1;
    bool syntax = false;
    while (s < end && !x->oom && !x->stop) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) + 1 : (size_t)(end - s);
        if (!x->in_row) {
            for (size_t i = 0; i < n && !x->in_row; i++)
                x->in_row = s[i] != '\r' && s[i] != '\n';
            if (x->in_row)
                x->row_line = line;
        }
        size_t fed = 0;
        bool refused = false, too_long = false;
        while (fed < n && !refused && !too_long) {
            size_t k = n - fed < CSV_FEED_BYTES ? n - fed : CSV_FEED_BYTES;
            refused = csv_parse(&p, s + fed, k, c_field, c_row, x) != k;
            fed += k;
            too_long = p.entry_pos > CSV_MAX_CELL_BYTES;
        }
        if (too_long && !refused) {
            syntax = true;
            error_at(f, line, NULL, NULL, NULL, NULL,
                     "a value longer than %u bytes (reading stopped here)", CSV_MAX_CELL_BYTES);
            break;
        }
        if (refused) {
            if (csv_error(&p) == CSV_ENOMEM) {
                x->oom = true;
            } else {
                syntax = true;
                error_at(f, line, NULL, NULL, NULL, NULL,
                         "not valid CSV (RFC 4180): a quote inside a field without quotes, or "
                         "text after a closing quote (reading stopped here)");
            }
            break;
        }
        s += n;
        line++;
    }
    if (!syntax && !x->oom && !x->stop && csv_fini(&p, c_field, c_row, x) != 0 &&
        csv_error(&p) == CSV_EPARSE)
        error_at(f, x->row_line, NULL, NULL, NULL, NULL,
                 "a quoted field is not closed before the end of the file");
    if (!x->header_done && !x->oom && f->errors_seen == 0)
        error_at(f, 1, NULL, NULL, NULL, NULL, "the file is empty (no header line)");
    csv_free(&p);
    cells_free(x);
    bool oom = x->oom;
    free(x);
    return oom ? -1 : 0;
}

int pf_parse(pf_file *f, pf_format fmt, const char *data, size_t len)
{
    f->format = fmt;
    if (len > PF_MAX_FILE_BYTES) {
        error_at(f, 0, NULL, NULL, NULL, NULL, "larger than %u bytes", PF_MAX_FILE_BYTES);
        return 0;
    }
    int rc = fmt == PF_JSON ? parse_json(f, data, len) : parse_csv(f, data, len);
    if (rc == 0)
        rc = check_across(f);
    if (rc == 0 && fmt == PF_CSV) {
        /* By line (stable: the order found within a line stays). */
        for (size_t i = 1; i < f->nerrors; i++) {
            pf_error e = f->errors[i];
            size_t j = i;
            for (; j > 0 && f->errors[j - 1].line > e.line; j--)
                f->errors[j] = f->errors[j - 1];
            f->errors[j] = e;
        }
    }
    return rc;
}

/* ---- writing --------------------------------------------------------------------------- */

struct pf_writer {
    pf_format fmt;
    FILE *out;
    bool failed;
    bool started;
    size_t type;     /* of the last record */
    bool array_open; /* JSON: the array of `type` */
    char last_id[PF_UUID_SIZE];
    yajl_gen g;
    /* CSV: the header's columns and, per type, where each field goes. */
    const char *cols[CSV_MAX_COLUMNS];
    size_t ncols;
    int col_of[NTYPES][CSV_MAX_COLUMNS]; /* field index -> column */
};

static void gen_print(void *ctx, const char *s, size_t n)
{
    pf_writer *w = ctx;
    if (fwrite(s, 1, n, w->out) != n)
        w->failed = true;
}

static bool gen_ok(pf_writer *w, yajl_gen_status st)
{
    if (st != yajl_gen_status_ok)
        w->failed = true;
    return !w->failed;
}

static bool gen_str(pf_writer *w, const char *s)
{
    return gen_ok(w, yajl_gen_string(w->g, (const unsigned char *)s, strlen(s)));
}

pf_writer *pf_writer_new(pf_format fmt, FILE *out)
{
    pf_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->fmt = fmt;
    w->out = out;
    if (fmt == PF_JSON) {
        w->g = yajl_gen_alloc(NULL);
        if (w->g == NULL) {
            free(w);
            return NULL;
        }
        yajl_gen_config(w->g, yajl_gen_beautify, 1);
        yajl_gen_config(w->g, yajl_gen_indent_string, "  ");
        yajl_gen_config(w->g, yajl_gen_validate_utf8, 1);
        yajl_gen_config(w->g, yajl_gen_print_callback, gen_print, w);
        return w;
    }
    /* The union of every type's fields, in the order they first appear. */
    w->cols[w->ncols++] = "type";
    w->cols[w->ncols++] = "id";
    for (size_t t = 0; t < NTYPES; t++) {
        for (size_t i = 0; i < types[t].nfields; i++) {
            size_t c = 2;
            while (c < w->ncols && strcmp(w->cols[c], types[t].fields[i].name) != 0)
                c++;
            if (c == w->ncols)
                w->cols[w->ncols++] = types[t].fields[i].name;
            w->col_of[t][i] = (int)c;
        }
    }
    return w;
}

static void csv_cell(pf_writer *w, const char *s, bool quote_empty)
{
    size_t n = strlen(s);
    bool quote = (n == 0 && quote_empty) || strpbrk(s, ",\"\r\n") != NULL ||
                 (n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t'));
    if (quote) {
        if (csv_fwrite(w->out, s, n) != 0)
            w->failed = true;
    } else if (fwrite(s, 1, n, w->out) != n) {
        w->failed = true;
    }
}

static int begin(pf_writer *w)
{
    if (w->started)
        return 0;
    w->started = true;
    if (w->fmt == PF_JSON) {
        if (!gen_ok(w, yajl_gen_map_open(w->g)) || !gen_str(w, "format") ||
            !gen_str(w, "napsync-plan") || !gen_str(w, "version") ||
            !gen_ok(w, yajl_gen_integer(w->g, 1)))
            return -1;
        return 0;
    }
    for (size_t c = 0; c < w->ncols; c++) {
        if (c > 0 && fputc(',', w->out) == EOF)
            w->failed = true;
        csv_cell(w, w->cols[c], false);
    }
    if (fputs("\r\n", w->out) == EOF)
        w->failed = true;
    return w->failed ? -1 : 0;
}

/* JSON: the array of type t, open (closing the one before). Types without
 * records get no array. */
static int json_advance(pf_writer *w, size_t t)
{
    if (w->array_open && w->type == t)
        return 0;
    if (w->array_open && !gen_ok(w, yajl_gen_array_close(w->g)))
        return -1;
    w->array_open = false;
    if (!gen_str(w, types[t].key) || !gen_ok(w, yajl_gen_array_open(w->g)))
        return -1;
    w->array_open = true;
    return 0;
}

static int json_value(pf_writer *w, const ns_value *v)
{
    switch (v->kind) {
    case NS_KIND_BOOL:
        return gen_ok(w, yajl_gen_bool(w->g, v->u.b)) ? 0 : -1;
    case NS_KIND_INT:
        return gen_ok(w, yajl_gen_integer(w->g, (long long)v->u.i)) ? 0 : -1;
    case NS_KIND_TEXT_SET:
        if (!gen_ok(w, yajl_gen_array_open(w->g)))
            return -1;
        for (size_t i = 0; i < v->u.set.n; i++)
            if (!gen_str(w, v->u.set.items[i]))
                return -1;
        return gen_ok(w, yajl_gen_array_close(w->g)) ? 0 : -1;
    default: /* decimals as strings: exact */
        return gen_str(w, v->u.s) ? 0 : -1;
    }
}

int pf_writer_record(pf_writer *w, size_t type, const char *id, const ns_value *values)
{
    if (w == NULL || w->failed || type >= NTYPES || id == NULL || values == NULL)
        return -1;
    bool first = !w->started;
    if (first ? type != PLAN_TYPE
              : (type < w->type || (type == w->type && strcmp(id, w->last_id) <= 0) ||
                 type == PLAN_TYPE))
        return -1; /* out of order, or a second plan */
    if (begin(w) != 0)
        return -1;
    const pf_type *t = &types[type];
    if (w->fmt == PF_JSON) {
        if (type == PLAN_TYPE ? !gen_str(w, "plan") : json_advance(w, type) != 0)
            return -1;
        if (!gen_ok(w, yajl_gen_map_open(w->g)) || !gen_str(w, "id") || !gen_str(w, id))
            return -1;
        for (size_t i = 0; i < t->nfields; i++) {
            if (values[i].is_null)
                continue;
            if (!gen_str(w, t->fields[i].name) || json_value(w, &values[i]) != 0)
                return -1;
        }
        if (!gen_ok(w, yajl_gen_map_close(w->g)))
            return -1;
    } else {
        const char *cells[CSV_MAX_COLUMNS] = {t->name, id};
        char *owned[CSV_MAX_COLUMNS] = {NULL};
        bool quote_empty[CSV_MAX_COLUMNS] = {false};
        for (size_t i = 0; i < t->nfields && !w->failed; i++) {
            if (values[i].is_null)
                continue;
            int c = w->col_of[type][i];
            owned[c] = ns_value_format(&values[i]);
            if (owned[c] == NULL)
                w->failed = true;
            cells[c] = owned[c];
            quote_empty[c] = true; /* "" is the empty text or set; blank is null */
        }
        for (size_t c = 0; c < w->ncols && !w->failed; c++) {
            if (c > 0 && fputc(',', w->out) == EOF)
                w->failed = true;
            if (cells[c] != NULL)
                csv_cell(w, cells[c], quote_empty[c]);
        }
        if (!w->failed && fputs("\r\n", w->out) == EOF)
            w->failed = true;
        for (size_t c = 0; c < w->ncols; c++)
            free(owned[c]);
        if (w->failed)
            return -1;
    }
    w->type = type;
    snprintf(w->last_id, sizeof(w->last_id), "%s", id);
    return w->failed ? -1 : 0;
}

int pf_writer_finish(pf_writer *w)
{
    if (w == NULL || w->failed || !w->started)
        return -1; /* a plan file has its plan */
    if (w->fmt == PF_JSON) {
        if (w->array_open && !gen_ok(w, yajl_gen_array_close(w->g)))
            return -1;
        w->array_open = false;
        if (!gen_ok(w, yajl_gen_map_close(w->g)))
            return -1;
    }
    return w->failed ? -1 : 0;
}

void pf_writer_free(pf_writer *w)
{
    if (w == NULL)
        return;
    if (w->g)
        yajl_gen_free(w->g);
    free(w);
}
