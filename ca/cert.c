/*
 * cert.c - the certificate object (PEM, serial, validity, fingerprint
 * worked out once when it is made), reading stored certificates, and
 * checking a certificate chain attached to a key.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca_int.h"

/* A certificate bundle longer than this is not a chain anyone means. */
#define CHAIN_CERTS_MAX 16

struct kbr_ca_cert {
    X509 *x509;
    char *pem;
    char *serial_hex;
    char fingerprint[65];
    time_t not_before, not_after;
};

void kbr_ca_cert_free(kbr_ca_cert *c)
{
    if (c == NULL)
        return;
    X509_free(c->x509);
    free(c->pem);
    free(c->serial_hex);
    free(c);
}

const char *kbr_ca_cert_pem(const kbr_ca_cert *c)
{
    return c->pem;
}

const char *kbr_ca_cert_serial_hex(const kbr_ca_cert *c)
{
    return c->serial_hex;
}

const char *kbr_ca_cert_fingerprint(const kbr_ca_cert *c)
{
    return c->fingerprint;
}

time_t kbr_ca_cert_not_before(const kbr_ca_cert *c)
{
    return c->not_before;
}

time_t kbr_ca_cert_not_after(const kbr_ca_cert *c)
{
    return c->not_after;
}

void kbr_ca_cert_not_before_str(const kbr_ca_cert *c, char buf[KBR_TIME_LEN])
{
    kbr_time_fmt(c->not_before, buf);
}

void kbr_ca_cert_not_after_str(const kbr_ca_cert *c, char buf[KBR_TIME_LEN])
{
    kbr_time_fmt(c->not_after, buf);
}

X509 *kbr_ca_cert_x509_peek(const kbr_ca_cert *c)
{
    return c->x509;
}

/* ---- making the object ---- */

/* The PEM of x as a NUL-terminated malloc()ed string. */
static kbr_err x509_pem(X509 *x, char **out)
{
    kbr_err err = KBR_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    *out = NULL;
    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(PEM_write_bio_X509(bio, x) == 1, KBR_ERR_CRYPTO);
    len = BIO_get_mem_data(bio, &data);
    KBR_ENSURE(len > 0, KBR_ERR_CRYPTO);
    *out = strndup(data, (size_t)len);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    BIO_free(bio);
    return err;
}

static kbr_err serial_hex(const X509 *x, char **out)
{
    kbr_err err = KBR_OK;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    unsigned char *bytes = NULL;
    char *hex = NULL;
    size_t n, sign;

    *out = NULL;
    KBR_ENSURE(bn != NULL, KBR_ERR_CRYPTO);
    /* Zero has no magnitude bytes but is still written as one byte. */
    n = BN_num_bytes(bn) > 0 ? (size_t)BN_num_bytes(bn) : 1;
    sign = BN_is_negative(bn) ? 1 : 0;
    bytes = malloc(n);
    hex = malloc(2 * n + sign + 1);
    KBR_ENSURE(bytes != NULL && hex != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(BN_bn2binpad(bn, bytes, (int)n) == (int)n, KBR_ERR_CRYPTO);
    hex[0] = '-';
    kbr_hex_encode_buf(bytes, n, hex + sign);
    *out = hex;
    hex = NULL;
out:
    BN_free(bn);
    free(bytes);
    free(hex);
    return err;
}

static kbr_err asn1_time_t(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return KBR_ERR_BAD_REQUEST;
    *out = timegm(&tm);
    return KBR_OK;
}

static kbr_err fingerprint(X509 *x, char out[65])
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);

    if (len <= 0)
        return KBR_ERR_CRYPTO;
    kbr_sha256_hex(der, (size_t)len, out);
    OPENSSL_free(der);
    return KBR_OK;
}

kbr_err ca_cert_from_x509(X509 **x, kbr_ca_cert **out)
{
    kbr_err err = KBR_OK;
    kbr_ca_cert *c = calloc(1, sizeof(*c));

    *out = NULL;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(asn1_time_t(X509_get0_notBefore(*x), &c->not_before));
    KBR_GUARD(asn1_time_t(X509_get0_notAfter(*x), &c->not_after));
    KBR_GUARD(x509_pem(*x, &c->pem));
    KBR_GUARD(serial_hex(*x, &c->serial_hex));
    KBR_GUARD(fingerprint(*x, c->fingerprint));
    c->x509 = *x;
    *x = NULL;
    *out = c;
    c = NULL;
out:
    kbr_ca_cert_free(c);
    return err;
}

/* ---- reading PEM ---- */

