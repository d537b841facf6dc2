/*
 * checkpoint.c - signed tree heads: what the audit key signs, and the offline check of an
 * exported log against a checkpoint, following the chain of audit keys from a pinned one.
 *
 * The audit key is Ed25519 and signs two things about a tree head, with nothing hashed first:
 *   - the head as canonical JSON (RFC 8785) of {"root_hash", "size", "time"}, and of
 *     {"next_key_pem", "root_hash", "size", "time"} for a rotation, in which the key names the
 *     audit key that signs after it (signature_b64);
 *   - the same head as a C2SP tlog-checkpoint signed note, "<origin>\n<size>\n<base64 root>\n"
 *     (note), whose key name is the origin; a rotation's note is signed by the next key too.
 * The two messages cannot be mistaken for each other: canonical JSON never holds a newline and
 * a note's text always ends in one.  Checkpoints of an older broker were signed with ECDSA
 * P-256 over SHA-256 of the canonical head, raw r||s; a pinned P-256 key still verifies them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

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

kbr_err kbr_audit_head_message(const json_t *cp, char **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *head = json_object();

    *out = NULL;
    KBR_ENSURE(head != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_is_object(cp), kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint: not an object"));
    KBR_GUARD(head_field(cp, "root_hash", head, msg));
    KBR_GUARD(head_field(cp, "size", head, msg));
    KBR_GUARD(head_field(cp, "time", head, msg));
    if (json_object_get(cp, "next_key_pem") != NULL &&
        !json_is_null(json_object_get(cp, "next_key_pem")))
        KBR_GUARD(head_field(cp, "next_key_pem", head, msg));
    KBR_GUARD(kbr_json_canonical(head, out));
out:
    json_decref(head);
    return err;
}

kbr_err kbr_audit_checkpoint_digest(const json_t *cp, unsigned char digest[32], kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *canonical = NULL;

    KBR_GUARD(kbr_audit_head_message(cp, &canonical, msg));
    KBR_ENSURE(EVP_Digest(canonical, strlen(canonical), digest, NULL, EVP_sha256(), NULL) == 1,
               KBR_ERR_CRYPTO);
out:
    free(canonical);
    return err;
}

static bool is_p256(EVP_PKEY *k)
{
    return EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_bits(k) == 256;
}

static kbr_err ecdsa_holds(const json_t *cp, EVP_PKEY *pubkey, const unsigned char *raw,
                           size_t raw_len, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char digest[32], *der = NULL;
    size_t der_len = 0;
    EVP_PKEY_CTX *ctx = NULL;

    KBR_GUARD(kbr_audit_checkpoint_digest(cp, digest, msg));
    KBR_ENSURE(
        raw_len == 2 * P256_HALF && kbr_ecdsa_raw_to_der(raw, raw_len, &der, &der_len) == KBR_OK,
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint.signature_b64: not a P-256 signature"));
    ctx = EVP_PKEY_CTX_new(pubkey, NULL);
    KBR_ENSURE(ctx != NULL && EVP_PKEY_verify_init(ctx) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_PKEY_verify(ctx, der, der_len, digest, sizeof(digest)) == 1,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "checkpoint: bad signature (not made by this audit key)"));
out:
    EVP_PKEY_CTX_free(ctx);
    free(der);
    return err;
}

kbr_err kbr_audit_ed25519_holds(EVP_PKEY *pubkey, const void *msg_bytes, size_t len,
                                const unsigned char *sig, size_t siglen)
{
    kbr_err err = KBR_OK;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_PKEY_is_a(pubkey, "ED25519") &&
                   EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pubkey) == 1,
               KBR_ERR_CRYPTO);
    KBR_ENSURE(siglen == 64 && EVP_DigestVerify(ctx, sig, siglen, msg_bytes, len) == 1,
               KBR_ERR_BAD_REQUEST);
out:
    EVP_MD_CTX_free(ctx);
    return err;
}

kbr_err kbr_audit_checkpoint_signature_holds(const json_t *cp, EVP_PKEY *pubkey, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *b64 = json_string_value(json_object_get(cp, "signature_b64"));
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    char *head = NULL;

    KBR_ENSURE(pubkey != NULL && (is_p256(pubkey) || EVP_PKEY_is_a(pubkey, "ED25519")),
               kbr_fail(msg, KBR_ERR_CRYPTO, "public key: not an Ed25519 or EC P-256 key"));
    KBR_ENSURE(b64 != NULL && kbr_b64_decode(b64, &raw, &raw_len) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint.signature_b64: not base64"));
    if (is_p256(pubkey)) {
        /* an older broker's checkpoint names no next key: its signed head has none */
        KBR_ENSURE(json_object_get(cp, "next_key_pem") == NULL ||
                       json_is_null(json_object_get(cp, "next_key_pem")),
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "checkpoint: a rotation must be signed by an Ed25519 key"));
        err = ecdsa_holds(cp, pubkey, raw, raw_len, msg);
        goto out;
    }
    KBR_GUARD(kbr_audit_head_message(cp, &head, msg));
    err = kbr_audit_ed25519_holds(pubkey, head, strlen(head), raw, raw_len);
    KBR_ENSURE(err != KBR_ERR_BAD_REQUEST,
               kbr_fail(msg, err, "checkpoint: bad signature (not made by this audit key)"));
    KBR_GUARD(err);
