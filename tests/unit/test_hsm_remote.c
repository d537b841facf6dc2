/*
 * test_hsm_remote.c - kbr_hsm_remote_open against kbr_hsm_serve over a
 * real control socket, the server on a thread of this process with a real
 * SoftHSM2 token: every call gives what the module in-process gives,
 * sessions run in parallel, and a malformed frame or a request out of
 * turn closes only its own connection.  (A session connecting again after
 * its HSM process died is integration/test_hsmproc.c's.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "softhsm_token.h"

#include "kbr_hsm.h"

typedef struct {
    kbr_hsm *local;  /* the module, served */
    kbr_hsm *remote; /* what the network process holds */
    int ctl;         /* the server's end */
    int raw_ctl;     /* the remote end again, for connections made by hand */
    pthread_t server;
    kbr_err served;
} fixture;

static fixture fx;

#define RECORD "kbr/test/record"

/*
 * The served data object's rule here: a value may only grow, and the evidence must say
 * "grows" (the broker's own check, in keybrokerd's HSM process, asks for a consistency proof).
 */
static kbr_err grows_only(void *arg, kbr_hsm_session *s, const kbr_hsm_data *old, size_t nold,
                          const unsigned char *value, size_t len, const unsigned char *evidence,
                          size_t evlen)
{
    (void)arg;
    (void)s;
    if (evlen != 5 || memcmp(evidence, "grows", 5) != 0)
        return KBR_ERR_BAD_REQUEST;
    for (size_t i = 0; i < nold; i++)
        if (len < old[i].len || memcmp(value, old[i].value, old[i].len) != 0)
            return KBR_ERR_CONFLICT;
    return KBR_OK;
}

static const kbr_hsm_data_policy record_policy = {RECORD, grows_only, NULL};

static void *serve_main(void *arg)
{
    fixture *f = arg;

    f->served = kbr_hsm_serve(f->local, f->ctl, &record_policy);
    return NULL;
}

static int setup(void **state)
{
    kbr_secret *pin = NULL;
    kbr_msg msg = {{0}};
    int sv[2];

    (void)state;
    if (kbr_secret_new(KBT_USER_PIN, strlen(KBT_USER_PIN), &pin) != KBR_OK ||
        kbr_hsm_open(kbt_module_path, KBT_TOKEN_LABEL, pin, &fx.local, &msg) != KBR_OK)
        return -1;
    kbr_secret_free(pin);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    fx.ctl = sv[1];
    fx.raw_ctl = dup(sv[0]);
    if (kbr_hsm_remote_open(sv[0], &fx.remote) != KBR_OK)
        return -1;
    return pthread_create(&fx.server, NULL, serve_main, &fx) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    close(fx.raw_ctl);
    /* closing the remote side's control socket ends kbr_hsm_serve once its sessions are gone */
    kbr_hsm_close(fx.remote);
    pthread_join(fx.server, NULL);
    close(fx.ctl);
    kbr_hsm_close(fx.local);
    return fx.served == KBR_OK ? 0 : -1;
}

static EVP_PKEY *remote_key(kbr_hsm_session *s, const char *label)
{
    EVP_PKEY *pk = NULL;
    char *pem = NULL;

    assert_int_equal(kbr_hsm_public_key(s, label, &pk), KBR_OK);
    assert_non_null(pk);
    assert_int_equal(kbr_hsm_public_key_pem(s, label, &pem), KBR_OK);
    assert_non_null(strstr(pem, "BEGIN PUBLIC KEY"));
    free(pem);
    return pk;
}

static bool verifies(EVP_PKEY *pk, const unsigned char *dg, size_t dglen, const unsigned char *sig,
                     size_t siglen, bool digest)
{
    EVP_PKEY_CTX *ctx = NULL;
    EVP_MD_CTX *mctx = NULL;
    bool ok;

    if (digest) {
        ctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
             EVP_PKEY_verify(ctx, sig, siglen, dg, dglen) == 1;
        EVP_PKEY_CTX_free(ctx);
        return ok;
    }
    mctx = EVP_MD_CTX_new();
    ok = mctx != NULL && EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, pk) == 1 &&
         EVP_DigestVerify(mctx, sig, siglen, dg, dglen) == 1;
    EVP_MD_CTX_free(mctx);
    return ok;
}

