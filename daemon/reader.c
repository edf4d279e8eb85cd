/* Statements under a reader context (reader.h). */
#include "reader.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char reader[64];
    char *sql;
    int nparams;
    char **values; /* nparams entries, NULL for SQL NULL */
    ns_db_cb cb;
    void *ud;
    bool answered;
} reader_query;

static void rq_free(reader_query *q)
{
    for (int i = 0; q->values != NULL && i < q->nparams; i++)
        free(q->values[i]);
    free(q->values);
    free(q->sql);
    free(q);
}

static void answer(reader_query *q, ns_db_status st, const ns_db_result *res)
{
    if (q->answered)
        return;
    q->answered = true;
    q->cb(st, res, q->ud);
}

static void on_set(ns_db_status st, const ns_db_result *res, void *ud)
{
    /* A failure here aborts the statement after it, which reports it. */
    (void)st;
    (void)res;
    (void)ud;
}

static void on_result(ns_db_status st, const ns_db_result *res, void *ud)
{
    reader_query *q = ud;
    /* ABORTED: naming the reader failed, which only a broken server does. */
    answer(q, st == NS_DB_ABORTED ? NS_DB_UNAVAILABLE : st, res);
}

static void on_end(ns_db_status st, const ns_db_result *res, void *ud)
{
    reader_query *q = ud;
    (void)res;
    answer(q, st == NS_DB_OK ? NS_DB_UNAVAILABLE : st, NULL);
    rq_free(q);
}

static void on_begin(ns_db_status st, ns_db_txn *txn, void *ud)
{
    reader_query *q = ud;
    if (st != NS_DB_OK) {
        answer(q, st, NULL);
        rq_free(q);
        return;
    }
    const char *reader = q->reader;
    ns_db_status qs = ns_db_txn_query(txn, NS_READER_SET_SQL, 1, &reader, on_set, q);
    if (qs == NS_DB_OK)
        qs = ns_db_txn_query(txn, q->sql, q->nparams, (const char *const *)q->values, on_result, q);
    if (qs != NS_DB_OK)
        answer(q, qs == NS_DB_INVALID || qs == NS_DB_NOMEM ? NS_DB_NOMEM : qs, NULL);
    /* Only reads: ROLLBACK ends it, with the statements in one flush. */
    ns_db_status es = ns_db_txn_rollback(txn, on_end, q);
    if (es != NS_DB_OK) {
        /* Out of memory (or a pool being closed): the statements queued
         * may still call back, so q stays allocated - a small leak in a
         * failure that is already grave, never a use after free. */
        answer(q, es, NULL);
    }
}

ns_db_status ns_reader_query(ns_db *db, const char *reader, const char *sql, int nparams,
                             const char *const *values, ns_db_cb cb, void *ud)
{
    if (db == NULL || reader == NULL || sql == NULL || cb == NULL || nparams < 0 ||
        (nparams > 0 && values == NULL) || strlen(reader) >= sizeof(((reader_query *)0)->reader))
        return NS_DB_INVALID;
    reader_query *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NS_DB_NOMEM;
    memcpy(q->reader, reader, strlen(reader) + 1);
    q->cb = cb;
    q->ud = ud;
    q->nparams = nparams;
    q->sql = strdup(sql);
    q->values = calloc(nparams > 0 ? (size_t)nparams : 1, sizeof(*q->values));
    bool ok = q->sql != NULL && q->values != NULL;
    for (int i = 0; ok && i < nparams; i++) {
        if (values[i] != NULL && (q->values[i] = strdup(values[i])) == NULL)
            ok = false;
    }
    if (!ok) {
        rq_free(q);
        return NS_DB_NOMEM;
    }
    ns_db_status st = ns_db_txn_begin(db, on_begin, q);
    if (st != NS_DB_OK)
        rq_free(q);
    return st;
}
