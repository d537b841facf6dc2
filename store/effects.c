/*
 * effects.c - kbr_store_apply_effects: checks each ledger effect's fields and
 * applies it through the back end, all of one record inside one savepoint.
 *
 * Effects are built by the broker's handlers, not by callers, so a missing
 * or mistyped field is a broken invariant (KBR_ERR_INTERNAL), not a 400.
 */
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

static kbr_err field_str(const json_t *e, const char *field, bool required, const char **out)
{
    kbr_err err = KBR_OK;
    const json_t *v = json_object_get(e, field);

    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        KBR_ENSURE(!required, KBR_ERR_INTERNAL);
        goto out;
    }
    KBR_ENSURE(json_is_string(v), KBR_ERR_INTERNAL);
    KBR_ENSURE(!required || json_string_length(v) > 0, KBR_ERR_INTERNAL);
    *out = json_string_value(v);
out:
    return err;
}

/* Stored times are all "YYYY-MM-DDTHH:MM:SSZ", so SQL can compare them as text. */
static kbr_err field_time(const json_t *e, const char *field, bool required, char buf[KBR_TIME_LEN],
                          const char **out)
{
    kbr_err err = KBR_OK;
    const char *s = NULL;
    time_t t;

    *out = NULL;
    KBR_GUARD(field_str(e, field, required, &s));
    if (s == NULL)
        goto out;
    KBR_ENSURE(kbr_time_parse(s, &t) == KBR_OK, KBR_ERR_INTERNAL);
    kbr_time_fmt(t, buf);
    *out = buf;
out:
    return err;
}

static kbr_err field_array(const json_t *e, const char *field, bool required, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *v = json_object_get(e, field);

    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        KBR_ENSURE(!required, KBR_ERR_INTERNAL);
        goto out;
    }
    KBR_ENSURE(json_is_array(v), KBR_ERR_INTERNAL);
    *out = v;
out:
    return err;
}

static kbr_err field_str_array(const json_t *e, const char *field, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *arr = NULL;
    const json_t *v;
    size_t i;

    *out = NULL;
    KBR_GUARD(field_array(e, field, true, &arr));
    json_array_foreach(arr, i, v)
    {
        KBR_ENSURE(json_is_string(v), KBR_ERR_INTERNAL);
    }
    *out = arr;
out:
    return err;
}

/* Present and a string, possibly empty (a certificate without a chain). */
static kbr_err field_text(const json_t *e, const char *field, const char **out)
{
    kbr_err err = KBR_OK;
    const json_t *v = json_object_get(e, field);

    *out = NULL;
    KBR_ENSURE(json_is_string(v), KBR_ERR_INTERNAL);
    *out = json_string_value(v);
out:
    return err;
}

static bool is_hex_digit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * A hex string of want digits (any non-zero number when want is 0), as a lowercase copy the
 * caller frees: fingerprints are unique and compared as text, so each has one spelling.
 */
static kbr_err field_hex(const json_t *e, const char *field, size_t want, char **out)
{
    kbr_err err = KBR_OK;
    const char *s = NULL;
    char *copy = NULL;
    size_t n;

    *out = NULL;
    KBR_GUARD(field_str(e, field, true, &s));
    n = json_string_length(json_object_get(e, field));
    KBR_ENSURE(strlen(s) == n && (want == 0 || n == want), KBR_ERR_INTERNAL);
    copy = strdup(s);
    KBR_ENSURE(copy != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        KBR_ENSURE(is_hex_digit(copy[i]), KBR_ERR_INTERNAL);
        if (copy[i] >= 'A' && copy[i] <= 'F')
            copy[i] = (char)(copy[i] - 'A' + 'a');
    }
    *out = copy;
    copy = NULL;
out:
    free(copy);
    return err;
}

/* As field_hex, but absent or null gives NULL: the field came later than the effect. */
static kbr_err field_hex_opt(const json_t *e, const char *field, size_t want, char **out)
{
    const json_t *v = json_object_get(e, field);

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return KBR_OK;
    return field_hex(e, field, want, out);
}

