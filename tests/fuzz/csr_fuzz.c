/*
 * csr_fuzz.c - the PEM the broker takes from outside: device CSRs
 * (kbr_ca_csr_parse, then a device certificate issued for every CSR it
 * accepts), single certificates (kbr_ca_cert_parse) and certificate chains
 * attached to a key (kbr_ca_cert_for_key).  The input is the PEM text.
 *
 * The chain is checked against the public key of its own first
 * certificate, so the fuzzer gets past the key match to the order checks,
 * once for a key of any purpose and once for a device CA key.
 */
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kbr_ca.h"

#include "fuzz.h"
#include "fuzz_ca.h"

#define NOW ((time_t)1800000000)

typedef struct {
    EVP_PKEY *ca_key; /* a device CA's key pair, standing in for one in the HSM */
    kbr_ca_signer signer;
    kbr_ca_issuer *issuer;
} fixture;

static fixture fx;

static void fixture_init(void)
{
    kbr_ca_cert *ca = NULL;
    kbr_msg msg = {{0}};

    fx.ca_key = EVP_EC_gen("P-256");
    FUZZ_CHECK(fx.ca_key != NULL);
    fx.signer = fuzz_soft_signer(fx.ca_key);
    FUZZ_CHECK(kbr_ca_self_signed(&fx.signer, fx.ca_key, "CN=Fuzz Device CA,O=Example", 3650, NOW,
                                  NULL, &ca, &msg) == KBR_OK);
    FUZZ_CHECK(kbr_ca_issuer_new(kbr_ca_cert_pem(ca), &fx.signer, fx.ca_key, &fx.issuer, &msg) ==
               KBR_OK);
    kbr_ca_cert_free(ca);
}

/* Every function of kbr_ca promises to leave the thread's OpenSSL error queue empty. */
static void queue_empty(void)
{
    FUZZ_CHECK(ERR_peek_error() == 0);
}

/* Any CSR the parser accepts is one the CA can issue for, and the result carries its key. */
static void issue_for(const kbr_ca_csr *csr)
{
    kbr_ca_cert *cert = NULL, *again = NULL;
    kbr_msg msg = {{0}};
    X509 *x;

    FUZZ_CHECK(kbr_ca_issue_device(fx.issuer, csr, "GW-000123", 365, NOW, NULL, &cert, &msg) ==
               KBR_OK);
    queue_empty();
    /* the certificate as the device reads it */
    FUZZ_CHECK(kbr_ca_cert_x509_peek(cert) == NULL);
    FUZZ_CHECK(kbr_ca_cert_parse(kbr_ca_cert_pem(cert), &again, &msg) == KBR_OK);
    x = kbr_ca_cert_x509_peek(again);
    FUZZ_CHECK(EVP_PKEY_eq(X509_get0_pubkey(x), kbr_ca_csr_pubkey_peek(csr)) == 1);
    FUZZ_CHECK(X509_verify(x, fx.ca_key) == 1);
    FUZZ_CHECK(strcmp(kbr_ca_cert_fingerprint(cert), kbr_ca_cert_fingerprint(again)) == 0);
    kbr_ca_cert_free(again);
    kbr_ca_cert_free(cert);
    ERR_clear_error();
}

static void csr(const char *pem)
{
    kbr_ca_csr *c = NULL;
    kbr_msg msg = {{0}};
    kbr_err err = kbr_ca_csr_parse(pem, &c, &msg);

    queue_empty();
    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST && c == NULL);
        FUZZ_CHECK(strncmp(msg.text, "csr_pem: ", 9) == 0);
        return;
    }
    FUZZ_CHECK(kbr_ca_csr_pubkey_peek(c) != NULL && kbr_ca_csr_subject(c) != NULL);
    FUZZ_CHECK(strlen(kbr_ca_csr_sha256_hex(c)) == 64);
    issue_for(c);
    kbr_ca_csr_free(c);
}

