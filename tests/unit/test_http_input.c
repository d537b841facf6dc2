/*
 * test_http_input.c - the rules keybrokerd applies to what a client sends
 * before a handler reads it: request heads and chunk-size lines as the
 * ingress filter frames them, path segments and names, and text echoed into
 * JSON error bodies.  The
 * daemon's sources are not in libkbr, so the files under test are compiled
 * into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../broker/daemon/kbd.h"

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
    assert_false(kbr_name_valid("."));
    assert_false(kbr_name_valid(".."));
    assert_false(kbr_name_valid(""));
    assert_false(kbr_name_valid("a/b"));
    assert_true(kbr_name_valid("..."));
    assert_true(kbr_name_valid(".a"));
    assert_true(kbr_name_valid("a.."));
    assert_true(kbr_name_valid("factory:acme@x+1"));
}

static int parse(const char *head, kbd_head *h)
{
    return kbd_head_parse(head, strlen(head), h);
}

static void expect_problem(const char *head, int problem)
{
    kbd_head h;
    int got = parse(head, &h);

    if (got != problem)
        fail_msg("head \"%s\": problem %d (%s), want %d (%s)", head, got,
                 kbd_head_problem_text(got), problem, kbd_head_problem_text(problem));
}

static void test_head_framing(void **state)
{
    kbd_head h;

    (void)state;
    assert_int_equal(parse("POST /v1/sign?x=1 HTTP/1.1\r\nHost: k\r\nContent-Length: 42\r\n"
                           "Authorization:   Bearer abc \t\r\n\r\n",
                           &h),
                     KBD_HEAD_OK);
    assert_int_equal(h.method_len, 4);
    assert_memory_equal(h.method, "POST", 4);
    assert_int_equal(h.target_len, strlen("/v1/sign?x=1"));
    assert_memory_equal(h.target, "/v1/sign?x=1", h.target_len);
    assert_int_equal(h.minor, 1);
    assert_false(h.chunked);
    assert_int_equal(h.length, 42);
    /* trimmed as libevent trims: leading spaces, trailing spaces and tabs */
    assert_int_equal(h.authorization_len, strlen("Bearer abc"));
    assert_memory_equal(h.authorization, "Bearer abc", h.authorization_len);

    /* bare line feeds, HTTP/1.0, chunked in any case, the first Authorization */
    assert_int_equal(parse("GET / HTTP/1.0\ntransfer-encoding: Chunked\nAuthorization: a\n"
                           "Authorization: b\n\n",
                           &h),
                     KBD_HEAD_OK);
    assert_int_equal(h.minor, 0);
    assert_true(h.chunked);
    assert_int_equal(h.length, 0);
    assert_memory_equal(h.authorization, "a", 1);
    /* no body announced */
    assert_int_equal(parse("GET /v1/health HTTP/1.1\r\n\r\n", &h), KBD_HEAD_OK);
    assert_false(h.chunked);
    assert_int_equal(h.length, 0);
    assert_null(h.authorization);
    /* Expect is libevent's business only from HTTP/1.1 on */
    assert_int_equal(parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n", &h), KBD_HEAD_OK);
    assert_int_equal(parse("POST / HTTP/1.0\r\nExpect: anything\r\n\r\n", &h), KBD_HEAD_OK);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 000123456789012345678\r\n\r\n", &h),
                     KBD_HEAD_LENGTH);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 123456789012345678\r\n\r\n", &h),
                     KBD_HEAD_OK);
    assert_int_equal(h.length, 123456789012345678ULL);
}

