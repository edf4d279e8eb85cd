/* The device's local store: client/store.h. Each test works on a fresh
 * file in its own temporary directory. Durability is tested the way it
 * fails in the field: a child process saves a change and dies without
 * closing anything (_exit, SIGKILL), and the parent finds the change; a
 * full disk is a database capped with PRAGMA max_page_count (set on every
 * connection through sqlite3_auto_extension, so production code carries no
 * hook), and what was saved before it filled up survives a reopen. Every
 * allocation of the library's own code (not SQLite's) fails in turn in one
 * test: the allocator is wrapped at link time (alloc_fail.h), and where
 * the count of live blocks can be read it must balance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc_fail.h"
#include "fields_pb.h"
#include "store.h"

#define TENANT_A "aaaaaaaa-0000-4000-8000-000000000001"
#define TENANT_B "bbbbbbbb-0000-4000-8000-000000000002"
#define REC_1    "10000000-0000-4000-8000-000000000001"
#define REC_2    "20000000-0000-4000-8000-000000000002"
#define REC_3    "30000000-0000-4000-8000-000000000003"
#define REC_4    "40000000-0000-4000-8000-000000000004"
#define CONF_1   "c1000000-0000-4000-8000-000000000001"
#define CONF_2   "c2000000-0000-4000-8000-000000000002"
#define CONF_3   "c3000000-0000-4000-8000-000000000003"

typedef struct {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ns-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/device.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", ".lock"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- helpers -------------------------------------------------------------------- */

static ns_store *open_ok(const char *path)
{
    ns_store *s = NULL;
    ns_error err;
    memset(&err, 0, sizeof(err));
    ns_store_rc rc = ns_store_open(path, &s, &err);
    if (rc != NS_STORE_OK)
        fail_msg("open %s: %d %s", path, rc, err.message);
    return s;
}

static void set_text(ns_fieldset *fs, const char *name, const char *text)
{
    ns_field_type t = {.kind = NS_KIND_TEXT, .nullable = true};
    ns_value v;
    char why[128];
    assert_int_equal(ns_value_parse(&t, text, &v, why, sizeof(why)), NS_VALUE_OK);
    assert_int_equal(ns_fieldset_set(fs, name, &v), 0);
    ns_value_free(&v);
}

/* A field set of text fields: name, value, name, value, ..., NULL. */
static ns_fieldset texts(const char *name, ...)
{
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    va_list ap;
    va_start(ap, name);
    for (const char *n = name; n != NULL; n = va_arg(ap, const char *))
        set_text(&fs, n, va_arg(ap, const char *));
    va_end(ap);
    return fs;
}

static const char *text_of(const ns_fieldset *fs, const char *name)
{
    const ns_value *v = ns_fieldset_get(fs, name);
    if (v == NULL || v->is_null || v->kind != NS_KIND_TEXT)
        return NULL;
    return v->u.s;
}

static ns_store_enqueued enqueue_ok(ns_store *s, ns_store_op op, const char *type, const char *id,
                                    const ns_fieldset *fs)
{
    ns_store_enqueued out;
    ns_error err;
    ns_store_rc rc = ns_store_enqueue(s, op, type, id, fs, &out, &err);
    if (rc != NS_STORE_OK)
        fail_msg("enqueue %s %s: %d %s", type, id != NULL ? id : "(new)", rc, err.message);
    return out;
}

static ns_store_enqueued put_title(ns_store *s, ns_store_op op, const char *id, const char *title)
{
    ns_fieldset fs = texts("title", title, NULL);
    ns_store_enqueued e = enqueue_ok(s, op, "plan", id, &fs);
    ns_fieldset_free(&fs);
    return e;
}

/* A record of a page, with the wire structs it points to. */
typedef struct {
    Napsync__V1__Record rec;
    Napsync__V1__FieldSet pb;
    ns_fieldset fs;
} page_record;

static void record_init(page_record *r, const char *id, uint64_t version, bool deleted,
                        const char *tenant, const char *title)
{
    memset(r, 0, sizeof(*r));
    napsync__v1__record__init(&r->rec);
    ns_fieldset_init(&r->fs);
    if (title != NULL) {
        set_text(&r->fs, "title", title);
        set_text(&r->fs, "summary", "a summary");
    }
    assert_int_equal(ns_fieldset_to_pb(&r->fs, &r->pb), 0);
    r->rec.entity_type = (char *)"plan";
    r->rec.id = (char *)id;
    r->rec.version = version;
    r->rec.deleted = deleted;
    r->rec.tenant_id = (char *)tenant;
    r->rec.fields = &r->pb;
    r->rec.changed_by = (char *)"Amina Diallo";
    r->rec.changed_at = (char *)"2024-05-01T10:00:00Z";
}

static void record_clear(page_record *r)
{
    ns_fieldset_pb_clear(&r->pb);
    ns_fieldset_free(&r->fs);
}

