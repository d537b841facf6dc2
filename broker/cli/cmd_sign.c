/*
 * cmd_sign.c - keybroker sign: hash locally, send the digest, record the
 * artifact; or send the payload itself where the signature covers it
 * (ed25519 keys, COSE_Sign1 for SUIT manifests).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* What the request carries, owned here. */
typedef struct {
    char *digest;
    char *message_b64;
    char *sbom_b64;
    json_t *components;
} sign_inputs;

static const cli_column result_fields[] = {
    {"key", "key"},
    {"algorithm", "algorithm"},
    {"audit_seq", "audit_seq"},
    {"product", "build.product"},
    {"version", "build.version"},
    {"digest", "build.digest"},
    {"format", "format"},
    {"signature_b64", "signature_b64"}, /* last: left out when --out has it */
};

static void inputs_cleanup(sign_inputs *in)
{
    free(in->digest);
    free(in->message_b64);
    free(in->sbom_b64);
    json_decref(in->components);
}

static kbr_err check_choice(const char *opt, const char *value, const char *a, const char *b,
                            cli_error *ce)
{
    if (value == NULL || strcmp(value, a) == 0 || strcmp(value, b) == 0)
        return KBR_OK;
    return cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "--%s must be %s or %s", opt, a, b);
}

/* A COSE_Sign1's hash follows from the key's algorithm (ES256, ES384, EdDSA). */
static kbr_err check_format(const cli_args *a, cli_error *ce)
{
    const char *format = cli_args_str(a, "format");
    kbr_msg msg = {{0}};

    if (cli_sign_format_check(format, &msg) != KBR_OK)
        return cli_from_msg(ce, KBR_ERR_BAD_REQUEST, &msg);
    if (format != NULL && strcmp(format, "cose_sign1") == 0 && cli_args_str(a, "hash") != NULL)
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                        "--hash does not go with --format cose_sign1: the key's algorithm sets "
                        "the hash");
    return KBR_OK;
}

static kbr_err check_choices(const cli_args *a, cli_error *ce)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(check_choice("hash", cli_args_str(a, "hash"), "sha256", "sha384", ce));
    KBR_GUARD(check_format(a, ce));
    KBR_GUARD(check_choice("kind", cli_args_str(a, "kind"), "firmware", "ota-manifest", ce));
out:
    return err;
}

