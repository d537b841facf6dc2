/*
 * test_cli.c - the keybroker CLI's pure parts: option parsing, list
 * splitting, tables, local digests, SBOM encoding, sign request bodies, the
 * factory commands' request bodies (batches, CA and device certificates),
 * debug unlocks and OTA reports, the custody views' options, text and CSV
 * export, what reaches the terminal, and audit verify's reading of its files.
 *
 * The test links libkbr_cli.a, the CLI's sources but keybroker.c, as
 * bin/keybroker does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../broker/cli/cli.h"
#include "kbr_audit.h"
#include "kbr_ca.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

/* ---- fixtures ---- */

typedef struct {
    char dir[64];
} tmpdir;

static int tmp_setup(void **state)
{
    tmpdir *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -1;
    if (kbt_tmpdir(t->dir, sizeof(t->dir), "kbr-cli") != 0) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    tmpdir *t = *state;
    int rc = kbt_rmtree(t->dir);

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
    /* "José" is 4 columns wide; the escape byte is shown escaped, and counted so. */
    assert_string_equal(out, "OWNER         X\n"
                             "Jos\xc3\xa9          a\n"
                             "ab\\u001b[31m  b\n");
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

/* ---- server text on the terminal ---- */

/*
 * What a hostile broker (or anyone between it and the CLI) might put in a
 * string: ESC and CSI in C0 and C1 form, DEL, CR over the line, a newline
 * forging a row, a right-to-left override, an isolate, the Arabic letter
 * mark, and bytes that are not UTF-8 (an overlong CSI, a lone continuation).
 */
#define HOSTILE_UTF8                                                                               \
    "a\x1b[2Jb\xc2\x9b"                                                                            \
    "31mc\xe2\x80\xae"                                                                             \
    "d\x7f"                                                                                        \
    "e\r\n\tf\xe2\x81\xa6g\xd8\x9ch"
#define HOSTILE HOSTILE_UTF8 "\xc0\x9b"
/* HOSTILE_UTF8 as cli_term_put() shows it, which is also how JSON text spells it */
#define HOSTILE_UTF8_SHOWN "a\\u001b[2Jb\\u009b31mc\\u202ed\\u007fe\\r\\n\\tf\\u2066g\\u061ch"
#define HOSTILE_SHOWN      HOSTILE_UTF8_SHOWN "\\xc0\\x9b"

/* Fails unless text would leave the terminal alone: no control but newline, nothing bidi, UTF-8. */
static void assert_terminal_safe(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;

    for (size_t i = 0; p[i] != '\0'; i++) {
        unsigned char c = p[i];
        bool bad = (c < 0x20 && c != '\n') || c == 0x7f || c == 0xc0 || c == 0xc1 || c >= 0xf5;
        if (c == 0xc2)
            bad = p[i + 1] >= 0x80 && p[i + 1] <= 0x9f; /* C1 */
        if (c == 0xe2 && p[i + 1] == 0x80)
            bad = p[i + 2] == 0x8e || p[i + 2] == 0x8f || (p[i + 2] >= 0xa8 && p[i + 2] <= 0xae);
        if (c == 0xe2 && p[i + 1] == 0x81)
            bad = p[i + 2] >= 0xa6 && p[i + 2] <= 0xa9;
        if (c == 0xd8 && p[i + 1] == 0x9c)
            bad = true;
        if ((c & 0xc0) == 0x80 && (i == 0 || p[i - 1] < 0x80))
            bad = true; /* a continuation byte with nothing before it */
        if (bad)
            fail_msg("byte 0x%02x at offset %zu reaches the terminal", c, i);
    }
}

static void expect_escaped(const char *in, const char *keep, const char *want)
{
    char *out = NULL, *again = NULL;

    assert_int_equal(cli_term_escape(in, keep, &out), KBR_OK);
    assert_string_equal(out, want);
    assert_true(cli_term_plain(out, keep));
    /* escaping what was escaped changes nothing */
    assert_int_equal(cli_term_escape(out, keep, &again), KBR_OK);
    assert_string_equal(again, out);
    assert_true(cli_term_plain(in, keep) == (strcmp(in, out) == 0));
    free(again);
    free(out);
}

static void test_term_escape(void **state)
{
    (void)state;
    expect_escaped(HOSTILE, CLI_TERM_LINE, HOSTILE_SHOWN);
    /* text of lines keeps its newlines and tabs, never CR */
    expect_escaped("a\nb\tc\rd", CLI_TERM_LINES, "a\nb\tc\\rd");
    expect_escaped("a\nb\tc\rd", CLI_TERM_LINE, "a\\nb\\tc\\rd");
    /* the edges of each range */
    expect_escaped("\x01\x1f\x20\x7e\x7f", CLI_TERM_LINE, "\\u0001\\u001f ~\\u007f");
    expect_escaped("\xc2\x80|\xc2\x9f|\xc2\xa0", CLI_TERM_LINE, "\\u0080|\\u009f|\xc2\xa0");
    expect_escaped("\xd8\x9b|\xd8\x9c|\xd8\x9d", CLI_TERM_LINE, "\xd8\x9b|\\u061c|\xd8\x9d");
    expect_escaped("\xe2\x80\x8b|\xe2\x80\x8e|\xe2\x80\x8f|\xe2\x80\x90", CLI_TERM_LINE,
                   "\xe2\x80\x8b|\\u200e|\\u200f|\xe2\x80\x90");
    expect_escaped("\xe2\x80\xa7|\xe2\x80\xa8|\xe2\x80\xa9|\xe2\x80\xaa|\xe2\x80\xae|\xe2\x80\xaf",
                   CLI_TERM_LINE, "\xe2\x80\xa7|\\u2028|\\u2029|\\u202a|\\u202e|\xe2\x80\xaf");
    expect_escaped("\xe2\x81\xa5|\xe2\x81\xa6|\xe2\x81\xa9|\xe2\x81\xaa", CLI_TERM_LINE,
                   "\xe2\x81\xa5|\\u2066|\\u2069|\xe2\x81\xaa");
    /* what is not UTF-8 is shown byte by byte: overlong, surrogate, past U+10FFFF, cut short */
    expect_escaped(
        "\xc0\x9b|\xe0\x82\x9b|\xed\xa0\x80|\xf4\x90\x80\x80|\xff|\xe2\x80", CLI_TERM_LINE,
        "\\xc0\\x9b|\\xe0\\x82\\x9b|\\xed\\xa0\\x80|\\xf4\\x90\\x80\\x80|\\xff|\\xe2\\x80");
    /* names in other scripts pass as they are */
    expect_escaped("Jos\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x94\x91 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",
                   CLI_TERM_LINE,
                   "Jos\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x94\x91 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d");
    expect_escaped("", CLI_TERM_LINE, "");
}

/* The error line: code and message may both be the broker's. */
static void test_error_line_hostile(void **state)
{
    json_t *body = json_loads(
        "{\"error\":{\"code\":\"forbid\\u009bden\",\"message\":\"" HOSTILE_UTF8_SHOWN "\"}}",
        JSON_REJECT_DUPLICATES, NULL);
    cli_error ce = {{0}, {{0}}};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    (void)state;
    assert_non_null(body);
    assert_non_null(f);
    assert_int_equal(cli_http_error(403, body, &ce), KBR_ERR_FORBIDDEN);
    cli_print_error(f, KBR_ERR_FORBIDDEN, &ce);
    cli_print_named(f, "revoked",
                    "jti\xe2\x80\xae"
                    "1");
    assert_int_equal(fclose(f), 0);
    assert_terminal_safe(buf);
    assert_string_equal(buf, "keybroker: forbid\\u009bden: " HOSTILE_UTF8_SHOWN "\n"
                             "revoked jti\\u202e1\n");
    free(buf);
    json_decref(body);
}

static void test_table_hostile_cell(void **state)
{
    static const char *const headers[] = {"NAME", "STATE"};
    static const char *const cells[] = {HOSTILE, "active", "k", "x\xe2\x80\x8fy"};
    char *out = NULL, want[512];

    (void)state;
    assert_int_equal(cli_table_render(headers, 2, cells, 2, &out), KBR_OK);
    assert_terminal_safe(out);
    /* one line per row (the newline in the cell forges none), columns as wide as the escapes */
    snprintf(want, sizeof(want), "%-64s  STATE\n%s  active\n%-64s  x\\u200fy\n", "NAME",
             HOSTILE_SHOWN, "k");
    assert_int_equal(strlen(HOSTILE_SHOWN), 64);
    assert_string_equal(out, want);
    free(out);
}

static void test_view_text_hostile(void **state)
{
    json_t *v = NULL;
    char *out = NULL;
    char text[1024];

    (void)state;
    snprintf(text, sizeof(text),
             "{\"product\":\"%s\",\"keys\":{\"%s\":[{\"name\":\"%s\",\"algorithm\":\"x\","
             "\"state\":\"active\",\"live_tokens\":[],\"hsm\":{\"present\":true}}]},"
             "\"device_certificates\":{\"total_current\":0,\"by_expiry_month\":[]},"
             "\"unregistered_hsm_objects\":[{\"label\":\"%s\"}]}",
             HOSTILE_UTF8_SHOWN, HOSTILE_UTF8_SHOWN, HOSTILE_UTF8_SHOWN, HOSTILE_UTF8_SHOWN);
    v = json_loads(text, 0, NULL);
    assert_non_null(v);
    assert_int_equal(cli_view_product_text(v, &out), KBR_OK);
    assert_terminal_safe(out);
    assert_non_null(strstr(out, "product a\\u001b[2Jb\\u009b31mc\\u202ed\\u007fe\\r\\n\\tf"));
    free(out);
    json_decref(v);
}

/* --json: jansson writes U+009B, U+202E and DEL as they are unless told otherwise. */
static void test_print_json_hostile(void **state)
{
    json_t *v = json_pack("{s:s}", "name",
                          "a\xc2\x9b"
                          "b\xe2\x80\xae"
                          "c\x7f"
                          "d\xc3\xa9");
    json_t *back = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cli_error ce = {{0}, {{0}}};

    (void)state;
    assert_non_null(v);
    assert_non_null(f);
    assert_int_equal(cli_print_json(f, v, &ce), KBR_OK);
    assert_int_equal(fclose(f), 0);
    assert_terminal_safe(buf);
    /* still the same JSON value */
    back = json_loads(buf, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(back);
    assert_true(json_equal(v, back));
    free(buf);
    json_decref(back);
    json_decref(v);
}

/* ---- audit verify: the export and the checkpoint it reads ---- */

#define VF_ENTRIES 3

typedef struct {
    char log[128], cp[128], pubkey[128];
    char *lines[VF_ENTRIES]; /* the export's lines, as `audit export` writes them */
    char *checkpoint;        /* the checkpoint, as `audit checkpoint --json` writes it */
} vf_files;

static json_t *vf_entry(long long seq, const char *prev)
{
    json_t *e =
        json_pack("{s:o,s:n,s:n,s:n,s:s,s:s,s:s,s:I,s:s,s:s}", "detail", json_object(),
                  "error_code", "jti", "key", "op", "sign", "outcome", "ok", "prev_hash", prev,
                  "seq", (json_int_t)seq, "sub", "ci:gateway", "time", "2026-11-28T16:24:10Z");
    char hash[65];

    assert_non_null(e);
    assert_int_equal(kbr_audit_entry_hash(e, hash), KBR_OK);
    assert_int_equal(json_object_set_new(e, "hash", json_string(hash)), 0);
    return e;
}

/* signature_b64 of cp: ECDSA P-256 over its digest, raw r||s as the audit key makes it. */
static void vf_sign(json_t *cp, EVP_PKEY *key)
{
    unsigned char digest[32], der[80], raw[64];
    const unsigned char *p = der;
    size_t der_len = sizeof(der);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r = NULL, *s = NULL;
    char *b64 = NULL;

    assert_int_equal(kbr_audit_checkpoint_digest(cp, digest, NULL), KBR_OK);
    assert_true(c != NULL && EVP_PKEY_sign_init(c) == 1 &&
                EVP_PKEY_sign(c, der, &der_len, digest, sizeof(digest)) == 1);
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    assert_non_null(sig);
    ECDSA_SIG_get0(sig, &r, &s);
    assert_true(BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32);
    assert_int_equal(kbr_b64_encode(raw, sizeof(raw), &b64), KBR_OK);
    assert_int_equal(json_object_set_new(cp, "signature_b64", json_string(b64)), 0);
    free(b64);
    ECDSA_SIG_free(sig);
    EVP_PKEY_CTX_free(c);
}

/* A log of VF_ENTRIES chained entries and a checkpoint over all of them, signed by a new key. */
static void vf_make(const tmpdir *t, vf_files *vf)
{
    unsigned char leaves[VF_ENTRIES * KBR_MERKLE_HASH_LEN], root[KBR_MERKLE_HASH_LEN], *one = NULL;
    char prev[65] = "0000000000000000000000000000000000000000000000000000000000000000",
         root_hex[65];
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    json_t *cp = NULL;
    size_t n = 0;
    FILE *f = NULL;

    assert_non_null(key);
    tmp_path(t, "log.jsonl", vf->log, sizeof(vf->log));
    tmp_path(t, "cp.json", vf->cp, sizeof(vf->cp));
    tmp_path(t, "audit.pem", vf->pubkey, sizeof(vf->pubkey));
    for (int i = 0; i < VF_ENTRIES; i++) {
        json_t *e = vf_entry(i + 1, prev);
        snprintf(prev, sizeof(prev), "%s", json_string_value(json_object_get(e, "hash")));
        assert_int_equal(kbr_hex_decode(prev, &one, &n), KBR_OK);
        memcpy(leaves + i * KBR_MERKLE_HASH_LEN, one, KBR_MERKLE_HASH_LEN);
        free(one);
        vf->lines[i] = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_non_null(vf->lines[i]);
        json_decref(e);
    }
    assert_int_equal(kbr_merkle_root(leaves, VF_ENTRIES, root), KBR_OK);
    kbr_hex_encode_buf(root, sizeof(root), root_hex);
    cp = json_pack("{s:s,s:i,s:s}", "root_hash", root_hex, "size", VF_ENTRIES, "time",
                   "2026-11-28T16:30:00Z");
    assert_non_null(cp);
    vf_sign(cp, key);
    vf->checkpoint = json_dumps(cp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    f = fopen(vf->pubkey, "w");
    assert_true(f != NULL && PEM_write_PUBKEY(f, key) == 1);
    assert_int_equal(fclose(f), 0);
    json_decref(cp);
    EVP_PKEY_free(key);
}

static void vf_free(vf_files *vf)
{
    for (int i = 0; i < VF_ENTRIES; i++)
        free(vf->lines[i]);
    free(vf->checkpoint);
}

/* The text with extra inserted right after its first '{': a decoy ahead of the real member. */
static void vf_write(const char *path, const char *text, const char *extra)
{
    FILE *f = fopen(path, "w");
    const char *brace = strchr(text, '{');

    assert_true(f != NULL && brace != NULL);
    fprintf(f, "%.*s%s%s", (int)(brace + 1 - text), text, extra != NULL ? extra : "", brace + 1);
    assert_int_equal(fclose(f), 0);
}

/* The export with a decoy in line `line` (1-based; 0: none). */
static void vf_write_log(const vf_files *vf, int line, const char *decoy)
{
    FILE *f = fopen(vf->log, "w");

    assert_non_null(f);
    for (int i = 0; i < VF_ENTRIES; i++) {
        const char *brace = strchr(vf->lines[i], '{');
        fprintf(f, "{%s%s\n", i + 1 == line ? decoy : "", brace + 1);
    }
    assert_int_equal(fclose(f), 0);
}

/* Runs `keybroker audit verify LOG --checkpoint CP --pubkey PEM`. */
static kbr_err vf_run(const vf_files *vf, cli_error *ce, char **out)
{
    char *argv[] = {(char *)vf->log, "--checkpoint", (char *)vf->cp, "--pubkey",
                    (char *)vf->pubkey};
    cli_args *a = NULL;
    kbr_msg msg = {{0}};
    size_t len = 0;
    cli_ctx ctx = {.out = open_memstream(out, &len)};
    kbr_err err;

    memset(ce, 0, sizeof(*ce));
    assert_non_null(ctx.out);
    assert_int_equal(cli_args_parse(&cli_cmd_audit_verify.spec, NULL, 0, 5, argv, &a, &msg),
                     KBR_OK);
    ctx.args = a;
    err = cli_cmd_audit_verify.run(&ctx, ce);
    assert_int_equal(fclose(ctx.out), 0);
    cli_args_free(a);
    return err;
}

/* "path:line:", what a refusal of that line starts with. */
static const char *where_line(char *buf, size_t n, const char *path, int line)
{
    snprintf(buf, n, "%s:%d:", path, line);
    return buf;
}

static void vf_expect_refused(const vf_files *vf, const char *where, const char *why)
{
    cli_error ce;
    char *out = NULL;

    assert_int_equal(vf_run(vf, &ce, &out), KBR_ERR_BAD_REQUEST);
    assert_string_equal(ce.code, "verify_failed");
    if (strncmp(ce.msg.text, where, strlen(where)) != 0 || strstr(ce.msg.text, why) == NULL)
        fail_msg("the refusal says '%s', not where (%s) and why (%s)", ce.msg.text, where, why);
    assert_string_equal(out, "");
    free(out);
}

static void test_audit_verify_duplicate_keys(void **state)
{
    const tmpdir *t = *state;
    vf_files vf = {0};
    cli_error ce;
    char *out = NULL, where[160];
    FILE *f = NULL;

    vf_make(t, &vf);
    vf_write_log(&vf, 0, NULL);
    vf_write(vf.cp, vf.checkpoint, NULL);
    assert_int_equal(vf_run(&vf, &ce, &out), KBR_OK);
    assert_string_equal(out, "ok: 3 entries chain from seq 1; the first 3 match the signed "
                             "checkpoint\n"
                             "ok: 0 checkpoints in the log verify along a chain of 1 audit key "
                             "from the pinned key\n");
    free(out);
    /*
     * A decoy ahead of the real member: a reader that keeps the last value
     * verifies the chain, one that keeps the first shows another story.
     */
    vf_write_log(&vf, 2, "\"outcome\":\"denied\",");
    vf_expect_refused(&vf, where_line(where, sizeof(where), vf.log, 2), "duplicate object key");
    vf_write_log(&vf, 3, "\"detail\":{\"reason\":\"x\",\"reason\":\"y\"},");
    vf_expect_refused(&vf, where_line(where, sizeof(where), vf.log, 3), "duplicate object key");
    /* a NUL does not end what is read: nothing after it goes unverified */
    vf_write_log(&vf, 0, NULL);
    f = fopen(vf.log, "a");
    assert_non_null(f);
    assert_int_equal(fwrite(" \0{\"seq\":4}\n", 1, 11, f), 11);
    assert_int_equal(fclose(f), 0);
    vf_expect_refused(&vf, where_line(where, sizeof(where), vf.log, 4), "expected");
    /* the same in the checkpoint: a reader keeping the first size sees a shorter log signed */
    vf_write_log(&vf, 0, NULL);
    vf_write(vf.cp, vf.checkpoint, "\"size\":1,");
    vf_expect_refused(&vf, where_line(where, sizeof(where), vf.cp, 3), "duplicate object key");
    vf_free(&vf);
}

/* A response that says a member twice is not read at all. */
static void test_response_duplicate_keys(void **state)
{
    static const char body[] = "{\"token\":\"decoy\",\"jti\":\"j\",\"token\":\"real\"}";
    cli_client *c = NULL;
    cli_client_conf conf = {.url = "http://127.0.0.1:1"};
    cli_buf buf = {0};
    cli_response resp = {0};
    cli_error ce = {{0}, {{0}}};

    (void)state;
    assert_int_equal(cli_client_new(&conf, NULL, &c, &ce), KBR_OK);
    assert_true(cli_buf_grow(&buf, sizeof(body)));
    memcpy(buf.data, body, sizeof(body));
    buf.len = sizeof(body) - 1;
    assert_int_equal(cli_read_response(c, &buf, &resp, &ce), KBR_ERR_BAD_REQUEST);
    assert_null(resp.body);
    assert_string_equal(ce.code, "bad_response");
    assert_non_null(strstr(ce.msg.text, "duplicate object key"));
    cli_response_cleanup(&resp);
    cli_buf_wipe(&buf);
    cli_client_free(c);
}

/* ---- output files ---- */

/* --out follows kbr_file_write's rule, and says so before and after the request. */
static void test_out_files(void **state)
{
    const tmpdir *t = *state;
    char target[128], link[128], want[300];
    cli_error ce = {{0}, {{0}}};
    cli_ctx ctx = {.out = stdout};

    tmp_path(t, "cert.pem", target, sizeof(target));
    tmp_path(t, "link.pem", link, sizeof(link));
    assert_int_equal(cli_check_out("out", target, 0644, &ce), KBR_OK);
    assert_int_equal(cli_write_file(target, "pem\n", 4, 0644, &ce), KBR_OK);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(cli_check_out("chain-out", link, 0644, &ce), KBR_ERR_IO);
    assert_string_equal(ce.code, "io_error");
    snprintf(want, sizeof(want), "--chain-out %s: is a symbolic link", link);
    assert_memory_equal(ce.msg.text, want, strlen(want));
    assert_int_equal(cli_write_file(link, "pem\n", 4, 0644, &ce), KBR_ERR_IO);
    snprintf(want, sizeof(want), "cannot write %s: is a symbolic link", link);
    assert_memory_equal(ce.msg.text, want, strlen(want));
    /* with --out - the data has stdout to itself; what would follow it goes to stderr */
    assert_true(cli_is_stdout("-"));
    assert_false(cli_is_stdout("./-"));
    assert_false(cli_is_stdout(NULL));
    assert_ptr_equal(cli_ctx_beside(&ctx, "-").out, stderr);
    assert_ptr_equal(cli_ctx_beside(&ctx, target).out, stdout);
    assert_ptr_equal(cli_ctx_beside(&ctx, NULL).out, stdout);
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
    static const char dup[] = "{\"bomFormat\":\"SPDX\",\"specVersion\":\"1.5\",\"bomFormat\":"
                              "\"CycloneDX\",\"components\":[]}";
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
    /* the broker refuses a member given twice; so does the CLI, before anything is signed */
    write_file(path, dup, strlen(dup));
    assert_int_equal(cli_sbom_b64_from_file(path, &b64, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "duplicate"));
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

static void test_sign_body_cose(void **state)
{
    cli_sign_req r = {.key = "suit",
                      .message_b64 = "oQE=",
                      .hash = "sha256",
                      .format = "cose_sign1",
                      .product = "thermo",
                      .version = "1.2.0",
                      .kind = "ota-manifest"};
    cli_sign_req digest = {.key = "suit", .digest = "ab", .hash = "sha256", .format = "cose_sign1"};
    cli_sign_req pem = {.key = "fw", .digest = "ab", .hash = "sha256", .format = "pem"};
    json_t *body = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(cli_sign_body(&r, &body, &msg), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(body, "format")), "cose_sign1");
    /* The payload goes itself: the COSE Sig_structure wraps it before it is hashed. */
    assert_string_equal(json_string_value(json_object_get(body, "message_b64")), "oQE=");
    assert_null(json_object_get(body, "digest"));
    assert_null(json_object_get(body, "hash"));
    assert_string_equal(json_string_value(cli_json_path(body, "artifact.kind")), "ota-manifest");
    json_decref(body);
    expect_sign_usage(&digest, "--format cose_sign1 signs the payload itself");
    expect_sign_usage(&pem, "--format must be raw, der or cose_sign1");
}

static void test_sign_format_and_payload_choice(void **state)
{
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(cli_sign_format_check(NULL, &msg), KBR_OK);
    assert_int_equal(cli_sign_format_check("raw", &msg), KBR_OK);
    assert_int_equal(cli_sign_format_check("der", &msg), KBR_OK);
    assert_int_equal(cli_sign_format_check("cose_sign1", &msg), KBR_OK);
    assert_int_equal(cli_sign_format_check("COSE_Sign1", &msg), KBR_ERR_BAD_REQUEST);
    assert_int_equal(cli_sign_format_check("", &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "--format"));
    /* `sign --file` sends the file for COSE whatever the key, and for ed25519 keys. */
    assert_true(cli_sign_sends_message(NULL, "cose_sign1"));
    assert_true(cli_sign_sends_message("ecdsa-p256", "cose_sign1"));
    assert_true(cli_sign_sends_message("ed25519", NULL));
    assert_true(cli_sign_sends_message("ed25519", "raw"));
    assert_false(cli_sign_sends_message("ecdsa-p384", "der"));
    assert_false(cli_sign_sends_message("rsa-3072", NULL));
    assert_false(cli_sign_sends_message(NULL, NULL));
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

/* ---- factory commands: batches, CA and device certificates ---- */

static void expect_cmd_usage(const cli_command *cmd, int argc, char **argv, const char *text)
{
    expect_usage(&cmd->spec, argc, argv, text);
}

/* Parses argv against cmd and builds its body with make; returns what make returned. */
static kbr_err cmd_body(const cli_command *cmd,
                        kbr_err (*make)(const cli_args *, json_t **, kbr_msg *), int argc,
                        char **argv, json_t **body, kbr_msg *msg)
{
    cli_args *a = NULL;
    kbr_err err;

    assert_int_equal(parse(&cmd->spec, argc, argv, &a, msg), KBR_OK);
    err = make(a, body, msg);
    cli_args_free(a);
    if (err != KBR_OK)
        assert_null(*body);
    return err;
}

static void expect_body_usage(const cli_command *cmd,
                              kbr_err (*make)(const cli_args *, json_t **, kbr_msg *), int argc,
                              char **argv, kbr_err code, const char *text)
{
    json_t *body = NULL;
    kbr_msg msg;

    assert_int_equal(cmd_body(cmd, make, argc, argv, &body, &msg), code);
    if (strstr(msg.text, text) == NULL)
        fail_msg("message '%s' does not contain '%s'", msg.text, text);
}

static const char *json_at_str(const json_t *obj, const char *path)
{
    const char *s = json_string_value(cli_json_path(obj, path));

    if (s == NULL)
        fail_msg("no string at %s", path);
    return s;
}

static void test_batch_body_markets(void **state)
{
    char *argv[] = {"b-2026-11",  "--product", "gateway",  "--factory", "factory:acme",
                    "--quantity", "500",       "--market", "DE,fr",     "--market=IT"};
    json_t *body = NULL, *want = json_loads("[\"DE\",\"FR\",\"IT\"]", 0, NULL);
    kbr_msg msg;

    (void)state;
    assert_int_equal(cmd_body(&cli_cmd_batch_create, cli_batch_body, ARGC(argv), argv, &body, &msg),
                     KBR_OK);
    assert_string_equal(json_at_str(body, "batch"), "b-2026-11");
    assert_string_equal(json_at_str(body, "product"), "gateway");
    assert_string_equal(json_at_str(body, "factory"), "factory:acme");
    assert_true(json_is_integer(json_object_get(body, "quantity")));
    assert_int_equal(json_integer_value(json_object_get(body, "quantity")), 500);
    assert_true(json_equal(json_object_get(body, "market"), want));
    assert_int_equal(json_object_size(body), 5);
    json_decref(body);
    json_decref(want);
}

static void test_batch_body_bad_markets(void **state)
{
    static const char *const bad[] = {"DEU", "D", "D1", "DE,XYZ", "D-"};
    char value[16];
    char *argv[] = {"b1",         "--product", "gw",       "--factory", "factory:acme",
                    "--quantity", "3",         "--market", value};
    char *twice[] = {"b1",           "--product",  "gw", "--factory",
                     "factory:acme", "--quantity", "3",  "--market",
                     "DE",           "--market",   "de"};
    char *empty_item[] = {"b1",         "--product", "gw",       "--factory", "factory:acme",
                          "--quantity", "3",         "--market", "DE,"};
    char *none[] = {"b1", "--product", "gw", "--factory", "factory:acme", "--quantity", "3"};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(value, sizeof(value), "%s", bad[i]);
        expect_body_usage(&cli_cmd_batch_create, cli_batch_body, ARGC(argv), argv,
                          KBR_ERR_BAD_REQUEST, "alpha-2");
    }
    /* two letters, but no country: the EU, its own code for Greece, a user-assigned code */
    static const char *const no_country[] = {"EU", "eu", "EL", "XX", "UK"};
    for (size_t i = 0; i < sizeof(no_country) / sizeof(no_country[0]); i++) {
        snprintf(value, sizeof(value), "%s", no_country[i]);
        expect_body_usage(&cli_cmd_batch_create, cli_batch_body, ARGC(argv), argv,
                          KBR_ERR_BAD_REQUEST, "ISO 3166-1");
    }
    expect_body_usage(&cli_cmd_batch_create, cli_batch_body, ARGC(twice), twice,
                      KBR_ERR_BAD_REQUEST, "--market DE given more than once");
    expect_cmd_usage(&cli_cmd_batch_create, ARGC(empty_item), empty_item, "empty item in --market");
    expect_cmd_usage(&cli_cmd_batch_create, ARGC(none), none, "missing required option --market");
}

static void test_batch_body_bad_quantity(void **state)
{
    static const char *const out_of_range[] = {"0", "100000001", "9223372036854775807"};
    static const char *const not_numbers[] = {"-1", "ten", "3.5", "1e3"};
    char value[32];
    char *argv[] = {"b1",       "--product", "gw",         "--factory", "factory:acme",
                    "--market", "DE",        "--quantity", value};
    char *missing[] = {"b1", "--product", "gw", "--factory", "factory:acme", "--market", "DE"};
    json_t *body = NULL;
    kbr_msg msg;

    (void)state;
    for (size_t i = 0; i < sizeof(out_of_range) / sizeof(out_of_range[0]); i++) {
        snprintf(value, sizeof(value), "%s", out_of_range[i]);
        expect_body_usage(&cli_cmd_batch_create, cli_batch_body, ARGC(argv), argv,
                          KBR_ERR_BAD_REQUEST, "--quantity must be between 1 and 100000000");
    }
    for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++) {
        snprintf(value, sizeof(value), "%s", not_numbers[i]);
        expect_cmd_usage(&cli_cmd_batch_create, ARGC(argv), argv, "--quantity");
    }
    expect_cmd_usage(&cli_cmd_batch_create, ARGC(missing), missing,
                     "missing required option --quantity");
    snprintf(value, sizeof(value), "100000000");
    assert_int_equal(cmd_body(&cli_cmd_batch_create, cli_batch_body, ARGC(argv), argv, &body, &msg),
                     KBR_OK);
    assert_int_equal(json_integer_value(json_object_get(body, "quantity")), 100000000);
    json_decref(body);
}

static void test_batch_body_factory(void **state)
{
    static const char *const bad[] = {"acme", "factory:", "ci:acme", "Factory:acme"};
    char value[32];
    char *argv[] = {"b1",       "--product", "gw",        "--quantity", "3",
                    "--market", "DE",        "--factory", value};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(value, sizeof(value), "%s", bad[i]);
        expect_body_usage(&cli_cmd_batch_create, cli_batch_body, ARGC(argv), argv,
                          KBR_ERR_BAD_REQUEST, "--factory must be the factory's principal");
    }
}

/* A CSR and a certificate from the openssl tool, as a factory station makes them. */
static void make_pems(const tmpdir *t)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd),
             "cd '%s' && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout dev.key -subj /CN=SN0001 -out dev.csr 2>/dev/null && "
             "openssl req -x509 -key dev.key -subj /CN=ca -days 2 -out ca.pem 2>/dev/null",
             t->dir);
    assert_int_equal(system(cmd), 0);
}

