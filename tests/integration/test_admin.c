/* `napsyncd admin` (daemon/admin.c) against a real napsyncd and
 * PostgreSQL: every command in text and --json, the help of each level,
 * and the errors with their exit statuses (usage 2, not found 3, exists 4,
 * permission 5, connection and schema 1). What the commands write must be
 * versioned and logged by sql/009's triggers: each change has a revision
 * by the administrator (principal NULL) and a feed row, a device it
 * registers connects, a device syncing the directory receives the changes,
 * and a revoked device is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "harness.h"

#define OUT_CAP 65536
/* napsyncd's own database role in the harness (harness.c): not a
 * superuser, no BYPASSRLS. */
#define DAEMON_ROLE "napsyncd"

typedef struct {
    nst_env *e;
    char su[1024];     /* the cluster's superuser on the test database */
    char daemon[1024]; /* napsyncd's role on it */
    nst_device it;     /* mogender's administrator: syncs the directory */
    char store_it[NST_PATH];
} fixture;
NST_FIXTURE_CHECK(fixture);

static char out[OUT_CAP];

/* `napsyncd --database DB admin ARGS...` (NULL terminated). With both,
 * stderr joins stdout in `out`; else `out` is stdout alone. Returns the
 * exit status. */
static int admin_v(const fixture *f, const char *db, bool both, const char *first, va_list ap)
{
    char *argv[48];
    int n = 0;
    argv[n++] = f->e->napsyncd;
    if (db != NULL) {
        argv[n++] = "--database";
        argv[n++] = (char *)db;
    }
    argv[n++] = "admin";
    for (const char *a = first; a != NULL && n < 47; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    argv[n] = NULL;
    out[0] = '\0';
    return both ? nst_run_no_tty(argv, out, sizeof(out)) : nst_run(argv, out, sizeof(out));
}

/* As the superuser, stdout only. */
static int admin(const fixture *f, const char *first, ...) __attribute__((sentinel));
static int admin(const fixture *f, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = admin_v(f, f->su, false, first, ap);
    va_end(ap);
    return rc;
}

/* As the superuser, stdout and stderr. */
static int admin_all(const fixture *f, const char *first, ...) __attribute__((sentinel));
static int admin_all(const fixture *f, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = admin_v(f, f->su, true, first, ap);
    va_end(ap);
    return rc;
}

/* With another connection string (NULL: none), stdout and stderr. */
static int admin_db(const fixture *f, const char *db, const char *first, ...)
    __attribute__((sentinel));
static int admin_db(const fixture *f, const char *db, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = admin_v(f, db, true, first, ap);
    va_end(ap);
    return rc;
}

static void expect_rc(const fixture *f, int got, int want, const char *what)
{
    if (got != want)
        nst_fail(f->e, "%s: exit status %d, expected %d; output:\n%s", what, got, want, out);
}

static void expect_out(const fixture *f, const char *needle, const char *what)
{
    if (strstr(out, needle) == NULL)
        nst_fail(f->e, "%s: the output lacks \"%s\":\n%s", what, needle, out);
}

/* `out` as one JSON object (the caller frees). */
static json_t *out_json(const fixture *f, const char *what)
{
    json_error_t jerr;
    json_t *o = json_loads(out, 0, &jerr);
    if (o == NULL || !json_is_object(o))
        nst_fail(f->e, "%s: not one JSON object (%s):\n%s", what, jerr.text, out);
    return o;
}

static const char *jstr(const fixture *f, json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (v == NULL)
        nst_fail(f->e, "no string \"%s\" in %s", key, out);
    return v;
}

static bool jbool(const fixture *f, json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        nst_fail(f->e, "no boolean \"%s\" in %s", key, out);
    return json_is_true(v);
}

/* An error printed with --json: {"error":NAME,...} on stdout. */
static void expect_json_error(const fixture *f, const char *name, const char *what)
{
    json_t *o = out_json(f, what);
    if (strcmp(jstr(f, o, "error"), name) != 0 || json_object_get(o, "message") == NULL)
        nst_fail(f->e, "%s: expected error %s, got %s", what, name, out);
    json_decref(o);
}

/* One value of a query on the test database, as the superuser. */
static void db_value(const fixture *f, const char *sql, const char *param, char *val, size_t cap)
{
    const char *params[] = {param};
    if (nst_db_exec(f->e, sql, param ? 1 : 0, params, val, cap) != 0)
        nst_fail(f->e, "query failed: %s", sql);
}

/* The record was written the way an administrator's SQL is: its newest
 * revision has no principal, the given operation, and a feed row. */
static void expect_logged(const fixture *f, const char *id, const char *op)
{
    char got[128];
    db_value(f,
             "SELECT r.op || ':' || (r.principal_id IS NULL) || ':' ||"
             " (SELECT count(*) FROM sync_feed s WHERE s.record_id = r.record_id"
             " AND s.version = r.version)"
             " FROM sync_revisions r WHERE r.record_id = $1::uuid ORDER BY r.version DESC LIMIT 1",
             id, got, sizeof(got));
    char want[64];
    snprintf(want, sizeof(want), "%s:true:1", op);
    if (strcmp(got, want) != 0)
        nst_fail(f->e, "record %s: newest revision %s, expected %s (op:by administrator:feed rows)",
                 id, got, want);
}

static int group_setup(void **state)
{
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
    const nst_member m[] = {
        {&f->it, "it-desk", "mogender", "IT Officer", "admin", f->store_it, "it.store"},
    };
    if (nst_group_start(&f->e, "admin", NULL, m, NST_COUNT(m)) != 0)
        return -1;
    nst_conninfo(f->e, f->e->pg.user, f->e->dbname, f->su, sizeof(f->su));
    nst_conninfo(f->e, DAEMON_ROLE, f->e->dbname, f->daemon, sizeof(f->daemon));
    return 0;
}

/* ---- help and usage ---------------------------------------------------------------------- */

static void test_help(void **state)
{
    fixture *f = *state;
    expect_rc(f, admin(f, "--help", NULL), 0, "admin --help");
    expect_out(f, "device register", "admin --help");
    expect_out(f, "BYPASSRLS", "admin --help");
    expect_rc(f, admin(f, "device", "--help", NULL), 0, "admin device --help");
    expect_out(f, "device revoke", "admin device --help");
    if (strstr(out, "organisation add") != NULL)
        nst_fail(f->e, "admin device --help lists other objects' commands:\n%s", out);
    expect_rc(f, admin(f, "device", "register", "--help", NULL), 0, "device register --help");
    expect_out(f, "--fingerprint SHA256", "device register --help");
    expect_rc(f, admin(f, "help", "role", "grant", NULL), 0, "admin help role grant");
    expect_out(f, "--in ORG2", "admin help role grant");
    expect_rc(f, admin(f, "feed", "new-epoch", "--help", NULL), 0, "feed new-epoch --help");
    expect_out(f, "restor", "feed new-epoch --help");
    char *daemon_help[] = {f->e->napsyncd, "--help", NULL};
    expect_rc(f, nst_run(daemon_help, out, sizeof(out)), 0, "napsyncd --help");
    expect_out(f, "admin OBJECT VERB", "napsyncd --help");
    nst_test_passed(f->e);
}

static void test_usage_errors(void **state)
{
    fixture *f = *state;
    expect_rc(f, admin_all(f, NULL, NULL), 2, "admin alone");
    expect_out(f, "no command given", "admin alone");
    expect_rc(f, admin_all(f, "spaceship", "list", NULL), 2, "unknown object");
    expect_out(f, "unknown object 'spaceship'", "unknown object");
    expect_rc(f, admin_all(f, "device", "frobnicate", NULL), 2, "unknown verb");
    expect_out(f, "unknown command 'device frobnicate'", "unknown verb");
    expect_rc(f, admin_all(f, "device", NULL), 2, "object without verb");
    expect_rc(f, admin_all(f, "device", "list", "--bogus", NULL), 2, "unknown option");
    expect_out(f, "unknown option '--bogus'", "unknown option");
    expect_rc(f, admin(f, "--json", "device", "list", "--bogus", NULL), 2, "unknown option, json");
    expect_json_error(f, "invalid_argument", "unknown option, json");
    expect_rc(f, admin_all(f, "device", "list", "--organisation", NULL), 2, "option value missing");
    expect_out(f, "--organisation needs a value", "option value missing");
    expect_rc(f, admin_all(f, "device", "list", "--deleted", "--deleted", NULL), 2, "twice");
    expect_rc(f, admin_all(f, "device", "list", "--deleted=yes", NULL), 2, "switch with value");
    expect_rc(f, admin_all(f, "role", "grant", "mogender", "IT Officer", NULL), 2,
              "missing argument");
    expect_out(f, "usage: napsyncd admin role grant ORG PRINCIPAL ROLE", "missing argument");
    expect_rc(f, admin_all(f, "device", "revoke", "a", "b", NULL), 2, "extra argument");
    expect_rc(f, admin_all(f, "organisation", "list", "bad\x01word", NULL), 2, "control character");
    expect_out(f, "control character", "control character");
    expect_rc(f, admin_all(f, "organisation", "list", "\xff", NULL), 2, "not UTF-8");
    expect_out(f, "not valid UTF-8", "not UTF-8");
    /* No database in the settings: only --help works. */
    expect_rc(f, admin_db(f, NULL, "organisation", "list", NULL), 2, "no database");
    expect_out(f, "no database given", "no database");
    expect_rc(f, admin_db(f, NULL, "organisation", "list", "--help", NULL), 0, "no database, help");
    /* A malformed connection string is refused before libpq sees it, and
     * never printed: it may hold the password. */
    expect_rc(f, admin_db(f, "password=sekret dbname", "organisation", "list", NULL), 2,
              "malformed conninfo");
    if (strstr(out, "sekret") != NULL)
        nst_fail(f->e, "the connection string was printed:\n%s", out);
    /* Settings go before "admin", which takes no action flags. */
    char *both[] = {f->e->napsyncd, "--database", f->su,  "--migrate",
                    "admin",        "feed",       "show", NULL};
    expect_rc(f, nst_run_no_tty(both, out, sizeof(out)), 2, "--migrate admin");
    nst_test_passed(f->e);
}

/* ---- organisations ---------------------------------------------------------------------- */

static void test_organisations(void **state)
{
    fixture *f = *state;
    expect_rc(f,
              admin(f, "--json", "organisation", "add", "moj", "--name", "Ministry of Justice",
                    "--kind", "ministry", "--country", "ZZ", "--parent", "mogender",
                    "--default-role", "observer", NULL),
              0, "organisation add");
    json_t *o = out_json(f, "organisation add");
    char id[64];
    snprintf(id, sizeof(id), "%s", jstr(f, o, "id"));
    if (strcmp(jstr(f, o, "code"), "moj") != 0 ||
        strcmp(jstr(f, o, "name"), "Ministry of Justice") != 0 ||
        strcmp(jstr(f, o, "kind"), "ministry") != 0 || strcmp(jstr(f, o, "country"), "ZZ") != 0 ||
        strcmp(jstr(f, o, "parent"), "mogender") != 0 ||
        strcmp(jstr(f, o, "default_role"), "observer") != 0 || !jbool(f, o, "changed") ||
        jbool(f, o, "deleted") || json_integer_value(json_object_get(o, "version")) != 1)
        nst_fail(f->e, "organisation add answered %s", out);
    json_decref(o);
    expect_logged(f, id, "create");

    /* Text: one line each, the header first. */
    expect_rc(f, admin(f, "organisation", "list", NULL), 0, "organisation list");
    expect_out(f, "CODE", "organisation list");
    expect_out(f, "Ministry of Justice", "organisation list");
    int text_lines = nst_count_lines(out);
    expect_rc(f, admin(f, "organisation", "list", "--json", NULL), 0, "organisation list --json");
    if (nst_count_lines(out) + 1 != text_lines || strstr(out, "\"code\":\"moj\"") == NULL)
        nst_fail(f->e, "organisation list --json: %d lines for %d in text:\n%s",
                 nst_count_lines(out), text_lines, out);

    expect_rc(f, admin_all(f, "organisation", "add", "moj", "--name", "X", "--kind", "cso", NULL),
              4, "organisation add twice");
    expect_out(f, "exists already", "organisation add twice");
    expect_rc(
        f, admin(f, "--json", "organisation", "add", "moj", "--name", "X", "--kind", "cso", NULL),
        4, "organisation add twice, json");
    expect_json_error(f, "already_exists", "organisation add twice, json");
    expect_rc(
        f, admin_all(f, "organisation", "add", "space", "--name", "X", "--kind", "spaceship", NULL),
        2, "bad kind");
    expect_out(f, "organisation.kind", "bad kind");
    expect_rc(f,
              admin_all(f, "organisation", "add", "Bad_Code", "--name", "X", "--kind", "cso", NULL),
              2, "bad code");
    expect_out(f, "organisation.code", "bad code");
    expect_rc(f,
              admin_all(f, "organisation", "add", "orphan", "--name", "X", "--kind", "cso",
                        "--parent", "nosuch", NULL),
              3, "unknown parent");
    expect_out(f, "no organisation with code 'nosuch'", "unknown parent");
    expect_rc(f, admin_all(f, "organisation", "add", "nameless", "--kind", "cso", NULL), 2,
              "no --name");
    expect_rc(f,
              admin_all(f, "organisation", "add", "x1", "--name", "X", "--kind", "cso",
                        "--default-role", "boss", NULL),
              2, "bad default role");
    char n[32];
    db_value(f, "SELECT count(*) FROM organisations WHERE code <> ALL ($1::text[])",
             "{mogender,mofa,defence,police,wpsnet,parliament,regional,donors,xa-women,xb-gender,"
             "moj}",
             n, sizeof(n));
    if (strcmp(n, "0") != 0)
        nst_fail(f->e, "refused organisations were written: %s", n);

    /* --deleted (a switch at another place in each list's options): a
     * deleted organisation shows only with it, and says so. */
    expect_rc(f, admin(f, "organisation", "add", "gone", "--name", "Gone", "--kind", "cso", NULL),
              0, "organisation add gone");
    db_value(f, "UPDATE organisations SET deleted = true WHERE code = $1 RETURNING code", "gone", n,
             sizeof(n));
    expect_rc(f, admin(f, "organisation", "list", NULL), 0, "organisation list, one deleted");
    if (strstr(out, "Gone") != NULL)
        nst_fail(f->e, "organisation list shows a deleted one:\n%s", out);
    expect_rc(f, admin(f, "organisation", "list", "--deleted", NULL), 0, "list --deleted");
    expect_out(f, "Gone", "organisation list --deleted");
    expect_rc(f, admin(f, "--json", "organisation", "list", "--deleted", NULL), 0,
              "list --deleted --json");
    expect_out(f, "\"code\":\"gone\",\"name\":\"Gone\",\"kind\":\"cso\"", "list --deleted --json");
    expect_out(f, "\"deleted\":true", "organisation list --deleted --json");
    nst_test_passed(f->e);
}

/* ---- people and roles ------------------------------------------------------------------- */

static void test_principals_and_roles(void **state)
{
    fixture *f = *state;
    expect_rc(
        f, admin(f, "--json", "principal", "add", "mofa", "Ama Mensah", "--role", "observer", NULL),
        0, "principal add");
    json_t *o = out_json(f, "principal add");
    char id[64];
    snprintf(id, sizeof(id), "%s", jstr(f, o, "id"));
    json_t *r0 = json_array_get(json_object_get(o, "roles"), 0);
    if (strcmp(jstr(f, o, "organisation"), "mofa") != 0 || !jbool(f, o, "changed") ||
        json_array_size(json_object_get(o, "roles")) != 1 ||
        strcmp(json_string_value(json_object_get(r0, "role")), "observer") != 0)
        nst_fail(f->e, "principal add answered %s", out);
    json_decref(o);
    expect_logged(f, id, "create");
    expect_rc(f, admin_all(f, "principal", "add", "mofa", "Ama Mensah", NULL), 4,
              "principal add twice");
    expect_rc(f, admin_all(f, "principal", "add", "nosuch", "X", NULL), 3, "principal add, org");

    expect_rc(f, admin(f, "role", "grant", "mofa", "Ama Mensah", "admin", NULL), 0, "role grant");
    expect_out(f, "granted the role admin in mofa", "role grant");
    expect_rc(f, admin(f, "--json", "role", "grant", "mofa", "Ama Mensah", "admin", NULL), 0,
              "role grant again");
    o = out_json(f, "role grant again");
    char role_id[64];
    snprintf(role_id, sizeof(role_id), "%s", jstr(f, o, "id"));
    if (jbool(f, o, "changed") || strcmp(jstr(f, o, "role"), "admin") != 0 ||
        strcmp(jstr(f, o, "principal"), "Ama Mensah") != 0)
        nst_fail(f->e, "a role held already: %s", out);
    json_decref(o);
    expect_logged(f, role_id, "create");
    expect_rc(f,
              admin(f, "--json", "role", "grant", "mofa", "Ama Mensah", "regional", "--in",
                    "regional", NULL),
              0, "role grant --in");
    o = out_json(f, "role grant --in");
    if (strcmp(jstr(f, o, "organisation"), "regional") != 0 ||
        strcmp(jstr(f, o, "principal_organisation"), "mofa") != 0 || !jbool(f, o, "changed"))
        nst_fail(f->e, "role grant --in answered %s", out);
    json_decref(o);

    expect_rc(f, admin(f, "principal", "list", "--organisation", "mofa", NULL), 0,
              "principal list");
    expect_out(f, "admin,observer,regional@regional", "principal list");
    expect_rc(f, admin(f, "principal", "list", "--organisation", "mofa", "--json", NULL), 0,
              "principal list --json");
    expect_out(f, "{\"role\":\"regional\",\"organisation\":\"regional\"}", "principal list --json");
    expect_rc(f, admin_all(f, "principal", "list", "--organisation", "nosuch", NULL), 3,
              "principal list, unknown organisation");

    expect_rc(f, admin(f, "--json", "role", "withdraw", "mofa", "Ama Mensah", "admin", NULL), 0,
              "role withdraw");
    o = out_json(f, "role withdraw");
    if (!jbool(f, o, "changed") || !jbool(f, o, "deleted") ||
        strcmp(jstr(f, o, "id"), role_id) != 0)
        nst_fail(f->e, "role withdraw answered %s", out);
    json_decref(o);
    expect_logged(f, role_id, "delete");
    expect_rc(f, admin(f, "--json", "role", "withdraw", "mofa", "Ama Mensah", "admin", NULL), 3,
              "role withdraw again");
    expect_json_error(f, "not_found", "role withdraw again");
    expect_rc(f, admin_all(f, "role", "grant", "mofa", "Nobody", "admin", NULL), 3,
              "unknown person");
    expect_out(f, "no person named \"Nobody\" in mofa", "unknown person");
    expect_rc(f, admin_all(f, "role", "grant", "mofa", "Ama Mensah", "boss", NULL), 2, "bad role");
    expect_rc(f,
              admin_all(f, "role", "grant", "mofa", "Ama Mensah", "admin", "--in", "nosuch", NULL),
              3, "unknown --in");
    expect_rc(f, admin(f, "principal", "list", "--organisation", "mofa", NULL), 0,
              "principal list after");
    expect_out(f, "observer,regional@regional", "principal list after");
    nst_test_passed(f->e);
}

/* ---- devices ------------------------------------------------------------------------------- */

/* fp in the colon form `openssl x509 -fingerprint -sha256` prints. */
static void colon_form(const char *fp, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < 64; i += 2) {
        if (i > 0)
            dst[o++] = ':';
        dst[o++] = (char)(fp[i] >= 'a' ? fp[i] - 'a' + 'A' : fp[i]);
        dst[o++] = (char)(fp[i + 1] >= 'a' ? fp[i + 1] - 'a' + 'A' : fp[i + 1]);
    }
    dst[o] = '\0';
}

