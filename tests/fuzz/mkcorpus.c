/* Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/NAME/):
 * real messages as both ends send them (messages.c), the demo plan files
 * of deploy/demo as JSON and, through the CLI's own writer, as CSV, and the
 * example configuration.
 *
 *   fuzz_mkcorpus DIR      (DIR: tests/fuzz/corpus of the checkout)
 *
 * The output depends on nothing but the checkout, so rerunning it after a
 * protocol change rewrites the same files where nothing changed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"
#include "frame.h"
#include "messages.h"
#include "page_compact.h"
#include "planfile.h"

#define OP_CREATE NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE
#define OP_UPDATE NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE
#define OP_DELETE NAPSYNC__V1__MUTATION_OP__MUTATION_OP_DELETE
#define APPLY     NAPSYNC__V1__PUSH_MODE__PUSH_MODE_APPLY
#define DRY_RUN   NAPSYNC__V1__PUSH_MODE__PUSH_MODE_DRY_RUN
#define ATOMIC    NAPSYNC__V1__PUSH_MODE__PUSH_MODE_ATOMIC
#define APPLIED   NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED
#define MERGED    NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED
#define CONFLICT  NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT
#define REJECTED  NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED
#define ERR(x)    NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##x

static const char *out_dir;

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        nsf_die("cannot create %s: %s", path, strerror(errno));
}

static void write_seed(const char *target, const char *name, const void *data, size_t len)
{
    char path[NSF_PATH];
    snprintf(path, sizeof(path), "%s/%s", out_dir, target);
    make_dir(path);
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        nsf_die("cannot write %s", path);
}

static void write_buf(const char *target, const char *name, nsf_buf *b)
{
    write_seed(target, name, b->p, b->len);
    nsf_buf_free(b);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        nsf_die("cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            char *b = realloc(buf, cap);
            if (b == NULL)
                nsf_die("out of memory");
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

static Napsync__V1__Mutation *plan_create(nsf_arena *a, const char *mid, const char *id)
{
    return nsf_mutation(a, mid, "plan", id, OP_CREATE, 0,
                        nsf_plan_fields(a, "National Action Plan on WPS 2024-2028", "draft"));
}

static Napsync__V1__Mutation *indicator_create(nsf_arena *a, const char *mid, const char *plan,
                                               const char *id)
{
    return nsf_mutation(a, mid, "indicator", id, OP_CREATE, 0,
                        nsf_indicator_fields(a, plan, "Share of women among negotiators"));
}

static Napsync__V1__Mutation *title_update(nsf_arena *a, const char *mid, const char *id,
                                           uint64_t base, const char *title)
{
    return nsf_mutation(a, mid, "plan", id, OP_UPDATE, base,
                        nsf_fields(a, 1, "title", nsf_text(a, title)));
}

/* A record of every value kind, for the envelope and client seeds. */
static Napsync__V1__Record *plan_record(nsf_arena *a, const char *id, uint64_t version)
{
    return nsf_record(a, "plan", id, version, id,
                      nsf_plan_fields(a, "National Action Plan on WPS 2024-2028", "adopted"));
}

static Napsync__V1__Record *indicator_record(nsf_arena *a, const char *plan, const char *id)
{
    static const char *const dis[] = {"age", "sex"};
    Napsync__V1__FieldSet *fs =
        nsf_fields(a, 8, "baseline", nsf_dec(a, "12.5"), "baseline_date", nsf_date(a, "2023-12-31"),
                   "disaggregation", nsf_set(a, 2, dis), "plan_id", nsf_ref(a, plan), "position",
                   nsf_int(a, 3), "target", nsf_null(a), "title",
                   nsf_text(a, "Share of women negotiators"), "verified", nsf_bool(a, 1));
    return nsf_record(a, "indicator", id, 2, plan, fs);
}

/* ---- envelope: one message of each kind ------------------------------------------------ */

