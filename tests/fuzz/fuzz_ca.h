/*
 * fuzz_ca.h - a certificate signer backed by an OpenSSL P-256 key, for the
 * fuzz targets that drive kbr_ca: it signs as the HSM signer does for an
 * ecdsa-p256 key (ECDSA-Sig-Value DER over SHA-256), without an HSM.
 */
#ifndef KBR_FUZZ_CA_H
#define KBR_FUZZ_CA_H

#include <openssl/evp.h>

#include "kbr_ca.h"

static inline kbr_err fuzz_soft_sign(void *arg, const unsigned char *tbs, size_t tbslen,
                                     unsigned char **sig, size_t *siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = NULL;
    size_t len = 0;
    kbr_err err = KBR_ERR_CRYPTO;

    *sig = NULL;
    *siglen = 0;
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, arg) != 1 ||
        EVP_DigestSign(ctx, NULL, &len, tbs, tbslen) != 1)
        goto out;
    buf = malloc(len);
    if (buf == NULL || EVP_DigestSign(ctx, buf, &len, tbs, tbslen) != 1)
        goto out;
    *sig = buf;
    *siglen = len;
    buf = NULL;
    err = KBR_OK;
out:
    free(buf);
    EVP_MD_CTX_free(ctx);
    return err;
}

/* A signer for key (a P-256 EVP_PKEY that must outlive it). */
static inline kbr_ca_signer fuzz_soft_signer(EVP_PKEY *key)
{
    kbr_ca_signer s = {.alg = KBR_ALG_ECDSA_P256, .sign = fuzz_soft_sign, .arg = key};

    return s;
}

#endif
