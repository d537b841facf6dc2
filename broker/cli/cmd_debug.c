/*
 * cmd_debug.c - keybroker debug-auth: one debug unlock of one device.
 *
 * A rework station's vendor tool (a PSA ADAC host, NXP's nxpdebugmbox, ...)
 * reads the device's challenge and produces the bytes its protocol wants
 * signed; they go to the broker as they are, and the raw signature comes
 * back for the tool to put into its response.  The broker answers a
 * challenge once, so everything that can be checked here is checked before
 * the request is sent, and a signature that cannot be written is printed
 * rather than lost.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The broker's bounds on the request fields (POST /v1/debug-auth). */
#define DBG_CHALLENGE_MIN   16
#define DBG_CHALLENGE_MAX   64
#define DBG_PERMISSIONS_MAX 64
#define DBG_TICKET_MAX      128

typedef struct {
    unsigned char *challenge, *permissions;
    size_t challenge_len, permissions_len;
    char *message; /* the file's bytes, NUL-terminated by kbr_file_read */
    size_t message_len;
} dbg_inputs;

static const cli_column dbg_fields[] = {
    {"key", "key"},
    {"algorithm", "algorithm"},
    {"expires_at", "expires_at"},
    {"audit_seq", "audit_seq"},
    {"signature_b64", "signature_b64"}, /* last: left out when --out has it */
};

/* In the order the synopsis lists them, so the first one missing is the one named. */
static const char *const dbg_required[] = {"key",         "device", "product", "challenge",
                                           "permissions", "ticket", "message"};

static void dbg_inputs_cleanup(dbg_inputs *in)
{
    free(in->challenge);
    free(in->permissions);
    free(in->message);
}

static kbr_err dbg_check_options(const cli_args *a, kbr_msg *msg)
{
    const char *ticket = cli_args_str(a, "ticket");

    for (size_t i = 0; i < N_ELEMS(dbg_required); i++)
        if (cli_args_str(a, dbg_required[i]) == NULL)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "missing required option --%s",
                            dbg_required[i]);
    if (strlen(ticket) > DBG_TICKET_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--ticket is longer than %d characters",
                        DBG_TICKET_MAX);
    return KBR_OK;
}

static kbr_err dbg_hex_opt(const cli_args *a, const char *opt, size_t min, size_t max,
                           unsigned char **out, size_t *len, kbr_msg *msg)
{
    kbr_err err = kbr_hex_decode(cli_args_str(a, opt), out, len);

    if (err == KBR_OK && (*len < min || *len > max)) {
        free(*out);
        *out = NULL;
        *len = 0;
        err = KBR_ERR_BAD_REQUEST;
    }
    if (err == KBR_ERR_BAD_REQUEST)
        return kbr_fail(msg, err, "--%s must be %zu to %zu bytes of hex", opt, min, max);
    return err;
}

/* Larger than the broker signs is a usage error: no other file would do either. */
static kbr_err dbg_read_message(const char *path, dbg_inputs *in, kbr_msg *msg)
{
    kbr_err err = kbr_file_read(path, CLI_DEBUG_MESSAGE_MAX, &in->message, &in->message_len);

    if (err == KBR_ERR_TOO_LARGE)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--message %s is larger than %d bytes, the most a debug unlock signs", path,
                        CLI_DEBUG_MESSAGE_MAX);
    if (err == KBR_ERR_IO)
        return kbr_fail(msg, err, "--message %s: %s", path, strerror(errno));
    return err;
}

static kbr_err dbg_load(const cli_args *a, dbg_inputs *in, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *path = cli_args_str(a, "message");

    KBR_GUARD(dbg_hex_opt(a, "challenge", DBG_CHALLENGE_MIN, DBG_CHALLENGE_MAX, &in->challenge,
                          &in->challenge_len, msg));
    KBR_GUARD(dbg_hex_opt(a, "permissions", 1, DBG_PERMISSIONS_MAX, &in->permissions,
                          &in->permissions_len, msg));
    KBR_GUARD(dbg_read_message(path, in, msg));
    /* The broker refuses it too, but only after the request is recorded as a denial. */
    KBR_ENSURE(memmem(in->message, in->message_len, in->challenge, in->challenge_len) != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--message %s does not contain the --challenge bytes: the vendor tool's "
                        "to-be-signed bytes must answer this device's challenge",
                        path));
out:
    return err;
}

/* json_string() refuses invalid UTF-8, which here is the user's input: the error names the option.
 */
