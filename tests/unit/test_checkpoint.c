/*
 * test_checkpoint.c - the offline check of an exported log (kbr_audit_verify_log) following
 * the chain of audit keys from a pinned first key, on logs made here with keys made here: a
 * good chain with a rotation verifies, and a link skipped, a rotation signed by another key, a
 * rotation whose next key never signed, a note that says something else, or a checkpoint file
 * that differs from the log's own are each refused with a message naming the problem.  The
 * store refuses such chains itself (test_merkle.c), so they are built here entry by entry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "kbr_audit.h"

#define H      KBR_MERKLE_HASH_LEN
#define ORIGIN "broker.example/audit"
#define MAXLOG 64

typedef struct {
    json_t *entries; /* as GET /v1/audit shows them */
    unsigned char leaves[MAXLOG * H];
} log_t;

static EVP_PKEY *ed25519_new(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

    assert_non_null(k);
    return k;
}

static char *pem_of(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *pem;
    long n;

    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)n);
    BIO_free(b);
    return pem;
}

static void sign(EVP_PKEY *k, const char *msg, unsigned char sig[64])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t len = 64;

    assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &len, (const unsigned char *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(ctx);
}

static void add_sig_line(json_t *cp, EVP_PKEY *k, const char *text)
{
    unsigned char sig[64];
    uint32_t id = 0;
    char *line = NULL, *note = NULL;
    const char *have = json_string_value(json_object_get(cp, "note"));

    sign(k, text, sig);
    assert_int_equal(kbr_note_key_id(ORIGIN, k, &id), KBR_OK);
    assert_int_equal(kbr_note_sig_line(ORIGIN, id, sig, 64, &line), KBR_OK);
    assert_true(asprintf(&note, "%s%s", have != NULL ? have : "", line) > 0);
    if (have == NULL) {
        free(note);
        assert_true(asprintf(&note, "%s\n%s", text, line) > 0);
    }
    json_object_set_new(cp, "note", json_string(note));
    free(note);
    free(line);
}

/*
 * The checkpoint the broker would make of the first size leaves, signed by key, naming next
 * (and cosigned by it) for a rotation; stated names the key it says signed (NULL: none).
 */
static json_t *checkpoint(const log_t *l, int64_t size, EVP_PKEY *key, EVP_PKEY *next,
                          EVP_PKEY *stated)
{
    unsigned char root[H], sig[64];
    char hex[2 * H + 1], *head = NULL, *b64 = NULL, *text = NULL, *pem;
    kbr_msg msg = {{0}};
    json_t *cp;
    uint32_t id = 0;

    assert_int_equal(kbr_merkle_root(l->leaves, (uint64_t)size, root), KBR_OK);
    kbr_hex_encode_buf(root, H, hex);
    cp = json_pack("{s:I,s:s,s:s,s:s}", "size", (json_int_t)size, "root_hash", hex, "time",
                   "2026-05-01T00:00:00Z", "origin", ORIGIN);
    if (next != NULL) {
        pem = pem_of(next);
        json_object_set_new(cp, "next_key_pem", json_string(pem));
        free(pem);
    }
    assert_int_equal(kbr_audit_head_message(cp, &head, &msg), KBR_OK);
    sign(key, head, sig);
    assert_int_equal(kbr_b64_encode(sig, 64, &b64), KBR_OK);
    json_object_set_new(cp, "signature_b64", json_string(b64));
    assert_int_equal(kbr_note_checkpoint_text(ORIGIN, (uint64_t)size, root, &text), KBR_OK);
    add_sig_line(cp, key, text);
    if (next != NULL)
        add_sig_line(cp, next, text);
    if (stated != NULL) {
        pem = pem_of(stated);
        json_object_set_new(cp, "public_key_pem", json_string(pem));
        assert_int_equal(kbr_note_key_id(ORIGIN, stated, &id), KBR_OK);
        free(pem);
    }
    free(text);
    free(b64);
    free(head);
    return cp;
}

