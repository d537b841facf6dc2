/*
 * test_provision.c - factory provisioning over real HTTP: device
 * certificates from a CA key in SoftHSM2, checked with OpenSSL; a CA
 * certificate attached with its chain; exact batch
 * quotas under concurrency and across restarts; rotation; one device key pair
 * for one device; the audit trail.
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

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "harness.h"
#include "kbr_audit.h"

static kbt_env *env;
static char *factory;  /* factory:acme, batch b-main */
static char *intruder; /* factory:other, same scope otherwise */
static X509 *ca_cert;
static char *gw1_csr; /* the CSR GW-0001 was provisioned with */

static char *json_field(kbt_resp *r, const char *name)
{
    const char *v = json_string_value(json_object_get(r->json, name));
    return v != NULL ? strdup(v) : NULL;
}

static X509 *pem_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

    BIO_free(b);
    return x;
}

/* The same CSR with one bit of its signature flipped. */
static char *tamper_csr(const char *pem)
{
    BIO *in = BIO_new_mem_buf(pem, -1), *out = BIO_new(BIO_s_mem());
    X509_REQ *req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    char *data, *res;
    long len;

    der[n - 1] ^= 0x01;
    PEM_write_bio(out, "CERTIFICATE REQUEST", "", der, n);
    len = BIO_get_mem_data(out, &data);
    res = strndup(data, (size_t)len);
    OPENSSL_free(der);
    X509_REQ_free(req);
    BIO_free(in);
    BIO_free(out);
    return res;
}

static kbt_resp provision_for(kbt_env *e, const char *tok, const char *key, const char *product,
                              const char *serial, const char *batch, const char *csr,
                              const char *fw)
{
    json_t *body =
        json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s?}}", "key", key, "csr_pem", csr, "device", "serial",
                  serial, "product", product, "batch", batch, "firmware_version", fw);
    kbt_resp r = kbt_callj(e, "POST", "/v1/provision", tok, body);

    json_decref(body);
    return r;
}

static kbt_resp provision_as(kbt_env *e, const char *tok, const char *serial, const char *batch,
                             const char *csr, const char *fw)
{
    return provision_for(e, tok, "ca-gw", "gateway", serial, batch, csr, fw);
}

/* A new CSR over an existing key pair, its EC point compressed if asked; the caller frees. */
static char *csr_for(EVP_PKEY *key, const char *cn, bool compressed)
{
    EVP_PKEY *k = EVP_PKEY_dup(key);
    X509_REQ *req = X509_REQ_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    long len;

    if (compressed)
        assert_int_equal(EVP_PKEY_set_utf8_string_param(
                             k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
                         1);
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_pubkey(req, k);
    assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
    PEM_write_bio_X509_REQ(b, req);
    len = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)len);
    BIO_free(b);
    X509_REQ_free(req);
    EVP_PKEY_free(k);
    return pem;
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

static void make_batch_for(const char *name, const char *product, const char *fac, int quantity,
                           const char *market)
{
    char body[512];
    kbt_resp r;

    snprintf(body, sizeof(body),
             "{\"batch\":\"%s\",\"product\":\"%s\",\"factory\":\"%s\",\"quantity\":%d,"
             "\"market\":[\"%s\"]}",
             name, product, fac, quantity, market);
    r = kbt_call(env, "POST", "/v1/batches", env->admin, body);
    if (r.status != 201)
        fail_msg("batch %s: %ld %s", name, r.status, r.body);
    kbt_resp_free(&r);
}

static void make_batch(const char *name, const char *fac, int quantity, const char *market)
{
    make_batch_for(name, "gateway", fac, quantity, market);
}

static int setup(void **state)
{
    kbt_resp r;

    (void)state;
    env = kbt_start(NULL);
    kbt_key(env, "ca-gw", "device-identity-ca", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-gw", "firmware-signing", "ecdsa-p256", "gateway");
    r = kbt_call(env, "POST", "/v1/keys/ca-gw/certificate", env->admin,
                 "{\"self_signed\":{\"subject\":\"CN=Gateway Device CA,O=Example OEM,C=DE\","
                 "\"days\":3650}}");
    if (r.status != 201)
        fail_msg("CA certificate: %ld %s", r.status, r.body);
    ca_cert =
        pem_cert(json_string_value(json_object_get(json_object_get(r.json, "certificate"), "pem")));
    assert_non_null(ca_cert);
    kbt_resp_free(&r);
    make_batch("b-main", "factory:acme", 100, "DE");
    make_batch("b-small", "factory:acme", 12, "US");
    make_batch("b-other", "factory:other", 5, "FR");
    factory =
        kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],\"keys\":[\"ca-gw\"],"
                       "\"products\":[\"gateway\"],\"batches\":[\"b-main\",\"b-small\"],"
                       "\"ttl\":3600}");
    intruder =
        kbt_token(env, "{\"sub\":\"factory:other\",\"ops\":[\"provision\"],\"keys\":[\"ca-gw\"],"
                       "\"products\":[\"gateway\"],\"ttl\":3600}");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(ca_cert);
    free(gw1_csr);
    free(factory);
    free(intruder);
    kbt_free(env);
    return 0;
}

