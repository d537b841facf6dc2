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
#include "routes.h"

typedef kbd_token_issue_req issue_ctx;

void kbd_token_issue_free(void *p)
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

static kbr_err parse_binding(const json_t *body, issue_ctx *c, kbr_msg *msg)
{
    const char *hex = NULL;
    unsigned char *raw = NULL;
    size_t n = 0;
    kbr_err err = KBR_OK;

    KBR_GUARD(kbd_json_str(body, "bind_cert_sha256", false, 64, &hex, msg));
    if (hex == NULL)
        goto out;
    KBR_ENSURE(kbr_hex_decode(hex, &raw, &n) == KBR_OK && n == 32,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "bind_cert_sha256: must be 64 hex characters (SHA-256 of the client "
                        "certificate DER)"));
    KBR_GUARD(kbr_b64url_encode(raw, n, &c->cnf_x5t));
out:
    free(raw);
    return err;
}

static kbr_err parse_orphan(const json_t *body, issue_ctx *c, kbr_msg *msg)
{
    const json_t *v = json_object_get(body, "orphan");

    if (v == NULL || json_is_null(v))
        return KBR_OK;
    if (!json_is_boolean(v))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "orphan: must be true or false");
    c->orphan = json_is_true(v);
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

kbr_err kbd_token_issue_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"sub",      "ops",     "keys",
                                          "products", "batches", "devices",
                                          "max_uses", "ttl",     "bind_cert_sha256",
                                          "orphan",   NULL};
    const char *sub = NULL;
    int64_t ttl = 0;
    issue_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    c->scope.max_uses = -1;
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_str(r->body, "sub", true, 128, &sub, msg));
    KBR_GUARD(kbd_json_int(r->body, "ttl", true, 1, r->d->cfg.max_token_ttl, &ttl, msg));
    KBR_ENSURE(kbr_policy_sub_valid(sub),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "sub: must be <kind>:<name> with kind ci, factory, ota, security or "
                        "service"));
    KBR_GUARD(kbr_scope_from_json(r->body, &c->scope, msg));
    KBR_GUARD(parse_orphan(r->body, c, msg));
    KBR_GUARD(parse_binding(r->body, c, msg));
    c->ttl = (long)ttl;
    KBR_ENSURE((c->sub = strdup(sub)) != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

/*
 * The token grants at most what the issuing token holds; only an admin that no products or
 * keys list limits issues an orphan, one that outlives it; and the principal is the issuer's
 * to name.  Claims the principal's name on success, so that another admin's issuance in
 * flight cannot take it too.
 */
kbr_err kbd_token_issue_authorize(kbd_req *r, void *req)
{
    issue_ctx *c = req;
    kbr_err err = KBR_OK;

    KBR_GUARD(attribute(r, &c->scope));
    KBR_GUARD(kbr_scope_grantable(&r->tok->scope, &c->scope, &r->msg));
    KBR_ENSURE(!c->orphan || (!r->tok->scope.products.present && !r->tok->scope.keys.present),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "orphan: only an admin token without products or keys limits issues "
                        "tokens that outlive it"));
    KBR_GUARD(kbr_policy_principal_may_issue(r->d->policy, c->sub, &r->tok->scope, &r->msg));
    c->not_after = c->orphan ? 0 : r->tok->expires_at;
    c->signer = r->d->issuer;
    c->parent_jti = strdup(r->tok->jti);
    c->issued_by = strdup(r->sub);
    KBR_ENSURE(c->parent_jti != NULL && c->issued_by != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_policy_principal_claim(r->d->policy, c->sub, &c->scope));
out:
    return err;
}

void kbd_token_issue_work(kbd_req *r, kbd_worker *w)
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
void kbd_token_issue_finish(kbd_req *r)
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

void kbd_token_list_free(void *p)
{
    kbd_token_list_req *c = p;

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

void kbd_token_list_work(kbd_req *r, kbd_worker *w)
{
    const kbd_token_list_req *c = r->ctx;
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

kbr_err kbd_token_list_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    const char *sub = kbd_req_query(r, "sub"), *key = kbd_req_query(r, "key");
    const char *active = kbd_req_query(r, "active");
    kbd_token_list_req *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    /* a principal's name may hold '/' (ci:github/acme/fw), a key's may not */
    KBR_ENSURE(sub == NULL || kbr_policy_sub_valid(sub),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sub: not a principal (<kind>:<name>)"));
    KBR_ENSURE(key == NULL || kbr_name_valid(key),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "key: not a valid name"));
    KBR_ENSURE(active == NULL || strcmp(active, "true") == 0 || strcmp(active, "false") == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "active: must be true or false"));
    c->sub = sub != NULL ? strdup(sub) : NULL;
    c->key = key != NULL ? strdup(key) : NULL;
    c->active = active != NULL && strcmp(active, "true") == 0;
    KBR_ENSURE((sub == NULL || c->sub != NULL) && (key == NULL || c->key != NULL), KBR_ERR_NOMEM);
out:
    return err;
}

