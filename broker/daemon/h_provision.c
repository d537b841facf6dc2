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
 *
 * Provisioning is idempotent: a station whose answer was lost asks again,
 * and the same device (product, serial, batch, CA key, factory image) with
 * the same public key gets the certificate it was issued, with no unit of
 * the batch, no use of the token and no signature; anything else about a
 * provisioned serial is a conflict.  Requests for one (product, serial) run
 * one after the other (a flight, on the event thread), so stations sending
 * the same request at once make one certificate between them and the others
 * get it back.
 *
 * A provisioning may also deliver ota-encryption keys ("deliver"): each one's private key,
 * sealed in the HSM process to the device's own P-256 key as a COSE_Encrypt
 * (pkcs11/deliver.c, cose/encrypt.c), so neither the station nor the network sees it.  The
 * token must reach each key in its "keys" (op provision, as for the CA key), and the key must
 * serve the batch's product.  Each delivery is a key.deliver effect of the provisioning's
 * entry, and its COSE_Encrypt a document of it.  The same request again gets the same bytes
 * back: a device receives a key once, and a replay makes no second delivery (another
 * ephemeral key and CEK would be a second copy of the key in transit, and a second entry
 * for what is one delivery).  A replay must ask for the keys the provisioning delivered,
 * no more and no fewer; anything else is a conflict.
 */
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>

#include "kbd.h"
#include "routes.h"
#include "kbr_ca.h"
#include "kbr_cose.h"

/* The ota-encryption keys one provisioning delivers, at most. */
#define DELIVER_MAX 4

/* The requests for one (product, serial): the one in flight owns it, the others wait. */
typedef struct {
    char *key; /* product, NUL, serial */
    size_t keylen;
    kbd_req *head, *tail; /* waiting, linked by next */
    UT_hash_handle hh;
} flight;

struct kbd_flights {
    flight *by_key;
};

struct kbd_prov_req {
    char *key_name; /* as the request names the CA key */
    char *key, *label, *product, *serial, *batch, *factory, *firmware_version, *csr_pem;
    kbr_alg alg;
    bool batch_reserved;
    bool batch_full;            /* answered 429 unless the serial turns out to be provisioned */
    bool uses_exhausted;        /* likewise, for the token's max_uses */
    bool replay;                /* worker: answered with the certificate already issued */
    kbd_batch *slot;            /* event thread only */
    flight *flight;             /* event thread: the flight this request owns, or NULL */
    kbr_scope scope;            /* a copy of the token's scope, for worker checks */
    json_t *superseded;         /* rotation: fingerprints of the certificates replaced */
    char public_key_sha256[65]; /* the CSR's key, as the ledger names it */
    /* ota-encryption keys to deliver, by name, and their HSM labels */
    char *deliver[DELIVER_MAX], *deliver_label[DELIVER_MAX];
    size_t ndeliver;
};
typedef struct kbd_prov_req prov_ctx;

void kbd_prov_free(void *p)
{
    prov_ctx *c = p;

    if (c == NULL)
        return;
    free(c->key_name);
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
    for (size_t i = 0; i < c->ndeliver; i++) {
        free(c->deliver[i]);
        free(c->deliver_label[i]);
    }
    free(c);
}

static char *dup_opt(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* The CA key named: in the token's keys, active, a device-identity-ca serving product. */
static kbr_err authorize_ca_key(kbd_req *r, const char *name, const char *product, prov_ctx *c)
{
    const kbd_key *k = NULL;
    kbr_err err = kbd_req_use_key(r, name, &k);

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
    c->factory = strdup(b->factory);
    c->slot = b;
    return c->factory == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

/*
 * "deliver": 1 to DELIVER_MAX distinct names of active ota-encryption keys within the token's
 * keys, each serving the product.  A refusal about one of them names it as the entry's key,
 * so its custody view shows the denial.
 */
static kbr_err deliver_key(kbd_req *r, prov_ctx *c, size_t i, const char *name)
{
    const kbd_key *k = kbd_keys_find(r->d->keys, name);

    free(r->rec->key);
    r->rec->key = strdup(name);
    if (r->rec->key == NULL)
        return KBR_ERR_NOMEM;
    if (!kbr_namelist_match(&r->tok->scope.keys, name))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "deliver[%zu]: \"%s\" is outside the token's keys", i, name);
    if (k == NULL)
        return kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "deliver[%zu]: no key named \"%s\"", i, name);
    if (strcmp(k->purpose, "ota-encryption") != 0)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "deliver[%zu]: \"%s\" is a %s key; only ota-encryption keys are delivered",
                        i, name, k->purpose);
    if (k->retired)
        return kbr_fail(&r->msg, KBR_ERR_CONFLICT, "deliver[%zu]: \"%s\" is retired", i, name);
    if (!kbd_key_serves_product(k, c->product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "deliver[%zu]: key \"%s\" does not serve product \"%s\"", i, name,
                        c->product);
    c->deliver_label[i] = strdup(k->hsm_label);
    return c->deliver_label[i] == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

/* "deliver", as named: 1 to DELIVER_MAX distinct valid names (the keys are authorize's). */
static kbr_err parse_deliver(const json_t *body, prov_ctx *c, kbr_msg *msg)
{
    const json_t *v = json_object_get(body, "deliver"), *item;
    size_t i, j;

    if (v == NULL)
        return KBR_OK;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > DELIVER_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "deliver: must be an array of 1 to %d key names",
                        DELIVER_MAX);
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item) || !kbr_name_valid(json_string_value(item)))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "deliver[%zu]: not a valid name", i);
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_array_get(v, j)), json_string_value(item)) == 0)
                return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "deliver[%zu]: \"%s\" is named twice", i,
                                json_string_value(item));
    }
    json_array_foreach(v, i, item)
    {
        c->deliver[i] = strdup(json_string_value(item));
        c->ndeliver = i + 1;
        if (c->deliver[i] == NULL)
            return KBR_ERR_NOMEM;
    }
    return KBR_OK;
}

