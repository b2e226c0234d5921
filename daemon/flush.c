/* flush.c - which flushes are answered, when, and with what. Plain data
 * and arithmetic on sequence numbers: the batcher tells it what is held
 * and what was lost, and owns the timer that calls flush_answer. */
#include "flush.h"

#include <errno.h>
#include <stdlib.h>

struct flush_waiter *flush_add(struct flushes *fl, uint64_t first, uint64_t target,
                               uint64_t covered, uint64_t deadline, flush_done_fn cb, void *ud)
{
        struct flush_waiter *w = calloc(1, sizeof(*w));

        if (!w)
                return NULL;
        w->first = first;
        w->target = target;
        w->deadline = deadline;
        w->res.covered = covered;
        w->cb = cb;
        w->ud = ud;
        w->next = fl->waiting;
        fl->waiting = w;
        return w;
}

void flush_open(struct flush_waiter *w, uint64_t drain)
{
        w->drain = drain;
        w->target = UINT64_MAX;
}

void flush_pushed(struct flushes *fl, uint64_t n)
{
        for (struct flush_waiter *w = fl->waiting; w; w = w->next)
                if (w->drain)
                        w->res.covered += n;
}

void flush_drained(struct flushes *fl, uint64_t mark, uint64_t target)
{
        for (struct flush_waiter *w = fl->waiting; w; w = w->next) {
                if (w->drain && w->drain <= mark) {
                        w->drain = 0;
                        w->target = target;
                }
        }
}

void flush_dropped(struct flushes *fl, uint64_t lo, uint64_t hi, enum stats_drop why)
{
        for (struct flush_waiter *w = fl->waiting; w; w = w->next) {
                uint64_t a = lo > w->first ? lo : w->first;
                uint64_t b = hi < w->target ? hi : w->target;

                if (a <= b) {
                        w->res.dropped_by[why] += b - a + 1;
                        w->res.dropped += b - a + 1;
                }
        }
}

void flush_gone(struct flushes *fl, uint64_t lo, uint64_t hi)
{
        for (struct flush_waiter *w = fl->waiting; w; w = w->next) {
                uint64_t a = lo > w->first ? lo : w->first;
                uint64_t b = hi < w->target ? hi : w->target;

                if (a <= b)
                        w->res.covered -= b - a + 1 <= w->res.covered ? b - a + 1 : w->res.covered;
        }
}

/* The answer's numbers, from what is still held. */
static void settle(struct flush_waiter *w, int result, flush_held_fn held, void *ctx)
{
        struct flush_result *r = &w->res;

        r->pending = held(ctx, w->first, w->target);
        r->result = result ? result : r->pending ? -ETIMEDOUT : 0;
        r->delivered = r->covered - r->dropped - r->pending;
}

bool flush_settle(struct flushes *fl, uint64_t low_water, uint64_t now, flush_held_fn held,
                  void *ctx)
{
        struct flush_waiter **p = &fl->waiting;

        while (*p) {
                struct flush_waiter *w = *p;

                if ((!w->drain && low_water > w->target) || now >= w->deadline) {
                        *p = w->next;
                        settle(w, 0, held, ctx);
                        w->next = fl->settled;
                        fl->settled = w;
                } else {
                        p = &w->next;
                }
        }
        return fl->settled != NULL;
}

void flush_answer(struct flushes *fl)
{
        struct flush_waiter *w = fl->settled;

        fl->settled = NULL;
        while (w) {
                struct flush_waiter *next = w->next;

                w->cb(w->ud, &w->res);
                free(w);
                w = next;
        }
}

static bool unlink_from(struct flush_waiter **p, struct flush_waiter *w)
{
        for (; *p; p = &(*p)->next) {
                if (*p == w) {
                        *p = w->next;
                        return true;
                }
        }
        return false;
}

void flush_cancel(struct flushes *fl, struct flush_waiter *w)
{
        if (unlink_from(&fl->waiting, w) || unlink_from(&fl->settled, w))
                free(w);
}

uint64_t flush_next_deadline(const struct flushes *fl)
{
        uint64_t next = UINT64_MAX;

        for (const struct flush_waiter *w = fl->waiting; w; w = w->next)
                if (w->deadline < next)
                        next = w->deadline;
        return next;
}

void flush_close(struct flushes *fl, int result, flush_held_fn held, void *ctx)
{
        while (fl->waiting) {
                struct flush_waiter *w = fl->waiting;

                fl->waiting = w->next;
                settle(w, result, held, ctx);
                w->next = fl->settled;
                fl->settled = w;
        }
        flush_answer(fl);
}
