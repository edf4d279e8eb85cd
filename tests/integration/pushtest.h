/* The in-process push fixture of test_push and test_conflicts: a database
 * of the program's own (pgtest.h) with a test-only entity type, the
 * registry loaded from it, a uv loop, a pool and the push engine, and two
 * organisations with principals and devices inserted with SQL; no daemon
 * process. On top of it, pushes built as protobuf messages from short
 * field specs, run on the loop, their answers copied and checked, and the
 * database read back with plain libpq.
 *
 * One fixture per program, in the global nst_pt: nst_pt_setup and
 * nst_pt_teardown are for the cmocka group, nst_pt_test_setup and
 * nst_pt_test_teardown for each test, and the helpers use nst_pt. The
 * helpers fail the running cmocka test when a step does; the fixture
 * functions print why on stderr and return -1. */
#ifndef NS_TEST_PUSHTEST_H
#define NS_TEST_PUSHTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "fields_pb.h"
#include "pgtest.h"
#include "registry.h"
#include "sync.h"
#include "wps.h"

/* ---- the tests' shorthand -------------------------------------------------------------- */

#define OUT_APPLIED  NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_APPLIED
#define OUT_MERGED   NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_MERGED
#define OUT_CONFLICT NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_CONFLICT
#define OUT_REJECTED NAPSYNC__V1__MUTATION_OUTCOME__MUTATION_OUTCOME_REJECTED
#define OP_CREATE    NAPSYNC__V1__MUTATION_OP__MUTATION_OP_CREATE
#define OP_UPDATE    NAPSYNC__V1__MUTATION_OP__MUTATION_OP_UPDATE
#define OP_DELETE    NAPSYNC__V1__MUTATION_OP__MUTATION_OP_DELETE
#define ERR(x)       NAPSYNC__V1__ERROR_CODE__ERROR_CODE_##x

#define PLAN_1 "0a000000-0000-4000-8000-000000000001"
#define PLAN_2 "0a000000-0000-4000-8000-000000000002"
#define PLAN_X "0a000000-0000-4000-8000-0000000000ff" /* never created */
#define IND_1  "1b000000-0000-4000-8000-000000000001"
#define REP_1  "2c000000-0000-4000-8000-000000000001"

/* ---- the fixture ----------------------------------------------------------------------- */

typedef struct {
    nst_pgt_db pgdb; /* the test database; pgdb.pg for the tests' own SQL */
    uv_loop_t loop;
    bool loop_ok;
    ns_db *db;
    ns_registry reg;
    ns_sync *sync;
    /* Organisation A: alice (coordinator, device dev-a), bob (coordinator
     * too, dev-b: a second writer of A's plans), olga (observer, dev-o);
     * organisation B: xavier (coordinator, dev-x); ada, administrator of
     * A (dev-ad). */
    ns_identity_info alice, bob, olga, xavier, ada;
    char org_a[40], org_b[40];
} nst_pt_fixture;

extern nst_pt_fixture nst_pt;

/* Creates database nst_<tag>_<pid> with table test_notes (entity type
 * test_note, tenant plan_id, whose CHECK constraint rejects the body
 * "forbidden": a mutation of it fails inside the batch's transaction, where
 * the engine cannot foresee it), the organisations and identities, then
 * the registry, loop, pool (4 connections) and engine. Returns 0 or -1;
 * either way nst_pt_teardown releases whatever was made. */
int nst_pt_setup(const char *tag);

/* Closes the engine and the pool on the loop, closes the loop, frees the
 * registry and drops the database. Returns 0 or -1. */
int nst_pt_teardown(void);

/* Every test starts from empty tables and feed: a cmocka setup. */
int nst_pt_test_setup(void **state);

/* nst_pt_check_feed after every test: a cmocka teardown. */
int nst_pt_test_teardown(void **state);

/* ---- the loop -------------------------------------------------------------------------- */

/* Runs the loop until *flag, failing the test after 30 seconds. */
void nst_pt_run_until(const bool *flag);

/* A close callback that sets the bool ud points to. */
void nst_pt_on_flag(void *ud);

/* ---- plain SQL on nst_pt.pgdb.pg ------------------------------------------------------- */

/* The first value of the first row of a query, in a rotating buffer that
 * lasts a few more queries; NULL for SQL NULL or no row. Fails the test if
 * the query fails. */
const char *nst_pt_q(const char *sql, int n, const char *const *params);

/* nst_pt_q as a number; fails the test if there is no value. */
long long nst_pt_qn(const char *sql, int n, const char *const *params);

#define NST_PT_NPARAMS(...) ((int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *)))
#define Q(sql, ...)         nst_pt_q(sql, NST_PT_NPARAMS(__VA_ARGS__), (const char *const[]){__VA_ARGS__})
#define QN(sql, ...)        nst_pt_qn(sql, NST_PT_NPARAMS(__VA_ARGS__), (const char *const[]){__VA_ARGS__})
#define QN0(sql)            nst_pt_qn(sql, 0, NULL)

/* Runs sql (no parameters, several statements allowed); fails the test if
 * it fails. */
void nst_pt_exec_ok(const char *sql);

/* ---- building pushes ------------------------------------------------------------------- */

/* One mutation and the memory it points to. A test may edit fpb after
 * nst_pt_pb_add to send what only the wire can carry. */
typedef struct {
    Napsync__V1__Mutation m;
    Napsync__V1__FieldSet fpb;
    ns_fieldset fs;
    char mid[80], type[40], rid[80];
} nst_pt_mut;

