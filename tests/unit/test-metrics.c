/* test-metrics.c - issue 12's pure parts: the rates and arrival marks
 * (rates.c), the STATUS= wording (status.c), and stats as Prometheus
 * text (metrics.c). */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "rates.h"
#include "status.h"

/* ---- rates ---- */

static struct rates_sample at(uint64_t t_s, uint64_t in, uint64_t out)
{
        return (struct rates_sample){ .t_ms = 1000000 + t_s * 1000, .in = in, .out = out };
}

START_TEST(test_rates_over_the_uptime_then_the_window)
{
        static struct rates r;
        struct rates_sample s = at(0, 0, 0), now;
        struct rates_view v;

        rates_init(&r, &s, 1);
        /* 2 s up, 100 in: the 10 s and 1 min figures are over 2 s. */
        now = at(2, 100, 40);
        rates_view(&r, &now, &v);
        ck_assert_double_eq_tol(v.in_10s, 50, 1e-9);
        ck_assert_double_eq_tol(v.in_1m, 50, 1e-9);
        ck_assert_double_eq_tol(v.out_10s, 20, 1e-9);
        /* 100 ev/s for 90 s, then 10 ev/s for 10 s. */
        for (uint64_t t = 1; t <= 100; t++) {
                uint64_t in = t <= 90 ? 100 * t : 9000 + 10 * (t - 90);

                s = at(t, in, in / 2);
                s.dropped = t > 95 ? t - 95 : 0;
                s.rejected = 7;
                rates_tick(&r, &s, in + 1, 0);
        }
        rates_view(&r, &s, &v);
        ck_assert_double_eq_tol(v.in_10s, 10, 1e-9);
        ck_assert_double_eq_tol(v.out_10s, 5, 1e-9);
        /* 50 s at 100 and 10 s at 10 over the minute. */
        ck_assert_double_eq_tol(v.in_1m, (50 * 100 + 10 * 10) / 60.0, 1e-9);
        ck_assert_uint_eq(v.dropped_1m, 5);
        ck_assert_uint_eq(v.rejected_1m, 0); /* all 7 before the minute */
        ck_assert_uint_eq(r.thinned, 0);     /* nothing held: one mark */
}
END_TEST

START_TEST(test_rates_no_time_no_rate)
{
        static struct rates r;
        struct rates_sample s = at(0, 5, 5);
        struct rates_view v;

        rates_init(&r, &s, 1);
        rates_view(&r, &s, &v);
        ck_assert_double_eq(v.in_10s, 0);
        ck_assert_double_eq(v.out_1m, 0);
}
END_TEST

START_TEST(test_arrival_marks_date_held_events)
{
        static struct rates r;
        struct rates_sample s = at(0, 0, 0);
        uint64_t t;

        rates_init(&r, &s, 11); /* seqs 1..10: an earlier run's */
        ck_assert(!rates_arrived(&r, 5, &t));
        /* seq 11..20 arrive in the first second, 21..30 in the next; the
         * oldest stays held (11). */
        s = at(1, 10, 0);
        rates_tick(&r, &s, 21, 11);
        s = at(2, 20, 0);
        rates_tick(&r, &s, 31, 11);
        ck_assert(rates_arrived(&r, 11, &t));
        ck_assert_uint_eq(t, at(0, 0, 0).t_ms);
        ck_assert(rates_arrived(&r, 25, &t));
        ck_assert_uint_eq(t, at(1, 0, 0).t_ms);
        ck_assert(rates_arrived(&r, 31, &t)); /* not yet arrived: after the last tick */
        ck_assert_uint_eq(t, at(2, 0, 0).t_ms);
        /* Nothing arrives: the last mark moves on, a closer bound. */
        s = at(3, 20, 0);
        rates_tick(&r, &s, 31, 11);
        ck_assert(rates_arrived(&r, 31, &t));
        ck_assert_uint_eq(t, at(3, 0, 0).t_ms);
        /* 11..20 done: their mark goes. */
        rates_tick(&r, &s, 31, 21);
        ck_assert(!rates_arrived(&r, 11, &t));
        ck_assert(rates_arrived(&r, 21, &t));
        ck_assert_uint_eq(t, at(1, 0, 0).t_ms);
}
END_TEST

START_TEST(test_arrival_marks_are_bounded)
{
        static struct rates r;
        struct rates_sample s = at(0, 0, 0);
        uint64_t t;

        rates_init(&r, &s, 1);
        /* An outage: one event a second for an hour, all held. */
        for (uint64_t i = 1; i <= 3600; i++) {
                s = at(i, i, 0);
                rates_tick(&r, &s, i + 1, 1);
                ck_assert_uint_le(r.nmarks, RATES_MARKS);
        }
        ck_assert_uint_gt(r.thinned, 0);
        ck_assert(rates_arrived(&r, 1, &t));
        ck_assert_uint_eq(t, at(0, 0, 0).t_ms); /* the first mark stays */
        ck_assert(rates_arrived(&r, 1800, &t));
        /* Within the marks' spacing: 3600 s over 64..128 marks. */
        ck_assert_uint_le(t, at(1799, 0, 0).t_ms);
        ck_assert_uint_ge(t, at(1799 - 64, 0, 0).t_ms);
}
END_TEST

