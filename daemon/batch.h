/* batch.h - one upstream request's worth of events: its body, built once
 * from the queue and identical on every retry (same batch_id, same
 * sent_at), the seq of each event in it, and its share of the memory
 * account. The batcher (batcher.c) decides when batches are cut, sent,
 * split or dropped; this file only builds and keeps them.
 */
#ifndef SEGOPSD_BATCH_H
#define SEGOPSD_BATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "proto.h"
#include "queue.h"

enum batch_state {
        BATCH_READY,       /* to send once now >= not_before */
        BATCH_COMPRESSING, /* on the thread pool: nothing touches its buffers */
        BATCH_IN_FLIGHT,
};

struct batch_ev {
        uint64_t seq;
        uint32_t off, len; /* the event's bytes inside body */
};

struct batch;

/* gzip finished (err 0) or failed (err < 0: the batch goes plain). */
typedef void (*batch_compressed_fn)(struct batch *x, int err);

struct batch {
        struct batch *next; /* the batcher's list, in the order cut */
        void *owner;        /* that batcher, for callbacks */
        enum batch_state state;
        char id[PROTO_UUID_LEN + 1];
        struct proto_buf body; /* uncompressed, identical on retries */
        struct proto_buf gz;   /* compressed body, when smaller */
        uint32_t n, evs_cap;
        struct batch_ev *evs; /* seqs ascending */
        unsigned attempts;    /* sends so far */
        uint64_t token_gen;   /* pk_: the session token it was sent with */
        uint64_t key_gen;     /* the key it was sent with (a reload may replace it) */
        bool reminted;        /* pk_: already resent once after a 401 */
        bool stamped;         /* sent_at set for the first attempt */
        bool orphaned;        /* its owner closed while it was compressing */
        uint64_t not_before;  /* loop ms */
        size_t charged;       /* bytes in the memory account */
        uv_work_t work;
        int work_ret;
        batch_compressed_fn compressed;
        struct queue *acct; /* the account it is charged to, while compressing */
};

/* What a batch adds to the account beyond its events' bytes: its struct
 * and the allocator's bookkeeping, and the envelope. The queue keeps
 * this much free for every batch not yet cut (q_set_reserve), so that
 * cutting never pushes the account past max_memory. */
#define BATCH_COST (sizeof(struct batch) + 4 * 16)
#define BATCH_SLOT_COST (BATCH_COST + PROTO_BATCH_OVERHEAD)

/* A new empty batch with a fresh id, room for cap events. NULL: ENOMEM. */
struct batch *batch_new(uint32_t cap);

/* Move events from the head of q into x (empty, from batch_new) until
 * batch_size, max_batch_bytes, the queue's end or a repeated event_id
 * (its two copies must not share a batch) ends it, and close the body.
 * 0, or -ENOMEM: then x holds the events already moved out of q, which
 * the caller must count as lost. */
int batch_cut(struct batch *x, struct queue *q, const struct cfg *c);

/* 413: two new batches with x's first and second halves (new batch
 * ids; the events keep theirs). 0 or -ENOMEM (nothing made). */
int batch_split(const struct batch *x, struct batch *parts[2]);

/* Built: trim what building over-allocated, charge the account what it
 * holds, and make it ready for a first attempt. */
void batch_ready(struct batch *x, struct queue *q);

/* Its first attempt is due: sent_at becomes now (SPEC section 4: the
 * first attempt's time, the same on every retry). */
void batch_stamp(struct batch *x, int64_t now_ms);

/* Compress x on the thread pool. Returns 1 when it went (cb runs later
 * on the loop, unless the batch is orphaned), 0 when the account has no
 * room for a compressed copy (send it plain), or a negative errno (the
 * pool refused it: send it plain). */
int batch_compress(struct batch *x, uv_loop_t *loop, struct queue *q, batch_compressed_fn cb);

/* The owner closes while x is on the thread pool: x gives its charge
 * back now and is freed when the pool is done with it. */
void batch_orphan(struct batch *x, struct queue *q);

/* Give back x's charge and free it (NULL ok). */
void batch_free(struct batch *x, struct queue *q);

#endif
