/* audit_chain.h - private to audit/: the hash chain as the writer uses it. */
#ifndef KBR_AUDIT_CHAIN_H
#define KBR_AUDIT_CHAIN_H

#include "kbr_audit.h"
#include "kbr_store.h"

/* hex(SHA-256(0x00 || canonical[0..len))): an entry's hash from its stored text. */
KBR_WUR kbr_err kbr_audit_leaf_hash(const char *canonical, size_t len, char out[65]);

/*
 * Recomputes the stored entries (last_seq - count, last_seq] from their
 * stored text and checks seq and prev_hash chaining, anchored on the hash of
 * the entry before them.  KBR_ERR_STORE with msg naming the first bad seq.
 */
KBR_WUR kbr_err kbr_audit_check_stored(kbr_store *st, int64_t last_seq, int64_t count,
                                       kbr_msg *msg);

/* The audit tree's nodes completed by appending entry seq with hash_hex (64 hex digits),
 * stored inside the caller's transaction. */
KBR_WUR kbr_err kbr_merkle_store_append(kbr_store *st, int64_t seq, const char *hash_hex);

#endif
