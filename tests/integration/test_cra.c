/*
 * test_cra.c - the Cyber Resilience Act over real HTTP, on a product history built through
 * the API: a device CA certified by a root, builds whose SBOMs carry Debian's openssl in
 * three versions, batches for three member states and the US, devices, an OTA campaign.
 * Then what a PSIRT does on a Saturday morning: the product's support period and what lapses
 * within it, an incident with its exposure, its clocks, its fix, its three reports (checked
 * as CSAF 2.0 VEX by the BSI's validator), its evidence bundle, and every refusal on the way
 * named, recorded and leaving nothing behind.
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

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "harness.h"

#define ZERO62 "00000000000000000000000000000000000000000000000000000000000000"

static kbt_env *env;
static char *ci, *ota, *reader, *other_admin;
static char aware[KBR_TIME_LEN];

static void must(kbt_resp r, long status, const char *what)
{
    if (r.status != status)
        fail_msg("%s: expected %ld, got %ld %s", what, status, r.status, r.body);
    kbt_resp_free(&r);
}

static kbt_resp post(const char *path, const char *tok, const char *body)
{
    return kbt_call(env, "POST", path, tok != NULL ? tok : env->admin, body);
}

static kbt_resp get(const char *path, const char *tok)
{
    return kbt_call(env, "GET", path, tok != NULL ? tok : env->admin, NULL);
}

/* The response is a 4xx naming field, and its audit entry a denial that changed nothing. */
static void refused(kbt_resp r, long status, const char *field)
{
    json_t *all = NULL, *e;
    size_t i;
    bool found = false;

    if (r.status != status || strstr(kbt_err_message(&r), field) == NULL)
        fail_msg("expected %ld naming %s, got %ld %s", status, field, r.status, r.body);
    all = kbt_audit_all(env);
    json_array_foreach(all, i, e)
    {
        if (json_integer_value(json_object_get(e, "seq")) != r.audit_seq)
            continue;
        found = true;
        assert_string_equal(json_string_value(json_object_get(e, "outcome")), "denied");
        assert_null(json_object_get(e, "effects"));
        assert_null(json_object_get(e, "documents"));
    }
    if (!found)
        fail_msg("no audit entry %ld for the refusal", r.audit_seq);
    json_decref(all);
    kbt_resp_free(&r);
}

static void sign(const char *version, const char *openssl, unsigned char fill)
{
    char body[1024];

    snprintf(body, sizeof(body),
             "{\"key\":\"fw-lk\",\"digest\":\"%02x" ZERO62 "\",\"artifact\":{\"product\":\"lock\","
             "\"version\":\"%s\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":["
             "{\"name\":\"openssl\",\"version\":\"%s\",\"purl\":\"pkg:deb/debian/openssl@%s?"
             "arch=arm64\"},{\"name\":\"zlib\",\"version\":\"1.3\",\"purl\":\"pkg:generic/"
             "zlib@1.3\"}]}}",
             fill, version, openssl, openssl);
    must(post("/v1/sign", ci, body), 200, version);
}

static void provision(const char *factory, const char *serial, const char *batch,
                      const char *firmware)
{
    char *csr = kbt_csr_pem(NULL, NULL);
    json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "key", "ca-lk", "csr_pem", csr,
                             "device", "serial", serial, "product", "lock", "batch", batch,
                             "firmware_version", firmware);

    must(kbt_callj(env, "POST", "/v1/provision", factory, body), 201, serial);
    json_decref(body);
    free(csr);
}

static void install(const char *version, const char *serial)
{
    char at[KBR_TIME_LEN];
    json_t *body;

    kbr_time_fmt(time(NULL), at);
    body = json_pack("{s:s,s:s,s:s,s:[{s:s,s:s,s:s}]}", "product", "lock", "version", version,
                     "campaign", "fix-openssl", "results", "device", serial, "status", "installed",
                     "at", at);
    must(kbt_callj(env, "POST", "/v1/ota/deployments", ota, body), 200, "OTA report");
    json_decref(body);
}

