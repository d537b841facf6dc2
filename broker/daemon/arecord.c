/*
 * arecord.c - the audit record in the HSM, and the signing of tree heads.
 *
 * The record is the latest signed tree head, kept as a data object (KBD_RECORD_LABEL) on the
 * token: the one place an attacker holding the broker's disk alone cannot rewind.  Its value
 * is the canonical JSON of the checkpoint effect's JSON form (kbr_store.h, with its signer
 * always) plus "serial", one more at each write, which tells the latest of two records an
 * interrupted write leaves (pkcs11/data.c writes the new object before it removes the old).
 *
 * Order: a head is signed, recorded in the HSM, and only then its entry committed.  A head
 * only covers entries already committed, so the record is always a prefix of what the store
 * durably holds: a crash anywhere leaves a store that is at least as long as the record and
 * agrees with it, and the start completes the log from the record when the entry was lost
 * (kbd_record_entry).  The other order would leave a window in which the store is ahead of
 * the record, and a copy of the store taken then could be restored unnoticed.
 *
 * In the serving broker the HSM process is the record's only writer, and it writes only what
 * kbd_record_check accepts: the next serial, a head at least as large whose consistency proof
 * from the recorded one holds, signed (JSON head and note) by the key the recorded one hands
 * on, as the HSM itself reports that key.  So code that takes over the network process can
 * move the record forward along one history, never back nor sideways.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "hsmproc.h"

#define H KBR_MERKLE_HASH_LEN

/* ---- reading a record ---- */

static const char *str_of(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool hex_of_len(const char *s, size_t len)
{
    return s != NULL && strlen(s) == len && strspn(s, "0123456789abcdef") == len;
}

bool kbd_audit_label_valid(const char *label)
{
    size_t n;

    if (label == NULL)
        return false;
    if (strcmp(label, KBD_AUDIT_LABEL) == 0)
        return true;
    n = strlen(KBD_AUDIT_LABEL "/");
    return strncmp(label, KBD_AUDIT_LABEL "/", n) == 0 && label[n] >= '1' && label[n] <= '9' &&
           strspn(label + n, "0123456789") == strlen(label + n) && strlen(label + n) <= 9;
}

/* Every member typed as the record has it, and no other member. */
static kbr_err record_shape(const json_t *r, kbr_msg *msg)
{
    static const char *const text[] = {"root_hash", "time",   "signature_b64", "origin",
                                       "note",      "key_id", "key_label",     "public_key_pem"};
    static const char *const next[] = {"next_key_id", "next_key_label", "next_key_pem"};
    size_t nnext = 0, members = 2 + sizeof(text) / sizeof(text[0]);
    time_t t;

    if (!json_is_object(r))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: not a JSON object");
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
        if (!json_is_string(json_object_get(r, text[i])))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: %s missing or mistyped",
                            text[i]);
    for (size_t i = 0; i < sizeof(next) / sizeof(next[0]); i++) {
        const json_t *v = json_object_get(r, next[i]);
        if (v != NULL && !json_is_string(v))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: %s mistyped", next[i]);
        nnext += v != NULL;
    }
    if (nnext != 0 && nnext != 3)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: a next key only in part");
    if (!json_is_integer(json_object_get(r, "serial")) ||
        json_integer_value(json_object_get(r, "serial")) < 1 ||
        !json_is_integer(json_object_get(r, "size")) ||
        json_integer_value(json_object_get(r, "size")) < 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: serial or size mistyped");
    if (json_object_size(r) != members + nnext)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: unknown members");
    if (!hex_of_len(str_of(r, "root_hash"), 2 * H) || !hex_of_len(str_of(r, "key_id"), 8) ||
        (nnext != 0 && !hex_of_len(str_of(r, "next_key_id"), 8)))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: a hash or key ID is not hex");
    if (kbr_time_parse(str_of(r, "time"), &t) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: time is not RFC 3339");
    if (!kbd_audit_label_valid(str_of(r, "key_label")) ||
        (nnext != 0 && !kbd_audit_label_valid(str_of(r, "next_key_label"))))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: not an audit key's label");
    return KBR_OK;
}

kbr_err kbd_record_parse(const unsigned char *v, size_t len, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_error_t jerr;
    json_t *r = NULL;

    *out = NULL;
    KBR_ENSURE(len <= KBR_HSM_DATA_MAX,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: too long"));
    r = json_loadb((const char *)v, len, JSON_REJECT_DUPLICATES, &jerr);
    KBR_ENSURE(r != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "audit record: not JSON: %s", jerr.text));
    KBR_GUARD(record_shape(r, msg));
    *out = r;
    r = NULL;
out:
    json_decref(r);
    return err;
}

kbr_err kbd_record_latest(const kbr_hsm_data *items, size_t n, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *one = NULL, *best = NULL;
    json_int_t best_serial = 0;

    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        err = kbd_record_parse(items[i].value, items[i].len, &one, msg);
        /* a record that does not read is never passed over: it may be the latest */
        KBR_ENSURE(err == KBR_OK, kbd_msg_wrap(msg, KBR_ERR_HSM_KEY,
                                               "the HSM's audit record is unreadable (", ")"));
        json_int_t serial = json_integer_value(json_object_get(one, "serial"));
        KBR_ENSURE(serial != best_serial,
                   kbr_fail(msg, KBR_ERR_HSM_KEY,
                            "the HSM holds two audit records with serial %lld", (long long)serial));
        if (serial > best_serial) {
            json_decref(best);
            best = one;
            best_serial = serial;
        } else {
            json_decref(one);
        }
        one = NULL;
    }
    *out = best;
    best = NULL;
out:
    json_decref(one);
    json_decref(best);
    return err;
}

kbr_err kbd_record_read(kbr_hsm_session *s, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_hsm_data *items = NULL;
    size_t n = 0;

    *out = NULL;
    err = kbr_hsm_data_get(s, KBD_RECORD_LABEL, &items, &n);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "cannot read the audit record in the HSM: %s", kbr_err_str(err)));
    KBR_GUARD(kbd_record_latest(items, n, out, msg));
