/*
 * kbr_policy.h - tokens, scopes, revocation and quotas.
 *
 * Tokens are JWTs (RFC 7519) signed ES256 with an issuer key in the HSM,
 * named in the header by its kid (RFC 7638 thumbprint).  This module never
 * holds a private key: issuing is split into kbr_jwt_signing_input() (here),
 * an HSM signature over its SHA-256 (the caller, on a worker thread) and
 * kbr_jwt_assemble() (here).  It holds the issuer public keys the broker
 * verifies with: the current one, which signs new tokens, and the keys it
 * replaced, each until the last token it signed expires.
 *
 * kbr_policy holds the registry of every token this broker issued (loaded
 * from the store at start, extended as tokens are issued), the cache of
 * verified token strings, revocations and the use counters.  It is not
 * thread-safe by design: it lives on the event thread, which is what makes
 * quota reservation atomic without locks.
 */
#ifndef KBR_POLICY_H
#define KBR_POLICY_H

#include <openssl/evp.h>

#include "kbr_common.h"

typedef enum {
    KBR_OP_SIGN = 1u << 0,
    KBR_OP_PROVISION = 1u << 1,
    KBR_OP_ROTATE = 1u << 2,
    KBR_OP_DEBUG_AUTH = 1u << 3,
    KBR_OP_OTA_REPORT = 1u << 4,
    KBR_OP_READ = 1u << 5,
    KBR_OP_ADMIN = 1u << 6,
} kbr_op;

/* "sign", "provision", "rotate", "debug-auth", "ota-report", "read", "admin". */
KBR_WUR kbr_err kbr_op_from_name(const char *name, kbr_op *out);
const char *kbr_op_name(kbr_op op);

/* A list of names; an entry ending in '*' matches by prefix.  present=false: "any". */
typedef struct {
    bool present;
    char **items;
    size_t n;
} kbr_namelist;

typedef struct {
    unsigned ops; /* kbr_op bits */
    kbr_namelist keys, products, batches, devices;
    int64_t max_uses; /* -1: no cap */
} kbr_scope;

/*
 * Parses the API's scope fields from obj ({"ops", "keys", "products",
 * "batches", "devices", "max_uses"}), as they appear both in the "kbr" claim
 * and in a POST /v1/tokens body.  Other members of obj are ignored (the
 * caller checks unknown fields).  ops must be a non-empty array of known op
 * names; the lists arrays of non-empty strings of at most 128 chars with
 * '*' only as the last char; max_uses a positive integer.
 * KBR_ERR_BAD_REQUEST, msg names the field.  kbr_scope_cleanup frees.
 */
KBR_WUR kbr_err kbr_scope_from_json(const json_t *obj, kbr_scope *out, kbr_msg *msg);
/* {"ops": [...], "keys": [...] (only present lists), "max_uses" (if capped)}. New ref or NULL. */
json_t *kbr_scope_to_json(const kbr_scope *scope);
void kbr_scope_cleanup(kbr_scope *scope);

/* Does list cover name?  Absent list: yes. */
bool kbr_namelist_match(const kbr_namelist *list, const char *name);

/*
 * Is every name `target` may reach also within `holder`?  For each of keys, products,
 * batches and devices: holder places no limit (no list, or a lone "*"), or target has the
 * list and each of its entries is covered by holder's (as for kbr_scope_grantable).  This is
 * the "within scope" rule of a token's reads: an admin sees, and revokes, the tokens it could
 * have issued.  KBR_ERR_FORBIDDEN, msg (may be NULL) names the field and entry.
 */
KBR_WUR kbr_err kbr_scope_covers(const kbr_scope *holder, const kbr_scope *target, kbr_msg *msg);

/* Does list cover every name in names (an array of strings)?  An absent list covers all;
 * an empty array of names is covered by any list. */
bool kbr_namelist_match_all(const kbr_namelist *list, const json_t *names);
/* Does list cover at least one name in names?  An absent list: yes, even for no names. */
bool kbr_namelist_match_any(const kbr_namelist *list, const json_t *names);
/* Does list place no limit (absent, or holding a lone "*")? */
bool kbr_namelist_is_any(const kbr_namelist *list);

/*
 * Can a token with scope `issuer` (which must hold KBR_OP_ADMIN) grant
 * `req`?  Admin holds every op; each of req's lists must be present where
 * the issuer's is and each of its entries must be covered by the issuer's
 * list (a prefix entry "a*" is covered by "a*" or a shorter prefix entry, or
 * when it is exact by a matching entry).  KBR_ERR_FORBIDDEN, msg names the
 * field and entry.
 */
KBR_WUR kbr_err kbr_scope_grantable(const kbr_scope *issuer, const kbr_scope *req, kbr_msg *msg);

