/* Integration test harness: a real napsyncd on loopback, with its own
 * temporary directory, certificate authorities, PostgreSQL database and
 * port, so that test programs can run side by side (ctest -j).
 *
 * Conventions:
 *  - nst_* functions that return int give 0 on success and -1 on failure,
 *    after printing why to stderr; the daemon's log tail is printed too when
 *    the daemon is involved.
 *  - nst_must_* and nst_expect_* functions fail the running cmocka test
 *    instead of returning an error (they may only be called inside a test).
 *  - Waits are always bounded; nothing asserts how long something took. */
#ifndef NST_HARNESS_H
#define NST_HARNESS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "envelope.h"
#include "napsync.h"
#include "wps.h"

#define NST_PATH 512
/* Upper bound for anything the daemon is expected to do promptly. Generous
 * because sanitizer builds on a loaded machine are slow; never a measurement. */
#define NST_WAIT_MS 15000
/* How long a daemon may take to drain its sessions and exit on SIGTERM. */
#define NST_STOP_MS 30000

/* ---- processes and files --------------------------------------------------- */

/* Runs argv[0] (a path) with argv, waits for it. stdout goes to out (NUL
 * terminated, truncated to cap) when out is not NULL, else to /dev/null;
 * stderr is inherited. Returns the exit status (0-255) or -1. */
int nst_run(char *const argv[], char *out, size_t cap);
/* nst_run with stdout and stderr both into out (required), in a new session
 * without a controlling terminal: a program that would prompt there fails
 * instead of waiting for a person. */
int nst_run_no_tty(char *const argv[], char *out, size_t cap);
/* Starts argv without waiting; stdout and stderr go to log_path (appended)
 * or are inherited when log_path is NULL. Returns the pid or -1. */
pid_t nst_spawn(char *const argv[], const char *log_path);
/* Waits up to timeout_ms for pid. Returns 0 with *status (exit code, or 128 +
 * signal), or -1 on timeout (pid still running). */
int nst_wait_pid(pid_t pid, int timeout_ms, int *status);

/* a/b into out (NST_PATH bytes). Returns 0, or -1 if it does not fit. */
int nst_path_join(char *out, const char *a, const char *b);
/* Removes a directory tree (symbolic links are not followed). */
void nst_rmtree(const char *dir);

uint64_t nst_now_ms(void);
void nst_sleep_ms(int ms);

/* A TCP port on 127.0.0.1 that nothing listened on a moment ago. */
uint16_t nst_free_port(void);

/* ---- PostgreSQL ----------------------------------------------------------- */

typedef struct {
    char host[NST_PATH]; /* socket directory or address */
    char port[16];
    char user[64];
    char dir[NST_PATH]; /* a private cluster's directory; "" for the shared one */
} nst_pg;

/* The shared test cluster from NS_TEST_PGHOST/PGPORT/PGUSER. */
int nst_pg_from_env(nst_pg *pg);
/* A private cluster in dir (tests/lib/pg.sh start). */
int nst_pg_private_start(nst_pg *pg, const char *dir);
/* tests/lib/pg.sh ACTION DIR for a private cluster: "start", "stop",
 * "restart". Blocking. */
int nst_pg_ctl(const nst_pg *pg, const char *action);
/* The same without waiting: returns the pid of pg.sh, or -1. */
pid_t nst_pg_ctl_async(const nst_pg *pg, const char *action, const char *log_path);

/* ---- certificates ----------------------------------------------------------- */

typedef struct {
    char name[72];
    char cert[NST_PATH];
    char key[NST_PATH];
    char fp[65]; /* SHA-256 of the DER certificate, lowercase hex */
} nst_device;

/* ---- the environment: directory, CAs, database, daemon ------------------------ */