/* The device CA's certificate, issued by a root whose certificate ends in a year. */
static void ca_certificate(void)
{
    EVP_PKEY *root_key = EVP_EC_gen("P-256"), *pub = kbt_pubkey(env, "ca-lk");
    X509 *root = kbt_ca_cert(root_key, "Lock Root CA", "01", root_key, NULL);
    X509 *ca = kbt_ca_cert(pub, "Lock Device CA", "7F02", root_key, root);
    char *root_pem = kbt_x509_pem(root), *ca_pem = kbt_x509_pem(ca);
    json_t *body = json_pack("{s:s,s:s}", "pem", ca_pem, "chain_pem", root_pem);

    must(kbt_callj(env, "POST", "/v1/keys/ca-lk/certificate", env->admin, body), 201,
         "CA certificate");
    json_decref(body);
    free(root_pem);
    free(ca_pem);
    X509_free(ca);
    X509_free(root);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(root_key);
}

static int setup(void **state)
{
    char *factory;

    (void)state;
    env = kbt_start(NULL);
    kbt_key(env, "ca-lk", "device-identity-ca", "ecdsa-p256", "lock");
    kbt_key(env, "fw-lk", "firmware-signing", "ecdsa-p256", "lock");
    kbt_key(env, "fw-cam", "firmware-signing", "ecdsa-p256", "cam");
    ca_certificate();
    must(post("/v1/batches", NULL,
              "{\"batch\":\"lk-eu\",\"product\":\"lock\",\"factory\":\"factory:acme\","
              "\"quantity\":10,\"market\":[\"DE\",\"FR\"]}"),
         201, "EU batch");
    must(post("/v1/batches", NULL,
              "{\"batch\":\"lk-gr\",\"product\":\"lock\",\"factory\":\"factory:acme\","
              "\"quantity\":10,\"market\":[\"GR\"]}"),
         201, "Greek batch");
    must(post("/v1/batches", NULL,
              "{\"batch\":\"lk-us\",\"product\":\"lock\",\"factory\":\"factory:acme\","
              "\"quantity\":10,\"market\":[\"US\"]}"),
         201, "US batch");
    ci = kbt_token(env, "{\"sub\":\"ci:lock\",\"ops\":[\"sign\"],\"ttl\":3600}");
    ota = kbt_token(env, "{\"sub\":\"ota:lock\",\"ops\":[\"ota-report\"],\"ttl\":3600}");
    reader = kbt_token(env, "{\"sub\":\"security:psirt-reader\",\"ops\":[\"read\"],\"ttl\":3600}");
    other_admin = kbt_token(env, "{\"sub\":\"security:cam-team\",\"ops\":[\"admin\"],"
                                 "\"products\":[\"cam\"],\"orphan\":true,\"ttl\":3600}");
    factory = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],\"ttl\":3600}");
    sign("1.0.0", "3.0.11-1~deb12u1", 0x30);
    sign("1.1.0", "3.0.11-1~deb12u2", 0x31);
    sign("1.2.0", "3.0.15-1~deb12u1", 0x32);
    provision(factory, "LK-DE-1", "lk-eu", "1.0.0");
    provision(factory, "LK-DE-2", "lk-eu", "1.0.0");
    provision(factory, "LK-GR-1", "lk-gr", "1.1.0");
    provision(factory, "LK-US-1", "lk-us", "1.0.0");
    provision(factory, "LK-US-2", "lk-us", "1.2.0");
    kbr_time_fmt(time(NULL) - 3 * 3600, aware);
    free(factory);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(ci);
    free(ota);
    free(reader);
    free(other_admin);
    kbt_free(env);
    return 0;
}

static const json_t *item_of(const json_t *items, const char *kind)
{
    const json_t *it;
    size_t i;

    json_array_foreach(items, i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "kind")), kind) == 0)
            return it;
    }
    return NULL;
}

/* ---- products ---- */

