/*
 * purl.c - package URLs: parse, build, normalize, serialize, match
 * (https://github.com/package-url/purl-spec: the core standard, ECMA-427, and
 * the registered type definitions in types/<type>-definition.json).
 *
 * A purl is read the URL way: the subpath after the first '#', the qualifiers
 * after the first '?' before it, then "pkg:", slashes, the type, and the path
 * split from the right into namespace, name and '@' version.  Each component
 * is percent-decoded once into UTF-8 (no NUL), normalized by its type's rules,
 * and percent-encoded again on output, where only letters, digits, ".-_~" and
 * ':' stay as they are.
 */
#include <stdlib.h>
#include <string.h>

#include "kbr_cra.h"

/* Longer inputs are refused: no package URL needs more. */
#define PURL_MAX_LEN 65536

/* ---- small strings ---- */

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *dup_s(const char *s)
{
    return s == NULL ? NULL : dup_n(s, strlen(s));
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(int c)
{
    return is_alpha(c) || is_digit(c);
}

static int hex_val(int c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ASCII only: the standard's full case mapping changes no other character this code sees. */
static void lower_ascii(char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
    }
}

static void upper_ascii(char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
    }
}

/* s[0..n) percent-decoded into a new string; what names the component in messages. */
static kbr_err pct_decode(const char *s, size_t n, const char *what, char **out, kbr_msg *msg)
{
    char *d = malloc(n + 1);
    size_t j = 0;

    *out = NULL;
    if (d == NULL)
        return KBR_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;

        if (s[i] != '%') {
            d[j++] = s[i];
            continue;
        }
        hi = i + 1 < n ? hex_val((unsigned char)s[i + 1]) : -1;
        lo = i + 2 < n ? hex_val((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(d);
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "purl: %s: '%%' not followed by two hex digits in \"%.*s\"", what,
                            (int)(n > 64 ? 64 : n), s);
        }
        if (hi == 0 && lo == 0) {
            free(d);
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: %s: %%00 (NUL) is not allowed", what);
        }
        d[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    d[j] = '\0';
    if (!kbr_utf8_valid((const char *)d, j)) {
        free(d);
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: %s: decodes to bytes that are not UTF-8",
                        what);
    }
    *out = d;
    return KBR_OK;
}

/* ---- output buffer ---- */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t want = b->cap > 0 ? b->cap : 64;
        char *bigger;

        while (want < b->len + n + 1)
            want *= 2;
        bigger = realloc(b->p, want);
        if (bigger == NULL) {
            b->oom = true;
            return;
        }
        b->p = bigger;
        b->cap = want;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Letters, digits, ".-_~" and ':' as they are; every other byte as %XX. */
static void sb_encode(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (is_alnum(c) || c == '.' || c == '-' || c == '_' || c == '~' || c == ':') {
            sb_add(b, (const char *)&s[i], 1);
        } else {
            char t[3] = {'%', hex[c >> 4], hex[c & 15]};

            sb_add(b, t, 3);
        }
    }
}

/* Each '/'-separated segment of s encoded, the slashes kept. */
static void sb_encode_segments(sbuf *b, const char *s)
{
    for (;;) {
        size_t n = strcspn(s, "/");

        sb_encode(b, s, n);
        if (s[n] == '\0')
            return;
        sb_add(b, "/", 1);
        s += n + 1;
    }
}

/* ---- types ---- */

enum { NS_OPTIONAL, NS_REQUIRED, NS_PROHIBITED };

enum {
    R_LOWER_NS = 1u << 0,
    R_LOWER_NAME = 1u << 1,
    R_LOWER_VERSION = 1u << 2,
    R_UPPER_NS = 1u << 3,     /* cpan: the CPAN ID is uppercase */
    R_PYPI_NAME = 1u << 4,    /* '_' becomes '-' */
    R_MLFLOW_NAME = 1u << 5,  /* lowercase on Databricks, as is elsewhere */
    R_CHROME = 1u << 6,       /* name ^[a-p]{32}$, version ^\d+(\.\d+){0,3}$ */
    R_CPAN_NAME = 1u << 7,    /* a distribution name, never a module name with "::" */
    R_PUB_NAME = 1u << 8,     /* only [a-z0-9_]: any other character becomes '_' */
    R_GIT_NAME = 1u << 9,     /* namespace is the host; the name is the path below it */
    R_SWID_NS = 1u << 10,     /* at most two namespace segments: creator name and regid */
    R_SWID_TAG_ID = 1u << 11, /* a GUID tag_id is lowercase */
};

