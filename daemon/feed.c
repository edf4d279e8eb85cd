#include "feed.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields_json.h"
#include "fields_pb.h"
#include "frame.h"
#include "log.h"
#include "policy.h"
#include "reader.h"

#define ERR(name) NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##name

#define UUID_LEN 36
/* The packed ChangePage around its records: next_cursor (tag, length,
 * NS_FEED_CURSOR_MAX bytes) and more (tag, value). */
#define PAGE_OVERHEAD 64
/* Readable tenants a page lists (ChangePage.tenant_ids); one more is read
 * to tell a complete set from a cut one. Packed, each takes 38 bytes. */
#define TENANTS_MAX       10000
#define TENANTS_LIMIT_SQL "10001"
#define TENANT_PACKED     (2 + UUID_LEN)

/* A feed row's columns, from sync_feed f, sync_revisions r and principals pr
 * (COL_SEQ .. COL_AT): the page query's and the shared read's. */
#define FEED_ROW_COLS                                                                              \
    "f.seq, r.entity_type, r.record_id, r.version, r.deleted, r.tenant_id, r.after::text,"         \
    " coalesce(pr.name, '" NS_FEED_ADMINISTRATOR "'),"                                             \
    " to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* One page: the head, the epoch, the first named plan that is not
 * readable and the readable tenants (sorted, comma-separated), then at most $6 feed rows after $1
 * in the readable tenants (LEFT JOIN: the first three columns come back even for an empty page).
 * Everything is read in one snapshot, which is what makes "the head" a
 * safe next cursor for an empty page: every change numbered up to it has
 * committed (seq is taken under sync_feed_head's row lock until COMMIT).
 * No row is read when the cursor is of another epoch or above the head, or
 * when a named plan is not readable. Parameters: $1 cursor seq, $2 cursor
 * epoch (NULL: any), $3 plan ids, $4 organisation ids (uuid[] literals),
 * $5 the principal's organisation, $6 the row limit, $7 whether the
 * principal reads only, $8 the principal, $9 whether it is an
 * administrator (policy.h). */
static const char page_sql[] =
    "WITH h AS (SELECT seq, epoch FROM sync_feed_head)," NS_FEED_SCOPE_CTES(
        "$3", "$4",
        "$5") ","
              " page AS ("
              "  SELECT " FEED_ROW_COLS "    FROM sync_feed f"
              "    JOIN sync_revisions r USING (tenant_id, entity_type, record_id, version)"
              "    LEFT JOIN principals pr ON pr.id = r.principal_id"
              "   WHERE f.seq > $1::bigint"
              "     AND f.tenant_id IN (SELECT id FROM readable)"
              "     AND " NS_POLICY_RECORD_READABLE(
                  "r.entity_type", "r.after", "$7::boolean", "$5", "$8",
                  "$9::boolean") "     AND (SELECT id FROM denied) IS NULL"
                                 "     AND EXISTS (SELECT 1 FROM h WHERE ($2::uuid IS NULL OR "
                                 "h.epoch = $2::uuid)"
                                 "                                   AND h.seq >= $1::bigint)"
                                 "   ORDER BY f.seq"
                                 "   LIMIT $6::int)"
                                 " SELECT h.seq, h.epoch, (SELECT id FROM denied),"
                                 "        (SELECT string_agg(t.id::text, ',' ORDER BY t.id::text) "
                                 "FROM"
                                 "          (SELECT id FROM readable ORDER BY id::text"
                                 "            LIMIT " TENANTS_LIMIT_SQL ") t),"
                                 "        page.*"
                                 "   FROM h LEFT JOIN page ON true"
                                 "  ORDER BY page.seq";

enum {
    COL_HEAD,
    COL_EPOCH,
    COL_DENIED,
    COL_TENANTS,
    COL_SEQ,
    COL_TYPE,
    COL_ID,
    COL_VERSION,
    COL_DELETED,
    COL_TENANT,
    COL_AFTER,
    COL_BY,
    COL_AT,
    NCOLS,
    /* The shared read's (shared_sql) after the page's: the row's plan and
     * whether the write opened or resolved a conflict. */
    COL_OWNER = NCOLS,
    COL_PSTATUS,
    COL_CONFLICTS,
    SHARED_NCOLS,
};

/* The subscriptions' shared read (feed.h): as the engine (every row), in one
 * snapshot, the head, the epoch and at most $2 feed rows after $1 with their
 * plan's owner and status (NULL for the directory) and whether the write
 * opened or resolved a conflict. Columns as page_sql's, with in place of
 * the scope columns fingerprints of what readers' rights and the scopes are
 * made of (the principals and their roles; the plans), so that a change
 * made beside the feed (SQL) sends every subscriber to its own query. */
static const char shared_sql[] =
    "WITH h AS (SELECT seq, epoch FROM sync_feed_head),"
    " page AS ("
    "  SELECT " FEED_ROW_COLS ", p.owner_id, p.status,"
    "         (r.op = 'resolve' OR EXISTS (SELECT 1 FROM sync_mutations m"
    "           WHERE m.mutation_id = r.mutation_id AND m.conflict_ids <> '{}'))"
    "    FROM sync_feed f"
    "    JOIN sync_revisions r USING (tenant_id, entity_type, record_id, version)"
    "    LEFT JOIN principals pr ON pr.id = r.principal_id"
    "    LEFT JOIN plans p ON p.id = f.tenant_id"
    "   WHERE f.seq > $1::bigint"
    "   ORDER BY f.seq"
    "   LIMIT $2::int)"
    " SELECT h.seq, h.epoch,"
    "        (SELECT md5(coalesce(string_agg(x.id::text || x.organisation_id::text || "
    "x.deleted::text"
    "                 || coalesce(x.role, ''), ',' ORDER BY x.id::text, x.role), ''))"
    "           FROM (SELECT id, organisation_id, deleted, NULL::text AS role FROM principals"
    "                 UNION ALL SELECT principal_id, organisation_id, deleted, role"
    "                 FROM principal_roles) x),"
    "        (SELECT md5(coalesce(string_agg(p.id::text || coalesce(p.owner_id::text, '')"
    "                 || coalesce(p.status, ''), ',' ORDER BY p.id), '')) FROM plans p),"
    "        page.*"
    "   FROM h LEFT JOIN page ON true"
    "  ORDER BY page.seq";

/* Rows the shared read takes at most; when more are new, every subscriber
 * woken runs its own query (a burst, or one far behind). */
#define SHARED_ROWS     1000
#define SHARED_ROWS_SQL "1001"
/* Tenants a subscription may list to be decided by the shared read; with
 * more it always runs its own query. */
#define FAST_TENANTS_MAX 64

/* What a page query needs; a Pull's lives until its answer, a
 * subscription's as long as the subscription (seq and epoch advance). */
typedef struct {
    int64_t seq;
    char epoch[UUID_LEN + 1]; /* "": not known yet (empty cursor), any epoch */
    char org[UUID_LEN + 1];   /* the principal's organisation */
    char principal[sizeof(((ns_identity_info *)0)->principal_id)];
    bool reads_only; /* policy.h */
    bool admin;      /* an administrator: reads its organisation's devices */
    uint32_t page_size;
    char *plans; /* uuid[] literals; one allocation, plans first, owned */
    char *orgs;
} feed_query;

typedef struct {
    ns_feed *f;
    feed_query q;
    ns_feed_page_cb cb;
    void *ud;
} pull_op;

struct ns_feed_sub {
    ns_feed *f;
    ns_feed_sub *prev, *next;   /* f->subs, until unsubscribed */
    ns_feed_sub *rprev, *rnext; /* f->ready, while queued */
    feed_query q;
    ns_feed_page_cb cb;
    void *ud;
    bool delivered;        /* the first page went out */
    uint64_t tenants_hash; /* of the tenant set last delivered */
    bool again;            /* a query is due (more pages, or a wake-up) */
    bool inflight;         /* its query is running: f->running counts it */
    bool queued;           /* waiting in f->ready for a query slot */
    bool paused;
    bool retry; /* its last query could not run: the retry timer wakes it */
    bool ended; /* an error was delivered: no more queries */
    bool in_cb;
    bool closed; /* unsubscribed: freed once no query or callback holds it */
    /* The fast path (feed.h): the tenant set last delivered, complete and
     * at most FAST_TENANTS_MAX (else NULL: no fast path until one is). */
    char *tenant_buf;   /* NUL-terminated ids, UUID_LEN + 1 apart; owned */
    char **tenant_ptrs; /* into tenant_buf; owned */
    size_t ntenants;
    bool has_orgs; /* an organisation scope: every new plan may join its set */
    bool fast_off; /* its principal's directory entries changed: own queries only */
    bool held;     /* waits for the shared read: f->shared frees it if closed */
    /* The fingerprints its last own query saw at least (fp_known: any). */
    char fp_dir[33], fp_plans[33];
    bool fp_known;
};

struct ns_feed {
    uv_loop_t *loop;
    ns_db *db;
    const ns_registry *reg;
    ns_feed_options opt;
    uv_timer_t retry_timer;
    ns_feed_sub *subs;
    ns_feed_sub *ready_head, *ready_tail;
    uint32_t running; /* subscription queries in flight */
    int64_t head;     /* the newest position heard of, for ns_feed_stats_get */
    /* The shared read in flight: the subscriptions it decides for (each
     * held), owned; NULL when none. */
    ns_feed_sub **shared;
    size_t nshared;
    bool shared_again; /* a NOTIFY came meanwhile: wake again after it */
    bool shared_reset; /* LISTEN restarted meanwhile: its subscribers query on their own */
    /* The fingerprints of the last shared read (f->fp_known), which own
     * queries started since then have seen. */
    char fp_dir[33], fp_plans[33];
    bool fp_known;
    uint64_t shared_reads, fast_pages, own_queries; /* ns_feed_stats */
};

/* A page under construction. Its strings point into the database result,
 * so it is delivered and freed within the result callback. */
typedef struct {
    Napsync__V1__ChangePage page;
    Napsync__V1__Record *recs;
    Napsync__V1__Record **ptrs;
    Napsync__V1__FieldSet *pbfs;
    ns_fieldset *fs;
    size_t n; /* records complete: each owns fs[i] and pbfs[i] */
    int64_t next;
    char epoch[UUID_LEN + 1];
    char cursor[NS_FEED_CURSOR_MAX + 1];
    char *tenant_buf;   /* a copy of COL_TENANTS, NUL-separated; owned */
    char **tenant_ptrs; /* into tenant_buf; owned */
    size_t ntenants;
} page_build;

/* ---- small parsers ------------------------------------------------------------ */

/* A UUID 8-4-4-4-12, copied to out in lower case. lower_only refuses upper
 * case (cursors are exactly what this server wrote). */
static bool uuid_copy(char out[UUID_LEN + 1], const char *s, bool lower_only)
{
    char canon[NS_UUID_SIZE];
    if (!ns_uuid_canon(s, canon) || (lower_only && strcmp(canon, s) != 0))
        return false;
    memcpy(out, canon, sizeof(canon));
    return true;
}

/* A non-negative int64 in canonical decimal: digits only, no sign, no
 * leading zero but for "0" itself. len bytes of s (no NUL needed). */
static bool parse_seq(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19 || (s[0] == '0' && len > 1))
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_seq_str(const char *s, int64_t *out)
{
    return s != NULL && parse_seq(s, strnlen(s, 20), out);
}

/* "" or "v1.<lowercase uuid>.<seq>". */
static bool cursor_parse(const char *s, int64_t *seq, char epoch[UUID_LEN + 1])
{
    if (s == NULL || s[0] == '\0') {
        *seq = 0;
        epoch[0] = '\0';
        return true;
    }
    size_t len = strnlen(s, NS_FEED_CURSOR_MAX + 1);
    if (len > NS_FEED_CURSOR_MAX || len < 3 + UUID_LEN + 2 || memcmp(s, "v1.", 3) != 0 ||
        s[3 + UUID_LEN] != '.')
        return false;
    char id[UUID_LEN + 1];
    memcpy(id, s + 3, UUID_LEN);
    id[UUID_LEN] = '\0';
    if (!uuid_copy(epoch, id, true))
        return false;
    return parse_seq(s + 4 + UUID_LEN, len - 4 - UUID_LEN, seq);
}

static size_t varint_size(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* ---- requests -> page queries -------------------------------------------------- */

static void query_free(feed_query *q)
{
    free(q->plans);
    q->plans = q->orgs = NULL;
}

__attribute__((format(printf, 3, 4))) static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return ERR(INVALID_ARGUMENT);
}

/* Appends a UUID to a "{a,b" list under construction. */
static void list_add(char *list, size_t *len, const char *id)
{
    char sep = *len == 0 ? '{' : ',';
    list[(*len)++] = sep;
    memcpy(list + *len, id, UUID_LEN);
    *len += UUID_LEN;
}

static void list_end(char *list, size_t *len)
{
    if (*len == 0)
        list[(*len)++] = '{';
    list[(*len)++] = '}';
    list[(*len)++] = '\0';
}

void ns_feed_scopes_free(ns_feed_scopes *sc)
{
    free(sc->plans);
    sc->plans = sc->orgs = NULL;
}

int ns_feed_scopes_parse(const ns_identity_info *who, size_t nscopes,
                         Napsync__V1__Scope *const *scopes, ns_feed_scopes *out, char *err,
                         size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (who == NULL || !uuid_copy(out->org, who->organisation_id, false)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "the session has no organisation");
        return ERR(INTERNAL);
    }
    if (nscopes == 0)
        return bad(err, errlen,
                   "scopes: at least one scope (a plan, an organisation, the directory)");
    if (nscopes > NS_FEED_MAX_SCOPES)
        return bad(err, errlen, "scopes: %zu scopes, at most %d", nscopes, NS_FEED_MAX_SCOPES);
    size_t nplans = 0;
    for (size_t i = 0; i < nscopes; i++) {
        const Napsync__V1__Scope *sc = scopes[i];
        if (sc != NULL && sc->kind_case == NAPSYNC__V1__SCOPE__KIND_DIRECTORY && !sc->directory)
            return bad(err, errlen, "scopes[%zu]: directory must be true", i);
        if (sc == NULL || (sc->kind_case != NAPSYNC__V1__SCOPE__KIND_PLAN_ID &&
                           sc->kind_case != NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID &&
                           sc->kind_case != NAPSYNC__V1__SCOPE__KIND_DIRECTORY))
            return bad(err, errlen,
                       "scopes[%zu]: neither a plan, an organisation nor the directory", i);
        /* The directory travels as a tenant among the plans (feed.h). */
        if (sc->kind_case != NAPSYNC__V1__SCOPE__KIND_ORGANISATION_ID)
            nplans++;
    }
    /* "{", ids with their separators, "}", NUL: for each of the two lists. */
    size_t cap_plans = 3 + nplans * (UUID_LEN + 1);
    size_t cap_orgs = 3 + (nscopes - nplans) * (UUID_LEN + 1);
    char *buf = malloc(cap_plans + cap_orgs);
    if (buf == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "out of memory");
        return ERR(INTERNAL);
    }
    size_t lp = 0, lo = 0;
    char *orgs = buf + cap_plans;
    for (size_t i = 0; i < nscopes; i++) {
        const Napsync__V1__Scope *sc = scopes[i];
        if (sc->kind_case == NAPSYNC__V1__SCOPE__KIND_DIRECTORY) {
            list_add(buf, &lp, NS_DIRECTORY_TENANT);
            continue;
        }
        bool plan = sc->kind_case == NAPSYNC__V1__SCOPE__KIND_PLAN_ID;
        char id[UUID_LEN + 1];
        if (!uuid_copy(id, plan ? sc->plan_id : sc->organisation_id, false)) {
            free(buf);
            return bad(err, errlen, "scopes[%zu]: %s id is not a UUID", i,
                       plan ? "plan" : "organisation");
        }
        if (plan)
            list_add(buf, &lp, id);
        else
            list_add(orgs, &lo, id);
    }
    list_end(buf, &lp);
    list_end(orgs, &lo);
    out->plans = buf;
    out->orgs = orgs;
    return 0;
}

