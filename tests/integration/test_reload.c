/*
 * test_reload.c - SIGHUP on a broker serving HTTPS with client certificates:
 * a renewed certificate reaches new connections while a kept-alive one goes
 * on, a certificate that does not load keeps the old one, the daemon keeps
 * running throughout, and a change that needs a restart is named.  Also the
 * ops listener: health and metrics without a client certificate, nothing
 * else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "harness.h"

static kbt_env *env;
static int ops_port;

/* A CA, a client certificate, and server certificates with serials 1001 and 2002. */
static const char *PKI =
    "set -e; "
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
    "  -out ca.pem -days 2 -subj /CN=kbt-reload-ca 2>/dev/null; "
    "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > srv.ext; "
    "printf 'extendedKeyUsage=clientAuth\\n' > cli.ext; "
    "for n in server-1001 server-2002 clientA; do "
    "  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key "
    "    -out $n.csr -subj /CN=$n 2>/dev/null; "
    "  ext=srv.ext; s=${n#server-}; [ $n = clientA ] && ext=cli.ext && s=77; "
    "  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -set_serial 0x$s -out $n.pem "
    "    -days 2 -extfile $ext 2>/dev/null; "
    "done; "
    "cp server-1001.pem server.pem; cp server-1001.key server.key";

static int setup(void **state)
{
    char *log = NULL, *p;

    (void)state;
    env = kbt_new();
    assert_int_equal(kbt_sh(env, PKI, NULL), 0);
    env->https = true;
    snprintf(env->cacert, sizeof(env->cacert), "%s/ca.pem", env->dir);
    snprintf(env->client_cert, sizeof(env->client_cert), "%s/clientA.pem", env->dir);
    snprintf(env->client_key, sizeof(env->client_key), "%s/clientA.key", env->dir);
    kbt_launch(env, "tls_cert = server.pem\ntls_key = server.key\ntls_client_ca = ca.pem\n"
                    "ops_listen = 127.0.0.1:0\n");
    assert_int_equal(kbt_sh(env, "cat keybrokerd.log", &log), 0);
    p = strstr(log, "ops listening on 127.0.0.1:");
    assert_non_null(p);
    ops_port = atoi(p + strlen("ops listening on 127.0.0.1:"));
    assert_true(ops_port > 0);
    free(log);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    return 0;
}

