/*
 * test_store_devices.c - batches, provisioning and rotation, device identity keys, certificate
 * chains, and keys delivered to devices.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/x509.h>

#include "entry.h"
#include "kbr_store.h"
#include "store_fixture.h"

static void test_batch_create(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *batch = NULL, *list = NULL;

    assert_int_equal(apply_json(st, batch_effect("B1", "door", "factory:acme", 500), 1), KBR_OK);
    assert_int_equal(apply_json(st, batch_effect("B1", "lock", "factory:other", 5), 2),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_batch_get(st, "B1", &batch), KBR_OK);
    assert_string_equal(str_at(batch, "batch"), "B1");
    assert_string_equal(str_at(batch, "product"), "door");
    assert_string_equal(str_at(batch, "factory"), "factory:acme");
    assert_int_equal(int_at(batch, "quantity"), 500);
    assert_int_equal(json_array_size(json_object_get(batch, "markets")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(batch, "markets"), 1)),
                        "FR");
    assert_string_equal(str_at(batch, "created_at"), "2026-03-01T08:00:00Z");
    assert_string_equal(str_at(batch, "created_by"), "security:bootstrap");
    assert_int_equal(int_at(batch, "provisioned"), 0);
    json_decref(batch);
    batch = NULL;
    assert_int_equal(kbr_store_batch_get(st, "B9", &batch), KBR_ERR_NOT_FOUND);
    assert_null(batch);

    assert_int_equal(apply_json(st, batch_effect("A0", "lock", "factory:other", 5), 3), KBR_OK);
    assert_int_equal(kbr_store_batch_list(st, &list), KBR_OK);
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(str_at(json_array_get(list, 0), "batch"), "A0");
    assert_int_equal(int_at(json_array_get(list, 0), "quantity"), 5);
    assert_string_equal(str_at(json_array_get(list, 1), "batch"), "B1");
    assert_int_equal(int_at(json_array_get(list, 1), "provisioned"), 0);
    json_decref(list);
    kbr_store_close(st);
}

static void assert_provisioned_event(const json_t *ev, const cert_ids *ids)
{
    const json_t *detail = json_object_get(ev, "detail");

    assert_string_equal(str_at(ev, "kind"), "provisioned");
    assert_string_equal(str_at(ev, "at"), "2026-03-02T08:00:00Z");
    assert_int_equal(int_at(ev, "audit_seq"), 3);
    assert_string_equal(str_at(detail, "batch"), "B1");
    assert_string_equal(str_at(detail, "factory"), "factory:acme");
    assert_string_equal(str_at(detail, "firmware_version"), "1.2.0");
    assert_string_equal(str_at(detail, "fingerprint"), ids->fingerprint);
    assert_string_equal(str_at(detail, "serial_number"), ids->serial);
}

static void test_device_provision(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *events = NULL, *found = NULL;
    const json_t *cert;
    cert_ids d1;
    char csr[65];

    ids_of("d1", &d1);
    kbr_sha256_hex("SN-1", 4, csr);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 3), KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_string_equal(str_at(dev, "product"), "door");
    assert_string_equal(str_at(dev, "serial"), "SN-1");
    assert_string_equal(str_at(dev, "batch"), "B1");
    assert_string_equal(str_at(dev, "factory"), "factory:acme");
    assert_string_equal(str_at(dev, "firmware_version"), "1.2.0");
    assert_string_equal(str_at(dev, "csr_sha256"), csr);
    assert_string_equal(str_at(dev, "provisioned_at"), "2026-03-02T08:00:00Z");
    assert_int_equal(int_at(dev, "audit_seq"), 3);
    assert_int_equal(json_array_size(json_object_get(dev, "certificates")), 1);
    cert = json_array_get(json_object_get(dev, "certificates"), 0);
    assert_string_equal(str_at(cert, "fingerprint"), d1.fingerprint);
    assert_string_equal(str_at(cert, "serial_number"), d1.serial);
    assert_string_equal(str_at(cert, "pem"), d1.pem);
    assert_string_equal(str_at(cert, "not_after"), "2036-01-01T00:00:00Z");
    assert_string_equal(str_at(cert, "issued_at"), "2026-03-02T08:00:00Z");
    assert_true(json_is_null(json_object_get(cert, "superseded_at")));
    assert_string_equal(str_at(cert, "issuer_key"), "ca-door");
    assert_int_equal(int_at(cert, "audit_seq"), 3);
    json_decref(dev);

    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 1);
    assert_provisioned_event(json_array_get(events, 0), &d1);
    json_decref(events);
    assert_int_equal(provisioned_in(st, "B1"), 1);

    assert_int_equal(kbr_store_device_find(st, "SN-1", &found), KBR_OK);
    assert_int_equal(json_array_size(found), 1);
    assert_string_equal(str_at(json_array_get(found, 0), "product"), "door");
    assert_string_equal(str_at(json_array_get(found, 0), "batch"), "B1");
    json_decref(found);

    dev = events = found = NULL;
    assert_int_equal(kbr_store_device_get(st, "door", "SN-2", &dev), KBR_ERR_NOT_FOUND);
    assert_null(dev);
    assert_int_equal(kbr_store_device_get(st, "lock", "SN-1", &dev), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_store_device_events(st, "door", "SN-2", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 0);
    assert_int_equal(kbr_store_device_find(st, "SN-2", &found), KBR_OK);
    assert_int_equal(json_array_size(found), 0);
    json_decref(events);
    json_decref(found);
    kbr_store_close(st);
}

static void test_device_without_firmware_version(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *effect = provision_effect("door", "SN-1", "B1", "factory:acme", "d1");
    json_t *dev = NULL, *events = NULL, *history = NULL;

    json_object_set_new(json_array_get(effect, 0), "firmware_version", json_null());
    assert_int_equal(apply_json(st, effect, 3), KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_true(json_is_null(json_object_get(dev, "firmware_version")));
    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_true(json_is_null(
        json_object_get(json_object_get(json_array_get(events, 0), "detail"), "firmware_version")));
    json_decref(events);
    json_decref(dev);
    dev = NULL;

    /* No factory image: no history and no current firmware until an install is reported. */
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-1", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 0);
    json_decref(history);
    assert_int_equal(apply(st, FW("aabb", "[]"), 4), KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_true(json_is_null(json_object_get(dev, "current_firmware")));
    assert_true(json_is_null(json_object_get(dev, "current_firmware_at")));
    json_decref(dev);
    assert_int_equal(apply(st,
                           "[{\"type\": \"ota.report\", \"product\": \"door\","
                           " \"version\": \"1.2.0\", \"campaign\": null,"
                           " \"reported_by\": \"ota:fleet\", \"at\": \"2026-09-01T00:00:00Z\","
                           " \"results\": [{\"serial\": \"SN-1\", \"status\": \"installed\","
                           " \"at\": \"2026-01-01T00:00:00Z\"}]}]",
                           5),
                     KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_string_equal(str_at(dev, "current_firmware"), "1.2.0");
    assert_string_equal(str_at(dev, "current_firmware_at"), "2026-01-01T00:00:00Z");
    json_decref(dev);
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-1", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 1);
    assert_true(json_is_null(json_object_get(json_array_get(history, 0), "campaign")));
    json_decref(history);
    kbr_store_close(st);
}

static void test_device_duplicate_serial(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *found = NULL;
    cert_ids d1, d2;
    char sql[256];

    ids_of("d1", &d1);
    ids_of("d2", &d2);
    assert_int_equal(apply_json(st, batch_effect("L1", "lock", "factory:acme", 3), 3), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 4), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d2"), 5),
        KBR_ERR_STORE_CONSTRAINT);

    /* Nothing of the refused record stays: no certificate, no event, no batch count. */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM certificates WHERE fingerprint = '%s'",
             d2.fingerprint);
    assert_int_equal(query_count(f, sql), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events"), 1);
    assert_int_equal(provisioned_in(st, "B1"), 1);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_int_equal(int_at(dev, "audit_seq"), 4);
    assert_int_equal(json_array_size(json_object_get(dev, "certificates")), 1);
    assert_string_equal(
        str_at(json_array_get(json_object_get(dev, "certificates"), 0), "fingerprint"),
        d1.fingerprint);
    json_decref(dev);

    /* Serials are per product: the lock line may reuse the number. */
    assert_int_equal(
        apply_json(st, provision_effect("lock", "SN-1", "L1", "factory:acme", "d3"), 6), KBR_OK);
    assert_int_equal(kbr_store_device_find(st, "SN-1", &found), KBR_OK);
    assert_int_equal(json_array_size(found), 2);
    assert_string_equal(str_at(json_array_get(found, 0), "product"), "door");
    assert_string_equal(str_at(json_array_get(found, 1), "product"), "lock");
    assert_string_equal(str_at(json_array_get(found, 1), "batch"), "L1");
    assert_string_equal(str_at(json_array_get(found, 1), "serial"), "SN-1");
    json_decref(found);
    kbr_store_close(st);
}

