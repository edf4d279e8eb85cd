/* The benchmark suite's smoke run, so that the suite cannot rot: it runs
 * tests/bench/run.sh --smoke on this build tree (its own PostgreSQL,
 * napsyncd, napsync-loadgen, pgbench, psql), which fails unless all the
 * work of every figure was done and checked: every pushed mutation
 * answered APPLIED and found once in the database with its feed entry and
 * its stored answer, every pgbench transaction committed and counted,
 * every backlog record received by a fresh device (streamed, and synced
 * into its store), the COPY baseline's rows counted, every write delivered
 * once to every watching device, every session up and resumed, every
 * queued change of the storm applied once, the peer's records pushed,
 * pulled and written live by napsync and by PouchDB (PouchDB only when the
 * npm packages of tests/fieldlink/peer are installed or can be: run.sh
 * tries `npm ci`, and needs Node.js). Then the report must
 * hold a row, with a figure in every cell, for each of them. Nothing about
 * speed is asserted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* The smoke sizes of run.sh: clients 1 and 4, batches 1 and 10, one
 * backlog of 300 changes, 5 watching devices spread over 2 load generator
 * processes, 24 sessions, a storm of 6 device stores. */
static const char *const push_rows[] = {"| 1 | 1 |", "| 1 | 10 |", "| 4 | 1 |", "| 4 | 10 |"};
static const char catchup_row[] = "| 300 |";
static const char fanout_row[] = "| 5 | 2 |";
static const char conns_row[] = "| 24 |";
static const char storm_row[] = "| 6 |";
/* The peer (200 reports: 261 records; 5 live writes). Without PouchDB's
 * npm packages its columns say "not run", which these checks accept. */
static const char *const peer_rows[] = {"| push 200 |", "| pull 200 |", "| p50 |", "| p99 |"};
static const int peer_counts[] = {1, 2, 1, 1};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(buf, cap);
            if (p == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* The report's lines starting with prefix (each a table row): there must
 * be `want` of them, and none with an empty cell or a "-" where a figure
 * belongs. */
static void expect_rows(const char *report, const char *prefix, int want)
{
    int found = 0;
    for (const char *line = report; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            char row[2048];
            snprintf(row, sizeof(row), "%.*s", (int)len, line);
            if (strstr(row, "|  |") || strstr(row, "| - |") || strstr(row, "| -1"))
                fail_msg("a figure is missing in the report's row: %s", row);
            found++;
        }
        line = end ? end + 1 : NULL;
    }
    if (found != want)
        fail_msg("the report has %d rows starting with \"%s\", expected %d", found, prefix, want);
}

static void bench_smoke(void **state)
{
    (void)state;
    const char *src = getenv("NS_SOURCE_DIR");
    const char *build = getenv("NS_BUILD_DIR");
    assert_non_null(src);
    assert_non_null(build);

    char dir[] = "/tmp/nst-bench-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char script[NST_PATH], work[NST_PATH], report[NST_PATH];
    assert_int_equal(nst_path_join(script, src, "tests/bench/run.sh"), 0);
    assert_int_equal(nst_path_join(work, dir, "work"), 0);
    assert_int_equal(nst_path_join(report, dir, "report.md"), 0);

    char *argv[] = {"/bin/bash", script, "--smoke", "--build", (char *)build,
                    "--workdir", work,   "--out",   report,    NULL};
    int rc = nst_run(argv, NULL, 0);
    char *text = slurp(report);
    if (rc != 0 || text == NULL) {
        fprintf(stderr, "run.sh --smoke exited %d; its files are kept in %s\n", rc, dir);
        free(text);
        fail_msg("the benchmark suite's smoke run failed");
    }
    assert_non_null(strstr(text, "--smoke"));
    for (size_t i = 0; i < sizeof(push_rows) / sizeof(push_rows[0]); i++)
        /* Once in the throughput table, once in the CPU table. */
        expect_rows(text, push_rows[i], 2);
    /* The catch-up table, and the streamed and synced fetches. */
    expect_rows(text, catchup_row, 3);
    expect_rows(text, fanout_row, 1);
    /* Full and resumed handshakes, then the ratio and the memory. */
    expect_rows(text, conns_row, 3);
    expect_rows(text, storm_row, 1);
    /* Push and pull in the figure's table, pull once more in the CPU table. */
    for (size_t i = 0; i < sizeof(peer_rows) / sizeof(peer_rows[0]); i++)
        expect_rows(text, peer_rows[i], peer_counts[i]);
    free(text);
    nst_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bench_smoke),
    };
    return cmocka_run_group_tests_name("bench_smoke", tests, NULL, NULL);
}
