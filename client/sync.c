/* libnapsync: the device store's public face (local edits, the local view,
 * the outbox, conflicts, status) and the sync loop.
 *
 * The sync loop is one state machine per client (nsc_sync, owned by the
 * client): CONNECT → PUSH (batches until the outbox has nothing pending) →
 * PULL (pages until !more) → CONFLICTS → done, or with watch → SUBSCRIBED,
 * where pages are applied as they come, local edits are pushed as they are
 * made and the conflicts are re-listed after changes. Any loss of the
 * connection (or UNAVAILABLE) in watch mode leads to BACKOFF and a new
 * connect, which runs the whole sequence again from the stored cursor.
 *
 * Every callback of a connection is delivered before the client can start
 * another (client.c hands them all out when a connection ends), so a
 * callback never belongs to an older connection than the current one; the
 * `lost` flag makes the first of them handle the loss and the rest ignore
 * it. Store calls block on disk (documented in napsync.h). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "client_internal.h"
#include "envelope.h"
#include "fields_pb.h"
#include "napsync.h"
#include "store.h"
#include "value.h"

#define SYNC_MAX_SCOPES NS_STORE_MAX_SCOPES
/* Reconnect delays: the first retry after about BASE, doubling up to MAX,
 * each drawn uniformly from the upper half of its range (jitter). */
#define SYNC_BACKOFF_BASE_MS 500u
#define SYNC_BACKOFF_MAX_MS  60000u
/* A sync without watch gives up after this many connections in a row are
 * lost without any progress (a page applied, a push answered). */
#define SYNC_ONESHOT_LOSSES 5u
/* Push headroom per mutation (tag + length) and for the Envelope. */
#define SYNC_PUSH_ITEM_OVERHEAD 6u
#define SYNC_PUSH_ENV_OVERHEAD  64u
/* Longest FIELD=VALUE assignment's field name. */
#define SYNC_MAX_FIELD_NAME 63

typedef enum {
    PH_IDLE,
    PH_CONNECTING,
    PH_CATCHUP, /* push, pull, conflicts */
    PH_SUBSCRIBING,
    PH_WATCHING,
    PH_BACKOFF,
} sync_phase;

struct nsc_sync {
    bool active;
    bool watch;
    bool stopping;
    bool lost; /* this connection's loss has been handled */
    sync_phase ph;
    ns_sync_cb cb;
    void *ud;
    ns_sync_event_cb on_event;
    void *event_ud;
    ns_sync_stats st;
    ns_error failure; /* why the run ends, once decided */

    char plans[SYNC_MAX_SCOPES][NS_STORE_UUID_SIZE];
    size_t nplans;
    bool directory; /* the directory scope too */
    char org[40];   /* as ns_identity.organisation_id */
    Napsync__V1__Scope scope_msgs[SYNC_MAX_SCOPES];
    Napsync__V1__Scope *scopes[SYNC_MAX_SCOPES];
    size_t nscopes;

    bool push_inflight;
    bool push_again; /* a local edit arrived while a push was in flight */
    ns_store_batch batch;
    bool pull_inflight;
    bool conflicts_inflight;
    bool conflicts_again;
    /* A catch-up sends its pushes, its first pull and its conflict list at
     * once: on a slow link that is one round trip where it was three. It is
     * over when the outbox is drained, the pages and backfills are in, and
     * a conflict list asked for after the last push has come back. */
    bool cu_pushed;
    bool cu_pulled;
    bool cu_listed;
    uint32_t cu_push_gen;   /* Pushes sent in this catch-up */
    uint32_t cu_listed_gen; /* cu_push_gen when the last ListConflicts was sent */
    uint32_t cu_pulled_gen; /* cu_push_gen when the last Pull was sent */
    /* A backfill: a Pull of one newly readable tenant from the empty
     * cursor, paged with its own cursor (kept in memory only: an
     * interrupted backfill starts over, as the tenant stays pending). */
    bool bf_inflight;
    char bf_tenant[NS_STORE_UUID_SIZE];
    char bf_cursor[NS_STORE_CURSOR_SIZE];
    Napsync__V1__Scope bf_scope;
    Napsync__V1__Scope *bf_scopes[1];
    bool sub_active;
    /* First flight: the catch-up went out behind Hello, on what the last
     * Welcome said (rem); Welcome must confirm it. */
    bool early;
    nsc_remembered rem;
    bool pull_streaming; /* the pull in flight is a stream: more pages follow */
    uint32_t page_size;
    uint32_t flights_base; /* nsc_flights at the start of the run */
    bool reset_done;       /* one cursor reset per connection: a second is a server bug */
    uint32_t attempt;
    bool progress; /* a page applied or a push answered since the last loss */
    uint64_t rng;
};

/* ---- small helpers ----------------------------------------------------------------- */

static int64_t now_unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int need_store(ns_client *c, ns_error *err)
{
    if (c == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "no client");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (nsc_store(c) == NULL) {
        nsc_set_error(err, NS_ERR_STATE, 0,
                      "no device store: set NAPSYNC_STORE (or ns_client_options.store_path)");
        return NS_ERR_STATE;
    }
    return NS_OK;
}

/* The status a failed store call reported (err may be NULL). */
static int store_fail(const ns_error *e)
{
    return e && e->status != NS_OK ? e->status : NS_ERR_STATE;
}

static ns_kind kind_of_case(Napsync__V1__Value__KindCase k)
{
    switch (k) {
    case NAPSYNC__V1__VALUE__KIND_BOOL_VALUE:
        return NS_KIND_BOOL;
    case NAPSYNC__V1__VALUE__KIND_INT_VALUE:
        return NS_KIND_INT;
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        return NS_KIND_DECIMAL;
    case NAPSYNC__V1__VALUE__KIND_DATE_VALUE:
        return NS_KIND_DATE;
    case NAPSYNC__V1__VALUE__KIND_SET_VALUE:
        return NS_KIND_TEXT_SET;
    case NAPSYNC__V1__VALUE__KIND_REF_VALUE:
        return NS_KIND_REF;
    default:
        return NS_KIND_TEXT;
    }
}

static bool is_null_pb(const Napsync__V1__Value *v)
{
    return v == NULL || v->kind_case == NAPSYNC__V1__VALUE__KIND__NOT_SET ||
           v->kind_case == NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
}

/* A wire value as text (*out NULL for null). Returns 0, or -1 when the
 * value is malformed or memory runs out. */
static int pb_text(const Napsync__V1__Value *pb, char **out)
{
    *out = NULL;
    if (is_null_pb(pb))
        return 0;
    ns_field_type ft = {.kind = kind_of_case(pb->kind_case), .nullable = true};
    ns_value v;
    char why[128];
    if (ns_value_from_pb(pb, &ft, &v, why, sizeof(why)) != NS_VALUE_OK)
        return -1;
    *out = ns_value_format(&v);
    ns_value_free(&v);
    return *out ? 0 : -1;
}

/* Views of a field set, with the text forms they point to. */
typedef struct {
    ns_field_view *v;
    char **text;
    size_t n;
} field_views;

static void views_free(field_views *fv)
{
    for (size_t i = 0; i < fv->n; i++)
        free(fv->text[i]);
    free(fv->text);
    free(fv->v);
    memset(fv, 0, sizeof(*fv));
}

static int views_make(const ns_fieldset *fs, field_views *fv)
{
    memset(fv, 0, sizeof(*fv));
    if (fs->n == 0)
        return 0;
    fv->v = calloc(fs->n, sizeof(*fv->v));
    fv->text = calloc(fs->n, sizeof(*fv->text));
    if (fv->v == NULL || fv->text == NULL) {
        views_free(fv);
        return -1;
    }
    for (size_t i = 0; i < fs->n; i++) {
        const ns_value *v = &fs->values[i];
        fv->n = i + 1;
        fv->v[i].name = fs->names[i];
        fv->v[i].kind = v->is_null ? "null" : ns_kind_word(v->kind);
        if (!v->is_null) {
            fv->text[i] = ns_value_format(v);
            if (fv->text[i] == NULL) {
                views_free(fv);
                return -1;
            }
        }
        fv->v[i].value = fv->text[i];
    }
    return 0;
}

/* ---- local edits ------------------------------------------------------------------------ */

static bool field_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > SYNC_MAX_FIELD_NAME || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* KIND of FIELD:KIND=VALUE; *is_null for "null". */
static bool kind_from_word(const char *w, size_t n, ns_kind *k, bool *is_null)
{
    static const struct {
        const char *word;
        ns_kind kind;
    } words[] = {
        {"bool", NS_KIND_BOOL}, {"int", NS_KIND_INT},   {"decimal", NS_KIND_DECIMAL},
        {"text", NS_KIND_TEXT}, {"date", NS_KIND_DATE}, {"set", NS_KIND_TEXT_SET},
        {"ref", NS_KIND_REF},   {"null", NS_KIND_TEXT},
    };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strlen(words[i].word) == n && memcmp(words[i].word, w, n) == 0) {
            *k = words[i].kind;
            *is_null = strcmp(words[i].word, "null") == 0;
            return true;
        }
    }
    return false;
}

/* Parses the assignments into fs; the current view (may be NULL) gives
 * the kind of fields written without one. */
