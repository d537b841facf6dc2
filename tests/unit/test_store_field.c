/*
 * test_store_field.c - devices in the field: signed builds, debug unlocks, firmware reports,
 * and which serials are known.
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
#include "tmpdir.h"

static void test_firmware_sign_rules(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *build = NULL, *comps;

    assert_int_equal(apply(st,
                           FW("aabb", "[{\"name\": \"openssl\", \"version\": \"3.0.1\","
                                      " \"purl\": \"pkg:generic/openssl@3.0.1\"},"
                                      " {\"name\": \"zlib\", \"version\": \"1.3\"}]"),
                           1),
                     KBR_OK);
    /* A CI retry with the same digest changes nothing, not even the components. */
    assert_int_equal(apply(st, FW("AABB", "[{\"name\": \"other\"}]"), 2), KBR_OK);
    assert_int_equal(apply(st, FW("ccdd", "[{\"name\": \"other\"}]"), 3), KBR_ERR_STORE_CONSTRAINT);

    assert_int_equal(kbr_store_firmware_get(st, "door", "1.2.0", &build), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(build, "digest")), "aabb");
    assert_int_equal(json_integer_value(json_object_get(build, "audit_seq")), 1);
    assert_string_equal(json_string_value(json_object_get(build, "build_id")), "b7");
    comps = json_object_get(build, "components");
    assert_int_equal(json_array_size(comps), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(comps, 0), "purl")),
                        "pkg:generic/openssl@3.0.1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(comps, 1), "version")),
                        "1.3");
    assert_true(json_is_null(json_object_get(json_array_get(comps, 1), "purl")));
    json_decref(build);
    build = NULL;
    assert_int_equal(kbr_store_firmware_get(st, "door", "9.9", &build), KBR_ERR_NOT_FOUND);
    assert_null(build);
    kbr_store_close(st);
}

/*
 * factory_store plus debug keys dbg-door (seq 3) and dbg-lab (seq 4), doors SN-1 (seq 5) and
 * SN-2 (seq 6) provisioned with factory image 1.2.0, and signed builds 1.3.0 (seq 7) and
 * 1.4.0 (seq 8).
 */
static kbr_store *field_store(const fixture *f)
{
    kbr_store *st = factory_store(f);

    assert_int_equal(apply(st, KEY_DEBUG("dbg-door"), 3), KBR_OK);
    assert_int_equal(apply(st, KEY_DEBUG("dbg-lab"), 4), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 5), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-2", "B1", "factory:acme", "d2"), 6), KBR_OK);
    assert_int_equal(apply_json(st, sign_effect("1.3.0"), 7), KBR_OK);
    assert_int_equal(apply_json(st, sign_effect("1.4.0"), 8), KBR_OK);
    return st;
}

/* The digests a debug.authorize effect for challenge tag carries. */
typedef struct {
    char challenge[65], message[65], signature[65];
} debug_ids;

static void debug_ids_of(const char *tag, debug_ids *ids)
{
    char in[64];

    kbr_sha256_hex(tag, strlen(tag), ids->challenge);
    snprintf(in, sizeof(in), "message:%s", tag);
    kbr_sha256_hex(in, strlen(in), ids->message);
    snprintf(in, sizeof(in), "signature:%s", tag);
    kbr_sha256_hex(in, strlen(in), ids->signature);
}

static json_t *debug_effect(const char *key, const char *product, const char *serial,
                            const char *tag)
{
    debug_ids ids;

    debug_ids_of(tag, &ids);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}]", "type",
                     "debug.authorize", "key", key, "product", product, "serial", serial,
                     "challenge_sha256", ids.challenge, "permissions", "00FF", "ticket", "RMA-7",
                     "principal", "security:alice", "message_sha256", ids.message,
                     "signature_sha256", ids.signature, "at", "2026-04-01T09:00:00Z", "expires_at",
                     "2026-04-01T09:15:00+00:00");
}

static bool challenge_used(kbr_store *st, const char *serial, const char *challenge)
{
    bool used = false;

    assert_int_equal(kbr_store_debug_challenge_used(st, "door", serial, challenge, &used), KBR_OK);
    return used;
}

