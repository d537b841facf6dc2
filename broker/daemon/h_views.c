/*
 * h_views.c - the four custody views (op read):
 *   A  GET /v1/views/products/{product}   keys, certificates, expiry, live tokens,
 *                                         and HSM objects no registry entry names
 *   B  GET /v1/views/keys/{name}/custody  who can use a key, who did
 *   C  GET /v1/views/exposure             builds, devices and markets carrying a component
 *   D  GET /v1/views/devices/{serial}     a device's whole record
 * The ledger answers from one query each; the HSM's own view of the keys is
 * added here, as the HSM reports it at the time of the call.  In stages
 * (routes.c): parse reads the path and query, authorize checks the token's
 * scope and names the entry's products, work reads on a worker.
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"

#define EXPOSURE_PAGE_MAX 1000

typedef struct {
    char *product, *serial, *key, *component, *purl, *vers, *fixed, *after;
    json_t *versions;
    bool devices;
    kbr_scope scope; /* a copy of the token's scope, for worker checks */
    long within_days;
    int limit;
} view_ctx;

void kbd_view_free(void *p)
{
    view_ctx *c = p;

    if (c == NULL)
        return;
    free(c->product);
    free(c->serial);
    free(c->key);
    free(c->component);
    free(c->purl);
    free(c->vers);
    free(c->fixed);
    free(c->after);
    json_decref(c->versions);
    kbr_scope_cleanup(&c->scope);
    free(c);
}

/* *out is set at once, so that free_req releases what a refused parse got as far as. */
static kbr_err new_view(void **out, view_ctx **c)
{
    *c = calloc(1, sizeof(**c));
    *out = *c;
    if (*c == NULL)
        return KBR_ERR_NOMEM;
    (*c)->within_days = -1;
    return KBR_OK;
}

static kbr_err query_long(const kbd_req *r, kbr_msg *msg, const char *name, long min, long max,
                          long *out)
{
    const char *s = kbd_req_query(r, name);
    char *end = NULL;
    long v;

    if (s == NULL)
        return KBR_OK;
    v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be an integer from %ld to %ld", name,
                        min, max);
    *out = v;
    return KBR_OK;
}

