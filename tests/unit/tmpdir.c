/*
 * tmpdir.c - see tmpdir.h.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

int kbt_store_url(const char *dir, const char *dbfile, char *url, size_t n)
{
    char schema[64], sql[128];
    const char *base = getenv("KBT_PG_URL");
    int w;

    if (!kbt_pg()) {
        w = snprintf(url, n, "sqlite:%s/%s", dir, dbfile);
        return w < 0 || (size_t)w >= n ? -1 : 0;
    }
    kbt_pg_schema(dir, schema, sizeof(schema));
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    if (kbt_store_sql(base, sql, NULL, 0, NULL) != 0)
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
    kbt_pg_schema(dir, schema, sizeof(schema));
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    return kbt_store_sql(getenv("KBT_PG_URL"), sql, NULL, 0, NULL);
}
