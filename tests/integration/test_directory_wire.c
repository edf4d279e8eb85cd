/* The directory end to end through the napsync CLI, a real napsyncd, TLS
 * and PostgreSQL: mogender's administrator enrols a person and a device
 * from its own device (`napsync put` of principal, principal_role and
 * device, then `napsync sync --directory`); the new device's certificate is
 * accepted with the role granted; what each principal sees of the
 * directory follows docs/authorisation.md; and a revocation pushed by the
 * administrator refuses the device from then on. */
#include <setjmp.h>
#include <stdarg.h>
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
    nst_device admin, coord, other, enrolled; /* other: mofa's administrator */
    char store_admin[NST_PATH], store_coord[NST_PATH], store_other[NST_PATH],
        store_enrolled[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];

static const char *store_of(fixture *f, const nst_device *d)
{
    return d == &f->admin   ? f->store_admin
           : d == &f->coord ? f->store_coord
           : d == &f->other ? f->store_other
                            : f->store_enrolled;
}

/* Runs `napsync ARGS...` as device d with its store; stdout in `out`. */
static int cli(fixture *f, const nst_device *d, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = nst_cli_v(f->e, d, store_of(f, d), out, sizeof(out), first, ap);
    va_end(ap);
    return rc;
}

static void must(fixture *f, int rc, const char *what)
{
    if (rc != 0)
        nst_fail(f->e, "%s exited %d: %s", what, rc, out);
}

static int lines_of(fixture *f, const nst_device *d, const char *type)
{
    must(f, cli(f, d, "list", type, "--json", NULL), "list");
    return nst_count_lines(out);
}

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    const nst_member m[] = {
        {&f->admin, "it-desk", "mogender", "IT Officer", "admin", f->store_admin, "admin.store"},
        {&f->coord, "coord-desk", "mogender", "Amina Coordinator", "coordinator", f->store_coord,
         "coord.store"},
        {&f->other, "mofa-it", "mofa", "MoFA IT", "admin", f->store_other, "other.store"},
        /* Enrolled by its test, through the directory. */
        {&f->enrolled, "district-tablet", NULL, NULL, NULL, f->store_enrolled, "enrolled.store"},
    };
    return nst_group_start(&f->e, "directory_wire", NULL, m, NST_COUNT(m));
}

static void test_enrol_see_revoke(void **state)
{
    fixture *f = *state;
    /* Not registered: refused. */
    assert_int_not_equal(cli(f, &f->enrolled, "whoami", NULL), 0);

    must(f, cli(f, &f->admin, "whoami", "--json", NULL), "whoami");
    char org[40], org_arg[80], person[40], person_arg[80], fp_arg[96], device[40];
    nst_json_get(out, "id", org, sizeof(org)); /* the organisation's, first */
    snprintf(org_arg, sizeof(org_arg), "organisation_id:ref=%s", org);
    must(f,
         cli(f, &f->admin, "put", "principal", "new", org_arg, "name=District Focal Point",
             "--json", NULL),
         "put principal");
    nst_json_get(out, "record_id", person, sizeof(person));
    snprintf(person_arg, sizeof(person_arg), "principal_id:ref=%s", person);
    must(f,
         cli(f, &f->admin, "put", "principal_role", "new", person_arg, org_arg, "role=implementer",
             NULL),
         "put role");
    snprintf(fp_arg, sizeof(fp_arg), "fingerprint=%s", f->enrolled.fp);
    must(f,
         cli(f, &f->admin, "put", "device", "new", person_arg, org_arg, "name=district-tablet",
             fp_arg, "--json", NULL),
         "put device");
    nst_json_get(out, "record_id", device, sizeof(device));
    must(f, cli(f, &f->admin, "sync", "--directory", "--json", NULL), "sync admin");
    must(f, cli(f, &f->admin, "status", "--json", NULL), "status");
    if (strstr(out, "\"pending\":0") == NULL || strstr(out, "\"rejected\":0") == NULL)
        nst_fail(f->e, "the administrator's changes were not all accepted: %s", out);

    /* The new device is in, as the person, with the role granted. */
    must(f, cli(f, &f->enrolled, "whoami", "--json", NULL), "whoami enrolled");
    assert_non_null(strstr(out, "District Focal Point"));
    assert_non_null(strstr(out, "\"implementer\""));

    /* What each sees of the directory. */
    must(f, cli(f, &f->coord, "sync", "--directory", "--json", NULL), "sync coord");
    must(f, cli(f, &f->other, "sync", "--directory", "--json", NULL), "sync other");
    int orgs = lines_of(f, &f->coord, "organisation");
    assert_true(orgs >= 2);
    assert_int_equal(lines_of(f, &f->other, "organisation"), orgs);
    /* mogender's people: the administrator, the coordinator, the new one. */
    assert_int_equal(lines_of(f, &f->coord, "principal"), 3);
    assert_non_null(strstr(out, "District Focal Point"));
    assert_int_equal(lines_of(f, &f->other, "principal"), 1); /* its own only */
    assert_null(strstr(out, "District Focal Point"));
    /* Devices: the coordinator its own, the administrator all of mogender's. */
    assert_int_equal(lines_of(f, &f->coord, "device"), 1);
    assert_non_null(strstr(out, "coord-desk"));
    must(f, cli(f, &f->admin, "sync", "--directory", "--json", NULL), "sync admin");
    assert_int_equal(lines_of(f, &f->admin, "device"), 3);
    assert_int_equal(lines_of(f, &f->other, "device"), 1);

    /* Neither the coordinator nor another organisation's administrator
     * changes mogender's directory: refused, kept in the outbox. */
    must(f, cli(f, &f->coord, "put", "principal", person, "name=Renamed", NULL), "put coord");
    must(f, cli(f, &f->coord, "sync", "--directory", "--json", NULL), "sync coord");
    must(f, cli(f, &f->coord, "status", "--json", NULL), "status coord");
    if (strstr(out, "\"rejected\":1") == NULL)
        nst_fail(f->e, "the coordinator's change was not refused: %s", out);

    /* Revoked by the administrator: refused from the next connection on. */
    must(f, cli(f, &f->admin, "put", "device", device, "revoked:bool=true", NULL), "put revoked");
    must(f, cli(f, &f->admin, "sync", "--directory", "--json", NULL), "sync revoke");
    must(f, cli(f, &f->admin, "status", "--json", NULL), "status");
    if (strstr(out, "\"pending\":0") == NULL || strstr(out, "\"rejected\":0") == NULL)
        nst_fail(f->e, "the revocation was not accepted: %s", out);
    assert_int_not_equal(cli(f, &f->enrolled, "whoami", NULL), 0);
    /* Both steps in the device's history, by the administrator. */
    must(f, cli(f, &f->admin, "history", "device", device, "--json", NULL), "history");
    assert_int_equal(nst_count_lines(out), 2);
    assert_non_null(strstr(out, "IT Officer"));
    assert_int_not_equal(cli(f, &f->coord, "history", "device", device, "--json", NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enrol_see_revoke),
    };
    return cmocka_run_group_tests(tests, group_setup, nst_group_teardown);
}
