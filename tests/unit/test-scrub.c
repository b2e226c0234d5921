/* test-scrub.c - daemon/scrub.c: what is taken out of text from the
 * upstream before it is logged (suite "scrub"). Pure functions: one
 * case per rule of scrub.h, each with the text it must leave alone. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto.h"
#include "scrub.h"

#define KEY "sk_live_Zq8sEcReT4242"
#define TOKEN "tok_9fQ2xLmZ0pA7"

static const char *const secrets[] = { KEY, TOKEN, NULL, "" };
#define NSECRETS (sizeof(secrets) / sizeof(secrets[0]))

/* scrub_text of in with the secrets above, into a roomy buffer. */
static const char *scrub(const char *in)
{
        static char out[4096];

        scrub_text(out, sizeof(out), in, strlen(in), secrets, NSECRETS);
        return out;
}

struct row {
        const char *in, *want;
};

static void check_rows(const struct row *rows, size_t n)
{
        for (size_t i = 0; i < n; i++)
                ck_assert_msg(strcmp(scrub(rows[i].in), rows[i].want) == 0,
                              "row %zu: '%s' gave '%s', want '%s'", i, rows[i].in,
                              scrub(rows[i].in), rows[i].want);
}

START_TEST(test_exact_secrets)
{
        static const struct row rows[] = {
                { "key " KEY " here", "key [redacted] here" },
                { KEY, "[redacted]" },
                /* Inside a longer word too: no shape needed. */
                { "x" KEY "y", "x[redacted]y" },
                { "{\"t\":\"" TOKEN "\"}", "{\"t\":\"[redacted]\"}" },
                { "pre" TOKEN "post", "pre[redacted]post" },
                /* Twice, and back to back: one mark for a marked run. */
                { KEY " and " KEY, "[redacted] and [redacted]" },
                { KEY TOKEN KEY, "[redacted]" },
                /* Nothing to find: the text as it is. */
                { "", "" },
                { "plain text, nothing secret", "plain text, nothing secret" },
                { "almost sk_live_Zq8sEcReT424 (one short)", "almost [redacted] (one short)" },
        };

        check_rows(rows, sizeof(rows) / sizeof(rows[0]));
}
END_TEST

START_TEST(test_shapes)
{
        static const struct row rows[] = {
                /* Any key's shape, not only ours. */
                { "other sk_abcde and pk_live_XYZ9", "other [redacted] and [redacted]" },
                { "\"sk_test_0123456789abcdef\"", "\"[redacted]\"" },
                /* Words that are not keys stay. */
                { "pk_id sk_abcd task_id_long desk_lamp_color",
                  "pk_id sk_abcd task_id_long desk_lamp_color" },
                { "sk_ and pk_ keys", "sk_ and pk_ keys" },
                /* The run ends at white space, quotes, brackets and the like. */
                { "(sk_abcdefgh),[pk_abcdefgh];", "([redacted]),[[redacted]];" },
                { "k=sk_abcdefgh&u=1", "k=[redacted]" },
                /* Bearer and whatever follows it, in any case. */
                { "Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]" },
                { "bearer\tX y", "bearer\t[redacted] y" },
                { "BEARER  x\"", "BEARER  [redacted]\"" },
                { "{\"a\":\"Bearer " TOKEN "\"}", "{\"a\":\"Bearer [redacted]\"}" },
                /* Not the word Bearer, or nothing after it. */
                { "Bearers x, unbearer x, Bearer", "Bearers x, unbearer x, Bearer" },
                { "Bearer \"", "Bearer \"" },
        };

        check_rows(rows, sizeof(rows) / sizeof(rows[0]));
}
END_TEST

