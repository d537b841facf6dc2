/*
 * test_shared.c - several brokers on one PostgreSQL store (run by tests/pg-tests.sh; every
 * test skips on SQLite, whose store is one broker's).  Two keybrokerd instances share the
 * store; the second's HSM token is a copy of the first's made once the keys exist (how an
 * HSM HA group replicates keys; SoftHSM2's file token is not safe for two processes writing
 * it at once).  What an operator checks: one log in one order that `keybroker audit verify`
 * accepts, with every released signature in it; quotas exact when the last units are raced
 * for on both; a revocation on one refused by the other within a second; kill -9 of one under
 * load losing nothing released; an HSM failure under one broker not stopping the other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "harness.h"
#include "kbr_audit.h"
#include "kbr_store.h"

static kbt_env *a, *b; /* two brokers, one store */
static char *ci;       /* a signing token issued on a */

static double now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static kbt_resp sign_on(kbt_env *e, const char *tok, const char *tag, int n)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"key\":\"fw\",\"digest\":\"%08x%056d\",\"artifact\":{\"product\":\"gw\","
             "\"version\":\"%s-%d\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":[]}}",
             (unsigned)n, 0, tag, n);
    return kbt_call(e, "POST", "/v1/sign", tok, body);
}

/* Polls e with tok until it answers want (or 2 s pass); the milliseconds it took. */
static double until_status(kbt_env *e, const char *tok, long want)
{
    double t0 = now_ms();

    for (int n = 0; now_ms() - t0 < 2000.0; n++) {
        kbt_resp r = kbt_call(e, "GET", "/v1/keys", tok, NULL);
        long got = r.status;

        kbt_resp_free(&r);
        if (got == want)
            return now_ms() - t0;
        usleep(10 * 1000);
    }
    fail_msg("no %ld from %s within 2 s", want, e->url);
    return -1;
}

static int setup(void **state)
{
    kbt_resp r;

    (void)state;
    if (!kbt_pg())
        return 0;
    a = kbt_start("checkpoint_every = 2s\n");
    kbt_key(a, "fw", "firmware-signing", "ecdsa-p256", "gw");
    kbt_key(a, "ca-gw", "device-identity-ca", "ecdsa-p256", "gateway");
    r = kbt_call(a, "POST", "/v1/keys/ca-gw/certificate", a->admin,
                 "{\"self_signed\":{\"subject\":\"CN=Gateway CA\",\"days\":3650}}");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    /* the keys exist: the second broker's token is a copy of the first's */
    b = kbt_peer(a, "checkpoint_every = 2s\n");
    ci = kbt_token(a, "{\"sub\":\"ci:gw\",\"ops\":[\"sign\",\"read\"],\"ttl\":3600}");
    until_status(b, ci, 200); /* b follows what a commits */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!kbt_pg())
        return 0;
    free(ci);
    kbt_free(b);
    kbt_free(a);
    return 0;
}

typedef struct {
    kbt_env *e;
    const char *tok;
    char tag[16];
    int count;
    atomic_int *stop; /* set by the test's thread while the signers run */
    json_t *received; /* [{seq, digest, signature_sha256}] of every signature handed out */
    int ok, other;
} signer;

static void *sign_run(void *p)
{
    signer *s = p;
    kbt_env local = *s->e;

    local.curl = curl_easy_init();
    local.tolerate_transport_errors = true;
    for (int n = 0; n < s->count && (s->stop == NULL || !atomic_load(s->stop)); n++) {
        char digest[65], sig_sha[65];
        unsigned char *sig = NULL;
        size_t siglen = 0;
        kbt_resp r = sign_on(&local, s->tok, s->tag, n);

        snprintf(digest, sizeof(digest), "%08x%056d", (unsigned)n, 0);
        if (r.curl_error != 0) {
            kbt_resp_free(&r);
            break;
        }
        if (r.status == 200 &&
            kbr_b64_decode(json_string_value(json_object_get(r.json, "signature_b64")), &sig,
                           &siglen) == KBR_OK) {
            kbr_sha256_hex(sig, siglen, sig_sha);
            json_array_append_new(s->received,
                                  json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)r.audit_seq,
                                            "digest", digest, "signature_sha256", sig_sha));
            s->ok++;
        } else {
            s->other++;
        }
        free(sig);
        kbt_resp_free(&r);
    }
    curl_easy_cleanup(local.curl);
    return NULL;
}