static ns_store_rc apply(ns_store *s, page_record *recs, size_t n, const char *cursor,
                         size_t *napplied, ns_error *err)
{
    Napsync__V1__Record *ptrs[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &recs[i].rec;
    Napsync__V1__ChangePage page = NAPSYNC__V1__CHANGE_PAGE__INIT;
    page.records = ptrs;
    page.n_records = n;
    page.next_cursor = (char *)cursor;
    return ns_store_apply_page(s, &page, napplied, err);
}

/* Applies one record and expects it to be taken (or ignored). */
static void apply_one(ns_store *s, const char *id, uint64_t version, bool deleted,
                      const char *tenant, const char *title, const char *cursor, size_t want)
{
    page_record r;
    record_init(&r, id, version, deleted, tenant, title);
    size_t napplied = 99;
    ns_error err;
    ns_store_rc rc = apply(s, &r, 1, cursor, &napplied, &err);
    record_clear(&r);
    if (rc != NS_STORE_OK)
        fail_msg("apply %s v%llu: %s", id, (unsigned long long)version, err.message);
    assert_int_equal(napplied, want);
}

static ns_store_status status_ok(ns_store *s)
{
    ns_store_status st;
    ns_error err;
    if (ns_store_get_status(s, &st, &err) != NS_STORE_OK)
        fail_msg("status: %s", err.message);
    return st;
}

static bool has_record(ns_store *s, const char *id)
{
    ns_store_record r;
    ns_error err;
    ns_store_rc rc = ns_store_get(s, "plan", id, &r, &err);
    if (rc == NS_STORE_NOT_FOUND)
        return false;
    if (rc != NS_STORE_OK)
        fail_msg("get %s: %s", id, err.message);
    ns_store_record_free(&r);
    return true;
}

static void cursor_is(ns_store *s, const char *want)
{
    char c[NS_STORE_CURSOR_SIZE];
    ns_error err;
    assert_int_equal(ns_store_cursor(s, c, &err), NS_STORE_OK);
    assert_string_equal(c, want);
}

/* Collects listings. */
typedef struct {
    char ids[16][NS_STORE_UUID_SIZE];
    char titles[16][64];
    bool deleted[16];
    bool pending[16];
    uint64_t versions[16];
    ns_store_state states[16];
    int codes[16];
    char reasons[16][NS_STORE_REASON_SIZE];
    size_t n;
    size_t stop_after; /* 0: never */
    ns_store *reenter; /* a store to call from inside the callback */
    ns_store_rc reenter_rc;
} seen;

static int on_record(const ns_store_record *r, void *ud)
{
    seen *w = ud;
    if (w->reenter != NULL) {
        ns_store_status st;
        ns_error err;
        w->reenter_rc = ns_store_get_status(w->reenter, &st, &err);
    }
    assert_true(w->n < 16);
    snprintf(w->ids[w->n], sizeof(w->ids[0]), "%s", r->id);
    const char *t = text_of(&r->fields, "title");
    snprintf(w->titles[w->n], sizeof(w->titles[0]), "%s", t != NULL ? t : "");
    w->deleted[w->n] = r->deleted;
    w->pending[w->n] = r->has_pending;
    w->versions[w->n] = r->version;
    w->n++;
    return w->stop_after != 0 && w->n >= w->stop_after;
}

static int on_outbox(const ns_store_outbox_entry *e, void *ud)
{
    seen *w = ud;
    assert_true(w->n < 16);
    snprintf(w->ids[w->n], sizeof(w->ids[0]), "%s", e->mutation_id);
    const char *t = text_of(&e->fields, "title");
    snprintf(w->titles[w->n], sizeof(w->titles[0]), "%s", t != NULL ? t : "");
    w->states[w->n] = e->state;
    w->codes[w->n] = e->reject_code;
    snprintf(w->reasons[w->n], sizeof(w->reasons[0]), "%s", e->reject_reason);
    w->versions[w->n] = e->base_version;
    w->n++;
    return 0;
}

static seen list_plans(ns_store *s, bool include_deleted)
{
    seen w;
    memset(&w, 0, sizeof(w));
    ns_error err;
    if (ns_store_list(s, "plan", include_deleted, on_record, &w, &err) != NS_STORE_OK)
        fail_msg("list: %s", err.message);
    return w;
}

static seen list_outbox(ns_store *s)
{
    seen w;
    memset(&w, 0, sizeof(w));
    ns_error err;
    if (ns_store_outbox_list(s, on_outbox, &w, &err) != NS_STORE_OK)
        fail_msg("outbox: %s", err.message);
    return w;
}

static Napsync__V1__MutationResult result(const char *id, Napsync__V1__MutationOutcome outcome)
{
    Napsync__V1__MutationResult r = NAPSYNC__V1__MUTATION_RESULT__INIT;
    r.mutation_id = (char *)id;
    r.outcome = outcome;
    r.version = 1;
    return r;
}

static int64_t raw_pragma(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_reopen_keeps_everything(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 3, false, TENANT_A, "From the server", "v1.7.12", 1);
    ns_store_enqueued upd = put_title(s, NS_STORE_OP_UPDATE, REC_1, "Edited here");
    assert_int_equal(upd.base_version, 3);
    ns_store_enqueued cre = put_title(s, NS_STORE_OP_CREATE, NULL, "Made here");
    assert_int_equal(cre.base_version, 0);
    assert_int_equal(ns_store_meta_set(s, NS_STORE_META_SERVER, "sync.example.org:7443", &err),
                     NS_STORE_OK);
    assert_int_equal(ns_store_meta_set(s, NS_STORE_META_DEVICE_ID, TENANT_B, &err), NS_STORE_OK);
    assert_int_equal(ns_store_set_last_sync(s, 1714557600123, &err), NS_STORE_OK);
    ns_store_close(s);

    s = open_ok(f->path);
    ns_store_record r;
    assert_int_equal(ns_store_get(s, "plan", REC_1, &r, &err), NS_STORE_OK);
    assert_string_equal(text_of(&r.fields, "title"), "Edited here");
    assert_string_equal(text_of(&r.fields, "summary"), "a summary");
    assert_int_equal(r.version, 3);
    assert_true(r.has_pending);
    assert_string_equal(r.tenant_id, TENANT_A);
    assert_string_equal(r.changed_by, "Amina Diallo");
    ns_store_record_free(&r);
    assert_int_equal(ns_store_get(s, "plan", cre.record_id, &r, &err), NS_STORE_OK);
    assert_string_equal(text_of(&r.fields, "title"), "Made here");
    assert_int_equal(r.version, 0);
    ns_store_record_free(&r);

    ns_store_status st = status_ok(s);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.rejected, 0);
    assert_int_equal(st.records, 1);
    assert_string_equal(st.cursor, "v1.7.12");
    assert_int_equal(st.last_sync_ms, 1714557600123);
    char meta[NS_STORE_META_SIZE];
    assert_int_equal(ns_store_meta_get(s, NS_STORE_META_SERVER, meta, &err), NS_STORE_OK);
    assert_string_equal(meta, "sync.example.org:7443");
    assert_int_equal(ns_store_meta_get(s, NS_STORE_META_DEVICE_ID, meta, &err), NS_STORE_OK);
    assert_string_equal(meta, TENANT_B);
    seen w = list_outbox(s);
    assert_int_equal(w.n, 2);
    assert_string_equal(w.ids[0], upd.mutation_id);
    assert_string_equal(w.ids[1], cre.mutation_id);
    ns_store_close(s);

    /* The file is what the design says. */
    assert_int_equal(raw_pragma(f->path, "PRAGMA user_version"), ns_store_schema_version());
    assert_int_equal(raw_pragma(f->path, "PRAGMA application_id"), 0x4e505359);
    assert_int_equal(raw_pragma(f->path, "SELECT count(*) FROM pragma_journal_mode "
                                         "WHERE journal_mode = 'wal'"),
                     1);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

/* A child saves a change and dies without closing; the parent finds it. */
static void test_crash_after_enqueue(void **state)
{
    fixture *f = *state;
    char ids[4][NS_STORE_UUID_SIZE];
    for (int round = 0; round < 4; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            ns_store *s = NULL;
            if (ns_store_open(f->path, &s, NULL) != NS_STORE_OK)
                _exit(10);
            ns_fieldset fs;
            ns_fieldset_init(&fs);
            ns_field_type t = {.kind = NS_KIND_TEXT, .nullable = true};
            ns_value v;
            if (ns_value_parse(&t, "saved before the crash", &v, NULL, 0) != NS_VALUE_OK ||
                ns_fieldset_set(&fs, "title", &v) != 0)
                _exit(11);
            ns_store_enqueued e;
            if (ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", NULL, &fs, &e, NULL) != NS_STORE_OK)
                _exit(12);
            /* The API said "saved": the id is reported, then the process dies. */
            if (write(fds[1], e.mutation_id, NS_STORE_UUID_SIZE) != NS_STORE_UUID_SIZE)
                _exit(13);
            if (round % 2 == 1)
                raise(SIGKILL);
            _exit(0);
        }
        close(fds[1]);
        assert_int_equal(read(fds[0], ids[round], NS_STORE_UUID_SIZE), NS_STORE_UUID_SIZE);
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (round % 2 == 1)
            assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        else
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    ns_store *s = open_ok(f->path);
    ns_store_batch b;
    ns_error err;
    assert_int_equal(ns_store_outbox_batch(s, 100, 1u << 20, &b, &err), NS_STORE_OK);
    assert_int_equal(b.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(b.mutations[i]->mutation_id, ids[i]);
        assert_int_equal(b.mutations[i]->op, NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE);
    }
    ns_store_batch_free(&b);
    ns_store_close(s);
}

static void test_outbox_order_and_batches(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 7, false, TENANT_A, "Seven", "v1.1.1", 1);
    ns_store_enqueued e[5];
    e[0] = put_title(s, NS_STORE_OP_UPDATE, REC_1, "first");
    e[1] = put_title(s, NS_STORE_OP_CREATE, REC_2, "second");
    e[2] = put_title(s, NS_STORE_OP_UPDATE, REC_2, "third");
    e[3] = put_title(s, NS_STORE_OP_UPDATE, REC_1, "fourth");
    e[4] = enqueue_ok(s, NS_STORE_OP_DELETE, "plan", REC_1, NULL);
    assert_int_equal(e[0].base_version, 7);
    assert_int_equal(e[1].base_version, 0);
    assert_int_equal(e[2].base_version, 0); /* the create is not acknowledged yet */
    assert_int_equal(e[3].base_version, 7);
    assert_int_equal(e[4].base_version, 7);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(e[i].mutation_id, e[j].mutation_id);

    ns_store_batch b;
    assert_int_equal(ns_store_outbox_batch(s, 100, 1u << 20, &b, &err), NS_STORE_OK);
    assert_int_equal(b.n, 5);
    size_t total = 0;
    for (size_t i = 0; i < b.n; i++) {
        Napsync__V1__Mutation *m = b.mutations[i];
        assert_string_equal(m->mutation_id, e[i].mutation_id);
        assert_string_equal(m->entity_type, "plan");
        assert_string_equal(m->record_id, e[i].record_id);
        assert_int_equal(m->base_version, e[i].base_version);
        total += napsync__v1__mutation__get_packed_size(m);
    }
    assert_int_equal(b.packed_bytes, total);
    assert_int_equal(b.mutations[1]->op, NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE);
    assert_int_equal(b.mutations[2]->op, NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE);
    assert_int_equal(b.mutations[4]->op, NAPSYNC__V1__MUTATION_OP__MUTATION_OP_DELETE);
    assert_null(b.mutations[4]->fields);
    assert_int_equal(b.mutations[3]->fields->n_fields, 1);
    assert_string_equal(b.mutations[3]->fields->fields[0]->name, "title");
    assert_string_equal(b.mutations[3]->fields->fields[0]->value->text_value, "fourth");
    /* A batch packs to a Push the server can read. */
    Napsync__V1__Push push = NAPSYNC__V1__PUSH__INIT;
    push.mutations = b.mutations;
    push.n_mutations = b.n;
    size_t len = napsync__v1__push__get_packed_size(&push);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    napsync__v1__push__pack(&push, buf);
    Napsync__V1__Push *back = napsync__v1__push__unpack(NULL, len, buf);
    assert_non_null(back);
    assert_int_equal(back->n_mutations, 5);
    assert_string_equal(back->mutations[2]->mutation_id, e[2].mutation_id);
    napsync__v1__push__free_unpacked(back, NULL);
    free(buf);
    ns_store_batch_free(&b);
    assert_null(b.mutations);

    /* Bounded by count, and by bytes after the first. */
    assert_int_equal(ns_store_outbox_batch(s, 2, 1u << 20, &b, &err), NS_STORE_OK);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.mutations[1]->mutation_id, e[1].mutation_id);
    ns_store_batch_free(&b);
    assert_int_equal(ns_store_outbox_batch(s, 100, 1, &b, &err), NS_STORE_OK);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.mutations[0]->mutation_id, e[0].mutation_id);
    ns_store_batch_free(&b);
    assert_int_equal(ns_store_outbox_batch(s, 0, 100, &b, &err), NS_STORE_INVALID);
    assert_int_equal(err.status, NS_ERR_INVALID_ARGUMENT);
    ns_store_batch_free(&b);
    ns_store_close(s);
}