static void test_debug_authorize(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *events = NULL;
    const json_t *ev, *detail;
    debug_ids c1;
    char upper[65];

    debug_ids_of("c1", &c1);
    assert_false(challenge_used(st, "SN-1", c1.challenge));
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c1"), 10), KBR_OK);

    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 2);
    ev = json_array_get(events, 1);
    detail = json_object_get(ev, "detail");
    assert_string_equal(str_at(ev, "kind"), "debug-auth");
    assert_string_equal(str_at(ev, "at"), "2026-04-01T09:00:00Z");
    assert_int_equal(int_at(ev, "audit_seq"), 10);
    assert_int_equal(json_object_size(detail), 8);
    assert_string_equal(str_at(detail, "key"), "dbg-door");
    assert_string_equal(str_at(detail, "ticket"), "RMA-7");
    assert_string_equal(str_at(detail, "principal"), "security:alice");
    assert_string_equal(str_at(detail, "permissions"), "00ff");
    assert_string_equal(str_at(detail, "challenge_sha256"), c1.challenge);
    assert_string_equal(str_at(detail, "message_sha256"), c1.message);
    assert_string_equal(str_at(detail, "signature_sha256"), c1.signature);
    assert_string_equal(str_at(detail, "expires_at"), "2026-04-01T09:15:00Z");
    json_decref(events);

    /* The check before signing sees the answer in either spelling of the hex, per device. */
    assert_true(challenge_used(st, "SN-1", c1.challenge));
    for (size_t i = 0; i < sizeof(upper); i++)
        upper[i] =
            (char)(c1.challenge[i] >= 'a' && c1.challenge[i] <= 'f' ? c1.challenge[i] - 'a' + 'A'
                                                                    : c1.challenge[i]);
    assert_true(challenge_used(st, "SN-1", upper));
    assert_false(challenge_used(st, "SN-2", c1.challenge));
    assert_false(challenge_used(st, "SN-1", c1.message));
    kbr_store_close(st);
}

static void test_debug_challenge_once_per_device(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    bool used = false;
    debug_ids c1;

    debug_ids_of("c1", &c1);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c1"), 10), KBR_OK);
    /*
     * A challenge is the device's: a replay conflicts whichever key answers it, and another
     * device's challenge that happens to have the same bytes is another session.
     */
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c1"), 11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, debug_effect("dbg-lab", "door", "SN-1", "c1"), 12),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, debug_effect("dbg-lab", "door", "SN-2", "c1"), 13), KBR_OK);
    assert_int_equal(query_count(f, "SELECT count(*) FROM debug_challenges"), 2);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind = 'debug-auth'"
                                    " AND audit_seq IN (11, 12)"),
                     0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind = 'debug-auth'"),
                     2);

    /* The rule outlives the process. */
    kbr_store_close(st);
    st = open_ok(f);
    assert_int_equal(kbr_store_debug_challenge_used(st, "door", "SN-1", c1.challenge, &used),
                     KBR_OK);
    assert_true(used);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c1"), 14),
                     KBR_ERR_STORE_CONSTRAINT);
    used = true;
    assert_int_equal(kbr_store_debug_challenge_used(st, "door", "SN-1", "abc", &used),
                     KBR_ERR_INTERNAL);
    assert_false(used);
    kbr_store_close(st);
}

static void test_debug_unknown_device(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    debug_ids c2;

    debug_ids_of("c2", &c2);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-9", "c2"), 10),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "lock", "SN-1", "c2"), 11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, debug_effect("no-such-key", "door", "SN-1", "c2"), 12),
                     KBR_ERR_STORE_CONSTRAINT);
    /* A refused unlock burns no challenge and leaves no event. */
    assert_false(challenge_used(st, "dbg-door", c2.challenge));
    assert_int_equal(query_count(f, "SELECT count(*) FROM debug_challenges"), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind = 'debug-auth'"),
                     0);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c2"), 13), KBR_OK);
    kbr_store_close(st);
}

static json_t *result_of(const char *serial, const char *status, const char *at)
{
    return json_pack("{s:s,s:s,s:s}", "serial", serial, "status", status, "at", at);
}

/* An ota.report of door firmware version; results is consumed. */
static json_t *ota_effect(const char *version, const char *campaign, json_t *results)
{
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:o}]", "type", "ota.report", "product", "door",
                     "version", version, "campaign", campaign, "reported_by", "ota:fleet", "at",
                     "2026-09-01T00:00:00Z", "results", results);
}

static void assert_current(kbr_store *st, const char *serial, const char *version, const char *at)
{
    json_t *dev = NULL;

    assert_int_equal(kbr_store_device_get(st, "door", serial, &dev), KBR_OK);
    assert_string_equal(str_at(dev, "current_firmware"), version);
    assert_string_equal(str_at(dev, "current_firmware_at"), at);
    json_decref(dev);
}

static void test_provision_records_factory_image(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *history = NULL;
    const json_t *h;

    assert_current(st, "SN-1", "1.2.0", "2026-03-02T08:00:00Z");
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-1", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 1);
    h = json_array_get(history, 0);
    assert_string_equal(str_at(h, "version"), "1.2.0");
    assert_string_equal(str_at(h, "status"), "factory");
    assert_string_equal(str_at(h, "at"), "2026-03-02T08:00:00Z");
    assert_true(json_is_null(json_object_get(h, "campaign")));
    assert_int_equal(int_at(h, "audit_seq"), 5);
    json_decref(history);
    history = NULL;
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-9", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 0);
    json_decref(history);
    kbr_store_close(st);
}

