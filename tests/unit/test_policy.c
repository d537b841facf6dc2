/*
 * test_policy.c - tokens, scopes, revocation, quotas and the issuer JWK.
 *
 * The HSM is played by an OpenSSL P-256 key: it signs SHA-256 of the
 * signing input, and its DER signature is turned into raw r||s, as the
 * PKCS#11 CKM_ECDSA result would be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "../common/idp.h"
#include "kbr_policy.h"

#define NOW      ((time_t)1800000000)
#define INSTANCE "kb-test"
#define X5T      "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"

typedef struct {
    EVP_PKEY *issuer; /* the fake HSM's issuer key */
    EVP_PKEY *foreign;
    kbr_policy *p;
} fixture;

/* The issuer key's kid (its RFC 7638 thumbprint), in every header the builders below make. */
static char issuer_kid[64];

static void kid_of(EVP_PKEY *key, char kid[64])
{
    json_t *jwk = NULL;

    assert_int_equal(kbr_jwk_from_pkey(key, &jwk), KBR_OK);
    snprintf(kid, 64, "%s", json_string_value(json_object_get(jwk, "kid")));
    json_decref(jwk);
}

static EVP_PKEY *p256_new(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    assert_non_null(k);
    return k;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->issuer = p256_new();
    f->foreign = p256_new();
    kid_of(f->issuer, issuer_kid);
    assert_int_equal(kbr_policy_new(INSTANCE, &f->p), KBR_OK);
    assert_int_equal(kbr_policy_add_issuer(f->p, issuer_kid, f->issuer, true), KBR_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    kbr_policy_free(f->p);
    EVP_PKEY_free(f->issuer);
    EVP_PKEY_free(f->foreign);
    free(f);
    return 0;
}

/* ---- the fake HSM and token builders ---- */

static void hsm_sign(EVP_PKEY *key, const char *input, unsigned char sig[64])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[80];
    const unsigned char *p = der;
    size_t derlen = sizeof(der);
    ECDSA_SIG *es;

    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)input, strlen(input)),
                     1);
    es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    assert_non_null(es);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32), 32);
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(ctx);
}

static char *sign_claims(EVP_PKEY *key, const json_t *claims)
{
    char *input = NULL, *token = NULL;
    unsigned char sig[64];

    assert_int_equal(kbr_jwt_signing_input(claims, issuer_kid, &input), KBR_OK);
    hsm_sign(key, input, sig);
    assert_int_equal(kbr_jwt_assemble(input, sig, sizeof(sig), &token), KBR_OK);
    free(input);
    return token;
}

static char *b64url_str(const char *s)
{
    char *out = NULL;

    assert_int_equal(kbr_b64url_encode((const unsigned char *)s, strlen(s), &out), KBR_OK);
    return out;
}

static char *join_dot(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);

    assert_non_null(s);
    snprintf(s, n, "%s.%s", a, b);
    return s;
}

/* header.payload from raw JSON text, for what kbr_jwt_signing_input would never produce. */
static char *raw_input(const char *header, const char *payload)
{
    char *h = b64url_str(header), *p = b64url_str(payload), *in = join_dot(h, p);

    free(h);
    free(p);
    return in;
}

/* The header the broker writes, for the issuer key. */
static const char *es256_header(void)
{
    static char h[128];

    snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", issuer_kid);
    return h;
}

static char *raw_token(EVP_PKEY *key, const char *header, const char *payload)
{
    char *input = raw_input(header, payload), *token = NULL;
    unsigned char sig[64];

    hsm_sign(key, input, sig);
    assert_int_equal(kbr_jwt_assemble(input, sig, sizeof(sig), &token), KBR_OK);
    free(input);
    return token;
}

static void new_jti(char jti[33])
{
    assert_int_equal(kbr_random_hex(16, jti), KBR_OK);
}

static json_t *claims_new(const char *jti, const char *sub, time_t nbf, time_t exp)
{
    json_t *c =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:{s:[s], s:[s]}}", "iss", INSTANCE, "aud",
                  INSTANCE, "sub", sub, "iat", (json_int_t)(NOW - 10), "nbf", (json_int_t)nbf,
                  "exp", (json_int_t)exp, "jti", jti, "kbr", "ops", "sign", "keys", "fw-*");

    assert_non_null(c);
    return c;
}

static json_t *scope_json(const char *text)
{
    json_error_t jerr;
    json_t *s = json_loads(text, 0, &jerr);

    assert_non_null(s);
    return s;
}

static void fmt_time(time_t t, char buf[KBR_TIME_LEN])
{
    kbr_time_fmt(t, buf);
}

/* A registry row as the store lists it. */
static json_t *row_new(const char *jti, const char *sub, time_t exp, const char *scope)
{
    char iat[KBR_TIME_LEN], ex[KBR_TIME_LEN];
    json_t *row;

    fmt_time(NOW - 10, iat);
    fmt_time(exp, ex);
    row = json_pack("{s:s, s:s, s:o, s:s, s:n, s:s, s:n, s:s, s:n, s:i, s:s}", "jti", jti, "sub",
                    sub, "scope", scope_json(scope), "issued_at", iat, "not_before", "expires_at",
                    ex, "revoked_at", "issued_by", "security:bootstrap", "cnf_x5t", "uses", 0,
                    "kid", issuer_kid);
    assert_non_null(row);
    return row;
}

static void add_row(kbr_policy *p, json_t *row)
{
    assert_int_equal(kbr_policy_add_token(p, row), KBR_OK);
    json_decref(row);
}

/* Registers a token (scope sign on fw-*) and returns its string, signed by the issuer. */
static char *issue(fixture *f, const char *sub, time_t exp, char jti[33])
{
    json_t *claims;
    char *token;

    new_jti(jti);
    add_row(f->p, row_new(jti, sub, exp, "{\"ops\": [\"sign\"], \"keys\": [\"fw-*\"]}"));
    claims = claims_new(jti, sub, NOW - 10, exp);
    token = sign_claims(f->issuer, claims);
    json_decref(claims);
    return token;
}

static void expect_ok_at(kbr_policy *p, const char *token, time_t now, const char *x5t,
                         const char *jti)
{
    kbr_token *tok = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_policy_authenticate(p, token, now, x5t, &tok, &msg), KBR_OK);
    assert_non_null(tok);
    assert_string_equal(tok->jti, jti);
}

static void expect_ok(fixture *f, const char *token, const char *x5t, const char *jti)
{
    expect_ok_at(f->p, token, NOW, x5t, jti);
}

static void expect_refused_at(kbr_policy *p, const char *token, time_t now, const char *x5t,
                              const char *why)
{
    kbr_token *tok = (kbr_token *)1;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_policy_authenticate(p, token, now, x5t, &tok, &msg),
                     KBR_ERR_UNAUTHENTICATED);
    assert_null(tok);
    assert_string_equal(msg.text, why);
}

static void expect_refused(fixture *f, const char *token, const char *why)
{
    expect_refused_at(f->p, token, NOW, NULL, why);
}

static char *pubkey_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *pem;
    long len;

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, k), 1);
    len = BIO_get_mem_data(bio, &data);
    pem = strndup(data, (size_t)len);
    assert_non_null(pem);
    BIO_free(bio);
    return pem;
}

static kbr_policy_stats stats_of(kbr_policy *p)
{
    kbr_policy_stats st;

    kbr_policy_get_stats(p, &st);
    return st;
}

/* ---- authentication: the good path and the cache ---- */

static void test_good_token_then_cache_hit(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *token = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
    kbr_token *tok = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_policy_authenticate(f->p, token, NOW, NULL, &tok, &msg), KBR_OK);
    assert_string_equal(tok->sub, "ci:fw-pipeline");
    assert_true(kbr_policy_allows_op(tok, KBR_OP_SIGN));
    assert_false(kbr_policy_allows_op(tok, KBR_OP_PROVISION));
    assert_ptr_equal(tok, kbr_policy_find(f->p, jti));
    assert_int_equal(stats_of(f->p).cache_misses, 1);
    assert_int_equal(stats_of(f->p).cache_hits, 0);

    expect_ok(f, token, NULL, jti);
    assert_int_equal(stats_of(f->p).cache_hits, 1);
    assert_int_equal(stats_of(f->p).cache_misses, 1);
    assert_int_equal(stats_of(f->p).cache_entries, 1);
    free(token);
}

/* Signatures whose r or s start with zero bytes are where r||s handling breaks. */
static void test_many_signatures_verify(void **state)
{
    fixture *f = *state;
    char jti[33];

    for (int i = 0; i < 300; i++) {
        char *token = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
        expect_ok(f, token, NULL, jti);
        free(token);
    }
    assert_int_equal(stats_of(f->p).cache_misses, 300);
}

static void test_cache_entry_expires_with_token(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *token = issue(f, "ci:fw-pipeline", NOW + 10, jti);

    expect_ok(f, token, NULL, jti);
    assert_int_equal(stats_of(f->p).cache_entries, 1);
    expect_refused_at(f->p, token, NOW + 10, NULL, "token expired");
    assert_int_equal(stats_of(f->p).cache_entries, 0);
    free(token);
}

static void test_cache_bounded_oldest_evicted(void **state)
{
    fixture *f = *state;
    char jti[3][33];
    char *token[3];

    kbr_policy_set_cache_limit(f->p, 2);
    for (int i = 0; i < 3; i++) {
        token[i] = issue(f, "ci:fw-pipeline", NOW + 3600, jti[i]);
        expect_ok(f, token[i], NULL, jti[i]);
    }
    assert_int_equal(stats_of(f->p).cache_entries, 2);
    expect_ok(f, token[2], NULL, jti[2]);
    assert_int_equal(stats_of(f->p).cache_hits, 1);
    expect_ok(f, token[0], NULL, jti[0]);
    assert_int_equal(stats_of(f->p).cache_misses, 4);
    for (int i = 0; i < 3; i++)
        free(token[i]);
}

