/*
 * jcs.c - the JSON Canonicalization Scheme (RFC 8785): the one text of a
 * JSON value that anyone can recompute, whatever library they parse with.
 *
 * What JCS fixes: no whitespace; object members sorted by their names as
 * UTF-16 code units (not as UTF-8 bytes: the two orders differ once a name
 * holds a character above U+FFFF); strings with only the escapes JSON needs
 * (quote, backslash, and the controls below U+0020, the five named ones in
 * their short form) and everything else as UTF-8; numbers as ECMAScript
 * writes a double (Number.prototype.toString).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbr_common.h"

typedef kbr_jcs_buf out_buf;

/* Room for n more bytes and the terminating NUL; false once out of memory. */
static bool grow(out_buf *b, size_t n)
{
    size_t cap = b->cap > 0 ? b->cap : 256;
    char *bigger;

    if (b->failed)
        return false;
    while (cap < b->len + n + 1)
        cap *= 2;
    if (b->wipe) {
        /* no copy of what was written is left behind in the allocator's free memory */
        bigger = malloc(cap);
        if (bigger != NULL && b->data != NULL) {
            memcpy(bigger, b->data, b->len + 1);
            explicit_bzero(b->data, b->cap);
            free(b->data);
        }
    } else {
        bigger = realloc(b->data, cap);
    }
    if (bigger == NULL) {
        b->failed = true;
        return false;
    }
    b->data = bigger;
    b->cap = cap;
    return true;
}

static inline bool reserve(out_buf *b, size_t n)
{
    return (b->len + n < b->cap && !b->failed) || grow(b, n);
}