static void envelope_seeds(void)
{
    nsf_arena *a = nsf_arena_new();
    struct {
        const char *name;
        ns_envelope *env;
    } seeds[] = {
        {"hello", nsf_hello(a, 1, 0)},
        {"welcome", nsf_welcome(a, 1, 0)},
        {"ping", nsf_ping(a, 2, "12345678")},
        {"pong", nsf_pong(a, 2, (const uint8_t *)"12345678", 8)},
        {"goodbye", nsf_goodbye(a, 0, NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_IDLE,
                                "no traffic for too long; reconnect when you need to")},
        {"error", nsf_error(a, 3, ERR(INVALID_ARGUMENT), 0,
                            "plan.period_end: must not be before period_start")},
        {"push", nsf_push(a, 4, APPLY, 2,
                          (Napsync__V1__Mutation *[]){
                              plan_create(a, "f1000000-0000-4000-8000-000000000001", NSF_PLAN2_ID),
                              indicator_create(a, "f1000000-0000-4000-8000-000000000002",
                                               NSF_PLAN2_ID, NSF_INDICATOR2_ID)})},
        {"push-update",
         nsf_push(a, 5, ATOMIC, 2,
                  (Napsync__V1__Mutation *[]){
                      title_update(a, "f1000000-0000-4000-8000-000000000003", NSF_PLAN_ID, 1,
                                   "NAP 2024-2028"),
                      nsf_mutation(a, "f1000000-0000-4000-8000-000000000004", "indicator",
                                   NSF_INDICATOR_ID, OP_DELETE, 1, NULL)})},
        {"push-result",
         nsf_push_result(
             a, 4, 3,
             (Napsync__V1__MutationResult *[]){
                 nsf_result(a, "f1000000-0000-4000-8000-000000000001", APPLIED, 1, NULL),
                 nsf_result(a, "f1000000-0000-4000-8000-000000000002", CONFLICT, 3,
                            "f3000000-0000-4000-8000-000000000001"),
                 nsf_result(a, "f1000000-0000-4000-8000-000000000003", REJECTED, 0, NULL)})},
        {"pull", nsf_pull(a, 6, "", 100, nsf_plan_scope(a, NSF_PLAN_ID))},
        {"change-page", nsf_change_page(a, 6, 2,
                                        (Napsync__V1__Record *[]){
                                            plan_record(a, NSF_PLAN_ID, 2),
                                            indicator_record(a, NSF_PLAN_ID, NSF_INDICATOR_ID)},
                                        "1:42", 1, NSF_PLAN_ID)},
        {"subscribe", nsf_subscribe(a, 7, "1:42", nsf_org_scope(a, NSF_ORG_ID))},
        {"list-conflicts", nsf_list_conflicts(a, 8, nsf_plan_scope(a, NSF_PLAN_ID), 1)},
        {"conflict-list", nsf_conflict_list(a, 8, 1,
                                            (Napsync__V1__Conflict *[]){nsf_conflict(
                                                a, "f3000000-0000-4000-8000-000000000001",
                                                NSF_PLAN_ID, NSF_PLAN_ID, "title")})},
        {"resolve", nsf_resolve(a, 9, "f3000000-0000-4000-8000-000000000001",
                                "f1000000-0000-4000-8000-000000000005",
                                NAPSYNC__V1__RESOLUTION__RESOLUTION_VALUE,
                                nsf_text(a, "National Action Plan 2024-2028"))},
        {"mutation-result",
         nsf_mutation_result(
             a, 9, nsf_result(a, "f1000000-0000-4000-8000-000000000005", APPLIED, 4, NULL))},
        {"history", nsf_history(a, 10, "plan", NSF_PLAN_ID, 0, 50)},
        {"history-page", nsf_history_page(a, 10, "f1000000-0000-4000-8000-000000000003")},
        {"report", nsf_report(a, 11, "progress", NSF_PLAN_ID, 2025, NULL)},
        {"report-result", nsf_report_result(a, 11, "progress",
                                            "{\"kind\":\"progress\",\"plan\":{\"id\":\"" NSF_PLAN_ID
                                            "\"},\"year\":2025,\"indicators\":[]}")},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        nsf_buf b = {0};
        nsf_buf_envelope(&b, seeds[i].env);
        write_buf("envelope", seeds[i].name, &b);
    }
    /* Every value kind in one record, and a value of each kind alone as a
     * conflict's values (read as every kind by the target). */
    nsf_buf b = {0};
    nsf_buf_envelope(
        &b, nsf_change_page(a, 12, 1,
                            (Napsync__V1__Record *[]){nsf_record(
                                a, "t", NSF_PLAN_ID, 1, NSF_PLAN_ID,
                                nsf_fields(a, 7, "b", nsf_bool(a, 0), "d", nsf_dec(a, "-0.05"),
                                           "dt", nsf_date(a, "2024-02-29"), "i", nsf_int(a, -42),
                                           "r", nsf_ref(a, NSF_ORG_ID), "s",
                                           nsf_set(a, 2, (const char *const[]){"b", "a"}), "t",
                                           nsf_text(a, "tab\there")))},
                            "", 0, NULL));
    write_buf("envelope", "all-kinds", &b);
    /* Compressed frames: a page, and a push. */
    nsf_buf_zstd_envelope(
        &b, nsf_change_page(
                a, 6, 2,
                (Napsync__V1__Record *[]){plan_record(a, NSF_PLAN_ID, 2),
                                          indicator_record(a, NSF_PLAN_ID, NSF_INDICATOR_ID)},
                "1:42", 0, NSF_PLAN_ID));
    write_buf("envelope", "zstd-change-page", &b);
    nsf_buf_zstd_envelope(
        &b, nsf_push(a, 4, APPLY, 2,
                     (Napsync__V1__Mutation *[]){
                         plan_create(a, "f1000000-0000-4000-8000-000000000001", NSF_PLAN2_ID),
                         indicator_create(a, "f1000000-0000-4000-8000-000000000002", NSF_PLAN2_ID,
                                          NSF_INDICATOR2_ID)}));
    write_buf("envelope", "zstd-push", &b);
    nsf_arena_free(a);
}

