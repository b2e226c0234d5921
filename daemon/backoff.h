/* backoff.h - how long to wait before trying the upstream again (SPEC
 * section 4): exponential backoff with full jitter, and the cap on a
 * server's Retry-After. Pure functions of their arguments, shared by
 * the batcher (events) and the session (mints); the randomness comes
 * from the caller, so a test can pin it. */
#ifndef SEGOPSD_BACKOFF_H
#define SEGOPSD_BACKOFF_H

#include <stdint.h>

/* The ceiling of the delay after the attempt-th failure in a row
 * (attempt >= 1): initial_s * 2^(attempt - 1), at most max_s; in ms. */
uint64_t backoff_cap_ms(double initial_s, double max_s, unsigned attempt);

/* Full jitter: unit (uniform in [0, 1)) scaled to [0, cap), in ms. */
uint64_t backoff_ms(double initial_s, double max_s, unsigned attempt, double unit);

/* What a Retry-After of secs (>= 0) means, capped at cap_s; in ms. */
uint64_t backoff_retry_after_ms(double secs, double cap_s);

#endif