static kbr_err field_int(const json_t *e, const char *field, int64_t min, int64_t *out)
{
    kbr_err err = KBR_OK;
    const json_t *v = json_object_get(e, field);

    *out = 0;
    KBR_ENSURE(json_is_integer(v) && json_integer_value(v) >= min, KBR_ERR_INTERNAL);
    *out = json_integer_value(v);
out:
    return err;
}

static kbr_err key_create(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    kbr_eff_key k = {0};
    char created[KBR_TIME_LEN];
    json_t *products = NULL;
    char *products_json = NULL, *pk_sha256 = NULL;

    KBR_GUARD(field_str(e, "name", true, &k.name));
    KBR_GUARD(field_str(e, "purpose", true, &k.purpose));
    KBR_GUARD(field_str(e, "algorithm", true, &k.algorithm));
    KBR_GUARD(field_str(e, "owner", false, &k.owner));
    KBR_GUARD(field_str(e, "hsm_label", false, &k.hsm_label));
    KBR_GUARD(field_str(e, "hsm_id", false, &k.hsm_id));
    KBR_GUARD(field_str(e, "public_key_pem", false, &k.public_key_pem));
    KBR_GUARD(field_hex_opt(e, "public_key_sha256", 64, &pk_sha256));
    k.public_key_sha256 = pk_sha256;
    KBR_GUARD(field_time(e, "created_at", true, created, &k.created_at));
    KBR_GUARD(field_str_array(e, "products", &products));
    KBR_GUARD(kbr_json_canonical(products, &products_json));
    k.products_json = products_json;
    KBR_GUARD(st->ops->key_create(st, &k, seq));
out:
    free(products_json);
    free(pk_sha256);
    return err;
}

static kbr_err key_retire(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    const char *name = NULL, *at = NULL;
    char at_buf[KBR_TIME_LEN];

    (void)seq;
    KBR_GUARD(field_str(e, "name", true, &name));
    KBR_GUARD(field_time(e, "at", true, at_buf, &at));
    KBR_GUARD(st->ops->key_retire(st, name, at));
out:
    return err;
}

static kbr_err token_issue(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    kbr_eff_token t = {0};
    char issued[KBR_TIME_LEN], nbf[KBR_TIME_LEN], exp[KBR_TIME_LEN];
    const json_t *scope = json_object_get(e, "scope"), *orphan = json_object_get(e, "orphan");
    char *scope_json = NULL;

    KBR_GUARD(field_str(e, "jti", true, &t.jti));
    KBR_GUARD(field_str(e, "sub", true, &t.sub));
    KBR_GUARD(field_str(e, "issued_by", false, &t.issued_by));
    KBR_GUARD(field_str(e, "cnf_x5t", false, &t.cnf_x5t));
    KBR_GUARD(field_time(e, "issued_at", true, issued, &t.issued_at));
    KBR_GUARD(field_time(e, "not_before", false, nbf, &t.not_before));
    KBR_GUARD(field_time(e, "expires_at", true, exp, &t.expires_at));
    KBR_GUARD(field_str(e, "parent_jti", false, &t.parent_jti));
    KBR_ENSURE(orphan == NULL || json_is_boolean(orphan), KBR_ERR_INTERNAL);
    t.orphan = json_is_true(orphan);
    KBR_ENSURE(json_is_object(scope), KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_json_canonical(scope, &scope_json));
    t.scope_json = scope_json;
    KBR_GUARD(st->ops->token_issue(st, &t, seq));
out:
    free(scope_json);
    return err;
}

static kbr_err token_revoke(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    json_t *jtis = NULL;
    const json_t *v;
    const char *at = NULL, *reason = NULL;
    char at_buf[KBR_TIME_LEN];
    size_t i;

    (void)seq;
    KBR_GUARD(field_str_array(e, "jtis", &jtis));
    KBR_GUARD(field_time(e, "at", true, at_buf, &at));
    KBR_GUARD(field_str(e, "reason", false, &reason));
    json_array_foreach(jtis, i, v)
    {
        KBR_GUARD(st->ops->token_revoke(st, json_string_value(v), at, reason));
    }
out:
    return err;
}

