/*
 * test_ca.c - ca/ against a real SoftHSM2 token made for this run in a
 * private directory: self-signed CA certificates signed by HSM keys of
 * every algorithm, device certificates issued from CSRs and checked by
 * OpenSSL's own chain verification, proof of possession, strict PEM
 * reading, issuer and signer mismatches, and certificates and chains
 * attached to a key, each bad one built here with OpenSSL.
 */
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dlfcn.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "softhsm_token.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kbr_ca.h"

#define CA_SUBJECT "CN=Acme Device CA,O=Acme GmbH,C=DE"
#define DAY        86400

/* ---- the HSM keys every test uses ---- */

static kbr_hsm *g_hsm;
static kbr_hsm_session *g_s;

static const struct {
    const char *label;
    kbr_alg alg;
} ca_keys[] = {
    {"ca-p256", KBR_ALG_ECDSA_P256},    {"ca-p384", KBR_ALG_ECDSA_P384},
    {"ca-rsa3072", KBR_ALG_RSA_3072},   {"ca-ed25519", KBR_ALG_ED25519},
    {"other-p256", KBR_ALG_ECDSA_P256},
};

static int keys_setup(void **state)
{
    kbr_secret *pin = NULL;
    kbr_hsm_key_info info = {.label = ""};
    kbr_msg msg = {{0}};
    size_t i;

    (void)state;
    if (kbr_secret_new(KBT_USER_PIN, strlen(KBT_USER_PIN), &pin) != KBR_OK)
        return -1;
    if (kbr_hsm_open(kbt_module_path, KBT_TOKEN_LABEL, pin, &g_hsm, &msg) != KBR_OK) {
        kbr_secret_free(pin);
        return -1;
    }
    kbr_secret_free(pin);
    if (kbr_hsm_session_open(g_hsm, &g_s) != KBR_OK)
        return -1;
    for (i = 0; i < sizeof(ca_keys) / sizeof(ca_keys[0]); i++)
        if (kbr_hsm_generate(g_s, ca_keys[i].label, ca_keys[i].alg, &info) != KBR_OK)
            return -1;
    return 0;
}

static int keys_teardown(void **state)
{
    (void)state;
    kbr_hsm_session_close(g_s);
    kbr_hsm_close(g_hsm);
    return 0;
}

/* ---- building blocks of the tests ---- */

static EVP_PKEY *hsm_pub(const char *label)
{
    EVP_PKEY *pk = NULL;

    assert_int_equal(kbr_hsm_public_key(g_s, label, &pk), KBR_OK);
    return pk;
}

static void signer_for(const char *label, kbr_alg alg, kbr_ca_hsm_ctx *ctx, kbr_ca_signer *sg)
{
    assert_int_equal(kbr_ca_hsm_signer(g_s, label, alg, ctx, sg), KBR_OK);
}

static kbr_ca_cert *make_ca(const char *label, kbr_alg alg, long days, time_t now)
{
    kbr_ca_hsm_ctx ctx;
    kbr_ca_signer sg;
    kbr_ca_cert *ca = NULL;
    kbr_msg msg = {{0}};
    EVP_PKEY *pub = hsm_pub(label);

    signer_for(label, alg, &ctx, &sg);
    assert_int_equal(kbr_ca_self_signed(&sg, pub, CA_SUBJECT, days, now, NULL, &ca, &msg), KBR_OK);
    EVP_PKEY_free(pub);
    return ca;
}

static char *bio_string(BIO *bio)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    char *s = strndup(data, (size_t)len);

    assert_non_null(s);
    return s;
}

/* A request as a device would make it, asking for more than it may have. */
static X509_REQ *make_req(EVP_PKEY *key)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_REQ_get_subject_name(req);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
    const EVP_MD *md = EVP_PKEY_is_a(key, "ED25519") ? NULL : EVP_sha256();

    assert_non_null(bc);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"attacker-chosen", -1, -1,
                                                0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)"Evil Corp", -1, -1, 0),
                     1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    assert_true(sk_X509_EXTENSION_push(exts, bc) > 0);
    assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    assert_true(X509_REQ_sign(req, key, md) > 0);
    return req;
}

static char *der_pem(const char *label, const unsigned char *der, long len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s;

    assert_true(PEM_write_bio(bio, label, "", der, len) > 0);
    s = bio_string(bio);
    BIO_free(bio);
    return s;
}

static char *make_csr_pem(EVP_PKEY *key)
{
    X509_REQ *req = make_req(key);
    BIO *bio = BIO_new(BIO_s_mem());
    char *s;

    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    s = bio_string(bio);
    BIO_free(bio);
    X509_REQ_free(req);
    return s;
}

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);

    assert_non_null(s);
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

static kbr_ca_csr *parse_csr(const char *pem)
{
    kbr_ca_csr *csr = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_ca_csr_parse(pem, &csr, &msg), KBR_OK);
    return csr;
}

static void assert_csr_refused(const char *pem, const char *expect)
{
    kbr_ca_csr *csr = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_ca_csr_parse(pem, &csr, &msg), KBR_ERR_BAD_REQUEST);
    assert_null(csr);
    assert_string_equal(msg.text, expect);
}

static kbr_ca_issuer *make_issuer(const kbr_ca_cert *ca, const char *label, kbr_alg alg,
                                  kbr_ca_hsm_ctx *ctx)
{
    kbr_ca_signer sg;
    kbr_ca_issuer *iss = NULL;
    kbr_msg msg = {{0}};
    EVP_PKEY *pub = hsm_pub(label);

    signer_for(label, alg, ctx, &sg);
    assert_int_equal(kbr_ca_issuer_new(kbr_ca_cert_pem(ca), &sg, pub, &iss, &msg), KBR_OK);
    EVP_PKEY_free(pub);
    return iss;
}

static kbr_ca_cert *issue(const kbr_ca_issuer *iss, const kbr_ca_csr *csr, const char *serial,
                          long days, time_t now)
{
    kbr_ca_cert *c = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_ca_issue_device(iss, csr, serial, days, now, NULL, &c, &msg), KBR_OK);
    assert_non_null(c);
    /* A device certificate is built, not read back: its PEM is what a device gets. */
    assert_null(kbr_ca_cert_x509_peek(c));
    return c;
}

/* A certificate as its PEM reads, as a device or a verifier reads it.  Caller frees. */
/*
 * The certificate as it goes out, read from its PEM.  Its bytes are DER (OpenSSL encodes
 * what it read, the TBS included, to the same bytes) and its fingerprint is their SHA-256.
 */
static X509 *as_sent(const kbr_ca_cert *c)
{
    BIO *bio = BIO_new_mem_buf(kbr_ca_cert_pem(c), -1);
    unsigned char *der = NULL, *again = NULL;
    char *name = NULL, *header = NULL, fingerprint[65];
    long len = 0;
    const unsigned char *p;
    X509 *x;

    assert_int_equal(PEM_read_bio(bio, &name, &header, &der, &len), 1);
    assert_string_equal(name, PEM_STRING_X509);
    p = der;
    x = d2i_X509(NULL, &p, len);
    assert_non_null(x);
    assert_ptr_equal(p, der + len);
    assert_true(i2d_re_X509_tbs(x, NULL) > 0);
    assert_int_equal(i2d_X509(x, &again), len);
    assert_memory_equal(again, der, (size_t)len);
    kbr_sha256_hex(der, (size_t)len, fingerprint);
    assert_string_equal(kbr_ca_cert_fingerprint(c), fingerprint);
    OPENSSL_free(again);
    OPENSSL_free(der);
    OPENSSL_free(name);
    OPENSSL_free(header);
    BIO_free(bio);
    return x;
}

/* Criticality of the extension nid, -1 if absent. */
static int ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);

    return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static void assert_ski_is_key_hash(X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);

    assert_int_equal(X509_pubkey_digest(x, EVP_sha1(), md, &len), 1);
    assert_non_null(ski);
    assert_int_equal(ASN1_STRING_length(ski), (int)len);
    assert_memory_equal(ASN1_STRING_get0_data(ski), md, len);
}

static void assert_sig_alg(X509 *x, int nid)
{
    const ASN1_OBJECT *obj = NULL;

    assert_int_equal(X509_get_signature_nid(x), nid);
    X509_ALGOR_get0(&obj, NULL, NULL, X509_get0_tbs_sigalg(x));
    assert_int_equal(OBJ_obj2nid(obj), nid);
}

static void assert_validity(X509 *x, time_t from, time_t to)
{
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), from), 0);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), to), 0);
}

static void assert_name_entry(const X509_NAME *name, int nid, const char *want)
{
    char buf[128];

    assert_true(X509_NAME_get_text_by_NID(name, nid, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, want);
}

static int chain_verify(X509 *leaf, X509 *ca, time_t at)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT), 1);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), at);
    ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

/* ---- the CA certificate and device certificates, per algorithm ---- */

