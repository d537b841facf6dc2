/*
 * test_store_effects.c - the effects' rules: what is refused as malformed, their typed values
 * and JSON form, and a record kept whole or not at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kbr_audit.h"
#include "kbr_store.h"
#include "store_fixture.h"

static void test_duplicate_key_rolls_back_record(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *key = NULL;

    assert_int_equal(apply(st, KEY_A, 1), KBR_OK);
    /* A record whose second effect conflicts keeps none of its effects. */
    assert_int_equal(apply(st,
                           "[{\"type\": \"key.create\", \"name\": \"fw-b\", \"purpose\": \"p\","
                           " \"algorithm\": \"ed25519\", \"products\": [],"
                           " \"created_at\": \"2026-03-01T10:00:00Z\"},"
                           " {\"type\": \"key.create\", \"name\": \"fw-a\", \"purpose\": \"p\","
                           " \"algorithm\": \"ed25519\", \"products\": [],"
                           " \"created_at\": \"2026-03-01T10:00:00Z\"}]",
                           2),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_key_get(st, "fw-b", &key), KBR_ERR_NOT_FOUND);
    assert_null(key);
    assert_int_equal(kbr_store_key_get(st, "fw-a", &key), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(key, "algorithm")), "ecdsa-p256");
    json_decref(key);
    kbr_store_close(st);
}

#define FP_Z "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
#define CERT_NO_FP                                                                                 \
    "\"serial_number\": \"0a\", \"pem\": \"P\", \"chain_pem\": \"\","                              \
    " \"not_after\": \"2036-01-01T00:00:00Z\""
#define CERT_OK CERT_NO_FP ", \"fingerprint\": \"" FP_A "\""
#define BATCH_WITH(fields)                                                                         \
    "[{\"type\": \"batch.create\", \"batch\": \"B\", \"product\": \"p\", \"factory\": \"f\","      \
    " \"created_at\": \"2026-03-01T10:00:00Z\", \"created_by\": \"s\", " fields "}]"
#define DEVICE_WITH(type, fields)                                                                  \
    "[{\"type\": \"" type "\", \"product\": \"p\", \"serial\": \"SN\","                            \
    " \"at\": \"2026-03-01T10:00:00Z\", \"issuer_key\": \"ca\", " fields "}]"

#define FP_A63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DEBUG_BASE                                                                                 \
    "\"type\": \"debug.authorize\", \"key\": \"k\", \"product\": \"p\", \"serial\": \"SN\","       \
    " \"principal\": \"security:a\", \"message_sha256\": \"" FP_A "\","                            \
    " \"signature_sha256\": \"" FP_A "\", \"at\": \"2026-03-01T10:00:00Z\""
#define CP_WITH(fields)                                                                            \
    "[{\"type\": \"checkpoint\", \"size\": 1, \"root_hash\": \"" FP_A "\","                        \
    " \"time\": \"2026-03-01T10:00:00Z\", \"signature_b64\": \"c2ln\", " fields "}]"

#define OTA_WITH(fields)                                                                           \
    "[{\"type\": \"ota.report\", \"product\": \"p\", \"version\": \"1\", \"campaign\": \"c\","     \
    " \"at\": \"2026-03-01T10:00:00Z\", " fields "}]"

#define PRODUCT_WITH(placed)                                                                       \
    "[{\"type\": \"product.register\", \"product\": \"p\", \"at\": \"2026-03-01T10:00:00Z\","      \
    " \"by\": \"x\", \"placed_on_market\": " placed "}]"
#define INCIDENT_WITH(fields)                                                                      \
    "[{\"type\": \"incident.create\", \"id\": \"I\", \"title\": \"t\", \"product\": null,"         \
    " \"component\": \"c\", \"aware_at\": \"2026-03-01T10:00:00Z\", \"actively_exploited\": true," \
    " \"cve\": null, \"created_at\": \"2026-03-01T10:00:00Z\", \"created_by\": \"x\","             \
    " \"exposure\": {}, \"builds\": [], " fields "}]"

