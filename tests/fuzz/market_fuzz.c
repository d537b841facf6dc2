/*
 * market_fuzz.c - markets as a batch or a query names them: kbr_market_check
 * and kbr_market_is_eu.
 *
 * An accepted code is two capital letters; an EU member is an accepted
 * code; a refusal names the value.
 */
#include "kbr_cra.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    kbr_msg msg = {{0}};
    kbr_err err = kbr_market_check(in, &msg);

    FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_BAD_REQUEST);
    if (err == KBR_OK)
        FUZZ_CHECK(strlen(in) == 2 && in[0] >= 'A' && in[0] <= 'Z' && in[1] >= 'A' && in[1] <= 'Z');
    else
        FUZZ_CHECK(strncmp(msg.text, "market", 6) == 0);
    if (kbr_market_is_eu(in))
        FUZZ_CHECK(err == KBR_OK);
    free(in);
    return 0;
}