/* Checks a request's cursor and scopes and fills q. Returns 0 or an error
 * code with a message; on error q owns nothing. */
static int query_init(const ns_feed *f, const ns_identity_info *who, const char *cursor,
                      size_t nscopes, Napsync__V1__Scope *const *scopes, uint32_t page_size,
                      feed_query *q, char *err, size_t errlen)
{
    memset(q, 0, sizeof(*q));
    if (!cursor_parse(cursor, &q->seq, q->epoch))
        return bad(err, errlen, "cursor: not a cursor this server writes (v1.<epoch>.<seq>)");
    ns_feed_scopes sc;
    int code = ns_feed_scopes_parse(who, nscopes, scopes, &sc, err, errlen);
    if (code != 0)
        return code;
    memcpy(q->org, sc.org, sizeof(q->org));
    q->reads_only = ns_policy_reads_only(ns_policy_roles(who));
    q->admin = (ns_policy_roles(who) & NS_ROLE_ADMIN) != 0;
    snprintf(q->principal, sizeof(q->principal), "%s", who->principal_id);
    q->plans = sc.plans;
    q->orgs = sc.orgs;
    q->page_size = page_size == 0 ? f->opt.default_page_size : page_size;
    if (q->page_size > f->opt.max_page_size)
        q->page_size = f->opt.max_page_size;
    return 0;
}

