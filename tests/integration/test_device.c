/*
 * test_device.c - the rest of a device's life over real HTTP: device-bound
 * debug unlocks, OTA manifests and deployment reports, COSE_Sign1 output,
 * and the device's history in the ledger.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "harness.h"
#include "kbr_cose.h"
#include "kbr_store.h"

static kbt_env *env;
static char *rework; /* debug-auth on GW-1 and GW-2 only */
static char *ota;    /* ota-report and ota-manifest signing */
static char *ci;

static void must(kbt_resp r, long status, const char *what)
{
    if (r.status != status)
        fail_msg("%s: expected %ld, got %ld %s", what, status, r.status, r.body);
    kbt_resp_free(&r);
}

static void sign_firmware(const char *version, unsigned char fill)
{
    unsigned char d[32];
    char hex[65], body[1024];

    memset(d, fill, sizeof(d));
    kbr_hex_encode_buf(d, 32, hex);
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-gw\",\"digest\":\"%s\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"%s\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":[{\"name\":"
             "\"openssl\",\"version\":\"3.0.13\"}]}}",
             hex, version);
    must(kbt_call(env, "POST", "/v1/sign", ci, body), 200, version);
}

static void provision(const char *factory_tok, const char *serial)
{
    char *csr = kbt_csr_pem(NULL, NULL);
    json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "key", "ca-gw", "csr_pem", csr,
                             "device", "serial", serial, "product", "gateway", "batch", "b1",
                             "firmware_version", "1.0.0");

    must(kbt_callj(env, "POST", "/v1/provision", factory_tok, body), 201, serial);
    json_decref(body);
    free(csr);
}

static int setup(void **state)
{
    char *factory;

    (void)state;
    env = kbt_start("debug_unlock_max_seconds = 900\n");
    kbt_key(env, "ca-gw", "device-identity-ca", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-gw", "firmware-signing", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-ed", "firmware-signing", "ed25519", "gateway");
    kbt_key(env, "ota-gw", "ota-signing", "ecdsa-p256", "gateway");
    kbt_key(env, "dbg-gw", "debug-auth", "ecdsa-p256", "gateway");
    kbt_key(env, "dbg-ed", "debug-auth", "ed25519", "gateway");
    must(kbt_call(env, "POST", "/v1/keys/ca-gw/certificate", env->admin,
                  "{\"self_signed\":{\"subject\":\"CN=Gateway CA\",\"days\":365}}"),
         201, "CA certificate");
    must(kbt_call(env, "POST", "/v1/batches", env->admin,
                  "{\"batch\":\"b1\",\"product\":\"gateway\",\"factory\":\"factory:acme\","
                  "\"quantity\":10,\"market\":[\"DE\"]}"),
         201, "batch");
    ci = kbt_token(env, "{\"sub\":\"ci:gw\",\"ops\":[\"sign\"],\"ttl\":3600}");
    factory = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],\"ttl\":3600}");
    rework = kbt_token(env, "{\"sub\":\"factory:acme-rework\",\"ops\":[\"debug-auth\"],"
                            "\"keys\":[\"dbg-*\"],\"products\":[\"gateway\"],"
                            "\"devices\":[\"GW-1\",\"GW-2\"],\"ttl\":3600}");
    ota = kbt_token(env, "{\"sub\":\"ota:fleet\",\"ops\":[\"ota-report\",\"sign\"],"
                         "\"keys\":[\"ota-gw\"],\"products\":[\"gateway\"],\"ttl\":3600}");
    sign_firmware("1.0.0", 0x10);
    sign_firmware("1.1.0", 0x11);
    provision(factory, "GW-1");
    provision(factory, "GW-2");
    provision(factory, "GW-3");
    free(factory);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(rework);
    free(ota);
    free(ci);
    kbt_free(env);
    return 0;
}

