/*
 * sqlite_exposure.c - the SQLite back end's part of the exposure view
 * (C): builds whose SBOM carries a component, the devices that run them now
 * (fleet_firmware counters), the devices that ever ran them (the
 * firmware_histories sets and their history_firmware counters), and one page
 * of the devices still pending an update.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

/* Devices on one (set of builds ever run, current firmware) that have not been updated. */
typedef struct {
    int64_t history;
    char *firmware;
    int64_t count;
} pending_group;

typedef struct {
    kbr_sqlite *s;
    const kbr_exposure_query *q;
    json_t *builds;  /* [{product, version, ..., components}] */
    json_t *batches; /* batch -> {batch, markets, count} */
    json_int_t current;
    int64_t *histories;
    size_t n_histories, cap_histories;
    pending_group *groups;
    size_t n_groups, cap_groups;
    json_int_t affected, updated, pending;
} exposure;

static void exposure_cleanup(exposure *x)
{
    json_decref(x->builds);
    json_decref(x->batches);
    free(x->histories);
    for (size_t i = 0; i < x->n_groups; i++)
        free(x->groups[i].firmware);
    free(x->groups);
}

/* Grows *arr (of elem-sized items) to hold one more. */
static kbr_err grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    void *bigger;
    size_t want;

    if (n < *cap)
        return KBR_OK;
    want = *cap > 0 ? *cap * 2 : 16;
    bigger = realloc(*arr, want * elem);
    if (bigger == NULL)
        return KBR_ERR_NOMEM;
    *arr = bigger;
    *cap = want;
    return KBR_OK;
}

/* ---- builds ---- */

/*
 * The smallest string above every string that starts with prefix: its last byte that is not
 * 0xff, plus one.  Text compares bytewise, so purl >= prefix AND purl < upper is an index
 * range.  NULL when there is none (a prefix of 0xff bytes only: no valid UTF-8 holds one).
 */
static char *prefix_upper(const char *prefix)
{
    size_t n = strlen(prefix);
    char *upper;

    while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
        n--;
    if (n == 0)
        return NULL;
    upper = strndup(prefix, n);
    if (upper != NULL)
        upper[n - 1] = (char)((unsigned char)upper[n - 1] + 1);
    return upper;
}

#define COMPONENT_FILTERS                                                                          \
    " AND (?2 IS NULL OR cversion IN (SELECT value FROM json_each(?2)))"                           \
    " AND (?3 IS NULL OR product = ?3) ORDER BY product, version, rowid"

static kbr_err components_stmt(exposure *x, char **upper, sqlite3_stmt **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    if (x->q->component != NULL) {
        KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_COMPONENTS_BY_NAME,
                                  "SELECT product, version, name, cversion, purl FROM components"
                                  " WHERE name = ?1" COMPONENT_FILTERS,
                                  &stmt));
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, x->q->component));
    } else {
        *upper = prefix_upper(x->q->purl_prefix);
        KBR_ENSURE(*upper != NULL, KBR_ERR_BAD_REQUEST);
        KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_COMPONENTS_BY_PURL,
                                  "SELECT product, version, name, cversion, purl FROM components"
                                  " WHERE purl >= ?1 AND purl < ?4" COMPONENT_FILTERS,
                                  &stmt));
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, x->q->purl_prefix));
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, *upper));
    }
    *out = stmt;
    stmt = NULL;
out:
    kbr_sqlite_done(stmt);
    return err;
}

static const kbr_col_spec build_cols[] = {
    {"digest", KBR_COL_TEXT},
    {"signed_at", KBR_COL_TEXT},
    {"key", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},
};

static kbr_err build_new(exposure *x, const char *product, const char *version, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *b = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_BUILD,
                              "SELECT digest, signed_at, key, audit_seq FROM firmware"
                              " WHERE product = ?1 AND version = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    KBR_GUARD(kbr_sqlite_object(stmt, build_cols, KBR_NCOLS(build_cols), &b));
    KBR_ENSURE(json_object_set_new(b, "product", json_string(product)) == 0, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(b, "version", json_string(version)) == 0, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(b, "components", json_array()) == 0, KBR_ERR_NOMEM);
    *out = b;
    b = NULL;
out:
    kbr_sqlite_done(stmt);
    json_decref(b);
    return err;
}

static bool same_build(const json_t *b, const char *product, const char *version)
{
    return b != NULL && strcmp(json_string_value(json_object_get(b, "product")), product) == 0 &&
           strcmp(json_string_value(json_object_get(b, "version")), version) == 0;
}

