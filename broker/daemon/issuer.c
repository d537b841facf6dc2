/*
 * issuer.c - the token issuer's keys: the issuer.rotate effect that records
 * one, the ledger's keys loaded into the policy registry, and the check that
 * the HSM still holds every key the broker trusts.
 *
 * The ledger says which keys are issuer keys, under which kid and label; the
 * HSM is what a key is checked against.  A trusted key (the current one, or
 * one a live token was signed with) must be in the HSM under its label with
 * the public key the ledger recorded, or the broker does not start: a store
 * rewritten to name another key, even a key of the broker's own, does not
 * make tokens signed by it verify.  A key past its last token's expiry is
 * only the ledger's record, and may be gone from the HSM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "kbd.h"

/* The message the new key's proof signature covers: it names the key. */
#define PROOF_PREFIX "keybroker issuer key "

kbr_err kbd_issuer_effect(kbr_hsm_session *s, const char *label, const char *replaces, time_t at,
                          kbd_issuer *out, EVP_PKEY **pub, kbr_effects **fx, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *jwk = NULL;
    char *pem = NULL, when[KBR_TIME_LEN];
    const char *kid;

    *pub = NULL;
    *fx = NULL;
    err = kbr_hsm_public_key(s, label, pub);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err,
                                       "the public key of issuer key %s cannot be read "
                                       "from the HSM: %s",
                                       label, kbr_err_str(err)));
    err = kbr_jwk_from_pkey(*pub, &jwk);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, KBR_ERR_HSM_KEY, "HSM key %s is not an ECDSA P-256 key", label));
    kid = json_string_value(json_object_get(jwk, "kid"));
    KBR_ENSURE(kid != NULL && strlen(kid) < sizeof(out->kid), KBR_ERR_INTERNAL);
    KBR_ENSURE(strlen(label) < sizeof(out->label), KBR_ERR_INTERNAL);
    err = kbr_hsm_public_key_pem(s, label, &pem);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err,
                                       "the public key of issuer key %s cannot be read "
                                       "from the HSM: %s",
                                       label, kbr_err_str(err)));
    kbr_time_fmt(at, when);
    KBR_GUARD(kbr_effects_new(fx));
    KBR_GUARD(kbr_effects_add(*fx, &(kbr_effect){.type = KBR_EFFECT_ISSUER_ROTATE,
                                                 .u.issuer_rotate = {.kid = kid,
                                                                     .hsm_label = label,
                                                                     .public_key_pem = pem,
                                                                     .at = when,
                                                                     .replaces = replaces}}));
    snprintf(out->kid, sizeof(out->kid), "%s", kid);
    snprintf(out->label, sizeof(out->label), "%s", label);
out:
    if (err != KBR_OK) {
        EVP_PKEY_free(*pub);
        *pub = NULL;
        kbr_effects_free(*fx);
        *fx = NULL;
    }
    free(pem);
    json_decref(jwk);
    return err;
}

kbr_err kbd_issuer_prove(kbr_hsm_session *s, const kbd_issuer *key, EVP_PKEY *pub, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char text[sizeof(PROOF_PREFIX) + sizeof(key->kid)];
    unsigned char md[32], *sig = NULL, *der = NULL;
    size_t siglen = 0, derlen = 0;
    EVP_MD_CTX *ctx = NULL;

    snprintf(text, sizeof(text), PROOF_PREFIX "%s", key->kid);
    kbr_sha256(text, strlen(text), md);
    err = kbr_hsm_sign(s, key->label, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, md, sizeof(md), &sig,
                       &siglen);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "issuer key %s could not sign: %s", key->label,
                                       kbr_err_str(err)));
    KBR_GUARD(kbr_ecdsa_raw_to_der(sig, siglen, &der, &derlen));
    ctx = EVP_MD_CTX_new();
    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1 &&
                   EVP_DigestVerify(ctx, der, derlen, (const unsigned char *)text, strlen(text)) ==
                       1,
               kbr_fail(msg, KBR_ERR_HSM_KEY,
                        "issuer key %s signs, but not with the public key the HSM reports for it",
                        key->label));
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    free(der);
    free(sig);
    return err;
}

