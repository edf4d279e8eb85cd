/* Compressed frames (proto/compress.h): what goes in comes out, small
 * frames stay as they are, a page of records shrinks, and hostile input —
 * garbage, a frame claiming more than the receiver accepts, a compressed
 * frame inside a compressed frame — is refused without allocating what it
 * claims. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "compress.h"
#include "zdict.h"

#define NRECORDS 40

/* A ChangePage of NRECORDS indicator reports, shaped like the demo's. */
typedef struct {
    Napsync__V1__Record rec[NRECORDS];
    Napsync__V1__Record *recp[NRECORDS];
    Napsync__V1__Field fv[NRECORDS][4];
    Napsync__V1__Field *fvp[NRECORDS][4];
    Napsync__V1__FieldSet fs[NRECORDS];
    Napsync__V1__Value val[NRECORDS][4];
    char id[NRECORDS][40], value[NRECORDS][16];
    Napsync__V1__ChangePage page;
    ns_envelope env;
} page_fixture;

static void make_page(page_fixture *p)
{
    memset(p, 0, sizeof(*p));
    static const char *const names[4] = {"status", "narrative", "value", "period_start"};
    for (int i = 0; i < NRECORDS; i++) {
        napsync__v1__record__init(&p->rec[i]);
        snprintf(p->id[i], sizeof(p->id[i]), "2c000000-0000-4000-8000-%012d", i);
        snprintf(p->value[i], sizeof(p->value[i]), "%d.5", 10 + i * 7);
        p->rec[i].entity_type = "indicator_report";
        p->rec[i].id = p->id[i];
        p->rec[i].version = 1 + (uint64_t)i % 3;
        p->rec[i].tenant_id = "d0000000-0000-4000-8000-000000000001";
        p->rec[i].changed_by = "Demo Coordinator";
        p->rec[i].changed_at = "2026-11-24T09:07:16.488679Z";
        for (int k = 0; k < 4; k++) {
            napsync__v1__field__init(&p->fv[i][k]);
            napsync__v1__value__init(&p->val[i][k]);
            p->val[i][k].kind_case = NAPSYNC__V1__VALUE__KIND_TEXT_VALUE;
            p->val[i][k].text_value = k == 0   ? "submitted"
                                      : k == 1 ? "Figures from the district registers"
                                      : k == 2 ? p->value[i]
                                               : "2025-01-01";
            p->fv[i][k].name = (char *)names[k];
            p->fv[i][k].value = &p->val[i][k];
            p->fvp[i][k] = &p->fv[i][k];
        }
        napsync__v1__field_set__init(&p->fs[i]);
        p->fs[i].n_fields = 4;
        p->fs[i].fields = p->fvp[i];
        p->rec[i].fields = &p->fs[i];
        p->recp[i] = &p->rec[i];
    }
    napsync__v1__change_page__init(&p->page);
    p->page.n_records = NRECORDS;
    p->page.records = p->recp;
    p->page.next_cursor = "v1.5f2c7e1c-0d8e-4a7c-9b0e-0c2e54b9a8f1.874";
    napsync__v1__envelope__init(&p->env);
    p->env.request_id = 7;
    p->env.body_case = NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE;
    p->env.change_page = &p->page;
}

/* Unpacks a frame payload the way a receiver does. */
static ns_envelope *receive(ns_compress *z, const uint8_t *payload, size_t len, size_t max,
                            ns_compress_status *st)
{
    ns_envelope *outer = ns_envelope_unpack(payload, len);
    assert_non_null(outer);
    if (outer->body_case != NAPSYNC__V1__ENVELOPE__BODY_ZSTD) {
        *st = NS_COMPRESS_OK;
        return outer;
    }
    ns_envelope *inner = NULL;
    *st = ns_compress_unpack(z, outer->zstd.data, outer->zstd.len, max, &inner);
    ns_envelope_free(outer);
    return inner;
}

