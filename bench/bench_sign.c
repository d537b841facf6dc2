/*
 * bench_sign.c - how much of the HSM's ECDSA P-256 signing rate keybrokerd
 * delivers once every signature is authenticated, checked against policy and
 * the firmware ledger, and durably audited before it leaves; and how many
 * device certificates per second it issues on the same HSM.
 *
 * Three phases on the same SoftHSM2 token, one after the other so they never
 * compete for the cores:
 *   1. raw: kbr_hsm_sign (the call the broker's workers make) from one thread
 *      per worker, each with its own session;
 *   2. broker: POST /v1/sign over 32 keep-alive connections driven by one
 *      libcurl multi loop, each request a new firmware version with its own
 *      digest and an inline SBOM;
 *   3. provision: POST /v1/provision over as many connections, each one a
 *      factory station provisioning a new device serial in a batch, from a
 *      pool of CSRs made before any timing starts.
 * Each phase warms up, then counts the operations that complete inside the
 * measured window and their latencies.  Both HTTP rates are set against the
 * raw rate of the same run; the target line is the sign path's.
 *
 * Environment: KBR_BIN_DIR (keybrokerd), KBR_BENCH_SECONDS [5],
 * KBR_BENCH_WARMUP [1], KBR_BENCH_CONNS [32], KBR_BENCH_WORKERS [cores, at
 * least 2: raw threads and keybrokerd workers], KBR_BENCH_CSRS [20000: device
 * CSRs in the pool, one per provisioned device, since one key pair is one
 * device], KBR_BENCH_JSON (set: also print one JSON line), KBR_BENCH_TRACE
 * (a file: one line per measured HTTP operation, for where the slow ones fall),
 * KBR_BENCH_CLIENT_CPU (a CPU number: the HTTP client runs on that CPU alone,
 * and the raw threads, keybrokerd and its HSM process on the others, so the
 * broker and the raw HSM get the same cores and the client takes none of
 * theirs); `--json` does the same as KBR_BENCH_JSON.
 * Exit status: 0 when every phase ran without a single failed operation,
 * whether or not the target is met; non-zero on any error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "../tests/integration/harness.h"
#include "kbr_hsm.h"

#define KEY_NAME      "bench-fw"
#define CA_KEY        "bench-ca"
#define PRODUCT       "bench"
#define BATCH         "bench-b1"
#define FACTORY       "factory:bench"
#define FACTORY_FW    "factory-1.0" /* the firmware image the devices leave the line with */
#define MODULE_PATH   "/usr/lib/softhsm/libsofthsm2.so"
#define TARGET_RATIO  0.70
#define TARGET_P99_MS 5.0
#define MAX_CONNS     256
#define MAX_THREADS   64
#define BODY_MAX      2048
#define RESP_MAX      8192
#define TAG_MAX       96
#define ERRS_KEPT     3
/* No run provisions this many: even at the raw signing rate of a fast machine (20,000/s) the
 * longest run the knobs allow (60 s warm-up + 60 s measured) makes 2.4 million certificates.
 * A spent quantity would show as 429 errors, never as a quietly lower rate. */
#define BATCH_QUANTITY 10000000
/* cores used by other processes above which a run is called disturbed */
#define OTHER_LOAD_WARN 0.15

static const char *const SBOM =
    "{\"format\":\"cyclonedx\",\"components\":["
    "{\"name\":\"openssl\",\"version\":\"3.0.13\",\"purl\":\"pkg:generic/openssl@3.0.13\"},"
    "{\"name\":\"zlib\",\"version\":\"1.3.1\",\"purl\":\"pkg:generic/zlib@1.3.1\"}]}";

typedef struct {
    double warmup, seconds; /* per phase */
    int conns, workers, nproc, csrs;
    bool json;
    FILE *trace;               /* KBR_BENCH_TRACE */
    int client_cpu;            /* KBR_BENCH_CLIENT_CPU, or -1 */
    cpu_set_t client, serving; /* with client_cpu: that CPU, and the others */
} bench_cfg;

/* Device CSRs, made before any timing: a station sends one per device. */
typedef struct {
    char **json;    /* PEM, escaped for a JSON string */
    EVP_PKEY **key; /* the device key pair behind each request */
    int n;
    double made_s; /* seconds it took to make them */
} csr_pool;

static bench_cfg cfg;
static kbt_env *env;
static char *ci_tok, *factory_tok;
static char hsm_label[KBR_HSM_LABEL_MAX];
static csr_pool pool;

/* ---- time and latency statistics ---- */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* With KBR_BENCH_CLIENT_CPU, the calling thread onto the client's CPU or the serving ones;
 * what it starts afterwards (threads, keybrokerd) inherits them. */
static void pin(bool client)
{
    if (cfg.client_cpu < 0)
        return;
    if (sched_setaffinity(0, sizeof(cpu_set_t), client ? &cfg.client : &cfg.serving) != 0)
        fail_msg("KBR_BENCH_CLIENT_CPU: sched_setaffinity: %s", strerror(errno));
}

typedef struct {
    double *v; /* seconds */
    size_t n, cap;
} lat_vec;

