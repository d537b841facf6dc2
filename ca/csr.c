/*
 * csr.c - a device's PKCS#10 request: read strictly, key type checked
 * before any signature work (an RSA-16384 key would be costly to verify),
 * then its self-signature verified as proof that the device holds the key.
 * Only the key is used for a certificate; the subject is kept for the
 * audit record.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "ca_int.h"

struct kbr_ca_csr {
    X509_REQ *req;
    char sha256[65];
    char *subject;
};

#define MSG_NOT_CSR  "csr_pem: not a PEM certificate request"
#define MSG_KEY_TYPE "csr_pem: key type not accepted"
#define MSG_POP      "csr_pem: signature does not verify (no proof of possession)"

void kbr_ca_csr_free(kbr_ca_csr *csr)
{
    if (csr == NULL)
        return;
    X509_REQ_free(csr->req);
    free(csr->subject);
    free(csr);
}

EVP_PKEY *kbr_ca_csr_pubkey_peek(const kbr_ca_csr *csr)
{
    return X509_REQ_get0_pubkey(csr->req);
}

X509_PUBKEY *kbr_ca_csr_spki_peek(const kbr_ca_csr *csr)
{
    return X509_REQ_get_X509_PUBKEY(csr->req);
}

const char *kbr_ca_csr_sha256_hex(const kbr_ca_csr *csr)
{
    return csr->sha256;
}

const char *kbr_ca_csr_subject(const kbr_ca_csr *csr)
{
    return csr->subject;
}

static bool key_accepted(EVP_PKEY *pk)
{
    int bits;

    if (pk == NULL)
        return false;
    if (ca_alg_fits(KBR_ALG_ECDSA_P256, pk) || ca_alg_fits(KBR_ALG_ECDSA_P384, pk) ||
        ca_alg_fits(KBR_ALG_ED25519, pk))
        return true;
    bits = EVP_PKEY_get_bits(pk);
    return EVP_PKEY_is_a(pk, "RSA") && bits >= 2048 && bits <= 4096;
}

/* The one request in pem, with the DER it was read from hashed into sha256. */
static kbr_err read_req(const char *pem, X509_REQ **out, char sha256[65])
{
    kbr_err err = KBR_OK;
    BIO *bio = ca_pem_bio(pem, KBR_CA_CSR_MAX);
    unsigned char *der = NULL, *rest = NULL;
    const unsigned char *p;
    long len = 0, rest_len = 0;
    /* OpenSSL writes "CERTIFICATE REQUEST"; some tools still write the older "NEW ..." label. */
    static const char *const names[] = {PEM_STRING_X509_REQ, PEM_STRING_X509_REQ_OLD, NULL};

    *out = NULL;
    KBR_ENSURE(bio != NULL, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(ca_pem_next(bio, names, &der, &len));
    KBR_ENSURE(ca_pem_next(bio, names, &rest, &rest_len) == KBR_ERR_NOT_FOUND, KBR_ERR_BAD_REQUEST);
    p = der;
    *out = d2i_X509_REQ(NULL, &p, len);
    KBR_ENSURE(*out != NULL, KBR_ERR_BAD_REQUEST);
    kbr_sha256_hex(der, (size_t)len, sha256);
    if (p != der + len) {
        X509_REQ_free(*out);
        *out = NULL;
        err = KBR_ERR_BAD_REQUEST;
    }
out:
    BIO_free(bio);
    OPENSSL_free(der);
    OPENSSL_free(rest);
    return err == KBR_OK ? KBR_OK : KBR_ERR_BAD_REQUEST;
}

static kbr_err subject_string(X509_REQ *req, char **out)
{
    kbr_err err = KBR_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    *out = NULL;
    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(X509_NAME_print_ex(bio, X509_REQ_get_subject_name(req), 0, XN_FLAG_RFC2253) >= 0,
               KBR_ERR_CRYPTO);
    len = BIO_get_mem_data(bio, &data);
    *out = strndup(len > 0 ? data : "", len > 0 ? (size_t)len : 0);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    BIO_free(bio);
    return err;
}

kbr_err kbr_ca_csr_parse(const char *pem, kbr_ca_csr **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_ca_csr *csr = calloc(1, sizeof(*csr));
    EVP_PKEY *pub;

    *out = NULL;
    KBR_ENSURE(csr != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(read_req(pem, &csr->req, csr->sha256) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, MSG_NOT_CSR));
    pub = X509_REQ_get0_pubkey(csr->req);
    KBR_ENSURE(key_accepted(pub), kbr_fail(msg, KBR_ERR_BAD_REQUEST, MSG_KEY_TYPE));
    KBR_ENSURE(X509_REQ_verify(csr->req, pub) == 1, kbr_fail(msg, KBR_ERR_BAD_REQUEST, MSG_POP));
    KBR_GUARD(subject_string(csr->req, &csr->subject));
    *out = csr;
    csr = NULL;
out:
    kbr_ca_csr_free(csr);
    ERR_clear_error();
    return err;
}
