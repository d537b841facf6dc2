/*
 * evidence.c - evidence bundles made from the store (kbr_audit.h): the entries behind the
 * facts about a subject, each with its inclusion proof to one signed checkpoint, the chain of
 * audit keys that leads to its signer, and the documents they name.  kbr_evidence_verify (bundle.c)
 * is the other half.
 */
#include <stdlib.h>
#include <string.h>

#include "kbr_audit.h"

#define H KBR_MERKLE_HASH_LEN

static kbr_err proof_of(kbr_store *st, int64_t seq, int64_t size, json_t **out)
{
    kbr_err err = KBR_OK;
    unsigned char *path = NULL;
    size_t n = 0;
    json_t *arr = json_array();
    char hex[2 * H + 1];

    *out = NULL;
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_store_merkle_proof(st, seq, size, &path, &n));
    for (size_t i = 0; i < n; i++) {
        kbr_hex_encode_buf(path + i * H, H, hex);
        KBR_ENSURE(json_array_append_new(arr, json_string(hex)) == 0, KBR_ERR_NOMEM);
    }
    *out = arr;
    arr = NULL;
out:
    free(path);
    json_decref(arr);
    return err;
}

static kbr_err add_documents(kbr_store *st, const json_t *entry, json_t *docs)
{
    kbr_err err = KBR_OK;
    const json_t *name;
    unsigned char *body = NULL;
    char *b64 = NULL;
    size_t i, len = 0;

    json_array_foreach(json_object_get(entry, "documents"), i, name)
    {
        const char *sha = json_string_value(name);
        KBR_ENSURE(sha != NULL, KBR_ERR_STORE);
        if (json_object_get(docs, sha) != NULL)
            continue;
        KBR_GUARD(kbr_store_document_get(st, sha, &body, &len, NULL));
        KBR_GUARD(kbr_b64_encode(body, len, &b64));
        KBR_ENSURE(json_object_set_new(docs, sha, json_string(b64)) == 0, KBR_ERR_NOMEM);
        free(body);
        free(b64);
        body = NULL;
        b64 = NULL;
    }
out:
    free(body);
    free(b64);
    return err;
}

kbr_err kbr_evidence_build(kbr_store *st, const json_t *subject, const json_t *seqs,
                           const json_t *cp, const json_t *audit_public_keys,
                           const json_t *audit_key_chain, json_t **bundle)
{
    kbr_err err = KBR_OK;
    json_t *entries = NULL, *items = json_array(), *docs = json_object(), *proof = NULL;
    const json_t *entry, *last = json_array_get(seqs, json_array_size(seqs) - 1);
    int64_t size = json_integer_value(json_object_get(cp, "size"));
    char now[KBR_TIME_LEN];
    size_t i;

    *bundle = NULL;
    KBR_ENSURE(items != NULL && docs != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(last == NULL || json_integer_value(last) <= size, KBR_ERR_CONFLICT);
    KBR_GUARD(kbr_store_audit_entries(st, seqs, &entries));
    json_array_foreach(entries, i, entry)
    {
        int64_t seq = json_integer_value(json_object_get(entry, "seq"));
        KBR_GUARD(proof_of(st, seq, size, &proof));
        KBR_ENSURE(json_array_append_new(items, json_pack("{s:O,s:I,s:o}", "entry", entry,
                                                          "leaf_index", (json_int_t)(seq - 1),
                                                          "inclusion_proof", proof)) == 0,
                   KBR_ERR_NOMEM);
        proof = NULL;
        KBR_GUARD(add_documents(st, entry, docs));
    }
    kbr_time_fmt(time(NULL), now);
    *bundle = json_pack("{s:s,s:O,s:s,s:O,s:O,s:O,s:O,s:O}", "format", "keybroker-evidence/1",
                        "subject", subject, "generated_at", now, "checkpoint", cp,
                        "audit_public_keys", audit_public_keys, "audit_key_chain", audit_key_chain,
                        "entries", items, "documents", docs);
    KBR_ENSURE(*bundle != NULL, KBR_ERR_NOMEM);
out:
    json_decref(proof);
    json_decref(entries);
    json_decref(items);
    json_decref(docs);
    return err;
}
