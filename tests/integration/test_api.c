/*
 * test_api.c - keybrokerd over real HTTP on 127.0.0.1 with a real SoftHSM2
 * token and a SQLite store on disk: signatures, tokens, scope, quotas,
 * input validation and the audit log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "harness.h"
#include "kbr_audit.h"
#include "kbr_hsm.h"
#include "kbr_policy.h"

static kbt_env *env;
/* every token string handed out in this run: none may ever appear in the audit log */
static char *issued[64];
static size_t n_issued;

static char *remember(char *tok)
{
    if (n_issued < sizeof(issued) / sizeof(issued[0]))
        issued[n_issued++] = strdup(tok);
    return tok;
}

static int group_setup(void **state)
{
    (void)state;
    env = kbt_start(NULL);
    remember(env->admin);
    kbt_key(env, "fw-p256", "firmware-signing", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-p384", "firmware-signing", "ecdsa-p384", "gateway");
    kbt_key(env, "fw-ed25519", "firmware-signing", "ed25519", "gateway");
    kbt_key(env, "fw-rsa3072", "firmware-signing", "rsa-3072", "gateway");
    kbt_key(env, "fw-rsa4096", "firmware-signing", "rsa-4096", "gateway");
    kbt_key(env, "ota-p256", "ota-signing", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-other", "firmware-signing", "ecdsa-p256", "thermostat");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kbt_free(env);
    for (size_t i = 0; i < n_issued; i++)
        free(issued[i]);
    return 0;
}

static const char *SBOM_INLINE =
    "{\"format\":\"cyclonedx\",\"components\":[{\"name\":\"openssl\",\"version\":\"3.0.13\","
    "\"purl\":\"pkg:generic/openssl@3.0.13\"},{\"name\":\"zlib\",\"version\":\"1.3.1\"}]}";

static char *ci_token(const char *extra)
{
    char spec[1024];

    snprintf(spec, sizeof(spec),
             "{\"sub\":\"ci:gateway-build\",\"ops\":[\"sign\"],\"keys\":[\"fw-*\",\"ota-p256\"],"
             "\"products\":[\"gateway\"],\"ttl\":3600%s}",
             extra != NULL ? extra : "");
    return remember(kbt_token(env, spec));
}

static kbt_resp sign_digest(const char *tok, const char *key, const unsigned char *digest,
                            size_t dlen, const char *hash, const char *format, const char *version,
                            const char *extra)
{
    char hex[129], body[4096];

    kbr_hex_encode_buf(digest, dlen, hex);
    snprintf(body, sizeof(body),
             "{\"key\":\"%s\",\"digest\":\"%s\",\"hash\":\"%s\",\"format\":\"%s\","
             "\"artifact\":{\"product\":\"gateway\",\"version\":\"%s\",\"name\":\"gw.bin\","
             "\"kind\":\"firmware\"},\"sbom\":%s%s}",
             key, hex, hash, format, version, SBOM_INLINE, extra != NULL ? extra : "");
    return kbt_call(env, "POST", "/v1/sign", tok, body);
}

static void expect(kbt_resp *r, long status, const char *code, const char *msg_part)
{
    if (r->status != status || strcmp(kbt_err_code(r), code) != 0 ||
        (msg_part != NULL && strstr(kbt_err_message(r), msg_part) == NULL))
        fail_msg("expected %ld %s (\"%s\"), got %ld %s", status, code,
                 msg_part != NULL ? msg_part : "", r->status, r->body);
    assert_true(r->audit_seq > 0);
    kbt_resp_free(r);
}

static void verify_response(kbt_resp *r, const char *key, const char *fmt, const EVP_MD *md,
                            const unsigned char *in, size_t inlen)
{
    unsigned char *sig = NULL;
    size_t siglen = 0;
    EVP_PKEY *pub = kbt_pubkey(env, key);

    if (r->status != 200)
        fail_msg("sign with %s: %ld %s", key, r->status, r->body);
    assert_int_equal(
        kbr_b64_decode(json_string_value(json_object_get(r->json, "signature_b64")), &sig, &siglen),
        KBR_OK);
    assert_true(kbt_verify(pub, fmt, md, in, inlen, sig, siglen));
    /* a flipped bit must not verify: the check above is not vacuous */
    sig[siglen / 2] ^= 1;
    assert_false(kbt_verify(pub, fmt, md, in, inlen, sig, siglen));
    assert_int_equal(json_integer_value(json_object_get(r->json, "audit_seq")), r->audit_seq);
    free(sig);
    EVP_PKEY_free(pub);
    kbt_resp_free(r);
}

static void test_health_and_jwks(void **state)
{
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "GET", "/v1/health", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(r.json, "hsm")), "ok");
    assert_string_equal(json_string_value(json_object_get(r.json, "audit")), "ok");
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/jwks", NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *k = json_array_get(json_object_get(r.json, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(k, "kty")), "EC");
    assert_string_equal(json_string_value(json_object_get(k, "crv")), "P-256");
    assert_non_null(json_string_value(json_object_get(k, "kid")));
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "keybroker_requests_total"));
    kbt_resp_free(&r);
}