static int parse_assignments(const char *const *as, size_t n, const ns_fieldset *current,
                             ns_fieldset *fs, ns_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *a = as[i];
        const char *eq = a ? strchr(a, '=') : NULL;
        if (eq == NULL) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                          "\"%.100s\" is not FIELD=VALUE or FIELD:KIND=VALUE", a ? a : "");
            return NS_ERR_INVALID_ARGUMENT;
        }
        const char *colon = memchr(a, ':', (size_t)(eq - a));
        size_t namelen = (size_t)((colon ? colon : eq) - a);
        if (!field_name_ok(a, namelen)) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                          "\"%.*s\" is not a field name (lowercase letters, digits, _; at most "
                          "%d)",
                          (int)(namelen > 100 ? 100 : namelen), a, SYNC_MAX_FIELD_NAME);
            return NS_ERR_INVALID_ARGUMENT;
        }
        char name[SYNC_MAX_FIELD_NAME + 1];
        memcpy(name, a, namelen);
        name[namelen] = '\0';
        if (ns_fieldset_get(fs, name) != NULL) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "field %s is given twice", name);
            return NS_ERR_INVALID_ARGUMENT;
        }
        ns_kind kind = NS_KIND_TEXT;
        bool is_null = false;
        if (colon) {
            if (!kind_from_word(colon + 1, (size_t)(eq - colon - 1), &kind, &is_null)) {
                nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                              "field %s: unknown kind \"%.*s\" (bool, int, decimal, text, date, "
                              "set, ref, null)",
                              name, (int)((eq - colon - 1) > 40 ? 40 : (eq - colon - 1)),
                              colon + 1);
                return NS_ERR_INVALID_ARGUMENT;
            }
        } else if (current) {
            const ns_value *cur = ns_fieldset_get(current, name);
            if (cur && !cur->is_null)
                kind = cur->kind;
        }
        const char *text = eq + 1;
        if (is_null && text[0] != '\0') {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "field %s: FIELD:null= takes no value",
                          name);
            return NS_ERR_INVALID_ARGUMENT;
        }
        ns_field_type ft = {.kind = kind, .nullable = true};
        ns_value v;
        char why[256];
        ns_value_status vs = ns_value_parse(&ft, is_null ? NULL : text, &v, why, sizeof(why));
        if (vs == NS_VALUE_NOMEM) {
            nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
            return NS_ERR_NOMEM;
        }
        if (vs != NS_VALUE_OK) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "field %s: not a valid %s: %s", name,
                          ns_kind_word(kind), why);
            return NS_ERR_INVALID_ARGUMENT;
        }
        int rc = ns_fieldset_set(fs, name, &v);
        ns_value_free(&v);
        if (rc != 0) {
            nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
            return NS_ERR_NOMEM;
        }
    }
    return NS_OK;
}

static void sync_kick(ns_client *c);

static int enqueue(ns_client *c, ns_store_op op, const char *type, const char *id,
                   const ns_fieldset *fs, ns_edit_result *out, ns_error *err)
{
    ns_store_enqueued q;
    if (ns_store_enqueue(nsc_store(c), op, type, id, fs, &q, err) != NS_STORE_OK)
        return store_fail(err);
    if (out) {
        memset(out, 0, sizeof(*out));
        snprintf(out->record_id, sizeof(out->record_id), "%s", q.record_id);
        snprintf(out->mutation_id, sizeof(out->mutation_id), "%s", q.mutation_id);
        out->base_version = q.base_version;
        out->created = op == NS_STORE_OP_CREATE;
    }
    sync_kick(c);
    return NS_OK;
}

int ns_client_put(ns_client *c, const char *entity_type, const char *id,
                  const char *const *assignments, size_t n, ns_edit_result *out, ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (n == 0 || assignments == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "no FIELD=VALUE given");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (n > NS_STORE_MAX_FIELDS) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "more than %d fields", NS_STORE_MAX_FIELDS);
        return NS_ERR_INVALID_ARGUMENT;
    }
    ns_store_record cur;
    bool have = false;
    ns_store_op op = NS_STORE_OP_CREATE;
    if (id) {
        ns_error ge;
        ns_store_rc src = ns_store_get(nsc_store(c), entity_type, id, &cur, &ge);
        if (src == NS_STORE_OK) {
            have = true;
            if (!cur.deleted)
                op = NS_STORE_OP_UPDATE;
        } else if (src != NS_STORE_NOT_FOUND) {
            if (err)
                *err = ge;
            return store_fail(&ge);
        }
    }
    ns_fieldset fs;
    ns_fieldset_init(&fs);
    rc = parse_assignments(assignments, n, have ? &cur.fields : NULL, &fs, err);
    if (have)
        ns_store_record_free(&cur);
    if (rc == NS_OK)
        rc = enqueue(c, op, entity_type, id, &fs, out, err);
    ns_fieldset_free(&fs);
    return rc;
}

int ns_client_delete(ns_client *c, const char *entity_type, const char *id, ns_edit_result *out,
                     ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (id == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "no record id given");
        return NS_ERR_INVALID_ARGUMENT;
    }
    ns_fieldset none;
    ns_fieldset_init(&none);
    return enqueue(c, NS_STORE_OP_DELETE, entity_type, id, &none, out, err);
}

/* ---- the local view ------------------------------------------------------------------------ */

typedef struct {
    ns_record_fn fn;
    void *ud;
    bool oom;
} record_walk;

static int record_view_call(const ns_store_record *r, ns_record_fn fn, void *ud, bool *oom)
{
    field_views fv;
    if (views_make(&r->fields, &fv) != 0) {
        *oom = true;
        return 1;
    }
    ns_record_view v = {
        .entity_type = r->entity_type,
        .id = r->id,
        .version = r->version,
        .deleted = r->deleted,
        .pending = r->has_pending,
        .rejected = r->rejected,
        .tenant_id = r->tenant_id,
        .changed_by = r->changed_by,
        .changed_at = r->changed_at,
        .fields = fv.v,
        .nfields = fv.n,
    };
    int stop = fn(&v, ud);
    views_free(&fv);
    return stop;
}

static int walk_record(const ns_store_record *r, void *ud)
{
    record_walk *w = ud;
    return record_view_call(r, w->fn, w->ud, &w->oom);
}