static void lat_push(lat_vec *l, double x)
{
    if (l->n == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 4096;
        double *nv = realloc(l->v, cap * sizeof(*nv));

        /* Raw threads push too, and a cmocka failure cannot leave a thread: stop here. */
        if (nv == NULL) {
            fputs("bench_sign: out of memory for latencies\n", stderr);
            abort();
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

static void lat_append(lat_vec *dst, const lat_vec *src)
{
    for (size_t i = 0; i < src->n; i++)
        lat_push(dst, src->v[i]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

typedef struct {
    double self, daemon, other; /* cores busy on average over a phase */
} cpu_use;

typedef struct {
    size_t ops;
    double rate, p50_ms, p99_ms, max_ms;
    cpu_use cpu;
} phase_result;

/* Nearest-rank percentile of a sorted vector, in ms. */
static double pct_ms(const lat_vec *l, double p)
{
    size_t rank;

    if (l->n == 0)
        return 0;
    rank = (size_t)(p * (double)l->n);
    if ((double)rank < p * (double)l->n)
        rank++;
    return l->v[rank > 0 ? rank - 1 : 0] * 1e3;
}

/* Sorts l in place. */
static phase_result summarize(lat_vec *l, double window)
{
    phase_result r = {l->n, (double)l->n / window, 0, 0, 0, {0, 0, 0}};

    qsort(l->v, l->n, sizeof(*l->v), cmp_double);
    r.p50_ms = pct_ms(l, 0.50);
    r.p99_ms = pct_ms(l, 0.99);
    r.max_ms = l->n > 0 ? l->v[l->n - 1] * 1e3 : 0;
    return r;
}

/* ---- where the CPU went during a phase ---- */

/* CPU seconds: this process, keybrokerd (all its processes), and the whole machine (busy time,
 * all cores). */
typedef struct {
    double self, daemon, machine;
} cpu_snap;

static double proc_cpu(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which may hold spaces: utime and stime are the 12th and
     * 13th after the closing parenthesis. */
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double machine_cpu(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int got = 0;

    if (f != NULL) {
        got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                     &v[4], &v[5], &v[6], &v[7]);
        fclose(f);
    }
    if (got != 8)
        return 0;
    /* user nice system [idle iowait] irq softirq steal */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* keybrokerd is its network process and the HSM keeper and HSM process below it. */
static double daemon_cpu(pid_t pid)
{
    pid_t kids[8];
    double sum = proc_cpu(pid);
    int n = kbt_children(pid, kids, 8);

    for (int i = 0; i < n; i++)
        sum += daemon_cpu(kids[i]);
    return sum;
}

/* The brokers an HTTP phase sends to: env alone, or (PostgreSQL) several on one store, each
 * connection to one of them in turn. */
static kbt_env *targets[2];
static int ntargets;

static cpu_snap cpu_now(void)
{
    cpu_snap c = {proc_cpu(getpid()), 0, machine_cpu()};

    if (ntargets == 0)
        c.daemon = env->pid > 0 ? daemon_cpu(env->pid) : 0;
    for (int i = 0; i < ntargets; i++)
        c.daemon += targets[i]->pid > 0 ? daemon_cpu(targets[i]->pid) : 0;
    return c;
}

static cpu_use cpu_since(const cpu_snap *a, double wall)
{
    cpu_snap b = cpu_now();
    cpu_use u;

    u.self = (b.self - a->self) / wall;
    u.daemon = (b.daemon - a->daemon) / wall;
    u.other = (b.machine - a->machine) / wall - u.self - u.daemon;
    if (u.other < 0)
        u.other = 0;
    return u;
}

/* ---- phase 1: the HSM through kbr_hsm_sign ---- */

typedef struct {
    kbr_hsm *hsm;
    int index;
    double warm_end, end;
    lat_vec lat;
    unsigned long errors;
    kbr_err first_err;
    unsigned char digest[32], sig[64]; /* the last good signature, checked afterwards */
    size_t siglen;
} raw_thread;

/* A digest no other operation of the run signs: thread index and counter in a fixed pattern. */
static void raw_digest(int index, uint64_t n, unsigned char out[32])
{
    memset(out, 0xa5, 32);
    memcpy(out, &n, sizeof(n));
    out[8] = (unsigned char)index;
}

static void raw_one(raw_thread *t, kbr_hsm_session *s, uint64_t n)
{
    unsigned char d[32], *sig = NULL;
    size_t siglen = 0;
    double t0, t1;
    kbr_err err;

    raw_digest(t->index, n, d);
    t0 = now_s();
    err =
        kbr_hsm_sign(s, hsm_label, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, d, sizeof(d), &sig, &siglen);
    t1 = now_s();
    if (err != KBR_OK || siglen != sizeof(t->sig)) {
        if (t->errors++ == 0)
            t->first_err = err != KBR_OK ? err : KBR_ERR_HSM;
    } else if (t1 >= t->warm_end && t1 <= t->end) {
        lat_push(&t->lat, t1 - t0);
        memcpy(t->digest, d, sizeof(d));
        memcpy(t->sig, sig, siglen);
        t->siglen = siglen;
    }
    free(sig);
}

static void *raw_main(void *arg)
{
    raw_thread *t = arg;
    kbr_hsm_session *s = NULL;
    uint64_t n = 0;

    if (kbr_hsm_session_open(t->hsm, &s) != KBR_OK) {
        t->errors++;
        t->first_err = KBR_ERR_HSM_SESSION;
        return NULL;
    }
    while (now_s() < t->end)
        raw_one(t, s, n++);
    kbr_hsm_session_close(s);
    return NULL;
}

static kbr_hsm *raw_open(void)
{
    kbr_secret *pin = NULL;
    kbr_hsm *hsm = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_secret_new(KBT_PIN, strlen(KBT_PIN), &pin), KBR_OK);
    if (kbr_hsm_open(MODULE_PATH, "keybroker", pin, &hsm, &msg) != KBR_OK)
        fail_msg("raw phase: cannot open the token: %s", msg.text);
    kbr_secret_free(pin);
    return hsm;
}

/* The last signature a thread made must verify under the key's public key. */
static void raw_check(const raw_thread *t)
{
    EVP_PKEY *pub = kbt_pubkey(env, KEY_NAME);

    if (t->siglen == 0 ||
        !kbt_verify(pub, "raw", EVP_sha256(), t->digest, sizeof(t->digest), t->sig, t->siglen))
        fail_msg("raw phase: a signature from thread %d does not verify", t->index);
    EVP_PKEY_free(pub);
}

static void sleep_until(double t)
{
    double left = t - now_s();
    struct timespec ts;

    if (left <= 0)
        return;
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static phase_result run_raw(unsigned long *errors)
{
    raw_thread th[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    lat_vec all = {NULL, 0, 0};
    kbr_hsm *hsm = raw_open();
    double start = now_s();
    phase_result res;
    cpu_snap at_warm;
    cpu_use cpu;

    memset(th, 0, sizeof(th));
    for (int i = 0; i < cfg.workers; i++) {
        th[i] = (raw_thread){.hsm = hsm, .index = i};
        th[i].warm_end = start + cfg.warmup;
        th[i].end = th[i].warm_end + cfg.seconds;
        assert_int_equal(pthread_create(&tid[i], NULL, raw_main, &th[i]), 0);
    }
    sleep_until(start + cfg.warmup);
    at_warm = cpu_now();
    sleep_until(start + cfg.warmup + cfg.seconds);
    cpu = cpu_since(&at_warm, cfg.seconds);
    *errors = 0;
    for (int i = 0; i < cfg.workers; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        if (th[i].errors > 0)
            fprintf(stderr, "raw thread %d: %lu errors, first %s\n", i, th[i].errors,
                    kbr_err_str(th[i].first_err));
        *errors += th[i].errors;
        lat_append(&all, &th[i].lat);
        free(th[i].lat.v);
    }
    kbr_hsm_close(hsm);
    for (int i = 0; i < cfg.workers && *errors == 0; i++)
        raw_check(&th[i]);
    res = summarize(&all, cfg.seconds);
    res.cpu = cpu;
    free(all.v);
    return res;
}

/* ---- phases 2 and 3: keybrokerd over HTTP ---- */

typedef struct conn conn;
typedef struct load load;

/* What one HTTP phase sends, and what a good answer looks like. */
typedef struct {
    const char *name, *unit, *path;
    long ok_status;
    const char *ok_member;         /* a member every good answer has, quoted as in the JSON */
    int (*body)(load *L, conn *c); /* writes c->body (and c->tag); returns its length */
    void (*check)(const load *L);  /* afterwards: one good answer, checked as its user would */
    bool forged; /* every request carries a token of its own whose signature is wrong */
} http_op;

struct conn {
    CURL *h;
    struct curl_slist *hdr;
    int index;
    unsigned long n; /* requests sent on this connection */
    double t0;
    char body[BODY_MAX];
    char tag[TAG_MAX]; /* what the request asked for: the digest signed, the device serial */
    int csr;           /* provisioning: the pool entry sent */
    char resp[RESP_MAX];
    size_t resp_len;
    long audit_seq;
};

struct load {
    const http_op *op;
    const char *token;
    double warm_end, end;
    lat_vec lat;
    lat_vec seqs;         /* X-Audit-Seq of every good answer, to show each one was recorded */
    unsigned long ok;     /* good answers, whole run */
    unsigned long errors; /* everything else, whole run */
    unsigned long sent;   /* requests of the phase so far, across connections */
    char errs[ERRS_KEPT][512];
    char last_ok_body[RESP_MAX], last_ok_tag[TAG_MAX];
    int last_ok_csr;
    int cpu_state; /* 0 warming up, 1 measuring since at_warm, 2 measured */
    cpu_snap at_warm;
    cpu_use cpu;
};

static size_t on_resp(char *p, size_t size, size_t nmemb, void *arg)
{
    conn *c = arg;
    size_t n = size * nmemb, room = sizeof(c->resp) - 1 - c->resp_len;
    size_t take = n < room ? n : room;

    /* A longer body than any good answer is an error shown truncated, not a failed transfer. */
    memcpy(c->resp + c->resp_len, p, take);
    c->resp_len += take;
    c->resp[c->resp_len] = '\0';
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    conn *c = arg;
    size_t n = size * nmemb;

    if (n > 12 && strncasecmp(p, "X-Audit-Seq:", 12) == 0)
        c->audit_seq = strtol(p + 12, NULL, 10);
    return n;
}

/* A POST /v1/sign body for a new firmware build; its digest (hex) goes to digest_hex. */
static int sign_body_for(const char *version, char *out, size_t n, char digest_hex[65])
{
    char seed[TAG_MAX];
    unsigned char d[32];

    snprintf(seed, sizeof(seed), "bench|%s", version);
    SHA256((const unsigned char *)seed, strlen(seed), d);
    kbr_hex_encode_buf(d, sizeof(d), digest_hex);
    return snprintf(out, n,
                    "{\"key\":\"" KEY_NAME "\",\"digest\":\"%s\",\"hash\":\"sha256\","
                    "\"format\":\"raw\",\"artifact\":{\"product\":\"" PRODUCT "\","
                    "\"version\":\"%s\",\"name\":\"bench.bin\",\"kind\":\"firmware\"},"
                    "\"sbom\":%s}",
                    digest_hex, version, SBOM);
}

static int sign_body(load *L, conn *c)
{
    char version[48];

    (void)L;
    snprintf(version, sizeof(version), "b-%d-%lu", c->index, c->n);
    return sign_body_for(version, c->body, sizeof(c->body), c->tag);
}

/* A new device on the line: its own serial and its own key, the next CSR of the pool. */
static int provision_body(load *L, conn *c)
{
    if (L->sent >= (unsigned long)pool.n)
        fail_msg("the pool of %d device CSRs is used up (the broker refuses a key for a second "
                 "device): raise KBR_BENCH_CSRS",
                 pool.n);
    c->csr = (int)L->sent;
    snprintf(c->tag, sizeof(c->tag), "SN-%d-%lu", c->index, c->n);
    return snprintf(c->body, sizeof(c->body),
                    "{\"key\":\"" CA_KEY "\",\"csr_pem\":\"%s\",\"device\":{\"serial\":\"%s\","
                    "\"product\":\"" PRODUCT "\",\"batch\":\"" BATCH "\","
                    "\"firmware_version\":\"" FACTORY_FW "\"}}",
                    pool.json[c->csr], c->tag);
}

static void forge_header(load *L, conn *c);

static void conn_prepare(load *L, conn *c)
{
    int w = L->op->body(L, c);

    if (L->op->forged)
        forge_header(L, c);

    assert_true(w > 0 && (size_t)w < sizeof(c->body));
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)w);
    c->resp_len = 0;
    c->resp[0] = '\0';
    c->audit_seq = -1;
    c->n++;
    L->sent++;
}

static void conn_init(const load *L, conn *c, int index)
{
    char url[128], *auth = NULL;

    memset(c, 0, sizeof(*c));
    c->index = index;
    c->h = curl_easy_init();
    assert_non_null(c->h);
    assert_true(asprintf(&auth, "Authorization: Bearer %s", L->token) > 0);
    c->hdr = curl_slist_append(c->hdr, auth);
    c->hdr = curl_slist_append(c->hdr, "Content-Type: application/json");
    c->hdr = curl_slist_append(c->hdr, "Expect:");
    free(auth);
    snprintf(url, sizeof(url), "%s%s", ntargets > 0 ? targets[index % ntargets]->url : env->url,
             L->op->path);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdr);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_resp);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
    curl_easy_setopt(c->h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 30L);
}

static void conn_cleanup(conn *c)
{
    curl_easy_cleanup(c->h);
    curl_slist_free_all(c->hdr);
}

static void note_error(load *L, const conn *c, CURLcode cc, long status)
{
    if (L->errors < ERRS_KEPT)
        snprintf(L->errs[L->errors], sizeof(L->errs[0]), "conn %d request %lu (%s): %s %ld %.*s",
                 c->index, c->n, c->tag, cc != CURLE_OK ? curl_easy_strerror(cc) : "HTTP", status,
                 (int)strcspn(c->resp, "\r\n"), c->resp);
    L->errors++;
}

static void on_done(load *L, conn *c, CURLcode cc, double t1)
{
    long status = 0;

    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK || status != L->op->ok_status || (c->audit_seq <= 0 && !L->op->forged) ||
        strstr(c->resp, L->op->ok_member) == NULL) {
        note_error(L, c, cc, status);
        return;
    }
    L->ok++;
    if (!L->op->forged)
        lat_push(&L->seqs, (double)c->audit_seq);
    if (t1 >= L->warm_end && t1 <= L->end) {
        lat_push(&L->lat, t1 - c->t0);
        /* phase, seconds into the measured window when it was sent, latency, audit seq */
        if (cfg.trace != NULL)
            fprintf(cfg.trace, "%s\t%.6f\t%.3f\t%ld\n", L->op->name, c->t0 - L->warm_end,
                    (t1 - c->t0) * 1e3, c->audit_seq);
    }
    if (c->index == 0) {
        memcpy(L->last_ok_body, c->resp, c->resp_len + 1);
        memcpy(L->last_ok_tag, c->tag, sizeof(c->tag));
        L->last_ok_csr = c->csr;
    }
}

static void conn_send(CURLM *m, load *L, conn *c)
{
    conn_prepare(L, c);
    c->t0 = now_s();
    assert_int_equal(curl_multi_add_handle(m, c->h), CURLM_OK);
}

/* Handles every finished transfer; returns how many connections stopped. */
static int reap(CURLM *m, load *L)
{
    CURLMsg *msg;
    int left = 0, stopped = 0;

    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        char *priv = NULL;
        conn *c;
        double t1 = now_s();

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        c = (conn *)priv;
        on_done(L, c, msg->data.result, t1);
        curl_multi_remove_handle(m, c->h);
        if (t1 < L->end)
            conn_send(m, L, c);
        else
            stopped++;
    }
    return stopped;
}

/* Called on every turn of the client loop, which never waits longer than 100 ms. */
static void cpu_track(load *L)
{
    double t = now_s();

    if (L->cpu_state == 0 && t >= L->warm_end) {
        L->at_warm = cpu_now();
        L->cpu_state = 1;
    } else if (L->cpu_state == 1 && t >= L->end) {
        L->cpu = cpu_since(&L->at_warm, t - L->warm_end);
        L->cpu_state = 2;
    }
}

static void drive(CURLM *m, load *L, int nconns)
{
    int active = nconns, running = 0;

    while (active > 0) {
        cpu_track(L);
        assert_int_equal(curl_multi_perform(m, &running), CURLM_OK);
        active -= reap(m, L);
        if (active > 0)
            assert_int_equal(curl_multi_poll(m, NULL, 0, 100, NULL), CURLM_OK);
    }
}

/* Every good answer carried its own audit sequence number (sorts L->seqs). */
static void check_seqs(load *L)
{
    qsort(L->seqs.v, L->seqs.n, sizeof(*L->seqs.v), cmp_double);
    for (size_t i = 1; i < L->seqs.n; i++)
        if (L->seqs.v[i] == L->seqs.v[i - 1])
            fail_msg("%s phase: audit seq %.0f answered two requests", L->op->name, L->seqs.v[i]);
}

/* One broker signature, checked the way a device would check it. */
static void check_broker_sig(const load *L)
{
    json_t *j = json_loads(L->last_ok_body, 0, NULL);
    unsigned char d[32], *sig = NULL, *dd = NULL;
    size_t siglen = 0, dlen = 0;
    EVP_PKEY *pub = kbt_pubkey(env, KEY_NAME);

    assert_non_null(j);
    assert_int_equal(kbr_hex_decode(L->last_ok_tag, &dd, &dlen), KBR_OK);
    assert_int_equal(dlen, sizeof(d));
    memcpy(d, dd, sizeof(d));
    assert_int_equal(
        kbr_b64_decode(json_string_value(json_object_get(j, "signature_b64")), &sig, &siglen),
        KBR_OK);
    if (!kbt_verify(pub, "raw", EVP_sha256(), d, sizeof(d), sig, siglen))
        fail_msg("broker phase: a signature does not verify");
    free(sig);
    free(dd);
    json_decref(j);
    EVP_PKEY_free(pub);
}

static X509 *pem_to_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem != NULL ? pem : "", -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;

    BIO_free(bio);
    return x;
}