static void test_results(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    ns_store_enqueued e[5];
    const char *ids[5] = {REC_1, REC_2, REC_3, REC_4, NULL};
    for (int i = 0; i < 5; i++)
        e[i] = put_title(s, NS_STORE_OP_CREATE, ids[i], "t");

    Napsync__V1__MutationResult r[4];
    r[0] = result(e[0].mutation_id, NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED);
    r[1] = result(e[1].mutation_id, NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED);
    r[1].reject_code = NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT;
    r[1].reject_reason = (char *)"field \"title\": too long\x01";
    r[2] = result(e[2].mutation_id, NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT);
    char *conflict_ids[1] = {(char *)CONF_1};
    r[2].conflict_ids = conflict_ids;
    r[2].n_conflict_ids = 1;
    r[3] = result("99999999-0000-4000-8000-000000000009",
                  NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED);
    const Napsync__V1__MutationResult *rp[4] = {&r[0], &r[1], &r[2], &r[3]};

    /* A malformed answer anywhere refuses them all. */
    Napsync__V1__MutationResult bad =
        result(e[3].mutation_id, NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_UNSPECIFIED);
    const Napsync__V1__MutationResult *with_bad[2] = {&r[0], &bad};
    size_t unmatched = 7;
    assert_int_equal(ns_store_record_results(s, with_bad, 2, &unmatched, &err), NS_STORE_INVALID);
    assert_int_equal(err.status, NS_ERR_PROTOCOL);
    assert_int_equal(unmatched, 0);
    bad = result(e[3].mutation_id, NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED);
    assert_int_equal(ns_store_record_results(s, with_bad, 2, NULL, &err), NS_STORE_INVALID);
    assert_int_equal(status_ok(s).pending, 5);

    assert_int_equal(ns_store_record_results(s, rp, 4, &unmatched, &err), NS_STORE_OK);
    assert_int_equal(unmatched, 1);
    ns_store_status st = status_ok(s);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.rejected, 1);

    /* The rejected one blocks nothing: the next batch is what follows it. */
    ns_store_batch b;
    assert_int_equal(ns_store_outbox_batch(s, 100, 1u << 20, &b, &err), NS_STORE_OK);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.mutations[0]->mutation_id, e[3].mutation_id);
    assert_string_equal(b.mutations[1]->mutation_id, e[4].mutation_id);
    ns_store_batch_free(&b);

    /* It is kept, with its code and reason, for the user. */
    seen w = list_outbox(s);
    assert_int_equal(w.n, 3);
    assert_string_equal(w.ids[0], e[1].mutation_id);
    assert_int_equal(w.states[0], NS_STORE_REJECTED);
    assert_int_equal(w.codes[0], NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT);
    assert_string_equal(w.reasons[0], "field \"title\": too long?");
    assert_int_equal(w.states[1], NS_STORE_PENDING);
    assert_int_equal(w.codes[1], 0);
    assert_string_equal(w.reasons[1], "");
    /* The applied create is gone from the view until the server's page. */
    assert_false(has_record(s, REC_1));
    ns_store_record rec;
    assert_int_equal(ns_store_get(s, "plan", REC_2, &rec, &err), NS_STORE_NOT_FOUND);
    assert_int_equal(err.status, NS_ERR_INVALID_ARGUMENT);

    /* Only a rejected change may be discarded. */
    assert_int_equal(ns_store_discard(s, e[3].mutation_id, &err), NS_STORE_STATE);
    assert_int_equal(err.status, NS_ERR_STATE);
    assert_int_equal(ns_store_discard(s, e[1].mutation_id, &err), NS_STORE_OK);
    assert_int_equal(ns_store_discard(s, e[1].mutation_id, &err), NS_STORE_NOT_FOUND);
    assert_int_equal(ns_store_discard(s, "not-a-uuid", &err), NS_STORE_INVALID);
    st = status_ok(s);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.rejected, 0);

    /* The same answers again (a re-sent push) change nothing. */
    assert_int_equal(ns_store_record_results(s, rp, 3, &unmatched, &err), NS_STORE_OK);
    assert_int_equal(unmatched, 3);
    assert_int_equal(status_ok(s).pending, 2);
    ns_store_close(s);
}

