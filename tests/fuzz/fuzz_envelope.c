/* libFuzzer target: the Envelope and every message in it, as both ends
 * unpack them from the network (proto/envelope.c), compressed frames
 * (proto/compress.c), and the typed values and field sets messages carry
 * (proto/fields_pb.c, proto/value.c).
 *
 * Input: one frame's payload. An Envelope{zstd} is decompressed as a
 * receiver that agreed on compression does, and the Envelope it holds is
 * walked too, and so is the ordinary page an Envelope{compact_page}
 * expands to (proto/page_compact.c): compacting that again and expanding
 * it gives the same bytes. Every value is read as each kind, and every field set
 * against a table of field types (the registry's role); what is accepted
 * must be canonical: checking it again changes nothing, and its text form
 * and its wire form both read back equal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "envelope.h"
#include "fields_pb.h"
#include "frame.h"
#include "fixture.h"
#include "page_compact.h"
#include "value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ERRLEN 256

static const struct {
    const char *name;
    ns_field_type type;
} field_types[] = {
    {"b", {NS_KIND_BOOL, true, 0, 0}},
    {"baseline", {NS_KIND_DECIMAL, true, 0, 0}},
    {"baseline_date", {NS_KIND_DATE, true, 0, 0}},
    {"d", {NS_KIND_DECIMAL, true, 0, 0}},
    {"dt", {NS_KIND_DATE, true, 0, 0}},
    {"i", {NS_KIND_INT, true, 0, 0}},
    {"kind", {NS_KIND_TEXT, true, 32, 0}},
    {"period_end", {NS_KIND_DATE, true, 0, 0}},
    {"period_start", {NS_KIND_DATE, true, 0, 0}},
    {"plan_id", {NS_KIND_REF, false, 0, 0}},
    {"position", {NS_KIND_INT, false, 0, 0}},
    {"r", {NS_KIND_REF, true, 0, 0}},
    {"s", {NS_KIND_TEXT_SET, true, 12, 4}},
    {"status", {NS_KIND_TEXT, true, 0, 0}},
    {"t", {NS_KIND_TEXT, true, 40, 0}},
    {"tags", {NS_KIND_TEXT_SET, true, 0, 0}},
    {"title", {NS_KIND_TEXT, false, 300, 0}},
    {"value_type", {NS_KIND_TEXT, true, 0, 0}},
};
#define NTYPES (sizeof(field_types) / sizeof(field_types[0]))

static const ns_field_type *type_of(const char *field, void *ud)
{
    (void)ud;
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(field_types[i].name, field) == 0)
            return &field_types[i].type;
    return NULL;
}

static void check_err(const char *err)
{
    if (memchr(err, '\0', ERRLEN) == NULL)
        nsf_die("an error message is not terminated");
}

/* v was accepted as t: it must be a fixed point of every way back in. */
static void check_canonical(const ns_field_type *t, const ns_value *v)
{
    char err[ERRLEN] = "";
    ns_value copy;
    if (ns_value_copy(&copy, v) != NS_VALUE_OK)
        nsf_die("ns_value_copy of an accepted value failed");
    if (ns_value_check(t, &copy, err, sizeof(err)) != NS_VALUE_OK)
        nsf_die("an accepted %s value fails ns_value_check: %s", ns_kind_name(t->kind), err);
    if (!ns_value_equal(&copy, v))
        nsf_die("ns_value_check changed an accepted %s value", ns_kind_name(t->kind));
    ns_value_free(&copy);

    /* A null text formats as "null" for display only (value.h). */
    if (!(v->kind == NS_KIND_TEXT && v->is_null)) {
        char *text = ns_value_format(v);
        if (text == NULL)
            nsf_die("ns_value_format failed");
        ns_value back;
        ns_value_status st = ns_value_parse(t, text, &back, err, sizeof(err));
        if (st != NS_VALUE_OK)
            nsf_die("the text form \"%s\" of an accepted %s value does not parse: %s", text,
                    ns_kind_name(t->kind), err);
        if (!ns_value_equal(&back, v))
            nsf_die("the text form \"%s\" of a %s value reads back different", text,
                    ns_kind_name(t->kind));
        ns_value_free(&back);
        free(text);
    }

    Napsync__V1__Value pb;
    if (ns_value_to_pb(v, &pb) != 0)
        nsf_die("ns_value_to_pb failed");
    ns_value wire;
    if (ns_value_from_pb(&pb, t, &wire, err, sizeof(err)) != NS_VALUE_OK)
        nsf_die("the wire form of an accepted %s value is refused: %s", ns_kind_name(t->kind), err);
    if (!ns_value_equal(&wire, v))
        nsf_die("the wire form of a %s value reads back different", ns_kind_name(t->kind));
    ns_value_free(&wire);
    ns_value_pb_clear(&pb);
}

