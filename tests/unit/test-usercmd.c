/* test-usercmd.c - user_context_command (daemon/usercmd.c): how the
 * command line is split into words (quotes, escapes, unbalanced quotes,
 * limits), and running real programs on a real libuv loop: a good
 * identity, one that hangs past the timeout, crashes, prints garbage,
 * prints 10 MB, exits non-zero, does not exist, and that it runs with a
 * scrubbed environment and stdin from /dev/null. Every run ends with
 * uv_loop_close() == 0, i.e. no handle is left behind. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "usercmd.h"

/* ---- splitting ---------------------------------------------------------- */

#define MAXA 16

static int split(const char *cmd, char *buf, size_t buflen, char **argv)
{
        return usercmd_split(cmd, buf, buflen, argv, MAXA);
}

START_TEST(split_plain_words)
{
        char buf[256], *argv[MAXA];

        ck_assert_int_eq(split("  /bin/echo\thello   world \t", buf, sizeof(buf), argv), 3);
        ck_assert_str_eq(argv[0], "/bin/echo");
        ck_assert_str_eq(argv[1], "hello");
        ck_assert_str_eq(argv[2], "world");
        ck_assert_ptr_null(argv[3]);
}
END_TEST

START_TEST(split_single_quotes_are_literal)
{
        char buf[256], *argv[MAXA];

        /* Inside '...' nothing is special: not spaces, not \, not ". */
        ck_assert_int_eq(split("cmd 'a b\\n \"c\"' x", buf, sizeof(buf), argv), 3);
        ck_assert_str_eq(argv[1], "a b\\n \"c\"");
        ck_assert_str_eq(argv[2], "x");
        ck_assert_ptr_null(argv[3]);
}
END_TEST

START_TEST(split_double_quotes_and_escapes)
{
        char buf[256], *argv[MAXA];

        ck_assert_int_eq(split("cmd \"a \\\"b\\\" \\\\ c\" 'q'", buf, sizeof(buf), argv), 3);
        ck_assert_str_eq(argv[1], "a \"b\" \\ c");
        ck_assert_str_eq(argv[2], "q");

        /* Outside quotes a backslash escapes the next character. */
        ck_assert_int_eq(split("cmd a\\ b \\'x", buf, sizeof(buf), argv), 3);
        ck_assert_str_eq(argv[1], "a b");
        ck_assert_str_eq(argv[2], "'x");

        /* A trailing lone backslash stays a backslash. */
        ck_assert_int_eq(split("cmd x\\", buf, sizeof(buf), argv), 2);
        ck_assert_str_eq(argv[1], "x\\");
}
END_TEST

START_TEST(split_adjacent_parts_join_and_empty_quotes)
{
        char buf[256], *argv[MAXA];

        ck_assert_int_eq(split("a'b c'\"d e\"f '' \"\"", buf, sizeof(buf), argv), 3);
        ck_assert_str_eq(argv[0], "ab cd ef");
        ck_assert_str_eq(argv[1], "");
        ck_assert_str_eq(argv[2], "");
        ck_assert_ptr_null(argv[3]);
}
END_TEST

START_TEST(split_unbalanced_quotes)
{
        char buf[256], *argv[MAXA];

        ck_assert_int_eq(split("cmd 'abc", buf, sizeof(buf), argv), -EINVAL);
        ck_assert_int_eq(split("cmd \"abc", buf, sizeof(buf), argv), -EINVAL);
        /* The escaped quote does not close the string. */
        ck_assert_int_eq(split("cmd \"abc\\\"", buf, sizeof(buf), argv), -EINVAL);
        ck_assert_int_eq(split("'", buf, sizeof(buf), argv), -EINVAL);
        ck_assert_int_eq(split("cmd 'a'b'", buf, sizeof(buf), argv), -EINVAL);
}
END_TEST

START_TEST(split_empty)
{
        char buf[256], *argv[MAXA];

        ck_assert_int_eq(split("", buf, sizeof(buf), argv), -EINVAL);
        ck_assert_int_eq(split(" \t  ", buf, sizeof(buf), argv), -EINVAL);
}
END_TEST

START_TEST(split_too_many_args)
{
        char buf[256], *argv[4];

        /* max_args counts the terminating NULL: 3 words fit in 4. */
        ck_assert_int_eq(usercmd_split("a b c", buf, sizeof(buf), argv, 4), 3);
        ck_assert_ptr_null(argv[3]);
        ck_assert_int_eq(usercmd_split("a b c d", buf, sizeof(buf), argv, 4), -EINVAL);
        ck_assert_int_eq(usercmd_split("a b c d e f g", buf, sizeof(buf), argv, 4), -EINVAL);
}
END_TEST

