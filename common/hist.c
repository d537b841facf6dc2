/* hist.c - histograms for /metrics (kbr_common.h). */
#include <stdatomic.h>
#include <string.h>

#include "kbr_common.h"

const double kbr_hist_seconds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t kbr_hist_seconds_n = sizeof(kbr_hist_seconds) / sizeof(kbr_hist_seconds[0]);

void kbr_hist_init(kbr_hist *h, const double *bounds, size_t nbounds)
{
    h->bounds = bounds;
    h->nbounds = nbounds < KBR_HIST_BUCKETS ? nbounds : KBR_HIST_BUCKETS;
    for (size_t i = 0; i <= KBR_HIST_BUCKETS; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_millionths, 0);
}

void kbr_hist_observe(kbr_hist *h, double value)
{
    size_t i = 0;

    if (value < 0)
        value = 0;
    while (i < h->nbounds && value > h->bounds[i])
        i++;
    atomic_fetch_add(&h->counts[i], 1);
    atomic_fetch_add(&h->sum_millionths, (uint64_t)(value * 1e6 + 0.5));
}
