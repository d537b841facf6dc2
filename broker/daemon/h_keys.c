/*
 * h_keys.c - POST/GET /v1/keys, GET /v1/keys/{name}, POST /v1/keys/{name}/retire.
 *
 * Keys are generated inside the HSM (or an existing HSM key pair is
 * registered by label); the registry records what the product needs to
 * know about it, and every key object shows the HSM's own attributes as the
 * HSM reports them at the time of the call.
 *
 * An HSM object is one registry entry, whatever its name or purpose: a
 * second registration would give another product's tokens a signing path to
 * the same private key.  So registration by label is refused for an object
 * the registry already names (by label, CKA_ID or public key; the store's
 * unique indexes are the final rule), for the broker's own keys, and for any
 * admin limited to products: a product team cannot tell which product an
 * object in a shared HSM belongs to, and the security team can.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "kbd.h"

static const char *const purposes[] = {"firmware-signing", "ota-signing", "device-identity-ca",
                                       "debug-auth", NULL};

typedef struct {
    char *name, *purpose, *owner, *hsm_label;
    kbr_alg alg;
    bool alg_given, register_existing;
    json_t *products;
    char public_key_sha256[65];
} key_create_ctx;

static void key_create_ctx_free(void *p)
{
    key_create_ctx *c = p;

    if (c == NULL)
        return;
    free(c->name);
    free(c->purpose);
    free(c->owner);
    free(c->hsm_label);
    json_decref(c->products);
    free(c);
}

static bool known_purpose(const char *p)
{
    for (size_t i = 0; purposes[i] != NULL; i++)
        if (strcmp(purposes[i], p) == 0)
            return true;
    return false;
}

/* Finishes a key object for a response: live HSM facts under "hsm". */
static kbr_err add_hsm_facts(kbd_req *r, kbd_worker *w, json_t *key)
{
    const char *label = json_string_value(json_object_get(key, "hsm_label"));
    kbr_err err = KBR_OK;
    json_t *facts = kbd_hsm_facts(w->hsm, label, &err);

    kbd_note_hsm(r->d, err);
    if (err == KBR_ERR_NOT_FOUND) {
        /* the registry names a key the HSM no longer holds: show it, do not hide the key */
        json_object_set_new(key, "hsm", json_pack("{s:s,s:b}", "label", label, "present", 0));
        return KBR_OK;
    }
    if (err != KBR_OK)
        return err;
    json_object_set_new(facts, "present", json_true());
    json_object_set_new(key, "hsm", facts);
    return KBR_OK;
}

static kbr_err create_parse(kbd_req *r, key_create_ctx *c)
{
    static const char *const allowed[] = {"name",  "purpose",   "algorithm", "products",
                                          "owner", "hsm_label", NULL};
    const char *name, *purpose, *alg, *owner, *label;
    json_t *products;
    size_t i;
    json_t *p;

    if (kbd_json_only(r->body, allowed, &r->msg) != KBR_OK ||
        kbd_json_name(r->body, "name", true, &name, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "purpose", true, 64, &purpose, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "algorithm", false, 32, &alg, &r->msg) != KBR_OK ||
        kbd_json_names(r->body, "products", true, &products, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "owner", false, 256, &owner, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "hsm_label", false, KBR_HSM_LABEL_MAX - 1, &label, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (!known_purpose(purpose))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "purpose: must be firmware-signing, ota-signing, device-identity-ca or "
                        "debug-auth");
    if (alg == NULL && label == NULL)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "algorithm: required");
    if (alg != NULL && kbr_alg_from_name(alg, &c->alg) != KBR_OK)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "algorithm: must be ecdsa-p256, ecdsa-p384, ed25519, rsa-3072 or "
                        "rsa-4096");
    if (label != NULL && strncmp(label, "kbr/", 4) == 0)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "hsm_label: labels under kbr/ belong to the broker itself");
    if (label != NULL && r->tok->scope.products.present)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "hsm_label: only an admin token without a products limit registers a key "
                        "found in the HSM");
    if (label != NULL && kbd_keys_find_label(r->d->keys, label) != NULL)
        return kbr_fail(&r->msg, KBR_ERR_CONFLICT,
                        "hsm_label: the HSM object \"%s\" is registered already, as key \"%s\"",
                        label, kbd_keys_find_label(r->d->keys, label)->name);
    json_array_foreach(products, i, p)
    {
        if (kbr_audit_rec_add_product(r->rec, json_string_value(p)) != KBR_OK)
            return KBR_ERR_NOMEM;
    }
    json_array_foreach(products, i, p)
    {
        if (!kbr_namelist_match(&r->tok->scope.products, json_string_value(p)))
            return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                            "products[%zu]: \"%s\" is outside the token's products", i,
                            json_string_value(p));
    }
    if (!kbr_namelist_match(&r->tok->scope.keys, name))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "name: \"%s\" is outside the token's keys",
                        name);
    if (kbd_keys_find(r->d->keys, name) != NULL)
        return kbr_fail(&r->msg, KBR_ERR_CONFLICT, "name: key \"%s\" already exists", name);
    c->alg_given = alg != NULL;
    c->register_existing = label != NULL;
    c->name = strdup(name);
    c->purpose = strdup(purpose);
    c->owner = strdup(owner != NULL ? owner : r->sub);
    if (label != NULL)
        c->hsm_label = strdup(label);
    else if (asprintf(&c->hsm_label, "%s%s", KBD_KEY_LABEL_PREFIX, name) < 0)
        c->hsm_label = NULL;
    c->products = json_incref(products);
    if (c->name == NULL || c->purpose == NULL || c->owner == NULL || c->hsm_label == NULL)
        return KBR_ERR_NOMEM;
    return KBR_OK;
}