/* The keys to deliver: the entry names them all, and a refusal the one refused. */
static kbr_err authorize_deliver(kbd_req *r, prov_ctx *c)
{
    json_t *names;
    char *ca_key = NULL;
    kbr_err err = KBR_OK;
    size_t i;

    if (c->ndeliver == 0)
        return KBR_OK;
    names = json_array();
    for (i = 0; names != NULL && i < c->ndeliver; i++)
        if (json_array_append_new(names, json_string(c->deliver[i])) != 0)
            err = KBR_ERR_NOMEM;
    if (names == NULL || err != KBR_OK) {
        json_decref(names);
        return KBR_ERR_NOMEM;
    }
    json_object_set_new(r->rec->detail, "deliver", names);
    ca_key = r->rec->key != NULL ? strdup(r->rec->key) : NULL;
    for (i = 0; i < c->ndeliver && err == KBR_OK; i++)
        err = deliver_key(r, c, i, c->deliver[i]);
    /* granted, the entry names the CA key, as every provisioning's does */
    if (err == KBR_OK) {
        free(r->rec->key);
        r->rec->key = ca_key;
        ca_key = NULL;
    }
    free(ca_key);
    return err;
}

static kbr_err parse_device(const json_t *body, prov_ctx *c, kbr_msg *msg)
{
    static const char *const allowed[] = {"serial", "product", "batch", "firmware_version", NULL};
    const json_t *d = json_object_get(body, "device");
    const char *serial, *product, *batch, *fw;

    if (!json_is_object(d))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "device: required, {serial, product, batch, firmware_version}");
    if (kbd_json_only(d, allowed, msg) != KBR_OK ||
        kbd_json_name(d, "serial", true, &serial, msg) != KBR_OK ||
        kbd_json_name(d, "product", true, &product, msg) != KBR_OK ||
        kbd_json_name(d, "batch", true, &batch, msg) != KBR_OK ||
        kbd_json_name(d, "firmware_version", false, &fw, msg) != KBR_OK)
        return kbd_msg_prefix(msg, "device", KBR_ERR_BAD_REQUEST);
    c->serial = strdup(serial);
    c->product = strdup(product);
    c->batch = strdup(batch);
    c->firmware_version = dup_opt(fw);
    return c->serial == NULL || c->product == NULL || c->batch == NULL ||
                   (fw != NULL && c->firmware_version == NULL)
               ? KBR_ERR_NOMEM
               : KBR_OK;
}

