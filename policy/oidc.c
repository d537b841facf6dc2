/*
 * oidc.c - ID tokens of outside OpenID Connect issuers (GitHub Actions, GitLab CI, ...), the
 * key sets (JWKS) they are checked against, and what the exchange rules read from them.
 *
 * Nothing here trusts the token to choose how it is checked: the algorithms an issuer may
 * use are configured (the header's alg must be one of them and must fit the key its kid
 * names), the key comes from the issuer's own key set by exact kid, never from the header
 * (jwk, jku, x5u, x5c and crit are refused outright), and the claims are read with
 * duplicate keys refused.  Segments decoded from the token are wiped before they are freed:
 * an ID token is a credential for as long as it lives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "policy_int.h"

#define JWKS_MAX_KEYS 64
#define KID_MAX       127
#define RSA_MIN_BITS  2048

static const struct {
    kbr_jwa alg;
    const char *name;
} jwa_names[] = {
    {KBR_JWA_RS256, "RS256"}, {KBR_JWA_RS384, "RS384"}, {KBR_JWA_RS512, "RS512"},
    {KBR_JWA_PS256, "PS256"}, {KBR_JWA_ES256, "ES256"}, {KBR_JWA_ES384, "ES384"},
};

kbr_err kbr_jwa_from_name(const char *name, kbr_jwa *out)
{
    for (size_t i = 0; name != NULL && i < sizeof(jwa_names) / sizeof(jwa_names[0]); i++) {
        if (strcmp(name, jwa_names[i].name) == 0) {
            *out = jwa_names[i].alg;
            return KBR_OK;
        }
    }
    return KBR_ERR_BAD_REQUEST;
}

const char *kbr_jwa_name(kbr_jwa alg)
{
    for (size_t i = 0; i < sizeof(jwa_names) / sizeof(jwa_names[0]); i++)
        if (jwa_names[i].alg == alg)
            return jwa_names[i].name;
    return "?";
}

/* ---- key sets ---- */

typedef struct {
    char kid[KID_MAX + 1];
    char alg[8]; /* the JWK's own "alg", "" when it has none */
    EVP_PKEY *pub;
} jwk_entry;

struct kbr_jwks {
    jwk_entry *keys;
    size_t n;
};

void kbr_jwks_free(kbr_jwks *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        EVP_PKEY_free(s->keys[i].pub);
    free(s->keys);
    free(s);
}

size_t kbr_jwks_size(const kbr_jwks *s)
{
    return s != NULL ? s->n : 0;
}

static const jwk_entry *jwks_find(const kbr_jwks *s, const char *kid)
{
    for (size_t i = 0; s != NULL && kid != NULL && i < s->n; i++)
        if (strcmp(s->keys[i].kid, kid) == 0)
            return &s->keys[i];
    return NULL;
}

bool kbr_jwks_has(const kbr_jwks *s, const char *kid)
{
    return jwks_find(s, kid) != NULL;
}

/* A base64url member of a JWK as a big-endian number. */
static kbr_err b64_member(const json_t *jwk, const char *name, unsigned char **out, size_t *len)
{
    const char *v = json_string_value(json_object_get(jwk, name));

    *out = NULL;
    *len = 0;
    if (v == NULL || v[0] == '\0')
        return KBR_ERR_BAD_REQUEST;
    return kbr_b64url_decode(v, strlen(v), out, len);
}

static kbr_err rsa_from_jwk(const json_t *jwk, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    unsigned char *n = NULL, *e = NULL;
    size_t nlen = 0, elen = 0;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;

    *out = NULL;
    KBR_GUARD(b64_member(jwk, "n", &n, &nlen));
    KBR_GUARD(b64_member(jwk, "e", &e, &elen));
    KBR_ENSURE(nlen * 8 >= RSA_MIN_BITS && nlen <= 1024 && elen <= 8, KBR_ERR_BAD_REQUEST);
    bn_n = BN_bin2bn(n, (int)nlen, NULL);
    bn_e = BN_bin2bn(e, (int)elen, NULL);
    KBR_ENSURE(bn_n != NULL && bn_e != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(BN_num_bits(bn_n) >= RSA_MIN_BITS && BN_is_odd(bn_e) && !BN_is_one(bn_e),
               KBR_ERR_BAD_REQUEST);
    bld = OSSL_PARAM_BLD_new();
    KBR_ENSURE(bld != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
                   OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1,
               KBR_ERR_NOMEM);
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    KBR_ENSURE(params != NULL && ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_PKEY_fromdata_init(ctx) == 1 &&
                   EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) == 1,
               KBR_ERR_BAD_REQUEST);
out:
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return err;
}

