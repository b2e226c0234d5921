/* backoff.c - the retry delays of SPEC section 4, in one place: "exponential
 * from 0.5 s, factor 2, full jitter, capped at 60 s (configurable)", and
 * Retry-After "capped at 300 s (configurable)". */
#include "backoff.h"

#include <math.h>

/* 2^30 times any sane backoff_initial is far past any backoff_max. */
#define BACKOFF_MAX_DOUBLINGS 30

uint64_t backoff_cap_ms(double initial_s, double max_s, unsigned attempt)
{
        int doublings = attempt > BACKOFF_MAX_DOUBLINGS ? BACKOFF_MAX_DOUBLINGS
                        : attempt > 0                   ? (int)attempt - 1
                                                        : 0;
        double cap = initial_s * ldexp(1.0, doublings);

        if (cap > max_s)
                cap = max_s;
        return cap > 0 ? (uint64_t)(cap * 1000.0) : 0;
}

uint64_t backoff_ms(double initial_s, double max_s, unsigned attempt, double unit)
{
        return (uint64_t)(unit * (double)backoff_cap_ms(initial_s, max_s, attempt));
}

uint64_t backoff_retry_after_ms(double secs, double cap_s)
{
        double s = secs < cap_s ? secs : cap_s;

        return s > 0 ? (uint64_t)(s * 1000.0) : 0;
}
