/*
 * vers.c - version range specifiers, vers:<type>/<constraints>
 * (https://github.com/package-url/vers-spec, docs/specification/).
 *
 * Only the canonical form is read, as the specification requires: tools
 * "shall report an error instead of normalizing".  Containment walks the
 * intervals the sorted constraints mark out; see kbr_vers_contains.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbr_cra.h"

#define VERS_MAX_LEN 65536

void kbr_vers_free(kbr_vers *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n_constraints; i++)
        free(v->constraints[i].version);
    free(v->constraints);
    free(v);
}

/* The characters a version must carry percent-encoded, and only those. */
static bool must_encode(int c)
{
    return c != '\0' && strchr("<>=!*|%", c) != NULL;
}

static int hex_upper(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const char *op_text(kbr_vers_op op)
{
    switch (op) {
    case KBR_VERS_EQ:
        return "";
    case KBR_VERS_NE:
        return "!=";
    case KBR_VERS_LT:
        return "<";
    case KBR_VERS_LE:
        return "<=";
    case KBR_VERS_GT:
        return ">";
    case KBR_VERS_GE:
        return ">=";
    case KBR_VERS_ANY:
        return "*";
    }
    return "?";
}

/* One constraint s[0..n): comparator, then the canonically encoded version. */
static kbr_err parse_constraint(const char *s, size_t n, kbr_vers_constraint *c, kbr_msg *msg)
{
    static const struct {
        const char *text;
        kbr_vers_op op;
    } ops[] = {{">=", KBR_VERS_GE},
               {"<=", KBR_VERS_LE},
               {"!=", KBR_VERS_NE},
               {"<", KBR_VERS_LT},
               {">", KBR_VERS_GT}};
    size_t skip = 0, j = 0;
    char *v;

    c->op = KBR_VERS_EQ;
    for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        size_t len = strlen(ops[k].text);

        if (n >= len && strncmp(s, ops[k].text, len) == 0) {
            c->op = ops[k].op;
            skip = len;
            break;
        }
    }
    s += skip;
    n -= skip;
    if (n == 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vers: a constraint has no version");
    v = malloc(n + 1);
    if (v == NULL)
        return KBR_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        int hi, lo, d;

        if (s[i] != '%') {
            if (must_encode((unsigned char)s[i])) {
                free(v);
                return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "vers: version \"%.*s\" has '%c', which must be percent-encoded",
                                (int)(n > 40 ? 40 : n), s, s[i]);
            }
            v[j++] = s[i];
            continue;
        }
        hi = i + 1 < n ? hex_upper((unsigned char)s[i + 1]) : -1;
        lo = i + 2 < n ? hex_upper((unsigned char)s[i + 2]) : -1;
        d = hi * 16 + lo;
        if (hi < 0 || lo < 0 || !must_encode(d)) {
            free(v);
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "vers: version \"%.*s\" has a percent-encoding that is invalid or not "
                            "canonical (only %%21 %%25 %%2A %%3C %%3D %%3E %%7C, uppercase)",
                            (int)(n > 40 ? 40 : n), s);
        }
        v[j++] = (char)d;
        i += 2;
    }
    v[j] = '\0';
    c->version = v;
    return KBR_OK;
}

/* err with msg, its text now starting "vers: ". */
static kbr_err vers_prefixed(kbr_err err, kbr_msg *msg)
{
    static const char prefix[] = "vers: ";
    size_t keep;

    if (err != KBR_OK && msg != NULL) {
        keep = strnlen(msg->text, sizeof(msg->text) - sizeof(prefix));
        memmove(msg->text + sizeof(prefix) - 1, msg->text, keep);
        memcpy(msg->text, prefix, sizeof(prefix) - 1);
        msg->text[sizeof(prefix) - 1 + keep] = '\0';
    }
    return err;
}

static bool is_lt(kbr_vers_op op)
{
    return op == KBR_VERS_LT || op == KBR_VERS_LE;
}

static bool is_gt(kbr_vers_op op)
{
    return op == KBR_VERS_GT || op == KBR_VERS_GE;
}