static void test_calls_as_in_process(void **state)
{
    kbr_hsm_session *s = NULL, *local = NULL;
    kbr_hsm_key_info info, again, *items = NULL;
    unsigned char dg[32], *sig = NULL;
    size_t siglen = 0, n = 0, seen = 0;
    EVP_PKEY *pk;

    (void)state;
    assert_int_equal(kbr_hsm_session_open(fx.remote, &s), KBR_OK);
    assert_int_equal(kbr_hsm_session_ping(s), KBR_OK);
    assert_int_equal(kbr_hsm_generate(s, "remote-p256", KBR_ALG_ECDSA_P256, &info), KBR_OK);
    assert_string_equal(info.label, "remote-p256");
    assert_true(info.alg_known && info.alg == KBR_ALG_ECDSA_P256);
    assert_true(info.sensitive && !info.extractable && info.token && info.can_sign);
    /* the same facts as the module in this process reports */
    assert_int_equal(kbr_hsm_session_open(fx.local, &local), KBR_OK);
    assert_int_equal(kbr_hsm_find_key(local, "remote-p256", &again), KBR_OK);
    assert_memory_equal(&info, &again, sizeof(info));
    assert_int_equal(kbr_hsm_find_key(s, "remote-p256", &again), KBR_OK);
    assert_memory_equal(&info, &again, sizeof(info));
    /* errors travel as they are */
    assert_int_equal(kbr_hsm_generate(s, "remote-p256", KBR_ALG_ECDSA_P256, &info),
                     KBR_ERR_CONFLICT);
    assert_int_equal(kbr_hsm_find_key(s, "no-such-key", &info), KBR_ERR_NOT_FOUND);
    SHA256((const unsigned char *)"remote", 6, dg);
    assert_int_equal(
        kbr_hsm_sign(s, "remote-p256", KBR_SIG_EDDSA, KBR_HASH_NONE, dg, 32, &sig, &siglen),
        KBR_ERR_BAD_REQUEST);
    assert_null(sig);
    /* a signature that verifies under the public key as the remote side reads it */
    assert_int_equal(
        kbr_hsm_sign(s, "remote-p256", KBR_SIG_ECDSA_DER, KBR_HASH_SHA256, dg, 32, &sig, &siglen),
        KBR_OK);
    pk = remote_key(s, "remote-p256");
    assert_true(verifies(pk, dg, 32, sig, siglen, true));
    free(sig);
    EVP_PKEY_free(pk);
    /* Ed25519 signs the message itself, an empty one too */
    assert_int_equal(kbr_hsm_generate(s, "remote-ed", KBR_ALG_ED25519, &info), KBR_OK);
    assert_int_equal(
        kbr_hsm_sign(s, "remote-ed", KBR_SIG_EDDSA, KBR_HASH_NONE, NULL, 0, &sig, &siglen), KBR_OK);
    pk = remote_key(s, "remote-ed");
    assert_true(verifies(pk, (const unsigned char *)"", 0, sig, siglen, false));
    free(sig);
    EVP_PKEY_free(pk);
    /* the inventory names both keys, private and public halves */
    assert_int_equal(kbr_hsm_list_objects(s, &items, &n), KBR_OK);
    for (size_t i = 0; i < n; i++)
        seen += strncmp(items[i].label, "remote-", 7) == 0;
    assert_int_equal(seen, 4);
    free(items);
    kbr_hsm_session_close(local);
    kbr_hsm_session_close(s);
}

#define THREADS 4
#define SIGS    50

