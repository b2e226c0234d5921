/* rng.c - xoshiro256** (Blackman and Vigna, public domain algorithm),
 * seeded from the kernel. Used only on the loop thread. */
#include "rng.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

static uint64_t rng_s[4] = { 0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL,
                             0x2545f4914f6cdd1dULL };

static inline uint64_t rotl(uint64_t x, int k)
{
        return (x << k) | (x >> (64 - k));
}

int rng_init(void)
{
        uint64_t seed[4];
        ssize_t n = getrandom(seed, sizeof(seed), 0);

        if (n != (ssize_t)sizeof(seed))
                return n < 0 ? -errno : -EIO;
        for (int i = 0; i < 4; i++)
                rng_s[i] ^= seed[i];
        return 0;
}

uint64_t rng_next(void)
{
        uint64_t result = rotl(rng_s[1] * 5, 7) * 9;
        uint64_t t = rng_s[1] << 17;

        rng_s[2] ^= rng_s[0];
        rng_s[3] ^= rng_s[1];
        rng_s[1] ^= rng_s[2];
        rng_s[0] ^= rng_s[3];
        rng_s[2] ^= t;
        rng_s[3] = rotl(rng_s[3], 45);
        return result;
}

void rng_bytes16(uint8_t out[16])
{
        uint64_t a = rng_next(), b = rng_next();

        memcpy(out, &a, 8);
        memcpy(out + 8, &b, 8);
}

double rng_unit(void)
{
        return (double)(rng_next() >> 11) * 0x1.0p-53;
}
