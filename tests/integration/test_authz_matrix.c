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

/* The answers of a batch, into an array of answers. */
static int take_answers(size_t i, const ns_mutation_result *r, void *ud)
{
    return take_answer(0, r, (answer *)ud + i);
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
    fixture *f = nst_fixture_new(state, sizeof(*f));
    if (f == NULL)
        return -1;
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
    return nst_group_teardown(state);
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

/* ---- forged ids ------------------------------------------------------------------------- */

/* What no refusal may show: every text of the hidden records holds
 * SECRET, and the hidden plan's dates are odd ones. */
static const char *const secrets[] = {"SECRET", "2031-02-03", "2034-05-06", "Matrix implementer"};

static void expect_no_leak(fixture *f, const char *what, const char *text)
{
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strstr(text, secrets[i]) != NULL)
            nst_fail(f->e, "%s: the refusal shows \"%s\": %s", what, secrets[i], text);
}

/* A refusal with one of the codes (NULL-terminated list), no leak, and the
 * record, when given, as it was. */
static void expect_forged(fixture *f, const char *what, answer a, const char *type, const char *id,
                          const char *before, ...)
{
    va_list ap;
    va_start(ap, before);
    bool ok = false;
    for (const char *c = va_arg(ap, const char *); c != NULL; c = va_arg(ap, const char *))
        ok |= strcmp(a.code, c) == 0;
    va_end(ap);
    if (a.outcome != NS_OUTCOME_REJECTED || !ok)
        nst_fail(f->e, "%s: outcome %d %s \"%s\", expected a refusal", what, a.outcome, a.code,
                 a.reason);
    expect_no_leak(f, what, a.reason);
    print_message("%s: %s \"%s\"\n", what, a.code, a.reason);
    if (type != NULL) {
        char after[64];
        row_state(f, type, id, after, sizeof(after));
        if (strcmp(before, after) != 0)
            nst_fail(f->e, "%s: refused, but the record went from \"%s\" to \"%s\"", what, before,
                     after);
    }
}

/* A refused write of a hidden record must read as one of a record that
 * does not exist: the same words, naming only what was sent. */
static void expect_as_missing(fixture *f, const char *what, answer a, const char *type,
                              const char *id)
{
    char want[128];
    snprintf(want, sizeof(want), "%s %s does not exist", type, id);
    if (strcmp(a.reason, want) != 0)
        nst_fail(f->e, "%s: \"%s\", where a missing record gets \"%s\"", what, a.reason, want);
}

/* An error of a whole request (history, pull, report, resolve): typed as
 * code, and no leak. */
static void expect_request_refused(fixture *f, const char *what, int rc, const ns_error *err,
                                   int code)
{
    if (rc != NS_ERR_SERVER || err->server_code != code)
        nst_fail(f->e, "%s: status %d, server code %d (%s), expected server code %d", what, rc,
                 err->server_code, err->message, code);
    expect_no_leak(f, what, err->message);
}

static int ignore_record(const ns_record_view *v, void *ud)
{
    (void)v;
    (*(unsigned *)ud)++;
    return 0;
}

static int ignore_revision(const ns_revision_view *v, void *ud)
{
    (void)v;
    (*(unsigned *)ud)++;
    return 0;
}

/* The matrix again with ids that are not the actor's to use: another
 * organisation's draft plan (which does not exist for it) and records in
 * it, an adopted plan it may read but not write, a plan_id forged into a
 * create or an update, a reference to a record of the hidden plan, a
 * conflict of it, the directory of another organisation. Each is refused
 * with a typed error that shows nothing of the hidden records (their texts
 * all hold SECRET), and leaves them as they were. */
