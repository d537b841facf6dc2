/*
 * h_debug.c - POST /v1/debug-auth: one debug unlock of one device the
 * ledger knows, against that device's fresh challenge, for a named ticket.
 *
 * The broker signs exactly the vendor tool's to-be-signed bytes (a PSA
 * ADAC token, an NXP debug credential response, ...) and does not parse
 * vendor formats; it does require those bytes to carry the challenge, so a
 * signature is bound to the one debug session that asked for it.  A
 * challenge is accepted once per device, whatever the key, durably: the
 * ledger refuses a replay even after a restart.  The token's batches list
 * bounds which devices it unlocks, as its devices list does.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "kbd.h"
#include "routes.h"

#define DEBUG_MESSAGE_MAX 4096
#define CHALLENGE_MIN     16
#define CHALLENGE_MAX     64
#define PERMISSIONS_MAX   64

typedef kbd_debug_auth_req debug_ctx;

void kbd_debug_auth_free(void *p)
{
    debug_ctx *c = p;

    if (c == NULL)
        return;
    free(c->key_name);
    free(c->key);
    free(c->label);
    free(c->product);
    free(c->serial);
    free(c->ticket);
    free(c->permissions);
    free(c->message);
    for (size_t i = 0; i < c->batches.n; i++)
        free(c->batches.items[i]);
    free(c->batches.items);
    free(c);
}

static kbr_err copy_namelist(const kbr_namelist *in, kbr_namelist *out)
{
    *out = (kbr_namelist){.present = in->present};
    if (!in->present || in->n == 0)
        return KBR_OK;
    out->items = calloc(in->n, sizeof(*out->items));
    if (out->items == NULL)
        return KBR_ERR_NOMEM;
    for (; out->n < in->n; out->n++) {
        out->items[out->n] = strdup(in->items[out->n]);
        if (out->items[out->n] == NULL)
            return KBR_ERR_NOMEM;
    }
    return KBR_OK;
}

static kbr_err hex_field(const json_t *body, const char *field, size_t min, size_t max,
                         unsigned char **out, size_t *outlen, kbr_msg *msg)
{
    const char *hex = NULL;

    if (kbd_json_str(body, field, true, 2 * max, &hex, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (kbr_hex_decode(hex, out, outlen) != KBR_OK || *outlen < min || *outlen > max)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be %zu to %zu bytes of hex", field, min,
                        max);
    return KBR_OK;
}

/* The challenge bytes must appear in the to-be-signed bytes. */
static bool contains(const unsigned char *hay, size_t hlen, const unsigned char *needle,
                     size_t nlen)
{
    return nlen <= hlen && memmem(hay, hlen, needle, nlen) != NULL;
}

static kbr_err parse_message(const json_t *body, debug_ctx *c, const unsigned char *challenge,
                             size_t clen, kbr_msg *msg)
{
    const char *b64 = NULL;

    if (kbd_json_str(body, "message_b64", true, 4 * DEBUG_MESSAGE_MAX / 3 + 4, &b64, msg) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "message_b64: required, the vendor tool's to-be-signed bytes (at most "
                        "%d bytes)",
                        DEBUG_MESSAGE_MAX);
    if (kbr_b64_decode(b64, &c->message, &c->message_len) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "message_b64: not valid base64");
    if (c->message_len > DEBUG_MESSAGE_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "message_b64: more than %d bytes",
                        DEBUG_MESSAGE_MAX);
    if (!contains(c->message, c->message_len, challenge, clen))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "message_b64: does not contain the challenge; the signed bytes must "
                        "answer this device's challenge");
    kbr_sha256_hex(c->message, c->message_len, c->message_sha256);
    return KBR_OK;
}