/* One device certificate, checked the way a device's cloud would check it: issued by the CA
 * key, named after the serial, for the key pair in the device's CSR. */
static void check_device_cert(const load *L)
{
    json_t *j = json_loads(L->last_ok_body, 0, NULL);
    EVP_PKEY *ca = kbt_pubkey(env, CA_KEY);
    X509 *x;
    char cn[TAG_MAX] = "";

    assert_non_null(j);
    x = pem_to_cert(json_string_value(json_object_get(j, "certificate_pem")));
    if (x == NULL || X509_verify(x, ca) != 1)
        fail_msg("provision phase: a device certificate does not verify under " CA_KEY);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    if (strcmp(cn, L->last_ok_tag) != 0)
        fail_msg("provision phase: certificate CN \"%s\" for device %s", cn, L->last_ok_tag);
    if (EVP_PKEY_eq(X509_get0_pubkey(x), pool.key[L->last_ok_csr]) != 1)
        fail_msg("provision phase: certificate of %s is not for its CSR's key", L->last_ok_tag);
    if (json_string_length(json_object_get(j, "chain_pem")) == 0)
        fail_msg("provision phase: no chain_pem for %s", L->last_ok_tag);
    X509_free(x);
    EVP_PKEY_free(ca);
    json_decref(j);
}

