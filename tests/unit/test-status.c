/* test-status.c - segopsctl status (ctl/status.c, ctl/fmt.c, issue 12):
 * the human forms of numbers, then the screen and its --json twin for
 * each upstream state and problem, and an older segopsd's reply. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "stats-fixture.h"

START_TEST(test_numbers_for_people)
{
        char b[CTL_FMT_LEN];

        ck_assert_str_eq(ctl_fmt_count(0, b, sizeof(b)), "0");
        ck_assert_str_eq(ctl_fmt_count(999, b, sizeof(b)), "999");
        ck_assert_str_eq(ctl_fmt_count(1000, b, sizeof(b)), "1,000");
        ck_assert_str_eq(ctl_fmt_count(45012, b, sizeof(b)), "45,012");
        ck_assert_str_eq(ctl_fmt_count(18446744073709551615u, b, sizeof(b)),
                         "18,446,744,073,709,551,615");
        ck_assert_str_eq(ctl_fmt_count(1234567, b, 6), "1,234"); /* truncated, terminated */

        ck_assert_str_eq(ctl_fmt_short(0, b, sizeof(b)), "0");
        ck_assert_str_eq(ctl_fmt_short(0.4, b, sizeof(b)), "0.4");
        ck_assert_str_eq(ctl_fmt_short(12, b, sizeof(b)), "12");
        ck_assert_str_eq(ctl_fmt_short(980.2, b, sizeof(b)), "980");
        ck_assert_str_eq(ctl_fmt_short(1234, b, sizeof(b)), "1.2k");
        ck_assert_str_eq(ctl_fmt_short(45012, b, sizeof(b)), "45k");
        ck_assert_str_eq(ctl_fmt_short(3.4e6, b, sizeof(b)), "3.4M");
        ck_assert_str_eq(ctl_fmt_short(-1, b, sizeof(b)), "0");

        ck_assert_str_eq(ctl_fmt_bytes(512, b, sizeof(b)), "512 B");
        ck_assert_str_eq(ctl_fmt_bytes(1229, b, sizeof(b)), "1.2 KiB");
        ck_assert_str_eq(ctl_fmt_bytes(3565158, b, sizeof(b)), "3.4 MiB");
        ck_assert_str_eq(ctl_fmt_bytes(64ull << 30, b, sizeof(b)), "64.0 GiB");

        ck_assert_str_eq(ctl_fmt_age(0.4, b, sizeof(b)), "0.4s");
        ck_assert_str_eq(ctl_fmt_age(45, b, sizeof(b)), "45s");
        ck_assert_str_eq(ctl_fmt_age(133, b, sizeof(b)), "2m13s");
        ck_assert_str_eq(ctl_fmt_age(3 * 3600 + 125, b, sizeof(b)), "3h02m");
        ck_assert_str_eq(ctl_fmt_age(2 * 86400 + 4 * 3600, b, sizeof(b)), "2d04h");
        ck_assert_str_eq(ctl_fmt_age(-3, b, sizeof(b)), "0s");
}
END_TEST

/* The screen for stats (taken); a malloc'd string. *ret_status: the
 * --json object, when asked for. */
static char *screen(json_t *stats, json_t **ret_status)
{
        json_t *st = ctl_status_json(stats);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        ck_assert_ptr_nonnull(st);
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(ctl_status_print(st, f), 0);
        fclose(f);
        if (ret_status)
                *ret_status = st;
        else
                json_decref(st);
        json_decref(stats);
        return text;
}

#define ck_assert_has(text, part) ck_assert_msg(strstr(text, part), "no \"%s\" in:\n%s", part, text)
#define ck_assert_lacks(text, part) ck_assert_msg(!strstr(text, part), "\"%s\" in:\n%s", part, text)

