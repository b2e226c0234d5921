/* test-backoff.c - the retry delays of SPEC section 4: exponential from
 * backoff_initial, factor 2, full jitter, capped at backoff_max; and
 * Retry-After capped at retry_after_max. */
#include <check.h>
#include <stdlib.h>

#include "backoff.h"

START_TEST(test_cap_doubles_up_to_the_max)
{
        /* The defaults: 0.5 s, factor 2, at most 60 s. */
        static const uint64_t want[] = { 500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000 };

        for (unsigned a = 1; a <= sizeof(want) / sizeof(want[0]); a++)
                ck_assert_uint_eq(backoff_cap_ms(0.5, 60, a), want[a - 1]);
        ck_assert_uint_eq(backoff_cap_ms(0.5, 60, 0), 500); /* before a failure: as the first */
        ck_assert_uint_eq(backoff_cap_ms(0.5, 60, 1000000), 60000); /* no overflow */
        ck_assert_uint_eq(backoff_cap_ms(0.1, 1, 3), 400);
}
END_TEST

START_TEST(test_full_jitter_spans_zero_to_the_cap)
{
        ck_assert_uint_eq(backoff_ms(0.5, 60, 3, 0.0), 0);
        ck_assert_uint_eq(backoff_ms(0.5, 60, 3, 0.5), 1000);
        ck_assert_uint_lt(backoff_ms(0.5, 60, 3, 0.999999), 2000);
        ck_assert_uint_ge(backoff_ms(0.5, 60, 3, 0.999999), 1999);
        ck_assert_uint_lt(backoff_ms(0.5, 60, 40, 0.999999), 60000);
}
END_TEST

START_TEST(test_retry_after_is_capped)
{
        ck_assert_uint_eq(backoff_retry_after_ms(3, 300), 3000);
        ck_assert_uint_eq(backoff_retry_after_ms(0, 300), 0);
        ck_assert_uint_eq(backoff_retry_after_ms(1e9, 300), 300000);
        ck_assert_uint_eq(backoff_retry_after_ms(2.5, 1), 1000);
}
END_TEST

static Suite *backoff_suite(void)
{
        Suite *s = suite_create("backoff");
        TCase *tc = tcase_create("policy");

        tcase_add_test(tc, test_cap_doubles_up_to_the_max);
        tcase_add_test(tc, test_full_jitter_spans_zero_to_the_cap);
        tcase_add_test(tc, test_retry_after_is_capped);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(backoff_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
