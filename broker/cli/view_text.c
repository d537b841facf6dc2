/*
 * view_text.c - the custody views as a person reads them: sections of aligned tables (View A
 * product, B custody, C exposure with its markets, devices and remediation, D device), and
 * the pending devices as CSV.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kbr_cra.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Enough hex of a SHA-256 fingerprint to tell certificates apart in a table. */
#define VIEW_FP_SHOWN 16

/* ---- text: shared pieces ---- */

typedef kbr_err (*view_writer)(FILE *f, const json_t *view);

/* Runs w into a new string. */
static kbr_err view_render(view_writer w, const json_t *view, char **out)
{
    kbr_err err = KBR_OK;
    cli_text t = {0};

    KBR_ENSURE(json_is_object(view), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(cli_text_open(&t));
    KBR_GUARD(w(t.f, view));
out:
    return cli_text_close(&t, err, out);
}

/* "\ntitle:" then the table, or "\ntitle: none"; titles may carry server text. */
static kbr_err view_section(FILE *f, const char *title, const json_t *rows, const cli_column *cols,
                            size_t ncols)
{
    kbr_err err = KBR_OK;
    char *table = NULL;

    KBR_ENSURE(json_is_array(rows), KBR_ERR_BAD_REQUEST);
    fputc('\n', f);
    cli_term_put(f, title, CLI_TERM_LINE);
    if (json_array_size(rows) == 0) {
        fputs(": none\n", f);
        goto out;
    }
    KBR_GUARD(cli_table_from_json(rows, cols, ncols, &table));
    fprintf(f, ":\n%s", table);
out:
    free(table);
    return err;
}

static kbr_err view_fields(FILE *f, const json_t *obj, const cli_column *cols, size_t ncols)
{
    char *table = NULL;
    kbr_err err = cli_fields_from_json(obj, cols, ncols, &table);

    if (err == KBR_OK)
        fputs(table, f);
    free(table);
    return err;
}

static const char *view_yes_no(const json_t *b)
{
    if (json_is_boolean(b))
        return json_is_true(b) ? "yes" : "no";
    return NULL;
}

static json_t *view_borrow(const json_t *obj, const char *path)
{
    /* json_pack's "O" only takes a reference; jansson has no const API for it. */
    return (json_t *)cli_json_path(obj, path);
}

static kbr_err view_append(json_t *rows, json_t *row)
{
    return row != NULL && json_array_append_new(rows, row) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

/* A section whose rows are made one per item of an array by row(). */
static kbr_err view_mapped_section(FILE *f, const char *title, const json_t *items,
                                   json_t *(*row)(const json_t *), const cli_column *cols,
                                   size_t ncols)
{
    kbr_err err = KBR_OK;
    json_t *rows = json_array();
    const json_t *item;
    size_t i;

    KBR_ENSURE(rows != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_is_array(items), KBR_ERR_BAD_REQUEST);
    json_array_foreach(items, i, item) KBR_GUARD(view_append(rows, row(item)));
    KBR_GUARD(view_section(f, title, rows, cols, ncols));
out:
    json_decref(rows);
    return err;
}

/* ---- view product ---- */

static json_t *view_key_row(const char *purpose, const json_t *key)
{
    const json_t *hsm = json_object_get(key, "hsm");
    bool present = json_is_true(json_object_get(hsm, "present"));

    return json_pack("{s:s, s:O?, s:O?, s:O?, s:O?, s:s, s:s?, s:s?, s:I}", "purpose", purpose,
                     "name", view_borrow(key, "name"), "algorithm", view_borrow(key, "algorithm"),
                     "state", view_borrow(key, "state"), "not_after",
                     view_borrow(key, "certificate.not_after"), "hsm",
                     present ? "present" : "MISSING", "sensitive",
                     view_yes_no(json_object_get(hsm, "sensitive")), "extractable",
                     view_yes_no(json_object_get(hsm, "extractable")), "live_tokens",
                     (json_int_t)json_array_size(json_object_get(key, "live_tokens")));
}

static kbr_err view_key_rows(const json_t *keys, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *rows = json_array(), *list;
    const char *purpose;
    const json_t *key;
    size_t i;

    *out = NULL;
    KBR_ENSURE(rows != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_is_object(keys), KBR_ERR_BAD_REQUEST);
    json_object_foreach((json_t *)keys, purpose, list)
    {
        KBR_ENSURE(json_is_array(list), KBR_ERR_BAD_REQUEST);
        json_array_foreach(list, i, key) KBR_GUARD(view_append(rows, view_key_row(purpose, key)));
    }
    *out = rows;
    rows = NULL;
out:
    json_decref(rows);
    return err;
}

static kbr_err view_product_keys(FILE *f, const json_t *view)
{
    static const cli_column cols[] = {
        {"PURPOSE", "purpose"},          {"NAME", "name"},
        {"ALGORITHM", "algorithm"},      {"STATE", "state"},
        {"CERT_NOT_AFTER", "not_after"}, {"HSM", "hsm"},
        {"SENSITIVE", "sensitive"},      {"EXTRACTABLE", "extractable"},
        {"LIVE_TOKENS", "live_tokens"},
    };
    json_t *rows = NULL;
    kbr_err err = view_key_rows(json_object_get(view, "keys"), &rows);

    if (err == KBR_OK)
        err = view_section(f, "keys by purpose", rows, cols, N_ELEMS(cols));
    json_decref(rows);
    return err;
}

static kbr_err view_product_certs(FILE *f, const json_t *view)
{
    static const cli_column cols[] = {{"EXPIRY_MONTH", "month"}, {"COUNT", "count"}};
    const json_t *dc = json_object_get(view, "device_certificates");
    const json_t *total = json_object_get(dc, "total_current");
    char title[96];

    if (!json_is_integer(total))
        return KBR_ERR_BAD_REQUEST;
    snprintf(title, sizeof(title), "device certificates (%" JSON_INTEGER_FORMAT " current)",
             json_integer_value(total));
    return view_section(f, title, json_object_get(dc, "by_expiry_month"), cols, N_ELEMS(cols));
}

static kbr_err view_expiring_devices(FILE *f, const json_t *dc)
{
    static const cli_column cols[] = {
        {"PRODUCT", "product"},
        {"SERIAL", "serial"},
        {"SERIAL_NUMBER", "serial_number"},
        {"NOT_AFTER", "not_after"},
    };
    const json_t *count = json_object_get(dc, "count"), *first = json_object_get(dc, "first");
    char title[128];

    if (!json_is_integer(count) || !json_is_array(first))
        return KBR_ERR_BAD_REQUEST;
    snprintf(title, sizeof(title), "expiring device certificates (%" JSON_INTEGER_FORMAT,
             json_integer_value(count));
    /* the broker lists the first 100 by not_after; the count is of all of them */
    if ((json_int_t)json_array_size(first) < json_integer_value(count))
        snprintf(title + strlen(title), sizeof(title) - strlen(title), ", the first %zu shown",
                 json_array_size(first));
    snprintf(title + strlen(title), sizeof(title) - strlen(title), ")");
    return view_section(f, title, first, cols, N_ELEMS(cols));
}

static kbr_err view_product_expiring(FILE *f, const json_t *view)
{
    static const cli_column key_cols[] = {
        {"KEY", "key"},
        {"PURPOSE", "purpose"},
        {"SERIAL_NUMBER", "serial_number"},
        {"NOT_AFTER", "not_after"},
    };
    static const cli_column tok_cols[] = {
        {"JTI", "jti"}, {"SUB", "sub"}, {"EXPIRES_AT", "expires_at"}, {"KEYS", "keys"}};
    kbr_err err = KBR_OK;
    const json_t *exp = json_object_get(view, "expiring");
    const char *until = cli_json_str(exp, "until");
    const json_t *days = json_object_get(exp, "within_days");

    if (exp == NULL)
        goto out;
    KBR_ENSURE(until != NULL && json_is_integer(days), KBR_ERR_BAD_REQUEST);
    fprintf(f, "\nexpiring within %" JSON_INTEGER_FORMAT " days (until ", json_integer_value(days));
    cli_term_put(f, until, CLI_TERM_LINE);
    fputs(")\n", f);
    KBR_GUARD(view_section(f, "expiring key certificates", json_object_get(exp, "key_certificates"),
                           key_cols, N_ELEMS(key_cols)));
    KBR_GUARD(view_expiring_devices(f, json_object_get(exp, "device_certificates")));
    KBR_GUARD(view_section(f, "expiring tokens", json_object_get(exp, "tokens"), tok_cols,
                           N_ELEMS(tok_cols)));
out:
    return err;
}

static kbr_err view_product_unregistered(FILE *f, const json_t *view)
{
    static const cli_column cols[] = {
        {"LABEL", "label"},
        {"ID", "id"},
        {"CLASS", "class"},
        {"KEY_TYPE", "key_type"},
    };
    const json_t *objs = json_object_get(view, "unregistered_hsm_objects");

    /* The ledger alone (no HSM behind the answer) has nothing to say here. */
    if (objs == NULL)
        return KBR_OK;
    return view_section(f, "unregistered HSM objects", objs, cols, N_ELEMS(cols));
}

/* The support period (Art. 13(8)) and what lapses within it; nothing for a product without one. */
static kbr_err view_product_support(FILE *f, const json_t *view)
{
    static const cli_column cols[] = {
        {"LAPSES", "when"}, {"WHAT", "kind"}, {"KEY", "key"}, {"DETAIL", "detail"}};
    kbr_err err = KBR_OK;
    const json_t *sup = json_object_get(view, "support");
    const json_t *items = json_object_get(view, "continuity"), *it;
    json_t *rows = NULL;
    size_t i;

    if (!json_is_object(sup))
        goto out;
    fputs("\nsupported from ", f);
    cli_term_put(f, cli_json_str(sup, "placed_on_market"), CLI_TERM_LINE);
    fputs(" to ", f);
    cli_term_put(f, cli_json_str(sup, "support_until"), CLI_TERM_LINE);
    fprintf(f, " (%" JSON_INTEGER_FORMAT " years)%s\n",
            json_integer_value(cli_json_path(sup, "support_period.years")),
            json_is_true(cli_json_path(sup, "support_period.under_five_years"))
                ? ": UNDER FIVE YEARS, allowed only for a product expected in use for less "
                  "(Art. 13(8))"
                : "");
    rows = json_array();
    KBR_ENSURE(rows != NULL && json_is_array(items),
               rows == NULL ? KBR_ERR_NOMEM : KBR_ERR_BAD_REQUEST);
    json_array_foreach(items, i, it)
    {
        const char *kind = cli_json_str(it, "kind");
        const json_t *when = json_object_get(it, "not_after");
        char detail[160] = "";

        if (kind != NULL && strcmp(kind, "issuer-certificate") == 0)
            snprintf(detail, sizeof(detail), "%.150s", cli_json_str(it, "subject"));
        else if (kind != NULL && strcmp(kind, "algorithm") == 0)
            snprintf(detail, sizeof(detail), "%.40s: %.110s", cli_json_str(it, "algorithm"),
                     cli_json_str(it, "source"));
        else if (kind != NULL && strcmp(kind, "device-certificates") == 0)
            snprintf(detail, sizeof(detail), "%" JSON_INTEGER_FORMAT " certificates, the first",
                     json_integer_value(json_object_get(it, "count")));
        KBR_GUARD(view_append(
            rows,
            json_pack("{s:O?,s:O?,s:O?,s:s}", "when",
                      when != NULL ? (json_t *)when : view_borrow(it, "usable_until"), "kind",
                      view_borrow(it, "kind"), "key", view_borrow(it, "key"), "detail", detail)));
    }
    KBR_GUARD(view_section(f, "lapses within the support period", rows, cols, N_ELEMS(cols)));
out:
    json_decref(rows);
    return err;
}

static kbr_err view_product_write(FILE *f, const json_t *view)
{
    kbr_err err = KBR_OK;
    const char *product = cli_json_str(view, "product");

    KBR_ENSURE(product != NULL, KBR_ERR_BAD_REQUEST);
    fputs("product ", f);
    cli_term_put(f, product, CLI_TERM_LINE);
    fputc('\n', f);
    KBR_GUARD(view_product_support(f, view));
    KBR_GUARD(view_product_keys(f, view));
    KBR_GUARD(view_product_certs(f, view));
    KBR_GUARD(view_product_expiring(f, view));
    KBR_GUARD(view_product_unregistered(f, view));
out:
    return err;
}

kbr_err cli_view_product_text(const json_t *view, char **out)
{
    return view_render(view_product_write, view, out);
}

/* ---- view custody ---- */

static void view_hsm_line(FILE *f, const json_t *hsm)
{
    static const char *const facts[] = {"sensitive", "extractable", "local", "never_extractable",
                                        "always_sensitive"};
    const char *label = cli_json_str(hsm, "label"), *id = cli_json_str(hsm, "id");

    fputs("\nhsm: label ", f);
    cli_term_put(f, label != NULL ? label : "-", CLI_TERM_LINE);
    if (!json_is_true(json_object_get(hsm, "present"))) {
        fputs(", MISSING: the HSM holds no key with this label\n", f);
        return;
    }
    fputs(", id ", f);
    cli_term_put(f, id != NULL ? id : "-", CLI_TERM_LINE);
    for (size_t i = 0; i < N_ELEMS(facts); i++) {
        const char *v = view_yes_no(json_object_get(hsm, facts[i]));
        fprintf(f, ", %s %s", facts[i], v != NULL ? v : "-");
    }
    fputc('\n', f);
}

/* Principals holding a live grant first, whatever order the response has. */
static kbr_err view_principal_rows(const json_t *principals, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *rows = json_array();
    const json_t *p;
    size_t i;

    *out = NULL;
    KBR_ENSURE(rows != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_is_array(principals), KBR_ERR_BAD_REQUEST);
    for (int live = 1; live >= 0; live--)
        json_array_foreach(principals, i, p)
        {
            if (json_is_true(json_object_get(p, "live_grant")) != (live == 1))
                continue;
            KBR_GUARD(view_append(rows, json_pack("{s:O?, s:s}", "sub", view_borrow(p, "sub"),
                                                  "live_grant", live ? "yes" : "no")));
        }
    *out = rows;
    rows = NULL;
out:
    json_decref(rows);
    return err;
}

static kbr_err view_custody_tables(FILE *f, const json_t *view)
{
    static const cli_column tok_cols[] = {
        {"JTI", "jti"},
        {"SUB", "sub"},
        {"ISSUED_AT", "issued_at"},
        {"EXPIRES_AT", "expires_at"},
        {"REVOKED_AT", "revoked_at"},
        {"USES", "uses"},
        {"LAST_USED_AT", "last_used_at"},
        {"ISSUED_BY", "issued_by"},
    };
    static const cli_column op_cols[] = {
        {"SUB", "sub"},     {"OP", "op"},           {"OUTCOME", "outcome"},
        {"COUNT", "count"}, {"LAST_AT", "last_at"},
    };
    static const cli_column pr_cols[] = {{"SUB", "sub"}, {"LIVE_GRANT", "live_grant"}};
    kbr_err err = KBR_OK;
    json_t *principals = NULL;

    KBR_GUARD(
        view_section(f, "tokens", json_object_get(view, "tokens"), tok_cols, N_ELEMS(tok_cols)));
    KBR_GUARD(view_section(f, "operations", json_object_get(view, "operations"), op_cols,
                           N_ELEMS(op_cols)));
    KBR_GUARD(view_principal_rows(json_object_get(view, "principals"), &principals));
    KBR_GUARD(view_section(f, "principals", principals, pr_cols, N_ELEMS(pr_cols)));
out:
    json_decref(principals);
    return err;
}

static kbr_err view_custody_write(FILE *f, const json_t *view)
{
    static const cli_column fields[] = {
        {"key", "key"},     {"purpose", "purpose"},   {"algorithm", "algorithm"},
        {"state", "state"}, {"products", "products"},
    };
    kbr_err err = KBR_OK;

    KBR_ENSURE(cli_json_str(view, "key") != NULL, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(view_fields(f, view, fields, N_ELEMS(fields)));
    view_hsm_line(f, json_object_get(view, "hsm"));
    KBR_GUARD(view_custody_tables(f, view));
out:
    return err;
}

kbr_err cli_view_custody_text(const json_t *view, char **out)
{
    return view_render(view_custody_write, view, out);
}

/* ---- view exposure ---- */

/* "openssl@3.0.1, zlib@1.3.1": what matched in one build's SBOM. */
static kbr_err view_matched(const json_t *components, char **out)
{
    kbr_err err = KBR_OK;
    cli_text t = {0};
    size_t i;
    const json_t *c;

    KBR_GUARD(cli_text_open(&t));
    json_array_foreach(components, i, c)
    {
        const char *name = cli_json_str(c, "name"), *version = cli_json_str(c, "version");
        fprintf(t.f, "%s%s@%s", i > 0 ? ", " : "", name != NULL ? name : "?",
                version != NULL ? version : "?");
    }
out:
    return cli_text_close(&t, err, out);
}

static json_t *view_build_row(const json_t *build)
{
    char *matched = NULL;
    json_t *row = NULL;

    if (view_matched(json_object_get(build, "components"), &matched) != KBR_OK)
        return NULL;
    row = json_pack("{s:O?, s:O?, s:O?, s:s}", "product", view_borrow(build, "product"), "version",
                    view_borrow(build, "version"), "signed_at", view_borrow(build, "signed_at"),
                    "matched", matched);
    free(matched);
    return row;
}

static kbr_err view_exposure_builds(FILE *f, const json_t *builds)
{
    static const cli_column cols[] = {
        {"PRODUCT", "product"},
        {"VERSION", "version"},
        {"SIGNED_AT", "signed_at"},
        {"MATCHED", "matched"},
    };

    return view_mapped_section(f, "builds", builds, view_build_row, cols, N_ELEMS(cols));
}

/* Text options of `view exposure`, for the writers below. */
typedef struct {
    bool eu, by_market;
} exposure_text;

static const exposure_text *exposure_opts; /* set around one render, on one thread */

/* One row per market, then the EU total: a device counts once there however many EU markets. */
static kbr_err view_market_rows(const json_t *devices, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *rows = json_array(), *n;
    const json_t *by_market = json_object_get(devices, "by_market");
    const char *market;

    *out = NULL;
    KBR_ENSURE(rows != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_is_object(by_market) && json_is_integer(json_object_get(devices, "eu")),
               KBR_ERR_BAD_REQUEST);
    json_object_foreach((json_t *)by_market, market, n)
    {
        if (exposure_opts->eu && !kbr_market_is_eu(market))
            continue;
        KBR_GUARD(view_append(rows, json_pack("{s:s, s:O}", "market", market, "devices", n)));
    }
    KBR_GUARD(view_append(rows, json_pack("{s:s, s:O}", "market", "EU total", "devices",
                                          json_object_get(devices, "eu"))));
    *out = rows;
    rows = NULL;
out:
    json_decref(rows);
    return err;
}

/* Every figure per market: running now, ever affected, and with a fix updated and pending. */
static json_t *market_row(const char *market, const json_t *running, const json_t *affected,
                          const json_t *rem)
{
    return json_pack("{s:s,s:O?,s:O?,s:O?,s:O?}", "market", market, "running", running, "affected",
                     affected, "updated", json_object_get(rem, "updated"), "pending",
                     json_object_get(rem, "pending"));
}

static kbr_err view_by_market(FILE *f, const json_t *view)
{
    static const cli_column cols[] = {{"MARKET", "market"},
                                      {"RUNNING", "running"},
                                      {"AFFECTED", "affected"},
                                      {"UPDATED", "updated"},
                                      {"PENDING", "pending"}};
    kbr_err err = KBR_OK;
    const json_t *devices = json_object_get(view, "devices");
    const json_t *affected = json_object_get(view, "affected");
    const json_t *rem = json_object_get(view, "remediation");
    const json_t *aff_by = json_object_get(affected, "by_market"), *n;
    json_t *rows = json_array();
    const char *market;

    KBR_ENSURE(rows != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_is_object(aff_by), KBR_ERR_BAD_REQUEST);
    json_object_foreach((json_t *)aff_by, market, n)
    {
        if (exposure_opts->eu && !kbr_market_is_eu(market))
            continue;
        KBR_GUARD(view_append(
            rows, market_row(market, json_object_get(json_object_get(devices, "by_market"), market),
                             n, json_object_get(json_object_get(rem, "by_market"), market))));
    }
    KBR_GUARD(
        view_append(rows, market_row("EU total", json_object_get(devices, "eu"),
                                     json_object_get(affected, "eu"), json_object_get(rem, "eu"))));
    if (!exposure_opts->eu)
        json_object_foreach((json_t *)json_object_get(affected, "invalid_markets"), market, n)
        {
            char label[64];
            snprintf(label, sizeof(label), "%.8s (no country)", market);
            KBR_GUARD(view_append(
                rows,
                market_row(label,
                           json_object_get(json_object_get(devices, "invalid_markets"), market), n,
                           json_object_get(json_object_get(rem, "invalid_markets"), market))));
        }
    KBR_GUARD(view_section(f, "by market", rows, cols, N_ELEMS(cols)));
out:
    json_decref(rows);
    return err;
}

static kbr_err view_exposure_devices(FILE *f, const json_t *view)
{
    static const cli_column cols[] = {{"MARKET", "market"}, {"DEVICES", "devices"}};
    kbr_err err = KBR_OK;
    json_t *rows = NULL;
    const json_t *devices = json_object_get(view, "devices");
    const json_t *current = json_object_get(devices, "current");
    const json_t *affected = json_object_get(view, "affected");

    KBR_ENSURE(json_is_integer(current), KBR_ERR_BAD_REQUEST);
    if (exposure_opts->eu)
        fprintf(f, "\ndevices in the EU now running an affected build: %" JSON_INTEGER_FORMAT "\n",
                json_integer_value(json_object_get(devices, "eu")));
    else
        fprintf(f, "\ndevices now running an affected build: %" JSON_INTEGER_FORMAT "\n",
                json_integer_value(current));
    if (affected != NULL)
        fprintf(f, "devices%s that ever ran one: %" JSON_INTEGER_FORMAT "\n",
                exposure_opts->eu ? " in the EU" : "",
                json_integer_value(json_object_get(affected, exposure_opts->eu ? "eu" : "total")));
    if (exposure_opts->by_market) {
        KBR_GUARD(view_by_market(f, view));
        goto out;
    }
    KBR_GUARD(view_market_rows(devices, &rows));
    KBR_GUARD(view_section(f, "by market", rows, cols, N_ELEMS(cols)));
out:
    json_decref(rows);
    return err;
}

static kbr_err view_exposure_undecided(FILE *f, const json_t *view)
{
    static const cli_column cols[] = {{"PRODUCT", "product"},
                                      {"VERSION", "version"},
                                      {"COMPONENT", "component.name"},
                                      {"ITS_VERSION", "component.version"},
                                      {"WHY", "reason"}};
    const json_t *u = json_object_get(view, "undecided");

    /* builds that carry the component with a version the question cannot place: not counted */
    if (json_array_size(u) == 0)
        return KBR_OK;
    return view_section(f, "undecided builds (not counted)", u, cols, N_ELEMS(cols));
}

static kbr_err view_exposure_remediation(FILE *f, const json_t *view)
{
    static const char *const counts[] = {"affected", "updated", "pending"};
    const json_t *rem = json_object_get(view, "remediation");
    const char *fixed = cli_json_str(view, "query.fixed_version");

    if (rem == NULL)
        return KBR_OK;
    if (exposure_opts->eu)
        rem = json_object_get(rem, "eu");
    fputs(exposure_opts->eu ? "\nremediation in the EU to " : "\nremediation to ", f);
    cli_term_put(f, fixed != NULL ? fixed : "the fixed version", CLI_TERM_LINE);
    fputc(':', f);
    for (size_t i = 0; i < N_ELEMS(counts); i++) {
        const json_t *n = json_object_get(rem, counts[i]);
        if (!json_is_integer(n))
            return KBR_ERR_BAD_REQUEST;
        fprintf(f, "%s %" JSON_INTEGER_FORMAT " %s", i > 0 ? "," : "", json_integer_value(n),
                counts[i]);
    }
    fputc('\n', f);
    return KBR_OK;
}

static kbr_err view_exposure_page(FILE *f, const json_t *view, const char *member,
                                  const char *title)
{
    static const cli_column cols[] = {
        {"PRODUCT", "product"}, {"SERIAL", "serial"}, {"CURRENT_FIRMWARE", "current_firmware"},
        {"BATCH", "batch"},     {"STATUS", "status"},
    };
    kbr_err err = KBR_OK;
    const json_t *page = json_object_get(view, member);
    const char *next = cli_json_str(page, "next_after");
    /* the status column only where the broker says it (a fix given, every device listed) */
    size_t ncols = json_object_get(json_array_get(json_object_get(page, "items"), 0), "status")
                       ? N_ELEMS(cols)
                       : N_ELEMS(cols) - 1;

    if (page == NULL)
        goto out;
    KBR_GUARD(view_section(f, title, json_object_get(page, "items"), cols, ncols));
    if (next != NULL) {
        fputs("more: --after ", f);
        cli_term_put(f, next, CLI_TERM_LINE);
        fputc('\n', f);
    }
out:
    return err;
}

static void view_exposure_query(FILE *f, const json_t *q)
{
    static const char *const parts[] = {"component", "purl", "vers", "product", "fixed_version"};
    char *versions = NULL;

    fputs("exposure to", f);
    for (size_t i = 0; i < N_ELEMS(parts); i++) {
        const char *v = cli_json_str(q, parts[i]);
        if (v == NULL)
            continue;
        fprintf(f, " %s ", parts[i]);
        cli_term_put(f, v, CLI_TERM_LINE);
        if (i <= 1 && cli_json_cell(json_object_get(q, "versions"), &versions) == KBR_OK &&
            versions != NULL) {
            fputs(" versions ", f);
            cli_term_put(f, versions, CLI_TERM_LINE);
        }
    }
    fputc('\n', f);
    free(versions);
}

static kbr_err view_exposure_write(FILE *f, const json_t *view)
{
    kbr_err err = KBR_OK;

    view_exposure_query(f, json_object_get(view, "query"));
    KBR_GUARD(view_exposure_builds(f, json_object_get(view, "builds")));
    KBR_GUARD(view_exposure_undecided(f, view));
    KBR_GUARD(view_exposure_devices(f, view));
    KBR_GUARD(view_exposure_remediation(f, view));
    KBR_GUARD(view_exposure_page(f, view, "pending_devices", "pending devices"));
    KBR_GUARD(view_exposure_page(f, view, "affected_devices", "affected devices"));
out:
    return err;
}

kbr_err cli_view_exposure_text_opts(const json_t *view, bool eu, bool by_market, char **out)
{
    exposure_text opts = {.eu = eu, .by_market = by_market};
    kbr_err err;

    exposure_opts = &opts;
    err = view_render(view_exposure_write, view, out);
    exposure_opts = NULL;
    return err;
}

kbr_err cli_view_exposure_text(const json_t *view, char **out)
{
    return cli_view_exposure_text_opts(view, false, false, out);
}

/* ---- view exposure --csv ---- */

/*
 * The CSV is data for a campaign tool, so it is not escaped: a field holding
 * what the terminal would act on (a control but CR and LF, which are quoted,
 * a bidi control, bytes that are not UTF-8) is refused instead.
 */
static bool view_csv_safe(const char *s)
{
    return cli_term_plain(s, "\r\n");
}

static void view_csv_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static kbr_err view_csv_row(FILE *f, const json_t *item)
{
    static const char *const fields[] = {"product", "serial", "current_firmware", "batch"};
    const char *vals[N_ELEMS(fields)];

    for (size_t i = 0; i < N_ELEMS(fields); i++) {
        const json_t *v = json_object_get(item, fields[i]);
        /* product and serial name the device; the other two may be unknown */
        if (!json_is_string(v) && (i < 2 || !json_is_null(v)))
            return KBR_ERR_BAD_REQUEST;
        vals[i] = json_is_string(v) ? json_string_value(v) : "";
        if (!view_csv_safe(vals[i]))
            return KBR_ERR_BAD_REQUEST;
    }
    for (size_t i = 0; i < N_ELEMS(fields); i++) {
        if (i > 0)
            fputc(',', f);
        view_csv_field(f, vals[i]);
    }
    fputc('\n', f);
    return KBR_OK;
}

kbr_err cli_view_pending_csv(const json_t *items, bool header, char **out)
{
    kbr_err err = KBR_OK;
    cli_text t = {0};
    size_t i;
    const json_t *item;

    KBR_ENSURE(json_is_array(items), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(cli_text_open(&t));
    if (header)
        fputs(CLI_VIEW_CSV_HEADER, t.f);
    json_array_foreach(items, i, item) KBR_GUARD(view_csv_row(t.f, item));
out:
    return cli_text_close(&t, err, out);
}

/* ---- view device ---- */

static json_t *view_cert_row(const json_t *cert)
{
    const char *fp = cli_json_str(cert, "fingerprint");
    char shown[VIEW_FP_SHOWN + sizeof("\u2026")];

    /* U+2026 marks the cut; the audit entry and --json have the whole fingerprint. */
    if (fp != NULL && strlen(fp) > VIEW_FP_SHOWN)
        snprintf(shown, sizeof(shown), "%.*s\u2026", VIEW_FP_SHOWN, fp);
    else
        snprintf(shown, sizeof(shown), "%s", fp != NULL ? fp : "-");
    return json_pack(
        "{s:O?, s:s, s:O?, s:O?, s:O?}", "serial_number", view_borrow(cert, "serial_number"),
        "fingerprint", shown, "not_after", view_borrow(cert, "not_after"), "superseded_at",
        view_borrow(cert, "superseded_at"), "audit_seq", view_borrow(cert, "audit_seq"));
}

static kbr_err view_device_certs(FILE *f, const json_t *certs)
{
    static const cli_column cols[] = {
        {"SERIAL_NUMBER", "serial_number"}, {"FINGERPRINT", "fingerprint"},
        {"NOT_AFTER", "not_after"},         {"SUPERSEDED_AT", "superseded_at"},
        {"AUDIT_SEQ", "audit_seq"},
    };

    return view_mapped_section(f, "certificates", certs, view_cert_row, cols, N_ELEMS(cols));
}

static kbr_err view_device_write(FILE *f, const json_t *view)
{
    static const cli_column fields[] = {
        {"serial", "serial"},
        {"product", "product"},
        {"batch", "batch"},
        {"factory", "factory"},
        {"markets", "markets"},
        {"provisioned_at", "provisioned_at"},
        {"factory_firmware", "firmware_version"},
        {"current_firmware", "current_firmware"},
        {"current_firmware_at", "current_firmware_at"},
    };
    static const cli_column fw_cols[] = {
        {"AT", "at"},
        {"VERSION", "version"},
        {"STATUS", "status"},
        {"CAMPAIGN", "campaign"},
        {"AUDIT_SEQ", "audit_seq"},
    };
    static const cli_column dbg_cols[] = {
        {"AT", "at"},
        {"KEY", "key"},
        {"TICKET", "ticket"},
        {"PRINCIPAL", "principal"},
        {"PERMISSIONS", "permissions"},
        {"EXPIRES_AT", "expires_at"},
        {"AUDIT_SEQ", "audit_seq"},
    };
    kbr_err err = KBR_OK;

    KBR_ENSURE(cli_json_str(view, "serial") != NULL, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(view_fields(f, view, fields, N_ELEMS(fields)));
    KBR_GUARD(view_device_certs(f, json_object_get(view, "certificates")));
    KBR_GUARD(view_section(f, "firmware history", json_object_get(view, "firmware"), fw_cols,
                           N_ELEMS(fw_cols)));
    KBR_GUARD(view_section(f, "debug unlocks", json_object_get(view, "debug_auth"), dbg_cols,
                           N_ELEMS(dbg_cols)));
out:
    return err;
}

kbr_err cli_view_device_text(const json_t *view, char **out)
{
    return view_render(view_device_write, view, out);
}