out:
    kbr_hsm_data_free(items, n);
    return err;
}

const char *kbd_cp_signer_label(const json_t *cp)
{
    const char *next = str_of(cp, "next_key_label");

    return next != NULL ? next : str_of(cp, "key_label");
}

static const char *signer_pem(const json_t *cp)
{
    const char *next = str_of(cp, "next_key_pem");

    return next != NULL ? next : str_of(cp, "public_key_pem");
}

/* ---- checking a record against the HSM's own keys ---- */

/* The key the HSM holds under label, which must be the one pem names, an Ed25519 key. */
static kbr_err hsm_key_is(kbr_hsm_session *s, const char *label, const char *pem, EVP_PKEY **out,
                          kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *held = NULL, *named = NULL;

    *out = NULL;
    err = kbr_hsm_public_key(s, label, &held);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err == KBR_ERR_NOT_FOUND ? KBR_ERR_CONFLICT : err,
                        "audit key %s: not in the HSM (%s)", label, kbr_err_str(err)));
    KBR_ENSURE(EVP_PKEY_is_a(held, "ED25519"),
               kbr_fail(msg, KBR_ERR_CONFLICT, "audit key %s: not an Ed25519 key", label));
    KBR_ENSURE(kbr_audit_pem_key(pem, &named) == KBR_OK && EVP_PKEY_eq(held, named) == 1,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "audit key %s: not the public key the checkpoint names", label));
    *out = held;
    held = NULL;
out:
    EVP_PKEY_free(named);
    EVP_PKEY_free(held);
    return err;
}

static kbr_err key_id_is(const char *origin, EVP_PKEY *k, const char *hex, kbr_msg *msg)
{
    uint32_t id = 0;
    char want[9];

    if (kbr_note_key_id(origin, k, &id) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_CONFLICT, "checkpoint: origin is not a key name");
    snprintf(want, sizeof(want), "%08x", id);
    if (strcmp(want, hex) != 0)
        return kbr_fail(msg, KBR_ERR_CONFLICT, "checkpoint: key ID %s is not the key's", hex);
    return KBR_OK;
}

