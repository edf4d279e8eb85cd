/* Gaining and losing read access (issue 4 item 6), end to end through the
 * napsync CLI: a mofa device syncs an adopted plan P of mogender by
 * `--plan P`; mogender turns P back into a draft, and mofa's next sync
 * (refused: PERMISSION_DENIED hides drafts) purges P's records from its
 * replica; mogender adopts P again and edits it, and mofa's next sync
 * backfills every record of P, one that last changed before mofa's cursor
 * included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define OUT_CAP 65536

typedef struct {
    nst_env *e;
    nst_device a, m; /* a: mogender coordinator; m: mofa */
    char store_a[NST_PATH], store_m[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];

/* Runs `napsync ARGS...` as device d with its store; stdout in `out`.
 * Returns the exit status. */
static int cli(fixture *f, const nst_device *d, const char *first, ...)
{
    const char *store = d == &f->a ? f->store_a : f->store_m;
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(f->e, d, store, out, sizeof(out), first, ap);
    va_end(ap);
    return rc;
}

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
        {&f->a, "field-office-a", "mogender", "Amina Coordinator", "coordinator", f->store_a,
         "a.store"},
        {&f->m, "mofa-desk", "mofa", "Desk Officer", "implementer", f->store_m, "m.store"},
    };
    return nst_group_start(&f->e, "access", NULL, m, NST_COUNT(m));
}

static void test_lose_and_regain(void **state)
{
    fixture *f = *state;
    char p[40], ind[40], plan_arg[60];
    must(f,
         cli(f, &f->a, "put", "plan", "new", "title=Shared plan", "status=adopted", NST_PLAN_ASSIGN,
             "--json", NULL),
         "put plan");
    nst_json_get(out, "record_id", p, sizeof(p));
    snprintf(plan_arg, sizeof(plan_arg), "plan_id:ref=%s", p);
    must(f,
         cli(f, &f->a, "put", "indicator", "new", plan_arg, "title=Women in delegations",
             NST_INDICATOR_ASSIGN, "--json", NULL),
         "put indicator");
    nst_json_get(out, "record_id", ind, sizeof(ind));
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync a");

    /* Readable: mofa gets the plan and its indicator. */
    must(f, cli(f, &f->m, "sync", "--plan", p, "--json", NULL), "sync m (adopted)");
    must(f, cli(f, &f->m, "list", "plan", "--json", NULL), "list plan");
    assert_int_equal(nst_count_lines(out), 1);
    assert_non_null(strstr(out, p));
    must(f, cli(f, &f->m, "list", "indicator", "--json", NULL), "list indicator");
    assert_int_equal(nst_count_lines(out), 1);
    assert_non_null(strstr(out, ind));

    /* A change elsewhere moves mofa's cursor past the indicator's last
     * change: only a backfill can bring the indicator back later. */
    char other[40];
    must(f,
         cli(f, &f->a, "put", "plan", "new", "title=Other", "status=adopted", NST_PLAN_ASSIGN,
             "--json", NULL),
         "put other");
    nst_json_get(out, "record_id", other, sizeof(other));
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync a");
    must(f, cli(f, &f->m, "sync", "--plan", p, "--json", NULL), "sync m (cursor moves)");

    /* Draft again: refused, and nothing of P stays on mofa's device. */
    must(f, cli(f, &f->a, "put", "plan", p, "status=draft", NULL), "put draft");
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync a");
    assert_int_not_equal(cli(f, &f->m, "sync", "--plan", p, "--json", NULL), 0);
    must(f, cli(f, &f->m, "list", "plan", "--json", NULL), "list plan");
    assert_int_equal(nst_count_lines(out), 0);
    must(f, cli(f, &f->m, "list", "indicator", "--json", NULL), "list indicator");
    assert_int_equal(nst_count_lines(out), 0);

    /* Adopted again and edited while mofa could not see it: the next
     * sync brings every record of P back, the edit included. */
    must(f, cli(f, &f->a, "put", "plan", p, "title=Shared plan v2", NULL), "put title");
    must(f, cli(f, &f->a, "put", "plan", p, "status=adopted", NULL), "put adopted");
    must(f, cli(f, &f->a, "sync", "--json", NULL), "sync a");
    must(f, cli(f, &f->m, "sync", "--plan", p, "--json", NULL), "sync m (backfill)");
    must(f, cli(f, &f->m, "list", "plan", "--json", NULL), "list plan");
    assert_int_equal(nst_count_lines(out), 1);
    assert_non_null(strstr(out, "Shared plan v2"));
    must(f, cli(f, &f->m, "list", "indicator", "--json", NULL), "list indicator");
    assert_int_equal(nst_count_lines(out), 1);
    assert_non_null(strstr(out, ind));
    assert_non_null(strstr(out, "Women in delegations"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lose_and_regain),
    };
    return cmocka_run_group_tests_name("access", tests, group_setup, nst_group_teardown);
}
