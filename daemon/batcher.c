/* batcher.c - turns the event queue into upstream requests and carries
 * out the response table's verdicts (response.c).
 *
 * Life of a batch: cut from the queue (batch.c) -> ready -> at its
 * first attempt, sent_at stamped and, when compression is on, gzip on
 * the thread pool -> in flight -> one of: delivered (freed), dropped
 * (400 / permanent 4xx / a lone event's 413, counted), split (413: two
 * new batches), or waiting (backoff with full jitter, or a global
 * Retry-After pause) and then ready again. One timer wakes the batcher
 * for the next due retry, pause end or flush deadline; a second marks
 * flush_interval; a third answers settled flushes on a fresh loop turn.
 * What an answer does to a batch is batcher-answer.c's.
 */
#include "batcher.h"
#include "batcher-internal.h"

#include <errno.h>
#include <string.h>

#include "batch.h"
#include "clock.h"
#include "forward.h"
#include "log.h"
#include "session.h"
#include "spool.h"
#include "urlshow.h"

#define EVENTS_PATH "/api/events/batch/"
#define START_RETRY_MS 1000 /* a request that could not even start */

void batcher__pump(struct batcher *b);

/* ---- what is held, and what is lost ---- */

/* Events seq lo..hi are lost for reason why: counted, and charged to
 * the flushes that cover them. */
void batcher__lose(struct batcher *b, uint64_t lo, uint64_t hi, enum stats_drop why)
{
        b->stats->dropped[why] += hi - lo + 1;
        flush_dropped(&b->flushes, lo, hi, why);
}

/* The oldest seq still held anywhere (UINT64_MAX: none). */
static uint64_t low_water(const struct batcher *b)
{
        uint64_t low = q_head_seq(&b->queue);

        for (const struct batch *x = b->batches; x; x = x->next)
                if (x->n && x->evs[0].seq < low)
                        low = x->evs[0].seq;
        if (b->backlog && b->backlog_from < low)
                low = b->backlog_from;
        return low;
}

static uint64_t held_between(void *ctx, uint64_t first, uint64_t target)
{
        const struct batcher *b = ctx;
        uint64_t n = q_count_between(&b->queue, first, target) +
                     batcher__backlog_between(b, first, target);

        for (const struct batch *x = b->batches; x; x = x->next)
                for (uint32_t i = 0; i < x->n; i++)
                        n += x->evs[i].seq >= first && x->evs[i].seq <= target;
        return n;
}

/* ---- the batch list and the memory reserve ---- */

/* nbatches changed: keep room for the batches still to be cut. A 413
 * split may take nbatches past max_in_flight; the reserve is then 0, and
 * each split adds one BATCH_SLOT_COST over it: while an upstream keeps
 * answering 413, at most max_in_flight * batch_size of them (every
 * batch split down to single events), ~37 KB with the defaults. The
 * README's bounds table says so. */
static void set_reserve(struct batcher *b)
{
        unsigned slots = b->cfg->max_in_flight;

        q_set_reserve(&b->queue, b->nbatches < slots ? (slots - b->nbatches) * BATCH_SLOT_COST : 0);
}

/* Appended: batches go out in the order they were cut. */
void batcher__link(struct batcher *b, struct batch *x)
{
        struct batch **tail = &b->batches;

        while (*tail)
                tail = &(*tail)->next;
        *tail = x;
        x->owner = b;
        b->nbatches++;
        set_reserve(b);
}

static void unlink_batch(struct batcher *b, struct batch *x)
{
        for (struct batch **p = &b->batches; *p; p = &(*p)->next) {
                if (*p == x) {
                        *p = x->next;
                        b->nbatches--;
                        set_reserve(b);
                        return;
                }
        }
}

void batcher__free(struct batcher *b, struct batch *x)
{
        unlink_batch(b, x);
        batch_free(x, &b->queue);
}

/* Its events are lost for reason why, counted run by run (a replay's
 * gaps may sit between them). */
void batcher__drop(struct batcher *b, struct batch *x, enum stats_drop why)
{
        for (uint32_t i = 0, j; i < x->n; i = j) {
                for (j = i + 1; j < x->n && x->evs[j].seq == x->evs[j - 1].seq + 1; j++)
                        ;
                batcher__lose(b, x->evs[i].seq, x->evs[j - 1].seq, why);
        }
        batcher__free(b, x);
}

/* ---- cutting ---- */

static int cut(struct batcher *b)
{
        struct batch *x = batch_new(b->cfg->batch_size);
        int ret;

        if (!x)
                return -ENOMEM;
        batcher__link(b, x);
        ret = batch_cut(x, &b->queue, b->cfg);
        if (ret < 0) {
                /* Out of memory with events already moved out of the
                 * queue: the half-built body cannot be sent, so they are
                 * counted as lost to memory, never left uncounted. */
                log_err("cannot build a batch: %s; %u events dropped", strerror(-ret), x->n);
                batcher__drop(b, x, DROP_MEMORY_FULL);
                return ret;
        }
        batch_ready(x, &b->queue);
        return 0;
}

