/*
 * kbr_ca.h - X.509 certificates made and checked by the broker: device
 * certificates issued from a device's CSR, self-signed CA certificates for
 * keys in the HSM, and certificates attached to a key from outside.
 *
 * Every certificate is signed through a kbr_ca_signer, so a private key
 * never has to leave the HSM, and every certificate made here is verified
 * against the issuer's public key before it is returned: a certificate with
 * a broken signature never leaves this module.
 *
 * Messages written to a kbr_msg name the request field at fault
 * ("csr_pem: ...", "device.serial: ...", "self_signed.subject: ...",
 * "pem: ...") so the broker can pass them on unchanged.
 *
 * Every function here leaves the calling thread's OpenSSL error queue
 * empty, so a parse on the event thread cannot disturb its TLS calls.
 * Objects are immutable once made and may be read from several threads;
 * a signer is only as thread-safe as what it signs with (an HSM signer
 * belongs to its session's thread).
 */
#ifndef KBR_CA_H
#define KBR_CA_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kbr_common.h"
#include "kbr_hsm.h"

/* Largest PEM accepted: a CSR, and a certificate bundle (leaf and chain). */
#define KBR_CA_CSR_MAX   16384
#define KBR_CA_CHAIN_MAX 65536
/* Longest validity, for CA and device certificates alike (100 years). */
#define KBR_CA_DAYS_MAX 36500
/* Longest URL a CRL distribution point carries. */
#define KBR_CA_CRL_URL_MAX 1024

/*
 * Makes the signature of a certificate for the key of algorithm alg, in
 * the form X.509 carries it: ECDSA-Sig-Value DER over SHA-256 (P-256) or
 * SHA-384 (P-384), Ed25519 over the TBS bytes themselves, RSASSA-PKCS1-v1_5
 * with SHA-256 (both RSA sizes).  sign() hashes tbs itself; on success *sig
 * is malloc()ed (caller frees with free()).
 */
typedef struct {
    kbr_alg alg;
    kbr_err (*sign)(void *arg, const unsigned char *tbs, size_t tbslen, unsigned char **sig,
                    size_t *siglen);
    void *arg;
} kbr_ca_signer;

/* What a signer made by kbr_ca_hsm_signer() points at; storage is the caller's. */
typedef struct {
    kbr_hsm_session *session; /* borrowed */
    kbr_alg alg;
    char label[KBR_HSM_LABEL_MAX];
} kbr_ca_hsm_ctx;

/*
 * A signer that signs with the HSM key labelled label through session s
 * (kbr_hsm_sign).  ctx is filled in and becomes out->arg: ctx and s must
 * outlive every use of *out, and like the session the signer belongs to one
 * thread.  Nothing to free.  The HSM is not asked anything here; a missing
 * key or one of another algorithm fails at the first signature.
 * KBR_ERR_BAD_REQUEST for an empty or too long label or an unknown alg.
 */
KBR_WUR kbr_err kbr_ca_hsm_signer(kbr_hsm_session *s, const char *label, kbr_alg alg,
                                  kbr_ca_hsm_ctx *ctx, kbr_ca_signer *out);

/* ---- certificates ---- */

typedef struct kbr_ca_cert kbr_ca_cert;

/* Accepts NULL. */
void kbr_ca_cert_free(kbr_ca_cert *c);

/* The certificate alone as PEM.  Borrowed: valid until kbr_ca_cert_free. */
const char *kbr_ca_cert_pem(const kbr_ca_cert *c);
/* The serial number as lowercase hex, two digits per byte of its magnitude ("-" first if
 * negative, which only a certificate read by kbr_ca_cert_parse can be: the broker makes none
 * and kbr_ca_cert_for_key refuses them).  Borrowed. */
const char *kbr_ca_cert_serial_hex(const kbr_ca_cert *c);
/* SHA-256 of the DER certificate, lowercase hex.  Borrowed. */
const char *kbr_ca_cert_fingerprint(const kbr_ca_cert *c);
time_t kbr_ca_cert_not_before(const kbr_ca_cert *c);
time_t kbr_ca_cert_not_after(const kbr_ca_cert *c);
/* The validity bounds as RFC 3339 UTC (kbr_time_fmt). */
void kbr_ca_cert_not_before_str(const kbr_ca_cert *c, char buf[KBR_TIME_LEN]);
void kbr_ca_cert_not_after_str(const kbr_ca_cert *c, char buf[KBR_TIME_LEN]);
/*
 * The parsed certificate.  Borrowed: do not free or change it.  NULL for a device
 * certificate kbr_ca_issue_device made: that one is built, not parsed, and reading it back
 * would cost a provisioning a tenth of its CPU for nothing the broker needs.  Parse its PEM
 * (kbr_ca_cert_parse) to look inside it.
 */
X509 *kbr_ca_cert_x509_peek(const kbr_ca_cert *c);

