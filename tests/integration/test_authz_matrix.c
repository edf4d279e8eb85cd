/* The authorisation matrix (docs/authorisation.md) through the network:
 * every role × every entity type × read / create / update / delete /
 * approve, each cell asserted against a real napsyncd (which runs as an
 * ordinary PostgreSQL role, so row-level security is in force as well).
 *
 * The plan is an adopted NAP of mogender. The roles: a coordinator and an
 * administrator of mogender; an implementer of the police, which leads an
 * action and is responsible for an indicator of the NAP (delegation); a
 * regional principal of the regional organisation; an observer of the
 * parliament. Every write cell works on a record of its own (created for it
 * by the coordinator, or by the actor for its own comments), and a refused
 * write must leave that record as it was. "approve" is a report's
 * submitted -> approved step and a plan's adoption (draft -> adopted); the
 * other types have no such step.
 *
 * The directory's types (organisation, principal, principal_role, device)
 * are written by administrators, for their own organisation (mogender's
 * administrator's records are the victims); "read" for them is whether the
 * role's directory pull shows one of mogender's records that is not its
 * own (every organisation, for organisations). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

enum { R_COORD, R_ADMIN, R_IMPL, R_REGIONAL, R_OBSERVER, NROLES };
enum { OP_READ, OP_CREATE, OP_UPDATE, OP_DELETE, OP_APPROVE, NOPS };

static const char *const role_names[NROLES] = {"coordinator", "admin", "implementer", "regional",
                                               "observer"};
static const char *const op_names[NOPS] = {"read", "create", "update", "delete", "approve"};

/* Expected cells: Y allowed, N refused, A (read) approved records only,
 * - no such operation for the type. Columns: read create update delete
 * approve. */
typedef struct {
    const char *type;
    const char *cells[NROLES]; /* one string of NOPS characters per role */
} matrix_row;

static const matrix_row matrix[] = {
    /*                  coordinator admin    implementer regional  observer */
    {"plan", {"YYYYY", "YNNNN", "YYNNN", "YYNNN", "YNNNN"}},
    {"pillar", {"YYYY-", "YNNN-", "YNNN-", "YNNN-", "YNNN-"}},
    {"objective", {"YYYY-", "YNNN-", "YNNN-", "YNNN-", "YNNN-"}},
    {"result", {"YYYY-", "YNNN-", "YNNN-", "YNNN-", "YNNN-"}},
    {"action", {"YYYY-", "YNNN-", "YNYN-", "YNNN-", "YNNN-"}},
    {"indicator", {"YYYY-", "YNNN-", "YNNN-", "YNNN-", "YNNN-"}},
    {"indicator_target", {"YYYY-", "YNNN-", "YNNN-", "YNNN-", "YNNN-"}},
    {"indicator_report", {"YYYYY", "ANNNN", "YYYYN", "YNNNN", "ANNNN"}},
    {"report_value", {"YYYY-", "NNNN-", "YYYY-", "YNNN-", "NNNN-"}},
    {"budget_line", {"YYYY-", "YNNN-", "YYYY-", "YNNN-", "YNNN-"}},
    {"comment", {"YYYY-", "YYYY-", "YYYY-", "YYYY-", "YYYY-"}},
    {"organisation", {"YNNN-", "YYYY-", "YNNN-", "YNNN-", "YNNN-"}},
    {"principal", {"YNNN-", "YYYY-", "NNNN-", "NNNN-", "NNNN-"}},
    {"principal_role", {"YN-N-", "YY-Y-", "NN-N-", "NN-N-", "NN-N-"}},
    {"device", {"NNNN-", "YYYY-", "NNNN-", "NNNN-", "NNNN-"}},
};
#define DIRECTORY_TENANT "d1ec7000-0000-4000-8000-000000000000"
#define NTYPES           (sizeof(matrix) / sizeof(matrix[0]))

typedef struct {
    nst_env *e;
    nst_device dev[NROLES];
    ns_client *c[NROLES];
    char principal[NROLES][40];
    char org[NROLES][40]; /* each role's organisation */
    char person[40];      /* the principal a new role or device is for */
    char org_police[40], org_mogender[40];
    unsigned seq;      /* for fresh ids */
    unsigned nreports; /* for reports' periods: one live report per indicator and period */
    /* The NAP and its skeleton, made by the coordinator. */
    char plan[40], pillar[40], objective[40], result[40], action[40], indicator[40], report_ok[40],
        report_sub[40], report_draft[40];
} fixture;
NST_FIXTURE_CHECK(fixture);

