/* test_audit.c - the audit writer: group commit, hash chain, effects, failures, tampering. */
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "kbr_audit.h"
#include "kbr_store.h"
#include "tmpdir.h"

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"

typedef kbt_store_dir fixture;

static int setup(void **state)
{
    return kbt_store_dir_setup(state, "kbr-audit", "audit.db");
}

static int teardown(void **state)
{
    return kbt_store_dir_teardown(state);
}

static kbr_audit *start_ok(const char *url, int64_t verify_tail)
{
    kbr_audit *a = NULL;
    kbr_msg msg = {{0}};
    kbr_err err = kbr_audit_start(url, verify_tail, &a, &msg);

    if (err != KBR_OK)
        fail_msg("kbr_audit_start: %s: %s", kbr_err_str(err), msg.text);
    return a;
}

static kbr_store *store_ok(const fixture *f)
{
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_OK);
    return st;
}

static kbr_audit_rec *rec_ok(const char *sub, const char *jti, const char *op, const char *key)
{
    kbr_audit_rec *r = NULL;

    assert_int_equal(kbr_audit_rec_new(sub, jti, op, key, &r), KBR_OK);
    return r;
}

static json_t *json_ok(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);

    if (v == NULL)
        fail_msg("bad test JSON at %d: %s", jerr.position, jerr.text);
    return v;
}

/* Effects from their JSON form, which must be well formed. */
static kbr_effects *fx_ok(const char *text)
{
    json_t *arr = json_ok(text);
    kbr_effects *fx = NULL;

    assert_int_equal(kbr_effects_from_json(arr, &fx), KBR_OK);
    json_decref(arr);
    return fx;
}

/*
 * An effect the ledger cannot apply although it passed the rules: no handler can build one,
 * so the test breaks a well-formed list by hand, which is what the writer must contain.
 */
static void break_effect(kbr_effects *fx, size_t i)
{
    ((kbr_effect *)kbr_effects_get(fx, i))->type = (kbr_effect_type)0;
}

/* Appends one record synchronously; returns its result and, if wanted, seq and time. */
static kbr_err append(kbr_audit *a, const char *sub, const char *jti, bool key_use,
                      const char *effects, int64_t *seq, char *time_out)
{
    kbr_audit_rec *r = rec_ok(sub, jti, "sign", "fw-door");
    kbr_err err;

    r->key_use = key_use;
    if (effects != NULL)
        r->effects = fx_ok(effects);
    err = kbr_audit_append_sync(a, r);
    assert_int_equal(err, r->result);
    if (seq != NULL)
        *seq = r->seq;
    if (time_out != NULL)
        memcpy(time_out, r->time, KBR_TIME_LEN);
    kbr_audit_rec_free(r);
    return err;
}

static json_t *page_ok(const fixture *f, int64_t after, int64_t limit)
{
    kbr_store *st = store_ok(f);
    json_t *page = NULL;

    assert_int_equal(kbr_store_audit_page(st, after, limit, &page), KBR_OK);
    kbr_store_close(st);
    return page;
}

static void assert_chain_ok(const fixture *f, size_t expected)
{
    json_t *page = page_ok(f, 0, 100000);
    kbr_msg msg = {{0}};
    kbr_err err;

    assert_int_equal(json_array_size(page), expected);
    err = kbr_audit_verify_entries(page, 1, ZEROS, &msg);
    if (err != KBR_OK)
        fail_msg("chain: %s", msg.text);
    json_decref(page);
}

static void test_single_record(void **state)
{
    fixture *f = *state;
    kbr_audit *a = start_ok(f->url, 100);
    kbr_audit_rec *r = rec_ok("ci:door", NULL, "sign", "fw-a");
    json_t *page, *entry;
    char expected[512], hash[65], *text = NULL, buf[600];
    time_t t;

    assert_int_equal(json_object_set_new(r->detail, "digest", json_string("ab")), 0);
    assert_int_equal(kbr_audit_append_sync(a, r), KBR_OK);
    assert_int_equal(r->seq, 1);
    assert_int_equal(kbr_audit_last_seq(a), 1);
    assert_true(kbr_audit_healthy(a));
    assert_int_equal(kbr_time_parse(r->time, &t), KBR_OK);
    assert_true(labs((long)(t - time(NULL))) < 60);
    kbr_audit_stop(a);

    page = page_ok(f, 0, 10);
    assert_int_equal(json_array_size(page), 1);
    entry = json_array_get(page, 0);
    assert_string_equal(json_string_value(json_object_get(entry, "hash")), r->hash);
    assert_string_equal(json_string_value(json_object_get(entry, "prev_hash")), ZEROS);
    assert_true(json_is_null(json_object_get(entry, "jti")));

    /* The entry's stored form, and its hash computed from the definition. */
    snprintf(expected, sizeof(expected),
             "{\"detail\":{\"digest\":\"ab\"},\"error_code\":null,\"jti\":null,\"key\":\"fw-a\","
             "\"op\":\"sign\",\"outcome\":\"ok\",\"prev_hash\":\"" ZEROS "\",\"seq\":1,"
             "\"sub\":\"ci:door\",\"time\":\"%s\"}",
             r->time);
    assert_int_equal(json_object_del(entry, "hash"), 0);
    assert_int_equal(kbr_json_canonical(entry, &text), KBR_OK);
    assert_string_equal(text, expected);
    buf[0] = '\0';
    memcpy(buf + 1, expected, strlen(expected));
    kbr_sha256_hex(buf, strlen(expected) + 1, hash);
    assert_string_equal(hash, r->hash);
    assert_int_equal(kbr_audit_entry_hash(entry, hash), KBR_OK);
    assert_string_equal(hash, r->hash);
    free(text);
    json_decref(page);
    kbr_audit_rec_free(r);
}