kbr_err kbd_debug_auth_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"key",         "device", "product",     "challenge",
                                          "permissions", "ticket", "message_b64", NULL};
    const char *key, *serial, *product, *ticket = NULL;
    unsigned char *challenge = NULL, *perm = NULL;
    size_t clen = 0, plen = 0;
    debug_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_name(r->body, "key", true, &key, msg));
    KBR_ENSURE((c->key_name = strdup(key)) != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbd_json_name(r->body, "device", true, &serial, msg));
    KBR_GUARD(kbd_json_name(r->body, "product", true, &product, msg));
    KBR_ENSURE(kbd_json_str(r->body, "ticket", true, 128, &ticket, msg) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "ticket: required, the rework or case id this unlock is for"));
    KBR_GUARD(
        hex_field(r->body, "challenge", CHALLENGE_MIN, CHALLENGE_MAX, &challenge, &clen, msg));
    KBR_GUARD(hex_field(r->body, "permissions", 1, PERMISSIONS_MAX, &perm, &plen, msg));
    KBR_GUARD(parse_message(r->body, c, challenge, clen, msg));
    kbr_sha256_hex(challenge, clen, c->challenge_sha256);
    c->serial = strdup(serial);
    c->product = strdup(product);
    c->ticket = strdup(ticket);
    KBR_GUARD(kbr_hex_encode(perm, plen, &c->permissions));
    KBR_ENSURE(c->serial != NULL && c->product != NULL && c->ticket != NULL, KBR_ERR_NOMEM);
out:
    free(challenge);
    free(perm);
    return err;
}

/* The entry names the key the request names. */
kbr_err kbd_debug_auth_describe(kbd_req *r, const void *req)
{
    const debug_ctx *c = req;

    if (c->key_name == NULL)
        return KBR_OK;
    free(r->rec->key);
    r->rec->key = strdup(c->key_name);
    return r->rec->key != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

/*
 * A debug-auth key the token may use, registered and active, of an algorithm debug
 * authorization takes, serving the product the token serves; a device the token's devices
 * cover.  The device's batch is the ledger's, checked by the worker against a copy of the
 * token's batches.
 */
kbr_err kbd_debug_auth_authorize(kbd_req *r, void *req)
{
    debug_ctx *c = req;
    const kbd_key *k = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(kbd_req_use_key(r, c->key_name, &k));
    KBR_ENSURE(strcmp(k->purpose, "debug-auth") == 0,
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "key: \"%s\" is a %s key; debug unlocks need a debug-auth key", c->key_name,
                        k->purpose));
    KBR_ENSURE(k->alg != KBR_ALG_RSA_3072 && k->alg != KBR_ALG_RSA_4096,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "key: debug authorization signs with ECDSA or Ed25519 keys"));
    KBR_GUARD(kbd_req_key_product(r, k, "product", c->product));
    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.devices, c->serial),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "device: \"%s\" is outside the token's devices",
                        c->serial));
    c->key = strdup(k->name);
    c->label = strdup(k->hsm_label);
    c->alg = k->alg;
    KBR_ENSURE(c->key != NULL && c->label != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(copy_namelist(&r->tok->scope.batches, &c->batches));
out:
    return err;
}

static bool debug_precheck(kbd_req *r, kbd_worker *w, debug_ctx *c)
{
    json_t *dev = NULL;
    bool used = false, in_batches;
    kbr_err err = kbr_store_device_get(w->store, c->product, c->serial, &dev);
    const json_t *revocation = json_object_get(dev, "revocation");

    in_batches = kbr_namelist_match(&c->batches, json_string_value(json_object_get(dev, "batch")));
    if (err != KBR_OK) {
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT,
                      "device: no device %s of product %s in the ledger", c->serial, c->product);
        json_decref(dev);
        return false;
    }
    if (!in_batches) {
        kbd_req_error(r, KBR_ERR_FORBIDDEN, "device: %s is of a batch outside the token's batches",
                      c->serial);
        json_decref(dev);
        return false;
    }
    /* a device revoked for good is unlocked by no one; the ledger refuses it too (effects.c) */
    if (json_is_object(revocation)) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "device: %s of product %s was revoked at %s; a revoked device gets no "
                      "debug unlock",
                      c->serial, c->product, json_string_value(json_object_get(revocation, "at")));
        json_decref(dev);
        return false;
    }
    json_decref(dev);
    err =
        kbr_store_debug_challenge_used(w->store, c->product, c->serial, c->challenge_sha256, &used);
    if (err != KBR_OK || used) {
        kbd_req_error(r, err != KBR_OK ? KBR_ERR_AUDIT : KBR_ERR_CONFLICT,
                      "challenge: already answered for device %s; a debug session needs a fresh "
                      "challenge",
                      c->serial);
        return false;
    }
    return true;
}

