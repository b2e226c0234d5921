/* test-flush.c - the flush op's accounting: which events a flush covers,
 * whose drops it reports, when it is answered, and that an answer never
 * runs before flush_answer(). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "flush.h"

struct seen {
        int calls;
        struct flush_result r;
};

static void on_done(void *ud, const struct flush_result *res)
{
        struct seen *s = ud;

        s->calls++;
        s->r = *res;
}

/* What the tests say is held: seqs held_lo..held_hi. */
static uint64_t held_lo = 1, held_hi;

static uint64_t held(void *ctx, uint64_t first, uint64_t target)
{
        uint64_t a = first > held_lo ? first : held_lo, b = target < held_hi ? target : held_hi;

        return a <= b ? b - a + 1 : 0;
}

START_TEST(test_only_its_own_drops_count)
{
        struct flushes fl = { 0 };
        struct seen a = { 0 };

        /* Covers 11..20 (10 held). */
        ck_assert_ptr_nonnull(flush_add(&fl, 11, 20, 10, 1000, on_done, &a));
        flush_dropped(&fl, 1, 10, DROP_MEMORY_FULL);        /* before it: not its own */
        flush_dropped(&fl, 21, 40, DROP_MEMORY_FULL);       /* after it: not its own */
        flush_dropped(&fl, 18, 22, DROP_UPSTREAM_REJECTED); /* 18..20 are its own */
        flush_dropped(&fl, 11, 11, DROP_TOO_LARGE);
        held_lo = 1;
        held_hi = 0; /* nothing held any more */
        ck_assert(flush_settle(&fl, 41, 10, held, NULL));
        ck_assert_int_eq(a.calls, 0); /* settled, not yet answered */
        flush_answer(&fl);
        ck_assert_int_eq(a.calls, 1);
        ck_assert_int_eq(a.r.result, 0);
        ck_assert_uint_eq(a.r.covered, 10);
        ck_assert_uint_eq(a.r.dropped, 4);
        ck_assert_uint_eq(a.r.dropped_by[DROP_UPSTREAM_REJECTED], 3);
        ck_assert_uint_eq(a.r.dropped_by[DROP_TOO_LARGE], 1);
        ck_assert_uint_eq(a.r.dropped_by[DROP_MEMORY_FULL], 0);
        ck_assert_uint_eq(a.r.delivered, 6);
        ck_assert_uint_eq(a.r.pending, 0);
        flush_answer(&fl); /* once only */
        ck_assert_int_eq(a.calls, 1);
}
END_TEST

/* A flush begun while the events socket is drained (dgram.c) waits for
 * the drain and covers what comes in meanwhile, delivered or not. */
START_TEST(test_open_until_the_drain_is_done)
{
        struct flushes fl = { 0 };
        struct seen a = { 0 }, b = { 0 };
        struct flush_waiter *w = flush_add(&fl, 5, 4, 0, 1000, on_done, &a);

        ck_assert_ptr_nonnull(w);
        flush_open(w, 3); /* nothing held yet; datagrams still to read */
        w = flush_add(&fl, 5, 4, 0, 1000, on_done, &b);
        ck_assert_ptr_nonnull(w);
        flush_open(w, 4);
        held_lo = 5;
        held_hi = 4;
        ck_assert(!flush_settle(&fl, UINT64_MAX, 10, held, NULL)); /* not done: open */
        flush_pushed(&fl, 3);                                      /* the drain read 5..7 */
        held_hi = 7;
        flush_drained(&fl, 3, 7);
        ck_assert(!flush_settle(&fl, 5, 20, held, NULL)); /* 5..7 held */
        flush_pushed(&fl, 2);                             /* 8, 9 came with drain 4 */
        flush_dropped(&fl, 9, 9, DROP_MEMORY_FULL);
        held_lo = 8;
        held_hi = 8; /* 5..7 delivered */
        ck_assert(flush_settle(&fl, 8, 30, held, NULL));
        flush_answer(&fl);
        ck_assert_int_eq(a.calls, 1);
        ck_assert_int_eq(a.r.result, 0);
        ck_assert_uint_eq(a.r.covered, 3);
        ck_assert_uint_eq(a.r.delivered, 3);
        ck_assert_uint_eq(a.r.dropped, 0);
        ck_assert_int_eq(b.calls, 0); /* its drain is not done */
        flush_drained(&fl, 4, 9);
        ck_assert(!flush_settle(&fl, 8, 40, held, NULL));
        ck_assert(flush_settle(&fl, 8, 1000, held, NULL)); /* its deadline */
        flush_answer(&fl);
        ck_assert_int_eq(b.r.result, -ETIMEDOUT);
        ck_assert_uint_eq(b.r.covered, 5);
        ck_assert_uint_eq(b.r.dropped, 1);
        ck_assert_uint_eq(b.r.pending, 1);
        ck_assert_uint_eq(b.r.delivered, 3);
}
END_TEST

