/* batch.c - builds batch bodies from the queue, splits them, compresses
 * them on the thread pool, and keeps each batch's memory charge true.
 *
 * The memory account: a batch is charged what it holds, its struct and
 * the allocator's bookkeeping (BATCH_COST), its body and compressed
 * body, and its event index. An event moving from the queue into a
 * batch costs its bytes plus a comma and an index entry, less than
 * Q_EVENT_COST, so cutting only ever adds the envelope and the struct,
 * which the queue keeps free (BATCH_SLOT_COST per batch not yet cut).
 * Room for a compressed body is charged before the pool starts, so the
 * account holds while it works.
 */
#include "batch.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "rng.h"

struct batch *batch_new(uint32_t cap)
{
        struct batch *x = calloc(1, sizeof(*x));
        uint8_t rnd[16];

        if (!x)
                return NULL;
        x->evs = malloc((size_t)(cap ? cap : 1) * sizeof(*x->evs));
        if (!x->evs) {
                free(x);
                return NULL;
        }
        x->evs_cap = cap ? cap : 1;
        rng_bytes16(rnd);
        proto_uuid_format(rnd, x->id);
        return x;
}

static size_t charge_of(const struct batch *x)
{
        return BATCH_COST + x->body.cap + x->gz.cap + (size_t)x->evs_cap * sizeof(*x->evs);
}

static void recharge(struct batch *x, struct queue *q)
{
        size_t now = charge_of(x);

        q_release(q, x->charged);
        q_charge(q, now);
        x->charged = now;
}

static void release(struct batch *x)
{
        proto_buf_free(&x->body);
        proto_buf_free(&x->gz);
        free(x->evs);
        free(x);
}

void batch_free(struct batch *x, struct queue *q)
{
        if (!x)
                return;
        q_release(q, x->charged);
        release(x);
}

/* Append one event to x's body, recording where it sits. */
static int add_event(struct batch *x, uint64_t seq, const char *ev, size_t len)
{
        size_t off = x->body.len + (x->n ? 1 : 0);
        int ret = proto_batch_add(&x->body, ev, len, x->n == 0);

        if (ret < 0)
                return ret;
        assert(x->n < x->evs_cap);
        x->evs[x->n].seq = seq;
        x->evs[x->n].off = (uint32_t)off;
        x->evs[x->n].len = (uint32_t)len;
        x->n++;
        return 0;
}

/* ---- cutting ---- */

/* The id inside an encoded event: proto writes event_id first, and ids
 * are [A-Za-z0-9._:-] or a UUID, so no escapes can hide a quote. */
static const char *event_id_of(const char *ev, size_t len, size_t *ret_len)
{
        static const char head[] = "{\"event_id\":\"";
        const char *id = ev + sizeof(head) - 1, *end;

        assert(len > sizeof(head) && memcmp(ev, head, sizeof(head) - 1) == 0);
        end = memchr(id, '"', len - (sizeof(head) - 1));
        *ret_len = end ? (size_t)(end - id) : 0;
        return id;
}

/* Open-addressing set of the ids in the batch being cut: a sender may
 * repeat an event_id (its own retry), and the two copies must not share
 * a batch, or the upstream could refuse the whole batch. */
#define IDSET_SLOTS 1024 /* > 2 * PROTO_BATCH_MAX_EVENTS */

struct idset {
        uint32_t gen; /* slots of other generations are empty */
        uint32_t slot_gen[IDSET_SLOTS];
        uint32_t slot_ev[IDSET_SLOTS]; /* index in the batch */
};

static uint32_t id_hash(const char *p, size_t n)
{
        uint32_t h = 2166136261u;

        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char)p[i]) * 16777619u;
        return h;
}

static void idset_clear(struct idset *set)
{
        if (++set->gen == 0) {
                memset(set, 0, sizeof(*set));
                set->gen = 1;
        }
}

/* True when the id was already in the set; adds it otherwise. */
static bool idset_seen(struct idset *set, const struct batch *x, const char *id, size_t n)
{
        for (uint32_t i = id_hash(id, n) % IDSET_SLOTS;; i = (i + 1) % IDSET_SLOTS) {
                size_t m;
                const char *other;

                if (set->slot_gen[i] != set->gen) {
                        set->slot_gen[i] = set->gen;
                        set->slot_ev[i] = x->n;
                        return false;
                }
                other = event_id_of(x->body.data + x->evs[set->slot_ev[i]].off,
                                    x->evs[set->slot_ev[i]].len, &m);
                if (m == n && memcmp(other, id, n) == 0)
                        return true;
        }
}

/* The body of a batch cut now, from the queue's average event. */
static size_t body_estimate(const struct queue *q, const struct cfg *c)
{
        size_t count = q_count(q), n = count < c->batch_size ? count : c->batch_size;
        size_t est;

        if (!n)
                return PROTO_BATCH_OVERHEAD;
        est = PROTO_BATCH_OVERHEAD + n * (q_bytes(q) / count + 1);
        return est < c->max_batch_bytes ? est : c->max_batch_bytes;
}