/*
 * The broker issues and checks its tokens on one clock: a token works until exp and not a
 * second after, cached or not, and a revocation by principal in that second agrees with
 * what authentication decides (a token that no longer authenticates is not counted live).
 */
static void test_own_tokens_end_at_exp(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *token = issue(f, "ci:fw-pipeline", NOW + 1, jti);

    expect_ok(f, token, NULL, jti);
    expect_refused_at(f->p, token, NOW + 1, NULL, "token expired");
    expect_refused_at(f->p, token, NOW + 30, NULL, "token expired");
    assert_int_equal(kbr_policy_revoke_sub(f->p, "ci:fw-pipeline", NOW + 1, NULL), 0);
    assert_int_equal(kbr_policy_revoke_sub(f->p, "ci:fw-pipeline", NOW, NULL), 1);
    free(token);
}

/* ---- authentication: attacks ---- */

static void test_missing_and_garbage(void **state)
{
    fixture *f = *state;
    char big[8192 + 2];

    expect_refused(f, NULL, "missing bearer token");
    expect_refused(f, "", "missing bearer token");
    expect_refused(f, "garbage", "token is not three base64url segments");
    expect_refused(f, "a b.c.d", "token is not three base64url segments");
    expect_refused(f, "a.b.c.d", "token is not three base64url segments");
    expect_refused(f, "..", "token is not three base64url segments");
    expect_refused(f, "%%%.e30.e30", "token is not three base64url segments");
    expect_refused(f, "e30.e30.", "token algorithm must be ES256");
    expect_refused(f, "bm90IGpzb24.e30.e30", "token header is not a JSON object");
    expect_refused(f, "A.e30.e30", "token header is not a JSON object");
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    expect_refused(f, big, "token longer than 8192 bytes");
}

static void test_two_segments(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *token = issue(f, "ci:fw-pipeline", NOW + 3600, jti);

    *strrchr(token, '.') = '\0';
    expect_refused(f, token, "token is not three base64url segments");
    free(token);
}

static void test_alg_none_refused(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *good = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
    const char *payload = strchr(good, '.') + 1;
    char *claims = strndup(payload, (size_t)(strchr(payload, '.') - payload));
    char *hdr = b64url_str("{\"alg\":\"none\",\"typ\":\"JWT\"}");
    char *unsigned_part = join_dot(hdr, claims);
    char *none = join_dot(unsigned_part, "");

    expect_refused(f, none, "token algorithm must be ES256");
    expect_ok(f, good, NULL, jti);
    free(none);
    free(unsigned_part);
    free(hdr);
    free(claims);
    free(good);
}

static char *hmac_token(const char *header, const char *payload, const char *secret)
{
    char *input = raw_input(header, payload), *token = NULL, *s64 = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)input,
                         strlen(input), mac, &maclen));
    assert_int_equal(kbr_b64url_encode(mac, maclen, &s64), KBR_OK);
    token = join_dot(input, s64);
    free(s64);
    free(input);
    return token;
}

/* The classic confusion: HS256 keyed with the public key, which anyone can fetch from /v1/jwks. */
static void test_hs256_with_public_pem_refused(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *good = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
    json_t *claims = claims_new(jti, "ci:fw-pipeline", NOW - 10, NOW + 3600);
    char *payload = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    char *pem = pubkey_pem(f->issuer);
    char *forged = hmac_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, pem);

    expect_refused(f, forged, "token algorithm must be ES256");
    free(forged);
    forged = hmac_token("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", payload, pem);
    expect_refused(f, forged, "token algorithm must be ES256");
    free(forged);
    forged = raw_token(f->issuer, "{\"alg\":\"ES384\",\"typ\":\"JWT\"}", payload);
    expect_refused(f, forged, "token algorithm must be ES256");
    free(forged);
    forged = raw_token(f->issuer, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload);
    expect_refused(f, forged, "token algorithm must be ES256");
    free(forged);
    forged = raw_token(f->issuer, "{\"typ\":\"JWT\"}", payload);
    expect_refused(f, forged, "token algorithm must be ES256");
    free(forged);
    expect_ok(f, good, NULL, jti);
    free(pem);
    free(payload);
    json_decref(claims);
    free(good);
}

static void test_tampered_payload_refused(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *good = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
    json_t *claims = claims_new(jti, "ci:fw-pipeline", NOW - 10, NOW + 3600);
    char *input = NULL, *forged;

    json_object_set_new(claims, "kbr", json_pack("{s:[s]}", "ops", "admin"));
    assert_int_equal(kbr_jwt_signing_input(claims, issuer_kid, &input), KBR_OK);
    forged = join_dot(input, strrchr(good, '.') + 1);
    expect_refused(f, forged, "token signature does not verify");
    free(forged);
    free(input);
    json_decref(claims);
    free(good);
}

static void test_foreign_key_refused(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *good = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
    json_t *claims = claims_new(jti, "ci:fw-pipeline", NOW - 10, NOW + 3600);
    char *forged = sign_claims(f->foreign, claims);
    char *truncated = strndup(good, strlen(good) - 2);

    expect_refused(f, forged, "token signature does not verify");
    expect_refused(f, truncated, "token signature is not 64 bytes");
    free(truncated);
    free(forged);
    /*
     * The signature's last character carries 2 bits and 4 zero bits: A, Q, g or w.  The next
     * character (B, R, h, x) spells the same bytes with a padding bit set: one token, one
     * spelling.
     */
    {
        char *respelled = strdup(good);
        char *last = respelled + strlen(respelled) - 1;

        assert_non_null(strchr("AQgw", *last));
        (*last)++;
        expect_refused(f, respelled, "token signature is not canonical base64url");
        free(respelled);
    }
    /* r = s = 0, and r, s above the group order: out of range, never valid. */
    for (const char *fill = "A_"; *fill != '\0'; fill++) {
        char *sig = malloc(87), *input = strndup(good, (size_t)(strrchr(good, '.') - good));

        memset(sig, *fill, 86);
        sig[86] = '\0';
        if (*fill == '_')
            sig[85] = 'w'; /* the last char carries 4 bits: 0b110000 */
        forged = join_dot(input, sig);
        expect_refused(f, forged, "token signature does not verify");
        free(forged);
        free(input);
        free(sig);
    }
    json_decref(claims);
    free(good);
}

static void test_expired_and_not_yet_valid(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *token = issue(f, "ci:fw-pipeline", NOW, jti);
    json_t *claims;

    expect_refused(f, token, "token expired");
    free(token);
    token = issue(f, "ci:fw-pipeline", NOW - 1, jti);
    expect_refused(f, token, "token expired");
    free(token);

    new_jti(jti);
    add_row(f->p, row_new(jti, "ci:fw-pipeline", NOW + 3600, "{\"ops\": [\"sign\"]}"));
    claims = claims_new(jti, "ci:fw-pipeline", NOW + 100, NOW + 3600);
    token = sign_claims(f->issuer, claims);
    expect_refused(f, token, "token not yet valid");
    expect_refused_at(f->p, token, NOW + 99, NULL, "token not yet valid");
    expect_ok_at(f->p, token, NOW + 100, NULL, jti);
    free(token);
    json_decref(claims);
}

/* Claims signed by the real issuer key but wrong in one field each. */
static void expect_claim_refused(fixture *f, const char *field, json_t *value, const char *why)
{
    char jti[33];
    json_t *claims;
    char *token;

    new_jti(jti);
    add_row(f->p, row_new(jti, "ci:fw-pipeline", NOW + 3600, "{\"ops\": [\"sign\"]}"));
    claims = claims_new(jti, "ci:fw-pipeline", NOW - 10, NOW + 3600);
    if (value != NULL)
        assert_int_equal(json_object_set_new(claims, field, value), 0);
    else
        assert_int_equal(json_object_del(claims, field), 0);
    token = sign_claims(f->issuer, claims);
    expect_refused(f, token, why);
    free(token);
    json_decref(claims);
}

static void test_claims_refused(void **state)
{
    fixture *f = *state;

    expect_claim_refused(f, "iss", json_string("other"), "token issuer is not this broker");
    expect_claim_refused(f, "iss", NULL, "token issuer is not this broker");
    expect_claim_refused(f, "aud", json_string("other"), "token audience is not this broker");
    expect_claim_refused(f, "aud", json_pack("[s, s]", "a", "b"),
                         "token audience is not this broker");
    expect_claim_refused(f, "exp", NULL, "token has no exp claim");
    expect_claim_refused(f, "exp", json_string("1900000000"), "token claim exp must be an integer");
    expect_claim_refused(f, "nbf", json_real(1.5), "token claim nbf must be an integer");
    expect_claim_refused(f, "iat", json_string("now"), "token claim iat must be an integer");
    expect_claim_refused(f, "jti", json_string("ABCDEF0123456789ABCDEF0123456789"),
                         "token jti must be 32 lowercase hex chars");
    expect_claim_refused(f, "sub", json_string("root:x"), "token sub must be <kind>:<name>");
    expect_claim_refused(f, "kbr", json_pack("{s:[s]}", "ops", "superuser"),
                         "token claim kbr: ops[0]: unknown op \"superuser\"");
    expect_claim_refused(f, "cnf", json_string(X5T),
                         "token claim cnf must be {\"x5t#S256\": <thumbprint>}");
}