static kbr_err ec_from_jwk(const json_t *jwk, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *group = NULL;
    size_t coord = 0, xlen = 0, ylen = 0;
    unsigned char *x = NULL, *y = NULL, point[1 + 2 * 48];
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;

    *out = NULL;
    if (crv != NULL && strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        coord = 32;
    } else if (crv != NULL && strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        coord = 48;
    }
    KBR_ENSURE(group != NULL, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(b64_member(jwk, "x", &x, &xlen));
    KBR_GUARD(b64_member(jwk, "y", &y, &ylen));
    KBR_ENSURE(xlen == coord && ylen == coord, KBR_ERR_BAD_REQUEST);
    point[0] = 0x04;
    memcpy(point + 1, x, coord);
    memcpy(point + 1 + coord, y, coord);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * coord);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_PKEY_fromdata_init(ctx) == 1 &&
                   EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) == 1,
               KBR_ERR_BAD_REQUEST);
    /* a point off the curve is no key */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL);
    KBR_ENSURE(check != NULL && EVP_PKEY_public_check(check) == 1, KBR_ERR_BAD_REQUEST);
out:
    if (err != KBR_OK) {
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    ERR_clear_error();
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    free(x);
    free(y);
    return err;
}

/* One member of "keys": added, skipped (not a signing key of a type used here), or refused. */
static kbr_err jwks_add(kbr_jwks *s, const json_t *jwk, size_t idx, kbr_msg *msg)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *kid = json_string_value(json_object_get(jwk, "kid"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    const char *alg = json_string_value(json_object_get(jwk, "alg"));
    kbr_jwa known;
    EVP_PKEY *pub = NULL;
    kbr_err err;

    if (!json_is_object(jwk))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "keys[%zu] is not an object", idx);
    /* encryption keys and key types no ID token algorithm here uses */
    if ((use != NULL && strcmp(use, "sig") != 0) || kty == NULL ||
        (strcmp(kty, "RSA") != 0 && strcmp(kty, "EC") != 0))
        return KBR_OK;
    if (alg != NULL && kbr_jwa_from_name(alg, &known) != KBR_OK)
        return KBR_OK;
    if (kid == NULL || kid[0] == '\0' || strlen(kid) > KID_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "keys[%zu] has no kid of 1 to %d characters", idx,
                        KID_MAX);
    if (jwks_find(s, kid) != NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "keys[%zu]: kid \"%s\" appears twice", idx, kid);
    if (s->n >= JWKS_MAX_KEYS)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "more than %d keys", JWKS_MAX_KEYS);
    err = strcmp(kty, "RSA") == 0 ? rsa_from_jwk(jwk, &pub) : ec_from_jwk(jwk, &pub);
    if (err == KBR_ERR_NOMEM)
        return err;
    if (err != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "keys[%zu] (kid \"%s\"): not a usable %s public key%s", idx, kid, kty,
                        strcmp(kty, "RSA") == 0 ? " of at least 2048 bits" : " on P-256 or P-384");
    s->keys[s->n].pub = pub;
    snprintf(s->keys[s->n].kid, sizeof(s->keys[s->n].kid), "%s", kid);
    snprintf(s->keys[s->n].alg, sizeof(s->keys[s->n].alg), "%s", alg != NULL ? alg : "");
    s->n++;
    return KBR_OK;
}

kbr_err kbr_jwks_parse(const char *text, size_t len, kbr_jwks **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *doc = NULL, *keys;
    json_error_t jerr;
    kbr_jwks *s = NULL;

    *out = NULL;
    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    KBR_ENSURE(doc != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "not JSON: %s at line %d", jerr.text, jerr.line));
    keys = json_object_get(doc, "keys");
    KBR_ENSURE(json_is_array(keys),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "not a JWK Set: no \"keys\" array"));
    s = calloc(1, sizeof(*s));
    KBR_ENSURE(s != NULL, KBR_ERR_NOMEM);
    s->keys = calloc(JWKS_MAX_KEYS, sizeof(*s->keys));
    KBR_ENSURE(s->keys != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < json_array_size(keys); i++)
        KBR_GUARD(jwks_add(s, json_array_get(keys, i), i, msg));
    KBR_ENSURE(s->n > 0, kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                  "no RSA or EC signing key with a kid in the set"));
    *out = s;
    s = NULL;
