/*
 * test_store_revoke.c - device revocation and CRLs: the ledger's rules, and the effects' JSON
 * form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kbr_store.h"
#include "store_fixture.h"

/* A device.revoke of the certificates tagged tags (in issue order), by ca-door. */
static json_t *revoke_effect(const char *product, const char *serial, const char *reason, int code,
                             const char *const *tags, size_t n)
{
    json_t *certs = json_array();
    cert_ids ids;

    for (size_t i = 0; i < n; i++) {
        ids_of(tags[i], &ids);
        json_array_append_new(certs,
                              json_pack("{s:s,s:s,s:s}", "fingerprint", ids.fingerprint,
                                        "serial_number", ids.serial, "issuer_key", "ca-door"));
    }
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:o}]", "type", "device.revoke", "product",
                     product, "serial", serial, "at", "2027-06-01T12:00:00Z", "reason", reason,
                     "reason_code", code, "revoked_by", "security:ops", "certificates", certs);
}

/* A debug unlock of door's serial, answering the challenge tag names. */
static json_t *debug_effect(const char *serial, const char *tag)
{
    char challenge[65], digest[65];

    kbr_sha256_hex(tag, strlen(tag), challenge);
    kbr_sha256_hex(serial, strlen(serial), digest);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}]", "type",
                     "debug.authorize", "key", "ca-door", "product", "door", "serial", serial,
                     "challenge_sha256", challenge, "permissions", "00ff", "ticket", "RMA-7",
                     "principal", "security:alice", "message_sha256", digest, "signature_sha256",
                     digest, "at", "2027-05-01T09:00:00Z", "expires_at", "2027-05-01T09:15:00Z");
}

static json_t *crl_effect(const char *issuer, const char *fingerprint, int number,
                          const char *this_update, const char *next_update)
{
    return json_pack("[{s:s,s:s,s:s,s:i,s:s,s:s,s:i,s:s}]", "type", "crl.issue", "issuer_key",
                     issuer, "issuer_fingerprint", fingerprint, "number", number, "this_update",
                     this_update, "next_update", next_update, "entries", 2, "sha256", ZEROS_OF_64);
}

/* View A's device certificates of door, as of now with an expiring section of days: the test
 * fails unless it shows total current ones (or any number, for -1), expiring ones, and listed
 * of those in "first". */
static void expect_door_certificates(kbr_store *st, time_t now, long days, int64_t total,
                                     int64_t expiring, size_t listed)
{
    json_t *view = NULL;
    const json_t *dev;

    assert_int_equal(kbr_store_view_product(st, "door", now, days, &view), KBR_OK);
    if (total >= 0)
        assert_int_equal(int_at(json_object_get(view, "device_certificates"), "total_current"),
                         total);
    dev = json_object_get(json_object_get(view, "expiring"), "device_certificates");
    assert_int_equal(int_at(dev, "count"), expiring);
    assert_int_equal(json_array_size(json_object_get(dev, "first")), listed);
    json_decref(view);
}