int ns_client_get(ns_client *c, const char *entity_type, const char *id, ns_record_fn fn, void *ud,
                  ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (fn == NULL || id == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "ns_client_get needs an id and a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    ns_store_record r;
    if (ns_store_get(nsc_store(c), entity_type, id, &r, err) != NS_STORE_OK)
        return store_fail(err);
    bool oom = false;
    record_view_call(&r, fn, ud, &oom);
    ns_store_record_free(&r);
    if (oom) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    return NS_OK;
}

int ns_client_list(ns_client *c, const char *entity_type, int include_deleted, ns_record_fn fn,
                   void *ud, ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (fn == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "ns_client_list needs a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    record_walk w = {.fn = fn, .ud = ud};
    if (ns_store_list(nsc_store(c), entity_type, include_deleted != 0, walk_record, &w, err) !=
        NS_STORE_OK)
        return store_fail(err);
    if (w.oom) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    return NS_OK;
}

/* ---- the outbox ------------------------------------------------------------------------------ */

typedef struct {
    ns_outbox_fn fn;
    void *ud;
    bool oom;
} outbox_walk;

static const char *op_word(ns_store_op op)
{
    switch (op) {
    case NS_STORE_OP_CREATE:
        return "create";
    case NS_STORE_OP_UPDATE:
        return "update";
    case NS_STORE_OP_DELETE:
        return "delete";
    }
    return "unknown";
}

static int walk_outbox(const ns_store_outbox_entry *e, void *ud)
{
    outbox_walk *w = ud;
    field_views fv;
    if (views_make(&e->fields, &fv) != 0) {
        w->oom = true;
        return 1;
    }
    bool rej = e->state == NS_STORE_REJECTED;
    ns_outbox_view v = {
        .seq = e->seq,
        .mutation_id = e->mutation_id,
        .entity_type = e->entity_type,
        .record_id = e->record_id,
        .op = op_word(e->op),
        .base_version = e->base_version,
        .created_at_ms = e->created_at_ms,
        .rejected = rej,
        .reject_code = rej ? ns_error_code_name(e->reject_code) : "",
        .reject_reason = rej ? e->reject_reason : "",
        .fields = fv.v,
        .nfields = fv.n,
    };
    int stop = w->fn(&v, w->ud);
    views_free(&fv);
    return stop;
}

int ns_client_outbox(ns_client *c, ns_outbox_fn fn, void *ud, ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (fn == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "ns_client_outbox needs a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    outbox_walk w = {.fn = fn, .ud = ud};
    if (ns_store_outbox_list(nsc_store(c), walk_outbox, &w, err) != NS_STORE_OK)
        return store_fail(err);
    if (w.oom) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    return NS_OK;
}

int ns_client_discard(ns_client *c, const char *mutation_id, ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (ns_store_discard(nsc_store(c), mutation_id, err) != NS_STORE_OK)
        return store_fail(err);
    return NS_OK;
}

/* ---- conflicts and status
 * ------------------------------------------------------------------------ */

typedef struct {
    ns_conflict_fn fn;
    void *ud;
    bool oom;
} conflict_walk;

static int conflict_view_call(const Napsync__V1__Conflict *cf, ns_conflict_fn fn, void *ud,
                              bool *oom)
{
    char *base = NULL, *kept = NULL, *other = NULL;
    if (pb_text(cf->base_value, &base) != 0 || pb_text(cf->kept_value, &kept) != 0 ||
        pb_text(cf->other_value, &other) != 0) {
        free(base);
        free(kept);
        free(other);
        *oom = true;
        return 1;
    }
    ns_conflict_view v = {
        .id = cf->id,
        .entity_type = cf->entity_type,
        .record_id = cf->record_id,
        .tenant_id = cf->tenant_id,
        .field = cf->field,
        .base_value = base,
        .kept_value = kept,
        .other_value = other,
        .kept_deleted = cf->kept_deleted,
        .other_deleted = cf->other_deleted,
        .kept_by = cf->kept_by,
        .kept_device = cf->kept_device,
        .other_by = cf->other_by,
        .other_device = cf->other_device,
        .created_at = cf->created_at,
        .resolved = cf->resolved,
    };
    int stop = fn(&v, ud);
    free(base);
    free(kept);
    free(other);
    return stop;
}

static int walk_conflict(const Napsync__V1__Conflict *cf, void *ud)
{
    conflict_walk *w = ud;
    return conflict_view_call(cf, w->fn, w->ud, &w->oom);
}

int ns_client_conflicts(ns_client *c, int include_resolved, ns_conflict_fn fn, void *ud,
                        ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (fn == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "ns_client_conflicts needs a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    conflict_walk w = {.fn = fn, .ud = ud};
    if (ns_store_list_conflicts(nsc_store(c), include_resolved != 0, walk_conflict, &w, err) !=
        NS_STORE_OK)
        return store_fail(err);
    if (w.oom) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "a stored conflict cannot be shown (out of memory?)");
        return NS_ERR_NOMEM;
    }
    return NS_OK;
}

int ns_client_status(ns_client *c, ns_sync_status *out, ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (out == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "ns_client_status needs an output");
        return NS_ERR_INVALID_ARGUMENT;
    }
    ns_store_status st;
    if (ns_store_get_status(nsc_store(c), &st, err) != NS_STORE_OK)
        return store_fail(err);
    memset(out, 0, sizeof(*out));
    out->pending = st.pending;
    out->rejected = st.rejected;
    out->records = st.records;
    out->open_conflicts = st.open_conflicts;
    snprintf(out->cursor, sizeof(out->cursor), "%s", st.cursor);
    out->last_sync_ms = st.last_sync_ms;
    out->connection = nsc_conn_state(c);
    const nsc_sync *s = *nsc_sync_slot(c);
    out->syncing = s && s->active;
    return NS_OK;
}

/* ---- the sync loop
 * ----------------------------------------------------------------------------------- */

void nsc_sync_free(nsc_sync *s)
{
    if (s == NULL)
        return;
    ns_store_batch_free(&s->batch);
    free(s);
}

static void emit(ns_client *c, nsc_sync *s, ns_sync_event_kind kind, uint64_t count,
                 uint64_t rejected, uint32_t retry_in_ms, const ns_error *e)
{
    if (s->on_event == NULL)
        return;
    ns_sync_event ev = {
        .kind = kind, .count = count, .rejected = rejected, .retry_in_ms = retry_in_ms, .err = e};
    s->on_event(c, &ev, s->event_ud);
}

static bool busy(const nsc_sync *s)
{
    return s->push_inflight || s->pull_inflight || s->conflicts_inflight || s->sub_active ||
           s->bf_inflight;
}

/* The run is over: cb hears it once. The connection stays as it is. */
static void finish(ns_client *c, nsc_sync *s)
{
    if (!s->active)
        return;
    s->active = false;
    s->ph = PH_IDLE;
    nsc_wake_stop(c);
    ns_store_batch_free(&s->batch);
    ns_sync_cb cb = s->cb;
    void *ud = s->ud;
    s->st.round_trips = nsc_flights(c) - s->flights_base;
    ns_sync_stats st = s->st;
    ns_error e = s->failure;
    s->cb = NULL;
    if (cb)
        cb(c, e.status != NS_OK ? &e : NULL, &st, ud);
}

static void on_stop_closed(ns_client *c, void *ud)
{
    finish(c, ud);
}

/* Ends the run with e (NULL: success) after closing the connection, or at
 * once if there is none. */
static void end_run(ns_client *c, nsc_sync *s, const ns_error *e)
{
    if (e && s->failure.status == NS_OK)
        s->failure = *e;
    s->stopping = true;
    nsc_wake_stop(c);
    if (nsc_conn_state(c) != NS_CONN_DISCONNECTED &&
        ns_client_disconnect(c, on_stop_closed, s) == NS_OK)
        return;
    if (nsc_conn_state(c) == NS_CONN_DISCONNECTED && !busy(s))
        finish(c, s);
    /* else: a disconnect is under way; its callback or the requests'
     * failures finish the run */
}

/* Without watch a failure ends the run (the connection is left to the
 * caller); with watch, only a failure that retrying cannot cure does. */
static void fail_run(ns_client *c, nsc_sync *s, const ns_error *e)
{
    if (s->stopping)
        return;
    if (!s->watch) {
        s->failure = *e;
        finish(c, s);
        return;
    }
    end_run(c, s, e);
}

static void connect_now(ns_client *c, nsc_sync *s);
static void on_connected(ns_client *c, const ns_error *e, void *ud);

static uint32_t backoff_ms(nsc_sync *s)
{
    uint32_t d = SYNC_BACKOFF_BASE_MS;
    for (uint32_t i = 0; i < s->attempt && d < SYNC_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > SYNC_BACKOFF_MAX_MS)
        d = SYNC_BACKOFF_MAX_MS;
    /* xorshift64: the jitter only has to spread clients apart */
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    uint32_t half = d / 2;
    return half + (uint32_t)(s->rng % (uint64_t)(half + 1));
}

static void on_backoff(ns_client *c, void *ud)
{
    nsc_sync *s = ud;
    if (!s->active || s->stopping || s->ph != PH_BACKOFF)
        return;
    if (nsc_conn_state(c) == NS_CONN_CONNECTED) {
        /* ns_client_sync on a connected client goes on with that connection */
        s->lost = false;
        s->reset_done = false;
        s->early = false; /* this connection's Welcome is long past */
        s->ph = PH_CONNECTING;
        on_connected(c, NULL, s);
        return;
    }
    connect_now(c, s);
}

static void schedule_retry(ns_client *c, nsc_sync *s, const ns_error *e)
{
    uint32_t ms = backoff_ms(s);
    if (s->attempt < 31)
        s->attempt++;
    s->ph = PH_BACKOFF;
    emit(c, s, NS_SYNC_DISCONNECTED, 0, 0, ms, e);
    nsc_wake_after(c, ms, on_backoff, s);
}

typedef struct {
    nsc_sync *s;
    ns_error e;
} retry_ctx;

static void on_retry_closed(ns_client *c, void *ud)
{
    retry_ctx *r = ud;
    nsc_sync *s = r->s;
    ns_error e = r->e;
    free(r);
    if (!s->active)
        return;
    if (s->stopping) {
        finish(c, s);
        return;
    }
    schedule_retry(c, s, &e);
}

/* The connection failed or the server cannot serve now: reconnect after a
 * backoff and go on from what is saved (the cursor of the last page
 * applied, the outbox without what was answered). Without watch the run
 * fails once SYNC_ONESHOT_LOSSES connections in a row ended without
 * progress: a field link that drops every few minutes still completes a
 * sync, a server that is down does not keep the caller waiting forever. */
static void lost(ns_client *c, nsc_sync *s, const ns_error *e)
{
    if (s->lost || !s->active)
        return;
    s->lost = true;
    if (s->stopping)
        return;
    if (s->progress) {
        s->attempt = 0;
        s->progress = false;
    }
    if (!s->watch && s->attempt + 1 >= SYNC_ONESHOT_LOSSES) {
        s->failure = *e;
        finish(c, s);
        return;
    }
    if (nsc_conn_state(c) == NS_CONN_DISCONNECTED) {
        schedule_retry(c, s, e);
        return;
    }
    /* Still connected (e.g. UNAVAILABLE): close, then retry. */
    retry_ctx *r = malloc(sizeof(*r));
    if (r == NULL) {
        ns_error oom;
        nsc_set_error(&oom, NS_ERR_NOMEM, 0, "out of memory");
        end_run(c, s, &oom);
        return;
    }
    r->s = s;
    r->e = *e;
    if (ns_client_disconnect(c, on_retry_closed, r) != NS_OK) {
        free(r);
        schedule_retry(c, s, e);
    }
}

/* Whether an error is about the link (retry) rather than the request. */
static bool is_loss(const ns_error *e)
{
    switch (e->status) {
    case NS_ERR_CLOSED:
    case NS_ERR_TIMEOUT:
    case NS_ERR_CONNECT:
    case NS_ERR_RESOLVE:
    case NS_ERR_TLS:
    case NS_ERR_UNAVAILABLE:
        return true;
    case NS_ERR_SERVER:
        return e->server_code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL;
    default:
        return false;
    }
}

static void request_failed(ns_client *c, nsc_sync *s, const ns_error *e)
{
    if (is_loss(e))
        lost(c, s, e);
    else
        fail_run(c, s, e);
}

static void store_failed(ns_client *c, nsc_sync *s, const ns_error *e)
{
    /* The store's own message says what is wrong with the disk or file. */
    fail_run(c, s, e);
}

static void push_next(ns_client *c, nsc_sync *s);
static void pull_next(ns_client *c, nsc_sync *s);
static void conflicts_next(ns_client *c, nsc_sync *s);
static void subscribe(ns_client *c, nsc_sync *s);
static void caught_up(ns_client *c, nsc_sync *s);

/* Starts a catch-up: push, pull and list the conflicts, all three on the
 * wire at once (the server answers them in order). */
static void begin_catchup(ns_client *c, nsc_sync *s)
{
    s->ph = PH_CATCHUP;
    s->cu_pushed = s->cu_pulled = s->cu_listed = false;
    s->cu_push_gen = s->cu_listed_gen = s->cu_pulled_gen = 0;
    push_next(c, s);
    if (s->ph == PH_CATCHUP && !s->pull_inflight)
        pull_next(c, s);
    if (s->ph == PH_CATCHUP)
        conflicts_next(c, s);
}

/* Ends the catch-up once its three parts are done. */
static void catchup_check(ns_client *c, nsc_sync *s)
{
    if (s->ph == PH_CATCHUP && s->cu_pushed && s->cu_pulled && s->cu_listed && !s->push_inflight &&
        !s->pull_inflight && !s->bf_inflight && !s->conflicts_inflight)
        caught_up(c, s);
}

/* Checks that a store is used with the device it was made for. */
static int bind_store(ns_client *c, const ns_identity *id, ns_error *err)
{
    ns_store *st = nsc_store(c);
    char have[NS_STORE_META_SIZE];
    if (ns_store_meta_get(st, NS_STORE_META_DEVICE_ID, have, err) != NS_STORE_OK)
        return store_fail(err);
    if (have[0] == '\0') {
        if (ns_store_meta_set(st, NS_STORE_META_DEVICE_ID, id->device_id, err) != NS_STORE_OK)
            return store_fail(err);
    } else if (strcmp(have, id->device_id) != 0) {
        nsc_set_error(err, NS_ERR_STATE, 0,
                      "this store belongs to device %s, but the certificate is device %s (%s): "
                      "use that device's store (NAPSYNC_STORE)",
                      have, id->device_id, id->device_name);
        return NS_ERR_STATE;
    }
    return NS_OK;
}

static void build_scopes(nsc_sync *s, const char *organisation_id)
{
    s->nscopes = 0;
    if (s->directory) {
        Napsync__V1__Scope *sc = &s->scope_msgs[s->nscopes];
        napsync__v1__scope__init(sc);
        sc->kind_case = NAPSYNC__V1__SCOPE__KIND_DIRECTORY;
        sc->directory = 1;
        s->scopes[s->nscopes++] = sc;
    }
    if (s->nplans == 0) {
        snprintf(s->org, sizeof(s->org), "%s", organisation_id);
        Napsync__V1__Scope *sc = &s->scope_msgs[s->nscopes];
        napsync__v1__scope__init(sc);
        sc->kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
        sc->organisation_id = s->org;
        s->scopes[s->nscopes++] = sc;
        return;
    }
    for (size_t i = 0; i < s->nplans; i++) {
        Napsync__V1__Scope *sc = &s->scope_msgs[s->nscopes];
        napsync__v1__scope__init(sc);
        sc->kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
        sc->plan_id = s->plans[i];
        s->scopes[s->nscopes++] = sc;
    }
}

static void on_connected(ns_client *c, const ns_error *e, void *ud)
{
    nsc_sync *s = ud;
    if (!s->active)
        return;
    if (s->stopping) {
        finish(c, s);
        return;
    }
    if (e) {
        /* A refused certificate or an unknown device does not cure itself. */
        if (is_loss(e))
            lost(c, s, e);
        else
            fail_run(c, s, e);
        return;
    }
    const ns_identity *id = ns_client_identity(c);
    ns_error be;
    if (bind_store(c, id, &be) != NS_OK) {
        end_run(c, s, &be);
        return;
    }
    if (s->early && s->rem.device_id[0] != '\0' &&
        (strcmp(id->device_id, s->rem.device_id) != 0 ||
         strcmp(id->organisation_id, s->rem.organisation_id) != 0)) {
        /* The first flight named what the server no longer says (the
         * device moved organisation): nothing of its answers is applied
         * (they come after this Welcome); its pushes were this device's. */
        nsc_set_error(&be, NS_ERR_STATE, 0,
                      "the server now says this device is %s of organisation %s, not what the "
                      "store recorded: sync again",
                      id->device_id, id->organisation_id);
        end_run(c, s, &be);
        return;
    }
    emit(c, s, NS_SYNC_CONNECTED, 0, 0, 0, NULL);
    if (s->early)
        return; /* the catch-up is on the wire already */
    build_scopes(s, id->organisation_id);
    begin_catchup(c, s);
}

/* Right after Hello, before Welcome: the catch-up goes out in the same
 * flight, on what the last Welcome of this server said (client.c keeps it,
 * bound to our certificate), for a store already bound to that device. */
static void first_flight(ns_client *c, void *ud)
{
    nsc_sync *s = ud;
    if (!s->active || s->stopping || s->ph != PH_CONNECTING)
        return;
    s->early = true;
    build_scopes(s, s->rem.organisation_id);
    begin_catchup(c, s);
}

/* A store that never synced knows nothing of this server, yet its first
 * pull (a field office's first sync, on the slowest line) may still go
 * out behind Hello when it names its plans (no organisation is needed for
 * the scopes) and has nothing to push (no server limit is needed either).
 * s->rem is then empty: the answers are bound to whatever Welcome says. */
static bool fresh_may_fly_early(ns_client *c, nsc_sync *s, const char *bound_device)
{
    if (s->nplans == 0 || bound_device[0] != '\0')
        return false;
    ns_store_batch b;
    ns_error e;
    memset(&b, 0, sizeof(b));
    bool empty =
        ns_store_outbox_batch(nsc_store(c), 1, SIZE_MAX, &b, &e) == NS_STORE_OK && b.n == 0;
    ns_store_batch_free(&b);
    if (!empty)
        return false;
    memset(&s->rem, 0, sizeof(s->rem));
    /* Bounds no server refuses, should a push start before Welcome. */
    s->rem.max_frame_size = 64u * 1024u;
    s->rem.max_push_mutations = 1;
    return true;
}

/* Whether this connection's catch-up may go out behind Hello. */
static bool may_fly_early(ns_client *c, nsc_sync *s)
{
    char have[NS_STORE_META_SIZE];
    if (ns_store_meta_get(nsc_store(c), NS_STORE_META_DEVICE_ID, have, NULL) != NS_STORE_OK)
        return false;
    if (nsc_remembered_get(c, &s->rem))
        return strcmp(have, s->rem.device_id) == 0;
    return fresh_may_fly_early(c, s, have);
}

static void connect_now(ns_client *c, nsc_sync *s)
{
    s->lost = false;
    s->reset_done = false;
    s->early = false;
    s->ph = PH_CONNECTING;
    nsc_on_first_flight(c, may_fly_early(c, s) ? first_flight : NULL, s);
    ns_error e;
    if (ns_client_connect(c, on_connected, s, &e) != NS_OK) {
        nsc_on_first_flight(c, NULL, NULL);
        if (is_loss(&e)) {
            s->lost = true;
            if (!s->watch) {
                s->failure = e;
                finish(c, s);
            } else {
                schedule_retry(c, s, &e);
            }
        } else {
            fail_run(c, s, &e);
        }
    }
}

/* The frame the server accepts, less what a Push adds around mutations. */
static size_t push_budget(ns_client *c, const nsc_sync *s)
{
    const ns_identity *id = ns_client_identity(c);
    size_t frame = id && id->max_frame_size ? id->max_frame_size
                   : s->early               ? s->rem.max_frame_size
                                            : 1024u * 1024u;
    size_t over = SYNC_PUSH_ENV_OVERHEAD + (size_t)NS_STORE_MAX_BATCH * SYNC_PUSH_ITEM_OVERHEAD;
    return frame > over * 2 ? frame - over : frame / 2;
}

static void on_push_result(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp,
                           void *ud)
{
    nsc_sync *s = ud;
    s->push_inflight = false;
    if (!s->active || s->stopping || s->lost) {
        ns_store_batch_free(&s->batch);
        if (s->active && s->stopping && !busy(s) && nsc_conn_state(c) == NS_CONN_DISCONNECTED)
            finish(c, s);
        return;
    }
    if (e) {
        ns_store_batch_free(&s->batch);
        request_failed(c, s, e);
        return;
    }
    const Napsync__V1__PushResult *pr = resp->push_result;
    ns_error pe;
    if (pr == NULL || pr->n_results != s->batch.n) {
        nsc_set_error(&pe, NS_ERR_PROTOCOL, 0, "the server answered %zu mutations with %zu results",
                      s->batch.n, pr ? pr->n_results : 0);
        ns_store_batch_free(&s->batch);
        fail_run(c, s, &pe);
        return;
    }
    for (size_t i = 0; i < pr->n_results; i++) {
        const Napsync__V1__MutationResult *r = pr->results[i];
        if (r == NULL || r->mutation_id == NULL ||
            strcmp(r->mutation_id, s->batch.mutations[i]->mutation_id) != 0) {
            nsc_set_error(&pe, NS_ERR_PROTOCOL, 0,
                          "result %zu of the server's PushResult is not for mutation %s", i,
                          s->batch.mutations[i]->mutation_id);
            ns_store_batch_free(&s->batch);
            fail_run(c, s, &pe);
            return;
        }
    }
    uint64_t rejected = 0;
    bool conflicts = false;
    for (size_t i = 0; i < pr->n_results; i++) {
        if (pr->results[i]->outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED)
            rejected++;
        if (pr->results[i]->outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT)
            conflicts = true;
    }
    ns_store_rc rc = ns_store_record_results(
        nsc_store(c), (const Napsync__V1__MutationResult *const *)pr->results, pr->n_results, NULL,
        &pe);
    size_t n = s->batch.n;
    ns_store_batch_free(&s->batch);
    if (rc != NS_STORE_OK) {
        store_failed(c, s, &pe);
        return;
    }
    s->st.pushed += n;
    s->st.rejected += rejected;
    s->progress = true;
    emit(c, s, NS_SYNC_PUSHED, n, rejected, 0, NULL);
    if (conflicts && s->ph == PH_WATCHING)
        s->conflicts_again = true;
    push_next(c, s);
}

static void push_next(ns_client *c, nsc_sync *s)
{
    if (s->push_inflight)
        return;
    ns_error e;
    ns_store_batch_free(&s->batch);
    const ns_identity *id = ns_client_identity(c);
    size_t most = id && id->max_push_mutations ? id->max_push_mutations
                  : s->early && id == NULL     ? s->rem.max_push_mutations
                                               : NS_STORE_MAX_BATCH;
    if (most > NS_STORE_MAX_BATCH)
        most = NS_STORE_MAX_BATCH;
    if (ns_store_outbox_batch(nsc_store(c), most, push_budget(c, s), &s->batch, &e) !=
        NS_STORE_OK) {
        ns_store_batch_free(&s->batch);
        store_failed(c, s, &e);
        return;
    }
    if (s->batch.n == 0) {
        ns_store_batch_free(&s->batch);
        bool again = s->push_again;
        s->push_again = false;
        if (again) {
            push_next(c, s);
            return;
        }
        if (s->ph == PH_CATCHUP) {
            s->cu_pushed = true;
            /* A push went out after the conflict list was asked for: ask
             * again, so that the list reflects every push. */
            if (s->cu_listed_gen != s->cu_push_gen)
                conflicts_next(c, s);
            /* Likewise the pull: a push the server took after the pull's
             * last page comes back in a pull of its own. */
            if (s->cu_pulled && s->cu_pulled_gen != s->cu_push_gen) {
                s->cu_pulled = false;
                pull_next(c, s);
            }
            catchup_check(c, s);
        } else if (s->ph == PH_WATCHING && s->conflicts_again) {
            conflicts_next(c, s);
        }
        return;
    }
    s->push_again = false;
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Push push = NAPSYNC__V1__PUSH__INIT;
    push.mutations = s->batch.mutations;
    push.n_mutations = s->batch.n;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PUSH;
    env.push = &push;
    if (nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_PUSH_RESULT, false, on_push_result, s,
                    &e) != NS_OK) {
        ns_store_batch_free(&s->batch);
        request_failed(c, s, &e);
        return;
    }
    s->push_inflight = true;
    if (s->ph == PH_CATCHUP)
        s->cu_push_gen++;
}