START_TEST(split_too_long)
{
        char buf[8], *argv[MAXA];

        ck_assert_int_eq(split("abcdefg", buf, sizeof(buf), argv), 1); /* 7 + NUL fits */
        ck_assert_str_eq(argv[0], "abcdefg");
        ck_assert_int_eq(split("abcdefgh", buf, sizeof(buf), argv), -EINVAL);
        ck_assert_int_eq(split("a b c d", buf, sizeof(buf), argv), 4);
        ck_assert_str_eq(argv[3], "d");
}
END_TEST

/* ---- running ------------------------------------------------------------ */

struct run {
        uv_loop_t loop;
        struct usercmd *u;
        int calls;
        int error;
        char why[256];
        char user_id[PROTO_USER_ID_MAX + 1];
        char sig[PROTO_USER_ID_SIG_MAX + 1];
        double elapsed;
        int ret;
        char spawn_why[256];
};

static void on_done(void *ud, const struct usercmd_result *res)
{
        struct run *r = ud;

        r->calls++;
        r->error = res->error;
        snprintf(r->why, sizeof(r->why), "%s", res->error && res->why ? res->why : "");
        snprintf(r->user_id, sizeof(r->user_id), "%s", res->user_id);
        snprintf(r->sig, sizeof(r->sig), "%s", res->user_id_sig);
}

static double mono(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run command to completion; the loop must then close cleanly. */
static void run_cmd(struct run *r, const char *command, double timeout_s, size_t max_output)
{
        double t0;

        memset(r, 0, sizeof(*r));
        ck_assert_int_eq(uv_loop_init(&r->loop), 0);
        t0 = mono();
        r->ret = usercmd_run(&r->loop, command, timeout_s, max_output, on_done, r, &r->u,
                             r->spawn_why, sizeof(r->spawn_why));
        ck_assert_int_eq(uv_run(&r->loop, UV_RUN_DEFAULT), 0);
        r->elapsed = mono() - t0;
        ck_assert_int_eq(uv_loop_close(&r->loop), 0);
        if (r->ret == 0)
                ck_assert_int_eq(r->calls, 1);
        else
                ck_assert_int_eq(r->calls, 0);
}

START_TEST(run_good_identity)
{
        struct run r;

        run_cmd(&r, "/bin/echo '{\"user_id\": \"u-42\", \"user_id_sig\": \"ab12\"}'", 5, 65536);
        ck_assert_int_eq(r.ret, 0);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "u-42");
        ck_assert_str_eq(r.sig, "ab12");

        run_cmd(&r, "/bin/echo '{\"user_id\":\"solo\"}'", 5, 65536);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "solo");
        ck_assert_str_eq(r.sig, "");

        run_cmd(&r, "/bin/echo '{\"user_id\": \"n\", \"user_id_sig\": null}'", 5, 65536);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "n");
        ck_assert_str_eq(r.sig, "");
}
END_TEST

START_TEST(run_found_through_scrubbed_path)
{
        struct run r;

        /* A bare name is looked up on the scrubbed PATH. */
        run_cmd(&r, "echo '{\"user_id\": \"via-path\"}'", 5, 65536);
        ck_assert_int_eq(r.ret, 0);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "via-path");
}
END_TEST

START_TEST(run_hang_times_out)
{
        struct run r;

        run_cmd(&r, "/bin/sleep 30", 0.5, 65536);
        ck_assert_int_eq(r.ret, 0);
        ck_assert_int_lt(r.error, 0);
        ck_assert_msg(strstr(r.why, "user_context_timeout") != NULL, "why: %s", r.why);
        ck_assert_msg(r.elapsed >= 0.45 && r.elapsed < 1.5, "took %.3f s", r.elapsed);
}
END_TEST

START_TEST(run_hang_with_grandchild_holding_stdout)
{
        struct run r;

        /* The shell is killed, but a grandchild keeps the pipe open: the
         * result must still come at the timeout, not when it exits. */
        run_cmd(&r, "/bin/sh -c '/bin/sleep 4 & /bin/sleep 30'", 0.5, 65536);
        ck_assert_int_lt(r.error, 0);
        ck_assert_msg(r.elapsed < 1.5, "took %.3f s", r.elapsed);
}
END_TEST

START_TEST(run_crash)
{
        struct run r;

        /* The same script without the crash is fine: only the signal fails it. */
        run_cmd(&r, "/bin/sh -c \"echo '{\\\"user_id\\\":\\\"x\\\"}'; exit 0\"", 5, 65536);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "x");

        run_cmd(&r, "/bin/sh -c \"echo '{\\\"user_id\\\":\\\"x\\\"}'; kill -SEGV $$\"", 5, 65536);
        ck_assert_int_eq(r.ret, 0);
        ck_assert_int_lt(r.error, 0);
        ck_assert_msg(strstr(r.why, "signal") != NULL, "why: %s", r.why);
        ck_assert_str_eq(r.user_id, "");
}
END_TEST

