/*
 * test_oidc.c - POST /v1/tokens/exchange against a real keybrokerd, SoftHSM2 and store: ID
 * tokens shaped as GitHub Actions and GitLab CI make them, signed by issuer keys made here
 * (RSA for RS256 and PS256, EC for ES256), checked against a key set from a file and from a
 * URL served by the test; the rules that map claims to scope and principal, every refusal
 * (issuer, audience, signature, times, algorithm, header, unmapped claims), the TTL cap, a
 * key rotation at the issuer, the per-source rate, revocation by principal, the audit
 * entries, and `keybrokerd --verify-store` after exchanges.
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

#include "../common/idp.h"
#include "harness.h"

#define GITHUB_ISS "https://token.actions.githubusercontent.com"
#define GITLAB_ISS "https://gitlab.example.com"
#define AUDIENCE   "https://keybroker.test"

static kbt_env *env;
static kbt_srv *srv;
static EVP_PKEY *gh_key, *gl_key, *other_rsa;

static void write_in_env(const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The JWK Set of the GitHub issuer's file: its RSA key as "gh-1". */
static void write_github_jwks(void)
{
    json_t *keys = json_pack("[o]", kbt_jwk_of(gh_key, "gh-1", "RS256"));
    char *text = kbt_jwks_text(keys);

    write_in_env("github-jwks.json", text);
    free(text);
    json_decref(keys);
}

/* What the GitLab issuer's URL serves: EC keys under the kids given. */
static void serve_gitlab_keys(EVP_PKEY *k1, const char *kid1, EVP_PKEY *k2, const char *kid2)
{
    json_t *keys = json_pack("[o]", kbt_jwk_of(k1, kid1, NULL));
    char *text;

    if (k2 != NULL)
        json_array_append_new(keys, kbt_jwk_of(k2, kid2, "ES256"));
    text = kbt_jwks_text(keys);
    kbt_srv_set(srv, 200, text);
    free(text);
    json_decref(keys);
}

#define OIDC_CONF_FMT                                                                              \
    "# the issuers of the test\n"                                                                  \
    "[issuer github]\n"                                                                            \
    "issuer     = " GITHUB_ISS "\n"                                                                \
    "jwks_file  = github-jwks.json\n"                                                              \
    "audience   = " AUDIENCE "\n"                                                                  \
    "algorithms = RS256 PS256\n"                                                                   \
    "leeway     = 30\n"                                                                            \
    "max_ttl    = 600\n"                                                                           \
    "audit_claims = actor run_id sha\n"                                                            \
    "\n"                                                                                           \
    "[issuer gitlab]\n"                                                                            \
    "issuer     = " GITLAB_ISS "\n"                                                                \
    "jwks_url   = http://127.0.0.1:%d/oauth/discovery/keys\n"                                      \
    "audience   = " AUDIENCE "\n"                                                                  \
    "algorithms = ES256\n"                                                                         \
    "jwks_min_interval = 2\n"                                                                      \
    "\n"                                                                                           \
    "[rule gateway-release]\n"                                                                     \
    "issuer           = github\n"                                                                  \
    "claim.repository = acme/gateway-fw\n"                                                         \
    "claim.ref        = refs/tags/v*\n"                                                            \
    "claim.environment = release\n"                                                                \
    "claim.job_workflow_ref = acme/gateway-fw/.github/workflows/release.yml@refs/tags/*\n"         \
    "principal        = ci:github/{repository}\n"                                                  \
    "ops              = sign\n"                                                                    \
    "keys             = fw-gw\n"                                                                   \
    "products         = gateway\n"                                                                 \
    "max_uses         = 5\n"                                                                       \
    "\n"                                                                                           \
    "[rule gateway-read]\n"                                                                        \
    "issuer           = github\n"                                                                  \
    "claim.repository = acme/*\n"                                                                  \
    "principal        = ci:github/{repository}/read\n"                                             \
    "ops              = read\n"                                                                    \
    "products         = gateway\n"                                                                 \
    "ttl              = 120\n"                                                                     \
    "\n"                                                                                           \
    "[rule sensor-protected-tags]\n"                                                               \
    "issuer             = gitlab\n"                                                                \
    "claim.project_path = acme/firmware/sensor\n"                                                  \
    "claim.ref_protected = true\n"                                                                 \
    "claim.ref_type     = tag\n"                                                                   \
    "principal          = ci:gitlab/{project_path}\n"                                              \
    "ops                = sign\n"                                                                  \
    "keys               = fw-sensor\n"                                                             \
    "products           = sensor\n"