static bool cut_due(const struct batcher *b)
{
        const struct cfg *c = b->cfg;
        const struct queue *q = &b->queue;

        if (!q_count(q))
                return false;
        if (q_count(q) >= c->batch_size ||
            q_bytes(q) + q_count(q) + PROTO_BATCH_OVERHEAD >= c->max_batch_bytes)
                return true;
        return b->interval_due || b->draining || q_head_seq(q) <= b->flush_target;
}

/* ---- sending ---- */

/* A request could not even start (out of memory, curl refused it). */
static void log_send_error(const struct batcher *b)
{
        char url[256], next[32];

        (void)urlshow_strip(b->cfg->api_url, url, sizeof(url));
        log_limited(LOG_ERR, "send", "upstream %s: %s: %llu events held, next attempt in %s", url,
                    b->up.last_error, (unsigned long long)batcher_held(b),
                    log_duration(START_RETRY_MS, next, sizeof(next)));
}

static void send_batch(struct batcher *b, struct batch *x, const char *bearer, uint64_t gen)
{
        struct fwd_post p = {
                .path = EVENTS_PATH,
                .bearer = bearer,
                .idempotency_key = x->id,
                .gzip = x->gz.len > 0,
                .body = x->gz.len ? x->gz.data : x->body.data,
                .body_len = x->gz.len ? x->gz.len : x->body.len,
        };
        int ret = fwd_start(b->fwd, &p, batcher__on_response, x);

        if (ret < 0) {
                x->not_before = batcher__now(b) + START_RETRY_MS;
                batcher__set_state(b, UPSTREAM_SEND_ERROR);
                if (!b->up.failing) {
                        b->up.failing = true;
                        b->up.failing_since_ms = batcher__now(b);
                }
                b->up.failures++;
                snprintf(b->up.last_error, sizeof(b->up.last_error), "cannot start a request: %s",
                         strerror(-ret));
                log_send_error(b);
                return;
        }
        if (x->attempts > 0)
                b->stats->retries++;
        x->attempts++;
        x->token_gen = gen;
        x->key_gen = b->key->gen;
        x->state = BATCH_IN_FLIGHT;
}

static void on_compressed(struct batch *x, int err)
{
        struct batcher *b = x->owner;

        if (err < 0)
                log_limited(LOG_WARNING, "gzip",
                            "could not compress batch %s (%s), sending it uncompressed", x->id,
                            strerror(-err));
        batcher__pump(b);
}

/* x's first attempt is due: stamp its sent_at (a batch may wait for a
 * Retry-After pause or a session token between cut and send), then
 * compress it when gzip is on. True when x can go now; false when it
 * went to the thread pool, whose answer pumps again. */
static bool first_attempt(struct batcher *b, struct batch *x)
{
        int r;

        batch_stamp(x, clock_wall_ms());
        if (b->cfg->compression != CFG_COMPRESSION_GZIP || fwd_dry_run(b->fwd))
                return true;
        r = batch_compress(x, b->loop, &b->queue, on_compressed);
        if (r == 0)
                b->stats->gzip_skipped++; /* no room in max_memory: plain */
        return r != 1;
}

/* Send every batch that is due, if a bearer is at hand (a pk_ session
 * may still be minting: then the batches wait, and the session wakes
 * us when its token arrives). False when sending waits for the session. */
static bool dispatch(struct batcher *b, uint64_t t)
{
        const char *bearer = NULL;
        uint64_t gen = 0;

        for (struct batch *x = b->batches; x && fwd_in_flight(b->fwd) < b->cfg->max_in_flight;
             x = x->next) {
                if (x->state != BATCH_READY || t < x->not_before)
                        continue;
                if (!bearer && !(bearer = session_token(b->session, &gen)))
                        return false;
                if (!x->stamped && !first_attempt(b, x))
                        continue;
                send_batch(b, x, bearer, gen);
        }
        return true;
}

/* ---- the pump ---- */

static void on_wake(uv_timer_t *t)
{
        batcher__pump(t->data);
}

static void on_interval(uv_timer_t *t)
{
        struct batcher *b = t->data;

        b->interval_due = true;
        batcher__pump(b);
}

static void on_answer(uv_timer_t *t)
{
        struct batcher *b = t->data;

        flush_answer(&b->flushes);
}

/* Wake for the next due batch, unless sending waits for a session
 * token (the session wakes us then) or every send slot is taken (the
 * next answer pumps us), and for the next flush deadline. */
