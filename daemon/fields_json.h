/* Record fields as JSON, the form PostgreSQL stores them in (revisions,
 * conflicts) and takes them in (jsonb_populate_recordset): an object of
 * field name to value, where bool and integer are JSON booleans and
 * numbers, decimals, text, dates and references are JSON strings (decimals
 * as strings so that no binary float ever touches them), a text set is an
 * array of strings, and null is null. Uses jansson. */
#ifndef NS_FIELDS_JSON_H
#define NS_FIELDS_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "merge.h"
#include "registry.h"

/* A new JSON object holding every field of fs (caller owns; json_decref). NULL on
 * allocation failure. */
json_t *ns_fields_to_json(const ns_fieldset *fs);

/* The JSON value of one field value; NULL on allocation failure. */
json_t *ns_value_to_json(const ns_value *v);

/* Reads a JSON object (as text, e.g. a jsonb column) into fields typed by
 * the entity type: each value is checked and canonicalised as
 * ns_value_check does. A key that is not a field of the type, or a value of
 * the wrong JSON type, is an error naming the field. Returns 0, or -1 with a
 * message (out is then empty). */
__attribute__((warn_unused_result)) int ns_fields_from_json_text(const ns_entity_type *t,
                                                                 const char *text, size_t len,
                                                                 ns_fieldset *out, char *err,
                                                                 size_t errlen);

/* One value from JSON, typed by ft. Returns 0 or -1 with a message. */
__attribute__((warn_unused_result)) int ns_value_from_json(const json_t *j, const ns_field_type *ft,
                                                           ns_value *out, char *err, size_t errlen);

#endif
