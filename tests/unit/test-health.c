/* test-health.c - segopsctl health's verdict (ctl/health.c, issue 12):
 * each upstream state and problem to its exit code and one line, the
 * precedence 6, 8, 7, 5 when several apply, --max-failing, and an older
 * segopsd's reply without the issue 12 fields. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "stats-fixture.h"

/* Judge j (taken) with max_failing; the code, reason in *h. */
static int judge(json_t *j, double max_failing, struct ctl_health *h)
{
        ctl_health_judge(j, max_failing, h);
        json_decref(j);
        ck_assert_ptr_null(strchr(h->reason, '\n'));
        ck_assert_uint_gt(strlen(h->reason), 0);
        return h->code;
}

START_TEST(test_delivering_idle_and_dry_run_are_healthy)
{
        static const char *const states[] = { "ok", "idle", "dry_run" };
        struct ctl_health h;

        for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
                json_t *j = fixture_load(fixture_ok);

                fixture_set(j, "upstream.state", json_string(states[i]));
                ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_OK);
                ck_assert_msg(strncmp(h.reason, "healthy: ", 9) == 0, "%s", h.reason);
        }
        ck_assert_int_eq(judge(fixture_load(fixture_ok), 60, &h), 0);
        ck_assert_str_eq(h.reason, "healthy: upstream ok, delivering for 5m00s");
}
END_TEST

START_TEST(test_failing_counts_after_the_threshold)
{
        static const char *const states[] = { "retrying", "throttled", "send_error" };
        struct ctl_health h;

        for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
                /* Down for 2 minutes: over the default minute... */
                ck_assert_int_eq(judge(fixture_failing(states[i], 120, 503, "HTTP 503"), 60, &h),
                                 CTL_HEALTH_FAILING);
                ck_assert_msg(strstr(h.reason, "failing") && strstr(h.reason, "2m00s") &&
                                      strstr(h.reason, states[i]),
                              "%s", h.reason);
                /* ...not over the caller's 5. */
                ck_assert_int_eq(judge(fixture_failing(states[i], 120, 503, "HTTP 503"), 300, &h),
                                 CTL_HEALTH_OK);
                ck_assert_int_eq(judge(fixture_failing(states[i], 30, 0, "x"), 60, &h),
                                 CTL_HEALTH_OK);
                /* 0: any failure at all. */
                ck_assert_int_eq(judge(fixture_failing(states[i], 0, 0, "x"), 0, &h),
                                 CTL_HEALTH_FAILING);
        }
}
END_TEST

START_TEST(test_operator_must_act)
{
        struct ctl_health h;
        json_t *j;

        /* At once, whatever the threshold: time does not fix these. */
        ck_assert_int_eq(judge(fixture_failing("auth_error", 1, 401, "HTTP 401"), 3600, &h),
                         CTL_HEALTH_ACT);
        ck_assert_ptr_nonnull(strstr(h.reason, "API key"));
        ck_assert_int_eq(
                judge(fixture_failing("tls_error", 1, 0, "SSL certificate problem"), 3600, &h),
                CTL_HEALTH_ACT);
        ck_assert_ptr_nonnull(strstr(h.reason, "ca_file"));
        ck_assert_int_eq(judge(fixture_failing("redirected", 1, 301, "HTTP 301"), 3600, &h),
                         CTL_HEALTH_ACT);
        ck_assert_ptr_nonnull(strstr(h.reason, "api_url"));
        ck_assert_int_eq(judge(fixture_failing("no_key", 1, 0, "no API key yet"), 3600, &h),
                         CTL_HEALTH_ACT);
        ck_assert_ptr_nonnull(strstr(h.reason, "no API key"));

        /* A pk_ mint refused for its configuration... */
        for (long st = 400; st <= 403; st++) {
                if (st == 402)
                        continue;
                j = fixture_load(fixture_ok);
                fixture_set(j, "session.enabled", json_true());
                fixture_set(j, "session.state", json_string("backing_off"));
                fixture_set(j, "session.last_status", json_integer(st));
                ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_ACT);
                ck_assert_ptr_nonnull(strstr(h.reason, "pk_ session"));
        }
        /* ...but not for a server error. */
        j = fixture_load(fixture_ok);
        fixture_set(j, "session.enabled", json_true());
        fixture_set(j, "session.state", json_string("backing_off"));
        fixture_set(j, "session.last_status", json_integer(503));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_OK);
}
END_TEST