static ns_db_status query_run(ns_feed *f, const feed_query *q, ns_db_cb cb, void *ud)
{
    char seq[24], limit[16];
    snprintf(seq, sizeof(seq), "%lld", (long long)q->seq);
    /* One row more than the page: its presence is what "more" means. */
    snprintf(limit, sizeof(limit), "%u", q->page_size + 1);
    const char *v[9] = {seq,
                        q->epoch[0] != '\0' ? q->epoch : NULL,
                        q->plans,
                        q->orgs,
                        q->org,
                        limit,
                        q->reads_only ? "true" : "false",
                        q->principal,
                        q->admin ? "true" : "false"};
    return ns_reader_query(f->db, q->principal, page_sql, 9, v, cb, ud);
}

/* An error code for a query that could not be queued. */
static int queue_error(ns_db_status st, char *err, size_t errlen)
{
    int code = st == NS_DB_SHUTDOWN                                ? ERR(SHUTTING_DOWN)
               : st == NS_DB_UNAVAILABLE || st == NS_DB_QUEUE_FULL ? ERR(UNAVAILABLE)
                                                                   : ERR(INTERNAL);
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s",
                 code == ERR(SHUTTING_DOWN) ? "the server is shutting down"
                 : code == ERR(UNAVAILABLE) ? "the database is unavailable; retry"
                                            : "the feed could not be read");
    return code;
}

/* ---- database result -> ChangePage ---------------------------------------------- */

static void page_free(page_build *pb)
{
    for (size_t i = 0; i < pb->n; i++) {
        ns_fieldset_pb_clear(&pb->pbfs[i]);
        ns_fieldset_free(&pb->fs[i]);
    }
    free(pb->recs);
    free(pb->ptrs);
    free(pb->pbfs);
    free(pb->fs);
    free(pb->tenant_buf);
    free(pb->tenant_ptrs);
    memset(pb, 0, sizeof(*pb));
}

__attribute__((format(printf, 3, 4))) static int internal(char *msg, size_t msglen, const char *fmt,
                                                          ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    ns_log_error("feed: %s", why);
    snprintf(msg, msglen, "the feed could not be read");
    return ERR(INTERNAL);
}

/* Every field of the type: those missing from the revision are null, so
 * that a record always carries its whole state. */
static int complete_fields(const ns_entity_type *t, ns_fieldset *fs)
{
    for (size_t i = 0; i < t->nfields; i++) {
        if (ns_fieldset_get(fs, t->fields[i].name) != NULL)
            continue;
        ns_value v;
        ns_value_init_null(&v, t->fields[i].type.kind);
        if (ns_fieldset_set(fs, t->fields[i].name, &v) != 0)
            return -1;
    }
    return 0;
}

/* Builds record i of the page from result row i. Returns 0, or an error
 * code with the record left owning nothing. */
