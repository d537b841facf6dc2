/*
 * test_audit_tree.c - the signed audit tree against a real keybrokerd:
 * checkpoints signed by the HSM's audit key, inclusion proofs, and the
 * offline check of an export against a checkpoint, tampered or not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "harness.h"
#include "kbr_audit.h"

#define H KBR_MERKLE_HASH_LEN

static kbt_env *env;

static int setup(void **state)
{
    (void)state;
    env = kbt_start("checkpoint_every = 20 2s\n");
    return env != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    return 0;
}

static void unhex(const char *hex, unsigned char out[H])
{
    unsigned char *raw = NULL;
    size_t len = 0;

    assert_non_null(hex);
    assert_int_equal(kbr_hex_decode(hex, &raw, &len), KBR_OK);
    assert_int_equal(len, H);
    memcpy(out, raw, H);
    free(raw);
}

/* The checkpoint once the daemon made one covering at least min_size entries. */
static json_t *wait_checkpoint(json_int_t min_size)
{
    for (int i = 0; i < 100; i++) {
        kbt_resp r = kbt_call(env, "GET", "/v1/audit/checkpoint", env->admin, NULL);
        if (r.status == 200 && json_integer_value(json_object_get(r.json, "size")) >= min_size) {
            json_t *cp = json_incref(r.json);
            kbt_resp_free(&r);
            return cp;
        }
        assert_true(r.status == 200 || r.status == 404);
        kbt_resp_free(&r);
        usleep(100 * 1000);
    }
    fail_msg("no checkpoint of %lld entries within 10 s", (long long)min_size);
    return NULL;
}

static void make_calls(int n)
{
    for (int i = 0; i < n; i++) {
        kbt_resp r = kbt_call(env, "GET", "/v1/keys", env->admin, NULL);
        assert_int_equal(r.status, 200);
        kbt_resp_free(&r);
    }
}

static unsigned char *leaves_of(const json_t *entries, size_t n)
{
    unsigned char *leaves = malloc(n * H + 1);

    assert_non_null(leaves);
    assert_true(json_array_size(entries) >= n);
    for (size_t i = 0; i < n; i++)
        unhex(json_string_value(json_object_get(json_array_get(entries, i), "hash")),
              leaves + i * H);
    return leaves;
}

/* Ed25519 over the canonical {"root_hash","size","time"}, nothing hashed first. */
static void assert_signed(const json_t *cp)
{
    unsigned char *sig = NULL;
    size_t siglen = 0;
    char *head = NULL;
    kbr_msg msg = {{0}};
    EVP_PKEY *pub = kbt_pem_to_pkey(json_string_value(json_object_get(cp, "public_key_pem")));

    assert_non_null(pub);
    assert_true(EVP_PKEY_is_a(pub, "ED25519"));
    assert_int_equal(kbr_audit_head_message(cp, &head, &msg), KBR_OK);
    assert_int_equal(
        kbr_b64_decode(json_string_value(json_object_get(cp, "signature_b64")), &sig, &siglen),
        KBR_OK);
    assert_int_equal(siglen, 64);
    assert_true(kbt_verify(pub, "raw", NULL, (unsigned char *)head, strlen(head), sig, siglen));
    head[1] ^= 1;
    assert_false(kbt_verify(pub, "raw", NULL, (unsigned char *)head, strlen(head), sig, siglen));
    free(head);
    free(sig);
    EVP_PKEY_free(pub);
}

static void assert_proof(long long seq, long long size, const char *root_hex, const json_t *entries)
{
    char path[96];
    kbt_resp r;
    const json_t *ap, *h;
    unsigned char leaf[H], root[H], *hashes;
    size_t i, n;

    snprintf(path, sizeof(path), "/v1/audit/proof?seq=%lld&size=%lld", seq, size);
    r = kbt_call(env, "GET", path, env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "seq")), seq);
    assert_int_equal(json_integer_value(json_object_get(r.json, "size")), size);
    assert_string_equal(
        json_string_value(json_object_get(r.json, "leaf_hash")),
        json_string_value(json_object_get(json_array_get(entries, (size_t)seq - 1), "hash")));
    assert_string_equal(json_string_value(json_object_get(r.json, "root_hash")), root_hex);
    ap = json_object_get(r.json, "audit_path");
    n = json_array_size(ap);
    hashes = malloc(n * H + 1);
    assert_non_null(hashes);
    json_array_foreach(ap, i, h)
    {
        unhex(json_string_value(h), hashes + i * H);
    }
    unhex(json_string_value(json_object_get(r.json, "leaf_hash")), leaf);
    unhex(root_hex, root);
    assert_int_equal(kbr_merkle_verify(leaf, (uint64_t)seq - 1, (uint64_t)size, hashes, n, root),
                     KBR_OK);
    free(hashes);
    kbt_resp_free(&r);
}

