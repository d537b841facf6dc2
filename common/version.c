/*
 * version.c - version order per scheme.
 *
 *  deb     dpkg's parseversion() and verrevcmp() (lib/dpkg/parsehelp.c,
 *          lib/dpkg/version.c): [epoch:]upstream[-revision], '~' before
 *          anything, even the end, letters before other characters.
 *  semver  Semantic Versioning 2.0.0, section 11 precedence; build metadata
 *          is ignored.  npm uses it as is.
 *  pypi    PEP 440 as the packaging project's Version reads it (its regular
 *          expression, with possessive groups, and its comparison key).
 *  generic runs of digits (compared as numbers) and of letters (compared
 *          ignoring case); anything else separates them; letters sort before
 *          numbers; a missing run counts as the number 0.
 *
 * Numbers are compared as digit strings, so no length overflows.  Nothing
 * here allocates except kbr_version_normalize.
 */
#include <stdlib.h>
#include <string.h>

#include "kbr_cra.h"

/* Versions longer than this are refused. */
#define VERSION_MAX_LEN 1024

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

/* Two runs of digits as numbers of any length. */
static int cmp_num(const char *a, size_t an, const char *b, size_t bn)
{
    int c;

    while (an > 0 && *a == '0') {
        a++;
        an--;
    }
    while (bn > 0 && *b == '0') {
        b++;
        bn--;
    }
    if (an != bn)
        return an < bn ? -1 : 1;
    c = an > 0 ? memcmp(a, b, an) : 0;
    return sign(c);
}

static size_t digits(const char *s, size_t i, size_t n)
{
    size_t j = i;

    while (j < n && is_digit((unsigned char)s[j]))
        j++;
    return j - i;
}

/* ---- Debian ---- */

typedef struct {
    const char *epoch, *up, *rev;
    size_t epoch_n, up_n, rev_n;
} deb_version;

static bool is_blank(int c)
{
    return c == ' ' || c == '\t';
}

#define DEB_FAIL(...) kbr_fail(msg, KBR_ERR_BAD_REQUEST, "deb version \"%.60s\": " __VA_ARGS__)

static kbr_err deb_parse(const char *s, deb_version *v, kbr_msg *msg)
{
    size_t start = 0, end, n = strlen(s), colon, hyphen;

    memset(v, 0, sizeof(*v));
    while (start < n && is_blank((unsigned char)s[start]))
        start++;
    if (start == n)
        return DEB_FAIL("empty", s);
    end = start;
    while (end < n && !is_blank((unsigned char)s[end]))
        end++;
    for (size_t i = end; i < n; i++) {
        if (!is_blank((unsigned char)s[i]))
            return DEB_FAIL("embedded spaces", s);
    }
    colon = start;
    while (colon < end && s[colon] != ':')
        colon++;
    if (colon < end) {
        size_t en = colon - start;

        if (en == 0)
            return DEB_FAIL("the epoch is empty", s);
        if (digits(s, start, colon) != en)
            return DEB_FAIL("the epoch is not a number", s);
        /* dpkg keeps the epoch in an int. */
        if (cmp_num(s + start, en, "2147483647", 10) > 0)
            return DEB_FAIL("the epoch is too big", s);
        if (colon + 1 == end)
            return DEB_FAIL("nothing after the epoch's ':'", s);
        v->epoch = s + start;
        v->epoch_n = en;
        start = colon + 1;
    }
    hyphen = end;
    for (size_t i = start; i < end; i++) {
        if (s[i] == '-')
            hyphen = i;
    }
    v->up = s + start;
    v->up_n = hyphen - start;
    if (hyphen < end) {
        if (hyphen + 1 == end)
            return DEB_FAIL("the revision is empty", s);
        v->rev = s + hyphen + 1;
        v->rev_n = end - hyphen - 1;
    }
    if (v->up_n == 0)
        return DEB_FAIL("the upstream version is empty", s);
    if (!is_digit((unsigned char)v->up[0]))
        return DEB_FAIL("the upstream version does not start with a digit", s);
    for (size_t i = 0; i < v->up_n; i++) {
        int c = (unsigned char)v->up[i];

        if (!is_digit(c) && !is_alpha(c) && strchr(".-+~:", c) == NULL)
            return DEB_FAIL("'%c' is not allowed in the upstream version", s, c);
    }
    for (size_t i = 0; i < v->rev_n; i++) {
        int c = (unsigned char)v->rev[i];

        if (!is_digit(c) && !is_alpha(c) && strchr(".+~", c) == NULL)
            return DEB_FAIL("'%c' is not allowed in the revision", s, c);
    }
    return KBR_OK;
}

