/* libnapsync: requests that go straight to the server, past the device
 * store. ns_client_push_batch sends a batch of mutations in one Push with
 * a mode (apply, dry run, atomic) and hands back every answer, field at
 * fault included; ns_client_pull_plan streams every record of one plan,
 * page by page. An import (which needs the server's verdict before it
 * commits to anything) and an export are built on these two.
 *
 * Everything from the server is checked before the caller sees it:
 * answers match the mutations one for one, texts are bounded UTF-8,
 * values are valid for their kind. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "envelope.h"
#include "fields_pb.h"
#include "napsync.h"
#include "store.h"
#include "value.h"

/* Longest reason, field name, time or name accepted from the server. */
#define DIRECT_MAX_TEXT 2048
/* Longest field or type name (as the store and the server take them). */
#define DIRECT_MAX_NAME 63
/* Records asked for per page of a plan pull (the server's default). */
#define DIRECT_PAGE_SIZE 500u
/* Frame header: the 4-byte length. */
#define DIRECT_FRAME_HEADER 4u

/* ---- helpers -------------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > DIRECT_MAX_NAME || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* The kind words of ns_field_view. */
static const struct {
    const char *word;
    ns_kind kind;
} kinds[] = {
    {"bool", NS_KIND_BOOL}, {"int", NS_KIND_INT},   {"decimal", NS_KIND_DECIMAL},
    {"text", NS_KIND_TEXT}, {"date", NS_KIND_DATE}, {"set", NS_KIND_TEXT_SET},
    {"ref", NS_KIND_REF},
};

static bool kind_from_word(const char *w, ns_kind *k, bool *is_null)
{
    *is_null = false;
    if (w != NULL && strcmp(w, "null") == 0) {
        *is_null = true;
        *k = NS_KIND_TEXT;
        return true;
    }
    for (size_t i = 0; w != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(w, kinds[i].word) == 0) {
            *k = kinds[i].kind;
            return true;
        }
    }
    return false;
}

static const char *word_of_kind(ns_kind k)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kinds[i].kind == k)
            return kinds[i].word;
    return "text";
}

static bool is_null_pb(const Napsync__V1__Value *v)
{
    return v == NULL || v->kind_case == NAPSYNC__V1__VALUE__KIND__NOT_SET ||
           v->kind_case == NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
}

static bool kind_of_case(Napsync__V1__Value__KindCase c, ns_kind *k)
{
    switch (c) {
    case NAPSYNC__V1__VALUE__KIND_BOOL_VALUE:
        *k = NS_KIND_BOOL;
        return true;
    case NAPSYNC__V1__VALUE__KIND_INT_VALUE:
        *k = NS_KIND_INT;
        return true;
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        *k = NS_KIND_DECIMAL;
        return true;
    case NAPSYNC__V1__VALUE__KIND_TEXT_VALUE:
        *k = NS_KIND_TEXT;
        return true;
    case NAPSYNC__V1__VALUE__KIND_DATE_VALUE:
        *k = NS_KIND_DATE;
        return true;
    case NAPSYNC__V1__VALUE__KIND_SET_VALUE:
        *k = NS_KIND_TEXT_SET;
        return true;
    case NAPSYNC__V1__VALUE__KIND_REF_VALUE:
        *k = NS_KIND_REF;
        return true;
    default:
        return false;
    }
}

static bool wire_text_ok(const char *s)
{
    return s != NULL && ns_text_ok(s, DIRECT_MAX_TEXT);
}

/* ---- push a batch ------------------------------------------------------------------ */

/* What one mutation of a batch holds while it is being packed. */
typedef struct {
    Napsync__V1__Mutation pb;
    Napsync__V1__FieldSet fs;
    Napsync__V1__Field *field_msgs;
    Napsync__V1__Field **fields;
    Napsync__V1__Value *value_msgs;
    ns_value *values;
    size_t nvalues; /* converted so far: what to free */
    char mid[NS_STORE_UUID_SIZE];
    char rid[NS_STORE_UUID_SIZE];
} packed_mut;

/* What the answer is checked against: the mutation ids sent. */
typedef struct {
    ns_push_batch_cb cb;
    void *ud;
    size_t n;
    char (*mids)[NS_STORE_UUID_SIZE];
} batch_req;

