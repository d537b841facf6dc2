/*
 * cmd_evidence.c - keybroker evidence device|product|verify: evidence bundles fetched from
 * the broker and written to a file, and checked offline with nothing but the bundle and the
 * pinned audit public key (kbr_evidence_verify).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "cli.h"
#include "kbr_audit.h"

#define N_ELEMS(a)   (sizeof(a) / sizeof((a)[0]))
#define BUNDLE_LIMIT (1024L * 1024 * 1024) /* a bundle larger than this is not read */

/* The bundle as the broker sent it, written whole; a summary on the output. */
static kbr_err fetch(cli_ctx *ctx, const char *path, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {0};
    const char *file = cli_args_str(ctx->args, "out");
    char *text = NULL;
    json_t *summary = NULL;

    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    KBR_ENSURE(json_is_object(resp.body),
               cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response", "the broker sent no bundle"));
    text = json_dumps(resp.body, JSON_COMPACT);
    KBR_ENSURE(text != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(cli_write_file(file, text, strlen(text), 0644, ce));
    summary = json_pack(
        "{s:O,s:I,s:I,s:s}", "subject", json_object_get(resp.body, "subject"), "entries",
        (json_int_t)json_array_size(json_object_get(resp.body, "entries")), "checkpoint_size",
        json_integer_value(json_object_get(json_object_get(resp.body, "checkpoint"), "size")),
        "out", file);
    KBR_ENSURE(summary != NULL, KBR_ERR_NOMEM);
    if (ctx->json)
        KBR_GUARD(cli_print_json(ctx->out, summary, ce));
    else
        fprintf(ctx->out,
                "%s: %" JSON_INTEGER_FORMAT " entries, checkpoint of %" JSON_INTEGER_FORMAT
                " entries\n",
                file, json_integer_value(json_object_get(summary, "entries")),
                json_integer_value(json_object_get(summary, "checkpoint_size")));
out:
    json_decref(summary);
    free(text);
    cli_response_cleanup(&resp);
    return err;
}

static kbr_err evidence_device(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    const char *product = cli_args_str(ctx->args, "product");

    KBR_GUARD(cli_path_join(ctx->client, "/v1/evidence/devices/", cli_args_pos(ctx->args, 0), NULL,
                            &path));
    if (product != NULL)
        KBR_GUARD(cli_query_add(ctx->client, &path, "product", product));
    KBR_GUARD(fetch(ctx, path, ce));
out:
    free(path);
    return err;
}

static kbr_err evidence_product(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;

    KBR_GUARD(cli_path_join(ctx->client, "/v1/evidence/products/", cli_args_pos(ctx->args, 0), NULL,
                            &path));
    KBR_GUARD(fetch(ctx, path, ce));
out:
    free(path);
    return err;
}

static kbr_err read_all(const char *path, char **out, size_t *len, cli_error *ce)
{
    kbr_err err = KBR_OK;
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, got;

    *out = NULL;
    KBR_ENSURE(f != NULL, cli_fail(ce, KBR_ERR_IO, "io_error", "%s: cannot open", path));
    do {
        if (n + 65536 > cap) {
            char *more;
            KBR_ENSURE(cap < (size_t)BUNDLE_LIMIT,
                       cli_fail(ce, KBR_ERR_TOO_LARGE, "verify_failed", "%s: larger than %ld bytes",
                                path, BUNDLE_LIMIT));
            cap = cap == 0 ? 1 << 20 : cap * 2;
            more = realloc(buf, cap);
            KBR_ENSURE(more != NULL, KBR_ERR_NOMEM);
            buf = more;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    KBR_ENSURE(!ferror(f), cli_fail(ce, KBR_ERR_IO, "io_error", "%s: cannot read", path));
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    if (f != NULL)
        fclose(f);
    return err;
}

static kbr_err evidence_verify(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *file = cli_args_pos(ctx->args, 0), *pub_path = cli_args_str(ctx->args, "pubkey");
    char *text = NULL;
    size_t len = 0;
    FILE *f = NULL;
    EVP_PKEY *key = NULL;
    json_t *summary = NULL;
    kbr_msg msg = {{0}};

    KBR_GUARD(read_all(file, &text, &len, ce));
    f = fopen(pub_path, "r");
    KBR_ENSURE(f != NULL, cli_fail(ce, KBR_ERR_IO, "io_error", "%s: cannot open", pub_path));
    key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    KBR_ENSURE(key != NULL, cli_fail(ce, KBR_ERR_BAD_REQUEST, "verify_failed",
                                     "%s: not a PEM public key", pub_path));
    err = kbr_evidence_verify(text, len, key, &summary, &msg);
    KBR_ENSURE(err == KBR_OK, cli_fail(ce, err, "verify_failed", "%s: %s", file,
                                       msg.text[0] != '\0' ? msg.text : kbr_err_str(err)));
    if (ctx->json) {
        KBR_ENSURE(json_object_set_new(summary, "ok", json_true()) == 0, KBR_ERR_NOMEM);
        KBR_GUARD(cli_print_json(ctx->out, summary, ce));
    } else {
        const json_t *s = json_object_get(summary, "subject");
        fprintf(ctx->out,
                "ok: %s %s%s%s: %" JSON_INTEGER_FORMAT " entries and %" JSON_INTEGER_FORMAT
                " documents hold under the checkpoint of %" JSON_INTEGER_FORMAT " entries (%s)\n",
                json_string_value(json_object_get(s, "kind")),
                json_string_value(json_object_get(s, "product")),
                json_object_get(s, "serial") != NULL ? " " : "",
                json_object_get(s, "serial") != NULL
                    ? json_string_value(json_object_get(s, "serial"))
                    : "",
                json_integer_value(json_object_get(summary, "entries")),
                json_integer_value(json_object_get(summary, "documents")),
                json_integer_value(json_object_get(summary, "checkpoint_size")),
                json_string_value(json_object_get(summary, "checkpoint_time")));
    }
out:
    json_decref(summary);
    EVP_PKEY_free(key);
    if (f != NULL)
        fclose(f);
    free(text);
    return err;
}

static const cli_opt device_opts[] = {
    {"product", CLI_OPT_STR, false, "P"},
    {"out", CLI_OPT_STR, true, "FILE"},
};
static const cli_opt product_opts[] = {{"out", CLI_OPT_STR, true, "FILE"}};
static const cli_opt verify_opts[] = {{"pubkey", CLI_OPT_STR, true, "PEM"}};
static const char *const serial_pos[] = {"SERIAL"};
static const char *const product_pos[] = {"PRODUCT"};
static const char *const file_pos[] = {"FILE"};

const cli_command cli_cmd_evidence_device = {
    {"evidence", "device", NULL},
    "SERIAL [--product P] --out FILE",
    "write the evidence bundle of a device: every entry behind its record, provable offline",
    {device_opts, N_ELEMS(device_opts), serial_pos, 1, 1},
    true,
    evidence_device,
};

const cli_command cli_cmd_evidence_product = {
    {"evidence", "product", NULL},
    "PRODUCT --out FILE",
    "write the evidence bundle of a product: its keys, batches and builds",
    {product_opts, N_ELEMS(product_opts), product_pos, 1, 1},
    true,
    evidence_product,
};

const cli_command cli_cmd_evidence_verify = {
    {"evidence", "verify", NULL},
    "FILE --pubkey PEM",
    "check an evidence bundle offline against the pinned audit public key",
    {verify_opts, N_ELEMS(verify_opts), file_pos, 1, 1},
    false,
    evidence_verify,
};
