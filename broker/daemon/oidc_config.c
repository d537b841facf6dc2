/*
 * oidc_config.c - the file that `oidc_issuers` names: the OpenID Connect issuers whose ID
 * tokens POST /v1/tokens/exchange accepts, and the rules that turn their claims into a
 * broker token.  `key = value` lines as in keybroker.conf, grouped in sections:
 *
 *   [issuer github]
 *   issuer     = https://token.actions.githubusercontent.com
 *   jwks_url   = https://token.actions.githubusercontent.com/.well-known/jwks
 *   audience   = https://keybroker.example.com
 *   algorithms = RS256
 *
 *   [rule gateway-release]
 *   issuer           = github
 *   claim.repository = acme/gateway-firmware
 *   claim.ref        = refs/tags/v*
 *   principal        = ci:github/{repository}
 *   ops              = sign
 *   keys             = fw-gateway
 *   products         = gateway
 *
 * Everything that can be checked without a token is checked here, so that a mistake stops
 * the start with the line that made it: an unknown key, a rule that names no claim (it
 * would let every repository on the issuer in), a principal that is not in a namespace of
 * its issuer's own, an admin op, a JWKS URL in plain HTTP off the host.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"

#define MAX_ISSUERS 32
#define MAX_RULES   1024
#define MAX_CONDS   32

typedef struct {
    const char *path;
    char *dir; /* the file's directory: relative paths in it are relative to it */
    int line;
    kbr_msg *msg;
    kbd_oidc_config *c;
    enum { NONE, ISSUER, RULE } section;
    json_t *scope; /* the rule being read: its scope fields, as the API takes them */
    int section_line;
} reader;

static kbr_err bad(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kbr_err bad(reader *r, const char *fmt, ...)
{
    char text[KBR_MSG_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    return kbr_fail(r->msg, KBR_ERR_CONFIG, "%s:%d: %s", r->path, r->line, text);
}

static void issuer_cleanup(kbd_oidc_issuer *i)
{
    free(i->name);
    free(i->issuer);
    free(i->jwks_file);
    free(i->jwks_url);
    free(i->jwks_ca_file);
    free(i->audience);
    for (size_t k = 0; k < i->n_audit_claims; k++)
        free(i->audit_claims[k]);
    free(i->audit_claims);
    free(i->principal_prefix);
}

static void rule_cleanup(kbd_oidc_rule *r)
{
    free(r->name);
    for (size_t k = 0; k < r->nconds; k++) {
        free(r->conds[k].claim);
        free(r->conds[k].pattern);
    }
    free(r->conds);
    free(r->principal);
    kbr_scope_cleanup(&r->scope);
}

void kbd_oidc_config_cleanup(kbd_oidc_config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nissuers; i++)
        issuer_cleanup(&c->issuers[i]);
    for (size_t i = 0; i < c->nrules; i++)
        rule_cleanup(&c->rules[i]);
    free(c->issuers);
    free(c->rules);
    memset(c, 0, sizeof(*c));
}

static bool section_name_ok(const char *s)
{
    return kbr_name_valid(s) && strlen(s) <= 64;
}

static bool is_loopback_host(const char *host, size_t len)
{
    char buf[64];
    struct in_addr a4;

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, host, len);
    buf[len] = '\0';
    if (strcmp(buf, "localhost") == 0 || strcmp(buf, "[::1]") == 0)
        return true;
    return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* https://..., or http:// to a loopback address (a JWKS served on the host itself). */
static bool jwks_url_ok(const char *v)
{
    const char *host, *end;

    if (strncmp(v, "https://", 8) == 0)
        return v[8] != '\0' && v[8] != '/';
    if (strncmp(v, "http://", 7) != 0)
        return false;
    host = v + 7;
    end = host + strcspn(host, "/");
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (close == NULL || close > end)
            return false;
        return is_loopback_host(host, (size_t)(close - host + 1));
    }
    return is_loopback_host(host, (size_t)(strcspn(host, ":/")));
}