static int record_build(ns_feed *f, const ns_db_result *res, int row, page_build *pb, size_t i,
                        int64_t *seq, char *msg, size_t msglen)
{
    const char *s_seq = ns_db_result_value(res, row, COL_SEQ);
    const char *type = ns_db_result_value(res, row, COL_TYPE);
    const char *id = ns_db_result_value(res, row, COL_ID);
    const char *version = ns_db_result_value(res, row, COL_VERSION);
    const char *deleted = ns_db_result_value(res, row, COL_DELETED);
    const char *tenant = ns_db_result_value(res, row, COL_TENANT);
    const char *after = ns_db_result_value(res, row, COL_AFTER);
    const char *by = ns_db_result_value(res, row, COL_BY);
    const char *at = ns_db_result_value(res, row, COL_AT);
    int64_t ver;
    if (!parse_seq_str(s_seq, seq) || type == NULL || id == NULL || !parse_seq_str(version, &ver) ||
        ver < 1 || deleted == NULL || tenant == NULL || after == NULL || by == NULL || at == NULL)
        return internal(msg, msglen, "malformed feed row %d", row);
    const ns_entity_type *t = ns_registry_find(f->reg, type);
    if (t == NULL)
        return internal(msg, msglen,
                        "feed seq %lld: entity type %.40s is unknown to this daemon "
                        "(restart it after a migration)",
                        (long long)*seq, type);
    char why[256];
    if (ns_fields_from_json_text(t, after, strlen(after), &pb->fs[i], why, sizeof(why)) != 0)
        return internal(msg, msglen, "feed seq %lld (%s %s v%lld): %s", (long long)*seq, t->name,
                        id, (long long)ver, why);
    pb->pbfs[i] = (Napsync__V1__FieldSet)NAPSYNC__V1__FIELD_SET__INIT;
    if (complete_fields(t, &pb->fs[i]) != 0 || ns_fieldset_to_pb(&pb->fs[i], &pb->pbfs[i]) != 0) {
        ns_fieldset_pb_clear(&pb->pbfs[i]);
        ns_fieldset_free(&pb->fs[i]);
        return internal(msg, msglen, "out of memory building a page");
    }
    Napsync__V1__Record *r = &pb->recs[i];
    *r = (Napsync__V1__Record)NAPSYNC__V1__RECORD__INIT;
    /* protobuf-c's fields are not const; the page is only packed, never
     * written through. */
    r->entity_type = (char *)t->name;
    r->id = (char *)id;
    r->version = (uint64_t)ver;
    r->deleted = deleted[0] == 't';
    r->tenant_id = (char *)tenant;
    r->fields = &pb->pbfs[i];
    r->changed_by = (char *)by;
    r->changed_at = (char *)at;
    pb->ptrs[i] = r;
    return 0;
}

/* Splits the page query's tenant list ("id,id,...", NULL for none) into
 * pb's tenant_ids: at most TENANTS_MAX, *cut when there were more. */
static int tenants_build(const char *list, page_build *pb, bool *cut, char *msg, size_t msglen)
{
    *cut = false;
    if (list == NULL || list[0] == '\0')
        return 0;
    size_t len = strlen(list);
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += list[i] == ',';
    if (n > TENANTS_MAX + 1 || len != n * (UUID_LEN + 1) - 1)
        return internal(msg, msglen, "page query: malformed tenant list");
    pb->tenant_buf = malloc(len + 1);
    pb->tenant_ptrs = calloc(n, sizeof(*pb->tenant_ptrs));
    if (pb->tenant_buf == NULL || pb->tenant_ptrs == NULL) {
        page_free(pb);
        return internal(msg, msglen, "out of memory building a page");
    }
    memcpy(pb->tenant_buf, list, len + 1);
    if (n > TENANTS_MAX) {
        n = TENANTS_MAX;
        *cut = true;
    }
    for (size_t i = 0; i < n; i++) {
        char *t = pb->tenant_buf + i * (UUID_LEN + 1);
        t[UUID_LEN] = '\0';
        pb->tenant_ptrs[i] = t;
    }
    pb->ntenants = n;
    return 0;
}

/* Turns a page query's answer into a page for q, or an error code with a
 * message for the client. On success pb must be released with page_free. */
static int page_build_from(ns_feed *f, const feed_query *q, ns_db_status st,
                           const ns_db_result *res, page_build *pb, char *msg, size_t msglen)
{
    memset(pb, 0, sizeof(*pb));
    if (st != NS_DB_OK) {
        if (st == NS_DB_QUERY_FAILED)
            return internal(msg, msglen, "page query: %s %s", ns_db_result_sqlstate(res),
                            ns_db_result_message(res));
        return queue_error(st, msg, msglen);
    }
    int rows = ns_db_result_rows(res);
    int64_t head;
    if (rows < 1 || ns_db_result_cols(res) != NCOLS ||
        !parse_seq_str(ns_db_result_value(res, 0, COL_HEAD), &head) ||
        !uuid_copy(pb->epoch, ns_db_result_value(res, 0, COL_EPOCH), true))
        return internal(msg, msglen, "page query: unexpected result shape");
    if (head > f->head)
        f->head = head;
    if ((q->epoch[0] != '\0' && strcmp(q->epoch, pb->epoch) != 0) || q->seq > head) {
        snprintf(msg, msglen, "%s",
                 q->seq > head ? "the cursor is ahead of this server's feed (restored?); "
                                 "pull again from the beginning"
                               : "the cursor belongs to another history of this server "
                                 "(restored?); pull again from the beginning");
        return ERR(CURSOR_UNKNOWN);
    }
    const char *denied = ns_db_result_value(res, 0, COL_DENIED);
    if (denied != NULL) {
        snprintf(msg, msglen, "plan %.36s is not readable by this principal, or does not exist",
                 denied);
        return ERR(PERMISSION_DENIED);
    }
    bool cut = false;
    int tcode = tenants_build(ns_db_result_value(res, 0, COL_TENANTS), pb, &cut, msg, msglen);
    if (tcode != 0)
        return tcode;
    size_t found = ns_db_result_value(res, 0, COL_SEQ) == NULL ? 0 : (size_t)rows;
    if (found > (size_t)q->page_size + 1) {
        page_free(pb);
        return internal(msg, msglen, "page query returned %zu rows", found);
    }
    size_t take = found > q->page_size ? q->page_size : found;
    bool more = found > take;
    if (take > 0) {
        pb->recs = calloc(take, sizeof(*pb->recs));
        pb->ptrs = calloc(take, sizeof(*pb->ptrs));
        pb->pbfs = calloc(take, sizeof(*pb->pbfs));
        pb->fs = calloc(take, sizeof(*pb->fs));
        if (pb->recs == NULL || pb->ptrs == NULL || pb->pbfs == NULL || pb->fs == NULL) {
            page_free(pb);
            return internal(msg, msglen, "out of memory building a page");
        }
    }
    /* The tenants share the page's bytes (at most TENANTS_MAX * 38); a
     * page still carries at least one record. */
    size_t fixed = PAGE_OVERHEAD + pb->ntenants * TENANT_PACKED;
    size_t budget = f->opt.max_page_bytes > fixed ? f->opt.max_page_bytes - fixed : 0, used = 0;
    int64_t last = q->seq;
    for (size_t i = 0; i < take; i++) {
        int64_t seq;
        int code = record_build(f, res, (int)i, pb, i, &seq, msg, msglen);
        if (code == 0 && seq <= last) {
            ns_fieldset_pb_clear(&pb->pbfs[i]);
            ns_fieldset_free(&pb->fs[i]);
            code =
                internal(msg, msglen, "feed seq %lld after %lld", (long long)seq, (long long)last);
        }
        if (code != 0) {
            page_free(pb);
            return code;
        }
        size_t sz = napsync__v1__record__get_packed_size(&pb->recs[i]);
        sz += 1 + varint_size(sz);
        if (i > 0 && used + sz > budget) {
            /* Cut here: the record goes in the next page. */
            ns_fieldset_pb_clear(&pb->pbfs[i]);
            ns_fieldset_free(&pb->fs[i]);
            more = true;
            break;
        }
        used += sz;
        pb->n = i + 1;
        last = seq;
    }
    if (last > head) {
        page_free(pb);
        return internal(msg, msglen, "feed seq %lld above the head %lld", (long long)last,
                        (long long)head);
    }
    /* Not more: the page held every change in scope up to the head. */
    pb->next = more ? last : head;
    snprintf(pb->cursor, sizeof(pb->cursor), "v1.%s.%lld", pb->epoch, (long long)pb->next);
    pb->page = (Napsync__V1__ChangePage)NAPSYNC__V1__CHANGE_PAGE__INIT;
    pb->page.n_records = pb->n;
    pb->page.records = pb->ptrs;
    pb->page.next_cursor = pb->cursor;
    pb->page.more = more;
    pb->page.n_tenant_ids = pb->ntenants;
    pb->page.tenant_ids = pb->tenant_ptrs;
    pb->page.tenant_ids_truncated = cut;
    return 0;
}

