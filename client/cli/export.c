/* napsync export plan ID: the plan as the server has it, in a plan file.
 *
 * The records come from a Pull of the plan alone (ns_client_pull_plan),
 * page by page, in feed order, where a record may come once per version.
 * They are kept in a private temporary SQLite database (on disk when it
 * grows: memory stays bounded whatever the plan's size), newest version
 * per record, and written out ordered by type, then id: the same plan
 * always gives the same bytes, so export -> import -> export is identical.
 * With -o the file is written beside its final name and renamed into
 * place only when complete, replacing an existing file only with --force
 * (outfile.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sqlite3.h>

#include "napsync.h"
#include "outfile.h"
#include "planfile.h"
#include "planio.h"
#include "value.h"

#define EXPORT_MAX_SHOWN 200
/* Fields of the server's records not in the file format, warned about once each. */
#define EXPORT_MAX_WARNED 64

typedef struct {
    const cli_env *env;
    char plan[PF_UUID_SIZE];
    sqlite3 *db;
    sqlite3_stmt *get_version, *put_rec, *del_vals, *put_val;
    ns_error failure; /* why the pull was stopped */
    bool failed;
    char warned[EXPORT_MAX_WARNED][96];
    size_t nwarned;
} export_run;

static const char schema[] =
    "PRAGMA journal_mode = OFF;"
    "PRAGMA synchronous = OFF;"
    "CREATE TABLE rec (t INTEGER NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,"
    "                  deleted INTEGER NOT NULL, PRIMARY KEY (t, id));"
    "CREATE TABLE val (t INTEGER NOT NULL, id TEXT NOT NULL, f INTEGER NOT NULL,"
    "                  v TEXT NOT NULL, PRIMARY KEY (t, id, f));";

static bool db_fail(export_run *x, const char *what)
{
    x->failed = true;
    snprintf(x->failure.message, sizeof(x->failure.message), "%s: %s", what, sqlite3_errmsg(x->db));
    x->failure.status = NS_ERR_STATE;
    return false;
}

static void warn_once(export_run *x, const char *type, const char *field, const char *what)
{
    char key[96];
    snprintf(key, sizeof(key), "%s.%s", type, field);
    for (size_t i = 0; i < x->nwarned; i++)
        if (strcmp(x->warned[i], key) == 0)
            return;
    if (x->nwarned < EXPORT_MAX_WARNED)
        snprintf(x->warned[x->nwarned++], sizeof(x->warned[0]), "%s", key);
    fprintf(stderr,
            "napsync: warning: %s %s of the server is not part of the plan file format "
            "(left out of the export): %s\n",
            type, field, what);
}