START_TEST(run_garbage)
{
        static const char *const bad[] = {
                "/bin/echo 'this is not json'",
                "/bin/echo '[\"user_id\"]'",
                "/bin/echo '{\"user_id\": 5}'",
                "/bin/echo '{\"user_id\": \"\"}'",
                "/bin/echo '{\"user_id\": \"a\", \"extra\": 1}'",
                "/bin/echo '{\"user_id\": \"a\", \"user_id\": \"b\"}'",
                "/bin/echo '{\"user_id\": \"a\", \"user_id_sig\": 7}'",
                "/bin/echo '{\"user_id\": \"a\\u0000b\"}'",
                "/bin/sh -c 'printf \"{\\\"user_id\\\": \\\"%0300d\\\"}\" 0'", /* 300 bytes */
                "/bin/true",
        };
        struct run r;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                run_cmd(&r, bad[i], 5, 65536);
                ck_assert_int_eq(r.ret, 0);
                ck_assert_msg(r.error < 0, "accepted [%zu] %s as user_id '%s'", i, bad[i],
                              r.user_id);
                ck_assert_msg(r.why[0] != '\0', "no reason for %s", bad[i]);
        }
}
END_TEST

START_TEST(run_huge_output)
{
        struct run r;

        run_cmd(&r, "/bin/sh -c 'head -c 10000000 /dev/zero | tr \"\\\\0\" x'", 5, 65536);
        ck_assert_int_eq(r.ret, 0);
        ck_assert_int_lt(r.error, 0);
        ck_assert_msg(strstr(r.why, "user_context_max_output") != NULL, "why: %s", r.why);
        ck_assert_msg(r.elapsed < 2.0, "took %.3f s", r.elapsed);

        run_cmd(&r, "python3 -c 'import sys; sys.stdout.write(\"y\" * 10000000)'", 5, 65536);
        ck_assert_int_lt(r.error, 0);
        ck_assert_msg(strstr(r.why, "user_context_max_output") != NULL, "why: %s", r.why);
}
END_TEST

START_TEST(run_output_cap_boundary)
{
        struct run r;

        /* {"user_id":"ab"} is 16 bytes: exactly the cap is fine... */
        run_cmd(&r, "/bin/sh -c 'printf %s \"{\\\"user_id\\\":\\\"ab\\\"}\"'", 5, 16);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "ab");
        /* ...one more byte (echo's newline) is too much. */
        run_cmd(&r, "/bin/echo '{\"user_id\":\"ab\"}'", 5, 16);
        ck_assert_int_lt(r.error, 0);
        ck_assert_msg(strstr(r.why, "user_context_max_output") != NULL, "why: %s", r.why);
}
END_TEST

START_TEST(run_nonzero_exit)
{
        struct run r;

        run_cmd(&r, "/bin/sh -c \"echo '{\\\"user_id\\\":\\\"x\\\"}'; exit 3\"", 5, 65536);
        ck_assert_int_eq(r.ret, 0);
        ck_assert_int_lt(r.error, 0);
        ck_assert_msg(strstr(r.why, "non-zero") != NULL, "why: %s", r.why);
        ck_assert_str_eq(r.user_id, "");
}
END_TEST

START_TEST(run_missing_program)
{
        struct run r;

        run_cmd(&r, "/nonexistent/segops-identity --flag", 5, 65536);
        ck_assert_int_lt(r.ret, 0);
        ck_assert_msg(strstr(r.spawn_why, "/nonexistent/segops-identity") != NULL, "why: %s",
                      r.spawn_why);

        run_cmd(&r, "segops-no-such-program-anywhere", 5, 65536);
        ck_assert_int_lt(r.ret, 0);
}
END_TEST

START_TEST(run_unsplittable)
{
        struct run r;

        run_cmd(&r, "/bin/echo 'unbalanced", 5, 65536);
        ck_assert_int_eq(r.ret, -EINVAL);
        ck_assert_msg(r.spawn_why[0] != '\0', "no reason");
        run_cmd(&r, "   ", 5, 65536);
        ck_assert_int_eq(r.ret, -EINVAL);
}
END_TEST

