/*
 * test_startup.c - deployment and start-up: --init is idempotent but for
 * the bootstrap token, and a broken deployment stops the start with a
 * message that names the cause.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static kbt_env *env;

static int setup(void **state)
{
    (void)state;
    env = kbt_start(NULL);
    kbt_key(env, "fw", "firmware-signing", "ecdsa-p256", "gateway");
    kbt_stop(env);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    return 0;
}

static void rewrite_conf(const char *extra)
{
    char *cmd = NULL;

    assert_true(asprintf(&cmd,
                         "cp keybroker.conf good.conf && printf '%%s\\n' '%s' >> keybroker.conf",
                         extra) > 0);
    assert_int_equal(kbt_sh(env, cmd, NULL), 0);
    free(cmd);
}

static void restore_conf(void)
{
    assert_int_equal(kbt_sh(env, "mv good.conf keybroker.conf", NULL), 0);
}

static void expect_start_failure(const char *needle)
{
    char *out = NULL;
    int rc = kbt_run_daemon(env, "-c keybroker.conf", &out);

    if (rc != 1 || strstr(out, needle) == NULL)
        fail_msg("expected exit 1 naming \"%s\", got %d: %s", needle, rc, out);
    free(out);
}

static void test_bad_config_line(void **state)
{
    (void)state;
    rewrite_conf("listen_adress = 127.0.0.1:1");
    expect_start_failure("listen_adress");
    restore_conf();
    rewrite_conf("workers = many");
    expect_start_failure("workers");
    restore_conf();
}

static void test_wrong_pin(void **state)
{
    (void)state;
    assert_int_equal(kbt_sh(env, "cp pin pin.good && echo 9999 > pin", NULL), 0);
    expect_start_failure("PIN");
    assert_int_equal(kbt_sh(env, "mv pin.good pin", NULL), 0);
}

static void test_missing_module(void **state)
{
    (void)state;
    rewrite_conf("pkcs11_module = /nonexistent/libpkcs11.so");
    expect_start_failure("/nonexistent/libpkcs11.so");
    restore_conf();
}

static void test_unwritable_store(void **state)
{
    (void)state;
    rewrite_conf("store = sqlite:/proc/keybroker/keybroker.db");
    expect_start_failure("/proc/keybroker/keybroker.db");
    restore_conf();
}

static void test_non_loopback_plain_http(void **state)
{
    (void)state;
    rewrite_conf("listen = 0.0.0.0:0");
    expect_start_failure("loopback");
    restore_conf();
}

static void test_init_again(void **state)
{
    char *old = strdup(env->admin), *out = NULL, *fresh = NULL;
    kbt_resp r;

    (void)state;
    assert_int_equal(kbt_run_daemon(env, "-c keybroker.conf --init", &out), 0);
    free(out);
    assert_int_equal(kbt_sh(env, "cat bootstrap.token", &fresh), 0);
    assert_int_equal(kbt_sh(env, "stat -c %a bootstrap.token | grep -qx 600", NULL), 0);
    assert_string_not_equal(old, fresh);
    assert_int_equal(kbt_spawn_daemon(env), 0);
    /* the key made before is still there; the old bootstrap token is not */
    r = kbt_call(env, "GET", "/v1/keys/fw", fresh, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/keys/fw", old, NULL);
    assert_int_equal(r.status, 401);
    kbt_resp_free(&r);
    free(env->admin);
    env->admin = fresh;
    free(old);
}

/*
 * A running daemon keeps its tokens in memory: --init beside it would revoke a bootstrap
 * token the daemon goes on honouring, and a second daemon would serve from state it cannot
 * see change.  Both are refused while one serves, naming it, and change nothing.
 */
