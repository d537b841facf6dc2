/* cmd_device.c - keybroker device revoke: a device and its certificates revoked for good. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const device_revoke_pos[] = {"SERIAL"};

static const cli_column revoke_fields[] = {
    {"product", "product"},     {"serial", "serial"},         {"revoked_at", "revoked_at"},
    {"reason", "reason"},       {"revoked_by", "revoked_by"}, {"certificates", "certificates"},
    {"audit_seq", "audit_seq"},
};

static kbr_err device_set_str(json_t *obj, const char *field, const char *what, const char *value,
                              kbr_msg *msg)
{
    /* json_string() refuses invalid UTF-8, which here is the user's input. */
    json_t *v = json_string(value);

    if (v == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s is not valid UTF-8", what);
    return json_object_set_new(obj, field, v) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

/* The reason is the broker's to check: it names the RFC 5280 reasons it takes. */
kbr_err cli_device_revoke_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *body = json_object();

    *out = NULL;
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(device_set_str(body, "product", "--product", cli_args_str(a, "product"), msg));
    KBR_GUARD(device_set_str(body, "reason", "--reason", cli_args_str(a, "reason"), msg));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

/* The certificates revoked, by serial number, in one cell. */
static kbr_err serials_only(json_t *resp)
{
    json_t *serials = json_array(), *cert;
    size_t i;

    if (serials == NULL)
        return KBR_ERR_NOMEM;
    json_array_foreach(json_object_get(resp, "certificates"), i, cert)
    {
        if (json_array_append(serials, json_object_get(cert, "serial_number")) != 0) {
            json_decref(serials);
            return KBR_ERR_NOMEM;
        }
    }
    return json_object_set_new(resp, "certificates", serials) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err device_revoke(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};
    char *path = NULL;
    kbr_msg msg = {{0}};

    err = cli_device_revoke_body(ctx->args, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(
        cli_path_join(ctx->client, "/v1/devices/", cli_args_pos(ctx->args, 0), "/revoke", &path));
    KBR_GUARD(cli_call(ctx->client, "POST", path, body, &resp, ce));
    if (!ctx->json)
        KBR_GUARD(serials_only(resp.body));
    KBR_GUARD(cli_show(ctx, resp.body, NULL, revoke_fields, N_ELEMS(revoke_fields), ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    free(path);
    return err;
}

static const cli_opt device_revoke_opts[] = {
    {"product", CLI_OPT_STR, true, "P"},
    {"reason", CLI_OPT_STR, true, "REASON"},
};

const cli_command cli_cmd_device_revoke = {
    {"device", "revoke", NULL},
    "SERIAL --product P --reason REASON",
    "revoke a device and every certificate it was issued, for good; REASON is an RFC 5280 "
    "reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "
    "cessationOfOperation or privilegeWithdrawn",
    {device_revoke_opts, N_ELEMS(device_revoke_opts), device_revoke_pos, 1, 1},
    true,
    device_revoke,
};