static int setup(void **state)
{
    char *conf = NULL;

    (void)state;
    gh_key = kbt_rsa_key();
    gl_key = kbt_ec_key("P-256");
    other_rsa = kbt_rsa_key();
    srv = kbt_srv_start();
    serve_gitlab_keys(gl_key, "gl-1", NULL, NULL);
    env = kbt_new();
    write_github_jwks();
    assert_true(asprintf(&conf, OIDC_CONF_FMT, kbt_srv_port(srv)) > 0);
    write_in_env("oidc.conf", conf);
    free(conf);
    kbt_launch(env, "oidc_issuers = oidc.conf\noidc_exchange_rate = 1000\n");
    kbt_key(env, "fw-gw", "firmware-signing", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-sensor", "firmware-signing", "ecdsa-p256", "sensor");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    env = NULL;
    kbt_srv_stop(srv);
    srv = NULL;
    EVP_PKEY_free(gh_key);
    EVP_PKEY_free(gl_key);
    EVP_PKEY_free(other_rsa);
    return 0;
}

/* A GitHub Actions ID token's claims for a release job of acme/gateway-fw. */
static json_t *github_claims(time_t now, long lifetime)
{
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "iss",
        GITHUB_ISS, "aud", AUDIENCE, "sub", "repo:acme/gateway-fw:environment:release",
        "repository", "acme/gateway-fw", "repository_owner", "acme", "ref", "refs/tags/v1.4.2",
        "ref_type", "tag", "environment", "release", "job_workflow_ref",
        "acme/gateway-fw/.github/workflows/release.yml@refs/tags/v1.4.2", "workflow", "release",
        "sha", "3f786850e387550fdab836ed7e6dc881de23001b", "run_id", "8812345678", "run_attempt",
        "1", "actor", "alice", "jti", "7b6b3c8e-95b1-4c39-8c0a-4f1ef0d6e1aa", "iat",
        (json_int_t)now, "nbf", (json_int_t)now, "exp", (json_int_t)(now + lifetime));
}

/* A GitLab CI id_token's claims for a protected tag pipeline of acme/firmware/sensor. */
static json_t *gitlab_claims(time_t now)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "iss", GITLAB_ISS,
                     "aud", AUDIENCE, "sub",
                     "project_path:acme/firmware/sensor:ref_type:tag:ref:v2.0.0", "project_path",
                     "acme/firmware/sensor", "namespace_path", "acme/firmware", "ref", "v2.0.0",
                     "ref_type", "tag", "ref_protected", "true", "pipeline_id", "991", "jti",
                     "c0ffee00-1111-2222-3333-444455556666", "iat", (json_int_t)now, "nbf",
                     (json_int_t)now, "exp", (json_int_t)(now + 300));
}

static kbt_resp exchange(const char *id_token)
{
    json_t *body = json_pack("{s:s}", "id_token", id_token);
    kbt_resp r = kbt_callj(env, "POST", "/v1/tokens/exchange", NULL, body);

    json_decref(body);
    return r;
}

static void expect_refused(const char *id_token, const char *why)
{
    kbt_resp r = exchange(id_token);

    if (r.status != 401 || strstr(kbt_err_message(&r), why) == NULL)
        fail_msg("expected 401 \"%s\", got %ld %s", why, r.status, r.body);
    assert_string_equal(kbt_err_code(&r), "unauthenticated");
    /* the answer never carries the ID token */
    assert_null(strstr(r.body, id_token));
    kbt_resp_free(&r);
}

/* The latest audit entry with op, or NULL.  Borrowed from all. */
static const json_t *last_entry(json_t *all, const char *op)
{
    const json_t *found = NULL, *e;
    size_t i;

    json_array_foreach(all, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "op")), op) == 0)
            found = e;
    }
    return found;
}

