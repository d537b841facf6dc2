/*
 * test_deliver.c - ota-encryption keys delivered to devices at provisioning, over real HTTP
 * with the key in SoftHSM2: the key refuses every use but delivery; a delivery is opened by
 * an implementation of COSE of its own (tests/interop/cose_decrypt.js: cose-js for the
 * content layer, RFC 9053's recipient layer checked against the COSE working group's
 * example) with the device's private key, to the private key of the public key
 * GET /v1/keys/{name} shows; the same request again gets the same bytes; every refusal names
 * its field and leaves the device unprovisioned; each delivery is in the audit log with its
 * COSE_Encrypt, on the device's record and evidence, in the key's custody view, and
 * --verify-store rebuilds it from the log (SQLite stores).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "harness.h"

static kbt_env *env;
static char *factory; /* provision, keys ca-gw and ota-gw */
static char *no_ota;  /* provision, key ca-gw alone */
static char decryptor[PATH_MAX];

static int setup(void **state)
{
    kbt_resp r;

    (void)state;
    /* the tests run from the top of the tree */
    if (realpath("tests/interop/cose_decrypt.js", decryptor) == NULL)
        return -1;
    env = kbt_start(NULL);
    kbt_key(env, "ca-gw", "device-identity-ca", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-gw", "firmware-signing", "ecdsa-p256", "gateway");
    r = kbt_call(env, "POST", "/v1/keys/ca-gw/certificate", env->admin,
                 "{\"self_signed\":{\"subject\":\"CN=Gateway Device CA\",\"days\":3650}}");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/keys", env->admin,
                 "{\"name\":\"ota-gw\",\"purpose\":\"ota-encryption\",\"products\":[\"gateway\"]}");
    if (r.status != 201)
        fail_msg("ota-encryption key: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/keys", env->admin,
                 "{\"name\":\"ota-meter\",\"purpose\":\"ota-encryption\",\"algorithm\":"
                 "\"ecdh-p256\",\"products\":[\"meter\"]}");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/batches", env->admin,
                 "{\"batch\":\"b1\",\"product\":\"gateway\",\"factory\":\"factory:acme\","
                 "\"quantity\":50,\"market\":[\"DE\"]}");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    factory = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],"
                             "\"keys\":[\"ca-gw\",\"ota-*\"],\"products\":[\"gateway\"],"
                             "\"ttl\":3600}");
    no_ota = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],"
                            "\"keys\":[\"ca-gw\"],\"products\":[\"gateway\"],\"ttl\":3600}");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(factory);
    free(no_ota);
    kbt_free(env);
    return 0;
}

/* POST /v1/provision for gateway serial in batch b1 with CA key ca-gw; deliver is a JSON
 * array (text) or NULL. */
static kbt_resp provision(const char *tok, const char *serial, const char *csr, const char *deliver)
{
    json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "key", "ca-gw", "csr_pem", csr, "device",
                             "serial", serial, "product", "gateway", "batch", "b1");
    kbt_resp r;

    if (deliver != NULL)
        json_object_set_new(body, "deliver", json_loads(deliver, JSON_DECODE_ANY, NULL));
    r = kbt_callj(env, "POST", "/v1/provision", tok, body);
    json_decref(body);
    return r;
}

static char *csr_of(EVP_PKEY *key, const char *cn)
{
    X509_REQ *req = X509_REQ_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    long len;

    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_pubkey(req, key);
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    PEM_write_bio_X509_REQ(b, req);
    len = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)len);
    BIO_free(b);
    X509_REQ_free(req);
    return pem;
}

static void write_text(const char *name, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_private_key(const char *name, EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    long len;

    assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
    len = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)len);
    write_text(name, pem);
    free(pem);
    BIO_free(b);
}

/*
 * The COSE_Encrypt (base64) opened with the device's key by the independent implementation:
 * its JSON ({recipient_kid, key: {label: value}}), or NULL when it refused; new ref.
 */
