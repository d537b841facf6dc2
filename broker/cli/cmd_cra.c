/*
 * cmd_cra.c - keybroker product create|show and keybroker incident
 * create|list|show|fix|report|document|chart: the Cyber Resilience Act's support periods and
 * Art. 14 incidents (docs/cra.md).  Every command that shows an incident shows its three
 * clocks as a person reads them on a Saturday morning: the time left, or how long overdue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "kbr_cra.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- clocks ---- */

/* "2 d 4 h", "3 h 12 min", "45 min", "0 min" */
static void span(long long s, char *out, size_t n)
{
    long long m = s / 60, h = m / 60, d = h / 24;

    if (d > 0)
        snprintf(out, n, "%lld d %lld h", d, h % 24);
    else if (h > 0)
        snprintf(out, n, "%lld h %lld min", h, m % 60);
    else
        snprintf(out, n, "%lld min", m);
}

/* "2026-12-06 11:39Z" */
static void short_time(const char *t, char *out, size_t n)
{
    snprintf(out, n, "%.10s %.5sZ", t, strlen(t) >= 16 ? t + 11 : "");
}

kbr_err cli_clock_text(const json_t *dl, time_t now, char *out, size_t n)
{
    const char *status = cli_json_str(dl, "status"), *due = cli_json_str(dl, "due");
    const char *at = cli_json_str(dl, "submitted_at");
    char when[32], left[48];
    time_t due_t = 0, at_t = 0;

    if (status == NULL || (due != NULL && kbr_time_parse(due, &due_t) != KBR_OK) ||
        (at != NULL && kbr_time_parse(at, &at_t) != KBR_OK))
        return KBR_ERR_BAD_REQUEST;
    if (strcmp(status, "submitted") == 0 && at != NULL) {
        short_time(at, when, sizeof(when));
        if (due == NULL || at_t <= due_t) {
            snprintf(out, n, "submitted %s, on time", when);
        } else {
            span(at_t - due_t, left, sizeof(left));
            snprintf(out, n, "submitted %s, late by %s", when, left);
        }
        return KBR_OK;
    }
    if (due == NULL) {
        snprintf(out, n, "starts when the fix is recorded");
        return KBR_OK;
    }
    short_time(due, when, sizeof(when));
    if (strcmp(status, "overdue") == 0 || now > due_t) {
        span(now > due_t ? now - due_t : 0, left, sizeof(left));
        snprintf(out, n, "OVERDUE by %s (due %s)", left, when);
    } else {
        span(due_t - now, left, sizeof(left));
        snprintf(out, n, "due %s, %s left", when, left);
    }
    return KBR_OK;
}

static const char *const clock_names[][2] = {
    {"early_warning", "early warning (24 h)"},
    {"notification", "notification (72 h)"},
    {"final_report", "final report (fix + 14 d)"},
};

static kbr_err clocks(FILE *f, const json_t *inc, time_t now)
{
    const json_t *dls = json_object_get(inc, "deadlines");
    char text[160];

    for (size_t i = 0; i < N_ELEMS(clock_names); i++) {
        if (cli_clock_text(json_object_get(dls, clock_names[i][0]), now, text, sizeof(text)) !=
            KBR_OK)
            return KBR_ERR_BAD_REQUEST;
        fprintf(f, "  %-27s %s\n", clock_names[i][1], text);
    }
    if (!json_is_true(json_object_get(inc, "actively_exploited")))
        fputs("  (not actively exploited: Art. 14(1) does not require these reports; they are "
              "voluntary under Art. 15)\n",
              f);
    return KBR_OK;
}

/* ---- incident text ---- */

static kbr_err put_line(FILE *f, const char *label, const char *value)
{
    fprintf(f, "%-20s ", label);
    cli_term_put(f, value != NULL ? value : "-", CLI_TERM_LINE);
    fputc('\n', f);
    return KBR_OK;
}

