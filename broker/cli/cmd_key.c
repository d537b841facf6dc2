/* cmd_key.c - keybroker key create|list|show|retire|pubkey. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const name_pos[] = {"NAME"};

static const cli_column key_fields[] = {
    {"name", "name"},
    {"purpose", "purpose"},
    {"algorithm", "algorithm"},
    {"products", "products"},
    {"owner", "owner"},
    {"state", "state"},
    {"created_at", "created_at"},
    {"hsm.label", "hsm.label"},
    {"hsm.id", "hsm.id"},
    {"hsm.extractable", "hsm.extractable"},
    {"hsm.sensitive", "hsm.sensitive"},
    {"hsm.local", "hsm.local"},
    {"certificate.not_after", "certificate.not_after"},
};

static const cli_column key_columns[] = {
    {"NAME", "name"},
    {"PURPOSE", "purpose"},
    {"ALGORITHM", "algorithm"},
    {"PRODUCTS", "products"},
    {"OWNER", "owner"},
    {"STATE", "state"},
    {"CREATED_AT", "created_at"},
    {"CERT_NOT_AFTER", "certificate.not_after"},
};

static kbr_err key_path(const cli_ctx *ctx, const char *suffix, char **path)
{
    return cli_path_join(ctx->client, "/v1/keys/", cli_args_pos(ctx->args, 0), suffix, path);
}

static kbr_err set_opt_str(json_t *body, const char *field, const char *value)
{
    if (value == NULL)
        return KBR_OK;
    return json_object_set_new(body, field, json_string(value)) == 0 ? KBR_OK : KBR_ERR_BAD_REQUEST;
}

static kbr_err create_body(const cli_args *a, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *body = json_object(), *products = NULL;
    const char *const *v = NULL;
    size_t n = 0;

    *out = NULL;
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(set_opt_str(body, "name", cli_args_pos(a, 0)));
    KBR_GUARD(set_opt_str(body, "purpose", cli_args_str(a, "purpose")));
    KBR_GUARD(set_opt_str(body, "algorithm", cli_args_str(a, "algorithm")));
    v = cli_args_list(a, "product", &n);
    KBR_GUARD(cli_json_string_array(v, n, &products));
    KBR_ENSURE(json_object_set_new(body, "products", products) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(set_opt_str(body, "owner", cli_args_str(a, "owner")));
    KBR_GUARD(set_opt_str(body, "hsm_label", cli_args_str(a, "hsm-label")));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

static kbr_err key_create(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};

    err = create_body(ctx->args, &body);
    KBR_ENSURE(err != KBR_ERR_BAD_REQUEST,
               cli_fail(ce, err, CLI_USAGE, "an option value is not valid UTF-8"));
    KBR_GUARD(err);
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/keys", body, &resp, ce));
    KBR_GUARD(cli_show(ctx, resp.body, NULL, key_fields, N_ELEMS(key_fields), ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static kbr_err key_list(cli_ctx *ctx, cli_error *ce)
{
    return cli_get_show(ctx, "/v1/keys", "keys", key_columns, N_ELEMS(key_columns), ce);
}

static kbr_err key_show(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;

    KBR_GUARD(key_path(ctx, NULL, &path));
    KBR_GUARD(cli_get_show(ctx, path, NULL, key_fields, N_ELEMS(key_fields), ce));
out:
    free(path);
    return err;
}

static kbr_err key_retire(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    json_t *body = json_object();
    cli_response resp = {0};

    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(key_path(ctx, "/retire", &path));
    KBR_GUARD(cli_call(ctx->client, "POST", path, body, &resp, ce));
    if (ctx->json)
        KBR_GUARD(cli_print_json(ctx->out, resp.body, ce));
    else
        cli_print_named(ctx->out, "retired", cli_args_pos(ctx->args, 0));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    free(path);
    return err;
}

static kbr_err write_pem(const cli_ctx *ctx, const char *file, const char *pem, cli_error *ce)
{
    if (file != NULL)
        return cli_write_file(file, pem, strlen(pem), 0644, ce);
    if (ctx->json)
        return KBR_OK;
    return cli_print_lines(ctx->out, pem, ce);
}

static kbr_err key_pubkey(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    cli_response resp = {0};
    const char *pem = NULL, *file = cli_args_str(ctx->args, "out");

    KBR_GUARD(key_path(ctx, NULL, &path));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    pem = cli_json_str(resp.body, "public_key_pem");
    KBR_ENSURE(pem != NULL,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response", "the key has no public_key_pem"));
    if (ctx->json)
        KBR_GUARD(cli_print_json(cli_ctx_beside(ctx, file).out, resp.body, ce));
    KBR_GUARD(write_pem(ctx, file, pem, ce));
out:
    cli_response_cleanup(&resp);
    free(path);
    return err;
}

static const cli_opt create_opts[] = {
    {"purpose", CLI_OPT_STR, true, "P"},    {"algorithm", CLI_OPT_STR, true, "A"},
    {"product", CLI_OPT_LIST, true, "P"},   {"owner", CLI_OPT_STR, false, "O"},
    {"hsm-label", CLI_OPT_STR, false, "L"},
};

static const cli_opt pubkey_opts[] = {{"out", CLI_OPT_STR, false, "FILE"}};

const cli_command cli_cmd_key_create = {
    {"key", "create", NULL},
    "NAME --purpose P --algorithm A --product P[,P...] [--owner O] [--hsm-label L]",
    "create a key pair in the HSM (or register an existing one with --hsm-label)",
    {create_opts, N_ELEMS(create_opts), name_pos, 1, 1},
    true,
    key_create,
};

const cli_command cli_cmd_key_list = {
    {"key", "list", NULL}, "", "list the registered keys", {NULL, 0, NULL, 0, 0}, true, key_list,
};

const cli_command cli_cmd_key_show = {
    {"key", "show", NULL},     "NAME", "show a key and its HSM attributes",
    {NULL, 0, name_pos, 1, 1}, true,   key_show,
};

const cli_command cli_cmd_key_retire = {
    {"key", "retire", NULL},   "NAME", "retire a key: no new operations, history kept",
    {NULL, 0, name_pos, 1, 1}, true,   key_retire,
};

const cli_command cli_cmd_key_pubkey = {
    {"key", "pubkey", NULL},
    "NAME [--out FILE]",
    "print or write a key's public key (PEM)",
    {pubkey_opts, N_ELEMS(pubkey_opts), name_pos, 1, 1},
    true,
    key_pubkey,
};