static json_t *open_independently(EVP_PKEY *device, const char *cose_b64)
{
    char cmd[PATH_MAX + 64], *out = NULL;
    json_t *res = NULL;
    int rc;

    write_private_key("device.pem", device);
    write_text("delivery.b64", cose_b64);
    snprintf(cmd, sizeof(cmd), "node '%s' device.pem delivery.b64 2>&1", decryptor);
    rc = kbt_sh(env, cmd, &out);
    if (rc == 0)
        res = json_loads(out, 0, NULL);
    else if (out != NULL && strstr(out, "Cannot find module") != NULL)
        fail_msg("the interop tests need their npm packages: run contrib/install-deps.sh (%s)",
                 out);
    free(out);
    return res;
}

static const char *hex_at(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* The uncompressed point of a PEM public key, in hex. */
static void point_hex(const char *pem, char out[131])
{
    EVP_PKEY *pk = kbt_pem_to_pkey(pem);
    unsigned char pt[65];
    size_t n = 0;

    assert_non_null(pk);
    assert_int_equal(EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, 65, &n), 1);
    assert_int_equal(n, 65);
    kbr_hex_encode_buf(pt, 65, out);
    EVP_PKEY_free(pk);
}

/* d * G for the P-256 private key d (hex): its uncompressed point, in hex. */
static void public_of(const char *d_hex, char out[131])
{
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    EC_POINT *q = EC_POINT_new(g);
    BIGNUM *d = NULL;
    unsigned char pt[65];

    assert_int_equal(BN_hex2bn(&d, d_hex), 64);
    assert_int_equal(EC_POINT_mul(g, q, d, NULL, NULL, NULL), 1);
    assert_int_equal(EC_POINT_point2oct(g, q, POINT_CONVERSION_UNCOMPRESSED, pt, 65, NULL), 65);
    kbr_hex_encode_buf(pt, 65, out);
    BN_clear_free(d);
    EC_POINT_free(q);
    EC_GROUP_free(g);
}

/* The ledger's name of a key: SHA-256 of its DER SubjectPublicKeyInfo, in hex. */
static void spki_sha256(EVP_PKEY *key, char out[131])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);

    assert_true(n > 0);
    kbr_sha256_hex(der, (size_t)n, out);
    OPENSSL_free(der);
}

static json_t *key_object(const char *name)
{
    char path[128];
    kbt_resp r;
    json_t *k;

    snprintf(path, sizeof(path), "/v1/keys/%s", name);
    r = kbt_call(env, "GET", path, env->admin, NULL);
    assert_int_equal(r.status, 200);
    k = json_incref(r.json);
    kbt_resp_free(&r);
    return k;
}

/* An ota-encryption key is made in the HSM, extractable only wrapped, and serves no other
 * request: no signature, no device certificates, no registration of an outside object. */
static void test_key_is_for_delivery_only(void **state)
{
    json_t *k = key_object("ota-gw"), *hsm = json_object_get(k, "hsm");
    char *signer;
    kbt_resp r;

    (void)state;
    assert_string_equal(json_string_value(json_object_get(k, "purpose")), "ota-encryption");
    assert_string_equal(json_string_value(json_object_get(k, "algorithm")), "ecdh-p256");
    assert_string_equal(json_string_value(json_object_get(hsm, "label")), "kbr/key/ota-gw");
    assert_true(json_is_true(json_object_get(hsm, "sensitive")));
    assert_true(json_is_true(json_object_get(hsm, "always_sensitive")));
    assert_true(json_is_true(json_object_get(hsm, "extractable")));
    assert_true(json_is_true(json_object_get(hsm, "local")));
    json_decref(k);

    signer = kbt_token(env, "{\"sub\":\"ci:any\",\"ops\":[\"sign\"],\"ttl\":600}");
    r = kbt_call(env, "POST", "/v1/sign", signer,
                 "{\"key\":\"ota-gw\",\"digest\":\""
                 "0000000000000000000000000000000000000000000000000000000000000000\","
                 "\"hash\":\"sha256\"}");
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(kbt_err_message(&r), "ota-encryption"));
    kbt_resp_free(&r);
    free(signer);
    r = kbt_call(env, "POST", "/v1/provision", factory,
                 "{\"key\":\"ota-gw\",\"csr_pem\":\"x\",\"device\":{\"serial\":\"X\","
                 "\"product\":\"gateway\",\"batch\":\"b1\"}}");
    assert_int_equal(r.status, 403);
    kbt_resp_free(&r);
    /* generated here, never registered; P-256 only */
    r = kbt_call(env, "POST", "/v1/keys", env->admin,
                 "{\"name\":\"ota-x\",\"purpose\":\"ota-encryption\",\"products\":[\"gateway\"],"
                 "\"hsm_label\":\"outside\"}");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "hsm_label"));
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/keys", env->admin,
                 "{\"name\":\"ota-x\",\"purpose\":\"ota-encryption\",\"algorithm\":\"ecdsa-p384\","
                 "\"products\":[\"gateway\"]}");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "algorithm"));
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/keys", env->admin,
                 "{\"name\":\"fw-x\",\"purpose\":\"firmware-signing\",\"algorithm\":\"ecdh-p256\","
                 "\"products\":[\"gateway\"]}");
    assert_int_equal(r.status, 400);
    kbt_resp_free(&r);
}