static void assert_status(const char *path, long status)
{
    kbt_resp r = kbt_call(env, "GET", path, env->admin, NULL);

    assert_int_equal(r.status, status);
    kbt_resp_free(&r);
}

static void test_checkpoint_and_proofs(void **state)
{
    json_t *cp, *entries, *e;
    json_int_t size;
    unsigned char *leaves, root[H];
    char hex[2 * H + 1], path[96];
    bool recorded = false;
    size_t i;

    (void)state;
    make_calls(25);
    cp = wait_checkpoint(20);
    size = json_integer_value(json_object_get(cp, "size"));
    assert_signed(cp);
    entries = kbt_audit_all(env);
    leaves = leaves_of(entries, (size_t)size);
    assert_int_equal(kbr_merkle_root(leaves, (uint64_t)size, root), KBR_OK);
    kbr_hex_encode_buf(root, H, hex);
    assert_string_equal(hex, json_string_value(json_object_get(cp, "root_hash")));
    /* the checkpoint is itself an entry of the log */
    json_array_foreach(entries, i, e)
    {
        const json_t *d = json_object_get(e, "detail");
        if (strcmp(json_string_value(json_object_get(e, "op")), "audit.checkpoint") == 0 &&
            json_integer_value(json_object_get(d, "size")) == size)
            recorded =
                json_equal(json_object_get(d, "root_hash"), json_object_get(cp, "root_hash"));
    }
    assert_true(recorded);

    for (long long seq = 1; seq <= size; seq += 3)
        assert_proof(seq, size, hex, entries);
    assert_proof(size, size, hex, entries);
    assert_int_equal(kbr_merkle_root(leaves, 7, root), KBR_OK);
    kbr_hex_encode_buf(root, H, hex);
    assert_proof(5, 7, hex, entries);

    /* size defaults to the latest checkpoint's */
    snprintf(path, sizeof(path), "/v1/audit/proof?seq=%lld", (long long)size);
    assert_status(path, 200);
    snprintf(path, sizeof(path), "/v1/audit/proof?seq=%lld&size=%lld", (long long)size + 1,
             (long long)size);
    assert_status(path, 400);
    assert_status("/v1/audit/proof?seq=1&size=100000000", 400);
    assert_status("/v1/audit/proof?seq=0&size=5", 400);
    assert_status("/v1/audit/proof?size=5", 400);
    free(leaves);
    json_decref(entries);
    json_decref(cp);
}

/* ---- offline verification ---- */

static void write_text(const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void write_json(const char *name, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);

    assert_non_null(text);
    write_text(name, text);
    free(text);
}

static json_t *read_lines(const char *name)
{
    char path[512], *line = NULL;
    size_t cap = 0;
    FILE *f;
    json_t *arr = json_array();

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    f = fopen(path, "r");
    assert_non_null(f);
    while (getline(&line, &cap, f) != -1) {
        json_t *e = json_loads(line, 0, NULL);
        assert_non_null(e);
        json_array_append_new(arr, e);
    }
    free(line);
    fclose(f);
    return arr;
}

static void write_lines(const char *name, const json_t *entries)
{
    char path[512];
    size_t i;
    const json_t *e;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    json_array_foreach(entries, i, e)
    {
        assert_int_equal(json_dumpf(e, f, JSON_COMPACT), 0);
        fputc('\n', f);
    }
    assert_int_equal(fclose(f), 0);
}

static bool cli_has_verify(void)
{
    char *out = NULL, cmd[400];
    bool has;

    snprintf(cmd, sizeof(cmd), "'%s/keybroker' help 2>&1", env->bin_dir);
    (void)kbt_sh(env, cmd, &out);
    has = strstr(out, "audit verify") != NULL;
    free(out);
    return has;
}

/* Exit status of `keybroker audit verify` (or the same check in-process when this build's CLI
 * does not have the command); *why is its message. */
