/* test-framer.c - NDJSON framing: lines across reads, oversize lines,
 * the unterminated last line, bounded memory. */
#include <check.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "framer.h"

static void feed(struct framer *f, const char *s)
{
        size_t n = strlen(s);

        while (n > 0) {
                char *p;
                size_t room;

                framer_space(f, &p, &room);
                if (room > n)
                        room = n;
                memcpy(p, s, room);
                framer_commit(f, room);
                s += room;
                n -= room;
                if (n > 0) {
                        /* The caller drains lines between reads. */
                        struct framer_line l;
                        while (framer_next(f, &l))
                                ;
                }
        }
}

START_TEST(test_lines_across_reads)
{
        struct framer f;
        struct framer_line l;

        ck_assert_int_eq(framer_init(&f, 64), 0);
        feed(&f, "{\"a\":");
        ck_assert_int_eq(framer_next(&f, &l), 0);
        feed(&f, "1}\n{\"b\":2}\n\n{\"c\"");
        ck_assert_int_eq(framer_next(&f, &l), 1);
        ck_assert_uint_eq(l.line_no, 1);
        ck_assert_int_eq((int)l.len, 7);
        ck_assert(memcmp(l.data, "{\"a\":1}", 7) == 0);
        ck_assert_int_eq(framer_next(&f, &l), 1);
        ck_assert_uint_eq(l.line_no, 2);
        ck_assert_int_eq(framer_next(&f, &l), 1);
        ck_assert_uint_eq(l.line_no, 3);
        ck_assert_int_eq((int)l.len, 0);
        ck_assert_int_eq(framer_next(&f, &l), 0);
        ck_assert_uint_eq(framer_pending(&f), 4);
        ck_assert_int_eq(framer_finish(&f, &l), 1);
        ck_assert_uint_eq(l.line_no, 4);
        ck_assert(!l.oversize);
        ck_assert(memcmp(l.data, "{\"c\"", 4) == 0);
        ck_assert_int_eq(framer_finish(&f, &l), 0);
        framer_free(&f);
}
END_TEST

START_TEST(test_oversize_line_is_skipped)
{
        struct framer f;
        struct framer_line l;
        char *big = malloc(100001);

        memset(big, 'x', 100000);
        big[100000] = '\0';
        ck_assert_int_eq(framer_init(&f, 1000), 0);
        feed(&f, "ok1\n");
        ck_assert_int_eq(framer_next(&f, &l), 1);
        ck_assert(!l.oversize);
        ck_assert_uint_eq(l.line_no, 1);
        feed(&f, big);
        feed(&f, "\nok2\n");
        /* the oversize line was consumed by feed()'s draining; the next
         * complete ones are still in order */
        int got_ok2 = 0;
        while (framer_next(&f, &l)) {
                if (!l.oversize && l.len == 3 && memcmp(l.data, "ok2", 3) == 0) {
                        ck_assert_uint_eq(l.line_no, 3);
                        got_ok2 = 1;
                }
        }
        ck_assert(got_ok2);
        /* memory stayed bounded: the buffer never grows */
        ck_assert_uint_le(f.cap, 1000 + 2 + 16384);
        framer_free(&f);
        free(big);
}
END_TEST

START_TEST(test_oversize_reported_with_line_number)
{
        struct framer f;
        struct framer_line l;

        ck_assert_int_eq(framer_init(&f, 8), 0);
        feed(&f, "a\n0123456789\nb\n");
        ck_assert_int_eq(framer_next(&f, &l), 1);
        ck_assert(!l.oversize);
        ck_assert_int_eq(framer_next(&f, &l), 1);
        ck_assert(l.oversize);
        ck_assert_uint_eq(l.line_no, 2);
        ck_assert_int_eq(framer_next(&f, &l), 1);
        ck_assert(!l.oversize);
        ck_assert_uint_eq(l.line_no, 3);
        framer_free(&f);
}
END_TEST

START_TEST(test_exact_limit_and_unterminated_oversize)
{
        struct framer f;
        struct framer_line l;

        ck_assert_int_eq(framer_init(&f, 4), 0);
        feed(&f, "abcd\nabcde");
        ck_assert_int_eq(framer_next(&f, &l), 1);
        ck_assert(!l.oversize);
        ck_assert_int_eq((int)l.len, 4);
        ck_assert_int_eq(framer_next(&f, &l), 0);
        ck_assert_int_eq(framer_finish(&f, &l), 1);
        ck_assert(l.oversize);
        ck_assert_uint_eq(l.line_no, 2);
        framer_free(&f);
}
END_TEST

/* The \r of a CRLF line is not part of the message: a message of
 * exactly max_line bytes passes with either line end, whole or fed a
 * byte at a time; one byte more is oversize with either. */
START_TEST(test_crlf_does_not_count_against_the_limit)
{
        static const char *const in[] = { "abcd\r\n", "abcd\n", "abcde\r\n", "abcde\n",
                                          "abcd\r" /* EOF */ };
        static const bool over[] = { false, false, true, true, false };

        for (int bytewise = 0; bytewise < 2; bytewise++) {
                for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
                        struct framer f;
                        struct framer_line l;
                        size_t len = strlen(in[i]);
                        int got = 0;

                        ck_assert_int_eq(framer_init(&f, 4), 0);
                        for (size_t k = 0; k < len; k += bytewise ? 1 : len) {
                                char *p;
                                size_t n, m = bytewise ? 1 : len;

                                framer_space(&f, &p, &n);
                                ck_assert_uint_ge(n, m);
                                memcpy(p, in[i] + k, m);
                                framer_commit(&f, m);
                                got += framer_next(&f, &l);
                        }
                        if (!got)
                                got = framer_finish(&f, &l);
                        ck_assert_int_eq(got, 1);
                        ck_assert_msg(l.oversize == over[i], "%s (bytewise %d)", in[i], bytewise);
                        framer_free(&f);
                }
        }
}
END_TEST

