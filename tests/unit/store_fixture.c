/* store_fixture.c - what the store's unit tests share (store_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "entry.h"
#include "kbr_store.h"
#include "store_fixture.h"
#include "tmpdir.h"

int setup(void **state)
{
    return kbt_store_dir_setup(state, "kbr-store", "ledger.db");
}

int teardown(void **state)
{
    return kbt_store_dir_teardown(state);
}

kbr_store *open_ok(const fixture *f)
{
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_OK);
    assert_non_null(st);
    return st;
}

json_t *effects_of(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);

    if (v == NULL)
        fail_msg("bad test JSON at %d: %s", jerr.position, jerr.text);
    return v;
}

/* Applies effects (consumed) as the writer does: in a transaction with its audit row. */
kbr_err apply_json(kbr_store *st, json_t *effects, int64_t seq)
{
    kbr_err err;

    assert_int_equal(kbr_store_begin(st), KBR_OK);
    err = kbr_store_apply_effects(st, effects, seq);
    assert_int_equal(
        kbt_entry_insert(st, seq,
                         &(kbt_entry){.op = "test", .effects = err == KBR_OK ? effects : NULL}),
        KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    json_decref(effects);
    return err;
}

kbr_err apply(kbr_store *st, const char *effects_json, int64_t seq)
{
    return apply_json(st, effects_of(effects_json), seq);
}

void ids_of(const char *tag, cert_ids *ids)
{
    char in[64], hex[65];

    kbr_sha256_hex(tag, strlen(tag), ids->fingerprint);
    snprintf(in, sizeof(in), "serial:%s", tag);
    kbr_sha256_hex(in, strlen(in), hex);
    snprintf(ids->serial, sizeof(ids->serial), "%.32s", hex);
    snprintf(ids->pem, sizeof(ids->pem),
             "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n", tag);
}

static json_t *cert_of(const char *tag)
{
    cert_ids ids;

    ids_of(tag, &ids);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "serial_number", ids.serial, "pem", ids.pem,
                     "chain_pem", strcmp(tag, CA_TAG) == 0 ? CA_CHAIN : "", "not_after",
                     "2036-01-01T00:00:00Z", "fingerprint", ids.fingerprint);
}

/* A device's certificate: its chain is its issuer's. */
static json_t *device_cert_of(const char *tag)
{
    json_t *c = cert_of(tag);

    json_object_del(c, "chain_pem");
    return c;
}

const char *ca_fingerprint(void)
{
    static cert_ids ids;

    ids_of(CA_TAG, &ids);
    return ids.fingerprint;
}

json_t *key_cert_effect(const char *name, const char *tag, const char *at)
{
    json_t *e = cert_of(tag);

    json_object_set_new(e, "type", json_string("key.certificate"));
    json_object_set_new(e, "name", json_string(name));
    json_object_set_new(e, "at", json_string(at));
    return json_pack("[o]", e);
}

json_t *batch_effect(const char *batch, const char *product, const char *factory, int quantity)
{
    return json_pack("[{s:s,s:s,s:s,s:s,s:i,s:[s,s],s:s,s:s}]", "type", "batch.create", "batch",
                     batch, "product", product, "factory", factory, "quantity", quantity, "markets",
                     "DE", "FR", "created_at", "2026-03-01T08:00:00+00:00", "created_by",
                     "security:bootstrap");
}

json_t *provision_effect(const char *product, const char *serial, const char *batch,
                         const char *factory, const char *tag)
{
    char csr[65];

    kbr_sha256_hex(serial, strlen(serial), csr);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}]", "type", "device.provision",
                     "product", product, "serial", serial, "batch", batch, "factory", factory,
                     "firmware_version", "1.2.0", "csr_sha256", csr, "at", "2026-03-02T08:00:00Z",
                     "issuer_key", "ca-door", "issuer_fingerprint", ca_fingerprint(), "certificate",
                     device_cert_of(tag));
}

json_t *rotate_effect(const char *product, const char *serial, const char *tag, const char *at)
{
    char csr[65];

    kbr_sha256_hex(tag, strlen(tag), csr);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}]", "type", "device.rotate", "product",
                     product, "serial", serial, "csr_sha256", csr, "at", at, "issuer_key",
                     "ca-door", "issuer_fingerprint", ca_fingerprint(), "certificate",
                     device_cert_of(tag));
}

