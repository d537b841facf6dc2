/*
 * bundle.c - evidence bundles checked offline (keybroker evidence verify): nothing but the
 * bundle and the audit public key an auditor pinned.
 *
 * A bundle ("keybroker-evidence/1", docs/api.md "Evidence bundles") carries a signed
 * checkpoint with the chain of audit keys from the first to the one that signed it (the
 * rotations that hand each key on), entries of the audit log each with its inclusion proof to
 * that checkpoint, and the documents those entries name.  It holds when the chain leads from
 * the pinned key (the first audit key) to the checkpoint's signer, the checkpoint's signatures
 * (Ed25519 over its canonical head, and its signed note) verify under that key, every entry's
 * hash recomputes from the entry (RFC 8785, RFC 6962 leaf),
 * every inclusion proof leads from that hash to the checkpoint's root, every document hashes
 * to its name and is named by an entry, and the entries are about the subject.  The bundle is
 * read strictly: an unknown member, a repeated key, a missing or mistyped field is an error
 * that names where it is.
 */
#include <stdlib.h>
#include <string.h>

#include "kbr_audit.h"

#define H KBR_MERKLE_HASH_LEN

static const char *const top_members[] = {"format",     "subject",           "generated_at",
                                          "checkpoint", "audit_public_keys", "audit_key_chain",
                                          "entries",    "documents",         NULL};
static const char *const item_members[] = {"entry", "leaf_index", "inclusion_proof", NULL};

/* The first member of o that allowed (NULL-terminated) does not list, or NULL. */
static const char *unknown_member(const json_t *o, const char *const *allowed)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)o, key, v)
    {
        size_t i = 0;
        (void)v;
        while (allowed[i] != NULL && strcmp(allowed[i], key) != 0)
            i++;
        if (allowed[i] == NULL)
            return key;
    }
    return NULL;
}

/* 64 hex digits into 32 bytes. */
static bool hex32(const char *s, unsigned char out[H])
{
    unsigned char *raw = NULL;
    size_t len = 0;
    bool ok =
        s != NULL && strlen(s) == 2 * H && kbr_hex_decode(s, &raw, &len) == KBR_OK && len == H;

    if (ok)
        memcpy(out, raw, H);
    free(raw);
    return ok;
}

typedef struct {
    int64_t size; /* the checkpoint's */
    unsigned char root[H];
    int64_t last_seq;
    json_t *named; /* {sha256: true} for each document an entry names */
    kbr_msg *msg;
} checking;

static kbr_err proof_holds(checking *c, size_t i, int64_t seq, const char *hash,
                           const json_t *proof)
{
    kbr_err err = KBR_OK;
    unsigned char leaf[H], *path = NULL;
    size_t n = json_array_size(proof), k;
    const json_t *v;

    KBR_ENSURE(json_is_array(proof), kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                                              "entries[%zu] (seq %lld): inclusion_proof is not "
                                              "a list",
                                              i, (long long)seq));
    KBR_ENSURE(hex32(hash, leaf), KBR_ERR_INTERNAL); /* checked by the caller */
    path = malloc(n > 0 ? n * H : 1);
    KBR_ENSURE(path != NULL, KBR_ERR_NOMEM);
    json_array_foreach(proof, k, v)
    {
        KBR_ENSURE(hex32(json_string_value(v), path + k * H),
                   kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                            "entries[%zu] (seq %lld): inclusion_proof[%zu] is not a SHA-256 in "
                            "hex",
                            i, (long long)seq, k));
    }
    KBR_ENSURE(kbr_merkle_verify(leaf, (uint64_t)(seq - 1), (uint64_t)c->size, path, n, c->root) ==
                   KBR_OK,
               kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                        "entries[%zu] (seq %lld): its inclusion proof does not lead to the "
                        "checkpoint's root",
                        i, (long long)seq));
out:
    free(path);
    return err;
}

static kbr_err names_documents(checking *c, size_t i, int64_t seq, const json_t *entry)
{
    const json_t *names = json_object_get(entry, "documents"), *v;
    size_t k;

    if (names == NULL)
        return KBR_OK;
    if (!json_is_array(names))
        return kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                        "entries[%zu] (seq %lld): \"documents\" is not a list", i, (long long)seq);
    json_array_foreach(names, k, v)
    {
        if (!json_is_string(v) || json_object_set(c->named, json_string_value(v), json_true()) != 0)
            return kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                            "entries[%zu] (seq %lld): documents[%zu] is not a name", i,
                            (long long)seq, k);
    }
    return KBR_OK;
}

