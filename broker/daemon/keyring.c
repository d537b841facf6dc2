/*
 * keyring.c - the event thread's registry of keys (name, purpose, algorithm,
 * products, state), so authorization never waits on the store.  The store
 * stays the truth: the registry is loaded from it at start and follows each
 * committed create or retire.
 */
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "kbd.h"
#include "routes.h"

typedef struct {
    kbd_key key;
    UT_hash_handle hh;
} key_node;

struct kbd_keys {
    key_node *by_name;
};

kbr_err kbd_keys_new(kbd_keys **out)
{
    *out = calloc(1, sizeof(**out));
    return *out == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

static void node_free(key_node *n)
{
    if (n == NULL)
        return;
    free(n->key.name);
    free(n->key.purpose);
    free(n->key.hsm_label);
    json_decref(n->key.products);
    free(n);
}

void kbd_keys_free(kbd_keys *k)
{
    key_node *n, *tmp;

    if (k == NULL)
        return;
    HASH_ITER(hh, k->by_name, n, tmp)
    {
        HASH_DEL(k->by_name, n);
        node_free(n);
    }
    free(k);
}

kbr_err kbd_keys_put(kbd_keys *k, const json_t *key)
{
    kbr_err err = KBR_OK;
    key_node *n = NULL, *old = NULL;
    const char *name = json_string_value(json_object_get(key, "name"));
    const char *purpose = json_string_value(json_object_get(key, "purpose"));
    const char *alg = json_string_value(json_object_get(key, "algorithm"));
    const char *label = json_string_value(json_object_get(key, "hsm_label"));
    const char *state = json_string_value(json_object_get(key, "state"));
    json_t *products = json_object_get(key, "products");

    KBR_ENSURE(name != NULL && purpose != NULL && alg != NULL && label != NULL && state != NULL &&
                   json_is_array(products),
               KBR_ERR_INTERNAL);
    n = calloc(1, sizeof(*n));
    KBR_ENSURE(n != NULL, KBR_ERR_NOMEM);
    /* an ota-encryption key is a P-256 key pair used for ECDH, by devices alone */
    if (strcmp(alg, KBD_ALG_ECDH_P256) == 0)
        n->key.alg = KBR_ALG_ECDSA_P256;
    else
        KBR_GUARD(kbr_alg_from_name(alg, &n->key.alg));
    n->key.name = strdup(name);
    n->key.purpose = strdup(purpose);
    n->key.hsm_label = strdup(label);
    n->key.products = json_deep_copy(products);
    n->key.retired = strcmp(state, "retired") == 0;
    KBR_ENSURE(n->key.name != NULL && n->key.purpose != NULL && n->key.hsm_label != NULL &&
                   n->key.products != NULL,
               KBR_ERR_NOMEM);
    HASH_FIND_STR(k->by_name, name, old);
    if (old != NULL) {
        HASH_DEL(k->by_name, old);
        node_free(old);
    }
    HASH_ADD_KEYPTR(hh, k->by_name, n->key.name, strlen(n->key.name), n);
    n = NULL;
out:
    node_free(n);
    return err;
}

kbd_key *kbd_keys_find_label(kbd_keys *k, const char *label)
{
    for (key_node *n = k->by_name; label != NULL && n != NULL; n = n->hh.next)
        if (strcmp(n->key.hsm_label, label) == 0)
            return &n->key;
    return NULL;
}

bool kbd_scope_sees_key(const kbr_scope *s, const char *name, const json_t *products)
{
    return kbr_namelist_match(&s->keys, name) && kbr_namelist_match_any(&s->products, products);
}

bool kbd_scope_holds_key(const kbr_scope *s, const char *name, const json_t *products)
{
    return kbr_namelist_match(&s->keys, name) && kbr_namelist_match_all(&s->products, products);
}

bool kbd_scope_unlimited(const kbr_scope *s)
{
    return kbr_namelist_is_any(&s->products) && kbr_namelist_is_any(&s->keys) &&
           kbr_namelist_is_any(&s->batches) && kbr_namelist_is_any(&s->devices);
}

/* The entry of a request about a key is about the products the key serves. */
static kbr_err attribute_key(kbd_req *r, const kbd_key *k)
{
    kbr_err err = KBR_OK;
    size_t i;
    json_t *p;

    json_array_foreach(k->products, i, p)
    {
        KBR_GUARD(kbr_audit_rec_add_product(r->rec, json_string_value(p)));
    }
out:
    return err;
}

/* kbd_req_path_key and kbd_req_path_key_visible: the {name} of the path as a registry key. */
static kbr_err path_key(kbd_req *r, bool hold, const kbd_key **out)
{
    const kbd_key *k;

    *out = NULL;
    if (!kbr_name_valid(r->arg))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "key name in the path is not valid");
    free(r->rec->key);
    r->rec->key = strdup(r->arg);
    if (!kbr_namelist_match(&r->tok->scope.keys, r->arg))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "key \"%s\" is outside the token's keys",
                        r->arg);
    k = kbd_keys_find(r->d->keys, r->arg);
    if (k == NULL)
        return kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "no key named \"%s\"", r->arg);
    if (attribute_key(r, k) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (!kbd_scope_sees_key(&r->tok->scope, k->name, k->products))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "key \"%s\" serves no product within the token's products", r->arg);
    if (hold && !kbd_scope_holds_key(&r->tok->scope, k->name, k->products))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "key \"%s\" also serves products outside the token's products", r->arg);
    *out = k;
    return KBR_OK;
}

