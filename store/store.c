/* store.c - kbr_store_*: picks the back end by URL scheme and holds the logic they share. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "backend.h"
#include "pg.h"

static const kbr_store_ops *const backends[] = {&kbr_store_sqlite_ops, &kbr_store_pg_ops,
                                                &kbr_store_pg_alt_ops};

static const kbr_store_ops *backend_for(const char *url, const char **location)
{
    const char *colon = strchr(url, ':');
    size_t n;

    *location = NULL;
    if (colon == NULL)
        return NULL;
    n = (size_t)(colon - url);
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (strlen(backends[i]->scheme) == n && strncmp(backends[i]->scheme, url, n) == 0) {
            *location = colon + 1;
            return backends[i];
        }
    }
    return NULL;
}

/* The back end for url, or NULL with msg naming the URL. */
static const kbr_store_ops *ops_for(const char *url, const char **location, kbr_msg *msg)
{
    const kbr_store_ops *ops = url != NULL ? backend_for(url, location) : NULL;

    if (url == NULL)
        kbr_fail(msg, KBR_ERR_CONFIG, "store: no URL given");
    else if (ops == NULL) {
        char *shown = kbr_pg_where_of(url); /* a mistyped scheme keeps its password out */
        kbr_fail(msg, KBR_ERR_CONFIG,
                 "store: unsupported URL \"%s\" (want sqlite:PATH or postgresql://...)",
                 shown != NULL ? shown : "?");
        free(shown);
    }
    return ops;
}

kbr_err kbr_store_open(const char *url, kbr_store **out, kbr_msg *msg)
{
    const char *location = NULL;
    const kbr_store_ops *ops = ops_for(url, &location, msg);

    *out = NULL;
    return ops != NULL ? ops->open(location, out, msg) : KBR_ERR_CONFIG;
}

kbr_err kbr_store_open_existing(const char *url, kbr_store **out, kbr_msg *msg)
{
    const char *location = NULL;
    const kbr_store_ops *ops = ops_for(url, &location, msg);
    kbr_err err;

    *out = NULL;
    if (ops == NULL)
        return KBR_ERR_CONFIG;
    if (ops->open_existing != NULL)
        return ops->open_existing(location, out, msg);
    err = ops->exists != NULL ? ops->exists(location, msg) : KBR_OK;
    return err != KBR_OK ? err : ops->open(location, out, msg);
}

kbr_err kbr_store_lock(const char *url, int *fd, kbr_msg *msg)
{
    const char *location = NULL;
    const kbr_store_ops *ops = ops_for(url, &location, msg);

    *fd = -1;
    return ops != NULL ? ops->lock(location, fd, msg) : KBR_ERR_CONFIG;
}

kbr_err kbr_store_exists(const char *url, kbr_msg *msg)
{
    const char *location = NULL;
    const kbr_store_ops *ops = ops_for(url, &location, msg);

    if (ops == NULL)
        return KBR_ERR_CONFIG;
    return ops->exists != NULL ? ops->exists(location, msg) : KBR_OK;
}

kbr_err kbr_store_file(const char *url, char **path, kbr_msg *msg)
{
    const char *location = NULL;
    const kbr_store_ops *ops = url != NULL ? backend_for(url, &location) : NULL;

    *path = NULL;
    return ops != NULL && ops->file != NULL ? ops->file(location, path, msg) : KBR_OK;
}

char *kbr_store_shown(const char *url)
{
    const char *location = NULL;
    const kbr_store_ops *ops = url != NULL ? backend_for(url, &location) : NULL;
    kbr_msg msg = {{0}};
    char *path = NULL;

    if (ops != NULL && ops->shown != NULL)
        return ops->shown(url);
    if (ops != NULL && ops->file != NULL && ops->file(location, &path, &msg) == KBR_OK &&
        path != NULL)
        return path;
    return url != NULL ? strdup(url) : NULL;
}

