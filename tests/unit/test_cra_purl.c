/*
 * test_cra_purl.c - package URLs: every vector of the purl-spec test suite
 * (tests/unit/data/purl-spec-tests.json), the matcher, and refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kbr_cra.h"

/* How many vectors the data file holds: a shorter file fails, not passes. */
#define PURL_VECTORS 533

static json_t *load_vectors(const char *file)
{
    char path[512];
    json_error_t jerr;
    json_t *doc;

    snprintf(path, sizeof(path), "%s/%s", KBR_UNIT_DATA, file);
    doc = json_load_file(path, 0, &jerr);
    if (doc == NULL)
        fail_msg("%s: %s (line %d)", path, jerr.text, jerr.line);
    return doc;
}

static bool same_str(const char *a, const json_t *b)
{
    if (json_is_null(b) || b == NULL)
        return a == NULL;
    return a != NULL && strcmp(a, json_string_value(b)) == 0;
}

/* Whether p holds exactly the components of expect (upstream's decoded form). */
static bool same_components(const kbr_purl *p, const json_t *expect)
{
    const json_t *quals = json_object_get(expect, "qualifiers");
    const char *key;
    const json_t *value;

    if (!same_str(p->type, json_object_get(expect, "type")) ||
        !same_str(p->namespace, json_object_get(expect, "namespace")) ||
        !same_str(p->name, json_object_get(expect, "name")) ||
        !same_str(p->version, json_object_get(expect, "version")) ||
        !same_str(p->subpath, json_object_get(expect, "subpath")))
        return false;
    if (p->n_qualifiers != (json_is_object(quals) ? json_object_size(quals) : 0))
        return false;
    json_object_foreach((json_t *)quals, key, value)
    {
        if (!same_str(kbr_purl_qualifier_get(p, key), value))
            return false;
    }
    return true;
}

static const char *opt_str(const json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
}

static kbr_err build_from(const json_t *in, unsigned flags, kbr_purl **out, kbr_msg *msg)
{
    const json_t *quals = json_object_get(in, "qualifiers");
    kbr_purl_qualifier q[32];
    size_t n = 0;
    const char *key;
    const json_t *value;

    json_object_foreach((json_t *)quals, key, value)
    {
        assert_true(n < 32);
        q[n].key = (char *)key;
        q[n].value = (char *)json_string_value(value);
        n++;
    }
    return kbr_purl_build(opt_str(in, "type"), opt_str(in, "namespace"), opt_str(in, "name"),
                          opt_str(in, "version"), q, n, opt_str(in, "subpath"), flags, out, msg);
}

/* One vector; NULL when it holds, else what went wrong (static buffer). */
static const char *run_vector(const json_t *t)
{
    static char why[512];
    const char *kind = opt_str(t, "kind");
    bool lenient = strcmp(opt_str(t, "group"), "recommended") == 0;
    unsigned flags = lenient ? KBR_PURL_LENIENT : 0;
    bool want_fail = json_is_true(json_object_get(t, "fail"));
    const json_t *input = json_object_get(t, "input"), *expect = json_object_get(t, "expect");
    kbr_purl *p = NULL, *again = NULL;
    char *s = NULL, *s2 = NULL;
    kbr_msg msg = {{0}};
    kbr_err err;

    why[0] = '\0';
    if (strcmp(kind, "build") == 0)
        err = build_from(input, flags, &p, &msg);
    else
        err = kbr_purl_parse(json_string_value(input), flags, &p, &msg);
    if (want_fail) {
        if (err == KBR_OK)
            snprintf(why, sizeof(why), "accepted, expected a refusal");
        else if (err != KBR_ERR_BAD_REQUEST || strncmp(msg.text, "purl: ", 6) != 0)
            snprintf(why, sizeof(why), "refused with %d \"%s\"", (int)err, msg.text);
        goto out;
    }
    if (err != KBR_OK) {
        snprintf(why, sizeof(why), "refused: %s", msg.text);
        goto out;
    }
    assert_int_equal(kbr_purl_to_string(p, &s), KBR_OK);
    if (strcmp(kind, "parse") == 0) {
        if (!same_components(p, expect))
            snprintf(why, sizeof(why), "components differ (canonical %s)", s);
    } else if (strcmp(s, json_string_value(expect)) != 0) {
        snprintf(why, sizeof(why), "gave %s", s);
    }
    /* Whatever was accepted reads back, strictly, to the same canonical string. */
    if (why[0] == '\0') {
        if (kbr_purl_parse(s, 0, &again, &msg) != KBR_OK)
            snprintf(why, sizeof(why), "canonical %s refused: %s", s, msg.text);
        else if (kbr_purl_to_string(again, &s2) != KBR_OK || strcmp(s, s2) != 0)
            snprintf(why, sizeof(why), "canonical %s reads back as %s", s, s2);
    }
out:
    kbr_purl_free(p);
    kbr_purl_free(again);
    free(s);
    free(s2);
    return why[0] != '\0' ? why : NULL;
}

