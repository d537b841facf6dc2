/*
 * cmd_view.c - keybroker view product|custody|exposure|device: the custody
 * views, read in one request each (op read) and shown as sections of
 * aligned tables (view_text.c), or as the broker's JSON with --json; the
 * options are checked first (view_opts.c).
 *
 * `view exposure --csv` is the one that pages: it follows next_after until
 * the broker says there is no more, so an OTA campaign can be aimed at every
 * pending device from one command.  Pages are separate reads: the list is
 * exact for devices whose firmware does not change while the export runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- requests ---- */

static kbr_err view_query_opt(cli_client *c, char **path, const char *name, const char *value)
{
    return value != NULL ? cli_query_add(c, path, name, value) : KBR_OK;
}

static kbr_err view_versions_query(cli_client *c, char **path, const cli_exposure_opts *o)
{
    kbr_err err = KBR_OK;
    char *joined = NULL;
    size_t len = 0;
    FILE *f = NULL;

    if (o->versions == NULL)
        goto out;
    f = open_memstream(&joined, &len);
    KBR_ENSURE(f != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < o->nversions; i++)
        fprintf(f, "%s%s", i > 0 ? "," : "", o->versions[i]);
    err = fclose(f) == 0 ? KBR_OK : KBR_ERR_NOMEM;
    f = NULL;
    KBR_GUARD(err);
    KBR_GUARD(cli_query_add(c, path, "versions", joined));
out:
    free(joined);
    return err;
}

