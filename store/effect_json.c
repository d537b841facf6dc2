/*
 * effect_json.c - the JSON form of ledger effects: written as RFC 8785 text straight from the
 * typed effect (what an audit entry carries and hashes), and read back into typed effects that
 * kbr_effects_add then checks (effect.c), so the rules stay in one place.
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* ---- written ----
 *
 * Written as canonical text (RFC 8785) straight from the typed effect: what an audit entry
 * carries and hashes.  Each shape names its members in JCS order ("type" among them), which
 * kbr_jcs_key checks.  A member the rules require is kbr_jcs_member_str, one that is null when
 * absent kbr_jcs_member_nullable, one left out when absent kbr_jcs_member_opt.
 */

static void strings_w(kbr_jcs *w, const char *name, kbr_strings l)
{
    kbr_jcs_key(w, name);
    kbr_jcs_array(w);
    for (size_t i = 0; i < l.n; i++)
        kbr_jcs_str(w, l.items[i]);
    kbr_jcs_end(w);
}

static void type_w(kbr_jcs *w, const kbr_effect *e)
{
    kbr_jcs_member_str(w, "type", kbr_effect_type_name(e->type));
}

/* chain_pem only where it is kept: a device's certificate has none. */
static void cert_w(kbr_jcs *w, const kbr_effect_cert *c)
{
    kbr_jcs_key(w, "certificate");
    kbr_jcs_object(w);
    kbr_jcs_member_opt(w, "chain_pem", c->chain_pem);
    kbr_jcs_member_str(w, "fingerprint", c->fingerprint);
    kbr_jcs_member_str(w, "not_after", c->not_after);
    kbr_jcs_member_str(w, "pem", c->pem);
    kbr_jcs_member_str(w, "serial_number", c->serial_number);
    kbr_jcs_end(w);
}

static void key_create_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_key_create *k = &e->u.key_create;

    kbr_jcs_member_str(w, "algorithm", k->algorithm);
    kbr_jcs_member_str(w, "created_at", k->created_at);
    kbr_jcs_member_nullable(w, "hsm_id", k->hsm_id);
    kbr_jcs_member_nullable(w, "hsm_label", k->hsm_label);
    kbr_jcs_member_str(w, "name", k->name);
    kbr_jcs_member_nullable(w, "owner", k->owner);
    strings_w(w, "products", k->products);
    kbr_jcs_member_nullable(w, "public_key_pem", k->public_key_pem);
    kbr_jcs_member_nullable(w, "public_key_sha256", k->public_key_sha256);
    kbr_jcs_member_str(w, "purpose", k->purpose);
    type_w(w, e);
}

/* The key's certificate's members, flat, with the key's own among them. */
static void key_certificate_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_key_certificate *k = &e->u.key_certificate;

    kbr_jcs_member_str(w, "at", k->at);
    kbr_jcs_member_opt(w, "chain_pem", k->cert.chain_pem);
    kbr_jcs_member_str(w, "fingerprint", k->cert.fingerprint);
    kbr_jcs_member_nullable(w, "issuer_key", k->issuer_key);
    kbr_jcs_member_str(w, "name", k->name);
    kbr_jcs_member_str(w, "not_after", k->cert.not_after);
    kbr_jcs_member_str(w, "pem", k->cert.pem);
    kbr_jcs_member_str(w, "serial_number", k->cert.serial_number);
    type_w(w, e);
}

static void token_issue_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_token_issue *t = &e->u.token_issue;

    kbr_jcs_member_nullable(w, "cnf_x5t", t->cnf_x5t);
    kbr_jcs_member_str(w, "expires_at", t->expires_at);
    kbr_jcs_member_str(w, "issued_at", t->issued_at);
    kbr_jcs_member_nullable(w, "issued_by", t->issued_by);
    kbr_jcs_member_str(w, "jti", t->jti);
    kbr_jcs_member_opt(w, "kid", t->kid);
    kbr_jcs_member_nullable(w, "not_before", t->not_before);
    kbr_jcs_member_bool(w, "orphan", t->orphan);
    kbr_jcs_member_nullable(w, "parent_jti", t->parent_jti);
    kbr_jcs_key(w, "scope");
    kbr_jcs_json_text(w, t->scope_json);
    kbr_jcs_member_str(w, "sub", t->sub);
    type_w(w, e);
}

static void token_revoke_w(kbr_jcs *w, const kbr_effect *e)
{
    kbr_jcs_member_str(w, "at", e->u.token_revoke.at);
    strings_w(w, "jtis", e->u.token_revoke.jtis);
    kbr_jcs_member_nullable(w, "reason", e->u.token_revoke.reason);
    type_w(w, e);
}

