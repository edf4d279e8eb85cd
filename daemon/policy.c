/* Who may write what (policy.h). */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR(x) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##x

static const struct {
    const char *name;
    unsigned bit;
} role_names[] = {
    {"admin", NS_ROLE_ADMIN},
    {"coordinator", NS_ROLE_COORDINATOR},
    {"implementer", NS_ROLE_IMPLEMENTER},
    {"regional", NS_ROLE_REGIONAL},
    {"observer", NS_ROLE_OBSERVER},
};

static const ns_policy_delegation delegations[] = {
    {"action", "lead_org_id", NULL, NULL},
    {"budget_line", NULL, "action_id", "action"},
    {"indicator", "responsible_id", NULL, NULL},
    {"indicator_report", NULL, "indicator_id", "indicator"},
    {"report_value", NULL, "report_id", "indicator_report"},
};

unsigned ns_policy_roles(const ns_identity_info *who)
{
    unsigned bits = 0;
    for (int i = 0; i < who->nroles && i < NS_AUTH_MAX_ROLES; i++) {
        for (size_t k = 0; k < sizeof(role_names) / sizeof(role_names[0]); k++) {
            if (strncmp(who->roles[i], role_names[k].name, sizeof(who->roles[i])) == 0)
                bits |= role_names[k].bit;
        }
    }
    return bits;
}

bool ns_policy_reads_only(unsigned roles)
{
    return (roles & (NS_ROLE_COORDINATOR | NS_ROLE_IMPLEMENTER | NS_ROLE_REGIONAL)) == 0;
}

const ns_policy_delegation *ns_policy_delegation_of(const char *type)
{
    for (size_t i = 0; type != NULL && i < sizeof(delegations) / sizeof(delegations[0]); i++) {
        if (strcmp(delegations[i].type, type) == 0)
            return &delegations[i];
    }
    return NULL;
}

/* ---- helpers --------------------------------------------------------------------------- */

static bool eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