typedef struct {
    const char *type;
    int ns;
    unsigned rules;
    const char *required_qualifier;
} type_rule;

/*
 * The registered types (purl-spec types/<type>-definition.json): whether a namespace
 * is required or prohibited, which components are case-insensitive (their
 * canonical form is lowercase), and the rules a definition states in words.
 * Types not listed follow the core standard alone.
 */
static const type_rule type_rules[] = {
    {"alpm", NS_REQUIRED, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"apk", NS_REQUIRED, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"bazel", NS_PROHIBITED, 0, NULL},
    {"bitbucket", NS_REQUIRED, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"bitnami", NS_PROHIBITED, R_LOWER_NAME, NULL},
    {"brew", NS_OPTIONAL, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"cargo", NS_PROHIBITED, 0, NULL},
    {"chrome-extension", NS_PROHIBITED, R_LOWER_NAME | R_CHROME, NULL},
    {"cocoapods", NS_PROHIBITED, 0, NULL},
    {"composer", NS_REQUIRED, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"conan", NS_OPTIONAL, 0, NULL},
    {"conda", NS_PROHIBITED, 0, NULL},
    {"cpan", NS_OPTIONAL, R_UPPER_NS | R_CPAN_NAME, NULL},
    {"cran", NS_PROHIBITED, 0, NULL},
    {"deb", NS_REQUIRED, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"docker", NS_OPTIONAL, 0, NULL},
    {"gem", NS_PROHIBITED, 0, NULL},
    {"generic", NS_OPTIONAL, 0, NULL},
    {"git", NS_REQUIRED, R_GIT_NAME, NULL},
    {"github", NS_REQUIRED, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"golang", NS_REQUIRED, 0, NULL},
    {"hackage", NS_PROHIBITED, 0, NULL},
    {"hex", NS_OPTIONAL, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"huggingface", NS_REQUIRED, R_LOWER_VERSION, NULL},
    {"julia", NS_PROHIBITED, 0, "uuid"},
    {"luarocks", NS_OPTIONAL, R_LOWER_NS | R_LOWER_NAME, NULL},
    {"maven", NS_REQUIRED, 0, NULL},
    {"mlflow", NS_PROHIBITED, R_MLFLOW_NAME, NULL},
    {"npm", NS_OPTIONAL, 0, NULL},
    {"nuget", NS_PROHIBITED, 0, NULL},
    {"oci", NS_PROHIBITED, R_LOWER_NAME | R_LOWER_VERSION, NULL},
    {"opam", NS_PROHIBITED, 0, NULL},
    {"otp", NS_PROHIBITED, R_LOWER_NAME, NULL},
    {"pub", NS_PROHIBITED, R_LOWER_NAME | R_PUB_NAME, NULL},
    {"pypi", NS_PROHIBITED, R_LOWER_NAME | R_PYPI_NAME | R_LOWER_VERSION, NULL},
    {"qpkg", NS_REQUIRED, R_LOWER_NS, NULL},
    {"rpm", NS_REQUIRED, R_LOWER_NS, NULL},
    {"swid", NS_OPTIONAL, R_SWID_NS | R_SWID_TAG_ID, "tag_id"},
    {"swift", NS_REQUIRED, 0, NULL},
    {"vcpkg", NS_PROHIBITED, 0, NULL},
    {"vscode-extension", NS_REQUIRED, R_LOWER_NS | R_LOWER_NAME | R_LOWER_VERSION, NULL},
    {"yocto", NS_OPTIONAL, R_LOWER_NS, NULL},
};