static void test_products(void **state)
{
    kbt_resp r;
    const json_t *period, *cont;

    (void)state;
    refused(post("/v1/products", NULL,
                 "{\"product\":\"lock\",\"placed_on_market\":\"2026-02-30\","
                 "\"support_until\":\"2031-12-31\"}"),
            400, "placed_on_market");
    refused(post("/v1/products", NULL,
                 "{\"product\":\"lock\",\"placed_on_market\":\"2026-01-01\","
                 "\"support_until\":\"31/12/2031\"}"),
            400, "support_until");
    refused(post("/v1/products", NULL,
                 "{\"product\":\"lock\",\"placed_on_market\":\"2026-01-01\","
                 "\"support_until\":\"2025-12-31\"}"),
            400, "support_until");
    refused(post("/v1/products", NULL,
                 "{\"product\":\"lock\",\"placed_on_market\":\"2026-01-01\","
                 "\"support_until\":\"2031-12-31\",\"eol\":\"2032-01-01\"}"),
            400, "eol");
    refused(post("/v1/products", other_admin,
                 "{\"product\":\"lock\",\"placed_on_market\":\"2026-01-01\","
                 "\"support_until\":\"2031-12-31\"}"),
            403, "product");
    refused(get("/v1/products/lock", NULL), 404, "product lock");
    /* three years: allowed only for a product in use that long, so flagged */
    r = post("/v1/products", NULL,
             "{\"product\":\"lock\",\"placed_on_market\":\"2026-01-01\","
             "\"support_until\":\"2028-12-31\"}");
    assert_int_equal(r.status, 201);
    period = json_object_get(r.json, "support_period");
    assert_int_equal(json_integer_value(json_object_get(period, "years")), 3);
    assert_true(json_is_true(json_object_get(period, "under_five_years")));
    assert_true(json_integer_value(json_object_get(r.json, "audit_seq")) == r.audit_seq);
    kbt_resp_free(&r);
    refused(post("/v1/products", NULL,
                 "{\"product\":\"lock\",\"placed_on_market\":\"2026-01-01\","
                 "\"support_until\":\"2028-06-30\"}"),
            409, "support_until");
    refused(post("/v1/products", NULL,
                 "{\"product\":\"lock\",\"placed_on_market\":\"2025-01-01\","
                 "\"support_until\":\"2029-12-31\"}"),
            409, "placed_on_market");
    /* extended to ten years: past the day its algorithms lapse */
    r = post("/v1/products", NULL,
             "{\"product\":\"lock\",\"placed_on_market\":\"2026-01-01\","
             "\"support_until\":\"2035-12-31\"}");
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    r = post("/v1/products", NULL,
             "{\"product\":\"lock\",\"placed_on_market\":\"2026-01-01\","
             "\"support_until\":\"2036-06-30\"}");
    assert_int_equal(r.status, 200);
    assert_false(json_is_true(
        json_object_get(json_object_get(r.json, "support_period"), "under_five_years")));
    kbt_resp_free(&r);
    r = get("/v1/products/lock", reader);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "support_until")), "2036-06-30");
    kbt_resp_free(&r);
    /* View A: what the lock depends on that lapses before 2036-06-30 */
    r = get("/v1/views/products/lock", reader);
    assert_int_equal(r.status, 200);
    cont = json_object_get(r.json, "continuity");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "support"), "support_until")),
        "2036-06-30");
    assert_non_null(item_of(cont, "key-certificate")); /* the device CA's, one year */
    assert_string_equal(
        json_string_value(json_object_get(item_of(cont, "issuer-certificate"), "subject")),
        "CN=Lock Root CA");
    assert_non_null(item_of(cont, "device-certificates"));
    assert_string_equal(
        json_string_value(json_object_get(item_of(cont, "algorithm"), "usable_until")),
        "2035-12-31");
    kbt_resp_free(&r);
}

/* ---- incidents ---- */

#define INCIDENT(id, extra)                                                                        \
    "{\"id\":\"" id "\",\"title\":\"openssl X.509 name constraints\",\"component\":\"openssl\","   \
    "\"purl\":\"pkg:deb/debian/openssl\",\"vers\":\"vers:deb/<3.0.11-1~deb12u3\","                 \
    "\"severity\":\"high\"" extra "}"

