/* napsync import plan FILE: all or nothing.
 *
 * 1. The whole file is read and checked here (syntax, kinds, unknown
 *    types and fields, duplicate ids, references within the plan); any
 *    problem: every one is printed with its line (CSV) or path (JSON) and
 *    field, and nothing connects.
 * 2. The records go to the server as create mutations in one Push with
 *    mode DRY_RUN: the server answers each as it would, storing nothing;
 *    every refusal is mapped back to its record's line or path and field.
 * 3. Only when none is refused, the same mutations go in one Push with
 *    mode ATOMIC: one transaction, all applied or none (a change made
 *    meanwhile by someone else can still refuse it; then nothing was
 *    imported, and the reasons are printed). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <yajl/yajl_gen.h>

#include "napsync.h"
#include "planfile.h"
#include "planio.h"
#include "value.h"

/* Longest file name echoed in messages. */
#define IMPORT_MAX_SHOWN 200

typedef struct {
    const cli_env *env;
    const char *file; /* as shown */
    pf_file f;
    size_t *order; /* mutation i is record order[i] */
    /* Mutation i's step: STEP_CREATE, or a report's STEP_SUBMIT or
     * STEP_APPROVE after its breakdown (build_mutations). */
    unsigned char *step;
    size_t n;
    ns_mutation *muts;
    ns_field_view *views; /* every mutation's, one after the other */
    char **text;          /* the views' values */
    size_t ntext;
    size_t refused; /* answers that were not "applied" */
    size_t aborted; /* ATOMIC: not applied because of another */
    /* ATOMIC refused by the database as a whole: its reason, once. */
    char abort_reason[512];
    char abort_field[64];
} import_run;

/* ---- output ------------------------------------------------------------------------- */

static void gen_print(void *ctx, const char *s, size_t n)
{
    fwrite(s, 1, n, ctx);
}

/* A JSON line on stdout, built with yajl (escaping, UTF-8). */
static yajl_gen line_begin(void)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    yajl_gen_config(g, yajl_gen_print_callback, gen_print, stdout);
    yajl_gen_map_open(g);
    return g;
}

static void line_end(yajl_gen g)
{
    if (g == NULL)
        return;
    yajl_gen_map_close(g);
    yajl_gen_free(g);
    putchar('\n');
}

static void put_str(yajl_gen g, const char *key, const char *value)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    if (value == NULL || value[0] == '\0')
        yajl_gen_null(g);
    else if (yajl_gen_string(g, (const unsigned char *)value, strlen(value)) != yajl_gen_status_ok)
        yajl_gen_string(g, (const unsigned char *)"?", 1); /* not UTF-8: file names may not be */
}

static void put_num(yajl_gen g, const char *key, uint64_t v, bool null_if_zero)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    if (null_if_zero && v == 0)
        yajl_gen_null(g);
    else
        yajl_gen_integer(g, (long long)v);
}

static void print_error(const import_run *r, const pf_error *e)
{
    /* stderr: FILE:LINE[:COL]: [PATH: ][TYPE ID: ][FIELD: ]MESSAGE */
    fprintf(stderr, "napsync: %s", r->file);
    if (e->line && e->column)
        fprintf(stderr, ":%u:%u", e->line, e->column);
    else if (e->line)
        fprintf(stderr, ":%u", e->line);
    fputs(": ", stderr);
    if (e->where[0]) {
        fprintf(stderr, "%s: ", e->where);
    } else {
        if (e->type[0])
            fprintf(stderr, "%s%s%s: ", e->type, e->id[0] ? " " : "", e->id);
        if (e->field[0])
            fprintf(stderr, "%s: ", e->field);
    }
    if (e->code[0])
        fprintf(stderr, "%s (%s)\n", e->message, e->code);
    else
        fprintf(stderr, "%s\n", e->message);
    if (!r->env->json)
        return;
    yajl_gen g = line_begin();
    if (g == NULL)
        return;
    put_str(g, "file", r->file);
    put_num(g, "line", e->line, true);
    put_num(g, "column", e->column, true);
    put_str(g, "path", e->where);
    put_str(g, "type", e->type);
    put_str(g, "id", e->id);
    put_str(g, "field", e->field);
    put_str(g, "code", e->code);
    put_str(g, "message", e->message);
    line_end(g);
}