static kbr_err firmware_fields(const json_t *e, kbr_eff_firmware *f, char signed_at[KBR_TIME_LEN])
{
    kbr_err err = KBR_OK;

    KBR_GUARD(field_str(e, "product", true, &f->product));
    KBR_GUARD(field_str(e, "version", true, &f->version));
    KBR_GUARD(field_str(e, "digest", true, &f->digest));
    KBR_GUARD(field_str(e, "hash", false, &f->hash));
    KBR_GUARD(field_str(e, "key", false, &f->key));
    KBR_GUARD(field_str(e, "name", false, &f->name));
    KBR_GUARD(field_str(e, "build_id", false, &f->build_id));
    KBR_GUARD(field_time(e, "signed_at", true, signed_at, &f->signed_at));
out:
    return err;
}

static kbr_err component_insert(kbr_store *st, const kbr_eff_firmware *f, const json_t *c)
{
    kbr_err err = KBR_OK;
    kbr_eff_component comp = {0};

    KBR_ENSURE(json_is_object(c), KBR_ERR_INTERNAL);
    KBR_GUARD(field_str(c, "name", true, &comp.name));
    KBR_GUARD(field_str(c, "version", false, &comp.version));
    KBR_GUARD(field_str(c, "purl", false, &comp.purl));
    KBR_GUARD(st->ops->component_insert(st, f->product, f->version, &comp));
out:
    return err;
}

/*
 * A firmware version names one build: the same digest again is a CI retry
 * and changes nothing; another digest would make the SBOM and the
 * signature disagree, so it is refused as a uniqueness conflict.
 */
static kbr_err firmware_sign(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    kbr_eff_firmware f = {0};
    char signed_at[KBR_TIME_LEN];
    json_t *components = NULL;
    const json_t *c;
    char *known = NULL;
    kbr_err lookup;
    size_t i;

    KBR_GUARD(firmware_fields(e, &f, signed_at));
    KBR_GUARD(field_array(e, "components", false, &components));
    lookup = st->ops->firmware_digest(st, f.product, f.version, &known);
    if (lookup == KBR_OK) {
        KBR_ENSURE(strcasecmp(known, f.digest) == 0, KBR_ERR_STORE_CONSTRAINT);
        goto out;
    }
    KBR_ENSURE(lookup == KBR_ERR_NOT_FOUND, lookup);
    KBR_GUARD(st->ops->firmware_insert(st, &f, seq));
    json_array_foreach(components, i, c)
    {
        KBR_GUARD(component_insert(st, &f, c));
    }
out:
    free(known);
    return err;
}

/* A certificate as an effect carries it, with the normalized copies its pointers name. */
typedef struct {
    kbr_eff_cert c;
    char *serial_number, *fingerprint;
    char not_after[KBR_TIME_LEN], issued_at[KBR_TIME_LEN];
} cert_in;

static void cert_in_cleanup(cert_in *ci)
{
    free(ci->serial_number);
    free(ci->fingerprint);
}

/* {serial_number, pem, chain_pem, not_after, fingerprint}; the owner and issue time are the
 * caller's to fill. */
static kbr_err cert_fields(const json_t *obj, cert_in *ci)
{
    kbr_err err = KBR_OK;

    KBR_ENSURE(json_is_object(obj), KBR_ERR_INTERNAL);
    KBR_GUARD(field_hex(obj, "serial_number", 0, &ci->serial_number));
    KBR_GUARD(field_hex(obj, "fingerprint", 64, &ci->fingerprint));
    KBR_GUARD(field_str(obj, "pem", true, &ci->c.pem));
    KBR_GUARD(field_text(obj, "chain_pem", &ci->c.chain_pem));
    KBR_GUARD(field_time(obj, "not_after", true, ci->not_after, &ci->c.not_after));
    ci->c.serial_number = ci->serial_number;
    ci->c.fingerprint = ci->fingerprint;
out:
    return err;
}