static void test_devices(void **state)
{
    fixture *f = *state;
    nst_device lap, tab;
    if (nst_device_issue(f->e, false, "lap-1", &lap) != 0 ||
        nst_device_issue(f->e, false, "tab-1", &tab) != 0)
        nst_fail(f->e, "cannot issue the certificates");

    expect_rc(f,
              admin(f, "--json", "device", "register", "mogender", "Kofi Field", "lap-1", "--cert",
                    lap.cert, "--role", "implementer", NULL),
              0, "device register --cert");
    json_t *o = out_json(f, "device register --cert");
    char id[64];
    snprintf(id, sizeof(id), "%s", jstr(f, o, "id"));
    if (strcmp(jstr(f, o, "fingerprint"), lap.fp) != 0 || strcmp(jstr(f, o, "name"), "lap-1") ||
        strcmp(jstr(f, o, "organisation"), "mogender") != 0 ||
        strcmp(jstr(f, o, "principal"), "Kofi Field") != 0 ||
        strcmp(jstr(f, o, "state"), "active") != 0 || !jbool(f, o, "changed"))
        nst_fail(f->e, "device register answered %s (certificate sha256 %s)", out, lap.fp);
    json_decref(o);
    expect_logged(f, id, "create");
    ns_client *c = nst_must_connect(f->e, &lap);
    nst_must_ping(f->e, c);
    nst_client_close(c);

    /* The same again: nothing to do. */
    expect_rc(f,
              admin(f, "--json", "device", "register", "mogender", "Kofi Field", "lap-1",
                    "--fingerprint", lap.fp, NULL),
              0, "device register again");
    o = out_json(f, "device register again");
    if (jbool(f, o, "changed") || strcmp(jstr(f, o, "id"), id) != 0)
        nst_fail(f->e, "registering the same device again answered %s", out);
    json_decref(o);
    /* A device has one certificate, a certificate one device. */
    expect_rc(f,
              admin_all(f, "device", "register", "mogender", "Kofi Field", "lap-2", "--cert",
                        lap.cert, NULL),
              4, "a second name for a certificate");
    expect_out(f, "registered already, as device lap-1", "a second name for a certificate");
    expect_rc(f,
              admin_all(f, "device", "register", "mogender", "Kofi Field", "lap-1", "--cert",
                        tab.cert, NULL),
              4, "another certificate for a name");
    expect_out(f, "another certificate", "another certificate for a name");
    expect_rc(
        f,
        admin_all(f, "device", "register", "mofa", "Kofi Field", "lap-1", "--cert", lap.cert, NULL),
        4, "another owner for a name");
    expect_rc(f,
              admin(f, "--json", "device", "register", "mogender", "Kofi Field", "lap-2", "--cert",
                    lap.cert, NULL),
              4, "json conflict");
    expect_json_error(f, "already_exists", "json conflict");
    /* What is not a usable client certificate, or not a fingerprint. */
    expect_rc(f,
              admin_all(f, "device", "register", "mogender", "Kofi Field", "tab-1", "--cert",
                        f->e->server_cert, NULL),
              2, "a server certificate");
    expect_out(f, "not for TLS clients", "a server certificate");
    expect_rc(f,
              admin_all(f, "device", "register", "mogender", "Kofi Field", "tab-1", "--cert",
                        tab.key, NULL),
              2, "a key for a certificate");
    expect_out(f, "holds no certificate", "a key for a certificate");
    expect_rc(f,
              admin_all(f, "device", "register", "mogender", "Kofi Field", "tab-1", "--cert",
                        "/nonexistent/tab.crt", NULL),
              2, "no such file");
    expect_rc(f,
              admin_all(f, "device", "register", "mogender", "Kofi Field", "tab-1", "--fingerprint",
                        "abc", NULL),
              2, "short fingerprint");
    expect_rc(f,
              admin_all(f, "device", "register", "mogender", "Kofi Field", "tab-1", "--cert",
                        tab.cert, "--fingerprint", tab.fp, NULL),
              2, "both --cert and --fingerprint");
    expect_rc(f,
              admin_all(f, "device", "register", "nosuch", "Kofi Field", "tab-1", "--fingerprint",
                        tab.fp, NULL),
              3, "unknown organisation");
    expect_rc(f,
              admin_all(f, "device", "register", "mogender", "Kofi Field", "bad name",
                        "--fingerprint", tab.fp, NULL),
              2, "bad device name");
    expect_out(f, "device.name", "bad device name");

    /* The colon form; the person exists, keeps their role, gets no other. */
    char colons[100];
    colon_form(tab.fp, colons);
    expect_rc(f,
              admin(f, "device", "register", "mogender", "Kofi Field", "tab-1", "--fingerprint",
                    colons, NULL),
              0, "device register --fingerprint with colons");
    expect_out(f, "registered device tab-1", "device register --fingerprint with colons");
    expect_rc(f, admin(f, "--json", "principal", "list", "--organisation", "mogender", NULL), 0,
              "principal list");
    expect_out(f,
               "\"name\":\"Kofi Field\",\"roles\":[{\"role\":\"implementer\","
               "\"organisation\":\"mogender\"}],\"active_devices\":2",
               "principal list");

    expect_rc(f, admin(f, "device", "list", "--organisation", "mogender", NULL), 0, "device list");
    expect_out(f, "SHA256", "device list");
    expect_out(f, lap.fp, "device list");
    expect_rc(f, admin(f, "device", "list", "--json", NULL), 0, "device list --json");
    expect_out(f, "\"name\":\"tab-1\"", "device list --json");

    /* mogender's administrator receives the new devices with the directory. */
    expect_rc(f, nst_cli(f->e, &f->it, f->store_it, out, sizeof(out), "sync", "--directory", NULL),
              0, "napsync sync --directory");
    expect_rc(
        f, nst_cli(f->e, &f->it, f->store_it, out, sizeof(out), "list", "device", "--json", NULL),
        0, "napsync list device");
    expect_out(f, "\"name\":\"lap-1\"", "the administrator's replica");
    expect_out(f, "\"name\":\"tab-1\"", "the administrator's replica");

    /* Revocation: logged, refused from then on, received by the directory. */
    expect_rc(f, admin(f, "--json", "device", "revoke", "lap-1", "--reason", "laptop stolen", NULL),
              0, "device revoke");
    o = out_json(f, "device revoke");
    if (!jbool(f, o, "changed") || !jbool(f, o, "revoked") ||
        strcmp(jstr(f, o, "state"), "revoked") != 0 ||
        strcmp(jstr(f, o, "revoked_reason"), "laptop stolen") != 0 ||
        json_string_value(json_object_get(o, "revoked_at")) == NULL)
        nst_fail(f->e, "device revoke answered %s", out);
    json_decref(o);
    expect_logged(f, id, "update");
    ns_client *refused = NULL;
    ns_error err;
    int st = nst_client_connect(f->e, lap.cert, lap.key, f->e->ca_cert, &refused, &err);
    if (st != NS_ERR_DEVICE_REVOKED)
        nst_fail(f->e, "a revoked device connected: status %d (%s)", st, err.message);
    expect_rc(f, admin_all(f, "device", "revoke", "lap-1", NULL), 0, "device revoke again");
    expect_out(f, "was revoked already", "device revoke again");
    expect_rc(f, admin(f, "--json", "device", "revoke", "nosuch", NULL), 3, "unknown device");
    expect_json_error(f, "not_found", "unknown device");
    /* Registering it again says it is revoked, and changes nothing. */
    expect_rc(f,
              admin(f, "--json", "device", "register", "mogender", "Kofi Field", "lap-1", "--cert",
                    lap.cert, NULL),
              0, "a revoked device registered again");
    o = out_json(f, "a revoked device registered again");
    if (jbool(f, o, "changed") || strcmp(jstr(f, o, "state"), "revoked") != 0)
        nst_fail(f->e, "a revoked device registered again: %s", out);
    json_decref(o);
    expect_rc(f, nst_cli(f->e, &f->it, f->store_it, out, sizeof(out), "sync", "--directory", NULL),
              0, "napsync sync --directory again");
    char get_id[80];
    snprintf(get_id, sizeof(get_id), "%s", id);
    expect_rc(f,
              nst_cli(f->e, &f->it, f->store_it, out, sizeof(out), "get", "device", get_id,
                      "--json", NULL),
              0, "napsync get device");
    expect_out(f, "\"revoked\":true", "the administrator's replica of lap-1");
    nst_test_passed(f->e);
}

