/*
 * tree.c - the audit tree as the store keeps it: the perfect subtrees above
 * the leaves, written in the transaction of the entry that completes them,
 * so a root or an inclusion proof over millions of entries is O(log n)
 * lookups (the recursion itself is audit/merkle.c's).
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kbr_audit.h"

#define H KBR_MERKLE_HASH_LEN
/* A log of more than 2^62 entries is not a log this broker writes. */
#define MAX_LEVEL 62

static kbr_err store_node(void *arg, unsigned level, uint64_t idx, unsigned char out[H])
{
    kbr_store *st = arg;
    kbr_err err = st->ops->merkle_node_get(st, level, (int64_t)idx, out);

    /* the caller checked the size against the log: a missing node is damage */
    return err == KBR_ERR_NOT_FOUND ? KBR_ERR_STORE : err;
}

kbr_err kbr_store_merkle_append(kbr_store *st, int64_t seq, const char *hash_hex)
{
    kbr_err err = KBR_OK;
    unsigned char *leaf = NULL, left[H], cur[H];
    size_t leaf_len = 0;
    uint64_t count = (uint64_t)seq;

    KBR_GUARD(kbr_hex_decode(hash_hex, &leaf, &leaf_len));
    KBR_ENSURE(leaf_len == H, KBR_ERR_INTERNAL);
    memcpy(cur, leaf, H);
    /* leaf seq-1 completes the subtree of 2^level leaves ending here, for each such level */
    for (unsigned level = 1; level <= MAX_LEVEL && count % ((uint64_t)1 << level) == 0; level++) {
        uint64_t idx = (count >> level) - 1;
        KBR_GUARD(store_node(st, level - 1, 2 * idx, left));
        KBR_GUARD(kbr_merkle_node(left, cur, cur));
        KBR_GUARD(st->ops->merkle_node_put(st, level, (int64_t)idx, cur));
    }
out:
    free(leaf);
    return err;
}

static kbr_err check_size(kbr_store *st, int64_t size)
{
    kbr_err err = KBR_OK;
    int64_t last = 0;
    char hash[65];

    KBR_ENSURE(size >= 0, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(kbr_store_audit_tail(st, &last, hash));
    KBR_ENSURE(size <= last, KBR_ERR_BAD_REQUEST);
out:
    return err;
}

kbr_err kbr_store_merkle_root(kbr_store *st, int64_t size, unsigned char root[H])
{
    kbr_err err = KBR_OK;

    KBR_GUARD(check_size(st, size));
    KBR_GUARD(kbr_merkle_root_from(store_node, st, (uint64_t)size, root));
out:
    return err;
}

kbr_err kbr_store_merkle_proof(kbr_store *st, int64_t seq, int64_t size, unsigned char **path,
                               size_t *path_len)
{
    kbr_err err = KBR_OK;

    *path = NULL;
    *path_len = 0;
    KBR_ENSURE(seq >= 1 && seq <= size, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(check_size(st, size));
    KBR_GUARD(
        kbr_merkle_proof_from(store_node, st, (uint64_t)seq - 1, (uint64_t)size, path, path_len));
out:
    return err;
}

kbr_err kbr_store_merkle_consistency(kbr_store *st, int64_t first, int64_t second,
                                     unsigned char **path, size_t *path_len)
{
    kbr_err err = KBR_OK;

    *path = NULL;
    *path_len = 0;
    KBR_ENSURE(first >= 1 && first <= second, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(check_size(st, second));
    KBR_GUARD(kbr_merkle_consistency_from(store_node, st, (uint64_t)first, (uint64_t)second, path,
                                          path_len));
out:
    return err;
}

kbr_err kbr_store_checkpoint_latest(kbr_store *st, json_t **out)
{
    return st->ops->checkpoint_latest(st, out);
}

kbr_err kbr_store_checkpoint_find(kbr_store *st, const char *signature_b64, bool *found)
{
    *found = false;
    if (signature_b64 == NULL)
        return KBR_ERR_INTERNAL;
    return st->ops->checkpoint_find(st, signature_b64, found);
}

kbr_err kbr_store_checkpoint_rotations(kbr_store *st, int64_t seq, json_t **out)
{
    *out = NULL;
    return st->ops->checkpoint_rotations(st, seq, out);
}