/* The ledger counts exactly the devices answered 201: none lost, none counted twice. */
static void check_batch_count(const load *L)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/batches/" BATCH, env->admin, NULL);
    json_int_t n = json_integer_value(json_object_get(r.json, "provisioned"));

    if (r.status != 200 || (unsigned long)n != L->ok)
        fail_msg("GET /v1/batches/" BATCH ": %ld, provisioned %lld after %lu answers 201", r.status,
                 (long long)n, L->ok);
    kbt_resp_free(&r);
}

static void check_provision(const load *L)
{
    check_device_cert(L);
    check_batch_count(L);
}

/*
 * A token as an attacker would send it: the CI token's header and claims with a signature of
 * random bytes, new for every request, so no cache can answer it.  The broker must refuse it
 * (401) for less CPU than it spends on a signature it makes.
 */
static void forge_header(load *L, conn *c)
{
    const char *dot = strrchr(L->token, '.');
    size_t keep = dot != NULL ? (size_t)(dot - L->token) + 1 : 0;
    size_t siglen = dot != NULL ? strlen(dot + 1) : 0;
    static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char rnd[256];
    char *auth = NULL;

    assert_true(keep > 0 && siglen > 0 && siglen <= sizeof(rnd));
    assert_int_equal(RAND_bytes(rnd, (int)siglen), 1);
    assert_true(
        asprintf(&auth, "Authorization: Bearer %.*s%*s", (int)keep, L->token, (int)siglen, "") > 0);
    for (size_t i = 0; i < siglen; i++)
        auth[strlen(auth) - siglen + i] = b64u[rnd[i] & 63];
    curl_slist_free_all(c->hdr);
    c->hdr = curl_slist_append(NULL, auth);
    c->hdr = curl_slist_append(c->hdr, "Content-Type: application/json");
    c->hdr = curl_slist_append(c->hdr, "Expect:");
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdr);
    free(auth);
}