START_TEST(test_waits_until_its_events_are_resolved)
{
        struct flushes fl = { 0 };
        struct seen a = { 0 };

        ck_assert_ptr_nonnull(flush_add(&fl, 5, 9, 5, 1000, on_done, &a));
        held_lo = 7;
        held_hi = 30;
        ck_assert(!flush_settle(&fl, 7, 10, held, NULL)); /* 7, 8, 9 still held */
        ck_assert_uint_eq(flush_next_deadline(&fl), 1000);
        held_lo = 10;
        ck_assert(flush_settle(&fl, 10, 20, held, NULL)); /* later events do not matter */
        flush_answer(&fl);
        ck_assert_int_eq(a.r.result, 0);
        ck_assert_uint_eq(a.r.delivered, 5);
        ck_assert_uint_eq(flush_next_deadline(&fl), UINT64_MAX);
}
END_TEST

START_TEST(test_deadline_reports_pending)
{
        struct flushes fl = { 0 };
        struct seen a = { 0 };

        ck_assert_ptr_nonnull(flush_add(&fl, 1, 8, 8, 500, on_done, &a));
        held_lo = 4;
        held_hi = 8;
        ck_assert(!flush_settle(&fl, 4, 499, held, NULL));
        ck_assert(flush_settle(&fl, 4, 500, held, NULL));
        flush_answer(&fl);
        ck_assert_int_eq(a.r.result, -ETIMEDOUT);
        ck_assert_uint_eq(a.r.pending, 5);
        ck_assert_uint_eq(a.r.delivered, 3);
}
END_TEST

START_TEST(test_cancel_waiting_or_settled)
{
        struct flushes fl = { 0 };
        struct seen a = { 0 }, b = { 0 };
        struct flush_waiter *wa, *wb;

        wa = flush_add(&fl, 1, 1, 1, 100, on_done, &a);
        wb = flush_add(&fl, 1, 1, 1, 100, on_done, &b);
        flush_cancel(&fl, wa);
        held_lo = 2;
        held_hi = 1;
        ck_assert(flush_settle(&fl, 2, 0, held, NULL));
        flush_cancel(&fl, wb); /* settled, its requester left before the answer */
        flush_answer(&fl);
        ck_assert_int_eq(a.calls, 0);
        ck_assert_int_eq(b.calls, 0);
}
END_TEST

START_TEST(test_close_answers_everyone)
{
        struct flushes fl = { 0 };
        struct seen a = { 0 }, b = { 0 };

        flush_add(&fl, 1, 4, 4, 100, on_done, &a);
        flush_add(&fl, 3, 6, 4, 100, on_done, &b);
        flush_dropped(&fl, 1, 6, DROP_SHUTDOWN);
        held_lo = 1;
        held_hi = 0;
        flush_close(&fl, -ESHUTDOWN, held, NULL);
        ck_assert_int_eq(a.calls, 1);
        ck_assert_int_eq(b.calls, 1);
        ck_assert_int_eq(a.r.result, -ESHUTDOWN);
        ck_assert_uint_eq(a.r.dropped_by[DROP_SHUTDOWN], 4);
        ck_assert_uint_eq(b.r.dropped_by[DROP_SHUTDOWN], 4);
        ck_assert_ptr_null(fl.waiting);
        ck_assert_ptr_null(fl.settled);
}
END_TEST

static Suite *flush_suite(void)
{
        Suite *s = suite_create("flush");
        TCase *tc = tcase_create("waiters");

        tcase_add_test(tc, test_only_its_own_drops_count);
        tcase_add_test(tc, test_waits_until_its_events_are_resolved);
        tcase_add_test(tc, test_open_until_the_drain_is_done);
        tcase_add_test(tc, test_deadline_reports_pending);
        tcase_add_test(tc, test_cancel_waiting_or_settled);
        tcase_add_test(tc, test_close_answers_everyone);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(flush_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