static void fresh_id(fixture *f, char out[40])
{
    f->seq++;
    snprintf(out, 40, "%08x-0000-4000-8000-%012x", 0x7a000000u + f->seq, f->seq);
}

/* ---- pushing ------------------------------------------------------------------------------ */

typedef struct {
    int outcome;
    char code[32];
    char reason[300];
    uint64_t version;
} answer;

static int take_answer(size_t i, const ns_mutation_result *r, void *ud)
{
    (void)i;
    answer *a = ud;
    a->outcome = (int)r->outcome;
    a->version = r->version;
    snprintf(a->code, sizeof(a->code), "%s", r->reject_code);
    snprintf(a->reason, sizeof(a->reason), "%s", r->reject_reason);
    return 0;
}

/* One mutation as role r; its answer. */
static answer push1(fixture *f, int r, const char *type, const char *id, ns_mutation_op op,
                    uint64_t base, const ns_field_view *fields, size_t n)
{
    ns_mutation m = {NULL, type, id, op, base, fields, n};
    answer a = {0};
    ns_error err;
    if (ns_client_push_batch_wait(f->c[r], NS_PUSH_APPLY, &m, 1, take_answer, &a, &err) != NS_OK)
        nst_fail(f->e, "push as %s: %s", role_names[r], err.message);
    return a;
}

static void must_apply(fixture *f, int r, const char *type, const char *id, ns_mutation_op op,
                       uint64_t base, const ns_field_view *fields, size_t n)
{
    answer a = push1(f, r, type, id, op, base, fields, n);
    if (a.outcome != NS_OUTCOME_APPLIED)
        nst_fail(f->e, "%s of %s %s as %s: %s %s", op == NS_MUTATION_CREATE ? "create" : "update",
                 type, id, role_names[r], a.code, a.reason);
}

#define FV(n, k, v) ((ns_field_view){(n), (k), (v)})

/* The fields of a valid new record of type, in the NAP (author: role r's
 * principal, for a comment; a plan is the actor's own kind of plan). */