/* ---- Pull ------------------------------------------------------------------------ */

static void on_pull_result(ns_db_status st, const ns_db_result *res, void *ud)
{
    pull_op *op = ud;
    page_build pb;
    char msg[256];
    int code = page_build_from(op->f, &op->q, st, res, &pb, msg, sizeof(msg));
    if (code == 0) {
        op->cb(0, NULL, &pb.page, op->ud);
        page_free(&pb);
    } else {
        op->cb(code, msg, NULL, op->ud);
    }
    query_free(&op->q);
    free(op);
}

int ns_feed_pull(ns_feed *f, const ns_identity_info *who, const Napsync__V1__Pull *req,
                 ns_feed_page_cb cb, void *ud, char *err, size_t errlen)
{
    if (f == NULL || req == NULL || cb == NULL)
        return bad(err, errlen, "no request");
    pull_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return queue_error(NS_DB_NOMEM, err, errlen);
    int code = query_init(f, who, req->cursor, req->n_scopes, req->scopes, req->page_size, &op->q,
                          err, errlen);
    if (code != 0) {
        free(op);
        return code;
    }
    op->f = f;
    op->cb = cb;
    op->ud = ud;
    ns_db_status st = query_run(f, &op->q, on_pull_result, op);
    if (st != NS_DB_OK) {
        query_free(&op->q);
        free(op);
        return queue_error(st, err, errlen);
    }
    return 0;
}

/* ---- subscriptions ------------------------------------------------------------------ */

static void ready_remove(ns_feed *f, ns_feed_sub *s)
{
    if (!s->queued)
        return;
    if (s->rprev != NULL)
        s->rprev->rnext = s->rnext;
    else
        f->ready_head = s->rnext;
    if (s->rnext != NULL)
        s->rnext->rprev = s->rprev;
    else
        f->ready_tail = s->rprev;
    s->rprev = s->rnext = NULL;
    s->queued = false;
}

static void ready_push(ns_feed *f, ns_feed_sub *s)
{
    s->rnext = NULL;
    s->rprev = f->ready_tail;
    if (f->ready_tail != NULL)
        f->ready_tail->rnext = s;
    else
        f->ready_head = s;
    f->ready_tail = s;
    s->queued = true;
}

static void sub_tenants_free(ns_feed_sub *s)
{
    free(s->tenant_buf);
    free(s->tenant_ptrs);
    s->tenant_buf = NULL;
    s->tenant_ptrs = NULL;
    s->ntenants = 0;
}

static void sub_free(ns_feed_sub *s)
{
    sub_tenants_free(s);
    query_free(&s->q);
    free(s);
}

/* Keeps the tenant set of a page delivered by the subscription's own query,
 * for the fast path; a set cut short or too large keeps it off it. */
static void sub_tenants_keep(ns_feed_sub *s, const Napsync__V1__ChangePage *p)
{
    sub_tenants_free(s);
    if (p->tenant_ids_truncated || p->n_tenant_ids > FAST_TENANTS_MAX)
        return;
    size_t n = p->n_tenant_ids;
    s->tenant_buf = malloc(n * (UUID_LEN + 1) + 1);
    s->tenant_ptrs = calloc(n + 1, sizeof(*s->tenant_ptrs));
    if (s->tenant_buf == NULL || s->tenant_ptrs == NULL) {
        sub_tenants_free(s); /* off the fast path: only slower */
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char *t = s->tenant_buf + i * (UUID_LEN + 1);
        snprintf(t, UUID_LEN + 1, "%s", p->tenant_ids[i]);
        s->tenant_ptrs[i] = t;
    }
    s->ntenants = n;
}

static bool sub_has_tenant(const ns_feed_sub *s, const char *id)
{
    for (size_t i = 0; i < s->ntenants; i++)
        if (strcmp(s->tenant_ptrs[i], id) == 0)
            return true;
    return false;
}

static void on_retry(uv_timer_t *t);

static void arm_retry(ns_feed *f)
{
    if (!uv_is_active((uv_handle_t *)&f->retry_timer))
        uv_timer_start(&f->retry_timer, on_retry, f->opt.retry_ms, 0);
}

static void on_sub_result(ns_db_status st, const ns_db_result *res, void *ud);

/* An own query starts: its snapshot is later than the last shared read's. */
static void sub_fp_take(ns_feed_sub *s)
{
    s->f->own_queries++;
    memcpy(s->fp_dir, s->f->fp_dir, sizeof(s->fp_dir));
    memcpy(s->fp_plans, s->f->fp_plans, sizeof(s->fp_plans));
    s->fp_known = s->f->fp_known;
}

/* Starts the subscription's next page query; the caller checked that it
 * may run. */
static ns_db_status sub_start(ns_feed_sub *s)
{
    ns_feed *f = s->f;
    ns_db_status st = query_run(f, &s->q, on_sub_result, s);
    if (st == NS_DB_OK) {
        sub_fp_take(s);
        s->again = false;
        s->retry = false;
        s->inflight = true;
        f->running++;
    } else if (st != NS_DB_SHUTDOWN) {
        /* Still due: the timer tries again. After ns_db_close nothing will
         * run any more; the owner ends the subscription. */
        s->retry = true;
        arm_retry(f);
    }
    return st;
}

static bool sub_runnable(const ns_feed_sub *s)
{
    return s->again && !s->closed && !s->ended && !s->paused && !s->inflight;
}

/* Runs the subscription's query now if one is due and a slot is free, or
 * queues it for the next free slot. */
static void sub_kick(ns_feed_sub *s)
{
    ns_feed *f = s->f;
    if (!sub_runnable(s) || s->queued)
        return;
    if (f->running >= f->opt.max_sub_queries)
        ready_push(f, s);
    else
        (void)sub_start(s);
}

/* Gives free query slots to the subscriptions waiting for one, in order. */
static void feed_pump(ns_feed *f)
{
    while (f->running < f->opt.max_sub_queries && f->ready_head != NULL) {
        ns_feed_sub *s = f->ready_head;
        ready_remove(f, s);
        if (sub_runnable(s))
            (void)sub_start(s);
    }
}

