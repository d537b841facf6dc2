/* test_merkle.c - the RFC 6962 audit tree: reference vectors, store-kept nodes, checkpoints. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "kbr_audit.h"
#include "kbr_store.h"
#include "tmpdir.h"

#define H KBR_MERKLE_HASH_LEN

/* certificate-transparency's reference tree (RFC 6962 test data): leaf inputs, roots of the
 * first 1..8 leaves and audit paths. */
static const char *const vector_leaves[] = {
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
};
static const char *const vector_roots[] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};
static const struct {
    uint64_t m, n;
    size_t len;
    const char *path[3];
} vector_paths[] = {
    {0, 1, 0, {NULL}},
    {0,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {5,
     8,
     3,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2, 3, 1, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {1,
     5,
     3,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};

/* transparency-dev/merkle's reference consistency proofs over the same leaves. */
static const struct {
    uint64_t m, n;
    size_t len;
    const char *path[3];
} vector_consistency[] = {
    {1, 1, 0, {NULL}},
    {1,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {2,
     5,
     2,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     8,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

static void leaf_hash(const char *data_hex, unsigned char out[H])
{
    unsigned char *data = NULL, in[64];
    size_t len = 0;

    if (data_hex[0] != '\0')
        assert_int_equal(kbr_hex_decode(data_hex, &data, &len), KBR_OK);
    assert_true(len < sizeof(in));
    in[0] = 0x00;
    if (len > 0)
        memcpy(in + 1, data, len);
    assert_int_equal(EVP_Digest(in, len + 1, out, NULL, EVP_sha256(), NULL), 1);
    free(data);
}

static unsigned char *vector_tree(void)
{
    unsigned char *leaves = malloc(8 * H);

    assert_non_null(leaves);
    for (size_t i = 0; i < 8; i++)
        leaf_hash(vector_leaves[i], leaves + i * H);
    return leaves;
}

static void assert_hash_hex(const unsigned char h[H], const char *want)
{
    char hex[2 * H + 1];

    kbr_hex_encode_buf(h, H, hex);
    assert_string_equal(hex, want);
}

static void test_vector_roots(void **state)
{
    unsigned char *leaves = vector_tree(), root[H];

    (void)state;
    for (uint64_t n = 1; n <= 8; n++) {
        assert_int_equal(kbr_merkle_root(leaves, n, root), KBR_OK);
        assert_hash_hex(root, vector_roots[n - 1]);
    }
    assert_int_equal(kbr_merkle_root(leaves, 0, root), KBR_OK);
    assert_hash_hex(root, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(leaves);
}

static void test_vector_paths(void **state)
{
    unsigned char *leaves = vector_tree(), *path = NULL, root[H];
    size_t len = 0;

    (void)state;
    for (size_t v = 0; v < sizeof(vector_paths) / sizeof(vector_paths[0]); v++) {
        uint64_t m = vector_paths[v].m, n = vector_paths[v].n;
        assert_int_equal(kbr_merkle_proof(leaves, n, m, &path, &len), KBR_OK);
        assert_int_equal(len, vector_paths[v].len);
        for (size_t i = 0; i < len; i++)
            assert_hash_hex(path + i * H, vector_paths[v].path[i]);
        assert_int_equal(kbr_merkle_root(leaves, n, root), KBR_OK);
        assert_int_equal(kbr_merkle_verify(leaves + m * H, m, n, path, len, root), KBR_OK);
        free(path);
        path = NULL;
    }
    assert_int_equal(kbr_merkle_proof(leaves, 3, 3, &path, &len), KBR_ERR_BAD_REQUEST);
    assert_null(path);
    free(leaves);
}

/* Every leaf of every tree of 1..8 leaves, and what must not verify. */
static void test_verify_rejects(void **state)
{
    unsigned char *leaves = vector_tree(), *path = NULL, root[H];
    size_t len = 0;

    (void)state;
    for (uint64_t n = 1; n <= 8; n++) {
        assert_int_equal(kbr_merkle_root(leaves, n, root), KBR_OK);
        for (uint64_t m = 0; m < n; m++) {
            assert_int_equal(kbr_merkle_proof(leaves, n, m, &path, &len), KBR_OK);
            assert_int_equal(kbr_merkle_verify(leaves + m * H, m, n, path, len, root), KBR_OK);
            /* another leaf, another index, a truncated path, a flipped bit */
            assert_int_equal(kbr_merkle_verify(leaves + ((m + 1) % 8) * H, m, n, path, len, root),
                             KBR_ERR_BAD_REQUEST);
            if (n > 1) {
                assert_int_equal(kbr_merkle_verify(leaves + m * H, (m + 1) % n, n, path, len, root),
                                 KBR_ERR_BAD_REQUEST);
                assert_int_equal(kbr_merkle_verify(leaves + m * H, m, n, path, len - 1, root),
                                 KBR_ERR_BAD_REQUEST);
                path[0] ^= 0x01;
                assert_int_equal(kbr_merkle_verify(leaves + m * H, m, n, path, len, root),
                                 KBR_ERR_BAD_REQUEST);
            }
            assert_int_equal(kbr_merkle_verify(leaves + m * H, n, n, path, len, root),
                             KBR_ERR_BAD_REQUEST);
            free(path);
            path = NULL;
        }
    }
    free(leaves);
}

/* ---- consistency proofs ---- */

static void test_vector_consistency(void **state)
{
    unsigned char *leaves = vector_tree(), *path = NULL, first[H], second[H];
    size_t len = 0;

    (void)state;
    for (size_t v = 0; v < sizeof(vector_consistency) / sizeof(vector_consistency[0]); v++) {
        uint64_t m = vector_consistency[v].m, n = vector_consistency[v].n;
        assert_int_equal(kbr_merkle_consistency(leaves, m, n, &path, &len), KBR_OK);
        assert_int_equal(len, vector_consistency[v].len);
        for (size_t i = 0; i < len; i++)
            assert_hash_hex(path + i * H, vector_consistency[v].path[i]);
        assert_int_equal(kbr_merkle_root(leaves, m, first), KBR_OK);
        assert_int_equal(kbr_merkle_root(leaves, n, second), KBR_OK);
        assert_int_equal(kbr_merkle_consistency_verify(m, n, first, second, path, len), KBR_OK);
        free(path);
        path = NULL;
    }
    assert_int_equal(kbr_merkle_consistency(leaves, 0, 3, &path, &len), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_merkle_consistency(leaves, 4, 3, &path, &len), KBR_ERR_BAD_REQUEST);
    assert_null(path);
    free(leaves);
}

/*
 * An independent reference: MTH and SUBPROOF exactly as RFC 9162 writes them, recursing
 * on arrays with nothing shared with merkle.c but the node hash.
 */
static void ref_mth(const unsigned char *d, uint64_t n, unsigned char out[H])
{
    unsigned char l[H], r[H];
    uint64_t k = 1;

    if (n == 1) {
        memcpy(out, d, H);
        return;
    }
    while (k * 2 < n)
        k *= 2;
    ref_mth(d, k, l);
    ref_mth(d + k * H, n - k, r);
    assert_int_equal(kbr_merkle_node(l, r, out), KBR_OK);
}

static void ref_subproof(const unsigned char *d, uint64_t m, uint64_t n, bool b, unsigned char *out,
                         size_t *len)
{
    uint64_t k = 1;

    if (m == n) {
        if (!b)
            ref_mth(d, n, out + (*len)++ * H);
        return;
    }
    while (k * 2 < n)
        k *= 2;
    if (m <= k) {
        ref_subproof(d, m, k, b, out, len);
        ref_mth(d + k * H, n - k, out + (*len)++ * H);
    } else {
        ref_subproof(d + k * H, m - k, n - k, false, out, len);
        ref_mth(d, k, out + (*len)++ * H);
    }
}

#define BRUTE_N 70

/* Distinct pseudo-random leaves; seed picks the set. */
static unsigned char *random_leaves(uint64_t n, unsigned seed)
{
    unsigned char *leaves = malloc(n * H);

    assert_non_null(leaves);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char in[48];
        snprintf((char *)in, sizeof(in), "%u/%llu", seed, (unsigned long long)i);
        assert_int_equal(
            EVP_Digest(in, strlen((char *)in), leaves + i * H, NULL, EVP_sha256(), NULL), 1);
    }
    return leaves;
}

/*
 * Every pair of sizes 1 <= m <= n <= BRUTE_N: the proof is the reference's, it verifies, and
 * it stops verifying with any hash of it flipped, a hash dropped, or the roots of another log.
 */
static void test_consistency_brute_force(void **state)
{
    unsigned char *leaves = random_leaves(BRUTE_N, 1), *other = random_leaves(BRUTE_N, 2);
    unsigned char *path = NULL, ref[(62 + 2) * H], first[H], second[H], wrong[H];
    size_t len = 0, ref_len;
    unsigned long checked = 0;

    (void)state;
    for (uint64_t n = 1; n <= BRUTE_N; n++) {
        ref_mth(leaves, n, second);
        assert_int_equal(kbr_merkle_root(leaves, n, wrong), KBR_OK);
        assert_memory_equal(second, wrong, H);
        for (uint64_t m = 1; m <= n; m++) {
            ref_mth(leaves, m, first);
            ref_len = 0;
            if (m < n)
                ref_subproof(leaves, m, n, true, ref, &ref_len);
            assert_int_equal(kbr_merkle_consistency(leaves, m, n, &path, &len), KBR_OK);
            assert_int_equal(len, ref_len);
            if (len > 0)
                assert_memory_equal(path, ref, len * H);
            assert_int_equal(kbr_merkle_consistency_verify(m, n, first, second, path, len), KBR_OK);
            for (size_t i = 0; i < len * H; i += 7) {
                path[i] ^= 0x20;
                assert_int_equal(kbr_merkle_consistency_verify(m, n, first, second, path, len),
                                 KBR_ERR_BAD_REQUEST);
                path[i] ^= 0x20;
            }
            if (len > 0)
                assert_int_equal(kbr_merkle_consistency_verify(m, n, first, second, path, len - 1),
                                 KBR_ERR_BAD_REQUEST);
            /* the sizes are not in the hashes (they come signed with each head): only
             * a size that changes the shape of the path must fail */
            if (m < n && m > 1)
                assert_int_equal(kbr_merkle_consistency_verify(m, m, first, second, path, len),
                                 KBR_ERR_BAD_REQUEST);
            /* a first tree that is not the prefix: another log's, or this log's other size */
            ref_mth(other, m, wrong);
            assert_int_equal(kbr_merkle_consistency_verify(m, n, wrong, second, path, len),
                             KBR_ERR_BAD_REQUEST);
            ref_mth(other, n, wrong);
            assert_int_equal(kbr_merkle_consistency_verify(m, n, first, wrong, path, len),
                             KBR_ERR_BAD_REQUEST);
            free(path);
            path = NULL;
            checked++;
        }
    }
    assert_int_equal(checked, BRUTE_N * (BRUTE_N + 1) / 2);
    free(leaves);
    free(other);
}

/* The proof of a log whose first m leaves were replaced does not hold for the genuine roots. */
static void test_consistency_forked_log(void **state)
{
    unsigned char *leaves = random_leaves(BRUTE_N, 3), *path = NULL, first[H], second[H];
    size_t len = 0;

    (void)state;
    for (uint64_t n = 2; n <= BRUTE_N; n++) {
        for (uint64_t m = 1; m < n; m++) {
            unsigned char *forked = malloc(n * H);
            assert_non_null(forked);
            memcpy(forked, leaves, n * H);
            assert_int_equal(kbr_merkle_root(leaves, m, first), KBR_OK);
            /* one leaf inside the first tree differs: the second tree is another history */
            forked[(m - 1) * H] ^= 0x01;
            assert_int_equal(kbr_merkle_root(forked, n, second), KBR_OK);
            assert_int_equal(kbr_merkle_consistency(forked, m, n, &path, &len), KBR_OK);
            assert_int_equal(kbr_merkle_consistency_verify(m, n, first, second, path, len),
                             KBR_ERR_BAD_REQUEST);
            free(path);
            path = NULL;
            free(forked);
        }
    }
    free(leaves);
}

/* ---- the store's nodes ---- */

typedef kbt_store_dir fixture;

static int setup(void **state)
{
    return kbt_store_dir_setup(state, "kbr-merkle", "audit.db");
}

static int teardown(void **state)
{
    return kbt_store_dir_teardown(state);
}

/* n records through the writer; their hashes (in seq order) into leaves. */
static void append_records(const fixture *f, int n, unsigned char *leaves)
{
    kbr_audit *a = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_audit_start(f->url, 0, &a, &msg), KBR_OK);
    for (int i = 0; i < n; i++) {
        kbr_audit_rec *rec = NULL;
        unsigned char *h = NULL;
        size_t len = 0;
        assert_int_equal(kbr_audit_rec_new("ci", NULL, "sign", "fw", &rec), KBR_OK);
        json_object_set_new(rec->detail, "i", json_integer(i));
        assert_int_equal(kbr_audit_append_sync(a, rec), KBR_OK);
        assert_int_equal(rec->seq, i + 1);
        assert_int_equal(kbr_hex_decode(rec->hash, &h, &len), KBR_OK);
        assert_int_equal(len, H);
        memcpy(leaves + (size_t)i * H, h, H);
        free(h);
        kbr_audit_rec_free(rec);
    }
    kbr_audit_stop(a);
}

#define STORE_N 100

static void test_store_matches_recomputation(void **state)
{
    fixture *f = *state;
    unsigned char *leaves = malloc(STORE_N * H), root[H], want[H], *path = NULL, *want_path = NULL;
    size_t len = 0, want_len = 0;
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    assert_non_null(leaves);
    append_records(f, STORE_N, leaves);
    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_OK);
    for (int64_t size = 0; size <= STORE_N; size++) {
        assert_int_equal(kbr_store_merkle_root(st, size, root), KBR_OK);
        assert_int_equal(kbr_merkle_root(leaves, (uint64_t)size, want), KBR_OK);
        assert_memory_equal(root, want, H);
        for (int64_t seq = 1; seq <= size; seq++) {
            assert_int_equal(kbr_store_merkle_proof(st, seq, size, &path, &len), KBR_OK);
            assert_int_equal(
                kbr_merkle_proof(leaves, (uint64_t)size, (uint64_t)seq - 1, &want_path, &want_len),
                KBR_OK);
            assert_int_equal(len, want_len);
            assert_memory_equal(path, want_path, len * H);
            assert_int_equal(kbr_merkle_verify(leaves + (seq - 1) * H, (uint64_t)seq - 1,
                                               (uint64_t)size, path, len, root),
                             KBR_OK);
            free(path);
            free(want_path);
            path = want_path = NULL;
        }
    }
    for (int64_t second = 1; second <= STORE_N; second++) {
        assert_int_equal(kbr_merkle_root(leaves, (uint64_t)second, want), KBR_OK);
        for (int64_t first = 1; first <= second; first++) {
            unsigned char first_root[H];
            assert_int_equal(kbr_store_merkle_consistency(st, first, second, &path, &len), KBR_OK);
            assert_int_equal(kbr_merkle_consistency(leaves, (uint64_t)first, (uint64_t)second,
                                                    &want_path, &want_len),
                             KBR_OK);
            assert_int_equal(len, want_len);
            if (len > 0)
                assert_memory_equal(path, want_path, len * H);
            assert_int_equal(kbr_merkle_root(leaves, (uint64_t)first, first_root), KBR_OK);
            assert_int_equal(kbr_merkle_consistency_verify((uint64_t)first, (uint64_t)second,
                                                           first_root, want, path, len),
                             KBR_OK);
            free(path);
            free(want_path);
            path = want_path = NULL;
        }
    }
    assert_int_equal(kbr_store_merkle_consistency(st, 0, 4, &path, &len), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_merkle_consistency(st, 5, 4, &path, &len), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_merkle_consistency(st, 1, STORE_N + 1, &path, &len),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_merkle_root(st, STORE_N + 1, root), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_merkle_proof(st, 5, 4, &path, &len), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_merkle_proof(st, 0, 4, &path, &len), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_merkle_proof(st, 1, STORE_N + 1, &path, &len), KBR_ERR_BAD_REQUEST);
    assert_null(path);
    kbr_store_close(st);
    free(leaves);
}

/* ---- checkpoints ---- */

static EVP_PKEY *p256_new(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");

    assert_non_null(k);
    return k;
}

/* What the HSM returns: raw r||s, base64. */
static char *sign_raw_b64(EVP_PKEY *key, const unsigned char digest[32])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    unsigned char der[80], raw[64] = {0};
    const unsigned char *p = der;
    size_t der_len = sizeof(der);
    ECDSA_SIG *sig;
    char *b64 = NULL;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
    assert_int_equal(EVP_PKEY_sign(ctx, der, &der_len, digest, 32), 1);
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    assert_non_null(sig);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32), 32);
    assert_int_equal(kbr_b64_encode(raw, sizeof(raw), &b64), KBR_OK);
    ECDSA_SIG_free(sig);
    EVP_PKEY_CTX_free(ctx);
    return b64;
}

static json_t *checkpoint_new(kbr_store *st, int64_t size, EVP_PKEY *key)
{
    unsigned char root[H], digest[32];
    char hex[2 * H + 1], *sig;
    kbr_msg msg = {{0}};
    json_t *cp;

    assert_int_equal(kbr_store_merkle_root(st, size, root), KBR_OK);
    kbr_hex_encode_buf(root, H, hex);
    cp = json_pack("{s:I,s:s,s:s}", "size", (json_int_t)size, "root_hash", hex, "time",
                   "2026-01-02T03:04:05Z");
    assert_non_null(cp);
    assert_int_equal(kbr_audit_checkpoint_digest(cp, digest, &msg), KBR_OK);
    sig = sign_raw_b64(key, digest);
    json_object_set_new(cp, "signature_b64", json_string(sig));
    free(sig);
    return cp;
}

static void assert_verify_fails(const json_t *entries, const json_t *cp, EVP_PKEY *key,
                                const char *want)
{
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_audit_verify_checkpoint(entries, cp, key, &msg), KBR_ERR_BAD_REQUEST);
    if (strstr(msg.text, want) == NULL)
        fail_msg("message \"%s\" does not name \"%s\"", msg.text, want);
}