static void *signer(void *arg)
{
    EVP_PKEY *pk = arg;
    kbr_hsm_session *s = NULL;
    unsigned char dg[32], *sig = NULL;
    size_t siglen = 0;
    long good = 0;

    if (kbr_hsm_session_open(fx.remote, &s) != KBR_OK)
        return (void *)0;
    for (int i = 0; i < SIGS; i++) {
        RAND_bytes(dg, sizeof(dg));
        if (kbr_hsm_sign(s, "remote-p256", KBR_SIG_ECDSA_DER, KBR_HASH_SHA256, dg, 32, &sig,
                         &siglen) == KBR_OK)
            good += verifies(pk, dg, 32, sig, siglen, true);
        free(sig);
        sig = NULL;
    }
    kbr_hsm_session_close(s);
    return (void *)good;
}

static void test_sessions_in_parallel(void **state)
{
    kbr_hsm_session *s = NULL;
    pthread_t th[THREADS];
    EVP_PKEY *pk;
    void *good;

    (void)state;
    assert_int_equal(kbr_hsm_session_open(fx.remote, &s), KBR_OK);
    pk = remote_key(s, "remote-p256");
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, signer, pk), 0);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], &good), 0);
        assert_int_equal((long)good, SIGS);
    }
    EVP_PKEY_free(pk);
    kbr_hsm_session_close(s);
}

static void assert_value(kbr_hsm_session *s, const char *want)
{
    kbr_hsm_data *v = NULL;
    size_t n = 0;

    assert_int_equal(kbr_hsm_data_get(s, RECORD, &v, &n), KBR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].len, strlen(want));
    assert_memory_equal(v[0].value, want, v[0].len);
    kbr_hsm_data_free(v, n);
}

/*
 * The data object through the HSM process: written only as the server's check allows, read
 * back as the module in this process reads it, and no other object reachable.
 */
static void test_data_object(void **state)
{
    kbr_hsm_session *s = NULL, *local = NULL;
    kbr_hsm_data *v = NULL;
    size_t n = 0;
    static const unsigned char grows[] = "grows";

    (void)state;
    assert_int_equal(kbr_hsm_session_open(fx.remote, &s), KBR_OK);
    assert_int_equal(kbr_hsm_session_open(fx.local, &local), KBR_OK);
    assert_int_equal(kbr_hsm_data_get(s, RECORD, &v, &n), KBR_OK);
    assert_int_equal(n, 0);
    kbr_hsm_data_free(v, n);
    assert_int_equal(kbr_hsm_data_put(s, RECORD, (const unsigned char *)"v1", 2, grows, 5), KBR_OK);
    assert_value(s, "v1");
    assert_value(local, "v1");
    assert_int_equal(kbr_hsm_data_put(s, RECORD, (const unsigned char *)"v1+2", 4, grows, 5),
                     KBR_OK);
    assert_value(s, "v1+2");
    /* refused by the check: a shorter value, another history, no evidence */
    assert_int_equal(kbr_hsm_data_put(s, RECORD, (const unsigned char *)"v1", 2, grows, 5),
                     KBR_ERR_CONFLICT);
    assert_int_equal(kbr_hsm_data_put(s, RECORD, (const unsigned char *)"v2+2+3", 6, grows, 5),
                     KBR_ERR_CONFLICT);
    assert_int_equal(kbr_hsm_data_put(s, RECORD, (const unsigned char *)"v1+2+3", 6, NULL, 0),
                     KBR_ERR_BAD_REQUEST);
    assert_value(s, "v1+2");
    /* other data objects are neither read nor written through the HSM process */
    assert_int_equal(kbr_hsm_data_put(s, "kbr/other", (const unsigned char *)"x", 1, grows, 5),
                     KBR_ERR_FORBIDDEN);
    assert_int_equal(kbr_hsm_data_put(local, "kbr/other", (const unsigned char *)"x", 1, NULL, 0),
                     KBR_OK);
    assert_int_equal(kbr_hsm_data_get(s, "kbr/other", &v, &n), KBR_ERR_FORBIDDEN);
    assert_null(v);
    /* the process that holds the module writes what it is asked: --init, --recover */
    assert_int_equal(kbr_hsm_data_put(local, RECORD, (const unsigned char *)"v9", 2, NULL, 0),
                     KBR_OK);
    assert_value(s, "v9");
    /* bounds are checked before anything is sent */
    assert_int_equal(kbr_hsm_data_put(s, RECORD, (const unsigned char *)"", 0, grows, 5),
                     KBR_ERR_BAD_REQUEST);
    kbr_hsm_session_close(local);
    kbr_hsm_session_close(s);
}

