/*
 * fuzz.h - what every tests/fuzz target shares: the libFuzzer entry point
 * (also driven by replay.c, so `make check` replays each corpus without
 * libFuzzer) and a check that stops the run on a broken property.
 */
#ifndef KBR_FUZZ_H
#define KBR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Feeds one input to the target; returns 0 (libFuzzer reserves other values). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A property the code under test promises.  abort() rather than assert():
 * the check must hold in every build, NDEBUG or not, and abort is what both
 * libFuzzer and the replay runner report as a failure with the input saved.
 */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input as a NUL-terminated string (it may hold earlier NULs). Caller frees. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