/* ---- frame: byte streams of frames ------------------------------------------------------- */

static void frame_seeds(void)
{
    nsf_arena *a = nsf_arena_new();
    nsf_buf b = {0};
    /* Maximum 3 * 100 bytes, chunks seeded by 0x1234. */
    nsf_buf_put(&b, (const uint8_t[]){100, 0x12, 0x34}, 3);
    nsf_buf_frame(&b, nsf_hello(a, 1, 0));
    nsf_buf_frame(&b, nsf_ping(a, 2, "12345678"));
    nsf_buf_frame(&b, nsf_pull(a, 3, "", 0, nsf_plan_scope(a, NSF_PLAN_ID)));
    write_buf("frame", "three-frames", &b);

    nsf_buf_put(&b, (const uint8_t[]){20, 0x00, 0x07}, 3);
    nsf_buf_frame(&b, nsf_ping(a, 2, "12345678"));
    nsf_buf_put(&b, (const uint8_t[]){0, 0, 1, 0}, 4); /* 256 > 60: refused */
    nsf_buf_put(&b, "after", 5);
    write_buf("frame", "oversized-header", &b);

    nsf_buf_put(&b, (const uint8_t[]){0, 0xbe, 0xef}, 3); /* the default maximum */
    nsf_buf_frame(&b, nsf_welcome(a, 1, 0));
    nsf_buf_put(&b, (const uint8_t[]){0, 0, 0, 0, 0, 0, 0, 9, 1, 2}, 10); /* empty, then cut */
    write_buf("frame", "partial-tail", &b);
    nsf_arena_free(a);
}

/* ---- value: text forms ------------------------------------------------------------------- */

static void value_seeds(void)
{
    static const struct {
        int kind;
        const char *text;
    } seeds[] = {
        {NS_KIND_BOOL, "TRUE"},
        {NS_KIND_INT, "-0009223372036854775808"},
        {NS_KIND_DECIMAL, "-0012.50"},
        {NS_KIND_DECIMAL, "0.000000000000000000000000000000000001"},
        {NS_KIND_TEXT, "Women, Peace and Security \xc3\xa9\ttab\nline"},
        {NS_KIND_DATE, "2024-02-29"},
        {NS_KIND_TEXT_SET, " protection, participation ,, protection,null"},
        {NS_KIND_REF, "F0000000-0000-4000-8000-00000000000A"},
        {NS_KIND_DATE, "null"},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        nsf_buf b = {0};
        /* Nullable (0x08), default limits. */
        uint8_t head = (uint8_t)(seeds[i].kind | 0x08);
        nsf_buf_put(&b, &head, 1);
        nsf_buf_put(&b, seeds[i].text, strlen(seeds[i].text));
        char name[32];
        snprintf(name, sizeof(name), "%s-%zu", ns_kind_word((ns_kind)seeds[i].kind), i);
        write_buf("value", name, &b);
    }
}

/* ---- config ---------------------------------------------------------------------------- */

static void config_seeds(void)
{
    char path[NSF_PATH];
    snprintf(path, sizeof(path), "%s/deploy/napsyncd.conf.example", nsf_source_dir());
    size_t len;
    char *text = read_all(path, &len);
    write_seed("config", "example", text, len);
    free(text);
    static const char every[] =
        "# every setting\n"
        "listen = [::1]:7443\n"
        "tls_cert = /etc/napsync/server.crt\n"
        "tls_key = /etc/napsync/server.key\n"
        "tls_ca = /etc/napsync/ca.crt\n"
        "database = \"host=db dbname=napsync user=napsyncd password=secret \"\n"
        "sql_dir = /usr/share/napsync/sql\n"
        "migrate_on_start = off\n"
        "db_pool_size = 8\n"
        "db_queue_timeout_ms = 5000\n"
        "max_frame_size = 1048576\n"
        "max_sessions = 10000\n"
        "handshake_timeout_ms = 10000\n"
        "idle_timeout_ms = 0\n"
        "shutdown_timeout_ms = 10000\n"
        "\tlog_level\t=\tdebug\r\n";
    write_seed("config", "every-setting", every, sizeof(every) - 1);
}