static const http_op SIGN_OP = {"broker",  "signs/s",        "/v1/sign", 200, "\"signature_b64\"",
                                sign_body, check_broker_sig, false};
static const http_op PROVISION_OP = {"provision",           "certs/s",      "/v1/provision", 201,
                                     "\"certificate_pem\"", provision_body, check_provision, false};
static const http_op FORGED_OP = {"forged",  "refusals/s", "/v1/sign", 401, "\"unauthenticated\"",
                                  sign_body, NULL,         true};

/* After the report, so that a failed check still leaves the figures on screen. */
static void check_http(load *L)
{
    check_seqs(L);
    if (L->ok > 0 && L->op->check != NULL)
        L->op->check(L);
}

static phase_result run_http(load *L)
{
    conn *cs = calloc((size_t)cfg.conns, sizeof(*cs));
    CURLM *m = curl_multi_init();
    phase_result res;

    assert_non_null(cs);
    assert_non_null(m);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)cfg.conns * 2);
    pin(true);
    L->warm_end = now_s() + cfg.warmup;
    L->end = L->warm_end + cfg.seconds;
    for (int i = 0; i < cfg.conns; i++) {
        conn_init(L, &cs[i], i);
        conn_send(m, L, &cs[i]);
    }
    drive(m, L, cfg.conns);
    pin(false); /* what the run starts next (a broker on PostgreSQL) serves */
    for (int i = 0; i < cfg.conns; i++)
        conn_cleanup(&cs[i]);
    curl_multi_cleanup(m);
    free(cs);
    res = summarize(&L->lat, cfg.seconds);
    res.cpu = L->cpu;
    return res;
}

/* ---- the CSR pool ---- */

/* PEM holds base64, dashes, spaces and newlines: only the newlines need escaping in JSON. */
static char *json_escape_pem(const char *pem, size_t len)
{
    char *out = malloc(2 * len + 1), *o = out;

    assert_non_null(out);
    for (size_t i = 0; i < len; i++) {
        if (pem[i] == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = pem[i];
        }
    }
    *o = '\0';
    return out;
}

/* A device key pair on P-256 and its PKCS#10 request, signed with that key. */
static char *csr_make(int i, EVP_PKEY **key)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char cn[48], *pem = NULL, *out;
    long len;

    assert_non_null(k);
    assert_non_null(req);
    assert_non_null(bio);
    snprintf(cn, sizeof(cn), "bench-device-%d", i);
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn, -1, -1, 0),
                     1);
    assert_int_equal(X509_REQ_set_version(req, 0), 1);
    assert_int_equal(X509_REQ_set_pubkey(req, k), 1);
    assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    len = BIO_get_mem_data(bio, &pem);
    assert_true(len > 0);
    out = json_escape_pem(pem, (size_t)len);
    BIO_free(bio);
    X509_REQ_free(req);
    *key = k;
    return out;
}

