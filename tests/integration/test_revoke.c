/*
 * test_revoke.c - device revocation and CRLs over real HTTP, checked as a relying party would:
 * the CRL fetched without a token, then `openssl crl -verify` against the CA certificate and
 * `openssl verify -crl_check` of device certificates; the distribution point the certificates
 * carry; CRL numbers and nextUpdate; refusals; View D; and keybrokerd --verify-store.
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

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "harness.h"

#define CRL_URL      "http://pki.example.com/v1/cas/{key}/crl"
#define CRL_URL_GW   "http://pki.example.com/v1/cas/ca-gw/crl"
#define CRL_VALIDITY 8

static kbt_env *env;
static char *factory, *reader, *other_admin;
static char *csr_d1; /* the CSR D-1 was provisioned with */

static void must(kbt_resp r, long status, const char *what)
{
    if (r.status != status)
        fail_msg("%s: expected %ld, got %ld %s", what, status, r.status, r.body);
    kbt_resp_free(&r);
}

static void expect_status(kbt_resp *r, long status, const char *code, const char *needle)
{
    if (r->status != status || (code != NULL && strcmp(kbt_err_code(r), code) != 0) ||
        (needle != NULL && strstr(kbt_err_message(r), needle) == NULL))
        fail_msg("expected %ld %s \"%s\", got %ld %s", status, code ? code : "",
                 needle ? needle : "", r->status, r->body);
    assert_true(r->audit_seq > 0);
    kbt_resp_free(r);
}

/* A file of the deployment's directory, as a user saves what they downloaded. */
static void save(const char *name, const void *data, size_t len)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static X509 *pem_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

    BIO_free(b);
    assert_non_null(x);
    return x;
}

/* Provisions serial with a new key; its certificate saved as <serial>.pem. */
static char *provision(const char *serial)
{
    char *csr = kbt_csr_pem(NULL, serial), name[64];
    json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "key", "ca-gw", "csr_pem", csr, "device",
                             "serial", serial, "product", "gateway", "batch", "b-1");
    kbt_resp r = kbt_callj(env, "POST", "/v1/provision", factory, body);
    const char *pem;

    if (r.status != 201)
        fail_msg("provision %s: %ld %s", serial, r.status, r.body);
    pem = json_string_value(json_object_get(r.json, "certificate_pem"));
    snprintf(name, sizeof(name), "%s.pem", serial);
    save(name, pem, strlen(pem));
    kbt_resp_free(&r);
    json_decref(body);
    return csr;
}

static kbt_resp revoke_as(const char *tok, const char *serial, const char *body)
{
    char path[128];

    snprintf(path, sizeof(path), "/v1/devices/%s/revoke", serial);
    return kbt_call(env, "POST", path, tok, body);
}

static kbt_resp rotate(const char *serial, char **csr_out)
{
    char *tok = kbt_token(env, "{\"sub\":\"ota:fleet\",\"ops\":[\"rotate\"],\"keys\":[\"ca-gw\"],"
                               "\"ttl\":600}");
    char *csr = kbt_csr_pem(NULL, serial), path[96];
    json_t *body = json_pack("{s:s,s:s,s:s}", "key", "ca-gw", "csr_pem", csr, "product", "gateway");
    kbt_resp r;

    snprintf(path, sizeof(path), "/v1/devices/%s/certificates", serial);
    r = kbt_callj(env, "POST", path, tok, body);
    json_decref(body);
    free(tok);
    if (csr_out != NULL)
        *csr_out = csr;
    else
        free(csr);
    return r;
}

