/*
 * sqlite_verify.c - the SQLite back end's part of keybrokerd --verify-store: a scratch
 * store written without durability, the version of the log format a store starts at, and
 * the comparison of two stores, schema first, then every table row by row.
 *
 * The comparison streams both stores in primary-key order (rowid order for tables without
 * one) and merges them, so it needs no memory or temporary space in proportion to the store
 * and stops at the first difference: the message names the table, the row by its key (and
 * the audit entry that recorded it, when the table says), the column and both values.
 * Generated columns are left out: they are functions of the columns compared.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

#define SHOWN_MAX 96 /* characters of a value a message shows */

/* No journal at all: a statement that fails is a difference found, and the scratch is thrown
 * away; what it saves is the statement journal every write would keep. */
kbr_err kbr_sqlite_scratch_mode(kbr_store *st)
{
    return kbr_sqlite_err(sqlite3_exec(
        SQ(st)->db, "PRAGMA journal_mode=OFF; PRAGMA locking_mode=EXCLUSIVE;", NULL, NULL, NULL));
}

kbr_err kbr_sqlite_bulk_mode(kbr_store *st)
{
    return kbr_sqlite_err(
        sqlite3_exec(SQ(st)->db,
                     "PRAGMA synchronous=OFF; PRAGMA cache_size=-1048576; PRAGMA temp_store=MEMORY;"
                     " PRAGMA mmap_size=2147418112; PRAGMA wal_autocheckpoint=100000",
                     NULL, NULL, NULL));
}