kbr_err kbd_token_list_authorize(kbd_req *r, void *req)
{
    kbd_token_list_req *c = req;

    /* the worker shows what this scope covers: a copy, the token is the event thread's */
    return kbd_scope_copy(&r->tok->scope, &c->scope);
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

void kbd_revoke_free(void *p)
{
    kbd_revoke_req *c = p;

    if (c == NULL)
        return;
    free(c->reason);
    free(c->sub);
    free(c->key);
    free(c);
}

static kbr_err parse_reason(const json_t *body, const char *const *allowed, kbd_revoke_req *c,
                            kbr_msg *msg)
{
    const char *reason = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(kbd_json_only(body, allowed, msg));
    KBR_GUARD(kbd_json_str(body, "reason", false, 512, &reason, msg));
    KBR_ENSURE(reason == NULL || (c->reason = strdup(reason)) != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

kbr_err kbd_token_revoke_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"reason", NULL};
    kbd_revoke_req *c = calloc(1, sizeof(*c));

    *out = c;
    return c != NULL ? parse_reason(r->body, allowed, c, msg) : KBR_ERR_NOMEM;
}

/* The token named exists, and this token could have granted its scope. */
kbr_err kbd_token_revoke_authorize(kbd_req *r, void *req)
{
    const kbr_token *target = kbr_policy_find(r->d->policy, r->arg);
    kbr_err err = KBR_OK;

    (void)req;
    KBR_ENSURE(target != NULL,
               kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "no token with jti \"%.64s\"", r->arg));
    KBR_GUARD(attribute(r, &target->scope));
    KBR_ENSURE(kbr_scope_grantable(&r->tok->scope, &target->scope, &r->msg) == KBR_OK,
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "token %s has scope this token could not grant",
                        target->jti));
out:
    return err;
}

/* work_inline: the revocation takes effect in the registry before it is recorded. */
void kbd_token_revoke_work(kbd_req *r, kbd_worker *w)
{
    const kbd_revoke_req *c = r->ctx;
    kbr_token *target = kbr_policy_find(r->d->policy, r->arg);
    char now[KBR_TIME_LEN];
    json_t *jtis = json_array();
    size_t n = 0;
    kbr_err err = KBR_OK;

    (void)w;
    KBR_ENSURE(jtis != NULL && target != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_policy_revoke_jti(r->d->policy, target->jti, time(NULL), jtis, &n));
    KBR_GUARD(attribute_revoked(r, jtis));
    kbr_time_fmt(target->revoked_at, now);
    if (json_array_size(jtis) > 0)
        KBR_GUARD(revoke_effect(r, jtis, c->reason, now));
    json_object_set(r->rec->detail, "revoked", jtis);
    json_object_set_new(r->rec->detail, "reason",
                        c->reason != NULL ? json_string(c->reason) : json_null());
    /* revoked: the token and every token issued under it, transitively */
    r->resp = json_pack("{s:s,s:s,s:O}", "jti", target->jti, "revoked_at", now, "revoked", jtis);
out:
    if (err != KBR_OK)
        kbd_req_error(r, err, NULL);
    json_decref(jtis);
}

kbr_err kbd_revocations_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"sub", "key", "reason", NULL};
    const char *sub = NULL, *key = NULL;
    kbd_revoke_req *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(parse_reason(r->body, allowed, c, msg));
    KBR_GUARD(kbd_json_str(r->body, "sub", false, 256, &sub, msg));
    KBR_GUARD(kbd_json_name(r->body, "key", false, &key, msg));
    /* a principal's name may hold '/': the principals of exchanged tokens (ci:github/acme/fw) */
    KBR_ENSURE(sub == NULL || kbr_policy_sub_valid(sub),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "sub: must be a principal, <kind>:<name> with kind ci, factory, ota, "
                        "security or service"));
    KBR_ENSURE((sub == NULL) != (key == NULL),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "give exactly one of sub or key"));
    c->sub = sub != NULL ? strdup(sub) : NULL;
    c->key = key != NULL ? strdup(key) : NULL;
    KBR_ENSURE(c->sub != NULL || c->key != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

/* Mass revocation reaches tokens of any issuer, so it needs an unrestricted admin. */
kbr_err kbd_revocations_authorize(kbd_req *r, void *req)
{
    const kbd_revoke_req *c = req;
    const kbr_scope *s = &r->tok->scope;

    if (s->keys.present || s->products.present || s->batches.present || s->devices.present)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "revocation by %s needs an admin token without key, product, batch or "
                        "device limits",
                        c->sub != NULL ? "sub" : "key");
    return KBR_OK;
}

/* work_inline, as kbd_token_revoke_work. */
void kbd_revocations_work(kbd_req *r, kbd_worker *w)
{
    const kbd_revoke_req *c = r->ctx;
    char now[KBR_TIME_LEN];
    json_t *jtis = json_array();
    size_t n = 0;
    kbr_err err = KBR_OK;

    (void)w;
    KBR_ENSURE(jtis != NULL, KBR_ERR_NOMEM);
    n = c->sub != NULL ? kbr_policy_revoke_sub(r->d->policy, c->sub, time(NULL), jtis)
                       : kbr_policy_revoke_key(r->d->policy, c->key, time(NULL), jtis);
    KBR_ENSURE(attribute_revoked(r, jtis) == KBR_OK, KBR_ERR_NOMEM);
    kbr_time_fmt(time(NULL), now);
    if (c->key != NULL)
        KBR_ENSURE((r->rec->key = strdup(c->key)) != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(n == 0 || revoke_effect(r, jtis, c->reason, now) == KBR_OK, KBR_ERR_NOMEM);
    json_object_set_new(r->rec->detail, c->sub != NULL ? "by_sub" : "by_key",
                        json_string(c->sub != NULL ? c->sub : c->key));
    json_object_set(r->rec->detail, "revoked", jtis);
    json_object_set_new(r->rec->detail, "reason",
                        c->reason != NULL ? json_string(c->reason) : json_null());
    r->resp = json_pack("{s:I,s:O}", "revoked", (json_int_t)n, "jtis", jtis);
out:
    if (err != KBR_OK)
        kbd_req_error(r, err, NULL);
    json_decref(jtis);
}