kbr_err kbd_record_holds(kbr_hsm_session *s, const json_t *cp, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *key = NULL, *next = NULL;
    kbr_msg why = {{0}};

    KBR_GUARD(hsm_key_is(s, str_of(cp, "key_label"), str_of(cp, "public_key_pem"), &key, msg));
    KBR_GUARD(key_id_is(str_of(cp, "origin"), key, str_of(cp, "key_id"), msg));
    if (str_of(cp, "next_key_label") != NULL) {
        KBR_GUARD(
            hsm_key_is(s, str_of(cp, "next_key_label"), str_of(cp, "next_key_pem"), &next, msg));
        KBR_GUARD(key_id_is(str_of(cp, "origin"), next, str_of(cp, "next_key_id"), msg));
    }
    err = kbr_audit_checkpoint_signature_holds(cp, key, &why);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, KBR_ERR_CONFLICT, "%s", why.text));
    err = kbr_audit_checkpoint_note_holds(cp, key, next, &why);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, KBR_ERR_CONFLICT, "%s", why.text));
out:
    EVP_PKEY_free(next);
    EVP_PKEY_free(key);
    return err;
}

static kbr_err unhex(const char *hex, unsigned char out[H])
{
    unsigned char *raw = NULL;
    size_t len = 0;
    kbr_err err = kbr_hex_decode(hex, &raw, &len);

    if (err == KBR_OK && len != H)
        err = KBR_ERR_BAD_REQUEST;
    if (err == KBR_OK)
        memcpy(out, raw, H);
    free(raw);
    return err;
}

/* new extends old: the next serial, the key old hands on, and a consistency proof. */
static kbr_err extends(const json_t *old, const json_t *nw, const unsigned char *proof,
                       size_t prooflen, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_int_t m = json_integer_value(json_object_get(old, "size"));
    json_int_t n = json_integer_value(json_object_get(nw, "size"));
    unsigned char first[H], second[H];

    KBR_ENSURE(json_integer_value(json_object_get(nw, "serial")) ==
                   json_integer_value(json_object_get(old, "serial")) + 1,
               kbr_fail(msg, KBR_ERR_CONFLICT, "not the next serial"));
    KBR_ENSURE(strcmp(str_of(nw, "key_label"), kbd_cp_signer_label(old)) == 0 &&
                   strcmp(str_of(nw, "public_key_pem"), signer_pem(old)) == 0,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "signed by %s, not by the key the recorded head hands on (%s)",
                        str_of(nw, "key_label"), kbd_cp_signer_label(old)));
    KBR_ENSURE(n >= m, kbr_fail(msg, KBR_ERR_CONFLICT, "a tree of %lld entries after one of %lld",
                                (long long)n, (long long)m));
    KBR_ENSURE(prooflen % H == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "the consistency proof is not whole hashes"));
    if (m == 0) {
        /* the empty tree is a prefix of every tree */
        KBR_ENSURE(prooflen == 0, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "a proof for no entries"));
        goto out;
    }
    KBR_ENSURE(unhex(str_of(old, "root_hash"), first) == KBR_OK &&
                   unhex(str_of(nw, "root_hash"), second) == KBR_OK,
               KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(kbr_merkle_consistency_verify((uint64_t)m, (uint64_t)n, first, second, proof,
                                             prooflen / H) == KBR_OK,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "the tree of %lld entries is not an extension of the recorded one of "
                        "%lld",
                        (long long)n, (long long)m));
out:
    return err;
}

kbr_err kbd_record_verdict(kbr_hsm_session *s, const kbr_hsm_data *old, size_t nold,
                           const unsigned char *value, size_t len, const unsigned char *evidence,
                           size_t evlen, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *nw = NULL, *latest = NULL;

    KBR_GUARD(kbd_record_parse(value, len, &nw, msg));
    KBR_GUARD(kbd_record_latest(old, nold, &latest, msg));
    if (latest != NULL)
        KBR_GUARD(extends(latest, nw, evidence, evlen, msg));
    else
        KBR_ENSURE(evlen == 0, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "a proof with no record"));
    KBR_GUARD(kbd_record_holds(s, nw, msg));
out:
    json_decref(latest);
    json_decref(nw);
    return err;
}

kbr_err kbd_record_check(void *arg, kbr_hsm_session *s, const kbr_hsm_data *old, size_t nold,
                         const unsigned char *value, size_t len, const unsigned char *evidence,
                         size_t evlen)
{
    kbr_msg msg = {{0}};
    kbr_err err = kbd_record_verdict(s, old, nold, value, len, evidence, evlen, &msg);

    (void)arg;
    if (err != KBR_OK)
        kbd_log(KBD_LOG_WARN, "audit.record_refused", NULL, "HSM process: audit record refused: %s",
                msg.text[0] != '\0' ? msg.text : kbr_err_str(err));
    return err;
}