/* ---- plan files: the demo plans as JSON, and as the CLI writes CSV ---------------------- */

static const pf_file *sort_file;

static int by_type_and_id(const void *a, const void *b)
{
    const pf_record *ra = &sort_file->records[*(const size_t *)a];
    const pf_record *rb = &sort_file->records[*(const size_t *)b];
    if (ra->type != rb->type)
        return ra->type < rb->type ? -1 : 1;
    return strcmp(ra->id, rb->id);
}

static void planfile_seeds(void)
{
    static const char *const demos[] = {"dap-defence", "iap-police"};
    for (size_t d = 0; d < sizeof(demos) / sizeof(demos[0]); d++) {
        char path[NSF_PATH];
        snprintf(path, sizeof(path), "%s/deploy/demo/%s.json", nsf_source_dir(), demos[d]);
        size_t len;
        char *text = read_all(path, &len);
        pf_file f;
        pf_file_init(&f);
        if (pf_parse(&f, PF_JSON, text, len) != 0 || f.errors_seen != 0)
            nsf_die("%s does not read without problems", path);
        write_seed("planfile_json", demos[d], text, len);
        free(text);

        /* The writer takes records by type, then id. */
        size_t *order = malloc(f.n * sizeof(*order));
        if (order == NULL)
            nsf_die("out of memory");
        for (size_t i = 0; i < f.n; i++)
            order[i] = i;
        sort_file = &f;
        qsort(order, f.n, sizeof(*order), by_type_and_id);
        char *csv = NULL;
        size_t csv_len = 0;
        FILE *out = open_memstream(&csv, &csv_len);
        pf_writer *w = out ? pf_writer_new(PF_CSV, out) : NULL;
        if (w == NULL)
            nsf_die("out of memory");
        for (size_t i = 0; i < f.n; i++) {
            const pf_record *r = &f.records[order[i]];
            if (pf_writer_record(w, r->type, r->id, r->values) != 0)
                nsf_die("cannot write %s as CSV", path);
        }
        if (pf_writer_finish(w) != 0 || fclose(out) != 0)
            nsf_die("cannot write %s as CSV", path);
        pf_writer_free(w);
        write_seed("planfile_csv", demos[d], csv, csv_len);
        free(csv);
        free(order);
        pf_file_free(&f);
    }
}

/* ---- session: request sequences after Hello (request ids from 2) ----------------------- */

/* device: 0 and 1 the lead ministry's coordinator's, 2 the other
 * ministry's (fuzz_session.c). */
static void session_seed(const char *name, uint8_t device, size_t n, ns_envelope *const *envs)
{
    nsf_buf b = {0};
    nsf_buf_put(&b, &device, 1);
    for (size_t i = 0; i < n; i++)
        nsf_buf_frame(&b, envs[i]);
    write_buf("session", name, &b);
}

#define DEVICE_SEED(name, device, ...)                                                             \
    session_seed(name, device, sizeof((ns_envelope *[]){__VA_ARGS__}) / sizeof(ns_envelope *),     \
                 (ns_envelope *[]){__VA_ARGS__})
#define SESSION_SEED(name, ...) DEVICE_SEED(name, 0, __VA_ARGS__)

