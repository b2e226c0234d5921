/* send.c - libshim's way to the daemon: connection, ring, sender thread.
 *
 * Producers (the public calls) only append encoded lines to a fixed ring
 * under the handle's mutex; one background thread, started lazily at the
 * first line, is the only one that sends. It packs as many whole lines
 * as fit in SHIM_DGRAM_BYTES into each datagram (the daemon's socket
 * holds only net.unix.max_dgram_qlen datagrams, so packing is what makes
 * bursts survive), sends with the mutex released so producers never wait
 * for a syscall, and on EAGAIN polls for POLLOUT while the daemon drains
 * its queue. Keeping the send off the caller's path is what holds
 * track() under a microsecond: a datagram send costs several.
 * Connecting is lazy and rate limited (SHIM_RECONNECT_MS), so "daemon
 * down" costs a clock read; a peer that vanished (daemon restarted) is
 * reconnected by the thread. Drops are reported to the daemon as a
 * client_dropped line leading the next datagram, or, by flush and close,
 * on the control socket (so they are not held back until the next event).
 * Lines over a datagram's size wait in the ring like any other; when
 * one reaches the tail, the thread copies it into a sealed memfd and
 * sends that (SCM_RIGHTS), retried like a datagram on a full queue. So
 * every line goes out in the order it was queued, and a burst of large
 * events is bounded by the ring's bytes, not by a count of fds.
 * This file also speaks the control ops libshim needs: flush and
 * client_dropped, without ever blocking past the caller's deadline.
 */
#include "shim-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* libshim's one clock. The daemon has its own (daemon/clock.c); libshim
 * keeps this copy rather than link it, so that it needs libc only. */
int64_t shim_clock_ms(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void shim_count_drop_locked(struct segops_shim *s, uint64_t n)
{
        __atomic_store_n(&s->dropped, s->dropped + n, __ATOMIC_RELAXED);
        s->unreported += n;
}

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

/* The n bytes at the ring's tail as iov[0..1] (the ring may wrap);
 * returns how many iovecs are used. */
static int ring_span_locked(const struct segops_shim *s, size_t n, struct iovec iov[2])
{
        size_t first = s->ring_size - s->tail;
        size_t n1 = n < first ? n : first;

        iov[0].iov_base = s->ring + s->tail;
        iov[0].iov_len = n1;
        iov[1].iov_base = s->ring;
        iov[1].iov_len = n - n1;
        return n - n1 ? 2 : 1;
}

/* The length (newline included) of the line at the tail when it is too
 * long for a datagram, else 0: such a line goes out as a memfd. */
size_t shim_big_line_locked(const struct segops_shim *s)
{
        size_t first = s->ring_size - s->tail, n1, look;
        const char *nl;

        if (s->used <= SHIM_DGRAM_BYTES)
                return 0;
        look = SHIM_DGRAM_BYTES; /* a newline in there: the line fits */
        n1 = look < first ? look : first;
        if (memchr(s->ring + s->tail, '\n', n1) || (look > n1 && memchr(s->ring, '\n', look - n1)))
                return 0;
        /* Every line ends with a newline: find this one's. */
        nl = memchr(s->ring + s->tail, '\n', s->used < first ? s->used : first);
        if (nl)
                return (size_t)(nl - (s->ring + s->tail)) + 1;
        nl = memchr(s->ring, '\n', s->used - first);
        return nl ? first + (size_t)(nl - s->ring) + 1 : s->used;
}

/* Find the lines to send next: up to SHIM_DGRAM_BYTES from the tail,
 * whole lines only. Fills iov[0..1] (the ring may wrap) and returns the
 * byte count, 0 when the ring is empty. The caller has sent a line too
 * long for a datagram as a memfd first, so there is always one. */
size_t shim_next_chunk_locked(const struct segops_shim *s, struct iovec iov[2], int *ret_iovcnt)
{
        size_t want = s->used < SHIM_DGRAM_BYTES ? s->used : SHIM_DGRAM_BYTES;
        size_t first = s->ring_size - s->tail;
        size_t n1, n2, cut;
        const char *nl;

        if (want == 0)
                return 0;
        if (want < s->used) {
                /* Cut after the last newline within want bytes. */
                n1 = want < first ? want : first;
                n2 = want - n1;
                cut = 0;
                if (n2) {
                        nl = memrchr(s->ring, '\n', n2);
                        if (nl)
                                cut = n1 + (size_t)(nl - s->ring) + 1;
                }
                if (!cut) {
                        nl = memrchr(s->ring + s->tail, '\n', n1);
                        cut = nl ? (size_t)(nl - (s->ring + s->tail)) + 1 : 0;
                }
                want = cut;
        }
        *ret_iovcnt = ring_span_locked(s, want, iov);
        return want;
}

static size_t count_nl(const char *p, size_t n)
{
        const char *end = p + n;
        size_t k = 0;

        while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                k++;
                p++;
        }
        return k;
}

