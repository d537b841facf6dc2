/*
 * test_cli.c - the keybroker CLI's pure parts: option parsing, list
 * splitting, tables, local digests, SBOM encoding and sign request bodies.
 *
 * The CLI's sources are not in libkbr.a (they belong to bin/keybroker), so
 * the files under test are included directly; none of them has main().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../broker/cli/args.c"
#include "../../broker/cli/sign.c"
#include "../../broker/cli/table.c"

/* ---- fixtures ---- */

typedef struct {
    char dir[64];
} tmpdir;

static int tmp_setup(void **state)
{
    tmpdir *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/kbr-cli-XXXXXX");
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int tmp_teardown(void **state)
{
    tmpdir *t = *state;
    int rc = nftw(t->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);

    free(t);
    return rc;
}

static void tmp_path(const tmpdir *t, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", t->dir, name);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* ---- option parsing ---- */

static const cli_opt issue_opts[] = {
    {"sub", CLI_OPT_STR, true, "S"},          {"op", CLI_OPT_LIST, true, "OP"},
    {"ttl", CLI_OPT_INT, true, "SECONDS"},    {"max-uses", CLI_OPT_INT, false, "N"},
    {"component", CLI_OPT_MULTI, false, "C"}, {"out", CLI_OPT_STR, false, "FILE"},
};
static const cli_opt globals[] = {
    {"json", CLI_OPT_FLAG, false, NULL},
    {"url", CLI_OPT_STR, false, "URL"},
};
static const char *const name_pos[] = {"NAME"};
static const cli_spec issue_spec = {issue_opts, 6, NULL, 0, 0};
static const cli_spec named_spec = {issue_opts + 5, 1, name_pos, 1, 1};

#define ARGC(v) ((int)(sizeof(v) / sizeof((v)[0])))

static kbr_err parse(const cli_spec *spec, int argc, char **argv, cli_args **a, kbr_msg *msg)
{
    memset(msg, 0, sizeof(*msg));
    return cli_args_parse(spec, globals, 2, argc, argv, a, msg);
}

static void test_args_full_command(void **state)
{
    char *argv[] = {"--sub",          "ci:fw",      "--op",        "sign,read",           "--json",
                    "--op=admin",     "--ttl=3600", "--component", "a@1@pkg:x/a@1?q=1,2", "--url",
                    "https://kb:8443"};
    cli_args *a = NULL;
    kbr_msg msg;
    const char *const *ops = NULL, *const *comps = NULL;
    size_t nops = 0, ncomps = 0;
    long long ttl = 0, uses = 0;

    (void)state;
    assert_int_equal(parse(&issue_spec, ARGC(argv), argv, &a, &msg), KBR_OK);
    assert_string_equal(cli_args_str(a, "sub"), "ci:fw");
    ops = cli_args_list(a, "op", &nops);
    assert_int_equal(nops, 3);
    assert_string_equal(ops[0], "sign");
    assert_string_equal(ops[1], "read");
    assert_string_equal(ops[2], "admin");
    assert_true(cli_args_int(a, "ttl", &ttl));
    assert_int_equal(ttl, 3600);
    assert_false(cli_args_int(a, "max-uses", &uses));
    /* A repeatable option that is not a list keeps its commas. */
    comps = cli_args_list(a, "component", &ncomps);
    assert_int_equal(ncomps, 1);
    assert_string_equal(comps[0], "a@1@pkg:x/a@1?q=1,2");
    assert_true(cli_args_flag(a, "json"));
    assert_string_equal(cli_args_str(a, "url"), "https://kb:8443");
    assert_null(cli_args_str(a, "out"));
    cli_args_free(a);
}

static void expect_usage(const cli_spec *spec, int argc, char **argv, const char *text)
{
    cli_args *a = NULL;
    kbr_msg msg;

    assert_int_equal(parse(spec, argc, argv, &a, &msg), KBR_ERR_BAD_REQUEST);
    assert_null(a);
    if (strstr(msg.text, text) == NULL)
        fail_msg("message '%s' does not contain '%s'", msg.text, text);
}

static void test_args_unknown_option(void **state)
{
    char *argv[] = {"--sub", "s", "--op", "sign", "--ttl", "1", "--bogus", "x"};
    char *short_opt[] = {"--sub", "s", "--op", "sign", "--ttl", "1", "-x"};

    (void)state;
    expect_usage(&issue_spec, ARGC(argv), argv, "unknown option --bogus");
    expect_usage(&issue_spec, ARGC(short_opt), short_opt, "unknown option -x");
}

static void test_args_missing_required(void **state)
{
    char *argv[] = {"--sub", "s", "--op", "sign"};

    (void)state;
    expect_usage(&issue_spec, ARGC(argv), argv, "missing required option --ttl");
}

static void test_args_bad_numbers(void **state)
{
    static const char *const bad[] = {"12x", "-5", " 5", "+5", "0x10", "99999999999999999999", ""};
    char value[32];
    char *argv[] = {"--sub", "s", "--op", "sign", "--ttl", value};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(value, sizeof(value), "%s", bad[i]);
        expect_usage(&issue_spec, ARGC(argv), argv, "--ttl");
    }
}

static void test_args_value_errors(void **state)
{
    char *at_end[] = {"--sub", "s", "--op", "sign", "--ttl", "1", "--out"};
    char *option_as_value[] = {"--sub", "s", "--op", "sign", "--ttl", "1", "--out", "--json"};
    char *twice[] = {"--sub", "s", "--sub", "t", "--op", "sign", "--ttl", "1"};
    char *flag_value[] = {"--sub", "s", "--op", "sign", "--ttl", "1", "--json=yes"};
    char *empty_item[] = {"--sub", "s", "--op", "sign,", "--ttl", "1"};
    char *empty_value[] = {"--sub=", "--op", "sign", "--ttl", "1"};

    (void)state;
    expect_usage(&issue_spec, ARGC(at_end), at_end, "missing value for --out");
    expect_usage(&issue_spec, ARGC(option_as_value), option_as_value, "missing value for --out");
    expect_usage(&issue_spec, ARGC(twice), twice, "--sub given more than once");
    expect_usage(&issue_spec, ARGC(flag_value), flag_value, "--json takes no value");
    expect_usage(&issue_spec, ARGC(empty_item), empty_item, "empty item in --op");
    expect_usage(&issue_spec, ARGC(empty_value), empty_value, "empty value for --sub");
}

static void test_args_positionals(void **state)
{
    char *none[] = {"--out", "f"};
    char *two[] = {"k1", "k2"};
    char *dashed[] = {"--json", "--", "--odd-name"};
    cli_args *a = NULL;
    kbr_msg msg;

    (void)state;
    expect_usage(&named_spec, ARGC(none), none, "missing argument NAME");
    expect_usage(&named_spec, ARGC(two), two, "unexpected argument 'k2'");
    assert_int_equal(parse(&named_spec, ARGC(dashed), dashed, &a, &msg), KBR_OK);
    assert_int_equal(cli_args_npos(a), 1);
    assert_string_equal(cli_args_pos(a, 0), "--odd-name");
    assert_true(cli_args_flag(a, "json"));
    assert_null(cli_args_pos(a, 1));
    cli_args_free(a);
}

static void test_split_list(void **state)
{
    char **v = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(cli_split_list("sign,read,admin", &v, &n), KBR_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0], "sign");
    assert_string_equal(v[2], "admin");
    cli_strv_free(v, n);
    assert_int_equal(cli_split_list("one", &v, &n), KBR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "one");
    cli_strv_free(v, n);
    assert_int_equal(cli_split_list("", &v, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(cli_split_list(",a", &v, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(cli_split_list("a,", &v, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(cli_split_list("a,,b", &v, &n), KBR_ERR_BAD_REQUEST);
    assert_null(v);
    assert_int_equal(n, 0);
}

static void test_parse_ll_bounds(void **state)
{
    long long v = 0;

    (void)state;
    assert_int_equal(cli_parse_ll("0", 0, 10, &v), KBR_OK);
    assert_int_equal(v, 0);
    assert_int_equal(cli_parse_ll("10", 0, 10, &v), KBR_OK);
    assert_int_equal(v, 10);
    assert_int_equal(cli_parse_ll("11", 0, 10, &v), KBR_ERR_BAD_REQUEST);
    assert_int_equal(cli_parse_ll("-1", 0, 10, &v), KBR_ERR_BAD_REQUEST);
    assert_int_equal(cli_parse_ll("-1", -5, 10, &v), KBR_OK);
    assert_int_equal(v, -1);
    assert_int_equal(cli_parse_ll("9223372036854775808", 0, LLONG_MAX, &v), KBR_ERR_BAD_REQUEST);
}

/* ---- tables ---- */

static void test_table_widths(void **state)
{
    static const char *const headers[] = {"NAME", "STATE", "N"};
    static const char *const cells[] = {"fw-signing-key", "active", "1", "k", NULL, "12345"};
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_table_render(headers, 3, cells, 2, &out), KBR_OK);
    assert_string_equal(out, "NAME            STATE   N\n"
                             "fw-signing-key  active  1\n"
                             "k               -       12345\n");
    free(out);
}

static void test_table_utf8_and_control(void **state)
{
    static const char *const headers[] = {"OWNER", "X"};
    static const char *const cells[] = {"Jos\xc3\xa9", "a", "ab\x1b[31m", "b"};
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_table_render(headers, 2, cells, 2, &out), KBR_OK);
    /* "José" is 4 columns wide; the escape byte prints as '?'. */
    assert_string_equal(out, "OWNER    X\n"
                             "Jos\xc3\xa9     a\n"
                             "ab?[31m  b\n");
    free(out);
}

static void test_table_from_json(void **state)
{
    static const cli_column cols[] = {
        {"NAME", "name"}, {"PRODUCTS", "products"},          {"LABEL", "hsm.label"},
        {"SEQ", "seq"},   {"CERT", "certificate.not_after"},
    };
    json_t *rows = json_loads("[{\"name\":\"fw\",\"products\":[\"p1\",\"p2\"],"
                              "\"hsm\":{\"label\":\"kb-fw\"},\"seq\":42,\"certificate\":null},"
                              "{\"name\":\"ca\",\"products\":[],\"seq\":7}]",
                              0, NULL);
    char *out = NULL;

    (void)state;
    assert_non_null(rows);
    assert_int_equal(cli_table_from_json(rows, cols, 5, &out), KBR_OK);
    assert_string_equal(out, "NAME  PRODUCTS  LABEL  SEQ  CERT\n"
                             "fw    p1,p2     kb-fw  42   -\n"
                             "ca              -      7    -\n");
    free(out);
    assert_int_equal(cli_table_from_json(json_object_get(rows, "x"), cols, 5, &out),
                     KBR_ERR_BAD_REQUEST);
    assert_null(out);
    json_decref(rows);
}

static void test_fields_from_json(void **state)
{
    static const cli_column cols[] = {{"status", "status"}, {"hsm", "hsm"}, {"scope", "scope"}};
    json_t *obj =
        json_loads("{\"status\":\"ok\",\"hsm\":true,\"scope\":{\"ops\":[\"sign\"]}}", 0, NULL);
    char *out = NULL;

    (void)state;
    assert_non_null(obj);
    assert_int_equal(cli_fields_from_json(obj, cols, 3, &out), KBR_OK);
    assert_string_equal(out, "FIELD   VALUE\n"
                             "status  ok\n"
                             "hsm     true\n"
                             "scope   {\"ops\":[\"sign\"]}\n");
    free(out);
    assert_int_equal(cli_fields_from_json(json_object_get(obj, "status"), cols, 3, &out),
                     KBR_ERR_BAD_REQUEST);
    json_decref(obj);
}

/* ---- digests ---- */

static void openssl_dgst(const char *hash, const char *path, char *hex, size_t len)
{
    char cmd[512], line[160];
    FILE *p = NULL;

    snprintf(cmd, sizeof(cmd), "openssl dgst -%s -r '%s'", hash, path);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof(line), p));
    assert_int_equal(pclose(p), 0);
    line[strcspn(line, " ")] = '\0';
    assert_true(strlen(line) < len);
    memcpy(hex, line, strlen(line) + 1);
}

static void test_digest_matches_openssl(void **state)
{
    const tmpdir *t = *state;
    char path[128], want[160];
    /* Larger than one read chunk and not a multiple of it, so chunk joins count. */
    size_t len = 3 * CLI_HASH_CHUNK + 17;
    unsigned char *data = malloc(len);
    char *hex = NULL;
    kbr_msg msg = {{0}};

    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 31 + 7);
    tmp_path(t, "image.bin", path, sizeof(path));
    write_file(path, data, len);
    free(data);
    assert_int_equal(cli_digest_file(path, "sha256", &hex, &msg), KBR_OK);
    openssl_dgst("sha256", path, want, sizeof(want));
    assert_int_equal(strlen(hex), 64);
    assert_string_equal(hex, want);
    free(hex);
    assert_int_equal(cli_digest_file(path, "sha384", &hex, &msg), KBR_OK);
    openssl_dgst("sha384", path, want, sizeof(want));
    assert_int_equal(strlen(hex), 96);
    assert_string_equal(hex, want);
    free(hex);
}

static void test_digest_known_vector(void **state)
{
    const tmpdir *t = *state;
    char path[128];
    char *hex = NULL;
    kbr_msg msg = {{0}};

    tmp_path(t, "abc", path, sizeof(path));
    write_file(path, "abc", 3);
    assert_int_equal(cli_digest_file(path, "sha256", &hex, &msg), KBR_OK);
    /* FIPS 180-2 appendix B.1 */
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(hex);
}

static void test_digest_errors(void **state)
{
    const tmpdir *t = *state;
    char path[128];
    char *hex = NULL;
    kbr_msg msg = {{0}};

    tmp_path(t, "missing.bin", path, sizeof(path));
    assert_int_equal(cli_digest_file(path, "sha256", &hex, &msg), KBR_ERR_IO);
    assert_non_null(strstr(msg.text, "missing.bin"));
    assert_null(hex);
    assert_int_equal(cli_digest_file(path, "md5", &hex, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "--hash"));
    assert_null(hex);
}

static void test_digest_normalize(void **state)
{
    char upper[65], *out = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    memset(upper, 'A', 64);
    upper[64] = '\0';
    assert_int_equal(cli_digest_normalize(upper, "sha256", &out, &msg), KBR_OK);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(out[i], 'a');
    free(out);
    assert_int_equal(cli_digest_normalize(upper, "sha384", &out, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "96 hex digits"));
    upper[10] = 'g';
    assert_int_equal(cli_digest_normalize(upper, "sha256", &out, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "--digest"));
    assert_null(out);
}

/* ---- SBOM and components ---- */

static const char cdx[] = "{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.5\",\"components\":"
                          "[{\"name\":\"zlib\",\"version\":\"1.3\"}]}\n";

static void test_sbom_b64_roundtrip(void **state)
{
    const tmpdir *t = *state;
    char path[128];
    char *b64 = NULL;
    unsigned char *raw = NULL;
    size_t len = 0;
    kbr_msg msg = {{0}};

    tmp_path(t, "bom.cdx.json", path, sizeof(path));
    write_file(path, cdx, strlen(cdx));
    assert_int_equal(cli_sbom_b64_from_file(path, &b64, &msg), KBR_OK);
    assert_int_equal(kbr_b64_decode(b64, &raw, &len), KBR_OK);
    /* The document goes byte for byte, trailing newline included. */
    assert_int_equal(len, strlen(cdx));
    assert_memory_equal(raw, cdx, len);
    free(raw);
    free(b64);
}

static void test_sbom_rejects(void **state)
{
    const tmpdir *t = *state;
    static const char spdx[] = "{\"spdxVersion\":\"SPDX-2.3\",\"bomFormat\":\"SPDX\"}";
    char path[128];
    char *b64 = NULL, *big = NULL;
    kbr_msg msg = {{0}};

    tmp_path(t, "bad.json", path, sizeof(path));
    write_file(path, "{\"bomFormat\":", 13);
    assert_int_equal(cli_sbom_b64_from_file(path, &b64, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "not JSON"));
    write_file(path, spdx, strlen(spdx));
    assert_int_equal(cli_sbom_b64_from_file(path, &b64, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "CycloneDX"));
    big = malloc(CLI_SBOM_MAX + 1);
    assert_non_null(big);
    memset(big, ' ', CLI_SBOM_MAX + 1);
    write_file(path, big, CLI_SBOM_MAX + 1);
    free(big);
    assert_int_equal(cli_sbom_b64_from_file(path, &b64, &msg), KBR_ERR_TOO_LARGE);
    tmp_path(t, "absent.json", path, sizeof(path));
    assert_int_equal(cli_sbom_b64_from_file(path, &b64, &msg), KBR_ERR_IO);
    assert_null(b64);
}

static void expect_component(const char *spec, const char *name, const char *version,
                             const char *purl)
{
    json_t *c = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(cli_component_parse(spec, &c, &msg), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(c, "name")), name);
    assert_string_equal(json_string_value(json_object_get(c, "version")), version);
    if (purl == NULL)
        assert_null(json_object_get(c, "purl"));
    else
        assert_string_equal(json_string_value(json_object_get(c, "purl")), purl);
    json_decref(c);
}