static void test_round_trip_and_ratio(void **state)
{
    (void)state;
    ns_compress *z = ns_compress_new();
    assert_non_null(z);
    page_fixture *p = malloc(sizeof(*p));
    assert_non_null(p);
    make_page(p);
    size_t plain = napsync__v1__envelope__get_packed_size(&p->env);
    uint8_t *out;
    size_t len;
    assert_int_equal(ns_compress_pack(z, &p->env, &out, &len), NS_COMPRESS_OK);
    /* Repetitive records shrink to well under half. */
    assert_true(len * 3 < plain);
    ns_compress_status st;
    ns_envelope *back = receive(z, out, len, 1 << 20, &st);
    assert_int_equal(st, NS_COMPRESS_OK);
    assert_non_null(back);
    assert_int_equal(back->body_case, NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE);
    assert_int_equal(back->request_id, 7);
    assert_int_equal(back->change_page->n_records, NRECORDS);
    assert_string_equal(back->change_page->records[39]->id, p->id[39]);
    assert_string_equal(back->change_page->records[39]->fields->fields[2]->value->text_value,
                        p->value[39]);
    /* The same bytes as the plain packing. */
    uint8_t *a, *b;
    size_t alen, blen;
    assert_int_equal(ns_envelope_pack(&p->env, &a, &alen), 0);
    assert_int_equal(ns_envelope_pack(back, &b, &blen), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    free(a);
    free(b);
    ns_envelope_free(back);
    /* Smaller than the receiver's maximum: refused, nothing decompressed. */
    back = receive(z, out, len, plain - 1, &st);
    assert_null(back);
    assert_int_equal(st, NS_COMPRESS_TOO_LARGE);
    free(out);
    free(p);
    ns_compress_free(z);
}

static void test_small_frames_stay_plain(void **state)
{
    (void)state;
    ns_compress *z = ns_compress_new();
    Napsync__V1__Ping ping = NAPSYNC__V1__PING__INIT;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = 1;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PING;
    env.ping = &ping;
    uint8_t *out;
    size_t len;
    assert_int_equal(ns_compress_pack(z, &env, &out, &len), NS_COMPRESS_OK);
    ns_envelope *back = ns_envelope_unpack(out, len);
    assert_int_equal(back->body_case, NAPSYNC__V1__ENVELOPE__BODY_PING);
    ns_envelope_free(back);
    free(out);
    /* Without a compressor (nothing agreed): as it is, whatever its size. */
    page_fixture *p = malloc(sizeof(*p));
    make_page(p);
    assert_int_equal(ns_compress_pack(NULL, &p->env, &out, &len), NS_COMPRESS_OK);
    assert_int_equal(len, napsync__v1__envelope__get_packed_size(&p->env));
    free(out);
    free(p);
    ns_compress_free(z);
}

static void test_hostile_input(void **state)
{
    (void)state;
    ns_compress *z = ns_compress_new();
    ns_envelope *inner = NULL;
    static const uint8_t garbage[] = "not zstd at all, not even close";
    assert_int_equal(ns_compress_unpack(z, garbage, sizeof(garbage), 1 << 20, &inner),
                     NS_COMPRESS_INVALID);
    assert_int_equal(ns_compress_unpack(z, garbage, 0, 1 << 20, &inner), NS_COMPRESS_INVALID);

    /* A bomb: 64 MiB of zeros compresses to a few kilobytes. */
    size_t big = 64u << 20;
    uint8_t *zeros = calloc(1, big);
    size_t cap = ZSTD_compressBound(big);
    uint8_t *bomb = malloc(cap);
    size_t n = ZSTD_compress(bomb, cap, zeros, big, 1);
    assert_false(ZSTD_isError(n));
    assert_true(n < 64 * 1024);
    assert_int_equal(ns_compress_unpack(z, bomb, n, 16u << 20, &inner), NS_COMPRESS_TOO_LARGE);
    /* Within the limit, but not an Envelope. */
    n = ZSTD_compress(bomb, cap, zeros, 1000, 1);
    assert_int_equal(ns_compress_unpack(z, bomb, n, 16u << 20, &inner), NS_COMPRESS_INVALID);
    /* Truncated. */
    assert_int_equal(ns_compress_unpack(z, bomb, n - 3, 16u << 20, &inner), NS_COMPRESS_INVALID);
    free(zeros);
    free(bomb);

    /* A compressed frame inside a compressed frame. */
    page_fixture *p = malloc(sizeof(*p));
    make_page(p);
    uint8_t *once;
    size_t once_len;
    assert_int_equal(ns_compress_pack(z, &p->env, &once, &once_len), NS_COMPRESS_OK);
    cap = ZSTD_compressBound(once_len);
    uint8_t *twice = malloc(cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    n = ZSTD_compress_usingDict(cctx, twice, cap, once, once_len, ns_zdict_1, ns_zdict_1_len, 3);
    ZSTD_freeCCtx(cctx);
    assert_false(ZSTD_isError(n));
    assert_int_equal(ns_compress_unpack(z, twice, n, 16u << 20, &inner), NS_COMPRESS_INVALID);
    assert_null(inner);
    free(once);
    free(twice);
    free(p);
    ns_compress_free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_ratio),
        cmocka_unit_test(test_small_frames_stay_plain),
        cmocka_unit_test(test_hostile_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