typedef struct {
    char name[32];              /* the test program, for names and messages */
    char dir[NST_PATH];         /* temporary directory, removed by nst_env_free */
    char ca_dir[NST_PATH];      /* the CA the daemon trusts */
    char foreign_dir[NST_PATH]; /* another CA, trusted by nobody */
    char ca_cert[NST_PATH];
    char foreign_ca_cert[NST_PATH];
    char server_cert[NST_PATH]; /* the files the daemon is given */
    char server_key[NST_PATH];
    char log_path[NST_PATH]; /* daemon stdout and stderr */
    char napsyncd[NST_PATH];
    char napsync[NST_PATH]; /* the CLI, for nst_cli */
    char source_dir[NST_PATH];
    nst_pg pg;
    char dbname[64];
    bool db_created;
    bool demo_loaded;
    uint16_t port;
    pid_t pid;        /* the daemon, 0 when none is running */
    int exit_status;  /* of the last daemon that exited, or -1 */
    bool test_passed; /* see nst_test_begin/nst_test_passed */
    bool peer;        /* made by nst_env_peer: owns neither directory nor database */
} nst_env;

/* Creates the directory, both CAs, the server certificate and the database
 * on pg (NULL: the shared cluster). Returns NULL after printing why. */
nst_env *nst_env_new(const char *name, const nst_pg *pg);
/* Stops a daemon still running (SIGTERM, so that a sanitizer build's
 * LeakSanitizer runs; SIGKILL when it has not exited 5 s later), drops the
 * database, removes the directory (kept when NST_KEEP is set in the
 * environment). */
void nst_env_free(nst_env *e);
/* Another napsyncd on the same files and database as e, for tests of several
 * instances: a new environment that shares e's directory, CAs, certificates
 * and database, with its own port, process and log (napsyncd-NAME.log in
 * e's directory). Devices issued and registered through e are valid on it.
 * e's daemon must have started once (the demo data is loaded). Freeing the
 * peer (nst_env_free, nst_env_close) stops only its own daemon; free it
 * before e. Returns NULL after printing why. */
nst_env *nst_env_peer(const nst_env *e, const char *name);
/* For a group teardown: a daemon still running is stopped with SIGTERM and
 * must exit 0 within NST_STOP_MS; then nst_env_free. Returns 0, or -1 when
 * the daemon did not stop cleanly (a sanitizer build's report included);
 * then the program also exits 1 once main returns, whatever cmocka counted
 * (it leaves a failed group teardown out). e may be NULL. */
int nst_env_close(nst_env *e);

/* Issues a device certificate from the daemon's CA, or from the foreign CA. */
int nst_device_issue(nst_env *e, bool foreign, const char *name, nst_device *out);
/* Registers a device of organisation org_code for principal, with role. */
int nst_device_register(nst_env *e, const char *org_code, const char *principal, const char *role,
                        const nst_device *d);
int nst_device_revoke(nst_env *e, const char *device_name);
/* Issues a server certificate named name (same SANs as the first) in the CA
 * directory and returns its paths; the daemon's files are not touched. */
int nst_server_cert_issue(nst_env *e, const char *name, char *cert, char *key);
/* Replaces the daemon's certificate and key files (each by rename). */
int nst_server_cert_install(nst_env *e, const char *cert, const char *key);
/* SHA-256 of a PEM certificate file, lowercase hex. */
int nst_cert_fingerprint(const char *cert_file, char fp[65]);

/* Runs one SQL command with text parameters on the test database. When
 * value is not NULL, the first column of the first row is copied there. */
int nst_db_exec(nst_env *e, const char *sql, int nparams, const char *const *params, char *value,
                size_t cap);
/* A libpq connection string for e's cluster: host, port, dbname and user,
 * each quoted as libpq expects, into out (truncated to cap). */
void nst_conninfo(const nst_env *e, const char *user, const char *dbname, char *out, size_t cap);

/* Starts napsyncd on a fresh port with the test's files and database, plus
 * extra flags (NULL terminated list, may be NULL), and waits until it
 * accepts TCP connections. The first start also loads deploy/demo.sql. */
int nst_daemon_start(nst_env *e, const char *const *extra);
bool nst_daemon_running(nst_env *e);
int nst_daemon_signal(nst_env *e, int sig);
/* Waits up to timeout_ms for the daemon to exit; *status as nst_wait_pid. */
int nst_daemon_wait_exit(nst_env *e, int timeout_ms, int *status);
/* Sends sig and waits up to timeout_ms. Returns the exit status (0-255, or
 * 128 + signal), or -1 when it was not running or had to be killed with
 * SIGKILL; anything but 0 prints the log tail. */
int nst_daemon_stop(nst_env *e, int sig, int timeout_ms);

