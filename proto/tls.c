#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* TLS 1.2 suites: forward secret AEAD only: ECDHE key exchange (no static
 * RSA, whose recorded traffic a stolen server key decrypts; no finite-field
 * DHE) with AES-GCM or ChaCha20-Poly1305 (no CBC, whose MAC-then-encrypt
 * gave padding oracles). */
#define NS_TLS12_CIPHERS                                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* TLS 1.3 suites, named rather than left to the system's openssl.cnf: the
 * three AEADs with full-length tags (not AES-CCM-8). TLS 1.3 key exchange
 * is always ephemeral here (see SSL_OP_ALLOW_NO_DHE_KEX below). */
#define NS_TLS13_CIPHERS                                                                           \
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
/* Key exchange groups: elliptic curves only. Finite-field groups cost the
 * server far more per handshake, which an anonymous client could exploit. */
#define NS_TLS_GROUPS "X25519:P-256:P-384:X448:P-521"
/* OpenSSL's level 2: keys of at least 112 bits of security, no SHA-1
 * signatures. A system configuration asking for more is kept. */
#define NS_TLS_MIN_SECURITY_LEVEL 2

/* How long a server's session tickets may be used to resume: a device that
 * syncs once a day still resumes. What a resumed session skips is the
 * certificate exchange only: napsyncd looks the device up by its
 * fingerprint on every session (a revoked device is refused), a session
 * whose certificate has expired meanwhile is not resumed (store_get), and
 * a certificate reload (new context, new session store) voids every ticket
 * issued before it. */
#define NS_TLS_TICKET_LIFETIME_S (24 * 60 * 60)
/* Tickets a server issues after a full handshake, and after a resumption:
 * one. A client keeps the last one it got (libnapsync does), and each is
 * good for one resumption only (store_get), so a second would only take a
 * place in the server's store. */
#define NS_TLS_TICKETS 1
/* Server: sessions kept for resumption (TLS 1.3 stateful tickets, see
 * store_new) unless ns_tls_ctx_set_session_store_max says otherwise: at
 * most this many, the oldest dropped first. Each holds about 1.1 KiB, and
 * the decoded client certificate (about 4.7 KiB for a P-256 device
 * certificate) which it shares with its connection while that is open:
 * about 95 MiB when full of sessions whose connections have closed
 * (docs/benchmarks.md, "Connections"). A little over the daemon's default
 * max_sessions (10,000), as a power of two. A client whose session was
 * dropped makes a full handshake. */
#define NS_TLS_SERVER_SESSIONS_MAX 16384
/* Client: sessions kept decoded next to their bytes (client_ring), so that
 * offering one again costs no decoding: the last two handed out. */
#define NS_TLS_CLIENT_SESSIONS 2
/* Header of an exported session: magic, context binding, peer name. */
#define NS_TLS_SESSION_MAGIC "NSS1"
#define NS_TLS_MAGIC_LEN     4
#define NS_TLS_BINDING_LEN   32
#define NS_TLS_PEER_MAX      255

struct ns_tls_ctx {
    SSL_CTX *ssl_ctx; /* one reference; each SSL holds its own */
    ns_tls_role role;
    /* Client: SHA-256 over our certificate and the CA certificates, so that
     * a session is only resumed under the trust it was made with. */
    uint8_t binding[NS_TLS_BINDING_LEN];
};

struct ns_tls {
    SSL *ssl; /* owns rbio and wbio */
    BIO *rbio;
    BIO *wbio;
    ns_tls_role role;
    ns_tls_send_fn send;
    void *send_ud;
    bool established;
    bool shutdown_sent;
    ns_tls_session_fn on_session; /* client: where new sessions go (may be NULL) */
    void *session_ud;
    uint8_t binding[NS_TLS_BINDING_LEN]; /* the context's, copied: it may be freed first */
    char peer_name[NS_TLS_PEER_MAX + 1]; /* client: "" when none was given */
    char alert[96];                      /* last fatal alert received from the peer */
    char error[256];
};

/* Appends OpenSSL's queued errors to buf, separated by "; ". */
static void collect_ssl_errors(char *buf, size_t len)
{
    unsigned long e;
    size_t used = strlen(buf);
    int count = 0;
    while ((e = ERR_get_error()) != 0) {
        if (used + 3 >= len)
            continue;
        char one[200];
        const char *reason = ERR_reason_error_string(e);
        if (reason)
            snprintf(one, sizeof(one), "%s", reason);
        else
            ERR_error_string_n(e, one, sizeof(one));
        int n = snprintf(buf + used, len - used, "%s%s", count++ ? "; " : "", one);
        if (n > 0)
            used += (size_t)n < len - used ? (size_t)n : len - used - 1;
    }
}

static void set_err(char *err, size_t errlen, const char *what, const char *file)
{
    if (err == NULL || errlen == 0)
        return;
    snprintf(err, errlen, "%s %s: ", what, file ? file : "(none)");
    collect_ssl_errors(err, errlen);
}

