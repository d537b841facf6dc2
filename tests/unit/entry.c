/* entry.c - see entry.h. */
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "kbr_audit.h"

static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";

kbr_err kbt_entry_insert(kbr_store *st, int64_t seq, const kbt_entry *e)
{
    kbr_err err = KBR_OK;
    kbr_audit_rec *rec = NULL;
    json_t *entry = NULL;
    char *text = NULL, hash[65];

    KBR_GUARD(kbr_audit_rec_new(e->sub, e->jti, e->op, e->key, &rec));
    KBR_GUARD(
        kbr_audit_rec_set_outcome(rec, e->outcome != NULL ? e->outcome : "ok", e->error_code));
    rec->key_use = e->key_use;
    if (e->products != NULL)
        rec->products = json_deep_copy(e->products);
    KBR_GUARD(kbr_audit_entry_new(rec, seq, e->time != NULL ? e->time : "2026-01-01T00:00:00Z",
                                  zeros, &entry));
    if (e->effects != NULL)
        KBR_ENSURE(json_object_set(entry, "effects", (json_t *)e->effects) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_json_canonical(entry, &text));
    KBR_GUARD(kbr_audit_leaf_hash(text, strlen(text), hash));
    err = kbr_store_audit_insert(st, &(kbr_store_audit_row){seq, text, hash});
out:
    free(text);
    json_decref(entry);
    kbr_audit_rec_free(rec);
    return err;
}
