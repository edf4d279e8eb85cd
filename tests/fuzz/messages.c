/* Valid protocol messages for seeds and setup: see messages.h. */
#include "messages.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "fixture.h"
#include "frame.h"
#include "version.h"

struct nsf_arena {
    void **blocks;
    size_t n, cap;
};

nsf_arena *nsf_arena_new(void)
{
    nsf_arena *a = calloc(1, sizeof(*a));
    if (a == NULL)
        nsf_die("out of memory");
    return a;
}

void nsf_arena_free(nsf_arena *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
    free(a);
}

void *nsf_alloc(nsf_arena *a, size_t n)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        void **b = realloc(a->blocks, cap * sizeof(*b));
        if (b == NULL)
            nsf_die("out of memory");
        a->blocks = b;
        a->cap = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (p == NULL)
        nsf_die("out of memory");
    a->blocks[a->n++] = p;
    return p;
}

char *nsf_str(nsf_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = nsf_alloc(a, n);
    memcpy(p, s, n);
    return p;
}

static Napsync__V1__Value *value(nsf_arena *a, Napsync__V1__Value__KindCase k)
{
    Napsync__V1__Value *v = nsf_alloc(a, sizeof(*v));
    napsync__v1__value__init(v);
    v->kind_case = k;
    return v;
}

Napsync__V1__Value *nsf_null(nsf_arena *a)
{
    Napsync__V1__Value *v = value(a, NAPSYNC__V1__VALUE__KIND_NULL_VALUE);
    v->null_value = 1;
    return v;
}

Napsync__V1__Value *nsf_bool(nsf_arena *a, int b)
{
    Napsync__V1__Value *v = value(a, NAPSYNC__V1__VALUE__KIND_BOOL_VALUE);
    v->bool_value = b != 0;
    return v;
}

Napsync__V1__Value *nsf_int(nsf_arena *a, int64_t i)
{
    Napsync__V1__Value *v = value(a, NAPSYNC__V1__VALUE__KIND_INT_VALUE);
    v->int_value = i;
    return v;
}

Napsync__V1__Value *nsf_dec(nsf_arena *a, const char *s)
{
    Napsync__V1__Value *v = value(a, NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE);
    v->decimal_value = nsf_str(a, s);
    return v;
}

Napsync__V1__Value *nsf_text(nsf_arena *a, const char *s)
{
    Napsync__V1__Value *v = value(a, NAPSYNC__V1__VALUE__KIND_TEXT_VALUE);
    v->text_value = nsf_str(a, s);
    return v;
}

Napsync__V1__Value *nsf_date(nsf_arena *a, const char *s)
{
    Napsync__V1__Value *v = value(a, NAPSYNC__V1__VALUE__KIND_DATE_VALUE);
    v->date_value = nsf_str(a, s);
    return v;
}

Napsync__V1__Value *nsf_ref(nsf_arena *a, const char *s)
{
    Napsync__V1__Value *v = value(a, NAPSYNC__V1__VALUE__KIND_REF_VALUE);
    v->ref_value = nsf_str(a, s);
    return v;
}

Napsync__V1__Value *nsf_set(nsf_arena *a, size_t n, const char *const *items)
{
    Napsync__V1__Value *v = value(a, NAPSYNC__V1__VALUE__KIND_SET_VALUE);
    Napsync__V1__TextSet *set = nsf_alloc(a, sizeof(*set));
    napsync__v1__text_set__init(set);
    set->n_items = n;
    set->items = nsf_alloc(a, n * sizeof(char *));
    for (size_t i = 0; i < n; i++)
        set->items[i] = nsf_str(a, items[i]);
    v->set_value = set;
    return v;
}

Napsync__V1__FieldSet *nsf_fields(nsf_arena *a, size_t n, ...)
{
    Napsync__V1__FieldSet *fs = nsf_alloc(a, sizeof(*fs));
    napsync__v1__field_set__init(fs);
    fs->n_fields = n;
    fs->fields = nsf_alloc(a, n * sizeof(Napsync__V1__Field *));
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        Napsync__V1__Field *f = nsf_alloc(a, sizeof(*f));
        napsync__v1__field__init(f);
        f->name = nsf_str(a, va_arg(ap, const char *));
        f->value = va_arg(ap, Napsync__V1__Value *);
        fs->fields[i] = f;
    }
    va_end(ap);
    return fs;
}

