/*
 * h_devices.c - POST /v1/devices/{serial}/revoke.
 *
 * A device whose identity can no longer be trusted (its key leaked, it was stolen,
 * decommissioned) is revoked for good, with an RFC 5280 reason: the device and every
 * certificate the ledger holds for it, superseded ones included (they would be valid until
 * they expire otherwise).  The revocation is one device.revoke effect in the entry that
 * records the call, and from then on each CRL of the certificates' issuers lists them
 * (h_crl.c): a CRL served after this call answers lists them.  A second revocation of the
 * same device is a conflict naming the first, so a revocation's time and reason never change
 * once recorded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"

typedef kbd_device_revoke_req revoke_ctx;

void kbd_device_revoke_free(void *p)
{
    revoke_ctx *c = p;

    if (c == NULL)
        return;
    free(c->product);
    free(c->serial);
    free(c->reason);
    kbr_scope_cleanup(&c->scope);
    free(c);
}

#define REASONS                                                                                    \
    "unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "                   \
    "cessationOfOperation, privilegeWithdrawn"

/* The certificates the effect revokes, as it names them and as the answer lists them. */
static kbr_err revoked_certs(const json_t *certs, kbr_effect_revoked_cert **out, json_t **listed)
{
    kbr_effect_revoked_cert *list = calloc(json_array_size(certs) + 1, sizeof(*list));
    const json_t *cert;
    size_t i;

    *out = list;
    *listed = json_array();
    if (list == NULL || *listed == NULL)
        return KBR_ERR_NOMEM;
    json_array_foreach(certs, i, cert)
    {
        list[i] = (kbr_effect_revoked_cert){
            .fingerprint = json_string_value(json_object_get(cert, "fingerprint")),
            .serial_number = json_string_value(json_object_get(cert, "serial_number")),
            .issuer_key = json_string_value(json_object_get(cert, "issuer_key")),
        };
        if (json_array_append_new(*listed,
                                  json_pack("{s:O,s:O,s:O,s:O}", "serial_number",
                                            json_object_get(cert, "serial_number"), "fingerprint",
                                            json_object_get(cert, "fingerprint"), "issuer_key",
                                            json_object_get(cert, "issuer_key"), "superseded_at",
                                            json_object_get(cert, "superseded_at"))) != 0)
            return KBR_ERR_NOMEM;
    }
    return KBR_OK;
}

/* The device is the ledger's, within the token's batches, its certificates' CA keys within the
 * token's keys (a revocation is what that CA's next CRL lists), and not revoked yet; false when
 * r holds the refusal. */
static bool revoke_precheck(kbd_req *r, revoke_ctx *c, const json_t *dev, kbr_err err)
{
    const json_t *revocation = json_object_get(dev, "revocation"), *cert;
    const char *batch = json_string_value(json_object_get(dev, "batch"));
    size_t i;

    if (err != KBR_OK) {
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT,
                      "no device %s of product %s in the ledger", c->serial, c->product);
        return false;
    }
    if (batch == NULL || !kbr_namelist_match(&c->scope.batches, batch)) {
        kbd_req_error(r, KBR_ERR_FORBIDDEN,
                      "device %s is in batch \"%s\", outside the token's batches", c->serial,
                      batch != NULL ? batch : "");
        return false;
    }
    json_array_foreach(json_object_get(dev, "certificates"), i, cert)
    {
        const char *issuer = json_string_value(json_object_get(cert, "issuer_key"));

        if (issuer != NULL && !kbr_namelist_match(&c->scope.keys, issuer)) {
            kbd_req_error(r, KBR_ERR_FORBIDDEN,
                          "device %s has a certificate of CA key \"%s\", outside the token's keys",
                          c->serial, issuer);
            return false;
        }
    }
    if (json_is_object(revocation)) {
        json_object_set(r->rec->detail, "revoked_before", (json_t *)revocation);
        kbd_req_error(r, KBR_ERR_CONFLICT, "device %s of product %s was revoked at %s (%s) by %s",
                      c->serial, c->product, json_string_value(json_object_get(revocation, "at")),
                      json_string_value(json_object_get(revocation, "reason")),
                      json_string_value(json_object_get(revocation, "revoked_by")));
        return false;
    }
    if (json_array_size(json_object_get(dev, "certificates")) == 0) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the device ledger could not be read");
        return false;
    }
    return true;
}

