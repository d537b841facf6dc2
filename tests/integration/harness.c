/*
 * harness.c - see harness.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "harness.h"

static void fmt_path(char *out, size_t n, const char *dir, const char *name)
{
    int w = snprintf(out, n, "%s/%s", dir, name);
    assert_true(w > 0 && (size_t)w < n);
}

int kbt_sh(kbt_env *e, const char *cmd, char **out)
{
    char *full = NULL;
    FILE *p;
    size_t cap = 0, len = 0;
    char buf[4096];
    size_t got;
    int rc;

    assert_true(
        asprintf(&full, "cd '%s' && SOFTHSM2_CONF='%s/softhsm2.conf' %s", e->dir, e->dir, cmd) > 0);
    p = popen(full, "r");
    assert_non_null(p);
    if (out != NULL)
        *out = NULL;
    while ((got = fread(buf, 1, sizeof(buf), p)) > 0) {
        if (out == NULL)
            continue;
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            *out = realloc(*out, cap);
            assert_non_null(*out);
        }
        memcpy(*out + len, buf, got);
        len += got;
        (*out)[len] = '\0';
    }
    if (out != NULL && *out == NULL)
        *out = strdup("");
    rc = pclose(p);
    free(full);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path)
{
    char *buf = NULL;
    size_t n = 0;

    if (kbr_file_read(path, 1 << 20, &buf, &n) != KBR_OK)
        return NULL;
    return buf;
}

static void store_new(kbt_env *e)
{
    const char *base = getenv("KBT_PG_URL");
    char schema[64], sql[128];

    if (!kbt_pg()) {
        snprintf(e->store, sizeof(e->store), "sqlite:keybroker.db");
        return;
    }
    kbt_pg_schema(e->dir, schema, sizeof(schema));
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    assert_int_equal(kbt_store_sql(base, sql, NULL, 0, NULL), 0);
    snprintf(e->store, sizeof(e->store), "%s%coptions=-csearch_path%%3D%s", base,
             strchr(base, '?') != NULL ? '&' : '?', schema);
}

static void store_drop(kbt_env *e)
{
    char schema[64], sql[128];

    if (!kbt_pg())
        return;
    kbt_pg_schema(e->dir, schema, sizeof(schema));
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
    (void)kbt_store_sql(getenv("KBT_PG_URL"), sql, NULL, 0, NULL);
}

const char *kbt_store_url(const kbt_env *e, char *buf, size_t n)
{
    if (kbt_pg())
        snprintf(buf, n, "%s", e->store);
    else
        snprintf(buf, n, "sqlite:%s", e->db);
    return buf;
}

int kbt_store_dump(const kbt_env *e, char **buf, size_t *n)
{
    char schema[64], cmd[1024];
    FILE *p;
    size_t cap = 1 << 16, got;
    char *b;

    *buf = NULL;
    *n = 0;
    if (!kbt_pg())
        return kbr_file_read(e->db, 64 << 20, buf, n) == KBR_OK ? 0 : -1;
    /* everything the database holds for this deployment, as pg_dump writes it, without the
     * random \restrict key lines of recent pg_dump releases */
    kbt_pg_schema(e->dir, schema, sizeof(schema));
    snprintf(
        cmd, sizeof(cmd),
        "%s/pg_dump --data-only --schema=%s '%s' | grep -v -e '^.restrict ' -e '^.unrestrict '",
        getenv("PGBIN") != NULL ? getenv("PGBIN") : "/usr/lib/postgresql/15/bin", schema,
        getenv("KBT_PG_URL"));
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    b = malloc(cap);
    while (b != NULL && (got = fread(b + *n, 1, cap - *n, p)) > 0) {
        *n += got;
        if (*n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (nb == NULL) {
                free(b);
                b = NULL;
            } else {
                b = nb;
            }
        }
    }
    if (pclose(p) != 0 || b == NULL || *n == 0) {
        free(b);
        return -1;
    }
    *buf = b;
    return 0;
}

