/*
 * test_views.c - the four custody views over real HTTP, on a product
 * history built through the API itself: keys, two firmware builds with
 * SBOMs (one carrying a vulnerable component), batches for EU and non-EU
 * markets, provisioning, OTA reports with a failure, a debug unlock, and a
 * key someone made directly in the HSM with pkcs11-tool.
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
#include <openssl/x509.h>

#include "harness.h"

#define ZERO62 "00000000000000000000000000000000000000000000000000000000000000"

static kbt_env *env;
static char *ci, *reader, *ota;
static long unlock_seq; /* the audit entry of the debug unlock of EU-3 */

static void must(kbt_resp r, long status, const char *what)
{
    if (r.status != status)
        fail_msg("%s: expected %ld, got %ld %s", what, status, r.status, r.body);
    kbt_resp_free(&r);
}

static void sign_build(const char *version, const char *openssl_version, unsigned char fill)
{
    char body[1024];

    snprintf(body, sizeof(body),
             "{\"key\":\"fw-gw\",\"digest\":\"%02x%062d\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"%s\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":["
             "{\"name\":\"openssl\",\"version\":\"%s\",\"purl\":\"pkg:generic/openssl@%s\"},"
             "{\"name\":\"zlib\",\"version\":\"1.3.1\",\"purl\":\"pkg:generic/zlib@1.3.1\"}]}}",
             fill, 0, version, openssl_version, openssl_version);
    must(kbt_call(env, "POST", "/v1/sign", ci, body), 200, version);
}

static void provision(const char *tok, const char *serial, const char *batch)
{
    char *csr = kbt_csr_pem(NULL, NULL);
    json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "key", "ca-gw", "csr_pem", csr,
                             "device", "serial", serial, "product", "gateway", "batch", batch,
                             "firmware_version", "1.0.0");

    must(kbt_callj(env, "POST", "/v1/provision", tok, body), 201, serial);
    json_decref(body);
    free(csr);
}

static void debug_unlock(void)
{
    char *tok = kbt_token(env, "{\"sub\":\"factory:acme-rework\",\"ops\":[\"debug-auth\"],"
                               "\"ttl\":600}");
    unsigned char ch[32], msg[40];
    char hex[65], *b64 = NULL;
    json_t *body;
    kbt_resp r;

    RAND_bytes(ch, sizeof(ch));
    memcpy(msg, "ADAC", 4);
    memcpy(msg + 4, ch, 32);
    memcpy(msg + 36, "\xff\x00\x00\x01", 4);
    kbr_hex_encode_buf(ch, 32, hex);
    assert_int_equal(kbr_b64_encode(msg, sizeof(msg), &b64), KBR_OK);
    body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "key", "dbg-gw", "device", "EU-3", "product",
                     "gateway", "challenge", hex, "permissions", "ff000001", "ticket", "RMA-7",
                     "message_b64", b64);
    r = kbt_callj(env, "POST", "/v1/debug-auth", tok, body);
    assert_int_equal(r.status, 200);
    unlock_seq = r.audit_seq;
    kbt_resp_free(&r);
    json_decref(body);
    free(b64);
    free(tok);
}

/* Installs are reported after the devices left the factory. */
static void ota_report(void)
{
    char at[KBR_TIME_LEN], later[KBR_TIME_LEN];
    json_t *body;

    kbr_time_fmt(time(NULL) + 60, at);
    kbr_time_fmt(time(NULL) + 120, later);
    body = json_pack("{s:s,s:s,s:s,s:[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s}]}", "product",
                     "gateway", "version", "1.1.0", "campaign", "fix-1", "results", "device",
                     "EU-1", "status", "installed", "at", at, "device", "EU-2", "status", "failed",
                     "at", at, "device", "US-1", "status", "installed", "at", later);
    must(kbt_callj(env, "POST", "/v1/ota/deployments", ota, body), 200, "OTA report");
    json_decref(body);
}