void kbd_device_revoke_work(kbd_req *r, kbd_worker *w)
{
    revoke_ctx *c = r->ctx;
    json_t *dev = NULL, *listed = NULL;
    kbr_effect_revoked_cert *certs = NULL;
    kbr_err err = kbr_store_device_get(w->store, c->product, c->serial, &dev);
    char now[KBR_TIME_LEN];
    size_t n;

    if (!revoke_precheck(r, c, dev, err))
        goto out;
    n = json_array_size(json_object_get(dev, "certificates"));
    if (revoked_certs(json_object_get(dev, "certificates"), &certs, &listed) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        goto out;
    }
    kbr_time_fmt(time(NULL), now);
    /* what a request that committed first (a revocation, a rotation) makes of this one */
    snprintf(r->msg.text, sizeof(r->msg.text),
             "device %s of product %s was revoked, or was given a new certificate, while this "
             "request was made; ask again",
             c->serial, c->product);
    err = kbd_req_effect(r, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                          .u.device_revoke = {.product = c->product,
                                                              .serial = c->serial,
                                                              .at = now,
                                                              .reason = c->reason,
                                                              .reason_code = c->reason_code,
                                                              .revoked_by = r->sub,
                                                              .certificates = certs,
                                                              .ncertificates = n}});
    if (err != KBR_OK) {
        kbd_req_error(r, err, "the revocation could not be recorded");
        goto out;
    }
    json_object_set(r->rec->detail, "certificates", listed);
    r->resp = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:O}", "product", c->product, "serial", c->serial,
                        "revoked_at", now, "reason", c->reason, "reason_code", c->reason_code,
                        "revoked_by", r->sub, "certificates", listed);
    if (r->resp == NULL) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        goto out;
    }
    r->add_audit_seq_to_resp = true;
out:
    free(certs);
    json_decref(listed);
    json_decref(dev);
}

/* Event thread, once the revocation is durable: no CRL signed before it is served again. */
void kbd_device_revoke_finish(kbd_req *r)
{
    kbd_crls_changed(r->d);
}

kbr_err kbd_device_revoke_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"product", "reason", NULL};
    const char *product = NULL, *reason = NULL;
    revoke_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(kbr_name_valid(r->arg),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "device serial in the path is not valid"));
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_name(r->body, "product", true, &product, msg));
    KBR_GUARD(kbd_json_str(r->body, "reason", true, 64, &reason, msg));
    c->product = strdup(product);
    c->serial = strdup(r->arg);
    c->reason = strdup(reason);
    KBR_ENSURE(c->product != NULL && c->serial != NULL && c->reason != NULL, KBR_ERR_NOMEM);
    c->reason_code = kbr_store_revocation_reason_code(reason);
    KBR_ENSURE(c->reason_code >= 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "reason: \"%.64s\" is not one of the RFC 5280 reasons a revocation takes: "
                        "%s",
                        reason, REASONS));
out:
    return err;
}

/* The entry names the device, its product and the reason given. */
kbr_err kbd_device_revoke_describe(kbd_req *r, const void *req)
{
    const revoke_ctx *c = req;

    if (c->reason == NULL)
        return KBR_OK;
    json_object_set_new(r->rec->detail, "device",
                        json_pack("{s:s,s:s}", "serial", c->serial, "product", c->product));
    json_object_set_new(r->rec->detail, "reason", json_string(c->reason));
    return kbr_audit_rec_add_product(r->rec, c->product) == KBR_OK ? KBR_OK : KBR_ERR_NOMEM;
}

/* The product and the device are the token's; the batch, which the ledger knows, is checked
 * by the worker against a copy of the token's scope. */
kbr_err kbd_device_revoke_authorize(kbd_req *r, void *req)
{
    revoke_ctx *c = req;
    kbr_err err = KBR_OK;

    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.products, c->product),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product: \"%s\" is outside the token's products", c->product));
    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.devices, c->serial),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "device \"%s\" is outside the token's devices",
                        c->serial));
    KBR_GUARD(kbd_scope_copy(&r->tok->scope, &c->scope));
out:
    return err;
}
