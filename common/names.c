/*
 * names.c - the one name alphabet and the one scope-pattern rule.
 *
 * Names of keys, products, batches, devices and a principal's name after its kind are
 * 1..KBR_NAME_MAX characters of [A-Za-z0-9._:@+-], never "." or ".." (a name is a path
 * segment); a principal's name may also hold '/', for identities shaped like paths
 * (a repository).  A scope entry is a name, or a prefix of one followed by '*', which matches
 * every name with that prefix ("*" alone matches any).  The SQL the store runs over scopes
 * uses this rule as an SQL function, or GLOB where an index needs it, tested against it.
 */
#include <stdlib.h>
#include <string.h>

#include "kbr_common.h"

bool kbr_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == ':' || c == '@' || c == '+';
}

static bool chars_ok(const char *s, size_t n, bool slash)
{
    for (size_t i = 0; i < n; i++)
        if (!kbr_name_char(s[i]) && !(slash && s[i] == '/'))
            return false;
    return true;
}

bool kbr_name_valid(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    return n > 0 && n <= KBR_NAME_MAX && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
           chars_ok(s, n, false);
}

bool kbr_principal_name_valid(const char *s, size_t n)
{
    return n > 0 && n <= KBR_NAME_MAX && chars_ok(s, n, true);
}

bool kbr_name_pattern_valid(const char *s, size_t n)
{
    if (n == 0 || n > KBR_NAME_MAX)
        return false;
    if (s[n - 1] == '*')
        n--;
    return chars_ok(s, n, false);
}

bool kbr_name_matches(const char *pattern, const char *name)
{
    size_t n;

    if (pattern == NULL || name == NULL)
        return false;
    n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*')
        return strncmp(pattern, name, n - 1) == 0;
    return strcmp(pattern, name) == 0;
}

/* A pattern's prefix length, or -1 for a name (no trailing '*'). */
static long prefix_len(const char *pattern)
{
    size_t n = strlen(pattern);

    return n > 0 && pattern[n - 1] == '*' ? (long)(n - 1) : -1;
}

bool kbr_name_pattern_covers(const char *outer, const char *inner)
{
    long op, ip;

    if (outer == NULL || inner == NULL)
        return false;
    op = prefix_len(outer);
    ip = prefix_len(inner);
    if (ip < 0)
        return kbr_name_matches(outer, inner);
    return op >= 0 && op <= ip && strncmp(outer, inner, (size_t)op) == 0;
}

kbr_err kbr_name_patterns_reaching(const char *name, char **out)
{
    kbr_err err = KBR_OK;
    size_t n = strlen(name);
    json_t *arr = NULL;
    char *buf = NULL;

    *out = NULL;
    arr = json_array();
    buf = malloc(n + 2);
    KBR_ENSURE(arr != NULL && buf != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_array_append_new(arr, json_string(name)) == 0, KBR_ERR_BAD_REQUEST);
    for (size_t i = 0; i <= n; i++) {
        if (i < n && ((unsigned char)name[i] & 0xc0) == 0x80)
            continue;
        memcpy(buf, name, i);
        buf[i] = '*';
        buf[i + 1] = '\0';
        KBR_ENSURE(json_array_append_new(arr, json_string(buf)) == 0, KBR_ERR_NOMEM);
    }
    *out = json_dumps(arr, JSON_COMPACT);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    free(buf);
    json_decref(arr);
    return err;
}
