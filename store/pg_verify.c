/*
 * pg_verify.c - keybrokerd --verify-store on a PostgreSQL store: its rows against the SQLite
 * store rebuilt from its log, table by table, row by row.
 *
 * The rebuild is a SQLite store (the scratch written by audit/rebuild.c), so the two sides
 * are two back ends, and each value is brought to one text before they are compared: integers
 * and text as their text, bytea as lowercase hex (as a SQLite blob is written out).  Each
 * column must be of the type the rebuild declares (INTEGER bigint, BLOB bytea, else text), so
 * the store cannot choose how its values compare, and the queries use pg_catalog's functions
 * and operators only, none the store's schema defines.
 * Rows stream from both sides in key order (text keys in byte order: COLLATE "C" on the
 * PostgreSQL side, SQLite's BINARY on the other; NULLs first) and are merged, so neither side
 * is held in memory; PostgreSQL's rows come through a cursor in the snapshot the log was read
 * in, so a broker committing meanwhile changes neither.  PostgreSQL's identity columns skip
 * the values a rolled-back insert took, and the rebuild's rowids do not, so ids are never
 * compared as numbers: a table keyed by one (which the rebuild says, never the store) is
 * compared in the order of its ids, and a column naming a firmware history by its id is
 * compared as the history it names (history_refs).  The one table with neither key nor id
 * (log_effects) is compared in the order of all its columns.
 *
 * The table and column sets are compared (a table or column one side has and the other lacks,
 * a column generated or an identity on one side only, a view, row security, a rule or an
 * inheriting table are differences), and the audit table's generated columns are checked
 * against its entries; the PostgreSQL schema's definitions (its triggers, functions and
 * indexes) are not compared: docs say so.  The session reads with row security off (a
 * policy is an error, not a filter: pg.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"
#include "sqlite.h"

#define PG(st) ((kbr_pg *)(st))

#define SHOWN_MAX   96 /* characters of a value a message shows */
#define COLS_MAX    64
#define FETCH_ROWS  "500"
#define FETCH_BLOBS "8" /* rows at a time of a table with bytea (documents: whole SBOMs) */
#define CURSOR_NAME "kbr_verify_rows"

/* Tables only the PostgreSQL back end keeps: how brokers sharing the store take turns. */
static const char *const pg_only[] = {"writer_lock"};

typedef enum { V_TEXT, V_INT } vkind;

typedef struct {
    char name[128];
    int ncols;     /* compared columns: the key's first (none for a table without one) */
    int nkey;      /* 0: compared in insertion order */
    int audit_seq; /* index of an audit_seq column, or -1 */
    char *cols[COLS_MAX];
    vkind kind[COLS_MAX];
    char *order_col; /* the identity a table without a key is compared in the order of */
    bool sq_rowid;   /* which the rebuild has as its rowid, not as a column */
    bool blobs;      /* a column is bytea */
    char *pg_select, *sq_select;
} shape;

static void shape_free(shape *t)
{
    for (int i = 0; i < t->ncols; i++)
        free(t->cols[i]);
    free(t->order_col);
    free(t->pg_select);
    free(t->sq_select);
    memset(t, 0, sizeof(*t));
}

/* A name the store supplies, as a message shows it: without control characters. */
static const char *clean_name(const char *name, char out[160])
{
    size_t o = 0;

    for (; *name != '\0' && o + 1 < 160; name++)
        out[o++] = (unsigned char)*name < 0x20 || *name == 0x7f ? '?' : *name;
    out[o] = '\0';
    return out;
}

/* ---- the PostgreSQL side of a table ---- */

typedef struct {
    char *name, *type;
    bool generated, identity;
} pg_col;

typedef struct {
    pg_col c[COLS_MAX + 8];
    int n;
} pg_cols;

static void pg_cols_free(pg_cols *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->c[i].name);
        free(p->c[i].type);
    }
    p->n = 0;
}

/* sql, with $1 the table's name, answered into *res (the caller's to PQclear). */
static kbr_err about_table(kbr_pg *s, const char *sql, const char *table, PGresult **res,
                           kbr_msg *msg)
{
    const char *v[1] = {table};

    *res = PQexecParams(s->conn, sql, 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(*res) == PGRES_TUPLES_OK)
        return KBR_OK;
    return kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot read the catalog of %s: %s", s->where,
                    table, PQerrorMessage(s->conn));
}

