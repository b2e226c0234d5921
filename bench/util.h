/* util.h - what the benchmark programs share: their clock, number
 * parsing, CPU time.
 *
 * bench_now_ns() is the clock of every time stamp the programs print:
 * run-throughput.sh subtracts the sender's start_ns from the sink's
 * last_ns, so both must read the same clock (CLOCK_MONOTONIC). It is
 * inline because shim-bench reads it around every call it times, and a
 * call into another file would add to what it measures.
 */
#ifndef SEGOPS_BENCH_UTIL_H
#define SEGOPS_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t bench_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* s as a whole decimal number from min to max: digits only, no sign,
 * space or anything after them. Returns 0 with *ret set, or -EINVAL. */
int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* CPU seconds (user and system) this process has used so far. */
double bench_cpu_s(void);

#endif
