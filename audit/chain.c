/*
 * chain.c - entry hashes and the checks that the chain is whole: offline
 * over exported entries, and at start over the stored tail.
 */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "audit_chain.h"

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
    KBR_ENSURE(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1, KBR_ERR_CRYPTO);
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

/* ---- the stored tail, checked from the text that was hashed ---- */

typedef struct {
    int64_t next;  /* the seq the next row must have */
    char prev[65]; /* the hash the next row must chain to */
    bool named;    /* msg already names the bad entry */
    kbr_msg *msg;
} stored_walk;

static kbr_err stored_fail(stored_walk *w, int64_t seq, const char *what)
{
    w->named = true;
    return kbr_fail(w->msg, KBR_ERR_STORE, "audit entry %lld: %s", (long long)seq, what);
}

static kbr_err entry_chains(const char *entry_json, int64_t seq, const char *prev)
{
    kbr_err err = KBR_OK;
    json_t *e = json_loads(entry_json, 0, NULL);
    const json_t *s = json_object_get(e, "seq"), *p = json_object_get(e, "prev_hash");

    KBR_ENSURE(json_is_integer(s) && json_integer_value(s) == seq, KBR_ERR_STORE);
    KBR_ENSURE(json_is_string(p) && strcmp(json_string_value(p), prev) == 0, KBR_ERR_STORE);
out:
    json_decref(e);
    return err;
}

static kbr_err check_stored_row(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    kbr_err err = KBR_OK;
    stored_walk *w = arg;
    char computed[65];

    KBR_ENSURE(seq == w->next, stored_fail(w, w->next, "missing"));
    KBR_GUARD(kbr_audit_leaf_hash(entry_json, strlen(entry_json), computed));
    KBR_ENSURE(strlen(hash) == 64 && strcmp(computed, hash) == 0,
               stored_fail(w, seq, "hash does not match its content"));
    KBR_ENSURE(entry_chains(entry_json, seq, w->prev) == KBR_OK,
               stored_fail(w, seq, "seq or prev_hash does not chain to the entry before it"));
    memcpy(w->prev, hash, sizeof(w->prev));
    w->next++;
out:
    return err;
}

/* Takes the hash of the row just before the checked range, which anchors the chain. */
static kbr_err anchor_row(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    kbr_err err = KBR_OK;
    stored_walk *w = arg;

    (void)entry_json;
    KBR_ENSURE(seq == w->next - 1, stored_fail(w, w->next - 1, "missing"));
    KBR_ENSURE(strlen(hash) == 64, stored_fail(w, seq, "stored hash is malformed"));
    memcpy(w->prev, hash, sizeof(w->prev));
out:
    return err;
}

kbr_err kbr_audit_check_stored(kbr_store *st, int64_t last_seq, int64_t count, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    stored_walk w = {.msg = msg};
    int64_t after;

    if (count <= 0 || last_seq <= 0)
        goto out;
    after = count >= last_seq ? 0 : last_seq - count;
    w.next = after + 1;
    memcpy(w.prev, zero_hash, sizeof(w.prev));
    if (after > 0) {
        w.prev[0] = '\0';
        KBR_GUARD(kbr_store_audit_walk(st, after - 1, 1, anchor_row, &w));
        KBR_ENSURE(w.prev[0] != '\0', stored_fail(&w, after, "missing"));
    }
    KBR_GUARD(kbr_store_audit_walk(st, after, last_seq - after, check_stored_row, &w));
    KBR_ENSURE(w.next == last_seq + 1, stored_fail(&w, w.next, "missing"));
out:
    if (err != KBR_OK && !w.named)
        kbr_fail(msg, err, "audit log: cannot read entries to check: %s", kbr_err_str(err));
    return err;
}
