/* cmd_audit.c - keybroker audit list|export, health and jwks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define N_ELEMS(a)      (sizeof(a) / sizeof((a)[0]))
#define CLI_EXPORT_PAGE "1000"

static const cli_column audit_columns[] = {
    {"SEQ", "seq"},
    {"TIME", "time"},
    {"SUB", "sub"},
    {"OP", "op"},
    {"KEY", "key"},
    {"OUTCOME", "outcome"},
    {"ERROR_CODE", "error_code"},
};

static const cli_column health_fields[] = {
    {"status", "status"},
    {"hsm", "hsm"},
    {"audit", "audit"},
};

static const cli_column jwks_columns[] = {
    {"KID", "kid"}, {"KTY", "kty"}, {"CRV", "crv"}, {"X", "x"}, {"Y", "y"},
};

static kbr_err audit_list(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = strdup("/v1/audit");
    const char *after = cli_args_str(ctx->args, "after");
    const char *limit = cli_args_str(ctx->args, "limit");

    KBR_ENSURE(path != NULL, KBR_ERR_NOMEM);
    if (after != NULL)
        KBR_GUARD(cli_query_add(ctx->client, &path, "after", after));
    if (limit != NULL)
        KBR_GUARD(cli_query_add(ctx->client, &path, "limit", limit));
    KBR_GUARD(cli_get_show(ctx, path, "entries", audit_columns, N_ELEMS(audit_columns), ce));
out:
    free(path);
    return err;
}

/* The first page omits `after`, so the export starts at the first entry whatever it is numbered. */
static kbr_err page_path(cli_client *c, bool first, json_int_t after, char **out)
{
    kbr_err err = KBR_OK;
    char *path = strdup("/v1/audit"), num[32];

    *out = NULL;
    KBR_ENSURE(path != NULL, KBR_ERR_NOMEM);
    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, after);
    if (!first)
        KBR_GUARD(cli_query_add(c, &path, "after", num));
    KBR_GUARD(cli_query_add(c, &path, "limit", CLI_EXPORT_PAGE));
    *out = path;
    path = NULL;
out:
    free(path);
    return err;
}

/*
 * The broker records every read of the log in the log, so paging until a
 * page comes back empty would never end. The export stops at the record of
 * its own first request (X-Audit-Seq): the log as it stood when it began.
 */
typedef struct {
    bool first;
    bool done;
    json_int_t last;  /* seq of the last entry written */
    json_int_t bound; /* the first page's X-Audit-Seq; -1: until an empty page */
} export_state;

static kbr_err write_entry(FILE *f, const json_t *e, export_state *st, cli_error *ce)
{
    const json_t *seq = json_object_get(e, "seq");
    json_int_t n = json_integer_value(seq);

    if (!json_is_integer(seq) || (!st->first && n <= st->last))
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                        "audit entries out of order after seq %" JSON_INTEGER_FORMAT, st->last);
    st->first = false;
    if (st->bound >= 0 && n > st->bound) {
        st->done = true;
        return KBR_OK;
    }
    st->last = n;
    st->done = st->bound >= 0 && n == st->bound;
    if (cli_json_dumpf(f, e, JSON_COMPACT | JSON_PRESERVE_ORDER) != KBR_OK || fputc('\n', f) == EOF)
        return cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write the export");
    return KBR_OK;
}

static kbr_err write_page(FILE *f, const json_t *entries, export_state *st, cli_error *ce)
{
    kbr_err err = KBR_OK;
    size_t i;
    const json_t *e;

    st->done = json_array_size(entries) == 0;
    json_array_foreach(entries, i, e)
    {
        KBR_GUARD(write_entry(f, e, st, ce));
        if (st->done)
            break;
    }
out:
    return err;
}

static kbr_err export_page(cli_ctx *ctx, export_state *st, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    cli_response resp = {0};
    const json_t *entries = NULL;

    KBR_GUARD(page_path(ctx->client, st->first, st->last, &path));
    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    entries = json_object_get(resp.body, "entries");
    KBR_ENSURE(json_is_array(entries), cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                                                "the response has no entries array"));
    if (st->first)
        st->bound = resp.audit_seq;
    KBR_GUARD(write_page(ctx->out, entries, st, ce));
