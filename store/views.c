/*
 * views.c - kbr_store_view_*: the four custody views, composed from the back
 * end's rows (each view in one snapshot): the argument rules, version order,
 * EU membership, grouping by purpose and by market, the expiring section,
 * principals, and the device's whole record.  exposure.c does View C's rows.
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kbr_cra.h"

/* ---- version order ---- */

/* A version generic reads: printable ASCII with a letter or digit (firmware names are). */
static bool generic_version(const char *v)
{
    return kbr_version_check(KBR_VSCHEME_GENERIC, v, NULL) == KBR_OK;
}

int kbr_store_version_cmp(const char *a, const char *b)
{
    bool ga = generic_version(a), gb = generic_version(b);
    int c = 0;

    if (ga && gb && kbr_version_cmp(KBR_VSCHEME_GENERIC, a, b, &c, NULL) == KBR_OK)
        return c;
    if (ga != gb)
        return ga ? 1 : -1;
    c = strcmp(a, b);
    return c < 0 ? -1 : c > 0;
}

/* ---- small JSON helpers ---- */

static const char *str_of(const json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
}

/* The object's values as a new array, ordered by cmp (a qsort comparison of json_t *). */
static kbr_err values_sorted(const json_t *obj, int (*cmp)(const void *, const void *),
                             json_t **out)
{
    kbr_err err = KBR_OK;
    size_t n = json_object_size(obj), i = 0;
    json_t **items = NULL, *arr = NULL, *v;
    const char *name;

    *out = NULL;
    items = calloc(n > 0 ? n : 1, sizeof(*items));
    arr = json_array();
    KBR_ENSURE(items != NULL && arr != NULL, KBR_ERR_NOMEM);
    json_object_foreach((json_t *)obj, name, v)
    {
        items[i++] = v;
    }
    qsort(items, n, sizeof(*items), cmp);
    for (i = 0; i < n; i++)
        KBR_ENSURE(json_array_append(arr, items[i]) == 0, KBR_ERR_NOMEM);
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    free(items);
    return err;
}

/* obj[field] as an array, created empty on first use; borrowed. */
static kbr_err array_member(json_t *obj, const char *field, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *arr = json_object_get(obj, field);

    *out = NULL;
    if (arr == NULL) {
        arr = json_array();
        KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
        KBR_ENSURE(json_object_set_new(obj, field, arr) == 0, KBR_ERR_NOMEM);
    }
    *out = arr;
out:
    return err;
}

