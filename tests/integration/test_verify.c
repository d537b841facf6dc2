/*
 * test_verify.c - keybroker verify and the openssl recipes, with the real CLI, keybrokerd,
 * SoftHSM2 and the openssl binary: for each key type and signature format the broker makes,
 * the command `keybroker sign --out` prints checks the signature (openssl where it reads the
 * format), `keybroker verify` checks it offline against the PEM and online with --key, and
 * both refuse a changed file; PKCS#1 v1.5, certificates, and the README's openssl example as
 * printed.  The CLI reads its token from KEYBROKER_TOKEN_FILE throughout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static kbt_env *env;

static int setup(void **state)
{
    FILE *f;
    char path[400];

    (void)state;
    env = kbt_start(NULL);
    kbt_key(env, "fw-ec", "firmware-signing", "ecdsa-p256", "gateway");
    kbt_key(env, "fw-rsa", "firmware-signing", "rsa-3072", "gateway");
    kbt_key(env, "fw-ed", "firmware-signing", "ed25519", "gateway");
    snprintf(path, sizeof(path), "%s/gateway.bin", env->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++)
        fprintf(f, "firmware block %d\n", i);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    env = NULL;
    return 0;
}

/* keybroker with the broker's URL and KEYBROKER_TOKEN_FILE (none when token is NULL). */
static int cli(char **out, const char *token_file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cli(char **out, const char *token_file, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd),
             "env -u KEYBROKER_TOKEN KEYBROKER_URL=%s %s%s '%s/keybroker' %s 2>&1", env->url,
             token_file != NULL ? "KEYBROKER_TOKEN_FILE=" : "",
             token_file != NULL ? token_file : "", env->bin_dir, args);
    return kbt_sh(env, cmd, out);
}

/* Signs gateway.bin with key in format as version, into sig; the recipe printed into rcp. */
static void sign_file(const char *key, const char *format, const char *version, const char *sig,
                      char *rcp, size_t n)
{
    char *out = NULL, *at;
    int rc = cli(&out, "bootstrap.token",
                 "sign --key %s --file gateway.bin --product gateway --version %s "
                 "--component zlib@1.3.1 --format %s --out %s",
                 key, version, format, sig);

    if (rc != 0)
        fail_msg("sign %s %s: %s", key, format, out);
    at = strstr(out, "): ");
    assert_non_null(at);
    snprintf(rcp, n, "%.*s", (int)strcspn(at + 3, "\n"), at + 3);
    free(out);
}

static void pubkey(const char *key)
{
    char *out = NULL;

    if (cli(&out, "bootstrap.token", "key pubkey %s --out %s.pem", key, key) != 0)
        fail_msg("pubkey: %s", out);
    free(out);
}

/* The recipe, the offline and the online verify pass; after a change to the file none does. */
static void check_all_ways(const char *key, const char *format, const char *sig, const char *recipe,
                           const char *extra)
{
    char *out = NULL, cmd[2048];

    if (kbt_sh(env, recipe, &out) != 0)
        fail_msg("recipe %s failed: %s", recipe, out);
    free(out);
    if (cli(&out, NULL, "verify --pubkey %s.pem --signature %s --file gateway.bin --format %s %s",
            key, sig, format, extra) != 0)
        fail_msg("verify offline %s %s: %s", key, format, out);
    assert_non_null(strstr(out, "verifies with"));
    free(out);
    if (cli(&out, "bootstrap.token",
            "verify --key %s --signature %s --file gateway.bin --format %s %s", key, sig, format,
            extra) != 0)
        fail_msg("verify online %s %s: %s", key, format, out);
    free(out);

    assert_int_equal(kbt_sh(env, "cp gateway.bin keep.bin && echo x >> gateway.bin", NULL), 0);
    snprintf(cmd, sizeof(cmd), "%s >/dev/null 2>&1", recipe);
    assert_int_not_equal(kbt_sh(env, cmd, NULL), 0);
    assert_int_equal(cli(&out, NULL,
                         "verify --pubkey %s.pem --signature %s --file gateway.bin --format %s %s",
                         key, sig, format, extra),
                     1);
    assert_non_null(strstr(out, "does not verify"));
    free(out);
    assert_int_equal(kbt_sh(env, "mv keep.bin gateway.bin", NULL), 0);
}