static void test_component_parse(void **state)
{
    static const char *const bad[] = {"zlib", "zlib@", "@zlib", "zlib@@pkg:x", "zlib@1@npm:x", ""};
    json_t *c = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    expect_component("zlib@1.3", "zlib", "1.3", NULL);
    expect_component("zlib@1.3@pkg:generic/zlib@1.3", "zlib", "1.3", "pkg:generic/zlib@1.3");
    expect_component("@babel/core@7.0.0@pkg:npm/%40babel/core@7.0.0", "@babel/core", "7.0.0",
                     "pkg:npm/%40babel/core@7.0.0");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cli_component_parse(bad[i], &c, &msg), KBR_ERR_BAD_REQUEST);
        assert_null(c);
        assert_non_null(strstr(msg.text, "--component"));
    }
}

/* ---- sign request bodies ---- */

static void test_sign_body_digest_with_sbom(void **state)
{
    cli_sign_req r = {.key = "fw",
                      .digest = "ab",
                      .hash = "sha256",
                      .format = "der",
                      .product = "thermo",
                      .version = "1.2.0",
                      .name = "app.bin",
                      .kind = "firmware",
                      .build_id = "ci-77",
                      .sbom_b64 = "e30="};
    json_t *body = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(cli_sign_body(&r, &body, &msg), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(body, "key")), "fw");
    assert_string_equal(json_string_value(json_object_get(body, "digest")), "ab");
    assert_string_equal(json_string_value(json_object_get(body, "hash")), "sha256");
    assert_string_equal(json_string_value(json_object_get(body, "format")), "der");
    assert_string_equal(json_string_value(json_object_get(body, "sbom_b64")), "e30=");
    assert_null(json_object_get(body, "message_b64"));
    assert_null(json_object_get(body, "sbom"));
    assert_string_equal(json_string_value(cli_json_path(body, "artifact.product")), "thermo");
    assert_string_equal(json_string_value(cli_json_path(body, "artifact.version")), "1.2.0");
    assert_string_equal(json_string_value(cli_json_path(body, "artifact.name")), "app.bin");
    assert_string_equal(json_string_value(cli_json_path(body, "artifact.kind")), "firmware");
    assert_string_equal(json_string_value(cli_json_path(body, "artifact.build_id")), "ci-77");
    json_decref(body);
}

