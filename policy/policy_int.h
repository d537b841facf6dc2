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
} kbr_jwt_claims;

/*
 * Strict parse and verify of a bearer string (see kbr_policy_authenticate):
 * segments, header, ES256 signature against pub (the issuer's P-256 key),
 * then the claims.  KBR_ERR_UNAUTHENTICATED with msg naming the failed check.
 * kbr_jwt_claims_cleanup frees.
 */
KBR_WUR kbr_err kbr_jwt_verify(const char *token, EVP_PKEY *pub, const char *instance_id,
                               time_t now, long leeway, kbr_jwt_claims *out, kbr_msg *msg);
void kbr_jwt_claims_cleanup(kbr_jwt_claims *c);

/* True for an EC key on P-256, the only issuer curve. */
bool kbr_pkey_is_p256(EVP_PKEY *pkey);

/* Does s match [0-9a-f]{32}? */
bool kbr_jti_valid(const char *s);
/* Is s "<kind>:<name>" with a known kind and a non-empty name? */
bool kbr_sub_valid(const char *s);

#endif