static void test_key_objects(void **state)
{
    kbt_resp r;
    json_t *hsm;

    (void)state;
    r = kbt_call(env, "GET", "/v1/keys/fw-p256", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "purpose")), "firmware-signing");
    assert_string_equal(json_string_value(json_object_get(r.json, "algorithm")), "ecdsa-p256");
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "active");
    assert_true(json_is_null(json_object_get(r.json, "certificate")));
    hsm = json_object_get(r.json, "hsm");
    assert_true(json_is_true(json_object_get(hsm, "sensitive")));
    assert_true(json_is_false(json_object_get(hsm, "extractable")));
    assert_true(json_is_true(json_object_get(hsm, "local")));
    assert_true(r.audit_seq > 0);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/keys", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "keys")), 7);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/keys/nope", env->admin, NULL);
    expect(&r, 404, "not_found", "nope");
    r = kbt_call(env, "POST", "/v1/keys", env->admin,
                 "{\"name\":\"fw-p256\",\"purpose\":\"firmware-signing\",\"algorithm\":"
                 "\"ecdsa-p256\",\"products\":[\"gateway\"]}");
    expect(&r, 409, "conflict", "fw-p256");
    r = kbt_call(env, "POST", "/v1/keys", env->admin,
                 "{\"name\":\"k2\",\"purpose\":\"firmware-signing\",\"algorithm\":\"dsa\","
                 "\"products\":[\"gateway\"]}");
    expect(&r, 400, "bad_request", "algorithm");
}

static void test_sign_each_algorithm(void **state)
{
    char *tok = ci_token(NULL);
    unsigned char d32[32], d48[48], msg[300];
    char body[2048], *b64 = NULL;
    kbt_resp r;

    (void)state;
    RAND_bytes(d32, sizeof(d32));
    RAND_bytes(d48, sizeof(d48));
    RAND_bytes(msg, sizeof(msg));
    r = sign_digest(tok, "fw-p256", d32, 32, "sha256", "raw", "1.0.0", NULL);
    verify_response(&r, "fw-p256", "raw", EVP_sha256(), d32, 32);
    r = sign_digest(tok, "fw-p256", d32, 32, "sha256", "der", "1.0.0", NULL);
    verify_response(&r, "fw-p256", "der", EVP_sha256(), d32, 32);
    r = sign_digest(tok, "fw-p384", d48, 48, "sha384", "raw", "1.0.1", NULL);
    verify_response(&r, "fw-p384", "raw", EVP_sha384(), d48, 48);
    r = sign_digest(tok, "fw-rsa3072", d32, 32, "sha256", "raw", "1.0.2", NULL);
    verify_response(&r, "fw-rsa3072", "pss", EVP_sha256(), d32, 32);
    r = sign_digest(tok, "fw-rsa4096", d48, 48, "sha384", "raw", "1.0.3", ",\"padding\":\"pkcs1\"");
    verify_response(&r, "fw-rsa4096", "pkcs1", EVP_sha384(), d48, 48);
    assert_int_equal(kbr_b64_encode(msg, sizeof(msg), &b64), KBR_OK);
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-ed25519\",\"message_b64\":\"%s\",\"artifact\":{\"product\":"
             "\"gateway\",\"version\":\"1.0.4\"},\"sbom\":%s}",
             b64, SBOM_INLINE);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    verify_response(&r, "fw-ed25519", "raw", NULL, msg, sizeof(msg));
    free(b64);
    free(tok);
}

