/*
 * policy_int.h - what the policy/ sources share and nobody else sees.
 */
#ifndef KBR_POLICY_INT_H
#define KBR_POLICY_INT_H

#include "kbr_policy.h"

/* A bearer string longer than this is refused before any decoding. */
#define KBR_JWT_MAX_LEN 8192

/* The claims of a token whose header and signature passed; what the registry is checked against. */
typedef struct {
    char jti[33];
    char *sub;
    time_t exp, nbf;  /* nbf 0: absent */
    char cnf_x5t[64]; /* "" if the token has no cnf */
    char kid[64];     /* the header's */
} kbr_jwt_claims;

/*
 * The key a header's kid names, if the caller trusts it now: *pub borrowed (a P-256 key),
 * *key the caller's handle for it; otherwise KBR_ERR_UNAUTHENTICATED with msg saying why.
 */
typedef kbr_err (*kbr_jwt_key_fn)(void *arg, const char *kid, time_t now, EVP_PKEY **pub,
                                  void **key, kbr_msg *msg);

/*
 * Strict parse and verify of a bearer string (see kbr_policy_authenticate):
 * segments, header (its kid required), the key key_for picks by that kid,
 * the ES256 signature against that key alone, then the claims.
 * KBR_ERR_UNAUTHENTICATED with msg naming the failed check; *key is key_for's
 * handle of the key that verified.  kbr_jwt_claims_cleanup frees.
 */
KBR_WUR kbr_err kbr_jwt_verify(const char *token, kbr_jwt_key_fn key_for, void *arg,
                               const char *instance_id, time_t now, long leeway,
                               kbr_jwt_claims *out, void **key, kbr_msg *msg);
void kbr_jwt_claims_cleanup(kbr_jwt_claims *c);

/* True for an EC key on P-256, the only issuer curve. */
bool kbr_pkey_is_p256(EVP_PKEY *pkey);

/* Does s match [0-9a-f]{32}? */
bool kbr_jti_valid(const char *s);
/* Is s "<kind>:<name>" with a known kind and a non-empty name? */
bool kbr_sub_valid(const char *s);

#endif