static void test_device_revoke(void **state)
{
    static const char *const both[] = {"d1", "d2"}, *const current[] = {"d2"},
                             *const reversed[] = {"d2", "d1"};
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *crl = NULL, *rev, *certs;
    cert_ids d1, d2;

    ids_of("d1", &d1);
    ids_of("d2", &d2);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 3), KBR_OK);
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-1", "d2", "2027-01-01T00:00:00Z"), 4),
                     KBR_OK);
    /* Not yet revoked: the device and its certificates say so. */
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_true(json_is_null(json_object_get(dev, "revocation")));
    assert_true(json_is_null(json_object_get(
        json_array_get(json_object_get(dev, "certificates"), 0), "revocation_reason")));
    json_decref(dev);

    /* Every certificate of the device, in issue order, or nothing: a superseded one is still
     * valid, and a list read before a rotation misses the new one. */
    assert_int_equal(
        apply_json(st, revoke_effect("door", "SN-1", "keyCompromise", 1, current, 1), 6),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, revoke_effect("door", "SN-1", "keyCompromise", 1, reversed, 2), 7),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, revoke_effect("door", "SN-9", "keyCompromise", 1, both, 2), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, revoke_effect("lock", "SN-1", "keyCompromise", 1, both, 2), 9),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificate_revocations"), 0);
    assert_int_equal(apply_json(st, debug_effect("SN-1", "before"), 5), KBR_OK);
    /* The current certificate (d2, not after 2036-01-01) counts among door's until revoked:
     * from the per-day counters (2026 + 10 years) and row by row (its own day). */
    expect_door_certificates(st, 1798675200 /* 2026-12-31 */, 3650, 1, 1, 1);
    expect_door_certificates(st, 2082672000 /* 2035-12-31 */, 1, -1, 1, 1);
    assert_int_equal(apply_json(st, revoke_effect("door", "SN-1", "keyCompromise", 1, both, 2), 10),
                     KBR_OK);
    /* Revoked, it is no longer a certificate door depends on, nor one that expires. */
    expect_door_certificates(st, 1798675200, 3650, 0, 0, 0);
    expect_door_certificates(st, 2082672000, 1, -1, 0, 0);

    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    rev = json_object_get(dev, "revocation");
    assert_string_equal(str_at(rev, "at"), "2027-06-01T12:00:00Z");
    assert_string_equal(str_at(rev, "reason"), "keyCompromise");
    assert_int_equal(int_at(rev, "reason_code"), 1);
    assert_string_equal(str_at(rev, "revoked_by"), "security:ops");
    assert_int_equal(int_at(rev, "audit_seq"), 10);
    certs = json_object_get(dev, "certificates");
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(str_at(json_array_get(certs, i), "revoked_at"), "2027-06-01T12:00:00Z");
        assert_string_equal(str_at(json_array_get(certs, i), "revocation_reason"), "keyCompromise");
        assert_null(json_object_get(json_array_get(certs, i), "revocation_reason_code"));
    }
    json_decref(dev);

    /* Revoked once, for good: no second revocation, no new certificate, no debug unlock. */
    assert_int_equal(apply_json(st, revoke_effect("door", "SN-1", "superseded", 4, both, 2), 11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, rotate_effect("door", "SN-1", "d3", "2027-07-01T00:00:00Z"), 12),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        query_count(f, "SELECT count(*) FROM certificates WHERE owner_kind = 'device'"), 2);
    /* and no debug unlock: a revoked device is unlocked by no one */
    assert_int_equal(apply_json(st, debug_effect("SN-1", "after"), 13), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(query_count(f, "SELECT count(*) FROM debug_challenges"), 1);

    /* What the issuer's CRL lists. */
    assert_int_equal(kbr_store_crl_contents(st, "ca-door", &crl), KBR_OK);
    assert_int_equal(int_at(crl, "last_number"), 0);
    assert_int_equal(json_array_size(json_object_get(crl, "revoked")), 2);
    rev = json_array_get(json_object_get(crl, "revoked"), 0);
    assert_string_equal(str_at(rev, "revoked_at"), "2027-06-01T12:00:00Z");
    assert_int_equal(int_at(rev, "reason_code"), 1);
    assert_true(strcmp(str_at(rev, "serial_number"), d1.serial) == 0 ||
                strcmp(str_at(rev, "serial_number"), d2.serial) == 0);
    json_decref(crl);
    assert_int_equal(kbr_store_crl_contents(st, "no-such-ca", &crl), KBR_OK);
    assert_int_equal(json_array_size(json_object_get(crl, "revoked")), 0);
    json_decref(crl);
    kbr_store_close(st);
}

static void test_crl_numbers(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *crl = NULL;

    /* 1 first, then one more each time; an unknown issuer or CA certificate is refused */
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ca_fingerprint(), 2, "2027-06-01T12:00:00Z",
                                           "2027-06-08T12:00:00Z"),
                                3),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-none", ca_fingerprint(), 1, "2027-06-01T12:00:00Z",
                                           "2027-06-08T12:00:00Z"),
                                4),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ZEROS_OF_64, 1, "2027-06-01T12:00:00Z",
                                           "2027-06-08T12:00:00Z"),
                                5),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ca_fingerprint(), 1, "2027-06-01T12:00:00Z",
                                           "2027-06-08T12:00:00Z"),
                                6),
                     KBR_OK);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ca_fingerprint(), 1, "2027-06-02T12:00:00Z",
                                           "2027-06-09T12:00:00Z"),
                                7),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ca_fingerprint(), 2, "2027-06-02T12:00:00Z",
                                           "2027-06-09T12:00:00Z"),
                                8),
                     KBR_OK);
    assert_int_equal(kbr_store_crl_contents(st, "ca-door", &crl), KBR_OK);
    assert_int_equal(int_at(crl, "last_number"), 2);
    json_decref(crl);
    assert_int_equal(query_count(f, "SELECT audit_seq FROM crls WHERE number = 2"), 8);
    kbr_store_close(st);
}