/* ---- token attacks ---- */

static char *b64url(const void *p, size_t n)
{
    char *s = NULL;
    assert_int_equal(kbr_b64url_encode(p, n, &s), KBR_OK);
    return s;
}

static json_t *payload_of(const char *tok)
{
    const char *a = strchr(tok, '.'), *b = strrchr(tok, '.');
    unsigned char *raw = NULL;
    size_t n = 0;
    json_t *j;

    assert_int_equal(kbr_b64url_decode(a + 1, (size_t)(b - a - 1), &raw, &n), KBR_OK);
    j = json_loadb((const char *)raw, n, 0, NULL);
    free(raw);
    assert_non_null(j);
    return j;
}

static char *jws(const char *header, const json_t *payload, const unsigned char *sig, size_t siglen)
{
    char *h = b64url(header, strlen(header));
    char *ptext = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    char *p = b64url(ptext, strlen(ptext));
    char *s = b64url(sig, siglen);
    char *out = NULL;

    assert_true(asprintf(&out, "%s.%s.%s", h, p, s) > 0);
    free(h);
    free(ptext);
    free(p);
    free(s);
    return out;
}

/* Signs header.payload as ES256 with key (raw r||s). */
static char *es256(const char *header, const json_t *payload, EVP_PKEY *key)
{
    char *h = b64url(header, strlen(header));
    char *ptext = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    char *p = b64url(ptext, strlen(ptext));
    char *input = NULL, *out = NULL;
    unsigned char der[80], raw[64];
    size_t derlen = sizeof(der);
    const unsigned char *dp = der;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    ECDSA_SIG *s;

    assert_true(asprintf(&input, "%s.%s", h, p) > 0);
    assert_int_equal(EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(m, der, &derlen, (unsigned char *)input, strlen(input)), 1);
    s = d2i_ECDSA_SIG(NULL, &dp, (long)derlen);
    BN_bn2binpad(ECDSA_SIG_get0_r(s), raw, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(s), raw + 32, 32);
    char *sig = b64url(raw, 64);
    assert_true(asprintf(&out, "%s.%s", input, sig) > 0);
    ECDSA_SIG_free(s);
    EVP_MD_CTX_free(m);
    free(h);
    free(ptext);
    free(p);
    free(input);
    free(sig);
    return out;
}

/* A token signed by the real issuer key in the HSM, with claims of the test's choosing. */
static char *issuer_signed(const json_t *payload)
{
    kbr_hsm *hsm = NULL;
    kbr_hsm_session *s = NULL;
    kbr_secret *pin = NULL;
    char *input = NULL, *tok = NULL;
    unsigned char md[32], *sig = NULL;
    size_t siglen = 0;
    json_t *jwks;
    kbt_resp r = kbt_call(env, "GET", "/v1/jwks", NULL, NULL);

    jwks = json_array_get(json_object_get(r.json, "keys"), 0);
    /*
     * SoftHSM2 is not built for two processes using one token at once (its
     * object store can vanish under the other process), so the broker
     * steps aside while the test signs with the issuer key.
     */
    kbt_stop(env);
    assert_int_equal(kbr_secret_new(KBT_PIN, strlen(KBT_PIN), &pin), KBR_OK);
    assert_int_equal(kbr_hsm_open("/usr/lib/softhsm/libsofthsm2.so", "keybroker", pin, &hsm, NULL),
                     KBR_OK);
    assert_int_equal(kbr_hsm_session_open(hsm, &s), KBR_OK);
    assert_int_equal(
        kbr_jwt_signing_input(payload, json_string_value(json_object_get(jwks, "kid")), &input),
        KBR_OK);
    SHA256((unsigned char *)input, strlen(input), md);
    assert_int_equal(
        kbr_hsm_sign(s, "kbr/issuer", KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, md, 32, &sig, &siglen),
        KBR_OK);
    assert_int_equal(kbr_jwt_assemble(input, sig, siglen, &tok), KBR_OK);
    kbr_hsm_session_close(s);
    kbr_hsm_close(hsm);
    kbr_secret_free(pin);
    free(input);
    free(sig);
    kbt_resp_free(&r);
    assert_int_equal(kbt_spawn_daemon(env), 0);
    return tok;
}

