/* napsync-pagebytes: the bytes a pull of the field-link dataset costs in each
 * page encoding (docs/benchmarks.md "Bytes per record").
 *
 *   napsync-pagebytes --db CONNINFO --docs DOCS.json [--page-size N] [--by NAME]
 *                     [--at-step US]
 *
 * DOCS.json is tests/fieldlink/peer/plan.js's docs.json: the 301 records of
 * the field-link benchmark as JSON documents (_id, type, plan_id and the
 * fields), which is also "the raw JSON of the same data". CONNINFO names a
 * database migrated by napsyncd (the entity types and their fields are
 * read from it, as napsyncd reads them). Each record is built as the feed
 * builds it (daemon/feed.c: every field of the type, missing ones null,
 * version 1, the plan as tenant, changed_by NAME, changed_at US apart: 0 by
 * default, as the import gives them, its one Push committing as one group),
 * then the records are cut into pages of N (default 500, the
 * server's default page) and each page measured as a frame (4-byte length
 * prefix included, TLS not): the ordinary ChangePage, with zstd and the
 * napsync-1 dictionary (what protocol 1 sent before compact pages), the
 * compact page, and the compact page with zstd. Then the same per
 * one-record page (what a subscription sends for a single change), with
 * and without the page's type table, which is what per-session tables would
 * save; and zstd's levels on the whole dataset in one page, with the time
 * each takes. Prints Markdown. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "compress.h"
#include "fields_json.h"
#include "fields_pb.h"
#include "page_compact.h"
#include "registry.h"
#include "zdict.h"

#define FRAME_PREFIX 4
#define USAGE                                                                                      \
    "usage: napsync-pagebytes --db CONNINFO --docs DOCS.json [--page-size N] [--by NAME] "         \
    "[--at-step US]"

typedef struct {
    Napsync__V1__Record rec;
    Napsync__V1__FieldSet pbfs;
    ns_fieldset fs;
    char id[40], tenant[40], at[32];
} record;

typedef struct {
    size_t raw, ordinary, ordinary_z, compact, compact_z;
} sizes;

static void die(const char *msg)
{
    fprintf(stderr, "napsync-pagebytes: %s\n", msg);
    exit(1);
}

static size_t packed(const ns_envelope *e)
{
    return napsync__v1__envelope__get_packed_size(e) + FRAME_PREFIX;
}

static size_t zstd_size(ns_compress *z, const ns_envelope *e)
{
    uint8_t *out;
    size_t len;
    if (ns_compress_pack(z, e, &out, &len) != NS_COMPRESS_OK)
        die("out of memory");
    free(out);
    return len + FRAME_PREFIX;
}

static void page_of(Napsync__V1__ChangePage *page, Napsync__V1__Record **ptrs, size_t n,
                    char **tenants, ns_envelope *env)
{
    napsync__v1__change_page__init(page);
    page->records = ptrs;
    page->n_records = n;
    page->next_cursor = "v1.5b0a3c1e-6f7d-4e2b-9a8c-7d6e5f4a3b2c.123456";
    page->tenant_ids = tenants;
    page->n_tenant_ids = 1;
    napsync__v1__envelope__init(env);
    env->request_id = 3;
    env->body_case = NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE;
    env->change_page = page;
}

/* Adds the sizes of one page, in every encoding, to *s. */
static void measure(ns_compress *z, ns_envelope *env, sizes *s, size_t *no_types)
{
    s->ordinary += packed(env);
    s->ordinary_z += zstd_size(z, env);
    ns_page_compact *pc = NULL;
    if (ns_page_compact_make(env, &pc) != NS_PAGE_COMPACT_OK)
        die("a page does not fit the compact form");
    const ns_envelope *ce = ns_page_compact_envelope(pc);
    s->compact += packed(ce);
    s->compact_z += zstd_size(z, ce);
    if (no_types != NULL) {
        /* The same page without its type table, as if the session had it. */
        ns_envelope copy = *ce;
        Napsync__V1__ChangePage cp = *ce->compact_page;
        cp.n_types = 0;
        cp.types = NULL;
        copy.compact_page = &cp;
        *no_types += zstd_size(z, &copy);
    }
    ns_page_compact_free(pc);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* zstd at a level with the napsync-1 dictionary: bytes and microseconds per
 * compression of buf (best of several runs). */
static void level_row(const char *what, const uint8_t *buf, size_t len, int level)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CDict *cd = ZSTD_createCDict(ns_zdict_1, ns_zdict_1_len, level);
    size_t cap = ZSTD_compressBound(len);
    uint8_t *out = malloc(cap);
    if (cctx == NULL || cd == NULL || out == NULL)
        die("out of memory");
    size_t n = 0;
    double best = 1e18;
    for (int run = 0; run < 20; run++) {
        double t0 = now_us();
        n = ZSTD_compress_usingCDict(cctx, out, cap, buf, len, cd);
        double t = now_us() - t0;
        if (ZSTD_isError(n))
            die("zstd failed");
        if (t < best)
            best = t;
    }
    printf("| %s | %d | %zu | %.0f | %.1f |\n", what, level, n, best, (double)len / best);
    free(out);
    ZSTD_freeCDict(cd);
    ZSTD_freeCCtx(cctx);
}