/* A raw connection to the server, as a compromised network process would open one. */
static int raw_connection(void)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(kbr_hsm_ctl_send_fd(fx.raw_ctl, sv[1]), KBR_OK);
    close(sv[1]);
    return sv[0];
}

/* Did the server close fd (after an optional answer)? */
static bool closed(int fd)
{
    char buf[256];
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0)
        ;
    return n == 0;
}

static void test_malformed_frames_close_their_connection(void **state)
{
    static const unsigned char open_req[] = {0, 0, 0, 1, 1};
    static const unsigned char ping_req[] = {0, 0, 0, 1, 2};
    static const unsigned char bad_type[] = {0, 0, 0, 1, 99};
    static const unsigned char too_long[] = {0x7f, 0, 0, 0};
    kbr_hsm_session *s = NULL;
    unsigned char reply[6];
    int fd;

    (void)state;
    assert_int_equal(kbr_hsm_session_open(fx.remote, &s), KBR_OK);
    /* anything but OPEN first */
    fd = raw_connection();
    assert_int_equal(write(fd, ping_req, sizeof(ping_req)), (ssize_t)sizeof(ping_req));
    assert_true(closed(fd));
    close(fd);
    /* a type that does not exist, after a good OPEN and its answer */
    fd = raw_connection();
    assert_int_equal(write(fd, open_req, sizeof(open_req)), (ssize_t)sizeof(open_req));
    assert_int_equal(read(fd, reply, sizeof(reply)), 6);
    assert_memory_equal(reply, "\0\0\0\2\1\0", 6);
    assert_int_equal(write(fd, bad_type, sizeof(bad_type)), (ssize_t)sizeof(bad_type));
    assert_true(closed(fd));
    close(fd);
    /* a length over the bound: refused from the header, before any allocation */
    fd = raw_connection();
    assert_int_equal(write(fd, too_long, sizeof(too_long)), (ssize_t)sizeof(too_long));
    assert_true(closed(fd));
    close(fd);
    /* OPEN twice */
    fd = raw_connection();
    assert_int_equal(write(fd, open_req, sizeof(open_req)), (ssize_t)sizeof(open_req));
    assert_int_equal(read(fd, reply, sizeof(reply)), 6);
    assert_int_equal(write(fd, open_req, sizeof(open_req)), (ssize_t)sizeof(open_req));
    assert_true(closed(fd));
    close(fd);
    /* the other sessions never noticed */
    assert_int_equal(kbr_hsm_session_ping(s), KBR_OK);
    kbr_hsm_session_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calls_as_in_process),
        cmocka_unit_test(test_sessions_in_parallel),
        cmocka_unit_test(test_data_object),
        cmocka_unit_test(test_malformed_frames_close_their_connection),
    };
    int failed;

    /* Keeps the module mapped after every dlclose, so its frames stay named in reports. */
    if (dlopen(kbt_module_path, RTLD_NOW | RTLD_NODELETE) == NULL) {
        fprintf(stderr, "cannot load %s\n", kbt_module_path);
        return 1;
    }
    if (kbt_token_create("kbr-hsm-remote") != 0) {
        fprintf(stderr, "cannot create a SoftHSM2 token in %s\n", kbt_token_dir);
        kbt_token_destroy();
        return 1;
    }
    failed = cmocka_run_group_tests_name("hsm_remote", tests, setup, teardown);
    kbt_token_destroy();
    return failed;
}
