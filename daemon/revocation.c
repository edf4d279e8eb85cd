#include "revocation.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "server.h"
#include "session.h"

/* Scopes remembered while a check runs; more become "every session". */
#define PENDING_MAX 32
/* Certificates per query: a few hundred kilobytes of parameter at most. */
#define CHECK_CHUNK  4096
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 30000
#define UUID_LEN     36

#define ERR(name) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name

typedef enum { SCOPE_DEVICE, SCOPE_PRINCIPAL, SCOPE_ORGANISATION } scope_kind;

typedef struct {
    scope_kind kind;
    char id[UUID_LEN + 1];
} scope;

struct ns_revocation {
    ns_server *srv;
    uint64_t epoch;
    uint32_t running; /* checks in flight; new ones wait until none is */
    bool all;         /* pending: every authenticated session */
    scope pending[PENDING_MAX];
    uint32_t npending;
    uv_timer_t retry;
    uint32_t retry_ms; /* the last backoff; 0 after a check that answered */
    bool closed;
};

typedef struct {
    ns_revocation *r;
    uint64_t epoch;     /* judges sessions authenticated before it */
    uint8_t (*fps)[32]; /* the certificates asked about, sorted, distinct */
    size_t n;
} check_op;

/* Payloads come from our own trigger, but are checked like any input:
 * "<kind>:<lowercase uuid>". */
static bool parse_scope(const char *payload, scope *out)
{
    static const struct {
        const char *prefix;
        scope_kind kind;
    } kinds[] = {{"device:", SCOPE_DEVICE},
                 {"principal:", SCOPE_PRINCIPAL},
                 {"organisation:", SCOPE_ORGANISATION}};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        size_t plen = strlen(kinds[k].prefix);
        if (strncmp(payload, kinds[k].prefix, plen) != 0)
            continue;
        const char *id = payload + plen;
        if (strlen(id) != UUID_LEN)
            return false;
        for (size_t i = 0; i < UUID_LEN; i++) {
            char c = id[i];
            bool dash = i == 8 || i == 13 || i == 18 || i == 23;
            if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                return false;
        }
        out->kind = kinds[k].kind;
        memcpy(out->id, id, UUID_LEN + 1);
        return true;
    }
    return false;
}

static bool in_scope(const ns_session *s, const scope *sc)
{
    const ns_identity_info *id = &s->identity;
    const char *mine = sc->kind == SCOPE_DEVICE      ? id->device_id
                       : sc->kind == SCOPE_PRINCIPAL ? id->principal_id
                                                     : id->organisation_id;
    return strcmp(mine, sc->id) == 0;
}

/* Whether a check sent in this epoch judges s: authenticated, by a lookup
 * sent before the notifications that led to the check. Later lookups saw
 * what those announced. */
static bool judged(const ns_session *s, uint64_t epoch)
{
    return s->conn != NULL && s->state == NS_SESSION_AUTHENTICATED && s->auth_epoch < epoch;
}

static bool pending_match(const ns_revocation *r, const ns_session *s)
{
    if (r->all)
        return true;
    for (uint32_t i = 0; i < r->npending; i++)
        if (in_scope(s, &r->pending[i]))
            return true;
    return false;
}