__attribute__((format(printf, 4, 5))) static int
refuse(ns_policy_refusal *out, Napsync__V1__ErrorCode code, const char *field, const char *fmt, ...)
{
    out->code = code;
    snprintf(out->field, sizeof(out->field), "%s", field != NULL ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
    va_end(ap);
    return 1;
}

/* The text of a TEXT or REF value, NULL for null or absent. */
static const char *text_of(const ns_fieldset *fs, const char *name)
{
    const ns_value *v = fs != NULL ? ns_fieldset_get(fs, name) : NULL;
    if (v == NULL || v->is_null || (v->kind != NS_KIND_TEXT && v->kind != NS_KIND_REF))
        return NULL;
    return v->u.s;
}

static bool in_change(const ns_policy_write *w, const char *name)
{
    return w->change != NULL && ns_fieldset_get(w->change, name) != NULL;
}

/* The field as the write leaves it. */
static const char *after(const ns_policy_write *w, const char *name)
{
    return in_change(w, name) ? text_of(w->change, name) : text_of(w->current, name);
}

/* Whether the change sets no field outside allowed (NULL-terminated). */
static bool only_fields(const ns_policy_write *w, const char *const *allowed)
{
    for (size_t i = 0; w->change != NULL && i < w->change->n; i++) {
        bool ok = false;
        for (const char *const *f = allowed; *f != NULL && !ok; f++)
            ok = strcmp(w->change->names[i], *f) == 0;
        if (!ok)
            return false;
    }
    return true;
}

static const char *op_verb(ns_op op)
{
    switch (op) {
    case NS_OP_CREATE:
        return "create";
    case NS_OP_UPDATE:
        return "change";
    case NS_OP_DELETE:
        return "delete";
    }
    return "write";
}

static bool known_kind(const char *kind)
{
    return eq(kind, "nap") || eq(kind, "rap") || eq(kind, "local") || eq(kind, "implementation");
}

static int unknown_kind(ns_policy_refusal *out, const char *kind)
{
    return refuse(out, ERR(INVALID_ARGUMENT), "kind",
                  "plan.kind: \"%s\" is not one of nap, rap, local, implementation",
                  kind != NULL ? kind : "");
}

/* The plan kinds a role keeps as owner. */
static bool kind_allowed(unsigned roles, const char *kind)
{
    if (kind == NULL)
        return false;
    if ((roles & NS_ROLE_COORDINATOR) &&
        (eq(kind, "nap") || eq(kind, "local") || eq(kind, "implementation")))
        return true;
    if ((roles & NS_ROLE_IMPLEMENTER) && (eq(kind, "implementation") || eq(kind, "local")))
        return true;
    return (roles & NS_ROLE_REGIONAL) && eq(kind, "rap");
}

static bool owns(const ns_policy_actor *a, const ns_policy_plan *p)
{
    return p != NULL && eq(p->owner, a->organisation);
}

static bool owner_writer(const ns_policy_actor *a, const ns_policy_plan *p)
{
    return owns(a, p) && kind_allowed(a->roles, p->kind);
}

static bool approver(const ns_policy_actor *a, const ns_policy_plan *p)
{
    return owns(a, p) && ((a->roles & NS_ROLE_COORDINATOR) ||
                          ((a->roles & NS_ROLE_REGIONAL) && eq(p->kind, "rap")));
}

static bool delegate(const ns_policy_actor *a, const ns_policy_write *w)
{
    return (a->roles & (NS_ROLE_COORDINATOR | NS_ROLE_IMPLEMENTER)) &&
           eq(w->responsible, a->organisation) &&
           (w->op == NS_OP_CREATE || eq(w->responsible_now, a->organisation));
}

static int not_yours(const ns_policy_actor *a, const ns_policy_write *w, ns_policy_refusal *out)
{
    (void)a;
    return refuse(out, ERR(PERMISSION_DENIED), NULL,
                  "may not %s %s records of plan %s: it belongs to another organisation, and "
                  "this record is not delegated to yours",
                  op_verb(w->op), w->type, w->plan->id);
}

/* ---- plans ----------------------------------------------------------------------------- */

static int check_plan(const ns_policy_actor *a, const ns_policy_write *w, ns_policy_refusal *out)
{
    if (w->op == NS_OP_CREATE) {
        const char *kind = text_of(w->change, "kind");
        const char *owner = text_of(w->change, "owner_id");
        if (!eq(owner, a->organisation))
            return refuse(out, ERR(PERMISSION_DENIED), "owner_id",
                          "a plan is created for the principal's own organisation");
        if (!known_kind(kind))
            return unknown_kind(out, kind);
        if (!kind_allowed(a->roles, kind))
            return refuse(out, ERR(PERMISSION_DENIED), "kind",
                          "the principal's roles may not create a plan of kind \"%s\" "
                          "(coordinator: nap, local, implementation; implementer: "
                          "implementation, local; regional: rap)",
                          kind != NULL ? kind : "");
        return 0;
    }
    const ns_policy_plan *p = w->plan;
    if (!owns(a, p)) {
        if (p == NULL || p->status == NULL || eq(p->status, "draft"))
            return refuse(out, ERR(NOT_FOUND), NULL, "plan %s does not exist",
                          p != NULL ? p->id : "");
        return refuse(out, ERR(PERMISSION_DENIED), NULL, "plan %s belongs to another organisation",
                      p->id);
    }
    if (!owner_writer(a, p))
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "the principal's roles may not %s plan %s (a %s plan)", op_verb(w->op), p->id,
                      p->kind != NULL ? p->kind : "plan");
    if (w->op == NS_OP_DELETE) {
        if (!eq(p->status, "draft"))
            return refuse(out, ERR(PERMISSION_DENIED), NULL,
                          "plan %s is %s: an adopted plan is archived, not deleted", p->id,
                          p->status != NULL ? p->status : "not a draft");
        return 0;
    }
    if (in_change(w, "owner_id") && !eq(text_of(w->change, "owner_id"), p->owner))
        return refuse(out, ERR(PERMISSION_DENIED), "owner_id", "a plan's owner does not change");
    if (in_change(w, "kind") && !known_kind(text_of(w->change, "kind")))
        return unknown_kind(out, text_of(w->change, "kind"));
    if (in_change(w, "kind") && !kind_allowed(a->roles, text_of(w->change, "kind")))
        return refuse(out, ERR(PERMISSION_DENIED), "kind",
                      "the principal's roles may not keep a plan of that kind");
    static const char *const status_only[] = {"status", NULL};
    if (eq(p->status, "archived") && !only_fields(w, status_only))
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "plan %s is archived: only its status may change", p->id);
    return 0;
}

/* ---- indicator reports: the workflow ---------------------------------------------------- */

