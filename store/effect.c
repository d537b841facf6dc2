/*
 * effect.c - ledger effects as typed values: the rules every field must
 * meet, checked once as an effect joins a list (whether a handler built it
 * or it was read from JSON), and the JSON form, written and read.
 *
 * A list owns its effects and every string they point to, in one arena:
 * an effect is built by a handler on the event thread or a worker, applied
 * by the audit writer, then freed with its record.
 *
 * Effects are built by the broker's handlers, not by callers, so a missing
 * or mistyped field is a broken invariant (KBR_ERR_INTERNAL), not a 400.
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#define EFFECTS_MAX 64

struct kbr_effects {
    kbr_arena *arena;
    kbr_effect items[EFFECTS_MAX];
    size_t n;
    kbr_document docs[KBR_DOCUMENTS_MAX];
    size_t ndocs;
};

static const char *const type_names[] = {
    [KBR_EFFECT_KEY_CREATE] = "key.create",
    [KBR_EFFECT_KEY_RETIRE] = "key.retire",
    [KBR_EFFECT_KEY_CERTIFICATE] = "key.certificate",
    [KBR_EFFECT_TOKEN_ISSUE] = "token.issue",
    [KBR_EFFECT_TOKEN_REVOKE] = "token.revoke",
    [KBR_EFFECT_FIRMWARE_SIGN] = "firmware.sign",
    [KBR_EFFECT_BATCH_CREATE] = "batch.create",
    [KBR_EFFECT_DEVICE_PROVISION] = "device.provision",
    [KBR_EFFECT_DEVICE_ROTATE] = "device.rotate",
    [KBR_EFFECT_DEBUG_AUTHORIZE] = "debug.authorize",
    [KBR_EFFECT_OTA_REPORT] = "ota.report",
    [KBR_EFFECT_CHECKPOINT] = "checkpoint",
    [KBR_EFFECT_TOKEN_REVOKE_ALL] = "token.revoke_all",
    [KBR_EFFECT_ISSUER_ROTATE] = "issuer.rotate",
    [KBR_EFFECT_DEVICE_REVOKE] = "device.revoke",
    [KBR_EFFECT_CRL_ISSUE] = "crl.issue",
    [KBR_EFFECT_KEY_DELIVER] = "key.deliver",
    [KBR_EFFECT_PRODUCT_REGISTER] = "product.register",
    [KBR_EFFECT_INCIDENT_CREATE] = "incident.create",
    [KBR_EFFECT_INCIDENT_FIX] = "incident.fix",
    [KBR_EFFECT_INCIDENT_REPORT] = "incident.report",
};

#define N_TYPES (sizeof(type_names) / sizeof(type_names[0]))

const char *kbr_effect_type_name(kbr_effect_type type)
{
    return (size_t)type < N_TYPES ? type_names[type] : NULL;
}

/* RFC 5280 5.3.1; the codes a revocation for good can carry (kbr_store.h). */
static const struct {
    const char *name;
    int code;
} reasons[] = {
    {"unspecified", 0},        {"keyCompromise", 1}, {"cACompromise", 2},
    {"affiliationChanged", 3}, {"superseded", 4},    {"cessationOfOperation", 5},
    {"privilegeWithdrawn", 9},
};

int kbr_store_revocation_reason_code(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(reasons[i].name, name) == 0)
            return reasons[i].code;
    return -1;
}

const char *kbr_store_revocation_reason_name(int64_t code)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].code == code)
            return reasons[i].name;
    return NULL;
}

static bool type_from_name(const char *name, kbr_effect_type *out)
{
    for (size_t i = 1; name != NULL && i < N_TYPES; i++) {
        if (strcmp(type_names[i], name) == 0) {
            *out = (kbr_effect_type)i;
            return true;
        }
    }
    return false;
}

/* ---- the list ---- */

kbr_err kbr_effects_new(kbr_effects **out)
{
    kbr_err err = KBR_OK;
    kbr_effects *fx = calloc(1, sizeof(*fx));

    *out = NULL;
    KBR_ENSURE(fx != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_arena_new(&fx->arena));
    *out = fx;
    fx = NULL;
out:
    kbr_effects_free(fx);
    return err;
}

