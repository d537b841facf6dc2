/*
 * head.c - request heads and chunk-size lines, read the way the ingress
 * filter (ingress.c) reads them before libevent does.  Bytes in, facts out.
 *
 * The filter decides on a request before libevent reads its body, so the
 * two must agree on where each request ends, or a body the filter let pass
 * could be read by libevent as a request nobody checked.  The grammar here
 * is a strict subset of what libevent 2.1 accepts, chosen so that libevent
 * frames every head it accepts the same way: one Content-Length of digits
 * only, or one Transfer-Encoding that is exactly "chunked", never both, no
 * folded lines, no control characters, and field values trimmed as
 * libevent trims them (leading spaces, trailing spaces and tabs), so that a
 * value with a leading tab is refused rather than read two ways.  A head
 * outside the subset is refused, never guessed at.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kbd.h"

static const char *const problem_text[KBD_HEAD__COUNT] = {
    [KBD_HEAD_REQUEST_LINE] = "malformed request line",
    [KBD_HEAD_VERSION] = "only HTTP/1.0 and HTTP/1.1 are served",
    [KBD_HEAD_CONTROL] = "control character in the request head",
    [KBD_HEAD_FIELD] = "malformed header field",
    [KBD_HEAD_FOLDED] = "folded header field",
    [KBD_HEAD_LENGTH] = "malformed Content-Length",
    [KBD_HEAD_LENGTHS] = "more than one Content-Length",
    [KBD_HEAD_CODING] = "Transfer-Encoding other than one \"chunked\"",
    [KBD_HEAD_BOTH] = "Content-Length and Transfer-Encoding together",
    [KBD_HEAD_EXPECT] = "Expect other than 100-continue",
    [KBD_HEAD_TOO_LARGE] = "request head too large",
};

const char *kbd_head_problem_text(int problem)
{
    if (problem <= KBD_HEAD_OK || problem >= KBD_HEAD__COUNT)
        return "request refused before its body was read";
    return problem_text[problem];
}

/* The next line of [*p, end) without its end of line ("\n", or "\r\n" as libevent reads it). */
static bool next_line(const char **p, const char *end, const char **line, size_t *len)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));

    if (nl == NULL)
        return false;
    *line = *p;
    *len = (size_t)(nl - *p);
    if (*len > 0 && nl[-1] == '\r')
        (*len)--;
    *p = nl + 1;
    return true;
}

/* RFC 9110 tchar: the characters of methods and field names. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return true;
    }
    return false;
}

static bool equals_ci(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static int parse_request_line(const char *s, size_t len, kbd_head *out)
{
    const char *sp1 = memchr(s, ' ', len), *sp2;
    size_t i;

    if (sp1 == NULL || sp1 == s)
        return KBD_HEAD_REQUEST_LINE;
    for (i = 0; s + i < sp1; i++)
        if (!is_tchar((unsigned char)s[i]))
            return KBD_HEAD_REQUEST_LINE;
    sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - s));
    if (sp2 == NULL || sp2 == sp1 + 1 || memchr(sp2 + 1, ' ', len - (size_t)(sp2 + 1 - s)))
        return KBD_HEAD_REQUEST_LINE;
    if (memchr(sp1 + 1, '\t', (size_t)(sp2 - sp1 - 1)) != NULL)
        return KBD_HEAD_REQUEST_LINE;
    if (len - (size_t)(sp2 + 1 - s) != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return KBD_HEAD_VERSION;
    if (sp2[8] != '0' && sp2[8] != '1')
        return KBD_HEAD_VERSION;
    out->method = s;
    out->method_len = (size_t)(sp1 - s);
    out->target = sp1 + 1;
    out->target_len = (size_t)(sp2 - sp1 - 1);
    out->minor = sp2[8] - '0';
    return KBD_HEAD_OK;
}

static int parse_length(const char *v, size_t len, kbd_head *out)
{
    uint64_t n = 0;

    /* 18 digits cannot overflow libevent's int64 either */
    if (len == 0 || len > 18)
        return KBD_HEAD_LENGTH;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return KBD_HEAD_LENGTH;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    out->length = n;
    return KBD_HEAD_OK;
}

