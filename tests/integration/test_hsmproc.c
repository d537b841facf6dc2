/*
 * test_hsmproc.c - the HSM in processes of its own: the daemon that parses
 * requests never maps the PKCS#11 module, every process is sandboxed, an
 * HSM process killed under load costs 503s and no unrecorded signature and
 * is replaced by itself, and the daemon's end (a stop, or its HSM keeper
 * killed) takes the HSM processes with it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
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

#define SOFTHSM "libsofthsm2.so"

static char *file_text(const char *path)
{
    char *buf = NULL;
    size_t n = 0;

    return kbr_file_read(path, 1 << 24, &buf, &n) == KBR_OK ? buf : NULL;
}

static char *proc_text(pid_t pid, const char *what)
{
    char path[64];
    char *text;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
    text = file_text(path);
    if (text == NULL)
        fail_msg("cannot read %s", path);
    return text;
}

static bool maps_module(pid_t pid)
{
    char *maps = proc_text(pid, "maps");
    bool found = strstr(maps, SOFTHSM) != NULL;

    free(maps);
    return found;
}

/* no_new_privs and a seccomp filter, as /proc shows them */
static void assert_sandboxed(pid_t pid)
{
    char *status = proc_text(pid, "status");

    if (strstr(status, "\nNoNewPrivs:\t1\n") == NULL || strstr(status, "\nSeccomp:\t2\n") == NULL)
        fail_msg("pid %d is not sandboxed:\n%s", (int)pid, status);
    free(status);
}

static bool alive(pid_t pid)
{
    return kill(pid, 0) == 0 || errno != ESRCH;
}

static int occurrences(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static char *ci_token(kbt_env *e)
{
    kbt_key(e, "fw", "firmware-signing", "ecdsa-p256", "gw");
    return kbt_token(e, "{\"sub\":\"ci:gw\",\"ops\":[\"sign\",\"read\"],\"ttl\":600}");
}

static long sign_status(kbt_env *e, const char *tok, const char *version)
{
    char body[512];
    kbt_resp r;
    long status;

    snprintf(body, sizeof(body),
             "{\"key\":\"fw\",\"digest\":\"%064d\",\"artifact\":{\"product\":\"gw\",\"version\":"
             "\"%s\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":[]}}",
             0, version);
    r = kbt_call(e, "POST", "/v1/sign", tok, body);
    status = r.status;
    kbt_resp_free(&r);
    return status;
}

static void test_processes_and_sandbox(void **state)
{
    kbt_env *e = kbt_start(NULL);
    char *tok = ci_token(e), *comm;
    pid_t keeper, hsm;

    (void)state;
    assert_int_equal(sign_status(e, tok, "v1"), 200);
    kbt_hsm_pids(e, &keeper, &hsm);
    /* the process that parses HTTP, TLS, JSON, CSRs and COSE has no module mapped */
    assert_false(maps_module(e->pid));
    assert_false(maps_module(keeper));
    assert_true(maps_module(hsm));
    comm = proc_text(hsm, "comm");
    assert_string_equal(comm, "kbrd-hsm\n");
    free(comm);
    assert_sandboxed(e->pid);
    assert_sandboxed(keeper);
    assert_sandboxed(hsm);
    free(tok);
    kbt_free(e);
    /* a stop takes the HSM processes with it */
    assert_false(alive(hsm));
    assert_false(alive(keeper));
}

typedef struct {
    kbt_env *e;
    const char *tok;
    int worker;
    atomic_int *stop;
    json_t *received; /* [{seq, digest, signature_sha256}] of every signature handed out */
    int ok, unavailable, other;
    char other_body[256];
} burst;

static void *burst_run(void *p)
{
    burst *b = p;
    kbt_env local = *b->e;

    local.curl = curl_easy_init();
    for (int n = 0; !atomic_load(b->stop) && n < 100000; n++) {
        char body[512], digest[65], sig_sha[65];
        unsigned char *sig = NULL;
        size_t siglen = 0;
        kbt_resp r;

        snprintf(digest, sizeof(digest), "%08x%056d", (unsigned)(b->worker * 100000 + n), 0);
        snprintf(body, sizeof(body),
                 "{\"key\":\"fw\",\"digest\":\"%s\",\"artifact\":{\"product\":\"gw\","
                 "\"version\":\"h%d-%d\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":[]}}",
                 digest, b->worker, n);
        r = kbt_call(&local, "POST", "/v1/sign", b->tok, body);
        if (r.status == 200 &&
            kbr_b64_decode(json_string_value(json_object_get(r.json, "signature_b64")), &sig,
                           &siglen) == KBR_OK) {
            b->ok++;
            kbr_sha256_hex(sig, siglen, sig_sha);
            json_array_append_new(b->received,
                                  json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)r.audit_seq,
                                            "digest", digest, "signature_sha256", sig_sha));
        } else if (r.status == 503 && strcmp(kbt_err_code(&r), "hsm_unavailable") == 0 &&
                   strstr(r.body, "signature") == NULL) {
            b->unavailable++;
        } else {
            b->other++;
            snprintf(b->other_body, sizeof(b->other_body), "%ld %s", r.status, r.body);
        }
        free(sig);
        kbt_resp_free(&r);
    }
    curl_easy_cleanup(local.curl);
    return NULL;
}