static bool cursor_unknown(const ns_error *e)
{
    return e->server_code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_CURSOR_UNKNOWN;
}

/* The server does not know our cursor: forget the replica (never the
 * outbox) and fetch everything again. */
static bool reset_cursor(ns_client *c, nsc_sync *s, const ns_error *why)
{
    ns_error e;
    if (s->reset_done) {
        nsc_set_error(&e, NS_ERR_PROTOCOL, why->server_code,
                      "the server refused the cursor again right after a reset: %s", why->message);
        fail_run(c, s, &e);
        return false;
    }
    s->reset_done = true;
    if (ns_store_reset_replica(nsc_store(c), &e) != NS_STORE_OK) {
        store_failed(c, s, &e);
        return false;
    }
    s->st.cursor_resets++;
    emit(c, s, NS_SYNC_CURSOR_RESET, 0, 0, 0, NULL);
    return true;
}

static bool apply_page(ns_client *c, nsc_sync *s, const Napsync__V1__ChangePage *page)
{
    ns_error e;
    if (page == NULL) {
        nsc_set_error(&e, NS_ERR_PROTOCOL, 0, "the server sent an empty ChangePage");
        fail_run(c, s, &e);
        return false;
    }
    ns_store_page_outcome o;
    if (ns_store_apply_page_tenants(nsc_store(c), page, &o, &e) != NS_STORE_OK) {
        if (e.status == NS_ERR_PROTOCOL)
            fail_run(c, s, &e);
        else
            store_failed(c, s, &e);
        return false;
    }
    size_t n = o.applied;
    s->st.received += n;
    s->progress = true;
    if (n > 0)
        emit(c, s, NS_SYNC_CHANGES, n, 0, 0, NULL);
    return true;
}

