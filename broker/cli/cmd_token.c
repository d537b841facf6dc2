/* cmd_token.c - keybroker token issue|list|revoke|rotate-issuer and keybroker revoke. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const cli_column token_columns[] = {
    {"JTI", "jti"},
    {"SUB", "sub"},
    {"OPS", "scope.ops"},
    {"KEYS", "scope.keys"},
    {"PRODUCTS", "scope.products"},
    {"ISSUED_AT", "issued_at"},
    {"EXPIRES_AT", "expires_at"},
    {"USES", "uses"},
    {"REVOKED_AT", "revoked_at"},
};

static const cli_column issued_fields[] = {
    {"jti", "jti"},
    {"expires_at", "expires_at"},
};

/* CLI option name and request field of the scope lists. */
static const struct {
    const char *opt;
    const char *field;
} scope_lists[] = {
    {"op", "ops"},        {"key", "keys"},       {"product", "products"},
    {"batch", "batches"}, {"device", "devices"},
};

static kbr_err set_str(json_t *body, const char *field, const char *value)
{
    if (value == NULL)
        return KBR_OK;
    return json_object_set_new(body, field, json_string(value)) == 0 ? KBR_OK : KBR_ERR_BAD_REQUEST;
}

static kbr_err set_int(json_t *body, const cli_args *a, const char *opt, const char *field)
{
    long long v = 0;

    if (!cli_args_int(a, opt, &v))
        return KBR_OK;
    return json_object_set_new(body, field, json_integer(v)) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

/* An absent list means "any" to the broker, so only given lists are sent. */
static kbr_err set_lists(json_t *body, const cli_args *a)
{
    kbr_err err = KBR_OK;
    json_t *arr = NULL;

    for (size_t i = 0; i < N_ELEMS(scope_lists); i++) {
        size_t n = 0;
        const char *const *v = cli_args_list(a, scope_lists[i].opt, &n);
        if (n == 0)
            continue;
        KBR_GUARD(cli_json_string_array(v, n, &arr));
        KBR_ENSURE(json_object_set_new(body, scope_lists[i].field, arr) == 0, KBR_ERR_NOMEM);
        arr = NULL;
    }
out:
    return err;
}

static kbr_err issue_body(const cli_args *a, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *body = json_object();

    *out = NULL;
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(set_str(body, "sub", cli_args_str(a, "sub")));
    KBR_GUARD(set_lists(body, a));
    KBR_GUARD(set_int(body, a, "max-uses", "max_uses"));
    KBR_GUARD(set_int(body, a, "ttl", "ttl"));
    KBR_GUARD(set_str(body, "bind_cert_sha256", cli_args_str(a, "bind-cert-sha256")));
    if (cli_args_flag(a, "orphan"))
        KBR_ENSURE(json_object_set_new(body, "orphan", json_true()) == 0, KBR_ERR_NOMEM);
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

/*
 * A token is three base64url segments joined by dots; it is printed and
 * written as it is, so a response holding anything else is not passed on.
 */
static bool token_text_ok(const char *t)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

    return t[0] != '\0' && t[strspn(t, alphabet)] == '\0';
}

static kbr_err print_token(const cli_ctx *ctx, const json_t *resp, const char *token, cli_error *ce)
{
    const char *file = cli_args_str(ctx->args, "out");
    cli_ctx shown = cli_ctx_beside(ctx, file);
    kbr_err err = KBR_OK;

    if (file != NULL)
        err = cli_write_file(file, token, strlen(token), 0600, ce);
    if (err != KBR_OK || ctx->json)
        return err;
    if (file != NULL)
        return cli_show(&shown, resp, NULL, issued_fields, N_ELEMS(issued_fields), ce);
    fprintf(ctx->out, "%s\n", token);
    return KBR_OK;
}

/*
 * POSTs body to path and prints the token the response carries (print_token).  The token's
 * text is wiped in place before the response is freed: jansson frees without wiping.
 */
static kbr_err post_for_token(cli_ctx *ctx, const char *path, const json_t *body, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *file = cli_args_str(ctx->args, "out");
    cli_response resp = {0};
    json_t *tok = NULL;

    /* a token minted for a file that is then refused would be audited and lost */
    if (file != NULL)
        KBR_GUARD(cli_check_out("out", file, 0600, ce));
    KBR_GUARD(cli_call(ctx->client, "POST", path, body, &resp, ce));
    tok = json_object_get(resp.body, "token");
    KBR_ENSURE(json_is_string(tok) && token_text_ok(json_string_value(tok)),
               cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response", "the response has no token"));
    if (ctx->json)
        KBR_GUARD(cli_print_json(cli_ctx_beside(ctx, file).out, resp.body, ce));
    KBR_GUARD(print_token(ctx, resp.body, json_string_value(tok), ce));
out:
    if (json_is_string(tok))
        OPENSSL_cleanse((char *)json_string_value(tok), json_string_length(tok));
    cli_response_cleanup(&resp);
    return err;
}

static kbr_err token_issue(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;

    err = issue_body(ctx->args, &body);
    KBR_ENSURE(err != KBR_ERR_BAD_REQUEST,
               cli_fail(ce, err, CLI_USAGE, "an option value is not valid UTF-8"));
    KBR_GUARD(err);
    KBR_GUARD(post_for_token(ctx, "/v1/tokens", body, ce));
out:
    json_decref(body);
    return err;
}

/* The CI system's ID token: a file (GitLab's id_tokens, a file written by a step) or a variable. */
static kbr_err read_id_token(const cli_args *a, kbr_secret **out, cli_error *ce)
{
    const char *file = cli_args_str(a, "id-token-file"), *var = cli_args_str(a, "id-token-env");
    const char *v;
    kbr_err err;

    *out = NULL;
    if ((file != NULL) == (var != NULL))
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                        "give exactly one of --id-token-file and --id-token-env");
    if (file != NULL) {
        err = kbr_secret_from_file(file, out);
        if (err != KBR_OK)
            return cli_fail(ce, KBR_ERR_IO, "io_error", "cannot read the ID token from %s", file);
        return KBR_OK;
    }
    v = getenv(var);
    if (v == NULL || v[0] == '\0')
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "variable %s is not set", var);
    return kbr_secret_new(v, strlen(v), out);
}