static int deb_order(int c)
{
    if (is_digit(c))
        return 0;
    if (is_alpha(c))
        return c;
    if (c == '~')
        return -1;
    if (c != 0)
        return c + 256;
    return 0;
}

/* dpkg's verrevcmp() over spans. */
static int verrevcmp(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;

    while (i < an || j < bn) {
        int first_diff = 0;

        while ((i < an && !is_digit((unsigned char)a[i])) ||
               (j < bn && !is_digit((unsigned char)b[j]))) {
            int ac = i < an ? deb_order((unsigned char)a[i]) : 0;
            int bc = j < bn ? deb_order((unsigned char)b[j]) : 0;

            if (ac != bc)
                return sign(ac - bc);
            i++;
            j++;
        }
        while (i < an && a[i] == '0')
            i++;
        while (j < bn && b[j] == '0')
            j++;
        while (i < an && j < bn && is_digit((unsigned char)a[i]) && is_digit((unsigned char)b[j])) {
            if (first_diff == 0)
                first_diff = a[i] - b[j];
            i++;
            j++;
        }
        if (i < an && is_digit((unsigned char)a[i]))
            return 1;
        if (j < bn && is_digit((unsigned char)b[j]))
            return -1;
        if (first_diff != 0)
            return sign(first_diff);
    }
    return 0;
}

static int deb_cmp(const deb_version *a, const deb_version *b)
{
    int c = cmp_num(a->epoch != NULL ? a->epoch : "", a->epoch_n, b->epoch != NULL ? b->epoch : "",
                    b->epoch_n);

    if (c == 0)
        c = verrevcmp(a->up, a->up_n, b->up, b->up_n);
    if (c == 0)
        c = verrevcmp(a->rev != NULL ? a->rev : "", a->rev_n, b->rev != NULL ? b->rev : "",
                      b->rev_n);
    return c;
}

/* ---- Semantic Versioning 2.0.0 ---- */

typedef struct {
    const char *major, *minor, *patch, *pre;
    size_t major_n, minor_n, patch_n, pre_n;
} semver;

#define SEMVER_FAIL(...)                                                                           \
    kbr_fail(msg, KBR_ERR_BAD_REQUEST,                                                             \
             "%s version \"%.60s\" is not MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]: " __VA_ARGS__)

static bool ident_char(int c)
{
    return is_digit(c) || is_alpha(c) || c == '-';
}

/* A numeric identifier at s[*i]: "0" or no leading zero. */
static bool semver_number(const char *s, size_t *i, size_t n, const char **at, size_t *len)
{
    size_t d = digits(s, *i, n);

    if (d == 0 || (d > 1 && s[*i] == '0'))
        return false;
    *at = s + *i;
    *len = d;
    *i += d;
    return true;
}

/* Dot-separated identifiers from s[*i] to the first char outside them; numeric ones checked. */
static kbr_err semver_idents(const char *name, const char *s, size_t *i, size_t n,
                             bool numeric_rule, const char *what, kbr_msg *msg)
{
    for (;;) {
        size_t j = *i, d;

        while (j < n && ident_char((unsigned char)s[j]))
            j++;
        if (j == *i)
            return SEMVER_FAIL("an empty %s identifier", name, s, what);
        d = digits(s, *i, j);
        if (numeric_rule && d == j - *i && d > 1 && s[*i] == '0')
            return SEMVER_FAIL("a numeric %s identifier with a leading zero", name, s, what);
        *i = j;
        if (*i == n || s[*i] != '.')
            return KBR_OK;
        (*i)++;
    }
}