/* Every signature in received is in the log all (by seq), as it was handed out. */
static size_t assert_released_in_log(const json_t *all, signer *s, int n)
{
    json_t *by_seq = json_object(), *got;
    size_t i, total = 0;

    json_array_foreach(all, i, got)
    {
        char key[32];
        snprintf(key, sizeof(key), "%lld",
                 (long long)json_integer_value(json_object_get(got, "seq")));
        json_object_set(by_seq, key, got);
    }
    for (int w = 0; w < n; w++) {
        json_array_foreach(s[w].received, i, got)
        {
            char key[32];
            const json_t *entry, *detail;

            snprintf(key, sizeof(key), "%lld",
                     (long long)json_integer_value(json_object_get(got, "seq")));
            entry = json_object_get(by_seq, key);
            if (entry == NULL)
                fail_msg("a released signature (audit seq %s) is not in the log", key);
            detail = json_object_get(entry, "detail");
            assert_string_equal(json_string_value(json_object_get(entry, "outcome")), "ok");
            assert_string_equal(json_string_value(json_object_get(detail, "signature_sha256")),
                                json_string_value(json_object_get(got, "signature_sha256")));
            total++;
        }
    }
    json_decref(by_seq);
    return total;
}

/* Both brokers sign at once: one log, one order, verified offline with its checkpoint. */
static void test_one_log_two_brokers(void **state)
{
    signer s[4];
    pthread_t th[4];
    json_t *all;
    kbr_msg msg = {{0}};
    char cmd[1024], *out = NULL;
    double t0, ms;
    size_t total;
    kbt_resp r;

    (void)state;
    if (!kbt_pg())
        skip();
    t0 = now_ms();
    for (int w = 0; w < 4; w++) {
        s[w] = (signer){w % 2 == 0 ? a : b, ci, "", 40, NULL, json_array(), 0, 0};
        snprintf(s[w].tag, sizeof(s[w].tag), "log%d", w);
        assert_int_equal(pthread_create(&th[w], NULL, sign_run, &s[w]), 0);
    }
    for (int w = 0; w < 4; w++)
        pthread_join(th[w], NULL);
    ms = now_ms() - t0;
    for (int w = 0; w < 4; w++)
        assert_int_equal(s[w].ok, 40);
    print_message("two brokers: 160 signatures in %.0f ms\n", ms);
    all = kbt_audit_all(b);
    /* seq 1.. with no gap, each entry chained to the one before, whoever wrote it */
    assert_int_equal(kbr_audit_verify_entries(all, 1, NULL, &msg), KBR_OK);
    total = assert_released_in_log(all, s, 4);
    assert_int_equal(total, 160);
    /* a's and b's views of the log are the same log */
    json_decref(all);
    all = kbt_audit_all(a);
    assert_int_equal(kbr_audit_verify_entries(all, 1, NULL, &msg), KBR_OK);
    json_decref(all);
    /* offline: the export and a checkpoint signed in the HSM */
    /* the periodic checkpoints are the lease holder's (a, started first), read through b */
    t0 = now_ms();
    for (;;) {
        r = kbt_call(b, "GET", "/v1/audit/checkpoint", b->admin, NULL);
        if (r.status == 200 && json_integer_value(json_object_get(r.json, "size")) >= 160)
            break;
        assert_true(r.status == 200 || r.status == 404);
        kbt_resp_free(&r);
        if (now_ms() - t0 > 10000.0)
            fail_msg("no checkpoint over the burst within 10 s");
        usleep(100 * 1000);
    }
    {
        char path[400];
        FILE *f;

        snprintf(path, sizeof(path), "%s/cp.json", b->dir);
        assert_int_equal(json_dump_file(r.json, path, 0), 0);
        snprintf(path, sizeof(path), "%s/audit.pem", b->dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(json_string_value(json_object_get(r.json, "public_key_pem")), f);
        fclose(f);
    }
    kbt_resp_free(&r);
    snprintf(cmd, sizeof(cmd),
             "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' audit export > log.jsonl && "
             "'%s/keybroker' audit verify log.jsonl --checkpoint cp.json --pubkey audit.pem 2>&1",
             a->url, a->admin, b->bin_dir, b->bin_dir);
    if (kbt_sh(b, cmd, &out) != 0)
        fail_msg("keybroker audit verify: %s", out);
    free(out);
    for (int w = 0; w < 4; w++)
        json_decref(s[w].received);
}

typedef struct {
    kbt_env *e;
    const char *tok;
    char serial[32];
    long status;
    char code[32];
} station;

static void *station_run(void *p)
{
    station *st = p;
    kbt_env local = *st->e;
    char *csr = kbt_csr_pem(NULL, "x");
    json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "key", "ca-gw", "csr_pem", csr, "device",
                             "serial", st->serial, "product", "gateway", "batch", "b-race");
    kbt_resp r;

    local.curl = curl_easy_init();
    r = kbt_callj(&local, "POST", "/v1/provision", st->tok, body);
    st->status = r.status;
    snprintf(st->code, sizeof(st->code), "%s", kbt_err_code(&r));
    kbt_resp_free(&r);
    json_decref(body);
    curl_easy_cleanup(local.curl);
    free(csr);
    return NULL;
}