/* Prints the last lines of the daemon log to stderr. */
void nst_log_tail(const nst_env *e, int lines);
/* Bytes in the log so far, and waiting for a string to appear after a given
 * offset: 0 when it did within timeout_ms, else -1. */
size_t nst_log_size(const nst_env *e);
int nst_log_wait(const nst_env *e, size_t from, const char *needle, int timeout_ms);
/* Whether a line holds all of the given strings (NULL terminated). */
bool nst_log_has_line(const nst_env *e, const char *const *needles);

/* Per-test bookkeeping: a test calls nst_test_passed as its last statement;
 * nst_test_end (from the teardown) prints the daemon log tail for a test that
 * did not get there, i.e. one that failed. */
void nst_test_begin(nst_env *e);
void nst_test_passed(nst_env *e);
void nst_test_end(nst_env *e);

/* cmocka setup and teardown for programs that keep one daemon for the whole
 * group. Their group state is the program's own fixture struct, whose first
 * member is `nst_env *e`; NST_FIXTURE_CHECK(type) makes the compiler hold
 * the program to that. nst_setup calls nst_test_begin. nst_teardown calls
 * nst_test_end and then fails when the daemon is no longer running, since
 * every test must leave it serving the next. */
#define NST_FIXTURE_CHECK(type)                                                                    \
    _Static_assert(offsetof(type, e) == 0, #type ": nst_setup and nst_teardown expect "            \
                                                 "nst_env *e as the first member")
int nst_setup(void **state);
int nst_teardown(void **state);
/* A cmocka test entry with that setup and teardown. */
#define NST_TEST(fn) cmocka_unit_test_setup_teardown(fn, nst_setup, nst_teardown)

/* A device of a group's fixture, for nst_group_start: its certificate
 * from the daemon's CA; its registration for principal of org with role
 * (none when org is NULL); the path of its store, file in the test's
 * directory, written to store (NST_PATH bytes; none when store is NULL). */
typedef struct {
    nst_device *dev;
    const char *name;
    const char *org;
    const char *principal;
    const char *role;
    char *store;
    const char *file;
} nst_member;

#define NST_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* For a group setup: a zeroed fixture of size bytes in *state, laid out as
 * NST_FIXTURE_CHECK demands; nst_group_teardown frees it. Returns it, or
 * NULL. */
void *nst_fixture_new(void **state, size_t size);
/* What most group setups do, in this order: *e = nst_env_new(name, NULL),
 * every member's certificate, nst_daemon_start(*e, extra), every
 * registration, every store path. Returns 0, or -1 after printing why;
 * *e is set as soon as it exists, for the teardown. */
int nst_group_start(nst_env **e, const char *name, const char *const *extra,
                    const nst_member *members, size_t n);
/* The group teardown of a fixture from nst_fixture_new (may be NULL):
 * nst_env_close, then free. A teardown with more to release does that
 * first and returns this. */
int nst_group_teardown(void **state);

/* Fails the running test with a message naming the daemon log (whose tail
 * nst_test_end prints). */