static void test_purl_spec_vectors(void **state)
{
    json_t *doc = load_vectors("purl-spec-tests.json");
    const json_t *tests = json_object_get(doc, "tests"), *t;
    size_t i, failed = 0, by_kind[3] = {0};

    (void)state;
    assert_int_equal(json_array_size(tests), PURL_VECTORS);
    json_array_foreach(tests, i, t)
    {
        const char *why = run_vector(t);
        const char *kind = opt_str(t, "kind");

        by_kind[strcmp(kind, "parse") == 0 ? 0 : strcmp(kind, "build") == 0 ? 1 : 2]++;
        if (why != NULL) {
            char *in = json_dumps(json_object_get(t, "input"), JSON_ENCODE_ANY);

            print_error("vector %zu (%s, %s %s) %s: %s\n", i, opt_str(t, "file"),
                        opt_str(t, "group"), kind, in, why);
            free(in);
            failed++;
        }
    }
    print_message("%zu purl-spec vectors: %zu parse, %zu build, %zu validate\n",
                  json_array_size(tests), by_kind[0], by_kind[1], by_kind[2]);
    json_decref(doc);
    assert_int_equal(failed, 0);
}

static kbr_purl *parse_ok(const char *s)
{
    kbr_purl *p = NULL;
    kbr_msg msg = {{0}};

    if (kbr_purl_parse(s, KBR_PURL_LENIENT, &p, &msg) != KBR_OK)
        fail_msg("%s: %s", s, msg.text);
    return p;
}

static bool match(const char *query, const char *component)
{
    kbr_purl *q = parse_ok(query), *c = parse_ok(component);
    bool m = kbr_purl_matches(q, c);

    kbr_purl_free(q);
    kbr_purl_free(c);
    return m;
}

static void test_match(void **state)
{
    (void)state;
    /* The name is compared whole: never a prefix. */
    assert_true(match("pkg:npm/lodash", "pkg:npm/lodash@4.17.21"));
    assert_false(match("pkg:npm/lodash", "pkg:npm/lodash.merge@4.6.2"));
    assert_false(match("pkg:npm/lodash.merge", "pkg:npm/lodash@4.17.21"));
    assert_false(match("pkg:npm/lodash", "pkg:npm/%40types/lodash@4.14.0"));
    assert_false(match("pkg:npm/lodash", "pkg:github/lodash/lodash@4.17.21"));
    /* Namespaces are compared whole too. */
    assert_true(match("pkg:npm/%40angular/core", "pkg:npm/%40angular/core@17.0.0"));
    assert_false(match("pkg:npm/%40angular/core", "pkg:npm/core@17.0.0"));
    assert_false(match("pkg:npm/core", "pkg:npm/%40angular/core@17.0.0"));
    assert_false(match("pkg:maven/org.apache/commons", "pkg:maven/org.apache.x/commons@1"));
    /* Both sides normalized by the type's rules first. */
    assert_true(match("pkg:pypi/Django_Allauth", "pkg:pypi/django-allauth@0.61.1"));
    assert_true(match("pkg:PYPI/django-allauth", "pkg:pypi/DJANGO_ALLAUTH@0.61.1"));
    assert_true(match("pkg:deb/Debian/OpenSSL", "pkg:deb/debian/openssl@3.0.11-1"));
    assert_true(match("pkg:github/Package-URL/purl-spec", "pkg:github/package-url/PURL-SPEC"));
    assert_false(match("pkg:npm/Lodash", "pkg:npm/lodash@4.17.21")); /* npm names are cased */
    assert_false(match("pkg:maven/org.example/Foo", "pkg:maven/org.example/foo@1.0"));
    assert_true(
        match("pkg:golang/github.com/gorilla/mux", "pkg:golang/github.com/gorilla/mux@1.8"));
    assert_true(match("pkg:npm/%6Codash", "pkg:npm/lodash@1"));
    /* Version, qualifiers, subpath: only when the query gives them. */
    assert_true(match("pkg:npm/lodash@4.17.21", "pkg:npm/lodash@4.17.21"));
    assert_false(match("pkg:npm/lodash@4.17.21", "pkg:npm/lodash@4.17.20"));
    assert_false(match("pkg:npm/lodash@4.17.21", "pkg:npm/lodash"));
    assert_true(match("pkg:deb/debian/curl", "pkg:deb/debian/curl@7.50.3-1?arch=i386"));
    assert_true(
        match("pkg:deb/debian/curl?arch=i386", "pkg:deb/debian/curl@7.50?arch=i386&distro=x"));
    assert_false(match("pkg:deb/debian/curl?arch=amd64", "pkg:deb/debian/curl@7.50?arch=i386"));
    assert_false(match("pkg:deb/debian/curl?arch=amd64", "pkg:deb/debian/curl@7.50"));
    assert_true(match("pkg:golang/google.golang.org/genproto",
                      "pkg:golang/google.golang.org/genproto#googleapis/api"));
    assert_true(match("pkg:golang/google.golang.org/genproto#googleapis/api/",
                      "pkg:golang/google.golang.org/genproto@v1#googleapis/api"));
    assert_false(match("pkg:golang/google.golang.org/genproto#googleapis/api",
                       "pkg:golang/google.golang.org/genproto#googleapis/rpc"));
}