/* Keeps the newest version of each record. */
static int on_record(const ns_record_view *rv, void *ud)
{
    export_run *x = ud;
    size_t t;
    const pf_type *ty = pf_type_find(rv->entity_type, &t);
    if (ty == NULL) {
        warn_once(x, rv->entity_type, "*", "a type this napsync does not know");
        return 0;
    }
    sqlite3_stmt *s = x->get_version;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)t);
    sqlite3_bind_text(s, 2, rv->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && (uint64_t)sqlite3_column_int64(s, 0) >= rv->version)
        return 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(x, "temporary database") ? 0 : 1;
    for (size_t i = 0; i < rv->nfields; i++) {
        const ns_field_view *fv = &rv->fields[i];
        int fi = pf_field_index(ty, fv->name);
        if (fi < 0) {
            if (strcmp(fv->name, PF_TENANT_FIELD) == 0 && ty != pf_type_at(0)) {
                if (fv->value == NULL || strcmp(fv->value, x->plan) != 0) {
                    x->failed = true;
                    x->failure.status = NS_ERR_PROTOCOL;
                    snprintf(x->failure.message, sizeof(x->failure.message),
                             "the server sent %s %s as a record of plan %s, but its %s is %s",
                             rv->entity_type, rv->id, x->plan, PF_TENANT_FIELD,
                             fv->value ? fv->value : "null");
                    return 1;
                }
            } else {
                warn_once(x, rv->entity_type, fv->name, "a field this napsync does not know");
            }
            continue;
        }
        if (fv->value != NULL && strcmp(fv->kind, ns_kind_word(ty->fields[fi].kind)) != 0) {
            x->failed = true;
            x->failure.status = NS_ERR_PROTOCOL;
            snprintf(x->failure.message, sizeof(x->failure.message),
                     "the server's %s.%s is a %s; this napsync's plan file format has it as a "
                     "%s (a newer napsync may be needed)",
                     rv->entity_type, fv->name, fv->kind, ns_kind_word(ty->fields[fi].kind));
            return 1;
        }
    }
    s = x->put_rec;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)t);
    sqlite3_bind_text(s, 2, rv->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)rv->version);
    sqlite3_bind_int(s, 4, rv->deleted ? 1 : 0);
    if (sqlite3_step(s) != SQLITE_DONE)
        return db_fail(x, "temporary database") ? 0 : 1;
    s = x->del_vals;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)t);
    sqlite3_bind_text(s, 2, rv->id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        return db_fail(x, "temporary database") ? 0 : 1;
    for (size_t i = 0; i < rv->nfields && !rv->deleted; i++) {
        const ns_field_view *fv = &rv->fields[i];
        int fi = pf_field_index(ty, fv->name);
        if (fi < 0 || fv->value == NULL)
            continue;
        s = x->put_val;
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, (sqlite3_int64)t);
        sqlite3_bind_text(s, 2, rv->id, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, fi);
        sqlite3_bind_text(s, 4, fv->value, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            return db_fail(x, "temporary database") ? 0 : 1;
    }
    return 0;
}

/* Writes the kept records in type and id order. Returns 0, or -1 with
 * x->failure set. */