/* Appends an entry carrying cp as its checkpoint effect (stolen; NULL: a plain entry). */
static void append(log_t *l, json_t *cp)
{
    size_t n = json_array_size(l->entries);
    const char *prev =
        n == 0 ? "0000000000000000000000000000000000000000000000000000000000000000"
               : json_string_value(json_object_get(json_array_get(l->entries, n - 1), "hash"));
    kbr_audit_rec *rec = NULL;
    json_t *entry = NULL;
    char hash[65];
    unsigned char *raw = NULL;
    size_t len = 0;

    assert_true(n < MAXLOG);
    assert_int_equal(kbr_audit_rec_new("service:keybrokerd", NULL,
                                       cp != NULL ? "audit.checkpoint" : "key.list", NULL, &rec),
                     KBR_OK);
    assert_int_equal(kbr_audit_entry_new(rec, (int64_t)n + 1, "2026-05-01T00:00:00Z", prev, &entry),
                     KBR_OK);
    if (cp != NULL) {
        json_object_set_new(cp, "type", json_string("checkpoint"));
        json_object_set_new(entry, "effects", json_pack("[o]", cp));
    }
    assert_int_equal(kbr_audit_entry_hash(entry, hash), KBR_OK);
    json_object_set_new(entry, "hash", json_string(hash));
    assert_int_equal(kbr_hex_decode(hash, &raw, &len), KBR_OK);
    memcpy(l->leaves + n * H, raw, H);
    free(raw);
    json_array_append_new(l->entries, entry);
    kbr_audit_rec_free(rec);
}

static void plain(log_t *l, int n)
{
    for (int i = 0; i < n; i++)
        append(l, NULL);
}

static int64_t len_of(const log_t *l)
{
    return (int64_t)json_array_size(l->entries);
}

static void assert_refused(const log_t *l, const json_t *cp, EVP_PKEY *pinned, const char *want)
{
    kbr_msg msg = {{0}};
    kbr_err err = kbr_audit_verify_log(l->entries, cp, pinned, NULL, &msg);

    if (err == KBR_OK || strstr(msg.text, want) == NULL)
        fail_msg("verify: %d \"%s\"; want a refusal naming \"%s\"", err, msg.text, want);
}

typedef struct {
    EVP_PKEY *k1, *k2, *k3, *evil;
} keys;

static keys ks;

static int setup(void **state)
{
    (void)state;
    ks.k1 = ed25519_new();
    ks.k2 = ed25519_new();
    ks.k3 = ed25519_new();
    ks.evil = ed25519_new();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(ks.k1);
    EVP_PKEY_free(ks.k2);
    EVP_PKEY_free(ks.k3);
    EVP_PKEY_free(ks.evil);
    return 0;
}

/* k1 checkpoints, rotates to k2, k2 checkpoints, rotates to k3. */
static void good_log(log_t *l)
{
    l->entries = json_array();
    plain(l, 3);
    append(l, checkpoint(l, 3, ks.k1, NULL, ks.k1));
    plain(l, 2);
    append(l, checkpoint(l, len_of(l), ks.k1, ks.k2, ks.k1));
    plain(l, 2);
    append(l, checkpoint(l, len_of(l), ks.k2, NULL, ks.k2));
    append(l, checkpoint(l, len_of(l), ks.k2, ks.k3, ks.k2));
    plain(l, 3);
}