static void cert(const char *pem)
{
    kbr_ca_cert *c = NULL, *again = NULL;
    kbr_msg msg = {{0}};
    char nb[KBR_TIME_LEN], na[KBR_TIME_LEN];
    kbr_err err = kbr_ca_cert_parse(pem, &c, &msg);

    queue_empty();
    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST && c == NULL && strncmp(msg.text, "pem: ", 5) == 0);
        return;
    }
    FUZZ_CHECK(strlen(kbr_ca_cert_fingerprint(c)) == 64 && kbr_ca_cert_serial_hex(c) != NULL);
    kbr_ca_cert_not_before_str(c, nb);
    kbr_ca_cert_not_after_str(c, na);
    FUZZ_CHECK(strlen(nb) < KBR_TIME_LEN && strlen(na) < KBR_TIME_LEN);
    /* the PEM the broker stores reads back as the same certificate */
    FUZZ_CHECK(kbr_ca_cert_parse(kbr_ca_cert_pem(c), &again, &msg) == KBR_OK);
    FUZZ_CHECK(strcmp(kbr_ca_cert_fingerprint(c), kbr_ca_cert_fingerprint(again)) == 0);
    kbr_ca_cert_free(again);
    kbr_ca_cert_free(c);
}

/* The key of the first PEM certificate in the input, or NULL. */
static EVP_PKEY *first_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = x != NULL ? X509_get_pubkey(x) : NULL;

    X509_free(x);
    BIO_free(bio);
    ERR_clear_error();
    return key;
}

/* What kbr_ca_cert_for_key accepts, it accepts again as it hands it back. */
static void chain_again(const kbr_ca_cert *leaf, const char *chain, EVP_PKEY *key, bool ca_key)
{
    size_t n = strlen(kbr_ca_cert_pem(leaf)) + strlen(chain) + 1;
    char *both = malloc(n);
    kbr_ca_cert *leaf2 = NULL;
    char *chain2 = NULL;
    kbr_msg msg = {{0}};

    FUZZ_CHECK(both != NULL);
    snprintf(both, n, "%s%s", kbr_ca_cert_pem(leaf), chain);
    FUZZ_CHECK(kbr_ca_cert_for_key(both, key, ca_key, NOW, &leaf2, &chain2, &msg) == KBR_OK);
    FUZZ_CHECK(strcmp(kbr_ca_cert_fingerprint(leaf), kbr_ca_cert_fingerprint(leaf2)) == 0);
    FUZZ_CHECK(strcmp(chain, chain2) == 0);
    kbr_ca_cert_free(leaf2);
    free(chain2);
    free(both);
}

/*
 * An accepted certificate is within what the ledger takes (a positive serial of at most 20
 * octets, not expired) and, for a CA key, a CA certificate whose signature holds: by its own
 * key when it comes alone, else by the next certificate's.
 */
static void attached_ok(const kbr_ca_cert *leaf, const char *rest, bool ca_key)
{
    X509 *x = kbr_ca_cert_x509_peek(leaf);
    BIGNUM *sn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);

    FUZZ_CHECK(sn != NULL && !BN_is_negative(sn) && !BN_is_zero(sn) && BN_num_bits(sn) < 160);
    FUZZ_CHECK(X509_get_version(x) == X509_VERSION_3 && kbr_ca_cert_not_after(leaf) > NOW);
    if (ca_key) {
        FUZZ_CHECK(X509_check_ca(x) == 1);
        if (rest[0] == '\0')
            FUZZ_CHECK(X509_verify(x, X509_get0_pubkey(x)) == 1);
    }
    BN_free(sn);
    ERR_clear_error();
}

static void chain_as(const char *pem, EVP_PKEY *key, bool ca_key)
{
    kbr_ca_cert *leaf = NULL;
    char *rest = NULL;
    kbr_msg msg = {{0}};
    kbr_err err =
        kbr_ca_cert_for_key(pem, key != NULL ? key : fx.ca_key, ca_key, NOW, &leaf, &rest, &msg);

    queue_empty();
    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST && leaf == NULL && rest == NULL);
        FUZZ_CHECK(strncmp(msg.text, "pem: ", 5) == 0);
    } else {
        FUZZ_CHECK(key != NULL && leaf != NULL && rest != NULL);
        attached_ok(leaf, rest, ca_key);
        chain_again(leaf, rest, key, ca_key);
    }
    kbr_ca_cert_free(leaf);
    free(rest);
}

static void chain(const char *pem)
{
    EVP_PKEY *key = first_key(pem);

    chain_as(pem, key, false);
    chain_as(pem, key, true);
    EVP_PKEY_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    char *pem;

    if (!ready) {
        fixture_init();
        ready = true;
    }
    pem = fuzz_cstr(data, size);
    csr(pem);
    cert(pem);
    chain(pem);
    free(pem);
    return 0;
}
