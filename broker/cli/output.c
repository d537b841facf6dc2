/* output.c - how subcommands print: JSON on request, tables otherwise, files on --out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

kbr_err cli_text_open(cli_text *t)
{
    t->buf = NULL;
    t->len = 0;
    t->f = open_memstream(&t->buf, &t->len);
    return t->f != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err cli_text_close(cli_text *t, kbr_err err, char **out)
{
    if (t->f != NULL && fclose(t->f) != 0 && err == KBR_OK)
        err = KBR_ERR_NOMEM;
    t->f = NULL;
    *out = err == KBR_OK ? t->buf : NULL;
    if (err != KBR_OK)
        free(t->buf);
    t->buf = NULL;
    return err;
}

/* DEL is the one control jansson leaves as it is, even with JSON_ENSURE_ASCII. */
static int json_put_chunk(const char *buf, size_t size, void *data)
{
    FILE *f = data;
    const char *end = buf + size;

    while (buf < end) {
        const char *del = memchr(buf, 0x7f, (size_t)(end - buf));
        size_t n = (size_t)((del != NULL ? del : end) - buf);
        if (fwrite(buf, 1, n, f) != n || (del != NULL && fputs("\\u007f", f) == EOF))
            return -1;
        buf += n + (del != NULL);
    }
    return 0;
}

/*
 * jansson writes U+0080..U+009F, the bidi controls and DEL raw, and --json
 * output lands on terminals as often as in scripts: JSON_ENSURE_ASCII makes
 * every other non-ASCII character \uXXXX and json_put_chunk() escapes DEL.
 * Streamed, so a token in the body is not copied into another buffer.
 */
kbr_err cli_json_dumpf(FILE *f, const json_t *v, size_t flags)
{
    if (json_dump_callback(v, json_put_chunk, f, flags | JSON_ENSURE_ASCII | JSON_ENCODE_ANY) != 0)
        return KBR_ERR_IO;
    return KBR_OK;
}

kbr_err cli_print_json(FILE *f, const json_t *v, cli_error *ce)
{
    json_t *none = json_null();

    /* An empty 2xx body still prints valid JSON, so scripts can parse stdout. */
    if (cli_json_dumpf(f, v != NULL ? v : none, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != KBR_OK ||
        fputc('\n', f) == EOF)
        return cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write the output");
    return KBR_OK;
}

/* Escaped once more as a whole: idempotent on what its renderer escaped, a backstop on the rest. */
kbr_err cli_print_text(FILE *f, char *text, cli_error *ce)
{
    kbr_err err = KBR_OK;

    cli_term_put(f, text, CLI_TERM_LINES);
    if (ferror(f))
        err = cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write the output");
    free(text);
    return err;
}

kbr_err cli_print_lines(FILE *f, const char *text, cli_error *ce)
{
    cli_term_put(f, text, CLI_TERM_LINES);
    return ferror(f) ? cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write the output") : KBR_OK;
}

void cli_print_named(FILE *f, const char *what, const char *name)
{
    fprintf(f, "%s ", what);
    cli_term_put(f, name, CLI_TERM_LINE);
    fputc('\n', f);
}

void cli_print_error(FILE *f, kbr_err err, const cli_error *ce)
{
    fputs("keybroker: ", f);
    cli_term_put(f, ce->code[0] != '\0' ? ce->code : "error", CLI_TERM_LINE);
    fputs(": ", f);
    cli_term_put(f, ce->msg.text[0] != '\0' ? ce->msg.text : kbr_err_str(err), CLI_TERM_LINE);
    fputc('\n', f);
}

kbr_err cli_write_file(const char *path, const void *data, size_t len, unsigned mode, cli_error *ce)
{
    kbr_msg why = {{0}};

    if (kbr_file_write(path, data, len, mode, &why) != KBR_OK)
        return cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write %s", why.text);
    return KBR_OK;
}

kbr_err cli_check_out(const char *opt, const char *path, unsigned mode, cli_error *ce)
{
    kbr_msg why = {{0}};

    if (kbr_file_write_check(path, mode, &why) != KBR_OK)
        return cli_fail(ce, KBR_ERR_IO, "io_error", "--%s %s", opt, why.text);
    return KBR_OK;
}

bool cli_is_stdout(const char *path)
{
    return path != NULL && strcmp(path, "-") == 0;
}

cli_ctx cli_ctx_beside(const cli_ctx *ctx, const char *path)
{
    cli_ctx shown = *ctx;

    if (cli_is_stdout(path))
        shown.out = stderr;
    return shown;
}

const char *cli_json_str(const json_t *obj, const char *path)
{
    return json_string_value(cli_json_path(obj, path));
}

kbr_err cli_show(const cli_ctx *ctx, const json_t *body, const char *rows, const cli_column *cols,
                 size_t ncols, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *text = NULL;

    if (ctx->json)
        return cli_print_json(ctx->out, body, ce);
    if (rows != NULL)
        err = cli_table_from_json(json_object_get(body, rows), cols, ncols, &text);
    else
        err = cli_fields_from_json(body, cols, ncols, &text);
    if (err == KBR_ERR_BAD_REQUEST)
        return cli_fail(ce, err, "bad_response", "the response lacks the expected %s",
                        rows != NULL ? rows : "object");
    if (err != KBR_OK)
        return err;
    return cli_print_text(ctx->out, text, ce);
}

kbr_err cli_get_show(const cli_ctx *ctx, const char *path, const char *rows, const cli_column *cols,
                     size_t ncols, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_response resp = {0};

    KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
    KBR_GUARD(cli_show(ctx, resp.body, rows, cols, ncols, ce));
out:
    cli_response_cleanup(&resp);
    return err;
}

kbr_err cli_json_string_array(const char *const *v, size_t n, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *arr = json_array();

    *out = NULL;
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_string(v[i]);
        KBR_ENSURE(s != NULL, KBR_ERR_BAD_REQUEST);
        KBR_ENSURE(json_array_append_new(arr, s) == 0, KBR_ERR_NOMEM);
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    return err;
}

kbr_err cli_from_msg(cli_error *ce, kbr_err err, const kbr_msg *msg)
{
    const char *code = "error";

    if (err == KBR_ERR_BAD_REQUEST)
        code = CLI_USAGE;
    else if (err == KBR_ERR_IO)
        code = "io_error";
    else if (err == KBR_ERR_TOO_LARGE)
        code = "too_large";
    return cli_fail(ce, err, code, "%s", msg->text[0] != '\0' ? msg->text : kbr_err_str(err));
}