static const type_rule *rule_for(const char *type)
{
    for (size_t i = 0; i < sizeof(type_rules) / sizeof(type_rules[0]); i++) {
        if (strcmp(type_rules[i].type, type) == 0)
            return &type_rules[i];
    }
    return NULL;
}

/* A type: ASCII letters, digits, '.', '-', starting with a letter; lowercased here. */
static kbr_err check_type(char *type, kbr_msg *msg)
{
    if (type[0] == '\0')
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: the type is empty");
    if (!is_alpha((unsigned char)type[0]))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "purl: type \"%.40s\" does not start with a letter", type);
    for (const char *p = type; *p != '\0'; p++) {
        if (!is_alnum((unsigned char)*p) && *p != '.' && *p != '-')
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "purl: type \"%.40s\" has '%c' (only letters, digits, '.' and '-')",
                            type, *p);
    }
    lower_ascii(type);
    return KBR_OK;
}

/* A key: lowercase ASCII letters, digits, '.', '-', '_', starting with a letter. */
static kbr_err check_key(char *key, unsigned flags, kbr_msg *msg)
{
    if (key[0] == '\0')
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: a qualifier has an empty key");
    if (flags & KBR_PURL_LENIENT)
        lower_ascii(key);
    if (!is_alpha((unsigned char)key[0]))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "purl: qualifier key \"%.40s\" does not start with a letter", key);
    for (const char *p = key; *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'Z')
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "purl: qualifier key \"%.40s\" is not lowercase", key);
        if (!is_alnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "purl: qualifier key \"%.40s\" has a character other than letters, "
                            "digits, '.', '-' and '_'",
                            key);
    }
    return KBR_OK;
}

static bool is_guid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    if (strlen(s) != sizeof(shape) - 1)
        return false;
    for (size_t i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == '-' ? s[i] != '-' : hex_val((unsigned char)s[i]) < 0)
            return false;
    }
    return true;
}

/* pub: lowercase, then each character outside [a-z0-9_] (a whole UTF-8 sequence) as '_'. */
static void pub_name(char *s)
{
    char *w = s;

    for (const char *r = s; *r != '\0';) {
        unsigned char c = (unsigned char)*r;

        if ((c >= 'a' && c <= 'z') || is_digit(c) || c == '_') {
            *w++ = *r++;
            continue;
        }
        *w++ = '_';
        r++;
        while ((*r & 0xc0) == 0x80)
            r++;
    }
    *w = '\0';
}

static bool chrome_version(const char *v)
{
    int parts = 0;

    for (;;) {
        if (!is_digit((unsigned char)*v))
            return false;
        while (is_digit((unsigned char)*v))
            v++;
        if (++parts > 4)
            return false;
        if (*v == '\0')
            return true;
        if (*v++ != '.')
            return false;
    }
}

static const kbr_purl_qualifier *find_qualifier(const kbr_purl *p, const char *key)
{
    for (size_t i = 0; i < p->n_qualifiers; i++) {
        if (strcmp(p->qualifiers[i].key, key) == 0)
            return &p->qualifiers[i];
    }
    return NULL;
}