/* One field line: its name must be a token and its value is what libevent will see. */
static int parse_field(const char *s, size_t len, kbd_head *out, bool *seen_length,
                       bool *seen_coding)
{
    const char *colon = memchr(s, ':', len), *v;
    size_t name_len, vlen;

    if (s[0] == ' ' || s[0] == '\t')
        return KBD_HEAD_FOLDED;
    if (colon == NULL || colon == s)
        return KBD_HEAD_FIELD;
    name_len = (size_t)(colon - s);
    for (size_t i = 0; i < name_len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return KBD_HEAD_FIELD;
    v = colon + 1;
    vlen = len - name_len - 1;
    while (vlen > 0 && *v == ' ')
        v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (equals_ci(s, name_len, "Content-Length")) {
        if (*seen_length)
            return KBD_HEAD_LENGTHS;
        *seen_length = true;
        return parse_length(v, vlen, out);
    }
    if (equals_ci(s, name_len, "Transfer-Encoding")) {
        if (*seen_coding || !equals_ci(v, vlen, "chunked"))
            return KBD_HEAD_CODING;
        *seen_coding = true;
        out->chunked = true;
        return KBD_HEAD_OK;
    }
    /* libevent heeds Expect only from HTTP/1.1, and answers anything but 100-continue itself */
    if (equals_ci(s, name_len, "Expect") && out->minor == 1 && !equals_ci(v, vlen, "100-continue"))
        return KBD_HEAD_EXPECT;
    if (equals_ci(s, name_len, "Authorization") && out->authorization == NULL) {
        out->authorization = v;
        out->authorization_len = vlen;
    }
    return KBD_HEAD_OK;
}

int kbd_head_parse(const char *head, size_t len, kbd_head *out)
{
    const char *p = head, *end = head + len, *line = NULL;
    bool seen_length = false, seen_coding = false;
    size_t n = 0;
    int problem;

    memset(out, 0, sizeof(*out));
    if (!next_line(&p, end, &line, &n) || has_control(line, n))
        return n > 0 ? KBD_HEAD_CONTROL : KBD_HEAD_REQUEST_LINE;
    problem = parse_request_line(line, n, out);
    while (problem == KBD_HEAD_OK) {
        if (!next_line(&p, end, &line, &n))
            return KBD_HEAD_FIELD; /* the caller passes a head that ends in a blank line */
        if (n == 0)
            break;
        problem = has_control(line, n) ? KBD_HEAD_CONTROL
                                       : parse_field(line, n, out, &seen_length, &seen_coding);
    }
    if (problem == KBD_HEAD_OK && seen_length && seen_coding)
        problem = KBD_HEAD_BOTH;
    return problem;
}

/* Fields a refused head loses: the framing it announced, and a marker only the filter may set. */
static bool is_framing(const char *name, size_t len)
{
    static const char *const framing[] = {"Content-Length", "Transfer-Encoding",
                                          "Expect",         "Connection",
                                          "Keep-Alive",     KBD_INGRESS_HEADER};

    for (size_t i = 0; i < sizeof(framing) / sizeof(framing[0]); i++)
        if (equals_ci(name, len, framing[i]))
            return true;
    return false;
}

size_t kbd_head_rewrite(const char *head, size_t len, char *out)
{
    static const char tail[] = "Content-Length: 0\r\nConnection: close\r\n\r\n";
    const char *p = head, *end = head + len, *line;
    size_t n, o = 0;
    bool first = true;

    while (next_line(&p, end, &line, &n) && n > 0) {
        const char *colon = memchr(line, ':', n);
        if (!first && colon != NULL && is_framing(line, (size_t)(colon - line)))
            continue;
        memcpy(out + o, line, n);
        memcpy(out + o + n, "\r\n", 2);
        o += n + 2;
        first = false;
    }
    memcpy(out + o, tail, sizeof(tail) - 1);
    return o + sizeof(tail) - 1;
}

int64_t kbd_chunk_size(const char *line, size_t len)
{
    int64_t n = 0;

    /* 15 hex digits cannot overflow libevent's int64 */
    if (len == 0 || len > 15)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = line[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0)
            return -1;
        n = n * 16 + v;
    }
    return n;
}
