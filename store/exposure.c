/*
 * exposure.c - the exposure view (C) from the back end's rows: builds whose
 * SBOM carries a component (match.c says which), the devices that run them now
 * (counters per batch), the devices that ever ran them (sets of builds ever run,
 * counted per current firmware and batch), their markets, and one page of the
 * devices still pending an update or of every affected device.  Every query is a
 * lookup on a counter or an index: the fleet is walked only for the page, and
 * only when that is cheaper.
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kbr_cra.h"

/* Devices on one (set of builds ever run, current firmware). */
typedef struct {
    int64_t history;
    char *firmware;
    int64_t count;
    bool updated; /* firmware is fixed_version or later */
} device_group;

/* What the devices of one batch count for. */
typedef struct {
    int64_t affected, updated, pending;
} batch_counts;

typedef struct {
    kbr_store *st;
    const kbr_exposure_query *q;
    kbr_match *match;
    json_t *builds;    /* [{product, version, ..., components}] */
    json_t *undecided; /* [{product, version, component, reason}] */
    json_t *batches;   /* batch -> {batch, markets, count}: devices running the builds now */
    json_t *markets;   /* batch -> markets, as read */
    json_t *affected;  /* batch -> {affected, updated, pending} */
    json_int_t current;
    int64_t *histories;
    size_t n_histories, cap_histories;
    device_group *groups;
    size_t n_groups, cap_groups;
    json_int_t n_affected, n_updated, n_pending;
} exposure;

static void exposure_cleanup(exposure *x)
{
    kbr_match_free(x->match);
    json_decref(x->builds);
    json_decref(x->undecided);
    json_decref(x->batches);
    json_decref(x->markets);
    json_decref(x->affected);
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

static kbr_err add_int(json_t *obj, const char *field, json_int_t n)
{
    json_int_t have = json_integer_value(json_object_get(obj, field));

    return json_object_set_new(obj, field, json_integer(have + n)) == 0 ? KBR_OK : KBR_ERR_NOMEM;
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

/* ---- the question ---- */

#define PAGE_LIMIT_DEFAULT 100
#define PAGE_LIMIT_MAX     1000

kbr_err kbr_store_exposure_check(const kbr_exposure_query *q, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_match *m = NULL;

    KBR_ENSURE(q != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "no question"));
    KBR_ENSURE(q->limit >= 0 && q->limit <= PAGE_LIMIT_MAX,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "limit: 1 to %d", PAGE_LIMIT_MAX));
    KBR_ENSURE(q->product == NULL || q->product[0] != '\0',
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "product: empty"));
    KBR_ENSURE(q->fixed_version == NULL || q->fixed_version[0] != '\0',
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "fixed_version: empty"));
    KBR_GUARD(kbr_match_new(q->component, q->purl, q->versions, q->vers, &m, msg));
out:
    kbr_match_free(m);
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

static json_t *component_of(const json_t *row)
{
    return json_pack("{s:O,s:O,s:O}", "name", json_object_get(row, "name"), "version",
                     json_object_get(row, "cversion"), "purl", json_object_get(row, "purl"));
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
    KBR_ENSURE(json_array_append_new(json_object_get(last, "components"), component_of(row)) == 0,
               KBR_ERR_NOMEM);
out:
    json_decref(b);
    return err;
}