/* Generates, or finds the key to register; fills info. */
static kbr_err create_in_hsm(kbd_req *r, kbd_worker *w, key_create_ctx *c, kbr_hsm_key_info *info)
{
    kbr_err err;

    if (!c->register_existing) {
        err = kbr_hsm_generate(w->hsm, c->hsm_label, c->alg, info);
        kbd_note_hsm(r->d, err);
        if (err == KBR_ERR_CONFLICT)
            kbd_req_error(r, err, "name: the HSM already holds an object labelled %s",
                          c->hsm_label);
        return err;
    }
    err = kbr_hsm_find_key(w->hsm, c->hsm_label, info);
    kbd_note_hsm(r->d, err);
    if (err == KBR_ERR_NOT_FOUND)
        kbd_req_error(r, err, "hsm_label: no private key labelled \"%s\" in the HSM", c->hsm_label);
    else if (err == KBR_OK && !info->alg_known)
        kbd_req_error(r, err = KBR_ERR_BAD_REQUEST,
                      "hsm_label: the key's type is not one keybroker uses");
    else if (err == KBR_OK && c->alg_given && info->alg != c->alg)
        kbd_req_error(r, err = KBR_ERR_BAD_REQUEST, "algorithm: the HSM key labelled \"%s\" is %s",
                      c->hsm_label, kbr_alg_name(info->alg));
    else if (err == KBR_OK && (info->extractable || !info->sensitive))
        kbd_req_error(r, err = KBR_ERR_FORBIDDEN,
                      "hsm_label: the key is extractable or not sensitive; keybroker only "
                      "registers keys that cannot leave the HSM");
    return err;
}

/* The object registered by label is none the registry or the broker already has. */
static kbr_err check_unregistered(kbd_req *r, kbd_worker *w, key_create_ctx *c,
                                  const kbr_hsm_key_info *info)
{
    json_t *keys = NULL, *key, *issuers = NULL;
    kbr_err err = KBR_OK;
    bool own = strcmp(c->public_key_sha256, r->d->audit_key_sha256) == 0;
    size_t i;

    if (kbr_store_key_list(w->store, &keys) != KBR_OK ||
        kbr_store_issuer_keys(w->store, &issuers) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the key registry could not be read");
        json_decref(keys);
        return KBR_ERR_AUDIT;
    }
    /* every issuer key the ledger ever recorded, retired ones included */
    json_array_foreach(issuers, i, key)
    {
        const char *pk = json_string_value(json_object_get(key, "public_key_sha256"));
        own = own || (pk != NULL && strcmp(pk, c->public_key_sha256) == 0);
    }
    json_decref(issuers);
    if (own) {
        kbd_req_error(r, KBR_ERR_FORBIDDEN,
                      "hsm_label: the key is one of the broker's own (token issuer or audit)");
        json_decref(keys);
        return KBR_ERR_FORBIDDEN;
    }
    json_array_foreach(keys, i, key)
    {
        const char *id = json_string_value(json_object_get(key, "hsm_id"));
        const char *pk = json_string_value(json_object_get(key, "public_key_sha256"));
        if ((pk != NULL && strcmp(pk, c->public_key_sha256) == 0) ||
            (id != NULL && id[0] != '\0' && strcmp(id, info->id_hex) == 0)) {
            kbd_req_error(r, err = KBR_ERR_CONFLICT,
                          "hsm_label: the HSM object is registered already, as key \"%s\"",
                          json_string_value(json_object_get(key, "name")));
            break;
        }
    }
    json_decref(keys);
    return err;
}

