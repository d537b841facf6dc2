/* idp.c - see idp.h.  Everything here is OpenSSL and sockets; nothing of the broker. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/rsa.h>

#include "idp.h"
#include "kbr_common.h"

static void die(const char *what)
{
    fprintf(stderr, "idp: %s\n", what);
    abort();
}

EVP_PKEY *kbt_rsa_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);

    if (k == NULL)
        die("RSA keygen");
    return k;
}

EVP_PKEY *kbt_ec_key(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);

    if (k == NULL)
        die("EC keygen");
    return k;
}

static char *b64url_bn(EVP_PKEY *key, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    size_t n;
    char *out = NULL;

    if (EVP_PKEY_get_bn_param(key, param, &bn) != 1)
        die("key parameter");
    n = pad != 0 ? pad : (size_t)BN_num_bytes(bn);
    if (BN_bn2binpad(bn, buf, (int)n) != (int)n || kbr_b64url_encode(buf, n, &out) != KBR_OK)
        die("encode");
    BN_free(bn);
    return out;
}

json_t *kbt_jwk_of(EVP_PKEY *key, const char *kid, const char *alg)
{
    json_t *jwk;

    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        char *n = b64url_bn(key, OSSL_PKEY_PARAM_RSA_N, 0),
             *e = b64url_bn(key, OSSL_PKEY_PARAM_RSA_E, 0);
        jwk = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "RSA", "kid", kid, "use", "sig", "n", n,
                        "e", e);
        free(n);
        free(e);
    } else {
        size_t coord = EVP_PKEY_get_bits(key) > 256 ? 48 : 32;
        char *x = b64url_bn(key, OSSL_PKEY_PARAM_EC_PUB_X, coord);
        char *y = b64url_bn(key, OSSL_PKEY_PARAM_EC_PUB_Y, coord);
        jwk = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "kid", kid, "use", "sig", "crv",
                        coord == 48 ? "P-384" : "P-256", "x", x, "y", y);
        free(x);
        free(y);
    }
    if (jwk == NULL)
        die("jwk");
    if (alg != NULL)
        json_object_set_new(jwk, "alg", json_string(alg));
    return jwk;
}

char *kbt_jwks_text(json_t *keys)
{
    json_t *set = json_pack("{s:O}", "keys", keys);
    char *text = json_dumps(set, JSON_COMPACT);

    json_decref(set);
    return text;
}

static char *b64url_text(const char *text)
{
    char *out = NULL;

    if (kbr_b64url_encode((const unsigned char *)text, strlen(text), &out) != KBR_OK)
        die("encode");
    return out;
}

/* r||s of a DER ECDSA signature, each coord bytes. */
static size_t der_to_raw(const unsigned char *der, size_t len, unsigned char *raw, size_t coord)
{
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &der, (long)len);
    const BIGNUM *r, *s;

    if (sig == NULL)
        die("ecdsa sig");
    ECDSA_SIG_get0(sig, &r, &s);
    BN_bn2binpad(r, raw, (int)coord);
    BN_bn2binpad(s, raw + coord, (int)coord);
    ECDSA_SIG_free(sig);
    return 2 * coord;
}

char *kbt_jws(const char *header, const char *payload, EVP_PKEY *key, const char *alg)
{
    char *h = b64url_text(header), *p = b64url_text(payload), *input = NULL, *sig64 = NULL;
    char *out = NULL;
    unsigned char sig[1024], raw[128];
    size_t siglen = sizeof(sig);
    const EVP_MD *md = strstr(alg, "384")   ? EVP_sha384()
                       : strstr(alg, "512") ? EVP_sha512()
                                            : EVP_sha256();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;

    if (asprintf(&input, "%s.%s", h, p) < 0)
        die("memory");
    if (strcmp(alg, "none") == 0) {
        siglen = 0;
    } else {
        if (EVP_DigestSignInit(ctx, &pctx, md, NULL, key) != 1)
            die("sign init");
        if (alg[0] == 'P' && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
            die("pss");
        if (EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1)
            die("sign");
        if (alg[0] == 'E') {
            siglen = der_to_raw(sig, siglen, raw, strstr(alg, "384") ? 48 : 32);
            memcpy(sig, raw, siglen);
        }
    }
    if (siglen == 0)
        sig64 = strdup("");
    else if (kbr_b64url_encode(sig, siglen, &sig64) != KBR_OK)
        die("encode");
    if (asprintf(&out, "%s.%s", input, sig64) < 0)
        die("memory");
    EVP_MD_CTX_free(ctx);
    free(h);
    free(p);
    free(input);
    free(sig64);
    return out;
}

char *kbt_idtoken(EVP_PKEY *key, const char *alg, const char *kid, const json_t *claims)
{
    json_t *header = json_pack("{s:s,s:s,s:s}", "alg", alg, "kid", kid, "typ", "JWT");
    char *h = json_dumps(header, JSON_COMPACT), *p = json_dumps(claims, JSON_COMPACT);
    char *token = kbt_jws(h, p, key, alg);

    json_decref(header);
    free(h);
    free(p);
    return token;
}

/* ---- the server ---- */

struct kbt_srv {
    int fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    bool stop;
    int status, hits;
    char *body;
};

static void serve_one(kbt_srv *s, int c)
{
    char req[8192], *resp = NULL;
    size_t got = 0;
    struct pollfd p = {.fd = c, .events = POLLIN};

    while (got < sizeof(req) - 1 && poll(&p, 1, 2000) == 1) {
        ssize_t n = recv(c, req + got, sizeof(req) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL)
            break;
    }
    pthread_mutex_lock(&s->lock);
    s->hits++;
    if (asprintf(&resp,
                 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s",
                 s->status, strlen(s->body), s->body) < 0)
        resp = NULL;
    pthread_mutex_unlock(&s->lock);
    if (resp != NULL && send(c, resp, strlen(resp), MSG_NOSIGNAL) < 0)
        perror("idp send");
    free(resp);
    close(c);
}

static void *srv_loop(void *arg)
{
    kbt_srv *s = arg;

    for (;;) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        bool stop;
        pthread_mutex_lock(&s->lock);
        stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            return NULL;
        if (poll(&p, 1, 100) == 1) {
            int c = accept(s->fd, NULL, NULL);
            if (c >= 0)
                serve_one(s, c);
        }
    }
}

kbt_srv *kbt_srv_start(void)
{
    kbt_srv *s = calloc(1, sizeof(*s));
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int one = 1;

    if (s == NULL)
        die("memory");
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->fd, 16) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &len) != 0)
        die("listen");
    s->port = ntohs(a.sin_port);
    s->status = 404;
    s->body = strdup("{}");
    pthread_mutex_init(&s->lock, NULL);
    if (pthread_create(&s->thread, NULL, srv_loop, s) != 0)
        die("thread");
    return s;
}

int kbt_srv_port(const kbt_srv *s)
{
    return s->port;
}

void kbt_srv_set(kbt_srv *s, int status, const char *body)
{
    pthread_mutex_lock(&s->lock);
    free(s->body);
    s->body = strdup(body);
    s->status = status;
    pthread_mutex_unlock(&s->lock);
}

int kbt_srv_hits(kbt_srv *s)
{
    int n;

    pthread_mutex_lock(&s->lock);
    n = s->hits;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void kbt_srv_stop(kbt_srv *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    close(s->fd);
    pthread_mutex_destroy(&s->lock);
    free(s->body);
    free(s);
}