static long provisioned(kbt_env *e, const char *batch)
{
    char path[128];
    kbt_resp r;
    long n;

    snprintf(path, sizeof(path), "/v1/batches/%s", batch);
    r = kbt_call(e, "GET", path, e->admin, NULL);
    assert_int_equal(r.status, 200);
    n = (long)json_integer_value(json_object_get(r.json, "provisioned"));
    kbt_resp_free(&r);
    return n;
}

/* The sequence number of the latest checkpoint broker e made itself (its /metrics). */
static long long own_checkpoint_seq(kbt_env *e)
{
    static const char name[] = "\nkeybroker_audit_checkpoint_seq ";
    kbt_resp r = kbt_call(e, "GET", "/metrics", NULL, NULL);
    const char *at;
    long long seq;

    assert_int_equal(r.status, 200);
    at = strstr(r.body, name);
    assert_non_null(at);
    seq = atoll(at + strlen(name));
    kbt_resp_free(&r);
    return seq;
}

/*
 * Of two brokers on one store only the lease holder (a, started first) makes the periodic
 * checkpoints, so that one history is recorded in the HSM in the order the log commits it:
 * signatures made through b are covered by a's next checkpoint, and b makes none.
 */
static void test_one_checkpointer(void **state)
{
    long long b_before;
    json_int_t last = 0;
    double t0;
    kbt_resp r;

    (void)state;
    if (!kbt_pg())
        skip();
    /* a quiet first: its latest checkpoint covers all it committed, so only what b commits can
     * make its next one due (a learns of that from the log, not from a commit of its own) */
    t0 = now_ms();
    for (long long seen = -1, now = own_checkpoint_seq(a); now != seen;
         now = own_checkpoint_seq(a)) {
        seen = now;
        if (now_ms() - t0 > 30000.0)
            fail_msg("broker a still making checkpoints after 30 s");
        sleep(3); /* longer than checkpoint_every */
    }
    b_before = own_checkpoint_seq(b);
    for (int i = 0; i < 12; i++) {
        r = sign_on(b, ci, "lease", i);
        if (r.status != 200)
            fail_msg("sign through b: %ld %s", r.status, r.body);
        last = r.audit_seq;
        kbt_resp_free(&r);
    }
    /* a's next periodic checkpoint covers them (checkpoint_every = 2s) */
    t0 = now_ms();
    for (;;) {
        r = kbt_call(b, "GET", "/v1/audit/checkpoint", b->admin, NULL);
        if (r.status == 200 && json_integer_value(json_object_get(r.json, "size")) >= last)
            break;
        kbt_resp_free(&r);
        if (now_ms() - t0 > 10000.0)
            fail_msg("no checkpoint over b's signatures within 10 s");
        usleep(100 * 1000);
    }
    kbt_resp_free(&r);
    /* two more periods: b, which committed those entries itself, made no head of its own */
    sleep(4);
    assert_true(own_checkpoint_seq(a) > last);
    assert_int_equal(own_checkpoint_seq(b), b_before);
}