/* A vendor tool's to-be-signed bytes: a header, the device's challenge, the permissions. */
static size_t adac_message(const unsigned char *challenge, size_t clen, unsigned char *out)
{
    static const unsigned char hdr[] = {'A', 'D', 'A', 'C', 0x01, 0x00, 0x02, 0x00};
    static const unsigned char perm[] = {0xff, 0x00, 0x00, 0x01};

    memcpy(out, hdr, sizeof(hdr));
    memcpy(out + sizeof(hdr), challenge, clen);
    memcpy(out + sizeof(hdr) + clen, perm, sizeof(perm));
    return sizeof(hdr) + clen + sizeof(perm);
}

static kbt_resp debug_auth(const char *tok, const char *key, const char *device,
                           const unsigned char *challenge, const unsigned char *msg, size_t msglen,
                           const char *ticket)
{
    char chex[129], *b64 = NULL;
    json_t *body;
    kbt_resp r;

    kbr_hex_encode_buf(challenge, 32, chex);
    assert_int_equal(kbr_b64_encode(msg, msglen, &b64), KBR_OK);
    body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s?,s:s}", "key", key, "device", device, "product",
                     "gateway", "challenge", chex, "permissions", "ff000001", "ticket", ticket,
                     "message_b64", b64);
    r = kbt_callj(env, "POST", "/v1/debug-auth", tok, body);
    json_decref(body);
    free(b64);
    return r;
}

static void expect_err(kbt_resp r, long status, const char *code, const char *needle)
{
    if (r.status != status || strcmp(kbt_err_code(&r), code) != 0 ||
        (needle != NULL && strstr(kbt_err_message(&r), needle) == NULL))
        fail_msg("expected %ld %s \"%s\", got %ld %s", status, code, needle ? needle : "", r.status,
                 r.body);
    assert_true(r.audit_seq > 0);
    kbt_resp_free(&r);
}

static unsigned char used_challenge[32];

static void test_debug_unlock_verifies(void **state)
{
    unsigned char msg[128], md[32], *sig = NULL;
    size_t n, siglen = 0;
    EVP_PKEY *pub = kbt_pubkey(env, "dbg-gw");
    kbt_resp r;
    time_t exp = 0;

    (void)state;
    RAND_bytes(used_challenge, sizeof(used_challenge));
    n = adac_message(used_challenge, 32, msg);
    r = debug_auth(rework, "dbg-gw", "GW-1", used_challenge, msg, n, "RMA-2026-0042");
    if (r.status != 200)
        fail_msg("debug-auth: %ld %s", r.status, r.body);
    assert_int_equal(
        kbr_b64_decode(json_string_value(json_object_get(r.json, "signature_b64")), &sig, &siglen),
        KBR_OK);
    SHA256(msg, n, md);
    /* ECDSA over SHA-256 of exactly the vendor tool's bytes */
    assert_true(kbt_verify(pub, "raw", EVP_sha256(), md, 32, sig, siglen));
    assert_int_equal(kbr_time_parse(json_string_value(json_object_get(r.json, "expires_at")), &exp),
                     KBR_OK);
    assert_true(exp > time(NULL) + 800 && exp <= time(NULL) + 900);
    assert_int_equal(json_integer_value(json_object_get(r.json, "audit_seq")), r.audit_seq);
    kbt_resp_free(&r);
    free(sig);
    EVP_PKEY_free(pub);
}

static void test_debug_unlock_ed25519(void **state)
{
    unsigned char ch[32], msg[128], *sig = NULL;
    size_t n, siglen = 0;
    EVP_PKEY *pub = kbt_pubkey(env, "dbg-ed");
    kbt_resp r;

    (void)state;
    RAND_bytes(ch, sizeof(ch));
    n = adac_message(ch, 32, msg);
    r = debug_auth(rework, "dbg-ed", "GW-2", ch, msg, n, "RMA-2026-0043");
    assert_int_equal(r.status, 200);
    assert_int_equal(
        kbr_b64_decode(json_string_value(json_object_get(r.json, "signature_b64")), &sig, &siglen),
        KBR_OK);
    assert_true(kbt_verify(pub, "raw", NULL, msg, n, sig, siglen));
    kbt_resp_free(&r);
    free(sig);
    EVP_PKEY_free(pub);
}

