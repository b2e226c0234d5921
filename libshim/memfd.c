/* memfd.c - how a line too large for a datagram reaches the daemon.
 *
 * A datagram is limited by the socket's send buffer, so a line over
 * SHIM_DGRAM_BYTES is copied into a memfd, sealed against any change
 * (the daemon may then read it without fearing that we shrink or
 * rewrite it under its feet), and sent as SCM_RIGHTS with an empty
 * datagram, as journald's clients do (PROTOCOL.md, "Large messages").
 * The line waits in the ring like any other until it reaches the tail,
 * so every line still goes out in the order it was queued, and a burst
 * of large events is bounded by the ring's bytes, not by a count of
 * descriptors. The memfd is made once and kept across retries.
 */
#include "shim-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* The memfd is built once, unlocked (producers only ever write outside
 * the used part of the ring), and kept in big_fd across retries; the
 * line leaves the ring only once sent, so flush and close count it as
 * held until then. */
void shim_send_big_locked(struct segops_shim *s, size_t n)
{
        struct iovec iov[2];
        int iovcnt = shim_ring_span_locked(s, n, iov);
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
        shim_wait_if_full(sock, k, e); /* as for datagrams */
        pthread_mutex_lock(&s->lock);
        s->sending = 0;
        s->big_fd = mfd >= 0 ? mfd : -1;
        if (k >= 0) {
                shim_forget_big_locked(s); /* the daemon holds its own copy */
                shim_consume_locked(s, n);
                return;
        }
        if (shim_send_failed_locked(s, e)) {
                shim_forget_big_locked(s);
                shim_count_drop_locked(s, 1);
                shim_consume_locked(s, n);
        }
}
