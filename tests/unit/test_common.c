/*
 * test_common.c - the shared encoders, secrets, times and canonical JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kbr_common.h"
#include "tmpdir.h"

static void test_hex(void **state)
{
    unsigned char *out = NULL;
    size_t n = 0;
    char *hex = NULL;
    const unsigned char in[] = {0x00, 0xab, 0xff, 0x10};

    (void)state;
    assert_int_equal(kbr_hex_encode(in, sizeof(in), &hex), KBR_OK);
    assert_string_equal(hex, "00abff10");
    assert_int_equal(kbr_hex_decode("00ABff10", &out, &n), KBR_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, in, 4);
    free(out);
    free(hex);
    assert_int_equal(kbr_hex_decode("abc", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    assert_int_equal(kbr_hex_decode("zz", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hex_decode("", &out, &n), KBR_ERR_BAD_REQUEST);
}

static void test_base64(void **state)
{
    unsigned char *out = NULL;
    size_t n = 0;
    char *s = NULL;

    (void)state;
    assert_int_equal(kbr_b64_encode((const unsigned char *)"hello", 5, &s), KBR_OK);
    assert_string_equal(s, "aGVsbG8=");
    free(s);
    assert_int_equal(kbr_b64_decode("aGVsbG8=", &out, &n), KBR_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "hello", 5);
    free(out);
    /* whitespace, bad padding and foreign characters are refused, not skipped */
    assert_int_equal(kbr_b64_decode("aGVs bG8=", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64_decode("aGVsbG8", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64_decode("aGV*bG8=", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64_decode("", &out, &n), KBR_ERR_BAD_REQUEST);
    /* base64url: no padding, - and _ */
    const unsigned char bin[] = {0xfb, 0xff, 0xbf};
    assert_int_equal(kbr_b64url_encode(bin, 3, &s), KBR_OK);
    assert_string_equal(s, "-_-_");
    free(s);
    assert_int_equal(kbr_b64url_decode("-_-_", 4, &out, &n), KBR_OK);
    assert_memory_equal(out, bin, 3);
    free(out);
    assert_int_equal(kbr_b64url_decode("aGVsbG8", 7, &out, &n), KBR_OK);
    assert_int_equal(n, 5);
    free(out);
    assert_int_equal(kbr_b64url_decode("aGVsbG8=", 8, &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64url_decode("a+b/", 4, &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64url_decode("abcde", 5, &out, &n), KBR_ERR_BAD_REQUEST);
    /* "QQ" is the one spelling of 0x41; "QR".."QZ" differ only in bits that carry nothing */
    assert_int_equal(kbr_b64url_decode("QQ", 2, &out, &n), KBR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0x41);
    free(out);
    assert_int_equal(kbr_b64url_decode("QR", 2, &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64url_decode("QUE", 3, &out, &n), KBR_OK);
    free(out);
    assert_int_equal(kbr_b64url_decode("QUF", 3, &out, &n), KBR_ERR_BAD_REQUEST);
}

static void test_time(void **state)
{
    char buf[KBR_TIME_LEN];
    time_t t = 0;

    (void)state;
    kbr_time_fmt(1795874400, buf);
    assert_string_equal(buf, "2026-11-28T14:00:00Z");
    assert_int_equal(kbr_time_parse("2026-11-28T14:00:00Z", &t), KBR_OK);
    assert_int_equal(t, 1795874400);
    assert_int_equal(kbr_time_parse("2026-11-28T14:00:00.123Z", &t), KBR_OK);
    assert_int_equal(t, 1795874400);
    assert_int_equal(kbr_time_parse("2026-11-28T14:00:00+02:00", &t), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_time_parse("yesterday", &t), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_time_parse("2026-11-28", &t), KBR_ERR_BAD_REQUEST);
}

static void test_canonical_json(void **state)
{
    json_t *a = json_loads("{\"b\": 1, \"a\": {\"y\": [1, 2], \"x\": \"\\u00e9\"}}", 0, NULL);
    json_t *b = json_loads("{\"a\":{\"x\":\"\\u00e9\",\"y\":[1,2]},\"b\":1}", 0, NULL);
    char *ca = NULL, *cb = NULL;

    (void)state;
    assert_int_equal(kbr_json_canonical(a, &ca), KBR_OK);
    assert_int_equal(kbr_json_canonical(b, &cb), KBR_OK);
    /* same value, same bytes, whatever order or spacing it arrived in */
    assert_string_equal(ca, cb);
    /* RFC 8785: non-ASCII as UTF-8, not escaped */
    assert_string_equal(ca, "{\"a\":{\"x\":\"\xc3\xa9\",\"y\":[1,2]},\"b\":1}");
    free(ca);
    free(cb);
    json_decref(a);
    json_decref(b);
}

static char *jcs_of(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    char *out = NULL;

    if (v == NULL)
        fail_msg("test JSON: %s", jerr.text);
    assert_int_equal(kbr_json_canonical(v, &out), KBR_OK);
    json_decref(v);
    return out;
}

static void expect_jcs(const char *in, const char *want)
{
    char *got = jcs_of(in);

    if (strcmp(got, want) != 0)
        fail_msg("JCS of %s: want %s, got %s", in, want, got);
    free(got);
}

/* The examples of RFC 8785 3.2.2 (values) and 3.2.3 (sorting by UTF-16 code units). */
static void test_jcs_rfc8785_examples(void **state)
{
    (void)state;
    expect_jcs(
        "{\"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],"
        " \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\","
        " \"literals\": [null, true, false]}",
        "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,"
        "1e-27],\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
    expect_jcs("{\"\\u20ac\": \"Euro Sign\", \"\\r\": \"Carriage Return\", \"\\ufb33\": \"Hebrew\","
               " \"1\": \"One\", \"\\ud83d\\ude00\": \"Emoji\", \"\\u0080\": \"Control\\u007f\","
               " \"\\u00f6\": \"Latin\", \"</script>\": \"Browser\"}",
               "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"</script>\":\"Browser\","
               "\"\xc2\x80\":\"Control\x7f\",\"\xc3\xb6\":\"Latin\",\"\xe2\x82\xac\":\"Euro Sign\","
               "\"\xf0\x9f\x98\x80\":\"Emoji\",\"\xef\xac\xb3\":\"Hebrew\"}");
    /* every control character has its escape, the named ones short */
    expect_jcs("\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \\u007f\"",
               "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \x7f\"");
}

static double double_of(uint64_t bits)
{
    double d;

    memcpy(&d, &bits, sizeof(d));
    return d;
}

static void expect_number(uint64_t bits, const char *want)
{
    json_t *v = json_real(double_of(bits));
    char *got = NULL;

    assert_int_equal(kbr_json_canonical(v, &got), KBR_OK);
    if (strcmp(got, want) != 0)
        fail_msg("%016llx: want %s, got %s", (unsigned long long)bits, want, got);
    free(got);
    json_decref(v);
}

/* Numbers as ECMAScript writes a double: RFC 8785 Appendix B's edge cases. */
/*
 * A value written by shape: the same bytes kbr_json_canonical computes for it, and every
 * mistake a shape can make (a name out of JCS order, a required member missing, text that is
 * not UTF-8, an object left open) an error rather than a text no other JCS computes.
 */
static void test_jcs_writer(void **state)
{
    kbr_jcs w = {0};
    char *text = NULL;
    size_t len = 0;
    json_t *detail = json_pack("{s:s,s:i,s:[s,n]}", "z", "\xc3\xa9\"\\\x01", "a", 7, "m", "x");

    (void)state;
    kbr_jcs_object(&w);
    kbr_jcs_key(&w, "a");
    kbr_jcs_array(&w);
    kbr_jcs_str(&w, "tab\there");
    kbr_jcs_int(&w, -42);
    kbr_jcs_null(&w);
    kbr_jcs_bool(&w, false);
    kbr_jcs_array(&w);
    kbr_jcs_end(&w);
    kbr_jcs_object(&w);
    kbr_jcs_end(&w);
    kbr_jcs_end(&w);
    kbr_jcs_key(&w, "detail");
    kbr_jcs_json(&w, detail);
    kbr_jcs_member_nullable(&w, "n", NULL);
    kbr_jcs_member_opt(&w, "o", NULL); /* left out */
    kbr_jcs_key(&w, "q");
    kbr_jcs_json_text(&w, "{\"y\": 2, \"x\": 1.5}");
    kbr_jcs_member_int(&w, "s", INT64_C(1) << 53);
    /* U+FB33 against U+1F600: UTF-16 puts the surrogate pair first, UTF-8 bytes the other way */
    kbr_jcs_member_bool(&w, "\xf0\x9f\x98\x80", true);
    kbr_jcs_member_str(&w, "\xef\xac\xb3", "last");
    kbr_jcs_end(&w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_OK);
    assert_string_equal(text,
                        "{\"a\":[\"tab\\there\",-42,null,false,[],{}],"
                        "\"detail\":{\"a\":7,\"m\":[\"x\",null],\"z\":\"\xc3\xa9\\\"\\\\\\u0001\"},"
                        "\"n\":null,\"q\":{\"x\":1.5,\"y\":2},\"s\":9007199254740992,"
                        "\"\xf0\x9f\x98\x80\":true,\"\xef\xac\xb3\":\"last\"}");
    assert_int_equal(len, strlen(text));
    {
        json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        char *again = NULL;
        assert_non_null(back);
        assert_int_equal(kbr_json_canonical(back, &again), KBR_OK);
        assert_string_equal(again, text);
        free(again);
        json_decref(back);
    }
    free(text);

    /* a name that does not sort after the one before it */
    w = (kbr_jcs){0};
    kbr_jcs_object(&w);
    kbr_jcs_member_int(&w, "b", 1);
    kbr_jcs_member_int(&w, "a", 2);
    kbr_jcs_end(&w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_INTERNAL);
    assert_null(text);
    /* the same name twice */
    w = (kbr_jcs){0};
    kbr_jcs_object(&w);
    kbr_jcs_member_int(&w, "a", 1);
    kbr_jcs_member_int(&w, "a", 2);
    kbr_jcs_end(&w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_INTERNAL);
    /* in UTF-16 order U+1F600 comes before U+FB33, though its UTF-8 bytes sort after */
    w = (kbr_jcs){0};
    kbr_jcs_object(&w);
    kbr_jcs_member_int(&w, "\xef\xac\xb3", 1);
    kbr_jcs_member_int(&w, "\xf0\x9f\x98\x80", 2);
    kbr_jcs_end(&w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_INTERNAL);
    /* a required member missing */
    w = (kbr_jcs){0};
    kbr_jcs_object(&w);
    kbr_jcs_member_str(&w, "a", NULL);
    kbr_jcs_end(&w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_INTERNAL);
    /* not UTF-8; not JSON */
    w = (kbr_jcs){0};
    kbr_jcs_str(&w, "\xc3\x28");
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_BAD_REQUEST);
    w = (kbr_jcs){0};
    kbr_jcs_json_text(&w, "{\"a\":1,\"a\":2}");
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_BAD_REQUEST);
    /* left open; closed once too often; a name outside an object */
    w = (kbr_jcs){0};
    kbr_jcs_array(&w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_INTERNAL);
    w = (kbr_jcs){0};
    kbr_jcs_array(&w);
    kbr_jcs_end(&w);
    kbr_jcs_end(&w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_INTERNAL);
    w = (kbr_jcs){0};
    kbr_jcs_array(&w);
    kbr_jcs_key(&w, "a");
    kbr_jcs_end(&w);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_INTERNAL);
    /* the first error sticks */
    w = (kbr_jcs){0};
    kbr_jcs_fail(&w, KBR_ERR_NOMEM);
    kbr_jcs_fail(&w, KBR_ERR_INTERNAL);
    assert_int_equal(kbr_jcs_finish(&w, &text, &len), KBR_ERR_NOMEM);
    assert_null(text);
    json_decref(detail);
}

/* A JSON string as RFC 8785 writes it, a byte at a time: the reference for the writer. */
static size_t escaped_slowly(const unsigned char *s, size_t n, char *out)
{
    size_t o = 0;

    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];

        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') {
            out[o++] = '\\';
            out[o++] = c == '\b' ? 'b' : c == '\f' ? 'f' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, 7, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

/*
 * Strings of every length up to 40 with one byte that needs an escape, or two, at every
 * position, against a byte-at-a-time reference: the writer copies runs of plain bytes whole,
 * so a run that starts, ends or stops early at the wrong byte shows here.  Bytes next to the
 * ones that need escapes (0x1f and 0x20, '!' and '#' around '"', '[' and ']' around '\\',
 * 0x7f, and the bytes of 'é') must pass as they are.
 */
static void test_jcs_string_escapes_at_every_offset(void **state)
{
    static const unsigned char special[] = {0x00, 0x01, '\b', '\t', '\n', 0x1f, '"', '\\'};
    static const unsigned char plain[] = {0x20, '!', '#', '[', ']', 0x7f, 0xc3, 0xa9, 'a'};
    unsigned char s[41];
    char want[41 * 6 + 3];
    size_t tried = 0;

    (void)state;
    for (size_t n = 0; n <= 40; n++) {
        for (size_t p = 0; p <= n; p++) {
            for (size_t k = 0; k < sizeof(special); k++) {
                for (size_t q = p; q <= n; q++) {
                    json_t *v;
                    char *got = NULL;

                    for (size_t i = 0; i < n; i++)
                        s[i] = plain[(i * 7 + n) % (sizeof(plain) - 1)];
                    /* 0xc3 0xa9 only as the pair that is 'é' */
                    for (size_t i = 0; i < n; i++)
                        if (s[i] == 0xc3 || s[i] == 0xa9)
                            s[i] = 'a';
                    if (n >= 2 && p != 0 && q != 0 && p != 1 && q != 1) {
                        s[0] = 0xc3;
                        s[1] = 0xa9;
                    }
                    if (p < n)
                        s[p] = special[k];
                    if (q < n && q != p)
                        s[q] = special[(k + 3) % sizeof(special)];
                    v = json_stringn((const char *)s, n);
                    assert_non_null(v);
                    escaped_slowly(s, n, want);
                    assert_int_equal(kbr_json_canonical(v, &got), KBR_OK);
                    if (strcmp(got, want) != 0)
                        fail_msg("length %zu, escapes at %zu and %zu: %s, want %s", n, p, q, got,
                                 want);
                    free(got);
                    json_decref(v);
                    tried++;
                }
            }
        }
    }
    assert_true(tried > 80000);
}

static void test_jcs_numbers(void **state)
{
    json_t *deep = json_array();
    char *out = NULL;

    (void)state;
    expect_number(0x0000000000000000ull, "0");
    expect_number(0x8000000000000000ull, "0");
    expect_number(0x0000000000000001ull, "5e-324");
    expect_number(0x8000000000000001ull, "-5e-324");
    expect_number(0x7fefffffffffffffull, "1.7976931348623157e+308");
    expect_number(0xffefffffffffffffull, "-1.7976931348623157e+308");
    expect_number(0x4340000000000000ull, "9007199254740992");
    expect_number(0xc340000000000000ull, "-9007199254740992");
    expect_number(0x4430000000000000ull, "295147905179352830000");
    expect_number(0x44b52d02c7e14af5ull, "9.999999999999997e+22");
    expect_number(0x44b52d02c7e14af6ull, "1e+23");
    expect_number(0x44b52d02c7e14af7ull, "1.0000000000000001e+23");
    expect_number(0x444b1ae4d6e2ef4eull, "999999999999999700000");
    expect_number(0x444b1ae4d6e2ef4full, "999999999999999900000");
    expect_number(0x444b1ae4d6e2ef50ull, "1e+21");
    expect_number(0x3eb0c6f7a0b5ed8cull, "9.999999999999997e-7");
    expect_number(0x3eb0c6f7a0b5ed8dull, "0.000001");
    expect_number(0x41b3de4355555553ull, "333333333.3333332");
    expect_number(0x41b3de4355555555ull, "333333333.3333333");
    expect_number(0xbecbf647612f3696ull, "-0.0000033333333333333333");
    expect_number(0x43143ff3c1cb0959ull, "1424953923781206.2");
    /* integers are doubles too: beyond 2^53 they are the double they read as */
    expect_jcs("[9007199254740993, -9007199254740993, 12, -0]",
               "[9007199254740992,-9007199254740992,12,0]");
    /* a hostile document cannot recurse without bound */
    for (int i = 0; i < 200; i++)
        deep = json_pack("[o]", deep);
    assert_int_equal(kbr_json_canonical(deep, &out), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    json_decref(deep);
}

/* A string of random code points from the ranges canonicalization treats differently. */
static void random_text(char *buf, size_t cap)
{
    static const unsigned ranges[][2] = {{0x00, 0x1f},       {0x20, 0x7e},    {0x7f, 0x9f},
                                         {0xa0, 0x7ff},      {0x800, 0xd7ff}, {0xe000, 0xfffd},
                                         {0x10000, 0x10ffff}};
    size_t n = 0, count = (size_t)(rand() % 6);

    for (size_t i = 0; i < count && n + 5 < cap; i++) {
        const unsigned *r = ranges[rand() % 7];
        unsigned cp = r[0] + (unsigned)rand() % (r[1] - r[0] + 1);
        if (cp < 0x80) {
            buf[n++] = (char)cp;
        } else if (cp < 0x800) {
            buf[n++] = (char)(0xc0 | (cp >> 6));
            buf[n++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            buf[n++] = (char)(0xe0 | (cp >> 12));
            buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            buf[n++] = (char)(0x80 | (cp & 0x3f));
        } else {
            buf[n++] = (char)(0xf0 | (cp >> 18));
            buf[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            buf[n++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    buf[n] = '\0';
}

static double random_double(void)
{
    uint64_t bits;
    double d;

    do {
        bits = ((uint64_t)rand() << 62) ^ ((uint64_t)rand() << 31) ^ (uint64_t)rand();
        memcpy(&d, &bits, sizeof(d));
    } while (!isfinite(d));
    return d;
}

static json_t *random_value(int depth)
{
    char text[64];
    json_t *v;

    switch (depth < 3 ? rand() % 6 : rand() % 3) {
    case 0:
        return json_real(random_double());
    case 1:
        random_text(text, sizeof(text));
        return json_string(text);
    case 2:
        return json_integer((json_int_t)rand() - RAND_MAX / 2);
    case 3:
        v = json_array();
        for (int i = rand() % 4; i > 0; i--)
            json_array_append_new(v, random_value(depth + 1));
        return v;
    default:
        v = json_object();
        for (int i = rand() % 5; i > 0; i--) {
            random_text(text, sizeof(text));
            json_object_set_new(v, text, random_value(depth + 1));
        }
        return v;
    }
}

/*
 * An independent implementation agrees byte for byte: the ECMAScript engine (Node.js) writes
 * RFC 8785 by the RFC's own definition.  Random doubles over their whole range, strings with
 * controls, non-ASCII and characters beyond U+FFFF, in names and values.
 */
static void test_jcs_matches_ecmascript(void **state)
{
    char dir[] = "/tmp/kbr-jcs-XXXXXX", cmd[512], path[128];
    FILE *in;
    char *line = NULL, *ours = NULL;
    size_t cap = 0;
    json_t *values = json_array();
    int rc;

    (void)state;
    srand(8785);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/in.jsonl", dir);
    in = fopen(path, "w");
    assert_non_null(in);
    for (int i = 0; i < 3000; i++) {
        json_t *v = random_value(0);
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17));
        fprintf(in, "%s\n", text);
        free(text);
        json_array_append_new(values, v);
    }
    assert_int_equal(fclose(in), 0);
    snprintf(cmd, sizeof(cmd), "node tests/unit/jcs_oracle.js < %s/in.jsonl > %s/out.jsonl", dir,
             dir);
    rc = system(cmd);
    if (rc != 0)
        fail_msg("node could not run tests/unit/jcs_oracle.js (Debian package nodejs): %d", rc);
    snprintf(path, sizeof(path), "%s/out.jsonl", dir);
    in = fopen(path, "r");
    assert_non_null(in);
    for (size_t i = 0; i < json_array_size(values); i++) {
        ssize_t n = getline(&line, &cap, in);
        assert_true(n > 0);
        line[n - 1] = '\0';
        assert_int_equal(kbr_json_canonical(json_array_get(values, i), &ours), KBR_OK);
        if (strcmp(ours, line) != 0)
            fail_msg("value %zu: ECMAScript wrote %s, keybroker %s", i, line, ours);
        free(ours);
    }
    fclose(in);
    free(line);
    json_decref(values);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* kbr_json_compact against jansson's own writer, the one answers were written with before. */
static void assert_compact_as_jansson(const json_t *v)
{
    char *ours = NULL, *theirs = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t len = 0;

    assert_non_null(theirs);
    assert_int_equal(kbr_json_compact(v, &ours, &len), KBR_OK);
    if (strcmp(ours, theirs) != 0)
        fail_msg("jansson wrote %s, keybroker %s", theirs, ours);
    assert_int_equal(len, strlen(theirs));
    free(ours);
    free(theirs);
}

/*
 * An answer's text is what json_dumps(JSON_COMPACT) wrote: members in the order they were
 * set, controls as upper-case \u00XX, '/' and non-ASCII as they are, jansson's digits for
 * a real.  Random documents, then the cases random ones rarely reach; what jansson refuses
 * is refused.
 */
static void test_json_compact_matches_jansson(void **state)
{
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU/x+y\n"
                              "-----END CERTIFICATE-----\n";
    char *out = NULL;
    size_t len = 0;
    json_t *v, *deep;

    (void)state;
    srand(4627);
    for (int i = 0; i < 3000; i++) {
        v = json_pack("[o]", random_value(0));
        assert_compact_as_jansson(v);
        json_decref(v);
        v = json_pack("{s:o,s:o}", "z", random_value(1), "a", random_value(1));
        assert_compact_as_jansson(v);
        json_decref(v);
    }
    v = json_pack("{s:s,s:s%,s:{},s:[],s:I,s:I,s:f,s:f,s:b,s:n,s:[s,{s:[]}]}", "certificate_pem",
                  pem, "nul", "a\0b\x1f\x7f", (size_t)5, "empty", "none", "max",
                  (json_int_t)INT64_MAX, "min", (json_int_t)INT64_MIN, "real", 1.0, "tenth", 0.1,
                  "yes", 1, "nothing", "\xf0\x9f\x94\x91 \xc3\xa9/\"\\\b\f\n\r\t", "k", "v");
    assert_non_null(v);
    assert_int_equal(json_object_setn_new(v, "key\0with nul", 13, json_true()), 0);
    assert_compact_as_jansson(v);
    assert_compact_as_jansson(json_object_get(v, "empty"));
    json_decref(v);

    /* a string that is not UTF-8 and a root that is not a container: jansson writes neither */
    v = json_pack("{s:o}", "bad", json_stringn_nocheck("\xc0\xaf", 2));
    assert_null(json_dumps(v, JSON_COMPACT));
    assert_int_equal(kbr_json_compact(v, &out, &len), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    json_decref(v);
    v = json_string("alone");
    assert_null(json_dumps(v, JSON_COMPACT));
    assert_int_equal(kbr_json_compact(v, &out, &len), KBR_ERR_BAD_REQUEST);
    json_decref(v);

    /* 128 levels are written; past that the caller falls back to json_dumps */
    deep = json_array();
    for (int i = 0; i < 128; i++)
        deep = json_pack("[o]", deep);
    assert_compact_as_jansson(deep);
    deep = json_pack("[o]", deep);
    assert_int_equal(kbr_json_compact(deep, &out, &len), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    json_decref(deep);
}

static void test_secret_and_files(void **state)
{
    char dir[64];
    char path[128], big[5000];
    kbr_secret *s = NULL;
    char *data = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-common"), 0);
    snprintf(path, sizeof(path), "%s/pin", dir);
    assert_int_equal(kbr_file_write(path, "1234\n\n", 6, 0600, NULL), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_OK);
    assert_int_equal(s->len, 4);
    assert_true(kbr_secret_equal(s->buf, s->len, "1234", 4));
    assert_false(kbr_secret_equal(s->buf, s->len, "1235", 4));
    assert_false(kbr_secret_equal(s->buf, s->len, "12345", 5));
    kbr_secret_free(s);
    kbr_secret_free(NULL);
    /* an empty PIN file is a configuration error, not an empty PIN */
    assert_int_equal(kbr_file_write(path, "\n", 1, 0600, NULL), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_ERR_CONFIG);
    assert_null(s);
    memset(big, 'x', sizeof(big));
    assert_int_equal(kbr_file_write(path, big, sizeof(big), 0600, NULL), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_ERR_TOO_LARGE);
    assert_int_equal(kbr_file_read(path, sizeof(big), &data, &n), KBR_OK);
    assert_int_equal(n, sizeof(big));
    free(data);
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(kbr_file_read(path, 10, &data, &n), KBR_ERR_IO);
    assert_int_equal(kbr_file_write("/proc/no/such/file", "x", 1, 0600, NULL), KBR_ERR_IO);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/* ---- kbr_file_write: what the path names decides how it is written ---- */

#define FW_SECRET "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"

static void fw_join(char *out, size_t n, const char *dir, const char *name)
{
    assert_true((size_t)snprintf(out, n, "%s/%s", dir, name) < n);
}

static void fw_expect_content(const char *path, const char *want)
{
    char *data = NULL;
    size_t n = 0;

    assert_int_equal(kbr_file_read(path, 4096, &data, &n), KBR_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(data, want, n);
    free(data);
}

/* A refusal names the path and says why. */
static void fw_expect_refused(const char *path, const char *why)
{
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_file_write(path, FW_SECRET, strlen(FW_SECRET), 0600, &msg), KBR_ERR_IO);
    if (strncmp(msg.text, path, strlen(path)) != 0 || strstr(msg.text, why) == NULL)
        fail_msg("refusal of %s says '%s', not '%s'", path, msg.text, why);
    memset(&msg, 0, sizeof(msg));
    assert_int_equal(kbr_file_write_check(path, 0600, &msg), KBR_ERR_IO);
    if (strstr(msg.text, why) == NULL)
        fail_msg("the check of %s says '%s', not '%s'", path, msg.text, why);
}

/* Entries of dir other than . and ..: a failed or finished write leaves no temporary file. */
static size_t fw_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    const struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_file_write_regular(void **state)
{
    char dir[64], path[128];
    struct stat before, after;
    mode_t old_umask;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(path, sizeof(path), dir, "token");
    /* a new file gets exactly the mode asked for, whatever the umask allows */
    old_umask = umask(0);
    assert_int_equal(kbr_file_write(path, FW_SECRET, strlen(FW_SECRET), 0600, NULL), KBR_OK);
    umask(old_umask);
    assert_int_equal(lstat(path, &before), 0);
    assert_true(S_ISREG(before.st_mode));
    assert_int_equal(before.st_mode & 07777, 0600);
    fw_expect_content(path, FW_SECRET);
    /* an existing file is replaced by a new one renamed over it, not rewritten in place */
    old_umask = umask(077);
    assert_int_equal(kbr_file_write(path, "pem\n", 4, 0644, NULL), KBR_OK);
    umask(old_umask);
    assert_int_equal(lstat(path, &after), 0);
    assert_true(S_ISREG(after.st_mode));
    assert_int_equal(after.st_mode & 07777, 0644);
    assert_true(after.st_ino != before.st_ino);
    fw_expect_content(path, "pem\n");
    assert_int_equal(kbr_file_write_check(path, 0600, NULL), KBR_OK);
    fw_join(path, sizeof(path), dir, "no/such/dir");
    assert_int_equal(kbr_file_write_check(path, 0600, NULL), KBR_ERR_IO);
    assert_int_equal(kbr_file_write(path, "x", 1, 0600, NULL), KBR_ERR_IO);
    assert_int_equal(fw_count_entries(dir), 1);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/*
 * The temporary file's name cannot be guessed and is never opened through
 * what someone else put there: a link planted at the old predictable name
 * would have sent the token into the file it points to.
 */
static void test_file_write_planted_temporary(void **state)
{
    char dir[64], path[128], victim[128], planted[192];

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(path, sizeof(path), dir, "token");
    fw_join(victim, sizeof(victim), dir, "victim");
    assert_int_equal(kbr_file_write(victim, "keep\n", 5, 0644, NULL), KBR_OK);
    snprintf(planted, sizeof(planted), "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(symlink(victim, planted), 0);
    assert_int_equal(kbr_file_write(path, FW_SECRET, strlen(FW_SECRET), 0600, NULL), KBR_OK);
    fw_expect_content(victim, "keep\n");
    fw_expect_content(path, FW_SECRET);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/*
 * A write killed before its rename leaves PATH.tmp.XXXXXX (perhaps a token): the next write of
 * the path removes it once it is a minute old, and leaves a younger one (a write under way), a
 * link, and names that only look alike.
 */
static void test_file_write_removes_leftovers(void **state)
{
    char dir[64], path[128], old[192], young[192], link_old[192], other[192], fd_name[192];
    struct timespec times[2] = {{.tv_sec = 0}, {.tv_sec = 0}};
    struct stat st;
    int fd;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(path, sizeof(path), dir, "token");
    snprintf(old, sizeof(old), "%s.tmp.Ab12Zq", path);
    snprintf(young, sizeof(young), "%s.tmp.Yy34Zz", path);
    snprintf(link_old, sizeof(link_old), "%s.tmp.L1nk00", path);
    snprintf(other, sizeof(other), "%s.tmp.Ab12Zq7", path);
    snprintf(fd_name, sizeof(fd_name), "%s-x.tmp.Ab12Zq", path);
    times[0].tv_sec = times[1].tv_sec = time(NULL) - 3600;
    for (const char *const *f = (const char *const[]){old, young, other, fd_name, NULL}; *f; f++) {
        fd = open(*f, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, FW_SECRET, strlen(FW_SECRET)), (ssize_t)strlen(FW_SECRET));
        if (*f != young)
            assert_int_equal(futimens(fd, times), 0);
        close(fd);
    }
    assert_int_equal(symlink(old, link_old), 0);
    assert_int_equal(utimensat(AT_FDCWD, link_old, times, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(fw_count_entries(dir), 5);
    assert_int_equal(kbr_file_write(path, "pem\n", 4, 0600, NULL), KBR_OK);
    fw_expect_content(path, "pem\n");
    /* the hour-old leftover is gone; the link to it is not a file and stays, dangling */
    assert_int_equal(access(old, F_OK), -1);
    assert_int_equal(lstat(link_old, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    fw_expect_content(young, FW_SECRET);
    fw_expect_content(other, FW_SECRET);
    fw_expect_content(fd_name, FW_SECRET);
    assert_int_equal(fw_count_entries(dir), 5);
    assert_int_equal(kbt_rmtree(dir), 0);
}

static void test_file_write_symlink(void **state)
{
    char dir[64], other[64], link[128], target[128];
    struct stat st;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    assert_int_equal(kbt_tmpdir(other, sizeof(other), "kbr-fw-other"), 0);
    fw_join(target, sizeof(target), other, "file");
    fw_join(link, sizeof(link), dir, "out");
    assert_int_equal(kbr_file_write(target, "theirs\n", 7, 0644, NULL), KBR_OK);
    assert_int_equal(symlink(target, link), 0);
    /* refused: neither the link nor the file in the other directory changes */
    fw_expect_refused(link, "symbolic link");
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    fw_expect_content(target, "theirs\n");
    /* a dangling link is refused too: writing would create the file it names */
    assert_int_equal(unlink(target), 0);
    fw_expect_refused(link, "symbolic link");
    assert_int_equal(lstat(target, &st), -1);
    assert_int_equal(fw_count_entries(dir), 1);
    assert_int_equal(kbt_rmtree(other), 0);
    assert_int_equal(kbt_rmtree(dir), 0);
}

static void test_file_write_directory(void **state)
{
    char dir[64], sub[128];
    struct stat st;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(sub, sizeof(sub), dir, "sub");
    assert_int_equal(mkdir(sub, 0700), 0);
    fw_expect_refused(sub, "is a directory");
    assert_int_equal(lstat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(fw_count_entries(dir), 1);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/* A reader of the FIFO in a child: exit 0 when it read exactly want, then EOF. */
static pid_t fw_fifo_reader(const char *fifo, const char *want)
{
    pid_t pid = fork();
    char buf[256];
    size_t got = 0;
    ssize_t n;
    int fd;

    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    alarm(10); /* a writer that never comes must not hang the suite */
    fd = open(fifo, O_RDONLY);
    if (fd < 0)
        _exit(2);
    while ((n = read(fd, buf + got, sizeof(buf) - got)) > 0)
        got += (size_t)n;
    _exit(n == 0 && got == strlen(want) && memcmp(buf, want, got) == 0 ? 0 : 1);
}

static void test_file_write_fifo(void **state)
{
    char dir[64], fifo[128];
    struct stat st;
    pid_t reader;
    kbr_err err;
    bool still_fifo;
    int status = 0;
    kbr_msg msg;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(fifo, sizeof(fifo), dir, "pipe");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    reader = fw_fifo_reader(fifo, FW_SECRET);
    err = kbr_file_write(fifo, FW_SECRET, strlen(FW_SECRET), 0600, NULL);
    still_fifo = lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode);
    /* a FIFO replaced by a file leaves the reader waiting for a writer that never comes */
    if (!still_fifo)
        kill(reader, SIGKILL);
    assert_int_equal(waitpid(reader, &status, 0), reader);
    assert_int_equal(err, KBR_OK);
    assert_true(still_fifo);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(kbr_file_write_check(fifo, 0600, NULL), KBR_OK);
    /*
     * Whoever opens a FIFO first reads what is written: a secret goes only
     * into one nobody else may open. The reader stands by in case it does.
     */
    assert_int_equal(chmod(fifo, 0644), 0);
    reader = fw_fifo_reader(fifo, FW_SECRET);
    memset(&msg, 0, sizeof(msg));
    err = kbr_file_write(fifo, FW_SECRET, strlen(FW_SECRET), 0600, &msg);
    kill(reader, SIGKILL);
    assert_int_equal(waitpid(reader, &status, 0), reader);
    assert_int_equal(err, KBR_ERR_IO);
    assert_non_null(strstr(msg.text, "other users may read from this FIFO"));
    fw_expect_refused(fifo, "other users may read from this FIFO");
    /* another user's FIFO may be there to catch the token (root can hand it over to test this) */
    if (geteuid() == 0) {
        assert_int_equal(chown(fifo, 65534, 65534), 0);
        fw_expect_refused(fifo, "belongs to uid 65534");
    }
    assert_int_equal(fw_count_entries(dir), 1);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/* Only what cannot harm the machine: /dev/null takes the write and stays the device it was. */
static void test_file_write_dev_null(void **state)
{
    struct stat before, after;

    (void)state;
    assert_int_equal(lstat("/dev/null", &before), 0);
    assert_true(S_ISCHR(before.st_mode));
    assert_int_equal(kbr_file_write("/dev/null", FW_SECRET, strlen(FW_SECRET), 0600, NULL), KBR_OK);
    assert_int_equal(lstat("/dev/null", &after), 0);
    assert_true(S_ISCHR(after.st_mode));
    assert_int_equal(after.st_rdev, before.st_rdev);
    assert_int_equal(after.st_ino, before.st_ino);
    assert_int_equal(after.st_mode, before.st_mode);
    assert_int_equal(kbr_file_write_check("/dev/null", 0600, NULL), KBR_OK);
}

/* "-" is standard output, not a file of that name in the working directory. */
static void test_file_write_stdout(void **state)
{
    char dir[64], cwd[4096], buf[64];
    int fds[2], saved;
    ssize_t n;
    kbr_err err;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fds[1], STDOUT_FILENO), STDOUT_FILENO);
    err = kbr_file_write("-", "on stdout\n", 10, 0600, NULL);
    assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
    close(saved);
    close(fds[1]);
    n = read(fds[0], buf, sizeof(buf));
    close(fds[0]);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(err, KBR_OK);
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "on stdout\n", 10);
    assert_int_equal(fw_count_entries(dir), 0);
    assert_int_equal(kbt_rmtree(dir), 0);
}

static void test_errors(void **state)
{
    kbr_msg m = {{0}};

    (void)state;
    for (int e = 0; e < KBR_ERR__COUNT; e++)
        assert_string_not_equal(kbr_err_str((kbr_err)e), "unknown error");
    assert_string_equal(kbr_err_str((kbr_err)999), "unknown error");
    assert_int_equal(kbr_fail(&m, KBR_ERR_BAD_REQUEST, "digest: %d bytes", 31),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(m.text, "digest: 31 bytes");
    assert_int_equal(kbr_fail(NULL, KBR_ERR_CONFLICT, "x"), KBR_ERR_CONFLICT);
}

/* One table for every error: each has its status and code, the daemon's answer reads back to
 * the class it was shown as, and the codes are the API's. */
static void test_api_errors(void **state)
{
    static const char *const codes[] = {"bad_request",     "unauthenticated", "forbidden",
                                        "not_found",       "conflict",        "too_large",
                                        "quota_exhausted", "rate_limited",    "audit_unavailable",
                                        "hsm_unavailable", "internal_error",  NULL};

    (void)state;
    assert_int_equal(kbr_err_http_status(KBR_OK), 200);
    assert_null(kbr_err_api_code(KBR_OK));
    for (int e = 1; e < KBR_ERR__COUNT; e++) {
        const char *code = kbr_err_api_code((kbr_err)e);
        int status = kbr_err_http_status((kbr_err)e);
        bool listed = false;

        assert_non_null(code);
        for (size_t i = 0; codes[i] != NULL; i++)
            listed = listed || strcmp(codes[i], code) == 0;
        if (!listed)
            fail_msg("%s: code %s is not one of the API's", kbr_err_str((kbr_err)e), code);
        assert_in_range(status, 400, 599);
        assert_int_equal(kbr_err_from_api(status, code), kbr_err_public((kbr_err)e));
        assert_int_equal(kbr_err_public(kbr_err_public((kbr_err)e)), kbr_err_public((kbr_err)e));
    }
    /* what must never be told as something else */
    assert_string_equal(kbr_err_api_code(KBR_ERR_HSM_PIN), "hsm_unavailable");
    assert_string_equal(kbr_err_api_code(KBR_ERR_STORE), "audit_unavailable");
    assert_int_equal(kbr_err_http_status(KBR_ERR_INTERNAL), 500);
    assert_string_equal(kbr_err_api_code(KBR_ERR_NOMEM), "internal_error");
    assert_int_equal(kbr_err_http_status((kbr_err)KBR_ERR__COUNT), 500);
    /* the client's side: a 429 is told apart by its code, an unknown code by its status */
    assert_int_equal(kbr_err_from_api(429, "rate_limited"), KBR_ERR_RATE_LIMITED);
    assert_int_equal(kbr_err_from_api(429, "quota_exhausted"), KBR_ERR_QUOTA);
    assert_int_equal(kbr_err_from_api(503, "hsm_unavailable"), KBR_ERR_HSM);
    assert_int_equal(kbr_err_from_api(503, "something_new"), KBR_ERR_AUDIT);
    assert_int_equal(kbr_err_from_api(418, "teapot"), KBR_ERR_INTERNAL);
}

/* The one name alphabet and the one scope rule (common/names.c). */
/* The patterns that reach a name are exactly those kbr_name_matches says match it. */
static void test_patterns_reaching(void **state)
{
    static const char *const names[] = {"ab", "fw-gw", "k\xc3\xa9y", "x"};
    char *text = NULL;

    (void)state;
    assert_int_equal(kbr_name_patterns_reaching("ab", &text), KBR_OK);
    assert_string_equal(text, "[\"ab\",\"*\",\"a*\",\"ab*\"]");
    free(text);
    /* a prefix never ends inside a UTF-8 character */
    assert_int_equal(kbr_name_patterns_reaching("k\xc3\xa9", &text), KBR_OK);
    assert_string_equal(text, "[\"k\xc3\xa9\",\"*\",\"k*\",\"k\xc3\xa9*\"]");
    free(text);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        json_t *arr;
        const json_t *v;
        size_t k;

        assert_int_equal(kbr_name_patterns_reaching(names[i], &text), KBR_OK);
        arr = json_loads(text, 0, NULL);
        assert_non_null(arr);
        json_array_foreach(arr, k, v)
        {
            assert_true(kbr_name_matches(json_string_value(v), names[i]));
        }
        /* and every pattern that matches is there: a name of n bytes has n + 2 */
        assert_int_equal(json_array_size(arr),
                         strlen(names[i]) + 2 - (strchr(names[i], '\xc3') != NULL ? 1 : 0));
        json_decref(arr);
        free(text);
    }
}

static void test_names(void **state)
{
    char long_name[KBR_NAME_MAX + 2];

    (void)state;
    assert_true(kbr_name_valid("fw-door_2.1:eu@acme+x"));
    assert_false(kbr_name_valid(""));
    assert_false(kbr_name_valid("."));
    assert_false(kbr_name_valid(".."));
    assert_true(kbr_name_valid("..."));
    assert_false(kbr_name_valid("a/b")); /* a name is a path segment */
    assert_false(kbr_name_valid("a b"));
    assert_false(kbr_name_valid("a*"));
    assert_false(kbr_name_valid("caf\xc3\xa9"));
    memset(long_name, 'a', sizeof(long_name));
    long_name[KBR_NAME_MAX] = '\0';
    assert_true(kbr_name_valid(long_name));
    long_name[KBR_NAME_MAX] = 'a';
    long_name[KBR_NAME_MAX + 1] = '\0';
    assert_false(kbr_name_valid(long_name));
    /* a principal's name may be shaped like a path */
    assert_true(kbr_principal_name_valid("acme/firmware", 13));
    assert_false(kbr_principal_name_valid("acme firmware", 13));
    assert_false(kbr_principal_name_valid("", 0));
    /* patterns: a name, or a prefix and '*' */
    assert_true(kbr_name_pattern_valid("*", 1));
    assert_true(kbr_name_pattern_valid("door-*", 6));
    assert_false(kbr_name_pattern_valid("do*or", 5));
    assert_false(kbr_name_pattern_valid("a/*", 3));
    assert_true(kbr_name_matches("door", "door"));
    assert_false(kbr_name_matches("door", "door2"));
    assert_true(kbr_name_matches("door*", "door2"));
    assert_true(kbr_name_matches("door*", "door"));
    assert_false(kbr_name_matches("door*", "doo"));
    assert_true(kbr_name_matches("*", "anything"));
    assert_false(kbr_name_matches(NULL, "door"));
    /* one pattern covering another */
    assert_true(kbr_name_pattern_covers("*", "door*"));
    assert_true(kbr_name_pattern_covers("do*", "door*"));
    assert_false(kbr_name_pattern_covers("door*", "do*"));
    assert_false(kbr_name_pattern_covers("door", "door*"));
    assert_true(kbr_name_pattern_covers("door*", "door-1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_canonical_json),
        cmocka_unit_test(test_api_errors),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_patterns_reaching),
        cmocka_unit_test(test_jcs_rfc8785_examples),
        cmocka_unit_test(test_jcs_writer),
        cmocka_unit_test(test_jcs_string_escapes_at_every_offset),
        cmocka_unit_test(test_jcs_numbers),
        cmocka_unit_test(test_jcs_matches_ecmascript),
        cmocka_unit_test(test_json_compact_matches_jansson),
        cmocka_unit_test(test_secret_and_files),
        cmocka_unit_test(test_file_write_regular),
        cmocka_unit_test(test_file_write_planted_temporary),
        cmocka_unit_test(test_file_write_removes_leftovers),
        cmocka_unit_test(test_file_write_symlink),
        cmocka_unit_test(test_file_write_directory),
        cmocka_unit_test(test_file_write_fifo),
        cmocka_unit_test(test_file_write_dev_null),
        cmocka_unit_test(test_file_write_stdout),
        cmocka_unit_test(test_errors),
    };

    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