static void test_debug_refusals(void **state)
{
    unsigned char ch[32], msg[128];
    size_t n;
    char *wide = kbt_token(env, "{\"sub\":\"factory:acme-rework\",\"ops\":[\"debug-auth\"],"
                                "\"devices\":[\"GW-*\"],\"ttl\":600}");

    (void)state;
    /* the same challenge again: a replay */
    n = adac_message(used_challenge, 32, msg);
    expect_err(debug_auth(rework, "dbg-gw", "GW-1", used_challenge, msg, n, "RMA-1"), 409,
               "conflict", "challenge");
    RAND_bytes(ch, sizeof(ch));
    n = adac_message(ch, 32, msg);
    expect_err(debug_auth(rework, "dbg-gw", "GW-3", ch, msg, n, "RMA-1"), 403, "forbidden", "GW-3");
    expect_err(debug_auth(wide, "dbg-gw", "GW-404", ch, msg, n, "RMA-1"), 404, "not_found",
               "GW-404");
    expect_err(debug_auth(rework, "dbg-gw", "GW-1", ch, msg, n, NULL), 400, "bad_request",
               "ticket");
    /* bytes that do not answer this challenge */
    expect_err(debug_auth(rework, "dbg-gw", "GW-1", ch, (const unsigned char *)"hello", 5, "RMA-1"),
               400, "bad_request", "challenge");
    expect_err(debug_auth(rework, "fw-gw", "GW-1", ch, msg, n, "RMA-1"), 403, "forbidden", NULL);
    /* replay protection is durable */
    kbt_restart(env);
    n = adac_message(used_challenge, 32, msg);
    expect_err(debug_auth(rework, "dbg-gw", "GW-1", used_challenge, msg, n, "RMA-1"), 409,
               "conflict", "challenge");
    free(wide);
}

/* A challenge is the device's: another debug key cannot answer it a second time. */
static void test_debug_challenge_once_per_device(void **state)
{
    unsigned char msg[128];
    size_t n = adac_message(used_challenge, 32, msg);

    (void)state;
    expect_err(debug_auth(rework, "dbg-ed", "GW-1", used_challenge, msg, n, "RMA-2"), 409,
               "conflict", "already answered for device GW-1");
}