static inline void put(out_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* One character: most of a canonical text's punctuation. */
static inline void put1(out_buf *b, char c)
{
    if (!reserve(b, 1))
        return;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

static void puts_(out_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* ---- strings ---- */

bool kbr_utf8_valid(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* Hex digits of a \u00XX escape: RFC 8785's lower case, or jansson's upper case. */
static const char lower_hex[] = "0123456789abcdef", upper_hex[] = "0123456789ABCDEF";

/* The escape of a byte that needs one (RFC 8785 3.2.2.2), or NULL: '"', '\\' and controls. */
static const char *escape_of(unsigned char c, char u[7], const char *hex)
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        if (c >= 0x20)
            return NULL;
        memcpy(u, "\\u00", 4);
        u[4] = hex[c >> 4];
        u[5] = hex[c & 0xf];
        u[6] = '\0';
        return u;
    }
}

static inline bool plain(unsigned char c)
{
    return c >= 0x20 && c != '"' && c != '\\';
}

/* Most strings need no escape: copied whole; the others in runs of plain bytes. */
static void put_string_hex(out_buf *b, const char *s, size_t n, const char *hex)
{
    size_t run = 0, i = 0;

    while (i < n && plain((unsigned char)s[i]))
        i++;
    if (i == n) {
        if (!reserve(b, n + 2))
            return;
        b->data[b->len] = '"';
        memcpy(b->data + b->len + 1, s, n);
        b->len += n + 2;
        b->data[b->len - 1] = '"';
        b->data[b->len] = '\0';
        return;
    }
    put1(b, '"');
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc;
        char u[7];

        if (plain(c))
            continue;
        esc = escape_of(c, u, hex);
        put(b, s + run, i - run);
        puts_(b, esc);
        run = i + 1;
    }
    put(b, s + run, n - run);
    put1(b, '"');
}

static void put_string(out_buf *b, const char *s, size_t n)
{
    put_string_hex(b, s, n, lower_hex);
}

/* ---- numbers ---- */

/*
 * ECMAScript's Number::toString for a finite double: the shortest digits that read back as
 * x (the correctly rounded ones, so the closest), then fixed or exponent notation by the
 * position of the decimal point.  KBR_ERR_BAD_REQUEST for NaN and infinities, which JSON
 * cannot hold.
 */
static kbr_err put_double(out_buf *b, double x)
{
    char buf[40], digits[20], out[64];
    int k = 0, n, exp10 = 0, pos = 0;
    const char *e;

    if (!isfinite(x))
        return KBR_ERR_BAD_REQUEST;
    if (x == 0) {
        puts_(b, "0"); /* -0 too */
        return KBR_OK;
    }
    if (x < 0) {
        put(b, "-", 1);
        x = -x;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof(buf), "%.*e", p - 1, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    /* buf is d[.ddd]e[+-]XX */
    for (const char *c = buf; *c != 'e'; c++)
        if (*c >= '0' && *c <= '9')
            digits[k++] = *c;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    e = strchr(buf, 'e');
    exp10 = atoi(e + 1);
    n = exp10 + 1; /* x = 0.d1d2...dk * 10^n */
    if (k <= n && n <= 21) {
        memcpy(out, digits, (size_t)k);
        pos = k;
        while (pos < n)
            out[pos++] = '0';
    } else if (0 < n && n < k) {
        /* n < k <= 17 here: the point falls inside the digits (ECMAScript's 0 < n <= 21) */
        memcpy(out, digits, (size_t)n);
        out[n] = '.';
        memcpy(out + n + 1, digits + n, (size_t)(k - n));
        pos = k + 1;
    } else if (-6 < n && n <= 0) {
        memcpy(out, "0.", 2);
        pos = 2;
        for (int i = 0; i < -n; i++)
            out[pos++] = '0';
        memcpy(out + pos, digits, (size_t)k);
        pos += k;
    } else {
        out[pos++] = digits[0];
        if (k > 1) {
            out[pos++] = '.';
            memcpy(out + pos, digits + 1, (size_t)(k - 1));
            pos += k - 1;
        }
        pos += snprintf(out + pos, sizeof(out) - (size_t)pos, "e%c%d", n - 1 < 0 ? '-' : '+',
                        abs(n - 1));
    }
    put(b, out, (size_t)pos);
    return KBR_OK;
}

/* An integer is a double to JCS: beyond 2^53 it would not read back as itself. */
static kbr_err put_integer(out_buf *b, json_int_t v)
{
    char buf[32];

    if (v > (json_int_t)1 << 53 || v < -((json_int_t)1 << 53))
        return put_double(b, (double)v);
    snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, v);
    puts_(b, buf);
    return KBR_OK;
}

/* ---- objects ---- */

/* The next UTF-16 code unit of s (UTF-8, valid: jansson checked it), advancing *i. */
static unsigned next_unit(const unsigned char *s, size_t n, size_t *i, unsigned *low)
{
    unsigned cp;

    if (*low != 0) {
        cp = *low;
        *low = 0;
        return cp;
    }
    if (s[*i] < 0x80)
        cp = s[(*i)++];
    else if ((s[*i] & 0xe0) == 0xc0 && *i + 1 < n) {
        cp = ((s[*i] & 0x1fu) << 6) | (s[*i + 1] & 0x3fu);
        *i += 2;
    } else if ((s[*i] & 0xf0) == 0xe0 && *i + 2 < n) {
        cp = ((s[*i] & 0x0fu) << 12) | ((s[*i + 1] & 0x3fu) << 6) | (s[*i + 2] & 0x3fu);
        *i += 3;
    } else if (*i + 3 < n) {
        cp = ((s[*i] & 0x07u) << 18) | ((s[*i + 1] & 0x3fu) << 12) | ((s[*i + 2] & 0x3fu) << 6) |
             (s[*i + 3] & 0x3fu);
        *i += 4;
    } else {
        cp = s[(*i)++];
    }
    if (cp >= 0x10000) {
        cp -= 0x10000;
        *low = 0xdc00 + (cp & 0x3ff);
        return 0xd800 + (cp >> 10);
    }
    return cp;
}

/* Names compared as sequences of UTF-16 code units, as RFC 8785 3.2.3 sorts them. */
static int utf16_cmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    size_t xn = strlen(a), yn = strlen(b), i = 0, j = 0;
    unsigned xl = 0, yl = 0;

    while ((i < xn || xl != 0) && (j < yn || yl != 0)) {
        unsigned cx = next_unit(x, xn, &i, &xl), cy = next_unit(y, yn, &j, &yl);
        if (cx != cy)
            return cx < cy ? -1 : 1;
    }
    if (i < xn || xl != 0)
        return 1;
    return j < yn || yl != 0 ? -1 : 0;
}

