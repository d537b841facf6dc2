/*
 * test_mixed_load.c - every kind of request at once: firmware signatures,
 * provisioning, keys, tokens and batches made, used, revoked and retired,
 * and the reads (keys, tokens, audit, checkpoints, proofs, the four views,
 * health, metrics) on several connections while checkpoints fall due every
 * second, so the event thread, the workers and the audit writer all run
 * together.  Then SIGTERM while signatures are in flight: the daemon stops
 * cleanly and every signature it answered is in the log.
 *
 * The other tests check each answer; this one is where `make tsan` sees the
 * threads meet.  Nothing here may be answered 5xx, and the log stays whole,
 * with one exception that is SoftHSM2's: see key_created().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "harness.h"
#include "kbr_audit.h"

#define ROUNDS 12
#define SBOM                                                                                       \
    "\"sbom\":{\"format\":\"cyclonedx\",\"components\":[{\"name\":\"zlib\",\"version\":"           \
    "\"1.3.1\"}]}"
#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"

static kbt_env *env;
static char *ci;      /* signs with fw-ml */
static char *factory; /* provisions into b-ml with ca-ml */
static char *reader;  /* reads everything */

/* ---- one caller: its own connection; what went wrong is kept for the main thread ---- */

typedef struct {
    pthread_barrier_t *go;
    int index;
    kbt_env local;
    int calls;
    char failure[512]; /* the first unexpected answer */
} caller;

static void caller_open(caller *c)
{
    c->local = *env;
    c->local.curl = curl_easy_init();
    /* a transport error is recorded, not failed from this thread */
    c->local.tolerate_transport_errors = true;
}

/* The call, answered with one of the statuses in allowed (0-terminated). New ref to the
 * response body, or NULL. */
static json_t *call(caller *c, const char *method, const char *path, const char *token,
                    const char *body, const long *allowed)
{
    kbt_resp r = kbt_call(&c->local, method, path, token, body);
    json_t *j = NULL;
    bool ok = false;

    c->calls++;
    for (const long *a = allowed; *a != 0 && r.curl_error == 0; a++)
        ok |= r.status == *a;
    if (!ok && c->failure[0] == '\0')
        snprintf(c->failure, sizeof(c->failure), "%s %s: curl %d, HTTP %ld %s", method, path,
                 r.curl_error, r.status, r.body != NULL ? r.body : "");
    if (ok && r.json != NULL)
        j = json_incref(r.json);
    kbt_resp_free(&r);
    return j;
}

static void call_drop(caller *c, const char *method, const char *path, const char *token,
                      const char *body, const long *allowed)
{
    json_decref(call(c, method, path, token, body, allowed));
}

static const long OK200[] = {200, 0};
static const long OK201[] = {201, 0};
/* before the first checkpoint there is none to show */
static const long OK_OR_NONE[] = {200, 404, 0};
static const long HEALTH[] = {200, 0};

/*
 * SoftHSM2 2.6.1's file object store is not safe for a key pair generated in
 * one session while other sessions read token objects (C_GenerateKeyPair then
 * returns CKR_GENERAL_ERROR now and then: SoftHSMv2 issue #573).  The HSM
 * process makes a key alone (objects_lock in pkcs11/hsm_int.h), so every key
 * made under this load must be made.
 */
static bool key_created(caller *c, const char *body)
{
    kbt_resp r = kbt_call(&c->local, "POST", "/v1/keys", env->admin, body);
    bool created = r.curl_error == 0 && r.status == 201;

    c->calls++;
    if (!created) {
        if (c->failure[0] == '\0')
            snprintf(c->failure, sizeof(c->failure), "POST /v1/keys: curl %d, HTTP %ld %s",
                     r.curl_error, r.status, r.body != NULL ? r.body : "");
    }
    kbt_resp_free(&r);
    return created;
}

/* ---- the callers ---- */

static void *signer(void *p)
{
    caller *c = p;
    char body[512];

    caller_open(c);
    pthread_barrier_wait(c->go);
    for (int i = 0; i < 3 * ROUNDS; i++) {
        snprintf(body, sizeof(body),
                 "{\"key\":\"fw-ml\",\"digest\":\"%032x%032x\",\"artifact\":{\"product\":"
                 "\"gateway\",\"version\":\"ml-%d-%d\"}," SBOM "}",
                 c->index + 1, i + 1, c->index, i);
        call_drop(c, "POST", "/v1/sign", ci, body, OK200);
    }
    return NULL;
}