int kbt_store_query(const kbt_env *e, const char *sql, char *buf, size_t len, long *changed)
{
    char url[sizeof(e->store) + sizeof(e->db)];

    return kbt_store_sql(kbt_store_url(e, url, sizeof(url)), sql, buf, len, changed);
}

static void write_config(kbt_env *e)
{
    char *conf = NULL;

    assert_true(asprintf(&conf,
                         "# test deployment\n"
                         "listen = 127.0.0.1:0\n"
                         "port_file = port\n"
                         "pin_file = pin\n"
                         "store = %s\n"
                         "token_label = keybroker\n"
                         "workers = 2\n"
                         "%s\n",
                         e->store, e->extra_conf != NULL ? e->extra_conf : "") > 0);
    write_file(e->conf, conf);
    free(conf);
}

static void make_token(kbt_env *e)
{
    char path[320], conf[512];

    fmt_path(path, sizeof(path), e->dir, "softhsm2.conf");
    snprintf(conf, sizeof(conf),
             "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
             e->dir);
    write_file(path, conf);
    fmt_path(path, sizeof(path), e->dir, "tokens");
    assert_int_equal(mkdir(path, 0700), 0);
    setenv("SOFTHSM2_CONF", conf, 1);
    fmt_path(path, sizeof(path), e->dir, "softhsm2.conf");
    setenv("SOFTHSM2_CONF", path, 1);
    assert_int_equal(kbt_sh(e,
                            "softhsm2-util --init-token --free --label keybroker --pin " KBT_PIN
                            " --so-pin 5678 >/dev/null",
                            NULL),
                     0);
    fmt_path(path, sizeof(path), e->dir, "pin");
    write_file(path, KBT_PIN "\n");
}

int kbt_run_daemon(kbt_env *e, const char *args, char **err)
{
    char *cmd = NULL;
    int rc;

    /* bounded: a broker that starts serving instead of exiting fails the test, not CI */
    assert_true(asprintf(&cmd, "timeout -s TERM 300 '%s/keybrokerd' %s 2>&1", e->bin_dir, args) >
                0);
    rc = kbt_sh(e, cmd, err);
    free(cmd);
    return rc;
}

static void read_admin(kbt_env *e)
{
    char path[320];

    free(e->admin);
    fmt_path(path, sizeof(path), e->dir, "bootstrap.token");
    e->admin = read_file(path);
    assert_non_null(e->admin);
}

/* Daemons still running when a failed assertion leaves a test are stopped at exit. */
static pid_t running[64];

static void stop_leftovers(void)
{
    for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
        if (running[i] > 0)
            kill(running[i], SIGKILL);
}

static void track(pid_t pid, bool add)
{
    static bool registered;

    if (!registered)
        registered = atexit(stop_leftovers) == 0;
    for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
        if (add && running[i] == 0) {
            running[i] = pid;
            return;
        }
        if (!add && running[i] == pid) {
            running[i] = 0;
            return;
        }
    }
}

/* Starts keybrokerd; returns 0 once it listens, or its exit status if it stopped. */
int kbt_spawn_daemon(kbt_env *e)
{
    char port_path[320];
    int status;

    fmt_path(port_path, sizeof(port_path), e->dir, "port");
    unlink(port_path);
    e->pid = fork();
    assert_true(e->pid >= 0);
    if (e->pid == 0) {
        char exe[300];
        int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        snprintf(exe, sizeof(exe), "%s/keybrokerd", e->bin_dir);
        /* each deployment its own token (kbt_peer's is a copy) */
        fmt_path(port_path, sizeof(port_path), e->dir, "softhsm2.conf");
        setenv("SOFTHSM2_CONF", port_path, 1);
        if (e->wrapper[0] != NULL)
            execl(e->wrapper[0], e->wrapper[0], e->wrapper[1], exe, "-c", e->conf, (char *)NULL);
        execl(exe, "keybrokerd", "-c", e->conf, (char *)NULL);
        _exit(127);
    }
    track(e->pid, true);
    for (int i = 0; i < 600; i++) {
        char *p = read_file(port_path);
        if (p != NULL && strchr(p, '\n') != NULL) {
            e->port = atoi(p);
            free(p);
            snprintf(e->url, sizeof(e->url), "%s://127.0.0.1:%d", e->https ? "https" : "http",
                     e->port);
            return 0;
        }
        free(p);
        if (waitpid(e->pid, &status, WNOHANG) == e->pid) {
            track(e->pid, false);
            e->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        }
        usleep(50 * 1000);
    }
    fail_msg("keybrokerd did not start; see %s", e->log);
    return -1;
}