/* SHA-256 of the DER SubjectPublicKeyInfo, the ledger's one name for a public key. */
static kbr_err pem_key_sha256(const char *pem, char hex[65])
{
    kbr_err err = KBR_OK;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pub = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;

    KBR_ENSURE(pub != NULL, KBR_ERR_CRYPTO);
    KBR_GUARD(kbr_store_public_key_sha256(pub, hex));
out:
    EVP_PKEY_free(pub);
    BIO_free(bio);
    return err;
}

static void key_create_work(kbd_req *r, kbd_worker *w)
{
    key_create_ctx *c = r->ctx;
    kbr_hsm_key_info info = {0};
    char *pem = NULL;
    char now[KBR_TIME_LEN];
    kbr_effect fx = {.type = KBR_EFFECT_KEY_CREATE};
    json_t *effect = NULL;
    kbr_err err = create_in_hsm(r, w, c, &info);

    if (err != KBR_OK) {
        if (r->err == KBR_OK)
            kbd_req_error(r, err, "the HSM could not create the key");
        return;
    }
    err = kbr_hsm_public_key_pem(w->hsm, c->hsm_label, &pem);
    if (err == KBR_OK)
        err = pem_key_sha256(pem, c->public_key_sha256);
    if (err != KBR_OK) {
        kbd_req_error(r, err, "the HSM did not give the public key");
        free(pem);
        return;
    }
    if (c->register_existing && check_unregistered(r, w, c, &info) != KBR_OK) {
        free(pem);
        return;
    }
    kbr_time_fmt(time(NULL), now);
    fx.u.key_create = (kbr_fx_key_create){.name = c->name,
                                          .purpose = c->purpose,
                                          .algorithm = kbr_alg_name(info.alg),
                                          .owner = c->owner,
                                          .hsm_label = c->hsm_label,
                                          .hsm_id = info.id_hex,
                                          .public_key_pem = pem,
                                          .public_key_sha256 = c->public_key_sha256,
                                          .created_at = now};
    err = kbd_strings_of(c->products, &fx.u.key_create.products);
    if (err == KBR_OK)
        err = kbd_req_effect(r, &fx);
    if (err == KBR_OK && (effect = kbd_effect_json(&fx)) == NULL)
        err = KBR_ERR_NOMEM;
    free((void *)fx.u.key_create.products.items);
    free(pem);
    if (err != KBR_OK) {
        kbd_req_error(r, err, "the key could not be recorded");
        return;
    }
    json_object_set_new(r->rec->detail, "key", json_deep_copy(effect));
    json_object_set_new(r->rec->detail, "registered_existing", json_boolean(c->register_existing));
    r->resp = effect;
    json_object_set_new(r->resp, "state", json_string("active"));
    json_object_set_new(r->resp, "retired_at", json_null());
    json_object_set_new(r->resp, "certificate", json_null());
    if (add_hsm_facts(r, w, r->resp) != KBR_OK)
        kbd_req_error(r, KBR_ERR_HSM, "the HSM did not report the key's attributes");
    r->status = 201;
}

static void key_create_finish(kbd_req *r)
{
    if (kbd_keys_put(r->d->keys, r->resp) != KBR_OK)
        kbd_log(KBD_LOG_ERROR, "registry.failed", r->request_id,
                "key registry update failed for a committed key");
}

kbr_err kbd_h_key_create(kbd_req *r)
{
    key_create_ctx *c = calloc(1, sizeof(*c));
    kbr_err err;

    if (c == NULL)
        return KBR_ERR_NOMEM;
    r->ctx = c;
    r->ctx_free = key_create_ctx_free;
    err = create_parse(r, c);
    if (err != KBR_OK)
        return err;
    r->rec->key = strdup(c->name);
    r->work = key_create_work;
    r->finish = key_create_finish;
    kbd_req_dispatch(r);
    return KBR_OK;
}

