/*
 * checkpoint.c - signed tree heads: what the audit key signs, and the
 * offline check of an exported log against one.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kbr_audit.h"

#define H         KBR_MERKLE_HASH_LEN
#define P256_HALF 32

static kbr_err head_field(const json_t *cp, const char *field, json_t *head, kbr_msg *msg)
{
    const json_t *v = json_object_get(cp, field);
    bool ok = strcmp(field, "size") == 0 ? json_is_integer(v) && json_integer_value(v) >= 0
                                         : json_is_string(v);

    if (!ok)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint.%s: missing or mistyped", field);
    if (json_object_set(head, field, (json_t *)v) != 0)
        return KBR_ERR_NOMEM;
    return KBR_OK;
}

kbr_err kbr_audit_checkpoint_digest(const json_t *cp, unsigned char digest[32], kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *head = json_object();
    char *canonical = NULL;

    KBR_ENSURE(head != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_is_object(cp), kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint: not an object"));
    KBR_GUARD(head_field(cp, "root_hash", head, msg));
    KBR_GUARD(head_field(cp, "size", head, msg));
    KBR_GUARD(head_field(cp, "time", head, msg));
    KBR_GUARD(kbr_json_canonical(head, &canonical));
    KBR_ENSURE(EVP_Digest(canonical, strlen(canonical), digest, NULL, EVP_sha256(), NULL) == 1,
               KBR_ERR_CRYPTO);
out:
    free(canonical);
    json_decref(head);
    return err;
}

kbr_err kbr_audit_checkpoint_signature_holds(const json_t *cp, EVP_PKEY *pubkey, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *b64 = json_string_value(json_object_get(cp, "signature_b64"));
    unsigned char digest[32], *raw = NULL, *der = NULL;
    size_t raw_len = 0, der_len = 0;
    EVP_PKEY_CTX *ctx = NULL;

    KBR_ENSURE(EVP_PKEY_is_a(pubkey, "EC") && EVP_PKEY_get_bits(pubkey) == 256,
               kbr_fail(msg, KBR_ERR_CRYPTO, "public key: not an EC P-256 key"));
    KBR_GUARD(kbr_audit_checkpoint_digest(cp, digest, msg));
    KBR_ENSURE(
        b64 != NULL && kbr_b64_decode(b64, &raw, &raw_len) == KBR_OK && raw_len == 2 * P256_HALF &&
            kbr_ecdsa_raw_to_der(raw, raw_len, &der, &der_len) == KBR_OK,
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint.signature_b64: not a P-256 signature"));
    ctx = EVP_PKEY_CTX_new(pubkey, NULL);
    KBR_ENSURE(ctx != NULL && EVP_PKEY_verify_init(ctx) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_PKEY_verify(ctx, der, der_len, digest, sizeof(digest)) == 1,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "checkpoint: bad signature (not made by this audit key)"));
out:
    EVP_PKEY_CTX_free(ctx);
    free(der);
    free(raw);
    return err;
}

static kbr_err leaves_of(const json_t *entries, size_t n, unsigned char **out)
{
    kbr_err err = KBR_OK;
    unsigned char *leaves = NULL, *one = NULL;
    size_t len = 0;

    *out = NULL;
    leaves = malloc(n > 0 ? n * H : 1);
    KBR_ENSURE(leaves != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        /* kbr_audit_verify_entries checked each stated hash against its entry */
        KBR_GUARD(kbr_hex_decode(
            json_string_value(json_object_get(json_array_get(entries, i), "hash")), &one, &len));
        KBR_ENSURE(len == H, KBR_ERR_INTERNAL);
        memcpy(leaves + i * H, one, H);
        free(one);
        one = NULL;
    }
    *out = leaves;
    leaves = NULL;
out:
    free(one);
    free(leaves);
    return err;
}

static kbr_err root_holds(const json_t *entries, const json_t *cp, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_int_t size = json_integer_value(json_object_get(cp, "size"));
    const char *stated = json_string_value(json_object_get(cp, "root_hash"));
    unsigned char *leaves = NULL, root[H];
    char hex[2 * H + 1];

    KBR_ENSURE((size_t)size <= json_array_size(entries),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "missing entries: the checkpoint covers %lld, the log has %zu",
                        (long long)size, json_array_size(entries)));
    KBR_GUARD(leaves_of(entries, (size_t)size, &leaves));
    KBR_GUARD(kbr_merkle_root(leaves, (uint64_t)size, root));
    kbr_hex_encode_buf(root, sizeof(root), hex);
    KBR_ENSURE(strcmp(hex, stated) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "root mismatch: the first %lld entries do not give the checkpoint's "
                        "root_hash",
                        (long long)size));
out:
    free(leaves);
    return err;
}

kbr_err kbr_audit_verify_checkpoint(const json_t *entries, const json_t *cp, EVP_PKEY *pubkey,
                                    kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char digest[32];

    /* the fields first, so a malformed checkpoint is named before the log is blamed */
    KBR_GUARD(kbr_audit_checkpoint_digest(cp, digest, msg));
    KBR_GUARD(kbr_audit_verify_entries(entries, 1, NULL, msg));
    KBR_GUARD(root_holds(entries, cp, msg));
    KBR_GUARD(kbr_audit_checkpoint_signature_holds(cp, pubkey, msg));
out:
    return err;
}