const char *kbr_purl_qualifier_get(const kbr_purl *p, const char *key)
{
    const kbr_purl_qualifier *q = find_qualifier(p, key);

    return q != NULL ? q->value : NULL;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay != '\0'; hay++) {
        size_t i = 0;

        while (i < n && hay[i] != '\0' &&
               (hay[i] == needle[i] ||
                (hay[i] >= 'A' && hay[i] <= 'Z' && hay[i] - 'A' + 'a' == needle[i])))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

static size_t count_segments(const char *s)
{
    size_t n = 1;

    for (; *s != '\0'; s++)
        n += *s == '/';
    return n;
}

/* The type's rules on decoded components; called once every component is in place. */
static kbr_err apply_type_rules(kbr_purl *p, kbr_msg *msg)
{
    const type_rule *r = rule_for(p->type);
    const char *url;

    if (r == NULL)
        return KBR_OK;
    if (r->ns == NS_REQUIRED && p->namespace == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: type \"%s\" requires a namespace",
                        p->type);
    if (r->ns == NS_PROHIBITED && p->namespace != NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "purl: type \"%s\" has no namespace (got \"%.40s\")", p->type,
                        p->namespace);
    if (r->required_qualifier != NULL && find_qualifier(p, r->required_qualifier) == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: type \"%s\" requires the qualifier \"%s\"",
                        p->type, r->required_qualifier);
    if (r->rules & R_LOWER_NS)
        lower_ascii(p->namespace);
    if (r->rules & R_UPPER_NS)
        upper_ascii(p->namespace);
    if (r->rules & R_LOWER_NAME)
        lower_ascii(p->name);
    if (r->rules & R_LOWER_VERSION)
        lower_ascii(p->version);
    if (r->rules & R_PYPI_NAME) {
        for (char *c = p->name; *c != '\0'; c++)
            *c = *c == '_' ? '-' : *c;
    }
    url = kbr_purl_qualifier_get(p, "repository_url");
    if ((r->rules & R_MLFLOW_NAME) && url != NULL && contains_ci(url, "databricks"))
        lower_ascii(p->name);
    if (r->rules & R_PUB_NAME)
        pub_name(p->name);
    if ((r->rules & R_CPAN_NAME) && strstr(p->name, "::") != NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "purl: cpan name \"%.40s\" is a module name: a distribution name has no "
                        "\"::\"",
                        p->name);
    if (r->rules & R_CHROME) {
        bool ok = strlen(p->name) == 32;

        for (const char *c = p->name; ok && *c != '\0'; c++)
            ok = *c >= 'a' && *c <= 'p';
        if (!ok)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "purl: chrome-extension name \"%.40s\" is not 32 letters a to p",
                            p->name);
        if (p->version != NULL && !chrome_version(p->version))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "purl: chrome-extension version \"%.40s\" is not 1 to 4 numbers "
                            "separated by '.'",
                            p->version);
    }
    if ((r->rules & R_GIT_NAME) &&
        (p->name[0] == '/' || p->name[strlen(p->name) - 1] == '/' || strstr(p->name, "//") != NULL))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: git name \"%.40s\" has an empty segment",
                        p->name);
    if ((r->rules & R_SWID_NS) && p->namespace != NULL && count_segments(p->namespace) > 2)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "purl: swid namespace \"%.40s\" has more than two segments", p->namespace);
    if (r->rules & R_SWID_TAG_ID) {
        kbr_purl_qualifier *q = (kbr_purl_qualifier *)find_qualifier(p, "tag_id");

        if (q != NULL && is_guid(q->value))
            lower_ascii(q->value);
    }
    return KBR_OK;
}

/* ---- assembling a purl ---- */

void kbr_purl_free(kbr_purl *p)
{
    if (p == NULL)
        return;
    free(p->type);
    free(p->namespace);
    free(p->name);
    free(p->version);
    for (size_t i = 0; i < p->n_qualifiers; i++) {
        free(p->qualifiers[i].key);
        free(p->qualifiers[i].value);
    }
    free(p->qualifiers);
    free(p->subpath);
    free(p);
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const kbr_purl_qualifier *)a)->key, ((const kbr_purl_qualifier *)b)->key);
}

/* Takes key and value (freeing them on failure); an empty value drops the pair. */
static kbr_err add_qualifier(kbr_purl *p, char *key, char *value, unsigned flags, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_purl_qualifier *bigger;

    KBR_GUARD(check_key(key, flags, msg));
    if (value[0] == '\0')
        goto out;
    if (find_qualifier(p, key) != NULL) {
        err = kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: qualifier \"%s\" appears twice", key);
        goto out;
    }
    bigger = realloc(p->qualifiers, (p->n_qualifiers + 1) * sizeof(*bigger));
    KBR_ENSURE(bigger != NULL, KBR_ERR_NOMEM);
    p->qualifiers = bigger;
    p->qualifiers[p->n_qualifiers].key = key;
    p->qualifiers[p->n_qualifiers].value = value;
    p->n_qualifiers++;
    return KBR_OK;
out:
    free(key);
    free(value);
    return err;
}