static int setup(void **state)
{
    kbt_resp r;
    const char *pem;

    (void)state;
    env = kbt_start("crl_url = " CRL_URL "\ncrl_validity = 8\n");
    kbt_key(env, "ca-gw", "device-identity-ca", "ecdsa-p256", "gateway");
    kbt_key(env, "ca-bare", "device-identity-ca", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-gw", "firmware-signing", "ecdsa-p256", "gateway");
    r = kbt_call(env, "POST", "/v1/keys/ca-gw/certificate", env->admin,
                 "{\"self_signed\":{\"subject\":\"CN=Gateway Device CA,O=Example OEM\","
                 "\"days\":3650}}");
    if (r.status != 201)
        fail_msg("CA certificate: %ld %s", r.status, r.body);
    pem = json_string_value(json_object_get(json_object_get(r.json, "certificate"), "pem"));
    save("ca.pem", pem, strlen(pem));
    kbt_resp_free(&r);
    must(kbt_call(env, "POST", "/v1/batches", env->admin,
                  "{\"batch\":\"b-1\",\"product\":\"gateway\",\"factory\":\"factory:acme\","
                  "\"quantity\":10,\"market\":[\"DE\"]}"),
         201, "batch");
    factory = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],\"ttl\":600}");
    reader = kbt_token(env, "{\"sub\":\"security:audit\",\"ops\":[\"read\"],\"ttl\":600}");
    other_admin = kbt_token(env, "{\"sub\":\"security:camera-admin\",\"ops\":[\"admin\"],"
                                 "\"products\":[\"camera\"],\"ttl\":600}");
    csr_d1 = provision("D-1");
    free(provision("D-2"));
    free(provision("D-3"));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(csr_d1);
    free(factory);
    free(reader);
    free(other_admin);
    kbt_free(env);
    return 0;
}

/* GET /v1/cas/ca-gw/crl without a token, saved as crl.der; the parsed CRL (caller frees). */
static X509_CRL *fetch_crl(void)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/cas/ca-gw/crl", NULL, NULL);
    const unsigned char *p;
    X509_CRL *crl;

    if (r.status != 200)
        fail_msg("CRL: %ld %s", r.status, r.body);
    assert_string_equal(r.content_type, "application/pkix-crl");
    assert_int_equal(r.audit_seq, -1); /* a public route: no entry of its own */
    save("crl.der", r.body, r.len);
    p = (const unsigned char *)r.body;
    crl = d2i_X509_CRL(NULL, &p, (long)r.len);
    assert_non_null(crl);
    kbt_resp_free(&r);
    return crl;
}

static long crl_number(X509_CRL *crl)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    long v;

    assert_non_null(n);
    v = ASN1_INTEGER_get(n);
    ASN1_INTEGER_free(n);
    return v;
}

static time_t crl_time(const ASN1_TIME *t)
{
    struct tm tm;

    assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
    return timegm(&tm);
}

/* `openssl crl` as a user runs it on crl.der: its exit status, what it printed into *out. */
static int openssl_crl(const char *args, char **out)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "openssl crl -inform DER -in crl.der %s 2>&1", args);
    return kbt_sh(env, cmd, out);
}

/* `openssl verify -crl_check` of <serial>.pem against ca.pem and crl.der. */
static int openssl_verify(const char *serial, char **out)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd),
             "openssl crl -inform DER -in crl.der -out crl.pem && "
             "openssl verify -crl_check -CAfile ca.pem -CRLfile crl.pem %s.pem 2>&1",
             serial);
    return kbt_sh(env, cmd, out);
}

/* The serial number of <serial>.pem as `openssl crl -text` prints it. */
static void cert_serial_text(const char *serial, char *buf, size_t n)
{
    char cmd[256], *out = NULL, *nl;

    snprintf(cmd, sizeof(cmd), "openssl x509 -in %s.pem -noout -serial", serial);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    nl = strchr(out, '\n');
    if (nl != NULL)
        *nl = '\0';
    assert_memory_equal(out, "serial=", 7);
    snprintf(buf, n, "%s", out + 7);
    free(out);
}

