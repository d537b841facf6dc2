/*
 * table.c - aligned text tables, the default output of every subcommand, and
 * the escaping that keeps server text from driving the terminal.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CLI_COL_GAP 2

static size_t utf8_width(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static const char *cell_text(const char *s)
{
    return s != NULL ? s : "-";
}

/* ---- terminal safety ---- */

/*
 * Beyond the C0 controls and DEL, the code points that change how a terminal
 * or a bidi-aware renderer shows what follows: the C1 controls (U+009B is
 * CSI wherever 8-bit controls are honoured), the bidi marks, embeddings,
 * overrides and isolates that reorder text, and the line and paragraph
 * separators.
 */
static bool term_unsafe(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
           cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/*
 * The length of the UTF-8 sequence at s and its code point, or 0 when it is
 * not one: a stray continuation byte, an overlong form (C0 9B would be a CSI
 * to a lax decoder), a surrogate, a code point past U+10FFFF, a cut sequence.
 */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
    size_t n;
    uint32_t v, min;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, v = s[0] & 0x1fu, min = 0x80;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, v = s[0] & 0x0fu, min = 0x800;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, v = s[0] & 0x07u, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* the terminating NUL stops here too */
            return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

static bool term_escaped(uint32_t cp, const char *keep)
{
    return term_unsafe(cp) && !(cp < 0x20 && strchr(keep, (int)cp) != NULL);
}

static void term_put_escape(FILE *f, uint32_t cp)
{
    if (cp == '\n')
        fputs("\\n", f);
    else if (cp == '\r')
        fputs("\\r", f);
    else if (cp == '\t')
        fputs("\\t", f);
    else
        fprintf(f, "\\u%04x", (unsigned)cp);
}

void cli_term_put(FILE *f, const char *s, const char *keep)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp = 0;

    while (*p != '\0') {
        size_t n = utf8_next(p, &cp);
        if (n == 0) {
            fprintf(f, "\\x%02x", *p++);
            continue;
        }
        if (term_escaped(cp, keep))
            term_put_escape(f, cp);
        else
            fwrite(p, 1, n, f);
        p += n;
    }
}

bool cli_term_plain(const char *s, const char *keep)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp = 0;

    while (*p != '\0') {
        size_t n = utf8_next(p, &cp);
        if (n == 0 || term_escaped(cp, keep))
            return false;
        p += n;
    }
    return true;
}

kbr_err cli_term_escape(const char *s, const char *keep, char **out)
{
    kbr_err err = KBR_OK;
    cli_text t = {0};

    KBR_GUARD(cli_text_open(&t));
    cli_term_put(t.f, s, keep);
out:
    return cli_text_close(&t, err, out);
}

/* ---- tables ---- */

static void put_row(FILE *f, const char *const *row, const size_t *width, size_t ncols)
{
    for (size_t c = 0; c < ncols; c++) {
        const char *t = cell_text(row[c]);
        fputs(t, f);
        if (c + 1 < ncols)
            fprintf(f, "%*s", (int)(width[c] - utf8_width(t) + CLI_COL_GAP), "");
    }
    fputc('\n', f);
}

static void column_widths(const char *const *headers, size_t ncols, const char *const *cells,
                          size_t nrows, size_t *width)
{
    for (size_t c = 0; c < ncols; c++) {
        width[c] = utf8_width(headers[c]);
        for (size_t r = 0; r < nrows; r++) {
            size_t w = utf8_width(cell_text(cells[r * ncols + c]));
            if (w > width[c])
                width[c] = w;
        }
    }
}

static void strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/*
 * Each cell as it will be shown, escaped as one line: the widths are those
 * of the escaped text, and a newline in a cell cannot forge a row. NULL
 * cells stay NULL.
 */
static kbr_err escape_cells(const char *const *in, size_t n, char ***out)
{
    kbr_err err = KBR_OK;
    char **v = calloc(n + 1, sizeof(*v));

    *out = NULL;
    KBR_ENSURE(v != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++)
        if (in[i] != NULL)
            KBR_GUARD(cli_term_escape(in[i], CLI_TERM_LINE, &v[i]));
    *out = v;
    v = NULL;
out:
    strv_free(v, n);
    return err;
}

static kbr_err render_shown(const char *const *headers, size_t ncols, const char *const *cells,
                            size_t nrows, char **out)
{
    kbr_err err = KBR_OK;
    size_t *width = NULL;
    cli_text t = {0};

    width = calloc(ncols, sizeof(*width));
    KBR_ENSURE(width != NULL, KBR_ERR_NOMEM);
    column_widths(headers, ncols, cells, nrows, width);
    KBR_GUARD(cli_text_open(&t));
    put_row(t.f, headers, width, ncols);
    for (size_t r = 0; r < nrows; r++)
        put_row(t.f, &cells[r * ncols], width, ncols);
out:
    free(width);
    return cli_text_close(&t, err, out);
}