static void session_seeds(void)
{
    nsf_arena *a = nsf_arena_new();
    SESSION_SEED("ping", nsf_ping(a, 2, "12345678"));
    SESSION_SEED("push-create",
                 nsf_push(a, 2, APPLY, 2,
                          (Napsync__V1__Mutation *[]){
                              plan_create(a, "f1000000-0000-4000-8000-0000000000b1", NSF_PLAN2_ID),
                              indicator_create(a, "f1000000-0000-4000-8000-0000000000b2",
                                               NSF_PLAN2_ID, NSF_INDICATOR2_ID)}),
                 nsf_push(a, 3, APPLY, 1,
                          (Napsync__V1__Mutation *[]){
                              nsf_mutation(a, "f1000000-0000-4000-8000-0000000000b3", "indicator",
                                           NSF_INDICATOR2_ID, OP_DELETE, 1, NULL)}));
    SESSION_SEED("push-modes",
                 nsf_push(a, 2, DRY_RUN, 1,
                          (Napsync__V1__Mutation *[]){
                              title_update(a, "f1000000-0000-4000-8000-0000000000b4", NSF_PLAN_ID,
                                           2, "National Action Plan 2024-2029")}),
                 nsf_push(a, 3, ATOMIC, 2,
                          (Napsync__V1__Mutation *[]){
                              title_update(a, "f1000000-0000-4000-8000-0000000000b5", NSF_PLAN_ID,
                                           2, "NAP 2024-2029"),
                              nsf_mutation(a, "f1000000-0000-4000-8000-0000000000b6", "indicator",
                                           "f0000000-0000-4000-8000-000000000005", OP_CREATE, 0,
                                           nsf_fields(a, 2, "plan_id", nsf_ref(a, NSF_PLAN_ID),
                                                      "value_type", nsf_text(a, "number")))}));
    SESSION_SEED("pull", nsf_pull(a, 2, "", 50, nsf_plan_scope(a, NSF_PLAN_ID)),
                 nsf_pull(a, 3, "", 0, nsf_org_scope(a, NSF_ORG_ID)),
                 nsf_pull(a, 4, "no-such-cursor", 1, nsf_plan_scope(a, NSF_PLAN_ID)));
    SESSION_SEED(
        "subscribe", nsf_subscribe(a, 2, "", nsf_plan_scope(a, NSF_PLAN_ID)),
        nsf_ping(a, 3, "12345678"),
        nsf_push(a, 4, APPLY, 1,
                 (Napsync__V1__Mutation *[]){title_update(a, "f1000000-0000-4000-8000-0000000000b7",
                                                          NSF_PLAN_ID, 2, "National Action Plan")}),
        nsf_subscribe(a, 5, "", NULL), nsf_ping(a, 6, "12345678"));
    SESSION_SEED("conflicts", nsf_list_conflicts(a, 2, nsf_plan_scope(a, NSF_PLAN_ID), 1),
                 nsf_resolve(a, 3, NSF_TOKEN_CONFLICT, "f1000000-0000-4000-8000-0000000000b8",
                             NAPSYNC__V1__RESOLUTION__RESOLUTION_KEEP, NULL),
                 nsf_list_conflicts(a, 4, NULL, 0));
    SESSION_SEED("resolve-value",
                 nsf_resolve(a, 2, NSF_TOKEN_CONFLICT, "f1000000-0000-4000-8000-0000000000b9",
                             NAPSYNC__V1__RESOLUTION__RESOLUTION_VALUE,
                             nsf_text(a, "National Action Plan on WPS 2024-2028")),
                 nsf_resolve(a, 3, NSF_TOKEN_CONFLICT, "f1000000-0000-4000-8000-0000000000ba",
                             NAPSYNC__V1__RESOLUTION__RESOLUTION_OTHER, NULL));
    SESSION_SEED("history", nsf_history(a, 2, "plan", NSF_PLAN_ID, 0, 50),
                 nsf_history(a, 3, "indicator", NSF_INDICATOR_ID, 2, 1),
                 nsf_history(a, 4, "no_such_type", NSF_PLAN_ID, 0, 0));
    SESSION_SEED("reports", nsf_report(a, 2, "progress", NSF_PLAN_ID, 0, NULL),
                 nsf_report(a, 3, "coverage", NULL, 0, NULL),
                 nsf_report(a, 4, "region", NULL, 0, NSF_REGION_ID));
    SESSION_SEED(
        "goodbye", nsf_ping(a, 2, "12345678"),
        nsf_goodbye(a, 3, NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_CLIENT_DONE, "done"));
    SESSION_SEED("misc", nsf_error(a, 2, ERR(INTERNAL), 0, "the client gives up"), nsf_env(a, 3),
                 nsf_hello(a, 4, 0));
    SESSION_SEED("server-body", nsf_welcome(a, 2, 0));
    SESSION_SEED("directory", nsf_pull(a, 2, "", 20, nsf_directory_scope(a)),
                 nsf_subscribe(a, 3, "", nsf_directory_scope(a)));
    /* The second device edits from old versions: merges and conflicts. */
    DEVICE_SEED(
        "stale-edits", 1,
        nsf_push(a, 2, APPLY, 2,
                 (Napsync__V1__Mutation *[]){
                     title_update(a, "f1000000-0000-4000-8000-0000000000bb", NSF_PLAN_ID, 1,
                                  "Plan on WPS"),
                     nsf_mutation(a, "f1000000-0000-4000-8000-0000000000bc", "indicator",
                                  NSF_INDICATOR_ID, OP_UPDATE, 1,
                                  nsf_fields(a, 2, "baseline", nsf_dec(a, "13"), "tags",
                                             nsf_set(a, 1, (const char *const[]){"women"})))}),
        nsf_list_conflicts(a, 3, nsf_plan_scope(a, NSF_PLAN_ID), 0));
    /* The lead ministry and the other ministry's plan: refused, but for the
     * indicator it answers for. */
    SESSION_SEED("other-ministry",
                 nsf_push(a, 2, APPLY, 2,
                          (Napsync__V1__Mutation *[]){
                              title_update(a, "f1000000-0000-4000-8000-0000000000bd",
                                           NSF_XA_PLAN_ID, 1, "Not ours"),
                              nsf_mutation(a, "f1000000-0000-4000-8000-0000000000be", "indicator",
                                           NSF_XA_INDICATOR_ID, OP_UPDATE, 1,
                                           nsf_fields(a, 1, "baseline", nsf_dec(a, "4")))}),
                 nsf_pull(a, 3, "", 10, nsf_plan_scope(a, NSF_XA_PLAN_ID)),
                 nsf_history(a, 4, "plan", NSF_XA_PLAN_ID, 0, 10),
                 nsf_report(a, 5, "progress", NSF_XA_PLAN_ID, 2025, NULL));
    DEVICE_SEED("owner", 2,
                nsf_pull(a, 2, "", 0, nsf_org_scope(a, "0e000000-0000-4000-8000-000000000009")),
                nsf_push(a, 3, ATOMIC, 1,
                         (Napsync__V1__Mutation *[]){
                             nsf_mutation(a, "f1000000-0000-4000-8000-0000000000bf", "indicator",
                                          NSF_XA_INDICATOR_ID, OP_DELETE, 1, NULL)}));
    /* Compression offered (byte 0's high bit): compressed requests. */
    nsf_buf b = {0};
    nsf_buf_put(&b, (const uint8_t[]){0x80}, 1);
    nsf_buf_zstd_frame(
        &b, nsf_push(a, 2, APPLY, 2,
                     (Napsync__V1__Mutation *[]){
                         plan_create(a, "f1000000-0000-4000-8000-0000000000c1", NSF_PLAN2_ID),
                         indicator_create(a, "f1000000-0000-4000-8000-0000000000c2", NSF_PLAN2_ID,
                                          NSF_INDICATOR2_ID)}));
    nsf_buf_frame(&b, nsf_pull(a, 3, "", 0, nsf_plan_scope(a, NSF_PLAN_ID)));
    nsf_buf_zstd_frame(
        &b, nsf_push(a, 4, DRY_RUN, 2,
                     (Napsync__V1__Mutation *[]){
                         title_update(a, "f1000000-0000-4000-8000-0000000000c3", NSF_PLAN_ID, 2,
                                      "National Action Plan on Women, Peace and Security"),
                         nsf_mutation(a, "f1000000-0000-4000-8000-0000000000c4", "indicator",
                                      NSF_INDICATOR_ID, OP_UPDATE, 1,
                                      nsf_fields(a, 2, "baseline", nsf_dec(a, "13"), "title",
                                                 nsf_text(a, "Share of women among negotiators "
                                                             "and mediators")))}));
    write_buf("session", "zstd", &b);
    /* A compressed frame without agreement is refused. */
    nsf_buf_put(&b, (const uint8_t[]){0}, 1);
    nsf_buf_zstd_frame(
        &b, nsf_push(a, 2, APPLY, 2,
                     (Napsync__V1__Mutation *[]){
                         plan_create(a, "f1000000-0000-4000-8000-0000000000c5", NSF_PLAN2_ID),
                         indicator_create(a, "f1000000-0000-4000-8000-0000000000c6", NSF_PLAN2_ID,
                                          NSF_INDICATOR2_ID)}));
    write_buf("session", "zstd-not-agreed", &b);
    nsf_arena_free(a);
}