START_TEST(test_overlapping)
{
        static const char *const two[] = { "abcdefgh", "efghijkl" };
        static const char *const periodic[] = { "xyxyxyxy" };
        char out[128];

        /* Two secrets that overlap: all of both. */
        scrub_text(out, sizeof(out), "<abcdefghijkl>", 14, two, 2);
        ck_assert_str_eq(out, "<[redacted]>");
        /* A secret overlapping itself: every occurrence. */
        scrub_text(out, sizeof(out), "-xyxyxyxyxyxy-", 14, periodic, 1);
        ck_assert_str_eq(out, "-[redacted]-");
        /* A near miss that KMP must not skip past. */
        scrub_text(out, sizeof(out), "xyxyxyxzxyxyxyxyz", 17, periodic, 1);
        ck_assert_str_eq(out, "xyxyxyxz[redacted]z");
        /* A shape glued to a secret: one run. */
        ck_assert_str_eq(scrub("pk_zzzzzz" KEY ",x"), "[redacted],x");
}
END_TEST

START_TEST(test_input_ends)
{
        /* A body cut inside a secret: its head goes too... */
        ck_assert_str_eq(scrub("a tok_9fQ2"), "a [redacted]");
        ck_assert_str_eq(scrub("x" TOKEN "-tok_9"), "x[redacted]-[redacted]");
        /* ...down to SCRUB_TAIL_MIN characters; fewer say nothing. */
        ck_assert_str_eq(scrub("a tok"), "a tok");
        /* A key shape cut short is a key, not a word. */
        ck_assert_str_eq(scrub("cut sk_li"), "cut [redacted]");
        ck_assert_str_eq(scrub("Bearer x"), "Bearer [redacted]");
        /* Cut inside an escape in the secret. */
        ck_assert_str_eq(scrub("a tok\\u005f9fQ\\u00"), "a [redacted]");
        ck_assert_str_eq(scrub("a tok%5F9fQ%"), "a [redacted]");
        /* At the start. */
        ck_assert_str_eq(scrub(TOKEN " at the start"), "[redacted] at the start");
}
END_TEST

START_TEST(test_output_cut)
{
        char out[32];
        const char *in = "0123456789 " KEY " tail";
        size_t n = strlen(in);

        /* The mark fits whole or not at all; the cut is after scrubbing,
         * so what is shown is never part of the secret. */
        ck_assert_uint_eq(scrub_text(out, 21, in, n, secrets, NSECRETS), 11);
        ck_assert_str_eq(out, "0123456789 ");
        ck_assert_uint_eq(scrub_text(out, 22, in, n, secrets, NSECRETS), 21);
        ck_assert_str_eq(out, "0123456789 [redacted]");
        ck_assert_uint_eq(scrub_text(out, 24, in, n, secrets, NSECRETS), 23);
        ck_assert_str_eq(out, "0123456789 [redacted] t");
        ck_assert_uint_eq(scrub_text(out, 1, in, n, secrets, NSECRETS), 0);
        ck_assert_str_eq(out, "");
        out[0] = 'x';
        ck_assert_uint_eq(scrub_text(out, 0, in, n, secrets, NSECRETS), 0);
        ck_assert_int_eq(out[0], 'x');
        /* Not NUL-terminated input: only n bytes are read. */
        ck_assert_uint_eq(scrub_text(out, sizeof(out), KEY "zz", 5, secrets, NSECRETS), 10);
        ck_assert_str_eq(out, "[redacted]");
}
END_TEST