kbr_err kbr_store_no_schema(const char *shown, kbr_msg *msg)
{
    return kbr_fail(msg, KBR_ERR_STORE,
                    "store %s holds no keybroker schema (an empty or foreign file) and is left as "
                    "it is: restore the store from a backup, or keybrokerd --init makes a new one",
                    shown);
}

kbr_err kbr_store_resolved_url(const char *url, char **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    const char *options;

    *out = NULL;
    KBR_GUARD(kbr_store_file(url, &path, msg));
    options = strchr(url, '?');
    if (path == NULL)
        *out = strdup(url);
    else if (asprintf(out, "%.*s%s%s", (int)(strchr(url, ':') - url + 1), url, path,
                      options != NULL ? options : "") < 0)
        *out = NULL;
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    free(path);
    return err;
}

kbr_err kbr_store_open_readonly(const char *url, kbr_store **out, kbr_store_info *info,
                                kbr_msg *msg)
{
    const char *location = NULL;
    const kbr_store_ops *ops = ops_for(url, &location, msg);

    *out = NULL;
    memset(info, 0, sizeof(*info));
    if (ops == NULL)
        return KBR_ERR_CONFIG;
    if (ops->open_readonly == NULL)
        return kbr_fail(msg, KBR_ERR_CONFIG, "store %s: cannot be read without changing it", url);
    return ops->open_readonly(location, out, info, msg);
}

kbr_err kbr_store_backup(kbr_store *st, int *fd, kbr_store_backup_info *info, kbr_msg *msg)
{
    *fd = -1;
    memset(info, 0, sizeof(*info));
    if (st->ops->backup == NULL)
        return kbr_fail(msg, KBR_ERR_STORE, "this store cannot be copied online");
    return st->ops->backup(st, fd, info, msg);
}

kbr_err kbr_store_copy_to(kbr_store *st, const char *path, kbr_msg *msg)
{
    if (st->ops->copy_to == NULL)
        return kbr_fail(msg, KBR_ERR_STORE, "this store cannot be copied to a file");
    return st->ops->copy_to(st, path, msg);
}

void kbr_store_interrupt(kbr_store *st)
{
    if (st != NULL && st->ops->interrupt != NULL)
        st->ops->interrupt(st);
}

bool kbr_store_shared(const char *url)
{
    const char *location = NULL;
    const kbr_store_ops *ops = url != NULL ? backend_for(url, &location) : NULL;

    return ops != NULL && ops->shared;
}

kbr_err kbr_store_token_uses_left(kbr_store *st, const char *jti, int64_t *left)
{
    return st->ops->token_uses_left(st, jti, left);
}

kbr_err kbr_store_checkpoint_lease(kbr_store *st, bool *held)
{
    return st->ops->checkpoint_lease(st, held);
}

void kbr_store_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

void kbr_store_close(kbr_store *st)
{
    if (st == NULL)
        return;
    st->ops->close(st);
}

kbr_err kbr_store_writer_mode(kbr_store *st)
{
    return st->ops->writer_mode(st);
}

kbr_err kbr_store_writer_between(kbr_store *st, bool *copied)
{
    *copied = false;
    return st->ops->writer_between != NULL ? st->ops->writer_between(st, copied) : KBR_OK;
}

kbr_err kbr_store_maintain(kbr_store *st)
{
    return st->ops->maintain(st);
}

kbr_err kbr_store_begin(kbr_store *st)
{
    return st->ops->begin(st);
}

kbr_err kbr_store_commit(kbr_store *st)
{
    return st->ops->commit(st);
}

void kbr_store_rollback(kbr_store *st)
{
    st->ops->rollback(st);
}

bool kbr_store_in_transaction(kbr_store *st)
{
    return st->ops->in_transaction(st);
}

kbr_err kbr_store_audit_insert(kbr_store *st, const kbr_store_audit_row *row)
{
    return st->ops->audit_insert(st, row);
}