/* One item of "entries": the entry's hash, its place in the tree, its proof. */
static kbr_err entry_holds(checking *c, size_t i, const json_t *item)
{
    kbr_err err = KBR_OK;
    const json_t *entry = json_object_get(item, "entry"),
                 *index = json_object_get(item, "leaf_index");
    json_t *bare = NULL;
    const char *hash = json_string_value(json_object_get(entry, "hash")), *extra;
    const json_t *seqv = json_object_get(entry, "seq");
    int64_t seq = json_integer_value(seqv);
    char computed[65];
    unsigned char scratch[H];

    KBR_ENSURE(json_is_object(item),
               kbr_fail(c->msg, KBR_ERR_BAD_REQUEST, "entries[%zu]: not an object", i));
    extra = unknown_member(item, item_members);
    KBR_ENSURE(extra == NULL, kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                                       "entries[%zu]: unknown member \"%s\"", i, extra));
    KBR_ENSURE(json_is_object(entry) && json_is_integer(seqv) && seq > 0 && hex32(hash, scratch),
               kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                        "entries[%zu]: \"entry\" must be an audit entry with seq and hash", i));
    KBR_ENSURE(seq > c->last_seq,
               kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                        "entries[%zu] (seq %lld): entries must be in seq order, each once", i,
                        (long long)seq));
    c->last_seq = seq;
    KBR_ENSURE(json_is_integer(index) && json_integer_value(index) == seq - 1,
               kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                        "entries[%zu] (seq %lld): leaf_index must be %lld", i, (long long)seq,
                        (long long)seq - 1));
    KBR_ENSURE(seq <= c->size, kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                                        "entries[%zu] (seq %lld): after the checkpoint (size %lld)",
                                        i, (long long)seq, (long long)c->size));
    bare = json_deep_copy(entry);
    KBR_ENSURE(bare != NULL, KBR_ERR_NOMEM);
    json_object_del(bare, "hash");
    KBR_GUARD(kbr_audit_entry_hash(bare, computed));
    KBR_ENSURE(strcmp(computed, hash) == 0,
               kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                        "entries[%zu] (seq %lld): its hash does not match its content", i,
                        (long long)seq));
    KBR_GUARD(proof_holds(c, i, seq, hash, json_object_get(item, "inclusion_proof")));
    KBR_GUARD(names_documents(c, i, seq, entry));
out:
    json_decref(bare);
    return err;
}

static kbr_err documents_hold(checking *c, const json_t *docs)
{
    kbr_err err = KBR_OK;
    const char *name;
    json_t *v;
    unsigned char *body = NULL;
    size_t len = 0;
    char sha[65];

    KBR_ENSURE(json_is_object(docs),
               kbr_fail(c->msg, KBR_ERR_BAD_REQUEST, "documents: not an object"));
    json_object_foreach((json_t *)docs, name, v)
    {
        KBR_ENSURE(json_is_string(v) && kbr_b64_decode(json_string_value(v), &body, &len) == KBR_OK,
                   kbr_fail(c->msg, KBR_ERR_BAD_REQUEST, "documents.%.64s: not base64", name));
        kbr_sha256_hex(body, len, sha);
        free(body);
        body = NULL;
        KBR_ENSURE(strcmp(sha, name) == 0,
                   kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                            "documents.%.64s: its content does not hash to its name", name));
        KBR_ENSURE(json_object_get(c->named, name) != NULL,
                   kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                            "documents.%.64s: no entry of the bundle names it", name));
    }
    json_object_foreach(c->named, name, v)
    {
        KBR_ENSURE(json_object_get(docs, name) != NULL,
                   kbr_fail(c->msg, KBR_ERR_BAD_REQUEST,
                            "document %.64s, named by an entry, is missing from the bundle", name));
    }
out:
    free(body);
    return err;
}

/* Does an effect of the entries provision this device (the subject's first fact)? */
static bool provisions(const json_t *entries, const char *product, const char *serial)
{
    const json_t *item, *fx;
    size_t i, k;

    json_array_foreach(entries, i, item)
    {
        json_array_foreach(json_object_get(json_object_get(item, "entry"), "effects"), k, fx)
        {
            const char *type = json_string_value(json_object_get(fx, "type"));
            const char *p = json_string_value(json_object_get(fx, "product"));
            const char *s = json_string_value(json_object_get(fx, "serial"));
            if (type != NULL && strcmp(type, "device.provision") == 0 && p != NULL && s != NULL &&
                strcmp(p, product) == 0 && strcmp(s, serial) == 0)
                return true;
        }
    }
    return false;
}

/* Does an effect of the entries make a fact of the product: a batch or a build of it, or a key
 * registered for it? */
