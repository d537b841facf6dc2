/*
 * test_common.c - the shared encoders, secrets, times and canonical JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    assert_string_equal(ca, "{\"a\":{\"x\":\"\\u00E9\",\"y\":[1,2]},\"b\":1}");
    free(ca);
    free(cb);
    json_decref(a);
    json_decref(b);
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
    assert_int_equal(kbr_file_write(path, "1234\n\n", 6, 0600), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_OK);
    assert_int_equal(s->len, 4);
    assert_true(kbr_secret_equal(s->buf, s->len, "1234", 4));
    assert_false(kbr_secret_equal(s->buf, s->len, "1235", 4));
    assert_false(kbr_secret_equal(s->buf, s->len, "12345", 5));
    kbr_secret_free(s);
    kbr_secret_free(NULL);
    /* an empty PIN file is a configuration error, not an empty PIN */
    assert_int_equal(kbr_file_write(path, "\n", 1, 0600), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_ERR_CONFIG);
    assert_null(s);
    memset(big, 'x', sizeof(big));
    assert_int_equal(kbr_file_write(path, big, sizeof(big), 0600), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_ERR_TOO_LARGE);
    assert_int_equal(kbr_file_read(path, sizeof(big), &data, &n), KBR_OK);
    assert_int_equal(n, sizeof(big));
    free(data);
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(kbr_file_read(path, 10, &data, &n), KBR_ERR_IO);
    assert_int_equal(kbr_file_write("/proc/no/such/file", "x", 1, 0600), KBR_ERR_IO);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_canonical_json),
        cmocka_unit_test(test_secret_and_files),
        cmocka_unit_test(test_errors),
    };

    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