/* Never asks for a passphrase: OpenSSL's default would prompt on the
 * terminal, hanging a daemon that reloads on SIGHUP or a client library
 * inside an application. An encrypted key fails to load instead, and
 * *asked says why. */
static int no_passphrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (asked)
        *(bool *)asked = true;
    return 0;
}

/* ---- sessions kept for resumption ----------------------------------------
 *
 * Server: TLS 1.3 stateful tickets. With SSL_OP_NO_TICKET a TLS 1.3 ticket
 * is only the random id of a session kept here, decoded, so a resumption
 * decodes no certificate and decrypts no ticket (OpenSSL 3.0 decodes a
 * certificate in about 100 us). Each ticket resumes once: store_get takes
 * the session out, so a ticket is seen in clear once (in the ClientHello
 * that uses it; it was issued encrypted) and links no two connections, and
 * a stolen one is worth one resumption at most. A TLS 1.2 session is never kept (store_new): its
 * resumption would reuse the master secret without a fresh key exchange,
 * so whoever got the secret could decrypt every resumed connection; TLS
 * 1.3 resumption always runs a fresh ECDHE (psk_dhe_ke only).
 *
 * The store belongs to the SSL_CTX (ex_data), not to ns_tls_ctx:
 * connections made before a reload still add their tickets to the store of
 * their own context, which dies with its last connection. */
typedef struct stored_session {
    SSL_SESSION *sess; /* one reference */
    struct stored_session *hnext;
    struct stored_session *older, *newer;
} stored_session;

/* One per SSL_CTX. Server: the store, a hash table of the sessions by id
 * and a list from the oldest to the newest. Client: the sessions last
 * handed out (new_session), decoded, with their bytes, so that
 * ns_tls_set_session given the same bytes offers the session without
 * decoding it again. */
typedef struct {
    CRYPTO_RWLOCK *lock;
    stored_session **buckets; /* server: max of them */
    stored_session *oldest, *newest;
    size_t n, max;
    struct {
        SSL_SESSION *sess; /* one reference, or NULL */
        uint8_t *bytes;
        size_t len;
    } ring[NS_TLS_CLIENT_SESSIONS]; /* client */
    unsigned next;                  /* the ring's slot to fill next */
} session_cache;

static CRYPTO_ONCE ex_once = CRYPTO_ONCE_STATIC_INIT;
static int ex_index = -1;

static void cache_free(session_cache *sc)
{
    if (sc == NULL)
        return;
    for (stored_session *e = sc->oldest, *next; e; e = next) {
        next = e->newer;
        SSL_SESSION_free(e->sess);
        free(e);
    }
    free(sc->buckets);
    for (unsigned i = 0; i < NS_TLS_CLIENT_SESSIONS; i++) {
        SSL_SESSION_free(sc->ring[i].sess);
        if (sc->ring[i].bytes)
            OPENSSL_cleanse(sc->ring[i].bytes, sc->ring[i].len);
        free(sc->ring[i].bytes);
    }
    CRYPTO_THREAD_lock_free(sc->lock);
    free(sc);
}

/* The cache goes with its SSL_CTX, whose last reference may be a
 * connection's, long after ns_tls_ctx_free. */
static void ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    cache_free(ptr);
}

static void ex_init(void)
{
    ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ex_free);
}

static session_cache *cache_of(const SSL *ssl)
{
    return ex_index < 0 ? NULL : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index);
}

static size_t bucket_of(const session_cache *sc, const unsigned char *id, unsigned int len)
{
    /* Ids are OpenSSL's random bytes: any eight of them spread well. */
    uint64_t h = 0;
    memcpy(&h, id, len < sizeof(h) ? len : sizeof(h));
    return (size_t)(h % sc->max);
}