/*
 * The delivery opens with the device's key, by an implementation of COSE of its own, to the
 * private key of ota-gw's public key; the recipient is the device's key.  The same request
 * again gets the same bytes and makes no second delivery.
 */
static void test_deliver_and_open(void **state)
{
    EVP_PKEY *device = NULL, *stranger = EVP_EC_gen("P-256");
    char *csr = kbt_csr_pem(&device, "GW-1"), want[131], got[131];
    json_t *k = key_object("ota-gw"), *opened, *cose_key, *delivered;
    const char *cose;
    char *first = NULL;
    kbt_resp r, again;

    (void)state;
    r = provision(factory, "GW-1", csr, "[\"ota-gw\"]");
    if (r.status != 201)
        fail_msg("provisioning with a delivery: %ld %s", r.status, r.body);
    delivered = json_object_get(r.json, "delivered");
    assert_int_equal(json_array_size(delivered), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(delivered, 0), "key")),
                        "ota-gw");
    cose = json_string_value(json_object_get(json_array_get(delivered, 0), "cose_encrypt_b64"));
    assert_non_null(cose);
    first = strdup(cose);

    opened = open_independently(device, cose);
    if (opened == NULL)
        fail_msg("the device's key did not open the delivery");
    cose_key = json_object_get(opened, "key");
    /* {1: 2 (EC2), -1: 1 (P-256), -2: x, -3: y, -4: d, 2: kid} */
    assert_int_equal(json_integer_value(json_object_get(cose_key, "1")), 2);
    assert_int_equal(json_integer_value(json_object_get(cose_key, "-1")), 1);
    assert_string_equal(hex_at(cose_key, "2"), hex_at(k, "public_key_sha256"));
    /* d is the private key of the public key the broker shows for ota-gw */
    point_hex(hex_at(k, "public_key_pem"), want);
    public_of(hex_at(cose_key, "-4"), got);
    assert_string_equal(got, want);
    assert_memory_equal(got + 2, hex_at(cose_key, "-2"), 64);
    /* sealed to this device: the recipient's kid names its key, and another key opens nothing */
    spki_sha256(device, want);
    assert_string_equal(hex_at(opened, "recipient_kid"), want);
    json_decref(opened);
    assert_null(open_independently(stranger, cose));
    kbt_resp_free(&r);

    /* the same request again: the same bytes, recorded as a replay with no second delivery */
    again = provision(factory, "GW-1", csr, "[\"ota-gw\"]");
    assert_int_equal(again.status, 200);
    assert_true(json_is_true(json_object_get(again.json, "replay")));
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(again.json, "delivered"), 0), "cose_encrypt_b64")),
        first);
    kbt_resp_free(&again);
    /* a replay asks for what the provisioning delivered: not fewer keys, nor others */
    again = provision(factory, "GW-1", csr, NULL);
    assert_int_equal(again.status, 409);
    assert_non_null(strstr(kbt_err_message(&again), "deliver"));
    kbt_resp_free(&again);

    free(first);
    free(csr);
    json_decref(k);
    EVP_PKEY_free(stranger);
    EVP_PKEY_free(device);
}