static void firmware_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_firmware_sign *f = &e->u.firmware_sign;

    kbr_jcs_member_nullable(w, "build_id", f->build_id);
    kbr_jcs_key(w, "components");
    kbr_jcs_array(w);
    for (size_t i = 0; i < f->ncomponents; i++) {
        kbr_jcs_object(w);
        kbr_jcs_member_str(w, "name", f->components[i].name);
        kbr_jcs_member_nullable(w, "purl", f->components[i].purl);
        kbr_jcs_member_nullable(w, "version", f->components[i].version);
        kbr_jcs_end(w);
    }
    kbr_jcs_end(w);
    kbr_jcs_member_str(w, "digest", f->digest);
    kbr_jcs_member_nullable(w, "hash", f->hash);
    kbr_jcs_member_nullable(w, "key", f->key);
    kbr_jcs_member_nullable(w, "name", f->name);
    kbr_jcs_member_str(w, "product", f->product);
    kbr_jcs_member_opt(w, "sbom_sha256", f->sbom_sha256);
    kbr_jcs_member_str(w, "signed_at", f->signed_at);
    type_w(w, e);
    kbr_jcs_member_str(w, "version", f->version);
}

static void batch_create_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_batch_create *b = &e->u.batch_create;

    kbr_jcs_member_str(w, "batch", b->batch);
    kbr_jcs_member_str(w, "created_at", b->created_at);
    kbr_jcs_member_str(w, "created_by", b->created_by);
    kbr_jcs_member_str(w, "factory", b->factory);
    strings_w(w, "markets", b->markets);
    kbr_jcs_member_str(w, "product", b->product);
    kbr_jcs_member_int(w, "quantity", b->quantity);
    type_w(w, e);
}

static void provision_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_device_provision *d = &e->u.device_provision;

    kbr_jcs_member_str(w, "at", d->at);
    kbr_jcs_member_str(w, "batch", d->batch);
    cert_w(w, &d->cert);
    kbr_jcs_member_str(w, "csr_sha256", d->csr_sha256);
    kbr_jcs_member_str(w, "factory", d->factory);
    kbr_jcs_member_nullable(w, "firmware_version", d->firmware_version);
    kbr_jcs_member_str(w, "issuer_fingerprint", d->issuer_fingerprint);
    kbr_jcs_member_str(w, "issuer_key", d->issuer_key);
    kbr_jcs_member_str(w, "product", d->product);
    kbr_jcs_member_nullable(w, "public_key_sha256", d->public_key_sha256);
    kbr_jcs_member_str(w, "serial", d->serial);
    type_w(w, e);
}

static void rotate_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_device_rotate *d = &e->u.device_rotate;

    kbr_jcs_member_str(w, "at", d->at);
    cert_w(w, &d->cert);
    kbr_jcs_member_str(w, "csr_sha256", d->csr_sha256);
    kbr_jcs_member_str(w, "issuer_fingerprint", d->issuer_fingerprint);
    kbr_jcs_member_str(w, "issuer_key", d->issuer_key);
    kbr_jcs_member_str(w, "product", d->product);
    kbr_jcs_member_nullable(w, "public_key_sha256", d->public_key_sha256);
    kbr_jcs_member_str(w, "serial", d->serial);
    type_w(w, e);
}

static void debug_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_debug_authorize *d = &e->u.debug_authorize;

    kbr_jcs_member_str(w, "at", d->at);
    kbr_jcs_member_str(w, "challenge_sha256", d->challenge_sha256);
    kbr_jcs_member_str(w, "expires_at", d->expires_at);
    kbr_jcs_member_str(w, "key", d->key);
    kbr_jcs_member_str(w, "message_sha256", d->message_sha256);
    kbr_jcs_member_str(w, "permissions", d->permissions);
    kbr_jcs_member_str(w, "principal", d->principal);
    kbr_jcs_member_str(w, "product", d->product);
    kbr_jcs_member_str(w, "serial", d->serial);
    kbr_jcs_member_str(w, "signature_sha256", d->signature_sha256);
    kbr_jcs_member_str(w, "ticket", d->ticket);
    type_w(w, e);
}

static void ota_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_ota_report *o = &e->u.ota_report;

    kbr_jcs_member_str(w, "at", o->at);
    kbr_jcs_member_nullable(w, "campaign", o->campaign);
    kbr_jcs_member_str(w, "product", o->product);
    kbr_jcs_member_str(w, "reported_by", o->reported_by);
    kbr_jcs_key(w, "results");
    kbr_jcs_array(w);
    for (size_t i = 0; i < o->nresults; i++) {
        kbr_jcs_object(w);
        kbr_jcs_member_str(w, "at", o->results[i].at);
        kbr_jcs_member_str(w, "serial", o->results[i].serial);
        kbr_jcs_member_str(w, "status", o->results[i].status);
        kbr_jcs_end(w);
    }
    kbr_jcs_end(w);
    type_w(w, e);
    kbr_jcs_member_str(w, "version", o->version);
}