static void check_device_cert(const char *pem, const char *chain, const char *serial,
                              EVP_PKEY *device_key)
{
    X509 *x = pem_cert(pem);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    char cn[128];
    X509 *chain_first = pem_cert(chain);

    assert_non_null(x);
    /* the chain the broker returns starts with the CA certificate */
    assert_int_equal(X509_cmp(chain_first, ca_cert), 0);
    X509_STORE_add_cert(store, ca_cert);
    X509_STORE_CTX_init(ctx, store, x, NULL);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(ctx) != 1)
        fail_msg("device certificate does not verify: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    /* subject is exactly CN=<serial>, whatever the CSR asked for */
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 1);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, serial);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), device_key), 1);
    assert_int_equal(X509_check_ca(x), 0);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(chain_first);
    X509_free(x);
}

static void test_key_certificate(void **state)
{
    kbt_resp r;
    char *pem;

    (void)state;
    r = kbt_call(env, "GET", "/v1/keys/ca-gw", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(
        json_string_value(json_object_get(json_object_get(r.json, "certificate"), "not_after")));
    kbt_resp_free(&r);
    assert_int_equal(X509_check_ca(ca_cert), 1);
    /* a foreign certificate that does not carry the key's public key */
    pem = kbt_csr_pem(NULL, "x"); /* not even a certificate */
    json_t *body = json_pack("{s:s}", "pem", pem);
    r = kbt_callj(env, "POST", "/v1/keys/fw-gw/certificate", env->admin, body);
    expect_status(&r, 400, "bad_request", "pem");
    json_decref(body);
    free(pem);
    /* the CA certificate of ca-gw does not match fw-gw */
    {
        BIO *b = BIO_new(BIO_s_mem());
        char *data;
        long len;
        PEM_write_bio_X509(b, ca_cert);
        len = BIO_get_mem_data(b, &data);
        pem = strndup(data, (size_t)len);
        BIO_free(b);
    }
    body = json_pack("{s:s}", "pem", pem);
    r = kbt_callj(env, "POST", "/v1/keys/fw-gw/certificate", env->admin, body);
    expect_status(&r, 400, "bad_request", "does not match");
    json_decref(body);
    /* ... but it does match ca-gw itself */
    body = json_pack("{s:s}", "pem", pem);
    r = kbt_callj(env, "POST", "/v1/keys/ca-gw/certificate", env->admin, body);
    expect_status(&r, 409, "conflict", NULL); /* the same certificate is already attached */
    json_decref(body);
    free(pem);
    r = kbt_call(env, "POST", "/v1/keys/fw-gw/certificate", env->admin,
                 "{\"self_signed\":{\"subject\":\"CN=x\",\"days\":1}}");
    expect_status(&r, 400, "bad_request", "device-identity-ca");
    r = kbt_call(env, "POST", "/v1/keys/ca-gw/certificate", env->admin,
                 "{\"self_signed\":{\"subject\":\"XX=x\",\"days\":1}}");
    expect_status(&r, 400, "bad_request", "self_signed.subject");
}

/* A device CA whose certificate a root issued: its chain is given apart or after it. */
static void test_key_certificate_chain(void **state)
{
    EVP_PKEY *pub, *root_key = EVP_EC_gen("P-256");
    X509 *root = kbt_ca_cert(root_key, "Example Root CA", "01", root_key, NULL), *ica;
    char *root_pem = kbt_x509_pem(root), *ica_pem, *both;
    json_t *body;
    kbt_resp r;

    (void)state;
    kbt_key(env, "ca-ext", "device-identity-ca", "ecdsa-p256", "gateway");
    pub = kbt_pubkey(env, "ca-ext");
    ica = kbt_ca_cert(pub, "Gateway Issuing CA", "7F01", root_key, root);
    ica_pem = kbt_x509_pem(ica);
    assert_true(asprintf(&both, "%s%s", ica_pem, root_pem) > 0);
    /* Alone it cannot be checked: nothing says who signed it. */
    body = json_pack("{s:s}", "pem", ica_pem);
    r = kbt_callj(env, "POST", "/v1/keys/ca-ext/certificate", env->admin, body);
    expect_status(&r, 400, "bad_request", "not self-signed");
    json_decref(body);
    body = json_pack("{s:s,s:s}", "pem", ica_pem, "chain_pem", root_pem);
    r = kbt_callj(env, "POST", "/v1/keys/ca-ext/certificate", env->admin, body);
    if (r.status != 201)
        fail_msg("certificate with chain_pem: %ld %s", r.status, r.body);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "certificate"), "chain_pem")),
        root_pem);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "certificate"), "serial_number")),
        "7f01");
    kbt_resp_free(&r);
    json_decref(body);
    /* The chain after the certificate is the same request: it is attached already. */
    body = json_pack("{s:s}", "pem", both);
    r = kbt_callj(env, "POST", "/v1/keys/ca-ext/certificate", env->admin, body);
    expect_status(&r, 409, "conflict", NULL);
    json_decref(body);
    body = json_pack("{s:s,s:{s:s,s:i}}", "chain_pem", root_pem, "self_signed", "subject", "CN=x",
                     "days", 1);
    r = kbt_callj(env, "POST", "/v1/keys/ca-ext/certificate", env->admin, body);
    expect_status(&r, 400, "bad_request", "chain_pem");
    json_decref(body);
    free(both);
    free(ica_pem);
    free(root_pem);
    X509_free(ica);
    X509_free(root);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(root_key);
}