static int setup(void **state)
{
    char *acme, *globex;

    (void)state;
    env = kbt_start(NULL);
    kbt_key(env, "ca-gw", "device-identity-ca", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-gw", "firmware-signing", "ecdsa-p256", "gateway");
    kbt_key(env, "dbg-gw", "debug-auth", "ecdsa-p256", "gateway");
    must(kbt_call(env, "POST", "/v1/keys/ca-gw/certificate", env->admin,
                  "{\"self_signed\":{\"subject\":\"CN=Gateway CA\",\"days\":3650}}"),
         201, "CA certificate");
    must(kbt_call(env, "POST", "/v1/batches", env->admin,
                  "{\"batch\":\"b-eu\",\"product\":\"gateway\",\"factory\":\"factory:acme\","
                  "\"quantity\":10,\"market\":[\"DE\",\"FR\"]}"),
         201, "EU batch");
    must(kbt_call(env, "POST", "/v1/batches", env->admin,
                  "{\"batch\":\"b-us\",\"product\":\"gateway\",\"factory\":\"factory:globex\","
                  "\"quantity\":10,\"market\":[\"US\"]}"),
         201, "US batch");
    ci = kbt_token(env, "{\"sub\":\"ci:gateway\",\"ops\":[\"sign\"],\"keys\":[\"fw-gw\"],"
                        "\"ttl\":3600}");
    reader = kbt_token(env, "{\"sub\":\"security:psirt\",\"ops\":[\"read\"],\"ttl\":3600}");
    ota = kbt_token(env, "{\"sub\":\"ota:fleet\",\"ops\":[\"ota-report\"],\"ttl\":3600}");
    acme = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],\"ttl\":3600}");
    globex = kbt_token(env, "{\"sub\":\"factory:globex\",\"ops\":[\"provision\"],\"ttl\":3600}");
    sign_build("1.0.0", "3.0.1", 0x10);
    sign_build("1.1.0", "3.0.13", 0x11);
    /* a denied use of fw-gw: another digest for a signed version */
    must(kbt_call(env, "POST", "/v1/sign", ci,
                  "{\"key\":\"fw-gw\",\"digest\":\"ff000000000000000000000000000000000000000000"
                  "00000000000000000000\",\"artifact\":{\"product\":\"gateway\",\"version\":"
                  "\"1.0.0\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":[]}}"),
         409, "conflicting rebuild");
    provision(acme, "EU-1", "b-eu");
    provision(acme, "EU-2", "b-eu");
    provision(acme, "EU-3", "b-eu");
    provision(globex, "US-1", "b-us");
    provision(globex, "US-2", "b-us");
    ota_report();
    debug_unlock();
    /*
     * A key someone generated for a new product family and never registered.
     * SoftHSM2 does not share a token between processes safely, so the broker
     * is stopped while pkcs11-tool writes to it.
     */
    kbt_stop(env);
    assert_int_equal(kbt_sh(env,
                            "pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label "
                            "keybroker --login --pin " KBT_PIN " --keypairgen --key-type "
                            "EC:prime256v1 --label rogue-fw-key --id 99 >/dev/null 2>&1",
                            NULL),
                     0);
    assert_int_equal(kbt_spawn_daemon(env), 0);
    free(acme);
    free(globex);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(ci);
    free(reader);
    free(ota);
    kbt_free(env);
    return 0;
}

static json_t *get_view(const char *path)
{
    kbt_resp r = kbt_call(env, "GET", path, reader, NULL);
    json_t *j;

    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    assert_true(r.audit_seq > 0);
    j = json_incref(r.json);
    kbt_resp_free(&r);
    return j;
}

static json_t *find(json_t *arr, const char *field, const char *value)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(json_object_get(v, field));
        if (s != NULL && strcmp(s, value) == 0)
            return v;
    }
    return NULL;
}

