/* Field-set helpers of the conversion tests: see fieldtest.h. */
#include "fieldtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

void nst_ft_put(ns_fieldset *fs, const char *name, const ns_field_type *type, const char *text)
{
    ns_value v;
    char err[128];
    if (ns_value_parse(type, text, &v, err, sizeof(err)) != NS_VALUE_OK)
        fail_msg("%s=%s: %s", name, text ? text : "NULL", err);
    assert_int_equal(ns_fieldset_set(fs, name, &v), 0);
    ns_value_free(&v);
}

void nst_ft_assert_equal(const ns_fieldset *a, const ns_fieldset *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->names[i], b->names[i]);
        assert_int_equal(a->values[i].kind, b->values[i].kind);
        assert_int_equal(a->values[i].is_null, b->values[i].is_null);
        if (!ns_value_equal(&a->values[i], &b->values[i])) {
            char *x = ns_value_format(&a->values[i]);
            char *y = ns_value_format(&b->values[i]);
            print_error("field %s: %s != %s\n", a->names[i], x ? x : "?", y ? y : "?");
            free(x);
            free(y);
            fail();
        }
    }
}