out:
    kbr_jwks_free(s);
    json_decref(doc);
    return err;
}

/* ---- the token ---- */

typedef struct {
    const char *p;
    size_t len;
} seg;

static bool b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static kbr_err split(const char *token, seg s[3], kbr_msg *msg)
{
    size_t len = token != NULL ? strnlen(token, KBR_IDTOKEN_MAX_LEN + 1) : 0, n = 0;

    if (len == 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token is empty");
    if (len > KBR_IDTOKEN_MAX_LEN)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token is longer than %d bytes",
                        KBR_IDTOKEN_MAX_LEN);
    s[0].p = token;
    for (size_t i = 0; i < len; i++) {
        if (token[i] == '.' && n < 2) {
            s[n].len = (size_t)(token + i - s[n].p);
            s[++n].p = token + i + 1;
        } else if (!b64url_char(token[i])) {
            return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                            "id_token is not three base64url segments");
        }
    }
    if (n != 2 || s[0].len == 0 || s[1].len == 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token is not three base64url segments");
    s[2].len = (size_t)(token + len - s[2].p);
    return KBR_OK;
}

static json_t *seg_json(const seg *s)
{
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    json_t *v = NULL;

    if (kbr_b64url_decode(s->p, s->len, &raw, &rawlen) == KBR_OK)
        v = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, NULL);
    if (raw != NULL)
        OPENSSL_cleanse(raw, rawlen);
    free(raw);
    if (v != NULL && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

kbr_err kbr_idtoken_peek(const char *token, char **iss, char **kid, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    seg s[3];
    json_t *h = NULL, *c = NULL;
    const char *i, *k;

    *iss = *kid = NULL;
    KBR_GUARD(split(token, s, msg));
    h = seg_json(&s[0]);
    c = seg_json(&s[1]);
    KBR_ENSURE(h != NULL,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token header is not a JSON object"));
    KBR_ENSURE(c != NULL,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token payload is not a JSON object"));
    i = json_string_value(json_object_get(c, "iss"));
    k = json_string_value(json_object_get(h, "kid"));
    KBR_ENSURE(i != NULL && i[0] != '\0',
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token has no iss claim"));
    KBR_ENSURE(k != NULL && k[0] != '\0' && strlen(k) <= KID_MAX,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token header has no kid"));
    *iss = strdup(i);
    *kid = strdup(k);
    KBR_ENSURE(*iss != NULL && *kid != NULL, KBR_ERR_NOMEM);
out:
    if (err != KBR_OK) {
        free(*iss);
        free(*kid);
        *iss = *kid = NULL;
    }
    json_decref(h);
    json_decref(c);
    return err;
}

/* The header: only members that change nothing about how it is checked, alg among algs. */
static kbr_err check_header(const seg *s, unsigned algs, kbr_jwa *alg, kbr_msg *msg)
{
    static const char *const allowed[] = {"alg", "typ", "kid", "x5t", "x5t#S256", NULL};
    kbr_err err = KBR_OK;
    json_t *h = seg_json(s);
    const char *name, *typ;
    void *it;

    KBR_ENSURE(h != NULL,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token header is not a JSON object"));
    for (it = json_object_iter(h); it != NULL; it = json_object_iter_next(h, it)) {
        const char *k = json_object_iter_key(it);
        size_t i = 0;
        while (allowed[i] != NULL && strcmp(allowed[i], k) != 0)
            i++;
        KBR_ENSURE(allowed[i] != NULL,
                   kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                            "id_token header member \"%.32s\" is not accepted", k));
    }
    typ = json_string_value(json_object_get(h, "typ"));
    KBR_ENSURE(json_object_get(h, "typ") == NULL || (typ != NULL && strcmp(typ, "JWT") == 0),
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token type must be JWT"));
    name = json_string_value(json_object_get(h, "alg"));
    KBR_ENSURE(name != NULL && kbr_jwa_from_name(name, alg) == KBR_OK && (*alg & algs) != 0,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                        "id_token algorithm is not one this issuer is configured for"));
out:
    json_decref(h);
    return err;
}

static bool key_fits(const jwk_entry *k, kbr_jwa alg)
{
    char group[64] = "";
    int bits = EVP_PKEY_get_bits(k->pub);

    if (k->alg[0] != '\0' && strcmp(k->alg, kbr_jwa_name(alg)) != 0)
        return false;
    if (alg == KBR_JWA_ES256 || alg == KBR_JWA_ES384) {
        if (EVP_PKEY_get_base_id(k->pub) != EVP_PKEY_EC ||
            EVP_PKEY_get_utf8_string_param(k->pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           NULL) != 1)
            return false;
        return strcmp(group, alg == KBR_JWA_ES256 ? "prime256v1" : "secp384r1") == 0;
    }
    return EVP_PKEY_get_base_id(k->pub) == EVP_PKEY_RSA && bits >= RSA_MIN_BITS;
}

static const EVP_MD *jwa_md(kbr_jwa alg)
{
    switch (alg) {
    case KBR_JWA_RS384:
    case KBR_JWA_ES384:
        return EVP_sha384();
    case KBR_JWA_RS512:
        return EVP_sha512();
    default:
        return EVP_sha256();
    }
}

static kbr_err check_signature(const seg s[3], const jwk_entry *k, kbr_jwa alg, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char *raw = NULL, *der = NULL;
    size_t rawlen = 0, derlen = 0;
    const unsigned char *sig;
    size_t siglen;
    EVP_MD_CTX *ctx = NULL;
    EVP_PKEY_CTX *pctx = NULL;

    KBR_ENSURE(s[2].len > 0 && kbr_b64url_decode(s[2].p, s[2].len, &raw, &rawlen) == KBR_OK,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token signature is not base64url"));
    sig = raw;
    siglen = rawlen;
    if (alg == KBR_JWA_ES256 || alg == KBR_JWA_ES384) {
        KBR_ENSURE(rawlen == (alg == KBR_JWA_ES256 ? 64u : 96u),
                   kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                            "id_token signature has the wrong length for %s", kbr_jwa_name(alg)));
        KBR_GUARD(kbr_ecdsa_raw_to_der(raw, rawlen, &der, &derlen));
        sig = der;
        siglen = derlen;
    }
    ctx = EVP_MD_CTX_new();
    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_DigestVerifyInit(ctx, &pctx, jwa_md(alg), NULL, k->pub) == 1, KBR_ERR_CRYPTO);
    if (alg == KBR_JWA_PS256)
        KBR_ENSURE(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1,
                   KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)s[0].p,
                                s[0].len + 1 + s[1].len) == 1,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token signature does not verify"));
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    if (der != NULL)
        OPENSSL_cleanse(der, derlen);
    free(der);
    if (raw != NULL)
        OPENSSL_cleanse(raw, rawlen);
    free(raw);
    return err;
}

/* A NumericDate (RFC 7519: seconds, possibly with a fraction); false when absent or not one. */
static bool numeric_date(const json_t *c, const char *name, time_t *out)
{
    const json_t *v = json_object_get(c, name);
    double d;

    if (json_is_integer(v)) {
        *out = (time_t)json_integer_value(v);
        return json_integer_value(v) >= 0;
    }
    if (!json_is_real(v))
        return false;
    d = json_real_value(v);
    if (!(d >= 0 && d < 1e11))
        return false;
    *out = (time_t)d;
    return true;
}

static bool aud_has(const json_t *aud, const char *audience)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), audience) == 0;
    for (size_t i = 0; i < json_array_size(aud); i++) {
        const char *s = json_string_value(json_array_get(aud, i));
        if (s != NULL && strcmp(s, audience) == 0)
            return true;
    }
    return false;
}