static void test_aud_array_accepted(void **state)
{
    fixture *f = *state;
    char jti[33];
    json_t *claims;
    char *token;

    new_jti(jti);
    add_row(f->p, row_new(jti, "ota:fleet", NOW + 3600, "{\"ops\": [\"ota-report\"]}"));
    claims = claims_new(jti, "ota:fleet", NOW - 10, NOW + 3600);
    json_object_set_new(claims, "aud", json_pack("[s, s]", "elsewhere", INSTANCE));
    token = sign_claims(f->issuer, claims);
    expect_ok(f, token, NULL, jti);
    free(token);
    json_decref(claims);
}

static void test_unknown_jti_and_sub_mismatch(void **state)
{
    fixture *f = *state;
    char jti[33];
    json_t *claims;
    char *token;

    new_jti(jti);
    claims = claims_new(jti, "ci:fw-pipeline", NOW - 10, NOW + 3600);
    token = sign_claims(f->issuer, claims);
    expect_refused(f, token, "token not issued by this broker");
    add_row(f->p, row_new(jti, "ci:other-pipeline", NOW + 3600, "{\"ops\": [\"sign\"]}"));
    expect_refused(f, token, "token not issued by this broker");
    add_row(f->p, row_new(jti, "ci:fw-pipeline", NOW + 3600, "{\"ops\": [\"sign\"]}"));
    expect_ok(f, token, NULL, jti);
    free(token);
    json_decref(claims);
}

static void test_revoked_even_when_cached(void **state)
{
    fixture *f = *state;
    char jti[33], other[33];
    char *token = issue(f, "ci:fw-pipeline", NOW + 3600, jti);

    expect_ok(f, token, NULL, jti);
    expect_ok(f, token, NULL, jti);
    assert_int_equal(stats_of(f->p).cache_hits, 1);
    size_t n = 9;

    assert_int_equal(kbr_policy_revoke_jti(f->p, jti, NOW, NULL, &n), KBR_OK);
    assert_int_equal(n, 1);
    expect_refused(f, token, "token revoked");
    assert_int_equal(kbr_policy_find(f->p, jti)->revoked_at, NOW);
    assert_int_equal(kbr_policy_revoke_jti(f->p, jti, NOW + 5, NULL, &n), KBR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kbr_policy_find(f->p, jti)->revoked_at, NOW);
    new_jti(other);
    assert_int_equal(kbr_policy_revoke_jti(f->p, other, NOW, NULL, &n), KBR_ERR_NOT_FOUND);
    free(token);
}

static bool jtis_has(const json_t *arr, const char *jti)
{
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (strcmp(json_string_value(json_array_get(arr, i)), jti) == 0)
            return true;
    return false;
}

static void test_revoke_by_sub(void **state)
{
    fixture *f = *state;
    char a1[33], a2[33], a_old[33], b[33];
    char *ta1 = issue(f, "factory:acme", NOW + 3600, a1);
    char *ta2 = issue(f, "factory:acme", NOW + 7200, a2);
    char *told = issue(f, "factory:acme", NOW - 1, a_old);
    char *tb = issue(f, "factory:other", NOW + 3600, b);
    json_t *jtis = json_array();

    expect_ok(f, ta1, NULL, a1);
    assert_int_equal(kbr_policy_revoke_sub(f->p, "factory:acme", NOW, jtis), 2);
    assert_int_equal(json_array_size(jtis), 2);
    assert_true(jtis_has(jtis, a1));
    assert_true(jtis_has(jtis, a2));
    expect_refused(f, ta1, "token revoked");
    expect_refused(f, ta2, "token revoked");
    assert_int_equal(kbr_policy_find(f->p, a_old)->revoked_at, 0);
    expect_ok(f, tb, NULL, b);
    assert_int_equal(kbr_policy_revoke_sub(f->p, "factory:acme", NOW, NULL), 0);
    json_decref(jtis);
    free(ta1);
    free(ta2);
    free(told);
    free(tb);
}

static void test_revoke_by_key(void **state)
{
    fixture *f = *state;
    char fw[3][33], ca[33], admin[33];
    const char *fw_scopes[3] = {"{\"ops\": [\"sign\"], \"keys\": [\"fw-*\"]}",
                                "{\"ops\": [\"sign\", \"read\"]}",
                                "{\"ops\": [\"sign\"], \"keys\": [\"ca-root\", \"fw-main\"]}"};
    json_t *jtis = json_array();

    for (int i = 0; i < 3; i++) {
        new_jti(fw[i]);
        add_row(f->p, row_new(fw[i], "ci:fw-pipeline", NOW + 3600, fw_scopes[i]));
    }
    new_jti(ca);
    add_row(f->p, row_new(ca, "factory:acme", NOW + 3600,
                          "{\"ops\": [\"provision\"], \"keys\": [\"ca-*\", \"fw-mainline\"]}"));
    /* an admin token reaches every key but is spared: it is what handles the incident */
    new_jti(admin);
    add_row(f->p, row_new(admin, "security:oncall", NOW + 3600, "{\"ops\": [\"admin\"]}"));
    assert_int_equal(kbr_policy_revoke_key(f->p, "fw-main", NOW, jtis), 3);
    assert_int_equal(kbr_policy_find(f->p, admin)->revoked_at, 0);
    for (int i = 0; i < 3; i++)
        assert_true(jtis_has(jtis, fw[i]));
    assert_int_equal(kbr_policy_find(f->p, ca)->revoked_at, 0);
    assert_int_equal(kbr_policy_revoke_key(f->p, "ca-device", NOW, NULL), 1);
    assert_int_not_equal(kbr_policy_find(f->p, ca)->revoked_at, 0);
    json_decref(jtis);
}

/* A row issued under parent ("" for a root). */
static void add_child(fixture *f, char jti[33], const char *sub, const char *parent, bool orphan,
                      const char *scope)
{
    json_t *row;

    new_jti(jti);
    row = row_new(jti, sub, NOW + 3600, scope);
    if (parent[0] != '\0')
        json_object_set_new(row, "parent_jti", json_string(parent));
    json_object_set_new(row, "orphan", json_boolean(orphan));
    add_row(f->p, row);
}

static bool revoked(fixture *f, const char *jti)
{
    return kbr_policy_find(f->p, jti)->revoked_at != 0;
}

/*
 * bootstrap -> team admin -> ci; team admin -> orphan admin -> factory.  Revoking the
 * bootstrap takes every token under it, transitively, but the orphan's subtree.
 */
static void test_revocation_cascades(void **state)
{
    fixture *f = *state;
    const char *admin = "{\"ops\": [\"admin\"]}";
    char boot[33], team[33], ci[33], orphan[33], fab[33], other[33];
    json_t *jtis = json_array();
    size_t n = 0;

    add_child(f, boot, "security:bootstrap", "", false, admin);
    add_child(f, team, "security:acme", boot, false, admin);
    add_child(f, ci, "ci:acme", team, false, "{\"ops\": [\"sign\"]}");
    add_child(f, orphan, "security:acme-lead", team, true, admin);
    add_child(f, fab, "factory:acme", orphan, false, "{\"ops\": [\"provision\"]}");
    add_child(f, other, "ci:other", "", false, "{\"ops\": [\"sign\"]}");
    assert_int_equal(kbr_policy_find(f->p, team)->orphan, false);
    assert_string_equal(kbr_policy_find(f->p, ci)->parent, team);
    assert_int_equal(kbr_policy_revoke_jti(f->p, boot, NOW, jtis, &n), KBR_OK);
    assert_int_equal(n, 3);
    assert_int_equal(json_array_size(jtis), 3);
    assert_string_equal(json_string_value(json_array_get(jtis, 0)), boot);
    assert_true(revoked(f, boot) && revoked(f, team) && revoked(f, ci));
    assert_false(revoked(f, orphan) || revoked(f, fab) || revoked(f, other));
    /* by principal: the orphan admin's tree goes with it */
    assert_int_equal(kbr_policy_revoke_sub(f->p, "security:acme-lead", NOW, NULL), 2);
    assert_true(revoked(f, fab));
    assert_false(revoked(f, other));
    json_decref(jtis);
}

/* A subtree whose middle was revoked before still loses its leaves; expired ones are walked
 * through, not counted. */
static void test_revocation_cascades_through_revoked(void **state)
{
    fixture *f = *state;
    const char *admin = "{\"ops\": [\"admin\"]}";
    char root[33], mid[33], leaf[33], gone[33], gone_leaf[33];
    json_t *row, *jtis = json_array();
    size_t n = 0;

    add_child(f, root, "security:bootstrap", "", false, admin);
    add_child(f, mid, "security:team", root, false, admin);
    add_child(f, leaf, "ci:team", mid, false, "{\"ops\": [\"sign\"]}");
    new_jti(gone);
    row = row_new(gone, "security:old", NOW - 5, admin);
    json_object_set_new(row, "parent_jti", json_string(root));
    add_row(f->p, row);
    add_child(f, gone_leaf, "ci:old", gone, false, "{\"ops\": [\"sign\"]}");
    /* the middle went first, its leaf escaped (as a token revoked before cascading would) */
    kbr_policy_find(f->p, mid)->revoked_at = NOW - 100;
    assert_int_equal(kbr_policy_revoke_jti(f->p, root, NOW, jtis, &n), KBR_OK);
    assert_int_equal(n, 3);
    assert_true(revoked(f, leaf) && revoked(f, gone_leaf));
    assert_false(revoked(f, gone)); /* expired: walked through, left as it is */
    json_decref(jtis);
    jtis = json_pack("[s]", root);
    assert_int_equal(kbr_policy_revoke_descendants(f->p, NOW, jtis), 0);
    json_decref(jtis);
}

static kbr_scope scope_of(const char *text)
{
    json_t *j = scope_json(text);
    kbr_scope s = {.max_uses = -1};

    assert_int_equal(kbr_scope_from_json(j, &s, NULL), KBR_OK);
    json_decref(j);
    return s;
}