static char *crl_dp(X509 *x)
{
    CRL_DIST_POINTS *dps = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
    GENERAL_NAME *gn;
    char *uri;

    if (dps == NULL)
        return NULL;
    gn = sk_GENERAL_NAME_value(sk_DIST_POINT_value(dps, 0)->distpoint->name.fullname, 0);
    uri = strndup((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
                  (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier));
    CRL_DIST_POINTS_free(dps);
    return uri;
}

/* crl_url set: the CA certificate and the device certificates point to ca-gw's CRL. */
static void test_distribution_points(void **state)
{
    char *ca = NULL, *dev = NULL, *uri;
    X509 *x;

    (void)state;
    assert_int_equal(kbt_sh(env, "cat ca.pem", &ca), 0);
    assert_int_equal(kbt_sh(env, "cat D-1.pem", &dev), 0);
    x = pem_cert(ca);
    uri = crl_dp(x);
    assert_non_null(uri);
    assert_string_equal(uri, CRL_URL_GW);
    free(uri);
    X509_free(x);
    x = pem_cert(dev);
    uri = crl_dp(x);
    assert_non_null(uri);
    assert_string_equal(uri, CRL_URL_GW);
    free(uri);
    X509_free(x);
    free(ca);
    free(dev);
}

/* Before any revocation: a CRL that verifies, lists nothing, and every device passes. */
static void test_crl_before_revocation(void **state)
{
    X509_CRL *crl = fetch_crl();
    char *out = NULL;
    json_t *all, *e, *last = NULL;
    size_t i;

    (void)state;
    assert_int_equal(crl_number(crl), 1);
    assert_null(X509_CRL_get_REVOKED(crl));
    X509_CRL_free(crl);
    if (openssl_crl("-CAfile ca.pem -verify -noout", &out) != 0 || strstr(out, "verify OK") == NULL)
        fail_msg("openssl crl -verify: %s", out);
    free(out);
    if (openssl_verify("D-1", &out) != 0)
        fail_msg("openssl verify -crl_check D-1: %s", out);
    free(out);
    /* the signature is in the log before the CRL left */
    all = kbt_audit_all(env);
    json_array_foreach(all, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "op")), "crl.issue") == 0)
            last = e;
    }
    assert_non_null(last);
    assert_string_equal(json_string_value(json_object_get(last, "sub")), "service:keybrokerd");
    assert_string_equal(json_string_value(json_object_get(last, "key")), "ca-gw");
    assert_string_equal(json_string_value(json_array_get(json_object_get(last, "products"), 0)),
                        "gateway");
    e = json_array_get(json_object_get(last, "effects"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "crl.issue");
    assert_int_equal(json_integer_value(json_object_get(e, "number")), 1);
    assert_int_equal(json_integer_value(json_object_get(e, "entries")), 0);
    json_decref(all);
}

/* Refused, recorded, and nothing changed. */
static void test_revoke_refusals(void **state)
{
    kbt_resp r;

    (void)state;
    r = revoke_as(env->admin, "D-404", "{\"product\":\"gateway\",\"reason\":\"keyCompromise\"}");
    expect_status(&r, 404, "not_found", "D-404");
    r = revoke_as(factory, "D-2", "{\"product\":\"gateway\",\"reason\":\"keyCompromise\"}");
    expect_status(&r, 403, "forbidden", "admin");
    r = revoke_as(reader, "D-2", "{\"product\":\"gateway\",\"reason\":\"keyCompromise\"}");
    expect_status(&r, 403, "forbidden", "admin");
    r = revoke_as(other_admin, "D-2", "{\"product\":\"gateway\",\"reason\":\"keyCompromise\"}");
    expect_status(&r, 403, "forbidden", "outside the token's products");
    /* an admin of the product's firmware key alone: the device's CA key is not its own */
    {
        char *fw_admin = kbt_token(env, "{\"sub\":\"security:fw\",\"ops\":[\"admin\"],"
                                        "\"products\":[\"gateway\"],\"keys\":[\"fw-*\"],"
                                        "\"ttl\":600}");

        r = revoke_as(fw_admin, "D-2", "{\"product\":\"gateway\",\"reason\":\"keyCompromise\"}");
        expect_status(&r, 403, "forbidden", "device D-2 has a certificate of CA key \"ca-gw\"");
        free(fw_admin);
    }
    r = revoke_as(env->admin, "D-2", "{\"product\":\"gateway\",\"reason\":\"certificateHold\"}");
    expect_status(&r, 400, "bad_request", "reason: \"certificateHold\" is not one of");
    r = revoke_as(env->admin, "D-2", "{\"product\":\"gateway\"}");
    expect_status(&r, 400, "bad_request", "reason");
    r = revoke_as(env->admin, "D-2", "{\"reason\":\"keyCompromise\"}");
    expect_status(&r, 400, "bad_request", "product");
    r = revoke_as(env->admin, "D-2",
                  "{\"product\":\"gateway\",\"reason\":\"keyCompromise\",\"when\":\"now\"}");
    expect_status(&r, 400, "bad_request", "when");
    r = kbt_call(env, "GET", "/v1/views/devices/D-2?product=gateway", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_null(json_object_get(r.json, "revocation")));
    kbt_resp_free(&r);
}

