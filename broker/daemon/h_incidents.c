/*
 * h_incidents.c - vulnerabilities handled under the Cyber Resilience Act, Art. 14
 * (docs/cra.md, docs/api.md "Incidents"):
 *   POST /v1/incidents                          record one, with its exposure as it stands
 *   GET  /v1/incidents                          every incident the token sees, with its clocks
 *   GET  /v1/incidents/{id}                     one, with its exposure and remediation now and
 *                                               day by day
 *   POST /v1/incidents/{id}/fix                 the corrective measure (a build this broker
 *                                               signed): starts the final report's clock
 *   POST /v1/incidents/{id}/reports             a report of a stage, kept as a document
 *   GET  /v1/incidents/{id}/reports/{stage}     the latest report of a stage, or its CSAF VEX
 * Changes need op admin, reads op read; both within the token's products: an incident of a
 * product is that product's, one of every product is only for tokens without a products list.
 * Every change is an effect of its audit entry (incident.create, incident.fix,
 * incident.report); the report's document is named in the entry by its SHA-256.
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"
#include "kbr_cra.h"

/* How far ahead of the broker's clock a time the caller gives may be. */
#define CLOCK_SKEW 300
#define NOTES_MAX  4096

typedef kbd_incident_req incident_ctx;

void kbd_incident_free(void *p)
{
    incident_ctx *c = p;

    if (c == NULL)
        return;
    free(c->id);
    free(c->title);
    free(c->product);
    free(c->component);
    free(c->purl);
    free(c->vers);
    free(c->aware_at);
    free(c->severity);
    free(c->cve);
    free(c->fixed);
    free(c->available_at);
    free(c->stage);
    free(c->notes);
    json_decref(c->versions);
    kbr_scope_cleanup(&c->scope);
    free(c);
}

