/* sender.c - libshim's sender thread and the events socket it sends on.
 *
 * Producers (the public calls) only append encoded lines to the ring
 * (ring.c) under the handle's mutex; one background thread, started
 * lazily at the first line, is the only one that sends. It packs as many
 * whole lines as fit in SHIM_DGRAM_BYTES into each datagram (the daemon's
 * socket holds only net.unix.max_dgram_qlen datagrams, so packing is
 * what makes bursts survive), sends with the mutex released so producers
 * never wait for a syscall, and on EAGAIN polls for POLLOUT while the
 * daemon drains its queue. Keeping the send off the caller's path is
 * what holds track() under a microsecond: a datagram send costs several.
 * Connecting is lazy and rate limited (SHIM_RECONNECT_MS), so "daemon
 * down" costs a clock read; a peer that vanished (daemon restarted) is
 * reconnected by the thread. Unreported drops lead the next datagram as
 * a client_dropped line. A line too long for a datagram goes out as a
 * memfd (memfd.c) when it reaches the tail.
 */
#include "shim-internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void close_socket_locked(struct segops_shim *s)
{
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
        s->connected = false;
}

int shim_connect_locked(struct segops_shim *s)
{
        int64_t now;
        int fd;

        if (s->connected)
                return 0;
        now = shim_now_ms();
        if (now < s->next_connect_ms)
                return s->down_err;
        /* An unlocked send may still be using the old socket; it is
         * closed by the thread once that send returned. */
        if (s->sending)
                return s->down_err ? s->down_err : -ENOTCONN;
        close_socket_locked(s);
        s->next_connect_ms = now + SHIM_RECONNECT_MS;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                s->down_err = -errno;
                return s->down_err;
        }
        if (connect(fd, (const struct sockaddr *)&s->addr, s->addr_len) < 0) {
                int e = errno;

                close(fd);
                s->down_err = (e == EACCES || e == EPERM) ? -EACCES : -ENOTCONN;
                return s->down_err;
        }
        s->fd = fd;
        s->connected = true;
        s->down_err = -ENOTCONN;
        return 0;
}

/* The absolute time ms_from_now ahead on shim_now_ms()'s clock, for the
 * timed waits (the condition variables wait on CLOCK_MONOTONIC). */
static void deadline_ts(struct timespec *ts, int64_t ms_from_now)
{
        int64_t at = shim_now_ms() + ms_from_now;

        ts->tv_sec = (time_t)(at / 1000);
        ts->tv_nsec = (long)(at % 1000) * 1000000L;
}

bool shim_send_failed_locked(struct segops_shim *s, int e)
{
        struct timespec ts;

        switch (e) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
        case EINTR: return false; /* the poll before this waited already */
        case ECONNREFUSED:
        case ECONNRESET:
        case ENOTCONN:
        case EPIPE:
        case EDESTADDRREQ:
                /* The daemon went away (restart): a new socket, right
                 * away once, then at the usual rate. */
                close_socket_locked(s);
                s->next_connect_ms = 0;
                return false;
        case ENOBUFS:
        case ENOMEM:
        case ETOOMANYREFS:
                /* The kernel is short (or too many fds in flight): soon. */
                deadline_ts(&ts, 10);
                pthread_cond_timedwait(&s->wake, &s->lock, &ts);
                return false;
        default: return true;
        }
}

void shim_wait_if_full(int sock, ssize_t k, int e)
{
        struct pollfd p = { .fd = sock, .events = POLLOUT };

        if (k < 0 && (e == EAGAIN || e == EWOULDBLOCK))
                (void)poll(&p, 1, SHIM_RECONNECT_MS);
}

/* Nothing to send: tell flush and close, and sleep until woken. */
static void wait_for_lines_locked(struct segops_shim *s)
{
        pthread_cond_broadcast(&s->drained);
        s->thread_idle = true;
        pthread_cond_wait(&s->wake, &s->lock);
        s->thread_idle = false;
}

/* Not connected: sleep until the next connect is allowed, or a wake. */
static void wait_to_connect_locked(struct segops_shim *s)
{
        int64_t wait = s->next_connect_ms - shim_now_ms();
        struct timespec ts;

        deadline_ts(&ts, wait > 0 ? wait : 1);
        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
}

/* The next datagram as iov[0..2] (*ret_iovcnt of them): a client_dropped
 * line in prefix when drops are unreported, then the whole lines from
 * the tail that fit. The drops are claimed now (*ret_reported; given
 * back if the send fails) so that a concurrent flush or close does not
 * report the same ones as well. Returns the ring's bytes in it. */