static void sub_call(ns_feed_sub *s, int code, const char *msg, const Napsync__V1__ChangePage *page)
{
    s->in_cb = true;
    s->cb(code, msg, page, s->ud);
    s->in_cb = false;
}

/* FNV-1a over the page's tenant set: equal sets, equal hashes. */
static uint64_t tenants_hash(const Napsync__V1__ChangePage *p)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < p->n_tenant_ids; i++)
        for (const char *c = p->tenant_ids[i]; *c != '\0'; c++)
            h = (h ^ (uint8_t)*c) * 1099511628211ull;
    return (h ^ (p->tenant_ids_truncated ? 1u : 0u)) * 1099511628211ull + p->n_tenant_ids;
}

static void on_sub_result(ns_db_status st, const ns_db_result *res, void *ud)
{
    ns_feed_sub *s = ud;
    ns_feed *f = s->f;

    s->inflight = false;
    f->running--;
    if (s->closed) {
        sub_free(s);
        feed_pump(f);
        return;
    }
    if (st == NS_DB_UNAVAILABLE || st == NS_DB_QUEUE_FULL) {
        s->again = true;
        s->retry = true;
        arm_retry(f);
        feed_pump(f);
        return;
    }
    page_build pb;
    char msg[256];
    int code = page_build_from(f, &s->q, st, res, &pb, msg, sizeof(msg));
    if (code != 0) {
        s->ended = true;
        sub_call(s, code, msg, NULL);
    } else {
        s->q.seq = pb.next;
        memcpy(s->q.epoch, pb.epoch, sizeof(s->q.epoch));
        if (pb.page.more)
            s->again = true;
        uint64_t th = tenants_hash(&pb.page);
        /* A changed tenant set is news too: the client purges or
         * backfills by it. */
        if (pb.n > 0 || !s->delivered || th != s->tenants_hash) {
            if (!s->delivered || th != s->tenants_hash)
                sub_tenants_keep(s, &pb.page);
            s->delivered = true;
            s->tenants_hash = th;
            sub_call(s, 0, NULL, &pb.page);
        }
        page_free(&pb);
    }
    if (s->closed) {
        sub_free(s);
        feed_pump(f);
        return;
    }
    /* Those waiting for a slot go first, so a long catch-up takes turns
     * with the others instead of keeping its slot. */
    feed_pump(f);
    sub_kick(s);
}

static void on_retry(uv_timer_t *t)
{
    ns_feed *f = t->data;
    for (ns_feed_sub *s = f->subs; s != NULL; s = s->next) {
        if (s->retry) {
            s->retry = false;
            s->again = true;
            sub_kick(s);
        }
    }
}

/* ---- the fast path: one shared read per change for every caught-up subscriber -------- */

/* Whether the shared read may decide for s: caught up (its first page out,
 * nothing due or running), with a complete, small tenant set. */
static bool sub_fast(const ns_feed_sub *s)
{
    return s->delivered && s->tenant_ptrs != NULL && !s->fast_off && !s->again && !s->inflight &&
           !s->queued && !s->paused && !s->retry && !s->ended && !s->closed && !s->held;
}

/* One row of the shared read, its record built once for every page. */
typedef struct {
    int64_t seq;
    const char *type, *id, *tenant, *owner, *pstatus; /* into the result */
    ns_policy_row prow;                               /* into the page_build's fieldset */
    bool conflicts;
    size_t packed; /* the record's bytes in a page */
} shared_row;

/* Whether row r may change what s may read, so that only s's own query
 * (row-level security, the scopes resolved again) decides: a plan in or
 * possibly entering its scopes, or the directory entries of its
 * principal, roles or organisation. */
static bool row_moves_readable(ns_feed_sub *s, const shared_row *r)
{
    if (strcmp(r->type, "plan") == 0)
        return s->has_orgs || strstr(s->q.plans, r->id) != NULL || sub_has_tenant(s, r->id);
    if (strcmp(r->tenant, NS_DIRECTORY_TENANT) != 0 ||
        (strcmp(r->type, "organisation") != 0 && strcmp(r->type, "principal") != 0 &&
         strcmp(r->type, "principal_role") != 0))
        return false;
    bool mine = strcmp(r->type, "organisation") == 0
                    ? strcmp(r->id, s->q.org) == 0
                    : r->prow.organisation_id == NULL ||
                          strcmp(r->prow.organisation_id, s->q.org) == 0 ||
                          strcmp(r->id, s->q.principal) == 0;
    if (mine) {
        /* The reader's rights in the database may now differ from the
         * session's (reads_only, admin), which the fast path uses: only
         * row-level security decides for it from now on. */
        s->fast_off = true;
    }
    return mine;
}

typedef enum { FAST_NONE, FAST_PAGE, FAST_OWN_QUERY } fast_verdict;

/* Picks s's records of the shared rows into recs (room for nrows). */
static fast_verdict fast_pick(ns_feed *f, ns_feed_sub *s, const shared_row *rows, size_t nrows,
                              Napsync__V1__Record *const *built, Napsync__V1__Record **recs,
                              size_t *nrecs, bool *conflicts)
{
    ns_policy_reader rd = {s->q.org, s->q.principal, s->q.reads_only, s->q.admin};
    size_t fixed = PAGE_OVERHEAD + s->ntenants * TENANT_PACKED, used = 0, n = 0;
    size_t budget = f->opt.max_page_bytes > fixed ? f->opt.max_page_bytes - fixed : 0;
    *conflicts = false;
    for (size_t i = 0; i < nrows; i++) {
        const shared_row *r = &rows[i];
        if (r->seq <= s->q.seq)
            continue;
        if (row_moves_readable(s, r))
            return FAST_OWN_QUERY;
        if (!sub_has_tenant(s, r->tenant) ||
            (strcmp(r->tenant, NS_DIRECTORY_TENANT) != 0 &&
             !ns_policy_plan_readable(s->q.org, r->owner, r->pstatus)))
            continue;
        *conflicts = *conflicts || r->conflicts;
        if (!ns_policy_record_readable(&rd, &r->prow))
            continue;
        used += r->packed;
        if (n == s->q.page_size || (n > 0 && used > budget))
            return FAST_OWN_QUERY; /* more than one page: its own queries page it */
        recs[n++] = built[i];
    }
    *nrecs = n;
    return n > 0 ? FAST_PAGE : FAST_NONE;
}

/* Hands s over to its own query (today's path). */
static void sub_own_query(ns_feed_sub *s)
{
    s->again = true;
    sub_kick(s);
}

/* Parses the shared read into rows (records built in pb). Returns the
 * number of rows, or -1 when the answer is unusable or cut (then every
 * subscriber runs its own query, which reports what is wrong). */