static char *sign_body(const char *key, const char *product)
{
    char *body = NULL;

    assert_true(asprintf(&body,
                         "{\"key\":\"%s\",\"digest\":\"%064d\",\"artifact\":{\"product\":\"%s\","
                         "\"version\":\"1.4.2\",\"kind\":\"firmware\"},\"sbom\":{\"format\":"
                         "\"cyclonedx\",\"components\":[{\"name\":\"zlib\",\"version\":\"1.3\"}]}}",
                         key, 7, product) > 0);
    return body;
}

static void test_github_exchange(void **state)
{
    time_t now = time(NULL);
    json_t *claims = github_claims(now, 500), *all, *tokens;
    char *id_token = kbt_idtoken(gh_key, "RS256", "gh-1", claims), *body, *log = NULL;
    kbt_resp r, s;
    const json_t *entry, *rec;
    const char *tok, *sub;
    size_t n = 0;

    (void)state;
    r = exchange(id_token);
    if (r.status != 201)
        fail_msg("exchange: %ld %s", r.status, r.body);
    tok = json_string_value(json_object_get(r.json, "token"));
    sub = json_string_value(json_object_get(r.json, "sub"));
    assert_string_equal(sub, "ci:github/acme/gateway-fw");
    assert_string_equal(json_string_value(json_object_get(r.json, "rule")), "gateway-release");
    assert_true(r.audit_seq > 0);

    /* the broker token signs with what the rule gave, and nothing else */
    body = sign_body("fw-gw", "gateway");
    s = kbt_call(env, "POST", "/v1/sign", tok, body);
    if (s.status != 200)
        fail_msg("sign: %ld %s", s.status, s.body);
    kbt_resp_free(&s);
    free(body);
    body = sign_body("fw-sensor", "sensor");
    s = kbt_call(env, "POST", "/v1/sign", tok, body);
    assert_int_equal(s.status, 403);
    kbt_resp_free(&s);
    free(body);
    s = kbt_call(env, "GET", "/v1/tokens", tok, NULL);
    assert_int_equal(s.status, 403);
    kbt_resp_free(&s);

    /* an orphan issued by the rule, recorded like any token */
    s = kbt_call(env, "GET", "/v1/tokens?sub=ci:github/acme/gateway-fw", env->admin, NULL);
    assert_int_equal(s.status, 200);
    tokens = json_object_get(s.json, "tokens");
    assert_int_equal(json_array_size(tokens), 1);
    rec = json_array_get(tokens, 0);
    assert_true(json_is_true(json_object_get(rec, "orphan")));
    assert_true(json_is_null(json_object_get(rec, "parent_jti")));
    assert_string_equal(json_string_value(json_object_get(rec, "issued_by")),
                        "oidc:github/gateway-release");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(rec, "scope"), "max_uses")),
                     5);
    kbt_resp_free(&s);

    /* the entry: who, which rule, the claims that granted; never the ID token */
    all = kbt_audit_all(env);
    entry = last_entry(all, "token.exchange");
    assert_non_null(entry);
    assert_string_equal(json_string_value(json_object_get(entry, "outcome")), "ok");
    assert_string_equal(json_string_value(json_object_get(entry, "sub")),
                        "ci:github/acme/gateway-fw");
    rec = json_object_get(entry, "detail");
    assert_string_equal(json_string_value(json_object_get(rec, "issuer")), "github");
    assert_string_equal(json_string_value(json_object_get(rec, "rule")), "gateway-release");
    assert_string_equal(json_string_value(json_object_get(rec, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(json_object_get(rec, "claims"), "ref")),
                        "refs/tags/v1.4.2");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(rec, "claims"), "job_workflow_ref")),
        "acme/gateway-fw/.github/workflows/release.yml@refs/tags/v1.4.2");
    assert_string_equal(json_string_value(json_object_get(json_object_get(rec, "claims"), "actor")),
                        "alice");
    assert_string_equal(json_string_value(json_array_get(json_object_get(entry, "products"), 0)),
                        "gateway");
    json_decref(all);
    assert_int_equal(kbt_store_dump(env, &log, &n), 0);
    assert_null(memmem(log, n, id_token, strlen(id_token)));
    assert_null(memmem(log, n, tok, strlen(tok)));
    free(log);
    kbt_resp_free(&r);

    /* a second repository of acme matches only the read rule, in file order */
    json_object_set_new(claims, "repository", json_string("acme/tools"));
    free(id_token);
    id_token = kbt_idtoken(gh_key, "RS256", "gh-1", claims);
    r = exchange(id_token);
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "sub")),
                        "ci:github/acme/tools/read");
    assert_string_equal(json_string_value(json_object_get(r.json, "rule")), "gateway-read");
    kbt_resp_free(&r);

    /* a branch of the release repository is not a release: only the read rule holds */
    json_object_set_new(claims, "repository", json_string("acme/gateway-fw"));
    json_object_set_new(claims, "ref", json_string("refs/heads/main"));
    free(id_token);
    id_token = kbt_idtoken(gh_key, "RS256", "gh-1", claims);
    r = exchange(id_token);
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "rule")), "gateway-read");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_object_get(r.json, "scope"), "ops"), 0)),
                        "read");
    kbt_resp_free(&r);

    /* PS256 is among the issuer's algorithms, but this key's JWK says RS256: refused */
    free(id_token);
    id_token = kbt_idtoken(gh_key, "PS256", "gh-1", claims);
    expect_refused(id_token, "names a key that is not for PS256");
    free(id_token);
    json_decref(claims);
}