static kbr_err query_name(const kbd_req *r, kbr_msg *msg, const char *name, char **out)
{
    const char *s = kbd_req_query(r, name);

    *out = NULL;
    if (s == NULL)
        return KBR_OK;
    if (!kbr_name_valid(s))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: not a valid name", name);
    *out = strdup(s);
    return *out == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

static void store_error(kbd_req *r, kbr_err err, const char *what)
{
    if (err == KBR_ERR_NOT_FOUND)
        kbd_req_error(r, err, "no %s", what);
    else if (err == KBR_ERR_CONFLICT)
        kbd_req_error(r, err, "%s: several products have it; add ?product=", what);
    else
        kbd_req_error(r, KBR_ERR_AUDIT, "the ledger could not answer for %s", what);
}

/* ---- View A ---- */

static bool broker_label(const char *label)
{
    return strncmp(label, "kbr/issuer", 10) == 0 || strncmp(label, "kbr/audit", 9) == 0;
}

static void registry_labels(json_t *keys, json_t *labels)
{
    size_t i;
    json_t *k;

    json_array_foreach(keys, i, k)
    {
        const char *label = json_string_value(json_object_get(k, "hsm_label"));
        if (label != NULL)
            json_object_set_new(labels, label, json_true());
    }
}

/*
 * Key objects the HSM holds that no registry entry names: private and
 * secret keys, and public keys without a private key of the same label.
 */
static json_t *unregistered(const kbr_hsm_key_info *objs, size_t n, const json_t *labels)
{
    json_t *out = json_array(), *seen = json_object();

    for (size_t i = 0; out != NULL && seen != NULL && i < n; i++) {
        const kbr_hsm_key_info *o = &objs[i];
        if (json_object_get(labels, o->label) != NULL || broker_label(o->label))
            continue;
        if (json_object_get(seen, o->label) != NULL && o->label[0] != '\0')
            continue;
        json_object_set_new(seen, o->label, json_true());
        json_array_append_new(out,
                              json_pack("{s:s,s:s,s:s,s:s,s:s?,s:b,s:b}", "label", o->label, "id",
                                        o->id_hex, "class", o->class_name, "key_type", o->key_type,
                                        "algorithm", o->alg_known ? kbr_alg_name(o->alg) : NULL,
                                        "sensitive", o->sensitive, "extractable", o->extractable));
    }
    json_decref(seen);
    return out;
}

static kbr_err add_unregistered(kbd_req *r, kbd_worker *w, json_t *view)
{
    kbr_hsm_key_info *objs = NULL;
    size_t n = 0;
    json_t *keys = NULL, *labels = json_object();
    kbr_err err = kbr_store_key_list(w->store, &keys);

    if (err == KBR_OK && labels != NULL) {
        registry_labels(keys, labels);
        err = kbr_hsm_list_objects(w->hsm, &objs, &n);
        kbd_note_hsm(r->d, err);
    }
    if (err == KBR_OK)
        json_object_set_new(view, "unregistered_hsm_objects", unregistered(objs, n, labels));
    free(objs);
    json_decref(keys);
    json_decref(labels);
    return err;
}

static kbr_err add_hsm(kbd_req *r, kbd_worker *w, json_t *key)
{
    const char *label = json_string_value(json_object_get(key, "hsm_label"));
    kbr_err err = KBR_OK;
    json_t *facts = label != NULL ? kbd_hsm_facts(w->hsm, label, &err) : NULL;

    kbd_note_hsm(r->d, err);
    if (err == KBR_ERR_NOT_FOUND || label == NULL) {
        json_object_set_new(key, "hsm", json_pack("{s:s?,s:b}", "label", label, "present", 0));
        return KBR_OK;
    }
    if (err != KBR_OK)
        return err;
    json_object_set_new(facts, "present", json_true());
    json_object_set_new(key, "hsm", facts);
    return KBR_OK;
}

/* A key of the product the reader's keys list names (View A shows no other). */
static bool key_in_scope(const char *key, void *arg)
{
    const kbr_scope *scope = arg;

    return kbr_namelist_match(&scope->keys, key);
}

void kbd_view_product_work(kbd_req *r, kbd_worker *w)
{
    view_ctx *c = r->ctx;
    json_t *view = NULL, *list;
    const char *purpose;
    size_t i;
    json_t *key;
    kbr_err err = kbr_store_view_product_seen(w->store, c->product, time(NULL), c->within_days,
                                              key_in_scope, &c->scope, &view);

    if (err != KBR_OK) {
        store_error(r, err, "product with that name");
        return;
    }
    json_object_foreach(json_object_get(view, "keys"), purpose, list)
    {
        json_array_foreach(list, i, key)
        {
            if (err == KBR_OK)
                err = add_hsm(r, w, key);
        }
    }
    /* HSM objects no key names belong to no product yet: only for readers of every product
     * and every key */
    if (err == KBR_OK && !c->scope.products.present && !c->scope.keys.present)
        err = add_unregistered(r, w, view);
    if (err != KBR_OK) {
        kbd_req_error(r, KBR_ERR_HSM, "the HSM did not report its key objects");
        json_decref(view);
        return;
    }
    r->resp = view;
}

kbr_err kbd_view_product_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    view_ctx *c = NULL;
    kbr_err err = new_view(out, &c);

    if (err != KBR_OK)
        return err;
    if (!kbr_name_valid(r->arg))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "product name in the path is not valid");
    err = query_long(r, msg, "expiring_within_days", 0, 36500, &c->within_days);
    if (err != KBR_OK)
        return err;
    c->product = strdup(r->arg);
    return c->product != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err kbd_view_product_authorize(kbd_req *r, void *req)
{
    view_ctx *c = req;

    if (!kbr_namelist_match(&r->tok->scope.products, c->product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product \"%s\" is outside the token's products", c->product);
    if (kbd_scope_copy(&r->tok->scope, &c->scope) != KBR_OK ||
        kbr_audit_rec_add_product(r->rec, c->product) != KBR_OK)
        return KBR_ERR_NOMEM;
    json_object_set_new(r->rec->detail, "product", json_string(c->product));
    return KBR_OK;
}

/* ---- View B ---- */

void kbd_view_custody_work(kbd_req *r, kbd_worker *w)
{
    json_t *view = NULL, *key = NULL;
    kbr_err err = kbr_store_view_custody(w->store, r->arg, time(NULL), &view);

    if (err != KBR_OK) {
        store_error(r, err, "key with that name");
        return;
    }
    err = kbr_store_key_get(w->store, r->arg, &key);
    if (err == KBR_OK)
        err = add_hsm(r, w, key);
    if (err != KBR_OK) {
        kbd_req_error(r, KBR_ERR_HSM, "the HSM did not report the key's attributes");
        json_decref(view);
        json_decref(key);
        return;
    }
    json_object_set(view, "hsm", json_object_get(key, "hsm"));
    json_object_set(view, "purpose", json_object_get(key, "purpose"));
    json_object_set(view, "algorithm", json_object_get(key, "algorithm"));
    json_object_set(view, "state", json_object_get(key, "state"));
    json_object_set(view, "products", json_object_get(key, "products"));
    json_decref(key);
    r->resp = view;
}

/* The path's key, as the registry holds it, wholly within the token's scope. */
kbr_err kbd_view_custody_authorize(kbd_req *r, void *req)
{
    const kbd_key *k = NULL;

    (void)req;
    return kbd_req_path_key(r, &k);
}

/* ---- View C ---- */

/* Text of 1 to max bytes, UTF-8 without controls: what a query may echo into the log. */
static kbr_err query_text(const kbd_req *r, kbr_msg *msg, const char *name, size_t max, char **out)
{
    const char *s = kbd_req_query(r, name);
    json_t *utf8 = s != NULL ? json_string(s) : NULL; /* NULL: not UTF-8 */
    size_t n;

    *out = NULL;
    if (s == NULL)
        return KBR_OK;
    n = strlen(s);
    json_decref(utf8);
    if (n == 0 || n > max || utf8 == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: 1 to %zu characters of UTF-8", name, max);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: holds a control character", name);
    *out = strdup(s);
    return *out == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

/* versions=a,b,c: any purl version strings (Debian's "3.0.11-1~deb12u2" too), none empty. */
static kbr_err parse_versions(const kbd_req *r, kbr_msg *msg, view_ctx *c)
{
    char *copy = NULL, *v, *next;
    kbr_err err = query_text(r, msg, "versions", 256 * 257, &copy);

    if (err != KBR_OK || copy == NULL)
        return err;
    c->versions = json_array();
    if (c->versions == NULL) {
        free(copy);
        return KBR_ERR_NOMEM;
    }
    for (v = copy; v != NULL; v = next) {
        next = strchr(v, ',');
        if (next != NULL)
            *next++ = '\0';
        if (*v == '\0' || json_array_size(c->versions) >= 256) {
            free(copy);
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "versions: a comma-separated list of 1 to 256 versions, none empty");
        }
        json_array_append_new(c->versions, json_string(v));
    }
    free(copy);
    return KBR_OK;
}

static kbr_err query_bool(const kbd_req *r, kbr_msg *msg, const char *name, bool *out)
{
    const char *s = kbd_req_query(r, name);

    *out = false;
    if (s == NULL || strcmp(s, "false") == 0)
        return KBR_OK;
    if (strcmp(s, "true") == 0) {
        *out = true;
        return KBR_OK;
    }
    return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: true or false", name);
}

static kbr_exposure_query exposure_query(const view_ctx *c)
{
    return (kbr_exposure_query){.component = c->component,
                                .purl = c->purl,
                                .versions = c->versions,
                                .vers = c->vers,
                                .product = c->product,
                                .fixed_version = c->fixed,
                                .devices = c->devices,
                                .after = c->after,
                                .limit = c->limit};
}

static kbr_err parse_exposure(const kbd_req *r, kbr_msg *msg, view_ctx *c)
{
    long limit = 100;
    kbr_exposure_query q;
    kbr_err err = query_text(r, msg, "component", 256, &c->component);

    if (err == KBR_OK)
        err = query_text(r, msg, "purl", 1024, &c->purl);
    if (err == KBR_OK)
        err = query_text(r, msg, "vers", 4096, &c->vers);
    if (err == KBR_OK)
        err = parse_versions(r, msg, c);
    if (err == KBR_OK)
        err = query_bool(r, msg, "devices", &c->devices);
    if (err == KBR_OK)
        err = query_name(r, msg, "product", &c->product);
    if (err == KBR_OK)
        err = query_name(r, msg, "fixed_version", &c->fixed);
    if (err == KBR_OK)
        err = query_name(r, msg, "after", &c->after);
    if (err == KBR_OK)
        err = query_long(r, msg, "limit", 1, EXPOSURE_PAGE_MAX, &limit);
    if (err != KBR_OK)
        return err;
    c->limit = (int)limit;
    q = exposure_query(c);
    return kbr_store_exposure_check(&q, msg);
}

void kbd_view_exposure_work(kbd_req *r, kbd_worker *w)
{
    view_ctx *c = r->ctx;
    json_t *view = NULL;
    kbr_exposure_query q = exposure_query(c);
    kbr_err err = kbr_store_view_exposure(w->store, &q, &view);

    if (err != KBR_OK) {
        store_error(r, err, "exposure answer");
        return;
    }
    r->resp = view;
}

kbr_err kbd_view_exposure_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    view_ctx *c = NULL;
    kbr_err err = new_view(out, &c);

    return err == KBR_OK ? parse_exposure(r, msg, c) : err;
}

