/*
 * h_evidence.c - evidence bundles (op read, within scope):
 *   GET /v1/evidence/devices/{serial}?product=   a device's whole record
 *   GET /v1/evidence/products/{product}          a product's keys, batches and builds
 *   GET /v1/evidence/incidents/{id}              an incident, its fix's build and its reports
 * Every entry behind every fact about the subject (kbr_store_evidence_seqs), each with its
 * inclusion proof to one signed checkpoint that covers them all (made now if the latest does
 * not), the audit public key, and every document the entries name: what
 * `keybroker evidence verify` checks with nothing else (kbr_audit.h).
 *
 * A reader limited to products or keys gets the entries it could read from the log itself:
 * a bundle never shows an entry GET /v1/audit would refuse it.  In stages (routes.c): parse
 * reads the path and query, authorize checks what the token's scope says of them, and the
 * worker what only the ledger knows (a device's product and batch, an incident's product).
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"

typedef struct {
    char *product, *serial; /* serial NULL: a product's bundle */
    char *incident;         /* or an incident's */
    kbr_scope scope;        /* the reader's, copied for the worker */
} evidence_ctx;

void kbd_evidence_free(void *p)
{
    evidence_ctx *c = p;

    if (c == NULL)
        return;
    free(c->product);
    free(c->serial);
    free(c->incident);
    kbr_scope_cleanup(&c->scope);
    free(c);
}

/* The device's product, when the request did not name it, and the scope's batch rule. */
static kbr_err device_subject(kbd_req *r, kbd_worker *w, evidence_ctx *c)
{
    kbr_err err = KBR_OK;
    json_t *dev = NULL;
    const char *product;

    err = kbr_store_view_device(w->store, c->product, c->serial, &dev);
    KBR_ENSURE(err != KBR_ERR_NOT_FOUND,
               kbr_fail(&r->msg, err, "no device %s%s%s", c->serial, c->product ? " of " : "",
                        c->product ? c->product : ""));
    KBR_ENSURE(
        err != KBR_ERR_CONFLICT,
        kbr_fail(&r->msg, err, "device %s: several products have it; add ?product=", c->serial));
    KBR_ENSURE(err == KBR_OK, kbr_fail(&r->msg, KBR_ERR_AUDIT, "the ledger could not be read"));
    product = json_string_value(json_object_get(dev, "product"));
    KBR_GUARD(kbr_audit_rec_add_product(r->rec, product));
    KBR_ENSURE(product != NULL && kbr_namelist_match(&c->scope.products, product),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "device %s is of a product outside the token's products", c->serial));
    KBR_ENSURE(
        kbr_namelist_match(&c->scope.batches, json_string_value(json_object_get(dev, "batch"))),
        kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "device %s is of a batch outside the token's batches",
                 c->serial));
    if (c->product == NULL) {
        c->product = strdup(product);
        KBR_ENSURE(c->product != NULL, KBR_ERR_NOMEM);
    }
out:
    json_decref(dev);
    return err;
}

/*
 * An incident the reader may see: one of a product within its products, or, of every product,
 * only for a reader without a products list (h_incidents.c holds the same rule).
 */
static kbr_err incident_subject(kbd_req *r, kbd_worker *w, evidence_ctx *c)
{
    kbr_err err = KBR_OK;
    json_t *inc = NULL;
    const char *product;
    const json_t *p;
    size_t i;

    err = kbr_store_incident_view(w->store, c->incident, time(NULL), false, &inc);
    KBR_ENSURE(err != KBR_ERR_NOT_FOUND, kbr_fail(&r->msg, err, "no incident %s", c->incident));
    KBR_ENSURE(err == KBR_OK, kbr_fail(&r->msg, KBR_ERR_AUDIT, "the ledger could not be read"));
    product = json_string_value(json_object_get(inc, "product"));
    if (product != NULL)
        KBR_GUARD(kbr_audit_rec_add_product(r->rec, product));
    json_array_foreach(json_object_get(json_object_get(inc, "exposure_at_awareness"), "products"),
                       i, p)
    {
        KBR_GUARD(kbr_audit_rec_add_product(r->rec, json_string_value(p)));
    }
    KBR_ENSURE(product != NULL ? kbr_namelist_match(&c->scope.products, product)
                               : !c->scope.products.present,
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "incident %s is about %s, outside the token's products", c->incident,
                        product != NULL ? product : "every product"));