static void check_ca_cert(X509 *ca, EVP_PKEY *pub, int sig_nid, time_t now)
{
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);

    assert_int_equal(X509_verify(ca, pub), 1);
    assert_sig_alg(ca, sig_nid);
    assert_int_equal(X509_get_version(ca), X509_VERSION_3);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(ca), X509_get_issuer_name(ca)), 0);
    assert_name_entry(X509_get_subject_name(ca), NID_commonName, "Acme Device CA");
    assert_name_entry(X509_get_subject_name(ca), NID_organizationName, "Acme GmbH");
    assert_name_entry(X509_get_subject_name(ca), NID_countryName, "DE");
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_true(bc->ca);
    assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(ext_critical(ca, NID_key_usage), 1);
    assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN | KU_DIGITAL_SIGNATURE);
    assert_ski_is_key_hash(ca);
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(ca), X509_get0_subject_key_id(ca)), 0);
    assert_validity(ca, now - 60, now + 3650L * DAY);
}

static void check_device(X509 *d, X509 *ca, EVP_PKEY *dev, int sig_nid, time_t now)
{
    const X509_NAME *subject = X509_get_subject_name(d);
    BIGNUM *sn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(d), NULL);

    assert_int_equal(chain_verify(d, ca, now), 1);
    assert_sig_alg(d, sig_nid);
    assert_int_equal(X509_get_version(d), X509_VERSION_3);
    assert_int_equal(X509_NAME_entry_count(subject), 1);
    assert_name_entry(subject, NID_commonName, "SN-0001");
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(d), X509_get_subject_name(ca)), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(d), dev), 1);
    assert_false(BN_is_negative(sn));
    assert_in_range(BN_num_bits(sn), 100, 127);
    BN_free(sn);
    /* Exactly the broker's extensions: the CSR's CA:TRUE request is not copied. */
    assert_int_equal(X509_get_ext_count(d), 5);
    assert_int_equal(ext_critical(d, NID_basic_constraints), 1);
    assert_int_equal(X509_get_extension_flags(d) & EXFLAG_CA, 0);
    assert_int_equal(ext_critical(d, NID_key_usage), 1);
    assert_int_equal(X509_get_key_usage(d), KU_DIGITAL_SIGNATURE);
    assert_int_equal(ext_critical(d, NID_ext_key_usage), 0);
    assert_int_equal(X509_get_extended_key_usage(d), XKU_SSL_CLIENT);
    assert_ski_is_key_hash(d);
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(d), X509_get0_subject_key_id(ca)), 0);
    assert_validity(d, now - 60, now + 365L * DAY);
}

/* A device key of each kind a request may carry, so each shape of SubjectPublicKeyInfo
 * parameters (a curve's OID, NULL, none) is copied into a certificate. */
static EVP_PKEY *device_key(const char *kind)
{
    if (strcmp(kind, "ED25519") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (strcmp(kind, "RSA") == 0)
        return EVP_RSA_gen(2048);
    return EVP_EC_gen(kind);
}

static void run_alg(const char *label, kbr_alg alg, int sig_nid, const char *dev_kind)
{
    time_t now = time(NULL);
    kbr_ca_cert *ca = make_ca(label, alg, 3650, now), *d1, *d2;
    X509 *x1, *x2;
    EVP_PKEY *capub = hsm_pub(label), *dev = device_key(dev_kind);
    kbr_ca_hsm_ctx ctx;
    kbr_ca_issuer *iss = make_issuer(ca, label, alg, &ctx);
    char *csr_pem = make_csr_pem(dev);
    kbr_ca_csr *csr = parse_csr(csr_pem);

    check_ca_cert(kbr_ca_cert_x509_peek(ca), capub, sig_nid, now);
    d1 = issue(iss, csr, "SN-0001", 365, now);
    d2 = issue(iss, csr, "SN-0001", 365, now);
    x1 = as_sent(d1);
    x2 = as_sent(d2);
    check_device(x1, kbr_ca_cert_x509_peek(ca), dev, sig_nid, now);
    check_device(x2, kbr_ca_cert_x509_peek(ca), dev, sig_nid, now);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x1), X509_get0_serialNumber(x2)),
                         0);
    assert_string_not_equal(kbr_ca_cert_serial_hex(d1), kbr_ca_cert_serial_hex(d2));
    /* Outside the window the chain does not verify. */
    assert_int_not_equal(chain_verify(x1, kbr_ca_cert_x509_peek(ca), now + 366L * DAY), 1);
    X509_free(x1);
    X509_free(x2);
    kbr_ca_cert_free(d1);
    kbr_ca_cert_free(d2);
    kbr_ca_csr_free(csr);
    free(csr_pem);
    kbr_ca_issuer_free(iss);
    kbr_ca_cert_free(ca);
    EVP_PKEY_free(capub);
    EVP_PKEY_free(dev);
}

static void test_ecdsa_p256(void **state)
{
    (void)state;
    run_alg("ca-p256", KBR_ALG_ECDSA_P256, NID_ecdsa_with_SHA256, "P-256");
}

static void test_ecdsa_p384(void **state)
{
    (void)state;
    run_alg("ca-p384", KBR_ALG_ECDSA_P384, NID_ecdsa_with_SHA384, "ED25519");
}

static void test_rsa_3072(void **state)
{
    (void)state;
    run_alg("ca-rsa3072", KBR_ALG_RSA_3072, NID_sha256WithRSAEncryption, "RSA");
}

static void test_ed25519(void **state)
{
    (void)state;
    run_alg("ca-ed25519", KBR_ALG_ED25519, NID_ED25519, "P-384");
}

/* ---- the certificate object ---- */

static void expect_time(time_t t, char out[KBR_TIME_LEN])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, KBR_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void test_cert_accessors(void **state)
{
    time_t now = time(NULL);
    kbr_ca_cert *ca = make_ca("ca-p256", KBR_ALG_ECDSA_P256, 3650, now), *again = NULL;
    X509 *x = kbr_ca_cert_x509_peek(ca);
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    char fp[65], want[KBR_TIME_LEN], got[KBR_TIME_LEN], *hex, *p;
    BIGNUM *sn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    kbr_msg msg = {{0}};

    (void)state;
    kbr_sha256_hex(der, (size_t)len, fp);
    assert_string_equal(kbr_ca_cert_fingerprint(ca), fp);
    hex = BN_bn2hex(sn);
    for (p = hex; *p != '\0'; p++)
        *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    assert_string_equal(kbr_ca_cert_serial_hex(ca), hex);
    assert_int_equal(kbr_ca_cert_not_before(ca), now - 60);
    assert_int_equal(kbr_ca_cert_not_after(ca), now + 3650L * DAY);
    expect_time(now + 3650L * DAY, want);
    kbr_ca_cert_not_after_str(ca, got);
    assert_string_equal(got, want);
    expect_time(now - 60, want);
    kbr_ca_cert_not_before_str(ca, got);
    assert_string_equal(got, want);
    assert_non_null(strstr(kbr_ca_cert_pem(ca), "-----BEGIN CERTIFICATE-----"));

    /* Re-reading the stored PEM gives the same certificate. */
    assert_int_equal(kbr_ca_cert_parse(kbr_ca_cert_pem(ca), &again, &msg), KBR_OK);
    assert_string_equal(kbr_ca_cert_fingerprint(again), fp);
    assert_string_equal(kbr_ca_cert_serial_hex(again), hex);
    assert_int_equal(kbr_ca_cert_not_after(again), now + 3650L * DAY);
    OPENSSL_free(hex);
    OPENSSL_free(der);
    BN_free(sn);
    kbr_ca_cert_free(again);
    kbr_ca_cert_free(ca);
}

static void test_cert_parse_refused(void **state)
{
    time_t now = time(NULL);
    kbr_ca_cert *ca = make_ca("ca-p256", KBR_ALG_ECDSA_P256, 30, now), *c = NULL;
    char *two = concat(kbr_ca_cert_pem(ca), kbr_ca_cert_pem(ca));
    char *junk = concat(kbr_ca_cert_pem(ca), "junk\n");
    const char *bad[] = {"", "garbage", two, junk};
    kbr_msg msg = {{0}};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kbr_ca_cert_parse(bad[i], &c, &msg), KBR_ERR_BAD_REQUEST);
        assert_null(c);
        assert_string_equal(msg.text, "pem: not a PEM certificate");
    }
    free(two);
    free(junk);
    kbr_ca_cert_free(ca);
}

/* ---- CSRs ---- */

static void test_csr_accessors(void **state)
{
    EVP_PKEY *dev = EVP_EC_gen("P-256");
    X509_REQ *req = make_req(dev);
    BIO *bio = BIO_new(BIO_s_mem());
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    char want[65], *pem;
    kbr_ca_csr *csr;

    (void)state;
    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    pem = bio_string(bio);
    csr = parse_csr(pem);
    kbr_sha256_hex(der, (size_t)len, want);
    assert_string_equal(kbr_ca_csr_sha256_hex(csr), want);
    assert_string_equal(kbr_ca_csr_subject(csr), "O=Evil Corp,CN=attacker-chosen");
    assert_int_equal(EVP_PKEY_eq(kbr_ca_csr_pubkey_peek(csr), dev), 1);
    kbr_ca_csr_free(csr);
    free(pem);
    OPENSSL_free(der);
    BIO_free(bio);
    X509_REQ_free(req);
    EVP_PKEY_free(dev);
}

