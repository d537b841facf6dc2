/*
 * merkle.c - the RFC 6962 Merkle tree over the audit entries' leaf hashes:
 * roots, inclusion proofs and their verification, over an array of leaves
 * or over any source of perfect subtrees (the store keeps them as entries
 * are appended: store/tree.c).
 *
 * Every source answers one question, "the hash of the perfect subtree of
 * 2^level leaves at index idx", so the RFC's recursions (root, audit path,
 * consistency proof) are written once.
 * Nothing here touches a store: the offline verifiers link this alone.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kbr_audit.h"

#define H KBR_MERKLE_HASH_LEN
/* A log of more than 2^62 entries is not a log this broker writes. */
#define MAX_LEVEL 62

typedef kbr_merkle_node_fn node_fn;

kbr_err kbr_merkle_node(const unsigned char left[H], const unsigned char right[H],
                        unsigned char out[H])
{
    kbr_err err = KBR_OK;
    unsigned char in[1 + 2 * H];

    in[0] = 0x01;
    memcpy(in + 1, left, H);
    memcpy(in + 1 + H, right, H);
    KBR_ENSURE(EVP_Digest(in, sizeof(in), out, NULL, kbr_md_sha256(), NULL) == 1, KBR_ERR_CRYPTO);
out:
    return err;
}

/* The largest power of two below n (n >= 2): the RFC's split point. */
static uint64_t split_of(uint64_t n)
{
    uint64_t k = 1;

    while (k << 1 < n)
        k <<= 1;
    return k;
}

static unsigned level_of(uint64_t pow2)
{
    unsigned level = 0;

    while (pow2 > 1) {
        pow2 >>= 1;
        level++;
    }
    return level;
}

/*
 * MTH(D[start:start+n]) where start is a multiple of the split of every
 * range the recursion reaches: a perfect left part is one lookup, so only
 * the right edge recurses (O(log n) lookups).
 */
static kbr_err range_hash(node_fn get, void *arg, uint64_t start, uint64_t n, unsigned char out[H])
{
    kbr_err err = KBR_OK;
    unsigned char left[H], right[H];
    uint64_t k;

    if ((n & (n - 1)) == 0) {
        KBR_GUARD(get(arg, level_of(n), start / n, out));
        goto out;
    }
    k = split_of(n);
    KBR_GUARD(get(arg, level_of(k), start / k, left));
    KBR_GUARD(range_hash(get, arg, start + k, n - k, right));
    KBR_GUARD(kbr_merkle_node(left, right, out));
out:
    return err;
}

static kbr_err root_of(node_fn get, void *arg, uint64_t n, unsigned char root[H])
{
    kbr_err err = KBR_OK;

    if (n == 0) {
        /* RFC 6962 2.1: the hash of an empty list is the hash of an empty string */
        KBR_ENSURE(EVP_Digest("", 0, root, NULL, kbr_md_sha256(), NULL) == 1, KBR_ERR_CRYPTO);
        goto out;
    }
    KBR_GUARD(range_hash(get, arg, 0, n, root));
out:
    return err;
}

/* PATH(m, D[start:start+n]) of RFC 6962 2.1.1, written leaf-first into path. */
static kbr_err path_of(node_fn get, void *arg, uint64_t m, uint64_t start, uint64_t n,
                       unsigned char *path, size_t *len)
{
    kbr_err err = KBR_OK;
    uint64_t k;

    if (n <= 1)
        goto out;
    k = split_of(n);
    if (m < k) {
        KBR_GUARD(path_of(get, arg, m, start, k, path, len));
        KBR_GUARD(range_hash(get, arg, start + k, n - k, path + *len * H));
    } else {
        KBR_GUARD(path_of(get, arg, m - k, start + k, n - k, path, len));
        KBR_GUARD(get(arg, level_of(k), start / k, path + *len * H));
    }
    (*len)++;
out:
    return err;
}