/* Everything both parse and build end with. */
static kbr_err finish(kbr_purl *p, kbr_msg *msg)
{
    if (p->name == NULL || p->name[0] == '\0')
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: the name is required");
    if (p->version != NULL && p->version[0] == '\0') {
        free(p->version);
        p->version = NULL;
    }
    if (p->n_qualifiers > 1)
        qsort(p->qualifiers, p->n_qualifiers, sizeof(*p->qualifiers), by_key);
    return apply_type_rules(p, msg);
}

/*
 * Appends the segments of s[0..n) split at '/' to *acc ('/'-joined), each
 * percent-decoded, dropping empty ones (and "." and ".." when dots is set).
 */
static kbr_err add_segments(char **acc, const char *s, size_t n, bool decode, bool dots,
                            const char *what, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    size_t i = 0;
    char *seg = NULL;

    while (i <= n) {
        size_t j = i;
        size_t have;
        char *joined;

        while (j < n && s[j] != '/')
            j++;
        if (decode) {
            KBR_GUARD(pct_decode(s + i, j - i, what, &seg, msg));
        } else {
            seg = dup_n(s + i, j - i);
            KBR_ENSURE(seg != NULL, KBR_ERR_NOMEM);
        }
        i = j + 1;
        if (seg[0] == '\0' || (dots && (strcmp(seg, ".") == 0 || strcmp(seg, "..") == 0))) {
            free(seg);
            seg = NULL;
            continue;
        }
        if (strchr(seg, '/') != NULL) {
            err = kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: %s segment \"%.40s\" holds a '/'", what,
                           seg);
            goto out;
        }
        have = *acc != NULL ? strlen(*acc) : 0;
        joined = realloc(*acc, have + strlen(seg) + 2);
        KBR_ENSURE(joined != NULL, KBR_ERR_NOMEM);
        if (have > 0)
            joined[have++] = '/';
        memcpy(joined + have, seg, strlen(seg) + 1);
        *acc = joined;
        free(seg);
        seg = NULL;
    }
out:
    free(seg);
    return err;
}

static kbr_err parse_qualifiers(kbr_purl *p, const char *s, size_t n, unsigned flags, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    size_t i = 0;

    while (i < n) {
        size_t j = i, eq;
        char *key = NULL, *value = NULL;

        while (j < n && s[j] != '&')
            j++;
        if (j == i) {
            if (!(flags & KBR_PURL_LENIENT))
                return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: an empty qualifier between '&'");
            i = j + 1;
            continue;
        }
        for (eq = i; eq < j && s[eq] != '='; eq++)
            ;
        if (eq == j)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: qualifier \"%.*s\" has no '='",
                            (int)(j - i > 40 ? 40 : j - i), s + i);
        key = dup_n(s + i, eq - i);
        KBR_ENSURE(key != NULL, KBR_ERR_NOMEM);
        err = pct_decode(s + eq + 1, j - eq - 1, "qualifier value", &value, msg);
        if (err != KBR_OK) {
            free(key);
            return err;
        }
        KBR_GUARD(add_qualifier(p, key, value, flags, msg));
        i = j + 1;
    }
    if (n > 0 && s[n - 1] == '&' && !(flags & KBR_PURL_LENIENT))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: the qualifiers end with '&'");
out:
    return err;
}