static bool permission_denied(const ns_error *e)
{
    return e->server_code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED;
}

/* The server refuses a plan scope it does not let us read (it does not say
 * which, so that drafts stay hidden): purge every named plan, as none may
 * linger on the device. Those still readable are backfilled by the next
 * sync that names them. */
static bool purge_named_plans(ns_client *c, nsc_sync *s)
{
    for (size_t i = 0; i < s->nplans; i++) {
        ns_error e;
        if (ns_store_purge_tenant(nsc_store(c), s->plans[i], &e) != NS_STORE_OK) {
            store_failed(c, s, &e);
            return false;
        }
    }
    return true;
}

static void backfill_next(ns_client *c, nsc_sync *s);

/* Backfills are done: what follows them in the run. */
static void backfill_done(ns_client *c, nsc_sync *s)
{
    if (s->ph == PH_CATCHUP) {
        /* Pushes sent while the pull ran (an outbox of several batches)
         * were queued behind it by the server, which answers in order:
         * pull again so that this sync brings back what it pushed. */
        if (s->cu_pulled_gen != s->cu_push_gen) {
            pull_next(c, s);
            return;
        }
        s->cu_pulled = true;
        catchup_check(c, s);
        return;
    }
    conflicts_next(c, s);
}

static void on_backfill(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp,
                        void *ud)
{
    nsc_sync *s = ud;
    s->bf_inflight = false;
    if (!s->active || s->stopping || s->lost) {
        if (s->active && s->stopping && !busy(s) && nsc_conn_state(c) == NS_CONN_DISCONNECTED)
            finish(c, s);
        return;
    }
    ns_error se;
    if (e) {
        if (!permission_denied(e)) {
            request_failed(c, s, e);
            return;
        }
        /* Unreadable again since the page that listed it. */
        if (ns_store_purge_tenant(nsc_store(c), s->bf_tenant, &se) != NS_STORE_OK) {
            store_failed(c, s, &se);
            return;
        }
        s->bf_cursor[0] = '\0';
        backfill_next(c, s);
        return;
    }
    const Napsync__V1__ChangePage *page = resp->change_page;
    size_t n = 0;
    if (page == NULL) {
        nsc_set_error(&se, NS_ERR_PROTOCOL, 0, "the server sent an empty ChangePage");
        fail_run(c, s, &se);
        return;
    }
    if (ns_store_apply_backfill(nsc_store(c), s->bf_tenant, page, &n, &se) != NS_STORE_OK) {
        if (se.status == NS_ERR_PROTOCOL)
            fail_run(c, s, &se);
        else
            store_failed(c, s, &se);
        return;
    }
    s->st.received += n;
    if (n > 0)
        emit(c, s, NS_SYNC_CHANGES, n, 0, 0, NULL);
    if (page->more)
        snprintf(s->bf_cursor, sizeof(s->bf_cursor), "%s", page->next_cursor);
    else
        s->bf_cursor[0] = '\0';
    backfill_next(c, s);
}

/* Pulls the next page of the first tenant pending a backfill, or goes on
 * with the run when none is left. */
static void backfill_next(ns_client *c, nsc_sync *s)
{
    if (s->bf_inflight)
        return;
    ns_error e;
    char pending[1][NS_STORE_UUID_SIZE];
    size_t n = 0;
    if (ns_store_tenants_pending(nsc_store(c), pending, 1, &n, &e) != NS_STORE_OK) {
        store_failed(c, s, &e);
        return;
    }
    if (n == 0) {
        s->bf_cursor[0] = '\0';
        backfill_done(c, s);
        return;
    }
    if (strcmp(pending[0], s->bf_tenant) != 0) {
        memcpy(s->bf_tenant, pending[0], sizeof(s->bf_tenant));
        s->bf_cursor[0] = '\0';
    }
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Pull pull = NAPSYNC__V1__PULL__INIT;
    napsync__v1__scope__init(&s->bf_scope);
    s->bf_scope.kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    s->bf_scope.plan_id = s->bf_tenant;
    s->bf_scopes[0] = &s->bf_scope;
    pull.cursor = s->bf_cursor;
    pull.scopes = s->bf_scopes;
    pull.n_scopes = 1;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PULL;
    env.pull = &pull;
    if (nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE, false, on_backfill, s, &e) !=
        NS_OK) {
        request_failed(c, s, &e);
        return;
    }
    s->bf_inflight = true;
}

static void on_page(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp, void *ud)
{
    nsc_sync *s = ud;
    /* A stream's page with more: the next one comes without asking. */
    bool more = e == NULL && resp && resp->change_page && resp->change_page->more;
    s->pull_streaming = s->pull_streaming && nsc_pull_streams(c);
    s->pull_inflight = more && s->pull_streaming;
    if (!s->active || s->stopping || s->lost) {
        if (s->active && s->stopping && !busy(s) && nsc_conn_state(c) == NS_CONN_DISCONNECTED)
            finish(c, s);
        return;
    }
    if (e) {
        if (cursor_unknown(e)) {
            if (reset_cursor(c, s, e))
                pull_next(c, s);
            return;
        }
        if (permission_denied(e) && !purge_named_plans(c, s))
            return;
        request_failed(c, s, e);
        return;
    }
    if (!apply_page(c, s, resp->change_page))
        return;
    if (s->pull_inflight)
        return;
    if (resp->change_page->more)
        pull_next(c, s);
    else
        backfill_next(c, s);
}

