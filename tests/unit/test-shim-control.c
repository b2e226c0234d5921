/* test-shim-control.c - libshim's control-socket client (libshim/control.c,
 * shim_control): a daemon that turns a connection away as busy
 * ({"ok":false,"error":"too_many_connections"} and close) is tried again
 * within the deadline, whichever way the refusal meets the request.
 *
 * A fake daemon thread listens where the shim derives its control socket
 * (beside the events socket, which does not exist here, so a track call
 * is a counted drop). The two orders are made deterministic, not left to
 * the scheduler:
 *   - refused before the shim's send(): this binary is linked with
 *     -Wl,--wrap=send (only the control request uses send(); datagrams
 *     use sendmsg), and __wrap_send waits until the peer has hung up
 *     before the real send, which then fails with EPIPE;
 *   - refused after the request arrived: the fake daemon waits until the
 *     request is readable and closes without reading it, so the shim reads
 *     the refusal line and then gets ECONNRESET.
 * The shim must read the refusal in both cases and try again. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim-internal.h"

#define REFUSAL                                                                                    \
        "{\"ok\":false,\"error\":\"too_many_connections\","                                        \
        "\"detail\":\"segopsd is at max_connections; try again later\"}\n"
#define FLUSH_PREFIX "{\"op\":\"flush\",\"timeout_ms\":"
#define WAIT_MS 5000 /* bound on every wait here: a hang fails, not blocks */

/* ---- send(), wrapped ---- */

ssize_t __real_send(int fd, const void *buf, size_t n, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t n, int flags);

/* Sends still to hold until the peer hung up. Only the caller's thread
 * (the one in segops_flush) sends, so no lock. */
static int hold_sends_for_hangup;

ssize_t __wrap_send(int fd, const void *buf, size_t n, int flags)
{
        if (hold_sends_for_hangup > 0) {
                struct pollfd p = { .fd = fd, .events = POLLRDHUP };

                hold_sends_for_hangup--;
                ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
                ck_assert(p.revents & (POLLRDHUP | POLLHUP));
        }
        return __real_send(fd, buf, n, flags);
}

/* ---- the fake daemon ---- */

struct fake {
        int lfd;
        int refusals;       /* connections turned away first */
        bool after_request; /* refuse once the request is there, unread */
        int serves;         /* then connections answered properly */
        int accepted;
        char got[4096]; /* what the answered connections sent */
        size_t got_len;
};

static char dir[48], events_path[80], ctl_path[80];