/* The path after the type: namespace segments, name, '@' version. */
static kbr_err parse_path(kbr_purl *p, const char *s, size_t n, unsigned flags, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    size_t slash = n, at = n, end, name_start;
    bool has_version;
    char *name_path = NULL;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '/')
            slash = i;
    }
    /* The version is after the last '@' of the last segment. */
    for (size_t i = (slash == n ? 0 : slash + 1); i < n; i++) {
        if (s[i] == '@')
            at = i;
    }
    has_version = at < n;
    if (has_version) {
        if (at + 1 == n)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: nothing after the version's '@'");
        KBR_GUARD(pct_decode(s + at + 1, n - at - 1, "version", &p->version, msg));
        n = at;
    }
    if (!(flags & KBR_PURL_LENIENT) && memchr(s, '@', n) != NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "purl: a '@' in the namespace or name must be percent-encoded as %%40");
    /* Slashes after the name are not significant, but one before '@' leaves no name. */
    end = n;
    while (!has_version && end > 0 && s[end - 1] == '/')
        end--;
    name_start = end;
    while (name_start > 0 && s[name_start - 1] != '/')
        name_start--;
    if (name_start == end)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: the name is required");
    if (rule_for(p->type) != NULL && (rule_for(p->type)->rules & R_GIT_NAME)) {
        /* git: the first segment is the host, every segment below it the name. */
        size_t first = 0, host_end;

        while (first < end && s[first] == '/')
            first++;
        host_end = first;
        while (host_end < end && s[host_end] != '/')
            host_end++;
        KBR_GUARD(add_segments(&p->namespace, s + first, host_end - first, true, false, "namespace",
                               msg));
        if (host_end == end)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: git needs a host and a path");
        KBR_GUARD(add_segments(&name_path, s + host_end, end - host_end, true, false, "name", msg));
        p->name = name_path;
        name_path = NULL;
        return KBR_OK;
    }
    KBR_GUARD(pct_decode(s + name_start, end - name_start, "name", &p->name, msg));
    KBR_GUARD(add_segments(&p->namespace, s, name_start, true, false, "namespace", msg));
out:
    free(name_path);
    return err;
}

kbr_err kbr_purl_parse(const char *s, unsigned flags, kbr_purl **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_purl *p = NULL;
    size_t len, hash, query, i, type_end;

    *out = NULL;
    KBR_ENSURE(s != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: missing"));
    len = strlen(s);
    KBR_ENSURE(len <= PURL_MAX_LEN,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: longer than %d characters", PURL_MAX_LEN));
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        KBR_ENSURE(c > 0x20 && c < 0x7f,
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "purl: character %zu is not printable ASCII (byte 0x%02x): other "
                            "characters must be percent-encoded",
                            i + 1, c));
    }
    KBR_ENSURE(len >= 4 && strncmp(s, "pkg:", 4) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: does not start with \"pkg:\""));
    p = calloc(1, sizeof(*p));
    KBR_ENSURE(p != NULL, KBR_ERR_NOMEM);
    hash = strcspn(s, "#");
    query = strcspn(s, "?");
    if (query > hash)
        query = hash;
    if (hash < len)
        KBR_GUARD(
            add_segments(&p->subpath, s + hash + 1, len - hash - 1, true, true, "subpath", msg));
    if (query < hash)
        KBR_GUARD(parse_qualifiers(p, s + query + 1, hash - query - 1, flags, msg));
    i = 4;
    while (i < query && s[i] == '/')
        i++;
    type_end = i;
    while (type_end < query && s[type_end] != '/')
        type_end++;
    p->type = dup_n(s + i, type_end - i);
    KBR_ENSURE(p->type != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(check_type(p->type, msg));
    KBR_ENSURE(type_end < query, kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                          "purl: nothing after the type \"%.40s\"", p->type));
    KBR_GUARD(parse_path(p, s + type_end + 1, query - type_end - 1, flags, msg));
    KBR_GUARD(finish(p, msg));
    *out = p;
    p = NULL;
out:
    kbr_purl_free(p);
    return err;
}

/* A '/'-separated component given decoded: no empty segments. */
static kbr_err take_segments(char **dst, const char *s, const char *what, kbr_msg *msg)
{
    size_t n;

    if (s == NULL || s[0] == '\0')
        return KBR_OK;
    n = strlen(s);
    if (s[0] == '/' || s[n - 1] == '/' || strstr(s, "//") != NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: %s \"%.40s\" has an empty segment", what,
                        s);
    if (!kbr_utf8_valid((const char *)s, n))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: %s is not UTF-8", what);
    return add_segments(dst, s, n, false, false, what, msg);
}