/* A device rotated, then revoked: both its certificates in the CRL, as OpenSSL reads it. */
/* View A of gateway: its current device certificates, those expiring within 100 years, and
 * whether serial is among the first of those listed. */
static void gateway_certificates(long *current, long *expiring, bool *lists, const char *serial)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/views/products/gateway?expiring_within_days=36500",
                          env->admin, NULL);
    const json_t *dev, *it;
    size_t i;

    if (r.status != 200)
        fail_msg("view A: %ld %s", r.status, r.body);
    *current = (long)json_integer_value(
        json_object_get(json_object_get(r.json, "device_certificates"), "total_current"));
    dev = json_object_get(json_object_get(r.json, "expiring"), "device_certificates");
    *expiring = (long)json_integer_value(json_object_get(dev, "count"));
    *lists = false;
    json_array_foreach(json_object_get(dev, "first"), i,
                       it) if (strcmp(json_string_value(json_object_get(it, "serial")), serial) ==
                               0) *lists = true;
    kbt_resp_free(&r);
}

static void test_revoke_and_crl(void **state)
{
    char *out = NULL, *csr_new = NULL, serial1[80], serial_old[80], serial2[80];
    const json_t *certs, *rev;
    long current0, expiring0, current, expiring;
    bool lists;
    X509_CRL *before = fetch_crl(), *after;
    long n0 = crl_number(before);
    kbt_resp r;

    (void)state;
    X509_CRL_free(before);
    cert_serial_text("D-1", serial_old, sizeof(serial_old));
    r = rotate("D-1", &csr_new);
    if (r.status != 201)
        fail_msg("rotate: %ld %s", r.status, r.body);
    save("D-1.pem", json_string_value(json_object_get(r.json, "certificate_pem")),
         strlen(json_string_value(json_object_get(r.json, "certificate_pem"))));
    kbt_resp_free(&r);
    cert_serial_text("D-1", serial1, sizeof(serial1));
    cert_serial_text("D-2", serial2, sizeof(serial2));
    gateway_certificates(&current0, &expiring0, &lists, "D-1");
    assert_true(current0 >= 2);
    assert_int_equal(expiring0, current0);
    assert_true(lists);

    r = revoke_as(env->admin, "D-1", "{\"product\":\"gateway\",\"reason\":\"keyCompromise\"}");
    if (r.status != 200)
        fail_msg("revoke: %ld %s", r.status, r.body);
    assert_string_equal(json_string_value(json_object_get(r.json, "reason")), "keyCompromise");
    assert_int_equal(json_integer_value(json_object_get(r.json, "reason_code")), 1);
    assert_int_equal(json_array_size(json_object_get(r.json, "certificates")), 2);
    assert_int_equal(json_integer_value(json_object_get(r.json, "audit_seq")), r.audit_seq);
    kbt_resp_free(&r);
    /* View A: a revoked device's certificate no longer counts, nor expires */
    gateway_certificates(&current, &expiring, &lists, "D-1");
    assert_int_equal(current, current0 - 1);
    assert_int_equal(expiring, expiring0 - 1);
    assert_false(lists);

    /* the CRL right after the answer lists both, with a higher number */
    after = fetch_crl();
    assert_true(crl_number(after) > n0);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(after)), 2);
    X509_CRL_free(after);
    if (openssl_crl("-CAfile ca.pem -verify -noout", &out) != 0 || strstr(out, "verify OK") == NULL)
        fail_msg("openssl crl -verify: %s", out);
    free(out);
    assert_int_equal(openssl_crl("-noout -text", &out), 0);
    if (strstr(out, serial1) == NULL || strstr(out, serial_old) == NULL ||
        strstr(out, "Key Compromise") == NULL || strstr(out, serial2) != NULL)
        fail_msg("the CRL should list %s and %s (Key Compromise), not %s:\n%s", serial1, serial_old,
                 serial2, out);
    free(out);
    /* OpenSSL's own check refuses the revoked certificate, and passes the others */
    if (openssl_verify("D-1", &out) == 0 || strstr(out, "certificate revoked") == NULL)
        fail_msg("openssl verify -crl_check should refuse D-1: %s", out);
    free(out);
    if (openssl_verify("D-2", &out) != 0)
        fail_msg("openssl verify -crl_check D-2: %s", out);
    free(out);

    /* View D shows the revocation, and each certificate's */
    r = kbt_call(env, "GET", "/v1/views/devices/D-1?product=gateway", env->admin, NULL);
    assert_int_equal(r.status, 200);
    rev = json_object_get(r.json, "revocation");
    assert_string_equal(json_string_value(json_object_get(rev, "reason")), "keyCompromise");
    assert_int_equal(json_integer_value(json_object_get(rev, "reason_code")), 1);
    assert_string_equal(json_string_value(json_object_get(rev, "revoked_by")),
                        "security:bootstrap");
    assert_true(json_integer_value(json_object_get(rev, "audit_seq")) > 0);
    certs = json_object_get(r.json, "certificates");
    assert_int_equal(json_array_size(certs), 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(certs, i), "revocation_reason")),
            "keyCompromise");
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(certs, i), "revoked_at")),
            json_string_value(json_object_get(rev, "at")));
    }
    kbt_resp_free(&r);

    /* once, for good: no second revocation, no new certificate, no replayed answer */
    r = revoke_as(env->admin, "D-1", "{\"product\":\"gateway\",\"reason\":\"superseded\"}");
    expect_status(&r, 409, "conflict", "was revoked at");
    r = rotate("D-1", NULL);
    expect_status(&r, 409, "conflict", "revoked");
    {
        json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "key", "ca-gw", "csr_pem", csr_new,
                                 "device", "serial", "D-1", "product", "gateway", "batch", "b-1");
        r = kbt_callj(env, "POST", "/v1/provision", factory, body);
        json_decref(body);
        /* the rotated key is not the provisioning's; the provisioning key's answer is revoked */
        expect_status(&r, 409, "conflict", "D-1");
        body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "key", "ca-gw", "csr_pem", csr_d1, "device",
                         "serial", "D-1", "product", "gateway", "batch", "b-1");
        r = kbt_callj(env, "POST", "/v1/provision", factory, body);
        json_decref(body);
        expect_status(&r, 409, "conflict", "revoked");
    }
    free(csr_new);
}