static void test_head_refusals(void **state)
{
    (void)state;
    expect_problem("\r\n", KBD_HEAD_REQUEST_LINE);
    expect_problem("GET\r\n\r\n", KBD_HEAD_REQUEST_LINE);
    expect_problem("GET /\r\n\r\n", KBD_HEAD_REQUEST_LINE);
    expect_problem("GET  / HTTP/1.1\r\n\r\n", KBD_HEAD_REQUEST_LINE);
    expect_problem("GET / HTTP/1.1 \r\n\r\n", KBD_HEAD_REQUEST_LINE);
    expect_problem("GET /a b HTTP/1.1\r\n\r\n", KBD_HEAD_REQUEST_LINE);
    expect_problem("G(T / HTTP/1.1\r\n\r\n", KBD_HEAD_REQUEST_LINE);
    expect_problem("GET / HTTP/2.0\r\n\r\n", KBD_HEAD_VERSION);
    expect_problem("GET / HTTP/1.2\r\n\r\n", KBD_HEAD_VERSION);
    expect_problem("GET / http/1.1\r\n\r\n", KBD_HEAD_VERSION);
    expect_problem("GET /\x01 HTTP/1.1\r\n\r\n", KBD_HEAD_CONTROL);
    expect_problem("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", KBD_HEAD_CONTROL);
    expect_problem("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", KBD_HEAD_CONTROL);
    expect_problem("GET / HTTP/1.1\r\nNo colon\r\n\r\n", KBD_HEAD_FIELD);
    expect_problem("GET / HTTP/1.1\r\n: empty name\r\n\r\n", KBD_HEAD_FIELD);
    expect_problem("GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", KBD_HEAD_FIELD);
    expect_problem("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", KBD_HEAD_FOLDED);
    expect_problem("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", KBD_HEAD_FOLDED);
    expect_problem("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", KBD_HEAD_LENGTH);
    expect_problem("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", KBD_HEAD_LENGTH);
    expect_problem("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n", KBD_HEAD_LENGTH);
    expect_problem("POST / HTTP/1.1\r\nContent-Length: \t5\r\n\r\n", KBD_HEAD_LENGTH);
    expect_problem("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", KBD_HEAD_LENGTH);
    expect_problem("POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", KBD_HEAD_LENGTH);
    expect_problem("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
                   KBD_HEAD_LENGTHS);
    expect_problem("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", KBD_HEAD_CODING);
    expect_problem("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", KBD_HEAD_CODING);
    expect_problem("POST / HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n", KBD_HEAD_CODING);
    expect_problem("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n",
                   KBD_HEAD_CODING);
    expect_problem("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                   KBD_HEAD_BOTH);
    expect_problem("POST / HTTP/1.1\r\nExpect: 100-continue-please\r\n\r\n", KBD_HEAD_EXPECT);
    assert_string_equal(kbd_head_problem_text(KBD_HEAD_BOTH),
                        "Content-Length and Transfer-Encoding together");
    assert_non_null(kbd_head_problem_text(99));
}

static void test_head_rewrite(void **state)
{
    static const char head[] = "POST /v1/sign HTTP/1.1\r\nHost: k\r\nContent-Length: 1048576\r\n"
                               "expect: 100-continue\r\nAuthorization: Bearer t\r\n"
                               "Connection: keep-alive\nKeep-Alive: 5\r\n"
                               "X-Keybroker-Ingress: 1\r\nX-Other: v\n\r\n";
    char out[KBD_HEAD_REWRITE_MAX(sizeof(head))];
    size_t n;
    kbd_head h;

    (void)state;
    assert_int_equal(parse(head, &h), KBD_HEAD_OK);
    n = kbd_head_rewrite(head, strlen(head), out);
    out[n] = '\0';
    assert_string_equal(out, "POST /v1/sign HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer t\r\n"
                             "X-Other: v\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    /* what it gives reads as a head without a body */
    assert_int_equal(kbd_head_parse(out, n, &h), KBD_HEAD_OK);
    assert_false(h.chunked);
    assert_int_equal(h.length, 0);
    assert_memory_equal(h.authorization, "Bearer t", h.authorization_len);
}

static void test_chunk_size(void **state)
{
    (void)state;
    assert_int_equal(kbd_chunk_size("0", 1), 0);
    assert_int_equal(kbd_chunk_size("1a", 2), 26);
    assert_int_equal(kbd_chunk_size("00FF", 4), 255);
    assert_int_equal(kbd_chunk_size("fffffffffffffff", 15), 0xfffffffffffffffLL);
    assert_int_equal(kbd_chunk_size("1000000000000000", 16), -1);
    assert_int_equal(kbd_chunk_size("", 0), -1);
    assert_int_equal(kbd_chunk_size("1a;ext=1", 8), -1);
    assert_int_equal(kbd_chunk_size("1a ", 3), -1);
    assert_int_equal(kbd_chunk_size(" 1a", 3), -1);
    assert_int_equal(kbd_chunk_size("0x1a", 4), -1);
    assert_int_equal(kbd_chunk_size("-1", 2), -1);
    assert_int_equal(kbd_chunk_size("+1", 2), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_clean),     cmocka_unit_test(test_path_check),
        cmocka_unit_test(test_segment_decode), cmocka_unit_test(test_dot_names_invalid),
        cmocka_unit_test(test_head_framing),   cmocka_unit_test(test_head_refusals),
        cmocka_unit_test(test_head_rewrite),   cmocka_unit_test(test_chunk_size),
    };

    return cmocka_run_group_tests_name("keybrokerd request input", tests, NULL, NULL);
}
