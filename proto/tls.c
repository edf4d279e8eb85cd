#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TLS 1.2 suites: forward secret AEAD only (TLS 1.3 suites are all modern). */
#define NS_TLS12_CIPHERS                                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct ns_tls_ctx {
    SSL_CTX *ssl_ctx; /* one reference; each SSL holds its own */
    ns_tls_role role;
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
    char alert[96]; /* last fatal alert received from the peer */
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
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(c, NS_TLS12_CIPHERS) != 1) {
        set_err(err, errlen, "cannot set cipher list", "");
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
    } else {
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
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
    *out = ctx;
    return NS_TLS_OK;
fail:
    SSL_CTX_free(c);
    ERR_clear_error();
    return NS_TLS_ERR_CONFIG;
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