kbt_env *kbt_start(const char *extra_conf)
{
    kbt_env *e = kbt_new();

    kbt_launch(e, extra_conf);
    return e;
}

kbt_env *kbt_new(void)
{
    kbt_env *e = calloc(1, sizeof(*e));
    const char *bin = getenv("KBR_BIN_DIR");

    assert_non_null(e);
    snprintf(e->dir, sizeof(e->dir), "%s/kbt.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->bin_dir, sizeof(e->bin_dir), "%s", bin != NULL ? bin : "bin");
    fmt_path(e->conf, sizeof(e->conf), e->dir, "keybroker.conf");
    fmt_path(e->log, sizeof(e->log), e->dir, "keybrokerd.log");
    fmt_path(e->db, sizeof(e->db), e->dir, "keybroker.db");
    store_new(e);
    make_token(e);
    return e;
}

void kbt_launch_config(kbt_env *e, const char *extra_conf)
{
    free(e->extra_conf);
    e->extra_conf = extra_conf != NULL ? strdup(extra_conf) : NULL;
    write_config(e);
}

kbt_env *kbt_peer(kbt_env *a, const char *extra_conf)
{
    kbt_env *e = calloc(1, sizeof(*e));
    char path[320], conf[512], cmd[900];

    assert_non_null(e);
    assert_true(kbt_pg());
    snprintf(e->dir, sizeof(e->dir), "%s/kbt.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->bin_dir, sizeof(e->bin_dir), "%s", a->bin_dir);
    fmt_path(e->conf, sizeof(e->conf), e->dir, "keybroker.conf");
    fmt_path(e->log, sizeof(e->log), e->dir, "keybrokerd.log");
    fmt_path(e->db, sizeof(e->db), e->dir, "keybroker.db");
    snprintf(e->store, sizeof(e->store), "%s", a->store);
    e->peer = true;
    fmt_path(path, sizeof(path), e->dir, "softhsm2.conf");
    snprintf(conf, sizeof(conf),
             "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
             e->dir);
    write_file(path, conf);
    snprintf(cmd, sizeof(cmd), "cp -a '%s/tokens' tokens && cp '%s/pin' pin", a->dir, a->dir);
    assert_int_equal(kbt_sh(e, cmd, NULL), 0);
    e->extra_conf = extra_conf != NULL ? strdup(extra_conf) : NULL;
    write_config(e);
    e->admin = strdup(a->admin);
    assert_non_null(e->admin);
    assert_int_equal(kbt_spawn_daemon(e), 0);
    e->curl = curl_easy_init();
    assert_non_null(e->curl);
    return e;
}

void kbt_launch(kbt_env *e, const char *extra_conf)
{
    char *err = NULL;

    e->extra_conf = extra_conf != NULL ? strdup(extra_conf) : NULL;
    write_config(e);
    if (kbt_run_daemon(e, "-c keybroker.conf --init", &err) != 0)
        fail_msg("keybrokerd --init failed: %s", err);
    free(err);
    read_admin(e);
    assert_int_equal(kbt_spawn_daemon(e), 0);
    e->curl = curl_easy_init();
    assert_non_null(e->curl);
}

void kbt_stop(kbt_env *e)
{
    int status = 0;

    if (e->pid <= 0)
        return;
    kill(e->pid, SIGTERM);
    assert_int_equal(waitpid(e->pid, &status, 0), e->pid);
    track(e->pid, false);
    e->pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

void kbt_restart(kbt_env *e)
{
    kbt_stop(e);
    curl_easy_reset(e->curl);
    assert_int_equal(kbt_spawn_daemon(e), 0);
}

int kbt_wait_exit(kbt_env *e, int timeout_ms)
{
    int status = 0;

    for (int waited = 0; waitpid(e->pid, &status, WNOHANG) != e->pid; waited += 20) {
        if (waited >= timeout_ms)
            return -1;
        usleep(20 * 1000);
    }
    track(e->pid, false);
    e->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void kbt_kill_restart(kbt_env *e)
{
    int status;

    kill(e->pid, SIGKILL);
    waitpid(e->pid, &status, 0);
    track(e->pid, false);
    e->pid = 0;
    curl_easy_reset(e->curl);
    assert_int_equal(kbt_spawn_daemon(e), 0);
}

void kbt_free(kbt_env *e)
{
    char *cmd = NULL;

    if (e == NULL)
        return;
    kbt_stop(e);
    if (e->curl != NULL)
        curl_easy_cleanup(e->curl);
    if (getenv("KBT_KEEP") == NULL && asprintf(&cmd, "rm -rf '%s'", e->dir) > 0)
        assert_int_equal(system(cmd), 0);
    if (getenv("KBT_KEEP") == NULL && !e->peer)
        store_drop(e);
    free(cmd);
    free(e->admin);
    free(e->extra_conf);
    free(e);
}

typedef struct {
    char *data;
    size_t len;
} growbuf;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    growbuf *b = arg;
    char *nd = realloc(b->data, b->len + size * n + 1);

    if (nd == NULL)
        return 0;
    b->data = nd;
    memcpy(b->data + b->len, p, size * n);
    b->len += size * n;
    b->data[b->len] = '\0';
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    long *seq = arg;

    if (size * n > 12 && strncasecmp(p, "X-Audit-Seq:", 12) == 0)
        *seq = strtol(p + 12, NULL, 10);
    return size * n;
}

kbt_resp kbt_call(kbt_env *e, const char *method, const char *path, const char *token,
                  const char *body)
{
    return kbt_call_with(e, method, path, token, body, NULL);
}

kbt_resp kbt_call_with(kbt_env *e, const char *method, const char *path, const char *token,
                       const char *body, const char *header)
{
    CURL *c = e->curl;
    kbt_resp r = {0, 0, NULL, NULL, -1, 0, ""};
    const char *type = NULL;
    CURLcode rc;
    growbuf b = {NULL, 0};
    struct curl_slist *h = NULL;
    char url[2048], *auth = NULL;

    snprintf(url, sizeof(url), "%s%s", e->url, path);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.audit_seq);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (token != NULL) {
        assert_true(asprintf(&auth, "Authorization: Bearer %s", token) > 0);
        h = curl_slist_append(h, auth);
    }
    if (header != NULL)
        h = curl_slist_append(h, header);
    if (body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    if (e->cacert[0] != '\0')
        curl_easy_setopt(c, CURLOPT_CAINFO, e->cacert);
    if (e->client_cert[0] != '\0') {
        curl_easy_setopt(c, CURLOPT_SSLCERT, e->client_cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, e->client_key);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    rc = curl_easy_perform(c);
    r.curl_error = (int)rc;
    if (rc != CURLE_OK && !e->tolerate_transport_errors)
        fail_msg("HTTP %s %s failed (%s); see %s", method, path, curl_easy_strerror(rc), e->log);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type != NULL)
        snprintf(r.content_type, sizeof(r.content_type), "%s", type);
    curl_slist_free_all(h);
    free(auth);
    r.len = b.len;
    r.body = b.data != NULL ? b.data : strdup("");
    r.json = json_loads(r.body, 0, NULL);
    return r;
}

kbt_resp kbt_callj(kbt_env *e, const char *method, const char *path, const char *token,
                   json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    kbt_resp r = kbt_call(e, method, path, token, text);

    free(text);
    return r;
}

void kbt_resp_free(kbt_resp *r)
{
    json_decref(r->json);
    free(r->body);
    r->json = NULL;
    r->body = NULL;
}

const char *kbt_err_code(const kbt_resp *r)
{
    const char *s = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return s != NULL ? s : "";
}

const char *kbt_err_message(const kbt_resp *r)
{
    const char *s =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    return s != NULL ? s : "";
}

void kbt_key(kbt_env *e, const char *name, const char *purpose, const char *alg,
             const char *product)
{
    json_t *body = json_pack("{s:s,s:s,s:s,s:[s],s:s}", "name", name, "purpose", purpose,
                             "algorithm", alg, "products", product, "owner", "team-test");
    kbt_resp r = kbt_callj(e, "POST", "/v1/keys", e->admin, body);

    if (r.status != 201)
        fail_msg("creating key %s: %ld %s", name, r.status, r.body);
    json_decref(body);
    kbt_resp_free(&r);
}

char *kbt_token(kbt_env *e, const char *spec_json)
{
    kbt_resp r = kbt_call(e, "POST", "/v1/tokens", e->admin, spec_json);
    char *tok;

    if (r.status != 201)
        fail_msg("issuing token %s: %ld %s", spec_json, r.status, r.body);
    tok = strdup(json_string_value(json_object_get(r.json, "token")));
    kbt_resp_free(&r);
    return tok;
}

EVP_PKEY *kbt_pem_to_pkey(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    BIO_free(bio);
    return k;
}

EVP_PKEY *kbt_pubkey(kbt_env *e, const char *name)
{
    char path[256];
    kbt_resp r;
    EVP_PKEY *k;

    snprintf(path, sizeof(path), "/v1/keys/%s", name);
    r = kbt_call(e, "GET", path, e->admin, NULL);
    assert_int_equal(r.status, 200);
    k = kbt_pem_to_pkey(json_string_value(json_object_get(r.json, "public_key_pem")));
    assert_non_null(k);
    kbt_resp_free(&r);
    return k;
}

/* JWS/PKCS#11 raw r||s to the DER form OpenSSL verifies. */
static bool raw_to_der(const unsigned char *sig, size_t len, unsigned char **der, size_t *derlen)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)(len / 2), NULL);
    BIGNUM *sv = BN_bin2bn(sig + len / 2, (int)(len / 2), NULL);
    int n;

    *der = NULL;
    if (s == NULL || r == NULL || sv == NULL || ECDSA_SIG_set0(s, r, sv) != 1) {
        ECDSA_SIG_free(s);
        BN_free(r);
        BN_free(sv);
        return false;
    }
    n = i2d_ECDSA_SIG(s, der);
    ECDSA_SIG_free(s);
    if (n <= 0)
        return false;
    *derlen = (size_t)n;
    return true;
}

