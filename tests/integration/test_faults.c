/*
 * test_faults.c - the worst days: an HSM that drops out (a PKCS#11 module
 * that fails on command, forwarding to SoftHSM2 otherwise) and a store on a
 * full disk (a real tmpfs).  Nothing is released that is not recorded, the
 * failure is visible in /v1/health, and service resumes by itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <poll.h>

#include <curl/curl.h>

#include "harness.h"
#include "kbr_audit.h"
#include "kbr_store.h"

static char *ci_token(kbt_env *e)
{
    kbt_key(e, "fw", "firmware-signing", "ecdsa-p256", "gw");
    return kbt_token(e, "{\"sub\":\"ci:gw\",\"ops\":[\"sign\",\"read\"],\"ttl\":600}");
}

static kbt_resp sign(kbt_env *e, const char *tok, int n)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"key\":\"fw\",\"digest\":\"%064x\",\"artifact\":{\"product\":\"gw\",\"version\":"
             "\"v%d\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":[{\"name\":\"zlib\"}]}}",
             n, n);
    return kbt_call(e, "POST", "/v1/sign", tok, body);
}

static void expect_signed(kbt_env *e, const char *tok, int n)
{
    kbt_resp r = sign(e, tok, n);

    if (r.status != 200 || json_object_get(r.json, "signature_b64") == NULL)
        fail_msg("sign v%d: expected a signature, got %ld %s", n, r.status, r.body);
    kbt_resp_free(&r);
}

static void expect_unavailable(kbt_env *e, const char *tok, int n, const char *code)
{
    kbt_resp r = sign(e, tok, n);

    if (r.status != 503 || strcmp(kbt_err_code(&r), code) != 0)
        fail_msg("sign v%d: expected 503 %s, got %ld %s", n, code, r.status, r.body);
    /* nothing released: no signature travels with a failure */
    assert_null(strstr(r.body, "signature_b64"));
    kbt_resp_free(&r);
}

static void expect_health(kbt_env *e, long status, const char *part, const char *state)
{
    kbt_resp r = kbt_call(e, "GET", "/v1/health", NULL, NULL);

    if (r.status != status || strcmp(json_string_value(json_object_get(r.json, part)), state) != 0)
        fail_msg("health: expected %ld with %s %s, got %ld %s", status, part, state, r.status,
                 r.body);
    kbt_resp_free(&r);
}

static void test_hsm_drops_out_and_comes_back(void **state)
{
    const char *so = getenv("KBR_FAULTY_SO");
    char conf[512], fault[400];
    kbt_env *e;
    char *tok;

    (void)state;
    if (so == NULL)
        fail_msg("KBR_FAULTY_SO is not set; run through make check");
    e = kbt_new();
    snprintf(fault, sizeof(fault), "%s/hsm-fault", e->dir);
    setenv("KBR_FAULTY_FILE", fault, 1);
    snprintf(conf, sizeof(conf), "pkcs11_module = %s\n", so);
    kbt_launch(e, conf);
    tok = ci_token(e);
    expect_signed(e, tok, 1);
    assert_int_equal(kbt_sh(e, "touch hsm-fault", NULL), 0);
    expect_unavailable(e, tok, 2, "hsm_unavailable");
    expect_health(e, 503, "hsm", "down");
    /* the audit log is fine meanwhile, and says what was refused */
    expect_health(e, 503, "audit", "ok");
    assert_int_equal(kbt_sh(e, "rm hsm-fault", NULL), 0);
    /* the broker logs in again by itself, within its retry backoff (at most 2 s) */
    for (int i = 0;; i++) {
        kbt_resp r = sign(e, tok, 3);
        long status = r.status;
        kbt_resp_free(&r);
        if (status == 200)
            break;
        assert_true(i < 60);
        usleep(100 * 1000);
    }
    expect_health(e, 200, "hsm", "ok");
    unsetenv("KBR_FAULTY_FILE");
    free(tok);
    kbt_free(e);
}

