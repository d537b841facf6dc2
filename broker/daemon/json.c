/*
 * json.c - strict field readers for request bodies.  Each names the field it
 * rejects, so a CI log shows what to fix without reading the server's code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"

/*
 * The length of the well-formed UTF-8 sequence at p, or 0: jansson refuses
 * overlong forms, surrogates and code points past U+10FFFF, and so does this.
 */
static size_t utf8_sequence(const unsigned char *p)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (p[0] == 0xe0)
        lo = 0xa0;
    else if (p[0] == 0xed)
        hi = 0x9f;
    else if (p[0] == 0xf0)
        lo = 0x90;
    else if (p[0] == 0xf4)
        hi = 0x8f;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

char *kbd_utf8_clean(const char *s)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    const unsigned char *p = (const unsigned char *)s;
    char *out = malloc(3 * strlen(s) + 1), *o = out;

    if (out == NULL)
        return NULL;
    while (*p != '\0') {
        size_t n = utf8_sequence(p);
        if (n == 0) {
            memcpy(o, replacement, 3);
            o += 3;
            p++;
            continue;
        }
        memcpy(o, p, n);
        o += n;
        p += n;
    }
    *o = '\0';
    return out;
}

kbr_err kbd_json_reason_only(const json_t *obj, char **reason, kbr_msg *msg)
{
    static const char *const allowed[] = {"reason", NULL};
    const char *text = NULL;
    kbr_err err = KBR_OK;

    *reason = NULL;
    KBR_GUARD(kbd_json_only(obj, allowed, msg));
    KBR_GUARD(kbd_json_str(obj, "reason", false, 512, &text, msg));
    KBR_ENSURE(text == NULL || (*reason = strdup(text)) != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

kbr_err kbd_json_only(const json_t *obj, const char *const *allowed, kbr_msg *msg)
{
    const char *k;
    json_t *v;

    if (!json_is_object(obj))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "request body must be a JSON object");
    json_object_foreach((json_t *)obj, k, v)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL && !known; i++)
            known = strcmp(allowed[i], k) == 0;
        if (!known)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "unknown field \"%.64s\"", k);
    }
    return KBR_OK;
}

bool kbd_json_set_str(json_t *obj, const char *name, const char *s, bool nullable)
{
    if (s == NULL && !nullable)
        return false;
    return json_object_set_new(obj, name, s != NULL ? json_string(s) : json_null()) == 0;
}

kbr_err kbd_json_str(const json_t *obj, const char *field, bool required, size_t maxlen,
                     const char **out, kbr_msg *msg)
{
    json_t *v = json_object_get(obj, field);

    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        if (required)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: required", field);
        return KBR_OK;
    }
    if (!json_is_string(v))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be a string", field);
    if (json_string_length(v) == 0 && required)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must not be empty", field);
    if (json_string_length(v) > maxlen)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: longer than %zu characters", field, maxlen);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: contains a NUL character", field);
    *out = json_string_value(v);
    return KBR_OK;
}

kbr_err kbd_json_name(const json_t *obj, const char *field, bool required, const char **out,
                      kbr_msg *msg)
{
    kbr_err err = kbd_json_str(obj, field, required, KBR_NAME_MAX, out, msg);

    if (err != KBR_OK || *out == NULL)
        return err;
    if (!kbr_name_valid(*out)) {
        *out = NULL;
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "%s: only letters, digits and . _ - : @ + are allowed", field);
    }
    return KBR_OK;
}

kbr_err kbd_json_int(const json_t *obj, const char *field, bool required, int64_t min, int64_t max,
                     int64_t *out, kbr_msg *msg)
{
    json_t *v = json_object_get(obj, field);

    if (v == NULL || json_is_null(v)) {
        if (required)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: required", field);
        return KBR_OK;
    }
    if (!json_is_integer(v))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be an integer", field);
    if (json_integer_value(v) < min || json_integer_value(v) > max)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be between %lld and %lld", field,
                        (long long)min, (long long)max);
    *out = json_integer_value(v);
    return KBR_OK;
}

kbr_err kbd_json_names(const json_t *obj, const char *field, bool required, json_t **out,
                       kbr_msg *msg)
{
    json_t *v = json_object_get(obj, field);
    size_t i;
    json_t *item;

    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        if (required)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: required", field);
        return KBR_OK;
    }
    if (!json_is_array(v) || (required && json_array_size(v) == 0))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be a non-empty array of names", field);
    if (json_array_size(v) > 256)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: more than 256 entries", field);
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item) || !kbr_name_valid(json_string_value(item)))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s[%zu]: not a valid name", field, i);
    }
    *out = v;
    return KBR_OK;
}

kbr_err kbd_scope_copy(const kbr_scope *in, kbr_scope *out)
{
    json_t *j = kbr_scope_to_json(in);
    kbr_err err;

    memset(out, 0, sizeof(*out));
    if (j == NULL)
        return KBR_ERR_NOMEM;
    err = kbr_scope_from_json(j, out, NULL);
    json_decref(j);
    return err;
}

kbr_err kbd_msg_wrap(kbr_msg *msg, kbr_err err, const char *before, const char *after)
{
    char tmp[KBR_MSG_LEN];

    memcpy(tmp, msg->text, sizeof(tmp));
    tmp[sizeof(tmp) - 1] = '\0';
    snprintf(msg->text, sizeof(msg->text), "%s%s%s", before, tmp, after);
    return err;
}

kbr_err kbd_msg_prefix(kbr_msg *msg, const char *prefix, kbr_err err)
{
    char tmp[KBR_MSG_LEN];
    size_t n = strlen(prefix);

    memcpy(tmp, msg->text, sizeof(tmp));
    tmp[sizeof(tmp) - 1] = '\0';
    if (n + 2 >= sizeof(msg->text))
        return err;
    memcpy(msg->text, prefix, n);
    msg->text[n] = '.';
    memcpy(msg->text + n + 1, tmp, sizeof(msg->text) - n - 2);
    msg->text[sizeof(msg->text) - 1] = '\0';
    return err;
}