out:
    free(head);
    free(raw);
    return err;
}

kbr_err kbr_audit_pem_key(const char *pem, EVP_PKEY **out)
{
    BIO *b = NULL;

    *out = NULL;
    if (pem == NULL)
        return KBR_ERR_BAD_REQUEST;
    b = BIO_new_mem_buf(pem, -1);
    if (b == NULL)
        return KBR_ERR_NOMEM;
    *out = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    return *out != NULL ? KBR_OK : KBR_ERR_BAD_REQUEST;
}

/*
 * The note says what the JSON says: its text is exactly the checkpoint text of the origin on its
 * first line, the size and the root, and the origin's signature by key verifies (and next's,
 * for a rotation).
 */
kbr_err kbr_audit_checkpoint_note_holds(const json_t *cp, EVP_PKEY *key, EVP_PKEY *next,
                                        kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const json_t *note = json_object_get(cp, "note");
    const char *root_hex = json_string_value(json_object_get(cp, "root_hash"));
    json_int_t size = json_integer_value(json_object_get(cp, "size"));
    unsigned char *root = NULL;
    size_t root_len = 0;
    char *want = NULL;
    kbr_note n = {0};
    kbr_note_checkpoint body;

    KBR_ENSURE(json_is_string(note),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint.note: missing or mistyped"));
    KBR_GUARD(kbr_note_parse(json_string_value(note), json_string_length(note), &n, msg));
    KBR_GUARD(kbr_note_checkpoint_parse(&n, &body, msg));
    KBR_ENSURE(root_hex != NULL && kbr_hex_decode(root_hex, &root, &root_len) == KBR_OK &&
                   root_len == H && json_is_integer(json_object_get(cp, "size")) && size >= 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint: root_hash or size mistyped"));
    KBR_GUARD(kbr_note_checkpoint_text(body.origin, (uint64_t)size, root, &want));
    KBR_ENSURE(strlen(want) == n.text_len && memcmp(want, n.text, n.text_len) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "checkpoint.note: its tree size or root hash is not the checkpoint's"));
    KBR_ENSURE(kbr_note_name_valid(body.origin, strlen(body.origin)),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint.note: the origin is not a key name"));
    KBR_GUARD(kbr_note_verify(&n, body.origin, key, msg));
    if (next != NULL)
        KBR_GUARD(kbr_note_verify(&n, body.origin, next, msg));
out:
    kbr_note_clear(&n);
    free(want);
    free(root);
    if (err == KBR_ERR_NOT_FOUND)
        err = KBR_ERR_BAD_REQUEST;
    return err;
}

/* ---- the offline check ---- */

static const char *str_of(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/*
 * The roots of the tree at each of `sizes` (ascending, at most the number of entries), from
 * one pass over the entries' leaf hashes: a stack of the perfect subtrees the first k leaves
 * make, folded right to left whenever k is a size asked for.  O(n) hashes in all.
 */
typedef struct {
    int64_t size;
    unsigned char root[H];
} root_at;

static int root_at_cmp(const void *a, const void *b)
{
    int64_t x = ((const root_at *)a)->size, y = ((const root_at *)b)->size;

    return (x > y) - (x < y);
}

static kbr_err roots_of(const json_t *entries, root_at *want, size_t nwant)
{
    kbr_err err = KBR_OK;
    unsigned char stack[64][H], *leaf = NULL;
    uint64_t heights[64];
    size_t depth = 0, w = 0, len = 0;

    qsort(want, nwant, sizeof(*want), root_at_cmp);
    while (w < nwant && want[w].size == 0) {
        KBR_ENSURE(EVP_Digest("", 0, want[w].root, NULL, EVP_sha256(), NULL) == 1, KBR_ERR_CRYPTO);
        w++;
    }
    for (size_t i = 0; w < nwant && i < json_array_size(entries); i++) {
        /* kbr_audit_verify_entries checked each stated hash against its entry */
        KBR_GUARD(kbr_hex_decode(str_of(json_array_get(entries, i), "hash"), &leaf, &len));
        KBR_ENSURE(len == H && depth < 64, KBR_ERR_INTERNAL);
        memcpy(stack[depth], leaf, H);
        heights[depth++] = 1;
        free(leaf);
        leaf = NULL;
        while (depth >= 2 && heights[depth - 1] == heights[depth - 2]) {
            KBR_GUARD(kbr_merkle_node(stack[depth - 2], stack[depth - 1], stack[depth - 2]));
            heights[depth - 2] *= 2;
            depth--;
        }
        while (w < nwant && want[w].size == (int64_t)i + 1) {
            unsigned char r[H];
            memcpy(r, stack[depth - 1], H);
            for (size_t j = depth - 1; j-- > 0;)
                KBR_GUARD(kbr_merkle_node(stack[j], r, r));
            memcpy(want[w++].root, r, H);
        }
    }
    KBR_ENSURE(w == nwant, KBR_ERR_INTERNAL);
out:
    free(leaf);
    return err;
}

/* The checkpoint effect of entry e, if it has one (borrowed). */
static const json_t *checkpoint_of(const json_t *e)
{
    const json_t *fx = json_object_get(e, "effects"), *one;
    size_t i;

    json_array_foreach(fx, i, one)
    {
        if (json_is_string(json_object_get(one, "type")) &&
            strcmp(str_of(one, "type"), "checkpoint") == 0)
            return one;
    }
    return NULL;
}

typedef struct {
    EVP_PKEY *key; /* the key trusted now: the pinned one, then each next key */
    size_t keys;
    kbr_audit_log_report *report;
} chain;

static kbr_err root_holds(const json_t *cp, const root_at *roots, size_t nroots, const char *who,
                          kbr_msg *msg)
{
    int64_t size = json_integer_value(json_object_get(cp, "size"));
    char hex[2 * H + 1];

    for (size_t i = 0; i < nroots; i++) {
        if (roots[i].size != size)
            continue;
        kbr_hex_encode_buf(roots[i].root, H, hex);
        if (str_of(cp, "root_hash") != NULL && strcmp(hex, str_of(cp, "root_hash")) == 0)
            return KBR_OK;
        break;
    }
    return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                    "root mismatch: the first %lld entries do not give %s root_hash",
                    (long long)size, who);
}

/* key id of k under origin, for messages: 0 when it has none (not Ed25519, no origin). */
static uint32_t id_of(EVP_PKEY *k, const char *origin)
{
    uint32_t id = 0;

    if (origin == NULL || kbr_note_key_id(origin, k, &id) != KBR_OK)
        return 0;
    return id;
}

/*
 * One checkpoint of the chain: signed by the key trusted now, its note too when it has one,
 * and a rotation moves the trust to the key it names.  who names it in messages.
 */
static kbr_err link_holds(chain *c, const json_t *cp, const char *who, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *stated = NULL, *next = NULL;
    const char *origin = NULL;
    bool rotation = str_of(cp, "next_key_pem") != NULL;
    kbr_msg why = {{0}};

    if (str_of(cp, "public_key_pem") != NULL) {
        KBR_ENSURE(
            kbr_audit_pem_key(str_of(cp, "public_key_pem"), &stated) == KBR_OK,
            kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: public_key_pem is not a public key", who));
        KBR_ENSURE(EVP_PKEY_eq(stated, c->key) == 1,
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "%s names another audit key than the one the chain of keys from the "
                            "pinned key has reached (%zu keys in): a link is missing or forged",
                            who, c->keys));
    }
    err = kbr_audit_checkpoint_signature_holds(cp, c->key, &why);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err == KBR_ERR_CRYPTO ? err : KBR_ERR_BAD_REQUEST,
                        "%s: %s (the chain of audit keys from the pinned key is %zu keys long)",
                        who, why.text, c->keys));
    if (rotation) {
        KBR_ENSURE(kbr_audit_pem_key(str_of(cp, "next_key_pem"), &next) == KBR_OK &&
                       EVP_PKEY_is_a(next, "ED25519"),
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "%s: next_key_pem is not an Ed25519 public key", who));
    }
    if (json_object_get(cp, "note") != NULL) {
        err = kbr_audit_checkpoint_note_holds(cp, c->key, next, &why);
        KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "%s: %s", who, why.text));
    }
    origin = str_of(cp, "origin");
    if (c->report != NULL && origin != NULL)
        snprintf(c->report->origin, sizeof(c->report->origin), "%s", origin);
    if (rotation) {
        EVP_PKEY_free(c->key);
        c->key = next;
        next = NULL;
        c->keys++;
    }
