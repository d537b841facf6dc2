/*
 * test_tlog.c - the audit log as a transparency log, against a real keybrokerd: checkpoints
 * served as C2SP signed notes and verified with the openssl binary alone, consistency proofs
 * checked against the entries, rollback of a restored store refused at start and accepted by
 * --recover with the lost range recorded and every older token refused, audit key rotation
 * followed by `keybroker audit verify` from the first key, an old ECDSA audit key named, the
 * crash window between the HSM's record and the entry, and malformed evidence refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "harness.h"
#include "kbr_audit.h"
#include "kbr_hsm.h"

#define H      KBR_MERKLE_HASH_LEN
#define ORIGIN "broker.example/kb-test"

static void calls(kbt_env *e, int n)
{
    for (int i = 0; i < n; i++) {
        kbt_resp r = kbt_call(e, "GET", "/v1/keys", e->admin, NULL);
        assert_int_equal(r.status, 200);
        kbt_resp_free(&r);
    }
}

/* The served checkpoint once one covers at least min_size entries (and, with pem, is signed by
 * that key). */
static json_t *wait_cp(kbt_env *e, json_int_t min_size, const char *pem)
{
    for (int i = 0; i < 150; i++) {
        kbt_resp r = kbt_call(e, "GET", "/v1/audit/checkpoint", e->admin, NULL);
        if (r.status == 200 && json_integer_value(json_object_get(r.json, "size")) >= min_size &&
            (pem == NULL ||
             strcmp(json_string_value(json_object_get(r.json, "public_key_pem")), pem) == 0)) {
            json_t *cp = json_incref(r.json);
            kbt_resp_free(&r);
            return cp;
        }
        assert_true(r.status == 200 || r.status == 404);
        kbt_resp_free(&r);
        usleep(100 * 1000);
    }
    fail_msg("no checkpoint of %lld entries within 15 s", (long long)min_size);
    return NULL;
}

static void write_text(kbt_env *e, const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", e->dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void write_json(kbt_env *e, const char *name, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);

    write_text(e, name, text);
    free(text);
}

