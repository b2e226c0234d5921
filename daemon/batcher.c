/* batcher.c - turns the event queue into upstream requests and applies
 * SPEC section 4's response table to each answer.
 *
 * Life of a batch: cut from the queue (body encoded once) -> ready ->
 * at its first attempt, sent_at stamped and, when compression is on,
 * gzip on the thread pool -> in flight -> one
 * of: delivered (freed), dropped (400 / permanent 4xx, counted), split
 * (413: two new batches with new ids), or waiting (backoff with full
 * jitter, or a global Retry-After pause) and then ready again. One
 * timer wakes the batcher for the next due retry, pause end or flush
 * deadline; a second one marks flush_interval.
 */
#include "batcher.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "daemon.h"
#include "log.h"
#include "rng.h"

#define EVENTS_PATH "/api/events/batch/"

enum batch_state {
        BATCH_READY,       /* to send once now >= not_before */
        BATCH_COMPRESSING, /* on the thread pool */
        BATCH_IN_FLIGHT,
};

struct batch_ev {
        uint64_t seq;
        uint32_t off, len; /* the event's bytes inside body */
};

struct batch {
        struct batch *next;
        struct batcher *owner;
        enum batch_state state;
        bool orphaned; /* batcher closed while compressing */
        char id[PROTO_UUID_LEN + 1];
        struct proto_buf body; /* uncompressed, identical on retries */
        struct proto_buf gz;   /* compressed body, when gzip is on */
        uint32_t n, evs_cap;
        struct batch_ev *evs;
        unsigned attempts;   /* sends so far */
        uint64_t token_gen;  /* pk_: the session token it was sent with */
        uint64_t key_gen;    /* d->key_gen when it was sent (a reload may
                                replace the key meanwhile) */
        bool reminted;       /* pk_: already resent once after a 401 */
        bool stamped;        /* sent_at set for the first attempt */
        uint64_t not_before; /* loop ms */
        size_t charged;      /* bytes in the memory account */
        uv_work_t work;
        int work_ret;
};

static void pump(struct batcher *b);

static struct queue *queue_of(struct batcher *b)
{
        return &b->d->queue;
}

static const struct cfg *cfg_of(struct batcher *b)
{
        return &b->d->cfg;
}

static void set_state(struct batcher *b, const char *state)
{
        b->state = state;
}

/* ---- the memory account ----
 *
 * A batch is charged what it holds: its struct and the allocator's
 * bookkeeping for its blocks (BATCH_COST), its body and compressed body,
 * and its event index. An event moving from the queue into a batch costs
 * its bytes plus a comma and an index entry, less than Q_EVENT_COST, so
 * cutting only ever adds the envelope and the struct; the queue keeps
 * that much free for every batch not yet cut (q->reserve). Together,
 * max_memory holds without dropping anything at the cut. */
#define BATCH_COST (sizeof(struct batch) + 4 * 16)
#define BATCH_SLOT_COST (BATCH_COST + PROTO_BATCH_OVERHEAD)

static size_t batch_charge(const struct batch *x)
{
        return BATCH_COST + x->body.cap + x->gz.cap + (size_t)x->evs_cap * sizeof(*x->evs);
}

static void recharge(struct batcher *b, struct batch *x)
{
        size_t now = batch_charge(x);

        q_release(queue_of(b), x->charged);
        q_charge(queue_of(b), now);
        x->charged = now;
}

/* nbatches changed: keep room for the batches still to be cut. A 413
 * split may take nbatches past max_in_flight; the reserve is then 0, and
 * each split adds one BATCH_SLOT_COST over it: while an upstream keeps
 * answering 413, at most max_in_flight * batch_size of them (every
 * batch split down to single events), ~37 KB with the defaults. The
 * README's bounds table says so. */
static void count_batches(struct batcher *b, int delta)
{
        unsigned slots = cfg_of(b)->max_in_flight;

        b->nbatches = (unsigned)((int)b->nbatches + delta);
        queue_of(b)->reserve = b->nbatches < slots ? (slots - b->nbatches) * BATCH_SLOT_COST : 0;
}

/* Give back what building left over: a body or index that grew by
 * doubling is trimmed to what it holds before it is charged. */