static void test_chain_followed(void **state)
{
    log_t l;
    json_t *cp;
    kbr_audit_log_report rep;
    kbr_msg msg = {{0}};
    uint32_t id3 = 0;

    (void)state;
    good_log(&l);
    /* the latest checkpoint, newer than the export's last, signed by the last key */
    cp = checkpoint(&l, len_of(&l), ks.k3, NULL, ks.k3);
    assert_int_equal(kbr_audit_verify_log(l.entries, cp, ks.k1, &rep, &msg), KBR_OK);
    assert_int_equal(rep.checkpoints, 4);
    assert_int_equal(rep.keys, 3);
    assert_int_equal(kbr_note_key_id(ORIGIN, ks.k3, &id3), KBR_OK);
    assert_int_equal(rep.key_id, id3);
    assert_string_equal(rep.origin, ORIGIN);
    /* the log's own rotation checkpoint as the file */
    json_decref(cp);
    cp =
        json_deep_copy(json_array_get(json_object_get(json_array_get(l.entries, 6), "effects"), 0));
    json_object_del(cp, "type");
    if (kbr_audit_verify_log(l.entries, cp, ks.k1, &rep, &msg) != KBR_OK)
        fail_msg("%s", msg.text);
    /* ... but not one that differs from it under the same signature: a signed field changed
     * is a bad signature, a note with a stranger's cosignature added is not the log's note */
    json_object_set_new(cp, "time", json_string("2027-01-01T00:00:00Z"));
    assert_refused(&l, cp, ks.k1, "the checkpoint: checkpoint: bad signature");
    json_decref(cp);
    cp =
        json_deep_copy(json_array_get(json_object_get(json_array_get(l.entries, 6), "effects"), 0));
    json_object_del(cp, "type");
    {
        unsigned char root[H];
        char *text = NULL;
        assert_int_equal(kbr_merkle_root(l.leaves,
                                         (uint64_t)json_integer_value(json_object_get(cp, "size")),
                                         root),
                         KBR_OK);
        assert_int_equal(
            kbr_note_checkpoint_text(
                ORIGIN, (uint64_t)json_integer_value(json_object_get(cp, "size")), root, &text),
            KBR_OK);
        add_sig_line(cp, ks.evil, text);
        free(text);
    }
    assert_refused(&l, cp, ks.k1, "checkpoint.note: not what entry 7 recorded");
    json_decref(cp);
    /* pinned to a later key, or to a stranger: the first checkpoint does not follow */
    cp = checkpoint(&l, len_of(&l), ks.k3, NULL, ks.k3);
    assert_refused(&l, cp, ks.k2, "entry 4's checkpoint names another audit key");
    assert_refused(&l, cp, ks.evil, "entry 4's checkpoint names another audit key");
    json_decref(cp);
    /* a key the chain left behind signs no more */
    cp = checkpoint(&l, len_of(&l), ks.k2, NULL, ks.k2);
    assert_refused(&l, cp, ks.k1, "the checkpoint names another audit key");
    json_decref(cp);
    cp = checkpoint(&l, len_of(&l), ks.k2, NULL, NULL);
    assert_refused(&l, cp, ks.k1, "bad signature");
    json_decref(cp);
    json_decref(l.entries);
}

/* A link skipped: k2 signs with no rotation from k1 before it. */
static void test_skipped_link(void **state)
{
    log_t l = {.entries = json_array()};
    json_t *cp;

    (void)state;
    plain(&l, 3);
    append(&l, checkpoint(&l, 3, ks.k1, NULL, ks.k1));
    plain(&l, 2);
    append(&l, checkpoint(&l, len_of(&l), ks.k2, NULL, ks.k2));
    cp = checkpoint(&l, len_of(&l), ks.k2, NULL, ks.k2);
    assert_refused(&l, cp, ks.k1, "entry 7's checkpoint names another audit key");
    assert_refused(&l, cp, ks.k1, "a link is missing or forged");
    json_decref(l.entries);
    json_decref(cp);
    /* the same without the key named: the signature alone tells */
    l.entries = json_array();
    plain(&l, 3);
    append(&l, checkpoint(&l, 3, ks.k1, NULL, NULL));
    append(&l, checkpoint(&l, len_of(&l), ks.k2, NULL, NULL));
    cp = checkpoint(&l, len_of(&l), ks.k2, NULL, NULL);
    assert_refused(&l, cp, ks.k1, "entry 5's checkpoint: checkpoint: bad signature");
    json_decref(l.entries);
    json_decref(cp);
}

