/* sink-tally.h - the sink's bookkeeping (sink-tally.c): which event ids
 * arrived, how often, and when.
 */
#ifndef SEGOPS_BENCH_SINK_TALLY_H
#define SEGOPS_BENCH_SINK_TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TALLY_MAX_EXPECT UINT64_C(100000000)

struct tally_counts {
        uint64_t unique;
        uint64_t duplicates;
        uint64_t foreign;    /* ids outside e0..e<expect-1> */
        uint64_t events;     /* every id seen */
        uint64_t requests;   /* batch POSTs */
        uint64_t bytes;      /* batch bodies as received on the wire */
        uint64_t started_ns; /* bench_now_ns() at tally_init: the sink's start */
        uint64_t first_ns;   /* bench_now_ns() of the first and the last */
        uint64_t last_ns;    /* batch that carried an event */
};

struct tally {
        uint64_t expect;
        uint8_t *seen; /* bitmap of expect bits */
        struct tally_counts n;
        char *plain; /* gunzip output, reused */
        size_t plain_cap;
};

/* Count ids e0..e<expect-1> (1 <= expect <= TALLY_MAX_EXPECT), and note
 * the time: an upstream that was down came up then. Returns 0 or
 * -ENOMEM. */
int tally_init(struct tally *t, uint64_t expect);
void tally_free(struct tally *t);

/* Count one batch request's body as received (gzip: unpacked here, into
 * at most 32 MiB): every "event_id" in it, new or seen before. Sets
 * *ret_accepted (new and foreign ids: the upstream would accept both) and
 * *ret_duplicates, and returns 0; or returns -EBADMSG, -EFBIG or -ENOMEM
 * for a gzip body it cannot unpack (the request and its bytes still
 * count). */
int tally_batch(struct tally *t, const char *body, size_t len, bool gzip, uint64_t *ret_accepted,
                uint64_t *ret_duplicates);

/* The totals as one JSON object in buf: its length, or -ENOSPC. */
int tally_format(const struct tally *t, char *buf, size_t len);

#endif
