/*
 * cmd_ota.c - keybroker ota report: an OTA platform's campaign results for
 * a firmware version the broker signed, recorded in each device's history.
 *
 * Devices the ledger does not know are not recorded; the broker names them
 * and so does this command, on stdout and as a warning on stderr, without
 * failing: the devices it does know are recorded all the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* A platform's export may be pretty-printed; what is sent is compact. */
#define OTA_FILE_MAX (4 * 1024 * 1024)

/* Members an object-shaped results file may carry besides "results". */
static const char *const ota_meta[] = {"product", "version", "campaign"};
static const char *const ota_required[] = {"product", "version", "campaign", "results"};

static kbr_err ota_check_options(const cli_args *a, kbr_msg *msg)
{
    for (size_t i = 0; i < N_ELEMS(ota_required); i++)
        if (cli_args_str(a, ota_required[i]) == NULL)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "missing required option --%s",
                            ota_required[i]);
    return KBR_OK;
}

static kbr_err ota_load(const char *path, json_t **doc, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *raw = NULL;
    size_t len = 0;
    json_error_t jerr;

    *doc = NULL;
    err = kbr_file_read(path, OTA_FILE_MAX, &raw, &len);
    KBR_ENSURE(err != KBR_ERR_TOO_LARGE,
               kbr_fail(msg, err, "--results %s is larger than %d bytes", path, OTA_FILE_MAX));
    KBR_ENSURE(err != KBR_ERR_IO, kbr_fail(msg, err, "--results %s: cannot read", path));
    KBR_GUARD(err);
    *doc = json_loadb(raw, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    KBR_ENSURE(*doc != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--results %s is not JSON: line %d: %s", path,
                        jerr.line, jerr.text));
out:
    free(raw);
    return err;
}

static bool ota_is_meta(const char *name)
{
    for (size_t i = 0; i < N_ELEMS(ota_meta); i++)
        if (strcmp(name, ota_meta[i]) == 0)
            return true;
    return false;
}

/* A file that names its product, version or campaign is reported under those only. */
static kbr_err ota_check_meta(const json_t *doc, const cli_args *a, const char *path, kbr_msg *msg)
{
    const char *name;
    const json_t *v;

    json_object_foreach((json_t *)doc, name, v)
    {
        const char *opt = NULL;
        if (strcmp(name, "results") == 0)
            continue;
        if (!ota_is_meta(name))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "--results %s: unknown member \"%s\" (product, version, campaign, "
                            "results)",
                            path, name);
        opt = cli_args_str(a, name);
        if (!json_is_string(v) || strcmp(json_string_value(v), opt) != 0)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "--results %s: its %s is not the --%s given (%s)", path, name, name,
                            opt);
    }
    return KBR_OK;
}

/* The results array of doc, borrowed. */
static kbr_err ota_results_of(const json_t *doc, const cli_args *a, const char *path,
                              const json_t **out, kbr_msg *msg)
{
    const json_t *arr = json_is_object(doc) ? json_object_get(doc, "results") : doc;

    *out = NULL;
    if (!json_is_array(arr))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--results %s must be an array of {device, status, at} or an object "
                        "with \"results\"",
                        path);
    if (json_is_object(doc) && ota_check_meta(doc, a, path, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (json_array_size(arr) == 0 || json_array_size(arr) > CLI_OTA_RESULTS_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--results %s has %zu results; 1 to %d go in one report", path,
                        json_array_size(arr), CLI_OTA_RESULTS_MAX);
    *out = arr;
    return KBR_OK;
}

static bool ota_status_ok(const char *status)
{
    return status != NULL && (strcmp(status, "installed") == 0 || strcmp(status, "failed") == 0);
}

static kbr_err ota_check_members(const json_t *item, const char *path, size_t i, kbr_msg *msg)
{
    const char *name;
    const json_t *v;

    json_object_foreach((json_t *)item, name, v)
    {
        (void)v;
        if (strcmp(name, "device") != 0 && strcmp(name, "status") != 0 && strcmp(name, "at") != 0)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "--results %s: results[%zu] has an unknown member \"%s\" (device, "
                            "status, at)",
                            path, i, name);
    }
    return KBR_OK;
}