/* name: the scheme, for messages. */
static kbr_err semver_parse(const char *name, const char *s, semver *v, kbr_msg *msg)
{
    kbr_err err;
    size_t i = 0, n = strlen(s);

    memset(v, 0, sizeof(*v));
    if (!semver_number(s, &i, n, &v->major, &v->major_n) || i == n || s[i++] != '.' ||
        !semver_number(s, &i, n, &v->minor, &v->minor_n) || i == n || s[i++] != '.' ||
        !semver_number(s, &i, n, &v->patch, &v->patch_n))
        return SEMVER_FAIL("three numbers without leading zeros are needed", name, s);
    if (i < n && s[i] == '-') {
        size_t start = ++i;

        if ((err = semver_idents(name, s, &i, n, true, "pre-release", msg)) != KBR_OK)
            return err;
        v->pre = s + start;
        v->pre_n = i - start;
    }
    if (i < n && s[i] == '+') {
        i++;
        if ((err = semver_idents(name, s, &i, n, false, "build", msg)) != KBR_OK)
            return err;
    }
    if (i != n)
        return SEMVER_FAIL("'%c' is not expected there", name, s, s[i]);
    return KBR_OK;
}

static int semver_ident_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    bool na = digits(a, 0, an) == an, nb = digits(b, 0, bn) == bn;
    int c;

    if (na && nb)
        return cmp_num(a, an, b, bn);
    if (na != nb)
        return na ? -1 : 1;
    c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0)
        return sign(c);
    return an < bn ? -1 : an > bn;
}

static int semver_cmp(const semver *a, const semver *b)
{
    int c = cmp_num(a->major, a->major_n, b->major, b->major_n);
    size_t i = 0, j = 0;

    if (c == 0)
        c = cmp_num(a->minor, a->minor_n, b->minor, b->minor_n);
    if (c == 0)
        c = cmp_num(a->patch, a->patch_n, b->patch, b->patch_n);
    if (c != 0)
        return c;
    if (a->pre == NULL || b->pre == NULL)
        return a->pre == b->pre ? 0 : (a->pre == NULL ? 1 : -1);
    while (i < a->pre_n && j < b->pre_n) {
        size_t ie = i, je = j;

        while (ie < a->pre_n && a->pre[ie] != '.')
            ie++;
        while (je < b->pre_n && b->pre[je] != '.')
            je++;
        c = semver_ident_cmp(a->pre + i, ie - i, b->pre + j, je - j);
        if (c != 0)
            return c;
        i = ie + 1;
        j = je + 1;
    }
    /* A larger set of identifiers has higher precedence when all before are equal. */
    return i < a->pre_n ? 1 : (j < b->pre_n ? -1 : 0);
}

/* ---- PEP 440 ---- */

enum { PRE_DEV_ONLY = -1, PRE_A = 0, PRE_B = 1, PRE_RC = 2, PRE_NONE = 3 };

typedef struct {
    const char *epoch, *release, *pre_num, *post_num, *dev_num, *local;
    size_t epoch_n, release_n, pre_num_n, post_num_n, dev_num_n, local_n;
    int pre; /* PRE_A, PRE_B, PRE_RC or PRE_NONE */
    bool post, dev;
} pep440;

static bool py_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool py_sep(int c)
{
    return c == '.' || c == '_' || c == '-';
}

/* Whether s[*i..n) starts with word (lowercase), ignoring case; advances past it if so. */
static bool take_word(const char *s, size_t *i, size_t n, const char *word)
{
    size_t len = strlen(word);

    if (n - *i < len)
        return false;
    for (size_t k = 0; k < len; k++) {
        if (lower((unsigned char)s[*i + k]) != word[k])
            return false;
    }
    *i += len;
    return true;
}

