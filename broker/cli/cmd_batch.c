/* cmd_batch.c - keybroker batch create|show: production orders placed with a factory. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The broker refuses larger orders; saying so here spares a round trip. */
#define CLI_BATCH_QUANTITY_MAX 100000000LL
#define CLI_FACTORY_PREFIX     "factory:"

static const char *const batch_pos[] = {"BATCH"};

static const cli_column batch_fields[] = {
    {"batch", "batch"},         {"product", "product"},       {"factory", "factory"},
    {"market", "market"},       {"quantity", "quantity"},     {"provisioned", "provisioned"},
    {"remaining", "remaining"}, {"created_at", "created_at"}, {"created_by", "created_by"},
};

static kbr_err batch_set_str(json_t *obj, const char *field, const char *what, const char *value,
                             kbr_msg *msg)
{
    /* json_string() refuses invalid UTF-8, which here is the user's input. */
    json_t *v = json_string(value);

    if (v == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s is not valid UTF-8", what);
    return json_object_set_new(obj, field, v) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static bool ascii_letter(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* ISO 3166-1 alpha-2 codes are case-insensitive to people; the broker wants "DE". */
static kbr_err batch_market_code(const char *item, char code[3], kbr_msg *msg)
{
    if (strlen(item) != 2 || !ascii_letter(item[0]) || !ascii_letter(item[1]))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--market '%s' is not an ISO 3166-1 alpha-2 country code such as DE", item);
    code[0] = (char)(item[0] & ~0x20);
    code[1] = (char)(item[1] & ~0x20);
    code[2] = '\0';
    return KBR_OK;
}

static bool batch_has_market(const json_t *arr, const char *code)
{
    size_t i;
    const json_t *v;

    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(v), code) == 0)
            return true;
    }
    return false;
}

/* Markets end up in the views' counts by market: a repeated one would count twice. */
static kbr_err batch_markets(const cli_args *a, json_t *body, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    size_t n = 0;
    const char *const *items = cli_args_list(a, "market", &n);
    json_t *arr = json_array();
    char code[3];

    KBR_ENSURE(arr != NULL && json_object_set_new(body, "market", arr) == 0, KBR_ERR_NOMEM);
    KBR_ENSURE(n > 0, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "missing required option --market"));
    for (size_t i = 0; i < n; i++) {
        KBR_GUARD(batch_market_code(items[i], code, msg));
        KBR_ENSURE(!batch_has_market(arr, code),
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--market %s given more than once", code));
        KBR_ENSURE(json_array_append_new(arr, json_string(code)) == 0, KBR_ERR_NOMEM);
    }
out:
    return err;
}

static kbr_err batch_check(const cli_args *a, long long *quantity, kbr_msg *msg)
{
    const char *factory = cli_args_str(a, "factory");
    size_t plen = strlen(CLI_FACTORY_PREFIX);

    if (!cli_args_int(a, "quantity", quantity) || *quantity < 1 ||
        *quantity > CLI_BATCH_QUANTITY_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--quantity must be between 1 and %lld",
                        CLI_BATCH_QUANTITY_MAX);
    if (factory == NULL || strncmp(factory, CLI_FACTORY_PREFIX, plen) != 0 || factory[plen] == '\0')
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--factory must be the factory's principal, factory:NAME");
    return KBR_OK;
}

kbr_err cli_batch_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    long long quantity = 0;

    *out = NULL;
    KBR_GUARD(batch_check(a, &quantity, msg));
    body = json_object();
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(batch_set_str(body, "batch", "BATCH", cli_args_pos(a, 0), msg));
    KBR_GUARD(batch_set_str(body, "product", "--product", cli_args_str(a, "product"), msg));
    KBR_GUARD(batch_set_str(body, "factory", "--factory", cli_args_str(a, "factory"), msg));
    KBR_ENSURE(json_object_set_new(body, "quantity", json_integer(quantity)) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(batch_markets(a, body, msg));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

static kbr_err batch_create(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};
    kbr_msg msg = {{0}};

    err = cli_batch_body(ctx->args, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/batches", body, &resp, ce));
    KBR_GUARD(cli_show(ctx, resp.body, NULL, batch_fields, N_ELEMS(batch_fields), ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static kbr_err batch_show(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;

    KBR_GUARD(cli_path_join(ctx->client, "/v1/batches/", cli_args_pos(ctx->args, 0), NULL, &path));
    KBR_GUARD(cli_get_show(ctx, path, NULL, batch_fields, N_ELEMS(batch_fields), ce));
out:
    free(path);
    return err;
}

static const cli_opt batch_create_opts[] = {
    {"product", CLI_OPT_STR, true, "P"},
    {"factory", CLI_OPT_STR, true, "factory:NAME"},
    {"quantity", CLI_OPT_INT, true, "N"},
    {"market", CLI_OPT_LIST, true, "CC"},
};

const cli_command cli_cmd_batch_create = {
    {"batch", "create", NULL},
    "BATCH --product P --factory factory:NAME --quantity N --market CC[,CC...]",
    "order a production batch: at most N devices, provisioned only by that factory",
    {batch_create_opts, N_ELEMS(batch_create_opts), batch_pos, 1, 1},
    true,
    batch_create,
};

const cli_command cli_cmd_batch_show = {
    {"batch", "show", NULL},    "BATCH", "show a batch and how many of its devices are provisioned",
    {NULL, 0, batch_pos, 1, 1}, true,    batch_show,
};