kbr_err cli_table_render(const char *const *headers, size_t ncols, const char *const *cells,
                         size_t nrows, char **out)
{
    kbr_err err = KBR_OK;
    char **shown_headers = NULL, **shown_cells = NULL;

    *out = NULL;
    KBR_ENSURE(ncols > 0, KBR_ERR_INTERNAL);
    KBR_GUARD(escape_cells(headers, ncols, &shown_headers));
    KBR_GUARD(escape_cells(cells, nrows * ncols, &shown_cells));
    KBR_GUARD(render_shown((const char *const *)shown_headers, ncols,
                           (const char *const *)shown_cells, nrows, out));
out:
    strv_free(shown_cells, nrows * ncols);
    strv_free(shown_headers, ncols);
    return err;
}

const json_t *cli_json_path(const json_t *obj, const char *path)
{
    const json_t *v = obj;
    char seg[128];

    while (v != NULL && *path != '\0') {
        size_t len = strcspn(path, ".");
        if (!json_is_object(v) || len >= sizeof(seg))
            return NULL;
        memcpy(seg, path, len);
        seg[len] = '\0';
        v = json_object_get(v, seg);
        path += len + (path[len] == '.');
    }
    return v;
}

static bool is_scalar(const json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
}

static kbr_err scalar_text(const json_t *v, char **out)
{
    char num[64];

    if (json_is_string(v))
        *out = strdup(json_string_value(v));
    else if (json_is_integer(v))
        *out = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v)) > 0
                   ? strdup(num)
                   : NULL;
    else
        *out = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static bool all_scalar(const json_t *arr)
{
    size_t i;
    const json_t *e;

    json_array_foreach(arr, i, e) if (!is_scalar(e)) return false;
    return true;
}

static kbr_err join_array(const json_t *arr, char **out)
{
    kbr_err err = KBR_OK;
    char *item = NULL;
    size_t i;
    const json_t *e;
    cli_text t = {0};

    KBR_GUARD(cli_text_open(&t));
    json_array_foreach(arr, i, e)
    {
        KBR_GUARD(scalar_text(e, &item));
        fprintf(t.f, "%s%s", i > 0 ? "," : "", item);
        free(item);
        item = NULL;
    }
out:
    return cli_text_close(&t, err, out);
}

kbr_err cli_json_cell(const json_t *v, char **out)
{
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return KBR_OK;
    if (is_scalar(v))
        return scalar_text(v, out);
    if (json_is_array(v) && all_scalar(v))
        return join_array(v, out);
    *out = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err render_cells(const char *const *headers, size_t ncols, char **cells, size_t nrows,
                            char **out)
{
    return cli_table_render(headers, ncols, (const char *const *)cells, nrows, out);
}

kbr_err cli_table_from_json(const json_t *rows, const cli_column *cols, size_t ncols, char **out)
{
    kbr_err err = KBR_OK;
    size_t nrows = json_array_size(rows);
    const char **headers = NULL;
    char **cells = NULL;

    *out = NULL;
    KBR_ENSURE(json_is_array(rows), KBR_ERR_BAD_REQUEST);
    headers = calloc(ncols, sizeof(*headers));
    cells = calloc(nrows * ncols + 1, sizeof(*cells));
    KBR_ENSURE(headers != NULL && cells != NULL, KBR_ERR_NOMEM);
    for (size_t c = 0; c < ncols; c++)
        headers[c] = cols[c].header;
    for (size_t r = 0; r < nrows; r++)
        for (size_t c = 0; c < ncols; c++)
            KBR_GUARD(cli_json_cell(cli_json_path(json_array_get(rows, r), cols[c].path),
                                    &cells[r * ncols + c]));
    KBR_GUARD(render_cells(headers, ncols, cells, nrows, out));
out:
    strv_free(cells, nrows * ncols);
    free(headers);
    return err;
}

kbr_err cli_fields_from_json(const json_t *obj, const cli_column *cols, size_t ncols, char **out)
{
    static const char *const headers[] = {"FIELD", "VALUE"};
    kbr_err err = KBR_OK;
    char **cells = NULL;

    *out = NULL;
    KBR_ENSURE(json_is_object(obj), KBR_ERR_BAD_REQUEST);
    cells = calloc(2 * ncols + 1, sizeof(*cells));
    KBR_ENSURE(cells != NULL, KBR_ERR_NOMEM);
    for (size_t c = 0; c < ncols; c++) {
        cells[2 * c] = strdup(cols[c].header);
        KBR_ENSURE(cells[2 * c] != NULL, KBR_ERR_NOMEM);
        KBR_GUARD(cli_json_cell(cli_json_path(obj, cols[c].path), &cells[2 * c + 1]));
    }
    KBR_GUARD(render_cells(headers, 2, cells, ncols, out));
out:
    strv_free(cells, 2 * ncols);
    return err;
}
