/* batcher.h - holds the accepted events (the queue, then batches) and
 * sees each batch through to a final answer: delivered, split, retried
 * or dropped; answers flushes.
 *
 * At most max_in_flight batches exist at once; the rest of the events
 * wait in the queue, bounded by max_memory. Every event that leaves
 * other than by delivery is counted in stats.dropped by reason, and
 * charged to the flushes that cover it.
 */
#ifndef SEGOPSD_BATCHER_H
#define SEGOPSD_BATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "apikey.h"
#include "config.h"
#include "flush.h"
#include "queue.h"
#include "response.h"
#include "stats.h"

struct batch;
struct fwd;
struct session;
struct spool;

/* Seqs of events that are in memory only (the spool failed): a stop
 * loses them, while the others wait on disk for the next start. */
struct seq_span {
        uint64_t lo, hi;
};

/* The upstream's health as the batcher last saw it. */
struct upstream_health {
        enum upstream_state state;
        long last_status; /* the last HTTP status; 0 before any */
        char last_error[256];
        uint64_t since_ms;         /* loop ms: state last changed (or the start) */
        bool failing;              /* a request failed since the last success */
        uint64_t failing_since_ms; /* loop ms: the first of those failures */
        uint64_t failures;         /* failed requests since the last success */
};

struct batcher {
        uv_loop_t *loop;
        const struct cfg *cfg; /* replaced in place by a reload */
        struct stats *stats;
        const struct apikey *key;
        struct fwd *fwd;
        struct session *session;
        struct spool *spool; /* NULL: memory-only mode */
        uint64_t next_seq;   /* the next accepted event's */
        /* With a spool, events beyond memory wait on disk only:
         * backlog_from .. next_seq - 1 (some seqs may be missing). */
        bool backlog;
        uint64_t backlog_from;
        uint64_t acked;           /* told to the spool: every seq up to it is done */
        size_t unwritten_charged; /* the spool's unwritten records, in the account */
        uint64_t uncommitted;     /* events appended since the last commit */
        struct seq_span *memonly; /* ascending, merged */
        size_t nmemonly, memonly_cap;
        struct queue queue;
        struct flushes flushes;
        struct batch *batches; /* every live batch, in the order cut */
        unsigned nbatches;
        uv_timer_t interval;   /* flush_interval, periodic */
        uv_timer_t wake;       /* next retry / pause end / flush deadline */
        uv_timer_t answer;     /* settled flushes are answered on a fresh turn */
        bool interval_due;     /* cut partial batches */
        uint64_t paused_until; /* loop ms; Retry-After pauses sending */
        uint64_t flush_target; /* cut partial batches up to this seq */
        bool draining;         /* stopping: send everything */
        bool closed;
        struct upstream_health up;
        /* The events socket's drains (dgram.c), by ticket: the last one
         * begun, the last one done. Flushes begun in between wait. */
        uint64_t drain_goal, drain_reached;
};

/* session gives the bearer of each request (the key itself for sk_).
 * spool (NULL: memory-only) is where accepted events are written first;
 * what it holds undone from an earlier run is sent, oldest first. */
void batcher_init(struct batcher *b, uv_loop_t *loop, const struct cfg *cfg, struct stats *stats,
                  const struct apikey *key, struct fwd *fwd, struct session *session,
                  struct spool *spool);

/* Take an accepted event. 0: held (spooled, queued or both). -ENOBUFS
 * (max_memory reached: when_full = drop_newest, or no room even after
 * dropping the oldest), -ENOSPC (max_spool reached, with a spool) or
 * -ENOMEM: not held. Either way *ret_evicted old events were dropped to make room
 * (drop_oldest). Every loss is counted here (dropped.memory_full,
 * dropped.spool_full); the caller only logs. */
int batcher_push(struct batcher *b, const char *ev, size_t len, size_t *ret_evicted);

/* The end of a read burst: write what was pushed to the spool (one
 * write). Before an op's reply, so "events, then ping" means they are
 * on disk. A no-op in memory-only mode. */
void batcher_commit(struct batcher *b);

/* Events were pushed: cut and send what is due. Cheap when nothing is
 * due, so the sockets call it after every read. */
void batcher_kick(struct batcher *b);
/* Something other than new events may let batches go (a session token
 * arrived, a backoff ended): look at everything again. */
void batcher_wake(struct batcher *b);
/* A reload gave the key that was missing (upstream state no_key): the
 * held events go. A no-op in any other state. */
void batcher_key_given(struct batcher *b);

/* Wait until every event held now is delivered or lost, up to
 * timeout_ms. cb runs later, on a fresh turn of the loop, never before
 * this returns. Returns the waiter (for batcher_flush_cancel), or NULL
 * when out of memory (cb will not run). */
struct flush_waiter *batcher_flush(struct batcher *b, uint64_t timeout_ms, flush_done_fn cb,
                                   void *ud);
/* The requester went away: forget the waiter, do not call it. */
void batcher_flush_cancel(struct batcher *b, struct flush_waiter *w);
/* The events socket's reader started a drain (of what it holds now)
 * that ends when it has read goal datagrams in all: flushes started
 * from now on cover what that drain reads. */
void batcher_drain_goal(struct batcher *b, uint64_t goal);
/* The drain got as far as mark (every goal up to mark is reached): the
 * flushes that waited for it now cover every event held. */
void batcher_drain_reached(struct batcher *b, uint64_t mark);

/* The config was reloaded: new limits, the flush_interval timer, and a
 * look at what is queued (batch_size or max_batch_bytes may be lower). */
void batcher_reconfigure(struct batcher *b);

/* Events held: on disk only, queued, and in batches. */
uint64_t batcher_held(const struct batcher *b);
/* Events go to a working spool (not memory-only). */
bool batcher_spooling(const struct batcher *b);
/* Events waiting on disk only (a backlog beyond max_memory). */
uint64_t batcher_disk_only(const struct batcher *b);
/* Bytes in the memory account, and its bound (max_memory). */
size_t batcher_memory(const struct batcher *b);
size_t batcher_memory_limit(const struct batcher *b);
const struct upstream_health *batcher_upstream(const struct batcher *b);
/* The state is one of failure (retrying, throttled, auth_error,
 * tls_error, redirected, send_error). */
bool upstream_state_failing(enum upstream_state s);
/* Loop ms until the next attempt that waits (a backoff or a Retry-After
 * pause), 0 when none waits. */
uint64_t batcher_retry_in(const struct batcher *b);
/* Loop ms left of a Retry-After pause, 0 when none. */
uint64_t batcher_paused_for(const struct batcher *b);
/* The seq of the oldest event held (in memory or on disk), 0 if none;
 * the seq the next accepted event gets. */
uint64_t batcher_oldest_seq(const struct batcher *b);
uint64_t batcher_next_seq(const struct batcher *b);
/* The last answer was a success, or there was none yet (or this is a
 * dry run). */
bool batcher_upstream_healthy(const struct batcher *b);
/* batcher_close() ran: nothing more can be taken in. */
bool batcher_closed(const struct batcher *b);

/* Stop: send everything now, ignoring flush_interval. */
void batcher_drain(struct batcher *b);
/* True once nothing is held. */
bool batcher_idle(const struct batcher *b);

/* The end: count what is still held as dropped (shutdown), answer the
 * flushes, free everything, close the timers. The forwarder must be
 * closed first (no request may still use a batch's body). Returns the
 * events lost. */
uint64_t batcher_close(struct batcher *b);

#endif