out:
    json_decref(inc);
    return err;
}

/* The seqs the reader may see, of those behind the subject. */
static kbr_err visible_seqs(kbd_req *r, kbd_worker *w, evidence_ctx *c, json_t **out)
{
    kbr_err err = KBR_OK;
    kbr_audit_scope scope = kbd_audit_scope_of(&c->scope);
    json_t *all = NULL, *seen = json_array();
    const json_t *v;
    size_t i;

    *out = NULL;
    KBR_ENSURE(seen != NULL, KBR_ERR_NOMEM);
    err = c->incident != NULL ? kbr_store_evidence_incident_seqs(w->store, c->incident, &all)
                              : kbr_store_evidence_seqs(w->store, c->product, c->serial, &all);
    KBR_ENSURE(err == KBR_OK, kbr_fail(&r->msg, KBR_ERR_AUDIT, "the ledger could not be read"));
    json_array_foreach(all, i, v)
    {
        bool visible = false;
        KBR_GUARD(kbr_store_audit_visible(w->store, json_integer_value(v), &scope, &visible));
        if (visible)
            KBR_ENSURE(json_array_append(seen, (json_t *)v) == 0, KBR_ERR_NOMEM);
    }
    KBR_ENSURE(json_array_size(seen) > 0,
               kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "no facts about %s %s",
                        c->incident != NULL ? "incident" : "product",
                        c->incident != NULL ? c->incident : c->product));
    *out = seen;
    seen = NULL;
out:
    json_decref(all);
    json_decref(seen);
    return err;
}

void kbd_evidence_work(kbd_req *r, kbd_worker *w)
{
    evidence_ctx *c = r->ctx;
    json_t *seqs = NULL, *cp = NULL, *keys = NULL, *chain = NULL, *subject = NULL, *bundle = NULL;
    kbr_err err = KBR_OK;
    int64_t last;

    if (c->serial != NULL)
        KBR_GUARD(device_subject(r, w, c));
    if (c->incident != NULL)
        KBR_GUARD(incident_subject(r, w, c));
    KBR_GUARD(visible_seqs(r, w, c, &seqs));
    last = json_integer_value(json_array_get(seqs, json_array_size(seqs) - 1));
    err = kbd_checkpoint_covering(w, last, &cp);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(&r->msg, err >= KBR_ERR_HSM && err <= KBR_ERR_HSM_KEY ? err : KBR_ERR_AUDIT,
                        "no signed checkpoint covers the entries: %s", kbr_err_str(err)));
    err = kbd_checkpoint_evidence(w, cp, &keys, &chain);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(&r->msg, err >= KBR_ERR_HSM && err <= KBR_ERR_HSM_KEY ? err : KBR_ERR_AUDIT,
                        "the chain of audit keys could not be read: %s", kbr_err_str(err)));
    if (c->incident != NULL)
        subject = json_pack("{s:s,s:s}", "kind", "incident", "id", c->incident);
    else if (c->serial != NULL)
        subject = json_pack("{s:s,s:s,s:s}", "kind", "device", "product", c->product, "serial",
                            c->serial);
    else
        subject = json_pack("{s:s,s:s}", "kind", "product", "product", c->product);
    KBR_ENSURE(keys != NULL && subject != NULL, KBR_ERR_NOMEM);
    err = kbr_evidence_build(w->store, subject, seqs, cp, keys, chain, &bundle);
    KBR_ENSURE(err == KBR_OK, kbr_fail(&r->msg, KBR_ERR_AUDIT, "the bundle could not be made: %s",
                                       kbr_err_str(err)));
    json_object_set_new(r->rec->detail, "entries", json_integer((json_int_t)json_array_size(seqs)));
    json_object_set(r->rec->detail, "checkpoint_size", json_object_get(cp, "size"));
    r->resp = bundle;
    bundle = NULL;