/* One result, checked as the broker checks it, copied as given. */
static kbr_err ota_result(const json_t *item, const char *path, size_t i, json_t **out,
                          kbr_msg *msg)
{
    const char *device = json_string_value(json_object_get(item, "device"));
    const char *status = json_string_value(json_object_get(item, "status"));
    const char *at = json_string_value(json_object_get(item, "at"));
    time_t t;

    *out = NULL;
    if (!json_is_object(item))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--results %s: results[%zu] is not an object",
                        path, i);
    if (ota_check_members(item, path, i, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (device == NULL || device[0] == '\0')
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--results %s: results[%zu].device must be the device serial", path, i);
    if (!ota_status_ok(status))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--results %s: results[%zu].status must be \"installed\" or \"failed\"",
                        path, i);
    if (at == NULL || kbr_time_parse(at, &t) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--results %s: results[%zu].at must be an RFC 3339 UTC time such as "
                        "2026-11-28T14:00:00Z",
                        path, i);
    *out = json_pack("{s:s, s:s, s:s}", "device", device, "status", status, "at", at);
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err ota_results_copy(const json_t *arr, const char *path, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *copy = json_array(), *r = NULL;
    size_t i;
    const json_t *item;

    *out = NULL;
    KBR_ENSURE(copy != NULL, KBR_ERR_NOMEM);
    json_array_foreach((json_t *)arr, i, item)
    {
        KBR_GUARD(ota_result(item, path, i, &r, msg));
        KBR_ENSURE(json_array_append_new(copy, r) == 0, KBR_ERR_NOMEM);
    }
    *out = copy;
    copy = NULL;
out:
    json_decref(copy);
    return err;
}

static kbr_err ota_set_opt(json_t *body, const cli_args *a, const char *name, kbr_msg *msg)
{
    json_t *v = json_string(cli_args_str(a, name));

    /* json_string() refuses invalid UTF-8, which here is the user's input. */
    if (v == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--%s is not valid UTF-8", name);
    return json_object_set_new(body, name, v) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err cli_ota_report_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *path = cli_args_str(a, "results");
    json_t *doc = NULL, *body = NULL, *results = NULL;
    const json_t *arr = NULL;

    *out = NULL;
    KBR_GUARD(ota_check_options(a, msg));
    body = json_object();
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < N_ELEMS(ota_meta); i++)
        KBR_GUARD(ota_set_opt(body, a, ota_meta[i], msg));
    KBR_GUARD(ota_load(path, &doc, msg));
    KBR_GUARD(ota_results_of(doc, a, path, &arr, msg));
    KBR_GUARD(ota_results_copy(arr, path, &results, msg));
    KBR_ENSURE(json_object_set_new(body, "results", results) == 0, KBR_ERR_NOMEM);
    *out = body;
    body = NULL;
out:
    json_decref(doc);
    json_decref(body);
    return err;
}

/* ---- the response ---- */

static bool ota_response_ok(const json_t *resp)
{
    const json_t *unknown = json_object_get(resp, "unknown_devices"), *v;
    size_t i;

    if (!json_is_integer(json_object_get(resp, "recorded")) || !json_is_array(unknown))
        return false;
    json_array_foreach((json_t *)unknown, i, v)
    {
        if (!json_is_string(v))
            return false;
    }
    return true;
}

typedef struct {
    const char **cells;
    size_t nrows;
} ota_rows;

static void ota_row(ota_rows *r, const char *field, const char *value)
{
    r->cells[2 * r->nrows] = field;
    r->cells[2 * r->nrows + 1] = value;
    r->nrows++;
}

kbr_err cli_ota_report_text(const json_t *resp, long long audit_seq, char **out)
{
    static const char *const headers[] = {"FIELD", "VALUE"};
    kbr_err err = KBR_OK;
    const json_t *unknown = json_object_get(resp, "unknown_devices");
    size_t nunknown = json_array_size(unknown);
    ota_rows rows = {NULL, 0};
    char recorded[24], seq[24];

    *out = NULL;
    KBR_ENSURE(ota_response_ok(resp), KBR_ERR_BAD_REQUEST);
    /* recorded, the unknown devices (or one "-" row), audit_seq */
    rows.cells = calloc(2 * (nunknown + 3), sizeof(*rows.cells));
    KBR_ENSURE(rows.cells != NULL, KBR_ERR_NOMEM);
    snprintf(recorded, sizeof(recorded), "%lld",
             (long long)json_integer_value(json_object_get(resp, "recorded")));
    ota_row(&rows, "recorded", recorded);
    if (nunknown == 0)
        ota_row(&rows, "unknown", NULL);
    for (size_t i = 0; i < nunknown; i++)
        ota_row(&rows, "unknown", json_string_value(json_array_get(unknown, i)));
    snprintf(seq, sizeof(seq), "%lld", audit_seq);
    if (audit_seq >= 0)
        ota_row(&rows, "audit_seq", seq);
    KBR_GUARD(cli_table_render(headers, 2, rows.cells, rows.nrows, out));
out:
    free(rows.cells);
    return err;
}

/* Exit status stays 0: the known devices are recorded; the rest is for the operator to chase. */
static void ota_warn_unknown(const json_t *resp, const char *product)
{
    const json_t *unknown = json_object_get(resp, "unknown_devices");
    size_t n = json_array_size(unknown);

    if (n == 0)
        return;
    fprintf(stderr, "keybroker: warning: %zu device%s not in the ledger of product ", n,
            n == 1 ? " is" : "s are");
    cli_term_put(stderr, product, CLI_TERM_LINE);
    fputs(" and not recorded:", stderr);
    for (size_t i = 0; i < n; i++) {
        fputs(i == 0 ? " " : ", ", stderr);
        cli_term_put(stderr, json_string_value(json_array_get(unknown, i)), CLI_TERM_LINE);
    }
    fputc('\n', stderr);
}

static kbr_err ota_show(const cli_ctx *ctx, const cli_response *resp, cli_error *ce)
{
    char *text = NULL;

    if (!ota_response_ok(resp->body))
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                        "the response lacks recorded and unknown_devices");
    ota_warn_unknown(resp->body, cli_args_str(ctx->args, "product"));
    if (ctx->json)
        return cli_print_json(ctx->out, resp->body, ce);
    if (cli_ota_report_text(resp->body, resp->audit_seq, &text) != KBR_OK)
        return KBR_ERR_NOMEM;
    return cli_print_text(ctx->out, text, ce);
}

static kbr_err ota_report_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};
    kbr_msg msg = {{0}};

    err = cli_ota_report_body(ctx->args, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/ota/deployments", body, &resp, ce));
    KBR_GUARD(ota_show(ctx, &resp, ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static const cli_opt ota_report_opts[] = {
    {"product", CLI_OPT_STR, true, "P"},
    {"version", CLI_OPT_STR, true, "V"},
    {"campaign", CLI_OPT_STR, true, "C"},
    {"results", CLI_OPT_STR, true, "results.json"},
};

const cli_command cli_cmd_ota_report = {
    {"ota", "report", NULL},
    "--product P --version V --campaign C --results results.json",
    "record an OTA campaign's results ([{device, status: installed|failed, at}]) for a\n"
    "      firmware version the broker signed; devices the ledger lacks are listed, not recorded",
    {ota_report_opts, N_ELEMS(ota_report_opts), NULL, 0, 0},
    true,
    ota_report_run,
};
