/* libFuzzer target: the plan files of `napsync import` (client/cli/
 * planfile.c): the JSON reader on yajl and the CSV reader on libcsv, one
 * program each (NSF_PLANFILE_FORMAT is PF_JSON or PF_CSV).
 *
 * Input: the file. A file read without a problem must survive the
 * writers: written as JSON and as CSV (as `napsync export` writes them)
 * and read back, it gives the same records with the same values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "planfile.h"

#ifndef NSF_PLANFILE_FORMAT
#error "NSF_PLANFILE_FORMAT must be PF_JSON or PF_CSV"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const pf_file *sort_file;

static int by_type_and_id(const void *a, const void *b)
{
    const pf_record *ra = &sort_file->records[*(const size_t *)a];
    const pf_record *rb = &sort_file->records[*(const size_t *)b];
    if (ra->type != rb->type)
        return ra->type < rb->type ? -1 : 1;
    return strcmp(ra->id, rb->id);
}

/* Records in the order the writer takes them: by type, then id. */
static size_t *writer_order(const pf_file *f)
{
    size_t *order = malloc((f->n ? f->n : 1) * sizeof(*order));
    if (order == NULL)
        nsf_die("out of memory");
    for (size_t i = 0; i < f->n; i++)
        order[i] = i;
    sort_file = f;
    qsort(order, f->n, sizeof(*order), by_type_and_id);
    return order;
}

static void dump_errors(const pf_file *f)
{
    for (size_t i = 0; i < f->nerrors && i < 5; i++)
        fprintf(stderr, "fuzz:   line %u %s %s %s: %s\n", f->errors[i].line, f->errors[i].where,
                f->errors[i].type, f->errors[i].field, f->errors[i].message);
}

static void round_trip(const pf_file *f, pf_format fmt)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        nsf_die("open_memstream failed");
    pf_writer *w = pf_writer_new(fmt, out);
    if (w == NULL)
        nsf_die("out of memory");
    size_t *order = writer_order(f);
    for (size_t i = 0; i < f->n; i++) {
        const pf_record *r = &f->records[order[i]];
        if (pf_writer_record(w, r->type, r->id, r->values) != 0)
            nsf_die("the writer refused record %s %s of a good file", pf_type_at(r->type)->name,
                    r->id);
    }
    if (pf_writer_finish(w) != 0)
        nsf_die("the writer could not finish a good file");
    pf_writer_free(w);
    if (fclose(out) != 0)
        nsf_die("writing to memory failed");

    pf_file back;
    pf_file_init(&back);
    if (pf_parse(&back, fmt, text, len) != 0)
        nsf_die("out of memory");
    if (back.errors_seen != 0) {
        fprintf(stderr, "fuzz: %s written:\n%.*s\n", fmt == PF_JSON ? "JSON" : "CSV",
                (int)(len < 4000 ? len : 4000), text);
        dump_errors(&back);
        nsf_die("a good file written as %s reads back with %zu problems",
                fmt == PF_JSON ? "JSON" : "CSV", back.errors_seen);
    }
    if (back.n != f->n)
        nsf_die("a good file of %zu records reads back with %zu", f->n, back.n);
    size_t *border = writer_order(&back);
    for (size_t i = 0; i < f->n; i++) {
        const pf_record *a = &f->records[order[i]];
        const pf_record *b = &back.records[border[i]];
        if (a->type != b->type || strcmp(a->id, b->id) != 0)
            nsf_die("record %s %s reads back as %s %s", pf_type_at(a->type)->name, a->id,
                    pf_type_at(b->type)->name, b->id);
        const pf_type *t = pf_type_at(a->type);
        for (size_t k = 0; k < t->nfields; k++) {
            if (!ns_value_equal(&a->values[k], &b->values[k])) {
                char *va = ns_value_format(&a->values[k]);
                char *vb = ns_value_format(&b->values[k]);
                nsf_die("%s %s: %s \"%s\" reads back from %s as \"%s\"", t->name, a->id,
                        t->fields[k].name, va ? va : "?", fmt == PF_JSON ? "JSON" : "CSV",
                        vb ? vb : "?");
            }
        }
    }
    free(border);
    free(order);
    pf_file_free(&back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pf_file f;
    pf_file_init(&f);
    if (pf_parse(&f, NSF_PLANFILE_FORMAT, (const char *)data, size) != 0) {
        pf_file_free(&f);
        return 0; /* out of memory is an answer, not a crash */
    }
    if (f.nerrors > PF_MAX_ERRORS || f.nerrors > f.errors_seen)
        nsf_die("%zu problems kept of %zu seen", f.nerrors, f.errors_seen);
    for (size_t i = 0; i < f.nerrors; i++)
        if (f.errors[i].message[0] == '\0')
            nsf_die("a problem without a message");
    if (f.errors_seen == 0) {
        if (!f.has_plan)
            nsf_die("a file without problems has no plan");
        round_trip(&f, PF_JSON);
        round_trip(&f, PF_CSV);
    }
    pf_file_free(&f);
    return 0;
}
