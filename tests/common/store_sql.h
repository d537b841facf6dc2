/*
 * store_sql.h - what unit and integration tests both do to a store from outside the broker:
 * learn whether it is on PostgreSQL, name the schema a test's store has there, and run SQL
 * over a connection of its own.
 */
#ifndef KBT_STORE_SQL_H
#define KBT_STORE_SQL_H

#include <stdbool.h>
#include <stddef.h>

/* Whether the tests' stores are on PostgreSQL: KBT_PG_URL is set (tests/pg-tests.sh). */
bool kbt_pg(void);
/* The PostgreSQL schema of the store of a test's directory dir: its last component,
 * lowercase, '-' and '.' as '_'. */
void kbt_pg_schema(const char *dir, char *schema, size_t n);
/*
 * Runs sql over a connection of its own to the store at url ("sqlite:<path>" or a libpq URI):
 * the first column of the first row into buf ("NULL" for SQL NULL; buf NULL: none wanted, and
 * sql may be several statements), *changed the rows it changed (may be NULL).  0 on success.
 */
int kbt_store_sql(const char *url, const char *sql, char *buf, size_t len, long *changed);

#endif
