/*
 * exposure.c - the exposure view (C) from the back end's rows: builds whose
 * SBOM carries a component, the devices that run them now (counters per
 * batch), the devices that ever ran them (sets of builds ever run, counted
 * per current firmware), and one page of the devices still pending an
 * update.  Every query is a lookup on a counter or an index: the fleet is
 * walked only for the page, and only when that is cheaper.
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* Devices on one (set of builds ever run, current firmware) that have not been updated. */
typedef struct {
    int64_t history;
    char *firmware;
    int64_t count;
} pending_group;

typedef struct {
    kbr_store *st;
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

static const char *str_of(const json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
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

/* ---- builds ---- */

static kbr_err build_new(exposure *x, const char *product, const char *version, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *b = NULL;

    *out = NULL;
    KBR_GUARD(x->st->ops->build_row(x->st, product, version, &b));
    KBR_ENSURE(json_object_set_new(b, "product", json_string(product)) == 0, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(b, "version", json_string(version)) == 0, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(b, "components", json_array()) == 0, KBR_ERR_NOMEM);
    *out = b;
    b = NULL;
out:
    json_decref(b);
    return err;
}

static bool same_build(const json_t *b, const char *product, const char *version)
{
    return b != NULL && strcmp(str_of(b, "product"), product) == 0 &&
           strcmp(str_of(b, "version"), version) == 0;
}

/* Rows come ordered by build, so a component joins the last build or starts the next. */
static kbr_err add_component(exposure *x, const json_t *row)
{
    kbr_err err = KBR_OK;
    const char *product = str_of(row, "product"), *version = str_of(row, "version");
    json_t *last = json_array_get(x->builds, json_array_size(x->builds) - 1), *b = NULL;

    KBR_ENSURE(product != NULL && version != NULL, KBR_ERR_STORE);
    if (!same_build(last, product, version)) {
        KBR_GUARD(build_new(x, product, version, &b));
        KBR_ENSURE(json_array_append(x->builds, b) == 0, KBR_ERR_NOMEM);
        last = b;
    }
    KBR_ENSURE(
        json_array_append_new(json_object_get(last, "components"),
                              json_pack("{s:O,s:O,s:O}", "name", json_object_get(row, "name"),
                                        "version", json_object_get(row, "cversion"), "purl",
                                        json_object_get(row, "purl"))) == 0,
        KBR_ERR_NOMEM);
out:
    json_decref(b);
    return err;
}

static int by_product_version(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    int c = strcmp(str_of(x, "product"), str_of(y, "product"));

    return c != 0 ? c : kbr_store_version_cmp(str_of(x, "version"), str_of(y, "version"));
}

static kbr_err find_builds(exposure *x)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL;
    const json_t *row;
    size_t i;

    KBR_GUARD(x->st->ops->exposure_components(x->st, x->q, &rows));
    json_array_foreach(rows, i, row)
    {
        KBR_GUARD(add_component(x, row));
    }
    KBR_GUARD(sort_array(x->builds, by_product_version));
out:
    json_decref(rows);
    return err;
}

/* ---- devices that run the builds now ---- */

static kbr_err add_batch_count(exposure *x, const json_t *row)
{
    kbr_err err = KBR_OK;
    const char *batch = str_of(row, "batch");
    json_int_t n = json_integer_value(json_object_get(row, "count"));
    json_t *entry;

    KBR_ENSURE(batch != NULL, KBR_ERR_STORE);
    entry = json_object_get(x->batches, batch);
    if (entry == NULL) {
        entry = json_pack("{s:s,s:O,s:i}", "batch", batch, "markets",
                          json_object_get(row, "markets"), "count", 0);
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
    json_t *rows = NULL;
    const json_t *row;
    size_t i;

    KBR_GUARD(x->st->ops->fleet_batches(x->st, str_of(build, "product"), str_of(build, "version"),
                                        &rows));
    json_array_foreach(rows, i, row)
    {
        x->current += json_integer_value(json_object_get(row, "count"));
        KBR_GUARD(add_batch_count(x, row));
    }
out:
    json_decref(rows);
    return err;
}

static int by_batch_name(const void *a, const void *b)
{
    return strcmp(str_of(*(const json_t *const *)a, "batch"),
                  str_of(*(const json_t *const *)b, "batch"));
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
    json_t *rows = NULL;
    const json_t *row;
    size_t i;

    KBR_GUARD(x->st->ops->build_histories(x->st, str_of(build, "product"), str_of(build, "version"),
                                          &rows));
    json_array_foreach(rows, i, row)
    {
        KBR_GUARD(
            grow((void **)&x->histories, &x->cap_histories, x->n_histories, sizeof(*x->histories)));
        x->histories[x->n_histories++] = json_integer_value(json_object_get(row, "history"));
    }
out:
    json_decref(rows);
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
    json_t *rows = NULL;
    const json_t *row;
    size_t i;

    KBR_GUARD(x->st->ops->history_firmware(x->st, history, &rows));
    json_array_foreach(rows, i, row)
    {
        const char *firmware = str_of(row, "firmware");
        int64_t n = json_integer_value(json_object_get(row, "count"));

        KBR_ENSURE(firmware != NULL, KBR_ERR_STORE);
        x->affected += n;
        if (kbr_store_version_cmp(firmware, x->q->fixed_version) >= 0) {
            x->updated += n;
            continue;
        }
        x->pending += n;
        KBR_GUARD(add_group(x, history, firmware, n));
    }
out:
    json_decref(rows);
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

static int by_serial_product(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    int c = strcmp(str_of(x, "serial"), str_of(y, "serial"));

    return c != 0 ? c : strcmp(str_of(x, "product"), str_of(y, "product"));
}

static const char *serial_of(const json_t *item)
{
    return str_of(item, "serial");
}

/* Keeps the first limit items of the sorted list and those sharing the last one's serial. */
static void page_cut(json_t *items, size_t limit)
{
    size_t keep = json_array_size(items);

    if (keep <= limit)
        return;
    keep = limit;
    while (keep < json_array_size(items) &&
           strcmp(serial_of(json_array_get(items, keep)),
                  serial_of(json_array_get(items, limit - 1))) == 0)
        keep++;
    while (json_array_size(items) > keep)
        json_array_remove(items, json_array_size(items) - 1);
}

/* Each group's devices after the cursor, merged by serial. */
static kbr_err fetch_groups(exposure *x, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *items = NULL, *rows = NULL;

    *out = NULL;
    items = json_array();
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < x->n_groups; i++) {
        KBR_GUARD(x->st->ops->pending_group(x->st, x->groups[i].history, x->groups[i].firmware,
                                            x->q->after != NULL ? x->q->after : "", x->q->limit,
                                            &rows));
        KBR_ENSURE(json_array_extend(items, rows) == 0, KBR_ERR_NOMEM);
        json_decref(rows);
        rows = NULL;
    }
    KBR_GUARD(sort_array(items, by_serial_product));
    page_cut(items, (size_t)x->q->limit);
    *out = items;
    items = NULL;
out:
    json_decref(rows);
    json_decref(items);
    return err;
}

static bool is_pending(const exposure *x, const kbr_fleet_row *row)
{
    pending_group key = {.history = row->history, .firmware = (char *)row->current_firmware};

    if (!row->has_history || row->current_firmware == NULL)
        return false;
    return bsearch(&key, x->groups, x->n_groups, sizeof(*x->groups), by_group) != NULL;
}

typedef struct {
    exposure *x;
    json_t *items;
    int64_t budget;
} walk;

static kbr_err walk_row(const kbr_fleet_row *row, void *arg, bool *stop)
{
    kbr_err err = KBR_OK;
    walk *w = arg;
    size_t limit = (size_t)w->x->q->limit;

    if (w->budget-- <= 0 ||
        (json_array_size(w->items) >= limit &&
         strcmp(row->serial, serial_of(json_array_get(w->items, limit - 1))) != 0)) {
        *stop = true;
        goto out;
    }
    if (!is_pending(w->x, row))
        goto out;
    KBR_ENSURE(
        json_array_append_new(w->items, json_pack("{s:s,s:s,s:s?,s:s?}", "product", row->product,
                                                  "serial", row->serial, "current_firmware",
                                                  row->current_firmware, "batch", row->batch)) == 0,
        KBR_ERR_NOMEM);
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
    walk w = {.x = x, .items = json_array(), .budget = budget};

    *out = NULL;
    *done = false;
    KBR_ENSURE(w.items != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(x->st->ops->fleet_walk(x->st, x->q->product, x->q->after != NULL ? x->q->after : "",
                                     walk_row, &w));
    *done = w.budget >= 0;
    *out = w.items;
    w.items = NULL;
out:
    json_decref(w.items);
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
    int64_t fleet = 0, walk_rows, fetch;
    bool done = false;

    *out = NULL;
    KBR_GUARD(x->st->ops->fleet_size(x->st, x->q->product, &fleet));
    fetch = x->pending + GROUP_QUERY_ROWS * (int64_t)x->n_groups;
    walk_rows = x->pending > 0 ? (int64_t)x->q->limit * fleet / x->pending : 0;
    if (x->pending > 0 && walk_rows < fetch) {
        KBR_GUARD(walk_fleet(x, 4 * walk_rows > WALK_BUDGET_MIN ? 4 * walk_rows : WALK_BUDGET_MIN,
                             &items, &done));
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

kbr_err kbr_store_exposure_rows(kbr_store *st, const kbr_exposure_query *q, json_t **out)
{
    kbr_err err = KBR_OK;
    exposure x = {.st = st, .q = q};
    bool in_snapshot = false;

    *out = NULL;
    KBR_GUARD(st->ops->snapshot_begin(st));
    in_snapshot = true;
    KBR_GUARD(exposure_view(&x, out));
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    exposure_cleanup(&x);
    return err;
}