static kbr_err pg_columns_of(kbr_pg *s, const char *table, pg_cols *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;

    out->n = 0;
    KBR_GUARD(about_table(s,
                          "SELECT column_name, data_type, is_generated = 'ALWAYS',"
                          " is_identity = 'YES' FROM information_schema.columns"
                          " WHERE table_schema = current_schema() AND table_name = $1"
                          " ORDER BY ordinal_position",
                          table, &res, msg));
    KBR_ENSURE(PQntuples(res) <= COLS_MAX + 8, KBR_ERR_INTERNAL);
    for (int i = 0; i < PQntuples(res); i++) {
        pg_col *c = &out->c[out->n];

        c->name = strdup(PQgetvalue(res, i, 0));
        c->type = strdup(PQgetvalue(res, i, 1));
        c->generated = strcmp(PQgetvalue(res, i, 2), "t") == 0;
        c->identity = strcmp(PQgetvalue(res, i, 3), "t") == 0;
        out->n++;
        KBR_ENSURE(c->name != NULL && c->type != NULL, KBR_ERR_NOMEM);
    }
out:
    PQclear(res);
    return err;
}

static const pg_col *pg_col_named(const pg_cols *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->c[i].name, name) == 0)
            return &p->c[i];
    return NULL;
}

static bool pg_integer(const char *type)
{
    return strcmp(type, "bigint") == 0 || strcmp(type, "integer") == 0 ||
           strcmp(type, "smallint") == 0;
}

/* The table is a table, whose rows every reader sees: not a view, without row security that
 * could show the check other rows than the broker, rules or tables inheriting from it. */
static kbr_err plain_table(kbr_pg *s, const char *table, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;

    KBR_GUARD(about_table(s,
                          "SELECT c.relkind = 'r' AND NOT c.relrowsecurity AND NOT EXISTS (SELECT"
                          " 1 FROM pg_catalog.pg_rewrite w WHERE w.ev_class = c.oid) AND NOT"
                          " EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent ="
                          " c.oid) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                          " ON n.oid = c.relnamespace WHERE n.nspname ="
                          " pg_catalog.current_schema() AND c.relname = $1",
                          table, &res, msg));
    KBR_ENSURE(PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "schema: %s in the store is not a plain table (a view, row security, a "
                        "rule, or tables inheriting from it)",
                        table));
out:
    PQclear(res);
    return err;
}

/*
 * Columns holding a firmware history's id: an identity on PostgreSQL, which may skip values
 * (a rolled-back insert uses one up), a rowid on the rebuild, which does not.  They are
 * compared by the history they name (its product and versions), never by the number.
 */
static const struct {
    const char *table, *column;
} history_refs[] = {{"devices", "history"},
                    {"firmware_history_versions", "history"},
                    {"history_firmware", "history"},
                    {"history_firmware_batch", "history"}};

static bool is_history_ref(const char *table, const char *column)
{
    for (size_t i = 0; i < sizeof(history_refs) / sizeof(history_refs[0]); i++)
        if (strcmp(history_refs[i].table, table) == 0 &&
            strcmp(history_refs[i].column, column) == 0)
            return true;
    return false;
}

/*
 * Column i as text, on either side, in the form the SQLite side is written in: bytea and
 * blobs as lowercase hex, a history's id as the history it names (an id naming none as a
 * text no history has).  On PostgreSQL every function and operator is pg_catalog's, so
 * none the store's schema defines for its own types (ctext) is chosen instead.
 */
static void column_expr(FILE *f, const shape *t, const pg_col *c, int i, bool pg)
{
    const char *name = t->cols[i];

    if (is_history_ref(t->name, name) && pg)
        fprintf(f,
                "CASE WHEN r.\"%s\" IS NULL THEN NULL ELSE coalesce((SELECT"
                " h.product::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.chr(31)"
                " OPERATOR(pg_catalog.||) h.versions::pg_catalog.text FROM firmware_histories"
                " AS h WHERE h.id OPERATOR(pg_catalog.=) r.\"%s\"), 'no history '"
                " OPERATOR(pg_catalog.||) r.\"%s\"::pg_catalog.text) END",
                name, name, name);
    else if (is_history_ref(t->name, name))
        fprintf(f,
                "(SELECT h.product || char(31) || h.versions FROM firmware_histories AS h"
                " WHERE h.id = r.\"%s\")",
                name);
    else if (!pg)
        fprintf(f, "CASE typeof(r.\"%s\") WHEN 'blob' THEN lower(hex(r.\"%s\")) ELSE r.\"%s\" END",
                name, name, name);
    else if (strcmp(c->type, "bytea") == 0)
        fprintf(f, "pg_catalog.encode(r.\"%s\", 'hex')", name);
    else
        fprintf(f, "r.\"%s\"::pg_catalog.text", name);
}