out:
    if (err != KBR_OK)
        kbd_req_error(r, err, NULL);
    json_decref(bundle);
    json_decref(subject);
    json_decref(keys);
    json_decref(chain);
    json_decref(cp);
    json_decref(seqs);
}

/* *out is set at once, so that free_req releases what a refused parse got as far as. */
static kbr_err new_ctx(void **out, evidence_ctx **c)
{
    *c = calloc(1, sizeof(**c));
    *out = *c;
    return *c != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err path_name(const kbd_req *r, kbr_msg *msg, const char *what, char **name)
{
    if (!kbr_name_valid(r->arg))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s in the path is not valid", what);
    *name = strdup(r->arg);
    return *name != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err kbd_evidence_device_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    const char *product = kbd_req_query(r, "product");
    evidence_ctx *c = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(new_ctx(out, &c));
    KBR_GUARD(path_name(r, msg, "device serial", &c->serial));
    if (product != NULL) {
        KBR_ENSURE(kbr_name_valid(product),
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST, "product: not a valid name"));
        c->product = strdup(product);
        KBR_ENSURE(c->product != NULL, KBR_ERR_NOMEM);
    }
out:
    return err;
}

kbr_err kbd_evidence_product_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    evidence_ctx *c = NULL;
    kbr_err err = new_ctx(out, &c);

    return err == KBR_OK ? path_name(r, msg, "product name", &c->product) : err;
}

kbr_err kbd_evidence_incident_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    evidence_ctx *c = NULL;
    kbr_err err = new_ctx(out, &c);

    return err == KBR_OK ? path_name(r, msg, "incident id", &c->incident) : err;
}

/* The device and product named; the device's own product and batch are the worker's. */
kbr_err kbd_evidence_device_authorize(kbd_req *r, void *req)
{
    evidence_ctx *c = req;
    kbr_err err = KBR_OK;

    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.devices, c->serial),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "device \"%s\" is outside the token's devices",
                        c->serial));
    KBR_ENSURE(c->product == NULL || kbr_namelist_match(&r->tok->scope.products, c->product),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product \"%s\" is outside the token's products", c->product));
    KBR_ENSURE(kbd_scope_copy(&r->tok->scope, &c->scope) == KBR_OK &&
                   kbr_audit_rec_add_product(r->rec, c->product) == KBR_OK,
               KBR_ERR_NOMEM);
    json_object_set_new(r->rec->detail, "device", json_string(c->serial));
out:
    return err;
}

kbr_err kbd_evidence_product_authorize(kbd_req *r, void *req)
{
    evidence_ctx *c = req;
    kbr_err err = KBR_OK;

    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.products, c->product),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product \"%s\" is outside the token's products", c->product));
    KBR_ENSURE(kbd_scope_copy(&r->tok->scope, &c->scope) == KBR_OK &&
                   kbr_audit_rec_add_product(r->rec, c->product) == KBR_OK,
               KBR_ERR_NOMEM);
    json_object_set_new(r->rec->detail, "product", json_string(c->product));
out:
    return err;
}

/* An incident's product is the ledger's: the worker checks it against the scope copied here. */
kbr_err kbd_evidence_incident_authorize(kbd_req *r, void *req)
{
    evidence_ctx *c = req;

    if (kbd_scope_copy(&r->tok->scope, &c->scope) != KBR_OK)
        return KBR_ERR_NOMEM;
    json_object_set_new(r->rec->detail, "incident", json_string(c->incident));
    return KBR_OK;
}
