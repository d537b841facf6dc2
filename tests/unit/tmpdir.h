/*
 * tmpdir.h - private directories for unit tests (under $TMPDIR or /tmp), and
 * the fixture of tests that need a store of their own in one.
 */
#ifndef KBT_TMPDIR_H
#define KBT_TMPDIR_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/store_sql.h"

/* Makes a new private directory named after name; dir receives its path. 0 on success. */
int kbt_tmpdir(char *dir, size_t n, const char *name);
/* Removes dir and everything in it. 0 on success. */
int kbt_rmtree(const char *dir);

/*
 * A private directory with a store file in it: path is the file, url "sqlite:<path>".  With
 * KBT_PG_URL set (a libpq URI of a database the tests may use, tests/pg-cluster.sh), url is
 * instead a store of its own in that database: a new schema named after dir.
 */
typedef struct {
    char dir[64];
    char path[128];
    char url[512];
} kbt_store_dir;

/* The URL of a store for dir: "sqlite:<dir>/<dbfile>", or with KBT_PG_URL the URI of a new
 * schema named after dir.  0 on success. */
int kbt_store_url(const char *dir, const char *dbfile, char *url, size_t n);
/* Drops the schema kbt_store_url made for dir (nothing for SQLite).  0 on success. */
int kbt_store_drop(const char *dir);

/* cmocka group or test setup/teardown: *state becomes a kbt_store_dir. */
int kbt_store_dir_setup(void **state, const char *name, const char *dbfile);
int kbt_store_dir_teardown(void **state);

#endif
