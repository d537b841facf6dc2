/*
 * registry.c - the issuer keys, the tokens this broker issued, the cache of
 * verified token strings, revocation and use counters.
 *
 * The cache maps SHA-256(token string) to the registry entry and the issuer
 * key that verified it, so a cache hit skips the ECDSA verify but never the
 * registry: revocation, expiry, the signing key's trust and the certificate
 * binding are checked on every call, which is what makes a revocation take
 * effect at once without touching the cache.
 *
 * Issuer keys: the current one signs new tokens; one it replaced stays
 * trusted while a token it signed is unexpired.  Since no key but the
 * current one ever signs again, a replaced key's trust ends at a time fixed
 * by the tokens it signed, and never comes back.
 */
#include <stdlib.h>
#include <string.h>

/* Allocation failure inside uthash leaves the table unchanged; callers see it by the count. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "policy_int.h"

#define CACHE_MAX_DEFAULT 100000

/* An issuer key, kept for the policy's life (cache entries point at it). */
typedef struct issuer_key {
    char kid[64];
    EVP_PKEY *pub;
    json_t *jwk;
    bool current;
    time_t last_exp; /* the latest exp of the tokens the registry says it signed */
    struct issuer_key *next;
} issuer_key;

typedef struct {
    kbr_token tok;    /* first, so a borrowed kbr_token * is the entry */
    unsigned cascade; /* the revocation pass that last took it, to find its children */
    UT_hash_handle hh;
} reg_entry;

/* A principal's products: the union of its tokens' lists; any once one had none. */
typedef struct {
    char *sub;
    bool any;
    char **items;
    size_t n;
    UT_hash_handle hh;
} principal;

typedef struct {
    unsigned char hash[32];
    reg_entry *reg;
    issuer_key *key; /* the key that verified it */
    time_t exp, nbf; /* the token's own claims */
    UT_hash_handle hh;
} cache_entry;

struct kbr_policy {
    char *instance_id;
    issuer_key *issuers; /* in the order added: the ledger's */
    reg_entry *tokens;   /* uthash keeps insertion order: parents before their children */
    principal *principals;
    unsigned cascade_pass;
    cache_entry *cache; /* uthash keeps insertion order: the head is the oldest */
    size_t cache_max;
    time_t last_sweep;
    uint64_t hits, misses;
};

/* What an authentication decides on, from the cache or from a fresh verify. */
typedef struct {
    reg_entry *reg;
    issuer_key *key;
    time_t exp, nbf;
} verified;

/* ---- lifetime ---- */

kbr_err kbr_policy_new(const char *instance_id, kbr_policy **out)
{
    kbr_err err = KBR_OK;
    kbr_policy *p = NULL;

    *out = NULL;
    KBR_ENSURE(instance_id != NULL && instance_id[0] != '\0', KBR_ERR_CONFIG);
    p = calloc(1, sizeof(*p));
    KBR_ENSURE(p != NULL, KBR_ERR_NOMEM);
    p->cache_max = CACHE_MAX_DEFAULT;
    p->instance_id = strdup(instance_id);
    KBR_ENSURE(p->instance_id != NULL, KBR_ERR_NOMEM);
    *out = p;
    p = NULL;
out:
    kbr_policy_free(p);
    return err;
}

/* ---- issuer keys ---- */

static issuer_key *issuer_find(const kbr_policy *p, const char *kid)
{
    for (issuer_key *k = p->issuers; kid != NULL && k != NULL; k = k->next)
        if (strcmp(k->kid, kid) == 0)
            return k;
    return NULL;
}

static bool issuer_trusted(const issuer_key *k, time_t now)
{
    return k->current || k->last_exp > now;
}

static void issuer_free(issuer_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pub);
    json_decref(k->jwk);
    free(k);
}