static void test_view_product(void **state)
{
    json_t *v = get_view("/v1/views/products/gateway"), *keys, *ca, *rogue;

    (void)state;
    keys = json_object_get(v, "keys");
    ca = find(json_object_get(keys, "device-identity-ca"), "name", "ca-gw");
    assert_non_null(ca);
    assert_non_null(
        json_string_value(json_object_get(json_object_get(ca, "certificate"), "not_after")));
    assert_true(json_is_true(json_object_get(json_object_get(ca, "hsm"), "sensitive")));
    assert_non_null(find(json_object_get(keys, "firmware-signing"), "name", "fw-gw"));
    assert_non_null(find(json_object_get(keys, "debug-auth"), "name", "dbg-gw"));
    /* the CI token is live on fw-gw */
    assert_non_null(
        find(json_object_get(find(json_object_get(keys, "firmware-signing"), "name", "fw-gw"),
                             "live_tokens"),
             "sub", "ci:gateway"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "device_certificates"),
                                                        "total_current")),
                     5);
    rogue = find(json_object_get(v, "unregistered_hsm_objects"), "label", "rogue-fw-key");
    assert_non_null(rogue);
    /* the broker's own keys and the registered ones are not flagged */
    assert_null(find(json_object_get(v, "unregistered_hsm_objects"), "label", "kbr/key/fw-gw"));
    assert_null(find(json_object_get(v, "unregistered_hsm_objects"), "label", "kbr/issuer"));
    json_decref(v);
    /* everything expiring within 100 years: the CA certificate and 5 device certificates */
    v = get_view("/v1/views/products/gateway?expiring_within_days=36500");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(v, "expiring"), "device_certificates"), "count")),
        5);
    json_decref(v);
}

static void test_view_custody(void **state)
{
    json_t *v = get_view("/v1/views/keys/fw-gw/custody"), *ops, *o;
    size_t i;
    json_int_t ok = 0, denied = 0;

    (void)state;
    assert_true(json_is_false(json_object_get(json_object_get(v, "hsm"), "extractable")));
    assert_non_null(find(json_object_get(v, "tokens"), "sub", "ci:gateway"));
    ops = json_object_get(v, "operations");
    json_array_foreach(ops, i, o)
    {
        const char *sub = json_string_value(json_object_get(o, "sub"));
        const char *op = json_string_value(json_object_get(o, "op"));
        if (sub == NULL || strcmp(sub, "ci:gateway") != 0 || strcmp(op, "sign") != 0)
            continue;
        if (strcmp(json_string_value(json_object_get(o, "outcome")), "ok") == 0)
            ok += json_integer_value(json_object_get(o, "count"));
        else
            denied += json_integer_value(json_object_get(o, "count"));
    }
    /* exactly the calls made: two builds signed, one rebuild refused */
    assert_int_equal(ok, 2);
    assert_int_equal(denied, 1);
    /* the principal with a live grant comes first */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(v, "principals"), 0), "sub")),
                        "ci:gateway");
    json_decref(v);
}

static void test_view_exposure(void **state)
{
    json_t *v = get_view("/v1/views/exposure?component=openssl&versions=3.0.1&fixed_version=1.1.0"
                         "&product=gateway"),
           *builds, *dev, *rem, *pending;
    const char *want[] = {"EU-2", "EU-3", "US-2"};

    (void)state;
    builds = json_object_get(v, "builds");
    assert_int_equal(json_array_size(builds), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(builds, 0), "version")),
                        "1.0.0");
    dev = json_object_get(v, "devices");
    /* still on 1.0.0: EU-2 (its update failed), EU-3, US-2 */
    assert_int_equal(json_integer_value(json_object_get(dev, "current")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(dev, "by_market"), "DE")),
                     2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(dev, "by_market"), "FR")),
                     2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(dev, "by_market"), "US")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(dev, "eu")), 2);
    rem = json_object_get(v, "remediation");
    assert_int_equal(json_integer_value(json_object_get(rem, "affected")), 5);
    assert_int_equal(json_integer_value(json_object_get(rem, "updated")), 2);
    assert_int_equal(json_integer_value(json_object_get(rem, "pending")), 3);
    pending = json_object_get(json_object_get(v, "pending_devices"), "items");
    assert_int_equal(json_array_size(pending), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(pending, i), "serial")), want[i]);
    json_decref(v);
    /* the fixed version's component is not exposed; a purl prefix finds the same build */
    v = get_view("/v1/views/exposure?component=openssl&versions=3.0.13");
    assert_int_equal(json_array_size(json_object_get(v, "builds")), 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(v, "builds"), 0), "version")),
                        "1.1.0");
    json_decref(v);
    v = get_view("/v1/views/exposure?purl=pkg:generic/openssl@3.0.1&product=gateway");
    assert_true(json_array_size(json_object_get(v, "builds")) >= 1);
    json_decref(v);
}

