/* napsyncd's log lines (daemon/log.h): the plain format with timestamps,
 * the journal format (syslog priority prefix, no timestamp), and when
 * stderr counts as the journal (JOURNAL_STREAM naming its device and inode). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

typedef struct {
    int saved_stderr; /* the real stderr, restored by the teardown */
    char path[64];    /* the file stderr points at during a test */
} fixture;

/* stderr into a temporary file for the test; the logger writes there. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "/tmp/ns_test_log_XXXXXX");
    int fd = mkstemp(f->path);
    if (fd < 0) {
        free(f);
        return -1;
    }
    fflush(stderr);
    f->saved_stderr = dup(STDERR_FILENO);
    if (f->saved_stderr < 0 || dup2(fd, STDERR_FILENO) < 0) {
        close(fd);
        unlink(f->path);
        free(f);
        return -1;
    }
    close(fd);
    unsetenv("JOURNAL_STREAM");
    ns_log_set_journal(false);
    ns_log_set_level(NS_LOG_INFO);
    *state = f;
    return 0;
}

/* Puts stderr back and shows what went to the file: cmocka wrote there
 * too, so a failure's message is not lost. */
static int teardown(void **state)
{
    fixture *f = *state;
    fflush(stderr);
    dup2(f->saved_stderr, STDERR_FILENO);
    close(f->saved_stderr);
    FILE *in = fopen(f->path, "r");
    if (in) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            fwrite(buf, 1, n, stderr);
        fclose(in);
    }
    unlink(f->path);
    unsetenv("JOURNAL_STREAM");
    ns_log_set_journal(false);
    ns_log_set_level(NS_LOG_INFO);
    free(f);
    return 0;
}

/* Everything logged so far (NUL terminated, in out). */
static void logged(const fixture *f, char *out, size_t cap)
{
    fflush(stderr);
    FILE *in = fopen(f->path, "r");
    assert_non_null(in);
    size_t n = fread(out, 1, cap - 1, in);
    fclose(in);
    out[n] = '\0';
}

static void set_journal_stream(dev_t dev, ino_t ino)
{
    char v[64];
    snprintf(v, sizeof(v), "%ju:%ju", (uintmax_t)dev, (uintmax_t)ino);
    assert_int_equal(setenv("JOURNAL_STREAM", v, 1), 0);
}

static void test_plain_format_has_timestamps(void **state)
{
    fixture *f = *state;
    ns_log(NS_LOG_WARN, "7f3a", "Amina \"A\" Diallo", "disk %d%% full", 91);
    char out[1024];
    logged(f, out, sizeof(out));
    /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ, then the fields. */
    assert_int_equal(strncmp(out, "ts=", 3), 0);
    assert_true(strlen(out) > 28);
    assert_int_equal(out[7], '-');
    assert_int_equal(out[13], 'T');
    assert_int_equal(out[26], 'Z');
    assert_string_equal(out + 27, " level=warn session=7f3a principal=\"Amina \\\"A\\\" Diallo\" "
                                  "msg=\"disk 91% full\"\n");
}

static void test_journal_format_has_priorities_and_no_timestamps(void **state)
{
    fixture *f = *state;
    ns_log_set_journal(true);
    ns_log_set_level(NS_LOG_DEBUG);
    ns_log(NS_LOG_DEBUG, "s1", NULL, "step");
    ns_log_info("ready");
    ns_log_warn("database unreachable");
    ns_log_error("migrations failed");
    char out[1024];
    logged(f, out, sizeof(out));
    assert_string_equal(out, "<7>level=debug session=s1 msg=\"step\"\n"
                             "<6>level=info msg=\"ready\"\n"
                             "<4>level=warn msg=\"database unreachable\"\n"
                             "<3>level=error msg=\"migrations failed\"\n");
}

/* A message cannot forge a second entry, or its own priority, in the
 * journal: the line ends only where the logger ends it. */
static void test_journal_entry_cannot_be_forged(void **state)
{
    fixture *f = *state;
    ns_log_set_journal(true);
    ns_log(NS_LOG_INFO, NULL, "x\n<3>level=error", "a\n<0>panic\r");
    char out[1024];
    logged(f, out, sizeof(out));
    assert_string_equal(out, "<6>level=info principal=\"x\\n<3>level=error\" "
                             "msg=\"a\\n<0>panic\\x0d\"\n");
}

static void test_journal_format_keeps_the_level_filter(void **state)
{
    fixture *f = *state;
    ns_log_set_journal(true);
    ns_log_set_level(NS_LOG_WARN);
    ns_log_info("hidden");
    ns_log_error("shown");
    char out[256];
    logged(f, out, sizeof(out));
    assert_string_equal(out, "<3>level=error msg=\"shown\"\n");
}

static void test_stderr_is_journal_when_the_stream_matches(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    set_journal_stream(st.st_dev, st.st_ino);
    assert_true(ns_log_stderr_is_journal());
}

/* systemd set JOURNAL_STREAM for another stream: stderr was redirected
 * since (by a shell, or for a child), so the journal is not listening. */
static void test_stderr_is_not_journal_for_another_stream(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    set_journal_stream(st.st_dev, st.st_ino + 1);
    assert_false(ns_log_stderr_is_journal());
    set_journal_stream(st.st_dev + 1, st.st_ino);
    assert_false(ns_log_stderr_is_journal());
    assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
    assert_false(ns_log_stderr_is_journal());
}

static void test_malformed_journal_stream_is_ignored(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    char good[64];
    snprintf(good, sizeof(good), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
    char with_space[80], with_tail[80], with_sign[80];
    snprintf(with_space, sizeof(with_space), " %s", good);
    snprintf(with_tail, sizeof(with_tail), "%sx", good);
    snprintf(with_sign, sizeof(with_sign), "+%s", good);
    const char *bad[] = {"",    ":",     "12",       "12:",     ":34",
                         "a:b", "1:2:3", with_space, with_tail, with_sign};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(setenv("JOURNAL_STREAM", bad[i], 1), 0);
        if (ns_log_stderr_is_journal())
            fail_msg("JOURNAL_STREAM=\"%s\" taken for the journal", bad[i]);
    }
    assert_int_equal(setenv("JOURNAL_STREAM", good, 1), 0);
    assert_true(ns_log_stderr_is_journal());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_format_has_timestamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_format_has_priorities_and_no_timestamps, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_journal_entry_cannot_be_forged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_format_keeps_the_level_filter, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stderr_is_journal_when_the_stream_matches, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stderr_is_not_journal_for_another_stream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_malformed_journal_stream_is_ignored, setup, teardown),
    };
    return cmocka_run_group_tests_name("unit: log", tests, NULL, NULL);
}