size_t shim_count_lines_locked(const struct segops_shim *s, size_t n)
{
        size_t first = s->ring_size - s->tail;

        if (n > s->used)
                n = s->used;
        if (n <= first)
                return count_nl(s->ring + s->tail, n);
        return count_nl(s->ring + s->tail, first) + count_nl(s->ring, n - first);
}

static void consume_locked(struct segops_shim *s, size_t n)
{
        s->tail = (s->tail + n) % s->ring_size;
        s->used -= n;
        if (s->used == 0)
                s->head = s->tail = 0;
}

/* The absolute time ms_from_now ahead on shim_now_ms()'s clock, for the
 * timed waits (the condition variables wait on CLOCK_MONOTONIC). */
static void deadline_ts(struct timespec *ts, int64_t ms_from_now)
{
        int64_t at = shim_now_ms() + ms_from_now;

        ts->tv_sec = (time_t)(at / 1000);
        ts->tv_nsec = (long)(at % 1000) * 1000000L;
}

/* One zero-length datagram carrying fd (SCM_RIGHTS): how a line too
 * large for a datagram travels. sendmsg's result; errno as it left it. */
static ssize_t send_fd(int sock, int fd)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } cm;
        struct msghdr mh;
        struct cmsghdr *c;

        memset(&mh, 0, sizeof(mh));
        memset(&cm, 0, sizeof(cm));
        mh.msg_control = cm.buf;
        mh.msg_controllen = sizeof(cm.buf);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        return sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* A sealed, CLOEXEC memfd holding the iovecs' bytes: the fd, or
 * -errno. Sealed, so the daemon may map it without fearing that we
 * shrink or change it under its feet. */
static int memfd_make(const struct iovec *iov, int iovcnt)
{
        int fd = memfd_create("segops-shim", MFD_CLOEXEC | MFD_ALLOW_SEALING), r;

        if (fd < 0)
                return -errno;
        for (int i = 0; i < iovcnt; i++) {
                const char *p = iov[i].iov_base;
                size_t off = 0;

                while (off < iov[i].iov_len) {
                        ssize_t k = write(fd, p + off, iov[i].iov_len - off);

                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                r = k < 0 ? -errno : -EIO;
                                goto out;
                        }
                        off += (size_t)k;
                }
        }
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
                r = -errno;
                goto out;
        }
        return fd;
out:
        close(fd);
        return r;
}

void shim_forget_big_locked(struct segops_shim *s)
{
        if (s->big_fd >= 0)
                close(s->big_fd);
        s->big_fd = -1;
}

/* After a failed send (lock held): wait, reconnect or give up. Returns
 * true when the payload can never go (EMSGSIZE, EPERM from a policy, ...)
 * and the caller must drop and count it rather than spin on it. */
static bool send_failed_locked(struct segops_shim *s, int e)
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

/* Send the n-byte line at the tail as a memfd (lock held, connected).
 * The memfd is built once, unlocked (producers only ever write outside
 * the used part of the ring), and kept in big_fd across retries; the
 * line leaves the ring only once sent, so flush and close count it as
 * held until then. */
