/*
 * test_arecord.c - the audit record in the HSM and the check the HSM process makes of every
 * write of it (broker/daemon/arecord.c, compiled in here), with a real SoftHSM2 token and a
 * real store: heads signed by the broker's code pass; a rewound or repeated serial, a head
 * that does not extend the recorded one, a key the record does not hand on (a skipped link),
 * a forged rotation, a label that is not an audit key's and a record that does not read are
 * refused, and of two records an interrupted write left the latest is taken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>

#include "../../broker/daemon/hsmproc.h"
#include "../../broker/daemon/kbd.h"
#include "softhsm_token.h"
#include "tmpdir.h"

#define ORIGIN "broker.example/unit"

typedef struct {
    kbt_store_dir dir;
    kbr_hsm *hsm;
    kbr_hsm_session *s;
    kbr_store *st;
    kbr_audit *audit;
} fixture;

static fixture fx;

static void append(int n)
{
    for (int i = 0; i < n; i++) {
        kbr_audit_rec *rec = NULL;
        assert_int_equal(kbr_audit_rec_new("ci:x", NULL, "sign", NULL, &rec), KBR_OK);
        assert_int_equal(kbr_audit_append_sync(fx.audit, rec), KBR_OK);
        kbr_audit_rec_free(rec);
    }
}

static int setup(void **state)
{
    void *dir = NULL;
    kbr_secret *pin = NULL;
    kbr_msg msg = {{0}};
    kbr_hsm_key_info info;
    static const char *const labels[] = {"kbr/audit", "kbr/audit/2", "kbr/audit/3", "kbr/key/x"};

    (void)state;
    if (kbt_store_dir_setup(&dir, "kbr-arecord", "audit.db") != 0)
        return -1;
    fx.dir = *(kbt_store_dir *)dir;
    free(dir);
    if (kbr_secret_new(KBT_USER_PIN, strlen(KBT_USER_PIN), &pin) != KBR_OK ||
        kbr_hsm_open(kbt_module_path, KBT_TOKEN_LABEL, pin, &fx.hsm, &msg) != KBR_OK ||
        kbr_hsm_session_open(fx.hsm, &fx.s) != KBR_OK)
        return -1;
    kbr_secret_free(pin);
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (kbr_hsm_generate(fx.s, labels[i], KBR_ALG_ED25519, &info) != KBR_OK)
            return -1;
    if (kbr_store_open(fx.dir.url, &fx.st, &msg) != KBR_OK ||
        kbr_audit_start(fx.dir.url, 0, &fx.audit, &msg) != KBR_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbr_audit_stop(fx.audit);
    kbr_store_close(fx.st);
    kbr_hsm_session_close(fx.s);
    kbr_hsm_close(fx.hsm);
    kbt_rmtree(fx.dir.dir);
    return 0;
}

/* A head of the log as it stands, signed and recorded by the broker's code; the record read
 * back (new ref). */
static json_t *sign_head(const json_t *after, const char *next_label)
{
    json_t *effect = NULL, *rec = NULL;
    kbr_msg msg = {{0}};

    if (kbd_head_sign_and_record(fx.s, fx.st, &(kbd_head_spec){ORIGIN, after, next_label, false},
                                 &effect, &msg) != KBR_OK)
        fail_msg("sign: %s", msg.text);
    assert_int_equal(kbd_record_read(fx.s, &rec, &msg), KBR_OK);
    assert_true(json_equal(json_object_get(rec, "signature_b64"),
                           json_object_get(effect, "signature_b64")));
    json_decref(effect);
    return rec;
}

static char *value_of(const json_t *rec)
{
    char *v = NULL;

    assert_int_equal(kbr_json_canonical(rec, &v), KBR_OK);
    return v;
}

/* The consistency proof between two records' sizes, from the store. */
static void proof_between(const json_t *a, const json_t *b, unsigned char **p, size_t *len)
{
    int64_t m = json_integer_value(json_object_get(a, "size"));
    int64_t n = json_integer_value(json_object_get(b, "size"));

    assert_int_equal(kbr_store_merkle_consistency(fx.st, m, n, p, len), KBR_OK);
    *len *= KBR_MERKLE_HASH_LEN;
}

static kbr_msg why;

/* kbd_record_verdict of writing nw after the records olds (NULL-terminated); why says why. */
static kbr_err check(const json_t *const *olds, const json_t *nw, const unsigned char *proof,
                     size_t prooflen)
{
    kbr_hsm_data items[4] = {{NULL, 0}};
    size_t n = 0;
    char *value = value_of(nw);
    kbr_err err;

    for (; olds != NULL && olds[n] != NULL; n++) {
        items[n].value = (unsigned char *)value_of(olds[n]);
        items[n].len = strlen((char *)items[n].value);
    }
    memset(&why, 0, sizeof(why));
    err = kbd_record_verdict(fx.s, items, n, (unsigned char *)value, strlen(value), proof, prooflen,
                             &why);
    for (size_t i = 0; i < n; i++)
        free(items[i].value);
    free(value);
    return err;
}

