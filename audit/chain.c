/*
 * chain.c - entry hashes and the offline check that an exported chain is
 * whole.  Nothing here touches a store: the offline verifiers link this
 * alone (the stored tail is checked by stored.c).
 */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "kbr_audit.h"

static const char zero_hash[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

kbr_err kbr_audit_leaf_hash(const char *canonical, size_t len, char out[65])
{
    kbr_err err = KBR_OK;
    /* RFC 6962 leaf prefix: a leaf can never be confused with an interior node. */
    static const unsigned char leaf = 0x00;
    unsigned char md[32];
    EVP_MD_CTX *ctx = NULL;

    ctx = EVP_MD_CTX_new();
    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_DigestInit_ex(ctx, kbr_md_sha256(), NULL) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_DigestUpdate(ctx, &leaf, 1) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_DigestUpdate(ctx, canonical, len) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_DigestFinal_ex(ctx, md, NULL) == 1, KBR_ERR_CRYPTO);
    kbr_hex_encode_buf(md, sizeof(md), out);
out:
    EVP_MD_CTX_free(ctx);
    return err;
}

kbr_err kbr_audit_entry_hash(const json_t *entry, char hash[65])
{
    kbr_err err = KBR_OK;
    json_t *bare = NULL;
    char *canonical = NULL;

    KBR_ENSURE(json_is_object(entry), KBR_ERR_BAD_REQUEST);
    /* A shallow copy suffices: only the top-level "hash" is left out. */
    bare = json_copy((json_t *)entry);
    KBR_ENSURE(bare != NULL, KBR_ERR_NOMEM);
    (void)json_object_del(bare, "hash");
    KBR_GUARD(kbr_json_canonical(bare, &canonical));
    KBR_GUARD(kbr_audit_leaf_hash(canonical, strlen(canonical), hash));
out:
    free(canonical);
    json_decref(bare);
    return err;
}

static bool is_hash(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) == 64;
}

/* Checks one exported entry that should be number want and follow prev; *hash is its hash. */
static kbr_err check_entry(const json_t *e, long long want, const char *prev, const char **hash,
                           kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const json_t *seq = json_object_get(e, "seq");
    const json_t *stated = json_object_get(e, "hash");
    const json_t *prev_hash = json_object_get(e, "prev_hash");
    long long found = json_is_integer(seq) ? (long long)json_integer_value(seq) : -1;
    char computed[65];

    *hash = NULL;
    KBR_ENSURE(json_is_object(e),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "entry %lld: not an object", want));
    KBR_ENSURE(found == want,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "entry %lld: missing or out of order (found seq %lld)", want, found));
    KBR_ENSURE(is_hash(stated), kbr_fail(msg, KBR_ERR_BAD_REQUEST, "entry %lld: no hash", want));
    KBR_GUARD(kbr_audit_entry_hash(e, computed));
    KBR_ENSURE(
        strcmp(computed, json_string_value(stated)) == 0,
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "entry %lld: hash does not match its content", want));
    KBR_ENSURE(is_hash(prev_hash) && strcmp(json_string_value(prev_hash), prev) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "entry %lld: prev_hash does not chain to the entry before it", want));
    *hash = json_string_value(stated);
out:
    return err;
}

kbr_err kbr_audit_verify_entries(const json_t *entries, int64_t first_seq,
                                 const char *expected_prev, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *prev = expected_prev != NULL ? expected_prev : zero_hash;
    const json_t *e;
    size_t i;

    KBR_ENSURE(json_is_array(entries), kbr_fail(msg, KBR_ERR_BAD_REQUEST, "entries: not an array"));
    KBR_ENSURE(strlen(prev) == 64,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "expected_prev: not a 64-character hash"));
    /* seq + index must not wrap: an export claiming seq near INT64_MAX is refused whole */
    KBR_ENSURE(first_seq >= 0 && first_seq <= INT64_MAX - (int64_t)json_array_size(entries),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "entries: seq out of range"));
    json_array_foreach(entries, i, e)
    {
        KBR_GUARD(check_entry(e, (long long)first_seq + (long long)i, prev, &prev, msg));
    }
out:
    return err;
}