START_TEST(test_up)
{
        json_t *st;
        char *t = screen(fixture_load(fixture_ok), &st);

        ck_assert_has(t, "* segopsd 0.1.0, up 3h03m\n");
        ck_assert_has(t, "Health: healthy: upstream ok, delivering for 5m00s (exit 0");
        ck_assert_has(t, "Upstream: https://api.example.com\n");
        ck_assert_has(t, "State: ok, delivering for 5m00s\n");
        ck_assert_has(t, "Last answer: HTTP 200\n");
        ck_assert_has(t, "Events/s: in 1.2k (10s), 980 (1m); out 1.2k (10s), 976 (1m)\n");
        ck_assert_has(t, "Events: 45,012 received, 45,012 accepted, 44,978 delivered");
        ck_assert_has(t, "Held: 34 events, 8.8 KiB in memory (of 64.0 MiB); oldest 0.4s\n");
        /* Zero counts, sk_ keys and quiet clients take no room. */
        ck_assert_lacks(t, "Dropped");
        ck_assert_lacks(t, "Rejected");
        ck_assert_lacks(t, "Session");
        ck_assert_lacks(t, "quiet");
        /* The same data as JSON. */
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(st, "upstream"), "url")),
                         "https://api.example.com");
        ck_assert_str_eq(
                json_string_value(json_object_get(json_object_get(st, "upstream"), "summary")),
                "ok, delivering for 5m00s");
        ck_assert(json_is_true(json_object_get(json_object_get(st, "health"), "healthy")));
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(st, "held"), "events")),
                         34);
        ck_assert_ptr_null(json_object_get(st, "dropped"));
        json_decref(st);
        free(t);
}
END_TEST

START_TEST(test_down)
{
        char *t = screen(fixture_failing("retrying", 120, 0, "Connection refused"), NULL);

        ck_assert_has(t, "! segopsd");
        ck_assert_has(t, "State: unreachable, retrying for 2m00s (7 failed requests), next try "
                         "in 4s\n");
        ck_assert_has(t, "Last answer: Connection refused\n");
        ck_assert_has(t, "Held: 45,012 events, 3.4 MiB in memory (of 64.0 MiB); oldest 2m00s");
        ck_assert_has(t, "(exit 5 with segopsctl health)");
        ck_assert_has(t, "out 0 (10s), 0 (1m)");
        free(t);
}
END_TEST

START_TEST(test_auth_error)
{
        char *t = screen(fixture_failing("auth_error", 75, 401, "HTTP 401"), NULL);

        ck_assert_has(t, "State: auth failing for 1m15s (7 failed requests): the API key is "
                         "refused");
        ck_assert_has(t, "Last answer: HTTP 401\n");
        ck_assert_has(t, "(exit 6 with segopsctl health)");
        free(t);
}
END_TEST

START_TEST(test_throttled)
{
        json_t *j = fixture_failing("throttled", 90, 429, "HTTP 429");
        char *t;

        fixture_set(j, "upstream.paused_s", json_real(30));
        t = screen(j, NULL);
        ck_assert_has(t, "State: paused by Retry-After for 30s more (throttled for 1m30s");
        ck_assert_has(t, "Last answer: HTTP 429\n");
        free(t);
        /* Without a pause (503 without Retry-After, say). */
        t = screen(fixture_failing("throttled", 5, 503, "HTTP 503"), NULL);
        ck_assert_has(t, "State: throttled");
        ck_assert_has(t, "next try in 4s");
        free(t);
}
END_TEST

START_TEST(test_tls_error)
{
        char *t = screen(fixture_failing("tls_error", 10, 0,
                                         "SSL certificate problem: unable to get local issuer"),
                         NULL);

        ck_assert_has(t, "State: TLS failing for 10s");
        ck_assert_has(t, "ca_file");
        ck_assert_has(t, "Last answer: SSL certificate problem");
        ck_assert_has(t, "(exit 6 with segopsctl health)");
        free(t);
}
END_TEST

START_TEST(test_dry_run)
{
        json_t *j = fixture_load(fixture_ok);
        char *t;

        fixture_set(j, "upstream.state", json_string("dry_run"));
        fixture_set(j, "upstream.url", json_string("stdout"));
        fixture_set(j, "upstream.last_status", json_integer(0));
        t = screen(j, NULL);
        ck_assert_has(t, "Upstream: stdout\n");
        ck_assert_has(t, "State: dry run");
        ck_assert_lacks(t, "Last answer");
        ck_assert_has(t, "(exit 0 with");
        free(t);
}
END_TEST

START_TEST(test_drops_and_rejections)
{
        json_t *j = fixture_load(fixture_ok), *st;
        char *t;

        fixture_set(j, "dropped.memory_full", json_integer(1234));
        fixture_set(j, "dropped.upstream_rejected", json_integer(40));
        fixture_set(j, "rates.dropped_1m", json_integer(5));
        fixture_set(j, "rejected.bad_json", json_integer(3));
        t = screen(j, &st);
        ck_assert_has(t, "Dropped: memory_full 1,234, upstream_rejected 40 (5 in the last "
                         "minute)\n");
        ck_assert_has(t, "Rejected: bad_json 3 (0 in the last minute)\n");
        ck_assert_lacks(t, "too_large");
        ck_assert_lacks(t, "oversize");
        ck_assert_has(t, "(exit 7 with");
        ck_assert_int_eq(json_object_size(json_object_get(st, "dropped")), 2);
        ck_assert_int_eq(json_integer_value(json_object_get(st, "dropped_1m")), 5);
        json_decref(st);
        free(t);
}
END_TEST