static kbr_err proof_of(node_fn get, void *arg, uint64_t m, uint64_t n, unsigned char **path,
                        size_t *path_len)
{
    kbr_err err = KBR_OK;
    unsigned char *p = NULL;
    size_t len = 0;

    *path = NULL;
    *path_len = 0;
    KBR_ENSURE(m < n, KBR_ERR_BAD_REQUEST);
    /* at most one hash per level; one spare byte so an empty path still allocates */
    p = malloc((size_t)(MAX_LEVEL + 2) * H);
    KBR_ENSURE(p != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(path_of(get, arg, m, 0, n, p, &len));
    *path = p;
    *path_len = len;
    p = NULL;
out:
    free(p);
    return err;
}

/*
 * SUBPROOF(m, D[start:start+n], b) of RFC 9162 2.1.4.1, appended to path in the RFC's order.
 * Every range the recursion reaches is a node of the tree, so range_hash applies.
 */
static kbr_err subproof(node_fn get, void *arg, uint64_t m, uint64_t start, uint64_t n, bool b,
                        unsigned char *path, size_t *len)
{
    kbr_err err = KBR_OK;
    uint64_t k;

    if (m == n) {
        /* the first tree is this node: its hash is known to the verifier only at the top */
        if (!b) {
            KBR_GUARD(range_hash(get, arg, start, n, path + *len * H));
            (*len)++;
        }
        goto out;
    }
    k = split_of(n);
    if (m <= k) {
        KBR_GUARD(subproof(get, arg, m, start, k, b, path, len));
        KBR_GUARD(range_hash(get, arg, start + k, n - k, path + *len * H));
    } else {
        KBR_GUARD(subproof(get, arg, m - k, start + k, n - k, false, path, len));
        KBR_GUARD(get(arg, level_of(k), start / k, path + *len * H));
    }
    (*len)++;
out:
    return err;
}

static kbr_err consistency_of(node_fn get, void *arg, uint64_t m, uint64_t n, unsigned char **path,
                              size_t *path_len)
{
    kbr_err err = KBR_OK;
    unsigned char *p = NULL;
    size_t len = 0;

    *path = NULL;
    *path_len = 0;
    KBR_ENSURE(m >= 1 && m <= n, KBR_ERR_BAD_REQUEST);
    /* one hash per level of the recursion, and one more at its bottom */
    p = malloc((size_t)(MAX_LEVEL + 2) * H);
    KBR_ENSURE(p != NULL, KBR_ERR_NOMEM);
    if (m < n)
        KBR_GUARD(subproof(get, arg, m, 0, n, true, p, &len));
    *path = p;
    *path_len = len;
    p = NULL;
out:
    free(p);
    return err;
}

/* ---- over an array of leaf hashes ---- */

typedef struct {
    const unsigned char *leaves;
} array_src;

static kbr_err array_node(void *arg, unsigned level, uint64_t idx, unsigned char out[H])
{
    kbr_err err = KBR_OK;
    const array_src *a = arg;
    unsigned char left[H], right[H];

    if (level == 0) {
        memcpy(out, a->leaves + idx * H, H);
        goto out;
    }
    KBR_GUARD(array_node(arg, level - 1, 2 * idx, left));
    KBR_GUARD(array_node(arg, level - 1, 2 * idx + 1, right));
    KBR_GUARD(kbr_merkle_node(left, right, out));
out:
    return err;
}

kbr_err kbr_merkle_root(const unsigned char *leaves, uint64_t n, unsigned char root[H])
{
    array_src a = {leaves};

    return root_of(array_node, &a, n, root);
}

kbr_err kbr_merkle_proof(const unsigned char *leaves, uint64_t n, uint64_t m, unsigned char **path,
                         size_t *path_len)
{
    array_src a = {leaves};

    return proof_of(array_node, &a, m, n, path, path_len);
}

/* RFC 9162 2.1.3.2, step by step. */
kbr_err kbr_merkle_verify(const unsigned char leaf[H], uint64_t m, uint64_t n,
                          const unsigned char *path, size_t path_len, const unsigned char root[H])
{
    kbr_err err = KBR_OK;
    uint64_t fn = m, sn = n - 1;
    unsigned char r[H];

    KBR_ENSURE(m < n, KBR_ERR_BAD_REQUEST);
    memcpy(r, leaf, H);
    for (size_t i = 0; i < path_len; i++) {
        const unsigned char *p = path + i * H;
        KBR_ENSURE(sn != 0, KBR_ERR_BAD_REQUEST);
        if ((fn & 1) == 1 || fn == sn) {
            KBR_GUARD(kbr_merkle_node(p, r, r));
            while ((fn & 1) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            KBR_GUARD(kbr_merkle_node(r, p, r));
        }
        fn >>= 1;
        sn >>= 1;
    }
    KBR_ENSURE(sn == 0, KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(memcmp(r, root, H) == 0, KBR_ERR_BAD_REQUEST);
out:
    return err;
}

kbr_err kbr_merkle_consistency(const unsigned char *leaves, uint64_t m, uint64_t n,
                               unsigned char **path, size_t *path_len)
{
    array_src a = {leaves};

    return consistency_of(array_node, &a, m, n, path, path_len);
}

/*
 * RFC 9162 2.1.4.2, step by step.  The RFC leaves first == second to the caller: the proof
 * is then empty and the two roots are one.  An empty first tree is consistent with every
 * tree and needs no proof; it is not asked for here.
 */
kbr_err kbr_merkle_consistency_verify(uint64_t m, uint64_t n, const unsigned char first[H],
                                      const unsigned char second[H], const unsigned char *path,
                                      size_t path_len)
{
    kbr_err err = KBR_OK;
    uint64_t fn, sn;
    unsigned char fr[H], sr[H];
    size_t i = 0;

    KBR_ENSURE(m >= 1 && m <= n, KBR_ERR_BAD_REQUEST);
    if (m == n) {
        KBR_ENSURE(path_len == 0 && memcmp(first, second, H) == 0, KBR_ERR_BAD_REQUEST);
        goto out;
    }
    KBR_ENSURE(path_len >= 1 && path_len <= MAX_LEVEL + 2, KBR_ERR_BAD_REQUEST);
    /* step 2: a first tree of 2^k leaves is a node of the second; its hash leads the path */
    if ((m & (m - 1)) == 0) {
        memcpy(fr, first, H);
    } else {
        memcpy(fr, path, H);
        i = 1;
    }
    memcpy(sr, fr, H);
    fn = m - 1;
    sn = n - 1;
    while ((fn & 1) == 1) {
        fn >>= 1;
        sn >>= 1;
    }
    for (; i < path_len; i++) {
        const unsigned char *c = path + i * H;
        KBR_ENSURE(sn != 0, KBR_ERR_BAD_REQUEST);
        if ((fn & 1) == 1 || fn == sn) {
            KBR_GUARD(kbr_merkle_node(c, fr, fr));
            KBR_GUARD(kbr_merkle_node(c, sr, sr));
            while ((fn & 1) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            KBR_GUARD(kbr_merkle_node(sr, c, sr));
        }
        fn >>= 1;
        sn >>= 1;
    }
    KBR_ENSURE(sn == 0 && memcmp(fr, first, H) == 0 && memcmp(sr, second, H) == 0,
               KBR_ERR_BAD_REQUEST);
out:
    return err;
}

/* ---- over any source of perfect subtrees ---- */

kbr_err kbr_merkle_root_from(kbr_merkle_node_fn get, void *arg, uint64_t n, unsigned char root[H])
{
    return root_of(get, arg, n, root);
}

kbr_err kbr_merkle_proof_from(kbr_merkle_node_fn get, void *arg, uint64_t m, uint64_t n,
                              unsigned char **path, size_t *path_len)
{
    return proof_of(get, arg, m, n, path, path_len);
}

kbr_err kbr_merkle_consistency_from(kbr_merkle_node_fn get, void *arg, uint64_t m, uint64_t n,
                                    unsigned char **path, size_t *path_len)
{
    return consistency_of(get, arg, m, n, path, path_len);
}