/* A shell command in the deployment directory: its exit status, output into *out. */
static int shf(kbt_env *e, char **out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int shf(kbt_env *e, char **out, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    assert_true(vasprintf(&cmd, fmt, ap) > 0);
    va_end(ap);
    rc = kbt_sh(e, cmd, out);
    free(cmd);
    return rc;
}

static void export_log(kbt_env *e, const char *name)
{
    assert_int_equal(shf(e, NULL,
                         "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' audit export > %s",
                         e->url, e->admin, e->bin_dir, name),
                     0);
}

static int cli_verify(kbt_env *e, const char *log, const char *cp, const char *pem, char **out)
{
    return shf(e, out, "'%s/keybroker' audit verify %s --checkpoint %s --pubkey %s 2>&1",
               e->bin_dir, log, cp, pem);
}

static void assert_verify(kbt_env *e, const char *log, const char *cp, const char *pem, int rc,
                          const char *want)
{
    char *out = NULL;
    int got = cli_verify(e, log, cp, pem, &out);

    if (got != rc || strstr(out, want) == NULL)
        fail_msg("audit verify %s %s %s: exit %d, \"%s\"; want %d naming \"%s\"", log, cp, pem, got,
                 out, rc, want);
    free(out);
}

static const char *str_of(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* A start that must be refused: a daemon that serves instead is stopped after 20 s (exit 124). */
static int start_refused(kbt_env *e, char **out)
{
    return shf(e, out, "timeout 20 '%s/keybrokerd' -c keybroker.conf 2>&1", e->bin_dir);
}

/* ---- the signed note, and openssl alone ---- */

/*
 * What docs/api.md tells an authority to run, with the broker's own files as input: the JSON
 * head rebuilt with jq and verified with `openssl pkeyutl -verify -rawin`, and the note's text
 * and signature cut from the note and verified the same way, its key ID recomputed with
 * sha256sum.
 */
static const char openssl_check[] =
    "set -e\n"
    "jq -r .public_key_pem cp.json > audit.pem\n"
    "jq -cjS '{root_hash,size,time}' cp.json > head.json\n"
    "jq -r .signature_b64 cp.json | base64 -d > head.sig\n"
    "openssl pkeyutl -verify -pubin -inkey audit.pem -rawin -in head.json -sigfile head.sig\n"
    "head -n 3 cp.note > note.txt\n"
    "origin=$(head -n 1 cp.note)\n"
    "grep \"^— $origin \" cp.note | cut -d' ' -f3 | base64 -d > sigline.bin\n"
    "tail -c +5 sigline.bin > note.sig\n"
    "openssl pkeyutl -verify -pubin -inkey audit.pem -rawin -in note.txt -sigfile note.sig\n"
    "{ printf '%s\\n\\001' \"$origin\"; openssl pkey -pubin -in audit.pem -outform DER | tail -c "
    "32; } | sha256sum | cut -c1-8 | tr -d '\\n' > keyid.want\n"
    "head -c 4 sigline.bin | od -An -tx1 | tr -d ' \\n' > keyid.got\n"
    "cmp keyid.want keyid.got\n"
    "test \"$(sed -n 2p cp.note)\" = \"$(jq -r .size cp.json)\"\n"
    "test \"$(sed -n 3p cp.note | base64 -d | od -An -tx1 | tr -d ' \\n')\" = "
    "\"$(jq -r .root_hash cp.json)\"\n";

static void test_note_verified_with_openssl(void **state)
{
    kbt_env *e = kbt_start("checkpoint_every = 10 30s\naudit_origin = " ORIGIN "\n");
    json_t *cp = NULL;
    kbt_resp note;
    char *out = NULL, *vkey_name = NULL;
    EVP_PKEY *vkey_key = NULL, *pem_key = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    calls(e, 12);
    /* the JSON and the note of one checkpoint (the log moves on between two reads) */
    for (int i = 0;; i++) {
        json_decref(cp);
        cp = wait_cp(e, 10, NULL);
        note =
            kbt_call_with(e, "GET", "/v1/audit/checkpoint", e->admin, NULL, "Accept: text/plain");
        assert_int_equal(note.status, 200);
        if (strcmp(note.body, str_of(cp, "note")) == 0)
            break;
        kbt_resp_free(&note);
        assert_true(i < 10);
    }
    assert_string_equal(note.content_type, "text/plain; charset=utf-8");
    assert_true(note.audit_seq > 0);
    assert_string_equal(str_of(cp, "origin"), ORIGIN);
    assert_true(strncmp(note.body, ORIGIN "\n", strlen(ORIGIN) + 1) == 0);
    assert_non_null(strstr(note.body, "\n\n\xe2\x80\x94 " ORIGIN " "));
    /* the vkey names the key that signed, under the origin, for Go's sumdb/note and others */
    assert_int_equal(kbr_note_vkey_parse(str_of(cp, "vkey"), &vkey_name, &vkey_key, &msg), KBR_OK);
    assert_string_equal(vkey_name, ORIGIN);
    pem_key = kbt_pem_to_pkey(str_of(cp, "public_key_pem"));
    assert_int_equal(EVP_PKEY_eq(pem_key, vkey_key), 1);
    assert_true(strncmp(str_of(cp, "vkey") + strlen(ORIGIN) + 1, str_of(cp, "key_id"), 8) == 0);
    write_json(e, "cp.json", cp);
    write_text(e, "cp.note", note.body);
    write_text(e, "check.sh", openssl_check);
    if (shf(e, &out, "sh check.sh 2>&1") != 0)
        fail_msg("openssl could not verify the checkpoint: %s", out);
    assert_non_null(strstr(out, "Signature Verified Successfully"));
    free(out);
    /* and it fails for a head or a note one byte off */
    write_text(e, "check2.sh",
               "set -e\njq -cjS '{root_hash,size,time}' cp.json | sed 's/\"size\":/\"size\":1/' "
               "> bad.json\n"
               "openssl pkeyutl -verify -pubin -inkey audit.pem -rawin -in bad.json -sigfile "
               "head.sig\n");
    assert_int_not_equal(shf(e, &out, "sh check2.sh 2>&1"), 0);
    assert_non_null(strstr(out, "Signature Verification Failure"));
    free(out);
    assert_int_not_equal(shf(e, &out,
                             "sed 1s/./X/ note.txt > bad.txt && openssl pkeyutl -verify -pubin "
                             "-inkey audit.pem -rawin -in bad.txt -sigfile note.sig 2>&1"),
                         0);
    free(out);
    /* the CLI prints the same note */
    assert_int_equal(shf(e, NULL,
                         "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' audit checkpoint "
                         "--note --out cli.note",
                         e->url, e->admin, e->bin_dir),
                     0);
    assert_int_equal(shf(e, NULL, "head -n 3 cli.note | sed -n 1p | grep -qx '%s'", ORIGIN), 0);
    kbt_resp_free(&note);
    json_decref(cp);
    free(vkey_name);
    EVP_PKEY_free(vkey_key);
    EVP_PKEY_free(pem_key);
    kbt_free(e);
}

/* ---- consistency proofs ---- */

static unsigned char *leaves_of(const json_t *entries, size_t n)
{
    unsigned char *leaves = malloc(n * H + 1), *raw = NULL;
    size_t len = 0;

    assert_non_null(leaves);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(kbr_hex_decode(str_of(json_array_get(entries, i), "hash"), &raw, &len),
                         KBR_OK);
        assert_int_equal(len, H);
        memcpy(leaves + i * H, raw, H);
        free(raw);
    }
    return leaves;
}

static void assert_status(kbt_env *e, const char *path, long status, const char *want)
{
    kbt_resp r = kbt_call(e, "GET", path, e->admin, NULL);

    if (r.status != status || (want != NULL && strstr(kbt_err_message(&r), want) == NULL))
        fail_msg("GET %s: %ld %s; want %ld naming \"%s\"", path, r.status, r.body, status,
                 want != NULL ? want : "");
    kbt_resp_free(&r);
}

/*
 * Every pair of tree sizes up to N: the served proof is the one recomputed from the entries,
 * and it verifies between the two roots the entries give (RFC 9162 2.1.4.2).
 */
#define CONS_N 24

static void test_consistency_endpoint(void **state)
{
    kbt_env *e = kbt_start("checkpoint_every = 1000 3600s\n");
    json_t *entries;
    unsigned char *leaves, first[H], second[H], *want = NULL, *got = NULL, *raw = NULL;
    size_t want_len = 0, len = 0, i;
    char path[96];
    const json_t *h;

    (void)state;
    calls(e, CONS_N);
    entries = kbt_audit_all(e);
    assert_true(json_array_size(entries) >= CONS_N);
    leaves = leaves_of(entries, CONS_N);
    for (uint64_t n = 1; n <= CONS_N; n++) {
        assert_int_equal(kbr_merkle_root(leaves, n, second), KBR_OK);
        for (uint64_t m = 1; m <= n; m++) {
            kbt_resp r;
            snprintf(path, sizeof(path), "/v1/audit/consistency?first=%llu&second=%llu",
                     (unsigned long long)m, (unsigned long long)n);
            r = kbt_call(e, "GET", path, e->admin, NULL);
            assert_int_equal(r.status, 200);
            assert_int_equal(json_integer_value(json_object_get(r.json, "first")), m);
            assert_int_equal(json_integer_value(json_object_get(r.json, "second")), n);
            len = json_array_size(json_object_get(r.json, "proof"));
            got = malloc(len * H + 1);
            json_array_foreach(json_object_get(r.json, "proof"), i, h)
            {
                assert_int_equal(kbr_hex_decode(json_string_value(h), &raw, &want_len), KBR_OK);
                assert_int_equal(want_len, H);
                memcpy(got + i * H, raw, H);
                free(raw);
            }
            assert_int_equal(kbr_merkle_consistency(leaves, m, n, &want, &want_len), KBR_OK);
            assert_int_equal(len, want_len);
            if (len > 0)
                assert_memory_equal(got, want, len * H);
            assert_int_equal(kbr_merkle_root(leaves, m, first), KBR_OK);
            assert_int_equal(kbr_merkle_consistency_verify(m, n, first, second, got, len), KBR_OK);
            free(got);
            free(want);
            want = NULL;
            kbt_resp_free(&r);
        }
    }
    assert_status(e, "/v1/audit/consistency?first=0&second=3", 400, "first");
    assert_status(e, "/v1/audit/consistency?first=4&second=3", 400, "first: 4 is larger");
    assert_status(e, "/v1/audit/consistency?first=1&second=100000000", 400,
                  "second: 100000000 is beyond the log");
    assert_status(e, "/v1/audit/consistency?first=x&second=3", 400, "first");
    assert_status(e, "/v1/audit/consistency?second=3", 400, "first: required");
    /* the inclusion proof carries the contract's names beside the old ones */
    {
        kbt_resp r = kbt_call(e, "GET", "/v1/audit/proof?seq=5&size=9", e->admin, NULL);
        assert_int_equal(r.status, 200);
        assert_int_equal(json_integer_value(json_object_get(r.json, "leaf_index")), 4);
        assert_true(
            json_equal(json_object_get(r.json, "proof"), json_object_get(r.json, "audit_path")));
        kbt_resp_free(&r);
    }
    free(leaves);
    json_decref(entries);
    kbt_free(e);
}

/* ---- rollback and recovery ---- */

static char *issue(kbt_env *e, const char *sub)
{
    char spec[256];

    snprintf(spec, sizeof(spec),
             "{\"sub\": \"%s\", \"ops\": [\"read\"], \"ttl\": 3600, \"orphan\": true}", sub);
    return kbt_token(e, spec);
}

static long status_of(kbt_env *e, const char *token)
{
    kbt_resp r = kbt_call(e, "GET", "/v1/keys", token, NULL);
    long s = r.status;

    kbt_resp_free(&r);
    return s;
}

static const json_t *last_with_op(const json_t *entries, const char *op)
{
    const json_t *found = NULL, *e;
    size_t i;

    json_array_foreach(entries, i, e)
    {
        if (strcmp(str_of(e, "op"), op) == 0)
            found = e;
    }
    return found;
}

static void test_rollback_refused_then_recovered(void **state)
{
    kbt_env *e;
    char *before = NULL, *after = NULL, *old_admin = NULL, *out = NULL, *before_recover = NULL;
    json_t *cp = NULL, *entries = NULL;
    const json_t *rec;
    long long kept;
    int rc;

    (void)state;
    /* the backup and its restore are copies of the SQLite file (pg_dump and pg_restore of a
     * PostgreSQL store are the database's own tools, not the harness's) */
    if (kbt_pg())
        skip();
    e = kbt_start("checkpoint_every = 5 1s\n");
    before = issue(e, "service:before-backup");
    calls(e, 6);
    json_decref(wait_cp(e, 8, NULL));
    kbt_stop(e);
    /* a backup, taken the way docs/operations.md says: daemon stopped, one file */
    assert_int_equal(shf(e, &out,
                         "cp keybroker.db backup.db && sqlite3 backup.db 'SELECT "
                         "max(seq) FROM audit'"),
                     0);
    kept = atoll(out);
    free(out);
    assert_int_equal(kbt_spawn_daemon(e), 0);
    after = issue(e, "service:after-backup");
    calls(e, 8);
    cp = wait_cp(e, kept + 8, NULL);
    kbt_stop(e);
    /* the restore: the old copy in place */
    assert_int_equal(shf(e, NULL,
                         "rm -f keybroker.db-wal keybroker.db-shm && cp backup.db "
                         "keybroker.db"),
                     0);
    rc = start_refused(e, &out);
    if (rc != 1 || strstr(out, "rollback") == NULL || strstr(out, "--recover") == NULL)
        fail_msg("start on a restored store: exit %d, %s", rc, out);
    free(out);
    rc = kbt_run_daemon(e, "-c keybroker.conf --init", &out);
    if (rc != 1 || strstr(out, "rollback") == NULL)
        fail_msg("--init on a restored store: exit %d, %s", rc, out);
    free(out);
    /* --check finds what the start found, and says what to do */
    rc = kbt_run_daemon(e, "-c keybroker.conf --check", &out);
    if (rc != 1 || strstr(out, "problem: rollback: the store's audit log has") == NULL ||
        strstr(out, "--recover") == NULL)
        fail_msg("--check on a restored store: exit %d, %s", rc, out);
    free(out);
    /* --recover with the store not in place (moved aside, a path mistyped) makes no empty store
     * to record a loss in: it is refused, and nothing changes, the HSM's record included */
    assert_int_equal(
        shf(e, &before_recover, "mv keybroker.db aside.db && sha256sum bootstrap.token"), 0);
    rc = kbt_run_daemon(e, "-c keybroker.conf --recover", &out);
    if (rc != 1 || strstr(out, "keybroker.db does not exist") == NULL ||
        strstr(out, "in place before --recover") == NULL)
        fail_msg("--recover without its store: exit %d, %s", rc, out);
    free(out);
    assert_int_equal(shf(e, &out,
                         "ls keybroker.db* 2>/dev/null | grep -v '[.]lock$'; "
                         "mv aside.db keybroker.db && sha256sum bootstrap.token"),
                     0);
    assert_string_equal(out, before_recover);
    free(out);
    free(before_recover);
    rc = kbt_run_daemon(e, "-c keybroker.conf --check", &out);
    if (rc != 1 || strstr(out, "problem: rollback: the store's audit log has") == NULL)
        fail_msg("--check after a refused --recover: exit %d, %s", rc, out);
    free(out);
    old_admin = strdup(e->admin);
    rc = kbt_run_daemon(e, "-c keybroker.conf --recover", &out);
    if (rc != 0 || strstr(out, "recovered") == NULL)
        fail_msg("--recover: exit %d, %s", rc, out);
    free(out);
    assert_int_equal(shf(e, &out, "stat -c %%a bootstrap.token"), 0);
    assert_string_equal(out, "600\n");
    free(out);
    /* nothing to recover any more */
    rc = kbt_run_daemon(e, "-c keybroker.conf --recover", &out);
    if (rc != 1 || strstr(out, "nothing to recover") == NULL)
        fail_msg("a second --recover: exit %d, %s", rc, out);
    free(out);
    assert_int_equal(kbt_spawn_daemon(e), 0);
    free(e->admin);
    assert_int_equal(shf(e, &e->admin, "cat bootstrap.token"), 0);
    /* tokens issued before the recovery no longer work, the new bootstrap token does */
    assert_int_equal(status_of(e, old_admin), 401);
    assert_int_equal(status_of(e, before), 401);
    assert_int_equal(status_of(e, after), 401);
    assert_int_equal(status_of(e, e->admin), 200);
    entries = kbt_audit_all(e);
    rec = last_with_op(entries, "audit.recovered");
    assert_non_null(rec);
    assert_int_equal(json_integer_value(json_object_get(rec, "seq")), kept + 1);
    {
        const json_t *d = json_object_get(rec, "detail"), *lost = json_object_get(d, "lost");
        assert_int_equal(json_integer_value(json_object_get(d, "entries_kept")), kept);
        assert_int_equal(json_integer_value(json_object_get(lost, "from")), kept + 1);
        assert_true(json_integer_value(json_object_get(lost, "to")) >=
                    json_integer_value(json_object_get(cp, "size")));
        assert_true(json_is_true(json_object_get(lost, "open_ended")));
    }
    /* the recovered log verifies from the first audit key */
    write_text(e, "first.pem", str_of(cp, "public_key_pem"));
    json_decref(cp);
    cp = wait_cp(e, kept + 2, NULL);
    write_json(e, "cp2.json", cp);
    export_log(e, "recovered.jsonl");
    assert_verify(e, "recovered.jsonl", "cp2.json", "first.pem", 0, "ok:");
    json_decref(entries);
    json_decref(cp);
    free(old_admin);
    free(before);
    free(after);
    kbt_free(e);
}

/* A store from another history (another deployment's, or rewritten) is refused as well. */
static void test_other_store_refused(void **state)
{
    kbt_env *e, *other;
    char *out = NULL;
    int rc;

    (void)state;
    /* the other store takes the SQLite file's place (a PostgreSQL store is a schema the
     * harness does not swap) */
    if (kbt_pg())
        skip();
    e = kbt_start("checkpoint_every = 5 1s\n");
    calls(e, 6);
    json_decref(wait_cp(e, 6, NULL));
    kbt_stop(e);
    /* another deployment's store, younger than this one's HSM record, where the real one was
     * (a missing one, or a file that holds no store, is refused before the HSM is asked:
     * only --init creates a store) */
    other = kbt_start(NULL);
    kbt_stop(other);
    assert_int_equal(
        shf(e, NULL, "mv keybroker.db real.db && sqlite3 '%s/keybroker.db' '.backup keybroker.db'",
            other->dir),
        0);
    rc = start_refused(e, &out);
    if (rc != 1 || strstr(out, "rollback") == NULL ||
        strstr(out, "the HSM's last checkpoint") == NULL)
        fail_msg("start on another deployment's store: exit %d, %s", rc, out);
    free(out);
    assert_int_equal(shf(e, NULL, "rm -f keybroker.db* && mv real.db keybroker.db"), 0);
    assert_int_equal(kbt_spawn_daemon(e), 0);
    kbt_free(other);
    kbt_free(e);
}

/* ---- audit key rotation ---- */

static void write_lines(kbt_env *e, const char *name, const json_t *entries)
{
    char path[512];
    const json_t *en;
    size_t i;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", e->dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    json_array_foreach(entries, i, en)
    {
        assert_int_equal(json_dumpf(en, f, JSON_COMPACT), 0);
        fputc('\n', f);
    }
    assert_int_equal(fclose(f), 0);
}

/* What a forger with write access to an export does after changing entry `from`: re-hash and
 * re-chain from there, so that the hash chain alone holds again. */
static void rechain(json_t *entries, size_t from)
{
    char hash[65];

    for (size_t i = from; i < json_array_size(entries); i++) {
        json_t *en = json_array_get(entries, i);
        if (i > 0)
            json_object_set(en, "prev_hash",
                            json_object_get(json_array_get(entries, i - 1), "hash"));
        json_object_del(en, "hash");
        assert_int_equal(kbr_audit_entry_hash(en, hash), KBR_OK);
        json_object_set_new(en, "hash", json_string(hash));
    }
}

/* The PEM of an Ed25519 key the broker never saw. */
static char *stranger_pem(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *pem;
    long n;

    assert_non_null(k);
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
    return pem;
}

static void test_rotation(void **state)
{
    kbt_env *e = kbt_start("checkpoint_every = 5 1s\naudit_origin = " ORIGIN "\n");
    json_t *cp1 = NULL, *cp2 = NULL, *cp3 = NULL, *entries = NULL, *short_log = NULL;
    kbt_resp r;
    char *acme = NULL, *k1 = NULL, *k2 = NULL, *k3 = NULL, *out = NULL;
    const json_t *rot;
    size_t i;

    (void)state;
    calls(e, 6);
    cp1 = wait_cp(e, 6, NULL);
    k1 = strdup(str_of(cp1, "public_key_pem"));
    write_text(e, "k1.pem", k1);
    write_json(e, "cp1.json", cp1);
    /* who may rotate, and with what */
    acme = kbt_token(e, "{\"sub\": \"security:acme\", \"ops\": [\"admin\"], \"products\":"
                        " [\"acme\"], \"ttl\": 3600, \"orphan\": true}");
    r = kbt_call(e, "POST", "/v1/audit/key/rotate", acme, "{}");
    assert_int_equal(r.status, 403);
    assert_non_null(
        strstr(kbt_err_message(&r), "limited to no products, keys, batches or devices"));
    kbt_resp_free(&r);
    r = kbt_call(e, "POST", "/v1/audit/key/rotate", e->admin, "{\"because\": 1}");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(kbt_err_message(&r), "because"));
    kbt_resp_free(&r);
    r = kbt_call(e, "POST", "/v1/audit/key/rotate", e->admin, "{\"reason\": \"yearly\"}");
    assert_int_equal(r.status, 201);
    assert_string_equal(str_of(r.json, "public_key_pem"), k1);
    k2 = strdup(str_of(r.json, "next_key_pem"));
    assert_string_not_equal(k2, k1);
    assert_true(r.audit_seq > 0);
    write_text(e, "k2.pem", k2);
    /* the link, checked with openssl and the previous key alone, as docs/api.md shows */
    write_json(e, "rotation.json", r.json);
    if (shf(e, &out,
            "set -e; jq -cjS '{next_key_pem,root_hash,size,time}' rotation.json > rot.json; "
            "jq -r .signature_b64 rotation.json | base64 -d > rot.sig; "
            "openssl pkeyutl -verify -pubin -inkey k1.pem -rawin -in rot.json -sigfile rot.sig; "
            "jq -j .next_key_pem rotation.json > next.pem; cmp next.pem k2.pem 2>&1") != 0)
        fail_msg("the rotation does not verify with openssl: %s", out);
    free(out);
    assert_int_not_equal(shf(e, &out,
                             "openssl pkeyutl -verify -pubin -inkey k2.pem -rawin -in rot.json "
                             "-sigfile rot.sig 2>&1"),
                         0);
    free(out);
    kbt_resp_free(&r);
    /* the next checkpoints are the new key's */
    calls(e, 3);
    cp2 = wait_cp(e, 1, k2);
    /* a second rotation, and the broker restarted on it */
    r = kbt_call(e, "POST", "/v1/audit/key/rotate", e->admin, "{}");
    assert_int_equal(r.status, 201);
    assert_string_equal(str_of(r.json, "public_key_pem"), k2);
    k3 = strdup(str_of(r.json, "next_key_pem"));
    kbt_resp_free(&r);
    kbt_restart(e);
    calls(e, 3);
    cp3 = wait_cp(e, 1, k3);
    write_json(e, "cp3.json", cp3);
    entries = kbt_audit_all(e);
    rot = NULL;
    {
        const json_t *en;
        int n = 0;
        json_array_foreach(entries, i, en)
        {
            if (strcmp(str_of(en, "op"), "audit.key.rotate") == 0 &&
                strcmp(str_of(en, "outcome"), "ok") == 0) {
                n++;
                if (rot == NULL)
                    rot = en;
            }
        }
        assert_int_equal(n, 2);
    }
    assert_string_equal(str_of(json_object_get(rot, "detail"), "next_key_label"), "kbr/audit/2");
    assert_string_equal(str_of(json_object_get(rot, "detail"), "reason"), "yearly");
    export_log(e, "rotated.jsonl");
    /* from the first key, the chain reaches the third; old checkpoints still verify */
    assert_verify(e, "rotated.jsonl", "cp3.json", "k1.pem", 0, "chain of 3 audit keys");
    assert_verify(e, "rotated.jsonl", "cp1.json", "k1.pem", 0, "ok:");
    /* pinning a later key is no pin at all: the first checkpoint is not its */
    assert_verify(e, "rotated.jsonl", "cp3.json", "k2.pem", 1, "names another audit key");
    /* the log cut just before the rotation to the third key: the newest checkpoint, which the
     * third key signed, covers entries the log no longer has */
    short_log = json_array();
    json_array_foreach(entries, i, rot)
    {
        const char *next =
            str_of(json_array_get(json_object_get(rot, "effects"), 0), "next_key_pem");
        if (next != NULL && strcmp(next, k3) == 0)
            break;
        json_array_append(short_log, (json_t *)rot);
    }
    assert_true(json_array_size(short_log) < json_array_size(entries));
    write_lines(e, "short.jsonl", short_log);
    assert_verify(e, "short.jsonl", "cp3.json", "k1.pem", 1, "missing entries");
    /* the second key's checkpoint made into a rotation to a stranger's key: the second key
     * never signed that */
    {
        json_t *forged = json_deep_copy(cp2);
        char *pem = stranger_pem();
        json_object_set_new(forged, "next_key_pem", json_string(pem));
        write_json(e, "forged.json", forged);
        json_decref(forged);
        free(pem);
    }
    assert_verify(e, "short.jsonl", "forged.json", "k1.pem", 1, "bad signature");
    /* the rotation to the third key made to name a stranger's key, the log re-chained after
     * it as a forger would: the roots the keys signed commit to the rotation as it was */
    {
        json_t *forged = json_deep_copy(entries);
        char *pem = stranger_pem();
        size_t at = json_array_size(short_log);
        json_object_set_new(
            json_array_get(json_object_get(json_array_get(forged, at), "effects"), 0),
            "next_key_pem", json_string(pem));
        rechain(forged, at);
        write_lines(e, "forged.jsonl", forged);
        assert_verify(e, "forged.jsonl", "cp3.json", "k1.pem", 1, "root mismatch");
        json_decref(forged);
        free(pem);
    }
    /* the audit keys live in the HSM under their own labels */
    assert_int_equal(shf(e, &out, "grep -c 'kbr/audit/3' rotated.jsonl"), 0);
    free(out);
    /* an evidence bundle carries the chain: it verifies from the first key, not from another */
    kbt_key(e, "fw-rot", "firmware-signing", "ecdsa-p256", "rotprod");
    if (shf(e, &out,
            "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' evidence product rotprod "
            "--out rot-bundle.json 2>&1 && '%s/keybroker' evidence verify rot-bundle.json "
            "--pubkey k1.pem 2>&1",
            e->url, e->admin, e->bin_dir, e->bin_dir) != 0)
        fail_msg("evidence with a rotated audit key: %s", out);
    free(out);
    assert_int_equal(shf(e, &out, "jq '.audit_public_keys | length' rot-bundle.json"), 0);
    assert_string_equal(out, "3\n");
    free(out);
    assert_int_not_equal(shf(e, &out,
                             "'%s/keybroker' evidence verify rot-bundle.json --pubkey k2.pem 2>&1",
                             e->bin_dir),
                         0);
    assert_non_null(strstr(out, "audit_key_chain[0]"));
    free(out);
    json_decref(short_log);
    json_decref(entries);
    json_decref(cp1);
    json_decref(cp2);
    json_decref(cp3);
    free(acme);
    free(k1);
    free(k2);
    free(k3);
    kbt_free(e);
}