static void send_big_locked(struct segops_shim *s, size_t n)
{
        struct iovec iov[2];
        int iovcnt = ring_span_locked(s, n, iov);
        int sock = s->fd, mfd = s->big_fd, e = 0;
        ssize_t k = -1;

        s->sending = n;
        pthread_mutex_unlock(&s->lock);
        if (mfd < 0) {
                mfd = memfd_make(iov, iovcnt);
                /* In big_fd before the send and its wait, so that a fork
                 * meanwhile closes it in the child (atfork_child). */
                pthread_mutex_lock(&s->lock);
                s->big_fd = mfd >= 0 ? mfd : -1;
                pthread_mutex_unlock(&s->lock);
        }
        if (mfd < 0) {
                e = -mfd;
        } else {
                k = send_fd(sock, mfd);
                e = errno;
        }
        if (k < 0 && (e == EAGAIN || e == EWOULDBLOCK)) {
                struct pollfd p = { .fd = sock, .events = POLLOUT };

                /* As for datagrams: the daemon's queue is full. */
                (void)poll(&p, 1, SHIM_RECONNECT_MS);
        }
        pthread_mutex_lock(&s->lock);
        s->sending = 0;
        s->big_fd = mfd >= 0 ? mfd : -1;
        if (k >= 0) {
                shim_forget_big_locked(s); /* the daemon holds its own copy */
                consume_locked(s, n);
                return;
        }
        if (send_failed_locked(s, e)) {
                shim_forget_big_locked(s);
                shim_count_drop_locked(s, 1);
                consume_locked(s, n);
        }
}

