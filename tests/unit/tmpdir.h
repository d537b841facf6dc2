/*
 * tmpdir.h - private directories for unit tests (under $TMPDIR or /tmp), and
 * the fixture of tests that need a store of their own in one.
 */
#ifndef KBT_TMPDIR_H
#define KBT_TMPDIR_H

#include <stddef.h>

/* Makes a new private directory named after name; dir receives its path. 0 on success. */
int kbt_tmpdir(char *dir, size_t n, const char *name);
/* Removes dir and everything in it. 0 on success. */
int kbt_rmtree(const char *dir);

/* A private directory with a store file in it: path is the file, url "sqlite:<path>". */
typedef struct {
    char dir[64];
    char path[128];
    char url[192];
} kbt_store_dir;

/* cmocka group or test setup/teardown: *state becomes a kbt_store_dir. */
int kbt_store_dir_setup(void **state, const char *name, const char *dbfile);
int kbt_store_dir_teardown(void **state);

#endif
