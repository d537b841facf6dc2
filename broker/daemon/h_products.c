/*
 * h_products.c - a product's CRA support period (docs/cra.md, Art. 13(8)):
 *   POST /v1/products            {product, placed_on_market, support_until} (op admin)
 *   GET  /v1/products/{product}  (op read)
 * both within the token's products.  A support period is registered once and afterwards only
 * extended: the day the product was placed on the market stays, support_until never moves
 * earlier.  The ledger's product.register effect holds the same rule, so two racing requests
 * cannot shorten it either.
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"

typedef kbd_product_req product_ctx;

void kbd_product_free(void *p)
{
    product_ctx *c = p;

    if (c == NULL)
        return;
    free(c->product);
    free(c->placed);
    free(c->until);
    free(c);
}

/* A day, "YYYY-MM-DD", that the calendar has. */
static kbr_err json_date(const json_t *body, const char *field, const char **out, kbr_msg *msg)
{
    if (kbd_json_str(body, field, true, 10, out, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (!kbr_store_date_valid(*out))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "%s: \"%s\" is not a day of the calendar written YYYY-MM-DD (from 1970)",
                        field, *out);
    return KBR_OK;
}

void kbd_product_register_work(kbd_req *r, kbd_worker *w)
{
    product_ctx *c = r->ctx;
    json_t *have = NULL, *period = NULL;
    char now[KBR_TIME_LEN];
    kbr_err err = kbr_store_product_get(w->store, c->product, &have);
    const char *placed = json_string_value(json_object_get(have, "placed_on_market"));
    const char *until = json_string_value(json_object_get(have, "support_until"));

    if (err != KBR_OK && err != KBR_ERR_NOT_FOUND) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the ledger could not be read");
        goto out;
    }
    if (err == KBR_OK && strcmp(placed, c->placed) != 0) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "placed_on_market: product %s was placed on the market on %s, not %s",
                      c->product, placed, c->placed);
        goto out;
    }
    if (err == KBR_OK && strcmp(until, c->until) > 0) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "support_until: the support period of %s runs until %s; it can be "
                      "extended, never shortened",
                      c->product, until);
        goto out;
    }
    kbr_time_fmt(time(NULL), now);
    if (kbd_req_effect(r, &(kbr_effect){.type = KBR_EFFECT_PRODUCT_REGISTER,
                                        .u.product_register = {.product = c->product,
                                                               .placed_on_market = c->placed,
                                                               .support_until = c->until,
                                                               .at = now,
                                                               .by = r->sub}}) != KBR_OK ||
        kbr_store_support_period(c->placed, c->until, &period) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the support period could not be recorded");
        goto out;
    }
    r->resp = json_pack(
        "{s:s,s:s,s:s,s:O,s:s,s:s,s:s*}", "product", c->product, "placed_on_market", c->placed,
        "support_until", c->until, "support_period", period, "created_at",
        have != NULL ? json_string_value(json_object_get(have, "created_at")) : now, "created_by",
        have != NULL ? json_string_value(json_object_get(have, "created_by")) : r->sub,
        "updated_at", have != NULL ? now : NULL);
    if (r->resp == NULL) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        goto out;
    }
    r->status = have == NULL ? 201 : 200;
    r->add_audit_seq_to_resp = true;
    json_object_set(r->rec->detail, "product", r->resp);
out:
    json_decref(period);
    json_decref(have);
}

kbr_err kbd_product_register_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"product", "placed_on_market", "support_until", NULL};
    const char *product, *placed, *until;
    product_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_name(r->body, "product", true, &product, msg));
    KBR_GUARD(json_date(r->body, "placed_on_market", &placed, msg));
    KBR_GUARD(json_date(r->body, "support_until", &until, msg));
    c->product = strdup(product);
    c->placed = strdup(placed);
    c->until = strdup(until);
    KBR_ENSURE(c->product != NULL && c->placed != NULL && c->until != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(strcmp(until, placed) > 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "support_until: %s is not after placed_on_market (%s)", until, placed));
out:
    return err;
}

/* The entry is about the product, once the request names it well. */
kbr_err kbd_product_describe(kbd_req *r, const void *req)
{
    const product_ctx *c = req;

    return c->product != NULL ? kbr_audit_rec_add_product(r->rec, c->product) : KBR_OK;
}

kbr_err kbd_product_authorize(kbd_req *r, void *req)
{
    const product_ctx *c = req;

    if (!kbr_namelist_match(&r->tok->scope.products, c->product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product: \"%s\" is outside the token's products", c->product);
    return KBR_OK;
}

void kbd_product_get_work(kbd_req *r, kbd_worker *w)
{
    product_ctx *c = r->ctx;
    json_t *p = NULL;
    kbr_err err = kbr_store_product_get(w->store, c->product, &p);

    if (err != KBR_OK) {
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT, "product %s: %s",
                      c->product,
                      err == KBR_ERR_NOT_FOUND ? "no support period registered (POST /v1/products)"
                                               : "the ledger could not be read");
        return;
    }
    r->resp = p;
}

kbr_err kbd_product_get_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    product_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(kbr_name_valid(r->arg),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "product name in the path is not valid"));
    KBR_ENSURE((c->product = strdup(r->arg)) != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

kbr_err kbd_product_get_authorize(kbd_req *r, void *req)
{
    const product_ctx *c = req;

    if (!kbr_namelist_match(&r->tok->scope.products, c->product))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product \"%s\" is outside the token's products", c->product);
    json_object_set_new(r->rec->detail, "product", json_string(c->product));
    return KBR_OK;
}