static void test_csr_key_types(void **state)
{
    EVP_PKEY *ok_keys[] = {EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), EVP_RSA_gen(2048),
                           EVP_EC_gen("P-384")};
    EVP_PKEY *bad_keys[] = {EVP_EC_gen("P-521"), EVP_RSA_gen(1024), EVP_EC_gen("secp256k1")};
    char *pem;
    size_t i;

    (void)state;
    for (i = 0; i < 3; i++) {
        assert_non_null(ok_keys[i]);
        pem = make_csr_pem(ok_keys[i]);
        kbr_ca_csr_free(parse_csr(pem));
        free(pem);
        EVP_PKEY_free(ok_keys[i]);
    }
    for (i = 0; i < 3; i++) {
        assert_non_null(bad_keys[i]);
        pem = make_csr_pem(bad_keys[i]);
        assert_csr_refused(pem, "csr_pem: key type not accepted");
        free(pem);
        EVP_PKEY_free(bad_keys[i]);
    }
}

/*
 * The request's key is read from its own bytes for EC points and Ed25519, and by OpenSSL's
 * reader for the rest: either way it is the device's key, and the SubjectPublicKeyInfo
 * handed on (to the certificate, to the key's name) is the request's, byte for byte.
 */
static void test_csr_key_as_sent(void **state)
{
    EVP_PKEY *keys[] = {EVP_EC_gen("P-256"), EVP_EC_gen("P-384"),
                        EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), EVP_RSA_gen(2048),
                        EVP_EC_gen("P-256")};
    size_t n = sizeof(keys) / sizeof(keys[0]);

    (void)state;
    /* the last one sends its point compressed */
    assert_int_equal(EVP_PKEY_set_utf8_string_param(
                         keys[n - 1], OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
                     1);
    for (size_t i = 0; i < n; i++) {
        X509_REQ *req = make_req(keys[i]);
        BIO *bio = BIO_new(BIO_s_mem());
        unsigned char *sent = NULL, *kept = NULL;
        int sent_len = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &sent), kept_len;
        char *pem;
        kbr_ca_csr *csr;

        assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
        pem = bio_string(bio);
        csr = parse_csr(pem);
        assert_int_equal(EVP_PKEY_eq(kbr_ca_csr_pubkey_peek(csr), keys[i]), 1);
        kept_len = i2d_X509_PUBKEY(kbr_ca_csr_spki_peek(csr), &kept);
        assert_true(sent_len > 0);
        assert_int_equal(kept_len, sent_len);
        assert_memory_equal(kept, sent, (size_t)sent_len);
        if (i == n - 1)
            assert_int_equal(sent[sent_len - 33] & ~1, POINT_CONVERSION_COMPRESSED);
        kbr_ca_csr_free(csr);
        OPENSSL_free(sent);
        OPENSSL_free(kept);
        free(pem);
        BIO_free(bio);
        X509_REQ_free(req);
        EVP_PKEY_free(keys[i]);
    }
}

/* A P-256 point that is not on the curve is no key, whichever reader sees it. */
static void test_csr_point_off_curve(void **state)
{
    EVP_PKEY *dev = EVP_EC_gen("P-256");
    X509_REQ *req = make_req(dev);
    unsigned char *der = NULL, *spki = NULL, *at;
    int len = i2d_X509_REQ(req, &der),
        spki_len = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &spki);
    char *pem;

    (void)state;
    at = memmem(der, (size_t)len, spki, (size_t)spki_len);
    assert_non_null(at);
    /* the point is the SubjectPublicKeyInfo's last 65 bytes: flip a bit of y */
    assert_int_equal(at[spki_len - 65], POINT_CONVERSION_UNCOMPRESSED);
    at[spki_len - 1] ^= 0x01;
    pem = der_pem("CERTIFICATE REQUEST", der, len);
    assert_csr_refused(pem, "csr_pem: key type not accepted");
    free(pem);
    OPENSSL_free(spki);
    OPENSSL_free(der);
    X509_REQ_free(req);
    EVP_PKEY_free(dev);
}

static void test_csr_tampered(void **state)
{
    EVP_PKEY *dev = EVP_EC_gen("P-256");
    X509_REQ *req = make_req(dev);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    char *pem;

    (void)state;
    /* The last byte is the signature's. */
    der[len - 1] ^= 0x01;
    pem = der_pem("CERTIFICATE REQUEST", der, len);
    assert_csr_refused(pem, "csr_pem: signature does not verify (no proof of possession)");
    free(pem);
    OPENSSL_free(der);
    X509_REQ_free(req);
    EVP_PKEY_free(dev);
}

static void test_csr_not_a_csr(void **state)
{
    EVP_PKEY *dev = EVP_EC_gen("P-256");
    char *csr = make_csr_pem(dev);
    kbr_ca_cert *ca = make_ca("ca-p256", KBR_ALG_ECDSA_P256, 30, time(NULL));
    char *two = concat(csr, csr), *junk_after = concat(csr, "junk"),
         *junk_before = concat("junk\n", csr), *cert_then_csr = concat(kbr_ca_cert_pem(ca), csr);
    char *big = malloc(KBR_CA_CSR_MAX + 2);
    const char *bad[] = {"",         "garbage",   kbr_ca_cert_pem(ca), two,
                         junk_after, junk_before, cert_then_csr,       big};
    size_t i;
    char *old_label, *spaced = concat(" \n", csr);

    (void)state;
    memset(big, ' ', KBR_CA_CSR_MAX + 1);
    memcpy(big, csr, strlen(csr));
    big[KBR_CA_CSR_MAX + 1] = '\0';
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_csr_refused(bad[i], "csr_pem: not a PEM certificate request");
    /* Whitespace around it and the older label are fine. */
    kbr_ca_csr_free(parse_csr(spaced));
    {
        X509_REQ *req = make_req(dev);
        unsigned char *d = NULL;
        int l = i2d_X509_REQ(req, &d);

        old_label = der_pem("NEW CERTIFICATE REQUEST", d, l);
        kbr_ca_csr_free(parse_csr(old_label));
        OPENSSL_free(d);
        X509_REQ_free(req);
    }
    free(old_label);
    free(spaced);
    free(big);
    free(two);
    free(junk_after);
    free(junk_before);
    free(cert_then_csr);
    free(csr);
    kbr_ca_cert_free(ca);
    EVP_PKEY_free(dev);
}

/* ---- issuing: refusals ---- */

typedef struct {
    time_t now;
    kbr_ca_cert *ca;
    kbr_ca_hsm_ctx ctx;
    kbr_ca_issuer *iss;
    EVP_PKEY *dev;
    char *csr_pem;
    kbr_ca_csr *csr;
} fixture;

static void fixture_init(fixture *f, long ca_days)
{
    f->now = time(NULL);
    f->ca = make_ca("ca-p256", KBR_ALG_ECDSA_P256, ca_days, f->now);
    f->iss = make_issuer(f->ca, "ca-p256", KBR_ALG_ECDSA_P256, &f->ctx);
    f->dev = EVP_EC_gen("P-256");
    f->csr_pem = make_csr_pem(f->dev);
    f->csr = parse_csr(f->csr_pem);
}

static void fixture_cleanup(fixture *f)
{
    kbr_ca_csr_free(f->csr);
    free(f->csr_pem);
    EVP_PKEY_free(f->dev);
    kbr_ca_issuer_free(f->iss);
    kbr_ca_cert_free(f->ca);
}

static void test_issue_bad_serial(void **state)
{
    fixture f;
    char long_cn[66];
    const char *bad[] = {"", long_cn, "SN 1", "SN/1", "SN\xc3\xa9", "SN,CN=x", NULL};
    kbr_ca_cert *c = NULL;
    X509 *x;
    kbr_msg msg = {{0}};
    size_t i;

    (void)state;
    fixture_init(&f, 3650);
    memset(long_cn, 'a', 65);
    long_cn[65] = '\0';
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kbr_ca_issue_device(f.iss, f.csr, bad[i], 365, f.now, NULL, &c, &msg),
                         KBR_ERR_BAD_REQUEST);
        assert_null(c);
        assert_memory_equal(msg.text, "device.serial: ", 15);
    }
    long_cn[64] = '\0';
    c = issue(f.iss, f.csr, long_cn, 365, f.now);
    x = as_sent(c);
    assert_name_entry(X509_get_subject_name(x), NID_commonName, long_cn);
    X509_free(x);
    kbr_ca_cert_free(c);
    c = issue(f.iss, f.csr, "Az09._:-", 365, f.now);
    kbr_ca_cert_free(c);
    c = NULL;
    assert_int_equal(kbr_ca_issue_device(f.iss, f.csr, "SN-1", 0, f.now, NULL, &c, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_memory_equal(msg.text, "validity_days: ", 15);
    assert_int_equal(
        kbr_ca_issue_device(f.iss, f.csr, "SN-1", KBR_CA_DAYS_MAX + 1, f.now, NULL, &c, &msg),
        KBR_ERR_BAD_REQUEST);
    assert_null(c);
    fixture_cleanup(&f);
}

static void test_issue_capped_by_ca(void **state)
{
    fixture f;
    kbr_ca_cert *c;
    X509 *x;
    kbr_msg msg = {{0}};

    (void)state;
    fixture_init(&f, 10);
    c = issue(f.iss, f.csr, "SN-1", 365, f.now);
    assert_int_equal(kbr_ca_cert_not_after(c), kbr_ca_cert_not_after(f.ca));
    x = as_sent(c);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), f.now + 10 * DAY), 0);
    X509_free(x);
    kbr_ca_cert_free(c);
    c = NULL;
    assert_int_equal(
        kbr_ca_issue_device(f.iss, f.csr, "SN-1", 365, f.now + 11 * DAY, NULL, &c, &msg),
        KBR_ERR_CONFLICT);
    assert_null(c);
    assert_non_null(strstr(msg.text, "expired"));
    fixture_cleanup(&f);
}