static size_t new_fields(fixture *f, int r, const char *type, ns_field_view *out)
{
    size_t n = 0;
    static char name[64], fp[65];
    snprintf(name, sizeof(name), "matrix-%u", f->seq);
    if (strcmp(type, "organisation") == 0) {
        out[n++] = FV("code", "text", name);
        out[n++] = FV("name", "text", "A unit of its own");
        out[n++] = FV("kind", "text", "agency");
        out[n++] = FV("default_role", "text", "implementer");
        out[n++] = FV("parent_id", "ref", f->org[r]);
        return n;
    }
    if (strcmp(type, "principal") == 0) {
        out[n++] = FV("organisation_id", "ref", f->org[r]);
        out[n++] = FV("name", "text", name);
        return n;
    }
    if (strcmp(type, "principal_role") == 0 || strcmp(type, "device") == 0) {
        out[n++] = FV("organisation_id", "ref", f->org[r]);
        out[n++] = FV("principal_id", "ref", f->person[0] ? f->person : f->principal[r]);
        if (type[0] == 'p') {
            out[n++] = FV("role", "text", "observer");
        } else {
            snprintf(fp, sizeof(fp), "%064x", f->seq);
            out[n++] = FV("name", "text", name);
            out[n++] = FV("fingerprint", "text", fp);
        }
        return n;
    }
    if (strcmp(type, "plan") == 0) {
        const char *kind = r == R_REGIONAL ? "rap" : r == R_IMPL ? "implementation" : "nap";
        out[n++] = FV("title", "text", "A plan of its own");
        out[n++] = FV("kind", "text", kind);
        out[n++] = FV("status", "text", "draft");
        out[n++] = FV("period_start", "date", "2026-01-01");
        out[n++] = FV("period_end", "date", "2030-12-31");
        if (r == R_IMPL)
            out[n++] = FV("implements_id", "ref", f->plan);
        return n;
    }
    out[n++] = FV("plan_id", "ref", f->plan);
    if (strcmp(type, "pillar") == 0) {
        out[n++] = FV("name", "text", "Relief and Recovery");
        out[n++] = FV("kind", "text", "relief_recovery");
    } else if (strcmp(type, "objective") == 0) {
        out[n++] = FV("pillar_id", "ref", f->pillar);
        out[n++] = FV("title", "text", "Survivors get services");
    } else if (strcmp(type, "result") == 0) {
        out[n++] = FV("objective_id", "ref", f->objective);
        out[n++] = FV("level", "text", "outcome");
        out[n++] = FV("title", "text", "Shelters open in every province");
    } else if (strcmp(type, "action") == 0) {
        out[n++] = FV("objective_id", "ref", f->objective);
        out[n++] = FV("title", "text", "Train gender desk officers");
        out[n++] = FV("lead_org_id", "ref", f->org_police);
        out[n++] = FV("status", "text", "planned");
    } else if (strcmp(type, "indicator") == 0) {
        out[n++] = FV("title", "text", "Gender desks open");
        out[n++] = FV("value_type", "text", "number");
        out[n++] = FV("responsible_id", "ref", f->org_police);
    } else if (strcmp(type, "indicator_target") == 0) {
        out[n++] = FV("indicator_id", "ref", f->indicator);
        out[n++] = FV("period_end", "date", "2030-12-31");
        out[n++] = FV("value", "decimal", "80");
    } else if (strcmp(type, "indicator_report") == 0) {
        /* A period of its own: one live report per indicator and period. */
        static char start[16], end[16];
        int year = 2026 + (int)(f->nreports / 12);
        int month = 1 + (int)(f->nreports % 12);
        f->nreports++;
        snprintf(start, sizeof(start), "%04d-%02d-01", year, month);
        snprintf(end, sizeof(end), "%04d-%02d-28", year, month);
        out[n++] = FV("indicator_id", "ref", f->indicator);
        out[n++] = FV("period_start", "date", start);
        out[n++] = FV("period_end", "date", end);
        out[n++] = FV("value", "decimal", "7");
        out[n++] = FV("status", "text", "draft");
    } else if (strcmp(type, "report_value") == 0) {
        out[n++] = FV("report_id", "ref", f->report_draft);
        out[n++] = FV("dimension", "text", "sex");
        out[n++] = FV("category", "text", "female");
        out[n++] = FV("value", "decimal", "4");
    } else if (strcmp(type, "budget_line") == 0) {
        out[n++] = FV("action_id", "ref", f->action);
        out[n++] = FV("fiscal_year", "int", "2025");
        out[n++] = FV("currency", "text", "USD");
        out[n++] = FV("costed", "decimal", "12500.50");
        out[n++] = FV("funding_source", "text", "donor_basket_fund");
    } else if (strcmp(type, "comment") == 0) {
        out[n++] = FV("subject_type", "text", "plan");
        out[n++] = FV("subject_id", "ref", f->plan);
        out[n++] = FV("author_id", "ref", f->principal[r]);
        out[n++] = FV("body", "text", "Which budget line funds this?");
    }
    return n;
}

/* The field an update cell changes (the action's status: what its lead
 * organisation may change). */
static ns_field_view update_field(const char *type)
{
    if (strcmp(type, "plan") == 0 || strcmp(type, "objective") == 0 ||
        strcmp(type, "result") == 0 || strcmp(type, "indicator") == 0)
        return FV("title", "text", "Changed");
    if (strcmp(type, "pillar") == 0)
        return FV("name", "text", "Changed");
    if (strcmp(type, "action") == 0)
        return FV("status", "text", "ongoing");
    if (strcmp(type, "budget_line") == 0)
        return FV("costed", "decimal", "99.99");
    if (strcmp(type, "comment") == 0)
        return FV("body", "text", "Changed");
    if (strcmp(type, "organisation") == 0 || strcmp(type, "principal") == 0)
        return FV("name", "text", "Changed");
    if (strcmp(type, "device") == 0)
        return FV("revoked_reason", "text", "Changed");
    return FV("value", "decimal", "5"); /* indicator_target, indicator_report, report_value */
}

/* ---- the database as it is ------------------------------------------------------------ */