/* Every signature a client got is in the log, with its digest. */
static size_t check_released(kbt_env *e, burst *b, int nb)
{
    json_t *all = kbt_audit_all(e), *by_seq = json_object(), *got;
    kbr_msg msg = {{0}};
    size_t i, total = 0;

    assert_int_equal(kbr_audit_verify_entries(all, 1, NULL, &msg), KBR_OK);
    json_array_foreach(all, i, got)
    {
        char key[32];
        snprintf(key, sizeof(key), "%lld",
                 (long long)json_integer_value(json_object_get(got, "seq")));
        json_object_set(by_seq, key, got);
    }
    for (int w = 0; w < nb; w++) {
        json_array_foreach(b[w].received, i, got)
        {
            char key[32];
            json_t *entry, *detail;
            snprintf(key, sizeof(key), "%lld",
                     (long long)json_integer_value(json_object_get(got, "seq")));
            entry = json_object_get(by_seq, key);
            if (entry == NULL)
                fail_msg("a released signature (audit seq %s) is not in the log", key);
            detail = json_object_get(entry, "detail");
            assert_string_equal(json_string_value(json_object_get(detail, "digest")),
                                json_string_value(json_object_get(got, "digest")));
            assert_string_equal(json_string_value(json_object_get(detail, "signature_sha256")),
                                json_string_value(json_object_get(got, "signature_sha256")));
            total++;
        }
    }
    json_decref(all);
    json_decref(by_seq);
    return total;
}

#define BURSTS 8

/*
 * kill -9 of the HSM process under load.  It is stopped first, so that
 * requests are surely inside the HSM when it dies: those answer 503
 * hsm_unavailable without a signature, the keeper starts another HSM
 * process at once, and signing goes on without a restart of the daemon.
 */
static void test_hsm_process_killed_under_load(void **state)
{
    /* the requests held up while the HSM was stopped arrive at once: no rate limit */
    kbt_env *e = kbt_start("rate_limit = 0\n");
    char *tok = ci_token(e), *log;
    atomic_int stop = 0;
    pthread_t th[BURSTS];
    burst b[BURSTS];
    pid_t keeper, hsm, keeper2, hsm2;
    int ok = 0, unavailable = 0;
    char line[128];

    (void)state;
    kbt_hsm_pids(e, &keeper, &hsm);
    for (int w = 0; w < BURSTS; w++) {
        b[w] = (burst){.e = e, .tok = tok, .worker = w, .stop = &stop, .received = json_array()};
        assert_int_equal(pthread_create(&th[w], NULL, burst_run, &b[w]), 0);
    }
    usleep(1000 * 1000);
    assert_int_equal(kill(hsm, SIGSTOP), 0);
    usleep(300 * 1000);
    assert_int_equal(kill(hsm, SIGKILL), 0);
    usleep(1500 * 1000);
    atomic_store(&stop, 1);
    for (int w = 0; w < BURSTS; w++) {
        pthread_join(th[w], NULL);
        if (b[w].other > 0)
            fail_msg("burst %d: an answer neither 200 nor 503 hsm_unavailable: %s", w,
                     b[w].other_body);
        ok += b[w].ok;
        unavailable += b[w].unavailable;
    }
    /* the calls caught inside the dead process were refused, and signing went on after it */
    assert_true(unavailable >= 1);
    assert_true(ok > 50);
    kbt_hsm_pids(e, &keeper2, &hsm2);
    assert_int_equal(keeper2, keeper);
    assert_true(hsm2 != hsm);
    assert_true(maps_module(hsm2));
    assert_sandboxed(hsm2);
    assert_int_equal(sign_status(e, tok, "after"), 200);
    assert_true(check_released(e, b, BURSTS) == (size_t)ok);
    for (int w = 0; w < BURSTS; w++)
        json_decref(b[w].received);
    kbt_stop(e);
    /* said once, by the keeper, with how it died; the network process said it once too */
    log = file_text(e->log);
    assert_non_null(log);
    snprintf(line, sizeof(line), "the HSM process (pid %d) was killed by signal 9", (int)hsm);
    assert_int_equal(occurrences(log, line), 1);
    assert_int_equal(occurrences(log, "keybrokerd: HSM unavailable"), 1);
    free(log);
    free(tok);
    kbt_free(e);
}

/* Without its keeper the daemon can make no HSM session: it stops with status 1. */
static void test_keeper_killed(void **state)
{
    kbt_env *e = kbt_start(NULL);
    pid_t keeper, hsm;
    char *log;

    (void)state;
    kbt_hsm_pids(e, &keeper, &hsm);
    assert_int_equal(kill(keeper, SIGKILL), 0);
    assert_int_equal(kbt_wait_exit(e, 10000), 1);
    /* the HSM process ends with its control socket and its connections */
    for (int i = 0; alive(hsm); i++) {
        assert_true(i < 200);
        usleep(50 * 1000);
    }
    log = file_text(e->log);
    assert_non_null(strstr(log, "was killed by signal 9"));
    assert_non_null(strstr(log, "the HSM keeper is gone"));
    free(log);
    /* a service manager starts it again, and it serves */
    assert_int_equal(kbt_spawn_daemon(e), 0);
    kbt_hsm_pids(e, &keeper, &hsm);
    kbt_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_processes_and_sandbox),
        cmocka_unit_test(test_hsm_process_killed_under_load),
        cmocka_unit_test(test_keeper_killed),
    };

    return cmocka_run_group_tests_name("hsmproc", tests, NULL, NULL);
}
