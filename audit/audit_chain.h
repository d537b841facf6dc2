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

#endif