bool kbt_verify(EVP_PKEY *pub, const char *fmt, const EVP_MD *md, const unsigned char *in,
                size_t inlen, const unsigned char *sig, size_t siglen)
{
    bool ok = false;
    unsigned char *der = NULL;
    size_t derlen = 0;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_MD_CTX *mctx = NULL;

    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_ED25519) {
        mctx = EVP_MD_CTX_new();
        ok = EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, pub) == 1 &&
             EVP_DigestVerify(mctx, sig, siglen, in, inlen) == 1;
        EVP_MD_CTX_free(mctx);
        return ok;
    }
    if (strcmp(fmt, "raw") == 0 && EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC) {
        if (!raw_to_der(sig, siglen, &der, &derlen))
            return false;
        sig = der;
        siglen = derlen;
    }
    ctx = EVP_PKEY_CTX_new(pub, NULL);
    ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
         EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;
    if (ok && strcmp(fmt, "pss") == 0)
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    if (ok && strcmp(fmt, "pkcs1") == 0)
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
    ok = ok && EVP_PKEY_verify(ctx, sig, siglen, in, inlen) == 1;
    EVP_PKEY_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

json_t *kbt_audit_all(kbt_env *e)
{
    json_t *all = json_array();
    long after = 0;

    for (;;) {
        char path[128];
        kbt_resp r;
        json_t *entries;
        size_t n;

        snprintf(path, sizeof(path), "/v1/audit?after=%ld&limit=1000", after);
        r = kbt_call(e, "GET", path, e->admin, NULL);
        assert_int_equal(r.status, 200);
        entries = json_object_get(r.json, "entries");
        n = json_array_size(entries);
        json_array_extend(all, entries);
        if (n > 0)
            after =
                (long)json_integer_value(json_object_get(json_array_get(entries, n - 1), "seq"));
        kbt_resp_free(&r);
        if (n < 1000)
            break;
    }
    return all;
}