static void test_view_device(void **state)
{
    json_t *v = get_view("/v1/views/devices/EU-1?product=gateway"), *fw, *events, *e;
    size_t i;

    (void)state;
    assert_string_equal(json_string_value(json_object_get(v, "batch")), "b-eu");
    assert_string_equal(json_string_value(json_object_get(v, "factory")), "factory:acme");
    assert_int_equal(json_array_size(json_object_get(v, "markets")), 2);
    assert_int_equal(json_array_size(json_object_get(v, "certificates")), 1);
    assert_string_equal(json_string_value(json_object_get(v, "current_firmware")), "1.1.0");
    fw = json_object_get(v, "firmware");
    assert_int_equal(json_array_size(fw), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(fw, 0), "status")),
                        "factory");
    assert_string_equal(json_string_value(json_object_get(json_array_get(fw, 1), "status")),
                        "installed");
    events = json_object_get(v, "events");
    json_array_foreach(events, i, e)
    {
        assert_true(json_integer_value(json_object_get(e, "audit_seq")) > 0);
    }
    assert_int_equal(json_array_size(events), 2);
    json_decref(v);
    v = get_view("/v1/views/devices/EU-3");
    assert_int_equal(json_array_size(json_object_get(v, "debug_auth")), 1);
    /* the fact and the signed log entry behind it are the same */
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(v, "debug_auth"), 0), "audit_seq")),
                     unlock_seq);
    json_decref(v);
}

static void test_view_refusals(void **state)
{
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "GET", "/v1/views/products/gateway", ci, NULL);
    assert_int_equal(r.status, 403);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/views/products/no-such-product", reader, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/views/keys/no-such-key/custody", reader, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/views/devices/NOPE-1", reader, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/views/exposure", reader, NULL);
    assert_int_equal(r.status, 400);
    kbt_resp_free(&r);
}

/* The audit entry that recorded a response. */
static json_t *entry_of(long seq)
{
    json_t *all = kbt_audit_all(env), *e;
    size_t i;

    json_array_foreach(all, i, e)
    {
        if (json_integer_value(json_object_get(e, "seq")) == seq) {
            json_incref(e);
            json_decref(all);
            return e;
        }
    }
    json_decref(all);
    fail_msg("no audit entry %ld", seq);
    return NULL;
}

/* Markets are countries: the EU, its own code for Greece, user-assigned and lowercase codes,
 * and a repeated one, are refused naming the element, nothing is created, and each refusal
 * is in the log. */
