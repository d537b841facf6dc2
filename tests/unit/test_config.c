/*
 * test_config.c - keybrokerd's configuration file and request field
 * readers.  The daemon's sources are not in libkbr, so the files under test
 * are compiled into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../broker/daemon/config.c"
#include "tmpdir.h"
#include "../../broker/daemon/json.c"

static char dir[64];

static kbr_err load(const char *text, kbd_config *cfg, kbr_msg *msg)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/kb.conf", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return kbd_config_load(path, cfg, msg);
}

static void test_defaults_and_relative_paths(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};
    char want[256];

    (void)state;
    assert_int_equal(load("# comment\npin_file = pin   # trailing comment\n", &cfg, &m), KBR_OK);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8443);
    assert_string_equal(cfg.instance_id, "keybroker");
    assert_string_equal(cfg.audit_origin, "keybroker");
    assert_string_equal(cfg.token_label, "keybroker");
    assert_int_equal(cfg.body_limit, 1048576);
    assert_int_equal(cfg.checkpoint_entries, 1000);
    assert_int_equal(cfg.checkpoint_seconds, 60);
    assert_int_equal(cfg.max_connections, 1024);
    assert_int_equal(cfg.max_connections_per_source, 128);
    assert_int_equal(cfg.request_timeout, 60);
    snprintf(want, sizeof(want), "%s/pin", dir);
    assert_string_equal(cfg.pin_file, want);
    snprintf(want, sizeof(want), "sqlite:%s/keybroker.db", dir);
    assert_string_equal(cfg.store, want);
    snprintf(want, sizeof(want), "%s/bootstrap.token", dir);
    assert_string_equal(cfg.bootstrap_token_file, want);
    assert_null(cfg.tls_cert);
    kbd_config_cleanup(&cfg);
}

static void test_values(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};

    (void)state;
    assert_int_equal(load("pin_file = /etc/kb/pin\nlisten = [::1]:0\nworkers = 8\n"
                          "body_limit = 2048\ncheckpoint_every = 500 30s\n"
                          "store = sqlite:/var/lib/kb.db\ninstance_id = plant-7\n"
                          "max_connections = 4096\nmax_connections_per_source = 16\n"
                          "request_timeout = 30\n",
                          &cfg, &m),
                     KBR_OK);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 0);
    assert_int_equal(cfg.workers, 8);
    assert_int_equal(cfg.body_limit, 2048);
    assert_int_equal(cfg.checkpoint_entries, 500);
    assert_int_equal(cfg.checkpoint_seconds, 30);
    assert_string_equal(cfg.store, "sqlite:/var/lib/kb.db");
    assert_string_equal(cfg.pin_file, "/etc/kb/pin");
    assert_string_equal(cfg.instance_id, "plant-7");
    /* the checkpoints' origin follows instance_id unless set */
    assert_string_equal(cfg.audit_origin, "plant-7");
    assert_int_equal(cfg.max_connections, 4096);
    assert_int_equal(cfg.max_connections_per_source, 16);
    assert_int_equal(cfg.request_timeout, 30);
    kbd_config_cleanup(&cfg);
}

static void expect_error(const char *text, const char *needle)
{
    kbd_config cfg;
    kbr_msg m = {{0}};

    assert_int_equal(load(text, &cfg, &m), KBR_ERR_CONFIG);
    if (strstr(m.text, needle) == NULL)
        fail_msg("message \"%s\" does not name \"%s\"", m.text, needle);
    kbd_config_cleanup(&cfg);
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    expect_error("listen = 127.0.0.1:8443\n", "pin_file is required");
    expect_error("pin_file = p\nworkerz = 2\n", "kb.conf:2: unknown key \"workerz\"");
    expect_error("pin_file = p\nworkers = 0\n", "kb.conf:2: bad value for workers");
    expect_error("pin_file = p\nlisten = 127.0.0.1\n", "bad value for listen");
    expect_error("pin_file = p\nlisten = 127.0.0.1:70000\n", "bad value for listen");
    expect_error("pin_file = p\nbody_limit = 12x\n", "bad value for body_limit");
    expect_error("pin_file = p\nno equals sign\n", "kb.conf:2: expected `key = value`");
    expect_error("pin_file =\n", "pin_file has no value");
    expect_error("pin_file = p\ntls_cert = c.pem\n", "tls_cert and tls_key go together");
    expect_error("pin_file = p\ntls_client_ca = ca.pem\n", "tls_client_ca needs");
    expect_error("pin_file = p\ncheckpoint_every = soon\n", "checkpoint_every");
    expect_error("pin_file = p\ninstance_id = a b\n", "instance_id");
    expect_error("pin_file = p\nmax_connections = 8\n", "kb.conf:2: bad value for max_connections");
    expect_error("pin_file = p\naudit_origin = log example\n",
                 "kb.conf:2: bad value for audit_origin");
    expect_error("pin_file = p\naudit_origin = log+2\n", "bad value for audit_origin");
    expect_error("pin_file = p\ninstance_id = plant+7\n", "set audit_origin");
    expect_error("pin_file = p\nrequest_timeout = 0\n", "bad value for request_timeout");
    expect_error("pin_file = p\nmax_connections_per_source = 0\n",
                 "bad value for max_connections_per_source");
    expect_error("pin_file = p\nmax_connections = 64\nmax_connections_per_source = 65\n",
                 "max_connections_per_source (65) exceeds max_connections (64)");
}

