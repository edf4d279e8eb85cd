/* Schema migrations (see migrate.h).
 *
 * Files in sql_dir whose names match ^[0-9]{3}_[a-z0-9_]+\.sql$ are
 * migrations; every other name (README, editor backups such as
 * "001_x.sql~", "1_x.sql", upper case) is ignored, so that such files can
 * sit beside them. A matching name that cannot be read, is not a regular
 * file, exceeds MIG_MAX_FILE, holds a NUL byte, or shares its number with
 * another file is an error.
 *
 * The checksum is computed by PostgreSQL (sha256 of the UTF-8 text), which
 * keeps OpenSSL out of this file; the connection's client_encoding is fixed
 * to UTF8, so the text reaches the server byte for byte.
 *
 * The file's own text is run with PQexec, the one non-parameterised
 * statement in napsyncd: it is our migration, and it holds several
 * statements, which only the simple query protocol accepts. */
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"

#define MIG_MAX_FILE     (1024 * 1024)
#define MIG_VERSIONS     1000 /* three digits */
#define MIG_CHECKSUM_LEN 64
/* pg_advisory_lock key: "napsync" read as a big-endian integer. */
#define MIG_LOCK_KEY "31069383039741539"

typedef struct {
    int version;
    char name[NAME_MAX + 1];
} mig_file;

typedef struct {
    PGconn *pg;
    char *search_path; /* as the session started */
    bool locked;
    char *err;
    size_t errlen;
    mig_file *files;
    size_t nfiles;
    PGresult *applied_res;
    const char *checksum[MIG_VERSIONS]; /* by version, into applied_res */
    int max_applied;                    /* -1 when none */
} mig_ctx;

static void mig_err(mig_ctx *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void mig_err(mig_ctx *m, const char *fmt, ...)
{
    va_list ap;

    if (m->err == NULL || m->errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(m->err, m->errlen, fmt, ap);
    va_end(ap);
}

static void mig_ignore_notice(void *arg, const PGresult *res)
{
    /* "relation already exists, skipping" and a migration's RAISE NOTICE
     * would otherwise go to stderr, outside the daemon's log format. */
    (void)arg;
    (void)res;
}

static void mig_append(char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void mig_append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    va_list ap;

    if (*used >= len)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used += (size_t)n < len - *used ? (size_t)n : len - *used - 1;
}

/* The line of a 1-based character position in text (server positions count
 * characters, and the text is UTF-8). */
static int mig_line_of(const char *text, long pos)
{
    int line = 1;
    long chars = 0;

    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        if ((*p & 0xC0) == 0x80)
            continue;
        if (++chars >= pos)
            break;
        if (*p == '\n')
            line++;
    }
    return line;
}

/* PostgreSQL's error on one line: severity, SQLSTATE, message, detail, hint,
 * context and, for the migration's own text, the line it points at. */
static void mig_describe(const PGconn *pg, const PGresult *res, const char *text, char *buf,
                         size_t len)
{
    size_t used = 0;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    buf[0] = '\0';
    if (primary == NULL) {
        /* libpq's own errors (lost connection...) carry no fields. */
        const char *m = res != NULL ? PQresultErrorMessage(res) : "";
        mig_append(buf, len, &used, "%s", *m != '\0' ? m : PQerrorMessage(pg));
    } else {
        const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
        const char *context = PQresultErrorField(res, PG_DIAG_CONTEXT);
        const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);

        mig_append(buf, len, &used, "%s %s: %s", sev != NULL ? sev : "ERROR",
                   state != NULL ? state : "?????", primary);
        if (pos != NULL && text != NULL)
            mig_append(buf, len, &used, " (at line %d)", mig_line_of(text, atol(pos)));
        if (detail != NULL)
            mig_append(buf, len, &used, "; detail: %s", detail);
        if (hint != NULL)
            mig_append(buf, len, &used, "; hint: %s", hint);
        if (context != NULL)
            mig_append(buf, len, &used, "; context: %s", context);
    }
    /* One log line: fold libpq's and the context's line breaks and indents
     * into single spaces. */
    char *w = buf;
    bool space = true; /* drops leading blanks too */
    for (const char *r = buf; *r != '\0'; r++) {
        bool blank = *r == '\n' || *r == '\r' || *r == '\t' || *r == ' ';
        if (blank && space)
            continue;
        *w++ = blank ? ' ' : *r;
        space = blank;
    }
    if (w > buf && w[-1] == ' ')
        w--;
    *w = '\0';
}

/* Runs a statement that must succeed; on failure writes "what: error". */
static PGresult *mig_exec(mig_ctx *m, const char *sql, int nparams, const char *const *values,
                          ExecStatusType want, const char *what)
{
    PGresult *res = PQexecParams(m->pg, sql, nparams, NULL, values, NULL, NULL, 0);
    if (res != NULL && PQresultStatus(res) == want)
        return res;
    char desc[1024];
    mig_describe(m->pg, res, NULL, desc, sizeof desc);
    mig_err(m, "%s: %s", what, desc);
    PQclear(res);
    return NULL;
}