static void test_checkpoint_verify(void **state)
{
    fixture *f = *state;
    unsigned char leaves[12 * H];
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};
    json_t *entries = NULL, *cp, *bad;
    EVP_PKEY *key = p256_new(), *other = p256_new();

    append_records(f, 12, leaves);
    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_OK);
    assert_int_equal(kbr_store_audit_page(st, 0, 100, &entries), KBR_OK);
    cp = checkpoint_new(st, 10, key);
    assert_int_equal(kbr_audit_verify_checkpoint(entries, cp, key, &msg), KBR_OK);

    assert_verify_fails(entries, cp, other, "bad signature");
    bad = json_deep_copy(cp);
    json_object_set_new(bad, "time", json_string("2026-01-02T03:04:06Z"));
    assert_verify_fails(entries, bad, key, "bad signature");
    json_decref(bad);
    /* a root the log does not have, however it is signed */
    bad = checkpoint_new(st, 9, key);
    json_object_set_new(bad, "size", json_integer(10));
    assert_verify_fails(entries, bad, key, "root mismatch");
    json_decref(bad);

    bad = json_deep_copy(entries);
    json_object_set_new(json_array_get(bad, 4), "op", json_string("key.retire"));
    assert_verify_fails(bad, cp, key, "entry 5: hash does not match");
    json_decref(bad);
    bad = json_deep_copy(entries);
    json_array_remove(bad, 6);
    assert_verify_fails(bad, cp, key, "entry 7: missing");
    json_decref(bad);
    bad = json_deep_copy(entries);
    while (json_array_size(bad) > 8)
        json_array_remove(bad, 8);
    assert_verify_fails(bad, cp, key, "missing entries");
    json_decref(bad);

    json_decref(cp);
    json_decref(entries);
    kbr_store_close(st);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