static void test_malformed_effects(void **state)
{
    static const char *const bad[] = {
        "[{\"type\": \"key.create\", \"purpose\": \"p\", \"algorithm\": \"a\","
        " \"products\": [], \"created_at\": \"2026-03-01T10:00:00Z\"}]",
        "[{\"type\": \"key.create\", \"name\": \"k\", \"purpose\": \"p\", \"algorithm\": \"a\","
        " \"products\": [1], \"created_at\": \"2026-03-01T10:00:00Z\"}]",
        "[{\"type\": \"key.retire\", \"name\": \"k\", \"at\": \"yesterday\"}]",
        "[{\"type\": \"token.issue\", \"jti\": \"j\", \"sub\": \"s\", \"scope\": [],"
        " \"issued_at\": \"2026-03-01T10:00:00Z\", \"expires_at\": \"2026-03-01T11:00:00Z\"}]",
        "[{\"type\": \"firmware.sign\", \"product\": \"p\", \"version\": \"1\","
        " \"signed_at\": \"2026-03-01T10:00:00Z\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " " CERT_NO_FP "}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " " CERT_NO_FP ", \"fingerprint\": \"" FP_Z "\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " " CERT_NO_FP ", \"fingerprint\": \"abcd\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", " CERT_NO_FP ","
        " \"fingerprint\": \"" FP_A "\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " \"serial_number\": \"0a\", \"pem\": \"P\", \"not_after\": \"2036-01-01T00:00:00Z\","
        " \"fingerprint\": \"" FP_A "\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " \"serial_number\": \"0x0a\", \"pem\": \"P\", \"chain_pem\": \"\","
        " \"not_after\": \"2036-01-01T00:00:00Z\", \"fingerprint\": \"" FP_A "\"}]",
        BATCH_WITH("\"quantity\": 0, \"markets\": [\"DE\"]"),
        BATCH_WITH("\"quantity\": \"5\", \"markets\": [\"DE\"]"),
        BATCH_WITH("\"quantity\": 5, \"markets\": []"),
        BATCH_WITH("\"quantity\": 5, \"markets\": \"DE\""),
        DEVICE_WITH("device.provision", "\"batch\": \"B\", \"factory\": \"f\","
                                        " \"firmware_version\": 12, \"csr_sha256\": \"" FP_A "\","
                                        " \"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.provision", "\"batch\": \"B\", \"factory\": \"f\","
                                        " \"csr_sha256\": \"" FP_A "\", \"certificate\": \"PEM\""),
        DEVICE_WITH("device.provision", "\"factory\": \"f\", \"csr_sha256\": \"" FP_A "\","
                                        " \"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.provision", "\"batch\": \"B\", \"factory\": \"f\","
                                        " \"csr_sha256\": \"" FP_A "\","
                                        " \"public_key_sha256\": \"" FP_A63 "\","
                                        " \"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.rotate", "\"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.rotate", "\"csr_sha256\": \"" FP_A "\", \"public_key_sha256\": 7,"
                                     " \"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.rotate", "\"csr_sha256\": \"" FP_A "\","
                                     " \"certificate\": {" CERT_NO_FP "}"),
        "[{" DEBUG_BASE ", \"challenge_sha256\": \"" FP_A "\", \"permissions\": \"0f\","
        " \"expires_at\": \"2026-03-01T10:15:00Z\"}]",
        "[{" DEBUG_BASE ", \"ticket\": \"T\", \"challenge_sha256\": \"" FP_A63 "\","
        " \"permissions\": \"0f\", \"expires_at\": \"2026-03-01T10:15:00Z\"}]",
        "[{" DEBUG_BASE ", \"ticket\": \"T\", \"challenge_sha256\": \"" FP_A "\","
        " \"permissions\": \"xyz\", \"expires_at\": \"2026-03-01T10:15:00Z\"}]",
        "[{" DEBUG_BASE ", \"ticket\": \"T\", \"challenge_sha256\": \"" FP_A "\","
        " \"permissions\": \"0f\", \"expires_at\": \"soon\"}]",
        OTA_WITH("\"reported_by\": \"ota:x\", \"results\": [{\"serial\": \"SN\","
                 " \"status\": \"pending\", \"at\": \"2026-03-01T10:00:00Z\"}]"),
        OTA_WITH("\"reported_by\": \"ota:x\", \"results\": [{\"serial\": \"SN\","
                 " \"status\": \"installed\"}]"),
        OTA_WITH("\"reported_by\": \"ota:x\", \"results\": [\"SN\"]"),
        OTA_WITH("\"reported_by\": \"ota:x\", \"results\": \"SN\""),
        OTA_WITH("\"results\": []"),
        PRODUCT_WITH("\"2026-02-30\", \"support_until\": \"2031-01-01\""),
        PRODUCT_WITH("\"2026-01-01\", \"support_until\": \"2025-12-31\""),
        PRODUCT_WITH("\"2026-01-01T00:00:00Z\", \"support_until\": \"2031-01-01\""),
        INCIDENT_WITH("\"severity\": \"urgent\", \"query\": {\"component\": \"c\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"component\": \"c\", \"purl\":"
                      " \"pkg:npm/c\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"purl\": \"pkg:deb/c\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"component\": \"c\","
                      " \"vers\": \"vers:deb/>1|>2\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"component\": \"c\","
                      " \"product\": \"p\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": \"c\""),
        "[{\"type\": \"incident.report\", \"id\": \"I\", \"stage\": \"late\", \"sha256\": \"" FP_A
        "\", \"at\": \"2026-03-01T10:00:00Z\", \"by\": \"x\"}]",
        "[{\"type\": \"incident.fix\", \"id\": \"I\", \"fixed_version\": \"2\","
        " \"at\": \"2026-03-01T10:00:00Z\"}]",
        "[{\"type\": \"key.destroy\", \"name\": \"k\"}]",
        /* a checkpoint's signer comes whole, and a next key only with a signer */
        CP_WITH("\"note\": \"n\""),
        CP_WITH("\"note\": \"n\", \"origin\": \"o\", \"key_id\": \"0a0b0c0d\","
                " \"key_label\": \"kbr/audit\""),
        CP_WITH("\"note\": \"n\", \"origin\": \"o\", \"key_id\": \"0a0b0c\","
                " \"key_label\": \"kbr/audit\", \"public_key_pem\": \"P\""),
        CP_WITH("\"next_key_pem\": \"P\", \"next_key_id\": \"0a0b0c0d\","
                " \"next_key_label\": \"kbr/audit/2\""),
        CP_WITH("\"key_id\": \"0a0b0c0d\""),
        "[{\"type\": \"checkpoint\", \"size\": 1, \"root_hash\": \"r\","
        " \"time\": \"2026-03-01T10:00:00Z\", \"signature_b64\": \"c2ln\"}]",
        "[{\"type\": \"token.revoke_all\", \"reason\": \"r\"}]",
        "[\"key.create\"]",
        "{\"type\": \"key.retire\"}",
    };
    fixture *f = *state;
    kbr_store *st = open_ok(f);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (apply(st, bad[i], (int64_t)i + 1) != KBR_ERR_INTERNAL)
            fail_msg("effect %zu was not refused as KBR_ERR_INTERNAL", i);
    }
    /* Well-formed, the same effects reach the ledger's rules (no such device or build here). */
    assert_int_equal(apply(st,
                           INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"purl\":"
                                         " \"pkg:deb/debian/c\", \"vers\": \"vers:deb/<2\"}"),
                           99),
                     KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"incident.fix\", \"id\": \"I\", \"fixed_version\": \"2\","
                           " \"available_at\": \"2026-03-01T10:00:00Z\","
                           " \"at\": \"2026-03-01T10:00:00Z\"}]",
                           98),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply(st,
                           "[{" DEBUG_BASE ", \"ticket\": \"T\", \"challenge_sha256\": \"" FP_A
                           "\", \"permissions\": \"0f\","
                           " \"expires_at\": \"2026-03-01T10:15:00Z\"}]",
                           100),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply(st,
                           OTA_WITH("\"reported_by\": \"ota:x\", \"results\": [{\"serial\":"
                                    " \"SN\", \"status\": \"failed\","
                                    " \"at\": \"2026-03-01T10:00:00Z\"}]"),
                           101),
                     KBR_ERR_STORE_CONSTRAINT);
    kbr_store_close(st);
}