/* {"DE": {affected, updated, pending}} or {"DE": n} of the member states as table rows. */
static kbr_err state_rows(const json_t *by_market, const json_t *eu, json_t **out)
{
    json_t *rows = json_array(), *v;
    const char *code;

    *out = NULL;
    if (rows == NULL)
        return KBR_ERR_NOMEM;
    json_object_foreach((json_t *)by_market, code, v)
    {
        if (!kbr_market_is_eu(code))
            continue;
        json_array_append_new(rows, json_is_object(v)
                                        ? json_pack("{s:s,s:O,s:O,s:O}", "state", code, "affected",
                                                    json_object_get(v, "affected"), "updated",
                                                    json_object_get(v, "updated"), "pending",
                                                    json_object_get(v, "pending"))
                                        : json_pack("{s:s,s:O}", "state", code, "affected", v));
    }
    if (eu != NULL)
        json_array_append_new(
            rows, json_is_object(eu) ? json_pack("{s:s,s:O,s:O,s:O}", "state", "EU total",
                                                 "affected", json_object_get(eu, "affected"),
                                                 "updated", json_object_get(eu, "updated"),
                                                 "pending", json_object_get(eu, "pending"))
                                     : json_pack("{s:s,s:O}", "state", "EU total", "affected", eu));
    *out = rows;
    return KBR_OK;
}

static kbr_err table(FILE *f, const char *title, const json_t *rows, const cli_column *cols,
                     size_t ncols)
{
    char *text = NULL;
    kbr_err err;

    fprintf(f, "\n%s", title);
    if (json_array_size(rows) == 0) {
        fputs(": none\n", f);
        return KBR_OK;
    }
    err = cli_table_from_json(rows, cols, ncols, &text);
    if (err == KBR_OK)
        fprintf(f, ":\n%s", text);
    free(text);
    return err;
}

