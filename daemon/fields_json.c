/* Record fields as JSON (fields_json.h). The text comes from the database
 * (jsonb columns) but is parsed as untrusted all the same: a row written by
 * another program, or by an older napsync, must be refused with a message,
 * never trusted into a value the rest of the engine assumes canonical. */
#include "fields_json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Larger than any record the engine writes (a few hundred fields of at most
 * NS_TEXT_DEFAULT_MAX bytes); refused before jansson allocates anything. */
#define FIELDS_JSON_MAX_BYTES (16u * 1024u * 1024u)

/* json_integer_value is json_int_t; the engine's integers are int64_t. */
_Static_assert(sizeof(json_int_t) == sizeof(int64_t), "json_int_t must be 64 bits");

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Copies untrusted bytes (a key, a parser message quoting the input) into a
 * message: printable ASCII only, bounded, so that whatever the input holds
 * cannot forge log lines or carry invalid UTF-8 into them. */
static void printable(char *out, size_t outlen, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (outlen > 0)
        out[o] = '\0';
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static const char *json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown JSON value";
}

/* ---- to JSON ------------------------------------------------------------------ */

json_t *ns_value_to_json(const ns_value *v)
{
    if (v->is_null)
        return json_null();
    switch (v->kind) {
    case NS_KIND_BOOL:
        return json_boolean(v->u.b);
    case NS_KIND_INT:
        return json_integer((json_int_t)v->u.i);
    case NS_KIND_DECIMAL:
    case NS_KIND_TEXT:
    case NS_KIND_DATE:
    case NS_KIND_REF:
        return v->u.s ? json_string(v->u.s) : NULL;
    case NS_KIND_TEXT_SET: {
        if (v->u.set.n > 0 && v->u.set.items == NULL)
            return NULL;
        json_t *a = json_array();
        if (a == NULL)
            return NULL;
        for (size_t i = 0; i < v->u.set.n; i++) {
            const char *it = v->u.set.items[i];
            /* json_array_append_new takes the item and releases it on failure. */
            if (it == NULL || json_array_append_new(a, json_string(it)) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    }
    return NULL;
}

json_t *ns_fields_to_json(const ns_fieldset *fs)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < fs->n; i++) {
        /* json_object_set_new takes the value and releases it on failure,
         * including a NULL from a failed conversion. */
        if (json_object_set_new(o, fs->names[i], ns_value_to_json(&fs->values[i])) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* ---- from JSON ---------------------------------------------------------------- */

/* The string of j, which must hold no NUL (jansson refuses \u0000 unless
 * told otherwise; checked again because a NUL would silently cut the value). */
static int string_of(const json_t *j, const char **s, size_t *len, char *err, size_t errlen)
{
    *s = json_string_value(j);
    *len = json_string_length(j);
    if (*s == NULL || memchr(*s, '\0', *len) != NULL)
        return fail(err, errlen, "string holds a NUL character");
    return 0;
}

static int set_from_json(const json_t *j, ns_value *out, char *err, size_t errlen)
{
    size_t n = json_array_size(j);
    char **items = NULL;
    if (n > 0) {
        items = calloc(n, sizeof(*items));
        if (items == NULL)
            return fail(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *it = json_array_get(j, i);
        const char *s;
        size_t len;
        int rc = 0;
        if (!json_is_string(it))
            rc = fail(err, errlen, "set item %zu is %s, not a string", i, json_type_name(it));
        else if (string_of(it, &s, &len, err, errlen) != 0)
            rc = -1;
        else if ((items[i] = dup_n(s, len)) == NULL)
            rc = fail(err, errlen, "out of memory");
        if (rc != 0) {
            for (size_t k = 0; k < i; k++)
                free(items[k]);
            free(items);
            return -1;
        }
    }
    out->u.set.items = items;
    out->u.set.n = n;
    out->is_null = false;
    return 0;
}

int ns_value_from_json(const json_t *j, const ns_field_type *ft, ns_value *out, char *err,
                       size_t errlen)
{
    ns_value_init_null(out, ft->kind);
    if (j == NULL)
        return fail(err, errlen, "no value");
    if (!json_is_null(j)) {
        switch (ft->kind) {
        case NS_KIND_BOOL:
            if (!json_is_boolean(j))
                return fail(err, errlen, "%s where a boolean is expected", json_type_name(j));
            out->u.b = json_is_true(j);
            out->is_null = false;
            break;
        case NS_KIND_INT:
            /* A real is refused even when integral (1.0, 1e3): the producer
             * went through a binary float, so the value may not be exact. */
            if (!json_is_integer(j))
                return fail(err, errlen, "%s where an integer is expected", json_type_name(j));
            out->u.i = (int64_t)json_integer_value(j);
            out->is_null = false;
            break;
        case NS_KIND_DECIMAL:
        case NS_KIND_TEXT:
        case NS_KIND_DATE:
        case NS_KIND_REF: {
            if (!json_is_string(j)) {
                /* Decimals travel as strings: a JSON number may already
                 * have been rounded through a double by whoever wrote it. */
                return fail(err, errlen, "%s where a string (%s) is expected", json_type_name(j),
                            ns_kind_name(ft->kind));
            }
            const char *s;
            size_t len;
            if (string_of(j, &s, &len, err, errlen) != 0)
                return -1;
            out->u.s = dup_n(s, len);
            if (out->u.s == NULL)
                return fail(err, errlen, "out of memory");
            out->is_null = false;
            break;
        }
        case NS_KIND_TEXT_SET:
            if (!json_is_array(j))
                return fail(err, errlen, "%s where an array of strings is expected",
                            json_type_name(j));
            if (set_from_json(j, out, err, errlen) != 0)
                return -1;
            break;
        default:
            return fail(err, errlen, "unknown kind");
        }
    }
    if (ns_value_check(ft, out, err, errlen) != NS_VALUE_OK) {
        ns_value_free(out);
        return -1;
    }
    return 0;
}

/* Parses text into a JSON object, or writes why not. */
static json_t *load_object(const char *text, size_t len, char *err, size_t errlen)
{
    if (text == NULL) {
        fail(err, errlen, "no JSON text");
        return NULL;
    }
    if (len > FIELDS_JSON_MAX_BYTES) {
        fail(err, errlen, "JSON text of %zu bytes is longer than the limit of %u", len,
             FIELDS_JSON_MAX_BYTES);
        return NULL;
    }
    json_error_t je;
    memset(&je, 0, sizeof(je));
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        char why[sizeof(je.text)];
        printable(why, sizeof(why), je.text, strnlen(je.text, sizeof(je.text)));
        /* jansson leaves the message empty only when its first allocation
         * fails, before it has read anything. */
        if (why[0] == '\0' || json_error_code(&je) == json_error_out_of_memory)
            fail(err, errlen, "out of memory while parsing JSON");
        else if (json_error_code(&je) == json_error_invalid_utf8)
            fail(err, errlen, "invalid JSON: not valid UTF-8 at byte %d", je.position);
        else
            fail(err, errlen, "invalid JSON at byte %d: %s", je.position, why);
        return NULL;
    }
    if (!json_is_object(root)) {
        fail(err, errlen, "JSON fields must be an object, not %s", json_type_name(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

int ns_fields_from_json_text(const ns_entity_type *t, const char *text, size_t len,
                             ns_fieldset *out, char *err, size_t errlen)
{
    ns_fieldset_init(out);
    json_t *root = load_object(text, len, err, errlen);
    if (root == NULL)
        return -1;

    /* Every key must be a field: checked first, so that an unknown key is
     * reported whatever else is wrong, and so that the count below bounds
     * the arrays by the type's fields, not by the input. */
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (ns_entity_field(t, key) == NULL) {
            char name[72];
            printable(name, sizeof(name), key, strlen(key));
            fail(err, errlen, "unknown field %s of entity type %s", name, t->name);
            json_decref(root);
            return -1;
        }
    }
    size_t count = json_object_size(root);
    if (count == 0) {
        json_decref(root);
        return 0;
    }
    ns_fieldset fs;
    fs.n = 0;
    fs.names = calloc(count, sizeof(*fs.names));
    fs.values = calloc(count, sizeof(*fs.values));
    if (fs.names == NULL || fs.values == NULL) {
        fail(err, errlen, "out of memory");
        goto fail;
    }
    /* Walking the type's fields, which are sorted by name, gives the
     * fieldset its order without a sort. */
    for (size_t i = 0; i < t->nfields && fs.n < count; i++) {
        const ns_field_def *f = &t->fields[i];
        const json_t *j = json_object_get(root, f->name);
        if (j == NULL)
            continue;
        char why[256];
        if (ns_value_from_json(j, &f->type, &fs.values[fs.n], why, sizeof(why)) != 0) {
            fail(err, errlen, "field %s: %s", f->name, why);
            goto fail;
        }
        fs.names[fs.n] = dup_n(f->name, strlen(f->name));
        if (fs.names[fs.n] == NULL) {
            ns_value_free(&fs.values[fs.n]);
            fail(err, errlen, "out of memory");
            goto fail;
        }
        fs.n++;
    }
    json_decref(root);
    *out = fs;
    return 0;
fail:
    ns_fieldset_free(&fs);
    json_decref(root);
    return -1;
}