static void batch_trim(struct batch *x)
{
        proto_buf_shrink(&x->body);
        if (x->n > 0 && x->n < x->evs_cap) {
                struct batch_ev *evs = realloc(x->evs, (size_t)x->n * sizeof(*evs));
                if (evs) {
                        x->evs = evs;
                        x->evs_cap = x->n;
                }
        }
}

static void batch_free(struct batcher *b, struct batch *x)
{
        for (struct batch **p = &b->batches; *p; p = &(*p)->next) {
                if (*p == x) {
                        *p = x->next;
                        count_batches(b, -1);
                        break;
                }
        }
        q_release(queue_of(b), x->charged);
        proto_buf_free(&x->body);
        proto_buf_free(&x->gz);
        free(x->evs);
        free(x);
}

static struct batch *batch_new(struct batcher *b, uint32_t cap)
{
        struct batch *x = calloc(1, sizeof(*x));
        uint8_t rnd[16];

        if (!x)
                return NULL;
        x->evs = malloc((size_t)cap * sizeof(*x->evs));
        if (!x->evs) {
                free(x);
                return NULL;
        }
        x->evs_cap = cap;
        x->owner = b;
        rng_bytes16(rnd);
        proto_uuid_format(rnd, x->id);
        /* Appended: batches go out in the order they were cut. */
        struct batch **tail = &b->batches;
        while (*tail)
                tail = &(*tail)->next;
        *tail = x;
        count_batches(b, +1);
        return x;
}

/* ---- compression on the thread pool ---- */

static void gz_work(uv_work_t *w)
{
        struct batch *x = w->data;

        x->work_ret = gz_compress(x->body.data, x->body.len, &x->gz);
        proto_buf_shrink(&x->gz);
}

static void gz_after(uv_work_t *w, int status)
{
        struct batch *x = w->data;
        struct batcher *b = x->owner;

        if (x->orphaned) {
                /* The batcher is gone; its events were counted as lost. */
                proto_buf_free(&x->body);
                proto_buf_free(&x->gz);
                free(x->evs);
                free(x);
                return;
        }
        if (status < 0 || x->work_ret < 0) {
                /* Send it uncompressed rather than lose it. */
                proto_buf_free(&x->gz);
                log_limited(LOG_WARNING, "gzip",
                            "could not compress batch %s, sending it uncompressed", x->id);
        } else if (x->gz.len >= x->body.len) {
                proto_buf_free(&x->gz); /* not worth it */
        }
        /* Its room was charged before compressing (first_attempt_due): the
         * compressed body, trimmed, never needs more than that. */
        recharge(b, x);
        x->state = BATCH_READY;
        pump(b);
}

/* What compressing x may allocate: at least zlib's deflateBound for a
 * gzip stream of the body (len + len/4096 + len/16384 + ... + 25). */
static size_t gz_room(const struct batch *x)
{
        return x->body.len + x->body.len / 1000 + 64;
}

static void batch_ready(struct batcher *b, struct batch *x)
{
        batch_trim(x);
        recharge(b, x);
        x->stamped = false;
        x->state = BATCH_READY;
}

/* x's first attempt is due: stamp its sent_at (SPEC section 4: the
 * first attempt's time, then the same on every retry; a batch may wait
 * for a Retry-After pause or a session token between cut and send), then
 * compress it when gzip is on. True when x can go now; false when it went
 * to the thread pool, whose answer pumps again. */
static bool first_attempt_due(struct batcher *b, struct batch *x)
{
        struct queue *q = queue_of(b);
        int r;

        x->stamped = true;
        r = proto_batch_set_sent_at(x->body.data, x->body.len, daemon_now_ms());
        assert(r == 0);
        (void)r;
        if (cfg_of(b)->compression != CFG_COMPRESSION_GZIP || b->d->fwd.stdout_mode)
                return true;
        /* The compressed body is charged before it exists, so the account
         * holds while the pool works; no room: it goes plain. */
        if (q->held + q->reserve + gz_room(x) > q->limit) {
                b->d->stats.gzip_skipped++;
                return true;
        }
        q_charge(q, gz_room(x));
        x->charged += gz_room(x);
        x->state = BATCH_COMPRESSING;
        x->work.data = x;
        if (uv_queue_work(b->d->loop, &x->work, gz_work, gz_after) == 0)
                return false;
        x->state = BATCH_READY;
        recharge(b, x); /* gives the room back */
        return true;
}