static void test_genuine_writes_pass(void **state)
{
    json_t *r1, *r2, *rot, *r3;
    unsigned char *p = NULL;
    size_t len = 0;

    (void)state;
    append(5);
    r1 = sign_head(NULL, NULL);
    assert_int_equal(json_integer_value(json_object_get(r1, "serial")), 1);
    assert_int_equal(check(NULL, r1, NULL, 0), KBR_OK);
    append(3);
    r2 = sign_head(r1, NULL);
    proof_between(r1, r2, &p, &len);
    assert_int_equal(check((const json_t *[]){r1, NULL}, r2, p, len), KBR_OK);
    free(p);
    /* a rotation at the same size, then the new key's head */
    rot = sign_head(r2, "kbr/audit/2");
    assert_int_equal(check((const json_t *[]){r2, NULL}, rot, NULL, 0), KBR_OK);
    append(2);
    r3 = sign_head(rot, NULL);
    assert_string_equal(json_string_value(json_object_get(r3, "key_label")), "kbr/audit/2");
    proof_between(rot, r3, &p, &len);
    assert_int_equal(check((const json_t *[]){rot, NULL}, r3, p, len), KBR_OK);
    /* two records an interrupted write left: the latest (by serial) is what r3 must extend */
    assert_int_equal(check((const json_t *[]){r2, rot, NULL}, r3, p, len), KBR_OK);
    assert_int_equal(check((const json_t *[]){rot, r2, NULL}, r3, p, len), KBR_OK);
    free(p);
    json_decref(r1);
    json_decref(r2);
    json_decref(rot);
    json_decref(r3);
}

static void refused(kbr_err err, kbr_err want, const char *reason)
{
    if (err != want || strstr(why.text, reason) == NULL)
        fail_msg("check: %d \"%s\"; want %d naming \"%s\"", err, why.text, want, reason);
}

static void test_refused_writes(void **state)
{
    json_t *r1, *r2, *bad, *rot, *fake;
    unsigned char *p = NULL, *p2 = NULL;
    size_t len = 0, len2 = 0;
    kbr_hsm_data garbage = {(unsigned char *)"{\"serial\": 9", 12};
    char *value;

    (void)state;
    append(4);
    r1 = sign_head(NULL, NULL);
    append(4);
    r2 = sign_head(r1, NULL);
    proof_between(r1, r2, &p, &len);
    /* backwards, sideways, without the proof, with a wrong proof */
    refused(check((const json_t *[]){r2, NULL}, r1, NULL, 0), KBR_ERR_CONFLICT, "serial");
    refused(check((const json_t *[]){r1, NULL}, r2, NULL, 0), KBR_ERR_CONFLICT,
            "not an extension of the recorded one");
    p[0] ^= 1;
    refused(check((const json_t *[]){r1, NULL}, r2, p, len), KBR_ERR_CONFLICT,
            "not an extension of the recorded one");
    p[0] ^= 1;
    refused(check((const json_t *[]){r1, NULL}, r2, p, len - 1), KBR_ERR_BAD_REQUEST,
            "not whole hashes");
    assert_int_equal(check((const json_t *[]){r1, NULL}, r2, p, len), KBR_OK);
    /* a serial that skips */
    bad = json_deep_copy(r2);
    json_object_set_new(bad, "serial",
                        json_integer(json_integer_value(json_object_get(r1, "serial")) + 2));
    refused(check((const json_t *[]){r1, NULL}, bad, p, len), KBR_ERR_CONFLICT,
            "not the next serial");
    json_decref(bad);
    /* a skipped link: signed by kbr/audit/2, which no rotation named */
    fake = json_deep_copy(r1);
    json_object_set_new(fake, "key_label", json_string("kbr/audit/2"));
    bad = sign_head(fake, NULL);
    json_decref(fake);
    assert_string_equal(json_string_value(json_object_get(bad, "key_label")), "kbr/audit/2");
    refused(check((const json_t *[]){r1, NULL}, bad, p, len), KBR_ERR_CONFLICT,
            "signed by kbr/audit/2, not by the key the recorded head hands on (kbr/audit)");
    json_decref(bad);
    /* forged rotations: the next key's label swapped; its label and public key swapped */
    rot = sign_head(r1, "kbr/audit/2");
    proof_between(r1, rot, &p2, &len2);
    assert_int_equal(check((const json_t *[]){r1, NULL}, rot, p2, len2), KBR_OK);
    bad = json_deep_copy(rot);
    json_object_set_new(bad, "next_key_label", json_string("kbr/audit/3"));
    refused(check((const json_t *[]){r1, NULL}, bad, p2, len2), KBR_ERR_CONFLICT,
            "audit key kbr/audit/3: not the public key the checkpoint names");
    json_decref(bad);
    {
        char *pem3 = NULL;
        assert_int_equal(kbr_hsm_public_key_pem(fx.s, "kbr/audit/3", &pem3), KBR_OK);
        bad = json_deep_copy(rot);
        json_object_set_new(bad, "next_key_pem", json_string(pem3));
        json_object_set_new(bad, "next_key_label", json_string("kbr/audit/3"));
        refused(check((const json_t *[]){r1, NULL}, bad, p2, len2), KBR_ERR_CONFLICT, "key ID");
        json_decref(bad);
        free(pem3);
    }
    /* the old key after a rotation handed on */
    free(p);
    p = NULL;
    append(1);
    bad = sign_head(r1, NULL);
    json_object_set_new(bad, "serial", json_integer(3));
    proof_between(rot, bad, &p, &len);
    refused(check((const json_t *[]){rot, NULL}, bad, p, len), KBR_ERR_CONFLICT,
            "signed by kbr/audit, not by the key the recorded head hands on (kbr/audit/2)");
    json_decref(bad);
    /* a label that is not an audit key's: refused as it is read */
    bad = json_deep_copy(r1);
    json_object_set_new(bad, "key_label", json_string("kbr/key/x"));
    refused(check(NULL, bad, NULL, 0), KBR_ERR_BAD_REQUEST, "not an audit key's label");
    json_decref(bad);
    /* a record that does not read, now or among the old ones; members repeated */
    value = value_of(r2);
    assert_int_equal(
        kbd_record_check(NULL, fx.s, &garbage, 1, (unsigned char *)value, strlen(value), NULL, 0),
        KBR_ERR_HSM_KEY);
    free(value);
    value = strdup("{\"serial\":1,\"serial\":2}");
    assert_int_equal(
        kbd_record_check(NULL, fx.s, NULL, 0, (unsigned char *)value, strlen(value), NULL, 0),
        KBR_ERR_BAD_REQUEST);
    free(value);
    free(p2);
    free(p);
    json_decref(rot);
    json_decref(r1);
    json_decref(r2);
}