static void test_provision_and_verify(void **state)
{
    EVP_PKEY *dk = NULL;
    char *csr = kbt_csr_pem(&dk, "attacker-chosen-name");
    kbt_resp r = provision_as(env, factory, "GW-0001", "b-main", csr, NULL);
    char *pem, *chain;

    (void)state;
    if (r.status != 201)
        fail_msg("provision: %ld %s", r.status, r.body);
    assert_int_equal(json_integer_value(json_object_get(r.json, "audit_seq")), r.audit_seq);
    assert_int_equal(strlen(json_string_value(json_object_get(r.json, "fingerprint_sha256"))), 64);
    pem = json_field(&r, "certificate_pem");
    chain = json_field(&r, "chain_pem");
    check_device_cert(pem, chain, "GW-0001", dk);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/batches/b-main", env->admin, NULL);
    assert_int_equal(json_integer_value(json_object_get(r.json, "provisioned")), 1);
    kbt_resp_free(&r);
    free(pem);
    free(chain);
    gw1_csr = csr;
    EVP_PKEY_free(dk);
}

static json_t *audit_entry(long seq);

/*
 * The station's network dropped the answer: it sends the same request again and gets the
 * certificate it was issued, byte for byte, without a second certificate, a second unit of
 * the batch or a signature; the log records the replay as a read of what was issued.
 */
static void test_network_drop(void **state)
{
    EVP_PKEY *dk = NULL;
    char *csr = kbt_csr_pem(&dk, "GW-0007"), *again;
    kbt_resp first, r;
    json_t *e, *d;
    long before = 0;

    (void)state;
    first = provision_as(env, factory, "GW-0007", "b-main", csr, NULL);
    if (first.status != 201)
        fail_msg("provision: %ld %s", first.status, first.body);
    r = kbt_call(env, "GET", "/v1/batches/b-main", env->admin, NULL);
    before = (long)json_integer_value(json_object_get(r.json, "provisioned"));
    kbt_resp_free(&r);

    /* the same request, and a new CSR over the same key pair: each the same certificate */
    again = csr_for(dk, "another-subject", false);
    for (int i = 0; i < 2; i++) {
        r = provision_as(env, factory, "GW-0007", "b-main", i == 0 ? csr : again, NULL);
        if (r.status != 200)
            fail_msg("replay %d: %ld %s", i, r.status, r.body);
        assert_string_equal(json_string_value(json_object_get(r.json, "certificate_pem")),
                            json_string_value(json_object_get(first.json, "certificate_pem")));
        assert_string_equal(json_string_value(json_object_get(r.json, "chain_pem")),
                            json_string_value(json_object_get(first.json, "chain_pem")));
        assert_string_equal(json_string_value(json_object_get(r.json, "serial_number")),
                            json_string_value(json_object_get(first.json, "serial_number")));
        assert_string_equal(json_string_value(json_object_get(r.json, "not_after")),
                            json_string_value(json_object_get(first.json, "not_after")));
        assert_string_equal(json_string_value(json_object_get(r.json, "fingerprint_sha256")),
                            json_string_value(json_object_get(first.json, "fingerprint_sha256")));
        assert_true(json_is_true(json_object_get(r.json, "replay")));
        assert_int_equal(json_integer_value(json_object_get(r.json, "issued_audit_seq")),
                         first.audit_seq);
        assert_int_equal(json_integer_value(json_object_get(r.json, "audit_seq")), r.audit_seq);
        assert_true(r.audit_seq > first.audit_seq);

        /* recorded as a read of what was issued: no key use, no ledger change */
        e = audit_entry(r.audit_seq);
        d = json_object_get(e, "detail");
        assert_string_equal(json_string_value(json_object_get(e, "op")), "provision.replay");
        assert_string_equal(json_string_value(json_object_get(e, "outcome")), "ok");
        assert_null(json_object_get(e, "key_use"));
        assert_null(json_object_get(e, "effects"));
        assert_true(json_is_true(json_object_get(d, "replay")));
        assert_int_equal(json_integer_value(json_object_get(d, "issued_audit_seq")),
                         first.audit_seq);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(d, "certificate"), "fingerprint")),
            json_string_value(json_object_get(first.json, "fingerprint_sha256")));
        json_decref(e);
        kbt_resp_free(&r);
    }
    r = kbt_call(env, "GET", "/v1/batches/b-main", env->admin, NULL);
    assert_int_equal(json_integer_value(json_object_get(r.json, "provisioned")), before);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/views/devices/GW-0007?product=gateway", env->admin, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "certificates")), 1);
    kbt_resp_free(&r);

    /* the same serial with another key, or in another batch: 409, nothing issued */
    free(again);
    again = kbt_csr_pem(NULL, "GW-0007");
    r = provision_as(env, factory, "GW-0007", "b-main", again, NULL);
    expect_status(&r, 409, "conflict",
                  "GW-0007 is already provisioned for product gateway with "
                  "another public key");
    r = provision_as(env, factory, "GW-0007", "b-small", csr, NULL);
    expect_status(&r, 409, "conflict", "in batch \"b-main\"");
    r = kbt_call(env, "GET", "/v1/batches/b-main", env->admin, NULL);
    assert_int_equal(json_integer_value(json_object_get(r.json, "provisioned")), before);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/batches/b-small", env->admin, NULL);
    assert_int_equal(json_integer_value(json_object_get(r.json, "provisioned")), 0);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/views/devices/GW-0007?product=gateway", env->admin, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "certificates")), 1);
    kbt_resp_free(&r);
    kbt_resp_free(&first);
    free(again);
    free(csr);
    EVP_PKEY_free(dk);
}