static void test_issuer_mismatch(void **state)
{
    fixture f;
    kbr_ca_hsm_ctx ctx;
    kbr_ca_signer sg384, sg256;
    EVP_PKEY *pub384 = hsm_pub("ca-p384"), *pub256 = hsm_pub("ca-p256");
    kbr_ca_issuer *iss = NULL;
    kbr_ca_cert *leaf;
    kbr_msg msg = {{0}};

    (void)state;
    fixture_init(&f, 3650);
    /* The P-256 CA's certificate with the P-384 key's signer. */
    signer_for("ca-p384", KBR_ALG_ECDSA_P384, &ctx, &sg384);
    assert_int_equal(kbr_ca_issuer_new(kbr_ca_cert_pem(f.ca), &sg384, pub384, &iss, &msg),
                     KBR_ERR_CONFLICT);
    assert_null(iss);
    assert_string_equal(msg.text, "issuer: certificate is not for the signing key's public key");
    /* The right public key but a signer of another algorithm. */
    assert_int_equal(kbr_ca_issuer_new(kbr_ca_cert_pem(f.ca), &sg384, pub256, &iss, &msg),
                     KBR_ERR_CONFLICT);
    assert_string_equal(msg.text, "issuer: certificate key is not ecdsa-p384");
    /* A device certificate is no CA certificate, even for a key that matches. */
    leaf = issue(f.iss, f.csr, "SN-1", 365, f.now);
    signer_for("ca-p256", KBR_ALG_ECDSA_P256, &ctx, &sg256);
    assert_int_equal(kbr_ca_issuer_new(kbr_ca_cert_pem(leaf), &sg256, f.dev, &iss, &msg),
                     KBR_ERR_CONFLICT);
    assert_string_equal(msg.text, "issuer: not a CA certificate (no basicConstraints CA:TRUE)");
    assert_int_equal(kbr_ca_issuer_new(f.csr_pem, &sg256, pub256, &iss, &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "issuer: not a PEM certificate");
    assert_null(iss);
    kbr_ca_cert_free(leaf);
    EVP_PKEY_free(pub384);
    EVP_PKEY_free(pub256);
    fixture_cleanup(&f);
}

/* A signer that spoils the HSM's signature in transit. */
static kbr_err corrupting_sign(void *arg, const unsigned char *tbs, size_t tbslen,
                               unsigned char **sig, size_t *siglen)
{
    const kbr_ca_signer *inner = arg;
    kbr_err err = inner->sign(inner->arg, tbs, tbslen, sig, siglen);

    if (err == KBR_OK)
        (*sig)[*siglen - 1] ^= 0x01;
    return err;
}

static void test_bad_signature_never_leaves(void **state)
{
    fixture f;
    kbr_ca_hsm_ctx ctx;
    kbr_ca_signer other, inner, bad;
    EVP_PKEY *pub256 = hsm_pub("ca-p256");
    kbr_ca_issuer *iss = NULL;
    kbr_ca_cert *c = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    fixture_init(&f, 3650);
    /* The caller claims the CA's public key but the signer uses another HSM key. */
    signer_for("other-p256", KBR_ALG_ECDSA_P256, &ctx, &other);
    assert_int_equal(kbr_ca_issuer_new(kbr_ca_cert_pem(f.ca), &other, pub256, &iss, &msg), KBR_OK);
    assert_int_equal(kbr_ca_issue_device(iss, f.csr, "SN-1", 365, f.now, NULL, &c, &msg),
                     KBR_ERR_CRYPTO);
    assert_null(c);
    assert_string_equal(msg.text, "certificate signature does not verify with the issuer key");
    kbr_ca_issuer_free(iss);
    iss = NULL;
    assert_int_equal(kbr_ca_self_signed(&other, pub256, CA_SUBJECT, 30, f.now, NULL, &c, &msg),
                     KBR_ERR_CRYPTO);
    assert_null(c);

    signer_for("ca-p256", KBR_ALG_ECDSA_P256, &ctx, &inner);
    bad = (kbr_ca_signer){.alg = KBR_ALG_ECDSA_P256, .sign = corrupting_sign, .arg = &inner};
    assert_int_equal(kbr_ca_issuer_new(kbr_ca_cert_pem(f.ca), &bad, pub256, &iss, &msg), KBR_OK);
    assert_int_equal(kbr_ca_issue_device(iss, f.csr, "SN-1", 365, f.now, NULL, &c, &msg),
                     KBR_ERR_CRYPTO);
    assert_null(c);
    kbr_ca_issuer_free(iss);
    EVP_PKEY_free(pub256);
    fixture_cleanup(&f);
}

static void test_hsm_signer_args(void **state)
{
    kbr_ca_hsm_ctx ctx;
    kbr_ca_signer sg;
    char long_label[KBR_HSM_LABEL_MAX + 1];

    (void)state;
    memset(long_label, 'k', KBR_HSM_LABEL_MAX);
    long_label[KBR_HSM_LABEL_MAX] = '\0';
    assert_int_equal(kbr_ca_hsm_signer(g_s, "", KBR_ALG_ECDSA_P256, &ctx, &sg),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_ca_hsm_signer(g_s, long_label, KBR_ALG_ECDSA_P256, &ctx, &sg),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_ca_hsm_signer(g_s, "ca-p256", KBR_ALG__COUNT, &ctx, &sg),
                     KBR_ERR_BAD_REQUEST);
}

/* ---- self-signed subjects ---- */

static void test_self_signed_refused(void **state)
{
    const char *bad[] = {"",         "CN",           "CN=",       "XX=foo",         "CN=a,,O=b",
                         "C=DEU",    "CN=a,C=de",    "CN=a,CN=b", "O=only",         "CN=a\\,b",
                         "CN=a+O=b", "cn=lowercase", "CN=a\tb",   "CN=caf\xc3\xa9", ",CN=a"};
    kbr_ca_hsm_ctx ctx;
    kbr_ca_signer sg;
    EVP_PKEY *pub = hsm_pub("ca-p256"), *pub384 = hsm_pub("ca-p384");
    kbr_ca_cert *c = NULL;
    kbr_msg msg = {{0}};
    time_t now = time(NULL);
    size_t i;

    (void)state;
    signer_for("ca-p256", KBR_ALG_ECDSA_P256, &ctx, &sg);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kbr_ca_self_signed(&sg, pub, bad[i], 30, now, NULL, &c, &msg),
                         KBR_ERR_BAD_REQUEST);
        assert_null(c);
        assert_memory_equal(msg.text, "self_signed.subject: ", 21);
    }
    assert_int_equal(kbr_ca_self_signed(&sg, pub, "CN=a", 0, now, NULL, &c, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_memory_equal(msg.text, "self_signed.days: ", 18);
    assert_int_equal(kbr_ca_self_signed(&sg, pub, "CN=a", KBR_CA_DAYS_MAX + 1, now, NULL, &c, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_memory_equal(msg.text, "self_signed.days: ", 18);
    assert_int_equal(kbr_ca_self_signed(&sg, pub384, "CN=a", 30, now, NULL, &c, &msg),
                     KBR_ERR_CONFLICT);
    assert_null(c);

    /* Every attribute, spaces around names and values ignored. */
    assert_int_equal(kbr_ca_self_signed(&sg, pub,
                                        " CN = Acme CA , O=Acme, OU=PKI,C=FR,L=Lyon,ST=ARA", 30,
                                        now, NULL, &c, &msg),
                     KBR_OK);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(kbr_ca_cert_x509_peek(c))), 6);
    assert_name_entry(X509_get_subject_name(kbr_ca_cert_x509_peek(c)), NID_commonName, "Acme CA");
    assert_name_entry(X509_get_subject_name(kbr_ca_cert_x509_peek(c)), NID_stateOrProvinceName,
                      "ARA");
    kbr_ca_cert_free(c);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(pub384);
}

/* ---- a certificate attached to a key ---- */

static void test_cert_for_key(void **state)
{
    fixture f;
    kbr_ca_cert *leaf = NULL, *ca384 = make_ca("ca-p384", KBR_ALG_ECDSA_P384, 30, time(NULL)),
                *dev_cert;
    EVP_PKEY *pub256 = hsm_pub("ca-p256"), *pub384 = hsm_pub("ca-p384");
    char *chain = NULL, *bundle, *reversed, *foreign;
    kbr_msg msg = {{0}};

    (void)state;
    fixture_init(&f, 3650);
    dev_cert = issue(f.iss, f.csr, "SN-1", 365, f.now);
    bundle = concat(kbr_ca_cert_pem(dev_cert), kbr_ca_cert_pem(f.ca));
    reversed = concat(kbr_ca_cert_pem(f.ca), kbr_ca_cert_pem(dev_cert));
    foreign = concat(kbr_ca_cert_pem(dev_cert), kbr_ca_cert_pem(ca384));

    /* A CA key's own certificate. */
    assert_int_equal(
        kbr_ca_cert_for_key(kbr_ca_cert_pem(f.ca), pub256, true, f.now, &leaf, &chain, &msg),
        KBR_OK);
    assert_string_equal(kbr_ca_cert_fingerprint(leaf), kbr_ca_cert_fingerprint(f.ca));
    assert_string_equal(chain, "");
    kbr_ca_cert_free(leaf);
    free(chain);
    /* A leaf with its chain. */
    assert_int_equal(kbr_ca_cert_for_key(bundle, f.dev, false, f.now, &leaf, &chain, &msg), KBR_OK);
    assert_string_equal(kbr_ca_cert_fingerprint(leaf), kbr_ca_cert_fingerprint(dev_cert));
    assert_string_equal(chain, kbr_ca_cert_pem(f.ca));
    kbr_ca_cert_free(leaf);
    free(chain);
    leaf = NULL;
    chain = NULL;

    assert_int_equal(
        kbr_ca_cert_for_key(kbr_ca_cert_pem(f.ca), pub384, true, f.now, &leaf, &chain, &msg),
        KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "pem: certificate does not match the key's public key");
    assert_null(leaf);
    assert_null(chain);
    assert_int_equal(kbr_ca_cert_for_key(reversed, pub256, true, f.now, &leaf, &chain, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text,
                        "pem: chain is not in order: certificate 1 is not issued by certificate 2");
    assert_int_equal(kbr_ca_cert_for_key(foreign, f.dev, false, f.now, &leaf, &chain, &msg),
                     KBR_ERR_BAD_REQUEST);
    /* Same issuer name as the device's CA, but another key identifier. */
    assert_string_equal(msg.text,
                        "pem: chain is not in order: certificate 1 is not issued by certificate 2");
    assert_int_equal(kbr_ca_cert_for_key(f.csr_pem, f.dev, false, f.now, &leaf, &chain, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "pem: not a PEM certificate chain");
    assert_int_equal(kbr_ca_cert_for_key("garbage", f.dev, false, f.now, &leaf, &chain, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "pem: not a PEM certificate chain");
    assert_null(leaf);
    assert_null(chain);

    free(bundle);
    free(reversed);
    free(foreign);
    kbr_ca_cert_free(dev_cert);
    kbr_ca_cert_free(ca384);
    EVP_PKEY_free(pub256);
    EVP_PKEY_free(pub384);
    fixture_cleanup(&f);
}

/* ---- certificates attached to a key: each one built here with OpenSSL ---- */

/* What build_cert makes; zero values are the ordinary choice. */
typedef struct {
    EVP_PKEY *key;       /* the key it certifies */
    EVP_PKEY *signer;    /* the key that signs it; NULL: key (self-signed) */
    X509 *issuer;        /* the issuer's certificate, for its name; NULL: self-issued */
    const char *cn;      /* subject CN; NULL: "Attached" */
    const char *serial;  /* hex, "-" first for a negative number; NULL: "1000" */
    bool v1;             /* X.509 v1, without extensions */
    long from, to;       /* validity in seconds from now; both 0: -60 s to 30 days */
    const char *bc, *ku; /* basicConstraints and keyUsage in openssl.cnf syntax; NULL: none */
} cert_spec;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    if (value == NULL)
        return;
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *build_cert(const cert_spec *s)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn;
    time_t now = time(NULL);
    long from = s->from, to = s->to;

    if (from == 0 && to == 0) {
        from = -60;
        to = 30L * DAY;
    }
    assert_true(BN_hex2bn(&bn, s->serial != NULL ? s->serial : "1000") > 0);
    sn = BN_to_ASN1_INTEGER(bn, NULL);
    assert_non_null(sn);
    assert_int_equal(X509_set_version(x, s->v1 ? X509_VERSION_1 : X509_VERSION_3), 1);
    assert_int_equal(X509_set_serialNumber(x, sn), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(
                         name, "CN", MBSTRING_ASC,
                         (const unsigned char *)(s->cn != NULL ? s->cn : "Attached"), -1, -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(x, name), 1);
    assert_int_equal(
        X509_set_issuer_name(x, s->issuer != NULL ? X509_get_subject_name(s->issuer) : name), 1);
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), now + from));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), now + to));
    assert_int_equal(X509_set_pubkey(x, s->key), 1);
    if (!s->v1) {
        add_ext(x, s->issuer, NID_basic_constraints, s->bc);
        add_ext(x, s->issuer, NID_key_usage, s->ku);
    }
    assert_true(X509_sign(x, s->signer != NULL ? s->signer : s->key, EVP_sha256()) > 0);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    X509_NAME_free(name);
    return x;
}

