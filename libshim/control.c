/* control.c - libshim's exchanges on the daemon's control socket.
 *
 * Flush and close talk to the daemon on its stream socket: op flush,
 * whose reply says whether every event the daemon held reached the
 * upstream, and op client_dropped, which reports the drops not yet told
 * (so they are not held back until the next datagram). All of it runs
 * on the caller's thread and never blocks past the caller's deadline:
 * the connect is non-blocking (a full listen backlog is a timeout, not
 * a wait), the request is one small send, and every read is polled
 * against the deadline. A daemon that turns the connection away as
 * too_many_connections is asked again every SHIM_BUSY_RETRY_MS within
 * the deadline, whether the refusal came before our request was read or
 * after.
 */
#include "shim-internal.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
                *plen = shim_encode_dropped(req, SHIM_DROPPED_LINE_MAX, claim, 0);
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