static void test_sign_body_inline_components(void **state)
{
    json_t *comps = json_loads("[{\"name\":\"zlib\",\"version\":\"1.3\"}]", 0, NULL);
    cli_sign_req r = {.key = "fw",
                      .digest = "ab",
                      .hash = "sha384",
                      .product = "thermo",
                      .version = "1.2.0",
                      .components = comps};
    json_t *body = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(cli_sign_body(&r, &body, &msg), KBR_OK);
    assert_string_equal(json_string_value(cli_json_path(body, "sbom.format")), "cyclonedx");
    assert_true(json_equal(cli_json_path(body, "sbom.components"), comps));
    assert_null(json_object_get(body, "sbom_b64"));
    assert_null(json_object_get(body, "format"));
    json_decref(body);
    json_decref(comps);
}

static void test_sign_body_message(void **state)
{
    cli_sign_req r = {.key = "ed", .message_b64 = "aGk=", .hash = "sha256"};
    json_t *body = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(cli_sign_body(&r, &body, &msg), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(body, "message_b64")), "aGk=");
    /* PureEdDSA takes no prehash, so neither digest nor hash is sent. */
    assert_null(json_object_get(body, "digest"));
    assert_null(json_object_get(body, "hash"));
    assert_null(json_object_get(body, "artifact"));
    json_decref(body);
}

