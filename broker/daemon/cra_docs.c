/*
 * cra_docs.c - the documents an incident's reports are (docs/cra.md), made from the incident
 * as the ledger shows it (kbr_store_incident_view with its figures):
 *   early warning (Art. 14(2)(a)): the products, the member states where the broker knows
 *     affected devices are, whether the vulnerability is actively exploited;
 *   notification (Art. 14(2)(b)): and the component and its versions, the builds that carry
 *     it, the severity, the mitigations known;
 *   final report (Art. 14(2)(c)): and the fix, the devices updated and pending per member
 *     state, the residual risk.
 * Each is kept whole as a document (its SHA-256 in the audit entry), and can be read back as
 * a CSAF 2.0 VEX document (kbd_csaf), which is made from the report alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"
#include "kbr_cra.h"

#define REPORT_FORMAT "keybroker-cra-report/1"

static const char *str_of(const json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
}

/* The deadline member of the stage in an incident's deadlines. */
static const char *deadline_key(const char *stage)
{
    if (strcmp(stage, "early-warning") == 0)
        return "early_warning";
    return strcmp(stage, "notification") == 0 ? "notification" : "final_report";
}

/* Market codes of by_market with a count above 0 (figures a number, or {field: n}), sorted
 * (jansson keeps insertion order; the counters come by batch): the EU's or the others. */
