/* table.c - aligned text tables, the default output of every subcommand. */
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

void cli_fput_sanitized(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        fputc(c < 0x20 || c == 0x7f ? '?' : c, f);
    }
}

static void put_row(FILE *f, const char *const *row, const size_t *width, size_t ncols)
{
    for (size_t c = 0; c < ncols; c++) {
        const char *t = cell_text(row[c]);
        cli_fput_sanitized(f, t);
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

/* Closes a memstream, which is when its buffer becomes final. */
static kbr_err close_stream(FILE **f)
{
    int rc = fclose(*f);

    *f = NULL;
    return rc == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err cli_table_render(const char *const *headers, size_t ncols, const char *const *cells,
                         size_t nrows, char **out)
{
    kbr_err err = KBR_OK;
    size_t *width = NULL, len = 0;
    char *buf = NULL;
    FILE *f = NULL;

    *out = NULL;
    KBR_ENSURE(ncols > 0, KBR_ERR_INTERNAL);
    width = calloc(ncols, sizeof(*width));
    KBR_ENSURE(width != NULL, KBR_ERR_NOMEM);
    column_widths(headers, ncols, cells, nrows, width);
    f = open_memstream(&buf, &len);
    KBR_ENSURE(f != NULL, KBR_ERR_NOMEM);
    put_row(f, headers, width, ncols);
    for (size_t r = 0; r < nrows; r++)
        put_row(f, &cells[r * ncols], width, ncols);
    KBR_GUARD(close_stream(&f));
    *out = buf;
    buf = NULL;
out:
    if (f != NULL)
        fclose(f);
    free(buf);
    free(width);
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
    char *buf = NULL, *item = NULL;
    size_t len = 0, i;
    const json_t *e;
    FILE *f = open_memstream(&buf, &len);

    KBR_ENSURE(f != NULL, KBR_ERR_NOMEM);
    json_array_foreach(arr, i, e)
    {
        KBR_GUARD(scalar_text(e, &item));
        fprintf(f, "%s%s", i > 0 ? "," : "", item);
        free(item);
        item = NULL;
    }
    KBR_GUARD(close_stream(&f));
    *out = buf;
    buf = NULL;
out:
    if (f != NULL)
        fclose(f);
    free(buf);
    return err;
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

static void cells_free(char **cells, size_t n)
{
    if (cells == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(cells[i]);
    free(cells);
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
    cells_free(cells, nrows * ncols);
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
    cells_free(cells, 2 * ncols);
    return err;
}