/*
 * UTF-8 bytes sort as code points, and code points sort as UTF-16 units except a character
 * from U+E000 to U+FFFF (lead byte 0xee or 0xef) against one above U+FFFF (lead 0xf0 to 0xf4),
 * whose surrogates sort first.  So the bytes decide unless the first difference is there.
 */
static int by_name(const void *a, const void *b)
{
    const unsigned char *x = *(const unsigned char *const *)a;
    const unsigned char *y = *(const unsigned char *const *)b;
    size_t i = 0;

    while (x[i] != '\0' && x[i] == y[i])
        i++;
    if (x[i] >= 0xee && y[i] >= 0xee)
        return utf16_cmp((const char *)x, (const char *)y);
    return x[i] == y[i] ? 0 : x[i] < y[i] ? -1 : 1;
}

/*
 * The two texts written from a tree: RFC 8785's (JCS), or the compact one json_dumps
 * writes (members in their own order, controls as upper-case \u00XX, numbers as jansson
 * writes them).
 */
typedef enum { TEXT_JCS, TEXT_COMPACT } text_style;

static kbr_err put_value(out_buf *b, const json_t *v, int depth, text_style style);

/* A member: its name first, so by_name sorts members as it sorts names. */
typedef struct {
    const char *name;
    const json_t *value;
} member_ref;

static kbr_err put_sorted_object(out_buf *b, const json_t *v, int depth)
{
    kbr_err err = KBR_OK;
    size_t n = json_object_size(v), i = 0;
    member_ref *m = calloc(n > 0 ? n : 1, sizeof(*m));
    const char *name;
    json_t *member;

    KBR_ENSURE(m != NULL, KBR_ERR_NOMEM);
    json_object_foreach((json_t *)v, name, member)
    {
        m[i].name = name;
        m[i++].value = member;
    }
    qsort(m, n, sizeof(*m), by_name);
    put1(b, '{');
    for (i = 0; i < n; i++) {
        if (i > 0)
            put1(b, ',');
        put_string(b, m[i].name, strlen(m[i].name));
        put1(b, ':');
        KBR_GUARD(put_value(b, m[i].value, depth + 1, TEXT_JCS));
    }
    put1(b, '}');
out:
    free(m);
    return err;
}

/* What json_dumps writes a string as; it refuses one that is not UTF-8. */
static kbr_err put_compact_string(out_buf *b, const char *s, size_t n)
{
    if (!kbr_utf8_valid(s, n))
        return KBR_ERR_BAD_REQUEST;
    put_string_hex(b, s, n, upper_hex);
    return KBR_OK;
}

static kbr_err put_ordered_object(out_buf *b, const json_t *v, int depth)
{
    kbr_err err = KBR_OK;

    put1(b, '{');
    for (void *first = json_object_iter((json_t *)v), *it = first; it != NULL;
         it = json_object_iter_next((json_t *)v, it)) {
        if (it != first)
            put1(b, ',');
        KBR_GUARD(put_compact_string(b, json_object_iter_key(it), json_object_iter_key_len(it)));
        put1(b, ':');
        KBR_GUARD(put_value(b, json_object_iter_value(it), depth + 1, TEXT_COMPACT));
    }
    put1(b, '}');
out:
    return err;
}

/* jansson's own digits for a real: rare in an answer, and they are the ones to match. */
static kbr_err put_jansson_number(out_buf *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

    if (text == NULL)
        return KBR_ERR_BAD_REQUEST;
    puts_(b, text);
    free(text);
    return KBR_OK;
}

/* Deeper than any value the broker makes; bounds the recursion on a hostile document. */
#define JCS_MAX_DEPTH 128

