/*
 * test_config.c - keybrokerd's configuration file and request field
 * readers, linked from libkbrd.a (the daemon's sources but keybrokerd.c) as
 * keybrokerd links them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../broker/daemon/kbd.h"
#include "tmpdir.h"

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
    assert_null(cfg.crl_url);
    assert_int_equal(cfg.crl_validity, 7 * 86400);
    kbd_config_cleanup(&cfg);
}

/* A store named through a symbolic link is configured as the file it reaches, options kept:
 * the daemon locks, opens and compares on reload by that one name. */
static void test_store_through_a_link(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};
    char cmd[256], want[256], *real = realpath(dir, NULL);

    (void)state;
    assert_non_null(real);
    snprintf(cmd, sizeof(cmd), "cd '%s' && mkdir -p vol && ln -sfn vol/kb.db link.db", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(load("pin_file = pin\nstore = sqlite:link.db?max_pages=100\n", &cfg, &m),
                     KBR_OK);
    snprintf(want, sizeof(want), "sqlite:%s/vol/kb.db?max_pages=100", real);
    assert_string_equal(cfg.store, want);
    kbd_config_cleanup(&cfg);
    /* a name SQLite cannot follow is kept, for the lock to refuse with the reason */
    snprintf(cmd, sizeof(cmd), "cd '%s' && ln -sfn loop.db loop.db", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(load("pin_file = pin\nstore = sqlite:loop.db\n", &cfg, &m), KBR_OK);
    snprintf(want, sizeof(want), "sqlite:%s/loop.db", dir);
    assert_string_equal(cfg.store, want);
    kbd_config_cleanup(&cfg);
    free(real);
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
    /* a CRL URL names the CA key once, and is a URL a certificate can carry */
    expect_error("pin_file = p\ncrl_url = http://pki.example.com/ca.crl\n",
                 "kb.conf:2: bad value for crl_url");
    expect_error("pin_file = p\ncrl_url = http://pki/{key}/{key}.crl\n", "bad value for crl_url");
    expect_error("pin_file = p\ncrl_url = ldap://pki/{key}\n", "bad value for crl_url");
    expect_error("pin_file = p\ncrl_url = http://pki/a b/{key}\n", "bad value for crl_url");
    expect_error("pin_file = p\ncrl_url = http://pki/\xc3\xa9/{key}\n", "bad value for crl_url");
    expect_error("pin_file = p\ncrl_validity = 1\n", "bad value for crl_validity");
}

static void test_crl_url(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};
    kbr_err err = KBR_ERR_INTERNAL;
    char *url;

    (void)state;
    assert_int_equal(load("pin_file = p\n", &cfg, &m), KBR_OK);
    assert_null(kbd_crl_url_for(&cfg, "ca-gw", &err));
    assert_int_equal(err, KBR_OK);
    kbd_config_cleanup(&cfg);
    assert_int_equal(load("pin_file = p\ncrl_url = https://pki.example.com/v1/cas/{key}/crl\n"
                          "crl_validity = 3600\n",
                          &cfg, &m),
                     KBR_OK);
    assert_int_equal(cfg.crl_validity, 3600);
    url = kbd_crl_url_for(&cfg, "ca-gw.2026@plant+7", &err);
    assert_int_equal(err, KBR_OK);
    assert_string_equal(url, "https://pki.example.com/v1/cas/ca-gw.2026@plant+7/crl");
    free(url);
    kbd_config_cleanup(&cfg);
    assert_int_equal(load("pin_file = p\ncrl_url = http://crl.example.com/{key}\n", &cfg, &m),
                     KBR_OK);
    url = kbd_crl_url_for(&cfg, "ca", &err);
    assert_string_equal(url, "http://crl.example.com/ca");
    free(url);
    kbd_config_cleanup(&cfg);
}

/* The OIDC issuers file; text is written as oidc.conf beside kb.conf. */
static kbr_err load_oidc(const char *text, kbd_config *cfg, kbr_msg *msg)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/oidc.conf", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return load("pin_file = p\noidc_issuers = oidc.conf\n", cfg, msg);
}