static void test_batch_markets(void **state)
{
    static const char *const bad[] = {"[\"EU\"]", "[\"DE\",\"EL\"]", "[\"XX\"]", "[\"de\"]",
                                      "[\"UK\"]", "[\"FR\",\"FR\"]", "[1]",      "[]"};
    static const char *const field[] = {"market[0]", "market[1]", "market[0]", "market[0]",
                                        "market[0]", "market[1]", "market[0]", "market"};
    char body[256];
    kbt_resp r;
    json_t *e;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body),
                 "{\"batch\":\"b-bad\",\"product\":\"gateway\",\"factory\":\"factory:acme\","
                 "\"quantity\":5,\"market\":%s}",
                 bad[i]);
        r = kbt_call(env, "POST", "/v1/batches", env->admin, body);
        if (r.status != 400 || strstr(kbt_err_message(&r), field[i]) != kbt_err_message(&r))
            fail_msg("market %s: %ld %s", bad[i], r.status, r.body);
        e = entry_of(r.audit_seq);
        assert_string_equal(json_string_value(json_object_get(e, "outcome")), "denied");
        assert_null(json_object_get(e, "effects"));
        json_decref(e);
        kbt_resp_free(&r);
    }
    r = kbt_call(env, "GET", "/v1/batches/b-bad", reader, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    /* Greece is GR */
    must(kbt_call(env, "POST", "/v1/batches", env->admin,
                  "{\"batch\":\"b-gr\",\"product\":\"gateway\",\"factory\":\"factory:acme\","
                  "\"quantity\":5,\"market\":[\"GR\"]}"),
         201, "Greek batch");
}

static void escape_into(char *out, size_t n, const char *s)
{
    size_t o = 0;

    for (; *s != '\0' && o + 4 < n; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
            strchr("-._", *s) != NULL)
            out[o++] = *s;
        else
            o += (size_t)snprintf(out + o, n - o, "%%%02X", (unsigned char)*s);
    }
    out[o] = '\0';
}

/* GET /v1/views/exposure?<name>=<value>&... with every value escaped; n pairs. */
static kbt_resp exposure_get(size_t n, ...)
{
    char path[2048] = "/v1/views/exposure", v[1024];
    va_list ap;

    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        const char *name = va_arg(ap, const char *), *value = va_arg(ap, const char *);

        escape_into(v, sizeof(v), value);
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "%c%s=%s", i == 0 ? '?' : '&',
                 name, v);
    }
    va_end(ap);
    return kbt_call(env, "GET", path, reader, NULL);
}

static size_t builds_of(kbt_resp *r)
{
    size_t n;

    if (r->status != 200)
        fail_msg("exposure: %ld %s", r->status, r->body);
    n = json_array_size(json_object_get(r->json, "builds"));
    kbt_resp_free(r);
    return n;
}