static void take_digits(const char *s, size_t *i, size_t n, const char **at, size_t *len)
{
    *len = digits(s, *i, n);
    *at = s + *i;
    *i += *len;
}

static void opt_sep(const char *s, size_t *i, size_t n)
{
    if (*i < n && py_sep((unsigned char)s[*i]))
        (*i)++;
}

#define PEP440_FAIL(why)                                                                           \
    kbr_fail(msg, KBR_ERR_BAD_REQUEST, "pypi version \"%.60s\" is not a PEP 440 version: %s", s,   \
             why)

static kbr_err pep440_parse(const char *s, pep440 *v, kbr_msg *msg)
{
    static const struct {
        const char *word;
        int pre;
    } pre_words[] = {{"alpha", PRE_A},    {"a", PRE_A},    {"beta", PRE_B}, {"b", PRE_B},
                     {"preview", PRE_RC}, {"pre", PRE_RC}, {"c", PRE_RC},   {"rc", PRE_RC}};
    size_t n = strlen(s), i = 0, save, d;

    memset(v, 0, sizeof(*v));
    v->pre = PRE_NONE;
    while (i < n && py_space((unsigned char)s[i]))
        i++;
    while (n > i && py_space((unsigned char)s[n - 1]))
        n--;
    if (i < n && lower((unsigned char)s[i]) == 'v')
        i++;
    d = digits(s, i, n);
    if (d > 0 && i + d < n && s[i + d] == '!') {
        v->epoch = s + i;
        v->epoch_n = d;
        i += d + 1;
    }
    if (digits(s, i, n) == 0)
        return PEP440_FAIL("the release does not start with a number");
    v->release = s + i;
    i += digits(s, i, n);
    while (i + 1 < n && s[i] == '.' && is_digit((unsigned char)s[i + 1]))
        i += 1 + digits(s, i + 1, n);
    v->release_n = (size_t)(s + i - v->release);
    /* Pre-release. */
    save = i;
    opt_sep(s, &i, n);
    for (size_t k = 0; k < sizeof(pre_words) / sizeof(pre_words[0]); k++) {
        if (take_word(s, &i, n, pre_words[k].word)) {
            v->pre = pre_words[k].pre;
            break;
        }
    }
    if (v->pre != PRE_NONE) {
        opt_sep(s, &i, n);
        take_digits(s, &i, n, &v->pre_num, &v->pre_num_n);
    } else {
        i = save;
    }
    /* Post-release: "-N", or [sep] post|rev|r [sep] [N]. */
    save = i;
    if (i + 1 < n && s[i] == '-' && is_digit((unsigned char)s[i + 1])) {
        i++;
        v->post = true;
        take_digits(s, &i, n, &v->post_num, &v->post_num_n);
    } else {
        opt_sep(s, &i, n);
        if (take_word(s, &i, n, "post") || take_word(s, &i, n, "rev") || take_word(s, &i, n, "r")) {
            v->post = true;
            opt_sep(s, &i, n);
            take_digits(s, &i, n, &v->post_num, &v->post_num_n);
        } else {
            i = save;
        }
    }
    /* Development release. */
    save = i;
    opt_sep(s, &i, n);
    if (take_word(s, &i, n, "dev")) {
        v->dev = true;
        opt_sep(s, &i, n);
        take_digits(s, &i, n, &v->dev_num, &v->dev_num_n);
    } else {
        i = save;
    }
    /* Local version label: alphanumerics in segments separated by one of "._-". */
    if (i < n && s[i] == '+') {
        i++;
        v->local = s + i;
        for (;;) {
            size_t start = i;

            while (i < n && (is_digit((unsigned char)s[i]) || is_alpha((unsigned char)s[i])))
                i++;
            if (i == start)
                return PEP440_FAIL("an empty segment in the local version label");
            if (i == n || !py_sep((unsigned char)s[i]))
                break;
            i++;
        }
        v->local_n = (size_t)(s + i - v->local);
    }
    if (i != n)
        return PEP440_FAIL("unexpected text after the version");
    return KBR_OK;
}