/* "version deleted" of a record, "" when there is none. */
static void row_state(fixture *f, const char *type, const char *id, char *out, size_t cap)
{
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT version || ' ' || deleted FROM %ss WHERE id = $1::uuid",
             type);
    const char *p[1] = {id};
    out[0] = '\0';
    if (nst_db_exec(f->e, sql, 1, p, out, cap) != 0)
        nst_fail(f->e, "reading %s %s", type, id);
}

/* ---- one cell -------------------------------------------------------------------------- */

static int allowed(answer a)
{
    return a.outcome == NS_OUTCOME_APPLIED;
}

/* A refusal must be a permission error (or, for what the actor cannot
 * even see, not found) and leave the record as it was. */
static void expect_refused(fixture *f, int r, const char *type, int op, answer a, const char *id,
                           const char *before)
{
    if (a.outcome != NS_OUTCOME_REJECTED ||
        (strcmp(a.code, "PERMISSION_DENIED") != 0 && strcmp(a.code, "NOT_FOUND") != 0))
        nst_fail(f->e, "%s %s %s: outcome %d %s \"%s\", expected a refusal", role_names[r],
                 op_names[op], type, a.outcome, a.code, a.reason);
    if (a.reason[0] == '\0')
        nst_fail(f->e, "%s %s %s: a refusal without a reason", role_names[r], op_names[op], type);
    char after[64];
    row_state(f, type, id, after, sizeof(after));
    if (strcmp(before, after) != 0)
        nst_fail(f->e, "%s %s %s: refused, but the record went from \"%s\" to \"%s\"",
                 role_names[r], op_names[op], type, before, after);
}

static void expect_cell(fixture *f, int r, const char *type, int op, char want, answer a,
                        const char *id, const char *before)
{
    if (want == 'Y') {
        if (!allowed(a))
            nst_fail(f->e, "%s %s %s: refused (%s \"%s\"), expected allowed", role_names[r],
                     op_names[op], type, a.code, a.reason);
        return;
    }
    expect_refused(f, r, type, op, a, id, before);
}

/* A record of type made for a cell by its owner (the coordinator), or by
 * the actor for a comment (one's own comments are the ones one edits). A
 * plan for delete and approve is a draft; a report for approve is
 * submitted. */
static bool directory_type(const char *type)
{
    return strcmp(type, "organisation") == 0 || strncmp(type, "principal", 9) == 0 ||
           strcmp(type, "device") == 0;
}

/* A directory record for a cell, by mogender's administrator; a role or a
 * device for a person of its own, made first. */
static void directory_victim(fixture *f, const char *type, char id[40])
{
    ns_field_view fv[12];
    if (strcmp(type, "principal_role") == 0 || strcmp(type, "device") == 0) {
        size_t n = new_fields(f, R_ADMIN, "principal", fv);
        fresh_id(f, f->person);
        must_apply(f, R_ADMIN, "principal", f->person, NS_MUTATION_CREATE, 0, fv, n);
    }
    size_t n = new_fields(f, R_ADMIN, type, fv);
    fresh_id(f, id);
    must_apply(f, R_ADMIN, type, id, NS_MUTATION_CREATE, 0, fv, n);
    f->person[0] = '\0';
}

static void victim(fixture *f, int r, const char *type, int op, char id[40])
{
    if (directory_type(type)) {
        directory_victim(f, type, id);
        return;
    }
    ns_field_view fv[12];
    int by = strcmp(type, "comment") == 0 ? r : R_COORD;
    size_t n = new_fields(f, by == R_COORD && strcmp(type, "plan") == 0 ? R_COORD : by, type, fv);
    if (op == OP_APPROVE && strcmp(type, "indicator_report") == 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(fv[i].name, "status") == 0)
                fv[i].value = "submitted";
    }
    fresh_id(f, id);
    must_apply(f, by, type, id, NS_MUTATION_CREATE, 0, fv, n);
}