/* A token's batches list bounds the devices it unlocks, as its devices list does. */
static void test_debug_honours_batches(void **state)
{
    unsigned char ch[32], msg[128];
    size_t n;
    char *other = kbt_token(env, "{\"sub\":\"factory:acme-rework\",\"ops\":[\"debug-auth\"],"
                                 "\"batches\":[\"b2\"],\"ttl\":600}");
    char *mine = kbt_token(env, "{\"sub\":\"factory:acme-rework\",\"ops\":[\"debug-auth\"],"
                                "\"batches\":[\"b1\"],\"ttl\":600}");
    kbt_resp r;

    (void)state;
    RAND_bytes(ch, sizeof(ch));
    n = adac_message(ch, 32, msg);
    expect_err(debug_auth(other, "dbg-gw", "GW-3", ch, msg, n, "RMA-3"), 403, "forbidden",
               "batch outside the token's batches");
    r = debug_auth(mine, "dbg-gw", "GW-3", ch, msg, n, "RMA-3");
    if (r.status != 200)
        fail_msg("debug-auth within the batch: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    free(other);
    free(mine);
}

/*
 * An install dated beyond the clock skew would stay the device's latest until that date,
 * hiding every real install before it: refused, and nothing of the report is kept.
 */
static void test_ota_report_from_the_future(void **state)
{
    char at[KBR_TIME_LEN], body[512];

    (void)state;
    kbr_time_fmt(time(NULL) + 86400, at);
    snprintf(body, sizeof(body),
             "{\"product\":\"gateway\",\"version\":\"1.1.0\",\"campaign\":\"pin\","
             "\"results\":[{\"device\":\"GW-1\",\"status\":\"installed\",\"at\":"
             "\"2026-11-28T10:00:00Z\"},{\"device\":\"GW-2\",\"status\":\"installed\","
             "\"at\":\"%s\"}]}",
             at);
    expect_err(kbt_call(env, "POST", "/v1/ota/deployments", ota, body), 400, "bad_request",
               "results[1].at");
}

static void test_ota_manifest_needs_signed_firmware(void **state)
{
    char body[512];

    (void)state;
    snprintf(body, sizeof(body),
             "{\"key\":\"ota-gw\",\"digest\":\"%064d\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"2.0.0\",\"kind\":\"ota-manifest\"}}",
             0);
    expect_err(kbt_call(env, "POST", "/v1/sign", ota, body), 404, "not_found", "2.0.0");
    snprintf(body, sizeof(body),
             "{\"key\":\"ota-gw\",\"digest\":\"%064d\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"1.1.0\",\"kind\":\"ota-manifest\"}}",
             0);
    must(kbt_call(env, "POST", "/v1/sign", ota, body), 200, "manifest for 1.1.0");
}

static void test_ota_report(void **state)
{
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "POST", "/v1/ota/deployments", ota,
                 "{\"product\":\"gateway\",\"version\":\"1.1.0\",\"campaign\":\"2026-11-fix\","
                 "\"results\":[{\"device\":\"GW-1\",\"status\":\"installed\",\"at\":"
                 "\"2026-11-28T10:00:00Z\"},{\"device\":\"GW-2\",\"status\":\"failed\",\"at\":"
                 "\"2026-11-28T10:01:00Z\"},{\"device\":\"GW-404\",\"status\":\"installed\","
                 "\"at\":\"2026-11-28T10:02:00Z\"}]}");
    if (r.status != 200)
        fail_msg("ota report: %ld %s", r.status, r.body);
    assert_int_equal(json_integer_value(json_object_get(r.json, "recorded")), 2);
    assert_int_equal(json_array_size(json_object_get(r.json, "unknown_devices")), 1);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(r.json, "unknown_devices"), 0)), "GW-404");
    kbt_resp_free(&r);
    expect_err(kbt_call(env, "POST", "/v1/ota/deployments", ota,
                        "{\"product\":\"gateway\",\"version\":\"9.9.9\",\"campaign\":\"x\","
                        "\"results\":[{\"device\":\"GW-1\",\"status\":\"installed\",\"at\":"
                        "\"2026-11-28T10:00:00Z\"}]}"),
               404, "not_found", "9.9.9");
    expect_err(kbt_call(env, "POST", "/v1/ota/deployments", ota,
                        "{\"product\":\"gateway\",\"version\":\"1.1.0\",\"campaign\":\"x\","
                        "\"results\":[{\"device\":\"GW-1\",\"status\":\"maybe\",\"at\":"
                        "\"2026-11-28T10:00:00Z\"}]}"),
               400, "bad_request", "results[0].status");
}

/* A token's batches list bounds the devices it reports installs for, as its devices list does:
 * a report naming a device of another batch is refused whole. */
