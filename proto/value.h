/* Typed field values of synced records (design §3): null, bool, integer,
 * decimal (exact, as canonical text), text (UTF-8, bounded), calendar date,
 * set of text, reference to another record (UUID). The same kinds are the
 * PostgreSQL column types and the merge rules' types. */
#ifndef NS_VALUE_H
#define NS_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    NS_KIND_BOOL,
    NS_KIND_INT,
    NS_KIND_DECIMAL,
    NS_KIND_TEXT,
    NS_KIND_DATE,
    NS_KIND_TEXT_SET,
    NS_KIND_REF,
} ns_kind;

/* Limits of one field, from the schema. */
typedef struct {
    ns_kind kind;
    bool nullable;
    uint32_t max_bytes; /* TEXT: bytes of UTF-8; TEXT_SET: bytes per item; 0 = default */
    uint32_t max_items; /* TEXT_SET; 0 = default */
} ns_field_type;

#define NS_TEXT_DEFAULT_MAX      10000u
#define NS_SET_ITEM_DEFAULT_MAX  100u
#define NS_SET_DEFAULT_MAX_ITEMS 256u
#define NS_DECIMAL_MAX_DIGITS    38u /* integer + fraction digits, as PostgreSQL numeric(38,x) */

typedef struct {
    ns_kind kind;
    bool is_null;
    union {
        bool b;
        int64_t i;
        /* DECIMAL: canonical text ("-12.5": no '+', no leading zeros, no
         * trailing fraction zeros, never "-0"); TEXT; DATE "YYYY-MM-DD";
         * REF: lowercase 8-4-4-4-12 UUID. Owned by the value. */
        char *s;
        struct {
            char **items; /* sorted (bytewise), unique; each owned */
            size_t n;
        } set;
    } u;
} ns_value;

typedef enum {
    NS_VALUE_OK = 0,
    NS_VALUE_INVALID = -1, /* malformed for its kind; err says how */
    NS_VALUE_TOO_LONG = -2,
    NS_VALUE_NULL_NOT_ALLOWED = -3,
    NS_VALUE_NOMEM = -4,
} ns_value_status;

/* A null of a kind. */
void ns_value_init_null(ns_value *v, ns_kind kind);
/* Frees what v owns (whether or not is_null is set) and leaves v a null of
 * its kind, so freeing twice is harmless. */
void ns_value_free(ns_value *v);
/* Deep copy. dst is overwritten, not freed first. On failure (NS_VALUE_NOMEM,
 * or NS_VALUE_INVALID for a non-null src without its string or items) dst is
 * a null of src's kind and nothing is leaked. */
__attribute__((warn_unused_result)) ns_value_status ns_value_copy(ns_value *dst,
                                                                  const ns_value *src);

/* Parses the text form of a kind into a canonical value (the form the CLI
 * takes as FIELD=VALUE and PostgreSQL prints). Strict: no surrounding
 * spaces anywhere except around set items.
 *  - bool: true or false, ASCII case-insensitive (no yes/no, no 1/0).
 *  - integer: [-+]digits in int64 range (leading zeros allowed); out of
 *    range is NS_VALUE_INVALID.
 *  - decimal: [-+]digits[.digits], digits required on both sides of '.'
 *    ("1." and ".5" are refused), no exponent, NaN or Infinity. Counted
 *    after canonicalisation, integer digits plus fraction digits may be at
 *    most NS_DECIMAL_MAX_DIGITS (else NS_VALUE_TOO_LONG); a lone integer
 *    part "0" is not a digit ("0.5" has one, "0.05" two), as PostgreSQL
 *    counts precision.
 *  - date: exactly YYYY-MM-DD, zero-padded, a real calendar date (Gregorian
 *    leap years), years 1000-9999.
 *  - ref: a UUID 8-4-4-4-12 in any hex case, stored lowercase; no braces.
 *  - text: valid UTF-8 (no overlong forms, surrogates or code points past
 *    U+10FFFF) without control characters (C0 other than \t \n \r, DEL,
 *    C1 U+0080-U+009F); at most max_bytes bytes (else NS_VALUE_TOO_LONG).
 *  - text set: items separated by ','; each item trimmed of spaces (U+0020),
 *    empties dropped, duplicates merged, then sorted. An item is one-line
 *    text: no control character at all (not even \t \n \r) and never a
 *    ',' (the text form cannot express one, so no item anywhere may hold
 *    one, from the wire either); at most max_bytes bytes per item and at
 *    most max_items distinct items (else NS_VALUE_TOO_LONG).
 * text == NULL is SQL NULL for every kind; so is the literal "null" (ASCII
 * case-insensitive, nothing around it) for every kind except TEXT, where it
 * is the text "null" and a caller that means NULL passes text == NULL.
 * A null where t->nullable is false is NS_VALUE_NULL_NOT_ALLOWED.
 * *out is overwritten, not freed first; on failure it is a null of t's kind
 * (nothing to free, nothing leaked). On error writes a message naming what
 * is wrong (not the field) into err (err may be NULL). */