/* Refused with KBR_ERR_BAD_REQUEST and a message that contains want. */
static void refused(const char *s, unsigned flags, const char *want)
{
    kbr_purl *p = NULL;
    kbr_msg msg = {{0}};

    if (kbr_purl_parse(s, flags, &p, &msg) != KBR_ERR_BAD_REQUEST)
        fail_msg("%s: accepted", s);
    assert_null(p);
    if (strstr(msg.text, want) == NULL)
        fail_msg("%s: message \"%s\" does not say \"%s\"", s, msg.text, want);
}

static void test_refusals(void **state)
{
    (void)state;
    refused("", 0, "\"pkg:\"");
    refused("purl:npm/foo", 0, "\"pkg:\"");
    refused("pkg:npm/foo bar", 0, "not printable ASCII");
    refused("pkg:npm/f\xc3\xa9", 0, "byte 0xc3");
    refused("pkg:npm/foo%2", 0, "two hex digits");
    refused("pkg:npm/foo%zz", 0, "two hex digits");
    refused("pkg:npm/foo%00", 0, "NUL");
    refused("pkg:npm/foo%C3%28", 0, "not UTF-8");
    refused("pkg:npm/foo%ED%A0%80", 0, "not UTF-8"); /* a surrogate */
    refused("pkg:npm/foo%C0%AF", 0, "not UTF-8");    /* overlong '/' */
    refused("pkg:npm/foo@", 0, "after the version's '@'");
    refused("pkg:npm/", 0, "name is required");
    refused("pkg:npm", 0, "nothing after the type");
    refused("pkg:npm/foo?a=1&a=2", 0, "appears twice");
    refused("pkg:npm/foo?a", 0, "has no '='");
    refused("pkg:npm/foo?=1", 0, "empty key");
    refused("pkg:npm/foo?1a=1", 0, "does not start with a letter");
    refused("pkg:npm/foo?a%20b=1", 0, "qualifier key");
    refused("pkg:npm/foo?Arch=x", 0, "not lowercase");
    refused("pkg:npm/foo?a=1&&b=2", 0, "empty qualifier");
    refused("pkg:npm/foo?a=1&", 0, "end with '&'");
    refused("pkg:npm/@babel/core", 0, "%40");
    refused("pkg:npm/foo%2Fbar/baz", 0, "holds a '/'");
    refused("pkg:npm/foo#a/b%2Fc", 0, "holds a '/'");
    refused("pkg:pypi/acme/foo", 0, "has no namespace");
    refused("pkg:maven/foo@1", 0, "requires a namespace");
    refused("pkg:julia/Dates@1.9.0", 0, "\"uuid\"");
    refused("pkg:cpan/URI::PackageURL", 0, "\"::\"");
    refused("pkg:chrome-extension/dogs", 0, "32 letters");
    refused("pkg:swid/a/b/c/name?tag_id=x", 0, "more than two segments");
    /* The lenient reading repairs only what it says it does. */
    {
        kbr_purl *p = parse_ok("pkg:npm/@babel/core?A=1&&b=2&");
        char *s = NULL;

        assert_int_equal(kbr_purl_to_string(p, &s), KBR_OK);
        assert_string_equal(s, "pkg:npm/%40babel/core?a=1&b=2");
        free(s);
        kbr_purl_free(p);
    }
    refused("pkg:npm/foo bar", KBR_PURL_LENIENT, "not printable ASCII");
}