/* A refusal names its field, and the device stays unprovisioned: the next good request makes
 * it.  A refusal about a delivered key names that key as the entry's key. */
static void test_refusals(void **state)
{
    EVP_PKEY *p256 = NULL, *p384 = EVP_EC_gen("P-384"), *rsa = EVP_RSA_gen(2048);
    char *csr = kbt_csr_pem(&p256, "GW-2"), *csr384 = csr_of(p384, "GW-2"),
         *csr_rsa = csr_of(rsa, "GW-2");
    json_t *entries, *last;
    kbt_resp r;
    static const struct {
        const char *deliver;
        long status;
        const char *needle;
    } bad[] = {
        {"[]", 400, "deliver: must be an array"},
        {"\"ota-gw\"", 400, "deliver: must be an array"},
        {"[\"ota-gw\",\"ota-gw\"]", 400, "deliver[1]: \"ota-gw\" is named twice"},
        {"[\"a\",\"b\",\"c\",\"d\",\"e\"]", 400, "deliver: must be an array of 1 to 4"},
        {"[\"ota gw\"]", 400, "deliver[0]: not a valid name"},
        {"[\"ota-none\"]", 404, "deliver[0]: no key named"},
        {"[\"fw-gw\"]", 403, "deliver[0]: \"fw-gw\" is outside the token's keys"},
        {"[\"ota-meter\"]", 403, "deliver[0]: key \"ota-meter\" does not serve product"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = provision(factory, "GW-2", csr, bad[i].deliver);
        if (r.status != bad[i].status || strstr(kbt_err_message(&r), bad[i].needle) == NULL)
            fail_msg("deliver %s: expected %ld \"%s\", got %ld %s", bad[i].deliver, bad[i].status,
                     bad[i].needle, r.status, r.body);
        kbt_resp_free(&r);
    }
    /* the token must hold the key in its keys */
    r = provision(no_ota, "GW-2", csr, "[\"ota-gw\"]");
    assert_int_equal(r.status, 403);
    assert_non_null(
        strstr(kbt_err_message(&r), "deliver[0]: \"ota-gw\" is outside the token's keys"));
    kbt_resp_free(&r);
    entries = kbt_audit_all(env);
    last = json_array_get(entries, json_array_size(entries) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "key")), "ota-gw");
    assert_string_equal(json_string_value(json_object_get(last, "outcome")), "denied");
    json_decref(entries);
    /* only to an EC P-256 device key */
    r = provision(factory, "GW-2", csr384, "[\"ota-gw\"]");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "deliver: keys are delivered only to an EC P-256"));
    assert_non_null(strstr(kbt_err_message(&r), "secp384r1"));
    kbt_resp_free(&r);
    r = provision(factory, "GW-2", csr_rsa, "[\"ota-gw\"]");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "RSA"));
    kbt_resp_free(&r);
    /* nothing was made: the device is unknown, and the good request provisions it */
    r = kbt_call(env, "GET", "/v1/views/devices/GW-2?product=gateway", env->admin, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    r = provision(factory, "GW-2", csr, "[\"ota-gw\"]");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    free(csr);
    free(csr384);
    free(csr_rsa);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p256);
}

/* The delivery's record: the entry's effect and document, the device's record and evidence,
 * the key's custody, and a store the log rebuilds. */