/* One token as the registry knows it. */
typedef struct {
    char jti[33];
    char *sub;
    char *issued_by;
    kbr_scope scope;
    time_t issued_at, not_before, expires_at;
    time_t revoked_at; /* 0: live */
    char parent[33];   /* jti of the token that issued it; "" for a root (the bootstrap) */
    bool orphan;       /* issued to stand alone: revoking its parent leaves it */
    char cnf_x5t[64];  /* "" if unbound; base64url SHA-256 of the client cert DER */
    char kid[64];      /* the issuer key that signed it; "" when its record names none */
    int64_t uses;      /* committed key uses */
    int64_t reserved;  /* key uses in flight */
} kbr_token;

typedef struct kbr_policy kbr_policy;

/*
 * instance_id is both iss and aud.  The broker issues and verifies its
 * tokens on one clock, so they end at exp exactly: no leeway.  A new policy
 * has no issuer key: every token is refused until one is added.
 */
KBR_WUR kbr_err kbr_policy_new(const char *instance_id, kbr_policy **out);
void kbr_policy_free(kbr_policy *p);

/*
 * Issuer keys, as the ledger records them (issuer.rotate), in that order.
 * pub is a P-256 public key (up-ref'd by the policy) and kid its RFC 7638
 * thumbprint: KBR_ERR_BAD_REQUEST when it is another key or kid does not
 * match, KBR_ERR_CONFLICT when kid is one already.  current: the key signs
 * the tokens issued from now on, and the current key before it stops doing
 * so.  A key that is not current is trusted while a token it signed (as the
 * registry records: the token's kid) has not expired, and no longer after:
 * it is retired, for good, since only the current key signs new tokens.
 */
KBR_WUR kbr_err kbr_policy_add_issuer(kbr_policy *p, const char *kid, EVP_PKEY *pub, bool current);
/* The current issuer key's kid, or NULL when there is none.  Borrowed. */
const char *kbr_policy_current_kid(const kbr_policy *p);

typedef struct {
    bool current;
    bool trusted;    /* current, or a token it signed is live at the time asked */
    time_t last_exp; /* the latest exp of the tokens it signed; 0 when none */
} kbr_issuer_state;
/* What the registry knows of issuer key kid at now: false when it has no such key. */
bool kbr_policy_issuer_state(const kbr_policy *p, const char *kid, time_t now,
                             kbr_issuer_state *out);
/*
 * The JWK Set (RFC 7517) of the keys trusted at now: {"keys": [current first, then the
 * others, newest first]}, each as kbr_jwk_from_pkey makes it.  New ref (NULL: no memory).
 */
json_t *kbr_policy_jwks(const kbr_policy *p, time_t now);

/*
 * Adds a token row (as kbr_store_token_list shows it, with parent_jti,
 * orphan and kid) to the registry.  Called at start for every stored token
 * in issue order, and after each issuance commits.  A kid must name an
 * issuer key added before (KBR_ERR_BAD_REQUEST otherwise); the key stays
 * trusted until the token expires.  The token's products join its
 * principal's (kbr_policy_principal_claim).
 */
KBR_WUR kbr_err kbr_policy_add_token(kbr_policy *p, const json_t *row);
/* Sets the committed use count (rebuilt from the audit log at start). */
void kbr_policy_set_uses(kbr_policy *p, const char *jti, int64_t uses);
/* Counts n more committed uses of jti (another broker's, on a shared store); its max_uses
 * then holds for this broker's reservations too.  Nothing for a jti it does not know. */
void kbr_policy_add_uses(kbr_policy *p, const char *jti, int64_t n);
/* Marks jti's max_uses spent: the ledger refused a use of it (kbr_audit_rec result
 * KBR_ERR_QUOTA). */
void kbr_policy_uses_spent(kbr_policy *p, const char *jti);

/*
 * Authenticates a bearer token string.  Order: cache lookup by SHA-256 of
 * the string; on a miss, strict parse (three base64url segments, header
 * exactly alg ES256 / typ JWT / kid), the issuer key the kid names (one of
 * the broker's, trusted at now), the signature verified against that key
 * alone, claims (iss, aud, exp required and in the future, nbf, iat, jti of
 * 32 hex chars, sub, kbr), then the registry (the jti must be one this
 * broker issued, with the same sub, binding and kid).  Every call, cached or
 * not, then checks revocation, exp and nbf against now, that the signing key
 * is still trusted, and the cnf binding against client_x5t (NULL when the
 * connection has no client certificate).  KBR_ERR_UNAUTHENTICATED with msg
 * saying which check failed (never echoing the token).  *tok is borrowed
 * from the registry.
 */