void kbr_effects_free(kbr_effects *fx)
{
    if (fx == NULL)
        return;
    kbr_arena_free(fx->arena);
    free(fx);
}

size_t kbr_effects_count(const kbr_effects *fx)
{
    return fx != NULL ? fx->n : 0;
}

const kbr_effect *kbr_effects_get(const kbr_effects *fx, size_t i)
{
    return fx != NULL && i < fx->n ? &fx->items[i] : NULL;
}

kbr_err kbr_effects_add_document(kbr_effects *fx, const void *body, size_t len, char sha256[65])
{
    kbr_err err = KBR_OK;
    unsigned char *copy;
    char *name;

    KBR_ENSURE(body != NULL || len == 0, KBR_ERR_INTERNAL);
    kbr_sha256_hex(body, len, sha256);
    for (size_t i = 0; i < fx->ndocs; i++)
        if (strcmp(fx->docs[i].sha256, sha256) == 0)
            goto out;
    KBR_ENSURE(fx->ndocs < KBR_DOCUMENTS_MAX, KBR_ERR_INTERNAL);
    copy = kbr_arena_alloc(fx->arena, len);
    name = kbr_arena_strdup(fx->arena, sha256);
    KBR_ENSURE(copy != NULL && name != NULL, KBR_ERR_NOMEM);
    if (len > 0)
        memcpy(copy, body, len);
    fx->docs[fx->ndocs++] = (kbr_document){.sha256 = name, .body = copy, .len = len};
out:
    return err;
}

size_t kbr_effects_document_count(const kbr_effects *fx)
{
    return fx != NULL ? fx->ndocs : 0;
}

const kbr_document *kbr_effects_document(const kbr_effects *fx, size_t i)
{
    return fx != NULL && i < fx->ndocs ? &fx->docs[i] : NULL;
}

/* ---- checking and copying: the rules of the JSON form, in one place ---- */

/* Copies into the list's arena; the first broken rule sticks in err. */
typedef struct {
    kbr_arena *arena;
    kbr_err err;
} copier;

static const char *fail(copier *c, kbr_err err)
{
    if (c->err == KBR_OK)
        c->err = err;
    return NULL;
}

static const char *dup(copier *c, const char *s)
{
    char *copy = kbr_arena_strdup(c->arena, s);

    return copy != NULL ? copy : fail(c, KBR_ERR_NOMEM);
}

/* required: present and not empty; otherwise NULL stays NULL. */
static const char *str(copier *c, const char *s, bool required)
{
    if (s == NULL || (required && s[0] == '\0'))
        return required ? fail(c, KBR_ERR_INTERNAL) : NULL;
    return dup(c, s);
}

/* Present, possibly empty (a certificate without a chain). */
static const char *text(copier *c, const char *s)
{
    return s != NULL ? dup(c, s) : fail(c, KBR_ERR_INTERNAL);
}

/* Stored times are all "YYYY-MM-DDTHH:MM:SSZ", so SQL can compare them as text. */
static const char *when(copier *c, const char *s, bool required)
{
    char buf[KBR_TIME_LEN];
    time_t t;

    if (s == NULL)
        return required ? fail(c, KBR_ERR_INTERNAL) : NULL;
    if (kbr_time_parse(s, &t) != KBR_OK)
        return fail(c, KBR_ERR_INTERNAL);
    kbr_time_fmt(t, buf);
    return dup(c, buf);
}