static kbr_err pem_key(const char *pem, EVP_PKEY **out)
{
    BIO *bio = pem != NULL ? BIO_new_mem_buf(pem, -1) : NULL;

    *out = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    ERR_clear_error();
    BIO_free(bio);
    return *out != NULL ? KBR_OK : KBR_ERR_BAD_REQUEST;
}

kbr_err kbd_issuers_to_policy(kbr_policy *p, const json_t *rows, kbd_issuer *current, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *pub = NULL;
    const json_t *row;
    size_t i;

    memset(current, 0, sizeof(*current));
    json_array_foreach(rows, i, row)
    {
        const char *kid = json_string_value(json_object_get(row, "kid"));
        const char *label = json_string_value(json_object_get(row, "hsm_label"));
        bool is_current = json_is_null(json_object_get(row, "replaced_at"));

        err = pem_key(json_string_value(json_object_get(row, "public_key_pem")), &pub);
        if (err == KBR_OK)
            err = kbr_policy_add_issuer(p, kid, pub, is_current);
        KBR_ENSURE(err == KBR_OK,
                   kbr_fail(msg, KBR_ERR_STORE,
                            "the ledger's issuer key %s (%s) is not a P-256 key whose RFC 7638 "
                            "thumbprint is its kid",
                            kid != NULL ? kid : "without a kid", label != NULL ? label : "?"));
        KBR_ENSURE(
            label != NULL && strlen(label) < sizeof(current->label),
            kbr_fail(msg, KBR_ERR_STORE, "the ledger's issuer key %s has no HSM label", kid));
        if (is_current) {
            snprintf(current->kid, sizeof(current->kid), "%s", kid);
            snprintf(current->label, sizeof(current->label), "%s", label);
        }
        EVP_PKEY_free(pub);
        pub = NULL;
    }
    KBR_ENSURE(json_array_size(rows) == 0 || current->kid[0] != '\0',
               kbr_fail(msg, KBR_ERR_STORE, "the ledger has issuer keys but none is current"));
out:
    EVP_PKEY_free(pub);
    return err;
}

kbr_err kbd_issuers_check_hsm(kbr_hsm_session *s, const kbr_policy *p, const json_t *rows,
                              time_t now, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *ledger = NULL, *hsm = NULL;
    const json_t *row;
    size_t i;

    json_array_foreach(rows, i, row)
    {
        const char *kid = json_string_value(json_object_get(row, "kid"));
        const char *label = json_string_value(json_object_get(row, "hsm_label"));
        kbr_issuer_state st;

        if (!kbr_policy_issuer_state(p, kid, now, &st) || !st.trusted)
            continue;
        KBR_GUARD(pem_key(json_string_value(json_object_get(row, "public_key_pem")), &ledger));
        err = kbr_hsm_public_key(s, label, &hsm);
        KBR_ENSURE(err != KBR_ERR_NOT_FOUND,
                   kbr_fail(msg, KBR_ERR_HSM_KEY,
                            "issuer key %s (kid %s) is not in the HSM, and tokens it signed are "
                            "live; restore it to the token",
                            label, kid));
        KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "HSM lookup of issuer key %s failed: %s",
                                           label, kbr_err_str(err)));
        KBR_ENSURE(EVP_PKEY_eq(ledger, hsm) == 1,
                   kbr_fail(msg, KBR_ERR_HSM_KEY,
                            "the HSM key labelled %s is not the issuer key the ledger recorded "
                            "under kid %s",
                            label, kid));
        EVP_PKEY_free(ledger);
        EVP_PKEY_free(hsm);
        ledger = hsm = NULL;
    }
out:
    ERR_clear_error();
    EVP_PKEY_free(ledger);
    EVP_PKEY_free(hsm);
    return err;
}