/* A principal belongs to the products of the tokens issued to it. */
static void test_principal_ownership(void **state)
{
    fixture *f = *state;
    kbr_scope acme = scope_of("{\"ops\": [\"admin\"], \"products\": [\"acme\"]}");
    kbr_scope acmes = scope_of("{\"ops\": [\"admin\"], \"products\": [\"acme*\"]}");
    kbr_scope globex = scope_of("{\"ops\": [\"admin\"], \"products\": [\"globex\"]}");
    kbr_scope any = scope_of("{\"ops\": [\"admin\"]}");
    kbr_scope gw = scope_of("{\"ops\": [\"sign\"], \"products\": [\"acme-gw\"]}");
    kbr_msg msg = {{0}};
    char jti[33];
    json_t *products;

    /* a name nobody was given yet is anyone's */
    assert_int_equal(kbr_policy_principal_may_issue(f->p, "factory:globex-fab", &acme, &msg),
                     KBR_OK);
    assert_null(kbr_policy_principal_products(f->p, "factory:globex-fab"));
    add_child(f, jti, "factory:globex-fab", "", false,
              "{\"ops\": [\"provision\"], \"products\": [\"globex\"]}");
    assert_int_equal(kbr_policy_principal_may_issue(f->p, "factory:globex-fab", &acme, &msg),
                     KBR_ERR_FORBIDDEN);
    assert_non_null(strstr(msg.text, "globex"));
    assert_int_equal(kbr_policy_principal_may_issue(f->p, "factory:globex-fab", &globex, NULL),
                     KBR_OK);
    assert_int_equal(kbr_policy_principal_may_issue(f->p, "factory:globex-fab", &any, NULL),
                     KBR_OK);
    /* claimed before commit: the second admin racing for the name is refused */
    assert_int_equal(kbr_policy_principal_claim(f->p, "ci:acme-gw", &gw), KBR_OK);
    assert_int_equal(kbr_policy_principal_may_issue(f->p, "ci:acme-gw", &globex, NULL),
                     KBR_ERR_FORBIDDEN);
    assert_int_equal(kbr_policy_principal_may_issue(f->p, "ci:acme-gw", &acmes, NULL), KBR_OK);
    assert_int_equal(kbr_policy_principal_may_issue(f->p, "ci:acme-gw", &acme, NULL),
                     KBR_ERR_FORBIDDEN);
    /* a token without a products list makes the principal everyone's: only unlimited admins */
    assert_int_equal(kbr_policy_principal_claim(f->p, "ci:acme-gw", &any), KBR_OK);
    assert_int_equal(kbr_policy_principal_may_issue(f->p, "ci:acme-gw", &acmes, &msg),
                     KBR_ERR_FORBIDDEN);
    products = kbr_policy_principal_products(f->p, "ci:acme-gw");
    assert_true(json_is_null(products));
    json_decref(products);
    products = kbr_policy_principal_products(f->p, "factory:globex-fab");
    assert_int_equal(json_array_size(products), 1);
    json_decref(products);
    kbr_scope_cleanup(&acme);
    kbr_scope_cleanup(&acmes);
    kbr_scope_cleanup(&globex);
    kbr_scope_cleanup(&any);
    kbr_scope_cleanup(&gw);
}

static void test_scope_covers_and_namelists(void **state)
{
    kbr_scope acme = scope_of("{\"ops\": [\"read\"], \"products\": [\"acme*\"]}");
    kbr_scope gw = scope_of("{\"ops\": [\"sign\"], \"products\": [\"acme-gw\"]}");
    kbr_scope open = scope_of("{\"ops\": [\"sign\"]}");
    kbr_scope keyed = scope_of("{\"ops\": [\"read\"], \"keys\": [\"fw-*\"]}");
    json_t *both = json_pack("[s,s]", "acme-gw", "globex"), *one = json_pack("[s]", "acme-cam");
    json_t *none = json_array();
    kbr_msg msg = {{0}};

    (void)state;
    /* read or admin, the rule is the list's: no admin op is needed to see within a scope */
    assert_int_equal(kbr_scope_covers(&acme, &gw, NULL), KBR_OK);
    assert_int_equal(kbr_scope_covers(&acme, &open, &msg), KBR_ERR_FORBIDDEN);
    assert_non_null(strstr(msg.text, "products"));
    assert_int_equal(kbr_scope_covers(&open, &acme, NULL), KBR_OK);
    assert_int_equal(kbr_scope_covers(&keyed, &gw, NULL), KBR_ERR_FORBIDDEN);
    assert_true(kbr_namelist_match_any(&acme.products, both));
    assert_false(kbr_namelist_match_all(&acme.products, both));
    assert_true(kbr_namelist_match_all(&acme.products, one));
    assert_false(kbr_namelist_match_any(&gw.products, one));
    assert_false(kbr_namelist_match_any(&acme.products, none));
    assert_true(kbr_namelist_match_any(&open.products, none));
    assert_true(kbr_namelist_is_any(&open.products));
    assert_false(kbr_namelist_is_any(&acme.products));
    json_decref(both);
    json_decref(one);
    json_decref(none);
    kbr_scope_cleanup(&acme);
    kbr_scope_cleanup(&gw);
    kbr_scope_cleanup(&open);
    kbr_scope_cleanup(&keyed);
}

static char *issue_bound(fixture *f, const char *row_x5t, const char *claim_x5t, char jti[33])
{
    json_t *row, *claims;
    char *token;

    new_jti(jti);
    row = row_new(jti, "factory:acme", NOW + 3600, "{\"ops\": [\"provision\"]}");
    json_object_set_new(row, "cnf_x5t", json_string(row_x5t));
    add_row(f->p, row);
    claims = claims_new(jti, "factory:acme", NOW - 10, NOW + 3600);
    if (claim_x5t != NULL)
        json_object_set_new(claims, "cnf", json_pack("{s:s}", "x5t#S256", claim_x5t));
    token = sign_claims(f->issuer, claims);
    json_decref(claims);
    return token;
}

static void test_cnf_binding(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *token = issue_bound(f, X5T, X5T, jti);
    const char *bound = "token bound to a client certificate";

    expect_refused_at(f->p, token, NOW, NULL, bound);
    expect_refused_at(f->p, token, NOW, "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgh", bound);
    expect_refused_at(f->p, token, NOW, "", bound);
    expect_ok(f, token, X5T, jti);
    expect_ok(f, token, X5T, jti);
    expect_refused_at(f->p, token, NOW, NULL, bound);
    free(token);

    token = issue_bound(f, X5T, NULL, jti);
    expect_refused_at(f->p, token, NOW, X5T, "token binding differs from its record");
    free(token);
}

static void test_header_extra_member_refused(void **state)
{
    fixture *f = *state;
    char jti[33];
    char *good = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
    json_t *claims = claims_new(jti, "ci:fw-pipeline", NOW - 10, NOW + 3600);
    char *payload = json_dumps(claims, JSON_COMPACT);
    char *t;

    t = raw_token(f->issuer, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"jku\":\"https://x/jwks\"}",
                  payload);
    expect_refused(f, t, "token header has a member other than alg, typ and kid");
    free(t);
    t = raw_token(f->issuer, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":7}", payload);
    expect_refused(f, t, "token header kid must be a string");
    free(t);
    t = raw_token(f->issuer, "{\"alg\":\"ES256\"}", payload);
    expect_refused(f, t, "token type must be JWT");
    free(t);
    t = raw_token(f->issuer, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"alg\":\"ES256\"}", payload);
    expect_refused(f, t, "token header is not a JSON object");
    free(t);
    t = raw_token(f->issuer, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload);
    expect_refused(f, t, "token header has no kid");
    free(t);
    t = raw_token(f->issuer, es256_header(), payload);
    expect_ok(f, t, NULL, jti);
    free(t);
    free(payload);
    json_decref(claims);
    free(good);
}

static void test_duplicate_payload_keys_refused(void **state)
{
    fixture *f = *state;
    char jti[33], payload[512];
    char *good = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
    char *t;

    snprintf(payload, sizeof(payload),
             "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"ci:fw-pipeline\",\"exp\":%lld,"
             "\"jti\":\"%s\",\"kbr\":{\"ops\":[\"sign\"]},\"sub\":\"ci:fw-pipeline\"}",
             INSTANCE, INSTANCE, (long long)(NOW + 3600), jti);
    t = raw_token(f->issuer, es256_header(), payload);
    expect_refused(f, t, "token payload is not a JSON object");
    free(t);
    free(good);
}