/* ---- roles, connections and schemas that cannot do it ------------------------------------- */

static void test_permission_and_failures(void **state)
{
    fixture *f = *state;
    /* napsyncd's own role reads the directory but may not write it. */
    expect_rc(
        f,
        admin_db(f, f->daemon, "organisation", "add", "nope", "--name", "N", "--kind", "cso", NULL),
        5, "a write as napsyncd's role");
    expect_out(f, "BYPASSRLS", "a write as napsyncd's role");
    expect_out(f, "\"" DAEMON_ROLE "\"", "a write as napsyncd's role");
    expect_rc(f, admin_db(f, f->daemon, "device", "revoke", "tab-1", NULL), 5,
              "a revocation as napsyncd's role");
    expect_rc(
        f, admin_db(f, f->daemon, "--json", "role", "grant", "mofa", "Ama Mensah", "admin", NULL),
        5, "a grant as napsyncd's role");
    expect_out(f, "\"error\":\"permission_denied\"", "a grant as napsyncd's role");
    expect_rc(f, admin_db(f, f->daemon, "organisation", "list", NULL), 0, "a list as napsyncd's");
    expect_out(f, "mogender", "a list as napsyncd's");
    char state_[32];
    db_value(f, "SELECT revoked IS TRUE FROM devices WHERE name = $1", "tab-1", state_,
             sizeof(state_));
    if (strcmp(state_, "f") != 0)
        nst_fail(f->e, "a refused revocation revoked the device");

    /* Nothing listens there. */
    char nowhere[256];
    snprintf(nowhere, sizeof(nowhere), "host=127.0.0.1 port=%u dbname=x user=y connect_timeout=5",
             nst_free_port());
    expect_rc(f, admin_db(f, nowhere, "--json", "organisation", "list", NULL), 1,
              "nothing listens");
    expect_out(f, "\"error\":\"unavailable\"", "nothing listens");
    expect_out(f, "cannot connect to PostgreSQL", "nothing listens");

    /* A database without napsync's schema. */
    char empty[96], db[1024];
    snprintf(empty, sizeof(empty), "%s_empty", f->e->dbname);
    char maint[1024];
    nst_conninfo(f->e, f->e->pg.user, "postgres", maint, sizeof(maint));
    PGconn *pg = PQconnectdb(maint);
    char *ident =
        pg && PQstatus(pg) == CONNECTION_OK ? PQescapeIdentifier(pg, empty, strlen(empty)) : NULL;
    if (ident == NULL)
        nst_fail(f->e, "cannot reach the maintenance database");
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", ident);
    PQclear(PQexec(pg, sql));
    nst_conninfo(f->e, f->e->pg.user, empty, db, sizeof(db));
    int rc = admin_db(f, db, "device", "list", NULL);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", ident);
    PQclear(PQexec(pg, sql));
    PQfreemem(ident);
    PQfinish(pg);
    expect_rc(f, rc, 1, "a database without the schema");
    expect_out(f, "no napsync schema: run napsyncd --migrate", "a database without the schema");
    nst_test_passed(f->e);
}

