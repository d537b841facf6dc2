/*
 * crl.c - certificate revocation lists (RFC 5280 5) signed through an issuer's signer.
 *
 * OpenSSL signs a CRL only with a key it holds, and has no setter for the AlgorithmIdentifier
 * inside the TBSCertList, so the TBSCertList is put together here from parts OpenSSL encodes
 * (the issuer's name, times, each revoked certificate, the extensions), signed through the
 * signer like a certificate, and read back by OpenSSL, which checks the signature with the
 * CA's key before the CRL leaves.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "ca_int.h"

/* DER written into a growing buffer; the first failure sticks. */
typedef struct {
    unsigned char *p;
    size_t len, cap;
    kbr_err err;
} der_buf;

static void put(der_buf *b, const void *data, size_t n)
{
    unsigned char *grown;
    size_t cap;

    if (b->err != KBR_OK || n == 0)
        return;
    if (b->len + n > b->cap) {
        cap = b->cap != 0 ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        grown = realloc(b->p, cap);
        if (grown == NULL) {
            b->err = KBR_ERR_NOMEM;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

/* A tag and a definite length (X.690 8.1.3), long form for 128 and more. */
static void put_head(der_buf *b, unsigned char tag, size_t len)
{
    unsigned char h[6] = {tag};
    size_t n = 0;

    if (len > 0xffffffffu) {
        b->err = b->err != KBR_OK ? b->err : KBR_ERR_INTERNAL;
        return;
    }
    if (len < 0x80) {
        h[1] = (unsigned char)len;
        put(b, h, 2);
        return;
    }
    for (size_t l = len; l > 0; l >>= 8)
        n++;
    h[1] = (unsigned char)(0x80 | n);
    for (size_t i = 0; i < n; i++)
        h[2 + i] = (unsigned char)(len >> (8 * (n - 1 - i)));
    put(b, h, 2 + n);
}

/* What an OpenSSL i2d_ call wrote (len, der; der is freed here).  The call is made before,
 * in a statement of its own: arguments have no order of evaluation. */
static void put_i2d(der_buf *b, int len, unsigned char *der)
{
    if (len <= 0 || der == NULL)
        b->err = b->err != KBR_OK ? b->err : KBR_ERR_CRYPTO;
    else
        put(b, der, (size_t)len);
    OPENSSL_free(der);
}

/* A constructed value of tag around the bytes of inner (consumed). */
static void put_wrapped(der_buf *b, unsigned char tag, der_buf *inner)
{
    if (inner->err != KBR_OK && b->err == KBR_OK)
        b->err = inner->err;
    put_head(b, tag, inner->len);
    put(b, inner->p, inner->len);
    free(inner->p);
    *inner = (der_buf){0};
}

static void put_time(der_buf *b, time_t t)
{
    ASN1_TIME *at = ASN1_TIME_set(NULL, t); /* UTCTime through 2049 (RFC 5280 5.1.2.4) */
    unsigned char *der = NULL;
    int len = at != NULL ? i2d_ASN1_TIME(at, &der) : -1;

    put_i2d(b, len, der);
    ASN1_TIME_free(at);
}

static void put_algorithm(der_buf *b, kbr_alg alg)
{
    X509_ALGOR *a = X509_ALGOR_new();
    unsigned char *der = NULL;
    int nid = 0, ptype = 0, len = -1;

    if (a != NULL && ca_sig_algorithm(alg, &nid, &ptype) &&
        X509_ALGOR_set0(a, OBJ_nid2obj(nid), ptype, NULL) == 1)
        len = i2d_X509_ALGOR(a, &der);
    put_i2d(b, len, der);
    X509_ALGOR_free(a);
}

static bool reason_ok(int code)
{
    return code >= 0 && code <= 10 && code != 7;
}

/* One revokedCertificates entry: serial number, revocation date, and its reason unless it is
 * unspecified. */
static kbr_err put_entry(der_buf *b, const kbr_ca_crl_entry *e, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    X509_REVOKED *rev = X509_REVOKED_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *reason = NULL;
    unsigned char *der = NULL;
    size_t n = e->serial_hex != NULL ? strlen(e->serial_hex) : 0;
    int len;

    KBR_ENSURE(rev != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(n > 0 && n <= 40 && strspn(e->serial_hex, "0123456789abcdefABCDEF") == n &&
                   BN_hex2bn(&bn, e->serial_hex) == (int)n && !BN_is_zero(bn),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "crl: serial number \"%.48s\" is not positive hex",
                        e->serial_hex != NULL ? e->serial_hex : ""));
    KBR_ENSURE(
        reason_ok(e->reason_code),
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "crl: %d is not an RFC 5280 CRLReason", e->reason_code));
    sn = BN_to_ASN1_INTEGER(bn, NULL);
    when = ASN1_TIME_set(NULL, e->revoked_at);
    KBR_ENSURE(sn != NULL && when != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(X509_REVOKED_set_serialNumber(rev, sn) == 1 &&
                   X509_REVOKED_set_revocationDate(rev, when) == 1,
               KBR_ERR_CRYPTO);
    if (e->reason_code != 0) {
        reason = ASN1_ENUMERATED_new();
        KBR_ENSURE(reason != NULL && ASN1_ENUMERATED_set(reason, e->reason_code) == 1,
                   KBR_ERR_NOMEM);
        KBR_ENSURE(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0) == 1,
                   KBR_ERR_CRYPTO);
    }
    len = i2d_X509_REVOKED(rev, &der);
    put_i2d(b, len, der);
out:
    ASN1_ENUMERATED_free(reason);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    X509_REVOKED_free(rev);
    return err;
}

/* crlExtensions: the CA's key identifier and the CRL number (RFC 5280 5.2.1, 5.2.3). */
static kbr_err put_extensions(der_buf *b, X509 *ca, int64_t number)
{
    kbr_err err = KBR_OK;
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    X509_EXTENSION *ext = NULL;
    unsigned char *der = NULL;
    int len;

    KBR_ENSURE(exts != NULL && akid != NULL && num != NULL, KBR_ERR_NOMEM);
    akid->keyid = ca_authority_key_id(ca);
    KBR_ENSURE(akid->keyid != NULL, KBR_ERR_CRYPTO);
    KBR_ENSURE(ASN1_INTEGER_set_int64(num, number) == 1, KBR_ERR_NOMEM);
    ext = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
    KBR_ENSURE(ext != NULL && sk_X509_EXTENSION_push(exts, ext) > 0, KBR_ERR_CRYPTO);
    ext = X509V3_EXT_i2d(NID_crl_number, 0, num);
    KBR_ENSURE(ext != NULL && sk_X509_EXTENSION_push(exts, ext) > 0, KBR_ERR_CRYPTO);
    ext = NULL;
    len = i2d_X509_EXTENSIONS(exts, &der);
    put_i2d(b, len, der);
out:
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ASN1_INTEGER_free(num);
    AUTHORITY_KEYID_free(akid);
    return err;
}

/* TBSCertList (RFC 5280 5.1.2). */
static kbr_err tbs_cert_list(const kbr_ca_issuer *issuer, const kbr_ca_crl_entry *entries, size_t n,
                             int64_t number, time_t this_update, time_t next_update, der_buf *tbs,
                             kbr_msg *msg)
{
    static const unsigned char v2[] = {0x02, 0x01, 0x01};
    kbr_err err = KBR_OK;
    X509 *ca = kbr_ca_cert_x509_peek(issuer->cert);
    der_buf body = {0}, revoked = {0}, exts = {0};
    unsigned char *der = NULL;
    int len;

    put(&body, v2, sizeof(v2));
    put_algorithm(&body, issuer->signer.alg);
    len = i2d_X509_NAME(X509_get_subject_name(ca), &der);
    put_i2d(&body, len, der);
    put_time(&body, this_update);
    put_time(&body, next_update);
    for (size_t i = 0; i < n; i++)
        KBR_GUARD(put_entry(&revoked, &entries[i], msg));
    /* revokedCertificates is left out when there are none, as 5.1.2.6 asks */
    if (n > 0)
        put_wrapped(&body, 0x30, &revoked);
    KBR_GUARD(put_extensions(&exts, ca, number));
    put_wrapped(&body, 0xa0, &exts); /* [0] EXPLICIT Extensions */
    put_wrapped(tbs, 0x30, &body);
    KBR_GUARD(tbs->err);
out:
    free(body.p);
    free(revoked.p);
    free(exts.p);
    return err;
}

static kbr_err crl_issuer_ok(X509 *ca, kbr_msg *msg)
{
    uint32_t flags = X509_get_extension_flags(ca);

    if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(ca) & KU_CRL_SIGN) == 0)
        return kbr_fail(msg, KBR_ERR_CONFLICT,
                        "issuer: the CA certificate's keyUsage does not allow cRLSign");
    return KBR_OK;
}