static void incident_refusals(void)
{
    char body[1024], future[KBR_TIME_LEN];

    kbr_time_fmt(time(NULL) + 3600, future);
    snprintf(body, sizeof(body), INCIDENT("INC-X", ",\"aware_at\":\"%s\""), aware);
    refused(post("/v1/incidents", NULL, body), 400, "actively_exploited");
    snprintf(body, sizeof(body), INCIDENT("INC-X", ",\"aware_at\":\"%s\",\"actively_exploited\":1"),
             aware);
    refused(post("/v1/incidents", NULL, body), 400, "actively_exploited");
    snprintf(body, sizeof(body),
             INCIDENT("INC-X", ",\"aware_at\":\"%s\",\"actively_exploited\":true"), future);
    refused(post("/v1/incidents", NULL, body), 400, "aware_at");
    refused(post("/v1/incidents", NULL,
                 INCIDENT("INC-X", ",\"aware_at\":\"yesterday\",\"actively_exploited\":true")),
            400, "aware_at");
    snprintf(body, sizeof(body),
             "{\"id\":\"INC-X\",\"title\":\"t\",\"component\":\"openssl\",\"purl\":"
             "\"pkg:deb/debian/openssl\",\"vers\":\"vers:deb/<3.0|<2.0\",\"severity\":\"high\","
             "\"aware_at\":\"%s\",\"actively_exploited\":true}",
             aware);
    refused(post("/v1/incidents", NULL, body), 400, "vers");
    snprintf(body, sizeof(body),
             "{\"id\":\"INC-X\",\"title\":\"t\",\"component\":\"openssl\",\"severity\":\"urgent\","
             "\"aware_at\":\"%s\",\"actively_exploited\":true}",
             aware);
    refused(post("/v1/incidents", NULL, body), 400, "severity");
    snprintf(body, sizeof(body),
             "{\"id\":\"INC-X\",\"title\":\"t\",\"component\":\"openssl\",\"severity\":\"low\","
             "\"aware_at\":\"%s\",\"actively_exploited\":true,\"cve\":\"CVE-24-1\"}",
             aware);
    refused(post("/v1/incidents", NULL, body), 400, "cve");
    snprintf(body, sizeof(body),
             "{\"id\":\"INC-X\",\"title\":\"t\",\"component\":\"openssl\",\"severity\":\"low\","
             "\"aware_at\":\"%s\",\"actively_exploited\":true,\"versions\":[\"3.0\",\"\"]}",
             aware);
    refused(post("/v1/incidents", NULL, body), 400, "versions[1]");
    /* a team admin records incidents of its own products only */
    snprintf(body, sizeof(body),
             INCIDENT("INC-X", ",\"aware_at\":\"%s\",\"actively_exploited\":true,"
                               "\"product\":\"lock\""),
             aware);
    refused(post("/v1/incidents", other_admin, body), 403, "product");
    refused(get("/v1/incidents/INC-X", NULL), 404, "incident INC-X");
}

static void test_incident_create(void **state)
{
    char body[1024];
    kbt_resp r;
    const json_t *exp, *dl, *states;

    (void)state;
    incident_refusals();
    snprintf(body, sizeof(body),
             INCIDENT("INC-7", ",\"aware_at\":\"%s\",\"actively_exploited\":true,"
                               "\"product\":\"lock\",\"cve\":\"CVE-2024-0727\""),
             aware);
    r = post("/v1/incidents", NULL, body);
    if (r.status != 201)
        fail_msg("incident: %ld %s", r.status, r.body);
    /* 1.0.0 (deb12u1) and 1.1.0 (deb12u2), not 1.2.0 (3.0.15) */
    exp = json_object_get(r.json, "exposure_at_awareness");
    assert_int_equal(json_array_size(json_object_get(exp, "builds")), 2);
    states = json_object_get(exp, "member_states");
    assert_int_equal(json_array_size(states), 3);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(exp, "devices"), "affected"), "total")),
                     4);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(exp, "devices"), "affected"), "eu")),
                     3);
    dl = json_object_get(r.json, "deadlines");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(dl, "early_warning"), "status")), "open");
    assert_true(json_is_null(json_object_get(json_object_get(dl, "final_report"), "due")));
    kbt_resp_free(&r);
    refused(post("/v1/incidents", NULL, body), 409, "id");
}

static json_t *incident(const char *tok)
{
    kbt_resp r = get("/v1/incidents/INC-7", tok);
    json_t *v;

    if (r.status != 200)
        fail_msg("GET incident: %ld %s", r.status, r.body);
    v = json_incref(r.json);
    kbt_resp_free(&r);
    return v;
}

static const char *status_of(const json_t *v, const char *stage)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(v, "deadlines"), stage), "status"));
}

/* The SHA-256 of the document of the latest report, and that its bytes are it. */
static void report_bytes_match(const char *stage, const char *path)
{
    json_t *v = incident(reader), *rep = NULL, *x;
    kbt_resp r = get(path, reader);
    char sha[65];
    size_t i;

    assert_int_equal(r.status, 200);
    json_array_foreach(json_object_get(v, "reports"), i, x)
    {
        if (strcmp(json_string_value(json_object_get(x, "stage")), stage) == 0)
            rep = x;
    }
    assert_non_null(rep);
    kbr_sha256_hex(r.body, strlen(r.body), sha);
    assert_string_equal(sha, json_string_value(json_object_get(rep, "sha256")));
    kbt_resp_free(&r);
    json_decref(v);
}

