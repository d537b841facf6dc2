/*
 * h_provision.c - POST /v1/provision and POST /v1/devices/{serial}/certificates.
 *
 * A factory station sends a device's CSR and gets a certificate from the
 * product's device CA in the HSM, within the batch it was ordered to
 * build.  The batch quantity and the token's max_uses are reserved on the
 * event thread before any work starts, so they hold exactly however many
 * stations ask at once; the ledger enforces both again at commit.  A device
 * key pair names one device: a CSR whose public key is another device's
 * identity is refused before the CA signs, and again by the ledger at commit
 * (two requests with one key may pass the first check together).
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "kbr_ca.h"

typedef struct {
    char *key, *label, *product, *serial, *batch, *factory, *firmware_version, *csr_pem;
    kbr_alg alg;
    bool batch_reserved;
    bool batch_full;            /* answered 429 unless the serial turns out to be a duplicate */
    kbd_batch *slot;            /* event thread only */
    kbr_scope scope;            /* a copy of the token's scope, for worker checks */
    json_t *superseded;         /* rotation: fingerprints of the certificates replaced */
    char public_key_sha256[65]; /* the CSR's key, as the ledger names it */
} prov_ctx;

static void prov_ctx_free(void *p)
{
    prov_ctx *c = p;

    if (c == NULL)
        return;
    free(c->key);
    free(c->label);
    free(c->product);
    free(c->serial);
    free(c->batch);
    free(c->factory);
    free(c->firmware_version);
    free(c->csr_pem);
    kbr_scope_cleanup(&c->scope);
    json_decref(c->superseded);
    free(c);
}

static char *dup_opt(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* The CA key: in the token's keys, active, a device-identity-ca serving product. */
static kbr_err check_ca_key(kbd_req *r, const json_t *obj, const char *product, prov_ctx *c)
{
    const char *name = NULL;
    const kbd_key *k = NULL;
    kbr_err err;

    if (kbd_json_name(obj, "key", true, &name, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    err = kbd_req_use_key(r, name, &k);
    if (err != KBR_OK)
        return err;
    if (strcmp(k->purpose, "device-identity-ca") != 0)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "key: \"%s\" is a %s key; device certificates come from a "
                        "device-identity-ca key",
                        name, k->purpose);
    err = kbd_req_key_product(r, k, "product", product);
    if (err != KBR_OK)
        return err;
    c->key = strdup(name);
    c->label = strdup(k->hsm_label);
    c->alg = k->alg;
    return c->key == NULL || c->label == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

static kbr_err check_batch(kbd_req *r, prov_ctx *c)
{
    kbd_batch *b;

    if (!kbr_namelist_match(&r->tok->scope.batches, c->batch))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "device.batch: \"%s\" is outside the token's batches", c->batch);
    b = kbd_batches_find(r->d->batches, c->batch);
    if (b == NULL)
        return kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "device.batch: no batch named \"%s\"",
                        c->batch);
    if (strcmp(b->factory, r->sub) != 0)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "device.batch: batch \"%s\" is ordered from %s, not %s", c->batch,
                        b->factory, r->sub);
    if (strcmp(b->product, c->product) != 0)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "device.batch: batch \"%s\" builds product \"%s\", not \"%s\"", c->batch,
                        b->product, c->product);
    /* a full batch still lets the worker tell a duplicate serial (409) from a new one (429) */
    c->batch_full = b->provisioned + b->reserved >= b->quantity;
    c->factory = strdup(b->factory);
    c->slot = b;
    return c->factory == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