static long shared_parse(ns_feed *f, ns_db_status st, const ns_db_result *res, page_build *pb,
                         shared_row **out, int64_t *head)
{
    memset(pb, 0, sizeof(*pb));
    *out = NULL;
    if (st != NS_DB_OK)
        return -1;
    int rows = ns_db_result_rows(res);
    if (rows < 1 || ns_db_result_cols(res) != SHARED_NCOLS ||
        !parse_seq_str(ns_db_result_value(res, 0, COL_HEAD), head) ||
        !uuid_copy(pb->epoch, ns_db_result_value(res, 0, COL_EPOCH), true))
        return -1;
    if (*head > f->head)
        f->head = *head;
    const char *fd = ns_db_result_value(res, 0, COL_DENIED);
    const char *fpl = ns_db_result_value(res, 0, COL_TENANTS);
    if (fd == NULL || fpl == NULL || strlen(fd) != 32 || strlen(fpl) != 32)
        return -1;
    memcpy(f->fp_dir, fd, sizeof(f->fp_dir));
    memcpy(f->fp_plans, fpl, sizeof(f->fp_plans));
    f->fp_known = true;
    size_t n = ns_db_result_value(res, 0, COL_SEQ) == NULL ? 0 : (size_t)rows;
    if (n > SHARED_ROWS)
        return -1;
    if (n == 0)
        return 0;
    shared_row *sr = calloc(n, sizeof(*sr));
    pb->recs = calloc(n, sizeof(*pb->recs));
    pb->ptrs = calloc(n, sizeof(*pb->ptrs));
    pb->pbfs = calloc(n, sizeof(*pb->pbfs));
    pb->fs = calloc(n, sizeof(*pb->fs));
    if (sr == NULL || pb->recs == NULL || pb->ptrs == NULL || pb->pbfs == NULL || pb->fs == NULL) {
        free(sr);
        page_free(pb);
        return -1;
    }
    char msg[64];
    for (size_t i = 0; i < n; i++) {
        shared_row *r = &sr[i];
        if (record_build(f, res, (int)i, pb, i, &r->seq, msg, sizeof(msg)) != 0 ||
            (i > 0 && r->seq <= sr[i - 1].seq) || r->seq > *head) {
            if (pb->ptrs[i] != NULL) {
                ns_fieldset_pb_clear(&pb->pbfs[i]);
                ns_fieldset_free(&pb->fs[i]);
            }
            free(sr);
            page_free(pb);
            return -1;
        }
        pb->n = i + 1;
        r->type = pb->recs[i].entity_type;
        r->id = pb->recs[i].id;
        r->tenant = pb->recs[i].tenant_id;
        r->owner = ns_db_result_value(res, (int)i, COL_OWNER);
        r->pstatus = ns_db_result_value(res, (int)i, COL_PSTATUS);
        const char *c = ns_db_result_value(res, (int)i, COL_CONFLICTS);
        r->conflicts = c == NULL || c[0] != 'f'; /* unknown: say they may have */
        ns_policy_row_of(r->type, &pb->fs[i], &r->prow);
        size_t sz = napsync__v1__record__get_packed_size(&pb->recs[i]);
        r->packed = sz + 1 + varint_size(sz);
    }
    *out = sr;
    return (long)n;
}

static void feed_wake(ns_feed *f, int64_t head);

static void on_shared_result(ns_db_status st, const ns_db_result *res, void *ud)
{
    ns_feed *f = ud;
    ns_feed_sub **subs = f->shared;
    size_t nsubs = f->nshared;
    bool reset = f->shared_reset;
    f->shared = NULL;
    f->nshared = 0;
    f->shared_reset = false;
    page_build pb;
    shared_row *rows = NULL;
    int64_t head = 0;
    long nrows = shared_parse(f, st, res, &pb, &rows, &head);
    if (nrows < 0 && st != NS_DB_SHUTDOWN)
        ns_log_warn("feed: the shared read failed (%s): subscribers query on their own",
                    st == NS_DB_QUERY_FAILED ? ns_db_result_message(res) : ns_db_status_str(st));
    Napsync__V1__Record **recs = nrows > 0 ? calloc((size_t)nrows, sizeof(*recs)) : NULL;
    /* Directory entries of people in the read: row_moves_readable decides
     * whom they concern. */
    bool people = false;
    for (long i = 0; i < nrows; i++)
        people = people || strcmp(rows[i].type, "principal") == 0 ||
                 strcmp(rows[i].type, "principal_role") == 0 ||
                 strcmp(rows[i].type, "organisation") == 0;
    char cursor[NS_FEED_CURSOR_MAX + 1];
    snprintf(cursor, sizeof(cursor), "v1.%s.%lld", pb.epoch, (long long)head);
    for (size_t k = 0; k < nsubs; k++) {
        ns_feed_sub *s = subs[k];
        s->held = false;
        if (s->closed) {
            if (!s->inflight && !s->in_cb)
                sub_free(s);
            continue;
        }
        if (s->ended || (s->q.seq >= head && !reset))
            continue;
        size_t n = 0;
        bool conflicts = false;
        fast_verdict v = FAST_OWN_QUERY;
        if (nrows >= 0 && s->fp_known && strcmp(s->fp_dir, f->fp_dir) != 0 && !people) {
            /* Rights changed beside the feed: whose is not known. */
            s->fast_off = true;
        }
        if (!reset && nrows >= 0 && (nrows == 0 || recs != NULL) && s->fp_known &&
            strcmp(s->fp_plans, f->fp_plans) == 0 && strcmp(s->fp_dir, f->fp_dir) == 0 &&
            strcmp(s->q.epoch, pb.epoch) == 0 && sub_fast(s))
            v = fast_pick(f, s, rows, (size_t)nrows, pb.ptrs, recs, &n, &conflicts);
        if (v == FAST_OWN_QUERY) {
            sub_own_query(s);
            continue;
        }
        s->q.seq = head;
        if (v == FAST_NONE)
            continue;
        /* The records are shared by every page of this read: the callback
         * only reads them (ns_feed_page_cb). */
        Napsync__V1__ChangePage page = NAPSYNC__V1__CHANGE_PAGE__INIT;
        page.n_records = n;
        page.records = recs;
        page.next_cursor = cursor;
        page.n_tenant_ids = s->ntenants;
        page.tenant_ids = s->tenant_ptrs;
        page.conflicts_unchanged = !conflicts;
        f->fast_pages++;
        sub_call(s, 0, NULL, &page);
        if (s->closed)
            sub_free(s);
    }
    free(recs);
    free(rows);
    page_free(&pb);
    free(subs);
    feed_pump(f);
    if (f->shared_again) {
        f->shared_again = false;
        feed_wake(f, f->head);
    }
}

/* Wakes the subscribers behind head: those caught up through one shared
 * read, the others through their own queries. */