static void test_incident_reports_and_fix(void **state)
{
    kbt_resp r;
    json_t *v;
    const json_t *rem, *de;
    char future[KBR_TIME_LEN];

    (void)state;
    refused(post("/v1/incidents/INC-7/reports", NULL, "{\"stage\":\"final\"}"), 409, "stage");
    refused(post("/v1/incidents/INC-7/reports", NULL, "{\"stage\":\"late\"}"), 400, "stage");
    refused(post("/v1/incidents/INC-7/reports", other_admin, "{\"stage\":\"early-warning\"}"), 403,
            "incident INC-7");
    r = post("/v1/incidents/INC-7/reports", NULL,
             "{\"stage\":\"early-warning\",\"notes\":\"Seen in the wild since Friday.\"}");
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "stage")), "early-warning");
    assert_int_equal(json_array_size(json_object_get(r.json, "member_states")), 3);
    assert_true(json_is_true(json_object_get(r.json, "actively_exploited")));
    kbt_resp_free(&r);
    report_bytes_match("early-warning", "/v1/incidents/INC-7/reports/early-warning");
    r = post("/v1/incidents/INC-7/reports", NULL, "{\"stage\":\"notification\"}");
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "severity")), "high");
    assert_int_equal(json_array_size(json_object_get(r.json, "builds")), 2);
    kbt_resp_free(&r);
    v = incident(reader);
    assert_string_equal(status_of(v, "early_warning"), "submitted");
    assert_string_equal(status_of(v, "notification"), "submitted");
    json_decref(v);

    /* the fix: a build of the lock this broker signed, that does not carry it */
    kbr_time_fmt(time(NULL) + 3600, future);
    refused(post("/v1/incidents/INC-7/fix", NULL, "{\"fixed_version\":\"9.9.9\"}"), 404,
            "fixed_version");
    refused(post("/v1/incidents/INC-7/fix", NULL, "{\"fixed_version\":\"1.1.0\"}"), 409,
            "fixed_version");
    refused(post("/v1/incidents/INC-7/fix", NULL,
                 "{\"fixed_version\":\"1.2.0\",\"available_at\":"
                 "\"2001-01-01T00:00:00Z\"}"),
            400, "available_at");
    refused(post("/v1/incidents/NOPE/fix", NULL, "{\"fixed_version\":\"1.2.0\"}"), 404,
            "incident NOPE");
    r = post("/v1/incidents/INC-7/fix", NULL, "{\"fixed_version\":\"1.2.0\"}");
    assert_int_equal(r.status, 200);
    assert_non_null(json_string_value(json_object_get(
        json_object_get(json_object_get(r.json, "deadlines"), "final_report"), "due")));
    kbt_resp_free(&r);
    refused(post("/v1/incidents/INC-7/fix", NULL, "{\"fixed_version\":\"1.2.0\"}"), 409,
            "fixed_version");

    /* the campaign: a German and the American device update */
    install("1.2.0", "LK-DE-1");
    install("1.2.0", "LK-US-1");
    v = incident(reader);
    rem = json_object_get(json_object_get(v, "now"), "remediation");
    assert_int_equal(json_integer_value(json_object_get(rem, "affected")), 4);
    assert_int_equal(json_integer_value(json_object_get(rem, "updated")), 2);
    de = json_object_get(json_object_get(rem, "by_market"), "DE");
    assert_int_equal(json_integer_value(json_object_get(de, "pending")), 1);
    /* the last day of the series is now */
    {
        const json_t *ot = json_object_get(v, "over_time");
        size_t last = json_array_size(json_object_get(ot, "days")) - 1;
        assert_int_equal(json_integer_value(json_array_get(
                             json_object_get(json_object_get(ot, "total"), "updated"), last)),
                         2);
        assert_int_equal(
            json_integer_value(json_array_get(
                json_object_get(json_object_get(json_object_get(ot, "by_market"), "GR"), "pending"),
                last)),
            1);
    }
    json_decref(v);
    r = post("/v1/incidents/INC-7/reports", NULL, "{\"stage\":\"final\"}");
    assert_int_equal(r.status, 201);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "fix"), "fixed_version")),
        "1.2.0");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "residual_risk"),
                                                        "pending_devices")),
                     2);
    kbt_resp_free(&r);
    v = incident(reader);
    assert_string_equal(status_of(v, "final_report"), "submitted");
    json_decref(v);
}