#define ISSUER                                                                                     \
    "[issuer gh]\nissuer = https://token.actions.githubusercontent.com\n"                          \
    "jwks_file = jwks.json\naudience = kb\nalgorithms = RS256\n"
#define RULE                                                                                       \
    "[rule r]\nissuer = gh\nclaim.repository = acme/fw\nprincipal = ci:github/{repository}\n"      \
    "ops = sign\nkeys = fw\nproducts = gw\n"

static void expect_oidc_error(const char *text, const char *want)
{
    kbd_config cfg;
    kbr_msg m = {{0}};

    assert_int_equal(load_oidc(text, &cfg, &m), KBR_ERR_CONFIG);
    if (strstr(m.text, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, m.text);
    kbd_config_cleanup(&cfg);
}

static void test_oidc_issuers(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};
    char want[256];

    (void)state;
    assert_int_equal(load_oidc("# comment\n" ISSUER "leeway = 10 # trailing\n" RULE
                               "max_uses = 3\nttl = 300\n",
                               &cfg, &m),
                     KBR_OK);
    assert_int_equal(cfg.oidc.nissuers, 1);
    assert_int_equal(cfg.oidc.nrules, 1);
    assert_int_equal(cfg.oidc.issuers[0].leeway, 10);
    assert_int_equal(cfg.oidc.issuers[0].max_ttl, 3600);
    assert_int_equal(cfg.oidc.issuers[0].algs, KBR_JWA_RS256);
    snprintf(want, sizeof(want), "%s/jwks.json", dir);
    assert_string_equal(cfg.oidc.issuers[0].jwks_file, want);
    assert_int_equal(cfg.oidc.rules[0].nconds, 1);
    assert_int_equal(cfg.oidc.rules[0].ttl, 300);
    assert_int_equal(cfg.oidc.rules[0].scope.max_uses, 3);
    assert_true(cfg.oidc.rules[0].scope.ops == KBR_OP_SIGN);
    assert_int_equal(cfg.oidc_exchange_rate, 10);
    kbd_config_cleanup(&cfg);

    /* the examples shipped in contrib/ci are valid */
    assert_int_equal(
        kbd_oidc_config_load(KBR_UNIT_DATA "/../../../contrib/ci/oidc-issuers.conf", &cfg.oidc, &m),
        KBR_OK);
    assert_int_equal(cfg.oidc.nissuers, 2);
    assert_int_equal(cfg.oidc.nrules, 2);
    kbd_oidc_config_cleanup(&cfg.oidc);

    expect_oidc_error(ISSUER "colour = blue\n", "oidc.conf:6: unknown key \"colour\"");
    expect_oidc_error(ISSUER "algorithms = HS256\n", "algorithm \"HS256\"");
    expect_oidc_error("[issuer gh]\nissuer = https://x\naudience = kb\nalgorithms = RS256\n",
                      "exactly one of jwks_file and jwks_url");
    expect_oidc_error("[issuer gh]\nissuer = https://x\naudience = kb\nalgorithms = RS256\n"
                      "jwks_url = http://example.com/keys\n",
                      "jwks_url must be https");
    expect_oidc_error(ISSUER "[rule r]\nissuer = gh\nprincipal = ci:github/{repository}\nops = "
                             "sign\n",
                      "needs at least one claim.NAME condition");
    expect_oidc_error(ISSUER "[rule r]\nissuer = gh\nclaim.repository = *\nprincipal = "
                             "ci:github/{repository}\nops = sign\n",
                      "not just '*'");
    expect_oidc_error(ISSUER "[rule r]\nissuer = gh\nclaim.repository = acme/fw\nprincipal = "
                             "ci:{repository}\nops = sign\n",
                      "principal must start with <kind>:<namespace>/");
    expect_oidc_error(ISSUER "[rule r]\nissuer = gh\nclaim.repository = acme/fw\nprincipal = "
                             "ci:github/{repository}\nops = admin\n",
                      "never holds admin");
    expect_oidc_error(ISSUER "[rule r]\nissuer = nobody\n", "is not an [issuer] section above");
    expect_oidc_error(ISSUER RULE "ttl = 7200\n", "over the max_ttl");
    expect_oidc_error(ISSUER RULE
                      "[issuer gl]\nissuer = https://gitlab.com\njwks_file = j\naudience = kb\n"
                      "algorithms = RS256\n[rule s]\nissuer = gl\nclaim.project_path = a/b\n"
                      "principal = ci:github/{project_path}\nops = sign\n",
                      "could be the same");
    expect_oidc_error("", "no [issuer] section");
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

/* The operational settings: ops_listen, log_file (relative to the file), log_format. */
static void test_ops_and_log_settings(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};
    char want[256];

    (void)state;
    assert_int_equal(load("pin_file = pin\nops_listen = 0.0.0.0:9443\nlog_file = kb.log\n"
                          "log_format = json\n",
                          &cfg, &m),
                     KBR_OK);
    assert_string_equal(cfg.ops_listen_host, "0.0.0.0");
    assert_int_equal(cfg.ops_listen_port, 9443);
    snprintf(want, sizeof(want), "%s/kb.log", dir);
    assert_string_equal(cfg.log_file, want);
    assert_true(cfg.log_json);
    kbd_config_cleanup(&cfg);
    assert_int_equal(load("pin_file = pin\nlog_format = yaml\n", &cfg, &m), KBR_ERR_CONFIG);
    assert_non_null(strstr(m.text, ":2: bad value for log_format: \"yaml\""));
    kbd_config_cleanup(&cfg);
    assert_int_equal(load("pin_file = pin\nops_listen = 9443\n", &cfg, &m), KBR_ERR_CONFIG);
    assert_non_null(strstr(m.text, "ops_listen"));
    kbd_config_cleanup(&cfg);
    assert_int_equal(
        load("pin_file = pin\nlisten = 127.0.0.1:8443\nops_listen = 127.0.0.1:8443\n", &cfg, &m),
        KBR_ERR_CONFIG);
    assert_non_null(strstr(m.text, "ops_listen is the listen address"));
    kbd_config_cleanup(&cfg);
}