kbr_err kbr_store_evidence_seqs(kbr_store *st, const char *product, const char *serial,
                                json_t **seqs)
{
    return st->ops->evidence_seqs(st, product, serial, seqs);
}

kbr_err kbr_store_read_begin(kbr_store *st, kbr_msg *msg)
{
    return st->ops->snapshot_begin(st, msg);
}

void kbr_store_read_end(kbr_store *st)
{
    st->ops->snapshot_end(st);
}

kbr_err kbr_store_bulk_mode(kbr_store *st)
{
    return st->ops->bulk_mode(st);
}

kbr_err kbr_store_scratch_mode(kbr_store *st)
{
    return st->ops->scratch_mode(st);
}

kbr_err kbr_store_effects_from(kbr_store *st, int64_t *seq)
{
    return st->ops->effects_from(st, seq);
}

kbr_err kbr_store_integrity(kbr_store *st, kbr_msg *msg)
{
    return st->ops->integrity(st, msg);
}

kbr_err kbr_store_compare(kbr_store *st, kbr_store *rebuilt, kbr_store_compare_stats *stats,
                          kbr_msg *msg)
{
    if (rebuilt->ops != &kbr_store_sqlite_ops)
        return kbr_fail(msg, KBR_ERR_INTERNAL, "a store is compared with a SQLite rebuild");
    return st->ops->compare(st, rebuilt, stats, msg);
}

kbr_err kbr_store_document_get(kbr_store *st, const char *sha256, unsigned char **body, size_t *len,
                               int64_t *audit_seq)
{
    return st->ops->document_get(st, sha256, body, len, audit_seq);
}

kbr_err kbr_store_audit_tail(kbr_store *st, int64_t *seq, char hash[65])
{
    return st->ops->audit_tail(st, seq, hash);
}

kbr_err kbr_store_audit_walk(kbr_store *st, int64_t after, int64_t limit, kbr_store_entry_fn fn,
                             void *arg)
{
    return st->ops->audit_walk(st, after, limit, fn, arg);
}

static kbr_err page_add(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    kbr_err err = KBR_OK;
    json_t *entry = NULL;

    (void)seq;
    entry = json_loads(entry_json, 0, NULL);
    /* The writer stored canonical JSON objects; anything else is damage. */
    KBR_ENSURE(json_is_object(entry), KBR_ERR_STORE);
    KBR_ENSURE(json_object_set_new(entry, "hash", json_string(hash)) == 0, KBR_ERR_NOMEM);
    KBR_ENSURE(json_array_append(arg, entry) == 0, KBR_ERR_NOMEM);
out:
    json_decref(entry);
    return err;
}

kbr_err kbr_store_audit_page(kbr_store *st, int64_t after, int64_t limit, json_t **entries)
{
    kbr_err err = KBR_OK;
    json_t *arr = NULL;

    *entries = NULL;
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(st->ops->audit_walk(st, after, limit, page_add, arr));
    *entries = arr;
    arr = NULL;
out:
    json_decref(arr);
    return err;
}

kbr_err kbr_store_audit_entries(kbr_store *st, const json_t *seqs, json_t **entries)
{
    kbr_err err = KBR_OK;
    json_t *arr = json_array();
    const json_t *v;
    size_t i;

    *entries = NULL;
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    json_array_foreach(seqs, i, v)
    {
        size_t before = json_array_size(arr);
        KBR_ENSURE(json_is_integer(v) && json_integer_value(v) > 0, KBR_ERR_INTERNAL);
        KBR_GUARD(st->ops->audit_walk(st, json_integer_value(v) - 1, 1, page_add, arr));
        KBR_ENSURE(json_array_size(arr) == before + 1, KBR_ERR_NOT_FOUND);
    }
    *entries = arr;
    arr = NULL;
out:
    json_decref(arr);
    return err;
}