static void packed_free(packed_mut *pm, size_t n)
{
    for (size_t i = 0; pm != NULL && i < n; i++) {
        for (size_t j = 0; j < pm[i].nvalues; j++) {
            ns_value_pb_clear(&pm[i].value_msgs[j]);
            ns_value_free(&pm[i].values[j]);
        }
        free(pm[i].values);
        free(pm[i].value_msgs);
        free(pm[i].field_msgs);
        free(pm[i].fields);
    }
    free(pm);
}

/* Checks mutation m (index i) and fills pm. Returns NS_OK or an error. */
static int pack_one(const ns_mutation *m, size_t i, packed_mut *pm, ns_error *err)
{
    const char *type = m->entity_type ? m->entity_type : "";
    if (!name_ok(m->entity_type)) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                      "mutation %zu: the type is not a type name (plan, indicator, ...)", i);
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (!ns_uuid_canon(m->record_id, pm->rid)) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "mutation %zu (%s): record id: not a UUID",
                      i, type);
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (m->mutation_id != NULL) {
        if (!ns_uuid_canon(m->mutation_id, pm->mid)) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                          "mutation %zu (%s %s): mutation id: not a UUID", i, type, pm->rid);
            return NS_ERR_INVALID_ARGUMENT;
        }
    } else if (ns_store_new_uuid(pm->mid, err) != NS_STORE_OK) {
        return NS_ERR_STATE;
    }
    if (m->op != NS_MUTATION_CREATE && m->op != NS_MUTATION_UPDATE && m->op != NS_MUTATION_DELETE) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                      "mutation %zu (%s %s): op must be create, update or delete", i, type,
                      pm->rid);
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (m->nfields > NS_STORE_MAX_FIELDS || (m->nfields > 0 && m->fields == NULL)) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                      "mutation %zu (%s %s): at most %d fields, given as an array", i, type,
                      pm->rid, NS_STORE_MAX_FIELDS);
        return NS_ERR_INVALID_ARGUMENT;
    }
    size_t nf = m->nfields ? m->nfields : 1;
    pm->values = calloc(nf, sizeof(*pm->values));
    pm->value_msgs = calloc(nf, sizeof(*pm->value_msgs));
    pm->field_msgs = calloc(nf, sizeof(*pm->field_msgs));
    pm->fields = calloc(nf, sizeof(*pm->fields));
    if (pm->values == NULL || pm->value_msgs == NULL || pm->field_msgs == NULL ||
        pm->fields == NULL) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    for (size_t j = 0; j < m->nfields; j++) {
        const ns_field_view *f = &m->fields[j];
        ns_kind k;
        bool is_null;
        if (!name_ok(f->name)) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                          "mutation %zu (%s %s): field %zu: not a field name", i, type, pm->rid, j);
            return NS_ERR_INVALID_ARGUMENT;
        }
        for (size_t d = 0; d < j; d++) {
            if (strcmp(m->fields[d].name, f->name) == 0) {
                nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                              "mutation %zu (%s %s): field %s given twice", i, type, pm->rid,
                              f->name);
                return NS_ERR_INVALID_ARGUMENT;
            }
        }
        if (!kind_from_word(f->kind, &k, &is_null)) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                          "mutation %zu (%s %s): field %s: kind must be bool, int, decimal, "
                          "text, date, set, ref or null",
                          i, type, pm->rid, f->name);
            return NS_ERR_INVALID_ARGUMENT;
        }
        ns_field_type ft = {.kind = k, .nullable = true};
        char why[256];
        ns_value_status vs =
            is_null ? NS_VALUE_OK : ns_value_parse(&ft, f->value, &pm->values[j], why, sizeof(why));
        if (is_null)
            ns_value_init_null(&pm->values[j], k);
        pm->nvalues = j + 1;
        if (vs == NS_VALUE_NOMEM) {
            nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
            return NS_ERR_NOMEM;
        }
        if (vs != NS_VALUE_OK) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                          "mutation %zu (%s %s): field %s: not a valid %s: %s", i, type, pm->rid,
                          f->name, f->kind, why);
            return NS_ERR_INVALID_ARGUMENT;
        }
        napsync__v1__value__init(&pm->value_msgs[j]);
        if (ns_value_to_pb(&pm->values[j], &pm->value_msgs[j]) != 0) {
            nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
            return NS_ERR_NOMEM;
        }
        napsync__v1__field__init(&pm->field_msgs[j]);
        pm->field_msgs[j].name = (char *)f->name;
        pm->field_msgs[j].value = &pm->value_msgs[j];
        pm->fields[j] = &pm->field_msgs[j];
    }
    napsync__v1__field_set__init(&pm->fs);
    pm->fs.fields = pm->fields;
    pm->fs.n_fields = m->nfields;
    napsync__v1__mutation__init(&pm->pb);
    pm->pb.mutation_id = pm->mid;
    pm->pb.entity_type = (char *)m->entity_type;
    pm->pb.record_id = pm->rid;
    pm->pb.base_version = m->base_version;
    pm->pb.op = (Napsync__V1__MutationOp)m->op;
    pm->pb.fields = &pm->fs;
    return NS_OK;
}

