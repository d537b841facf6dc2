/* audit_chain.h - private to audit/: the checks the writer makes on the stored log. */
#ifndef KBR_AUDIT_CHAIN_H
#define KBR_AUDIT_CHAIN_H

#include "kbr_audit.h"
#include "kbr_store.h"

/*
 * Recomputes the stored entries (last_seq - count, last_seq] from their
 * stored text and checks seq and prev_hash chaining, anchored on the hash of
 * the entry before them.  KBR_ERR_STORE with msg naming the first bad seq.
 */
KBR_WUR kbr_err kbr_audit_check_stored(kbr_store *st, int64_t last_seq, int64_t count,
                                       kbr_msg *msg);

/* A walk along the stored chain: the seq the next row must have, the hash it must chain to. */
typedef struct {
    int64_t next;
    char prev[65];
} kbr_chain_cursor;

/*
 * The stored row (seq, entry_json, hash) is the cursor's next: its hash recomputes from its
 * text, its seq and prev_hash chain to the row before.  Advances the cursor; *entry (when
 * entry is not NULL) receives the parsed entry (new ref).  KBR_ERR_STORE with msg naming the
 * entry and what is wrong with it.
 */
KBR_WUR kbr_err kbr_chain_step(kbr_chain_cursor *c, int64_t seq, const char *entry_json,
                               const char *hash, json_t **entry, kbr_msg *msg);

#endif