/* A key has one current certificate: the new one supersedes whatever it had. */
static kbr_err key_certificate(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    cert_in ci = {0};
    json_t *superseded = NULL;
    bool exists = false;

    KBR_GUARD(cert_fields(e, &ci));
    KBR_GUARD(field_time(e, "at", true, ci.issued_at, &ci.c.issued_at));
    KBR_GUARD(field_str(e, "issuer_key", false, &ci.c.issuer_key));
    KBR_GUARD(field_str(e, "name", true, &ci.c.owner.key_name));
    ci.c.owner.kind = "key";
    KBR_GUARD(st->ops->key_exists(st, ci.c.owner.key_name, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->cert_supersede(st, &ci.c.owner, ci.c.issued_at, &superseded));
    KBR_GUARD(st->ops->cert_insert(st, &ci.c, seq));
out:
    json_decref(superseded);
    cert_in_cleanup(&ci);
    return err;
}

/* At least one market, each a non-empty string, as canonical JSON the caller frees. */
static kbr_err field_markets(const json_t *e, char **out)
{
    kbr_err err = KBR_OK;
    json_t *markets = NULL;
    const json_t *v;
    size_t i;

    *out = NULL;
    KBR_GUARD(field_str_array(e, "markets", &markets));
    KBR_ENSURE(json_array_size(markets) > 0, KBR_ERR_INTERNAL);
    json_array_foreach(markets, i, v)
    {
        KBR_ENSURE(json_string_length(v) > 0, KBR_ERR_INTERNAL);
    }
    KBR_GUARD(kbr_json_canonical(markets, out));
out:
    return err;
}

static kbr_err batch_create(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    kbr_eff_batch b = {0};
    char created[KBR_TIME_LEN];
    char *markets_json = NULL;

    KBR_GUARD(field_str(e, "batch", true, &b.batch));
    KBR_GUARD(field_str(e, "product", true, &b.product));
    KBR_GUARD(field_str(e, "factory", true, &b.factory));
    KBR_GUARD(field_int(e, "quantity", 1, &b.quantity));
    KBR_GUARD(field_time(e, "created_at", true, created, &b.created_at));
    KBR_GUARD(field_str(e, "created_by", true, &b.created_by));
    KBR_GUARD(field_markets(e, &markets_json));
    b.markets_json = markets_json;
    KBR_GUARD(st->ops->batch_create(st, &b, seq));
out:
    free(markets_json);
    return err;
}

/*
 * What device.provision and device.rotate share: the device, the CSR, the identity key (records
 * made before the ledger knew keys have none) and the new certificate.
 */
typedef struct {
    kbr_eff_device d;
    cert_in ci;
    char *csr_sha256, *public_key_sha256;
} device_in;

static void device_in_cleanup(device_in *in)
{
    cert_in_cleanup(&in->ci);
    free(in->csr_sha256);
    free(in->public_key_sha256);
}

static kbr_err device_fields(const json_t *e, device_in *in)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(field_str(e, "product", true, &in->d.product));
    KBR_GUARD(field_str(e, "serial", true, &in->d.serial));
    KBR_GUARD(field_hex(e, "csr_sha256", 64, &in->csr_sha256));
    KBR_GUARD(field_hex_opt(e, "public_key_sha256", 64, &in->public_key_sha256));
    KBR_GUARD(cert_fields(json_object_get(e, "certificate"), &in->ci));
    KBR_GUARD(field_time(e, "at", true, in->ci.issued_at, &in->ci.c.issued_at));
    KBR_GUARD(field_str(e, "issuer_key", true, &in->ci.c.issuer_key));
    in->d.csr_sha256 = in->csr_sha256;
    in->d.public_key_sha256 = in->public_key_sha256;
    in->d.at = in->ci.c.issued_at;
    in->ci.c.owner =
        (kbr_eff_owner){.kind = "device", .product = in->d.product, .serial = in->d.serial};
out:
    return err;
}

/* Canonical text of detail, which this call consumes (NULL: json_pack ran out of memory). */
static kbr_err detail_take(json_t *detail, char **out)
{
    kbr_err err = KBR_OK;

    *out = NULL;
    KBR_ENSURE(detail != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_json_canonical(detail, out));
out:
    json_decref(detail);
    return err;
}

/* The image a device left the factory with opens its firmware history. */
static kbr_err factory_image(kbr_store *st, const kbr_eff_device *d, int64_t seq)
{
    const kbr_eff_device_firmware row = {.product = d->product,
                                         .serial = d->serial,
                                         .version = d->firmware_version,
                                         .status = "factory",
                                         .at = d->at};
    bool added = false;

    if (d->firmware_version == NULL)
        return KBR_OK;
    return st->ops->device_firmware_insert(st, &row, seq, &added);
}