/*
 * Reads exactly one PEM certificate (at most KBR_CA_CHAIN_MAX bytes; only
 * whitespace around it).  KBR_ERR_BAD_REQUEST "pem: ..." otherwise.
 * Caller frees *out with kbr_ca_cert_free.
 */
KBR_WUR kbr_err kbr_ca_cert_parse(const char *pem, kbr_ca_cert **out, kbr_msg *msg);

/*
 * A certificate attached to a key from outside: pem_chain holds PEM
 * certificates only (at most 16, KBR_CA_CHAIN_MAX bytes, whitespace between
 * and around them), each in DER and nothing else, the first for the key,
 * each next one the issuer of the one before it (its name and, when present,
 * key identifier match, it is a CA certificate and its key verifies the
 * signature).  The first certificate is X.509 v3, its serial number a
 * positive integer of at most 20 octets (RFC 5280 4.1.2.2), its validity
 * readable, not empty, not over at now and begun by now (give or take a
 * minute of clock skew), its extensions well-formed, and it carries key_pub.
 * Alone and naming itself as its issuer, its signature verifies with its own
 * key.  ca_key (the key is a device-identity-ca): it is also a CA certificate
 * (basicConstraints CA:TRUE, keyUsage with keyCertSign), and self-signed or
 * followed by its issuer's certificate, so its signature is always checked.
 * Errors are KBR_ERR_BAD_REQUEST with a message that
 * names the problem, such as
 *   "pem: not a PEM certificate chain",
 *   "pem: certificate 2 is not DER-encoded (...)",
 *   "pem: serial number is negative; ...",
 *   "pem: certificate does not match the key's public key",
 *   "pem: not a CA certificate (...)",
 *   "pem: chain is not in order: certificate 1 is not issued by certificate 2",
 *   "pem: signature of certificate 1 does not verify with the key of certificate 2".
 * *leaf is the first certificate (caller frees with kbr_ca_cert_free),
 * *chain_pem the others re-encoded as PEM, "" if none (caller frees with free()).
 */
KBR_WUR kbr_err kbr_ca_cert_for_key(const char *pem_chain, EVP_PKEY *key_pub, bool ca_key,
                                    time_t now, kbr_ca_cert **leaf, char **chain_pem, kbr_msg *msg);

/*
 * A self-signed CA certificate for the key the signer uses, whose public
 * key is pub (it must fit signer->alg).  subject is "CN=...,O=...,C=..":
 * attributes CN (required), O, OU, C (two letters), L, ST, each at most
 * once, values 1..64 printable ASCII characters without , = + ; " \ < >,
 * spaces around names and values ignored.  days is 1..KBR_CA_DAYS_MAX.
 * The certificate: v3, random 127-bit serial, notBefore now - 60 s,
 * notAfter now + days, basicConstraints critical CA:TRUE with pathlen 0
 * (a device CA signs device certificates, not other CAs), keyUsage critical
 * keyCertSign, cRLSign, digitalSignature, subjectKeyIdentifier (SHA-1 of
 * the public key, RFC 5280 method 1) and authorityKeyIdentifier equal to it.
 * With crl_url (NULL: none), a cRLDistributionPoints extension whose one
 * distribution point is that URL (1..KBR_CA_CRL_URL_MAX printable ASCII
 * characters without spaces; KBR_ERR_BAD_REQUEST otherwise).
 * Errors: KBR_ERR_BAD_REQUEST "self_signed.subject: ..." or
 * "self_signed.days: ...", KBR_ERR_CONFLICT if pub does not fit signer->alg,
 * the signer's error, KBR_ERR_CRYPTO if the signature does not verify with
 * pub.  Caller frees *out with kbr_ca_cert_free.
 */
KBR_WUR kbr_err kbr_ca_self_signed(const kbr_ca_signer *signer, EVP_PKEY *pub, const char *subject,
                                   long days, time_t now, const char *crl_url, kbr_ca_cert **out,
                                   kbr_msg *msg);

/* ---- certificate requests ---- */

typedef struct kbr_ca_csr kbr_ca_csr;

/*
 * Reads exactly one PEM PKCS#10 request (at most KBR_CA_CSR_MAX bytes;
 * only whitespace around it) and checks its own signature with its own
 * public key (proof of possession).  Accepted keys: EC P-256, EC P-384,
 * Ed25519, RSA 2048..4096 bits.  KBR_ERR_BAD_REQUEST with
 *   "csr_pem: not a PEM certificate request",
 *   "csr_pem: key type not accepted",
 *   "csr_pem: signature does not verify (no proof of possession)".
 * Caller frees *out with kbr_ca_csr_free.
 */
KBR_WUR kbr_err kbr_ca_csr_parse(const char *pem, kbr_ca_csr **out, kbr_msg *msg);
/* Accepts NULL. */
void kbr_ca_csr_free(kbr_ca_csr *csr);
/* The requested public key.  Borrowed: valid until kbr_ca_csr_free. */
EVP_PKEY *kbr_ca_csr_pubkey_peek(const kbr_ca_csr *csr);
/* The request's SubjectPublicKeyInfo as it was encoded.  Borrowed, as above. */
X509_PUBKEY *kbr_ca_csr_spki_peek(const kbr_ca_csr *csr);
/* SHA-256 of the request's DER, lowercase hex.  Borrowed. */
const char *kbr_ca_csr_sha256_hex(const kbr_ca_csr *csr);
/* The subject the request asked for, RFC 2253 form with non-ASCII escaped; for the audit
 * record only, never for a certificate.  Borrowed. */