/*
 * `keybrokerd --check` beside a serving broker that replaces its audit record between the
 * check's search for the record and its read of the value (it signed a new head meanwhile;
 * the faulty module plays that once, KBR_FAULTY_VANISH): the check looks again and reads the
 * new record, rather than reporting it unreadable.
 */
static void test_check_while_record_replaced(void **state)
{
    const char *so = getenv("KBR_FAULTY_SO");
    char conf[512], cmd[1024];
    char *out = NULL;
    kbt_env *e;
    int rc;

    (void)state;
    if (so == NULL)
        fail_msg("KBR_FAULTY_SO is not set; run through make check");
    e = kbt_new();
    snprintf(conf, sizeof(conf), "pkcs11_module = %s\n", so);
    kbt_launch(e, conf);
    assert_int_equal(kbt_sh(e, "touch vanish", NULL), 0);
    snprintf(cmd, sizeof(cmd),
             "KBR_FAULTY_VANISH='%s/vanish' timeout -s TERM 300 '%s/keybrokerd' -c keybroker.conf"
             " --check 2>&1",
             e->dir, e->bin_dir);
    rc = kbt_sh(e, cmd, &out);
    if (rc != 0 || strstr(out, "problem:") != NULL ||
        strstr(out, "ok: HSM: the audit record (checkpoint of") == NULL)
        fail_msg("--check while the record was replaced: exit %d: %s", rc, out);
    free(out);
    /* the replacement was met: the fault is spent */
    assert_int_not_equal(kbt_sh(e, "test -e vanish", NULL), 0);
    kbt_free(e);
}

static void test_disk_full_and_room_again(void **state)
{
    char store[400];
    kbt_env *e;
    char *tok;

    (void)state;
    e = kbt_new();
    snprintf(store, sizeof(store), "%s/store", e->dir);
    assert_int_equal(kbt_sh(e, "mkdir store", NULL), 0);
    if (mount("tmpfs", store, "tmpfs", 0, "size=4m") != 0) {
        kbt_free(e);
        skip(); /* needs root (CAP_SYS_ADMIN) for a real full filesystem */
    }
    kbt_launch(e, "store = sqlite:store/keybroker.db\n");
    tok = ci_token(e);
    expect_signed(e, tok, 1);
    /* fill the filesystem to the last block */
    kbt_sh(e, "dd if=/dev/zero of=store/filler bs=4k 2>/dev/null; sync", NULL);
    /*
     * Records still fit while the write-ahead log reuses pages it already
     * has; the first one that needs a new block must be refused.
     */
    for (int n = 2;; n++) {
        kbt_resp r = sign(e, tok, n);
        if (r.status == 200) {
            assert_non_null(json_object_get(r.json, "signature_b64"));
            kbt_resp_free(&r);
            assert_true(n < 500);
            continue;
        }
        if (r.status != 503 || strcmp(kbt_err_code(&r), "audit_unavailable") != 0)
            fail_msg("sign v%d on a full disk: got %ld %s", n, r.status, r.body);
        assert_null(strstr(r.body, "signature_b64"));
        kbt_resp_free(&r);
        break;
    }
    expect_health(e, 503, "audit", "down");
    assert_int_equal(kbt_sh(e, "rm store/filler", NULL), 0);
    /* no restart: the writer tries again with the next record */
    expect_signed(e, tok, 3);
    expect_health(e, 200, "audit", "ok");
    kbt_stop(e);
    assert_int_equal(umount(store), 0);
    free(tok);
    kbt_free(e);
}