static void file_text(const char *path, char **out)
{
    assert_int_equal(kbr_file_read(path, 65536, out, NULL), KBR_OK);
}

static void test_provision_body(void **state)
{
    const tmpdir *t = *state;
    char csr[128], *csr_pem = NULL;
    char *argv[] = {"--csr",   csr,     "--serial",           "SN0001",
                    "--batch", "b1",    "--product",          "gateway",
                    "--key",   "ca-gw", "--firmware-version", "1.4.2"};
    char *no_fw[] = {"--csr", csr,         "--serial", "SN0002", "--batch",
                     "b1",    "--product", "gateway",  "--key",  "ca-gw"};
    char *deliver[] = {"--csr",     csr,           "--serial",      "SN0003", "--batch",   "b1",
                       "--product", "gateway",     "--key",         "ca-gw",  "--deliver", "ota-a",
                       "--deliver", "ota-b,ota-c", "--deliver-out", "/tmp"};
    char *deliver_nowhere[] = {"--csr",     csr,       "--serial", "SN0003", "--batch",   "b1",
                               "--product", "gateway", "--key",    "ca-gw",  "--deliver", "ota-a"};
    json_t *body = NULL;
    kbr_msg msg;

    make_pems(t);
    tmp_path(t, "dev.csr", csr, sizeof(csr));
    file_text(csr, &csr_pem);
    assert_int_equal(
        cmd_body(&cli_cmd_provision, cli_provision_body, ARGC(argv), argv, &body, &msg), KBR_OK);
    assert_string_equal(json_at_str(body, "key"), "ca-gw");
    /* The CSR goes byte for byte: its signature is the device's proof of possession. */
    assert_string_equal(json_at_str(body, "csr_pem"), csr_pem);
    assert_string_equal(json_at_str(body, "device.serial"), "SN0001");
    assert_string_equal(json_at_str(body, "device.product"), "gateway");
    assert_string_equal(json_at_str(body, "device.batch"), "b1");
    assert_string_equal(json_at_str(body, "device.firmware_version"), "1.4.2");
    assert_int_equal(json_object_size(body), 3);
    json_decref(body);
    assert_int_equal(
        cmd_body(&cli_cmd_provision, cli_provision_body, ARGC(no_fw), no_fw, &body, &msg), KBR_OK);
    assert_string_equal(json_at_str(body, "device.serial"), "SN0002");
    assert_null(cli_json_path(body, "device.firmware_version"));
    assert_int_equal(json_object_size(json_object_get(body, "device")), 3);
    assert_null(json_object_get(body, "deliver"));
    json_decref(body);
    /* --deliver, repeated or with commas, in order; it needs a directory to write to */
    assert_int_equal(
        cmd_body(&cli_cmd_provision, cli_provision_body, ARGC(deliver), deliver, &body, &msg),
        KBR_OK);
    assert_int_equal(json_array_size(json_object_get(body, "deliver")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(body, "deliver"), 0)),
                        "ota-a");
    assert_string_equal(json_string_value(json_array_get(json_object_get(body, "deliver"), 2)),
                        "ota-c");
    json_decref(body);
    expect_body_usage(&cli_cmd_provision, cli_provision_body, ARGC(deliver_nowhere),
                      deliver_nowhere, KBR_ERR_BAD_REQUEST, "--deliver needs --deliver-out");
    free(csr_pem);
}