START_TEST(test_drops_in_the_last_minute)
{
        struct ctl_health h;
        json_t *j = fixture_load(fixture_ok);

        /* Memory full. */
        fixture_set(j, "dropped.memory_full", json_integer(1234));
        fixture_set(j, "rates.dropped_1m", json_integer(5));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_DROPPING);
        ck_assert_ptr_nonnull(strstr(h.reason, "5 events dropped in the last minute"));
        ck_assert_ptr_nonnull(strstr(h.reason, "memory_full"));

        /* 400 batches. */
        j = fixture_load(fixture_ok);
        fixture_set(j, "dropped.upstream_rejected", json_integer(40));
        fixture_set(j, "rates.dropped_1m", json_integer(40));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_DROPPING);
        ck_assert_ptr_nonnull(strstr(h.reason, "upstream_rejected"));

        /* Drops long ago are history, not health. */
        j = fixture_load(fixture_ok);
        fixture_set(j, "dropped.memory_full", json_integer(1234));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_OK);

        /* Clients' own drops are theirs (segopsd never saw the events). */
        j = fixture_load(fixture_ok);
        fixture_set(j, "client_dropped", json_integer(17));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_OK);
}
END_TEST

START_TEST(test_spool_trouble)
{
        struct ctl_health h;
        json_t *j = fixture_load(fixture_ok);

        fixture_set(j, "spool.state", json_string("memory_only_after_error"));
        fixture_set(j, "spool.last_error", json_string("No space left on device"));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_SPOOL);
        ck_assert_ptr_nonnull(strstr(h.reason, "No space left on device"));
        j = fixture_load(fixture_ok);
        fixture_set(j, "spool.state", json_string("on"));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_OK);
}
END_TEST

START_TEST(test_the_most_severe_wins)
{
        struct ctl_health h;
        json_t *j;

        /* 6 over 8, 7 and 5. */
        j = fixture_failing("auth_error", 600, 401, "HTTP 401");
        fixture_set(j, "spool.state", json_string("memory_only_after_error"));
        fixture_set(j, "rates.dropped_1m", json_integer(3));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_ACT);
        /* 8 over 7 and 5. */
        j = fixture_failing("retrying", 600, 503, "HTTP 503");
        fixture_set(j, "spool.state", json_string("memory_only_after_error"));
        fixture_set(j, "rates.dropped_1m", json_integer(3));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_SPOOL);
        /* 7 over 5. */
        j = fixture_failing("retrying", 600, 503, "HTTP 503");
        fixture_set(j, "rates.dropped_1m", json_integer(3));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_DROPPING);
}
END_TEST

START_TEST(test_older_daemon)
{
        struct ctl_health h;
        json_t *j;

        j = fixture_load(fixture_ok);
        fixture_make_old(j);
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_OK);
        ck_assert_str_eq(h.reason, "healthy: upstream ok, delivering");

        /* A failure of unknown length: reported, not hidden. */
        j = fixture_failing("retrying", 10, 0, "Connection refused");
        fixture_make_old(j);
        ck_assert_int_eq(judge(j, 600, &h), CTL_HEALTH_FAILING);
        ck_assert_ptr_nonnull(strstr(h.reason, "unknown time"));

        /* Drops: only totals to go by. */
        j = fixture_load(fixture_ok);
        fixture_make_old(j);
        fixture_set(j, "dropped.memory_full", json_integer(2));
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_DROPPING);
        ck_assert_ptr_nonnull(strstr(h.reason, "since segopsd started"));

        /* Nothing at all, or not even an object: no crash, a line. */
        ck_assert_int_eq(judge(json_object(), 60, &h), CTL_HEALTH_OK);
        ck_assert_int_eq(judge(json_integer(3), 60, &h), CTL_HEALTH_OK);
        j = fixture_load(fixture_ok);
        fixture_set(j, "upstream.failing_s", json_string("soon"));
        fixture_set(j, "dropped", json_array());
        fixture_set(j, "spool", json_null());
        ck_assert_int_eq(judge(j, 60, &h), CTL_HEALTH_OK);
}
END_TEST

static Suite *health_suite(void)
{
        Suite *s = suite_create("health");
        TCase *tc = tcase_create("verdict");

        tcase_add_test(tc, test_delivering_idle_and_dry_run_are_healthy);
        tcase_add_test(tc, test_failing_counts_after_the_threshold);
        tcase_add_test(tc, test_operator_must_act);
        tcase_add_test(tc, test_drops_in_the_last_minute);
        tcase_add_test(tc, test_spool_trouble);
        tcase_add_test(tc, test_the_most_severe_wins);
        tcase_add_test(tc, test_older_daemon);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(health_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