__attribute__((warn_unused_result)) ns_value_status
ns_value_parse(const ns_field_type *t, const char *text, ns_value *out, char *err, size_t errlen);

/* Validates and canonicalises a value built elsewhere (from the wire): the
 * same rules as ns_value_parse, plus v->kind must be t->kind. Rewrites v in
 * place (trims, drops empty items, sorts and dedups sets, canonicalises
 * decimals and UUIDs; a null's leftover payload is freed) and never
 * allocates. On failure v may be partly canonicalised but still owns only
 * what ns_value_free frees. */
__attribute__((warn_unused_result)) ns_value_status
ns_value_check(const ns_field_type *t, ns_value *v, char *err, size_t errlen);

/* Equality of canonical values: a null equals any null whatever its kind
 * (an absent field reads as null); values of different kinds differ. */
bool ns_value_equal(const ns_value *a, const ns_value *b);

/* Text form, as ns_value_parse accepts it back ("null" for null; a set as
 * comma-separated items, "" for the empty set, and "null," for the set
 * whose only item is "null" in any case, so that it does not read back as
 * NULL). ns_value_parse(format(v)) == v for every canonical v except a
 * null TEXT, which formats as "null" for display: the caller carries a
 * null text as text == NULL. Returns a new string (caller frees) or NULL
 * on allocation failure. */
char *ns_value_format(const ns_value *v);

const char *ns_kind_name(ns_kind k);
/* The short word for a kind that FIELD:KIND=VALUE assignments and
 * ns_field_view use: bool, int, decimal, text, date, set, ref. */
const char *ns_kind_word(ns_kind k);

/* Bytes of a canonical UUID and its NUL. */
#define NS_UUID_SIZE 37
/* A UUID (8-4-4-4-12, any hex case) into its canonical lowercase form.
 * Returns false, out untouched, for anything else (NULL included). */
bool ns_uuid_canon(const char *s, char out[NS_UUID_SIZE]);

/* A record's fields, sorted by name (strcmp), names unique. Owns names and values. */
typedef struct {
    char **names;
    ns_value *values;
    size_t n;
} ns_fieldset;

void ns_fieldset_init(ns_fieldset *fs);
/* Frees everything and leaves fs empty. */
void ns_fieldset_free(ns_fieldset *fs);
/* Inserts or replaces (copies name and value). Returns 0, or -1 on
 * allocation failure (or a malformed v) with fs unchanged. */
__attribute__((warn_unused_result)) int ns_fieldset_set(ns_fieldset *fs, const char *name,
                                                        const ns_value *v);
/* NULL when absent. */
const ns_value *ns_fieldset_get(const ns_fieldset *fs, const char *name);
/* Deep copy; dst is overwritten, not freed first; src NULL copies as empty.
 * Returns 0, or -1 with dst empty and nothing leaked. */
__attribute__((warn_unused_result)) int ns_fieldset_copy(ns_fieldset *dst, const ns_fieldset *src);

#endif