/* The serial of the certificate a new connection is served. */
static char *served_serial(void)
{
    char *cmd = NULL, *out = NULL;

    assert_true(asprintf(&cmd,
                         "openssl s_client -connect 127.0.0.1:%d -cert clientA.pem -key "
                         "clientA.key -CAfile ca.pem </dev/null 2>/dev/null | "
                         "openssl x509 -noout -serial",
                         env->port) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    free(cmd);
    return out;
}

static bool log_has(const char *needle, int wait_ms)
{
    char *cmd = NULL;
    bool found = false;

    assert_true(asprintf(&cmd, "grep -qF '%s' keybrokerd.log", needle) > 0);
    for (int waited = 0; !found && waited <= wait_ms; waited += 50) {
        found = kbt_sh(env, cmd, NULL) == 0;
        if (!found)
            usleep(50 * 1000);
    }
    free(cmd);
    return found;
}

static int log_count(const char *needle)
{
    char *cmd = NULL, *out = NULL;
    int n;

    assert_true(asprintf(&cmd, "grep -cF '%s' keybrokerd.log || true", needle) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    n = atoi(out);
    free(out);
    free(cmd);
    return n;
}

/* Reloads that ended, done or refused. */
static int reloads_ended(void)
{
    return log_count("keybrokerd: reload done") +
           log_count("nothing changed, the running configuration stays");
}

/* SIGHUP, and the wait for the reload's last line. */
static void reload(void)
{
    int before = reloads_ended();

    assert_int_equal(kill(env->pid, SIGHUP), 0);
    for (int i = 0; i < 100 && reloads_ended() == before; i++)
        usleep(50 * 1000);
    if (reloads_ended() == before)
        fail_msg("no reload after SIGHUP; see %s", env->log);
    assert_int_equal(kill(env->pid, 0), 0);
}

/* A request on the harness's handle: status, and whether it made a new connection. */
static long call_counting(long *connects)
{
    kbt_resp r = kbt_call(env, "GET", "/v1/keys", env->admin, NULL);
    long status = r.status;

    curl_easy_getinfo(env->curl, CURLINFO_NUM_CONNECTS, connects);
    kbt_resp_free(&r);
    return status;
}

static void test_sighup_renews_certificate(void **state)
{
    char *serial;
    long connects = -1;

    (void)state;
    serial = served_serial();
    assert_string_equal(serial, "serial=1001\n");
    free(serial);
    /* a connection opened before the renewal */
    assert_int_equal(call_counting(&connects), 200);
    assert_int_equal(call_counting(&connects), 200);
    assert_int_equal(connects, 0);

    assert_int_equal(
        kbt_sh(env, "cp server-2002.pem server.pem && cp server-2002.key server.key", NULL), 0);
    reload();
    assert_true(log_has("new connections get the certificate of", 0));
    serial = served_serial();
    assert_string_equal(serial, "serial=2002\n");
    free(serial);
    /* the kept-alive connection still works, on its first certificate */
    assert_int_equal(call_counting(&connects), 200);
    assert_int_equal(connects, 0);
}

static void test_bad_certificate_keeps_the_old_one(void **state)
{
    char *serial;
    kbt_resp r;
    long connects = -1;

    (void)state;
    /* a certificate whose key is another: the start would refuse it, the reload keeps 2002 */
    assert_int_equal(
        kbt_sh(env, "cp server-1001.pem server.pem && cp server-2002.key server.key", NULL), 0);
    reload();
    assert_true(log_has("still serving the certificate loaded before", 0));
    assert_true(log_has("key values mismatch", 0));
    serial = served_serial();
    assert_string_equal(serial, "serial=2002\n");
    free(serial);
    r = kbt_call(env, "GET", "/metrics", NULL, NULL);
    assert_non_null(strstr(r.body, "keybroker_config_last_reload_successful 0\n"));
    kbt_resp_free(&r);
    /* not PEM at all */
    assert_int_equal(kbt_sh(env, "echo garbage > server.pem", NULL), 0);
    reload();
    serial = served_serial();
    assert_string_equal(serial, "serial=2002\n");
    free(serial);
    /* put right again, the next reload takes it */
    assert_int_equal(
        kbt_sh(env, "cp server-1001.pem server.pem && cp server-1001.key server.key", NULL), 0);
    reload();
    serial = served_serial();
    assert_string_equal(serial, "serial=1001\n");
    free(serial);
    r = kbt_call(env, "GET", "/metrics", NULL, NULL);
    assert_non_null(strstr(r.body, "keybroker_config_last_reload_successful 1\n"));
    assert_non_null(strstr(r.body, "keybroker_tls_certificate_expiry_timestamp_seconds "));
    kbt_resp_free(&r);
    assert_int_equal(call_counting(&connects), 200);
}

/* A setting read once at start is named, and nothing else changes. */
static void test_change_needing_restart_is_named(void **state)
{
    kbt_resp r;

    (void)state;
    assert_int_equal(kbt_sh(env,
                            "cp keybroker.conf keep.conf && echo 'rate_limit = 7' >> "
                            "keybroker.conf",
                            NULL),
                     0);
    reload();
    assert_true(log_has("reload: rate_limit changed; restart keybrokerd to apply it", 0));
    /* a line that does not parse: nothing changes at all */
    assert_int_equal(kbt_sh(env, "echo 'workers = many' >> keybroker.conf", NULL), 0);
    reload();
    assert_true(log_has("bad value for workers", 0));
    assert_true(log_has("nothing changed, the running configuration stays", 0));
    assert_int_equal(kbt_sh(env, "mv keep.conf keybroker.conf", NULL), 0);
    r = kbt_call(env, "GET", "/v1/health", NULL, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
}

static long ops_get(const char *method, const char *path, const char *token, char **body)
{
    char *cmd = NULL, *out = NULL, *nl;
    long status;

    assert_true(asprintf(&cmd, "curl -s -X %s %s%s%s -w '\\n%%{http_code}' http://127.0.0.1:%d%s",
                         method, token != NULL ? "-H 'Authorization: Bearer " : "",
                         token != NULL ? token : "", token != NULL ? "'" : "", ops_port, path) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    nl = strrchr(out, '\n');
    assert_non_null(nl);
    status = atol(nl + 1);
    *nl = '\0';
    if (body != NULL)
        *body = out;
    else
        free(out);
    free(cmd);
    return status;
}

static void test_ops_listen_serves_health_and_metrics_only(void **state)
{
    char *body = NULL;

    (void)state;
    assert_int_equal(ops_get("GET", "/v1/health", NULL, &body), 200);
    assert_non_null(strstr(body, "\"status\":\"ok\""));
    free(body);
    assert_int_equal(ops_get("GET", "/metrics", NULL, &body), 200);
    assert_non_null(strstr(body, "# TYPE keybroker_hsm_up gauge"));
    free(body);
    /* nothing of the API, with or without a token */
    assert_int_equal(ops_get("GET", "/v1/keys", env->admin, &body), 404);
    assert_non_null(strstr(body, "serves GET /v1/health and GET /metrics only"));
    free(body);
    assert_int_equal(ops_get("GET", "/v1/jwks", NULL, NULL), 404);
    assert_int_equal(ops_get("GET", "/v1/audit", env->admin, NULL), 404);
    assert_true(ops_get("POST", "/v1/tokens", env->admin, NULL) >= 400);
    assert_true(ops_get("POST", "/metrics", NULL, NULL) >= 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sighup_renews_certificate),
        cmocka_unit_test(test_bad_certificate_keeps_the_old_one),
        cmocka_unit_test(test_change_needing_restart_is_named),
        cmocka_unit_test(test_ops_listen_serves_health_and_metrics_only),
    };

    return cmocka_run_group_tests_name("keybrokerd SIGHUP and ops_listen", tests, setup, teardown);
}
