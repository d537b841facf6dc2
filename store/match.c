/*
 * match.c - which SBOM components a question about a component names (View C, and the
 * builds of an incident), with the CRA libraries of kbr_cra.h: a component is picked by its
 * SBOM name or by its package URL, and its versions by a list or a vers range.
 *
 * A package URL is compared as purl-spec says, parsed and normalized: type, namespace and
 * name equal (never a longer name: pkg:npm/lodash is not pkg:npm/lodash.merge), and the
 * query's version, qualifiers and subpath only when it gives them.  The store keeps each
 * component's package (kbr_store_purl_key) so that the candidates are one index lookup;
 * the comparison itself is kbr_purl_matches.
 *
 * A component's version is its purl's when it has one and the question is a purl, else the
 * SBOM's version field (and the purl's when the SBOM gave none).  A component whose version
 * the question cannot decide (none given, or not a version of the range's scheme) is neither
 * in nor out: it is "undecided", and the view lists it, so that no build silently drops out.
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kbr_cra.h"

#define MATCH_VERSIONS_MAX 256
#define MATCH_VERSION_LEN  256

struct kbr_match {
    char *component; /* an SBOM name, or NULL */
    kbr_purl *purl;  /* or a package */
    char *purl_key;  /* its canonical package, without version, qualifiers or subpath */
    char **versions; /* a list, or NULL */
    size_t nversions;
    kbr_vers *vers; /* or a range, or NULL */
};

void kbr_match_free(kbr_match *m)
{
    if (m == NULL)
        return;
    free(m->component);
    kbr_purl_free(m->purl);
    free(m->purl_key);
    for (size_t i = 0; i < m->nversions; i++)
        free(m->versions[i]);
    free(m->versions);
    kbr_vers_free(m->vers);
    free(m);
}

/* The package of p: its canonical string without version, qualifiers and subpath. */
static kbr_err package_of(const kbr_purl *p, char **out)
{
    kbr_purl bare = {.type = p->type, .namespace = p->namespace, .name = p->name};

    return kbr_purl_to_string(&bare, out);
}

kbr_err kbr_store_purl_key(const char *purl, char **key)
{
    kbr_err err = KBR_OK;
    kbr_purl *p = NULL;

    *key = NULL;
    if (purl == NULL || kbr_purl_parse(purl, KBR_PURL_LENIENT, &p, NULL) != KBR_OK)
        goto out; /* no package: the component is found by its name only */
    KBR_GUARD(package_of(p, key));
out:
    kbr_purl_free(p);
    return err;
}

/* Printable text without controls: what a version in a question may be (any purl version). */
static bool version_text(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MATCH_VERSION_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static kbr_err take_versions(kbr_match *m, const json_t *versions, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const json_t *v;
    size_t i;

    KBR_ENSURE(json_is_array(versions) && json_array_size(versions) >= 1 &&
                   json_array_size(versions) <= MATCH_VERSIONS_MAX,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "versions: a list of 1 to %d versions",
                        MATCH_VERSIONS_MAX));
    m->versions = calloc(json_array_size(versions), sizeof(*m->versions));
    KBR_ENSURE(m->versions != NULL, KBR_ERR_NOMEM);
    json_array_foreach(versions, i, v)
    {
        const char *s = json_string_value(v);

        KBR_ENSURE(s != NULL && strlen(s) == json_string_length(v) && version_text(s),
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "versions[%zu]: a version is 1 to %d characters without controls", i,
                            MATCH_VERSION_LEN));
        m->versions[i] = strdup(s);
        KBR_ENSURE(m->versions[i] != NULL, KBR_ERR_NOMEM);
        m->nversions++;
    }
out:
    return err;
}

kbr_err kbr_match_new(const char *component, const char *purl, const json_t *versions,
                      const char *vers, kbr_match **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_match *m = NULL;
    kbr_msg why = {{0}};

    *out = NULL;
    KBR_ENSURE((component != NULL) != (purl != NULL),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "give exactly one of component or purl"));
    KBR_ENSURE(versions == NULL || vers == NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "give versions or vers, not both"));
    m = calloc(1, sizeof(*m));
    KBR_ENSURE(m != NULL, KBR_ERR_NOMEM);
    if (component != NULL) {
        KBR_ENSURE(component[0] != '\0' && strlen(component) <= 256,
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST, "component: 1 to 256 characters"));
        m->component = strdup(component);
        KBR_ENSURE(m->component != NULL, KBR_ERR_NOMEM);
    } else {
        err = kbr_purl_parse(purl, KBR_PURL_LENIENT, &m->purl, &why);
        KBR_ENSURE(err != KBR_ERR_BAD_REQUEST,
                   kbr_fail(msg, err, "purl: %s", why.text[0] != '\0' ? why.text : "not a purl"));
        KBR_GUARD(err);
        KBR_GUARD(package_of(m->purl, &m->purl_key));
    }
    if (versions != NULL)
        KBR_GUARD(take_versions(m, versions, msg));
    if (vers != NULL) {
        err = kbr_vers_parse(vers, &m->vers, &why);
        KBR_ENSURE(err != KBR_ERR_BAD_REQUEST,
                   kbr_fail(msg, err, "vers: %s", why.text[0] != '\0' ? why.text : "not a range"));
        KBR_GUARD(err);
    }
    *out = m;
    m = NULL;
out:
    kbr_match_free(m);
    return err;
}

const char *kbr_match_component_name(const kbr_match *m)
{
    return m->component;
}

const char *kbr_match_purl_key(const kbr_match *m)
{
    return m->purl_key;
}

bool kbr_match_selects_versions(const kbr_match *m)
{
    return m->versions != NULL || m->vers != NULL;
}

/* The component's version for this question (see the top), or NULL. */
static const char *version_of(const kbr_match *m, const char *cversion, const kbr_purl *p)
{
    const char *pv = p != NULL ? p->version : NULL;

    if (m->purl != NULL)
        return pv != NULL ? pv : cversion;
    return cversion != NULL ? cversion : pv;
}

kbr_match_result kbr_match_component(const kbr_match *m, const char *name, const char *cversion,
                                     const char *purl, const char **why)
{
    kbr_match_result res = KBR_MATCH_NO;
    kbr_purl *p = NULL;
    const char *v;
    bool in = false;

    *why = NULL;
    /* a purl that does not parse leaves p NULL: the component is found by its name only */
    if (purl != NULL && kbr_purl_parse(purl, KBR_PURL_LENIENT, &p, NULL) != KBR_OK)
        p = NULL;
    if (m->component != NULL ? (name == NULL || strcmp(name, m->component) != 0)
                             : (p == NULL || !kbr_purl_matches(m->purl, p)))
        goto out;
    res = KBR_MATCH_YES;
    if (!kbr_match_selects_versions(m))
        goto out;
    v = version_of(m, cversion, p);
    if (v == NULL) {
        res = KBR_MATCH_UNDECIDED;
        *why = "the SBOM gives no version";
        goto out;
    }
    if (m->versions != NULL) {
        res = KBR_MATCH_NO;
        for (size_t i = 0; i < m->nversions; i++)
            if (strcmp(m->versions[i], v) == 0)
                res = KBR_MATCH_YES;
        goto out;
    }
    if (kbr_vers_contains(m->vers, v, &in, NULL) != KBR_OK) {
        res = KBR_MATCH_UNDECIDED;
        *why = "its version is not a version of the range's scheme";
        goto out;
    }
    res = in ? KBR_MATCH_YES : KBR_MATCH_NO;
out:
    kbr_purl_free(p);
    return res;
}
