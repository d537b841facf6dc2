/*
 * h_batches.c - POST /v1/batches, GET /v1/batches/{batch}.
 *
 * A batch is a production order: one factory principal, one product, a
 * quantity no provisioning may exceed, and the markets the devices ship to
 * (what later answers "how many affected devices are in the EU").  The
 * factory follows its own orders: a token holding op provision reads the
 * batches ordered from its principal, and nothing else of the read API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"
#include "kbr_cra.h"

#define BATCH_MAX_QUANTITY 100000000

void kbd_batch_create_free(void *p)
{
    kbd_batch_create_req *c = p;

    if (c == NULL)
        return;
    free(c->batch);
    free(c->product);
    free(c->factory);
    json_decref(c->markets);
    free(c);
}

/*
 * Each market an officially assigned ISO 3166-1 alpha-2 code (kbr_market_check: "EU", "EL",
 * "XX" and lowercase are refused), each once: a device counts once in each market of its batch.
 */
static kbr_err parse_markets(const json_t *body, json_t **out, kbr_msg *msg)
{
    json_t *m = json_object_get(body, "market");
    kbr_msg why = {{0}};
    size_t i, j;
    json_t *v;

    *out = NULL;
    if (!json_is_array(m) || json_array_size(m) == 0 || json_array_size(m) > 250)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "market: required, an array of 1 to 250 ISO 3166-1 alpha-2 country codes");
    json_array_foreach(m, i, v)
    {
        if (!json_is_string(v))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "market[%zu]: not a string (an ISO 3166-1 alpha-2 code such as \"DE\")",
                            i);
        if (kbr_market_check(json_string_value(v), &why) != KBR_OK)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "market[%zu]: %s", i, why.text);
        for (j = 0; j < i; j++)
            if (json_equal(json_array_get(m, j), v))
                return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "market[%zu]: \"%s\" is listed twice (market[%zu])", i,
                                json_string_value(v), j);
    }
    *out = json_incref(m);
    return KBR_OK;
}

kbr_err kbd_batch_create_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"batch",    "product", "factory",
                                          "quantity", "market",  NULL};
    const char *batch, *product, *factory;
    kbd_batch_create_req *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_name(r->body, "batch", true, &batch, msg));
    KBR_GUARD(kbd_json_name(r->body, "product", true, &product, msg));
    KBR_GUARD(kbd_json_str(r->body, "factory", true, 128, &factory, msg));
    KBR_GUARD(kbd_json_int(r->body, "quantity", true, 1, BATCH_MAX_QUANTITY, &c->quantity, msg));
    KBR_GUARD(parse_markets(r->body, &c->markets, msg));
    KBR_ENSURE((c->product = strdup(product)) != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(strncmp(factory, "factory:", 8) == 0 && kbr_policy_sub_valid(factory),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "factory: must be the factory's principal, factory:<name>"));
    c->batch = strdup(batch);
    c->factory = strdup(factory);
    KBR_ENSURE(c->batch != NULL && c->factory != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

/* The entry is about the batch's product. */
kbr_err kbd_batch_create_describe(kbd_req *r, const void *req)
{
    const kbd_batch_create_req *c = req;

    return c->product != NULL ? kbr_audit_rec_add_product(r->rec, c->product) : KBR_OK;
}

kbr_err kbd_batch_create_authorize(kbd_req *r, void *req)
{
    const kbd_batch_create_req *c = req;
    kbr_err err = KBR_OK;

    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.products, c->product),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product: \"%s\" is outside the token's products", c->product));
    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.batches, c->batch),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "batch: \"%s\" is outside the token's batches",
                        c->batch));
    KBR_ENSURE(kbd_batches_find(r->d->batches, c->batch) == NULL,
               kbr_fail(&r->msg, KBR_ERR_CONFLICT, "batch: \"%s\" already exists", c->batch));
out:
    return err;
}

