/*
 * test_issuer.c - rotating the token issuer key, against a real SoftHSM2 token, a store on
 * disk and keybrokerd over HTTP: new tokens carry the new kid and verify, old ones keep
 * working until they expire, GET /v1/jwks lists a replaced key exactly as long as a token
 * it signed is unexpired, a kid names one key (unknown, mismatched or re-signed tokens get
 * 401), the token tree, max_uses and revocation hold across a rotation and a restart,
 * `keybroker token list --active` is the set of tokens that authenticate, --init keeps the
 * current key, a ledger without issuer keys records the one in use, and the daemon refuses
 * to start when the HSM does not hold a key it trusts as the ledger recorded it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "harness.h"
#include "kbr_hsm.h"
#include "kbr_policy.h"

static kbt_env *env;

#define READ_SPEC(sub, ttl) "{\"sub\":\"" sub "\",\"ops\":[\"read\"],\"ttl\":" #ttl "}"
#define UNKNOWN_KID         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static int setup(void **state)
{
    (void)state;
    env = kbt_start(NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    env = NULL;
    return 0;
}

/* ---- tokens as strings ---- */

/* Segment idx (0 header, 1 payload) of a JWT, parsed. New ref. */
static json_t *segment(const char *token, int idx)
{
    const char *p = token;
    unsigned char *raw = NULL;
    size_t len = 0;
    json_t *v;

    for (int i = 0; i < idx; i++)
        p = strchr(p, '.') + 1;
    assert_int_equal(kbr_b64url_decode(p, strcspn(p, "."), &raw, &len), KBR_OK);
    v = json_loadb((const char *)raw, len, 0, NULL);
    assert_non_null(v);
    free(raw);
    return v;
}

static void claim_of(const char *token, int idx, const char *name, char out[64])
{
    json_t *v = segment(token, idx);

    assert_true(json_is_string(json_object_get(v, name)));
    snprintf(out, 64, "%s", json_string_value(json_object_get(v, name)));
    json_decref(v);
}

static void kid_of(const char *token, char kid[64])
{
    claim_of(token, 0, "kid", kid);
}

static void jti_of(const char *token, char jti[64])
{
    claim_of(token, 1, "jti", jti);
}

static time_t exp_of(const char *token)
{
    json_t *v = segment(token, 1);
    time_t exp;

    assert_true(json_is_integer(json_object_get(v, "exp")));
    exp = (time_t)json_integer_value(json_object_get(v, "exp"));
    json_decref(v);
    return exp;
}

/* header (JSON text) + token's payload and signature segments. */
static char *with_header(const char *token, const char *header_json)
{
    char *h = NULL, *out = NULL;

    assert_int_equal(kbr_b64url_encode((const unsigned char *)header_json, strlen(header_json), &h),
                     KBR_OK);
    assert_true(asprintf(&out, "%s%s", h, strchr(token, '.')) > 0);
    free(h);
    return out;
}

/* A token issued by parent (asserts 201); caller frees. */
static char *issue_by(const char *parent, const char *spec)
{
    kbt_resp r = kbt_call(env, "POST", "/v1/tokens", parent, spec);
    char *tok;

    if (r.status != 201)
        fail_msg("issuing %s: %ld %s", spec, r.status, r.body);
    tok = strdup(json_string_value(json_object_get(r.json, "token")));
    kbt_resp_free(&r);
    return tok;
}

/* The status of an authenticated call with token: 401 when it does not authenticate. */
static long status_with(const char *token)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/keys", token, NULL);
    long status = r.status;

    kbt_resp_free(&r);
    return status;
}

static bool authenticates(const char *token)
{
    return status_with(token) != 401;
}

static void expect_401(const char *token, const char *message)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/keys", token, NULL);

    if (r.status != 401 || strcmp(kbt_err_message(&r), message) != 0)
        fail_msg("expected 401 \"%s\", got %ld %s", message, r.status, r.body);
    assert_true(r.audit_seq > 0);
    kbt_resp_free(&r);
}

/* ---- the issuer keys as the API shows them ---- */

static kbt_resp rotate(const char *token, const char *body)
{
    return kbt_call(env, "POST", "/v1/tokens/issuer/rotate", token, body != NULL ? body : "{}");
}

/* Rotates with the bootstrap token; the response (asserts 201). */
static json_t *rotate_ok(void)
{
    kbt_resp r = rotate(env->admin, "{}");
    json_t *body;

    if (r.status != 201)
        fail_msg("rotation: %ld %s", r.status, r.body);
    body = json_incref(r.json);
    kbt_resp_free(&r);
    return body;
}

static const char *str(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);

    if (!json_is_string(v))
        fail_msg("%s is not a string", name);
    return json_string_value(v);
}

/* The kids GET /v1/jwks lists, in order, joined by spaces. */
static char *jwks_kids(void)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/jwks", NULL, NULL);
    char *out = calloc(1, 512);
    json_t *k;
    size_t i;

    assert_int_equal(r.status, 200);
    assert_non_null(out);
    json_array_foreach(json_object_get(r.json, "keys"), i, k)
    {
        size_t n = strlen(out);
        assert_string_equal(str(k, "kty"), "EC");
        assert_string_equal(str(k, "alg"), "ES256");
        snprintf(out + n, 512 - n, "%s%s", n > 0 ? " " : "", str(k, "kid"));
    }
    kbt_resp_free(&r);
    return out;
}