static void test_device_revoke_body(void **state)
{
    char *argv[] = {"GW-1", "--product", "gateway", "--reason", "keyCompromise"};
    char *no_reason[] = {"GW-1", "--product", "gateway"};
    char *no_serial[] = {"--product", "gateway", "--reason", "keyCompromise"};
    char *bad_utf8[] = {"GW-1", "--product", "gateway", "--reason", "key\xc3"};
    json_t *body = NULL;
    kbr_msg msg;

    (void)state;
    assert_int_equal(
        cmd_body(&cli_cmd_device_revoke, cli_device_revoke_body, ARGC(argv), argv, &body, &msg),
        KBR_OK);
    assert_string_equal(json_at_str(body, "product"), "gateway");
    assert_string_equal(json_at_str(body, "reason"), "keyCompromise");
    assert_int_equal(json_object_size(body), 2);
    json_decref(body);
    expect_cmd_usage(&cli_cmd_device_revoke, ARGC(no_reason), no_reason,
                     "missing required option --reason");
    expect_cmd_usage(&cli_cmd_device_revoke, ARGC(no_serial), no_serial, "missing argument SERIAL");
    assert_int_equal(cmd_body(&cli_cmd_device_revoke, cli_device_revoke_body, ARGC(bad_utf8),
                              bad_utf8, &body, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "--reason is not valid UTF-8");
}

static void test_provision_requires_key(void **state)
{
    char *provision[] = {"--csr", "d.csr", "--serial", "SN1", "--batch", "b1", "--product", "gw"};
    char *rotate[] = {"SN1", "--csr", "d.csr", "--product", "gw"};
    char *rotate_no_serial[] = {"--csr", "d.csr", "--product", "gw", "--key", "ca"};
    char *empty_key[] = {"--csr", "d.csr",     "--serial", "SN1",   "--batch",
                         "b1",    "--product", "gw",       "--key="};

    (void)state;
    expect_cmd_usage(&cli_cmd_provision, ARGC(provision), provision,
                     "missing required option --key");
    expect_cmd_usage(&cli_cmd_provision, ARGC(empty_key), empty_key, "empty value for --key");
    expect_cmd_usage(&cli_cmd_rotate, ARGC(rotate), rotate, "missing required option --key");
    expect_cmd_usage(&cli_cmd_rotate, ARGC(rotate_no_serial), rotate_no_serial,
                     "missing argument SERIAL");
}

static void test_provision_body_bad_csr(void **state)
{
    const tmpdir *t = *state;
    char path[128], *big = NULL;
    char *argv[] = {"--csr", path,        "--serial", "SN1",   "--batch",
                    "b1",    "--product", "gw",       "--key", "ca"};

    make_pems(t);
    /* A certificate where the CSR belongs is caught before anything is sent. */
    tmp_path(t, "ca.pem", path, sizeof(path));
    expect_body_usage(&cli_cmd_provision, cli_provision_body, ARGC(argv), argv, KBR_ERR_BAD_REQUEST,
                      "is not a PEM certificate request");
    tmp_path(t, "junk.csr", path, sizeof(path));
    write_file(path, "hello\n", 6);
    expect_body_usage(&cli_cmd_provision, cli_provision_body, ARGC(argv), argv, KBR_ERR_BAD_REQUEST,
                      "--csr");
    big = malloc(KBR_CA_CSR_MAX + 1);
    assert_non_null(big);
    memset(big, 'A', KBR_CA_CSR_MAX + 1);
    write_file(path, big, KBR_CA_CSR_MAX + 1);
    free(big);
    expect_body_usage(&cli_cmd_provision, cli_provision_body, ARGC(argv), argv, KBR_ERR_TOO_LARGE,
                      "larger than 16384 bytes");
    tmp_path(t, "absent.csr", path, sizeof(path));
    expect_body_usage(&cli_cmd_provision, cli_provision_body, ARGC(argv), argv, KBR_ERR_IO,
                      "absent.csr");
}

static void test_rotate_body(void **state)
{
    const tmpdir *t = *state;
    char csr[128], *csr_pem = NULL;
    char *argv[] = {"SN0001", "--csr", csr, "--product", "gateway", "--key", "ca-gw"};
    json_t *body = NULL;
    kbr_msg msg;

    make_pems(t);
    tmp_path(t, "dev.csr", csr, sizeof(csr));
    file_text(csr, &csr_pem);
    assert_int_equal(cmd_body(&cli_cmd_rotate, cli_rotate_body, ARGC(argv), argv, &body, &msg),
                     KBR_OK);
    assert_string_equal(json_at_str(body, "key"), "ca-gw");
    assert_string_equal(json_at_str(body, "csr_pem"), csr_pem);
    assert_string_equal(json_at_str(body, "product"), "gateway");
    /* The serial travels in the path, not the body. */
    assert_int_equal(json_object_size(body), 3);
    json_decref(body);
    free(csr_pem);
}

static void test_key_cert_body_self_signed(void **state)
{
    char *argv[] = {"ca-gw",  "--self-signed", "--subject", "CN=Gateway Device CA,O=Example",
                    "--days", "3650"};
    json_t *body = NULL;
    kbr_msg msg;

    (void)state;
    assert_int_equal(
        cmd_body(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(argv), argv, &body, &msg),
        KBR_OK);
    assert_string_equal(json_at_str(body, "self_signed.subject"), "CN=Gateway Device CA,O=Example");
    assert_int_equal(json_integer_value(cli_json_path(body, "self_signed.days")), 3650);
    assert_null(json_object_get(body, "pem"));
    assert_int_equal(json_object_size(body), 1);
    json_decref(body);
}

static void test_key_cert_body_pem(void **state)
{
    const tmpdir *t = *state;
    char path[128], *pem = NULL;
    char *argv[] = {"ca-gw", "--pem", path};
    json_t *body = NULL;
    kbr_msg msg;

    make_pems(t);
    tmp_path(t, "ca.pem", path, sizeof(path));
    file_text(path, &pem);
    assert_int_equal(
        cmd_body(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(argv), argv, &body, &msg),
        KBR_OK);
    assert_string_equal(json_at_str(body, "pem"), pem);
    assert_int_equal(json_object_size(body), 1);
    json_decref(body);
    free(pem);
    /* A CSR is not a certificate. */
    tmp_path(t, "dev.csr", path, sizeof(path));
    expect_body_usage(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "is not a PEM certificate");
}

static void test_key_cert_body_rejects(void **state)
{
    char *neither[] = {"ca", "--subject", "CN=x", "--days", "10"};
    char *both[] = {"ca", "--self-signed", "--subject", "CN=x", "--days", "10", "--pem", "c.pem"};
    char *no_days[] = {"ca", "--self-signed", "--subject", "CN=x"};
    char *no_subject[] = {"ca", "--self-signed", "--days", "10"};
    char *pem_subject[] = {"ca", "--pem", "c.pem", "--subject", "CN=x"};
    char *zero_days[] = {"ca", "--self-signed", "--subject", "CN=x", "--days", "0"};
    char *long_days[] = {"ca", "--self-signed", "--subject", "CN=x", "--days", "36501"};

    (void)state;
    expect_body_usage(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(neither), neither,
                      KBR_ERR_BAD_REQUEST, "exactly one of --self-signed, --pem");
    expect_body_usage(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(both), both,
                      KBR_ERR_BAD_REQUEST, "exactly one of --self-signed, --pem");
    expect_body_usage(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(no_days), no_days,
                      KBR_ERR_BAD_REQUEST, "--self-signed needs --subject and --days");
    expect_body_usage(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(no_subject), no_subject,
                      KBR_ERR_BAD_REQUEST, "--self-signed needs --subject and --days");
    expect_body_usage(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(pem_subject), pem_subject,
                      KBR_ERR_BAD_REQUEST, "go with --self-signed");
    expect_body_usage(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(zero_days), zero_days,
                      KBR_ERR_BAD_REQUEST, "--days must be between 1 and 36500");
    expect_body_usage(&cli_cmd_key_certificate, cli_key_cert_body, ARGC(long_days), long_days,
                      KBR_ERR_BAD_REQUEST, "--days must be between 1 and 36500");
}

/* ---- debug unlocks ---- */

/* A vendor tool's to-be-signed bytes: a header, the challenge, a trailer. */
static const unsigned char dbg_challenge[16] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03,
                                                0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0xfe};
