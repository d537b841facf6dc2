/* store_sql.c - see store_sql.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "store_sql.h"

bool kbt_pg(void)
{
    const char *base = getenv("KBT_PG_URL");

    return base != NULL && base[0] != '\0';
}

void kbt_pg_schema(const char *dir, char *schema, size_t n)
{
    const char *name = strrchr(dir, '/') != NULL ? strrchr(dir, '/') + 1 : dir;
    size_t i = 0;

    for (; name[i] != '\0' && i + 1 < n; i++)
        schema[i] = name[i] == '-' || name[i] == '.' ? '_' : (char)tolower((unsigned char)name[i]);
    schema[i] = '\0';
}

static int sqlite_sql(const char *path, const char *sql, char *buf, size_t len, long *changed)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc = -1, step;

    if (sqlite3_open(path, &db) != SQLITE_OK)
        goto out;
    if (buf == NULL) { /* any number of statements */
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            goto out;
    } else {
        if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
            goto out;
        step = sqlite3_step(stmt);
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

static int pg_sql(const char *url, const char *sql, char *buf, size_t len, long *changed)
{
    PGconn *conn = PQconnectdb(url);
    PGresult *res = NULL;
    int rc = -1;

    if (PQstatus(conn) != CONNECTION_OK)
        goto out;
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
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

int kbt_store_sql(const char *url, const char *sql, char *buf, size_t len, long *changed)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return sqlite_sql(url + 7, sql, buf, len, changed);
    return pg_sql(url, sql, buf, len, changed);
}