static void test_ota_report_honours_batches(void **state)
{
    static const char body[] =
        "{\"product\":\"gateway\",\"version\":\"1.1.0\",\"campaign\":\"line-2\","
        "\"results\":[{\"device\":\"GW-404\",\"status\":\"installed\",\"at\":"
        "\"2026-11-28T11:00:00Z\"},{\"device\":\"GW-2\",\"status\":\"installed\",\"at\":"
        "\"2026-11-28T11:00:00Z\"}]}";
    char *other = kbt_token(env, "{\"sub\":\"ota:line-2\",\"ops\":[\"ota-report\"],"
                                 "\"batches\":[\"b2\"],\"ttl\":600}");
    char *mine = kbt_token(env, "{\"sub\":\"ota:line-1\",\"ops\":[\"ota-report\"],"
                                "\"batches\":[\"b1\"],\"ttl\":600}");
    json_t *before = NULL;
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "GET", "/v1/views/devices/GW-2", env->admin, NULL);
    assert_int_equal(r.status, 200);
    before = json_incref(json_object_get(r.json, "firmware"));
    kbt_resp_free(&r);
    expect_err(kbt_call(env, "POST", "/v1/ota/deployments", other, body), 403, "forbidden",
               "device GW-2 is in batch \"b1\", outside the token's batches");
    r = kbt_call(env, "GET", "/v1/views/devices/GW-2", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_equal(before, json_object_get(r.json, "firmware")));
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/ota/deployments", mine, body);
    if (r.status != 200 || json_integer_value(json_object_get(r.json, "recorded")) != 1)
        fail_msg("ota report within the batch: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    json_decref(before);
    free(other);
    free(mine);
}

/* The audit entry seq, from GET /v1/audit (new ref). */
static json_t *audit_entry(long seq)
{
    char path[64];
    kbt_resp r;
    json_t *e;

    snprintf(path, sizeof(path), "/v1/audit?after=%ld&limit=1", seq - 1);
    r = kbt_call(env, "GET", path, env->admin, NULL);
    assert_int_equal(r.status, 200);
    e = json_incref(json_array_get(json_object_get(r.json, "entries"), 0));
    assert_non_null(e);
    assert_int_equal(json_integer_value(json_object_get(e, "seq")), seq);
    kbt_resp_free(&r);
    return e;
}

/* remediation{} of View C for openssl in gateway, fixed by 1.1.0 (new ref). */
static json_t *remediation(void)
{
    kbt_resp r = kbt_call(
        env, "GET", "/v1/views/exposure?component=openssl&product=gateway&fixed_version=1.1.0",
        env->admin, NULL);
    json_t *rem;

    assert_int_equal(r.status, 200);
    rem = json_incref(json_object_get(r.json, "remediation"));
    assert_non_null(rem);
    kbt_resp_free(&r);
    return rem;
}

static json_int_t count_of(const json_t *obj, const char *field)
{
    return json_integer_value(json_object_get(obj, field));
}

/* A platform that retries sends the same report twice: both are received, one install is. */
static void test_ota_report_repeated(void **state)
{
    char at[KBR_TIME_LEN], body[512];
    long seq[2];
    const json_t *fw, *events;
    json_t *e, *before = remediation(), *after;
    kbt_resp r;

    (void)state;
    /* after GW-3's provisioning, so the install is its current firmware; a report may be a
     * little ahead of the broker's clock */
    kbr_time_fmt(time(NULL) + 120, at);
    snprintf(body, sizeof(body),
             "{\"product\":\"gateway\",\"version\":\"1.1.0\",\"campaign\":\"2026-12-rerun\","
             "\"results\":[{\"device\":\"GW-3\",\"status\":\"installed\",\"at\":\"%s\"}]}",
             at);
    for (int i = 0; i < 2; i++) {
        r = kbt_call(env, "POST", "/v1/ota/deployments", ota, body);
        if (r.status != 200)
            fail_msg("ota report %d: %ld %s", i, r.status, r.body);
        assert_int_equal(json_integer_value(json_object_get(r.json, "recorded")), 1);
        seq[i] = r.audit_seq;
        kbt_resp_free(&r);
        e = audit_entry(seq[i]);
        assert_string_equal(json_string_value(json_object_get(e, "outcome")), "ok");
        assert_int_equal(count_of(json_object_get(json_object_get(e, "detail"), "ota"), "recorded"),
                         1);
        json_decref(e);
    }
    assert_true(seq[1] > seq[0]);

    r = kbt_call(env, "GET", "/v1/views/devices/GW-3?product=gateway", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "current_firmware")), "1.1.0");
    fw = json_object_get(r.json, "firmware");
    assert_int_equal(json_array_size(fw), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(fw, 1), "status")),
                        "installed");
    assert_int_equal(count_of(json_array_get(fw, 1), "audit_seq"), seq[0]);
    /* provisioned, the debug unlock within its batch, the install once */
    events = json_object_get(r.json, "events");
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(events, 2), "kind")),
                        "ota-installed");
    kbt_resp_free(&r);

    /* GW-3 ran the affected 1.0.0 before: it moves from pending to updated, once. */
    after = remediation();
    assert_int_equal(count_of(after, "affected"), 3);
    assert_int_equal(count_of(after, "affected"), count_of(before, "affected"));
    assert_int_equal(count_of(after, "updated"), count_of(before, "updated") + 1);
    assert_int_equal(count_of(after, "pending"), count_of(before, "pending") - 1);
    json_decref(after);
    json_decref(before);
}

