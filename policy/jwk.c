/* jwk.c - the issuer public key as a JWK (RFC 7517) with an RFC 7638 thumbprint. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>

#include "policy_int.h"

#define P256_COORD_LEN 32

bool kbr_pkey_is_p256(EVP_PKEY *pkey)
{
    char group[64];

    if (pkey == NULL || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
        return false;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL) != 1)
        return false;
    return strcmp(group, "prime256v1") == 0;
}

/* The affine coordinate `param` (x or y) as base64url of its 32 big-endian bytes. */
static kbr_err coord_b64url(EVP_PKEY *pub, const char *param, char **out)
{
    kbr_err err = KBR_OK;
    BIGNUM *bn = NULL;
    unsigned char buf[P256_COORD_LEN];

    *out = NULL;
    KBR_ENSURE(EVP_PKEY_get_bn_param(pub, param, &bn) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(BN_bn2binpad(bn, buf, sizeof(buf)) == (int)sizeof(buf), KBR_ERR_CRYPTO);
    KBR_GUARD(kbr_b64url_encode(buf, sizeof(buf), out));
out:
    BN_free(bn);
    return err;
}

/* RFC 7638: SHA-256 over the required members only, in canonical form. */
static kbr_err thumbprint(const json_t *jwk, char **kid)
{
    kbr_err err = KBR_OK;
    json_t *req = NULL;
    char *canon = NULL;
    unsigned char md[32];

    *kid = NULL;
    req = json_pack("{s:O, s:O, s:O, s:O}", "crv", json_object_get(jwk, "crv"), "kty",
                    json_object_get(jwk, "kty"), "x", json_object_get(jwk, "x"), "y",
                    json_object_get(jwk, "y"));
    KBR_ENSURE(req != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_json_canonical(req, &canon));
    kbr_sha256(canon, strlen(canon), md);
    KBR_GUARD(kbr_b64url_encode(md, sizeof(md), kid));
out:
    free(canon);
    json_decref(req);
    return err;
}

kbr_err kbr_jwk_from_pkey(EVP_PKEY *pub, json_t **jwk)
{
    kbr_err err = KBR_OK;
    char *x = NULL, *y = NULL, *kid = NULL;
    json_t *obj = NULL;

    *jwk = NULL;
    KBR_ENSURE(kbr_pkey_is_p256(pub), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(coord_b64url(pub, OSSL_PKEY_PARAM_EC_PUB_X, &x));
    KBR_GUARD(coord_b64url(pub, OSSL_PKEY_PARAM_EC_PUB_Y, &y));
    obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", x, "y", y,
                    "alg", "ES256", "use", "sig");
    KBR_ENSURE(obj != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(thumbprint(obj, &kid));
    KBR_ENSURE(json_object_set_new(obj, "kid", json_string(kid)) == 0, KBR_ERR_NOMEM);
    *jwk = obj;
    obj = NULL;
out:
    json_decref(obj);
    free(x);
    free(y);
    free(kid);
    return err;
}