kbr_err kbr_sqlite_effects_from(kbr_store *st, int64_t *seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *seq = 1;
    rc = sqlite3_prepare_v2(SQ(st)->db, "SELECT min(effects_from) FROM log_effects", -1, &stmt,
                            NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_ENSURE(sqlite3_column_type(stmt, 0) == SQLITE_INTEGER, KBR_ERR_STORE);
    *seq = sqlite3_column_int64(stmt, 0);
out:
    sqlite3_finalize(stmt);
    return err;
}

kbr_err kbr_sqlite_integrity(kbr_store *st, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    const char *first;
    int rc;

    rc = sqlite3_prepare_v2(SQ(st)->db, "PRAGMA integrity_check(1)", -1, &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    first = kbr_sqlite_text(stmt, 0);
    KBR_ENSURE(first != NULL && strcmp(first, "ok") == 0,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "the database file is damaged or was edited below SQL (its indexes no "
                        "longer match their tables): %.200s",
                        first != NULL ? first : "no answer"));
out:
    sqlite3_finalize(stmt);
    return err;
}

/* ---- values ---- */

static int type_rank(int type)
{
    switch (type) {
    case SQLITE_NULL:
        return 0;
    case SQLITE_INTEGER:
    case SQLITE_FLOAT:
        return 1;
    case SQLITE_TEXT:
        return 2;
    default:
        return 3;
    }
}

/* SQLite's own order for the BINARY collation: NULL, numbers, text, blobs. */
static int value_cmp(sqlite3_stmt *a, sqlite3_stmt *b, int col)
{
    int ta = sqlite3_column_type(a, col), tb = sqlite3_column_type(b, col), c;
    size_t la, lb;

    if (type_rank(ta) != type_rank(tb))
        return type_rank(ta) < type_rank(tb) ? -1 : 1;
    switch (type_rank(ta)) {
    case 0:
        return 0;
    case 1:
        if (ta == SQLITE_INTEGER && tb == SQLITE_INTEGER) {
            sqlite3_int64 x = sqlite3_column_int64(a, col), y = sqlite3_column_int64(b, col);
            return x < y ? -1 : x > y;
        } else {
            double x = sqlite3_column_double(a, col), y = sqlite3_column_double(b, col);
            return x < y ? -1 : x > y;
        }
    default: {
        const void *pa = ta == SQLITE_TEXT ? (const void *)sqlite3_column_text(a, col)
                                           : sqlite3_column_blob(a, col);
        const void *pb = tb == SQLITE_TEXT ? (const void *)sqlite3_column_text(b, col)
                                           : sqlite3_column_blob(b, col);
        la = (size_t)sqlite3_column_bytes(a, col);
        lb = (size_t)sqlite3_column_bytes(b, col);
        c = la == 0 || lb == 0 ? 0 : memcmp(pa, pb, la < lb ? la : lb);
        if (c != 0)
            return c < 0 ? -1 : 1;
        return la < lb ? -1 : la > lb;
    }
    }
}

/* A value as a message shows it: quoted and cut short, without control characters. */
static void value_show(sqlite3_stmt *s, int col, char *out, size_t n)
{
    const unsigned char *t;
    size_t len, i, o = 0;

    switch (sqlite3_column_type(s, col)) {
    case SQLITE_NULL:
        snprintf(out, n, "null");
        return;
    case SQLITE_INTEGER:
        snprintf(out, n, "%lld", (long long)sqlite3_column_int64(s, col));
        return;
    case SQLITE_FLOAT:
        snprintf(out, n, "%g", sqlite3_column_double(s, col));
        return;
    case SQLITE_BLOB:
        snprintf(out, n, "<%d bytes>", sqlite3_column_bytes(s, col));
        return;
    default:
        break;
    }
    t = sqlite3_column_text(s, col);
    len = (size_t)sqlite3_column_bytes(s, col);
    if (n < 8)
        return;
    out[o++] = '"';
    for (i = 0; i < len && i < SHOWN_MAX && o + 5 < n; i++)
        out[o++] = t[i] < 0x20 || t[i] == 0x7f ? '?' : (char)t[i];
    if (i < len && o + 5 < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* ---- tables ---- */

#define COLS_MAX 64

typedef struct {
    char name[128];
    int ncols;     /* columns selected, rowid first when the table has no key */
    int nkey;      /* the first nkey selected columns are the key */
    int audit_seq; /* index of an audit_seq column, or -1 */
    char *cols[COLS_MAX];
    char *select;
} table_shape;

static void shape_free(table_shape *t)
{
    for (int i = 0; i < t->ncols; i++)
        free(t->cols[i]);
    free(t->select);
    memset(t, 0, sizeof(*t));
}

static kbr_err add_col(table_shape *t, const char *name)
{
    if (t->ncols >= COLS_MAX)
        return KBR_ERR_INTERNAL;
    t->cols[t->ncols] = strdup(name);
    if (t->cols[t->ncols] == NULL)
        return KBR_ERR_NOMEM;
    if (strcmp(name, "audit_seq") == 0)
        t->audit_seq = t->ncols;
    t->ncols++;
    return KBR_OK;
}

/* Key columns in key order, then the other stored columns in table order. */
static kbr_err table_shape_of(sqlite3 *db, const char *table, table_shape *t)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    char *sql = NULL;
    size_t len = 0;
    FILE *f = NULL;
    int rc, pass;

    memset(t, 0, sizeof(*t));
    t->audit_seq = -1;
    snprintf(t->name, sizeof(t->name), "%s", table);
    /* hidden: 0 stored, 1 hidden (virtual tables), 2 and 3 generated */
    rc = sqlite3_prepare_v2(db,
                            "SELECT name, pk FROM pragma_table_xinfo(?1) WHERE hidden = 0"
                            " ORDER BY pk = 0, pk, cid",
                            -1, &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    for (pass = 0; (rc = sqlite3_step(stmt)) == SQLITE_ROW; pass++) {
        if (pass == 0 && sqlite3_column_int(stmt, 1) == 0)
            KBR_GUARD(add_col(t, "rowid"));
        if (sqlite3_column_int(stmt, 1) > 0)
            t->nkey++;
        KBR_GUARD(add_col(t, kbr_sqlite_text(stmt, 0)));
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
    KBR_ENSURE(t->ncols > 0, KBR_ERR_STORE);
    if (t->nkey == 0)
        t->nkey = 1; /* the rowid */
    f = open_memstream(&sql, &len);
    KBR_ENSURE(f != NULL, KBR_ERR_NOMEM);
    fputs("SELECT ", f);
    for (int i = 0; i < t->ncols; i++)
        fprintf(f, "%s\"%s\"", i > 0 ? ", " : "", t->cols[i]);
    fprintf(f, " FROM \"%s\" ORDER BY ", table);
    for (int i = 0; i < t->nkey; i++)
        fprintf(f, "%s\"%s\"", i > 0 ? ", " : "", t->cols[i]);
    rc = fclose(f);
    f = NULL;
    KBR_ENSURE(rc == 0, KBR_ERR_NOMEM);
    /* a quoted "rowid" is the rowid: no table of the schema has a column of that name */
    t->select = sql;
    sql = NULL;
out:
    if (f != NULL)
        fclose(f);
    free(sql);
    sqlite3_finalize(stmt);
    return err;
}

/* "(product = 'door', serial = 'SN-1')" and ", recorded by audit entry N" where it says. */
static void row_name(const table_shape *t, sqlite3_stmt *s, char *out, size_t n)
{
    char v[SHOWN_MAX + 16];
    size_t o = 0;

    o += (size_t)snprintf(out + o, n - o, "(");
    for (int i = 0; i < t->nkey && o < n; i++) {
        value_show(s, i, v, sizeof(v));
        o += (size_t)snprintf(out + o, n - o, "%s%s = %s", i > 0 ? ", " : "", t->cols[i], v);
    }
    if (o < n)
        o += (size_t)snprintf(out + o, n - o, ")");
    if (t->audit_seq >= 0 && o < n && sqlite3_column_type(s, t->audit_seq) == SQLITE_INTEGER)
        snprintf(out + o, n - o, ", recorded by audit entry %lld",
                 (long long)sqlite3_column_int64(s, t->audit_seq));
}

static int key_cmp(const table_shape *t, sqlite3_stmt *a, sqlite3_stmt *b)
{
    for (int i = 0; i < t->nkey; i++) {
        int c = value_cmp(a, b, i);
        if (c != 0)
            return c;
    }
    return 0;
}

static kbr_err differs(kbr_msg *msg, const char *table, const char *row, const char *rest)
{
    return kbr_fail(msg, KBR_ERR_CONFLICT, "table %s, row %s: %s", table, row, rest);
}

static kbr_err compare_table(sqlite3 *store, sqlite3 *rebuilt, const char *table, int64_t *rows,
                             kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    table_shape t;
    sqlite3_stmt *a = NULL, *b = NULL;
    int ra, rb, rc;
    char row[512], va[SHOWN_MAX + 16], vb[SHOWN_MAX + 16], what[512];

    KBR_GUARD(table_shape_of(rebuilt, table, &t));
    rc = sqlite3_prepare_v2(store, t.select, -1, &a, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    rc = sqlite3_prepare_v2(rebuilt, t.select, -1, &b, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    ra = sqlite3_step(a);
    rb = sqlite3_step(b);
    while (ra == SQLITE_ROW || rb == SQLITE_ROW) {
        int c = ra != SQLITE_ROW ? 1 : rb != SQLITE_ROW ? -1 : key_cmp(&t, a, b);
        if (c < 0) {
            row_name(&t, a, row, sizeof(row));
            KBR_GUARD(differs(msg, table, row, "is in the store, but no audit entry records it"));
        }
        if (c > 0) {
            row_name(&t, b, row, sizeof(row));
            KBR_GUARD(
                differs(msg, table, row, "the log records it, but the store does not have it"));
        }
        for (int i = t.nkey; i < t.ncols; i++) {
            if (value_cmp(a, b, i) == 0)
                continue;
            row_name(&t, b, row, sizeof(row));
            value_show(a, i, va, sizeof(va));
            value_show(b, i, vb, sizeof(vb));
            snprintf(what, sizeof(what), "%s is %s in the store, %s by the log", t.cols[i], va, vb);
            KBR_GUARD(differs(msg, table, row, what));
        }
        (*rows)++;
        ra = sqlite3_step(a);
        rb = sqlite3_step(b);
    }
    KBR_ENSURE(ra == SQLITE_DONE, kbr_sqlite_err(ra));
    KBR_ENSURE(rb == SQLITE_DONE, kbr_sqlite_err(rb));
out:
    sqlite3_finalize(a);
    sqlite3_finalize(b);
    shape_free(&t);
    return err;
}

/*
 * The schema first: a table, index or trigger that is not this broker's (an extra trigger
 * could rewrite what the writer inserts) or differs from it.
 */
static kbr_err compare_schema(sqlite3 *store, sqlite3 *rebuilt, kbr_msg *msg)
{
    static const char sql[] = "SELECT type, name, coalesce(sql, '') FROM sqlite_master"
                              " WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name";
    kbr_err err = KBR_OK;
    sqlite3_stmt *a = NULL, *b = NULL;
    int ra, rb, rc;

    rc = sqlite3_prepare_v2(store, sql, -1, &a, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    rc = sqlite3_prepare_v2(rebuilt, sql, -1, &b, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    ra = sqlite3_step(a);
    rb = sqlite3_step(b);
    while (ra == SQLITE_ROW || rb == SQLITE_ROW) {
        int c = ra != SQLITE_ROW ? 1 : rb != SQLITE_ROW ? -1 : 0;
        for (int i = 0; c == 0 && i < 2; i++)
            c = value_cmp(a, b, i);
        KBR_ENSURE(c >= 0, kbr_fail(msg, KBR_ERR_CONFLICT,
                                    "schema: %s %s is in the store but not in this broker's schema",
                                    kbr_sqlite_text(a, 0), kbr_sqlite_text(a, 1)));
        KBR_ENSURE(c <= 0,
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "schema: %s %s of this broker's schema is missing from the store",
                            kbr_sqlite_text(b, 0), kbr_sqlite_text(b, 1)));
        KBR_ENSURE(value_cmp(a, b, 2) == 0,
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "schema: %s %s differs from this broker's definition",
                            kbr_sqlite_text(a, 0), kbr_sqlite_text(a, 1)));
        ra = sqlite3_step(a);
        rb = sqlite3_step(b);
    }
    KBR_ENSURE(ra == SQLITE_DONE && rb == SQLITE_DONE, kbr_sqlite_err(ra != SQLITE_DONE ? ra : rb));
out:
    sqlite3_finalize(a);
    sqlite3_finalize(b);
    return err;
}

/*
 * The one column of the log that is not its entry's: the flag an older broker stored beside
 * its entries.  An entry written since carries key_use itself, so the column must be empty.
 */
static kbr_err audit_columns_hold(sqlite3 *db, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db,
                            "SELECT seq FROM audit WHERE legacy_key_use IS NOT NULL AND seq >="
                            " (SELECT min(effects_from) FROM log_effects) LIMIT 1",
                            -1, &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_ROW,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "table audit, row (seq = %lld): legacy_key_use is set beside an entry that "
                        "carries its own key_use",
                        (long long)sqlite3_column_int64(stmt, 0)));
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    sqlite3_finalize(stmt);
    return err;
}

kbr_err kbr_sqlite_compare(kbr_store *st, kbr_store *rebuilt, kbr_store_compare_stats *stats,
                           kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *tables = NULL;
    int rc;

    *stats = (kbr_store_compare_stats){0};
    KBR_ENSURE(rebuilt->ops == st->ops, KBR_ERR_INTERNAL);
    KBR_GUARD(compare_schema(SQ(st)->db, SQ(rebuilt)->db, msg));
    rc = sqlite3_prepare_v2(SQ(rebuilt)->db,
                            "SELECT name FROM sqlite_master WHERE type = 'table'"
                            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                            -1, &tables, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    while ((rc = sqlite3_step(tables)) == SQLITE_ROW) {
        /* the log itself: each entry's hash and chain are checked from its text by the caller,
         * and the scratch keeps only what its own rows are made from */
        if (strcmp(kbr_sqlite_text(tables, 0), "audit") == 0) {
            KBR_GUARD(audit_columns_hold(SQ(st)->db, msg));
            continue;
        }
        KBR_GUARD(compare_table(SQ(st)->db, SQ(rebuilt)->db, kbr_sqlite_text(tables, 0),
                                &stats->rows, msg));
        stats->tables++;
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    sqlite3_finalize(tables);
    return err;
}
