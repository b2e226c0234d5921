/* test-urlshow.c - daemon/urlshow.c: an upstream URL as it is shown in
 * the log and in stats (suite "urlshow"). Pure functions: a table of
 * URLs and what may be shown of them. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "urlshow.h"

struct row {
        const char *in, *want;
};

START_TEST(test_strip_rows)
{
        static const struct row rows[] = {
                { "https://api.segops.io", "https://api.segops.io" },
                { "https://api.segops.io/base", "https://api.segops.io/base" },
                { "https://user:pass@api.segops.io", "https://api.segops.io" },
                { "https://user@api.segops.io:8443/x", "https://api.segops.io:8443/x" },
                { "https://u:p@[::1]:8443/x", "https://[::1]:8443/x" },
                { "http://127.0.0.1:9/?api_key=sk_live_x", "http://127.0.0.1:9/" },
                { "https://h/base#frag", "https://h/base" },
                { "https://h?q=1#f", "https://h" },
                /* a password with '@' or an unencoded '/' in it */
                { "https://u:p@ss@h/x", "https://h/x" },
                { "https://u:pa/ss@h/x", "https://h/x" },
                /* an '@' in the query is not userinfo */
                { "https://h/x?to=a@b", "https://h/x" },
                { "https://h/x?u=http://a:b@c", "https://h/x" },
                { "stdout", "stdout" },
                { "stdout?x", "stdout" },
                { "", "" },
        };

        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
                char out[128];
                int r = urlshow_strip(rows[i].in, out, sizeof(out));

                ck_assert_msg(strcmp(out, rows[i].want) == 0, "row %zu: '%s' gave '%s', want '%s'",
                              i, rows[i].in, out, rows[i].want);
                ck_assert_int_eq(r, (int)strlen(rows[i].want));
        }
}
END_TEST

START_TEST(test_strip_cut)
{
        char out[12];

        /* Cut to fit, terminated, and said so; never the userinfo. */
        ck_assert_int_eq(urlshow_strip("https://u:secret@host.example/x", out, sizeof(out)),
                         -ENOBUFS);
        ck_assert_str_eq(out, "https://hos");
        ck_assert_int_eq(urlshow_strip("https://h", out, 10), 9);
        ck_assert_int_eq(urlshow_strip("https://hh", out, 10), -ENOBUFS);
        ck_assert_str_eq(out, "https://h");
        ck_assert_int_eq(urlshow_strip(NULL, out, sizeof(out)), -EINVAL);
        ck_assert_int_eq(urlshow_strip("https://h", out, 0), -EINVAL);
}
END_TEST

START_TEST(test_authority)
{
        size_t n;
        const char *a = urlshow_authority("https://u:p@h:1/x?y", &n);

        ck_assert_ptr_nonnull(a);
        ck_assert_int_eq((int)n, (int)strlen("u:p@h:1"));
        ck_assert(strncmp(a, "u:p@h:1", n) == 0);
        a = urlshow_authority("http://h#f", &n);
        ck_assert(strncmp(a, "h", n) == 0 && n == 1);
        ck_assert_ptr_null(urlshow_authority("stdout", &n));
        ck_assert_int_eq((int)n, 0);
}
END_TEST

static Suite *urlshow_suite(void)
{
        Suite *s = suite_create("urlshow");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_strip_rows);
        tcase_add_test(tc, test_strip_cut);
        tcase_add_test(tc, test_authority);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(urlshow_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