void nst_fail(const nst_env *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* ---- libnapsync clients ------------------------------------------------------------ */

/* Options for the daemon of e; server points into buf. */
void nst_client_options(const nst_env *e, const char *cert, const char *key, const char *ca,
                        ns_client_options *o, char *buf, size_t cap);
/* New client (its own loop) that connects and says Hello. On NS_OK *out is
 * connected; otherwise *out is NULL, err says why and the status is returned. */
int nst_client_connect(const nst_env *e, const char *cert, const char *key, const char *ca,
                       ns_client **out, ns_error *err);
/* Connects a registered device; fails the test otherwise. */
ns_client *nst_must_connect(const nst_env *e, const nst_device *d);
/* One ping; fails the test if it does not succeed. */
void nst_must_ping(const nst_env *e, ns_client *c);
void nst_client_close(ns_client *c);

/* ---- records the domain model accepts (wps.h) ----------------------------------------- */

/* napsync put (and ns_client_put) assignments that, with a title and a
 * status (draft, adopted, archived: the test's to choose, since a draft is
 * readable only by its own organisation), make a plan the server accepts;
 * the owner is the pusher's organisation. With a plan_id and a title,
 * NST_INDICATOR_ASSIGN makes an indicator. Kinds are explicit: the client
 * guesses none for a new record. */
#define NST_PLAN_ASSIGN                                                                            \
    "kind:text=" NST_PLAN_KIND, "period_start:date=" NST_PLAN_START, "period_end:date=" NST_PLAN_END
#define NST_INDICATOR_ASSIGN "value_type:text=" NST_INDICATOR_TYPE

/* A plan's fields on the wire, for tests that build Push frames
 * themselves: a title and a status (the caller's) and NST_PLAN_ASSIGN's. */
#define NST_PLAN_PB_FIELDS 5
typedef struct {
    Napsync__V1__Value values[NST_PLAN_PB_FIELDS];
    Napsync__V1__Field fields[NST_PLAN_PB_FIELDS];
    Napsync__V1__Field *ptrs[NST_PLAN_PB_FIELDS];
    Napsync__V1__FieldSet set; /* for Mutation.fields */
} nst_plan_pb;
/* Fills p. p->set points into p and at title and status, which must
 * outlive it; nothing is allocated. */
void nst_plan_pb_init(nst_plan_pb *p, const char *title, const char *status);

/* ---- the napsync CLI ---------------------------------------------------------------- */

/* Runs `napsync --server (e's daemon) --ca (e's CA) --cert --key (of d)
 * --store STORE FIRST ARGS...` (the arguments after first are in ap, NULL
 * terminated; at most 48 in all) and waits for it. Its stdout goes to out
 * (NUL terminated, truncated to cap; stderr is inherited). Returns the exit
 * status (0-255), or -1 when it could not be run or took too many arguments. */
int nst_cli_v(const nst_env *e, const nst_device *d, const char *store, char *out, size_t cap,
              const char *first, va_list ap);
/* nst_cli_v with the arguments after first given directly, ending in NULL. */
int nst_cli(const nst_env *e, const nst_device *d, const char *store, char *out, size_t cap,
            const char *first, ...) __attribute__((sentinel));

/* The value of "key":"..." in a JSON text (the value holds no escapes): the
 * first such pair, into val. Fails the test when there is none or it does
 * not fit in cap bytes with its NUL. */
void nst_json_get(const char *json, const char *key, char *val, size_t cap);
/* Newlines in s. */
int nst_count_lines(const char *s);

/* ---- raw TLS client, for hostile and low-level tests ---------------------------------- */

typedef struct {
    const char *cert; /* both NULL: no client certificate */
    const char *key;
    const char *ca;  /* NULL: do not verify the server */
    int min_version; /* TLS1_VERSION...; 0 = OpenSSL default */
    int max_version;
    bool legacy; /* security level 0 and every cipher: to offer old protocols */
} nst_raw_opts;

typedef struct {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    uint8_t *buf; /* received plaintext not yet returned as frames */
    size_t len, cap;
    int hello_version;  /* legacy_version of the ClientHello we sent, or 0 */
    int alert_received; /* description of the last alert from the server, or -1 */
    char peer_fp[65];   /* SHA-256 of the server certificate, after connect */
    /* How the session ended, once nst_raw_read returned NST_READ_CLOSED:
     * SSL_ERROR_ZERO_RETURN for close_notify, else SSL_ERROR_SYSCALL or
     * SSL_ERROR_SSL with the errno of the failed read (ECONNRESET, ...). */
    int closed_ssl_error;
    int closed_errno;
    char error[512];
} nst_raw;

typedef enum {
    NST_READ_FRAME = 0,
    NST_READ_CLOSED = 1,  /* close_notify, EOF, reset or a fatal alert */
    NST_READ_TIMEOUT = 2, /* nothing whole arrived in time */
    NST_READ_ERROR = 3,   /* a frame that is not an Envelope, or a local failure */
} nst_read_status;

/* TCP connect to 127.0.0.1:port and TLS handshake. Returns 0, or -1 with
 * r->error (and r->alert_received, r->hello_version) telling what happened;
 * r holds nothing to free then, but nst_raw_close is harmless. */
int nst_raw_connect(nst_raw *r, uint16_t port, const nst_raw_opts *o);
void nst_raw_close(nst_raw *r);
/* Closes the socket without TLS close_notify. */
void nst_raw_abort(nst_raw *r);
/* TLS connect with a device's certificate, trusting the daemon's CA; no
 * Hello yet. Fails the test otherwise. */
void nst_must_raw_tls(const nst_env *e, nst_raw *r, const nst_device *d);

int nst_raw_write(nst_raw *r, const void *buf, size_t len);
/* nst_raw_write that fails the test when the write fails. */
void nst_must_raw_write(const nst_env *e, nst_raw *r, const void *buf, size_t len);
/* Appends one frame (header + payload) to a growing buffer. */
int nst_frame_append(uint8_t **buf, size_t *len, const void *payload, size_t plen);
int nst_frame_append_env(uint8_t **buf, size_t *len, const ns_envelope *env);
int nst_frame_append_hello(uint8_t **buf, size_t *len, uint64_t rid, uint32_t minv, uint32_t maxv);
int nst_frame_append_ping(uint8_t **buf, size_t *len, uint64_t rid, const void *payload,
                          size_t plen);
int nst_raw_send_env(nst_raw *r, const ns_envelope *env);
int nst_raw_send_hello(nst_raw *r, uint64_t rid, uint32_t minv, uint32_t maxv);
int nst_raw_send_ping(nst_raw *r, uint64_t rid, const void *payload, size_t plen);

/* Reads the next frame within timeout_ms. On NST_READ_FRAME *out is an
 * envelope owned by the caller (ns_envelope_free). */
nst_read_status nst_raw_read(nst_raw *r, int timeout_ms, ns_envelope **out);

/* The next frame must arrive within NST_WAIT_MS with this body; returns it
 * (caller frees). An Error received instead is shown in the failure. */
ns_envelope *nst_expect_frame(const nst_env *e, nst_raw *r, Napsync__V1__Envelope__BodyCase body);
/* The next frame must be Error{code} with this request id and fatal flag. */
void nst_expect_error(const nst_env *e, nst_raw *r, uint64_t rid, int code, bool fatal);
/* A fatal Error{code} for request rid, and then the server must close the
 * session (nst_expect_closed). r itself is left for the caller to close. */
void nst_expect_fatal_error(const nst_env *e, nst_raw *r, uint64_t rid, int code);
/* The server must close the connection (no further frame) within NST_WAIT_MS. */
void nst_expect_closed(const nst_env *e, nst_raw *r);
/* As nst_expect_closed, and the close must be TLS close_notify: not a TCP
 * reset, a bare EOF or an alert. */
void nst_expect_close_notify(const nst_env *e, nst_raw *r);
/* The next frame must be the Welcome for request rid, naming device d. */
void nst_expect_welcome(const nst_env *e, nst_raw *r, uint64_t rid, const nst_device *d);
/* TLS connect with a device, Hello (request id rid), Welcome. */
void nst_must_raw_auth(const nst_env *e, nst_raw *r, const nst_device *d, uint64_t rid);
/* The next frame must be a Pong for request rid that echoes payload. */
void nst_expect_pong(const nst_env *e, nst_raw *r, uint64_t rid, const void *payload, size_t plen);
/* Ping with a payload; the Pong must echo rid and payload. */
void nst_must_raw_ping(const nst_env *e, nst_raw *r, uint64_t rid);

/* ---- TCP sockets on loopback, as the kernel sees them (/proc/net/tcp) ---------- */

/* For the established IPv4 socket from local_port to remote_port: 0 with
 * *due_s, the seconds until its TCP keepalive timer fires, once one shows
 * (a retransmission timer hides it while data is unacknowledged; waits up to
 * timeout_ms for that to pass). -1 when the socket keeps no keepalive timer
 * or does not exist. */
int nst_tcp_keepalive_due(uint16_t local_port, uint16_t remote_port, int timeout_ms, int *due_s);
/* Local ports of this process's established TCP sockets to remote_port:
 * how many were found (at most max are stored), or -1. */
int nst_own_tcp_ports(uint16_t remote_port, uint16_t *ports, int max);

/* Plain TCP. Returns a connected blocking fd, or -1. */
int nst_tcp_connect(uint16_t port);
/* Reads and discards until EOF or reset: 0, or -1 if still open after timeout_ms. */
int nst_fd_wait_closed(int fd, int timeout_ms);

#endif