static kbr_err new_req(void **out, incident_ctx **c)
{
    *c = calloc(1, sizeof(**c));
    *out = *c;
    return *c != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err keep(char **slot, const char *s)
{
    if (s == NULL)
        return KBR_OK;
    *slot = strdup(s);
    return *slot != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

/* A time the caller gives: RFC 3339 UTC, not ahead of the broker's clock; normalized. */
static kbr_err json_time(const json_t *body, const char *field, bool required, time_t now,
                         char **out, kbr_msg *msg)
{
    const char *s = NULL;
    char norm[KBR_TIME_LEN];
    time_t t;

    *out = NULL;
    if (kbd_json_str(body, field, required, 40, &s, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (s == NULL)
        return KBR_OK;
    if (kbr_time_parse(s, &t) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "%s: not an RFC 3339 UTC time such as 2026-11-28T14:00:00Z", field);
    if (t > now + CLOCK_SKEW)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "%s: %s is in the future (more than %d seconds ahead of the broker)", field,
                        s, CLOCK_SKEW);
    kbr_time_fmt(t, norm);
    return keep(out, norm);
}

/* May a token with scope see (and, with op admin, change) the incident of product? */
static bool sees(const kbr_scope *scope, const char *product)
{
    return product != NULL ? kbr_namelist_match(&scope->products, product)
                           : !scope->products.present;
}

/* The products an incident's entries are about: its own, or those its exposure named. */
static kbr_err attribute(kbd_req *r, const json_t *incident)
{
    kbr_err err = KBR_OK;
    const char *product = json_string_value(json_object_get(incident, "product"));
    const json_t *p;
    size_t i;

    if (product != NULL)
        return kbr_audit_rec_add_product(r->rec, product);
    json_array_foreach(
        json_object_get(json_object_get(incident, "exposure_at_awareness"), "products"), i, p)
    {
        KBR_GUARD(kbr_audit_rec_add_product(r->rec, json_string_value(p)));
    }
out:
    return err;
}

/* The incident of r->arg as the token may see it (view with or without its figures); on
 * failure r carries the error. */
static bool load_incident(kbd_req *r, kbd_worker *w, bool figures, json_t **out)
{
    incident_ctx *c = r->ctx;
    kbr_err err = kbr_store_incident_view(w->store, c->id, time(NULL), figures, out);

    if (err != KBR_OK) {
        kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT, "incident %s: %s", c->id,
                      err == KBR_ERR_NOT_FOUND ? "no such incident" : "the ledger could not say");
        return false;
    }
    if (attribute(r, *out) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
    } else if (!sees(&c->scope, json_string_value(json_object_get(*out, "product")))) {
        kbd_req_error(r, KBR_ERR_FORBIDDEN, "incident %s is about %s, outside the token's products",
                      c->id,
                      json_is_string(json_object_get(*out, "product"))
                          ? json_string_value(json_object_get(*out, "product"))
                          : "every product");
    } else {
        return true;
    }
    json_decref(*out);
    *out = NULL;
    return false;
}

/* The {id} segment of the path. */
static kbr_err path_id(const kbd_req *r, incident_ctx *c, kbr_msg *msg)
{
    if (!kbr_name_valid(r->arg))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "incident id in the path is not valid");
    return keep(&c->id, r->arg);
}

/* The entry of a request on /v1/incidents/{id} names the incident, once the path does. */
kbr_err kbd_incident_describe(kbd_req *r, const void *req)
{
    const incident_ctx *c = req;

    if (c->id != NULL)
        json_object_set_new(r->rec->detail, "incident", json_string(c->id));
    return KBR_OK;
}

/* Who may see an incident depends on its product, which the ledger knows: the worker decides,
 * with a copy of the token's scope. */
kbr_err kbd_incident_authorize(kbd_req *r, void *req)
{
    incident_ctx *c = req;

    return kbd_scope_copy(&r->tok->scope, &c->scope);
}

/* ---- POST /v1/incidents ---- */

static kbr_err parse_versions(const json_t *body, incident_ctx *c, kbr_msg *msg)
{
    const json_t *v = json_object_get(body, "versions");

    if (v == NULL)
        return KBR_OK;
    /* kbr_store_exposure_check says what is wrong with them, naming the item */
    if (!json_is_array(v))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "versions: an array of versions");
    c->versions = json_deep_copy(v);
    return c->versions != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static bool cve_id(const char *s)
{
    size_t n = strlen(s), digits = strspn(s + 9 < s + n ? s + 9 : s + n, "0123456789");

    return n >= 13 && n <= 32 && strncmp(s, "CVE-", 4) == 0 && strspn(s + 4, "0123456789") == 4 &&
           s[8] == '-' && digits >= 4 && 9 + digits == n;
}

static kbr_err parse_choice(const json_t *body, const char *field, const char *const *choices,
                            char **out, kbr_msg *msg)
{
    const char *s;

    if (kbd_json_str(body, field, true, 32, &s, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    for (size_t i = 0; choices[i] != NULL; i++)
        if (strcmp(s, choices[i]) == 0)
            return keep(out, s);
    return KBR_ERR_BAD_REQUEST;
}

kbr_err kbd_incident_create_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"id",        "title",    "product",
                                          "component", "versions", "purl",
                                          "vers",      "aware_at", "actively_exploited",
                                          "severity",  "cve",      NULL};
    static const char *const severities[] = {"low", "medium", "high", "critical", NULL};
    const char *id, *title, *product, *component, *purl, *vers, *cve;
    const json_t *body = r->body, *exploited = json_object_get(body, "actively_exploited");
    kbr_exposure_query q;
    incident_ctx *c = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(new_req(out, &c));
    KBR_GUARD(kbd_json_only(body, allowed, msg));
    KBR_GUARD(kbd_json_name(body, "id", true, &id, msg));
    KBR_GUARD(kbd_json_str(body, "title", true, 512, &title, msg));
    KBR_GUARD(kbd_json_name(body, "product", false, &product, msg));
    KBR_GUARD(kbd_json_str(body, "component", true, 256, &component, msg));
    KBR_GUARD(kbd_json_str(body, "purl", false, 1024, &purl, msg));
    KBR_GUARD(kbd_json_str(body, "vers", false, 4096, &vers, msg));
    KBR_GUARD(kbd_json_str(body, "cve", false, 32, &cve, msg));
    KBR_ENSURE(json_is_boolean(exploited),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "actively_exploited: required, true or false"));
    KBR_ENSURE(cve == NULL || cve_id(cve),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "cve: \"%s\" is not a CVE identifier such as CVE-2024-12345", cve));
    err = parse_choice(body, "severity", severities, &c->severity, msg);
    KBR_ENSURE(err != KBR_ERR_BAD_REQUEST,
               kbr_fail(msg, err, "severity: required, low, medium, high or critical"));
    KBR_GUARD(err);
    KBR_GUARD(parse_versions(body, c, msg));
    KBR_GUARD(json_time(body, "aware_at", true, r->arrived, &c->aware_at, msg));
    c->exploited = json_is_true(exploited);
    KBR_GUARD(keep(&c->id, id));
    KBR_GUARD(keep(&c->title, title));
    KBR_GUARD(keep(&c->product, product));
    KBR_GUARD(keep(&c->component, component));
    KBR_GUARD(keep(&c->purl, purl));
    KBR_GUARD(keep(&c->vers, vers));
    KBR_GUARD(keep(&c->cve, cve));
    /* by its package when a purl is given, else by its SBOM name */
    q = (kbr_exposure_query){.component = purl == NULL ? component : NULL,
                             .purl = purl,
                             .versions = c->versions,
                             .vers = vers};
    KBR_GUARD(kbr_store_exposure_check(&q, msg));