START_TEST(test_crlf_and_nul_pass_through)
{
        struct framer f;
        struct framer_line l;
        char *p;
        size_t n;

        ck_assert_int_eq(framer_init(&f, 64), 0);
        framer_space(&f, &p, &n);
        memcpy(p, "a\0b\r\n", 5);
        framer_commit(&f, 5);
        ck_assert_int_eq(framer_next(&f, &l), 1);
        /* the framer splits only; proto rejects the NUL */
        ck_assert_int_eq((int)l.len, 4);
        ck_assert_int_eq(l.data[1], '\0');
        framer_free(&f);
}
END_TEST

/* One stream, cut into two reads at every byte: the same lines come out,
 * with the same numbers and oversize marks, wherever the cut falls. */
START_TEST(test_every_cut_gives_the_same_lines)
{
        static const char in[] = "{\"a\":1}\r\n\n  \nxxxxxxxxxxxxxxxxxxxx\nok\r\nlast";
        static const struct {
                const char *data; /* NULL: oversize */
                uint64_t line_no;
        } want[] = { { "{\"a\":1}\r", 1 }, { "", 2 },     { "  ", 3 },
                     { NULL, 4 },          { "ok\r", 5 }, { "last", 6 } };
        size_t len = sizeof(in) - 1;

        for (size_t cut = 0; cut <= len; cut++) {
                struct framer f;
                struct framer_line l;
                size_t got = 0;

                ck_assert_int_eq(framer_init(&f, 12), 0);
                for (int part = 0; part < 2; part++) {
                        size_t from = part ? cut : 0, to = part ? len : cut;
                        char *p;
                        size_t room;

                        framer_space(&f, &p, &room);
                        ck_assert_uint_ge(room, to - from);
                        memcpy(p, in + from, to - from);
                        framer_commit(&f, to - from);
                        while (framer_next(&f, &l) || (part && framer_finish(&f, &l))) {
                                ck_assert_uint_lt(got, sizeof(want) / sizeof(want[0]));
                                ck_assert_uint_eq(l.line_no, want[got].line_no);
                                ck_assert_msg(l.oversize == !want[got].data, "cut %zu line %zu",
                                              cut, got);
                                if (want[got].data) {
                                        ck_assert_uint_eq(l.len, strlen(want[got].data));
                                        ck_assert(memcmp(l.data, want[got].data, l.len) == 0);
                                }
                                got++;
                        }
                }
                ck_assert_msg(got == sizeof(want) / sizeof(want[0]), "cut %zu: %zu lines", cut,
                              got);
                framer_free(&f);
        }
}
END_TEST

/* A datagram's messages: newline-separated, the last one with or
 * without its newline, nothing invented after a final newline. */
START_TEST(test_datagram_messages)
{
        /* lines: each line's bytes, separated by '|' (no case has one). */
        static const struct {
                const char *in;
                size_t n;
                const char *lines;
                size_t count;
        } cases[] = {
                { "", 0, "", 0 },
                { "a", 1, "a", 1 },
                { "a\n", 2, "a", 1 },
                { "\n", 1, "", 1 },
                { "a\n\nb", 4, "a||b", 3 },
                { "a\r\nb\r\n", 6, "a\r|b\r", 2 },
                { "a\tb\nc", 5, "a\tb|c", 2 },
                { "\n\n", 2, "|", 2 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *w = cases[i].lines;
                struct framer_line l;
                size_t pos = 0, k = 0;

                while (framer_datagram_next(cases[i].in, cases[i].n, &pos, &l)) {
                        size_t wlen = strcspn(w, "|");

                        ck_assert_msg(k < cases[i].count, "case %zu: extra line %zu", i, k);
                        ck_assert_uint_eq(l.line_no, k + 1);
                        ck_assert_msg(l.len == wlen && memcmp(l.data, w, wlen) == 0,
                                      "case %zu line %zu", i, k);
                        ck_assert(!l.oversize);
                        w += wlen + (w[wlen] == '|');
                        k++;
                }
                ck_assert_msg(k == cases[i].count, "case %zu: %zu lines", i, k);
        }
}
END_TEST

static Suite *framer_suite(void)
{
        Suite *s = suite_create("framer");
        TCase *tc = tcase_create("framing");

        tcase_add_test(tc, test_lines_across_reads);
        tcase_add_test(tc, test_oversize_line_is_skipped);
        tcase_add_test(tc, test_oversize_reported_with_line_number);
        tcase_add_test(tc, test_exact_limit_and_unterminated_oversize);
        tcase_add_test(tc, test_crlf_and_nul_pass_through);
        tcase_add_test(tc, test_crlf_does_not_count_against_the_limit);
        tcase_add_test(tc, test_every_cut_gives_the_same_lines);
        tcase_add_test(tc, test_datagram_messages);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(framer_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