/* The answers as views, checked against the batch. Returns NS_OK, or
 * NS_ERR_PROTOCOL / NS_ERR_NOMEM with err set; *out is freed by the
 * caller either way. */
static int results_make(const batch_req *q, const Napsync__V1__PushResult *pr,
                        ns_mutation_result **out, ns_error *err)
{
    *out = NULL;
    if (pr == NULL || pr->n_results != q->n) {
        nsc_set_error(err, NS_ERR_PROTOCOL, 0, "the server answered %zu mutations with %zu results",
                      q->n, pr ? pr->n_results : 0);
        return NS_ERR_PROTOCOL;
    }
    ns_mutation_result *rs = calloc(q->n, sizeof(*rs));
    if (rs == NULL) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    *out = rs;
    for (size_t i = 0; i < q->n; i++) {
        const Napsync__V1__MutationResult *r = pr->results[i];
        char mid[NS_STORE_UUID_SIZE];
        bool ok =
            r != NULL && ns_uuid_canon(r->mutation_id, mid) && strcmp(mid, q->mids[i]) == 0 &&
            r->outcome >= NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED &&
            r->outcome <= NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED &&
            (r->reject_reason == NULL || wire_text_ok(r->reject_reason)) &&
            (r->reject_field == NULL || r->reject_field[0] == '\0' || name_ok(r->reject_field));
        for (size_t k = 0; ok && k < r->n_conflict_ids; k++)
            ok = ns_uuid_canon(r->conflict_ids[k], mid);
        if (!ok) {
            nsc_set_error(err, NS_ERR_PROTOCOL, 0,
                          "the server's answer %zu is malformed or not for mutation %s", i,
                          q->mids[i]);
            return NS_ERR_PROTOCOL;
        }
        bool rejected = r->outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED;
        rs[i] = (ns_mutation_result){
            .mutation_id = q->mids[i],
            .outcome = (ns_outcome)r->outcome,
            .version = rejected ? 0 : r->version,
            .reject_code = rejected ? ns_error_code_name((int)r->reject_code) : "",
            .reject_reason = rejected && r->reject_reason ? r->reject_reason : "",
            .reject_field = rejected && r->reject_field ? r->reject_field : "",
            .conflict_ids = (const char *const *)r->conflict_ids,
            .nconflicts = r->n_conflict_ids,
        };
    }
    return NS_OK;
}

static void on_batch(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp, void *ud)
{
    batch_req *q = ud;
    if (e) {
        q->cb(c, e, NULL, 0, q->ud);
    } else {
        ns_mutation_result *rs = NULL;
        ns_error re;
        if (results_make(q, resp->push_result, &rs, &re) != NS_OK)
            q->cb(c, &re, NULL, 0, q->ud);
        else
            q->cb(c, NULL, rs, q->n, q->ud);
        free(rs);
    }
    free(q->mids);
    free(q);
}

