/*
 * jwt.c - issuing (signing input and assembly around an HSM signature) and
 * the strict verification of a bearer token.
 *
 * Verification reads the header and the claims with jansson, duplicate
 * keys refused, and checks the ES256 signature with OpenSSL.  Nothing in
 * the token chooses the algorithm, which is what alg-confusion attacks
 * ("none", HS256 keyed with the public PEM) feed on: the header must say
 * ES256 and the signature is verified as ES256 whatever it says.  The kid
 * only selects among the broker's own P-256 issuer keys, by exact match: an
 * unknown kid is refused before any signature is checked, and the signature
 * is checked against that one key, never tried against the others.  JWT
 * libraries of the 1.10 era take the algorithm from the header and keep
 * unwiped copies of the token; this code does neither, and wipes what it
 * decodes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "policy_int.h"

#define ES256_SIG_LEN 64
/* base64url of 64 bytes, unpadded */
#define ES256_SIG_B64_LEN 86

typedef struct {
    const char *p;
    size_t len;
} segment;

static const char *const sub_kinds[] = {"ci", "factory", "ota", "security", "service"};

bool kbr_jti_valid(const char *s)
{
    size_t i;

    for (i = 0; s != NULL && i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s != NULL && s[i] == '\0';
}

bool kbr_policy_sub_valid(const char *sub)
{
    const char *colon = sub != NULL ? strchr(sub, ':') : NULL;
    size_t kind_len, name_len;
    bool kind_ok = false;

    if (colon == NULL)
        return false;
    kind_len = (size_t)(colon - sub);
    name_len = strlen(colon + 1);
    for (size_t i = 0; i < sizeof(sub_kinds) / sizeof(sub_kinds[0]); i++)
        kind_ok |= strlen(sub_kinds[i]) == kind_len && strncmp(sub, sub_kinds[i], kind_len) == 0;
    return kind_ok && kbr_principal_name_valid(colon + 1, name_len);
}

/* ---- issuing ---- */

static kbr_err b64url_json(const json_t *v, char **out)
{
    kbr_err err = KBR_OK;
    char *canon = NULL;

    *out = NULL;
    KBR_GUARD(kbr_json_canonical(v, &canon));
    KBR_GUARD(kbr_b64url_encode((const unsigned char *)canon, strlen(canon), out));
out:
    free(canon);
    return err;
}

static json_t *es256_header(const char *kid)
{
    if (kid == NULL)
        return json_pack("{s:s, s:s}", "alg", "ES256", "typ", "JWT");
    return json_pack("{s:s, s:s, s:s}", "alg", "ES256", "kid", kid, "typ", "JWT");
}

static kbr_err join_dot(const char *a, const char *b, char **out)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);

    *out = NULL;
    if (s == NULL)
        return KBR_ERR_NOMEM;
    snprintf(s, n, "%s.%s", a, b);
    *out = s;
    return KBR_OK;
}

kbr_err kbr_jwt_signing_input(const json_t *claims, const char *kid, char **input)
{
    kbr_err err = KBR_OK;
    json_t *header = NULL;
    char *h64 = NULL, *p64 = NULL;

    *input = NULL;
    KBR_ENSURE(json_is_object(claims), KBR_ERR_BAD_REQUEST);
    header = es256_header(kid);
    KBR_ENSURE(header != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(b64url_json(header, &h64));
    KBR_GUARD(b64url_json(claims, &p64));
    KBR_GUARD(join_dot(h64, p64, input));
out:
    json_decref(header);
    free(h64);
    free(p64);
    return err;
}

kbr_err kbr_jwt_assemble(const char *input, const unsigned char *sig, size_t siglen, char **token)
{
    kbr_err err = KBR_OK;
    char *s64 = NULL;

    *token = NULL;
    KBR_ENSURE(input != NULL && sig != NULL && siglen == ES256_SIG_LEN, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(kbr_b64url_encode(sig, siglen, &s64));
    KBR_GUARD(join_dot(input, s64, token));
out:
    if (s64 != NULL)
        OPENSSL_cleanse(s64, strlen(s64));
    free(s64);
    return err;
}

/* ---- verification: shape and header ---- */

static bool b64url_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Exactly three segments of the base64url alphabet; header and payload non-empty. */
static kbr_err split_segments(const char *token, segment seg[3], kbr_msg *msg)
{
    size_t len = strnlen(token, KBR_JWT_MAX_LEN + 1), n = 0;

    if (len > KBR_JWT_MAX_LEN)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token longer than %d bytes",
                        KBR_JWT_MAX_LEN);
    seg[0].p = token;
    for (size_t i = 0; i < len; i++) {
        if (token[i] == '.' && n < 2) {
            seg[n].len = (size_t)(token + i - seg[n].p);
            seg[++n].p = token + i + 1;
        } else if (!b64url_char_ok(token[i])) {
            return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token is not three base64url segments");
        }
    }
    if (n != 2 || seg[0].len == 0 || seg[1].len == 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token is not three base64url segments");
    seg[2].len = (size_t)(token + len - seg[2].p);
    return KBR_OK;
}

/* Wiped before it is freed: a decoded token segment. */
static void free_wiped(unsigned char *p, size_t len)
{
    if (p != NULL)
        OPENSSL_cleanse(p, len);
    free(p);
}

/* A segment decoded and parsed as one JSON object, duplicate keys refused. */
static kbr_err segment_json(const segment *s, json_t **out)
{
    kbr_err err = KBR_OK;
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    json_t *v = NULL;
    json_error_t jerr;

    *out = NULL;
    KBR_GUARD(kbr_b64url_decode(s->p, s->len, &raw, &rawlen));
    v = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, &jerr);
    KBR_ENSURE(json_is_object(v), KBR_ERR_BAD_REQUEST);
    *out = v;
    v = NULL;
out:
    json_decref(v);
    free_wiped(raw, rawlen);
    return err;
}

static kbr_err check_header_members(const json_t *h, kbr_msg *msg)
{
    void *it;

    for (it = json_object_iter((json_t *)h); it != NULL;
         it = json_object_iter_next((json_t *)h, it)) {
        const char *k = json_object_iter_key(it);
        if (strcmp(k, "alg") != 0 && strcmp(k, "typ") != 0 && strcmp(k, "kid") != 0)
            return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                            "token header has a member other than alg, typ and kid");
    }
    if (json_object_get(h, "kid") == NULL)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token header has no kid");
    if (!json_is_string(json_object_get(h, "kid")))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token header kid must be a string");
    return KBR_OK;
}

