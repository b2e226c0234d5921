/* queue.c - a FIFO of encoded events in blocks, and the memory account
 * that bounds it.
 *
 * Records go one after another into 64 KiB blocks; the oldest block is
 * freed, or kept as the one spare, when its last record is popped. So
 * queuing an event is a copy, not an allocation, and the account is the
 * single place max_memory is enforced. Events are pushed with their
 * sequence numbers ascending (the batcher hands them out; with a spool,
 * replay and damage may leave gaps) and leave from the head only; each
 * block knows its count and its seqs, so counting a range of seqs reads
 * only the two blocks at its ends.
 */
#include "queue.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct q_block {
        struct q_block *next;
        size_t cap;        /* bytes in mem */
        size_t head;       /* offset of the oldest record */
        size_t tail;       /* offset of the next record */
        size_t count;      /* records in it */
        uint64_t last_seq; /* of its newest record */
        _Alignas(struct q_event) char mem[];
};

/* A record's size, rounded so the next one stays aligned. */
static size_t rec_size(size_t len)
{
        size_t n = offsetof(struct q_event, data) + len;
        size_t a = _Alignof(struct q_event);

        return (n + a - 1) / a * a;
}

void q_init(struct queue *q, size_t limit, enum cfg_when_full when_full)
{
        memset(q, 0, sizeof(*q));
        q->limit = limit;
        q->when_full = when_full;
}

static struct q_block *block_new(struct queue *q, size_t rec)
{
        size_t cap = rec > Q_BLOCK_BYTES ? rec : Q_BLOCK_BYTES;
        struct q_block *k;

        if (q->spare && q->spare->cap >= cap) {
                k = q->spare;
                q->spare = NULL;
        } else {
                k = malloc(sizeof(*k) + cap);
                if (!k)
                        return NULL;
                k->cap = cap;
        }
        k->next = NULL;
        k->head = k->tail = 0;
        k->count = 0;
        return k;
}

static void block_done(struct queue *q, struct q_block *k)
{
        if (!q->spare && k->cap == Q_BLOCK_BYTES) {
                q->spare = k;
                return;
        }
        free(k);
}

const struct q_event *q_peek(const struct queue *q)
{
        if (!q->count)
                return NULL;
        return (const struct q_event *)(q->first->mem + q->first->head);
}

void q_set_limits(struct queue *q, size_t limit, enum cfg_when_full when_full)
{
        q->limit = limit;
        q->when_full = when_full;
}

void q_set_reserve(struct queue *q, size_t n)
{
        q->reserve = n;
}

void q_pop(struct queue *q)
{
        struct q_block *k = q->first;
        const struct q_event *e = q_peek(q);

        assert(e);
        q->count--;
        q->bytes -= e->len;
        q_release(q, Q_EVENT_COST(e->len));
        k->head += rec_size(e->len);
        k->count--;
        if (k->head < k->tail)
                return;
        /* The block is empty: the newest stays for the next push. */
        if (k == q->last) {
                k->head = k->tail = 0;
                return;
        }
        q->first = k->next;
        block_done(q, k);
}

/* Room for an event of cost bytes: 0, or -ENOBUFS. With evict, the
 * oldest events leave to make it (each told to evict), unless even an
 * empty queue would have none (batches hold the rest): evicting would
 * lose them for nothing. */
static int make_room(struct queue *q, size_t cost, q_evict_fn evict, void *ud)
{
        size_t queued = q->bytes + q->count * Q_EVENT_COST(0);

        if (q->used + q->reserve + cost <= q->limit)
                return 0;
        if (!evict || q->used - queued + q->reserve + cost > q->limit)
                return -ENOBUFS;
        while (q->used + q->reserve + cost > q->limit) {
                uint64_t seq = q_head_seq(q);

                q_pop(q);
                evict(ud, seq);
        }
        return 0;
}

int q_push(struct queue *q, uint64_t seq, const char *ev, size_t len, q_evict_fn evict, void *ud)
{
        size_t cost = Q_EVENT_COST(len), rec = rec_size(len);
        struct q_block *k;
        struct q_event *e;
        int r;

        assert(seq > q->last_seq);
        if (len > UINT32_MAX)
                return -ENOBUFS;
        r = make_room(q, cost, q->when_full == CFG_DROP_OLDEST ? evict : NULL, ud);
        if (r < 0)
                return r;
        k = q->last;
        if (k && k->head == k->tail && k->cap - k->tail < rec) {
                /* An empty block (the queue is empty) that cannot take
                 * this record goes: a block ahead of the record must
                 * hold records, or q_peek would read what was there. */
                assert(q->count == 0 && k == q->first);
                block_done(q, k);
                q->first = q->last = k = NULL;
        }
        if (!k || k->cap - k->tail < rec) {
                k = block_new(q, rec);
                if (!k)
                        return -ENOMEM;
                if (q->last)
                        q->last->next = k;
                else
                        q->first = k;
                q->last = k;
        }
        e = (struct q_event *)(k->mem + k->tail);
        e->seq = seq;
        e->len = (uint32_t)len;
        memcpy(e->data, ev, len);
        k->tail += rec;
        k->count++;
        k->last_seq = seq;
        q->last_seq = seq;
        q->count++;
        q->bytes += len;
        q->used += cost;
        return 0;
}

void q_charge(struct queue *q, size_t n)
{
        q->used += n;
}

void q_release(struct queue *q, size_t n)
{
        assert(q->used >= n);
        q->used -= n;
}

uint64_t q_head_seq(const struct queue *q)
{
        const struct q_event *e = q_peek(q);

        return e ? e->seq : UINT64_MAX;
}

/* Records of k with a seq in first..last, read one by one. */
static size_t count_in_block(const struct q_block *k, uint64_t first, uint64_t last)
{
        size_t n = 0;

        for (size_t off = k->head; off < k->tail;) {
                const struct q_event *e = (const struct q_event *)(k->mem + off);

                n += e->seq >= first && e->seq <= last;
                off += rec_size(e->len);
        }
        return n;
}

size_t q_count_between(const struct queue *q, uint64_t first, uint64_t last)
{
        size_t n = 0;

        for (const struct q_block *k = q->first; k && k->count; k = k->next) {
                uint64_t lo = ((const struct q_event *)(k->mem + k->head))->seq;

                if (lo > last)
                        break;
                if (k->last_seq < first)
                        continue;
                n += lo >= first && k->last_seq <= last ? k->count : count_in_block(k, first, last);
        }
        return n;
}

size_t q_clear(struct queue *q)
{
        size_t n = q->count;

        while (q->count)
                q_pop(q);
        while (q->first) {
                struct q_block *k = q->first;

                q->first = k->next;
                free(k);
        }
        q->last = NULL;
        free(q->spare);
        q->spare = NULL;
        return n;
}
