/* test-shim-encode.c - libshim's encoder (libshim/encode.c): the exact
 * lines it builds, string escaping, the invalid-UTF-8 decision (rejected
 * with -EINVAL), the cheap payload checks, occurred_at formatting and
 * the stack-to-heap switch for long lines. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim-internal.h"

static char buf[SHIM_STACK_LINE];
static struct shim_line l;

static void setup(void)
{
        shim_line_init(&l, buf, sizeof(buf));
}

static void teardown(void)
{
        shim_line_free(&l);
}

/* The encoded line as a string (it is not NUL-terminated). */
static const char *text(void)
{
        static char out[8192];

        ck_assert_uint_lt(l.len, sizeof(out));
        memcpy(out, l.p, l.len);
        out[l.len] = '\0';
        return out;
}

START_TEST(track_exact_line)
{
        ck_assert_int_eq(
                shim_encode_track(&l, "u1", "signup", 1795755600123LL, "{\"plan\":\"pro\"}"), 0);
        ck_assert_str_eq(text(), "{\"user_id\":\"u1\",\"event_type\":\"signup\","
                                 "\"occurred_at\":\"2026-11-27T05:00:00.123Z\","
                                 "\"payload\":{\"plan\":\"pro\"}}\n");
}
END_TEST

START_TEST(null_payload_is_empty_object)
{
        ck_assert_int_eq(shim_encode_track(&l, "u", "t", 0, NULL), 0);
        ck_assert_str_eq(text(), "{\"user_id\":\"u\",\"event_type\":\"t\","
                                 "\"occurred_at\":\"1970-01-01T00:00:00.000Z\","
                                 "\"payload\":{}}\n");
}
END_TEST

START_TEST(escapes_quotes_backslashes_controls)
{
        ck_assert_int_eq(shim_encode_track(&l, "a\"b\\c", "x\n\t\r\b\f\x01\x1f\x7f", 0, NULL), 0);
        ck_assert_ptr_nonnull(strstr(text(), "\"user_id\":\"a\\\"b\\\\c\""));
        ck_assert_ptr_nonnull(
                strstr(text(), "\"event_type\":\"x\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\""));
        /* One line: the only raw newline is the terminator. */
        ck_assert_ptr_eq(memchr(l.p, '\n', l.len), l.p + l.len - 1);
}
END_TEST

START_TEST(utf8_valid_passes_through)
{
        ck_assert_int_eq(
                shim_encode_track(&l, "caf\xc3\xa9", "\xe2\x82\xac\xf0\x9f\x98\x80", 0, NULL), 0);
        ck_assert_ptr_nonnull(strstr(text(), "\"caf\xc3\xa9\""));
        ck_assert_ptr_nonnull(strstr(text(), "\"\xe2\x82\xac\xf0\x9f\x98\x80\""));
}
END_TEST

START_TEST(utf8_invalid_rejected)
{
        static const char *bad[] = {
                "\xff",
                "\xc3",
                "a\x80",
                "\xc0\xaf",         /* overlong '/' */
                "\xe0\x80\xaf",     /* overlong */
                "\xed\xa0\x80",     /* surrogate U+D800 */
                "\xf4\x90\x80\x80", /* U+110000 */
                "\xe2\x82",         /* truncated */
        };
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                shim_line_free(&l);
                shim_line_init(&l, buf, sizeof(buf));
                ck_assert_int_eq(shim_encode_track(&l, bad[i], "t", 0, NULL), -EINVAL);
                shim_line_free(&l);
                shim_line_init(&l, buf, sizeof(buf));
                ck_assert_int_eq(shim_encode_track(&l, "u", "t", 0, "{\"s\":\"x\"}"), 0);
                shim_line_free(&l);
                shim_line_init(&l, buf, sizeof(buf));
                {
                        char p[32];

                        snprintf(p, sizeof(p), "{\"s\":\"%s\"}", bad[i]);
                        ck_assert_int_eq(shim_encode_track(&l, "u", "t", 0, p), -EINVAL);
                }
        }
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        ck_assert_int_eq(shim_encode_track(&l, "\xf8\x88\x80\x80\x80", "t", 0, NULL), -EINVAL);
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        ck_assert_int_eq(shim_encode_track(&l, "\xf4\x8f\xbf\xbf", "t", 0, NULL), 0); /* U+10FFFF */
}
END_TEST

START_TEST(field_lengths)
{
        char u[258];

        memset(u, 'u', sizeof(u));
        u[256] = '\0';
        ck_assert_int_eq(shim_encode_track(&l, u, "t", 0, NULL), 0);
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        u[256] = 'u';
        u[257] = '\0';
        ck_assert_int_eq(shim_encode_track(&l, u, "t", 0, NULL), -EINVAL);
        ck_assert_int_eq(shim_encode_track(&l, "", "t", 0, NULL), -EINVAL);
        ck_assert_int_eq(shim_encode_track(&l, "u", "", 0, NULL), -EINVAL);
        ck_assert_int_eq(shim_encode_track(&l, NULL, "t", 0, NULL), -EINVAL);
        ck_assert_int_eq(shim_encode_track(&l, "u", NULL, 0, NULL), -EINVAL);
        memset(u, 't', 129);
        u[129] = '\0';
        ck_assert_int_eq(shim_encode_track(&l, "u", u, 0, NULL), -EINVAL);
}
END_TEST

