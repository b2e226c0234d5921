/* test-queue.c - the bounded queue: order, seq numbers, the memory
 * account, and both when_full policies. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

static const char ev[] = "{\"event_id\":\"x\"}";
#define EVLEN (sizeof(ev) - 1)

/* The test's one queue takes seqs 1, 2, ... as the batcher hands out. */
static uint64_t next_seq;

/* The last push's evictions: how many, and the first seq. */
static struct {
        size_t n;
        uint64_t first;
} evicted;

static void on_evict(void *ud, uint64_t seq)
{
        if (!evicted.n++)
                evicted.first = seq;
}

static void qinit(struct queue *q, size_t limit, enum cfg_when_full when_full)
{
        q_init(q, limit, when_full);
        next_seq = 1;
}

/* q_push, returning the number evicted when it queued the event. */
static int push(struct queue *q, const char *e, size_t len)
{
        int r;

        evicted.n = 0;
        r = q_push(q, next_seq, e, len, on_evict, NULL);
        if (r == 0)
                next_seq++;
        return r < 0 ? r : (int)evicted.n;
}

/* Set by a test: malloc fails from the fail_at-th call on (1-based),
 * for code linked into this program (-Wl,--wrap=malloc). */
static unsigned malloc_calls, malloc_fail_at;
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

void *__wrap_malloc(size_t n)
{
        if (malloc_fail_at && ++malloc_calls >= malloc_fail_at)
                return NULL;
        return __real_malloc(n);
}

START_TEST(test_fifo_and_seq)
{
        struct queue q;
        const struct q_event *e;

        qinit(&q, 1 << 20, CFG_DROP_NEWEST);
        ck_assert_uint_eq(q_head_seq(&q), UINT64_MAX);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        ck_assert_uint_eq(q.count, 3);
        ck_assert_uint_eq(q.bytes, 3 * EVLEN);
        ck_assert_uint_eq(q.used, 3 * Q_EVENT_COST(EVLEN));
        for (uint64_t s = 1; s <= 3; s++) {
                ck_assert_uint_eq(q_head_seq(&q), s);
                e = q_peek(&q);
                ck_assert_uint_eq(e->seq, s);
                ck_assert(memcmp(e->data, ev, EVLEN) == 0);
                q_pop(&q);
        }
        ck_assert_ptr_null(q_peek(&q));
        ck_assert_uint_eq(q.used, 0);
        q_clear(&q);
}
END_TEST

/* Many events of every size across many blocks, and one larger than a
 * block, come out whole and in order while pushes and drops interleave;
 * q_count_between agrees with a count by hand. */