static void test_ota_requires_signed_build(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);

    /* The factory image 1.2.0 was never signed here: a device may carry it, OTA may not ship it. */
    assert_int_equal(apply_json(st,
                                ota_effect("1.2.0", "camp",
                                           json_pack("[o]", result_of("SN-1", "installed",
                                                                      "2026-06-01T00:00:00Z"))),
                                10),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                ota_effect("9.9.9", "camp",
                                           json_pack("[o]", result_of("SN-1", "failed",
                                                                      "2026-06-01T00:00:00Z"))),
                                11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_firmware"), 2);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind LIKE 'ota-%'"),
                     0);
    assert_current(st, "SN-1", "1.2.0", "2026-03-02T08:00:00Z");
    kbr_store_close(st);
}

static void test_ota_unknown_device_keeps_nothing(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *results = json_pack("[o,o,o]", result_of("SN-1", "installed", "2026-06-01T00:00:00Z"),
                                result_of("SN-2", "failed", "2026-06-01T00:00:00Z"),
                                result_of("SN-9", "installed", "2026-06-01T00:00:00Z"));

    assert_int_equal(apply_json(st, ota_effect("1.4.0", "camp", results), 10),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_current(st, "SN-1", "1.2.0", "2026-03-02T08:00:00Z");
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_firmware"
                                    " WHERE status <> 'factory'"),
                     0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind LIKE 'ota-%'"),
                     0);
    kbr_store_close(st);
}

static void assert_history(const json_t *h, const char *version, const char *status, const char *at,
                           const char *campaign, int64_t seq)
{
    assert_string_equal(str_at(h, "version"), version);
    assert_string_equal(str_at(h, "status"), status);
    assert_string_equal(str_at(h, "at"), at);
    assert_string_equal(str_at(h, "campaign"), campaign);
    assert_int_equal(int_at(h, "audit_seq"), seq);
}

static void assert_ota_event(const json_t *ev, const char *kind, const char *version,
                             const char *campaign, int64_t seq)
{
    const json_t *detail = json_object_get(ev, "detail");

    assert_string_equal(str_at(ev, "kind"), kind);
    assert_int_equal(int_at(ev, "audit_seq"), seq);
    assert_int_equal(json_object_size(detail), 3);
    assert_string_equal(str_at(detail, "version"), version);
    assert_string_equal(str_at(detail, "campaign"), campaign);
    assert_string_equal(str_at(detail, "reported_by"), "ota:fleet");
}

/* Applies a one-result report of SN-1. */
static kbr_err report_sn1(kbr_store *st, const char *version, const char *campaign,
                          const char *status, const char *at, int64_t seq)
{
    return apply_json(
        st, ota_effect(version, campaign, json_pack("[o]", result_of("SN-1", status, at))), seq);
}

static void test_ota_current_firmware(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *history = NULL, *events = NULL;
    json_t *results = json_pack("[o,o]", result_of("SN-1", "installed", "2026-06-01T00:00:00Z"),
                                result_of("SN-2", "failed", "2026-06-01T00:00:00Z"));

    assert_int_equal(apply_json(st, ota_effect("1.4.0", "camp-b", results), 10), KBR_OK);
    assert_current(st, "SN-1", "1.4.0", "2026-06-01T00:00:00Z");
    assert_current(st, "SN-2", "1.2.0", "2026-03-02T08:00:00Z");
    /* An older install reported late is history, not the current version. */
    assert_int_equal(report_sn1(st, "1.3.0", "camp-a", "installed", "2026-05-01T00:00:00Z", 11),
                     KBR_OK);
    assert_current(st, "SN-1", "1.4.0", "2026-06-01T00:00:00Z");
    assert_int_equal(report_sn1(st, "1.3.0", "camp-c", "failed", "2026-07-01T00:00:00Z", 12),
                     KBR_OK);
    assert_current(st, "SN-1", "1.4.0", "2026-06-01T00:00:00Z");
    /* At the same time, the later report wins. */
    assert_int_equal(
        report_sn1(st, "1.3.0", "camp-d", "installed", "2026-06-01T00:00:00+00:00", 13), KBR_OK);
    assert_current(st, "SN-1", "1.3.0", "2026-06-01T00:00:00Z");

    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-1", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 5);
    assert_string_equal(str_at(json_array_get(history, 0), "status"), "factory");
    assert_history(json_array_get(history, 1), "1.3.0", "installed", "2026-05-01T00:00:00Z",
                   "camp-a", 11);
    assert_history(json_array_get(history, 2), "1.4.0", "installed", "2026-06-01T00:00:00Z",
                   "camp-b", 10);
    assert_history(json_array_get(history, 3), "1.3.0", "installed", "2026-06-01T00:00:00Z",
                   "camp-d", 13);
    assert_history(json_array_get(history, 4), "1.3.0", "failed", "2026-07-01T00:00:00Z", "camp-c",
                   12);
    json_decref(history);

    /* Events keep the order the reports were recorded in. */
    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 5);
    assert_ota_event(json_array_get(events, 1), "ota-installed", "1.4.0", "camp-b", 10);
    assert_string_equal(str_at(json_array_get(events, 1), "at"), "2026-06-01T00:00:00Z");
    assert_ota_event(json_array_get(events, 2), "ota-installed", "1.3.0", "camp-a", 11);
    assert_ota_event(json_array_get(events, 3), "ota-failed", "1.3.0", "camp-c", 12);
    assert_ota_event(json_array_get(events, 4), "ota-installed", "1.3.0", "camp-d", 13);
    json_decref(events);
    events = NULL;
    assert_int_equal(kbr_store_device_events(st, "door", "SN-2", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 2);
    assert_ota_event(json_array_get(events, 1), "ota-failed", "1.4.0", "camp-b", 10);
    json_decref(events);
    kbr_store_close(st);
}