/* The checkpoint effect records only the store's own root, under a later entry. */
static void test_checkpoint_effect(void **state)
{
    fixture *f = *state;
    unsigned char leaves[5 * H];
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};
    json_t *cp = NULL, *latest = NULL, *eff;
    EVP_PKEY *key = p256_new();

    append_records(f, 5, leaves);
    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_OK);
    assert_int_equal(kbr_store_checkpoint_latest(st, &latest), KBR_ERR_NOT_FOUND);
    cp = checkpoint_new(st, 5, key);
    json_object_set_new(cp, "type", json_string("checkpoint"));
    eff = json_pack("[O]", cp);

    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbr_store_apply_effects(st, eff, 5), KBR_ERR_STORE_CONSTRAINT);
    json_object_set_new(cp, "root_hash", json_string(vector_roots[0]));
    json_decref(eff);
    eff = json_pack("[O]", cp);
    assert_int_equal(kbr_store_apply_effects(st, eff, 6), KBR_ERR_STORE_CONSTRAINT);
    json_decref(eff);
    json_decref(cp);
    cp = checkpoint_new(st, 5, key);
    json_object_set_new(cp, "type", json_string("checkpoint"));
    eff = json_pack("[O]", cp);
    assert_int_equal(kbr_store_apply_effects(st, eff, 6), KBR_OK);
    assert_int_equal(kbr_store_apply_effects(st, eff, 7), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_commit(st), KBR_OK);

    assert_int_equal(kbr_store_checkpoint_latest(st, &latest), KBR_OK);
    assert_int_equal(json_integer_value(json_object_get(latest, "size")), 5);
    assert_int_equal(json_integer_value(json_object_get(latest, "audit_seq")), 6);
    assert_string_equal(json_string_value(json_object_get(latest, "root_hash")),
                        json_string_value(json_object_get(cp, "root_hash")));
    assert_string_equal(json_string_value(json_object_get(latest, "signature_b64")),
                        json_string_value(json_object_get(cp, "signature_b64")));
    json_decref(latest);
    json_decref(eff);
    json_decref(cp);
    kbr_store_close(st);
    EVP_PKEY_free(key);
}