/* ---- client: the server's answers to each of the client's operations ----------------------- */

/* The payload of the client's ping with request id id (client.c). */
static ns_envelope *pong_for(nsf_arena *a, uint64_t id)
{
    uint8_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(id >> (8 * (7 - i)));
    return nsf_pong(a, id, p, sizeof(p));
}

static void client_seed(const char *name, int scenario, size_t n, ns_envelope *const *envs)
{
    nsf_buf b = {0};
    uint8_t sc = (uint8_t)scenario;
    nsf_buf_put(&b, &sc, 1);
    for (size_t i = 0; i < n; i++)
        nsf_buf_frame(&b, envs[i]);
    write_buf("client", name, &b);
}

#define CLIENT_SEED(name, scenario, ...)                                                           \
    client_seed(name, scenario, sizeof((ns_envelope *[]){__VA_ARGS__}) / sizeof(ns_envelope *),    \
                (ns_envelope *[]){__VA_ARGS__})

/* The client target's scenarios (fuzz_client.c). */
enum { SC_PING, SC_SYNC, SC_WATCH, SC_HISTORY, SC_PUSH, SC_PULL_PLAN, SC_REPORT, SC_RESOLVE };

static ns_envelope *page_of_plan(nsf_arena *a, uint64_t rid, const char *cursor, int more)
{
    return nsf_change_page(
        a, rid, 2,
        (Napsync__V1__Record *[]){plan_record(a, NSF_PLAN_ID, 2),
                                  indicator_record(a, NSF_PLAN_ID, NSF_INDICATOR_ID)},
        cursor, more, NSF_PLAN_ID);
}