int ns_client_push_batch(ns_client *c, ns_push_mode mode, const ns_mutation *m, size_t n,
                         ns_push_batch_cb cb, void *ud, ns_error *err)
{
    if (c == NULL || cb == NULL || m == NULL || n == 0 || n > NS_MAX_PUSH_BATCH) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                      "ns_client_push_batch needs a client, 1 to %d mutations and a callback",
                      NS_MAX_PUSH_BATCH);
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (mode != NS_PUSH_APPLY && mode != NS_PUSH_DRY_RUN && mode != NS_PUSH_ATOMIC) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "mode: apply, dry run or atomic");
        return NS_ERR_INVALID_ARGUMENT;
    }
    const ns_identity *id = ns_client_identity(c);
    if (id == NULL) {
        nsc_set_error(err, NS_ERR_STATE, 0, "pushing a batch needs a connection to the server");
        return NS_ERR_STATE;
    }
    packed_mut *pm = calloc(n, sizeof(*pm));
    Napsync__V1__Mutation **muts = calloc(n, sizeof(*muts));
    batch_req *q = calloc(1, sizeof(*q));
    int rc = NS_OK;
    if (pm == NULL || muts == NULL || q == NULL ||
        (q->mids = calloc(n, sizeof(*q->mids))) == NULL) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        rc = NS_ERR_NOMEM;
    }
    for (size_t i = 0; rc == NS_OK && i < n; i++) {
        rc = pack_one(&m[i], i, &pm[i], err);
        muts[i] = &pm[i].pb;
        if (rc == NS_OK)
            memcpy(q->mids[i], pm[i].mid, sizeof(q->mids[i]));
    }
    Napsync__V1__Push push = NAPSYNC__V1__PUSH__INIT;
    push.mutations = muts;
    push.n_mutations = n;
    push.mode = (Napsync__V1__PushMode)mode;
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PUSH;
    env.push = &push;
    if (rc == NS_OK) {
        /* The request id adds at most 11 bytes to the packed size. */
        size_t size = napsync__v1__envelope__get_packed_size(&env) + 11;
        uint32_t max = id->max_frame_size;
        if (max != 0 && size > max) {
            nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                          "the batch of %zu mutations takes %zu bytes; the server accepts at most "
                          "%" PRIu32 " per request (send fewer at a time, or raise the server's "
                          "max_frame_size)",
                          n, size + DIRECT_FRAME_HEADER, max);
            rc = NS_ERR_INVALID_ARGUMENT;
        }
    }
    if (rc == NS_OK) {
        q->cb = cb;
        q->ud = ud;
        q->n = n;
        rc = nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_PUSH_RESULT, false, on_batch, q, err);
    }
    packed_free(pm, n);
    free(muts);
    if (rc != NS_OK && q != NULL) {
        free(q->mids);
        free(q);
    }
    return rc;
}

typedef struct {
    bool done;
    ns_error err;
    ns_mutation_result_fn fn;
    void *ud;
} batch_waiter;

static void wait_batch(ns_client *c, const ns_error *e, const ns_mutation_result *rs, size_t n,
                       void *ud)
{
    batch_waiter *w = ud;
    w->done = true;
    if (e) {
        w->err = *e;
        return;
    }
    nsc_hold_frames(c);
    for (size_t i = 0; i < n; i++)
        if (w->fn != NULL && w->fn(i, &rs[i], w->ud) != 0)
            break;
}

int ns_client_push_batch_wait(ns_client *c, ns_push_mode mode, const ns_mutation *m, size_t n,
                              ns_mutation_result_fn fn, void *ud, ns_error *err)
{
    int rc = nsc_can_wait(c, err);
    if (rc != NS_OK)
        return rc;
    batch_waiter w;
    memset(&w, 0, sizeof(w));
    w.fn = fn;
    w.ud = ud;
    rc = ns_client_push_batch(c, mode, m, n, wait_batch, &w, err);
    if (rc != NS_OK)
        return rc;
    bool alive = nsc_run_until(c, &w.done);
    if (!w.done)
        nsc_set_error(&w.err, NS_ERR_CLOSED, 0,
                      alive ? "the operation did not complete" : "the client was freed");
    if (err)
        *err = w.err;
    return w.err.status;
}

/* ---- pull a whole plan ------------------------------------------------------------ */