#define THREADS    8
#define PER_THREAD 200

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int64_t seqs[THREADS][PER_THREAD];
} tally;

typedef struct {
    tally *t;
    int thread, i;
} slot;

typedef struct {
    kbr_audit *a;
    slot *slots; /* PER_THREAD of them */
} submitter;

static void count_done(kbr_audit_rec *rec, void *arg)
{
    slot *s = arg;

    pthread_mutex_lock(&s->t->mu);
    s->t->seqs[s->thread][s->i] = rec->result == KBR_OK ? rec->seq : -1;
    s->t->done++;
    pthread_cond_signal(&s->t->cv);
    pthread_mutex_unlock(&s->t->mu);
    kbr_audit_rec_free(rec);
}

static void *submit_many(void *arg)
{
    submitter *sub = arg;
    char name[32];

    for (int i = 0; i < PER_THREAD; i++) {
        kbr_audit_rec *r = NULL;

        snprintf(name, sizeof(name), "ci:t%d", sub->slots[i].thread);
        if (kbr_audit_rec_new(name, NULL, "sign", "fw-door", &r) != KBR_OK)
            abort();
        json_object_set_new(r->detail, "i", json_integer(i));
        r->done = count_done;
        r->arg = &sub->slots[i];
        kbr_audit_submit(sub->a, r);
    }
    return NULL;
}

static void wait_all(tally *t, int n)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 120;
    pthread_mutex_lock(&t->mu);
    while (t->done < n)
        if (pthread_cond_timedwait(&t->cv, &t->mu, &deadline) != 0)
            break;
    pthread_mutex_unlock(&t->mu);
    assert_int_equal(t->done, n);
}

static void check_seqs(const tally *t)
{
    static bool seen[THREADS * PER_THREAD + 1];

    memset(seen, 0, sizeof(seen));
    for (int th = 0; th < THREADS; th++) {
        for (int i = 0; i < PER_THREAD; i++) {
            int64_t s = t->seqs[th][i];

            assert_in_range(s, 1, THREADS * PER_THREAD);
            assert_false(seen[s]);
            seen[s] = true;
            /* The queue is FIFO: one submitter's records keep their order in the log. */
            if (i > 0)
                assert_true(s > t->seqs[th][i - 1]);
        }
    }
}

static void test_concurrent_group_commit(void **state)
{
    fixture *f = *state;
    kbr_audit *a = start_ok(f->url, 100);
    static tally t;
    static slot slots[THREADS][PER_THREAD];
    submitter subs[THREADS];
    pthread_t threads[THREADS];
    kbr_audit_stats stats;

    memset(&t, 0, sizeof(t));
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    for (int th = 0; th < THREADS; th++) {
        for (int i = 0; i < PER_THREAD; i++)
            slots[th][i] = (slot){.t = &t, .thread = th, .i = i};
        subs[th] = (submitter){.a = a, .slots = slots[th]};
        assert_int_equal(pthread_create(&threads[th], NULL, submit_many, &subs[th]), 0);
    }
    for (int th = 0; th < THREADS; th++)
        pthread_join(threads[th], NULL);
    wait_all(&t, THREADS * PER_THREAD);
    check_seqs(&t);

    kbr_audit_get_stats(a, &stats);
    assert_int_equal(stats.records, THREADS * PER_THREAD);
    assert_int_equal(stats.failed_commits, 0);
    print_message("group commit: %llu records in %llu transactions\n",
                  (unsigned long long)stats.records, (unsigned long long)stats.commits);
    /* Group commit: many records share one transaction. */
    assert_in_range(stats.commits, 1, THREADS * PER_THREAD / 4);
    assert_int_equal(kbr_audit_last_seq(a), THREADS * PER_THREAD);
    kbr_audit_stop(a);
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&t.mu);
    assert_chain_ok(f, THREADS * PER_THREAD);
}

#define KEY_CREATE(name)                                                                           \
    "[{\"type\": \"key.create\", \"name\": \"" name "\", \"purpose\": \"firmware-signing\","       \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\"], \"owner\": \"team-door\","          \
    " \"created_at\": \"2026-03-01T10:00:00Z\"}]"

static void test_conflict_recorded_as_denied(void **state)
{
    fixture *f = *state;
    kbr_audit *a = start_ok(f->url, 100);
    kbr_audit_rec *r = rec_ok("security:admin", "j-admin", "admin", "fw-door");
    kbr_store *st;
    json_t *key = NULL, *page, *entry;

    assert_int_equal(
        append(a, "security:admin", "j-admin", false, KEY_CREATE("fw-door"), NULL, NULL), KBR_OK);
    r->key_use = true;
    r->effects = fx_ok(KEY_CREATE("fw-door"));
    assert_int_equal(kbr_audit_append_sync(a, r), KBR_ERR_CONFLICT);
    assert_int_equal(r->seq, 2);
    assert_string_equal(r->outcome, "denied");
    assert_string_equal(r->error_code, "conflict");
    assert_false(r->key_use);
    assert_true(json_is_true(json_object_get(r->detail, "conflict")));
    assert_true(kbr_audit_healthy(a));
    kbr_audit_stop(a);

    st = store_ok(f);
    assert_int_equal(kbr_store_key_get(st, "fw-door", &key), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(key, "owner")), "team-door");
    kbr_store_close(st);
    page = page_ok(f, 0, 2);
    /* the first entry carries the key it created; the refused one carries nothing */
    entry = json_array_get(page, 0);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(entry, "effects"), 0), "type")),
                        "key.create");
    entry = json_array_get(page, 1);
    assert_string_equal(json_string_value(json_object_get(entry, "outcome")), "denied");
    assert_string_equal(json_string_value(json_object_get(entry, "error_code")), "conflict");
    assert_string_equal(json_string_value(json_object_get(entry, "hash")), r->hash);
    assert_null(json_object_get(entry, "effects"));
    assert_null(json_object_get(entry, "key_use"));
    json_decref(page);
    json_decref(key);
    kbr_audit_rec_free(r);
    assert_chain_ok(f, 2);
}