static kbr_err parse_device(kbd_req *r, prov_ctx *c)
{
    static const char *const allowed[] = {"serial", "product", "batch", "firmware_version", NULL};
    const json_t *d = json_object_get(r->body, "device");
    const char *serial, *product, *batch, *fw;

    if (!json_is_object(d))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "device: required, {serial, product, batch, firmware_version}");
    if (kbd_json_only(d, allowed, &r->msg) != KBR_OK ||
        kbd_json_name(d, "serial", true, &serial, &r->msg) != KBR_OK ||
        kbd_json_name(d, "product", true, &product, &r->msg) != KBR_OK ||
        kbd_json_name(d, "batch", true, &batch, &r->msg) != KBR_OK ||
        kbd_json_name(d, "firmware_version", false, &fw, &r->msg) != KBR_OK)
        return kbd_msg_prefix(&r->msg, "device", KBR_ERR_BAD_REQUEST);
    c->serial = strdup(serial);
    c->product = strdup(product);
    c->batch = strdup(batch);
    c->firmware_version = dup_opt(fw);
    /* what was asked for, in the record of a refusal as of a grant */
    json_object_set_new(r->rec->detail, "device",
                        json_pack("{s:s,s:s,s:s,s:s?}", "serial", serial, "product", product,
                                  "batch", batch, "firmware_version", fw));
    return c->serial == NULL || c->product == NULL || c->batch == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

static kbr_err parse_csr_field(kbd_req *r, prov_ctx *c)
{
    const char *csr = NULL;

    if (kbd_json_str(r->body, "csr_pem", true, KBR_CA_CSR_MAX, &csr, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    c->csr_pem = strdup(csr);
    return c->csr_pem == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

/* Shared by both endpoints: the CSR checked, the certificate made by the CA key in the HSM. */
typedef struct {
    kbr_ca_csr *csr;
    kbr_ca_cert *cert;
    char *chain;
    char issuer_fingerprint[65]; /* the CA certificate that heads chain */
} issued;

static void issued_cleanup(issued *i)
{
    kbr_ca_csr_free(i->csr);
    kbr_ca_cert_free(i->cert);
    free(i->chain);
}

/*
 * A worker's issuer: the parsed CA certificate, its public key from the HSM
 * and a signer bound to the worker's session.  Building one costs more than
 * the certificate it signs (OpenSSL 3.0 key decoding), so each worker keeps
 * the last one, valid while the key's certificate (by fingerprint) is the same.
 */
typedef struct {
    char key[KBR_HSM_LABEL_MAX];
    char fingerprint[65];
    kbr_ca_hsm_ctx hctx; /* the issuer's signer points here */
    kbr_ca_issuer *issuer;
    char *chain;
} issuer_cache;

void kbd_issuer_cache_free(void *p)
{
    issuer_cache *ic = p;

    if (ic == NULL)
        return;
    kbr_ca_issuer_free(ic->issuer);
    free(ic->chain);
    free(ic);
}

static kbr_err build_issuer(kbd_req *r, kbd_worker *w, prov_ctx *c, const json_t *cert,
                            issuer_cache *ic)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *pub = NULL;
    kbr_ca_signer signer;
    const char *pem = json_string_value(json_object_get(cert, "pem"));
    const char *fp = json_string_value(json_object_get(cert, "fingerprint"));

    kbr_ca_issuer_free(ic->issuer);
    free(ic->chain);
    ic->issuer = NULL;
    ic->chain = NULL;
    ic->key[0] = '\0';
    err = kbr_hsm_public_key(w->hsm, c->label, &pub);
    kbd_note_hsm(r->d, err);
    KBR_ENSURE(err == KBR_OK, kbr_fail(&r->msg, err, "the HSM did not give the CA public key"));
    KBR_GUARD(kbr_ca_hsm_signer(w->hsm, c->label, c->alg, &ic->hctx, &signer));
    KBR_GUARD(kbr_ca_issuer_new(pem, &signer, pub, &ic->issuer, &r->msg));
    KBR_ENSURE(asprintf(&ic->chain, "%s%s", pem,
                        json_string_value(json_object_get(cert, "chain_pem"))) >= 0,
               KBR_ERR_NOMEM);
    snprintf(ic->key, sizeof(ic->key), "%s", c->key);
    snprintf(ic->fingerprint, sizeof(ic->fingerprint), "%s", fp != NULL ? fp : "");
out:
    if (err != KBR_OK && ic->chain == NULL)
        ic->key[0] = '\0';
    EVP_PKEY_free(pub);
    return err;
}

static kbr_err load_issuer(kbd_req *r, kbd_worker *w, prov_ctx *c, issuer_cache **out)
{
    kbr_err err = KBR_OK;
    json_t *key = NULL, *cert;
    issuer_cache *ic = w->issuer_cache;
    const char *fp;

    *out = NULL;
    if (ic == NULL) {
        ic = w->issuer_cache = calloc(1, sizeof(*ic));
        KBR_ENSURE(ic != NULL, KBR_ERR_NOMEM);
    }
    err = kbr_store_key_get(w->store, c->key, &key);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(&r->msg, KBR_ERR_AUDIT, "the key registry could not be read"));
    cert = json_object_get(key, "certificate");
    KBR_ENSURE(json_is_object(cert),
               kbr_fail(&r->msg, KBR_ERR_CONFLICT,
                        "key: \"%s\" has no CA certificate yet; attach one with POST "
                        "/v1/keys/%s/certificate",
                        c->key, c->key));
    fp = json_string_value(json_object_get(cert, "fingerprint"));
    if (ic->issuer == NULL || strcmp(ic->key, c->key) != 0 || fp == NULL ||
        strcmp(ic->fingerprint, fp) != 0)
        KBR_GUARD(build_issuer(r, w, c, cert, ic));
    *out = ic;
out:
    json_decref(key);
    return err;
}

/* The audit record names the CSR's key whether the request is granted or refused. */
static kbr_err read_csr(kbd_req *r, prov_ctx *c, issued *out)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(kbr_ca_csr_parse(c->csr_pem, &out->csr, &r->msg));
    json_object_set_new(r->rec->detail, "csr_sha256", json_string(kbr_ca_csr_sha256_hex(out->csr)));
    json_object_set_new(r->rec->detail, "csr_subject", json_string(kbr_ca_csr_subject(out->csr)));
    KBR_ENSURE(kbr_store_spki_sha256(kbr_ca_csr_spki_peek(out->csr), c->public_key_sha256) ==
                   KBR_OK,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "csr_pem: the public key cannot be encoded"));
    json_object_set_new(r->rec->detail, "public_key_sha256", json_string(c->public_key_sha256));