char *kbt_csr_pem(EVP_PKEY **key_out, const char *cn)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    long len;

    if (cn != NULL) {
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
        X509_REQ_set_subject_name(req, name);
    }
    X509_REQ_set_pubkey(req, key);
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    PEM_write_bio_X509_REQ(b, req);
    len = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)len);
    BIO_free(b);
    X509_NAME_free(name);
    X509_REQ_free(req);
    if (key_out != NULL)
        *key_out = key;
    else
        EVP_PKEY_free(key);
    return pem;
}

static void cert_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

X509 *kbt_ca_cert(EVP_PKEY *pub, const char *cn, const char *serial_hex, EVP_PKEY *signer,
                  X509 *issuer)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn;

    assert_true(BN_hex2bn(&bn, serial_hex) > 0);
    sn = BN_to_ASN1_INTEGER(bn, NULL);
    assert_non_null(sn);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(X509_set_serialNumber(x, sn), 1);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    assert_int_equal(X509_set_subject_name(x, name), 1);
    assert_int_equal(X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name),
                     1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365));
    assert_int_equal(X509_set_pubkey(x, pub), 1);
    cert_ext(x, issuer != NULL ? issuer : x, NID_basic_constraints, "critical,CA:TRUE");
    cert_ext(x, issuer != NULL ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    X509_NAME_free(name);
    return x;
}