/* The rules on contiguous comparators (the specification's "Normalized, canonical ..."). */
static kbr_err check_sequence(const kbr_vers *r, kbr_msg *msg)
{
    const kbr_vers_constraint *prev = NULL;

    /* Ignoring "!=": "=" is followed only by "=", ">" or ">=". */
    for (size_t i = 0; i < r->n_constraints; i++) {
        const kbr_vers_constraint *c = &r->constraints[i];

        if (c->op == KBR_VERS_NE)
            continue;
        if (prev != NULL && prev->op == KBR_VERS_EQ && c->op != KBR_VERS_EQ && !is_gt(c->op))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "vers: \"%s%.40s\" cannot follow the version \"%.40s\"", op_text(c->op),
                            c->version, prev->version);
        prev = c;
    }
    /* Ignoring "=" and "!=": less-than and greater-than alternate. */
    prev = NULL;
    for (size_t i = 0; i < r->n_constraints; i++) {
        const kbr_vers_constraint *c = &r->constraints[i];

        if (c->op == KBR_VERS_EQ || c->op == KBR_VERS_NE)
            continue;
        if (prev != NULL && is_lt(prev->op) == is_lt(c->op))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "vers: \"%s%.40s\" follows \"%s%.40s\": '<' and '>' constraints must "
                            "alternate",
                            op_text(c->op), c->version, op_text(prev->op), prev->version);
        prev = c;
    }
    return KBR_OK;
}

kbr_err kbr_vers_parse(const char *s, kbr_vers **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_vers *r = NULL;
    size_t len, type_end, i, count = 1;
    char type[32];

    *out = NULL;
    KBR_ENSURE(s != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vers: missing"));
    len = strlen(s);
    KBR_ENSURE(len <= VERS_MAX_LEN,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vers: longer than %d characters", VERS_MAX_LEN));
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        KBR_ENSURE(
            c > 0x20 && c < 0x7f,
            kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                     "vers: character %zu is whitespace or not printable ASCII (byte 0x%02x)",
                     i + 1, c));
    }
    KBR_ENSURE(strncmp(s, "vers:", 5) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vers: does not start with \"vers:\""));
    type_end = 5;
    while (type_end < len && s[type_end] != '/')
        type_end++;
    KBR_ENSURE(type_end < len && type_end - 5 < sizeof(type),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vers: no \"<type>/\" after \"vers:\""));
    memcpy(type, s + 5, type_end - 5);
    type[type_end - 5] = '\0';
    r = calloc(1, sizeof(*r));
    KBR_ENSURE(r != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(kbr_vscheme_from_name(type, &r->scheme, NULL) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "vers: type \"%s\" is not supported (deb, semver, npm, pypi, generic)",
                        type));
    s += type_end + 1;
    len -= type_end + 1;
    KBR_ENSURE(len > 0, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vers: no constraints"));
    if (strcmp(s, "*") == 0) {
        r->constraints = calloc(1, sizeof(*r->constraints));
        KBR_ENSURE(r->constraints != NULL, KBR_ERR_NOMEM);
        r->constraints[0].op = KBR_VERS_ANY;
        r->n_constraints = 1;
        *out = r;
        return KBR_OK;
    }
    KBR_ENSURE(strchr(s, '*') == NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vers: '*' must stand alone"));
    KBR_ENSURE(s[0] != '|' && s[len - 1] != '|' && strstr(s, "||") == NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "vers: an empty constraint (a leading, trailing or doubled '|')"));
    for (i = 0; i < len; i++)
        count += s[i] == '|';
    r->constraints = calloc(count, sizeof(*r->constraints));
    KBR_ENSURE(r->constraints != NULL, KBR_ERR_NOMEM);
    for (i = 0; i < count; i++) {
        size_t n = strcspn(s, "|");
        kbr_vers_constraint *c = &r->constraints[i];
        int cmp;

        KBR_GUARD(parse_constraint(s, n, c, msg));
        r->n_constraints++;
        KBR_GUARD(vers_prefixed(kbr_version_check(r->scheme, c->version, msg), msg));
        if (i > 0) {
            const char *before = r->constraints[i - 1].version;

            KBR_GUARD(kbr_version_cmp(r->scheme, before, c->version, &cmp, msg));
            KBR_ENSURE(cmp != 0, kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                          "vers: version \"%.40s\" is the same as \"%.40s\": "
                                          "each version appears once",
                                          c->version, before));
            KBR_ENSURE(cmp < 0, kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                         "vers: version \"%.40s\" sorts before \"%.40s\": "
                                         "constraints are sorted by version",
                                         c->version, before));
        }
        s += n + 1;
    }
    KBR_GUARD(check_sequence(r, msg));
    *out = r;
    r = NULL;
