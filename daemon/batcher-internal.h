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

/* The upstream is in state s now (since_ms restarts on a change). */
void batcher__set_state(struct batcher *b, enum upstream_state s);
/* Keep the upstream's health after an answer with verdict v: its state,
 * and the failures since the last success (not for a dry run). */
void batcher__note_answer(struct batcher *b, const struct resp_verdict *v, bool dry_run);

/* Batches waiting out a backoff may go at once (not a Retry-After). */
void batcher__release_backoffs(struct batcher *b);

/* Add x to the list (batches go out in the order they were cut). */
void batcher__link(struct batcher *b, struct batch *x);
/* Unlink x, give back its charge, free it. */
void batcher__free(struct batcher *b, struct batch *x);
/* The same, its events lost for reason why. */
void batcher__drop(struct batcher *b, struct batch *x, enum stats_drop why);

/* batcher-spool.c: the durable path. */
void batcher__spool_start(struct batcher *b);
int batcher__push_durable(struct batcher *b, const char *ev, size_t len);
/* Read back what waits on disk, as far as memory and this turn allow.
 * True when more could be read at once (come back on a fresh turn). */
bool batcher__refill(struct batcher *b);
uint64_t batcher__backlog_between(const struct batcher *b, uint64_t first, uint64_t last);
void batcher__acknowledge(struct batcher *b, uint64_t low_water);
bool batcher__memonly(const struct batcher *b, uint64_t seq);
void batcher__memonly_add(struct batcher *b, uint64_t lo, uint64_t hi);
/* At the end: seq (held) is lost unless it is on disk; returns 1 if so. */
uint64_t batcher__lose_held(struct batcher *b, uint64_t seq);
/* At the end: the backlog the spool could not write is lost. */
uint64_t batcher__lose_backlog(struct batcher *b);
void batcher__spool_close(struct batcher *b);

/* The forwarder's callback for an events request (ud: the batch). */
void batcher__on_response(void *ud, const struct fwd_result *res);
/* The upstream's health at start: idle, dry run, or no key yet. */
void batcher__upstream_start(struct batcher *b);

#endif