static void arm_wake(struct batcher *b, uint64_t t, bool can_send)
{
        uint64_t next = flush_next_deadline(&b->flushes);

        if (fwd_in_flight(b->fwd) >= b->cfg->max_in_flight)
                can_send = false;
        for (const struct batch *x = b->batches; x && can_send; x = x->next) {
                if (x->state != BATCH_READY)
                        continue;
                uint64_t due = x->not_before > b->paused_until ? x->not_before : b->paused_until;
                if (due < next)
                        next = due;
        }
        if (next == UINT64_MAX) {
                uv_timer_stop(&b->wake);
                return;
        }
        uv_timer_start(&b->wake, on_wake, next > t ? next - t : 0, 0);
}

void batcher__pump(struct batcher *b)
{
        uint64_t t = batcher__now(b);
        bool can_send = true;
        uint64_t low;
        bool more;

        if (b->closed)
                return;
        /* What was pushed is written before anything is read back or
         * acknowledged (an op's reply may pump in the middle of a read). */
        batcher_commit(b);
        more = batcher__refill(b);
        while (b->nbatches < b->cfg->max_in_flight && cut_due(b))
                if (cut(b) < 0)
                        break;
        if (!q_count(&b->queue))
                b->interval_due = false;
        if (t >= b->paused_until)
                can_send = dispatch(b, t);
        low = low_water(b);
        batcher__acknowledge(b, low);
        if (flush_settle(&b->flushes, low, t, held_between, b))
                uv_timer_start(&b->answer, on_answer, 0, 0);
        arm_wake(b, t, can_send);
        if (more) /* the rest of a large backlog, on a fresh turn */
                uv_timer_start(&b->wake, on_wake, 0, 0);
}

/* ---- public ---- */

/* flush_interval in loop ms, at least 1 (0 would stop a repeating timer). */
static uint64_t interval_ms(const struct cfg *c)
{
        uint64_t ms = (uint64_t)(c->flush_interval * 1000.0);

        return ms ? ms : 1;
}

void batcher_init(struct batcher *b, uv_loop_t *loop, const struct cfg *cfg, struct stats *stats,
                  const struct apikey *key, struct fwd *fwd, struct session *session,
                  struct spool *spool)
{
        uint64_t ms = interval_ms(cfg);

        memset(b, 0, sizeof(*b));
        b->loop = loop;
        b->cfg = cfg;
        b->stats = stats;
        b->key = key;
        b->fwd = fwd;
        b->session = session;
        b->spool = spool;
        b->next_seq = 1;
        if (spool)
                batcher__spool_start(b);
        batcher__upstream_start(b);
        q_init(&b->queue, cfg->max_memory, cfg->when_full);
        set_reserve(b);
        uv_timer_init(loop, &b->interval);
        uv_timer_init(loop, &b->wake);
        uv_timer_init(loop, &b->answer);
        b->interval.data = b->wake.data = b->answer.data = b;
        uv_timer_start(&b->interval, on_interval, ms, ms);
        if (b->backlog) /* what an earlier run left: sent at once */
                uv_timer_start(&b->wake, on_wake, 0, 0);
}

struct evictions {
        struct batcher *b;
        size_t n;
};

static void evicted(void *ud, uint64_t seq)
{
        struct evictions *ev = ud;

        batcher__lose(ev->b, seq, seq, DROP_MEMORY_FULL);
        ev->n++;
}

static int push(struct batcher *b, const char *ev, size_t len, size_t *ret_evicted)
{
        struct evictions out = { b, 0 };
        uint64_t seq = b->next_seq;
        int r;

        *ret_evicted = 0;
        if (b->spool && (spool_state(b->spool) == SPOOL_ON || b->backlog))
                return batcher__push_durable(b, ev, len);
        /* Memory-only: no spool, or one that failed (and has nothing
         * waiting on disk that this event would have to follow). */
        r = q_push(&b->queue, seq, ev, len, evicted, &out);
        *ret_evicted = out.n;
        if (r < 0) {
                b->stats->dropped[DROP_MEMORY_FULL]++; /* never queued: no seq, no flush */
                return r;
        }
        b->next_seq++;
        if (b->spool)
                batcher__memonly_add(b, seq, seq);
        return 0;
}

int batcher_push(struct batcher *b, const char *ev, size_t len, size_t *ret_evicted)
{
        uint64_t seq = b->next_seq;
        int r = push(b, ev, len, ret_evicted);

        /* Flushes still waiting for the datagram drain cover it. */
        if (b->next_seq > seq && b->drain_reached < b->drain_goal)
                flush_pushed(&b->flushes, b->next_seq - seq);
        return r;
}