static void expect_jwks(const char *want)
{
    char *got = jwks_kids();

    if (strcmp(got, want) != 0)
        fail_msg("JWKS lists \"%s\", expected \"%s\"", got, want);
    free(got);
}

/* The public key GET /v1/jwks publishes under kid, or NULL. */
static EVP_PKEY *jwks_key(const char *kid)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/jwks", NULL, NULL);
    EVP_PKEY *pkey = NULL;
    json_t *k;
    size_t i;

    json_array_foreach(json_object_get(r.json, "keys"), i, k)
    {
        unsigned char *x = NULL, *y = NULL, pt[65];
        size_t xl = 0, yl = 0;
        EVP_PKEY_CTX *ctx;
        OSSL_PARAM params[3];

        if (strcmp(str(k, "kid"), kid) != 0)
            continue;
        assert_int_equal(kbr_b64url_decode(str(k, "x"), strlen(str(k, "x")), &x, &xl), KBR_OK);
        assert_int_equal(kbr_b64url_decode(str(k, "y"), strlen(str(k, "y")), &y, &yl), KBR_OK);
        assert_true(xl == 32 && yl == 32);
        pt[0] = 4;
        memcpy(pt + 1, x, 32);
        memcpy(pt + 33, y, 32);
        params[0] =
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"P-256", 0);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
        params[2] = OSSL_PARAM_construct_end();
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
        assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
        EVP_PKEY_CTX_free(ctx);
        free(x);
        free(y);
    }
    kbt_resp_free(&r);
    return pkey;
}

/* Does the token's ES256 signature verify with pub, as any JWKS consumer would check it? */
static bool verifies_with(const char *token, EVP_PKEY *pub)
{
    const char *dot = strrchr(token, '.');
    unsigned char md[32], *sig = NULL;
    size_t siglen = 0;
    bool ok;

    SHA256((const unsigned char *)token, (size_t)(dot - token), md);
    assert_int_equal(kbr_b64url_decode(dot + 1, strlen(dot + 1), &sig, &siglen), KBR_OK);
    ok = kbt_verify(pub, "raw", EVP_sha256(), md, sizeof(md), sig, siglen);
    free(sig);
    return ok;
}

/* The kid of a public key in PEM, as the broker names it (RFC 7638). */
static void pem_kid(const char *pem, char kid[64])
{
    EVP_PKEY *k = kbt_pem_to_pkey(pem);
    json_t *jwk = NULL;

    assert_non_null(k);
    assert_int_equal(kbr_jwk_from_pkey(k, &jwk), KBR_OK);
    snprintf(kid, 64, "%s", str(jwk, "kid"));
    json_decref(jwk);
    EVP_PKEY_free(k);
}

/* The row GET /v1/tokens shows for jti (new ref), or NULL. */
static json_t *token_row(const char *jti)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/tokens", env->admin, NULL);
    json_t *row, *found = NULL;
    size_t i;

    assert_int_equal(r.status, 200);
    json_array_foreach(json_object_get(r.json, "tokens"), i, row)
    {
        if (strcmp(str(row, "jti"), jti) == 0)
            found = json_incref(row);
    }
    kbt_resp_free(&r);
    return found;
}

static void expect_row_kid(const char *token, const char *kid)
{
    char jti[64];
    json_t *row;

    jti_of(token, jti);
    row = token_row(jti);
    assert_non_null(row);
    assert_string_equal(str(row, "kid"), kid);
    json_decref(row);
}

/* The first effect of type in entry, or NULL.  Borrowed. */
static const json_t *effect_of(const json_t *entry, const char *type)
{
    const json_t *fx;
    size_t i;

    json_array_foreach(json_object_get(entry, "effects"), i, fx)
    {
        if (strcmp(str(fx, "type"), type) == 0)
            return fx;
    }
    return NULL;
}

/* Audit entries with op (and outcome, unless NULL), in order.  New ref. */
static json_t *entries_of(const char *op, const char *outcome)
{
    json_t *all = kbt_audit_all(env), *out = json_array(), *e;
    size_t i;

    json_array_foreach(all, i, e)
    {
        if (json_is_string(json_object_get(e, "op")) && strcmp(str(e, "op"), op) == 0 &&
            (outcome == NULL || strcmp(str(e, "outcome"), outcome) == 0))
            json_array_append(out, e);
    }
    json_decref(all);
    return out;
}

static char *read_bootstrap(void)
{
    char path[400], *buf = NULL;
    size_t n = 0;

    snprintf(path, sizeof(path), "%s/bootstrap.token", env->dir);
    assert_int_equal(kbr_file_read(path, 1 << 16, &buf, &n), KBR_OK);
    return buf;
}

/* Runs SQL on the stopped deployment's store, as someone with write access to the file. */
static void store_sql(const char *sql)
{
    if (kbt_store_query(env, sql, NULL, 0, NULL) != 0)
        fail_msg("%s failed", sql);
}

/*
 * A token signed by the HSM key labelled label, with header {alg, kid, typ} and the payload
 * of payload_from.  SoftHSM2 does not take two processes on one token, so the broker steps
 * aside while the test signs.
 */