static void test_batch_quantity_enforced(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *found = NULL;

    assert_int_equal(apply_json(st, batch_effect("Q2", "door", "factory:acme", 2), 3), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "Q2", "factory:acme", "d1"), 4), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-2", "Q2", "factory:acme", "d2"), 5), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-3", "Q2", "factory:acme", "d3"), 6),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(provisioned_in(st, "Q2"), 2);
    assert_int_equal(query_count(f, "SELECT count(*) FROM devices WHERE batch = 'Q2'"), 2);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-3", &dev), KBR_ERR_NOT_FOUND);
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates"
                                    " WHERE device_serial = 'SN-3'"),
                     0);
    assert_int_equal(kbr_store_device_find(st, "SN-3", &found), KBR_OK);
    assert_int_equal(json_array_size(found), 0);
    json_decref(found);
    /* Another batch still has room for the same device. */
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-3", "B1", "factory:acme", "d3"), 7), KBR_OK);
    kbr_store_close(st);
}

static void test_batch_must_match(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *foreign_ca = provision_effect("door", "SN-1", "B1", "factory:acme", "d1");

    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:evil", "d1"), 3),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, provision_effect("lock", "SN-1", "B1", "factory:acme", "d1"), 4),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B9", "factory:acme", "d1"), 5),
        KBR_ERR_STORE_CONSTRAINT);
    json_object_set_new(json_array_get(foreign_ca, 0), "issuer_key", json_string("ca-other"));
    assert_int_equal(apply_json(st, foreign_ca, 6), KBR_ERR_STORE_CONSTRAINT);

    assert_int_equal(query_count(f, "SELECT count(*) FROM devices"), 0);
    assert_int_equal(
        query_count(f, "SELECT count(*) FROM certificates WHERE owner_kind = 'device'"), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events"), 0);
    assert_int_equal(provisioned_in(st, "B1"), 0);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 7), KBR_OK);
    assert_int_equal(provisioned_in(st, "B1"), 1);
    kbr_store_close(st);
}