out:
    return err;
}

/* A token limited to products records incidents of one of them; the others, of any product
 * or of every product. */
kbr_err kbd_incident_create_authorize(kbd_req *r, void *req)
{
    const incident_ctx *c = req;
    kbr_err err = KBR_OK;

    KBR_ENSURE(kbr_audit_rec_add_product(r->rec, c->product) == KBR_OK, KBR_ERR_NOMEM);
    KBR_ENSURE(!r->tok->scope.products.present ||
                   (c->product != NULL && kbr_namelist_match(&r->tok->scope.products, c->product)),
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "product: a token limited to products must name one of them"));
    json_object_set_new(r->rec->detail, "incident", json_string(c->id));
out:
    return err;
}

/* The question as the incident keeps it. */
static json_t *query_of(const incident_ctx *c)
{
    return json_pack("{s:s*,s:s*,s:O*,s:s*}", "component", c->purl == NULL ? c->component : NULL,
                     "purl", c->purl, "versions", c->versions, "vers", c->vers);
}

/* The figures of View C kept in the incident: what it was known to reach when recorded. */
static json_t *exposure_of(const json_t *view, const char *now)
{
    json_t *products = json_array(), *builds = json_array(), *states = json_array();
    const json_t *b, *affected = json_object_get(view, "affected");
    const json_t *running = json_object_get(view, "devices");
    const char *code;
    json_t *n;
    size_t i;

    json_array_foreach(json_object_get(view, "builds"), i, b)
    {
        const json_t *p = json_object_get(b, "product");
        bool seen = false;
        size_t k;
        const json_t *q;

        json_array_append_new(builds, json_pack("{s:O,s:O,s:O,s:O,s:O}", "product", p, "version",
                                                json_object_get(b, "version"), "digest",
                                                json_object_get(b, "digest"), "signed_at",
                                                json_object_get(b, "signed_at"), "audit_seq",
                                                json_object_get(b, "audit_seq")));
        json_array_foreach(products, k, q)
        {
            seen = seen || json_equal(p, q);
        }
        if (!seen)
            json_array_append(products, (json_t *)p);
    }
    json_object_foreach(json_object_get(affected, "by_market"), code, n)
    {
        if (kbr_market_is_eu(code) && json_integer_value(n) > 0)
            json_array_append_new(states, json_string(code));
    }
    return json_pack("{s:s,s:o,s:o,s:o,s:O,s:{s:{s:O,s:O,s:O,s:O},s:{s:O,s:O,s:O,s:O}}}", "as_of",
                     now, "products", products, "builds", builds, "member_states", states,
                     "undecided", json_object_get(view, "undecided"), "devices", "affected",
                     "total", json_object_get(affected, "total"), "by_market",
                     json_object_get(affected, "by_market"), "eu", json_object_get(affected, "eu"),
                     "invalid_markets", json_object_get(affected, "invalid_markets"), "running",
                     "total", json_object_get(running, "current"), "by_market",
                     json_object_get(running, "by_market"), "eu", json_object_get(running, "eu"),
                     "invalid_markets", json_object_get(running, "invalid_markets"));
}