START_TEST(test_escaped_secrets)
{
        static const char *const odd[] = { "sk_a\"b\\c/d1234", "tok/x+y=" };
        char out[256];
        static const struct row rows[] = {
                /* JSON, C and URL escapes in the secret. */
                { "\"sk\\u005flive\\u005fZq8sEcReT4242\"", "\"[redacted]\"" },
                { "sk\\x5flive_Zq8sEcReT4242", "[redacted]" },
                { "sk%5Flive%5fZq8sEcReT4242", "[redacted]" },
                { "x tok\\u005F9fQ2xLmZ0pA7 y", "x [redacted] y" },
                /* Every character escaped. */
                { "\\u0074\\u006f\\u006b\\u005f\\u0039\\u0066\\u0051\\u0032\\u0078\\u004c"
                  "\\u006d\\u005a\\u0030\\u0070\\u0041\\u0037",
                  "[redacted]" },
                /* Escaped twice: JSON quoted inside JSON. */
                { "{\"e\":\"{\\\"t\\\":\\\"tok\\\\u005f9fQ2xLmZ0pA7\\\"}\"}",
                  "{\"e\":\"{\\\"t\\\":\\\"[redacted]\\\"}\"}" },
                /* Bearer with an escaped space, and an escaped shape. */
                { "Bearer\\u0020abcdef", "Bearer\\u0020[redacted]" },
                { "pk\\u005fother_key_123", "[redacted]" },
                /* Escapes that are not (bad hex) are text. */
                { "\\u00zz \\x \\", "\\u00zz \\x \\" },
        };

        check_rows(rows, sizeof(rows) / sizeof(rows[0]));
        /* Secrets holding what escapes are made of, as they are and as
         * JSON writes them. */
        scrub_text(out, sizeof(out), "a sk_a\"b\\c/d1234 b", 18, odd, 2);
        ck_assert_str_eq(out, "a [redacted] b");
        const char *json = "a \"sk_a\\\"b\\\\c\\/d1234\" b tok\\/x+y= c";
        scrub_text(out, sizeof(out), json, strlen(json), odd, 2);
        ck_assert_str_eq(out, "a \"[redacted]\" b [redacted] c");
}
END_TEST

/* What batcher-answer.c does: scrub, then make printable (log_excerpt). */
static const char *shown(const char *in, size_t outsz, unsigned flags)
{
        static char out[256];
        char tmp[256];
        size_t n = scrub_text(tmp, outsz, in, strlen(in), secrets, NSECRETS);

        proto_printable(out, outsz, tmp, n, flags);
        return out;
}

START_TEST(test_printable)
{
        /* Scrubbed first, then escaped: the mark passes, control and
         * high bytes and the backslash become \xHH. */
        ck_assert_str_eq(shown("line\n" KEY "\x01\xff\\", 64, PROTO_PRINTABLE_ASCII),
                         "line\\x0a[redacted]\\x01\\xff\\x5c");
        /* A key split by a byte that is escaped later is no key: its
         * pieces are too short to be one, and are shown. */
        ck_assert_str_eq(shown("sk_li\nve", 64, 0), "sk_li\\x0ave");
        /* Cut by the escaping, never into the middle of a secret. */
        ck_assert_str_eq(shown("\x01\x01\x01" KEY, 16, 0), "\\x01\\x01\\x01[re");
}
END_TEST

START_TEST(test_linear_time)
{
        /* A hostile upstream picks both the token and the body: a near
         * miss at every position must not cost length x length. */
        size_t n = 8192, m = 4096;
        char *body = malloc(n), *tok = malloc(m + 1), *out = malloc(n + 16);
        const char *sec[1] = { tok };
        struct timespec t0, t1;

        ck_assert_ptr_nonnull(body);
        ck_assert_ptr_nonnull(tok);
        ck_assert_ptr_nonnull(out);
        memset(body, 'a', n);
        memset(tok, 'a', m);
        tok[m - 1] = 'b';
        tok[m] = '\0';
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 20; i++)
                scrub_text(out, n + 16, body, n, sec, 1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* The body ends in the token's head (m - 1 characters): it goes. */
        ck_assert_uint_eq(strspn(out, "a"), n - (m - 1));
        ck_assert_str_eq(out + n - (m - 1), "[redacted]");
        /* 20 runs: ~2 ms here, and under 2 s even under ASan on a
         * loaded machine; quadratic would be tens of seconds. */
        ck_assert_int_lt((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000,
                         2000);
        free(body);
        free(tok);
        free(out);
}
END_TEST

static Suite *scrub_suite(void)
{
        Suite *s = suite_create("scrub");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_exact_secrets);
        tcase_add_test(tc, test_shapes);
        tcase_add_test(tc, test_overlapping);
        tcase_add_test(tc, test_input_ends);
        tcase_add_test(tc, test_output_cut);
        tcase_add_test(tc, test_escaped_secrets);
        tcase_add_test(tc, test_printable);
        tcase_add_test(tc, test_linear_time);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(scrub_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
