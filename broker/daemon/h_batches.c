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

#define BATCH_MAX_QUANTITY 100000000

/* ISO 3166-1 alpha-2: two capital letters. */
static bool market_code(const char *s)
{
    return strlen(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z';
}

static kbr_err parse_markets(kbd_req *r, json_t **out)
{
    json_t *m = json_object_get(r->body, "market");
    size_t i;
    json_t *v;

    *out = NULL;
    if (!json_is_array(m) || json_array_size(m) == 0 || json_array_size(m) > 250)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "market: required, an array of ISO 3166-1 alpha-2 country codes");
    json_array_foreach(m, i, v)
    {
        if (!json_is_string(v) || !market_code(json_string_value(v)))
            return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                            "market[%zu]: not an ISO 3166-1 alpha-2 code such as \"DE\"", i);
    }
    *out = m;
    return KBR_OK;
}

static void batch_create_finish(kbd_req *r)
{
    if (kbd_batches_put(r->d->batches, r->resp) != KBR_OK)
        kbd_log(KBD_LOG_ERROR, "registry.failed", r->request_id,
                "batch registry update failed for a committed batch");
}

kbr_err kbd_h_batch_create(kbd_req *r)
{
    static const char *const allowed[] = {"batch",    "product", "factory",
                                          "quantity", "market",  NULL};
    const char *batch, *product, *factory;
    int64_t quantity = 0;
    json_t *markets = NULL;
    char now[KBR_TIME_LEN];
    kbr_effect fx = {.type = KBR_EFFECT_BATCH_CREATE};
    kbr_err err;

    if (kbd_json_only(r->body, allowed, &r->msg) != KBR_OK ||
        kbd_json_name(r->body, "batch", true, &batch, &r->msg) != KBR_OK ||
        kbd_json_name(r->body, "product", true, &product, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "factory", true, 128, &factory, &r->msg) != KBR_OK ||
        kbd_json_int(r->body, "quantity", true, 1, BATCH_MAX_QUANTITY, &quantity, &r->msg) !=
            KBR_OK ||
        parse_markets(r, &markets) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (kbr_audit_rec_add_product(r->rec, product) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (strncmp(factory, "factory:", 8) != 0 || !kbr_policy_sub_valid(factory))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "factory: must be the factory's principal, factory:<name>");
    if (!kbr_namelist_match(&r->tok->scope.products, product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product: \"%s\" is outside the token's products", product);
    if (!kbr_namelist_match(&r->tok->scope.batches, batch))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "batch: \"%s\" is outside the token's batches",
                        batch);
    if (kbd_batches_find(r->d->batches, batch) != NULL)
        return kbr_fail(&r->msg, KBR_ERR_CONFLICT, "batch: \"%s\" already exists", batch);
    kbr_time_fmt(time(NULL), now);
    r->resp = json_pack("{s:s,s:s,s:s,s:I,s:O,s:s,s:s,s:i}", "batch", batch, "product", product,
                        "factory", factory, "quantity", (json_int_t)quantity, "market", markets,
                        "created_at", now, "created_by", r->sub, "provisioned", 0);
    if (r->resp == NULL)
        return KBR_ERR_NOMEM;
    err = kbd_strings_of(markets, &fx.u.batch_create.markets);
    fx.u.batch_create = (kbr_fx_batch_create){.batch = batch,
                                              .product = product,
                                              .factory = factory,
                                              .created_at = now,
                                              .created_by = r->sub,
                                              .quantity = quantity,
                                              .markets = fx.u.batch_create.markets};
    if (err == KBR_OK)
        err = kbd_req_effect(r, &fx);
    free((void *)fx.u.batch_create.markets.items);
    if (err != KBR_OK)
        return err;
    json_object_set(r->rec->detail, "batch", r->resp);
    r->status = 201;
    r->finish = batch_create_finish;
    kbd_req_audit_and_reply(r);
    return KBR_OK;
}

static void batch_get_work(kbd_req *r, kbd_worker *w)
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

kbr_err kbd_h_batch_get(kbd_req *r)
{
    const kbd_batch *b;
    /* admin holds every op; a factory reads only what it was ordered to build */
    bool reader = kbr_policy_allows_op(r->tok, KBR_OP_READ);
    bool factory = !reader && kbr_policy_allows_op(r->tok, KBR_OP_PROVISION);

    if (!reader && !factory)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "token scope does not include op \"read\"");
    if (!kbr_name_valid(r->arg))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "batch name in the path is not valid");
    if (!kbr_namelist_match(&r->tok->scope.batches, r->arg))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN, "batch \"%s\" is outside the token's batches",
                        r->arg);
    b = kbd_batches_find(r->d->batches, r->arg);
    if (b == NULL)
        return kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "no batch named \"%s\"", r->arg);
    if (kbr_audit_rec_add_product(r->rec, b->product) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (!kbr_namelist_match(&r->tok->scope.products, b->product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "batch \"%s\" is for product \"%s\", outside the token's products", r->arg,
                        b->product);
    if (factory && strcmp(b->factory, r->sub) != 0)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "batch \"%s\" is not ordered from %s; a token without op \"read\" "
                        "reads only its own factory's batches",
                        r->arg, r->sub);
    json_object_set_new(r->rec->detail, "batch", json_string(r->arg));
    r->work = batch_get_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}