/* The rules of both effects' JSON form, and their round trip. */
static void test_revoke_effect_rules(void **state)
{
    static const kbr_effect_revoked_cert cert = {FP_A, "0A1B", "ca-door"};
    const kbr_fx_device_revoke ok = {.product = "door",
                                     .serial = "SN-1",
                                     .at = "2027-06-01T12:00:00Z",
                                     .reason = "cessationOfOperation",
                                     .reason_code = 5,
                                     .revoked_by = "security:ops",
                                     .certificates = &cert,
                                     .ncertificates = 1};
    kbr_effects *fx = NULL, *back = NULL;
    kbr_fx_device_revoke bad;
    json_t *arr = NULL, *again = NULL;

    (void)state;
    assert_int_equal(kbr_effects_new(&fx), KBR_OK);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE, .u.device_revoke = ok}),
        KBR_OK);
    /* a reason RFC 5280 does not have, or one that is not for good, or a code not its own */
    bad = ok;
    bad.reason = "certificateHold";
    bad.reason_code = 6;
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                                       .u.device_revoke = bad}),
                     KBR_ERR_INTERNAL);
    bad = ok;
    bad.reason_code = 1;
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                                       .u.device_revoke = bad}),
                     KBR_ERR_INTERNAL);
    bad = ok;
    bad.ncertificates = 0;
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                                       .u.device_revoke = bad}),
                     KBR_ERR_INTERNAL);
    bad = ok;
    bad.revoked_by = NULL;
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                                       .u.device_revoke = bad}),
                     KBR_ERR_INTERNAL);
    /* a CRL whose nextUpdate is not after its thisUpdate, or numbered 0 */
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_CRL_ISSUE,
                                          .u.crl_issue =
                                              {
                                                  .issuer_key = "ca-door",
                                                  .issuer_fingerprint = FP_A,
                                                  .number = 1,
                                                  .this_update = "2027-06-01T12:00:00Z",
                                                  .next_update = "2027-06-01T12:00:00Z",
                                                  .sha256 = FP_A,
                                              }}),
        KBR_ERR_INTERNAL);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_CRL_ISSUE,
                                          .u.crl_issue =
                                              {
                                                  .issuer_key = "ca-door",
                                                  .issuer_fingerprint = FP_A,
                                                  .number = 0,
                                                  .this_update = "2027-06-01T12:00:00Z",
                                                  .next_update = "2027-06-02T12:00:00Z",
                                                  .sha256 = FP_A,
                                              }}),
        KBR_ERR_INTERNAL);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_CRL_ISSUE,
                                          .u.crl_issue =
                                              {
                                                  .issuer_key = "ca-door",
                                                  .issuer_fingerprint = FP_A,
                                                  .number = 3,
                                                  .this_update = "2027-06-01T12:00:00Z",
                                                  .next_update = "2027-06-02T12:00:00Z",
                                                  .entries = 7,
                                                  .sha256 = FP_A,
                                              }}),
        KBR_OK);
    assert_int_equal(kbr_effects_count(fx), 2);
    assert_string_equal(kbr_effects_get(fx, 0)->u.device_revoke.certificates[0].serial_number,
                        "0a1b");
    assert_int_equal(kbr_effects_to_json(fx, &arr), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "type")),
                        "device.revoke");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "reason_code")), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "type")),
                        "crl.issue");
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_OK);
    assert_int_equal(kbr_effects_to_json(back, &again), KBR_OK);
    assert_true(json_equal(arr, again));
    json_decref(again);
    kbr_effects_free(back);
    /* the JSON form read back with a reason and code that disagree */
    json_object_set_new(json_array_get(arr, 0), "reason_code", json_integer(2));
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_ERR_INTERNAL);
    json_decref(arr);
    kbr_effects_free(fx);

    /* the names and their codes */
    assert_int_equal(kbr_store_revocation_reason_code("unspecified"), 0);
    assert_int_equal(kbr_store_revocation_reason_code("privilegeWithdrawn"), 9);
    assert_int_equal(kbr_store_revocation_reason_code("removeFromCRL"), -1);
    assert_int_equal(kbr_store_revocation_reason_code("KeyCompromise"), -1);
    assert_int_equal(kbr_store_revocation_reason_code(NULL), -1);
    assert_string_equal(kbr_store_revocation_reason_name(2), "cACompromise");
    assert_null(kbr_store_revocation_reason_name(7));
}

/* A store of version 9 counted a revoked device's certificate among those that expire.
 * Opened by this broker it is corrected, and the next revocation is counted right. */
static void test_v9_counters_corrected(void **state)
{
    static const char *const first[] = {"d1"}, *const second[] = {"d2"};
    fixture *f = *state;
    kbr_store *st = factory_store(f);

    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 3), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-2", "B1", "factory:acme", "d2"), 4), KBR_OK);
    assert_int_equal(apply_json(st, revoke_effect("door", "SN-1", "keyCompromise", 1, first, 1), 5),
                     KBR_OK);
    kbr_store_close(st);
    store_back_to_v9(f);
    assert_int_equal(kbt_store_sql(f->url,
                                   "UPDATE device_cert_expiry SET count = count + 1"
                                   " WHERE product = 'door'",
                                   NULL, 0, NULL),
                     0);

    st = open_ok(f);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 10);
    expect_door_certificates(st, 1798675200 /* 2026-12-31 */, 3650, 1, 1, 1);
    assert_int_equal(apply_json(st, revoke_effect("door", "SN-2", "superseded", 4, second, 1), 6),
                     KBR_OK);
    expect_door_certificates(st, 1798675200, 3650, 0, 0, 0);
    kbr_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_device_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v9_counters_corrected, setup, teardown),
        cmocka_unit_test(test_revoke_effect_rules),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