static ns_envelope *conflicts_of_plan(nsf_arena *a, uint64_t rid)
{
    return nsf_conflict_list(
        a, rid, 1,
        (Napsync__V1__Conflict *[]){nsf_conflict(a, "f3000000-0000-4000-8000-000000000001",
                                                 NSF_PLAN_ID, NSF_PLAN_ID, "title")});
}

static ns_envelope *outbox_result(nsf_arena *a, uint64_t rid)
{
    return nsf_push_result(
        a, rid, 1,
        (Napsync__V1__MutationResult *[]){nsf_result(a, NSF_TOKEN_MUTATION, APPLIED, 1, NULL)});
}

/* A Welcome that agrees on compact pages (and on zstd when zstd). */
static ns_envelope *welcome_compact(nsf_arena *a, int zstd)
{
    ns_envelope *w = nsf_welcome(a, 1, zstd);
    w->welcome->page_format = NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_COMPACT_1;
    return w;
}

/* page as the compact page that the server sends (proto/page_compact.h),
 * compressed when zstd. */
static void compact_frame(nsf_buf *b, const ns_envelope *page, int zstd)
{
    ns_page_compact *pc = NULL;
    if (ns_page_compact_make(page, &pc) != NS_PAGE_COMPACT_OK) {
        fprintf(stderr, "mkcorpus: a seed page does not fit the compact form\n");
        exit(1);
    }
    if (zstd)
        nsf_buf_zstd_frame(b, ns_page_compact_envelope(pc));
    else
        nsf_buf_frame(b, ns_page_compact_envelope(pc));
    ns_page_compact_free(pc);
}

/* Compact pages agreed: a sync, a sync with compression, a watch. */
static void compact_seeds(nsf_arena *a)
{
    for (int zstd = 0; zstd <= 1; zstd++) {
        nsf_buf b = {0};
        nsf_buf_put(&b, (const uint8_t[]){SC_SYNC}, 1);
        nsf_buf_frame(&b, welcome_compact(a, zstd));
        nsf_buf_frame(&b, outbox_result(a, 2));
        compact_frame(&b, page_of_plan(a, 3, "1:40", 1), zstd);
        /* Too small to compress: sent as it is. */
        compact_frame(&b, nsf_change_page(a, 4, 0, NULL, "1:41", 0, NSF_PLAN_ID), 0);
        nsf_buf_frame(&b, conflicts_of_plan(a, 5));
        write_buf("client", zstd ? "compact-zstd-sync" : "compact-sync", &b);
    }
    nsf_buf b = {0};
    nsf_buf_put(&b, (const uint8_t[]){SC_WATCH}, 1);
    nsf_buf_frame(&b, welcome_compact(a, 0));
    nsf_buf_frame(&b, outbox_result(a, 2));
    compact_frame(&b, page_of_plan(a, 3, "1:42", 0), 0);
    nsf_buf_frame(&b, conflicts_of_plan(a, 4));
    compact_frame(&b,
                  nsf_change_page(a, 5, 1,
                                  (Napsync__V1__Record *[]){plan_record(a, NSF_PLAN_ID, 4)}, "1:43",
                                  0, NSF_PLAN_ID),
                  0);
    write_buf("client", "compact-watch", &b);
    /* The envelope target expands compact pages too. */
    ns_page_compact *pc = NULL;
    if (ns_page_compact_make(page_of_plan(a, 3, "1:42", 1), &pc) != NS_PAGE_COMPACT_OK) {
        fprintf(stderr, "mkcorpus: a seed page does not fit the compact form\n");
        exit(1);
    }
    nsf_buf e = {0};
    nsf_buf_envelope(&e, ns_page_compact_envelope(pc));
    ns_page_compact_free(pc);
    write_buf("envelope", "compact-page", &e);
}