static char *hsm_signed(const char *label, const char *kid, const char *payload_from)
{
    kbr_hsm *hsm = NULL;
    kbr_hsm_session *s = NULL;
    kbr_secret *pin = NULL;
    json_t *payload = segment(payload_from, 1);
    char *input = NULL, *tok = NULL;
    unsigned char md[32], *sig = NULL;
    size_t siglen = 0;

    kbt_stop(env);
    assert_int_equal(kbr_secret_new(KBT_PIN, strlen(KBT_PIN), &pin), KBR_OK);
    assert_int_equal(kbr_hsm_open("/usr/lib/softhsm/libsofthsm2.so", "keybroker", pin, &hsm, NULL),
                     KBR_OK);
    assert_int_equal(kbr_hsm_session_open(hsm, &s), KBR_OK);
    assert_int_equal(kbr_jwt_signing_input(payload, kid, &input), KBR_OK);
    SHA256((unsigned char *)input, strlen(input), md);
    assert_int_equal(
        kbr_hsm_sign(s, label, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, md, 32, &sig, &siglen), KBR_OK);
    assert_int_equal(kbr_jwt_assemble(input, sig, siglen, &tok), KBR_OK);
    kbr_hsm_session_close(s);
    kbr_hsm_close(hsm);
    kbr_secret_free(pin);
    free(input);
    free(sig);
    json_decref(payload);
    assert_int_equal(kbt_spawn_daemon(env), 0);
    return tok;
}

/* ---- the tests ---- */

/*
 * A rotation makes a new key in the HSM that signs every token issued after it; the old key
 * verifies its tokens still, JWKS lists both, the ledger says which key signed each token,
 * and the log holds the rotation with its effect.
 */
static void test_rotation(void **state)
{
    char k1[64], k2[64], kid[64], want[200], logged_kid[64], *old_ci, *new_ci;
    json_t *rot, *entries, *boot;
    kbt_resp r;
    EVP_PKEY *pub1, *pub2;
    const json_t *fx;

    (void)state;
    kid_of(env->admin, k1);
    expect_jwks(k1);
    old_ci = issue_by(env->admin, READ_SPEC("ci:old", 600));
    kid_of(old_ci, kid);
    assert_string_equal(kid, k1);

    r = rotate(env->admin, "{\"reason\":\"scheduled rotation\"}");
    assert_int_equal(r.status, 201);
    assert_true(r.audit_seq > 0);
    rot = json_incref(r.json);
    kbt_resp_free(&r);
    snprintf(k2, sizeof(k2), "%s", str(rot, "kid"));
    assert_string_not_equal(k2, k1);
    assert_int_equal(strlen(k2), 43);
    assert_int_equal(strncmp(str(rot, "hsm_label"), "kbr/issuer/", 11), 0);
    assert_string_equal(str(json_object_get(rot, "replaces"), "kid"), k1);
    /* the old key is listed until its last token, the 24-hour bootstrap token, expires */
    jti_of(env->admin, kid);
    boot = token_row(kid);
    assert_string_equal(str(json_object_get(rot, "replaces"), "listed_until"),
                        str(boot, "expires_at"));
    json_decref(boot);
    snprintf(want, sizeof(want), "%s %s", k2, k1);
    expect_jwks(want);

    /* new tokens carry the new kid and verify; the old ones still do */
    new_ci = issue_by(env->admin, READ_SPEC("ci:new", 600));
    kid_of(new_ci, kid);
    assert_string_equal(kid, k2);
    assert_int_equal(status_with(new_ci), 200);
    assert_int_equal(status_with(old_ci), 200);
    assert_int_equal(status_with(env->admin), 200);
    expect_row_kid(new_ci, k2);
    expect_row_kid(old_ci, k1);
    /* as a JWKS consumer sees it: each token verifies with its own key only */
    pub1 = jwks_key(k1);
    pub2 = jwks_key(k2);
    assert_non_null(pub1);
    assert_non_null(pub2);
    assert_true(verifies_with(new_ci, pub2));
    assert_false(verifies_with(new_ci, pub1));
    assert_true(verifies_with(old_ci, pub1));
    assert_false(verifies_with(old_ci, pub2));

    /* the log: the first key recorded by --init, the rotation with its effect */
    entries = entries_of("token.issue", "ok");
    fx = effect_of(json_array_get(entries, 0), "issuer.rotate");
    assert_non_null(fx);
    assert_string_equal(str(fx, "kid"), k1);
    assert_string_equal(str(fx, "hsm_label"), "kbr/issuer");
    assert_true(json_is_null(json_object_get(fx, "replaces")));
    assert_string_equal(str(effect_of(json_array_get(entries, 0), "token.issue"), "kid"), k1);
    assert_string_equal(
        str(effect_of(json_array_get(entries, json_array_size(entries) - 1), "token.issue"), "kid"),
        k2);
    json_decref(entries);
    entries = entries_of("issuer.rotate", NULL);
    assert_int_equal(json_array_size(entries), 1);
    assert_string_equal(str(json_array_get(entries, 0), "outcome"), "ok");
    assert_string_equal(str(json_array_get(entries, 0), "sub"), "security:bootstrap");
    assert_string_equal(str(json_object_get(json_array_get(entries, 0), "detail"), "reason"),
                        "scheduled rotation");
    fx = effect_of(json_array_get(entries, 0), "issuer.rotate");
    assert_non_null(fx);
    assert_string_equal(str(fx, "kid"), k2);
    assert_string_equal(str(fx, "replaces"), k1);
    assert_string_equal(str(fx, "hsm_label"), str(rot, "hsm_label"));
    assert_string_equal(str(fx, "at"), str(rot, "activated_at"));
    /* the public key the log keeps is the one JWKS serves under the kid */
    pem_kid(str(fx, "public_key_pem"), logged_kid);
    assert_string_equal(logged_kid, k2);
    json_decref(entries);

    EVP_PKEY_free(pub1);
    EVP_PKEY_free(pub2);
    json_decref(rot);
    free(old_ci);
    free(new_ci);
}