static void collect(const char *problem, void *arg)
{
    char *all = arg;

    strncat(all, problem, 2047 - strlen(all));
    strncat(all, "\n", 2047 - strlen(all));
}

/* --check's reading: every bad line and a missing setting, each once, in order. */
static void test_every_problem_reported(void **state)
{
    kbd_config cfg;
    kbr_msg m = {{0}};
    char path[128], all[2048] = "";
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/kb.conf", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("listen_adress = 1\nworkers = many\n", f);
    for (int i = 0; i < 5000; i++)
        fputc('x', f);
    fputs("\nlog_format = json\n", f);
    fclose(f);
    assert_int_equal(kbd_config_load_all(path, &cfg, collect, all, &m), KBR_ERR_CONFIG);
    assert_non_null(strstr(m.text, ":1: unknown key \"listen_adress\""));
    assert_non_null(strstr(all, ":1: unknown key \"listen_adress\"\n"));
    assert_non_null(strstr(all, ":2: bad value for workers: \"many\"\n"));
    assert_non_null(strstr(all, ":3: line too long\n"));
    assert_non_null(strstr(all, "pin_file is required\n"));
    /* the rest of the long line is not a line of its own, and the line after it is read */
    assert_null(strstr(all, ":4:"));
    assert_true(cfg.log_json);
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

/* What json_pack's "s:s" and "s:s?" made, member by member. */
static void test_set_str(void **state)
{
    json_t *o = json_object();
    char *text;

    (void)state;
    assert_true(kbd_json_set_str(o, "name", "zlib", false));
    assert_true(kbd_json_set_str(o, "version", NULL, true));
    assert_false(kbd_json_set_str(o, "purl", NULL, false));
    assert_false(kbd_json_set_str(o, "bad", "\xff", true));
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"name\":\"zlib\",\"version\":null}");
    free(text);
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
        cmocka_unit_test(test_store_through_a_link),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_audit_origin),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_ops_and_log_settings),
        cmocka_unit_test(test_every_problem_reported),
        cmocka_unit_test(test_crl_url),
        cmocka_unit_test(test_oidc_issuers),
        cmocka_unit_test(test_field_readers),
        cmocka_unit_test(test_set_str),
    };

    return cmocka_run_group_tests_name("keybrokerd config", tests, setup, teardown);
}