static int verify(const char *log, const char *cp, const char *pem, char **why)
{
    char cmd[600];
    json_t *entries, *checkpoint;
    FILE *f;
    EVP_PKEY *key;
    kbr_msg msg = {{0}};
    char path[512];
    kbr_err err;

    if (cli_has_verify()) {
        snprintf(cmd, sizeof(cmd),
                 "'%s/keybroker' audit verify %s --checkpoint %s --pubkey %s 2>&1", env->bin_dir,
                 log, cp, pem);
        return kbt_sh(env, cmd, why);
    }
    entries = read_lines(log);
    snprintf(path, sizeof(path), "%s/%s", env->dir, cp);
    checkpoint = json_load_file(path, 0, NULL);
    snprintf(path, sizeof(path), "%s/%s", env->dir, pem);
    f = fopen(path, "r");
    assert_non_null(f);
    key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(key);
    err = kbr_audit_verify_checkpoint(entries, checkpoint, key, &msg);
    *why = strdup(msg.text);
    EVP_PKEY_free(key);
    json_decref(checkpoint);
    json_decref(entries);
    return err == KBR_OK ? 0 : 1;
}

static void assert_verify(const char *log, const char *cp, const char *pem, int rc,
                          const char *want)
{
    char *why = NULL;
    int got = verify(log, cp, pem, &why);

    if (got != rc || strstr(why, want) == NULL)
        fail_msg("verify %s %s %s: exit %d, \"%s\"; want exit %d naming \"%s\"", log, cp, pem, got,
                 why, rc, want);
    free(why);
}

/* A checkpoint over the same head signed by a key that is not the broker's. */
static json_t *forge(const json_t *cp)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char raw[64];
    size_t len = sizeof(raw);
    kbr_msg msg = {{0}};
    char *b64 = NULL, *head = NULL;
    json_t *forged = json_deep_copy(cp);

    assert_int_equal(kbr_audit_head_message(cp, &head, &msg), KBR_OK);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, raw, &len, (const unsigned char *)head, strlen(head)), 1);
    assert_int_equal(kbr_b64_encode(raw, sizeof(raw), &b64), KBR_OK);
    json_object_set_new(forged, "signature_b64", json_string(b64));
    free(b64);
    free(head);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    return forged;
}

/*
 * What a forger with write access to the export would do after moving or adding
 * entries: renumber and re-chain everything from index `from`, so that the hash
 * chain alone holds again.  Only the signed tree head can tell.
 */
static void rechain(json_t *entries, size_t from)
{
    char hash[65];

    for (size_t i = from; i < json_array_size(entries); i++) {
        json_t *e = json_array_get(entries, i);
        json_object_set_new(e, "seq", json_integer((json_int_t)i + 1));
        json_object_set(e, "prev_hash", json_object_get(json_array_get(entries, i - 1), "hash"));
        json_object_del(e, "hash");
        assert_int_equal(kbr_audit_entry_hash(e, hash), KBR_OK);
        json_object_set_new(e, "hash", json_string(hash));
    }
}

/* The index of the first entry after i that records something else than entry i. */
static size_t differs_from(const json_t *entries, size_t i)
{
    const char *op = json_string_value(json_object_get(json_array_get(entries, i), "op"));

    for (size_t j = i + 1; j < json_array_size(entries); j++)
        if (strcmp(json_string_value(json_object_get(json_array_get(entries, j), "op")), op) != 0)
            return j;
    fail_msg("no entry after %zu records another op than %s", i, op);
    return 0;
}