static bool is_hex_digit(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/*
 * want hex digits (any non-zero number when want is 0), lowercased: fingerprints are unique
 * and compared as text, so each has one spelling.
 */
static const char *hex(copier *c, const char *s, size_t want, bool required)
{
    size_t n;
    char *copy;

    if (s == NULL)
        return required ? fail(c, KBR_ERR_INTERNAL) : NULL;
    n = strlen(s);
    if (n == 0 || (want != 0 && n != want))
        return fail(c, KBR_ERR_INTERNAL);
    copy = (char *)dup(c, s);
    for (size_t i = 0; copy != NULL && i < n; i++) {
        if (!is_hex_digit(copy[i]))
            return fail(c, KBR_ERR_INTERNAL);
        if (copy[i] >= 'A' && copy[i] <= 'F')
            copy[i] = (char)(copy[i] - 'A' + 'a');
    }
    return copy;
}

static void *copy_array(copier *c, size_t n, size_t size)
{
    void *p = kbr_arena_alloc(c->arena, (n > 0 ? n : 1) * size);

    if (p == NULL)
        fail(c, KBR_ERR_NOMEM);
    return p;
}

/* Every item a string, and not empty when nonempty_items. */
static kbr_strings strings(copier *c, kbr_strings in, bool nonempty_items)
{
    const char **items = copy_array(c, in.n, sizeof(*items));

    if (items == NULL || (in.n > 0 && in.items == NULL)) {
        fail(c, KBR_ERR_INTERNAL);
        return (kbr_strings){NULL, 0};
    }
    for (size_t i = 0; i < in.n; i++)
        items[i] = str(c, in.items[i], nonempty_items);
    return (kbr_strings){items, in.n};
}

/* A key's certificate carries its chain; a device's has none (the issuer's is its chain). */
static kbr_effect_cert cert(copier *c, const kbr_effect_cert *in, bool with_chain)
{
    if (!with_chain && in->chain_pem != NULL)
        fail(c, KBR_ERR_INTERNAL);
    return (kbr_effect_cert){
        .serial_number = hex(c, in->serial_number, 0, true),
        .pem = str(c, in->pem, true),
        .chain_pem = with_chain ? text(c, in->chain_pem) : NULL,
        .not_after = when(c, in->not_after, true),
        .fingerprint = hex(c, in->fingerprint, 64, true),
    };
}

static void copy_key_create(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_key_create *k = &in->u.key_create;

    out->u.key_create = (kbr_fx_key_create){
        .name = str(c, k->name, true),
        .purpose = str(c, k->purpose, true),
        .algorithm = str(c, k->algorithm, true),
        .owner = str(c, k->owner, false),
        .hsm_label = str(c, k->hsm_label, false),
        .hsm_id = str(c, k->hsm_id, false),
        .public_key_pem = str(c, k->public_key_pem, false),
        .public_key_sha256 = hex(c, k->public_key_sha256, 64, false),
        .created_at = when(c, k->created_at, true),
        .products = strings(c, k->products, false),
    };
}

/* An RFC 7638 thumbprint as JWS carries it: SHA-256, 43 base64url characters. */
#define KID_LEN 43

static const char *kid(copier *c, const char *s, bool required)
{
    if (s == NULL)
        return required ? fail(c, KBR_ERR_INTERNAL) : NULL;
    if (strlen(s) != KID_LEN || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                          "0123456789-_") != KID_LEN)
        return fail(c, KBR_ERR_INTERNAL);
    return dup(c, s);
}

/*
 * The broker's own labels: "kbr/issuer", or "kbr/issuer/" and a suffix of printable ASCII
 * (PKCS#11 labels are at most what the HSM layer takes).  A product key's label is never one
 * (kbr/key/NAME, or a registered label, which may not start with kbr/), so the ledger cannot
 * name a key a sign token reaches as the token issuer.
 */
static const char *issuer_label(copier *c, const char *s)
{
    static const char prefix[] = "kbr/issuer/";
    size_t n = s != NULL ? strlen(s) : 0;

    if (s == NULL || n >= 128 ||
        (strcmp(s, "kbr/issuer") != 0 &&
         (strncmp(s, prefix, sizeof(prefix) - 1) != 0 || n == sizeof(prefix) - 1)))
        return fail(c, KBR_ERR_INTERNAL);
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return fail(c, KBR_ERR_INTERNAL);
    return dup(c, s);
}

/* The scope stays opaque to the store, but it is a JSON object. */
static void scope_is_object(copier *c, const char *scope_json)
{
    json_t *scope =
        scope_json != NULL ? json_loads(scope_json, JSON_REJECT_DUPLICATES, NULL) : NULL;

    if (!json_is_object(scope))
        fail(c, KBR_ERR_INTERNAL);
    json_decref(scope);
}