static void feed_wake(ns_feed *f, int64_t head)
{
    size_t nfast = 0;
    int64_t from = INT64_MAX;
    for (ns_feed_sub *s = f->subs; s != NULL; s = s->next) {
        /* s->q.seq is the cursor of a query in flight too: if it is at
         * the head already, that query cannot miss this change. */
        if (s->q.seq >= head)
            continue;
        if (s->held) {
            f->shared_again = true;
        } else if (sub_fast(s) && f->shared == NULL) {
            nfast++;
            if (s->q.seq < from)
                from = s->q.seq;
        } else if (sub_fast(s)) {
            f->shared_again = true; /* after the read in flight */
        } else {
            sub_own_query(s);
        }
    }
    if (nfast == 0)
        return;
    ns_feed_sub **subs = calloc(nfast, sizeof(*subs));
    char seq[24];
    snprintf(seq, sizeof(seq), "%lld", (long long)from);
    const char *v[2] = {seq, SHARED_ROWS_SQL};
    if (subs == NULL || ns_reader_query(f->db, NS_READER_ENGINE, shared_sql, 2, v, on_shared_result,
                                        f) != NS_DB_OK) {
        free(subs);
        for (ns_feed_sub *s = f->subs; s != NULL; s = s->next)
            if (s->q.seq < head && sub_fast(s))
                sub_own_query(s);
        return;
    }
    size_t k = 0;
    for (ns_feed_sub *s = f->subs; s != NULL && k < nfast; s = s->next) {
        if (s->q.seq < head && sub_fast(s)) {
            s->held = true;
            subs[k++] = s;
        }
    }
    f->shared = subs;
    f->nshared = k;
    f->shared_reads++;
}

/* A new head (payload), or NULL: LISTEN (re)started and something may have
 * been missed. */
static void on_notify(const char *channel, const char *payload, void *ud)
{
    ns_feed *f = ud;
    (void)channel;
    int64_t head = 0;
    if (payload == NULL || !parse_seq_str(payload, &head)) {
        for (ns_feed_sub *s = f->subs; s != NULL; s = s->next)
            if (!s->held)
                sub_own_query(s);
        if (f->shared != NULL)
            f->shared_reset = true;
        return;
    }
    if (head > f->head)
        f->head = head;
    feed_wake(f, head);
}

int ns_feed_subscribe(ns_feed *f, const ns_identity_info *who, const Napsync__V1__Subscribe *req,
                      ns_feed_page_cb cb, void *ud, ns_feed_sub **out, char *err, size_t errlen)
{
    if (f == NULL || req == NULL || cb == NULL || out == NULL)
        return bad(err, errlen, "no request");
    ns_feed_sub *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return queue_error(NS_DB_NOMEM, err, errlen);
    int code = query_init(f, who, req->cursor, req->n_scopes, req->scopes, 0, &s->q, err, errlen);
    if (code != 0) {
        free(s);
        return code;
    }
    s->f = f;
    s->cb = cb;
    s->ud = ud;
    s->again = true;
    s->has_orgs = strcmp(s->q.orgs, "{}") != 0;
    if (f->running < f->opt.max_sub_queries) {
        ns_db_status st = query_run(f, &s->q, on_sub_result, s);
        if (st != NS_DB_OK) {
            sub_free(s);
            return queue_error(st, err, errlen);
        }
        sub_fp_take(s);
        s->again = false;
        s->inflight = true;
        f->running++;
    } else {
        ready_push(f, s);
    }
    s->next = f->subs;
    if (f->subs != NULL)
        f->subs->prev = s;
    f->subs = s;
    *out = s;
    return 0;
}

void ns_feed_unsubscribe(ns_feed_sub *s)
{
    if (s == NULL || s->closed)
        return;
    ns_feed *f = s->f;
    s->closed = true;
    ready_remove(f, s);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        f->subs = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    /* Otherwise the query's answer, the callback's return or the shared
     * read frees it. */
    if (!s->inflight && !s->in_cb && !s->held)
        sub_free(s);
}

void ns_feed_sub_pause(ns_feed_sub *s)
{
    if (s == NULL || s->closed)
        return;
    s->paused = true;
    if (s->queued) {
        /* It keeps its due query (again) for resume. */
        ready_remove(s->f, s);
    }
}

void ns_feed_sub_resume(ns_feed_sub *s)
{
    if (s == NULL || s->closed || !s->paused)
        return;
    s->paused = false;
    sub_kick(s);
}

void ns_feed_stats_get(const ns_feed *f, ns_feed_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->head = f->head;
    out->shared_reads = f->shared_reads;
    out->fast_pages = f->fast_pages;
    out->own_queries = f->own_queries;
    for (const ns_feed_sub *s = f->subs; s != NULL; s = s->next) {
        out->subscribers++;
        if (s->q.seq < f->head) {
            out->behind++;
            if (f->head - s->q.seq > out->max_lag)
                out->max_lag = f->head - s->q.seq;
        }
    }
}

/* ---- the feed ------------------------------------------------------------------------- */

int ns_feed_open(uv_loop_t *loop, ns_db *db, const ns_registry *reg, const ns_feed_options *opt,
                 ns_feed **out)
{
    if (loop == NULL || db == NULL || reg == NULL || out == NULL)
        return -1;
    ns_feed_options o = {0};
    if (opt != NULL)
        o = *opt;
    if (o.max_page_size == 0)
        o.max_page_size = NS_FEED_MAX_PAGE_SIZE;
    if (o.default_page_size == 0)
        o.default_page_size = o.max_page_size < NS_FEED_DEFAULT_PAGE_SIZE
                                  ? o.max_page_size
                                  : NS_FEED_DEFAULT_PAGE_SIZE;
    if (o.max_page_bytes == 0)
        o.max_page_bytes = NS_FRAME_DEFAULT_MAX - 4096;
    if (o.max_sub_queries == 0)
        o.max_sub_queries = 4;
    if (o.retry_ms == 0)
        o.retry_ms = 1000;
    if (o.max_page_size > NS_FEED_MAX_PAGE_SIZE || o.default_page_size > o.max_page_size ||
        o.max_page_bytes <= 2 * PAGE_OVERHEAD || o.max_page_bytes > NS_FRAME_MAX_LIMIT)
        return -1;
    ns_feed *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->loop = loop;
    f->db = db;
    f->reg = reg;
    f->opt = o;
    if (uv_timer_init(loop, &f->retry_timer) != 0) {
        free(f);
        return -1;
    }
    f->retry_timer.data = f;
    if (ns_db_listen(db, NS_FEED_CHANNEL, on_notify, f) != NS_DB_OK) {
        /* The timer is the only handle; it must be closed before f goes. */
        ns_feed_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

static void on_feed_closed(uv_handle_t *h)
{
    free(h->data);
}

void ns_feed_close(ns_feed *f)
{
    if (f == NULL)
        return;
    /* Only if ns_db_close did not answer the shared read (misuse): the
     * closed subscriptions it holds wait only for it; the open ones go
     * below. */
    for (size_t i = 0; i < f->nshared; i++)
        if (f->shared[i]->closed)
            sub_free(f->shared[i]);
    free(f->shared);
    f->shared = NULL;
    f->nshared = 0;
    size_t left = 0;
    while (f->subs != NULL) {
        ns_feed_sub *s = f->subs;
        f->subs = s->next;
        sub_free(s);
        left++;
    }
    if (left > 0)
        ns_log_warn("feed: closed with %zu subscriptions still open", left);
    f->ready_head = f->ready_tail = NULL;
    uv_timer_stop(&f->retry_timer);
    uv_close((uv_handle_t *)&f->retry_timer, on_feed_closed);
}