static void *sender_main(void *arg)
{
        struct segops_shim *s = arg;
        char prefix[96];

        pthread_mutex_lock(&s->lock);
        while (!s->stop) {
                struct iovec iov[3];
                struct msghdr mh;
                struct timespec ts;
                size_t n, plen = 0;
                uint64_t reported = 0;
                int iovcnt = 0, fd, r, e;
                ssize_t k;

                if (s->used == 0) {
                        pthread_cond_broadcast(&s->drained);
                        s->thread_idle = true;
                        pthread_cond_wait(&s->wake, &s->lock);
                        s->thread_idle = false;
                        continue;
                }
                r = shim_connect_locked(s);
                if (r < 0) {
                        int64_t wait = s->next_connect_ms - shim_now_ms();

                        deadline_ts(&ts, wait > 0 ? wait : 1);
                        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
                        continue;
                }
                n = shim_big_line_locked(s);
                if (n) {
                        send_big_locked(s, n);
                        continue;
                }
                if (s->unreported) {
                        /* Claimed now (given back below if the send
                         * fails) so that a concurrent flush or close
                         * does not report the same drops as well. */
                        reported = s->unreported;
                        s->unreported = 0;
                        plen = shim_encode_dropped(prefix, sizeof(prefix), reported,
                                                   (int32_t)getpid());
                        iov[0].iov_base = prefix;
                        iov[0].iov_len = plen;
                }
                n = shim_next_chunk_locked(s, iov + (plen ? 1 : 0), &iovcnt);
                iovcnt += plen ? 1 : 0;
                fd = s->fd;
                s->sending = n;
                pthread_mutex_unlock(&s->lock);

                memset(&mh, 0, sizeof(mh));
                mh.msg_iov = iov;
                mh.msg_iovlen = (size_t)iovcnt;
                k = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                e = errno;
                if (k < 0 && (e == EAGAIN || e == EWOULDBLOCK)) {
                        struct pollfd p = { .fd = fd, .events = POLLOUT };

                        /* The daemon's queue is full: wait for room. The
                         * timeout bounds the wait should the peer go away
                         * without the socket noticing. */
                        (void)poll(&p, 1, SHIM_RECONNECT_MS);
                }

                pthread_mutex_lock(&s->lock);
                s->sending = 0;
                if (k >= 0) {
                        consume_locked(s, n);
                        continue;
                }
                s->unreported += reported;
                if (send_failed_locked(s, e)) {
                        /* Every line in it is lost (the prefix is not a
                         * line of the ring: it went back to unreported
                         * above). */
                        shim_count_drop_locked(s, shim_count_lines_locked(s, n));
                        consume_locked(s, n);
                }
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
        size_t first;
        int r;

        if (n > s->ring_size)
                return -EMSGSIZE; /* could never fit */
        if (n > s->ring_size - s->used)
                return -ENOBUFS;
        r = start_thread_locked(s);
        if (r < 0)
                return r;
        first = s->ring_size - s->head;
        if (n <= first) {
                memcpy(s->ring + s->head, line, n);
        } else {
                memcpy(s->ring + s->head, line, first);
                memcpy(s->ring, line + first, n - first);
        }
        s->head = (s->head + n) % s->ring_size;
        s->used += n;
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

/* ---- the control socket: op flush and client_dropped ---- */

/* Read until `lines` reply lines are in buf (NUL-terminated), it is
 * full, or the daemon closed after saying something: 0, or
 * -ETIMEDOUT/-ENOTCONN/-EIO. */
static int read_replies(int fd, char *buf, size_t cap, unsigned lines, int64_t deadline_ms)
{
        size_t len = 0;
        unsigned seen = 0;

        buf[0] = '\0';
        while (len + 1 < cap) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int64_t left = deadline_ms - shim_now_ms();
                ssize_t k;

                if (left <= 0)
                        return -ETIMEDOUT;
                if (poll(&p, 1, left > 60000 ? 60000 : (int)left) < 0 && errno != EINTR)
                        return -EIO;
                k = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                        continue;
                /* Closed early: what came says enough. A daemon that
                 * closed with our request unread (it turned us away)
                 * makes recv fail with ECONNRESET, but only once what it
                 * wrote has been read. */
                if (k <= 0)
                        return len ? 0 : -ENOTCONN;
                for (size_t i = len; i < len + (size_t)k; i++)
                        seen += buf[i] == '\n';
                len += (size_t)k;
                buf[len] = '\0';
                if (seen >= lines)
                        return 0;
        }
        return 0; /* long replies: their start says enough */
}

/* Replies are compact JSON from the daemon; a full parser is not worth a
 * dependency for one boolean. Looks at line only up to its newline. */
static bool reply_ok(const char *line)
{
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        static const char a[] = "\"ok\":true", b[] = "\"ok\": true";

        return memmem(line, n, a, sizeof(a) - 1) || memmem(line, n, b, sizeof(b) - 1);
}

/* Connect to the control socket without ever blocking: a Unix stream
 * connect() waits for as long as the daemon's listen backlog is full,
 * and this runs on the caller's thread. Returns the fd or -ETIMEDOUT
 * (backlog full), -EACCES, -ENOTCONN. */
static int control_connect(const struct segops_shim *s)
{
        int fd, e;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)&s->ctl_addr, s->ctl_addr_len) == 0)
                return fd;
        e = errno;
        close(fd);
        if (e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS)
                return -ETIMEDOUT;
        return (e == EACCES || e == EPERM) ? -EACCES : -ENOTCONN;
}

/* True when the daemon turned the connection away for being busy
 * (max_connections or max_connections_per_uid): worth another try. */
static bool reply_busy(const char *line)
{
        static const char busy[] = "\"too_many_connections\"";
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);

        return !reply_ok(line) && memmem(line, n, busy, sizeof(busy) - 1);
}

/* The request: a client_dropped line for claim drops (when any), then,
 * with flush, op flush with the time left until deadline_ms less the
 * reply's trip. Returns its length; *lines = the replies to await. */