#define FW(digest, comp)                                                                           \
    "[{\"type\": \"firmware.sign\", \"product\": \"door\", \"version\": \"2.0.0\","                \
    " \"digest\": \"" digest "\", \"hash\": \"sha256\", \"key\": \"fw-door\","                     \
    " \"signed_at\": \"2026-03-02T00:00:00Z\", \"components\": [{\"name\": \"" comp "\","          \
    " \"version\": \"1.0\", \"purl\": \"pkg:generic/" comp "@1.0\"}]}]"

/* An entry carries the facts its record made: effects, documents by hash, key_use. */
static void test_entry_carries_its_facts(void **state)
{
    static const char sbom[] = "{\"bomFormat\":\"CycloneDX\",\"components\":[]}";
    fixture *f = *state;
    kbr_audit *a = start_ok(f->url, 100);
    kbr_audit_rec *r = rec_ok("ci:door", "j-ci", "sign", "fw-door");
    json_t *page, *entry, *effect, *arr;
    char sha[65], want[65];
    unsigned char *body = NULL;
    size_t len = 0;
    int64_t first = 0;
    kbr_store *st;

    assert_int_equal(
        append(a, "security:admin", "j-admin", false, KEY_CREATE("fw-door"), NULL, NULL), KBR_OK);
    r->key_use = true;
    arr = json_ok(FW("1111111111111111111111111111111111111111111111111111111111111111", "zlib"));
    assert_int_equal(kbr_effects_new(&r->effects), KBR_OK);
    assert_int_equal(kbr_effects_add_document(r->effects, sbom, strlen(sbom), sha), KBR_OK);
    kbr_sha256_hex(sbom, strlen(sbom), want);
    assert_string_equal(sha, want);
    json_object_set_new(json_array_get(arr, 0), "sbom_sha256", json_string(sha));
    {
        kbr_effects *read = NULL;
        assert_int_equal(kbr_effects_from_json(arr, &read), KBR_OK);
        assert_int_equal(kbr_effects_add(r->effects, kbr_effects_get(read, 0)), KBR_OK);
        kbr_effects_free(read);
    }
    assert_int_equal(kbr_audit_append_sync(a, r), KBR_OK);
    kbr_audit_stop(a);

    page = page_ok(f, 1, 1);
    entry = json_array_get(page, 0);
    effect = json_array_get(json_object_get(entry, "effects"), 0);
    assert_string_equal(json_string_value(json_object_get(effect, "type")), "firmware.sign");
    assert_string_equal(json_string_value(json_object_get(effect, "sbom_sha256")), sha);
    assert_string_equal(json_string_value(json_array_get(json_object_get(entry, "documents"), 0)),
                        sha);
    assert_true(json_is_true(json_object_get(entry, "key_use")));
    json_decref(page);
    json_decref(arr);
    kbr_audit_rec_free(r);

    st = store_ok(f);
    assert_int_equal(kbr_store_document_get(st, sha, &body, &len, &first), KBR_OK);
    assert_int_equal(len, strlen(sbom));
    assert_memory_equal(body, sbom, len);
    assert_int_equal(first, 2);
    free(body);
    assert_int_equal(kbr_store_document_get(st, ZEROS, &body, &len, NULL), KBR_ERR_NOT_FOUND);
    kbr_store_close(st);
    assert_chain_ok(f, 2);
}

static void test_firmware_retry_and_conflict(void **state)
{
    fixture *f = *state;
    kbr_audit *a = start_ok(f->url, 100);
    kbr_store *st;
    json_t *build = NULL, *comps;
    int64_t seq = 0;

    assert_int_equal(append(a, "ci:door", "j1", true, FW("11ff", "mbedtls"), &seq, NULL), KBR_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(append(a, "ci:door", "j1", true, FW("11ff", "mbedtls"), &seq, NULL), KBR_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(append(a, "ci:door", "j1", true, FW("22ee", "zlib"), &seq, NULL),
                     KBR_ERR_CONFLICT);
    assert_int_equal(seq, 3);
    kbr_audit_stop(a);

    st = store_ok(f);
    assert_int_equal(kbr_store_firmware_get(st, "door", "2.0.0", &build), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(build, "digest")), "11ff");
    assert_int_equal(json_integer_value(json_object_get(build, "audit_seq")), 1);
    comps = json_object_get(build, "components");
    assert_int_equal(json_array_size(comps), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(comps, 0), "name")),
                        "mbedtls");
    json_decref(build);
    kbr_store_close(st);
    assert_chain_ok(f, 3);
}

static void token_effect(char *buf, size_t len, const char *jti, const char *sub, const char *scope,
                         time_t issued, time_t expires)
{
    char iat[KBR_TIME_LEN], exp[KBR_TIME_LEN];

    kbr_time_fmt(issued, iat);
    kbr_time_fmt(expires, exp);
    snprintf(buf, len,
             "[{\"type\": \"token.issue\", \"jti\": \"%s\", \"sub\": \"%s\", \"scope\": %s,"
             " \"issued_by\": \"j-admin\", \"issued_at\": \"%s\", \"not_before\": \"%s\","
             " \"expires_at\": \"%s\", \"cnf_x5t\": null}]",
             jti, sub, scope, iat, iat, exp);
}

