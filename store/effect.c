/*
 * effect.c - ledger effects as typed values: the rules every field must
 * meet, checked once as an effect joins a list (whether a handler built it
 * or it was read from JSON; the JSON form is effect_json.c).
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

/* The effects themselves live in the arena: a request has one or two, and a list of 64
 * inline would be 8 KB to allocate and zero for each. */
struct kbr_effects {
    kbr_arena *arena;
    kbr_effect *items[EFFECTS_MAX];
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

bool kbr_effect_type_from_name(const char *name, kbr_effect_type *out)
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
    return fx != NULL && i < fx->n ? fx->items[i] : NULL;
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
    kbr_effect copy = {.type = e->type}, *slot;

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
    slot = kbr_arena_alloc(fx->arena, sizeof(*slot));
    KBR_ENSURE(slot != NULL, KBR_ERR_NOMEM);
    *slot = copy;
    fx->items[fx->n++] = slot;
out:
    return err;
}

kbr_arena *kbr_effects_arena(kbr_effects *fx)
{
    return fx->arena;
}
