/*
 * ca_int.h - what the ca/ files share and nothing outside them sees: the
 * signing step, the certificate skeleton and extensions, the strict PEM
 * reader, the certificate object's constructor and the bundle reader.
 */
#ifndef KBR_CA_INT_H
#define KBR_CA_INT_H

#include <openssl/bio.h>

#include "kbr_ca.h"

/* Seconds a certificate is back-dated so a device whose clock lags accepts it. */
#define CA_SKEW_SECONDS 60

/* An issuer: a CA certificate and the signer of its key (issue.c). */
struct kbr_ca_issuer {
    kbr_ca_cert *cert;
    kbr_ca_signer signer;
};

/* True if pk is the kind of key alg names (curve or modulus size included). */
bool ca_alg_fits(kbr_alg alg, EVP_PKEY *pk);

/* The signature AlgorithmIdentifier of alg: its OID's nid and parameter type (V_ASN1_UNDEF
 * for none).  False for an unknown alg. */
bool ca_sig_algorithm(kbr_alg alg, int *nid, int *ptype);

/*
 * Signs x in place: sets both signature AlgorithmIdentifiers for signer->alg, signs the
 * TBS through the signer, installs the signature and verifies it with issuer_pub over the
 * TBS bytes signed.  *der is the signed certificate's DER (i2d_X509's bytes), the TBS in it
 * the one signed; caller frees it with OPENSSL_free.  On an error x holds no signature anyone
 * may use and *der is NULL.
 */
kbr_err ca_sign(X509 *x, const kbr_ca_signer *signer, EVP_PKEY *issuer_pub, unsigned char **der,
                int *derlen, kbr_msg *msg);

/*
 * Sets to's algorithm, its parameters (an OID, a DER SEQUENCE or none) and the key's bits to
 * copies of algor's and bits': a SubjectPublicKeyInfo copied field for field, with no key
 * decoded from it.
 */
kbr_err ca_spki_set(X509_PUBKEY *to, const X509_ALGOR *algor, const unsigned char *bits, int nbits);

/*
 * A v3 certificate with a random serial, the given names, the validity
 * [now - CA_SKEW_SECONDS, not_after] and the subject's key (spki copied as it stands, a
 * request's; or pub when spki is NULL), with subjectKeyIdentifier and
 * authorityKeyIdentifier (from issuer, or from itself if issuer is NULL).
 * Caller frees *out with X509_free.
 */
kbr_err ca_skeleton(const X509_NAME *subject, const X509_NAME *issuer_name, X509 *issuer,
                    EVP_PKEY *pub, const X509_PUBKEY *spki, time_t now, time_t not_after,
                    X509 **out);
/* Adds the extension nid written in openssl.cnf syntax ("critical,CA:FALSE"). */
kbr_err ca_add_ext(X509 *x, int nid, const char *value);
/* Adds a cRLDistributionPoints extension of one distribution point, the full name url
 * (RFC 5280 4.2.1.13); url is 1..KBR_CA_CRL_URL_MAX printable ASCII characters without
 * spaces (KBR_ERR_BAD_REQUEST otherwise). */
kbr_err ca_add_crl_dp(X509 *x, const char *url);
/* issuer's key identifier as a certificate it issues names it (authorityKeyIdentifier): its
 * own subjectKeyIdentifier if it has one, else SHA-1 of its key.  Caller frees, NULL when out
 * of memory. */
ASN1_OCTET_STRING *ca_authority_key_id(X509 *issuer);

/*
 * Reads the next PEM object from bio, which must carry one of the labels
 * in names (NULL-terminated) and no headers.  KBR_ERR_NOT_FOUND if only whitespace is left;
 * KBR_ERR_BAD_REQUEST for anything else that is not such an object.
 * Caller frees *der with OPENSSL_free.
 */
kbr_err ca_pem_next(BIO *bio, const char *const names[], unsigned char **der, long *len);
/* A read-only BIO over pem if strlen(pem) <= limit, else NULL. Caller frees with BIO_free. */
BIO *ca_pem_bio(const char *pem, size_t limit);

/* Parses a self-signed certificate's subject (see kbr_ca_self_signed). Caller frees *out with
 * X509_NAME_free. */
kbr_err ca_subject_parse(const char *subject, X509_NAME **out, kbr_msg *msg);

/* t as seconds since the epoch; KBR_ERR_BAD_REQUEST if it cannot be read. */
kbr_err ca_time(const ASN1_TIME *t, time_t *out);

/* Wraps *x (taken: *x is NULLed) in a kbr_ca_cert.  Caller frees *out with kbr_ca_cert_free. */
kbr_err ca_cert_from_x509(X509 **x, kbr_ca_cert **out);
/* A kbr_ca_cert of what x encodes (PEM, serial, validity, fingerprint) without x itself:
 * its kbr_ca_cert_x509_peek is NULL.  x stays the caller's. */
kbr_err ca_cert_from_built(X509 *x, kbr_ca_cert **out);
/* The same, with x's DER given (ca_sign's): not encoded again. */
kbr_err ca_cert_from_der(const X509 *x, const unsigned char *der, int derlen, kbr_ca_cert **out);

/*
 * Every certificate of a PEM bundle (at most KBR_CA_CHAIN_MAX bytes): at least one, at most
 * 16, each a whole certificate with nothing after it, only whitespace between and around
 * them; strict: each in DER and nothing else.  KBR_ERR_BAD_REQUEST with msg "pem: ..."
 * naming the certificate at fault.  Caller frees *out with sk_X509_pop_free(.., X509_free).
 */
kbr_err ca_read_bundle(const char *pem, bool strict, STACK_OF(X509) * *out, kbr_msg *msg);

#endif