static void issue(kbr_audit *a, const char *jti, const char *sub, const char *scope, time_t issued,
                  time_t expires)
{
    char effects[1024];

    token_effect(effects, sizeof(effects), jti, sub, scope, issued, expires);
    assert_int_equal(append(a, "security:admin", "j-admin", false, effects, NULL, NULL), KBR_OK);
}

static void revoke_tokens(kbr_audit *a, const char *jtis, time_t at, const char *reason)
{
    char effects[512], when[KBR_TIME_LEN];

    kbr_time_fmt(at, when);
    snprintf(effects, sizeof(effects),
             "[{\"type\": \"token.revoke\", \"jtis\": %s, \"at\": \"%s\", \"reason\": \"%s\"}]",
             jtis, when, reason);
    assert_int_equal(append(a, "security:admin", "j-admin", false, effects, NULL, NULL), KBR_OK);
}

/* The jtis of list, comma-separated, in order. */
static void assert_jtis(kbr_store *st, const char *sub, const char *key, bool active, time_t now,
                        const char *expected)
{
    json_t *list = NULL, *tok;
    char got[256] = "";
    size_t i, used = 0;

    assert_int_equal(kbr_store_token_list(st, sub, key, active, now, &list), KBR_OK);
    json_array_foreach(list, i, tok)
    {
        used += (size_t)snprintf(got + used, sizeof(got) - used, "%s%s", i > 0 ? "," : "",
                                 json_string_value(json_object_get(tok, "jti")));
    }
    assert_string_equal(got, expected);
    json_decref(list);
}

static void append_denied_use(kbr_audit *a, const char *jti)
{
    kbr_audit_rec *r = rec_ok("ci:door", jti, "sign", "fw-door");

    r->key_use = true;
    assert_int_equal(kbr_audit_rec_set_outcome(r, "denied", "quota_exhausted"), KBR_OK);
    assert_int_equal(kbr_audit_append_sync(a, r), KBR_OK);
    kbr_audit_rec_free(r);
}

static void test_tokens_list_and_uses(void **state)
{
    fixture *f = *state;
    kbr_audit *a = start_ok(f->url, 100);
    time_t now = time(NULL);
    char last_use[KBR_TIME_LEN], revoked[KBR_TIME_LEN];
    kbr_store *st;
    json_t *list = NULL, *j1, *j2, *j3;

    issue(a, "j1", "ci:door", "{\"ops\": [\"sign\"], \"keys\": [\"fw-*\"]}", now - 300, now + 3600);
    issue(a, "j2", "ci:lock", "{\"ops\": [\"sign\"], \"keys\": [\"ota-1\"]}", now - 200,
          now + 3600);
    issue(a, "j3", "ci:door", "{\"ops\": [\"read\"]}", now - 100, now + 3600);
    issue(a, "j4", "ci:lock", "{\"keys\": [\"fw-door\"]}", now - 50, now - 10);
    /* Uses are committed key uses: denied or non-key records do not count. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(append(a, "ci:door", "j1", true, NULL, NULL, last_use), KBR_OK);
    assert_int_equal(append(a, "ci:door", "j1", false, NULL, NULL, NULL), KBR_OK);
    append_denied_use(a, "j1");
    revoke_tokens(a, "[\"j3\", \"unknown\"]", now - 5, "left the team");
    revoke_tokens(a, "[\"j3\"]", now - 1, "again");
    kbr_time_fmt(now - 5, revoked);
    kbr_audit_stop(a);

    st = store_ok(f);
    assert_jtis(st, NULL, NULL, false, now, "j1,j2,j3,j4");
    assert_jtis(st, "ci:door", NULL, false, now, "j1,j3");
    assert_jtis(st, NULL, "fw-door", false, now, "j1,j3,j4");
    assert_jtis(st, NULL, "ota-1", false, now, "j2,j3");
    assert_jtis(st, NULL, "ota-2", false, now, "j3");
    assert_jtis(st, NULL, NULL, true, now, "j1,j2");
    assert_jtis(st, "ci:lock", "fw-door", false, now, "j4");
    assert_jtis(st, "ci:lock", "fw-door", true, now, "");
    /* Ten minutes earlier j4 had not expired yet. */
    assert_jtis(st, NULL, "fw-door", true, now - 600, "j1,j4");

    assert_int_equal(kbr_store_token_list(st, NULL, NULL, false, now, &list), KBR_OK);
    j1 = json_array_get(list, 0);
    j2 = json_array_get(list, 1);
    j3 = json_array_get(list, 2);
    assert_int_equal(json_integer_value(json_object_get(j1, "uses")), 3);
    assert_string_equal(json_string_value(json_object_get(j1, "last_used_at")), last_use);
    assert_string_equal(json_string_value(json_object_get(j1, "issued_by")), "j-admin");
    assert_true(json_is_null(json_object_get(j1, "cnf_x5t")));
    assert_true(json_is_null(json_object_get(j1, "revoked_at")));
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_object_get(j1, "scope"), "keys"), 0)),
        "fw-*");
    assert_int_equal(json_integer_value(json_object_get(j2, "uses")), 0);
    assert_true(json_is_null(json_object_get(j2, "last_used_at")));
    assert_string_equal(json_string_value(json_object_get(j3, "revoked_at")), revoked);
    assert_string_equal(json_string_value(json_object_get(j3, "revoke_reason")), "left the team");
    json_decref(list);
    kbr_store_close(st);
}

static void append_n(const fixture *f, int n)
{
    kbr_audit *a = start_ok(f->url, 100);

    for (int i = 0; i < n; i++)
        assert_int_equal(append(a, "ci:door", "j1", true, NULL, NULL, NULL), KBR_OK);
    kbr_audit_stop(a);
}