out:
    EVP_PKEY_free(next);
    EVP_PKEY_free(stated);
    return err;
}

/*
 * The given checkpoint is one the log records: it must hold by itself, with the key the chain
 * had reached there, and say what the log's copy says.
 */
static kbr_err same_as_entry(const chain *c, const json_t *cp, const json_t *mine, size_t i,
                             kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    chain at = {.key = c->key, .keys = c->keys, .report = NULL};
    static const char *const same[] = {"size", "root_hash", "time", "note", "next_key_pem"};

    KBR_ENSURE(EVP_PKEY_up_ref(at.key) == 1, KBR_ERR_CRYPTO);
    err = link_holds(&at, cp, "the checkpoint", msg);
    EVP_PKEY_free(at.key);
    KBR_GUARD(err);
    for (size_t k = 0; k < sizeof(same) / sizeof(same[0]); k++) {
        const json_t *a = json_object_get(cp, same[k]), *b = json_object_get(mine, same[k]);
        KBR_ENSURE((a == NULL || json_is_null(a)) ? (b == NULL || json_is_null(b))
                                                  : json_equal(a, b),
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "checkpoint.%s: not what entry %zu recorded with the same signature",
                            same[k], i + 1));
    }
out:
    return err;
}

static bool same_signature(const json_t *a, const json_t *b)
{
    return json_is_string(json_object_get(a, "signature_b64")) &&
           json_equal(json_object_get(a, "signature_b64"), json_object_get(b, "signature_b64"));
}