/* Serials is consumed; returns the known list (caller decrefs). */
static json_t *known_of(kbr_store *st, const char *product, json_t *serials)
{
    json_t *known = NULL;

    assert_int_equal(kbr_store_devices_known(st, product, serials, &known), KBR_OK);
    json_decref(serials);
    return known;
}

static void test_devices_known(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *known, *bad;

    assert_int_equal(apply_json(st, batch_effect("L1", "lock", "factory:acme", 3), 10), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("lock", "SN-3", "L1", "factory:acme", "d3"), 11), KBR_OK);

    known = known_of(st, "door",
                     json_pack("[s,s,s,s,s,s]", "SN-9", "SN-2", "SN-3", "SN-1", "SN-2", "SN-1"));
    assert_int_equal(json_array_size(known), 2);
    assert_string_equal(json_string_value(json_array_get(known, 0)), "SN-2");
    assert_string_equal(json_string_value(json_array_get(known, 1)), "SN-1");
    json_decref(known);
    known = known_of(st, "lock", json_pack("[s,s]", "SN-1", "SN-3"));
    assert_int_equal(json_array_size(known), 1);
    assert_string_equal(json_string_value(json_array_get(known, 0)), "SN-3");
    json_decref(known);
    known = known_of(st, "door", json_array());
    assert_true(json_is_array(known));
    assert_int_equal(json_array_size(known), 0);
    json_decref(known);

    known = NULL;
    bad = json_pack("[s,i]", "SN-1", 7);
    assert_int_equal(kbr_store_devices_known(st, "door", bad, &known), KBR_ERR_INTERNAL);
    assert_null(known);
    json_decref(bad);
    bad = json_pack("{s:s}", "serial", "SN-1");
    assert_int_equal(kbr_store_devices_known(st, "door", bad, &known), KBR_ERR_INTERNAL);
    assert_null(known);
    json_decref(bad);
    kbr_store_close(st);
}

static void exec_sql(const fixture *f, const char *sql)
{
    assert_int_equal(kbt_store_sql(f->url, sql, NULL, 0, NULL), 0);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* An OTA platform reports thousands of devices at once; the lookup is one query, not n. */
static void test_devices_known_many(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *serials = json_array(), *known = NULL;
    struct timespec t0;
    char serial[16];

    if (kbt_pg())
        exec_sql(f, "INSERT INTO devices(product, serial, provisioned_at, audit_seq)"
                    " SELECT 'door', 'D' || lpad(i::text, 5, '0'), '2026-03-02T08:00:00Z', 1"
                    " FROM generate_series(0, 2499) i");
    else
        exec_sql(f, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2499)"
                    " INSERT INTO devices(product, serial, provisioned_at, audit_seq)"
                    " SELECT 'door', printf('D%05d', i), '2026-03-02T08:00:00Z', 1 FROM n");
    for (int i = 4999; i >= 0; i--) {
        snprintf(serial, sizeof(serial), "D%05d", i);
        assert_int_equal(json_array_append_new(serials, json_string(serial)), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kbr_store_devices_known(st, "door", serials, &known), KBR_OK);
    if (seconds_since(&t0) > 1.0)
        fail_msg("5000 serials took %.2f s", seconds_since(&t0));
    assert_int_equal(json_array_size(known), 2500);
    assert_string_equal(json_string_value(json_array_get(known, 0)), "D02499");
    assert_string_equal(json_string_value(json_array_get(known, 2499)), "D00000");
    json_decref(known);
    json_decref(serials);
    kbr_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_firmware_sign_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_authorize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_challenge_once_per_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_unknown_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provision_records_factory_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_requires_signed_build, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_unknown_device_keeps_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_current_firmware, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_known, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_known_many, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