START_TEST(test_blocks_keep_order_and_bytes)
{
        enum { ROUNDS = 40000 };
        static char buf[Q_BLOCK_BYTES * 2];
        static size_t lens[ROUNDS + 1]; /* by seq */
        struct queue q;
        uint64_t next_out = 1, pushed = 0;
        size_t bytes = 0;
        unsigned seed = 7;

        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (char)('a' + i % 26);
        qinit(&q, (size_t)1 << 30, CFG_DROP_NEWEST);
        for (int round = 0; round < ROUNDS; round++) {
                unsigned op = (unsigned)rand_r(&seed) % 1000;
                size_t len = 1 + (size_t)rand_r(&seed) % 700;

                if (op < 10) /* around and over a block's size */
                        len = Q_BLOCK_BYTES - 64 + (size_t)rand_r(&seed) % 2000;
                if (op >= 995) {
                        /* Drain it all: the next push meets empty blocks. */
                        while (q.count) {
                                bytes -= lens[next_out++];
                                q_pop(&q);
                        }
                } else if (op < 600 || !q.count) {
                        /* Event seq holds buf from offset seq % 26 on. */
                        ck_assert_int_eq(push(&q, buf + pushed % 26, len), 0);
                        lens[++pushed] = len;
                        bytes += len;
                } else {
                        const struct q_event *e = q_peek(&q);

                        ck_assert_uint_eq(e->seq, next_out);
                        ck_assert_uint_eq(e->len, lens[next_out]);
                        ck_assert(memcmp(e->data, buf + (next_out - 1) % 26, e->len) == 0);
                        ck_assert_uint_eq(q_count_between(&q, 0, next_out + 2),
                                          q.count < 3 ? q.count : 3);
                        bytes -= e->len;
                        q_pop(&q);
                        next_out++;
                }
                ck_assert_uint_eq(q.count, pushed - (next_out - 1));
                ck_assert_uint_eq(q.bytes, bytes);
                ck_assert_uint_eq(q.used, bytes + q.count * Q_EVENT_COST(0));
                ck_assert_uint_eq(q_head_seq(&q), q.count ? next_out : UINT64_MAX);
        }
        ck_assert_uint_eq(q_count_between(&q, 0, 0), 0);
        ck_assert_uint_eq(q_count_between(&q, 0, UINT64_MAX), q.count);
        ck_assert_uint_eq(q_clear(&q), pushed - (next_out - 1));
        ck_assert_uint_eq(q.used, 0);
        ck_assert_uint_eq(q.bytes, 0);
        /* Usable again after a clear. */
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        ck_assert_uint_eq(q_peek(&q)->seq, pushed + 1);
        q_clear(&q);
}
END_TEST

START_TEST(test_drop_newest)
{
        struct queue q;

        qinit(&q, 2 * Q_EVENT_COST(EVLEN), CFG_DROP_NEWEST);
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        ck_assert_int_eq(push(&q, ev, EVLEN), -ENOBUFS);
        ck_assert_uint_eq(q.count, 2);
        ck_assert_uint_eq(q_head_seq(&q), 1);
        ck_assert_uint_eq(q_clear(&q), 2);
        ck_assert_uint_eq(q.used, 0);
}
END_TEST

START_TEST(test_drop_oldest)
{
        struct queue q;

        qinit(&q, 2 * Q_EVENT_COST(EVLEN), CFG_DROP_OLDEST);
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        ck_assert_int_eq(push(&q, ev, EVLEN), 1);
        ck_assert_uint_eq(q.count, 2);
        ck_assert_uint_eq(q_head_seq(&q), 2);
        q_clear(&q);
}
END_TEST

/* drop_oldest with batches holding nearly all of the account: when even
 * an empty queue would not make room, the new event is refused and the
 * queued ones stay (dropping them would lose them for nothing, and
 * uncounted: the caller counts the one refusal). */
START_TEST(test_drop_oldest_keeps_the_queue_when_dropping_cannot_help)
{
        static char big[4096];
        struct queue q;
        size_t small = Q_EVENT_COST(EVLEN);

        ck_assert_uint_le(4 * small, sizeof(big));
        qinit(&q, 10 * small, CFG_DROP_OLDEST);
        q_charge(&q, 7 * small);
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        /* 4 events' worth would need the 3 queued plus room that the
         * batches hold: refused, nothing dropped. */
        ck_assert_int_eq(push(&q, big, 4 * small - Q_EVENT_COST(0)), -ENOBUFS);
        ck_assert_uint_eq(q.count, 3);
        /* One that dropping does make room for still goes in. */
        ck_assert_int_eq(push(&q, big, 2 * small - Q_EVENT_COST(0)), 2);
        ck_assert_uint_eq(q.count, 2);
        ck_assert_uint_le(q.used, q.limit);
        q_clear(&q);
        q_release(&q, 7 * small);
        ck_assert_uint_eq(q.used, 0);
}
END_TEST

/* drop_oldest evicts, then cannot get a block for the new event: the
 * evictions are still reported, so the caller counts every event that
 * left (on the old code q_push said only -ENOMEM, and the evicted event
 * was lost uncounted, while the log blamed drop_newest). */