/* COSE_Sign1 with a detached payload, checked the way a verifier on the device does it. */
static void check_cose(const char *key, const unsigned char *payload, size_t len)
{
    char body[2048], *b64 = NULL;
    unsigned char *cose = NULL, *prot = NULL, *sig = NULL, *kid = NULL, *tbs = NULL;
    size_t coselen = 0, protlen = 0, siglen = 0, kidlen = 0, tbslen = 0;
    kbr_cose_alg alg;
    EVP_PKEY *pub = kbt_pubkey(env, key);
    unsigned char md[32];
    kbt_resp r;

    assert_int_equal(kbr_b64_encode(payload, len, &b64), KBR_OK);
    snprintf(body, sizeof(body),
             "{\"key\":\"%s\",\"message_b64\":\"%s\",\"format\":\"cose_sign1\",\"artifact\":"
             "{\"product\":\"gateway\",\"version\":\"3.0.0-%s\"},\"sbom\":{\"format\":"
             "\"cyclonedx\",\"components\":[]}}",
             key, b64, key);
    r = kbt_call(env, "POST", "/v1/sign", ci, body);
    if (r.status != 200)
        fail_msg("cose sign: %ld %s", r.status, r.body);
    assert_int_equal(kbr_b64_decode(json_string_value(json_object_get(r.json, "signature_b64")),
                                    &cose, &coselen),
                     KBR_OK);
    assert_int_equal(kbr_cose_sign1_parse(cose, coselen, &prot, &protlen, &sig, &siglen, &alg, &kid,
                                          &kidlen, NULL),
                     KBR_OK);
    /* the kid names the key */
    assert_int_equal(kidlen, strlen(key));
    assert_memory_equal(kid, key, kidlen);
    assert_int_equal(kbr_cose_sig_structure(prot, protlen, NULL, 0, payload, len, &tbs, &tbslen),
                     KBR_OK);
    if (alg == KBR_COSE_EDDSA) {
        assert_true(kbt_verify(pub, "raw", NULL, tbs, tbslen, sig, siglen));
    } else {
        assert_int_equal(alg, KBR_COSE_ES256);
        SHA256(tbs, tbslen, md);
        assert_true(kbt_verify(pub, "raw", EVP_sha256(), md, 32, sig, siglen));
        /* the payload is part of what was signed: another payload does not verify */
        free(tbs);
        assert_int_equal(kbr_cose_sig_structure(prot, protlen, NULL, 0,
                                                (const unsigned char *)"other", 5, &tbs, &tbslen),
                         KBR_OK);
        SHA256(tbs, tbslen, md);
        assert_false(kbt_verify(pub, "raw", EVP_sha256(), md, 32, sig, siglen));
    }
    kbt_resp_free(&r);
    free(b64);
    free(cose);
    free(prot);
    free(sig);
    free(kid);
    free(tbs);
    EVP_PKEY_free(pub);
}