/* Absent members stay absent, so a checkpoint of an older broker reads and writes as it was. */
static void checkpoint_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_checkpoint *c = &e->u.checkpoint;

    kbr_jcs_member_opt(w, "key_id", c->key_id);
    kbr_jcs_member_opt(w, "key_label", c->key_label);
    kbr_jcs_member_opt(w, "next_key_id", c->next_key_id);
    kbr_jcs_member_opt(w, "next_key_label", c->next_key_label);
    kbr_jcs_member_opt(w, "next_key_pem", c->next_key_pem);
    kbr_jcs_member_opt(w, "note", c->note);
    kbr_jcs_member_opt(w, "origin", c->origin);
    kbr_jcs_member_opt(w, "public_key_pem", c->public_key_pem);
    kbr_jcs_member_str(w, "root_hash", c->root_hash);
    kbr_jcs_member_str(w, "signature_b64", c->signature_b64);
    kbr_jcs_member_int(w, "size", c->size);
    kbr_jcs_member_str(w, "time", c->time);
    type_w(w, e);
}

static void revoke_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_device_revoke *d = &e->u.device_revoke;

    kbr_jcs_member_str(w, "at", d->at);
    kbr_jcs_key(w, "certificates");
    kbr_jcs_array(w);
    for (size_t i = 0; i < d->ncertificates; i++) {
        kbr_jcs_object(w);
        kbr_jcs_member_str(w, "fingerprint", d->certificates[i].fingerprint);
        kbr_jcs_member_str(w, "issuer_key", d->certificates[i].issuer_key);
        kbr_jcs_member_str(w, "serial_number", d->certificates[i].serial_number);
        kbr_jcs_end(w);
    }
    kbr_jcs_end(w);
    kbr_jcs_member_str(w, "product", d->product);
    kbr_jcs_member_str(w, "reason", d->reason);
    kbr_jcs_member_int(w, "reason_code", d->reason_code);
    kbr_jcs_member_str(w, "revoked_by", d->revoked_by);
    kbr_jcs_member_str(w, "serial", d->serial);
    type_w(w, e);
}

static void crl_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_crl_issue *l = &e->u.crl_issue;

    kbr_jcs_member_int(w, "entries", l->entries);
    kbr_jcs_member_str(w, "issuer_fingerprint", l->issuer_fingerprint);
    kbr_jcs_member_str(w, "issuer_key", l->issuer_key);
    kbr_jcs_member_str(w, "next_update", l->next_update);
    kbr_jcs_member_int(w, "number", l->number);
    kbr_jcs_member_str(w, "sha256", l->sha256);
    kbr_jcs_member_str(w, "this_update", l->this_update);
    type_w(w, e);
}

static void deliver_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_key_deliver *d = &e->u.key_deliver;

    kbr_jcs_member_str(w, "at", d->at);
    kbr_jcs_member_str(w, "cose_sha256", d->cose_sha256);
    kbr_jcs_member_str(w, "delivered_by", d->delivered_by);
    kbr_jcs_member_str(w, "key", d->key);
    kbr_jcs_member_str(w, "product", d->product);
    kbr_jcs_member_str(w, "recipient_public_key_sha256", d->recipient_public_key_sha256);
    kbr_jcs_member_str(w, "serial", d->serial);
    type_w(w, e);
}

static void incident_w(kbr_jcs *w, const kbr_effect *e)
{
    const kbr_fx_incident_create *i = &e->u.incident_create;

    kbr_jcs_member_bool(w, "actively_exploited", i->actively_exploited);
    kbr_jcs_member_str(w, "aware_at", i->aware_at);
    kbr_jcs_key(w, "builds");
    kbr_jcs_array(w);
    for (size_t k = 0; k < i->nbuilds; k++) {
        kbr_jcs_object(w);
        kbr_jcs_member_str(w, "product", i->builds[k].product);
        kbr_jcs_member_str(w, "version", i->builds[k].version);
        kbr_jcs_end(w);
    }
    kbr_jcs_end(w);
    kbr_jcs_member_str(w, "component", i->component);
    kbr_jcs_member_str(w, "created_at", i->created_at);
    kbr_jcs_member_str(w, "created_by", i->created_by);
    kbr_jcs_member_nullable(w, "cve", i->cve);
    kbr_jcs_key(w, "exposure");
    kbr_jcs_json_text(w, i->exposure_json);
    kbr_jcs_member_str(w, "id", i->id);
    kbr_jcs_member_nullable(w, "product", i->product);
    kbr_jcs_key(w, "query");
    kbr_jcs_json_text(w, i->query_json);
    kbr_jcs_member_str(w, "severity", i->severity);
    kbr_jcs_member_str(w, "title", i->title);
    type_w(w, e);
}