void batcher_reconfigure(struct batcher *b)
{
        uint64_t ms = interval_ms(b->cfg);

        if (b->closed)
                return;
        q_set_limits(&b->queue, b->cfg->max_memory, b->cfg->when_full);
        /* Restarted only when it changed: SIGHUPs more often than the
         * interval must not keep postponing it. */
        if (uv_timer_get_repeat(&b->interval) != ms)
                uv_timer_start(&b->interval, on_interval, ms, ms);
        set_reserve(b);
        batcher__pump(b);
}

void batcher_wake(struct batcher *b)
{
        batcher__pump(b);
}

void batcher_kick(struct batcher *b)
{
        if (b->nbatches < b->cfg->max_in_flight && cut_due(b))
                batcher__pump(b);
}

struct flush_waiter *batcher_flush(struct batcher *b, uint64_t timeout_ms, flush_done_fn cb,
                                   void *ud)
{
        uint64_t target = b->next_seq - 1, first = low_water(b);
        struct flush_waiter *w;

        if (first > target)
                first = target + 1; /* nothing held: covers nothing, done at once */
        w = flush_add(&b->flushes, first, target, held_between(b, first, target),
                      batcher__now(b) + timeout_ms, cb, ud);
        if (!w)
                return NULL;
        if (b->drain_reached < b->drain_goal)
                flush_open(w, b->drain_goal);
        if (target > b->flush_target)
                b->flush_target = target;
        batcher__pump(b);
        return w;
}

void batcher_flush_cancel(struct batcher *b, struct flush_waiter *w)
{
        flush_cancel(&b->flushes, w);
}

void batcher_drain_goal(struct batcher *b, uint64_t goal)
{
        if (goal > b->drain_goal)
                b->drain_goal = goal;
}

void batcher_drain_reached(struct batcher *b, uint64_t mark)
{
        uint64_t target = b->next_seq - 1;

        if (mark <= b->drain_reached)
                return;
        b->drain_reached = mark;
        if (b->closed)
                return;
        flush_drained(&b->flushes, mark, target);
        if (target > b->flush_target)
                b->flush_target = target;
        batcher__pump(b);
}

uint64_t batcher_held(const struct batcher *b)
{
        uint64_t n = q_count(&b->queue) + batcher__backlog_between(b, 0, UINT64_MAX);

        for (const struct batch *x = b->batches; x; x = x->next)
                n += x->n;
        return n;
}

bool batcher_spooling(const struct batcher *b)
{
        return b->spool && spool_state(b->spool) == SPOOL_ON;
}

uint64_t batcher_disk_only(const struct batcher *b)
{
        return batcher__backlog_between(b, 0, UINT64_MAX);
}

size_t batcher_memory(const struct batcher *b)
{
        return q_used(&b->queue);
}

size_t batcher_memory_limit(const struct batcher *b)
{
        return q_limit(&b->queue);
}

uint64_t batcher_oldest_seq(const struct batcher *b)
{
        uint64_t low;

        if (!batcher_held(b))
                return 0;
        low = low_water(b);
        return low == UINT64_MAX ? 0 : low;
}

uint64_t batcher_next_seq(const struct batcher *b)
{
        return b->next_seq;
}

bool batcher_closed(const struct batcher *b)
{
        return b->closed;
}

void batcher__release_backoffs(struct batcher *b)
{
        for (struct batch *x = b->batches; x; x = x->next)
                if (x->state == BATCH_READY)
                        x->not_before = 0;
}

void batcher_drain(struct batcher *b)
{
        b->draining = true;
        /* A stop sends what it holds now: a batch still waiting out the
         * backoff of an outage that has ended would otherwise miss the
         * stop's deadline (a Retry-After pause is honoured). */
        batcher__release_backoffs(b);
        batcher__pump(b);
}

bool batcher_idle(const struct batcher *b)
{
        return !b->batches && !q_count(&b->queue) && !b->backlog;
}

/* The end: what is held is lost, but for what waits on disk for the
 * next start. Returns the events lost. */
uint64_t batcher_close(struct batcher *b)
{
        uint64_t lost = 0;

        b->closed = true;
        while (b->batches) {
                struct batch *x = b->batches;

                for (uint32_t i = 0; i < x->n; i++)
                        lost += batcher__lose_held(b, x->evs[i].seq);
                unlink_batch(b, x);
                if (x->state == BATCH_COMPRESSING)
                        batch_orphan(x, &b->queue);
                else
                        batch_free(x, &b->queue);
        }
        while (q_count(&b->queue)) {
                lost += batcher__lose_held(b, q_head_seq(&b->queue));
                q_pop(&b->queue);
        }
        lost += batcher__lose_backlog(b);
        q_clear(&b->queue);
        flush_close(&b->flushes, -ESHUTDOWN, held_between, b);
        batcher__spool_close(b);
        uv_close((uv_handle_t *)&b->interval, NULL);
        uv_close((uv_handle_t *)&b->wake, NULL);
        uv_close((uv_handle_t *)&b->answer, NULL);
        return lost;
}
