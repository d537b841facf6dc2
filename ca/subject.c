/*
 * subject.c - the subject of a self-signed CA certificate, written
 * "CN=...,O=...,C=..".  Only the attributes a CA name needs are accepted
 * and values cannot be escaped, so what an operator typed is exactly what
 * the certificate says.
 */
#include <ctype.h>
#include <string.h>

#include <openssl/objects.h>

#include "ca_int.h"

#define SUBJECT_MAX 1024
#define VALUE_MAX   64 /* ub-common-name and friends, RFC 5280 appendix A */

static const char *const attrs[] = {"CN", "O", "OU", "C", "L", "ST"};
#define N_ATTRS (sizeof(attrs) / sizeof(attrs[0]))

/* [s, e) without surrounding spaces. */
static void trim(const char **s, const char **e)
{
    while (*s < *e && **s == ' ')
        (*s)++;
    while (*e > *s && (*e)[-1] == ' ')
        (*e)--;
}

static int attr_index(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < N_ATTRS; i++)
        if (strlen(attrs[i]) == len && strncmp(attrs[i], s, len) == 0)
            return (int)i;
    return -1;
}

static bool value_ok(const char *attr, const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > VALUE_MAX)
        return false;
    if (strcmp(attr, "C") == 0)
        return len == 2 && isupper((unsigned char)s[0]) && isupper((unsigned char)s[1]);
    for (i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || strchr(",=+;\"\\<>", s[i]) != NULL)
            return false;
    return true;
}

/* One "NAME=value" in [s, e), added to name unless its attribute was seen already. */
static kbr_err add_rdn(X509_NAME *name, const char *s, const char *e, bool seen[N_ATTRS],
                       kbr_msg *msg)
{
    const char *eq = memchr(s, '=', (size_t)(e - s)), *ke, *vs;
    int a;

    if (eq == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "self_signed.subject: expected NAME=value");
    ke = eq;
    vs = eq + 1;
    trim(&s, &ke);
    trim(&vs, &e);
    a = attr_index(s, (size_t)(ke - s));
    if (a < 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "self_signed.subject: attribute must be one of CN, O, OU, C, L, ST");
    if (seen[a])
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "self_signed.subject: %s given twice", attrs[a]);
    if (!value_ok(attrs[a], vs, (size_t)(e - vs)))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "self_signed.subject: bad value for %s",
                        attrs[a]);
    seen[a] = true;
    if (X509_NAME_add_entry_by_txt(name, attrs[a], MBSTRING_ASC, (const unsigned char *)vs,
                                   (int)(e - vs), -1, 0) != 1)
        return KBR_ERR_CRYPTO;
    return KBR_OK;
}

kbr_err ca_subject_parse(const char *subject, X509_NAME **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    X509_NAME *name = X509_NAME_new();
    bool seen[N_ATTRS] = {false};
    const char *s = subject, *end, *comma;

    *out = NULL;
    KBR_ENSURE(name != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(subject != NULL && strnlen(subject, SUBJECT_MAX + 1) <= SUBJECT_MAX,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "self_signed.subject: missing or too long"));
    end = subject + strlen(subject);
    while (s <= end) {
        comma = memchr(s, ',', (size_t)(end - s));
        if (comma == NULL)
            comma = end;
        KBR_GUARD(add_rdn(name, s, comma, seen, msg));
        s = comma + 1;
    }
    KBR_ENSURE(seen[0], kbr_fail(msg, KBR_ERR_BAD_REQUEST, "self_signed.subject: CN is required"));
    *out = name;
    name = NULL;
out:
    X509_NAME_free(name);
    return err;
}