static bool product_facts(const json_t *entries, const char *product)
{
    const json_t *item, *fx, *p;
    size_t i, k, j;

    json_array_foreach(entries, i, item)
    {
        json_array_foreach(json_object_get(json_object_get(item, "entry"), "effects"), k, fx)
        {
            const char *type = json_string_value(json_object_get(fx, "type"));
            const char *of = json_string_value(json_object_get(fx, "product"));
            if (type == NULL)
                continue;
            if ((strcmp(type, "batch.create") == 0 || strcmp(type, "firmware.sign") == 0) &&
                of != NULL && strcmp(of, product) == 0)
                return true;
            if (strcmp(type, "key.create") != 0)
                continue;
            json_array_foreach(json_object_get(fx, "products"), j, p)
            {
                if (json_is_string(p) && strcmp(json_string_value(p), product) == 0)
                    return true;
            }
        }
    }
    return false;
}

/* Does an effect of the entries record this incident (its incident.create)? */
static bool records_incident(const json_t *entries, const char *id)
{
    const json_t *item, *fx;
    size_t i, k;

    json_array_foreach(entries, i, item)
    {
        json_array_foreach(json_object_get(json_object_get(item, "entry"), "effects"), k, fx)
        {
            const char *type = json_string_value(json_object_get(fx, "type"));
            const char *of = json_string_value(json_object_get(fx, "id"));
            if (type != NULL && strcmp(type, "incident.create") == 0 && of != NULL &&
                strcmp(of, id) == 0)
                return true;
        }
    }
    return false;
}

static kbr_err subject_holds(const json_t *subject, const json_t *entries, kbr_msg *msg)
{
    const char *kind = json_string_value(json_object_get(subject, "kind"));
    const char *product = json_string_value(json_object_get(subject, "product"));
    const char *serial = json_string_value(json_object_get(subject, "serial"));
    const char *id = json_string_value(json_object_get(subject, "id"));

    if (kind != NULL && strcmp(kind, "incident") == 0) {
        if (id == NULL || !records_incident(entries, id))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "subject: no entry of the bundle records incident %.64s",
                            id != NULL ? id : "(none)");
        return KBR_OK;
    }
    if (kind == NULL || product == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "subject: needs a kind and a product");
    if (strcmp(kind, "device") == 0) {
        if (serial == NULL || !provisions(entries, product, serial))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "subject: no entry of the bundle provisions device %.64s of %.64s",
                            serial != NULL ? serial : "(none)", product);
        return KBR_OK;
    }
    if (strcmp(kind, "product") == 0) {
        if (!product_facts(entries, product))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "subject: no entry of the bundle records a key, batch or build of "
                            "product %.64s",
                            product);
        return KBR_OK;
    }
    return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "subject.kind: \"%.32s\" is not a kind of subject",
                    kind);
}

/* keys[i] is the key k is: the bundle lists the keys it walks, as it walks them. */
static kbr_err listed_key(const json_t *keys, size_t i, EVP_PKEY *k, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *listed = NULL;

    KBR_ENSURE(
        kbr_audit_pem_key(json_string_value(json_array_get(keys, i)), &listed) == KBR_OK,
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit_public_keys[%zu]: not a PEM public key", i));
    KBR_ENSURE(EVP_PKEY_eq(listed, k) == 1,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "audit_public_keys[%zu]: not the key the chain from the pinned key "
                        "reaches",
                        i));
out:
    EVP_PKEY_free(listed);
    return err;
}

/* One link: the rotation r, signed (head and note) by *key, hands on the key that cosigned its
 * note, which becomes *key. */
static kbr_err link_holds(const json_t *r, size_t i, EVP_PKEY **key, int64_t size, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *next = NULL;
    kbr_msg why = {{0}};

    KBR_ENSURE(json_is_object(r) && json_is_string(json_object_get(r, "next_key_pem")),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit_key_chain[%zu]: not a rotation", i));
    KBR_ENSURE(json_integer_value(json_object_get(r, "size")) <= size,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "audit_key_chain[%zu]: after the checkpoint (size %lld)", i,
                        (long long)size));
    err = kbr_audit_checkpoint_signature_holds(r, *key, &why);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err == KBR_ERR_CRYPTO ? err : KBR_ERR_BAD_REQUEST,
                                       "audit_key_chain[%zu]: %s", i, why.text));
    KBR_ENSURE(kbr_audit_pem_key(json_string_value(json_object_get(r, "next_key_pem")), &next) ==
                   KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "audit_key_chain[%zu]: next_key_pem is not a PEM public key", i));
    err = kbr_audit_checkpoint_note_holds(r, *key, next, &why);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit_key_chain[%zu]: %s", i, why.text));
    EVP_PKEY_free(*key);
    *key = next;
    next = NULL;
out:
    EVP_PKEY_free(next);
    return err;
}

/*
 * From the pinned key along audit_key_chain to the checkpoint's signer, then the checkpoint's
 * own signatures: its head, and its note when it has one (an older broker's has none).
 */