kbr_err kbr_store_audit_page_within(kbr_store *st, int64_t after, int64_t limit,
                                    const kbr_audit_scope *scope, json_t **entries)
{
    kbr_err err = KBR_OK;
    json_t *arr = NULL;

    *entries = NULL;
    if (scope == NULL || (!scope->products_limited && !scope->keys_limited))
        return kbr_store_audit_page(st, after, limit, entries);
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(st->ops->audit_walk_within(st, after, limit, scope, page_add, arr));
    *entries = arr;
    arr = NULL;
out:
    json_decref(arr);
    return err;
}

static bool any_matches(const char *const *patterns, size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n; i++)
        if (kbr_name_matches(patterns[i], name))
            return true;
    return false;
}

/* The same rule as the back ends' audit_walk_within, on one entry. */
static bool entry_within(const json_t *entry, const kbr_audit_scope *scope)
{
    const json_t *products = json_object_get(entry, "products"), *p;
    bool seen = !scope->products_limited;
    size_t i;

    json_array_foreach(products, i, p)
    {
        if (!seen && any_matches(scope->products, scope->nproducts, json_string_value(p)))
            seen = true;
    }
    if (scope->keys_limited &&
        !any_matches(scope->keys, scope->nkeys, json_string_value(json_object_get(entry, "key"))))
        seen = false;
    return seen;
}

kbr_err kbr_store_audit_visible(kbr_store *st, int64_t seq, const kbr_audit_scope *scope,
                                bool *visible)
{
    kbr_err err = KBR_OK;
    json_t *page = NULL;

    *visible = false;
    KBR_ENSURE(seq >= 1, KBR_ERR_NOT_FOUND);
    KBR_GUARD(kbr_store_audit_page(st, seq - 1, 1, &page));
    KBR_ENSURE(json_array_size(page) == 1, KBR_ERR_NOT_FOUND);
    *visible = scope == NULL || entry_within(json_array_get(page, 0), scope);
out:
    json_decref(page);
    return err;
}

/* A key row's cert_* columns become its "certificate" object, or null. */
static kbr_err key_shape(json_t *key)
{
    static const char *const fields[] = {"pem", "chain_pem", "not_after", "serial_number",
                                         "fingerprint"};
    json_t *cert = json_object();
    bool present = false;
    char column[32];

    if (cert == NULL)
        return KBR_ERR_NOMEM;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        snprintf(column, sizeof(column), "cert_%s", fields[i]);
        json_object_set(cert, fields[i], json_object_get(key, column));
        present = present || json_is_string(json_object_get(key, column));
        json_object_del(key, column);
    }
    if (json_object_set_new(key, "certificate", present ? cert : json_null()) != 0) {
        if (present)
            json_decref(cert);
        return KBR_ERR_NOMEM;
    }
    if (!present)
        json_decref(cert);
    return KBR_OK;
}

kbr_err kbr_store_key_get(kbr_store *st, const char *name, json_t **key)
{
    kbr_err err = st->ops->key_get(st, name, key);

    if (err == KBR_OK && (err = key_shape(*key)) != KBR_OK) {
        json_decref(*key);
        *key = NULL;
    }
    return err;
}

kbr_err kbr_store_key_list(kbr_store *st, json_t **keys)
{
    kbr_err err = st->ops->key_list(st, keys);
    size_t i;
    json_t *key;

    json_array_foreach(err == KBR_OK ? *keys : NULL, i, key)
    {
        if ((err = key_shape(key)) != KBR_OK)
            break;
    }
    if (err != KBR_OK && *keys != NULL) {
        json_decref(*keys);
        *keys = NULL;
    }
    return err;
}

static bool scope_reaches_key(const json_t *scope, const char *key)
{
    const json_t *keys = json_object_get(scope, "keys");
    const json_t *v;
    size_t i;

    if (keys == NULL || json_is_null(keys))
        return true;
    json_array_foreach(keys, i, v)
    {
        if (json_is_string(v) && kbr_name_matches(json_string_value(v), key))
            return true;
    }
    return false;
}

