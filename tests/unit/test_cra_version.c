/*
 * test_cra_version.c - version order per scheme: the published vectors in
 * tests/unit/data/version-tests.json (dpkg's, Semantic Versioning's,
 * packaging's), dpkg itself as an oracle on random versions, the generic
 * scheme, and refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "kbr_cra.h"

/* How many vectors the data file holds: a shorter file fails, not passes. */
#define VERSION_VECTORS 518

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

static int cmp_ok(kbr_vscheme scheme, const char *a, const char *b)
{
    kbr_msg msg = {{0}};
    int c = 2;

    if (kbr_version_cmp(scheme, a, b, &c, &msg) != KBR_OK)
        fail_msg("%s: \"%s\" vs \"%s\": %s", kbr_vscheme_name(scheme), a, b, msg.text);
    return c;
}

/* Checks one expected sign both ways round; returns the number of failures (0 or 1). */
static size_t expect_cmp(kbr_vscheme scheme, const char *a, const char *b, int want)
{
    int c = cmp_ok(scheme, a, b), r = cmp_ok(scheme, b, a);

    if (c == want && r == -want)
        return 0;
    print_error("%s: \"%s\" vs \"%s\" gave %d (reversed %d), expected %d\n",
                kbr_vscheme_name(scheme), a, b, c, r, want);
    return 1;
}

static size_t run_group(const json_t *g, size_t *count)
{
    kbr_vscheme scheme;
    kbr_msg msg = {{0}};
    const json_t *v, *list;
    size_t i, j, failed = 0;

    assert_int_equal(
        kbr_vscheme_from_name(json_string_value(json_object_get(g, "scheme")), &scheme, &msg),
        KBR_OK);
    json_array_foreach(json_object_get(g, "cmp"), i, v)
    {
        failed += expect_cmp(scheme, json_string_value(json_array_get(v, 0)),
                             json_string_value(json_array_get(v, 1)),
                             (int)json_integer_value(json_array_get(v, 2)));
        (*count)++;
    }
    json_array_foreach(json_object_get(g, "equal"), i, v)
    {
        failed += expect_cmp(scheme, json_string_value(json_array_get(v, 0)),
                             json_string_value(json_array_get(v, 1)), 0);
        (*count)++;
    }
    json_array_foreach(json_object_get(g, "ordered"), i, list)
    {
        for (j = 0; j < json_array_size(list); j++) {
            for (size_t k = j; k < json_array_size(list); k++)
                failed += expect_cmp(scheme, json_string_value(json_array_get(list, j)),
                                     json_string_value(json_array_get(list, k)), j == k ? 0 : -1);
            (*count)++;
        }
    }
    json_array_foreach(json_object_get(g, "valid"), i, v)
    {
        if (kbr_version_check(scheme, json_string_value(v), &msg) != KBR_OK) {
            print_error("%s: \"%s\" refused: %s\n", kbr_vscheme_name(scheme), json_string_value(v),
                        msg.text);
            failed++;
        }
        (*count)++;
    }
    json_array_foreach(json_object_get(g, "invalid"), i, v)
    {
        int c;

        msg.text[0] = '\0';
        if (kbr_version_check(scheme, json_string_value(v), &msg) != KBR_ERR_BAD_REQUEST ||
            kbr_version_cmp(scheme, "1.0.0", json_string_value(v), &c, NULL) !=
                KBR_ERR_BAD_REQUEST ||
            strstr(msg.text, kbr_vscheme_name(scheme)) == NULL) {
            print_error("%s: \"%s\" accepted (or refused without naming the scheme)\n",
                        kbr_vscheme_name(scheme), json_string_value(v));
            failed++;
        }
        (*count)++;
    }
    json_array_foreach(json_object_get(g, "normalize"), i, v)
    {
        const char *in = json_string_value(json_array_get(v, 0));
        const char *want = json_string_value(json_array_get(v, 1));
        char *got = NULL;

        if (kbr_version_normalize(scheme, in, &got, &msg) != KBR_OK || strcmp(got, want) != 0) {
            print_error("%s: \"%s\" normalized to \"%s\", expected \"%s\"\n",
                        kbr_vscheme_name(scheme), in, got != NULL ? got : msg.text, want);
            failed++;
        } else {
            /* The normal form is itself a version, equal to the input, and its own normal form. */
            char *again = NULL;

            failed += expect_cmp(scheme, in, got, 0);
            assert_int_equal(kbr_version_normalize(scheme, got, &again, &msg), KBR_OK);
            assert_string_equal(again, got);
            free(again);
        }
        free(got);
        (*count)++;
    }
    return failed;
}