static void effect_w(kbr_jcs *w, const kbr_effect *e)
{
    kbr_jcs_object(w);
    switch (e->type) {
    case KBR_EFFECT_KEY_CREATE:
        key_create_w(w, e);
        break;
    case KBR_EFFECT_KEY_RETIRE:
        kbr_jcs_member_str(w, "at", e->u.key_retire.at);
        kbr_jcs_member_str(w, "name", e->u.key_retire.name);
        type_w(w, e);
        break;
    case KBR_EFFECT_KEY_CERTIFICATE:
        key_certificate_w(w, e);
        break;
    case KBR_EFFECT_TOKEN_ISSUE:
        token_issue_w(w, e);
        break;
    case KBR_EFFECT_TOKEN_REVOKE:
        token_revoke_w(w, e);
        break;
    case KBR_EFFECT_FIRMWARE_SIGN:
        firmware_w(w, e);
        break;
    case KBR_EFFECT_BATCH_CREATE:
        batch_create_w(w, e);
        break;
    case KBR_EFFECT_DEVICE_PROVISION:
        provision_w(w, e);
        break;
    case KBR_EFFECT_DEVICE_ROTATE:
        rotate_w(w, e);
        break;
    case KBR_EFFECT_DEBUG_AUTHORIZE:
        debug_w(w, e);
        break;
    case KBR_EFFECT_OTA_REPORT:
        ota_w(w, e);
        break;
    case KBR_EFFECT_CHECKPOINT:
        checkpoint_w(w, e);
        break;
    case KBR_EFFECT_TOKEN_REVOKE_ALL:
        kbr_jcs_member_str(w, "at", e->u.token_revoke_all.at);
        kbr_jcs_member_nullable(w, "reason", e->u.token_revoke_all.reason);
        type_w(w, e);
        break;
    case KBR_EFFECT_ISSUER_ROTATE:
        kbr_jcs_member_str(w, "at", e->u.issuer_rotate.at);
        kbr_jcs_member_str(w, "hsm_label", e->u.issuer_rotate.hsm_label);
        kbr_jcs_member_str(w, "kid", e->u.issuer_rotate.kid);
        kbr_jcs_member_str(w, "public_key_pem", e->u.issuer_rotate.public_key_pem);
        kbr_jcs_member_nullable(w, "replaces", e->u.issuer_rotate.replaces);
        type_w(w, e);
        break;
    case KBR_EFFECT_DEVICE_REVOKE:
        revoke_w(w, e);
        break;
    case KBR_EFFECT_CRL_ISSUE:
        crl_w(w, e);
        break;
    case KBR_EFFECT_KEY_DELIVER:
        deliver_w(w, e);
        break;
    case KBR_EFFECT_PRODUCT_REGISTER:
        kbr_jcs_member_str(w, "at", e->u.product_register.at);
        kbr_jcs_member_str(w, "by", e->u.product_register.by);
        kbr_jcs_member_str(w, "placed_on_market", e->u.product_register.placed_on_market);
        kbr_jcs_member_str(w, "product", e->u.product_register.product);
        kbr_jcs_member_str(w, "support_until", e->u.product_register.support_until);
        type_w(w, e);
        break;
    case KBR_EFFECT_INCIDENT_CREATE:
        incident_w(w, e);
        break;
    case KBR_EFFECT_INCIDENT_FIX:
        kbr_jcs_member_str(w, "at", e->u.incident_fix.at);
        kbr_jcs_member_str(w, "available_at", e->u.incident_fix.available_at);
        kbr_jcs_member_str(w, "fixed_version", e->u.incident_fix.fixed_version);
        kbr_jcs_member_str(w, "id", e->u.incident_fix.id);
        type_w(w, e);
        break;
    case KBR_EFFECT_INCIDENT_REPORT:
        kbr_jcs_member_str(w, "at", e->u.incident_report.at);
        kbr_jcs_member_str(w, "by", e->u.incident_report.by);
        kbr_jcs_member_str(w, "id", e->u.incident_report.id);
        kbr_jcs_member_str(w, "sha256", e->u.incident_report.sha256);
        kbr_jcs_member_str(w, "stage", e->u.incident_report.stage);
        type_w(w, e);
        break;
    default:
        kbr_jcs_fail(w, KBR_ERR_INTERNAL);
    }
    kbr_jcs_end(w);
}

void kbr_effects_write(const kbr_effects *fx, kbr_jcs *w)
{
    kbr_jcs_array(w);
    for (size_t i = 0; i < kbr_effects_count(fx); i++)
        effect_w(w, kbr_effects_get(fx, i));
    kbr_jcs_end(w);
}

kbr_err kbr_effects_to_json(const kbr_effects *fx, json_t **out)
{
    kbr_err err = KBR_OK;
    kbr_jcs w = {0};
    char *text = NULL;
    size_t len;

    *out = NULL;
    kbr_effects_write(fx, &w);
    KBR_GUARD(kbr_jcs_finish(&w, &text, &len));
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    free(text);
    return err;
}

/* ---- read ---- */

/*
 * Reading the JSON form: members are borrowed from the document into an effect that
 * kbr_effects_add then checks and copies, so the rules stay in one place.  Here only the JSON
 * types are checked: a member absent or null reads as NULL.
 */
typedef struct {
    kbr_arena *arena; /* the list's: scratch arrays live as long as it */
    kbr_err err;
} reader;