static void expect_sign_usage(const cli_sign_req *r, const char *text)
{
    json_t *body = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(cli_sign_body(r, &body, &msg), KBR_ERR_BAD_REQUEST);
    assert_null(body);
    if (strstr(msg.text, text) == NULL)
        fail_msg("message '%s' does not contain '%s'", msg.text, text);
}

static void test_sign_body_rejects(void **state)
{
    json_t *comps = json_array();
    cli_sign_req both = {.key = "k", .digest = "ab", .message_b64 = "aGk="};
    cli_sign_req neither = {.key = "k"};
    cli_sign_req nokey = {.digest = "ab"};
    cli_sign_req half = {.key = "k", .digest = "ab", .product = "p"};
    cli_sign_req two_sboms = {.key = "k",
                              .digest = "ab",
                              .product = "p",
                              .version = "1",
                              .sbom_b64 = "e30=",
                              .components = comps};
    cli_sign_req orphan_sbom = {.key = "k", .digest = "ab", .sbom_b64 = "e30="};

    (void)state;
    expect_sign_usage(&both, "exactly one of --file, --digest, --message");
    expect_sign_usage(&neither, "exactly one of --file, --digest, --message");
    expect_sign_usage(&nokey, "--key");
    expect_sign_usage(&half, "--product and --version");
    expect_sign_usage(&two_sboms, "--sbom and --component");
    expect_sign_usage(&orphan_sbom, "--product and --version");
    json_decref(comps);
}

