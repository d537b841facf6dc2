/*
 * jwt_fuzz.c - bearer tokens through kbr_policy_authenticate: the strict
 * JWT parse, the signature check, the claims, the registry, the cache and
 * the live checks (revocation, times, mTLS binding).
 *
 * A forged signature stops every mutated token at the signature check, so
 * the first input byte picks what the rest of the input is:
 *   0  the whole bearer string;
 *   1  the header JSON text of a token whose payload is a registered token's
 *      claims, signed with the issuer key here;
 *   2  the payload JSON text (the claims) under a valid header, signed;
 *   3  the signature bytes after a registered token's header and payload.
 * Bit 0x80 presents a client certificate thumbprint (mTLS) with the call.
 *
 * The issuer key is fixed (not generated per run) so that seeds holding
 * whole signed tokens verify in every replay and keep reaching the claims;
 * KID is its RFC 7638 thumbprint, which the header must name.
 * It signs nothing outside this file.  Time is fixed for the same reason.
 */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "kbr_policy.h"

#include "fuzz.h"

#define NOW      ((time_t)1800000000)
#define INSTANCE "kb-fuzz"
/* The RFC 7638 thumbprint of the issuer key below: the kid its tokens carry. */
#define KID "eq0YsYrZ0xvXwVQ5Hd925hU2HMB91RfaA962JTJUZ4s"
#define X5T "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"

#define ISSUER_PRIV "7c41e94599f4e69c0f4834e070acda59f449062bc60dc96dba59ea3f4e72fe3a"
#define ISSUER_PUB                                                                                 \
    "04a93e5fdee81ec0460e8af0b785f40ea1064c78411b666bfa96347a2a7259ef0a3b0b84d03173002e47d7769eb3" \
    "f26244089cf4396f68908c971ba52d9f7809eb"

/* The registry: a CI token, an mTLS-bound factory token, a revoked one and an admin. */
static const char *const rows[] = {
    "{\"jti\": \"0123456789abcdef0123456789abcdef\", \"sub\": \"ci:gateway-release\", "
    "\"scope\": {\"ops\": [\"sign\"], \"keys\": [\"fw-*\"], \"products\": [\"gateway\"], "
    "\"max_uses\": 10}, \"issued_at\": \"2027-01-15T07:00:00Z\", \"not_before\": null, "
    "\"expires_at\": \"2030-01-01T00:00:00Z\", \"revoked_at\": null, \"issued_by\": "
    "\"security:bootstrap\", \"cnf_x5t\": null, \"uses\": 3, \"kid\": \"" KID "\"}",
    "{\"jti\": \"fedcba9876543210fedcba9876543210\", \"sub\": \"factory:shenzhen-1\", "
    "\"scope\": {\"ops\": [\"provision\"], \"batches\": [\"b-2026-*\"]}, \"issued_at\": "
    "\"2027-01-15T07:00:00Z\", \"not_before\": \"2027-01-15T07:00:00Z\", \"expires_at\": "
    "\"2030-01-01T00:00:00Z\", \"revoked_at\": null, \"issued_by\": \"security:bootstrap\", "
    "\"cnf_x5t\": \"" X5T "\", \"uses\": 0, \"kid\": \"" KID "\"}",
    "{\"jti\": \"00000000000000000000000000000001\", \"sub\": \"ota:fleet\", \"scope\": "
    "{\"ops\": [\"ota-report\"]}, \"issued_at\": \"2027-01-15T07:00:00Z\", \"expires_at\": "
    "\"2030-01-01T00:00:00Z\", \"revoked_at\": \"2027-01-15T07:30:00Z\", \"issued_by\": null, "
    "\"cnf_x5t\": null, \"kid\": \"" KID "\"}",
    "{\"jti\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"sub\": \"security:bootstrap\", \"scope\": "
    "{\"ops\": [\"admin\"]}, \"issued_at\": \"2027-01-15T07:00:00Z\", \"expires_at\": "
    "\"2030-01-01T00:00:00Z\", \"revoked_at\": null, \"issued_by\": null, \"cnf_x5t\": null, "
    "\"kid\": \"" KID "\"}",
};

/* The claims of rows[0], as the broker signs them. */
static const char valid_claims[] =
    "{\"aud\":\"" INSTANCE "\",\"exp\":1893456000,\"iat\":1800000000,\"iss\":\"" INSTANCE "\","
    "\"jti\":\"0123456789abcdef0123456789abcdef\",\"kbr\":{\"keys\":[\"fw-*\"],\"max_uses\":10,"
    "\"ops\":[\"sign\"],\"products\":[\"gateway\"]},\"nbf\":1800000000,\"sub\":\"ci:gateway-"
    "release\"}";
static const char valid_header[] = "{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}";

typedef struct {
    EVP_PKEY *issuer;
    kbr_policy *policy;
} fixture;

static fixture fx;

static EVP_PKEY *fixed_issuer(void)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    BIGNUM *priv = NULL;
    unsigned char pub[65];
    long publen = 0;
    unsigned char *tmp = OPENSSL_hexstr2buf(ISSUER_PUB, &publen);
    EVP_PKEY *key = NULL;

    FUZZ_CHECK(bld != NULL && ctx != NULL && tmp != NULL && publen == (long)sizeof(pub));
    memcpy(pub, tmp, sizeof(pub));
    OPENSSL_free(tmp);
    FUZZ_CHECK(BN_hex2bn(&priv, ISSUER_PRIV) == 64);
    FUZZ_CHECK(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0));
    FUZZ_CHECK(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv));
    FUZZ_CHECK(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)));
    params = OSSL_PARAM_BLD_to_param(bld);
    FUZZ_CHECK(params != NULL && EVP_PKEY_fromdata_init(ctx) == 1);
    FUZZ_CHECK(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) == 1);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(priv);
    return key;
}