#define DBG_CHALLENGE_HEX "DEADBEEF000102030405060708090AFE"

static size_t dbg_write_message(const tmpdir *t, const char *name, size_t len, bool with_challenge,
                                char *path, size_t pathlen)
{
    unsigned char *data = malloc(len);

    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(0x40 + i % 7);
    if (with_challenge) {
        assert_true(len >= 8 + sizeof(dbg_challenge));
        memcpy(data + 8, dbg_challenge, sizeof(dbg_challenge));
    }
    tmp_path(t, name, path, pathlen);
    write_file(path, data, len);
    free(data);
    return len;
}

static void test_debug_auth_body(void **state)
{
    const tmpdir *t = *state;
    char path[128], *raw = NULL, *want_b64 = NULL;
    size_t rawlen = 0;
    char *argv[] = {"--key",         "dbg-gw",  "--device",    "SN0001",
                    "--product",     "gateway", "--challenge", DBG_CHALLENGE_HEX,
                    "--permissions", "00FF",    "--ticket",    "RMA-4711",
                    "--message",     path};
    json_t *body = NULL;
    kbr_msg msg;

    dbg_write_message(t, "adac.tbs", 100, true, path, sizeof(path));
    assert_int_equal(kbr_file_read(path, 4096, &raw, &rawlen), KBR_OK);
    assert_int_equal(kbr_b64_encode((const unsigned char *)raw, rawlen, &want_b64), KBR_OK);
    assert_int_equal(
        cmd_body(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv, &body, &msg), KBR_OK);
    assert_string_equal(json_at_str(body, "key"), "dbg-gw");
    assert_string_equal(json_at_str(body, "device"), "SN0001");
    assert_string_equal(json_at_str(body, "product"), "gateway");
    /* The API's hex is lowercase, whatever case the operator typed. */
    assert_string_equal(json_at_str(body, "challenge"), "deadbeef000102030405060708090afe");
    assert_string_equal(json_at_str(body, "permissions"), "00ff");
    assert_string_equal(json_at_str(body, "ticket"), "RMA-4711");
    /* The tool's bytes go exactly as the file holds them. */
    assert_string_equal(json_at_str(body, "message_b64"), want_b64);
    assert_int_equal(json_object_size(body), 7);
    json_decref(body);
    free(raw);
    free(want_b64);
}

/* The same options, none required, so the body function's own checks are reached. */
static const cli_opt dbg_loose_opts[] = {
    {"key", CLI_OPT_STR, false, "K"},           {"device", CLI_OPT_STR, false, "SN"},
    {"product", CLI_OPT_STR, false, "P"},       {"challenge", CLI_OPT_STR, false, "HEX"},
    {"permissions", CLI_OPT_STR, false, "HEX"}, {"ticket", CLI_OPT_STR, false, "T"},
    {"message", CLI_OPT_STR, false, "FILE"},    {"out", CLI_OPT_STR, false, "SIG.bin"},
};
static const cli_command dbg_loose_cmd = {{"debug-auth", NULL, NULL},      "",   "",
                                          {dbg_loose_opts, 8, NULL, 0, 0}, true, NULL};

static void test_debug_auth_requires_key_and_ticket(void **state)
{
    char *no_key[] = {"--device",      "SN1", "--product", "gw",  "--challenge", DBG_CHALLENGE_HEX,
                      "--permissions", "01",  "--ticket",  "T-1", "--message",   "m.bin"};
    char *no_ticket[] = {"--key",         "dbg", "--device",    "SN1",
                         "--product",     "gw",  "--challenge", DBG_CHALLENGE_HEX,
                         "--permissions", "01",  "--message",   "m.bin"};
    char *empty_key[] = {"--key=",      "--device",        "SN1",           "--product", "gw",
                         "--challenge", DBG_CHALLENGE_HEX, "--permissions", "01",        "--ticket",
                         "T-1",         "--message",       "m.bin"};

    (void)state;
    expect_cmd_usage(&cli_cmd_debug_auth, ARGC(no_key), no_key, "missing required option --key");
    expect_cmd_usage(&cli_cmd_debug_auth, ARGC(no_ticket), no_ticket,
                     "missing required option --ticket");
    expect_cmd_usage(&cli_cmd_debug_auth, ARGC(empty_key), empty_key, "empty value for --key");
    /* The body refuses them on its own too, before reading any file. */
    expect_body_usage(&dbg_loose_cmd, cli_debug_auth_body, ARGC(no_key), no_key,
                      KBR_ERR_BAD_REQUEST, "missing required option --key");
    expect_body_usage(&dbg_loose_cmd, cli_debug_auth_body, ARGC(no_ticket), no_ticket,
                      KBR_ERR_BAD_REQUEST, "missing required option --ticket");
}