#define ZEROS_UPPER "0000000000000000000000000000000000000000000000000000000000000ABC"

/*
 * Effects are typed values with one set of rules: a handler's value and one read from JSON
 * meet the same checks, come out normalized, and write back as the same JSON.
 */
static void test_effects_typed_and_json(void **state)
{
    static const char *const products[] = {"door", "gate"};
    static const kbr_effect_component comps[] = {{"openssl", "3.0.13", "pkg:deb/debian/openssl"},
                                                 {"zlib", NULL, NULL}};
    kbr_effects *fx = NULL, *back = NULL;
    json_t *arr = NULL, *again = NULL;
    const kbr_effect *e;

    (void)state;
    assert_int_equal(kbr_effects_new(&fx), KBR_OK);
    assert_int_equal(
        kbr_effects_add(
            fx, &(kbr_effect){.type = KBR_EFFECT_KEY_CREATE,
                              .u.key_create = {.name = "fw",
                                               .purpose = "firmware-signing",
                                               .algorithm = "ecdsa-p256",
                                               .public_key_sha256 = ZEROS_UPPER,
                                               .created_at = "2026-03-01T10:00:00.250+00:00",
                                               .products = {products, 2}}}),
        KBR_OK);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_FIRMWARE_SIGN,
                                          .u.firmware_sign = {.product = "door",
                                                              .version = "1.0",
                                                              .digest = "ab",
                                                              .signed_at = "2026-03-01T10:00:00Z",
                                                              .components = comps,
                                                              .ncomponents = 2}}),
        KBR_OK);
    /* a required field missing, a bad time, hex that is not hex: refused, the list unchanged */
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_KEY_RETIRE,
                                                       .u.key_retire = {.name = "fw"}}),
                     KBR_ERR_INTERNAL);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_KEY_RETIRE,
                                          .u.key_retire = {.name = "fw", .at = "soon"}}),
        KBR_ERR_INTERNAL);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_TOKEN_REVOKE,
                                          .u.token_revoke = {.at = "2026-03-01T10:00:00Z"}}),
        KBR_OK);
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = (kbr_effect_type)99}),
                     KBR_ERR_INTERNAL);
    assert_int_equal(kbr_effects_count(fx), 3);
    e = kbr_effects_get(fx, 0);
    assert_string_equal(e->u.key_create.created_at, "2026-03-01T10:00:00Z");
    assert_string_equal(e->u.key_create.public_key_sha256,
                        "0000000000000000000000000000000000000000000000000000000000000abc");
    assert_string_equal(e->u.key_create.products.items[1], "gate");
    assert_null(kbr_effects_get(fx, 3));

    /* JSON and back: the same effects, the same text */
    assert_int_equal(kbr_effects_to_json(fx, &arr), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "type")),
                        "firmware.sign");
    assert_int_equal(json_array_size(json_object_get(json_array_get(arr, 1), "components")), 2);
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_OK);
    assert_int_equal(kbr_effects_to_json(back, &again), KBR_OK);
    assert_true(json_equal(arr, again));
    assert_string_equal(kbr_effects_get(back, 1)->u.firmware_sign.components[0].purl,
                        "pkg:deb/debian/openssl");
    assert_null(kbr_effects_get(back, 1)->u.firmware_sign.components[1].version);
    json_decref(again);
    kbr_effects_free(back);

    /* what JSON can get wrong beyond the rules: types of members, unknown types */
    json_array_append_new(arr, json_pack("{s:s,s:i,s:s}", "type", "key.retire", "name", 7, "at",
                                         "2026-03-01T10:00:00Z"));
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_ERR_INTERNAL);
    assert_null(back);
    json_array_remove(arr, 3);
    json_array_append_new(arr, json_pack("{s:s}", "type", "key.explode"));
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_ERR_INTERNAL);
    assert_int_equal(kbr_effects_from_json(json_object_get(arr, "x"), &back), KBR_ERR_INTERNAL);
    json_decref(arr);
    kbr_effects_free(fx);
    kbr_effects_free(NULL);
    assert_int_equal(kbr_effects_count(NULL), 0);
    assert_null(kbr_effect_type_name((kbr_effect_type)99));
}