static kbr_err add_undecided(exposure *x, const json_t *row, const char *why)
{
    json_t *u =
        json_pack("{s:O,s:O,s:o,s:s}", "product", json_object_get(row, "product"), "version",
                  json_object_get(row, "version"), "component", component_of(row), "reason", why);

    return u != NULL && json_array_append_new(x->undecided, u) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static int by_product_version(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    int c = strcmp(str_of(x, "product"), str_of(y, "product"));

    if (c == 0)
        c = kbr_store_version_cmp(str_of(x, "version"), str_of(y, "version"));
    /* versions equal in the order ("1.2", "1.2.0") still sort one way */
    return c != 0 ? c : strcmp(str_of(x, "version"), str_of(y, "version"));
}

static kbr_err find_builds(exposure *x)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL;
    const json_t *row;
    const char *why;
    size_t i;

    KBR_GUARD(x->st->ops->exposure_components(x->st, kbr_match_component_name(x->match),
                                              kbr_match_purl_key(x->match), x->q->product, &rows));
    json_array_foreach(rows, i, row)
    {
        switch (kbr_match_component(x->match, str_of(row, "name"), str_of(row, "cversion"),
                                    str_of(row, "purl"), &why)) {
        case KBR_MATCH_YES:
            KBR_GUARD(add_component(x, row));
            break;
        case KBR_MATCH_UNDECIDED:
            KBR_GUARD(add_undecided(x, row, why));
            break;
        case KBR_MATCH_NO:
            break;
        }
    }
    KBR_GUARD(sort_array(x->builds, by_product_version));
    KBR_GUARD(sort_array(x->undecided, by_product_version));
out:
    json_decref(rows);
    return err;
}

/* ---- markets ---- */

/* The markets of batch, read once. Borrowed. */
static kbr_err markets_of(exposure *x, const char *batch, const json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *m = json_object_get(x->markets, batch);

    *out = NULL;
    if (m == NULL) {
        KBR_GUARD(x->st->ops->batch_markets(x->st, batch, &m));
        KBR_ENSURE(json_object_set_new(x->markets, batch, m) == 0, KBR_ERR_NOMEM);
    }
    *out = m;
out:
    return err;
}

/* Sums of one figure (or of several, an object of them) over markets. */
typedef struct {
    json_t *by_market, *eu, *invalid;
} market_sums;

static void sums_free(market_sums *s)
{
    json_decref(s->by_market);
    json_decref(s->eu);
    json_decref(s->invalid);
}

/* counts is an object of figures; each is added to dst (an object) under the same names. */
static kbr_err add_figures(json_t *dst, const json_t *counts)
{
    kbr_err err = KBR_OK;
    const char *name;
    json_t *v;

    json_object_foreach((json_t *)counts, name, v)
    {
        KBR_GUARD(add_int(dst, name, json_integer_value(v)));
    }
out:
    return err;
}

static kbr_err figures_in(json_t *obj, const char *key, const json_t *counts)
{
    kbr_err err = KBR_OK;
    json_t *dst = json_object_get(obj, key);

    if (dst == NULL) {
        dst = json_object();
        KBR_ENSURE(dst != NULL && json_object_set_new(obj, key, dst) == 0, KBR_ERR_NOMEM);
    }
    KBR_GUARD(add_figures(dst, counts));
out:
    return err;
}

/*
 * A batch's devices count once in each of its (distinct) markets, and once in the EU when any
 * of them is a member state.  A market that is not an ISO 3166-1 alpha-2 code (a batch an
 * older broker accepted: "EL", "UK", "de") counts in no country and not in the EU: it is
 * listed under invalid_markets, so that no device silently drops out of the figures
 * (keybrokerd --verify-store names those batches).
 */
static kbr_err sum_batch(market_sums *s, const json_t *markets, const json_t *counts)
{
    kbr_err err = KBR_OK;
    const json_t *m, *seen;
    bool in_eu = false;
    size_t i, j;

    json_array_foreach(markets, i, m)
    {
        const char *code = json_string_value(m);
        bool repeated = false;

        json_array_foreach(markets, j, seen)
        {
            if (j >= i)
                break;
            repeated = repeated || json_equal(seen, m);
        }
        if (repeated || code == NULL)
            continue;
        if (kbr_market_check(code, NULL) != KBR_OK) {
            KBR_GUARD(figures_in(s->invalid, code, counts));
            continue;
        }
        KBR_GUARD(figures_in(s->by_market, code, counts));
        in_eu = in_eu || kbr_market_is_eu(code);
    }
    if (in_eu)
        KBR_GUARD(add_figures(s->eu, counts));
out:
    return err;
}