static kbr_err incident_write(FILE *f, const json_t *inc, time_t now)
{
    static const cli_column aff_cols[] = {{"MEMBER_STATE", "state"}, {"AFFECTED", "affected"}};
    static const cli_column rem_cols[] = {{"MEMBER_STATE", "state"},
                                          {"AFFECTED", "affected"},
                                          {"UPDATED", "updated"},
                                          {"PENDING", "pending"}};
    static const cli_column rep_cols[] = {{"STAGE", "stage"},
                                          {"AT", "at"},
                                          {"BY", "by"},
                                          {"SHA256", "sha256"},
                                          {"ENTRY", "audit_seq"}};
    kbr_err err = KBR_OK;
    const json_t *at_awareness = json_object_get(inc, "exposure_at_awareness");
    const json_t *now_fig = json_object_get(inc, "now"), *fix = json_object_get(inc, "fix");
    json_t *rows = NULL;
    char *query = NULL, line[128];

    KBR_ENSURE(cli_json_str(inc, "id") != NULL && json_is_object(json_object_get(inc, "deadlines")),
               KBR_ERR_BAD_REQUEST);
    fputs("incident ", f);
    cli_term_put(f, cli_json_str(inc, "id"), CLI_TERM_LINE);
    fputs(": ", f);
    cli_term_put(f, cli_json_str(inc, "title"), CLI_TERM_LINE);
    fputc('\n', f);
    put_line(f, "product",
             json_is_string(json_object_get(inc, "product")) ? cli_json_str(inc, "product")
                                                             : "every product");
    KBR_GUARD(cli_json_cell(json_object_get(inc, "query"), &query));
    put_line(f, "component", cli_json_str(inc, "component"));
    put_line(f, "question", query);
    put_line(f, "cve", cli_json_str(inc, "cve"));
    put_line(f, "severity", cli_json_str(inc, "severity"));
    put_line(f, "actively exploited",
             json_is_true(json_object_get(inc, "actively_exploited")) ? "yes" : "no");
    put_line(f, "aware at", cli_json_str(inc, "aware_at"));
    if (json_is_object(fix)) {
        snprintf(line, sizeof(line), "%.64s, available since %.32s",
                 cli_json_str(fix, "fixed_version"), cli_json_str(fix, "available_at"));
        put_line(f, "fix", line);
    } else {
        put_line(f, "fix", "none recorded yet");
    }
    fputs("\nclocks:\n", f);
    KBR_GUARD(clocks(f, inc, now));
    KBR_GUARD(state_rows(
        json_object_get(json_object_get(at_awareness, "devices"), "affected") != NULL
            ? json_object_get(json_object_get(json_object_get(at_awareness, "devices"), "affected"),
                              "by_market")
            : NULL,
        json_object_get(json_object_get(json_object_get(at_awareness, "devices"), "affected"),
                        "eu"),
        &rows));
    snprintf(line, sizeof(line), "devices affected when recorded (%.32s)",
             cli_json_str(at_awareness, "as_of") != NULL ? cli_json_str(at_awareness, "as_of")
                                                         : "-");
    KBR_GUARD(table(f, line, rows, aff_cols, N_ELEMS(aff_cols)));
    json_decref(rows);
    rows = NULL;
    if (now_fig != NULL) {
        const json_t *rem = json_object_get(now_fig, "remediation");
        if (rem != NULL) {
            KBR_GUARD(
                state_rows(json_object_get(rem, "by_market"), json_object_get(rem, "eu"), &rows));
            snprintf(line, sizeof(line),
                     "remediation now: %" JSON_INTEGER_FORMAT " affected, %" JSON_INTEGER_FORMAT
                     " updated, %" JSON_INTEGER_FORMAT " pending",
                     json_integer_value(json_object_get(rem, "affected")),
                     json_integer_value(json_object_get(rem, "updated")),
                     json_integer_value(json_object_get(rem, "pending")));
            KBR_GUARD(table(f, line, rows, rem_cols, N_ELEMS(rem_cols)));
        } else {
            const json_t *aff = json_object_get(now_fig, "affected");
            KBR_GUARD(
                state_rows(json_object_get(aff, "by_market"), json_object_get(aff, "eu"), &rows));
            snprintf(line, sizeof(line), "devices affected now: %" JSON_INTEGER_FORMAT,
                     json_integer_value(json_object_get(aff, "total")));
            KBR_GUARD(table(f, line, rows, aff_cols, N_ELEMS(aff_cols)));
        }
    }
    KBR_GUARD(table(f, "reports", json_object_get(inc, "reports"), rep_cols, N_ELEMS(rep_cols)));
out:
    json_decref(rows);
    free(query);
    return err;
}

