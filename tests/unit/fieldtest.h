/* Field sets in the tests of their conversions (test_fields_json,
 * test_fields_pb): filling one from text and comparing two. Both fail the
 * running cmocka test on a mismatch. */
#ifndef NS_TEST_FIELDTEST_H
#define NS_TEST_FIELDTEST_H

#include "value.h"

/* Sets field name of fs from its text form, parsed by ns_value_parse as
 * type; text NULL is null. */
void nst_ft_put(ns_fieldset *fs, const char *name, const ns_field_type *type, const char *text);

/* a and b must hold the same fields in the same order, each of the same
 * kind, null in both or in neither, and equal. */
void nst_ft_assert_equal(const ns_fieldset *a, const ns_fieldset *b);

#endif