static kbr_err check_claims(const json_t *c, const kbr_idtoken_rules *r, time_t now,
                            kbr_idtoken *out, kbr_msg *msg)
{
    const char *iss = json_string_value(json_object_get(c, "iss"));
    time_t nbf = 0;

    if (iss == NULL || strcmp(iss, r->issuer) != 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token issuer is not %s", r->issuer);
    if (!aud_has(json_object_get(c, "aud"), r->audience))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                        "id_token audience does not include the one configured for this issuer");
    if (!numeric_date(c, "exp", &out->exp))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token has no valid exp claim");
    if (!numeric_date(c, "iat", &out->iat))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token has no valid iat claim");
    if (json_object_get(c, "nbf") != NULL && !numeric_date(c, "nbf", &nbf))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token nbf claim is not a date");
    /* exp without leeway: what is issued lives at most as long as the ID token has left */
    if (out->exp <= now)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token expired");
    if (nbf > now + r->leeway)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token not yet valid (nbf)");
    if (out->iat > now + r->leeway)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token issued in the future (iat)");
    if (out->exp <= out->iat)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token expires before it was issued");
    return KBR_OK;
}

void kbr_idtoken_cleanup(kbr_idtoken *t)
{
    if (t == NULL)
        return;
    json_decref(t->claims);
    memset(t, 0, sizeof(*t));
}