/* A checkpoint effect signed (as far as the store knows) by key, naming next when not NULL. */
static json_t *keyed_checkpoint(kbr_store *st, int64_t size, const char *sig, const char *key,
                                const char *next)
{
    unsigned char root[H];
    char hex[2 * H + 1];
    json_t *cp;

    assert_int_equal(kbr_store_merkle_root(st, size, root), KBR_OK);
    kbr_hex_encode_buf(root, H, hex);
    cp = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type", "checkpoint", "size",
                   (json_int_t)size, "root_hash", hex, "time", "2026-01-02T03:04:05Z",
                   "signature_b64", sig, "origin", "log.example", "note", "log.example\n...",
                   "key_id", "0a0b0c0d", "key_label", key, "public_key_pem", key);
    assert_non_null(cp);
    if (next != NULL) {
        json_object_set_new(cp, "next_key_pem", json_string(next));
        json_object_set_new(cp, "next_key_label", json_string(next));
        json_object_set_new(cp, "next_key_id", json_string("0A0B0C0E"));
    }
    return json_pack("[o]", cp);
}

static kbr_err apply_one_effect(kbr_store *st, json_t *eff, int64_t seq)
{
    kbr_err err;

    assert_int_equal(kbr_store_begin(st), KBR_OK);
    err = kbr_store_apply_effects(st, eff, seq);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    json_decref(eff);
    return err;
}