static void test_rate_limit_per_principal(void **state)
{
    kbt_env *e = kbt_start("rate_limit = 5\n");
    char *busy = kbt_token(e, "{\"sub\":\"ci:busy\",\"ops\":[\"read\"],\"ttl\":600}");
    char *other = kbt_token(e, "{\"sub\":\"ci:other\",\"ops\":[\"read\"],\"ttl\":600}");
    int ok = 0, limited = 0;
    kbt_resp r;

    (void)state;
    /* a burst of twice the rate passes, then the principal waits its turn */
    for (int i = 0; i < 30; i++) {
        r = kbt_call(e, "GET", "/v1/keys", busy, NULL);
        ok += r.status == 200;
        limited += r.status == 429 && strcmp(kbt_err_code(&r), "rate_limited") == 0;
        assert_true(r.audit_seq > 0);
        kbt_resp_free(&r);
    }
    assert_true(ok >= 10 && ok < 20);
    assert_int_equal(ok + limited, 30);
    /* another principal is not affected */
    r = kbt_call(e, "GET", "/v1/keys", other, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    sleep(1);
    r = kbt_call(e, "GET", "/v1/keys", busy, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    free(busy);
    free(other);
    kbt_free(e);
}

/* Stops the broker (which flushes its counters into the log) and reads the log from the store. */
static json_t *stopped_log(kbt_env *e)
{
    kbr_store *st = NULL;
    json_t *entries = NULL;
    char url[700];

    kbt_stop(e);
    kbt_store_url(e, url, sizeof(url));
    assert_int_equal(kbr_store_open(url, &st, NULL), KBR_OK);
    assert_int_equal(kbr_store_audit_page(st, 0, 100000, &entries), KBR_OK);
    kbr_store_close(st);
    return entries;
}

static void test_unauthenticated_flood(void **state)
{
    kbt_env *e = kbt_start("unauth_audit_rate = 2\n");
    int recorded = 0, total = 40;
    json_t *entries = NULL, *en;
    size_t i;
    json_int_t suppressed = 0;
    kbt_resp r;

    (void)state;
    for (int n = 0; n < total; n++) {
        r = kbt_call(e, "GET", "/v1/keys", "garbage.token.value", NULL);
        assert_int_equal(r.status, 401);
        assert_string_equal(kbt_err_code(&r), "unauthenticated");
        recorded += r.audit_seq > 0;
        kbt_resp_free(&r);
    }
    /* a burst is recorded one by one, the rest of the flood is counted */
    assert_true(recorded >= 4 && recorded < 12);
    entries = stopped_log(e);
    json_array_foreach(entries, i, en)
    {
        if (strcmp(json_string_value(json_object_get(en, "op")), "audit.suppressed") == 0)
            suppressed += json_integer_value(
                json_object_get(json_object_get(en, "detail"), "unauthenticated_denials"));
    }
    assert_int_equal(suppressed, total - recorded);
    json_decref(entries);
    kbt_free(e);
}

typedef struct {
    kbt_env *e;
    const char *tok;
    int worker;
    volatile int *stop;
    json_t *received; /* [{seq, digest, signature_sha256}] of every signature handed out */
} burst;

static void *burst_run(void *p)
{
    burst *b = p;
    kbt_env local = *b->e;

    local.curl = curl_easy_init();
    local.tolerate_transport_errors = true;
    for (int n = 0; !*b->stop && n < 100000; n++) {
        char body[512], digest[65], sig_sha[65];
        unsigned char *sig = NULL;
        size_t siglen = 0;
        kbt_resp r;

        snprintf(digest, sizeof(digest), "%08x%056d", (unsigned)(b->worker * 100000 + n), 0);
        snprintf(body, sizeof(body),
                 "{\"key\":\"fw\",\"digest\":\"%s\",\"artifact\":{\"product\":\"gw\","
                 "\"version\":\"k%d-%d\"},\"sbom\":{\"format\":\"cyclonedx\",\"components\":[]}}",
                 digest, b->worker, n);
        r = kbt_call(&local, "POST", "/v1/sign", b->tok, body);
        if (r.curl_error != 0) {
            kbt_resp_free(&r);
            break;
        }
        if (r.status == 200 &&
            kbr_b64_decode(json_string_value(json_object_get(r.json, "signature_b64")), &sig,
                           &siglen) == KBR_OK) {
            kbr_sha256_hex(sig, siglen, sig_sha);
            json_array_append_new(b->received,
                                  json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)r.audit_seq,
                                            "digest", digest, "signature_sha256", sig_sha));
        }
        free(sig);
        kbt_resp_free(&r);
    }
    curl_easy_cleanup(local.curl);
    return NULL;
}