/* ---- the feed ------------------------------------------------------------------------------- */

static void test_feed_epoch(void **state)
{
    fixture *f = *state;
    expect_rc(f, admin(f, "--json", "feed", "show", NULL), 0, "feed show");
    json_t *o = out_json(f, "feed show");
    char epoch[64];
    snprintf(epoch, sizeof(epoch), "%s", jstr(f, o, "epoch"));
    json_int_t head = json_integer_value(json_object_get(o, "head"));
    json_decref(o);
    if (head <= 0)
        nst_fail(f->e, "feed show: head %lld after the changes above", (long long)head);
    /* napsyncd's own role may do this one. */
    expect_rc(f, admin_db(f, f->daemon, "feed", "new-epoch", NULL), 0, "feed new-epoch");
    expect_out(f, "re-fetch their scopes", "feed new-epoch");
    expect_rc(f, admin(f, "--json", "feed", "show", NULL), 0, "feed show after");
    o = out_json(f, "feed show after");
    if (strcmp(jstr(f, o, "epoch"), epoch) == 0 ||
        json_integer_value(json_object_get(o, "head")) != head)
        nst_fail(f->e, "feed new-epoch: before %s at %lld, after %s", epoch, (long long)head, out);
    json_decref(o);
    expect_rc(f, admin(f, "--json", "feed", "new-epoch", NULL), 0, "feed new-epoch --json");
    o = out_json(f, "feed new-epoch --json");
    if (strcmp(jstr(f, o, "previous_epoch"), jstr(f, o, "epoch")) == 0 || !jbool(f, o, "changed"))
        nst_fail(f->e, "feed new-epoch --json answered %s", out);
    json_decref(o);
    /* The administrator's device, whose cursor is of an old epoch, starts
     * over and ends with the same directory. */
    expect_rc(
        f,
        nst_cli(f->e, &f->it, f->store_it, out, sizeof(out), "sync", "--directory", "--json", NULL),
        0, "sync after new epochs");
    expect_out(f, "\"cursor_resets\":1", "sync after new epochs");
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        NST_TEST(test_help),          NST_TEST(test_usage_errors),
        NST_TEST(test_organisations), NST_TEST(test_principals_and_roles),
        NST_TEST(test_devices),       NST_TEST(test_permission_and_failures),
        NST_TEST(test_feed_epoch),
    };
    return cmocka_run_group_tests(tests, group_setup, nst_group_teardown);
}
