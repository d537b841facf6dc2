/*
 * tls.c - HTTPS through libevent's OpenSSL bufferevents: TLS 1.2 or newer,
 * forward-secret AEAD suites only, and mutual TLS when tls_client_ca is
 * set.  A token bound to a client certificate (cnf.x5t#S256) is checked
 * against the certificate this connection presented.
 */
#include <string.h>
#include <time.h>

#include <openssl/bn.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "kbd.h"

#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

struct bufferevent *kbd_tls_bufferevent(kbd *d, struct event_base *base)
{
    SSL *ssl = SSL_new(d->tls);

    if (ssl == NULL)
        return NULL;
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static kbr_err tls_fail(kbr_msg *msg, const char *what, const char *path)
{
    char detail[160];

    ERR_error_string_n(ERR_get_error(), detail, sizeof(detail));
    ERR_clear_error();
    return kbr_fail(msg, KBR_ERR_CONFIG, "%s %s: %s", what, path, detail);
}

static kbr_err load_ctx(const kbd_config *cfg, SSL_CTX *ctx, kbr_msg *msg)
{
    STACK_OF(X509_NAME) * names;

    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1)
        return tls_fail(msg, "TLS", "settings");
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
        return tls_fail(msg, "tls_cert", cfg->tls_cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1)
        return tls_fail(msg, "tls_key", cfg->tls_key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return tls_fail(msg, "tls_key does not match", cfg->tls_cert);
    if (cfg->tls_client_ca == NULL)
        return KBR_OK;
    if (SSL_CTX_load_verify_locations(ctx, cfg->tls_client_ca, NULL) != 1)
        return tls_fail(msg, "tls_client_ca", cfg->tls_client_ca);
    /*
     * The names of the CAs go in the certificate request, so a client holding several
     * certificates (a factory station with one per line, a browser) offers the one that
     * chains to them instead of the first it has.
     */
    names = SSL_load_client_CA_file(cfg->tls_client_ca);
    if (names == NULL)
        return tls_fail(msg, "tls_client_ca has no certificate names:", cfg->tls_client_ca);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify_depth(ctx, 4);
    /*
     * Under client verification OpenSSL resumes a session only in a session id context, and
     * fails the handshake (internal error) when none is set: a client that reconnected with
     * the session of a connection the broker closed could not connect at all.  A resumed
     * session keeps the client certificate of its first handshake, which token binding checks.
     */
    if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"keybrokerd", 10) != 1)
        return tls_fail(msg, "TLS", "session id context");
    return KBR_OK;
}

/* A context for cfg's files, or the reason there is none. */
static kbr_err ctx_new(const kbd_config *cfg, SSL_CTX **out, kbr_msg *msg)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    kbr_err err;

    *out = NULL;
    if (ctx == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "cannot create the TLS context");
    err = load_ctx(cfg, ctx, msg);
    if (err != KBR_OK) {
        SSL_CTX_free(ctx);
        return err;
    }
    *out = ctx;
    return KBR_OK;
}

/* The served certificate's expiry, for /metrics, and a line naming it. */
static void note_certificate(kbd *d, char *about, size_t n)
{
    X509 *cert = SSL_CTX_get0_certificate(d->tls);
    const ASN1_TIME *na = cert != NULL ? X509_get0_notAfter(cert) : NULL;
    BIGNUM *bn = cert != NULL ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL) : NULL;
    char *serial = bn != NULL ? BN_bn2hex(bn) : NULL, subject[256] = "?";
    struct tm tm;

    d->tls_not_after = 0;
    if (na != NULL && ASN1_TIME_to_tm(na, &tm) == 1)
        d->tls_not_after = timegm(&tm);
    if (cert != NULL)
        X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    if (about != NULL) {
        char until[KBR_TIME_LEN] = "?";
        if (d->tls_not_after > 0)
            kbr_time_fmt(d->tls_not_after, until);
        snprintf(about, n, "subject %s, serial %s, valid until %s", subject,
                 serial != NULL ? serial : "?", until);
    }
    OPENSSL_free(serial);
    BN_free(bn);
}

kbr_err kbd_tls_setup(kbd *d, kbr_msg *msg)
{
    kbr_err err;

    if (d->cfg.tls_cert == NULL)
        return KBR_OK;
    err = ctx_new(&d->cfg, &d->tls, msg);
    if (err == KBR_OK)
        note_certificate(d, NULL, 0);
    return err;
}

kbr_err kbd_tls_check(const kbd_config *cfg, kbr_msg *msg)
{
    SSL_CTX *ctx = NULL;
    kbr_err err;

    if (cfg->tls_cert == NULL)
        return KBR_OK;
    err = ctx_new(cfg, &ctx, msg);
    SSL_CTX_free(ctx);
    return err;
}

/*
 * A connection holds a reference to the context it was accepted with, so the old context
 * lives on with the connections that use it and goes with the last of them.
 */
kbr_err kbd_tls_reload(kbd *d, const kbd_config *fresh, char *about, size_t n, kbr_msg *msg)
{
    SSL_CTX *ctx = NULL;
    kbr_err err = ctx_new(fresh, &ctx, msg);

    if (err != KBR_OK)
        return err;
    SSL_CTX_free(d->tls);
    d->tls = ctx;
    note_certificate(d, about, n);
    return KBR_OK;
}

void kbd_tls_cleanup(kbd *d)
{
    SSL_CTX_free(d->tls);
    d->tls = NULL;
}

bool kbd_tls_client_x5t(struct evhttp_request *req, char out[64])
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;

    return bev != NULL && kbd_tls_bev_x5t(bev, out);
}

/* evhttp's bufferevent is the ingress filter (ingress.c); the TLS one is below it. */
static SSL *ssl_of(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct bufferevent *under = ssl == NULL ? bufferevent_get_underlying(bev) : NULL;

    return under != NULL ? bufferevent_openssl_get_ssl(under) : ssl;
}

bool kbd_tls_bev_x5t(struct bufferevent *bev, char out[64])
{
    SSL *ssl = ssl_of(bev);
    X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    unsigned char *der = NULL;
    unsigned char md[32];
    char *b64 = NULL;
    int n;

    if (cert == NULL)
        return false;
    n = i2d_X509(cert, &der);
    if (n <= 0)
        return false;
    kbr_sha256(der, (size_t)n, md);
    OPENSSL_free(der);
    if (kbr_b64url_encode(md, sizeof(md), &b64) != KBR_OK)
        return false;
    snprintf(out, 64, "%s", b64);
    free(b64);
    return true;
}