static void test_apply_page_atomic(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 1, false, TENANT_A, "Before", "v1.1.2", 1);

    /* Record 2 of 3 carries an impossible date: the whole page is refused,
     * after record 1 was already written inside the transaction. */
    page_record recs[3];
    record_init(&recs[0], REC_2, 1, false, TENANT_A, "good");
    record_init(&recs[1], REC_3, 1, false, TENANT_A, "bad");
    record_init(&recs[2], REC_1, 2, false, TENANT_A, "After");
    Napsync__V1__Value date = NAPSYNC__V1__VALUE__INIT;
    date.kind_case = NAPSYNC__V1__VALUE__KIND_DATE_VALUE;
    date.date_value = (char *)"2024-02-30";
    Napsync__V1__Field field = NAPSYNC__V1__FIELD__INIT;
    field.name = (char *)"start_date";
    field.value = &date;
    Napsync__V1__Field *fields[1] = {&field};
    Napsync__V1__FieldSet bad_fs = NAPSYNC__V1__FIELD_SET__INIT;
    bad_fs.fields = fields;
    bad_fs.n_fields = 1;
    recs[1].rec.fields = &bad_fs;
    size_t napplied = 5;
    assert_int_equal(apply(s, recs, 3, "v1.1.9", &napplied, &err), NS_STORE_INVALID);
    assert_int_equal(err.status, NS_ERR_PROTOCOL);
    assert_non_null(strstr(err.message, "start_date"));
    assert_int_equal(napplied, 0);
    assert_false(has_record(s, REC_2));
    assert_false(has_record(s, REC_3));
    cursor_is(s, "v1.1.2");
    ns_store_record r;
    assert_int_equal(ns_store_get(s, "plan", REC_1, &r, &err), NS_STORE_OK);
    assert_string_equal(text_of(&r.fields, "title"), "Before");
    assert_int_equal(r.version, 1);
    ns_store_record_free(&r);

    /* Other kinds of bad input are refused the same way. */
    recs[1].rec.fields = &recs[1].pb;
    recs[1].rec.tenant_id = (char *)"";
    assert_int_equal(apply(s, recs, 3, "v1.1.9", NULL, &err), NS_STORE_INVALID);
    recs[1].rec.tenant_id = (char *)TENANT_A;
    recs[1].rec.version = 0;
    assert_int_equal(apply(s, recs, 3, "v1.1.9", NULL, &err), NS_STORE_INVALID);
    recs[1].rec.version = 1;
    recs[1].rec.entity_type = (char *)"Plan; DROP TABLE records";
    assert_int_equal(apply(s, recs, 3, "v1.1.9", NULL, &err), NS_STORE_INVALID);
    recs[1].rec.entity_type = (char *)"plan";
    assert_int_equal(apply(s, recs, 3, "", NULL, &err), NS_STORE_INVALID);
    assert_int_equal(apply(s, recs, 3, "v1 1", NULL, &err), NS_STORE_INVALID);
    assert_false(has_record(s, REC_2));
    cursor_is(s, "v1.1.2");

    /* The good page applies whole, with its cursor. */
    assert_int_equal(apply(s, recs, 3, "v1.1.9", &napplied, &err), NS_STORE_OK);
    assert_int_equal(napplied, 3);
    cursor_is(s, "v1.1.9");
    assert_int_equal(ns_store_get(s, "plan", REC_1, &r, &err), NS_STORE_OK);
    assert_string_equal(text_of(&r.fields, "title"), "After");
    assert_int_equal(r.version, 2);
    ns_store_record_free(&r);
    /* The same page again is ignored but still moves the cursor. */
    assert_int_equal(apply(s, recs, 3, "v1.1.10", &napplied, &err), NS_STORE_OK);
    assert_int_equal(napplied, 0);
    cursor_is(s, "v1.1.10");
    for (int i = 0; i < 3; i++)
        record_clear(&recs[i]);
    ns_store_close(s);
}

static void test_tombstones(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 2, false, TENANT_A, "Alive", "v1.1.1", 1);
    apply_one(s, REC_1, 3, true, TENANT_A, NULL, "v1.1.2", 1);
    /* An older change arriving late does not bring it back. */
    apply_one(s, REC_1, 2, false, TENANT_A, "Alive", "v1.1.3", 0);
    ns_store_record r;
    assert_int_equal(ns_store_get(s, "plan", REC_1, &r, &err), NS_STORE_OK);
    assert_true(r.deleted);
    assert_int_equal(r.version, 3);
    ns_store_record_free(&r);
    assert_int_equal(list_plans(s, false).n, 0);
    seen w = list_plans(s, true);
    assert_int_equal(w.n, 1);
    assert_true(w.deleted[0]);
    assert_int_equal(status_ok(s).records, 1);

    /* Deleted here: no update, no delete, no create with its id. */
    ns_fieldset fs = texts("title", "x", NULL);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_UPDATE, "plan", REC_1, &fs, NULL, &err),
                     NS_STORE_NOT_FOUND);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_DELETE, "plan", REC_1, NULL, NULL, &err),
                     NS_STORE_NOT_FOUND);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", REC_1, &fs, NULL, &err),
                     NS_STORE_EXISTS);
    ns_fieldset_free(&fs);

    /* A newer version (a resolved edit-versus-delete) restores it. */
    apply_one(s, REC_1, 4, false, TENANT_A, "Restored", "v1.1.4", 1);
    w = list_plans(s, false);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.titles[0], "Restored");
    ns_store_close(s);
}

static void test_local_view(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_2, 2, false, TENANT_A, "Server title", "v1.1.1", 1);
    ns_store_enqueued upd = put_title(s, NS_STORE_OP_UPDATE, REC_2, "My title");
    ns_store_record r;
    assert_int_equal(ns_store_get(s, "plan", REC_2, &r, &err), NS_STORE_OK);
    assert_string_equal(text_of(&r.fields, "title"), "My title");
    assert_string_equal(text_of(&r.fields, "summary"), "a summary");
    assert_int_equal(r.version, 2);
    assert_true(r.has_pending);
    assert_false(r.deleted);
    ns_store_record_free(&r);

    /* A later change of another field is applied on top, in order. */
    ns_fieldset fs = texts("summary", "My summary", "title", "My second title", NULL);
    enqueue_ok(s, NS_STORE_OP_UPDATE, "plan", REC_2, &fs);
    ns_fieldset_free(&fs);
    put_title(s, NS_STORE_OP_CREATE, REC_1, "Draft");
    seen w = list_plans(s, false);
    assert_int_equal(w.n, 2);
    assert_string_equal(w.ids[0], REC_1); /* by id */
    assert_string_equal(w.titles[0], "Draft");
    assert_int_equal(w.versions[0], 0);
    assert_true(w.pending[0]);
    assert_string_equal(w.ids[1], REC_2);
    assert_string_equal(w.titles[1], "My second title");
    assert_int_equal(w.versions[1], 2);

    /* A listing can be stopped, and its callback cannot call back in. */
    memset(&w, 0, sizeof(w));
    w.stop_after = 1;
    w.reenter = s;
    w.reenter_rc = NS_STORE_OK;
    assert_int_equal(ns_store_list(s, "plan", false, on_record, &w, &err), NS_STORE_OK);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.reenter_rc, NS_STORE_STATE);
    assert_int_equal(status_ok(s).pending, 3); /* usable again after the listing */

    /* Delete marks it deleted; the listing leaves it out. */
    enqueue_ok(s, NS_STORE_OP_DELETE, "plan", REC_2, NULL);
    assert_int_equal(ns_store_get(s, "plan", REC_2, &r, &err), NS_STORE_OK);
    assert_true(r.deleted);
    ns_store_record_free(&r);
    w = list_plans(s, false);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.ids[0], REC_1);
    assert_int_equal(list_plans(s, true).n, 2);

    /* A rejected change is not applied, only counted. */
    Napsync__V1__MutationResult rej =
        result(upd.mutation_id, NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED);
    rej.reject_code = NAPSYNC__V1__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED;
    const Napsync__V1__MutationResult *rp[1] = {&rej};
    assert_int_equal(ns_store_record_results(s, rp, 1, NULL, &err), NS_STORE_OK);
    assert_int_equal(ns_store_get(s, "plan", REC_2, &r, &err), NS_STORE_OK);
    assert_int_equal(r.rejected, 1);
    assert_true(r.deleted);
    assert_string_equal(text_of(&r.fields, "summary"), "My summary");
    ns_store_record_free(&r);

    /* An update of a pending create is based on version 0. */
    ns_store_enqueued e = put_title(s, NS_STORE_OP_UPDATE, REC_1, "Draft 2");
    assert_int_equal(e.base_version, 0);
    assert_int_equal(ns_store_get(s, "plan", REC_1, &r, &err), NS_STORE_OK);
    assert_string_equal(text_of(&r.fields, "title"), "Draft 2");
    ns_store_record_free(&r);
    /* Other types are separate. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(ns_store_list(s, "indicator", true, on_record, &w, &err), NS_STORE_OK);
    assert_int_equal(w.n, 0);
    ns_store_close(s);
}

static void test_reset_keeps_outbox(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 4, false, TENANT_A, "Replica", "v1.3.40", 1);
    apply_one(s, REC_2, 1, false, TENANT_A, "Replica 2", "v1.3.41", 1);
    put_title(s, NS_STORE_OP_UPDATE, REC_1, "Local edit");
    put_title(s, NS_STORE_OP_CREATE, REC_3, "Local create");
    assert_int_equal(ns_store_reset_replica(s, &err), NS_STORE_OK);
    ns_store_status st = status_ok(s);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.pending, 2);
    assert_string_equal(st.cursor, "");
    cursor_is(s, "");
    assert_false(has_record(s, REC_2));
    assert_true(has_record(s, REC_3));
    /* The pending update's record is back when the server sends it. */
    apply_one(s, REC_1, 5, false, TENANT_A, "Replica", "v2.1.1", 1);
    ns_store_record r;
    assert_int_equal(ns_store_get(s, "plan", REC_1, &r, &err), NS_STORE_OK);
    assert_string_equal(text_of(&r.fields, "title"), "Local edit");
    assert_int_equal(r.version, 5);
    ns_store_record_free(&r);
    ns_store_close(s);
}