/* Takes e out of the table and the list (the caller frees it). */
static void store_unlink(session_cache *sc, stored_session *e)
{
    unsigned int len = 0;
    const unsigned char *id = SSL_SESSION_get_id(e->sess, &len);
    stored_session **pp = &sc->buckets[bucket_of(sc, id, len)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        sc->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        sc->newest = e->older;
    sc->n--;
}

static bool session_expired(const SSL_SESSION *sess, time_t now)
{
    time_t made = (time_t)SSL_SESSION_get_time(sess);
    long life = (long)SSL_SESSION_get_timeout(sess);
    return made <= 0 || life <= 0 || now < made - 60 || now - made >= life;
}

/* Server: OpenSSL made a TLS 1.3 ticket; keep a copy of its session. Not
 * the session itself: the connection still uses it, and OpenSSL marks the
 * session of a connection that ends without close_notify as not
 * resumable. A copy shares the decoded certificates (references). Returns
 * 0: OpenSSL keeps its reference. */
static int store_new(SSL *ssl, SSL_SESSION *orig)
{
    session_cache *sc = cache_of(ssl);
    unsigned int len = 0;
    const unsigned char *id = SSL_SESSION_get_id(orig, &len);
    if (sc == NULL || sc->buckets == NULL || SSL_version(ssl) != TLS1_3_VERSION ||
        SSL_SESSION_get_protocol_version(orig) != TLS1_3_VERSION || len == 0)
        return 0;
    stored_session *e = calloc(1, sizeof(*e));
    if (e)
        e->sess = SSL_SESSION_dup(orig);
    if (e == NULL || e->sess == NULL) {
        free(e);
        return 0; /* the client's next connection makes a full handshake */
    }
    id = SSL_SESSION_get_id(e->sess, &len);
    time_t now = time(NULL);
    if (!CRYPTO_THREAD_write_lock(sc->lock)) {
        SSL_SESSION_free(e->sess);
        free(e);
        return 0;
    }
    /* The list runs in the order sessions were made, all with the same
     * lifetime: the expired ones are at its head. Then room for this one. */
    while (sc->oldest && (sc->n >= sc->max || session_expired(sc->oldest->sess, now))) {
        stored_session *old = sc->oldest;
        store_unlink(sc, old);
        SSL_SESSION_free(old->sess);
        free(old);
    }
    size_t b = bucket_of(sc, id, len);
    e->hnext = sc->buckets[b];
    sc->buckets[b] = e;
    e->older = sc->newest;
    if (sc->newest)
        sc->newest->newer = e;
    else
        sc->oldest = e;
    sc->newest = e;
    sc->n++;
    CRYPTO_THREAD_unlock(sc->lock);
    return 0;
}

/* Server: a client offers a ticket. Its session leaves the store (one
 * resumption per ticket); it resumes only if it is a TLS 1.3 session on a
 * TLS 1.3 connection, not expired, and its client certificate is valid
 * now: otherwise a full handshake follows, where the certificate is
 * verified and refused with the proper alert. The reference goes to
 * OpenSSL (*copy = 0). */
static SSL_SESSION *store_get(SSL *ssl, const unsigned char *id, int len, int *copy)
{
    *copy = 0;
    session_cache *sc = cache_of(ssl);
    if (sc == NULL || sc->buckets == NULL || SSL_version(ssl) != TLS1_3_VERSION || len <= 0 ||
        len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return NULL;
    if (!CRYPTO_THREAD_write_lock(sc->lock))
        return NULL;
    stored_session *e = sc->buckets[bucket_of(sc, id, (unsigned int)len)];
    for (; e; e = e->hnext) {
        unsigned int elen = 0;
        const unsigned char *eid = SSL_SESSION_get_id(e->sess, &elen);
        if (elen == (unsigned int)len && memcmp(eid, id, elen) == 0)
            break;
    }
    if (e)
        store_unlink(sc, e);
    CRYPTO_THREAD_unlock(sc->lock);
    if (e == NULL)
        return NULL;
    SSL_SESSION *sess = e->sess;
    free(e);
    X509 *peer = SSL_SESSION_get0_peer(sess);
    if (SSL_SESSION_get_protocol_version(sess) != TLS1_3_VERSION ||
        session_expired(sess, time(NULL)) || peer == NULL ||
        X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0 ||
        X509_cmp_current_time(X509_get0_notBefore(peer)) >= 0) {
        SSL_SESSION_free(sess);
        return NULL;
    }
    return sess;
}

/* Server: a TLS 1.2 handshake gets no session id (nor a ticket:
 * SSL_OP_NO_TICKET), so no client tries to resume it (store_new would not
 * keep it anyway). OpenSSL calls this "servername" callback whether or not
 * the client sent a name, after choosing the version and making the
 * session, before writing the ServerHello. */
static int tls12_no_session_id(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    static const unsigned char none[1] = {0};
    SSL_SESSION *sess = SSL_get_session(ssl);
    if (SSL_version(ssl) != TLS1_3_VERSION && sess != NULL)
        (void)SSL_SESSION_set1_id(sess, none, 0);
    return SSL_TLSEXT_ERR_OK;
}

/* Client: remembers a session just handed out, decoded, with its bytes.
 * The ring holds copies that no connection uses: OpenSSL marks the session
 * of a connection that ends without close_notify as not resumable, which
 * must not change what the same bytes mean next time. A copy shares the
 * decoded certificates (references), so it is cheap. */
static void ring_put(SSL *ssl, SSL_SESSION *orig, const uint8_t *bytes, size_t len)
{
    session_cache *sc = cache_of(ssl);
    uint8_t *copy = malloc(len);
    SSL_SESSION *sess = sc && copy ? SSL_SESSION_dup(orig) : NULL;
    if (sess == NULL) {
        free(copy);
        return; /* offering it later decodes it: slower, not wrong */
    }
    memcpy(copy, bytes, len);
    if (!CRYPTO_THREAD_write_lock(sc->lock)) {
        SSL_SESSION_free(sess);
        free(copy);
        return;
    }
    unsigned i = sc->next;
    sc->next = (sc->next + 1) % NS_TLS_CLIENT_SESSIONS;
    SSL_SESSION *old = sc->ring[i].sess;
    uint8_t *old_bytes = sc->ring[i].bytes;
    size_t old_len = sc->ring[i].len;
    sc->ring[i].sess = sess;
    sc->ring[i].bytes = copy;
    sc->ring[i].len = len;
    CRYPTO_THREAD_unlock(sc->lock);
    SSL_SESSION_free(old);
    if (old_bytes)
        OPENSSL_cleanse(old_bytes, old_len);
    free(old_bytes);
}

/* Client: a copy of the decoded session handed out as exactly these bytes
 * (the caller's), or NULL. */
static SSL_SESSION *ring_get(SSL *ssl, const uint8_t *bytes, size_t len)
{
    session_cache *sc = cache_of(ssl);
    SSL_SESSION *found = NULL;
    if (sc == NULL || !CRYPTO_THREAD_read_lock(sc->lock))
        return NULL;
    for (unsigned i = 0; i < NS_TLS_CLIENT_SESSIONS && found == NULL; i++)
        if (sc->ring[i].sess && sc->ring[i].len == len &&
            CRYPTO_memcmp(sc->ring[i].bytes, bytes, len) == 0)
            found = SSL_SESSION_dup(sc->ring[i].sess);
    CRYPTO_THREAD_unlock(sc->lock);
    return found;
}

static int digest_cert(EVP_MD_CTX *md, X509 *cert)
{
    unsigned char fp[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(cert, EVP_sha256(), fp, &n) != 1)
        return -1;
    return EVP_DigestUpdate(md, fp, n) == 1 ? 0 : -1;
}

/* Client: what a session is bound to besides the peer name: our own
 * certificate (none is a value too) and every CA certificate we trust. */
static int context_binding(SSL_CTX *c, uint8_t out[NS_TLS_BINDING_LEN])
{
    static const char label[] = "napsync TLS session binding v1";
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = -1;
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, label, sizeof(label)) != 1)
        goto out;
    X509 *own = SSL_CTX_get0_certificate(c);
    unsigned char has_own = own != NULL;
    if (EVP_DigestUpdate(md, &has_own, 1) != 1 || (own && digest_cert(md, own) != 0))
        goto out;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(c));
    for (int i = 0; objs && i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca && digest_cert(md, ca) != 0)
            goto out;
    }
    unsigned int n = 0;
    unsigned char full[EVP_MAX_MD_SIZE];
    if (EVP_DigestFinal_ex(md, full, &n) != 1 || n != NS_TLS_BINDING_LEN)
        goto out;
    memcpy(out, full, NS_TLS_BINDING_LEN);
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