static void run_cell(fixture *f, int r, const char *type, int op, char want)
{
    char id[40], before[64];
    answer a;
    if (op == OP_CREATE) {
        ns_field_view fv[12];
        size_t n = new_fields(f, r, type, fv);
        fresh_id(f, id);
        a = push1(f, r, type, id, NS_MUTATION_CREATE, 0, fv, n);
        expect_cell(f, r, type, op, want, a, id, "");
        return;
    }
    victim(f, r, type, op, id);
    row_state(f, type, id, before, sizeof(before));
    if (op == OP_UPDATE) {
        ns_field_view fv = update_field(type);
        a = push1(f, r, type, id, NS_MUTATION_UPDATE, 1, &fv, 1);
    } else if (op == OP_DELETE) {
        a = push1(f, r, type, id, NS_MUTATION_DELETE, 1, NULL, 0);
    } else {
        ns_field_view fv = strcmp(type, "plan") == 0 ? FV("status", "text", "adopted")
                                                     : FV("status", "text", "approved");
        a = push1(f, r, type, id, NS_MUTATION_UPDATE, 1, &fv, 1);
    }
    expect_cell(f, r, type, op, want, a, id, before);
}

/* ---- reading --------------------------------------------------------------------------- */

typedef struct {
    fixture *f;
    int role;
    unsigned seen[NTYPES];
    bool seen_submitted, seen_approved;
} reading;

static const char *view_field(const ns_record_view *v, const char *name)
{
    for (size_t i = 0; i < v->nfields; i++)
        if (strcmp(v->fields[i].name, name) == 0)
            return v->fields[i].value;
    return NULL;
}

/* A directory record counts when it is mogender's and not the reader's
 * own (its own person, role or device); every organisation counts. */
static bool directory_counts(const reading *rd, const ns_record_view *v)
{
    if (strcmp(v->entity_type, "organisation") == 0)
        return true;
    const char *org = view_field(v, "organisation_id");
    const char *who =
        view_field(v, strcmp(v->entity_type, "principal") == 0 ? "name" : "principal_id");
    if (org == NULL || strcmp(org, rd->f->org_mogender) != 0)
        return false;
    if (strcmp(v->entity_type, "principal") == 0)
        return who == NULL || strncmp(who, "Matrix ", 7) != 0;
    return who == NULL || strcmp(who, rd->f->principal[rd->role]) != 0;
}

static int on_record(const ns_record_view *v, void *ud)
{
    reading *rd = ud;
    for (size_t t = 0; t < NTYPES; t++) {
        if (strcmp(matrix[t].type, v->entity_type) == 0 &&
            (!directory_type(v->entity_type) || directory_counts(rd, v)))
            rd->seen[t]++;
    }
    if (strcmp(v->entity_type, "indicator_report") == 0) {
        rd->seen_submitted |= strcmp(v->id, rd->f->report_sub) == 0;
        rd->seen_approved |= strcmp(v->id, rd->f->report_ok) == 0;
    }
    return 0;
}

static void read_cells(fixture *f, int r)
{
    reading rd = {.f = f, .role = r};
    ns_error err;
    if (ns_client_pull_plan_wait(f->c[r], f->plan, on_record, &rd, &err) != NS_OK)
        nst_fail(f->e, "pull as %s: %s", role_names[r], err.message);
    /* The directory tenant, pulled like a plan of its own. */
    if (ns_client_pull_plan_wait(f->c[r], DIRECTORY_TENANT, on_record, &rd, &err) != NS_OK)
        nst_fail(f->e, "directory pull as %s: %s", role_names[r], err.message);
    for (size_t t = 0; t < NTYPES; t++) {
        char want = matrix[t].cells[r][OP_READ];
        const char *type = matrix[t].type;
        bool ok;
        if (strcmp(type, "indicator_report") == 0)
            ok = want == 'Y'   ? rd.seen_submitted && rd.seen_approved
                 : want == 'A' ? !rd.seen_submitted && rd.seen_approved
                               : rd.seen[t] == 0;
        else
            ok = want == 'Y' ? rd.seen[t] > 0 : rd.seen[t] == 0;
        if (!ok)
            nst_fail(f->e, "%s read %s: saw %u records (submitted %d, approved %d), expected %c",
                     role_names[r], type, rd.seen[t], rd.seen_submitted, rd.seen_approved, want);
    }
}

/* ---- the fixture ----------------------------------------------------------------------- */

static void org_id(fixture *f, const char *code, char out[40])
{
    const char *p[1] = {code};
    if (nst_db_exec(f->e, "SELECT id FROM organisations WHERE code = $1", 1, p, out, 40) != 0 ||
        out[0] == '\0')
        nst_fail(f->e, "no organisation %s", code);
}