static void test_row_update_and_bad_rows(void **state)
{
    fixture *f = *state;
    char jti[33], when[KBR_TIME_LEN];
    char *token = issue(f, "ci:fw-pipeline", NOW + 3600, jti);
    json_t *row;

    expect_ok(f, token, NULL, jti);
    assert_int_equal(stats_of(f->p).cache_entries, 1);
    row = row_new(jti, "ci:fw-pipeline", NOW + 3600, "{\"ops\": [\"sign\"]}");
    fmt_time(NOW - 5, when);
    json_object_set_new(row, "revoked_at", json_string(when));
    add_row(f->p, row);
    assert_int_equal(stats_of(f->p).tokens, 1);
    assert_int_equal(stats_of(f->p).cache_entries, 0);
    assert_int_equal(kbr_policy_find(f->p, jti)->revoked_at, NOW - 5);
    expect_refused(f, token, "token revoked");

    row = row_new(jti, "ci:fw-pipeline", NOW + 3600, "{\"ops\": [\"sign\"]}");
    json_object_set_new(row, "expires_at", json_string("tomorrow"));
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_ERR_BAD_REQUEST);
    json_object_set_new(row, "expires_at", json_string("2027-01-15T09:00:00Z"));
    json_object_set_new(row, "uses", json_integer(-1));
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_ERR_BAD_REQUEST);
    json_object_del(row, "uses");
    json_object_set_new(row, "scope", scope_json("{\"ops\": [\"fly\"]}"));
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_ERR_BAD_REQUEST);
    json_object_set_new(row, "scope", scope_json("{\"ops\": [\"sign\"]}"));
    json_object_set_new(row, "sub", json_string("nobody"));
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_ERR_BAD_REQUEST);
    json_object_set_new(row, "sub", json_string("ci:fw-pipeline"));
    json_object_set_new(row, "jti", json_string("1234"));
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_ERR_BAD_REQUEST);
    json_object_set_new(row, "jti", json_string(jti));
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_OK);
    /* The store's row is the record: its revoked_at null clears ours. */
    assert_int_equal(kbr_policy_find(f->p, jti)->expires_at, NOW + 3600);
    assert_int_equal(kbr_policy_find(f->p, jti)->revoked_at, 0);
    expect_ok(f, token, NULL, jti);
    json_decref(row);
    free(token);
}

/* ---- issuer keys: rotation and selection by kid ---- */

static char *sign_with_kid(EVP_PKEY *key, const char *kid, const json_t *claims)
{
    char *input = NULL, *token = NULL;
    unsigned char sig[64];

    assert_int_equal(kbr_jwt_signing_input(claims, kid, &input), KBR_OK);
    hsm_sign(key, input, sig);
    assert_int_equal(kbr_jwt_assemble(input, sig, sizeof(sig), &token), KBR_OK);
    free(input);
    return token;
}

/* A token recorded as signed by kid (parent "" for a root), signed by key under kid. */
static char *issue_by(fixture *f, EVP_PKEY *key, const char *kid, time_t exp, const char *parent,
                      char jti[33])
{
    json_t *row, *claims;
    char *token;

    new_jti(jti);
    row = row_new(jti, "ci:fw-pipeline", exp, "{\"ops\": [\"sign\"]}");
    json_object_set_new(row, "kid", json_string(kid));
    if (parent[0] != '\0')
        json_object_set_new(row, "parent_jti", json_string(parent));
    add_row(f->p, row);
    claims = claims_new(jti, "ci:fw-pipeline", NOW - 10, exp);
    token = sign_with_kid(key, kid, claims);
    json_decref(claims);
    return token;
}

/* The kids a JWK Set lists, in order, joined by spaces. */
static const char *jwks_kids(kbr_policy *p, time_t now)
{
    static char out[512];
    json_t *jwks = kbr_policy_jwks(p, now), *k;
    size_t i;

    out[0] = '\0';
    assert_non_null(jwks);
    json_array_foreach(json_object_get(jwks, "keys"), i, k)
    {
        size_t n = strlen(out);
        snprintf(out + n, sizeof(out) - n, "%s%s", n > 0 ? " " : "",
                 json_string_value(json_object_get(k, "kid")));
    }
    json_decref(jwks);
    return out;
}

static void rotate_to(fixture *f, EVP_PKEY *key, char kid[64])
{
    kid_of(key, kid);
    assert_int_equal(kbr_policy_add_issuer(f->p, kid, key, true), KBR_OK);
    assert_string_equal(kbr_policy_current_kid(f->p), kid);
}

/*
 * After a rotation the new key verifies the tokens it signs, the old one those it signed,
 * each under its own kid; a tree spans both keys, and revoking its root cascades.
 */
static void test_rotation_both_keys_verify(void **state)
{
    fixture *f = *state;
    EVP_PKEY *next = p256_new();
    char next_kid[64], parent[33], child[33], old_jti[33], new_jti_[33];
    char *parent_tok = issue_by(f, f->issuer, issuer_kid, NOW + 3600, "", parent);
    char *old_tok = issue_by(f, f->issuer, issuer_kid, NOW + 600, "", old_jti);
    char *child_tok, *new_tok;
    size_t n = 0;

    expect_ok(f, parent_tok, NULL, parent);
    rotate_to(f, next, next_kid);
    child_tok = issue_by(f, next, next_kid, NOW + 1800, parent, child);
    new_tok = issue_by(f, next, next_kid, NOW + 1800, "", new_jti_);
    assert_string_equal(kbr_policy_find(f->p, child)->kid, next_kid);
    expect_ok(f, new_tok, NULL, new_jti_);
    expect_ok(f, child_tok, NULL, child);
    expect_ok(f, old_tok, NULL, old_jti);   /* verified now, with the old key */
    expect_ok(f, parent_tok, NULL, parent); /* from the cache */
    assert_int_equal(kbr_policy_revoke_jti(f->p, parent, NOW, NULL, &n), KBR_OK);
    assert_int_equal(n, 2);
    expect_refused(f, child_tok, "token revoked");
    expect_ok(f, new_tok, NULL, new_jti_);
    free(parent_tok);
    free(old_tok);
    free(child_tok);
    free(new_tok);
    EVP_PKEY_free(next);
}

/* The kid picks one of the broker's keys, exactly, and the signature is checked against it. */
static void test_kid_selects_one_key(void **state)
{
    fixture *f = *state;
    EVP_PKEY *next = p256_new();
    char next_kid[64], foreign_kid[64], jti[33], jti2[33], longkid[80];
    char *a_tok = issue_by(f, f->issuer, issuer_kid, NOW + 3600, "", jti);
    json_t *claims = claims_new(jti, "ci:fw-pipeline", NOW - 10, NOW + 3600);
    char *t;

    rotate_to(f, next, next_kid);
    kid_of(f->foreign, foreign_kid);
    /* a key the broker does not have, even one that signs the token */
    t = sign_with_kid(f->foreign, foreign_kid, claims);
    expect_refused(f, t, "token kid is not one of this broker's issuer keys");
    free(t);
    memset(longkid, 'A', sizeof(longkid) - 1);
    longkid[sizeof(longkid) - 1] = '\0';
    t = sign_with_kid(f->issuer, longkid, claims);
    expect_refused(f, t, "token kid is not one of this broker's issuer keys");
    free(t);
    t = sign_with_kid(f->issuer, "", claims);
    expect_refused(f, t, "token kid is not one of this broker's issuer keys");
    free(t);
    /* one kid, the other key's signature: neither key is tried in the other's place */
    t = sign_with_kid(next, issuer_kid, claims);
    expect_refused(f, t, "token signature does not verify");
    free(t);
    t = sign_with_kid(f->issuer, next_kid, claims);
    expect_refused(f, t, "token signature does not verify");
    free(t);
    /* a valid signature by the other broker key is not the token the record names */
    t = sign_with_kid(next, next_kid, claims);
    expect_refused(f, t, "token kid differs from its record");
    free(t);
    expect_ok(f, a_tok, NULL, jti);
    /* and the other way round: a token recorded under the new key, re-signed by the old */
    free(a_tok);
    a_tok = issue_by(f, next, next_kid, NOW + 3600, "", jti2);
    json_decref(claims);
    claims = claims_new(jti2, "ci:fw-pipeline", NOW - 10, NOW + 3600);
    t = sign_with_kid(f->issuer, issuer_kid, claims);
    expect_refused(f, t, "token kid differs from its record");
    free(t);
    expect_ok(f, a_tok, NULL, jti2);
    free(a_tok);
    json_decref(claims);
    EVP_PKEY_free(next);
}

/*
 * A replaced key stays in the JWK Set and verifies its tokens until the last of them
 * expires, cached or not, and not a second longer; the current key stays whatever.
 */
static void test_replaced_key_retires_with_its_last_token(void **state)
{
    fixture *f = *state;
    EVP_PKEY *next = p256_new();
    char next_kid[64], both[200], early[33], late[33];
    char *early_tok = issue_by(f, f->issuer, issuer_kid, NOW + 50, "", early);
    char *late_tok = issue_by(f, f->issuer, issuer_kid, NOW + 100, "", late);
    kbr_issuer_state st;

    assert_string_equal(jwks_kids(f->p, NOW), issuer_kid);
    expect_ok(f, late_tok, NULL, late); /* cached from here on */
    rotate_to(f, next, next_kid);
    snprintf(both, sizeof(both), "%s %s", next_kid, issuer_kid);
    assert_string_equal(jwks_kids(f->p, NOW), both);
    assert_true(kbr_policy_issuer_state(f->p, issuer_kid, NOW, &st));
    assert_false(st.current);
    assert_true(st.trusted);
    assert_int_equal(st.last_exp, NOW + 100);
    /* the earlier token expiring changes nothing for the key */
    expect_refused_at(f->p, early_tok, NOW + 50, NULL, "token expired");
    assert_string_equal(jwks_kids(f->p, NOW + 99), both);
    expect_ok_at(f->p, late_tok, NOW + 99, NULL, late);
    assert_int_equal(stats_of(f->p).cache_hits, 1);
    /* its last token's exp retires it: out of the set, and nothing verifies with it */
    assert_string_equal(jwks_kids(f->p, NOW + 100), next_kid);
    assert_true(kbr_policy_issuer_state(f->p, issuer_kid, NOW + 100, &st));
    assert_false(st.trusted);
    expect_refused_at(f->p, late_tok, NOW + 100, NULL, "token kid names a retired issuer key");
    /* the current key is trusted without any token */
    assert_true(kbr_policy_issuer_state(f->p, next_kid, NOW + 100000, &st));
    assert_true(st.current && st.trusted);
    assert_int_equal(st.last_exp, 0);
    assert_false(kbr_policy_issuer_state(f->p, "nope", NOW, &st));
    free(early_tok);
    free(late_tok);
    EVP_PKEY_free(next);
}