/* Client: OpenSSL made a session from the server's NewSessionTicket. It
 * goes to the owner with its header (see tls.h); we keep no reference. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    ns_tls *t = SSL_get_app_data(ssl);
    if (t == NULL || t->on_session == NULL ||
        SSL_SESSION_get_protocol_version(sess) != TLS1_3_VERSION || !SSL_SESSION_is_resumable(sess))
        return 0;
    int der_len = i2d_SSL_SESSION(sess, NULL);
    size_t name_len = strlen(t->peer_name);
    size_t head = NS_TLS_MAGIC_LEN + NS_TLS_BINDING_LEN + 1 + name_len;
    if (der_len <= 0 || (size_t)der_len > NS_TLS_SESSION_MAX - head)
        return 0;
    uint8_t *buf = malloc(head + (size_t)der_len);
    if (buf == NULL)
        return 0; /* no session to keep: the next connect is a full handshake */
    memcpy(buf, NS_TLS_SESSION_MAGIC, NS_TLS_MAGIC_LEN);
    memcpy(buf + NS_TLS_MAGIC_LEN, t->binding, NS_TLS_BINDING_LEN);
    buf[NS_TLS_MAGIC_LEN + NS_TLS_BINDING_LEN] = (uint8_t)name_len;
    memcpy(buf + NS_TLS_MAGIC_LEN + NS_TLS_BINDING_LEN + 1, t->peer_name, name_len);
    unsigned char *p = buf + head;
    if (i2d_SSL_SESSION(sess, &p) == der_len) {
        ring_put(ssl, sess, buf, head + (size_t)der_len);
        t->on_session(t->session_ud, buf, head + (size_t)der_len);
    }
    OPENSSL_cleanse(buf, head + (size_t)der_len);
    free(buf);
    return 0; /* OpenSSL keeps its reference and frees it */
}

