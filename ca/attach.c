/*
 * attach.c - a certificate attached to a key from outside.
 *
 * What is attached becomes the key's current certificate in the ledger: its
 * serial number, fingerprint, expiry and chain.  Everything about it is
 * checked here, on the worker, so that the audit writer is never handed a
 * certificate the ledger cannot take: its encoding, what RFC 5280 asks of
 * a certificate, that it carries the key, and, for a device CA key, that it
 * is a CA certificate whose signature holds.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca_int.h"

/* RFC 5280 4.1.2.2: conforming CAs do not use serial numbers longer than this. */
#define SERIAL_OCTETS_MAX 20

/* ---- the certificate for the key ---- */

static kbr_err version_ok(X509 *x, kbr_msg *msg)
{
    long v = X509_get_version(x);

    if (v != X509_VERSION_3)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: certificate is X.509 v%ld, not v3", v + 1);
    return KBR_OK;
}

/* A positive integer of at most 20 octets as DER writes it, which puts a zero octet before
 * a magnitude whose top bit is set. */
static kbr_err serial_ok(X509 *x, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    int octets;

    KBR_ENSURE(bn != NULL, KBR_ERR_CRYPTO);
    KBR_ENSURE(!BN_is_negative(bn),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: serial number is negative; RFC 5280 4.1.2.2 requires a positive "
                        "integer"));
    KBR_ENSURE(!BN_is_zero(bn), kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                         "pem: serial number is zero; RFC 5280 4.1.2.2 requires "
                                         "a positive integer"));
    octets = BN_num_bits(bn) / 8 + 1;
    KBR_ENSURE(octets <= SERIAL_OCTETS_MAX,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: serial number is %d octets long; RFC 5280 4.1.2.2 allows at most %d",
                        octets, SERIAL_OCTETS_MAX));
out:
    BN_free(bn);
    return err;
}

/*
 * Readable dates, a window that is not empty, and in force now: the certificate becomes the
 * key's current one at once.  Up to a minute early is clock skew, not a certificate for later.
 */
static kbr_err validity_ok(X509 *x, time_t now, kbr_msg *msg)
{
    time_t from, to;
    char when[KBR_TIME_LEN];

    if (ca_time(X509_get0_notBefore(x), &from) != KBR_OK ||
        ca_time(X509_get0_notAfter(x), &to) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: validity dates cannot be read");
    if (to <= from)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: validity ends before it begins");
    if (to <= now) {
        kbr_time_fmt(to, when);
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: certificate expired at %s", when);
    }
    if (from > now + CA_SKEW_SECONDS) {
        kbr_time_fmt(from, when);
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: certificate is not valid before %s", when);
    }
    return KBR_OK;
}

static kbr_err leaf_ok(X509 *x, EVP_PKEY *key_pub, time_t now, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *leaf_pub = X509_get0_pubkey(x);

    KBR_GUARD(version_ok(x, msg));
    KBR_GUARD(serial_ok(x, msg));
    KBR_GUARD(validity_ok(x, now, msg));
    KBR_ENSURE((X509_get_extension_flags(x) & EXFLAG_INVALID) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: certificate has malformed or repeated extensions"));
    KBR_ENSURE(
        key_pub != NULL && leaf_pub != NULL && EVP_PKEY_eq(leaf_pub, key_pub) == 1,
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pem: certificate does not match the key's public key"));
out:
    return err;
}

/*
 * A device CA key issues device certificates under the certificate attached here, so it must
 * be a CA certificate allowed to sign certificates (RFC 5280 4.2.1.9, 4.2.1.3) whose
 * signature can be checked: self-signed, or followed by its issuer's certificate.  Devices
 * would refuse anything else, long after the factory shipped them.
 */
static kbr_err ca_ok(STACK_OF(X509) * sk, kbr_msg *msg)
{
    X509 *x = sk_X509_value(sk, 0);
    uint32_t flags = X509_get_extension_flags(x);

    if ((flags & EXFLAG_BCONS) == 0 || (flags & EXFLAG_CA) == 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: not a CA certificate (no basicConstraints CA:TRUE); a "
                        "device-identity-ca key needs one");
    if ((flags & EXFLAG_KUSAGE) == 0 || (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) == 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: CA certificate without keyUsage keyCertSign");
    if (sk_X509_num(sk) == 1 && X509_check_issued(x, x) != X509_V_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: CA certificate is not self-signed and its issuer's certificate is "
                        "not given (chain_pem, or after it in pem)");
    return KBR_OK;
}

/*
 * A certificate that names itself as its issuer and comes alone says it is self-signed: that
 * is checked, whatever the key.  One issued elsewhere and given without its issuer's
 * certificate cannot be, and a key of another purpose than a device CA may carry it.
 */
static kbr_err self_signature_ok(X509 *x, kbr_msg *msg)
{
    if (X509_check_issued(x, x) != X509_V_OK)
        return KBR_OK;
    if (X509_verify(x, X509_get0_pubkey(x)) != 1)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem: signature of the self-signed certificate does not verify with its "
                        "own key");
    return KBR_OK;
}

/* ---- the chain ---- */

/* Each certificate after the first issued the one before it: names and key identifiers fit,
 * it is a CA, and its key verifies the signature.  Numbers count from 1, the key's own. */
static kbr_err chain_ok(STACK_OF(X509) * sk, kbr_msg *msg)
{
    int i;

    for (i = 0; i + 1 < sk_X509_num(sk); i++) {
        X509 *x = sk_X509_value(sk, i), *issuer = sk_X509_value(sk, i + 1);
        EVP_PKEY *pub = X509_get0_pubkey(issuer);

        if (X509_check_issued(issuer, x) != X509_V_OK)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "pem: chain is not in order: certificate %d is not issued by "
                            "certificate %d",
                            i + 1, i + 2);
        if (X509_check_ca(issuer) == 0)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "pem: certificate %d is not a CA certificate, so it did not issue "
                            "certificate %d",
                            i + 2, i + 1);
        if (pub == NULL || X509_verify(x, pub) != 1)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "pem: signature of certificate %d does not verify with the key of "
                            "certificate %d",
                            i + 1, i + 2);
    }
    return KBR_OK;
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

kbr_err kbr_ca_cert_for_key(const char *pem_chain, EVP_PKEY *key_pub, bool ca_key, time_t now,
                            kbr_ca_cert **leaf, char **chain_pem, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    STACK_OF(X509) *sk = NULL;
    X509 *x = NULL;
    kbr_ca_cert *c = NULL;
    char *chain = NULL;

    *leaf = NULL;
    *chain_pem = NULL;
    KBR_GUARD(ca_read_bundle(pem_chain, true, &sk, msg));
    KBR_GUARD(leaf_ok(sk_X509_value(sk, 0), key_pub, now, msg));
    if (ca_key)
        KBR_GUARD(ca_ok(sk, msg));
    if (sk_X509_num(sk) == 1)
        KBR_GUARD(self_signature_ok(sk_X509_value(sk, 0), msg));
    KBR_GUARD(chain_ok(sk, msg));
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
