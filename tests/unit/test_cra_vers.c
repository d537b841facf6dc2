/*
 * test_cra_vers.c - version ranges: the vers-spec vectors
 * (tests/unit/data/vers-spec-tests.json), the canonical-form rules one by
 * one, and containment per scheme.
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
#define VERS_VECTORS 42

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

static const char *op_name(kbr_vers_op op)
{
    static const char *const names[] = {"=", "!=", "<", "<=", ">", ">=", "*"};

    return names[op];
}

static bool same_constraints(const kbr_vers *v, const json_t *expect)
{
    const json_t *list = json_object_get(expect, "version_constraints");

    if (strcmp(kbr_vscheme_name(v->scheme), json_string_value(json_object_get(expect, "scheme"))))
        return false;
    if (json_array_size(list) != v->n_constraints)
        return false;
    for (size_t i = 0; i < v->n_constraints; i++) {
        const json_t *pair = json_array_get(list, i);

        if (strcmp(op_name(v->constraints[i].op), json_string_value(json_array_get(pair, 0))) ||
            strcmp(v->constraints[i].version, json_string_value(json_array_get(pair, 1))))
            return false;
    }
    return true;
}

/* One vector; NULL when it holds, else what went wrong (static buffer). */
static const char *run_vector(const json_t *t)
{
    static char why[512];
    const char *kind = json_string_value(json_object_get(t, "kind"));
    const json_t *input = json_object_get(t, "input"), *expect = json_object_get(t, "expect");
    bool want_fail = json_is_true(json_object_get(t, "fail"));
    const char *text = json_is_string(input) ? json_string_value(input)
                                             : json_string_value(json_object_get(input, "vers"));
    kbr_vers *v = NULL;
    kbr_msg msg = {{0}};
    kbr_err err = kbr_vers_parse(text, &v, &msg);
    char *s = NULL;
    bool in = false;

    why[0] = '\0';
    if (err == KBR_OK && strcmp(kind, "containment") == 0)
        err = kbr_vers_contains(v, json_string_value(json_object_get(input, "version")), &in, &msg);
    if (want_fail) {
        if (err == KBR_OK)
            snprintf(why, sizeof(why), "accepted, expected a refusal");
        else if (err != KBR_ERR_BAD_REQUEST || strncmp(msg.text, "vers: ", 6) != 0)
            snprintf(why, sizeof(why), "refused with %d \"%s\"", (int)err, msg.text);
        goto out;
    }
    if (err != KBR_OK) {
        snprintf(why, sizeof(why), "refused: %s", msg.text);
        goto out;
    }
    assert_int_equal(kbr_vers_to_string(v, &s), KBR_OK);
    if (strcmp(s, text) != 0)
        snprintf(why, sizeof(why), "serialized as %s", s);
    else if (strcmp(kind, "parse") == 0 && !same_constraints(v, expect))
        snprintf(why, sizeof(why), "constraints differ");
    else if (strcmp(kind, "validate") == 0 && strcmp(s, json_string_value(expect)) != 0)
        snprintf(why, sizeof(why), "gave %s", s);
    else if (strcmp(kind, "containment") == 0 && in != json_is_true(expect))
        snprintf(why, sizeof(why), "contains: %s", in ? "true" : "false");
out:
    kbr_vers_free(v);
    free(s);
    return why[0] != '\0' ? why : NULL;
}

static void test_vers_spec_vectors(void **state)
{
    json_t *doc = load_vectors("vers-spec-tests.json");
    const json_t *tests = json_object_get(doc, "tests"), *t;
    size_t i, failed = 0;

    (void)state;
    assert_int_equal(json_array_size(tests), VERS_VECTORS);
    json_array_foreach(tests, i, t)
    {
        const char *why = run_vector(t);

        if (why != NULL) {
            char *in = json_dumps(json_object_get(t, "input"), JSON_ENCODE_ANY);

            print_error("vector %zu (%s %s) %s: %s\n", i,
                        json_string_value(json_object_get(t, "file")),
                        json_string_value(json_object_get(t, "kind")), in, why);
            free(in);
            failed++;
        }
    }
    json_decref(doc);
    assert_int_equal(failed, 0);
}