static void sql(const fixture *f, const char *stmt)
{
    long changed = 0;

    assert_int_equal(kbt_store_sql(f->url, stmt, NULL, 0, &changed), 0);
    assert_int_equal(changed, 1);
}

static void assert_start_refused(const fixture *f, int64_t verify_tail, const char *needle)
{
    kbr_audit *a = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_audit_start(f->url, verify_tail, &a, &msg), KBR_ERR_STORE);
    assert_null(a);
    if (strstr(msg.text, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", msg.text, needle);
}

/* Rewrites entry 3 and gives it the hash its new content has, as a careful forger would. */
static void forge_entry_3(const fixture *f)
{
    kbr_store *st = store_ok(f);
    json_t *page = NULL, *entry;
    char hash[65], *text = NULL, stmt[1024];

    assert_int_equal(kbr_store_audit_page(st, 2, 1, &page), KBR_OK);
    kbr_store_close(st);
    entry = json_array_get(page, 0);
    assert_int_equal(json_object_del(entry, "hash"), 0);
    assert_int_equal(json_object_set_new(entry, "op", json_string("read")), 0);
    assert_int_equal(kbr_json_canonical(entry, &text), KBR_OK);
    assert_int_equal(kbr_audit_entry_hash(entry, hash), KBR_OK);
    snprintf(stmt, sizeof(stmt), "UPDATE audit SET entry = '%s', hash = '%s' WHERE seq = 3", text,
             hash);
    sql(f, stmt);
    free(text);
    json_decref(page);
}

static void test_tampering_refused_at_start(void **state)
{
    fixture *f = *state;

    append_n(f, 5);
    sql(f, "UPDATE audit SET entry = replace(entry, '\"op\":\"sign\"', '\"op\":\"read\"')"
           " WHERE seq = 3");
    assert_start_refused(f, 10, "audit entry 3: hash does not match its content");
    assert_start_refused(f, 3, "audit entry 3: hash does not match its content");
    /* A tail check that stops short of the damage lets the broker start. */
    kbr_audit_stop(start_ok(f->url, 2));

    forge_entry_3(f);
    assert_start_refused(f, 10, "audit entry 4: seq or prev_hash does not chain");

    sql(f, "DELETE FROM audit WHERE seq = 2");
    assert_start_refused(f, 10, "audit entry 2: missing");
}

static void assert_verify_fails(const json_t *entries, int64_t first, const char *prev,
                                const char *needle)
{
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_audit_verify_entries(entries, first, prev, &msg), KBR_ERR_BAD_REQUEST);
    if (strstr(msg.text, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", msg.text, needle);
}

static void test_verify_entries(void **state)
{
    fixture *f = *state;
    json_t *page, *copy, *e;
    char hash[65];
    kbr_msg msg = {{0}};

    append_n(f, 5);
    page = page_ok(f, 0, 10);
    assert_int_equal(kbr_audit_verify_entries(page, 1, NULL, &msg), KBR_OK);
    copy = json_array();
    for (size_t i = 2; i < 5; i++)
        json_array_append(copy, json_array_get(page, i));
    assert_int_equal(
        kbr_audit_verify_entries(
            copy, 3, json_string_value(json_object_get(json_array_get(page, 1), "hash")), &msg),
        KBR_OK);
    assert_verify_fails(copy, 3, ZEROS, "entry 3: prev_hash does not chain");
    assert_verify_fails(page, 2, ZEROS, "entry 2: missing or out of order (found seq 1)");
    json_decref(copy);

    copy = json_deep_copy(page);
    e = json_array_get(copy, 2);
    json_object_set_new(json_object_get(e, "detail"), "digest", json_string("forged"));
    assert_verify_fails(copy, 1, ZEROS, "entry 3: hash does not match its content");
    json_object_del(e, "hash");
    assert_int_equal(kbr_audit_entry_hash(e, hash), KBR_OK);
    json_object_set_new(e, "hash", json_string(hash));
    assert_verify_fails(copy, 1, ZEROS, "entry 4: prev_hash does not chain");
    json_decref(copy);

    copy = json_deep_copy(page);
    json_array_remove(copy, 1);
    assert_verify_fails(copy, 1, ZEROS, "entry 2: missing or out of order (found seq 3)");
    json_decref(copy);

    copy = json_deep_copy(page);
    e = json_incref(json_array_get(copy, 3));
    json_array_remove(copy, 3);
    json_array_insert_new(copy, 1, e);
    assert_verify_fails(copy, 1, ZEROS, "entry 2: missing or out of order (found seq 4)");
    json_decref(copy);
    json_decref(page);
}

static void test_commit_failure_then_recovery(void **state)
{
    fixture *f = *state;
    char url[600];
    kbr_audit *a;
    kbr_audit_rec *big;
    char *blob;
    kbr_audit_stats stats;
    kbr_store *st;
    json_t *key = NULL;
    int64_t seq = 0;

    if (kbt_pg())
        skip(); /* max_pages, a SQLite quota; PostgreSQL lost and back: integration/test_pg.c */
    big = rec_ok("ci:door", "j1", "sign", "fw-door");
    blob = calloc(1, 1 << 20);

    /* A 400 KiB quota: small records fit, a 1 MiB one cannot be made durable. */
    snprintf(url, sizeof(url), "%s?max_pages=100", f->url);
    a = start_ok(url, 100);
    assert_int_equal(append(a, "ci:door", "j1", true, NULL, &seq, NULL), KBR_OK);
    assert_int_equal(seq, 1);

    assert_non_null(blob);
    memset(blob, 'x', (1 << 20) - 1);
    json_object_set_new(big->detail, "blob", json_string(blob));
    big->effects = fx_ok(KEY_CREATE("k-big"));
    assert_int_equal(kbr_audit_append_sync(a, big), KBR_ERR_AUDIT);
    assert_int_equal(big->seq, 0);
    assert_false(kbr_audit_healthy(a));
    assert_int_equal(kbr_audit_last_seq(a), 1);

    assert_int_equal(append(a, "ci:door", "j1", true, KEY_CREATE("k-small"), &seq, NULL), KBR_OK);
    assert_int_equal(seq, 2);
    assert_true(kbr_audit_healthy(a));
    kbr_audit_get_stats(a, &stats);
    assert_int_equal(stats.failed_commits, 1);
    assert_int_equal(stats.records, 2);
    kbr_audit_stop(a);

    st = store_ok(f);
    assert_int_equal(kbr_store_key_get(st, "k-big", &key), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_store_key_get(st, "k-small", &key), KBR_OK);
    json_decref(key);
    kbr_store_close(st);
    assert_chain_ok(f, 2);
    kbr_audit_rec_free(big);
    free(blob);
}

/* A store failure inside an effect (here the quota) is the store's, not the record's: the
 * group fails as a whole, as a full disk does, and the next group recovers. */
static void test_store_failure_in_effect_fails_group(void **state)
{
    fixture *f = *state;
    char url[600], *owner, *effects = NULL;
    kbr_audit *a;
    kbr_audit_rec *big;
    kbr_audit_stats stats;
    int64_t seq = 0;

    if (kbt_pg())
        skip(); /* max_pages, a SQLite quota; PostgreSQL lost and back: integration/test_pg.c */
    owner = calloc(1, 1 << 20);
    big = rec_ok("security:admin", "j-admin", "admin", "k-huge");

    snprintf(url, sizeof(url), "%s?max_pages=100", f->url);
    a = start_ok(url, 100);
    assert_non_null(owner);
    memset(owner, 'o', (1 << 20) - 1);
    assert_true(asprintf(&effects,
                         "[{\"type\": \"key.create\", \"name\": \"k-huge\", \"purpose\": \"p\","
                         " \"algorithm\": \"ecdsa-p256\", \"products\": [], \"owner\": \"%s\","
                         " \"created_at\": \"2026-03-01T10:00:00Z\"}]",
                         owner) > 0);
    big->effects = fx_ok(effects);
    assert_int_equal(kbr_audit_append_sync(a, big), KBR_ERR_AUDIT);
    assert_int_equal(big->seq, 0);
    assert_false(kbr_audit_healthy(a));
    assert_int_equal(append(a, "ci:door", "j1", true, KEY_CREATE("k-small"), &seq, NULL), KBR_OK);
    assert_int_equal(seq, 1);
    assert_true(kbr_audit_healthy(a));
    kbr_audit_get_stats(a, &stats);
    assert_int_equal(stats.failed_commits, 1);
    kbr_audit_stop(a);
    assert_chain_ok(f, 1);
    kbr_audit_rec_free(big);
    free(effects);
    free(owner);
}

/* ---- one bad record among many: it fails alone ---- */

#define ISO_THREADS 8
#define ISO_EACH    64 /* ISO_THREADS * ISO_EACH = 512 good records, one full group */
#define ISO_GOOD    (ISO_THREADS * ISO_EACH)

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    kbr_err results[ISO_GOOD + 1]; /* the last one is the bad record's */
    int64_t seqs[ISO_GOOD + 1];
    char outcome[ISO_GOOD + 1][8];
} iso_tally;

typedef struct {
    iso_tally *t;
    int index;
} iso_slot;

typedef struct {
    kbr_audit *a;
    pthread_barrier_t *half; /* everyone has queued half of their records; the bad one is in */
    iso_slot *slots;         /* ISO_EACH of them */
    int thread;
} iso_submitter;

static void iso_done(kbr_audit_rec *rec, void *arg)
{
    iso_slot *s = arg;

    pthread_mutex_lock(&s->t->mu);
    s->t->results[s->index] = rec->result;
    s->t->seqs[s->index] = rec->seq;
    snprintf(s->t->outcome[s->index], sizeof(s->t->outcome[0]), "%s", rec->outcome);
    s->t->done++;
    pthread_cond_signal(&s->t->cv);
    pthread_mutex_unlock(&s->t->mu);
    kbr_audit_rec_free(rec);
}

static kbr_audit_rec *iso_rec(const char *key, const char *effects, iso_slot *s)
{
    kbr_audit_rec *r = NULL;

    if (kbr_audit_rec_new("security:admin", "j-admin", "admin", key, &r) != KBR_OK)
        abort();
    r->effects = fx_ok(effects);
    r->key_use = true;
    r->done = iso_done;
    r->arg = s;
    return r;
}

static void *iso_submit(void *arg)
{
    iso_submitter *sub = arg;
    char name[32], effects[512];

    for (int i = 0; i < ISO_EACH; i++) {
        /* twice: everyone has queued half, then the bad record is queued */
        if (i == ISO_EACH / 2) {
            pthread_barrier_wait(sub->half);
            pthread_barrier_wait(sub->half);
        }
        snprintf(name, sizeof(name), "iso-%d-%d", sub->thread, i);
        snprintf(effects, sizeof(effects),
                 "[{\"type\": \"key.create\", \"name\": \"%s\", \"purpose\": \"firmware-signing\","
                 " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\"],"
                 " \"created_at\": \"2026-03-01T10:00:00Z\"}]",
                 name);
        kbr_audit_submit(sub->a, iso_rec(name, effects, &sub->slots[i]));
    }
    return NULL;
}

/*
 * What a certificate with a negative serial number once became: a key.certificate effect the
 * ledger cannot take, after an effect of the same record that it could.  Both are undone.
 */
#define BAD_CERT_EFFECTS                                                                           \
    "[{\"type\": \"key.create\", \"name\": \"iso-bad\", \"purpose\": \"device-identity-ca\","      \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\"],"                                    \
    " \"created_at\": \"2026-03-01T10:00:00Z\"},"                                                  \
    " {\"type\": \"key.certificate\", \"name\": \"iso-bad\", \"at\": \"2026-03-01T10:00:00Z\","    \
    " \"serial_number\": \"0a1b\", \"pem\": \"P\", \"chain_pem\": \"\","                           \
    " \"not_after\": \"2036-01-01T00:00:00Z\", \"fingerprint\": \"" ZEROS "\"}]"

/* The tree the writer kept over the log equals the one computed from the entries' hashes. */
static void assert_tree_ok(const fixture *f, int64_t size)
{
    json_t *page = page_ok(f, 0, size);
    unsigned char *leaves = malloc((size_t)size * KBR_MERKLE_HASH_LEN), *leaf = NULL;
    unsigned char want[KBR_MERKLE_HASH_LEN], got[KBR_MERKLE_HASH_LEN];
    kbr_store *st = store_ok(f);
    size_t len = 0;

    assert_non_null(leaves);
    assert_int_equal(json_array_size(page), (size_t)size);
    for (int64_t i = 0; i < size; i++) {
        const char *hex = json_string_value(json_object_get(json_array_get(page, i), "hash"));

        assert_int_equal(kbr_hex_decode(hex, &leaf, &len), KBR_OK);
        assert_int_equal(len, KBR_MERKLE_HASH_LEN);
        memcpy(leaves + i * KBR_MERKLE_HASH_LEN, leaf, KBR_MERKLE_HASH_LEN);
        free(leaf);
    }
    assert_int_equal(kbr_merkle_root(leaves, (uint64_t)size, want), KBR_OK);
    assert_int_equal(kbr_store_merkle_root(st, size, got), KBR_OK);
    assert_memory_equal(want, got, KBR_MERKLE_HASH_LEN);
    kbr_store_close(st);
    free(leaves);
    json_decref(page);
}

static void iso_wait(iso_tally *t)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 120;
    pthread_mutex_lock(&t->mu);
    while (t->done < ISO_GOOD + 1)
        if (pthread_cond_timedwait(&t->cv, &t->mu, &deadline) != 0)
            break;
    pthread_mutex_unlock(&t->mu);
    assert_int_equal(t->done, ISO_GOOD + 1);
}