int ns_tls_ctx_new(ns_tls_role role, const ns_tls_config *cfg, ns_tls_ctx **out, char *err,
                   size_t errlen)
{
    bool passphrase_asked = false;
    ERR_clear_error();
    if (err && errlen)
        err[0] = '\0';
    SSL_CTX *c = SSL_CTX_new(role == NS_TLS_SERVER ? TLS_server_method() : TLS_client_method());
    if (c == NULL) {
        set_err(err, errlen, "cannot create TLS context", "");
        return NS_TLS_ERR_NOMEM;
    }
    SSL_CTX_set_default_passwd_cb(c, no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(c, &passphrase_asked);
    /* Set here, whatever the system's openssl.cnf says (docs/security.md
     * says what each defends against): TLS 1.2 and 1.3 only; no
     * compression (CRIME); no renegotiation (TLS 1.3 has none; a TLS 1.2
     * client asking for one gets a no_renegotiation alert), which napsync
     * never needs and which has carried attacks; TLS 1.3 resumption only
     * with a fresh key exchange; no 0-RTT data, which could be replayed. */
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
        set_err(err, errlen, "cannot set the TLS versions", "");
        goto fail;
    }
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_clear_options(c, SSL_OP_ALLOW_NO_DHE_KEX | SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION |
                                 SSL_OP_LEGACY_SERVER_CONNECT);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_get_security_level(c) < NS_TLS_MIN_SECURITY_LEVEL)
        SSL_CTX_set_security_level(c, NS_TLS_MIN_SECURITY_LEVEL);
    if (SSL_CTX_set_cipher_list(c, NS_TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_ciphersuites(c, NS_TLS13_CIPHERS) != 1 ||
        SSL_CTX_set1_groups_list(c, NS_TLS_GROUPS) != 1 || SSL_CTX_set_max_early_data(c, 0) != 1) {
        set_err(err, errlen, "cannot set ciphers and groups", "");
        goto fail;
    }

    if (role == NS_TLS_SERVER && (cfg->cert_file == NULL || cfg->key_file == NULL)) {
        snprintf(err, errlen, "a server needs a certificate and a key");
        goto fail;
    }
    if ((cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
        snprintf(err, errlen, "a certificate needs its key and a key its certificate");
        goto fail;
    }
    if (cfg->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(c, cfg->cert_file) != 1) {
            set_err(err, errlen, "cannot load certificate", cfg->cert_file);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(c, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
            if (passphrase_asked)
                snprintf(err, errlen,
                         "cannot load private key %s: it is encrypted, and encrypted private "
                         "keys are not supported (store it without a passphrase, readable "
                         "only by this service)",
                         cfg->key_file);
            else
                set_err(err, errlen, "cannot load private key", cfg->key_file);
            goto fail;
        }
        if (SSL_CTX_check_private_key(c) != 1) {
            set_err(err, errlen, "private key does not match certificate", cfg->cert_file);
            goto fail;
        }
    }
    if (cfg->ca_file == NULL) {
        snprintf(err, errlen, "a CA file is required (mutual TLS)");
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(c, cfg->ca_file, NULL) != 1) {
        set_err(err, errlen, "cannot load CA", cfg->ca_file);
        goto fail;
    }
    SSL_CTX_set_verify_depth(c, 4);
    if (role == NS_TLS_SERVER) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names == NULL) {
            set_err(err, errlen, "no CA certificate in", cfg->ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(c, names); /* takes ownership */
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        static const unsigned char sid_ctx[] = "napsyncd";
        SSL_CTX_set_session_id_context(c, sid_ctx, sizeof(sid_ctx) - 1);
        /* The client's cipher preferences do not get to pick a weaker
         * suite than ours first. */
        SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
        /* TLS 1.3 stateful tickets (no TLS 1.2 tickets): sessions kept in
         * this context's store (session_store above), which dies with it
         * (restart or SIGHUP reload); OpenSSL's own cache stays unused. */
        SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL |
                                              SSL_SESS_CACHE_NO_AUTO_CLEAR);
        SSL_CTX_set_timeout(c, NS_TLS_TICKET_LIFETIME_S);
        SSL_CTX_sess_set_new_cb(c, store_new);
        SSL_CTX_sess_set_get_cb(c, store_get);
        SSL_CTX_set_tlsext_servername_callback(c, tls12_no_session_id);
        if (SSL_CTX_set_num_tickets(c, NS_TLS_TICKETS) != 1) {
            set_err(err, errlen, "cannot set up session tickets", "");
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
        /* Sessions go to the owner (ns_tls_on_session), never to a cache
         * inside OpenSSL: the owner decides which one to offer, and to whom. */
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c, new_session);
    }

    /* The context outlives passphrase_asked; the callback stays. */
    SSL_CTX_set_default_passwd_cb_userdata(c, NULL);
    ns_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        SSL_CTX_free(c);
        return NS_TLS_ERR_NOMEM;
    }
    ctx->ssl_ctx = c;
    ctx->role = role;
    session_cache *sc = calloc(1, sizeof(*sc));
    if (sc)
        sc->lock = CRYPTO_THREAD_lock_new();
    if (sc && role == NS_TLS_SERVER) {
        sc->max = NS_TLS_SERVER_SESSIONS_MAX;
        sc->buckets = calloc(sc->max, sizeof(*sc->buckets));
    }
    if (sc == NULL || sc->lock == NULL || (role == NS_TLS_SERVER && sc->buckets == NULL) ||
        !CRYPTO_THREAD_run_once(&ex_once, ex_init) || ex_index < 0 ||
        SSL_CTX_set_ex_data(c, ex_index, sc) != 1) {
        cache_free(sc);
        snprintf(err, errlen, "out of memory");
        ns_tls_ctx_free(ctx);
        ERR_clear_error();
        return NS_TLS_ERR_NOMEM;
    }
    if (role == NS_TLS_CLIENT && context_binding(c, ctx->binding) != 0) {
        snprintf(err, errlen, "cannot fingerprint the TLS files");
        ns_tls_ctx_free(ctx);
        ERR_clear_error();
        return NS_TLS_ERR_NOMEM;
    }
    *out = ctx;
    return NS_TLS_OK;