static kbr_err builds_of(const json_t *exposure, kbr_effect_build **out, size_t *n)
{
    const json_t *builds = json_object_get(exposure, "builds"), *b;
    size_t i;

    *n = json_array_size(builds);
    *out = calloc(*n + 1, sizeof(**out));
    if (*out == NULL)
        return KBR_ERR_NOMEM;
    json_array_foreach(builds, i, b)
    {
        (*out)[i] = (kbr_effect_build){.product = json_string_value(json_object_get(b, "product")),
                                       .version = json_string_value(json_object_get(b, "version"))};
    }
    return KBR_OK;
}

static kbr_err create_record(kbd_req *r, const incident_ctx *c, const json_t *exposure,
                             const char *now)
{
    kbr_err err = KBR_OK;
    kbr_effect_build *builds = NULL;
    size_t nbuilds = 0;
    json_t *query = query_of(c), *p;
    char *query_text = NULL, *exposure_text = NULL;
    size_t i;

    KBR_ENSURE(query != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_json_canonical(query, &query_text));
    KBR_GUARD(kbr_json_canonical(exposure, &exposure_text));
    KBR_GUARD(builds_of(exposure, &builds, &nbuilds));
    KBR_GUARD(
        kbd_req_effect(r, &(kbr_effect){.type = KBR_EFFECT_INCIDENT_CREATE,
                                        .u.incident_create = {.id = c->id,
                                                              .title = c->title,
                                                              .product = c->product,
                                                              .component = c->component,
                                                              .aware_at = c->aware_at,
                                                              .severity = c->severity,
                                                              .cve = c->cve,
                                                              .created_at = now,
                                                              .created_by = r->sub,
                                                              .query_json = query_text,
                                                              .exposure_json = exposure_text,
                                                              .actively_exploited = c->exploited,
                                                              .builds = builds,
                                                              .nbuilds = nbuilds}}));
    if (c->product != NULL)
        KBR_GUARD(kbr_audit_rec_add_product(r->rec, c->product));
    json_array_foreach(json_object_get(exposure, "products"), i, p)
    {
        KBR_GUARD(kbr_audit_rec_add_product(r->rec, json_string_value(p)));
    }
out:
    free(builds);
    free(query_text);
    free(exposure_text);
    json_decref(query);
    return err;
}

void kbd_incident_create_work(kbd_req *r, kbd_worker *w)
{
    incident_ctx *c = r->ctx;
    kbr_exposure_query q = {.component = c->purl == NULL ? c->component : NULL,
                            .purl = c->purl,
                            .versions = c->versions,
                            .vers = c->vers,
                            .product = c->product};
    json_t *view = NULL, *exposure = NULL, *dl = NULL, *have = NULL, *empty = json_array();
    char now[KBR_TIME_LEN];
    kbr_err err = kbr_store_incident_view(w->store, c->id, time(NULL), false, &have);

    kbr_time_fmt(time(NULL), now);
    if (err == KBR_OK) {
        kbd_req_error(r, KBR_ERR_CONFLICT, "id: incident %s exists", c->id);
        goto out;
    }
    if (err != KBR_ERR_NOT_FOUND || kbr_store_view_exposure(w->store, &q, &view) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the ledger could not say what the component reaches");
        goto out;
    }
    exposure = exposure_of(view, now);
    if (exposure == NULL || empty == NULL || create_record(r, c, exposure, now) != KBR_OK ||
        kbr_store_incident_deadlines(c->aware_at, NULL, empty, time(NULL), &dl) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the incident could not be recorded");
        goto out;
    }
    r->resp = json_pack("{s:s,s:s,s:s?,s:s,s:o,s:s?,s:s,s:b,s:s,s:s,s:s,s:O,s:O,s:n,s:O,s:[]}",
                        "id", c->id, "title", c->title, "product", c->product, "component",
                        c->component, "query", query_of(c), "cve", c->cve, "aware_at", c->aware_at,
                        "actively_exploited", c->exploited, "severity", c->severity, "created_at",
                        now, "created_by", r->sub, "exposure_at_awareness", exposure, "builds",
                        json_object_get(exposure, "builds"), "fix", "deadlines", dl, "reports");
    if (r->resp == NULL) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        goto out;
    }
    r->status = 201;
    r->add_audit_seq_to_resp = true;
    json_object_set_new(r->rec->detail, "incident",
                        json_pack("{s:s,s:s,s:O,s:O}", "id", c->id, "component", c->component,
                                  "builds", json_object_get(exposure, "builds"), "member_states",
                                  json_object_get(exposure, "member_states")));