/* The last units of a batch, and the last uses of a token, raced for on both brokers. */
static void test_quotas_across_brokers(void **state)
{
    station st[30];
    pthread_t th[30];
    signer s[4];
    int ok = 0, refused = 0, signed_ok = 0, exhausted = 0;
    char *factory, *five;
    kbt_resp r;

    (void)state;
    if (!kbt_pg())
        skip();
    r = kbt_call(a, "POST", "/v1/batches", a->admin,
                 "{\"batch\":\"b-race\",\"product\":\"gateway\",\"factory\":\"factory:acme\","
                 "\"quantity\":10,\"market\":[\"DE\"]}");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    factory = kbt_token(a, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\",\"read\"],"
                           "\"keys\":[\"ca-gw\"],\"products\":[\"gateway\"],"
                           "\"batches\":[\"b-race\"],\"ttl\":3600}");
    until_status(b, factory, 200);
    for (int i = 0; i < 30; i++) {
        st[i] = (station){i % 2 == 0 ? a : b, factory, "", 0, ""};
        snprintf(st[i].serial, sizeof(st[i].serial), "GW-R%03d", i);
    }
    for (int i = 0; i < 30; i++)
        assert_int_equal(pthread_create(&th[i], NULL, station_run, &st[i]), 0);
    for (int i = 0; i < 30; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 30; i++) {
        ok += st[i].status == 201;
        /* refused by this broker's count (429), or by the ledger at commit when the other
         * broker took the unit first (409): either way nothing was released */
        refused += (st[i].status == 429 && strcmp(st[i].code, "quota_exhausted") == 0) ||
                   (st[i].status == 409 && strcmp(st[i].code, "conflict") == 0);
    }
    print_message("batch of 10, 30 stations on two brokers: %d provisioned, %d refused\n", ok,
                  refused);
    assert_int_equal(ok, 10);
    assert_int_equal(refused, 20);
    assert_int_equal(provisioned(a, "b-race"), 10);
    assert_int_equal(provisioned(b, "b-race"), 10);

    /* max_uses 5, 24 signing requests on both brokers at once */
    five = kbt_token(a, "{\"sub\":\"ci:five\",\"ops\":[\"sign\"],\"keys\":[\"fw\"],"
                        "\"max_uses\":5,\"ttl\":3600}");
    usleep(300 * 1000); /* b follows the issuance */
    for (int w = 0; w < 4; w++) {
        s[w] = (signer){w % 2 == 0 ? a : b, five, "", 6, NULL, json_array(), 0, 0};
        snprintf(s[w].tag, sizeof(s[w].tag), "five%d", w);
    }
    for (int w = 0; w < 4; w++)
        assert_int_equal(pthread_create(&th[w], NULL, sign_run, &s[w]), 0);
    for (int w = 0; w < 4; w++)
        pthread_join(th[w], NULL);
    for (int w = 0; w < 4; w++) {
        signed_ok += s[w].ok;
        exhausted += s[w].other;
        json_decref(s[w].received);
    }
    print_message("max_uses 5, 24 requests on two brokers: %d signed, %d refused\n", signed_ok,
                  exhausted);
    assert_int_equal(signed_ok, 5);
    assert_int_equal(exhausted, 19);
    r = sign_on(b, five, "five-after", 1);
    assert_int_equal(r.status, 429);
    kbt_resp_free(&r);
    free(five);
    free(factory);
}

