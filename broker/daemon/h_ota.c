/*
 * h_ota.c - POST /v1/ota/deployments: the OTA platform reports which
 * devices installed (or failed to install) a firmware version the broker
 * signed.  This is what later answers "is the fix deployed?": each known
 * device's firmware history and current version follow these reports.
 * Devices the ledger does not know are returned to the caller, never
 * silently dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"

#define OTA_MAX_RESULTS 10000
/* How far ahead of the broker's clock a device's report of an install may be. */
#define OTA_CLOCK_SKEW 300

typedef kbd_ota_report_req ota_ctx;

void kbd_ota_report_free(void *p)
{
    ota_ctx *c = p;

    if (c == NULL)
        return;
    free(c->product);
    free(c->version);
    free(c->campaign);
    json_decref(c->results);
    json_decref(c->serials);
    kbr_scope_cleanup(&c->scope);
    free(c);
}

static kbr_err parse_result(ota_ctx *c, const json_t *item, size_t i, time_t now, kbr_msg *msg)
{
    static const char *const allowed[] = {"device", "status", "at", NULL};
    const char *serial, *status, *at;
    char where[32], norm[KBR_TIME_LEN];
    time_t t;

    snprintf(where, sizeof(where), "results[%zu]", i);
    if (!json_is_object(item))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be an object", where);
    if (kbd_json_only(item, allowed, msg) != KBR_OK ||
        kbd_json_name(item, "device", true, &serial, msg) != KBR_OK ||
        kbd_json_str(item, "status", true, 16, &status, msg) != KBR_OK ||
        kbd_json_str(item, "at", true, 40, &at, msg) != KBR_OK)
        return kbd_msg_prefix(msg, where, KBR_ERR_BAD_REQUEST);
    if (strcmp(status, "installed") != 0 && strcmp(status, "failed") != 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s.status: must be \"installed\" or \"failed\"",
                        where);
    if (kbr_time_parse(at, &t) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "%s.at: not an RFC 3339 UTC time such as 2026-11-28T14:00:00Z", where);
    /* a result from the future would stay the device's latest install until that time */
    if (t > now + OTA_CLOCK_SKEW)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "%s.at: %s is in the future (more than %d seconds ahead of the broker)",
                        where, at, OTA_CLOCK_SKEW);
    kbr_time_fmt(t, norm);
    if (json_array_append_new(c->results, json_pack("{s:s,s:s,s:s}", "serial", serial, "status",
                                                    status, "at", norm)) != 0 ||
        json_array_append_new(c->serials, json_string(serial)) != 0)
        return KBR_ERR_NOMEM;
    return KBR_OK;
}

kbr_err kbd_ota_report_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"product", "version", "campaign", "results", NULL};
    const char *product, *version, *campaign;
    const json_t *results = json_object_get(r->body, "results");
    ota_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;
    size_t i;
    json_t *item;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_name(r->body, "product", true, &product, msg));
    KBR_GUARD(kbd_json_name(r->body, "version", true, &version, msg));
    KBR_GUARD(kbd_json_str(r->body, "campaign", true, 128, &campaign, msg));
    KBR_ENSURE(json_is_array(results) && json_array_size(results) > 0 &&
                   json_array_size(results) <= OTA_MAX_RESULTS,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "results: required, an array of 1 to %d {device, status, at}",
                        OTA_MAX_RESULTS));
    c->product = strdup(product);
    c->version = strdup(version);
    c->campaign = strdup(campaign);
    c->results = json_array();
    c->serials = json_array();
    KBR_ENSURE(c->product != NULL && c->version != NULL && c->campaign != NULL &&
                   c->results != NULL && c->serials != NULL,
               KBR_ERR_NOMEM);
    json_array_foreach(results, i, item)
    {
        KBR_GUARD(parse_result(c, item, i, r->arrived, msg));
    }
out:
    return err;
}

/* The entry is about the product, once the request names it well. */
kbr_err kbd_ota_report_describe(kbd_req *r, const void *req)
{
    const ota_ctx *c = req;

    return c->product != NULL ? kbr_audit_rec_add_product(r->rec, c->product) : KBR_OK;
}

/* The product and each device reported are the token's (their batches: in the worker, which
 * reads them). */
kbr_err kbd_ota_report_authorize(kbd_req *r, void *req)
{
    ota_ctx *c = req;
    kbr_err err = KBR_OK;
    size_t i;
    json_t *serial;

    KBR_ENSURE(kbr_namelist_match(&r->tok->scope.products, c->product),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product: \"%s\" is outside the token's products", c->product));
    json_array_foreach(c->serials, i, serial)
    {
        KBR_ENSURE(kbr_namelist_match(&r->tok->scope.devices, json_string_value(serial)),
                   kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                            "results[%zu].device: \"%s\" is outside the token's devices", i,
                            json_string_value(serial)));
    }
    KBR_GUARD(kbd_scope_copy(&r->tok->scope, &c->scope));
out:
    return err;
}