static kbr_err add_int(json_t *obj, const char *field, json_int_t n)
{
    json_int_t have = json_integer_value(json_object_get(obj, field));

    return json_object_set_new(obj, field, json_integer(have + n)) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

/* ---- View A ---- */

static kbr_err group_by_purpose(const json_t *keys, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *groups = NULL, *list = NULL;
    const json_t *key;
    size_t i;

    *out = NULL;
    groups = json_object();
    KBR_ENSURE(groups != NULL, KBR_ERR_NOMEM);
    json_array_foreach(keys, i, key)
    {
        KBR_ENSURE(str_of(key, "purpose") != NULL, KBR_ERR_STORE);
        KBR_GUARD(array_member(groups, str_of(key, "purpose"), &list));
        KBR_ENSURE(json_array_append(list, (json_t *)key) == 0, KBR_ERR_NOMEM);
    }
    *out = groups;
    groups = NULL;
out:
    json_decref(groups);
    return err;
}

static kbr_err expiring_key_certificate(const json_t *key, const char *until, json_t *list)
{
    kbr_err err = KBR_OK;
    const json_t *cert = json_object_get(key, "certificate");
    const char *not_after = str_of(cert, "not_after");

    if (not_after == NULL || strcmp(not_after, until) > 0)
        goto out;
    KBR_ENSURE(json_array_append_new(
                   list, json_pack("{s:s?,s:s?,s:s?,s:s?,s:s}", "key", str_of(key, "name"),
                                   "purpose", str_of(key, "purpose"), "serial_number",
                                   str_of(cert, "serial_number"), "fingerprint",
                                   str_of(cert, "fingerprint"), "not_after", not_after)) == 0,
               KBR_ERR_NOMEM);
out:
    return err;
}

/* A live token of key that expires by until joins tokens (keyed by jti) with the key's name. */
static kbr_err expiring_token(const json_t *tok, const char *key, const char *until, json_t *by_jti)
{
    kbr_err err = KBR_OK;
    const char *jti = str_of(tok, "jti"), *exp = str_of(tok, "expires_at");
    json_t *entry, *keys = NULL;

    KBR_ENSURE(jti != NULL && exp != NULL, KBR_ERR_STORE);
    if (strcmp(exp, until) > 0)
        goto out;
    entry = json_object_get(by_jti, jti);
    if (entry == NULL) {
        entry = json_pack("{s:s,s:O,s:s}", "jti", jti, "sub", json_object_get(tok, "sub"),
                          "expires_at", exp);
        KBR_ENSURE(entry != NULL, KBR_ERR_NOMEM);
        KBR_ENSURE(json_object_set_new(by_jti, jti, entry) == 0, KBR_ERR_NOMEM);
    }
    KBR_GUARD(array_member(entry, "keys", &keys));
    KBR_ENSURE(json_array_append_new(keys, json_string(key)) == 0, KBR_ERR_NOMEM);
out:
    return err;
}

static int by_expiry(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    int c = strcmp(str_of(x, "expires_at"), str_of(y, "expires_at"));

    return c != 0 ? c : strcmp(str_of(x, "jti"), str_of(y, "jti"));
}

static kbr_err expiring_section(const json_t *raw, long within_days, const char *until,
                                json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *sec = NULL, *certs = NULL, *by_jti = NULL, *tokens = NULL;
    const json_t *key, *tok;
    size_t i, j;

    *out = NULL;
    certs = json_array();
    by_jti = json_object();
    KBR_ENSURE(certs != NULL && by_jti != NULL, KBR_ERR_NOMEM);
    json_array_foreach(json_object_get(raw, "keys"), i, key)
    {
        KBR_GUARD(expiring_key_certificate(key, until, certs));
        json_array_foreach(json_object_get(key, "live_tokens"), j, tok)
        {
            KBR_GUARD(expiring_token(tok, str_of(key, "name"), until, by_jti));
        }
    }
    KBR_GUARD(values_sorted(by_jti, by_expiry, &tokens));
    sec = json_pack("{s:I,s:s,s:O,s:O,s:O}", "within_days", (json_int_t)within_days, "until", until,
                    "key_certificates", certs, "device_certificates",
                    json_object_get(raw, "expiring_devices"), "tokens", tokens);
    KBR_ENSURE(sec != NULL, KBR_ERR_NOMEM);
    *out = sec;
out:
    json_decref(tokens);
    json_decref(by_jti);
    json_decref(certs);
    return err;
}

/* 100 years: further than any certificate a device carries, and far from time_t's end. */
#define VIEW_MAX_DAYS 36500L
/* Expiring device certificates listed one by one; the rest are in the count. */
#define EXPIRING_FIRST 100

/* The relation rows (ordered by key) as key -> [roles], keys in order. */
static kbr_err roles_by_key(const json_t *rows, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *by_key = json_object(), *roles = NULL;
    const json_t *row;
    size_t i;

    *out = NULL;
    KBR_ENSURE(by_key != NULL, KBR_ERR_NOMEM);
    json_array_foreach(rows, i, row)
    {
        KBR_ENSURE(str_of(row, "key") != NULL && str_of(row, "role") != NULL, KBR_ERR_STORE);
        KBR_GUARD(array_member(by_key, str_of(row, "key"), &roles));
        KBR_ENSURE(json_array_append(roles, json_object_get(row, "role")) == 0, KBR_ERR_NOMEM);
    }
    *out = by_key;
    by_key = NULL;
out:
    json_decref(by_key);
    return err;
}

/* Each key the product depends on, with its relations and the live tokens that may use it. */
static kbr_err product_keys(kbr_store *st, const char *product, const char *now, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *by_key = NULL, *keys = json_array(), *key = NULL, *tokens = NULL;
    json_t *roles;
    const char *name;

    *out = NULL;
    KBR_ENSURE(keys != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(st->ops->product_relations(st, product, &rows));
    KBR_GUARD(roles_by_key(rows, &by_key));
    json_object_foreach(by_key, name, roles)
    {
        kbr_err found = kbr_store_key_get(st, name, &key);
        /* a relation may name a key another broker registered (an external issuer) */
        if (found == KBR_ERR_NOT_FOUND)
            continue;
        KBR_GUARD(found);
        KBR_GUARD(st->ops->live_tokens(st, name, product, now, &tokens));
        KBR_ENSURE(json_object_set(key, "relations", roles) == 0, KBR_ERR_NOMEM);
        KBR_ENSURE(json_object_set_new(key, "live_tokens", tokens) == 0, KBR_ERR_NOMEM);
        tokens = NULL;
        KBR_ENSURE(json_array_append_new(keys, key) == 0, KBR_ERR_NOMEM);
        key = NULL;
    }
    *out = keys;
    keys = NULL;
out:
    json_decref(tokens);
    json_decref(key);
    json_decref(keys);
    json_decref(by_key);
    json_decref(rows);
    return err;
}

/* {total_current, by_expiry_month} */
static kbr_err device_certificates(kbr_store *st, const char *product, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *months = NULL;
    const json_t *m;
    json_int_t total = 0;
    size_t i;

    *out = NULL;
    KBR_GUARD(st->ops->cert_months(st, product, &months));
    json_array_foreach(months, i, m)
    {
        total += json_integer_value(json_object_get(m, "count"));
    }
    *out = json_pack("{s:I,s:O}", "total_current", total, "by_expiry_month", months);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(months);
    return err;
}

static kbr_err product_parts(kbr_store *st, const char *product, time_t now, const char *until,
                             json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *keys = NULL, *certs = NULL, *first = NULL;
    char now_text[KBR_TIME_LEN];
    bool known = false;
    int64_t count = 0;

    *out = NULL;
    kbr_time_fmt(now, now_text);
    KBR_GUARD(product_keys(st, product, now_text, &keys));
    if (json_array_size(keys) == 0) {
        KBR_GUARD(st->ops->product_known(st, product, &known));
        KBR_ENSURE(known, KBR_ERR_NOT_FOUND);
    }
    KBR_GUARD(device_certificates(st, product, &certs));
    *out = json_pack("{s:O,s:O}", "keys", keys, "device_certificates", certs);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
    if (until != NULL) {
        KBR_GUARD(st->ops->expiring_devices(st, product, until, EXPIRING_FIRST, &count, &first));
        KBR_ENSURE(json_object_set_new(
                       *out, "expiring_devices",
                       json_pack("{s:I,s:O}", "count", (json_int_t)count, "first", first)) == 0,
                   KBR_ERR_NOMEM);
    }
out:
    json_decref(first);
    json_decref(certs);
    json_decref(keys);
    return err;
}

/* The parts of View A, read in one snapshot. */
static kbr_err product_raw(kbr_store *st, const char *product, time_t now, const char *until,
                           json_t **out)
{
    kbr_err err = KBR_OK;
    bool in_snapshot = false;

    *out = NULL;
    KBR_GUARD(st->ops->snapshot_begin(st, NULL));
    in_snapshot = true;
    KBR_GUARD(product_parts(st, product, now, until, out));
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    return err;
}

/* The product's support period, and what lapses within it (null both when unregistered). */
static kbr_err support_sections(kbr_store *st, const char *product, const json_t *groups,
                                json_t *view)
{
    kbr_err err = KBR_OK;
    json_t *support = NULL, *continuity = NULL;
    kbr_err found = kbr_store_product_get(st, product, &support);

    KBR_ENSURE(found == KBR_OK || found == KBR_ERR_NOT_FOUND, found);
    if (found == KBR_OK)
        KBR_GUARD(kbr_store_continuity(st, product, groups,
                                       json_string_value(json_object_get(support, "support_until")),
                                       &continuity));
    KBR_ENSURE(
        json_object_set(view, "support", support != NULL ? support : json_null()) == 0 &&
            json_object_set(view, "continuity", continuity != NULL ? continuity : json_null()) == 0,
        KBR_ERR_NOMEM);
out:
    json_decref(continuity);
    json_decref(support);
    return err;
}

/* raw's keys without those the reader does not see (each key's live tokens go with it, so
 * the expiring tokens and the continuity read from what is left name none of them either). */
static kbr_err keys_seen(json_t *raw, kbr_key_visible_fn visible, void *arg)
{
    json_t *keys = json_object_get(raw, "keys");
    size_t i = 0;

    while (i < json_array_size(keys)) {
        const char *name = str_of(json_array_get(keys, i), "name");

        if (name != NULL && visible(name, arg))
            i++;
        else if (json_array_remove(keys, i) != 0)
            return KBR_ERR_NOMEM;
    }
    return KBR_OK;
}

kbr_err kbr_store_view_product(kbr_store *st, const char *product, time_t now, long within_days,
                               json_t **out)
{
    return kbr_store_view_product_seen(st, product, now, within_days, NULL, NULL, out);
}

kbr_err kbr_store_view_product_seen(kbr_store *st, const char *product, time_t now,
                                    long within_days, kbr_key_visible_fn visible, void *arg,
                                    json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *raw = NULL, *view = NULL, *groups = NULL, *expiring = NULL;
    char until[KBR_TIME_LEN];

    *out = NULL;
    KBR_ENSURE(product != NULL && product[0] != '\0', KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(within_days <= VIEW_MAX_DAYS, KBR_ERR_BAD_REQUEST);
    kbr_time_fmt(now + (time_t)(within_days < 0 ? 0 : within_days) * 86400, until);
    KBR_GUARD(product_raw(st, product, now, within_days >= 0 ? until : NULL, &raw));
    if (visible != NULL)
        KBR_GUARD(keys_seen(raw, visible, arg));
    KBR_GUARD(group_by_purpose(json_object_get(raw, "keys"), &groups));
    view = json_pack("{s:s,s:O,s:O}", "product", product, "keys", groups, "device_certificates",
                     json_object_get(raw, "device_certificates"));
    KBR_ENSURE(view != NULL, KBR_ERR_NOMEM);
    if (within_days >= 0) {
        KBR_GUARD(expiring_section(raw, within_days, until, &expiring));
        KBR_ENSURE(json_object_set(view, "expiring", expiring) == 0, KBR_ERR_NOMEM);
    }
    KBR_GUARD(support_sections(st, product, groups, view));
    *out = view;
    view = NULL;
out:
    json_decref(expiring);
    json_decref(groups);
    json_decref(view);
    json_decref(raw);
    return err;
}

/* ---- View B ---- */

static bool token_live(const json_t *tok, const char *now)
{
    const char *exp = str_of(tok, "expires_at");

    return json_is_null(json_object_get(tok, "revoked_at")) && exp != NULL && strcmp(exp, now) > 0;
}

/* principals[sub], created on first mention. */
static kbr_err principal_of(json_t *principals, const json_t *sub_value, json_t **out)
{
    kbr_err err = KBR_OK;
    const char *sub = json_is_string(sub_value) ? json_string_value(sub_value) : "";
    json_t *p = json_object_get(principals, sub);

    *out = NULL;
    if (p == NULL) {
        p = json_pack("{s:O,s:b,s:i,s:i}", "sub", sub_value, "live_grant", 0, "tokens", 0,
                      "operations", 0);
        KBR_ENSURE(p != NULL, KBR_ERR_NOMEM);
        KBR_ENSURE(json_object_set_new(principals, sub, p) == 0, KBR_ERR_NOMEM);
    }
    *out = p;
out:
    return err;
}

static int by_grant_then_sub(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    bool lx = json_is_true(json_object_get(x, "live_grant"));
    bool ly = json_is_true(json_object_get(y, "live_grant"));
    const char *sx = str_of(x, "sub"), *sy = str_of(y, "sub");

    if (lx != ly)
        return lx ? -1 : 1;
    return strcmp(sx != NULL ? sx : "", sy != NULL ? sy : "");
}

static kbr_err principals_of(const json_t *raw, time_t now, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *by_sub = NULL, *p = NULL;
    const json_t *row;
    char now_text[KBR_TIME_LEN];
    size_t i;

    *out = NULL;
    kbr_time_fmt(now, now_text);
    by_sub = json_object();
    KBR_ENSURE(by_sub != NULL, KBR_ERR_NOMEM);
    json_array_foreach(json_object_get(raw, "tokens"), i, row)
    {
        KBR_GUARD(principal_of(by_sub, json_object_get(row, "sub"), &p));
        KBR_GUARD(add_int(p, "tokens", 1));
        if (token_live(row, now_text))
            KBR_ENSURE(json_object_set_new(p, "live_grant", json_true()) == 0, KBR_ERR_NOMEM);
    }
    json_array_foreach(json_object_get(raw, "operations"), i, row)
    {
        KBR_GUARD(principal_of(by_sub, json_object_get(row, "sub"), &p));
        KBR_GUARD(add_int(p, "operations", json_integer_value(json_object_get(row, "count"))));
    }
    KBR_GUARD(values_sorted(by_sub, by_grant_then_sub, out));
out:
    json_decref(by_sub);
    return err;
}

static kbr_err custody_parts(kbr_store *st, const char *key, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *tokens = NULL, *ops = NULL;
    bool exists = false;

    *out = NULL;
    KBR_GUARD(st->ops->key_exists(st, key, &exists));
    KBR_ENSURE(exists, KBR_ERR_NOT_FOUND);
    KBR_GUARD(st->ops->key_tokens(st, key, &tokens));
    KBR_GUARD(st->ops->key_operations(st, key, &ops));
    *out = json_pack("{s:s,s:O,s:O}", "key", key, "tokens", tokens, "operations", ops);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(ops);
    json_decref(tokens);
    return err;
}

/* The parts of View B, read in one snapshot. */
static kbr_err custody_raw(kbr_store *st, const char *key, json_t **out)
{
    kbr_err err = KBR_OK;
    bool in_snapshot = false;

    *out = NULL;
    KBR_GUARD(st->ops->snapshot_begin(st, NULL));
    in_snapshot = true;
    KBR_GUARD(custody_parts(st, key, out));
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    return err;
}

kbr_err kbr_store_view_custody(kbr_store *st, const char *key, time_t now, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *raw = NULL, *principals = NULL;

    *out = NULL;
    KBR_ENSURE(key != NULL && key[0] != '\0', KBR_ERR_BAD_REQUEST);
    KBR_GUARD(custody_raw(st, key, &raw));
    KBR_GUARD(principals_of(raw, now, &principals));
    KBR_ENSURE(json_object_set(raw, "principals", principals) == 0, KBR_ERR_NOMEM);
    *out = raw;
    raw = NULL;
out:
    json_decref(principals);
    json_decref(raw);
    return err;
}

/* ---- View C ---- */

#define PAGE_LIMIT_DEFAULT 100

kbr_err kbr_store_view_exposure(kbr_store *st, const kbr_exposure_query *q, json_t **out)
{
    kbr_err err = KBR_OK;
    kbr_exposure_query resolved;
    json_t *raw = NULL, *echo = NULL;

    *out = NULL;
    KBR_GUARD(kbr_store_exposure_check(q, NULL));
    resolved = *q;
    resolved.limit = q->limit == 0 ? PAGE_LIMIT_DEFAULT : q->limit;
    KBR_GUARD(kbr_store_exposure_rows(st, &resolved, &raw));
    echo = json_pack("{s:s?,s:s?,s:O?,s:s?,s:s?,s:s?}", "component", q->component, "purl", q->purl,
                     "versions", q->versions, "vers", q->vers, "product", q->product,
                     "fixed_version", q->fixed_version);
    KBR_ENSURE(echo != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set(raw, "query", echo) == 0, KBR_ERR_NOMEM);
    *out = raw;
    raw = NULL;
out:
    json_decref(echo);
    json_decref(raw);
    return err;
}

/* ---- View D ---- */

/* The one device with serial, or CONFLICT when several products have it. */
static kbr_err device_product(kbr_store *st, const char *serial, char **product)
{
    kbr_err err = KBR_OK;
    json_t *found = NULL;

    *product = NULL;
    KBR_GUARD(st->ops->device_find(st, serial, &found));
    KBR_ENSURE(json_array_size(found) > 0, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(json_array_size(found) == 1, KBR_ERR_CONFLICT);
    *product = strdup(str_of(json_array_get(found, 0), "product"));
    KBR_ENSURE(*product != NULL, KBR_ERR_NOMEM);
out:
    json_decref(found);
    return err;
}

/* The certificate as the view shows it: the PEM stays with GET /v1/devices. */
static kbr_err view_certificates(json_t *dev)
{
    json_t *cert;
    size_t i;

    json_array_foreach(json_object_get(dev, "certificates"), i, cert)
    {
        json_object_del(cert, "pem");
        json_object_del(cert, "chain_pem");
    }
    return KBR_OK;
}

static kbr_err debug_entry(const json_t *ev, json_t *list)
{
    const json_t *d = json_object_get(ev, "detail");
    json_t *entry =
        json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "at", json_object_get(ev, "at"), "key",
                  json_object_get(d, "key"), "ticket", json_object_get(d, "ticket"), "principal",
                  json_object_get(d, "principal"), "permissions", json_object_get(d, "permissions"),
                  "challenge_sha256", json_object_get(d, "challenge_sha256"), "expires_at",
                  json_object_get(d, "expires_at"), "audit_seq", json_object_get(ev, "audit_seq"));

    /* json_pack refuses a NULL "O": a debug-auth event without its recorded fields is damage. */
    if (entry == NULL)
        return KBR_ERR_STORE;
    return json_array_append_new(list, entry) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

/* Events split into the debug-auth list and the plain event list. */
static kbr_err view_events(const json_t *events, json_t *dev)
{
    kbr_err err = KBR_OK;
    json_t *debug = NULL, *plain = NULL;
    const json_t *ev;
    size_t i;

    debug = json_array();
    plain = json_array();
    KBR_ENSURE(debug != NULL && plain != NULL, KBR_ERR_NOMEM);
    json_array_foreach(events, i, ev)
    {
        if (strcmp(str_of(ev, "kind"), "debug-auth") == 0)
            KBR_GUARD(debug_entry(ev, debug));
        KBR_ENSURE(json_array_append_new(plain, json_pack("{s:O,s:O,s:O}", "kind",
                                                          json_object_get(ev, "kind"), "at",
                                                          json_object_get(ev, "at"), "audit_seq",
                                                          json_object_get(ev, "audit_seq"))) == 0,
                   KBR_ERR_NOMEM);
    }
    KBR_ENSURE(json_object_set(dev, "debug_auth", debug) == 0, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set(dev, "events", plain) == 0, KBR_ERR_NOMEM);
out:
    json_decref(plain);
    json_decref(debug);
    return err;
}

static kbr_err device_record(kbr_store *st, const char *product, const char *serial, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *dev = NULL, *batch = NULL, *firmware = NULL, *events = NULL;
    const char *batch_name;

    *out = NULL;
    KBR_GUARD(kbr_store_device_get(st, product, serial, &dev));
    KBR_GUARD(view_certificates(dev));
    json_object_del(dev, "csr_sha256");
    batch_name = str_of(dev, "batch");
    if (batch_name != NULL)
        KBR_GUARD(st->ops->batch_get(st, batch_name, &batch));
    KBR_ENSURE(json_object_set(dev, "markets",
                               batch != NULL ? json_object_get(batch, "markets") : json_null()) ==
                   0,
               KBR_ERR_NOMEM);
    KBR_GUARD(st->ops->device_firmware(st, product, serial, &firmware));
    KBR_ENSURE(json_object_set(dev, "firmware", firmware) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(st->ops->device_events(st, product, serial, &events));
    KBR_GUARD(view_events(events, dev));
    *out = dev;
    dev = NULL;
out:
    json_decref(events);
    json_decref(firmware);
    json_decref(batch);
    json_decref(dev);
    return err;
}

kbr_err kbr_store_view_device(kbr_store *st, const char *product, const char *serial, json_t **out)
{
    kbr_err err = KBR_OK;
    char *found = NULL;
    bool in_snapshot = false;

    *out = NULL;
    KBR_ENSURE(serial != NULL && serial[0] != '\0', KBR_ERR_BAD_REQUEST);
    KBR_GUARD(st->ops->snapshot_begin(st, NULL));
    in_snapshot = true;
    if (product == NULL) {
        KBR_GUARD(device_product(st, serial, &found));
        product = found;
    }
    KBR_GUARD(device_record(st, product, serial, out));
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    free(found);
    return err;
}