/* ---- an audit key of an older broker ---- */

static void test_old_audit_key_named(void **state)
{
    kbt_env *e = kbt_new();
    kbr_secret *pin = NULL;
    kbr_hsm *hsm = NULL;
    kbr_hsm_session *s = NULL;
    kbr_hsm_key_info info;
    kbr_msg msg = {{0}};
    char *out = NULL;
    int rc;

    (void)state;
    assert_int_equal(kbr_secret_new(KBT_PIN, strlen(KBT_PIN), &pin), KBR_OK);
    assert_int_equal(kbr_hsm_open("/usr/lib/softhsm/libsofthsm2.so", "keybroker", pin, &hsm, &msg),
                     KBR_OK);
    assert_int_equal(kbr_hsm_session_open(hsm, &s), KBR_OK);
    assert_int_equal(kbr_hsm_generate(s, "kbr/audit", KBR_ALG_ECDSA_P256, &info), KBR_OK);
    kbr_hsm_session_close(s);
    kbr_hsm_close(hsm);
    kbr_secret_free(pin);
    write_text(e, "keybroker.conf",
               "listen = 127.0.0.1:0\nport_file = port\npin_file = pin\n"
               "store = sqlite:keybroker.db\ntoken_label = keybroker\nworkers = 2\n");
    rc = kbt_run_daemon(e, "-c keybroker.conf --init", &out);
    if (rc != 1 || strstr(out, "audit key kbr/audit is an ECDSA P-256 key") == NULL)
        fail_msg("--init with an old audit key: exit %d, %s", rc, out);
    free(out);
    kbt_free(e);
}