START_TEST(payload_cheap_checks)
{
        static const char *bad[] = { "", "   ", "[]", "{", "}", "\"x\"", "1", "{} x", "x {}" };
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_int_eq(shim_encode_track(&l, "u", "t", 0, bad[i]), -EINVAL);
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        /* Whitespace trimmed; raw CR/LF inside become spaces. */
        ck_assert_int_eq(shim_encode_track(&l, "u", "t", 0, " \r\n{\"a\":\r\n1}\n "), 0);
        ck_assert_ptr_nonnull(strstr(text(), "\"payload\":{\"a\":  1}}\n"));
        ck_assert_ptr_eq(memchr(l.p, '\n', l.len), l.p + l.len - 1);
        ck_assert_ptr_null(memchr(l.p, '\r', l.len));
}
END_TEST

START_TEST(track_at_time_format)
{
        ck_assert_int_eq(shim_encode_track(&l, "u", "t", -1500, NULL), 0);
        ck_assert_ptr_nonnull(strstr(text(), "\"1969-12-31T23:59:58.500Z\""));
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        ck_assert_int_eq(shim_encode_track(&l, "u", "t", 951782400999LL, NULL), 0);
        ck_assert_ptr_nonnull(strstr(text(), "\"2000-02-29T00:00:00.999Z\""));
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        /* Clamped to what four year digits hold. */
        ck_assert_int_eq(shim_encode_track(&l, "u", "t", INT64_MAX, NULL), 0);
        ck_assert_ptr_nonnull(strstr(text(), "\"9999-12-31T23:59:59.999Z\""));
}
END_TEST

START_TEST(identify_and_ops)
{
        ck_assert_int_eq(shim_encode_identify(&l, "u1", 0, "{\"plan\":1}"), 0);
        ck_assert_str_eq(text(), "{\"type\":\"identify\",\"user_id\":\"u1\","
                                 "\"occurred_at\":\"1970-01-01T00:00:00.000Z\","
                                 "\"traits\":{\"plan\":1}}\n");
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        ck_assert_int_eq(shim_encode_set_user(&l, "u\"1", NULL), 0);
        ck_assert_str_eq(text(), "{\"op\":\"set_user\",\"user_id\":\"u\\\"1\"}\n");
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        ck_assert_int_eq(shim_encode_set_user(&l, "u1", "abc"), 0);
        ck_assert_str_eq(text(), "{\"op\":\"set_user\",\"user_id\":\"u1\","
                                 "\"user_id_sig\":\"abc\"}\n");
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        ck_assert_int_eq(shim_encode_set_user(&l, "u1", ""), -EINVAL);
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        ck_assert_int_eq(shim_encode_reset_session(&l), 0);
        ck_assert_str_eq(text(), "{\"op\":\"reset_session\"}\n");
}
END_TEST

START_TEST(client_dropped_line)
{
        char out[96];
        size_t n = shim_encode_dropped(out, sizeof(out), 1234567, 4321);
        const char *want = "{\"op\":\"client_dropped\",\"count\":1234567,\"pid\":4321}\n";

        ck_assert_uint_eq(n, strlen(want));
        ck_assert(memcmp(out, want, n) == 0);
        want = "{\"op\":\"client_dropped\",\"count\":9007199254740991}\n";
        n = shim_encode_dropped(out, sizeof(out), UINT64_MAX, 0); /* capped 2^53-1 */
        ck_assert_uint_eq(n, strlen(want));
        ck_assert(memcmp(out, want, n) == 0);
        ck_assert_uint_eq(shim_encode_dropped(out, 10, 1, 1), 0);
}
END_TEST

START_TEST(long_line_moves_to_heap_and_caps)
{
        size_t n = 200 * 1024;
        char *p = malloc(n + 16);

        ck_assert_ptr_nonnull(p);
        p[0] = '{';
        memset(p + 1, ' ', n);
        memcpy(p + 1 + n, "}", 2);
        ck_assert_int_eq(shim_encode_track(&l, "u", "t", 0, p), 0);
        ck_assert_ptr_nonnull(l.heap);
        ck_assert_ptr_eq(l.p, l.heap);
        ck_assert_uint_gt(l.len, n);
        ck_assert(memcmp(l.p, "{\"user_id\":\"u\"", 14) == 0);
        free(p);
        shim_line_free(&l);
        shim_line_init(&l, buf, sizeof(buf));
        n = SHIM_MAX_LINE;
        p = malloc(n + 16);
        ck_assert_ptr_nonnull(p);
        p[0] = '{';
        memset(p + 1, ' ', n);
        memcpy(p + 1 + n, "}", 2);
        ck_assert_int_eq(shim_encode_track(&l, "u", "t", 0, p), -EMSGSIZE);
        free(p);
}
END_TEST

static Suite *shim_encode_suite(void)
{
        Suite *s = suite_create("shim-encode");
        TCase *tc = tcase_create("encode");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, track_exact_line);
        tcase_add_test(tc, null_payload_is_empty_object);
        tcase_add_test(tc, escapes_quotes_backslashes_controls);
        tcase_add_test(tc, utf8_valid_passes_through);
        tcase_add_test(tc, utf8_invalid_rejected);
        tcase_add_test(tc, field_lengths);
        tcase_add_test(tc, payload_cheap_checks);
        tcase_add_test(tc, track_at_time_format);
        tcase_add_test(tc, identify_and_ops);
        tcase_add_test(tc, client_dropped_line);
        tcase_add_test(tc, long_line_moves_to_heap_and_caps);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(shim_encode_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
