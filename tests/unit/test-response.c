/* test-response.c - SPEC section 4's tables, one row per case: what an
 * upstream answer means for a batch (resp_judge) and for a session mint
 * (resp_judge_mint). Pure functions: no loop, no server. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "response.h"

#define NO_RA (-1.0)
#define KEEP_STATE (-1) /* the row leaves the upstream's state alone */

struct row {
        const char *what;
        struct resp_in in;
        enum resp_action action;
        int state; /* enum upstream_state, or KEEP_STATE */
        bool forget_token;
};

static const struct row rows[] = {
        { "200 delivered",
          { .status = 200, .retry_after = NO_RA, .events = 5 },
          RESP_DELIVERED,
          UPSTREAM_OK,
          false },
        { "202 delivered",
          { .status = 202, .retry_after = NO_RA, .events = 5 },
          RESP_DELIVERED,
          UPSTREAM_OK,
          false },
        { "dry run: delivered, no upstream state",
          { .status = 200, .retry_after = NO_RA, .events = 5, .dry_run = true },
          RESP_DELIVERED,
          UPSTREAM_DRY_RUN,
          false },
        { "400 never retried",
          { .status = 400, .retry_after = NO_RA, .events = 5 },
          RESP_DROP_REJECTED,
          KEEP_STATE,
          false },
        { "404 permanent",
          { .status = 404, .retry_after = NO_RA, .events = 5 },
          RESP_DROP_REJECTED,
          KEEP_STATE,
          false },
        { "422 permanent",
          { .status = 422, .retry_after = NO_RA, .events = 5 },
          RESP_DROP_REJECTED,
          KEEP_STATE,
          false },
        { "408 transient",
          { .status = 408, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_RETRYING,
          false },
        { "500 transient",
          { .status = 500, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_RETRYING,
          false },
        { "502 transient",
          { .status = 502, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_RETRYING,
          false },
        { "599 transient",
          { .status = 599, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_RETRYING,
          false },
        { "no answer: transient",
          { .status = 0, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_RETRYING,
          false },
        { "TLS failure: retried, an operator's error",
          { .status = 0, .tls_error = true, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_TLS_ERROR,
          false },
        { "429 with Retry-After pauses everything",
          { .status = 429, .retry_after = 3, .events = 5 },
          RESP_PAUSE,
          UPSTREAM_THROTTLED,
          false },
        { "503 with Retry-After 0 pauses (for 0 s)",
          { .status = 503, .retry_after = 0, .events = 5 },
          RESP_PAUSE,
          UPSTREAM_THROTTLED,
          false },
        { "429 without Retry-After backs off",
          { .status = 429, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_THROTTLED,
          false },
        { "503 without Retry-After backs off",
          { .status = 503, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_THROTTLED,
          false },
        { "413 splits",
          { .status = 413, .retry_after = NO_RA, .events = 2 },
          RESP_SPLIT,
          KEEP_STATE,
          false },
        { "413 on one event drops it",
          { .status = 413, .retry_after = NO_RA, .events = 1 },
          RESP_DROP_TOO_LARGE,
          KEEP_STATE,
          false },
        { "301 not followed",
          { .status = 301, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_REDIRECTED,
          false },
        { "308 not followed",
          { .status = 308, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_REDIRECTED,
          false },
        { "sk_ 401 keeps and backs off",
          { .status = 401, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_AUTH_ERROR,
          false },
        { "sk_ 403 keeps and backs off",
          { .status = 403, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_AUTH_ERROR,
          false },
        { "pk_ 401: new token, resend once at once",
          { .status = 401, .retry_after = NO_RA, .events = 5, .session = true },
          RESP_RESEND_NOW,
          KEEP_STATE,
          true },
        { "pk_ 401 again after a re-mint: back off",
          { .status = 401, .retry_after = NO_RA, .events = 5, .session = true, .reminted = true },
          RESP_BACKOFF,
          UPSTREAM_AUTH_ERROR,
          true },
        { "pk_ 403 keeps the token, backs off",
          { .status = 403, .retry_after = NO_RA, .events = 5, .session = true },
          RESP_BACKOFF,
          UPSTREAM_AUTH_ERROR,
          false },
        { "401 for a key a reload replaced: resend with the new one",
          { .status = 401, .retry_after = NO_RA, .events = 5, .key_replaced = true },
          RESP_RESEND_NOW,
          KEEP_STATE,
          false },
        { "403 for a key a reload replaced: resend with the new one",
          { .status = 403,
            .retry_after = NO_RA,
            .events = 5,
            .session = true,
            .key_replaced = true },
          RESP_RESEND_NOW,
          KEEP_STATE,
          false },
        { "a final 1xx is nonsense: transient",
          { .status = 102, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_RETRYING,
          false },
        { "600 and up: transient",
          { .status = 600, .retry_after = NO_RA, .events = 5 },
          RESP_BACKOFF,
          UPSTREAM_RETRYING,
          false },
};

START_TEST(test_events_table)
{
        const struct row *r = &rows[_i];
        struct resp_verdict v = resp_judge(&r->in);

        ck_assert_msg(v.action == r->action, "%s: action %d, want %d", r->what, v.action,
                      r->action);
        if (r->state == KEEP_STATE) {
                ck_assert_msg(!v.set_state, "%s: changes the state to %s", r->what,
                              upstream_state_name(v.state));
        } else {
                ck_assert_msg(v.set_state, "%s: leaves the state", r->what);
                ck_assert_msg((int)v.state == r->state, "%s: state %s, want %s", r->what,
                              upstream_state_name(v.state), upstream_state_name(r->state));
        }
        ck_assert_msg(v.forget_token == r->forget_token, "%s: forget_token %d", r->what,
                      v.forget_token);
}
END_TEST

struct mint_row {
        long status;
        double retry_after;
        enum mint_action action;
};

static const struct mint_row mint_rows[] = {
        { 200, NO_RA, MINT_TAKE_TOKEN }, { 201, NO_RA, MINT_TAKE_TOKEN },
        { 400, NO_RA, MINT_FIX_CONFIG }, { 401, NO_RA, MINT_FIX_CONFIG },
        { 403, NO_RA, MINT_FIX_CONFIG }, { 429, 7, MINT_PAUSE },
        { 503, 0, MINT_PAUSE },          { 429, NO_RA, MINT_BACKOFF },
        { 503, NO_RA, MINT_BACKOFF },    { 500, 5, MINT_BACKOFF },
        { 0, NO_RA, MINT_BACKOFF },      { 404, NO_RA, MINT_BACKOFF },
        { 302, NO_RA, MINT_BACKOFF },
};

START_TEST(test_mint_table)
{
        const struct mint_row *r = &mint_rows[_i];

        ck_assert_msg(resp_judge_mint(r->status, r->retry_after) == r->action,
                      "mint HTTP %ld (Retry-After %g): action %d, want %d", r->status,
                      r->retry_after, resp_judge_mint(r->status, r->retry_after), r->action);
}
END_TEST

START_TEST(test_state_names)
{
        ck_assert_str_eq(upstream_state_name(UPSTREAM_OK), "ok");
        ck_assert_str_eq(upstream_state_name(UPSTREAM_DRY_RUN), "dry_run");
        ck_assert_str_eq(upstream_state_name(UPSTREAM_AUTH_ERROR), "auth_error");
        ck_assert_str_eq(upstream_state_name(UPSTREAM_IDLE), "idle");
}
END_TEST

/* Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP date. */
START_TEST(test_retry_after)
{
        const time_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */

        ck_assert(resp_retry_after("120", now) == 120);
        ck_assert(resp_retry_after(" \t0 ", now) == 0);
        ck_assert(resp_retry_after("99999999999999999999", now) >= RESP_RETRY_AFTER_MAX_S);
        ck_assert(resp_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now) == 120);
        ck_assert(resp_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0);
        ck_assert(resp_retry_after("12 s", now) == -1);
        ck_assert(resp_retry_after("soon", now) == -1);
        ck_assert(resp_retry_after("", now) == -1);
}
END_TEST

START_TEST(test_mint_answer)
{
        static const char ok[] = "{\"token\":\"t.k-1\",\"expires_in\":3600}";
        static const char *const bad[] = {
                "",
                "[]",
                "{\"token\":\"t\"}",
                "{\"token\":\"\",\"expires_in\":1}",
                "{\"token\":\"a b\",\"expires_in\":1}",
                "{\"token\":\"t\",\"expires_in\":0}",
                "{\"token\":\"t\",\"expires_in\":1e7}",
                "{\"token\":1,\"expires_in\":1}",
        };
        char *tok = NULL;
        double secs = 0;

        ck_assert_int_eq(resp_parse_mint(ok, strlen(ok), &tok, &secs), 0);
        ck_assert_str_eq(tok, "t.k-1");
        ck_assert(secs == 3600);
        free(tok);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                tok = NULL;
                ck_assert_int_eq(resp_parse_mint(bad[i], strlen(bad[i]), &tok, &secs), -EINVAL);
                ck_assert_ptr_null(tok);
        }
}
END_TEST

static bool counts(const char *body, uint32_t events, int64_t *acc, int64_t *dups)
{
        return resp_parse_counts(body, strlen(body), events, acc, dups);
}

/* The counts of an events answer; a partial delivery is worth a log.
 * Counts near 2^63 overflowed accepted + duplicates (found by
 * fuzz-response; tests/fuzz/corpus/response/crash-counts-overflow). */
START_TEST(test_answer_counts)
{
        static const char big[] =
                "{\"accepted\":9223372036854775807,\"duplicates\":9223372036854775807}";
        int64_t acc, dups;

        ck_assert(counts("{\"accepted\":3}", 5, &acc, &dups));
        ck_assert(acc == 3 && dups == 0);
        ck_assert(!counts("{\"accepted\":3,\"duplicates\":2}", 5, &acc, &dups));
        ck_assert(acc == 3 && dups == 2);
        ck_assert(!counts("{\"duplicates\":-4}", 5, &acc, &dups));
        ck_assert(acc == -1 && dups == 0);
        ck_assert(!counts("{\"accepted\":-463}", 5, &acc, &dups));
        ck_assert(acc == -1 && dups == 0);
        ck_assert(!counts("{\"accepted\":\"x\"}", 5, &acc, &dups));
        ck_assert(acc == -1 && dups == 0);
        ck_assert(!counts("", 5, &acc, &dups));
        ck_assert(!counts(big, 500, &acc, &dups));
        ck_assert(acc == INT64_MAX && dups == INT64_MAX);
}
END_TEST

static Suite *response_suite(void)
{
        Suite *s = suite_create("response");
        TCase *tc = tcase_create("tables");

        tcase_add_loop_test(tc, test_events_table, 0, (int)(sizeof(rows) / sizeof(rows[0])));
        tcase_add_loop_test(tc, test_mint_table, 0,
                            (int)(sizeof(mint_rows) / sizeof(mint_rows[0])));
        tcase_add_test(tc, test_state_names);
        tcase_add_test(tc, test_retry_after);
        tcase_add_test(tc, test_mint_answer);
        tcase_add_test(tc, test_answer_counts);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(response_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