static void test_cose_sign1(void **state)
{
    static const unsigned char suit[] = {0xa2, 0x01, 0x01, 0x02, 0x18, 0x2a, 0x99, 0x42};

    (void)state;
    check_cose("fw-gw", suit, sizeof(suit));
    check_cose("fw-ed", suit, sizeof(suit));
}

static void test_device_history(void **state)
{
    kbr_store *st = NULL;
    json_t *events = NULL, *ev;
    char url[700];
    const char *want[] = {"provisioned", "debug-auth", "ota-installed"};
    json_int_t last = 0;
    size_t i;

    (void)state;
    kbt_store_url(env, url, sizeof(url));
    assert_int_equal(kbr_store_open(url, &st, NULL), KBR_OK);
    assert_int_equal(kbr_store_device_events(st, "gateway", "GW-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 3);
    json_array_foreach(events, i, ev)
    {
        json_int_t seq = json_integer_value(json_object_get(ev, "audit_seq"));
        assert_string_equal(json_string_value(json_object_get(ev, "kind")), want[i]);
        assert_true(seq > last);
        last = seq;
    }
    json_decref(events);
    assert_int_equal(kbr_store_device_events(st, "gateway", "GW-2", &events), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(events, 2), "kind")),
                        "ota-failed");
    json_decref(events);
    kbr_store_close(st);
}

/* A device revoked for good gets no debug unlock, and its record shows none. */
static void test_debug_refused_for_revoked_device(void **state)
{
    char *factory = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],"
                                   "\"ttl\":600}");
    char *tok = kbt_token(env, "{\"sub\":\"factory:acme-rework\",\"ops\":[\"debug-auth\"],"
                               "\"batches\":[\"b1\"],\"ttl\":600}");
    unsigned char ch[32], msg[128];
    const json_t *ev;
    size_t n, i;
    kbt_resp r;

    (void)state;
    provision(factory, "GW-4");
    RAND_bytes(ch, sizeof(ch));
    n = adac_message(ch, 32, msg);
    must(kbt_call(env, "POST", "/v1/devices/GW-4/revoke", env->admin,
                  "{\"product\":\"gateway\",\"reason\":\"cessationOfOperation\"}"),
         200, "revoke GW-4");
    expect_err(debug_auth(tok, "dbg-gw", "GW-4", ch, msg, n, "RMA-4"), 409, "conflict",
               "GW-4 of product gateway was revoked at");
    r = kbt_call(env, "GET", "/v1/views/devices/GW-4?product=gateway", env->admin, NULL);
    assert_int_equal(r.status, 200);
    json_array_foreach(json_object_get(r.json, "events"), i, ev)
        assert_string_not_equal(json_string_value(json_object_get(ev, "kind")), "debug-auth");
    kbt_resp_free(&r);
    free(tok);
    free(factory);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_debug_unlock_verifies),
        cmocka_unit_test(test_debug_unlock_ed25519),
        cmocka_unit_test(test_debug_refusals),
        cmocka_unit_test(test_debug_challenge_once_per_device),
        cmocka_unit_test(test_debug_honours_batches),
        cmocka_unit_test(test_ota_report_from_the_future),
        cmocka_unit_test(test_ota_manifest_needs_signed_firmware),
        cmocka_unit_test(test_ota_report),
        cmocka_unit_test(test_ota_report_honours_batches),
        cmocka_unit_test(test_ota_report_repeated),
        cmocka_unit_test(test_cose_sign1),
        cmocka_unit_test(test_device_history),
        cmocka_unit_test(test_debug_refused_for_revoked_device),
    };

    return cmocka_run_group_tests_name("device lifecycle", tests, setup, teardown);
}