kbr_err kbr_policy_add_issuer(kbr_policy *p, const char *kid, EVP_PKEY *pub, bool current)
{
    kbr_err err = KBR_OK;
    issuer_key *k = NULL, **tail;
    const char *thumbprint;

    KBR_ENSURE(kid != NULL && kbr_pkey_is_p256(pub), KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(issuer_find(p, kid) == NULL, KBR_ERR_CONFLICT);
    k = calloc(1, sizeof(*k));
    KBR_ENSURE(k != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_jwk_from_pkey(pub, &k->jwk));
    thumbprint = json_string_value(json_object_get(k->jwk, "kid"));
    KBR_ENSURE(thumbprint != NULL && strcmp(thumbprint, kid) == 0 && strlen(kid) < sizeof(k->kid),
               KBR_ERR_BAD_REQUEST);
    memcpy(k->kid, kid, strlen(kid) + 1);
    KBR_ENSURE(EVP_PKEY_up_ref(pub) == 1, KBR_ERR_CRYPTO);
    k->pub = pub;
    k->current = current;
    for (tail = &p->issuers; *tail != NULL; tail = &(*tail)->next)
        if (current)
            (*tail)->current = false;
    *tail = k;
    k = NULL;
out:
    issuer_free(k);
    return err;
}

const char *kbr_policy_current_kid(const kbr_policy *p)
{
    for (const issuer_key *k = p->issuers; k != NULL; k = k->next)
        if (k->current)
            return k->kid;
    return NULL;
}

bool kbr_policy_issuer_state(const kbr_policy *p, const char *kid, time_t now,
                             kbr_issuer_state *out)
{
    const issuer_key *k = issuer_find(p, kid);

    memset(out, 0, sizeof(*out));
    if (k == NULL)
        return false;
    out->current = k->current;
    out->trusted = issuer_trusted(k, now);
    out->last_exp = k->last_exp;
    return true;
}

/* The newest keys first after the current one: the list is in the order they were added. */
static bool jwks_add_older(json_t *arr, const issuer_key *k, time_t now)
{
    if (k == NULL)
        return true;
    if (!jwks_add_older(arr, k->next, now))
        return false;
    return k->current || !issuer_trusted(k, now) || json_array_append(arr, k->jwk) == 0;
}

json_t *kbr_policy_jwks(const kbr_policy *p, time_t now)
{
    json_t *keys = json_array();
    const issuer_key *cur = issuer_find(p, kbr_policy_current_kid(p));

    if (keys == NULL || (cur != NULL && json_array_append(keys, cur->jwk) != 0) ||
        !jwks_add_older(keys, p->issuers, now)) {
        json_decref(keys);
        return NULL;
    }
    return json_pack("{s:o}", "keys", keys);
}

static void cache_del(kbr_policy *p, cache_entry *ce)
{
    HASH_DEL(p->cache, ce);
    free(ce);
}

static void token_cleanup(kbr_token *t)
{
    free(t->sub);
    free(t->issued_by);
    kbr_scope_cleanup(&t->scope);
    t->sub = NULL;
    t->issued_by = NULL;
}

static void principal_free(principal *pr)
{
    if (pr == NULL)
        return;
    for (size_t i = 0; i < pr->n; i++)
        free(pr->items[i]);
    free(pr->items);
    free(pr->sub);
    free(pr);
}

void kbr_policy_free(kbr_policy *p)
{
    cache_entry *ce, *ctmp;
    reg_entry *e, *etmp;
    principal *pr, *prtmp;

    if (p == NULL)
        return;
    HASH_ITER(hh, p->principals, pr, prtmp)
    {
        HASH_DEL(p->principals, pr);
        principal_free(pr);
    }
    for (ce = p->cache; ce != NULL; ce = ctmp) {
        ctmp = ce->hh.next;
        cache_del(p, ce);
    }
    for (e = p->tokens; e != NULL; e = etmp) {
        etmp = e->hh.next;
        HASH_DEL(p->tokens, e);
        token_cleanup(&e->tok);
        free(e);
    }
    while (p->issuers != NULL) {
        issuer_key *next = p->issuers->next;
        issuer_free(p->issuers);
        p->issuers = next;
    }
    free(p->instance_id);
    free(p);
}

void kbr_policy_get_stats(const kbr_policy *p, kbr_policy_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->cache_hits = p->hits;
    out->cache_misses = p->misses;
    out->cache_entries = HASH_COUNT(p->cache);
    out->tokens = HASH_COUNT(p->tokens);
}

void kbr_policy_set_cache_limit(kbr_policy *p, size_t max)
{
    cache_entry *ce, *tmp;

    p->cache_max = max;
    for (ce = p->cache; ce != NULL && HASH_COUNT(p->cache) > max; ce = tmp) {
        tmp = ce->hh.next;
        cache_del(p, ce);
    }
}

/* ---- registry rows ---- */

static reg_entry *reg_find(kbr_policy *p, const char *jti)
{
    reg_entry *e = NULL;

    if (jti != NULL)
        HASH_FIND_STR(p->tokens, jti, e);
    return e;
}

kbr_token *kbr_policy_find(kbr_policy *p, const char *jti)
{
    reg_entry *e = reg_find(p, jti);

    return e != NULL ? &e->tok : NULL;
}

/* A string member that may be null when nullable; *out is a copy, NULL for null. */
static kbr_err row_str(const json_t *row, const char *name, bool nullable, char **out)
{
    const json_t *v = json_object_get(row, name);

    *out = NULL;
    if (nullable && (v == NULL || json_is_null(v)))
        return KBR_OK;
    if (!json_is_string(v))
        return KBR_ERR_BAD_REQUEST;
    *out = strdup(json_string_value(v));
    return *out == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

/* An RFC 3339 member; null or absent gives 0 when nullable. */
static kbr_err row_time(const json_t *row, const char *name, bool nullable, time_t *out)
{
    const json_t *v = json_object_get(row, name);

    *out = 0;
    if (nullable && (v == NULL || json_is_null(v)))
        return KBR_OK;
    if (!json_is_string(v))
        return KBR_ERR_BAD_REQUEST;
    return kbr_time_parse(json_string_value(v), out);
}

/* parent_jti null or absent: a root; orphan absent: false. */
static kbr_err row_parent(const json_t *row, kbr_token *t)
{
    const json_t *parent = json_object_get(row, "parent_jti");
    const json_t *orphan = json_object_get(row, "orphan");

    if (parent != NULL && !json_is_null(parent)) {
        if (!kbr_jti_valid(json_string_value(parent)))
            return KBR_ERR_BAD_REQUEST;
        memcpy(t->parent, json_string_value(parent), sizeof(t->parent));
    }
    if (orphan != NULL && !json_is_null(orphan) && !json_is_boolean(orphan))
        return KBR_ERR_BAD_REQUEST;
    t->orphan = json_is_true(orphan);
    return KBR_OK;
}

static kbr_err row_ids(const json_t *row, kbr_token *t)
{
    kbr_err err = KBR_OK;
    const char *jti = json_string_value(json_object_get(row, "jti"));
    char *cnf = NULL, *kid = NULL;

    KBR_ENSURE(kbr_jti_valid(jti), KBR_ERR_BAD_REQUEST);
    memcpy(t->jti, jti, sizeof(t->jti));
    KBR_GUARD(row_str(row, "sub", false, &t->sub));
    KBR_ENSURE(kbr_policy_sub_valid(t->sub), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(row_str(row, "issued_by", true, &t->issued_by));
    if (t->issued_by == NULL)
        t->issued_by = strdup("");
    KBR_ENSURE(t->issued_by != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(row_str(row, "cnf_x5t", true, &cnf));
    KBR_ENSURE(cnf == NULL || strlen(cnf) < sizeof(t->cnf_x5t), KBR_ERR_BAD_REQUEST);
    if (cnf != NULL)
        memcpy(t->cnf_x5t, cnf, strlen(cnf) + 1);
    KBR_GUARD(row_str(row, "kid", true, &kid));
    KBR_ENSURE(kid == NULL || (kid[0] != '\0' && strlen(kid) < sizeof(t->kid)),
               KBR_ERR_BAD_REQUEST);
    if (kid != NULL)
        memcpy(t->kid, kid, strlen(kid) + 1);
    KBR_GUARD(row_parent(row, t));
out:
    free(cnf);
    free(kid);
    return err;
}

static kbr_err row_times(const json_t *row, kbr_token *t)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(row_time(row, "issued_at", false, &t->issued_at));
    KBR_GUARD(row_time(row, "not_before", true, &t->not_before));
    KBR_GUARD(row_time(row, "expires_at", false, &t->expires_at));
    KBR_GUARD(row_time(row, "revoked_at", true, &t->revoked_at));
out:
    return err;
}

/* *has_uses tells whether the row carried a use count, so an update without one keeps ours. */
static kbr_err row_to_token(const json_t *row, kbr_token *t, bool *has_uses)
{
    kbr_err err = KBR_OK;
    const json_t *uses = json_object_get(row, "uses");

    memset(t, 0, sizeof(*t));
    t->scope.max_uses = -1;
    KBR_ENSURE(json_is_object(row), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(row_ids(row, t));
    KBR_GUARD(row_times(row, t));
    KBR_GUARD(kbr_scope_from_json(json_object_get(row, "scope"), &t->scope, NULL));
    KBR_ENSURE(uses == NULL || json_is_null(uses) ||
                   (json_is_integer(uses) && json_integer_value(uses) >= 0),
               KBR_ERR_BAD_REQUEST);
    *has_uses = json_is_integer(uses);
    t->uses = *has_uses ? json_integer_value(uses) : 0;
out:
    if (err != KBR_OK)
        token_cleanup(t);
    return err;
}

/* Cached verifications of an entry whose record changes are dropped, so none outlives it. */
static void cache_purge_entry(kbr_policy *p, const reg_entry *e)
{
    cache_entry *ce, *tmp;

    for (ce = p->cache; ce != NULL; ce = tmp) {
        tmp = ce->hh.next;
        if (ce->reg == e)
            cache_del(p, ce);
    }
}

static void reg_update(kbr_policy *p, reg_entry *e, kbr_token *t, bool has_uses)
{
    int64_t reserved = e->tok.reserved, uses = e->tok.uses;

    cache_purge_entry(p, e);
    token_cleanup(&e->tok);
    e->tok = *t;
    e->tok.reserved = reserved;
    if (!has_uses)
        e->tok.uses = uses;
    memset(t, 0, sizeof(*t));
}

/* On success the entry owns t's fields and t is emptied; on failure t keeps them. */
static kbr_err reg_insert(kbr_policy *p, kbr_token *t)
{
    reg_entry *e = calloc(1, sizeof(*e));
    unsigned before = HASH_COUNT(p->tokens);

    if (e == NULL)
        return KBR_ERR_NOMEM;
    e->tok = *t;
    HASH_ADD_STR(p->tokens, tok.jti, e);
    if (HASH_COUNT(p->tokens) != before + 1) {
        free(e);
        return KBR_ERR_NOMEM;
    }
    memset(t, 0, sizeof(*t));
    return KBR_OK;
}

kbr_err kbr_policy_add_token(kbr_policy *p, const json_t *row)
{
    kbr_err err = KBR_OK;
    kbr_token t = {.sub = NULL};
    bool has_uses = false;
    reg_entry *e;
    issuer_key *signer;

    KBR_GUARD(row_to_token(row, &t, &has_uses));
    signer = t.kid[0] != '\0' ? issuer_find(p, t.kid) : NULL;
    KBR_ENSURE(t.kid[0] == '\0' || signer != NULL, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(kbr_policy_principal_claim(p, t.sub, &t.scope));
    /* the key stays trusted as long as a token it signed may be used */
    if (signer != NULL && t.expires_at > signer->last_exp)
        signer->last_exp = t.expires_at;
    e = reg_find(p, t.jti);
    if (e != NULL)
        reg_update(p, e, &t, has_uses);
    else
        KBR_GUARD(reg_insert(p, &t));
out:
    token_cleanup(&t);
    return err;
}

void kbr_policy_set_uses(kbr_policy *p, const char *jti, int64_t uses)
{
    reg_entry *e = reg_find(p, jti);

    if (e != NULL)
        e->tok.uses = uses >= 0 ? uses : 0;
}

void kbr_policy_add_uses(kbr_policy *p, const char *jti, int64_t n)
{
    reg_entry *e = reg_find(p, jti);

    if (e != NULL && n > 0)
        e->tok.uses += n;
}

void kbr_policy_uses_spent(kbr_policy *p, const char *jti)
{
    reg_entry *e = reg_find(p, jti);

    if (e != NULL && e->tok.scope.max_uses >= 0 && e->tok.uses < e->tok.scope.max_uses)
        e->tok.uses = e->tok.scope.max_uses;
}

/* ---- the cache ---- */

static cache_entry *cache_find(kbr_policy *p, const unsigned char hash[32])
{
    cache_entry *ce = NULL;

    HASH_FIND(hh, p->cache, hash, 32, ce);
    return ce;
}

/* Expired entries go first (at most one sweep a second, as it walks the table), then the oldest. */
static void cache_make_room(kbr_policy *p, time_t now)
{
    cache_entry *ce, *tmp;

    if (now != p->last_sweep) {
        p->last_sweep = now;
        for (ce = p->cache; ce != NULL; ce = tmp) {
            tmp = ce->hh.next;
            if (ce->exp <= now)
                cache_del(p, ce);
        }
    }
    while (p->cache != NULL && HASH_COUNT(p->cache) >= p->cache_max) {
        ce = p->cache;
        cache_del(p, ce);
    }
}

/* Best effort: a verification that cannot be cached is still a verification. */
static void cache_insert(kbr_policy *p, const unsigned char hash[32], const verified *v, time_t now)
{
    cache_entry *ce = NULL;

    if (p->cache_max == 0)
        return;
    if (HASH_COUNT(p->cache) >= p->cache_max)
        cache_make_room(p, now);
    ce = calloc(1, sizeof(*ce));
    if (ce == NULL)
        return;
    memcpy(ce->hash, hash, sizeof(ce->hash));
    ce->reg = v->reg;
    ce->key = v->key;
    ce->exp = v->exp;
    ce->nbf = v->nbf;
    HASH_ADD(hh, p->cache, hash, sizeof(ce->hash), ce);
    if (cache_find(p, hash) != ce)
        free(ce);
}

/* ---- authentication ---- */

/* The signed claims must name a token of ours, as we recorded it, signed by the key we
 * recorded: a token of one key re-signed under another broker key is not that token. */
static kbr_err match_registry(kbr_policy *p, const kbr_jwt_claims *c, reg_entry **out, kbr_msg *msg)
{
    reg_entry *e = reg_find(p, c->jti);

    *out = NULL;
    if (e == NULL || strcmp(e->tok.sub, c->sub) != 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token not issued by this broker");
    if (strcmp(e->tok.cnf_x5t, c->cnf_x5t) != 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token binding differs from its record");
    if (strcmp(e->tok.kid, c->kid) != 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token kid differs from its record");
    *out = e;
    return KBR_OK;
}

/* kbr_jwt_key_fn over the issuer keys: by exact kid, and only while trusted. */
static kbr_err key_for_kid(void *arg, const char *kid, time_t now, EVP_PKEY **pub, void **key,
                           kbr_msg *msg)
{
    issuer_key *k = issuer_find(arg, kid);

    *pub = NULL;
    *key = NULL;
    if (k == NULL)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED,
                        "token kid is not one of this broker's issuer keys");
    if (!issuer_trusted(k, now))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token kid names a retired issuer key");
    *pub = k->pub;
    *key = k;
    return KBR_OK;
}

static kbr_err verify_fresh(kbr_policy *p, const char *bearer, time_t now, verified *v,
                            kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_jwt_claims c = {.sub = NULL};
    void *key = NULL;

    KBR_GUARD(kbr_jwt_verify(bearer, key_for_kid, p, p->instance_id, now, 0, &c, &key, msg));
    KBR_GUARD(match_registry(p, &c, &v->reg, msg));
    v->key = key;
    v->exp = c.exp;
    v->nbf = c.nbf;
out:
    kbr_jwt_claims_cleanup(&c);
    return err;
}

/*
 * Checked on every call: the record may have changed since the string was verified.  The
 * same rule as token_live: a token is live while now < exp, on the broker's own clock.
 */
static kbr_err check_live(const verified *v, time_t now, const char *client_x5t, kbr_msg *msg)
{
    const kbr_token *t = &v->reg->tok;
    time_t exp = v->exp < t->expires_at ? v->exp : t->expires_at;
    time_t nbf = v->nbf > t->not_before ? v->nbf : t->not_before;

    if (t->revoked_at != 0)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token revoked");
    if (exp <= now)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token expired");
    if (nbf > now)
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token not yet valid");
    if (!issuer_trusted(v->key, now))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token kid names a retired issuer key");
    if (t->cnf_x5t[0] != '\0' &&
        (client_x5t == NULL ||
         !kbr_secret_equal(t->cnf_x5t, strlen(t->cnf_x5t), client_x5t, strlen(client_x5t))))
        return kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token bound to a client certificate");
    return KBR_OK;
}

/* A cache hit, or a full verify whose result is cached. */
static kbr_err lookup_or_verify(kbr_policy *p, const char *bearer, time_t now, verified *v,
                                kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char hash[32];
    cache_entry *ce;

    kbr_sha256(bearer, strlen(bearer), hash);
    ce = cache_find(p, hash);
    if (ce != NULL && ce->exp <= now) {
        cache_del(p, ce);
        ce = NULL;
    }
    if (ce != NULL) {
        p->hits++;
        *v = (verified){ce->reg, ce->key, ce->exp, ce->nbf};
        goto out;
    }
    p->misses++;
    KBR_GUARD(verify_fresh(p, bearer, now, v, msg));
    cache_insert(p, hash, v, now);
out:
    return err;
}

kbr_err kbr_policy_authenticate(kbr_policy *p, const char *bearer, time_t now,
                                const char *client_x5t, kbr_token **tok, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    verified v = {0};

    *tok = NULL;
    KBR_ENSURE(bearer != NULL && bearer[0] != '\0',
               kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "missing bearer token"));
    KBR_ENSURE(
        strnlen(bearer, KBR_JWT_MAX_LEN + 1) <= KBR_JWT_MAX_LEN,
        kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "token longer than %d bytes", KBR_JWT_MAX_LEN));
    KBR_GUARD(lookup_or_verify(p, bearer, now, &v, msg));
    KBR_GUARD(check_live(&v, now, client_x5t, msg));
    *tok = &v.reg->tok;
out:
    return err;
}

/* ---- revocation ---- */

static bool token_live(const kbr_token *t, time_t now)
{
    return t->revoked_at == 0 && t->expires_at > now;
}

/* revoked_at 0 means live, so a revocation is never recorded at time 0. */
static void revoke(reg_entry *e, time_t now, unsigned pass, json_t *jtis)
{
    e->cascade = pass;
    if (e->tok.revoked_at != 0)
        return;
    e->tok.revoked_at = now != 0 ? now : 1;
    if (jtis != NULL)
        json_array_append_new(jtis, json_string(e->tok.jti));
}

/*
 * One walk in issue order finds a whole subtree: a child is always
 * registered after its parent, so its parent was taken (or not) before the
 * walk reaches it.  Tokens already revoked are walked through too, so a tree
 * whose middle was revoked earlier still loses its leaves.  Only live tokens are revoked
 * and counted; expired ones are walked through.
 */
static size_t cascade(kbr_policy *p, unsigned pass, time_t now, json_t *jtis)
{
    size_t n = 0;

    for (reg_entry *e = p->tokens; e != NULL; e = e->hh.next) {
        reg_entry *parent;
        if (e->cascade == pass || e->tok.orphan || e->tok.parent[0] == '\0')
            continue;
        parent = reg_find(p, e->tok.parent);
        if (parent == NULL || parent->cascade != pass)
            continue;
        e->cascade = pass;
        if (token_live(&e->tok, now)) {
            revoke(e, now, pass, jtis);
            n++;
        }
    }
    return n;
}

static unsigned next_pass(kbr_policy *p)
{
    /* 0 is what a new entry holds */
    if (++p->cascade_pass == 0)
        p->cascade_pass = 1;
    return p->cascade_pass;
}

kbr_err kbr_policy_revoke_jti(kbr_policy *p, const char *jti, time_t now, json_t *jtis,
                              size_t *revoked)
{
    reg_entry *e = reg_find(p, jti);
    unsigned pass;

    *revoked = 0;
    if (e == NULL)
        return KBR_ERR_NOT_FOUND;
    pass = next_pass(p);
    if (e->tok.revoked_at == 0)
        (*revoked)++;
    revoke(e, now, pass, jtis);
    *revoked += cascade(p, pass, now, jtis);
    return KBR_OK;
}

size_t kbr_policy_revoke_descendants(kbr_policy *p, time_t now, json_t *revoked)
{
    unsigned pass = next_pass(p);
    size_t i;
    json_t *v;

    json_array_foreach(revoked, i, v)
    {
        reg_entry *e = reg_find(p, json_string_value(v));
        if (e != NULL)
            revoke(e, now, pass, NULL);
    }
    return cascade(p, pass, now, revoked);
}

typedef bool (*token_pred)(const kbr_token *t, const char *arg);

static bool sub_is(const kbr_token *t, const char *sub)
{
    return strcmp(t->sub, sub) == 0;
}

/*
 * A token reaches a key when its keys list covers it, or when it has no
 * keys list and holds an op that uses keys.  Admin tokens are spared: a key
 * revocation is incident response, and it must not lock out the security
 * team that is doing it (they retire the key instead).
 */
static bool reaches_key(const kbr_token *t, const char *key)
{
    const unsigned key_ops = KBR_OP_SIGN | KBR_OP_PROVISION | KBR_OP_ROTATE | KBR_OP_DEBUG_AUTH;

    if (t->scope.ops & KBR_OP_ADMIN)
        return false;
    if (!t->scope.keys.present)
        return (t->scope.ops & key_ops) != 0;
    return kbr_namelist_match(&t->scope.keys, key);
}

static size_t revoke_where(kbr_policy *p, token_pred pred, const char *arg, time_t now,
                           json_t *jtis)
{
    unsigned pass = next_pass(p);
    size_t n = 0;

    for (reg_entry *e = p->tokens; arg != NULL && e != NULL; e = e->hh.next) {
        if (token_live(&e->tok, now) && pred(&e->tok, arg)) {
            revoke(e, now, pass, jtis);
            n++;
        }
    }
    return n + (n > 0 ? cascade(p, pass, now, jtis) : 0);
}

size_t kbr_policy_revoke_sub(kbr_policy *p, const char *sub, time_t now, json_t *jtis)
{
    return revoke_where(p, sub_is, sub, now, jtis);
}

size_t kbr_policy_revoke_key(kbr_policy *p, const char *key, time_t now, json_t *jtis)
{
    return revoke_where(p, reaches_key, key, now, jtis);
}

/* ---- principals ---- */

static principal *principal_find(kbr_policy *p, const char *sub)
{
    principal *pr = NULL;

    if (sub != NULL)
        HASH_FIND_STR(p->principals, sub, pr);
    return pr;
}

static bool principal_has(const principal *pr, const char *entry)
{
    for (size_t i = 0; i < pr->n; i++)
        if (strcmp(pr->items[i], entry) == 0)
            return true;
    return false;
}

static kbr_err principal_add(principal *pr, const char *entry)
{
    char **items;

    if (principal_has(pr, entry))
        return KBR_OK;
    items = realloc(pr->items, (pr->n + 1) * sizeof(*items));
    if (items == NULL)
        return KBR_ERR_NOMEM;
    pr->items = items;
    pr->items[pr->n] = strdup(entry);
    if (pr->items[pr->n] == NULL)
        return KBR_ERR_NOMEM;
    pr->n++;
    return KBR_OK;
}

static kbr_err principal_new(kbr_policy *p, const char *sub, principal **out)
{
    principal *pr = calloc(1, sizeof(*pr));
    unsigned before = HASH_COUNT(p->principals);

    *out = NULL;
    if (pr == NULL || (pr->sub = strdup(sub)) == NULL) {
        principal_free(pr);
        return KBR_ERR_NOMEM;
    }
    HASH_ADD_KEYPTR(hh, p->principals, pr->sub, strlen(pr->sub), pr);
    if (HASH_COUNT(p->principals) != before + 1) {
        principal_free(pr);
        return KBR_ERR_NOMEM;
    }
    *out = pr;
    return KBR_OK;
}

kbr_err kbr_policy_principal_claim(kbr_policy *p, const char *sub, const kbr_scope *granted)
{
    kbr_err err = KBR_OK;
    principal *pr = principal_find(p, sub);

    if (pr == NULL)
        KBR_GUARD(principal_new(p, sub, &pr));
    if (kbr_namelist_is_any(&granted->products))
        pr->any = true;
    for (size_t i = 0; !pr->any && i < granted->products.n; i++)
        KBR_GUARD(principal_add(pr, granted->products.items[i]));
out:
    return err;
}

kbr_err kbr_policy_principal_may_issue(kbr_policy *p, const char *sub, const kbr_scope *issuer,
                                       kbr_msg *msg)
{
    principal *pr = principal_find(p, sub);
    kbr_namelist owned;

    if (pr == NULL || kbr_namelist_is_any(&issuer->products))
        return KBR_OK;
    if (pr->any)
        return kbr_fail(msg, KBR_ERR_FORBIDDEN,
                        "sub: principal %s belongs to every product, beyond this token's products",
                        sub);
    owned = (kbr_namelist){.present = true, .items = pr->items, .n = pr->n};
    for (size_t i = 0; i < owned.n; i++) {
        kbr_scope one = {.products = {.present = true, .items = &owned.items[i], .n = 1}};
        kbr_scope mine = {.products = issuer->products};
        if (kbr_scope_covers(&mine, &one, NULL) != KBR_OK)
            return kbr_fail(msg, KBR_ERR_FORBIDDEN,
                            "sub: principal %s belongs to product \"%s\", outside this token's "
                            "products",
                            sub, owned.items[i]);
    }
    return KBR_OK;
}

json_t *kbr_policy_principal_products(kbr_policy *p, const char *sub)
{
    principal *pr = principal_find(p, sub);
    json_t *arr;

    if (pr == NULL)
        return NULL;
    if (pr->any)
        return json_null();
    arr = json_array();
    for (size_t i = 0; arr != NULL && i < pr->n; i++)
        json_array_append_new(arr, json_string(pr->items[i]));
    return arr;
}

/* ---- quotas ---- */

kbr_err kbr_policy_reserve_use(kbr_token *tok)
{
    if (tok == NULL)
        return KBR_ERR_INTERNAL;
    if (tok->scope.max_uses >= 0 && tok->uses + tok->reserved >= tok->scope.max_uses)
        return KBR_ERR_QUOTA;
    tok->reserved++;
    return KBR_OK;
}

void kbr_policy_finish_use(kbr_token *tok, bool committed)
{
    if (tok == NULL)
        return;
    if (tok->reserved > 0)
        tok->reserved--;
    if (committed)
        tok->uses++;
}