/* The SELECT of one side: every compared column as text, in key order (text keys in byte
 * order); a table without a key in the order of its identity (order_col), or of all its
 * columns.  Qualified names throughout: an output
 * column of the same name would be the text, sorted as text. */
static kbr_err select_of(const shape *t, const pg_cols *pc, bool pg, char **out)
{
    size_t len;
    FILE *f = open_memstream(out, &len);

    if (f == NULL)
        return KBR_ERR_NOMEM;
    fputs("SELECT ", f);
    for (int i = 0; i < t->ncols; i++) {
        fputs(i > 0 ? ", " : "", f);
        column_expr(f, t, pg_col_named(pc, t->cols[i]), i, pg);
    }
    fprintf(f, " FROM \"%s\" AS r ORDER BY ", t->name);
    if (t->nkey == 0 && t->order_col != NULL)
        fprintf(f, "r.\"%s\"", !pg && t->sq_rowid ? "rowid" : t->order_col);
    /* neither key nor identity (log_effects' one row): every column */
    for (int i = 0; i < (t->nkey == 0 && t->order_col == NULL ? t->ncols : t->nkey); i++) {
        fputs(i > 0 ? ", " : "", f);
        if (is_history_ref(t->name, t->cols[i]))
            column_expr(f, t, pg_col_named(pc, t->cols[i]), i, pg);
        else
            fprintf(f, "r.\"%s\"", t->cols[i]); /* a number sorts as a number */
        fputs(pg && t->kind[i] != V_INT ? " COLLATE \"C\"" : "", f);
        fputs(pg ? " NULLS FIRST" : "", f); /* where SQLite sorts them */
    }
    return fclose(f) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

/*
 * The SQLite side's stored columns, key first, and the PostgreSQL columns each is: every
 * column of either side must be the other's, generated where the other's is.  A key that is
 * an identity on PostgreSQL (a rowid on SQLite) is not compared: the table is, in the order
 * of its ids.  Every name put in SQL is the rebuild's, never one the store supplies.
 */
static kbr_err shape_of(kbr_pg *s, sqlite3 *db, const char *table, shape *t, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    pg_cols pc = {.n = 0};
    char shown[160];
    bool seen[COLS_MAX + 8] = {false};
    int rc;

    memset(t, 0, sizeof(*t));
    t->audit_seq = -1;
    snprintf(t->name, sizeof(t->name), "%s", table);
    KBR_GUARD(pg_columns_of(s, table, &pc, msg));
    KBR_ENSURE(pc.n > 0, kbr_fail(msg, KBR_ERR_CONFLICT,
                                  "schema: table %s of this broker's schema is missing from "
                                  "the store",
                                  table));
    KBR_GUARD(plain_table(s, table, msg));
    /* hidden: 0 stored, 1 hidden (virtual tables), 2 and 3 generated; the last column says
     * whether the column is a surrogate id: "id INTEGER PRIMARY KEY", the table's rowid */
    rc = sqlite3_prepare_v2(db,
                            "SELECT name, pk, hidden, upper(type),"
                            " name = 'id' AND pk > 0 AND upper(type) = 'INTEGER' AND (SELECT"
                            " count(*) FROM pragma_table_xinfo(?1) WHERE pk > 0) = 1"
                            " FROM pragma_table_xinfo(?1)"
                            " ORDER BY pk = 0, pk, cid",
                            -1, &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *name = kbr_sqlite_text(stmt, 0);
        const pg_col *c = name != NULL ? pg_col_named(&pc, name) : NULL;
        bool key = sqlite3_column_int(stmt, 1) > 0, generated = sqlite3_column_int(stmt, 2) != 0;
        bool rowid = sqlite3_column_int(stmt, 4) != 0;
        const char *decl = kbr_sqlite_text(stmt, 3), *want;

        KBR_ENSURE(name != NULL, KBR_ERR_STORE);
        KBR_ENSURE(c != NULL, kbr_fail(msg, KBR_ERR_CONFLICT,
                                       "schema: table %s: column %s of this broker's schema is "
                                       "missing from the store",
                                       table, name));
        seen[c - pc.c] = true;
        KBR_ENSURE(c->generated == generated,
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "schema: table %s: column %s is %sgenerated in the store, and %s in "
                            "this broker's schema",
                            table, name, c->generated ? "" : "not ", generated ? "is" : "is not"));
        if (generated)
            continue; /* follows from the columns compared */
        /* the rebuild says which column is an id (its rowid), never the store */
        KBR_ENSURE(c->identity == rowid,
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "schema: table %s: column %s is %san identity in the store, and %s "
                            "in this broker's schema",
                            table, name, c->identity ? "" : "not ", rowid ? "is" : "is not"));
        /* the type the rebuild's declares: the store's may not choose how values compare */
        want = decl != NULL && strstr(decl, "INT") != NULL ? "bigint"
               : decl != NULL && strcmp(decl, "BLOB") == 0 ? "bytea"
                                                           : "text";
        KBR_ENSURE(strcmp(c->type, want) == 0 ||
                       (strcmp(want, "bigint") == 0 && strcmp(c->type, "integer") == 0),
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "schema: table %s: column %s is of type %s in the store, not %s", table,
                            name, c->type, want));
        if (rowid) {
            t->order_col = strdup(name);
            KBR_ENSURE(t->order_col != NULL, KBR_ERR_NOMEM);
            continue;
        }
        KBR_ENSURE(t->ncols < COLS_MAX, KBR_ERR_INTERNAL);
        t->cols[t->ncols] = strdup(name);
        KBR_ENSURE(t->cols[t->ncols] != NULL, KBR_ERR_NOMEM);
        t->blobs |= strcmp(c->type, "bytea") == 0;
        t->kind[t->ncols] = is_history_ref(table, name) ? V_TEXT
                            : pg_integer(c->type)       ? V_INT
                                                        : V_TEXT;
        if (strcmp(name, "audit_seq") == 0)
            t->audit_seq = t->ncols;
        t->nkey += key;
        t->ncols++;
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
    /* a rowid table on SQLite is an identity "id" on PostgreSQL (components) */
    for (int i = 0; i < pc.n && t->nkey == 0 && t->order_col == NULL; i++) {
        if (seen[i] || !pc.c[i].identity || strcmp(pc.c[i].name, "id") != 0)
            continue;
        seen[i] = true;
        t->order_col = strdup("id");
        t->sq_rowid = true;
        KBR_ENSURE(t->order_col != NULL, KBR_ERR_NOMEM);
    }
    for (int i = 0; i < pc.n; i++)
        KBR_ENSURE(seen[i], kbr_fail(msg, KBR_ERR_CONFLICT,
                                     "schema: table %s: column %s is in the store but not in "
                                     "this broker's schema",
                                     table, clean_name(pc.c[i].name, shown)));
    KBR_GUARD(select_of(t, &pc, true, &t->pg_select));
    KBR_GUARD(select_of(t, &pc, false, &t->sq_select));