/*
 * The CRL is served as it is while nothing changed, for at most half its validity; then the
 * next one, with a higher number.  None is ever served past its nextUpdate.
 */
static void test_crl_number_and_next_update(void **state)
{
    X509_CRL *a = fetch_crl(), *b, *c;
    time_t fetched = time(NULL), this_a = crl_time(X509_CRL_get0_lastUpdate(a));
    time_t next_a = crl_time(X509_CRL_get0_nextUpdate(a));

    (void)state;
    assert_int_equal(next_a - this_a, CRL_VALIDITY);
    assert_true(next_a > fetched);
    b = fetch_crl();
    /* fetched again at once (well within half its validity): the same CRL */
    if (time(NULL) < this_a + CRL_VALIDITY / 2)
        assert_int_equal(crl_number(b), crl_number(a));
    /* past half its validity, before its nextUpdate: a new one, numbered on */
    while (time(NULL) < this_a + CRL_VALIDITY / 2)
        usleep(100 * 1000);
    c = fetch_crl();
    assert_true(crl_number(c) > crl_number(a));
    assert_true(crl_time(X509_CRL_get0_lastUpdate(c)) >= this_a + CRL_VALIDITY / 2);
    assert_true(crl_time(X509_CRL_get0_nextUpdate(c)) > time(NULL));
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c)), 2);
    X509_CRL_free(a);
    X509_CRL_free(b);
    X509_CRL_free(c);
}

