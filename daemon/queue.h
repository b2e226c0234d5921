/* queue.h - the bounded in-memory queue of accepted, encoded events.
 *
 * Events wait here, in arrival order, until the batcher cuts them into
 * a batch. The queue also keeps the daemon's memory account: bytes of
 * queued events plus bytes charged by batches (their bodies), checked
 * against max_memory. A disk spool slots in behind this interface: it
 * would take events instead of dropping them and feed them back here.
 */
#ifndef SEGOPSD_QUEUE_H
#define SEGOPSD_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One queued event: a record inside a block of the queue. */
struct q_event {
        uint64_t seq; /* arrival number, 1, 2, ... */
        uint32_t len;
        char data[]; /* the normalised event JSON, not NUL-terminated */
};

/* Records are appended to blocks of Q_BLOCK_BYTES (one larger event gets
 * a block of its own) and consumed from the oldest block, which is freed
 * (or kept as the one spare) once empty: no allocation per event. */
#define Q_BLOCK_BYTES (64 * 1024)

struct q_block;

struct queue {
        struct q_block *first, *last; /* oldest records, newest records */
        struct q_block *spare;        /* one emptied block kept for reuse */
        size_t count;
        size_t bytes;   /* sum of len of queued events */
        size_t used;    /* the memory account, bytes: queued + charged */
        size_t limit;   /* max_memory */
        size_t reserve; /* kept free for what the batcher will charge */
        enum cfg_when_full when_full;
        uint64_t last_seq; /* of the newest event pushed; 0 before any */
};

/* What one queued event costs in the account: its record (<= len + 19),
 * its share of the block, and never less than the same event costs in a
 * batch (len + 17), so moving it there never raises the account. The
 * blocks' unused ends (at most two blocks) are not counted. */
#define Q_EVENT_COST(len) ((len) + 40)

void q_init(struct queue *q, size_t limit, enum cfg_when_full when_full);
/* A reload: the new max_memory and when_full apply to the next push. */
void q_set_limits(struct queue *q, size_t limit, enum cfg_when_full when_full);

/* An event (its seq) that left the head of the queue to make room for
 * a new one: the caller counts it as lost. */
typedef void (*q_evict_fn)(void *ud, uint64_t seq);

/* Append an event as seq (greater than any pushed before). With the
 * account full, drop_newest refuses it, and so does a NULL evict;
 * drop_oldest evicts queued events from the head until it fits, telling
 * evict of each (or refuses it, evicting nothing, when even an empty
 * queue would not make room). Returns 0, -ENOBUFS (refused: no room) or
 * -ENOMEM (evictions, told already, may have happened). */
int q_push(struct queue *q, uint64_t seq, const char *ev, size_t len, q_evict_fn evict, void *ud);

/* The oldest queued event, or NULL; valid until the next push or pop. */
const struct q_event *q_peek(const struct queue *q);

/* Remove the oldest queued event (there must be one): the normal
 * dequeue, once it is copied into a batch. */
void q_pop(struct queue *q);

/* Charge / release memory held outside the queue (batch bodies). The
 * batcher sets q->reserve so that new events leave room for what its
 * next batches will charge: used + reserve never passes limit by a push. */
void q_charge(struct queue *q, size_t n);
void q_release(struct queue *q, size_t n);

void q_set_reserve(struct queue *q, size_t n);

static inline size_t q_count(const struct queue *q)
{
        return q->count;
}
/* Bytes of queued events (their encoded length). */
static inline size_t q_bytes(const struct queue *q)
{
        return q->bytes;
}
/* The memory account: queued events plus what batches charged. */
static inline size_t q_used(const struct queue *q)
{
        return q->used;
}
static inline size_t q_limit(const struct queue *q)
{
        return q->limit;
}
/* What may still be charged before the account passes max_memory,
 * the reserve for batches not yet cut kept aside. */
static inline size_t q_room(const struct queue *q)
{
        size_t taken = q->used + q->reserve;

        return taken < q->limit ? q->limit - taken : 0;
}
/* The seq of the last event pushed (0 before the first). */
static inline uint64_t q_last_seq(const struct queue *q)
{
        return q->last_seq;
}

/* seq of the oldest queued event, or UINT64_MAX when empty. */
uint64_t q_head_seq(const struct queue *q);

/* How many queued events have a seq in first..last. */
size_t q_count_between(const struct queue *q, uint64_t first, uint64_t last);

/* Free everything queued, and the blocks; returns how many events were
 * freed (the caller counts them as lost). The queue stays usable. */
size_t q_clear(struct queue *q);

#endif