out:
    return err;
}

static kbr_err issue_cert(kbd_req *r, kbd_worker *w, prov_ctx *c, issued *out)
{
    kbr_err err = KBR_OK;
    issuer_cache *ic = NULL;

    KBR_GUARD(load_issuer(r, w, c, &ic));
    out->chain = strdup(ic->chain);
    KBR_ENSURE(out->chain != NULL, KBR_ERR_NOMEM);
    snprintf(out->issuer_fingerprint, sizeof(out->issuer_fingerprint), "%s", ic->fingerprint);
    err = kbr_ca_issue_device(ic->issuer, out->csr, c->serial, r->d->cfg.device_cert_days,
                              time(NULL), &out->cert, &r->msg);
    kbd_note_hsm(r->d, err);
out:
    return err;
}

/* The certificate as the effect records it; not_after is the caller's buffer. */
static kbr_effect_cert cert_effect_part(const issued *i, char not_after[KBR_TIME_LEN])
{
    kbr_ca_cert_not_after_str(i->cert, not_after);
    return (kbr_effect_cert){.serial_number = kbr_ca_cert_serial_hex(i->cert),
                             .pem = kbr_ca_cert_pem(i->cert),
                             .not_after = not_after,
                             .fingerprint = kbr_ca_cert_fingerprint(i->cert)};
}