Napsync__V1__FieldSet *nsf_plan_fields(nsf_arena *a, const char *title, const char *status)
{
    static const char *const tags[] = {"participation", "protection"};
    return nsf_fields(a, 6, "title", nsf_text(a, title), "status", nsf_text(a, status), "kind",
                      nsf_text(a, "nap"), "period_start", nsf_date(a, "2024-01-01"), "period_end",
                      nsf_date(a, "2028-12-31"), "tags", nsf_set(a, 2, tags));
}

Napsync__V1__FieldSet *nsf_indicator_fields(nsf_arena *a, const char *plan_id, const char *title)
{
    return nsf_fields(a, 5, "plan_id", nsf_ref(a, plan_id), "title", nsf_text(a, title),
                      "value_type", nsf_text(a, "number"), "baseline", nsf_dec(a, "12.5"),
                      "baseline_date", nsf_date(a, "2023-12-31"));
}

Napsync__V1__Mutation *nsf_mutation(nsf_arena *a, const char *mutation_id, const char *type,
                                    const char *record_id, Napsync__V1__MutationOp op,
                                    uint64_t base_version, Napsync__V1__FieldSet *fields)
{
    Napsync__V1__Mutation *m = nsf_alloc(a, sizeof(*m));
    napsync__v1__mutation__init(m);
    m->mutation_id = nsf_str(a, mutation_id);
    m->entity_type = nsf_str(a, type);
    m->record_id = nsf_str(a, record_id);
    m->op = op;
    m->base_version = base_version;
    m->fields = fields;
    return m;
}

Napsync__V1__Scope *nsf_plan_scope(nsf_arena *a, const char *plan_id)
{
    Napsync__V1__Scope *s = nsf_alloc(a, sizeof(*s));
    napsync__v1__scope__init(s);
    s->kind_case = NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
    s->plan_id = nsf_str(a, plan_id);
    return s;
}

Napsync__V1__Scope *nsf_org_scope(nsf_arena *a, const char *org_id)
{
    Napsync__V1__Scope *s = nsf_alloc(a, sizeof(*s));
    napsync__v1__scope__init(s);
    s->kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
    s->organisation_id = nsf_str(a, org_id);
    return s;
}

Napsync__V1__Scope *nsf_directory_scope(nsf_arena *a)
{
    Napsync__V1__Scope *s = nsf_alloc(a, sizeof(*s));
    napsync__v1__scope__init(s);
    s->kind_case = NAPSYNC__V1__SCOPE__KIND_DIRECTORY;
    s->directory = 1;
    return s;
}

ns_envelope *nsf_env(nsf_arena *a, uint64_t request_id)
{
    ns_envelope *e = nsf_alloc(a, sizeof(*e));
    napsync__v1__envelope__init(e);
    e->request_id = request_id;
    return e;
}

ns_envelope *nsf_hello(nsf_arena *a, uint64_t rid, int zstd)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Hello *h = nsf_alloc(a, sizeof(*h));
    napsync__v1__hello__init(h);
    h->min_version = NS_PROTOCOL_VERSION_MIN;
    h->max_version = NS_PROTOCOL_VERSION_MAX;
    h->client_name = nsf_str(a, "napsync-fuzz");
    h->client_version = nsf_str(a, NS_VERSION);
    if (zstd) {
        h->n_compression = 1;
        h->compression = nsf_alloc(a, sizeof(*h->compression));
        h->compression[0] = NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1;
    }
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_HELLO;
    e->hello = h;
    return e;
}

ns_envelope *nsf_ping(nsf_arena *a, uint64_t rid, const char *payload)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Ping *p = nsf_alloc(a, sizeof(*p));
    napsync__v1__ping__init(p);
    p->payload.len = strlen(payload);
    p->payload.data = (uint8_t *)nsf_str(a, payload);
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_PING;
    e->ping = p;
    return e;
}

ns_envelope *nsf_push(nsf_arena *a, uint64_t rid, Napsync__V1__PushMode mode, size_t n,
                      Napsync__V1__Mutation *const *m)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Push *p = nsf_alloc(a, sizeof(*p));
    napsync__v1__push__init(p);
    p->mode = mode;
    p->n_mutations = n;
    p->mutations = nsf_alloc(a, n * sizeof(*p->mutations));
    if (n)
        memcpy(p->mutations, m, n * sizeof(*p->mutations));
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_PUSH;
    e->push = p;
    return e;
}