static void test_canonical_form(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        /* Everything but letters, digits, ".-_~" and ':' percent-encoded, uppercase hex. */
        {"pkg:generic/a+b@1.0+x?q=a/b%2c?c#d%2be",
         "pkg:generic/a%2Bb@1.0%2Bx?q=a%2Fb%2C%3Fc#d%2Be"},
        {"pkg:generic/%7e%2E%2D%5F%3a", "pkg:generic/~.-_:"},
        {"pkg:generic/caf%C3%A9@%E2%82%AC", "pkg:generic/caf%C3%A9@%E2%82%AC"},
        /* Slashes after the scheme, empty segments, "." and ".." in the subpath. */
        {"pkg:///generic//ns//x///?", "pkg:generic/ns/x"},
        {"pkg:generic/x#/./a/../b//", "pkg:generic/x#a/b"},
        /* Empty values drop their key; keys sort. */
        {"pkg:generic/x?z=1&a=&m=2", "pkg:generic/x?m=2&z=1"},
        /* A type not registered: the core rules only, case kept. */
        {"pkg:Acme.Pkg-2/Vendor/Name@V1", "pkg:acme.pkg-2/Vendor/Name@V1"},
        /* git: the host, then the repository path as the name. */
        {"pkg:git/github.com/Org/Repo@v1#src", "pkg:git/github.com/Org/Repo@v1#src"},
        /* Type rules: lowercase, pypi's '-', pub's '_', cpan's uppercase author, GUID tag_id. */
        {"pkg:pypi/Zope.Interface_X@1.0RC1", "pkg:pypi/zope.interface-x@1.0rc1"},
        {"pkg:pub/Flutter-Web%C3%A9", "pkg:pub/flutter_web_"},
        {"pkg:cpan/oalders/libwww-perl", "pkg:cpan/OALDERS/libwww-perl"},
        {"pkg:swid/Acme@1?tag_id=75B8C285-FA7B-485B-B199-4745E3004D0D",
         "pkg:swid/Acme@1?tag_id=75b8c285-fa7b-485b-b199-4745e3004d0d"},
        {"pkg:mlflow/Model?repository_url=https://x.azuredatabricks.net/",
         "pkg:mlflow/model?repository_url=https:%2F%2Fx.azuredatabricks.net%2F"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kbr_purl *p = NULL;
        char *s = NULL;
        kbr_msg msg = {{0}};

        if (kbr_purl_parse(cases[i].in, 0, &p, &msg) != KBR_OK)
            fail_msg("%s: %s", cases[i].in, msg.text);
        assert_int_equal(kbr_purl_to_string(p, &s), KBR_OK);
        if (strcmp(s, cases[i].out) != 0)
            fail_msg("%s gave %s, expected %s", cases[i].in, s, cases[i].out);
        free(s);
        kbr_purl_free(p);
    }
}

static void test_build(void **state)
{
    kbr_purl_qualifier q[] = {{"repository_url", "https://example.com/a b"}, {"arch", "x86"}};
    kbr_purl *p = NULL;
    kbr_msg msg = {{0}};
    char *s = NULL;

    (void)state;
    assert_int_equal(kbr_purl_build("NPM", "@scope", "na/me", "1.0.0", q, 2, "a/b", 0, &p, &msg),
                     KBR_OK);
    assert_int_equal(kbr_purl_to_string(p, &s), KBR_OK);
    assert_string_equal(s, "pkg:npm/%40scope/na%2Fme@1.0.0?arch=x86&repository_url=https:%2F%2F"
                           "example.com%2Fa%20b#a/b");
    free(s);
    kbr_purl_free(p);
    assert_int_equal(kbr_purl_build("npm", "a//b", "x", NULL, NULL, 0, NULL, 0, &p, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "empty segment"));
    assert_int_equal(
        kbr_purl_build("git", "github.com", "org//repo", NULL, NULL, 0, NULL, 0, &p, &msg),
        KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "empty segment"));
    assert_int_equal(kbr_purl_build("npm", NULL, "x", NULL, NULL, 0, "a/../b", 0, &p, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_purl_build("npm", NULL, "x\xff", NULL, NULL, 0, NULL, 0, &p, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "not UTF-8"));
    assert_null(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purl_spec_vectors),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_canonical_form),
        cmocka_unit_test(test_build),
    };

    return cmocka_run_group_tests_name("cra_purl", tests, NULL, NULL);
}