/* after and limit (0: none) are the page's, which for --csv are not the options'. */
static kbr_err view_exposure_path(cli_client *c, const cli_exposure_opts *o, const char *after,
                                  long long limit, char **out)
{
    kbr_err err = KBR_OK;
    char *path = strdup("/v1/views/exposure"), num[24];

    *out = NULL;
    snprintf(num, sizeof(num), "%lld", limit);
    KBR_ENSURE(path != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(view_query_opt(c, &path, "component", o->component));
    KBR_GUARD(view_versions_query(c, &path, o));
    KBR_GUARD(view_query_opt(c, &path, "purl", o->purl));
    KBR_GUARD(view_query_opt(c, &path, "vers", o->vers));
    KBR_GUARD(view_query_opt(c, &path, "devices", o->devices ? "true" : NULL));
    KBR_GUARD(view_query_opt(c, &path, "product", o->product));
    KBR_GUARD(view_query_opt(c, &path, "fixed_version", o->fixed_version));
    KBR_GUARD(view_query_opt(c, &path, "after", after));
    KBR_GUARD(view_query_opt(c, &path, "limit", limit > 0 ? num : NULL));
    *out = path;
    path = NULL;
out:
    free(path);
    return err;
}

static kbr_err view_bad_response(cli_error *ce, kbr_err err, const char *what)
{
    if (err != KBR_ERR_BAD_REQUEST)
        return err;
    return cli_fail(ce, err, "bad_response", "the %s view's response is not what it should be",
                    what);
}

/* GETs path and prints it: the JSON with --json, else text(body). */
static kbr_err view_get_show(const cli_ctx *ctx, const char *path, const char *what,
                             kbr_err (*text)(const json_t *, char **), cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {0};
    char *out = NULL;

    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    if (ctx->json) {
        KBR_GUARD(cli_print_json(ctx->out, resp.body, ce));
        goto out;
    }
    KBR_GUARD(view_bad_response(ce, text(resp.body, &out), what));
    err = cli_print_text(ctx->out, out, ce); /* frees out */
    out = NULL;
out:
    free(out);
    cli_response_cleanup(&resp);
    return err;
}

/* ---- commands ---- */

/*
 * A key someone made in the HSM outside the broker is a custody finding:
 * it goes to stderr too, so it is seen even when stdout is piped away.
 */
static void view_warn_unregistered(const json_t *view)
{
    const json_t *objs = json_object_get(view, "unregistered_hsm_objects");
    size_t n = json_array_size(objs);

    if (n == 0)
        return;
    fprintf(stderr,
            "keybroker: warning: the HSM holds %zu key object%s no registry entry names:", n,
            n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        const char *label = cli_json_str(json_array_get(objs, i), "label");
        fputs(i == 0 ? " " : ", ", stderr);
        cli_term_put(stderr, label != NULL && label[0] != '\0' ? label : "(no label)",
                     CLI_TERM_LINE);
    }
    fputc('\n', stderr);
}

static kbr_err view_product_show(const cli_ctx *ctx, const json_t *body, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *text = NULL;

    if (!ctx->json)
        KBR_GUARD(view_bad_response(ce, cli_view_product_text(body, &text), "product"));
    view_warn_unregistered(body);
    if (ctx->json)
        err = cli_print_json(ctx->out, body, ce);
    else
        err = cli_print_text(ctx->out, text, ce); /* frees text */
    text = NULL;
out:
    free(text);
    return err;
}

static kbr_err view_product_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    kbr_msg msg = {{0}};
    long long days = -1;
    char *path = NULL, num[24];
    cli_response resp = {0};

    err = cli_view_product_opts(ctx->args, &days, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(
        cli_path_join(ctx->client, "/v1/views/products/", cli_args_pos(ctx->args, 0), NULL, &path));
    snprintf(num, sizeof(num), "%lld", days);
    if (days >= 0)
        KBR_GUARD(cli_query_add(ctx->client, &path, "expiring_within_days", num));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    KBR_GUARD(view_product_show(ctx, resp.body, ce));
out:
    cli_response_cleanup(&resp);
    free(path);
    return err;
}

static kbr_err view_custody_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    kbr_msg msg = {{0}};
    char *path = NULL;

    err = cli_view_names_check(ctx->args, "KEY", &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(cli_path_join(ctx->client, "/v1/views/keys/", cli_args_pos(ctx->args, 0), "/custody",
                            &path));
    KBR_GUARD(view_get_show(ctx, path, "custody", cli_view_custody_text, ce));
out:
    free(path);
    return err;
}

static kbr_err view_device_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    kbr_msg msg = {{0}};
    char *path = NULL;

    err = cli_view_names_check(ctx->args, "SN", &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(
        cli_path_join(ctx->client, "/v1/views/devices/", cli_args_pos(ctx->args, 0), NULL, &path));
    KBR_GUARD(view_query_opt(ctx->client, &path, "product", cli_args_str(ctx->args, "product")));
    KBR_GUARD(view_get_show(ctx, path, "device", cli_view_device_text, ce));
out:
    free(path);
    return err;
}

/* One CSV page into acc; *after becomes the next page's start, NULL after the last one. */
static kbr_err view_csv_page(const cli_ctx *ctx, const cli_exposure_opts *o, char **after,
                             FILE *acc, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL, *text = NULL, *next = NULL;
    cli_response resp = {0};
    const json_t *pending;

    KBR_GUARD(view_exposure_path(ctx->client, o, *after,
                                 o->limit > 0 ? o->limit : CLI_VIEW_LIMIT_MAX, &path));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    pending = json_object_get(resp.body, o->devices ? "affected_devices" : "pending_devices");
    KBR_GUARD(view_bad_response(
        ce, cli_view_pending_csv(json_object_get(pending, "items"), false, &text), "exposure"));
    if (json_is_string(json_object_get(pending, "next_after"))) {
        next = strdup(cli_json_str(pending, "next_after"));
        KBR_ENSURE(next != NULL, KBR_ERR_NOMEM);
        /* serials only grow from page to page; anything else would loop for ever */
        KBR_ENSURE(*after == NULL || strcmp(next, *after) > 0,
                   cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                            "the exposure view's next_after does not advance"));
    }
    fputs(text, acc);
    free(*after);
    *after = next;
    next = NULL;
out:
    free(next);
    free(text);
    free(path);
    cli_response_cleanup(&resp);
    return err;
}

/*
 * Printed only once every page is in: a target list cut short by a failed
 * page would look complete to a campaign tool.  Without --limit the export
 * asks for the broker's largest page: fewer round trips, each one audited.
 */
