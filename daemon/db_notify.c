/* LISTEN/NOTIFY for the pool (see db.h): one connection of its own, outside
 * the pool, that connects and backs off like a pool connection (db.c does
 * that part, host name lookups off the loop included, sharing the pool's)
 * and here LISTENs on the registered channels and hands every NOTIFY to its
 * channel's callback.
 *
 * A notification sent while nobody LISTENs is gone for good. So whenever
 * LISTEN takes effect on a connection - the first time for a channel, and
 * again for every channel after a reconnect - the channel's callback is
 * called with payload NULL: from then on nothing is missed, and the owner
 * reads what it may have missed before. */
#include "db_internal.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOTIFY_MAX_CHANNELS 16
#define NOTIFY_NAME_MAX     63 /* PostgreSQL's identifier length */
/* "LISTEN " + a quoted name + ";" for every channel, and the NUL. */
#define NOTIFY_SQL_MAX (NOTIFY_MAX_CHANNELS * (7 + NOTIFY_NAME_MAX + 2 + 1) + 1)

typedef struct {
    char name[NOTIFY_NAME_MAX + 1];
    ns_db_notify_cb cb;
    void *ud;
} notify_channel;

struct db_notify {
    db_conn conn;
    notify_channel ch[NOTIFY_MAX_CHANNELS]; /* never moved: callbacks get name */
    uint32_t n;
    uint32_t live;    /* ch[0, live) are LISTENed on the current connection */
    uint32_t sending; /* ch[live, sending) are in the LISTEN batch in flight */
    bool batch_failed;
};

static bool notify_name_ok(const char *s)
{
    size_t n = strnlen(s, NOTIFY_NAME_MAX + 1);

    if (n == 0 || n > NOTIFY_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

/* Sends one LISTEN batch for the channels not yet LISTENed, if the
 * connection is idle. Also called from ns_db_listen: a failure breaks the
 * connection from the loop. */
static void notify_send(db_conn *c)
{
    db_notify *nt = c->db->notify;
    char sql[NOTIFY_SQL_MAX];
    size_t len = 0;

    if (c->state != DB_CONN_IDLE || c->doomed || nt->live == nt->n)
        return;
    for (uint32_t i = nt->live; i < nt->n; i++) {
        /* The names are plain lower-case identifiers already; quoting them
         * anyway keeps this from ever becoming an injection. */
        char *id = PQescapeIdentifier(c->pg, nt->ch[i].name, strlen(nt->ch[i].name));
        if (id == NULL) {
            ns_db_conn_defer_break(c);
            return;
        }
        int w = snprintf(sql + len, sizeof sql - len, "LISTEN %s;", id);
        PQfreemem(id);
        if (w < 0 || (size_t)w >= sizeof sql - len) {
            ns_db_conn_defer_break(c);
            return;
        }
        len += (size_t)w;
    }
    if (!PQsendQuery(c->pg, sql)) {
        ns_db_conn_defer_break(c);
        return;
    }
    nt->sending = nt->n;
    nt->batch_failed = false;
    ns_db_conn_set_state(c, DB_CONN_BUSY);
    if (ns_db_conn_flush(c) != 0)
        ns_db_conn_defer_break(c);
}

void ns_db_notify_ready(db_conn *c)
{
    notify_send(c);
}

void ns_db_notify_lost(db_conn *c)
{
    db_notify *nt = c->db->notify;

    nt->live = nt->sending = 0;
}

/* The LISTEN batch's results, until libpq says it is done. Returns false if
 * the connection broke. */
static bool notify_collect(db_conn *c, bool *done)
{
    db_notify *nt = c->db->notify;

    *done = false;
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            *done = true;
            break;
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            nt->batch_failed = true;
        PQclear(r);
    }
    if (*done && nt->batch_failed) {
        /* LISTEN is refused only where it can never work (a standby in
         * recovery): retry with backoff, as for a lost connection. */
        ns_db_conn_broken(c);
        return false;
    }
    return true;
}

void ns_db_notify_input(db_conn *c)
{
    ns_db *db = c->db;
    db_notify *nt = db->notify;

    if (c->state == DB_CONN_BUSY) {
        bool done;
        if (!notify_collect(c, &done))
            return;
        if (done) {
            /* A callback may register a channel (which may send the next
             * batch at once) but cannot break the connection: its breaks
             * are deferred. */
            uint32_t from = nt->live, to = nt->sending;
            nt->live = to;
            ns_db_conn_set_state(c, DB_CONN_IDLE);
            for (uint32_t i = from; i < to && !db->closing; i++)
                nt->ch[i].cb(nt->ch[i].name, NULL, nt->ch[i].ud);
            if (db->closing)
                return;
            notify_send(c); /* channels registered meanwhile */
        }
    }
    PGnotify *pn;
    while (!db->closing && (pn = PQnotifies(c->pg)) != NULL) {
        ns_metrics_inc(NS_METRIC_DB_NOTIFICATIONS);
        for (uint32_t i = 0; i < nt->live; i++) {
            if (strcmp(nt->ch[i].name, pn->relname) == 0) {
                nt->ch[i].cb(nt->ch[i].name, pn->extra, nt->ch[i].ud);
                break;
            }
        }
        PQfreemem(pn);
    }
}

ns_db_status ns_db_listen(ns_db *db, const char *channel, ns_db_notify_cb cb, void *ud)
{
    if (db == NULL || channel == NULL || cb == NULL || !notify_name_ok(channel))
        return NS_DB_INVALID;
    if (db->closing)
        return NS_DB_SHUTDOWN;
    db_notify *nt = db->notify;
    if (nt != NULL) {
        if (nt->n == NOTIFY_MAX_CHANNELS)
            return NS_DB_INVALID;
        for (uint32_t i = 0; i < nt->n; i++)
            if (strcmp(nt->ch[i].name, channel) == 0)
                return NS_DB_INVALID;
    } else {
        nt = calloc(1, sizeof *nt);
        if (nt == NULL)
            return NS_DB_NOMEM;
        db->notify = nt;
        db->listener = &nt->conn;
        ns_db_conn_init(db, &nt->conn);
        nt->conn.listener = true;
    }
    notify_channel *ch = &nt->ch[nt->n++];
    snprintf(ch->name, sizeof ch->name, "%s", channel);
    ch->cb = cb;
    ch->ud = ud;
    if (nt->n == 1)
        ns_db_conn_start(&nt->conn); /* its first connection */
    else
        notify_send(&nt->conn);
    return NS_DB_OK;
}