static void *provisioner(void *p)
{
    caller *c = p;
    char serial[32];

    caller_open(c);
    pthread_barrier_wait(c->go);
    for (int i = 0; i < ROUNDS; i++) {
        char *csr = kbt_csr_pem(NULL, "x");
        json_t *body;
        char *text;

        snprintf(serial, sizeof(serial), "ML-%d-%03d", c->index, i);
        body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "key", "ca-ml", "csr_pem", csr, "device",
                         "serial", serial, "product", "gateway", "batch", "b-ml");
        text = json_dumps(body, JSON_COMPACT);
        call_drop(c, "POST", "/v1/provision", factory, text, OK201);
        free(text);
        json_decref(body);
        free(csr);
    }
    return NULL;
}

/* Keys, tokens and batches come and go while the others use the registries. */
static void *admin(void *p)
{
    caller *c = p;
    char body[512], path[128];

    caller_open(c);
    pthread_barrier_wait(c->go);
    for (int i = 0; i < ROUNDS; i++) {
        json_t *issued;
        char *tok = NULL, *jti = NULL;

        snprintf(body, sizeof(body),
                 "{\"name\":\"fw-ml-%d\",\"purpose\":\"firmware-signing\",\"algorithm\":"
                 "\"ecdsa-p256\",\"products\":[\"gateway\"]}",
                 i);
        if (!key_created(c, body))
            goto batch;
        snprintf(path, sizeof(path), "/v1/keys/fw-ml-%d", i);
        call_drop(c, "GET", path, env->admin, NULL, OK200);
        snprintf(body, sizeof(body),
                 "{\"sub\":\"ci:ml-%d\",\"ops\":[\"sign\"],\"keys\":[\"fw-ml-%d\"],\"products\":"
                 "[\"gateway\"],\"ttl\":600}",
                 i, i);
        issued = call(c, "POST", "/v1/tokens", env->admin, body, OK201);
        if (issued != NULL) {
            tok = strdup(json_string_value(json_object_get(issued, "token")));
            jti = strdup(json_string_value(json_object_get(issued, "jti")));
            json_decref(issued);
            snprintf(body, sizeof(body),
                     "{\"key\":\"fw-ml-%d\",\"digest\":\"%064x\",\"artifact\":{\"product\":"
                     "\"gateway\",\"version\":\"adm-%d\"}," SBOM "}",
                     i, i + 1, i);
            call_drop(c, "POST", "/v1/sign", tok, body, OK200);
            snprintf(path, sizeof(path), "/v1/tokens/%s/revoke", jti);
            call_drop(c, "POST", path, env->admin, "{\"reason\":\"load\"}", OK200);
        }
        snprintf(path, sizeof(path), "/v1/keys/fw-ml-%d/retire", i);
        call_drop(c, "POST", path, env->admin, "{\"reason\":\"load\"}", OK200);
    batch:
        snprintf(body, sizeof(body),
                 "{\"batch\":\"b-ml-%d\",\"product\":\"gateway\",\"factory\":\"factory:ml\","
                 "\"quantity\":10,\"market\":[\"DE\"]}",
                 i);
        call_drop(c, "POST", "/v1/batches", env->admin, body, OK201);
        snprintf(path, sizeof(path), "/v1/batches/b-ml-%d", i);
        call_drop(c, "GET", path, reader, NULL, OK200);
        free(tok);
        free(jti);
    }
    return NULL;
}