/* The response and the audit record of an issued certificate; the effect comes from the caller. */
static void record_issue(kbd_req *r, prov_ctx *c, const issued *i, const kbr_effect *effect)
{
    char not_after[KBR_TIME_LEN];
    json_t *d = r->rec->detail;

    kbr_ca_cert_not_after_str(i->cert, not_after);
    r->rec->key_use = true;
    if (kbd_req_effect(r, effect) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the certificate could not be recorded");
        return;
    }
    json_object_set_new(d, "device",
                        json_pack("{s:s,s:s,s:s?,s:s?}", "serial", c->serial, "product", c->product,
                                  "batch", c->batch, "firmware_version", c->firmware_version));
    json_object_set_new(d, "certificate",
                        json_pack("{s:s,s:s,s:s}", "serial_number", kbr_ca_cert_serial_hex(i->cert),
                                  "fingerprint", kbr_ca_cert_fingerprint(i->cert), "not_after",
                                  not_after));
    r->resp =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "certificate_pem", kbr_ca_cert_pem(i->cert), "chain_pem",
                  i->chain, "serial_number", kbr_ca_cert_serial_hex(i->cert), "not_after",
                  not_after, "fingerprint_sha256", kbr_ca_cert_fingerprint(i->cert));
    if (c->superseded != NULL) {
        json_object_set(r->resp, "superseded", c->superseded);
        json_object_set(d, "superseded", c->superseded);
    }
    r->add_audit_seq_to_resp = true;
    r->status = 201;
}

static void fail_issue(kbd_req *r, kbr_err err)
{
    kbr_err shown = err;

    /* CA-side refusals (no or unfit CA certificate) are the deployment's state */
    if (err == KBR_ERR_CRYPTO)
        shown = KBR_ERR_HSM;
    kbd_req_error(r, shown, r->msg.text[0] != '\0' ? NULL : "the certificate could not be made: %s",
                  kbr_err_str(err));
}

/*
 * The CSR's key is no other device's identity; the device's own key is a renewal.  The
 * refusal names the device that holds the key, in the message and in the audit detail.
 */
static bool key_precheck(kbd_req *r, kbd_worker *w, prov_ctx *c)
{
    json_t *owner = NULL;
    kbr_err err = kbr_store_device_by_public_key(w->store, c->public_key_sha256, &owner);
    const char *product = json_string_value(json_object_get(owner, "product"));
    const char *serial = json_string_value(json_object_get(owner, "serial"));
    bool ok = err == KBR_ERR_NOT_FOUND;

    if (err != KBR_OK || product == NULL || serial == NULL) {
        if (!ok)
            kbd_req_error(r, KBR_ERR_AUDIT, "the device ledger could not be read");
    } else if (strcmp(product, c->product) == 0 && strcmp(serial, c->serial) == 0) {
        ok = true;
    } else {
        json_object_set_new(r->rec->detail, "identity_of",
                            json_pack("{s:s,s:s}", "product", product, "serial", serial));
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "csr_pem: the CSR's public key is already the identity of device %s/%s",
                      product, serial);
    }
    json_decref(owner);
    return ok;
}

/* The CSR read, its key checked, the certificate made; false when r holds the refusal. */
static bool make_cert(kbd_req *r, kbd_worker *w, prov_ctx *c, issued *i)
{
    kbr_err err = read_csr(r, c, i);
    bool checked = err == KBR_OK && key_precheck(r, w, c);

    if (checked)
        err = issue_cert(r, w, c, i);
    if (err != KBR_OK)
        fail_issue(r, err);
    return checked && err == KBR_OK;
}