static void test_purge_tenant(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 1, false, TENANT_A, "A", "v1.1.1", 1);
    apply_one(s, REC_2, 1, true, TENANT_A, NULL, "v1.1.2", 1);
    apply_one(s, REC_3, 1, false, TENANT_B, "B", "v1.1.3", 1);
    put_title(s, NS_STORE_OP_UPDATE, REC_1, "edit");
    assert_int_equal(ns_store_purge_tenant(s, TENANT_A, &err), NS_STORE_OK);
    ns_store_status st = status_ok(s);
    assert_int_equal(st.records, 1);
    assert_int_equal(st.pending, 1);
    assert_string_equal(st.cursor, "v1.1.3");
    assert_true(has_record(s, REC_3));
    assert_int_equal(ns_store_purge_tenant(s, "everything", &err), NS_STORE_INVALID);
    ns_store_close(s);
}

#define TENANT_C "cccccccc-0000-4000-8000-000000000003"

/* A page of recs (n may be 0) listing the given tenant set. */
static ns_store_rc apply_set(ns_store *s, page_record *recs, size_t n, const char *cursor,
                             const char *const *tenants, size_t ntenants,
                             ns_store_page_outcome *out, ns_error *err)
{
    Napsync__V1__Record *ptrs[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &recs[i].rec;
    Napsync__V1__ChangePage page = NAPSYNC__V1__CHANGE_PAGE__INIT;
    page.records = ptrs;
    page.n_records = n;
    page.next_cursor = (char *)cursor;
    page.tenant_ids = (char **)tenants;
    page.n_tenant_ids = ntenants;
    return ns_store_apply_page_tenants(s, &page, out, err);
}

static ns_store_rc backfill(ns_store *s, const char *tenant, page_record *r, bool more,
                            size_t *napplied, ns_error *err)
{
    Napsync__V1__Record *ptrs[1] = {&r->rec};
    Napsync__V1__ChangePage page = NAPSYNC__V1__CHANGE_PAGE__INIT;
    page.records = ptrs;
    page.n_records = 1;
    page.next_cursor = (char *)"v1.9.9";
    page.more = more;
    return ns_store_apply_backfill(s, tenant, &page, napplied, err);
}

static size_t pending_tenants(ns_store *s, char (*out)[NS_STORE_UUID_SIZE], size_t cap)
{
    size_t n = 99;
    ns_error err;
    if (ns_store_tenants_pending(s, out, cap, &n, &err) != NS_STORE_OK)
        fail_msg("tenants pending: %s", err.message);
    return n;
}

/* A store of format 1 (made by opening one of format 2 and taking the
 * tenants table back out) knows its tenants from its records: the
 * migration marks them synced, and the first page with a tenant set
 * purges those that left it and adds the new ones as pending a backfill.
 * A backfill takes only its tenant's records, leaves the cursor alone and
 * marks the tenant synced with its last page; a reset forgets them all. */
static void test_tenant_set(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 1, false, TENANT_A, "A", "v1.1.1", 1);
    apply_one(s, REC_2, 1, false, TENANT_B, "B", "v1.1.2", 1);
    ns_store_close(s);
    raw_exec(f->path, "DROP TABLE tenants; PRAGMA user_version = 1;");
    s = open_ok(f->path);
    assert_int_equal(raw_pragma(f->path, "PRAGMA user_version"), ns_store_schema_version());
    assert_int_equal(raw_pragma(f->path, "SELECT count(*) FROM tenants WHERE synced = 1"), 2);
    char pend[4][NS_STORE_UUID_SIZE];
    assert_int_equal(pending_tenants(s, pend, 4), 0);

    /* A left, B stays, C joins: A's records go, C waits for a backfill. */
    static const char *const bc[] = {TENANT_B, TENANT_C};
    page_record r;
    record_init(&r, REC_4, 3, false, TENANT_B, "B2");
    ns_store_page_outcome o;
    assert_int_equal(apply_set(s, &r, 1, "v1.1.5", bc, 2, &o, &err), NS_STORE_OK);
    record_clear(&r);
    assert_int_equal(o.applied, 1);
    assert_int_equal(o.purged, 1);
    assert_int_equal(o.new_tenants, 1);
    assert_false(has_record(s, REC_1));
    assert_true(has_record(s, REC_2));
    assert_int_equal(pending_tenants(s, pend, 4), 1);
    assert_string_equal(pend[0], TENANT_C);
    /* The same set again changes nothing. */
    assert_int_equal(apply_set(s, NULL, 0, "v1.1.6", bc, 2, &o, &err), NS_STORE_OK);
    assert_int_equal(o.purged + o.new_tenants + o.applied, 0);

    /* The backfill of C: another tenant's record refuses the whole page. */
    size_t n = 99;
    record_init(&r, REC_1, 2, false, TENANT_A, "A again");
    assert_int_equal(backfill(s, TENANT_C, &r, false, &n, &err), NS_STORE_INVALID);
    record_clear(&r);
    assert_int_equal(n, 0);
    assert_false(has_record(s, REC_1));
    assert_int_equal(pending_tenants(s, pend, 4), 1);
    record_init(&r, REC_3, 1, false, TENANT_C, "C");
    assert_int_equal(backfill(s, TENANT_C, &r, true, &n, &err), NS_STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(pending_tenants(s, pend, 4), 1); /* more to come */
    assert_int_equal(backfill(s, TENANT_C, &r, false, &n, &err), NS_STORE_OK);
    record_clear(&r);
    assert_int_equal(n, 0); /* not newer */
    assert_int_equal(pending_tenants(s, pend, 4), 0);
    assert_true(has_record(s, REC_3));
    cursor_is(s, "v1.1.6");

    /* A truncated set is not complete: nothing is purged or added. */
    static const char *const a_only[] = {TENANT_A};
    Napsync__V1__ChangePage cut = NAPSYNC__V1__CHANGE_PAGE__INIT;
    cut.next_cursor = (char *)"v1.1.7";
    cut.tenant_ids = (char **)a_only;
    cut.n_tenant_ids = 1;
    cut.tenant_ids_truncated = true;
    assert_int_equal(ns_store_apply_page_tenants(s, &cut, &o, &err), NS_STORE_OK);
    assert_int_equal(o.purged + o.new_tenants, 0);
    assert_true(has_record(s, REC_2));
    assert_true(has_record(s, REC_3));
    assert_int_equal(raw_pragma(f->path, "SELECT count(*) FROM tenants"), 2);

    /* A tenant id that is not a UUID refuses the page. */
    static const char *const bad[] = {"not-a-uuid"};
    assert_int_equal(apply_set(s, NULL, 0, "v1.1.8", bad, 1, &o, &err), NS_STORE_INVALID);
    cursor_is(s, "v1.1.7");

    /* A reset forgets the set; from the empty cursor new tenants are
     * synced by the pull itself. */
    assert_int_equal(ns_store_reset_replica(s, &err), NS_STORE_OK);
    assert_int_equal(raw_pragma(f->path, "SELECT count(*) FROM tenants"), 0);
    static const char *const abc[] = {TENANT_A, TENANT_B, TENANT_C};
    assert_int_equal(apply_set(s, NULL, 0, "v2.1.1", abc, 3, &o, &err), NS_STORE_OK);
    assert_int_equal(o.new_tenants, 0);
    assert_int_equal(pending_tenants(s, pend, 4), 0);
    assert_int_equal(raw_pragma(f->path, "SELECT count(*) FROM tenants WHERE synced = 1"), 3);
    /* purge_tenant drops it from the set too. */
    assert_int_equal(ns_store_purge_tenant(s, TENANT_B, &err), NS_STORE_OK);
    assert_int_equal(raw_pragma(f->path, "SELECT count(*) FROM tenants"), 2);
    ns_store_close(s);
}

static int on_conflict(const Napsync__V1__Conflict *c, void *ud)
{
    seen *w = ud;
    assert_true(w->n < 16);
    snprintf(w->ids[w->n], sizeof(w->ids[0]), "%s", c->id);
    const char *kept =
        c->kept_value != NULL && c->kept_value->kind_case == NAPSYNC__V1__VALUE__KIND_TEXT_VALUE
            ? c->kept_value->text_value
            : "";
    snprintf(w->titles[w->n], sizeof(w->titles[0]), "%s", kept);
    w->deleted[w->n] = c->resolved;
    w->n++;
    return 0;
}

static seen list_conflicts(ns_store *s, bool include_resolved)
{
    seen w;
    memset(&w, 0, sizeof(w));
    ns_error err;
    if (ns_store_list_conflicts(s, include_resolved, on_conflict, &w, &err) != NS_STORE_OK)
        fail_msg("conflicts: %s", err.message);
    return w;
}

typedef struct {
    Napsync__V1__Conflict c;
    Napsync__V1__Value kept, other;
} test_conflict;

static void conflict_init(test_conflict *t, const char *id, const char *tenant, const char *at,
                          const char *kept, bool resolved)
{
    napsync__v1__conflict__init(&t->c);
    napsync__v1__value__init(&t->kept);
    napsync__v1__value__init(&t->other);
    t->kept.kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    t->kept.text_value = (char *)kept;
    t->other.kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    t->other.text_value = (char *)"theirs";
    t->c.id = (char *)id;
    t->c.entity_type = (char *)"plan";
    t->c.record_id = (char *)REC_1;
    t->c.field = (char *)"title";
    t->c.kept_value = &t->kept;
    t->c.other_value = &t->other;
    t->c.kept_by = (char *)"Amina Diallo";
    t->c.other_by = (char *)"Kofi Mensah";
    t->c.created_at = (char *)at;
    t->c.resolved = resolved;
    t->c.tenant_id = (char *)tenant;
}

static void test_conflicts(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    Napsync__V1__Scope plan = NAPSYNC__V1__SCOPE__INIT, org = NAPSYNC__V1__SCOPE__INIT;
    plan.kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    plan.plan_id = (char *)TENANT_A;
    org.kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
    org.organisation_id = (char *)"0e000000-0000-4000-8000-00000000000e";
    const Napsync__V1__Scope *by_plan[1] = {&plan};
    const Napsync__V1__Scope *by_org[2] = {&org, &org}; /* duplicates are one scope */

    test_conflict c[4];
    conflict_init(&c[0], CONF_1, TENANT_A, "2024-05-01T10:00:00Z", "mine", false);
    conflict_init(&c[1], CONF_2, TENANT_A, "2024-05-01T09:00:00Z", "old", true);
    conflict_init(&c[2], CONF_1, TENANT_A, "2024-05-01T10:00:00Z", "mine, relisted", false);
    conflict_init(&c[3], CONF_3, TENANT_B, "2024-05-02T10:00:00Z", "b", false);
    const Napsync__V1__Conflict *plan_list[2] = {&c[0].c, &c[1].c};
    const Napsync__V1__Conflict *org_list[2] = {&c[2].c, &c[3].c};
    assert_int_equal(ns_store_replace_conflicts(s, by_plan, 1, plan_list, 2, &err), NS_STORE_OK);
    assert_int_equal(ns_store_replace_conflicts(s, by_org, 2, org_list, 2, &err), NS_STORE_OK);

    seen w = list_conflicts(s, false);
    assert_int_equal(w.n, 2); /* CONF_1 once, as listed last; CONF_2 is resolved */
    assert_string_equal(w.ids[0], CONF_1);
    assert_string_equal(w.titles[0], "mine, relisted");
    assert_string_equal(w.ids[1], CONF_3);
    w = list_conflicts(s, true);
    assert_int_equal(w.n, 3);
    assert_string_equal(w.ids[0], CONF_2); /* oldest first */
    assert_true(w.deleted[0]);
    assert_int_equal(status_ok(s).open_conflicts, 2);

    Napsync__V1__Conflict *one = NULL;
    assert_int_equal(ns_store_get_conflict(s, CONF_3, &one, &err), NS_STORE_OK);
    assert_string_equal(one->other_by, "Kofi Mensah");
    assert_string_equal(one->other_value->text_value, "theirs");
    ns_store_conflict_free(one);
    assert_int_equal(ns_store_get_conflict(s, "c4000000-0000-4000-8000-000000000004", &one, &err),
                     NS_STORE_NOT_FOUND);
    assert_null(one);

    /* A bad conflict refuses the whole list; the old one stays. */
    test_conflict bad;
    conflict_init(&bad, "nope", TENANT_A, "2024-05-01T10:00:00Z", "x", false);
    const Napsync__V1__Conflict *bad_list[2] = {&c[0].c, &bad.c};
    assert_int_equal(ns_store_replace_conflicts(s, by_plan, 1, bad_list, 2, &err),
                     NS_STORE_INVALID);
    assert_int_equal(err.status, NS_ERR_PROTOCOL);
    conflict_init(&bad, CONF_2, TENANT_A, "2024-05-01T10:00:00Z", "x", false);
    bad.kept.kind_case = NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE;
    bad.kept.decimal_value = (char *)"1e5";
    assert_int_equal(ns_store_replace_conflicts(s, by_plan, 1, bad_list, 2, &err),
                     NS_STORE_INVALID);
    Napsync__V1__Scope none = NAPSYNC__V1__SCOPE__INIT;
    const Napsync__V1__Scope *no_scope[1] = {&none};
    assert_int_equal(ns_store_replace_conflicts(s, no_scope, 1, plan_list, 2, &err),
                     NS_STORE_INVALID);
    assert_int_equal(err.status, NS_ERR_INVALID_ARGUMENT);
    assert_int_equal(list_conflicts(s, true).n, 3);

    /* The plan's list is now empty: CONF_2 goes, CONF_1 stays (the
     * organisation lists it). */
    assert_int_equal(ns_store_replace_conflicts(s, by_plan, 1, NULL, 0, &err), NS_STORE_OK);
    w = list_conflicts(s, true);
    assert_int_equal(w.n, 2);
    assert_string_equal(w.ids[0], CONF_1);
    assert_string_equal(w.ids[1], CONF_3);
    /* Purging a tenant drops its conflicts too. */
    assert_int_equal(ns_store_purge_tenant(s, TENANT_B, &err), NS_STORE_OK);
    w = list_conflicts(s, true);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.ids[0], CONF_1);
    ns_store_close(s);
    s = open_ok(f->path);
    assert_int_equal(list_conflicts(s, false).n, 1);
    ns_store_close(s);
}