/* ---- cutting ---- */

/* Append one event to x's body, recording where it sits. */
static int batch_add(struct batch *x, uint64_t seq, const char *ev, size_t len)
{
        size_t off = x->body.len + (x->n ? 1 : 0);
        int ret = proto_batch_add(&x->body, ev, len, x->n == 0);

        if (ret < 0)
                return ret;
        x->evs[x->n].seq = seq;
        x->evs[x->n].off = (uint32_t)off;
        x->evs[x->n].len = (uint32_t)len;
        x->n++;
        return 0;
}

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
        uint32_t gen;
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

static void drop_batch(struct batcher *b, struct batch *x, enum stats_drop why);

/* The body of a batch cut now, from the queue's average event. */
static size_t body_estimate(const struct queue *q, const struct cfg *c)
{
        size_t n = q->count < c->batch_size ? q->count : c->batch_size;
        size_t est;

        if (!n)
                return PROTO_BATCH_OVERHEAD;
        est = PROTO_BATCH_OVERHEAD + n * (q->bytes / q->count + 1);
        return est < c->max_batch_bytes ? est : c->max_batch_bytes;
}

static int cut_batch(struct batcher *b)
{
        static struct idset ids;
        const struct cfg *c = cfg_of(b);
        struct queue *q = queue_of(b);
        size_t size = PROTO_BATCH_OVERHEAD;
        struct batch *x;
        int ret;

        x = batch_new(b, c->batch_size);
        if (!x)
                return -ENOMEM;
        /* Size the body for what it will most likely hold, so that it is
         * not grown (and copied) a dozen times on the way; it is trimmed
         * to its length once encoded. */
        ret = proto_buf_reserve(&x->body, body_estimate(q, c));
        if (ret < 0)
                goto fail;
        ret = proto_batch_begin(&x->body, x->id, daemon_now_ms());
        if (ret < 0)
                goto fail;
        if (++ids.gen == 0) {
                memset(&ids, 0, sizeof(ids));
                ids.gen = 1;
        }
        while (q->count && x->n < c->batch_size) {
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
                ret = batch_add(x, e->seq, e->data, e->len);
                if (ret < 0)
                        goto fail;
                size += e->len + 1;
                q_drop(q);
        }
        ret = proto_batch_end(&x->body);
        if (ret < 0)
                goto fail;
        batch_ready(b, x);
        return 0;
fail:
        /* Out of memory with events already moved out of the queue: the
         * half-built body cannot be sent, so they are counted as lost
         * to memory, never left behind uncounted. */
        log_err("cannot build a batch: %s; %u events dropped", strerror(-ret), x->n);
        drop_batch(b, x, DROP_MEMORY_FULL);
        return ret;
}

static bool cut_due(struct batcher *b)
{
        const struct cfg *c = cfg_of(b);
        struct queue *q = queue_of(b);

        if (!q->count)
                return false;
        if (q->count >= c->batch_size ||
            q->bytes + q->count + PROTO_BATCH_OVERHEAD >= c->max_batch_bytes)
                return true;
        return b->interval_due || b->draining || q_head_seq(q) <= b->flush_target;
}

/* ---- sending ---- */

static void on_response(void *ud, const struct fwd_result *res);

static void send_batch(struct batcher *b, struct batch *x, const char *bearer, uint64_t gen)
{
        struct fwd_post p = {
                .path = EVENTS_PATH,
                .bearer = bearer ? bearer : "",
                .idempotency_key = x->id,
                .gzip = x->gz.len > 0,
                .body = x->gz.len ? x->gz.data : x->body.data,
                .body_len = x->gz.len ? x->gz.len : x->body.len,
        };
        int ret;

        ret = fwd_start(&b->d->fwd, &p, on_response, x);
        if (ret < 0) {
                x->not_before = uv_now(b->d->loop) + 1000;
                set_state(b, "send_error");
                snprintf(b->last_error, sizeof(b->last_error), "cannot start a request: %s",
                         strerror(-ret));
                log_limited(LOG_ERR, "send", "%s", b->last_error);
                return;
        }
        if (x->attempts > 0)
                b->d->stats.retries++;
        x->attempts++;
        x->token_gen = gen;
        x->key_gen = b->d->key_gen;
        x->state = BATCH_IN_FLIGHT;
}