static void test_bad_csr(void **state)
{
    char *csr = kbt_csr_pem(NULL, "x"), *bad = tamper_csr(csr);
    kbt_resp r = kbt_call(env, "GET", "/v1/batches/b-main", env->admin, NULL);
    json_int_t before = json_integer_value(json_object_get(r.json, "provisioned"));

    (void)state;
    kbt_resp_free(&r);
    r = provision_as(env, factory, "GW-0002", "b-main", bad, NULL);
    expect_status(&r, 400, "bad_request", "proof of possession");
    r = provision_as(env, factory, "GW-0002", "b-main", "-----BEGIN NONSENSE-----\nAAAA\n", NULL);
    expect_status(&r, 400, "bad_request", "csr_pem");
    r = provision_as(env, factory, "GW-0002", "b-main", "", NULL);
    expect_status(&r, 400, "bad_request", "csr_pem");
    r = kbt_call(env, "GET", "/v1/batches/b-main", env->admin, NULL);
    assert_int_equal(json_integer_value(json_object_get(r.json, "provisioned")), before);
    kbt_resp_free(&r);
    free(csr);
    free(bad);
}

static void test_scope(void **state)
{
    char *csr = kbt_csr_pem(NULL, "x");
    char *narrow = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],"
                                  "\"batches\":[\"b-small\"],\"devices\":[\"GW-9*\"],\"ttl\":600}");
    kbt_resp r;

    (void)state;
    /* another factory's token, into acme's batch */
    r = provision_as(env, intruder, "GW-0100", "b-main", csr, NULL);
    expect_status(&r, 403, "forbidden", "factory:acme");
    /* acme's token, into a batch outside its scope (b-other belongs to factory:other) */
    r = provision_as(env, factory, "GW-0100", "b-other", csr, NULL);
    expect_status(&r, 403, "forbidden", "b-other");
    r = provision_as(env, narrow, "GW-9100", "b-main", csr, NULL);
    expect_status(&r, 403, "forbidden", "b-main");
    r = provision_as(env, narrow, "GW-0100", "b-small", csr, NULL);
    expect_status(&r, 403, "forbidden", "GW-0100"); /* outside the devices scope */
    r = provision_as(env, factory, "GW-0100", "no-such-batch", csr, NULL);
    expect_status(&r, 403, "forbidden", NULL); /* not even named in its scope */
    r = provision_as(env, env->admin, "GW-0100", "b-main", csr, "9.9.9");
    expect_status(&r, 403, "forbidden", "factory:acme"); /* admins are not factories */
    free(narrow);
    free(csr);
}

static void test_firmware_version_must_be_signed(void **state)
{
    char *csr = kbt_csr_pem(NULL, "x");
    kbt_resp r = provision_as(env, factory, "GW-0200", "b-main", csr, "0.0.1-never-signed");

    (void)state;
    expect_status(&r, 404, "not_found", "firmware_version");
    free(csr);
}

typedef struct {
    char *csr;
    const char *prefix, *batch;
    int index;
    long status;
    char code[32];
} station;