static const char *rd_str(reader *r, const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);

    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        r->err = KBR_ERR_INTERNAL;
        return NULL;
    }
    return json_string_value(v);
}

static int64_t rd_int(reader *r, const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);

    if (!json_is_integer(v)) {
        r->err = KBR_ERR_INTERNAL;
        return 0;
    }
    return json_integer_value(v);
}

static const json_t *rd_array(reader *r, const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);

    if (!json_is_array(v))
        r->err = KBR_ERR_INTERNAL;
    return v;
}

static void *rd_alloc(reader *r, size_t n, size_t size)
{
    void *p = kbr_arena_alloc(r->arena, (n > 0 ? n : 1) * size);

    if (p == NULL)
        r->err = KBR_ERR_NOMEM;
    return p;
}

static kbr_strings rd_strings(reader *r, const json_t *o, const char *name)
{
    const json_t *arr = rd_array(r, o, name), *v;
    size_t i, n = json_array_size(arr);
    const char **items = rd_alloc(r, n, sizeof(*items));

    if (items == NULL)
        return (kbr_strings){NULL, 0};
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v))
            r->err = KBR_ERR_INTERNAL;
        items[i] = json_string_value(v);
    }
    return (kbr_strings){items, n};
}

static kbr_effect_cert rd_cert(reader *r, const json_t *c)
{
    if (!json_is_object(c))
        r->err = KBR_ERR_INTERNAL;
    return (kbr_effect_cert){.serial_number = rd_str(r, c, "serial_number"),
                             .pem = rd_str(r, c, "pem"),
                             .chain_pem = rd_str(r, c, "chain_pem"),
                             .not_after = rd_str(r, c, "not_after"),
                             .fingerprint = rd_str(r, c, "fingerprint")};
}

static void rd_key_create(reader *r, const json_t *o, kbr_effect *e)
{
    e->u.key_create = (kbr_fx_key_create){
        .name = rd_str(r, o, "name"),
        .purpose = rd_str(r, o, "purpose"),
        .algorithm = rd_str(r, o, "algorithm"),
        .owner = rd_str(r, o, "owner"),
        .hsm_label = rd_str(r, o, "hsm_label"),
        .hsm_id = rd_str(r, o, "hsm_id"),
        .public_key_pem = rd_str(r, o, "public_key_pem"),
        .public_key_sha256 = rd_str(r, o, "public_key_sha256"),
        .created_at = rd_str(r, o, "created_at"),
        .products = rd_strings(r, o, "products"),
    };
}

static void rd_token_issue(reader *r, const json_t *o, kbr_effect *e)
{
    const json_t *scope = json_object_get(o, "scope"), *orphan = json_object_get(o, "orphan");
    char *scope_json = NULL;

    if (!json_is_object(scope) || kbr_json_canonical(scope, &scope_json) != KBR_OK ||
        (orphan != NULL && !json_is_null(orphan) && !json_is_boolean(orphan)))
        r->err = KBR_ERR_INTERNAL;
    e->u.token_issue = (kbr_fx_token_issue){
        .jti = rd_str(r, o, "jti"),
        .sub = rd_str(r, o, "sub"),
        .issued_by = rd_str(r, o, "issued_by"),
        .issued_at = rd_str(r, o, "issued_at"),
        .not_before = rd_str(r, o, "not_before"),
        .expires_at = rd_str(r, o, "expires_at"),
        .cnf_x5t = rd_str(r, o, "cnf_x5t"),
        .parent_jti = rd_str(r, o, "parent_jti"),
        .scope_json = scope_json != NULL ? kbr_arena_strdup(r->arena, scope_json) : NULL,
        .orphan = json_is_true(orphan),
        .kid = rd_str(r, o, "kid"),
    };
    free(scope_json);
}

static void rd_firmware(reader *r, const json_t *o, kbr_effect *e)
{
    const json_t *arr = json_object_get(o, "components"), *c;
    size_t i, n = json_array_size(arr);
    kbr_effect_component *comps = rd_alloc(r, n, sizeof(*comps));

    if (arr != NULL && !json_is_null(arr) && !json_is_array(arr))
        r->err = KBR_ERR_INTERNAL;
    json_array_foreach(arr, i, c)
    {
        if (!json_is_object(c) || comps == NULL) {
            r->err = r->err != KBR_OK ? r->err : KBR_ERR_INTERNAL;
            break;
        }
        comps[i] = (kbr_effect_component){.name = rd_str(r, c, "name"),
                                          .version = rd_str(r, c, "version"),
                                          .purl = rd_str(r, c, "purl")};
    }
    e->u.firmware_sign = (kbr_fx_firmware_sign){
        .product = rd_str(r, o, "product"),
        .version = rd_str(r, o, "version"),
        .digest = rd_str(r, o, "digest"),
        .hash = rd_str(r, o, "hash"),
        .key = rd_str(r, o, "key"),
        .name = rd_str(r, o, "name"),
        .build_id = rd_str(r, o, "build_id"),
        .signed_at = rd_str(r, o, "signed_at"),
        .sbom_sha256 = rd_str(r, o, "sbom_sha256"),
        .components = comps,
        .ncomponents = n,
    };
}