char *kbt_x509_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    long len;

    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    len = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)len);
    BIO_free(b);
    return pem;
}

/* A TCP connection to the broker from a given loopback address. */
int kbt_connect_from(const char *src, int port)
{
    struct sockaddr_in local = {.sin_family = AF_INET}, sa = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(inet_pton(AF_INET, src, &local.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&local, sizeof(local)), 0);
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Has the broker closed fd (end of file or reset) within wait_ms? */
bool kbt_closed_by_server(int fd, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;

    if (poll(&p, 1, wait_ms) <= 0)
        return false;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

/* The parent and state fields of /proc/PID/stat, after the command name (which may hold spaces). */
static bool proc_parent(pid_t pid, pid_t *ppid, char *state)
{
    char path[64], buf[1024], *p;
    FILE *f;
    size_t n;
    int pp = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2, "%c %d", state, &pp) != 2)
        return false;
    *ppid = pp;
    return true;
}

int kbt_children(pid_t parent, pid_t *out, int max)
{
    DIR *dir = opendir("/proc");
    struct dirent *de;
    int n = 0;

    assert_non_null(dir);
    while ((de = readdir(dir)) != NULL && n < max) {
        pid_t pid = (pid_t)atoi(de->d_name), ppid = 0;
        char state = 0;
        if (pid > 0 && proc_parent(pid, &ppid, &state) && ppid == parent && state != 'Z')
            out[n++] = pid;
    }
    closedir(dir);
    return n;
}

void kbt_hsm_pids(const kbt_env *e, pid_t *keeper, pid_t *hsm)
{
    pid_t kids[4];

    /* the HSM process may be starting again: give it a moment to be there */
    for (int i = 0; i < 100; i++) {
        if (kbt_children(e->pid, kids, 4) == 1) {
            *keeper = kids[0];
            if (kbt_children(*keeper, kids, 4) == 1) {
                *hsm = kids[0];
                return;
            }
        }
        usleep(50 * 1000);
    }
    fail_msg("keybrokerd (pid %d) has no HSM keeper with one HSM process", (int)e->pid);
}
