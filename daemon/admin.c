/* `napsyncd admin ...` (see admin.h).
 *
 * One table of commands, each an OBJECT VERB pair with its positional
 * arguments, options and a run function. The words after "admin" are
 * OBJECT, VERB, then the command's arguments and options in any order;
 * --json and --help may stand anywhere. Every argument is checked before
 * the database is reached (bounded, valid UTF-8, no control characters),
 * and every value reaches PostgreSQL as a parameter.
 *
 * Each write runs in one transaction, so that the deferred checks of
 * sql/009 (references between directory records) are part of the answer:
 * a COMMIT they refuse is reported like any other refusal. Commands that
 * find the change made already say so and exit 0 with "changed": false
 * (register the same device again, grant a role held), so scripts such as
 * deploy/dev.sh can run them again. */
#include "admin.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "tls.h"

#define ADM_MAX_ARGS 3
#define ADM_MAX_OPTS 6
/* Bytes of one argument: names and reasons are far shorter (the schema
 * allows 200 and 500 characters); a file name fits. */
#define ADM_ARG_MAX 4096
/* The migrations the commands rely on: sql/009 (the directory synced, its
 * triggers) and sql/010 (a revocation reaches open sessions). */
#define ADM_SCHEMA_MIN 10
#define ADM_ERR_MAX    1536
#define UUID_TEXT      37
#define FP_HEX         65

/* Timestamps as RFC 3339 UTC to the second. */
#define ADM_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

typedef struct adm adm;

typedef struct {
    const char *name;    /* "--name" */
    const char *metavar; /* NULL: a switch */
    const char *help;
} adm_opt;

/* A column of a table: its header and the result column it shows. */
typedef struct {
    const char *header;
    int col;
} adm_col;

/* How a result column reaches --json. */
typedef enum { ADM_TEXT, ADM_INT, ADM_BOOL, ADM_JSON } adm_type;

typedef struct {
    const char *key;
    int col;
    adm_type type;
} adm_field;

#define ADM_MAX_FIELDS 12
#define ADM_MAX_COLS   6

/* A kind of record: the statement that reads it, its --json object (one
 * description for lists and for the record a write prints back) and, for
 * `OBJECT list`, its table. */
typedef struct {
    const char *noun; /* "cannot read the NOUN back" */
    /* $1 include deleted, $2 one record's id (NULL: all), $3 one
     * organisation's code (NULL: all). */
    const char *select;
    adm_field fields[ADM_MAX_FIELDS];
    adm_col cols[ADM_MAX_COLS];
    const char *plural; /* "cannot list the PLURAL" */
} adm_view;

typedef struct {
    const char *object;
    const char *verb;
    const char *usage; /* what follows "OBJECT VERB" */
    const char *summary;
    const char *description;
    adm_opt opts[ADM_MAX_OPTS];
    int nargs;            /* positional arguments, exactly */
    bool bypass;          /* writes the directory: needs a role that bypasses row-level security */
    const adm_view *view; /* the records it prints (run_list: all of them) */
    const char *sql;      /* run_feed: its one statement */
    const char *what;     /* run_feed: the message when that statement fails */
    int (*run)(adm *a);
} adm_cmd;

struct adm {
    const char *conninfo;
    bool json;
    const adm_cmd *cmd;
    const char *args[ADM_MAX_ARGS];
    int nargs;
    const char *opt[ADM_MAX_OPTS]; /* by index in cmd->opts: the value, "" for a switch */
    PGconn *pg;
    bool in_txn;
    char sqlstate[6]; /* of the last statement that failed */
    char dberr[ADM_ERR_MAX];
};