static void rd_batch(reader *r, const json_t *o, kbr_effect *e)
{
    e->u.batch_create = (kbr_fx_batch_create){
        .batch = rd_str(r, o, "batch"),
        .product = rd_str(r, o, "product"),
        .factory = rd_str(r, o, "factory"),
        .created_at = rd_str(r, o, "created_at"),
        .created_by = rd_str(r, o, "created_by"),
        .quantity = rd_int(r, o, "quantity"),
        .markets = rd_strings(r, o, "markets"),
    };
}

static void rd_provision(reader *r, const json_t *o, kbr_effect *e)
{
    e->u.device_provision = (kbr_fx_device_provision){
        .product = rd_str(r, o, "product"),
        .serial = rd_str(r, o, "serial"),
        .batch = rd_str(r, o, "batch"),
        .factory = rd_str(r, o, "factory"),
        .firmware_version = rd_str(r, o, "firmware_version"),
        .csr_sha256 = rd_str(r, o, "csr_sha256"),
        .public_key_sha256 = rd_str(r, o, "public_key_sha256"),
        .at = rd_str(r, o, "at"),
        .issuer_key = rd_str(r, o, "issuer_key"),
        .issuer_fingerprint = rd_str(r, o, "issuer_fingerprint"),
        .cert = rd_cert(r, json_object_get(o, "certificate")),
    };
}

static void rd_rotate(reader *r, const json_t *o, kbr_effect *e)
{
    e->u.device_rotate = (kbr_fx_device_rotate){
        .product = rd_str(r, o, "product"),
        .serial = rd_str(r, o, "serial"),
        .at = rd_str(r, o, "at"),
        .csr_sha256 = rd_str(r, o, "csr_sha256"),
        .public_key_sha256 = rd_str(r, o, "public_key_sha256"),
        .issuer_key = rd_str(r, o, "issuer_key"),
        .issuer_fingerprint = rd_str(r, o, "issuer_fingerprint"),
        .cert = rd_cert(r, json_object_get(o, "certificate")),
    };
}

static void rd_debug(reader *r, const json_t *o, kbr_effect *e)
{
    e->u.debug_authorize = (kbr_fx_debug_authorize){
        .key = rd_str(r, o, "key"),
        .product = rd_str(r, o, "product"),
        .serial = rd_str(r, o, "serial"),
        .challenge_sha256 = rd_str(r, o, "challenge_sha256"),
        .permissions = rd_str(r, o, "permissions"),
        .ticket = rd_str(r, o, "ticket"),
        .principal = rd_str(r, o, "principal"),
        .message_sha256 = rd_str(r, o, "message_sha256"),
        .signature_sha256 = rd_str(r, o, "signature_sha256"),
        .at = rd_str(r, o, "at"),
        .expires_at = rd_str(r, o, "expires_at"),
    };
}

static void rd_ota(reader *r, const json_t *o, kbr_effect *e)
{
    const json_t *arr = rd_array(r, o, "results"), *res;
    size_t i, n = json_array_size(arr);
    kbr_effect_ota_result *results = rd_alloc(r, n, sizeof(*results));

    json_array_foreach(arr, i, res)
    {
        if (!json_is_object(res) || results == NULL) {
            r->err = r->err != KBR_OK ? r->err : KBR_ERR_INTERNAL;
            break;
        }
        results[i] = (kbr_effect_ota_result){.serial = rd_str(r, res, "serial"),
                                             .status = rd_str(r, res, "status"),
                                             .at = rd_str(r, res, "at")};
    }
    e->u.ota_report = (kbr_fx_ota_report){
        .product = rd_str(r, o, "product"),
        .version = rd_str(r, o, "version"),
        .campaign = rd_str(r, o, "campaign"),
        .reported_by = rd_str(r, o, "reported_by"),
        .at = rd_str(r, o, "at"),
        .results = results,
        .nresults = n,
    };
}

static void rd_revoke(reader *r, const json_t *o, kbr_effect *e)
{
    const json_t *arr = rd_array(r, o, "certificates"), *c;
    size_t i, n = json_array_size(arr);
    kbr_effect_revoked_cert *certs = rd_alloc(r, n, sizeof(*certs));

    json_array_foreach(arr, i, c)
    {
        if (!json_is_object(c) || certs == NULL) {
            r->err = r->err != KBR_OK ? r->err : KBR_ERR_INTERNAL;
            break;
        }
        certs[i] = (kbr_effect_revoked_cert){.fingerprint = rd_str(r, c, "fingerprint"),
                                             .serial_number = rd_str(r, c, "serial_number"),
                                             .issuer_key = rd_str(r, c, "issuer_key")};
    }
    e->u.device_revoke = (kbr_fx_device_revoke){
        .product = rd_str(r, o, "product"),
        .serial = rd_str(r, o, "serial"),
        .at = rd_str(r, o, "at"),
        .reason = rd_str(r, o, "reason"),
        .reason_code = rd_int(r, o, "reason_code"),
        .revoked_by = rd_str(r, o, "revoked_by"),
        .certificates = certs,
        .ncertificates = n,
    };
}

