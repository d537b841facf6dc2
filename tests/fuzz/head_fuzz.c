/*
 * head_fuzz.c - what keybrokerd reads of a request before a handler does:
 * request heads and chunk-size lines as the ingress filter frames them
 * (broker/daemon/head.c), the path checks (path.c) and the text cleaning
 * of error messages (json.c), compiled in here because they are private to
 * the daemon.  The input is a request as a client sends it: the head is cut
 * where the filter cuts it (the first blank line after the request line).
 */
#include "../../broker/daemon/kbd.h"

#include "fuzz.h"

static bool within(const char *p, size_t n, const uint8_t *data, size_t size)
{
    return p >= (const char *)data && p + n <= (const char *)data + size;
}

/* Where the filter ends the head: after the first empty line; the first line may be that one. */
static size_t head_end(const uint8_t *data, size_t size)
{
    size_t line = 0;

    for (size_t i = 0; i < size; i++) {
        if (data[i] != '\n')
            continue;
        if (i == line || (i == line + 1 && data[line] == '\r'))
            return i + 1;
        line = i + 1;
    }
    return 0;
}

/* An accepted head reads the same way after the filter takes its body away. */
static void check_rewrite(const char *head, size_t len, const kbd_head *h)
{
    char *out = malloc(KBD_HEAD_REWRITE_MAX(len));
    size_t n;
    kbd_head again;

    FUZZ_CHECK(out != NULL);
    n = kbd_head_rewrite(head, len, out);
    FUZZ_CHECK(n <= KBD_HEAD_REWRITE_MAX(len));
    FUZZ_CHECK(kbd_head_parse(out, n, &again) == KBD_HEAD_OK);
    FUZZ_CHECK(!again.chunked && again.length == 0);
    FUZZ_CHECK(again.minor == h->minor && again.method_len == h->method_len &&
               memcmp(again.method, h->method, h->method_len) == 0);
    FUZZ_CHECK(again.target_len == h->target_len &&
               memcmp(again.target, h->target, h->target_len) == 0);
    FUZZ_CHECK((again.authorization == NULL) == (h->authorization == NULL));
    FUZZ_CHECK(h->authorization == NULL ||
               (again.authorization_len == h->authorization_len &&
                memcmp(again.authorization, h->authorization, h->authorization_len) == 0));
    FUZZ_CHECK(memmem(out, n, "\r\nConnection: close\r\n\r\n", 23) == out + n - 23);
    free(out);
}

static void check_head(const uint8_t *data, size_t size)
{
    size_t len = head_end(data, size);
    const char *head = (const char *)data;
    kbd_head h;
    int problem;

    if (len == 0)
        return;
    problem = kbd_head_parse(head, len, &h);
    FUZZ_CHECK(problem >= KBD_HEAD_OK && problem < KBD_HEAD__COUNT);
    FUZZ_CHECK(kbd_head_problem_text(problem) != NULL);
    if (problem != KBD_HEAD_OK)
        return;
    FUZZ_CHECK(within(h.method, h.method_len, data, size) && h.method_len > 0);
    FUZZ_CHECK(within(h.target, h.target_len, data, size) && h.target_len > 0);
    FUZZ_CHECK(memchr(h.target, ' ', h.target_len) == NULL);
    FUZZ_CHECK(h.minor == 0 || h.minor == 1);
    FUZZ_CHECK(!(h.chunked && h.length > 0) && h.length < 1000000000000000000ULL);
    FUZZ_CHECK(h.authorization == NULL || within(h.authorization, h.authorization_len, data, size));
    FUZZ_CHECK(h.authorization == NULL ||
               memchr(h.authorization, '\n', h.authorization_len) == NULL);
    check_rewrite(head, len, &h);
}

/* Every line of the input as a chunk-size line: accepted only as 1 to 15 hex digits. */
static void check_chunk_lines(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        int64_t v = kbd_chunk_size(p, n);
        if (v >= 0) {
            char digits[16];
            FUZZ_CHECK(n >= 1 && n <= 15);
            memcpy(digits, p, n);
            digits[n] = '\0';
            FUZZ_CHECK(strspn(digits, "0123456789abcdefABCDEF") == n);
            FUZZ_CHECK(v == strtoll(digits, NULL, 16));
        }
        p += n + 1;
    }
}

/* A path that passes the checks decodes segment by segment into no "/", NUL, "." or "..". */
static void check_path(const char *s)
{
    kbr_msg msg = {{0}};

    if (kbd_path_check(s, &msg) != KBR_OK) {
        FUZZ_CHECK(strncmp(msg.text, "path segment \"", 14) == 0);
        return;
    }
    while (*s != '\0') {
        size_t n = strcspn(s, "/");
        char *seg = kbd_segment_decode(s, n);
        FUZZ_CHECK(seg != NULL);
        FUZZ_CHECK(strchr(seg, '/') == NULL && strlen(seg) <= n);
        FUZZ_CHECK(strcmp(seg, ".") != 0 && strcmp(seg, "..") != 0);
        free(seg);
        s += n;
        s += *s == '/';
    }
}

/* Cleaned text always makes a JSON string, and text that was UTF-8 comes back as it was. */
static void check_clean(const char *s)
{
    char *clean = kbd_utf8_clean(s);
    json_t *as_is = json_string(s), *j;

    FUZZ_CHECK(clean != NULL);
    j = json_string(clean);
    FUZZ_CHECK(j != NULL);
    FUZZ_CHECK(as_is == NULL || strcmp(clean, s) == 0);
    json_decref(j);
    json_decref(as_is);
    free(clean);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);

    check_head(data, size);
    check_chunk_lines(data, size);
    check_path(s);
    check_clean(s);
    free(s);
    return 0;
}