static kbr_err parse_csr_field(const json_t *body, prov_ctx *c, kbr_msg *msg)
{
    const char *csr = NULL;

    if (kbd_json_str(body, "csr_pem", true, KBR_CA_CSR_MAX, &csr, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    c->csr_pem = strdup(csr);
    return c->csr_pem == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

/* The CA key's name ("key"); the key itself is the authorizer's to check. */
static kbr_err parse_ca_key(const json_t *body, prov_ctx *c, kbr_msg *msg)
{
    const char *name = NULL;

    if (kbd_json_name(body, "key", true, &name, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    c->key_name = strdup(name);
    return c->key_name == NULL ? KBR_ERR_NOMEM : KBR_OK;
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

static kbr_err build_issuer(kbd_worker *w, const char *key, const char *label, kbr_alg alg,
                            const json_t *cert, issuer_cache *ic, kbr_msg *msg)
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
    err = kbr_hsm_public_key(w->hsm, label, &pub);
    kbd_note_hsm(w->d, err);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "the HSM did not give the CA public key"));
    KBR_GUARD(kbr_ca_hsm_signer(w->hsm, label, alg, &ic->hctx, &signer));
    KBR_GUARD(kbr_ca_issuer_new(pem, &signer, pub, &ic->issuer, msg));
    KBR_ENSURE(asprintf(&ic->chain, "%s%s", pem,
                        json_string_value(json_object_get(cert, "chain_pem"))) >= 0,
               KBR_ERR_NOMEM);
    snprintf(ic->key, sizeof(ic->key), "%s", key);
    snprintf(ic->fingerprint, sizeof(ic->fingerprint), "%s", fp != NULL ? fp : "");
out:
    if (err != KBR_OK && ic->chain == NULL)
        ic->key[0] = '\0';
    EVP_PKEY_free(pub);
    return err;
}

kbr_err kbd_worker_issuer(kbd_worker *w, const char *key, const char *label, kbr_alg alg,
                          const kbr_ca_issuer **issuer, const char **chain,
                          const char **fingerprint, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *obj = NULL, *cert;
    issuer_cache *ic = w->issuer_cache;
    const char *fp;

    *issuer = NULL;
    if (ic == NULL) {
        ic = w->issuer_cache = calloc(1, sizeof(*ic));
        KBR_ENSURE(ic != NULL, KBR_ERR_NOMEM);
    }
    err = kbr_store_key_get(w->store, key, &obj);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, KBR_ERR_AUDIT, "the key registry could not be read"));
    cert = json_object_get(obj, "certificate");
    KBR_ENSURE(json_is_object(cert),
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "key: \"%s\" has no CA certificate yet; attach one with POST "
                        "/v1/keys/%s/certificate",
                        key, key));
    fp = json_string_value(json_object_get(cert, "fingerprint"));
    if (ic->issuer == NULL || strcmp(ic->key, key) != 0 || fp == NULL ||
        strcmp(ic->fingerprint, fp) != 0)
        KBR_GUARD(build_issuer(w, key, label, alg, cert, ic, msg));
    *issuer = ic->issuer;
    *chain = ic->chain;
    *fingerprint = ic->fingerprint;
out:
    json_decref(obj);
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

/* The certificate points to its issuer's CRL when crl_url is set. */
static kbr_err issue_cert(kbd_req *r, kbd_worker *w, prov_ctx *c, issued *out)
{
    kbr_err err = KBR_OK;
    const kbr_ca_issuer *issuer = NULL;
    const char *chain = NULL, *fingerprint = NULL;
    char *crl_url = NULL;

    KBR_GUARD(
        kbd_worker_issuer(w, c->key, c->label, c->alg, &issuer, &chain, &fingerprint, &r->msg));
    out->chain = strdup(chain);
    KBR_ENSURE(out->chain != NULL, KBR_ERR_NOMEM);
    snprintf(out->issuer_fingerprint, sizeof(out->issuer_fingerprint), "%s", fingerprint);
    crl_url = kbd_crl_url_for(&r->d->cfg, c->key, &err);
    KBR_GUARD(err);
    err = kbr_ca_issue_device(issuer, out->csr, c->serial, r->d->cfg.device_cert_days, time(NULL),
                              crl_url, &out->cert, &r->msg);
    kbd_note_hsm(r->d, err);
out:
    free(crl_url);
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

/* The CSR's key checked and the certificate made, the CSR read already; false when r holds
 * the refusal. */
static bool make_cert_for(kbd_req *r, kbd_worker *w, prov_ctx *c, issued *i)
{
    kbr_err err = KBR_OK;
    bool checked = key_precheck(r, w, c);

    if (checked)
        err = issue_cert(r, w, c, i);
    if (err != KBR_OK)
        fail_issue(r, err);
    return checked && err == KBR_OK;
}

/* The CSR read, its key checked, the certificate made; false when r holds the refusal. */
static bool make_cert(kbd_req *r, kbd_worker *w, prov_ctx *c, issued *i)
{
    kbr_err err = read_csr(r, c, i);

    if (err != KBR_OK) {
        fail_issue(r, err);
        return false;
    }
    return make_cert_for(r, w, c, i);
}

/* ---- deliveries of ota-encryption keys ---- */

/* A delivery made, ready to record: its COSE_Encrypt's address and the answer's base64. */
typedef struct {
    char sha256[65];
    char *b64;
} sealed;

static void sealed_free(sealed *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].b64);
}

/* "RSA (3072 bits)", "EC secp384r1": what the CSR's key is, for a refusal. */
static void key_kind(EVP_PKEY *pk, char *out, size_t n)
{
    char group[64] = "";

    if (pk != NULL && EVP_PKEY_is_a(pk, "EC") &&
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL) == 1)
        snprintf(out, n, "EC %s", group);
    else if (pk != NULL)
        snprintf(out, n, "%s (%d bits)", EVP_PKEY_get0_type_name(pk), EVP_PKEY_get_bits(pk));
    else
        snprintf(out, n, "unreadable");
}