/* A restart keeps the numbers going: they are the ledger's. */
static void test_crl_number_after_restart(void **state)
{
    X509_CRL *a = fetch_crl(), *b;
    long n = crl_number(a);

    (void)state;
    kbt_restart(env);
    b = fetch_crl();
    assert_int_equal(crl_number(b), n + 1);
    X509_CRL_free(a);
    X509_CRL_free(b);
}

static void test_crl_refusals(void **state)
{
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "GET", "/v1/cas/no-such-ca/crl", NULL, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(kbt_err_code(&r), "not_found");
    kbt_resp_free(&r);
    /* a key that is no device CA has no CRL */
    r = kbt_call(env, "GET", "/v1/cas/fw-gw/crl", NULL, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    /* a CA key without a certificate cannot name an issuer */
    r = kbt_call(env, "GET", "/v1/cas/ca-bare/crl", NULL, NULL);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(kbt_err_message(&r), "no CA certificate"));
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/cas/ca-gw/crl", NULL, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
}

/* The CLI as an operator runs it, and the next CRL lists the device. */
static void test_revoke_with_cli(void **state)
{
    char cmd[1024], *out = NULL, serial3[80];
    X509_CRL *crl;
    kbt_resp r;

    (void)state;
    save("admin.token", env->admin, strlen(env->admin));
    snprintf(cmd, sizeof(cmd),
             "'%s/keybroker' --url %s --token-file admin.token device revoke D-3 --product gateway"
             " --reason cessationOfOperation 2>&1",
             env->bin_dir, env->url);
    if (kbt_sh(env, cmd, &out) != 0 || strstr(out, "cessationOfOperation") == NULL)
        fail_msg("keybroker device revoke: %s", out);
    free(out);
    snprintf(cmd, sizeof(cmd),
             "'%s/keybroker' --url %s --token-file admin.token device revoke D-3 --product gateway"
             " --reason cessationOfOperation 2>&1",
             env->bin_dir, env->url);
    if (kbt_sh(env, cmd, &out) != 1 || strstr(out, "was revoked at") == NULL)
        fail_msg("keybroker device revoke, twice: %s", out);
    free(out);
    r = kbt_call(env, "GET", "/v1/views/devices/D-3?product=gateway", env->admin, NULL);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "revocation"), "reason")),
        "cessationOfOperation");
    kbt_resp_free(&r);
    crl = fetch_crl();
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 3);
    X509_CRL_free(crl);
    cert_serial_text("D-3", serial3, sizeof(serial3));
    assert_int_equal(openssl_crl("-noout -text", &out), 0);
    if (strstr(out, serial3) == NULL || strstr(out, "Cessation Of Operation") == NULL)
        fail_msg("the CRL should list %s (Cessation Of Operation):\n%s", serial3, out);
    free(out);
    if (openssl_verify("D-3", &out) == 0 || strstr(out, "certificate revoked") == NULL)
        fail_msg("openssl verify -crl_check should refuse D-3: %s", out);
    free(out);
}

/* Every revocation and CRL is rebuilt from the log. */
static void test_verify_store(void **state)
{
    char *out = NULL;

    (void)state;
    if (kbt_run_daemon(env, "-c keybroker.conf --verify-store", &out) != 0)
        fail_msg("--verify-store: %s", out);
    assert_non_null(strstr(out, "matches its audit log"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distribution_points),
        cmocka_unit_test(test_crl_before_revocation),
        cmocka_unit_test(test_revoke_refusals),
        cmocka_unit_test(test_revoke_and_crl),
        cmocka_unit_test(test_crl_number_and_next_update),
        cmocka_unit_test(test_crl_number_after_restart),
        cmocka_unit_test(test_crl_refusals),
        cmocka_unit_test(test_revoke_with_cli),
        cmocka_unit_test(test_verify_store),
    };

    return cmocka_run_group_tests_name("revocation", tests, setup, teardown);
}