/* kill -9 in the middle of a signing burst: every signature a client got is in the log */
static void test_kill_during_burst(void **state)
{
    kbt_env *e = kbt_start(NULL);
    char *tok = ci_token(e);
    volatile int stop = 0;
    pthread_t th[8];
    burst b[8];
    json_t *all, *by_seq = json_object(), *got;
    size_t i, total = 0;
    kbr_msg msg = {{0}};

    (void)state;
    for (int w = 0; w < 8; w++) {
        b[w] = (burst){e, tok, w, &stop, json_array()};
        assert_int_equal(pthread_create(&th[w], NULL, burst_run, &b[w]), 0);
    }
    usleep(1500 * 1000);
    kill(e->pid, SIGKILL);
    for (int w = 0; w < 8; w++)
        pthread_join(th[w], NULL);
    stop = 1;
    waitpid(e->pid, NULL, 0);
    e->pid = 0;
    assert_int_equal(kbt_spawn_daemon(e), 0);
    all = kbt_audit_all(e);
    assert_int_equal(kbr_audit_verify_entries(all, 1, NULL, &msg), KBR_OK);
    json_array_foreach(all, i, got)
    {
        char key[32];
        snprintf(key, sizeof(key), "%lld",
                 (long long)json_integer_value(json_object_get(got, "seq")));
        json_object_set(by_seq, key, got);
    }
    for (int w = 0; w < 8; w++) {
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
        json_decref(b[w].received);
    }
    /* the burst really ran: signatures were handed out before the kill */
    assert_true(total > 50);
    json_decref(all);
    json_decref(by_seq);
    free(tok);
    kbt_free(e);
}

static int count_closed(const int *fds, int n)
{
    int closed = 0;

    for (int i = 0; i < n; i++)
        closed += kbt_closed_by_server(fds[i], 0);
    return closed;
}