/* ---- the record and the store ---- */

kbr_err kbd_record_vs_store(kbr_store *st, const json_t *rec, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_int_t size = json_integer_value(json_object_get(rec, "size"));
    int64_t last = 0;
    char tail[65], hex[2 * H + 1];
    unsigned char root[H];

    KBR_GUARD(kbr_store_audit_tail(st, &last, tail));
    KBR_ENSURE(size <= last,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "rollback: the store's audit log has %lld entries, the HSM's last "
                        "checkpoint %lld (signed %s): the store is an older copy or another "
                        "deployment's",
                        (long long)last, (long long)size, str_of(rec, "time")));
    KBR_GUARD(kbr_store_merkle_root(st, size, root));
    kbr_hex_encode_buf(root, H, hex);
    KBR_ENSURE(strcmp(hex, str_of(rec, "root_hash")) == 0,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "rollback: the store's first %lld entries are not those the HSM's last "
                        "checkpoint covers (signed %s): the store was replaced or rewritten",
                        (long long)size, str_of(rec, "time")));
out:
    return err;
}

/* rec is a head the log could record next: signed by the key the latest checkpoint hands on,
 * and at least as large. */
static bool record_extends(const json_t *latest, const json_t *rec)
{
    const char *handed = kbd_cp_signer_label(latest), *signer = str_of(rec, "key_label");

    if (handed == NULL)
        handed = KBD_AUDIT_LABEL; /* an older broker's checkpoint: the first key */
    return signer != NULL && strcmp(handed, signer) == 0 &&
           json_integer_value(json_object_get(rec, "size")) >=
               json_integer_value(json_object_get(latest, "size"));
}

kbr_err kbd_record_in_store(kbr_store *st, const json_t *rec, bool *in)
{
    kbr_err err = KBR_OK;
    json_t *latest = NULL;
    bool found = false;

    *in = false;
    err = kbr_store_checkpoint_latest(st, &latest);
    if (err == KBR_ERR_NOT_FOUND) {
        err = KBR_OK;
        goto out;
    }
    KBR_GUARD(err);
    *in =
        json_equal(json_object_get(latest, "signature_b64"), json_object_get(rec, "signature_b64"));
    if (*in)
        goto out;
    KBR_GUARD(kbr_store_checkpoint_find(st, str_of(rec, "signature_b64"), &found));
    /* an HSM that did not see the heads after its record (another broker's, on a shared
     * store) holds one the log went on past: nothing to record */
    *in = found || !record_extends(latest, rec);
out:
    json_decref(latest);
    return err;
}

kbr_err kbd_record_effects(const json_t *cp, kbr_effects **out)
{
    kbr_err err = KBR_OK;
    json_t *fx = json_deep_copy(cp), *arr = NULL;

    *out = NULL;
    KBR_ENSURE(fx != NULL, KBR_ERR_NOMEM);
    json_object_del(fx, "serial");
    json_object_del(fx, "audit_seq");
    KBR_ENSURE(json_object_set_new(fx, "type", json_string("checkpoint")) == 0, KBR_ERR_NOMEM);
    arr = json_pack("[O]", fx);
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_effects_from_json(arr, out));
out:
    json_decref(arr);
    json_decref(fx);
    return err;
}

kbr_err kbd_record_entry(const json_t *cp, const char *op, kbr_audit_rec **out)
{
    kbr_err err = KBR_OK;
    kbr_audit_rec *rec = NULL;
    static const char *const detail[] = {"size",          "root_hash", "time",
                                         "signature_b64", "key_id",    "next_key_id"};

    *out = NULL;
    KBR_GUARD(kbr_audit_rec_new(KBD_SERVICE_SUB, NULL, op, NULL, &rec));
    /*
     * Copies, not references: the entry goes to the audit writer's thread while the caller
     * frees cp on its own, and jansson's reference counts order no reads before a free.
     */
    for (size_t i = 0; i < sizeof(detail) / sizeof(detail[0]); i++) {
        const json_t *v = json_object_get(cp, detail[i]);

        if (v != NULL && !json_is_null(v))
            KBR_ENSURE(json_object_set_new(rec->detail, detail[i], json_deep_copy(v)) == 0,
                       KBR_ERR_NOMEM);
    }
    KBR_GUARD(kbd_record_effects(cp, &rec->effects));
    *out = rec;
    rec = NULL;
out:
    kbr_audit_rec_free(rec);
    return err;
}

