/*
 * market.c - markets as ISO 3166-1 alpha-2 codes, and which of them are EU
 * member states.  Both lists live here and nowhere else.
 */
#include <stdlib.h>
#include <string.h>

#include "kbr_cra.h"

/*
 * The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted, as the
 * Debian iso-codes 4.15.0 data (iso_3166-1.json) lists them.  Reserved codes
 * (exceptionally, transitionally or indeterminately reserved: "EU", "EL",
 * "UK", ...) and user-assigned ones are not among them.
 */
static const char assigned[][3] = {
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
};

/*
 * The 27 member states of the European Union on 1 February 2020, the day the
 * United Kingdom left, and still on the day this list was last checked,
 * 2025-01-01.  ISO codes: Greece is "GR" (the EU's own "EL" is not an ISO code).
 */
static const char *const eu_members[] = {
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
    "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
};

static int by_code(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static bool is_assigned(const char *code)
{
    return bsearch(code, assigned, sizeof(assigned) / sizeof(assigned[0]), sizeof(assigned[0]),
                   by_code) != NULL;
}

/* AA, QM to QZ, XA to XZ and ZZ: ISO 3166-1 leaves them to its users. */
static bool is_user_assigned(const char *c)
{
    return strcmp(c, "AA") == 0 || strcmp(c, "ZZ") == 0 || (c[0] == 'Q' && c[1] >= 'M') ||
           c[0] == 'X';
}

kbr_err kbr_market_check(const char *code, kbr_msg *msg)
{
    char upper[3];

    if (code == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "market: missing");
    for (size_t i = 0; i < 2; i++) {
        char c = code[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "market \"%.16s\" is not two letters (an ISO 3166-1 alpha-2 code)",
                            code);
        upper[i] = (char)(c >= 'a' ? c - 'a' + 'A' : c);
    }
    upper[2] = '\0';
    if (code[2] != '\0')
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "market \"%.16s\" is not two letters (an ISO 3166-1 alpha-2 code)", code);
    if (strcmp(code, upper) != 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "market \"%s\": ISO 3166-1 alpha-2 codes are upper case (\"%s\")", code,
                        upper);
    if (is_user_assigned(code))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "market \"%s\" is a user-assigned code, not a country of ISO 3166-1", code);
    if (!is_assigned(code))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "market \"%s\" is not an officially assigned ISO 3166-1 alpha-2 code%s",
                        code,
                        strcmp(code, "EU") == 0   ? " (the EU is not a country: name its states)"
                        : strcmp(code, "EL") == 0 ? " (Greece is \"GR\")"
                        : strcmp(code, "UK") == 0 ? " (the United Kingdom is \"GB\")"
                                                  : "");
    return KBR_OK;
}

bool kbr_market_is_eu(const char *code)
{
    for (size_t i = 0; code != NULL && i < sizeof(eu_members) / sizeof(eu_members[0]); i++) {
        if (strcmp(code, eu_members[i]) == 0)
            return true;
    }
    return false;
}

const char *const *kbr_market_eu_members(size_t *n)
{
    *n = sizeof(eu_members) / sizeof(eu_members[0]);
    return eu_members;
}