static void rd_crl(reader *r, const json_t *o, kbr_effect *e)
{
    e->u.crl_issue = (kbr_fx_crl_issue){
        .issuer_key = rd_str(r, o, "issuer_key"),
        .issuer_fingerprint = rd_str(r, o, "issuer_fingerprint"),
        .number = rd_int(r, o, "number"),
        .this_update = rd_str(r, o, "this_update"),
        .next_update = rd_str(r, o, "next_update"),
        .entries = rd_int(r, o, "entries"),
        .sha256 = rd_str(r, o, "sha256"),
    };
}

static void rd_deliver(reader *r, const json_t *o, kbr_effect *e)
{
    e->u.key_deliver = (kbr_fx_key_deliver){
        .key = rd_str(r, o, "key"),
        .product = rd_str(r, o, "product"),
        .serial = rd_str(r, o, "serial"),
        .recipient_public_key_sha256 = rd_str(r, o, "recipient_public_key_sha256"),
        .cose_sha256 = rd_str(r, o, "cose_sha256"),
        .delivered_by = rd_str(r, o, "delivered_by"),
        .at = rd_str(r, o, "at"),
    };
}

/* A member that must be a JSON object, as its canonical text in the list's arena. */
static const char *rd_object(reader *r, const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    char *text = NULL;
    const char *out = NULL;

    if (!json_is_object(v) || kbr_json_canonical(v, &text) != KBR_OK) {
        r->err = KBR_ERR_INTERNAL;
    } else {
        out = kbr_arena_strdup(r->arena, text);
        if (out == NULL)
            r->err = KBR_ERR_NOMEM;
    }
    free(text);
    return out;
}

static bool rd_bool(reader *r, const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);

    if (!json_is_boolean(v))
        r->err = KBR_ERR_INTERNAL;
    return json_is_true(v);
}

static void rd_incident(reader *r, const json_t *o, kbr_effect *e)
{
    const json_t *arr = rd_array(r, o, "builds"), *b;
    size_t i, n = json_array_size(arr);
    kbr_effect_build *builds = rd_alloc(r, n, sizeof(*builds));

    json_array_foreach(arr, i, b)
    {
        if (!json_is_object(b) || builds == NULL) {
            r->err = r->err != KBR_OK ? r->err : KBR_ERR_INTERNAL;
            break;
        }
        builds[i] = (kbr_effect_build){.product = rd_str(r, b, "product"),
                                       .version = rd_str(r, b, "version")};
    }
    e->u.incident_create = (kbr_fx_incident_create){
        .id = rd_str(r, o, "id"),
        .title = rd_str(r, o, "title"),
        .product = rd_str(r, o, "product"),
        .component = rd_str(r, o, "component"),
        .aware_at = rd_str(r, o, "aware_at"),
        .severity = rd_str(r, o, "severity"),
        .cve = rd_str(r, o, "cve"),
        .created_at = rd_str(r, o, "created_at"),
        .created_by = rd_str(r, o, "created_by"),
        .query_json = rd_object(r, o, "query"),
        .exposure_json = rd_object(r, o, "exposure"),
        .actively_exploited = rd_bool(r, o, "actively_exploited"),
        .builds = builds,
        .nbuilds = n,
    };
}