/* The CSR's key as an uncompressed point of P-256; false when r holds the refusal (400). */
static bool device_point(kbd_req *r, const issued *i, unsigned char pt[65])
{
    EVP_PKEY *pk = kbr_ca_csr_pubkey_peek(i->csr);
    char group[32] = "", kind[96];
    BIGNUM *x = NULL, *y = NULL;
    bool ok = pk != NULL && EVP_PKEY_is_a(pk, "EC") &&
              EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                             NULL) == 1 &&
              strcmp(group, "prime256v1") == 0;

    ok = ok && EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
         EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1 &&
         BN_bn2binpad(x, pt + 1, 32) == 32 && BN_bn2binpad(y, pt + 33, 32) == 32;
    pt[0] = 0x04;
    BN_free(x);
    BN_free(y);
    if (!ok) {
        key_kind(pk, kind, sizeof(kind));
        kbd_req_error(r, KBR_ERR_BAD_REQUEST,
                      "deliver: keys are delivered only to an EC P-256 device key, and the "
                      "CSR's key is %s",
                      kind);
    }
    return ok;
}

/*
 * Each key sealed in the HSM process to the device's point, as a COSE_Encrypt kept as a
 * document of the record; false when r holds the refusal.  Nothing is released unless the
 * whole provisioning commits.
 */
static bool deliver_all(kbd_req *r, kbd_worker *w, prov_ctx *c, const unsigned char pt[65],
                        sealed *out)
{
    kbr_hsm_delivery_req req;
    kbr_hsm_delivery d;
    unsigned char *kid = NULL, *cose = NULL;
    size_t kidlen = 0, len = 0;
    kbr_err err = kbr_hex_decode(c->public_key_sha256, &kid, &kidlen);

    memset(&req, 0, sizeof(req));
    memcpy(req.recipient, pt, sizeof(req.recipient));
    kbr_cose_encrypt_contexts(&req.kdf_context, &req.kdf_context_len, &req.enc_structure,
                              &req.enc_structure_len);
    for (size_t i = 0; err == KBR_OK && i < c->ndeliver; i++) {
        err = kbr_hsm_deliver(w->hsm, c->deliver_label[i], &req, &d);
        kbd_note_hsm(r->d, err);
        if (err != KBR_OK) {
            kbd_req_error(r, err == KBR_ERR_FORBIDDEN ? KBR_ERR_HSM_KEY : err,
                          "deliver[%zu]: the HSM could not seal key \"%s\": %s", i, c->deliver[i],
                          kbr_err_str(err));
            break;
        }
        err = kbr_cose_encrypt(&d, kid, kidlen, &cose, &len);
        OPENSSL_cleanse(&d, sizeof(d));
        if (err == KBR_OK)
            err = kbd_req_document(r, cose, len, out[i].sha256);
        if (err == KBR_OK)
            err = kbr_b64_encode(cose, len, &out[i].b64);
        free(cose);
        cose = NULL;
        if (err != KBR_OK)
            kbd_req_error(r, err, "deliver[%zu]: the delivery could not be recorded", i);
    }
    free(kid);
    return err == KBR_OK;
}

/* The key.deliver effects, the answer's "delivered" and the entry's; after record_issue. */
static void record_deliveries(kbd_req *r, prov_ctx *c, const sealed *s, const char *now)
{
    json_t *answer = json_array(), *detail = json_array();
    kbr_err err = answer != NULL && detail != NULL ? KBR_OK : KBR_ERR_NOMEM;

    for (size_t i = 0; err == KBR_OK && i < c->ndeliver; i++) {
        err = kbd_req_effect(
            r, &(kbr_effect){.type = KBR_EFFECT_KEY_DELIVER,
                             .u.key_deliver = {.key = c->deliver[i],
                                               .product = c->product,
                                               .serial = c->serial,
                                               .recipient_public_key_sha256 = c->public_key_sha256,
                                               .cose_sha256 = s[i].sha256,
                                               .delivered_by = r->sub,
                                               .at = now}});
        if (err == KBR_OK &&
            (json_array_append_new(answer, json_pack("{s:s,s:s}", "key", c->deliver[i],
                                                     "cose_encrypt_b64", s[i].b64)) != 0 ||
             json_array_append_new(detail, json_pack("{s:s,s:s}", "key", c->deliver[i],
                                                     "cose_sha256", s[i].sha256)) != 0))
            err = KBR_ERR_NOMEM;
    }
    if (err == KBR_OK) {
        json_object_set(r->resp, "delivered", answer);
        json_object_set(r->rec->detail, "delivered", detail);
    }
    json_decref(answer);
    json_decref(detail);
    if (err != KBR_OK)
        kbd_req_error(r, err, "the deliveries could not be recorded");
}