/* ---- the crash window ---- */

static int hsm_records(kbt_env *e)
{
    kbr_secret *pin = NULL;
    kbr_hsm *hsm = NULL;
    kbr_hsm_session *s = NULL;
    kbr_hsm_data *items = NULL;
    size_t n = 0;
    kbr_msg msg = {{0}};

    (void)e;
    assert_int_equal(kbr_secret_new(KBT_PIN, strlen(KBT_PIN), &pin), KBR_OK);
    assert_int_equal(kbr_hsm_open("/usr/lib/softhsm/libsofthsm2.so", "keybroker", pin, &hsm, &msg),
                     KBR_OK);
    assert_int_equal(kbr_hsm_session_open(hsm, &s), KBR_OK);
    assert_int_equal(kbr_hsm_data_get(s, "kbr/audit/record", &items, &n), KBR_OK);
    kbr_hsm_data_free(items, n);
    kbr_hsm_session_close(s);
    kbr_hsm_close(hsm);
    kbr_secret_free(pin);
    return (int)n;
}

/*
 * Every broker process dies right after the HSM wrote a new record, before the old one is
 * removed and before the checkpoint's entry commits.  The restart must accept the store (it
 * holds everything the record covers), take the newer of the two records, and record the lost
 * entry first.
 */
static void test_crash_after_record(void **state)
{
    const char *so = getenv("KBR_FAULTY_SO");
    char conf[512], die[400], buf[64];
    kbt_env *e;
    json_t *entries, *cp;
    const json_t *completed;
    long long stored = 0;
    int rc;

    (void)state;
    if (so == NULL)
        fail_msg("KBR_FAULTY_SO is not set; run through make check");
    e = kbt_new();
    snprintf(die, sizeof(die), "%s/die-after-write", e->dir);
    setenv("KBR_FAULTY_DIE_AFTER_WRITE", die, 1);
    snprintf(conf, sizeof(conf), "pkcs11_module = %s\ncheckpoint_every = 5 1s\n", so);
    kbt_launch(e, conf);
    calls(e, 6);
    json_decref(wait_cp(e, 6, NULL));
    assert_int_equal(kbt_sh(e, "touch die-after-write", NULL), 0);
    calls(e, 6);
    rc = kbt_wait_exit(e, 15000);
    assert_int_equal(rc, 128 + 9);
    assert_int_equal(kbt_sh(e, "rm die-after-write", NULL), 0);
    /* the new record and the old one are both in the HSM; the store has the old head only */
    assert_int_equal(hsm_records(e), 2);
    assert_int_equal(
        kbt_store_query(e, "SELECT max(size) FROM checkpoints", buf, sizeof(buf), NULL), 0);
    stored = atoll(buf);
    assert_int_equal(kbt_spawn_daemon(e), 0);
    /* alone on a SQLite store the start records it; on PostgreSQL, which brokers may share,
     * the lease holder's next round does */
    entries = NULL;
    completed = NULL;
    for (int waited = 0; completed == NULL && waited < 10000; waited += 100) {
        const json_t *en;
        size_t i;

        if (entries != NULL)
            usleep(100 * 1000);
        json_decref(entries);
        entries = kbt_audit_all(e);
        json_array_foreach(entries, i, en)
        {
            if (json_is_true(
                    json_object_get(json_object_get(en, "detail"), "recorded_in_hsm_before")))
                completed = en;
        }
    }
    assert_non_null(completed);
    assert_true(json_integer_value(json_object_get(json_object_get(completed, "detail"), "size")) >
                stored);
    /* and the broker goes on: the next checkpoint replaces both records */
    calls(e, 6);
    cp = wait_cp(e, json_integer_value(json_object_get(completed, "seq")) + 1, NULL);
    kbt_stop(e);
    assert_int_equal(hsm_records(e), 1);
    assert_int_equal(kbt_spawn_daemon(e), 0);
    unsetenv("KBR_FAULTY_DIE_AFTER_WRITE");
    json_decref(cp);
    json_decref(entries);
    kbt_free(e);
}