static void copy_token_issue(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_token_issue *t = &in->u.token_issue;

    out->u.token_issue = (kbr_fx_token_issue){
        .jti = str(c, t->jti, true),
        .sub = str(c, t->sub, true),
        .issued_by = str(c, t->issued_by, false),
        .issued_at = when(c, t->issued_at, true),
        .not_before = when(c, t->not_before, false),
        .expires_at = when(c, t->expires_at, true),
        .cnf_x5t = str(c, t->cnf_x5t, false),
        .parent_jti = str(c, t->parent_jti, false),
        .scope_json = str(c, t->scope_json, true),
        .orphan = t->orphan,
        .kid = kid(c, t->kid, false),
    };
    scope_is_object(c, t->scope_json);
}

static void copy_issuer_rotate(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_issuer_rotate *i = &in->u.issuer_rotate;

    out->u.issuer_rotate = (kbr_fx_issuer_rotate){
        .kid = kid(c, i->kid, true),
        .hsm_label = issuer_label(c, i->hsm_label),
        .public_key_pem = str(c, i->public_key_pem, true),
        .at = when(c, i->at, true),
        .replaces = kid(c, i->replaces, false),
    };
    if (i->replaces != NULL && i->kid != NULL && strcmp(i->replaces, i->kid) == 0)
        fail(c, KBR_ERR_INTERNAL);
}

static void copy_firmware(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_firmware_sign *f = &in->u.firmware_sign;
    kbr_effect_component *comps = copy_array(c, f->ncomponents, sizeof(*comps));

    out->u.firmware_sign = (kbr_fx_firmware_sign){
        .product = str(c, f->product, true),
        .version = str(c, f->version, true),
        .digest = str(c, f->digest, true),
        .hash = str(c, f->hash, false),
        .key = str(c, f->key, false),
        .name = str(c, f->name, false),
        .build_id = str(c, f->build_id, false),
        .signed_at = when(c, f->signed_at, true),
        .sbom_sha256 = hex(c, f->sbom_sha256, 64, false),
        .components = comps,
        .ncomponents = f->ncomponents,
    };
    if (f->ncomponents > 0 && f->components == NULL)
        fail(c, KBR_ERR_INTERNAL);
    for (size_t i = 0; comps != NULL && f->components != NULL && i < f->ncomponents; i++)
        comps[i] = (kbr_effect_component){.name = str(c, f->components[i].name, true),
                                          .version = str(c, f->components[i].version, false),
                                          .purl = str(c, f->components[i].purl, false)};
}

static void copy_batch(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_batch_create *b = &in->u.batch_create;

    out->u.batch_create = (kbr_fx_batch_create){
        .batch = str(c, b->batch, true),
        .product = str(c, b->product, true),
        .factory = str(c, b->factory, true),
        .created_at = when(c, b->created_at, true),
        .created_by = str(c, b->created_by, true),
        .quantity = b->quantity,
        .markets = strings(c, b->markets, true),
    };
    if (b->quantity < 1 || b->markets.n == 0)
        fail(c, KBR_ERR_INTERNAL);
}

static void copy_provision(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_device_provision *d = &in->u.device_provision;

    out->u.device_provision = (kbr_fx_device_provision){
        .product = str(c, d->product, true),
        .serial = str(c, d->serial, true),
        .batch = str(c, d->batch, true),
        .factory = str(c, d->factory, true),
        .firmware_version = str(c, d->firmware_version, false),
        .csr_sha256 = hex(c, d->csr_sha256, 64, true),
        .public_key_sha256 = hex(c, d->public_key_sha256, 64, false),
        .at = when(c, d->at, true),
        .issuer_key = str(c, d->issuer_key, true),
        .issuer_fingerprint = hex(c, d->issuer_fingerprint, 64, true),
        .cert = cert(c, &d->cert, false),
    };
}