static void client_seeds(void)
{
    nsf_arena *a = nsf_arena_new();
    CLIENT_SEED("ping", SC_PING, nsf_welcome(a, 1, 0), pong_for(a, 2));
    CLIENT_SEED("goodbye", SC_PING, nsf_welcome(a, 1, 0),
                nsf_goodbye(a, 0, NAPSYNC__V1__GOODBYE_REASON__GOODBYE_REASON_SHUTTING_DOWN,
                            "the server is shutting down"));
    CLIENT_SEED("refused", SC_PING,
                nsf_error(a, 1, ERR(UNKNOWN_DEVICE), 1,
                          "no device is registered for this "
                          "certificate"));
    CLIENT_SEED("sync", SC_SYNC, nsf_welcome(a, 1, 0), outbox_result(a, 2),
                page_of_plan(a, 3, "1:42", 0), conflicts_of_plan(a, 4));
    CLIENT_SEED("sync-pages", SC_SYNC, nsf_welcome(a, 1, 0),
                nsf_push_result(a, 2, 1,
                                (Napsync__V1__MutationResult *[]){
                                    nsf_result(a, NSF_TOKEN_MUTATION, REJECTED, 0, NULL)}),
                page_of_plan(a, 3, "1:40", 1),
                nsf_change_page(a, 4, 1, (Napsync__V1__Record *[]){plan_record(a, NSF_PLAN_ID, 3)},
                                "1:41", 0, NSF_PLAN_ID),
                nsf_error(a, 5, ERR(UNSUPPORTED_MESSAGE), 0, "no conflicts here"));
    CLIENT_SEED("sync-cursor-reset", SC_SYNC, nsf_welcome(a, 1, 0), outbox_result(a, 2),
                nsf_error(a, 3, ERR(CURSOR_UNKNOWN), 0, "the cursor is unknown"),
                page_of_plan(a, 4, "1:42", 0), conflicts_of_plan(a, 5));
    CLIENT_SEED("sync-denied", SC_SYNC, nsf_welcome(a, 1, 0), outbox_result(a, 2),
                nsf_error(a, 3, ERR(PERMISSION_DENIED), 0, "a plan of the scopes is not readable"),
                page_of_plan(a, 4, "1:42", 0), conflicts_of_plan(a, 5));
    CLIENT_SEED("watch", SC_WATCH, nsf_welcome(a, 1, 0), outbox_result(a, 2),
                page_of_plan(a, 3, "1:42", 0), conflicts_of_plan(a, 4),
                nsf_change_page(a, 5, 0, NULL, "1:42", 0, NSF_PLAN_ID),
                nsf_change_page(a, 5, 1, (Napsync__V1__Record *[]){plan_record(a, NSF_PLAN_ID, 4)},
                                "1:43", 0, NSF_PLAN_ID),
                nsf_ping(a, 7, "probe"));
    /* Compression agreed: compressed answers. */
    nsf_buf b = {0};
    nsf_buf_put(&b, (const uint8_t[]){SC_SYNC}, 1);
    nsf_buf_frame(&b, nsf_welcome(a, 1, 1));
    nsf_buf_frame(&b, outbox_result(a, 2));
    nsf_buf_zstd_frame(&b, page_of_plan(a, 3, "1:42", 0));
    nsf_buf_zstd_frame(&b, conflicts_of_plan(a, 4));
    write_buf("client", "zstd-sync", &b);
    compact_seeds(a);
    CLIENT_SEED("history", SC_HISTORY, nsf_welcome(a, 1, 0),
                nsf_history_page(a, 2, "f1000000-0000-4000-8000-000000000003"));
    CLIENT_SEED(
        "push", SC_PUSH, nsf_welcome(a, 1, 0),
        nsf_push_result(a, 2, 2,
                        (Napsync__V1__MutationResult *[]){
                            nsf_result(a, "f1000000-0000-4000-8000-0000000000c1", APPLIED, 1, NULL),
                            nsf_result(a, "f1000000-0000-4000-8000-0000000000c2", CONFLICT, 4,
                                       "f3000000-0000-4000-8000-000000000001")}));
    CLIENT_SEED("pull-plan", SC_PULL_PLAN, nsf_welcome(a, 1, 0), page_of_plan(a, 2, "1:10", 1),
                nsf_change_page(
                    a, 3, 1,
                    (Napsync__V1__Record *[]){indicator_record(a, NSF_PLAN_ID, NSF_INDICATOR_ID)},
                    "1:11", 0, NSF_PLAN_ID));
    CLIENT_SEED("report", SC_REPORT, nsf_welcome(a, 1, 0),
                nsf_report_result(a, 2, "progress",
                                  "{\"kind\":\"progress\",\"plan\":{\"id\":\"" NSF_PLAN_ID
                                  "\"},\"year\":2025,\"indicators\":[]}"));
    CLIENT_SEED("resolve", SC_RESOLVE, nsf_welcome(a, 1, 0), outbox_result(a, 2),
                nsf_change_page(a, 3, 1, (Napsync__V1__Record *[]){plan_record(a, NSF_PLAN_ID, 3)},
                                "1:5", 0, NSF_PLAN_ID),
                conflicts_of_plan(a, 4),
                nsf_mutation_result(a, 5, nsf_result(a, NSF_TOKEN_MUTATION, APPLIED, 4, NULL)));
    nsf_arena_free(a);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_mkcorpus DIR (tests/fuzz/corpus)\n");
        return 2;
    }
    out_dir = argv[1];
    make_dir(out_dir);
    envelope_seeds();
    frame_seeds();
    value_seeds();
    config_seeds();
    planfile_seeds();
    session_seeds();
    client_seeds();
    return 0;
}