fail:
    SSL_CTX_free(c);
    ERR_clear_error();
    return NS_TLS_ERR_CONFIG;
}

int ns_tls_ctx_set_session_store_max(ns_tls_ctx *ctx, size_t max)
{
    session_cache *sc = ex_index < 0 ? NULL : SSL_CTX_get_ex_data(ctx->ssl_ctx, ex_index);
    if (ctx->role != NS_TLS_SERVER || sc == NULL || max == 0)
        return NS_TLS_ERR_STATE;
    stored_session **buckets = calloc(max, sizeof(*buckets));
    if (buckets == NULL)
        return NS_TLS_ERR_NOMEM;
    int rc = NS_TLS_ERR_STATE;
    if (CRYPTO_THREAD_write_lock(sc->lock)) {
        if (sc->n == 0) {
            free(sc->buckets);
            sc->buckets = buckets;
            sc->max = max;
            buckets = NULL;
            rc = NS_TLS_OK;
        }
        CRYPTO_THREAD_unlock(sc->lock);
    }
    free(buckets);
    return rc;
}

void ns_tls_ctx_free(ns_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* OpenSSL 3.0 has no name for alert 116, TLS 1.3's "certificate_required",
 * which is exactly the one a client without a certificate gets. */
static const char *alert_name(int value)
{
    if ((value & 0xff) == 116)
        return "certificate required";
    return SSL_alert_desc_string_long(value);
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    /* Only alerts the peer sent explain why it refused us; ours are
     * explained by the verify result and the error queue. */
    if (!(where & SSL_CB_ALERT) || !(where & SSL_CB_READ))
        return;
    ns_tls *t = SSL_get_app_data(ssl);
    /* Only fatal alerts explain a failure; close_notify is a warning. */
    if (t && (ret >> 8) == SSL3_AL_FATAL)
        snprintf(t->alert, sizeof(t->alert), "%s", alert_name(ret));
}

/* An address literal is matched against IP SANs, a name against DNS SANs
 * (and sent as SNI, which RFC 6066 forbids for addresses). */
static int set_peer_name(SSL *ssl, const char *peer_name)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, peer_name, addr) == 1 || inet_pton(AF_INET6, peer_name, addr) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), peer_name) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, peer_name) != 1 || SSL_set1_host(ssl, peer_name) != 1)
        return -1;
    return 0;
}

int ns_tls_new(ns_tls_ctx *ctx, const char *peer_name, ns_tls_send_fn send, void *send_ud,
               ns_tls **out)
{
    ns_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NS_TLS_ERR_NOMEM;
    t->role = ctx->role;
    t->send = send;
    t->send_ud = send_ud;
    memcpy(t->binding, ctx->binding, sizeof(t->binding));
    if (ctx->role == NS_TLS_CLIENT && peer_name) {
        if (strlen(peer_name) > NS_TLS_PEER_MAX) {
            free(t);
            return NS_TLS_ERR_CONFIG; /* no certificate could match it anyway */
        }
        snprintf(t->peer_name, sizeof(t->peer_name), "%s", peer_name);
    }
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        goto fail;
    }
    /* An empty memory BIO must say "retry", not EOF. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both BIOs now */
    SSL_set_app_data(t->ssl, t);
    SSL_set_info_callback(t->ssl, info_cb);
    if (ctx->role == NS_TLS_SERVER) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (peer_name && *peer_name && set_peer_name(t->ssl, peer_name) != 0)
            goto fail; /* without it the server certificate would not be checked */
    }
    *out = t;
    return NS_TLS_OK;
fail:
    SSL_free(t->ssl); /* and the BIOs it owns */
    free(t);
    ERR_clear_error();
    return NS_TLS_ERR_NOMEM;
}

void ns_tls_free(ns_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

/* Hands everything the SSL produced to the network. */
static int drain(ns_tls *t)
{
    char *data;
    long pending = BIO_get_mem_data(t->wbio, &data);
    if (pending <= 0)
        return NS_TLS_OK;
    int rc = t->send(t->send_ud, (const uint8_t *)data, (size_t)pending);
    (void)BIO_reset(t->wbio);
    return rc == 0 ? NS_TLS_OK : NS_TLS_ERR_SEND;
}

int ns_tls_feed(ns_tls *t, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        int chunk = len > (size_t)INT32_MAX ? INT32_MAX : (int)len;
        int n = BIO_write(t->rbio, buf, chunk);
        if (n <= 0)
            return NS_TLS_ERR_NOMEM;
        buf += n;
        len -= (size_t)n;
    }
    return NS_TLS_OK;
}

