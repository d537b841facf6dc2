/*
 * test_cra_market.c - markets: ISO 3166-1 alpha-2 codes as assigned, and
 * the EU's member states.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "kbr_cra.h"

static void refused(const char *code, const char *want)
{
    kbr_msg msg = {{0}};

    if (kbr_market_check(code, &msg) != KBR_ERR_BAD_REQUEST)
        fail_msg("%s: accepted", code);
    if (strstr(msg.text, want) == NULL)
        fail_msg("%s: message \"%s\" does not say \"%s\"", code, msg.text, want);
}

static void test_assigned(void **state)
{
    char code[3] = {0};
    size_t n = 0;

    (void)state;
    /* Of the 676 pairs of capitals, exactly the 249 assigned codes pass. */
    for (char a = 'A'; a <= 'Z'; a++) {
        for (char b = 'A'; b <= 'Z'; b++) {
            code[0] = a;
            code[1] = b;
            n += kbr_market_check(code, NULL) == KBR_OK;
        }
    }
    assert_int_equal(n, 249);
    {
        static const char *const ok[] = {"DE", "FR", "GB", "US", "CN", "JP", "BQ", "SS", "AX"};

        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
            assert_int_equal(kbr_market_check(ok[i], NULL), KBR_OK);
    }
    refused("de", "upper case (\"DE\")");
    refused("De", "upper case (\"DE\")");
    refused("EU", "the EU is not a country");
    refused("EL", "Greece is \"GR\"");
    refused("UK", "\"GB\"");
    refused("XX", "\"XX\" is a user-assigned code");
    refused("XK", "user-assigned");
    refused("AA", "user-assigned");
    refused("QM", "user-assigned");
    refused("QZ", "user-assigned");
    refused("ZZ", "user-assigned");
    refused("AN", "not an officially assigned"); /* Netherlands Antilles, deleted 2010 */
    refused("YU", "not an officially assigned");
    refused("D", "not two letters");
    refused("DEU", "not two letters");
    refused("", "not two letters");
    refused("D1", "not two letters");
    refused(NULL, "missing");
}

/* Where Debian's iso-codes is installed, the table is exactly its list. */
static void test_against_iso_codes(void **state)
{
    static const char path[] = "/usr/share/iso-codes/json/iso_3166-1.json";
    json_t *doc, *list, *entry;
    size_t i;

    (void)state;
    if (access(path, R_OK) != 0) {
        print_message("%s not installed: the cross-check is skipped\n", path);
        skip();
    }
    doc = json_load_file(path, 0, NULL);
    assert_non_null(doc);
    list = json_object_get(doc, "3166-1");
    assert_int_equal(json_array_size(list), 249);
    json_array_foreach(list, i, entry)
    {
        const char *code = json_string_value(json_object_get(entry, "alpha_2"));

        if (kbr_market_check(code, NULL) != KBR_OK)
            fail_msg("%s (%s) refused", code, json_string_value(json_object_get(entry, "name")));
    }
    json_decref(doc);
}

static void test_eu(void **state)
{
    static const char *const expected[] = {"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES",
                                           "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU",
                                           "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"};
    size_t n = 0, eu = 0;
    const char *const *members = kbr_market_eu_members(&n);
    char code[3] = {0};

    (void)state;
    assert_int_equal(n, 27);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(members[i], expected[i]);
        assert_int_equal(kbr_market_check(members[i], NULL), KBR_OK);
        assert_true(kbr_market_is_eu(members[i]));
    }
    for (char a = 'A'; a <= 'Z'; a++) {
        for (char b = 'A'; b <= 'Z'; b++) {
            code[0] = a;
            code[1] = b;
            eu += kbr_market_is_eu(code);
        }
    }
    assert_int_equal(eu, 27);
    assert_false(kbr_market_is_eu("GB")); /* left on 2020-01-31 */
    assert_false(kbr_market_is_eu("CH"));
    assert_false(kbr_market_is_eu("NO"));
    assert_false(kbr_market_is_eu("EL")); /* not an ISO code */
    assert_false(kbr_market_is_eu("EU"));
    assert_false(kbr_market_is_eu("de")); /* codes are upper case */
    assert_false(kbr_market_is_eu(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assigned),
        cmocka_unit_test(test_against_iso_codes),
        cmocka_unit_test(test_eu),
    };

    return cmocka_run_group_tests_name("cra_market", tests, NULL, NULL);
}