/*
 * Splits the results into those of known devices and the names of unknown
 * ones; jansson objects serve as hash sets so a 10k-device report stays linear.
 */
static kbr_err split(const ota_ctx *c, const json_t *known, json_t *recorded, json_t *unknown)
{
    json_t *known_set = json_object(), *seen = json_object(), *res, *v;
    size_t i;

    if (known_set == NULL || seen == NULL) {
        json_decref(known_set);
        json_decref(seen);
        return KBR_ERR_NOMEM;
    }
    json_array_foreach(known, i, v)
    {
        json_object_set(known_set, json_string_value(v), json_true());
    }
    json_array_foreach(c->results, i, res)
    {
        const char *serial = json_string_value(json_object_get(res, "serial"));
        if (json_object_get(known_set, serial) != NULL) {
            json_array_append(recorded, res);
        } else if (json_object_get(seen, serial) == NULL) {
            json_object_set(seen, serial, json_true());
            json_array_append_new(unknown, json_string(serial));
        }
    }
    json_decref(known_set);
    json_decref(seen);
    return KBR_OK;
}

/* A token limited to batches reports only devices of those batches: false when r holds the
 * refusal (nothing of the report is recorded). */
static bool known_in_batches(kbd_req *r, kbd_worker *w, const ota_ctx *c, const json_t *known)
{
    const json_t *serial;
    size_t i;

    if (kbr_namelist_is_any(&c->scope.batches))
        return true;
    json_array_foreach(known, i, serial)
    {
        json_t *dev = NULL;
        kbr_err err = kbr_store_device_get(w->store, c->product, json_string_value(serial), &dev);
        const char *batch = json_string_value(json_object_get(dev, "batch"));
        bool ok = err == KBR_OK && batch != NULL && kbr_namelist_match(&c->scope.batches, batch);

        if (!ok && err == KBR_OK)
            kbd_req_error(r, KBR_ERR_FORBIDDEN,
                          "device %s is in batch \"%s\", outside the token's batches",
                          json_string_value(serial), batch != NULL ? batch : "");
        else if (!ok)
            kbd_req_error(r, KBR_ERR_AUDIT, "the device ledger could not be read");
        json_decref(dev);
        if (!ok)
            return false;
    }
    return true;
}

/* The results of known devices, as the ledger records them. */
static kbr_err report_effect(kbd_req *r, const ota_ctx *c, const json_t *recorded, const char *now)
{
    size_t i, n = json_array_size(recorded);
    kbr_effect_ota_result *res = calloc(n + 1, sizeof(*res));
    const json_t *v;
    kbr_err err;

    if (res == NULL)
        return KBR_ERR_NOMEM;
    json_array_foreach(recorded, i, v)
    {
        res[i] = (kbr_effect_ota_result){.serial = json_string_value(json_object_get(v, "serial")),
                                         .status = json_string_value(json_object_get(v, "status")),
                                         .at = json_string_value(json_object_get(v, "at"))};
    }
    err = kbd_req_effect(r, &(kbr_effect){.type = KBR_EFFECT_OTA_REPORT,
                                          .u.ota_report = {.product = c->product,
                                                           .version = c->version,
                                                           .campaign = c->campaign,
                                                           .reported_by = r->sub,
                                                           .at = now,
                                                           .results = res,
                                                           .nresults = n}});
    free(res);
    return err;
}

void kbd_ota_report_work(kbd_req *r, kbd_worker *w)
{
    ota_ctx *c = r->ctx;
    json_t *build = NULL, *known = NULL;
    json_t *recorded = json_array(), *unknown = json_array();
    char now[KBR_TIME_LEN];
    kbr_err err = kbr_store_firmware_get(w->store, c->product, c->version, &build);

    json_decref(build);
    if (err != KBR_OK) {
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT,
                      "version: this broker never signed firmware %s %s", c->product, c->version);
        goto out;
    }
    if (kbr_store_devices_known(w->store, c->product, c->serials, &known) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the device ledger could not be read");
        goto out;
    }
    if (!known_in_batches(r, w, c, known))
        goto out;
    if (recorded == NULL || unknown == NULL || split(c, known, recorded, unknown) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        goto out;
    }
    kbr_time_fmt(time(NULL), now);
    if (json_array_size(recorded) > 0 && report_effect(r, c, recorded, now) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the report could not be recorded");
        json_decref(recorded);
        json_decref(unknown);
        return;
    }
    json_object_set_new(r->rec->detail, "ota",
                        json_pack("{s:s,s:s,s:s,s:I,s:O}", "product", c->product, "version",
                                  c->version, "campaign", c->campaign, "recorded",
                                  (json_int_t)json_array_size(recorded), "unknown_devices",
                                  unknown));
    r->resp = json_pack("{s:I,s:O}", "recorded", (json_int_t)json_array_size(recorded),
                        "unknown_devices", unknown);
out:
    json_decref(known);
    json_decref(recorded);
    json_decref(unknown);
}