static json_t *markets_with(const json_t *by_market, const char *field, bool eu)
{
    json_t *out = json_array();
    const char *code;
    json_t *v;
    size_t n = 0;
    const char **codes = calloc(json_object_size(by_market) + 1, sizeof(*codes));

    if (out == NULL || codes == NULL) {
        free(codes);
        json_decref(out);
        return NULL;
    }
    json_object_foreach((json_t *)by_market, code, v)
    {
        json_int_t count =
            field != NULL ? json_integer_value(json_object_get(v, field)) : json_integer_value(v);
        if (count > 0 && kbr_market_is_eu(code) == eu)
            codes[n++] = code;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(codes[j - 1], codes[j]) > 0; j--) {
            const char *t = codes[j];
            codes[j] = codes[j - 1];
            codes[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, json_string(codes[i]));
    free(codes);
    return out;
}

/* {"DE": x, ...} of the member states only. */
static json_t *member_states_of(const json_t *by_market)
{
    json_t *out = json_object();
    const char *code;
    json_t *v;

    json_object_foreach((json_t *)by_market, code, v)
    {
        if (out != NULL && kbr_market_is_eu(code))
            json_object_set(out, code, v);
    }
    return out;
}

static json_t *products_of(const json_t *builds)
{
    json_t *out = json_array();
    const json_t *b, *p;
    size_t i, k;

    json_array_foreach(builds, i, b)
    {
        bool seen = false;
        json_array_foreach(out, k, p)
        {
            seen = seen || json_equal(p, json_object_get(b, "product"));
        }
        if (!seen && out != NULL)
            json_array_append(out, json_object_get(b, "product"));
    }
    return out;
}

static json_t *builds_of(const json_t *builds)
{
    json_t *out = json_array();
    const json_t *b;
    size_t i;

    json_array_foreach(builds, i, b)
    {
        if (out != NULL)
            json_array_append_new(out, json_pack("{s:O,s:O,s:O,s:O}", "product",
                                                 json_object_get(b, "product"), "version",
                                                 json_object_get(b, "version"), "digest",
                                                 json_object_get(b, "digest"), "signed_at",
                                                 json_object_get(b, "signed_at")));
    }
    return out;
}

/* What is known to reduce the risk: the fix and how far it got, and the reporter's notes. */
static json_t *mitigations(const json_t *fix, const json_t *rem)
{
    char text[512];

    if (json_is_null(fix) || fix == NULL)
        return json_pack("[s]", "No corrective measure has been recorded yet.");
    snprintf(text, sizeof(text),
             "Firmware %s, available since %s, corrects it: %lld of %lld affected devices run it "
             "or later, %lld do not yet.",
             str_of(fix, "fixed_version"), str_of(fix, "available_at"),
             (long long)json_integer_value(json_object_get(rem, "updated")),
             (long long)json_integer_value(json_object_get(rem, "affected")),
             (long long)json_integer_value(json_object_get(rem, "pending")));
    return json_pack("[s]", text);
}

static json_t *residual_risk(const json_t *fix, const json_t *rem)
{
    json_t *pending_states = markets_with(json_object_get(rem, "by_market"), "pending", true);
    json_int_t pending = json_integer_value(json_object_get(rem, "pending"));
    char text[512];

    if (pending == 0)
        snprintf(text, sizeof(text),
                 "No device that ran an affected build still runs one: every one runs firmware %s "
                 "or later.",
                 str_of(fix, "fixed_version"));
    else
        snprintf(
            text, sizeof(text),
            "%lld devices that ran an affected build do not run firmware %s or later yet, "
            "%lld of them in %zu member states.",
            (long long)pending, str_of(fix, "fixed_version"),
            (long long)json_integer_value(json_object_get(json_object_get(rem, "eu"), "pending")),
            json_array_size(pending_states));
    return json_pack("{s:I,s:o,s:s}", "pending_devices", pending, "member_states_with_pending",
                     pending_states, "statement", text);
}

/* The versions the incident names: its list, its vers range, or every version. */
static json_t *versions_of(const json_t *query)
{
    if (json_object_get(query, "versions") != NULL)
        return json_incref(json_object_get(query, "versions"));
    if (json_object_get(query, "vers") != NULL)
        return json_incref(json_object_get(query, "vers"));
    return json_string("every version");
}

static kbr_err stage_content(json_t *doc, const json_t *v, const char *stage)
{
    const json_t *now = json_object_get(v, "now"), *fix = json_object_get(v, "fix");
    const json_t *query = json_object_get(v, "query");
    const json_t *affected = json_object_get(now, "affected");
    const json_t *rem = json_object_get(now, "remediation");
    const json_t *by_market = json_object_get(affected, "by_market");
    int rc = 0;

    rc |= json_object_set_new(doc, "products", products_of(json_object_get(now, "builds")));
    rc |= json_object_set_new(doc, "member_states", markets_with(by_market, NULL, true));
    rc |= json_object_set_new(doc, "other_markets", markets_with(by_market, NULL, false));
    rc |= json_object_set(doc, "actively_exploited", json_object_get(v, "actively_exploited"));
    rc |= json_object_set_new(doc, "builds", builds_of(json_object_get(now, "builds")));
    if (strcmp(stage, "early-warning") == 0)
        return rc == 0 ? KBR_OK : KBR_ERR_NOMEM;
    rc |= json_object_set(doc, "component", json_object_get(v, "component"));
    rc |= json_object_set_new(doc, "purl",
                              json_incref(json_object_get(query, "purl") != NULL
                                              ? json_object_get(query, "purl")
                                              : json_null()));
    rc |= json_object_set_new(doc, "versions", versions_of(query));
    rc |= json_object_set(doc, "severity", json_object_get(v, "severity"));
    rc |= json_object_set_new(doc, "mitigations", mitigations(fix, rem));
    rc |= json_object_set_new(
        doc, "affected_devices",
        json_pack("{s:O,s:O,s:o,s:O}", "total", json_object_get(affected, "total"), "eu",
                  json_object_get(affected, "eu"), "by_member_state", member_states_of(by_market),
                  "invalid_markets", json_object_get(affected, "invalid_markets")));
    if (strcmp(stage, "notification") == 0)
        return rc == 0 ? KBR_OK : KBR_ERR_NOMEM;
    rc |= json_object_set(doc, "fix", (json_t *)fix);
    rc |= json_object_set_new(
        doc, "remediation",
        json_pack("{s:{s:O,s:O,s:O},s:O,s:o,s:O}", "total", "affected",
                  json_object_get(rem, "affected"), "updated", json_object_get(rem, "updated"),
                  "pending", json_object_get(rem, "pending"), "eu", json_object_get(rem, "eu"),
                  "by_member_state", member_states_of(json_object_get(rem, "by_market")),
                  "invalid_markets", json_object_get(rem, "invalid_markets")));
    rc |= json_object_set_new(doc, "residual_risk", residual_risk(fix, rem));
    return rc == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err kbd_cra_report(const json_t *v, const char *stage, const char *notes, const char *at,
                       const char *sub, const char *instance_id, json_t **out)
{
    kbr_err err = KBR_OK;
    const json_t *dl = json_object_get(json_object_get(v, "deadlines"), deadline_key(stage));
    const char *due = str_of(dl, "due");
    json_t *doc = NULL;

    *out = NULL;
    doc = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O},s:{s:s?,s:b,s:O}}",
        "format", REPORT_FORMAT, "stage", stage, "generated_at", at, "generated_by", sub, "broker",
        instance_id, "incident", "id", json_object_get(v, "id"), "title",
        json_object_get(v, "title"), "product", json_object_get(v, "product"), "component",
        json_object_get(v, "component"), "query", json_object_get(v, "query"), "cve",
        json_object_get(v, "cve"), "aware_at", json_object_get(v, "aware_at"), "actively_exploited",
        json_object_get(v, "actively_exploited"), "severity", json_object_get(v, "severity"),
        "audit_seq", json_object_get(v, "audit_seq"), "deadline", "due", due, "on_time",
        due == NULL || strcmp(at, due) <= 0, "first_submitted_at",
        json_object_get(dl, "submitted_at"));
    KBR_ENSURE(doc != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(stage_content(doc, v, stage));
    if (notes != NULL)
        KBR_ENSURE(json_object_set_new(doc, "notes", json_string(notes)) == 0, KBR_ERR_NOMEM);
    *out = doc;
    doc = NULL;
out:
    json_decref(doc);
    return err;
}

