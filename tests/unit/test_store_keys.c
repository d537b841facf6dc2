/*
 * test_store_keys.c - the key registry (retirement, certificates), tokens, and the token
 * issuer's keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "kbr_store.h"
#include "store_fixture.h"

#define TOKEN_ISSUE(jti)                                                                           \
    "{\"type\": \"token.issue\", \"jti\": \"" jti "\", \"sub\": \"ci:x\", \"scope\": {},"          \
    " \"issued_at\": \"2026-03-01T10:00:00Z\", \"expires_at\": \"2036-03-01T11:00:00Z\","          \
    " \"cnf_x5t\": null}"

/* token.revoke_all revokes what is live, and a revocation made before keeps its reason. */
static void test_revoke_all(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *tokens = NULL;

    assert_int_equal(apply(st, "[" TOKEN_ISSUE("j1") ", " TOKEN_ISSUE("j2") "]", 1), KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"token.revoke\", \"jtis\": [\"j1\"],"
                           " \"at\": \"2026-03-02T00:00:00Z\", \"reason\": \"first\"}]",
                           2),
                     KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"token.revoke_all\", \"at\": \"2026-03-03T00:00:00Z\","
                           " \"reason\": \"recovered\"}, " TOKEN_ISSUE("j3") "]",
                           3),
                     KBR_OK);
    assert_int_equal(kbr_store_token_list(st, NULL, NULL, false, time(NULL), &tokens), KBR_OK);
    assert_int_equal(json_array_size(tokens), 3);
    for (size_t i = 0; i < 3; i++) {
        const json_t *t = json_array_get(tokens, i);
        const char *jti = json_string_value(json_object_get(t, "jti"));
        const char *reason = json_string_value(json_object_get(t, "revoke_reason"));
        if (strcmp(jti, "j1") == 0)
            assert_string_equal(reason, "first");
        else if (strcmp(jti, "j2") == 0)
            assert_string_equal(reason, "recovered");
        else /* issued after, in the same record */
            assert_null(reason);
    }
    json_decref(tokens);
    kbr_store_close(st);
}

static void test_key_retire(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *key = NULL, *keys = NULL;

    assert_int_equal(apply(st, KEY_A, 1), KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"key.retire\", \"name\": \"fw-a\","
                           " \"at\": \"2026-04-01T00:00:00Z\"}]",
                           2),
                     KBR_OK);
    /* A second retire keeps the first time; an unknown name conflicts with the registry. */
    assert_int_equal(apply(st,
                           "[{\"type\": \"key.retire\", \"name\": \"fw-a\","
                           " \"at\": \"2026-05-01T00:00:00Z\"}]",
                           3),
                     KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"key.retire\", \"name\": \"nope\","
                           " \"at\": \"2026-05-01T00:00:00Z\"}]",
                           4),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_key_get(st, "fw-a", &key), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(key, "state")), "retired");
    assert_string_equal(json_string_value(json_object_get(key, "retired_at")),
                        "2026-04-01T00:00:00Z");
    assert_int_equal(kbr_store_key_list(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 0), "name")),
                        "fw-a");
    json_decref(keys);
    json_decref(key);
    kbr_store_close(st);
}

static void assert_key_cert(kbr_store *st, const char *name, const char *tag)
{
    json_t *key = NULL;
    const json_t *cert;
    cert_ids ids;

    ids_of(tag, &ids);
    assert_int_equal(kbr_store_key_get(st, name, &key), KBR_OK);
    cert = json_object_get(key, "certificate");
    assert_true(json_is_object(cert));
    assert_string_equal(str_at(cert, "fingerprint"), ids.fingerprint);
    assert_string_equal(str_at(cert, "serial_number"), ids.serial);
    assert_string_equal(str_at(cert, "pem"), ids.pem);
    assert_string_equal(str_at(cert, "chain_pem"), "");
    assert_string_equal(str_at(cert, "not_after"), "2036-01-01T00:00:00Z");
    json_decref(key);
}