static kbr_err put_value(out_buf *b, const json_t *v, int depth, text_style style)
{
    kbr_err err = KBR_OK;
    size_t i;
    json_t *item;

    KBR_ENSURE(depth <= JCS_MAX_DEPTH, KBR_ERR_BAD_REQUEST);
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        KBR_GUARD(style == TEXT_JCS ? put_sorted_object(b, v, depth)
                                    : put_ordered_object(b, v, depth));
        break;
    case JSON_ARRAY:
        put1(b, '[');
        json_array_foreach(v, i, item)
        {
            if (i > 0)
                put1(b, ',');
            KBR_GUARD(put_value(b, item, depth + 1, style));
        }
        put1(b, ']');
        break;
    case JSON_STRING:
        if (style == TEXT_JCS)
            put_string(b, json_string_value(v), json_string_length(v));
        else
            KBR_GUARD(put_compact_string(b, json_string_value(v), json_string_length(v)));
        break;
    case JSON_INTEGER:
        if (style == TEXT_JCS) {
            KBR_GUARD(put_integer(b, json_integer_value(v)));
        } else {
            char buf[32];

            snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            puts_(b, buf);
        }
        break;
    case JSON_REAL:
        KBR_GUARD(style == TEXT_JCS ? put_double(b, json_real_value(v)) : put_jansson_number(b, v));
        break;
    case JSON_TRUE:
        puts_(b, "true");
        break;
    case JSON_FALSE:
        puts_(b, "false");
        break;
    case JSON_NULL:
        puts_(b, "null");
        break;
    }
out:
    return err;
}