/*
 * A replay asks for exactly the keys the provisioning delivered (in any order), and gets the
 * COSE_Encrypt each delivery made, from the store; false when r holds the refusal.
 */
static bool replay_deliveries(kbd_req *r, kbd_worker *w, prov_ctx *c, const json_t *dev,
                              json_t **answer, json_t **detail)
{
    const json_t *made = json_object_get(dev, "deliveries"), *one;
    unsigned char *body = NULL;
    size_t i, j, len = 0;
    char *b64 = NULL;
    bool same = json_array_size(made) == c->ndeliver;

    for (i = 0; same && i < c->ndeliver; i++) {
        bool found = false;
        json_array_foreach(made, j, one)
        {
            found =
                found || strcmp(json_string_value(json_object_get(one, "key")), c->deliver[i]) == 0;
        }
        same = found;
    }
    if (!same) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "deliver: device %s of product %s was provisioned delivering %zu key(s); "
                      "a provisioning sent again asks for the same keys",
                      c->serial, c->product, json_array_size(made));
        return false;
    }
    *answer = json_array();
    *detail = json_array();
    json_array_foreach(made, i, one)
    {
        const char *sha = json_string_value(json_object_get(one, "cose_sha256"));
        kbr_err err = kbr_store_document_get(w->store, sha, &body, &len, NULL);
        if (err == KBR_OK)
            err = kbr_b64_encode(body, len, &b64);
        if (err == KBR_OK &&
            (json_array_append_new(*answer,
                                   json_pack("{s:O,s:s}", "key", json_object_get(one, "key"),
                                             "cose_encrypt_b64", b64)) != 0 ||
             json_array_append_new(*detail,
                                   json_pack("{s:O,s:s,s:O}", "key", json_object_get(one, "key"),
                                             "cose_sha256", sha, "audit_seq",
                                             json_object_get(one, "audit_seq"))) != 0))
            err = KBR_ERR_NOMEM;
        free(body);
        free(b64);
        body = NULL;
        b64 = NULL;
        if (err != KBR_OK) {
            kbd_req_error(r, KBR_ERR_AUDIT, "the delivery of key %s could not be read",
                          json_string_value(json_object_get(one, "key")));
            return false;
        }
    }
    return true;
}

/* ---- a serial provisioned already: the same request again, or a conflict ---- */

static bool same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The certificate the provisioning issued: the device's first, recorded by its entry. */
static const json_t *provisioning_cert(const json_t *dev)
{
    const json_t *first = json_array_get(json_object_get(dev, "certificates"), 0);

    return json_integer_value(json_object_get(first, "audit_seq")) ==
                   json_integer_value(json_object_get(dev, "audit_seq"))
               ? first
               : NULL;
}

/* The ledger's name of the key a stored certificate carries; false if it cannot be read. */
static bool cert_key_name(const char *pem, char hex[65])
{
    kbr_ca_cert *cert = NULL;
    bool ok =
        pem != NULL && kbr_ca_cert_parse(pem, &cert, NULL) == KBR_OK &&
        kbr_store_spki_sha256(X509_get_X509_PUBKEY(kbr_ca_cert_x509_peek(cert)), hex) == KBR_OK;

    kbr_ca_cert_free(cert);
    return ok;
}

/*
 * Why the request is not the provisioning the ledger holds, or NULL when it is.  A device
 * revoked or rotated since has no provisioning answer left to give: its first certificate is
 * revoked or superseded.
 */
static const char *replay_refusal(const prov_ctx *c, const json_t *dev, const json_t *cert,
                                  char *why, size_t n)
{
    const json_t *revocation = json_object_get(dev, "revocation");
    const char *batch = json_string_value(json_object_get(dev, "batch"));
    const char *fw = json_string_value(json_object_get(dev, "firmware_version"));
    const char *issuer = json_string_value(json_object_get(cert, "issuer_key"));
    char key[65];

    if (!cert_key_name(json_string_value(json_object_get(cert, "pem")), key) ||
        strcmp(key, c->public_key_sha256) != 0)
        snprintf(why, n, "with another public key");
    else if (!same_text(batch, c->batch))
        snprintf(why, n, "in batch \"%s\"", batch != NULL ? batch : "");
    else if (!same_text(issuer, c->key))
        snprintf(why, n, "by CA key \"%s\"", issuer != NULL ? issuer : "");
    else if (!same_text(fw, c->firmware_version))
        snprintf(why, n, "with firmware_version %s", fw != NULL ? fw : "null");
    else if (json_is_object(revocation))
        snprintf(why, n, "and revoked at %s (%s)",
                 json_string_value(json_object_get(revocation, "at")),
                 json_string_value(json_object_get(revocation, "reason")));
    else if (!json_is_null(json_object_get(cert, "superseded_at")))
        snprintf(why, n, "and has rotated since: its provisioning certificate was superseded at %s",
                 json_string_value(json_object_get(cert, "superseded_at")));
    else
        return NULL;
    return why;
}