/* The first column of the first row of sql, read over a connection of its own. */
void query_text(const fixture *f, const char *sql, char *buf, size_t len)
{
    assert_int_equal(kbt_store_sql(f->url, sql, buf, len, NULL), 0);
}

int64_t query_count(const fixture *f, const char *sql)
{
    char buf[32];

    query_text(f, sql, buf, sizeof(buf));
    return strtoll(buf, NULL, 10);
}

/* What a store of version 7 had: the later steps' tables, triggers and columns dropped
 * (version 8: key deliveries; 9: the CRA's), and the version set back. */
static const char *const to_v7_sqlite =
    "DROP TABLE key_deliveries;"
    " DROP TRIGGER devices_history_batch_move; DROP TRIGGER devices_incident_move;"
    " DROP TABLE history_firmware_batch; DROP TABLE incident_reports;"
    " DROP TABLE incident_fleet; DROP TABLE incident_builds; DROP TABLE incidents;"
    " DROP TABLE products; DROP INDEX components_purl_key;"
    " ALTER TABLE components DROP COLUMN purl_key;"
    " CREATE INDEX components_purl ON components(purl);"
    " UPDATE meta SET schema_version = 7;";
static const char *const to_v7_pg =
    "DROP TABLE key_deliveries; DROP FUNCTION kbr_key_deliveries_count();"
    " DROP TABLE history_firmware_batch, incident_reports, incident_fleet, incident_builds,"
    " incidents, products; DROP TRIGGER devices_history_batch_move ON devices;"
    " DROP TRIGGER devices_incident_move ON devices;"
    " DROP FUNCTION kbr_devices_history_batch_move(); DROP FUNCTION "
    "kbr_devices_incident_move();"
    " ALTER TABLE components DROP COLUMN purl_key;"
    " CREATE INDEX components_purl ON components(purl);"
    " UPDATE meta SET schema_version = 7;";

/* What a store of version 9 had: version 10's column and triggers as they were, one
 * statement each (a trigger's body has a ';' of its own).  The expiry counters stay as they
 * are: a store with a revoked device certificate had it counted. */
static const char *const to_v9_sqlite[] = {
    "DROP TRIGGER certificate_revocations_expiry",
    "DROP TRIGGER audit_products_of",
    "ALTER TABLE audit DROP COLUMN products",
    "CREATE TRIGGER audit_products_of AFTER INSERT ON audit"
    " WHEN json_type(new.entry, '$.products') = 'array' BEGIN"
    " INSERT OR IGNORE INTO audit_products(product, seq)"
    " SELECT value, new.seq FROM json_each(new.entry, '$.products') WHERE type = 'text'; END",
    "DROP TRIGGER certificates_expiry_drop",
    "CREATE TRIGGER certificates_expiry_drop AFTER UPDATE OF superseded_at"
    " ON certificates WHEN new.owner_kind = 'device' AND old.superseded_at IS NULL"
    " AND new.superseded_at IS NOT NULL BEGIN"
    " UPDATE device_cert_expiry SET count = count - 1"
    " WHERE product = new.product AND day = substr(new.not_after, 1, 10); END",
    "UPDATE meta SET schema_version = 9",
    NULL};
static const char *const to_v9_pg[] = {
    "DROP TRIGGER certificate_revocations_expiry ON certificate_revocations",
    "DROP FUNCTION kbr_certificate_revocations_expiry()", "UPDATE meta SET schema_version = 9",
    NULL};

void store_back_to_v9(fixture *f)
{
    for (const char *const *sql = kbt_pg() ? to_v9_pg : to_v9_sqlite; *sql != NULL; sql++)
        assert_int_equal(kbt_store_sql(f->url, *sql, NULL, 0, NULL), 0);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 9);
}