static void *station_run(void *p)
{
    station *s = p;
    kbt_env local = *env;
    char serial[32];
    kbt_resp r;

    local.curl = curl_easy_init();
    /* a negative index: every station asks for the same serial */
    if (s->index < 0)
        snprintf(serial, sizeof(serial), "%s", s->prefix);
    else
        snprintf(serial, sizeof(serial), "%s%03d", s->prefix, s->index);
    r = provision_as(&local, factory, serial, s->batch, s->csr, NULL);
    s->status = r.status;
    snprintf(s->code, sizeof(s->code), "%s", kbt_err_code(&r));
    kbt_resp_free(&r);
    curl_easy_cleanup(local.curl);
    return NULL;
}

static long batch_count(const char *batch)
{
    char path[64];
    kbt_resp r;
    long n;

    snprintf(path, sizeof(path), "/v1/batches/%s", batch);
    r = kbt_call(env, "GET", path, env->admin, NULL);
    assert_int_equal(r.status, 200);
    n = (long)json_integer_value(json_object_get(r.json, "provisioned"));
    kbt_resp_free(&r);
    return n;
}

/* A fresh CSR for a device not yet provisioned; freed at the next call. */
static const char *fresh_csr(void)
{
    static char *csr;

    free(csr);
    csr = kbt_csr_pem(NULL, "x");
    return csr;
}