KBR_WUR kbr_err kbr_policy_authenticate(kbr_policy *p, const char *bearer, time_t now,
                                        const char *client_x5t, kbr_token **tok, kbr_msg *msg);

/*
 * Is sub a principal "<kind>:<name>": kind one of ci, factory, ota, security,
 * service; name a principal's name (kbr_principal_name_valid: a name, '/' allowed)?  Tokens and
 * registry rows with any other sub are refused.
 */
#define KBR_SUB_NAME_MAX 128
bool kbr_policy_sub_valid(const char *sub);

/* Counters for /metrics and tests.  misses counts every full verify, failed or not. */
typedef struct {
    uint64_t cache_hits, cache_misses;
    size_t cache_entries, tokens;
} kbr_policy_stats;
void kbr_policy_get_stats(const kbr_policy *p, kbr_policy_stats *out);
/*
 * Bounds the verified-token cache (default 100000 entries; 0 turns it off).
 * When full, expired entries go first, then the oldest.
 */
void kbr_policy_set_cache_limit(kbr_policy *p, size_t max);

/* Does the token allow op (admin tokens hold every op)? */
bool kbr_policy_allows_op(const kbr_token *tok, kbr_op op);

/*
 * Revocations take effect at once, cache included, and cascade: every live
 * token issued under a revoked one, transitively, is revoked with it, except
 * orphans.  Each returns the number of live tokens it revoked and appends
 * their jti strings to jtis (a JSON array) when it is not NULL, the named
 * ones first.  by_jti revokes the token even when it is expired (its tree is
 * what matters) and fails with KBR_ERR_NOT_FOUND for an unknown jti; by_key
 * revokes tokens whose keys list covers key, and tokens without a keys list
 * that hold a key-using op; admin tokens are spared.
 */
KBR_WUR kbr_err kbr_policy_revoke_jti(kbr_policy *p, const char *jti, time_t now, json_t *jtis,
                                      size_t *revoked);
size_t kbr_policy_revoke_sub(kbr_policy *p, const char *sub, time_t now, json_t *jtis);
size_t kbr_policy_revoke_key(kbr_policy *p, const char *key, time_t now, json_t *jtis);
/* Revokes the live tokens under the jtis already in `revoked` (an array), appending theirs.
 * For revocations decided elsewhere (--init replacing the bootstrap). */
size_t kbr_policy_revoke_descendants(kbr_policy *p, time_t now, json_t *revoked);

/*
 * Principals belong to the products of the tokens issued to them: the union
 * of their scopes' products lists, or every product once a token without a
 * list was issued to them.  An admin issues for a principal only when the
 * principal's products lie within its own (kbr_scope_covers on products), so
 * one product team cannot mint tokens in another team's principal names.
 * may_issue: KBR_ERR_FORBIDDEN naming the principal when issuer may not.
 * claim: adds granted's products to sub's, before the issuance commits, so
 * two admins racing for a new name cannot both take it.
 */
KBR_WUR kbr_err kbr_policy_principal_may_issue(kbr_policy *p, const char *sub,
                                               const kbr_scope *issuer, kbr_msg *msg);
KBR_WUR kbr_err kbr_policy_principal_claim(kbr_policy *p, const char *sub,
                                           const kbr_scope *granted);
/* The products sub belongs to as a JSON array, or JSON null for every product; NULL when no
 * token was ever issued to sub.  New ref. */
json_t *kbr_policy_principal_products(kbr_policy *p, const char *sub);
/* The registry entry for jti, or NULL. Borrowed. */
kbr_token *kbr_policy_find(kbr_policy *p, const char *jti);

/*
 * Quotas: reserve one key use before the HSM call (KBR_ERR_QUOTA if uses +
 * reserved would exceed max_uses), then finish it: committed=true counts it.
 */
KBR_WUR kbr_err kbr_policy_reserve_use(kbr_token *tok);
void kbr_policy_finish_use(kbr_token *tok, bool committed);

/*
 * JWT issuance.  claims is the payload object (iss, aud, sub, iat, nbf, exp,
 * jti, kbr[, cnf]); kid the issuer key id.  *input is "b64url(header).b64url(payload)".
 * After the HSM signs SHA-256(input) as raw r||s (64 bytes), kbr_jwt_assemble
 * appends it.  Callers free both outputs with free() (the token with
 * kbr_secret semantics: wipe it once sent).
 */
KBR_WUR kbr_err kbr_jwt_signing_input(const json_t *claims, const char *kid, char **input);
KBR_WUR kbr_err kbr_jwt_assemble(const char *input, const unsigned char *sig, size_t siglen,
                                 char **token);

