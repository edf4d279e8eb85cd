/* Field-level three-way merge (merge.h). Pure and deterministic: the same
 * inputs give the same result byte for byte, which is what lets every
 * replica converge without talking to the others (design §5). */
#include "merge.h"

#include <stdlib.h>
#include <string.h>

/* ---- merge ------------------------------------------------------------------------- */

static void conflict_free(ns_merge_conflict *c)
{
    free(c->field);
    ns_value_free(&c->base);
    ns_value_free(&c->kept);
    ns_value_free(&c->other);
    ns_fieldset_free(&c->other_fields);
}

static void result_init(ns_merge_result *r)
{
    memset(r, 0, sizeof(*r));
    ns_fieldset_init(&r->fields);
}

void ns_merge_result_free(ns_merge_result *r)
{
    if (r == NULL)
        return;
    ns_fieldset_free(&r->fields);
    for (size_t i = 0; i < r->nconflicts; i++)
        conflict_free(&r->conflicts[i]);
    free(r->conflicts);
    result_init(r);
}

/* Appends a conflict slot, zeroed with null values, and returns it. */
static ns_merge_conflict *conflict_add(ns_merge_result *r)
{
    ns_merge_conflict *grown = realloc(r->conflicts, (r->nconflicts + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    r->conflicts = grown;
    ns_merge_conflict *c = &grown[r->nconflicts++];
    memset(c, 0, sizeof(*c));
    ns_value_init_null(&c->base, NS_KIND_BOOL);
    ns_value_init_null(&c->kept, NS_KIND_BOOL);
    ns_value_init_null(&c->other, NS_KIND_BOOL);
    ns_fieldset_init(&c->other_fields);
    return c;
}

static int field_conflict(ns_merge_result *r, const char *field, const ns_value *base,
                          const ns_value *kept, const ns_value *other)
{
    ns_merge_conflict *c = conflict_add(r);
    if (c == NULL)
        return -1;
    size_t len = strlen(field);
    c->field = malloc(len + 1);
    if (c->field == NULL)
        return -1;
    memcpy(c->field, field, len + 1);
    if (ns_value_copy(&c->base, base) != NS_VALUE_OK ||
        ns_value_copy(&c->kept, kept) != NS_VALUE_OK ||
        ns_value_copy(&c->other, other) != NS_VALUE_OK)
        return -1;
    return 0;
}

static int record_conflict(ns_merge_result *r, bool kept_deleted, bool other_deleted,
                           const ns_fieldset *other_fields)
{
    ns_merge_conflict *c = conflict_add(r);
    if (c == NULL)
        return -1;
    c->kept_deleted = kept_deleted;
    c->other_deleted = other_deleted;
    return ns_fieldset_copy(&c->other_fields, other_fields);
}

/* A field of fs, or a null of kind when fs lacks it (or fs is NULL). */
static const ns_value *read_field(const ns_fieldset *fs, const char *name, const ns_value *null)
{
    const ns_value *v = ns_fieldset_get(fs, name);
    return v ? v : null;
}

/* True when some field differs between a and b, absent fields reading as null. */
static bool fieldsets_differ(const ns_fieldset *a, const ns_fieldset *b)
{
    static const ns_value null = {.kind = NS_KIND_BOOL, .is_null = true};
    for (int pass = 0; pass < 2; pass++) {
        const ns_fieldset *x = pass ? b : a, *y = pass ? a : b;
        if (x == NULL)
            continue;
        for (size_t i = 0; i < x->n; i++) {
            if (!ns_value_equal(&x->values[i], read_field(y, x->names[i], &null)))
                return true;
        }
    }
    return false;
}

static bool set_has(const ns_value *s, const char *item)
{
    if (s->is_null)
        return false;
    size_t lo = 0, hi = s->u.set.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->u.set.items[mid], item);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static size_t set_len(const ns_value *s)
{
    return s->is_null ? 0 : s->u.set.n;
}

/* out = cur ∪ (mine − base) − (base − mine), nulls reading as empty sets.
 * The result is sorted because it is a merge of two sorted lists. Returns
 * -1 on allocation failure; an empty result of a null current stays null,
 * so that a merge that adds and removes nothing does not invent a value. */
static int set_merge(const ns_value *base, const ns_value *cur, const ns_value *mine, ns_value *out)
{
    ns_value_init_null(out, NS_KIND_TEXT_SET);
    size_t nc = set_len(cur), nm = set_len(mine);
    char **items = malloc((nc + nm + 1) * sizeof(*items));
    if (items == NULL)
        return -1;
    size_t n = 0, i = 0, j = 0;
    while (i < nc || j < nm) {
        const char *pick;
        int c;
        if (i >= nc)
            c = 1;
        else if (j >= nm)
            c = -1;
        else
            c = strcmp(cur->u.set.items[i], mine->u.set.items[j]);
        /* An item on one side only is in base exactly when the side
         * lacking it removed it; otherwise the side holding it added it. */
        bool keep;
        if (c < 0) {
            pick = cur->u.set.items[i++];
            keep = !set_has(base, pick);
        } else if (c > 0) {
            pick = mine->u.set.items[j++];
            keep = !set_has(base, pick);
        } else {
            pick = cur->u.set.items[i++];
            j++;
            keep = true;
        }
        if (!keep)
            continue;
        size_t len = strlen(pick);
        items[n] = malloc(len + 1);
        if (items[n] == NULL)
            goto fail;
        memcpy(items[n++], pick, len + 1);
    }
    if (n == 0 && cur->is_null) {
        free(items);
        return 0;
    }
    out->is_null = false;
    out->u.set.items = items;
    out->u.set.n = n;
    return 0;
fail:
    while (n > 0)
        free(items[--n]);
    free(items);
    return -1;
}

static bool is_set_field(const ns_merge_input *in, const char *field, const ns_value *mine)
{
    const ns_field_type *t = in->type_of ? in->type_of(field, in->type_ud) : NULL;
    return (t ? t->kind : mine->kind) == NS_KIND_TEXT_SET;
}

static bool set_shaped(const ns_value *v)
{
    return v->is_null || v->kind == NS_KIND_TEXT_SET;
}

static uint32_t set_max_items(const ns_merge_input *in, const char *field)
{
    const ns_field_type *t = in->type_of ? in->type_of(field, in->type_ud) : NULL;
    return t && t->max_items ? t->max_items : NS_SET_DEFAULT_MAX_ITEMS;
}

/* One field of a stale UPDATE on a live record. */
static int merge_field(const ns_merge_input *in, ns_merge_result *r, const char *f,
                       const ns_value *mine)
{
    ns_value null;
    ns_value_init_null(&null, mine->kind);
    const ns_value *base = read_field(in->base, f, &null);
    const ns_value *cur = read_field(in->current, f, &null);

    if (ns_value_equal(mine, base))
        return 0; /* the mutation did not change f */
    if (in->frozen) {
        if (ns_value_equal(mine, cur))
            return 0;
        return field_conflict(r, f, base, cur, mine);
    }
    if (ns_value_equal(cur, base)) {
        r->changed = true;
        return ns_fieldset_set(&r->fields, f, mine);
    }
    if (ns_value_equal(cur, mine))
        return 0;
    if (is_set_field(in, f, mine) && set_shaped(base) && set_shaped(cur) && set_shaped(mine)) {
        ns_value merged;
        if (set_merge(base, cur, mine, &merged) != 0)
            return -1;
        int rc = 0;
        if (set_len(&merged) > set_max_items(in, f))
            rc = field_conflict(r, f, base, cur, mine);
        else if (!ns_value_equal(&merged, cur)) {
            r->changed = true;
            rc = ns_fieldset_set(&r->fields, f, &merged);
        }
        ns_value_free(&merged);
        return rc;
    }
    return field_conflict(r, f, base, cur, mine);
}

static int merge_update(const ns_merge_input *in, ns_merge_result *r)
{
    const ns_fieldset *change = in->change;
    size_t n = change ? change->n : 0;
    if (in->current_deleted) {
        /* An edit never resurrects a record (design §5), whatever its base. */
        r->deleted = true;
        r->outcome = NS_MERGE_CONFLICT;
        return record_conflict(r, true, false, change);
    }
    if (!in->stale) {
        static const ns_value null = {.kind = NS_KIND_BOOL, .is_null = true};
        for (size_t i = 0; i < n; i++) {
            const ns_value *mine = &change->values[i];
            if (!ns_value_equal(mine, read_field(in->current, change->names[i], &null)))
                r->changed = true;
            if (ns_fieldset_set(&r->fields, change->names[i], mine) != 0)
                return -1;
        }
        r->outcome = NS_MERGE_APPLIED;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (merge_field(in, r, change->names[i], &change->values[i]) != 0)
            return -1;
    }
    r->outcome = r->nconflicts > 0 ? NS_MERGE_CONFLICT : NS_MERGE_MERGED;
    return 0;
}

static int merge_delete(const ns_merge_input *in, ns_merge_result *r)
{
    if (in->current_deleted) {
        r->deleted = true;
        r->outcome = in->stale ? NS_MERGE_MERGED : NS_MERGE_APPLIED;
        return 0;
    }
    if (!in->stale) {
        r->deleted = true;
        r->changed = true;
        r->outcome = NS_MERGE_APPLIED;
        return 0;
    }
    bool changed_since_base =
        in->frozen || in->base_deleted || fieldsets_differ(in->base, in->current);
    if (changed_since_base) {
        r->outcome = NS_MERGE_CONFLICT;
        return record_conflict(r, false, true, NULL);
    }
    r->deleted = true;
    r->changed = true;
    r->outcome = NS_MERGE_MERGED;
    return 0;
}

int ns_merge(const ns_merge_input *in, ns_merge_result *r)
{
    result_init(r);
    int rc;
    switch (in->op) {
    case NS_OP_CREATE:
        r->outcome = NS_MERGE_APPLIED;
        r->changed = true;
        rc = ns_fieldset_copy(&r->fields, in->change);
        break;
    case NS_OP_UPDATE:
        /* Every path starts from the record as committed. */
        rc = ns_fieldset_copy(&r->fields, in->current);
        if (rc == 0)
            rc = merge_update(in, r);
        break;
    case NS_OP_DELETE:
        rc = ns_fieldset_copy(&r->fields, in->current);
        if (rc == 0)
            rc = merge_delete(in, r);
        break;
    default:
        rc = -1;
        break;
    }
    if (rc != 0) {
        ns_merge_result_free(r);
        return -1;
    }
    return 0;
}