/* ---- signing a head ---- */

/* The label and public key of the key the log hands on now: the record's, else the store's. */
static kbr_err signer_of(kbr_store *st, const json_t *rec, char **label, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *latest = NULL;
    const char *l = NULL;

    *label = NULL;
    if (rec != NULL) {
        l = kbd_cp_signer_label(rec);
    } else {
        err = kbr_store_checkpoint_latest(st, &latest);
        if (err == KBR_ERR_NOT_FOUND)
            err = KBR_OK;
        KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "audit log: checkpoints cannot be read"));
        l = latest != NULL ? kbd_cp_signer_label(latest) : NULL;
        if (l == NULL)
            l = KBD_AUDIT_LABEL;
    }
    *label = strdup(l);
    KBR_ENSURE(*label != NULL, KBR_ERR_NOMEM);
out:
    json_decref(latest);
    return err;
}

/* pem and note key ID of the Ed25519 audit key labelled label. */
static kbr_err audit_key(kbr_hsm_session *s, const char *label, const char *origin, EVP_PKEY **key,
                         char **pem, char id[9], kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    uint32_t n = 0;

    *key = NULL;
    *pem = NULL;
    err = kbr_hsm_public_key(s, label, key);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "audit key %s: %s", label, kbr_err_str(err)));
    KBR_ENSURE(EVP_PKEY_is_a(*key, "ED25519"),
               kbr_fail(msg, KBR_ERR_HSM_KEY, "audit key %s is not an Ed25519 key", label));
    KBR_GUARD(kbr_hsm_public_key_pem(s, label, pem));
    KBR_GUARD(kbr_note_key_id(origin, *key, &n));
    snprintf(id, 9, "%08x", n);
out:
    return err;
}

static kbr_err sign_b64(kbr_hsm_session *s, const char *label, const char *msg_text, char **b64,
                        unsigned char **raw, size_t *rawlen)
{
    kbr_err err = KBR_OK;

    *b64 = NULL;
    KBR_GUARD(kbr_hsm_sign(s, label, KBR_SIG_EDDSA, KBR_HASH_NONE, (const unsigned char *)msg_text,
                           strlen(msg_text), raw, rawlen));
    KBR_GUARD(kbr_b64_encode(*raw, *rawlen, b64));
out:
    return err;
}

/* The note: the checkpoint text, a blank line, the signer's line, then the next key's. */
static kbr_err note_sign(kbr_hsm_session *s, const char *origin, const char *text,
                         const char *label, uint32_t id, const char *next_label, uint32_t next_id,
                         char **out)
{
    kbr_err err = KBR_OK;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    char *b64 = NULL, *line = NULL, *line2 = NULL;

    *out = NULL;
    KBR_GUARD(sign_b64(s, label, text, &b64, &sig, &siglen));
    KBR_GUARD(kbr_note_sig_line(origin, id, sig, siglen, &line));
    if (next_label != NULL) {
        free(sig);
        free(b64);
        sig = NULL;
        b64 = NULL;
        KBR_GUARD(sign_b64(s, next_label, text, &b64, &sig, &siglen));
        KBR_GUARD(kbr_note_sig_line(origin, next_id, sig, siglen, &line2));
    }
    KBR_ENSURE(asprintf(out, "%s\n%s%s", text, line, line2 != NULL ? line2 : "") > 0,
               KBR_ERR_NOMEM);
out:
    free(line2);
    free(line);
    free(b64);
    free(sig);
    return err;
}

typedef struct {
    EVP_PKEY *key, *next;
    char *pem, *next_pem, *head, *text, *sig_b64, *note, *label;
    unsigned char *sig, *proof;
    size_t proof_len;
} head_parts;

static void parts_free(head_parts *p)
{
    EVP_PKEY_free(p->key);
    EVP_PKEY_free(p->next);
    free(p->pem);
    free(p->next_pem);
    free(p->head);
    free(p->text);
    free(p->sig_b64);
    free(p->note);
    free(p->label);
    free(p->sig);
    free(p->proof);
}