/*
 * The answer of the provisioning again, recorded as a read of what was issued: op
 * "provision.replay", no effects, not a key use.  Its entry names the one that issued it.
 */
static void answer_replay(kbd_req *r, kbd_worker *w, prov_ctx *c, const json_t *dev,
                          const json_t *cert)
{
    json_t *d = r->rec->detail, *delivered = NULL, *delivered_detail = NULL;
    char *op = NULL;

    if (!replay_deliveries(r, w, c, dev, &delivered, &delivered_detail))
        return;
    op = strdup("provision.replay");
    if (op == NULL) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        json_decref(delivered);
        json_decref(delivered_detail);
        return;
    }
    free(r->rec->op);
    r->rec->op = op;
    r->rec->key_use = false;
    json_object_set_new(d, "replay", json_true());
    json_object_set(d, "issued_audit_seq", json_object_get(dev, "audit_seq"));
    json_object_set_new(d, "certificate",
                        json_pack("{s:O,s:O,s:O}", "serial_number",
                                  json_object_get(cert, "serial_number"), "fingerprint",
                                  json_object_get(cert, "fingerprint"), "not_after",
                                  json_object_get(cert, "not_after")));
    r->resp = json_pack(
        "{s:O,s:O,s:O,s:O,s:O,s:b,s:O}", "certificate_pem", json_object_get(cert, "pem"),
        "chain_pem", json_object_get(cert, "chain_pem"), "serial_number",
        json_object_get(cert, "serial_number"), "not_after", json_object_get(cert, "not_after"),
        "fingerprint_sha256", json_object_get(cert, "fingerprint"), "replay", 1, "issued_audit_seq",
        json_object_get(dev, "audit_seq"));
    if (r->resp == NULL) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        json_decref(delivered);
        json_decref(delivered_detail);
        return;
    }
    if (c->ndeliver > 0) {
        json_object_set(r->resp, "delivered", delivered);
        json_object_set(d, "delivered", delivered_detail);
    }
    json_decref(delivered);
    json_decref(delivered_detail);
    r->add_audit_seq_to_resp = true;
    r->status = 200;
    c->replay = true;
}

static void provisioned_already(kbd_req *r, kbd_worker *w, prov_ctx *c, const json_t *dev)
{
    const json_t *cert = provisioning_cert(dev);
    char why[256];

    /* a device whose first certificate is not its provisioning's has no answer to give again */
    if (cert == NULL) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "device.serial: %s is already provisioned for product %s", c->serial,
                      c->product);
        return;
    }
    if (replay_refusal(c, dev, cert, why, sizeof(why)) != NULL) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "device.serial: %s is already provisioned for product %s %s", c->serial,
                      c->product, why);
        return;
    }
    answer_replay(r, w, c, dev, cert);
}

/*
 * Ledger checks before the HSM is asked: a serial provisioned already (the same request again,
 * or a conflict), room in the batch and in the token's uses, signed firmware.  false when r
 * holds the answer.
 */