static void pull_next(ns_client *c, nsc_sync *s)
{
    ns_error e;
    char cursor[NS_STORE_CURSOR_SIZE];
    if (ns_store_cursor(nsc_store(c), cursor, &e) != NS_STORE_OK) {
        store_failed(c, s, &e);
        return;
    }
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Pull pull = NAPSYNC__V1__PULL__INIT;
    pull.cursor = cursor;
    pull.scopes = s->scopes;
    pull.n_scopes = s->nscopes;
    /* Every page in one answer (docs/protocol.md "Streamed pull"): small
     * pages cost nothing more, and a cut loses at most one. */
    s->pull_streaming = nsc_pull_streams(c);
    pull.stream = s->pull_streaming;
    pull.page_size = s->pull_streaming ? s->page_size : 0;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PULL;
    env.pull = &pull;
    if (nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE,
                    s->pull_streaming ? NSC_PAGES : NSC_ONCE, on_page, s, &e) != NS_OK) {
        request_failed(c, s, &e);
        return;
    }
    s->pull_inflight = true;
    s->cu_pulled_gen = s->cu_push_gen;
    s->st.pull_requests++;
}

static void caught_up(ns_client *c, nsc_sync *s)
{
    ns_error e;
    if (ns_store_set_last_sync(nsc_store(c), now_unix_ms(), &e) != NS_STORE_OK) {
        store_failed(c, s, &e);
        return;
    }
    s->attempt = 0;
    emit(c, s, NS_SYNC_CAUGHT_UP, 0, 0, 0, NULL);
    if (!s->watch) {
        finish(c, s);
        return;
    }
    subscribe(c, s);
}

static void on_conflicts(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp,
                         void *ud)
{
    nsc_sync *s = ud;
    s->conflicts_inflight = false;
    if (!s->active || s->stopping || s->lost) {
        if (s->active && s->stopping && !busy(s) && nsc_conn_state(c) == NS_CONN_DISCONNECTED)
            finish(c, s);
        return;
    }
    if (e && e->server_code == NAPSYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED_MESSAGE) {
        /* A server without conflict listing: keep what we know. */
        s->st.conflicts_listed = 0;
    } else if (e) {
        request_failed(c, s, e);
        return;
    } else {
        const Napsync__V1__ConflictList *cl = resp->conflict_list;
        ns_error se;
        if (cl == NULL || ns_store_replace_conflicts(
                              nsc_store(c), (const Napsync__V1__Scope *const *)s->scopes,
                              s->nscopes, (const Napsync__V1__Conflict *const *)cl->conflicts,
                              cl->n_conflicts, &se) != NS_STORE_OK) {
            if (cl == NULL)
                nsc_set_error(&se, NS_ERR_PROTOCOL, 0, "the server sent an empty ConflictList");
            fail_run(c, s, &se);
            return;
        }
        ns_store_status st;
        if (ns_store_get_status(nsc_store(c), &st, &se) != NS_STORE_OK) {
            store_failed(c, s, &se);
            return;
        }
        s->st.conflicts_listed = 1;
        s->st.open_conflicts = st.open_conflicts;
        emit(c, s, NS_SYNC_CONFLICTS, st.open_conflicts, 0, 0, NULL);
    }
    if (s->ph == PH_CATCHUP) {
        if (s->conflicts_again) {
            conflicts_next(c, s);
            return;
        }
        s->cu_listed = s->cu_listed_gen == s->cu_push_gen;
        catchup_check(c, s);
        return;
    }
    if (s->conflicts_again)
        conflicts_next(c, s);
}

static void conflicts_next(ns_client *c, nsc_sync *s)
{
    if (s->conflicts_inflight) {
        s->conflicts_again = true;
        return;
    }
    s->conflicts_again = false;
    ns_error e;
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__ListConflicts lc = NAPSYNC__V1__LIST_CONFLICTS__INIT;
    lc.scopes = s->scopes;
    lc.n_scopes = s->nscopes;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_LIST_CONFLICTS;
    env.list_conflicts = &lc;
    if (nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_CONFLICT_LIST, false, on_conflicts, s,
                    &e) != NS_OK) {
        request_failed(c, s, &e);
        return;
    }
    s->conflicts_inflight = true;
    s->cu_listed_gen = s->cu_push_gen;
}

static void on_keepalive_pong(ns_client *c, const ns_error *e, uint64_t rtt_us, void *ud)
{
    /* A lost pong ends the connection, which the subscription hears. */
    (void)c;
    (void)e;
    (void)rtt_us;
    (void)ud;
}

static void on_keepalive(ns_client *c, void *ud);

static void arm_keepalive(ns_client *c, nsc_sync *s)
{
    const ns_identity *id = ns_client_identity(c);
    uint64_t every = id && id->idle_timeout_ms ? id->idle_timeout_ms / 3u : 60000u;
    if (every < 1000)
        every = 1000;
    nsc_wake_after(c, every, on_keepalive, s);
}

static void on_keepalive(ns_client *c, void *ud)
{
    nsc_sync *s = ud;
    if (!s->active || s->stopping || s->ph != PH_WATCHING)
        return;
    ns_error e;
    if (ns_client_ping(c, on_keepalive_pong, s, &e) != NS_OK) {
        request_failed(c, s, &e);
        return;
    }
    arm_keepalive(c, s);
}

static void on_sub_page(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp,
                        void *ud)
{
    nsc_sync *s = ud;
    if (e)
        s->sub_active = false;
    if (!s->active || s->stopping || s->lost) {
        if (s->active && s->stopping && !busy(s) && nsc_conn_state(c) == NS_CONN_DISCONNECTED)
            finish(c, s);
        return;
    }
    if (e) {
        if (cursor_unknown(e)) {
            if (reset_cursor(c, s, e)) {
                nsc_wake_stop(c);
                begin_catchup(c, s);
            }
            return;
        }
        /* Any end of the subscription (PERMISSION_DENIED on a scope lost
         * included) makes the next connection start over from the cursor. */
        if (permission_denied(e) && !purge_named_plans(c, s))
            return;
        ns_error le = *e;
        if (!is_loss(&le))
            le.status = NS_ERR_UNAVAILABLE;
        lost(c, s, &le);
        return;
    }
    if (!apply_page(c, s, resp->change_page))
        return;
    if (s->ph == PH_SUBSCRIBING) {
        s->ph = PH_WATCHING;
        arm_keepalive(c, s);
        /* Edits made while catching up go out now. */
        push_next(c, s);
    }
    ns_error se;
    if (ns_store_set_last_sync(nsc_store(c), now_unix_ms(), &se) != NS_STORE_OK) {
        store_failed(c, s, &se);
        return;
    }
    ns_error te;
    char pending[1][NS_STORE_UUID_SIZE];
    size_t npending = 0;
    if (ns_store_tenants_pending(nsc_store(c), pending, 1, &npending, &te) != NS_STORE_OK) {
        store_failed(c, s, &te);
        return;
    }
    if (npending > 0)
        backfill_next(c, s); /* lists the conflicts when done */
    else if (resp->change_page->n_records > 0 && !resp->change_page->conflicts_unchanged)
        conflicts_next(c, s); /* the server cannot say that they did not change */
}

static void subscribe(ns_client *c, nsc_sync *s)
{
    ns_error e;
    char cursor[NS_STORE_CURSOR_SIZE];
    if (ns_store_cursor(nsc_store(c), cursor, &e) != NS_STORE_OK) {
        store_failed(c, s, &e);
        return;
    }
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    Napsync__V1__Subscribe sub = NAPSYNC__V1__SUBSCRIBE__INIT;
    sub.cursor = cursor;
    sub.scopes = s->scopes;
    sub.n_scopes = s->nscopes;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_SUBSCRIBE;
    env.subscribe = &sub;
    s->ph = PH_SUBSCRIBING;
    if (nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE, true, on_sub_page, s, &e) !=
        NS_OK) {
        request_failed(c, s, &e);
        return;
    }
    s->sub_active = true;
}

/* A local edit while watching goes out at once. */
static void sync_kick(ns_client *c)
{
    nsc_sync *s = *nsc_sync_slot(c);
    if (s == NULL || !s->active || s->stopping || s->ph != PH_WATCHING)
        return;
    if (s->push_inflight) {
        s->push_again = true;
        return;
    }
    push_next(c, s);
}

static bool uuid_shape(const char *s)
{
    char canon[NS_UUID_SIZE];
    return ns_uuid_canon(s, canon);
}

int ns_client_sync(ns_client *c, const ns_sync_options *o, ns_sync_cb cb, void *ud, ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (cb == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "ns_client_sync needs a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    size_t nplans = o ? o->nplans : 0;
    bool directory = o && o->directory;
    if (nplans + directory > SYNC_MAX_SCOPES) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "at most %d plans%s",
                      SYNC_MAX_SCOPES - directory, directory ? " with the directory" : "");
        return NS_ERR_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < nplans; i++) {
        if (!uuid_shape(o->plan_ids[i])) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "plan \"%.64s\" is not a UUID",
                          o->plan_ids[i] ? o->plan_ids[i] : "");
            return NS_ERR_INVALID_ARGUMENT;
        }
    }
    nsc_sync **slot = nsc_sync_slot(c);
    if (*slot == NULL) {
        *slot = calloc(1, sizeof(**slot));
        if (*slot == NULL) {
            nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
            return NS_ERR_NOMEM;
        }
        (*slot)->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)*slot;
        if ((*slot)->rng == 0)
            (*slot)->rng = 0x9e3779b97f4a7c15ull;
    }
    nsc_sync *s = *slot;
    if (s->active) {
        nsc_set_error(err, NS_ERR_STATE, 0, "a sync is already running on this client");
        return NS_ERR_STATE;
    }
    ns_conn_state cs = nsc_conn_state(c);
    if (cs == NS_CONN_CONNECTING) {
        nsc_set_error(err, NS_ERR_STATE, 0, "a connect is in progress");
        return NS_ERR_STATE;
    }
    uint64_t rng = s->rng;
    memset(s, 0, sizeof(*s));
    s->rng = rng;
    s->active = true;
    s->watch = o && o->watch;
    s->cb = cb;
    s->ud = ud;
    s->on_event = o ? o->on_event : NULL;
    s->event_ud = o ? o->event_ud : NULL;
    s->st.conflicts_listed = 1;
    s->nplans = nplans;
    s->directory = directory;
    s->page_size = o && o->page_size ? o->page_size : NS_SYNC_STREAM_PAGE_SIZE;
    s->flights_base = nsc_flights(c);
    for (size_t i = 0; i < nplans; i++) {
        for (int k = 0; k < 36; k++) {
            char ch = o->plan_ids[i][k];
            s->plans[i][k] = (ch >= 'A' && ch <= 'F') ? (char)(ch - 'A' + 'a') : ch;
        }
        s->plans[i][36] = '\0';
    }
    /* cb must never run inside this call: start on the loop. */
    s->ph = PH_BACKOFF;
    nsc_wake_after(c, 0, on_backoff, s);
    return NS_OK;
}