out:
    json_decref(empty);
    json_decref(have);
    json_decref(dl);
    json_decref(exposure);
    json_decref(view);
}

/* ---- GET /v1/incidents, GET /v1/incidents/{id} ---- */

void kbd_incident_list_work(kbd_req *r, kbd_worker *w)
{
    incident_ctx *c = r->ctx;
    json_t *all = NULL, *seen = json_array(), *inc;
    size_t i;

    if (seen == NULL || kbr_store_incident_list(w->store, time(NULL), &all) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the ledger could not list the incidents");
        json_decref(seen);
        return;
    }
    json_array_foreach(all, i, inc)
    {
        if (sees(&c->scope, json_string_value(json_object_get(inc, "product"))))
            json_array_append(seen, inc);
    }
    r->resp = json_pack("{s:o}", "incidents", seen);
    json_decref(all);
}

kbr_err kbd_incident_list_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    incident_ctx *c = NULL;

    (void)r;
    (void)msg;
    return new_req(out, &c);
}

void kbd_incident_get_work(kbd_req *r, kbd_worker *w)
{
    json_t *v = NULL;

    if (load_incident(r, w, true, &v))
        r->resp = v;
}

kbr_err kbd_incident_get_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    incident_ctx *c = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(new_req(out, &c));
    KBR_GUARD(path_id(r, c, msg));
out:
    return err;
}

/* ---- POST /v1/incidents/{id}/fix ---- */

/* The products the fix must be a build of: those of the incident's builds, or its own. */
static json_t *fix_products(const json_t *v)
{
    json_t *out = json_array();
    const json_t *b, *p;
    size_t i, k;

    json_array_foreach(json_object_get(v, "builds"), i, b)
    {
        bool seen = false;
        json_array_foreach(out, k, p)
        {
            seen = seen || json_equal(p, json_object_get(b, "product"));
        }
        if (!seen)
            json_array_append(out, json_object_get(b, "product"));
    }
    if (json_array_size(out) == 0 && json_is_string(json_object_get(v, "product")))
        json_array_append(out, json_object_get(v, "product"));
    return out;
}

/* The fix is a build of each product this broker signed, none of them one the incident names,
 * and available no earlier than it was signed. */
static bool fix_checks(kbd_req *r, kbd_worker *w, const json_t *v, const char *available)
{
    incident_ctx *c = r->ctx;
    json_t *products = fix_products(v), *build = NULL;
    const json_t *p, *b;
    const char *signed_at;
    bool ok = products != NULL;
    size_t i, k;

    json_array_foreach(products, i, p)
    {
        const char *product = json_string_value(p);
        kbr_err err = kbr_store_firmware_get(w->store, product, c->fixed, &build);

        if (err != KBR_OK) {
            kbd_req_error(r, err == KBR_ERR_NOT_FOUND ? err : KBR_ERR_AUDIT,
                          "fixed_version: this broker never signed firmware %s %s", product,
                          c->fixed);
            ok = false;
            break;
        }
        signed_at = json_string_value(json_object_get(build, "signed_at"));
        json_array_foreach(json_object_get(v, "builds"), k, b)
        {
            if (json_equal(json_object_get(b, "product"), p) &&
                strcmp(json_string_value(json_object_get(b, "version")), c->fixed) == 0) {
                kbd_req_error(r, KBR_ERR_CONFLICT,
                              "fixed_version: firmware %s %s carries the component itself", product,
                              c->fixed);
                ok = false;
            }
        }
        if (ok && signed_at != NULL && strcmp(available, signed_at) < 0) {
            kbd_req_error(r, KBR_ERR_BAD_REQUEST,
                          "available_at: %s is before firmware %s %s was signed (%s)", available,
                          product, c->fixed, signed_at);
            ok = false;
        }
        json_decref(build);
        build = NULL;
        if (!ok)
            break;
    }
    json_decref(products);
    return ok;
}

