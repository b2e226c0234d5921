/* test-shim-ring.c - what libshim's sender thread takes from its ring:
 * a line too long for a datagram whole (the memfd path), else the whole
 * lines that fit one datagram, never nothing while the ring holds
 * something. Layouts around the 64 KiB boundary, wrapped around the
 * ring's end, ending exactly at it, checked against a plain scan. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "shim-internal.h"

/* Length of the first line from the tail, by the simplest means. */
static size_t ref_first_line(const struct segops_shim *s)
{
        for (size_t i = 0; i < s->used; i++)
                if (s->ring[(s->tail + i) % s->ring_size] == '\n')
                        return i + 1;
        return 0;
}

static char ring_at(const struct segops_shim *s, size_t i)
{
        return s->ring[(s->tail + i) % s->ring_size];
}

/* A ring with a first line of len bytes at tail, then lines of 1..20
 * bytes filling `extra` more. */
static void lay_out(struct segops_shim *s, size_t tail, size_t len, size_t extra, unsigned *seed)
{
        memset(s->ring, 'x', s->ring_size);
        s->tail = tail;
        s->used = len + extra;
        s->head = (tail + s->used) % s->ring_size;
        s->ring[(tail + len - 1) % s->ring_size] = '\n';
        for (size_t k = len; k < s->used;) {
                size_t step = 1 + rand_r(seed) % 20;

                if (k + step > s->used)
                        step = s->used - k;
                k += step;
                s->ring[(tail + k - 1) % s->ring_size] = '\n';
        }
}

/* What the thread does with this layout is right. */
static void check_layout(const struct segops_shim *s)
{
        size_t first = ref_first_line(s), big = shim_big_line_locked(s);
        struct iovec iov[2];
        int cnt = 0;
        size_t n;

        ck_assert_uint_gt(first, 0);
        ck_assert_uint_eq(big, first > SHIM_DGRAM_BYTES ? first : 0);
        if (big)
                return;
        n = shim_next_chunk_locked(s, iov, &cnt);
        ck_assert_msg(n > 0, "nothing to send: ring %zu tail %zu used %zu first %zu", s->ring_size,
                      s->tail, s->used, first);
        ck_assert_uint_le(n, SHIM_DGRAM_BYTES);
        ck_assert_uint_ge(n, first);
        ck_assert_int_eq(ring_at(s, n - 1), '\n');
        ck_assert_uint_eq(iov[0].iov_len + (cnt == 2 ? iov[1].iov_len : 0), n);
        ck_assert_ptr_eq(iov[0].iov_base, s->ring + s->tail);
        /* As many whole lines as fit: the next line would not. */
        if (n < s->used && n < SHIM_DGRAM_BYTES) {
                size_t next = n;
                while (ring_at(s, next) != '\n')
                        next++;
                ck_assert_uint_gt(next + 1, SHIM_DGRAM_BYTES);
        }
}

START_TEST(test_lines_around_the_datagram_size)
{
        static const size_t sizes[] = { SHIM_DGRAM_BYTES + 10, SHIM_DGRAM_BYTES * 2 + 3, 200000,
                                        3 * SHIM_DGRAM_BYTES };
        static const size_t lens[] = { 1,
                                       2,
                                       SHIM_DGRAM_BYTES - 1,
                                       SHIM_DGRAM_BYTES,
                                       SHIM_DGRAM_BYTES + 1,
                                       SHIM_DGRAM_BYTES + 2,
                                       70000 };
        unsigned seed = 12345;
        struct segops_shim s;
        long checked = 0;

        memset(&s, 0, sizeof(s));
        for (size_t zi = 0; zi < sizeof(sizes) / sizeof(sizes[0]); zi++) {
                s.ring_size = sizes[zi];
                s.ring = malloc(s.ring_size);
                ck_assert_ptr_nonnull(s.ring);
                for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
                        size_t len = lens[li];

                        if (len > s.ring_size)
                                continue;
                        for (int t = 0; t < 200; t++) {
                                size_t room = s.ring_size - len, tail, extra;

                                /* Tails: anywhere, or so the first line
                                 * ends exactly at, or just past, the
                                 * ring's end. */
                                tail = (size_t)rand_r(&seed) % s.ring_size;
                                if (t % 4 == 0)
                                        tail = (s.ring_size - len) % s.ring_size;
                                if (t % 4 == 1)
                                        tail = (s.ring_size - len + 1) % s.ring_size;
                                extra = t % 3 == 0   ? 0
                                        : t % 3 == 1 ? (room ? 1 : 0)
                                                     : (size_t)rand_r(&seed) % (room + 1);
                                lay_out(&s, tail, len, extra, &seed);
                                check_layout(&s);
                                checked++;
                        }
                }
                free(s.ring);
        }
        ck_assert_int_gt(checked, 4000);
}
END_TEST

static Suite *ring_suite(void)
{
        Suite *s = suite_create("shim-ring");
        TCase *tc = tcase_create("ring");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_lines_around_the_datagram_size);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(ring_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