/* What the HSM returns for CKM_ECDSA: r||s, 32 bytes each, over SHA-256(input). */
static void issuer_sign(const char *input, unsigned char sig[64])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[80];
    const unsigned char *p = der;
    size_t derlen = sizeof(der);
    ECDSA_SIG *es;

    FUZZ_CHECK(ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, fx.issuer) == 1);
    FUZZ_CHECK(EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)input, strlen(input)) == 1);
    es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    FUZZ_CHECK(es != NULL);
    FUZZ_CHECK(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) == 32);
    FUZZ_CHECK(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) == 32);
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(ctx);
}

static char *b64url(const void *data, size_t len)
{
    char *out = NULL;

    FUZZ_CHECK(kbr_b64url_encode(data, len, &out) == KBR_OK);
    return out;
}

static char *join_dot(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);

    FUZZ_CHECK(s != NULL);
    snprintf(s, n, "%s.%s", a, b);
    return s;
}

/* header.payload (both JSON texts taken verbatim) and a signature by the issuer. */
static char *signed_token(const void *header, size_t hlen, const void *payload, size_t plen)
{
    char *h = b64url(header, hlen), *p = b64url(payload, plen);
    char *input = join_dot(h, p), *token = NULL;
    unsigned char sig[64];

    issuer_sign(input, sig);
    FUZZ_CHECK(kbr_jwt_assemble(input, sig, sizeof(sig), &token) == KBR_OK);
    free(h);
    free(p);
    free(input);
    return token;
}

static char *with_signature(const uint8_t *sig, size_t len)
{
    char *h = b64url(valid_header, strlen(valid_header));
    char *p = b64url(valid_claims, strlen(valid_claims));
    char *s = b64url(sig, len), *input = join_dot(h, p), *token = join_dot(input, s);

    free(h);
    free(p);
    free(s);
    free(input);
    return token;
}

static char *bearer_for(uint8_t mode, const uint8_t *data, size_t size)
{
    switch (mode & 3) {
    case 0:
        return fuzz_cstr(data, size);
    case 1:
        return signed_token(data, size, valid_claims, strlen(valid_claims));
    case 2:
        return signed_token(valid_header, strlen(valid_header), data, size);
    default:
        return with_signature(data, size);
    }
}

/* What a token that passes may be, whatever string it came from. */
static void check_accepted(const kbr_token *t, const char *x5t)
{
    FUZZ_CHECK(t != NULL && strlen(t->jti) == 32 && kbr_policy_sub_valid(t->sub));
    /* the broker's own tokens: exp and nbf exactly, no leeway */
    FUZZ_CHECK(t->revoked_at == 0 && t->expires_at > NOW);
    FUZZ_CHECK(t->not_before <= NOW);
    FUZZ_CHECK(t->cnf_x5t[0] == '\0' || (x5t != NULL && strcmp(t->cnf_x5t, x5t) == 0));
    FUZZ_CHECK(kbr_policy_find(fx.policy, t->jti) == t);
    /* signed by the one issuer key, under its kid */
    FUZZ_CHECK(strcmp(t->kid, KID) == 0);
}

static void authenticate(const char *bearer, const char *x5t)
{
    kbr_token *tok = NULL, *again = NULL;
    kbr_msg msg = {{0}}, msg2 = {{0}};
    kbr_err err = kbr_policy_authenticate(fx.policy, bearer, NOW, x5t, &tok, &msg);
    kbr_err err2;

    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_UNAUTHENTICATED && tok == NULL && msg.text[0] != '\0');
        /* the message says which check failed, never what the token was */
        FUZZ_CHECK(strlen(bearer) < 16 || strstr(msg.text, bearer) == NULL);
        return;
    }
    check_accepted(tok, x5t);
    /* the second call is answered from the cache and must agree */
    err2 = kbr_policy_authenticate(fx.policy, bearer, NOW, x5t, &again, &msg2);
    FUZZ_CHECK(err2 == KBR_OK && again == tok);
    /* a bound token refuses the same string from a connection without the certificate */
    if (tok->cnf_x5t[0] != '\0')
        FUZZ_CHECK(kbr_policy_authenticate(fx.policy, bearer, NOW, NULL, &again, &msg2) ==
                   KBR_ERR_UNAUTHENTICATED);
}

static void fixture_init(void)
{
    fx.issuer = fixed_issuer();
    FUZZ_CHECK(kbr_policy_new(INSTANCE, &fx.policy) == KBR_OK);
    FUZZ_CHECK(kbr_policy_add_issuer(fx.policy, KID, fx.issuer, true) == KBR_OK);
    /* small, so eviction runs often and memory stays flat over millions of inputs */
    kbr_policy_set_cache_limit(fx.policy, 64);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *row = json_loads(rows[i], 0, NULL);
        FUZZ_CHECK(row != NULL && kbr_policy_add_token(fx.policy, row) == KBR_OK);
        json_decref(row);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    char *bearer;

    if (!ready) {
        fixture_init();
        ready = true;
    }
    if (size == 0)
        return 0;
    bearer = bearer_for(data[0], data + 1, size - 1);
    authenticate(bearer, (data[0] & 0x80) != 0 ? X5T : NULL);
    free(bearer);
    return 0;
}