static char *issuer_pem(void)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/jwks", NULL, NULL);
    json_t *k = json_array_get(json_object_get(r.json, "keys"), 0);
    unsigned char *x = NULL, *y = NULL, pt[65];
    size_t xl = 0, yl = 0;
    const char *xs = json_string_value(json_object_get(k, "x"));
    const char *ys = json_string_value(json_object_get(k, "y"));
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM params[3];
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem, *data;
    long len;

    assert_int_equal(kbr_b64url_decode(xs, strlen(xs), &x, &xl), KBR_OK);
    assert_int_equal(kbr_b64url_decode(ys, strlen(ys), &y, &yl), KBR_OK);
    pt[0] = 4;
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"P-256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
    params[2] = OSSL_PARAM_construct_end();
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    len = BIO_get_mem_data(bio, &data);
    pem = strndup(data, (size_t)len);
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    free(x);
    free(y);
    kbt_resp_free(&r);
    return pem;
}

static void expect_401(const char *tok, const char *why)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/keys", tok, NULL);

    if (r.status != 401 || strcmp(kbt_err_code(&r), "unauthenticated") != 0)
        fail_msg("%s: expected 401 unauthenticated, got %ld %s", why, r.status, r.body);
    assert_true(r.audit_seq > 0);
    kbt_resp_free(&r);
}

