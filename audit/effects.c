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

#include "store_backend.h"

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

static kbr_err key_create(kbr_store *st, const json_t *e, int64_t seq)
{
    kbr_err err = KBR_OK;
    kbr_eff_key k = {0};
    char created[KBR_TIME_LEN];
    json_t *products = NULL;
    char *products_json = NULL;

    KBR_GUARD(field_str(e, "name", true, &k.name));
    KBR_GUARD(field_str(e, "purpose", true, &k.purpose));
    KBR_GUARD(field_str(e, "algorithm", true, &k.algorithm));
    KBR_GUARD(field_str(e, "owner", false, &k.owner));
    KBR_GUARD(field_str(e, "hsm_label", false, &k.hsm_label));
    KBR_GUARD(field_str(e, "hsm_id", false, &k.hsm_id));
    KBR_GUARD(field_str(e, "public_key_pem", false, &k.public_key_pem));
    KBR_GUARD(field_time(e, "created_at", true, created, &k.created_at));
    KBR_GUARD(field_str_array(e, "products", &products));
    KBR_GUARD(kbr_json_canonical(products, &products_json));
    k.products_json = products_json;
    KBR_GUARD(st->ops->key_create(st, &k, seq));
out:
    free(products_json);
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
    const json_t *scope = json_object_get(e, "scope");
    char *scope_json = NULL;

    KBR_GUARD(field_str(e, "jti", true, &t.jti));
    KBR_GUARD(field_str(e, "sub", true, &t.sub));
    KBR_GUARD(field_str(e, "issued_by", false, &t.issued_by));
    KBR_GUARD(field_str(e, "cnf_x5t", false, &t.cnf_x5t));
    KBR_GUARD(field_time(e, "issued_at", true, issued, &t.issued_at));
    KBR_GUARD(field_time(e, "not_before", false, nbf, &t.not_before));
    KBR_GUARD(field_time(e, "expires_at", true, exp, &t.expires_at));
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

typedef kbr_err (*effect_fn)(kbr_store *st, const json_t *e, int64_t seq);

static const struct {
    const char *type;
    effect_fn apply;
} effect_types[] = {
    {"key.create", key_create},     {"key.retire", key_retire},       {"token.issue", token_issue},
    {"token.revoke", token_revoke}, {"firmware.sign", firmware_sign},
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