static void refused(const char *s, const char *want)
{
    kbr_vers *v = NULL;
    kbr_msg msg = {{0}};

    if (kbr_vers_parse(s, &v, &msg) != KBR_ERR_BAD_REQUEST)
        fail_msg("%s: accepted", s);
    assert_null(v);
    if (strstr(msg.text, want) == NULL)
        fail_msg("%s: message \"%s\" does not say \"%s\"", s, msg.text, want);
}

static void test_canonical_only(void **state)
{
    (void)state;
    refused("VERS:npm/1.0.0", "\"vers:\"");
    refused("vers:NPM/1.0.0", "type \"NPM\" is not supported");
    refused("vers:maven/1.0", "\"maven\" is not supported");
    refused("vers:npm", "\"<type>/\"");
    refused("vers:npm/", "no constraints");
    refused("vers:npm/ 1.0.0", "whitespace");
    refused("vers:npm/1.0.0\n", "whitespace");
    refused("vers:npm/*|1.0.0", "'*' must stand alone");
    refused("vers:npm/>=*", "'*' must stand alone");
    refused("vers:npm/1.0.0||2.0.0", "empty constraint");
    refused("vers:npm/=1.0.0", "'=', which must be percent-encoded");
    refused("vers:npm/>", "no version");
    refused("vers:npm/1.0%2", "percent-encoding");
    refused("vers:npm/1.0%3a0", "percent-encoding");
    refused("vers:npm/1.0%2e0", "percent-encoding");
    refused("vers:npm/1.0%2E0", "percent-encoding"); /* '.' needs no encoding */
    refused("vers:npm/1.0", "not MAJOR.MINOR.PATCH");
    refused("vers:deb/abc", "does not start with a digit");
    /* Sorted by the scheme's order, each version once. */
    refused("vers:npm/2.0.0|1.0.0", "sorts before");
    refused("vers:npm/1.0.0-rc.1|1.0.0-beta", "sorts before");
    refused("vers:pypi/1.0|1.0.0", "is the same as");
    refused("vers:npm/>=1.0.0|!=1.0.0+build", "is the same as");
    refused("vers:deb/1.0~rc1|1.0~beta", "sorts before");
    /* Comparator sequences. */
    refused("vers:npm/1.0.0|<2.0.0", "cannot follow");
    refused("vers:npm/1.0.0|!=1.5.0|<=2.0.0", "cannot follow");
    refused("vers:npm/>=1.0.0|>=2.0.0", "must alternate");
    refused("vers:npm/<1.0.0|<=2.0.0", "must alternate");
    refused("vers:npm/>1.0.0|3.0.0|>4.0.0", "must alternate");
}

static void test_round_trip(void **state)
{
    static const char *const ok[] = {
        "vers:npm/*",
        "vers:deb/1:1.0-1|>=1:2.0~rc1-1|<1:2.1",
        "vers:semver/<1.0.0|>=2.0.0-alpha.1|!=2.0.0|<3.0.0",
        "vers:pypi/0.9|1.0.post1|>=2.0rc1|<=2.5",
        "vers:generic/%3C1.0",
        "vers:generic/1%251|%7C2%21",
        "vers:npm/1.0.0|2.0.0|>3.0.0",
        "vers:npm/!=1.0.0|!=2.0.0",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        kbr_vers *v = NULL;
        kbr_msg msg = {{0}};
        char *s = NULL;

        if (kbr_vers_parse(ok[i], &v, &msg) != KBR_OK)
            fail_msg("%s: %s", ok[i], msg.text);
        assert_int_equal(kbr_vers_to_string(v, &s), KBR_OK);
        assert_string_equal(s, ok[i]);
        free(s);
        kbr_vers_free(v);
    }
}

static bool contains(const char *range, const char *version)
{
    kbr_vers *v = NULL;
    kbr_msg msg = {{0}};
    bool in = false;

    if (kbr_vers_parse(range, &v, &msg) != KBR_OK)
        fail_msg("%s: %s", range, msg.text);
    if (kbr_vers_contains(v, version, &in, &msg) != KBR_OK)
        fail_msg("%s contains %s: %s", range, version, msg.text);
    kbr_vers_free(v);
    return in;
}