static kbr_err set_str(char **slot, const char *v)
{
    char *p = strdup(v);

    if (p == NULL)
        return KBR_ERR_NOMEM;
    free(*slot);
    *slot = p;
    return KBR_OK;
}

static kbr_err set_path(reader *r, char **slot, const char *v)
{
    char *p = NULL;

    if (v[0] == '/' || r->dir == NULL)
        return set_str(slot, v);
    if (asprintf(&p, "%s/%s", r->dir, v) < 0)
        return KBR_ERR_NOMEM;
    free(*slot);
    *slot = p;
    return KBR_OK;
}

static kbr_err set_long(reader *r, const char *k, const char *v, long min, long max, long *out)
{
    char *end = NULL;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max)
        return bad(r, "%s must be a number from %ld to %ld", k, min, max);
    *out = n;
    return KBR_OK;
}

/* Words separated by commas and/or blanks, each passed to fn. */
static kbr_err each_word(reader *r, const char *v, kbr_err (*fn)(reader *, const char *, void *),
                         void *arg)
{
    char *copy = strdup(v), *save = NULL;
    kbr_err err = KBR_OK;

    if (copy == NULL)
        return KBR_ERR_NOMEM;
    for (char *w = strtok_r(copy, ", \t", &save); w != NULL && err == KBR_OK;
         w = strtok_r(NULL, ", \t", &save))
        err = fn(r, w, arg);
    free(copy);
    return err;
}

static kbr_err add_alg(reader *r, const char *w, void *arg)
{
    kbr_jwa alg;

    if (kbr_jwa_from_name(w, &alg) != KBR_OK)
        return bad(r, "algorithm \"%s\" is not one of RS256, RS384, RS512, PS256, ES256, ES384", w);
    *(unsigned *)arg |= alg;
    return KBR_OK;
}

static kbr_err add_audit_claim(reader *r, const char *w, void *arg)
{
    kbd_oidc_issuer *i = arg;
    char **more;

    if (strlen(w) > 64)
        return bad(r, "audit_claims: \"%.64s...\" is too long for a claim name", w);
    more = realloc(i->audit_claims, (i->n_audit_claims + 1) * sizeof(*more));
    if (more == NULL)
        return KBR_ERR_NOMEM;
    i->audit_claims = more;
    if ((more[i->n_audit_claims] = strdup(w)) == NULL)
        return KBR_ERR_NOMEM;
    i->n_audit_claims++;
    return KBR_OK;
}

