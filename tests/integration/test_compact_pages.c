/* Compact pages end to end (docs/protocol.md "Compact pages"), through a
 * real napsyncd, TLS and PostgreSQL: a session whose Hello does not offer
 * them (an older client) gets ordinary ChangePages; one that offers them is
 * told so in Welcome and gets every page as compact_page, which expands to
 * exactly the bytes the older client got, page after page; and libnapsync,
 * which offers them, syncs the same records into its store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "page_compact.h"

#define OUT_CAP 65536
#define NPLANS  5

typedef struct {
    nst_env *e;
    nst_device coord;
    char store[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];

static void must(fixture *f, int rc, const char *what)
{
    if (rc != 0)
        nst_fail(f->e, "%s exited %d: %s", what, rc, out);
}

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    const nst_member m[] = {
        {.dev = &f->coord,
         .name = "coord-desk",
         .org = "mogender",
         .principal = "Amina Coordinator",
         .role = "coordinator",
         .store = f->store,
         .file = "coord.store"},
    };
    return nst_group_start(&f->e, "compact_pages", NULL, m, NST_COUNT(m));
}

/* Hello, offering compact pages or not, and the Welcome's page format. */
static Napsync__V1__PageFormat raw_hello(fixture *f, nst_raw *r, bool compact)
{
    nst_must_raw_tls(f->e, r, &f->coord);
    Napsync__V1__Hello h = NAPSYNC__V1__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 1;
    h.client_name = "test_compact_pages";
    Napsync__V1__PageFormat formats[] = {(Napsync__V1__PageFormat)77, /* a newer one: skipped */
                                         NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_COMPACT_1};
    if (compact) {
        h.n_page_formats = 2;
        h.page_formats = formats;
    }
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = 1;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    if (nst_raw_send_env(r, &env) != 0)
        nst_fail(f->e, "sending Hello failed: %s", r->error);
    ns_envelope *w = nst_expect_frame(f->e, r, NAPSYNC__V1__ENVELOPE__BODY_WELCOME);
    Napsync__V1__PageFormat pf = w->welcome->page_format;
    ns_envelope_free(w);
    return pf;
}

/* Pulls everything of organisation org in pages of 2; each page packed as
 * an ordinary Envelope, the compact ones expanded first. Returns how many. */
static size_t pull_all(fixture *f, nst_raw *r, bool compact, const char *org, uint8_t **pages,
                       size_t *lens, size_t max)
{
    char cursor[256] = "";
    size_t n = 0;
    for (int more = 1; more;) {
        if (n == max)
            nst_fail(f->e, "more than %zu pages", max);
        Napsync__V1__Scope scope = NAPSYNC__V1__SCOPE__INIT;
        scope.kind_case = NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID;
        scope.organisation_id = (char *)org;
        Napsync__V1__Scope *scopes[] = {&scope};
        Napsync__V1__Pull pull = NAPSYNC__V1__PULL__INIT;
        pull.cursor = cursor;
        pull.scopes = scopes;
        pull.n_scopes = 1;
        pull.page_size = 2;
        ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
        env.request_id = 10 + n;
        env.body_case = NAPSYNC__V1__ENVELOPE__BODY_PULL;
        env.pull = &pull;
        if (nst_raw_send_env(r, &env) != 0)
            nst_fail(f->e, "sending Pull failed: %s", r->error);
        ns_envelope *got = nst_expect_frame(f->e, r,
                                            compact ? NAPSYNC__V1__ENVELOPE__BODY_COMPACT_PAGE
                                                    : NAPSYNC__V1__ENVELOPE__BODY_CHANGE_PAGE);
        if (compact) {
            ns_envelope *x = NULL;
            char why[200] = "";
            ns_page_compact_status st = ns_page_compact_expand(got, 1u << 20, &x, why, sizeof(why));
            ns_envelope_free(got);
            if (st != NS_PAGE_COMPACT_OK)
                nst_fail(f->e, "page %zu does not expand: %s", n, why);
            got = x;
        }
        more = got->change_page->more;
        snprintf(cursor, sizeof(cursor), "%s", got->change_page->next_cursor);
        assert_int_equal(ns_envelope_pack(got, &pages[n], &lens[n]), 0);
        ns_envelope_free(got);
        n++;
    }
    return n;
}

static void test_old_and_compact_clients_agree(void **state)
{
    fixture *f = *state;
    must(f, nst_cli(f->e, &f->coord, f->store, out, sizeof(out), "whoami", "--json", NULL),
         "whoami");
    char org[40];
    nst_json_get(out, "id", org, sizeof(org));
    char plan[40] = "", title[64];
    for (int i = 0; i < NPLANS; i++) {
        snprintf(title, sizeof(title), "title=Plan %d — Wanawake, amani na usalama", i);
        must(f,
             nst_cli(f->e, &f->coord, f->store, out, sizeof(out), "put", "plan", "new", title,
                     "status=draft", NST_PLAN_ASSIGN, "--json", NULL),
             "put plan");
        nst_json_get(out, "record_id", plan, sizeof(plan));
    }
    /* A second version of the last one: its null summary now has text. */
    must(f,
         nst_cli(f->e, &f->coord, f->store, out, sizeof(out), "put", "plan", plan,
                 "summary=Revised after the district consultations", NULL),
         "update plan");
    must(f, nst_cli(f->e, &f->coord, f->store, out, sizeof(out), "sync", "--json", NULL), "sync");

    enum { MAXP = 16 };
    uint8_t *old_pages[MAXP], *new_pages[MAXP];
    size_t old_lens[MAXP], new_lens[MAXP];
    nst_raw old, neu;
    assert_int_equal(raw_hello(f, &old, false), NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_ORDINARY);
    assert_int_equal(raw_hello(f, &neu, true), NAPSYNC__V1__PAGE_FORMAT__PAGE_FORMAT_COMPACT_1);
    size_t n_old = pull_all(f, &old, false, org, old_pages, old_lens, MAXP);
    size_t n_new = pull_all(f, &neu, true, org, new_pages, new_lens, MAXP);
    nst_raw_close(&old);
    nst_raw_close(&neu);
    assert_int_equal(n_old, n_new);
    assert_true(n_old >= 3); /* five plans in pages of two */
    for (size_t i = 0; i < n_old; i++) {
        assert_int_equal(old_lens[i], new_lens[i]);
        assert_memory_equal(old_pages[i], new_pages[i], old_lens[i]);
        free(old_pages[i]);
        free(new_pages[i]);
    }

    /* libnapsync offers compact pages: a fresh store gets every plan. */
    char fresh[NST_PATH];
    assert_int_equal(nst_path_join(fresh, f->e->dir, "fresh.store"), 0);
    must(f, nst_cli(f->e, &f->coord, fresh, out, sizeof(out), "sync", "--json", NULL),
         "sync fresh");
    must(f, nst_cli(f->e, &f->coord, fresh, out, sizeof(out), "list", "plan", "--json", NULL),
         "list");
    assert_int_equal(nst_count_lines(out), NPLANS);
    assert_non_null(strstr(out, "Revised after the district consultations"));
    assert_non_null(strstr(out, "Wanawake, amani na usalama"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_and_compact_clients_agree),
    };
    return cmocka_run_group_tests(tests, group_setup, nst_group_teardown);
}