static double call_ms(kbt_env *e)
{
    struct timespec t0, t1;
    kbt_resp r;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = kbt_call(e, "GET", "/v1/keys", e->admin, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    return (double)(t1.tv_sec - t0.tv_sec) * 1000.0 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
}

/*
 * Hundreds of idle or slow clients must not keep a real one waiting: one
 * host opens 300 connections, a third of them trickling half a request line.
 * The broker keeps the default 128 of them and closes the rest at once.
 */
static void test_idle_connections(void **state)
{
    kbt_env *e = kbt_start(NULL);
    int fds[300];
    double ms;

    (void)state;
    for (int i = 0; i < 300; i++) {
        fds[i] = kbt_connect_from("127.0.0.2", e->port);
        if (i % 3 == 0)
            assert_int_equal(write(fds[i], "GET /v1/he", 10), 10);
    }
    ms = call_ms(e);
    assert_true(ms < 1000.0);
    usleep(300 * 1000);
    assert_int_equal(count_closed(fds, 300), 300 - 128);
    for (int i = 0; i < 300; i++)
        close(fds[i]);
    kbt_free(e);
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One request on fd, its response read: true for a 200. */
static bool health_on(int fd)
{
    static const char req[] = "GET /v1/health HTTP/1.1\r\nHost: keybroker\r\n\r\n";
    char buf[4096];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n;

    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1 ||
        poll(&p, 1, 3000) != 1)
        return false;
    n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strncmp(buf, "HTTP/1.1 200", 12) == 0;
}

/* A connection from src, or -1 when the handshake takes over a second (a full accept queue). */
static int connect_within_1s(const char *src, int port)
{
    struct sockaddr_in local = {.sin_family = AF_INET}, sa = {.sin_family = AF_INET};
    struct timeval one = {1, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(inet_pton(AF_INET, src, &local.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&local, sizeof(local)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &one, sizeof(one)), 0);
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * A burst that arrives while the broker cannot take it (stopped here, busy in
 * the field): 300 connections from one host wait in the kernel's accept queue,
 * none of them for a TCP retry.  Then the broker takes them in batches, keeps
 * the host's 128, closes the rest, and serves another client at once.
 */
static void test_burst_while_stopped(void **state)
{
    kbt_env *e = kbt_start(NULL);
    int fds[300], closed = 0;
    double t0;

    (void)state;
    assert_int_equal(kill(e->pid, SIGSTOP), 0);
    for (int i = 0; i < 300; i++) {
        fds[i] = connect_within_1s("127.0.0.2", e->port);
        if (fds[i] < 0) {
            kill(e->pid, SIGCONT);
            fail_msg("connection %d of the burst waited for a TCP retry: the accept queue "
                     "is full",
                     i + 1);
        }
    }
    assert_int_equal(kill(e->pid, SIGCONT), 0);
    assert_true(call_ms(e) < 1000.0);
    t0 = mono_s();
    while ((closed = count_closed(fds, 300)) < 300 - 128 && mono_s() - t0 < 5.0)
        usleep(50 * 1000);
    assert_int_equal(closed, 300 - 128);
    /* the kept ones are open, and served */
    for (int i = 0, served = 0; i < 300; i++) {
        if (served < 3 && !kbt_closed_by_server(fds[i], 0)) {
            assert_true(health_on(fds[i]));
            served++;
        }
        close(fds[i]);
    }
    kbt_free(e);
}

/*
 * Slow clients: one that trickles its request a byte at a time (never idle long enough for
 * an idle timeout) is closed once request_timeout has passed; one that says nothing too; one
 * that sends whole requests in time keeps its connection past the timeout.
 */
static void test_slow_clients(void **state)
{
    kbt_env *e = kbt_start("request_timeout = 2\n");
    static const char req[] = "GET /v1/health HTTP/1.1\r\nHost: keybroker\r\nX-Pad: "
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    int slow = kbt_connect_from("127.0.0.2", e->port),
        idle = kbt_connect_from("127.0.0.3", e->port);
    int good = kbt_connect_from("127.0.0.4", e->port);
    double t0 = mono_s(), closed_after = 0;
    const char *metric;
    size_t i;
    kbt_resp r;

    (void)state;
    for (i = 0; i < sizeof(req) - 1; i++) {
        if (send(slow, &req[i], 1, MSG_NOSIGNAL) != 1 || kbt_closed_by_server(slow, 250)) {
            closed_after = mono_s() - t0;
            break;
        }
        if (i % 4 == 0)
            assert_true(health_on(good));
    }
    if (closed_after < 1.5 || closed_after > 5.0)
        fail_msg("the trickling client was closed after %.1f s (%zu bytes), want about 2 s",
                 closed_after, i);
    assert_true(kbt_closed_by_server(idle, 3000));
    /* well past the timeout, the client that kept sending whole requests is still served
     * (the others may have been closed early in the timeout's second: wait the rest) */
    while (mono_s() - t0 <= 2.5) {
        assert_true(health_on(good));
        usleep(100 * 1000);
    }
    assert_true(health_on(good));
    r = kbt_call(e, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    metric = strstr(r.body, "\nkeybroker_connections_timed_out_total ");
    assert_non_null(metric);
    assert_true(atol(metric + strlen("\nkeybroker_connections_timed_out_total ")) >= 1);
    kbt_resp_free(&r);
    close(good);
    close(idle);
    close(slow);
    kbt_free(e);
}

static const json_t *source_in(const json_t *sources, const char *addr)
{
    size_t i;
    const json_t *s;

    json_array_foreach(sources, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "source")), addr) == 0)
            return s;
    }
    return NULL;
}