#define CA_BC "critical,CA:TRUE"
#define CA_KU "critical,keyCertSign,cRLSign"

/* A self-signed CA certificate for key, as a device CA key's should be. */
static X509 *build_ca(EVP_PKEY *key, const char *cn)
{
    cert_spec spec = {.key = key, .cn = cn, .bc = CA_BC, .ku = CA_KU};

    return build_cert(&spec);
}

static char *pem_of(X509 *x)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s;

    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    s = bio_string(bio);
    BIO_free(bio);
    return s;
}

static kbr_err attach(const char *pem, EVP_PKEY *key, bool ca_key, kbr_msg *msg)
{
    kbr_ca_cert *leaf = NULL;
    char *chain = NULL;
    kbr_err err = kbr_ca_cert_for_key(pem, key, ca_key, time(NULL), &leaf, &chain, msg);

    assert_true((err == KBR_OK) == (leaf != NULL && chain != NULL));
    kbr_ca_cert_free(leaf);
    free(chain);
    return err;
}

static void assert_attached(const char *pem, EVP_PKEY *key, bool ca_key)
{
    kbr_msg msg = {{0}};

    if (attach(pem, key, ca_key, &msg) != KBR_OK)
        fail_msg("refused: %s", msg.text);
}

/* Refused with a message that starts with want (the whole of it unless it ends in a time). */
static void assert_refused(const char *pem, EVP_PKEY *key, bool ca_key, const char *want)
{
    kbr_msg msg = {{0}};

    assert_int_equal(attach(pem, key, ca_key, &msg), KBR_ERR_BAD_REQUEST);
    if (strncmp(msg.text, want, strlen(want)) != 0 ||
        (strstr(want, " at ") == NULL && strstr(want, " before ") == NULL &&
         strcmp(msg.text, want) != 0))
        fail_msg("message \"%s\", wanted \"%s\"", msg.text, want);
}

static void assert_x_refused(X509 *x, EVP_PKEY *key, bool ca_key, const char *want)
{
    char *pem = pem_of(x);

    assert_refused(pem, key, ca_key, want);
    free(pem);
    X509_free(x);
}

static void assert_x_attached(X509 *x, EVP_PKEY *key, bool ca_key)
{
    char *pem = pem_of(x);

    assert_attached(pem, key, ca_key);
    free(pem);
    X509_free(x);
}

static void assert_serial(EVP_PKEY *key, const char *serial, const char *want)
{
    cert_spec spec = {.key = key, .serial = serial, .bc = CA_BC, .ku = CA_KU};

    if (want == NULL)
        assert_x_attached(build_cert(&spec), key, true);
    else
        assert_x_refused(build_cert(&spec), key, true, want);
}

#define ZEROS_38 "00000000000000000000000000000000000000"
#define ZEROS_40 ZEROS_38 "00"
#define FS_38    "ffffffffffffffffffffffffffffffffffffff"

static void test_attach_serial(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    /* 161 bits: 21 octets; 160 bits: 21 as well, DER puts a zero octet before the top bit;
     * 159 bits: 20 octets, the most RFC 5280 allows */
    const char *octets21 = "01" ZEROS_40, *top_bit = "80" ZEROS_38, *octets20 = "7f" FS_38;

    (void)state;
    assert_serial(key, "-0A1B2C3D",
                  "pem: serial number is negative; RFC 5280 4.1.2.2 requires a positive integer");
    assert_serial(key, "-01",
                  "pem: serial number is negative; RFC 5280 4.1.2.2 requires a positive integer");
    assert_serial(key, "0",
                  "pem: serial number is zero; RFC 5280 4.1.2.2 requires a positive integer");
    assert_serial(key, octets21,
                  "pem: serial number is 21 octets long; RFC 5280 4.1.2.2 allows at most 20");
    assert_serial(key, top_bit,
                  "pem: serial number is 21 octets long; RFC 5280 4.1.2.2 allows at most 20");
    assert_serial(key, octets20, NULL);
    assert_serial(key, "01", NULL);
    EVP_PKEY_free(key);
}