static const kbr_col_spec component_cols[] = {
    {"name", KBR_COL_TEXT}, {"version", KBR_COL_TEXT}, {"purl", KBR_COL_TEXT}};

/* Rows come ordered by build, so a component joins the last build or starts the next. */
static kbr_err add_component(exposure *x, sqlite3_stmt *stmt)
{
    kbr_err err = KBR_OK;
    const char *product = kbr_sqlite_text(stmt, 0), *version = kbr_sqlite_text(stmt, 1);
    json_t *last = json_array_get(x->builds, json_array_size(x->builds) - 1), *b = NULL;
    json_t *c = NULL;

    KBR_ENSURE(product != NULL && version != NULL, KBR_ERR_STORE);
    if (!same_build(last, product, version)) {
        KBR_GUARD(build_new(x, product, version, &b));
        KBR_ENSURE(json_array_append(x->builds, b) == 0, KBR_ERR_NOMEM);
        last = b;
    }
    c = json_object();
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_sqlite_put_columns(c, stmt, 2, component_cols, KBR_NCOLS(component_cols)));
    KBR_ENSURE(json_array_append(json_object_get(last, "components"), c) == 0, KBR_ERR_NOMEM);
out:
    json_decref(c);
    json_decref(b);
    return err;
}

static int by_product_version(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    int c = strcmp(json_string_value(json_object_get(x, "product")),
                   json_string_value(json_object_get(y, "product")));

    return c != 0 ? c
                  : kbr_store_version_cmp(json_string_value(json_object_get(x, "version")),
                                          json_string_value(json_object_get(y, "version")));
}

/* arr's items ordered by cmp, in place. */
static kbr_err sort_array(json_t *arr, int (*cmp)(const void *, const void *))
{
    kbr_err err = KBR_OK;
    size_t n = json_array_size(arr);
    json_t **items = NULL;

    items = calloc(n > 0 ? n : 1, sizeof(*items));
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(arr, i));
    qsort(items, n, sizeof(*items), cmp);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++) {
        KBR_ENSURE(json_array_append_new(arr, items[i]) == 0, KBR_ERR_NOMEM);
        items[i] = NULL;
    }
out:
    for (size_t i = 0; items != NULL && i < n; i++)
        json_decref(items[i]);
    free(items);
    return err;
}

static kbr_err find_builds(exposure *x)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    char *versions = NULL, *upper = NULL;
    int rc;

    if (x->q->versions != NULL) {
        versions = json_dumps(x->q->versions, JSON_COMPACT);
        KBR_ENSURE(versions != NULL, KBR_ERR_NOMEM);
    }
    KBR_GUARD(components_stmt(x, &upper, &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, versions));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, x->q->product));
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        KBR_GUARD(add_component(x, stmt));
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
    KBR_GUARD(sort_array(x->builds, by_product_version));
out:
    kbr_sqlite_done(stmt);
    free(upper);
    free(versions);
    return err;
}

/* ---- devices that run the builds now ---- */

static kbr_err add_batch_count(exposure *x, sqlite3_stmt *stmt)
{
    kbr_err err = KBR_OK;
    const char *batch = kbr_sqlite_text(stmt, 0), *markets = kbr_sqlite_text(stmt, 1);
    json_int_t n = sqlite3_column_int64(stmt, 2);
    json_t *entry;

    KBR_ENSURE(batch != NULL, KBR_ERR_STORE);
    entry = json_object_get(x->batches, batch);
    if (entry == NULL) {
        entry =
            json_pack("{s:s,s:o,s:i}", "batch", batch, "markets",
                      markets != NULL ? json_loads(markets, 0, NULL) : json_array(), "count", 0);
        KBR_ENSURE(entry != NULL, KBR_ERR_STORE);
        KBR_ENSURE(json_object_set_new(x->batches, batch, entry) == 0, KBR_ERR_NOMEM);
    }
    n += json_integer_value(json_object_get(entry, "count"));
    KBR_ENSURE(json_object_set_new(entry, "count", json_integer(n)) == 0, KBR_ERR_NOMEM);
out:
    return err;
}