/* The header pinned to ES256/JWT; its kid into kid (one the broker never gave when longer). */
static kbr_err check_header(const segment *s, char kid[64], kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *h = NULL;
    const char *alg, *typ;
    const json_t *k;

    if (segment_json(s, &h) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token header is not a JSON object");
    alg = json_string_value(json_object_get(h, "alg"));
    typ = json_string_value(json_object_get(h, "typ"));
    KBR_ENSURE(alg != NULL && strcmp(alg, "ES256") == 0,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token algorithm must be ES256"));
    KBR_ENSURE(typ != NULL && strcmp(typ, "JWT") == 0,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token type must be JWT"));
    KBR_GUARD(check_header_members(h, msg));
    k = json_object_get(h, "kid");
    KBR_ENSURE(json_string_length(k) > 0 && json_string_length(k) < 64 &&
                   strlen(json_string_value(k)) == json_string_length(k),
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                        "token kid is not one of this broker's issuer keys"));
    memcpy(kid, json_string_value(k), json_string_length(k) + 1);
out:
    json_decref(h);
    return err;
}

/*
 * ES256 over the first two segments as they appear in the token, with the
 * signature as JWS carries it (r||s, 32 bytes each).  The algorithm is not
 * read from anything the token says: the header was pinned to ES256 above,
 * and here SHA-256 and a P-256 key the broker trusts are fixed.
 */
static kbr_err check_signature(const segment seg[3], EVP_PKEY *pub, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_MD_CTX *ctx = NULL;
    unsigned char *raw = NULL, *der = NULL;
    size_t rawlen = 0, derlen = 0;

    KBR_ENSURE(seg[2].len == ES256_SIG_B64_LEN,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token signature is not 64 bytes"));
    KBR_ENSURE(
        kbr_b64url_decode(seg[2].p, seg[2].len, &raw, &rawlen) == KBR_OK && rawlen == ES256_SIG_LEN,
        kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token signature is not canonical base64url"));
    KBR_ENSURE(kbr_pkey_is_p256(pub), KBR_ERR_CRYPTO);
    KBR_GUARD(kbr_ecdsa_raw_to_der(raw, rawlen, &der, &derlen));
    ctx = EVP_MD_CTX_new();
    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_DigestVerifyInit(ctx, NULL, kbr_md_sha256(), NULL, pub) == 1, KBR_ERR_CRYPTO);
    /* The signing input is header.payload, ending where the signature's '.' is. */
    KBR_ENSURE(EVP_DigestVerify(ctx, der, derlen, (const unsigned char *)seg[0].p,
                                seg[0].len + 1 + seg[1].len) == 1,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token signature does not verify"));
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    free_wiped(der, derlen);
    free_wiped(raw, rawlen);
    return err;
}

/* ---- verification: claims ---- */

static bool aud_has(const json_t *aud, const char *instance_id)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), instance_id) == 0;
    for (size_t i = 0; i < json_array_size(aud); i++) {
        const char *s = json_string_value(json_array_get(aud, i));
        if (s != NULL && strcmp(s, instance_id) == 0)
            return true;
    }
    return false;
}

static kbr_err check_iss_aud(const json_t *c, const char *instance_id, kbr_msg *msg)
{
    const char *iss = json_string_value(json_object_get(c, "iss"));

    if (iss == NULL || strcmp(iss, instance_id) != 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token issuer is not this broker");
    if (!aud_has(json_object_get(c, "aud"), instance_id))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token audience is not this broker");
    return KBR_OK;
}

/* An optional integer claim; absent leaves *out alone. */
static kbr_err int_claim(const json_t *c, const char *name, time_t *out, kbr_msg *msg)
{
    const json_t *v = json_object_get(c, name);

    if (v == NULL)
        return KBR_OK;
    if (!json_is_integer(v))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token claim %s must be an integer", name);
    *out = (time_t)json_integer_value(v);
    return KBR_OK;
}

static kbr_err check_times(const json_t *c, time_t now, long leeway, kbr_jwt_claims *out,
                           kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    time_t iat = 0;

    KBR_ENSURE(json_object_get(c, "exp") != NULL,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token has no exp claim"));
    KBR_GUARD(int_claim(c, "exp", &out->exp, msg));
    KBR_GUARD(int_claim(c, "nbf", &out->nbf, msg));
    KBR_GUARD(int_claim(c, "iat", &iat, msg));
    KBR_ENSURE(out->exp > now - leeway, kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token expired"));
    KBR_ENSURE(out->nbf <= now + leeway,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token not yet valid"));
out:
    return err;
}

static kbr_err check_jti_sub(const json_t *c, kbr_jwt_claims *out, kbr_msg *msg)
{
    const char *jti = json_string_value(json_object_get(c, "jti"));
    const char *sub = json_string_value(json_object_get(c, "sub"));

    if (!kbr_jti_valid(jti))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token jti must be 32 lowercase hex chars");
    if (!kbr_policy_sub_valid(sub))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token sub must be <kind>:<name>");
    memcpy(out->jti, jti, sizeof(out->jti));
    out->sub = strdup(sub);
    return out->sub == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

static kbr_err check_kbr(const json_t *c, kbr_msg *msg)
{
    kbr_scope scope;
    kbr_msg why = {{0}};
    kbr_err err = kbr_scope_from_json(json_object_get(c, "kbr"), &scope, &why);

    kbr_scope_cleanup(&scope);
    if (err == KBR_ERR_BAD_REQUEST)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token claim kbr: %s", why.text);
    return err;
}

static kbr_err check_cnf(const json_t *c, kbr_jwt_claims *out, kbr_msg *msg)
{
    const json_t *cnf = json_object_get(c, "cnf");
    const json_t *x5t = json_object_get(cnf, "x5t#S256");

    if (cnf == NULL)
        return KBR_OK;
    if (!json_is_object(cnf) || !json_is_string(x5t) || json_string_length(x5t) == 0 ||
        json_string_length(x5t) >= sizeof(out->cnf_x5t))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                        "token claim cnf must be {\"x5t#S256\": <thumbprint>}");
    memcpy(out->cnf_x5t, json_string_value(x5t), json_string_length(x5t) + 1);
    return KBR_OK;
}

static kbr_err check_claims(const segment *s, const char *instance_id, time_t now, long leeway,
                            kbr_jwt_claims *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *c = NULL;

    KBR_ENSURE(segment_json(s, &c) == KBR_OK,
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token payload is not a JSON object"));
    KBR_GUARD(check_iss_aud(c, instance_id, msg));
    KBR_GUARD(check_times(c, now, leeway, out, msg));
    KBR_GUARD(check_jti_sub(c, out, msg));
    KBR_GUARD(check_kbr(c, msg));
    KBR_GUARD(check_cnf(c, out, msg));
out:
    json_decref(c);
    return err;
}

void kbr_jwt_claims_cleanup(kbr_jwt_claims *c)
{
    if (c == NULL)
        return;
    free(c->sub);
    memset(c, 0, sizeof(*c));
}

kbr_err kbr_jwt_verify(const char *token, kbr_jwt_key_fn key_for, void *arg,
                       const char *instance_id, time_t now, long leeway, kbr_jwt_claims *out,
                       void **key, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    segment seg[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    kbr_jwt_claims c = {.sub = NULL};
    EVP_PKEY *pub = NULL;
    void *picked = NULL;

    memset(out, 0, sizeof(*out));
    *key = NULL;
    KBR_GUARD(split_segments(token, seg, msg));
    KBR_GUARD(check_header(&seg[0], c.kid, msg));
    KBR_GUARD(key_for(arg, c.kid, now, &pub, &picked, msg));
    KBR_GUARD(check_signature(seg, pub, msg));
    KBR_GUARD(check_claims(&seg[1], instance_id, now, leeway, &c, msg));
    *key = picked;
    *out = c;
    memset(&c, 0, sizeof(c));
out:
    kbr_jwt_claims_cleanup(&c);
    return err;
}