kbr_err kbr_audit_verify_log(const json_t *entries, const json_t *cp, EVP_PKEY *first_key,
                             kbr_audit_log_report *report, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    chain c = {.key = NULL, .keys = 1, .report = report};
    root_at *roots = NULL;
    size_t nroots = 0, i;
    const json_t *e, *one;
    char who[64];
    bool found = false;

    if (report != NULL)
        memset(report, 0, sizeof(*report));
    /* the fields first, so a malformed checkpoint is named before the log is blamed */
    {
        char *head = NULL;
        err = kbr_audit_head_message(cp, &head, msg);
        free(head);
        KBR_GUARD(err);
    }
    KBR_ENSURE(first_key != NULL && (is_p256(first_key) || EVP_PKEY_is_a(first_key, "ED25519")),
               kbr_fail(msg, KBR_ERR_CRYPTO, "public key: not an Ed25519 or EC P-256 key"));
    KBR_GUARD(kbr_audit_verify_entries(entries, 1, NULL, msg));
    roots = calloc(json_array_size(entries) + 1, sizeof(*roots));
    KBR_ENSURE(roots != NULL, KBR_ERR_NOMEM);
    json_array_foreach(entries, i, e)
    {
        one = checkpoint_of(e);
        if (one == NULL)
            continue;
        KBR_ENSURE(json_is_integer(json_object_get(one, "size")) &&
                       json_integer_value(json_object_get(one, "size")) >= 0 &&
                       json_integer_value(json_object_get(one, "size")) <= (json_int_t)i,
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "entry %zu: its checkpoint covers entries past it", i + 1));
        roots[nroots++].size = json_integer_value(json_object_get(one, "size"));
    }
    if ((size_t)json_integer_value(json_object_get(cp, "size")) <= json_array_size(entries))
        roots[nroots++].size = json_integer_value(json_object_get(cp, "size"));
    KBR_GUARD(roots_of(entries, roots, nroots));
    KBR_ENSURE(EVP_PKEY_up_ref(first_key) == 1, KBR_ERR_CRYPTO);
    c.key = first_key;
    /* the given checkpoint's size and root first: a log too short is named as such */
    {
        int64_t size = json_integer_value(json_object_get(cp, "size"));
        KBR_ENSURE((size_t)size <= json_array_size(entries),
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "missing entries: the checkpoint covers %lld, the log has %zu",
                            (long long)size, json_array_size(entries)));
        KBR_GUARD(root_holds(cp, roots, nroots, "the checkpoint's", msg));
    }
    json_array_foreach(entries, i, e)
    {
        one = checkpoint_of(e);
        if (one == NULL)
            continue;
        snprintf(who, sizeof(who), "entry %zu's checkpoint", i + 1);
        KBR_GUARD(root_holds(one, roots, nroots, who, msg));
        if (!found && same_signature(cp, one)) {
            KBR_GUARD(same_as_entry(&c, cp, one, i, msg));
            found = true;
        }
        KBR_GUARD(link_holds(&c, one, who, msg));
        if (report != NULL)
            report->checkpoints++;
    }
    /* newer than the log's last checkpoint: the key that one hands on signed it */
    if (!found)
        KBR_GUARD(link_holds(&c, cp, "the checkpoint", msg));
    if (report != NULL) {
        report->keys = c.keys;
        report->key_id = id_of(c.key, report->origin[0] != '\0' ? report->origin : NULL);
    }
out:
    EVP_PKEY_free(c.key);
    free(roots);
    return err;
}

kbr_err kbr_audit_verify_checkpoint(const json_t *entries, const json_t *cp, EVP_PKEY *pubkey,
                                    kbr_msg *msg)
{
    return kbr_audit_verify_log(entries, cp, pubkey, NULL, msg);
}