static void test_on_the_record(void **state)
{
    EVP_PKEY *device = NULL;
    char *csr = kbt_csr_pem(&device, "GW-3"), sha[65], args[64], *out = NULL;
    json_t *entries, *entry = NULL, *fx, *one, *doc;
    unsigned char *cose = NULL;
    size_t len = 0, i;
    long seq;
    kbt_resp r, view;

    (void)state;
    r = provision(factory, "GW-3", csr, "[\"ota-gw\"]");
    assert_int_equal(r.status, 201);
    seq = r.audit_seq;
    assert_int_equal(kbr_b64_decode(json_string_value(json_object_get(
                                        json_array_get(json_object_get(r.json, "delivered"), 0),
                                        "cose_encrypt_b64")),
                                    &cose, &len),
                     KBR_OK);
    kbr_sha256_hex(cose, len, sha);
    kbt_resp_free(&r);

    /* the entry: a key.deliver effect after the device.provision, its COSE_Encrypt a document */
    entries = kbt_audit_all(env);
    json_array_foreach(entries, i, one)
    {
        if (json_integer_value(json_object_get(one, "seq")) == seq)
            entry = one;
    }
    assert_non_null(entry);
    fx = json_object_get(entry, "effects");
    assert_int_equal(json_array_size(fx), 2);
    one = json_array_get(fx, 1);
    assert_string_equal(hex_at(one, "type"), "key.deliver");
    assert_string_equal(hex_at(one, "key"), "ota-gw");
    assert_string_equal(hex_at(one, "serial"), "GW-3");
    assert_string_equal(hex_at(one, "cose_sha256"), sha);
    assert_string_equal(hex_at(one, "delivered_by"), "factory:acme");
    assert_string_equal(hex_at(one, "recipient_public_key_sha256"),
                        hex_at(json_array_get(fx, 0), "public_key_sha256"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(entry, "documents"), 0)),
                        sha);
    one = json_array_get(json_object_get(json_object_get(entry, "detail"), "delivered"), 0);
    assert_string_equal(hex_at(one, "cose_sha256"), sha);
    json_decref(entries);

    /* View D */
    view = kbt_call(env, "GET", "/v1/views/devices/GW-3?product=gateway", env->admin, NULL);
    assert_int_equal(view.status, 200);
    one = json_array_get(json_object_get(view.json, "deliveries"), 0);
    assert_non_null(one);
    assert_string_equal(hex_at(one, "key"), "ota-gw");
    assert_string_equal(hex_at(one, "cose_sha256"), sha);
    assert_int_equal(json_integer_value(json_object_get(one, "audit_seq")), seq);
    kbt_resp_free(&view);

    /* the evidence bundle holds the entry, the key's registration and the COSE_Encrypt */
    view = kbt_call(env, "GET", "/v1/evidence/devices/GW-3?product=gateway", env->admin, NULL);
    assert_int_equal(view.status, 200);
    doc = json_object_get(json_object_get(view.json, "documents"), sha);
    assert_non_null(doc);
    {
        bool has_entry = false, has_key = false;
        json_array_foreach(json_object_get(view.json, "entries"), i, one)
        {
            const json_t *e = json_object_get(one, "entry");
            has_entry = has_entry || json_integer_value(json_object_get(e, "seq")) == seq;
            has_key = has_key || (json_is_string(json_object_get(e, "key")) &&
                                  strcmp(hex_at(e, "key"), "ota-gw") == 0 &&
                                  strcmp(hex_at(e, "op"), "key.create") == 0);
        }
        assert_true(has_entry);
        assert_true(has_key);
    }
    kbt_resp_free(&view);

    /* View B: the key's custody counts its deliveries */
    view = kbt_call(env, "GET", "/v1/views/keys/ota-gw/custody", env->admin, NULL);
    assert_int_equal(view.status, 200);
    {
        long delivered = 0;
        json_array_foreach(json_object_get(view.json, "operations"), i, one)
        {
            if (strcmp(hex_at(one, "op"), "key.deliver") == 0 &&
                strcmp(hex_at(one, "sub"), "factory:acme") == 0)
                delivered = json_integer_value(json_object_get(one, "count"));
        }
        assert_true(delivered >= 2);
    }
    kbt_resp_free(&view);

    /* the store is what its log says */
    snprintf(args, sizeof(args), "-c keybroker.conf --verify-store");
    if (kbt_run_daemon(env, args, &out) != 0)
        fail_msg("--verify-store: %s", out);
    free(out);
    free(cose);
    free(csr);
    EVP_PKEY_free(device);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_is_for_delivery_only),
        cmocka_unit_test(test_deliver_and_open),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_on_the_record),
    };

    return cmocka_run_group_tests_name("deliver", tests, setup, teardown);
}