static void test_gitlab_exchange_and_key_rotation(void **state)
{
    time_t now = time(NULL);
    json_t *claims = gitlab_claims(now);
    EVP_PKEY *next = kbt_ec_key("P-256");
    char *id_token = kbt_idtoken(gl_key, "ES256", "gl-1", claims), *body;
    kbt_resp r, s;
    int hits;

    (void)state;
    r = exchange(id_token);
    if (r.status != 201)
        fail_msg("exchange: %ld %s", r.status, r.body);
    assert_string_equal(json_string_value(json_object_get(r.json, "sub")),
                        "ci:gitlab/acme/firmware/sensor");
    body = sign_body("fw-sensor", "sensor");
    s = kbt_call(env, "POST", "/v1/sign", json_string_value(json_object_get(r.json, "token")),
                 body);
    assert_int_equal(s.status, 200);
    kbt_resp_free(&s);
    free(body);
    kbt_resp_free(&r);

    /* an unprotected ref does not match the rule */
    json_object_set_new(claims, "ref_protected", json_string("false"));
    free(id_token);
    id_token = kbt_idtoken(gl_key, "ES256", "gl-1", claims);
    expect_refused(id_token, "no exchange rule of issuer gitlab matches");
    json_object_set_new(claims, "ref_protected", json_string("true"));

    /* the issuer rotates: a new kid appears in its set, and is fetched when a token names it */
    sleep(2); /* jwks_min_interval since the fetch at start */
    serve_gitlab_keys(gl_key, "gl-1", next, "gl-2");
    hits = kbt_srv_hits(srv);
    free(id_token);
    id_token = kbt_idtoken(next, "ES256", "gl-2", claims);
    r = exchange(id_token);
    if (r.status != 201)
        fail_msg("exchange with the new key: %ld %s", r.status, r.body);
    assert_int_equal(kbt_srv_hits(srv), hits + 1);
    kbt_resp_free(&r);

    /* a kid the issuer never had: one fetch at most per jwks_min_interval */
    free(id_token);
    id_token = kbt_idtoken(next, "ES256", "gl-unknown", claims);
    expect_refused(id_token, "kid is not in the issuer's key set");
    expect_refused(id_token, "kid is not in the issuer's key set");
    assert_true(kbt_srv_hits(srv) <= hits + 2);

    /* the URL fails: the keys the broker has keep working */
    kbt_srv_set(srv, 500, "oops");
    sleep(2);
    free(id_token);
    id_token = kbt_idtoken(next, "ES256", "gl-2", claims);
    r = exchange(id_token);
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    free(id_token);
    id_token = kbt_idtoken(next, "ES256", "gl-3", claims);
    expect_refused(id_token, "could not be fetched again");
    free(id_token);
    json_decref(claims);
    EVP_PKEY_free(next);
}

static char *github_token_with(const char *member, json_t *value)
{
    json_t *claims = github_claims(time(NULL), 300);
    char *t;

    if (value == NULL)
        json_object_del(claims, member);
    else
        json_object_set_new(claims, member, value);
    t = kbt_idtoken(gh_key, "RS256", "gh-1", claims);
    json_decref(claims);
    return t;
}