static bool provision_precheck(kbd_req *r, kbd_worker *w, prov_ctx *c)
{
    json_t *found = NULL;
    kbr_err err = kbr_store_device_get(w->store, c->product, c->serial, &found);

    if (err == KBR_OK)
        provisioned_already(r, w, c, found);
    json_decref(found);
    if (err == KBR_OK)
        return false;
    if (err != KBR_ERR_NOT_FOUND) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the device ledger could not be read");
        return false;
    }
    if (c->uses_exhausted) {
        kbd_req_error(r, KBR_ERR_QUOTA, "token %s has used all of its max_uses", r->jti);
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

void kbd_provision_work(kbd_req *r, kbd_worker *w)
{
    prov_ctx *c = r->ctx;
    issued i = {0};
    sealed s[DELIVER_MAX];
    unsigned char point[65];
    char now[KBR_TIME_LEN], not_after[KBR_TIME_LEN];
    kbr_err err = read_csr(r, c, &i);

    memset(s, 0, sizeof(s));
    if (err != KBR_OK)
        fail_issue(r, err);
    if (err != KBR_OK || !provision_precheck(r, w, c) ||
        (c->ndeliver > 0 && !device_point(r, &i, point)) || !make_cert_for(r, w, c, &i) ||
        (c->ndeliver > 0 && !deliver_all(r, w, c, point, s))) {
        sealed_free(s, c->ndeliver);
        issued_cleanup(&i);
        return;
    }
    kbr_time_fmt(time(NULL), now);
    /* if a concurrent station took the key first, the ledger turns this into a 409 (one that
     * took the serial waited for this request's flight and asked after it) */
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
    if (c->ndeliver > 0 && r->err == KBR_OK)
        record_deliveries(r, c, s, now);
    sealed_free(s, c->ndeliver);
    issued_cleanup(&i);
}

/* ---- one flight per (product, serial), event thread ---- */

static void flight_free(flight *f)
{
    if (f == NULL)
        return;
    free(f->key);
    free(f);
}

void kbd_flights_free(kbd *d)
{
    flight *f, *tmp;

    if (d->flights == NULL)
        return;
    HASH_ITER(hh, d->flights->by_key, f, tmp)
    {
        HASH_DEL(d->flights->by_key, f);
        flight_free(f);
    }
    free(d->flights);
    d->flights = NULL;
}

static kbr_err flight_key(const prov_ctx *c, char **key, size_t *len)
{
    size_t p = strlen(c->product), s2 = strlen(c->serial);

    *len = p + 1 + s2;
    *key = malloc(*len);
    if (*key == NULL)
        return KBR_ERR_NOMEM;
    memcpy(*key, c->product, p + 1);
    memcpy(*key + p + 1, c->serial, s2);
    return KBR_OK;
}

static kbr_err reserve(kbd_req *r, prov_ctx *c, bool batch)
{
    kbr_err err = kbd_req_reserve_use(r);

    /* a token whose uses are spent may still be answered what it was issued */
    if (batch && err == KBR_ERR_QUOTA) {
        c->uses_exhausted = true;
        memset(&r->msg, 0, sizeof(r->msg));
        return KBR_OK;
    }
    if (err != KBR_OK)
        return err;
    if (batch && !c->batch_full) {
        c->slot->reserved++;
        c->batch_reserved = true;
    }
    return KBR_OK;
}

/* The request owns its flight now: reserve; its work goes to a worker next. */
static kbr_err provision_start(kbd_req *r, prov_ctx *c)
{
    /* a full batch still lets the worker tell a serial provisioned already from a new one */
    c->batch_full = c->slot->provisioned + c->slot->reserved >= c->slot->quantity;
    return reserve(r, c, true);
}

/* Runs r now (*waiting false), or after the requests for the same device already in flight
 * (*waiting true: flight_land() takes it on). */
static kbr_err provision_admit(kbd_req *r, prov_ctx *c, bool *waiting)
{
    kbr_err err = KBR_OK;
    struct kbd_flights *fl = r->d->flights;
    flight *f = NULL;
    char *key = NULL;
    size_t len = 0;

    if (fl == NULL) {
        fl = r->d->flights = calloc(1, sizeof(*fl));
        KBR_ENSURE(fl != NULL, KBR_ERR_NOMEM);
    }
    KBR_GUARD(flight_key(c, &key, &len));
    HASH_FIND(hh, fl->by_key, key, len, f);
    if (f != NULL) {
        r->next = NULL;
        if (f->tail != NULL)
            f->tail->next = r;
        else
            f->head = r;
        f->tail = r;
        *waiting = true;
        goto out;
    }
    f = calloc(1, sizeof(*f));
    KBR_ENSURE(f != NULL, KBR_ERR_NOMEM);
    f->key = key;
    f->keylen = len;
    key = NULL;
    HASH_ADD_KEYPTR(hh, fl->by_key, f->key, f->keylen, f);
    c->flight = f;
    err = provision_start(r, c);
out:
    free(key);
    return err;
}

/* The flight passes to the next request waiting in it, or ends. */
static void flight_land(kbd_req *r, prov_ctx *c)
{
    flight *f = c->flight;
    kbd_req *next = f->head;
    prov_ctx *nc;
    kbr_err err;

    c->flight = NULL;
    if (next == NULL) {
        HASH_DEL(r->d->flights->by_key, f);
        flight_free(f);
        return;
    }
    f->head = next->next;
    if (f->head == NULL)
        f->tail = NULL;
    next->next = NULL;
    nc = next->ctx;
    nc->flight = f;
    err = provision_start(next, nc);
    /* refused now, it is answered like any refusal, and its settle passes the flight on */
    if (err != KBR_OK) {
        char why[KBR_MSG_LEN];
        snprintf(why, sizeof(why), "%s",
                 next->msg.text[0] != '\0' ? next->msg.text : kbr_err_str(err));
        kbd_req_resume(next, err, why);
        return;
    }
    kbd_req_resume(next, KBR_OK, NULL);
}

/* Event thread, once the record settled (or the request was refused). */
void kbd_provision_settle(kbd_req *r, bool committed)
{
    prov_ctx *c = r->ctx;

    if (c->batch_reserved) {
        c->slot->reserved--;
        /* a replay took no unit of the batch */
        if (committed && !c->replay)
            c->slot->provisioned++;
        c->batch_reserved = false;
    }
    if (c->flight != NULL)
        flight_land(r, c);
}

/* ---- provisioning's stages ---- */

kbr_err kbd_provision_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"key", "csr_pem", "device", "deliver", NULL};
    prov_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(kbd_json_only(r->body, allowed, msg) == KBR_OK, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(parse_device(r->body, c, msg));
    KBR_GUARD(parse_csr_field(r->body, c, msg));
    KBR_GUARD(parse_ca_key(r->body, c, msg));
    KBR_GUARD(parse_deliver(r->body, c, msg));
out:
    return err;
}

