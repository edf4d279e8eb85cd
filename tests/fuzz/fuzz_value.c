/* libFuzzer target: the text forms of typed values (proto/value.c), as
 * the CLI's FIELD=VALUE assignments, the plan files and PostgreSQL's
 * output reach them.
 *
 * Input: byte 0 picks the kind, whether null is allowed and small limits;
 * the rest is the text. An accepted value must be canonical: its text form
 * parses back equal (and to the same text), checking it changes nothing,
 * and its wire form reads back equal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "fields_pb.h"
#include "fixture.h"
#include "value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ERRLEN 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    ns_field_type t = {(ns_kind)(data[0] % 7), (data[0] & 0x08) != 0, 0, 0};
    if (data[0] & 0x10) {
        t.max_bytes = 1u + (data[0] >> 5); /* 1..8: the limits are met often */
        t.max_items = 1u + (data[0] >> 6);
    }
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    char err[ERRLEN] = "";
    ns_value v;
    ns_value_status st = ns_value_parse(&t, text, &v, err, sizeof(err));
    if (st != NS_VALUE_OK) {
        if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
            nsf_die("a refused value has no error message");
        if (!v.is_null)
            nsf_die("a refused value is not left null");
    } else {
        if (v.kind != t.kind)
            nsf_die("a %s value parsed as %s", ns_kind_name(t.kind), ns_kind_name(v.kind));
        ns_value copy;
        if (ns_value_copy(&copy, &v) != NS_VALUE_OK)
            nsf_die("ns_value_copy failed");
        if (ns_value_check(&t, &copy, err, sizeof(err)) != NS_VALUE_OK ||
            !ns_value_equal(&copy, &v))
            nsf_die("ns_value_check does not keep the parsed %s value \"%s\": %s",
                    ns_kind_name(t.kind), text, err);
        ns_value_free(&copy);
        if (!(v.kind == NS_KIND_TEXT && v.is_null)) {
            char *once = ns_value_format(&v);
            if (once == NULL)
                nsf_die("ns_value_format failed");
            ns_value back;
            if (ns_value_parse(&t, once, &back, err, sizeof(err)) != NS_VALUE_OK)
                nsf_die("\"%s\" formats as \"%s\", which does not parse: %s", text, once, err);
            if (!ns_value_equal(&back, &v))
                nsf_die("\"%s\" formats as \"%s\", which reads back different", text, once);
            char *twice = ns_value_format(&back);
            if (twice == NULL || strcmp(once, twice) != 0)
                nsf_die("the text form of \"%s\" is not stable", text);
            free(twice);
            free(once);
            ns_value_free(&back);
        }
        Napsync__V1__Value pb;
        if (ns_value_to_pb(&v, &pb) != 0)
            nsf_die("ns_value_to_pb failed");
        ns_value wire;
        if (ns_value_from_pb(&pb, &t, &wire, err, sizeof(err)) != NS_VALUE_OK ||
            !ns_value_equal(&wire, &v))
            nsf_die("the wire form of \"%s\" does not read back: %s", text, err);
        ns_value_free(&wire);
        ns_value_pb_clear(&pb);
    }
    ns_value_free(&v);

    char uuid[NS_UUID_SIZE];
    if (ns_uuid_canon(text, uuid)) {
        char again[NS_UUID_SIZE];
        if (!ns_uuid_canon(uuid, again) || strcmp(uuid, again) != 0 || strlen(uuid) != 36)
            nsf_die("ns_uuid_canon(\"%s\") is not canonical", text);
    }
    size_t bound = size % 97;
    if (ns_text_ok(text, bound) && strlen(text) > bound)
        nsf_die("ns_text_ok passed a text longer than its bound");
    free(text);
    return 0;
}