typedef struct {
    ns_record_fn fn;
    void *ud;
    ns_done_cb cb;
    void *cb_ud;
    char plan[NS_STORE_UUID_SIZE];
    char cursor[NS_STORE_CURSOR_SIZE];
    Napsync__V1__Scope scope;
    Napsync__V1__Scope *scopes[1];
} pull_req;

/* One record as a view (fields as text forms) handed to fn. Returns 0
 * (go on), 1 (fn stopped), -1 (malformed: err set) or -2 (no memory). */
static int record_call(const pull_req *q, const Napsync__V1__Record *r, ns_error *err)
{
    char id[NS_STORE_UUID_SIZE], tenant[NS_STORE_UUID_SIZE];
    size_t nf = r && r->fields ? r->fields->n_fields : 0;
    if (r == NULL || !name_ok(r->entity_type) || !ns_uuid_canon(r->id, id) ||
        !ns_uuid_canon(r->tenant_id, tenant) || strcmp(tenant, q->plan) != 0 || r->version == 0 ||
        nf > NS_STORE_MAX_FIELDS || (r->changed_by && !wire_text_ok(r->changed_by)) ||
        (r->changed_at && !wire_text_ok(r->changed_at))) {
        nsc_set_error(err, NS_ERR_PROTOCOL, 0,
                      "the server sent a malformed record (or one of another plan) in a pull "
                      "of plan %s",
                      q->plan);
        return -1;
    }
    ns_field_view *views = calloc(nf ? nf : 1, sizeof(*views));
    char **text = calloc(nf ? nf : 1, sizeof(*text));
    int rc = views && text ? 0 : -2;
    for (size_t i = 0; rc == 0 && i < nf; i++) {
        const Napsync__V1__Field *f = r->fields->fields[i];
        ns_kind k = NS_KIND_TEXT;
        if (f == NULL || !name_ok(f->name) ||
            (!is_null_pb(f->value) && !kind_of_case(f->value->kind_case, &k))) {
            rc = -1;
            break;
        }
        for (size_t d = 0; d < i; d++)
            if (strcmp(views[d].name, f->name) == 0)
                rc = -1;
        views[i].name = f->name;
        views[i].kind = is_null_pb(f->value) ? "null" : word_of_kind(k);
        if (rc == 0 && !is_null_pb(f->value)) {
            ns_field_type ft = {.kind = k, .nullable = true};
            ns_value v;
            char why[128];
            ns_value_status vs = ns_value_from_pb(f->value, &ft, &v, why, sizeof(why));
            if (vs == NS_VALUE_NOMEM)
                rc = -2;
            else if (vs != NS_VALUE_OK)
                rc = -1;
            else if ((text[i] = ns_value_format(&v)) == NULL)
                rc = -2;
            if (vs == NS_VALUE_OK)
                ns_value_free(&v);
        }
        views[i].value = text[i];
    }
    if (rc == 0) {
        ns_record_view rv = {
            .entity_type = r->entity_type,
            .id = id,
            .version = r->version,
            .deleted = r->deleted,
            .tenant_id = tenant,
            .changed_by = r->changed_by ? r->changed_by : "",
            .changed_at = r->changed_at ? r->changed_at : "",
            .fields = views,
            .nfields = nf,
        };
        rc = q->fn(&rv, q->ud) != 0 ? 1 : 0;
    } else if (rc == -1) {
        nsc_set_error(err, NS_ERR_PROTOCOL, 0,
                      "the server sent a malformed field in %s %s of plan %s", r->entity_type, id,
                      q->plan);
    } else {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
    }
    for (size_t i = 0; text != NULL && i < nf; i++)
        free(text[i]);
    free(text);
    free(views);
    return rc;
}

static int pull_send(ns_client *c, pull_req *q, ns_error *err);

static void pull_end(ns_client *c, pull_req *q, const ns_error *e)
{
    ns_done_cb cb = q->cb;
    void *ud = q->cb_ud;
    free(q);
    cb(c, e, ud);
}

