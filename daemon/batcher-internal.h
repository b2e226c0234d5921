/* batcher-internal.h - what batcher.c and batcher-answer.c share. Not
 * for other modules: they use batcher.h. */
#ifndef SEGOPSD_BATCHER_INTERNAL_H
#define SEGOPSD_BATCHER_INTERNAL_H

#include "batcher.h"
#include "forward.h"

struct batch;

static inline uint64_t batcher__now(const struct batcher *b)
{
        return uv_now(b->loop);
}

/* Cut and send what is due, settle flushes, arm the wake timer. */
void batcher__pump(struct batcher *b);

/* Events seq lo..hi are lost for reason why: counted, and charged to
 * the flushes that cover them. */
void batcher__lose(struct batcher *b, uint64_t lo, uint64_t hi, enum stats_drop why);

/* Add x to the list (batches go out in the order they were cut). */
void batcher__link(struct batcher *b, struct batch *x);
/* Unlink x, give back its charge, free it. */
void batcher__free(struct batcher *b, struct batch *x);
/* The same, its events lost for reason why. */
void batcher__drop(struct batcher *b, struct batch *x, enum stats_drop why);

/* The forwarder's callback for an events request (ud: the batch). */
void batcher__on_response(void *ud, const struct fwd_result *res);

#endif
