/*
 * cert.c - the certificate object (PEM, serial, validity, fingerprint
 * worked out once when it is made) and reading certificates from PEM.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>

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

/* The PEM of a certificate's DER, as PEM_write_bio_X509 writes it: a NUL-terminated
 * malloc()ed string. */
static kbr_err der_pem(const unsigned char *der, int der_len, char **out)
{
    kbr_err err = KBR_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    *out = NULL;
    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(PEM_write_bio(bio, PEM_STRING_X509, "", der, der_len) > 0, KBR_ERR_CRYPTO);
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

kbr_err ca_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return KBR_ERR_BAD_REQUEST;
    *out = timegm(&tm);
    return KBR_OK;
}

kbr_err ca_cert_from_der(const X509 *x, const unsigned char *der, int derlen, kbr_ca_cert **out)
{
    kbr_err err = KBR_OK;
    kbr_ca_cert *c = calloc(1, sizeof(*c));

    *out = NULL;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(der != NULL && derlen > 0, KBR_ERR_CRYPTO);
    KBR_GUARD(ca_time(X509_get0_notBefore(x), &c->not_before));
    KBR_GUARD(ca_time(X509_get0_notAfter(x), &c->not_after));
    KBR_GUARD(der_pem(der, derlen, &c->pem));
    kbr_sha256_hex(der, (size_t)derlen, c->fingerprint);
    KBR_GUARD(serial_hex(x, &c->serial_hex));
    *out = c;
    c = NULL;
out:
    kbr_ca_cert_free(c);
    return err;
}

kbr_err ca_cert_from_built(X509 *x, kbr_ca_cert **out)
{
    kbr_err err;
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);

    *out = NULL;
    err = len > 0 ? ca_cert_from_der(x, der, len, out) : KBR_ERR_CRYPTO;
    OPENSSL_free(der);
    return err;
}

kbr_err ca_cert_from_x509(X509 **x, kbr_ca_cert **out)
{
    kbr_err err;

    err = ca_cert_from_built(*x, out);
    if (err == KBR_OK) {
        (*out)->x509 = *x;
        *x = NULL;
    }
    return err;
}

/* ---- reading PEM ---- */

/*
 * DER gives a certificate one encoding; BER allows many, and OpenSSL reads some of them (a
 * length in more octets than it needs, for one).  One certificate in two encodings would be
 * two fingerprints in the ledger, so where it matters only DER is taken: the certificate is
 * encoded again from what was parsed, its TBS part included (OpenSSL otherwise writes back
 * the TBS bytes it read, which the signature covers), and must come out as the bytes read.
 * Names and extension values keep their own bytes either way; the TBS and the certificate
 * around them are what this checks.  On a copy, so the certificate itself keeps its bytes.
 */
static bool is_der(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    X509 *copy = d2i_X509(NULL, &p, len);
    unsigned char *again = NULL;
    int n = -1;
    bool same;

    if (copy != NULL && i2d_re_X509_tbs(copy, NULL) > 0)
        n = i2d_X509(copy, &again);
    same = n == len && memcmp(again, der, (size_t)len) == 0;
    OPENSSL_free(again);
    X509_free(copy);
    return same;
}

/*
 * The next certificate in bio; KBR_ERR_NOT_FOUND at a clean end, KBR_ERR_BAD_REQUEST for
 * anything else than one whole certificate, KBR_ERR_CONFLICT when strict and it is not DER.
 * Caller frees *out.
 */
static kbr_err next_cert(BIO *bio, bool strict, X509 **out)
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
    /* one certificate a PEM block, with nothing after it */
    KBR_ENSURE(p == der + len, KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(!strict || is_der(der, len), KBR_ERR_CONFLICT);
out:
    if (err != KBR_OK) {
        X509_free(*out);
        *out = NULL;
    }
    OPENSSL_free(der);
    return err;
}

static kbr_err bundle_fail(kbr_err why, int n, kbr_msg *msg)
{
    if (why == KBR_ERR_CONFLICT)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: certificate %d is not DER-encoded (an encoding DER does not allow)",
                        n);
    if (n == 1)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: not a PEM certificate chain");
    return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                    "pem: what follows certificate %d is not a PEM certificate", n - 1);
}

kbr_err ca_read_bundle(const char *pem, bool strict, STACK_OF(X509) * *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    BIO *bio = ca_pem_bio(pem, KBR_CA_CHAIN_MAX);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x = NULL;

    *out = NULL;
    KBR_ENSURE(bio != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: not a PEM certificate chain"));
    KBR_ENSURE(sk != NULL, KBR_ERR_NOMEM);
    while ((err = next_cert(bio, strict, &x)) == KBR_OK) {
        KBR_ENSURE(
            sk_X509_num(sk) < CHAIN_CERTS_MAX,
            kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: more than %d certificates", CHAIN_CERTS_MAX));
        KBR_ENSURE(sk_X509_push(sk, x) > 0, KBR_ERR_NOMEM);
        x = NULL;
    }
    KBR_ENSURE(err == KBR_ERR_NOT_FOUND && sk_X509_num(sk) > 0,
               bundle_fail(err, sk_X509_num(sk) + 1, msg));
    err = KBR_OK;
    *out = sk;
    sk = NULL;
out:
    BIO_free(bio);
    X509_free(x);
    sk_X509_pop_free(sk, X509_free);
    return err;
}

/* Certificates the broker stored or made are read back as they are: the DER rule is for what
 * comes from outside, which kbr_ca_cert_for_key checks before anything is stored. */
kbr_err kbr_ca_cert_parse(const char *pem, kbr_ca_cert **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    STACK_OF(X509) *sk = NULL;
    X509 *x = NULL;

    *out = NULL;
    KBR_ENSURE(ca_read_bundle(pem, false, &sk, NULL) == KBR_OK && sk_X509_num(sk) == 1,
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