static int check_report(const ns_policy_actor *a, const ns_policy_write *w, bool owner_w,
                        ns_policy_refusal *out)
{
    bool approve_right = approver(a, w->plan);
    bool report_right = owner_w || delegate(a, w);
    if (!report_right && !approve_right)
        return not_yours(a, w, out);
    const char *cur = w->current != NULL ? text_of(w->current, "status") : NULL;
    if (cur == NULL)
        cur = "draft";
    const char *next = after(w, "status");
    if (w->op == NS_OP_CREATE) {
        if (eq(next, "draft") || eq(next, "submitted") || (eq(next, "approved") && approve_right))
            return 0;
        return refuse(out, ERR(PERMISSION_DENIED), "status",
                      "a report starts as draft or submitted%s",
                      approve_right ? " (or approved, by the plan's coordinator)" : "");
    }
    if (eq(cur, "approved"))
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "report is approved: it is final; submit a correction (corrects_id)");
    if (w->op == NS_OP_DELETE) {
        if (!report_right)
            return not_yours(a, w, out);
        if (eq(cur, "submitted"))
            return refuse(out, ERR(PERMISSION_DENIED), NULL,
                          "report is submitted: withdraw it to draft before deleting it");
        return 0;
    }
    if (next == NULL)
        next = cur;
    static const char *const review_fields[] = {"status", "return_reason", NULL};
    if (!eq(next, cur)) {
        bool reporter_step =
            (eq(cur, "draft") && eq(next, "submitted")) ||
            (eq(cur, "returned") && (eq(next, "draft") || eq(next, "submitted"))) ||
            (eq(cur, "submitted") && eq(next, "draft"));
        bool review_step = eq(cur, "submitted") && (eq(next, "approved") || eq(next, "returned"));
        if (!reporter_step && !review_step)
            return refuse(out, ERR(INVALID_ARGUMENT), "status",
                          "status: \"%s\" to \"%s\" is not a step of the workflow (draft -> "
                          "submitted -> approved, or returned with a reason)",
                          cur, next != NULL ? next : "");
        if (review_step) {
            if (!approve_right)
                return refuse(out, ERR(PERMISSION_DENIED), "status",
                              "only a coordinator of the plan's organisation approves or returns "
                              "reports");
            if (!only_fields(w, review_fields))
                return refuse(out, ERR(INVALID_ARGUMENT), NULL,
                              "approving or returning a report changes only status and "
                              "return_reason");
            return 0;
        }
        if (!report_right)
            return not_yours(a, w, out);
        return 0;
    }
    if (eq(cur, "submitted"))
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "report is submitted: withdraw it to draft to change it");
    if (!report_right)
        return not_yours(a, w, out);
    return 0;
}

/* ---- comments --------------------------------------------------------------------------- */

static int check_comment(const ns_policy_actor *a, const ns_policy_write *w, bool owner_w,
                         ns_policy_refusal *out)
{
    if (a->roles == 0)
        return refuse(out, ERR(PERMISSION_DENIED), NULL, "the principal has no role");
    const char *author = after(w, "author_id");
    if (w->op == NS_OP_CREATE) {
        if (!eq(author, a->principal))
            return refuse(out, ERR(PERMISSION_DENIED), "author_id",
                          "author_id: a comment is written in the principal's own name");
        return 0;
    }
    bool mine = eq(text_of(w->current, "author_id"), a->principal);
    if (w->op == NS_OP_DELETE && (mine || owner_w))
        return 0; /* the plan's owner moderates */
    if (!mine)
        return refuse(out, ERR(PERMISSION_DENIED), NULL, "only the author changes a comment");
    if (!eq(author, a->principal))
        return refuse(out, ERR(PERMISSION_DENIED), "author_id",
                      "author_id: a comment keeps its author");
    return 0;
}

/* ---- everything else -------------------------------------------------------------------- */

int ns_policy_check_write(const ns_policy_actor *a, const ns_policy_write *w,
                          ns_policy_refusal *out)
{
    memset(out, 0, sizeof(*out));
    if (eq(w->type, "plan"))
        return check_plan(a, w, out);
    const ns_policy_plan *p = w->plan;
    if (p == NULL)
        return refuse(out, ERR(NOT_FOUND), NULL, "the record's plan does not exist");
    if (!owns(a, p) && (p->status == NULL || eq(p->status, "draft")))
        return refuse(out, ERR(NOT_FOUND), NULL, "plan %s does not exist", p->id);
    if (eq(p->status, "archived"))
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "plan %s is archived: its records are read only", p->id);
    bool owner_w = owner_writer(a, p);
    if (eq(w->type, "comment"))
        return check_comment(a, w, owner_w, out);
    if (eq(w->type, "indicator_report"))
        return check_report(a, w, owner_w, out);
    if (owner_w)
        return 0;
    if (eq(w->type, "action") && delegate(a, w)) {
        static const char *const status_only[] = {"status", NULL};
        if (w->op == NS_OP_UPDATE && only_fields(w, status_only))
            return 0;
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "the lead organisation of an action changes its status only");
    }
    if ((eq(w->type, "budget_line") || eq(w->type, "report_value")) && delegate(a, w))
        return 0;
    return not_yours(a, w, out);
}

/* ---- reads (the twins of the SQL rules) ------------------------------------------------ */