/* A new ref to the tokens of all whose scope reaches key (all of them when key is NULL). */
static kbr_err filter_by_key(json_t *all, const char *key, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *kept = NULL;
    json_t *tok;
    size_t i;

    *out = NULL;
    if (key == NULL) {
        *out = json_incref(all);
        goto out;
    }
    kept = json_array();
    KBR_ENSURE(kept != NULL, KBR_ERR_NOMEM);
    json_array_foreach(all, i, tok)
    {
        if (!scope_reaches_key(json_object_get(tok, "scope"), key))
            continue;
        KBR_ENSURE(json_array_append(kept, tok) == 0, KBR_ERR_NOMEM);
    }
    *out = kept;
    kept = NULL;
out:
    json_decref(kept);
    return err;
}

kbr_err kbr_store_token_list(kbr_store *st, const char *sub, const char *key, bool active,
                             time_t now, json_t **tokens)
{
    kbr_err err = KBR_OK;
    json_t *all = NULL;

    *tokens = NULL;
    KBR_GUARD(st->ops->token_list(st, sub, active, now, &all));
    KBR_GUARD(filter_by_key(all, key, tokens));
out:
    json_decref(all);
    return err;
}

kbr_err kbr_store_issuer_keys(kbr_store *st, json_t **keys)
{
    return st->ops->issuer_keys(st, keys);
}

/*
 * A build and its components are written in one transaction and never change, so two reads
 * outside a transaction see the same build.
 */
kbr_err kbr_store_firmware_get(kbr_store *st, const char *product, const char *version,
                               json_t **build)
{
    kbr_err err = KBR_OK;
    json_t *b = NULL, *components = NULL;

    *build = NULL;
    KBR_GUARD(st->ops->firmware_get(st, product, version, &b));
    KBR_GUARD(st->ops->firmware_components(st, product, version, &components));
    KBR_ENSURE(json_object_set_new(b, "components", components) == 0, KBR_ERR_NOMEM);
    components = NULL;
    *build = b;
    b = NULL;
out:
    json_decref(components);
    json_decref(b);
    return err;
}

kbr_err kbr_store_batch_get(kbr_store *st, const char *batch, json_t **out)
{
    return st->ops->batch_get(st, batch, out);
}

kbr_err kbr_store_batch_list(kbr_store *st, json_t **out)
{
    return st->ops->batch_list(st, out);
}

/* Each certificate's revocation reason by its RFC 5280 name, null while it is not revoked. */
static kbr_err name_reasons(json_t *certs)
{
    json_t *cert, *code;
    size_t i;

    json_array_foreach(certs, i, cert)
    {
        const char *name = NULL;

        code = json_object_get(cert, "revocation_reason_code");
        if (json_is_integer(code)) {
            name = kbr_store_revocation_reason_name(json_integer_value(code));
            /* the ledger holds only codes a revocation can take */
            if (name == NULL)
                return KBR_ERR_STORE;
        }
        if (json_object_set_new(cert, "revocation_reason",
                                name != NULL ? json_string(name) : json_null()) != 0)
            return KBR_ERR_NOMEM;
        json_object_del(cert, "revocation_reason_code");
    }
    return KBR_OK;
}

/*
 * The device row, its revocation and its certificates are read in one snapshot: a revocation
 * changes the device and its certificates together.
 */