/* Words for a failure: the peer's alert if it sent one, else our own
 * verification result, else OpenSSL's error queue. */
static void describe_failure(ns_tls *t, const char *stage)
{
    long vr = SSL_get_verify_result(t->ssl);
    if (t->alert[0]) {
        snprintf(t->error, sizeof(t->error), "%s: the peer sent TLS alert \"%s\"", stage, t->alert);
    } else if (vr != X509_V_OK) {
        snprintf(t->error, sizeof(t->error), "%s: peer certificate rejected: %s", stage,
                 X509_verify_cert_error_string(vr));
    } else {
        snprintf(t->error, sizeof(t->error), "%s: ", stage);
        collect_ssl_errors(t->error, sizeof(t->error));
        if (t->error[strlen(stage) + 2] == '\0')
            snprintf(t->error, sizeof(t->error), "%s: connection failed", stage);
    }
    ERR_clear_error();
}

int ns_tls_handshake(ns_tls *t)
{
    if (t->established)
        return NS_TLS_OK;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    int d = drain(t); /* the alert we send on failure must go out too */
    if (r == 1) {
        t->established = true;
        return d;
    }
    if (e == SSL_ERROR_WANT_READ)
        return d == NS_TLS_OK ? NS_TLS_WANT_READ : d;
    describe_failure(t, "TLS handshake failed");
    return NS_TLS_ERR_HANDSHAKE;
}

bool ns_tls_established(const ns_tls *t)
{
    return t->established;
}

int ns_tls_read(ns_tls *t, uint8_t *buf, size_t cap, size_t *n)
{
    *n = 0;
    if (!t->established)
        return NS_TLS_ERR_STATE;
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(t->ssl, buf, cap, &got);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    int d = drain(t);
    if (d != NS_TLS_OK)
        return d;
    if (r == 1) {
        *n = got;
        return NS_TLS_OK;
    }
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return NS_TLS_WANT_READ;
    case SSL_ERROR_ZERO_RETURN:
        return NS_TLS_CLOSED;
    default:
        /* With TLS 1.3 a client learns that the server refused its
         * certificate only here, on the first read after the handshake. */
        describe_failure(t, "TLS connection failed");
        return NS_TLS_ERR_PROTOCOL;
    }
}

int ns_tls_write(ns_tls *t, const uint8_t *buf, size_t len)
{
    if (!t->established || t->shutdown_sent)
        return NS_TLS_ERR_STATE;
    ERR_clear_error();
    /* Memory BIOs grow, so SSL_write_ex takes everything in one call. */
    size_t written = 0;
    if (len > 0 && SSL_write_ex(t->ssl, buf, len, &written) != 1) {
        describe_failure(t, "TLS write failed");
        (void)drain(t);
        return NS_TLS_ERR_PROTOCOL;
    }
    return drain(t);
}

void ns_tls_shutdown(ns_tls *t)
{
    if (t->shutdown_sent || !t->established)
        return;
    t->shutdown_sent = true;
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
    (void)drain(t);
}

const char *ns_tls_error(const ns_tls *t)
{
    return t->error[0] ? t->error : "no TLS error";
}

int ns_tls_peer_fingerprint(const ns_tls *t, uint8_t out[32])
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    unsigned int n = 0;
    if (cert == NULL || X509_digest(cert, EVP_sha256(), out, &n) != 1 || n != 32)
        return -1;
    return 0;
}

const char *ns_tls_version(const ns_tls *t)
{
    return t->established ? SSL_get_version(t->ssl) : "";
}

void ns_tls_on_session(ns_tls *t, ns_tls_session_fn fn, void *ud)
{
    if (t->role != NS_TLS_CLIENT)
        return;
    t->on_session = fn;
    t->session_ud = ud;
}

/* Whether a decoded session may be offered now. OpenSSL itself skips a
 * ticket past its lifetime, but only after sending the rest of the hello;
 * deciding here keeps ns_tls_set_session's answer true. */
static bool session_usable(const SSL_SESSION *sess)
{
    if (SSL_SESSION_get_protocol_version(sess) != TLS1_3_VERSION || !SSL_SESSION_is_resumable(sess))
        return false;
    long made = (long)SSL_SESSION_get_time(sess);
    long life = (long)SSL_SESSION_get_timeout(sess);
    long now = (long)time(NULL);
    return made > 0 && life > 0 && made <= now + 60 && now - made < life;
}