static kbr_err dbg_set_str(json_t *body, const char *field, const char *opt, const char *value,
                           kbr_msg *msg)
{
    json_t *v = json_string(value);

    if (v == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--%s is not valid UTF-8", opt);
    return json_object_set_new(body, field, v) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err dbg_set_encoded(json_t *body, const char *field, const unsigned char *data,
                               size_t len, bool hex)
{
    kbr_err err = KBR_OK;
    char *s = NULL;

    KBR_GUARD(hex ? kbr_hex_encode(data, len, &s) : kbr_b64_encode(data, len, &s));
    KBR_ENSURE(json_object_set_new(body, field, json_string(s)) == 0, KBR_ERR_NOMEM);
out:
    free(s);
    return err;
}

static kbr_err dbg_body_object(const cli_args *a, const dbg_inputs *in, json_t *body, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(dbg_set_str(body, "key", "key", cli_args_str(a, "key"), msg));
    KBR_GUARD(dbg_set_str(body, "device", "device", cli_args_str(a, "device"), msg));
    KBR_GUARD(dbg_set_str(body, "product", "product", cli_args_str(a, "product"), msg));
    KBR_GUARD(dbg_set_encoded(body, "challenge", in->challenge, in->challenge_len, true));
    KBR_GUARD(dbg_set_encoded(body, "permissions", in->permissions, in->permissions_len, true));
    KBR_GUARD(dbg_set_str(body, "ticket", "ticket", cli_args_str(a, "ticket"), msg));
    KBR_GUARD(dbg_set_encoded(body, "message_b64", (const unsigned char *)in->message,
                              in->message_len, false));
out:
    return err;
}

kbr_err cli_debug_auth_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    dbg_inputs in = {0};
    json_t *body = NULL;

    *out = NULL;
    KBR_GUARD(dbg_check_options(a, msg));
    KBR_GUARD(dbg_load(a, &in, msg));
    body = json_object();
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(dbg_body_object(a, &in, body, msg));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    dbg_inputs_cleanup(&in);
    return err;
}

/* The challenge is spent: a signature that cannot be written goes to stdout instead. */
static kbr_err dbg_write_signature(const cli_ctx *ctx, const char *file, const char *b64,
                                   cli_error *ce)
{
    kbr_err err = KBR_OK;
    unsigned char *sig = NULL;
    size_t len = 0;
    kbr_msg why = {{0}};

    KBR_ENSURE(b64 != NULL && kbr_b64_decode(b64, &sig, &len) == KBR_OK,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                        "the response has no valid signature_b64"));
    /* kbr_b64_decode accepted it, so b64 holds nothing but the base64 alphabet */
    if (kbr_file_write(file, sig, len, 0644, &why) != KBR_OK) {
        fprintf(ctx->out, "%s\n", b64);
        err = cli_fail(ce, KBR_ERR_IO, "io_error",
                       "cannot write %s; the signature is on stdout (base64)", why.text);
    }
out:
    free(sig);
    return err;
}

static kbr_err dbg_show(const cli_ctx *ctx, const json_t *resp, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *file = cli_args_str(ctx->args, "out");
    cli_ctx shown = cli_ctx_beside(ctx, file);
    size_t nfields = N_ELEMS(dbg_fields);

    if (file != NULL) {
        KBR_GUARD(dbg_write_signature(ctx, file, cli_json_str(resp, "signature_b64"), ce));
        nfields--;
    }
    KBR_GUARD(cli_show(&shown, resp, NULL, dbg_fields, nfields, ce));
out:
    return err;
}

static kbr_err debug_auth_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *file = cli_args_str(ctx->args, "out");
    json_t *body = NULL;
    cli_response resp = {0};
    kbr_msg msg = {{0}};

    err = cli_debug_auth_body(ctx->args, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    /* the broker answers a challenge once: a file that would be refused is found out first */
    if (file != NULL)
        KBR_GUARD(cli_check_out("out", file, 0644, ce));
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/debug-auth", body, &resp, ce));
    KBR_GUARD(dbg_show(ctx, resp.body, ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static const cli_opt debug_auth_opts[] = {
    {"key", CLI_OPT_STR, true, "K"},           {"device", CLI_OPT_STR, true, "SN"},
    {"product", CLI_OPT_STR, true, "P"},       {"challenge", CLI_OPT_STR, true, "HEX"},
    {"permissions", CLI_OPT_STR, true, "HEX"}, {"ticket", CLI_OPT_STR, true, "T"},
    {"message", CLI_OPT_STR, true, "FILE"},    {"out", CLI_OPT_STR, false, "SIG.bin"},
};

const cli_command cli_cmd_debug_auth = {
    {"debug-auth", NULL, NULL},
    "--key K --device SN --product P --challenge HEX --permissions HEX --ticket T\n"
    "      --message FILE [--out SIG.bin]",
    "sign a vendor debug tool's to-be-signed bytes (at most 4096, containing the device's\n"
    "      challenge) for one unlock of one device; --out writes the raw signature",
    {debug_auth_opts, N_ELEMS(debug_auth_opts), NULL, 0, 0},
    true,
    debug_auth_run,
};