static void test_lock(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    ns_store *second = NULL;
    assert_int_equal(ns_store_open(f->path, &second, &err), NS_STORE_LOCKED);
    assert_null(second);
    assert_int_equal(err.status, NS_ERR_STATE);
    assert_non_null(strstr(err.message, "in use by another napsync"));

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ns_store *t = NULL;
        ns_store_rc rc = ns_store_open(f->path, &t, NULL);
        _exit(rc == NS_STORE_LOCKED ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    ns_store_close(s);
    s = open_ok(f->path);
    ns_store_close(s);
}

static void test_refuses_foreign_and_newer(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    put_title(s, NS_STORE_OP_CREATE, REC_1, "kept");
    ns_store_close(s);

    raw_exec(f->path, "PRAGMA user_version = 99");
    s = NULL;
    assert_int_equal(ns_store_open(f->path, &s, &err), NS_STORE_NEWER);
    assert_null(s);
    assert_int_equal(err.status, NS_ERR_STATE);
    assert_non_null(strstr(err.message, "this store was written by a newer napsync"));
    assert_int_equal(raw_pragma(f->path, "PRAGMA user_version"), 99);
    assert_int_equal(raw_pragma(f->path, "SELECT count(*) FROM outbox"), 1);

    /* Another program's database is left alone. */
    char other[160];
    snprintf(other, sizeof(other), "%s/other.db", f->dir);
    raw_exec(other, "CREATE TABLE notes (t TEXT)");
    assert_int_equal(ns_store_open(other, &s, &err), NS_STORE_CORRUPT);
    assert_non_null(strstr(err.message, "not a napsync store"));
    assert_int_equal(raw_pragma(other, "SELECT count(*) FROM sqlite_schema"), 1);
    unlink(other);
    char lock[170];
    snprintf(lock, sizeof(lock), "%s.lock", other);
    unlink(lock);

    /* Not a database at all. */
    FILE *fp = fopen(other, "w");
    assert_non_null(fp);
    for (int i = 0; i < 512; i++)
        fputs("napsync!", fp);
    fclose(fp);
    assert_int_equal(ns_store_open(other, &s, &err), NS_STORE_CORRUPT);
    assert_int_equal(err.status, NS_ERR_STATE);
    unlink(other);
    unlink(lock);

    /* No such directory. */
    char missing[170];
    snprintf(missing, sizeof(missing), "%s/no/such/dir.db", f->dir);
    assert_int_equal(ns_store_open(missing, &s, &err), NS_STORE_IO);
    assert_int_equal(ns_store_open("", &s, &err), NS_STORE_INVALID);
}

static void test_invalid_arguments(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    ns_fieldset fs = texts("title", "x", NULL);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "Plan", NULL, &fs, NULL, &err),
                     NS_STORE_INVALID);
    assert_int_equal(err.status, NS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", "nope", &fs, NULL, &err),
                     NS_STORE_INVALID);
    assert_int_equal(ns_store_enqueue(s, (ns_store_op)9, "plan", REC_1, &fs, NULL, &err),
                     NS_STORE_INVALID);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_UPDATE, "plan", REC_1, NULL, NULL, &err),
                     NS_STORE_INVALID);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_DELETE, "plan", REC_1, &fs, NULL, &err),
                     NS_STORE_INVALID);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_UPDATE, "plan", REC_1, &fs, NULL, &err),
                     NS_STORE_NOT_FOUND);

    /* A create gets a fresh id unless given one; ids are stored lowercase. */
    ns_store_enqueued e;
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", NULL, &fs, &e, &err),
                     NS_STORE_OK);
    assert_int_equal(strlen(e.record_id), 36);
    assert_int_equal(e.record_id[14], '4');
    assert_int_equal(e.mutation_id[14], '4');
    assert_true(strchr("89ab", e.mutation_id[19]) != NULL);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan",
                                      "ABCDEF00-0000-4000-8000-00000000000A", &fs, &e, &err),
                     NS_STORE_OK);
    assert_string_equal(e.record_id, "abcdef00-0000-4000-8000-00000000000a");
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan",
                                      "abcdef00-0000-4000-8000-00000000000a", &fs, NULL, &err),
                     NS_STORE_EXISTS);
    ns_fieldset_free(&fs);

    /* Values are checked as the server will check their form. */
    ns_fieldset raw;
    char *name = (char *)"title";
    ns_value v;
    v.kind = NS_KIND_TEXT;
    v.is_null = false;
    v.u.s = (char *)"bell\x07";
    raw.names = &name;
    raw.values = &v;
    raw.n = 1;
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", NULL, &raw, NULL, &err),
                     NS_STORE_INVALID);
    assert_non_null(strstr(err.message, "title"));
    v.u.s = NULL;
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", NULL, &raw, NULL, &err),
                     NS_STORE_INVALID);
    name = (char *)"Title";
    v.u.s = (char *)"x";
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", NULL, &raw, NULL, &err),
                     NS_STORE_INVALID);

    /* A change too large for one frame is refused when it is made. */
    ns_fieldset big;
    ns_fieldset_init(&big);
    char *text = malloc(9001);
    assert_non_null(text);
    memset(text, 'x', 9000);
    text[9000] = '\0';
    for (int i = 0; i < 40; i++) {
        char fname[16];
        snprintf(fname, sizeof(fname), "f%d", i);
        set_text(&big, fname, text);
    }
    free(text);
    assert_int_equal(ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", NULL, &big, NULL, &err),
                     NS_STORE_INVALID);
    assert_non_null(strstr(err.message, "too large"));
    ns_fieldset_free(&big);

    ns_store_record r;
    assert_int_equal(ns_store_get(s, "plan", "x", &r, &err), NS_STORE_INVALID);
    assert_int_equal(ns_store_get(s, "", REC_1, &r, &err), NS_STORE_INVALID);
    assert_int_equal(ns_store_meta_set(s, NS_STORE_META_SERVER, "bad\nvalue", &err),
                     NS_STORE_INVALID);
    assert_int_equal(ns_store_set_last_sync(s, -1, &err), NS_STORE_INVALID);
    assert_int_equal(status_ok(s).pending, 2);
    ns_store_close(s);
}