static void test_refusals(void **state)
{
    time_t now = time(NULL);
    json_t *claims = github_claims(now, 300), *all, *e;
    char *t, *h, *p, *log = NULL;
    char *tokens[16];
    size_t ntok = 0, i, n = 0, denied = 0;

    (void)state;
#define KEEP(x) (tokens[ntok++] = (x))
    expect_refused(KEEP(github_token_with("iss", json_string("https://evil.example"))),
                   "is not one this broker accepts");
    expect_refused(KEEP(github_token_with("aud", json_string("https://other.example"))),
                   "audience");
    expect_refused(KEEP(github_token_with("exp", json_integer((json_int_t)now - 1))), "expired");
    expect_refused(KEEP(github_token_with("nbf", json_integer((json_int_t)now + 120))),
                   "not yet valid");
    expect_refused(KEEP(github_token_with("iat", json_integer((json_int_t)now + 120))),
                   "issued in the future");
    expect_refused(KEEP(github_token_with("iat", NULL)), "no valid iat");
    expect_refused(KEEP(github_token_with("repository", json_string("mallory/gateway-fw"))),
                   "no exchange rule of issuer github matches");
    /* another key under the issuer's kid */
    expect_refused(KEEP(kbt_idtoken(other_rsa, "RS256", "gh-1", claims)),
                   "signature does not verify");
    /* an algorithm the issuer is not configured for, and none at all */
    expect_refused(KEEP(kbt_idtoken(gh_key, "RS512", "gh-1", claims)), "algorithm");
    h = json_dumps(json_object_get(claims, "iss"), JSON_ENCODE_ANY);
    p = json_dumps(claims, JSON_COMPACT);
    expect_refused(KEEP(kbt_jws("{\"alg\":\"none\",\"kid\":\"gh-1\"}", p, gh_key, "none")),
                   "algorithm");
    /* a key in the header is never used */
    expect_refused(KEEP(kbt_jws("{\"alg\":\"RS256\",\"kid\":\"gh-1\",\"jwk\":{\"kty\":\"RSA\"}}", p,
                                other_rsa, "RS256")),
                   "header member \"jwk\"");
    expect_refused(KEEP(strdup("not-a-jwt")), "three base64url segments");
    free(h);
    free(p);
    json_decref(claims);

    /* a body that is not {"id_token"} */
    {
        kbt_resp r = kbt_call(env, "POST", "/v1/tokens/exchange", NULL, "{\"token\":\"x\"}");
        assert_int_equal(r.status, 400);
        kbt_resp_free(&r);
    }

    /* every refusal is recorded, with the claims it was decided on, and no token */
    all = kbt_audit_all(env);
    json_array_foreach(all, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "op")), "token.exchange") == 0 &&
            strcmp(json_string_value(json_object_get(e, "outcome")), "denied") == 0)
            denied++;
    }
    assert_true(denied >= ntok);
    e = (json_t *)last_entry(all, "token.exchange");
    assert_non_null(e);
    json_decref(all);
    assert_int_equal(kbt_store_dump(env, &log, &n), 0);
    for (i = 0; i < ntok; i++) {
        const char *sig = strrchr(tokens[i], '.');
        assert_null(memmem(log, n, tokens[i], strlen(tokens[i])));
        if (sig != NULL && strlen(sig) > 20)
            assert_null(memmem(log, n, sig + 1, strlen(sig + 1)));
        free(tokens[i]);
    }
    free(log);
    (void)t;
}

