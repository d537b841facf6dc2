/*
 * cmd_audit_verify.c - keybroker audit verify: checks an exported log
 * against a signed checkpoint offline, with nothing but the files given.
 * --pubkey is the first audit key, pinned: the audit keys after it are
 * taken only from the rotations the log records, each signed by the key
 * before it (kbr_audit_verify_log).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "cli.h"
#include "kbr_audit.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Both files are evidence from outside, read with duplicate keys refused: an
 * entry or checkpoint holding a member twice (a decoy first, the value that
 * verifies last) would verify here, where jansson keeps the last, and say
 * something else to a reader that keeps the first.
 */
#define VERIFY_JSON_FLAGS JSON_REJECT_DUPLICATES

/* Whitespace only; measured by length, so a NUL cannot hide the rest of the line. */
static bool line_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (strchr(" \t\r\n", line[i]) == NULL || line[i] == '\0')
            return false;
    return true;
}

/*
 * One entry per line, as `keybroker audit export` writes them; blank lines
 * are skipped. Each line is parsed whole (json_loadb): a NUL in it is an
 * error, not the end of what is read.
 */
static kbr_err read_export(const char *path, json_t **out, cli_error *ce)
{
    kbr_err err = KBR_OK;
    FILE *f = fopen(path, "r");
    json_t *entries = json_array(), *e = NULL;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    json_error_t jerr;

    *out = NULL;
    KBR_ENSURE(f != NULL, cli_fail(ce, KBR_ERR_IO, "io_error", "%s: cannot open", path));
    KBR_ENSURE(entries != NULL, KBR_ERR_NOMEM);
    while ((len = getline(&line, &cap, f)) != -1) {
        lineno++;
        if (line_blank(line, (size_t)len))
            continue;
        e = json_loadb(line, (size_t)len, VERIFY_JSON_FLAGS, &jerr);
        KBR_ENSURE(e != NULL, cli_fail(ce, KBR_ERR_BAD_REQUEST, "verify_failed", "%s:%zu: %s", path,
                                       lineno, jerr.text));
        KBR_ENSURE(json_is_object(e), cli_fail(ce, KBR_ERR_BAD_REQUEST, "verify_failed",
                                               "%s:%zu: not a JSON object", path, lineno));
        KBR_ENSURE(json_array_append_new(entries, e) == 0, KBR_ERR_NOMEM);
        e = NULL;
    }
    KBR_ENSURE(!ferror(f), cli_fail(ce, KBR_ERR_IO, "io_error", "%s: cannot read", path));
    *out = entries;
    entries = NULL;
out:
    json_decref(e);
    json_decref(entries);
    free(line);
    if (f != NULL)
        fclose(f);
    return err;
}

static kbr_err read_checkpoint(const char *path, json_t **out, cli_error *ce)
{
    json_error_t jerr;

    *out = json_load_file(path, VERIFY_JSON_FLAGS, &jerr);
    if (*out == NULL)
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, "verify_failed", "%s:%d: %s", path, jerr.line,
                        jerr.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, "verify_failed", "%s: not a JSON object", path);
    }
    return KBR_OK;
}

static kbr_err read_pubkey(const char *path, EVP_PKEY **out, cli_error *ce)
{
    FILE *f = fopen(path, "r");

    *out = NULL;
    if (f == NULL)
        return cli_fail(ce, KBR_ERR_IO, "io_error", "%s: cannot open", path);
    *out = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (*out == NULL)
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, "verify_failed", "%s: not a PEM public key", path);
    return KBR_OK;
}

static kbr_err report_ok(cli_ctx *ctx, const json_t *entries, const json_t *cp,
                         const kbr_audit_log_report *rep)
{
    json_int_t size = json_integer_value(json_object_get(cp, "size"));
    char id[9];

    snprintf(id, sizeof(id), "%08x", rep->key_id);
    if (ctx->json) {
        json_t *r =
            json_pack("{s:b,s:I,s:I,s:O,s:I,s:I,s:s?,s:s?}", "ok", 1, "entries",
                      (json_int_t)json_array_size(entries), "size", size, "root_hash",
                      json_object_get(cp, "root_hash"), "checkpoints", (json_int_t)rep->checkpoints,
                      "audit_keys", (json_int_t)rep->keys, "key_id", rep->key_id != 0 ? id : NULL,
                      "origin", rep->origin[0] != '\0' ? rep->origin : NULL);
        kbr_err err =
            r != NULL ? cli_json_dumpf(ctx->out, r, JSON_COMPACT | JSON_SORT_KEYS) : KBR_ERR_NOMEM;

        json_decref(r);
        return err == KBR_OK && fputc('\n', ctx->out) == EOF ? KBR_ERR_IO : err;
    }
    fprintf(ctx->out,
            "ok: %zu entries chain from seq 1; the first %" JSON_INTEGER_FORMAT
            " match the signed checkpoint\n",
            json_array_size(entries), size);
    fprintf(ctx->out,
            "ok: %zu checkpoints in the log verify along a chain of %zu audit key%s from the "
            "pinned key\n",
            rep->checkpoints, rep->keys, rep->keys == 1 ? "" : "s");
    if (rep->key_id != 0) {
        fputs("ok: the last audit key is ", ctx->out);
        cli_term_put(ctx->out, rep->origin, NULL);
        fprintf(ctx->out, "+%s\n", id);
    }
    return KBR_OK;
}

static kbr_err audit_verify(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *entries = NULL, *cp = NULL;
    EVP_PKEY *key = NULL;
    kbr_msg msg = {{0}};
    kbr_audit_log_report rep;

    KBR_GUARD(read_export(cli_args_pos(ctx->args, 0), &entries, ce));
    KBR_GUARD(read_checkpoint(cli_args_str(ctx->args, "checkpoint"), &cp, ce));
    KBR_GUARD(read_pubkey(cli_args_str(ctx->args, "pubkey"), &key, ce));
    err = kbr_audit_verify_log(entries, cp, key, &rep, &msg);
    KBR_ENSURE(err == KBR_OK, cli_fail(ce, err, "verify_failed", "%s",
                                       msg.text[0] != '\0' ? msg.text : kbr_err_str(err)));
    KBR_GUARD(report_ok(ctx, entries, cp, &rep));
out:
    EVP_PKEY_free(key);
    json_decref(cp);
    json_decref(entries);
    return err;
}

static const cli_opt verify_opts[] = {
    {"checkpoint", CLI_OPT_STR, true, "CP.json"},
    {"pubkey", CLI_OPT_STR, true, "PEM"},
};

static const char *const verify_pos[] = {"FILE"};

const cli_command cli_cmd_audit_verify = {
    {"audit", "verify", NULL},
    "FILE --checkpoint CP.json --pubkey FIRST-KEY.pem",
    "check an exported audit log against a signed checkpoint offline, following the audit keys "
    "from the first",
    {verify_opts, N_ELEMS(verify_opts), verify_pos, 1, 1},
    false,
    audit_verify,
};