static void *reads(void *p)
{
    caller *c = p;
    static const char *const paths[] = {
        "/v1/keys",
        "/v1/tokens?active=true",
        "/v1/audit?limit=50",
        "/v1/views/products/gateway?expiring_within_days=30",
        "/v1/views/keys/fw-ml/custody",
        "/v1/views/exposure?component=zlib&fixed_version=9.0",
        "/v1/views/devices/ML-SETUP?product=gateway",
    };

    caller_open(c);
    pthread_barrier_wait(c->go);
    for (int i = 0; i < ROUNDS; i++) {
        call_drop(c, "GET", "/v1/health", NULL, NULL, HEALTH);
        call_drop(c, "GET", "/metrics", NULL, NULL, OK200);
        call_drop(c, "GET", "/v1/jwks", NULL, NULL, OK200);
        for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++)
            call_drop(c, "GET", paths[k], k == 1 ? env->admin : reader, NULL, OK200);
        call_drop(c, "GET", "/v1/audit/checkpoint", reader, NULL, OK_OR_NONE);
        call_drop(c, "GET", "/v1/audit/proof?seq=1", reader, NULL, OK_OR_NONE);
    }
    return NULL;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    char *csr = kbt_csr_pem(NULL, "x");
    json_t *body;
    kbt_resp r;

    (void)state;
    /* four workers, and a checkpoint every 5 entries or every second; the load is one
     * principal's, which a fast build drives past the default 1000 requests per second */
    env = kbt_start("workers = 4\ncheckpoint_every = 5 1s\nmax_connections_per_source = 256\n"
                    "rate_limit = 100000\n");
    kbt_key(env, "fw-ml", "firmware-signing", "ecdsa-p256", "gateway");
    kbt_key(env, "ca-ml", "device-identity-ca", "ecdsa-p256", "gateway");
    r = kbt_call(env, "POST", "/v1/keys/ca-ml/certificate", env->admin,
                 "{\"self_signed\":{\"subject\":\"CN=Load CA\",\"days\":30}}");
    if (r.status != 201)
        fail_msg("CA certificate: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/batches", env->admin,
                 "{\"batch\":\"b-ml\",\"product\":\"gateway\",\"factory\":\"factory:ml\","
                 "\"quantity\":1000,\"market\":[\"DE\",\"US\"]}");
    if (r.status != 201)
        fail_msg("batch: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    ci = kbt_token(env, "{\"sub\":\"ci:gateway\",\"ops\":[\"sign\"],\"keys\":[\"fw-ml\"],"
                        "\"products\":[\"gateway\"],\"ttl\":3600}");
    factory = kbt_token(env, "{\"sub\":\"factory:ml\",\"ops\":[\"provision\"],\"keys\":[\"ca-ml\"],"
                             "\"products\":[\"gateway\"],\"batches\":[\"b-ml\"],\"ttl\":3600}");
    reader = kbt_token(env, "{\"sub\":\"security:ml\",\"ops\":[\"read\"],\"ttl\":3600}");
    /* a device for View D */
    body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "key", "ca-ml", "csr_pem", csr, "device",
                     "serial", "ML-SETUP", "product", "gateway", "batch", "b-ml");
    r = kbt_callj(env, "POST", "/v1/provision", factory, body);
    if (r.status != 201)
        fail_msg("provision: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    json_decref(body);
    free(csr);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(ci);
    free(factory);
    free(reader);
    kbt_free(env);
    return 0;
}

static void verify_log(json_t **out)
{
    json_t *all = kbt_audit_all(env);
    kbr_msg msg = {{0}};

    if (kbr_audit_verify_entries(all, 1, ZERO64, &msg) != KBR_OK)
        fail_msg("the audit log does not verify: %s", msg.text);
    if (out != NULL)
        *out = all;
    else
        json_decref(all);
}

/* ---- tests ---- */