static uint64_t backoff_ms(const struct cfg *c, unsigned attempts)
{
        double cap = c->backoff_initial * ldexp(1.0, attempts > 30 ? 30 : (int)attempts - 1);

        if (cap > c->backoff_max)
                cap = c->backoff_max;
        /* Full jitter: anywhere in [0, cap). */
        return (uint64_t)(rng_unit() * cap * 1000.0);
}

static void retry_later(struct batcher *b, struct batch *x, double retry_after)
{
        const struct cfg *c = cfg_of(b);
        uint64_t now = uv_now(b->d->loop);

        x->state = BATCH_READY;
        if (retry_after >= 0) {
                /* Retry-After pauses every request to the upstream. */
                double s = retry_after < c->retry_after_max ? retry_after : c->retry_after_max;
                uint64_t until = now + (uint64_t)(s * 1000.0);
                if (until > b->paused_until)
                        b->paused_until = until;
                x->not_before = until;
        } else {
                x->not_before = now + backoff_ms(c, x->attempts);
        }
}

static void drop_batch(struct batcher *b, struct batch *x, enum stats_drop why)
{
        b->d->stats.dropped[why] += x->n;
        batch_free(b, x);
}

/* 413: two halves with new batch ids; the events keep theirs. */
static void split_batch(struct batcher *b, struct batch *x)
{
        uint32_t half = x->n / 2;
        struct batch *parts[2] = { NULL, NULL };
        int ret = 0;

        for (int h = 0; h < 2 && ret == 0; h++) {
                uint32_t from = h ? half : 0, to = h ? x->n : half;
                parts[h] = batch_new(b, to - from);
                if (!parts[h]) {
                        ret = -ENOMEM;
                        break;
                }
                ret = proto_batch_begin(&parts[h]->body, parts[h]->id, daemon_now_ms());
                for (uint32_t i = from; i < to && ret == 0; i++)
                        ret = batch_add(parts[h], x->evs[i].seq, x->body.data + x->evs[i].off,
                                        x->evs[i].len);
                if (ret == 0)
                        ret = proto_batch_end(&parts[h]->body);
        }
        if (ret < 0) {
                /* Keep the original and try it again later. */
                for (int h = 0; h < 2; h++)
                        if (parts[h])
                                batch_free(b, parts[h]);
                retry_later(b, x, -1);
                return;
        }
        b->d->stats.splits++;
        batch_free(b, x);
        batch_ready(b, parts[0]);
        batch_ready(b, parts[1]);
}

static void note_accepted(struct batcher *b, struct batch *x, const struct fwd_result *res)
{
        json_int_t accepted = -1, dups = 0;
        json_t *j = json_loadb(res->body, res->body_len, 0, NULL);

        if (j && json_unpack(j, "{s?I s?I}", "accepted", &accepted, "duplicates", &dups) == 0 &&
            accepted >= 0 && accepted + dups < (json_int_t)x->n)
                log_limited(LOG_WARNING, "partial",
                            "upstream accepted %lld and found %lld duplicates of the %u events "
                            "of batch %s; treating it as delivered",
                            (long long)accepted, (long long)dups, x->n, x->id);
        json_decref(j);
        b->d->stats.sent += x->n;
        b->d->stats.duplicates += (uint64_t)(dups > 0 ? dups : 0);
        b->d->stats.batches_sent++;
}

static void note_failure(struct batcher *b, const struct fwd_result *res)
{
        if (res->curl_code == 0)
                snprintf(b->last_error, sizeof(b->last_error), "HTTP %ld", res->status);
        else
                snprintf(b->last_error, sizeof(b->last_error), "%s", res->error);
}