static void test_file_b64_limit(void **state)
{
    const tmpdir *t = *state;
    char path[128];
    char *b64 = NULL;
    kbr_msg msg = {{0}};

    tmp_path(t, "msg.bin", path, sizeof(path));
    write_file(path, "hello", 5);
    assert_int_equal(cli_file_b64(path, 5, &b64, &msg), KBR_OK);
    assert_string_equal(b64, "aGVsbG8=");
    free(b64);
    assert_int_equal(cli_file_b64(path, 4, &b64, &msg), KBR_ERR_TOO_LARGE);
    assert_null(b64);
    assert_non_null(strstr(msg.text, "larger than 4 bytes"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_full_command),
        cmocka_unit_test(test_args_unknown_option),
        cmocka_unit_test(test_args_missing_required),
        cmocka_unit_test(test_args_bad_numbers),
        cmocka_unit_test(test_args_value_errors),
        cmocka_unit_test(test_args_positionals),
        cmocka_unit_test(test_split_list),
        cmocka_unit_test(test_parse_ll_bounds),
        cmocka_unit_test(test_table_widths),
        cmocka_unit_test(test_table_utf8_and_control),
        cmocka_unit_test(test_table_from_json),
        cmocka_unit_test(test_fields_from_json),
        cmocka_unit_test_setup_teardown(test_digest_matches_openssl, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_digest_known_vector, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_digest_errors, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_digest_normalize),
        cmocka_unit_test_setup_teardown(test_sbom_b64_roundtrip, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_sbom_rejects, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_component_parse),
        cmocka_unit_test(test_sign_body_digest_with_sbom),
        cmocka_unit_test(test_sign_body_inline_components),
        cmocka_unit_test(test_sign_body_message),
        cmocka_unit_test(test_sign_body_rejects),
        cmocka_unit_test_setup_teardown(test_file_b64_limit, tmp_setup, tmp_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