/* Entries as brokers before the direct writer wrote them (tests/unit/data/entries.jsonl): one
 * for each kind of effect a broker makes, and a refusal about products. */
#define GOLDEN_ENTRIES 21

static char *dup_member(const json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));

    return s != NULL ? strdup(s) : NULL;
}

/*
 * The entry's text is written straight from the record (kbr_audit_entry_text), no longer
 * through a jansson tree and kbr_json_canonical.  Every entry an earlier broker wrote must
 * come out byte for byte the same from its parsed record: its effects always, the whole entry
 * where it names no document (whose bytes the fixture does not carry).
 */
static void test_entries_rewrite_byte_for_byte(void **state)
{
    char path[512], line[16384];
    FILE *f;
    int n = 0, whole = 0;

    (void)state;
    snprintf(path, sizeof(path), "%s/entries.jsonl", KBR_UNIT_DATA);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t stored_len = strcspn(line, "\n");
        json_t *e;
        kbr_audit_rec *r = calloc(1, sizeof(*r));
        kbr_jcs w = {0};
        char *text = NULL, *want = NULL;
        size_t len;

        line[stored_len] = '\0';
        e = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(e);
        assert_non_null(r);
        r->sub = dup_member(e, "sub");
        r->jti = dup_member(e, "jti");
        r->op = dup_member(e, "op");
        r->key = dup_member(e, "key");
        r->outcome = dup_member(e, "outcome");
        r->error_code = dup_member(e, "error_code");
        r->detail = json_incref(json_object_get(e, "detail"));
        r->products = json_incref(json_object_get(e, "products"));
        r->key_use = json_is_true(json_object_get(e, "key_use"));
        if (json_object_get(e, "effects") != NULL) {
            assert_int_equal(kbr_effects_from_json(json_object_get(e, "effects"), &r->effects),
                             KBR_OK);
            kbr_effects_write(r->effects, &w);
            assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_OK);
            assert_int_equal(kbr_json_canonical(json_object_get(e, "effects"), &want), KBR_OK);
            assert_string_equal(text, want);
            free(text);
            free(want);
        }
        if (json_object_get(e, "documents") == NULL) {
            assert_int_equal(kbr_audit_entry_text(
                                 r, json_integer_value(json_object_get(e, "seq")),
                                 json_string_value(json_object_get(e, "time")),
                                 json_string_value(json_object_get(e, "prev_hash")), &text, &len),
                             KBR_OK);
            assert_string_equal(text, line);
            assert_int_equal(len, stored_len);
            free(text);
            whole++;
        }
        kbr_audit_rec_free(r);
        json_decref(e);
        n++;
    }
    fclose(f);
    assert_int_equal(n, GOLDEN_ENTRIES);
    assert_true(whole >= GOLDEN_ENTRIES - 3);
}