/* Ledger checks before the HSM is asked: a new serial, signed firmware. */
static bool provision_precheck(kbd_req *r, kbd_worker *w, prov_ctx *c)
{
    json_t *found = NULL;
    kbr_err err = kbr_store_device_get(w->store, c->product, c->serial, &found);

    json_decref(found);
    if (err == KBR_OK) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "device.serial: %s is already provisioned for product %s", c->serial,
                      c->product);
        return false;
    }
    if (err != KBR_ERR_NOT_FOUND) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the device ledger could not be read");
        return false;
    }
    if (c->batch_full) {
        kbd_req_error(r, KBR_ERR_QUOTA, "device.batch: every device of batch \"%s\" is provisioned",
                      c->batch);
        return false;
    }
    if (c->firmware_version == NULL)
        return true;
    err = kbr_store_firmware_get(w->store, c->product, c->firmware_version, &found);
    json_decref(found);
    if (err != KBR_OK)
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT,
                      "device.firmware_version: this broker never signed firmware %s %s",
                      c->product, c->firmware_version);
    return err == KBR_OK;
}

static void provision_work(kbd_req *r, kbd_worker *w)
{
    prov_ctx *c = r->ctx;
    issued i = {0};
    char now[KBR_TIME_LEN], not_after[KBR_TIME_LEN];

    if (!provision_precheck(r, w, c) || !make_cert(r, w, c, &i)) {
        issued_cleanup(&i);
        return;
    }
    kbr_time_fmt(time(NULL), now);
    /* if a concurrent station took the serial or the key first, the ledger turns this into a
     * 409; which of the two it was is not known here */
    snprintf(r->msg.text, sizeof(r->msg.text),
             "device.serial: %s is already provisioned for product %s, or csr_pem: the CSR's "
             "public key is already the identity of another device",
             c->serial, c->product);
    record_issue(r, c, &i,
                 &(kbr_effect){.type = KBR_EFFECT_DEVICE_PROVISION,
                               .u.device_provision = {.product = c->product,
                                                      .serial = c->serial,
                                                      .batch = c->batch,
                                                      .factory = c->factory,
                                                      .firmware_version = c->firmware_version,
                                                      .csr_sha256 = kbr_ca_csr_sha256_hex(i.csr),
                                                      .public_key_sha256 = c->public_key_sha256,
                                                      .at = now,
                                                      .issuer_key = c->key,
                                                      .issuer_fingerprint = i.issuer_fingerprint,
                                                      .cert = cert_effect_part(&i, not_after)}});
    issued_cleanup(&i);
}

/* Event thread, once the record settled (or the request was refused). */
static void provision_settle(kbd_req *r, bool committed)
{
    prov_ctx *c = r->ctx;

    if (!c->batch_reserved)
        return;
    c->slot->reserved--;
    if (committed)
        c->slot->provisioned++;
    c->batch_reserved = false;
}

static kbr_err reserve(kbd_req *r, prov_ctx *c, bool batch)
{
    kbr_err err = kbd_req_reserve_use(r);

    if (err != KBR_OK)
        return err;
    if (batch && !c->batch_full) {
        c->slot->reserved++;
        c->batch_reserved = true;
    }
    return KBR_OK;
}

static kbr_err new_ctx(kbd_req *r, prov_ctx **out)
{
    prov_ctx *c = calloc(1, sizeof(*c));

    *out = c;
    if (c == NULL)
        return KBR_ERR_NOMEM;
    r->ctx = c;
    r->ctx_free = prov_ctx_free;
    r->settle = provision_settle;
    return KBR_OK;
}