/* ---- out of memory ------------------------------------------------------------- */

typedef enum {
    OP_OPEN,
    OP_ENQUEUE,
    OP_GET,
    OP_LIST,
    OP_BATCH,
    OP_OUTBOX,
    OP_APPLY,
    OP_CONFLICTS,
    OP_LIST_CONFLICTS,
    OP_GET_CONFLICT,
    OP_COUNT
} oom_op;

static int count_conflict(const Napsync__V1__Conflict *c, void *ud)
{
    (void)c;
    (*(size_t *)ud)++;
    return 0;
}

static int count_record(const ns_store_record *r, void *ud)
{
    (void)r;
    (*(size_t *)ud)++;
    return 0;
}

static int count_entry(const ns_store_outbox_entry *e, void *ud)
{
    (void)e;
    (*(size_t *)ud)++;
    return 0;
}

/* One operation with the allocation `at` failing (or none, at < 0). */
static ns_store_rc run_op(ns_store *s, const char *path, oom_op op, long at, ns_error *err)
{
    long live = ns_af_live();
    ns_fieldset fs = texts("title", "T", "tags", "a, b", NULL);
    page_record recs[2];
    record_init(&recs[0], REC_3, 5, false, TENANT_A, "page 1");
    record_init(&recs[1], REC_4, 5, false, TENANT_A, "page 2");
    test_conflict tc;
    conflict_init(&tc, CONF_2, TENANT_A, "2024-05-01T10:00:00Z", "kept", false);
    const Napsync__V1__Conflict *cl[1] = {&tc.c};
    Napsync__V1__Scope plan = NAPSYNC__V1__SCOPE__INIT;
    plan.kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    plan.plan_id = (char *)TENANT_A;
    const Napsync__V1__Scope *scopes[1] = {&plan};
    size_t n = 0;
    ns_store_record r;
    ns_store_batch b;
    Napsync__V1__Conflict *c = NULL;
    ns_store *t = NULL;

    ns_af_arm(at);
    ns_store_rc rc = NS_STORE_OK;
    switch (op) {
    case OP_OPEN:
        rc = ns_store_open(path, &t, err);
        break;
    case OP_ENQUEUE:
        rc = ns_store_enqueue(s, NS_STORE_OP_UPDATE, "plan", REC_1, &fs, NULL, err);
        break;
    case OP_GET:
        rc = ns_store_get(s, "plan", REC_1, &r, err);
        break;
    case OP_LIST:
        rc = ns_store_list(s, "plan", true, count_record, &n, err);
        break;
    case OP_BATCH:
        rc = ns_store_outbox_batch(s, 10, 1u << 20, &b, err);
        break;
    case OP_OUTBOX:
        rc = ns_store_outbox_list(s, count_entry, &n, err);
        break;
    case OP_APPLY:
        rc = apply(s, recs, 2, "v1.9.9", NULL, err);
        break;
    case OP_CONFLICTS:
        rc = ns_store_replace_conflicts(s, scopes, 1, cl, 1, err);
        break;
    case OP_LIST_CONFLICTS:
        rc = ns_store_list_conflicts(s, true, count_conflict, &n, err);
        break;
    case OP_GET_CONFLICT:
        rc = ns_store_get_conflict(s, CONF_1, &c, err);
        break;
    case OP_COUNT:
        break;
    }
    bool hit = ns_af_disarm();

    if (op == OP_OPEN && t != NULL)
        ns_store_close(t);
    if (op == OP_GET && rc == NS_STORE_OK)
        ns_store_record_free(&r);
    if (op == OP_BATCH)
        ns_store_batch_free(&b);
    ns_store_conflict_free(c);
    record_clear(&recs[0]);
    record_clear(&recs[1]);
    ns_fieldset_free(&fs);
    /* Every operation, the ones that unpack stored protobuf included: the
     * store frees what it unpacked with its own allocator, whose free() is
     * the wrapped one, as is a caller's ns_store_conflict_free. */
    if (ns_af_live() != live)
        fail_msg("operation %d, allocation %ld failing: %ld blocks left", (int)op, at,
                 ns_af_live() - live);
    if (!hit && at >= 0) {
        /* No allocation was left to fail: the operation ran whole. */
        if (rc != NS_STORE_OK)
            fail_msg("operation %d without a failing allocation: %s", (int)op, err->message);
        return (ns_store_rc)1;
    }
    return rc;
}