static void assert_rotated_event(const json_t *ev, const char *old_tag, const char *new_tag,
                                 int64_t seq)
{
    const json_t *detail = json_object_get(ev, "detail");
    const json_t *old = json_object_get(detail, "old");
    cert_ids was, now;
    char csr[65];

    ids_of(old_tag, &was);
    ids_of(new_tag, &now);
    kbr_sha256_hex(new_tag, strlen(new_tag), csr);
    assert_string_equal(str_at(ev, "kind"), "rotated");
    assert_int_equal(int_at(ev, "audit_seq"), seq);
    assert_int_equal(json_array_size(old), 1);
    assert_string_equal(json_string_value(json_array_get(old, 0)), was.fingerprint);
    assert_string_equal(str_at(detail, "new"), now.fingerprint);
    assert_string_equal(str_at(detail, "serial_number"), now.serial);
    assert_string_equal(str_at(detail, "csr_sha256"), csr);
}

static void test_device_rotate(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *events = NULL;
    const json_t *certs;
    cert_ids d2;

    ids_of("d2", &d2);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 3), KBR_OK);
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-1", "d2", "2027-01-01T00:00:00Z"), 4),
                     KBR_OK);
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-1", "d3", "2028-01-01T00:00:00Z"), 5),
                     KBR_OK);

    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    certs = json_object_get(dev, "certificates");
    assert_int_equal(json_array_size(certs), 3);
    assert_string_equal(str_at(json_array_get(certs, 0), "superseded_at"), "2027-01-01T00:00:00Z");
    assert_string_equal(str_at(json_array_get(certs, 1), "fingerprint"), d2.fingerprint);
    assert_string_equal(str_at(json_array_get(certs, 1), "issued_at"), "2027-01-01T00:00:00Z");
    assert_string_equal(str_at(json_array_get(certs, 1), "superseded_at"), "2028-01-01T00:00:00Z");
    assert_int_equal(int_at(json_array_get(certs, 1), "audit_seq"), 4);
    assert_string_equal(str_at(json_array_get(certs, 1), "issuer_key"), "ca-door");
    assert_true(json_is_null(json_object_get(json_array_get(certs, 2), "superseded_at")));
    /* The device row keeps its provisioning facts. */
    assert_int_equal(int_at(dev, "audit_seq"), 3);
    json_decref(dev);
    dev = NULL;

    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(str_at(json_array_get(events, 0), "kind"), "provisioned");
    assert_rotated_event(json_array_get(events, 1), "d1", "d2", 4);
    assert_string_equal(str_at(json_array_get(events, 1), "at"), "2027-01-01T00:00:00Z");
    assert_rotated_event(json_array_get(events, 2), "d2", "d3", 5);
    json_decref(events);
    /* A rotation is not a new device of the batch. */
    assert_int_equal(provisioned_in(st, "B1"), 1);

    assert_int_equal(apply_json(st, rotate_effect("door", "SN-9", "d4", "2028-02-01T00:00:00Z"), 6),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, rotate_effect("lock", "SN-1", "d4", "2028-02-01T00:00:00Z"), 7),
                     KBR_ERR_STORE_CONSTRAINT);
    /* Reusing a recorded certificate conflicts and leaves the current one current. */
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-1", "d1", "2028-03-01T00:00:00Z"), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        query_count(f, "SELECT count(*) FROM certificates WHERE owner_kind = 'device'"), 3);
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates"
                                    " WHERE superseded_at IS NULL AND owner_kind = 'device'"),
                     1);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events"), 3);
    kbr_store_close(st);
}