/*
 * The kid names one of the broker's keys and the signature is checked against that key
 * alone: an unknown kid, a missing one, a kid of the other key, and real signatures of one
 * broker key under the other's kid or over a token the other key signed, all 401 and
 * recorded.
 */
static void test_kid_is_checked(void **state)
{
    char k1[64], k2[64], label2[128], hdr[200], *old_ci, *new_ci, *t;
    json_t *rot, *denied;
    size_t denials;

    (void)state;
    kid_of(env->admin, k1);
    old_ci = issue_by(env->admin, READ_SPEC("ci:old", 600));
    rot = rotate_ok();
    snprintf(k2, sizeof(k2), "%s", str(rot, "kid"));
    snprintf(label2, sizeof(label2), "%s", str(rot, "hsm_label"));
    json_decref(rot);
    new_ci = issue_by(env->admin, READ_SPEC("ci:new", 600));
    denied = entries_of("key.list", "denied");
    denials = json_array_size(denied);
    json_decref(denied);

    t = with_header(new_ci, "{\"alg\":\"ES256\",\"kid\":\"" UNKNOWN_KID "\",\"typ\":\"JWT\"}");
    expect_401(t, "token kid is not one of this broker's issuer keys");
    free(t);
    t = with_header(new_ci, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}");
    expect_401(t, "token header has no kid");
    free(t);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", k1);
    t = with_header(new_ci, hdr);
    expect_401(t, "token signature does not verify");
    free(t);
    /* signed in the HSM by the new key: under the old key's kid, then over the old token */
    t = hsm_signed(label2, k1, old_ci);
    expect_401(t, "token signature does not verify");
    free(t);
    t = hsm_signed(label2, k2, old_ci);
    expect_401(t, "token kid differs from its record");
    free(t);
    t = hsm_signed("kbr/issuer", k1, new_ci);
    expect_401(t, "token kid differs from its record");
    free(t);
    /* each refusal is in the log; the real tokens still work */
    denied = entries_of("key.list", "denied");
    assert_int_equal(json_array_size(denied), denials + 6);
    assert_string_equal(str(json_array_get(denied, json_array_size(denied) - 1), "error_code"),
                        "unauthenticated");
    json_decref(denied);
    assert_int_equal(status_with(old_ci), 200);
    assert_int_equal(status_with(new_ci), 200);
    free(old_ci);
    free(new_ci);
}

/*
 * A replaced key leaves GET /v1/jwks, and stops verifying, when the last token it signed
 * expires (a cached verification included); a key that signed nothing leaves at once.
 */
static void test_jwks_drops_key_after_its_last_token(void **state)
{
    char k1[64], k2[64], k3[64], k4[64], jti[64], want[300], *shortlived;
    json_t *rot, *row;
    time_t exp;
    kbt_resp r;

    (void)state;
    kid_of(env->admin, k1);
    rot = rotate_ok();
    snprintf(k2, sizeof(k2), "%s", str(rot, "kid"));
    json_decref(rot);
    shortlived = issue_by(env->admin, READ_SPEC("ci:short", 3));
    jti_of(shortlived, jti);
    assert_int_equal(status_with(shortlived), 200); /* verified, and cached */

    rot = rotate_ok();
    snprintf(k3, sizeof(k3), "%s", str(rot, "kid"));
    row = token_row(jti);
    assert_string_equal(str(json_object_get(rot, "replaces"), "kid"), k2);
    assert_string_equal(str(json_object_get(rot, "replaces"), "listed_until"),
                        str(row, "expires_at"));
    assert_int_equal(kbr_time_parse(str(row, "expires_at"), &exp), KBR_OK);
    json_decref(row);
    json_decref(rot);
    snprintf(want, sizeof(want), "%s %s %s", k3, k2, k1);
    expect_jwks(want);
    assert_int_equal(status_with(shortlived), 200);

    /* k3 signed nothing: rotating away from it drops it at once */
    rot = rotate_ok();
    snprintf(k4, sizeof(k4), "%s", str(rot, "kid"));
    assert_true(json_is_null(json_object_get(json_object_get(rot, "replaces"), "listed_until")));
    json_decref(rot);
    snprintf(want, sizeof(want), "%s %s %s", k4, k2, k1);
    expect_jwks(want);

    while (time(NULL) < exp)
        usleep(100 * 1000);
    snprintf(want, sizeof(want), "%s %s", k4, k1);
    expect_jwks(want);
    expect_401(shortlived, "token kid names a retired issuer key");
    r = kbt_call(env, "GET", "/v1/tokens?active=true", env->admin, NULL);
    assert_null(strstr(r.body, jti));
    kbt_resp_free(&r);
    /* and so after a restart */
    kbt_restart(env);
    expect_jwks(want);
    expect_401(shortlived, "token kid names a retired issuer key");
    free(shortlived);
}