/*
 * Per-source and overall connection limits: refused connections are closed
 * before anything is read, slots come back when connections close, and the
 * refusals are recorded without an entry each.
 */
static void test_connection_limits(void **state)
{
    kbt_env *e = kbt_start("max_connections = 40\nmax_connections_per_source = 10\n");
    int a[14], b[30], extra;
    json_t *all, *entry = NULL, *detail;
    const json_t *src;
    size_t i;
    kbt_resp r;

    (void)state;
    /* one host: ten stay open, the eleventh is closed */
    for (int n = 0; n < 11; n++)
        a[n] = kbt_connect_from("127.0.0.2", e->port);
    usleep(200 * 1000);
    assert_int_equal(count_closed(a, 10), 0);
    assert_true(kbt_closed_by_server(a[10], 2000));
    close(a[10]);
    /* another host is not affected */
    assert_true(call_ms(e) < 1000.0);
    /* closing three gives that host three slots back, and no more */
    for (int n = 0; n < 3; n++)
        close(a[n]);
    usleep(200 * 1000);
    for (int n = 0; n < 4; n++)
        a[n] = kbt_connect_from("127.0.0.2", e->port);
    usleep(200 * 1000);
    assert_int_equal(count_closed(a, 3), 0);
    assert_true(kbt_closed_by_server(a[3], 2000));
    close(a[3]);
    /* three more hosts bring the total to 40; a fifth host is refused */
    for (int n = 0; n < 30; n++)
        b[n] = kbt_connect_from(n < 10 ? "127.0.0.3" : n < 20 ? "127.0.0.4" : "127.0.0.5", e->port);
    usleep(200 * 1000);
    assert_true(count_closed(b, 30) <= 1); /* the harness may hold one connection */
    extra = kbt_connect_from("127.0.0.6", e->port);
    assert_true(kbt_closed_by_server(extra, 2000));
    close(extra);
    r = kbt_call(e, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "keybroker_connections_refused_total "));
    kbt_resp_free(&r);
    for (int n = 0; n < 10; n++)
        if (n >= 4 || n < 3)
            close(a[n]);
    for (int n = 0; n < 30; n++)
        close(b[n]);
    usleep(200 * 1000);
    assert_true(call_ms(e) < 1000.0);

    /* the refusals are in the log, per source, in one entry */
    all = stopped_log(e);
    json_array_foreach(all, i, detail)
    {
        if (strcmp(json_string_value(json_object_get(detail, "op")), "connection.refused") == 0) {
            assert_null(entry);
            entry = detail;
        }
    }
    assert_non_null(entry);
    detail = json_object_get(entry, "detail");
    assert_true(json_integer_value(json_object_get(detail, "refused")) >= 3);
    assert_true(json_integer_value(json_object_get(detail, "over_max_connections")) >= 1);
    assert_int_equal(json_integer_value(json_object_get(detail, "max_connections_per_source")), 10);
    src = source_in(json_object_get(detail, "sources"), "127.0.0.2");
    assert_non_null(src);
    assert_int_equal(json_integer_value(json_object_get(src, "refused")), 2);
    src = source_in(json_object_get(detail, "sources"), "127.0.0.6");
    assert_non_null(src);
    assert_int_equal(json_integer_value(json_object_get(src, "refused")), 1);
    json_decref(all);
    kbt_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hsm_drops_out_and_comes_back),
        cmocka_unit_test(test_check_while_record_replaced),
        cmocka_unit_test(test_disk_full_and_room_again),
        cmocka_unit_test(test_rate_limit_per_principal),
        cmocka_unit_test(test_unauthenticated_flood),
        cmocka_unit_test(test_kill_during_burst),
        cmocka_unit_test(test_idle_connections),
        cmocka_unit_test(test_burst_while_stopped),
        cmocka_unit_test(test_connection_limits),
        cmocka_unit_test(test_slow_clients),
    };

    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