/* The next '.'-separated number of a release, or "0" past its end. */
static void next_release_part(const char *r, size_t n, size_t *i, const char **at, size_t *len)
{
    if (*i >= n) {
        *at = "0";
        *len = 1;
        return;
    }
    *at = r + *i;
    *len = digits(r, *i, n);
    *i += *len + 1;
}

static int pep440_pre_rank(const pep440 *v)
{
    if (v->pre == PRE_NONE && !v->post && v->dev)
        return PRE_DEV_ONLY;
    return v->pre;
}

/* Local labels: segments compared in turn, words before numbers, numbers by value. */
static int pep440_local_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;

    while (i < an && j < bn) {
        size_t ie = i, je = j;
        bool na, nb;
        int c = 0;

        while (ie < an && !py_sep((unsigned char)a[ie]))
            ie++;
        while (je < bn && !py_sep((unsigned char)b[je]))
            je++;
        na = digits(a, i, ie) == ie - i;
        nb = digits(b, j, je) == je - j;
        if (na && nb) {
            c = cmp_num(a + i, ie - i, b + j, je - j);
        } else if (na != nb) {
            c = na ? 1 : -1;
        } else {
            size_t k = 0;

            while (c == 0 && i + k < ie && j + k < je) {
                c = sign(lower((unsigned char)a[i + k]) - lower((unsigned char)b[j + k]));
                k++;
            }
            if (c == 0)
                c = (ie - i) < (je - j) ? -1 : (ie - i) > (je - j);
        }
        if (c != 0)
            return c;
        i = ie + 1;
        j = je + 1;
    }
    return i < an ? 1 : (j < bn ? -1 : 0);
}

static int pep440_cmp(const pep440 *a, const pep440 *b)
{
    size_t i = 0, j = 0;
    int c = cmp_num(a->epoch != NULL ? a->epoch : "", a->epoch_n, b->epoch != NULL ? b->epoch : "",
                    b->epoch_n);

    if (c != 0)
        return c;
    /* Releases: trailing zeros do not count (1.0 == 1.0.0). */
    while (i < a->release_n || j < b->release_n) {
        const char *pa, *pb;
        size_t la, lb;

        next_release_part(a->release, a->release_n, &i, &pa, &la);
        next_release_part(b->release, b->release_n, &j, &pb, &lb);
        c = cmp_num(pa, la, pb, lb);
        if (c != 0)
            return c;
    }
    c = sign(pep440_pre_rank(a) - pep440_pre_rank(b));
    if (c == 0 && a->pre != PRE_NONE)
        c = cmp_num(a->pre_num, a->pre_num_n, b->pre_num, b->pre_num_n);
    if (c == 0 && a->post != b->post)
        c = a->post ? 1 : -1;
    if (c == 0 && a->post)
        c = cmp_num(a->post_num, a->post_num_n, b->post_num, b->post_num_n);
    if (c == 0 && a->dev != b->dev)
        c = a->dev ? -1 : 1;
    if (c == 0 && a->dev)
        c = cmp_num(a->dev_num, a->dev_num_n, b->dev_num, b->dev_num_n);
    if (c == 0 && (a->local != NULL) != (b->local != NULL))
        c = a->local != NULL ? 1 : -1;
    if (c == 0 && a->local != NULL)
        c = pep440_local_cmp(a->local, a->local_n, b->local, b->local_n);
    return c;
}

/* ---- generic ---- */

#define GENERIC_FAIL(why)                                                                          \
    kbr_fail(msg, KBR_ERR_BAD_REQUEST, "generic version \"%.60s\": %s", s, why)