static kbr_err view_exposure_csv(const cli_ctx *ctx, const cli_exposure_opts *o, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *after = NULL, *buf = NULL;
    size_t len = 0;
    FILE *acc = open_memstream(&buf, &len);

    KBR_ENSURE(acc != NULL, KBR_ERR_NOMEM);
    fputs(CLI_VIEW_CSV_HEADER, acc);
    if (o->after != NULL) {
        after = strdup(o->after);
        KBR_ENSURE(after != NULL, KBR_ERR_NOMEM);
    }
    do
        KBR_GUARD(view_csv_page(ctx, o, &after, acc, ce));
    while (after != NULL);
    err = fclose(acc) == 0 ? KBR_OK : KBR_ERR_NOMEM;
    acc = NULL;
    KBR_GUARD(err);
    /* as it is: view_csv_safe() let through no control but the quoted CR and LF */
    KBR_ENSURE(fputs(buf, ctx->out) != EOF,
               cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write the output"));
out:
    if (acc != NULL)
        fclose(acc);
    free(buf);
    free(after);
    return err;
}

static kbr_err exposure_eu(const json_t *view, char **out)
{
    return cli_view_exposure_text_opts(view, true, false, out);
}

static kbr_err exposure_markets(const json_t *view, char **out)
{
    return cli_view_exposure_text_opts(view, false, true, out);
}

static kbr_err exposure_eu_markets(const json_t *view, char **out)
{
    return cli_view_exposure_text_opts(view, true, true, out);
}

static kbr_err view_exposure_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    kbr_msg msg = {{0}};
    cli_exposure_opts o;
    char *path = NULL;

    err = cli_view_exposure_opts(ctx->args, ctx->json, &o, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    if (o.csv) {
        KBR_GUARD(view_exposure_csv(ctx, &o, ce));
        goto out;
    }
    KBR_GUARD(view_exposure_path(ctx->client, &o, o.after, o.limit, &path));
    KBR_GUARD(view_get_show(ctx, path, "exposure",
                            o.eu ? (o.by_market ? exposure_eu_markets : exposure_eu)
                                 : (o.by_market ? exposure_markets : cli_view_exposure_text),
                            ce));
out:
    free(path);
    return err;
}

/* ---- the command table's entries ---- */

static const char *const view_product_pos[] = {"P"};
static const char *const view_key_pos[] = {"KEY"};
static const char *const view_device_pos[] = {"SN"};

static const cli_opt view_product_opts[] = {
    {"expiring-within-days", CLI_OPT_INT, false, "N"},
};
static const cli_opt view_exposure_opts[] = {
    {"component", CLI_OPT_STR, false, "NAME"}, {"versions", CLI_OPT_LIST, false, "V1,V2"},
    {"purl", CLI_OPT_STR, false, "PURL"},      {"vers", CLI_OPT_STR, false, "RANGE"},
    {"product", CLI_OPT_STR, false, "P"},      {"fixed-version", CLI_OPT_STR, false, "V"},
    {"devices", CLI_OPT_FLAG, false, NULL},    {"after", CLI_OPT_STR, false, "SERIAL"},
    {"limit", CLI_OPT_INT, false, "N"},        {"csv", CLI_OPT_FLAG, false, NULL},
    {"eu", CLI_OPT_FLAG, false, NULL},         {"by-market", CLI_OPT_FLAG, false, NULL},
};
static const cli_opt view_device_opts[] = {
    {"product", CLI_OPT_STR, false, "P"},
};

const cli_command cli_cmd_view_product = {
    {"view", "product", NULL},
    "P [--expiring-within-days N]",
    "what a product depends on: keys by purpose with their HSM attributes, certificate\n"
    "      expiry, live tokens, and HSM key objects no registry entry names",
    {view_product_opts, N_ELEMS(view_product_opts), view_product_pos, 1, 1},
    true,
    view_product_run,
};

const cli_command cli_cmd_view_custody = {
    {"view", "custody", NULL},
    "KEY",
    "who can use a key and who did: its tokens, operations by principal and outcome",
    {NULL, 0, view_key_pos, 1, 1},
    true,
    view_custody_run,
};

const cli_command cli_cmd_view_exposure = {
    {"view", "exposure", NULL},
    "(--component NAME | --purl PURL) [--versions V1,V2 | --vers RANGE] [--product P]\n"
    "      [--fixed-version V] [--devices] [--after SERIAL] [--limit N] [--csv] [--eu] "
    "[--by-market]",
    "the signed builds whose SBOM has a component, the devices running them and that ever ran\n"
    "      them by market (--by-market: every figure per market; --eu: the member states) and,\n"
    "      with --fixed-version, those still to update; --devices lists every affected device\n"
    "      (--csv: all pages, for an OTA campaign)",
    {view_exposure_opts, N_ELEMS(view_exposure_opts), NULL, 0, 0},
    true,
    view_exposure_run,
};

const cli_command cli_cmd_view_device = {
    {"view", "device", NULL},
    "SN [--product P]",
    "a device's whole record: certificates, firmware history, debug unlocks, audit entries",
    {view_device_opts, N_ELEMS(view_device_opts), view_device_pos, 1, 1},
    true,
    view_device_run,
};