/*
 * The batch is claimed here as well as in the daemon's counters, and the identity key is
 * recorded here as well as checked before issuing: the store is the last place that can
 * refuse a device past the production order's quantity or a key pair that is already another
 * device.
 */
static kbr_err device_provision(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    device_in in = {0};
    char *detail = NULL;

    KBR_GUARD(device_fields(e, &in));
    KBR_GUARD(field_str(e, "batch", true, &in.d.batch));
    KBR_GUARD(field_str(e, "factory", true, &in.d.factory));
    KBR_GUARD(field_str(e, "firmware_version", false, &in.d.firmware_version));
    KBR_GUARD(st->ops->device_insert(st, &in.d, seq));
    KBR_GUARD(factory_image(st, &in.d, seq));
    KBR_GUARD(st->ops->batch_claim(st, in.d.batch, in.d.product, in.d.factory));
    KBR_GUARD(st->ops->cert_insert(st, &in.ci.c, seq));
    KBR_GUARD(detail_take(json_pack("{s:s,s:s,s:s?,s:s,s:s}", "batch", in.d.batch, "factory",
                                    in.d.factory, "firmware_version", in.d.firmware_version,
                                    "fingerprint", in.ci.c.fingerprint, "serial_number",
                                    in.ci.c.serial_number),
                          &detail));
    KBR_GUARD(st->ops->device_event_insert(st, in.d.product, in.d.serial, "provisioned", in.d.at,
                                           detail, seq));
out:
    free(detail);
    device_in_cleanup(&in);
    return err;
}