static void levels(const ns_envelope *ordinary)
{
    ns_page_compact *pc = NULL;
    if (ns_page_compact_make(ordinary, &pc) != NS_PAGE_COMPACT_OK)
        die("the page does not fit the compact form");
    const ns_envelope *forms[2] = {ordinary, ns_page_compact_envelope(pc)};
    const char *names[2] = {"ordinary", "compact"};
    static const int lv[] = {1, 3, 6, 9, 12, 15, 19};
    printf(
        "\n| page | zstd level | zstd bytes | best us per page | MB/s |\n|---|--:|--:|--:|--:|\n");
    for (int f = 0; f < 2; f++) {
        uint8_t *buf;
        size_t len;
        if (ns_envelope_pack(forms[f], &buf, &len) != 0)
            die("out of memory");
        for (size_t i = 0; i < sizeof(lv) / sizeof(lv[0]); i++)
            level_row(names[f], buf, len, lv[i]);
        free(buf);
    }
    ns_page_compact_free(pc);
}

/* The server's packing and compressing of a page, and the client's
 * decompressing and unpacking, in microseconds (best of 20). */
typedef struct {
    double server, client;
} path_cost;

static ns_envelope *receive(ns_compress *z, const uint8_t *frame, size_t len, bool compact)
{
    ns_envelope *outer = ns_envelope_unpack(frame, len), *inner = NULL, *x = NULL;
    if (outer == NULL)
        die("a frame does not unpack");
    if (outer->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
        if (ns_compress_unpack(z, outer->zstd.data, outer->zstd.len, SIZE_MAX, &inner) !=
            NS_COMPRESS_OK)
            die("a frame does not decompress");
        ns_envelope_free(outer);
        outer = inner;
    }
    if (!compact)
        return outer;
    if (ns_page_compact_expand(outer, SIZE_MAX, &x, NULL, 0) != NS_PAGE_COMPACT_OK)
        die("a page does not expand");
    ns_envelope_free(outer);
    return x;
}

static path_cost path(ns_compress *z, const ns_envelope *page, bool compact)
{
    path_cost best = {1e18, 1e18};
    for (int run = 0; run < 20; run++) {
        double t0 = now_us();
        ns_page_compact *pc = NULL;
        const ns_envelope *send = page;
        if (compact) {
            if (ns_page_compact_make(page, &pc) != NS_PAGE_COMPACT_OK)
                die("the page does not compact");
            send = ns_page_compact_envelope(pc);
        }
        uint8_t *frame;
        size_t len;
        if (ns_compress_pack(z, send, &frame, &len) != NS_COMPRESS_OK)
            die("out of memory");
        ns_page_compact_free(pc);
        double t1 = now_us();
        ns_envelope *got = receive(z, frame, len, compact);
        double t2 = now_us();
        ns_envelope_free(got);
        free(frame);
        best.server = t1 - t0 < best.server ? t1 - t0 : best.server;
        best.client = t2 - t1 < best.client ? t2 - t1 : best.client;
    }
    return best;
}

/* CPU per page of each path, zstd (level 3) included. */
static void transform_cost(ns_compress *z, const ns_envelope *page)
{
    path_cost o = path(z, page, false), c = path(z, page, true);
    printf("\n| per page of %zu records, zstd included | ordinary, best us | compact, best us "
           "|\n|---|--:|--:|\n| server: (compact,) pack, compress | %.0f | %.0f |\n"
           "| client: decompress, unpack(, expand) | %.0f | %.0f |\n",
           page->change_page->n_records, o.server, c.server, o.client, c.client);
}

static void row(const char *what, size_t n, size_t bytes, size_t raw)
{
    printf("| %s | %zu | %.1f | %.1f | %.3f |\n", what, bytes, (double)bytes / 1024,
           (double)bytes / (double)n, (double)bytes / (double)raw);
}

/* The record of one document, built as the feed builds it. */
static void build(const ns_registry *reg, json_t *doc, long us, const char *by, record *r,
                  size_t *raw)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    if (text == NULL)
        die("out of memory");
    *raw += strlen(text);
    free(text);
    const char *type = json_string_value(json_object_get(doc, "type"));
    const char *id = json_string_value(json_object_get(doc, "_id"));
    const char *plan = json_string_value(json_object_get(doc, "plan_id"));
    const ns_entity_type *t = type ? ns_registry_find(reg, type) : NULL;
    if (t == NULL || id == NULL || plan == NULL)
        die("a document without a known type, an _id or a plan_id");
    json_t *fields = json_deep_copy(doc);
    json_object_del(fields, "_id");
    json_object_del(fields, "type");
    if (ns_entity_field(t, "plan_id") == NULL)
        json_object_del(fields, "plan_id");
    text = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    char err[256];
    if (text == NULL || ns_fields_from_json_text(t, text, strlen(text), &r->fs, err, sizeof(err)))
        die(text ? err : "out of memory");
    free(text);
    for (size_t f = 0; f < t->nfields; f++) {
        if (ns_fieldset_get(&r->fs, t->fields[f].name) != NULL)
            continue;
        ns_value v;
        ns_value_init_null(&v, t->fields[f].type.kind);
        if (ns_fieldset_set(&r->fs, t->fields[f].name, &v) != 0)
            die("out of memory");
    }
    if (ns_fieldset_to_pb(&r->fs, &r->pbfs) != 0)
        die("out of memory");
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->tenant, sizeof(r->tenant), "%s", plan);
    us += 123456;
    snprintf(r->at, sizeof(r->at), "2026-11-24T%02ld:%02ld:%02ld.%06ldZ", us / 3600000000 % 24,
             us / 60000000 % 60, us / 1000000 % 60, us % 1000000);
    napsync__v1__record__init(&r->rec);
    r->rec.entity_type = t->name;
    r->rec.id = r->id;
    r->rec.version = 1;
    r->rec.tenant_id = r->tenant;
    r->rec.fields = &r->pbfs;
    r->rec.changed_by = (char *)by;
    r->rec.changed_at = r->at;
}