/* ---- CSAF 2.0, profile VEX (OASIS CSAF v2.0, section 4.5) ---- */

/* product_id of a build. */
static void build_id(const char *product, const char *version, char *out, size_t n)
{
    snprintf(out, n, "CSAFPID-%s-%s", product, version);
}

/* A full product name under vendor / product_name / product_version branches. */
static kbr_err add_version(json_t *vendor, const char *product, const char *version)
{
    json_t *names = json_object_get(vendor, "branches"), *pb = NULL, *b;
    char id[300], full[300];
    size_t i;

    json_array_foreach(names, i, b)
    {
        if (strcmp(str_of(b, "name"), product) == 0)
            pb = b;
    }
    if (pb == NULL) {
        pb = json_pack("{s:s,s:s,s:[]}", "category", "product_name", "name", product, "branches");
        if (pb == NULL || json_array_append_new(names, pb) != 0)
            return KBR_ERR_NOMEM;
    }
    json_array_foreach(json_object_get(pb, "branches"), i, b)
    {
        if (strcmp(str_of(b, "name"), version) == 0)
            return KBR_OK;
    }
    build_id(product, version, id, sizeof(id));
    snprintf(full, sizeof(full), "%s %s", product, version);
    return json_array_append_new(json_object_get(pb, "branches"),
                                 json_pack("{s:s,s:s,s:{s:s,s:s}}", "category", "product_version",
                                           "name", version, "product", "name", full, "product_id",
                                           id)) == 0
               ? KBR_OK
               : KBR_ERR_NOMEM;
}