ns_envelope *nsf_pull(nsf_arena *a, uint64_t rid, const char *cursor, uint32_t page_size,
                      Napsync__V1__Scope *scope)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Pull *p = nsf_alloc(a, sizeof(*p));
    napsync__v1__pull__init(p);
    p->cursor = nsf_str(a, cursor);
    p->page_size = page_size;
    if (scope) {
        p->n_scopes = 1;
        p->scopes = nsf_alloc(a, sizeof(*p->scopes));
        p->scopes[0] = scope;
    }
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_PULL;
    e->pull = p;
    return e;
}

ns_envelope *nsf_subscribe(nsf_arena *a, uint64_t rid, const char *cursor,
                           Napsync__V1__Scope *scope)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Subscribe *s = nsf_alloc(a, sizeof(*s));
    napsync__v1__subscribe__init(s);
    s->cursor = nsf_str(a, cursor);
    if (scope) {
        s->n_scopes = 1;
        s->scopes = nsf_alloc(a, sizeof(*s->scopes));
        s->scopes[0] = scope;
    }
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_SUBSCRIBE;
    e->subscribe = s;
    return e;
}

ns_envelope *nsf_list_conflicts(nsf_arena *a, uint64_t rid, Napsync__V1__Scope *scope,
                                int include_resolved)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__ListConflicts *l = nsf_alloc(a, sizeof(*l));
    napsync__v1__list_conflicts__init(l);
    if (scope) {
        l->n_scopes = 1;
        l->scopes = nsf_alloc(a, sizeof(*l->scopes));
        l->scopes[0] = scope;
    }
    l->include_resolved = include_resolved != 0;
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_LIST_CONFLICTS;
    e->list_conflicts = l;
    return e;
}

ns_envelope *nsf_resolve(nsf_arena *a, uint64_t rid, const char *conflict_id,
                         const char *mutation_id, Napsync__V1__Resolution r,
                         Napsync__V1__Value *value)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__ResolveConflict *rc = nsf_alloc(a, sizeof(*rc));
    napsync__v1__resolve_conflict__init(rc);
    rc->conflict_id = nsf_str(a, conflict_id);
    rc->mutation_id = nsf_str(a, mutation_id);
    rc->resolution = r;
    rc->value = value;
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_RESOLVE_CONFLICT;
    e->resolve_conflict = rc;
    return e;
}

ns_envelope *nsf_history(nsf_arena *a, uint64_t rid, const char *type, const char *record_id,
                         uint64_t before_version, uint32_t limit)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__History *h = nsf_alloc(a, sizeof(*h));
    napsync__v1__history__init(h);
    h->entity_type = nsf_str(a, type);
    h->record_id = nsf_str(a, record_id);
    h->before_version = before_version;
    h->limit = limit;
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_HISTORY;
    e->history = h;
    return e;
}

ns_envelope *nsf_report(nsf_arena *a, uint64_t rid, const char *kind, const char *plan_id,
                        uint32_t year, const char *region_id)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__ReportRequest *r = nsf_alloc(a, sizeof(*r));
    napsync__v1__report_request__init(r);
    r->kind = nsf_str(a, kind);
    r->plan_id = nsf_str(a, plan_id ? plan_id : "");
    r->year = year;
    r->region_id = nsf_str(a, region_id ? region_id : "");
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_REPORT_REQUEST;
    e->report_request = r;
    return e;
}

ns_envelope *nsf_goodbye(nsf_arena *a, uint64_t rid, Napsync__V1__GoodbyeReason reason,
                         const char *message)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Goodbye *g = nsf_alloc(a, sizeof(*g));
    napsync__v1__goodbye__init(g);
    g->reason = reason;
    g->message = nsf_str(a, message);
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_GOODBYE;
    e->goodbye = g;
    return e;
}

ns_envelope *nsf_error(nsf_arena *a, uint64_t rid, Napsync__V1__ErrorCode code, int fatal,
                       const char *message)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Error *err = nsf_alloc(a, sizeof(*err));
    napsync__v1__error__init(err);
    err->code = code;
    err->fatal = fatal != 0;
    err->message = nsf_str(a, message);
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_ERROR;
    e->error = err;
    return e;
}