/* ---- STATUS= ---- */

static const char *text(const struct status_in *in)
{
        static char out[STATUS_TEXT_MAX];

        status_text(in, out, sizeof(out));
        return out;
}

START_TEST(test_status_pieces)
{
        char b[32];

        status_count(0, b, sizeof(b));
        ck_assert_str_eq(b, "0");
        status_count(45012, b, sizeof(b));
        ck_assert_str_eq(b, "45,012");
        status_count(1234567, b, sizeof(b));
        ck_assert_str_eq(b, "1,234,567");
        status_count(100, b, sizeof(b));
        ck_assert_str_eq(b, "100");
        status_rate(1234, b, sizeof(b));
        ck_assert_str_eq(b, "1.2k");
        status_rate(12.4, b, sizeof(b));
        ck_assert_str_eq(b, "12");
        status_rate(0.5, b, sizeof(b));
        ck_assert_str_eq(b, "0.5");
        status_rate(0, b, sizeof(b));
        ck_assert_str_eq(b, "0");
        status_rate(2.5e6, b, sizeof(b));
        ck_assert_str_eq(b, "2.5M");
        status_duration(133.7, b, sizeof(b));
        ck_assert_str_eq(b, "2m13s");
        status_duration(5, b, sizeof(b));
        ck_assert_str_eq(b, "5s");
        status_duration(3 * 3600 + 125, b, sizeof(b));
        ck_assert_str_eq(b, "3h02m");
        status_duration(2 * 86400 + 7200, b, sizeof(b));
        ck_assert_str_eq(b, "2d02h");
}
END_TEST

START_TEST(test_status_wording)
{
        struct status_in in = { .state = UPSTREAM_OK, .in_10s = 1234, .held = 34 };

        ck_assert_str_eq(text(&in), "delivering, 1.2k ev/s in, 34 queued");
        in = (struct status_in){ .state = UPSTREAM_IDLE };
        ck_assert_str_eq(text(&in), "idle, nothing held");
        in.state = UPSTREAM_OK;
        ck_assert_str_eq(text(&in), "idle, nothing held");
        in = (struct status_in){ .state = UPSTREAM_DRY_RUN, .in_10s = 12 };
        ck_assert_str_eq(text(&in), "dry run, 12 ev/s");
        in = (struct status_in){
                .state = UPSTREAM_RETRYING, .failing_s = 133, .retry_in_s = 11.2, .held = 45012
        };
        ck_assert_str_eq(text(&in), "upstream unreachable for 2m13s (retrying, next try in "
                                    "12s), 45,012 events held");
        in = (struct status_in){
                .state = UPSTREAM_THROTTLED, .failing_s = 40, .paused_s = 29.5, .held = 1
        };
        ck_assert_str_eq(text(&in), "upstream throttling for 40s (throttled, paused 30s by "
                                    "Retry-After), 1 event held");
        in = (struct status_in){ .state = UPSTREAM_AUTH_ERROR, .failing_s = 3, .held = 2 };
        ck_assert_str_eq(text(&in),
                         "upstream refusing the API key for 3s (auth_error): fix the key, 2 "
                         "events held");
        in.state = UPSTREAM_TLS_ERROR;
        ck_assert_str_eq(text(&in), "TLS to the upstream failing for 3s (tls_error): check "
                                    "api_url and ca_file, 2 events held");
        in.state = UPSTREAM_NO_KEY;
        ck_assert_str_eq(text(&in), "no API key yet for 3s (no_key): give segopsd its key, 2 "
                                    "events held");
        in.stopping = true;
        ck_assert_str_eq(text(&in), "stopping, 2 events held");
}
END_TEST

START_TEST(test_status_text_is_cut)
{
        struct status_in in = { .state = UPSTREAM_OK, .in_10s = 1234, .held = 34 };
        char small[11];

        ck_assert_uint_eq(status_text(&in, small, sizeof(small)), 10);
        ck_assert_str_eq(small, "delivering");
}
END_TEST

/* ---- metrics ---- */

static char *metrics(const char *stats_json)
{
        json_error_t e;
        json_t *j = json_loads(stats_json, 0, &e);
        struct proto_buf out = { 0 };
        char *s;

        ck_assert_msg(j, "%s", e.text);
        ck_assert_int_eq(metrics_text(j, &out), 0);
        json_decref(j);
        ck_assert_int_eq(proto_buf_append(&out, "", 1), 0);
        s = strdup(out.data);
        proto_buf_free(&out);
        return s;
}

/* The exposition format's rules (0.0.4), as far as we use them: each
 * family's HELP then TYPE come once, before its samples, and its
 * samples are together; names match [a-zA-Z_:][a-zA-Z0-9_:]*; counters
 * end in _total; a sample is NAME[{LABELS}] VALUE; the text ends in a
 * newline. Returns the number of samples. */
