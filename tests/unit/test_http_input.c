/*
 * test_http_input.c - the rules keybrokerd applies to what a client sends
 * before a handler reads it: path segments and names, and text echoed into
 * JSON error bodies.  The
 * daemon's sources are not in libkbr, so the files under test are compiled
 * into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../broker/daemon/json.c"
#include "../../broker/daemon/path.c"

static void expect_clean(const char *in, const char *want)
{
    char *out = kbd_utf8_clean(in);
    json_t *j;

    assert_non_null(out);
    if (strcmp(out, want) != 0)
        fail_msg("clean(\"%s\") gave \"%s\", want \"%s\"", in, out, want);
    j = json_string(out);
    assert_non_null(j);
    json_decref(j);
    free(out);
}

#define FFFD "\xef\xbf\xbd"

static void test_utf8_clean(void **state)
{
    (void)state;
    expect_clean("", "");
    expect_clean("plain ascii \x01\x7f", "plain ascii \x01\x7f");
    expect_clean("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91",
                 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91");
    expect_clean("\xff", FFFD);
    expect_clean("a\xff\xfe"
                 "b",
                 "a" FFFD FFFD "b");
    /* cut short, at the end and in the middle */
    expect_clean("caf\xc3", "caf" FFFD);
    expect_clean("\xe2\x82", FFFD FFFD);
    expect_clean("\xe2\x82x", FFFD FFFD "x");
    /* overlong forms, surrogates, past U+10FFFF, a lone continuation byte */
    expect_clean("\xc0\xaf", FFFD FFFD);
    expect_clean("\xe0\x80\xaf", FFFD FFFD FFFD);
    expect_clean("\xed\xa0\x80", FFFD FFFD FFFD);
    expect_clean("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD);
    expect_clean("\x80", FFFD);
    /* the edges that are allowed */
    expect_clean("\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf",
                 "\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf");
}

static void expect_path(const char *raw, const char *named)
{
    kbr_msg m = {{0}};
    kbr_err err = kbd_path_check(raw, &m);

    if (named == NULL && err != KBR_OK)
        fail_msg("\"%s\" refused: %s", raw, m.text);
    if (named != NULL && (err != KBR_ERR_BAD_REQUEST || strstr(m.text, named) == NULL))
        fail_msg("\"%s\": want a refusal naming %s, got %d \"%s\"", raw, named, err, m.text);
}

static void test_path_check(void **state)
{
    (void)state;
    expect_path("/", NULL);
    expect_path("/v1/keys/fw-1", NULL);
    expect_path("/v1/keys/a.b/retire", NULL);
    expect_path("/v1/keys/.../retire", NULL);
    expect_path("/v1/keys/.a/", NULL);
    expect_path("/v1/keys/%41%62%2B%3a%40", NULL);
    expect_path("/v1/keys/%ff", NULL); /* not a name, but that is the handler's to say */
    expect_path("//", NULL);
    expect_path("/v1/keys/a%2fb", "%2F");
    expect_path("/v1/keys/%2F", "%2F");
    expect_path("/v1/keys/a%00", "%00");
    expect_path("/v1/keys/.", "\".\"");
    expect_path("/v1/keys/..", "\"..\"");
    expect_path("/v1/keys/../retire", "\"..\"");
    expect_path("/./v1", "\".\"");
    expect_path("/v1/keys/%2e", "decodes to \".\"");
    expect_path("/v1/keys/%2E%2e", "decodes to \"..\"");
    expect_path("/v1/keys/.%2E", "decodes to \"..\"");
    expect_path("/v1/keys/a%", "percent");
    expect_path("/v1/keys/a%4", "percent");
    expect_path("/v1/keys/a%4/x", "percent");
    expect_path("/v1/keys/a%zz", "percent");
    expect_path("/v1/keys/a%g1", "percent");
}

static void expect_decoded(const char *seg, const char *want)
{
    char *out = kbd_segment_decode(seg, strlen(seg));

    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void test_segment_decode(void **state)
{
    (void)state;
    expect_decoded("fw-1", "fw-1");
    expect_decoded("factory%3Aacme%40x%2b1", "factory:acme@x+1");
    expect_decoded("a+b", "a+b");
    expect_decoded("%c3%A9", "\xc3\xa9");
    expect_decoded("", "");
}

static void test_dot_names_invalid(void **state)
{
    (void)state;
    assert_false(kbd_valid_name("."));
    assert_false(kbd_valid_name(".."));
    assert_false(kbd_valid_name(""));
    assert_false(kbd_valid_name("a/b"));
    assert_true(kbd_valid_name("..."));
    assert_true(kbd_valid_name(".a"));
    assert_true(kbd_valid_name("a.."));
    assert_true(kbd_valid_name("factory:acme@x+1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_path_check),
        cmocka_unit_test(test_segment_decode),
        cmocka_unit_test(test_dot_names_invalid),
    };

    return cmocka_run_group_tests_name("keybrokerd request input", tests, NULL, NULL);
}