static kbr_err token_exchange(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    kbr_secret *id_token = NULL;
    json_t *body = NULL;

    KBR_GUARD(read_id_token(ctx->args, &id_token, ce));
    body = json_object();
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(body, "id_token",
                                   json_stringn((const char *)id_token->buf, id_token->len)) == 0,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "the ID token is not text"));
    KBR_GUARD(post_for_token(ctx, "/v1/tokens/exchange", body, ce));
out:
    if (json_is_string(json_object_get(body, "id_token"))) {
        json_t *v = json_object_get(body, "id_token");
        OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    }
    json_decref(body);
    kbr_secret_free(id_token);
    return err;
}

static kbr_err add_query(cli_ctx *ctx, char **path, const char *opt, const char *name)
{
    const char *v = cli_args_str(ctx->args, opt);

    return v != NULL ? cli_query_add(ctx->client, path, name, v) : KBR_OK;
}

static kbr_err token_list(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = strdup("/v1/tokens");

    KBR_ENSURE(path != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(add_query(ctx, &path, "sub", "sub"));
    KBR_GUARD(add_query(ctx, &path, "key", "key"));
    if (cli_args_flag(ctx->args, "active"))
        KBR_GUARD(cli_query_add(ctx->client, &path, "active", "true"));
    KBR_GUARD(cli_get_show(ctx, path, "tokens", token_columns, N_ELEMS(token_columns), ce));
out:
    free(path);
    return err;
}

static kbr_err reason_body(const cli_args *a, json_t **out, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = json_object();

    *out = NULL;
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    err = set_str(body, "reason", cli_args_str(a, "reason"));
    KBR_ENSURE(err == KBR_OK, cli_fail(ce, err, CLI_USAGE, "--reason is not valid UTF-8"));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

static kbr_err token_revoke(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    json_t *body = NULL;
    cli_response resp = {0};
    const char *jti = cli_args_pos(ctx->args, 0);

    KBR_GUARD(reason_body(ctx->args, &body, ce));
    KBR_GUARD(cli_path_join(ctx->client, "/v1/tokens/", jti, "/revoke", &path));
    KBR_GUARD(cli_call(ctx->client, "POST", path, body, &resp, ce));
    if (ctx->json)
        KBR_GUARD(cli_print_json(ctx->out, resp.body, ce));
    else
        cli_print_named(ctx->out, "revoked", jti);
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    free(path);
    return err;
}

static kbr_err revocation_body(const cli_args *a, json_t **out, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *sub = cli_args_str(a, "sub"), *key = cli_args_str(a, "key");
    json_t *body = NULL;

    *out = NULL;
    KBR_ENSURE((sub == NULL) != (key == NULL),
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "give exactly one of --sub, --key"));
    KBR_GUARD(reason_body(a, &body, ce));
    err = set_str(body, sub != NULL ? "sub" : "key", sub != NULL ? sub : key);
    KBR_ENSURE(err == KBR_OK, cli_fail(ce, err, CLI_USAGE, "--sub/--key is not valid UTF-8"));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

static kbr_err revoke(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};
    const json_t *n = NULL;

    KBR_GUARD(revocation_body(ctx->args, &body, ce));
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/revocations", body, &resp, ce));
    n = json_object_get(resp.body, "revoked");
    KBR_ENSURE(json_is_integer(n), cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                                            "the response has no revoked count"));
    if (ctx->json)
        KBR_GUARD(cli_print_json(ctx->out, resp.body, ce));
    else
        fprintf(ctx->out, "revoked %" JSON_INTEGER_FORMAT "\n", json_integer_value(n));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static const cli_column rotated_fields[] = {
    {"kid", "kid"},
    {"hsm_label", "hsm_label"},
    {"activated_at", "activated_at"},
    {"replaces", "replaces.kid"},
    {"replaced_listed_until", "replaces.listed_until"},
};

static kbr_err rotate_issuer(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};

    KBR_GUARD(reason_body(ctx->args, &body, ce));
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/tokens/issuer/rotate", body, &resp, ce));
    KBR_ENSURE(json_is_string(json_object_get(resp.body, "kid")),
               cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response", "the response has no kid"));
    KBR_GUARD(cli_show(ctx, resp.body, NULL, rotated_fields, N_ELEMS(rotated_fields), ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static const char *const jti_pos[] = {"JTI"};

static const cli_opt issue_opts[] = {
    {"sub", CLI_OPT_STR, true, "S"},
    {"op", CLI_OPT_LIST, true, "OP"},
    {"key", CLI_OPT_LIST, false, "K"},
    {"product", CLI_OPT_LIST, false, "P"},
    {"batch", CLI_OPT_LIST, false, "B"},
    {"device", CLI_OPT_LIST, false, "D"},
    {"max-uses", CLI_OPT_INT, false, "N"},
    {"ttl", CLI_OPT_INT, true, "SECONDS"},
    {"bind-cert-sha256", CLI_OPT_STR, false, "HEX"},
    {"orphan", CLI_OPT_FLAG, false, NULL},
    {"out", CLI_OPT_STR, false, "FILE"},
};

static const cli_opt list_opts[] = {
    {"sub", CLI_OPT_STR, false, "S"},
    {"key", CLI_OPT_STR, false, "K"},
    {"active", CLI_OPT_FLAG, false, NULL},
};

static const cli_opt reason_opts[] = {{"reason", CLI_OPT_STR, false, "R"}};

static const cli_opt revoke_opts[] = {
    {"sub", CLI_OPT_STR, false, "S"},
    {"key", CLI_OPT_STR, false, "K"},
    {"reason", CLI_OPT_STR, false, "R"},
};

const cli_command cli_cmd_token_issue = {
    {"token", "issue", NULL},
    "--sub S --op OP[,OP...] [--key K...] [--product P...] [--batch B...] [--device D...]\n"
    "      [--max-uses N] --ttl SECONDS [--bind-cert-sha256 HEX] [--orphan] [--out FILE]",
    "issue a scoped token (it ends no later than the issuing token and is revoked with it,\n"
    "      unless --orphan); prints it alone (or writes FILE, mode 0600)",
    {issue_opts, N_ELEMS(issue_opts), NULL, 0, 0},
    true,
    token_issue,
};

static const cli_opt exchange_opts[] = {
    {"id-token-file", CLI_OPT_STR, false, "FILE"},
    {"id-token-env", CLI_OPT_STR, false, "VAR"},
    {"out", CLI_OPT_STR, false, "FILE"},
};

const cli_command cli_cmd_token_exchange = {
    {"token", "exchange", NULL},
    "(--id-token-file FILE | --id-token-env VAR) [--out FILE]",
    "exchange a CI job's OIDC ID token for a broker token (no token needed); the broker's\n"
    "      rules for the token's issuer decide its principal and scope; prints the token\n"
    "      alone (or writes FILE, mode 0600)",
    {exchange_opts, N_ELEMS(exchange_opts), NULL, 0, 0},
    false,
    token_exchange,
};

const cli_command cli_cmd_token_list = {
    {"token", "list", NULL},
    "[--sub S] [--key K] [--active]",
    "list issued tokens (never the token strings)",
    {list_opts, N_ELEMS(list_opts), NULL, 0, 0},
    true,
    token_list,
};

const cli_command cli_cmd_token_revoke = {
    {"token", "revoke", NULL},
    "JTI [--reason R]",
    "revoke one token",
    {reason_opts, N_ELEMS(reason_opts), jti_pos, 1, 1},
    true,
    token_revoke,
};

const cli_command cli_cmd_token_rotate_issuer = {
    {"token", "rotate-issuer", NULL},
    "[--reason R]",
    "make a new token issuer key in the HSM: it signs every token issued from now on; the\n"
    "      old key verifies the tokens it signed until the last of them expires",
    {reason_opts, N_ELEMS(reason_opts), NULL, 0, 0},
    true,
    rotate_issuer,
};

const cli_command cli_cmd_revoke = {
    {"revoke", NULL, NULL},
    "(--sub S | --key K) [--reason R]",
    "revoke every live token of a principal or reaching a key",
    {revoke_opts, N_ELEMS(revoke_opts), NULL, 0, 0},
    true,
    revoke,
};