static void test_published_vectors(void **state)
{
    json_t *doc = load_vectors("version-tests.json");
    const json_t *g;
    size_t i, failed = 0, count = 0;

    (void)state;
    json_array_foreach(json_object_get(doc, "groups"), i, g)
    {
        failed += run_group(g, &count);
    }
    print_message("%zu version vectors\n", count);
    json_decref(doc);
    assert_int_equal(count, VERSION_VECTORS);
    assert_int_equal(failed, 0);
}

/* dpkg --compare-versions a lt b: 1 if true, 0 if false, -1 if dpkg is not there. */
static int dpkg_lt(const char *a, const char *b)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        if (freopen("/dev/null", "w", stderr) == NULL)
            _exit(126);
        execlp("dpkg", "dpkg", "--compare-versions", "--", a, "lt", b, (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
        return -1;
    return WEXITSTATUS(status) == 0;
}

/* A random Debian version: optional epoch, upstream from a small alphabet, optional revision. */
static void random_deb(char *out, size_t cap)
{
    static const char up[] = "0123456789.~+ab";
    static const char rev[] = "019.~+z";
    size_t n = 0, len = 1 + (size_t)rand() % 6;

    if (rand() % 4 == 0)
        n += (size_t)snprintf(out + n, cap - n, "%d:", rand() % 3);
    out[n++] = (char)('0' + rand() % 3);
    for (size_t i = 0; i < len; i++)
        out[n++] = up[rand() % (int)(sizeof(up) - 1)];
    if (rand() % 2 == 0) {
        out[n++] = '-';
        out[n++] = rev[rand() % 3];
        for (size_t i = 0, rl = (size_t)rand() % 4; i < rl; i++)
            out[n++] = rev[rand() % (int)(sizeof(rev) - 1)];
    }
    out[n] = '\0';
}

static void test_deb_against_dpkg(void **state)
{
    char a[64], b[64];
    size_t disagree = 0;

    (void)state;
    if (dpkg_lt("1", "2") != 1) {
        print_message("dpkg is not installed: the oracle comparison is skipped\n");
        skip();
    }
    srand(20260301);
    for (int i = 0; i < 300; i++) {
        int c;

        random_deb(a, sizeof(a));
        random_deb(b, sizeof(b));
        if (i % 10 == 0)
            memcpy(b, a, strlen(a) + 1);
        c = cmp_ok(KBR_VSCHEME_DEB, a, b);
        if ((c < 0) != (dpkg_lt(a, b) == 1) || (c > 0) != (dpkg_lt(b, a) == 1)) {
            print_error("deb: \"%s\" vs \"%s\": %d, dpkg disagrees\n", a, b, c);
            disagree++;
        }
    }
    assert_int_equal(disagree, 0);
}

static void test_generic(void **state)
{
    static const char *const ascending[] = {"0.9",    "1.0alpha", "1.0beta2", "1.0",    "1.0.1",
                                            "1.0.2a", "1.0.2",    "1.0.10",   "1.1a.0", "1.1",
                                            "2",      "2.0.0.1",  "10"};

    (void)state;
    for (size_t i = 0; i < sizeof(ascending) / sizeof(ascending[0]); i++) {
        for (size_t j = 0; j < sizeof(ascending) / sizeof(ascending[0]); j++)
            assert_int_equal(
                expect_cmp(KBR_VSCHEME_GENERIC, ascending[i], ascending[j], i < j ? -1 : i > j), 0);
    }
    /* Separators only separate; case and leading zeros do not count; a missing run is 0. */
    assert_int_equal(cmp_ok(KBR_VSCHEME_GENERIC, "1.0-RC1", "1_0rc1"), 0);
    assert_int_equal(cmp_ok(KBR_VSCHEME_GENERIC, "01.002", "1.2.0.0"), 0);
    assert_int_equal(
        cmp_ok(KBR_VSCHEME_GENERIC, "99999999999999999999.1", "99999999999999999998.9"), 1);
}

static void refused(kbr_vscheme scheme, const char *v, const char *want)
{
    kbr_msg msg = {{0}};

    if (kbr_version_check(scheme, v, &msg) != KBR_ERR_BAD_REQUEST)
        fail_msg("%s: \"%s\" accepted", kbr_vscheme_name(scheme), v);
    if (strstr(msg.text, want) == NULL)
        fail_msg("%s: \"%s\": message \"%s\" does not say \"%s\"", kbr_vscheme_name(scheme), v,
                 msg.text, want);
}

static void test_refusals(void **state)
{
    kbr_vscheme s;
    kbr_msg msg = {{0}};
    char *out = NULL, longv[2000];
    int c = 7;

    (void)state;
    refused(KBR_VSCHEME_DEB, "0:abc3-0", "does not start with a digit");
    refused(KBR_VSCHEME_DEB, "1.0-", "revision is empty");
    refused(KBR_VSCHEME_DEB, "2147483648:1", "epoch is too big");
    refused(KBR_VSCHEME_DEB, "1.0_1", "'_' is not allowed");
    refused(KBR_VSCHEME_SEMVER, "1.2", "three numbers");
    refused(KBR_VSCHEME_SEMVER, "1.2.3-01", "leading zero");
    refused(KBR_VSCHEME_SEMVER, "1.2.3+a..b", "empty build identifier");
    refused(KBR_VSCHEME_PYPI, "1.0+", "local version");
    refused(KBR_VSCHEME_PYPI, "french toast", "PEP 440");
    refused(KBR_VSCHEME_GENERIC, "", "empty");
    refused(KBR_VSCHEME_GENERIC, "1 0", "printable ASCII");
    refused(KBR_VSCHEME_GENERIC, "-.-", "no digit or letter");
    memset(longv, '1', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    refused(KBR_VSCHEME_PYPI, longv, "longer than");
    refused(KBR_VSCHEME_DEB, NULL, "missing");
    /* A version that does not parse gives no order. */
    assert_int_equal(kbr_version_cmp(KBR_VSCHEME_SEMVER, "1.0.0", "1.0", &c, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(c, 0);
    assert_non_null(strstr(msg.text, "\"1.0\""));
    /* Schemes by their lowercase names only. */
    assert_int_equal(kbr_vscheme_from_name("pypi", &s, &msg), KBR_OK);
    assert_int_equal(s, KBR_VSCHEME_PYPI);
    assert_int_equal(kbr_vscheme_from_name("PyPI", &s, &msg), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_vscheme_from_name("maven", &s, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "\"maven\" is not supported"));
    /* Normal forms: PEP 440's for pypi, the version itself elsewhere. */
    assert_int_equal(
        kbr_version_normalize(KBR_VSCHEME_PYPI, " V0010!01.0A.POST-DEV+Ub.1_X ", &out, &msg),
        KBR_OK);
    assert_string_equal(out, "10!1.0a0.post0.dev0+ub.1.x");
    free(out);
    assert_int_equal(kbr_version_normalize(KBR_VSCHEME_DEB, "1:1.0-1", &out, &msg), KBR_OK);
    assert_string_equal(out, "1:1.0-1");
    free(out);
    assert_int_equal(kbr_version_normalize(KBR_VSCHEME_SEMVER, "1.0", &out, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_vectors),
        cmocka_unit_test(test_deb_against_dpkg),
        cmocka_unit_test(test_generic),
        cmocka_unit_test(test_refusals),
    };

    return cmocka_run_group_tests_name("cra_version", tests, NULL, NULL);
}