static bool mig_run_cmd(mig_ctx *m, const char *sql, const char *what)
{
    PGresult *res = mig_exec(m, sql, 0, NULL, PGRES_COMMAND_OK, what);
    PQclear(res);
    return res != NULL;
}

/* ---- the directory ---------------------------------------------------------- */

static bool mig_name_ok(const char *n)
{
    size_t len = strlen(n);

    if (len < 9) /* "000_a.sql" */
        return false;
    for (int i = 0; i < 3; i++)
        if (n[i] < '0' || n[i] > '9')
            return false;
    if (n[3] != '_' || strcmp(n + len - 4, ".sql") != 0)
        return false;
    for (size_t i = 4; i < len - 4; i++) {
        char ch = n[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

static int mig_file_cmp(const void *a, const void *b)
{
    const mig_file *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int mig_list(mig_ctx *m, const char *dir)
{
    DIR *d = opendir(dir);
    size_t cap = 0;

    if (d == NULL) {
        mig_err(m, "cannot open migrations directory %s: %s", dir, strerror(errno));
        return -1;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0) {
                mig_err(m, "cannot read migrations directory %s: %s", dir, strerror(errno));
                closedir(d);
                return -1;
            }
            break;
        }
        if (!mig_name_ok(e->d_name))
            continue;
        if (m->nfiles == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            mig_file *nf = realloc(m->files, ncap * sizeof *nf);
            if (nf == NULL) {
                mig_err(m, "out of memory listing %s", dir);
                closedir(d);
                return -1;
            }
            m->files = nf;
            cap = ncap;
        }
        mig_file *f = &m->files[m->nfiles++];
        f->version = (e->d_name[0] - '0') * 100 + (e->d_name[1] - '0') * 10 + (e->d_name[2] - '0');
        snprintf(f->name, sizeof f->name, "%s", e->d_name);
    }
    closedir(d);
    if (m->nfiles > 0)
        qsort(m->files, m->nfiles, sizeof *m->files, mig_file_cmp);
    for (size_t i = 1; i < m->nfiles; i++) {
        if (m->files[i].version == m->files[i - 1].version) {
            mig_err(m, "%s/%s and %s/%s have the same migration number %03d", dir,
                    m->files[i - 1].name, dir, m->files[i].name, m->files[i].version);
            return -1;
        }
    }
    return 0;
}

/* Reads a migration into a NUL-terminated buffer (caller frees). */
static char *mig_read(mig_ctx *m, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    size_t used = 0;

    if (fd < 0) {
        mig_err(m, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        mig_err(m, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        mig_err(m, "%s is not a regular file", path);
        goto fail;
    }
    if (st.st_size > MIG_MAX_FILE) {
        mig_err(m, "%s is larger than %d bytes", path, MIG_MAX_FILE);
        goto fail;
    }
    /* Read up to one byte past the limit: the file may grow after fstat. */
    buf = malloc(MIG_MAX_FILE + 2);
    if (buf == NULL) {
        mig_err(m, "out of memory reading %s", path);
        goto fail;
    }
    while (used <= MIG_MAX_FILE) {
        ssize_t n = read(fd, buf + used, MIG_MAX_FILE + 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            mig_err(m, "cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    if (used > MIG_MAX_FILE) {
        mig_err(m, "%s is larger than %d bytes", path, MIG_MAX_FILE);
        goto fail;
    }
    if (memchr(buf, '\0', used) != NULL) {
        mig_err(m, "%s contains a NUL byte", path);
        goto fail;
    }
    buf[used] = '\0';
    close(fd);
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}

/* ---- the database ----------------------------------------------------------- */

static int mig_connect(mig_ctx *m, const char *conninfo)
{
    /* Keywords apply in order: the connection string may override the
     * application name and timeout, not the encoding the checksums need. */
    static const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname",
                                       "client_encoding", NULL};
    const char *const vals[] = {"napsyncd-migrate", "10", conninfo, "UTF8", NULL};
    char why[256];

    /* libpq's complaint about a malformed string quotes it, password and
     * all: such a string never reaches it (main checks it too), so what
     * PQerrorMessage says below is about connecting, never parsing. */
    if (ns_db_conninfo_check(conninfo, why, sizeof why) != 0) {
        mig_err(m, "cannot connect to PostgreSQL: %s", why);
        return -1;
    }
    m->pg = PQconnectdbParams(keys, vals, 1);
    if (m->pg == NULL) {
        mig_err(m, "cannot connect to PostgreSQL: out of memory");
        return -1;
    }
    if (PQstatus(m->pg) != CONNECTION_OK) {
        char desc[1024];
        mig_describe(m->pg, NULL, NULL, desc, sizeof desc);
        mig_err(m, "cannot connect to PostgreSQL: %s", desc);
        return -1;
    }
    PQsetNoticeReceiver(m->pg, mig_ignore_notice, NULL);
    PGresult *res = mig_exec(m, "SELECT current_setting('search_path')", 0, NULL, PGRES_TUPLES_OK,
                             "cannot read search_path");
    if (res == NULL)
        return -1;
    m->search_path = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (m->search_path == NULL) {
        mig_err(m, "out of memory");
        return -1;
    }
    return 0;
}

static int mig_lock(mig_ctx *m)
{
    /* Several daemons starting at once: the first migrates, the others wait
     * here and then find nothing left to do. */
    PGresult *res = mig_exec(m, "SELECT pg_advisory_lock(" MIG_LOCK_KEY ")", 0, NULL,
                             PGRES_TUPLES_OK, "cannot take the migration lock");
    if (res == NULL)
        return -1;
    PQclear(res);
    m->locked = true;
    return 0;
}

/* Loads what napsync_migrations records. With create, makes the table
 * first; without (a check must not change the database), a missing table
 * means nothing is applied. */
static int mig_load_applied(mig_ctx *m, bool create)
{
    m->max_applied = -1;
    if (create) {
        if (!mig_run_cmd(m,
                         "CREATE TABLE IF NOT EXISTS napsync_migrations ("
                         " version int PRIMARY KEY,"
                         " name text NOT NULL,"
                         " checksum text NOT NULL,"
                         " applied_at timestamptz NOT NULL DEFAULT now())",
                         "cannot create table napsync_migrations"))
            return -1;
    } else {
        PGresult *res = mig_exec(m, "SELECT to_regclass('napsync_migrations') IS NOT NULL", 0, NULL,
                                 PGRES_TUPLES_OK, "cannot look for table napsync_migrations");
        if (res == NULL)
            return -1;
        bool exists = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!exists)
            return 0;
    }
    m->applied_res = mig_exec(m, "SELECT version, checksum FROM napsync_migrations", 0, NULL,
                              PGRES_TUPLES_OK, "cannot read napsync_migrations");
    if (m->applied_res == NULL)
        return -1;
    for (int i = 0; i < PQntuples(m->applied_res); i++) {
        long v = atol(PQgetvalue(m->applied_res, i, 0));
        if (v > m->max_applied)
            m->max_applied = v > INT_MAX ? INT_MAX : (int)v;
        if (v >= 0 && v < MIG_VERSIONS)
            m->checksum[v] = PQgetvalue(m->applied_res, i, 1);
    }
    return 0;
}

static int mig_checksum(mig_ctx *m, const char *path, const char *text,
                        char out[MIG_CHECKSUM_LEN + 1])
{
    const char *const params[] = {text};
    char what[PATH_MAX + 64];

    snprintf(what, sizeof what, "cannot checksum %s", path);
    PGresult *res = mig_exec(m, "SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", 1, params,
                             PGRES_TUPLES_OK, what);
    if (res == NULL)
        return -1;
    snprintf(out, MIG_CHECKSUM_LEN + 1, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

/* Applies one migration and records it, in one transaction. A file may
 * change session settings (SET search_path, say): the record is written
 * under the search_path the session started with, and RESET ALL after the
 * commit keeps such settings from reaching the next file (advisory locks
 * survive RESET ALL, unlike DISCARD ALL). */
static int mig_apply(mig_ctx *m, const mig_file *f, const char *path, const char *text,
                     const char *checksum)
{
    char desc[1024];
    char what[PATH_MAX + 64];
    char version[16];
    const char *const params[] = {version, f->name, checksum};
    const char *const path_param[] = {m->search_path};

    if (!mig_run_cmd(m, "BEGIN", "cannot start a transaction"))
        return -1;
    PGresult *res = PQexec(m->pg, text);
    ExecStatusType st = PQresultStatus(res);
    if (res == NULL ||
        (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)) {
        mig_describe(m->pg, res, text, desc, sizeof desc);
        mig_err(m, "migration %s failed: %s", path, desc);
        PQclear(res);
        goto fail;
    }
    PQclear(res);
    /* A COMMIT or ROLLBACK in the file would have applied it partly or
     * without its record. */
    if (PQtransactionStatus(m->pg) != PQTRANS_INTRANS) {
        mig_err(m,
                "migration %s ended the transaction itself; a migration must not contain "
                "BEGIN, COMMIT or ROLLBACK",
                path);
        goto fail;
    }
    snprintf(what, sizeof what, "cannot record migration %s", path);
    res = mig_exec(m, "SELECT set_config('search_path', $1, true)", 1, path_param, PGRES_TUPLES_OK,
                   what);
    if (res == NULL)
        goto fail;
    PQclear(res);
    snprintf(version, sizeof version, "%d", f->version);
    res =
        mig_exec(m, "INSERT INTO napsync_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                 3, params, PGRES_COMMAND_OK, what);
    if (res == NULL)
        goto fail;
    PQclear(res);
    snprintf(what, sizeof what, "cannot commit migration %s", path);
    if (!mig_run_cmd(m, "COMMIT", what))
        goto fail;
    snprintf(what, sizeof what, "cannot reset the session after migration %s", path);
    if (!mig_run_cmd(m, "RESET ALL", what))
        return -1;
    return 0;
fail:
    if (PQtransactionStatus(m->pg) != PQTRANS_IDLE)
        PQclear(PQexec(m->pg, "ROLLBACK"));
    return -1;
}

/* Walks the files in order: verifies applied ones, and applies (apply) or
 * counts (check) the others. */
static int mig_walk(mig_ctx *m, const char *dir, bool apply, int *done, int *pending)
{
    char path[PATH_MAX];

    for (size_t i = 0; i < m->nfiles; i++) {
        const mig_file *f = &m->files[i];
        char sum[MIG_CHECKSUM_LEN + 1];

        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, f->name) >= sizeof path) {
            mig_err(m, "path of %s in %s is too long", f->name, dir);
            return -1;
        }
        char *text = mig_read(m, path);
        if (text == NULL)
            return -1;
        if (mig_checksum(m, path, text, sum) != 0) {
            free(text);
            return -1;
        }
        const char *recorded = m->checksum[f->version];
        if (recorded != NULL) {
            free(text);
            if (strcmp(recorded, sum) != 0) {
                mig_err(m,
                        "migration %s was changed after it was applied (recorded sha256 %s, "
                        "file now %s); never edit a landed migration, add a new one",
                        path, recorded, sum);
                return -1;
            }
            continue;
        }
        if (f->version < m->max_applied) {
            free(text);
            mig_err(m,
                    "migration %s was never applied but migration %d was: refusing to apply "
                    "out of order; renumber it after %03d",
                    path, m->max_applied, m->max_applied);
            return -1;
        }
        if (!apply) {
            free(text);
            (*pending)++;
            continue;
        }
        int rc = mig_apply(m, f, path, text, sum);
        free(text);
        if (rc != 0)
            return -1;
        (*done)++;
    }
    return 0;
}

static int mig_main(const char *conninfo, const char *sql_dir, bool apply, int *done, int *pending,
                    char *err, size_t errlen)
{
    mig_ctx m;
    int rc = -1;

    memset(&m, 0, sizeof m);
    m.err = err;
    m.errlen = errlen;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (conninfo == NULL || sql_dir == NULL) {
        mig_err(&m, "migrations: no connection string or directory given");
        return -1;
    }
    if (mig_list(&m, sql_dir) != 0)
        goto out;
    if (mig_connect(&m, conninfo) != 0)
        goto out;
    /* A check takes the lock too, so that it does not report a migration
     * that another daemon is applying right now as missing. */
    if (mig_lock(&m) != 0)
        goto out;
    if (mig_load_applied(&m, apply) != 0)
        goto out;
    rc = mig_walk(&m, sql_dir, apply, done, pending);
out:
    PQclear(m.applied_res);
    if (m.locked)
        PQclear(PQexec(m.pg, "SELECT pg_advisory_unlock(" MIG_LOCK_KEY ")"));
    PQfinish(m.pg);
    free(m.search_path);
    free(m.files);
    return rc;
}

int ns_migrate_run(const char *conninfo, const char *sql_dir, int *applied, char *err,
                   size_t errlen)
{
    int done = 0, pending = 0;
    int rc = mig_main(conninfo, sql_dir, true, &done, &pending, err, errlen);

    /* Also on failure: those before the failing one are committed. */
    if (applied != NULL)
        *applied = done;
    return rc;
}

int ns_migrate_latest(const char *sql_dir, char *err, size_t errlen)
{
    mig_ctx m;
    memset(&m, 0, sizeof m);
    m.err = err;
    m.errlen = errlen;
    int latest = -1;
    if (mig_list(&m, sql_dir) == 0) {
        latest = m.nfiles > 0 ? m.files[m.nfiles - 1].version : -1;
        if (m.nfiles == 0)
            mig_err(&m, "no migrations in %s", sql_dir);
    }
    free(m.files);
    return latest;
}

int ns_migrate_check(const char *conninfo, const char *sql_dir, char *err, size_t errlen)
{
    int done = 0, pending = 0;

    if (mig_main(conninfo, sql_dir, false, &done, &pending, err, errlen) != 0)
        return -1;
    return pending == 0 ? 1 : 0;
}