static void on_auth_failure(struct batcher *b, struct batch *x, const struct fwd_result *res)
{
        const char *prev = b->state;
        struct session *s = &b->d->session;

        if (x->key_gen != b->d->key_gen) {
                /* Sent with the key a reload has replaced since: says
                 * nothing about the new one. Again, at once, with it. */
                x->state = BATCH_READY;
                x->not_before = 0;
                return;
        }
        if (session_enabled(s) && res->status == 401) {
                /* The token expired or was revoked: forget it; a new one
                 * is minted and this batch resent once, at once. */
                session_rejected(s, x->token_gen);
                if (!x->reminted) {
                        x->reminted = true;
                        x->state = BATCH_READY;
                        x->not_before = 0;
                        return;
                }
        }

        set_state(b, "auth_error");
        if (prev != b->state && session_enabled(s))
                log_err("upstream refused a fresh session token with HTTP %ld (%s): events are "
                        "kept and retried with backoff; check the pk_ key %s and the identity",
                        res->status,
                        res->status == 401 ? "rejected right after a mint"
                                           : "the session lacks permission",
                        b->d->key_redacted);
        else if (prev != b->state)
                log_err("upstream refused the API key %s with HTTP %ld (%s): events are kept and "
                        "retried with backoff; fix the key (api_key_file or the api_key "
                        "credential) and restart segopsd",
                        b->d->key_redacted, res->status,
                        res->status == 401 ? "unknown, revoked or expired key"
                                           : "the key lacks permission to send events");
        retry_later(b, x, -1);
}

static void on_response(void *ud, const struct fwd_result *res)
{
        struct batch *x = ud;
        struct batcher *b = x->owner;
        long st = res->status;

        b->d->stats.requests++;
        if (b->closing) {
                x->state = BATCH_READY;
                return;
        }
        b->last_status = st;
        if (st >= 200 && st < 300) {
                set_state(b, "ok");
                note_accepted(b, x, res);
                batch_free(b, x);
        } else if (st >= 300 && st < 400) {
                /* Not followed: a redirect means api_url is wrong, and
                 * re-posting events elsewhere is not ours to decide. */
                note_failure(b, res);
                set_state(b, "redirected");
                log_limited(LOG_ERR, "redirect",
                            "upstream answered HTTP %ld (a redirect): "
                            "check api_url; events are kept and retried",
                            st);
                retry_later(b, x, -1);
        } else if (st == 401 || st == 403) {
                note_failure(b, res);
                on_auth_failure(b, x, res);
        } else if (st == 413) {
                if (x->n <= 1) {
                        log_limited(LOG_ERR, "413",
                                    "upstream refused a single event as too large "
                                    "(HTTP 413); it is dropped");
                        drop_batch(b, x, DROP_TOO_LARGE);
                } else {
                        split_batch(b, x);
                }
        } else if (st == 429 || st == 503) {
                note_failure(b, res);
                set_state(b, "throttled");
                log_limited(LOG_WARNING, "throttled", "upstream is overloaded (HTTP %ld)%s", st,
                            res->retry_after >= 0 ? ", honouring Retry-After" : ", backing off");
                retry_later(b, x, res->retry_after);
        } else if (st == 408 || st >= 500 || st == 0) {
                note_failure(b, res);
                if (res->tls_error) {
                        set_state(b, "tls_error");
                        log_limited(LOG_ERR, "tls",
                                    "TLS failure talking to the upstream: %s; "
                                    "check api_url and ca_file (events are kept and retried)",
                                    res->error);
                } else {
                        set_state(b, "retrying");
                        log_limited(LOG_WARNING, "transient",
                                    "upstream request failed (%s), "
                                    "retrying with backoff",
                                    b->last_error);
                }
                retry_later(b, x, -1);
        } else {
                char excerpt[200];

                note_failure(b, res);
                log_excerpt(res->body, res->body_len < 160 ? res->body_len : 160, excerpt,
                            sizeof(excerpt));
                log_limited(LOG_ERR, "rejected",
                            "upstream rejected batch %s of %u events with "
                            "HTTP %ld (%s); the events are dropped",
                            x->id, x->n, st, excerpt);
                drop_batch(b, x, DROP_UPSTREAM_REJECTED);
        }
        pump(b);
}

/* ---- flush waiters ---- */

static uint64_t dropped_total(const struct batcher *b)
{
        uint64_t n = 0;

        for (int i = 0; i < DROP_REASON_COUNT; i++)
                n += b->d->stats.dropped[i];
        return n;
}

/* The oldest seq still held anywhere. */
static uint64_t low_water(const struct batcher *b)
{
        uint64_t low = q_head_seq(&b->d->queue);

        for (const struct batch *x = b->batches; x; x = x->next)
                if (x->n && x->evs[0].seq < low)
                        low = x->evs[0].seq;
        return low;
}