kbr_err kbd_req_path_key(kbd_req *r, const kbd_key **out)
{
    return path_key(r, true, out);
}

kbr_err kbd_req_path_key_visible(kbd_req *r, const kbd_key **out)
{
    return path_key(r, false, out);
}

kbd_key *kbd_keys_find(kbd_keys *k, const char *name)
{
    key_node *n = NULL;

    HASH_FIND_STR(k->by_name, name, n);
    return n == NULL ? NULL : &n->key;
}

bool kbd_key_serves_product(const kbd_key *key, const char *product)
{
    size_t i;
    json_t *p;

    json_array_foreach(key->products, i, p)
    {
        if (strcmp(json_string_value(p), product) == 0)
            return true;
    }
    return false;
}

json_t *kbd_hsm_facts(kbr_hsm_session *s, const char *label, kbr_err *err)
{
    kbr_hsm_key_info info = {0};

    *err = kbr_hsm_find_key(s, label, &info);
    if (*err != KBR_OK)
        return NULL;
    return json_pack("{s:s,s:s,s:b,s:b,s:b,s:b,s:b}", "label", info.label, "id", info.id_hex,
                     "extractable", info.extractable, "sensitive", info.sensitive, "local",
                     info.local, "never_extractable", info.never_extractable, "always_sensitive",
                     info.always_sensitive);
}

kbr_err kbd_req_use_key(kbd_req *r, const char *name, const kbd_key **out)
{
    const kbd_key *k;

    *out = NULL;
    free(r->rec->key);
    r->rec->key = strdup(name);
    if (!kbr_namelist_match(&r->tok->scope.keys, name))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "key: \"%s\" is outside the token's keys",
                        name);
    k = kbd_keys_find(r->d->keys, name);
    if (k == NULL)
        return kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "key: no key named \"%s\"", name);
    if (k->retired)
        return kbr_fail(&r->msg, KBR_ERR_CONFLICT, "key: \"%s\" is retired", name);
    *out = k;
    return KBR_OK;
}

kbr_err kbd_req_key_product(kbd_req *r, const kbd_key *k, const char *field, const char *product)
{
    if (kbr_audit_rec_add_product(r->rec, product) != KBR_OK)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "%s: not valid UTF-8", field);
    if (!kbr_namelist_match(&r->tok->scope.products, product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "%s: \"%s\" is outside the token's products",
                        field, product);
    if (!kbd_key_serves_product(k, product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "%s: key \"%s\" does not serve product \"%s\"",
                        field, k->name, product);
    return KBR_OK;
}

kbr_audit_scope kbd_audit_scope_of(const kbr_scope *scope)
{
    return (kbr_audit_scope){
        .products_limited = !kbr_namelist_is_any(&scope->products),
        .products = (const char *const *)scope->products.items,
        .nproducts = scope->products.n,
        .keys_limited = !kbr_namelist_is_any(&scope->keys),
        .keys = (const char *const *)scope->keys.items,
        .nkeys = scope->keys.n,
    };
}

kbr_err kbd_req_attribute_token(kbd_req *r)
{
    kbr_err err = KBR_OK;
    const kbr_namelist *products = &r->tok->scope.products;

    for (size_t i = 0; products->present && i < products->n; i++)
        KBR_GUARD(kbr_audit_rec_add_product(r->rec, products->items[i]));
out:
    return err;
}

kbr_err kbd_req_reserve_use(kbd_req *r)
{
    kbr_err err = kbr_policy_reserve_use(r->tok);

    if (err != KBR_OK)
        return kbr_fail(&r->msg, err, "token %s has used all of its max_uses", r->tok->jti);
    r->use_reserved = true;
    return KBR_OK;
}