kbr_err kbr_idtoken_verify(const char *token, const kbr_idtoken_rules *rules, const kbr_jwks *keys,
                           time_t now, kbr_idtoken *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    seg s[3];
    kbr_jwa alg = 0;
    char *iss = NULL, *kid = NULL;
    const jwk_entry *k;
    kbr_idtoken t = {.claims = NULL};

    memset(out, 0, sizeof(*out));
    KBR_GUARD(split(token, s, msg));
    KBR_GUARD(kbr_idtoken_peek(token, &iss, &kid, msg));
    KBR_GUARD(check_header(&s[0], rules->algs, &alg, msg));
    k = jwks_find(keys, kid);
    KBR_ENSURE(k != NULL,
               kbr_fail(msg, KBR_ERR_NOT_FOUND, "id_token kid is not in the issuer's key set"));
    KBR_ENSURE(key_fits(k, alg),
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token kid names a key that is not for %s",
                        kbr_jwa_name(alg)));
    KBR_GUARD(check_signature(s, k, alg, msg));
    t.claims = seg_json(&s[1]);
    KBR_ENSURE(t.claims != NULL,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "id_token payload is not a JSON object"));
    KBR_GUARD(check_claims(t.claims, rules, now, &t, msg));
    t.alg = alg;
    snprintf(t.kid, sizeof(t.kid), "%s", kid);
    *out = t;
    t.claims = NULL;
out:
    kbr_idtoken_cleanup(&t);
    free(iss);
    free(kid);
    return err;
}

/* ---- what rules read ---- */

bool kbr_glob_match(const char *pattern, const char *value)
{
    const char *star = NULL, *resume = NULL;

    while (*value != '\0') {
        if (*pattern == '*') {
            star = pattern++;
            resume = value;
        } else if (*pattern == *value) {
            pattern++;
            value++;
        } else if (star != NULL) {
            pattern = star + 1;
            value = ++resume;
        } else {
            return false;
        }
    }
    while (*pattern == '*')
        pattern++;
    return *pattern == '\0';
}

kbr_err kbr_claim_text(const json_t *claims, const char *name, char **out)
{
    const json_t *v = json_object_get(claims, name);
    char buf[32];

    *out = NULL;
    if (json_is_string(v)) {
        /* a NUL inside would make the text say less than the claim */
        if (strlen(json_string_value(v)) != json_string_length(v))
            return KBR_ERR_BAD_REQUEST;
        *out = strdup(json_string_value(v));
    } else if (json_is_boolean(v)) {
        *out = strdup(json_is_true(v) ? "true" : "false");
    } else if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        *out = strdup(buf);
    } else {
        return v == NULL ? KBR_ERR_NOT_FOUND : KBR_ERR_BAD_REQUEST;
    }
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err kbr_principal_from_template(const char *tmpl, const json_t *claims, char **out,
                                    kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    size_t cap = 256, len = 0;
    char *buf = malloc(cap), *val = NULL;
    const char *p = tmpl;

    *out = NULL;
    KBR_ENSURE(buf != NULL, KBR_ERR_NOMEM);
    while (*p != '\0') {
        const char *piece = p;
        size_t n = 1;
        if (*p == '{') {
            const char *end = strchr(p, '}');
            char name[128];
            KBR_ENSURE(end != NULL && (size_t)(end - p - 1) < sizeof(name) && end > p + 1,
                       kbr_fail(msg, KBR_ERR_CONFIG, "principal template: bad placeholder"));
            memcpy(name, p + 1, (size_t)(end - p - 1));
            name[end - p - 1] = '\0';
            err = kbr_claim_text(claims, name, &val);
            KBR_ENSURE(err != KBR_ERR_NOMEM, err);
            KBR_ENSURE(err == KBR_OK,
                       kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                                "claim %s, which the principal is made from, is %s", name,
                                err == KBR_ERR_NOT_FOUND ? "missing" : "not a string"));
            piece = val;
            n = strlen(val);
            p = end + 1;
        } else {
            p++;
        }
        while (len + n + 1 > cap) {
            char *bigger = realloc(buf, cap * 2);
            KBR_ENSURE(bigger != NULL, KBR_ERR_NOMEM);
            buf = bigger;
            cap *= 2;
        }
        memcpy(buf + len, piece, n);
        len += n;
        free(val);
        val = NULL;
    }
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
out:
    free(val);
    free(buf);
    return err;
}