out:
    sqlite3_finalize(stmt);
    pg_cols_free(&pc);
    return err;
}

/* ---- values ---- */

/* Both values as one text: equal when they are the same text, or both NULL. */
static bool same_value(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static int int_cmp(const char *a, const char *b)
{
    long long x = strtoll(a, NULL, 10), y = strtoll(b, NULL, 10);

    return x < y ? -1 : x > y;
}

/* Key order, as both sides sort: NULL first, integers by value, text by bytes. */
static int key_value_cmp(vkind kind, const char *a, const char *b)
{
    int c;

    if (a == NULL || b == NULL)
        return a == NULL ? (b == NULL ? 0 : -1) : 1;
    if (kind == V_INT)
        return int_cmp(a, b);
    c = strcmp(a, b);
    return c < 0 ? -1 : c > 0;
}

/* A value as a message shows it (as sqlite_verify.c does): a number as it is, text quoted and
 * cut short, without control characters. */
static void show(vkind kind, const char *v, char *out, size_t n)
{
    size_t len, i, o = 0;

    if (v == NULL || kind == V_INT) {
        snprintf(out, n, "%s", v != NULL ? v : "null");
        return;
    }
    len = strlen(v);
    if (n < 8)
        return;
    out[o++] = '"';
    for (i = 0; i < len && i < SHOWN_MAX && o + 5 < n; i++)
        out[o++] = (unsigned char)v[i] < 0x20 || v[i] == 0x7f ? '?' : v[i];
    if (i < len && o + 5 < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* One row's values as text, from either side. */
typedef struct {
    const char *v[COLS_MAX];
} row;

static void row_name(const shape *t, const row *r, int64_t ordinal, char *out, size_t n)
{
    char v[SHOWN_MAX + 16];
    size_t o = 0;

    if (t->nkey == 0)
        o += (size_t)snprintf(out, n, "%lld (in the order of insertion)", (long long)ordinal);
    else {
        o += (size_t)snprintf(out + o, n - o, "(");
        for (int i = 0; i < t->nkey && o < n; i++) {
            show(t->kind[i], r->v[i], v, sizeof(v));
            o += (size_t)snprintf(out + o, n - o, "%s%s = %s", i > 0 ? ", " : "", t->cols[i], v);
        }
        if (o < n)
            o += (size_t)snprintf(out + o, n - o, ")");
    }
    if (t->audit_seq >= 0 && o < n && r->v[t->audit_seq] != NULL)
        snprintf(out + o, n - o, ", recorded by audit entry %s", r->v[t->audit_seq]);
}

static int key_cmp(const shape *t, const row *a, const row *b)
{
    for (int i = 0; i < t->nkey; i++) {
        int c = key_value_cmp(t->kind[i], a->v[i], b->v[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static kbr_err differs(kbr_msg *msg, const char *table, const char *row_text, const char *rest)
{
    return kbr_fail(msg, KBR_ERR_CONFLICT, "table %s, row %s: %s", table, row_text, rest);
}

/* ---- the PostgreSQL rows, through a cursor ---- */

typedef struct {
    kbr_pg *s;
    PGresult *res;
    int at, n;
    bool open, done;
} pg_rows;

static kbr_err pg_rows_open(pg_rows *p, kbr_pg *s, const char *select, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *sql = NULL;
    PGresult *res = NULL;

    memset(p, 0, sizeof(*p));
    p->s = s;
    KBR_ENSURE(asprintf(&sql, "DECLARE " CURSOR_NAME " NO SCROLL CURSOR FOR %s", select) > 0,
               KBR_ERR_NOMEM);
    res = PQexec(s->conn, sql);
    KBR_ENSURE(PQresultStatus(res) == PGRES_COMMAND_OK,
               kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot read its rows: %s", s->where,
                        PQerrorMessage(s->conn)));
    p->open = true;
out:
    PQclear(res);
    free(sql);
    return err;
}

/* The next row into r; *got false at the end. */
static kbr_err pg_rows_next(pg_rows *p, const shape *t, row *r, bool *got, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    *got = false;
    if (p->res != NULL && p->at >= p->n) {
        PQclear(p->res);
        p->res = NULL;
    }
    if (p->res == NULL && !p->done) {
        p->res = PQexec(p->s->conn, t->blobs ? "FETCH FORWARD " FETCH_BLOBS " FROM " CURSOR_NAME
                                             : "FETCH FORWARD " FETCH_ROWS " FROM " CURSOR_NAME);
        KBR_ENSURE(PQresultStatus(p->res) == PGRES_TUPLES_OK,
                   kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot read its rows: %s", p->s->where,
                            PQerrorMessage(p->s->conn)));
        KBR_ENSURE(PQnfields(p->res) == t->ncols, KBR_ERR_INTERNAL);
        p->at = 0;
        p->n = PQntuples(p->res);
        p->done = p->n == 0;
    }
    if (p->done)
        goto out;
    for (int i = 0; i < t->ncols; i++)
        r->v[i] = PQgetisnull(p->res, p->at, i) ? NULL : PQgetvalue(p->res, p->at, i);
    p->at++;
    *got = true;
out:
    return err;
}

static void pg_rows_close(pg_rows *p)
{
    PQclear(p->res);
    p->res = NULL;
    if (p->open)
        PQclear(PQexec(p->s->conn, "CLOSE " CURSOR_NAME));
    p->open = false;
}

/* The rebuild's row into r; a value SQLite could not give as text is an error, never a NULL. */
static kbr_err sq_row(sqlite3_stmt *stmt, const shape *t, row *r)
{
    for (int i = 0; i < t->ncols; i++) {
        r->v[i] = (const char *)sqlite3_column_text(stmt, i);
        if (r->v[i] == NULL && sqlite3_column_type(stmt, i) != SQLITE_NULL)
            return KBR_ERR_NOMEM;
    }
    return KBR_OK;
}

static kbr_err compare_table(kbr_pg *s, sqlite3 *db, const char *table, int64_t *rows, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    shape t;
    pg_rows pr = {0};
    sqlite3_stmt *b = NULL;
    row ra, rb;
    bool got_a;
    int rc_b, rc;
    int64_t ordinal = 0;
    char name[512], va[SHOWN_MAX + 16], vb[SHOWN_MAX + 16], what[512];

    KBR_GUARD(shape_of(s, db, table, &t, msg));
    rc = sqlite3_prepare_v2(db, t.sq_select, -1, &b, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    KBR_GUARD(pg_rows_open(&pr, s, t.pg_select, msg));
    KBR_GUARD(pg_rows_next(&pr, &t, &ra, &got_a, msg));
    if ((rc_b = sqlite3_step(b)) == SQLITE_ROW)
        KBR_GUARD(sq_row(b, &t, &rb));
    KBR_ENSURE(rc_b == SQLITE_ROW || rc_b == SQLITE_DONE, kbr_sqlite_err(rc_b));
    while (got_a || rc_b == SQLITE_ROW) {
        int c = !got_a ? 1 : rc_b != SQLITE_ROW ? -1 : key_cmp(&t, &ra, &rb);

        ordinal++;
        /* keys in the same place are the same text, not only the same number */
        for (int i = 0; c == 0 && i < t.nkey; i++) {
            if (same_value(ra.v[i], rb.v[i]))
                continue;
            row_name(&t, &rb, ordinal, name, sizeof(name));
            show(t.kind[i], ra.v[i], va, sizeof(va));
            snprintf(what, sizeof(what), "%s is %s in the store", t.cols[i], va);
            KBR_GUARD(differs(msg, table, name, what));
        }
        if (c < 0) {
            row_name(&t, &ra, ordinal, name, sizeof(name));
            KBR_GUARD(differs(msg, table, name, "is in the store, but no audit entry records it"));
        }
        if (c > 0) {
            row_name(&t, &rb, ordinal, name, sizeof(name));
            KBR_GUARD(
                differs(msg, table, name, "the log records it, but the store does not have it"));
        }
        for (int i = t.nkey; i < t.ncols; i++) {
            if (same_value(ra.v[i], rb.v[i]))
                continue;
            row_name(&t, &rb, ordinal, name, sizeof(name));
            show(t.kind[i], ra.v[i], va, sizeof(va));
            show(t.kind[i], rb.v[i], vb, sizeof(vb));
            snprintf(what, sizeof(what), "%s is %s in the store, %s by the log", t.cols[i], va, vb);
            KBR_GUARD(differs(msg, table, name, what));
        }
        (*rows)++;
        KBR_GUARD(pg_rows_next(&pr, &t, &ra, &got_a, msg));
        if ((rc_b = sqlite3_step(b)) == SQLITE_ROW)
            KBR_GUARD(sq_row(b, &t, &rb));
        KBR_ENSURE(rc_b == SQLITE_ROW || rc_b == SQLITE_DONE, kbr_sqlite_err(rc_b));
    }
    KBR_ENSURE(rc_b == SQLITE_DONE, kbr_sqlite_err(rc_b));
out:
    pg_rows_close(&pr);
    sqlite3_finalize(b);
    shape_free(&t);
    return err;
}

/* Every table of the store is one of this broker's, or one PostgreSQL alone keeps. */
static kbr_err tables_known(kbr_pg *s, sqlite3 *db, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    sqlite3_stmt *stmt = NULL;
    char shown[160];
    int rc;

    res = PQexec(s->conn, "SELECT table_name FROM information_schema.tables"
                          " WHERE table_schema = current_schema() ORDER BY table_name");
    KBR_ENSURE(PQresultStatus(res) == PGRES_TUPLES_OK,
               kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot list its tables: %s", s->where,
                        PQerrorMessage(s->conn)));
    rc = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                            -1, &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    for (int i = 0; i < PQntuples(res); i++) {
        const char *name = PQgetvalue(res, i, 0);
        bool known = false;

        for (size_t j = 0; j < sizeof(pg_only) / sizeof(pg_only[0]) && !known; j++)
            known = strcmp(name, pg_only[j]) == 0;
        if (!known) {
            sqlite3_reset(stmt);
            sqlite3_bind_text(stmt, 1, name, -1, SQLITE_TRANSIENT);
            rc = sqlite3_step(stmt);
            KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
            known = rc == SQLITE_ROW;
        }
        KBR_ENSURE(known, kbr_fail(msg, KBR_ERR_CONFLICT,
                                   "schema: table %s is in the store but not in this broker's "
                                   "schema",
                                   clean_name(name, shown)));
    }
out:
    sqlite3_finalize(stmt);
    PQclear(res);
    return err;
}

/*
 * The one column of the log that is not its entry's (sqlite_verify.c says why), and the
 * columns generated from the entry, as this broker's schema generates them: their
 * definitions are not compared, so their values are, against the entry itself.
 */
static kbr_err audit_columns_hold(kbr_pg *s, kbr_msg *msg)
{
    kbr_err err;
    int64_t seq = 0;

    err = kbr_pg_int64(
        s,
        "SELECT seq FROM audit AS a, LATERAL (SELECT a.entry::pg_catalog.jsonb AS j) AS e"
        " WHERE a.time::pg_catalog.text IS DISTINCT FROM e.j ->> 'time'"
        " OR a.sub::pg_catalog.text IS DISTINCT FROM e.j ->> 'sub'"
        " OR a.jti::pg_catalog.text IS DISTINCT FROM e.j ->> 'jti'"
        " OR a.op::pg_catalog.text IS DISTINCT FROM e.j ->> 'op'"
        " OR a.key::pg_catalog.text IS DISTINCT FROM e.j ->> 'key'"
        " OR a.outcome::pg_catalog.text IS DISTINCT FROM e.j ->> 'outcome'"
        " OR a.error_code::pg_catalog.text IS DISTINCT FROM e.j ->> 'error_code'"
        " OR a.prev_hash::pg_catalog.text IS DISTINCT FROM e.j ->> 'prev_hash'"
        " OR a.key_use IS DISTINCT FROM coalesce((e.j ->> 'key_use')::pg_catalog.bool"
        "::pg_catalog.int4, a.legacy_key_use, 0)"
        " ORDER BY seq LIMIT 1",
        NULL, &seq);
    if (err == KBR_OK)
        return kbr_fail(msg, KBR_ERR_CONFLICT,
                        "table audit, row (seq = %lld): a column generated from the entry does "
                        "not hold what the entry says (its definition was changed)",
                        (long long)seq);
    if (err != KBR_ERR_NOT_FOUND)
        return kbr_fail(msg, err, "store %s: cannot check the audit table's generated columns: %s",
                        s->where, PQerrorMessage(s->conn));

    err = kbr_pg_int64(s,
                       "SELECT seq FROM audit WHERE legacy_key_use IS NOT NULL AND seq >="
                       " (SELECT min(effects_from) FROM log_effects) ORDER BY seq LIMIT 1",
                       NULL, &seq);
    if (err == KBR_ERR_NOT_FOUND)
        return KBR_OK;
    if (err != KBR_OK)
        return err;
    return kbr_fail(msg, KBR_ERR_CONFLICT,
                    "table audit, row (seq = %lld): legacy_key_use is set beside an entry that "
                    "carries its own key_use",
                    (long long)seq);
}

kbr_err kbr_pg_compare(kbr_store *st, kbr_store *rebuilt, kbr_store_compare_stats *stats,
                       kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3 *db;
    sqlite3_stmt *tables = NULL;
    int rc;

    *stats = (kbr_store_compare_stats){0};
    KBR_ENSURE(rebuilt->ops == &kbr_store_sqlite_ops, KBR_ERR_INTERNAL);
    db = ((kbr_sqlite *)rebuilt)->db;
    KBR_GUARD(tables_known(PG(st), db, msg));
    rc = sqlite3_prepare_v2(db,
                            "SELECT name FROM sqlite_master WHERE type = 'table'"
                            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                            -1, &tables, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_err(rc));
    while ((rc = sqlite3_step(tables)) == SQLITE_ROW) {
        const char *name = kbr_sqlite_text(tables, 0);

        KBR_ENSURE(name != NULL, KBR_ERR_STORE);
        if (strcmp(name, "audit") == 0) {
            KBR_GUARD(audit_columns_hold(PG(st), msg));
            continue;
        }
        KBR_GUARD(compare_table(PG(st), db, name, &stats->rows, msg));
        stats->tables++;
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    sqlite3_finalize(tables);
    return err;
}
