/* rng.h - fast non-cryptographic randomness for ids and jitter.
 *
 * xoshiro256** seeded once from getrandom(): event and batch ids need
 * to be unique, not secret, and this runs once per event.
 */
#ifndef SEGOPSD_RNG_H
#define SEGOPSD_RNG_H

#include <stdint.h>

int rng_init(void); /* 0 or -errno from getrandom */
uint64_t rng_next(void);
void rng_bytes16(uint8_t out[16]);
double rng_unit(void); /* uniform in [0, 1) */

#endif
