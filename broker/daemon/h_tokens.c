/*
 * h_tokens.c - POST/GET /v1/tokens, POST /v1/tokens/{jti}/revoke,
 * POST /v1/revocations.
 *
 * Tokens form a tree, as Vault's do: a token can only grant what its issuer
 * holds, never outlives it (its exp is capped at the issuer's), and is
 * revoked with it, transitively, unless it was issued as an orphan, which
 * only an admin without products or keys limits may ask for.  A principal
 * belongs to the products of the tokens issued to it, so an admin issues for
 * a principal only within its own products.
 *
 * Revocations take effect in the policy registry (and so in the verified-
 * token cache) on the event thread before the revoking call is even
 * recorded: if the record then fails, the caller sees 503 and the tokens
 * stay revoked in this process, the safe side of the failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "kbd.h"

typedef struct {
    kbr_scope scope;
    char *sub;
    char *cnf_x5t;
    char *parent_jti, *issued_by;
    bool orphan;
    time_t not_after; /* the issuer's exp, unless an orphan */
    long ttl;
    kbd_issuer signer; /* the current issuer key as the request was parsed */
    char *token;       /* the minted token string; wiped on free */
    json_t *effect;    /* the token.issue effect's JSON form, for the record and the response */
    json_t *row;       /* the registry row the issuance adds once it is durable */
} issue_ctx;

static void issue_ctx_free(void *p)
{
    issue_ctx *c = p;

    if (c == NULL)
        return;
    kbr_scope_cleanup(&c->scope);
    free(c->sub);
    free(c->cnf_x5t);
    free(c->parent_jti);
    free(c->issued_by);
    if (c->token != NULL)
        OPENSSL_clear_free(c->token, strlen(c->token));
    json_decref(c->effect);
    json_decref(c->row);
    free(c);
}

static kbr_err parse_binding(kbd_req *r, issue_ctx *c)
{
    const char *hex = NULL;
    unsigned char *raw = NULL;
    size_t n = 0;
    kbr_err err;

    if (kbd_json_str(r->body, "bind_cert_sha256", false, 64, &hex, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (hex == NULL)
        return KBR_OK;
    if (kbr_hex_decode(hex, &raw, &n) != KBR_OK || n != 32) {
        free(raw);
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "bind_cert_sha256: must be 64 hex characters (SHA-256 of the client "
                        "certificate DER)");
    }
    err = kbr_b64url_encode(raw, n, &c->cnf_x5t);
    free(raw);
    return err;
}

/* "orphan": true only from an admin that no products or keys list limits. */
static kbr_err parse_orphan(kbd_req *r, issue_ctx *c)
{
    const json_t *v = json_object_get(r->body, "orphan");

    if (v == NULL || json_is_null(v))
        return KBR_OK;
    if (!json_is_boolean(v))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "orphan: must be true or false");
    c->orphan = json_is_true(v);
    if (c->orphan && (r->tok->scope.products.present || r->tok->scope.keys.present))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "orphan: only an admin token without products or keys limits issues "
                        "tokens that outlive it");
    return KBR_OK;
}

/* The entry is about the products the new token may reach. */
static kbr_err attribute(kbd_req *r, const kbr_scope *scope)
{
    kbr_err err = KBR_OK;

    for (size_t i = 0; scope->products.present && i < scope->products.n; i++)
        KBR_GUARD(kbr_audit_rec_add_product(r->rec, scope->products.items[i]));
out:
    return err;
}

