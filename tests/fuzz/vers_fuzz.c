/*
 * vers_fuzz.c - version ranges: kbr_vers_parse, kbr_vers_to_string and
 * kbr_vers_contains.
 *
 * Only canonical ranges parse, so what parses serializes to its input byte
 * for byte; its constraints are sorted strictly by the scheme's order; each
 * constraint's own version is in the range exactly when its comparator
 * includes it ("=", "<=", ">=") and out for "!=", "<", ">".
 */
#include "kbr_cra.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size), *s = NULL;
    kbr_vers *v = NULL;
    kbr_msg msg = {{0}};
    kbr_err err = kbr_vers_parse(in, &v, &msg);

    FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_BAD_REQUEST);
    FUZZ_CHECK((err == KBR_OK) == (v != NULL));
    if (err != KBR_OK) {
        FUZZ_CHECK(strncmp(msg.text, "vers: ", 6) == 0);
        free(in);
        return 0;
    }
    FUZZ_CHECK(kbr_vers_to_string(v, &s) == KBR_OK);
    FUZZ_CHECK(strcmp(s, in) == 0); /* up to the first NUL: what a C caller passes */
    for (size_t i = 0; i < v->n_constraints; i++) {
        const kbr_vers_constraint *c = &v->constraints[i];
        bool inside = false;
        int order = 0;

        if (c->op == KBR_VERS_ANY) {
            FUZZ_CHECK(v->n_constraints == 1 && c->version == NULL);
            continue;
        }
        if (i > 0) {
            FUZZ_CHECK(kbr_version_cmp(v->scheme, v->constraints[i - 1].version, c->version, &order,
                                       NULL) == KBR_OK);
            FUZZ_CHECK(order < 0);
        }
        FUZZ_CHECK(kbr_vers_contains(v, c->version, &inside, NULL) == KBR_OK);
        FUZZ_CHECK(inside ==
                   (c->op == KBR_VERS_EQ || c->op == KBR_VERS_LE || c->op == KBR_VERS_GE));
    }
    kbr_vers_free(v);
    free(s);
    free(in);
    return 0;
}