ns_envelope *nsf_welcome(nsf_arena *a, uint64_t rid, int zstd)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Welcome *w = nsf_alloc(a, sizeof(*w));
    napsync__v1__welcome__init(w);
    w->version = NS_PROTOCOL_VERSION_MAX;
    w->server_name = nsf_str(a, "napsyncd");
    w->server_version = nsf_str(a, NS_VERSION);
    w->session_id = nsf_str(a, "5eed5eed5eed5eed");
    Napsync__V1__Principal *p = nsf_alloc(a, sizeof(*p));
    napsync__v1__principal__init(p);
    p->id = nsf_str(a, "f2000000-0000-4000-8000-000000000001");
    p->name = nsf_str(a, "fuzzer");
    Napsync__V1__Organisation *o = nsf_alloc(a, sizeof(*o));
    napsync__v1__organisation__init(o);
    o->id = nsf_str(a, NSF_ORG_ID);
    o->name = nsf_str(a, "Ministry of Gender Equality and Social Protection");
    o->kind = nsf_str(a, "ministry");
    o->country = nsf_str(a, "ZZ");
    Napsync__V1__Device *d = nsf_alloc(a, sizeof(*d));
    napsync__v1__device__init(d);
    d->id = nsf_str(a, "f2000000-0000-4000-8000-000000000002");
    d->name = nsf_str(a, "fuzz-device");
    w->principal = p;
    w->organisation = o;
    w->device = d;
    w->n_roles = 1;
    w->roles = nsf_alloc(a, sizeof(char *));
    w->roles[0] = nsf_str(a, "coordinator");
    w->max_frame_size = NS_FRAME_DEFAULT_MAX;
    w->idle_timeout_ms = 300000;
    w->compression = zstd ? NAPSYNC__V1__COMPRESSION__COMPRESSION_ZSTD_1
                          : NAPSYNC__V1__COMPRESSION__COMPRESSION_NONE;
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_WELCOME;
    e->welcome = w;
    return e;
}

ns_envelope *nsf_pong(nsf_arena *a, uint64_t rid, const uint8_t *payload, size_t len)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__Pong *p = nsf_alloc(a, sizeof(*p));
    napsync__v1__pong__init(p);
    p->payload.len = len;
    p->payload.data = nsf_alloc(a, len);
    if (len)
        memcpy(p->payload.data, payload, len);
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_PONG;
    e->pong = p;
    return e;
}

Napsync__V1__MutationResult *nsf_result(nsf_arena *a, const char *mutation_id,
                                        Napsync__V1__MutationOutcome outcome, uint64_t version,
                                        const char *conflict_id)
{
    Napsync__V1__MutationResult *r = nsf_alloc(a, sizeof(*r));
    napsync__v1__mutation_result__init(r);
    r->mutation_id = nsf_str(a, mutation_id);
    r->outcome = outcome;
    r->version = version;
    if (conflict_id) {
        r->n_conflict_ids = 1;
        r->conflict_ids = nsf_alloc(a, sizeof(char *));
        r->conflict_ids[0] = nsf_str(a, conflict_id);
    }
    if (outcome == NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED) {
        r->reject_code = NAPSYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT;
        r->reject_reason = nsf_str(a, "plan.title: must not be empty");
        r->reject_field = nsf_str(a, "title");
    }
    return r;
}

ns_envelope *nsf_push_result(nsf_arena *a, uint64_t rid, size_t n,
                             Napsync__V1__MutationResult *const *results)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__PushResult *p = nsf_alloc(a, sizeof(*p));
    napsync__v1__push_result__init(p);
    p->n_results = n;
    p->results = nsf_alloc(a, n * sizeof(*p->results));
    if (n)
        memcpy(p->results, results, n * sizeof(*p->results));
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_PUSH_RESULT;
    e->push_result = p;
    return e;
}

ns_envelope *nsf_mutation_result(nsf_arena *a, uint64_t rid, Napsync__V1__MutationResult *r)
{
    ns_envelope *e = nsf_env(a, rid);
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_MUTATION_RESULT;
    e->mutation_result = r;
    return e;
}

Napsync__V1__Record *nsf_record(nsf_arena *a, const char *type, const char *id, uint64_t version,
                                const char *tenant_id, Napsync__V1__FieldSet *fields)
{
    Napsync__V1__Record *r = nsf_alloc(a, sizeof(*r));
    napsync__v1__record__init(r);
    r->entity_type = nsf_str(a, type);
    r->id = nsf_str(a, id);
    r->version = version;
    r->tenant_id = nsf_str(a, tenant_id);
    r->fields = fields;
    r->changed_by = nsf_str(a, "fuzzer");
    r->changed_at = nsf_str(a, "2025-03-01T10:00:00.123456Z");
    return r;
}