void kbd_incident_fix_work(kbd_req *r, kbd_worker *w)
{
    incident_ctx *c = r->ctx;
    json_t *v = NULL, *dl = NULL, *fix = NULL;
    char now[KBR_TIME_LEN];
    const char *available;
    bool exists = false;

    kbr_time_fmt(time(NULL), now);
    available = c->available_at != NULL ? c->available_at : now;
    if (!load_incident(r, w, false, &v))
        return;
    if (!json_is_null(json_object_get(v, "fix"))) {
        kbd_req_error(
            r, KBR_ERR_CONFLICT, "fixed_version: incident %s has its fix already (%s)", c->id,
            json_string_value(json_object_get(json_object_get(v, "fix"), "fixed_version")));
        goto out;
    }
    if (json_array_size(json_object_get(v, "builds")) == 0 &&
        !json_is_string(json_object_get(v, "product"))) {
        /* an incident of every product that reaches no build: any build of that version */
        if (kbr_store_firmware_version_exists(w->store, c->fixed, &exists) != KBR_OK || !exists) {
            kbd_req_error(r, KBR_ERR_NOT_FOUND,
                          "fixed_version: this broker never signed firmware %s", c->fixed);
            goto out;
        }
    } else if (!fix_checks(r, w, v, available)) {
        goto out;
    }
    fix = json_pack("{s:s,s:s,s:s}", "fixed_version", c->fixed, "available_at", available,
                    "recorded_at", now);
    if (fix == NULL ||
        kbd_req_effect(r, &(kbr_effect){.type = KBR_EFFECT_INCIDENT_FIX,
                                        .u.incident_fix = {.id = c->id,
                                                           .fixed_version = c->fixed,
                                                           .available_at = available,
                                                           .at = now}}) != KBR_OK ||
        kbr_store_incident_deadlines(json_string_value(json_object_get(v, "aware_at")), available,
                                     json_object_get(v, "reports"), time(NULL), &dl) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the fix could not be recorded");
        goto out;
    }
    r->resp = json_pack("{s:s,s:O,s:O}", "id", c->id, "fix", fix, "deadlines", dl);
    r->add_audit_seq_to_resp = r->resp != NULL;
    json_object_set(r->rec->detail, "fix", fix);
out:
    json_decref(fix);
    json_decref(dl);
    json_decref(v);
}

kbr_err kbd_incident_fix_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"fixed_version", "available_at", NULL};
    incident_ctx *c = NULL;
    const char *fixed;
    kbr_err err = KBR_OK;

    KBR_GUARD(new_req(out, &c));
    KBR_GUARD(path_id(r, c, msg));
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_name(r->body, "fixed_version", true, &fixed, msg));
    KBR_GUARD(json_time(r->body, "available_at", false, r->arrived, &c->available_at, msg));
    KBR_GUARD(keep(&c->fixed, fixed));
out:
    return err;
}

/* ---- POST /v1/incidents/{id}/reports ---- */

void kbd_incident_report_work(kbd_req *r, kbd_worker *w)
{
    incident_ctx *c = r->ctx;
    json_t *v = NULL, *doc = NULL;
    char now[KBR_TIME_LEN], sha[65], *text = NULL;

    kbr_time_fmt(time(NULL), now);
    if (!load_incident(r, w, true, &v))
        return;
    if (strcmp(c->stage, "final") == 0 && json_is_null(json_object_get(v, "fix"))) {
        kbd_req_error(r, KBR_ERR_CONFLICT,
                      "stage: a final report needs the corrective measure first "
                      "(POST /v1/incidents/%s/fix)",
                      c->id);
        goto out;
    }
    if (kbd_cra_report(v, c->stage, c->notes, now, r->sub, r->d->cfg.instance_id, &doc) != KBR_OK ||
        kbr_json_canonical(doc, &text) != KBR_OK ||
        kbd_req_document(r, text, strlen(text), sha) != KBR_OK ||
        kbd_req_effect(r, &(kbr_effect){.type = KBR_EFFECT_INCIDENT_REPORT,
                                        .u.incident_report = {.id = c->id,
                                                              .stage = c->stage,
                                                              .sha256 = sha,
                                                              .at = now,
                                                              .by = r->sub}}) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the report could not be made");
        goto out;
    }
    json_object_set_new(r->rec->detail, "report",
                        json_pack("{s:s,s:s,s:s}", "stage", c->stage, "sha256", sha, "at", now));
    r->raw = (unsigned char *)text;
    r->raw_len = strlen(text);
    text = NULL;
    r->status = 201;
out:
    free(text);
    json_decref(doc);
    json_decref(v);
}

