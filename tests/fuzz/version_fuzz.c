/*
 * version_fuzz.c - version order: the first byte picks the scheme (deb,
 * semver, npm, pypi, generic), the rest is up to three versions separated
 * by newlines, fed to kbr_version_check, kbr_version_cmp and
 * kbr_version_normalize.
 *
 * On what parses the order is total: reflexive, antisymmetric, transitive,
 * and an equal pair compares alike with a third; a normal form parses,
 * compares equal to its version and is its own normal form.  What does not
 * parse is refused by every function, with the scheme named.
 */
#include "kbr_cra.h"

#include "fuzz.h"

static int cmp(kbr_vscheme s, const char *a, const char *b)
{
    int c = 9;

    FUZZ_CHECK(kbr_version_cmp(s, a, b, &c, NULL) == KBR_OK);
    FUZZ_CHECK(c == -1 || c == 0 || c == 1);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kbr_vscheme s;
    char *in, *v[3] = {NULL, NULL, NULL}, *next;
    bool ok[3] = {false, false, false};
    size_t n = 0;
    kbr_msg msg = {{0}};

    if (size == 0)
        return 0;
    s = (kbr_vscheme)(data[0] % 5);
    in = fuzz_cstr(data + 1, size - 1);
    for (next = in; n < 3 && next != NULL; n++) {
        v[n] = next;
        next = strchr(next, '\n');
        if (next != NULL)
            *next++ = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        char *norm = NULL, *again = NULL;
        kbr_err err = kbr_version_check(s, v[i], &msg);

        FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_BAD_REQUEST);
        ok[i] = err == KBR_OK;
        err = kbr_version_normalize(s, v[i], &norm, &msg);
        FUZZ_CHECK((err == KBR_OK) == ok[i]);
        if (!ok[i]) {
            FUZZ_CHECK(strstr(msg.text, kbr_vscheme_name(s)) != NULL);
            continue;
        }
        FUZZ_CHECK(cmp(s, v[i], v[i]) == 0);
        FUZZ_CHECK(kbr_version_check(s, norm, NULL) == KBR_OK);
        FUZZ_CHECK(cmp(s, v[i], norm) == 0);
        FUZZ_CHECK(kbr_version_normalize(s, norm, &again, NULL) == KBR_OK);
        FUZZ_CHECK(strcmp(norm, again) == 0);
        free(norm);
        free(again);
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int c;

            if (!ok[i] || !ok[j])
                continue;
            c = cmp(s, v[i], v[j]);
            FUZZ_CHECK(c == -cmp(s, v[j], v[i]));
            for (size_t k = 0; k < n; k++) {
                if (!ok[k])
                    continue;
                if (c <= 0 && cmp(s, v[j], v[k]) <= 0)
                    FUZZ_CHECK(cmp(s, v[i], v[k]) <= 0);
                if (c == 0)
                    FUZZ_CHECK(cmp(s, v[i], v[k]) == cmp(s, v[j], v[k]));
            }
        }
    }
    free(in);
    return 0;
}