/* A build with Debian and npm packages, asked for by package, list and range. */
static void test_exposure_packages(void **state)
{
    kbt_resp r;

    (void)state;
    must(kbt_call(env, "POST", "/v1/sign", ci,
                  "{\"key\":\"fw-gw\",\"digest\":\"20" ZERO62 "\",\"artifact\":{\"product\":"
                  "\"gateway\",\"version\":\"2.0.0\"},\"sbom\":{\"format\":\"cyclonedx\","
                  "\"components\":[{\"name\":\"openssl\",\"version\":\"3.0.11-1~deb12u2\","
                  "\"purl\":\"pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64\"},"
                  "{\"name\":\"lodash.merge\",\"version\":\"4.6.2\","
                  "\"purl\":\"pkg:npm/lodash.merge@4.6.2\"}]}}"),
         200, "build 2.0.0");
    /* a purl that does not parse would hide its component from every question: refused */
    r = kbt_call(env, "POST", "/v1/sign", ci,
                 "{\"key\":\"fw-gw\",\"digest\":\"21" ZERO62 "\",\"artifact\":{\"product\":"
                 "\"gateway\",\"version\":\"2.0.1\"},\"sbom\":{\"format\":\"cyclonedx\","
                 "\"components\":[{\"name\":\"zlib\",\"purl\":\"pkg:generic/zlib@1.3.1\"},"
                 "{\"name\":\"openssl\",\"purl\":\"pkg:deb/openssl@3.0.11\"}]}}");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "components[1].purl: "));
    kbt_resp_free(&r);
    /* no longer name, no prefix */
    r = exposure_get(1, "purl", "pkg:npm/lodash");
    assert_int_equal(builds_of(&r), 0);
    r = exposure_get(1, "purl", "pkg:npm/lodash.merge");
    assert_int_equal(builds_of(&r), 1);
    r = exposure_get(1, "purl", "pkg:generic/openssl@3.0");
    assert_int_equal(builds_of(&r), 0);
    /* Debian versions in a list and in a range, by dpkg's order */
    r = exposure_get(2, "purl", "pkg:deb/debian/openssl", "versions", "3.0.11-1~deb12u2");
    assert_int_equal(builds_of(&r), 1);
    r = exposure_get(2, "purl", "pkg:deb/debian/openssl", "vers", "vers:deb/<3.0.11-1~deb12u2");
    assert_int_equal(builds_of(&r), 0);
    /* "~deb12u2" sorts before the release it backports */
    r = exposure_get(2, "purl", "pkg:deb/debian/openssl", "vers", "vers:deb/>=3.0.0|<3.0.11-1");
    assert_int_equal(builds_of(&r), 1);
    r = exposure_get(2, "purl", "pkg:deb/debian/openssl", "vers", "vers:deb/>=3.0.11-1");
    assert_int_equal(builds_of(&r), 0);
    /* by name with a range of the generic scheme */
    r = exposure_get(2, "component", "openssl", "vers", "vers:generic/<3.0.13");
    assert_int_equal(builds_of(&r), 2); /* 1.0.0 (3.0.1) and 2.0.0 (3.0.11-1~deb12u2) */
    /* bad questions are named */
    r = exposure_get(1, "purl", "pkg:deb/openssl");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "purl:"));
    kbt_resp_free(&r);
    r = exposure_get(2, "purl", "pkg:deb/debian/openssl", "vers", "vers:deb/<=1.0|<2.0");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "vers:"));
    kbt_resp_free(&r);
    r = exposure_get(2, "component", "openssl", "versions", "3.0.1,,3.0.2");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "versions:"));
    kbt_resp_free(&r);
    r = exposure_get(2, "component", "openssl", "devices", "yes");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "devices:"));
    kbt_resp_free(&r);
}

/* Every affected device, paged, and the remediation per member state. */
static void test_exposure_devices_and_markets(void **state)
{
    kbt_resp r;
    const json_t *items, *rem;

    (void)state;
    r = exposure_get(6, "component", "openssl", "versions", "3.0.1", "fixed_version", "1.1.0",
                     "devices", "true", "limit", "3", "product", "gateway");
    assert_int_equal(r.status, 200);
    items = json_object_get(json_object_get(r.json, "affected_devices"), "items");
    assert_int_equal(json_array_size(items), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "serial")),
                        "EU-1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "status")),
                        "updated");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(r.json, "affected_devices"), "next_after")),
                        "EU-3");
    rem = json_object_get(r.json, "remediation");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(rem, "by_market"), "DE"), "pending")),
                     2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(rem, "eu"), "updated")), 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(rem, "by_market"), "US"), "updated")),
                     1);
    kbt_resp_free(&r);
    r = exposure_get(7, "component", "openssl", "versions", "3.0.1", "fixed_version", "1.1.0",
                     "devices", "true", "limit", "3", "product", "gateway", "after", "EU-3");
    items = json_object_get(json_object_get(r.json, "affected_devices"), "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 1), "serial")),
                        "US-2");
    kbt_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view_product),
        cmocka_unit_test(test_view_custody),
        cmocka_unit_test(test_view_exposure),
        cmocka_unit_test(test_view_device),
        cmocka_unit_test(test_view_refusals),
        cmocka_unit_test(test_batch_markets),
        cmocka_unit_test(test_exposure_packages),
        cmocka_unit_test(test_exposure_devices_and_markets),
    };

    return cmocka_run_group_tests_name("custody views", tests, setup, teardown);
}