static int fail(adm *a, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_named(adm *a, int code, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- text ---------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0. Overlong forms,
 * surrogates and code points above U+10FFFF are invalid, as for PostgreSQL. */
static size_t utf8_seq(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n;
    unsigned cp;
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2;
        cp = s[0] & 0x1Fu;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3;
        cp = s[0] & 0x0Fu;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* A copy of s with every byte that is not valid UTF-8 (or a control
 * character) replaced by '?', for messages (caller frees). */
static char *printable(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq((const unsigned char *)s + i);
        if (n == 0 || (n == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f))) {
            out[o++] = '?';
            i++;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = '\0';
    return out;
}

/* Characters, not bytes: for the columns of a table. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if ((*p & 0xC0) != 0x80)
            w++;
    return w;
}

/* PostgreSQL's or libpq's message on one line: runs of blanks and line
 * breaks become one space, trailing ones go. */
static void one_line(char *s)
{
    char *w = s;
    bool space = true;
    for (const char *r = s; *r != '\0'; r++) {
        bool blank = *r == '\n' || *r == '\r' || *r == '\t' || *r == ' ';
        if (blank && space)
            continue;
        *w++ = blank ? ' ' : *r;
        space = blank;
    }
    if (w > s && w[-1] == ' ')
        w--;
    *w = '\0';
}

/* ---- output ---------------------------------------------------------------------------- */

static const char *exit_name(int code)
{
    switch (code) {
    case NS_ADMIN_USAGE:
        return "invalid_argument";
    case NS_ADMIN_NOT_FOUND:
        return "not_found";
    case NS_ADMIN_EXISTS:
        return "already_exists";
    case NS_ADMIN_DENIED:
        return "permission_denied";
    default:
        return "failed";
    }
}

/* One JSON document on a line of its own; takes obj. */
static int emit(json_t *obj)
{
    char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (text == NULL)
        return -1;
    int rc = puts(text) < 0 ? -1 : 0;
    free(text);
    return rc;
}

static int vfail(adm *a, int code, const char *name, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* Reports an error once: "napsyncd admin: MESSAGE" on stderr and, with
 * --json, {"error","message"} on stdout. Returns code, for the caller to
 * return. */
static int vfail(adm *a, int code, const char *name, const char *fmt, va_list ap)
{
    char msg[ADM_ERR_MAX + 512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    char *clean = printable(msg);
    const char *m = clean != NULL ? clean : "out of memory";
    fprintf(stderr, "napsyncd admin: %s\n", m);
    if (a->json) {
        json_t *o = json_object();
        if (o != NULL) {
            json_object_set_new(o, "error", json_string(name));
            json_object_set_new(o, "message", json_string(m));
        }
        (void)emit(o);
    }
    free(clean);
    return code;
}

static int fail(adm *a, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(a, code, exit_name(code), fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_named(adm *a, int code, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(a, code, name, fmt, ap);
    va_end(ap);
    return rc;
}

/* Emits o, built with put(): a failed put or write is reported. Takes o. */
static int emit_record(adm *a, json_t *o, bool ok)
{
    if (!ok) {
        json_decref(o);
        return fail(a, NS_ADMIN_FAILED, "out of memory building the output");
    }
    if (emit(o) != 0)
        return fail(a, NS_ADMIN_FAILED, "out of memory or cannot write the output");
    return NS_ADMIN_OK;
}

/* A warning on stderr only: the outcome on stdout stays one document. */
static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void warn(const char *fmt, ...)
{
    char msg[ADM_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *clean = printable(msg);
    fprintf(stderr, "napsyncd admin: warning: %s\n", clean != NULL ? clean : msg);
    free(clean);
}

/* A column of a PGresult as JSON: text (NULL: null), boolean, integer. */
static json_t *j_text(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return json_null();
    const char *v = PQgetvalue(r, row, col);
    json_t *s = json_string(v);
    if (s == NULL) { /* not UTF-8: a database in another encoding */
        char *clean = printable(v);
        s = clean != NULL ? json_string(clean) : NULL;
        free(clean);
    }
    return s;
}

static json_t *j_bool(const PGresult *r, int row, int col)
{
    return json_boolean(strcmp(PQgetvalue(r, row, col), "t") == 0);
}

static json_t *j_int(const PGresult *r, int row, int col)
{
    return json_integer(strtoll(PQgetvalue(r, row, col), NULL, 10));
}

/* Sets key to val in o; a NULL val (out of memory) marks *ok false. */
static void put(json_t *o, const char *key, json_t *val, bool *ok)
{
    if (o == NULL || val == NULL || json_object_set_new(o, key, val) != 0)
        *ok = false;
}

/* A table of result columns, each as wide as its widest value ("-" for
 * NULL and ""), two spaces apart; the last column is not padded. */
static void print_table(const PGresult *r, const adm_col *cols, size_t ncols)
{
    size_t width[16] = {0};
    for (size_t c = 0; c < ncols && c < 16; c++) {
        width[c] = text_width(cols[c].header);
        for (int i = 0; i < PQntuples(r); i++) {
            const char *v = PQgetvalue(r, i, cols[c].col);
            size_t w = *v != '\0' ? text_width(v) : 1;
            if (w > width[c])
                width[c] = w;
        }
    }
    for (int i = -1; i < PQntuples(r); i++) {
        for (size_t c = 0; c < ncols && c < 16; c++) {
            const char *v = i < 0 ? cols[c].header : PQgetvalue(r, i, cols[c].col);
            if (*v == '\0')
                v = "-";
            fputs(v, stdout);
            if (c + 1 < ncols)
                printf("%*s", (int)(width[c] - text_width(v) + 2), "");
        }
        putchar('\n');
    }
}

/* ---- the database ---------------------------------------------------------------------- */

static void ignore_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

/* Runs one statement with text parameters. On failure returns NULL with
 * the SQLSTATE and PostgreSQL's message (primary, detail, hint) kept. */
static PGresult *query(adm *a, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(a->pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (res != NULL && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
        return res;
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    snprintf(a->sqlstate, sizeof(a->sqlstate), "%s", state != NULL ? state : "");
    if (primary == NULL) {
        snprintf(a->dberr, sizeof(a->dberr), "%s", PQerrorMessage(a->pg));
    } else {
        const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
        snprintf(a->dberr, sizeof(a->dberr), "%s%s%s%s%s%s", primary, detail ? " (" : "",
                 detail ? detail : "", detail ? ")" : "", hint ? "; hint: " : "", hint ? hint : "");
    }
    one_line(a->dberr);
    PQclear(res);
    return NULL;
}

static void rollback(adm *a)
{
    if (!a->in_txn)
        return;
    a->in_txn = false;
    PQclear(PQexec(a->pg, "ROLLBACK"));
}

/* The failed statement as an exit status: PostgreSQL's class of error
 * decides what the person did wrong, if anything. */
static int db_fail(adm *a, const char *what)
{
    static const struct {
        const char *state;
        int code;
    } map[] = {
        {"23505", NS_ADMIN_EXISTS},    /* unique_violation */
        {"P0002", NS_ADMIN_NOT_FOUND}, /* no_data_found: napsync_register_device */
        {"42501", NS_ADMIN_DENIED},    /* insufficient_privilege, row-level security */
        {"23514", NS_ADMIN_USAGE},     /* check_violation: the model's rules */
        {"23502", NS_ADMIN_USAGE},     /* not_null_violation */
        {"23503", NS_ADMIN_USAGE},     /* foreign_key_violation */
        {"22023", NS_ADMIN_USAGE},     /* invalid_parameter_value */
        {"22001", NS_ADMIN_USAGE},     /* string_data_right_truncation */
        {"22P02", NS_ADMIN_USAGE},     /* invalid_text_representation */
        {"22021", NS_ADMIN_USAGE},     /* character_not_in_repertoire */
    };
    int code = NS_ADMIN_FAILED;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(a->sqlstate, map[i].state) == 0)
            code = map[i].code;
    rollback(a);
    if (code == NS_ADMIN_DENIED)
        return fail(a, code,
                    "%s: %s; the admin commands need the database superuser, or a role with "
                    "BYPASSRLS and the rights of napsync's tables (docs/operations.md)",
                    what, a->dberr);
    return fail(a, code, "%s: %s", what, a->dberr);
}

static int begin(adm *a)
{
    PGresult *res = query(a, "BEGIN", 0, NULL);
    if (res == NULL)
        return db_fail(a, "cannot start a transaction");
    PQclear(res);
    a->in_txn = true;
    return 0;
}

/* COMMIT runs sql/009's deferred checks: their refusal is the answer. */
static int commit(adm *a, const char *what)
{
    PGresult *res = query(a, "COMMIT", 0, NULL);
    a->in_txn = false;
    if (res == NULL)
        return db_fail(a, what);
    PQclear(res);
    return 0;
}

/* One value of a one-row query into out ("" when the query found no row).
 * Returns 0, 1 when there was no row, or an exit status (reported). */
static int query_value(adm *a, const char *what, const char *sql, int n, const char *const *params,
                       char *out, size_t cap)
{
    PGresult *res = query(a, sql, n, params);
    if (res == NULL)
        return db_fail(a, what);
    int rc = 1;
    out[0] = '\0';
    if (PQntuples(res) > 0) {
        snprintf(out, cap, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    }
    PQclear(res);
    return rc;
}

/* Connects, checks the schema and, for a command that writes the
 * directory, that the role bypasses row-level security. */
static int open_db(adm *a)
{
    char why[256];
    if (a->conninfo == NULL)
        return fail(a, NS_ADMIN_USAGE,
                    "no database given: set database in the configuration file (--config FILE) "
                    "or pass --database CONNINFO before \"admin\"");
    /* libpq's complaint about a malformed string quotes it, password and
     * all: such a string never reaches it. */
    if (ns_db_conninfo_check(a->conninfo, why, sizeof(why)) != 0)
        return fail(a, NS_ADMIN_USAGE, "%s", why);
    static const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname",
                                       "client_encoding", NULL};
    const char *const vals[] = {"napsyncd-admin", "10", a->conninfo, "UTF8", NULL};
    a->pg = PQconnectdbParams(keys, vals, 1);
    if (a->pg == NULL)
        return fail(a, NS_ADMIN_FAILED, "cannot connect to PostgreSQL: out of memory");
    if (PQstatus(a->pg) != CONNECTION_OK) {
        snprintf(a->dberr, sizeof(a->dberr), "%s", PQerrorMessage(a->pg));
        one_line(a->dberr);
        return fail_named(a, NS_ADMIN_FAILED, "unavailable", "cannot connect to PostgreSQL: %s",
                          a->dberr);
    }
    PQsetNoticeReceiver(a->pg, ignore_notice, NULL);
    /* No reader context: sql/009's triggers stamp and log a write made
     * without one as the administrator's. */
    char v[64];
    int rc = query_value(a, "cannot prepare the session",
                         "SELECT set_config('napsync.reader', '', false)", 0, NULL, v, sizeof(v));
    if (rc > 1)
        return rc;
    rc = query_value(a, "cannot read the schema's version",
                     "SELECT to_regclass('napsync_migrations') IS NOT NULL", 0, NULL, v, sizeof(v));
    if (rc > 1)
        return rc;
    int version = 0;
    if (strcmp(v, "t") == 0) {
        rc = query_value(a, "cannot read the schema's version",
                         "SELECT coalesce(max(version), 0) FROM napsync_migrations", 0, NULL, v,
                         sizeof(v));
        if (rc > 1)
            return rc;
        version = atoi(v);
    }
    if (version == 0)
        return fail(a, NS_ADMIN_FAILED,
                    "the database has no napsync schema: run napsyncd --migrate with the same "
                    "settings first");
    if (version < ADM_SCHEMA_MIN)
        return fail(a, NS_ADMIN_FAILED,
                    "the database has napsync's schema up to migration %03d; the admin commands "
                    "need %03d or later: run napsyncd --migrate with the same settings first",
                    version, ADM_SCHEMA_MIN);
    if (!a->cmd->bypass)
        return 0;
    PGresult *res = query(a,
                          "SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles"
                          " WHERE rolname = current_user",
                          0, NULL);
    if (res == NULL)
        return db_fail(a, "cannot read the database role's attributes");
    bool bypass = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    char user[128];
    snprintf(user, sizeof(user), "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "?");
    PQclear(res);
    if (!bypass)
        return fail(a, NS_ADMIN_DENIED,
                    "the database role \"%s\" is neither a superuser nor has BYPASSRLS, and the "
                    "directory's row-level security lets only principals, through napsyncd, write "
                    "it otherwise: run the admin commands with --database naming such a role, "
                    "e.g. the cluster's superuser (--database 'host=/run/postgresql dbname=napsync "
                    "user=postgres'; docs/operations.md)",
                    user);
    return 0;
}

/* ---- lookups --------------------------------------------------------------------------- */

static const char *const roles[] = {"admin", "coordinator", "implementer", "regional", "observer"};

/* The roles of sql/001 (and deploy/dev.sh): checked here for a clear
 * usage error before the database is reached. */
static int check_role(adm *a, const char *role)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(role, roles[i]) == 0)
            return 0;
    return fail(a, NS_ADMIN_USAGE,
                "unknown role '%s': admin, coordinator, implementer, regional or observer", role);
}

/* The live organisation with this code: its id (and default role). */
static int find_org(adm *a, const char *code, char id[UUID_TEXT], char *default_role, size_t cap)
{
    const char *params[] = {code};
    PGresult *res = query(a,
                          "SELECT id, default_role FROM organisations"
                          " WHERE code = $1 AND NOT deleted",
                          1, params);
    if (res == NULL)
        return db_fail(a, "cannot look the organisation up");
    if (PQntuples(res) != 1) {
        PQclear(res);
        rollback(a);
        return fail(a, NS_ADMIN_NOT_FOUND,
                    "no organisation with code '%s' (napsyncd admin organisation list shows them)",
                    code);
    }
    snprintf(id, UUID_TEXT, "%s", PQgetvalue(res, 0, 0));
    if (default_role != NULL)
        snprintf(default_role, cap, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

/* The person named name of the organisation with id org: 0 with the id,
 * 1 when there is none (nothing reported), or an exit status (reported; a
 * deleted person is one). */
static int find_principal(adm *a, const char *org_code, const char *org, const char *name,
                          char id[UUID_TEXT])
{
    const char *params[] = {org, name};
    PGresult *res = query(a,
                          "SELECT id, deleted FROM principals"
                          " WHERE organisation_id = $1 AND name = $2",
                          2, params);
    if (res == NULL)
        return db_fail(a, "cannot look the person up");
    int rc = 1;
    if (PQntuples(res) == 1) {
        snprintf(id, UUID_TEXT, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
        if (strcmp(PQgetvalue(res, 0, 1), "t") == 0) {
            rollback(a);
            rc = fail(a, NS_ADMIN_NOT_FOUND, "\"%s\" of %s has been deleted", name, org_code);
        }
    }
    PQclear(res);
    return rc;
}

/* find_principal, where the person must exist. */
static int need_principal(adm *a, const char *org_code, const char *org, const char *name,
                          char id[UUID_TEXT])
{
    int rc = find_principal(a, org_code, org, name, id);
    if (rc != 1)
        return rc;
    rollback(a);
    return fail(a, NS_ADMIN_NOT_FOUND,
                "no person named \"%s\" in %s (napsyncd admin principal list --organisation %s)",
                name, org_code, org_code);
}

/* The SHA-256 hex of a --fingerprint value: 64 hex digits, or 32 pairs
 * with colons as `openssl x509 -fingerprint -sha256` prints them. */
static bool parse_fingerprint(const char *in, char out[FP_HEX])
{
    size_t len = strlen(in), o = 0;
    bool colons = len == 95;
    if (len != 64 && !colons)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (colons && i % 3 == 2) {
            if (c != ':')
                return false;
            continue;
        }
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return o == 64;
}

/* ---- records --------------------------------------------------------------------------- */

/* The value of the command's option name: "" for a switch, NULL when it
 * was not given (or the command has no such option). */
static const char *opt(const adm *a, const char *name)
{
    for (size_t k = 0; k < ADM_MAX_OPTS && a->cmd->opts[k].name != NULL; k++)
        if (strcmp(a->cmd->opts[k].name, name) == 0)
            return a->opt[k];
    return NULL;
}

/* Row i of a view's select as its JSON object. */
static json_t *view_json(const adm_view *v, const PGresult *r, int i, bool *ok)
{
    json_t *o = json_object();
    for (size_t k = 0; k < ADM_MAX_FIELDS && v->fields[k].key != NULL; k++) {
        const adm_field *f = &v->fields[k];
        json_t *val;
        switch (f->type) {
        case ADM_INT:
            val = j_int(r, i, f->col);
            break;
        case ADM_BOOL:
            val = j_bool(r, i, f->col);
            break;
        case ADM_JSON: /* built by PostgreSQL (json_agg) */
            val = json_loads(PQgetvalue(r, i, f->col), 0, NULL);
            break;
        default:
            val = j_text(r, i, f->col);
            break;
        }
        put(o, f->key, val, ok);
    }
    return o;
}

/* Prints the record id of the view after a write: with --json, as the
 * list prints it plus "changed"; else the sentence given. */
static int print_record(adm *a, const adm_view *v, const char *id, bool changed,
                        const char *sentence)
{
    const char *params[] = {"true", id, NULL};
    PGresult *res = query(a, v->select, 3, params);
    if (res == NULL) {
        char what[64];
        snprintf(what, sizeof(what), "cannot read the %s back", v->noun);
        return db_fail(a, what);
    }
    int rc = NS_ADMIN_OK;
    if (PQntuples(res) != 1) {
        rc = fail(a, NS_ADMIN_FAILED, "the %s %s cannot be read back", v->noun, id);
    } else if (a->json) {
        bool ok = true;
        json_t *o = view_json(v, res, 0, &ok);
        put(o, "changed", json_boolean(changed), &ok);
        rc = emit_record(a, o, ok);
    } else {
        char *clean = printable(sentence);
        puts(clean != NULL ? clean : sentence);
        free(clean);
    }
    PQclear(res);
    return rc;
}

/* `OBJECT list [--organisation ORG] [--deleted]`: the view's records, one
 * JSON object per line or a table. */
static int run_list(adm *a)
{
    const adm_view *v = a->cmd->view;
    const char *org_code = opt(a, "--organisation");
    int rc = open_db(a);
    if (rc != 0)
        return rc;
    char org[UUID_TEXT];
    if (org_code != NULL && (rc = find_org(a, org_code, org, NULL, 0)) != 0)
        return rc;
    const char *params[] = {opt(a, "--deleted") != NULL ? "true" : "false", NULL, org_code};
    PGresult *res = query(a, v->select, 3, params);
    if (res == NULL) {
        char what[64];
        snprintf(what, sizeof(what), "cannot list the %s", v->plural);
        return db_fail(a, what);
    }
    rc = NS_ADMIN_OK;
    if (a->json) {
        for (int i = 0; i < PQntuples(res) && rc == NS_ADMIN_OK; i++) {
            bool ok = true;
            json_t *o = view_json(v, res, i, &ok);
            rc = emit_record(a, o, ok);
        }
    } else {
        size_t ncols = 0;
        while (ncols < ADM_MAX_COLS && v->cols[ncols].header != NULL)
            ncols++;
        print_table(res, v->cols, ncols);
    }
    PQclear(res);
    return rc;
}

/* ---- organisations --------------------------------------------------------------------- */

static const adm_view org_view = {
    .noun = "record",
    .select = "SELECT o.id, o.code, o.name, o.kind, o.country, par.code, o.default_role,"
              " o.version, o.deleted, " ADM_TIME(
                  "o.created_at") " FROM organisations o"
                                  " LEFT JOIN organisations par ON par.id = o.parent_id"
                                  " WHERE ($1::boolean OR NOT o.deleted)"
                                  " AND ($2::uuid IS NULL OR o.id = $2::uuid)"
                                  " AND ($3::text IS NULL OR o.code = $3)"
                                  " ORDER BY o.code",
    .fields = {{"id", 0, ADM_TEXT},
               {"code", 1, ADM_TEXT},
               {"name", 2, ADM_TEXT},
               {"kind", 3, ADM_TEXT},
               {"country", 4, ADM_TEXT},
               {"parent", 5, ADM_TEXT},
               {"default_role", 6, ADM_TEXT},
               {"version", 7, ADM_INT},
               {"deleted", 8, ADM_BOOL},
               {"created_at", 9, ADM_TEXT}},
    .cols =
        {{"CODE", 1}, {"KIND", 3}, {"COUNTRY", 4}, {"DEFAULT-ROLE", 6}, {"PARENT", 5}, {"NAME", 2}},
    .plural = "organisations",
};

static int org_add(adm *a)
{
    const char *code = a->args[0], *name = opt(a, "--name"), *kind = opt(a, "--kind"),
               *country = opt(a, "--country"), *parent = opt(a, "--parent"),
               *def_role = opt(a, "--default-role");
    if (name == NULL || kind == NULL)
        return fail(a, NS_ADMIN_USAGE, "organisation add needs --name NAME and --kind KIND");
    int rc;
    if (def_role != NULL && (rc = check_role(a, def_role)) != 0)
        return rc;
    if ((rc = open_db(a)) != 0 || (rc = begin(a)) != 0)
        return rc;
    char id[UUID_TEXT], parent_id[UUID_TEXT], existing[96];
    const char *p1[] = {code};
    rc = query_value(a, "cannot look the organisation up",
                     "SELECT id || CASE WHEN deleted THEN ', deleted: a code is never reused'"
                     " ELSE '' END FROM organisations WHERE code = $1",
                     1, p1, existing, sizeof(existing));
    if (rc > 1)
        return rc;
    if (rc == 0) {
        rollback(a);
        return fail(a, NS_ADMIN_EXISTS, "organisation %s exists already (id %s)", code, existing);
    }
    if (parent != NULL && (rc = find_org(a, parent, parent_id, NULL, 0)) != 0)
        return rc;
    const char *params[] = {code, name, kind, country, parent != NULL ? parent_id : NULL, def_role};
    /* Without --default-role, the table's default. */
    const char *sql = def_role != NULL
                          ? "INSERT INTO organisations (code, name, kind, country, parent_id,"
                            " default_role) VALUES ($1, $2, $3, $4, $5::uuid, $6) RETURNING id"
                          : "INSERT INTO organisations (code, name, kind, country, parent_id)"
                            " VALUES ($1, $2, $3, $4, $5::uuid) RETURNING id";
    char what[128];
    snprintf(what, sizeof(what), "cannot add organisation %s", code);
    rc = query_value(a, what, sql, def_role != NULL ? 6 : 5, params, id, sizeof(id));
    if (rc != 0 || (rc = commit(a, what)) != 0)
        return rc;
    char sentence[1024];
    snprintf(sentence, sizeof(sentence), "added organisation %s (%s, %s), id %s", code, name, kind,
             id);
    return print_record(a, &org_view, id, true, sentence);
}

/* ---- principals and roles -------------------------------------------------------------- */

/* Roles held in another organisation are written ROLE@CODE, after those
 * of the person's own. */
#define ROLES_OF_P                                                                                 \
    " FROM principal_roles r JOIN organisations ro ON ro.id = r.organisation_id"                   \
    " WHERE r.principal_id = p.id AND NOT r.deleted"
static const adm_view principal_view = {
    .noun = "record",
    .select =
        "SELECT p.id, o.code, p.name,"
        " coalesce((SELECT string_agg(CASE WHEN r.organisation_id = p.organisation_id THEN r.role"
        " ELSE r.role || '@' || ro.code END, ','"
        " ORDER BY r.organisation_id <> p.organisation_id, ro.code, r.role)" ROLES_OF_P "), ''),"
        " coalesce((SELECT json_agg(json_build_object('role', r.role, 'organisation', ro.code)"
        " ORDER BY r.organisation_id <> p.organisation_id, ro.code, r.role)" ROLES_OF_P "), '[]'),"
        " (SELECT count(*) FROM devices d WHERE d.principal_id = p.id AND NOT d.deleted"
        " AND d.revoked IS NOT TRUE),"
        " p.version, p.deleted, " ADM_TIME(
            "p.created_at") " FROM principals p"
                            " JOIN organisations o ON o.id = "
                            "p.organisation_id"
                            " WHERE ($1::boolean OR NOT p.deleted)"
                            " AND ($2::uuid IS NULL OR p.id = $2::uuid)"
                            " AND ($3::text IS NULL OR o.code = $3)"
                            " ORDER BY o.code, p.name",
    .fields = {{"id", 0, ADM_TEXT},
               {"organisation", 1, ADM_TEXT},
               {"name", 2, ADM_TEXT},
               {"roles", 4, ADM_JSON},
               {"active_devices", 5, ADM_INT},
               {"version", 6, ADM_INT},
               {"deleted", 7, ADM_BOOL},
               {"created_at", 8, ADM_TEXT}},
    .cols = {{"ORGANISATION", 1}, {"ROLES", 3}, {"DEVICES", 5}, {"NAME", 2}},
    .plural = "people",
};

static int principal_add(adm *a)
{
    const char *org_code = a->args[0], *name = a->args[1], *role = opt(a, "--role");
    int rc;
    if (role != NULL && (rc = check_role(a, role)) != 0)
        return rc;
    char org[UUID_TEXT], def_role[32], id[UUID_TEXT];
    if ((rc = open_db(a)) != 0 || (rc = begin(a)) != 0 ||
        (rc = find_org(a, org_code, org, def_role, sizeof(def_role))) != 0)
        return rc;
    rc = find_principal(a, org_code, org, name, id);
    if (rc == 0) {
        rollback(a);
        return fail(a, NS_ADMIN_EXISTS, "\"%s\" of %s exists already (id %s)", name, org_code, id);
    }
    if (rc != 1)
        return rc;
    char what[512];
    snprintf(what, sizeof(what), "cannot add \"%s\" to %s", name, org_code);
    const char *p1[] = {org, name};
    rc = query_value(a, what,
                     "INSERT INTO principals (organisation_id, name) VALUES ($1, $2) RETURNING id",
                     2, p1, id, sizeof(id));
    if (rc != 0)
        return rc;
    /* A person acts through roles: a new one gets --role, else the
     * organisation's default, as napsync_register_device does. */
    const char *granted = role != NULL ? role : def_role;
    const char *p2[] = {id, org, granted};
    PGresult *res = query(a,
                          "INSERT INTO principal_roles (principal_id, organisation_id, role)"
                          " VALUES ($1, $2, $3)",
                          3, p2);
    if (res == NULL)
        return db_fail(a, what);
    PQclear(res);
    if ((rc = commit(a, what)) != 0)
        return rc;
    char sentence[1024];
    snprintf(sentence, sizeof(sentence), "added \"%s\" to %s with the role %s, id %s", name,
             org_code, granted, id);
    return print_record(a, &principal_view, id, true, sentence);
}

/* One role of a person. */
static const adm_view role_view = {
    .noun = "role",
    .select = "SELECT r.id, r.principal_id, p.name, po.code, r.role, ro.code, r.version, r.deleted"
              " FROM principal_roles r JOIN principals p ON p.id = r.principal_id"
              " JOIN organisations po ON po.id = p.organisation_id"
              " JOIN organisations ro ON ro.id = r.organisation_id"
              " WHERE ($1::boolean OR NOT r.deleted)"
              " AND ($2::uuid IS NULL OR r.id = $2::uuid)"
              " AND ($3::text IS NULL OR ro.code = $3)",
    .fields = {{"id", 0, ADM_TEXT},
               {"principal_id", 1, ADM_TEXT},
               {"principal", 2, ADM_TEXT},
               {"principal_organisation", 3, ADM_TEXT},
               {"role", 4, ADM_TEXT},
               {"organisation", 5, ADM_TEXT},
               {"version", 6, ADM_INT},
               {"deleted", 7, ADM_BOOL}},
};

/* ORG PRINCIPAL ROLE [--in ORG2] of grant and withdraw. */
typedef struct {
    const char *org_code, *name, *role;
    const char *in_code; /* --in, else org_code */
    char principal[UUID_TEXT];
    char in[UUID_TEXT]; /* the organisation the role is held in */
} role_ref;

/* The person, the role and the organisation it is held in, looked up in
 * a transaction begun here. */
static int role_target(adm *a, role_ref *t)
{
    t->org_code = a->args[0];
    t->name = a->args[1];
    t->role = a->args[2];
    const char *in = opt(a, "--in");
    t->in_code = in != NULL ? in : t->org_code;
    char org[UUID_TEXT];
    int rc = check_role(a, t->role);
    if (rc != 0 || (rc = open_db(a)) != 0 || (rc = begin(a)) != 0 ||
        (rc = find_org(a, t->org_code, org, NULL, 0)) != 0 ||
        (rc = need_principal(a, t->org_code, org, t->name, t->principal)) != 0)
        return rc;
    if (in == NULL) {
        memcpy(t->in, org, UUID_TEXT);
        return 0;
    }
    return find_org(a, in, t->in, NULL, 0);
}

/* "VERB the role ROLE in ORG2 PREP "PRINCIPAL" of ORG", for the messages. */
static void role_words(const role_ref *t, const char *verb, const char *prep, char *out, size_t cap)
{
    snprintf(out, cap, "%s the role %s in %s %s \"%s\" of %s", verb, t->role, t->in_code, prep,
             t->name, t->org_code);
}

/* Commits the grant or withdrawal what names and prints the role record. */
static int role_changed(adm *a, const role_ref *t, const char *id, const char *what,
                        const char *verb, const char *prep)
{
    int rc = commit(a, what);
    if (rc != 0)
        return rc;
    char sentence[1024];
    role_words(t, verb, prep, sentence, sizeof(sentence));
    return print_record(a, &role_view, id, true, sentence);
}

static int role_grant(adm *a)
{
    role_ref t;
    char id[UUID_TEXT], what[512];
    int rc = role_target(a, &t);
    if (rc != 0)
        return rc;
    const char *params[] = {t.principal, t.in, t.role};
    rc = query_value(a, "cannot look the role up",
                     "SELECT id FROM principal_roles WHERE principal_id = $1"
                     " AND organisation_id = $2 AND role = $3 AND NOT deleted",
                     3, params, id, sizeof(id));
    if (rc > 1)
        return rc;
    if (rc == 0) {
        rollback(a);
        char sentence[1024];
        snprintf(sentence, sizeof(sentence), "\"%s\" of %s holds the role %s in %s already", t.name,
                 t.org_code, t.role, t.in_code);
        return print_record(a, &role_view, id, false, sentence);
    }
    role_words(&t, "cannot grant", "to", what, sizeof(what));
    rc = query_value(a, what,
                     "INSERT INTO principal_roles (principal_id, organisation_id, role)"
                     " VALUES ($1, $2, $3) RETURNING id",
                     3, params, id, sizeof(id));
    if (rc != 0)
        return rc;
    return role_changed(a, &t, id, what, "granted", "to");
}

static int role_withdraw(adm *a)
{
    role_ref t;
    char id[UUID_TEXT], what[512];
    int rc = role_target(a, &t);
    if (rc != 0)
        return rc;
    role_words(&t, "cannot withdraw", "from", what, sizeof(what));
    /* A role is withdrawn by deleting its record, as a device does. */
    const char *params[] = {t.principal, t.in, t.role};
    rc = query_value(a, what,
                     "UPDATE principal_roles SET deleted = true WHERE principal_id = $1"
                     " AND organisation_id = $2 AND role = $3 AND NOT deleted RETURNING id",
                     3, params, id, sizeof(id));
    if (rc > 1)
        return rc;
    if (rc == 1) {
        rollback(a);
        return fail(a, NS_ADMIN_NOT_FOUND, "\"%s\" of %s does not hold the role %s in %s", t.name,
                    t.org_code, t.role, t.in_code);
    }
    return role_changed(a, &t, id, what, "withdrew", "from");
}

/* ---- devices --------------------------------------------------------------------------- */

static const adm_view device_view = {
    .noun = "record",
    .select =
        "SELECT d.id, d.name, o.code, p.name, d.fingerprint,"
        " CASE WHEN d.deleted THEN 'deleted' WHEN d.revoked IS TRUE THEN 'revoked' ELSE 'active' "
        "END,"
        " d.revoked IS TRUE, " ADM_TIME(
            "d.revoked_at") ", d.revoked_reason, d.version, d.deleted,"
                            " " ADM_TIME(
                                "d.created_at") " FROM devices d"
                                                " JOIN organisations o ON o.id = d.organisation_id"
                                                " JOIN principals p ON p.id = d.principal_id"
                                                " WHERE ($1::boolean OR NOT d.deleted)"
                                                " AND ($2::uuid IS NULL OR d.id = $2::uuid)"
                                                " AND ($3::text IS NULL OR o.code = $3)"
                                                " ORDER BY o.code, d.name",
    .fields = {{"id", 0, ADM_TEXT},
               {"name", 1, ADM_TEXT},
               {"organisation", 2, ADM_TEXT},
               {"principal", 3, ADM_TEXT},
               {"fingerprint", 4, ADM_TEXT},
               {"state", 5, ADM_TEXT},
               {"revoked", 6, ADM_BOOL},
               {"revoked_at", 7, ADM_TEXT},
               {"revoked_reason", 8, ADM_TEXT},
               {"version", 9, ADM_INT},
               {"deleted", 10, ADM_BOOL},
               {"created_at", 11, ADM_TEXT}},
    .cols = {{"NAME", 1}, {"ORGANISATION", 2}, {"STATE", 5}, {"SHA256", 4}, {"PRINCIPAL", 3}},
    .plural = "devices",
};

/* The fingerprint of --cert FILE or --fingerprint HEX. */
static int device_fingerprint(adm *a, const char *device, char fp[FP_HEX])
{
    const char *cert = opt(a, "--cert"), *hex = opt(a, "--fingerprint");
    if ((cert == NULL) == (hex == NULL))
        return fail(a, NS_ADMIN_USAGE,
                    "device register needs --cert FILE or --fingerprint SHA256, not both");
    if (hex != NULL) {
        if (!parse_fingerprint(hex, fp))
            return fail(a, NS_ADMIN_USAGE,
                        "--fingerprint: the SHA-256 of the device certificate (DER): 64 hex "
                        "digits, with or without a colon between each pair");
        return 0;
    }
    ns_tls_cert_info info;
    char err[1024];
    if (ns_tls_cert_file_info(cert, &info, err, sizeof(err)) != 0)
        return fail(a, NS_ADMIN_USAGE, "--cert: %s", err);
    if (info.expired)
        return fail(a, NS_ADMIN_USAGE,
                    "--cert: the certificate in %s expired at %s: napsyncd would refuse it; issue "
                    "a new one",
                    cert, info.not_after);
    if (!info.client_auth)
        return fail(a, NS_ADMIN_USAGE,
                    "--cert: the certificate in %s is not for TLS clients (its key usage or "
                    "extended key usage excludes clientAuth): napsyncd would refuse it",
                    cert);
    if (strcmp(info.subject_cn, device) != 0)
        warn("the certificate's common name is \"%s\", not the device name %s", info.subject_cn,
             device);
    for (size_t i = 0; i < 32; i++)
        snprintf(fp + 2 * i, 3, "%02x", info.sha256[i]);
    return 0;
}

/* A device of that name exists: the same registration again is done
 * (exit 0), anything else a conflict. */
static int device_exists(adm *a, const PGresult *res, const char *org_code, const char *name,
                         const char *device, const char *fp)
{
    const char *id = PQgetvalue(res, 0, 0), *reg_fp = PQgetvalue(res, 0, 1),
               *reg_org = PQgetvalue(res, 0, 2), *reg_name = PQgetvalue(res, 0, 3),
               *revoked_at = PQgetvalue(res, 0, 5);
    bool revoked = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
    bool deleted = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
    if (deleted) {
        rollback(a);
        return fail(a, NS_ADMIN_EXISTS,
                    "device %s was registered and has been deleted: a device name is used once; "
                    "choose another",
                    device);
    }
    if (strcmp(reg_org, org_code) != 0 || strcmp(reg_name, name) != 0) {
        rollback(a);
        return fail(a, NS_ADMIN_EXISTS, "device %s belongs to \"%s\" of %s already", device,
                    reg_name, reg_org);
    }
    if (strcmp(reg_fp, fp) != 0) {
        rollback(a);
        return fail(a, NS_ADMIN_EXISTS,
                    "device %s is registered with another certificate (sha256 %s): a device "
                    "keeps its certificate; register the new one under a new device name",
                    device, reg_fp);
    }
    char sentence[1024], state[160] = "";
    if (revoked)
        snprintf(state, sizeof(state),
                 "; it was revoked at %s and napsyncd refuses it: register a new certificate "
                 "under a new device name",
                 revoked_at);
    snprintf(sentence, sizeof(sentence),
             "device %s is registered already for \"%s\" of %s with this certificate%s", device,
             name, org_code, state);
    char rid[UUID_TEXT];
    snprintf(rid, sizeof(rid), "%s", id);
    rollback(a);
    if (revoked && !a->json)
        warn("device %s has been revoked", device);
    return print_record(a, &device_view, rid, false, sentence);
}

static int device_register(adm *a)
{
    const char *org_code = a->args[0], *name = a->args[1], *device = a->args[2],
               *role = opt(a, "--role");
    char fp[FP_HEX];
    int rc = device_fingerprint(a, device, fp);
    if (rc != 0 || (role != NULL && (rc = check_role(a, role)) != 0))
        return rc;
    if ((rc = open_db(a)) != 0 || (rc = begin(a)) != 0)
        return rc;
    const char *p_name[] = {device};
    PGresult *res =
        query(a,
              "SELECT d.id, d.fingerprint, o.code, p.name, d.revoked IS TRUE, " ADM_TIME(
                  "d.revoked_at") ", d.deleted FROM devices d"
                                  " JOIN principals p ON p.id = d.principal_id"
                                  " JOIN organisations o ON o.id = d.organisation_id"
                                  " WHERE d.name = $1",
              1, p_name);
    if (res == NULL)
        return db_fail(a, "cannot look the device up");
    if (PQntuples(res) == 1) {
        rc = device_exists(a, res, org_code, name, device, fp);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    char other[128], org[UUID_TEXT], def_role[32], principal[UUID_TEXT];
    const char *p_fp[] = {fp};
    rc = query_value(a, "cannot look the certificate up",
                     "SELECT name FROM devices WHERE cert_sha256 = decode($1, 'hex')", 1, p_fp,
                     other, sizeof(other));
    if (rc > 1)
        return rc;
    if (rc == 0) {
        rollback(a);
        return fail(a, NS_ADMIN_EXISTS,
                    "this certificate (sha256 %s) is registered already, as device %s: a "
                    "certificate identifies one device",
                    fp, other);
    }
    if ((rc = find_org(a, org_code, org, def_role, sizeof(def_role))) != 0)
        return rc;
    rc = find_principal(a, org_code, org, name, principal);
    if (rc > 1)
        return rc;
    bool new_person = rc == 1;
    /* napsync_register_device grants its role argument, or the
     * organisation's default for '', when the person lacks it. Without
     * --role an existing person keeps the roles they have: pass one. */
    char held[32] = "";
    if (role == NULL && !new_person) {
        const char *p_held[] = {principal, org};
        rc = query_value(a, "cannot read the person's roles",
                         "SELECT role FROM principal_roles WHERE principal_id = $1"
                         " AND organisation_id = $2 AND NOT deleted ORDER BY role LIMIT 1",
                         2, p_held, held, sizeof(held));
        if (rc > 1)
            return rc;
    }
    char what[512], id[UUID_TEXT];
    snprintf(what, sizeof(what), "cannot register device %s for \"%s\" of %s", device, name,
             org_code);
    const char *params[] = {org_code, name, role != NULL ? role : held, device, fp};
    rc = query_value(a, what, "SELECT napsync_register_device($1, $2, $3, $4, $5)", 5, params, id,
                     sizeof(id));
    if (rc != 0 || (rc = commit(a, what)) != 0)
        return rc;
    char sentence[1024], person[300] = "";
    if (new_person)
        snprintf(person, sizeof(person), " (a new person, with the role %s)",
                 role != NULL ? role : def_role);
    snprintf(sentence, sizeof(sentence),
             "registered device %s for \"%s\" of %s%s: sha256 %s, id %s", device, name, org_code,
             person, fp, id);
    return print_record(a, &device_view, id, true, sentence);
}

static int device_revoke(adm *a)
{
    const char *device = a->args[0], *reason = opt(a, "--reason");
    int rc;
    if ((rc = open_db(a)) != 0 || (rc = begin(a)) != 0)
        return rc;
    const char *p_name[] = {device};
    PGresult *res = query(a,
                          "SELECT id, revoked IS TRUE, " ADM_TIME(
                              "revoked_at") ", deleted FROM devices WHERE name = $1 FOR UPDATE",
                          1, p_name);
    if (res == NULL)
        return db_fail(a, "cannot look the device up");
    if (PQntuples(res) != 1) {
        PQclear(res);
        rollback(a);
        return fail(a, NS_ADMIN_NOT_FOUND,
                    "no device named %s (napsyncd admin device list shows them)", device);
    }
    char id[UUID_TEXT], sentence[1024];
    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
    bool revoked = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    snprintf(sentence, sizeof(sentence), "device %s was revoked already, at %s", device,
             PQgetvalue(res, 0, 2));
    PQclear(res);
    if (revoked) {
        rollback(a);
        return print_record(a, &device_view, id, false, sentence);
    }
    char what[256], found[8];
    snprintf(what, sizeof(what), "cannot revoke device %s", device);
    const char *params[] = {device, reason};
    rc = query_value(a, what, "SELECT napsync_revoke_device($1, $2)", 2, params, found,
                     sizeof(found));
    if (rc != 0 || (rc = commit(a, what)) != 0)
        return rc;
    snprintf(sentence, sizeof(sentence),
             "revoked device %s: napsyncd refuses its certificate from now on, and every napsyncd "
             "on the database closes its open sessions",
             device);
    return print_record(a, &device_view, id, true, sentence);
}

/* ---- the feed -------------------------------------------------------------------------- */

static int print_feed(adm *a, const PGresult *res, bool changed)
{
    const char *head = PQgetvalue(res, 0, 0), *epoch = PQgetvalue(res, 0, 1);
    if (!a->json) {
        if (!changed)
            printf("feed head %s, epoch %s\n", head, epoch);
        else
            printf("the feed's epoch is now %s (was %s; head %s): devices whose cursor is of the "
                   "old epoch re-fetch their scopes at their next sync and keep their unsent "
                   "changes\n",
                   epoch, PQgetvalue(res, 0, 2), head);
        return NS_ADMIN_OK;
    }
    bool ok = true;
    json_t *o = json_object();
    put(o, "head", j_int(res, 0, 0), &ok);
    put(o, "epoch", j_text(res, 0, 1), &ok);
    if (changed) {
        put(o, "previous_epoch", j_text(res, 0, 2), &ok);
        put(o, "changed", json_true(), &ok);
    }
    return emit_record(a, o, ok);
}

/* `feed show` and `feed new-epoch`: the command's statement returns the
 * head's seq and epoch and, when it gives a new epoch, the previous one. */
static int run_feed(adm *a)
{
    int rc = open_db(a);
    if (rc != 0)
        return rc;
    PGresult *res = query(a, a->cmd->sql, 0, NULL);
    if (res == NULL)
        return db_fail(a, a->cmd->what);
    rc = PQntuples(res) == 1 ? print_feed(a, res, PQnfields(res) == 3)
                             : fail(a, NS_ADMIN_FAILED, "sync_feed_head has no row");
    PQclear(res);
    return rc;
}

/* ---- commands and help ----------------------------------------------------------------- */

static const adm_cmd commands[] = {
    {
        .object = "organisation",
        .verb = "add",
        .usage = "CODE --name NAME --kind KIND [--country CC] [--parent CODE] [--default-role "
                 "ROLE]",
        .summary = "add an organisation",
        .description =
            "Adds an organisation. CODE is its stable handle (lowercase letters, digits\n"
            "and hyphens, at most 32; never changed, never reused). KIND is one of\n"
            "ministry, agency, armed_forces, police, cso, local_government,\n"
            "regional_organisation, parliament, donor.",
        .opts = {{"--name", "NAME", "its name, 1 to 200 characters (required)"},
                 {"--kind", "KIND", "what kind of organisation it is (required)"},
                 {"--country", "CC", "ISO 3166-1 alpha-2 code, e.g. KE (none for a regional one)"},
                 {"--parent", "CODE", "the organisation it is part of"},
                 {"--default-role", "ROLE",
                  "the role its new people get unless told otherwise (default implementer)"}},
        .nargs = 1,
        .bypass = true,
        .run = org_add,
    },
    {
        .object = "organisation",
        .verb = "list",
        .usage = "[--deleted]",
        .summary = "list the organisations",
        .description =
            "Lists the organisations by code: kind, country, default role, parent, name.",
        .opts = {{"--deleted", NULL, "include deleted ones"}},
        .view = &org_view,
        .run = run_list,
    },
    {
        .object = "principal",
        .verb = "add",
        .usage = "ORG NAME [--role ROLE]",
        .summary = "add a person to an organisation",
        .description = "Adds the person NAME (unique within the organisation ORG, 1 to 200\n"
                       "characters) with one role in ORG. `device register` adds the person\n"
                       "too when it is new.",
        .opts = {{"--role", "ROLE",
                  "their role in ORG (default: the organisation's default role)"}},
        .nargs = 2,
        .bypass = true,
        .run = principal_add,
    },
    {
        .object = "principal",
        .verb = "list",
        .usage = "[--organisation ORG] [--deleted]",
        .summary = "list people, their roles and active devices",
        .description = "Lists the people by organisation and name, with their roles (a role held\n"
                       "in another organisation as ROLE@CODE) and how many devices they have\n"
                       "that are not revoked.",
        .opts = {{"--organisation", "ORG", "only the people of ORG"},
                 {"--deleted", NULL, "include deleted people"}},
        .view = &principal_view,
        .run = run_list,
    },
    {
        .object = "role",
        .verb = "grant",
        .usage = "ORG PRINCIPAL ROLE [--in ORG2]",
        .summary = "grant a person a role",
        .description = "Grants the person PRINCIPAL of ORG the role ROLE (admin, coordinator,\n"
                       "implementer, regional, observer) in ORG, or in ORG2 (a person acts for\n"
                       "another organisation through a role there). A role held already is\n"
                       "left as it is (exit 0, \"changed\": false).",
        .opts = {{"--in", "ORG2", "the organisation the role is held in (default: ORG)"}},
        .nargs = 3,
        .bypass = true,
        .run = role_grant,
    },
    {
        .object = "role",
        .verb = "withdraw",
        .usage = "ORG PRINCIPAL ROLE [--in ORG2]",
        .summary = "withdraw a role from a person",
        .description =
            "Withdraws the role ROLE in ORG (or ORG2) from the person PRINCIPAL of ORG.\n"
            "Sessions open already keep the roles they started with until they end.",
        .opts = {{"--in", "ORG2", "the organisation the role is held in (default: ORG)"}},
        .nargs = 3,
        .bypass = true,
        .run = role_withdraw,
    },
    {
        .object = "device",
        .verb = "register",
        .usage = "ORG PRINCIPAL DEVICE (--cert FILE | --fingerprint SHA256) [--role ROLE]",
        .summary = "register a device certificate for a person",
        .description =
            "Registers DEVICE (a name: 1 to 64 of A-Z a-z 0-9 . _ -, unique) for the person\n"
            "PRINCIPAL of ORG, identified by the SHA-256 of its certificate's DER: computed\n"
            "from FILE (PEM or DER; the first certificate of a PEM file), which must be a\n"
            "TLS client certificate that has not expired, or given as --fingerprint. A new\n"
            "person is created with --role or the organisation's default role; an existing\n"
            "one keeps their roles and gets --role too. Registering the same device with the\n"
            "same certificate for the same person again changes nothing (exit 0, \"changed\":\n"
            "false, even when it has been revoked since: see \"state\").",
        .opts = {{"--cert", "FILE", "the device's certificate"},
                 {"--fingerprint", "SHA256",
                  "its SHA-256 fingerprint: 64 hex digits, colons allowed"},
                 {"--role", "ROLE", "the person's role in ORG (see above)"}},
        .nargs = 3,
        .bypass = true,
        .run = device_register,
    },
    {
        .object = "device",
        .verb = "list",
        .usage = "[--organisation ORG] [--deleted]",
        .summary = "list devices: organisation, state, fingerprint, person",
        .description = "Lists the devices by organisation and name. STATE is active, revoked or\n"
                       "deleted; --json adds when and why a device was revoked.",
        .opts = {{"--organisation", "ORG", "only the devices of ORG"},
                 {"--deleted", NULL, "include deleted devices"}},
        .view = &device_view,
        .run = run_list,
    },
    {
        .object = "device",
        .verb = "revoke",
        .usage = "DEVICE [--reason TEXT]",
        .summary = "revoke a device",
        .description =
            "Revokes DEVICE: napsyncd refuses its certificate from the next handshake on,\n"
            "and every napsyncd on the database closes its open sessions within moments\n"
            "(Error DEVICE_REVOKED). A revoked device stays revoked: enrol a new certificate\n"
            "under a new name. Revoking it again changes nothing (exit 0, \"changed\": false).",
        .opts = {{"--reason", "TEXT", "why, kept with the device (at most 500 characters)"}},
        .nargs = 1,
        .bypass = true,
        .run = device_revoke,
    },
    {
        .object = "feed",
        .verb = "show",
        .usage = "",
        .summary = "show the change feed's head and epoch",
        .description = "Prints the feed's newest position and its epoch, the part of every\n"
                       "cursor that names this database's history.",
        .sql = "SELECT seq, epoch FROM sync_feed_head",
        .what = "cannot read the feed's head",
        .run = run_feed,
    },
    {
        .object = "feed",
        .verb = "new-epoch",
        .usage = "",
        .summary = "give the feed a new epoch: after restoring a backup",
        .description =
            "Gives the change feed a new epoch. Run it after restoring the database from a\n"
            "backup, before napsyncd serves again (docs/operations.md): the restored feed\n"
            "hands out again positions that devices read before the restore; with the new\n"
            "epoch their cursors are refused (CURSOR_UNKNOWN), and each device re-fetches\n"
            "its scopes and keeps its unsent changes. Any role that may update\n"
            "sync_feed_head may run it (napsyncd's own does).",
        /* After a restore: positions the restored feed hands out again must
         * not pass for the ones devices read before (sql/002: "changes when
         * the database is restored"). Under the head's row lock, like a push. */
        .sql = "UPDATE sync_feed_head h SET epoch = gen_random_uuid()"
               " FROM (SELECT epoch FROM sync_feed_head FOR UPDATE) old"
               " RETURNING h.seq, h.epoch, old.epoch",
        .what = "cannot give the feed a new epoch",
        .run = run_feed,
    },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char global_help[] =
    "Options for every command (anywhere after \"admin\"):\n"
    "  --json    print each record, result or error as one JSON object per line\n"
    "  --help    this help (napsyncd admin help [OBJECT [VERB]] too)\n"
    "\n"
    "Exit status: 0 done (or nothing to do); 1 cannot connect, the schema needs\n"
    "napsyncd --migrate, or another failure; 2 bad arguments or a value the schema's\n"
    "rules refuse; 3 not found; 4 exists already, differently; 5 the database role may\n"
    "not do it.\n";

static void help_overview(FILE *out, const char *object)
{
    fprintf(out, "Usage: napsyncd [--config FILE] [--database CONNINFO] admin [--json] %s%s\n\n",
            object != NULL ? object : "OBJECT", " VERB [ARGUMENTS] [OPTIONS]");
    if (object == NULL)
        fputs("Administers organisations, people (principals), their roles and devices, and\n"
              "the change feed, in the database the settings name (the database setting of\n"
              "--config FILE, or --database; settings go before \"admin\"). Every change is\n"
              "versioned, logged as the administrator's and put in the change feed, so that\n"
              "devices receive it at their next sync. Commands that change the directory need\n"
              "a database role that bypasses row-level security: the cluster's superuser or\n"
              "a role with BYPASSRLS (napsyncd's own role may list, not change it), for\n"
              "example\n"
              "  sudo -u postgres napsyncd --database 'dbname=napsync' admin device list\n\n",
              out);
    fputs("Commands:\n", out);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const adm_cmd *c = &commands[i];
        if (object != NULL && strcmp(object, c->object) != 0)
            continue;
        char head[64];
        snprintf(head, sizeof(head), "%s %s", c->object, c->verb);
        fprintf(out, "  %-24s %s\n", head, c->summary);
    }
    fputs("\nnapsyncd admin OBJECT VERB --help shows a command's arguments.\n\n", out);
    fputs(global_help, out);
}

static void help_command(FILE *out, const adm_cmd *c)
{
    fprintf(out, "Usage: napsyncd [SETTINGS] admin [--json] %s %s%s%s\n\n%s\n", c->object, c->verb,
            *c->usage != '\0' ? " " : "", c->usage, c->description);
    if (c->opts[0].name != NULL) {
        fputs("\nOptions:\n", out);
        for (size_t i = 0; i < ADM_MAX_OPTS && c->opts[i].name != NULL; i++) {
            char head[64];
            snprintf(head, sizeof(head), "%s%s%s", c->opts[i].name, c->opts[i].metavar ? " " : "",
                     c->opts[i].metavar ? c->opts[i].metavar : "");
            fprintf(out, "  %-22s %s\n", head, c->opts[i].help);
        }
    }
    fputc('\n', out);
    fputs(global_help, out);
}

static bool has_object(const char *object)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].object, object) == 0)
            return true;
    return false;
}

static const adm_cmd *find_command(const char *object, const char *verb)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].object, object) == 0 && strcmp(commands[i].verb, verb) == 0)
            return &commands[i];
    return NULL;
}

/* Every word is bounded, UTF-8 and free of control characters before it
 * goes anywhere, so that messages may quote it. */
static int check_words(adm *a, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(argv[i]);
        if (len > ADM_ARG_MAX)
            return fail(a, NS_ADMIN_USAGE, "argument %d is longer than %d bytes", i + 1,
                        ADM_ARG_MAX);
        for (size_t k = 0; k < len;) {
            size_t n = utf8_seq((const unsigned char *)argv[i] + k);
            if (n == 0)
                return fail(a, NS_ADMIN_USAGE, "argument %d is not valid UTF-8", i + 1);
            if (n == 1 && ((unsigned char)argv[i][k] < 0x20 || argv[i][k] == 0x7f))
                return fail(a, NS_ADMIN_USAGE, "argument %d holds a control character", i + 1);
            k += n;
        }
    }
    return 0;
}

static bool is_global(adm *a, const char *w, bool *help)
{
    if (strcmp(w, "--json") == 0) {
        a->json = true;
        return true;
    }
    if (strcmp(w, "--help") == 0 || strcmp(w, "-h") == 0) {
        *help = true;
        return true;
    }
    return false;
}

/* The command's arguments and options, from argv[i] on. */
static int parse_rest(adm *a, int i, int argc, char **argv, bool *help)
{
    const adm_cmd *c = a->cmd;
    bool options = true;
    for (; i < argc; i++) {
        const char *w = argv[i];
        if (options && strcmp(w, "--") == 0) {
            options = false;
            continue;
        }
        if (options && is_global(a, w, help))
            continue;
        if (!options || strncmp(w, "--", 2) != 0) {
            if (a->nargs >= c->nargs)
                return fail(a, NS_ADMIN_USAGE, "unexpected argument '%s' (usage: %s %s %s)", w,
                            c->object, c->verb, c->usage);
            a->args[a->nargs++] = w;
            continue;
        }
        const char *eq = strchr(w, '=');
        size_t len = eq != NULL ? (size_t)(eq - w) : strlen(w);
        size_t k = 0;
        while (k < ADM_MAX_OPTS && c->opts[k].name != NULL &&
               !(strlen(c->opts[k].name) == len && strncmp(c->opts[k].name, w, len) == 0))
            k++;
        if (k == ADM_MAX_OPTS || c->opts[k].name == NULL)
            return fail(a, NS_ADMIN_USAGE, "unknown option '%.*s' for %s %s (see --help)", (int)len,
                        w, c->object, c->verb);
        if (a->opt[k] != NULL)
            return fail(a, NS_ADMIN_USAGE, "%s is given twice", c->opts[k].name);
        if (c->opts[k].metavar == NULL) {
            if (eq != NULL)
                return fail(a, NS_ADMIN_USAGE, "%s takes no value", c->opts[k].name);
            a->opt[k] = "";
        } else if (eq != NULL) {
            a->opt[k] = eq + 1;
        } else if (i + 1 < argc) {
            a->opt[k] = argv[++i];
        } else {
            return fail(a, NS_ADMIN_USAGE, "%s needs a value (%s)", c->opts[k].name,
                        c->opts[k].metavar);
        }
    }
    return 0;
}

int ns_admin_main(const char *conninfo, int argc, char **argv)
{
    adm a;
    memset(&a, 0, sizeof(a));
    a.conninfo = conninfo;
    bool help = false;
    const char *words[2] = {NULL, NULL};
    int i = 0, nwords = 0;
    /* --json anywhere: set it first, so that an early error is JSON too. */
    for (int k = 0; k < argc && strcmp(argv[k], "--") != 0; k++)
        if (strcmp(argv[k], "--json") == 0)
            a.json = true;
    int rc = check_words(&a, argc, argv);
    if (rc != 0)
        return rc;
    /* OBJECT and VERB come first; "help" asks for help about them. */
    for (; i < argc && nwords < 2; i++) {
        if (is_global(&a, argv[i], &help))
            continue;
        if (nwords == 0 && strcmp(argv[i], "help") == 0 && !help) {
            help = true;
            continue;
        }
        if (strncmp(argv[i], "-", 1) == 0)
            break;
        words[nwords++] = argv[i];
    }
    if (words[0] == NULL) {
        help_overview(help ? stdout : stderr, NULL);
        if (help)
            return NS_ADMIN_OK;
        return fail(&a, NS_ADMIN_USAGE, "no command given");
    }
    if (!has_object(words[0])) {
        help_overview(stderr, NULL);
        return fail(&a, NS_ADMIN_USAGE, "unknown object '%s'", words[0]);
    }
    if (words[1] == NULL) {
        /* "admin device --help", or "admin device" alone. */
        while (i < argc && is_global(&a, argv[i], &help))
            i++;
        help_overview(help ? stdout : stderr, words[0]);
        if (help && i == argc)
            return NS_ADMIN_OK;
        return fail(&a, NS_ADMIN_USAGE, "%s needs a command (above)", words[0]);
    }
    a.cmd = find_command(words[0], words[1]);
    if (a.cmd == NULL) {
        help_overview(stderr, words[0]);
        return fail(&a, NS_ADMIN_USAGE, "unknown command '%s %s' (above)", words[0], words[1]);
    }
    rc = parse_rest(&a, i, argc, argv, &help);
    if (help) {
        help_command(stdout, a.cmd);
        return NS_ADMIN_OK;
    }
    if (rc != 0)
        return rc;
    if (a.nargs != a.cmd->nargs)
        return fail(&a, NS_ADMIN_USAGE, "usage: napsyncd admin %s %s %s", a.cmd->object,
                    a.cmd->verb, a.cmd->usage);
    rc = a.cmd->run(&a);
    rollback(&a);
    PQfinish(a.pg);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "napsyncd admin: cannot write the output\n");
        if (rc == NS_ADMIN_OK)
            rc = NS_ADMIN_FAILED;
    }
    return rc;
}