/* Prints every problem found and reports the outcome. */
static int report_problems(import_run *r, ns_status st, const char *what)
{
    for (size_t i = 0; i < r->f.nerrors; i++)
        print_error(r, &r->f.errors[i]);
    char msg[512];
    size_t more = r->f.errors_seen - r->f.nerrors;
    snprintf(msg, sizeof(msg), "%s: %zu problem%s %s%s; nothing was imported", r->file,
             r->f.errors_seen, r->f.errors_seen == 1 ? "" : "s", what,
             more ? " (the first ones are shown)" : "");
    return r->env->fail(r->env->ud, st, msg);
}

/* ---- the file ---------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Reads FILE whole into *out (NUL-terminated). Returns 0 or an exit code. */
static int read_file(const cli_env *env, const char *path, const char *shown, char **out,
                     size_t *len)
{
    char msg[512];
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        snprintf(msg, sizeof(msg), "%s: cannot open: %s", shown, strerror(errno));
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        snprintf(msg, sizeof(msg), "%s: not a regular file", shown);
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    if ((uint64_t)sb.st_size > PF_MAX_FILE_BYTES) {
        fclose(fp);
        snprintf(msg, sizeof(msg), "%s: larger than %u bytes (%lld): a plan file is smaller", shown,
                 PF_MAX_FILE_BYTES, (long long)sb.st_size);
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    size_t cap = (size_t)sb.st_size + 1;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fclose(fp);
        return env->fail(env->ud, NS_ERR_NOMEM, "out of memory");
    }
    /* Read up to the limit, whatever the size said: the file may grow. */
    size_t n = 0, got;
    while ((got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap) {
            if (cap > PF_MAX_FILE_BYTES) {
                free(buf);
                fclose(fp);
                snprintf(msg, sizeof(msg), "%s: larger than %u bytes", shown, PF_MAX_FILE_BYTES);
                return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
            }
            size_t ncap = cap * 2 > PF_MAX_FILE_BYTES + 1u ? PF_MAX_FILE_BYTES + 1u : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (nb == NULL) {
                free(buf);
                fclose(fp);
                return env->fail(env->ud, NS_ERR_NOMEM, "out of memory");
            }
            buf = nb;
            cap = ncap;
        }
    }
    bool failed = ferror(fp) != 0;
    fclose(fp);
    if (failed) {
        free(buf);
        snprintf(msg, sizeof(msg), "%s: cannot read", shown);
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* ---- mutations ------------------------------------------------------------------- */

/* The report a record breaks down (a report_value's report_id), or NULL. */
static const char *report_of(const pf_record *rec, size_t value_type, int report_field)
{
    if (rec->type != value_type || report_field < 0 || rec->values[report_field].is_null)
        return NULL;
    return rec->values[report_field].u.s;
}

/* For by_report: qsort takes no context. */
static const pf_file *sort_file;
static size_t sort_type;
static int sort_field;

static int by_report(const void *a, const void *b)
{
    const char *x = report_of(&sort_file->records[*(const size_t *)a], sort_type, sort_field);
    const char *y = report_of(&sort_file->records[*(const size_t *)b], sort_type, sort_field);
    int c = strcmp(x, y);
    return c ? c : (*(const size_t *)a < *(const size_t *)b ? -1 : 1);
}

/* The order of the mutations: the plan, then the file's order, except that
 * each report is followed at once by its breakdown. The server's dry run
 * judges each mutation on the state the ones before it leave whenever it
 * has to search for the ones at fault, and a report's breakdown sums to
 * its value only once all of it is there: kept together, a search cuts
 * into as few of them as it can. */
static int order_records(import_run *r)
{
    const pf_file *f = &r->f;
    size_t vt, rt;
    const pf_type *vtype = pf_type_find("report_value", &vt);
    (void)pf_type_find("indicator_report", &rt);
    int rf = pf_field_index(vtype, "report_id");
    size_t nvals = 0;
    for (size_t i = 0; i < f->n; i++)
        nvals += report_of(&f->records[i], vt, rf) != NULL;
    size_t *vals = calloc(nvals ? nvals : 1, sizeof(*vals));
    bool *placed = calloc(f->n, sizeof(*placed));
    if (vals == NULL || placed == NULL) {
        free(vals);
        free(placed);
        return -1;
    }
    size_t nv = 0;
    for (size_t i = 0; i < f->n; i++)
        if (report_of(&f->records[i], vt, rf) != NULL)
            vals[nv++] = i;
    sort_file = f;
    sort_type = vt;
    sort_field = rf;
    qsort(vals, nv, sizeof(*vals), by_report);
    size_t k = 0;
    r->order[k++] = f->plan;
    placed[f->plan] = true;
    for (size_t i = 0; i < f->n; i++) {
        const pf_record *rec = &f->records[i];
        if (placed[i] || report_of(rec, vt, rf) != NULL)
            continue; /* a breakdown goes after its report */
        r->order[k++] = i;
        placed[i] = true;
        if (rec->type != rt)
            continue;
        /* Its breakdown: the values naming it, found by binary search. */
        size_t lo = 0, hi = nv;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(report_of(&f->records[vals[mid]], vt, rf), rec->id) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < nv && strcmp(report_of(&f->records[vals[lo]], vt, rf), rec->id) == 0; lo++) {
            r->order[k++] = vals[lo];
            placed[vals[lo]] = true;
        }
    }
    /* Values of a report the file does not hold (the file check refused
     * those already; kept for completeness). */
    for (size_t i = 0; i < f->n; i++)
        if (!placed[i])
            r->order[k++] = i;
    free(vals);
    free(placed);
    return 0;
}

enum { STEP_CREATE, STEP_SUBMIT, STEP_APPROVE };

/* How many workflow steps follow the create of record i: a submitted or
 * approved report with a breakdown in the file is created as a draft, its
 * values follow, then it is submitted (and approved): the server checks
 * that a breakdown adds up when a report is submitted, so it must be
 * complete by then, and a dry run's search for faults never judges a
 * submitted report on half its breakdown. 0 for every other record. */
static int workflow_steps(const import_run *r, size_t i, int status_field, size_t report_type,
                          const bool *has_breakdown)
{
    const pf_record *rec = &r->f.records[i];
    if (rec->type != report_type || status_field < 0 || !has_breakdown[i] ||
        rec->values[status_field].is_null)
        return 0;
    const char *status = rec->values[status_field].u.s;
    return strcmp(status, "submitted") == 0 ? 1 : strcmp(status, "approved") == 0 ? 2 : 0;
}

/* Marks the reports that the file breaks down. */
static void find_breakdowns(const import_run *r, size_t report_type, bool *has)
{
    size_t vt;
    const pf_type *vtype = pf_type_find("report_value", &vt);
    int rf = pf_field_index(vtype, "report_id");
    for (size_t i = 0; i < r->f.n; i++) {
        const char *report = report_of(&r->f.records[i], vt, rf);
        for (size_t j = 0; report != NULL && j < r->f.n; j++) {
            const pf_record *rec = &r->f.records[j];
            if (rec->type == report_type && strcmp(rec->id, report) == 0) {
                has[j] = true;
                break;
            }
        }
    }
}

/* One create per record (in the order above), plus the workflow steps of
 * reports created as drafts (workflow_steps); every record but the plan
 * names the plan in its tenant field. Returns 0 or -1 (out of memory). */
static int build_mutations(import_run *r)
{
    pf_file *f = &r->f;
    const pf_record *plan = &f->records[f->plan];
    size_t rt;
    const pf_type *rtype = pf_type_find("indicator_report", &rt);
    int sf = pf_field_index(rtype, "status");
    bool *has = calloc(f->n ? f->n : 1, sizeof(*has));
    size_t *order = calloc(f->n ? f->n : 1, sizeof(*order));
    if (has == NULL || order == NULL) {
        free(has);
        free(order);
        return -1;
    }
    find_breakdowns(r, rt, has);
    size_t nviews = 0, steps = 0;
    for (size_t i = 0; i < f->n; i++) {
        const pf_type *t = pf_type_at(f->records[i].type);
        nviews += t->nfields + 1;
        steps += (size_t)workflow_steps(r, i, sf, rt, has);
    }
    r->n = f->n;
    r->order = order;
    if (order_records(r) != 0) {
        free(has);
        return -1;
    }
    /* The steps go after the report's breakdown, which order_records put
     * right after the report. */
    r->n = f->n + steps;
    r->order = calloc(r->n, sizeof(*r->order));
    r->step = calloc(r->n, sizeof(*r->step));
    r->muts = calloc(r->n, sizeof(*r->muts));
    r->views = calloc(nviews + steps, sizeof(*r->views));
    r->text = calloc(nviews, sizeof(*r->text));
    if (r->order == NULL || r->step == NULL || r->muts == NULL || r->views == NULL ||
        r->text == NULL) {
        free(has);
        free(order);
        return -1;
    }
    /* Walk the order; after a report's breakdown, emit its steps. */
    size_t m = 0;
    size_t pending = SIZE_MAX; /* the report whose steps are owed */
    size_t vt;
    const pf_type *vtype = pf_type_find("report_value", &vt);
    int vf = pf_field_index(vtype, "report_id");
    for (size_t k = 0; k <= f->n; k++) {
        const char *of = k < f->n ? report_of(&f->records[order[k]], vt, vf) : NULL;
        if (pending != SIZE_MAX && (of == NULL || strcmp(of, f->records[pending].id) != 0)) {
            int n = workflow_steps(r, pending, sf, rt, has);
            for (int st = 1; st <= n; st++) {
                r->order[m] = pending;
                r->step[m++] = (unsigned char)st;
            }
            pending = SIZE_MAX;
        }
        if (k == f->n)
            break;
        r->order[m] = order[k];
        r->step[m++] = STEP_CREATE;
        if (workflow_steps(r, order[k], sf, rt, has) > 0)
            pending = order[k];
    }
    free(order);
    size_t v = 0;
    for (m = 0; m < r->n; m++) {
        const pf_record *rec = &f->records[r->order[m]];
        const pf_type *t = pf_type_at(rec->type);
        ns_mutation *mu = &r->muts[m];
        *mu = (ns_mutation){
            .entity_type = t->name,
            .record_id = rec->id,
            .op = NS_MUTATION_CREATE,
            .fields = &r->views[v],
        };
        if (r->step[m] != STEP_CREATE) {
            mu->op = NS_MUTATION_UPDATE;
            mu->base_version = r->step[m]; /* the create is version 1, each step one more */
            r->views[v++] = (ns_field_view){"status", "text",
                                            r->step[m] == STEP_SUBMIT ? "submitted" : "approved"};
            mu->nfields = 1;
            continue;
        }
        bool as_draft = workflow_steps(r, r->order[m], sf, rt, has) > 0;
        if (rec != plan)
            r->views[v++] = (ns_field_view){PF_TENANT_FIELD, "ref", plan->id};
        for (size_t i = 0; i < t->nfields; i++) {
            if (rec->values[i].is_null)
                continue;
            char *s = ns_value_format(&rec->values[i]);
            if (s == NULL) {
                free(has);
                return -1;
            }
            r->text[r->ntext++] = s;
            const char *value = as_draft && (int)i == sf ? "draft" : s;
            r->views[v++] =
                (ns_field_view){t->fields[i].name, ns_kind_word(t->fields[i].kind), value};
        }
        mu->nfields = (size_t)(&r->views[v] - mu->fields);
    }
    free(has);
    return 0;
}

static void run_free(import_run *r)
{
    for (size_t i = 0; i < r->ntext; i++)
        free(r->text[i]);
    free(r->text);
    free(r->views);
    free(r->muts);
    free(r->step);
    free(r->order);
    pf_file_free(&r->f);
}

/* The server's answers, mapped back to the records. */
static int on_result(size_t i, const ns_mutation_result *res, void *ud)
{
    import_run *r = ud;
    if (res->outcome == NS_OUTCOME_APPLIED)
        return 0;
    if (res->outcome == NS_OUTCOME_REJECTED && strcmp(res->reject_code, "ABORTED") == 0) {
        if (r->aborted++ == 0) {
            snprintf(r->abort_reason, sizeof(r->abort_reason), "%s", res->reject_reason);
            snprintf(r->abort_field, sizeof(r->abort_field), "%s", res->reject_field);
        }
        return 0;
    }
    r->refused++;
    const pf_record *rec = &r->f.records[r->order[i]];
    if (res->outcome == NS_OUTCOME_REJECTED)
        pf_add_error(&r->f, rec, res->reject_field, res->reject_code, "%s",
                     res->reject_reason[0] ? res->reject_reason : "refused");
    else
        pf_add_error(&r->f, rec, NULL, NULL,
                     "the server would not create it as is (%s): does it exist already?",
                     res->outcome == NS_OUTCOME_MERGED ? "merged" : "conflict");
    return 0;
}

static int push(import_run *r, ns_client *c, ns_push_mode mode)
{
    r->refused = r->aborted = 0;
    ns_error e;
    if (ns_client_push_batch_wait(c, mode, r->muts, r->n, on_result, r, &e) != NS_OK) {
        if (mode != NS_PUSH_ATOMIC || e.status == NS_ERR_INVALID_ARGUMENT)
            return r->env->fail(r->env->ud, e.status, e.message);
        /* The request may have reached the server before the answer was lost. */
        char msg[sizeof(e.message) + 256];
        snprintf(msg, sizeof(msg),
                 "%s; whether the import happened is not known: napsync export plan %s tells "
                 "(importing again is refused if it did)",
                 e.message, r->f.records[r->f.plan].id);
        return r->env->fail(r->env->ud, e.status, msg);
    }
    return 0;
}

static void print_done(const import_run *r, bool dry_run)
{
    const pf_record *plan = &r->f.records[r->f.plan];
    size_t counts[32] = {0};
    for (size_t i = 0; i < r->f.n; i++)
        if (r->f.records[i].type < sizeof(counts) / sizeof(counts[0]))
            counts[r->f.records[i].type]++;
    if (r->env->json) {
        yajl_gen g = line_begin();
        if (g == NULL)
            return;
        put_str(g, "plan", plan->id);
        put_str(g, "file", r->file);
        put_num(g, "records", r->f.n, false);
        yajl_gen_string(g, (const unsigned char *)"imported", 8);
        yajl_gen_bool(g, !dry_run);
        yajl_gen_string(g, (const unsigned char *)"counts", 6);
        yajl_gen_map_open(g);
        for (size_t t = 0; t < pf_ntypes(); t++)
            put_num(g, pf_type_at(t)->name, counts[t], false);
        yajl_gen_map_close(g);
        line_end(g);
        return;
    }
    printf("%s plan %s from %s: %zu records (", dry_run ? "checked" : "imported", plan->id, r->file,
           r->f.n);
    bool first = true;
    for (size_t t = 0; t < pf_ntypes(); t++) {
        if (counts[t] == 0)
            continue;
        const pf_type *ty = pf_type_at(t);
        printf("%s%zu %s", first ? "" : ", ", counts[t], counts[t] == 1 ? ty->name : ty->key);
        first = false;
    }
    printf(")%s\n",
           dry_run ? "; the server accepts them all; nothing was imported (--dry-run)" : "");
}

int cli_import(const cli_env *env, const char *what, const char *file, const char *format,
               bool dry_run)
{
    char msg[600];
    char shown[IMPORT_MAX_SHOWN + 4];
    snprintf(shown, sizeof(shown), "%.*s", IMPORT_MAX_SHOWN, file);
    for (char *p = shown; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (strcmp(what, "plan") != 0) {
        snprintf(msg, sizeof(msg),
                 "import: \"%.40s\" cannot be imported; only a plan: napsync import plan FILE "
                 "(see napsync import --help)",
                 what);
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    pf_format fmt;
    if (format != NULL ? strcmp(format, "json") == 0 : ends_with(file, ".json")) {
        fmt = PF_JSON;
    } else if (format != NULL ? strcmp(format, "csv") == 0 : ends_with(file, ".csv")) {
        fmt = PF_CSV;
    } else {
        snprintf(msg, sizeof(msg),
                 format ? "--format: \"%.40s\" is neither json nor csv (see napsync import --help)"
                        : "%s: say which format it is with --format json or --format csv (the "
                          "name does not end in .json or .csv)",
                 format ? format : shown);
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    char *data = NULL;
    size_t len = 0;
    int rc = read_file(env, file, shown, &data, &len);
    if (rc != 0)
        return rc;
    import_run r;
    memset(&r, 0, sizeof(r));
    r.env = env;
    r.file = shown;
    pf_file_init(&r.f);
    if (pf_parse(&r.f, fmt, data, len) != 0) {
        free(data);
        run_free(&r);
        return env->fail(env->ud, NS_ERR_NOMEM, "out of memory");
    }
    free(data);
    if (r.f.errors_seen == 0 && r.f.n > NS_MAX_PUSH_BATCH)
        pf_add_error(&r.f, NULL, NULL, NULL,
                     "%zu records: an import sends a plan in one request of at most %d records",
                     r.f.n, NS_MAX_PUSH_BATCH);
    if (r.f.errors_seen > 0) {
        rc = report_problems(&r, NS_ERR_INVALID_ARGUMENT, "in the file");
        run_free(&r);
        return rc;
    }
    if (build_mutations(&r) != 0) {
        run_free(&r);
        return env->fail(env->ud, NS_ERR_NOMEM, "out of memory");
    }
    if (r.n > NS_MAX_PUSH_BATCH) {
        /* The records fit, but not with the workflow steps of the reports
         * whose breakdown is imported with them. */
        pf_add_error(&r.f, NULL, NULL, NULL,
                     "%zu records and %zu report submissions: an import sends a plan in one "
                     "request of at most %d changes",
                     r.f.n, r.n - r.f.n, NS_MAX_PUSH_BATCH);
        rc = report_problems(&r, NS_ERR_INVALID_ARGUMENT, "in the file");
        run_free(&r);
        return rc;
    }
    ns_client *c = NULL;
    rc = env->connect(env->ud, &c);
    if (rc == 0)
        rc = push(&r, c, NS_PUSH_DRY_RUN);
    if (rc == 0 && r.f.errors_seen > 0)
        rc = report_problems(&r, NS_ERR_SERVER, "found by the server");
    if (rc == 0 && !dry_run) {
        rc = push(&r, c, NS_PUSH_ATOMIC);
        if (rc == 0 && (r.refused > 0 || r.aborted > 0)) {
            /* Accepted by the dry run, refused now: something changed meanwhile. */
            if (r.refused == 0)
                pf_add_error(&r.f, NULL, r.abort_field, "ABORTED",
                             "the server refused the import as a whole: %s",
                             r.abort_reason[0] ? r.abort_reason : "no reason given");
            rc = report_problems(&r, NS_ERR_SERVER,
                                 "found by the server when importing (it changed since the check)");
        }
    }
    if (rc == 0)
        print_done(&r, dry_run);
    if (c != NULL)
        env->disconnect(env->ud);
    run_free(&r);
    return rc;
}