START_TEST(run_environment_is_scrubbed)
{
        struct run r;

        ck_assert_int_eq(setenv("HOME", "/home/segops-test", 1), 0);
        ck_assert_int_eq(setenv("SEGOPS_TEST_SECRET", "hunter2", 1), 0);
        run_cmd(&r, "/bin/sh -c 'printf \"{\\\"user_id\\\": \\\"%s\\\"}\" \"${HOME:-unset}\"'", 5,
                65536);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "unset");

        run_cmd(&r,
                "/bin/sh -c 'printf \"{\\\"user_id\\\": \\\"%s\\\"}\" "
                "\"${SEGOPS_TEST_SECRET:-unset}\"'",
                5, 65536);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "unset");

        /* Only PATH and LANG (and what sh itself sets) remain. */
        run_cmd(&r,
                "/bin/sh -c 'printf \"{\\\"user_id\\\": \\\"%s\\\"}\" "
                "\"$(env | cut -d= -f1 | grep -v -e ^PWD$ -e ^SHLVL$ -e ^_$ | sort | "
                "tr \"\\n\" ,)\"'",
                5, 65536);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "LANG,PATH,");
}
END_TEST

START_TEST(run_stdin_is_dev_null_and_stderr_ignored)
{
        struct run r;

        /* cat would wait forever on an inherited terminal or pipe. */
        run_cmd(&r, "/bin/sh -c \"cat; echo noise >&2; echo '{\\\"user_id\\\":\\\"in-ok\\\"}'\"", 2,
                65536);
        ck_assert_msg(r.error == 0, "error %d: %s", r.error, r.why);
        ck_assert_str_eq(r.user_id, "in-ok");
        ck_assert_msg(r.elapsed < 1.5, "took %.3f s", r.elapsed);
}
END_TEST

START_TEST(run_cancel)
{
        struct run r;
        double t0;

        memset(&r, 0, sizeof(r));
        ck_assert_int_eq(uv_loop_init(&r.loop), 0);
        ck_assert_int_eq(usercmd_run(&r.loop, "/bin/sleep 30", 10, 65536, on_done, &r, &r.u,
                                     r.spawn_why, sizeof(r.spawn_why)),
                         0);
        uv_run(&r.loop, UV_RUN_NOWAIT);
        t0 = mono();
        usercmd_cancel(r.u);
        ck_assert_int_eq(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
        ck_assert_msg(mono() - t0 < 1.5, "cancel took %.3f s", mono() - t0);
        ck_assert_int_eq(r.calls, 0);
        ck_assert_int_eq(uv_loop_close(&r.loop), 0);
        usercmd_cancel(NULL); /* harmless */
}
END_TEST

START_TEST(run_two_at_once)
{
        struct run a, b;
        uv_loop_t loop;

        /* Two commands on one loop finish independently. */
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        ck_assert_int_eq(uv_loop_init(&loop), 0);
        ck_assert_int_eq(usercmd_run(&loop, "/bin/sleep 30", 0.3, 65536, on_done, &a, &a.u,
                                     a.spawn_why, sizeof(a.spawn_why)),
                         0);
        ck_assert_int_eq(usercmd_run(&loop, "/bin/echo '{\"user_id\":\"b\"}'", 5, 65536, on_done,
                                     &b, &b.u, b.spawn_why, sizeof(b.spawn_why)),
                         0);
        ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
        ck_assert_int_eq(uv_loop_close(&loop), 0);
        ck_assert_int_eq(a.calls, 1);
        ck_assert_int_lt(a.error, 0);
        ck_assert_int_eq(b.calls, 1);
        ck_assert_int_eq(b.error, 0);
        ck_assert_str_eq(b.user_id, "b");
}
END_TEST

static Suite *usercmd_suite(void)
{
        Suite *s = suite_create("usercmd");
        TCase *t = tcase_create("split");

        tcase_add_test(t, split_plain_words);
        tcase_add_test(t, split_single_quotes_are_literal);
        tcase_add_test(t, split_double_quotes_and_escapes);
        tcase_add_test(t, split_adjacent_parts_join_and_empty_quotes);
        tcase_add_test(t, split_unbalanced_quotes);
        tcase_add_test(t, split_empty);
        tcase_add_test(t, split_too_many_args);
        tcase_add_test(t, split_too_long);
        suite_add_tcase(s, t);

        t = tcase_create("run");
        tcase_set_timeout(t, 20);
        tcase_add_test(t, run_good_identity);
        tcase_add_test(t, run_found_through_scrubbed_path);
        tcase_add_test(t, run_hang_times_out);
        tcase_add_test(t, run_hang_with_grandchild_holding_stdout);
        tcase_add_test(t, run_crash);
        tcase_add_test(t, run_garbage);
        tcase_add_test(t, run_huge_output);
        tcase_add_test(t, run_output_cap_boundary);
        tcase_add_test(t, run_nonzero_exit);
        tcase_add_test(t, run_missing_program);
        tcase_add_test(t, run_unsplittable);
        tcase_add_test(t, run_environment_is_scrubbed);
        tcase_add_test(t, run_stdin_is_dev_null_and_stderr_ignored);
        tcase_add_test(t, run_cancel);
        tcase_add_test(t, run_two_at_once);
        suite_add_tcase(s, t);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(usercmd_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