static void test_debug_auth_message_limits(void **state)
{
    const tmpdir *t = *state;
    char path[128];
    char *argv[] = {"--key",         "dbg", "--device",    "SN1",
                    "--product",     "gw",  "--challenge", DBG_CHALLENGE_HEX,
                    "--permissions", "01",  "--ticket",    "T-1",
                    "--message",     path};
    json_t *body = NULL;
    unsigned char *sent = NULL;
    size_t sentlen = 0;
    kbr_msg msg;

    /* Exactly the broker's limit goes. */
    dbg_write_message(t, "max.bin", CLI_DEBUG_MESSAGE_MAX, true, path, sizeof(path));
    assert_int_equal(
        cmd_body(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv, &body, &msg), KBR_OK);
    assert_int_equal(kbr_b64_decode(json_at_str(body, "message_b64"), &sent, &sentlen), KBR_OK);
    assert_int_equal(sentlen, CLI_DEBUG_MESSAGE_MAX);
    assert_memory_equal(sent + 8, dbg_challenge, sizeof(dbg_challenge));
    free(sent);
    json_decref(body);
    /* One byte more is a usage error: no broker would sign it. */
    dbg_write_message(t, "big.bin", CLI_DEBUG_MESSAGE_MAX + 1, true, path, sizeof(path));
    expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "big.bin is larger than 4096 bytes");
    dbg_write_message(t, "other.bin", 64, false, path, sizeof(path));
    expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "does not contain the --challenge bytes");
    tmp_path(t, "absent.bin", path, sizeof(path));
    expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv, KBR_ERR_IO,
                      "--message");
    expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv, KBR_ERR_IO,
                      "absent.bin");
}

static void test_debug_auth_bad_values(void **state)
{
    const tmpdir *t = *state;
    static const char *const bad_challenges[] = {
        "00112233445566778899aabbccddee",  /* 15 bytes */
        "0011223344556677889",             /* odd length */
        "zz112233445566778899aabbccddeeff" /* not hex */
    };
    char path[128], challenge[200], permissions[200], ticket[200];
    char *argv[] = {"--key",       "dbg",     "--device",      "SN1",       "--product", "gw",
                    "--challenge", challenge, "--permissions", permissions, "--ticket",  ticket,
                    "--message",   path};
    json_t *body = NULL;
    kbr_msg msg;

    dbg_write_message(t, "m.bin", 200, true, path, sizeof(path));
    snprintf(permissions, sizeof(permissions), "01");
    snprintf(ticket, sizeof(ticket), "T-1");
    for (size_t i = 0; i < sizeof(bad_challenges) / sizeof(bad_challenges[0]); i++) {
        snprintf(challenge, sizeof(challenge), "%s", bad_challenges[i]);
        expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv,
                          KBR_ERR_BAD_REQUEST, "--challenge must be 16 to 64 bytes of hex");
    }
    memset(challenge, 'a', 130); /* 65 bytes */
    challenge[130] = '\0';
    expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "--challenge must be 16 to 64 bytes of hex");
    snprintf(challenge, sizeof(challenge), "%s", DBG_CHALLENGE_HEX);
    memset(permissions, 'f', 130);
    permissions[130] = '\0';
    expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "--permissions must be 1 to 64 bytes of hex");
    snprintf(permissions, sizeof(permissions), "0x01");
    expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "--permissions");
    snprintf(permissions, sizeof(permissions), "01");
    memset(ticket, 't', 129);
    ticket[129] = '\0';
    expect_body_usage(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "--ticket is longer than 128 characters");
    ticket[128] = '\0';
    assert_int_equal(
        cmd_body(&cli_cmd_debug_auth, cli_debug_auth_body, ARGC(argv), argv, &body, &msg), KBR_OK);
    assert_int_equal(strlen(json_at_str(body, "ticket")), 128);
    json_decref(body);
}

/* ---- OTA reports ---- */

static const char ota_two[] =
    "[{\"device\":\"SN1\",\"status\":\"installed\",\"at\":\"2026-11-28T14:00:00Z\"},\n"
    " {\"device\":\"SN2\",\"status\":\"failed\",\"at\":\"2026-11-28T14:05:09Z\"}]\n";

static void ota_write(const tmpdir *t, const char *text, char *path, size_t len)
{
    tmp_path(t, "results.json", path, len);
    write_file(path, text, strlen(text));
}

static void test_ota_report_body_array(void **state)
{
    const tmpdir *t = *state;
    char path[128];
    char *argv[] = {"--product",  "gateway",   "--version", "1.4.2",
                    "--campaign", "c-2026-11", "--results", path};
    json_t *body = NULL, *want = json_loads(ota_two, 0, NULL);
    kbr_msg msg;

    assert_non_null(want);
    ota_write(t, ota_two, path, sizeof(path));
    assert_int_equal(
        cmd_body(&cli_cmd_ota_report, cli_ota_report_body, ARGC(argv), argv, &body, &msg), KBR_OK);
    assert_string_equal(json_at_str(body, "product"), "gateway");
    assert_string_equal(json_at_str(body, "version"), "1.4.2");
    assert_string_equal(json_at_str(body, "campaign"), "c-2026-11");
    assert_true(json_equal(json_object_get(body, "results"), want));
    assert_int_equal(json_object_size(body), 4);
    json_decref(body);
    json_decref(want);
}

static void test_ota_report_body_object(void **state)
{
    const tmpdir *t = *state;
    char path[128], text[512];
    char *argv[] = {"--product",  "gateway",   "--version", "1.4.2",
                    "--campaign", "c-2026-11", "--results", path};
    json_t *body = NULL;
    kbr_msg msg;

    snprintf(text, sizeof(text), "{\"campaign\":\"c-2026-11\",\"results\":%s}", ota_two);
    ota_write(t, text, path, sizeof(path));
    assert_int_equal(
        cmd_body(&cli_cmd_ota_report, cli_ota_report_body, ARGC(argv), argv, &body, &msg), KBR_OK);
    assert_int_equal(json_array_size(json_object_get(body, "results")), 2);
    assert_string_equal(json_at_str(json_array_get(json_object_get(body, "results"), 1), "status"),
                        "failed");
    json_decref(body);
    /* A file written for another version is not reported against this one. */
    snprintf(text, sizeof(text), "{\"version\":\"1.4.1\",\"results\":%s}", ota_two);
    ota_write(t, text, path, sizeof(path));
    expect_body_usage(&cli_cmd_ota_report, cli_ota_report_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "its version is not the --version given (1.4.2)");
    snprintf(text, sizeof(text), "{\"devices\":%s}", ota_two);
    ota_write(t, text, path, sizeof(path));
    expect_body_usage(&cli_cmd_ota_report, cli_ota_report_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "or an object with \"results\"");
    snprintf(text, sizeof(text), "{\"results\":%s,\"note\":\"x\"}", ota_two);
    ota_write(t, text, path, sizeof(path));
    expect_body_usage(&cli_cmd_ota_report, cli_ota_report_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "unknown member \"note\"");
}

static void test_ota_report_body_rejects(void **state)
{
    const tmpdir *t = *state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[{\"device\":\"SN1\",\"status\":\"installed\"", "is not JSON"},
        {"42", "must be an array of {device, status, at}"},
        {"[]", "has 0 results; 1 to 10000"},
        {"[\"SN1\"]", "results[0] is not an object"},
        {"[{\"device\":\"SN1\",\"status\":\"done\",\"at\":\"2026-11-28T14:00:00Z\"}]",
         "results[0].status must be \"installed\" or \"failed\""},
        {"[{\"device\":\"SN1\",\"status\":\"failed\",\"at\":\"2026-11-28T14:00:00Z\"},"
         "{\"device\":\"SN2\",\"status\":\"failed\",\"at\":\"yesterday\"}]",
         "results[1].at must be an RFC 3339 UTC time"},
        {"[{\"device\":\"SN1\",\"status\":\"failed\",\"at\":\"2026-11-28T14:00:00+01:00\"}]",
         "results[0].at"},
        {"[{\"status\":\"failed\",\"at\":\"2026-11-28T14:00:00Z\"}]", "results[0].device"},
        {"[{\"device\":7,\"status\":\"failed\",\"at\":\"2026-11-28T14:00:00Z\"}]",
         "results[0].device"},
        {"[{\"device\":\"SN1\",\"status\":\"failed\",\"at\":\"2026-11-28T14:00:00Z\","
         "\"error\":\"flash\"}]",
         "results[0] has an unknown member \"error\""},
        {"[{\"device\":\"SN1\",\"device\":\"SN2\",\"status\":\"failed\",\"at\":\"2026-11-28T14:00:"
         "00Z\"}]",
         "is not JSON"},
    };
    char path[128];
    char *argv[] = {"--product", "gw", "--version", "1", "--campaign", "c", "--results", path};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ota_write(t, cases[i].text, path, sizeof(path));
        expect_body_usage(&cli_cmd_ota_report, cli_ota_report_body, ARGC(argv), argv,
                          KBR_ERR_BAD_REQUEST, cases[i].want);
    }
    tmp_path(t, "absent.json", path, sizeof(path));
    expect_body_usage(&cli_cmd_ota_report, cli_ota_report_body, ARGC(argv), argv, KBR_ERR_IO,
                      "absent.json");
}

static void test_ota_report_body_too_many(void **state)
{
    const tmpdir *t = *state;
    static const char item[] =
        "{\"device\":\"SN\",\"status\":\"installed\",\"at\":\"2026-11-28T14:00:00Z\"}";
    size_t n = CLI_OTA_RESULTS_MAX + 1, len = n * (sizeof(item)) + 2;
    char path[128], *text = malloc(len + 1), *p = text;
    char *argv[] = {"--product", "gw", "--version", "1", "--campaign", "c", "--results", path};
    char *no_campaign[] = {"--product", "gw", "--version", "1", "--results", path};

    assert_non_null(text);
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        memcpy(p, item, sizeof(item) - 1);
        p += sizeof(item) - 1;
        *p++ = i + 1 < n ? ',' : ']';
    }
    *p = '\0';
    ota_write(t, text, path, sizeof(path));
    free(text);
    expect_body_usage(&cli_cmd_ota_report, cli_ota_report_body, ARGC(argv), argv,
                      KBR_ERR_BAD_REQUEST, "has 10001 results; 1 to 10000 go in one report");
    expect_cmd_usage(&cli_cmd_ota_report, ARGC(no_campaign), no_campaign,
                     "missing required option --campaign");
}

static void test_ota_report_text(void **state)
{
    json_t *some =
        json_loads("{\"recorded\":3,\"unknown_devices\":[\"SN-X1\",\"SN-X22\"]}", 0, NULL);
    json_t *none = json_loads("{\"recorded\":2,\"unknown_devices\":[]}", 0, NULL);
    json_t *bad = json_loads("{\"recorded\":\"3\",\"unknown_devices\":[]}", 0, NULL);
    json_t *bad2 = json_loads("{\"recorded\":3,\"unknown_devices\":[1]}", 0, NULL);
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_ota_report_text(some, 812, &out), KBR_OK);
    assert_string_equal(out, "FIELD      VALUE\n"
                             "recorded   3\n"
                             "unknown    SN-X1\n"
                             "unknown    SN-X22\n"
                             "audit_seq  812\n");
    free(out);
    assert_int_equal(cli_ota_report_text(none, -1, &out), KBR_OK);
    assert_string_equal(out, "FIELD     VALUE\n"
                             "recorded  2\n"
                             "unknown   -\n");
    free(out);
    assert_int_equal(cli_ota_report_text(bad, 1, &out), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    assert_int_equal(cli_ota_report_text(bad2, 1, &out), KBR_ERR_BAD_REQUEST);
    assert_int_equal(cli_ota_report_text(NULL, 1, &out), KBR_ERR_BAD_REQUEST);
    json_decref(some);
    json_decref(none);
    json_decref(bad);
    json_decref(bad2);
}