/* The CRL as OpenSSL reads it verifies with the CA's key. */
static kbr_err check_crl(const unsigned char *der, size_t len, X509 *ca, kbr_msg *msg)
{
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
    kbr_err err = KBR_OK;

    if (crl == NULL || p != der + len)
        err = kbr_fail(msg, KBR_ERR_CRYPTO, "the CRL does not read back");
    else if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1)
        err = kbr_fail(msg, KBR_ERR_CRYPTO, "CRL signature does not verify with the issuer key");
    X509_CRL_free(crl);
    return err;
}

kbr_err kbr_ca_crl_make(const kbr_ca_issuer *issuer, const kbr_ca_crl_entry *entries, size_t n,
                        int64_t number, time_t this_update, time_t next_update, unsigned char **der,
                        size_t *len, kbr_msg *msg)
{
    static const unsigned char whole_bytes = 0x00; /* unused bits of the signature BIT STRING */
    kbr_err err = KBR_OK;
    der_buf tbs = {0}, body = {0}, crl = {0};
    unsigned char *sig = NULL;
    size_t siglen = 0;
    X509 *ca;

    *der = NULL;
    *len = 0;
    KBR_ENSURE(issuer != NULL && (entries != NULL || n == 0), KBR_ERR_INTERNAL);
    KBR_ENSURE(number >= 1 && next_update > this_update, KBR_ERR_INTERNAL);
    ca = kbr_ca_cert_x509_peek(issuer->cert);
    KBR_GUARD(crl_issuer_ok(ca, msg));
    KBR_GUARD(tbs_cert_list(issuer, entries, n, number, this_update, next_update, &tbs, msg));
    KBR_GUARD(issuer->signer.sign(issuer->signer.arg, tbs.p, tbs.len, &sig, &siglen));
    KBR_ENSURE(sig != NULL && siglen > 0, KBR_ERR_INTERNAL);
    put(&body, tbs.p, tbs.len);
    put_algorithm(&body, issuer->signer.alg);
    put_head(&body, 0x03, siglen + 1);
    put(&body, &whole_bytes, 1);
    put(&body, sig, siglen);
    put_wrapped(&crl, 0x30, &body);
    KBR_GUARD(crl.err);
    KBR_GUARD(check_crl(crl.p, crl.len, ca, msg));
    *der = crl.p;
    *len = crl.len;
    crl = (der_buf){0};
out:
    free(tbs.p);
    free(body.p);
    free(crl.p);
    free(sig);
    ERR_clear_error();
    return err;
}
