/*
 * test_isolation.c - one caller's bad request fails that request only: a
 * certificate attach the broker must refuse, fired into a burst of
 * concurrent firmware signatures, is answered 400 and recorded as a
 * denial, while every signature of the burst is answered and recorded, the
 * audit log stays whole and /v1/health stays ok.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/x509.h>

#include "harness.h"
#include "kbr_audit.h"

/* Callers at once, each on a connection of its own: with the attach and the harness's own,
 * more than one source may hold by default, hence the limits in setup. */
#define SIGNERS 128

static kbt_env *env;
static char *ci; /* signs with fw-iso */

static int setup(void **state)
{
    (void)state;
    env = kbt_start("max_connections_per_source = 512\nmax_connections = 1024\n");
    kbt_key(env, "ca-iso", "device-identity-ca", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-iso", "firmware-signing", "ecdsa-p256", "gateway");
    ci = kbt_token(env, "{\"sub\":\"ci:gateway\",\"ops\":[\"sign\"],\"keys\":[\"fw-iso\"],"
                        "\"products\":[\"gateway\"],\"ttl\":3600}");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(ci);
    kbt_free(env);
    return 0;
}

/*
 * A CA certificate for pub, the key of ca-iso, whose serial number is negative: well-formed
 * enough for OpenSSL to read and to carry the key, which is all the broker once checked.
 * Signed by a throwaway key, as the HSM key's private half is out of reach.
 */
static char *negative_serial_cert(EVP_PKEY *pub)
{
    EVP_PKEY *signer = EVP_EC_gen("P-256");
    X509 *x = kbt_ca_cert(pub, "Isolation CA", "-0A1B2C3D", signer, NULL);
    char *pem = kbt_x509_pem(x);

    X509_free(x);
    EVP_PKEY_free(signer);
    return pem;
}

typedef struct {
    pthread_barrier_t *go;
    int index;
    long status, audit_seq;
    char body[256];
} caller;

static void caller_done(caller *c, kbt_resp *r)
{
    c->status = r->status;
    c->audit_seq = r->audit_seq;
    snprintf(c->body, sizeof(c->body), "%s", r->body != NULL ? r->body : "");
}

static void *sign_one(void *p)
{
    caller *c = p;
    kbt_env local = *env;
    char body[1024];
    kbt_resp r;

    local.curl = curl_easy_init();
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-iso\",\"digest\":\"%064x\",\"artifact\":{\"product\":\"gateway\","
             "\"version\":\"iso-%d\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":"
             "[{\"name\":\"zlib\",\"version\":\"1.3.1\"}]}}",
             c->index + 1, c->index);
    pthread_barrier_wait(c->go);
    r = kbt_call(&local, "POST", "/v1/sign", ci, body);
    caller_done(c, &r);
    kbt_resp_free(&r);
    curl_easy_cleanup(local.curl);
    return NULL;
}

typedef struct {
    caller c;
    char *pem;
} attacher;

/* Sent a moment after the burst starts, so its record is queued among theirs. */
static void *attach_bad(void *p)
{
    attacher *a = p;
    kbt_env local = *env;
    json_t *body = json_pack("{s:s}", "pem", a->pem);
    kbt_resp r;

    local.curl = curl_easy_init();
    pthread_barrier_wait(a->c.go);
    usleep(3000);
    r = kbt_callj(&local, "POST", "/v1/keys/ca-iso/certificate", env->admin, body);
    caller_done(&a->c, &r);
    kbt_resp_free(&r);
    json_decref(body);
    curl_easy_cleanup(local.curl);
    return NULL;
}

static void assert_signers_ok(const caller *signers)
{
    int failed = 0, first = -1;

    for (int i = 0; i < SIGNERS; i++) {
        if (signers[i].status == 200 && signers[i].audit_seq > 0)
            continue;
        failed++;
        first = first < 0 ? i : first;
    }
    if (failed > 0)
        fail_msg("%d of %d bystander signatures failed; the first: %ld %s", failed, SIGNERS,
                 signers[first].status, signers[first].body);
}

static void assert_health_ok(void)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/health", NULL, NULL);

    if (r.status != 200)
        fail_msg("health: %ld %s", r.status, r.body);
    assert_string_equal(json_string_value(json_object_get(r.json, "audit")), "ok");
    kbt_resp_free(&r);
}

/* The refusal is a denial entry of its own, and the key has no certificate. */
static void assert_refusal_recorded(long seq)
{
    json_t *all = kbt_audit_all(env), *e = json_array_get(all, (size_t)seq - 1);
    kbr_msg msg = {{0}};
    kbt_resp r;

    assert_int_equal(kbr_audit_verify_entries(all, 1, NULL, &msg), KBR_OK);
    assert_int_equal(json_integer_value(json_object_get(e, "seq")), seq);
    assert_string_equal(json_string_value(json_object_get(e, "key")), "ca-iso");
    assert_string_equal(json_string_value(json_object_get(e, "outcome")), "denied");
    assert_string_equal(json_string_value(json_object_get(e, "error_code")), "bad_request");
    json_decref(all);
    r = kbt_call(env, "GET", "/v1/keys/ca-iso", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_null(json_object_get(r.json, "certificate")));
    kbt_resp_free(&r);
}

static void test_bad_attach_among_signatures(void **state)
{
    static caller signers[SIGNERS];
    pthread_t th[SIGNERS + 1];
    pthread_barrier_t go;
    EVP_PKEY *pub = kbt_pubkey(env, "ca-iso");
    attacher bad = {.pem = negative_serial_cert(pub)};

    (void)state;
    assert_int_equal(pthread_barrier_init(&go, NULL, SIGNERS + 1), 0);
    bad.c.go = &go;
    for (int i = 0; i < SIGNERS; i++) {
        signers[i] = (caller){.go = &go, .index = i};
        assert_int_equal(pthread_create(&th[i], NULL, sign_one, &signers[i]), 0);
    }
    assert_int_equal(pthread_create(&th[SIGNERS], NULL, attach_bad, &bad), 0);
    for (int i = 0; i <= SIGNERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);

    assert_signers_ok(signers);
    assert_health_ok();
    if (bad.c.status != 400 || strstr(bad.c.body, "\"bad_request\"") == NULL ||
        strstr(bad.c.body, "serial number") == NULL)
        fail_msg("bad certificate: expected 400 bad_request naming the serial number, got %ld %s",
                 bad.c.status, bad.c.body);
    assert_true(bad.c.audit_seq > 0);
    assert_refusal_recorded(bad.c.audit_seq);
    free(bad.pem);
    EVP_PKEY_free(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_attach_among_signatures),
    };

    return cmocka_run_group_tests_name("isolation", tests, setup, teardown);
}