const char *kbr_ca_csr_subject(const kbr_ca_csr *csr);

/* ---- issuing device certificates ---- */

typedef struct kbr_ca_issuer kbr_ca_issuer;

/*
 * An issuer: the CA certificate cert_pem (exactly one PEM certificate) and
 * the signer of its key.  signer_pub is the signer key's public key (as
 * kbr_hsm_public_key returns it); the certificate must carry that key, the
 * key must fit signer->alg, and the certificate must be a CA certificate
 * (basicConstraints CA:TRUE; keyUsage, if present, with keyCertSign).
 * The signer is copied; what signer->arg points at must outlive the issuer.
 * Errors: KBR_ERR_BAD_REQUEST "issuer: not a PEM certificate",
 * KBR_ERR_CONFLICT "issuer: ..." when the certificate does not fit.
 * Caller frees *out with kbr_ca_issuer_free.
 */
KBR_WUR kbr_err kbr_ca_issuer_new(const char *cert_pem, const kbr_ca_signer *signer,
                                  EVP_PKEY *signer_pub, kbr_ca_issuer **out, kbr_msg *msg);
/* Accepts NULL. */
void kbr_ca_issuer_free(kbr_ca_issuer *issuer);

/*
 * A device certificate for the key of csr: v3, random 127-bit serial,
 * issuer = the CA's subject, subject = CN=serial_cn and nothing else
 * (whatever the CSR asked; no CSR extension is copied), notBefore now - 60 s
 * (clock skew), notAfter now + validity_days but never after the CA
 * certificate's notAfter, basicConstraints critical CA:FALSE, keyUsage
 * critical digitalSignature, extendedKeyUsage clientAuth,
 * subjectKeyIdentifier (SHA-1 of the key), authorityKeyIdentifier keyid =
 * the CA's subjectKeyIdentifier (or the same hash of the CA key if it has
 * none), and with crl_url (NULL: none) a cRLDistributionPoints extension as
 * for kbr_ca_self_signed.  serial_cn is 1..64 of [A-Za-z0-9._:-];
 * validity_days is 1..KBR_CA_DAYS_MAX.
 * Errors: KBR_ERR_BAD_REQUEST "device.serial: ..." or "validity_days: ...",
 * KBR_ERR_CONFLICT "issuer: ..." if the CA certificate has expired at now,
 * the signer's error, KBR_ERR_CRYPTO if the signature does not verify with
 * the CA's key.  Caller frees *out with kbr_ca_cert_free.
 */
KBR_WUR kbr_err kbr_ca_issue_device(const kbr_ca_issuer *issuer, const kbr_ca_csr *csr,
                                    const char *serial_cn, long validity_days, time_t now,
                                    const char *crl_url, kbr_ca_cert **out, kbr_msg *msg);

/* ---- certificate revocation lists ---- */

/* A certificate a CRL lists: its serial number as positive hex (as kbr_ca_cert_serial_hex
 * writes it), when it was revoked, and its RFC 5280 CRLReason code. */
typedef struct {
    const char *serial_hex;
    time_t revoked_at;
    int reason_code;
} kbr_ca_crl_entry;

/*
 * A v2 CRL (RFC 5280 5) of issuer's CA certificate, signed by issuer's signer:
 * issuer = the CA's subject, thisUpdate this_update, nextUpdate next_update
 * (later; UTCTime through 2049, GeneralizedTime after), one entry per
 * entries[i] with its revocationDate and, unless the code is 0 (unspecified,
 * which 5.3.1 asks to leave out), a reasonCode extension; extensions
 * authorityKeyIdentifier (as the issuer's certificates carry it) and
 * cRLNumber number (1 or more).  The CRL is verified with the CA's key before
 * it is returned.  *der (caller frees with free()) and *len are its DER.
 * Errors: KBR_ERR_CONFLICT "issuer: ..." when the CA certificate's keyUsage
 * does not allow cRLSign (relying parties would refuse the CRL),
 * KBR_ERR_BAD_REQUEST for an entry whose serial number is not positive hex,
 * or a reason code RFC 5280 does not define, KBR_ERR_INTERNAL for a number
 * below 1 or a next_update not after this_update, the signer's error,
 * KBR_ERR_CRYPTO if the signature does not verify.
 */
KBR_WUR kbr_err kbr_ca_crl_make(const kbr_ca_issuer *issuer, const kbr_ca_crl_entry *entries,
                                size_t n, int64_t number, time_t this_update, time_t next_update,
                                unsigned char **der, size_t *len, kbr_msg *msg);

#endif
