/* Typed values and field sets on the wire: ns_value <-> napsync.v1.Value,
 * ns_fieldset <-> napsync.v1.FieldSet. Input from the wire is checked and
 * canonicalised against the field's type (ns_value_check); output borrows
 * the caller's strings where it can and is freed with the matching _clear. */
#ifndef NS_FIELDS_PB_H
#define NS_FIELDS_PB_H

#include <stddef.h>

#include "napsync.pb-c.h"
#include "value.h"

/* Returns the type of a field, or NULL if the field does not exist. */
typedef const ns_field_type *(*ns_field_type_fn)(const char *field, void *ud);

/* Reads one wire value as the given type: the oneof case must be the kind's
 * (or null_value). Returns NS_VALUE_OK or an error with a message. */
__attribute__((warn_unused_result)) ns_value_status ns_value_from_pb(const Napsync__V1__Value *pb,
                                                                     const ns_field_type *ft,
                                                                     ns_value *out, char *err,
                                                                     size_t errlen);

/* Reads a wire field set: every field must exist (type_of), appear once, and
 * hold a valid value. On error, err names the field and out is empty.
 * Returns NS_VALUE_OK or the first error. */
__attribute__((warn_unused_result)) ns_value_status
ns_fieldset_from_pb(const Napsync__V1__FieldSet *pb, ns_field_type_fn type_of, void *ud,
                    ns_fieldset *out, char *err, size_t errlen);

/* Fills *pb from v. Strings point into v (valid while v lives); the arrays
 * allocated for sets are released by ns_value_pb_clear. Returns 0 or -1. */
__attribute__((warn_unused_result)) int ns_value_to_pb(const ns_value *v, Napsync__V1__Value *pb);
void ns_value_pb_clear(Napsync__V1__Value *pb);

/* Fills *pb from fs (borrowing fs's strings). Returns 0 or -1. */
__attribute__((warn_unused_result)) int ns_fieldset_to_pb(const ns_fieldset *fs,
                                                          Napsync__V1__FieldSet *pb);
void ns_fieldset_pb_clear(Napsync__V1__FieldSet *pb);

#endif