/* ---- malformed evidence ---- */

static void test_bad_evidence_refused(void **state)
{
    kbt_env *e = kbt_start("checkpoint_every = 5 1s\n");
    json_t *cp, *bad;
    const char *note;
    char *cut;

    (void)state;
    calls(e, 6);
    cp = wait_cp(e, 6, NULL);
    write_text(e, "k.pem", str_of(cp, "public_key_pem"));
    write_json(e, "cp.json", cp);
    export_log(e, "log.jsonl");
    assert_verify(e, "log.jsonl", "cp.json", "k.pem", 0, "ok:");
    /* a note cut short */
    bad = json_deep_copy(cp);
    note = str_of(cp, "note");
    assert_non_null(note);
    cut = strndup(note, strlen(note) - 7);
    json_object_set_new(bad, "note", json_string(cut));
    write_json(e, "cut.json", bad);
    assert_verify(e, "log.jsonl", "cut.json", "k.pem", 1, "truncated?");
    json_decref(bad);
    free(cut);
    /* a note whose signature is another's */
    bad = json_deep_copy(cp);
    cut = strdup(note);
    cut[strlen(cut) - 10] = cut[strlen(cut) - 10] == 'A' ? 'B' : 'A';
    json_object_set_new(bad, "note", json_string(cut));
    write_json(e, "badsig.json", bad);
    assert_verify(e, "log.jsonl", "badsig.json", "k.pem", 1, "bad signature by key");
    json_decref(bad);
    free(cut);
    /* a head whose size is not the note's */
    bad = json_deep_copy(cp);
    json_object_set_new(bad, "size",
                        json_integer(json_integer_value(json_object_get(cp, "size")) - 1));
    write_json(e, "size.json", bad);
    assert_verify(e, "log.jsonl", "size.json", "k.pem", 1, "");
    json_decref(bad);
    /* a checkpoint file that repeats a key: named, whichever value a reader would keep */
    write_text(e, "dup.json", "{\"size\": 1, \"size\": 2}");
    assert_verify(e, "log.jsonl", "dup.json", "k.pem", 1, "duplicate");
    json_decref(cp);
    kbt_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_note_verified_with_openssl),
        cmocka_unit_test(test_consistency_endpoint),
        cmocka_unit_test(test_rollback_refused_then_recovered),
        cmocka_unit_test(test_other_store_refused),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_old_audit_key_named),
        cmocka_unit_test(test_crash_after_record),
        cmocka_unit_test(test_bad_evidence_refused),
    };

    return cmocka_run_group_tests_name("transparency log", tests, NULL, NULL);
}