static void scope_free(void *p)
{
    kbr_scope_cleanup(p);
    free(p);
}

static void key_list_work(kbd_req *r, kbd_worker *w)
{
    const kbr_scope *scope = r->ctx;
    json_t *keys = NULL, *shown = json_array(), *key;
    size_t i;

    if (shown == NULL || kbr_store_key_list(w->store, &keys) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the key registry could not be read");
        json_decref(shown);
        return;
    }
    json_array_foreach(keys, i, key)
    {
        const char *name = json_string_value(json_object_get(key, "name"));
        if (!kbd_scope_sees_key(scope, name, json_object_get(key, "products")))
            continue;
        if (add_hsm_facts(r, w, key) != KBR_OK) {
            kbd_req_error(r, KBR_ERR_HSM, "the HSM did not report the keys' attributes");
            break;
        }
        json_array_append(shown, key);
    }
    json_decref(keys);
    r->resp = json_pack("{s:o}", "keys", shown);
    json_object_set_new(r->rec->detail, "returned",
                        json_integer((json_int_t)json_array_size(shown)));
}

kbr_err kbd_h_key_list(kbd_req *r)
{
    kbr_scope *scope = calloc(1, sizeof(*scope));

    /* the worker filters by a copy: the registry's token belongs to the event thread */
    if (scope == NULL || kbd_scope_copy(&r->tok->scope, scope) != KBR_OK) {
        free(scope);
        return KBR_ERR_NOMEM;
    }
    r->ctx = scope;
    r->ctx_free = scope_free;
    r->work = key_list_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}

static void key_get_work(kbd_req *r, kbd_worker *w)
{
    json_t *key = NULL;
    kbr_err err = kbr_store_key_get(w->store, r->arg, &key);

    if (err != KBR_OK) {
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT, "key \"%s\" %s", r->arg,
                      err == KBR_ERR_NOT_FOUND ? "not found" : "could not be read");
        return;
    }
    if (add_hsm_facts(r, w, key) != KBR_OK)
        kbd_req_error(r, KBR_ERR_HSM, "the HSM did not report the key's attributes");
    r->resp = key;
}

kbr_err kbd_h_key_get(kbd_req *r)
{
    const unsigned key_ops = KBR_OP_SIGN | KBR_OP_PROVISION | KBR_OP_ROTATE | KBR_OP_DEBUG_AUTH;
    const kbd_key *k = NULL;
    kbr_err err = kbd_req_path_key_visible(r, &k);

    if (err != KBR_OK)
        return err;
    /* whoever may use a key may see it (its public key, its state) */
    if (!kbr_policy_allows_op(r->tok, KBR_OP_READ) && (r->tok->scope.ops & key_ops) == 0)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "token scope does not include op \"read\"");
    r->work = key_get_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}

static void key_retire_finish(kbd_req *r)
{
    kbd_key *k = kbd_keys_find(r->d->keys, r->arg);

    if (k != NULL)
        k->retired = true;
}

kbr_err kbd_h_key_retire(kbd_req *r)
{
    static const char *const allowed[] = {"reason", NULL};
    const kbd_key *k = NULL;
    const char *reason = NULL;
    char now[KBR_TIME_LEN];
    kbr_err err = kbd_req_path_key(r, &k);

    if (err != KBR_OK)
        return err;
    if (kbd_json_only(r->body, allowed, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "reason", false, 512, &reason, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (k->retired)
        return kbr_fail(&r->msg, KBR_ERR_CONFLICT, "key \"%s\" is already retired", r->arg);
    kbr_time_fmt(time(NULL), now);
    err = kbd_req_effect(r, &(kbr_effect){.type = KBR_EFFECT_KEY_RETIRE,
                                          .u.key_retire = {.name = r->arg, .at = now}});
    if (err != KBR_OK)
        return err;
    json_object_set_new(r->rec->detail, "reason", reason ? json_string(reason) : json_null());
    r->resp = json_pack("{s:s,s:s,s:s}", "name", r->arg, "state", "retired", "retired_at", now);
    r->finish = key_retire_finish;
    kbd_req_audit_and_reply(r);
    return KBR_OK;
}