START_TEST(test_evictions_reported_when_memory_runs_out)
{
        static char big[20000];
        struct queue q;
        size_t cost = Q_EVENT_COST(sizeof(big));
        uint64_t pushed = 0, gone = 0;
        int r;

        memset(big, 'e', sizeof(big));
        qinit(&q, 3 * cost, CFG_DROP_OLDEST);
        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(push(&q, big, sizeof(big)), 0);
                pushed++;
        }
        /* The fourth needs room (one eviction) and a second block: the
         * first block has no space left at its tail. */
        malloc_calls = 0;
        malloc_fail_at = 1; /* nothing but q_push until disarmed: Check allocates too */
        evicted.n = 0;
        r = q_push(&q, next_seq, big, sizeof(big), on_evict, NULL);
        malloc_fail_at = 0;
        ck_assert_int_eq(r, -ENOMEM);
        pushed++;
        gone = evicted.n + 1; /* the evicted, and the refused new one */
        ck_assert_uint_eq(evicted.n, 1);
        ck_assert_uint_eq(evicted.first, 1);
        ck_assert_uint_eq(q_head_seq(&q), 2);
        /* Every event is queued or counted as gone. */
        ck_assert_uint_eq(pushed, q.count + gone);
        ck_assert_uint_eq(q.used, q.count * cost);
        q_clear(&q);
}
END_TEST

START_TEST(test_charged_memory_counts)
{
        struct queue q;

        /* Memory held by batches in flight counts against the bound;
         * with nothing queued to drop, even drop_oldest refuses. */
        qinit(&q, 2 * Q_EVENT_COST(EVLEN), CFG_DROP_OLDEST);
        q_charge(&q, 2 * Q_EVENT_COST(EVLEN));
        ck_assert_int_eq(push(&q, ev, EVLEN), -ENOBUFS);
        q_release(&q, 2 * Q_EVENT_COST(EVLEN));
        ck_assert_int_eq(push(&q, ev, EVLEN), 0);
        q_clear(&q);
}
END_TEST

/* Emptied, then an event larger than a block: the empty block must not
 * stay ahead of it (the head would read what was left there). */
START_TEST(test_big_event_into_an_emptied_queue)
{
        static char big[Q_BLOCK_BYTES + 1000];
        struct queue q;

        memset(big, 'b', sizeof(big));
        qinit(&q, (size_t)1 << 30, CFG_DROP_NEWEST);
        for (int round = 0; round < 3; round++) {
                ck_assert_int_eq(push(&q, ev, EVLEN), 0);
                q_pop(&q);
                ck_assert_uint_eq(q.count, 0);
                ck_assert_int_eq(push(&q, big, sizeof(big)), 0);
                ck_assert_int_eq(push(&q, ev, EVLEN), 0);
                ck_assert_uint_eq(q_peek(&q)->len, sizeof(big));
                ck_assert_uint_eq(q_peek(&q)->seq, next_seq - 2);
                q_pop(&q);
                ck_assert_uint_eq(q_peek(&q)->len, EVLEN);
                q_pop(&q);
                ck_assert_ptr_null(q_peek(&q));
                ck_assert_uint_eq(q.used, 0);
        }
        q_clear(&q);
}
END_TEST

static Suite *queue_suite(void)
{
        Suite *s = suite_create("queue");
        TCase *tc = tcase_create("bounds");

        tcase_add_test(tc, test_fifo_and_seq);
        tcase_add_test(tc, test_blocks_keep_order_and_bytes);
        tcase_add_test(tc, test_big_event_into_an_emptied_queue);
        tcase_add_test(tc, test_drop_newest);
        tcase_add_test(tc, test_drop_oldest);
        tcase_add_test(tc, test_charged_memory_counts);
        tcase_add_test(tc, test_drop_oldest_keeps_the_queue_when_dropping_cannot_help);
        tcase_add_test(tc, test_evictions_reported_when_memory_runs_out);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(queue_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