/* A Push message under construction; push is ready to send after each
 * nst_pt_pb_add. */
typedef struct {
    Napsync__V1__Push push;
    nst_pt_mut **h;
    Napsync__V1__Mutation **ptrs;
    size_t n, cap;
} nst_pt_pbuild;

void nst_pt_pb_init(nst_pt_pbuild *b);
void nst_pt_pb_free(nst_pt_pbuild *b);

/* Sets one field of fs from "name=value", "name" (null), or
 * "name:kind=value" (a value of that kind whatever the field's; kinds: bool
 * int decimal text date set ref): the value is parsed by the field's kind
 * in type, or as text for a field the type lacks. */
void nst_pt_put_spec(const char *type, ns_fieldset *fs, const char *spec);

/* Appends a mutation; specs is a NULL-terminated list of nst_pt_put_spec
 * specs (F(...)), or NULL for none. */
void nst_pt_pb_add(nst_pt_pbuild *b, const char *mid, const char *type, const char *rid, int op,
                   uint64_t base, const char *const *specs);

#define F(...)   ((const char *const[]){__VA_ARGS__, NULL})
#define NOFIELDS ((const char *const[]){NULL})

/* Specs that make a create valid under the domain model (wps.h): put them
 * first, and a test's own spec of the same field replaces one of them
 * (nst_pt_put_spec sets fields in order). A plan: title, kind, a draft, a
 * period (the engine adds the owner). */
#define NST_PT_PLAN                                                                                \
    "title=Plan", "kind=" NST_PLAN_KIND, "status=draft", "period_start=" NST_PLAN_START,           \
        "period_end=" NST_PLAN_END
/* An indicator of plan (a string literal): title and value type. */
#define NST_PT_INDICATOR(plan) "plan_id=" plan, "title=Indicator", "value_type=" NST_INDICATOR_TYPE
/* A draft report of indicator ind of plan (string literals) for the period
 * NST_REPORT_START..NST_REPORT_END. */
#define NST_PT_REPORT(plan, ind)                                                                   \
    "plan_id=" plan, "indicator_id=" ind, "period_start=" NST_REPORT_START,                        \
        "period_end=" NST_REPORT_END, "status=draft"

/* F() of a valid plan, indicator or report with the test's own specs. */
#define PLAN_F(...)              F(NST_PT_PLAN, __VA_ARGS__)
#define IND_F(plan, ...)         F(NST_PT_INDICATOR(plan), __VA_ARGS__)
#define REPORT_F(plan, ind, ...) F(NST_PT_REPORT(plan, ind), __VA_ARGS__)

/* A deterministic UUID from a tag and a number, in a rotating buffer of 16. */
const char *nst_pt_uid(unsigned tag, unsigned n);

#define MID(n) nst_pt_uid(0xee000000u, (n))

/* ---- running pushes -------------------------------------------------------------------- */

/* One MutationResult, copied out of the answer. */
typedef struct {
    char mutation_id[48];
    int outcome;
    uint64_t version;
    char conflicts[4][40];
    size_t nconflicts;
    int reject_code;
    char reason[300];
    char field[64]; /* reject_field */
} nst_pt_result;

/* The answer to a push: r (n results, owned, nst_pt_out_free) if
 * has_result, else code and msg. */
typedef struct {
    bool done;
    int calls;
    int code;
    char msg[300];
    bool has_result;
    nst_pt_result *r;
    size_t n;
} nst_pt_out;

/* The push callback that fills the nst_pt_out ud points to. */
void nst_pt_on_push(const Napsync__V1__PushResult *result, Napsync__V1__ErrorCode code,
                    const char *message, void *ud);

void nst_pt_out_free(nst_pt_out *o);

/* Submits b to engine s; the answer must not come inside the call. */
void nst_pt_submit(ns_sync *s, nst_pt_pbuild *b, const ns_identity_info *who, nst_pt_out *o);

/* Submits b to nst_pt.sync and runs the loop until it is answered, once. */
void nst_pt_run_push(nst_pt_pbuild *b, const ns_identity_info *who, nst_pt_out *o);

/* The push must have succeeded with n results. */
void nst_pt_results_ok(const nst_pt_out *o, size_t n);

/* Result i must have this outcome and version, with a reject code only if
 * rejected and conflict ids only if a conflict. */
void nst_pt_expect(const nst_pt_out *o, size_t i, int outcome, uint64_t version);

/* One mutation, one push, its one result in o (nst_pt_out_free it). */
void nst_pt_push1(const ns_identity_info *who, const char *mid, const char *type, const char *rid,
                  int op, uint64_t base, const char *const *specs, nst_pt_out *o);

/* nst_pt_push1, whose result must have this outcome and version. */
void nst_pt_apply1(const ns_identity_info *who, const char *mid, const char *type, const char *rid,
                   int op, uint64_t base, const char *const *specs, int outcome, uint64_t version);

/* ---- the database as the engine left it ------------------------------------------------ */

/* A column of plan id, as text (nst_pt_q's buffer). */
const char *nst_pt_plan_field(const char *id, const char *column);

/* A column expression of revision version of record id, as text. */
const char *nst_pt_rev(const char *id, const char *version, const char *expr);

/* How many stored answers mutation mid has. */
long long nst_pt_stored_count(const char *mid);

/* The invariants every test ends with: the feed contiguous from 1 and at
 * its head, one feed row per revision and no other, a record's versions in
 * feed order, and every record at the version of its last revision. */
void nst_pt_check_feed(void);

#endif
