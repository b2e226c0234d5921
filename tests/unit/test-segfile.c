/* test-segfile.c - the spool's segment format: records round-trip, and
 * a scan finds every intact record whatever damage sits between them:
 * a torn tail, overwritten bytes, a false magic, garbage, a file cut at
 * every length. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "segfile.h"

/* n records "event-<seq>-xxxx..." of varied lengths, seqs 100.. */
static void build(struct proto_buf *b, int n)
{
        char ev[300];

        for (int i = 0; i < n; i++) {
                int len = snprintf(ev, sizeof(ev), "{\"event\":%d,\"pad\":\"%.*s\"}", i,
                                   (i * 37) % 200,
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
                ck_assert_int_eq(segfile_append(b, 100 + (uint64_t)i, ev, (size_t)len), 0);
        }
}

/* Scan all of buf (eof); seen[i] set for each record of seq 100 + i. */
static int scan(const char *buf, size_t len, bool *seen, int n, uint64_t *skipped)
{
        struct segfile_rec rec;
        size_t off = 0;
        int found = 0;
        char want[32];

        *skipped = 0;
        while (segfile_next(buf, len, true, &off, &rec, skipped) == SEGFILE_RECORD) {
                int i = (int)(rec.seq - 100);

                ck_assert_int_ge(i, 0);
                ck_assert_int_lt(i, n);
                snprintf(want, sizeof(want), "{\"event\":%d,", i);
                ck_assert(memcmp(rec.data, want, strlen(want)) == 0);
                ck_assert(!seen[i]);
                seen[i] = true;
                found++;
        }
        return found;
}

START_TEST(test_round_trip_and_header)
{
        struct proto_buf b = { 0 };
        bool seen[50] = { 0 };
        uint64_t skipped, first;
        int64_t created;
        char h[SEGFILE_HEADER_LEN], name[SEGFILE_NAME_LEN];

        build(&b, 50);
        ck_assert_int_eq(scan(b.data, b.len, seen, 50, &skipped), 50);
        ck_assert_uint_eq(skipped, 0);
        segfile_header(h, 12345, 1765000000123);
        ck_assert_int_eq(segfile_parse_header(h, sizeof(h), &first, &created), 0);
        ck_assert_uint_eq(first, 12345);
        ck_assert_int_eq(created, 1765000000123);
        h[20] ^= 1;
        ck_assert_int_eq(segfile_parse_header(h, sizeof(h), &first, &created), -EINVAL);
        ck_assert_int_eq(segfile_parse_header("SEGOPSPL", 8, &first, &created), -EINVAL);
        segfile_name(name, 42);
        ck_assert_str_eq(name, "00000000000000000042.seg");
        ck_assert_int_eq(segfile_parse_name(name, &first), 0);
        ck_assert_uint_eq(first, 42);
        ck_assert_int_eq(segfile_parse_name("00000000000000000042.seg.tmp", &first), -EINVAL);
        ck_assert_int_eq(segfile_parse_name("0000000000000000004x.seg", &first), -EINVAL);
        ck_assert_int_eq(segfile_parse_name("99999999999999999999.seg", &first), -EINVAL);
        ck_assert_int_eq(segfile_parse_name("lock", &first), -EINVAL);
        proto_buf_free(&b);
}
END_TEST

/* Without eof, a record cut short asks for more, at its start; with
 * eof, it is a torn tail, counted. */
START_TEST(test_torn_tail)
{
        struct proto_buf b = { 0 };
        struct segfile_rec rec;
        uint64_t skipped = 0;
        size_t off = 0, full;

        build(&b, 3);
        full = b.len;
        b.len -= 7; /* the third record loses its last 7 bytes */
        ck_assert_int_eq(segfile_next(b.data, b.len, false, &off, &rec, &skipped), SEGFILE_RECORD);
        ck_assert_int_eq(segfile_next(b.data, b.len, false, &off, &rec, &skipped), SEGFILE_RECORD);
        ck_assert_int_eq(segfile_next(b.data, b.len, false, &off, &rec, &skipped), SEGFILE_MORE);
        ck_assert_uint_eq(skipped, 0);
        b.len = full;
        ck_assert_int_eq(segfile_next(b.data, b.len, false, &off, &rec, &skipped), SEGFILE_RECORD);
        ck_assert_uint_eq(rec.seq, 102);
        ck_assert_int_eq(segfile_next(b.data, b.len, false, &off, &rec, &skipped), SEGFILE_END);
        b.len = full - 7;
        off = 0;
        for (int i = 0; i < 2; i++)
                segfile_next(b.data, b.len, true, &off, &rec, &skipped);
        ck_assert_int_eq(segfile_next(b.data, b.len, true, &off, &rec, &skipped), SEGFILE_END);
        ck_assert_uint_gt(skipped, 0);
        proto_buf_free(&b);
}
END_TEST

/* 16 overwritten bytes cost the records they touch, no more. */
START_TEST(test_overwritten_bytes_cost_only_their_records)
{
        struct proto_buf b = { 0 };
        enum { N = 200 };

        build(&b, N);
        for (size_t at = 0; at + 16 <= b.len; at += 97) {
                char *copy = malloc(b.len);
                bool seen[N] = { 0 };
                uint64_t skipped;
                int found, lost = 0;

                memcpy(copy, b.data, b.len);
                memset(copy + at, 0x5a, 16);
                found = scan(copy, b.len, seen, N, &skipped);
                for (int i = 0; i < N; i++)
                        lost += !seen[i];
                ck_assert_int_le(lost, 2); /* 16 bytes span two records at most */
                ck_assert_int_eq(found + lost, N);
                ck_assert_uint_gt(skipped, 0);
                free(copy);
        }
        proto_buf_free(&b);
}
END_TEST

/* A false magic with a large length inside damage, near the end of the
 * file: at eof it must not swallow the real records after it. */
START_TEST(test_false_magic_does_not_hide_what_follows)
{
        struct proto_buf b = { 0 }, d = { 0 };
        bool seen[5] = { 0 };
        uint64_t skipped;
        static const char fake[] = { 's', 'g', 'R', '1', 0, 0, 0x30, 0 }; /* len 3 MiB */

        proto_buf_append(&d, fake, sizeof(fake));
        proto_buf_append(&d, "garbage garbage", 15);
        build(&b, 5);
        proto_buf_append(&d, b.data, b.len);
        ck_assert_int_eq(scan(d.data, d.len, seen, 5, &skipped), 5);
        ck_assert_uint_eq(skipped, sizeof(fake) + 15);
        proto_buf_free(&b);
        proto_buf_free(&d);
}
END_TEST

/* A file cut at every length finds every record wholly before the cut. */
START_TEST(test_cut_at_every_length)
{
        struct proto_buf b = { 0 };
        enum { N = 12 };
        size_t ends[N];

        for (int i = 0; i < N; i++) {
                char ev[40];
                int len = snprintf(ev, sizeof(ev), "{\"event\":%d,\"x\":1}", i);

                ck_assert_int_eq(segfile_append(&b, 100 + (uint64_t)i, ev, (size_t)len), 0);
                ends[i] = b.len;
        }
        for (size_t cut = 0; cut <= b.len; cut++) {
                bool seen[N] = { 0 };
                uint64_t skipped;
                int whole = 0;

                for (int i = 0; i < N; i++)
                        whole += ends[i] <= cut;
                ck_assert_int_eq(scan(b.data, cut, seen, N, &skipped), whole);
                ck_assert_uint_eq(skipped, cut - (whole ? ends[whole - 1] : 0));
        }
        proto_buf_free(&b);
}
END_TEST

START_TEST(test_garbage_and_empty)
{
        char junk[4096];
        bool seen[1] = { 0 };
        uint64_t skipped;

        for (size_t i = 0; i < sizeof(junk); i++)
                junk[i] = (char)(i * 131 + (i >> 3));
        ck_assert_int_eq(scan(junk, sizeof(junk), seen, 1, &skipped), 0);
        ck_assert_uint_eq(skipped, sizeof(junk));
        ck_assert_int_eq(scan(junk, 0, seen, 1, &skipped), 0);
        ck_assert_uint_eq(skipped, 0);
}
END_TEST

START_TEST(test_oversize_record_refused)
{
        struct proto_buf b = { 0 };
        static char big[SEGFILE_RECORD_MAX + 1];

        ck_assert_int_eq(segfile_append(&b, 1, big, sizeof(big)), -EMSGSIZE);
        ck_assert_int_eq(segfile_append(&b, 1, big, SEGFILE_RECORD_MAX), 0);
        proto_buf_free(&b);
}
END_TEST

/* CRC-32C's check value, the hardware path against the table at every
 * length and alignment. */
START_TEST(test_crc32c)
{
        static const char check[] = "123456789";
        char buf[300];

        ck_assert_uint_eq(crc32c(0, check, 9), 0xe3069283u);
        ck_assert_uint_eq(crc32c_portable(0, check, 9), 0xe3069283u);
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (char)(i * 7 + 3);
        for (size_t off = 0; off < 9; off++)
                for (size_t n = 0; off + n <= sizeof(buf); n += 13)
                        ck_assert_uint_eq(crc32c(0, buf + off, n),
                                          crc32c_portable(0, buf + off, n));
        /* Continuing a CRC equals taking it at once. */
        ck_assert_uint_eq(crc32c(crc32c(0, buf, 100), buf + 100, 200), crc32c(0, buf, 300));
}
END_TEST

static Suite *segfile_suite(void)
{
        Suite *s = suite_create("segfile");
        TCase *tc = tcase_create("format");

        tcase_add_test(tc, test_crc32c);
        tcase_add_test(tc, test_round_trip_and_header);
        tcase_add_test(tc, test_torn_tail);
        tcase_add_test(tc, test_overwritten_bytes_cost_only_their_records);
        tcase_add_test(tc, test_false_magic_does_not_hide_what_follows);
        tcase_add_test(tc, test_cut_at_every_length);
        tcase_add_test(tc, test_garbage_and_empty);
        tcase_add_test(tc, test_oversize_record_refused);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(segfile_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
