/* stats-fixture.h - stats replies for test-status.c and test-health.c:
 * a delivering segopsd with every field of the issue 12 contract, and a
 * setter to turn it into each upstream state (up, down, 401, 429, TLS,
 * dry run, drops, spool trouble) or into an older daemon's reply. */
#ifndef SEGOPS_TEST_STATS_FIXTURE_H
#define SEGOPS_TEST_STATS_FIXTURE_H

#include <check.h>
#include <string.h>

#include <jansson.h>

/* Delivering for 5 minutes, 1.2k ev/s, nothing lost. */
static const char fixture_ok[] =
        "{\"ok\":true,\"version\":\"0.1.0\",\"uptime_s\":11000,"
        "\"received\":45012,\"accepted\":45012,\"rejected_total\":0,"
        "\"rejected\":{\"bad_json\":0,\"oversize\":0},"
        "\"dropped\":{\"memory_full\":0,\"upstream_rejected\":0,\"too_large\":0,"
        "\"shutdown\":0,\"spool_full\":0,\"spool_corrupt\":0},"
        "\"client_dropped\":0,"
        "\"clients\":[{\"pid\":77,\"comm\":\"quiet\",\"dropped\":0,\"identity\":\"verified\"}],"
        "\"queued_events\":34,\"queued_bytes\":9000,\"max_memory\":67108864,\"in_flight\":1,"
        "\"sent\":44978,"
        "\"upstream\":{\"state\":\"ok\",\"last_status\":200,\"last_error\":\"\","
        "\"url\":\"https://api.example.com\",\"since_s\":300.0,\"failing_s\":0.0,"
        "\"retry_in_s\":0.0,\"paused_s\":0.0,\"failures\":0},"
        "\"rates\":{\"in_10s\":1234.0,\"out_10s\":1200.0,\"in_1m\":980.0,\"out_1m\":975.5,"
        "\"dropped_1m\":0,\"rejected_1m\":0},"
        "\"oldest_held_age_s\":0.4,"
        "\"session\":{\"enabled\":false,\"state\":\"disabled\",\"last_status\":0,"
        "\"last_error\":\"\"},"
        "\"spool\":{\"state\":\"off\"}}";

static json_t *fixture_load(const char *text)
{
        json_error_t jerr;
        json_t *j = json_loads(text, 0, &jerr);

        ck_assert_msg(j != NULL, "fixture: %s", jerr.text);
        return j;
}

/* Set (v a new reference, taken) or, v NULL, remove the member at a
 * dotted path ("upstream.state"); objects on the way are created. */
static void fixture_set(json_t *root, const char *path, json_t *v)
{
        char buf[128], *key = buf, *dot;
        json_t *o = root;

        ck_assert_uint_lt(strlen(path), sizeof(buf));
        memcpy(buf, path, strlen(path) + 1);
        while ((dot = strchr(key, '.'))) {
                json_t *next;

                *dot = '\0';
                next = json_object_get(o, key);
                if (!next) {
                        next = json_object();
                        json_object_set_new(o, key, next);
                }
                o = next;
                key = dot + 1;
        }
        if (v)
                json_object_set_new(o, key, v);
        else
                json_object_del(o, key);
}

/* The upstream failing in state for failing_s seconds. */
static json_t *fixture_failing(const char *state, double failing_s, long last_status,
                               const char *last_error)
{
        json_t *j = fixture_load(fixture_ok);

        fixture_set(j, "upstream.state", json_string(state));
        fixture_set(j, "upstream.since_s", json_real(failing_s));
        fixture_set(j, "upstream.failing_s", json_real(failing_s));
        fixture_set(j, "upstream.retry_in_s", json_real(4.0));
        fixture_set(j, "upstream.failures", json_integer(7));
        fixture_set(j, "upstream.last_status", json_integer(last_status));
        fixture_set(j, "upstream.last_error", json_string(last_error));
        fixture_set(j, "rates.out_10s", json_real(0.0));
        fixture_set(j, "rates.out_1m", json_real(0.0));
        fixture_set(j, "queued_events", json_integer(45012));
        fixture_set(j, "queued_bytes", json_integer(3565158));
        fixture_set(j, "oldest_held_age_s", json_real(failing_s));
        return j;
}

/* What a segopsd from before issue 12 sends: no url, since/failing,
 * rates or oldest age. */
static void fixture_make_old(json_t *j)
{
        static const char *const gone[] = { "upstream.url",
                                            "upstream.since_s",
                                            "upstream.failing_s",
                                            "upstream.retry_in_s",
                                            "upstream.paused_s",
                                            "upstream.failures",
                                            "rates",
                                            "oldest_held_age_s" };

        for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
                fixture_set(j, gone[i], NULL);
}

#endif