static kbr_err debug_sign(kbd_worker *w, debug_ctx *c, unsigned char **sig, size_t *siglen)
{
    unsigned char md[48];

    if (c->alg == KBR_ALG_ED25519)
        return kbr_hsm_sign(w->hsm, c->label, KBR_SIG_EDDSA, KBR_HASH_NONE, c->message,
                            c->message_len, sig, siglen);
    if (c->alg == KBR_ALG_ECDSA_P384) {
        SHA384(c->message, c->message_len, md);
        return kbr_hsm_sign(w->hsm, c->label, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA384, md, 48, sig,
                            siglen);
    }
    kbr_sha256(c->message, c->message_len, md);
    return kbr_hsm_sign(w->hsm, c->label, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, md, 32, sig, siglen);
}

static void record_unlock(kbd_req *r, debug_ctx *c, const char *sig_sha, const char *expires)
{
    char now[KBR_TIME_LEN];
    json_t *d = r->rec->detail;

    kbr_time_fmt(time(NULL), now);
    r->rec->key_use = true;
    if (kbd_req_effect(r,
                       &(kbr_effect){.type = KBR_EFFECT_DEBUG_AUTHORIZE,
                                     .u.debug_authorize = {.key = c->key,
                                                           .product = c->product,
                                                           .serial = c->serial,
                                                           .challenge_sha256 = c->challenge_sha256,
                                                           .permissions = c->permissions,
                                                           .ticket = c->ticket,
                                                           .principal = r->sub,
                                                           .message_sha256 = c->message_sha256,
                                                           .signature_sha256 = sig_sha,
                                                           .at = now,
                                                           .expires_at = expires}}) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the unlock could not be recorded");
        return;
    }
    json_object_set_new(d, "device", json_string(c->serial));
    json_object_set_new(d, "product", json_string(c->product));
    json_object_set_new(d, "ticket", json_string(c->ticket));
    json_object_set_new(d, "permissions", json_string(c->permissions));
    json_object_set_new(d, "challenge_sha256", json_string(c->challenge_sha256));
    json_object_set_new(d, "message_sha256", json_string(c->message_sha256));
    json_object_set_new(d, "signature_sha256", json_string(sig_sha));
    json_object_set_new(d, "expires_at", json_string(expires));
}

void kbd_debug_auth_work(kbd_req *r, kbd_worker *w)
{
    debug_ctx *c = r->ctx;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    char *b64 = NULL, sig_sha[65], expires[KBR_TIME_LEN];
    kbr_err err;

    if (!debug_precheck(r, w, c))
        return;
    err = debug_sign(w, c, &sig, &siglen);
    kbd_note_hsm(r->d, err);
    if (err != KBR_OK || kbr_b64_encode(sig, siglen, &b64) != KBR_OK) {
        kbd_req_error(r, err != KBR_OK ? err : KBR_ERR_NOMEM, "the HSM could not sign: %s",
                      kbr_err_str(err));
        free(sig);
        return;
    }
    kbr_sha256_hex(sig, siglen, sig_sha);
    kbr_time_fmt(time(NULL) + r->d->cfg.debug_unlock_seconds, expires);
    record_unlock(r, c, sig_sha, expires);
    /* a concurrent request with the same challenge may commit first: the ledger decides */
    snprintf(r->msg.text, sizeof(r->msg.text),
             "challenge: already answered with key %s; a debug session needs a fresh challenge",
             c->key);
    r->resp = json_pack("{s:s,s:s,s:s,s:s}", "signature_b64", b64, "expires_at", expires,
                        "algorithm", kbr_alg_name(c->alg), "key", c->key);
    r->add_audit_seq_to_resp = true;
    free(sig);
    free(b64);
}
