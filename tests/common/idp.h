/*
 * idp.h - an OpenID Connect issuer for tests: RSA and EC keys made here, their JWK Set, ID
 * tokens signed with them (RS256, PS256, ES256, ES384, or a header of the test's own), and
 * a small HTTP server on 127.0.0.1 that serves the JWK Set and counts how often it is asked.
 */
#ifndef KBT_IDP_H
#define KBT_IDP_H

#include <jansson.h>
#include <openssl/evp.h>

/* A new RSA 2048 key, or an EC key on curve ("P-256", "P-384"). */
EVP_PKEY *kbt_rsa_key(void);
EVP_PKEY *kbt_ec_key(const char *curve);
/* The public JWK of key with kid (and alg, unless NULL). New ref. */
json_t *kbt_jwk_of(EVP_PKEY *key, const char *kid, const char *alg);
/* {"keys": keys} as text; keys is not stolen.  Caller frees. */
char *kbt_jwks_text(json_t *keys);
/* header.payload.signature: header and payload as given (JSON text), signed as alg says
 * ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384"; "none": an empty signature).
 * Caller frees. */
char *kbt_jws(const char *header, const char *payload, EVP_PKEY *key, const char *alg);
/* An ID token: header {"alg", "kid", "typ": "JWT"}, the claims as given. Caller frees. */
char *kbt_idtoken(EVP_PKEY *key, const char *alg, const char *kid, const json_t *claims);

/* The JWK Set server. */
typedef struct kbt_srv kbt_srv;
kbt_srv *kbt_srv_start(void);
int kbt_srv_port(const kbt_srv *s);
/* What every request gets from now on: status and body. */
void kbt_srv_set(kbt_srv *s, int status, const char *body);
/* Requests answered so far. */
int kbt_srv_hits(kbt_srv *s);
void kbt_srv_stop(kbt_srv *s);

#endif