START_TEST(test_client_drops)
{
        json_t *j = fixture_load(fixture_ok), *st;
        char *t;

        fixture_set(j, "client_dropped", json_integer(17));
        json_array_append_new(json_object_get(j, "clients"),
                              json_pack("{s:i s:s s:i s:s}", "pid", 4242, "comm", "myapp",
                                        "dropped", 17, "identity", "verified"));
        t = screen(j, &st);
        ck_assert_has(t, "Client drops: 17 events dropped by clients");
        ck_assert_has(t, "pid 4242 (myapp) dropped 17\n");
        ck_assert_lacks(t, "quiet");
        ck_assert_int_eq(json_array_size(json_object_get(st, "clients")), 1);
        json_decref(st);
        free(t);
}
END_TEST

START_TEST(test_spool_and_session)
{
        json_t *j = fixture_load(fixture_ok);
        char *t;

        fixture_set(j, "spool",
                    json_pack("{s:s s:s s:I s:i s:i s:I}", "state", "memory_only_after_error",
                              "last_error", "No space left on device", "bytes",
                              (json_int_t)125829120, "write_errors", 2, "disk_only_events", 12000,
                              "pending_events", (json_int_t)45012));
        fixture_set(j, "session.enabled", json_true());
        fixture_set(j, "session.state", json_string("ready"));
        fixture_set(j, "session.token_expires_in_s", json_real(2520));
        t = screen(j, NULL);
        ck_assert_has(t, "Spool: memory only after an error: No space left on device (2 write "
                         "errors)\n");
        ck_assert_has(t, ", 120.0 MiB on disk (12,000 events only there)");
        ck_assert_has(t, "Session: pk_ session ready, token expires in 42m00s\n");
        ck_assert_has(t, "(exit 8 with");
        free(t);
}
END_TEST

START_TEST(test_odd_numbers)
{
        json_t *j = fixture_load(fixture_ok), *st;
        char *t;

        /* A hostile or broken reply: counts too large for any integer,
         * negative, fractional. Shown clamped, never undefined. */
        fixture_set(j, "dropped.memory_full", json_integer(1));
        fixture_set(j, "rates.dropped_1m", json_real(1e300));
        fixture_set(j, "upstream.state", json_string("retrying"));
        fixture_set(j, "upstream.failing_s", json_real(30));
        fixture_set(j, "upstream.failures", json_real(-5e300));
        t = screen(j, &st);
        ck_assert_has(t, "18,446,744,073,709,551,615 in the last minute");
        json_decref(st);
        free(t);
}
END_TEST

START_TEST(test_older_daemon)
{
        json_t *j = fixture_failing("retrying", 10, 0, "Connection refused");
        char *t;

        fixture_make_old(j);
        t = screen(j, NULL);
        ck_assert_has(t, "Upstream: (URL not reported by this segopsd)\n");
        ck_assert_has(t, "State: unreachable, retrying\n");
        ck_assert_lacks(t, "Events/s");
        ck_assert_lacks(t, "oldest");
        ck_assert_has(t, "Events: 45,012 received");
        free(t);
        /* Nothing, or nonsense, still makes a screen. */
        t = screen(json_object(), NULL);
        ck_assert_has(t, "segopsd (unknown version)");
        ck_assert_has(t, "State: state unknown");
        free(t);
        t = screen(
                json_pack("{s:[] s:s s:i s:{}}", "upstream", "rates", "x", "clients", 3, "spool"),
                NULL);
        ck_assert_has(t, "segopsd");
        free(t);
}
END_TEST

static Suite *status_suite(void)
{
        Suite *s = suite_create("status");
        TCase *fmt = tcase_create("fmt"), *tc = tcase_create("screen");

        tcase_add_test(fmt, test_numbers_for_people);
        suite_add_tcase(s, fmt);
        tcase_add_test(tc, test_up);
        tcase_add_test(tc, test_down);
        tcase_add_test(tc, test_auth_error);
        tcase_add_test(tc, test_throttled);
        tcase_add_test(tc, test_tls_error);
        tcase_add_test(tc, test_dry_run);
        tcase_add_test(tc, test_drops_and_rejections);
        tcase_add_test(tc, test_client_drops);
        tcase_add_test(tc, test_spool_and_session);
        tcase_add_test(tc, test_older_daemon);
        tcase_add_test(tc, test_odd_numbers);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(status_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