static void test_containment(void **state)
{
    kbr_vers *v = NULL;
    kbr_msg msg = {{0}};
    bool in = true;

    (void)state;
    /* Intervals, with their bounds in or out as the comparator says. */
    assert_true(contains("vers:npm/>=1.0.0|<2.0.0", "1.0.0"));
    assert_true(contains("vers:npm/>=1.0.0|<2.0.0", "1.9.9"));
    assert_false(contains("vers:npm/>=1.0.0|<2.0.0", "2.0.0"));
    assert_true(contains("vers:npm/>=1.0.0|<2.0.0", "2.0.0-rc.1"));
    assert_false(contains("vers:npm/>=1.0.0|<2.0.0", "1.0.0-rc.1"));
    assert_false(contains("vers:npm/>1.0.0|<=2.0.0", "1.0.0"));
    assert_true(contains("vers:npm/>1.0.0|<=2.0.0", "2.0.0"));
    /* Open ends, a single bound on either side. */
    assert_true(contains("vers:npm/<1.0.0", "0.9.0"));
    assert_false(contains("vers:npm/<1.0.0", "1.0.0"));
    assert_true(contains("vers:npm/<=1.0.0", "1.0.0"));
    assert_true(contains("vers:npm/>=1.0.0", "99.0.0"));
    assert_false(contains("vers:npm/>1.0.0", "1.0.0"));
    /* Several intervals, single versions and exclusions. */
    assert_true(contains("vers:npm/1.2.3|>=2.0.0|<5.0.0", "1.2.3"));
    assert_false(contains("vers:npm/1.2.3|>=2.0.0|<5.0.0", "1.2.4"));
    assert_true(contains("vers:npm/1.2.3|>=2.0.0|<5.0.0", "4.0.0"));
    assert_false(contains("vers:npm/1.2.3|>=2.0.0|<5.0.0", "5.0.0"));
    assert_true(contains("vers:npm/<1.0.0|>=2.0.0|<3.0.0|>=4.0.0", "0.1.0"));
    assert_false(contains("vers:npm/<1.0.0|>=2.0.0|<3.0.0|>=4.0.0", "1.5.0"));
    assert_true(contains("vers:npm/<1.0.0|>=2.0.0|<3.0.0|>=4.0.0", "2.5.0"));
    assert_false(contains("vers:npm/<1.0.0|>=2.0.0|<3.0.0|>=4.0.0", "3.5.0"));
    assert_true(contains("vers:npm/<1.0.0|>=2.0.0|<3.0.0|>=4.0.0", "4.0.0"));
    assert_true(contains("vers:semver/>=2.2.0|!=2.2.1|<2.3.0", "2.2.2"));
    assert_false(contains("vers:semver/>=2.2.0|!=2.2.1|<2.3.0", "2.2.1"));
    assert_true(contains("vers:npm/!=1.0.0", "2.0.0"));
    assert_false(contains("vers:npm/!=1.0.0", "1.0.0"));
    assert_false(contains("vers:npm/1.0.0|2.0.0", "1.5.0"));
    assert_true(contains("vers:npm/*", "0.0.1"));
    /* Each scheme's own order and equality decides. */
    assert_true(contains("vers:deb/>=1.0|<1.1", "1.1~rc1"));
    assert_true(contains("vers:deb/<1:0.1", "9.9-9"));
    assert_true(contains("vers:deb/1.0", "0:1.0"));
    assert_true(contains("vers:pypi/>=1.0|<2.0", "2.0rc1"));
    assert_false(contains("vers:pypi/>=1.0|<2.0", "1.0.dev1"));
    assert_true(contains("vers:pypi/1.0", "1.0.0"));
    assert_true(contains("vers:pypi/<1.0", "1.0-RC1"));
    assert_true(contains("vers:npm/1.0.0", "1.0.0+build.7"));
    assert_true(contains("vers:generic/>=1.0|<1.0.10", "1.0.9"));
    assert_true(contains("vers:generic/>=1.0|<2", "1.10"));
    /* A version that does not parse under the scheme is an error, not "out". */
    assert_int_equal(kbr_vers_parse("vers:npm/>=1.0.0", &v, &msg), KBR_OK);
    assert_int_equal(kbr_vers_contains(v, "1.0", &in, &msg), KBR_ERR_BAD_REQUEST);
    assert_false(in);
    assert_non_null(strstr(msg.text, "\"1.0\""));
    kbr_vers_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vers_spec_vectors),
        cmocka_unit_test(test_canonical_only),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_containment),
    };

    return cmocka_run_group_tests_name("cra_vers", tests, NULL, NULL);
}