int ns_client_sync_stop(ns_client *c)
{
    nsc_sync *s = c ? *nsc_sync_slot(c) : NULL;
    if (s == NULL || !s->active || s->stopping)
        return NS_ERR_STATE;
    if (!s->watch)
        nsc_set_error(&s->failure, NS_ERR_CLOSED, 0, "the sync was stopped");
    if (s->ph == PH_BACKOFF) {
        s->stopping = true;
        nsc_wake_stop(c);
        finish(c, s);
        return NS_OK;
    }
    end_run(c, s, NULL);
    return NS_OK;
}

/* ---- resolving a conflict
 * --------------------------------------------------------------------------------- */

typedef struct {
    ns_resolve_cb cb;
    void *ud;
} resolve_ctx;

static void on_resolved(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp,
                        void *ud)
{
    resolve_ctx *r = ud;
    ns_resolve_cb cb = r->cb;
    void *cud = r->ud;
    free(r);
    if (e) {
        cb(c, e, 0, cud);
        return;
    }
    const Napsync__V1__MutationResult *mr = resp->mutation_result;
    ns_error re;
    if (mr == NULL || mr->outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_UNSPECIFIED) {
        nsc_set_error(&re, NS_ERR_PROTOCOL, 0,
                      "the server answered the resolution with no outcome");
        cb(c, &re, 0, cud);
        return;
    }
    if (mr->outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED) {
        char reason[300];
        snprintf(reason, sizeof(reason), "%s",
                 mr->reject_reason && ns_text_ok(mr->reject_reason, 1024) ? mr->reject_reason
                                                                          : "no reason given");
        nsc_set_error(&re, NS_ERR_SERVER, (int)mr->reject_code,
                      "the server refused the resolution (%s): %s",
                      ns_error_code_name((int)mr->reject_code), reason);
        cb(c, &re, 0, cud);
        return;
    }
    cb(c, NULL, mr->version, cud);
}

/* KEEP or OTHER for "mine": the side this device wrote, else the side this
 * principal wrote (two devices of one person); refused when neither or
 * both sides are ours, since "mine" would then be a guess. */
static int mine_side(const Napsync__V1__Conflict *cf, const ns_identity *id, bool *keep,
                     ns_error *err)
{
    bool kd = cf->kept_device && strcmp(cf->kept_device, id->device_name) == 0;
    bool od = cf->other_device && strcmp(cf->other_device, id->device_name) == 0;
    if (kd != od) {
        *keep = kd;
        return NS_OK;
    }
    bool kp = cf->kept_by && strcmp(cf->kept_by, id->principal_name) == 0;
    bool op = cf->other_by && strcmp(cf->other_by, id->principal_name) == 0;
    if (kp != op) {
        *keep = kp;
        return NS_OK;
    }
    nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                  "conflict %s: the kept value is by %s (%s), the other by %s (%s); this is %s "
                  "(%s), so \"mine\" does not name one side: give the value to keep instead",
                  cf->id, cf->kept_by ? cf->kept_by : "", cf->kept_device ? cf->kept_device : "",
                  cf->other_by ? cf->other_by : "", cf->other_device ? cf->other_device : "",
                  id->principal_name, id->device_name);
    return NS_ERR_INVALID_ARGUMENT;
}

int ns_client_resolve(ns_client *c, const char *conflict_id, ns_take take, const char *value,
                      ns_resolve_cb cb, void *ud, ns_error *err)
{
    int rc = need_store(c, err);
    if (rc != NS_OK)
        return rc;
    if (cb == NULL || conflict_id == NULL || (take == NS_TAKE_VALUE && value == NULL) ||
        (take != NS_TAKE_MINE && take != NS_TAKE_THEIRS && take != NS_TAKE_VALUE)) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                      "ns_client_resolve needs a conflict id, a choice (and a value for "
                      "NS_TAKE_VALUE) and a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    const ns_identity *id = ns_client_identity(c);
    if (id == NULL) {
        nsc_set_error(err, NS_ERR_STATE, 0, "resolving needs a connection to the server");
        return NS_ERR_STATE;
    }
    Napsync__V1__Conflict *cf = NULL;
    if (ns_store_get_conflict(nsc_store(c), conflict_id, &cf, err) != NS_STORE_OK)
        return store_fail(err);
    Napsync__V1__ResolveConflict rcm = NAPSYNC__V1__RESOLVE_CONFLICT__INIT;
    Napsync__V1__Value pbv = NAPSYNC__V1__VALUE__INIT;
    ns_value v;
    bool have_value = false;
    char mid[NS_STORE_UUID_SIZE];
    rc = NS_OK;
    if (cf->resolved) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "conflict %s is already resolved", cf->id);
        rc = NS_ERR_INVALID_ARGUMENT;
    } else if (take == NS_TAKE_VALUE) {
        if (cf->field == NULL || cf->field[0] == '\0') {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                          "conflict %s is about the whole record (edit versus delete): take "
                          "mine or theirs",
                          cf->id);
            rc = NS_ERR_INVALID_ARGUMENT;
        } else {
            const Napsync__V1__Value *like =
                !is_null_pb(cf->kept_value) ? cf->kept_value : cf->other_value;
            ns_field_type ft = {.kind =
                                    is_null_pb(like) ? NS_KIND_TEXT : kind_of_case(like->kind_case),
                                .nullable = true};
            char why[256];
            ns_value_status vs = ns_value_parse(&ft, value, &v, why, sizeof(why));
            if (vs != NS_VALUE_OK) {
                nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "field %s: not a valid %s: %s",
                              cf->field, ns_kind_word(ft.kind), why);
                rc = NS_ERR_INVALID_ARGUMENT;
            } else {
                have_value = true;
                if (ns_value_to_pb(&v, &pbv) != 0) {
                    nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
                    rc = NS_ERR_NOMEM;
                }
                rcm.resolution = NAPSYNC__V1__RESOLUTION__RESOLUTION_VALUE;
                rcm.value = &pbv;
            }
        }
    } else {
        bool keep = false;
        rc = mine_side(cf, id, &keep, err);
        if (take == NS_TAKE_THEIRS)
            keep = !keep;
        rcm.resolution = keep ? NAPSYNC__V1__RESOLUTION__RESOLUTION_KEEP
                              : NAPSYNC__V1__RESOLUTION__RESOLUTION_OTHER;
    }
    resolve_ctx *r = NULL;
    if (rc == NS_OK && ns_store_new_uuid(mid, err) != NS_STORE_OK)
        rc = store_fail(err);
    if (rc == NS_OK && (r = malloc(sizeof(*r))) == NULL) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        rc = NS_ERR_NOMEM;
    }
    if (rc == NS_OK) {
        r->cb = cb;
        r->ud = ud;
        rcm.conflict_id = cf->id;
        rcm.mutation_id = mid;
        Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
        env.body_case = NAPSYNC__V1__ENVELOPE__BODY_RESOLVE_CONFLICT;
        env.resolve_conflict = &rcm;
        rc = nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_MUTATION_RESULT, false, on_resolved,
                         r, err);
        if (rc != NS_OK)
            free(r);
    }
    if (have_value) {
        ns_value_pb_clear(&pbv);
        ns_value_free(&v);
    }
    ns_store_conflict_free(cf);
    return rc;
}

/* ---- blocking forms
 * --------------------------------------------------------------------------------------- */

typedef struct {
    bool done;
    ns_error err;
    ns_sync_stats st;
    uint64_t version;
} sync_waiter;

static void wait_synced(ns_client *c, const ns_error *e, const ns_sync_stats *st, void *ud)
{
    sync_waiter *w = ud;
    w->done = true;
    if (st)
        w->st = *st;
    if (e)
        w->err = *e;
    else
        nsc_hold_frames(c);
}

static void wait_resolved(ns_client *c, const ns_error *e, uint64_t version, void *ud)
{
    sync_waiter *w = ud;
    w->done = true;
    w->version = version;
    if (e)
        w->err = *e;
    else
        nsc_hold_frames(c);
}

static int finish_wait(sync_waiter *w, bool alive, ns_error *err)
{
    if (!w->done)
        nsc_set_error(&w->err, NS_ERR_CLOSED, 0,
                      alive ? "the operation did not complete" : "the client was freed");
    if (err)
        *err = w->err;
    return w->err.status;
}

int ns_client_sync_wait(ns_client *c, const ns_sync_options *o, ns_sync_stats *st, ns_error *err)
{
    int rc = nsc_can_wait(c, err);
    if (rc != NS_OK)
        return rc;
    sync_waiter w;
    memset(&w, 0, sizeof(w));
    rc = ns_client_sync(c, o, wait_synced, &w, err);
    if (rc != NS_OK)
        return rc;
    bool alive = nsc_run_until(c, &w.done);
    if (st)
        *st = w.st;
    return finish_wait(&w, alive, err);
}