static void pool_make(int n)
{
    double t0 = now_s();

    pool.json = calloc((size_t)n, sizeof(*pool.json));
    pool.key = calloc((size_t)n, sizeof(*pool.key));
    assert_non_null(pool.json);
    assert_non_null(pool.key);
    for (int i = 0; i < n; i++) {
        pool.json[i] = csr_make(i, &pool.key[i]);
        pool.n = i + 1;
    }
    pool.made_s = now_s() - t0;
}

static void pool_free(void)
{
    for (int i = 0; i < pool.n; i++) {
        free(pool.json[i]);
        EVP_PKEY_free(pool.key[i]);
    }
    free(pool.json);
    free(pool.key);
    memset(&pool, 0, sizeof(pool));
}

/* ---- setup and report ---- */

static double env_num(const char *name, double dflt, double lo, double hi)
{
    const char *v = getenv(name);
    char *end = NULL;
    double x;

    if (v == NULL || *v == '\0')
        return dflt;
    x = strtod(v, &end);
    if (*end != '\0' || x < lo || x > hi)
        fail_msg("%s=%s: must be a number from %g to %g", name, v, lo, hi);
    return x;
}

static void cpu_model(char *out, size_t n)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];

    snprintf(out, n, "unknown");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(out, n, "%s", colon + 2);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    }
    if (f != NULL)
        fclose(f);
}

/* The HSM label of the broker's key: the raw phase signs with the very same key. */
static void read_label(void)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/keys/" KEY_NAME, env->admin, NULL);
    const char *label = json_string_value(json_object_get(json_object_get(r.json, "hsm"), "label"));

    if (r.status != 200 || label == NULL)
        fail_msg("GET /v1/keys/" KEY_NAME ": %ld %s", r.status, r.body);
    snprintf(hsm_label, sizeof(hsm_label), "%s", label);
    kbt_resp_free(&r);
}

static void expect_status(kbt_resp r, long status, const char *what)
{
    if (r.status != status)
        fail_msg("%s: %ld %s", what, r.status, r.body != NULL ? r.body : "");
    kbt_resp_free(&r);
}

/* What a factory line needs: a device CA with its certificate, the firmware image the devices
 * leave the line with, a production batch ordered from the factory, and the station's token. */
static void provision_setup(void)
{
    char body[BODY_MAX], digest[65];
    int w;

    kbt_key(env, CA_KEY, "device-identity-ca", "ecdsa-p256", PRODUCT);
    expect_status(kbt_call(env, "POST", "/v1/keys/" CA_KEY "/certificate", env->admin,
                           "{\"self_signed\":{\"subject\":\"CN=Bench Device CA\",\"days\":3650}}"),
                  201, "POST /v1/keys/" CA_KEY "/certificate");
    w = sign_body_for(FACTORY_FW, body, sizeof(body), digest);
    assert_true(w > 0 && (size_t)w < sizeof(body));
    expect_status(kbt_call(env, "POST", "/v1/sign", ci_tok, body), 200,
                  "POST /v1/sign " FACTORY_FW);
    w = snprintf(body, sizeof(body),
                 "{\"batch\":\"" BATCH "\",\"product\":\"" PRODUCT "\",\"factory\":\"" FACTORY
                 "\",\"quantity\":%d,\"market\":[\"DE\"]}",
                 BATCH_QUANTITY);
    assert_true(w > 0 && (size_t)w < sizeof(body));
    expect_status(kbt_call(env, "POST", "/v1/batches", env->admin, body), 201, "POST /v1/batches");
    factory_tok = kbt_token(
        env, "{\"sub\":\"" FACTORY "\",\"ops\":[\"provision\"],\"keys\":[\"" CA_KEY
             "\"],\"products\":[\"" PRODUCT "\"],\"batches\":[\"" BATCH "\"],\"ttl\":3600}");
    pool_make(cfg.csrs);
}

static int group_setup(void **state)
{
    char extra[64];

    (void)state;
    cfg.nproc = (int)sysconf(_SC_NPROCESSORS_ONLN);
    cfg.workers = (int)env_num("KBR_BENCH_WORKERS", cfg.nproc > 2 ? cfg.nproc : 2, 1, MAX_THREADS);
    cfg.warmup = env_num("KBR_BENCH_WARMUP", 1, 0, 60);
    cfg.seconds = env_num("KBR_BENCH_SECONDS", 5, 1, 60);
    cfg.conns = (int)env_num("KBR_BENCH_CONNS", 32, 1, MAX_CONNS);
    cfg.csrs = (int)env_num("KBR_BENCH_CSRS", 20000, 1, 2000000);
    if (getenv("KBR_BENCH_TRACE") != NULL && *getenv("KBR_BENCH_TRACE") != '\0' &&
        (cfg.trace = fopen(getenv("KBR_BENCH_TRACE"), "w")) == NULL)
        fail_msg("KBR_BENCH_TRACE=%s: %s", getenv("KBR_BENCH_TRACE"), strerror(errno));
    cfg.client_cpu = -1;
    if (getenv("KBR_BENCH_CLIENT_CPU") != NULL && *getenv("KBR_BENCH_CLIENT_CPU") != '\0') {
        cpu_set_t all;

        cfg.client_cpu = (int)env_num("KBR_BENCH_CLIENT_CPU", 0, 0, CPU_SETSIZE - 1);
        if (sched_getaffinity(0, sizeof(all), &all) != 0 || !CPU_ISSET(cfg.client_cpu, &all) ||
            CPU_COUNT(&all) < 2)
            fail_msg("KBR_BENCH_CLIENT_CPU=%d: not one of two or more CPUs this process may use",
                     cfg.client_cpu);
        CPU_ZERO(&cfg.client);
        CPU_SET(cfg.client_cpu, &cfg.client);
        cfg.serving = all;
        CPU_CLR(cfg.client_cpu, &cfg.serving);
        pin(false); /* keybrokerd, its HSM process and the raw threads start from here */
    }
    /* A later line wins in the config: this replaces the harness's worker count. */
    /* the benchmark's single principal would otherwise meet the per-principal rate limit */
    snprintf(extra, sizeof(extra), "workers = %d\nrate_limit = 0\n", cfg.workers);
    env = kbt_start(extra);
    kbt_key(env, KEY_NAME, "firmware-signing", "ecdsa-p256", PRODUCT);
    ci_tok = kbt_token(env, "{\"sub\":\"ci:bench\",\"ops\":[\"sign\"],\"keys\":[\"" KEY_NAME
                            "\"],\"products\":[\"" PRODUCT "\"],\"ttl\":3600}");
    read_label();
    provision_setup();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (cfg.trace != NULL && fclose(cfg.trace) != 0)
        fail_msg("KBR_BENCH_TRACE: %s", strerror(errno));
    cfg.trace = NULL;
    kbt_free(env);
    free(ci_tok);
    free(factory_tok);
    pool_free();
    return 0;
}