static kbr_err key_algorithm(const cli_ctx *ctx, const char *key, char **alg, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {0};
    char *path = NULL;
    const char *a = NULL;

    *alg = NULL;
    KBR_GUARD(cli_path_join(ctx->client, "/v1/keys/", key, NULL, &path));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    a = cli_json_str(resp.body, "algorithm");
    KBR_ENSURE(a != NULL,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response", "key %s has no algorithm", key));
    *alg = strdup(a);
    KBR_ENSURE(*alg != NULL, KBR_ERR_NOMEM);
out:
    cli_response_cleanup(&resp);
    free(path);
    return err;
}

/*
 * ed25519 signs the message itself (PureEdDSA) and COSE_Sign1 signs the
 * payload inside its Sig_structure, so for them the file goes, not its digest.
 */
static kbr_err load_file(const cli_ctx *ctx, const char *file, const char *hash, sign_inputs *in,
                         cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *format = cli_args_str(ctx->args, "format");
    char *alg = NULL;
    kbr_msg msg = {{0}};

    /* A missing file is reported before the broker is asked anything. */
    KBR_ENSURE(access(file, R_OK) == 0,
               cli_fail(ce, KBR_ERR_IO, "io_error", "%s: %s", file, strerror(errno)));
    /*
     * A CI token may hold only `sign`, not `read`: then the key cannot be
     * looked up and the file goes as a digest, which every algorithm but
     * ed25519 wants; for ed25519 the broker's 400 says to use --message.
     * COSE_Sign1 needs no look-up: it always takes the payload.
     */
    if (!cli_sign_sends_message(NULL, format)) {
        err = key_algorithm(ctx, cli_args_str(ctx->args, "key"), &alg, ce);
        KBR_ENSURE(err == KBR_OK || err == KBR_ERR_FORBIDDEN, err);
        err = KBR_OK;
    }
    if (cli_sign_sends_message(alg, format))
        err = cli_file_b64(file, CLI_MESSAGE_MAX, &in->message_b64, &msg);
    else
        err = cli_digest_file(file, hash, &in->digest, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
out:
    free(alg);
    return err;
}

static kbr_err load_payload(const cli_ctx *ctx, const char *hash, sign_inputs *in, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *file = cli_args_str(ctx->args, "file");
    const char *digest = cli_args_str(ctx->args, "digest");
    const char *message = cli_args_str(ctx->args, "message");
    kbr_msg msg = {{0}};

    KBR_ENSURE((file != NULL) + (digest != NULL) + (message != NULL) == 1,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                        "give exactly one of --file, --digest, --message"));
    if (file != NULL)
        KBR_GUARD(load_file(ctx, file, hash, in, ce));
    else if (digest != NULL)
        err = cli_digest_normalize(digest, hash, &in->digest, &msg);
    else
        err = cli_file_b64(message, CLI_MESSAGE_MAX, &in->message_b64, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
out:
    return err;
}

static kbr_err load_components(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    size_t n = 0;
    const char *const *specs = cli_args_list(a, "component", &n);
    json_t *arr = NULL, *c = NULL;

    *out = NULL;
    if (n == 0)
        return KBR_OK;
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        KBR_GUARD(cli_component_parse(specs[i], &c, msg));
        KBR_ENSURE(json_array_append_new(arr, c) == 0, KBR_ERR_NOMEM);
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    return err;
}

static kbr_err load_sbom(const cli_args *a, sign_inputs *in, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *sbom = cli_args_str(a, "sbom");
    kbr_msg msg = {{0}};

    if (sbom != NULL)
        err = cli_sbom_b64_from_file(sbom, &in->sbom_b64, &msg);
    if (err == KBR_OK)
        err = load_components(a, &in->components, &msg);
    if (err != KBR_OK)
        return cli_from_msg(ce, err, &msg);
    return KBR_OK;
}

static const char *base_name(const char *path)
{
    const char *slash = path != NULL ? strrchr(path, '/') : NULL;

    return slash != NULL ? slash + 1 : path;
}

/*
 * With an artifact, its name defaults to the signed file's name. The kind is
 * sent only when given: the broker derives it from the key's purpose.
 */
static void fill_request(const cli_args *a, const sign_inputs *in, const char *hash,
                         cli_sign_req *r)
{
    const char *file = cli_args_str(a, "file");
    bool artifact = cli_args_str(a, "product") != NULL;

    memset(r, 0, sizeof(*r));
    r->key = cli_args_str(a, "key");
    r->digest = in->digest;
    r->hash = hash;
    r->message_b64 = in->message_b64;
    r->format = cli_args_str(a, "format");
    r->product = cli_args_str(a, "product");
    r->version = cli_args_str(a, "version");
    r->name = cli_args_str(a, "name");
    if (r->name == NULL && artifact)
        r->name = base_name(file != NULL ? file : cli_args_str(a, "message"));
    r->build_id = cli_args_str(a, "build-id");
    r->kind = cli_args_str(a, "kind");
    r->sbom_b64 = in->sbom_b64;
    r->components = in->components;
}

static kbr_err write_signature(const char *file, const json_t *resp, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *b64 = cli_json_str(resp, "signature_b64");
    unsigned char *sig = NULL;
    size_t len = 0;

    KBR_ENSURE(b64 != NULL && kbr_b64_decode(b64, &sig, &len) == KBR_OK,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                        "the response has no valid signature_b64"));
    KBR_GUARD(cli_write_file(file, sig, len, 0644, ce));
out:
    free(sig);
    return err;
}

static kbr_err show_result(const cli_ctx *ctx, const json_t *resp, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *file = cli_args_str(ctx->args, "out");
    cli_ctx shown = cli_ctx_beside(ctx, file);
    size_t nfields = N_ELEMS(result_fields);

    if (file != NULL) {
        KBR_GUARD(write_signature(file, resp, ce));
        /* The signature is in the file; the table keeps what identifies it. */
        nfields--;
    }
    KBR_GUARD(cli_show(&shown, resp, NULL, result_fields, nfields, ce));
out:
    return err;
}

/* The command that checks the signature just written, on stderr (stdout is the result's). */
static void print_recipe(const cli_ctx *ctx, const json_t *resp, const char *hash)
{
    char buf[1024];
    const char *recipe =
        cli_openssl_recipe(cli_json_str(resp, "algorithm"), cli_json_str(resp, "format"), hash,
                           cli_args_str(ctx->args, "key"), cli_args_str(ctx->args, "out"),
                           cli_args_str(ctx->args, "file"), buf, sizeof(buf));

    if (recipe == NULL || strcmp(cli_args_str(ctx->args, "out"), "-") == 0)
        return;
    fputs("to check it (keybroker key pubkey KEY --out KEY.pem first): ", stderr);
    cli_term_put(stderr, recipe, CLI_TERM_LINE);
    fputc('\n', stderr);
}

static kbr_err sign_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *hash = cli_args_str(ctx->args, "hash"), *out_file = cli_args_str(ctx->args, "out");
    sign_inputs in = {0};
    cli_sign_req req;
    json_t *body = NULL;
    cli_response resp = {0};
    kbr_msg msg = {{0}};

    hash = hash != NULL ? hash : "sha256";
    KBR_GUARD(check_choices(ctx->args, ce));
    KBR_GUARD(load_sbom(ctx->args, &in, ce));
    KBR_GUARD(load_payload(ctx, hash, &in, ce));
    fill_request(ctx->args, &in, hash, &req);
    err = cli_sign_body(&req, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    /* a signature counts against the token's uses even if its file is then refused */
    if (out_file != NULL)
        KBR_GUARD(cli_check_out("out", out_file, 0644, ce));
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/sign", body, &resp, ce));
    KBR_GUARD(show_result(ctx, resp.body, ce));
    print_recipe(ctx, resp.body, hash);
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    inputs_cleanup(&in);
    return err;
}

static const cli_opt sign_opts[] = {
    {"key", CLI_OPT_STR, true, "K"},          {"file", CLI_OPT_STR, false, "IMAGE"},
    {"digest", CLI_OPT_STR, false, "HEX"},    {"message", CLI_OPT_STR, false, "FILE"},
    {"hash", CLI_OPT_STR, false, "H"},        {"format", CLI_OPT_STR, false, "F"},
    {"product", CLI_OPT_STR, false, "P"},     {"version", CLI_OPT_STR, false, "V"},
    {"name", CLI_OPT_STR, false, "N"},        {"build-id", CLI_OPT_STR, false, "ID"},
    {"kind", CLI_OPT_STR, false, "KIND"},     {"sbom", CLI_OPT_STR, false, "FILE"},
    {"component", CLI_OPT_MULTI, false, "C"}, {"out", CLI_OPT_STR, false, "FILE"},
};

const cli_command cli_cmd_sign = {
    {"sign", NULL, NULL},
    "--key K (--file IMAGE | --digest HEX | --message FILE) [--hash sha256|sha384]\n"
    "      [--product P --version V [--name N] [--build-id ID] [--kind firmware|ota-manifest]]\n"
    "      [--sbom bom.cdx.json | --component name@version[@purl] ...]\n"
    "      [--format raw|der|cose_sign1] [--out SIG.bin]",
    "sign a firmware image or manifest (hashed locally; ed25519 keys and --format cose_sign1\n"
    "      get the file itself, and cose_sign1 writes a tagged COSE_Sign1 with detached payload)",
    {sign_opts, N_ELEMS(sign_opts), NULL, 0, 0},
    true,
    sign_run,
};
