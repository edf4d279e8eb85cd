#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "outfile.h"
#include "report_render.h"
#include "value.h"

#define YEAR_MIN 1990
#define YEAR_MAX 2100
/* Longest argument echoed back in a message. */
#define SHOWN_MAX 80

__attribute__((format(printf, 3, 4))) static int fail(ns_error *e, ns_status st, const char *fmt,
                                                      ...)
{
    if (e == NULL)
        return st;
    e->status = st;
    e->server_code = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return st;
}

/* An argument echoed in a message: only if short and printable. */
static const char *shown(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p < 0x20 || *p == 0x7f || n >= SHOWN_MAX)
            return "(not shown: too long or not printable)";
    return s;
}

static bool uuid_shape(const char *s)
{
    char canon[NS_UUID_SIZE];
    return ns_uuid_canon(s, canon);
}

/* The format asked for: --format, else json with --json, else md. */
static const char *format_of(const ns_cli_report_args *a)
{
    return a->format ? a->format : a->json ? "json" : "md";
}

int ns_cli_report_check(const ns_cli_report_args *a, ns_error *err)
{
    const ns_status bad = NS_ERR_INVALID_ARGUMENT;
    if (a == NULL || a->kind == NULL)
        return fail(err, bad, "which report: progress, region or coverage");
    bool progress = strcmp(a->kind, "progress") == 0;
    bool region = strcmp(a->kind, "region") == 0;
    if (!progress && !region && strcmp(a->kind, "coverage") != 0)
        return fail(err, bad, "unknown report \"%s\" (progress, region or coverage)",
                    shown(a->kind));
    if (a->nplans > 1)
        return fail(err, bad, "--plan: one plan per report");
    if (progress && a->plan == NULL)
        return fail(err, bad, "the progress report needs --plan ID");
    if (!progress && a->plan != NULL)
        return fail(err, bad, "--plan: only the progress report takes a plan");
    if (!progress && a->year != NULL)
        return fail(err, bad, "--year: only the progress report takes a year");
    if (region && a->region == NULL)
        return fail(err, bad, "the region report needs --region ID (a regional organisation)");
    if (!region && a->region != NULL)
        return fail(err, bad, "--region: only the region report takes a region");
    if (a->plan != NULL && !uuid_shape(a->plan))
        return fail(err, bad, "--plan: \"%s\" is not a plan id (a UUID)", shown(a->plan));
    if (a->region != NULL && !uuid_shape(a->region))
        return fail(err, bad, "--region: \"%s\" is not an organisation id (a UUID)",
                    shown(a->region));
    uint64_t year = 0;
    if (a->year != NULL && ns_conf_uint(a->year, YEAR_MIN, YEAR_MAX, &year) != 0)
        return fail(err, bad, "--year: \"%s\" is not a year from %d to %d", shown(a->year),
                    YEAR_MIN, YEAR_MAX);
    const char *f = format_of(a);
    if (strcmp(f, "md") != 0 && strcmp(f, "csv") != 0 && strcmp(f, "html") != 0 &&
        strcmp(f, "json") != 0)
        return fail(err, bad, "--format: \"%s\" is not md, csv, html or json", shown(f));
    if (a->json && strcmp(f, "json") != 0)
        return fail(err, bad, "--json prints the server's JSON; it cannot go with --format %s", f);
    if (a->force && a->output == NULL)
        return fail(err, bad, "--force goes with -o FILE");
    char why[300];
    if (a->output != NULL && ns_outfile_check(a->output, a->force, why, sizeof(why)) != 0)
        return fail(err, bad, "%s", why);
    return NS_OK;
}

/* Writes len bytes to path (outfile.h): a temporary file beside it, put
 * in place once all are on disk. */