static void test_public_key_name(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *compressed = EVP_PKEY_dup(ec);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char want[65], got[65], spelled[65];

    (void)state;
    der_key_hex(ec, want);
    assert_int_equal(kbr_store_public_key_sha256(ec, got), KBR_OK);
    assert_string_equal(got, want);
    /* The same key with its point compressed is another DER, and the same name. */
    assert_int_equal(EVP_PKEY_set_utf8_string_param(
                         compressed, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
                     1);
    der_key_hex(compressed, spelled);
    assert_string_not_equal(spelled, want);
    assert_int_equal(kbr_store_public_key_sha256(compressed, got), KBR_OK);
    assert_string_equal(got, want);
    der_key_hex(compressed, got);
    assert_string_equal(got, spelled); /* the caller's key is left as it was */
    der_key_hex(ed, want);
    assert_int_equal(kbr_store_public_key_sha256(ed, got), KBR_OK);
    assert_string_equal(got, want);
    assert_int_equal(kbr_store_public_key_sha256(NULL, got), KBR_ERR_CRYPTO);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(compressed);
    EVP_PKEY_free(ec);
}

/* kbr_store_spki_sha256 of key as a CSR or certificate would carry it, into hex. */
static void spki_name(EVP_PKEY *key, char hex[65])
{
    X509_PUBKEY *spki = NULL;

    assert_int_equal(X509_PUBKEY_set(&spki, key), 1);
    assert_int_equal(kbr_store_spki_sha256(spki, hex), KBR_OK);
    X509_PUBKEY_free(spki);
}

/*
 * A SubjectPublicKeyInfo whose BIT STRING claims one unused bit, which OpenSSL accepts when
 * that bit is 0: another spelling of the same key, and it must get the same name.  keylen is
 * the length of the key in the BIT STRING; keys are made until one ends in a 0 bit.
 */
static void unused_bits_spelling(const char *type, const char *curve, int keylen)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    EVP_PKEY *key = NULL;
    X509_PUBKEY *spki;
    char want[65], got[65];
    int n = 0;

    do {
        OPENSSL_free(der);
        EVP_PKEY_free(key);
        der = NULL;
        key = curve != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, type, curve)
                            : EVP_PKEY_Q_keygen(NULL, NULL, type);
        n = i2d_PUBKEY(key, &der);
        assert_true(n > keylen);
    } while (der[n - 1] & 1);
    assert_int_equal(kbr_store_public_key_sha256(key, want), KBR_OK);
    assert_int_equal(der[n - keylen - 1], 0);
    der[n - keylen - 1] = 1;
    p = der;
    spki = d2i_X509_PUBKEY(NULL, &p, n);
    assert_non_null(spki);
    assert_int_equal(kbr_store_spki_sha256(spki, got), KBR_OK);
    assert_string_equal(got, want);
    X509_PUBKEY_free(spki);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
}