static kbr_err add_name(reader *r, const char *w, void *arg)
{
    (void)r;
    return json_array_append_new(arg, json_string(w)) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err issuer_key(reader *r, kbd_oidc_issuer *i, const char *k, const char *v)
{
    if (strcmp(k, "issuer") == 0) {
        if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
            return bad(r, "issuer must be the issuer's URL, as its tokens' iss claim has it");
        return set_str(&i->issuer, v);
    }
    if (strcmp(k, "jwks_file") == 0)
        return set_path(r, &i->jwks_file, v);
    if (strcmp(k, "jwks_url") == 0) {
        if (!jwks_url_ok(v))
            return bad(r, "jwks_url must be https (http only to a loopback address)");
        return set_str(&i->jwks_url, v);
    }
    if (strcmp(k, "jwks_ca_file") == 0)
        return set_path(r, &i->jwks_ca_file, v);
    if (strcmp(k, "audience") == 0)
        return strlen(v) <= 256 ? set_str(&i->audience, v)
                                : bad(r, "audience is longer than 256 characters");
    if (strcmp(k, "algorithms") == 0) {
        i->algs = 0;
        return each_word(r, v, add_alg, &i->algs);
    }
    if (strcmp(k, "leeway") == 0)
        return set_long(r, k, v, 0, 300, &i->leeway);
    if (strcmp(k, "max_ttl") == 0)
        return set_long(r, k, v, 60, 86400, &i->max_ttl);
    if (strcmp(k, "jwks_refresh") == 0)
        return set_long(r, k, v, 60, 86400, &i->jwks_refresh);
    if (strcmp(k, "jwks_min_interval") == 0)
        return set_long(r, k, v, 1, 3600, &i->jwks_min_interval);
    if (strcmp(k, "audit_claims") == 0)
        return each_word(r, v, add_audit_claim, i);
    return bad(r, "unknown key \"%s\" in an [issuer] section", k);
}

static kbd_oidc_issuer *issuer_named(kbd_oidc_config *c, const char *name, size_t *idx)
{
    for (size_t i = 0; i < c->nissuers; i++) {
        if (strcmp(c->issuers[i].name, name) == 0) {
            if (idx != NULL)
                *idx = i;
            return &c->issuers[i];
        }
    }
    return NULL;
}

static kbr_err rule_key(reader *r, kbd_oidc_rule *u, const char *k, const char *v)
{
    static const char *const lists[] = {"ops", "keys", "products", "batches", "devices", NULL};
    json_t *arr;

    if (strcmp(k, "issuer") == 0) {
        if (issuer_named(r->c, v, &u->issuer) == NULL)
            return bad(r, "issuer \"%s\" is not an [issuer] section above", v);
        u->issuer++; /* 0 stays "not set" until the section ends */
        return KBR_OK;
    }
    if (strncmp(k, "claim.", 6) == 0) {
        kbd_claim_cond *more;
        if (k[6] == '\0' || strlen(k + 6) > 64)
            return bad(r, "claim.NAME needs a claim name of 1 to 64 characters");
        for (size_t i = 0; i < u->nconds; i++)
            if (strcmp(u->conds[i].claim, k + 6) == 0)
                return bad(r, "claim.%s is given twice", k + 6);
        if (u->nconds >= MAX_CONDS)
            return bad(r, "more than %d claim conditions", MAX_CONDS);
        more = realloc(u->conds, (u->nconds + 1) * sizeof(*more));
        if (more == NULL)
            return KBR_ERR_NOMEM;
        u->conds = more;
        more[u->nconds].claim = strdup(k + 6);
        more[u->nconds].pattern = strdup(v);
        if (more[u->nconds].claim == NULL || more[u->nconds].pattern == NULL) {
            free(more[u->nconds].claim);
            free(more[u->nconds].pattern);
            return KBR_ERR_NOMEM;
        }
        u->nconds++;
        return KBR_OK;
    }
    if (strcmp(k, "principal") == 0)
        return set_str(&u->principal, v);
    if (strcmp(k, "ttl") == 0)
        return set_long(r, k, v, 60, 86400, &u->ttl);
    if (strcmp(k, "max_uses") == 0) {
        long n;
        kbr_err err = set_long(r, k, v, 1, 1000000000, &n);
        if (err == KBR_OK && json_object_set_new(r->scope, k, json_integer(n)) != 0)
            err = KBR_ERR_NOMEM;
        return err;
    }
    for (size_t i = 0; lists[i] != NULL; i++) {
        if (strcmp(k, lists[i]) != 0)
            continue;
        if (json_object_get(r->scope, k) != NULL)
            return bad(r, "%s is given twice", k);
        arr = json_array();
        if (arr == NULL || json_object_set_new(r->scope, k, arr) != 0)
            return KBR_ERR_NOMEM;
        return each_word(r, v, add_name, arr);
    }
    return bad(r, "unknown key \"%s\" in a [rule] section", k);
}

/*
 * A principal template: "<kind>:<namespace>/..." with {claim} placeholders after the
 * namespace.  Its literal start, up to the first placeholder, must hold the kind, a colon and
 * a '/', so that the principals one issuer's tokens make cannot be another issuer's or a
 * principal an admin names by hand in another namespace.
 */
static kbr_err check_principal(reader *r, kbd_oidc_rule *u, kbd_oidc_issuer *iss)
{
    const char *p = u->principal, *first = strchr(p, '{');
    size_t prefix = first != NULL ? (size_t)(first - p) : strlen(p);
    const char *colon = memchr(p, ':', prefix);
    json_t *sample = json_object();
    char *made = NULL, *lit = NULL;
    kbr_msg why = {{0}};
    kbr_err err = KBR_OK;

    KBR_ENSURE(sample != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(colon != NULL && memchr(colon, '/', prefix - (size_t)(colon - p)) != NULL &&
                   first != NULL,
               bad(r,
                   "[rule %s]: principal must start with <kind>:<namespace>/ and name a claim "
                   "in braces after it, such as ci:github/{repository}",
                   u->name));
    /* every placeholder closed, names claims; a sample made of it is a valid principal */
    for (const char *q = first; q != NULL; q = strchr(q + 1, '{')) {
        const char *end = strchr(q, '}');
        char name[80];
        KBR_ENSURE(end != NULL && end > q + 1 && (size_t)(end - q - 1) < sizeof(name),
                   bad(r, "[rule %s]: principal has an unclosed or empty {claim}", u->name));
        memcpy(name, q + 1, (size_t)(end - q - 1));
        name[end - q - 1] = '\0';
        KBR_ENSURE(json_object_set_new(sample, name, json_string("x")) == 0, KBR_ERR_NOMEM);
    }
    KBR_ENSURE(kbr_principal_from_template(p, sample, &made, &why) == KBR_OK &&
                   kbr_policy_sub_valid(made),
               bad(r,
                   "[rule %s]: principal does not make a valid principal: kind ci, factory, "
                   "ota, security or service, then letters, digits and . _ : / @ + -",
                   u->name));
    lit = strndup(p, prefix);
    KBR_ENSURE(lit != NULL, KBR_ERR_NOMEM);
    if (iss->principal_prefix == NULL || strlen(lit) < strlen(iss->principal_prefix)) {
        /* the issuer's namespace: the shortest literal start of its rules */
        free(iss->principal_prefix);
        iss->principal_prefix = lit;
        lit = NULL;
    }
out:
    free(lit);
    free(made);
    json_decref(sample);
    return err;
}

static bool pattern_bounds(const char *pattern)
{
    for (const char *p = pattern; *p != '\0'; p++)
        if (*p != '*')
            return true;
    return false;
}

/* The section just read is whole. */
static kbr_err end_section(reader *r)
{
    kbd_oidc_config *c = r->c;
    kbr_msg why = {{0}};
    int saved = r->line;
    kbr_err err = KBR_OK;

    r->line = r->section_line;
    if (r->section == ISSUER) {
        kbd_oidc_issuer *i = &c->issuers[c->nissuers - 1];
        KBR_ENSURE(i->issuer != NULL, bad(r, "[issuer %s] has no issuer", i->name));
        KBR_ENSURE(i->audience != NULL, bad(r, "[issuer %s] has no audience", i->name));
        KBR_ENSURE(i->algs != 0,
                   bad(r, "[issuer %s] has no algorithms (the issuer's, such as RS256)", i->name));
        KBR_ENSURE((i->jwks_file == NULL) != (i->jwks_url == NULL),
                   bad(r, "[issuer %s] needs exactly one of jwks_file and jwks_url", i->name));
        for (size_t k = 0; k + 1 < c->nissuers; k++)
            KBR_ENSURE(
                strcmp(c->issuers[k].issuer, i->issuer) != 0,
                bad(r, "[issuer %s] has the issuer of [issuer %s]", i->name, c->issuers[k].name));
    } else if (r->section == RULE) {
        kbd_oidc_rule *u = &c->rules[c->nrules - 1];
        kbd_oidc_issuer *iss;
        bool bounded = false;
        KBR_ENSURE(u->issuer != 0, bad(r, "[rule %s] has no issuer", u->name));
        u->issuer--;
        iss = &c->issuers[u->issuer];
        for (size_t k = 0; k < u->nconds; k++)
            bounded |= pattern_bounds(u->conds[k].pattern);
        KBR_ENSURE(bounded, bad(r,
                                "[rule %s] needs at least one claim.NAME condition that is not "
                                "just '*': without one every token of the issuer would match",
                                u->name));
        KBR_ENSURE(u->principal != NULL, bad(r, "[rule %s] has no principal", u->name));
        KBR_GUARD(check_principal(r, u, iss));
        KBR_ENSURE(json_object_get(r->scope, "ops") != NULL,
                   bad(r, "[rule %s] has no ops", u->name));
        err = kbr_scope_from_json(r->scope, &u->scope, &why);
        KBR_ENSURE(err == KBR_OK, bad(r, "[rule %s]: %s", u->name, why.text));
        KBR_ENSURE(!(u->scope.ops & KBR_OP_ADMIN),
                   bad(r, "[rule %s]: an exchanged token never holds admin", u->name));
        if (u->ttl == 0)
            u->ttl = iss->max_ttl;
        KBR_ENSURE(u->ttl <= iss->max_ttl, bad(r,
                                               "[rule %s]: ttl %ld is over the max_ttl of "
                                               "[issuer %s] (%ld)",
                                               u->name, u->ttl, iss->name, iss->max_ttl));
    }
out:
    r->line = saved;
    json_decref(r->scope);
    r->scope = NULL;
    r->section = NONE;
    return err;
}

static kbr_err begin_section(reader *r, char *head)
{
    kbd_oidc_config *c = r->c;
    char *close = strchr(head, ']'), *name;
    bool issuer;
    kbr_err err;

    if (close == NULL || close[1] != '\0')
        return bad(r, "a section is [issuer NAME] or [rule NAME]");
    *close = '\0';
    issuer = strncmp(head + 1, "issuer ", 7) == 0;
    if (!issuer && strncmp(head + 1, "rule ", 5) != 0)
        return bad(r, "a section is [issuer NAME] or [rule NAME]");
    name = head + (issuer ? 8 : 6);
    while (*name == ' ')
        name++;
    if (!section_name_ok(name))
        return bad(r, "section name \"%.64s\" is not a name (letters, digits, . _ - : @ +)", name);
    if ((err = end_section(r)) != KBR_OK)
        return err;
    r->section_line = r->line;
    if (issuer) {
        kbd_oidc_issuer *more;
        if (issuer_named(c, name, NULL) != NULL)
            return bad(r, "[issuer %s] is given twice", name);
        if (c->nissuers >= MAX_ISSUERS)
            return bad(r, "more than %d issuers", MAX_ISSUERS);
        more = realloc(c->issuers, (c->nissuers + 1) * sizeof(*more));
        if (more == NULL)
            return KBR_ERR_NOMEM;
        c->issuers = more;
        memset(&more[c->nissuers], 0, sizeof(*more));
        more[c->nissuers].leeway = 60;
        more[c->nissuers].max_ttl = 3600;
        more[c->nissuers].jwks_refresh = 3600;
        more[c->nissuers].jwks_min_interval = 10;
        if ((more[c->nissuers].name = strdup(name)) == NULL)
            return KBR_ERR_NOMEM;
        c->nissuers++;
        r->section = ISSUER;
    } else {
        kbd_oidc_rule *more;
        for (size_t i = 0; i < c->nrules; i++)
            if (strcmp(c->rules[i].name, name) == 0)
                return bad(r, "[rule %s] is given twice", name);
        if (c->nrules >= MAX_RULES)
            return bad(r, "more than %d rules", MAX_RULES);
        more = realloc(c->rules, (c->nrules + 1) * sizeof(*more));
        if (more == NULL)
            return KBR_ERR_NOMEM;
        c->rules = more;
        memset(&more[c->nrules], 0, sizeof(*more));
        more[c->nrules].scope.max_uses = -1;
        if ((more[c->nrules].name = strdup(name)) == NULL)
            return KBR_ERR_NOMEM;
        c->nrules++;
        r->scope = json_object();
        if (r->scope == NULL)
            return KBR_ERR_NOMEM;
        r->section = RULE;
    }
    return KBR_OK;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

/* '#' starts a comment at the start of a line or after a blank (a value may hold one). */
static void strip_comment(char *line)
{
    for (char *p = line; *p != '\0'; p++) {
        if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            return;
        }
    }
}

static kbr_err read_line(reader *r, char *line)
{
    char *k, *v, *eq;
    kbd_oidc_config *c = r->c;

    strip_comment(line);
    k = trim(line);
    if (*k == '\0')
        return KBR_OK;
    if (*k == '[')
        return begin_section(r, k);
    eq = strchr(k, '=');
    if (eq == NULL)
        return bad(r, "expected `key = value` or a [section]");
    *eq = '\0';
    v = trim(eq + 1);
    k = trim(k);
    if (*v == '\0')
        return bad(r, "%s has no value", k);
    if (r->section == ISSUER)
        return issuer_key(r, &c->issuers[c->nissuers - 1], k, v);
    if (r->section == RULE)
        return rule_key(r, &c->rules[c->nrules - 1], k, v);
    return bad(r, "%s is outside an [issuer] or [rule] section", k);
}

/* No issuer's principals can be another's: neither namespace starts the other. */
static kbr_err check_namespaces(reader *r)
{
    kbd_oidc_config *c = r->c;

    for (size_t a = 0; a < c->nissuers; a++) {
        for (size_t b = a + 1; b < c->nissuers; b++) {
            const char *pa = c->issuers[a].principal_prefix, *pb = c->issuers[b].principal_prefix;
            if (pa == NULL || pb == NULL)
                continue;
            if (strncmp(pa, pb, strlen(pa) < strlen(pb) ? strlen(pa) : strlen(pb)) == 0)
                return kbr_fail(r->msg, KBR_ERR_CONFIG,
                                "%s: the principals of [issuer %s] (%s...) and [issuer %s] "
                                "(%s...) could be the same: give each issuer a namespace of "
                                "its own, such as ci:github/ and ci:gitlab/",
                                r->path, c->issuers[a].name, pa, c->issuers[b].name, pb);
        }
    }
    return KBR_OK;
}

kbr_err kbd_oidc_config_load(const char *path, kbd_oidc_config *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    reader r = {.path = path, .msg = msg, .c = out};
    char line[4096];
    FILE *f;

    memset(out, 0, sizeof(*out));
    f = fopen(path, "r");
    if (f == NULL)
        return kbr_fail(msg, KBR_ERR_CONFIG, "oidc_issuers: %s: %s", path, strerror(errno));
    r.dir = realpath(path, NULL);
    if (r.dir != NULL && strrchr(r.dir, '/') != NULL)
        *strrchr(r.dir, '/') = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        r.line++;
        KBR_ENSURE(strchr(line, '\n') != NULL || feof(f), bad(&r, "line too long"));
        KBR_GUARD(read_line(&r, line));
    }
    KBR_GUARD(end_section(&r));
    KBR_ENSURE(out->nissuers > 0, kbr_fail(msg, KBR_ERR_CONFIG, "%s: no [issuer] section", path));
    KBR_GUARD(check_namespaces(&r));
out:
    if (err == KBR_ERR_NOMEM)
        kbr_fail(msg, err, "%s: out of memory", path);
    json_decref(r.scope);
    free(r.dir);
    fclose(f);
    if (err != KBR_OK)
        kbd_oidc_config_cleanup(out);
    return err;
}