/* ---- custody views ---- */

static void test_view_exposure_opts(void **state)
{
    char *argv[] = {"--component", "openssl",    "--versions",
                    "3.0.1,3.0.2", "--versions", "3.0.3",
                    "--product",   "gateway",    "--fixed-version=1.1.0",
                    "--after",     "EU-2",       "--limit",
                    "50",          "--csv"};
    char *purl[] = {"--purl", "pkg:generic/openssl@3.0", "--json"};
    cli_args *a = NULL;
    kbr_msg msg;
    cli_exposure_opts o;

    (void)state;
    assert_int_equal(parse(&cli_cmd_view_exposure.spec, ARGC(argv), argv, &a, &msg), KBR_OK);
    assert_int_equal(cli_view_exposure_opts(a, false, &o, &msg), KBR_OK);
    assert_string_equal(o.component, "openssl");
    assert_null(o.purl);
    assert_int_equal(o.nversions, 3);
    assert_string_equal(o.versions[0], "3.0.1");
    assert_string_equal(o.versions[2], "3.0.3");
    assert_string_equal(o.product, "gateway");
    assert_string_equal(o.fixed_version, "1.1.0");
    assert_string_equal(o.after, "EU-2");
    assert_int_equal(o.limit, 50);
    assert_true(o.csv);
    cli_args_free(a);
    assert_int_equal(parse(&cli_cmd_view_exposure.spec, ARGC(purl), purl, &a, &msg), KBR_OK);
    assert_int_equal(cli_view_exposure_opts(a, true, &o, &msg), KBR_OK);
    assert_string_equal(o.purl, "pkg:generic/openssl@3.0");
    assert_null(o.component);
    assert_null(o.versions);
    assert_int_equal(o.limit, 0);
    assert_false(o.csv);
    cli_args_free(a);
}

typedef struct {
    const char *args; /* split at spaces */
    bool json;
    const char *says;
} view_bad_case;