static void on_plan_page(ns_client *c, const ns_error *e, const Napsync__V1__Envelope *resp,
                         void *ud)
{
    pull_req *q = ud;
    if (e) {
        pull_end(c, q, e);
        return;
    }
    const Napsync__V1__ChangePage *p = resp->change_page;
    ns_error pe;
    if (p == NULL || p->next_cursor == NULL || strlen(p->next_cursor) >= sizeof(q->cursor) ||
        !ns_text_ok(p->next_cursor, 1024) || p->n_records > NS_STORE_MAX_PAGE_RECORDS) {
        nsc_set_error(&pe, NS_ERR_PROTOCOL, 0, "the server sent a malformed page of plan %s",
                      q->plan);
        pull_end(c, q, &pe);
        return;
    }
    for (size_t i = 0; i < p->n_records; i++) {
        int rc = record_call(q, p->records[i], &pe);
        if (rc < 0) {
            pull_end(c, q, &pe);
            return;
        }
        if (rc == 1) {
            pull_end(c, q, NULL);
            return;
        }
    }
    if (!p->more) {
        pull_end(c, q, NULL);
        return;
    }
    snprintf(q->cursor, sizeof(q->cursor), "%s", p->next_cursor);
    if (pull_send(c, q, &pe) != NS_OK)
        pull_end(c, q, &pe);
}

static int pull_send(ns_client *c, pull_req *q, ns_error *err)
{
    Napsync__V1__Pull pull = NAPSYNC__V1__PULL__INIT;
    pull.cursor = q->cursor;
    pull.scopes = q->scopes;
    pull.n_scopes = 1;
    pull.page_size = DIRECT_PAGE_SIZE;
    Napsync__V1__Envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PULL;
    env.pull = &pull;
    return nsc_request(c, &env, NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE, false, on_plan_page, q,
                       err);
}

int ns_client_pull_plan(ns_client *c, const char *plan_id, ns_record_fn fn, void *ud, ns_done_cb cb,
                        void *cb_ud, ns_error *err)
{
    if (c == NULL || plan_id == NULL || fn == NULL || cb == NULL) {
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0,
                      "ns_client_pull_plan needs a client, a plan id, a record function and a "
                      "callback");
        return NS_ERR_INVALID_ARGUMENT;
    }
    pull_req *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        nsc_set_error(err, NS_ERR_NOMEM, 0, "out of memory");
        return NS_ERR_NOMEM;
    }
    if (!ns_uuid_canon(plan_id, q->plan)) {
        free(q);
        nsc_set_error(err, NS_ERR_INVALID_ARGUMENT, 0, "plan id: not a UUID");
        return NS_ERR_INVALID_ARGUMENT;
    }
    if (ns_client_identity(c) == NULL) {
        free(q);
        nsc_set_error(err, NS_ERR_STATE, 0, "pulling a plan needs a connection to the server");
        return NS_ERR_STATE;
    }
    q->fn = fn;
    q->ud = ud;
    q->cb = cb;
    q->cb_ud = cb_ud;
    napsync__v1__scope__init(&q->scope);
    q->scope.kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    q->scope.plan_id = q->plan;
    q->scopes[0] = &q->scope;
    int rc = pull_send(c, q, err);
    if (rc != NS_OK)
        free(q);
    return rc;
}

typedef struct {
    bool done;
    ns_error err;
} pull_waiter;

static void wait_pulled(ns_client *c, const ns_error *e, void *ud)
{
    pull_waiter *w = ud;
    w->done = true;
    if (e)
        w->err = *e;
    else
        nsc_hold_frames(c);
}

int ns_client_pull_plan_wait(ns_client *c, const char *plan_id, ns_record_fn fn, void *ud,
                             ns_error *err)
{
    int rc = nsc_can_wait(c, err);
    if (rc != NS_OK)
        return rc;
    pull_waiter w;
    memset(&w, 0, sizeof(w));
    rc = ns_client_pull_plan(c, plan_id, fn, ud, wait_pulled, &w, err);
    if (rc != NS_OK)
        return rc;
    bool alive = nsc_run_until(c, &w.done);
    if (!w.done)
        nsc_set_error(&w.err, NS_ERR_CLOSED, 0,
                      alive ? "the operation did not complete" : "the client was freed");
    if (err)
        *err = w.err;
    return w.err.status;
}