static int write_file(const char *path, bool force, const char *data, size_t len, ns_error *err)
{
    char why[300], *tmp = NULL;
    int fd = ns_outfile_open(path, &tmp, why, sizeof(why));
    if (fd < 0)
        return fail(err, NS_ERR_STATE, "%s", why);
    const char *failed = NULL;
    int e = 0;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            failed = "cannot write it";
            e = n < 0 ? errno : EIO;
            break;
        }
        done += (size_t)n;
    }
    if (failed == NULL && fsync(fd) != 0) {
        failed = "cannot write it";
        e = errno;
    }
    if (close(fd) != 0 && failed == NULL) {
        failed = "cannot write it";
        e = errno;
    }
    if (failed != NULL) {
        unlink(tmp);
        free(tmp);
        return fail(err, NS_ERR_STATE, "-o %s: %s: %s", ns_outfile_shown(path), failed,
                    strerror(e));
    }
    int rc = ns_outfile_commit(tmp, path, force, why, sizeof(why));
    free(tmp);
    if (rc != 0)
        return fail(err, rc == -2 ? NS_ERR_INVALID_ARGUMENT : NS_ERR_STATE, "%s", why);
    return NS_OK;
}

static int emit(const ns_cli_report_args *a, const char *data, size_t len, ns_error *err)
{
    if (a->output != NULL)
        return write_file(a->output, a->force, data, len, err);
    if (fwrite(data, 1, len, stdout) != len)
        return fail(err, NS_ERR_STATE, "cannot write the report to standard output");
    return NS_OK;
}

/* Renders the document into memory first, so that a failure leaves no
 * half-written report behind. */
static int render(const ns_cli_report_args *a, const char *json, size_t len, ns_error *err)
{
    const char *f = format_of(a);
    if (strcmp(f, "json") == 0) {
        char *line = malloc(len + 2);
        if (line == NULL)
            return fail(err, NS_ERR_NOMEM, "out of memory");
        memcpy(line, json, len);
        line[len] = '\n';
        int rc = emit(a, line, len + 1, err);
        free(line);
        return rc;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        json_decref(doc);
        return fail(err, NS_ERR_PROTOCOL, "the server's report is not a JSON object (%s)",
                    doc ? "another JSON value" : jerr.text);
    }
    ns_report_format fmt = strcmp(f, "csv") == 0    ? NS_REPORT_CSV
                           : strcmp(f, "html") == 0 ? NS_REPORT_HTML
                                                    : NS_REPORT_MD;
    char *buf = NULL;
    size_t blen = 0;
    FILE *mem = open_memstream(&buf, &blen);
    if (mem == NULL) {
        json_decref(doc);
        return fail(err, NS_ERR_NOMEM, "out of memory");
    }
    char why[256];
    int rc = ns_report_render(doc, fmt, mem, why, sizeof(why));
    bool broken = ferror(mem) != 0;
    if (fclose(mem) != 0)
        broken = true;
    json_decref(doc);
    if (rc != 0)
        rc = fail(err, NS_ERR_PROTOCOL, "%s", why);
    else if (broken)
        rc = fail(err, NS_ERR_NOMEM, "out of memory while rendering the report");
    else
        rc = emit(a, buf, blen, err);
    free(buf);
    return rc;
}

int ns_cli_report_run(ns_client *c, const ns_cli_report_args *a, ns_error *err)
{
    int rc = ns_cli_report_check(a, err);
    if (rc != NS_OK)
        return rc;
    uint64_t year = 0;
    if (a->year != NULL && ns_conf_uint(a->year, YEAR_MIN, YEAR_MAX, &year) != 0)
        return fail(err, NS_ERR_INVALID_ARGUMENT, "--year: not a year");
    ns_report_request req = {
        .kind = a->kind,
        .plan_id = a->plan,
        .year = (uint32_t)year,
        .region_id = a->region,
    };
    char *json = NULL;
    rc = ns_client_report_wait(c, &req, &json, err);
    if (rc != NS_OK)
        return rc;
    rc = render(a, json, strlen(json), err);
    free(json);
    return rc;
}