static void expect_exposure_rejected(const view_bad_case *c)
{
    char buf[256], *argv[16], *save = NULL;
    int argc = 0;
    cli_args *a = NULL;
    kbr_msg msg;
    cli_exposure_opts o;
    kbr_err err;

    snprintf(buf, sizeof(buf), "%s", c->args);
    for (char *t = strtok_r(buf, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    err = parse(&cli_cmd_view_exposure.spec, argc, argv, &a, &msg);
    if (err == KBR_OK)
        err = cli_view_exposure_opts(a, c->json, &o, &msg);
    cli_args_free(a);
    if (err != KBR_ERR_BAD_REQUEST || strstr(msg.text, c->says) == NULL)
        fail_msg("'%s': got %d '%s', expected '%s'", c->args, err, msg.text, c->says);
}

static void test_view_exposure_opts_rejects(void **state)
{
    static const view_bad_case cases[] = {
        {"", false, "exactly one of --component and --purl"},
        {"--component a --purl pkg:x", false, "exactly one of --component and --purl"},
        {"--purl npm:x", false, "--purl must be a package URL"},
        {"--purl pkg:x --versions 1 --vers vers:deb/1", false, "--versions or --vers"},
        {"--purl pkg:x --vers deb/<1", false, "--vers must be a version range"},
        {"--component a --eu", true, "--eu and --by-market shape the text"},
        {"--component a --fixed-version 2 --csv --by-market", false, "not with --json or --csv"},
        {"--component a --versions 1,,2", false, "empty item in --versions"},
        {"--component a --fixed-version 2 --limit 0", false, "--limit must be 1 to 1000"},
        {"--component a --fixed-version 2 --limit 1001", false, "--limit must be 1 to 1000"},
        {"--component a --fixed-version 2 --limit ten", false, "--limit"},
        {"--component a --after EU-2", false, "give --fixed-version"},
        {"--component a --limit 5", false, "give --fixed-version"},
        {"--component a --csv", false, "--csv lists the pending devices"},
        {"--component a --fixed-version 2 --csv", true, "--csv and --json"},
        {"--component a --product p --product q", false, "--product given more than once"},
        {"--component a extra", false, "unexpected argument 'extra'"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_exposure_rejected(&cases[i]);
}

static void test_view_opts_utf8(void **state)
{
    char *component[] = {"--component", "open\xffssl"};
    char *product[] = {"--purl", "pkg:x", "--product", "gate\xc3"};
    char *serial[] = {"SN-\xfe"};
    cli_args *a = NULL;
    kbr_msg msg;
    cli_exposure_opts o;

    (void)state;
    assert_int_equal(parse(&cli_cmd_view_exposure.spec, ARGC(component), component, &a, &msg),
                     KBR_OK);
    assert_int_equal(cli_view_exposure_opts(a, false, &o, &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "--component is not valid UTF-8");
    cli_args_free(a);
    assert_int_equal(parse(&cli_cmd_view_exposure.spec, ARGC(product), product, &a, &msg), KBR_OK);
    assert_int_equal(cli_view_exposure_opts(a, false, &o, &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "--product is not valid UTF-8");
    cli_args_free(a);
    assert_int_equal(parse(&cli_cmd_view_device.spec, ARGC(serial), serial, &a, &msg), KBR_OK);
    assert_int_equal(cli_view_names_check(a, "SN", &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "SN is not valid UTF-8");
    cli_args_free(a);
}

static void test_view_product_opts(void **state)
{
    char *none[] = {"gateway"};
    char *zero[] = {"gateway", "--expiring-within-days", "0"};
    char *most[] = {"gateway", "--expiring-within-days=36500"};
    char *over[] = {"gateway", "--expiring-within-days", "36501"};
    char *no_product[] = {"--expiring-within-days", "30"};
    cli_args *a = NULL;
    kbr_msg msg;
    long long days = 7;

    (void)state;
    assert_int_equal(parse(&cli_cmd_view_product.spec, ARGC(none), none, &a, &msg), KBR_OK);
    assert_int_equal(cli_view_product_opts(a, &days, &msg), KBR_OK);
    assert_int_equal(days, -1);
    cli_args_free(a);
    assert_int_equal(parse(&cli_cmd_view_product.spec, ARGC(zero), zero, &a, &msg), KBR_OK);
    assert_int_equal(cli_view_product_opts(a, &days, &msg), KBR_OK);
    assert_int_equal(days, 0);
    cli_args_free(a);
    assert_int_equal(parse(&cli_cmd_view_product.spec, ARGC(most), most, &a, &msg), KBR_OK);
    assert_int_equal(cli_view_product_opts(a, &days, &msg), KBR_OK);
    assert_int_equal(days, 36500);
    cli_args_free(a);
    assert_int_equal(parse(&cli_cmd_view_product.spec, ARGC(over), over, &a, &msg), KBR_OK);
    assert_int_equal(cli_view_product_opts(a, &days, &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "--expiring-within-days must be 0 to 36500");
    assert_int_equal(days, -1);
    cli_args_free(a);
    expect_usage(&cli_cmd_view_product.spec, ARGC(no_product), no_product, "missing argument P");
}

static json_t *view_json(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);

    if (v == NULL)
        fail_msg("bad test JSON: %s", jerr.text);
    return v;
}

static void test_view_pending_csv_quoting(void **state)
{
    json_t *items = view_json(
        "[{\"product\":\"gateway\",\"serial\":\"EU-1\",\"current_firmware\":\"1.0.0\","
        "\"batch\":\"b-eu\"},"
        "{\"product\":\"gate,way\",\"serial\":\"say \\\"hi\\\"\",\"current_firmware\":null,"
        "\"batch\":\"b\\r\\nx\"},"
        "{\"product\":\"\\\"\",\"serial\":\"a,\\\"b\\\",c\",\"current_firmware\":\"2\","
        "\"batch\":null}]");
    json_t *empty = json_array();
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_view_pending_csv(items, true, &out), KBR_OK);
    assert_string_equal(out, "product,serial,current_firmware,batch\n"
                             "gateway,EU-1,1.0.0,b-eu\n"
                             "\"gate,way\",\"say \"\"hi\"\"\",,\"b\r\nx\"\n"
                             "\"\"\"\",\"a,\"\"b\"\",c\",2,\n");
    free(out);
    assert_int_equal(cli_view_pending_csv(empty, false, &out), KBR_OK);
    assert_string_equal(out, "");
    free(out);
    json_decref(empty);
    json_decref(items);
}

static void test_view_pending_csv_rejects(void **state)
{
    static const char *const bad[] = {
        "[{\"serial\":\"EU-1\",\"current_firmware\":\"1\",\"batch\":\"b\"}]",
        "[{\"product\":\"p\",\"serial\":null,\"current_firmware\":\"1\",\"batch\":\"b\"}]",
        "[{\"product\":\"p\",\"serial\":\"S\",\"current_firmware\":1,\"batch\":\"b\"}]",
        "[{\"product\":\"p\",\"serial\":\"S\\u001b[2J\",\"current_firmware\":\"1\",\"batch\":\"b\"}"
        "]",
        "[{\"product\":\"p\",\"serial\":\"S\\u009b2J\",\"current_firmware\":\"1\",\"batch\":\"b\"}"
        "]",
        "[{\"product\":\"p\",\"serial\":\"S\",\"current_firmware\":\"1\\u202e0\",\"batch\":\"b\"}]",
        "[{\"product\":\"p\",\"serial\":\"S\",\"current_firmware\":\"1\",\"batch\":\"b\\tx\"}]",
        "[\"EU-1\"]",
        "{\"items\":[]}",
    };
    char *out = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *v = view_json(bad[i]);
        if (cli_view_pending_csv(v, true, &out) != KBR_ERR_BAD_REQUEST)
            fail_msg("accepted %s", bad[i]);
        assert_null(out);
        json_decref(v);
    }
    assert_int_equal(cli_view_pending_csv(NULL, true, &out), KBR_ERR_BAD_REQUEST);
}

static void expect_lines(const char *text, const char *const *lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strstr(text, lines[i]) == NULL)
            fail_msg("no line '%s' in:\n%s", lines[i], text);
}

#define VIEW_EXPOSURE                                                                              \
    "{\"query\":{\"component\":\"openssl\",\"versions\":[\"3.0.1\"],\"purl\":null,"                \
    "\"product\":null,\"fixed_version\":%s},"                                                      \
    "\"builds\":[{\"product\":\"gateway\",\"version\":\"1.0.0\",\"signed_at\":"                    \
    "\"2026-11-28T16:41:26Z\",\"components\":[{\"name\":\"openssl\",\"version\":\"3.0.1\"},"       \
    "{\"name\":\"openssl\",\"version\":\"3.0.1-fips\"}]}],"                                        \
    "\"devices\":{\"current\":3,\"by_batch\":[],\"by_market\":{\"DE\":2,\"FR\":2,\"US\":1},"       \
    "\"eu\":2}%s}"

static void test_view_exposure_text(void **state)
{
    static const char *const lines[] = {
        "exposure to component openssl versions 3.0.1 fixed_version 1.1.0\n",
        "gateway  1.0.0    2026-11-28T16:41:26Z  openssl@3.0.1, openssl@3.0.1-fips\n",
        "devices now running an affected build: 3\n",
        "MARKET    DEVICES\nDE        2\nFR        2\nUS        1\nEU total  2\n",
        "remediation to 1.1.0: 5 affected, 2 updated, 3 pending\n",
        "PRODUCT  SERIAL  CURRENT_FIRMWARE  BATCH\ngateway  EU-2    1.0.0             b-eu\n",
        "more: --after EU-2\n",
    };
    char text[2048], *out = NULL;
    json_t *v;

    (void)state;
    snprintf(text, sizeof(text), VIEW_EXPOSURE, "\"1.1.0\"",
             ",\"remediation\":{\"affected\":5,\"updated\":2,\"pending\":3},"
             "\"pending_devices\":{\"items\":[{\"product\":\"gateway\",\"serial\":\"EU-2\","
             "\"current_firmware\":\"1.0.0\",\"batch\":\"b-eu\"}],\"next_after\":\"EU-2\"}");
    v = view_json(text);
    assert_int_equal(cli_view_exposure_text(v, &out), KBR_OK);
    expect_lines(out, lines, sizeof(lines) / sizeof(lines[0]));
    free(out);
    json_decref(v);
    /* without a fixed version: no remediation, no pending devices, no paging hint */
    snprintf(text, sizeof(text), VIEW_EXPOSURE, "null", "");
    v = view_json(text);
    assert_int_equal(cli_view_exposure_text(v, &out), KBR_OK);
    expect_lines(out, lines + 2, 2);
    assert_null(strstr(out, "remediation"));
    assert_null(strstr(out, "pending"));
    assert_null(strstr(out, "more:"));
    free(out);
    json_decref(v);
}

static void test_view_exposure_markets_text(void **state)
{
    static const char *const by_market = "MARKET           RUNNING  AFFECTED  UPDATED  PENDING\n"
                                         "DE               2        3         1        2\n"
                                         "US               1        2         1        1\n"
                                         "EU total         2        3         1        2\n"
                                         "EL (no country)  -        2         2        0\n";
    static const char *const eu_only = "MARKET    RUNNING  AFFECTED  UPDATED  PENDING\n"
                                       "DE        2        3         1        2\n"
                                       "EU total  2        3         1        2\n";
    json_t *v = view_json(
        "{\"query\":{\"component\":\"openssl\",\"fixed_version\":\"1.1\"},\"builds\":[],"
        "\"devices\":{\"current\":3,\"by_batch\":[],\"by_market\":{\"DE\":2,\"US\":1},\"eu\":2,"
        "\"invalid_markets\":{}},"
        "\"affected\":{\"total\":7,\"by_market\":{\"DE\":3,\"US\":2},\"eu\":3,"
        "\"invalid_markets\":{\"EL\":2}},"
        "\"remediation\":{\"affected\":7,\"updated\":4,\"pending\":3,\"by_market\":"
        "{\"DE\":{\"affected\":3,\"updated\":1,\"pending\":2},\"US\":{\"affected\":2,"
        "\"updated\":1,\"pending\":1}},\"eu\":{\"affected\":3,\"updated\":1,\"pending\":2},"
        "\"invalid_markets\":{\"EL\":{\"affected\":2,\"updated\":2,\"pending\":0}}},"
        "\"affected_devices\":{\"items\":[{\"product\":\"door\",\"serial\":\"D1\","
        "\"current_firmware\":\"1.1\",\"batch\":\"b-eu\",\"status\":\"updated\"}],"
        "\"next_after\":null}}");
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_view_exposure_text_opts(v, false, true, &out), KBR_OK);
    if (strstr(out, by_market) == NULL)
        fail_msg("no per-market table in:\n%s", out);
    assert_non_null(strstr(out, "devices that ever ran one: 7\n"));
    assert_non_null(strstr(out, "remediation to 1.1: 7 affected, 4 updated, 3 pending\n"));
    assert_non_null(strstr(out, "STATUS\ndoor     D1      1.1               b-eu   updated\n"));
    free(out);
    /* the member states only, and every headline figure of the EU */
    assert_int_equal(cli_view_exposure_text_opts(v, true, true, &out), KBR_OK);
    if (strstr(out, eu_only) == NULL)
        fail_msg("no EU table in:\n%s", out);
    assert_null(strstr(out, "US "));
    assert_non_null(strstr(out, "devices in the EU now running an affected build: 2\n"));
    assert_non_null(strstr(out, "devices in the EU that ever ran one: 3\n"));
    assert_non_null(
        strstr(out, "remediation in the EU to 1.1: 3 affected, 1 updated, 2 pending\n"));
    free(out);
    assert_int_equal(cli_view_exposure_text_opts(v, true, false, &out), KBR_OK);
    assert_non_null(strstr(out, "MARKET    DEVICES\nDE        2\nEU total  2\n"));
    free(out);
    json_decref(v);
}

/* ---- the CRA ---- */

static time_t when(const char *t)
{
    time_t v = 0;

    assert_int_equal(kbr_time_parse(t, &v), KBR_OK);
    return v;
}

static void expect_clock(const char *dl, const char *now, const char *want)
{
    json_t *v = view_json(dl);
    char text[160];

    assert_int_equal(cli_clock_text(v, when(now), text, sizeof(text)), KBR_OK);
    assert_string_equal(text, want);
    json_decref(v);
}

static void test_clock_text(void **state)
{
    json_t *bad = view_json("{\"due\":\"soon\",\"status\":\"open\"}");
    char text[160];

    (void)state;
    expect_clock("{\"due\":\"2026-12-06T11:39:00Z\",\"status\":\"open\",\"submitted_at\":null}",
                 "2026-12-05T14:40:00Z", "due 2026-12-06 11:39Z, 20 h 59 min left");
    expect_clock("{\"due\":\"2026-12-06T11:39:00Z\",\"status\":\"open\",\"submitted_at\":null}",
                 "2026-12-03T11:00:00Z", "due 2026-12-06 11:39Z, 3 d 0 h left");
    expect_clock("{\"due\":\"2026-12-06T11:39:00Z\",\"status\":\"overdue\",\"submitted_at\":null}",
                 "2026-12-06T14:41:00Z", "OVERDUE by 3 h 2 min (due 2026-12-06 11:39Z)");
    /* the broker said open a minute ago; now it is past due all the same */
    expect_clock("{\"due\":\"2026-12-06T11:39:00Z\",\"status\":\"open\",\"submitted_at\":null}",
                 "2026-12-06T11:40:00Z", "OVERDUE by 1 min (due 2026-12-06 11:39Z)");
    expect_clock("{\"due\":\"2026-12-06T11:39:00Z\",\"status\":\"submitted\","
                 "\"submitted_at\":\"2026-12-06T09:00:00Z\"}",
                 "2026-12-09T00:00:00Z", "submitted 2026-12-06 09:00Z, on time");
    expect_clock("{\"due\":\"2026-12-06T11:39:00Z\",\"status\":\"submitted\","
                 "\"submitted_at\":\"2026-12-06T13:41:00Z\"}",
                 "2026-12-09T00:00:00Z", "submitted 2026-12-06 13:41Z, late by 2 h 2 min");
    expect_clock("{\"due\":null,\"status\":\"open\",\"submitted_at\":null}", "2026-12-09T00:00:00Z",
                 "starts when the fix is recorded");
    assert_int_equal(cli_clock_text(bad, 0, text, sizeof(text)), KBR_ERR_BAD_REQUEST);
    json_decref(bad);
}

#define INCIDENT_JSON                                                                              \
    "{\"id\":\"INC-7\",\"title\":\"<script>alert(1)</script> & co\",\"product\":\"lock\","         \
    "\"component\":\"openssl\",\"query\":{\"purl\":\"pkg:deb/debian/openssl\"},\"cve\":null,"      \
    "\"severity\":\"high\",\"actively_exploited\":true,\"aware_at\":\"2026-12-05T11:39:00Z\","     \
    "\"fix\":{\"fixed_version\":\"1.2.0\",\"available_at\":\"2026-12-07T10:00:00Z\"},"             \
    "\"deadlines\":{\"early_warning\":{\"due\":\"2026-12-06T11:39:00Z\",\"status\":\"submitted\"," \
    "\"submitted_at\":\"2026-12-05T15:00:00Z\"},\"notification\":{\"due\":"                        \
    "\"2026-12-08T11:39:00Z\",\"status\":\"open\",\"submitted_at\":null},\"final_report\":"        \
    "{\"due\":\"2026-12-21T10:00:00Z\",\"status\":\"open\",\"submitted_at\":null}},"               \
    "\"exposure_at_awareness\":{\"as_of\":\"2026-12-05T14:39:00Z\",\"devices\":{\"affected\":"     \
    "{\"total\":4,\"by_market\":{\"DE\":2,\"US\":1,\"GR\":1},\"eu\":3}}},"                         \
    "\"now\":{\"remediation\":{\"affected\":4,\"updated\":2,\"pending\":2,\"by_market\":{\"DE\":"  \
    "{\"affected\":2,\"updated\":1,\"pending\":1},\"GR\":{\"affected\":1,\"updated\":0,"           \
    "\"pending\":1}},\"eu\":{\"affected\":3,\"updated\":1,\"pending\":2}}},"                       \
    "\"reports\":[],"                                                                              \
    "\"over_time\":{\"days\":[\"2026-12-05\",\"2026-12-08\"],"                                     \
    "\"total\":{\"affected\":[4,4],\"updated\":[0,2],\"pending\":[4,2]},"                          \
    "\"eu\":{\"affected\":[3,3],\"updated\":[0,1],\"pending\":[3,2]},"                             \
    "\"by_market\":{\"DE\":{\"affected\":[2,2],\"updated\":[0,1],\"pending\":[2,1]},"              \
    "\"GR\":{\"affected\":[1,1],\"updated\":[0,0],\"pending\":[1,1]},"                             \
    "\"US\":{\"affected\":[1,1],\"updated\":[0,1],\"pending\":[1,0]}},\"invalid_markets\":{}}}"

static void test_incident_text(void **state)
{
    json_t *v = view_json(INCIDENT_JSON);
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_incident_text(v, when("2026-12-07T11:39:00Z"), &out), KBR_OK);
    assert_non_null(strstr(out, "  early warning (24 h)        submitted 2026-12-05 15:00Z, on "
                                "time\n"));
    assert_non_null(strstr(out, "  notification (72 h)         due 2026-12-08 11:39Z, 1 d 0 h "
                                "left\n"));
    assert_non_null(strstr(out, "remediation now: 4 affected, 2 updated, 2 pending:\n"
                                "MEMBER_STATE  AFFECTED  UPDATED  PENDING\n"
                                "DE            2         1        1\n"
                                "GR            1         0        1\n"
                                "EU total      3         1        2\n"));
    /* the US is a market, not a member state */
    assert_null(strstr(out, "US "));
    free(out);
    json_decref(v);
}

/* Every element opened is closed, in order, and text holds no '<' or bare '&'. */
static void expect_well_formed(const char *svg)
{
    char stack[64][32];
    int depth = 0;
    const char *p = strstr(svg, "<svg");

    assert_non_null(p);
    for (; *p != '\0'; p++) {
        if (*p == '&') {
            assert_true(strncmp(p, "&amp;", 5) == 0 || strncmp(p, "&lt;", 4) == 0 ||
                        strncmp(p, "&gt;", 4) == 0 || strncmp(p, "&quot;", 6) == 0 ||
                        strncmp(p, "&#39;", 5) == 0);
            continue;
        }
        if (*p != '<')
            continue;
        const char *end = strchr(p, '>');
        size_t n = strcspn(p + 1, " />");
        assert_non_null(end);
        if (p[1] == '/') {
            n = strcspn(p + 2, ">");
            assert_true(depth > 0);
            depth--;
            if (strncmp(stack[depth], p + 2, n) != 0 || stack[depth][n] != '\0')
                fail_msg("</%.*s> closes <%s>", (int)n, p + 2, stack[depth]);
        } else if (end[-1] != '/') {
            assert_true(depth < 64 && n < 32);
            snprintf(stack[depth++], sizeof(stack[0]), "%.*s", (int)n, p + 1);
        }
        p = end;
    }
    assert_int_equal(depth, 0);
}

static size_t count_of(const char *s, const char *what)
{
    size_t n = 0;

    for (s = strstr(s, what); s != NULL; s = strstr(s + 1, what))
        n++;
    return n;
}

static void test_incident_chart(void **state)
{
    json_t *v = view_json(INCIDENT_JSON);
    char *svg = NULL;

    (void)state;
    assert_int_equal(cli_incident_chart_svg(v, when("2026-12-09T08:00:00Z"), &svg), KBR_OK);
    assert_int_equal(strncmp(svg, "<?xml version=\"1.0\"", 19), 0);
    expect_well_formed(svg);
    /* every market, the EU, and the two member states (the US has no panel of its own) */
    assert_int_equal(count_of(svg, "<g>"), 4);
    assert_non_null(strstr(svg, ">All markets<"));
    assert_non_null(strstr(svg, ">DE<"));
    assert_non_null(strstr(svg, ">GR<"));
    assert_null(strstr(svg, ">US<"));
    /* DE before GR: more devices affected */
    assert_true(strstr(svg, ">DE<") < strstr(svg, ">GR<"));
    assert_non_null(strstr(svg, ">1 updated</tspan>"));
    /* the broker's text is escaped, never markup */
    assert_null(strstr(svg, "<script>"));
    assert_non_null(strstr(svg, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
    /* the fix (7 December) and the final report's due day (21 December) are marked */
    assert_int_equal(count_of(svg, "stroke-dasharray=\"4 3\"/>\n"), 8);
    free(svg);
    json_decref(v);
    v = view_json("{\"id\":\"X\"}");
    assert_int_equal(cli_incident_chart_svg(v, 0, &svg), KBR_ERR_BAD_REQUEST);
    json_decref(v);
}

static void test_incident_body(void **state)
{
    char *argv[] = {"INC-7",
                    "--title",
                    "openssl",
                    "--component",
                    "openssl",
                    "--purl",
                    "pkg:deb/debian/openssl",
                    "--vers",
                    "vers:deb/<3.0.11-1~deb12u3",
                    "--aware-at",
                    "2026-12-05T11:39:00Z",
                    "--severity",
                    "high",
                    "--actively-exploited",
                    "yes"};
    char *both[] = {"I",          "--title",    "t",      "--component",          "c",
                    "--versions", "1",          "--vers", "vers:deb/1",           "--aware-at",
                    "x",          "--severity", "low",    "--actively-exploited", "no"};
    char *maybe[] = {"I", "--title",    "t",   "--component",          "c",    "--aware-at",
                     "x", "--severity", "low", "--actively-exploited", "maybe"};
    char *product[] = {"lock", "--placed-on-market", "2026-01-01", "--support-until", "31.12.2031"};
    json_t *body = NULL;
    kbr_msg msg;

    (void)state;
    assert_int_equal(
        cmd_body(&cli_cmd_incident_create, cli_incident_body, ARGC(argv), argv, &body, &msg),
        KBR_OK);
    assert_string_equal(json_at_str(body, "id"), "INC-7");
    assert_string_equal(json_at_str(body, "vers"), "vers:deb/<3.0.11-1~deb12u3");
    assert_string_equal(json_at_str(body, "aware_at"), "2026-12-05T11:39:00Z");
    assert_true(json_is_true(json_object_get(body, "actively_exploited")));
    json_decref(body);
    body = NULL;
    expect_body_usage(&cli_cmd_incident_create, cli_incident_body, ARGC(both), both,
                      KBR_ERR_BAD_REQUEST, "--versions or --vers");
    expect_body_usage(&cli_cmd_incident_create, cli_incident_body, ARGC(maybe), maybe,
                      KBR_ERR_BAD_REQUEST, "--actively-exploited yes|no");
    expect_body_usage(&cli_cmd_product_create, cli_product_body, ARGC(product), product,
                      KBR_ERR_BAD_REQUEST, "--support-until 31.12.2031");
}

static void test_view_product_text(void **state)
{
    static const char *const lines[] = {
        "product gateway\n",
        /* one element: the table, its lines joined */
        ("PURPOSE           NAME   ALGORITHM   STATE    CERT_NOT_AFTER        HSM      SENSITIVE  "
         "EXTRACTABLE  LIVE_TOKENS\n"
         "firmware-signing  fw-gw  ecdsa-p256  active   -                     present  yes        "
         "no           2\n"
         "firmware-signing  fw-x   ecdsa-p384  retired  2030-01-01T00:00:00Z  MISSING  -          "
         "-            0\n"),
        "device certificates (5 current):\nEXPIRY_MONTH  COUNT\n2036-11       5\n",
        "unregistered HSM objects:\nLABEL         ID  CLASS    KEY_TYPE\n"
        "rogue-fw-key  99  private  ec\n",
    };
    json_t *v = view_json(
        "{\"product\":\"gateway\",\"keys\":{\"firmware-signing\":["
        "{\"name\":\"fw-gw\",\"algorithm\":\"ecdsa-p256\",\"state\":\"active\",\"certificate\":"
        "null,"
        "\"live_tokens\":[{\"jti\":\"a\"},{\"jti\":\"b\"}],"
        "\"hsm\":{\"present\":true,\"sensitive\":true,\"extractable\":false}},"
        "{\"name\":\"fw-x\",\"algorithm\":\"ecdsa-p384\",\"state\":\"retired\","
        "\"certificate\":{\"not_after\":\"2030-01-01T00:00:00Z\"},\"live_tokens\":[],"
        "\"hsm\":{\"label\":\"kbr/key/fw-x\",\"present\":false}}]},"
        "\"device_certificates\":{\"total_current\":5,\"by_expiry_month\":[{\"month\":\"2036-11\","
        "\"count\":5}]},\"unregistered_hsm_objects\":[{\"label\":\"rogue-fw-key\",\"id\":\"99\","
        "\"class\":\"private\",\"key_type\":\"ec\"}]}");
    json_t *bad = view_json("{\"product\":\"gateway\",\"keys\":[]}");
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_view_product_text(v, &out), KBR_OK);
    expect_lines(out, lines, sizeof(lines) / sizeof(lines[0]));
    /* the expiring section shows only when it was asked for */
    assert_null(strstr(out, "expiring"));
    free(out);
    assert_int_equal(cli_view_product_text(bad, &out), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    json_decref(v);
    json_decref(bad);
}

static void test_view_custody_text(void **state)
{
    static const char *const lines[] = {
        "key        fw-gw\n",
        "hsm: label kbr/key/fw-gw, id 7b31, sensitive yes, extractable no, local yes, "
        "never_extractable yes, always_sensitive -\n",
        "operations:\nSUB  OP    OUTCOME  COUNT  LAST_AT\n"
        "-    sign  denied   1      2026-11-28T16:00:00Z\n",
        "principals:\nSUB         LIVE_GRANT\nci:gateway  yes\nci:new      yes\nci:old      no\n",
    };
    json_t *v = view_json(
        "{\"key\":\"fw-gw\",\"purpose\":\"firmware-signing\",\"algorithm\":\"ecdsa-p256\","
        "\"state\":\"active\",\"products\":[\"gateway\"],\"hsm\":{\"label\":\"kbr/key/fw-gw\","
        "\"id\":\"7b31\",\"present\":true,\"sensitive\":true,\"extractable\":false,\"local\":true,"
        "\"never_extractable\":true},\"tokens\":[],"
        "\"operations\":[{\"sub\":null,\"op\":\"sign\",\"outcome\":\"denied\",\"count\":1,"
        "\"last_at\":\"2026-11-28T16:00:00Z\"}],"
        "\"principals\":[{\"sub\":\"ci:gateway\",\"live_grant\":true},{\"sub\":\"ci:old\","
        "\"live_grant\":false},{\"sub\":\"ci:new\",\"live_grant\":true}]}");
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_view_custody_text(v, &out), KBR_OK);
    expect_lines(out, lines, sizeof(lines) / sizeof(lines[0]));
    assert_non_null(strstr(out, "\ntokens: none\n"));
    free(out);
    json_decref(v);
}

static void test_view_device_text(void **state)
{
    static const char *const lines[] = {
        "serial               EU-1\n",
        "markets              DE,FR\n",
        "current_firmware     1.1.0\n",
        "SERIAL_NUMBER  FINGERPRINT        NOT_AFTER             SUPERSEDED_AT         AUDIT_SEQ\n"
        "01             0123456789abcdef\u2026  2027-01-01T00:00:00Z  2026-06-01T00:00:00Z  4\n"
        "02             fedcba9876543210\u2026  2028-01-01T00:00:00Z  -                     9\n",
        "2026-06-02T00:00:00Z  1.1.0    installed  fix-1     12\n",
        "\ndebug unlocks: none\n",
    };
    json_t *v = view_json(
        "{\"product\":\"gateway\",\"serial\":\"EU-1\",\"batch\":\"b-eu\",\"factory\":\"factory:"
        "acme\","
        "\"markets\":[\"DE\",\"FR\"],\"provisioned_at\":\"2026-01-01T00:00:00Z\","
        "\"firmware_version\":\"1.0.0\",\"current_firmware\":\"1.1.0\","
        "\"certificates\":[{\"serial_number\":\"01\",\"fingerprint\":"
        "\"0123456789abcdef0123456789abcdef\",\"not_after\":\"2027-01-01T00:00:00Z\","
        "\"superseded_at\":\"2026-06-01T00:00:00Z\",\"audit_seq\":4},{\"serial_number\":\"02\","
        "\"fingerprint\":\"fedcba98765432100\",\"not_after\":\"2028-01-01T00:00:00Z\","
        "\"superseded_at\":null,\"audit_seq\":9}],"
        "\"firmware\":[{\"at\":\"2026-06-02T00:00:00Z\",\"version\":\"1.1.0\",\"status\":"
        "\"installed\",\"campaign\":\"fix-1\",\"audit_seq\":12}],\"debug_auth\":[]}");
    json_t *bad = view_json("{\"serial\":\"EU-1\",\"certificates\":{}}");
    char *out = NULL;

    (void)state;
    assert_int_equal(cli_view_device_text(v, &out), KBR_OK);
    expect_lines(out, lines, sizeof(lines) / sizeof(lines[0]));
    free(out);
    assert_int_equal(cli_view_device_text(bad, &out), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    json_decref(v);
    json_decref(bad);
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
        cmocka_unit_test(test_term_escape),
        cmocka_unit_test(test_error_line_hostile),
        cmocka_unit_test(test_table_hostile_cell),
        cmocka_unit_test(test_view_text_hostile),
        cmocka_unit_test(test_print_json_hostile),
        cmocka_unit_test_setup_teardown(test_out_files, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_audit_verify_duplicate_keys, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_response_duplicate_keys),
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
        cmocka_unit_test(test_sign_body_cose),
        cmocka_unit_test(test_sign_format_and_payload_choice),
        cmocka_unit_test_setup_teardown(test_file_b64_limit, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_batch_body_markets),
        cmocka_unit_test(test_batch_body_bad_markets),
        cmocka_unit_test(test_batch_body_bad_quantity),
        cmocka_unit_test(test_batch_body_factory),
        cmocka_unit_test_setup_teardown(test_provision_body, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_provision_requires_key),
        cmocka_unit_test(test_device_revoke_body),
        cmocka_unit_test_setup_teardown(test_provision_body_bad_csr, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_body, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_key_cert_body_self_signed),
        cmocka_unit_test_setup_teardown(test_key_cert_body_pem, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_key_cert_body_rejects),
        cmocka_unit_test_setup_teardown(test_debug_auth_body, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_debug_auth_requires_key_and_ticket),
        cmocka_unit_test_setup_teardown(test_debug_auth_message_limits, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_debug_auth_bad_values, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ota_report_body_array, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ota_report_body_object, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ota_report_body_rejects, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ota_report_body_too_many, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_ota_report_text),
        cmocka_unit_test(test_view_exposure_opts),
        cmocka_unit_test(test_view_exposure_opts_rejects),
        cmocka_unit_test(test_view_opts_utf8),
        cmocka_unit_test(test_view_product_opts),
        cmocka_unit_test(test_view_pending_csv_quoting),
        cmocka_unit_test(test_view_pending_csv_rejects),
        cmocka_unit_test(test_view_exposure_text),
        cmocka_unit_test(test_view_exposure_markets_text),
        cmocka_unit_test(test_clock_text),
        cmocka_unit_test(test_incident_text),
        cmocka_unit_test(test_incident_chart),
        cmocka_unit_test(test_incident_body),
        cmocka_unit_test(test_view_product_text),
        cmocka_unit_test(test_view_custody_text),
        cmocka_unit_test(test_view_device_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