kbr_err kbd_h_provision(kbd_req *r)
{
    static const char *const allowed[] = {"key", "csr_pem", "device", NULL};
    prov_ctx *c = NULL;
    kbr_err err = new_ctx(r, &c);

    if (err != KBR_OK)
        return err;
    if (kbd_json_only(r->body, allowed, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    err = parse_device(r, c);
    if (err == KBR_OK)
        err = parse_csr_field(r, c);
    if (err == KBR_OK)
        err = check_ca_key(r, r->body, c->product, c);
    if (err == KBR_OK && !kbr_namelist_match(&r->tok->scope.devices, c->serial))
        err = kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                       "device.serial: \"%s\" is outside the token's devices", c->serial);
    if (err == KBR_OK)
        err = check_batch(r, c);
    if (err == KBR_OK)
        err = reserve(r, c, true);
    if (err != KBR_OK)
        return err;
    r->work = provision_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}

/* ---- rotation ---- */

static bool rotate_precheck(kbd_req *r, kbd_worker *w, prov_ctx *c)
{
    json_t *dev = NULL, *cert;
    kbr_err err = kbr_store_device_get(w->store, c->product, c->serial, &dev);
    const char *batch;
    size_t i;

    if (err != KBR_OK) {
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT,
                      "no device %s of product %s in the ledger", c->serial, c->product);
        return false;
    }
    batch = json_string_value(json_object_get(dev, "batch"));
    if (batch == NULL || !kbr_namelist_match(&c->scope.batches, batch)) {
        kbd_req_error(r, KBR_ERR_FORBIDDEN,
                      "device %s is in batch \"%s\", outside the token's batches", c->serial,
                      batch != NULL ? batch : "");
        json_decref(dev);
        return false;
    }
    c->batch = strdup(batch);
    c->superseded = json_array();
    json_array_foreach(json_object_get(dev, "certificates"), i, cert)
    {
        if (json_is_null(json_object_get(cert, "superseded_at")))
            json_array_append(c->superseded, json_object_get(cert, "fingerprint"));
    }
    json_decref(dev);
    return true;
}

static void rotate_work(kbd_req *r, kbd_worker *w)
{
    prov_ctx *c = r->ctx;
    issued i = {0};
    char now[KBR_TIME_LEN], not_after[KBR_TIME_LEN];

    if (!rotate_precheck(r, w, c) || !make_cert(r, w, c, &i)) {
        issued_cleanup(&i);
        return;
    }
    kbr_time_fmt(time(NULL), now);
    /* the one ledger rule a concurrent request can break between the check and the commit */
    snprintf(r->msg.text, sizeof(r->msg.text),
             "csr_pem: the CSR's public key is already the identity of another device");
    record_issue(r, c, &i,
                 &(kbr_effect){.type = KBR_EFFECT_DEVICE_ROTATE,
                               .u.device_rotate = {.product = c->product,
                                                   .serial = c->serial,
                                                   .at = now,
                                                   .csr_sha256 = kbr_ca_csr_sha256_hex(i.csr),
                                                   .public_key_sha256 = c->public_key_sha256,
                                                   .issuer_key = c->key,
                                                   .issuer_fingerprint = i.issuer_fingerprint,
                                                   .cert = cert_effect_part(&i, not_after)}});
    issued_cleanup(&i);
}

kbr_err kbd_h_rotate(kbd_req *r)
{
    static const char *const allowed[] = {"key", "csr_pem", "product", NULL};
    const char *product = NULL;
    prov_ctx *c = NULL;
    kbr_err err = new_ctx(r, &c);

    if (err != KBR_OK)
        return err;
    if (kbd_json_only(r->body, allowed, &r->msg) != KBR_OK ||
        kbd_json_name(r->body, "product", true, &product, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (!kbr_name_valid(r->arg))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "device serial in the path is not valid");
    c->serial = strdup(r->arg);
    c->product = strdup(product);
    json_object_set_new(r->rec->detail, "device",
                        json_pack("{s:s,s:s}", "serial", r->arg, "product", product));
    if (c->serial == NULL || c->product == NULL ||
        kbd_scope_copy(&r->tok->scope, &c->scope) != KBR_OK)
        return KBR_ERR_NOMEM;
    err = parse_csr_field(r, c);
    if (err == KBR_OK)
        err = check_ca_key(r, r->body, c->product, c);
    if (err == KBR_OK && !kbr_namelist_match(&r->tok->scope.devices, c->serial))
        err = kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "device \"%s\" is outside the token's devices",
                       c->serial);
    if (err == KBR_OK)
        err = reserve(r, c, false);
    if (err != KBR_OK)
        return err;
    r->work = rotate_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}