static void copy_rotate(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_device_rotate *d = &in->u.device_rotate;

    out->u.device_rotate = (kbr_fx_device_rotate){
        .product = str(c, d->product, true),
        .serial = str(c, d->serial, true),
        .at = when(c, d->at, true),
        .csr_sha256 = hex(c, d->csr_sha256, 64, true),
        .public_key_sha256 = hex(c, d->public_key_sha256, 64, false),
        .issuer_key = str(c, d->issuer_key, true),
        .issuer_fingerprint = hex(c, d->issuer_fingerprint, 64, true),
        .cert = cert(c, &d->cert, false),
    };
}

static void copy_debug(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_debug_authorize *d = &in->u.debug_authorize;

    out->u.debug_authorize = (kbr_fx_debug_authorize){
        .key = str(c, d->key, true),
        .product = str(c, d->product, true),
        .serial = str(c, d->serial, true),
        .challenge_sha256 = hex(c, d->challenge_sha256, 64, true),
        .permissions = hex(c, d->permissions, 0, true),
        .ticket = str(c, d->ticket, true),
        .principal = str(c, d->principal, true),
        .message_sha256 = hex(c, d->message_sha256, 64, true),
        .signature_sha256 = hex(c, d->signature_sha256, 64, true),
        .at = when(c, d->at, true),
        .expires_at = when(c, d->expires_at, true),
    };
}

static void copy_ota(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_ota_report *o = &in->u.ota_report;
    kbr_effect_ota_result *res = copy_array(c, o->nresults, sizeof(*res));

    out->u.ota_report = (kbr_fx_ota_report){
        .product = str(c, o->product, true),
        .version = str(c, o->version, true),
        .campaign = str(c, o->campaign, false),
        .reported_by = str(c, o->reported_by, true),
        .at = when(c, o->at, true),
        .results = res,
        .nresults = o->nresults,
    };
    if (o->nresults > 0 && o->results == NULL)
        fail(c, KBR_ERR_INTERNAL);
    for (size_t i = 0; res != NULL && o->results != NULL && i < o->nresults; i++) {
        const char *status = o->results[i].status;
        if (status == NULL || (strcmp(status, "installed") != 0 && strcmp(status, "failed") != 0))
            fail(c, KBR_ERR_INTERNAL);
        res[i] = (kbr_effect_ota_result){.serial = str(c, o->results[i].serial, true),
                                         .status = str(c, status, true),
                                         .at = when(c, o->results[i].at, true)};
    }
}

/* The signer's fields come together or not at all, and so do the next key's. */
static void copy_checkpoint(copier *c, const kbr_fx_checkpoint *in, kbr_fx_checkpoint *out)
{
    bool signer = in->note != NULL;
    bool next = in->next_key_pem != NULL;

    *out = (kbr_fx_checkpoint){
        .size = in->size,
        .root_hash = hex(c, in->root_hash, 64, true),
        .time = when(c, in->time, true),
        .signature_b64 = str(c, in->signature_b64, true),
        .origin = str(c, in->origin, signer),
        .note = str(c, in->note, signer),
        .key_id = hex(c, in->key_id, 8, signer),
        .key_label = str(c, in->key_label, signer),
        .public_key_pem = str(c, in->public_key_pem, signer),
        .next_key_id = hex(c, in->next_key_id, 8, next),
        .next_key_label = str(c, in->next_key_label, next),
        .next_key_pem = str(c, in->next_key_pem, next),
    };
    if (in->size < 0 || (!signer && (in->origin != NULL || in->key_id != NULL ||
                                     in->key_label != NULL || in->public_key_pem != NULL)))
        fail(c, KBR_ERR_INTERNAL);
    if ((!next && (in->next_key_id != NULL || in->next_key_label != NULL)) || (next && !signer))
        fail(c, KBR_ERR_INTERNAL);
}