static size_t control_request(char *req, uint64_t claim, bool flush, int64_t deadline_ms,
                              size_t *plen, unsigned *lines)
{
        static const char pre[] = "{\"op\":\"flush\",\"timeout_ms\":";
        size_t n = 0;
        int64_t left;

        *plen = 0;
        *lines = 0;
        if (claim) {
                *plen = shim_encode_dropped(req, 96, claim, 0);
                n = *plen;
                *lines += *plen ? 1 : 0;
        }
        if (flush) {
                /* The daemon gets what is left minus time for its reply to
                 * reach us, so it answers ok:false rather than we give up
                 * first; the reply is awaited at least SHIM_REPLY_GRACE_MS
                 * (which makes flush(s, 0) a real question). */
                left = deadline_ms - shim_now_ms();
                left = left > SHIM_REPLY_GRACE_MS ? left - SHIM_REPLY_GRACE_MS : 0;
                memcpy(req + n, pre, sizeof(pre) - 1);
                n += sizeof(pre) - 1;
                n += shim_put_decimal(req + n, (uint64_t)left);
                req[n++] = '}';
                req[n++] = '\n';
                (*lines)++;
        }
        return n;
}

/* One connection: send req, read `lines` replies into reply. 0 (reply
 * filled; it may be the daemon's too_many_connections refusal) or
 * -ENOTCONN/-EACCES/-ETIMEDOUT/-EIO. */
static int control_exchange(const struct segops_shim *s, const char *req, size_t n, unsigned lines,
                            char *reply, size_t cap, int64_t reply_deadline)
{
        int fd = control_connect(s), r, e = 0;
        ssize_t k;

        if (fd < 0)
                return fd;
        /* A fresh socket's buffer takes this small request whole; a short
         * write means something is badly wrong, so no waiting for room. */
        do
                k = send(fd, req, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (k < 0 && (e = errno) == EINTR);
        if (k >= 0 && (size_t)k == n) {
                r = read_replies(fd, reply, cap, lines, reply_deadline);
        } else if (k < 0 && (e == EPIPE || e == ECONNRESET)) {
                /* Accepted and closed before the request went: a daemon
                 * turning us away does that, after writing why. Its line
                 * is already here (it was written before the close that
                 * failed our send); busy is worth another try, anything
                 * else means the request never arrived. */
                r = read_replies(fd, reply, cap, 1, reply_deadline);
                if (r == 0 && !reply_busy(reply))
                        r = -ENOTCONN;
        } else if (k < 0 && e != EAGAIN && e != EWOULDBLOCK) {
                r = -ENOTCONN;
        } else {
                r = -ETIMEDOUT;
        }
        close(fd);
        return r;
}

int shim_control(struct segops_shim *s, bool flush, int64_t deadline_ms)
{
        char req[192], reply[1024];
        const char *flush_reply = reply;
        size_t n, plen;
        uint64_t claim;
        int64_t now, reply_deadline;
        unsigned lines;
        int r;

        /* Claim the unreported drops so the sender thread does not put
         * the same ones on a datagram meanwhile; given back on failure. */
        pthread_mutex_lock(&s->lock);
        claim = s->unreported;
        s->unreported = 0;
        pthread_mutex_unlock(&s->lock);
        if (!flush && !claim)
                return 0;
        now = shim_now_ms();
        reply_deadline =
                deadline_ms > now + SHIM_REPLY_GRACE_MS ? deadline_ms : now + SHIM_REPLY_GRACE_MS;
        for (;;) {
                struct timespec pause = { 0, SHIM_BUSY_RETRY_MS * 1000000L };

                n = control_request(req, claim, flush, deadline_ms, &plen, &lines);
                r = n ? control_exchange(s, req, n, lines, reply, sizeof(reply), reply_deadline)
                      : 0;
                /* Turned away while busy (many processes of one user
                 * flushing at once): again shortly, within the deadline. */
                if (n == 0 || r != 0 || !reply_busy(reply) ||
                    shim_now_ms() + SHIM_BUSY_RETRY_MS >= reply_deadline)
                        break;
                nanosleep(&pause, NULL);
        }
        if (r < 0 || n == 0)
                goto out;
        if (plen) {
                if (reply_ok(reply))
                        claim = 0; /* reported */
                flush_reply = strchr(reply, '\n');
                flush_reply = flush_reply ? flush_reply + 1 : "";
        }
        if (flush)
                r = reply_ok(flush_reply) ? 0 : -EIO;
out:
        if (claim) {
                pthread_mutex_lock(&s->lock);
                s->unreported += claim;
                pthread_mutex_unlock(&s->lock);
        }
        return r;
}
