/* rates.c - rates over the last seconds and the arrival time of held
 * events, from per-second samples of the counters (see rates.h). */
#include "rates.h"

#include <assert.h>
#include <string.h>

void rates_init(struct rates *r, const struct rates_sample *s, uint64_t next_seq)
{
        assert(r && s);
        memset(r, 0, sizeof(*r));
        r->first = *s;
        r->ring[0] = *s;
        r->n = 1;
        r->marks[0] = (struct rates_mark){ .seq = next_seq, .t_ms = s->t_ms };
        r->nmarks = 1;
}

/* Keep every other mark, the first included: the spacing doubles. */
static void thin(struct rates *r)
{
        uint64_t span = r->marks[r->nmarks - 1].t_ms - r->marks[0].t_ms;
        unsigned k = 0;

        r->spacing_ms = 2 * span / (r->nmarks - 1);

        for (unsigned i = 0; i < r->nmarks; i += 2)
                r->marks[k++] = r->marks[i];
        r->nmarks = k;
        r->thinned++;
}

static void mark(struct rates *r, uint64_t next_seq, uint64_t t_ms, uint64_t oldest_held)
{
        struct rates_mark *last = &r->marks[r->nmarks - 1];
        unsigned drop = 0;

        if (last->seq == next_seq) {
                /* Nothing arrived since: the same seq, a later time, is
                 * a closer bound for it. */
                last->t_ms = t_ms;
        } else if (t_ms - last->t_ms >= r->spacing_ms) {
                /* (Closer than the spacing, the last mark dates these
                 * events too: a little older than they are.) */
                if (r->nmarks == RATES_MARKS)
                        thin(r);
                r->marks[r->nmarks++] = (struct rates_mark){ .seq = next_seq, .t_ms = t_ms };
        }
        /* A mark is needed while the oldest held seq is at or after it
         * and before the next one; the ones before that are not. With
         * nothing held, only the newest is. */
        if (!oldest_held)
                drop = r->nmarks - 1;
        else
                while (drop + 1 < r->nmarks && r->marks[drop + 1].seq <= oldest_held)
                        drop++;
        if (drop) {
                memmove(r->marks, r->marks + drop, (r->nmarks - drop) * sizeof(r->marks[0]));
                r->nmarks -= drop;
        }
        if (r->nmarks == 1)
                r->spacing_ms = 0;
}

void rates_tick(struct rates *r, const struct rates_sample *s, uint64_t next_seq,
                uint64_t oldest_held)
{
        assert(r && s && r->n);
        if (r->n < RATES_SLOTS)
                r->ring[(r->head + r->n++) % RATES_SLOTS] = *s;
        else {
                r->ring[r->head] = *s;
                r->head = (r->head + 1) % RATES_SLOTS;
        }
        mark(r, next_seq, s->t_ms, oldest_held);
}

/* The newest sample at least window_ms before now, or the first one
 * kept (the start, while the ring has not wrapped). */
static const struct rates_sample *base(const struct rates *r, uint64_t now, uint64_t window_ms)
{
        const struct rates_sample *b = &r->ring[r->head];

        if (r->n < RATES_SLOTS)
                b = &r->first;
        for (unsigned i = 0; i < r->n; i++) {
                const struct rates_sample *s = &r->ring[(r->head + i) % RATES_SLOTS];

                if (s->t_ms + window_ms > now)
                        break;
                b = s;
        }
        return b;
}

static uint64_t delta(uint64_t now, uint64_t then)
{
        return now > then ? now - then : 0;
}

static double per_s(uint64_t n, uint64_t ms)
{
        return ms ? (double)n * 1000.0 / (double)ms : 0.0;
}

void rates_view(const struct rates *r, const struct rates_sample *now, struct rates_view *out)
{
        const struct rates_sample *b10 = base(r, now->t_ms, 10000);
        const struct rates_sample *b60 = base(r, now->t_ms, 60000);
        uint64_t ms10 = delta(now->t_ms, b10->t_ms), ms60 = delta(now->t_ms, b60->t_ms);

        out->in_10s = per_s(delta(now->in, b10->in), ms10);
        out->out_10s = per_s(delta(now->out, b10->out), ms10);
        out->in_1m = per_s(delta(now->in, b60->in), ms60);
        out->out_1m = per_s(delta(now->out, b60->out), ms60);
        out->dropped_1m = delta(now->dropped, b60->dropped);
        out->rejected_1m = delta(now->rejected, b60->rejected);
}

bool rates_arrived(const struct rates *r, uint64_t seq, uint64_t *ret_ms)
{
        unsigned i = 0;

        if (!r->nmarks || seq < r->marks[0].seq)
                return false;
        while (i + 1 < r->nmarks && r->marks[i + 1].seq <= seq)
                i++;
        *ret_ms = r->marks[i].t_ms;
        return true;
}
