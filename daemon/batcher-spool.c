/* batcher-spool.c - the batcher's durable path: with a spool, every
 * accepted event is appended to it first, and the memory queue is a
 * window over it; a backlog that outgrows max_memory waits on disk
 * (backlog_from ..) and is read back as room frees up, oldest first.
 * Whatever is done is acknowledged to the spool, so that a restart
 * sends only what was not. Events that could not reach the disk (the
 * spool failed) are remembered as memory-only spans: a stop loses those
 * and only those.
 */
#include "batcher-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "log.h"
#include "segfile.h"
#include "spool.h"

/* ---- memory-only spans ---- */

void batcher__memonly_add(struct batcher *b, uint64_t lo, uint64_t hi)
{
        struct seq_span *m = b->memonly;
        size_t i = b->nmemonly, j;

        /* Spans stay sorted and apart. [lo, hi] usually extends the last
         * one, but may start below it (a refill's catch-up covers all the
         * spool kept) or lie below it (a dropped segment). */
        while (i && m[i - 1].lo > hi + 1)
                i--;
        j = i; /* m[i..j) touch [lo, hi] */
        while (i && m[i - 1].hi + 1 >= lo)
                i--;
        if (i < j) {
                lo = m[i].lo < lo ? m[i].lo : lo;
                hi = m[j - 1].hi > hi ? m[j - 1].hi : hi;
        } else if (b->nmemonly == b->memonly_cap) {
                size_t cap = b->memonly_cap ? 2 * b->memonly_cap : 8;
                struct seq_span *v = realloc(m, cap * sizeof(*v));

                if (!v) {
                        /* Cannot remember it apart: widen a neighbour,
                         * which at worst counts some spooled events as
                         * lost at a stop (never the other way round). */
                        if (i < b->nmemonly)
                                m[i].lo = lo;
                        else if (i)
                                m[i - 1].hi = hi;
                        return;
                }
                b->memonly = m = v;
                b->memonly_cap = cap;
        }
        memmove(&m[i + 1], &m[j], (b->nmemonly - j) * sizeof(*m));
        m[i] = (struct seq_span){ lo, hi };
        b->nmemonly = b->nmemonly - (j - i) + 1;
}

bool batcher__memonly(const struct batcher *b, uint64_t seq)
{
        size_t lo = 0, hi = b->nmemonly;

        if (!b->spool)
                return true;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;

                if (b->memonly[mid].hi < seq)
                        lo = mid + 1;
                else if (b->memonly[mid].lo > seq)
                        hi = mid;
                else
                        return true;
        }
        return false;
}

/* ---- the memory account of unwritten records ---- */

static void charge_unwritten(struct batcher *b)
{
        size_t now = spool_unwritten(b->spool);

        q_release(&b->queue, b->unwritten_charged);
        q_charge(&b->queue, now);
        b->unwritten_charged = now;
}

/* ---- in ---- */

void batcher__spool_start(struct batcher *b)
{
        b->next_seq = spool_next_seq(b->spool);
        b->acked = spool_acked(b->spool);
        if (b->acked + 1 < b->next_seq) {
                /* What an earlier run left undone: read back as room
                 * allows, while new events are taken at once. */
                b->backlog = true;
                b->backlog_from = b->acked + 1;
        }
}

/* The oldest segment gave way (max_spool, drop_oldest): its events that
 * were on disk only are lost. */
static void lose_dropped_segment(struct batcher *b, uint64_t lo, uint64_t hi)
{
        uint64_t mem_hi = (b->backlog ? b->backlog_from : b->next_seq) - 1;

        /* Those in memory are no longer on disk either. */
        if (lo <= mem_hi)
                batcher__memonly_add(b, lo, hi < mem_hi ? hi : mem_hi);
        if (!b->backlog || hi < b->backlog_from)
                return;
        if (lo < b->backlog_from)
                lo = b->backlog_from;
        if (hi >= b->next_seq)
                hi = b->next_seq - 1;
        batcher__lose(b, lo, hi, DROP_SPOOL_FULL);
        b->backlog_from = hi + 1;
        b->backlog = b->backlog_from < b->next_seq;
}

static int append(struct batcher *b, const char *ev, size_t len)
{
        uint64_t lo, hi;
        int r = spool_append(b->spool, b->next_seq, ev, len);

        while (r == -ENOSPC && b->cfg->when_full == CFG_DROP_OLDEST &&
               spool_drop_oldest(b->spool, &lo, &hi)) {
                log_limited(LOG_WARNING, "spool_full",
                            "max_spool reached: deleted the oldest spool segment "
                            "(when_full = drop_oldest)");
                lose_dropped_segment(b, lo, hi);
                r = spool_append(b->spool, b->next_seq, ev, len);
        }
        return r;
}

int batcher__push_durable(struct batcher *b, const char *ev, size_t len)
{
        uint64_t seq = b->next_seq;
        int r;

        /* A failed disk keeps what it could not write in memory: at most
         * half of max_memory, so that the refill always has room to
         * bring the backlog on disk back (and so free the disk). */
        if (b->backlog && spool_state(b->spool) != SPOOL_ON &&
            (spool_unwritten(b->spool) + segfile_record_size(len) > q_limit(&b->queue) / 2 ||
             q_used(&b->queue) + segfile_record_size(len) > q_limit(&b->queue))) {
                b->stats->dropped[DROP_MEMORY_FULL]++; /* never held: no seq, no flush */
                return -ENOBUFS;
        }
        r = append(b, ev, len);

        if (r < 0) {
                enum stats_drop why = r == -ENOSPC ? DROP_SPOOL_FULL : DROP_MEMORY_FULL;

                b->stats->dropped[why]++; /* never held: no seq, no flush */
                return r;
        }
        b->next_seq++;
        b->uncommitted++;
        if (!b->backlog) {
                if (q_push(&b->queue, seq, ev, len, NULL, NULL) == 0)
                        return 0;
                /* No room in memory: it waits on disk (and so does
                 * everything after it, to keep the order). */
                b->backlog = true;
                b->backlog_from = seq;
        }
        if (spool_state(b->spool) != SPOOL_ON)
                charge_unwritten(b);
        return 0;
}