/* A token limited to products must name one of them. */
kbr_err kbd_view_exposure_authorize(kbd_req *r, void *req)
{
    view_ctx *c = req;

    if (kbr_audit_rec_add_product(r->rec, c->product) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (r->tok->scope.products.present &&
        (c->product == NULL || !kbr_namelist_match(&r->tok->scope.products, c->product)))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product: a token limited to products must name one of them");
    json_object_set_new(r->rec->detail, "query",
                        json_pack("{s:s?,s:s?,s:O?,s:s?,s:s?,s:s?,s:b}", "component", c->component,
                                  "purl", c->purl, "versions", c->versions, "vers", c->vers,
                                  "product", c->product, "fixed_version", c->fixed, "devices",
                                  c->devices));
    return KBR_OK;
}

/* ---- View D ---- */

void kbd_view_device_work(kbd_req *r, kbd_worker *w)
{
    view_ctx *c = r->ctx;
    json_t *view = NULL;
    kbr_err err = kbr_store_view_device(w->store, c->product, c->serial, &view);
    const char *product;

    if (err != KBR_OK) {
        store_error(r, err, "device with that serial");
        return;
    }
    product = json_string_value(json_object_get(view, "product"));
    if (kbr_audit_rec_add_product(r->rec, product) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        json_decref(view);
        return;
    }
    /* a serial alone may resolve to a product outside the token's scope */
    if (product == NULL || !kbr_namelist_match(&c->scope.products, product)) {
        kbd_req_error(r, KBR_ERR_FORBIDDEN,
                      "device %s is of a product outside the token's products", c->serial);
        json_decref(view);
        return;
    }
    if (!kbr_namelist_match(&c->scope.batches, json_string_value(json_object_get(view, "batch")))) {
        kbd_req_error(r, KBR_ERR_FORBIDDEN, "device %s is of a batch outside the token's batches",
                      c->serial);
        json_decref(view);
        return;
    }
    r->resp = view;
}

kbr_err kbd_view_device_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    view_ctx *c = NULL;
    kbr_err err = new_view(out, &c);

    if (err != KBR_OK)
        return err;
    if (!kbr_name_valid(r->arg))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "device serial in the path is not valid");
    err = query_name(r, msg, "product", &c->product);
    if (err != KBR_OK)
        return err;
    c->serial = strdup(r->arg);
    return c->serial != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

/* The device and product named; the device's own product and batch are the worker's. */
kbr_err kbd_view_device_authorize(kbd_req *r, void *req)
{
    view_ctx *c = req;

    if (!kbr_namelist_match(&r->tok->scope.devices, c->serial))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "device \"%s\" is outside the token's devices",
                        c->serial);
    if (kbr_audit_rec_add_product(r->rec, c->product) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (c->product != NULL && !kbr_namelist_match(&r->tok->scope.products, c->product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product \"%s\" is outside the token's products", c->product);
    if (kbd_scope_copy(&r->tok->scope, &c->scope) != KBR_OK)
        return KBR_ERR_NOMEM;
    json_object_set_new(r->rec->detail, "device", json_string(c->serial));
    return KBR_OK;
}