static kbr_err count_current(exposure *x, const json_t *build)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_BUILD_BATCHES,
                              "SELECT f.batch, b.markets, f.count FROM fleet_firmware f"
                              " LEFT JOIN batches b ON b.batch = f.batch"
                              " WHERE f.product = ?1 AND f.firmware = ?2 AND f.count > 0",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, json_string_value(json_object_get(build, "product"))));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, json_string_value(json_object_get(build, "version"))));
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        x->current += sqlite3_column_int64(stmt, 2);
        KBR_GUARD(add_batch_count(x, stmt));
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static int by_batch_name(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(const json_t *const *)a, "batch")),
                  json_string_value(json_object_get(*(const json_t *const *)b, "batch")));
}

static kbr_err devices_section(exposure *x, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *by_batch = NULL, *entry;
    const char *name;

    *out = NULL;
    by_batch = json_array();
    KBR_ENSURE(by_batch != NULL, KBR_ERR_NOMEM);
    json_object_foreach(x->batches, name, entry)
    {
        KBR_ENSURE(json_array_append(by_batch, entry) == 0, KBR_ERR_NOMEM);
    }
    KBR_GUARD(sort_array(by_batch, by_batch_name));
    *out = json_pack("{s:I,s:O}", "current", x->current, "by_batch", by_batch);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(by_batch);
    return err;
}

/* ---- devices that ever ran them ---- */

static kbr_err build_histories(exposure *x, const json_t *build)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_BUILD_HISTORIES,
                              "SELECT history FROM firmware_history_versions"
                              " WHERE product = ?1 AND version = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, json_string_value(json_object_get(build, "product"))));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, json_string_value(json_object_get(build, "version"))));
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        KBR_GUARD(
            grow((void **)&x->histories, &x->cap_histories, x->n_histories, sizeof(*x->histories)));
        x->histories[x->n_histories++] = sqlite3_column_int64(stmt, 0);
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static int by_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static int by_group(const void *a, const void *b)
{
    const pending_group *x = a, *y = b;

    if (x->history != y->history)
        return x->history < y->history ? -1 : 1;
    return strcmp(x->firmware, y->firmware);
}

static kbr_err add_group(exposure *x, int64_t history, const char *firmware, int64_t count)
{
    kbr_err err = KBR_OK;
    pending_group *g;

    KBR_GUARD(grow((void **)&x->groups, &x->cap_groups, x->n_groups, sizeof(*x->groups)));
    g = &x->groups[x->n_groups];
    g->firmware = strdup(firmware);
    KBR_ENSURE(g->firmware != NULL, KBR_ERR_NOMEM);
    g->history = history;
    g->count = count;
    x->n_groups++;
out:
    return err;
}

/* One set's devices by current firmware: updated when it is fixed_version or later. */
static kbr_err count_history(exposure *x, int64_t history)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_HISTORY_FIRMWARE,
                              "SELECT firmware, count FROM history_firmware"
                              " WHERE history = ?1 AND count > 0",
                              &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, history)));
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *firmware = kbr_sqlite_text(stmt, 0);
        int64_t n = sqlite3_column_int64(stmt, 1);

        KBR_ENSURE(firmware != NULL, KBR_ERR_STORE);
        x->affected += n;
        if (kbr_store_version_cmp(firmware, x->q->fixed_version) >= 0) {
            x->updated += n;
            continue;
        }
        x->pending += n;
        KBR_GUARD(add_group(x, history, firmware, n));
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static kbr_err count_remediation(exposure *x)
{
    kbr_err err = KBR_OK;
    size_t n;
    const json_t *b;
    size_t i;

    json_array_foreach(x->builds, i, b)
    {
        KBR_GUARD(build_histories(x, b));
    }
    /* A set holding several of the builds is counted once.  (No set, no array: qsort's
     * pointer must not be NULL even for no elements.) */
    if (x->n_histories > 0)
        qsort(x->histories, x->n_histories, sizeof(*x->histories), by_int64);
    n = 0;
    for (i = 0; i < x->n_histories; i++) {
        if (n > 0 && x->histories[n - 1] == x->histories[i])
            continue;
        x->histories[n++] = x->histories[i];
    }
    x->n_histories = n;
    for (i = 0; i < x->n_histories; i++)
        KBR_GUARD(count_history(x, x->histories[i]));
    if (x->n_groups > 0)
        qsort(x->groups, x->n_groups, sizeof(*x->groups), by_group);
out:
    return err;
}

/* ---- the page of pending devices ---- */

static const kbr_col_spec pending_cols[] = {
    {"product", KBR_COL_TEXT},
    {"serial", KBR_COL_TEXT},
    {"current_firmware", KBR_COL_TEXT},
    {"batch", KBR_COL_TEXT},
};