/* Read from the encoded key, the name is the same whichever way the key was spelled. */
static void test_spki_name(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *other = EVP_PKEY_dup(ec);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char want[65], got[65];

    (void)state;
    assert_int_equal(kbr_store_public_key_sha256(ec, want), KBR_OK);
    spki_name(ec, got);
    assert_string_equal(got, want);
    assert_int_equal(EVP_PKEY_set_utf8_string_param(
                         other, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
                     1);
    spki_name(other, got);
    assert_string_equal(got, want);
    /* explicit curve parameters instead of the curve's name */
    assert_int_equal(EVP_PKEY_set_utf8_string_param(other, OSSL_PKEY_PARAM_EC_ENCODING,
                                                    OSSL_PKEY_EC_ENCODING_EXPLICIT),
                     1);
    spki_name(other, got);
    assert_string_equal(got, want);
    assert_int_equal(kbr_store_public_key_sha256(ed, want), KBR_OK);
    spki_name(ed, got);
    assert_string_equal(got, want);
    unused_bits_spelling("EC", "P-256", 65);
    unused_bits_spelling("ED25519", NULL, 32);
    assert_int_equal(kbr_store_spki_sha256(NULL, got), KBR_ERR_CRYPTO);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(other);
    EVP_PKEY_free(ec);
}

static void test_device_key_refused_at_commit(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL;
    char ka[65], kb[65], upper[65], cond[128];
    cert_ids d2;

    kbr_sha256_hex("key a", 5, ka);
    kbr_sha256_hex("key b", 5, kb);
    for (size_t i = 0; i < sizeof(upper); i++)
        upper[i] = (char)(ka[i] >= 'a' && ka[i] <= 'f' ? ka[i] - 'a' + 'A' : ka[i]);
    assert_int_equal(apply_json(st, batch_effect("L1", "lock", "factory:acme", 3), 3), KBR_OK);
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), ka),
                   4),
        KBR_OK);

    /* Another serial with the same key gets past no check at commit, and leaves nothing. */
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-2", "B1", "factory:acme", "d2"), ka),
                   5),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-2", &dev), KBR_ERR_NOT_FOUND);
    ids_of("d2", &d2);
    snprintf(cond, sizeof(cond), "fingerprint = '%s'", d2.fingerprint);
    assert_int_equal(count_where(f, "certificates", cond), 0);
    assert_int_equal(count_where(f, "device_events", "serial = 'SN-2'"), 0);
    assert_int_equal(count_where(f, "device_firmware", "serial = 'SN-2'"), 0);
    assert_int_equal(provisioned_in(st, "B1"), 1);
    /* Nor may a device of another product have it, in either spelling of the hex. */
    assert_int_equal(
        apply_json(
            st, with_key(provision_effect("lock", "SN-1", "L1", "factory:acme", "d3"), upper), 6),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(provisioned_in(st, "L1"), 0);
    assert_int_equal(count_where(f, "devices", "product = 'lock'"), 0);

    assert_key_owner(st, upper, "door", "SN-1");
    assert_int_equal(kbr_store_device_by_public_key(st, kb, &dev), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_store_device_by_public_key(st, "abc", &dev), KBR_ERR_INTERNAL);
    assert_null(dev);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_string_equal(str_at(dev, "public_key_sha256"), ka);
    json_decref(dev);
    kbr_store_close(st);
}