int batch_cut(struct batch *x, struct queue *q, const struct cfg *c)
{
        static struct idset ids; /* loop thread only; 8 KiB, not on the stack */
        size_t size = PROTO_BATCH_OVERHEAD;
        int ret;

        assert(x->n == 0 && c->batch_size <= x->evs_cap);
        /* Size the body for what it will most likely hold, so that it is
         * not grown (and copied) a dozen times on the way; it is trimmed
         * to its length once built. */
        ret = proto_buf_reserve(&x->body, body_estimate(q, c));
        if (ret == 0)
                ret = proto_batch_begin(&x->body, x->id, 0);
        if (ret < 0)
                return ret;
        idset_clear(&ids);
        while (q_count(q) && x->n < c->batch_size) {
                const struct q_event *e = q_peek(q);
                const char *id;
                size_t idlen;

                /* A lone event over the limit still goes, alone: the
                 * upstream's 413 then decides its fate. */
                if (x->n > 0 && size + e->len + 1 > c->max_batch_bytes)
                        break;
                id = event_id_of(e->data, e->len, &idlen);
                if (idset_seen(&ids, x, id, idlen))
                        break;
                ret = add_event(x, e->seq, e->data, e->len);
                if (ret < 0)
                        return ret;
                size += e->len + 1;
                q_pop(q);
        }
        return proto_batch_end(&x->body);
}

int batch_split(const struct batch *x, struct batch *parts[2])
{
        uint32_t half = x->n / 2;
        int ret = 0;

        parts[0] = parts[1] = NULL;
        for (int h = 0; h < 2 && ret == 0; h++) {
                uint32_t from = h ? half : 0, to = h ? x->n : half;

                parts[h] = batch_new(to - from);
                if (!parts[h]) {
                        ret = -ENOMEM;
                        break;
                }
                ret = proto_batch_begin(&parts[h]->body, parts[h]->id, 0);
                for (uint32_t i = from; i < to && ret == 0; i++)
                        ret = add_event(parts[h], x->evs[i].seq, x->body.data + x->evs[i].off,
                                        x->evs[i].len);
                if (ret == 0)
                        ret = proto_batch_end(&parts[h]->body);
        }
        if (ret < 0) {
                for (int h = 0; h < 2; h++) {
                        if (parts[h])
                                release(parts[h]);
                        parts[h] = NULL;
                }
        }
        return ret;
}

void batch_ready(struct batch *x, struct queue *q)
{
        /* A body or index that grew by doubling is trimmed to what it
         * holds before it is charged. */
        proto_buf_shrink(&x->body);
        if (x->n > 0 && x->n < x->evs_cap) {
                struct batch_ev *evs = realloc(x->evs, (size_t)x->n * sizeof(*evs));
                if (evs) {
                        x->evs = evs;
                        x->evs_cap = x->n;
                }
        }
        recharge(x, q);
        x->stamped = false;
        x->state = BATCH_READY;
}

void batch_stamp(struct batch *x, int64_t now_ms)
{
        int r = proto_batch_set_sent_at(x->body.data, x->body.len, now_ms);

        assert(r == 0);
        (void)r;
        x->stamped = true;
}

/* ---- compression on the thread pool ---- */

/* What compressing x may allocate: at least zlib's deflateBound for a
 * gzip stream of the body (len + len/4096 + len/16384 + ... + 25). */
static size_t gz_room(const struct batch *x)
{
        return x->body.len + x->body.len / 1000 + 64;
}

static void gz_work(uv_work_t *w)
{
        struct batch *x = w->data;

        x->work_ret = gz_compress(x->body.data, x->body.len, &x->gz);
        proto_buf_shrink(&x->gz);
}

static void gz_after(uv_work_t *w, int status)
{
        struct batch *x = w->data;
        int err = status < 0 ? status : x->work_ret;

        if (x->orphaned) {
                release(x); /* its events were counted by the owner */
                return;
        }
        if (err < 0 || x->gz.len >= x->body.len)
                proto_buf_free(&x->gz); /* failed, or not worth it */
        /* The room charged before compressing covers the trimmed
         * compressed body: this only ever gives some back. */
        recharge(x, x->acct);
        x->state = BATCH_READY;
        x->compressed(x, err);
}

int batch_compress(struct batch *x, uv_loop_t *loop, struct queue *q, batch_compressed_fn cb)
{
        size_t room = gz_room(x);
        int r;

        if (room > q_room(q))
                return 0;
        q_charge(q, room);
        x->charged += room;
        x->state = BATCH_COMPRESSING;
        x->compressed = cb;
        x->acct = q;
        x->work.data = x;
        r = uv_queue_work(loop, &x->work, gz_work, gz_after);
        if (r == 0)
                return 1;
        x->state = BATCH_READY;
        recharge(x, q); /* gives the room back */
        return r;
}

void batch_orphan(struct batch *x, struct queue *q)
{
        /* Cancelled or still running, gz_after runs either way and
         * frees it. */
        uv_cancel((uv_req_t *)&x->work);
        q_release(q, x->charged);
        x->charged = 0;
        x->orphaned = true;
}
