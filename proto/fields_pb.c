/* Typed values and field sets on the wire (fields_pb.h).
 *
 * Input is untrusted: a value must arrive in the oneof case of its field's
 * kind (or as null_value), every field must exist and appear once, and every
 * value passes ns_value_check, which also canonicalises it, so that two
 * replicas holding "1.50" and "1.5" never see a difference. Messages name
 * the field at fault; names from the wire are quoted printable and bounded.
 *
 * Output borrows: strings and set item arrays point into the ns_value, so
 * encoding a record allocates only the protobuf structs around them. */
#include "fields_pb.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How much of a field name from the wire a message quotes. */
#define NAME_QUOTE_MAX 64

__attribute__((format(printf, 4, 5))) static ns_value_status
fail(ns_value_status st, char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* A name from the wire, fit for a message: printable ASCII, bounded. */
static void quote_name(char *out, size_t outlen, const char *s)
{
    size_t o = 0;
    for (size_t i = 0; s != NULL && s[i] != '\0' && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == NAME_QUOTE_MAX) {
            for (int k = 0; k < 3 && o + 1 < outlen; k++)
                out[o++] = '.';
            break;
        }
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
}

static char *dup_str(const char *s)
{
    size_t len = strlen(s);
    char *d = malloc(len + 1);
    if (d != NULL)
        memcpy(d, s, len + 1);
    return d;
}

static Napsync__V1__Value__KindCase case_of_kind(ns_kind k)
{
    switch (k) {
    case NS_KIND_BOOL:
        return NAPSYNC__V1__VALUE__KIND_BOOL_VALUE;
    case NS_KIND_INT:
        return NAPSYNC__V1__VALUE__KIND_INT_VALUE;
    case NS_KIND_DECIMAL:
        return NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE;
    case NS_KIND_TEXT:
        return NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
    case NS_KIND_DATE:
        return NAPSYNC__V1__VALUE__KIND_DATE_VALUE;
    case NS_KIND_TEXT_SET:
        return NAPSYNC__V1__VALUE__KIND_SET_VALUE;
    case NS_KIND_REF:
        return NAPSYNC__V1__VALUE__KIND_REF_VALUE;
    }
    return NAPSYNC__V1__VALUE__KIND__NOT_SET;
}

static const char *case_name(Napsync__V1__Value__KindCase c)
{
    switch (c) {
    case NAPSYNC__V1__VALUE__KIND_NULL_VALUE:
        return "null_value";
    case NAPSYNC__V1__VALUE__KIND_BOOL_VALUE:
        return "bool_value";
    case NAPSYNC__V1__VALUE__KIND_INT_VALUE:
        return "int_value";
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        return "decimal_value";
    case NAPSYNC__V1__VALUE__KIND_TEXT_VALUE:
        return "text_value";
    case NAPSYNC__V1__VALUE__KIND_DATE_VALUE:
        return "date_value";
    case NAPSYNC__V1__VALUE__KIND_SET_VALUE:
        return "set_value";
    case NAPSYNC__V1__VALUE__KIND_REF_VALUE:
        return "ref_value";
    default:
        return "an unknown case";
    }
}

/* The string member of a string-kinded value; the case was checked. */
static const char *string_member(const Napsync__V1__Value *pb)
{
    switch (pb->kind_case) {
    case NAPSYNC__V1__VALUE__KIND_DECIMAL_VALUE:
        return pb->decimal_value;
    case NAPSYNC__V1__VALUE__KIND_TEXT_VALUE:
        return pb->text_value;
    case NAPSYNC__V1__VALUE__KIND_DATE_VALUE:
        return pb->date_value;
    case NAPSYNC__V1__VALUE__KIND_REF_VALUE:
        return pb->ref_value;
    default:
        return NULL;
    }
}

static ns_value_status set_from_pb(const Napsync__V1__TextSet *ts, ns_value *out, char *err,
                                   size_t errlen)
{
    if (ts == NULL)
        return fail(NS_VALUE_INVALID, err, errlen, "set_value without a set");
    size_t n = ts->n_items;
    if (n > 0 && ts->items == NULL)
        return fail(NS_VALUE_INVALID, err, errlen, "set_value without its items");
    char **items = NULL;
    if (n > 0) {
        items = calloc(n, sizeof(*items));
        if (items == NULL)
            return fail(NS_VALUE_NOMEM, err, errlen, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        ns_value_status st = NS_VALUE_OK;
        if (ts->items[i] == NULL)
            st = fail(NS_VALUE_INVALID, err, errlen, "set item %zu missing", i);
        else if ((items[i] = dup_str(ts->items[i])) == NULL)
            st = fail(NS_VALUE_NOMEM, err, errlen, "out of memory");
        if (st != NS_VALUE_OK) {
            for (size_t k = 0; k < i; k++)
                free(items[k]);
            free(items);
            return st;
        }
    }
    out->u.set.items = items;
    out->u.set.n = n;
    out->is_null = false;
    return NS_VALUE_OK;
}

ns_value_status ns_value_from_pb(const Napsync__V1__Value *pb, const ns_field_type *ft,
                                 ns_value *out, char *err, size_t errlen)
{
    ns_value_init_null(out, ft->kind);
    if (pb == NULL || pb->kind_case == NAPSYNC__V1__VALUE__KIND__NOT_SET)
        return fail(NS_VALUE_INVALID, err, errlen, "no value");
    if (pb->kind_case == NAPSYNC__V1__VALUE__KIND_NULL_VALUE) {
        if (!ft->nullable)
            return fail(NS_VALUE_NULL_NOT_ALLOWED, err, errlen, "null not allowed");
        return NS_VALUE_OK;
    }
    if (pb->kind_case != case_of_kind(ft->kind))
        return fail(NS_VALUE_INVALID, err, errlen, "%s where %s (%s) is expected",
                    case_name(pb->kind_case), case_name(case_of_kind(ft->kind)),
                    ns_kind_name(ft->kind));
    switch (ft->kind) {
    case NS_KIND_BOOL:
        out->u.b = pb->bool_value != 0;
        out->is_null = false;
        break;
    case NS_KIND_INT:
        out->u.i = pb->int_value;
        out->is_null = false;
        break;
    case NS_KIND_DECIMAL:
    case NS_KIND_TEXT:
    case NS_KIND_DATE:
    case NS_KIND_REF: {
        const char *s = string_member(pb);
        if (s == NULL)
            return fail(NS_VALUE_INVALID, err, errlen, "%s without a string",
                        case_name(pb->kind_case));
        out->u.s = dup_str(s);
        if (out->u.s == NULL)
            return fail(NS_VALUE_NOMEM, err, errlen, "out of memory");
        out->is_null = false;
        break;
    }
    case NS_KIND_TEXT_SET: {
        ns_value_status st = set_from_pb(pb->set_value, out, err, errlen);
        if (st != NS_VALUE_OK)
            return st;
        break;
    }
    default:
        return fail(NS_VALUE_INVALID, err, errlen, "unknown kind");
    }
    ns_value_status st = ns_value_check(ft, out, err, errlen);
    if (st != NS_VALUE_OK)
        ns_value_free(out);
    return st;
}

static int field_ptr_cmp(const void *a, const void *b)
{
    const Napsync__V1__Field *x = *(const Napsync__V1__Field *const *)a;
    const Napsync__V1__Field *y = *(const Napsync__V1__Field *const *)b;
    return strcmp(x->name, y->name);
}

/* Position of name among the sorted fields (names unique, name present). */
static size_t sorted_position(Napsync__V1__Field *const *sorted, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(sorted[mid]->name, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

ns_value_status ns_fieldset_from_pb(const Napsync__V1__FieldSet *pb, ns_field_type_fn type_of,
                                    void *ud, ns_fieldset *out, char *err, size_t errlen)
{
    ns_fieldset_init(out);
    if (pb == NULL || pb->n_fields == 0)
        return NS_VALUE_OK;
    size_t n = pb->n_fields;
    if (pb->fields == NULL || type_of == NULL)
        return fail(NS_VALUE_INVALID, err, errlen, "malformed field set");
    char quoted[NAME_QUOTE_MAX + 4];

    /* Names first, in wire order and without allocating: an unknown field
     * is reported whatever else is wrong. */
    for (size_t i = 0; i < n; i++) {
        const Napsync__V1__Field *f = pb->fields[i];
        if (f == NULL || f->name == NULL)
            return fail(NS_VALUE_INVALID, err, errlen, "field %zu has no name", i);
        if (type_of(f->name, ud) == NULL) {
            quote_name(quoted, sizeof(quoted), f->name);
            return fail(NS_VALUE_INVALID, err, errlen, "unknown field \"%s\"", quoted);
        }
    }

    /* Sorted by name: duplicates become neighbours, and the result needs
     * this order anyway. */
    Napsync__V1__Field **sorted = malloc(n * sizeof(*sorted));
    if (sorted == NULL)
        return fail(NS_VALUE_NOMEM, err, errlen, "out of memory");
    memcpy(sorted, pb->fields, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), field_ptr_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            quote_name(quoted, sizeof(quoted), sorted[i]->name);
            free(sorted);
            return fail(NS_VALUE_INVALID, err, errlen, "field %s appears more than once", quoted);
        }
    }

    ns_fieldset fs;
    ns_value_status st = NS_VALUE_OK;
    fs.n = 0;
    fs.names = calloc(n, sizeof(*fs.names));
    fs.values = calloc(n, sizeof(*fs.values));
    if (fs.names == NULL || fs.values == NULL) {
        st = fail(NS_VALUE_NOMEM, err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        ns_value_init_null(&fs.values[i], NS_KIND_BOOL);
    /* Values in wire order (the first bad one is reported), each put at its
     * name's place. fs.n counts the slots, so that the cleanup frees every
     * slot, filled or not (an empty slot is a null with no name). */
    fs.n = n;
    for (size_t i = 0; i < n; i++) {
        const Napsync__V1__Field *f = pb->fields[i];
        size_t at = sorted_position(sorted, n, f->name);
        char why[256];
        st = ns_value_from_pb(f->value, type_of(f->name, ud), &fs.values[at], why, sizeof(why));
        if (st != NS_VALUE_OK) {
            quote_name(quoted, sizeof(quoted), f->name);
            fail(st, err, errlen, "field %s: %s", quoted, why);
            goto fail;
        }
        fs.names[at] = dup_str(f->name);
        if (fs.names[at] == NULL) {
            st = fail(NS_VALUE_NOMEM, err, errlen, "out of memory");
            goto fail;
        }
    }
    free(sorted);
    *out = fs;
    return NS_VALUE_OK;
fail:
    free(sorted);
    ns_fieldset_free(&fs); /* n is 0 until both arrays exist */
    return st;
}

int ns_value_to_pb(const ns_value *v, Napsync__V1__Value *pb)
{
    napsync__v1__value__init(pb);
    if (v->is_null) {
        pb->kind_case = NAPSYNC__V1__VALUE__KIND_NULL_VALUE;
        pb->null_value = 1;
        return 0;
    }
    switch (v->kind) {
    case NS_KIND_BOOL:
        pb->kind_case = NAPSYNC__V1__VALUE__KIND_BOOL_VALUE;
        pb->bool_value = v->u.b;
        return 0;
    case NS_KIND_INT:
        pb->kind_case = NAPSYNC__V1__VALUE__KIND_INT_VALUE;
        pb->int_value = v->u.i;
        return 0;
    case NS_KIND_DECIMAL:
    case NS_KIND_TEXT:
    case NS_KIND_DATE:
    case NS_KIND_REF:
        if (v->u.s == NULL)
            return -1;
        pb->kind_case = case_of_kind(v->kind);
        /* Borrowed: protobuf-c's struct has no const, and packing only reads. */
        if (v->kind == NS_KIND_DECIMAL)
            pb->decimal_value = v->u.s;
        else if (v->kind == NS_KIND_TEXT)
            pb->text_value = v->u.s;
        else if (v->kind == NS_KIND_DATE)
            pb->date_value = v->u.s;
        else
            pb->ref_value = v->u.s;
        return 0;
    case NS_KIND_TEXT_SET: {
        if (v->u.set.n > 0 && v->u.set.items == NULL)
            return -1;
        Napsync__V1__TextSet *ts = malloc(sizeof(*ts));
        if (ts == NULL)
            return -1;
        napsync__v1__text_set__init(ts);
        ts->n_items = v->u.set.n;
        ts->items = v->u.set.n > 0 ? v->u.set.items : NULL;
        pb->kind_case = NAPSYNC__V1__VALUE__KIND_SET_VALUE;
        pb->set_value = ts;
        return 0;
    }
    }
    return -1;
}

void ns_value_pb_clear(Napsync__V1__Value *pb)
{
    if (pb == NULL)
        return;
    /* Only the TextSet is ours; its items belong to the value. */
    if (pb->kind_case == NAPSYNC__V1__VALUE__KIND_SET_VALUE)
        free(pb->set_value);
    napsync__v1__value__init(pb);
}

/* ns_fieldset_to_pb's one allocation: the pointer array the message needs,
 * followed by the fields and their values. */
typedef struct {
    Napsync__V1__Field field;
    Napsync__V1__Value value;
} field_slot;

typedef union {
    Napsync__V1__Field *ptr;
    field_slot slot; /* aligns the slots that follow the pointer array */
} field_block_unit;

int ns_fieldset_to_pb(const ns_fieldset *fs, Napsync__V1__FieldSet *pb)
{
    napsync__v1__field_set__init(pb);
    size_t n = fs != NULL ? fs->n : 0;
    if (n == 0)
        return 0;
    /* Pointers rounded up to whole units keep the slots aligned. */
    size_t ptr_units = (n * sizeof(Napsync__V1__Field *) + sizeof(field_block_unit) - 1) /
                       sizeof(field_block_unit);
    if (n > (SIZE_MAX / sizeof(field_block_unit)) - ptr_units)
        return -1;
    field_block_unit *block = malloc((ptr_units + n) * sizeof(*block));
    if (block == NULL)
        return -1;
    Napsync__V1__Field **ptrs = (Napsync__V1__Field **)(void *)block;
    field_slot *slots = (field_slot *)(void *)(block + ptr_units);
    for (size_t i = 0; i < n; i++) {
        field_slot *sl = &slots[i];
        napsync__v1__field__init(&sl->field);
        if (fs->names[i] == NULL || ns_value_to_pb(&fs->values[i], &sl->value) != 0) {
            for (size_t k = 0; k < i; k++)
                ns_value_pb_clear(&slots[k].value);
            free(block);
            return -1;
        }
        sl->field.name = fs->names[i];
        sl->field.value = &sl->value;
        ptrs[i] = &sl->field;
    }
    pb->n_fields = n;
    pb->fields = ptrs;
    return 0;
}

void ns_fieldset_pb_clear(Napsync__V1__FieldSet *pb)
{
    if (pb == NULL)
        return;
    for (size_t i = 0; i < pb->n_fields; i++)
        ns_value_pb_clear(pb->fields[i]->value);
    free(pb->fields); /* the block ns_fieldset_to_pb allocated */
    napsync__v1__field_set__init(pb);
}