static int by_serial_product(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    int c = strcmp(json_string_value(json_object_get(x, "serial")),
                   json_string_value(json_object_get(y, "serial")));

    return c != 0 ? c
                  : strcmp(json_string_value(json_object_get(x, "product")),
                           json_string_value(json_object_get(y, "product")));
}

static const char *serial_of(const json_t *item)
{
    return json_string_value(json_object_get(item, "serial"));
}

/* Keeps the first limit items of the sorted list and those sharing the last one's serial. */
static kbr_err page_cut(json_t *items, size_t limit)
{
    size_t keep = json_array_size(items);

    if (keep <= limit)
        return KBR_OK;
    keep = limit;
    while (keep < json_array_size(items) &&
           strcmp(serial_of(json_array_get(items, keep)),
                  serial_of(json_array_get(items, limit - 1))) == 0)
        keep++;
    while (json_array_size(items) > keep)
        json_array_remove(items, json_array_size(items) - 1);
    return KBR_OK;
}

/* Each group's devices after the cursor through devices_history, merged by serial. */
static kbr_err fetch_groups(exposure *x, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *items = NULL, *rows = NULL;

    *out = NULL;
    items = json_array();
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_PENDING_GROUP,
                              "SELECT product, serial, current_firmware, batch FROM devices"
                              " WHERE history = ?1 AND current_firmware = ?2 AND serial > ?3"
                              " ORDER BY serial LIMIT ?4",
                              &stmt));
    for (size_t i = 0; i < x->n_groups; i++) {
        KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, x->groups[i].history)));
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, x->groups[i].firmware));
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, x->q->after != NULL ? x->q->after : ""));
        KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(stmt, 4, x->q->limit)));
        KBR_GUARD(kbr_sqlite_objects(stmt, pending_cols, KBR_NCOLS(pending_cols), &rows));
        KBR_ENSURE(json_array_extend(items, rows) == 0, KBR_ERR_NOMEM);
        json_decref(rows);
        rows = NULL;
        kbr_sqlite_done(stmt);
    }
    KBR_GUARD(sort_array(items, by_serial_product));
    KBR_GUARD(page_cut(items, (size_t)x->q->limit));
    *out = items;
    items = NULL;
out:
    kbr_sqlite_done(stmt);
    json_decref(rows);
    json_decref(items);
    return err;
}

static bool is_pending(const exposure *x, sqlite3_stmt *stmt)
{
    pending_group key = {.history = sqlite3_column_int64(stmt, 4),
                         .firmware = (char *)kbr_sqlite_text(stmt, 2)};

    if (sqlite3_column_type(stmt, 4) == SQLITE_NULL || key.firmware == NULL)
        return false;
    return bsearch(&key, x->groups, x->n_groups, sizeof(*x->groups), by_group) != NULL;
}

static kbr_err walk_stmt(exposure *x, sqlite3_stmt **out)
{
    kbr_err err = KBR_OK;
    const char *after = x->q->after != NULL ? x->q->after : "";

    *out = NULL;
    if (x->q->product != NULL) {
        KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_WALK_PRODUCT,
                                  "SELECT product, serial, current_firmware, batch, history"
                                  " FROM devices WHERE product = ?1 AND serial > ?2"
                                  " ORDER BY serial",
                                  out));
        KBR_GUARD(kbr_sqlite_bind_text(*out, 1, x->q->product));
        KBR_GUARD(kbr_sqlite_bind_text(*out, 2, after));
    } else {
        KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_WALK_ALL,
                                  "SELECT product, serial, current_firmware, batch, history"
                                  " FROM devices WHERE serial > ?1 ORDER BY serial, product",
                                  out));
        KBR_GUARD(kbr_sqlite_bind_text(*out, 1, after));
    }
out:
    return err;
}

/*
 * The fleet in serial order, keeping pending devices: cheap while they are a good share of
 * it.  Stops after budget rows (*done false) when they turn out to be rarer than counted.
 */
static kbr_err walk_fleet(exposure *x, int64_t budget, json_t **out, bool *done)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *items = NULL, *item = NULL;
    size_t limit = (size_t)x->q->limit;
    int rc;

    *out = NULL;
    *done = false;
    items = json_array();
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(walk_stmt(x, &stmt));
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && budget-- > 0) {
        if (json_array_size(items) >= limit &&
            strcmp(kbr_sqlite_text(stmt, 1), serial_of(json_array_get(items, limit - 1))) != 0)
            break;
        if (!is_pending(x, stmt))
            continue;
        item = json_object();
        KBR_ENSURE(item != NULL, KBR_ERR_NOMEM);
        KBR_GUARD(kbr_sqlite_put_columns(item, stmt, 0, pending_cols, KBR_NCOLS(pending_cols)));
        KBR_ENSURE(json_array_append_new(items, item) == 0, KBR_ERR_NOMEM);
        item = NULL;
    }
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *done = budget >= 0;
    *out = items;
    items = NULL;