int ns_client_resolve_wait(ns_client *c, const char *conflict_id, ns_take take, const char *value,
                           uint64_t *version, ns_error *err)
{
    int rc = nsc_can_wait(c, err);
    if (rc != NS_OK)
        return rc;
    sync_waiter w;
    memset(&w, 0, sizeof(w));
    rc = ns_client_resolve(c, conflict_id, take, value, wait_resolved, &w, err);
    if (rc != NS_OK)
        return rc;
    bool alive = nsc_run_until(c, &w.done);
    rc = finish_wait(&w, alive, err);
    if (rc == NS_OK && version)
        *version = w.version;
    return rc;
}

/* ---- history
 * ---------------------------------------------------------------------------------------- */

/* Longest op, name, time or id accepted from the server in a history page. */
#define HISTORY_MAX_TEXT 1024
/* Longest field name accepted from the server. */
#define HISTORY_MAX_FIELD 64

/* The views of a page and the text forms they point to. */
typedef struct {
    ns_revision_view *revs;
    ns_field_change_view *changes; /* every revision's, one after the other */
    char **text;                   /* 2 per change: before, after */
    size_t ntext;
} history_views;

static void history_views_free(history_views *h)
{
    for (size_t i = 0; i < h->ntext; i++)
        free(h->text[i]);
    free(h->text);
    free(h->changes);
    free(h->revs);
    memset(h, 0, sizeof(*h));
}

static bool wire_text_ok(const char *s, size_t max)
{
    return s != NULL && ns_text_ok(s, max);
}

/* A wire value as text (*out NULL for null), checked as its kind.
 * Returns 0, -1 when it is malformed, -2 when memory ran out. */
static int value_text(const Napsync__V1__Value *pb, char **out)
{
    *out = NULL;
    if (is_null_pb(pb))
        return 0;
    ns_field_type ft = {.kind = kind_of_case(pb->kind_case), .nullable = true};
    ns_value v;
    char why[128];
    ns_value_status vs = ns_value_from_pb(pb, &ft, &v, why, sizeof(why));
    if (vs != NS_VALUE_OK)
        return vs == NS_VALUE_NOMEM ? -2 : -1;
    *out = ns_value_format(&v);
    ns_value_free(&v);
    return *out ? 0 : -2;
}

/* One change's values as text (into text[0] and text[1], which the caller
 * frees either way) and their kind. Returns as value_text. */
static int change_make(const Napsync__V1__FieldChange *fc, ns_field_change_view *v, char **text)
{
    if (fc == NULL || !wire_text_ok(fc->name, HISTORY_MAX_FIELD) || fc->name[0] == '\0')
        return -1;
    bool bn = is_null_pb(fc->before), an = is_null_pb(fc->after);
    if (!bn && !an && fc->before->kind_case != fc->after->kind_case)
        return -1;
    int rc = value_text(fc->before, &text[0]);
    if (rc == 0)
        rc = value_text(fc->after, &text[1]);
    if (rc != 0)
        return rc;
    v->name = fc->name;
    v->kind = bn && an
                  ? "null"
                  : ns_kind_word(kind_of_case(bn ? fc->after->kind_case : fc->before->kind_case));
    v->before = text[0];
    v->after = text[1];
    return 0;
}

/* Views of a page, checked: texts bounded, versions newest first and
 * below before_version (if not 0). Returns NS_OK or an error. */
static int history_views_make(const Napsync__V1__HistoryPage *p, uint64_t before_version,
                              history_views *h, ns_error *err)
{
    memset(h, 0, sizeof(*h));
    size_t total = 0;
    for (size_t i = 0; i < p->n_revisions; i++)
        total += p->revisions[i] != NULL ? p->revisions[i]->n_changed_fields : 0;
    h->revs = calloc(p->n_revisions ? p->n_revisions : 1, sizeof(*h->revs));
    h->changes = calloc(total ? total : 1, sizeof(*h->changes));
    h->text = calloc(total ? 2 * total : 1, sizeof(*h->text));
    if (h->revs == NULL || h->changes == NULL || h->text == NULL) {
        history_views_free(h);
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    uint64_t below = before_version;
    size_t k = 0;
    for (size_t i = 0; i < p->n_revisions; i++) {
        const Napsync__V1__Revision *r = p->revisions[i];
        bool ok = r != NULL && r->version > 0 && (below == 0 || r->version < below) &&
                  wire_text_ok(r->op, HISTORY_MAX_TEXT) &&
                  wire_text_ok(r->changed_by, HISTORY_MAX_TEXT) &&
                  wire_text_ok(r->device, HISTORY_MAX_TEXT) &&
                  wire_text_ok(r->at, HISTORY_MAX_TEXT) &&
                  wire_text_ok(r->mutation_id, HISTORY_MAX_TEXT);
        ns_revision_view *v = &h->revs[i];
        if (ok) {
            below = r->version;
            *v = (ns_revision_view){
                .version = r->version,
                .op = r->op,
                .changed_by = r->changed_by,
                .device = r->device,
                .at = r->at,
                .mutation_id = r->mutation_id,
                .deleted = r->deleted,
                .changes = &h->changes[k],
                .nchanges = r->n_changed_fields,
            };
        }
        for (size_t j = 0; ok && j < r->n_changed_fields; j++, k++) {
            h->ntext = 2 * k + 2;
            int rc = change_make(r->changed_fields[j], &h->changes[k], &h->text[2 * k]);
            if (rc == -2) {
                history_views_free(h);
                nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
                return NS_ERR_NOMEM;
            }
            ok = rc == 0;
        }
        if (!ok) {
            history_views_free(h);
            nsc_set_error(err, NS_ERR_PROTOCOL, 0,
                          "the server sent a malformed history page (revision %zu)", i + 1);
            return NS_ERR_PROTOCOL;
        }
    }
    return NS_OK;
}

typedef struct {
    ns_history_cb cb;
    void *ud;
    uint64_t before_version;
} history_req;

static void on_history(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp, void *ud)
{
    history_req *r = ud;
    history_req q = *r;
    free(r);
    if (e) {
        q.cb(c, e, NULL, q.ud);
        return;
    }
    const Napsync__V1__HistoryPage *p = resp->history_page;
    ns_error he;
    history_views h;
    if (p == NULL) {
        nsc_set_error(&he, NS_ERR_PROTOCOL, 0, "the server sent an empty history answer");
        q.cb(c, &he, NULL, q.ud);
        return;
    }
    if (history_views_make(p, q.before_version, &h, &he) != NS_OK) {
        q.cb(c, &he, NULL, q.ud);
        return;
    }
    ns_history_page page = {.revisions = h.revs, .n = p->n_revisions, .more = p->more};
    q.cb(c, NULL, &page, q.ud);
    history_views_free(&h);
}

int ns_client_history(ns_client *c, const char *entity_type, const char *record_id,
                      uint64_t before_version, uint32_t limit, ns_history_cb cb, void *ud,
                      ns_error *err)
{
    if (c == NULL || entity_type == NULL || record_id == NULL || cb == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                      "ns_client_history needs a client, a type, a record id and a callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (!uuid_shape(record_id)) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "record id: not a UUID");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (!field_name_ok(entity_type, strlen(entity_type))) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                      "type: not a type name (plan, indicator, indicator_report, ...)");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (ns_client_identity(c) == NULL) {
        nsc_set_error(err, NS_ERR_STATE, 0, "the history needs a connection to the server");
        return NS_ERR_STATE;
    }
    history_req *r = malloc(sizeof(*r));
    if (r == NULL) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    *r = (history_req){.cb = cb, .ud = ud, .before_version = before_version};
    Napsync__V1__History hm = NAPSYNC__V1__HISTORY__INIT;
    hm.entity_type = (char *)entity_type;
    hm.record_id = (char *)record_id;
    hm.before_version = before_version;
    hm.limit = limit;
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_HISTORY;
    env.history = &hm;
    int rc =
        nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_HISTORY_PAGE, false, on_history, r, err);
    if (rc != NS_OK)
        free(r);
    return rc;
}

typedef struct {
    bool done;
    ns_error err;
    ns_revision_fn fn;
    void *ud;
    int more;
} history_waiter;

static void wait_history(ns_client *c, const ns_error *e, const ns_history_page *page, void *ud)
{
    history_waiter *w = ud;
    w->done = true;
    if (e) {
        w->err = *e;
        return;
    }
    nsc_hold_frames(c);
    w->more = page->more;
    for (size_t i = 0; i < page->n; i++)
        if (w->fn != NULL && w->fn(&page->revisions[i], w->ud) != 0)
            break;
}

int ns_client_history_wait(ns_client *c, const char *entity_type, const char *record_id,
                           uint64_t before_version, uint32_t limit, ns_revision_fn fn, void *ud,
                           int *more, ns_error *err)
{
    int rc = nsc_can_wait(c, err);
    if (rc != NS_OK)
        return rc;
    history_waiter w;
    memset(&w, 0, sizeof(w));
    w.fn = fn;
    w.ud = ud;
    rc = ns_client_history(c, entity_type, record_id, before_version, limit, wait_history, &w, err);
    if (rc != NS_OK)
        return rc;
    bool alive = nsc_run_until(c, &w.done);
    if (!w.done)
        nsc_set_error(&w.err, NS_ERR_CLOSED, 0,
                      alive ? "the operation did not complete" : "the client was freed");
    if (err)
        *err = w.err;
    if (w.err.status == NS_OK && more)
        *more = w.more;
    return w.err.status;
}