static int accept_within(int lfd)
{
        struct pollfd p = { .fd = lfd, .events = POLLIN };

        if (poll(&p, 1, WAIT_MS) != 1)
                return -1;
        return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

/* Read the request up to its flush line, answer each line. */
static void serve(struct fake *f, int cfd)
{
        size_t start = f->got_len;
        char reply[256];
        size_t rn = 0;

        for (;;) {
                struct pollfd p = { .fd = cfd, .events = POLLIN };
                ssize_t k;

                ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
                k = read(cfd, f->got + f->got_len, sizeof(f->got) - 1 - f->got_len);
                ck_assert_int_gt(k, 0);
                f->got_len += (size_t)k;
                f->got[f->got_len] = '\0';
                if (strstr(f->got + start, "\"op\":\"flush\"") && f->got[f->got_len - 1] == '\n')
                        break;
        }
        for (const char *l = f->got + start, *nl; (nl = strchr(l, '\n')) != NULL; l = nl + 1) {
                static const char dropped[] = "{\"ok\":true}\n",
                                  flushed[] = "{\"ok\":true,\"flushed\":0}\n";
                bool d = memmem(l, (size_t)(nl - l), "client_dropped", 14) != NULL;
                size_t an = d ? sizeof(dropped) - 1 : sizeof(flushed) - 1;

                ck_assert_uint_le(rn + an, sizeof(reply));
                memcpy(reply + rn, d ? dropped : flushed, an);
                rn += an;
        }
        ck_assert_int_eq(write(cfd, reply, rn), (ssize_t)rn);
}

static void *fake_main(void *arg)
{
        struct fake *f = arg;

        for (int i = 0; i < f->refusals + f->serves; i++) {
                int cfd = accept_within(f->lfd);

                if (cfd < 0)
                        break; /* the shim gave up: the test says so */
                f->accepted++;
                if (i >= f->refusals) {
                        serve(f, cfd);
                } else {
                        if (f->after_request) {
                                struct pollfd p = { .fd = cfd, .events = POLLIN };

                                ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
                        }
                        ck_assert_int_eq(write(cfd, REFUSAL, sizeof(REFUSAL) - 1),
                                         (ssize_t)sizeof(REFUSAL) - 1);
                }
                close(cfd);
        }
        return NULL;
}

static void fake_start(struct fake *f, pthread_t *t)
{
        struct sockaddr_un a = { .sun_family = AF_UNIX };

        f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(f->lfd, 0);
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", ctl_path);
        unlink(ctl_path); /* left by a test that failed before fake_stop */
        ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        ck_assert_int_eq(listen(f->lfd, 16), 0);
        ck_assert_int_eq(pthread_create(t, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f, pthread_t t)
{
        pthread_join(t, NULL);
        close(f->lfd);
        unlink(ctl_path);
}

/* Once per test case, in the runner's own process: a test that fails
 * exits its forked child without a checked teardown, and the directory
 * must still go. */
static void setup(void)
{
        snprintf(dir, sizeof(dir), "/tmp/segops-shim-ctl-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(events_path, sizeof(events_path), "%s/events.sock", dir);
        snprintf(ctl_path, sizeof(ctl_path), "%s/segopsd.sock", dir);
        unsetenv("SEGOPS_CONTROL_SOCKET");
}

static void teardown(void)
{
        unlink(ctl_path);
        rmdir(dir);
}

static segops_shim *open_shim(void)
{
        segops_shim *s = NULL;

        ck_assert_int_eq(segops_shim_open(&s, events_path), 0);
        return s;
}

/* Turned away before the request went out (send() fails with EPIPE):
 * flush reads the refusal, tries again, and gets its answer. */
START_TEST(test_refused_before_send_is_retried)
{
        struct fake f = { .refusals = 3, .serves = 1 };
        segops_shim *s = open_shim();
        pthread_t t;

        fake_start(&f, &t);
        hold_sends_for_hangup = 3;
        ck_assert_int_eq(segops_flush(s, WAIT_MS), 0);
        fake_stop(&f, t);
        ck_assert_int_eq(hold_sends_for_hangup, 0);
        ck_assert_int_eq(f.accepted, 4);
        /* One request, on the answered connection: the flush alone. */
        ck_assert_msg(!strncmp(f.got, FLUSH_PREFIX, sizeof(FLUSH_PREFIX) - 1) &&
                              strchr(f.got, '\n') == f.got + f.got_len - 1,
                      "got %s", f.got);
        segops_shim_close(s);
}
END_TEST

/* Turned away after the request arrived, unread (the shim reads the
 * refusal, then ECONNRESET), with a drop to report, so two reply lines
 * are awaited: one refusal line is enough to know, and to try again. The
 * drop is reported once, by the connection that was answered. */
START_TEST(test_refused_after_request_is_retried)
{
        struct fake f = { .refusals = 3, .after_request = true, .serves = 1 };
        segops_shim *s = open_shim();
        pthread_t t;

        /* No events socket: a counted drop, reported on the next flush. */
        ck_assert_int_lt(segops_track(s, "u", "e", NULL), 0);
        ck_assert_uint_eq(segops_dropped(s), 1);
        fake_start(&f, &t);
        ck_assert_int_eq(segops_flush(s, WAIT_MS), 0);
        fake_stop(&f, t);
        ck_assert_int_eq(f.accepted, 4);
        ck_assert_ptr_nonnull(strstr(f.got, "{\"op\":\"client_dropped\",\"count\":1}\n"));
        ck_assert_ptr_nonnull(strstr(f.got, "}\n" FLUSH_PREFIX));

        /* Reported: the next flush carries no client_dropped. */
        f = (struct fake){ .serves = 1 };
        fake_start(&f, &t);
        ck_assert_int_eq(segops_flush(s, WAIT_MS), 0);
        fake_stop(&f, t);
        ck_assert_ptr_null(strstr(f.got, "client_dropped"));
        segops_shim_close(s);
}
END_TEST

/* Busy for longer than the deadline: flush gives up in time, with the
 * refusal's answer (-EIO), or -ETIMEDOUT when the deadline passes in the
 * middle of an attempt (a loaded machine), never "not running". */
START_TEST(test_busy_past_the_deadline_gives_up_in_time)
{
        struct fake f = { .refusals = 1000 };
        segops_shim *s = open_shim();
        pthread_t t;
        int64_t t0;
        int r;

        fake_start(&f, &t);
        hold_sends_for_hangup = 1000;
        t0 = shim_now_ms();
        r = segops_flush(s, 200);
        hold_sends_for_hangup = 0;
        ck_assert_int_lt(shim_now_ms() - t0, 200 + 1000);
        ck_assert_msg(r == -EIO || r == -ETIMEDOUT, "segops_flush gave %d", r);
        shutdown(f.lfd, SHUT_RDWR); /* wakes the fake daemon's accept */
        fake_stop(&f, t);
        ck_assert_int_gt(f.accepted, 1); /* it did try again */
        segops_shim_close(s);
}
END_TEST

static Suite *control_suite(void)
{
        Suite *s = suite_create("shim-control");
        TCase *tc = tcase_create("busy");

        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_refused_before_send_is_retried);
        tcase_add_test(tc, test_refused_after_request_is_retried);
        tcase_add_test(tc, test_busy_past_the_deadline_gives_up_in_time);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(control_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