static void test_attach_wrong_key(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");

    (void)state;
    assert_x_refused(build_ca(other, "Other CA"), key, true,
                     "pem: certificate does not match the key's public key");
    assert_x_refused(build_ca(other, "Other CA"), key, false,
                     "pem: certificate does not match the key's public key");
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void test_attach_ca_for_ca_key(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    cert_spec leaf = {.key = key, .bc = "critical,CA:FALSE", .ku = "critical,digitalSignature"};
    cert_spec bare = {.key = key};
    cert_spec no_certsign = {.key = key, .bc = CA_BC, .ku = "critical,digitalSignature,cRLSign"};
    cert_spec no_ku = {.key = key, .bc = CA_BC};

    (void)state;
    assert_x_refused(build_cert(&leaf), key, true,
                     "pem: not a CA certificate (no basicConstraints CA:TRUE); a "
                     "device-identity-ca key needs one");
    assert_x_refused(build_cert(&bare), key, true,
                     "pem: not a CA certificate (no basicConstraints CA:TRUE); a "
                     "device-identity-ca key needs one");
    assert_x_refused(build_cert(&no_certsign), key, true,
                     "pem: CA certificate without keyUsage keyCertSign");
    assert_x_refused(build_cert(&no_ku), key, true,
                     "pem: CA certificate without keyUsage keyCertSign");
    /* The rule is the key's: a key of another purpose may carry any of them. */
    assert_x_attached(build_cert(&leaf), key, false);
    assert_x_attached(build_cert(&bare), key, false);
    assert_x_attached(build_ca(key, "Attached CA"), key, true);
    EVP_PKEY_free(key);
}

/* The DER of x with its last octet, the signature's, flipped. */
static char *flip_signature(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    char *pem;

    der[len - 1] ^= 0x01;
    pem = der_pem("CERTIFICATE", der, len);
    OPENSSL_free(der);
    return pem;
}

static void test_attach_bad_signature(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    cert_spec forged = {.key = key, .signer = other, .bc = CA_BC, .ku = CA_KU};
    X509 *ca = build_ca(key, "Attached CA"), *root = build_ca(other, "Elsewhere CA");
    cert_spec elsewhere = {.key = key, .signer = other, .issuer = root, .bc = CA_BC, .ku = CA_KU};
    char *flipped = flip_signature(ca);

    (void)state;
    assert_refused(flipped, key, true,
                   "pem: signature of the self-signed certificate does not verify with its own "
                   "key");
    assert_x_refused(build_cert(&forged), key, true,
                     "pem: signature of the self-signed certificate does not verify with its own "
                     "key");
    /* A self-signed certificate's signature is checked whatever the key. */
    assert_refused(flipped, key, false,
                   "pem: signature of the self-signed certificate does not verify with its own "
                   "key");
    /* One issued elsewhere and given alone cannot be: a key of another purpose may take it. */
    assert_x_attached(build_cert(&elsewhere), key, false);
    assert_x_refused(build_cert(&elsewhere), key, true,
                     "pem: CA certificate is not self-signed and its issuer's certificate is not "
                     "given (chain_pem, or after it in pem)");
    free(flipped);
    X509_free(root);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

/* A device CA whose certificate a root issued, given in the chain or not at all. */
static void test_attach_ca_with_chain(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256"), *root_key = EVP_EC_gen("P-256"),
             *impostor = EVP_EC_gen("P-256"), *leaf_key = EVP_EC_gen("P-256");
    X509 *root = build_ca(root_key, "Example Root CA");
    cert_spec ica = {.key = key, .signer = root_key, .issuer = root, .bc = CA_BC, .ku = CA_KU};
    cert_spec forged = {.key = key, .signer = impostor, .issuer = root, .bc = CA_BC, .ku = CA_KU};
    X509 *good = build_cert(&ica), *bad = build_cert(&forged), *not_ca;
    char *root_pem = pem_of(root), *good_pem = pem_of(good), *bad_pem = pem_of(bad);
    char *bundle = concat(good_pem, root_pem), *forged_bundle = concat(bad_pem, root_pem);
    char *chain = NULL, *by_leaf;
    kbr_ca_cert *attached = NULL;
    kbr_msg msg = {{0}};
    cert_spec plain = {.key = root_key, .cn = "Not a CA", .bc = "critical,CA:FALSE"};
    cert_spec under = {.key = leaf_key, .signer = root_key, .bc = CA_BC, .ku = CA_KU};

    (void)state;
    assert_refused(good_pem, key, true,
                   "pem: CA certificate is not self-signed and its issuer's certificate is not "
                   "given (chain_pem, or after it in pem)");
    assert_int_equal(kbr_ca_cert_for_key(bundle, key, true, time(NULL), &attached, &chain, &msg),
                     KBR_OK);
    assert_string_equal(chain, root_pem);
    kbr_ca_cert_free(attached);
    free(chain);
    assert_refused(forged_bundle, key, true,
                   "pem: signature of certificate 1 does not verify with the key of "
                   "certificate 2");
    assert_refused(forged_bundle, key, false,
                   "pem: signature of certificate 1 does not verify with the key of "
                   "certificate 2");

    /* An issuer that is no CA issued nothing, whatever its name and signature say. */
    not_ca = build_cert(&plain);
    under.issuer = not_ca;
    X509_free(bad);
    bad = build_cert(&under);
    free(bad_pem);
    bad_pem = pem_of(bad);
    free(root_pem);
    root_pem = pem_of(not_ca);
    by_leaf = concat(bad_pem, root_pem);
    assert_refused(by_leaf, leaf_key, true,
                   "pem: certificate 2 is not a CA certificate, so it did not issue certificate 1");

    free(by_leaf);
    free(bundle);
    free(forged_bundle);
    free(root_pem);
    free(good_pem);
    free(bad_pem);
    X509_free(not_ca);
    X509_free(good);
    X509_free(bad);
    X509_free(root);
    EVP_PKEY_free(key);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(impostor);
    EVP_PKEY_free(leaf_key);
}

static void test_attach_garbage_after(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *ca = build_ca(key, "Attached CA");
    char *pem = pem_of(ca), *csr = make_csr_pem(key);
    char *junk = concat(pem, "garbage\n"), *then_csr = concat(pem, csr);
    char *two = concat(pem, pem), *two_junk = concat(two, "-----BEGIN CERTIFICATE-----\n");
    char *many = strdup(""), *grown;

    (void)state;
    assert_refused(junk, key, true, "pem: what follows certificate 1 is not a PEM certificate");
    assert_refused(then_csr, key, true, "pem: what follows certificate 1 is not a PEM certificate");
    assert_refused(two_junk, key, true, "pem: what follows certificate 2 is not a PEM certificate");
    for (int i = 0; i < 17; i++) {
        grown = concat(many, pem);
        free(many);
        many = grown;
    }
    assert_refused(many, key, true, "pem: more than 16 certificates");
    assert_attached(pem, key, true);
    free(many);
    free(two_junk);
    free(two);
    free(then_csr);
    free(junk);
    free(csr);
    free(pem);
    X509_free(ca);
    EVP_PKEY_free(key);
}

/* A SEQUENCE header for len content octets: DER's shortest length, or with wide a length in
 * four octets, leading zeros and all, which BER allows and DER does not. */
static size_t seq_header(unsigned char *out, size_t len, bool wide)
{
    size_t n = 0;

    out[n++] = 0x30;
    if (wide) {
        out[n++] = 0x84;
        out[n++] = (unsigned char)(len >> 24);
        out[n++] = (unsigned char)(len >> 16);
    } else if (len >= 0x100) {
        out[n++] = 0x82;
    } else if (len >= 0x80) {
        out[n++] = 0x81;
        out[n++] = (unsigned char)len;
        return n;
    } else {
        out[n++] = (unsigned char)len;
        return n;
    }
    out[n++] = (unsigned char)(len >> 8);
    out[n++] = (unsigned char)len;
    return n;
}

/* The content of the DER SEQUENCE at der: where it starts and how long it is. */
static const unsigned char *seq_content(const unsigned char *der, size_t *len)
{
    size_t hdr = (der[1] & 0x80) != 0 ? 2 + (der[1] & 0x7f) : 2, n = 0;

    assert_int_equal(der[0], 0x30);
    if ((der[1] & 0x80) == 0)
        n = der[1];
    for (size_t i = 2; i < hdr; i++)
        n = (n << 8) | der[i];
    *len = n;
    return der + hdr;
}

/* parts wrapped in one SEQUENCE, as PEM. */
static char *seq_pem(const unsigned char *parts, size_t len, bool wide)
{
    unsigned char *der = malloc(len + 8);
    size_t n = seq_header(der, len, wide);
    char *pem;

    memcpy(der + n, parts, len);
    pem = der_pem("CERTIFICATE", der, (long)(n + len));
    free(der);
    return pem;
}

/* x with its outer length in a form DER does not allow; signature untouched. */
static char *ber_outer(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    size_t clen = 0;
    const unsigned char *content = seq_content(der, &clen);
    char *pem;

    assert_int_equal((size_t)(content - der) + clen, (size_t)len);
    pem = seq_pem(content, clen, true);
    OPENSSL_free(der);
    return pem;
}

/*
 * x with its TBS length in a form DER does not allow, signed again by key over those very
 * bytes: OpenSSL reads it and its signature verifies, so only the DER rule can refuse it.
 */
static char *ber_tbs(X509 *x, EVP_PKEY *key)
{
    unsigned char *tbs = NULL, *alg = NULL, *buf, *sig = NULL;
    int tbs_len = i2d_re_X509_tbs(x, &tbs), alg_len;
    size_t clen = 0, siglen = 0, n;
    const unsigned char *content = seq_content(tbs, &clen);
    const X509_ALGOR *palg = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char *pem;

    assert_true(tbs_len > 0);
    X509_get0_signature(NULL, &palg, x);
    alg_len = i2d_X509_ALGOR(palg, &alg);
    assert_true(alg_len > 0);
    buf = malloc(clen + 8 + (size_t)alg_len + 80);
    n = seq_header(buf, clen, true);
    memcpy(buf + n, content, clen);
    n += clen;
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(md, NULL, &siglen, buf, n), 1);
    sig = malloc(siglen);
    assert_int_equal(EVP_DigestSign(md, sig, &siglen, buf, n), 1);
    memcpy(buf + n, alg, (size_t)alg_len);
    n += (size_t)alg_len;
    buf[n++] = 0x03; /* BIT STRING, no unused bits */
    buf[n++] = (unsigned char)(siglen + 1);
    buf[n++] = 0x00;
    memcpy(buf + n, sig, siglen);
    n += siglen;
    pem = seq_pem(buf, n, false);
    EVP_MD_CTX_free(md);
    free(sig);
    free(buf);
    OPENSSL_free(alg);
    OPENSSL_free(tbs);
    return pem;
}

/* OpenSSL reads pem, and the certificate's signature holds under key. */
static void assert_openssl_reads(const char *pem, EVP_PKEY *key)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

    assert_non_null(x);
    assert_int_equal(X509_verify(x, key), 1);
    X509_free(x);
    BIO_free(bio);
}