static void test_forged_ids(void **state)
{
    fixture *f = *state;
    if (f->c[0] == NULL)
        connect_all(f);
    const int police = R_IMPL;

    /* mogender's hidden draft plan, with a pillar and an objective. */
    char hidden[40], hpillar[40], hobjective[40], visible[40], vpillar[40];
    ns_field_view fv[8];
    size_t n = 0;
    fv[n++] = FV("title", "text", "SECRET-TITLE of a draft");
    fv[n++] = FV("summary", "text", "SECRET-SUMMARY: not yet for anyone's eyes");
    fv[n++] = FV("kind", "text", "nap");
    fv[n++] = FV("status", "text", "draft");
    fv[n++] = FV("period_start", "date", "2031-02-03");
    fv[n++] = FV("period_end", "date", "2034-05-06");
    fresh_id(f, hidden);
    must_apply(f, R_COORD, "plan", hidden, NS_MUTATION_CREATE, 0, fv, n);
    ns_field_view pf[] = {FV("plan_id", "ref", hidden), FV("name", "text", "SECRET-PILLAR"),
                          FV("kind", "text", "protection"),
                          FV("description", "text", "SECRET-DESCRIPTION")};
    fresh_id(f, hpillar);
    must_apply(f, R_COORD, "pillar", hpillar, NS_MUTATION_CREATE, 0, pf, 4);
    ns_field_view of[] = {FV("plan_id", "ref", hidden), FV("pillar_id", "ref", hpillar),
                          FV("title", "text", "SECRET-OBJECTIVE")};
    fresh_id(f, hobjective);
    must_apply(f, R_COORD, "objective", hobjective, NS_MUTATION_CREATE, 0, of, 3);
    /* An adopted plan of mogender: everyone reads it, the police does not
     * write it. */
    n = 0;
    fv[n++] = FV("title", "text", "A plan everyone reads");
    fv[n++] = FV("kind", "text", "nap");
    fv[n++] = FV("status", "text", "adopted");
    fv[n++] = FV("period_start", "date", "2026-01-01");
    fv[n++] = FV("period_end", "date", "2030-12-31");
    fresh_id(f, visible);
    must_apply(f, R_COORD, "plan", visible, NS_MUTATION_CREATE, 0, fv, n);
    ns_field_view vf[] = {FV("plan_id", "ref", visible), FV("name", "text", "Protection"),
                          FV("kind", "text", "protection")};
    fresh_id(f, vpillar);
    must_apply(f, R_COORD, "pillar", vpillar, NS_MUTATION_CREATE, 0, vf, 3);
    /* The police's own implementation plan (a draft) with a pillar. */
    char own[40], opillar[40];
    n = 0;
    fv[n++] = FV("title", "text", "The police's own plan");
    fv[n++] = FV("kind", "text", "implementation");
    fv[n++] = FV("status", "text", "draft");
    fv[n++] = FV("period_start", "date", "2026-01-01");
    fv[n++] = FV("period_end", "date", "2030-12-31");
    fv[n++] = FV("implements_id", "ref", visible);
    fresh_id(f, own);
    must_apply(f, police, "plan", own, NS_MUTATION_CREATE, 0, fv, n);
    ns_field_view opf[] = {FV("plan_id", "ref", own), FV("name", "text", "Participation"),
                           FV("kind", "text", "participation")};
    fresh_id(f, opillar);
    must_apply(f, police, "pillar", opillar, NS_MUTATION_CREATE, 0, opf, 3);

    char before[64], id[40];
    answer a;
    /* Records of a plan the police cannot see: changed, deleted, by id. */
    row_state(f, "plan", hidden, before, sizeof(before));
    ns_field_view t = FV("title", "text", "Taken over");
    a = push1(f, police, "plan", hidden, NS_MUTATION_UPDATE, 1, &t, 1);
    expect_forged(f, "update of a hidden plan", a, "plan", hidden, before, "NOT_FOUND", NULL);
    expect_as_missing(f, "update of a hidden plan", a, "plan", hidden);
    a = push1(f, police, "plan", hidden, NS_MUTATION_DELETE, 1, NULL, 0);
    expect_forged(f, "delete of a hidden plan", a, "plan", hidden, before, "NOT_FOUND", NULL);
    expect_as_missing(f, "delete of a hidden plan", a, "plan", hidden);
    row_state(f, "pillar", hpillar, before, sizeof(before));
    ns_field_view nm = FV("name", "text", "Taken over");
    a = push1(f, police, "pillar", hpillar, NS_MUTATION_UPDATE, 1, &nm, 1);
    expect_forged(f, "update of a hidden plan's pillar", a, "pillar", hpillar, before, "NOT_FOUND",
                  NULL);
    expect_as_missing(f, "update of a hidden plan's pillar", a, "pillar", hpillar);
    fresh_id(f, id);
    answer ghost = push1(f, police, "pillar", id, NS_MUTATION_UPDATE, 1, &nm, 1);
    expect_forged(f, "update of a pillar that does not exist", ghost, NULL, NULL, NULL, "NOT_FOUND",
                  NULL);
    expect_as_missing(f, "update of a pillar that does not exist", ghost, "pillar", id);
    a = push1(f, police, "pillar", hpillar, NS_MUTATION_DELETE, 1, NULL, 0);
    expect_forged(f, "delete of a hidden plan's pillar", a, "pillar", hpillar, before, "NOT_FOUND",
                  NULL);
    expect_as_missing(f, "delete of a hidden plan's pillar", a, "pillar", hpillar);
    a = push1(f, R_OBSERVER, "pillar", hpillar, NS_MUTATION_UPDATE, 1, &nm, 1);
    expect_forged(f, "the observer's update of a hidden pillar", a, "pillar", hpillar, before,
                  "NOT_FOUND", "PERMISSION_DENIED", NULL);
    /* A create that reuses the id of a hidden record. */
    a = push1(f, police, "pillar", hpillar, NS_MUTATION_CREATE, 0, opf, 3);
    expect_forged(f, "a create with a hidden record's id", a, "pillar", hpillar, before,
                  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "INVALID_ARGUMENT", NULL);

    /* A plan_id forged into a create: the hidden plan, the adopted one. */
    ns_field_view forged[] = {FV("plan_id", "ref", hidden), FV("name", "text", "Planted"),
                              FV("kind", "text", "protection")};
    fresh_id(f, id);
    a = push1(f, police, "pillar", id, NS_MUTATION_CREATE, 0, forged, 3);
    expect_forged(f, "a create into a hidden plan", a, "pillar", id, "", "NOT_FOUND",
                  "PERMISSION_DENIED", NULL);
    forged[0] = FV("plan_id", "ref", visible);
    fresh_id(f, id);
    a = push1(f, police, "pillar", id, NS_MUTATION_CREATE, 0, forged, 3);
    expect_forged(f, "a create into another organisation's plan", a, "pillar", id, "",
                  "PERMISSION_DENIED", NULL);
    /* ... and into an update: moving its own pillar into those plans. */
    row_state(f, "pillar", opillar, before, sizeof(before));
    ns_field_view move = FV("plan_id", "ref", hidden);
    a = push1(f, police, "pillar", opillar, NS_MUTATION_UPDATE, 1, &move, 1);
    expect_forged(f, "moving a record into a hidden plan", a, "pillar", opillar, before,
                  "INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND", NULL);
    move = FV("plan_id", "ref", visible);
    a = push1(f, police, "pillar", opillar, NS_MUTATION_UPDATE, 1, &move, 1);
    expect_forged(f, "moving a record into another organisation's plan", a, "pillar", opillar,
                  before, "INVALID_ARGUMENT", "PERMISSION_DENIED", NULL);
    /* A plan's owner forged into the police's own plan. */
    row_state(f, "plan", own, before, sizeof(before));
    ns_field_view owner = FV("owner_id", "ref", f->org_mogender);
    a = push1(f, police, "plan", own, NS_MUTATION_UPDATE, 1, &owner, 1);
    expect_forged(f, "giving its plan to another organisation", a, "plan", own, before,
                  "INVALID_ARGUMENT", "PERMISSION_DENIED", NULL);

    /* References into the hidden plan from the police's own records. */
    ns_field_view ref[] = {FV("plan_id", "ref", own), FV("pillar_id", "ref", hpillar),
                           FV("title", "text", "Points into a hidden plan")};
    fresh_id(f, id);
    a = push1(f, police, "objective", id, NS_MUTATION_CREATE, 0, ref, 3);
    expect_forged(f, "a reference to a hidden pillar", a, "objective", id, "", "INVALID_ARGUMENT",
                  "PERMISSION_DENIED", "NOT_FOUND", NULL);
    ns_field_view cm[] = {FV("plan_id", "ref", visible), FV("subject_type", "text", "pillar"),
                          FV("subject_id", "ref", hpillar),
                          FV("author_id", "ref", f->principal[police]),
                          FV("body", "text", "What is in there?")};
    fresh_id(f, id);
    a = push1(f, police, "comment", id, NS_MUTATION_CREATE, 0, cm, 5);
    expect_forged(f, "a comment on a hidden pillar", a, "comment", id, "", "INVALID_ARGUMENT",
                  "PERMISSION_DENIED", "NOT_FOUND", NULL);
    cm[0] = FV("plan_id", "ref", hidden);
    fresh_id(f, id);
    a = push1(f, police, "comment", id, NS_MUTATION_CREATE, 0, cm, 5);
    expect_forged(f, "a comment in a hidden plan", a, "comment", id, "", "NOT_FOUND",
                  "PERMISSION_DENIED", NULL);

    /* All or nothing: a good create beside a forged update. */
    char good[40];
    fresh_id(f, good);
    ns_field_view gf[] = {FV("plan_id", "ref", own), FV("name", "text", "Prevention"),
                          FV("kind", "text", "prevention")};
    ns_mutation ms[2] = {{NULL, "pillar", good, NS_MUTATION_CREATE, 0, gf, 3},
                         {NULL, "pillar", hpillar, NS_MUTATION_UPDATE, 1, &nm, 1}};
    answer two[2];
    memset(two, 0, sizeof(two));
    ns_error err;
    row_state(f, "pillar", hpillar, before, sizeof(before));
    int rc =
        ns_client_push_batch_wait(f->c[police], NS_PUSH_ATOMIC, ms, 2, take_answers, two, &err);
    if (rc != NS_OK)
        nst_fail(f->e, "atomic push: %s", err.message);
    expect_forged(f, "an atomic batch: the good create", two[0], "pillar", good, "", "ABORTED",
                  NULL);
    expect_forged(f, "an atomic batch: the forged update", two[1], "pillar", hpillar, before,
                  "NOT_FOUND", NULL);
    expect_as_missing(f, "an atomic batch: the forged update", two[1], "pillar", hpillar);

    /* Requests about hidden records. */
    unsigned seen = 0;
    rc = ns_client_history_wait(f->c[police], "pillar", hpillar, 0, 0, ignore_revision, &seen, NULL,
                                &err);
    expect_request_refused(f, "history of a hidden pillar", rc, &err,
                           NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND);
    rc = ns_client_history_wait(f->c[police], "plan", hidden, 0, 0, ignore_revision, &seen, NULL,
                                &err);
    expect_request_refused(f, "history of a hidden plan", rc, &err,
                           NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND);
    rc = ns_client_pull_plan_wait(f->c[police], hidden, ignore_record, &seen, &err);
    expect_request_refused(f, "a pull of a hidden plan", rc, &err,
                           NAPSYNC__V1__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED);
    ns_report_request rq = {.kind = "progress", .plan_id = hidden};
    char *json = NULL;
    rc = ns_client_report_wait(f->c[police], &rq, &json, &err);
    free(json);
    expect_request_refused(f, "a report of a hidden plan", rc, &err,
                           NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND);
    if (seen != 0)
        nst_fail(f->e, "%u records or revisions of the hidden plan reached the police", seen);

    /* A conflict in the hidden plan (two of mogender's coordinators edit
     * its title from the same version), resolved by the police. */
    nst_device second;
    if (nst_device_issue(f->e, false, "matrix-second-coordinator", &second) != 0 ||
        nst_device_register(f->e, "mogender", "Matrix second coordinator", "coordinator",
                            &second) != 0)
        nst_fail(f->e, "a second coordinator");
    ns_client *c2 = nst_must_connect(f->e, &second);
    ns_field_view t1 = FV("title", "text", "SECRET-TITLE one");
    ns_field_view t2 = FV("title", "text", "SECRET-TITLE two");
    answer first = push1(f, R_COORD, "plan", hidden, NS_MUTATION_UPDATE, 1, &t1, 1);
    assert_int_equal(first.outcome, NS_OUTCOME_APPLIED);
    ns_mutation cm2 = {NULL, "plan", hidden, NS_MUTATION_UPDATE, 1, &t2, 1};
    answer conflict = {0};
    if (ns_client_push_batch_wait(c2, NS_PUSH_APPLY, &cm2, 1, take_answer, &conflict, &err) !=
        NS_OK)
        nst_fail(f->e, "second coordinator's push: %s", err.message);
    assert_int_equal(conflict.outcome, NS_OUTCOME_CONFLICT);
    nst_client_close(c2);
    char cid[40];
    const char *p[1] = {hidden};
    if (nst_db_exec(f->e, "SELECT id FROM sync_conflicts WHERE record_id = $1::uuid", 1, p, cid,
                    sizeof(cid)) != 0 ||
        cid[0] == '\0')
        nst_fail(f->e, "no conflict on the hidden plan");
    row_state(f, "plan", hidden, before, sizeof(before));
    nst_raw r;
    nst_must_raw_auth(f->e, &r, &f->dev[police], 1);
    Napsync__V1__ResolveConflict res = NAPSYNC__V1__RESOLVE_CONFLICT__INIT;
    char mid[40];
    fresh_id(f, mid);
    res.conflict_id = cid;
    res.mutation_id = mid;
    res.resolution = NAPSYNC__V1__RESOLUTION__RESOLUTION_OTHER;
    ns_envelope env = NAPSYNC__V1__ENVELOPE__INIT;
    env.request_id = 2;
    env.body_case = NAPSYNC__V1__ENVELOPE__BODY_RESOLVE_CONFLICT;
    env.resolve_conflict = &res;
    if (nst_raw_send_env(&r, &env) != 0)
        nst_fail(f->e, "sending ResolveConflict: %s", r.error);
    ns_envelope *ans = nst_expect_frame(f->e, &r, NAPSYNC__V1__ENVELOPE__BODY_MUTATION_RESULT);
    const Napsync__V1__MutationResult *mr = ans->mutation_result;
    expect_no_leak(f, "resolving a hidden conflict", mr->reject_reason);
    char want[80];
    snprintf(want, sizeof(want), "conflict %s does not exist", cid);
    if (mr->outcome != NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED ||
        mr->reject_code != NAPSYNC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND ||
        strcmp(mr->reject_reason, want) != 0)
        nst_fail(f->e, "resolving a hidden conflict: outcome %d %s (%s)", mr->outcome,
                 ns_error_code_name(mr->reject_code), mr->reject_reason);
    ns_envelope_free(ans);
    nst_raw_close(&r);
    char after[64];
    row_state(f, "plan", hidden, after, sizeof(after));
    assert_string_equal(before, after);

    /* The directory of another organisation: mogender's administrator
     * renames the police's person, or makes one for the police. */
    row_state(f, "principal", f->principal[police], before, sizeof(before));
    a = push1(f, R_ADMIN, "principal", f->principal[police], NS_MUTATION_UPDATE, 1, &nm, 1);
    expect_forged(f, "another organisation's person", a, "principal", f->principal[police], before,
                  "NOT_FOUND", "PERMISSION_DENIED", NULL);
    ns_field_view pp[] = {FV("organisation_id", "ref", f->org_police),
                          FV("name", "text", "Planted")};
    fresh_id(f, id);
    a = push1(f, R_ADMIN, "principal", id, NS_MUTATION_CREATE, 0, pp, 2);
    expect_forged(f, "a person for another organisation", a, "principal", id, "",
                  "PERMISSION_DENIED", NULL);
    nst_test_passed(f->e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {NST_TEST(test_matrix), NST_TEST(test_forged_ids)};
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