static void test_each_format(void **state)
{
    static const struct {
        const char *key, *format, *tool;
    } cases[] = {
        {"fw-ec", "der", "openssl dgst"},
        {"fw-ec", "raw", "keybroker verify"},
        {"fw-ec", "cose_sign1", "keybroker verify"},
        {"fw-rsa", "raw", "openssl dgst"},
        {"fw-ed", "raw", "openssl pkeyutl"},
        {"fw-ed", "cose_sign1", "keybroker verify"},
    };
    char recipe[1024], version[32], sig[64], full[1536];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(version, sizeof(version), "1.0.%zu", i);
        snprintf(sig, sizeof(sig), "sig-%zu.bin", i);
        pubkey(cases[i].key);
        sign_file(cases[i].key, cases[i].format, version, sig, recipe, sizeof(recipe));
        if (strncmp(recipe, cases[i].tool, strlen(cases[i].tool)) != 0)
            fail_msg("%s %s: recipe %s", cases[i].key, cases[i].format, recipe);
        /* a printed keybroker verify runs as printed, with this build's CLI */
        if (strncmp(recipe, "keybroker ", 10) == 0)
            snprintf(full, sizeof(full), "'%s/keybroker' %s", env->bin_dir, recipe + 10);
        else
            snprintf(full, sizeof(full), "%s", recipe);
        check_all_ways(cases[i].key, cases[i].format, sig, full, "");
    }
}

static void test_pkcs1_and_digest(void **state)
{
    char *out = NULL, hex[65], body[1024];
    unsigned char md[32];
    char *data = NULL;
    size_t n = 0;
    kbt_resp r;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    char path[400];
    FILE *f;

    (void)state;
    pubkey("fw-rsa");
    snprintf(path, sizeof(path), "%s/gateway.bin", env->dir);
    assert_int_equal(kbr_file_read(path, 1 << 20, &data, &n), KBR_OK);
    kbr_sha256(data, n, md);
    free(data);
    kbr_hex_encode_buf(md, sizeof(md), hex);
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-rsa\",\"digest\":\"%s\",\"padding\":\"pkcs1\",\"artifact\":{"
             "\"product\":\"gateway\",\"version\":\"2.0.0\",\"kind\":\"firmware\"},\"sbom\":{"
             "\"format\":\"cyclonedx\",\"components\":[]}}",
             hex);
    r = kbt_call(env, "POST", "/v1/sign", env->admin, body);
    if (r.status != 200)
        fail_msg("sign: %ld %s", r.status, r.body);
    assert_int_equal(
        kbr_b64_decode(json_string_value(json_object_get(r.json, "signature_b64")), &sig, &siglen),
        KBR_OK);
    kbt_resp_free(&r);
    snprintf(path, sizeof(path), "%s/pkcs1.sig", env->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(sig, 1, siglen, f), siglen);
    fclose(f);
    free(sig);
    /* openssl's default RSA padding is PKCS#1 v1.5 */
    assert_int_equal(kbt_sh(env,
                            "openssl dgst -sha256 -verify fw-rsa.pem -signature pkcs1.sig "
                            "gateway.bin",
                            NULL),
                     0);
    assert_int_equal(cli(&out, NULL,
                         "verify --pubkey fw-rsa.pem --signature pkcs1.sig --file gateway.bin "
                         "--padding pkcs1"),
                     0);
    free(out);
    /* the same signature is not a PSS one */
    assert_int_equal(
        cli(&out, NULL, "verify --pubkey fw-rsa.pem --signature pkcs1.sig --file gateway.bin"), 1);
    free(out);
    /* over the digest alone */
    assert_int_equal(cli(&out, NULL,
                         "verify --pubkey fw-rsa.pem --signature pkcs1.sig --digest %s "
                         "--padding pkcs1",
                         hex),
                     0);
    free(out);
    /* usage errors are exit 2 and say what is wrong */
    assert_int_equal(cli(&out, NULL, "verify --pubkey fw-rsa.pem --signature pkcs1.sig"), 2);
    assert_non_null(strstr(out, "--file"));
    free(out);
    assert_int_equal(
        cli(&out, NULL, "verify --pubkey pkcs1.sig --signature pkcs1.sig --file gateway.bin"), 2);
    assert_non_null(strstr(out, "not a PEM public key"));
    free(out);
}