static void test_key_certificate(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *keys = NULL, *effect;
    cert_ids k1, k2;
    char sql[256], text[64];

    ids_of("k1", &k1);
    ids_of("k2", &k2);
    assert_int_equal(apply(st, KEY_A, 1), KBR_OK);
    assert_int_equal(apply_json(st, key_cert_effect("fw-a", "k1", "2026-03-05T00:00:00Z"), 2),
                     KBR_OK);
    assert_key_cert(st, "fw-a", "k1");

    /* The replacement arrives in upper-case hex: stored in the one lowercase spelling. */
    effect = key_cert_effect("fw-a", "k2", "2026-04-01T00:00:00.250Z");
    for (char *p = k2.fingerprint; *p != '\0'; p++)
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 'a' + 'A' : *p);
    json_object_set_new(json_array_get(effect, 0), "fingerprint", json_string(k2.fingerprint));
    assert_int_equal(apply_json(st, effect, 3), KBR_OK);
    assert_key_cert(st, "fw-a", "k2");
    assert_int_equal(kbr_store_key_list(st, &keys), KBR_OK);
    ids_of("k2", &k2);
    assert_string_equal(
        str_at(json_object_get(json_array_get(keys, 0), "certificate"), "fingerprint"),
        k2.fingerprint);
    json_decref(keys);

    /* The earlier certificate stays in the history, superseded when the new one came. */
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates WHERE key_name = 'fw-a'"
                                    " AND owner_kind = 'key'"),
                     2);
    snprintf(sql, sizeof(sql), "SELECT superseded_at FROM certificates WHERE fingerprint = '%s'",
             k1.fingerprint);
    query_text(f, sql, text, sizeof(text));
    assert_string_equal(text, "2026-04-01T00:00:00Z");

    assert_int_equal(apply_json(st, key_cert_effect("nope", "k3", "2026-04-02T00:00:00Z"), 4),
                     KBR_ERR_STORE_CONSTRAINT);
    /* The same certificate twice conflicts, and the failed record supersedes nothing. */
    assert_int_equal(apply_json(st, key_cert_effect("fw-a", "k2", "2026-05-01T00:00:00Z"), 5),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_key_cert(st, "fw-a", "k2");
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates"
                                    " WHERE superseded_at IS NULL"),
                     1);
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates"), 2);
    kbr_store_close(st);
}

/* token.issue of jti signed by kid (NULL: no kid). */
static json_t *issue_effect(const char *jti, const char *kid)
{
    json_t *fx = json_pack("[{s:s,s:s,s:s,s:{s:[s]},s:s,s:s,s:s,s:s?}]", "type", "token.issue",
                           "jti", jti, "sub", "ci:door", "scope", "ops", "sign", "issued_at",
                           "2026-05-01T10:00:00Z", "not_before", "2026-05-01T10:00:00Z",
                           "expires_at", "2026-05-02T10:00:00Z", "kid", kid);

    assert_non_null(fx);
    return fx;
}

/*
 * One issuer key is current; a rotation names the key it replaces, tokens name the key that
 * signed them and that is the current one, and the first key recorded is the kid of the
 * tokens recorded before keys were (an older broker's log had one).
 */