static int write_records(export_run *x, pf_writer *w, size_t *count)
{
    sqlite3_stmt *recs = NULL, *vals = NULL;
    ns_value values[64];
    size_t nvalues = 0;
    int rc = -1;
    if (sqlite3_prepare_v2(x->db, "SELECT t, id FROM rec WHERE deleted = 0 ORDER BY t, id", -1,
                           &recs, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(x->db, "SELECT f, v FROM val WHERE t = ?1 AND id = ?2", -1, &vals,
                           NULL) != SQLITE_OK) {
        db_fail(x, "temporary database");
        goto done;
    }
    int step;
    while ((step = sqlite3_step(recs)) == SQLITE_ROW) {
        size_t t = (size_t)sqlite3_column_int64(recs, 0);
        const pf_type *ty = pf_type_at(t);
        char id[PF_UUID_SIZE];
        snprintf(id, sizeof(id), "%s", (const char *)sqlite3_column_text(recs, 1));
        if (ty == NULL || ty->nfields > sizeof(values) / sizeof(values[0])) {
            x->failure.status = NS_ERR_STATE;
            snprintf(x->failure.message, sizeof(x->failure.message), "record type %zu", t);
            goto done;
        }
        nvalues = ty->nfields;
        for (size_t i = 0; i < nvalues; i++)
            ns_value_init_null(&values[i], ty->fields[i].kind);
        sqlite3_reset(vals);
        sqlite3_bind_int64(vals, 1, (sqlite3_int64)t);
        sqlite3_bind_text(vals, 2, id, -1, SQLITE_TRANSIENT);
        while ((step = sqlite3_step(vals)) == SQLITE_ROW) {
            int fi = sqlite3_column_int(vals, 0);
            const char *text = (const char *)sqlite3_column_text(vals, 1);
            if (fi < 0 || (size_t)fi >= nvalues || text == NULL)
                continue;
            const pf_field *fd = &ty->fields[fi];
            ns_field_type ft = {.kind = fd->kind, .nullable = true};
            char why[200];
            /* The server's text forms read back exactly (they came from ns_value_format). */
            if (ns_value_parse(&ft, text, &values[fi], why, sizeof(why)) != NS_VALUE_OK) {
                x->failure.status = NS_ERR_PROTOCOL;
                snprintf(x->failure.message, sizeof(x->failure.message),
                         "%s %s: field %s from the server does not read back: %s", ty->name, id,
                         fd->name, why);
                goto done;
            }
        }
        if (step != SQLITE_DONE) {
            db_fail(x, "temporary database");
            goto done;
        }
        if (pf_writer_record(w, t, id, values) != 0) {
            x->failure.status = NS_ERR_STATE;
            snprintf(x->failure.message, sizeof(x->failure.message),
                     t == 0 ? "cannot write the output: %s"
                            : "cannot write the output (or the plan record is missing): %s",
                     errno ? strerror(errno) : "write failed");
            goto done;
        }
        (*count)++;
        for (size_t i = 0; i < nvalues; i++)
            ns_value_free(&values[i]);
        nvalues = 0;
    }
    if (step != SQLITE_DONE) {
        db_fail(x, "temporary database");
        goto done;
    }
    rc = 0;
done:
    for (size_t i = 0; i < nvalues; i++)
        ns_value_free(&values[i]);
    sqlite3_finalize(recs);
    sqlite3_finalize(vals);
    return rc;
}

static void run_close(export_run *x)
{
    sqlite3_finalize(x->get_version);
    sqlite3_finalize(x->put_rec);
    sqlite3_finalize(x->del_vals);
    sqlite3_finalize(x->put_val);
    sqlite3_close(x->db);
}

static int open_db(export_run *x)
{
    /* "": a private temporary database, on disk once it outgrows its cache. */
    if (sqlite3_open_v2("", &x->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(x->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(x->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(x->db, "SELECT version FROM rec WHERE t = ?1 AND id = ?2", -1,
                           &x->get_version, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(x->db, "INSERT OR REPLACE INTO rec VALUES (?1, ?2, ?3, ?4)", -1,
                           &x->put_rec, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(x->db, "DELETE FROM val WHERE t = ?1 AND id = ?2", -1, &x->del_vals,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(x->db, "INSERT INTO val VALUES (?1, ?2, ?3, ?4)", -1, &x->put_val,
                           NULL) != SQLITE_OK)
        return -1;
    return 0;
}

int cli_export(const cli_env *env, const char *what, const char *plan_id, const char *format,
               const char *output, bool force)
{
    char msg[800];
    if (strcmp(what, "plan") != 0) {
        snprintf(msg, sizeof(msg),
                 "export: \"%.40s\" cannot be exported; only a plan: napsync export plan ID "
                 "(see napsync export --help)",
                 what);
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    export_run x;
    memset(&x, 0, sizeof(x));
    x.env = env;
    ns_field_type ref = {.kind = NS_KIND_REF};
    ns_value pv;
    char why[128];
    if (ns_value_parse(&ref, plan_id, &pv, why, sizeof(why)) != NS_VALUE_OK) {
        snprintf(msg, sizeof(msg), "export: the plan id is not a UUID (see napsync export --help)");
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    snprintf(x.plan, sizeof(x.plan), "%s", pv.u.s);
    ns_value_free(&pv);
    size_t olen = output ? strlen(output) : 0;
    pf_format fmt;
    if (format != NULL ? strcmp(format, "csv") == 0
                       : olen >= 4 && strcasecmp(output + olen - 4, ".csv") == 0) {
        fmt = PF_CSV;
    } else if (format == NULL || strcmp(format, "json") == 0) {
        fmt = PF_JSON;
    } else {
        snprintf(msg, sizeof(msg),
                 "--format: \"%.40s\" is neither json nor csv (see napsync export --help)", format);
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    }
    if (force && output == NULL)
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, "--force goes with -o FILE");
    if (output != NULL && ns_outfile_check(output, force, msg, sizeof(msg)) != 0)
        return env->fail(env->ud, NS_ERR_INVALID_ARGUMENT, msg);
    char shown[EXPORT_MAX_SHOWN + 4] = "";
    if (output != NULL) {
        snprintf(shown, sizeof(shown), "%.*s", EXPORT_MAX_SHOWN, output);
        for (char *p = shown; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    }
    if (open_db(&x) != 0) {
        snprintf(msg, sizeof(msg), "cannot make a temporary database: %s",
                 x.db ? sqlite3_errmsg(x.db) : "out of memory");
        run_close(&x);
        return env->fail(env->ud, NS_ERR_STATE, msg);
    }
    ns_client *c = NULL;
    int rc = env->connect(env->ud, &c);
    if (rc != 0) {
        run_close(&x);
        return rc;
    }
    ns_error e;
    if (ns_client_pull_plan_wait(c, plan_id, on_record, &x, &e) != NS_OK) {
        run_close(&x);
        env->disconnect(env->ud);
        return env->fail(env->ud, e.status, e.message);
    }
    env->disconnect(env->ud);
    if (x.failed) {
        run_close(&x);
        return env->fail(env->ud, x.failure.status, x.failure.message);
    }
    /* The output: standard output, or a temporary file renamed into place. */
    char *tmp = NULL;
    FILE *out = stdout;
    if (output != NULL) {
        int fd = ns_outfile_open(output, &tmp, msg, sizeof(msg));
        if (fd >= 0 && (out = fdopen(fd, "wb")) == NULL) {
            snprintf(msg, sizeof(msg), "%s: cannot create a file beside it: %s", shown,
                     strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            fd = -1;
        }
        if (fd < 0) {
            run_close(&x);
            return env->fail(env->ud, NS_ERR_STATE, msg);
        }
    }
    size_t count = 0;
    pf_writer *w = pf_writer_new(fmt, out);
    errno = 0;
    int wrc = w == NULL ? -1 : write_records(&x, w, &count);
    if (wrc == 0 && count == 0) {
        x.failure.status = NS_ERR_SERVER;
        snprintf(x.failure.message, sizeof(x.failure.message),
                 "plan %s: the server sent no record of it", x.plan);
        wrc = -1;
    }
    if (wrc == 0 && pf_writer_finish(w) != 0) {
        x.failure.status = NS_ERR_STATE;
        snprintf(x.failure.message, sizeof(x.failure.message),
                 "plan %s: the plan record itself is missing, or the output cannot be written",
                 x.plan);
        wrc = -1;
    }
    if (w == NULL) {
        x.failure.status = NS_ERR_NOMEM;
        snprintf(x.failure.message, sizeof(x.failure.message), "out of memory");
    }
    pf_writer_free(w);
    run_close(&x);
    if (out != stdout) {
        bool bad = fflush(out) != 0 || ferror(out) || fsync(fileno(out)) != 0;
        if (fclose(out) != 0)
            bad = true;
        if (wrc == 0 && bad) {
            x.failure.status = NS_ERR_STATE;
            snprintf(x.failure.message, sizeof(x.failure.message), "%s: cannot write: %s", shown,
                     strerror(errno));
            wrc = -1;
        }
        if (wrc != 0) {
            unlink(tmp);
        } else {
            int crc =
                ns_outfile_commit(tmp, output, force, x.failure.message, sizeof(x.failure.message));
            if (crc != 0) {
                x.failure.status = crc == -2 ? NS_ERR_INVALID_ARGUMENT : NS_ERR_STATE;
                wrc = -1;
            }
        }
        free(tmp);
    }
    if (wrc != 0)
        return env->fail(env->ud, x.failure.status, x.failure.message);
    if (output != NULL)
        printf("exported plan %s: %zu records to %s\n", x.plan, count, shown);
    return 0;
}