static void test_attach_not_der(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *ca = build_ca(key, "Attached CA");
    char *outer = ber_outer(ca), *inner = ber_tbs(ca, key), *pem = pem_of(ca);
    char *second = concat(pem, outer);

    (void)state;
    assert_openssl_reads(outer, key);
    assert_openssl_reads(inner, key);
    assert_refused(outer, key, true,
                   "pem: certificate 1 is not DER-encoded (an encoding DER does not allow)");
    assert_refused(inner, key, true,
                   "pem: certificate 1 is not DER-encoded (an encoding DER does not allow)");
    assert_refused(inner, key, false,
                   "pem: certificate 1 is not DER-encoded (an encoding DER does not allow)");
    assert_refused(second, key, false,
                   "pem: certificate 2 is not DER-encoded (an encoding DER does not allow)");
    free(second);
    free(pem);
    free(inner);
    free(outer);
    X509_free(ca);
    EVP_PKEY_free(key);
}

static void test_attach_version_and_validity(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    cert_spec v1 = {.key = key, .v1 = true};
    cert_spec expired = {.key = key, .from = -2 * DAY, .to = -DAY, .bc = CA_BC, .ku = CA_KU};
    cert_spec later = {.key = key, .from = DAY, .to = 2 * DAY, .bc = CA_BC, .ku = CA_KU};
    cert_spec reversed = {.key = key, .from = DAY, .to = -DAY, .bc = CA_BC, .ku = CA_KU};
    cert_spec skewed = {.key = key, .from = 30, .to = DAY, .bc = CA_BC, .ku = CA_KU};

    (void)state;
    assert_x_refused(build_cert(&v1), key, false, "pem: certificate is X.509 v1, not v3");
    assert_x_refused(build_cert(&expired), key, true, "pem: certificate expired at ");
    assert_x_refused(build_cert(&later), key, true, "pem: certificate is not valid before ");
    assert_x_refused(build_cert(&reversed), key, false, "pem: validity ends before it begins");
    /* Half a minute ahead is the clocks', not the certificate's. */
    assert_x_attached(build_cert(&skewed), key, true);
    EVP_PKEY_free(key);
}

/* ---- CRLs and distribution points ---- */

/* The CRL OpenSSL reads from der (freed here). */
static X509_CRL *crl_of(unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);

    assert_non_null(crl);
    assert_ptr_equal(p, der + len);
    free(der);
    return crl;
}

static X509_CRL *make_crl(const kbr_ca_issuer *iss, const kbr_ca_crl_entry *e, size_t n,
                          int64_t number, time_t this_update, time_t next_update)
{
    unsigned char *der = NULL;
    size_t len = 0;
    kbr_msg msg = {{0}};

    if (kbr_ca_crl_make(iss, e, n, number, this_update, next_update, &der, &len, &msg) != KBR_OK)
        fail_msg("CRL: %s", msg.text);
    return crl_of(der, len);
}

/* The reason code of the entry for cert, -1 without one; asserts the entry is there. */
static int revoked_reason(X509_CRL *crl, X509 *cert)
{
    X509_REVOKED *rev = NULL;
    ASN1_ENUMERATED *reason;
    int crit = -1, code;

    assert_int_equal(X509_CRL_get0_by_cert(crl, &rev, cert), 1);
    reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
    if (reason == NULL)
        return -1;
    assert_int_equal(crit, 0);
    code = (int)ASN1_ENUMERATED_get(reason);
    ASN1_ENUMERATED_free(reason);
    return code;
}

/* X509_V_OK, or why OpenSSL's chain check with the CRL refuses leaf. */
static int crl_check(X509 *leaf, X509 *ca, X509_CRL *crl, time_t at)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int err;

    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_add_crl(store, crl), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_CRL_CHECK);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), at);
    err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return err;
}

static void crl_alg(const char *label, kbr_alg alg, int sig_nid)
{
    time_t now = time(NULL);
    kbr_ca_cert *ca = make_ca(label, alg, 3650, now), *d[3];
    X509 *cax = kbr_ca_cert_x509_peek(ca), *dx[3];
    EVP_PKEY *capub = hsm_pub(label), *dev = EVP_EC_gen("P-256");
    kbr_ca_hsm_ctx ctx;
    kbr_ca_issuer *iss = make_issuer(ca, label, alg, &ctx);
    char *csr_pem = make_csr_pem(dev);
    kbr_ca_csr *csr = parse_csr(csr_pem);
    kbr_ca_crl_entry e[2];
    X509_CRL *crl;
    ASN1_INTEGER *number;
    AUTHORITY_KEYID *akid;
    int crit = -1;

    for (int i = 0; i < 3; i++) {
        d[i] = issue(iss, csr, "SN-0001", 365, now);
        dx[i] = as_sent(d[i]);
    }
    e[0] = (kbr_ca_crl_entry){kbr_ca_cert_serial_hex(d[0]), now - 3600, 1};
    e[1] = (kbr_ca_crl_entry){kbr_ca_cert_serial_hex(d[1]), now - 60, 0};
    crl = make_crl(iss, e, 2, 7, now, now + DAY);

    assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    assert_int_equal(X509_CRL_get_signature_nid(crl), sig_nid);
    assert_int_equal(X509_CRL_verify(crl, capub), 1);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(cax)), 0);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_CRL_get0_lastUpdate(crl), now), 0);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_CRL_get0_nextUpdate(crl), now + DAY), 0);
    number = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    assert_non_null(number);
    assert_int_equal(crit, 0);
    assert_int_equal(ASN1_INTEGER_get(number), 7);
    ASN1_INTEGER_free(number);
    akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
    assert_non_null(akid);
    assert_int_equal(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(cax)), 0);
    AUTHORITY_KEYID_free(akid);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 2);
    /* keyCompromise says so; unspecified is left out (RFC 5280 5.3.1) */
    assert_int_equal(revoked_reason(crl, dx[0]), 1);
    assert_int_equal(revoked_reason(crl, dx[1]), -1);
    /* OpenSSL's own chain check refuses the revoked certificates, not the other */
    assert_int_equal(crl_check(dx[0], cax, crl, now), X509_V_ERR_CERT_REVOKED);
    assert_int_equal(crl_check(dx[1], cax, crl, now), X509_V_ERR_CERT_REVOKED);
    assert_int_equal(crl_check(dx[2], cax, crl, now), X509_V_OK);
    /* after its nextUpdate the CRL is expired, and the check says so */
    assert_int_equal(crl_check(dx[2], cax, crl, now + 2 * DAY), X509_V_ERR_CRL_HAS_EXPIRED);
    X509_CRL_free(crl);

    /* nothing revoked: no revokedCertificates at all, and every certificate passes */
    crl = make_crl(iss, NULL, 0, 1, now, now + 60);
    assert_int_equal(X509_CRL_verify(crl, capub), 1);
    assert_null(X509_CRL_get_REVOKED(crl));
    assert_int_equal(crl_check(dx[0], cax, crl, now), X509_V_OK);
    X509_CRL_free(crl);

    for (int i = 0; i < 3; i++) {
        X509_free(dx[i]);
        kbr_ca_cert_free(d[i]);
    }
    kbr_ca_csr_free(csr);
    free(csr_pem);
    kbr_ca_issuer_free(iss);
    kbr_ca_cert_free(ca);
    EVP_PKEY_free(capub);
    EVP_PKEY_free(dev);
}