static size_t next_datagram_locked(struct segops_shim *s, char prefix[SHIM_DROPPED_LINE_MAX],
                                   struct iovec iov[3], int *ret_iovcnt, uint64_t *ret_reported)
{
        size_t plen = 0, n;
        int iovcnt = 0;

        *ret_reported = 0;
        if (s->unreported) {
                *ret_reported = s->unreported;
                s->unreported = 0;
                plen = shim_encode_dropped(prefix, SHIM_DROPPED_LINE_MAX, *ret_reported,
                                           (int32_t)getpid());
                iov[0].iov_base = prefix;
                iov[0].iov_len = plen;
        }
        n = shim_next_chunk_locked(s, iov + (plen ? 1 : 0), &iovcnt);
        *ret_iovcnt = iovcnt + (plen ? 1 : 0);
        return n;
}

/* Send the next datagram (lock held and connected; released while
 * sending). Its lines leave the ring once sent; on failure the claimed
 * drops are unreported again, and lines that can never go are dropped
 * and counted. */
static void send_datagram_locked(struct segops_shim *s)
{
        char prefix[SHIM_DROPPED_LINE_MAX];
        struct iovec iov[3];
        struct msghdr mh;
        uint64_t reported;
        int iovcnt, fd = s->fd, e;
        size_t n = next_datagram_locked(s, prefix, iov, &iovcnt, &reported);
        ssize_t k;

        s->sending = n;
        pthread_mutex_unlock(&s->lock);
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)iovcnt;
        k = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        e = errno;
        shim_wait_if_full(fd, k, e);
        pthread_mutex_lock(&s->lock);
        s->sending = 0;
        if (k >= 0) {
                shim_consume_locked(s, n);
                return;
        }
        s->unreported += reported;
        if (shim_send_failed_locked(s, e)) {
                /* Every line in it is lost (the prefix is not a line of
                 * the ring: it went back to unreported above). */
                shim_count_drop_locked(s, shim_count_lines_locked(s, n));
                shim_consume_locked(s, n);
        }
}

/* The thread: one step per turn, each with the lock held. */
static void *sender_main(void *arg)
{
        struct segops_shim *s = arg;
        size_t big;

        pthread_mutex_lock(&s->lock);
        while (!s->stop) {
                if (s->used == 0)
                        wait_for_lines_locked(s);
                else if (shim_connect_locked(s) < 0)
                        wait_to_connect_locked(s);
                else if ((big = shim_big_line_locked(s)) != 0)
                        shim_send_big_locked(s, big);
                else
                        send_datagram_locked(s);
        }
        pthread_cond_broadcast(&s->drained);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* Start the sender thread if it is not running: 0 or -EAGAIN. */
static int start_thread_locked(struct segops_shim *s)
{
        pthread_attr_t attr;
        sigset_t all, old;
        int r;

        if (s->thread_started)
                return 0;
        /* The thread must not take the application's signals. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        r = pthread_create(&s->thread, &attr, sender_main, s);
        pthread_attr_destroy(&attr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0)
                return -EAGAIN;
        s->thread_started = true;
        s->stop = false;
        return 0;
}

static void wake_thread_locked(struct segops_shim *s)
{
        if (s->thread_idle) {
                s->thread_idle = false;
                pthread_cond_signal(&s->wake);
        }
}

int shim_enqueue_locked(struct segops_shim *s, const char *line, size_t n)
{
        int r = shim_ring_room_locked(s, n);

        if (r < 0)
                return r;
        r = start_thread_locked(s);
        if (r < 0)
                return r;
        shim_ring_put_locked(s, line, n);
        wake_thread_locked(s);
        return 0;
}

static bool holds_locked(const struct segops_shim *s)
{
        return s->used > 0;
}

int shim_wait_drained_locked(struct segops_shim *s, int64_t deadline_ms)
{
        while (holds_locked(s) && s->thread_started) {
                struct timespec ts;
                int64_t left = deadline_ms - shim_now_ms();

                if (left <= 0)
                        return -ETIMEDOUT;
                deadline_ts(&ts, left);
                pthread_cond_timedwait(&s->drained, &s->lock, &ts);
        }
        return holds_locked(s) ? -ETIMEDOUT : 0;
}

void shim_stop_thread_locked(struct segops_shim *s)
{
        pthread_t t;

        if (!s->thread_started)
                return;
        s->stop = true;
        t = s->thread;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(t, NULL);
        pthread_mutex_lock(&s->lock);
        s->thread_started = false;
        s->thread_idle = false;
}
