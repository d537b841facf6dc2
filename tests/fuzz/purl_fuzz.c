/*
 * purl_fuzz.c - package URLs as SBOMs and queries carry them: kbr_purl_parse
 * (strict and lenient), kbr_purl_to_string, kbr_purl_build, kbr_purl_matches.
 *
 * Whatever parses has a canonical string that parses again, strictly, to
 * the same components and the same string; building from those components
 * gives that string too; a strict parse implies a lenient one with the same
 * result; a purl matches itself, and a query without version, qualifiers and
 * subpath matches it.
 */
#include "kbr_cra.h"

#include "fuzz.h"

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void check(const kbr_purl *p)
{
    kbr_purl *again = NULL, *built = NULL, *bare = NULL;
    char *s = NULL, *s2 = NULL, *s3 = NULL;
    kbr_msg msg = {{0}};

    FUZZ_CHECK(kbr_purl_to_string(p, &s) == KBR_OK);
    FUZZ_CHECK(kbr_purl_parse(s, 0, &again, &msg) == KBR_OK);
    FUZZ_CHECK(kbr_purl_to_string(again, &s2) == KBR_OK);
    FUZZ_CHECK(strcmp(s, s2) == 0);
    FUZZ_CHECK(same(p->type, again->type) && same(p->namespace, again->namespace) &&
               same(p->name, again->name) && same(p->version, again->version) &&
               same(p->subpath, again->subpath) && p->n_qualifiers == again->n_qualifiers);
    for (size_t i = 0; i < p->n_qualifiers; i++) {
        FUZZ_CHECK(p->qualifiers[i].value[0] != '\0');
        FUZZ_CHECK(i == 0 || strcmp(p->qualifiers[i - 1].key, p->qualifiers[i].key) < 0);
        FUZZ_CHECK(same(p->qualifiers[i].value, again->qualifiers[i].value));
    }
    FUZZ_CHECK(kbr_purl_build(p->type, p->namespace, p->name, p->version, p->qualifiers,
                              p->n_qualifiers, p->subpath, 0, &built, &msg) == KBR_OK);
    FUZZ_CHECK(kbr_purl_to_string(built, &s3) == KBR_OK);
    FUZZ_CHECK(strcmp(s, s3) == 0);
    FUZZ_CHECK(kbr_purl_matches(p, again) && kbr_purl_matches(again, p));
    FUZZ_CHECK(kbr_purl_build(p->type, p->namespace, p->name, NULL, NULL, 0, NULL, 0, &bare,
                              &msg) == KBR_OK ||
               p->n_qualifiers > 0); /* a type may require a qualifier */
    if (bare != NULL)
        FUZZ_CHECK(kbr_purl_matches(bare, p));
    kbr_purl_free(again);
    kbr_purl_free(built);
    kbr_purl_free(bare);
    free(s);
    free(s2);
    free(s3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    kbr_purl *strict = NULL, *lenient = NULL;
    kbr_msg msg = {{0}};
    kbr_err es = kbr_purl_parse(in, 0, &strict, &msg);
    kbr_err el = kbr_purl_parse(in, KBR_PURL_LENIENT, &lenient, &msg);

    FUZZ_CHECK(es == KBR_OK || es == KBR_ERR_BAD_REQUEST);
    FUZZ_CHECK(el == KBR_OK || el == KBR_ERR_BAD_REQUEST);
    FUZZ_CHECK((es == KBR_OK) == (strict != NULL));
    if (es == KBR_OK) {
        char *a = NULL, *b = NULL;

        FUZZ_CHECK(el == KBR_OK);
        FUZZ_CHECK(kbr_purl_to_string(strict, &a) == KBR_OK);
        FUZZ_CHECK(kbr_purl_to_string(lenient, &b) == KBR_OK);
        FUZZ_CHECK(strcmp(a, b) == 0);
        free(a);
        free(b);
        check(strict);
    }
    if (el == KBR_OK)
        check(lenient);
    else
        FUZZ_CHECK(strncmp(msg.text, "purl: ", 6) == 0);
    kbr_purl_free(strict);
    kbr_purl_free(lenient);
    free(in);
    return 0;
}