static void test_token_attacks(void **state)
{
    char *good =
        remember(kbt_token(env, "{\"sub\":\"security:reader\",\"ops\":[\"read\"],\"ttl\":600}"));
    json_t *p = payload_of(good), *q;
    char *t, *pem = issuer_pem();
    unsigned char mac[32];
    unsigned int maclen = 0;
    EVP_PKEY *foreign = EVP_EC_gen("P-256");
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "GET", "/v1/keys", good, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);

    expect_401(NULL, "missing token");
    expect_401("", "empty token");
    expect_401("not-a-jwt", "malformed");
    expect_401("a.b", "two segments");

    t = jws("{\"alg\":\"none\",\"typ\":\"JWT\"}", p, (const unsigned char *)"", 0);
    expect_401(t, "alg none");
    free(t);

    {
        char *h = b64url("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27);
        char *ptext = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
        char *pb = b64url(ptext, strlen(ptext));
        char *input = NULL;
        assert_true(asprintf(&input, "%s.%s", h, pb) > 0);
        HMAC(EVP_sha256(), pem, (int)strlen(pem), (unsigned char *)input, strlen(input), mac,
             &maclen);
        t = jws("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", p, mac, maclen);
        expect_401(t, "HS256 with the public key as HMAC secret");
        free(t);
        free(h);
        free(ptext);
        free(pb);
        free(input);
    }

    /* tampered: widen the scope, keep the signature */
    {
        const char *sig = strrchr(good, '.') + 1;
        unsigned char *raw = NULL;
        size_t n = 0;
        q = json_deep_copy(p);
        json_array_append_new(json_object_get(json_object_get(q, "kbr"), "ops"),
                              json_string("admin"));
        assert_int_equal(kbr_b64url_decode(sig, strlen(sig), &raw, &n), KBR_OK);
        t = jws("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", q, raw, n);
        expect_401(t, "payload tampered");
        free(t);
        free(raw);
        json_decref(q);
    }

    t = es256("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", p, foreign);
    expect_401(t, "signed by a foreign key");
    free(t);

    q = json_deep_copy(p);
    json_object_set_new(q, "exp", json_integer(time(NULL) - 10));
    json_object_set_new(q, "iat", json_integer(time(NULL) - 100));
    json_object_set_new(q, "nbf", json_integer(time(NULL) - 100));
    t = issuer_signed(q);
    expect_401(t, "expired");
    free(t);
    json_decref(q);

    q = json_deep_copy(p);
    json_object_set_new(q, "nbf", json_integer(time(NULL) + 300));
    t = issuer_signed(q);
    expect_401(t, "not yet valid");
    free(t);
    json_decref(q);

    q = json_deep_copy(p);
    json_object_set_new(q, "iss", json_string("someone-else"));
    t = issuer_signed(q);
    expect_401(t, "wrong iss");
    free(t);
    json_decref(q);

    q = json_deep_copy(p);
    json_object_set_new(q, "aud", json_string("another-broker"));
    t = issuer_signed(q);
    expect_401(t, "wrong aud");
    free(t);
    json_decref(q);

    /* correctly signed, but never issued through the API: no registry entry */
    q = json_deep_copy(p);
    json_object_set_new(q, "jti", json_string("00112233445566778899aabbccddeeff"));
    t = issuer_signed(q);
    expect_401(t, "unknown jti");
    free(t);
    json_decref(q);

    /* control: the same path with unchanged claims is accepted */
    t = issuer_signed(p);
    r = kbt_call(env, "GET", "/v1/keys", t, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    free(t);

    EVP_PKEY_free(foreign);
    free(pem);
    json_decref(p);
    free(good);
}

static void test_revocation(void **state)
{
    char *a = remember(kbt_token(env, "{\"sub\":\"ci:rev-a\",\"ops\":[\"read\"],\"ttl\":600}"));
    char *b1 = remember(kbt_token(env, "{\"sub\":\"ci:rev-b\",\"ops\":[\"read\"],\"ttl\":600}"));
    char *b2 = remember(kbt_token(env, "{\"sub\":\"ci:rev-b\",\"ops\":[\"read\"],\"ttl\":600}"));
    char *k = remember(kbt_token(
        env, "{\"sub\":\"ci:rev-k\",\"ops\":[\"sign\"],\"keys\":[\"fw-p3*\"],\"ttl\":600}"));
    char *k2 = remember(kbt_token(
        env, "{\"sub\":\"ci:rev-k\",\"ops\":[\"sign\"],\"keys\":[\"fw-other\"],\"ttl\":600}"));
    json_t *pa = payload_of(a);
    char path[128];
    kbt_resp r;

    (void)state;
    /* a cached, valid token ... */
    r = kbt_call(env, "GET", "/v1/keys", a, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/tokens/%s/revoke",
             json_string_value(json_object_get(pa, "jti")));
    r = kbt_call(env, "POST", path, env->admin, "{\"reason\":\"leaked in a CI log\"}");
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    /* ... is refused on the very next call */
    expect_401(a, "revoked by jti");

    r = kbt_call(env, "POST", "/v1/revocations", env->admin,
                 "{\"sub\":\"ci:rev-b\",\"reason\":\"offboarded\"}");
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "revoked")), 2);
    kbt_resp_free(&r);
    expect_401(b1, "principal revoked");
    expect_401(b2, "principal revoked");

    r = kbt_call(env, "POST", "/v1/revocations", env->admin, "{\"key\":\"fw-p384\"}");
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    expect_401(k, "revoked by key (prefix scope)");
    r = kbt_call(env, "GET", "/v1/audit?limit=1", k2, NULL);
    expect(&r, 403, "forbidden", "read"); /* still valid: its scope does not reach fw-p384 */

    r = kbt_call(env, "POST", "/v1/tokens/0123456789abcdef0123456789abcdef/revoke", env->admin,
                 "{}");
    expect(&r, 404, "not_found", NULL);
    r = kbt_call(env, "POST", "/v1/revocations", env->admin, "{}");
    expect(&r, 400, "bad_request", "sub or key");

    json_decref(pa);
    free(a);
    free(b1);
    free(b2);
    free(k);
    free(k2);
}