ns_envelope *nsf_change_page(nsf_arena *a, uint64_t rid, size_t n, Napsync__V1__Record *const *r,
                             const char *next_cursor, int more, const char *tenant_id)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__ChangePage *p = nsf_alloc(a, sizeof(*p));
    napsync__v1__change_page__init(p);
    p->n_records = n;
    p->records = nsf_alloc(a, n * sizeof(*p->records));
    if (n)
        memcpy(p->records, r, n * sizeof(*p->records));
    p->next_cursor = nsf_str(a, next_cursor);
    p->more = more != 0;
    if (tenant_id) {
        p->n_tenant_ids = 1;
        p->tenant_ids = nsf_alloc(a, sizeof(char *));
        p->tenant_ids[0] = nsf_str(a, tenant_id);
    }
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE;
    e->change_page = p;
    return e;
}

Napsync__V1__Conflict *nsf_conflict(nsf_arena *a, const char *id, const char *tenant_id,
                                    const char *record_id, const char *field)
{
    Napsync__V1__Conflict *c = nsf_alloc(a, sizeof(*c));
    napsync__v1__conflict__init(c);
    c->id = nsf_str(a, id);
    c->entity_type = nsf_str(a, "plan");
    c->record_id = nsf_str(a, record_id);
    c->field = nsf_str(a, field);
    c->base_value = nsf_text(a, "National Action Plan");
    c->kept_value = nsf_text(a, "National Action Plan 2024-2028");
    c->other_value = nsf_text(a, "NAP on WPS 2024-2028");
    c->kept_by = nsf_str(a, "fuzzer");
    c->kept_device = nsf_str(a, "fuzz-device");
    c->other_by = nsf_str(a, "fuzzer");
    c->other_device = nsf_str(a, "fuzz-device-2");
    c->created_at = nsf_str(a, "2025-03-01T10:00:00.123456Z");
    c->tenant_id = nsf_str(a, tenant_id);
    return c;
}

ns_envelope *nsf_conflict_list(nsf_arena *a, uint64_t rid, size_t n,
                               Napsync__V1__Conflict *const *c)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__ConflictList *l = nsf_alloc(a, sizeof(*l));
    napsync__v1__conflict_list__init(l);
    l->n_conflicts = n;
    l->conflicts = nsf_alloc(a, n * sizeof(*l->conflicts));
    if (n)
        memcpy(l->conflicts, c, n * sizeof(*l->conflicts));
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_CONFLICT_LIST;
    e->conflict_list = l;
    return e;
}

static Napsync__V1__FieldChange *change(nsf_arena *a, const char *name, Napsync__V1__Value *before,
                                        Napsync__V1__Value *after)
{
    Napsync__V1__FieldChange *c = nsf_alloc(a, sizeof(*c));
    napsync__v1__field_change__init(c);
    c->name = nsf_str(a, name);
    c->before = before;
    c->after = after;
    return c;
}

ns_envelope *nsf_history_page(nsf_arena *a, uint64_t rid, const char *mutation_id)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__HistoryPage *h = nsf_alloc(a, sizeof(*h));
    napsync__v1__history_page__init(h);
    h->n_revisions = 2;
    h->revisions = nsf_alloc(a, 2 * sizeof(*h->revisions));
    static const char *const tags[] = {"participation"};
    for (size_t i = 0; i < 2; i++) {
        Napsync__V1__Revision *r = nsf_alloc(a, sizeof(*r));
        napsync__v1__revision__init(r);
        r->version = 2 - i;
        r->op = nsf_str(a, i == 0 ? "update" : "create");
        r->changed_by = nsf_str(a, "fuzzer");
        r->device = nsf_str(a, "fuzz-device");
        r->at = nsf_str(a, "2025-03-01T10:00:00.123456Z");
        r->mutation_id = nsf_str(a, mutation_id);
        r->n_changed_fields = 2;
        r->changed_fields = nsf_alloc(a, 2 * sizeof(*r->changed_fields));
        r->changed_fields[0] =
            change(a, "tags", i == 0 ? nsf_set(a, 1, tags) : nsf_null(a), nsf_set(a, 1, tags));
        r->changed_fields[1] =
            change(a, "title", i == 0 ? nsf_text(a, "National Action Plan") : nsf_null(a),
                   nsf_text(a, i == 0 ? "National Action Plan 2024-2028" : "National Action Plan"));
        h->revisions[i] = r;
    }
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_HISTORY_PAGE;
    e->history_page = h;
    return e;
}