/* What was asked for, in the record of a refusal as of a grant, once the device is read. */
kbr_err kbd_provision_describe(kbd_req *r, const void *req)
{
    const prov_ctx *c = req;

    if (c->serial == NULL || c->product == NULL || c->batch == NULL)
        return KBR_OK;
    json_object_set_new(r->rec->detail, "device",
                        json_pack("{s:s,s:s,s:s,s:s?}", "serial", c->serial, "product", c->product,
                                  "batch", c->batch, "firmware_version", c->firmware_version));
    return KBR_OK;
}

/* The CA key, the device and its batch, then the keys to deliver, are the token's. */
kbr_err kbd_provision_authorize(kbd_req *r, void *req)
{
    prov_ctx *c = req;
    kbr_err err = KBR_OK;

    KBR_GUARD(authorize_ca_key(r, c->key_name, c->product, c));
    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.devices, c->serial),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "device.serial: \"%s\" is outside the token's devices", c->serial));
    KBR_GUARD(check_batch(r, c));
    KBR_GUARD(authorize_deliver(r, c));
out:
    return err;
}

/* One request per (product, serial) at a time: r owns the device's flight and reserves a unit
 * of the batch and a use of the token, or waits for the requests ahead of it. */
kbr_err kbd_provision_wait(kbd_req *r, void *req, bool *waiting)
{
    *waiting = false;
    return provision_admit(r, req, waiting);
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
    if (json_is_object(json_object_get(dev, "revocation"))) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "device %s of product %s was revoked at %s; a revoked device gets no new "
                      "certificate",
                      c->serial, c->product,
                      json_string_value(json_object_get(json_object_get(dev, "revocation"), "at")));
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

void kbd_rotate_work(kbd_req *r, kbd_worker *w)
{
    prov_ctx *c = r->ctx;
    issued i = {0};
    char now[KBR_TIME_LEN], not_after[KBR_TIME_LEN];

    if (!rotate_precheck(r, w, c) || !make_cert(r, w, c, &i)) {
        issued_cleanup(&i);
        return;
    }
    kbr_time_fmt(time(NULL), now);
    /* the ledger rules a concurrent request can break between the check and the commit */
    snprintf(r->msg.text, sizeof(r->msg.text),
             "csr_pem: the CSR's public key is already the identity of another device, or device "
             "%s was revoked",
             c->serial);
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

kbr_err kbd_rotate_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"key", "csr_pem", "product", NULL};
    const char *product = NULL;
    prov_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_name(r->body, "product", true, &product, msg));
    KBR_ENSURE(kbr_name_valid(r->arg),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "device serial in the path is not valid"));
    c->serial = strdup(r->arg);
    c->product = strdup(product);
    KBR_ENSURE(c->serial != NULL && c->product != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(parse_csr_field(r->body, c, msg));
    KBR_GUARD(parse_ca_key(r->body, c, msg));
out:
    return err;
}

/* The entry names the device, once the request does. */
kbr_err kbd_rotate_describe(kbd_req *r, const void *req)
{
    const prov_ctx *c = req;

    if (c->serial != NULL && c->product != NULL)
        json_object_set_new(r->rec->detail, "device",
                            json_pack("{s:s,s:s}", "serial", c->serial, "product", c->product));
    return KBR_OK;
}

/* The CA key and the device are the token's; the device's batch, which the ledger knows, is
 * checked by the worker against a copy of the token's scope. */
kbr_err kbd_rotate_authorize(kbd_req *r, void *req)
{
    prov_ctx *c = req;
    kbr_err err = KBR_OK;

    KBR_GUARD(kbd_scope_copy(&r->tok->scope, &c->scope));
    KBR_GUARD(authorize_ca_key(r, c->key_name, c->product, c));
    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.devices, c->serial),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "device \"%s\" is outside the token's devices",
                        c->serial));
out:
    return err;
}
