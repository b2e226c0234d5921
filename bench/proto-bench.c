/* proto-bench.c - CPU cost of parsing one typical event, fast vs slow.
 *
 * The daemon's budget is a few CPU-microseconds per event, and
 * proto_parse() is the biggest single cost in it, so this measures just
 * that: the same 200-byte track event (the shape bench/sender.c sends)
 * parsed N times through proto_parse(), which takes the fast path, and
 * through proto_parse_slow(), the jansson path it falls back to. It
 * prints process CPU nanoseconds per message for each. Not a test: the
 * figures depend on the machine; tests/unit/test-proto-fast.c checks
 * correctness.
 *
 * Usage: proto-bench [ITERATIONS]   (default 1000000)
 */
#include "parse-internal.h"
#include "proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_ITERATIONS 1000000UL
#define MAX_ITERATIONS 1000000000UL

typedef int (*parse_fn)(const char *, size_t, size_t, int64_t, const uint8_t *, struct proto_buf *,
                        struct proto_msg *, struct proto_error *);

static const char message[] = "{\"user_id\":\"user-417\",\"event_type\":\"bench_event\","
                              "\"event_id\":\"e123417\",\"payload\":{\"seq\":123417,\"pad\":"
                              "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}";

static double cpu_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ns per message, or a negative errno if a parse failed. */
static double measure(parse_fn fn, unsigned long n, struct proto_buf *out)
{
        static const uint8_t rnd[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
        struct proto_msg msg;
        struct proto_error err;
        double t0, t1;

        t0 = cpu_ns();
        for (unsigned long i = 0; i < n; i++) {
                int r;

                proto_buf_reset(out);
                r = fn(message, sizeof(message) - 1, PROTO_MAX_MESSAGE_BYTES,
                       INT64_C(1795755600123), rnd, out, &msg, &err);
                if (r != 0)
                        return r < 0 ? r : -EINVAL;
        }
        t1 = cpu_ns();
        return (t1 - t0) / (double)n;
}

int main(int argc, char **argv)
{
        struct proto_buf fast_out = { 0 }, slow_out = { 0 };
        unsigned long n = DEFAULT_ITERATIONS;
        double fast, slow;
        int ret = 1;

        if (argc > 2) {
                fprintf(stderr, "usage: %s [ITERATIONS]\n", argv[0]);
                return 2;
        }
        if (argc == 2) {
                char *end;

                errno = 0;
                n = strtoul(argv[1], &end, 10);
                if (errno || end == argv[1] || *end || n == 0 || n > MAX_ITERATIONS) {
                        fprintf(stderr, "bad iteration count: %s\n", argv[1]);
                        return 2;
                }
        }

        /* Warm up caches and the allocator, then measure each path. */
        measure(proto_parse_slow, n / 10 + 1, &slow_out);
        measure(proto_parse, n / 10 + 1, &fast_out);
        slow = measure(proto_parse_slow, n, &slow_out);
        fast = measure(proto_parse, n, &fast_out);
        if (fast < 0 || slow < 0) {
                fprintf(stderr, "parse failed\n");
                goto out;
        }
        if (fast_out.len != slow_out.len ||
            memcmp(fast_out.data, slow_out.data, fast_out.len) != 0) {
                fprintf(stderr, "fast and slow outputs differ\n");
                goto out;
        }
        printf("message: %zu bytes, %lu iterations\n", sizeof(message) - 1, n);
        printf("fast path (proto_parse): %8.1f ns/message\n", fast);
        printf("slow path (jansson):     %8.1f ns/message\n", slow);
        printf("speed-up:                %8.1fx\n", slow / fast);
        ret = 0;
out:
        proto_buf_free(&fast_out);
        proto_buf_free(&slow_out);
        return ret;
}