static kbr_err generic_check(const char *s, kbr_msg *msg)
{
    bool any = false;

    if (s[0] == '\0')
        return GENERIC_FAIL("empty");
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if (c <= 0x20 || c >= 0x7f)
            return GENERIC_FAIL("only printable ASCII without spaces is allowed");
        any = any || is_digit(c) || is_alpha(c);
    }
    if (!any)
        return GENERIC_FAIL("no digit or letter");
    return KBR_OK;
}

/* The next run of digits or letters at or after s[*i]; false at the end. */
static bool generic_run(const char *s, size_t *i, const char **at, size_t *len, bool *num)
{
    while (s[*i] != '\0' && !is_digit((unsigned char)s[*i]) && !is_alpha((unsigned char)s[*i]))
        (*i)++;
    if (s[*i] == '\0')
        return false;
    *at = s + *i;
    *num = is_digit((unsigned char)s[*i]);
    while (s[*i] != '\0' &&
           (*num ? is_digit((unsigned char)s[*i]) : is_alpha((unsigned char)s[*i])))
        (*i)++;
    *len = (size_t)(s + *i - *at);
    return true;
}

static int generic_cmp(const char *a, const char *b)
{
    size_t i = 0, j = 0;

    for (;;) {
        const char *pa = "0", *pb = "0";
        size_t la = 1, lb = 1;
        bool na = true, nb = true;
        bool ha = generic_run(a, &i, &pa, &la, &na), hb = generic_run(b, &j, &pb, &lb, &nb);
        int c = 0;

        if (!ha && !hb)
            return 0;
        if (na && nb) {
            c = cmp_num(pa, la, pb, lb);
        } else if (na != nb) {
            c = na ? 1 : -1;
        } else {
            for (size_t k = 0; c == 0 && k < la && k < lb; k++)
                c = sign(lower((unsigned char)pa[k]) - lower((unsigned char)pb[k]));
            if (c == 0)
                c = la < lb ? -1 : la > lb;
        }
        if (c != 0)
            return c;
    }
}

/* ---- the schemes ---- */

static const char *const scheme_names[] = {
    [KBR_VSCHEME_DEB] = "deb",   [KBR_VSCHEME_SEMVER] = "semver",   [KBR_VSCHEME_NPM] = "npm",
    [KBR_VSCHEME_PYPI] = "pypi", [KBR_VSCHEME_GENERIC] = "generic",
};

kbr_err kbr_vscheme_from_name(const char *name, kbr_vscheme *out, kbr_msg *msg)
{
    for (size_t i = 0; name != NULL && i < sizeof(scheme_names) / sizeof(scheme_names[0]); i++) {
        if (strcmp(name, scheme_names[i]) == 0) {
            *out = (kbr_vscheme)i;
            return KBR_OK;
        }
    }
    return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                    "version scheme \"%.40s\" is not supported (deb, semver, npm, pypi, generic)",
                    name != NULL ? name : "");
}

const char *kbr_vscheme_name(kbr_vscheme scheme)
{
    return (size_t)scheme < sizeof(scheme_names) / sizeof(scheme_names[0]) ? scheme_names[scheme]
                                                                           : "?";
}

typedef union {
    deb_version deb;
    semver sem;
    pep440 py;
} parsed_version;

static kbr_err parse_any(kbr_vscheme scheme, const char *s, parsed_version *v, kbr_msg *msg)
{
    if (s == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s version: missing", kbr_vscheme_name(scheme));
    if (strlen(s) > VERSION_MAX_LEN)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s version: longer than %d characters",
                        kbr_vscheme_name(scheme), VERSION_MAX_LEN);
    switch (scheme) {
    case KBR_VSCHEME_DEB:
        return deb_parse(s, &v->deb, msg);
    case KBR_VSCHEME_SEMVER:
    case KBR_VSCHEME_NPM:
        return semver_parse(kbr_vscheme_name(scheme), s, &v->sem, msg);
    case KBR_VSCHEME_PYPI:
        return pep440_parse(s, &v->py, msg);
    case KBR_VSCHEME_GENERIC:
        return generic_check(s, msg);
    }
    return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "unknown version scheme %d", (int)scheme);
}