/* The JWK Set: the current key first, then the others still trusted, newest first. */
static void test_jwks_order(void **state)
{
    fixture *f = *state;
    EVP_PKEY *b = p256_new(), *c = p256_new();
    char b_kid[64], c_kid[64], want[200], jti[33];
    char *t;

    t = issue_by(f, f->issuer, issuer_kid, NOW + 100, "", jti);
    free(t);
    rotate_to(f, b, b_kid);
    t = issue_by(f, b, b_kid, NOW + 200, "", jti);
    free(t);
    rotate_to(f, c, c_kid);
    snprintf(want, sizeof(want), "%s %s %s", c_kid, b_kid, issuer_kid);
    assert_string_equal(jwks_kids(f->p, NOW), want);
    snprintf(want, sizeof(want), "%s %s", c_kid, b_kid);
    assert_string_equal(jwks_kids(f->p, NOW + 100), want);
    assert_string_equal(jwks_kids(f->p, NOW + 200), c_kid);
    EVP_PKEY_free(b);
    EVP_PKEY_free(c);
}

/* Keys and rows the registry refuses: each key once under its own thumbprint, and tokens
 * only of keys it has. */
static void test_issuer_keys_refused(void **state)
{
    fixture *f = *state;
    EVP_PKEY *next = p256_new();
    char next_kid[64], jti[33];
    json_t *row;

    kid_of(next, next_kid);
    assert_int_equal(kbr_policy_add_issuer(f->p, issuer_kid, next, true), KBR_ERR_CONFLICT);
    assert_int_equal(kbr_policy_add_issuer(f->p, next_kid, f->issuer, true), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_policy_add_issuer(f->p, NULL, next, true), KBR_ERR_BAD_REQUEST);
    assert_string_equal(kbr_policy_current_kid(f->p), issuer_kid);
    new_jti(jti);
    row = row_new(jti, "ci:fw-pipeline", NOW + 60, "{\"ops\": [\"sign\"]}");
    json_object_set_new(row, "kid", json_string(next_kid));
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_ERR_BAD_REQUEST);
    json_object_set_new(row, "kid", json_string(""));
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_ERR_BAD_REQUEST);
    assert_null(kbr_policy_find(f->p, jti));
    /* a row without a kid (an older broker's) is kept, and never authenticates */
    json_object_set_new(row, "kid", json_null());
    assert_int_equal(kbr_policy_add_token(f->p, row), KBR_OK);
    assert_string_equal(kbr_policy_find(f->p, jti)->kid, "");
    json_decref(row);
    EVP_PKEY_free(next);
}

/* ---- scopes ---- */

static void test_ops_names(void **state)
{
    static const char *names[] = {"sign",       "provision", "rotate", "debug-auth",
                                  "ota-report", "read",      "admin"};
    kbr_op op;
    kbr_token tok = {.scope = {.ops = KBR_OP_SIGN | KBR_OP_READ}};

    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(kbr_op_from_name(names[i], &op), KBR_OK);
        assert_int_equal(op, 1u << i);
        assert_string_equal(kbr_op_name(op), names[i]);
    }
    assert_int_equal(kbr_op_from_name("Sign", &op), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_op_from_name("", &op), KBR_ERR_BAD_REQUEST);
    assert_true(kbr_policy_allows_op(&tok, KBR_OP_READ));
    assert_false(kbr_policy_allows_op(&tok, KBR_OP_DEBUG_AUTH));
    assert_false(kbr_policy_allows_op(&tok, KBR_OP_ADMIN));
    tok.scope.ops = KBR_OP_ADMIN;
    assert_true(kbr_policy_allows_op(&tok, KBR_OP_DEBUG_AUTH));
    assert_false(kbr_policy_allows_op(NULL, KBR_OP_READ));
}

static void parse_ok(const char *text, kbr_scope *s)
{
    json_t *j = scope_json(text);
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_scope_from_json(j, s, &msg), KBR_OK);
    json_decref(j);
}

static void test_namelist_match(void **state)
{
    kbr_scope s;

    (void)state;
    parse_ok("{\"ops\": [\"sign\"], \"keys\": [\"fw-*\", \"ca-root\"], \"devices\": [\"*\"],"
             " \"batches\": []}",
             &s);
    assert_true(kbr_namelist_match(&s.keys, "fw-main"));
    assert_true(kbr_namelist_match(&s.keys, "fw-"));
    assert_false(kbr_namelist_match(&s.keys, "fw"));
    assert_false(kbr_namelist_match(&s.keys, "FW-main"));
    assert_true(kbr_namelist_match(&s.keys, "ca-root"));
    assert_false(kbr_namelist_match(&s.keys, "ca-root2"));
    assert_false(kbr_namelist_match(&s.keys, "ca-roo"));
    assert_true(kbr_namelist_match(&s.products, "anything"));
    assert_true(kbr_namelist_match(&s.devices, "SN-1"));
    assert_false(kbr_namelist_match(&s.batches, "b1"));
    kbr_scope_cleanup(&s);
}

static void test_scope_roundtrip(void **state)
{
    kbr_scope s;
    json_t *j;
    char *canon = NULL;

    (void)state;
    parse_ok("{\"ops\": [\"admin\", \"sign\"], \"keys\": [\"fw-*\", \"*\"], \"max_uses\": null,"
             " \"ttl\": 60}",
             &s);
    assert_int_equal(s.ops, KBR_OP_ADMIN | KBR_OP_SIGN);
    assert_true(s.keys.present);
    assert_int_equal(s.keys.n, 2);
    assert_false(s.products.present);
    assert_int_equal(s.max_uses, -1);
    j = kbr_scope_to_json(&s);
    assert_int_equal(kbr_json_canonical(j, &canon), KBR_OK);
    assert_string_equal(canon, "{\"keys\":[\"fw-*\",\"*\"],\"ops\":[\"sign\",\"admin\"]}");
    free(canon);
    json_decref(j);
    kbr_scope_cleanup(&s);

    parse_ok("{\"ops\": [\"provision\"], \"batches\": [\"B-2026-01\"], \"max_uses\": 500}", &s);
    assert_int_equal(s.max_uses, 500);
    j = kbr_scope_to_json(&s);
    assert_int_equal(kbr_json_canonical(j, &canon), KBR_OK);
    assert_string_equal(canon,
                        "{\"batches\":[\"B-2026-01\"],\"max_uses\":500,\"ops\":[\"provision\"]}");
    free(canon);
    json_decref(j);
    kbr_scope_cleanup(&s);
}

static void test_scope_errors_name_field(void **state)
{
    static const struct {
        const char *json, *msg;
    } cases[] = {
        {"{\"ops\": [\"sign\", \"read\", \"foo\"]}", "ops[2]: unknown op \"foo\""},
        {"{}", "ops: must be a non-empty array of op names"},
        {"{\"ops\": []}", "ops: must be a non-empty array of op names"},
        {"{\"ops\": \"sign\"}", "ops: must be a non-empty array of op names"},
        {"{\"ops\": [\"sign\", 3]}", "ops[1]: must be a string"},
        {"{\"ops\": [\"sign\", \"sign\"]}", "ops[1]: duplicate op \"sign\""},
        {"{\"ops\": [\"sign\"], \"keys\": \"fw\"}", "keys: must be an array of names"},
        {"{\"ops\": [\"sign\"], \"keys\": [\"fw\", 1]}", "keys[1]: must be a string"},
        {"{\"ops\": [\"sign\"], \"products\": [\"p1\", \"\"]}",
         "products[1]: must be 1-128 chars of [A-Za-z0-9._:/@+-], '*' only last"},
        {"{\"ops\": [\"sign\"], \"batches\": [\"a*b\"]}",
         "batches[0]: must be 1-128 chars of [A-Za-z0-9._:/@+-], '*' only last"},
        {"{\"ops\": [\"sign\"], \"devices\": [\"SN 1\"]}",
         "devices[0]: must be 1-128 chars of [A-Za-z0-9._:/@+-], '*' only last"},
        {"{\"ops\": [\"sign\"], \"max_uses\": 0}", "max_uses: must be an integer >= 1"},
        {"{\"ops\": [\"sign\"], \"max_uses\": \"3\"}", "max_uses: must be an integer >= 1"},
        {"{\"ops\": [\"sign\"], \"max_uses\": 1.5}", "max_uses: must be an integer >= 1"},
        {"[\"sign\"]", "scope: must be an object"},
    };
    kbr_scope s;
    kbr_msg msg;
    json_t *j;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&msg, 0, sizeof(msg));
        j = scope_json(cases[i].json);
        assert_int_equal(kbr_scope_from_json(j, &s, &msg), KBR_ERR_BAD_REQUEST);
        assert_string_equal(msg.text, cases[i].msg);
        assert_int_equal(s.ops, 0);
        assert_false(s.keys.present);
        json_decref(j);
    }
}