static void test_device_key_on_rotation(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL;
    char ka[65], kb[65], kc[65];

    kbr_sha256_hex("key a", 5, ka);
    kbr_sha256_hex("key b", 5, kb);
    kbr_sha256_hex("key c", 5, kc);
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), ka),
                   3),
        KBR_OK);
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-2", "B1", "factory:acme", "d2"), kb),
                   4),
        KBR_OK);
    /* A renewal with the device's own key; another device's key is refused, keeping SN-2 as
     * it was. */
    assert_int_equal(
        apply_json(st, with_key(rotate_effect("door", "SN-1", "d3", "2027-01-01T00:00:00Z"), ka),
                   5),
        KBR_OK);
    assert_int_equal(
        apply_json(st, with_key(rotate_effect("door", "SN-2", "d4", "2027-01-01T00:00:00Z"), ka),
                   6),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(count_where(f, "certificates", "device_serial = 'SN-2'"), 1);
    assert_int_equal(
        count_where(f, "certificates", "device_serial = 'SN-2' AND superseded_at IS NULL"), 1);
    assert_int_equal(count_where(f, "device_events", "serial = 'SN-2' AND kind = 'rotated'"), 0);
    assert_key_owner(st, kb, "door", "SN-2");
    /* A device that takes a new key keeps its old one: its old certificates are still valid. */
    assert_int_equal(
        apply_json(st, with_key(rotate_effect("door", "SN-2", "d5", "2027-02-01T00:00:00Z"), kc),
                   7),
        KBR_OK);
    assert_key_owner(st, kc, "door", "SN-2");
    assert_key_owner(st, kb, "door", "SN-2");
    assert_int_equal(kbr_store_device_get(st, "door", "SN-2", &dev), KBR_OK);
    assert_string_equal(str_at(dev, "public_key_sha256"), kc);
    json_decref(dev);
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-4", "B1", "factory:acme", "d8"), kb),
                   10),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, with_key(rotate_effect("door", "SN-1", "d9", "2027-02-02T00:00:00Z"), kb),
                   11),
        KBR_ERR_STORE_CONSTRAINT);
    /* Effects recorded before keys were named carry none: no key, no rule. */
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-3", "B1", "factory:acme", "d6"), 8), KBR_OK);
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-3", "d7", "2027-03-01T00:00:00Z"), 9),
                     KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-3", &dev), KBR_OK);
    assert_true(json_is_null(json_object_get(dev, "public_key_sha256")));
    json_decref(dev);
    kbr_store_close(st);
}

#define KEY_OTA(name)                                                                              \
    "[{\"type\": \"key.create\", \"name\": \"" name "\", \"purpose\": \"ota-encryption\","         \
    " \"algorithm\": \"ecdh-p256\", \"products\": [\"door\"],"                                     \
    " \"created_at\": \"2026-03-01T10:00:00Z\"}]"

/* A key.deliver of key to door/serial, for the device key named by recipient, in the record
 * at seq, with the COSE_Encrypt body as the record's document. */