static void iso_check_ledger(const fixture *f)
{
    kbr_store *st = store_ok(f);
    json_t *keys = NULL, *key = NULL;

    assert_int_equal(kbr_store_key_list(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), ISO_GOOD);
    assert_int_equal(kbr_store_key_get(st, "iso-bad", &key), KBR_ERR_NOT_FOUND);
    json_decref(keys);
    kbr_store_close(st);
}

/* The bad record's entry: an error, without its effects, saying why. */
static void iso_check_bad_entry(const fixture *f, int64_t seq)
{
    json_t *page = page_ok(f, seq - 1, 1), *e = json_array_get(page, 0), *refused;

    assert_int_equal(json_integer_value(json_object_get(e, "seq")), seq);
    assert_string_equal(json_string_value(json_object_get(e, "key")), "iso-bad");
    assert_string_equal(json_string_value(json_object_get(e, "outcome")), "error");
    assert_string_equal(json_string_value(json_object_get(e, "error_code")), "audit_unavailable");
    refused = json_object_get(json_object_get(e, "detail"), "effects_refused");
    assert_true(json_is_object(refused));
    /* the types it was to apply; the broken one has none */
    assert_string_equal(json_string_value(json_array_get(json_object_get(refused, "types"), 0)),
                        "key.create");
    assert_true(json_is_null(json_array_get(json_object_get(refused, "types"), 1)));
    assert_non_null(json_string_value(json_object_get(refused, "reason")));
    json_decref(page);
}