static kbr_err issue_parse(kbd_req *r, issue_ctx *c)
{
    static const char *const allowed[] = {"sub",      "ops",     "keys",
                                          "products", "batches", "devices",
                                          "max_uses", "ttl",     "bind_cert_sha256",
                                          "orphan",   NULL};
    const char *sub = NULL;
    int64_t ttl = 0;
    kbr_err err;

    if (kbd_json_only(r->body, allowed, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "sub", true, 128, &sub, &r->msg) != KBR_OK ||
        kbd_json_int(r->body, "ttl", true, 1, r->d->cfg.max_token_ttl, &ttl, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (!kbr_policy_sub_valid(sub))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "sub: must be <kind>:<name> with kind ci, factory, ota, security or "
                        "service");
    err = kbr_scope_from_json(r->body, &c->scope, &r->msg);
    if (err != KBR_OK)
        return err;
    err = attribute(r, &c->scope);
    if (err != KBR_OK)
        return err;
    err = kbr_scope_grantable(&r->tok->scope, &c->scope, &r->msg);
    if (err != KBR_OK)
        return err;
    err = parse_orphan(r, c);
    if (err != KBR_OK)
        return err;
    err = kbr_policy_principal_may_issue(r->d->policy, sub, &r->tok->scope, &r->msg);
    if (err != KBR_OK)
        return err;
    err = parse_binding(r, c);
    if (err != KBR_OK)
        return err;
    c->ttl = (long)ttl;
    c->not_after = c->orphan ? 0 : r->tok->expires_at;
    c->signer = r->d->issuer;
    c->sub = strdup(sub);
    c->parent_jti = strdup(r->tok->jti);
    c->issued_by = strdup(r->sub);
    if (c->sub == NULL || c->parent_jti == NULL || c->issued_by == NULL)
        return KBR_ERR_NOMEM;
    /* taken now, so another admin's issuance in flight cannot take the name too */
    return kbr_policy_principal_claim(r->d->policy, sub, &c->scope);
}

static void issue_work(kbd_req *r, kbd_worker *w)
{
    issue_ctx *c = r->ctx;
    kbd_token_spec spec = {.sub = c->sub,
                           .issued_by = c->issued_by,
                           .parent_jti = c->parent_jti,
                           .orphan = c->orphan,
                           .scope = &c->scope,
                           .ttl = c->ttl,
                           .not_after = c->not_after,
                           .cnf_x5t = c->cnf_x5t};
    (void)kbd_token_mint_for(r, w, &c->signer, &spec, true, "issue it again", &c->token, &c->effect,
                             &c->row);
}

/* Event thread, after the record is durable: register, then hand out the token. */
static void issue_finish(kbd_req *r)
{
    issue_ctx *c = r->ctx;

    if (kbr_policy_add_token(r->d->policy, c->row) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the token could not be registered");
        return;
    }
    r->resp = json_pack(
        "{s:s,s:O,s:O,s:O,s:O,s:O}", "token", c->token, "jti", json_object_get(c->effect, "jti"),
        "expires_at", json_object_get(c->effect, "expires_at"), "sub",
        json_object_get(c->effect, "sub"), "parent_jti", json_object_get(c->effect, "parent_jti"),
        "orphan", json_object_get(c->effect, "orphan"));
}

kbr_err kbd_h_token_issue(kbd_req *r)
{
    issue_ctx *c = calloc(1, sizeof(*c));
    kbr_err err;

    if (c == NULL)
        return KBR_ERR_NOMEM;
    c->scope.max_uses = -1;
    r->ctx = c;
    r->ctx_free = issue_ctx_free;
    err = issue_parse(r, c);
    if (err != KBR_OK)
        return err;
    r->work = issue_work;
    r->finish = issue_finish;
    kbd_req_dispatch(r);
    return KBR_OK;
}

typedef struct {
    char *sub, *key;
    bool active;
    kbr_scope scope; /* the reader's, copied for the worker */
} list_ctx;

static void list_ctx_free(void *p)
{
    list_ctx *c = p;

    if (c == NULL)
        return;
    free(c->sub);
    free(c->key);
    kbr_scope_cleanup(&c->scope);
    free(c);
}

/* An admin sees the tokens it could have issued: those within its scope. */
static bool row_within(const kbr_scope *reader, const json_t *row)
{
    kbr_scope s = {.max_uses = -1};
    bool within = kbr_scope_from_json(json_object_get(row, "scope"), &s, NULL) == KBR_OK &&
                  kbr_scope_covers(reader, &s, NULL) == KBR_OK;

    kbr_scope_cleanup(&s);
    return within;
}

static void list_work(kbd_req *r, kbd_worker *w)
{
    list_ctx *c = r->ctx;
    json_t *rows = NULL, *shown = json_array(), *row;
    size_t i;

    if (shown == NULL ||
        kbr_store_token_list(w->store, c->sub, c->key, c->active, time(NULL), &rows) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the token registry could not be read");
        json_decref(shown);
        return;
    }
    json_array_foreach(rows, i, row)
    {
        if (row_within(&c->scope, row))
            json_array_append(shown, row);
    }
    json_decref(rows);
    json_object_set_new(r->rec->detail, "returned",
                        json_integer((json_int_t)json_array_size(shown)));
    r->resp = json_pack("{s:o}", "tokens", shown);
}

kbr_err kbd_h_token_list(kbd_req *r)
{
    list_ctx *c = calloc(1, sizeof(*c));
    const char *sub = kbd_req_query(r, "sub"), *key = kbd_req_query(r, "key");
    const char *active = kbd_req_query(r, "active");

    if (c == NULL)
        return KBR_ERR_NOMEM;
    r->ctx = c;
    r->ctx_free = list_ctx_free;
    /* a principal's name may hold '/' (ci:github/acme/fw), a key's may not */
    if (sub != NULL && !kbr_policy_sub_valid(sub))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "sub: not a principal (<kind>:<name>)");
    if (key != NULL && !kbr_name_valid(key))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "key: not a valid name");
    if (active != NULL && strcmp(active, "true") != 0 && strcmp(active, "false") != 0)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "active: must be true or false");
    c->sub = sub != NULL ? strdup(sub) : NULL;
    c->key = key != NULL ? strdup(key) : NULL;
    c->active = active != NULL && strcmp(active, "true") == 0;
    if (kbd_scope_copy(&r->tok->scope, &c->scope) != KBR_OK)
        return KBR_ERR_NOMEM;
    r->work = list_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}