/* a::uuid = b::uuid; false (unknown) when either is NULL or not a UUID. */
static bool uuid_eq(const char *a, const char *b)
{
    char ca[NS_UUID_SIZE], cb[NS_UUID_SIZE];
    return a != NULL && b != NULL && ns_uuid_canon(a, ca) && ns_uuid_canon(b, cb) &&
           strcmp(ca, cb) == 0;
}

void ns_policy_row_of(const char *type, const ns_fieldset *after, ns_policy_row *out)
{
    out->type = type;
    out->organisation_id = text_of(after, "organisation_id");
    out->principal_id = text_of(after, "principal_id");
    out->status = text_of(after, "status");
}

bool ns_policy_record_readable(const ns_policy_reader *r, const ns_policy_row *row)
{
    const char *t = row->type;
    if (t == NULL)
        return false;
    if (ns_policy_is_directory(t)) {
        if (eq(t, "organisation") || eq(t, "region_membership"))
            return true;
        return uuid_eq(row->organisation_id, r->organisation) &&
               (!eq(t, "device") || r->admin || uuid_eq(row->principal_id, r->principal));
    }
    return !r->reads_only ||
           (!eq(t, "report_value") && (!eq(t, "indicator_report") || eq(row->status, "approved")));
}

bool ns_policy_plan_readable(const char *org, const char *owner, const char *status)
{
    return uuid_eq(owner, org) || status == NULL || strcmp(status, "draft") != 0;
}

bool ns_policy_is_directory(const char *type)
{
    return eq(type, "organisation") || eq(type, "principal") || eq(type, "principal_role") ||
           eq(type, "device") || eq(type, "region_membership");
}

/* Equal, NULL included (an organisation without a parent). */
static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || eq(a, b);
}

static int check_organisation(const ns_policy_actor *a, const char *id, const ns_policy_write *w,
                              ns_policy_refusal *out)
{
    const char *parent_now = text_of(w->current, "parent_id");
    const char *parent = after(w, "parent_id");
    switch (w->op) {
    case NS_OP_CREATE:
        if (eq(parent, a->organisation))
            return 0;
        return refuse(out, ERR(PERMISSION_DENIED), "parent_id",
                      "an organisation is created by the administrators of its parent: "
                      "parent_id must be your organisation");
    case NS_OP_DELETE:
        if (eq(parent_now, a->organisation))
            return 0;
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "an organisation is deleted by the administrators of its parent");
    case NS_OP_UPDATE:
        break;
    }
    if (eq(id, a->organisation)) {
        if (same(parent, parent_now))
            return 0;
        return refuse(out, ERR(PERMISSION_DENIED), "parent_id",
                      "an organisation's parent is changed by the parent's administrators");
    }
    if (eq(parent_now, a->organisation)) {
        if (eq(parent, a->organisation))
            return 0;
        return refuse(
            out, ERR(PERMISSION_DENIED), "parent_id",
            "an organisation you administer as its parent stays your organisation's child");
    }
    return refuse(out, ERR(PERMISSION_DENIED), NULL,
                  "organisation %s is administered by its own administrators and its parent's", id);
}

int ns_policy_check_directory(const ns_policy_actor *a, const char *record_id,
                              const ns_policy_write *w, ns_policy_refusal *out)
{
    memset(out, 0, sizeof(*out));
    if (!ns_policy_is_directory(w->type))
        return refuse(out, ERR(INVALID_ARGUMENT), NULL, "%s is not a directory type", w->type);
    if ((a->roles & NS_ROLE_ADMIN) == 0)
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "only administrators change the directory (organisations, people, roles, "
                      "devices)");
    if (eq(w->type, "organisation"))
        return check_organisation(a, record_id, w, out);
    /* A membership is its regional organisation's. */
    const char *field = eq(w->type, "region_membership") ? "region_id" : "organisation_id";
    const char *org = after(w, field);
    if (eq(org, a->organisation) &&
        (w->current == NULL || eq(text_of(w->current, field), a->organisation)))
        return 0;
    return refuse(out, ERR(PERMISSION_DENIED), field,
                  "administrators %s the people, roles, devices and member states of their own "
                  "organisation only",
                  op_verb(w->op));
}

int ns_policy_check_resolve(const ns_policy_actor *a, const ns_policy_plan *p,
                            ns_policy_refusal *out)
{
    memset(out, 0, sizeof(*out));
    if (p == NULL || (!owns(a, p) && (p->status == NULL || eq(p->status, "draft"))))
        return refuse(out, ERR(NOT_FOUND), NULL, "plan %s does not exist", p != NULL ? p->id : "");
    if (!owns(a, p))
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "plan %s belongs to another organisation, which resolves its conflicts",
                      p->id);
    if (!owner_writer(a, p))
        return refuse(out, ERR(PERMISSION_DENIED), NULL,
                      "the principal's roles may not resolve conflicts of plan %s", p->id);
    return 0;
}