/* A team admin issued before the rotation, its children after: revoking it takes them all,
 * now and after a restart. */
static void test_tree_across_rotation(void **state)
{
    char team_jti[64], *team, *child, *grandchild;
    kbt_resp r;
    char path[128];

    (void)state;
    team = issue_by(env->admin, "{\"sub\":\"security:team\",\"ops\":[\"admin\",\"read\"],"
                                "\"ttl\":3600}");
    jti_of(team, team_jti);
    json_decref(rotate_ok());
    child = issue_by(team, "{\"sub\":\"security:team-ci\",\"ops\":[\"admin\",\"read\"],"
                           "\"ttl\":600}");
    grandchild = issue_by(child, READ_SPEC("ci:team-job", 300));
    assert_int_equal(status_with(child), 200);
    assert_int_equal(status_with(grandchild), 200);
    snprintf(path, sizeof(path), "/v1/tokens/%s/revoke", team_jti);
    r = kbt_call(env, "POST", path, env->admin, "{\"reason\":\"team admin left\"}");
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "revoked")), 3);
    kbt_resp_free(&r);
    expect_401(team, "token revoked");
    expect_401(child, "token revoked");
    expect_401(grandchild, "token revoked");
    kbt_restart(env);
    expect_401(child, "token revoked");
    expect_401(grandchild, "token revoked");
    assert_int_equal(status_with(env->admin), 200);
    free(team);
    free(child);
    free(grandchild);
}

static long sign_with(const char *token, const char *version)
{
    char body[1024];
    kbt_resp r;
    long status;

    snprintf(body, sizeof(body),
             "{\"key\":\"fw-gw\",\"digest\":\"%064d\",\"hash\":\"sha256\",\"format\":\"raw\","
             "\"artifact\":{\"product\":\"gw\",\"version\":\"%s\",\"name\":\"gw.bin\","
             "\"kind\":\"firmware\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":"
             "[{\"name\":\"zlib\",\"version\":\"1.3.1\"}]}}",
             7, version);
    r = kbt_call(env, "POST", "/v1/sign", token, body);
    status = r.status;
    kbt_resp_free(&r);
    return status;
}

/* After a rotation and a restart (clean, then kill -9): the current key, every key still
 * trusted, revocations and a token's max_uses are as they were. */
static void test_restart_after_rotation(void **state)
{
    char k1[64], k2[64], kid[64], jti[64], want[200], path[128], *signer, *revoked, *after;
    json_t *rot;
    kbt_resp r;

    (void)state;
    kid_of(env->admin, k1);
    kbt_key(env, "fw-gw", "firmware-signing", "ecdsa-p256", "gw");
    signer = issue_by(env->admin, "{\"sub\":\"ci:gw\",\"ops\":[\"sign\"],\"keys\":[\"fw-gw\"],"
                                  "\"products\":[\"gw\"],\"max_uses\":2,\"ttl\":3600}");
    assert_int_equal(sign_with(signer, "1.0.0"), 200);
    rot = rotate_ok();
    snprintf(k2, sizeof(k2), "%s", str(rot, "kid"));
    json_decref(rot);
    revoked = issue_by(env->admin, READ_SPEC("ci:gone", 600));
    jti_of(revoked, jti);
    snprintf(path, sizeof(path), "/v1/tokens/%s/revoke", jti);
    r = kbt_call(env, "POST", path, env->admin, "{}");
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    snprintf(want, sizeof(want), "%s %s", k2, k1);

    kbt_restart(env);
    expect_jwks(want);
    after = issue_by(env->admin, READ_SPEC("ci:after", 600));
    kid_of(after, kid);
    assert_string_equal(kid, k2);
    assert_int_equal(status_with(after), 200);
    expect_401(revoked, "token revoked");
    /* the token of the old key keeps its one remaining use, and no more */
    assert_int_equal(sign_with(signer, "1.0.1"), 200);
    assert_int_equal(sign_with(signer, "1.0.2"), 429);

    kbt_kill_restart(env);
    expect_jwks(want);
    free(after);
    after = issue_by(env->admin, READ_SPEC("ci:after-kill", 600));
    kid_of(after, kid);
    assert_string_equal(kid, k2);
    assert_int_equal(sign_with(signer, "1.0.3"), 429);
    expect_401(revoked, "token revoked");
    assert_int_equal(status_with(env->admin), 200);
    free(signer);
    free(revoked);
    free(after);
}