/* A wire value read as every kind, nullable or not. */
static void check_value(const Napsync__V1__Value *pb)
{
    if (pb == NULL)
        return;
    for (int k = NS_KIND_BOOL; k <= NS_KIND_REF; k++) {
        for (int nullable = 0; nullable < 2; nullable++) {
            ns_field_type t = {(ns_kind)k, nullable != 0, nullable ? 0u : 8u, nullable ? 0u : 3u};
            char err[ERRLEN] = "";
            ns_value v;
            if (ns_value_from_pb(pb, &t, &v, err, sizeof(err)) == NS_VALUE_OK)
                check_canonical(&t, &v);
            else
                check_err(err);
            ns_value_free(&v);
        }
    }
}

static void check_fieldset(const Napsync__V1__FieldSet *pb)
{
    if (pb == NULL)
        return;
    for (size_t i = 0; i < pb->n_fields; i++)
        if (pb->fields[i])
            check_value(pb->fields[i]->value);
    char err[ERRLEN] = "";
    ns_fieldset fs;
    if (ns_fieldset_from_pb(pb, type_of, NULL, &fs, err, sizeof(err)) != NS_VALUE_OK) {
        check_err(err);
        if (fs.n != 0)
            nsf_die("a refused field set is not empty");
        return;
    }
    for (size_t i = 0; i < fs.n; i++) {
        if (i > 0 && strcmp(fs.names[i - 1], fs.names[i]) >= 0)
            nsf_die("field set names out of order: %s, %s", fs.names[i - 1], fs.names[i]);
        check_canonical(type_of(fs.names[i], NULL), &fs.values[i]);
    }
    Napsync__V1__FieldSet again;
    if (ns_fieldset_to_pb(&fs, &again) != 0)
        nsf_die("ns_fieldset_to_pb failed");
    ns_fieldset back;
    if (ns_fieldset_from_pb(&again, type_of, NULL, &back, err, sizeof(err)) != NS_VALUE_OK)
        nsf_die("an accepted field set is refused on its way back: %s", err);
    if (back.n != fs.n)
        nsf_die("a field set reads back with %zu fields, not %zu", back.n, fs.n);
    for (size_t i = 0; i < fs.n; i++)
        if (strcmp(back.names[i], fs.names[i]) != 0 ||
            !ns_value_equal(&back.values[i], &fs.values[i]))
            nsf_die("field %s reads back different", fs.names[i]);
    ns_fieldset_free(&back);
    ns_fieldset_pb_clear(&again);
    ns_fieldset_free(&fs);
}

static void check_text(const char *s)
{
    if (s && ns_text_ok(s, 64) && strlen(s) > 64)
        nsf_die("ns_text_ok passed a text longer than its bound");
}