out:
    kbr_sqlite_done(stmt);
    json_decref(item);
    json_decref(items);
    return err;
}

static kbr_err fleet_size(exposure *x, int64_t *n)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *n = 0;
    KBR_GUARD(kbr_sqlite_stmt(x->s, SQ_VIEW_FLEET_SIZE,
                              "SELECT coalesce(sum(count), 0) FROM fleet_firmware"
                              " WHERE ?1 IS NULL OR product = ?1",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, x->q->product));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    *n = sqlite3_column_int64(stmt, 0);
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* Per-statement cost of a group query, in rows of a walk: measured order of magnitude. */
#define GROUP_QUERY_ROWS 20
#define WALK_BUDGET_MIN  20000

/*
 * Two ways to one page: fetching every pending group after the cursor costs about the
 * pending count, walking the fleet about limit * fleet / pending rows.  The cheaper
 * estimate wins; a walk that overruns its estimate falls back to the groups.
 */
static kbr_err pending_page(exposure *x, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *items = NULL;
    int64_t fleet = 0, walk, fetch;
    bool done = false;

    *out = NULL;
    KBR_GUARD(fleet_size(x, &fleet));
    fetch = x->pending + GROUP_QUERY_ROWS * (int64_t)x->n_groups;
    walk = x->pending > 0 ? (int64_t)x->q->limit * fleet / x->pending : 0;
    if (x->pending > 0 && walk < fetch) {
        KBR_GUARD(
            walk_fleet(x, 4 * walk > WALK_BUDGET_MIN ? 4 * walk : WALK_BUDGET_MIN, &items, &done));
    }
    if (!done && x->pending > 0) {
        json_decref(items);
        items = NULL;
        KBR_GUARD(fetch_groups(x, &items));
    }
    if (items == NULL)
        items = json_array();
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    *out = json_pack("{s:O,s:s?}", "items", items, "next_after",
                     json_array_size(items) >= (size_t)x->q->limit
                         ? serial_of(json_array_get(items, json_array_size(items) - 1))
                         : NULL);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(items);
    return err;
}

static kbr_err remediation_section(exposure *x, json_t *view)
{
    kbr_err err = KBR_OK;
    json_t *page = NULL;

    KBR_GUARD(count_remediation(x));
    KBR_GUARD(pending_page(x, &page));
    KBR_ENSURE(json_object_set_new(view, "remediation",
                                   json_pack("{s:I,s:I,s:I}", "affected", x->affected, "updated",
                                             x->updated, "pending", x->pending)) == 0,
               KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set(view, "pending_devices", page) == 0, KBR_ERR_NOMEM);
out:
    json_decref(page);
    return err;
}

static kbr_err exposure_view(exposure *x, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *view = NULL, *devices = NULL;
    size_t i;
    const json_t *b;

    *out = NULL;
    x->builds = json_array();
    x->batches = json_object();
    KBR_ENSURE(x->builds != NULL && x->batches != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(find_builds(x));
    json_array_foreach(x->builds, i, b)
    {
        KBR_GUARD(count_current(x, b));
    }
    KBR_GUARD(devices_section(x, &devices));
    view = json_pack("{s:O,s:O}", "builds", x->builds, "devices", devices);
    KBR_ENSURE(view != NULL, KBR_ERR_NOMEM);
    if (x->q->fixed_version != NULL)
        KBR_GUARD(remediation_section(x, view));
    *out = view;
    view = NULL;
out:
    json_decref(devices);
    json_decref(view);
    return err;
}

kbr_err kbr_sqlite_view_exposure(kbr_store *st, const kbr_exposure_query *q, json_t **out)
{
    kbr_err err = KBR_OK;
    exposure x = {.s = SQ(st), .q = q};
    bool in_snapshot = false;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_snapshot_begin(st));
    in_snapshot = true;
    KBR_GUARD(exposure_view(&x, out));
out:
    if (in_snapshot)
        kbr_sqlite_snapshot_end(st);
    exposure_cleanup(&x);
    return err;
}