static kbr_err parse_stage(const char *s, incident_ctx *c, kbr_msg *msg)
{
    static const char *const stages[] = {"early-warning", "notification", "final"};

    for (size_t i = 0; s != NULL && i < sizeof(stages) / sizeof(stages[0]); i++)
        if (strcmp(s, stages[i]) == 0)
            return keep(&c->stage, s);
    return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                    "stage: required, \"early-warning\", \"notification\" or \"final\"");
}

kbr_err kbd_incident_report_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"stage", "notes", NULL};
    incident_ctx *c = NULL;
    const char *stage = NULL, *notes = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(new_req(out, &c));
    KBR_GUARD(path_id(r, c, msg));
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_str(r->body, "stage", true, 32, &stage, msg));
    KBR_GUARD(kbd_json_str(r->body, "notes", false, NOTES_MAX, &notes, msg));
    KBR_GUARD(parse_stage(stage, c, msg));
    KBR_GUARD(keep(&c->notes, notes));
out:
    return err;
}

/* ---- GET /v1/incidents/{id}/reports/{stage} ---- */

/* The latest report of the stage, or NULL.  Borrowed. */
static const json_t *latest(const json_t *v, const char *stage)
{
    const json_t *r, *found = NULL;
    size_t i;

    json_array_foreach(json_object_get(v, "reports"), i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "stage")), stage) == 0)
            found = r;
    }
    return found;
}

void kbd_incident_report_get_work(kbd_req *r, kbd_worker *w)
{
    incident_ctx *c = r->ctx;
    json_t *v = NULL, *doc = NULL;
    const json_t *rep;
    unsigned char *body = NULL;
    size_t len = 0;

    json_object_set_new(r->rec->detail, "format", json_string(c->csaf ? "csaf" : "json"));
    if (!load_incident(r, w, false, &v))
        return;
    rep = latest(v, c->stage);
    if (rep == NULL) {
        kbd_req_error(r, KBR_ERR_NOT_FOUND, "incident %s has no %s report", c->id, c->stage);
        goto out;
    }
    if (kbr_store_document_get(w->store, json_string_value(json_object_get(rep, "sha256")), &body,
                               &len, NULL) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the report's document could not be read");
        goto out;
    }
    json_object_set(r->rec->detail, "report", (json_t *)rep);
    if (!c->csaf) {
        r->raw = body;
        r->raw_len = len;
        body = NULL;
        goto out;
    }
    doc = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL ||
        kbd_csaf(doc, r->d->cfg.csaf_publisher, r->d->cfg.csaf_namespace, &r->resp) != KBR_OK)
        kbd_req_error(r, KBR_ERR_INTERNAL, "the report could not be written as CSAF");
out:
    free(body);
    json_decref(doc);
    json_decref(v);
}

/* The stage is the last segment of the route's pattern (routes.c). */
kbr_err kbd_incident_report_get_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    const char *format = kbd_req_query(r, "format");
    incident_ctx *c = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(new_req(out, &c));
    KBR_GUARD(path_id(r, c, msg));
    KBR_GUARD(parse_stage(strrchr(r->route->pattern, '/') + 1, c, msg));
    KBR_ENSURE(format == NULL || strcmp(format, "csaf") == 0 || strcmp(format, "json") == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "format: \"json\" (the default) or \"csaf\""));
    c->csaf = format != NULL && strcmp(format, "csaf") == 0;
out:
    return err;
}