static void test_exact_quota(void **state)
{
    char *csr = kbt_csr_pem(NULL, "x"), *csr2 = kbt_csr_pem(NULL, "x");
    pthread_t th[30];
    station st[30];
    int ok = 0, exhausted = 0;
    kbt_resp r;

    (void)state;
    /* b-small has 12 slots: use 2 now, leaving 10 for 30 concurrent stations, each device
     * with its own key */
    r = provision_as(env, factory, "GW-S1", "b-small", csr, NULL);
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    r = provision_as(env, factory, "GW-S2", "b-small", csr2, NULL);
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    for (int i = 0; i < 30; i++)
        st[i] = (station){kbt_csr_pem(NULL, "x"), "GW-Q", "b-small", i, 0, ""};
    for (int i = 0; i < 30; i++)
        assert_int_equal(pthread_create(&th[i], NULL, station_run, &st[i]), 0);
    for (int i = 0; i < 30; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 30; i++)
        free(st[i].csr);
    for (int i = 0; i < 30; i++) {
        ok += st[i].status == 201;
        exhausted += st[i].status == 429 && strcmp(st[i].code, "quota_exhausted") == 0;
    }
    assert_int_equal(ok, 10);
    assert_int_equal(exhausted, 20);
    assert_int_equal(batch_count("b-small"), 12);
    /* the count is the ledger's: it survives a restart and a kill -9 */
    kbt_restart(env);
    assert_int_equal(batch_count("b-small"), 12);
    r = provision_as(env, factory, "GW-S99", "b-small", fresh_csr(), NULL);
    expect_status(&r, 429, "quota_exhausted", "b-small");
    /* a full batch neither hides a conflict nor refuses a replay: GW-S1 asked again with its
     * own key gets its certificate, with GW-S2's key a 409 */
    r = provision_as(env, factory, "GW-S1", "b-small", csr2, NULL);
    expect_status(&r, 409, "conflict", "GW-S1");
    r = provision_as(env, factory, "GW-S1", "b-small", csr, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    kbt_kill_restart(env);
    assert_int_equal(batch_count("b-small"), 12);
    r = provision_as(env, factory, "GW-S99", "b-small", fresh_csr(), NULL);
    expect_status(&r, 429, "quota_exhausted", NULL);
    r = provision_as(env, factory, "GW-S1", "b-small", csr, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    assert_int_equal(batch_count("b-small"), 12);
    free(csr);
    free(csr2);
}

static void test_token_max_uses(void **state)
{
    char *csr = NULL;
    char *two = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],"
                               "\"batches\":[\"b-main\"],\"max_uses\":2,\"ttl\":600}");
    kbt_resp r;

    (void)state;
    for (int i = 0; i < 2; i++) {
        char serial[16];
        snprintf(serial, sizeof(serial), "GW-M%d", i);
        free(csr);
        csr = kbt_csr_pem(NULL, "x");
        r = provision_as(env, two, serial, "b-main", csr, NULL);
        assert_int_equal(r.status, 201);
        kbt_resp_free(&r);
    }
    r = provision_as(env, two, "GW-M9", "b-main", fresh_csr(), NULL);
    expect_status(&r, 429, "quota_exhausted", "max_uses");
    /* its uses are spent, but the answer it lost is not a use: a replay still gets it */
    r = provision_as(env, two, "GW-M1", "b-main", csr, NULL);
    if (r.status != 200)
        fail_msg("replay with spent uses: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    r = provision_as(env, two, "GW-M9", "b-main", fresh_csr(), NULL);
    expect_status(&r, 429, "quota_exhausted", "max_uses");
    free(two);
    free(csr);
}

static void test_rotation(void **state)
{
    char *ota = kbt_token(env, "{\"sub\":\"ota:fleet\",\"ops\":[\"rotate\"],\"keys\":[\"ca-gw\"],"
                               "\"products\":[\"gateway\"],\"ttl\":600}");
    EVP_PKEY *dk = NULL;
    char *csr = kbt_csr_pem(&dk, "GW-0001"), *pem, *chain;
    json_t *body = json_pack("{s:s,s:s,s:s}", "key", "ca-gw", "csr_pem", csr, "product", "gateway");
    kbt_resp r = kbt_callj(env, "POST", "/v1/devices/GW-0001/certificates", ota, body);

    (void)state;
    if (r.status != 201)
        fail_msg("rotate: %ld %s", r.status, r.body);
    assert_int_equal(json_array_size(json_object_get(r.json, "superseded")), 1);
    pem = json_field(&r, "certificate_pem");
    chain = json_field(&r, "chain_pem");
    check_device_cert(pem, chain, "GW-0001", dk);
    kbt_resp_free(&r);
    r = kbt_callj(env, "POST", "/v1/devices/GW-NOPE/certificates", ota, body);
    expect_status(&r, 404, "not_found", "GW-NOPE");
    r = kbt_callj(env, "POST", "/v1/devices/GW-0001/certificates", factory, body);
    expect_status(&r, 403, "forbidden", "rotate");
    /* the provisioning answer is gone once the device rotated: its certificate is superseded */
    r = provision_as(env, factory, "GW-0001", "b-main", gw1_csr, NULL);
    expect_status(&r, 409, "conflict", "has rotated since");
    json_decref(body);
    free(pem);
    free(chain);
    free(csr);
    free(ota);
    EVP_PKEY_free(dk);
}

/* SHA-256 of the key's DER SubjectPublicKeyInfo, lowercase hex. */
static void key_sha256(EVP_PKEY *key, char hex[65])
{
    unsigned char *der = NULL, md[32];
    int n = i2d_PUBKEY(key, &der);

    assert_true(n > 0);
    SHA256(der, (size_t)n, md);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    OPENSSL_free(der);
}

/* The audit entry seq as GET /v1/audit shows it (new ref). */
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

static const char *detail_str(const json_t *entry, const char *field)
{
    return json_string_value(json_object_get(json_object_get(entry, "detail"), field));
}

/* Answers 409 naming GW-K1, records the denial with the key it refused, issues nothing. */
/* A refusal for another device's key, recorded with what was asked: serial and CSR. */
static void expect_key_taken(kbt_resp *r, const char *op, const char *serial, const char *key_hex)
{
    long seq = r->audit_seq;
    json_t *e, *detail;

    expect_status(r, 409, "conflict",
                  "the CSR's public key is already the identity of device gateway/GW-K1");
    e = audit_entry(seq);
    assert_string_equal(json_string_value(json_object_get(e, "op")), op);
    assert_string_equal(json_string_value(json_object_get(e, "outcome")), "denied");
    assert_string_equal(json_string_value(json_object_get(e, "error_code")), "conflict");
    assert_string_equal(detail_str(e, "public_key_sha256"), key_hex);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(e, "detail"), "identity_of"), "serial")),
        "GW-K1");
    detail = json_object_get(e, "detail");
    assert_null(json_object_get(detail, "certificate"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(detail, "device"), "serial")), serial);
    assert_int_equal(strlen(detail_str(e, "csr_sha256")), 64);
    assert_non_null(json_object_get(detail, "csr_subject"));
    json_decref(e);
}

static long device_status(const char *product, const char *serial)
{
    char path[128];
    kbt_resp r;
    long status;

    snprintf(path, sizeof(path), "/v1/views/devices/%s?product=%s", serial, product);
    r = kbt_call(env, "GET", path, env->admin, NULL);
    status = r.status;
    kbt_resp_free(&r);
    return status;
}

static kbt_resp rotate_as(const char *tok, const char *serial, const char *csr)
{
    char path[96];
    json_t *body = json_pack("{s:s,s:s,s:s}", "key", "ca-gw", "csr_pem", csr, "product", "gateway");
    kbt_resp r;

    snprintf(path, sizeof(path), "/v1/devices/%s/certificates", serial);
    r = kbt_callj(env, "POST", path, tok, body);
    json_decref(body);
    return r;
}

