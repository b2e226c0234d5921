/* queue.c - a singly linked FIFO of encoded events and the memory
 * account that bounds it. One allocation per event, freed by whoever
 * pops it; the account is the single place max_memory is enforced. */
#include "queue.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void q_init(struct queue *q, size_t limit, enum cfg_when_full when_full)
{
        memset(q, 0, sizeof(*q));
        q->limit = limit;
        q->when_full = when_full;
        q->next_seq = 1;
}

static void drop_head(struct queue *q)
{
        struct q_event *e = q_pop(q);

        q_event_free(q, e);
}

int q_push(struct queue *q, const char *ev, size_t len)
{
        size_t cost = Q_EVENT_COST(len);
        struct q_event *e;
        int dropped = 0;

        if (q->held + q->reserve + cost > q->limit) {
                /* Refused outright when even an empty queue would not
                 * make room (batches hold the rest): drop_oldest must
                 * not throw the queue away for nothing. */
                size_t queued = q->bytes + q->count * Q_EVENT_COST(0);

                if (q->when_full == CFG_DROP_NEWEST ||
                    q->held - queued + q->reserve + cost > q->limit)
                        return -ENOBUFS;
        }
        while (q->held + q->reserve + cost > q->limit) {
                drop_head(q);
                dropped++;
        }
        e = malloc(sizeof(*e) + len);
        if (!e)
                return -ENOMEM;
        e->next = NULL;
        e->seq = q->next_seq++;
        e->len = (uint32_t)len;
        memcpy(e->data, ev, len);
        if (q->tail)
                q->tail->next = e;
        else
                q->head = e;
        q->tail = e;
        q->count++;
        q->bytes += len;
        q->held += cost;
        return dropped;
}

struct q_event *q_pop(struct queue *q)
{
        struct q_event *e = q->head;

        if (!e)
                return NULL;
        q->head = e->next;
        if (!q->head)
                q->tail = NULL;
        e->next = NULL;
        q->count--;
        q->bytes -= e->len;
        return e;
}

void q_event_free(struct queue *q, struct q_event *e)
{
        if (!e)
                return;
        q_release(q, Q_EVENT_COST(e->len));
        free(e);
}

void q_charge(struct queue *q, size_t n)
{
        q->held += n;
}

void q_release(struct queue *q, size_t n)
{
        assert(q->held >= n);
        q->held -= n;
}

uint64_t q_head_seq(const struct queue *q)
{
        return q->head ? q->head->seq : UINT64_MAX;
}

size_t q_clear(struct queue *q)
{
        size_t n = 0;

        while (q->head) {
                drop_head(q);
                n++;
        }
        return n;
}