static void test_ttl_cap_and_revocation(void **state)
{
    time_t now = time(NULL);
    json_t *claims = github_claims(now, 90);
    char *id_token = kbt_idtoken(gh_key, "RS256", "gh-1", claims), *out = NULL, *body;
    kbt_resp r, s;
    time_t exp;
    struct tm tm = {0};

    (void)state;
    /* at most what the ID token has left (90 s), though the rule allows 600 */
    r = exchange(id_token);
    assert_int_equal(r.status, 201);
    assert_non_null(strptime(json_string_value(json_object_get(r.json, "expires_at")),
                             "%Y-%m-%dT%H:%M:%SZ", &tm));
    exp = timegm(&tm);
    assert_true(exp <= now + 90);
    assert_true(exp >= now + 80);
    kbt_resp_free(&r);

    /* at most the rule's ttl (120 s for the read rule), though the ID token lives 500 s */
    json_decref(claims);
    claims = github_claims(now, 500);
    json_object_set_new(claims, "repository", json_string("acme/tools"));
    free(id_token);
    id_token = kbt_idtoken(gh_key, "RS256", "gh-1", claims);
    r = exchange(id_token);
    assert_int_equal(r.status, 201);
    assert_non_null(strptime(json_string_value(json_object_get(r.json, "expires_at")),
                             "%Y-%m-%dT%H:%M:%SZ", &tm));
    exp = timegm(&tm);
    assert_true(exp <= now + 121 && exp >= now + 110);
    kbt_resp_free(&r);

    /* revocation by principal ends the exchanged tokens of that principal */
    json_decref(claims);
    claims = github_claims(now, 500);
    free(id_token);
    id_token = kbt_idtoken(gh_key, "RS256", "gh-1", claims);
    r = exchange(id_token);
    assert_int_equal(r.status, 201);
    s = kbt_call(env, "POST", "/v1/revocations", env->admin,
                 "{\"sub\":\"ci:github/acme/gateway-fw\",\"reason\":\"runner compromised\"}");
    assert_int_equal(s.status, 200);
    assert_true(json_integer_value(json_object_get(s.json, "revoked")) >= 1);
    kbt_resp_free(&s);
    body = sign_body("fw-gw", "gateway");
    s = kbt_call(env, "POST", "/v1/sign", json_string_value(json_object_get(r.json, "token")),
                 body);
    assert_int_equal(s.status, 401);
    kbt_resp_free(&s);
    free(body);
    kbt_resp_free(&r);

    /* the log still rebuilds the store, exchanged tokens and their revocation included */
    if (kbt_run_daemon(env, "-c keybroker.conf --verify-store", &out) != 0)
        fail_msg("--verify-store: %s", out);
    assert_non_null(strstr(out, "matches its audit log"));
    free(out);
    /* and a restart knows the exchanged tokens */
    kbt_restart(env);
    s = kbt_call(env, "GET", "/v1/tokens?sub=ci:github/acme/tools/read&active=true", env->admin,
                 NULL);
    assert_int_equal(s.status, 200);
    assert_true(json_array_size(json_object_get(s.json, "tokens")) >= 1);
    kbt_resp_free(&s);
    free(id_token);
    json_decref(claims);
}

static void test_rate_and_unconfigured(void **state)
{
    kbt_env *plain;
    kbt_resp r;
    char *conf = NULL;
    int limited = 0;

    (void)state;
    /* a broker without oidc_issuers has no exchange, and reads no body for it */
    plain = kbt_start(NULL);
    {
        kbt_env *saved = env;
        env = plain;
        r = exchange("a.b.c");
        env = saved;
    }
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    kbt_free(plain);
    /* kbt_start pointed SoftHSM2 at the other deployment's token */
    assert_true(asprintf(&conf, "%s/softhsm2.conf", env->dir) > 0);
    setenv("SOFTHSM2_CONF", conf, 1);
    free(conf);
    conf = NULL;

    /* oidc_exchange_rate per source: bursts of twice the rate, then 429 */
    kbt_stop(env);
    assert_true(asprintf(&conf,
                         "listen = 127.0.0.1:0\nport_file = port\npin_file = pin\n"
                         "store = %s\nworkers = 2\noidc_issuers = oidc.conf\n"
                         "oidc_exchange_rate = 2\n",
                         env->store) > 0);
    write_in_env("keybroker.conf", conf);
    free(conf);
    assert_int_equal(kbt_spawn_daemon(env), 0);
    for (int i = 0; i < 10; i++) {
        r = exchange("a.b.c");
        if (r.status == 429) {
            assert_string_equal(kbt_err_code(&r), "rate_limited");
            limited++;
        } else {
            assert_int_equal(r.status, 401);
        }
        kbt_resp_free(&r);
    }
    assert_true(limited >= 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_github_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gitlab_exchange_and_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_cap_and_revocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_and_unconfigured, setup, teardown),
    };

    return cmocka_run_group_tests_name("OIDC token exchange", tests, NULL, NULL);
}