out:
    kbr_vers_free(r);
    return err;
}

kbr_err kbr_vers_to_string(const kbr_vers *v, char **out)
{
    size_t cap = 16 + strlen(kbr_vscheme_name(v->scheme)), len;
    char *s;

    *out = NULL;
    for (size_t i = 0; i < v->n_constraints; i++)
        cap += 4 + (v->constraints[i].version != NULL ? 3 * strlen(v->constraints[i].version) : 0);
    s = malloc(cap);
    if (s == NULL)
        return KBR_ERR_NOMEM;
    len = (size_t)snprintf(s, cap, "vers:%s/", kbr_vscheme_name(v->scheme));
    for (size_t i = 0; i < v->n_constraints; i++) {
        const kbr_vers_constraint *c = &v->constraints[i];
        const char *t = op_text(c->op);

        if (i > 0)
            s[len++] = '|';
        memcpy(s + len, t, strlen(t));
        len += strlen(t);
        for (const char *p = c->version; p != NULL && *p != '\0'; p++) {
            if (must_encode((unsigned char)*p))
                len += (size_t)snprintf(s + len, cap - len, "%%%02X", (unsigned char)*p);
            else
                s[len++] = *p;
        }
    }
    s[len] = '\0';
    *out = s;
    return KBR_OK;
}

/*
 * The specification's procedure (docs/specification/how-to-parse.md), with
 * its pairwise walk read as intervals so that a single "<" or ">" bound
 * counts too: equal to a "=", "<=" or ">=" version is in, equal to a "!="
 * version is out; then, over the "<"/"<="/">"/">=" constraints alone, below a
 * leading upper bound, above a trailing lower bound, or between a lower bound
 * and the upper bound after it is in.  A range of "!=" constraints only holds
 * every other version; one of "=" (and "!=") constraints only, just its
 * versions.
 */
kbr_err kbr_vers_contains(const kbr_vers *range, const char *version, bool *in, kbr_msg *msg)
{
    kbr_err err;
    const kbr_vers_constraint *bounds[2] = {NULL, NULL};
    bool any_eq = false, any_bound = false;
    int cmp;

    *in = false;
    if ((err = kbr_version_check(range->scheme, version, msg)) != KBR_OK)
        return vers_prefixed(err, msg);
    if (range->n_constraints == 1 && range->constraints[0].op == KBR_VERS_ANY) {
        *in = true;
        return KBR_OK;
    }
    for (size_t i = 0; i < range->n_constraints; i++) {
        const kbr_vers_constraint *c = &range->constraints[i];

        if ((err = kbr_version_cmp(range->scheme, version, c->version, &cmp, msg)) != KBR_OK)
            return err;
        if (cmp == 0) {
            *in = c->op == KBR_VERS_EQ || c->op == KBR_VERS_LE || c->op == KBR_VERS_GE;
            return KBR_OK;
        }
        any_eq = any_eq || c->op == KBR_VERS_EQ;
        any_bound = any_bound || (c->op != KBR_VERS_EQ && c->op != KBR_VERS_NE);
    }
    if (!any_bound) {
        *in = !any_eq;
        return KBR_OK;
    }
    for (size_t i = 0; i < range->n_constraints; i++) {
        const kbr_vers_constraint *c = &range->constraints[i];

        if (c->op == KBR_VERS_EQ || c->op == KBR_VERS_NE)
            continue;
        if ((err = kbr_version_cmp(range->scheme, version, c->version, &cmp, msg)) != KBR_OK)
            return err;
        if (bounds[0] == NULL && bounds[1] == NULL && is_lt(c->op) && cmp < 0) {
            *in = true; /* below the first, upper, bound */
            return KBR_OK;
        }
        if (is_gt(c->op)) {
            bounds[0] = cmp > 0 ? c : NULL;
            bounds[1] = c; /* the last bound seen */
            continue;
        }
        if (bounds[0] != NULL && cmp < 0) {
            *in = true; /* between a lower bound and this upper one */
            return KBR_OK;
        }
        bounds[0] = NULL;
        bounds[1] = c;
    }
    /* Above a trailing lower bound. */
    *in = bounds[0] != NULL && bounds[0] == bounds[1];
    return KBR_OK;
}