/* The reason is a name the ledger knows and the code is its own; the list is not empty. */
static void copy_revoke(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_device_revoke *d = &in->u.device_revoke;
    kbr_effect_revoked_cert *certs = copy_array(c, d->ncertificates, sizeof(*certs));

    out->u.device_revoke = (kbr_fx_device_revoke){
        .product = str(c, d->product, true),
        .serial = str(c, d->serial, true),
        .at = when(c, d->at, true),
        .reason = str(c, d->reason, true),
        .reason_code = d->reason_code,
        .revoked_by = str(c, d->revoked_by, true),
        .certificates = certs,
        .ncertificates = d->ncertificates,
    };
    if (d->ncertificates == 0 || d->certificates == NULL ||
        kbr_store_revocation_reason_code(d->reason) < 0 ||
        kbr_store_revocation_reason_code(d->reason) != d->reason_code)
        fail(c, KBR_ERR_INTERNAL);
    for (size_t i = 0; certs != NULL && d->certificates != NULL && i < d->ncertificates; i++)
        certs[i] = (kbr_effect_revoked_cert){
            .fingerprint = hex(c, d->certificates[i].fingerprint, 64, true),
            .serial_number = hex(c, d->certificates[i].serial_number, 0, true),
            .issuer_key = str(c, d->certificates[i].issuer_key, true),
        };
}

/* nextUpdate after thisUpdate, both in the stored form, so they compare as text too. */
static void copy_crl(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_crl_issue *l = &in->u.crl_issue;

    out->u.crl_issue = (kbr_fx_crl_issue){
        .issuer_key = str(c, l->issuer_key, true),
        .issuer_fingerprint = hex(c, l->issuer_fingerprint, 64, true),
        .this_update = when(c, l->this_update, true),
        .next_update = when(c, l->next_update, true),
        .sha256 = hex(c, l->sha256, 64, true),
        .number = l->number,
        .entries = l->entries,
    };
    if (l->number < 1 || l->entries < 0 || out->u.crl_issue.this_update == NULL ||
        out->u.crl_issue.next_update == NULL ||
        strcmp(out->u.crl_issue.next_update, out->u.crl_issue.this_update) <= 0)
        fail(c, KBR_ERR_INTERNAL);
}

static void copy_deliver(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_key_deliver *d = &in->u.key_deliver;

    out->u.key_deliver = (kbr_fx_key_deliver){
        .key = str(c, d->key, true),
        .product = str(c, d->product, true),
        .serial = str(c, d->serial, true),
        .recipient_public_key_sha256 = hex(c, d->recipient_public_key_sha256, 64, true),
        .cose_sha256 = hex(c, d->cose_sha256, 64, true),
        .delivered_by = str(c, d->delivered_by, true),
        .at = when(c, d->at, true),
    };
}

/* A day, "YYYY-MM-DD", that the calendar has. */
static const char *day(copier *c, const char *s)
{
    if (s == NULL || !kbr_store_date_valid(s))
        return fail(c, KBR_ERR_INTERNAL);
    return dup(c, s);
}

static void copy_product(copier *c, const kbr_effect *in, kbr_effect *out)
{
    const kbr_fx_product_register *p = &in->u.product_register;

    out->u.product_register = (kbr_fx_product_register){
        .product = str(c, p->product, true),
        .placed_on_market = day(c, p->placed_on_market),
        .support_until = day(c, p->support_until),
        .at = when(c, p->at, true),
        .by = str(c, p->by, true),
    };
    if (c->err == KBR_OK && strcmp(p->support_until, p->placed_on_market) <= 0)
        fail(c, KBR_ERR_INTERNAL);
}

/* A JSON object's canonical text (kept as text, written back as the object). */
static const char *object_text(copier *c, const char *json)
{
    json_t *v = json != NULL ? json_loads(json, JSON_REJECT_DUPLICATES, NULL) : NULL;
    char *canonical = NULL;
    const char *out = NULL;

    if (!json_is_object(v) || kbr_json_canonical(v, &canonical) != KBR_OK)
        fail(c, KBR_ERR_INTERNAL);
    else
        out = dup(c, canonical);
    free(canonical);
    json_decref(v);
    return out;
}