static int cmp_fp(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static void kick(ns_revocation *r);

static void on_retry(uv_timer_t *t)
{
    kick(t->data);
}

/* The sessions to check stay pending (as every session: what was pending
 * is not kept apart) and are checked again after a backoff. */
static void retry_later(ns_revocation *r)
{
    r->all = true;
    r->npending = 0;
    if (r->closed || uv_is_active((uv_handle_t *)&r->retry))
        return;
    r->retry_ms = r->retry_ms == 0 ? RETRY_MIN_MS : r->retry_ms * 2;
    if (r->retry_ms > RETRY_MAX_MS)
        r->retry_ms = RETRY_MAX_MS;
    uv_timer_start(&r->retry, on_retry, r->retry_ms, 0);
}

/* Ends a session whose certificate is refused now, with the error a Hello
 * would get. */
static void cut(ns_session *s, ns_auth_result verdict)
{
    const char *name = s->identity.device_name;
    if (verdict == NS_AUTH_REVOKED)
        ns_session_send_error(s, 0, ERR(DEVICE_REVOKED), true, 0,
                              "device \"%s\" has been revoked: this session ends; ask your "
                              "administrator for a new device certificate",
                              name);
    else
        ns_session_send_error(s, 0, ERR(UNKNOWN_DEVICE), true, 0,
                              "device \"%s\" is no longer registered for this certificate: this "
                              "session ends",
                              name);
}

static void on_checked(ns_db_status st, const ns_auth_verdicts *v, void *ud)
{
    check_op *op = ud;
    ns_revocation *r = op->r;
    r->running--;
    if (st != NS_DB_OK) {
        if (st != NS_DB_SHUTDOWN && !r->closed) {
            ns_log_warn("cannot check %zu certificate(s) against revocations (%s); retrying", op->n,
                        ns_db_status_str(st));
            retry_later(r);
        }
        free(op->fps);
        free(op);
        return;
    }
    r->retry_ms = 0;
    uint32_t closed = 0, kept = 0;
    /* Cutting a session may unlink it: walk with a saved next. */
    ns_session *next;
    for (ns_session *s = r->srv->sessions; s; s = next) {
        next = s->next;
        if (!judged(s, op->epoch) || bsearch(s->fingerprint, op->fps, op->n, 32, cmp_fp) == NULL)
            continue;
        ns_auth_result verdict = ns_auth_verdict(v, s->fingerprint, s->identity.device_id);
        if (verdict == NS_AUTH_OK) {
            kept++;
            continue;
        }
        cut(s, verdict);
        closed++;
    }
    ns_log(closed ? NS_LOG_INFO : NS_LOG_DEBUG, NULL, NULL,
           "access check: %u session(s) closed, %u still allowed", closed, kept);
    free(op->fps);
    free(op);
    kick(r);
}

/* Sends the checks of what is pending, unless some still run or a retry
 * waits: one round at a time, so verdicts apply in order. */
static void kick(ns_revocation *r)
{
    ns_server *srv = r->srv;
    if (r->closed || r->running > 0 || uv_is_active((uv_handle_t *)&r->retry) ||
        (!r->all && r->npending == 0))
        return;
    if (srv->nsessions == 0 || srv->db == NULL) {
        r->all = false;
        r->npending = 0;
        return;
    }
    uint8_t(*fps)[32] = malloc((size_t)srv->nsessions * sizeof(*fps));
    if (fps == NULL) {
        ns_log_warn("cannot check sessions against revocations: out of memory; retrying");
        retry_later(r);
        return;
    }
    size_t n = 0;
    for (const ns_session *s = srv->sessions; s && n < srv->nsessions; s = s->next)
        if (judged(s, r->epoch + 1) && pending_match(r, s))
            memcpy(fps[n++], s->fingerprint, 32);
    r->all = false;
    r->npending = 0;
    if (n > 1)
        qsort(fps, n, sizeof(*fps), cmp_fp);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (distinct == 0 || memcmp(fps[distinct - 1], fps[i], 32) != 0)
            memmove(fps[distinct++], fps[i], 32);
    for (size_t from = 0; from < distinct; from += CHECK_CHUNK) {
        size_t len = distinct - from < CHECK_CHUNK ? distinct - from : CHECK_CHUNK;
        check_op *op = calloc(1, sizeof(*op));
        if (op)
            op->fps = malloc(len * sizeof(*fps));
        ns_db_status st = op && op->fps ? NS_DB_OK : NS_DB_NOMEM;
        if (st == NS_DB_OK) {
            memcpy(op->fps, fps[from], len * sizeof(*fps));
            op->r = r;
            op->epoch = r->epoch + 1;
            op->n = len;
            st = ns_auth_check(srv->db, (const uint8_t(*)[32])op->fps, len, on_checked, op);
        }
        if (st != NS_DB_OK) {
            if (op)
                free(op->fps);
            free(op);
            if (st != NS_DB_SHUTDOWN) {
                ns_log_warn("cannot check sessions against revocations (%s); retrying",
                            ns_db_status_str(st));
                retry_later(r);
            }
            break;
        }
        r->running++;
    }
    free(fps);
}

static void on_notify(const char *channel, const char *payload, void *ud)
{
    ns_revocation *r = ud;
    ns_server *srv = r->srv;
    /* Lookups sent before now may have read what this announces. */
    r->epoch++;
    scope sc;
    if (payload == NULL) {
        /* LISTEN took effect (again): what was sent before is lost. */
        if (srv->nsessions > 0)
            ns_log_info("listening for revocations: checking %u open session(s)", srv->nsessions);
        r->all = true;
    } else if (!parse_scope(payload, &sc)) {
        ns_log_warn("unexpected payload on %s; checking every open session", channel);
        r->all = true;
    } else {
        uint32_t n = 0;
        for (const ns_session *s = srv->sessions; s; s = s->next)
            if (judged(s, r->epoch) && in_scope(s, &sc))
                n++;
        ns_log_info("access changed for %s: %u open session(s) to check", payload, n);
        if (n == 0)
            return;
        bool known = false;
        for (uint32_t i = 0; i < r->npending && !known; i++)
            known = r->pending[i].kind == sc.kind && strcmp(r->pending[i].id, sc.id) == 0;
        if (!known && r->npending < PENDING_MAX)
            r->pending[r->npending++] = sc;
        else if (!known)
            r->all = true;
    }
    kick(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

int ns_revocation_open(ns_server *srv, ns_revocation **out)
{
    ns_revocation *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -1;
    r->srv = srv;
    uv_timer_init(srv->loop, &r->retry);
    r->retry.data = r;
    if (ns_db_listen(srv->db, NS_REVOCATION_CHANNEL, on_notify, r) != NS_DB_OK) {
        r->closed = true;
        uv_close((uv_handle_t *)&r->retry, on_timer_closed);
        return -1;
    }
    *out = r;
    return 0;
}

void ns_revocation_close(ns_revocation *r)
{
    if (r == NULL)
        return;
    r->closed = true;
    uv_close((uv_handle_t *)&r->retry, on_timer_closed);
}

uint64_t ns_revocation_epoch(const ns_revocation *r)
{
    return r ? r->epoch : 0;
}