/* Rotations that do not hold. */
static void test_forged_rotation(void **state)
{
    log_t l = {.entries = json_array()};
    json_t *cp, *rot;
    const char *note;
    char *cut;

    (void)state;
    plain(&l, 3);
    /* signed by another key than the chain's, while claiming k1 */
    append(&l, checkpoint(&l, 3, ks.evil, ks.k2, ks.k1));
    cp = checkpoint(&l, len_of(&l), ks.k2, NULL, ks.k2);
    assert_refused(&l, cp, ks.k1, "entry 4's checkpoint: checkpoint: bad signature");
    json_decref(l.entries);
    json_decref(cp);

    /* k1's signature, but the next key never signed the note: no proof k2 exists as named */
    l.entries = json_array();
    plain(&l, 3);
    rot = checkpoint(&l, 3, ks.k1, NULL, ks.k1);
    {
        char *pem = pem_of(ks.k2), *head = NULL, *b64 = NULL;
        unsigned char sig[64];
        kbr_msg msg = {{0}};
        json_object_set_new(rot, "next_key_pem", json_string(pem));
        assert_int_equal(kbr_audit_head_message(rot, &head, &msg), KBR_OK);
        sign(ks.k1, head, sig);
        assert_int_equal(kbr_b64_encode(sig, 64, &b64), KBR_OK);
        json_object_set_new(rot, "signature_b64", json_string(b64));
        free(b64);
        free(head);
        free(pem);
    }
    append(&l, rot);
    cp = checkpoint(&l, len_of(&l), ks.k2, NULL, ks.k2);
    assert_refused(&l, cp, ks.k1, "no signature by key " ORIGIN "+");
    json_decref(l.entries);
    json_decref(cp);

    /* the next key swapped after k1 signed */
    l.entries = json_array();
    plain(&l, 3);
    rot = checkpoint(&l, 3, ks.k1, ks.k2, ks.k1);
    {
        char *pem = pem_of(ks.evil);
        json_object_set_new(rot, "next_key_pem", json_string(pem));
        free(pem);
    }
    append(&l, rot);
    cp = checkpoint(&l, len_of(&l), ks.evil, NULL, ks.evil);
    assert_refused(&l, cp, ks.k1, "entry 4's checkpoint: checkpoint: bad signature");
    json_decref(cp);
    json_decref(l.entries);

    /* a note cut short, and one for another size */
    l.entries = json_array();
    plain(&l, 3);
    rot = checkpoint(&l, 3, ks.k1, NULL, ks.k1);
    note = json_string_value(json_object_get(rot, "note"));
    cut = strndup(note, strlen(note) - 10);
    cp = json_deep_copy(rot);
    json_object_set_new(cp, "note", json_string(cut));
    assert_refused(&l, cp, ks.k1, "does not end in a newline");
    json_decref(cp);
    cp = checkpoint(&l, 2, ks.k1, NULL, ks.k1);
    json_object_set(rot, "note", json_object_get(cp, "note"));
    assert_refused(&l, rot, ks.k1, "its tree size or root hash is not the checkpoint's");
    json_decref(cp);
    json_decref(rot);
    free(cut);
    json_decref(l.entries);
}

/* A checkpoint in the log whose root is not the log's is named by its entry. */
static void test_entry_root_mismatch(void **state)
{
    log_t l = {.entries = json_array()};
    json_t *cp, *bad;

    (void)state;
    plain(&l, 4);
    bad = checkpoint(&l, 3, ks.k1, NULL, ks.k1);
    json_object_set_new(bad, "size", json_integer(2));
    append(&l, bad);
    cp = checkpoint(&l, len_of(&l), ks.k1, NULL, ks.k1);
    assert_refused(&l, cp, ks.k1, "root mismatch: the first 2 entries do not give entry 5's");
    json_decref(cp);
    /* a checkpoint that claims entries after its own */
    json_decref(l.entries);
    l.entries = json_array();
    plain(&l, 2);
    append(&l, checkpoint(&l, 2, ks.k1, NULL, ks.k1));
    json_object_set_new(json_array_get(json_object_get(json_array_get(l.entries, 2), "effects"), 0),
                        "size", json_integer(7));
    json_object_del(json_array_get(l.entries, 2), "hash");
    {
        char hash[65];
        assert_int_equal(kbr_audit_entry_hash(json_array_get(l.entries, 2), hash), KBR_OK);
        json_object_set_new(json_array_get(l.entries, 2), "hash", json_string(hash));
    }
    cp = checkpoint(&l, 2, ks.k1, NULL, ks.k1);
    assert_refused(&l, cp, ks.k1, "entry 3: its checkpoint covers entries past it");
    json_decref(cp);
    json_decref(l.entries);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_followed),
        cmocka_unit_test(test_skipped_link),
        cmocka_unit_test(test_forged_rotation),
        cmocka_unit_test(test_entry_root_mismatch),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