static kbr_err device_rotate(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    device_in in = {0};
    json_t *old = NULL;
    char *detail = NULL;
    bool exists = false;

    KBR_GUARD(device_fields(e, &in));
    KBR_GUARD(st->ops->device_exists(st, in.d.product, in.d.serial, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    if (in.d.public_key_sha256 != NULL)
        KBR_GUARD(st->ops->device_key_set(st, in.d.product, in.d.serial, in.d.public_key_sha256));
    KBR_GUARD(st->ops->cert_supersede(st, &in.ci.c.owner, in.d.at, &old));
    KBR_GUARD(st->ops->cert_insert(st, &in.ci.c, seq));
    KBR_GUARD(detail_take(json_pack("{s:O,s:s,s:s,s:s}", "old", old, "new", in.ci.c.fingerprint,
                                    "serial_number", in.ci.c.serial_number, "csr_sha256",
                                    in.d.csr_sha256),
                          &detail));
    KBR_GUARD(st->ops->device_event_insert(st, in.d.product, in.d.serial, "rotated", in.d.at,
                                           detail, seq));
out:
    free(detail);
    json_decref(old);
    device_in_cleanup(&in);
    return err;
}

/* A debug.authorize effect with the normalized copies its pointers name. */
typedef struct {
    kbr_eff_debug d;
    char *challenge_sha256, *permissions, *message_sha256, *signature_sha256;
    char at[KBR_TIME_LEN], expires_at[KBR_TIME_LEN];
} debug_in;

static void debug_in_cleanup(debug_in *in)
{
    free(in->challenge_sha256);
    free(in->permissions);
    free(in->message_sha256);
    free(in->signature_sha256);
}

static kbr_err debug_fields(const json_t *e, debug_in *in)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(field_str(e, "key", true, &in->d.key));
    KBR_GUARD(field_str(e, "product", true, &in->d.product));
    KBR_GUARD(field_str(e, "serial", true, &in->d.serial));
    KBR_GUARD(field_hex(e, "challenge_sha256", 64, &in->challenge_sha256));
    KBR_GUARD(field_hex(e, "permissions", 0, &in->permissions));
    KBR_GUARD(field_str(e, "ticket", true, &in->d.ticket));
    KBR_GUARD(field_str(e, "principal", true, &in->d.principal));
    KBR_GUARD(field_hex(e, "message_sha256", 64, &in->message_sha256));
    KBR_GUARD(field_hex(e, "signature_sha256", 64, &in->signature_sha256));
    KBR_GUARD(field_time(e, "at", true, in->at, &in->d.at));
    KBR_GUARD(field_time(e, "expires_at", true, in->expires_at, &in->d.expires_at));
    in->d.challenge_sha256 = in->challenge_sha256;
    in->d.permissions = in->permissions;
    in->d.message_sha256 = in->message_sha256;
    in->d.signature_sha256 = in->signature_sha256;
out:
    return err;
}

/*
 * A debug unlock is for a device the ledger knows, and a key answers a challenge once: the
 * recorded challenge is what refuses a replayed debug session, also after a restart.
 */
static kbr_err debug_authorize(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    debug_in in = {0};
    char *detail = NULL;
    bool exists = false;

    KBR_GUARD(debug_fields(e, &in));
    KBR_GUARD(st->ops->device_exists(st, in.d.product, in.d.serial, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->debug_challenge_insert(st, &in.d, seq));
    KBR_GUARD(detail_take(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "key", in.d.key, "ticket",
                                    in.d.ticket, "principal", in.d.principal, "permissions",
                                    in.d.permissions, "challenge_sha256", in.d.challenge_sha256,
                                    "message_sha256", in.d.message_sha256, "signature_sha256",
                                    in.d.signature_sha256, "expires_at", in.d.expires_at),
                          &detail));
    KBR_GUARD(st->ops->device_event_insert(st, in.d.product, in.d.serial, "debug-auth", in.d.at,
                                           detail, seq));
out:
    free(detail);
    debug_in_cleanup(&in);
    return err;
}

/* One result of an OTA report, with the normalized time its row points to. */
typedef struct {
    kbr_eff_device_firmware row;
    char at[KBR_TIME_LEN];
} ota_result;

static kbr_err ota_result_fields(const json_t *r, ota_result *out)
{
    kbr_err err = KBR_OK;
    const char *status = NULL;

    KBR_ENSURE(json_is_object(r), KBR_ERR_INTERNAL);
    KBR_GUARD(field_str(r, "serial", true, &out->row.serial));
    KBR_GUARD(field_str(r, "status", true, &status));
    KBR_ENSURE(strcmp(status, "installed") == 0 || strcmp(status, "failed") == 0, KBR_ERR_INTERNAL);
    KBR_GUARD(field_time(r, "at", true, out->at, &out->row.at));
    out->row.status = status;
out:
    return err;
}

/* A validated ota.report: every result is read before the ledger is asked anything. */
typedef struct {
    const char *product, *version, *campaign, *reported_by;
    char at[KBR_TIME_LEN];
    ota_result *results;
    size_t n;
} ota_in;

static kbr_err ota_fields(const json_t *e, ota_in *in)
{
    kbr_err err = KBR_OK;
    json_t *results = NULL;
    const json_t *r;
    const char *at = NULL;
    size_t i;

    KBR_GUARD(field_str(e, "product", true, &in->product));
    KBR_GUARD(field_str(e, "version", true, &in->version));
    KBR_GUARD(field_str(e, "campaign", false, &in->campaign));
    KBR_GUARD(field_str(e, "reported_by", true, &in->reported_by));
    KBR_GUARD(field_time(e, "at", true, in->at, &at));
    KBR_GUARD(field_array(e, "results", true, &results));
    in->n = json_array_size(results);
    in->results = calloc(in->n > 0 ? in->n : 1, sizeof(*in->results));
    KBR_ENSURE(in->results != NULL, KBR_ERR_NOMEM);
    json_array_foreach(results, i, r)
    {
        KBR_GUARD(ota_result_fields(r, &in->results[i]));
        in->results[i].row.product = in->product;
        in->results[i].row.version = in->version;
        in->results[i].row.campaign = in->campaign;
    }
out:
    return err;
}

/*
 * Only an install moves the current firmware, and only forward in time.  A fact the history
 * holds already (the platform sent its report again) adds nothing: not even the current
 * firmware moves, since an equal `at` would otherwise hand it back to the repeated report.
 */
static kbr_err ota_apply(kbr_store *st, const kbr_eff_device_firmware *row, const char *detail,
                         int64_t seq)
{
    kbr_err err = KBR_OK;
    bool exists = false, added = false, installed = strcmp(row->status, "installed") == 0;

    KBR_GUARD(st->ops->device_exists(st, row->product, row->serial, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->device_firmware_insert(st, row, seq, &added));
    if (!added)
        goto out;
    KBR_GUARD(st->ops->device_event_insert(st, row->product, row->serial,
                                           installed ? "ota-installed" : "ota-failed", row->at,
                                           detail, seq));
    if (installed)
        KBR_GUARD(
            st->ops->device_firmware_current(st, row->product, row->serial, row->version, row->at));
out:
    return err;
}

/* A report names a build this broker signed; the daemon leaves out devices it does not know. */
static kbr_err ota_report(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    ota_in in = {0};
    char *digest = NULL, *detail = NULL;
    kbr_err lookup;

    KBR_GUARD(ota_fields(e, &in));
    lookup = st->ops->firmware_digest(st, in.product, in.version, &digest);
    KBR_ENSURE(lookup != KBR_ERR_NOT_FOUND, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(lookup);
    KBR_GUARD(detail_take(json_pack("{s:s,s:s?,s:s}", "version", in.version, "campaign",
                                    in.campaign, "reported_by", in.reported_by),
                          &detail));
    for (size_t i = 0; i < in.n; i++)
        KBR_GUARD(ota_apply(st, &in.results[i].row, detail, seq));
out:
    free(detail);
    free(digest);
    free(in.results);
    return err;
}

/* A tree head is only recorded if it is the store's own: a root the log does not have
 * would be a signature over a history that never was. */
static kbr_err checkpoint(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    const char *root_hex = NULL, *sig = NULL, *at = NULL;
    char at_buf[KBR_TIME_LEN], want[2 * 32 + 1];
    const json_t *size = json_object_get(e, "size");
    unsigned char root[32];

    KBR_GUARD(field_str(e, "root_hash", true, &root_hex));
    KBR_GUARD(field_str(e, "signature_b64", true, &sig));
    KBR_GUARD(field_time(e, "time", true, at_buf, &at));
    KBR_ENSURE(json_is_integer(size) && json_integer_value(size) >= 0, KBR_ERR_INTERNAL);
    KBR_ENSURE(json_integer_value(size) < seq, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(kbr_store_merkle_root(st, json_integer_value(size), root));
    kbr_hex_encode_buf(root, sizeof(root), want);
    KBR_ENSURE(strcmp(want, root_hex) == 0, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->checkpoint_insert(st, json_integer_value(size), root_hex, at, sig, seq));
out:
    return err;
}

typedef kbr_err (*effect_fn)(kbr_store *st, const json_t *e, int64_t seq);

static const struct {
    const char *type;
    effect_fn apply;
} effect_types[] = {
    {"key.create", key_create},           {"key.retire", key_retire},
    {"key.certificate", key_certificate}, {"token.issue", token_issue},
    {"token.revoke", token_revoke},       {"firmware.sign", firmware_sign},
    {"batch.create", batch_create},       {"device.provision", device_provision},
    {"device.rotate", device_rotate},     {"debug.authorize", debug_authorize},
    {"ota.report", ota_report},           {"checkpoint", checkpoint},
};

static kbr_err apply_one(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_ERR_INTERNAL;
    const char *type = NULL;

    KBR_ENSURE(json_is_object(e), KBR_ERR_INTERNAL);
    KBR_GUARD(field_str(e, "type", true, &type));
    for (size_t i = 0; i < sizeof(effect_types) / sizeof(effect_types[0]); i++) {
        if (strcmp(effect_types[i].type, type) == 0) {
            err = effect_types[i].apply(st, e, seq);
            break;
        }
    }
out:
    return err;
}

kbr_err kbr_store_apply_effects(kbr_store *st, const json_t *effects, int64_t seq)
{
    kbr_err err = KBR_OK;
    bool in_savepoint = false;
    const json_t *e;
    size_t i;

    if (effects == NULL)
        goto out;
    KBR_ENSURE(json_is_array(effects), KBR_ERR_INTERNAL);
    if (json_array_size(effects) == 0)
        goto out;
    KBR_GUARD(st->ops->savepoint(st));
    in_savepoint = true;
    json_array_foreach(effects, i, e)
    {
        KBR_GUARD(apply_one(st, e, seq));
    }
    KBR_GUARD(st->ops->release(st));
    in_savepoint = false;
out:
    if (in_savepoint)
        st->ops->rollback_to(st);
    return err;
}