out:
    cli_response_cleanup(&resp);
    free(path);
    return err;
}

static kbr_err audit_export(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    export_state st = {.first = true, .done = false, .last = 0, .bound = -1};

    while (!st.done)
        KBR_GUARD(export_page(ctx, &st, ce));
    KBR_ENSURE(fflush(ctx->out) == 0 && !ferror(ctx->out),
               cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write the export"));
out:
    return err;
}

/* A 503 health answer is a report, not an error body: show which part is down. */
static kbr_err report_unhealthy(const cli_ctx *ctx, const json_t *body, cli_error *ce)
{
    kbr_err err = cli_show(ctx, body, NULL, health_fields, N_ELEMS(health_fields), ce);

    if (err != KBR_OK)
        return err;
    return cli_fail(ce, KBR_ERR_HSM, "unhealthy", "the broker reports status %s",
                    cli_json_str(body, "status"));
}

static kbr_err health(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {0};

    err = cli_call(ctx->client, "GET", "/v1/health", NULL, &resp, ce);
    if (err != KBR_OK && resp.status == 503 && cli_json_str(resp.body, "status") != NULL)
        err = report_unhealthy(ctx, resp.body, ce);
    else if (err == KBR_OK)
        err = cli_show(ctx, resp.body, NULL, health_fields, N_ELEMS(health_fields), ce);
    cli_response_cleanup(&resp);
    return err;
}

static kbr_err jwks(cli_ctx *ctx, cli_error *ce)
{
    return cli_get_show(ctx, "/v1/jwks", "keys", jwks_columns, N_ELEMS(jwks_columns), ce);
}

static const cli_column checkpoint_fields[] = {
    {"size", "size"},           {"root_hash", "root_hash"},     {"time", "time"},
    {"audit_seq", "audit_seq"}, {"origin", "origin"},           {"key_id", "key_id"},
    {"vkey", "vkey"},           {"next_key_id", "next_key_id"}, {"signature_b64", "signature_b64"},
};

static const cli_column proof_fields[] = {
    {"seq", "seq"},
    {"leaf_index", "leaf_index"},
    {"size", "size"},
    {"leaf_hash", "leaf_hash"},
    {"root_hash", "root_hash"},
    {"audit_path", "audit_path"},
};

static const cli_column consistency_fields[] = {
    {"first", "first"},
    {"second", "second"},
    {"proof", "proof"},
};

static const cli_column rotate_fields[] = {
    {"size", "size"},     {"root_hash", "root_hash"},     {"time", "time"},
    {"key_id", "key_id"}, {"next_key_id", "next_key_id"}, {"audit_seq", "audit_seq"},
};

/*
 * GET /v1/audit/checkpoint; `--json > cp.json` is what `audit verify --checkpoint` reads.
 * --note prints (or with --out writes) the same head as the C2SP signed note.
 */
static kbr_err audit_checkpoint(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {0};
    const char *note, *out = cli_args_str(ctx->args, "out");

    if (!cli_args_flag(ctx->args, "note"))
        return cli_get_show(ctx, "/v1/audit/checkpoint", NULL, checkpoint_fields,
                            N_ELEMS(checkpoint_fields), ce);
    KBR_GUARD(cli_call(ctx->client, "GET", "/v1/audit/checkpoint", NULL, &resp, ce));
    note = cli_json_str(resp.body, "note");
    KBR_ENSURE(note != NULL, cli_fail(ce, KBR_ERR_NOT_FOUND, "not_found",
                                      "the latest checkpoint has no signed note"));
    if (out != NULL)
        KBR_GUARD(cli_write_file(out, note, strlen(note), 0644, ce));
    else
        KBR_GUARD(cli_print_lines(ctx->out, note, ce));
out:
    cli_response_cleanup(&resp);
    return err;
}

static kbr_err audit_consistency(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = strdup("/v1/audit/consistency");

    KBR_ENSURE(path != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(cli_query_add(ctx->client, &path, "first", cli_args_str(ctx->args, "first")));
    KBR_GUARD(cli_query_add(ctx->client, &path, "second", cli_args_str(ctx->args, "second")));
    KBR_GUARD(cli_get_show(ctx, path, NULL, consistency_fields, N_ELEMS(consistency_fields), ce));
out:
    free(path);
    return err;
}

static kbr_err audit_rotate_key(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = json_object();
    cli_response resp = {0};
    const char *reason = cli_args_str(ctx->args, "reason");

    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    if (reason != NULL)
        KBR_ENSURE(json_object_set_new(body, "reason", json_string(reason)) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(cli_call(ctx->client, "POST", "/v1/audit/key/rotate", body, &resp, ce));
    KBR_GUARD(cli_show(ctx, resp.body, NULL, rotate_fields, N_ELEMS(rotate_fields), ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static kbr_err audit_proof(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = strdup("/v1/audit/proof");
    const char *seq = cli_args_str(ctx->args, "seq");
    const char *size = cli_args_str(ctx->args, "size");

    KBR_ENSURE(path != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(cli_query_add(ctx->client, &path, "seq", seq));
    if (size != NULL)
        KBR_GUARD(cli_query_add(ctx->client, &path, "size", size));
    KBR_GUARD(cli_get_show(ctx, path, NULL, proof_fields, N_ELEMS(proof_fields), ce));
out:
    free(path);
    return err;
}

static const cli_opt proof_opts[] = {
    {"seq", CLI_OPT_INT, true, "N"},
    {"size", CLI_OPT_INT, false, "M"},
};

static const cli_opt checkpoint_opts[] = {
    {"note", CLI_OPT_FLAG, false, NULL},
    {"out", CLI_OPT_STR, false, "FILE"},
};

const cli_command cli_cmd_audit_checkpoint = {
    {"audit", "checkpoint", NULL},
    "[--note [--out FILE]]",
    "the latest signed tree head of the audit log (--json for audit verify, --note as a C2SP "
    "signed note)",
    {checkpoint_opts, N_ELEMS(checkpoint_opts), NULL, 0, 0},
    true,
    audit_checkpoint,
};

static const cli_opt consistency_opts[] = {
    {"first", CLI_OPT_INT, true, "M"},
    {"second", CLI_OPT_INT, true, "N"},
};

const cli_command cli_cmd_audit_consistency = {
    {"audit", "consistency", NULL},
    "--first M --second N",
    "a consistency proof from the tree of the first M entries to that of the first N",
    {consistency_opts, N_ELEMS(consistency_opts), NULL, 0, 0},
    true,
    audit_consistency,
};

static const cli_opt rotate_opts[] = {
    {"reason", CLI_OPT_STR, false, "TEXT"},
};

const cli_command cli_cmd_audit_rotate_key = {
    {"audit", "rotate-key", NULL},
    "[--reason TEXT]",
    "make a new audit key in the HSM, named in a checkpoint the current key signs",
    {rotate_opts, N_ELEMS(rotate_opts), NULL, 0, 0},
    true,
    audit_rotate_key,
};

const cli_command cli_cmd_audit_proof = {
    {"audit", "proof", NULL},
    "--seq N [--size M]",
    "an inclusion proof of entry N in the tree of the first M entries",
    {proof_opts, N_ELEMS(proof_opts), NULL, 0, 0},
    true,
    audit_proof,
};

static const cli_opt list_opts[] = {
    {"after", CLI_OPT_INT, false, "N"},
    {"limit", CLI_OPT_INT, false, "N"},
};

const cli_command cli_cmd_audit_list = {
    {"audit", "list", NULL},
    "[--after N] [--limit N]",
    "list audit entries",
    {list_opts, N_ELEMS(list_opts), NULL, 0, 0},
    true,
    audit_list,
};

const cli_command cli_cmd_audit_export = {
    {"audit", "export", NULL}, "",   "write the whole audit log as JSON lines to stdout",
    {NULL, 0, NULL, 0, 0},     true, audit_export,
};

const cli_command cli_cmd_health = {
    {"health", NULL, NULL}, "",    "check the broker, its HSM and its audit log (no token needed)",
    {NULL, 0, NULL, 0, 0},  false, health,
};

const cli_command cli_cmd_jwks = {
    {"jwks", NULL, NULL},  "",    "show the token issuer's public keys (no token needed)",
    {NULL, 0, NULL, 0, 0}, false, jwks,
};