static void test_out_of_memory(void **state)
{
    fixture *f = *state;
    ns_error err;
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 2, false, TENANT_A, "Replica", "v1.1.1", 1);
    put_title(s, NS_STORE_OP_UPDATE, REC_1, "Local");
    put_title(s, NS_STORE_OP_CREATE, REC_2, "New");
    test_conflict tc;
    conflict_init(&tc, CONF_1, TENANT_A, "2024-05-01T10:00:00Z", "kept", false);
    const Napsync__V1__Conflict *cl[1] = {&tc.c};
    Napsync__V1__Scope org = NAPSYNC__V1__SCOPE__INIT;
    org.kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
    org.organisation_id = (char *)TENANT_B;
    const Napsync__V1__Scope *scopes[1] = {&org};
    assert_int_equal(ns_store_replace_conflicts(s, scopes, 1, cl, 1, &err), NS_STORE_OK);
    ns_store_close(s);

    char other[160];
    snprintf(other, sizeof(other), "%s/other.db", f->dir);
    for (int op = 0; op < OP_COUNT; op++) {
        s = op == OP_OPEN ? NULL : open_ok(f->path);
        ns_store_status before;
        if (s != NULL)
            before = status_ok(s);
        long at = 0;
        for (;; at++) {
            ns_store_rc rc = run_op(s, op == OP_OPEN ? other : f->path, (oom_op)op, at, &err);
            if (rc == (ns_store_rc)1)
                break;
            if (rc != NS_STORE_NOMEM)
                fail_msg("operation %d, allocation %ld failing: %d (%s), want NOMEM", op, at, rc,
                         err.message);
            assert_int_equal(err.status, NS_ERR_NOMEM);
            if (s == NULL)
                continue;
            /* Nothing half done. */
            ns_store_status now = status_ok(s);
            assert_int_equal(now.pending, before.pending);
            assert_int_equal(now.records, before.records);
            assert_int_equal(now.open_conflicts, before.open_conflicts);
            assert_string_equal(now.cursor, before.cursor);
        }
        assert_true(at > 0); /* the operation allocates, so the sweep tested something */
        ns_store_close(s);
    }
    s = open_ok(f->path);
    seen w = list_plans(s, true);
    assert_int_equal(w.n, 4);
    ns_store_close(s);
    char p[170];
    static const char *const suffixes[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", other, suffixes[i]);
        unlink(p);
    }
}

/* ---- a full disk ------------------------------------------------------------------ */

#define CAP_PAGES 48

static int cap_pages(sqlite3 *db, char **msg, const struct sqlite3_api_routines *api)
{
    (void)msg;
    (void)api;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %d", CAP_PAGES);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void test_disk_full(void **state)
{
    fixture *f = *state;
    ns_error err;
    assert_int_equal(sqlite3_auto_extension((void (*)(void))cap_pages), SQLITE_OK);
    ns_store *s = open_ok(f->path);
    apply_one(s, REC_1, 1, false, TENANT_A, "Before the disk filled", "v1.1.1", 1);

    /* ~27 KB per change: the cap (192 KB) is reached after a few. */
    char *text = malloc(9001);
    assert_non_null(text);
    memset(text, 'x', 9000);
    text[9000] = '\0';
    ns_fieldset fs = texts("a", text, "b", text, "c", text, NULL);
    free(text);
    char saved[64][NS_STORE_UUID_SIZE];
    size_t nsaved = 0;
    ns_store_rc rc = NS_STORE_OK;
    while (nsaved < 64) {
        ns_store_enqueued e;
        rc = ns_store_enqueue(s, NS_STORE_OP_CREATE, "plan", NULL, &fs, &e, &err);
        if (rc != NS_STORE_OK)
            break;
        memcpy(saved[nsaved++], e.mutation_id, NS_STORE_UUID_SIZE);
    }
    ns_fieldset_free(&fs);
    assert_int_equal(rc, NS_STORE_FULL);
    assert_true(nsaved > 0);
    assert_int_equal(err.status, NS_ERR_STATE);
    assert_true(strncmp(err.message, "the device's disk is full: nothing was saved",
                        strlen("the device's disk is full: nothing was saved")) == 0);

    /* Still readable, and still refusing cleanly: a page that does not fit
     * leaves the replica and cursor as they were. */
    assert_int_equal(status_ok(s).pending, nsaved);
    page_record recs[4];
    for (int i = 0; i < 4; i++) {
        static const char *const ids[4] = {REC_1, REC_2, REC_3, REC_4};
        record_init(&recs[i], ids[i], 2, false, TENANT_A, NULL);
        ns_fieldset_free(&recs[i].fs);
        ns_fieldset_pb_clear(&recs[i].pb);
        char *t = malloc(9001);
        assert_non_null(t);
        memset(t, 'y', 9000);
        t[9000] = '\0';
        recs[i].fs = texts("a", t, "b", t, "c", t, NULL);
        free(t);
        assert_int_equal(ns_fieldset_to_pb(&recs[i].fs, &recs[i].pb), 0);
    }
    assert_int_equal(apply(s, recs, 4, "v1.1.2", NULL, &err), NS_STORE_FULL);
    for (int i = 0; i < 4; i++)
        record_clear(&recs[i]);
    cursor_is(s, "v1.1.1");
    assert_false(has_record(s, REC_2));
    ns_store_close(s);

    /* A bigger disk: everything saved before is there, the file is sound. */
    assert_int_equal(sqlite3_cancel_auto_extension((void (*)(void))cap_pages), 1);
    assert_int_equal(raw_pragma(f->path, "SELECT count(*) FROM pragma_integrity_check "
                                         "WHERE integrity_check = 'ok'"),
                     1);
    s = open_ok(f->path);
    seen w = list_outbox(s);
    assert_int_equal(w.n, nsaved < 16 ? nsaved : 16);
    for (size_t i = 0; i < w.n; i++)
        assert_string_equal(w.ids[i], saved[i]);
    ns_store_status st = status_ok(s);
    assert_int_equal(st.pending, nsaved);
    assert_string_equal(st.cursor, "v1.1.1");
    ns_store_record r;
    assert_int_equal(ns_store_get(s, "plan", REC_1, &r, &err), NS_STORE_OK);
    assert_string_equal(text_of(&r.fields, "title"), "Before the disk filled");
    ns_store_record_free(&r);
    /* And it takes changes again. */
    put_title(s, NS_STORE_OP_UPDATE, REC_1, "After");
    ns_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_after_enqueue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_order_and_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_page_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_keeps_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_foreign_and_newer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