/* CPU time per operation: unlike the rate, barely moved by other jobs on the machine. */
static double per_op_ms(double cores, double rate)
{
    return rate > 0 ? cores / rate * 1e3 : 0;
}

static void print_phase(const char *name, const char *unit, const phase_result *r,
                        unsigned long errors)
{
    printf("  %-9s %8.1f %s  p50 %6.3f ms  p99 %6.3f ms  max %7.3f ms  ops %zu  errors %lu\n", name,
           r->rate, unit, r->p50_ms, r->p99_ms, r->max_ms, r->ops, errors);
    printf("            cores busy: bench process %.2f, keybrokerd %.2f, everything else %.2f; "
           "CPU ms per op: bench %.3f, keybrokerd %.3f\n",
           r->cpu.self, r->cpu.daemon, r->cpu.other, per_op_ms(r->cpu.self, r->rate),
           per_op_ms(r->cpu.daemon, r->rate));
}

static void print_http(const load *L, const phase_result *r)
{
    print_phase(L->op->name, L->op->unit, r, L->errors);
    printf("            answered %ld in the whole run (warm-up included): %lu, %s\n",
           L->op->ok_status, L->ok,
           L->op->forged ? "recorded up to unauth_audit_rate per second, the rest counted"
                         : "each with its own audit seq");
    for (unsigned long i = 0; i < L->errors && i < ERRS_KEPT; i++)
        printf("            error: %s\n", L->errs[i]);
}

static json_t *phase_json(const phase_result *r, unsigned long errors)
{
    return json_pack("{s:f,s:f,s:f,s:f,s:I,s:I,s:{s:f,s:f,s:f}}", "rate", r->rate, "p50_ms",
                     r->p50_ms, "p99_ms", r->p99_ms, "max_ms", r->max_ms, "ops", (json_int_t)r->ops,
                     "errors", (json_int_t)errors, "cores", "bench", r->cpu.self, "keybrokerd",
                     r->cpu.daemon, "other", r->cpu.other);
}

/* The figures of one run. */
typedef struct {
    phase_result raw, brk, prov, forged;
    unsigned long raw_err;
    load sign, provision, forgery;
} run;

/* keybrokerd's CPU for one refused forgery, as a share of its CPU for one signature. */
static double forged_cost(const run *R)
{
    double sig = per_op_ms(R->brk.cpu.daemon, R->brk.rate);

    return sig > 0 ? per_op_ms(R->forged.cpu.daemon, R->forged.rate) / sig : 0;
}

static double ratio_to_raw(const run *R, const phase_result *r)
{
    return R->raw.rate > 0 ? r->rate / R->raw.rate : 0;
}

static void print_json(const run *R, bool met)
{
    json_t *j = json_pack(
        "{s:s,s:i,s:i,s:i,s:f,s:f,s:i,s:o,s:o,s:o,s:o,s:f,s:f,s:b}", "bench", "sign", "nproc",
        cfg.nproc, "workers", cfg.workers, "conns", cfg.conns, "warmup_s", cfg.warmup, "seconds",
        cfg.seconds, "csrs", pool.n, "raw", phase_json(&R->raw, R->raw_err), "broker",
        phase_json(&R->brk, R->sign.errors), "provision", phase_json(&R->prov, R->provision.errors),
        "forged", phase_json(&R->forged, R->forgery.errors), "ratio", ratio_to_raw(R, &R->brk),
        "provision_ratio", ratio_to_raw(R, &R->prov), "target_met", met);
    char *s;

    if (cfg.client_cpu >= 0)
        json_object_set_new(j, "client_cpu", json_integer(cfg.client_cpu));
    s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));

    assert_non_null(s);
    printf("%s\n", s);
    free(s);
    json_decref(j);
}

static void print_setup(void)
{
    char cpu[128];

    cpu_model(cpu, sizeof(cpu));
    printf("\nkeybroker sign and provisioning benchmark: ECDSA P-256, SoftHSM2 (%s)\n",
           MODULE_PATH);
    printf("machine: nproc %d, %s\n", cfg.nproc, cpu);
    printf("each phase: %.1f s warm-up, then %.1f s measured; phases run one after the other\n",
           cfg.warmup, cfg.seconds);
    printf("raw:       kbr_hsm_sign(KBR_SIG_ECDSA_RAW) on the broker's key, %d threads, one "
           "session each\n",
           cfg.workers);
    if (cfg.client_cpu >= 0)
        printf("pinned:    the HTTP client on CPU %d; the raw threads, keybrokerd and its HSM "
               "process on the other %d\n",
               cfg.client_cpu, CPU_COUNT(&cfg.serving));
    printf("broker:    POST /v1/sign, %d keep-alive connections, one libcurl multi thread; "
           "keybrokerd workers = %d\n",
           cfg.conns, cfg.workers);
    printf("provision: POST /v1/provision, as many connections and workers, a new serial per "
           "request; %d P-256 CSRs made before timing (%.2f s), one per device\n",
           pool.n, pool.made_s);
}