static kbr_err sums_new(market_sums *s, const json_t *zero)
{
    s->by_market = json_object();
    s->invalid = json_object();
    s->eu = json_deep_copy(zero);
    return s->by_market != NULL && s->invalid != NULL && s->eu != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

/* A figure object of one count: {"n": count}, unwrapped again by flat(). */
static json_t *one(json_int_t n)
{
    return json_pack("{s:I}", "n", n);
}

/* *obj, an object of objects {"n": x}, replaced by the object of the x. */
static kbr_err flat(json_t **obj)
{
    kbr_err err = KBR_OK;
    json_t *out = json_object(), *v;
    const char *key;

    KBR_ENSURE(out != NULL, KBR_ERR_NOMEM);
    json_object_foreach(*obj, key, v)
    {
        KBR_ENSURE(json_object_set(out, key, json_object_get(v, "n")) == 0, KBR_ERR_NOMEM);
    }
    json_decref(*obj);
    *obj = out;
    out = NULL;
out:
    json_decref(out);
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
    KBR_GUARD(add_int(entry, "count", n));
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
    json_t *by_batch = NULL, *entry, *counts = NULL, *zero = one(0);
    market_sums s = {0};
    const char *name;

    *out = NULL;
    by_batch = json_array();
    KBR_ENSURE(by_batch != NULL && zero != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(sums_new(&s, zero));
    json_object_foreach(x->batches, name, entry)
    {
        KBR_ENSURE(json_array_append(by_batch, entry) == 0, KBR_ERR_NOMEM);
        counts = one(json_integer_value(json_object_get(entry, "count")));
        KBR_ENSURE(counts != NULL, KBR_ERR_NOMEM);
        KBR_GUARD(sum_batch(&s, json_object_get(entry, "markets"), counts));
        json_decref(counts);
        counts = NULL;
    }
    KBR_GUARD(sort_array(by_batch, by_batch_name));
    KBR_GUARD(flat(&s.by_market));
    KBR_GUARD(flat(&s.invalid));
    *out =
        json_pack("{s:I,s:O,s:O,s:O,s:O}", "current", x->current, "by_batch", by_batch, "by_market",
                  s.by_market, "eu", json_object_get(s.eu, "n"), "invalid_markets", s.invalid);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(counts);
    json_decref(zero);
    sums_free(&s);
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
    const device_group *x = a, *y = b;

    if (x->history != y->history)
        return x->history < y->history ? -1 : 1;
    return strcmp(x->firmware, y->firmware);
}

/* Rows of one history come ordered by firmware, so a row joins the last group or starts one. */
static kbr_err add_group(exposure *x, int64_t history, const char *firmware, int64_t count,
                         bool updated)
{
    kbr_err err = KBR_OK;
    device_group *g = x->n_groups > 0 ? &x->groups[x->n_groups - 1] : NULL;

    if (g != NULL && g->history == history && strcmp(g->firmware, firmware) == 0) {
        g->count += count;
        goto out;
    }
    KBR_GUARD(grow((void **)&x->groups, &x->cap_groups, x->n_groups, sizeof(*x->groups)));
    g = &x->groups[x->n_groups];
    g->firmware = strdup(firmware);
    KBR_ENSURE(g->firmware != NULL, KBR_ERR_NOMEM);
    g->history = history;
    g->count = count;
    g->updated = updated;
    x->n_groups++;
out:
    return err;
}

/* One set's devices by current firmware and batch: updated when on fixed_version or later. */
static kbr_err count_history(exposure *x, int64_t history)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *entry;
    const json_t *row;
    size_t i;

    KBR_GUARD(x->st->ops->history_batches(x->st, history, &rows));
    json_array_foreach(rows, i, row)
    {
        const char *firmware = str_of(row, "firmware"), *batch = str_of(row, "batch");
        int64_t n = json_integer_value(json_object_get(row, "count"));
        bool updated = x->q->fixed_version != NULL &&
                       kbr_store_version_cmp(firmware, x->q->fixed_version) >= 0;

        KBR_ENSURE(firmware != NULL && batch != NULL, KBR_ERR_STORE);
        entry = json_object_get(x->affected, batch);
        if (entry == NULL) {
            entry = json_pack("{s:i,s:i,s:i}", "affected", 0, "updated", 0, "pending", 0);
            KBR_ENSURE(entry != NULL && json_object_set_new(x->affected, batch, entry) == 0,
                       KBR_ERR_NOMEM);
        }
        KBR_GUARD(add_int(entry, "affected", n));
        KBR_GUARD(add_int(entry, updated ? "updated" : "pending", n));
        x->n_affected += n;
        if (updated)
            x->n_updated += n;
        else
            x->n_pending += n;
        KBR_GUARD(add_group(x, history, firmware, n, updated));
    }
out:
    json_decref(rows);
    return err;
}

static kbr_err count_affected(exposure *x)
{
    kbr_err err = KBR_OK;
    const json_t *b;
    size_t i, n;

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

/* {total, by_market, eu, invalid_markets} and, with a fix, the remediation by market. */
static kbr_err affected_sections(exposure *x, json_t *view)
{
    kbr_err err = KBR_OK;
    market_sums total = {0}, rem = {0};
    json_t *zero = one(0), *zero3 = NULL, *counts = NULL, *entry, *section = NULL;
    const json_t *markets;
    const char *batch;

    zero3 = json_pack("{s:i,s:i,s:i}", "affected", 0, "updated", 0, "pending", 0);
    KBR_ENSURE(zero != NULL && zero3 != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(sums_new(&total, zero));
    KBR_GUARD(sums_new(&rem, zero3));
    json_object_foreach(x->affected, batch, entry)
    {
        KBR_GUARD(markets_of(x, batch, &markets));
        counts = one(json_integer_value(json_object_get(entry, "affected")));
        KBR_ENSURE(counts != NULL, KBR_ERR_NOMEM);
        KBR_GUARD(sum_batch(&total, markets, counts));
        KBR_GUARD(sum_batch(&rem, markets, entry));
        json_decref(counts);
        counts = NULL;
    }
    KBR_GUARD(flat(&total.by_market));
    KBR_GUARD(flat(&total.invalid));
    section = json_pack("{s:I,s:O,s:O,s:O}", "total", x->n_affected, "by_market", total.by_market,
                        "eu", json_object_get(total.eu, "n"), "invalid_markets", total.invalid);
    KBR_ENSURE(section != NULL && json_object_set_new(view, "affected", section) == 0,
               KBR_ERR_NOMEM);
    if (x->q->fixed_version != NULL) {
        section = json_pack("{s:I,s:I,s:I,s:O,s:O,s:O}", "affected", x->n_affected, "updated",
                            x->n_updated, "pending", x->n_pending, "by_market", rem.by_market, "eu",
                            rem.eu, "invalid_markets", rem.invalid);
        KBR_ENSURE(section != NULL && json_object_set_new(view, "remediation", section) == 0,
                   KBR_ERR_NOMEM);
    }
out:
    json_decref(counts);
    json_decref(zero);
    json_decref(zero3);
    sums_free(&total);
    sums_free(&rem);
    return err;
}

/* ---- a page of devices: the pending ones, or every affected one ---- */

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

/* Which groups the page lists: every affected one, or the pending ones. */
static bool listed(const exposure *x, const device_group *g)
{
    return x->q->devices || !g->updated;
}

static kbr_err page_item(const exposure *x, const device_group *g, json_t *item)
{
    if (x->q->devices && x->q->fixed_version != NULL &&
        json_object_set_new(item, "status", json_string(g->updated ? "updated" : "pending")) != 0)
        return KBR_ERR_NOMEM;
    return KBR_OK;
}

/* Each listed group's devices after the cursor, merged by serial. */
static kbr_err fetch_groups(exposure *x, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *items = NULL, *rows = NULL, *item;
    size_t j;

    *out = NULL;
    items = json_array();
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < x->n_groups; i++) {
        if (!listed(x, &x->groups[i]))
            continue;
        KBR_GUARD(x->st->ops->pending_group(x->st, x->groups[i].history, x->groups[i].firmware,
                                            x->q->after != NULL ? x->q->after : "", x->q->limit,
                                            &rows));
        json_array_foreach(rows, j, item)
        {
            KBR_GUARD(page_item(x, &x->groups[i], item));
        }
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

static const device_group *group_of(const exposure *x, const kbr_fleet_row *row)
{
    device_group key = {.history = row->history, .firmware = (char *)row->current_firmware};

    if (!row->has_history || row->current_firmware == NULL)
        return NULL;
    return bsearch(&key, x->groups, x->n_groups, sizeof(*x->groups), by_group);
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
    const device_group *g;
    json_t *item = NULL;

    if (w->budget-- <= 0 ||
        (json_array_size(w->items) >= limit &&
         strcmp(row->serial, serial_of(json_array_get(w->items, limit - 1))) != 0)) {
        *stop = true;
        goto out;
    }
    g = group_of(w->x, row);
    if (g == NULL || !listed(w->x, g))
        goto out;
    item = json_pack("{s:s,s:s,s:s?,s:s?}", "product", row->product, "serial", row->serial,
                     "current_firmware", row->current_firmware, "batch", row->batch);
    KBR_ENSURE(item != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(page_item(w->x, g, item));
    KBR_ENSURE(json_array_append(w->items, item) == 0, KBR_ERR_NOMEM);
out:
    json_decref(item);
    return err;
}

/*
 * The fleet in serial order, keeping the listed devices: cheap while they are a good share of
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
 * Two ways to one page: fetching every listed group after the cursor costs about the listed
 * count, walking the fleet about limit * fleet / listed rows.  The cheaper estimate wins; a
 * walk that overruns its estimate falls back to the groups.
 */
static kbr_err device_page(exposure *x, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *items = NULL;
    int64_t fleet = 0, walk_rows, fetch, count = 0, groups = 0;
    bool done = false;

    *out = NULL;
    for (size_t i = 0; i < x->n_groups; i++) {
        if (!listed(x, &x->groups[i]))
            continue;
        count += x->groups[i].count;
        groups++;
    }
    KBR_GUARD(x->st->ops->fleet_size(x->st, x->q->product, &fleet));
    fetch = count + GROUP_QUERY_ROWS * groups;
    walk_rows = count > 0 ? (int64_t)x->q->limit * fleet / count : 0;
    if (count > 0 && walk_rows < fetch) {
        KBR_GUARD(walk_fleet(x, 4 * walk_rows > WALK_BUDGET_MIN ? 4 * walk_rows : WALK_BUDGET_MIN,
                             &items, &done));
    }
    if (!done && count > 0) {
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

static kbr_err exposure_view(exposure *x, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *view = NULL, *devices = NULL, *page = NULL;
    size_t i;
    const json_t *b;

    *out = NULL;
    x->builds = json_array();
    x->undecided = json_array();
    x->batches = json_object();
    x->markets = json_object();
    x->affected = json_object();
    KBR_ENSURE(x->builds != NULL && x->undecided != NULL && x->batches != NULL &&
                   x->markets != NULL && x->affected != NULL,
               KBR_ERR_NOMEM);
    KBR_GUARD(find_builds(x));
    json_array_foreach(x->builds, i, b)
    {
        KBR_GUARD(count_current(x, b));
    }
    KBR_GUARD(devices_section(x, &devices));
    view = json_pack("{s:O,s:O,s:O}", "builds", x->builds, "undecided", x->undecided, "devices",
                     devices);
    KBR_ENSURE(view != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(count_affected(x));
    KBR_GUARD(affected_sections(x, view));
    /* limit < 0: the figures only (an incident's) */
    if (x->q->limit >= 0 && (x->q->devices || x->q->fixed_version != NULL)) {
        KBR_GUARD(device_page(x, &page));
        KBR_ENSURE(json_object_set_new(view, x->q->devices ? "affected_devices" : "pending_devices",
                                       page) == 0,
                   KBR_ERR_NOMEM);
        page = NULL;
    }
    *out = view;
    view = NULL;
out:
    json_decref(page);
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
    KBR_GUARD(kbr_match_new(q->component, q->purl, q->versions, q->vers, &x.match, NULL));
    KBR_GUARD(st->ops->snapshot_begin(st, NULL));
    in_snapshot = true;
    KBR_GUARD(exposure_view(&x, out));
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    exposure_cleanup(&x);
    return err;
}
