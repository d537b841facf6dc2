/*
 * path.c - the request path, as the client spelled it.
 *
 * Routes are matched on the raw path and only the captured segment is
 * decoded afterwards, so an encoded "/" cannot split a segment in two and
 * an encoded NUL cannot cut a name short: both are refused, as are "." and
 * "..", spelled out or encoded, which a proxy or a later change to the
 * routes could resolve into another resource than the one named.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"

/* How much of a segment a message quotes. */
#define QUOTE_MAX 64

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The byte "%XY" at p stands for, or -1 when p does not hold two hex digits. */
static int escaped_byte(const char *p)
{
    int hi = hex_value(p[1]), lo = hi >= 0 ? hex_value(p[2]) : -1;

    return lo >= 0 ? hi * 16 + lo : -1;
}

/* One segment of len bytes at seg. */
static kbr_err segment_check(const char *seg, size_t len, kbr_msg *msg)
{
    int q = len > QUOTE_MAX ? QUOTE_MAX : (int)len;
    size_t decoded = 0, dots = 0;

    for (size_t i = 0; i < len; i++, decoded++) {
        int c = (unsigned char)seg[i];
        if (c == '%') {
            c = i + 2 < len ? escaped_byte(seg + i) : -1;
            if (c < 0)
                return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "path segment \"%.*s\": malformed percent-encoding", q, seg);
            if (c == '/')
                return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "path segment \"%.*s\": an encoded \"/\" (%%2F) is not allowed", q,
                                seg);
            if (c == 0)
                return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "path segment \"%.*s\": an encoded NUL (%%00) is not allowed", q,
                                seg);
            i += 2;
        }
        dots += c == '.';
    }
    if ((decoded == 1 || decoded == 2) && dots == decoded) {
        if (decoded == len)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "path segment \"%.*s\" is not allowed", q,
                            seg);
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "path segment \"%.*s\" decodes to \"%s\", which is not allowed", q, seg,
                        decoded == 1 ? "." : "..");
    }
    return KBR_OK;
}

kbr_err kbd_path_check(const char *raw, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    while (*raw != '\0') {
        size_t len = strcspn(raw, "/");
        KBR_GUARD(segment_check(raw, len, msg));
        raw += len;
        raw += *raw == '/';
    }
out:
    return err;
}

char *kbd_segment_decode(const char *seg, size_t len)
{
    char *out = malloc(len + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        int c = seg[i] == '%' && i + 2 < len ? escaped_byte(seg + i) : -1;
        if (c < 0) {
            *o++ = seg[i];
            continue;
        }
        *o++ = (char)c;
        i += 2;
    }
    *o = '\0';
    return out;
}