/* A camera line of its own: CA key, CA certificate, batch and a factory token (caller frees). */
static char *camera_line(void)
{
    kbt_resp r;

    kbt_key(env, "ca-cam", "device-identity-ca", "ecdsa-p256", "camera");
    r = kbt_call(env, "POST", "/v1/keys/ca-cam/certificate", env->admin,
                 "{\"self_signed\":{\"subject\":\"CN=Camera Device CA\",\"days\":3650}}");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    make_batch_for("c-main", "camera", "factory:acme", 10, "DE");
    return kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],\"keys\":[\"ca-cam\"],"
                          "\"products\":[\"camera\"],\"batches\":[\"c-main\"],\"ttl\":600}");
}

static void test_one_key_one_device(void **state)
{
    EVP_PKEY *dk = EVP_EC_gen("P-256");
    char *csr = csr_for(dk, "GW-K1", false), *again = csr_for(dk, "another-name", false);
    char *packed = csr_for(dk, "GW-K1", true), *camera = camera_line();
    char *rot = kbt_token(env, "{\"sub\":\"ota:fleet\",\"ops\":[\"rotate\"],\"keys\":[\"ca-gw\"],"
                               "\"products\":[\"gateway\"],\"ttl\":600}");
    char want[65];
    long before;
    kbt_resp r;

    (void)state;
    key_sha256(dk, want);
    r = provision_as(env, factory, "GW-K1", "b-main", csr, NULL);
    if (r.status != 201)
        fail_msg("provision: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    before = batch_count("b-main");
    /* The same CSR for another serial, another CSR over the same key pair, the same key with
     * its point compressed, and a device of another product: each refused. */
    r = provision_as(env, factory, "GW-K2", "b-main", csr, NULL);
    expect_key_taken(&r, "provision", "GW-K2", want);
    r = provision_as(env, factory, "GW-K3", "b-main", again, NULL);
    expect_key_taken(&r, "provision", "GW-K3", want);
    r = provision_as(env, factory, "GW-K4", "b-main", packed, NULL);
    expect_key_taken(&r, "provision", "GW-K4", want);
    r = provision_for(env, camera, "ca-cam", "camera", "CAM-1", "c-main", again, NULL);
    expect_key_taken(&r, "provision", "CAM-1", want);
    assert_int_equal(batch_count("b-main"), before);
    assert_int_equal(batch_count("c-main"), 0);
    assert_int_equal(device_status("gateway", "GW-K2"), 404);
    assert_int_equal(device_status("gateway", "GW-K3"), 404);
    assert_int_equal(device_status("camera", "CAM-1"), 404);

    /* The device renews with its own key; no other device rotates onto it. */
    r = rotate_as(rot, "GW-K1", again);
    if (r.status != 201)
        fail_msg("renewal: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    r = rotate_as(rot, "GW-0001", csr);
    expect_key_taken(&r, "rotate", "GW-0001", want);
    r = kbt_call(env, "GET", "/v1/views/devices/GW-K1?product=gateway", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "public_key_sha256")), want);
    assert_int_equal(json_array_size(json_object_get(r.json, "certificates")), 2);
    kbt_resp_free(&r);
    free(rot);
    free(camera);
    free(packed);
    free(again);
    free(csr);
    EVP_PKEY_free(dk);
}

/* Stations racing with one key: the check before signing or the ledger at commit lets one in. */
static void test_one_key_concurrent(void **state)
{
    char *csr = kbt_csr_pem(NULL, "x");
    pthread_t th[8];
    station st[8];
    int ok = 0, conflict = 0;
    long before = batch_count("b-main");

    (void)state;
    for (int i = 0; i < 8; i++)
        st[i] = (station){csr, "GW-R", "b-main", i, 0, ""};
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, station_run, &st[i]), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 8; i++) {
        ok += st[i].status == 201;
        conflict += st[i].status == 409 && strcmp(st[i].code, "conflict") == 0;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, 7);
    assert_int_equal(batch_count("b-main"), before + 1);
    free(csr);
}

/* Stations sending one request at once: one certificate, one unit, the same answer for all. */
static void test_concurrent_duplicates(void **state)
{
    char *csr = kbt_csr_pem(NULL, "GW-D1");
    pthread_t th[8];
    station st[8];
    int created = 0, replayed = 0, entries = 0, replays = 0;
    long before = batch_count("b-main");
    json_t *all, *e;
    size_t i;
    kbt_resp r;

    (void)state;
    for (int k = 0; k < 8; k++)
        st[k] = (station){csr, "GW-D1", "b-main", -1, 0, ""};
    for (int k = 0; k < 8; k++)
        assert_int_equal(pthread_create(&th[k], NULL, station_run, &st[k]), 0);
    for (int k = 0; k < 8; k++)
        pthread_join(th[k], NULL);
    for (int k = 0; k < 8; k++) {
        created += st[k].status == 201;
        replayed += st[k].status == 200;
    }
    assert_int_equal(created, 1);
    assert_int_equal(replayed, 7);
    assert_int_equal(batch_count("b-main"), before + 1);
    r = kbt_call(env, "GET", "/v1/views/devices/GW-D1?product=gateway", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "certificates")), 1);
    kbt_resp_free(&r);
    /* one key use recorded, seven reads of it */
    all = kbt_audit_all(env);
    json_array_foreach(all, i, e)
    {
        const json_t *dev = json_object_get(json_object_get(e, "detail"), "device");
        if (!json_is_object(dev) ||
            strcmp(json_string_value(json_object_get(dev, "serial")), "GW-D1") != 0)
            continue;
        entries += strcmp(json_string_value(json_object_get(e, "op")), "provision") == 0 &&
                   json_is_true(json_object_get(e, "key_use"));
        replays += strcmp(json_string_value(json_object_get(e, "op")), "provision.replay") == 0;
    }
    assert_int_equal(entries, 1);
    assert_int_equal(replays, 7);
    json_decref(all);
    free(csr);
}