/* The jtis `keybroker --json token list --active` prints.  New ref (object jti -> true). */
static json_t *cli_active(void)
{
    char cmd[1400], *out = NULL;
    json_t *doc, *set = json_object(), *row;
    size_t i;

    snprintf(cmd, sizeof(cmd),
             "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' --json token list --active",
             env->url, env->admin, env->bin_dir);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    doc = json_loads(out, 0, NULL);
    if (doc == NULL)
        fail_msg("token list --json printed %s", out);
    json_array_foreach(json_object_get(doc, "tokens"), i, row)
    {
        json_object_set_new(set, str(row, "jti"), json_true());
    }
    json_decref(doc);
    free(out);
    return set;
}

/* `keybroker --json token rotate-issuer --reason R`: its output.  New ref. */
static json_t *cli_rotate(const char *reason)
{
    char cmd[1400], *out = NULL;
    json_t *doc;

    snprintf(cmd, sizeof(cmd),
             "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' --json token rotate-issuer "
             "--reason '%s'",
             env->url, env->admin, env->bin_dir, reason);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    doc = json_loads(out, 0, NULL);
    if (doc == NULL || !json_is_string(json_object_get(doc, "kid")))
        fail_msg("token rotate-issuer --json printed %s", out);
    free(out);
    return doc;
}

/* Every token of the deployment: listed as active exactly when it authenticates. */
static void expect_active_is_authenticating(char **tokens, size_t n)
{
    json_t *active = cli_active();
    size_t live = 0;

    for (size_t i = 0; i < n; i++) {
        char jti[64];
        bool works = authenticates(tokens[i]);
        bool listed;

        jti_of(tokens[i], jti);
        listed = json_object_get(active, jti) != NULL;
        if (works != listed)
            fail_msg("token %zu (jti %s): %s but %s", i, jti,
                     works ? "authenticates" : "is refused",
                     listed ? "listed as active" : "not listed as active");
        live += works;
    }
    /* and nothing else is listed: these are all the tokens there are */
    assert_int_equal(json_object_size(active), live);
    json_decref(active);
}

/*
 * `token list --active` agrees with what verifies, token by token, across two rotations,
 * revocations (a cascade from a parent of the first key to a child of the second), expiry
 * and a restart.
 */
static void test_active_list_is_what_authenticates(void **state)
{
    char *t[12], path[128], jti[64];
    size_t n = 0;
    kbt_resp r;
    time_t until;

    (void)state;
    t[n++] = strdup(env->admin);
    t[n++] = issue_by(env->admin, READ_SPEC("ci:a-live", 600));
    t[n++] = issue_by(env->admin, READ_SPEC("ci:a-revoked", 600));
    t[n++] = issue_by(env->admin, READ_SPEC("ci:a-short", 2));
    t[n++] = issue_by(env->admin,
                      "{\"sub\":\"security:a-parent\",\"ops\":[\"admin\",\"read\"],\"ttl\":600}");
    json_decref(rotate_ok());
    t[n++] = issue_by(env->admin, READ_SPEC("ci:b-live", 600));
    t[n++] = issue_by(env->admin, READ_SPEC("ci:b-revoked", 600));
    t[n++] = issue_by(env->admin, READ_SPEC("ci:b-short", 2));
    t[n++] = issue_by(t[4], READ_SPEC("ci:b-child", 300));
    json_decref(rotate_ok());
    t[n++] =
        issue_by(env->admin, "{\"sub\":\"factory:c-live\",\"ops\":[\"provision\"],\"ttl\":600}");
    for (size_t i = 0; i < 3; i++) {
        static const size_t revoke[3] = {2, 6, 4}; /* a-revoked, b-revoked, a-parent */
        jti_of(t[revoke[i]], jti);
        snprintf(path, sizeof(path), "/v1/tokens/%s/revoke", jti);
        r = kbt_call(env, "POST", path, env->admin, "{}");
        assert_int_equal(r.status, 200);
        kbt_resp_free(&r);
    }
    until = exp_of(t[3]) > exp_of(t[7]) ? exp_of(t[3]) : exp_of(t[7]);
    while (time(NULL) < until)
        usleep(100 * 1000);
    expect_active_is_authenticating(t, n);
    /* the expected outcome, spelled out: the bootstrap, a-live, b-live and c-live work; the
     * revoked, the child of the revoked parent and the expired do not */
    assert_true(authenticates(t[0]) && authenticates(t[1]) && authenticates(t[5]) &&
                authenticates(t[9]));
    for (size_t i = 0; i < 5; i++) {
        static const size_t refused[5] = {2, 3, 4, 6, 7};
        assert_false(authenticates(t[refused[i]]));
    }
    assert_false(authenticates(t[8]));
    kbt_restart(env);
    expect_active_is_authenticating(t, n);
    for (size_t i = 0; i < n; i++)
        free(t[i]);
}

/* Who may rotate: an admin without a products limit.  Every refusal changes nothing and is
 * in the log, with what was wrong. */
