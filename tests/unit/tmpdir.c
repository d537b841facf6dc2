/*
 * tmpdir.c - see tmpdir.h.
 */
#include <ctype.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "tmpdir.h"

int kbt_tmpdir(char *dir, size_t n, const char *name)
{
    const char *base = getenv("TMPDIR");
    int w = snprintf(dir, n, "%s/%s-XXXXXX", base != NULL ? base : "/tmp", name);

    if (w < 0 || (size_t)w >= n)
        return -1;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int kbt_rmtree(const char *dir)
{
    if (dir[0] == '\0')
        return 0;
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int kbt_store_dir_setup(void **state, const char *name, const char *dbfile)
{
    kbt_store_dir *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    if (kbt_tmpdir(f->dir, sizeof(f->dir), name) != 0) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, dbfile);
    if (kbt_store_url(f->dir, dbfile, f->url, sizeof(f->url)) != 0) {
        kbt_rmtree(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int kbt_store_dir_teardown(void **state)
{
    kbt_store_dir *f = *state;
    int rc = kbt_store_drop(f->dir);

    rc |= kbt_rmtree(f->dir);

    free(f);
    return rc;
}

bool kbt_pg(void)
{
    const char *base = getenv("KBT_PG_URL");

    return base != NULL && base[0] != '\0';
}

/* The schema of dir: its last component, lowercase, '-' as '_'. */
static void schema_of(const char *dir, char *schema, size_t n)
{
    const char *name = strrchr(dir, '/') != NULL ? strrchr(dir, '/') + 1 : dir;
    size_t i = 0;

    for (; name[i] != '\0' && i + 1 < n; i++)
        schema[i] = name[i] == '-' ? '_' : (char)tolower((unsigned char)name[i]);
    schema[i] = '\0';
}

/* Runs sql on the database of KBT_PG_URL itself. */
static int pg_base(const char *sql)
{
    PGconn *conn = PQconnectdb(getenv("KBT_PG_URL"));
    PGresult *res = NULL;
    int rc = -1;

    if (PQstatus(conn) == CONNECTION_OK) {
        PQclear(PQexec(conn, "SET client_min_messages = warning"));
        res = PQexec(conn, sql);
        rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc != 0)
            fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

int kbt_store_url(const char *dir, const char *dbfile, char *url, size_t n)
{
    char schema[64], sql[128];
    const char *base = getenv("KBT_PG_URL");
    int w;

    if (!kbt_pg()) {
        w = snprintf(url, n, "sqlite:%s/%s", dir, dbfile);
        return w < 0 || (size_t)w >= n ? -1 : 0;
    }
    schema_of(dir, schema, sizeof(schema));
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    if (pg_base(sql) != 0)
        return -1;
    w = snprintf(url, n, "%s%coptions=-csearch_path%%3D%s", base,
                 strchr(base, '?') != NULL ? '&' : '?', schema);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

int kbt_store_drop(const char *dir)
{
    char schema[64], sql[128];

    if (!kbt_pg())
        return 0;
    schema_of(dir, schema, sizeof(schema));
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    return pg_base(sql);
}

static int sqlite_sql(const char *path, const char *sql, char *buf, size_t len, long *changed)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc = -1, step;

    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        goto out;
    step = sqlite3_step(stmt);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        goto out;
    if (buf != NULL) {
        if (step != SQLITE_ROW)
            goto out;
        snprintf(buf, len, "%s",
                 sqlite3_column_text(stmt, 0) != NULL ? (const char *)sqlite3_column_text(stmt, 0)
                                                      : "NULL");
    }
    if (changed != NULL)
        *changed = sqlite3_changes(db);
    rc = 0;
out:
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return rc;
}

int kbt_store_sql(const char *url, const char *sql, char *buf, size_t len, long *changed)
{
    PGconn *conn = NULL;
    PGresult *res = NULL;
    int rc = -1;

    if (strncmp(url, "sqlite:", 7) == 0)
        return sqlite_sql(url + 7, sql, buf, len, changed);
    conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK)
        goto out;
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
        goto out;
    }
    if (buf != NULL) {
        if (PQntuples(res) < 1)
            goto out;
        snprintf(buf, len, "%s", PQgetisnull(res, 0, 0) ? "NULL" : PQgetvalue(res, 0, 0));
    }
    if (changed != NULL)
        *changed = strtol(PQcmdTuples(res), NULL, 10);
    rc = 0;
out:
    PQclear(res);
    PQfinish(conn);
    return rc;
}