static void test_certificate(void **state)
{
    char *out = NULL;
    kbt_resp r;
    char path[400];
    FILE *f;

    (void)state;
    kbt_key(env, "ca-gw", "device-identity-ca", "ecdsa-p256", "gateway");
    assert_int_equal(cli(&out, "bootstrap.token",
                         "key certificate ca-gw --self-signed --subject CN=Gateway-CA --days 30"),
                     0);
    free(out);
    r = kbt_call(env, "GET", "/v1/keys/ca-gw", env->admin, NULL);
    assert_int_equal(r.status, 200);
    snprintf(path, sizeof(path), "%s/ca.pem", env->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(json_string_value(json_object_get(json_object_get(r.json, "certificate"), "pem")), f);
    fclose(f);
    kbt_resp_free(&r);
    pubkey("ca-gw");
    pubkey("fw-ec");
    assert_int_equal(cli(&out, NULL, "verify --pubkey ca-gw.pem --certificate ca.pem"), 0);
    assert_non_null(strstr(out, "is signed by ca-gw.pem"));
    free(out);
    assert_int_equal(cli(&out, "bootstrap.token", "verify --key ca-gw --certificate ca.pem"), 0);
    free(out);
    assert_int_equal(cli(&out, NULL, "verify --pubkey fw-ec.pem --certificate ca.pem"), 1);
    assert_non_null(strstr(out, "is not signed by"));
    free(out);
    /* --key without any token: the CLI says so */
    assert_int_equal(cli(&out, NULL, "verify --key ca-gw --certificate ca.pem"), 2);
    assert_non_null(strstr(out, "KEYBROKER_TOKEN_FILE"));
    free(out);
}

/* README.md's CLI example, as printed there. */
static void test_readme_example(void **state)
{
    char *out = NULL;

    (void)state;
    kbt_key(env, "fw-gateway", "firmware-signing", "ecdsa-p256", "gateway");
    assert_int_equal(
        kbt_sh(env,
               "printf '{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.5\",\"components\":[{"
               "\"name\":\"zlib\",\"version\":\"1.3.1\"}]}' > gateway.cdx.json",
               NULL),
        0);
    if (cli(&out, "bootstrap.token",
            "sign --key fw-gateway --file gateway.bin --product gateway --version 1.4.2 "
            "--sbom gateway.cdx.json --format der --out gateway.sig") != 0)
        fail_msg("sign: %s", out);
    free(out);
    if (cli(&out, "bootstrap.token", "key pubkey fw-gateway --out fw-gateway.pem") != 0)
        fail_msg("pubkey: %s", out);
    free(out);
    if (kbt_sh(env,
               "openssl dgst -sha256 -verify fw-gateway.pem -signature gateway.sig gateway.bin",
               &out) != 0)
        fail_msg("openssl: %s", out);
    assert_non_null(strstr(out, "Verified OK"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_format),
        cmocka_unit_test(test_pkcs1_and_digest),
        cmocka_unit_test(test_certificate),
        cmocka_unit_test(test_readme_example),
    };

    return cmocka_run_group_tests_name("keybroker verify and openssl", tests, setup, teardown);
}