static void test_audit_origin(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};

    (void)state;
    assert_int_equal(
        load("pin_file = p\ninstance_id = plant+7\naudit_origin = acme.example/kb\n", &cfg, &m),
        KBR_OK);
    assert_string_equal(cfg.instance_id, "plant+7");
    assert_string_equal(cfg.audit_origin, "acme.example/kb");
    kbd_config_cleanup(&cfg);
}

static void test_missing_file(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};

    (void)state;
    assert_int_equal(kbd_config_load("/nonexistent/kb.conf", &cfg, &m), KBR_ERR_CONFIG);
    assert_non_null(strstr(m.text, "/nonexistent/kb.conf"));
    kbd_config_cleanup(&cfg);
}

static void test_field_readers(void **state)
{
    json_t *o = json_loads("{\"name\":\"fw-1\",\"n\":5,\"list\":[\"a\",\"b*\"],\"bad\":\"a b\","
                           "\"s\":\"\",\"x\":1}",
                           0, NULL);
    static const char *const allowed[] = {"name", "n", "list", "bad", "s", NULL};
    const char *v = NULL;
    int64_t n = 0;
    json_t *arr = NULL;
    kbr_msg m = {{0}};

    (void)state;
    assert_int_equal(kbd_json_only(o, allowed, &m), KBR_ERR_BAD_REQUEST);
    assert_string_equal(m.text, "unknown field \"x\"");
    assert_int_equal(kbd_json_name(o, "name", true, &v, &m), KBR_OK);
    assert_string_equal(v, "fw-1");
    assert_int_equal(kbd_json_name(o, "bad", true, &v, &m), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(m.text, "bad:"));
    assert_int_equal(kbd_json_str(o, "s", true, 10, &v, &m), KBR_ERR_BAD_REQUEST);
    assert_string_equal(m.text, "s: must not be empty");
    assert_int_equal(kbd_json_str(o, "missing", true, 10, &v, &m), KBR_ERR_BAD_REQUEST);
    assert_string_equal(m.text, "missing: required");
    assert_int_equal(kbd_json_str(o, "missing", false, 10, &v, &m), KBR_OK);
    assert_null(v);
    assert_int_equal(kbd_json_int(o, "n", true, 1, 10, &n, &m), KBR_OK);
    assert_int_equal(n, 5);
    assert_int_equal(kbd_json_int(o, "n", true, 6, 10, &n, &m), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbd_json_int(o, "name", true, 0, 10, &n, &m), KBR_ERR_BAD_REQUEST);
    assert_string_equal(m.text, "name: must be an integer");
    assert_int_equal(kbd_json_names(o, "list", true, &arr, &m), KBR_ERR_BAD_REQUEST);
    assert_string_equal(m.text, "list[1]: not a valid name");
    assert_int_equal(kbd_msg_prefix(&m, "artifact", KBR_ERR_BAD_REQUEST), KBR_ERR_BAD_REQUEST);
    assert_string_equal(m.text, "artifact.list[1]: not a valid name");
    json_decref(o);
}

static int setup(void **state)
{
    (void)state;
    return kbt_tmpdir(dir, sizeof(dir), "kbr-config");
}

static int teardown(void **state)
{
    (void)state;
    return kbt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_relative_paths),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_audit_origin),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_field_readers),
    };

    return cmocka_run_group_tests_name("keybrokerd config", tests, setup, teardown);
}
