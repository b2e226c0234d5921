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

struct q_event {
        struct q_event *next;
        uint64_t seq; /* arrival number, 1, 2, ... */
        uint32_t len;
        char data[]; /* the normalised event JSON, not NUL-terminated */
};

struct queue {
        struct q_event *head, *tail;
        size_t count;
        size_t bytes;   /* sum of len of queued events */
        size_t held;    /* memory account: queued + charged */
        size_t limit;   /* max_memory */
        size_t reserve; /* kept free for what the batcher will charge */
        enum cfg_when_full when_full;
        uint64_t next_seq; /* seq of the next event pushed */
};

/* What one queued event costs in the account. */
#define Q_EVENT_COST(len) (sizeof(struct q_event) + (len) + 16)

void q_init(struct queue *q, size_t limit, enum cfg_when_full when_full);

/* Append an event. With the account full, drop_newest refuses it
 * (-ENOBUFS) and drop_oldest drops queued events from the head until it
 * fits (or refuses it when nothing queued is left to drop). Returns the
 * number of old events dropped (>= 0), or -ENOBUFS / -ENOMEM. */
int q_push(struct queue *q, const char *ev, size_t len);

/* Detach the head; the caller owns it and must q_event_free() it. */
struct q_event *q_pop(struct queue *q);
void q_event_free(struct queue *q, struct q_event *e);

/* Charge / release memory held outside the queue (batch bodies). The
 * batcher sets q->reserve so that new events leave room for what its
 * next batches will charge: held + reserve never passes limit by a push. */
void q_charge(struct queue *q, size_t n);
void q_release(struct queue *q, size_t n);

/* seq of the oldest queued event, or UINT64_MAX when empty. */
uint64_t q_head_seq(const struct queue *q);

/* Free everything queued; returns how many events were freed. */
size_t q_clear(struct queue *q);

#endif