static void skeleton_one(fixture *f, const char *type, char id[40], const char *extra_name,
                         const char *extra_kind, const char *extra_value)
{
    ns_field_view fv[13];
    size_t n = new_fields(f, R_COORD, type, fv);
    if (extra_name != NULL) {
        size_t i = 0;
        while (i < n && strcmp(fv[i].name, extra_name) != 0)
            i++;
        fv[i] = FV(extra_name, extra_kind, extra_value);
        if (i == n)
            n++;
    }
    fresh_id(f, id);
    must_apply(f, R_COORD, type, id, NS_MUTATION_CREATE, 0, fv, n);
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    static const char *const orgs[NROLES] = {"mogender", "mogender", "police", "regional",
                                             "parliament"};
    f->e = nst_env_new("authz_matrix", NULL);
    if (f->e == NULL || nst_daemon_start(f->e, NULL) != 0)
        return -1;
    for (int r = 0; r < NROLES; r++) {
        char name[32], principal[64];
        snprintf(name, sizeof(name), "matrix-%s", role_names[r]);
        snprintf(principal, sizeof(principal), "Matrix %s", role_names[r]);
        if (nst_device_issue(f->e, false, name, &f->dev[r]) != 0 ||
            nst_device_register(f->e, orgs[r], principal, role_names[r], &f->dev[r]) != 0)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    for (int r = 0; f != NULL && r < NROLES; r++)
        nst_client_close(f->c[r]);
    int rc = f ? nst_env_close(f->e) : 0;
    free(f);
    return rc;
}

static void connect_all(fixture *f)
{
    for (int r = 0; r < NROLES; r++) {
        f->c[r] = nst_must_connect(f->e, &f->dev[r]);
        snprintf(f->principal[r], sizeof(f->principal[r]), "%s",
                 ns_client_identity(f->c[r])->principal_id);
        snprintf(f->org[r], sizeof(f->org[r]), "%s", ns_client_identity(f->c[r])->organisation_id);
    }
    org_id(f, "police", f->org_police);
    org_id(f, "mogender", f->org_mogender);
}

/* The NAP, adopted, and one record of every type in it. */
static void make_skeleton(fixture *f)
{
    skeleton_one(f, "plan", f->plan, "status", "text", "adopted");
    skeleton_one(f, "pillar", f->pillar, NULL, NULL, NULL);
    skeleton_one(f, "objective", f->objective, NULL, NULL, NULL);
    skeleton_one(f, "result", f->result, NULL, NULL, NULL);
    skeleton_one(f, "action", f->action, NULL, NULL, NULL);
    skeleton_one(f, "indicator", f->indicator, "disaggregation", "set", "sex");
    char id[40];
    skeleton_one(f, "indicator_target", id, NULL, NULL, NULL);
    skeleton_one(f, "indicator_report", f->report_sub, "status", "text", "submitted");
    skeleton_one(f, "indicator_report", f->report_ok, "status", "text", "approved");
    skeleton_one(f, "indicator_report", f->report_draft, NULL, NULL, NULL);
    skeleton_one(f, "report_value", id, NULL, NULL, NULL);
    skeleton_one(f, "budget_line", id, NULL, NULL, NULL);
    skeleton_one(f, "comment", id, NULL, NULL, NULL);
    /* mogender's directory beyond the matrix's own principals: a person
     * with a role, another with a device. */
    directory_victim(f, "principal_role", id);
    directory_victim(f, "device", id);
}

static void test_matrix(void **state)
{
    fixture *f = *state;
    connect_all(f);
    make_skeleton(f);
    unsigned cells = 0;
    for (int r = 0; r < NROLES; r++) {
        read_cells(f, r);
        cells += NTYPES;
        for (size_t t = 0; t < NTYPES; t++) {
            for (int op = OP_CREATE; op < NOPS; op++) {
                char want = matrix[t].cells[r][op];
                if (want == '-')
                    continue;
                run_cell(f, r, matrix[t].type, op, want);
                cells++;
            }
        }
    }
    /* 5 roles x 15 types read, create, update, delete (a role is never
     * updated); approve for 2. */
    assert_int_equal(cells, NROLES * NTYPES * 4 + NROLES * 2 - NROLES);
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {NST_TEST(test_matrix)};
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