/*
 * The checkpoints form one chain of audit keys: each is signed by the key the latest one hands
 * on (its next key, or its own), heads never shrink, a size may be signed again (a rotation
 * signs the head the last checkpoint signed), a signature never twice.
 */
static void test_checkpoint_key_chain(void **state)
{
    fixture *f = *state;
    unsigned char leaves[8 * H];
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};
    json_t *latest = NULL, *fx = NULL;
    kbr_effects *parsed = NULL;

    append_records(f, 8, leaves);
    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_OK);
    assert_int_equal(apply_one_effect(st, keyed_checkpoint(st, 5, "s1", "A", NULL), 6), KBR_OK);
    assert_int_equal(apply_one_effect(st, keyed_checkpoint(st, 6, "s2", "B", NULL), 7),
                     KBR_ERR_STORE_CONSTRAINT);
    /* A hands on to B at the size it signed last */
    assert_int_equal(apply_one_effect(st, keyed_checkpoint(st, 5, "s2", "A", "B"), 7), KBR_OK);
    assert_int_equal(apply_one_effect(st, keyed_checkpoint(st, 6, "s3", "A", NULL), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_one_effect(st, keyed_checkpoint(st, 4, "s3", "B", NULL), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_one_effect(st, keyed_checkpoint(st, 6, "s2", "B", NULL), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_one_effect(st, keyed_checkpoint(st, 6, "s3", "B", NULL), 8), KBR_OK);
    assert_int_equal(kbr_store_checkpoint_latest(st, &latest), KBR_OK);
    assert_int_equal(json_integer_value(json_object_get(latest, "audit_seq")), 8);
    assert_string_equal(json_string_value(json_object_get(latest, "public_key_pem")), "B");
    assert_string_equal(json_string_value(json_object_get(latest, "note")), "log.example\n...");
    assert_true(json_is_null(json_object_get(latest, "next_key_pem")));
    json_decref(latest);
    /* the JSON form carries every field, hex lowercased */
    fx = keyed_checkpoint(st, 5, "s9", "A", "B");
    assert_int_equal(kbr_effects_from_json(fx, &parsed), KBR_OK);
    json_decref(fx);
    assert_int_equal(kbr_effects_to_json(parsed, &fx), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(fx, 0), "next_key_id")),
                        "0a0b0c0e");
    assert_string_equal(json_string_value(json_object_get(json_array_get(fx, 0), "next_key_label")),
                        "B");
    json_decref(fx);
    kbr_effects_free(parsed);
    kbr_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_roots),
        cmocka_unit_test(test_vector_paths),
        cmocka_unit_test(test_verify_rejects),
        cmocka_unit_test(test_vector_consistency),
        cmocka_unit_test(test_consistency_brute_force),
        cmocka_unit_test(test_consistency_forked_log),
        cmocka_unit_test_setup_teardown(test_store_matches_recomputation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_effect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_key_chain, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
