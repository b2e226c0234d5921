/* standalone.c - runs a libFuzzer target without libFuzzer, for CI and
 * compilers without it: over the files named on the command line (a
 * corpus, crashes found before), then over N deterministic mutations of
 * built-in seeds (SEGOPS_FUZZ_ITERATIONS, default 20000). A crash or a
 * failed assertion fails the test; scripts/fuzz.sh runs the real fuzzer
 * for as long as you like.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* The target's seeds: valid inputs to mutate. */
size_t fuzz_seed(unsigned i, uint8_t *buf, size_t cap);

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        static uint8_t buf[1 << 20];
        size_t n;

        if (!f) {
                perror(path);
                return 1;
        }
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        return 0;
}

static uint64_t next(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* Flip, overwrite, cut, insert, duplicate: what damage does. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap, uint64_t *rng)
{
        unsigned n = 1 + (unsigned)(next(rng) % 4);

        for (unsigned k = 0; k < n && len > 0; k++) {
                size_t at = (size_t)(next(rng) % len), span = 1 + (size_t)(next(rng) % 32);

                switch (next(rng) % 5) {
                case 0: buf[at] ^= (uint8_t)(1u << (next(rng) % 8)); break;
                case 1:
                        for (size_t i = at; i < len && i < at + span; i++)
                                buf[i] = (uint8_t)next(rng);
                        break;
                case 2: len = at; break;
                case 3:
                        if (len + span <= cap) {
                                memmove(buf + at + span, buf + at, len - at);
                                for (size_t i = at; i < at + span; i++)
                                        buf[i] = (uint8_t)next(rng);
                                len += span;
                        }
                        break;
                default:
                        if (len + span <= cap && at + span <= len) {
                                memmove(buf + at + span, buf + at, len - at);
                                len += span;
                        }
                }
        }
        return len;
}

int main(int argc, char **argv)
{
        static uint8_t seed[1 << 16], buf[1 << 16];
        const char *env = getenv("SEGOPS_FUZZ_ITERATIONS");
        unsigned long iterations = env ? strtoul(env, NULL, 10) : 20000;
        uint64_t rng = 0x9e3779b97f4a7c15ull;
        unsigned nseeds = 0;
        int bad = 0;

        for (int i = 1; i < argc; i++)
                bad |= run_file(argv[i]);
        while (fuzz_seed(nseeds, seed, sizeof(seed)))
                nseeds++;
        for (unsigned long it = 0; nseeds && it < iterations; it++) {
                size_t len = fuzz_seed((unsigned)(it % nseeds), seed, sizeof(seed));

                memcpy(buf, seed, len);
                len = mutate(buf, len, sizeof(buf), &rng);
                LLVMFuzzerTestOneInput(buf, len);
        }
        printf("%lu mutations of %u seeds, %d files: no fault\n", iterations, nseeds, argc - 1);
        return bad;
}