static void check_uuid(const char *s)
{
    char out[NS_UUID_SIZE];
    if (!ns_uuid_canon(s, out))
        return;
    char again[NS_UUID_SIZE];
    if (strlen(out) != 36 || !ns_uuid_canon(out, again) || strcmp(out, again) != 0)
        nsf_die("ns_uuid_canon(\"%s\") is not canonical", s);
    for (const char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            nsf_die("ns_uuid_canon(\"%s\") kept upper case", s);
}

static void check_mutation(const Napsync__V1__Mutation *m)
{
    if (m == NULL)
        return;
    check_uuid(m->mutation_id);
    check_uuid(m->record_id);
    check_text(m->entity_type);
    check_fieldset(m->fields);
}

static void check_result(const Napsync__V1__MutationResult *r)
{
    if (r == NULL)
        return;
    check_uuid(r->mutation_id);
    for (size_t i = 0; i < r->n_conflict_ids; i++)
        check_uuid(r->conflict_ids[i]);
    (void)ns_error_code_name(r->reject_code);
    check_text(r->reject_reason);
    check_text(r->reject_field);
}

static void check_scopes(size_t n, Napsync__V1__Scope *const *scopes)
{
    for (size_t i = 0; i < n; i++) {
        if (scopes[i] == NULL)
            continue;
        if (scopes[i]->kind_case == NAPSYNC__V1__SCOPE__KIND_PLAN_ID)
            check_uuid(scopes[i]->plan_id);
        else if (scopes[i]->kind_case == NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID)
            check_uuid(scopes[i]->organisation_id);
    }
}

static ns_compress *zstd;

static void walk(const ns_envelope *e);

static uint8_t *packed_or_die(const ns_envelope *e, size_t *n)
{
    uint8_t *b;
    if (ns_envelope_pack(e, &b, n) != 0)
        nsf_die("ns_envelope_pack failed");
    return b;
}

/* A compact page from the wire: refused with a message, or expanded into
 * an ordinary page whose own compact form expands to the same bytes. */
static void walk_compact(const ns_envelope *e)
{
    char err[ERRLEN] = "";
    ns_envelope *x = NULL;
    ns_page_compact_status st = ns_page_compact_expand(e, NS_FRAME_DEFAULT_MAX, &x, err, ERRLEN);
    if (st != NS_PAGE_COMPACT_OK) {
        if (x != NULL || err[0] == '\0')
            nsf_die("ns_page_compact_expand failed (%d) without a message, or with a page", st);
        check_err(err);
        return;
    }
    if (x == NULL || x->body_case != NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE ||
        x->request_id != e->request_id)
        nsf_die("ns_page_compact_expand gave no page, or another request's");
    size_t n1, n2, n3;
    uint8_t *b1 = packed_or_die(x, &n1);
    if (n1 > NS_FRAME_DEFAULT_MAX)
        nsf_die("an expanded page of %zu bytes is above the bound", n1);
    ns_page_compact *pc = NULL;
    if (ns_page_compact_make(x, &pc) != NS_PAGE_COMPACT_OK)
        nsf_die("an expanded page does not compact again");
    uint8_t *b2 = packed_or_die(ns_page_compact_envelope(pc), &n2);
    ns_page_compact_free(pc);
    ns_envelope *again = ns_envelope_unpack(b2, n2), *y = NULL;
    if (again == NULL ||
        ns_page_compact_expand(again, NS_FRAME_DEFAULT_MAX, &y, NULL, 0) != NS_PAGE_COMPACT_OK)
        nsf_die("a page compacted again does not expand");
    uint8_t *b3 = packed_or_die(y, &n3);
    if (n3 != n1 || memcmp(b1, b3, n1) != 0)
        nsf_die("a page expanded, compacted and expanded again differs");
    walk(x);
    free(b1);
    free(b2);
    free(b3);
    ns_envelope_free(again);
    ns_envelope_free(y);
    ns_envelope_free(x);
}

static void walk(const ns_envelope *e)
{
    switch (e->body_case) {
    case NAPSYNC__V1__ENVELOPE__BODY_COMPACT_PAGE:
        walk_compact(e);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_ZSTD: {
        ns_envelope *inner = NULL;
        ns_compress_status st =
            ns_compress_unpack(zstd, e->zstd.data, e->zstd.len, NS_FRAME_DEFAULT_MAX, &inner);
        if (st == NS_COMPRESS_OK) {
            if (inner == NULL || inner->body_case == NAPSYNC__V1__ENVELOPE__BODY_ZSTD)
                nsf_die("ns_compress_unpack gave %s",
                        inner ? "a nested Envelope{zstd}" : "nothing");
            walk(inner);
        } else if (inner != NULL) {
            nsf_die("ns_compress_unpack failed (%d) but gave an Envelope", (int)st);
        }
        ns_envelope_free(inner);
        break;
    }
    case NAPSYNC__V1__ENVELOPE__BODY_ERROR:
        (void)ns_error_code_name(e->error->code);
        check_text(e->error->message);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_HELLO:
        check_text(e->hello->client_name);
        check_text(e->hello->client_version);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_WELCOME: {
        const Napsync__V1__Welcome *w = e->welcome;
        check_text(w->server_name);
        check_text(w->session_id);
        if (w->organisation) {
            check_uuid(w->organisation->id);
            check_text(w->organisation->name);
        }
        for (size_t i = 0; i < w->n_roles; i++)
            check_text(w->roles[i]);
        break;
    }
    case NAPSYNC__V1__ENVELOPE__BODY_GOODBYE:
        check_text(e->goodbye->message);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_PUSH:
        for (size_t i = 0; i < e->push->n_mutations; i++)
            check_mutation(e->push->mutations[i]);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_PUSH_RESULT:
        for (size_t i = 0; i < e->push_result->n_results; i++)
            check_result(e->push_result->results[i]);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_PULL:
        check_text(e->pull->cursor);
        check_scopes(e->pull->n_scopes, e->pull->scopes);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE:
        for (size_t i = 0; i < e->change_page->n_records; i++) {
            const Napsync__V1__Record *r = e->change_page->records[i];
            if (r == NULL)
                continue;
            check_uuid(r->id);
            check_uuid(r->tenant_id);
            check_text(r->changed_at);
            check_fieldset(r->fields);
        }
        for (size_t i = 0; i < e->change_page->n_tenant_ids; i++)
            check_uuid(e->change_page->tenant_ids[i]);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_SUBSCRIBE:
        check_scopes(e->subscribe->n_scopes, e->subscribe->scopes);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_LIST_CONFLICTS:
        check_scopes(e->list_conflicts->n_scopes, e->list_conflicts->scopes);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_CONFLICT_LIST:
        for (size_t i = 0; i < e->conflict_list->n_conflicts; i++) {
            const Napsync__V1__Conflict *c = e->conflict_list->conflicts[i];
            if (c == NULL)
                continue;
            check_uuid(c->id);
            check_value(c->base_value);
            check_value(c->kept_value);
            check_value(c->other_value);
            check_fieldset(c->other_fields);
        }
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_RESOLVE_CONFLICT:
        check_uuid(e->resolve_conflict->conflict_id);
        check_uuid(e->resolve_conflict->mutation_id);
        check_value(e->resolve_conflict->value);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_MUTATION_RESULT:
        check_result(e->mutation_result);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_HISTORY:
        check_text(e->history->entity_type);
        check_uuid(e->history->record_id);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_HISTORY_PAGE:
        for (size_t i = 0; i < e->history_page->n_revisions; i++) {
            const Napsync__V1__Revision *r = e->history_page->revisions[i];
            if (r == NULL)
                continue;
            check_text(r->op);
            check_uuid(r->mutation_id);
            for (size_t j = 0; j < r->n_changed_fields; j++) {
                if (r->changed_fields[j] == NULL)
                    continue;
                check_value(r->changed_fields[j]->before);
                check_value(r->changed_fields[j]->after);
            }
        }
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_REPORT_REQUEST:
        check_text(e->report_request->kind);
        check_uuid(e->report_request->plan_id);
        check_uuid(e->report_request->region_id);
        break;
    case NAPSYNC__V1__ENVELOPE__BODY_REPORT_RESULT:
        check_text(e->report_result->kind);
        if (e->report_result->json && ns_text_ok(e->report_result->json, 1u << 20) &&
            strlen(e->report_result->json) > (1u << 20))
            nsf_die("ns_text_ok passed a report longer than its bound");
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (zstd == NULL && (zstd = ns_compress_new()) == NULL)
        nsf_die("out of memory");
    ns_envelope *e = ns_envelope_unpack(data, size);
    if (e == NULL)
        return 0;
    walk(e);

    /* What the peer sent can be packed again (the server echoes parts of
     * requests). Whether those bytes unpack again is protobuf-c's affair,
     * not ours: it keeps unknown fields with tags it would not accept. */
    uint8_t *packed;
    size_t n;
    if (ns_envelope_pack(e, &packed, &n) != 0)
        nsf_die("ns_envelope_pack failed");
    free(packed);
    ns_envelope_free(e);
    return 0;
}
