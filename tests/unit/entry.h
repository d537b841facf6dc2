/*
 * entry.h - audit entries for unit tests that write a store directly: the entry the audit
 * writer would make for a record (kbr_audit_entry_new), inserted with its hash.
 */
#ifndef KBT_ENTRY_H
#define KBT_ENTRY_H

#include <stdint.h>

#include <jansson.h>

#include "kbr_store.h"

typedef struct {
    const char *sub, *jti, *op, *key, *outcome, *error_code, *time;
    const json_t *products; /* array or NULL */
    const json_t *effects;  /* the JSON form, or NULL */
    bool key_use;
} kbt_entry;

/* Inserts the entry of e as number seq (prev_hash 64 zeros, time and outcome defaulted);
 * returns what kbr_store_audit_insert returned.  Outside or inside a transaction. */
kbr_err kbt_entry_insert(kbr_store *st, int64_t seq, const kbt_entry *e);

#endif