static kbr_err deliver(kbr_store *st, const char *key, const char *serial, const char *recipient,
                       const char *body, int64_t seq)
{
    kbr_effects *fx = NULL;
    char sha[65];
    kbr_err err;

    kbr_sha256_hex(body, strlen(body), sha);
    assert_int_equal(kbr_effects_new(&fx), KBR_OK);
    assert_int_equal(kbr_effects_add_document(fx, body, strlen(body), sha), KBR_OK);
    assert_int_equal(
        kbr_effects_add(fx,
                        &(kbr_effect){.type = KBR_EFFECT_KEY_DELIVER,
                                      .u.key_deliver = {.key = key,
                                                        .product = "door",
                                                        .serial = serial,
                                                        .recipient_public_key_sha256 = recipient,
                                                        .cose_sha256 = sha,
                                                        .delivered_by = "factory:acme",
                                                        .at = "2026-03-02T08:00:00Z"}}),
        KBR_OK);
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    err = kbr_store_apply(st, fx, seq);
    assert_int_equal(kbt_entry_insert(st, seq, &(kbt_entry){.op = "provision"}), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    kbr_effects_free(fx);
    return err;
}

/*
 * A delivery is the device's, to its own identity key, of an ota-encryption key, once; its
 * COSE_Encrypt is kept whole and the device's record lists it.  What the rules refuse keeps
 * nothing, not even the document.
 */
static void test_key_deliver(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *prov = provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), *dev = NULL, *one;
    char devkey[65], other[65];
    unsigned char *body = NULL;
    size_t len = 0;
    int64_t seq = 0;

    kbr_sha256_hex("device key", 10, devkey);
    kbr_sha256_hex("another key", 11, other);
    json_object_set_new(json_array_get(prov, 0), "public_key_sha256", json_string(devkey));
    assert_int_equal(apply_json(st, prov, 3), KBR_OK);
    assert_int_equal(apply(st, KEY_OTA("ota-door"), 4), KBR_OK);
    assert_int_equal(apply(st, KEY_DEBUG("dbg-door"), 5), KBR_OK);

    /* another key than the device's, a key of another purpose, an unknown key or device */
    assert_int_equal(deliver(st, "ota-door", "SN-1", other, "c0", 6), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(deliver(st, "dbg-door", "SN-1", devkey, "c0", 7), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(deliver(st, "no-such", "SN-1", devkey, "c0", 8), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(deliver(st, "ota-door", "SN-9", devkey, "c0", 9), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(query_count(f, "SELECT count(*) FROM key_deliveries"), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM documents"), 0);

    assert_int_equal(deliver(st, "ota-door", "SN-1", devkey, "cose-1", 10), KBR_OK);
    /* once per device and key: a second delivery of it is refused */
    assert_int_equal(deliver(st, "ota-door", "SN-1", devkey, "cose-2", 11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_int_equal(json_array_size(json_object_get(dev, "deliveries")), 1);
    one = json_array_get(json_object_get(dev, "deliveries"), 0);
    assert_string_equal(str_at(one, "key"), "ota-door");
    assert_string_equal(str_at(one, "recipient_public_key_sha256"), devkey);
    assert_string_equal(str_at(one, "delivered_by"), "factory:acme");
    assert_int_equal(json_integer_value(json_object_get(one, "audit_seq")), 10);
    assert_int_equal(kbr_store_document_get(st, str_at(one, "cose_sha256"), &body, &len, &seq),
                     KBR_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(body, "cose-1", 6);
    assert_int_equal(seq, 10);
    free(body);
    json_decref(dev);
    /* the delivered key's custody counts it; the product now relates to it by delivery */
    assert_int_equal(query_count(f, "SELECT count FROM key_operations WHERE key = 'ota-door'"
                                    " AND op = 'key.deliver' AND sub = 'factory:acme'"),
                     1);
    assert_int_equal(query_count(f, "SELECT count(*) FROM key_relations WHERE key = 'ota-door'"
                                    " AND role = 'ota-delivery' AND product = 'door'"),
                     1);
    kbr_store_close(st);
}

/* A store of version 7 (before deliveries) is taken to the current version when it is opened, on
 * either back end: key_deliveries and its counter trigger are made, and they count. */
static void test_v7_store_gains_deliveries(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);

    kbr_store_close(st);
    store_back_to_v7(f);
    st = open_ok(f);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 10);
    kbr_store_close(st);
    /* the table is back, with its trigger: the delivery tests pass on the migrated store */
    test_key_deliver(state);
}

/*
 * A device certificate's chain is its issuer's certificate and chain, named by fingerprint; an
 * SBOM is a document the record stores and the build names.
 */
static void test_device_chain_and_documents(void **state)
{
    static const char doc[] = "{\"bomFormat\":\"CycloneDX\"}";
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *unknown = provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), *build = NULL;
    kbr_effects *fx = NULL;
    char chain[512], want[512], sha[65];
    cert_ids ca;

    ids_of(CA_TAG, &ca);
    json_object_set_new(json_array_get(unknown, 0), "issuer_fingerprint", json_string(ZEROS_OF_64));
    assert_int_equal(apply_json(st, unknown, 3), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 4), KBR_OK);
    query_text(f, "SELECT chain_pem FROM certificates WHERE owner_kind = 'device'", chain,
               sizeof(chain));
    snprintf(want, sizeof(want), "%s%s", ca.pem, CA_CHAIN);
    assert_string_equal(chain, want);

    /* a build naming an SBOM the store does not have is refused; with it, it is kept */
    kbr_sha256_hex(doc, strlen(doc), sha);
    build = sign_effect("1.3.0");
    json_object_set_new(json_array_get(build, 0), "sbom_sha256", json_string(sha));
    assert_int_equal(kbr_effects_from_json(build, &fx), KBR_OK);
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbr_store_apply(st, fx, 5), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_effects_add_document(fx, doc, strlen(doc), sha), KBR_OK);
    assert_int_equal(kbr_store_apply(st, fx, 5), KBR_OK);
    assert_int_equal(kbt_entry_insert(st, 5, &(kbt_entry){.op = "sign"}), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    kbr_effects_free(fx);
    json_decref(build);
    assert_int_equal(kbr_store_firmware_get(st, "door", "1.3.0", &build), KBR_OK);
    assert_string_equal(str_at(build, "sbom_sha256"), sha);
    json_decref(build);
    assert_int_equal(count_where(f, "documents", "audit_seq = 5"), 1);
    kbr_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_provision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_without_firmware_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_duplicate_serial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_quantity_enforced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_must_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_rotate, setup, teardown),
        cmocka_unit_test(test_public_key_name),
        cmocka_unit_test(test_spki_name),
        cmocka_unit_test_setup_teardown(test_device_key_refused_at_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_key_on_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_chain_and_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_deliver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v7_store_gains_deliveries, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