kbr_err kbr_json_canonical(const json_t *v, char **out)
{
    kbr_err err = KBR_OK;
    out_buf b = {0};

    *out = NULL;
    KBR_ENSURE(v != NULL, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(put_value(&b, v, 0, TEXT_JCS));
    KBR_ENSURE(!b.failed && b.data != NULL, KBR_ERR_NOMEM);
    *out = b.data;
    b.data = NULL;
out:
    free(b.data);
    return err;
}

/* ---- the compact text, members in their own order ---- */

kbr_err kbr_json_compact(const json_t *v, char **out, size_t *len)
{
    kbr_err err = KBR_OK;
    out_buf b = {.wipe = true};

    *out = NULL;
    *len = 0;
    KBR_ENSURE(json_is_object(v) || json_is_array(v), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(put_value(&b, v, 0, TEXT_COMPACT));
    KBR_ENSURE(!b.failed && b.data != NULL, KBR_ERR_NOMEM);
    *out = b.data;
    *len = b.len;
    b.data = NULL;
out:
    if (b.data != NULL)
        explicit_bzero(b.data, b.cap);
    free(b.data);
    return err;
}

/* ---- written by shape ---- */

void kbr_jcs_fail(kbr_jcs *w, kbr_err err)
{
    if (w->err == KBR_OK)
        w->err = err;
}

/* What goes before a value: the comma between array items (a member's is its name's). */
static bool value_begins(kbr_jcs *w)
{
    if (w->err != KBR_OK)
        return false;
    if (w->depth > 0 && !w->open[w->depth - 1].object) {
        if (!w->open[w->depth - 1].empty)
            put1(&w->buf, ',');
        w->open[w->depth - 1].empty = false;
    }
    return true;
}

static void open_(kbr_jcs *w, bool object)
{
    if (!value_begins(w))
        return;
    if (w->depth == KBR_JCS_DEPTH) {
        kbr_jcs_fail(w, KBR_ERR_INTERNAL);
        return;
    }
    w->open[w->depth].object = object;
    w->open[w->depth].empty = true;
    w->open[w->depth].last = NULL;
    w->depth++;
    put1(&w->buf, object ? '{' : '[');
}

void kbr_jcs_object(kbr_jcs *w)
{
    open_(w, true);
}

void kbr_jcs_array(kbr_jcs *w)
{
    open_(w, false);
}

void kbr_jcs_end(kbr_jcs *w)
{
    if (w->err != KBR_OK)
        return;
    if (w->depth == 0) {
        kbr_jcs_fail(w, KBR_ERR_INTERNAL);
        return;
    }
    w->depth--;
    put1(&w->buf, w->open[w->depth].object ? '}' : ']');
}

void kbr_jcs_key(kbr_jcs *w, const char *name)
{
    if (w->err != KBR_OK)
        return;
    if (w->depth == 0 || !w->open[w->depth - 1].object ||
        (w->open[w->depth - 1].last != NULL && by_name(&w->open[w->depth - 1].last, &name) >= 0)) {
        kbr_jcs_fail(w, KBR_ERR_INTERNAL);
        return;
    }
    if (!w->open[w->depth - 1].empty)
        put1(&w->buf, ',');
    w->open[w->depth - 1].empty = false;
    w->open[w->depth - 1].last = name;
    put_string(&w->buf, name, strlen(name));
    put1(&w->buf, ':');
}

void kbr_jcs_str(kbr_jcs *w, const char *s)
{
    size_t n;

    if (s == NULL) {
        kbr_jcs_null(w);
        return;
    }
    n = strlen(s);
    if (!kbr_utf8_valid(s, n)) {
        kbr_jcs_fail(w, KBR_ERR_BAD_REQUEST);
        return;
    }
    if (value_begins(w))
        put_string(&w->buf, s, n);
}

void kbr_jcs_null(kbr_jcs *w)
{
    if (value_begins(w))
        put(&w->buf, "null", 4);
}

void kbr_jcs_int(kbr_jcs *w, int64_t v)
{
    kbr_err err;

    if (value_begins(w) && (err = put_integer(&w->buf, (json_int_t)v)) != KBR_OK)
        kbr_jcs_fail(w, err);
}

void kbr_jcs_bool(kbr_jcs *w, bool v)
{
    if (value_begins(w))
        puts_(&w->buf, v ? "true" : "false");
}

void kbr_jcs_json(kbr_jcs *w, const json_t *v)
{
    kbr_err err;

    if (v == NULL) {
        kbr_jcs_fail(w, KBR_ERR_BAD_REQUEST);
        return;
    }
    if (value_begins(w) && (err = put_value(&w->buf, v, w->depth, TEXT_JCS)) != KBR_OK)
        kbr_jcs_fail(w, err);
}

void kbr_jcs_json_text(kbr_jcs *w, const char *text)
{
    json_t *v =
        text != NULL ? json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL) : NULL;

    kbr_jcs_json(w, v);
    json_decref(v);
}

void kbr_jcs_member_str(kbr_jcs *w, const char *name, const char *s)
{
    if (s == NULL) {
        kbr_jcs_fail(w, KBR_ERR_INTERNAL);
        return;
    }
    kbr_jcs_key(w, name);
    kbr_jcs_str(w, s);
}

void kbr_jcs_member_nullable(kbr_jcs *w, const char *name, const char *s)
{
    kbr_jcs_key(w, name);
    kbr_jcs_str(w, s);
}

void kbr_jcs_member_opt(kbr_jcs *w, const char *name, const char *s)
{
    if (s != NULL)
        kbr_jcs_member_str(w, name, s);
}

void kbr_jcs_member_int(kbr_jcs *w, const char *name, int64_t v)
{
    kbr_jcs_key(w, name);
    kbr_jcs_int(w, v);
}

void kbr_jcs_member_bool(kbr_jcs *w, const char *name, bool v)
{
    kbr_jcs_key(w, name);
    kbr_jcs_bool(w, v);
}

kbr_err kbr_jcs_finish(kbr_jcs *w, char **out, size_t *len)
{
    kbr_err err = w->err;

    *out = NULL;
    *len = 0;
    if (err == KBR_OK && w->depth != 0)
        err = KBR_ERR_INTERNAL;
    if (err == KBR_OK && (w->buf.failed || w->buf.data == NULL))
        err = KBR_ERR_NOMEM;
    if (err == KBR_OK) {
        *out = w->buf.data;
        *len = w->buf.len;
    } else {
        free(w->buf.data);
    }
    w->buf = (kbr_jcs_buf){0};
    return err;
}