/* ---- CSAF ---- */

static int cli(const char *args, char **out)
{
    char cmd[4096];

    snprintf(cmd, sizeof(cmd), "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' %s 2>&1",
             env->url, env->admin, env->bin_dir, args);
    return kbt_sh(env, cmd, out);
}

static int validate(const char *file, char **out)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "node '%s/validate.mjs' '%s' 2>&1", KBR_CSAF_DIR, file);
    return kbt_sh(env, cmd, out);
}

static void save(const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_csaf(void **state)
{
    static const char *const stages[] = {"early-warning", "notification", "final"};
    char path[256], file[64], *out = NULL;
    kbt_resp r;
    json_t *doc;

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "/v1/incidents/INC-7/reports/%s?format=csaf", stages[i]);
        r = get(path, reader);
        if (r.status != 200)
            fail_msg("%s: %ld %s", path, r.status, r.body);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(r.json, "document"), "category")),
            "csaf_vex");
        snprintf(file, sizeof(file), "%s.csaf.json", stages[i]);
        save(file, r.body);
        if (validate(file, &out) != 0)
            fail_msg("%s is not valid CSAF 2.0: %s", file, out);
        free(out);
        kbt_resp_free(&r);
    }
    /* the validator catches what it should: the same document without its product tree */
    r = get("/v1/incidents/INC-7/reports/final?format=csaf", reader);
    doc = json_incref(r.json);
    assert_true(json_is_array(
        json_object_get(json_object_get(json_array_get(json_object_get(doc, "vulnerabilities"), 0),
                                        "product_status"),
                        "fixed")));
    json_object_del(doc, "product_tree");
    kbt_resp_free(&r);
    {
        char *text = json_dumps(doc, 0);
        save("broken.csaf.json", text);
        free(text);
    }
    json_decref(doc);
    assert_int_not_equal(validate("broken.csaf.json", &out), 0);
    assert_non_null(strstr(out, "broken.csaf.json"));
    free(out);
    refused(get("/v1/incidents/INC-7/reports/final?format=pdf", reader), 400, "format");
}

/* ---- the CLI ---- */

static void expect_cli(const char *args, int status, const char *says)
{
    char *out = NULL;
    int rc = cli(args, &out);

    if (rc != status || strstr(out, says) == NULL)
        fail_msg("keybroker %s: exit %d, expected %d saying \"%s\":\n%s", args, rc, status, says,
                 out);
    free(out);
}

static void test_cli(void **state)
{
    char *out = NULL, path[512], sha[65], *doc = NULL;
    json_t *v;
    const json_t *rep, *x;
    FILE *f;
    size_t i, n;

    (void)state;
    expect_cli("product show lock", 0, "2036-06-30");
    expect_cli("incident list", 0, "INC-7");
    expect_cli("incident list", 0, "submitted");
    expect_cli("incident show INC-7", 0, "early warning (24 h)");
    expect_cli("incident show INC-7", 0, "remediation now: 4 affected, 2 updated, 2 pending");
    expect_cli("view exposure --purl pkg:deb/debian/openssl --vers 'vers:deb/<3.0.11-1~deb12u3' "
               "--fixed-version 1.2.0 --eu --by-market",
               0, "remediation in the EU to 1.2.0: 3 affected, 1 updated, 2 pending");
    expect_cli("incident create INC-9 --title t --component openssl --aware-at "
               "2026-01-01T00:00:00Z --severity low --actively-exploited maybe",
               2, "--actively-exploited yes|no");
    expect_cli("incident fix INC-7 --fixed-version 1.2.0", 1, "conflict");
    /* the chart */
    expect_cli("incident chart INC-7 --out chart.svg", 0, "chart.svg: remediation of incident");
    snprintf(path, sizeof(path), "%s/chart.svg", env->dir);
    f = fopen(path, "r");
    assert_non_null(f);
    doc = calloc(1, 1 << 20);
    n = fread(doc, 1, (1 << 20) - 1, f);
    fclose(f);
    assert_true(n > 0 && strncmp(doc, "<?xml", 5) == 0);
    assert_non_null(strstr(doc, ">DE<"));
    assert_non_null(strstr(doc, ">GR<"));
    assert_non_null(strstr(doc, "</svg>"));
    free(doc);
    /* the report as kept: its bytes are what the log names */
    expect_cli("incident document INC-7 --stage final --out final.json", 0, "");
    snprintf(path, sizeof(path), "%s/final.json", env->dir);
    f = fopen(path, "r");
    assert_non_null(f);
    doc = calloc(1, 1 << 20);
    n = fread(doc, 1, (1 << 20) - 1, f);
    fclose(f);
    kbr_sha256_hex(doc, n, sha);
    free(doc);
    v = incident(reader);
    rep = NULL;
    json_array_foreach(json_object_get(v, "reports"), i, x)
    {
        if (strcmp(json_string_value(json_object_get(x, "stage")), "final") == 0)
            rep = x;
    }
    assert_non_null(rep);
    assert_string_equal(sha, json_string_value(json_object_get(rep, "sha256")));
    json_decref(v);
    expect_cli("incident document INC-7 --stage notification --csaf --out n.csaf.json", 0, "");
    if (validate("n.csaf.json", &out) != 0)
        fail_msg("the CLI's CSAF: %s", out);
    free(out);
    expect_cli("evidence incident INC-7 --out cli.bundle.json", 0, "entries");
}

