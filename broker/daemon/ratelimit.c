/*
 * ratelimit.c - a token bucket per principal, on the event thread.  A
 * leaked or runaway CI token must not be able to take the HSM away from
 * every other pipeline and factory; the refusal is a 429 rate_limited the
 * caller can back off from.  The same buckets, keyed by source address,
 * bound how many unauthenticated denials are recorded one by one.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uthash.h>

#include "kbd.h"

typedef struct {
    char *sub;
    double tokens;
    double last; /* monotonic seconds */
    UT_hash_handle hh;
} bucket;

/* Past this many keys (sources are attacker-chosen), the rest share one bucket. */
#define MAX_KEYS 10000

struct kbd_ratelimit {
    double rate, burst;
    bucket *by_sub;
    unsigned nkeys;
};

kbr_err kbd_ratelimit_new(long per_second, kbd_ratelimit **out)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return KBR_ERR_NOMEM;
    (*out)->rate = (double)per_second;
    (*out)->burst = 2.0 * (double)per_second;
    return KBR_OK;
}

void kbd_ratelimit_free(kbd_ratelimit *rl)
{
    bucket *b, *tmp;

    if (rl == NULL)
        return;
    HASH_ITER(hh, rl->by_sub, b, tmp)
    {
        HASH_DEL(rl->by_sub, b);
        free(b->sub);
        free(b);
    }
    free(rl);
}

bool kbd_ratelimit_allow(kbd_ratelimit *rl, const char *sub)
{
    bucket *b = NULL;
    double t = kbr_monotonic_seconds();

    if (rl == NULL || rl->rate <= 0)
        return true;
    HASH_FIND_STR(rl->by_sub, sub, b);
    if (b == NULL && rl->nkeys >= MAX_KEYS) {
        sub = "*";
        HASH_FIND_STR(rl->by_sub, sub, b);
    }
    if (b == NULL) {
        b = calloc(1, sizeof(*b));
        if (b == NULL || (b->sub = strdup(sub)) == NULL) {
            free(b);
            return true; /* out of memory is not the caller's fault */
        }
        b->tokens = rl->burst;
        b->last = t;
        HASH_ADD_KEYPTR(hh, rl->by_sub, b->sub, strlen(b->sub), b);
        rl->nkeys++;
    }
    b->tokens += (t - b->last) * rl->rate;
    if (b->tokens > rl->burst)
        b->tokens = rl->burst;
    b->last = t;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}