/* A revocation on one broker is refused by the other within a second. */
static void test_revocation_reaches_the_other(void **state)
{
    char *tok, path[128], jti[64] = "";
    double known_ms, refused_ms;
    kbt_resp r;

    (void)state;
    if (!kbt_pg())
        skip();
    r = kbt_call(a, "POST", "/v1/tokens", a->admin,
                 "{\"sub\":\"ci:rev\",\"ops\":[\"read\"],\"ttl\":600}");
    assert_int_equal(r.status, 201);
    tok = strdup(json_string_value(json_object_get(r.json, "token")));
    snprintf(jti, sizeof(jti), "%s", json_string_value(json_object_get(r.json, "jti")));
    kbt_resp_free(&r);
    known_ms = until_status(b, tok, 200);
    snprintf(path, sizeof(path), "/v1/tokens/%s/revoke", jti);
    r = kbt_call(a, "POST", path, a->admin, "{\"reason\":\"leaked\"}");
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    refused_ms = until_status(b, tok, 401);
    print_message("issued on a, accepted by b after %.0f ms; revoked on a, refused by b after "
                  "%.0f ms\n",
                  known_ms, refused_ms);
    assert_true(refused_ms < 1000.0);
    r = kbt_call(a, "GET", "/v1/keys", tok, NULL);
    assert_int_equal(r.status, 401);
    kbt_resp_free(&r);
    free(tok);
}

/* kill -9 of one broker under load: every signature released by either is in the log, and
 * the other goes on serving. */
static void test_kill_one_under_load(void **state)
{
    kbt_env *c;
    signer s[4];
    pthread_t th[4];
    atomic_int stop = 0;
    json_t *all;
    kbr_msg msg = {{0}};
    size_t total;
    kbt_resp r;

    (void)state;
    if (!kbt_pg())
        skip();
    c = kbt_peer(a, NULL); /* the one killed */
    until_status(c, ci, 200);
    for (int w = 0; w < 4; w++) {
        s[w] = (signer){w % 2 == 0 ? c : b, ci, "", 100000, &stop, json_array(), 0, 0};
        snprintf(s[w].tag, sizeof(s[w].tag), "kill%d", w);
        assert_int_equal(pthread_create(&th[w], NULL, sign_run, &s[w]), 0);
    }
    usleep(1500 * 1000);
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    usleep(1000 * 1000); /* b alone */
    atomic_store(&stop, 1);
    for (int w = 0; w < 4; w++)
        pthread_join(th[w], NULL);
    c->pid = 0; /* once no signer copies c any more */
    print_message("killed broker released %d, survivor %d\n", s[0].ok + s[2].ok, s[1].ok + s[3].ok);
    assert_true(s[0].ok + s[2].ok > 10);
    assert_true(s[1].ok + s[3].ok > 10);
    all = kbt_audit_all(b);
    assert_int_equal(kbr_audit_verify_entries(all, 1, NULL, &msg), KBR_OK);
    total = assert_released_in_log(all, s, 4);
    assert_int_equal(total, (size_t)(s[0].ok + s[1].ok + s[2].ok + s[3].ok));
    json_decref(all);
    r = sign_on(b, ci, "after-kill", 1);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    for (int w = 0; w < 4; w++)
        json_decref(s[w].received);
    kbt_free(c);
}

/* The HSM process under one broker dies: that broker answers 503 hsm_unavailable, with
 * nothing released, until its keeper has started another; the other broker never stops. */
static void test_hsm_fails_under_one(void **state)
{
    pid_t keeper = 0, hsm = 0;
    bool saw_503 = false, back = false;
    int a_ok = 0;
    double t0;

    (void)state;
    if (!kbt_pg())
        skip();
    kbt_hsm_pids(b, &keeper, &hsm);
    assert_true(hsm > 0);
    kill(hsm, SIGKILL);
    t0 = now_ms();
    for (int n = 0; now_ms() - t0 < 10000.0 && !back; n++) {
        kbt_resp ra = sign_on(a, ci, "hsm-a", n), rb = sign_on(b, ci, "hsm-b", n);

        a_ok += ra.status == 200;
        assert_int_equal(ra.status, 200);
        if (rb.status == 503) {
            assert_string_equal(kbt_err_code(&rb), "hsm_unavailable");
            assert_null(json_object_get(rb.json, "signature_b64"));
            saw_503 = true;
        } else {
            assert_int_equal(rb.status, 200);
            back = true;
        }
        kbt_resp_free(&ra);
        kbt_resp_free(&rb);
    }
    print_message("HSM process of b killed: a signed %d times meanwhile, b %s\n", a_ok,
                  back ? "came back" : "did not come back");
    (void)saw_503; /* the keeper may restart it before the first call reaches it */
    assert_true(back);
}