static void rd_small(reader *r, const json_t *o, kbr_effect *e)
{
    switch (e->type) {
    case KBR_EFFECT_KEY_RETIRE:
        e->u.key_retire = (kbr_fx_key_retire){rd_str(r, o, "name"), rd_str(r, o, "at")};
        break;
    case KBR_EFFECT_KEY_CERTIFICATE:
        e->u.key_certificate = (kbr_fx_key_certificate){
            .name = rd_str(r, o, "name"),
            .at = rd_str(r, o, "at"),
            .issuer_key = rd_str(r, o, "issuer_key"),
            .cert = rd_cert(r, o),
        };
        break;
    case KBR_EFFECT_TOKEN_REVOKE:
        e->u.token_revoke = (kbr_fx_token_revoke){
            .jtis = rd_strings(r, o, "jtis"),
            .at = rd_str(r, o, "at"),
            .reason = rd_str(r, o, "reason"),
        };
        break;
    case KBR_EFFECT_TOKEN_REVOKE_ALL:
        e->u.token_revoke_all = (kbr_fx_token_revoke_all){
            .at = rd_str(r, o, "at"),
            .reason = rd_str(r, o, "reason"),
        };
        break;
    case KBR_EFFECT_ISSUER_ROTATE:
        e->u.issuer_rotate = (kbr_fx_issuer_rotate){
            .kid = rd_str(r, o, "kid"),
            .hsm_label = rd_str(r, o, "hsm_label"),
            .public_key_pem = rd_str(r, o, "public_key_pem"),
            .at = rd_str(r, o, "at"),
            .replaces = rd_str(r, o, "replaces"),
        };
        break;
    case KBR_EFFECT_PRODUCT_REGISTER:
        e->u.product_register = (kbr_fx_product_register){
            .product = rd_str(r, o, "product"),
            .placed_on_market = rd_str(r, o, "placed_on_market"),
            .support_until = rd_str(r, o, "support_until"),
            .at = rd_str(r, o, "at"),
            .by = rd_str(r, o, "by"),
        };
        break;
    case KBR_EFFECT_INCIDENT_FIX:
        e->u.incident_fix = (kbr_fx_incident_fix){
            .id = rd_str(r, o, "id"),
            .fixed_version = rd_str(r, o, "fixed_version"),
            .available_at = rd_str(r, o, "available_at"),
            .at = rd_str(r, o, "at"),
        };
        break;
    case KBR_EFFECT_INCIDENT_REPORT:
        e->u.incident_report = (kbr_fx_incident_report){
            .id = rd_str(r, o, "id"),
            .stage = rd_str(r, o, "stage"),
            .sha256 = rd_str(r, o, "sha256"),
            .at = rd_str(r, o, "at"),
            .by = rd_str(r, o, "by"),
        };
        break;
    default: /* KBR_EFFECT_CHECKPOINT */
        e->u.checkpoint = (kbr_fx_checkpoint){
            .size = rd_int(r, o, "size"),
            .root_hash = rd_str(r, o, "root_hash"),
            .time = rd_str(r, o, "time"),
            .signature_b64 = rd_str(r, o, "signature_b64"),
            .origin = rd_str(r, o, "origin"),
            .note = rd_str(r, o, "note"),
            .key_id = rd_str(r, o, "key_id"),
            .key_label = rd_str(r, o, "key_label"),
            .public_key_pem = rd_str(r, o, "public_key_pem"),
            .next_key_id = rd_str(r, o, "next_key_id"),
            .next_key_label = rd_str(r, o, "next_key_label"),
            .next_key_pem = rd_str(r, o, "next_key_pem"),
        };
    }
}

static kbr_err read_one(kbr_effects *fx, const json_t *o)
{
    kbr_err err = KBR_OK;
    reader r = {.arena = kbr_effects_arena(fx)};
    kbr_effect e = {0};

    KBR_ENSURE(json_is_object(o), KBR_ERR_INTERNAL);
    KBR_ENSURE(kbr_effect_type_from_name(rd_str(&r, o, "type"), &e.type), KBR_ERR_INTERNAL);
    switch (e.type) {
    case KBR_EFFECT_KEY_CREATE:
        rd_key_create(&r, o, &e);
        break;
    case KBR_EFFECT_TOKEN_ISSUE:
        rd_token_issue(&r, o, &e);
        break;
    case KBR_EFFECT_FIRMWARE_SIGN:
        rd_firmware(&r, o, &e);
        break;
    case KBR_EFFECT_BATCH_CREATE:
        rd_batch(&r, o, &e);
        break;
    case KBR_EFFECT_DEVICE_PROVISION:
        rd_provision(&r, o, &e);
        break;
    case KBR_EFFECT_DEVICE_ROTATE:
        rd_rotate(&r, o, &e);
        break;
    case KBR_EFFECT_DEBUG_AUTHORIZE:
        rd_debug(&r, o, &e);
        break;
    case KBR_EFFECT_OTA_REPORT:
        rd_ota(&r, o, &e);
        break;
    case KBR_EFFECT_DEVICE_REVOKE:
        rd_revoke(&r, o, &e);
        break;
    case KBR_EFFECT_CRL_ISSUE:
        rd_crl(&r, o, &e);
        break;
    case KBR_EFFECT_KEY_DELIVER:
        rd_deliver(&r, o, &e);
        break;
    case KBR_EFFECT_INCIDENT_CREATE:
        rd_incident(&r, o, &e);
        break;
    default:
        rd_small(&r, o, &e);
    }
    KBR_GUARD(r.err);
    KBR_GUARD(kbr_effects_add(fx, &e));
out:
    return err;
}

kbr_err kbr_effects_from_json(const json_t *arr, kbr_effects **out)
{
    kbr_err err = KBR_OK;
    kbr_effects *fx = NULL;
    const json_t *o;
    size_t i;

    *out = NULL;
    KBR_ENSURE(json_is_array(arr), KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_effects_new(&fx));
    json_array_foreach(arr, i, o)
    {
        KBR_GUARD(read_one(fx, o));
    }
    *out = fx;
    fx = NULL;
out:
    kbr_effects_free(fx);
    return err;
}
