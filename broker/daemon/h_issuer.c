/*
 * h_issuer.c - POST /v1/tokens/issuer/rotate: a new token issuer key.
 *
 * The new key is generated in the HSM (P-256, sensitive, not extractable),
 * proves on the worker that it signs with the public key the HSM reports,
 * and is recorded by an issuer.rotate effect naming the key it replaces.
 * Once the record is durable the registry makes it current: every token
 * issued from then on carries its kid.  The replaced key stays trusted, and
 * in GET /v1/jwks, until the last token it signed expires; the ledger
 * refuses a token of the replaced key that was still being signed when the
 * rotation committed, so the log shows one key before the rotation's entry
 * and the other after it.
 *
 * Rotation changes what every token holder depends on, so it needs an admin
 * token without a products limit.  One rotation runs at a time: a second
 * one while the first is in flight gets 409 (and the ledger would refuse it
 * anyway, as it must name the key it replaces).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"

typedef kbd_issuer_rotate_req rotate_ctx;

void kbd_issuer_rotate_free(void *p)
{
    rotate_ctx *c = p;

    if (c == NULL)
        return;
    free(c->reason);
    EVP_PKEY_free(c->pub);
    free(c);
}

/* kbr/issuer/<UTC time>-<32 random bits>: sorts by age in the HSM, and never repeats. */
static kbr_err new_label(time_t now, char label[KBR_HSM_LABEL_MAX])
{
    kbr_err err = KBR_OK;
    char rnd[9], when[32];
    struct tm tm;

    KBR_ENSURE(gmtime_r(&now, &tm) != NULL, KBR_ERR_INTERNAL);
    KBR_ENSURE(strftime(when, sizeof(when), "%Y%m%dT%H%M%SZ", &tm) > 0, KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_random_hex(4, rnd));
    snprintf(label, KBR_HSM_LABEL_MAX, KBD_ISSUER_LABEL_PREFIX "%s-%s", when, rnd);
out:
    return err;
}

void kbd_issuer_rotate_work(kbd_req *r, kbd_worker *w)
{
    rotate_ctx *c = r->ctx;
    time_t now = time(NULL);
    kbr_hsm_key_info info = {0};
    char label[KBR_HSM_LABEL_MAX];
    kbr_effects *fx = NULL;
    kbr_err err;

    if (new_label(now, label) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_INTERNAL, "no label for the new issuer key");
        return;
    }
    err = kbr_hsm_generate(w->hsm, label, KBR_ALG_ECDSA_P256, &info);
    kbd_note_hsm(r->d, err);
    if (err != KBR_OK) {
        kbd_req_error(r, err, "the new issuer key could not be generated in the HSM: %s",
                      kbr_err_str(err));
        return;
    }
    err = kbd_issuer_effect(w->hsm, label, c->replaces, now, &c->key, &c->pub, &fx, &r->msg);
    if (err == KBR_OK)
        err = kbd_issuer_prove(w->hsm, &c->key, c->pub, &r->msg);
    kbd_note_hsm(r->d, err);
    if (err != KBR_OK) {
        kbr_effects_free(fx);
        kbd_req_error(r, err, NULL);
        return;
    }
    r->rec->effects = fx;
    kbr_time_fmt(now, c->at);
    json_object_set_new(r->rec->detail, "kid", json_string(c->key.kid));
    json_object_set_new(r->rec->detail, "hsm_label", json_string(c->key.label));
    json_object_set_new(r->rec->detail, "replaces", json_string(c->replaces));
    json_object_set_new(r->rec->detail, "reason",
                        c->reason != NULL ? json_string(c->reason) : json_null());
    /* what the ledger says when another rotation from the same key committed first */
    snprintf(r->msg.text, sizeof(r->msg.text),
             "the token issuer key %s was replaced by another rotation; nothing was changed",
             c->replaces);
    r->status = 201;
}

/* Event thread, after the record is durable: the new key signs from now on. */
void kbd_issuer_rotate_finish(kbd_req *r)
{
    rotate_ctx *c = r->ctx;
    kbr_issuer_state old = {0};
    time_t now = time(NULL);
    char until[KBR_TIME_LEN];
    json_t *previous;

    if (kbr_policy_add_issuer(r->d->policy, c->key.kid, c->pub, true) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the new issuer key could not be registered");
        return;
    }
    r->d->issuer = c->key;
    kbd_log(KBD_LOG_INFO, "issuer.rotated", r->request_id,
            "token issuer key is now %s (kid %s), replacing kid %s", c->key.label, c->key.kid,
            c->replaces);
    (void)kbr_policy_issuer_state(r->d->policy, c->replaces, now, &old);
    kbr_time_fmt(old.last_exp, until);
    /* listed_until: when the replaced key leaves GET /v1/jwks (null: it already has) */
    previous =
        json_pack("{s:s,s:s?}", "kid", c->replaces, "listed_until", old.trusted ? until : NULL);
    r->resp = json_pack("{s:s,s:s,s:s,s:o*}", "kid", c->key.kid, "hsm_label", c->key.label,
                        "activated_at", c->at, "replaces", previous);
}

void kbd_issuer_rotate_settle(kbd_req *r, bool committed)
{
    (void)committed;
    r->d->issuer_rotating = false;
}

kbr_err kbd_issuer_rotate_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    rotate_ctx *c = calloc(1, sizeof(*c));

    *out = c;
    return c != NULL ? kbd_json_reason_only(r->body, &c->reason, msg) : KBR_ERR_NOMEM;
}

/* An admin of everything (kbd_scope_unlimited), and no other rotation in flight: this one is marked
 * in flight until its record settles (kbd_issuer_rotate_settle). */
kbr_err kbd_issuer_rotate_authorize(kbd_req *r, void *req)
{
    rotate_ctx *c = req;
    kbr_err err = KBR_OK;

    KBR_ENSURE(kbd_scope_unlimited(&r->tok->scope),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "rotating the token issuer key needs " KBD_UNLIMITED_ADMIN));
    KBR_ENSURE(!r->d->issuer_rotating,
               kbr_fail(&r->msg, KBR_ERR_CONFLICT,
                        "a rotation of the token issuer key is already in progress"));
    snprintf(c->replaces, sizeof(c->replaces), "%s", r->d->issuer.kid);
    r->d->issuer_rotating = true;
out:
    return err;
}