void store_back_to_v7(fixture *f)
{
    char *sql = strdup(kbt_pg() ? to_v7_pg : to_v7_sqlite), *one, *save = NULL;

    assert_non_null(sql);
    store_back_to_v9(f);
    for (one = strtok_r(sql, ";", &save); one != NULL; one = strtok_r(NULL, ";", &save))
        assert_int_equal(kbt_store_sql(f->url, one, NULL, 0, NULL), 0);
    free(sql);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 7);
}

const char *str_at(const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);

    if (!json_is_string(v))
        fail_msg("%s is not a string", field);
    return json_string_value(v);
}

int64_t int_at(const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);

    if (!json_is_integer(v))
        fail_msg("%s is not an integer", field);
    return json_integer_value(v);
}

/* A store with the door CA key (seq 1) and batch B1 of 3 doors for factory:acme (seq 2). */
kbr_store *factory_store(const fixture *f)
{
    kbr_store *st = open_ok(f);
    json_t *ca = effects_of(KEY_CA),
           *cert = key_cert_effect("ca-door", CA_TAG, "2026-03-01T10:00:00Z");

    json_array_extend(ca, cert);
    json_decref(cert);
    assert_int_equal(apply_json(st, ca, 1), KBR_OK);
    assert_int_equal(apply_json(st, batch_effect("B1", "door", "factory:acme", 3), 2), KBR_OK);
    return st;
}

int64_t provisioned_in(kbr_store *st, const char *name)
{
    json_t *batch = NULL;
    int64_t n;

    assert_int_equal(kbr_store_batch_get(st, name, &batch), KBR_OK);
    n = int_at(batch, "provisioned");
    json_decref(batch);
    return n;
}

/* The key's DER SubjectPublicKeyInfo as OpenSSL writes it, hashed. */
void der_key_hex(EVP_PKEY *key, char hex[65])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);

    assert_true(n > 0);
    kbr_sha256_hex(der, (size_t)n, hex);
    OPENSSL_free(der);
}

/* effect (one device.provision or device.rotate) with public_key_sha256 added; returned. */
json_t *with_key(json_t *effect, const char *key_hex)
{
    json_object_set_new(json_array_get(effect, 0), "public_key_sha256", json_string(key_hex));
    return effect;
}

void assert_key_owner(kbr_store *st, const char *key_hex, const char *product, const char *serial)
{
    json_t *owner = NULL;

    assert_int_equal(kbr_store_device_by_public_key(st, key_hex, &owner), KBR_OK);
    assert_string_equal(str_at(owner, "product"), product);
    assert_string_equal(str_at(owner, "serial"), serial);
    json_decref(owner);
}

int64_t count_where(const fixture *f, const char *table, const char *cond)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s", table, cond);
    return query_count(f, sql);
}

static char *pubkey_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *pem;
    long len;

    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    len = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)len);
    assert_non_null(pem);
    BIO_free(b);
    return pem;
}

/* issuer.rotate: kid, label, key and replaces (NULL: none). */
json_t *issuer_effect(const char *kid, const char *label, EVP_PKEY *key, const char *replaces)
{
    char *pem = pubkey_pem(key);
    json_t *fx =
        json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s?}]", "type", "issuer.rotate", "kid", kid, "hsm_label",
                  label, "public_key_pem", pem, "at", "2026-05-01T10:00:00Z", "replaces", replaces);

    assert_non_null(fx);
    free(pem);
    return fx;
}

const char *token_kid(kbr_store *st, const char *jti)
{
    static char kid[64];
    json_t *rows = NULL, *row;
    size_t i;

    kid[0] = '\0';
    assert_int_equal(kbr_store_token_list(st, NULL, NULL, false, 0, &rows), KBR_OK);
    json_array_foreach(rows, i, row)
    {
        const json_t *k = json_object_get(row, "kid");
        if (strcmp(str_at(row, "jti"), jti) == 0)
            snprintf(kid, sizeof(kid), "%s", json_is_string(k) ? json_string_value(k) : "null");
    }
    json_decref(rows);
    return kid;
}

json_t *sign_effect(const char *version)
{
    char digest[65];

    kbr_sha256_hex(version, strlen(version), digest);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:[]}]", "type", "firmware.sign", "product", "door",
                     "version", version, "digest", digest, "signed_at", "2026-04-01T00:00:00Z",
                     "components");
}