static void test_crl_every_algorithm(void **state)
{
    (void)state;
    crl_alg("ca-p256", KBR_ALG_ECDSA_P256, NID_ecdsa_with_SHA256);
    crl_alg("ca-p384", KBR_ALG_ECDSA_P384, NID_ecdsa_with_SHA384);
    crl_alg("ca-rsa3072", KBR_ALG_RSA_3072, NID_sha256WithRSAEncryption);
    crl_alg("ca-ed25519", KBR_ALG_ED25519, NID_ED25519);
}

static void test_crl_refused(void **state)
{
    fixture f;
    kbr_ca_crl_entry e = {"0a1b", 0, 1};
    unsigned char *der = NULL;
    size_t len = 0;
    kbr_msg msg = {{0}};
    kbr_ca_hsm_ctx ctx, inner_ctx;
    kbr_ca_signer sg, inner, bad;
    kbr_ca_issuer *iss = NULL;
    EVP_PKEY *pub = hsm_pub("ca-p256"), *soft = EVP_EC_gen("P-256");
    cert_spec spec = {
        .key = pub, .signer = soft, .cn = "No CRL CA", .bc = CA_BC, .ku = "critical,keyCertSign"};
    X509 *no_crl_sign = build_cert(&spec);
    char *pem = pem_of(no_crl_sign);

    (void)state;
    fixture_init(&f, 3650);
    e.revoked_at = f.now;
    assert_int_equal(kbr_ca_crl_make(f.iss, &e, 1, 0, f.now, f.now + 60, &der, &len, &msg),
                     KBR_ERR_INTERNAL);
    assert_int_equal(kbr_ca_crl_make(f.iss, &e, 1, 1, f.now, f.now, &der, &len, &msg),
                     KBR_ERR_INTERNAL);
    e.serial_hex = "-0a1b";
    assert_int_equal(kbr_ca_crl_make(f.iss, &e, 1, 1, f.now, f.now + 60, &der, &len, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "crl: serial number \"-0a1b\" is not positive hex");
    e.serial_hex = "00";
    assert_int_equal(kbr_ca_crl_make(f.iss, &e, 1, 1, f.now, f.now + 60, &der, &len, &msg),
                     KBR_ERR_BAD_REQUEST);
    e.serial_hex = "0a1b";
    e.reason_code = 7;
    assert_int_equal(kbr_ca_crl_make(f.iss, &e, 1, 1, f.now, f.now + 60, &der, &len, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "crl: 7 is not an RFC 5280 CRLReason");
    assert_null(der);

    /* a CA certificate without cRLSign: relying parties would refuse what it signs */
    signer_for("ca-p256", KBR_ALG_ECDSA_P256, &ctx, &sg);
    assert_int_equal(kbr_ca_issuer_new(pem, &sg, pub, &iss, &msg), KBR_OK);
    e.reason_code = 1;
    assert_int_equal(kbr_ca_crl_make(iss, &e, 1, 1, f.now, f.now + 60, &der, &len, &msg),
                     KBR_ERR_CONFLICT);
    assert_string_equal(msg.text, "issuer: the CA certificate's keyUsage does not allow cRLSign");
    kbr_ca_issuer_free(iss);

    /* a signature spoiled in transit never leaves */
    signer_for("ca-p256", KBR_ALG_ECDSA_P256, &inner_ctx, &inner);
    bad = (kbr_ca_signer){.alg = KBR_ALG_ECDSA_P256, .sign = corrupting_sign, .arg = &inner};
    assert_int_equal(kbr_ca_issuer_new(kbr_ca_cert_pem(f.ca), &bad, pub, &iss, &msg), KBR_OK);
    assert_int_equal(kbr_ca_crl_make(iss, &e, 1, 1, f.now, f.now + 60, &der, &len, &msg),
                     KBR_ERR_CRYPTO);
    assert_string_equal(msg.text, "CRL signature does not verify with the issuer key");
    assert_null(der);
    kbr_ca_issuer_free(iss);
    free(pem);
    X509_free(no_crl_sign);
    EVP_PKEY_free(soft);
    EVP_PKEY_free(pub);
    fixture_cleanup(&f);
}

/* The URI of the one distribution point of x's cRLDistributionPoints, or NULL without one. */
static char *crl_dp_of(X509 *x)
{
    int crit = -1;
    CRL_DIST_POINTS *dps = X509_get_ext_d2i(x, NID_crl_distribution_points, &crit, NULL);
    DIST_POINT *dp;
    GENERAL_NAME *gn;
    char *uri;

    if (dps == NULL)
        return NULL;
    assert_int_equal(crit, 0);
    assert_int_equal(sk_DIST_POINT_num(dps), 1);
    dp = sk_DIST_POINT_value(dps, 0);
    assert_int_equal(dp->distpoint->type, 0);
    assert_int_equal(sk_GENERAL_NAME_num(dp->distpoint->name.fullname), 1);
    gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0);
    assert_int_equal(gn->type, GEN_URI);
    uri = strndup((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
                  (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier));
    CRL_DIST_POINTS_free(dps);
    return uri;
}

static void test_crl_distribution_point(void **state)
{
    static const char url[] = "http://pki.example.com/v1/cas/ca-p256/crl";
    fixture f;
    kbr_ca_hsm_ctx ctx;
    kbr_ca_signer sg;
    kbr_ca_cert *ca = NULL, *d = NULL;
    X509 *x;
    kbr_msg msg = {{0}};
    EVP_PKEY *pub = hsm_pub("ca-p256");
    char *uri;

    (void)state;
    fixture_init(&f, 3650);
    signer_for("ca-p256", KBR_ALG_ECDSA_P256, &ctx, &sg);
    assert_int_equal(kbr_ca_self_signed(&sg, pub, CA_SUBJECT, 30, f.now, url, &ca, &msg), KBR_OK);
    uri = crl_dp_of(kbr_ca_cert_x509_peek(ca));
    assert_string_equal(uri, url);
    free(uri);
    assert_int_equal(kbr_ca_issue_device(f.iss, f.csr, "SN-1", 365, f.now, url, &d, &msg), KBR_OK);
    x = as_sent(d);
    uri = crl_dp_of(x);
    assert_string_equal(uri, url);
    free(uri);
    assert_int_equal(X509_get_ext_count(x), 6);
    X509_free(x);
    kbr_ca_cert_free(d);
    d = NULL;
    /* without a URL there is none */
    assert_int_equal(kbr_ca_issue_device(f.iss, f.csr, "SN-1", 365, f.now, NULL, &d, &msg), KBR_OK);
    x = as_sent(d);
    assert_null(crl_dp_of(x));
    X509_free(x);
    kbr_ca_cert_free(d);
    d = NULL;
    /* what a URL may not hold */
    assert_int_equal(
        kbr_ca_issue_device(f.iss, f.csr, "SN-1", 365, f.now, "http://a b/crl", &d, &msg),
        KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_ca_issue_device(f.iss, f.csr, "SN-1", 365, f.now, "", &d, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_null(d);
    kbr_ca_cert_free(ca);
    EVP_PKEY_free(pub);
    fixture_cleanup(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ecdsa_p256),
        cmocka_unit_test(test_ecdsa_p384),
        cmocka_unit_test(test_rsa_3072),
        cmocka_unit_test(test_ed25519),
        cmocka_unit_test(test_cert_accessors),
        cmocka_unit_test(test_cert_parse_refused),
        cmocka_unit_test(test_csr_accessors),
        cmocka_unit_test(test_csr_key_types),
        cmocka_unit_test(test_csr_key_as_sent),
        cmocka_unit_test(test_csr_point_off_curve),
        cmocka_unit_test(test_csr_tampered),
        cmocka_unit_test(test_csr_not_a_csr),
        cmocka_unit_test(test_issue_bad_serial),
        cmocka_unit_test(test_issue_capped_by_ca),
        cmocka_unit_test(test_issuer_mismatch),
        cmocka_unit_test(test_bad_signature_never_leaves),
        cmocka_unit_test(test_hsm_signer_args),
        cmocka_unit_test(test_self_signed_refused),
        cmocka_unit_test(test_cert_for_key),
        cmocka_unit_test(test_attach_serial),
        cmocka_unit_test(test_attach_wrong_key),
        cmocka_unit_test(test_attach_ca_for_ca_key),
        cmocka_unit_test(test_attach_bad_signature),
        cmocka_unit_test(test_attach_ca_with_chain),
        cmocka_unit_test(test_attach_garbage_after),
        cmocka_unit_test(test_attach_not_der),
        cmocka_unit_test(test_attach_version_and_validity),
        cmocka_unit_test(test_crl_every_algorithm),
        cmocka_unit_test(test_crl_refused),
        cmocka_unit_test(test_crl_distribution_point),
    };
    int failed;

    /* Keeps the module mapped after every dlclose, so its frames stay named in reports. */
    if (dlopen(kbt_module_path, RTLD_NOW | RTLD_NODELETE) == NULL) {
        fprintf(stderr, "cannot load %s\n", kbt_module_path);
        return 1;
    }
    if (kbt_token_create("kbr-ca") != 0) {
        fprintf(stderr, "cannot create a SoftHSM2 token in %s\n", kbt_token_dir);
        kbt_token_destroy();
        return 1;
    }
    failed = cmocka_run_group_tests_name("ca", tests, keys_setup, keys_teardown);
    kbt_token_destroy();
    return failed;
}