static int check_format(const char *text)
{
        char families[256][96];
        int nfam = 0, samples = 0;
        char current[96] = "", type[16] = "";
        const char *p = text;

        ck_assert(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
        while (*p) {
                const char *eol = strchr(p, '\n');
                char line[512], name[96];
                size_t n = (size_t)(eol - p);

                ck_assert(eol && n < sizeof(line));
                memcpy(line, p, n);
                line[n] = '\0';
                p = eol + 1;
                if (strncmp(line, "# HELP ", 7) == 0) {
                        ck_assert_int_eq(sscanf(line + 7, "%95s", name), 1);
                        for (int i = 0; i < nfam; i++)
                                ck_assert_msg(strcmp(families[i], name), "%s twice", name);
                        ck_assert_int_lt(nfam, 256);
                        strcpy(families[nfam++], name);
                        strcpy(current, name);
                        type[0] = '\0';
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0) {
                        ck_assert_int_eq(sscanf(line + 7, "%95s %15s", name, type), 2);
                        ck_assert_str_eq(name, current);
                        ck_assert(!strcmp(type, "counter") || !strcmp(type, "gauge"));
                        if (!strcmp(type, "counter"))
                                ck_assert(n > 6 &&
                                          strstr(name, "_total") == name + strlen(name) - 6);
                        continue;
                }
                ck_assert_msg(line[0] != '#', "%s", line);
                /* NAME[{LABELS}] VALUE */
                size_t k = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_:");
                ck_assert(k > 0 && !(line[0] >= '0' && line[0] <= '9'));
                ck_assert_msg(k == strlen(current) && !strncmp(line, current, k),
                              "sample %s outside its family %s", line, current);
                ck_assert_msg(type[0], "no TYPE before %s", line);
                const char *v = line + k;
                if (*v == '{') {
                        const char *close = strstr(v, "\"}");

                        ck_assert(close);
                        ck_assert(strncmp(v + 1, "reason=\"", 8) == 0 ||
                                  strncmp(v + 1, "state=\"", 7) == 0);
                        v = close + 2;
                }
                ck_assert_msg(*v == ' ', "%s", line);
                char *end;
                strtod(v + 1, &end);
                ck_assert_msg(end != v + 1 && *end == '\0', "bad value in %s", line);
                samples++;
        }
        return samples;
}

START_TEST(test_metrics_format_and_values)
{
        char *t = metrics(
                "{\"ok\":true,\"uptime_s\":12,\"received\":7,\"accepted\":5,"
                "\"rejected\":{\"bad_json\":2,\"oversize\":0},\"dropped\":{\"memory_full\":1},"
                "\"queued_events\":3,\"oldest_held_age_s\":1.5,"
                "\"upstream\":{\"state\":\"retrying\",\"last_status\":503,\"failing_s\":2.25},"
                "\"session\":{\"state\":\"disabled\",\"enabled\":false},"
                "\"spool\":{\"state\":\"off\"},"
                "\"ingest\":{\"paused_ms\":1500,\"datagrams\":4}}");

        ck_assert_int_gt(check_format(t), 20);
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_uptime_seconds 12\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_received_total 7\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_rejected_total{reason=\"bad_json\"} 2\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_rejected_total{reason=\"oversize\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_dropped_total{reason=\"memory_full\"} 1\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_oldest_held_age_seconds 1.5\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_upstream_up 0\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_upstream_state{state=\"retrying\"} 1\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_upstream_state{state=\"ok\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_upstream_failing_seconds 2.25\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_session_enabled 0\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_spool_state{state=\"off\"} 1\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_ingest_paused_seconds_total 1.5\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_ingest_datagrams_total 4\n"));
        /* What stats lacks is left out, HELP and TYPE too. */
        ck_assert_ptr_null(strstr(t, "segopsd_sent_total"));
        ck_assert_ptr_null(strstr(t, "segopsd_spool_bytes"));
        free(t);
}
END_TEST

START_TEST(test_metrics_labels_are_escaped)
{
        char *t = metrics("{\"dropped\":{\"a\\\"b\\\\c\\nd\":3},\"upstream\":{\"state\":\"ok\"}}");

        ck_assert_ptr_nonnull(strstr(t, "segopsd_dropped_total{reason=\"a\\\"b\\\\c\\nd\"} 3\n"));
        ck_assert_ptr_nonnull(strstr(t, "\nsegopsd_upstream_up 1\n"));
        free(t);
}
END_TEST

static Suite *status_suite(void)
{
        Suite *s = suite_create("status");
        TCase *r = tcase_create("rates"), *st = tcase_create("status"),
              *m = tcase_create("metrics");

        tcase_add_test(r, test_rates_over_the_uptime_then_the_window);
        tcase_add_test(r, test_rates_no_time_no_rate);
        tcase_add_test(r, test_arrival_marks_date_held_events);
        tcase_add_test(r, test_arrival_marks_are_bounded);
        tcase_add_test(st, test_status_pieces);
        tcase_add_test(st, test_status_wording);
        tcase_add_test(st, test_status_text_is_cut);
        tcase_add_test(m, test_metrics_format_and_values);
        tcase_add_test(m, test_metrics_labels_are_escaped);
        suite_add_tcase(s, r);
        suite_add_tcase(s, st);
        suite_add_tcase(s, m);
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