static void test_rotation_refused(void **state)
{
    char k1[64], kid[64], *reader, *team, *after;
    json_t *entries;
    kbt_resp r;

    (void)state;
    kid_of(env->admin, k1);
    reader = issue_by(env->admin, READ_SPEC("security:auditor", 600));
    team = issue_by(env->admin, "{\"sub\":\"security:acme\",\"ops\":[\"admin\",\"read\"],"
                                "\"products\":[\"acme\"],\"ttl\":600}");
    r = rotate(reader, NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(kbt_err_code(&r), "forbidden");
    kbt_resp_free(&r);
    r = rotate(team, NULL);
    assert_int_equal(r.status, 403);
    assert_non_null(
        strstr(kbt_err_message(&r), "limited to no products, keys, batches or devices"));
    kbt_resp_free(&r);
    r = rotate(NULL, NULL);
    assert_int_equal(r.status, 401);
    kbt_resp_free(&r);
    r = rotate(env->admin, "{\"bogus\":1}");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "bogus"));
    kbt_resp_free(&r);
    r = rotate(env->admin, "{\"reason\":7}");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "reason"));
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/tokens/issuer/rotate", env->admin, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);

    /* nothing changed */
    expect_jwks(k1);
    after = issue_by(env->admin, READ_SPEC("ci:after", 60));
    kid_of(after, kid);
    assert_string_equal(kid, k1);
    /* and every refusal is recorded, by whom and why, with no effect */
    entries = entries_of("issuer.rotate", NULL);
    assert_int_equal(json_array_size(entries), 5);
    for (size_t i = 0; i < 5; i++) {
        const json_t *e = json_array_get(entries, i);
        assert_string_equal(str(e, "outcome"), "denied");
        assert_null(json_object_get(e, "effects"));
    }
    assert_string_equal(str(json_array_get(entries, 0), "sub"), "security:auditor");
    assert_string_equal(str(json_array_get(entries, 0), "error_code"), "forbidden");
    assert_string_equal(str(json_array_get(entries, 1), "sub"), "security:acme");
    assert_non_null(
        strstr(str(json_object_get(json_array_get(entries, 1), "detail"), "message"), "products"));
    assert_string_equal(str(json_array_get(entries, 2), "error_code"), "unauthenticated");
    assert_string_equal(str(json_array_get(entries, 3), "error_code"), "bad_request");
    assert_string_equal(str(json_array_get(entries, 4), "error_code"), "bad_request");
    json_decref(entries);
    free(reader);
    free(team);
    free(after);
}

/* --init after a rotation signs the new bootstrap token with the current key and changes
 * nothing else: no issuer key made or recorded, the old tree revoked, orphans kept. */
static void test_init_after_rotation(void **state)
{
    char k1[64], k2[64], label2[128], kid[64], want[200], *old_boot, *orphan, *under;
    char *out = NULL;
    json_t *rot, *entries, *last = NULL;

    (void)state;
    kid_of(env->admin, k1);
    rot = cli_rotate("before re-running --init");
    snprintf(k2, sizeof(k2), "%s", str(rot, "kid"));
    snprintf(label2, sizeof(label2), "%s", str(rot, "hsm_label"));
    json_decref(rot);
    orphan = issue_by(env->admin, "{\"sub\":\"security:lead\",\"ops\":[\"admin\",\"read\"],"
                                  "\"ttl\":3600,\"orphan\":true}");
    under = issue_by(env->admin, READ_SPEC("ci:under", 600));
    old_boot = strdup(env->admin);

    kbt_stop(env);
    assert_int_equal(kbt_run_daemon(env, "-c keybroker.conf --init", &out), 0);
    if (strstr(out, "created issuer key") != NULL || strstr(out, label2) == NULL)
        fail_msg("--init: %s", out);
    free(out);
    free(env->admin);
    env->admin = read_bootstrap();
    assert_int_equal(kbt_spawn_daemon(env), 0);
    entries = entries_of("issuer.rotate", "ok");
    assert_string_equal(str(json_object_get(json_array_get(entries, 0), "detail"), "reason"),
                        "before re-running --init");
    json_decref(entries);

    kid_of(env->admin, kid);
    assert_string_equal(kid, k2);
    assert_int_equal(status_with(env->admin), 200);
    expect_401(old_boot, "token revoked");
    expect_401(under, "token revoked");
    assert_int_equal(status_with(orphan), 200);
    snprintf(want, sizeof(want), "%s %s", k2, k1);
    expect_jwks(want);
    /* the ledger's keys are the two it had: --init recorded no key */
    entries = kbt_audit_all(env);
    {
        size_t keys = 0, i;
        json_t *e;
        json_array_foreach(entries, i, e)
        {
            keys += effect_of(e, "issuer.rotate") != NULL;
            if (json_is_string(json_object_get(e, "op")) &&
                strcmp(str(e, "op"), "token.issue") == 0 &&
                strcmp(str(e, "sub"), "service:keybrokerd") == 0)
                last = e;
        }
        assert_int_equal(keys, 2);
    }
    assert_null(effect_of(last, "issuer.rotate"));
    assert_string_equal(str(effect_of(last, "token.issue"), "kid"), k2);
    assert_non_null(effect_of(last, "token.revoke"));
    json_decref(entries);
    free(old_boot);
    free(orphan);
    free(under);
}

/*
 * A ledger without issuer keys, as a store an older broker wrote: the daemon records the key
 * in use (kbr/issuer) in an entry of its own, and it becomes the kid of the tokens it signed.
 */