/* The one kind no fixture entry carries (a recovery makes it): written, read back, the same. */
static void test_revoke_all_round_trip(void **state)
{
    kbr_effects *fx = NULL, *back = NULL;
    json_t *arr = NULL;
    kbr_jcs w = {0};
    char *text = NULL, *again = NULL;
    size_t len;

    (void)state;
    assert_int_equal(kbr_effects_new(&fx), KBR_OK);
    assert_int_equal(
        kbr_effects_add(fx,
                        &(kbr_effect){.type = KBR_EFFECT_TOKEN_REVOKE_ALL,
                                      .u.token_revoke_all = {.at = "2026-03-01T10:00:00Z",
                                                             .reason = "restored \"backup\"\n"}}),
        KBR_OK);
    kbr_effects_write(fx, &w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_OK);
    assert_string_equal(text, "[{\"at\":\"2026-03-01T10:00:00Z\",\"reason\":"
                              "\"restored \\\"backup\\\"\\n\",\"type\":\"token.revoke_all\"}]");
    assert_int_equal(kbr_effects_to_json(fx, &arr), KBR_OK);
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_OK);
    w = (kbr_jcs){0};
    kbr_effects_write(back, &w);
    assert_int_equal(kbr_jcs_finish(&w, &again, &len), KBR_OK);
    assert_string_equal(again, text);
    free(text);
    free(again);
    json_decref(arr);
    kbr_effects_free(back);
    kbr_effects_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_duplicate_key_rolls_back_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_effects, setup, teardown),
        cmocka_unit_test(test_effects_typed_and_json),
        cmocka_unit_test(test_entries_rewrite_byte_for_byte),
        cmocka_unit_test(test_revoke_all_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