static void report(const run *R)
{
    double ratio = ratio_to_raw(R, &R->brk);
    bool met = ratio >= TARGET_RATIO && R->brk.p99_ms <= TARGET_P99_MS;

    print_setup();
    print_phase("raw", "signs/s", &R->raw, R->raw_err);
    print_http(&R->sign, &R->brk);
    print_http(&R->provision, &R->prov);
    print_http(&R->forgery, &R->forged);
    printf("forged tokens: %.3f of a signature's keybrokerd CPU per request (must stay below 1)\n",
           forged_cost(R));
    printf("ratio broker/raw: %.3f\n", ratio);
    printf("target: ratio >= %.2f and p99 <= %.0f ms: %s\n", TARGET_RATIO, TARGET_P99_MS,
           met ? "MET" : "NOT MET");
    printf("ratio provision/raw: %.3f (a certificate is one HSM signature plus the CSR check, "
           "the X.509 building and its ledger rows)\n",
           ratio_to_raw(R, &R->prov));
    if (R->raw.cpu.other > OTHER_LOAD_WARN || R->brk.cpu.other > OTHER_LOAD_WARN ||
        R->prov.cpu.other > OTHER_LOAD_WARN)
        printf("warning: other processes kept the cores busy during the run; the figures "
               "are disturbed\n");
    if (cfg.json)
        print_json(R, met);
    fflush(stdout);
}

static void load_init(load *L, const http_op *op, const char *token)
{
    memset(L, 0, sizeof(*L));
    L->op = op;
    L->token = token;
}

static void load_cleanup(load *L)
{
    free(L->lat.v);
    free(L->seqs.v);
}

/* The same signing load against PostgreSQL (KBR_BENCH_PG_URL, bench/with-pg.sh): one broker
 * on the store, then two brokers on it with the connections split between them.  The second's
 * HSM token is a copy of the first's made once the key exists (tests/integration/harness.h). */
typedef struct {
    phase_result one, two;
    load l1, l2;
    http_op op1, op2;
    bool ran;
} pg_run;

static void bench_pg(pg_run *P)
{
    const char *url = getenv("KBR_BENCH_PG_URL");
    kbt_env *sqlite_env = env, *pa, *pb;
    char extra[128], *tok;

    if (url == NULL || *url == '\0')
        return;
    setenv("KBT_PG_URL", url, 1);
    snprintf(extra, sizeof(extra), "workers = %d\nrate_limit = 0\n", cfg.workers);
    pa = kbt_start(extra);
    kbt_key(pa, KEY_NAME, "firmware-signing", "ecdsa-p256", PRODUCT);
    tok = kbt_token(pa, "{\"sub\":\"ci:bench\",\"ops\":[\"sign\"],\"keys\":[\"" KEY_NAME
                        "\"],\"products\":[\"" PRODUCT "\"],\"ttl\":3600}");
    pb = kbt_peer(pa, extra);
    usleep(500 * 1000); /* pb follows the token's issuance */
    env = pa;
    P->op1 = SIGN_OP;
    P->op1.name = "pg x1";
    P->op2 = SIGN_OP;
    P->op2.name = "pg x2";
    load_init(&P->l1, &P->op1, tok);
    load_init(&P->l2, &P->op2, tok);
    targets[0] = pa;
    ntargets = 1;
    P->one = run_http(&P->l1);
    targets[1] = pb;
    ntargets = 2;
    P->two = run_http(&P->l2);
    check_http(&P->l1);
    check_http(&P->l2);
    ntargets = 0;
    P->ran = true;
    kbt_free(pb);
    kbt_free(pa);
    free(tok);
    env = sqlite_env;
    unsetenv("KBT_PG_URL");
}

static void report_pg(const run *R, pg_run *P)
{
    if (!P->ran)
        return;
    printf("PostgreSQL (same machine, unix socket, fsync on): POST /v1/sign as above, to one "
           "broker, then to two brokers on one store (connections split between them)\n");
    print_http(&P->l1, &P->one);
    print_http(&P->l2, &P->two);
    printf("ratio pg x1/SQLite broker: %.3f; pg x2/pg x1: %.3f\n",
           R->brk.rate > 0 ? P->one.rate / R->brk.rate : 0,
           P->one.rate > 0 ? P->two.rate / P->one.rate : 0);
    fflush(stdout);
}

static void bench_sign(void **state)
{
    pg_run P;
    run R;

    (void)state;
    memset(&R, 0, sizeof(R));
    load_init(&R.sign, &SIGN_OP, ci_tok);
    load_init(&R.provision, &PROVISION_OP, factory_tok);
    load_init(&R.forgery, &FORGED_OP, ci_tok);
    R.raw = run_raw(&R.raw_err);
    R.brk = run_http(&R.sign);
    R.prov = run_http(&R.provision);
    R.forged = run_http(&R.forgery);
    report(&R);
    check_http(&R.sign);
    check_http(&R.provision);
    check_http(&R.forgery);
    memset(&P, 0, sizeof(P));
    bench_pg(&P);
    report_pg(&R, &P);
    if (P.ran && P.l1.errors + P.l2.errors > 0)
        fail_msg("%lu and %lu PostgreSQL sign operations failed", P.l1.errors, P.l2.errors);
    if (P.ran) {
        load_cleanup(&P.l1);
        load_cleanup(&P.l2);
    }
    load_cleanup(&R.sign);
    load_cleanup(&R.provision);
    load_cleanup(&R.forgery);
    if (R.raw_err + R.sign.errors + R.provision.errors + R.forgery.errors > 0)
        fail_msg("%lu raw, %lu broker, %lu provision and %lu forged operations failed", R.raw_err,
                 R.sign.errors, R.provision.errors, R.forgery.errors);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(bench_sign)};
    const char *j = getenv("KBR_BENCH_JSON");
    int rc;

    cfg.json = j != NULL && *j != '\0' && strcmp(j, "0") != 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") != 0) {
            fprintf(stderr, "usage: %s [--json]\n", argv[0]);
            return 2;
        }
        cfg.json = true;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