static void test_existing_key_recorded(void **state)
{
    char k1[64], jti[64], *team;
    json_t *entries, *row;
    const json_t *fx;

    (void)state;
    kid_of(env->admin, k1);
    team = issue_by(env->admin, "{\"sub\":\"security:team\",\"ops\":[\"admin\",\"read\"],"
                                "\"ttl\":3600}");
    kbt_stop(env);
    store_sql("UPDATE tokens SET kid = NULL; DELETE FROM issuer_keys;");
    assert_int_equal(kbt_spawn_daemon(env), 0);

    expect_jwks(k1);
    assert_int_equal(status_with(env->admin), 200);
    assert_int_equal(status_with(team), 200);
    jti_of(team, jti);
    row = token_row(jti);
    assert_string_equal(str(row, "kid"), k1);
    json_decref(row);
    entries = entries_of("issuer.rotate", "ok");
    assert_int_equal(json_array_size(entries), 1);
    assert_string_equal(str(json_array_get(entries, 0), "sub"), "service:keybrokerd");
    assert_true(json_is_true(
        json_object_get(json_object_get(json_array_get(entries, 0), "detail"), "existing_key")));
    fx = effect_of(json_array_get(entries, 0), "issuer.rotate");
    assert_string_equal(str(fx, "kid"), k1);
    assert_string_equal(str(fx, "hsm_label"), "kbr/issuer");
    assert_true(json_is_null(json_object_get(fx, "replaces")));
    json_decref(entries);
    /* recorded once: a restart records nothing more, and rotation works from it */
    kbt_restart(env);
    entries = entries_of("issuer.rotate", "ok");
    assert_int_equal(json_array_size(entries), 1);
    json_decref(entries);
    json_decref(rotate_ok());
    assert_int_equal(status_with(team), 200);
    free(team);
}

/*
 * The ledger names the keys, the HSM is what they are checked against: a store rewritten to
 * trust another public key under the current key's label, or an HSM that lost a key live
 * tokens were signed with, stops the start (and --init) with a message naming the key.
 */
static void test_start_checks_issuer_keys(void **state)
{
    char k2[64], label2[128], rogue_kid[64], sql[4096], cmd[512], *out = NULL, *pem = NULL;
    char *log = NULL;
    EVP_PKEY *rogue = EVP_EC_gen("P-256");
    BIO *bio = BIO_new(BIO_s_mem());
    json_t *rot, *jwk = NULL;
    size_t n = 0;
    long len;
    char *data;

    (void)state;
    rot = rotate_ok();
    snprintf(k2, sizeof(k2), "%s", str(rot, "kid"));
    snprintf(label2, sizeof(label2), "%s", str(rot, "hsm_label"));
    json_decref(rot);
    kbt_stop(env);

    /* another public key under the current key's label (its kid made to match it) */
    assert_int_equal(PEM_write_bio_PUBKEY(bio, rogue), 1);
    len = BIO_get_mem_data(bio, &data);
    pem = strndup(data, (size_t)len);
    assert_int_equal(kbr_jwk_from_pkey(rogue, &jwk), KBR_OK);
    snprintf(rogue_kid, sizeof(rogue_kid), "%s", str(jwk, "kid"));
    snprintf(sql, sizeof(sql),
             "CREATE TABLE saved AS SELECT * FROM issuer_keys WHERE kid = '%s';"
             "UPDATE issuer_keys SET kid = '%s', public_key_pem = '%s' WHERE kid = '%s';",
             k2, rogue_kid, pem, k2);
    store_sql(sql);
    assert_int_equal(kbt_spawn_daemon(env), 1);
    assert_int_equal(kbr_file_read(env->log, 1 << 20, &log, &n), KBR_OK);
    if (strstr(log, "is not the issuer key the ledger recorded") == NULL ||
        strstr(log, label2) == NULL)
        fail_msg("start: %s", log);
    free(log);
    assert_int_equal(kbt_run_daemon(env, "-c keybroker.conf --init", &out), 1);
    assert_non_null(strstr(out, "is not the issuer key the ledger recorded"));
    free(out);

    /* the ledger as it was, but the HSM lost the key */
    snprintf(sql, sizeof(sql),
             "DELETE FROM issuer_keys WHERE kid = '%s';"
             "INSERT INTO issuer_keys SELECT * FROM saved; DROP TABLE saved;",
             rogue_kid);
    store_sql(sql);
    for (size_t i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label keybroker "
                 "--login --pin " KBT_PIN " --delete-object --type %s --label '%s' >/dev/null 2>&1",
                 i == 0 ? "privkey" : "pubkey", label2);
        assert_int_equal(kbt_sh(env, cmd, NULL), 0);
    }
    assert_int_equal(truncate(env->log, 0), 0);
    assert_int_equal(kbt_spawn_daemon(env), 1);
    assert_int_equal(kbr_file_read(env->log, 1 << 20, &log, &n), KBR_OK);
    if (strstr(log, "is not in the HSM") == NULL || strstr(log, label2) == NULL)
        fail_msg("start: %s", log);
    free(log);
    json_decref(jwk);
    free(pem);
    BIO_free(bio);
    EVP_PKEY_free(rogue);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kid_is_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwks_drops_key_after_its_last_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tree_across_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_after_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_active_list_is_what_authenticates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_after_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_existing_key_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_checks_issuer_keys, setup, teardown),
    };

    return cmocka_run_group_tests_name("token issuer rotation", tests, NULL, NULL);
}