/* ---- reading, scope, evidence, and the store against its log ---- */

static void test_scope_and_evidence(void **state)
{
    kbt_resp r;
    char *out = NULL, *cam_reader;
    json_t *bundle;
    const json_t *e;
    size_t i;
    bool report_doc = false;

    (void)state;
    cam_reader = kbt_token(env, "{\"sub\":\"security:cam-reader\",\"ops\":[\"read\"],"
                                "\"products\":[\"cam\"],\"ttl\":600}");
    r = get("/v1/incidents", reader);
    assert_int_equal(json_array_size(json_object_get(r.json, "incidents")), 1);
    kbt_resp_free(&r);
    r = get("/v1/incidents", cam_reader);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "incidents")), 0);
    kbt_resp_free(&r);
    refused(get("/v1/incidents/INC-7", cam_reader), 403, "incident INC-7");
    refused(get("/v1/evidence/incidents/INC-7", cam_reader), 403, "incident INC-7");

    r = get("/v1/evidence/incidents/INC-7", reader);
    assert_int_equal(r.status, 200);
    bundle = json_incref(r.json);
    kbt_resp_free(&r);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(bundle, "subject"), "kind")), "incident");
    json_array_foreach(json_object_get(bundle, "entries"), i, e)
    {
        const json_t *fx =
            json_array_get(json_object_get(json_object_get(e, "entry"), "effects"), 0);
        if (fx != NULL &&
            strcmp(json_string_value(json_object_get(fx, "type")), "incident.report") == 0)
            report_doc = json_object_get(json_object_get(bundle, "documents"),
                                         json_string_value(json_object_get(fx, "sha256"))) != NULL;
    }
    assert_true(report_doc);
    {
        char *text = json_dumps(bundle, 0), *pem = NULL;
        save("incident.bundle.json", text);
        free(text);
        pem = strdup(json_string_value(
            json_object_get(json_object_get(bundle, "checkpoint"), "public_key_pem")));
        save("audit.pem", pem);
        free(pem);
    }
    if (cli("evidence verify incident.bundle.json --pubkey audit.pem", &out) != 0)
        fail_msg("the incident's bundle does not verify: %s", out);
    free(out);
    /* a bundle claiming another incident is refused */
    json_object_set_new(json_object_get(bundle, "subject"), "id", json_string("INC-8"));
    {
        char *text = json_dumps(bundle, 0);
        save("other.bundle.json", text);
        free(text);
    }
    assert_int_not_equal(cli("evidence verify other.bundle.json --pubkey audit.pem", &out), 0);
    assert_non_null(strstr(out, "INC-8"));
    free(out);
    json_decref(bundle);
    free(cam_reader);

    /* every incident fact is rebuilt from the log */
    kbt_stop(env);
    if (kbt_run_daemon(env, "-c keybroker.conf --verify-store", &out) != 0)
        fail_msg("--verify-store: %s", out);
    free(out);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_incident_create),
        cmocka_unit_test(test_incident_reports_and_fix),
        cmocka_unit_test(test_csaf),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_scope_and_evidence),
    };

    return cmocka_run_group_tests_name("cyber resilience act", tests, setup, teardown);
}
