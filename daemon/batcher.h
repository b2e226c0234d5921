/* batcher.h - cuts queued events into batches and sees each batch
 * through to a final answer: sent, split, retried or dropped.
 *
 * A batch owns its encoded body (identical on every retry: same
 * batch_id, same sent_at) and the arrival number (seq) of each event in
 * it, so a flush can wait for "every event up to seq N" and a 413 can
 * split it without re-encoding events. At most max_in_flight batches
 * exist at once; the rest of the events wait in the queue, bounded by
 * max_memory.
 */
#ifndef SEGOPSD_BATCHER_H
#define SEGOPSD_BATCHER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proto.h"

struct daemon;
struct batch;

/* result 0: everything held at the request is delivered (or was
 * dropped: dropped says how many); -ETIMEDOUT: pending are left. */
typedef void (*batcher_flush_fn)(void *ud, int result, uint64_t flushed, uint64_t dropped,
                                 uint64_t pending);

struct flush_waiter {
        struct flush_waiter *next;
        uint64_t target;   /* every seq <= target must be resolved */
        uint64_t held;     /* events held when the flush began */
        uint64_t dropped0; /* total drops when it began */
        uint64_t deadline; /* loop time, ms */
        batcher_flush_fn cb;
        void *ud;
};

/* One batcher_flush call in progress (on its stack): pump() may answer
 * its waiter, or, through a callback, start another flush first. */
struct flush_frame {
        struct flush_waiter *w;
        bool answered;
        struct flush_frame *prev;
};

struct batcher {
        struct daemon *d;
        struct batch *batches; /* every live batch */
        unsigned nbatches;
        struct flush_frame *adding; /* batcher_flush calls in progress */
        uv_timer_t interval;        /* flush_interval, periodic */
        uv_timer_t wake;            /* next retry / pause end / deadline */
        bool interval_due;          /* cut partial batches */
        uint64_t paused_until;      /* loop ms; Retry-After pauses sending */
        uint64_t flush_target;      /* cut partial batches up to this seq */
        struct flush_waiter *waiters;
        bool draining; /* stopping: send everything */
        bool closing;
        /* upstream health, for stats and for logging once per change */
        const char *state;
        long last_status;
        char last_error[256];
};

int batcher_init(struct batcher *b, struct daemon *d);

/* Events were queued: cut and send what is due. Cheap when nothing is
 * due, so ingest calls it after every read. */
void batcher_kick(struct batcher *b);
/* Something other than new events may let batches go (a session token
 * arrived): look at everything again. */
void batcher_wake(struct batcher *b);

/* Wait until every event held now is resolved, up to timeout_ms. The
 * callback may run before this returns (nothing held). Returns the
 * waiter (for batcher_flush_cancel), or NULL when cb already ran or
 * memory ran out (then cb ran with -ENOMEM). */
struct flush_waiter *batcher_flush(struct batcher *b, uint64_t timeout_ms, batcher_flush_fn cb,
                                   void *ud);
/* The requester went away: forget the waiter, do not call it. */
void batcher_flush_cancel(struct batcher *b, struct flush_waiter *w);

/* The config was reloaded: restart the flush_interval timer and look
 * again at what is queued (batch_size or max_batch_bytes may be lower). */
void batcher_reconfigure(struct batcher *b);

/* Events held: queued plus in batches. */
uint64_t batcher_held(const struct batcher *b);
unsigned batcher_in_flight(const struct batcher *b);

/* Stop: send everything now, ignoring flush_interval. */
void batcher_drain(struct batcher *b);
/* True once nothing is held. */
bool batcher_idle(const struct batcher *b);

/* Abort what is in flight, count what is left as dropped (shutdown),
 * free everything, close the timers. Returns the events lost. */
uint64_t batcher_close(struct batcher *b);

#endif