static uint64_t held_upto(const struct batcher *b, uint64_t target)
{
        uint64_t n = q_count_upto(&b->d->queue, target);

        for (const struct batch *x = b->batches; x; x = x->next)
                for (uint32_t i = 0; i < x->n; i++)
                        n += x->evs[i].seq <= target;
        return n;
}

/* Answer the waiters that are done. Their callbacks may feed events
 * back in (and so re-enter pump), so they run after the list is settled. */
static void check_waiters(struct batcher *b, uint64_t now)
{
        uint64_t low = low_water(b), total = dropped_total(b);
        struct flush_waiter **p = &b->waiters, *done = NULL;

        while (*p) {
                struct flush_waiter *w = *p;

                if (low > w->target || now >= w->deadline) {
                        *p = w->next;
                        w->next = done;
                        done = w;
                        /* see batcher_flush */
                        for (struct flush_frame *f = b->adding; f; f = f->prev)
                                if (f->w == w)
                                        f->answered = true;
                } else {
                        p = &w->next;
                }
        }
        while (done) {
                struct flush_waiter *w = done;
                uint64_t pending = low > w->target ? 0 : held_upto(b, w->target);

                done = w->next;
                w->cb(w->ud, pending ? -ETIMEDOUT : 0, w->held, total - w->dropped0, pending);
                free(w);
        }
}

/* ---- the pump ---- */

static void on_wake(uv_timer_t *t)
{
        pump(t->data);
}

static void on_interval(uv_timer_t *t)
{
        struct batcher *b = t->data;

        b->interval_due = true;
        pump(b);
}

/* Wake for the next due batch, unless sending waits for a session
 * token (the session kicks us then), and for the next flush deadline. */
static void arm_wake(struct batcher *b, uint64_t now, bool can_send)
{
        uint64_t next = UINT64_MAX;

        /* At max_in_flight the next answer pumps us: no timer needed. */
        if (b->d->fwd.in_flight >= cfg_of(b)->max_in_flight)
                can_send = false;
        for (const struct batch *x = b->batches; x && can_send; x = x->next) {
                if (x->state != BATCH_READY)
                        continue;
                uint64_t t = x->not_before > b->paused_until ? x->not_before : b->paused_until;
                if (t < next)
                        next = t;
        }
        for (const struct flush_waiter *w = b->waiters; w; w = w->next)
                if (w->deadline < next)
                        next = w->deadline;
        if (next == UINT64_MAX) {
                uv_timer_stop(&b->wake);
                return;
        }
        uv_timer_start(&b->wake, on_wake, next > now ? next - now : 0, 0);
}

/* Send every batch that is due, if a bearer is at hand (a pk_ session
 * may still be minting: then the batches wait, and the session kicks
 * us when its token arrives). */
static bool dispatch(struct batcher *b, uint64_t now)
{
        const struct cfg *c = cfg_of(b);
        struct fwd *f = &b->d->fwd;
        const char *bearer = NULL;
        uint64_t gen = 0;

        for (struct batch *x = b->batches; x && f->in_flight < c->max_in_flight; x = x->next) {
                if (x->state != BATCH_READY || now < x->not_before)
                        continue;
                if (!bearer && !(bearer = session_token(&b->d->session, &gen)))
                        return false;
                if (!x->stamped && !first_attempt_due(b, x))
                        continue;
                send_batch(b, x, bearer, gen);
        }
        return true;
}

static void pump(struct batcher *b)
{
        const struct cfg *c = cfg_of(b);
        uint64_t now = uv_now(b->d->loop);

        if (b->closing)
                return;
        while (b->nbatches < c->max_in_flight && cut_due(b))
                if (cut_batch(b) < 0)
                        break;
        if (!b->d->queue.count)
                b->interval_due = false;

        bool can_send = true;

        if (now >= b->paused_until)
                can_send = dispatch(b, now);
        check_waiters(b, now);
        arm_wake(b, now, can_send);
}

/* ---- public ---- */

/* flush_interval in loop ms, at least 1 (0 would stop a repeating timer). */
static uint64_t interval_ms(const struct cfg *c)
{
        uint64_t ms = (uint64_t)(c->flush_interval * 1000.0);

        return ms ? ms : 1;
}