static void test_scope_violations(void **state)
{
    char *tok = ci_token(NULL);
    char *reader =
        remember(kbt_token(env, "{\"sub\":\"security:r\",\"ops\":[\"read\"],\"ttl\":600}"));
    char *narrow = remember(kbt_token(
        env,
        "{\"sub\":\"security:team\",\"ops\":[\"admin\"],\"products\":[\"gateway\"],\"ttl\":600}"));
    unsigned char d[32] = {1};
    char body[1024];
    kbt_resp r;

    (void)state;
    r = sign_digest(tok, "ota-p256", d, 32, "sha256", "raw", "1.0.0", NULL);
    /* ota key is in the token's keys, but an ota-signing key signs no firmware */
    expect(&r, 400, "bad_request", "artifact.kind");
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-other\",\"digest\":\"%064x\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"9\"},\"sbom\":%s}",
             1, SBOM_INLINE);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    expect(&r, 403, "forbidden", "fw-other"); /* fw-other serves thermostat only */
    r = kbt_call(env, "POST", "/v1/sign", reader, body);
    expect(&r, 403, "forbidden", "sign");
    r = kbt_call(env, "POST", "/v1/keys", tok,
                 "{\"name\":\"x\",\"purpose\":\"firmware-signing\",\"algorithm\":\"ecdsa-p256\","
                 "\"products\":[\"gateway\"]}");
    expect(&r, 403, "forbidden", "admin");
    /* a product team's admin cannot grant beyond its product */
    r = kbt_call(env, "POST", "/v1/tokens", narrow,
                 "{\"sub\":\"ci:x\",\"ops\":[\"sign\"],\"products\":[\"thermostat\"],\"ttl\":60}");
    expect(&r, 403, "forbidden", "products");
    r = kbt_call(env, "POST", "/v1/tokens", narrow,
                 "{\"sub\":\"ci:x\",\"ops\":[\"sign\"],\"ttl\":60}");
    expect(&r, 403, "forbidden", "products");
    r = kbt_call(env, "POST", "/v1/tokens", narrow,
                 "{\"sub\":\"ci:x\",\"ops\":[\"sign\"],\"products\":[\"gateway\"],\"ttl\":60}");
    assert_int_equal(r.status, 201);
    remember((char *)json_string_value(json_object_get(r.json, "token")));
    kbt_resp_free(&r);
    free(tok);
    free(reader);
    free(narrow);
}

static void test_bad_input(void **state)
{
    char *tok = ci_token(NULL);
    char body[4096];
    char *big;
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "POST", "/v1/sign", tok, "{\"key\": \"fw-p256\", ");
    expect(&r, 400, "bad_request", "JSON");
    r = kbt_call(env, "POST", "/v1/sign", tok, "[1,2]");
    expect(&r, 400, "bad_request", "object");
    r = kbt_call(env, "POST", "/v1/sign", tok, "");
    expect(&r, 400, "bad_request", "request body is empty");
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-p256\",\"digest\":\"zz%062d\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"2\"},\"sbom\":%s}",
             0, SBOM_INLINE);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    expect(&r, 400, "bad_request", "digest");
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-p256\",\"digest\":\"%040d\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"2\"},\"sbom\":%s}",
             0, SBOM_INLINE);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    expect(&r, 400, "bad_request", "digest");
    snprintf(body, sizeof(body), "{\"key\":\"fw-p256\",\"digest\":\"%064d\"}", 0);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    expect(&r, 400, "bad_request", "artifact");
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-p256\",\"digest\":\"%064d\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"2\"}}",
             0);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    expect(&r, 400, "bad_request", "sbom");
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-p256\",\"digest\":\"%064d\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"2\"},\"sbom\":%s,\"colour\":\"blue\"}",
             0, SBOM_INLINE);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    expect(&r, 400, "bad_request", "colour");
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-p256\",\"digest\":\"%064d\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"2\"},\"sbom_b64\":\"@@@\"}",
             0);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    expect(&r, 400, "bad_request", "sbom_b64");
    r = kbt_call(env, "POST", "/v1/tokens", env->admin, "{\"sub\":\"ci:x\",\"ops\":[\"sign\"]}");
    expect(&r, 400, "bad_request", "ttl");
    r = kbt_call(env, "POST", "/v1/tokens", env->admin,
                 "{\"sub\":\"nobody\",\"ops\":[\"sign\"],\"ttl\":5}");
    expect(&r, 400, "bad_request", "sub");
    r = kbt_call(env, "POST", "/v1/tokens", env->admin,
                 "{\"sub\":\"ci:x\",\"ops\":[\"fly\"],\"ttl\":5}");
    expect(&r, 400, "bad_request", "ops");

    big = malloc(1048576 + 200);
    memset(big, ' ', 1048576 + 100);
    memcpy(big, "{\"key\":\"fw-p256\"", 16);
    big[1048576 + 98] = '}';
    big[1048576 + 99] = '\0';
    r = kbt_call(env, "POST", "/v1/sign", tok, big);
    expect(&r, 413, "too_large", NULL);
    free(big);

    r = kbt_call(env, "GET", "/v1/nothing-here", tok, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    free(tok);
}