kbr_err cli_incident_text(const json_t *inc, time_t now, char **out)
{
    kbr_err err = KBR_OK;
    cli_text t = {0};

    KBR_ENSURE(json_is_object(inc), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(cli_text_open(&t));
    KBR_GUARD(incident_write(t.f, inc, now));
out:
    return cli_text_close(&t, err, out);
}

static kbr_err bad_response(cli_error *ce, kbr_err err)
{
    if (err != KBR_ERR_BAD_REQUEST)
        return err;
    return cli_fail(ce, err, "bad_response", "the broker's incident is not what it should be");
}

/* Prints an incident: its JSON with --json, else its text. */
static kbr_err show_incident(const cli_ctx *ctx, const json_t *inc, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *text = NULL;

    if (ctx->json)
        return cli_print_json(ctx->out, inc, ce);
    KBR_GUARD(bad_response(ce, cli_incident_text(inc, time(NULL), &text)));
    err = cli_print_text(ctx->out, text, ce); /* frees text */
    text = NULL;
out:
    free(text);
    return err;
}

/* ---- options ---- */

static kbr_err utf8(const char *opt, const char *v, kbr_msg *msg)
{
    json_t *s = v != NULL ? json_string(v) : NULL;
    bool ok = v == NULL || s != NULL;

    json_decref(s);
    return ok ? KBR_OK : kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s is not valid UTF-8", opt);
}

static kbr_err set_opt(json_t *body, const char *field, const char *opt, const cli_args *a,
                       kbr_msg *msg)
{
    const char *v = cli_args_str(a, opt);
    char dashed[64];

    snprintf(dashed, sizeof(dashed), "--%s", opt);
    if (v == NULL)
        return KBR_OK;
    if (utf8(dashed, v, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    return json_object_set_new(body, field, json_string(v)) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static bool date_form(const char *s)
{
    for (size_t i = 0; i < 10; i++)
        if (s[i] == '\0' || (i == 4 || i == 7 ? s[i] != '-' : s[i] < '0' || s[i] > '9'))
            return false;
    return s[10] == '\0';
}

/* The CLI checks the form; the broker has the last word on the calendar. */
static kbr_err date_opt(const cli_args *a, const char *opt, kbr_msg *msg)
{
    const char *v = cli_args_str(a, opt);

    if (v != NULL && !date_form(v))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--%s %s: a day written YYYY-MM-DD", opt, v);
    return KBR_OK;
}

kbr_err cli_product_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *body = json_object();

    *out = NULL;
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(date_opt(a, "placed-on-market", msg));
    KBR_GUARD(date_opt(a, "support-until", msg));
    KBR_GUARD(utf8("P", cli_args_pos(a, 0), msg));
    KBR_ENSURE(json_object_set_new(body, "product", json_string(cli_args_pos(a, 0))) == 0,
               KBR_ERR_NOMEM);
    KBR_GUARD(set_opt(body, "placed_on_market", "placed-on-market", a, msg));
    KBR_GUARD(set_opt(body, "support_until", "support-until", a, msg));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

static kbr_err exploited_opt(const cli_args *a, json_t *body, kbr_msg *msg)
{
    const char *v = cli_args_str(a, "actively-exploited");

    if (v == NULL || (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--actively-exploited yes|no is required: it decides the reporting duty");
    return json_object_set_new(body, "actively_exploited", json_boolean(strcmp(v, "yes") == 0)) == 0
               ? KBR_OK
               : KBR_ERR_NOMEM;
}

kbr_err cli_incident_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    static const char *const opts[][2] = {
        {"title", "title"}, {"component", "component"}, {"product", "product"},   {"purl", "purl"},
        {"vers", "vers"},   {"aware-at", "aware_at"},   {"severity", "severity"}, {"cve", "cve"},
    };
    kbr_err err = KBR_OK;
    json_t *body = json_object(), *versions = NULL;
    size_t nv = 0;
    const char *const *v = cli_args_list(a, "versions", &nv);

    *out = NULL;
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(utf8("ID", cli_args_pos(a, 0), msg));
    KBR_ENSURE(json_object_set_new(body, "id", json_string(cli_args_pos(a, 0))) == 0,
               KBR_ERR_NOMEM);
    for (size_t i = 0; i < N_ELEMS(opts); i++)
        KBR_GUARD(set_opt(body, opts[i][1], opts[i][0], a, msg));
    KBR_ENSURE(v == NULL || cli_args_str(a, "vers") == NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "give --versions or --vers, not both"));
    KBR_ENSURE(cli_args_str(a, "vers") == NULL || cli_args_str(a, "purl") != NULL ||
                   cli_args_str(a, "component") != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--vers needs --purl or --component"));
    if (v != NULL) {
        KBR_GUARD(cli_json_string_array(v, nv, &versions));
        KBR_ENSURE(json_object_set(body, "versions", versions) == 0, KBR_ERR_NOMEM);
    }
    KBR_GUARD(exploited_opt(a, body, msg));
    *out = body;
    body = NULL;
out:
    json_decref(versions);
    json_decref(body);
    return err;
}

/* ---- commands ---- */

static const cli_column product_fields[] = {
    {"product", "product"},
    {"placed_on_market", "placed_on_market"},
    {"support_until", "support_until"},
    {"support_years", "support_period.years"},
    {"support_days", "support_period.days"},
    {"under_five_years", "support_period.under_five_years"},
    {"audit_seq", "audit_seq"},
};

/* Art. 13(8): a support period under five years is allowed only for a product expected in use
 * for less; said on stderr, so that it is seen when the output is piped away. */
static void warn_short(const json_t *product)
{
    if (!json_is_true(cli_json_path(product, "support_period.under_five_years")))
        return;
    fputs("keybroker: warning: the support period of ", stderr);
    cli_term_put(stderr, cli_json_str(product, "product"), CLI_TERM_LINE);
    fputs(" is under five years: Art. 13(8) allows that only for a product expected to be in use "
          "for less\n",
          stderr);
}

static kbr_err product_create(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};
    kbr_msg msg = {{0}};

    err = cli_product_body(ctx->args, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/products", body, &resp, ce));
    warn_short(resp.body);
    KBR_GUARD(cli_show(ctx, resp.body, NULL, product_fields, N_ELEMS(product_fields), ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static kbr_err product_show(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    cli_response resp = {0};

    KBR_GUARD(cli_path_join(ctx->client, "/v1/products/", cli_args_pos(ctx->args, 0), NULL, &path));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    warn_short(resp.body);
    KBR_GUARD(cli_show(ctx, resp.body, NULL, product_fields, N_ELEMS(product_fields), ce));
out:
    cli_response_cleanup(&resp);
    free(path);
    return err;
}

static kbr_err incident_path(cli_ctx *ctx, const char *suffix, char **path)
{
    return cli_path_join(ctx->client, "/v1/incidents/", cli_args_pos(ctx->args, 0), suffix, path);
}

/* GET the incident and show it (after a change, so its clocks are shown as they now are). */
static kbr_err fetch_show(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    cli_response resp = {0};

    KBR_GUARD(incident_path(ctx, NULL, &path));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    KBR_GUARD(show_incident(ctx, resp.body, ce));
out:
    cli_response_cleanup(&resp);
    free(path);
    return err;
}

static kbr_err incident_create(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};
    kbr_msg msg = {{0}};

    err = cli_incident_body(ctx->args, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/incidents", body, &resp, ce));
    KBR_GUARD(show_incident(ctx, resp.body, ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static kbr_err incident_list(cli_ctx *ctx, cli_error *ce)
{
    static const cli_column cols[] = {
        {"ID", "id"},
        {"PRODUCT", "product"},
        {"SEVERITY", "severity"},
        {"EXPLOITED", "exploited"},
        {"EARLY_WARNING", "early_warning"},
        {"NOTIFICATION", "notification"},
        {"FINAL_REPORT", "final_report"},
    };
    kbr_err err = KBR_OK;
    cli_response resp = {0};
    json_t *rows = json_array(), *row = NULL;
    const json_t *inc;
    char *text = NULL, clock[160];
    time_t now = time(NULL);
    size_t i;

    KBR_ENSURE(rows != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(cli_call(ctx->client, "GET", "/v1/incidents", NULL, &resp, ce));
    if (ctx->json) {
        KBR_GUARD(cli_print_json(ctx->out, resp.body, ce));
        goto out;
    }
    KBR_ENSURE(json_is_array(json_object_get(resp.body, "incidents")),
               bad_response(ce, KBR_ERR_BAD_REQUEST));
    json_array_foreach(json_object_get(resp.body, "incidents"), i, inc)
    {
        row =
            json_pack("{s:O?,s:s,s:O?,s:s}", "id", json_object_get(inc, "id"), "product",
                      json_is_string(json_object_get(inc, "product")) ? cli_json_str(inc, "product")
                                                                      : "every product",
                      "severity", json_object_get(inc, "severity"), "exploited",
                      json_is_true(json_object_get(inc, "actively_exploited")) ? "yes" : "no");
        KBR_ENSURE(row != NULL, KBR_ERR_NOMEM);
        for (size_t k = 0; k < N_ELEMS(clock_names); k++) {
            KBR_GUARD(
                bad_response(ce, cli_clock_text(json_object_get(json_object_get(inc, "deadlines"),
                                                                clock_names[k][0]),
                                                now, clock, sizeof(clock))));
            KBR_ENSURE(json_object_set_new(row, clock_names[k][0], json_string(clock)) == 0,
                       KBR_ERR_NOMEM);
        }
        KBR_ENSURE(json_array_append_new(rows, row) == 0, KBR_ERR_NOMEM);
        row = NULL;
    }
    if (json_array_size(rows) == 0) {
        fputs("no incidents\n", ctx->out);
        goto out;
    }
    KBR_GUARD(cli_table_from_json(rows, cols, N_ELEMS(cols), &text));
    err = cli_print_text(ctx->out, text, ce); /* frees text */
    text = NULL;
out:
    free(text);
    json_decref(row);
    json_decref(rows);
    cli_response_cleanup(&resp);
    return err;
}

static kbr_err incident_show(cli_ctx *ctx, cli_error *ce)
{
    kbr_msg msg = {{0}};
    kbr_err err = utf8("ID", cli_args_pos(ctx->args, 0), &msg);

    if (err != KBR_OK)
        return cli_from_msg(ce, err, &msg);
    return fetch_show(ctx, ce);
}

static kbr_err incident_fix(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = json_object();
    cli_response resp = {0};
    char *path = NULL;
    kbr_msg msg = {{0}};

    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    err = set_opt(body, "fixed_version", "fixed-version", ctx->args, &msg);
    if (err == KBR_OK)
        err = set_opt(body, "available_at", "available-at", ctx->args, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(incident_path(ctx, "/fix", &path));
    KBR_GUARD(cli_call(ctx->client, "POST", path, body, &resp, ce));
    KBR_GUARD(fetch_show(ctx, ce));
out:
    free(path);
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static kbr_err stage_opt(const cli_args *a, kbr_msg *msg)
{
    const char *s = cli_args_str(a, "stage");

    if (s == NULL || (strcmp(s, "early-warning") != 0 && strcmp(s, "notification") != 0 &&
                      strcmp(s, "final") != 0))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--stage is early-warning, notification or final");
    return KBR_OK;
}

/* The document the broker kept, byte for byte, to --out (its SHA-256 is in the log). */
static kbr_err write_document(cli_ctx *ctx, const cli_response *resp, cli_error *ce)
{
    const char *file = cli_args_str(ctx->args, "out");

    if (file == NULL)
        return KBR_OK;
    return cli_write_file(file, resp->raw != NULL ? resp->raw : "", resp->raw_len, 0644, ce);
}

static kbr_err incident_report(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = json_object();
    cli_response resp = {.keep_raw = true};
    char *path = NULL, sha[65];
    kbr_msg msg = {{0}};
    const char *out = cli_args_str(ctx->args, "out");

    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    err = stage_opt(ctx->args, &msg);
    if (err == KBR_OK)
        err = set_opt(body, "stage", "stage", ctx->args, &msg);
    if (err == KBR_OK)
        err = set_opt(body, "notes", "notes", ctx->args, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    if (out != NULL)
        KBR_GUARD(cli_check_out("--out", out, 0644, ce));
    KBR_GUARD(incident_path(ctx, "/reports", &path));
    KBR_GUARD(cli_call(ctx->client, "POST", path, body, &resp, ce));
    KBR_GUARD(write_document(ctx, &resp, ce));
    kbr_sha256_hex(resp.raw != NULL ? resp.raw : "", resp.raw_len, sha);
    fprintf(stderr, "keybroker: %s report recorded (audit entry %lld, document sha256 %s)\n",
            cli_args_str(ctx->args, "stage"), resp.audit_seq, sha);
    KBR_GUARD(fetch_show(ctx, ce));
out:
    free(path);
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static kbr_err incident_document(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {.keep_raw = true};
    char *path = NULL, suffix[64], *text = NULL;
    kbr_msg msg = {{0}};

    err = stage_opt(ctx->args, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    snprintf(suffix, sizeof(suffix), "/reports/%s", cli_args_str(ctx->args, "stage"));
    KBR_GUARD(incident_path(ctx, suffix, &path));
    if (cli_args_flag(ctx->args, "csaf"))
        KBR_GUARD(cli_query_add(ctx->client, &path, "format", "csaf"));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    if (cli_args_str(ctx->args, "out") != NULL) {
        KBR_GUARD(write_document(ctx, &resp, ce));
        goto out;
    }
    text = json_dumps(resp.body, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    KBR_ENSURE(text != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(cli_print_text(ctx->out, text, ce)); /* frees text */
    text = NULL;
out:
    free(text);
    free(path);
    cli_response_cleanup(&resp);
    return err;
}

static kbr_err incident_chart(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {0};
    char *path = NULL, *svg = NULL;
    const char *file = cli_args_str(ctx->args, "out");

    KBR_GUARD(cli_check_out("--out", file, 0644, ce));
    KBR_GUARD(incident_path(ctx, NULL, &path));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    KBR_GUARD(bad_response(ce, cli_incident_chart_svg(resp.body, time(NULL), &svg)));
    KBR_GUARD(cli_write_file(file, svg, strlen(svg), 0644, ce));
    if (!cli_is_stdout(file))
        fprintf(ctx->out, "%s: remediation of incident %s\n", file, cli_args_pos(ctx->args, 0));
out:
    free(svg);
    free(path);
    cli_response_cleanup(&resp);
    return err;
}

static kbr_err evidence_incident(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {0};
    char *path = NULL, *text = NULL;
    const char *file = cli_args_str(ctx->args, "out");

    KBR_GUARD(cli_check_out("--out", file, 0644, ce));
    KBR_GUARD(cli_path_join(ctx->client, "/v1/evidence/incidents/", cli_args_pos(ctx->args, 0),
                            NULL, &path));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    KBR_ENSURE(json_is_object(resp.body),
               cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response", "the broker sent no bundle"));
    text = json_dumps(resp.body, JSON_COMPACT);
    KBR_ENSURE(text != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(cli_write_file(file, text, strlen(text), 0644, ce));
    if (!cli_is_stdout(file))
        fprintf(ctx->out, "%s: %zu entries\n", file,
                json_array_size(json_object_get(resp.body, "entries")));
out:
    free(text);
    free(path);
    cli_response_cleanup(&resp);
    return err;
}

/* ---- the command table's entries ---- */

static const char *const product_pos[] = {"P"};
static const char *const incident_pos[] = {"ID"};

static const cli_opt product_create_opts[] = {
    {"placed-on-market", CLI_OPT_STR, true, "YYYY-MM-DD"},
    {"support-until", CLI_OPT_STR, true, "YYYY-MM-DD"},
};
static const cli_opt incident_create_opts[] = {
    {"title", CLI_OPT_STR, true, "TEXT"},
    {"component", CLI_OPT_STR, true, "NAME"},
    {"product", CLI_OPT_STR, false, "P"},
    {"versions", CLI_OPT_LIST, false, "V1,V2"},
    {"purl", CLI_OPT_STR, false, "PURL"},
    {"vers", CLI_OPT_STR, false, "RANGE"},
    {"aware-at", CLI_OPT_STR, true, "TIME"},
    {"actively-exploited", CLI_OPT_STR, true, "yes|no"},
    {"severity", CLI_OPT_STR, true, "low|medium|high|critical"},
    {"cve", CLI_OPT_STR, false, "CVE-YYYY-N"},
};
static const cli_opt incident_fix_opts[] = {
    {"fixed-version", CLI_OPT_STR, true, "V"},
    {"available-at", CLI_OPT_STR, false, "TIME"},
};
static const cli_opt incident_report_opts[] = {
    {"stage", CLI_OPT_STR, true, "early-warning|notification|final"},
    {"notes", CLI_OPT_STR, false, "TEXT"},
    {"out", CLI_OPT_STR, false, "FILE"},
};
static const cli_opt incident_document_opts[] = {
    {"stage", CLI_OPT_STR, true, "early-warning|notification|final"},
    {"csaf", CLI_OPT_FLAG, false, NULL},
    {"out", CLI_OPT_STR, false, "FILE"},
};
static const cli_opt out_opts[] = {
    {"out", CLI_OPT_STR, true, "FILE"},
};

const cli_command cli_cmd_product_create = {
    {"product", "create", NULL},
    "P --placed-on-market YYYY-MM-DD --support-until YYYY-MM-DD",
    "record a product's CRA support period (again: extend it); under five years is flagged",
    {product_create_opts, N_ELEMS(product_create_opts), product_pos, 1, 1},
    true,
    product_create,
};

const cli_command cli_cmd_product_show = {
    {"product", "show", NULL},    "P",  "a product's support period",
    {NULL, 0, product_pos, 1, 1}, true, product_show,
};

const cli_command cli_cmd_incident_create = {
    {"incident", "create", NULL},
    "ID --title TEXT --component NAME [--versions V1,V2 | --purl PURL [--vers RANGE]]\n"
    "      [--product P] --aware-at TIME --actively-exploited yes|no --severity S [--cve ID]",
    "record a vulnerability under Art. 14 with the builds and devices it reaches, and its clocks",
    {incident_create_opts, N_ELEMS(incident_create_opts), incident_pos, 1, 1},
    true,
    incident_create,
};

const cli_command cli_cmd_incident_list = {
    {"incident", "list", NULL},
    "",
    "every incident with its three clocks: time left, or how long overdue",
    {NULL, 0, NULL, 0, 0},
    true,
    incident_list,
};

const cli_command cli_cmd_incident_show = {
    {"incident", "show", NULL},
    "ID",
    "an incident: its clocks, its exposure when recorded and its remediation now by member state",
    {NULL, 0, incident_pos, 1, 1},
    true,
    incident_show,
};

const cli_command cli_cmd_incident_fix = {
    {"incident", "fix", NULL},
    "ID --fixed-version V [--available-at TIME]",
    "record the corrective measure (a firmware the broker signed): starts the final report's clock",
    {incident_fix_opts, N_ELEMS(incident_fix_opts), incident_pos, 1, 1},
    true,
    incident_fix,
};

const cli_command cli_cmd_incident_report = {
    {"incident", "report", NULL},
    "ID --stage early-warning|notification|final [--notes TEXT] [--out FILE]",
    "make and record a report of a stage (kept by the broker; --out: the document as kept)",
    {incident_report_opts, N_ELEMS(incident_report_opts), incident_pos, 1, 1},
    true,
    incident_report,
};

const cli_command cli_cmd_incident_document = {
    {"incident", "document", NULL},
    "ID --stage S [--csaf] [--out FILE]",
    "the latest report of a stage as kept, or as a CSAF 2.0 VEX document",
    {incident_document_opts, N_ELEMS(incident_document_opts), incident_pos, 1, 1},
    true,
    incident_document,
};

const cli_command cli_cmd_incident_chart = {
    {"incident", "chart", NULL},
    "ID --out FILE.svg",
    "draw the remediation: devices updated and pending per member state, day by day",
    {out_opts, N_ELEMS(out_opts), incident_pos, 1, 1},
    true,
    incident_chart,
};

const cli_command cli_cmd_evidence_incident = {
    {"evidence", "incident", NULL},
    "ID --out FILE",
    "an incident's evidence bundle: its entries, its builds, its fix and its reports",
    {out_opts, N_ELEMS(out_opts), incident_pos, 1, 1},
    true,
    evidence_incident,
};