/* The store against the record: shorter or another history is a rollback, named. */
static void test_rollback_named(void **state)
{
    json_t *r, *bad;
    kbr_msg msg = {{0}};

    (void)state;
    append(2);
    r = sign_head(NULL, NULL);
    assert_int_equal(kbd_record_vs_store(fx.st, r, &msg), KBR_OK);
    bad = json_deep_copy(r);
    json_object_set_new(bad, "size", json_integer(100000));
    assert_int_equal(kbd_record_vs_store(fx.st, bad, &msg), KBR_ERR_CONFLICT);
    assert_non_null(strstr(msg.text, "rollback"));
    json_object_set(bad, "size", json_object_get(r, "size"));
    json_object_set_new(bad, "root_hash",
                        json_string("00000000000000000000000000000000"
                                    "00000000000000000000000000000000"));
    assert_int_equal(kbd_record_vs_store(fx.st, bad, &msg), KBR_ERR_CONFLICT);
    assert_non_null(strstr(msg.text, "rollback: the store's first"));
    json_decref(bad);
    json_decref(r);
}

/*
 * The checkpoint's audit entry goes to the writer's thread while the worker frees the signed
 * head it came from: the entry holds values of its own, equal to the head's, none of them the
 * head's own objects (jansson's reference counts would not order the writer's reads before the
 * worker's free).
 */
static void test_entry_owns_its_values(void **state)
{
    static const char *const names[] = {"size", "root_hash", "time", "signature_b64", "key_id"};
    kbr_audit_rec *entry = NULL;
    json_t *r;

    (void)state;
    append(1);
    r = sign_head(NULL, NULL);
    assert_int_equal(kbd_record_entry(r, "audit.checkpoint", &entry), KBR_OK);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const json_t *mine = json_object_get(entry->detail, names[i]);

        if (mine == NULL)
            fail_msg("the entry has no %s", names[i]);
        assert_true(json_equal(mine, json_object_get(r, names[i])));
        assert_ptr_not_equal(mine, json_object_get(r, names[i]));
        assert_int_equal(mine->refcount, 1);
    }
    json_decref(r);
    /* what the writer reads is still there, and whole */
    assert_non_null(json_string_value(json_object_get(entry->detail, "time")));
    kbr_audit_rec_free(entry);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_genuine_writes_pass),
        cmocka_unit_test(test_refused_writes),
        cmocka_unit_test(test_rollback_named),
        cmocka_unit_test(test_entry_owns_its_values),
    };
    int failed;

    if (dlopen(kbt_module_path, RTLD_NOW | RTLD_NODELETE) == NULL) {
        fprintf(stderr, "cannot load %s\n", kbt_module_path);
        return 1;
    }
    if (kbt_token_create("kbr-arecord") != 0) {
        kbt_token_destroy();
        return 1;
    }
    failed = cmocka_run_group_tests_name("arecord", tests, setup, teardown);
    kbt_token_destroy();
    return failed;
}