static void test_everything_at_once(void **state)
{
    void *(*const roles[])(void *) = {signer, signer, provisioner, admin, reads, reads};
    enum { N = sizeof(roles) / sizeof(roles[0]) };
    pthread_barrier_t go;
    pthread_t th[N];
    caller c[N];
    kbt_resp r;
    json_t *all, *e;
    size_t i;
    int checkpoints = 0;

    (void)state;
    pthread_barrier_init(&go, NULL, N);
    for (int k = 0; k < N; k++) {
        c[k] = (caller){.go = &go, .index = k};
        assert_int_equal(pthread_create(&th[k], NULL, roles[k], &c[k]), 0);
    }
    for (int k = 0; k < N; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&go);
    for (int k = 0; k < N; k++) {
        curl_easy_cleanup(c[k].local.curl);
        if (c[k].failure[0] != '\0')
            fail_msg("caller %d: %s", k, c[k].failure);
    }
    /* a signature is an HSM call that succeeds: health is ok after it */
    r = kbt_call(env, "POST", "/v1/sign", ci,
                 "{\"key\":\"fw-ml\",\"digest\":\"" ZERO64 "\",\"artifact\":{\"product\":"
                 "\"gateway\",\"version\":\"ml-after\"}," SBOM "}");
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/health", NULL, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    /* give the last checkpoint a second to fall due, then check the log and the tree head */
    sleep(2);
    verify_log(&all);
    json_array_foreach(all, i, e)
    {
        const char *outcome = json_string_value(json_object_get(e, "outcome"));
        const char *op = json_string_value(json_object_get(e, "op"));
        if (strcmp(outcome, "error") == 0)
            fail_msg("entry %zu is an error: %s", i + 1, json_dumps(e, JSON_COMPACT));
        checkpoints += strcmp(op, "audit.checkpoint") == 0;
    }
    assert_true(checkpoints > 0);
    json_decref(all);
}

typedef struct {
    caller c;
    atomic_bool *stop;
    long seqs[4096]; /* X-Audit-Seq of every signature answered */
    int nseqs;
} storm_caller;

static void *storm(void *p)
{
    storm_caller *s = p;
    char body[512];

    caller_open(&s->c);
    pthread_barrier_wait(s->c.go);
    for (int i = 0; !atomic_load(s->stop) && s->nseqs < 4096; i++) {
        kbt_resp r;

        snprintf(body, sizeof(body),
                 "{\"key\":\"fw-ml\",\"digest\":\"%032x%032x\",\"artifact\":{\"product\":"
                 "\"gateway\",\"version\":\"storm-%d-%d\"}," SBOM "}",
                 s->c.index + 100, i + 1, s->c.index, i);
        r = kbt_call(&s->c.local, "POST", "/v1/sign", ci, body);
        if (r.curl_error != 0) {
            kbt_resp_free(&r);
            break; /* the daemon stopped listening */
        }
        if (r.status == 200)
            s->seqs[s->nseqs++] = r.audit_seq;
        else if (r.status != 503 && s->c.failure[0] == '\0')
            snprintf(s->c.failure, sizeof(s->c.failure), "HTTP %ld %s", r.status, r.body);
        kbt_resp_free(&r);
    }
    return NULL;
}

/* SIGTERM with signatures in flight: exit 0, and every answered signature is in the log. */
static void test_stop_under_load(void **state)
{
    enum { N = 4 };
    static storm_caller s[N];
    pthread_barrier_t go;
    pthread_t th[N];
    atomic_bool stop = false;
    json_t *all;
    int answered = 0;

    (void)state;
    pthread_barrier_init(&go, NULL, N + 1);
    for (int k = 0; k < N; k++) {
        s[k] = (storm_caller){.c = {.go = &go, .index = k}, .stop = &stop};
        assert_int_equal(pthread_create(&th[k], NULL, storm, &s[k]), 0);
    }
    pthread_barrier_wait(&go);
    usleep(300 * 1000);
    /* SIGTERM, exit status 0 (asserted), and a new daemon on the same deployment */
    kbt_restart(env);
    atomic_store(&stop, true);
    for (int k = 0; k < N; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&go);
    for (int k = 0; k < N; k++) {
        curl_easy_cleanup(s[k].c.local.curl);
        if (s[k].c.failure[0] != '\0')
            fail_msg("caller %d: %s", k, s[k].c.failure);
        answered += s[k].nseqs;
    }
    assert_true(answered > 0);
    verify_log(&all);
    for (int k = 0; k < N; k++) {
        for (int n = 0; n < s[k].nseqs; n++) {
            json_t *e = json_array_get(all, (size_t)s[k].seqs[n] - 1);
            if (e == NULL || strcmp(json_string_value(json_object_get(e, "op")), "sign") != 0 ||
                strcmp(json_string_value(json_object_get(e, "outcome")), "ok") != 0)
                fail_msg("signature answered with seq %ld is not in the log", s[k].seqs[n]);
        }
    }
    json_decref(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_everything_at_once),
        cmocka_unit_test(test_stop_under_load),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, setup, teardown);
}
