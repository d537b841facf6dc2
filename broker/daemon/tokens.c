/*
 * tokens.c - minting a token: claims, an ES256 signature made by the current
 * issuer key inside the HSM (its kid in the header), and the ledger effect
 * that records it with that kid.  Used by POST /v1/tokens (on a worker) and
 * by --init for the bootstrap token.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "kbd.h"

/* A token never outlives its parent's authority: exp is capped at the parent's. */
static time_t expiry(const kbd_token_spec *spec, time_t now)
{
    time_t exp = now + spec->ttl;

    return spec->not_after != 0 && spec->not_after < exp ? spec->not_after : exp;
}

static json_t *claims_new(const char *instance_id, const kbd_token_spec *spec, const char *jti,
                          time_t now)
{
    json_t *scope = kbr_scope_to_json(spec->scope);
    json_t *c;

    if (scope == NULL)
        return NULL;
    c = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:o}", "iss", instance_id, "aud", instance_id,
                  "sub", spec->sub, "iat", (json_int_t)now, "nbf", (json_int_t)now, "exp",
                  (json_int_t)expiry(spec, now), "jti", jti, "kbr", scope);
    if (c != NULL && spec->cnf_x5t != NULL)
        json_object_set_new(c, "cnf", json_pack("{s:s}", "x5t#S256", spec->cnf_x5t));
    return c;
}

/* The token.issue effect that records the token, as a list of one. */
static kbr_err effect_new(const kbd_token_spec *spec, const char *kid, const char *jti, time_t now,
                          kbr_effects **out)
{
    kbr_err err = KBR_OK;
    char iat[KBR_TIME_LEN], exp[KBR_TIME_LEN], *scope_text = NULL;
    json_t *scope = kbr_scope_to_json(spec->scope);
    kbr_effects *fx = NULL;

    *out = NULL;
    KBR_ENSURE(scope != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_json_canonical(scope, &scope_text));
    kbr_time_fmt(now, iat);
    kbr_time_fmt(expiry(spec, now), exp);
    KBR_GUARD(kbr_effects_new(&fx));
    KBR_GUARD(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_TOKEN_ISSUE,
                                                .u.token_issue = {.jti = jti,
                                                                  .sub = spec->sub,
                                                                  .issued_by = spec->issued_by,
                                                                  .issued_at = iat,
                                                                  .not_before = iat,
                                                                  .expires_at = exp,
                                                                  .cnf_x5t = spec->cnf_x5t,
                                                                  .parent_jti = spec->parent_jti,
                                                                  .scope_json = scope_text,
                                                                  .orphan = spec->orphan,
                                                                  .kid = kid}}));
    *out = fx;
    fx = NULL;
out:
    kbr_effects_free(fx);
    free(scope_text);
    json_decref(scope);
    return err;
}

kbr_err kbd_token_mint(kbr_hsm_session *hsm, const char *instance_id, const kbd_issuer *issuer,
                       const kbd_token_spec *spec, char **token, kbr_effects **effect, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    time_t now = time(NULL);
    char jti[33];
    json_t *claims = NULL;
    char *input = NULL;
    unsigned char md[32];
    unsigned char *sig = NULL;
    size_t siglen = 0;

    *token = NULL;
    *effect = NULL;
    KBR_GUARD(kbr_random_hex(16, jti));
    claims = claims_new(instance_id, spec, jti, now);
    KBR_ENSURE(claims != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(issuer->kid[0] != '\0' && issuer->label[0] != '\0', KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_jwt_signing_input(claims, issuer->kid, &input));
    kbr_sha256(input, strlen(input), md);
    err = kbr_hsm_sign(hsm, issuer->label, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, md, sizeof(md), &sig,
                       &siglen);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "the issuer key could not sign: %s", kbr_err_str(err)));
    KBR_GUARD(effect_new(spec, issuer->kid, jti, now, effect));
    err = kbr_jwt_assemble(input, sig, siglen, token);
    if (err != KBR_OK) {
        kbr_effects_free(*effect);
        *effect = NULL;
    }
out:
    json_decref(claims);
    free(input);
    /* the signature is what makes the string a bearer token */
    if (sig != NULL)
        OPENSSL_cleanse(sig, siglen);
    free(sig);
    return err;
}

json_t *kbd_token_row_from_effect(const kbr_effect *effect)
{
    json_t *row = kbd_effect_json(effect);

    if (row == NULL)
        return NULL;
    json_object_set_new(row, "revoked_at", json_null());
    json_object_set_new(row, "uses", json_integer(0));
    return row;
}

bool kbd_token_mint_for(kbd_req *r, kbd_worker *w, const kbd_issuer *signer,
                        const kbd_token_spec *spec, bool lineage, const char *again, char **token,
                        json_t **effect, json_t **row)
{
    static const char *const shown[] = {"jti", "scope", "expires_at", "orphan", "kid"};
    kbr_effects *fx = NULL;
    kbr_err err = kbd_token_mint(w->hsm, r->d->cfg.instance_id, signer, spec, token, &fx, &r->msg);

    kbd_note_hsm(r->d, err);
    if (err != KBR_OK) {
        kbd_req_error(r, err, NULL);
        return false;
    }
    *effect = kbd_effect_json(kbr_effects_get(fx, 0));
    *row = kbd_token_row_from_effect(kbr_effects_get(fx, 0));
    r->rec->effects = fx;
    if (*effect == NULL || *row == NULL) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the token could not be recorded");
        return false;
    }
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
        json_object_set(r->rec->detail, shown[i], json_object_get(*effect, shown[i]));
    json_object_set(r->rec->detail, "token_sub", json_object_get(*effect, "sub"));
    if (lineage) {
        json_object_set(r->rec->detail, "cnf_x5t", json_object_get(*effect, "cnf_x5t"));
        json_object_set(r->rec->detail, "parent_jti", json_object_get(*effect, "parent_jti"));
    }
    /* the ledger refuses a token of a key a rotation replaced while it was being signed */
    snprintf(r->msg.text, sizeof(r->msg.text),
             "the token issuer key was rotated while this token was being issued; %s", again);
    r->status = 201;
    return true;
}