int main(int argc, char **argv)
{
    const char *db = NULL, *docs = NULL, *by = "Field Coordinator";
    size_t page_size = 500;
    long at_step = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            db = argv[i + 1];
        else if (strcmp(argv[i], "--docs") == 0)
            docs = argv[i + 1];
        else if (strcmp(argv[i], "--by") == 0)
            by = argv[i + 1];
        else if (strcmp(argv[i], "--page-size") == 0)
            page_size = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--at-step") == 0)
            at_step = strtol(argv[i + 1], NULL, 10);
        else
            die(USAGE);
    }
    if (db == NULL || docs == NULL || page_size == 0 || page_size > 5000 || at_step < 0 ||
        at_step > 1000000)
        die(USAGE);
    ns_registry reg;
    char err[512];
    if (ns_registry_load(db, &reg, err, sizeof(err)) != 0)
        die(err);
    json_error_t jerr;
    json_t *all = json_load_file(docs, 0, &jerr);
    if (!json_is_array(all) || json_array_size(all) == 0)
        die("DOCS.json is not a non-empty array");
    size_t n = json_array_size(all);
    record *recs = calloc(n, sizeof(*recs));
    Napsync__V1__Record **ptrs = calloc(n, sizeof(*ptrs));
    ns_compress *z = ns_compress_new();
    if (recs == NULL || ptrs == NULL || z == NULL)
        die("out of memory");
    sizes s = {0, 0, 0, 0, 0}, one = {0, 0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        build(&reg, json_array_get(all, i), (long)i * at_step, by, &recs[i], &s.raw);
        ptrs[i] = &recs[i].rec;
    }
    one.raw = s.raw;
    char *tenants[1] = {recs[0].tenant};
    Napsync__V1__ChangePage page;
    ns_envelope env;
    size_t pages = 0, page_no_types = 0;
    for (size_t at = 0; at < n; at += page_size, pages++) {
        page_of(&page, ptrs + at, n - at < page_size ? n - at : page_size, tenants, &env);
        measure(z, &env, &s, &page_no_types);
    }
    size_t no_types = 0;
    for (size_t i = 0; i < n; i++) {
        page_of(&page, ptrs + i, 1, tenants, &env);
        measure(z, &env, &one, &no_types);
    }

    printf("%zu records, %zu page(s) of at most %zu, changed_at %ld us apart; frames with their "
           "4-byte length, TLS not counted.\n\n",
           n, pages, page_size, at_step);
    printf("| encoding | bytes | KiB | bytes per record | ratio to raw JSON |\n"
           "|---|--:|--:|--:|--:|\n");
    row("raw JSON (the documents)", n, s.raw, s.raw);
    row("ordinary ChangePage", n, s.ordinary, s.raw);
    row("ordinary + zstd-dict (protocol 1 before compact pages)", n, s.ordinary_z, s.raw);
    row("compact", n, s.compact, s.raw);
    row("compact + zstd-dict (sent now)", n, s.compact_z, s.raw);
    row("compact + zstd-dict without the type tables (per-session tables)", n, page_no_types,
        s.raw);
    printf("\nOne record per page (a subscription's single change), %zu pages:\n\n", n);
    printf("| encoding | bytes | KiB | bytes per record | ratio to raw JSON |\n"
           "|---|--:|--:|--:|--:|\n");
    row("ordinary + zstd-dict", n, one.ordinary_z, one.raw);
    row("compact + zstd-dict (tables per page)", n, one.compact_z, one.raw);
    row("compact + zstd-dict without the type table (per-session tables)", n, no_types, one.raw);
    page_of(&page, ptrs, n, tenants, &env);
    levels(&env);
    transform_cost(z, &env);

    for (size_t i = 0; i < n; i++) {
        ns_fieldset_pb_clear(&recs[i].pbfs);
        ns_fieldset_free(&recs[i].fs);
    }
    free(recs);
    free(ptrs);
    ns_compress_free(z);
    json_decref(all);
    ns_registry_free(&reg);
    return 0;
}