static void test_firmware_ledger(void **state)
{
    char *tok = ci_token(NULL);
    unsigned char d1[32], d2[32];
    char body[2048], hex[65], *cdx_b64 = NULL;
    const char *cdx = "{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.5\",\"components\":["
                      "{\"name\":\"mbedtls\",\"version\":\"3.5.0\",\"purl\":\"pkg:github/"
                      "Mbed-TLS/mbedtls@3.5.0\",\"components\":[{\"name\":\"everest\","
                      "\"version\":\"1\"}]}]}";
    json_t *all, *e;
    size_t i;
    bool seen = false;
    kbt_resp r;

    (void)state;
    RAND_bytes(d1, 32);
    RAND_bytes(d2, 32);
    r = sign_digest(tok, "fw-p256", d1, 32, "sha256", "raw", "5.0.0", NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    /* a CI retry of the same build is fine */
    r = sign_digest(tok, "fw-p256", d1, 32, "sha256", "raw", "5.0.0", NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    r = sign_digest(tok, "fw-p256", d2, 32, "sha256", "raw", "5.0.0", NULL);
    expect(&r, 409, "conflict", "5.0.0");

    /* a CycloneDX document: nested components are recorded too */
    assert_int_equal(kbr_b64_encode((const unsigned char *)cdx, strlen(cdx), &cdx_b64), KBR_OK);
    kbr_hex_encode_buf(d2, 32, hex);
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-p256\",\"digest\":\"%s\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"5.1.0\"},\"sbom_b64\":\"%s\"}",
             hex, cdx_b64);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);

    /* OTA manifests may only name firmware the broker signed */
    snprintf(body, sizeof(body),
             "{\"key\":\"ota-p256\",\"digest\":\"%s\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"6.6.6\",\"kind\":\"ota-manifest\"}}",
             hex);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    expect(&r, 404, "not_found", "6.6.6");
    snprintf(body, sizeof(body),
             "{\"key\":\"ota-p256\",\"digest\":\"%s\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"5.1.0\",\"kind\":\"ota-manifest\"}}",
             hex);
    r = kbt_call(env, "POST", "/v1/sign", tok, body);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);

    all = kbt_audit_all(env);
    json_array_foreach(all, i, e)
    {
        json_t *d = json_object_get(e, "detail");
        json_t *a = json_object_get(d, "artifact");
        if (json_is_string(json_object_get(a, "version")) &&
            strcmp(json_string_value(json_object_get(a, "version")), "5.1.0") == 0 &&
            strcmp(json_string_value(json_object_get(e, "op")), "sign") == 0 &&
            strcmp(json_string_value(json_object_get(a, "kind")), "firmware") == 0) {
            assert_int_equal(json_integer_value(json_object_get(d, "sbom_components")), 2);
            assert_string_equal(json_string_value(json_object_get(d, "digest")), hex);
            assert_non_null(json_string_value(json_object_get(d, "signature_sha256")));
            seen = true;
        }
    }
    assert_true(seen);
    json_decref(all);
    free(cdx_b64);
    free(tok);
}

static void test_retired_key(void **state)
{
    char *tok = ci_token(NULL);
    unsigned char d[32] = {7};
    kbt_resp r;

    (void)state;
    kbt_key(env, "fw-old", "firmware-signing", "ecdsa-p256", "gateway");
    r = kbt_call(env, "POST", "/v1/keys/fw-old/retire", env->admin, "{\"reason\":\"rotated\"}");
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    r = sign_digest(tok, "fw-old", d, 32, "sha256", "raw", "7.0.0", NULL);
    expect(&r, 409, "conflict", "retired");
    r = kbt_call(env, "GET", "/v1/keys/fw-old", env->admin, NULL);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "retired");
    kbt_resp_free(&r);
    free(tok);
}

typedef struct {
    const char *tok;
    long status;
    int index;
} burst_arg;

