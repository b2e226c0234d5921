/* rates.h - what the counters did lately: events/s in and out over the
 * last 10 s and minute, drops and rejections in the last minute, and
 * when the oldest event still held arrived.
 *
 * A sample of the counters is taken once a second (status.c's tick)
 * into a ring of RATES_SLOTS; figures are the difference between now
 * and the newest sample at least a window old (or the first sample,
 * while the uptime is shorter than the window). Arrival marks pair a
 * seq with the loop time before which every lower seq had arrived; a
 * bounded list of them, thinned by half when full (counted, and new
 * marks then come at the doubled spacing), dates any held event to
 * within a tick, or within the marks' spacing after a long outage. Pure functions of their arguments: no clock is read. */
#ifndef SEGOPSD_RATES_H
#define SEGOPSD_RATES_H

#include <stdbool.h>
#include <stdint.h>

#define RATES_SLOTS 64  /* one a second: a minute's window and a margin */
#define RATES_MARKS 128 /* arrival marks; thinned by half when full */

/* Monotonic counters at one moment (loop ms). */
struct rates_sample {
        uint64_t t_ms;
        uint64_t in;       /* events accepted */
        uint64_t out;      /* events the upstream accepted */
        uint64_t dropped;  /* events dropped (segopsd's and reported by clients) */
        uint64_t rejected; /* messages rejected */
};

struct rates_mark {
        uint64_t seq;  /* the first seq that had not arrived at t_ms */
        uint64_t t_ms; /* loop ms */
};

struct rates {
        struct rates_sample ring[RATES_SLOTS];
        unsigned head, n; /* the newest sample is ring[(head + n - 1) % SLOTS] */
        struct rates_sample first;
        struct rates_mark marks[RATES_MARKS];
        unsigned nmarks;
        uint64_t spacing_ms; /* at least this between marks (0 at first) */
        uint64_t thinned;    /* times the marks were thinned (the bound hit) */
};

struct rates_view {
        double in_10s, out_10s, in_1m, out_1m; /* events/s */
        uint64_t dropped_1m, rejected_1m;
};

/* Start with the counters at s (at s->t_ms) and the seq the next event
 * will get. */
void rates_init(struct rates *r, const struct rates_sample *s, uint64_t next_seq);

/* One tick: sample s, and next_seq now. oldest_held is the seq of the
 * oldest event held (0: none), so marks no longer needed go. */
void rates_tick(struct rates *r, const struct rates_sample *s, uint64_t next_seq,
                uint64_t oldest_held);

/* The figures at now (now->t_ms, the current counters). */
void rates_view(const struct rates *r, const struct rates_sample *now, struct rates_view *out);

/* When event seq arrived, at the latest (loop ms): it arrived after the
 * returned time and before the next mark's. False when seq is older
 * than every mark (an earlier run's, read back from the spool). */
bool rates_arrived(const struct rates *r, uint64_t seq, uint64_t *ret_ms);

#endif