static kbr_err add_id(json_t *list, const char *product, const char *version)
{
    char id[300];

    build_id(product, version, id, sizeof(id));
    return json_array_append_new(list, json_string(id)) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err product_status(const json_t *report, json_t *vendor, json_t *status,
                              json_t *affected_ids)
{
    kbr_err err = KBR_OK;
    const json_t *b, *fix = json_object_get(report, "fix"), *p;
    json_t *fixed = json_array();
    size_t i;

    KBR_ENSURE(fixed != NULL, KBR_ERR_NOMEM);
    json_array_foreach(json_object_get(report, "builds"), i, b)
    {
        KBR_GUARD(add_version(vendor, str_of(b, "product"), str_of(b, "version")));
        KBR_GUARD(add_id(affected_ids, str_of(b, "product"), str_of(b, "version")));
    }
    if (json_is_object(fix)) {
        json_array_foreach(json_object_get(report, "products"), i, p)
        {
            KBR_GUARD(add_version(vendor, json_string_value(p), str_of(fix, "fixed_version")));
            KBR_GUARD(add_id(fixed, json_string_value(p), str_of(fix, "fixed_version")));
        }
    }
    if (json_array_size(affected_ids) > 0)
        KBR_ENSURE(json_object_set(status, "known_affected", affected_ids) == 0, KBR_ERR_NOMEM);
    if (json_array_size(fixed) > 0)
        KBR_ENSURE(json_object_set(status, "fixed", fixed) == 0, KBR_ERR_NOMEM);
out:
    json_decref(fixed);
    return err;
}

/* No build known to carry it: the incident's product (or every one) is under investigation. */
static kbr_err nothing_affected(const json_t *report, json_t *vendor, json_t *status, json_t *ids)
{
    const char *product = str_of(json_object_get(report, "incident"), "product");
    const char *name = product != NULL ? product : "every product";

    if (json_array_append_new(json_object_get(vendor, "branches"),
                              json_pack("{s:s,s:s,s:{s:s,s:s}}", "category", "product_name", "name",
                                        name, "product", "name", name, "product_id",
                                        "CSAFPID-0")) != 0 ||
        json_array_append_new(ids, json_string("CSAFPID-0")) != 0 ||
        json_object_set(status, "under_investigation", ids) != 0)
        return KBR_ERR_NOMEM;
    return KBR_OK;
}

static json_t *remediations(const json_t *report, const json_t *ids)
{
    const json_t *fix = json_object_get(report, "fix");
    char text[512];

    if (!json_is_object(fix))
        return json_pack("[{s:s,s:s,s:O}]", "category", "none_available", "details",
                         "No corrective measure is available yet.", "product_ids", ids);
    snprintf(text, sizeof(text), "Update to firmware %s (available since %s).",
             str_of(fix, "fixed_version"), str_of(fix, "available_at"));
    return json_pack("[{s:s,s:s,s:O,s:O}]", "category", "vendor_fix", "details", text,
                     "product_ids", ids, "date", json_object_get(fix, "available_at"));
}

static json_t *threats(const json_t *report)
{
    const json_t *inc = json_object_get(report, "incident");
    char text[64];
    json_t *out;

    snprintf(text, sizeof(text), "Severity: %s", str_of(inc, "severity"));
    out = json_pack("[{s:s,s:s}]", "category", "impact", "details", text);
    if (out != NULL && json_is_true(json_object_get(inc, "actively_exploited")))
        json_array_append_new(out, json_pack("{s:s,s:s}", "category", "exploit_status", "details",
                                             "Actively exploited."));
    return out;
}

/* What the component question was, for people: "openssl (pkg:...), versions [...]". */
static void description(const json_t *inc, char *out, size_t n)
{
    const json_t *q = json_object_get(inc, "query");
    char *versions = json_object_get(q, "versions") != NULL
                         ? json_dumps(json_object_get(q, "versions"), JSON_COMPACT)
                         : NULL;
    size_t len;

    snprintf(out, n, "%s", str_of(inc, "component"));
    len = strlen(out);
    if (str_of(q, "purl") != NULL)
        len += (size_t)snprintf(out + len, len < n ? n - len : 0, " (%s)", str_of(q, "purl"));
    if (versions != NULL && len < n)
        len += (size_t)snprintf(out + len, n - len, ", versions %s", versions);
    if (str_of(q, "vers") != NULL && len < n)
        snprintf(out + len, n - len, ", versions %s", str_of(q, "vers"));
    free(versions);
}

static json_t *vulnerability(const json_t *report, json_t *status, const json_t *ids)
{
    const json_t *inc = json_object_get(report, "incident");
    char text[1200];
    json_t *v;

    description(inc, text, sizeof(text));
    v = json_pack("{s:[{s:s,s:O}],s:O,s:[{s:s,s:s,s:s}],s:O,s:o,s:o}", "ids", "system_name",
                  "keybroker incident", "text", json_object_get(inc, "id"), "title",
                  json_object_get(inc, "title"), "notes", "category", "description", "title",
                  "Component", "text", text, "product_status", status, "remediations",
                  remediations(report, ids), "threats", threats(report));
    if (v != NULL && json_is_string(json_object_get(inc, "cve")))
        json_object_set(v, "cve", json_object_get(inc, "cve"));
    return v;
}

kbr_err kbd_csaf(const json_t *report, const char *publisher, const char *namespace, json_t **out)
{
    kbr_err err = KBR_OK;
    const json_t *inc = json_object_get(report, "incident");
    const char *stage = str_of(report, "stage"), *at = str_of(report, "generated_at");
    json_t *vendor = NULL, *status = json_object(), *ids = json_array(), *vuln = NULL;
    char tracking[300], title[700], summary[1024];

    *out = NULL;
    KBR_ENSURE(str_of(report, "format") != NULL &&
                   strcmp(str_of(report, "format"), REPORT_FORMAT) == 0 && stage != NULL &&
                   at != NULL && inc != NULL,
               KBR_ERR_BAD_REQUEST);
    vendor = json_pack("{s:s,s:s,s:[]}", "category", "vendor", "name", publisher, "branches");
    KBR_ENSURE(vendor != NULL && status != NULL && ids != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(product_status(report, vendor, status, ids));
    if (json_array_size(ids) == 0)
        KBR_GUARD(nothing_affected(report, vendor, status, ids));
    vuln = vulnerability(report, status, ids);
    KBR_ENSURE(vuln != NULL, KBR_ERR_NOMEM);
    snprintf(tracking, sizeof(tracking), "%s-%s", str_of(inc, "id"), stage);
    snprintf(title, sizeof(title), "%s (%s)", str_of(inc, "title"), stage);
    snprintf(summary, sizeof(summary),
             "The %s report of incident %s under Art. 14 of Regulation (EU) 2024/2847, made by "
             "%s at %s.",
             stage, str_of(inc, "id"), str_of(report, "broker"), at);
    *out = json_pack("{s:{s:s,s:s,s:{s:s},s:{s:s,s:s,s:s},s:s,s:[{s:s,s:s,s:s}],"
                     "s:{s:s,s:s,s:s,s:[{s:s,s:s,s:s}],s:s,s:s}},s:{s:[O]},s:[o]}",
                     "document", "category", "csaf_vex", "csaf_version", "2.0",
                     "aggregate_severity", "text", str_of(inc, "severity"), "publisher", "category",
                     "vendor", "name", publisher, "namespace", namespace, "title", title, "notes",
                     "category", "summary", "title", "Summary", "text", summary, "tracking", "id",
                     tracking, "initial_release_date", at, "current_release_date", at,
                     "revision_history", "date", at, "number", "1", "summary", "Initial version.",
                     "status", strcmp(stage, "final") == 0 ? "final" : "interim", "version", "1",
                     "product_tree", "branches", vendor, "vulnerabilities", vuln);
    vuln = NULL;
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(vuln);
    json_decref(ids);
    json_decref(status);
    json_decref(vendor);
    return err;
}