/* A factory follows its own orders, and reads nothing else. */
static void test_factory_reads_its_batches(void **state)
{
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "GET", "/v1/batches/b-main", factory, NULL);
    if (r.status != 200)
        fail_msg("own batch: %ld %s", r.status, r.body);
    assert_int_equal(json_integer_value(json_object_get(r.json, "quantity")), 100);
    assert_int_equal(json_integer_value(json_object_get(r.json, "provisioned")),
                     batch_count("b-main"));
    assert_int_equal(json_integer_value(json_object_get(r.json, "remaining")),
                     100 - batch_count("b-main"));
    assert_true(r.audit_seq > 0);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/batches/b-small", factory, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "remaining")), 0);
    kbt_resp_free(&r);
    /* another factory's order, by a token whose batches would cover it */
    r = kbt_call(env, "GET", "/v1/batches/b-main", intruder, NULL);
    expect_status(&r, 403, "forbidden", "not ordered from factory:other");
    r = kbt_call(env, "GET", "/v1/batches/b-other", intruder, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/batches/b-other", factory, NULL);
    expect_status(&r, 403, "forbidden", "b-other");
    /* and nothing else of the read API */
    r = kbt_call(env, "GET", "/v1/audit", factory, NULL);
    expect_status(&r, 403, "forbidden", "read");
    r = kbt_call(env, "GET", "/v1/keys", factory, NULL);
    expect_status(&r, 403, "forbidden", "read");
    r = kbt_call(env, "GET", "/v1/views/devices/GW-0007?product=gateway", factory, NULL);
    expect_status(&r, 403, "forbidden", "read");
    r = kbt_call(env, "GET", "/v1/views/products/gateway", factory, NULL);
    expect_status(&r, 403, "forbidden", "read");
}

static void test_audit_has_every_certificate(void **state)
{
    json_t *all = kbt_audit_all(env), *e;
    size_t i;
    int issued = 0;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(kbr_audit_verify_entries(all, 1,
                                              "00000000000000000000000000000000"
                                              "00000000000000000000000000000000",
                                              &msg),
                     KBR_OK);
    json_array_foreach(all, i, e)
    {
        const char *op = json_string_value(json_object_get(e, "op"));
        const char *outcome = json_string_value(json_object_get(e, "outcome"));
        json_t *cert = json_object_get(json_object_get(e, "detail"), "certificate");
        if ((strcmp(op, "provision") != 0 && strcmp(op, "rotate") != 0) ||
            strcmp(outcome, "ok") != 0)
            continue;
        assert_int_equal(strlen(json_string_value(json_object_get(cert, "fingerprint"))), 64);
        assert_non_null(
            json_string_value(json_object_get(json_object_get(e, "detail"), "csr_sha256")));
        assert_int_equal(strlen(detail_str(e, "public_key_sha256")), 64);
        issued++;
    }
    /* GW-0001, GW-0007, GW-S1, GW-S2, 10 concurrent, GW-M0, GW-M1, one rotation, GW-K1 and its
     * renewal, one of the stations sharing a key, GW-D1 once */
    assert_int_equal(issued, 1 + 1 + 2 + 10 + 2 + 1 + 2 + 1 + 1);
    json_decref(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_certificate),
        cmocka_unit_test(test_key_certificate_chain),
        cmocka_unit_test(test_provision_and_verify),
        cmocka_unit_test(test_network_drop),
        cmocka_unit_test(test_bad_csr),
        cmocka_unit_test(test_scope),
        cmocka_unit_test(test_firmware_version_must_be_signed),
        cmocka_unit_test(test_exact_quota),
        cmocka_unit_test(test_token_max_uses),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_one_key_one_device),
        cmocka_unit_test(test_one_key_concurrent),
        cmocka_unit_test(test_concurrent_duplicates),
        cmocka_unit_test(test_factory_reads_its_batches),
        cmocka_unit_test(test_audit_has_every_certificate),
    };

    return cmocka_run_group_tests_name("provisioning", tests, setup, teardown);
}