static void test_offline_verify(void **state)
{
    size_t swap_at;
    json_t *cp, *entries, *bad;
    char cmd[600];

    (void)state;
    make_calls(22);
    cp = wait_checkpoint(45);
    write_json("cp.json", cp);
    write_text("audit.pem", json_string_value(json_object_get(cp, "public_key_pem")));
    snprintf(cmd, sizeof(cmd),
             "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' audit export > log.jsonl",
             env->url, env->admin, env->bin_dir);
    assert_int_equal(kbt_sh(env, cmd, NULL), 0);
    assert_verify("log.jsonl", "cp.json", "audit.pem", 0, "");

    entries = read_lines("log.jsonl");
    bad = json_deep_copy(entries);
    json_object_set_new(json_object_get(json_array_get(bad, 9), "detail"), "path",
                        json_string("/v1/keys?rewritten"));
    write_lines("rewritten.jsonl", bad);
    assert_verify("rewritten.jsonl", "cp.json", "audit.pem", 1, "entry 10");
    json_decref(bad);

    bad = json_deep_copy(entries);
    json_array_remove(bad, 11);
    write_lines("deleted.jsonl", bad);
    assert_verify("deleted.jsonl", "cp.json", "audit.pem", 1, "entry 12");
    json_decref(bad);

    /* two different entries swapped: their seq and prev_hash no longer chain */
    bad = json_deep_copy(entries);
    swap_at = differs_from(bad, 3);
    json_array_insert(bad, 3, json_array_get(bad, swap_at));
    json_array_insert(bad, swap_at + 1, json_array_get(bad, 4));
    json_array_remove(bad, 4);
    json_array_remove(bad, swap_at + 1);
    assert_true(json_equal(json_array_get(bad, 3), json_array_get(entries, swap_at)));
    assert_true(json_equal(json_array_get(bad, swap_at), json_array_get(entries, 3)));
    write_lines("reordered.jsonl", bad);
    assert_verify("reordered.jsonl", "cp.json", "audit.pem", 1, "entry 4");
    /* swapped and re-chained: the chain holds, the signed root does not */
    rechain(bad, 3);
    write_lines("reordered-rechained.jsonl", bad);
    assert_verify("reordered-rechained.jsonl", "cp.json", "audit.pem", 1, "root mismatch");
    json_decref(bad);

    /* an entry inserted, alone and then with the chain rebuilt after it */
    bad = json_deep_copy(entries);
    json_array_insert_new(bad, 6, json_deep_copy(json_array_get(bad, 5)));
    json_object_set_new(json_object_get(json_array_get(bad, 6), "detail"), "path",
                        json_string("/v1/keys?inserted"));
    write_lines("inserted.jsonl", bad);
    assert_verify("inserted.jsonl", "cp.json", "audit.pem", 1, "entry 7");
    rechain(bad, 6);
    write_lines("inserted-rechained.jsonl", bad);
    assert_verify("inserted-rechained.jsonl", "cp.json", "audit.pem", 1, "root mismatch");
    json_decref(bad);

    bad = json_deep_copy(entries);
    while (json_array_size(bad) > 30)
        json_array_remove(bad, 30);
    write_lines("short.jsonl", bad);
    assert_verify("short.jsonl", "cp.json", "audit.pem", 1, "missing entries");
    json_decref(bad);

    bad = json_deep_copy(cp);
    json_object_set_new(bad, "root_hash",
                        json_object_get(json_array_get(entries, 0), "hash") != NULL
                            ? json_incref(json_object_get(json_array_get(entries, 0), "hash"))
                            : json_null());
    write_json("root.json", bad);
    assert_verify("log.jsonl", "root.json", "audit.pem", 1, "root mismatch");
    json_decref(bad);

    bad = forge(cp);
    write_json("forged.json", bad);
    assert_verify("log.jsonl", "forged.json", "audit.pem", 1, "bad signature");
    json_decref(bad);

    json_decref(entries);
    json_decref(cp);
}

/* At start the broker checks the latest checkpoint and the entries after it. */
static void test_start_refuses_rewritten_store(void **state)
{
    char *out = NULL;
    int rc;

    if (kbt_pg())
        skip(); /* rewrites a copy of the SQLite file; test_pg.c rewrites PostgreSQL */

    (void)state;
    kbt_stop(env);
    /* a checkpoint whose signed root no longer matches the stored tree */
    assert_int_equal(kbt_sh(env,
                            "cp keybroker.db pristine.db && sqlite3 keybroker.db \"UPDATE "
                            "checkpoints SET root_hash = CASE WHEN root_hash LIKE '00%' THEN 'ff' "
                            "ELSE '00' END || substr(root_hash, 3) WHERE size = "
                            "(SELECT max(size) FROM checkpoints)\"",
                            NULL),
                     0);
    rc = kbt_run_daemon(env, "-c keybroker.conf", &out);
    if (rc != 1 || strstr(out, "checkpoint") == NULL)
        fail_msg("expected a refusal naming the checkpoint, got %d: %s", rc, out);
    free(out);
    /* an entry after the last checkpoint rewritten in place */
    assert_int_equal(
        kbt_sh(env,
               "cp pristine.db keybroker.db && rm -f keybroker.db-wal keybroker.db-shm "
               "&& sqlite3 keybroker.db \"UPDATE audit SET entry = replace(entry, "
               "'\\\"ok\\\"', '\\\"OK\\\"') WHERE seq = (SELECT max(seq) FROM audit)\"",
               NULL),
        0);
    rc = kbt_run_daemon(env, "-c keybroker.conf", &out);
    if (rc != 1 || strstr(out, "entry") == NULL)
        fail_msg("expected a refusal naming the entry, got %d: %s", rc, out);
    free(out);
    /* the untouched store starts */
    assert_int_equal(kbt_sh(env,
                            "cp pristine.db keybroker.db && rm -f keybroker.db-wal "
                            "keybroker.db-shm",
                            NULL),
                     0);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_and_proofs),
        cmocka_unit_test(test_offline_verify),
        cmocka_unit_test(test_start_refuses_rewritten_store),
    };

    return cmocka_run_group_tests_name("signed audit tree", tests, setup, teardown);
}
