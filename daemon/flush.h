/* flush.h - the flush op's waiters and their accounting.
 *
 * A flush covers the events held when it began: sequence numbers
 * first..target. It is answered once none of them is held any more, or
 * at its deadline. Each waiter counts, by reason, only the drops of its
 * own events (flush_dropped), so one client's flush never reports
 * another's losses. Waiters that are due are settled first and answered
 * later (flush_answer, from a fresh turn of the loop), so an answer
 * never runs inside the code that settled it, and a callback that
 * starts another flush never re-enters this list.
 *
 * A flush also covers the datagrams queued in the events socket when it
 * began, which are read in slices over several turns of the loop (see
 * dgram.c). Until they are, the waiter is open (drain != 0, target
 * UINT64_MAX): it cannot be done, it covers every event taken in
 * meanwhile (flush_pushed), and when the drain is done (flush_drained)
 * its target becomes the newest event's.
 */
#ifndef SEGOPSD_FLUSH_H
#define SEGOPSD_FLUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "stats.h"

struct flush_result {
        int result;         /* 0; -ETIMEDOUT (some pending); -ESHUTDOWN; -ENOMEM */
        uint64_t covered;   /* events held when the flush began */
        uint64_t delivered; /* of those, accepted upstream */
        uint64_t dropped;   /* of those, lost (the sum of dropped_by) */
        uint64_t dropped_by[DROP_REASON_COUNT];
        uint64_t pending; /* of those, still held at the answer */
};

typedef void (*flush_done_fn)(void *ud, const struct flush_result *res);

/* How many events with a seq in first..target are still held. */
typedef uint64_t (*flush_held_fn)(void *ctx, uint64_t first, uint64_t target);

struct flush_waiter {
        struct flush_waiter *next;
        uint64_t first, target; /* the seqs it covers */
        uint64_t deadline;      /* loop ms */
        uint64_t drain;         /* open until the datagram drain reaches this; 0: closed */
        struct flush_result res;
        flush_done_fn cb;
        void *ud;
};

struct flushes {
        struct flush_waiter *waiting; /* not yet due */
        struct flush_waiter *settled; /* due, to be answered */
};

/* A flush of seqs first..target (covered of them held now), due at
 * deadline. NULL when out of memory. */
struct flush_waiter *flush_add(struct flushes *fl, uint64_t first, uint64_t target,
                               uint64_t covered, uint64_t deadline, flush_done_fn cb, void *ud);

/* Make w open until the datagram drain reaches drain. */
void flush_open(struct flush_waiter *w, uint64_t drain);
/* n events were taken in (the newest seqs): the open waiters cover them. */
void flush_pushed(struct flushes *fl, uint64_t n);
/* The datagram drain has reached mark: each open waiter whose drain is
 * at most mark closes, covering seqs up to target (the newest). */
void flush_drained(struct flushes *fl, uint64_t mark, uint64_t target);

/* Events lo..hi (seqs) left other than by delivery, for reason why. */
void flush_dropped(struct flushes *fl, uint64_t lo, uint64_t hi, enum stats_drop why);
/* Seqs lo..hi turned out never to have been events (a replay's gaps):
 * no longer covered. */
void flush_gone(struct flushes *fl, uint64_t lo, uint64_t hi);

/* Settle the waiters that are done (closed, and every seq they cover
 * is below low_water, the oldest seq still held) or past their
 * deadline at now.
 * True when any waiter is settled and waits for flush_answer. */
bool flush_settle(struct flushes *fl, uint64_t low_water, uint64_t now, flush_held_fn held,
                  void *ctx);

/* Call back every waiter settled so far, once, and free it. Callbacks
 * may add flushes: those are settled and answered by later calls. */
void flush_answer(struct flushes *fl);

/* The requester went away: forget w (waiting or settled) without
 * calling it. */
void flush_cancel(struct flushes *fl, struct flush_waiter *w);

/* The earliest deadline of a waiting flush, or UINT64_MAX. */
uint64_t flush_next_deadline(const struct flushes *fl);

/* Answer every flush at once with result (the daemon stops). */
void flush_close(struct flushes *fl, int result, flush_held_fn held, void *ctx);

#endif