static void cluster(const char *what)
{
    char cmd[600];
    const char *dir = getenv("KBT_PG_DIR"), *script = getenv("KBT_PG_CLUSTER");

    snprintf(cmd, sizeof(cmd), "'%s' %s '%s'", script, what, dir);
    assert_int_equal(system(cmd), 0);
}

/*
 * PostgreSQL goes away under a serving broker: every call that would release something gets
 * 503 audit_unavailable and releases nothing; when it is back the broker serves again, with
 * no restart, and the log goes on from where it was.  A broker that cannot reach it at start
 * exits 1 naming it.
 */
static void test_store_lost_and_back(void **state)
{
    kbt_resp r;
    char *out = NULL, conf[300];
    kbt_env *e;
    json_t *all;
    kbr_msg msg = {{0}};
    double t0;
    int n = 0;

    (void)state;
    if (!kbt_pg() || getenv("KBT_PG_DIR") == NULL)
        skip();
    r = sign_on(a, ci, "lost", n++);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    cluster("pause");
    for (int i = 0; i < 3; i++) {
        r = sign_on(a, ci, "lost", n++);
        assert_int_equal(r.status, 503);
        assert_string_equal(kbt_err_code(&r), "audit_unavailable");
        assert_null(json_object_get(r.json, "signature_b64"));
        kbt_resp_free(&r);
    }
    cluster("resume");
    t0 = now_ms();
    for (;;) {
        r = sign_on(a, ci, "lost", n++);
        if (r.status == 200)
            break;
        assert_int_equal(r.status, 503);
        kbt_resp_free(&r);
        if (now_ms() - t0 > 10000.0)
            fail_msg("no signature within 10 s of PostgreSQL coming back");
        usleep(100 * 1000);
    }
    kbt_resp_free(&r);
    print_message("PostgreSQL back: a signs again after %.0f ms, without a restart\n",
                  now_ms() - t0);
    r = sign_on(b, ci, "lost-b", 1);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    all = kbt_audit_all(a);
    assert_int_equal(kbr_audit_verify_entries(all, 1, NULL, &msg), KBR_OK);
    json_decref(all);

    /* unreachable at start: exit status 1, naming the database */
    e = kbt_new();
    snprintf(conf, sizeof(conf), "%s/keybroker.conf", e->dir);
    snprintf(e->store, sizeof(e->store), "postgresql://kbr@127.0.0.1:1/kbr?connect_timeout=5");
    e->peer = true;
    kbt_launch_config(e, NULL);
    assert_int_equal(kbt_run_daemon(e, "-c keybroker.conf --init", &out), 1);
    assert_non_null(strstr(out, "cannot connect to PostgreSQL"));
    assert_non_null(strstr(out, "127.0.0.1:1/kbr"));
    free(out);
    kbt_free(e);
}

/* Which stores are shared: PostgreSQL's; a SQLite store stays one broker's (its lock). */
static void test_which_stores_are_shared(void **state)
{
    (void)state;
    assert_false(kbr_store_shared("sqlite:keybroker.db"));
    assert_true(kbr_store_shared("postgresql://db.example/keybroker"));
    assert_true(kbr_store_shared("postgres://db.example/keybroker"));
    assert_false(kbr_store_shared("mysql://db.example/keybroker"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_which_stores_are_shared),
        cmocka_unit_test(test_one_log_two_brokers),
        cmocka_unit_test(test_one_checkpointer),
        cmocka_unit_test(test_quotas_across_brokers),
        cmocka_unit_test(test_revocation_reaches_the_other),
        cmocka_unit_test(test_kill_one_under_load),
        cmocka_unit_test(test_hsm_fails_under_one),
        cmocka_unit_test(test_store_lost_and_back),
    };

    return cmocka_run_group_tests_name("brokers sharing a PostgreSQL store", tests, setup,
                                       teardown);
}