static kbr_err revoke_effect(kbd_req *r, const json_t *jtis, const char *reason, const char *now)
{
    kbr_effect fx = {.type = KBR_EFFECT_TOKEN_REVOKE,
                     .u.token_revoke = {.at = now, .reason = reason}};
    kbr_err err = kbd_strings_of(jtis, &fx.u.token_revoke.jtis);

    if (err == KBR_OK)
        err = kbd_req_effect(r, &fx);
    free((void *)fx.u.token_revoke.jtis.items);
    return err;
}

static kbr_err read_reason(kbd_req *r, const char *const *allowed, const char **reason)
{
    if (kbd_json_only(r->body, allowed, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "reason", false, 512, reason, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    return KBR_OK;
}

/* The entry of a revocation is about the products of the tokens it revoked. */
static kbr_err attribute_revoked(kbd_req *r, const json_t *jtis)
{
    kbr_err err = KBR_OK;
    size_t i;
    const json_t *v;

    json_array_foreach(jtis, i, v)
    {
        const kbr_token *t = kbr_policy_find(r->d->policy, json_string_value(v));
        if (t != NULL)
            KBR_GUARD(attribute(r, &t->scope));
    }
out:
    return err;
}

kbr_err kbd_h_token_revoke(kbd_req *r)
{
    static const char *const allowed[] = {"reason", NULL};
    const char *reason = NULL;
    kbr_token *target = kbr_policy_find(r->d->policy, r->arg);
    char now[KBR_TIME_LEN];
    json_t *jtis = json_array();
    size_t n = 0;
    kbr_err err = KBR_OK;

    KBR_ENSURE(jtis != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(read_reason(r, allowed, &reason) == KBR_OK, KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(target != NULL,
               kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "no token with jti \"%.64s\"", r->arg));
    KBR_GUARD(attribute(r, &target->scope));
    KBR_ENSURE(kbr_scope_grantable(&r->tok->scope, &target->scope, &r->msg) == KBR_OK,
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "token %s has scope this token could not grant",
                        target->jti));
    KBR_GUARD(kbr_policy_revoke_jti(r->d->policy, target->jti, time(NULL), jtis, &n));
    KBR_GUARD(attribute_revoked(r, jtis));
    kbr_time_fmt(target->revoked_at, now);
    if (json_array_size(jtis) > 0)
        KBR_GUARD(revoke_effect(r, jtis, reason, now));
    json_object_set(r->rec->detail, "revoked", jtis);
    json_object_set_new(r->rec->detail, "reason", reason ? json_string(reason) : json_null());
    /* revoked: the token and every token issued under it, transitively */
    r->resp = json_pack("{s:s,s:s,s:O}", "jti", target->jti, "revoked_at", now, "revoked", jtis);
    kbd_req_audit_and_reply(r);
out:
    json_decref(jtis);
    return err;
}

static void json_ctx_free(void *p)
{
    json_decref(p);
}

kbr_err kbd_h_revocations(kbd_req *r)
{
    static const char *const allowed[] = {"sub", "key", "reason", NULL};
    const char *reason = NULL, *sub = NULL, *key = NULL;
    char now[KBR_TIME_LEN];
    json_t *jtis = json_array();
    size_t n;

    if (jtis == NULL)
        return KBR_ERR_NOMEM;
    r->ctx = jtis;
    r->ctx_free = json_ctx_free;
    if (read_reason(r, allowed, &reason) != KBR_OK ||
        kbd_json_str(r->body, "sub", false, 256, &sub, &r->msg) != KBR_OK ||
        kbd_json_name(r->body, "key", false, &key, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    /* a principal's name may hold '/': the principals of exchanged tokens (ci:github/acme/fw) */
    if (sub != NULL && !kbr_policy_sub_valid(sub))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "sub: must be a principal, <kind>:<name> with kind ci, factory, ota, "
                        "security or service");
    if ((sub == NULL) == (key == NULL))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "give exactly one of sub or key");
    /* Mass revocation reaches tokens of any issuer, so it needs an unrestricted admin. */
    if (r->tok->scope.keys.present || r->tok->scope.products.present ||
        r->tok->scope.batches.present || r->tok->scope.devices.present)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "revocation by %s needs an admin token without key, product, batch or "
                        "device limits",
                        sub != NULL ? "sub" : "key");
    n = sub != NULL ? kbr_policy_revoke_sub(r->d->policy, sub, time(NULL), jtis)
                    : kbr_policy_revoke_key(r->d->policy, key, time(NULL), jtis);
    if (attribute_revoked(r, jtis) != KBR_OK)
        return KBR_ERR_NOMEM;
    kbr_time_fmt(time(NULL), now);
    if (key != NULL)
        r->rec->key = strdup(key);
    if (n > 0 && revoke_effect(r, jtis, reason, now) != KBR_OK)
        return KBR_ERR_NOMEM;
    json_object_set_new(r->rec->detail, sub != NULL ? "by_sub" : "by_key",
                        json_string(sub != NULL ? sub : key));
    json_object_set(r->rec->detail, "revoked", jtis);
    json_object_set_new(r->rec->detail, "reason", reason ? json_string(reason) : json_null());
    r->resp = json_pack("{s:I,s:O}", "revoked", (json_int_t)n, "jtis", jtis);
    kbd_req_audit_and_reply(r);
    return KBR_OK;
}
