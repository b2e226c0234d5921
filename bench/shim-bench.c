/* shim-bench.c - what one segops_track() call costs the caller.
 *
 * Times every call with clock_gettime(CLOCK_MONOTONIC) around it, sorts
 * the samples and prints the median and p99 against the targets of
 * issue 3 (median <= 1 us, p99 <= 20 us), for 1 and for N threads;
 * then fires a burst of B events from 4 threads and reports how many
 * the shim could not hand over (with segopsd up the target is 0). The
 * socket paths come from $SEGOPS_SOCKET / $SEGOPS_CONTROL_SOCKET;
 * run-shim.sh runs it with segopsd up and with it down.
 *
 * Usage: shim-bench [CALLS_PER_THREAD [THREADS [BURST]]]
 */
#include "util.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <segops/shim.h>

static segops_shim *shim;
static long calls = 20000;

struct worker {
        int id;
        long n;
        uint32_t *ns; /* one sample per call */
        long fails;
};

static void *worker_main(void *p)
{
        struct worker *w = p;
        char payload[64];
        long i;

        for (i = 0; i < w->n; i++) {
                uint64_t a, b;

                snprintf(payload, sizeof(payload), "{\"t\":%d,\"i\":%ld}", w->id, i);
                a = bench_now_ns();
                if (segops_track(shim, "bench-user", "bench", payload) != 0)
                        w->fails++;
                b = bench_now_ns();
                if (w->ns)
                        w->ns[i] = (uint32_t)(b - a > UINT32_MAX ? UINT32_MAX : b - a);
        }
        return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return x < y ? -1 : x > y;
}

/* Run threads x n calls; with timing, print median and p99. */
static long run(int threads, long n, bool timed, const char *label)
{
        struct worker w[16];
        pthread_t th[16];
        uint32_t *all = NULL;
        long fails = 0, total = (long)threads * n;
        int i;

        if (timed) {
                all = calloc((size_t)total, sizeof(*all));
                if (!all)
                        return -1;
        }
        for (i = 0; i < threads; i++) {
                w[i] = (struct worker){ .id = i, .n = n, .ns = all ? all + (long)i * n : NULL };
                pthread_create(&th[i], NULL, worker_main, &w[i]);
        }
        for (i = 0; i < threads; i++) {
                pthread_join(th[i], NULL);
                fails += w[i].fails;
        }
        if (timed) {
                double med, p99;

                qsort(all, (size_t)total, sizeof(*all), cmp_u32);
                med = all[total / 2] / 1000.0;
                p99 = all[(long)(total * 0.99)] / 1000.0;
                printf("%-28s threads=%d calls=%ld median=%.3f us (target <= 1) %s"
                       "  p99=%.3f us (target <= 20) %s  not-handed-over=%ld\n",
                       label, threads, total, med, med <= 1.0 ? "OK" : "MISS", p99,
                       p99 <= 20.0 ? "OK" : "MISS", fails);
                free(all);
        }
        return fails;
}

int main(int argc, char **argv)
{
        uint64_t n_calls = (uint64_t)calls, threads = 4, burst = 100000;
        long fails;
        const char *label = getenv("SHIM_BENCH_LABEL");
        int r;

        if ((argc > 1 && bench_parse_u64(argv[1], 1, LONG_MAX, &n_calls) < 0) ||
            (argc > 2 && bench_parse_u64(argv[2], 1, 16, &threads) < 0) ||
            (argc > 3 && bench_parse_u64(argv[3], 4, LONG_MAX, &burst) < 0))
                return 2;
        calls = (long)n_calls;
        if (!label)
                label = "segops_track";
        r = segops_shim_open(&shim, NULL);
        if (r < 0) {
                fprintf(stderr, "segops_shim_open: %s\n", strerror(-r));
                return 1;
        }
        run(1, 1000, false, label); /* warm-up: thread, socket, pages */
        segops_flush(shim, 10000);
        run(1, calls, true, label);
        segops_flush(shim, 10000);
        run((int)threads, calls, true, label);
        segops_flush(shim, 30000);
        fails = run(4, (long)burst / 4, false, label);
        r = segops_flush(shim, 60000);
        printf("%-28s burst: %ld events from 4 threads, lost %ld (target 0 with "
               "segopsd up), flush=%d, dropped total=%" PRIu64 "\n",
               label, (long)burst / 4 * 4, fails, r, segops_dropped(shim));
        segops_shim_close(shim);
        return 0;
}