static void test_one_process_per_store(void **state)
{
    char *out = NULL, *token = NULL, pid[32];
    kbt_resp r;

    if (kbt_pg())
        skip(); /* brokers share a PostgreSQL store by design: test_pg.c */

    (void)state;
    snprintf(pid, sizeof(pid), "(pid %d,", (int)env->pid);
    assert_int_equal(kbt_run_daemon(env, "-c keybroker.conf --init", &out), 1);
    if (strstr(out, "in use by another keybrokerd") == NULL || strstr(out, pid) == NULL ||
        strstr(out, "stop it before --init") == NULL)
        fail_msg("expected --init refused naming %s, got: %s", pid, out);
    free(out);
    assert_int_equal(kbt_sh(env, "cat bootstrap.token", &token), 0);
    assert_string_equal(token, env->admin);
    free(token);
    assert_int_equal(kbt_run_daemon(env, "-c keybroker.conf", &out), 1);
    if (strstr(out, "in use by another keybrokerd") == NULL || strstr(out, pid) == NULL)
        fail_msg("expected a second daemon refused naming %s, got: %s", pid, out);
    free(out);
    /* nor by another name for the file (a symbolic link elsewhere): SQLite opens the file the
     * link reaches, and the lock goes by that file, not by the name */
    assert_int_equal(kbt_sh(env,
                            "rm -rf al && mkdir al && ln -s ../keybroker.db al/k.db && sed "
                            "'s|^store *=.*|store = sqlite:al/k.db|' keybroker.conf > al.conf && "
                            "grep -q '^store = sqlite:al/k.db$' al.conf",
                            NULL),
                     0);
    assert_int_equal(kbt_run_daemon(env, "-c al.conf", &out), 1);
    if (strstr(out, "in use by another keybrokerd") == NULL || strstr(out, pid) == NULL)
        fail_msg("expected a daemon through a link refused naming %s, got: %s", pid, out);
    free(out);
    assert_int_equal(kbt_sh(env, "ls -A al", &out), 0);
    assert_string_equal(out, "k.db\n");
    free(out);
    assert_int_equal(kbt_sh(env, "rm -rf al al.conf", NULL), 0);
    r = kbt_call(env, "GET", "/v1/keys/fw", env->admin, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    /* the lock goes with the process, however it ends */
    kbt_kill_restart(env);
    r = kbt_call(env, "GET", "/v1/keys/fw", env->admin, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
}

/* keybrokerd under an open-files limit of 512, stopped after 8 s if it starts. */
static int run_with_512_files(char **out)
{
    char *cmd = NULL;
    int rc;

    assert_true(
        asprintf(&cmd, "ulimit -n 512 && timeout -s TERM 8 '%s/keybrokerd' -c keybroker.conf 2>&1",
                 env->bin_dir) > 0);
    rc = kbt_sh(env, cmd, out);
    free(cmd);
    return rc;
}

static void test_connection_limit_settings(void **state)
{
    char *out = NULL;
    int rc;

    (void)state;
    kbt_stop(env);
    rewrite_conf("max_connections = 100\nmax_connections_per_source = 200");
    expect_start_failure("max_connections_per_source (200) exceeds max_connections (100)");
    restore_conf();
    /* a max_connections the file sets is kept, or the start refused */
    rewrite_conf("max_connections = 1024");
    rc = run_with_512_files(&out);
    if (rc != 1 || strstr(out, "max_connections = 1024 needs 1248 open files") == NULL)
        fail_msg("expected exit 1 naming the open-files limit, got %d: %s", rc, out);
    free(out);
    restore_conf();
    /* the default is lowered to fit, and the broker says so and serves (timeout stops it) */
    rc = run_with_512_files(&out);
    if (rc != 124 || strstr(out, "max_connections lowered to 288 (128 per source)") == NULL ||
        strstr(out, "listening on") == NULL)
        fail_msg("expected a start with max_connections lowered to 288, got %d: %s", rc, out);
    free(out);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

static void test_sigterm_exits_zero(void **state)
{
    (void)state;
    /* kbt_stop asserts exit status 0 after SIGTERM */
    kbt_stop(env);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config_line),
        cmocka_unit_test(test_wrong_pin),
        cmocka_unit_test(test_missing_module),
        cmocka_unit_test(test_unwritable_store),
        cmocka_unit_test(test_non_loopback_plain_http),
        cmocka_unit_test(test_init_again),
        cmocka_unit_test(test_one_process_per_store),
        cmocka_unit_test(test_connection_limit_settings),
        cmocka_unit_test(test_sigterm_exits_zero),
    };

    return cmocka_run_group_tests_name("keybrokerd start-up", tests, setup, teardown);
}