/* work_inline: the ledger effect and the batch object; neither HSM nor store. */
void kbd_batch_create_work(kbd_req *r, kbd_worker *w)
{
    const kbd_batch_create_req *c = r->ctx;
    char now[KBR_TIME_LEN];
    kbr_effect fx = {.type = KBR_EFFECT_BATCH_CREATE};
    kbr_err err = KBR_OK;

    (void)w;
    kbr_time_fmt(time(NULL), now);
    r->resp =
        json_pack("{s:s,s:s,s:s,s:I,s:O,s:s,s:s,s:i}", "batch", c->batch, "product", c->product,
                  "factory", c->factory, "quantity", (json_int_t)c->quantity, "market", c->markets,
                  "created_at", now, "created_by", r->sub, "provisioned", 0);
    KBR_ENSURE(r->resp != NULL, KBR_ERR_NOMEM);
    err = kbd_strings_of(c->markets, &fx.u.batch_create.markets);
    fx.u.batch_create = (kbr_fx_batch_create){.batch = c->batch,
                                              .product = c->product,
                                              .factory = c->factory,
                                              .created_at = now,
                                              .created_by = r->sub,
                                              .quantity = c->quantity,
                                              .markets = fx.u.batch_create.markets};
    if (err == KBR_OK)
        err = kbd_req_effect(r, &fx);
    free((void *)fx.u.batch_create.markets.items);
    KBR_GUARD(err);
    json_object_set(r->rec->detail, "batch", r->resp);
    r->status = 201;
out:
    if (err != KBR_OK)
        kbd_req_error(r, err, NULL);
}

void kbd_batch_create_finish(kbd_req *r)
{
    if (kbd_batches_put(r->d->batches, r->resp) != KBR_OK)
        kbd_log(KBD_LOG_ERROR, "registry.failed", r->request_id,
                "batch registry update failed for a committed batch");
}

void kbd_batch_get_work(kbd_req *r, kbd_worker *w)
{
    json_t *b = NULL;
    kbr_err err = kbr_store_batch_get(w->store, r->arg, &b);

    if (err != KBR_OK) {
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT, "batch \"%s\" %s", r->arg,
                      err == KBR_ERR_NOT_FOUND ? "not found" : "could not be read");
        return;
    }
    /* the API names the field "market"; the ledger keeps "markets" */
    json_object_set(b, "market", json_object_get(b, "markets"));
    json_object_set_new(b, "remaining",
                        json_integer(json_integer_value(json_object_get(b, "quantity")) -
                                     json_integer_value(json_object_get(b, "provisioned"))));
    r->resp = b;
}

/* The {batch} of the path; the registry lookup is the authorizer's. */
kbr_err kbd_batch_get_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    *out = NULL;
    if (!kbr_name_valid(r->arg))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "batch name in the path is not valid");
    return KBR_OK;
}

kbr_err kbd_batch_get_authorize(kbd_req *r, void *req)
{
    const kbd_batch *b;
    /* admin holds every op; a factory reads only what it was ordered to build */
    bool reader = kbr_policy_allows_op(r->tok, KBR_OP_READ);
    bool factory = !reader && kbr_policy_allows_op(r->tok, KBR_OP_PROVISION);
    kbr_err err = KBR_OK;

    (void)req;
    KBR_ENSURE(reader || factory,
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "token scope does not include op \"read\""));
    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.batches, r->arg),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "batch \"%s\" is outside the token's batches",
                        r->arg));
    b = kbd_batches_find(r->d->batches, r->arg);
    KBR_ENSURE(b != NULL, kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "no batch named \"%s\"", r->arg));
    KBR_GUARD(kbr_audit_rec_add_product(r->rec, b->product));
    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.products, b->product),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "batch \"%s\" is for product \"%s\", outside the token's products", r->arg,
                        b->product));
    KBR_ENSURE(!factory || strcmp(b->factory, r->sub) == 0,
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "batch \"%s\" is not ordered from %s; a token without op \"read\" "
                        "reads only its own factory's batches",
                        r->arg, r->sub));
    json_object_set_new(r->rec->detail, "batch", json_string(r->arg));
out:
    return err;
}