kbr_err kbr_store_device_get(kbr_store *st, const char *product, const char *serial, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *dev = NULL, *certs = NULL, *revocation = NULL, *deliveries = NULL;
    bool in_snapshot = false;
    kbr_err found;

    *out = NULL;
    KBR_GUARD(st->ops->snapshot_begin(st, NULL));
    in_snapshot = true;
    KBR_GUARD(st->ops->device_get(st, product, serial, &dev));
    KBR_GUARD(st->ops->device_deliveries(st, product, serial, &deliveries));
    found = st->ops->device_revocation(st, product, serial, &revocation);
    KBR_ENSURE(found == KBR_OK || found == KBR_ERR_NOT_FOUND, found);
    KBR_GUARD(st->ops->device_certificates(st, product, serial, &certs));
    KBR_GUARD(name_reasons(certs));
    KBR_ENSURE(json_object_set(dev, "revocation", revocation != NULL ? revocation : json_null()) ==
                   0,
               KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(dev, "certificates", certs) == 0, KBR_ERR_NOMEM);
    certs = NULL;
    KBR_ENSURE(json_object_set_new(dev, "deliveries", deliveries) == 0, KBR_ERR_NOMEM);
    deliveries = NULL;
    *out = dev;
    dev = NULL;
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    json_decref(deliveries);
    json_decref(revocation);
    json_decref(certs);
    json_decref(dev);
    return err;
}

kbr_err kbr_store_crl_contents(kbr_store *st, const char *issuer_key, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *revoked = NULL;
    int64_t last = 0;
    bool in_snapshot = false;

    *out = NULL;
    KBR_ENSURE(issuer_key != NULL, KBR_ERR_INTERNAL);
    KBR_GUARD(st->ops->snapshot_begin(st, NULL));
    in_snapshot = true;
    KBR_GUARD(st->ops->crl_last_number(st, issuer_key, &last));
    KBR_GUARD(st->ops->crl_revoked(st, issuer_key, &revoked));
    *out = json_pack("{s:I,s:O}", "last_number", (json_int_t)last, "revoked", revoked);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    json_decref(revoked);
    return err;
}

kbr_err kbr_store_device_find(kbr_store *st, const char *serial, json_t **out)
{
    return st->ops->device_find(st, serial, out);
}

kbr_err kbr_store_device_events(kbr_store *st, const char *product, const char *serial,
                                json_t **out)
{
    return st->ops->device_events(st, product, serial, out);
}

/* The daemon hands over the serials a request named; anything but strings is its bug. */
kbr_err kbr_store_devices_known(kbr_store *st, const char *product, const json_t *serials,
                                json_t **known)
{
    kbr_err err = KBR_OK;
    const json_t *v;
    size_t i;

    *known = NULL;
    KBR_ENSURE(product != NULL && json_is_array(serials), KBR_ERR_INTERNAL);
    json_array_foreach(serials, i, v)
    {
        KBR_ENSURE(json_is_string(v), KBR_ERR_INTERNAL);
    }
    KBR_GUARD(st->ops->devices_known(st, product, serials, known));
out:
    return err;
}