static void test_issuer_rotation(void **state)
{
    fixture *f = *state;
    EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256"), *k3 = EVP_EC_gen("P-256");
    json_t *keys = NULL;
    kbr_store *st = open_ok(f);

    /* no issuer key recorded yet: tokens carry no kid, and may not name one */
    assert_int_equal(apply_json(st, issue_effect("t-legacy", NULL), 1), KBR_OK);
    assert_int_equal(apply_json(st, issue_effect("t-early", KID_1), 2), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_issuer_keys(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), 0);
    json_decref(keys);
    /* the first key must replace nothing, and becomes the kid of what came before */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", k1, KID_3), 3),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", k1, NULL), 4), KBR_OK);
    assert_string_equal(token_kid(st, "t-legacy"), KID_1);
    /* from now on every token names the current key */
    assert_int_equal(apply_json(st, issue_effect("t-none", NULL), 5), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issue_effect("t-other", KID_2), 6), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issue_effect("t-a", KID_1), 7), KBR_OK);
    /* a rotation replaces the current key, and only it */
    assert_int_equal(apply_json(st, issuer_effect(KID_2, "kbr/issuer/2", k2, NULL), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_2, "kbr/issuer/2", k2, KID_3), 9),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_2, "kbr/issuer/2", k2, KID_1), 10), KBR_OK);
    /* a second rotation from the same key lost the race */
    assert_int_equal(apply_json(st, issuer_effect(KID_3, "kbr/issuer/3", k3, KID_1), 11),
                     KBR_ERR_STORE_CONSTRAINT);
    /* the replaced key signs no more tokens */
    assert_int_equal(apply_json(st, issue_effect("t-late", KID_1), 12), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issue_effect("t-b", KID_2), 13), KBR_OK);
    /* a kid, label or public key is an issuer key once */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer/3", k3, KID_2), 14),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_3, "kbr/issuer", k3, KID_2), 15),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_3, "kbr/issuer/3", k1, KID_2), 16),
                     KBR_ERR_STORE_CONSTRAINT);
    kbr_store_close(st);

    /* as recorded, after a reopen */
    st = open_ok(f);
    assert_string_equal(token_kid(st, "t-legacy"), KID_1);
    assert_string_equal(token_kid(st, "t-a"), KID_1);
    assert_string_equal(token_kid(st, "t-b"), KID_2);
    assert_string_equal(token_kid(st, "t-late"), "");
    assert_int_equal(kbr_store_issuer_keys(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), 2);
    assert_string_equal(str_at(json_array_get(keys, 0), "kid"), KID_1);
    assert_string_equal(str_at(json_array_get(keys, 0), "replaced_at"), "2026-05-01T10:00:00Z");
    assert_int_equal(int_at(json_array_get(keys, 0), "audit_seq"), 4);
    assert_string_equal(str_at(json_array_get(keys, 1), "kid"), KID_2);
    assert_string_equal(str_at(json_array_get(keys, 1), "hsm_label"), "kbr/issuer/2");
    assert_true(json_is_null(json_object_get(json_array_get(keys, 1), "replaced_at")));
    assert_int_equal(strlen(str_at(json_array_get(keys, 1), "public_key_sha256")), 64);
    assert_non_null(strstr(str_at(json_array_get(keys, 1), "public_key_pem"), "PUBLIC KEY"));
    json_decref(keys);
    kbr_store_close(st);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
}

/* What the rules of issuer.rotate refuse, as a malformed effect: nothing of it is kept. */
static void test_issuer_rotate_malformed(void **state)
{
    fixture *f = *state;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    json_t *fx;
    kbr_store *st = open_ok(f);
    json_t *keys = NULL;
    static const char *const labels[] = {"kbr/key/fw-a",   "kbr/issuer/", "kbr/issuerX",
                                         "kbr/issuer/a b", "fw-a",        "kbr/audit"};

    /* a kid is 43 base64url characters */
    assert_int_equal(apply_json(st,
                                issuer_effect("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                              "kbr/issuer", k, NULL),
                                1),
                     KBR_ERR_INTERNAL);
    assert_int_equal(apply_json(st,
                                issuer_effect("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+1",
                                              "kbr/issuer", k, NULL),
                                2),
                     KBR_ERR_INTERNAL);
    /* only the broker's issuer labels */
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (apply_json(st, issuer_effect(KID_1, labels[i], k, NULL), (int64_t)i + 3) !=
            KBR_ERR_INTERNAL)
            fail_msg("label %s was not refused", labels[i]);
    /* a key that replaces itself, and a PEM without a key */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", k, KID_1), 10),
                     KBR_ERR_INTERNAL);
    fx = issuer_effect(KID_1, "kbr/issuer", k, NULL);
    json_object_set_new(json_array_get(fx, 0), "public_key_pem", json_string("PEM"));
    assert_int_equal(apply_json(st, fx, 11), KBR_ERR_INTERNAL);
    fx = issuer_effect(KID_1, "kbr/issuer", k, NULL);
    json_object_del(json_array_get(fx, 0), "at");
    assert_int_equal(apply_json(st, fx, 12), KBR_ERR_INTERNAL);
    /* a token's kid has the same form */
    assert_int_equal(apply_json(st, issue_effect("t", "not-a-kid"), 13), KBR_ERR_INTERNAL);
    assert_int_equal(kbr_store_issuer_keys(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), 0);
    json_decref(keys);
    /* well formed, it is recorded */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", k, NULL), 14), KBR_OK);
    kbr_store_close(st);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_revoke_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_retire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issuer_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issuer_rotate_malformed, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