static void iso_check_good(const iso_tally *t)
{
    int failed = 0, first = -1;

    for (int i = 0; i < ISO_GOOD; i++) {
        if (t->results[i] == KBR_OK && strcmp(t->outcome[i], "ok") == 0)
            continue;
        failed++;
        first = first < 0 ? i : first;
    }
    if (failed > 0)
        fail_msg("%d of %d good records failed, the first with %s", failed, ISO_GOOD,
                 kbr_err_str(t->results[first]));
}

/*
 * 512 records from 8 threads and, queued among them, one whose effects the ledger refuses.
 * Another connection holds the write lock meanwhile, so they pile up into full groups.  Every
 * good record commits with its effects; the bad one is an error entry of its own with none of
 * its effects, in its place in the chain, so seq, prev_hash and the tree stay whole.
 */
static void test_bad_record_fails_alone(void **state)
{
    fixture *f = *state;
    kbr_audit *a;
    static iso_tally t;
    static iso_slot slots[ISO_GOOD + 1];
    iso_submitter subs[ISO_THREADS];
    pthread_t threads[ISO_THREADS];
    pthread_barrier_t half;
    kbr_audit_stats stats;
    sqlite3 *lock = NULL;

    if (kbt_pg())
        skip(); /* holds the writer with a SQLite write lock */
    a = start_ok(f->url, 100);

    memset(&t, 0, sizeof(t));
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    assert_int_equal(pthread_barrier_init(&half, NULL, ISO_THREADS + 1), 0);
    assert_int_equal(sqlite3_open(f->path, &lock), SQLITE_OK);
    assert_int_equal(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i <= ISO_GOOD; i++)
        slots[i] = (iso_slot){.t = &t, .index = i};
    for (int th = 0; th < ISO_THREADS; th++) {
        subs[th] = (iso_submitter){a, &half, &slots[th * ISO_EACH], th};
        assert_int_equal(pthread_create(&threads[th], NULL, iso_submit, &subs[th]), 0);
    }
    pthread_barrier_wait(&half);
    {
        kbr_audit_rec *bad = iso_rec("iso-bad", BAD_CERT_EFFECTS, &slots[ISO_GOOD]);
        /* the key would be made, then its certificate refused: neither may stay */
        break_effect(bad->effects, 1);
        kbr_audit_submit(a, bad);
    }
    /* the second halves go in after it, so it is in the middle of the group */
    pthread_barrier_wait(&half);
    for (int th = 0; th < ISO_THREADS; th++)
        pthread_join(threads[th], NULL);
    usleep(50 * 1000);
    assert_int_equal(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(lock);
    iso_wait(&t);

    iso_check_good(&t);
    assert_int_equal(t.results[ISO_GOOD], KBR_ERR_INTERNAL);
    assert_in_range(t.seqs[ISO_GOOD], 2, ISO_GOOD);
    assert_string_equal(t.outcome[ISO_GOOD], "error");
    assert_true(kbr_audit_healthy(a));
    kbr_audit_get_stats(a, &stats);
    assert_int_equal(stats.failed_commits, 0);
    assert_int_equal(stats.records, ISO_GOOD + 1);
    assert_int_equal(stats.refused_records, 1);
    /* At most three transactions: the bad record shared one with hundreds of good ones. */
    assert_in_range(stats.commits, 1, 3);
    assert_int_equal(kbr_audit_last_seq(a), ISO_GOOD + 1);
    kbr_audit_stop(a);
    pthread_barrier_destroy(&half);
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&t.mu);

    assert_chain_ok(f, ISO_GOOD + 1);
    assert_tree_ok(f, ISO_GOOD + 1);
    iso_check_ledger(f);
    iso_check_bad_entry(f, t.seqs[ISO_GOOD]);
    /* The log goes on from where the group left it. */
    a = start_ok(f->url, INT64_MAX);
    assert_int_equal(append(a, "ci:door", "j1", true, NULL, NULL, NULL), KBR_OK);
    kbr_audit_stop(a);
    assert_chain_ok(f, ISO_GOOD + 2);
}

