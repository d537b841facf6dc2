/*
 * stored.c - at start, the stored tail of the log checked from the text
 * that was hashed: each row's hash recomputes and chains to the one before.
 */
#include <stdlib.h>
#include <string.h>

#include "audit_chain.h"

static const char zero_hash[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

typedef struct {
    kbr_chain_cursor at;
    bool named; /* msg already names the bad entry */
    kbr_msg *msg;
} stored_walk;

static kbr_err stored_fail(stored_walk *w, int64_t seq, const char *what)
{
    w->named = true;
    return kbr_fail(w->msg, KBR_ERR_STORE, "audit entry %lld: %s", (long long)seq, what);
}

kbr_err kbr_chain_step(kbr_chain_cursor *c, int64_t seq, const char *entry_json, const char *hash,
                       json_t **entry, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char computed[65];
    json_t *e = NULL;
    const json_t *s, *p;

    if (entry != NULL)
        *entry = NULL;
    KBR_ENSURE(seq == c->next,
               kbr_fail(msg, KBR_ERR_STORE, "audit entry %lld: missing", (long long)c->next));
    KBR_GUARD(kbr_audit_leaf_hash(entry_json, strlen(entry_json), computed));
    KBR_ENSURE(hash != NULL && strlen(hash) == 64 && strcmp(computed, hash) == 0,
               kbr_fail(msg, KBR_ERR_STORE, "audit entry %lld: hash does not match its content",
                        (long long)seq));
    e = json_loads(entry_json, JSON_REJECT_DUPLICATES, NULL);
    s = json_object_get(e, "seq");
    p = json_object_get(e, "prev_hash");
    KBR_ENSURE(json_is_integer(s) && json_integer_value(s) == seq && json_is_string(p) &&
                   strcmp(json_string_value(p), c->prev) == 0,
               kbr_fail(msg, KBR_ERR_STORE,
                        "audit entry %lld: seq or prev_hash does not chain to the entry before it",
                        (long long)seq));
    memcpy(c->prev, hash, sizeof(c->prev));
    c->next++;
    if (entry != NULL) {
        *entry = e;
        e = NULL;
    }
out:
    json_decref(e);
    return err;
}

static kbr_err check_stored_row(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    stored_walk *w = arg;
    kbr_err err = kbr_chain_step(&w->at, seq, entry_json, hash, NULL, w->msg);

    w->named = err != KBR_OK;
    return err;
}

/* Takes the hash of the row just before the checked range, which anchors the chain. */
static kbr_err anchor_row(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    kbr_err err = KBR_OK;
    stored_walk *w = arg;

    (void)entry_json;
    KBR_ENSURE(seq == w->at.next - 1, stored_fail(w, w->at.next - 1, "missing"));
    KBR_ENSURE(strlen(hash) == 64, stored_fail(w, seq, "stored hash is malformed"));
    memcpy(w->at.prev, hash, sizeof(w->at.prev));
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
    w.at.next = after + 1;
    memcpy(w.at.prev, zero_hash, sizeof(w.at.prev));
    if (after > 0) {
        w.at.prev[0] = '\0';
        KBR_GUARD(kbr_store_audit_walk(st, after - 1, 1, anchor_row, &w));
        KBR_ENSURE(w.at.prev[0] != '\0', stored_fail(&w, after, "missing"));
    }
    KBR_GUARD(kbr_store_audit_walk(st, after, last_seq - after, check_stored_row, &w));
    KBR_ENSURE(w.at.next == last_seq + 1, stored_fail(&w, w.at.next, "missing"));
out:
    if (err != KBR_OK && !w.named)
        kbr_fail(msg, err, "audit log: cannot read entries to check: %s", kbr_err_str(err));
    return err;
}