static void *burst_one(void *p)
{
    burst_arg *a = p;
    kbt_env local = *env;
    unsigned char d[32];
    char hex[65], body[2048];
    kbt_resp r;

    local.curl = curl_easy_init();
    memset(d, a->index, sizeof(d));
    kbr_hex_encode_buf(d, 32, hex);
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-p256\",\"digest\":\"%s\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"burst-%d\"},\"sbom\":%s}",
             hex, a->index, SBOM_INLINE);
    r = kbt_call(&local, "POST", "/v1/sign", a->tok, body);
    a->status = r.status;
    kbt_resp_free(&r);
    curl_easy_cleanup(local.curl);
    return NULL;
}

static int count_status(burst_arg *args, int n, long status)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += args[i].status == status;
    return c;
}

static void test_max_uses(void **state)
{
    char *tok = ci_token(",\"max_uses\":5");
    pthread_t th[20];
    burst_arg args[20];
    unsigned char d[32] = {9};
    kbt_resp r;

    (void)state;
    for (int i = 0; i < 20; i++) {
        args[i] = (burst_arg){tok, 0, i + 1};
        assert_int_equal(pthread_create(&th[i], NULL, burst_one, &args[i]), 0);
    }
    for (int i = 0; i < 20; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(count_status(args, 20, 200), 5);
    assert_int_equal(count_status(args, 20, 429), 15);
    r = sign_digest(tok, "fw-p256", d, 32, "sha256", "raw", "max-1", NULL);
    expect(&r, 429, "quota_exhausted", NULL);
    /* the count is rebuilt from the audit log: a restart does not reset it */
    kbt_restart(env);
    r = sign_digest(tok, "fw-p256", d, 32, "sha256", "raw", "max-1", NULL);
    expect(&r, 429, "quota_exhausted", NULL);
    kbt_kill_restart(env);
    r = sign_digest(tok, "fw-p256", d, 32, "sha256", "raw", "max-1", NULL);
    expect(&r, 429, "quota_exhausted", NULL);
    free(tok);
}

static void test_audit_log(void **state)
{
    json_t *all = kbt_audit_all(env), *e;
    size_t i;
    kbr_msg msg = {{0}};
    bool denied = false, unauth = false;
    char *text;

    (void)state;
    assert_true(json_array_size(all) > 50);
    /* consecutive from 1 and chained: the same check `keybroker audit verify` does */
    assert_int_equal(
        kbr_audit_verify_entries(
            all, 1, "0000000000000000000000000000000000000000000000000000000000000000", &msg),
        KBR_OK);
    json_array_foreach(all, i, e)
    {
        const char *outcome = json_string_value(json_object_get(e, "outcome"));
        const char *code = json_string_value(json_object_get(e, "error_code"));
        assert_int_equal(json_integer_value(json_object_get(e, "seq")), (json_int_t)i + 1);
        denied |= strcmp(outcome, "denied") == 0 && code != NULL && strcmp(code, "forbidden") == 0;
        unauth |= code != NULL && strcmp(code, "unauthenticated") == 0;
    }
    assert_true(denied);
    assert_true(unauth);
    text = json_dumps(all, 0);
    for (size_t k = 0; k < n_issued; k++) {
        const char *sig = strrchr(issued[k], '.');
        if (strstr(text, issued[k]) != NULL || (sig != NULL && strstr(text, sig + 1) != NULL))
            fail_msg("a token string appears in the audit log");
    }
    free(text);
    /* a rewritten entry is detected */
    json_object_set_new(json_object_get(json_array_get(all, 3), "detail"), "path",
                        json_string("/v1/rewritten"));
    assert_int_equal(
        kbr_audit_verify_entries(
            all, 1, "0000000000000000000000000000000000000000000000000000000000000000", &msg),
        KBR_ERR_BAD_REQUEST);
    json_decref(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_jwks),     cmocka_unit_test(test_key_objects),
        cmocka_unit_test(test_sign_each_algorithm), cmocka_unit_test(test_token_attacks),
        cmocka_unit_test(test_revocation),          cmocka_unit_test(test_scope_violations),
        cmocka_unit_test(test_bad_input),           cmocka_unit_test(test_firmware_ledger),
        cmocka_unit_test(test_retired_key),         cmocka_unit_test(test_max_uses),
        cmocka_unit_test(test_audit_log),
    };

    return cmocka_run_group_tests_name("keybrokerd API", tests, group_setup, group_teardown);
}
