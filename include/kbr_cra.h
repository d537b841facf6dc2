/*
 * kbr_cra.h - what the Cyber Resilience Act views need to name software and
 * places exactly: package URLs (purl), version order per versioning scheme,
 * version ranges (vers) and markets (ISO 3166-1 alpha-2, EU membership).
 *
 * Pure functions over strings: no I/O, no global state, safe from any thread.
 * Every parser refuses what its specification does not allow with
 * KBR_ERR_BAD_REQUEST and a message naming the offending part; a version that
 * does not parse under its scheme is an error, never an arbitrary order.
 */
#ifndef KBR_CRA_H
#define KBR_CRA_H

#include <stdbool.h>
#include <stddef.h>

#include "kbr_common.h"

/* ---- package URLs (https://github.com/package-url/purl-spec, ECMA-427) ---- */

/*
 * A purl's decoded components.  type is lowercase; namespace is NULL when
 * absent, else its segments joined by '/' (no segment is empty or holds a
 * '/'); version and subpath are NULL when absent (subpath's segments joined by
 * '/'); qualifiers are sorted by key, keys unique, no value empty.  Every
 * string is UTF-8 without NUL.  The type's own rules (case, characters,
 * required or prohibited parts) have been applied.
 */
typedef struct {
    char *key;
    char *value;
} kbr_purl_qualifier;

typedef struct {
    char *type;
    char *namespace;
    char *name;
    char *version;
    kbr_purl_qualifier *qualifiers;
    size_t n_qualifiers;
    char *subpath;
} kbr_purl;

/*
 * Parsing is strict by default: what the standard says "shall" is enforced,
 * and a non-canonical input is only accepted where the standard tells a parser
 * to normalize it (case of the type and of case-insensitive names, slashes
 * after "pkg:", leading and trailing slashes, empty and "."/".." subpath
 * segments, characters that should have been percent-encoded).
 * KBR_PURL_LENIENT also repairs what the standard forbids but its test suite
 * recommends normalizing: qualifier keys in upper case (lowercased), a '@'
 * that is not percent-encoded in a namespace or name, empty '&' pairs.
 */
#define KBR_PURL_LENIENT 0x1u

/* s as a purl.  Caller frees *out with kbr_purl_free. */
KBR_WUR kbr_err kbr_purl_parse(const char *s, unsigned flags, kbr_purl **out, kbr_msg *msg);

/*
 * A purl from decoded components, normalized and checked as parsing does.
 * namespace and subpath are '/'-separated (empty segments are refused);
 * qualifiers are n_qualifiers key/value pairs (an empty value drops its key).
 */
KBR_WUR kbr_err kbr_purl_build(const char *type, const char *namespace, const char *name,
                               const char *version, const kbr_purl_qualifier *qualifiers,
                               size_t n_qualifiers, const char *subpath, unsigned flags,
                               kbr_purl **out, kbr_msg *msg);

/* The canonical string of p (what kbr_purl_parse reads back to the same components). */
KBR_WUR kbr_err kbr_purl_to_string(const kbr_purl *p, char **out);

/* A qualifier's value, or NULL. */
const char *kbr_purl_qualifier_get(const kbr_purl *p, const char *key);

/*
 * Whether component is what query names: type, namespace and name equal
 * (both normalized, so `pkg:npm/lodash` never matches `lodash.merge`); the
 * query's version, each of its qualifiers and its subpath, when it gives them,
 * equal too.  The version is compared as the opaque string a purl holds; use
 * a vers range to compare versions by their scheme.
 */
bool kbr_purl_matches(const kbr_purl *query, const kbr_purl *component);

void kbr_purl_free(kbr_purl *p);

/* ---- versions ---- */

typedef enum {
    KBR_VSCHEME_DEB,     /* Debian: dpkg's epoch:upstream-revision order */
    KBR_VSCHEME_SEMVER,  /* Semantic Versioning 2.0.0 precedence */
    KBR_VSCHEME_NPM,     /* npm: semver 2.0.0 as npm publishes it */
    KBR_VSCHEME_PYPI,    /* PEP 440 (packaging's Version) */
    KBR_VSCHEME_GENERIC, /* runs of digits and of letters (docs/cra.md) */
} kbr_vscheme;

/* "deb", "semver", "npm", "pypi", "generic" (lowercase only). */
KBR_WUR kbr_err kbr_vscheme_from_name(const char *name, kbr_vscheme *out, kbr_msg *msg);
const char *kbr_vscheme_name(kbr_vscheme scheme);

/* KBR_OK when v is a version of scheme. */
KBR_WUR kbr_err kbr_version_check(kbr_vscheme scheme, const char *v, kbr_msg *msg);

/* *out = -1, 0 or 1 as a sorts before, with or after b; both must parse. */
KBR_WUR kbr_err kbr_version_cmp(kbr_vscheme scheme, const char *a, const char *b, int *out,
                                kbr_msg *msg);

/*
 * The scheme's normal form of v: PEP 440's for pypi ("1.0-RC1" -> "1.0rc1");
 * the version itself for the others, whose specifications define none.
 * Caller frees.
 */
KBR_WUR kbr_err kbr_version_normalize(kbr_vscheme scheme, const char *v, char **out, kbr_msg *msg);

/* ---- version ranges (https://github.com/package-url/vers-spec) ---- */

typedef enum {
    KBR_VERS_EQ, /* written as the bare version */
    KBR_VERS_NE,
    KBR_VERS_LT,
    KBR_VERS_LE,
    KBR_VERS_GT,
    KBR_VERS_GE,
    KBR_VERS_ANY, /* "*", alone */
} kbr_vers_op;

typedef struct {
    kbr_vers_op op;
    char *version; /* percent-decoded; NULL for KBR_VERS_ANY */
} kbr_vers_constraint;

typedef struct {
    kbr_vscheme scheme;
    kbr_vers_constraint *constraints;
    size_t n_constraints;
} kbr_vers;

/*
 * s as a vers: only the canonical form is accepted (lowercase scheme and
 * type, no whitespace, canonical percent-encoding, constraints sorted by
 * version with each version once, comparators in a valid sequence, '*'
 * alone), for the types deb, semver, npm, pypi and generic.  Caller frees.
 */
KBR_WUR kbr_err kbr_vers_parse(const char *s, kbr_vers **out, kbr_msg *msg);

/* The canonical string (for a parsed vers, the string it was parsed from). */
KBR_WUR kbr_err kbr_vers_to_string(const kbr_vers *v, char **out);

/* Whether version (which must parse under the range's scheme) is within the range. */
KBR_WUR kbr_err kbr_vers_contains(const kbr_vers *range, const char *version, bool *in,
                                  kbr_msg *msg);

void kbr_vers_free(kbr_vers *v);

/* ---- markets ---- */

/*
 * KBR_OK when code is an officially assigned ISO 3166-1 alpha-2 code as
 * written there (two uppercase letters).  Lowercase, reserved ("EU", "EL",
 * "UK") and user-assigned ("AA", "QM".."QZ", "XA".."XZ", "ZZ") codes are
 * refused with a message naming the value.
 */
KBR_WUR kbr_err kbr_market_check(const char *code, kbr_msg *msg);

/* Whether code (as kbr_market_check accepts it) is one of the EU's member states. */
bool kbr_market_is_eu(const char *code);

/* The member states' codes, sorted; *n set to their number. */
const char *const *kbr_market_eu_members(size_t *n);

#endif