static void free_done(kbr_audit_rec *rec, void *arg)
{
    int *ok = arg;

    if (rec->result == KBR_OK)
        (*ok)++;
    kbr_audit_rec_free(rec);
}

static void test_stop_drains_queue(void **state)
{
    fixture *f = *state;
    kbr_audit *a = start_ok(f->url, 100);
    int ok = 0;

    for (int i = 0; i < 300; i++) {
        kbr_audit_rec *r = rec_ok("ci:door", NULL, "sign", NULL);

        r->done = free_done;
        r->arg = &ok;
        kbr_audit_submit(a, r);
    }
    kbr_audit_stop(a);
    assert_int_equal(ok, 300);
    a = start_ok(f->url, 1000);
    assert_int_equal(kbr_audit_last_seq(a), 300);
    kbr_audit_stop(a);
    assert_chain_ok(f, 300);
}

static void test_record_api(void **state)
{
    fixture *f = *state;
    kbr_audit *a = start_ok(f->url, 0);
    kbr_audit_rec *r = NULL;

    assert_int_equal(kbr_audit_rec_new("ci:\xff", NULL, "sign", NULL, &r), KBR_ERR_BAD_REQUEST);
    assert_null(r);
    r = rec_ok(NULL, NULL, "sign", NULL);
    assert_string_equal(r->outcome, "ok");
    assert_true(json_is_object(r->detail));
    assert_int_equal(kbr_audit_rec_set_outcome(r, "maybe", NULL), KBR_ERR_INTERNAL);
    assert_string_equal(r->outcome, "ok");
    assert_int_equal(kbr_audit_rec_set_outcome(r, "error", "hsm_unavailable"), KBR_OK);
    assert_string_equal(r->error_code, "hsm_unavailable");
    r->done = free_done;
    assert_int_equal(kbr_audit_append_sync(a, r), KBR_ERR_INTERNAL);
    r->done = NULL;
    {
        json_t *malformed = json_ok("[{\"type\": \"key.create\", \"name\": \"k\"}]");
        /* the rules refuse a malformed effect before it can reach a record */
        assert_int_equal(kbr_effects_from_json(malformed, &r->effects), KBR_ERR_INTERNAL);
        assert_null(r->effects);
        json_decref(malformed);
    }
    r->effects = fx_ok(KEY_CREATE("k"));
    break_effect(r->effects, 0);
    /* A malformed effect breaks an invariant of its record alone: the record is an error entry
     * without its effects, the log stays healthy. */
    assert_int_equal(kbr_audit_append_sync(a, r), KBR_ERR_INTERNAL);
    assert_int_equal(r->seq, 1);
    assert_string_equal(r->outcome, "error");
    assert_string_equal(r->error_code, "audit_unavailable");
    assert_true(kbr_audit_healthy(a));
    kbr_effects_free(r->effects);
    r->effects = NULL;
    assert_int_equal(kbr_audit_append_sync(a, r), KBR_OK);
    assert_int_equal(r->seq, 2);
    kbr_audit_rec_free(r);
    kbr_audit_stop(a);
    kbr_audit_stop(NULL);
    kbr_audit_rec_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_recorded_as_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_carries_its_facts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firmware_retry_and_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_list_and_uses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampering_refused_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failure_then_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_failure_in_effect_fails_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_record_fails_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_drains_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_api, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