static kbr_err take_string(char **dst, const char *s, const char *what, kbr_msg *msg)
{
    if (s == NULL)
        return KBR_OK;
    if (!kbr_utf8_valid((const char *)s, strlen(s)))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: %s is not UTF-8", what);
    *dst = dup_s(s);
    return *dst != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err kbr_purl_build(const char *type, const char *namespace, const char *name,
                       const char *version, const kbr_purl_qualifier *qualifiers,
                       size_t n_qualifiers, const char *subpath, unsigned flags, kbr_purl **out,
                       kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_purl *p = NULL;

    *out = NULL;
    KBR_ENSURE(type != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: the type is required"));
    p = calloc(1, sizeof(*p));
    KBR_ENSURE(p != NULL, KBR_ERR_NOMEM);
    p->type = dup_s(type);
    KBR_ENSURE(p->type != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(check_type(p->type, msg));
    KBR_GUARD(take_segments(&p->namespace, namespace, "namespace", msg));
    KBR_GUARD(take_string(&p->name, name, "name", msg));
    KBR_GUARD(take_string(&p->version, version, "version", msg));
    KBR_GUARD(take_segments(&p->subpath, subpath, "subpath", msg));
    if (p->subpath != NULL) {
        for (const char *seg = p->subpath; seg != NULL;) {
            size_t n = strcspn(seg, "/");

            KBR_ENSURE(
                (n != 1 || seg[0] != '.') && (n != 2 || strncmp(seg, "..", 2) != 0),
                kbr_fail(msg, KBR_ERR_BAD_REQUEST, "purl: subpath has a \".\" or \"..\" segment"));
            seg = seg[n] == '/' ? seg + n + 1 : NULL;
        }
    }
    for (size_t i = 0; i < n_qualifiers; i++) {
        char *key = dup_s(qualifiers[i].key), *value = dup_s(qualifiers[i].value);

        if (key == NULL || value == NULL || !kbr_utf8_valid((const char *)value, strlen(value))) {
            err = key == NULL || value == NULL
                      ? KBR_ERR_NOMEM
                      : kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                 "purl: qualifier \"%.40s\" has a value that is not UTF-8", key);
            free(key);
            free(value);
            goto out;
        }
        KBR_GUARD(add_qualifier(p, key, value, flags, msg));
    }
    KBR_GUARD(finish(p, msg));
    *out = p;
    p = NULL;
out:
    kbr_purl_free(p);
    return err;
}

kbr_err kbr_purl_to_string(const kbr_purl *p, char **out)
{
    sbuf b = {0};

    *out = NULL;
    sb_str(&b, "pkg:");
    sb_str(&b, p->type);
    sb_add(&b, "/", 1);
    if (p->namespace != NULL) {
        sb_encode_segments(&b, p->namespace);
        sb_add(&b, "/", 1);
    }
    if (rule_for(p->type) != NULL && (rule_for(p->type)->rules & R_GIT_NAME))
        sb_encode_segments(&b, p->name);
    else
        sb_encode(&b, p->name, strlen(p->name));
    if (p->version != NULL) {
        sb_add(&b, "@", 1);
        sb_encode(&b, p->version, strlen(p->version));
    }
    for (size_t i = 0; i < p->n_qualifiers; i++) {
        sb_add(&b, i == 0 ? "?" : "&", 1);
        sb_str(&b, p->qualifiers[i].key);
        sb_add(&b, "=", 1);
        sb_encode(&b, p->qualifiers[i].value, strlen(p->qualifiers[i].value));
    }
    if (p->subpath != NULL) {
        sb_add(&b, "#", 1);
        sb_encode_segments(&b, p->subpath);
    }
    if (b.oom) {
        free(b.p);
        return KBR_ERR_NOMEM;
    }
    *out = b.p;
    return KBR_OK;
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool kbr_purl_matches(const kbr_purl *query, const kbr_purl *component)
{
    if (!same(query->type, component->type) || !same(query->namespace, component->namespace) ||
        !same(query->name, component->name))
        return false;
    if (query->version != NULL && !same(query->version, component->version))
        return false;
    if (query->subpath != NULL && !same(query->subpath, component->subpath))
        return false;
    for (size_t i = 0; i < query->n_qualifiers; i++) {
        if (!same(query->qualifiers[i].value,
                  kbr_purl_qualifier_get(component, query->qualifiers[i].key)))
            return false;
    }
    return true;
}