int ns_tls_set_session(ns_tls *t, const uint8_t *session, size_t len)
{
    if (t->role != NS_TLS_CLIENT || t->established || !SSL_in_before(t->ssl))
        return NS_TLS_ERR_STATE;
    size_t fixed = NS_TLS_MAGIC_LEN + NS_TLS_BINDING_LEN + 1;
    if (session == NULL || len <= fixed || len > NS_TLS_SESSION_MAX ||
        memcmp(session, NS_TLS_SESSION_MAGIC, NS_TLS_MAGIC_LEN) != 0)
        return NS_TLS_SESSION_IGNORED;
    /* Both comparisons are of values we made ourselves: no secret leaks
     * through their timing. */
    if (memcmp(session + NS_TLS_MAGIC_LEN, t->binding, NS_TLS_BINDING_LEN) != 0)
        return NS_TLS_SESSION_IGNORED;
    size_t name_len = session[NS_TLS_MAGIC_LEN + NS_TLS_BINDING_LEN];
    if (len <= fixed + name_len || name_len != strlen(t->peer_name) ||
        memcmp(session + fixed, t->peer_name, name_len) != 0)
        return NS_TLS_SESSION_IGNORED;
    const unsigned char *p = session + fixed + name_len;
    long der_len = (long)(len - fixed - name_len);
    ERR_clear_error();
    /* Handed out by this context: decoded already. Else decoded here
     * (another process's, or pushed out of the ring). */
    SSL_SESSION *sess = ring_get(t->ssl, session, len);
    if (sess != NULL)
        p = session + len;
    else
        sess = d2i_SSL_SESSION(NULL, &p, der_len);
    int rc = NS_TLS_SESSION_IGNORED;
    if (sess != NULL && p == session + len && session_usable(sess))
        rc = SSL_set_session(t->ssl, sess) == 1 ? NS_TLS_OK : NS_TLS_ERR_NOMEM;
    SSL_SESSION_free(sess); /* the SSL holds its own reference */
    ERR_clear_error();
    return rc;
}

bool ns_tls_resumed(const ns_tls *t)
{
    return t->established && SSL_session_reused(t->ssl) == 1;
}

/* ---- certificate files (administration) ------------------------------------------------ */

/* A PEM certificate is never encrypted: refuse to ask anyone for a password. */
static int no_password(char *buf, int size, int rwflag, void *ud)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)ud;
    return -1;
}

/* The file, whole, into a buffer of at most NS_TLS_CERT_FILE_MAX bytes
 * (caller frees), or NULL with err written. */
static unsigned char *cert_file_read(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    unsigned char *buf = NULL;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        goto fail;
    }
    buf = malloc(NS_TLS_CERT_FILE_MAX + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory reading %s", path);
        goto fail;
    }
    /* One byte past the limit: the file may have grown since fstat. */
    *len = fread(buf, 1, NS_TLS_CERT_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    if (*len > NS_TLS_CERT_FILE_MAX) {
        snprintf(err, errlen, "%s is larger than %d bytes: not a certificate", path,
                 NS_TLS_CERT_FILE_MAX);
        goto fail;
    }
    fclose(f);
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

int ns_tls_cert_file_info(const char *path, ns_tls_cert_info *out, char *err, size_t errlen)
{
    size_t len = 0;
    unsigned char *buf = cert_file_read(path, &len, err, errlen);
    if (buf == NULL)
        return -1;
    ERR_clear_error();
    X509 *cert = NULL;
    /* PEM may follow other text (openssl x509 -text writes it first). */
    static const char pem_begin[] = "-----BEGIN";
    const size_t begin_len = sizeof(pem_begin) - 1;
    bool pem = false;
    for (size_t i = 0; !pem && i + begin_len <= len; i++)
        pem = memcmp(buf + i, pem_begin, begin_len) == 0;
    if (pem) {
        BIO *bio = BIO_new_mem_buf(buf, (int)len);
        if (bio != NULL)
            cert = PEM_read_bio_X509(bio, NULL, no_password, NULL);
        BIO_free(bio);
    } else if (len > 0 && len <= LONG_MAX) {
        const unsigned char *p = buf;
        cert = d2i_X509(NULL, &p, (long)len);
        /* DER is the certificate and nothing else. */
        if (cert != NULL && p != buf + len) {
            X509_free(cert);
            cert = NULL;
        }
    }
    free(buf);
    ERR_clear_error();
    if (cert == NULL) {
        snprintf(err, errlen, "%s holds no certificate (PEM \"BEGIN CERTIFICATE\" or DER)", path);
        return -1;
    }
    ns_tls_cert_info info;
    memset(&info, 0, sizeof(info));
    unsigned int n = 0;
    struct tm tm;
    const ASN1_TIME *until = X509_get0_notAfter(cert);
    if (X509_digest(cert, EVP_sha256(), info.sha256, &n) != 1 || n != 32 ||
        ASN1_TIME_to_tm(until, &tm) != 1) {
        X509_free(cert);
        ERR_clear_error();
        snprintf(err, errlen, "%s: the certificate cannot be read (digest or validity)", path);
        return -1;
    }
    strftime(info.not_after, sizeof(info.not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
    info.expired = X509_cmp_current_time(until) < 0;
    info.client_auth = X509_check_purpose(cert, X509_PURPOSE_SSL_CLIENT, 0) == 1;
    int cn = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, info.subject_cn,
                                       (int)sizeof(info.subject_cn));
    if (cn < 0)
        info.subject_cn[0] = '\0';
    /* Shown in messages: printable ASCII only. */
    for (char *c = info.subject_cn; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            *c = '?';
    X509_free(cert);
    ERR_clear_error();
    *out = info;
    return 0;
}