static void test_scope_name_length_limit(void **state)
{
    char name[130], text[300];
    kbr_scope s;
    kbr_msg msg = {{0}};
    json_t *j;

    (void)state;
    memset(name, 'k', 128);
    name[128] = '\0';
    snprintf(text, sizeof(text), "{\"ops\": [\"sign\"], \"keys\": [\"%s\"]}", name);
    parse_ok(text, &s);
    assert_int_equal(strlen(s.keys.items[0]), 128);
    kbr_scope_cleanup(&s);
    name[128] = 'k';
    name[129] = '\0';
    snprintf(text, sizeof(text), "{\"ops\": [\"sign\"], \"keys\": [\"%s\"]}", name);
    j = scope_json(text);
    assert_int_equal(kbr_scope_from_json(j, &s, &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text,
                        "keys[0]: must be 1-128 chars of [A-Za-z0-9._:/@+-], '*' only last");
    json_decref(j);
}

static kbr_err grant(const char *issuer, const char *req, kbr_msg *msg)
{
    kbr_scope is, rs;
    kbr_err err;

    parse_ok(issuer, &is);
    parse_ok(req, &rs);
    err = kbr_scope_grantable(&is, &rs, msg);
    kbr_scope_cleanup(&is);
    kbr_scope_cleanup(&rs);
    return err;
}

static void test_grantable(void **state)
{
    const char *team = "{\"ops\": [\"admin\"], \"keys\": [\"fw-*\", \"ca-root\"],"
                       " \"products\": [\"thermo\"], \"max_uses\": 1}";
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(
        grant(team,
              "{\"ops\": [\"sign\", \"admin\"], \"keys\": [\"fw-main\", \"fw-beta*\","
              " \"fw-*\", \"ca-root\"], \"products\": [\"thermo\"], \"max_uses\": 100}",
              &msg),
        KBR_OK);
    assert_int_equal(grant(team,
                           "{\"ops\": [\"sign\"], \"keys\": [\"fw-main\", \"ota-key\"],"
                           " \"products\": [\"thermo\"]}",
                           &msg),
                     KBR_ERR_FORBIDDEN);
    assert_string_equal(msg.text, "keys[1]: \"ota-key\" is outside the issuing token's keys");
    assert_int_equal(
        grant(team, "{\"ops\": [\"sign\"], \"keys\": [\"f*\"], \"products\": [\"thermo\"]}", &msg),
        KBR_ERR_FORBIDDEN);
    assert_string_equal(msg.text, "keys[0]: \"f*\" is outside the issuing token's keys");
    assert_int_equal(
        grant(team, "{\"ops\": [\"sign\"], \"keys\": [\"ca-*\"], \"products\": [\"thermo\"]}",
              &msg),
        KBR_ERR_FORBIDDEN);
    assert_int_equal(grant(team, "{\"ops\": [\"sign\"], \"keys\": [\"fw-main\"]}", &msg),
                     KBR_ERR_FORBIDDEN);
    assert_string_equal(msg.text,
                        "products: required, the issuing token is limited to its own products");
    assert_int_equal(
        grant("{\"ops\": [\"sign\", \"read\", \"provision\"]}", "{\"ops\": [\"sign\"]}", &msg),
        KBR_ERR_FORBIDDEN);
    assert_string_equal(msg.text, "ops: only a token holding admin issues tokens");
    assert_int_equal(
        grant("{\"ops\": [\"admin\"]}", "{\"ops\": [\"admin\", \"debug-auth\"]}", &msg), KBR_OK);
    assert_int_equal(
        grant("{\"ops\": [\"admin\"], \"devices\": [\"*\"]}", "{\"ops\": [\"read\"]}", &msg),
        KBR_OK);
}

/* ---- quotas ---- */

static kbr_token *capped_token(fixture *f, int64_t max_uses, char jti[33])
{
    char scope[128];

    new_jti(jti);
    snprintf(scope, sizeof(scope), "{\"ops\": [\"sign\"], \"max_uses\": %lld}",
             (long long)max_uses);
    add_row(f->p, row_new(jti, "ci:fw-pipeline", NOW + 3600, scope));
    return kbr_policy_find(f->p, jti);
}

static void test_quota_reserve_finish(void **state)
{
    fixture *f = *state;
    char jti[33];
    kbr_token *t = capped_token(f, 3, jti);

    for (int i = 0; i < 3; i++)
        assert_int_equal(kbr_policy_reserve_use(t), KBR_OK);
    assert_int_equal(kbr_policy_reserve_use(t), KBR_ERR_QUOTA);
    kbr_policy_finish_use(t, false);
    assert_int_equal(t->reserved, 2);
    assert_int_equal(t->uses, 0);
    assert_int_equal(kbr_policy_reserve_use(t), KBR_OK);
    assert_int_equal(kbr_policy_reserve_use(t), KBR_ERR_QUOTA);
    kbr_policy_finish_use(t, true);
    kbr_policy_finish_use(t, true);
    kbr_policy_finish_use(t, true);
    assert_int_equal(t->uses, 3);
    assert_int_equal(t->reserved, 0);
    assert_int_equal(kbr_policy_reserve_use(t), KBR_ERR_QUOTA);
}

static void test_quota_uncapped_and_restored(void **state)
{
    fixture *f = *state;
    char jti[33], free_jti[33];
    kbr_token *t;
    json_t *row;

    new_jti(free_jti);
    add_row(f->p, row_new(free_jti, "ci:fw-pipeline", NOW + 3600, "{\"ops\": [\"sign\"]}"));
    t = kbr_policy_find(f->p, free_jti);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(kbr_policy_reserve_use(t), KBR_OK);

    t = capped_token(f, 3, jti);
    kbr_policy_set_uses(f->p, jti, 2);
    assert_int_equal(kbr_policy_reserve_use(t), KBR_OK);
    assert_int_equal(kbr_policy_reserve_use(t), KBR_ERR_QUOTA);
    kbr_policy_finish_use(t, false);

    row = row_new(jti, "ci:fw-pipeline", NOW + 3600, "{\"ops\": [\"sign\"], \"max_uses\": 3}");
    json_object_set_new(row, "uses", json_integer(3));
    add_row(f->p, row);
    assert_ptr_equal(kbr_policy_find(f->p, jti), t);
    assert_int_equal(t->uses, 3);
    assert_int_equal(kbr_policy_reserve_use(t), KBR_ERR_QUOTA);
}

/* ---- issuing and the JWK ---- */

static char *decode_segment(const char *p, size_t len)
{
    unsigned char *raw = NULL;
    size_t n = 0;
    char *s;

    assert_int_equal(kbr_b64url_decode(p, len, &raw, &n), KBR_OK);
    s = strndup((const char *)raw, n);
    free(raw);
    return s;
}

static void test_signing_input_and_assemble(void **state)
{
    json_t *claims = claims_new("0123456789abcdef0123456789abcdef", "ci:x", NOW, NOW + 60);
    char *input = NULL, *token = NULL, *canon = NULL, *seg;
    unsigned char sig[65] = {0};
    char zeros[88] = ".";
    const char *dot;

    (void)state;
    assert_int_equal(kbr_jwt_signing_input(claims, "kid-1", &input), KBR_OK);
    dot = strchr(input, '.');
    seg = decode_segment(input, (size_t)(dot - input));
    assert_string_equal(seg, "{\"alg\":\"ES256\",\"kid\":\"kid-1\",\"typ\":\"JWT\"}");
    free(seg);
    seg = decode_segment(dot + 1, strlen(dot + 1));
    assert_int_equal(kbr_json_canonical(claims, &canon), KBR_OK);
    assert_string_equal(seg, canon);
    free(seg);

    assert_int_equal(kbr_jwt_assemble(input, sig, 63, &token), KBR_ERR_BAD_REQUEST);
    assert_null(token);
    assert_int_equal(kbr_jwt_assemble(input, sig, 65, &token), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_jwt_assemble(input, sig, 64, &token), KBR_OK);
    assert_int_equal(strncmp(token, input, strlen(input)), 0);
    /* 64 zero bytes are 86 'A's in unpadded base64url */
    memset(zeros + 1, 'A', 86);
    assert_string_equal(token + strlen(input), zeros);
    free(token);
    free(input);
    assert_int_equal(kbr_jwt_signing_input(json_object_get(claims, "sub"), "kid-1", &input),
                     KBR_ERR_BAD_REQUEST);
    assert_null(input);
    free(canon);
    json_decref(claims);
}

static char *b64url_bytes(const unsigned char *p, size_t n)
{
    char *out = NULL;

    assert_int_equal(kbr_b64url_encode(p, n, &out), KBR_OK);
    return out;
}

static void test_jwk_thumbprint(void **state)
{
    fixture *f = *state;
    unsigned char point[65], md[32];
    size_t plen = 0;
    json_t *jwk = NULL;
    char members[256];
    char *x, *y, *kid;

    assert_int_equal(EVP_PKEY_get_octet_string_param(f->issuer, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                     sizeof(point), &plen),
                     1);
    assert_int_equal(plen, 65);
    assert_int_equal(point[0], 0x04);
    x = b64url_bytes(point + 1, 32);
    y = b64url_bytes(point + 33, 32);
    /* RFC 7638 section 3: required members, lexicographic order, no whitespace. */
    snprintf(members, sizeof(members),
             "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
    assert_int_equal(EVP_Digest(members, strlen(members), md, NULL, EVP_sha256(), NULL), 1);
    kid = b64url_bytes(md, sizeof(md));

    assert_int_equal(kbr_jwk_from_pkey(f->issuer, &jwk), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
    assert_string_equal(json_string_value(json_object_get(jwk, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(jwk, "use")), "sig");
    assert_string_equal(json_string_value(json_object_get(jwk, "x")), x);
    assert_string_equal(json_string_value(json_object_get(jwk, "y")), y);
    assert_string_equal(json_string_value(json_object_get(jwk, "kid")), kid);
    assert_int_equal(json_object_size(jwk), 7);
    json_decref(jwk);
    free(x);
    free(y);
    free(kid);
}

static void test_jwk_and_policy_refuse_other_keys(void **state)
{
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    json_t *jwk = (json_t *)1;
    kbr_policy *p = (kbr_policy *)1;

    (void)state;
    assert_non_null(p384);
    assert_non_null(ed);
    assert_int_equal(kbr_jwk_from_pkey(p384, &jwk), KBR_ERR_BAD_REQUEST);
    assert_null(jwk);
    assert_int_equal(kbr_jwk_from_pkey(ed, &jwk), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_policy_new("", &p), KBR_ERR_CONFIG);
    assert_null(p);
    assert_int_equal(kbr_policy_new(INSTANCE, &p), KBR_OK);
    assert_int_equal(kbr_policy_add_issuer(p, "kid", p384, true), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_policy_add_issuer(p, "kid", ed, true), KBR_ERR_BAD_REQUEST);
    assert_null(kbr_policy_current_kid(p));
    kbr_policy_free(p);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
    kbr_policy_free(NULL);
}

static void test_sub_valid(void **state)
{
    (void)state;
    assert_true(kbr_policy_sub_valid("ci:fw-pipeline"));
    assert_true(kbr_policy_sub_valid("security:bootstrap"));
    assert_true(kbr_policy_sub_valid("service:ota@vendor.example"));
    assert_false(kbr_policy_sub_valid("ci:"));
    assert_false(kbr_policy_sub_valid("cis:x"));
    assert_false(kbr_policy_sub_valid("c:x"));
    assert_false(kbr_policy_sub_valid(":x"));
    assert_false(kbr_policy_sub_valid("ci:fw pipeline"));
    assert_false(kbr_policy_sub_valid("ci"));
    assert_false(kbr_policy_sub_valid(NULL));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- ID tokens of outside issuers ---- */

static void test_glob_and_claims(void **state)
{
    json_t *c = json_pack("{s:s,s:b,s:i,s:[s]}", "repository", "acme/fw", "ref_protected", 1, "run",
                          42, "list", "x");
    char *t = NULL;
    kbr_msg m = {{0}};

    (void)state;
    assert_true(kbr_glob_match("refs/tags/v*", "refs/tags/v1.2"));
    assert_true(kbr_glob_match("acme/*", "acme/group/fw"));
    assert_true(kbr_glob_match("*/fw", "acme/fw"));
    assert_true(kbr_glob_match("a*b*c", "aXbYbZc"));
    assert_false(kbr_glob_match("refs/tags/v*", "refs/heads/main"));
    assert_false(kbr_glob_match("acme/fw", "acme/fw2"));
    assert_false(kbr_glob_match("acme/fw", "acme/f"));
    assert_int_equal(kbr_claim_text(c, "ref_protected", &t), KBR_OK);
    assert_string_equal(t, "true");
    free(t);
    assert_int_equal(kbr_claim_text(c, "run", &t), KBR_OK);
    assert_string_equal(t, "42");
    free(t);
    assert_int_equal(kbr_claim_text(c, "list", &t), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_claim_text(c, "none", &t), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_principal_from_template("ci:github/{repository}", c, &t, &m), KBR_OK);
    assert_string_equal(t, "ci:github/acme/fw");
    free(t);
    assert_int_equal(kbr_principal_from_template("ci:github/{missing}", c, &t, &m),
                     KBR_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(m.text, "missing"));
    json_decref(c);
}

static void test_jwks_parse(void **state)
{
    EVP_PKEY *rsa = kbt_rsa_key(), *ec = kbt_ec_key("P-384");
    json_t *keys = json_pack("[o,o,{s:s,s:s,s:s}]", kbt_jwk_of(rsa, "r", NULL),
                             kbt_jwk_of(ec, "e", "ES384"), "kty", "oct", "kid", "hmac", "k", "AA");
    char *text = kbt_jwks_text(keys);
    kbr_jwks *set = NULL;
    kbr_msg m = {{0}};

    (void)state;
    assert_int_equal(kbr_jwks_parse(text, strlen(text), &set, &m), KBR_OK);
    assert_int_equal(kbr_jwks_size(set), 2); /* the symmetric key is left out */
    assert_true(kbr_jwks_has(set, "e"));
    assert_false(kbr_jwks_has(set, "hmac"));
    kbr_jwks_free(set);
    free(text);
    /* a kid twice refuses the set */
    json_array_append_new(keys, kbt_jwk_of(rsa, "r", NULL));
    text = kbt_jwks_text(keys);
    assert_int_equal(kbr_jwks_parse(text, strlen(text), &set, &m), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(m.text, "appears twice"));
    free(text);
    /* a point off the curve */
    text = strdup("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"x\",\"x\":"
                  "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"y\":"
                  "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}");
    assert_int_equal(kbr_jwks_parse(text, strlen(text), &set, &m), KBR_ERR_BAD_REQUEST);
    free(text);
    json_decref(keys);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

static void test_idtoken_algorithms(void **state)
{
    EVP_PKEY *rsa = kbt_rsa_key(), *ec = kbt_ec_key("P-384");
    json_t *keys = json_pack("[o,o]", kbt_jwk_of(rsa, "r", NULL), kbt_jwk_of(ec, "e", NULL));
    json_t *claims =
        json_pack("{s:s,s:[s,s],s:I,s:I,s:s}", "iss", "https://idp", "aud", "other", "kb", "iat",
                  (json_int_t)NOW - 5, "exp", (json_int_t)NOW + 60, "sub", "job");
    char *text = kbt_jwks_text(keys), *tok;
    kbr_jwks *set = NULL;
    kbr_idtoken t;
    kbr_msg m = {{0}};
    kbr_idtoken_rules rules = {"https://idp", "kb", KBR_JWA_PS256 | KBR_JWA_ES384, 30};

    (void)state;
    assert_int_equal(kbr_jwks_parse(text, strlen(text), &set, &m), KBR_OK);
    tok = kbt_idtoken(rsa, "PS256", "r", claims);
    assert_int_equal(kbr_idtoken_verify(tok, &rules, set, NOW, &t, &m), KBR_OK);
    assert_int_equal(t.alg, KBR_JWA_PS256);
    assert_int_equal(t.exp, NOW + 60);
    kbr_idtoken_cleanup(&t);
    free(tok);
    tok = kbt_idtoken(ec, "ES384", "e", claims);
    assert_int_equal(kbr_idtoken_verify(tok, &rules, set, NOW, &t, &m), KBR_OK);
    kbr_idtoken_cleanup(&t);
    free(tok);
    /* RS256 is not pinned; ES384 under the RSA key's kid does not fit */
    tok = kbt_idtoken(rsa, "RS256", "r", claims);
    assert_int_equal(kbr_idtoken_verify(tok, &rules, set, NOW, &t, &m), KBR_ERR_UNAUTHENTICATED);
    free(tok);
    tok = kbt_idtoken(ec, "ES384", "r", claims);
    assert_int_equal(kbr_idtoken_verify(tok, &rules, set, NOW, &t, &m), KBR_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(m.text, "not for ES384"));
    free(tok);
    /* an unknown kid is told apart, so the caller can fetch the set again */
    tok = kbt_idtoken(ec, "ES384", "new", claims);
    assert_int_equal(kbr_idtoken_verify(tok, &rules, set, NOW, &t, &m), KBR_ERR_NOT_FOUND);
    free(tok);
    /* leeway 30 s: iat 15 s ahead passes, 35 s does not; exp has none */
    tok = kbt_idtoken(ec, "ES384", "e", claims);
    assert_int_equal(kbr_idtoken_verify(tok, &rules, set, NOW - 20, &t, &m), KBR_OK);
    kbr_idtoken_cleanup(&t);
    assert_int_equal(kbr_idtoken_verify(tok, &rules, set, NOW - 40, &t, &m),
                     KBR_ERR_UNAUTHENTICATED);
    assert_int_equal(kbr_idtoken_verify(tok, &rules, set, NOW + 60, &t, &m),
                     KBR_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(m.text, "expired"));
    free(tok);
    kbr_jwks_free(set);
    free(text);
    json_decref(keys);
    json_decref(claims);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_good_token_then_cache_hit),
        T(test_many_signatures_verify),
        T(test_cache_entry_expires_with_token),
        T(test_cache_bounded_oldest_evicted),
        T(test_own_tokens_end_at_exp),
        T(test_missing_and_garbage),
        T(test_two_segments),
        T(test_alg_none_refused),
        T(test_hs256_with_public_pem_refused),
        T(test_tampered_payload_refused),
        T(test_foreign_key_refused),
        T(test_expired_and_not_yet_valid),
        T(test_claims_refused),
        T(test_aud_array_accepted),
        T(test_unknown_jti_and_sub_mismatch),
        T(test_revoked_even_when_cached),
        T(test_revoke_by_sub),
        T(test_revoke_by_key),
        T(test_revocation_cascades),
        T(test_revocation_cascades_through_revoked),
        T(test_principal_ownership),
        cmocka_unit_test(test_scope_covers_and_namelists),
        T(test_cnf_binding),
        T(test_header_extra_member_refused),
        T(test_duplicate_payload_keys_refused),
        T(test_row_update_and_bad_rows),
        T(test_rotation_both_keys_verify),
        T(test_kid_selects_one_key),
        T(test_replaced_key_retires_with_its_last_token),
        T(test_jwks_order),
        T(test_issuer_keys_refused),
        cmocka_unit_test(test_ops_names),
        cmocka_unit_test(test_namelist_match),
        cmocka_unit_test(test_scope_roundtrip),
        cmocka_unit_test(test_scope_errors_name_field),
        cmocka_unit_test(test_scope_name_length_limit),
        cmocka_unit_test(test_grantable),
        T(test_quota_reserve_finish),
        T(test_quota_uncapped_and_restored),
        cmocka_unit_test(test_signing_input_and_assemble),
        T(test_jwk_thumbprint),
        cmocka_unit_test(test_jwk_and_policy_refuse_other_keys),
        cmocka_unit_test(test_sub_valid),
        cmocka_unit_test(test_glob_and_claims),
        cmocka_unit_test(test_jwks_parse),
        cmocka_unit_test(test_idtoken_algorithms),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