ns_envelope *nsf_report_result(nsf_arena *a, uint64_t rid, const char *kind, const char *json)
{
    ns_envelope *e = nsf_env(a, rid);
    Napsync__V1__ReportResult *r = nsf_alloc(a, sizeof(*r));
    napsync__v1__report_result__init(r);
    r->kind = nsf_str(a, kind);
    r->json = nsf_str(a, json);
    e->body_case = NAPSYNC__V1__ENVELOPE__BODY_REPORT_RESULT;
    e->report_result = r;
    return e;
}

static bool utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c < 0x80) {
            p++;
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
            return false;
        }
        for (size_t i = 1; i <= extra; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += extra + 1;
    }
    return true;
}

static void check_string(const char *s, const ProtobufCFieldDescriptor *f,
                         const ProtobufCMessageDescriptor *d, const char *who)
{
    if (s && !utf8_ok(s))
        nsf_die("%s sent a %s.%s that is not UTF-8: \"%.200s\"", who, d->short_name, f->name, s);
}

void nsf_check_strings(const ProtobufCMessage *m, const char *who)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            void *const *items = *(void *const *const *)(base + f->offset);
            for (size_t j = 0; j < n; j++) {
                if (f->type == PROTOBUF_C_TYPE_STRING)
                    check_string(items[j], f, d, who);
                else if (items[j])
                    nsf_check_strings(items[j], who);
            }
        } else {
            void *item = *(void *const *)(base + f->offset);
            if (f->type == PROTOBUF_C_TYPE_STRING)
                check_string(item, f, d, who);
            else if (item)
                nsf_check_strings(item, who);
        }
    }
}

/* Envelope{zstd} holding env, packed (*out owned by the caller). env must
 * be large enough for compression to pay: ns_compress_pack sends the
 * others as they are. */
static void zstd_pack(const ns_envelope *env, uint8_t **out, size_t *len)
{
    ns_compress *z = ns_compress_new();
    if (z == NULL)
        nsf_die("out of memory");
    ns_compress_status st = ns_compress_pack(z, env, out, len);
    if (st != NS_COMPRESS_OK)
        nsf_die("ns_compress_pack failed (%d)", (int)st);
    ns_compress_free(z);
    ns_envelope *back = ns_envelope_unpack(*out, *len);
    bool compressed = back && back->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD;
    ns_envelope_free(back);
    if (!compressed)
        nsf_die("an envelope of %zu bytes does not compress: choose a larger one", *len);
}

void nsf_buf_zstd_frame(nsf_buf *b, const ns_envelope *env)
{
    uint8_t *packed;
    size_t n;
    zstd_pack(env, &packed, &n);
    uint8_t hdr[NS_FRAME_HEADER_SIZE];
    ns_frame_header(hdr, (uint32_t)n);
    nsf_buf_put(b, hdr, sizeof(hdr));
    nsf_buf_put(b, packed, n);
    free(packed);
}

void nsf_buf_zstd_envelope(nsf_buf *b, const ns_envelope *env)
{
    uint8_t *packed;
    size_t n;
    zstd_pack(env, &packed, &n);
    nsf_buf_put(b, packed, n);
    free(packed);
}

void nsf_buf_free(nsf_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void nsf_buf_put(nsf_buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL)
            nsf_die("out of memory");
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
}

void nsf_buf_envelope(nsf_buf *b, const ns_envelope *env)
{
    uint8_t *packed;
    size_t n;
    if (ns_envelope_pack(env, &packed, &n) != 0)
        nsf_die("out of memory");
    nsf_buf_put(b, packed, n);
    free(packed);
}

void nsf_buf_frame(nsf_buf *b, const ns_envelope *env)
{
    uint8_t *packed;
    size_t n;
    if (ns_envelope_pack(env, &packed, &n) != 0)
        nsf_die("out of memory");
    uint8_t hdr[NS_FRAME_HEADER_SIZE];
    ns_frame_header(hdr, (uint32_t)n);
    nsf_buf_put(b, hdr, sizeof(hdr));
    nsf_buf_put(b, packed, n);
    free(packed);
}