/* {component | purl, versions | vers}: a question View C answers, and nothing else. */
static void query_valid(copier *c, const char *query_json)
{
    static const char *const members[] = {"component", "purl", "versions", "vers"};
    json_t *q = query_json != NULL ? json_loads(query_json, 0, NULL) : NULL;
    kbr_exposure_query eq;
    const char *key;
    json_t *v;

    if (!json_is_object(q)) {
        fail(c, KBR_ERR_INTERNAL);
        goto out;
    }
    json_object_foreach(q, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
            known = known || strcmp(key, members[i]) == 0;
        if (!known || (strcmp(key, "versions") != 0 && !json_is_string(v)))
            fail(c, KBR_ERR_INTERNAL);
    }
    eq = (kbr_exposure_query){.component = json_string_value(json_object_get(q, "component")),
                              .purl = json_string_value(json_object_get(q, "purl")),
                              .versions = json_object_get(q, "versions"),
                              .vers = json_string_value(json_object_get(q, "vers"))};
    if (kbr_store_exposure_check(&eq, NULL) != KBR_OK)
        fail(c, KBR_ERR_INTERNAL);
out:
    json_decref(q);
}

static bool one_of(const char *s, const char *const *set)
{
    for (; s != NULL && *set != NULL; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

static void copy_incident(copier *c, const kbr_effect *in, kbr_effect *out)
{
    static const char *const severities[] = {"low", "medium", "high", "critical", NULL};
    const kbr_fx_incident_create *i = &in->u.incident_create;
    kbr_effect_build *builds = copy_array(c, i->nbuilds, sizeof(*builds));

    out->u.incident_create = (kbr_fx_incident_create){
        .id = str(c, i->id, true),
        .title = str(c, i->title, true),
        .product = str(c, i->product, false),
        .component = str(c, i->component, true),
        .aware_at = when(c, i->aware_at, true),
        .severity =
            one_of(i->severity, severities) ? str(c, i->severity, true) : fail(c, KBR_ERR_INTERNAL),
        .cve = str(c, i->cve, false),
        .created_at = when(c, i->created_at, true),
        .created_by = str(c, i->created_by, true),
        .query_json = object_text(c, i->query_json),
        .exposure_json = object_text(c, i->exposure_json),
        .actively_exploited = i->actively_exploited,
        .builds = builds,
        .nbuilds = i->nbuilds,
    };
    query_valid(c, i->query_json);
    if (i->nbuilds > 0 && i->builds == NULL)
        fail(c, KBR_ERR_INTERNAL);
    for (size_t k = 0; builds != NULL && i->builds != NULL && k < i->nbuilds; k++)
        builds[k] = (kbr_effect_build){.product = str(c, i->builds[k].product, true),
                                       .version = str(c, i->builds[k].version, true)};
}

static void copy_incident_step(copier *c, const kbr_effect *in, kbr_effect *out)
{
    static const char *const stages[] = {"early-warning", "notification", "final", NULL};

    if (in->type == KBR_EFFECT_INCIDENT_FIX) {
        out->u.incident_fix = (kbr_fx_incident_fix){
            .id = str(c, in->u.incident_fix.id, true),
            .fixed_version = str(c, in->u.incident_fix.fixed_version, true),
            .available_at = when(c, in->u.incident_fix.available_at, true),
            .at = when(c, in->u.incident_fix.at, true),
        };
        return;
    }
    out->u.incident_report = (kbr_fx_incident_report){
        .id = str(c, in->u.incident_report.id, true),
        .stage = one_of(in->u.incident_report.stage, stages)
                     ? str(c, in->u.incident_report.stage, true)
                     : fail(c, KBR_ERR_INTERNAL),
        .sha256 = hex(c, in->u.incident_report.sha256, 64, true),
        .at = when(c, in->u.incident_report.at, true),
        .by = str(c, in->u.incident_report.by, true),
    };
}

static void copy_small(copier *c, const kbr_effect *in, kbr_effect *out)
{
    switch (in->type) {
    case KBR_EFFECT_KEY_RETIRE:
        out->u.key_retire.name = str(c, in->u.key_retire.name, true);
        out->u.key_retire.at = when(c, in->u.key_retire.at, true);
        break;
    case KBR_EFFECT_KEY_CERTIFICATE:
        out->u.key_certificate.name = str(c, in->u.key_certificate.name, true);
        out->u.key_certificate.at = when(c, in->u.key_certificate.at, true);
        out->u.key_certificate.issuer_key = str(c, in->u.key_certificate.issuer_key, false);
        out->u.key_certificate.cert = cert(c, &in->u.key_certificate.cert, true);
        break;
    case KBR_EFFECT_TOKEN_REVOKE:
        out->u.token_revoke.jtis = strings(c, in->u.token_revoke.jtis, true);
        out->u.token_revoke.at = when(c, in->u.token_revoke.at, true);
        out->u.token_revoke.reason = str(c, in->u.token_revoke.reason, false);
        break;
    case KBR_EFFECT_CHECKPOINT:
        copy_checkpoint(c, &in->u.checkpoint, &out->u.checkpoint);
        break;
    case KBR_EFFECT_TOKEN_REVOKE_ALL:
        out->u.token_revoke_all.at = when(c, in->u.token_revoke_all.at, true);
        out->u.token_revoke_all.reason = str(c, in->u.token_revoke_all.reason, false);
        break;
    default:
        fail(c, KBR_ERR_INTERNAL);
    }
}

kbr_err kbr_effects_add(kbr_effects *fx, const kbr_effect *e)
{
    kbr_err err = KBR_OK;
    copier c = {.arena = fx->arena};
    kbr_effect copy = {.type = e->type};

    KBR_ENSURE(fx->n < EFFECTS_MAX, KBR_ERR_INTERNAL);
    switch (e->type) {
    case KBR_EFFECT_KEY_CREATE:
        copy_key_create(&c, e, &copy);
        break;
    case KBR_EFFECT_TOKEN_ISSUE:
        copy_token_issue(&c, e, &copy);
        break;
    case KBR_EFFECT_FIRMWARE_SIGN:
        copy_firmware(&c, e, &copy);
        break;
    case KBR_EFFECT_BATCH_CREATE:
        copy_batch(&c, e, &copy);
        break;
    case KBR_EFFECT_DEVICE_PROVISION:
        copy_provision(&c, e, &copy);
        break;
    case KBR_EFFECT_DEVICE_ROTATE:
        copy_rotate(&c, e, &copy);
        break;
    case KBR_EFFECT_DEBUG_AUTHORIZE:
        copy_debug(&c, e, &copy);
        break;
    case KBR_EFFECT_OTA_REPORT:
        copy_ota(&c, e, &copy);
        break;
    case KBR_EFFECT_ISSUER_ROTATE:
        copy_issuer_rotate(&c, e, &copy);
        break;
    case KBR_EFFECT_DEVICE_REVOKE:
        copy_revoke(&c, e, &copy);
        break;
    case KBR_EFFECT_CRL_ISSUE:
        copy_crl(&c, e, &copy);
        break;
    case KBR_EFFECT_KEY_DELIVER:
        copy_deliver(&c, e, &copy);
        break;
    case KBR_EFFECT_PRODUCT_REGISTER:
        copy_product(&c, e, &copy);
        break;
    case KBR_EFFECT_INCIDENT_CREATE:
        copy_incident(&c, e, &copy);
        break;
    case KBR_EFFECT_INCIDENT_FIX:
    case KBR_EFFECT_INCIDENT_REPORT:
        copy_incident_step(&c, e, &copy);
        break;
    default:
        copy_small(&c, e, &copy);
    }
    /* the arena keeps what a refused effect copied: it goes with the list */
    KBR_GUARD(c.err);
    fx->items[fx->n++] = copy;
out:
    return err;
}

/* ---- the JSON form ----
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
        effect_w(w, &fx->items[i]);
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
    reader r = {.arena = fx->arena};
    kbr_effect e = {0};

    KBR_ENSURE(json_is_object(o), KBR_ERR_INTERNAL);
    KBR_ENSURE(type_from_name(rd_str(&r, o, "type"), &e.type), KBR_ERR_INTERNAL);
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