void batcher_commit(struct batcher *b)
{
        uint64_t first = b->next_seq - b->uncommitted;
        uint64_t n = b->uncommitted;

        if (!b->spool || !n)
                return;
        b->uncommitted = 0;
        if (spool_commit(b->spool) == SPOOL_ON) {
                charge_unwritten(b);
                return;
        }
        /* Not written. Those already queued are memory-only now; without
         * a backlog, that is all of them and the spool's copy goes.
         * With one, the rest wait in the spool's memory after it, so
         * that the order holds. */
        if (!b->backlog) {
                batcher__memonly_add(b, first, b->next_seq - 1);
                spool_forget_unwritten(b->spool);
        } else if (first < b->backlog_from) {
                batcher__memonly_add(b, first, b->backlog_from - 1);
        }
        charge_unwritten(b);
}

/* ---- back from disk ---- */

/* One refill reads at most this much, so that a replay of a large
 * backlog never holds the loop for long: the pump comes back for more on
 * a fresh turn. */
#define REFILL_BYTES_PER_TURN (4u * 1024 * 1024)

struct refill {
        struct batcher *b;
        size_t bytes;
};

static bool take(void *ud, uint64_t seq, const char *ev, size_t len)
{
        struct refill *r = ud;

        if (r->bytes >= REFILL_BYTES_PER_TURN || q_push(&r->b->queue, seq, ev, len, NULL, NULL) < 0)
                return false;
        r->bytes += len;
        return true;
}

static void lost(void *ud, uint64_t lo, uint64_t hi)
{
        struct batcher *b = ((struct refill *)ud)->b;

        log_limited(LOG_ERR, "spool_corrupt",
                    "spool damage: events %llu..%llu cannot be read and are lost",
                    (unsigned long long)lo, (unsigned long long)hi);
        batcher__lose(b, lo, hi, DROP_SPOOL_CORRUPT);
}

static void gap(void *ud, uint64_t lo, uint64_t hi)
{
        flush_gone(&((struct refill *)ud)->b->flushes, lo, hi);
}

bool batcher__refill(struct batcher *b)
{
        static const struct spool_load_fns fns = { take, lost, gap };
        struct refill r = { b, 0 };

        if (!b->backlog)
                return false;
        charge_unwritten(b); /* the spool may have written them by itself */
        b->backlog_from = spool_load(b->spool, b->backlog_from, &fns, &r);
        if (b->backlog_from < b->next_seq)
                return r.bytes >= REFILL_BYTES_PER_TURN;
        b->backlog = false;
        if (spool_unwritten(b->spool) && spool_state(b->spool) != SPOOL_ON) {
                /* Everything the failed disk did not take is in memory
                 * now: it is memory-only from here. */
                batcher__memonly_add(b, spool_unwritten_first(b->spool), b->next_seq - 1);
                spool_forget_unwritten(b->spool);
                charge_unwritten(b);
        }
        return false;
}

uint64_t batcher__backlog_between(const struct batcher *b, uint64_t first, uint64_t last)
{
        uint64_t lo = first > b->backlog_from ? first : b->backlog_from;
        uint64_t hi = last < b->next_seq - 1 ? last : b->next_seq - 1;

        return b->backlog && lo <= hi ? hi - lo + 1 : 0;
}

/* ---- done ---- */

void batcher__acknowledge(struct batcher *b, uint64_t low_water)
{
        uint64_t done = low_water == UINT64_MAX ? b->next_seq - 1 : low_water - 1;

        if (b->spool && done > b->acked) {
                b->acked = done;
                spool_ack(b->spool, done);
        }
}

/* Is seq on disk (or on its way there at the next commit)? */
static bool durable(const struct batcher *b, uint64_t seq)
{
        return !batcher__memonly(b, seq) && seq < spool_unwritten_first(b->spool);
}

uint64_t batcher__lose_held(struct batcher *b, uint64_t seq)
{
        if (b->spool && durable(b, seq))
                return 0;
        batcher__lose(b, seq, seq, DROP_SHUTDOWN);
        return 1;
}

uint64_t batcher__lose_backlog(struct batcher *b)
{
        uint64_t first, n;

        if (!b->backlog)
                return 0;
        /* On disk it waits for the next start; what the spool could
         * not write is lost. */
        first = spool_unwritten_first(b->spool);
        n = batcher__backlog_between(b, first, b->next_seq - 1);
        if (n)
                batcher__lose(b, first > b->backlog_from ? first : b->backlog_from, b->next_seq - 1,
                              DROP_SHUTDOWN);
        return n;
}

void batcher__spool_close(struct batcher *b)
{
        free(b->memonly);
        b->memonly = NULL;
        b->nmemonly = b->memonly_cap = 0;
        if (b->spool)
                q_release(&b->queue, b->unwritten_charged);
        b->unwritten_charged = 0;
}
