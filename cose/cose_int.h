/*
 * cose_int.h - what the cose/ files share: reading a protected header back,
 * which both the writer (to check a signature's length against the header's
 * alg) and the parser need.
 */
#ifndef KBR_COSE_INT_H
#define KBR_COSE_INT_H

#include "kbr_cose.h"

/* The longest CBOR head: the initial byte and a 64-bit argument. */
#define COSE_HEAD_MAX 9

/* True if v is one of the kbr_cose_alg values. */
bool cose_alg_known(int64_t v);

/*
 * Reads prot as kbr_cose_protected() writes it, byte for byte.  *kid points
 * into prot (NULL, with *kidlen 0, when there is none).  KBR_ERR_BAD_REQUEST
 * with msg naming the cause otherwise.
 */
kbr_err cose_protected_read(const unsigned char *prot, size_t protlen, kbr_cose_alg *alg,
                            const unsigned char **kid, size_t *kidlen, kbr_msg *msg);

#endif