kbr_err kbd_head_sign_and_record(kbr_hsm_session *s, kbr_store *st, const kbd_head_spec *spec,
                                 json_t **effect, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    head_parts p = {0};
    int64_t size = 0;
    char tail[65], hex[2 * H + 1], now[KBR_TIME_LEN], id[9], next_id[9] = "";
    unsigned char root[H];
    size_t siglen = 0;
    json_t *cp = NULL, *record = NULL;
    char *value = NULL;
    json_int_t serial = 1;
    uint32_t idn = 0, next_idn = 0;

    *effect = NULL;
    KBR_GUARD(kbr_store_audit_tail(st, &size, tail));
    if (spec->rec != NULL)
        serial = json_integer_value(json_object_get(spec->rec, "serial")) + 1;
    /* the store may not hold less than the record: that is a rollback, never signed over */
    if (spec->rec != NULL && !spec->fork)
        KBR_GUARD(kbd_record_vs_store(st, spec->rec, msg));
    KBR_GUARD(kbr_store_merkle_root(st, size, root));
    kbr_hex_encode_buf(root, H, hex);
    kbr_time_fmt(time(NULL), now);
    KBR_GUARD(signer_of(st, spec->fork ? NULL : spec->rec, &p.label, msg));
    KBR_GUARD(audit_key(s, p.label, spec->origin, &p.key, &p.pem, id, msg));
    cp = json_pack("{s:I,s:s,s:s}", "size", (json_int_t)size, "root_hash", hex, "time", now);
    KBR_ENSURE(cp != NULL, KBR_ERR_NOMEM);
    if (spec->next_label != NULL) {
        KBR_GUARD(audit_key(s, spec->next_label, spec->origin, &p.next, &p.next_pem, next_id, msg));
        json_object_set_new(cp, "next_key_pem", json_string(p.next_pem));
    }
    KBR_GUARD(kbr_audit_head_message(cp, &p.head, msg));
    err = sign_b64(s, p.label, p.head, &p.sig_b64, &p.sig, &siglen);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "audit key %s cannot sign: %s", p.label, kbr_err_str(err)));
    KBR_GUARD(kbr_note_checkpoint_text(spec->origin, (uint64_t)size, root, &p.text));
    KBR_GUARD(kbr_note_key_id(spec->origin, p.key, &idn));
    if (p.next != NULL)
        KBR_GUARD(kbr_note_key_id(spec->origin, p.next, &next_idn));
    err = note_sign(s, spec->origin, p.text, p.label, idn, spec->next_label, next_idn, &p.note);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "the checkpoint note cannot be signed: %s", kbr_err_str(err)));
    KBR_ENSURE(json_object_set_new(cp, "signature_b64", json_string(p.sig_b64)) == 0 &&
                   json_object_set_new(cp, "origin", json_string(spec->origin)) == 0 &&
                   json_object_set_new(cp, "note", json_string(p.note)) == 0 &&
                   json_object_set_new(cp, "key_id", json_string(id)) == 0 &&
                   json_object_set_new(cp, "key_label", json_string(p.label)) == 0 &&
                   json_object_set_new(cp, "public_key_pem", json_string(p.pem)) == 0,
               KBR_ERR_NOMEM);
    if (spec->next_label != NULL)
        KBR_ENSURE(json_object_set_new(cp, "next_key_id", json_string(next_id)) == 0 &&
                       json_object_set_new(cp, "next_key_label", json_string(spec->next_label)) ==
                           0,
                   KBR_ERR_NOMEM);
    /* the record: the head, its serial, and (through the HSM process) the proof it extends */
    record = json_deep_copy(cp);
    KBR_ENSURE(record != NULL && json_object_set_new(record, "serial", json_integer(serial)) == 0,
               KBR_ERR_NOMEM);
    KBR_GUARD(kbr_json_canonical(record, &value));
    if (spec->rec != NULL && !spec->fork &&
        json_integer_value(json_object_get(spec->rec, "size")) > 0) {
        KBR_GUARD(
            kbr_store_merkle_consistency(st, json_integer_value(json_object_get(spec->rec, "size")),
                                         size, &p.proof, &p.proof_len));
        p.proof_len *= H;
    }
    err = kbr_hsm_data_put(s, KBD_RECORD_LABEL, (const unsigned char *)value, strlen(value),
                           p.proof, p.proof_len);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "the HSM did not record the checkpoint: %s", kbr_err_str(err)));
    *effect = cp;
    cp = NULL;
out:
    free(value);
    json_decref(record);
    json_decref(cp);
    parts_free(&p);
    return err;
}