/* RFC 7517 JWK of a P-256 public key with kid = RFC 7638 thumbprint (base64url). New ref. */
KBR_WUR kbr_err kbr_jwk_from_pkey(EVP_PKEY *pub, json_t **jwk);

/*
 * ID tokens of outside OpenID Connect issuers (policy/oidc.c), for POST /v1/tokens/exchange.
 *
 * The algorithms an issuer may sign with are configured: kbr_jwa bits.  RS* is RSASSA-PKCS1
 * v1.5, PS256 RSASSA-PSS (salt = hash length), ES* ECDSA as JWS carries it (r||s).
 */
typedef enum {
    KBR_JWA_RS256 = 1u << 0,
    KBR_JWA_RS384 = 1u << 1,
    KBR_JWA_RS512 = 1u << 2,
    KBR_JWA_PS256 = 1u << 3,
    KBR_JWA_ES256 = 1u << 4,
    KBR_JWA_ES384 = 1u << 5,
} kbr_jwa;
KBR_WUR kbr_err kbr_jwa_from_name(const char *name, kbr_jwa *out);
const char *kbr_jwa_name(kbr_jwa alg);

/*
 * An issuer's JWK Set (RFC 7517): its RSA (2048 bits or more) and EC (P-256, P-384) signing
 * keys, each with a kid.  Keys for encryption, of other types or of unknown "alg" are left
 * out; a kid twice, a key with no kid or a malformed key refuse the whole set
 * (KBR_ERR_BAD_REQUEST, msg naming the key), and so does a set with no usable key.
 */
typedef struct kbr_jwks kbr_jwks;
KBR_WUR kbr_err kbr_jwks_parse(const char *text, size_t len, kbr_jwks **out, kbr_msg *msg);
void kbr_jwks_free(kbr_jwks *s);
size_t kbr_jwks_size(const kbr_jwks *s);
bool kbr_jwks_has(const kbr_jwks *s, const char *kid);

#define KBR_IDTOKEN_MAX_LEN 16384
/* The unverified iss claim and header kid, to pick the issuer and see whether its key set
 * holds the kid.  KBR_ERR_UNAUTHENTICATED when the token is not a JWT with both. */
KBR_WUR kbr_err kbr_idtoken_peek(const char *token, char **iss, char **kid, kbr_msg *msg);

typedef struct {
    const char *issuer;   /* iss, exactly */
    const char *audience; /* one of aud */
    unsigned algs;        /* kbr_jwa bits the header's alg must be among */
    long leeway;          /* seconds the issuer's clock may be ahead of ours (nbf, iat) */
} kbr_idtoken_rules;

typedef struct {
    json_t *claims; /* the verified payload */
    kbr_jwa alg;
    char kid[128];
    time_t exp, iat;
} kbr_idtoken;

/*
 * Verifies an ID token: at most KBR_IDTOKEN_MAX_LEN bytes, three base64url segments; a
 * header of alg, typ ("JWT" if present), kid, x5t and x5t#S256 only (jwk, jku, x5u, x5c,
 * crit and anything else are refused), alg among rules->algs; the key keys holds under the
 * kid (KBR_ERR_NOT_FOUND when it holds none: the caller may fetch the set again), which
 * must fit alg (its type, curve, and its own "alg" if it has one); the signature; then iss,
 * aud, exp (required, in the future: no leeway, since what the exchange issues lives at
 * most as long as the ID token has left), iat (required, at most leeway ahead), nbf (if
 * present, at most leeway ahead).  Every other failure is KBR_ERR_UNAUTHENTICATED with msg
 * naming the check, never a claim's value.  kbr_idtoken_cleanup frees.
 */
KBR_WUR kbr_err kbr_idtoken_verify(const char *token, const kbr_idtoken_rules *rules,
                                   const kbr_jwks *keys, time_t now, kbr_idtoken *out,
                                   kbr_msg *msg);
void kbr_idtoken_cleanup(kbr_idtoken *t);

/* Does value match pattern, where '*' stands for any run of characters, '/' included? */
bool kbr_glob_match(const char *pattern, const char *value);
/* A claim as text for matching: a string (without NUL), true/false, or an integer in
 * decimal.  KBR_ERR_NOT_FOUND when absent, KBR_ERR_BAD_REQUEST for any other type. */
KBR_WUR kbr_err kbr_claim_text(const json_t *claims, const char *name, char **out);
/* tmpl with each {claim} replaced by kbr_claim_text of it; KBR_ERR_UNAUTHENTICATED naming
 * a claim that is missing or not text. */
KBR_WUR kbr_err kbr_principal_from_template(const char *tmpl, const json_t *claims, char **out,
                                            kbr_msg *msg);

#endif