kbr_err kbr_version_check(kbr_vscheme scheme, const char *v, kbr_msg *msg)
{
    parsed_version p;

    return parse_any(scheme, v, &p, msg);
}

kbr_err kbr_version_cmp(kbr_vscheme scheme, const char *a, const char *b, int *out, kbr_msg *msg)
{
    kbr_err err;
    parsed_version pa, pb;

    *out = 0;
    if ((err = parse_any(scheme, a, &pa, msg)) != KBR_OK ||
        (err = parse_any(scheme, b, &pb, msg)) != KBR_OK)
        return err;
    switch (scheme) {
    case KBR_VSCHEME_DEB:
        *out = deb_cmp(&pa.deb, &pb.deb);
        break;
    case KBR_VSCHEME_SEMVER:
    case KBR_VSCHEME_NPM:
        *out = semver_cmp(&pa.sem, &pb.sem);
        break;
    case KBR_VSCHEME_PYPI:
        *out = pep440_cmp(&pa.py, &pb.py);
        break;
    case KBR_VSCHEME_GENERIC:
        *out = generic_cmp(a, b);
        break;
    }
    return KBR_OK;
}

/* ---- PEP 440 normal form ---- */

typedef struct {
    char *p;
    size_t len;
} out_buf;

static void put(out_buf *o, const char *s, size_t n)
{
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* A number without leading zeros ("0" for none). */
static void put_num(out_buf *o, const char *s, size_t n)
{
    while (n > 1 && *s == '0') {
        s++;
        n--;
    }
    if (n == 0)
        put(o, "0", 1);
    else
        put(o, s, n);
}

kbr_err kbr_version_normalize(kbr_vscheme scheme, const char *v, char **out, kbr_msg *msg)
{
    kbr_err err;
    parsed_version p;
    out_buf o;
    static const char *const pre_names[] = {"a", "b", "rc"};

    *out = NULL;
    if ((err = parse_any(scheme, v, &p, msg)) != KBR_OK)
        return err;
    /* Never longer than the input plus the letters and zeros it may gain. */
    o.p = malloc(strlen(v) + 32);
    o.len = 0;
    if (o.p == NULL)
        return KBR_ERR_NOMEM;
    if (scheme != KBR_VSCHEME_PYPI) {
        put(&o, v, strlen(v));
        o.p[o.len] = '\0';
        *out = o.p;
        return KBR_OK;
    }
    if (p.py.epoch != NULL && cmp_num(p.py.epoch, p.py.epoch_n, "0", 1) != 0) {
        put_num(&o, p.py.epoch, p.py.epoch_n);
        put(&o, "!", 1);
    }
    for (size_t i = 0; i < p.py.release_n;) {
        size_t d = digits(p.py.release, i, p.py.release_n);

        if (i > 0)
            put(&o, ".", 1);
        put_num(&o, p.py.release + i, d);
        i += d + 1;
    }
    if (p.py.pre != PRE_NONE) {
        put(&o, pre_names[p.py.pre], strlen(pre_names[p.py.pre]));
        put_num(&o, p.py.pre_num, p.py.pre_num_n);
    }
    if (p.py.post) {
        put(&o, ".post", 5);
        put_num(&o, p.py.post_num, p.py.post_num_n);
    }
    if (p.py.dev) {
        put(&o, ".dev", 4);
        put_num(&o, p.py.dev_num, p.py.dev_num_n);
    }
    if (p.py.local != NULL) {
        put(&o, "+", 1);
        for (size_t i = 0; i < p.py.local_n; i++) {
            char c = (char)lower((unsigned char)p.py.local[i]);

            put(&o, py_sep((unsigned char)c) ? "." : &c, 1);
        }
    }
    o.p[o.len] = '\0';
    *out = o.p;
    return KBR_OK;
}