/* Digests are recorded in lowercase hex, so questions are asked in it too. */
static kbr_err lower_sha256_hex(const char *in, char lower[65])
{
    kbr_err err = KBR_OK;
    size_t n = in != NULL ? strlen(in) : 0;

    lower[0] = '\0';
    KBR_ENSURE(n == 64, KBR_ERR_INTERNAL);
    for (size_t i = 0; i < n; i++) {
        char c = in[i];

        KBR_ENSURE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'),
                   KBR_ERR_INTERNAL);
        lower[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
    lower[n] = '\0';
out:
    return err;
}

kbr_err kbr_store_debug_challenge_used(kbr_store *st, const char *product, const char *serial,
                                       const char *challenge_sha256, bool *used)
{
    kbr_err err = KBR_OK;
    char lower[65];

    *used = false;
    KBR_ENSURE(product != NULL && serial != NULL, KBR_ERR_INTERNAL);
    KBR_GUARD(lower_sha256_hex(challenge_sha256, lower));
    KBR_GUARD(st->ops->debug_challenge_used(st, product, serial, lower, used));
out:
    return err;
}

/* Works on a copy: the caller's key may be borrowed from a parsed request or certificate. */
kbr_err kbr_store_public_key_sha256(EVP_PKEY *pub, char hex[65])
{
    kbr_err err = KBR_OK;
    EVP_PKEY *copy = NULL;
    unsigned char *der = NULL;
    int len;

    hex[0] = '\0';
    KBR_ENSURE(pub != NULL, KBR_ERR_CRYPTO);
    copy = EVP_PKEY_dup(pub);
    KBR_ENSURE(copy != NULL, KBR_ERR_CRYPTO);
    if (EVP_PKEY_is_a(copy, "EC"))
        KBR_ENSURE(EVP_PKEY_set_utf8_string_param(copy, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                                  "uncompressed") == 1 &&
                       EVP_PKEY_set_utf8_string_param(copy, OSSL_PKEY_PARAM_EC_ENCODING,
                                                      OSSL_PKEY_EC_ENCODING_GROUP) == 1,
                   KBR_ERR_CRYPTO);
    len = i2d_PUBKEY(copy, &der);
    KBR_ENSURE(len > 0, KBR_ERR_CRYPTO);
    kbr_sha256_hex(der, (size_t)len, hex);
out:
    OPENSSL_free(der);
    EVP_PKEY_free(copy);
    return err;
}

/*
 * Is the encoding spki carries already the one kbr_store_public_key_sha256 hashes?  An EC
 * point uncompressed on a named curve, or an Ed25519 key, is: re-encoding such a key through
 * an EVP_PKEY costs OpenSSL 3.0 about 0.1 ms, hashing the bytes as they are about 1 us.
 */
static bool spki_canonical(const X509_PUBKEY *spki, int *pklen)
{
    ASN1_OBJECT *alg = NULL;
    const unsigned char *pk = NULL;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    X509_ALGOR *algor = NULL;

    *pklen = 0;
    if (X509_PUBKEY_get0_param(&alg, &pk, pklen, &algor, spki) != 1 || pk == NULL)
        return false;
    X509_ALGOR_get0(NULL, &ptype, &pval, algor);
    switch (OBJ_obj2nid(alg)) {
    case NID_X9_62_id_ecPublicKey:
        return ptype == V_ASN1_OBJECT && *pklen > 0 && pk[0] == POINT_CONVERSION_UNCOMPRESSED;
    case NID_ED25519:
        return ptype == V_ASN1_UNDEF;
    default:
        return false;
    }
}

kbr_err kbr_store_spki_sha256(X509_PUBKEY *spki, char hex[65])
{
    kbr_err err = KBR_OK;
    unsigned char *der = NULL;
    int len, pklen;

    hex[0] = '\0';
    KBR_ENSURE(spki != NULL, KBR_ERR_CRYPTO);
    if (spki_canonical(spki, &pklen)) {
        len = i2d_X509_PUBKEY(spki, &der);
        KBR_ENSURE(len > 0, KBR_ERR_CRYPTO);
        /*
         * The key is the BIT STRING that ends the DER.  Its unused-bits octet, just before
         * it, must be 0: a request may say 1 to 7 there, which OpenSSL accepts and masks, so
         * the same key would be other bytes, and another name, if they were hashed as sent.
         */
        if (len > pklen && der[len - pklen - 1] == 0x00) {
            kbr_sha256_hex(der, (size_t)len, hex);
            goto out;
        }
    }
    KBR_GUARD(kbr_store_public_key_sha256(X509_PUBKEY_get0(spki), hex));
out:
    OPENSSL_free(der);
    return err;
}

kbr_err kbr_store_device_by_public_key(kbr_store *st, const char *public_key_sha256, json_t **out)
{
    kbr_err err = KBR_OK;
    char lower[65];

    *out = NULL;
    KBR_GUARD(lower_sha256_hex(public_key_sha256, lower));
    KBR_GUARD(st->ops->device_by_key(st, lower, out));
out:
    return err;
}

kbr_err kbr_store_device_firmware(kbr_store *st, const char *product, const char *serial,
                                  json_t **out)
{
    return st->ops->device_firmware(st, product, serial, out);
}