static kbr_err checkpoint_chain_holds(const json_t *b, const json_t *cp, EVP_PKEY *pinned,
                                      size_t *nkeys, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const json_t *chain = json_object_get(b, "audit_key_chain"),
                 *keys = json_object_get(b, "audit_public_keys"), *r;
    int64_t size = json_integer_value(json_object_get(cp, "size"));
    EVP_PKEY *key = NULL, *next = NULL;
    kbr_msg why = {{0}};
    size_t i;

    KBR_ENSURE(chain == NULL || json_is_array(chain),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit_key_chain: not a list"));
    KBR_ENSURE(json_is_array(keys) && json_array_size(keys) == json_array_size(chain) + 1,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "audit_public_keys: not one key more than audit_key_chain has links"));
    KBR_ENSURE(EVP_PKEY_up_ref(pinned) == 1, KBR_ERR_NOMEM);
    key = pinned;
    json_array_foreach(chain, i, r)
    {
        KBR_GUARD(link_holds(r, i, &key, size, msg));
    }
    KBR_GUARD(kbr_audit_checkpoint_signature_holds(cp, key, msg));
    if (json_object_get(cp, "note") != NULL) {
        if (json_is_string(json_object_get(cp, "next_key_pem")))
            KBR_ENSURE(kbr_audit_pem_key(json_string_value(json_object_get(cp, "next_key_pem")),
                                         &next) == KBR_OK,
                       kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "checkpoint: next_key_pem is not a PEM public key"));
        err = kbr_audit_checkpoint_note_holds(cp, key, next, &why);
        KBR_ENSURE(err == KBR_OK, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint: %s", why.text));
    }
    /* the keys the bundle lists are those the chain went through, pinned key first */
    EVP_PKEY_free(key);
    KBR_ENSURE(EVP_PKEY_up_ref(pinned) == 1, KBR_ERR_NOMEM);
    key = pinned;
    KBR_GUARD(listed_key(keys, 0, key, msg));
    json_array_foreach(chain, i, r)
    {
        EVP_PKEY_free(key);
        key = NULL;
        KBR_ENSURE(kbr_audit_pem_key(json_string_value(json_object_get(r, "next_key_pem")), &key) ==
                       KBR_OK,
                   KBR_ERR_INTERNAL); /* read by link_holds */
        KBR_GUARD(listed_key(keys, i + 1, key, msg));
    }
    *nkeys = json_array_size(keys);
out:
    EVP_PKEY_free(next);
    EVP_PKEY_free(key);
    return err;
}

kbr_err kbr_evidence_verify(const char *text, size_t len, EVP_PKEY *pubkey, json_t **summary,
                            kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_error_t jerr;
    json_t *b = NULL;
    const json_t *cp, *entries, *item;
    const char *format, *extra;
    checking c = {.msg = msg};
    size_t i, nkeys = 0;

    *summary = NULL;
    b = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    KBR_ENSURE(b != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "line %d: %s", jerr.line, jerr.text));
    KBR_ENSURE(json_is_object(b), kbr_fail(msg, KBR_ERR_BAD_REQUEST, "not a JSON object"));
    extra = unknown_member(b, top_members);
    KBR_ENSURE(extra == NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "unknown member \"%.64s\"", extra));
    format = json_string_value(json_object_get(b, "format"));
    KBR_ENSURE(format != NULL && strcmp(format, "keybroker-evidence/1") == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "format: not \"keybroker-evidence/1\" (a bundle of another kind)"));
    cp = json_object_get(b, "checkpoint");
    KBR_ENSURE(json_is_object(cp), kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint: missing"));
    KBR_GUARD(checkpoint_chain_holds(b, cp, pubkey, &nkeys, msg));
    c.size = json_integer_value(json_object_get(cp, "size"));
    KBR_ENSURE(hex32(json_string_value(json_object_get(cp, "root_hash")), c.root),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "checkpoint.root_hash: not a SHA-256 in hex"));
    entries = json_object_get(b, "entries");
    KBR_ENSURE(json_is_array(entries) && json_array_size(entries) > 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "entries: missing or empty"));
    c.named = json_object();
    KBR_ENSURE(c.named != NULL, KBR_ERR_NOMEM);
    json_array_foreach(entries, i, item)
    {
        KBR_GUARD(entry_holds(&c, i, item));
    }
    KBR_GUARD(documents_hold(&c, json_object_get(b, "documents")));
    KBR_GUARD(subject_holds(json_object_get(b, "subject"), entries, msg));
    *summary =
        json_pack("{s:O,s:I,s:O,s:I,s:I,s:I}", "subject", json_object_get(b, "subject"),
                  "checkpoint_size", (json_int_t)c.size, "checkpoint_time",
                  json_object_get(cp, "time"), "entries", (json_int_t)json_array_size(entries),
                  "documents", (json_int_t)json_object_size(json_object_get(b, "documents")),
                  "audit_keys", (json_int_t)nkeys);
    KBR_ENSURE(*summary != NULL, KBR_ERR_NOMEM);
out:
    json_decref(c.named);
    json_decref(b);
    return err;
}