int batcher_init(struct batcher *b, struct daemon *d)
{
        uint64_t ms = interval_ms(&d->cfg);

        memset(b, 0, sizeof(*b));
        b->d = d;
        b->state = d->fwd.stdout_mode ? "dry_run" : "idle";
        uv_timer_init(d->loop, &b->interval);
        uv_timer_init(d->loop, &b->wake);
        b->interval.data = b;
        b->wake.data = b;
        count_batches(b, 0);
        uv_timer_start(&b->interval, on_interval, ms, ms);
        return 0;
}

void batcher_reconfigure(struct batcher *b)
{
        uint64_t ms = interval_ms(cfg_of(b));

        if (b->closing)
                return;
        /* Restarted only when it changed: SIGHUPs more often than the
         * interval must not keep postponing it. */
        if (uv_timer_get_repeat(&b->interval) != ms)
                uv_timer_start(&b->interval, on_interval, ms, ms);
        count_batches(b, 0);
        pump(b);
}

void batcher_wake(struct batcher *b)
{
        pump(b);
}

void batcher_kick(struct batcher *b)
{
        if (b->nbatches < cfg_of(b)->max_in_flight && cut_due(b))
                pump(b);
}

struct flush_waiter *batcher_flush(struct batcher *b, uint64_t timeout_ms, batcher_flush_fn cb,
                                   void *ud)
{
        struct flush_waiter *w;
        uint64_t target = b->d->queue.next_seq - 1;

        if (low_water(b) > target) {
                cb(ud, 0, 0, 0, 0);
                return NULL;
        }
        w = calloc(1, sizeof(*w));
        if (!w) {
                cb(ud, -ENOMEM, 0, 0, batcher_held(b));
                return NULL;
        }
        w->target = target;
        w->held = batcher_held(b);
        w->dropped0 = dropped_total(b);
        w->deadline = uv_now(b->d->loop) + timeout_ms;
        w->cb = cb;
        w->ud = ud;
        w->next = b->waiters;
        b->waiters = w;
        if (target > b->flush_target)
                b->flush_target = target;
        /* pump() may answer it at once (timeout_ms 0, or nothing left to
         * wait for); then w is freed and the caller must not keep it. Its
         * callbacks may start flushes of their own: frames nest. */
        struct flush_frame frame = { .w = w, .answered = false, .prev = b->adding };

        b->adding = &frame;
        pump(b);
        b->adding = frame.prev;
        return frame.answered ? NULL : w;
}

void batcher_flush_cancel(struct batcher *b, struct flush_waiter *w)
{
        for (struct flush_waiter **p = &b->waiters; *p; p = &(*p)->next) {
                if (*p == w) {
                        *p = w->next;
                        free(w);
                        return;
                }
        }
}

uint64_t batcher_held(const struct batcher *b)
{
        uint64_t n = b->d->queue.count;

        for (const struct batch *x = b->batches; x; x = x->next)
                n += x->n;
        return n;
}

unsigned batcher_in_flight(const struct batcher *b)
{
        return b->d->fwd.in_flight;
}

void batcher_drain(struct batcher *b)
{
        b->draining = true;
        pump(b);
}

bool batcher_idle(const struct batcher *b)
{
        return !b->batches && !b->d->queue.count;
}

uint64_t batcher_close(struct batcher *b)
{
        uint64_t lost;

        b->closing = true;
        /* Abort what is in flight: on_response sees closing and leaves
         * the batch alone. */
        fwd_close(&b->d->fwd);
        lost = batcher_held(b);
        b->d->stats.dropped[DROP_SHUTDOWN] += lost;
        while (b->waiters) {
                struct flush_waiter *w = b->waiters;
                b->waiters = w->next;
                w->cb(w->ud, -ESHUTDOWN, w->held, 0, lost);
                free(w);
        }
        while (b->batches) {
                struct batch *x = b->batches;
                if (x->state == BATCH_COMPRESSING) {
                        /* Cancelled or still running on the pool, gz_after
                         * runs either way and frees it. */
                        uv_cancel((uv_req_t *)&x->work);
                        b->batches = x->next;
                        count_batches(b, -1);
                        q_release(queue_of(b), x->charged);
                        x->orphaned = true;
                        continue;
                }
                batch_free(b, x);
        }
        q_clear(queue_of(b));
        uv_close((uv_handle_t *)&b->interval, NULL);
        uv_close((uv_handle_t *)&b->wake, NULL);
        return lost;
}