/* The next certificate in bio; KBR_ERR_NOT_FOUND at a clean end. Caller frees *out. */
static kbr_err next_cert(BIO *bio, X509 **out)
{
    kbr_err err = KBR_OK;
    unsigned char *der = NULL;
    const unsigned char *p;
    long len = 0;
    static const char *const names[] = {PEM_STRING_X509, NULL};

    *out = NULL;
    KBR_GUARD(ca_pem_next(bio, names, &der, &len));
    p = der;
    *out = d2i_X509(NULL, &p, len);
    KBR_ENSURE(*out != NULL, KBR_ERR_BAD_REQUEST);
    if (p != der + len) {
        X509_free(*out);
        *out = NULL;
        err = KBR_ERR_BAD_REQUEST;
    }
out:
    OPENSSL_free(der);
    return err;
}

/* Every certificate of a bundle, at least one and at most CHAIN_CERTS_MAX. */
static kbr_err read_bundle(const char *pem, STACK_OF(X509) * *out)
{
    kbr_err err = KBR_OK;
    BIO *bio = ca_pem_bio(pem, KBR_CA_CHAIN_MAX);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x = NULL;

    *out = NULL;
    KBR_ENSURE(bio != NULL, KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(sk != NULL, KBR_ERR_NOMEM);
    while ((err = next_cert(bio, &x)) == KBR_OK) {
        KBR_ENSURE(sk_X509_num(sk) < CHAIN_CERTS_MAX, KBR_ERR_BAD_REQUEST);
        KBR_ENSURE(sk_X509_push(sk, x) > 0, KBR_ERR_NOMEM);
        x = NULL;
    }
    KBR_ENSURE(err == KBR_ERR_NOT_FOUND && sk_X509_num(sk) > 0, KBR_ERR_BAD_REQUEST);
    err = KBR_OK;
    *out = sk;
    sk = NULL;
out:
    BIO_free(bio);
    X509_free(x);
    sk_X509_pop_free(sk, X509_free);
    return err;
}

kbr_err kbr_ca_cert_parse(const char *pem, kbr_ca_cert **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    STACK_OF(X509) *sk = NULL;
    X509 *x = NULL;

    *out = NULL;
    KBR_ENSURE(read_bundle(pem, &sk) == KBR_OK && sk_X509_num(sk) == 1,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: not a PEM certificate"));
    x = sk_X509_shift(sk);
    KBR_ENSURE(ca_cert_from_x509(&x, out) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: certificate cannot be read"));
out:
    X509_free(x);
    sk_X509_pop_free(sk, X509_free);
    ERR_clear_error();
    return err;
}

/* ---- a chain for a key ---- */

/* True if issuer's name, key identifier and key usage fit, and its key verifies x. */
static bool issued_by(X509 *x, X509 *issuer)
{
    EVP_PKEY *pub = X509_get0_pubkey(issuer);

    return pub != NULL && X509_check_issued(issuer, x) == X509_V_OK && X509_verify(x, pub) == 1;
}

static kbr_err chain_to_pem(STACK_OF(X509) * sk, char **out)
{
    kbr_err err = KBR_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;
    int i;

    *out = NULL;
    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    for (i = 1; i < sk_X509_num(sk); i++)
        KBR_ENSURE(PEM_write_bio_X509(bio, sk_X509_value(sk, i)) == 1, KBR_ERR_CRYPTO);
    len = BIO_get_mem_data(bio, &data);
    *out = strndup(len > 0 ? data : "", len > 0 ? (size_t)len : 0);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    BIO_free(bio);
    return err;
}

static kbr_err chain_check(STACK_OF(X509) * sk, EVP_PKEY *key_pub, kbr_msg *msg)
{
    EVP_PKEY *leaf_pub = X509_get0_pubkey(sk_X509_value(sk, 0));
    int i;

    if (key_pub == NULL || leaf_pub == NULL || EVP_PKEY_eq(leaf_pub, key_pub) != 1)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: certificate does not match the key's public key");
    for (i = 0; i + 1 < sk_X509_num(sk); i++)
        if (!issued_by(sk_X509_value(sk, i), sk_X509_value(sk, i + 1)))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: chain is not in order");
    return KBR_OK;
}

kbr_err kbr_ca_cert_for_key(const char *pem_chain, EVP_PKEY *key_pub, kbr_ca_cert **leaf,
                            char **chain_pem, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    STACK_OF(X509) *sk = NULL;
    X509 *x = NULL;
    kbr_ca_cert *c = NULL;
    char *chain = NULL;

    *leaf = NULL;
    *chain_pem = NULL;
    KBR_ENSURE(read_bundle(pem_chain, &sk) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: not a PEM certificate chain"));
    KBR_GUARD(chain_check(sk, key_pub, msg));
    KBR_GUARD(chain_to_pem(sk, &chain));
    x = sk_X509_shift(sk);
    KBR_ENSURE(ca_cert_from_x509(&x, &c) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: certificate cannot be read"));
    *leaf = c;
    *chain_pem = chain;
    c = NULL;
    chain = NULL;
out:
    X509_free(x);
    sk_X509_pop_free(sk, X509_free);
    kbr_ca_cert_free(c);
    free(chain);
    ERR_clear_error();
    return err;
}
