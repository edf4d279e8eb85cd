/* What the libFuzzer targets of tests/fuzz share: dying loudly (a harness
 * failure is a crash libFuzzer reports, with the input that caused it),
 * temporary directories removed at exit, the test CA (deploy/ca.sh), a
 * frame script read from the fuzzer's bytes, and bounded waits on a uv
 * loop.
 *
 * Frame scripts: the session and client targets read their input as frames
 * in the wire format, a 4-byte big-endian length then the payload; a
 * length past the end of the input takes what is left, so every input is
 * a valid script. */
#ifndef NSF_FIXTURE_H
#define NSF_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NSF_PATH 512

/* Prints "fuzz: ..." on stderr and aborts. */
void nsf_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The checkout: NS_SOURCE_DIR, else the one this program was built from. */
const char *nsf_source_dir(void);

/* Creates a temporary directory (mode 0700) named after tag into out and
 * removes it, with what it holds, when the program exits normally. */
void nsf_tmpdir(char out[NSF_PATH], const char *tag);

/* Runs argv[0] (a path) with argv, stdout into out (NUL terminated,
 * truncated to cap), stderr inherited; dies unless it exits 0. */
void nsf_run(char *const argv[], char *out, size_t cap);

/* A CA in dir (deploy/ca.sh): the server certificate for 127.0.0.1 and one
 * device certificate, with the device's fingerprint as the daemon
 * computes it. */
typedef struct {
    char ca[NSF_PATH];
    char server_cert[NSF_PATH];
    char server_key[NSF_PATH];
    char device_cert[NSF_PATH];
    char device_key[NSF_PATH];
    char device_fp[65];
} nsf_pki;
void nsf_pki_make(nsf_pki *p, const char *dir, const char *device);
/* Another device certificate from the CA in dir. */
void nsf_pki_device(const char *dir, const char *device, char cert[NSF_PATH], char key[NSF_PATH],
                    char fp[65]);

/* The next frame of a script: its payload points into *data. Returns
 * false at the end of the input. */
bool nsf_next_frame(const uint8_t **data, size_t *size, const uint8_t **payload, size_t *len);

/* Placeholders that the harnesses replace, byte for byte, with ids they
 * only learn at run time (a conflict's id, the mutation ids the client
 * draws at random): as long as a UUID, so that replacing one changes no
 * length in a protobuf message. */
#define NSF_TOKEN_LEN 36
/* Replaces every occurrence of token (NSF_TOKEN_LEN bytes) in buf with
 * value (NSF_TOKEN_LEN bytes). */
void nsf_replace(uint8_t *buf, size_t len, const char *token, const char *value);

/* Bounded waits on a loop: one timer, made once per loop. */
typedef struct {
    uv_loop_t *loop;
    uv_timer_t timer;
    bool expired;
} nsf_waiter;
typedef bool (*nsf_pred)(void *ud);
void nsf_waiter_init(nsf_waiter *w, uv_loop_t *loop);
/* Runs the loop until pred(ud) holds; dies naming what if it does not
 * within timeout_ms. */
void nsf_wait(nsf_waiter *w, nsf_pred pred, void *ud, uint64_t timeout_ms, const char *what);
/* Closes the timer (run the loop afterwards to finish closing it). */
void nsf_waiter_close(nsf_waiter *w);

#endif
