/*
 * test_http_input.c - the rules keybrokerd applies to what a client sends
 * before a handler reads it: text echoed into JSON error bodies.  The
 * daemon's sources are not in libkbr, so the files under test are compiled
 * into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../broker/daemon/json.c"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_clean),
    };

    return cmocka_run_group_tests_name("keybrokerd request input", tests, NULL, NULL);
}
