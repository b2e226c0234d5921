/* dgram.c - reads the events datagram socket.
 *
 * Each wakeup drains up to dgram_burst datagrams with recvmmsg() into a
 * fixed set of buffers (one syscall for many datagrams), splits each
 * datagram into its newline-separated messages, and hands them to
 * ingest, which applies max_message_bytes to each. A datagram larger
 * than max_datagram_bytes arrives truncated and is rejected whole
 * (oversize). The buffers are allocated once; only the pages that big
 * datagrams touch become resident. Only set_user and reset_session ops
 * are allowed here: there is no one to answer.
 */
#include "dgram.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "daemon.h"
#include "ingest.h"
#include "listen.h"
#include "log.h"

#define DGRAM_VLEN 16 /* > net.unix.max_dgram_qlen's usual 10 */

struct dgram {
        struct daemon *d;
        uv_poll_t poll;
        int fd;
        size_t slot;   /* bytes per buffer: max_datagram_bytes + 1 */
        char *bufs;    /* DGRAM_VLEN slots */
        struct mmsghdr msgs[DGRAM_VLEN];
        struct iovec iov[DGRAM_VLEN];
};

static void handle_op(struct daemon *d, struct proto_msg *msg)
{
        struct proto_error err = {.reason = PROTO_E_OP_NOT_ALLOWED};

        if (msg->op == PROTO_OP_SET_USER || msg->op == PROTO_OP_RESET_SESSION) {
                ctl_session_op(d, msg);
                return;
        }
        d->stats.ops--;
        snprintf(err.detail, sizeof(err.detail),
                 "this op needs a reply: send it on the control (stream) socket");
        ingest_reject(d, INGEST_DGRAM, &err);
}

static void handle_datagram(struct dgram *g, const char *p, size_t n)
{
        struct proto_msg msg;
        struct proto_error err;

        while (n > 0) {
                const char *nl = memchr(p, '\n', n);
                size_t len = nl ? (size_t)(nl - p) : n;

                if (!ingest_blank(p, len) &&
                    ingest_line(g->d, INGEST_DGRAM, p, len, &msg, &err) == INGEST_OP)
                        handle_op(g->d, &msg);
                if (!nl)
                        break;
                p = nl + 1;
                n -= len + 1;
        }
}

/* Read up to max datagrams; returns how many, or 0 when none waited. */
static unsigned read_burst(struct dgram *g, unsigned max)
{
        unsigned total = 0;

        while (total < max) {
                unsigned want = max - total < DGRAM_VLEN ? max - total : DGRAM_VLEN;
                int n;

                for (unsigned i = 0; i < want; i++) {
                        g->iov[i].iov_base = g->bufs + (size_t)i * g->slot;
                        g->iov[i].iov_len = g->slot;
                        memset(&g->msgs[i].msg_hdr, 0, sizeof(g->msgs[i].msg_hdr));
                        g->msgs[i].msg_hdr.msg_iov = &g->iov[i];
                        g->msgs[i].msg_hdr.msg_iovlen = 1;
                }
                n = recvmmsg(g->fd, g->msgs, want, MSG_DONTWAIT, NULL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                log_limited(LOG_ERR, "recvmmsg", "reading the events socket: %s",
                                            strerror(errno));
                        break;
                }
                for (int i = 0; i < n; i++) {
                        size_t len = g->msgs[i].msg_len;
                        g->d->stats.dgram_received++;
                        if ((g->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || len >= g->slot) {
                                struct proto_error err = {.reason = PROTO_E_OVERSIZE};
                                snprintf(err.detail, sizeof(err.detail),
                                         "datagram larger than max_datagram_bytes (%zu)",
                                         g->slot - 1);
                                g->d->stats.dgram_truncated++;
                                ingest_reject(g->d, INGEST_DGRAM, &err);
                                continue;
                        }
                        handle_datagram(g, g->iov[i].iov_base, len);
                }
                /* Go round again even after a short read: senders blocked
                 * on the short kernel queue refill it while we parse,
                 * and another recvmmsg is far cheaper than a trip
                 * through epoll. EAGAIN ends the burst. */
                total += (unsigned)n;
        }
        return total;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
        struct dgram *g = h->data;

        if (status < 0) {
                log_limited(LOG_ERR, "dgram_poll", "events socket: %s", uv_strerror(status));
                return;
        }
        if (read_burst(g, g->d->cfg.dgram_burst) > 0)
                batcher_kick(&g->d->batcher);
}

int dgram_open(struct daemon *d)
{
        struct dgram *g;
        char err[512];
        int r;

        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->d = d;
        g->fd = -1;
        g->slot = d->cfg.max_datagram_bytes + 1;
        g->bufs = malloc(g->slot * DGRAM_VLEN);
        if (!g->bufs) {
                r = -ENOMEM;
                goto fail;
        }
        r = listen_unix(d->cfg.events_socket, SOCK_DGRAM, d->cfg.socket_mode, err, sizeof(err));
        if (r < 0) {
                log_err("events socket %s", err);
                goto fail;
        }
        g->fd = r;
        r = uv_poll_init(d->loop, &g->poll, g->fd);
        if (r < 0) {
                log_err("events socket: %s", uv_strerror(r));
                goto fail;
        }
        g->poll.data = g;
        uv_poll_start(&g->poll, UV_READABLE, on_readable);
        d->dgram = g;
        return 0;
fail:
        if (g->fd >= 0)
                close(g->fd);
        free(g->bufs);
        free(g);
        return r;
}

void dgram_drain(struct daemon *d)
{
        /* The kernel queue is short (max_dgram_qlen); the bound only
         * guards against a sender racing us forever. */
        if (d->dgram && read_burst(d->dgram, 1u << 20) > 0)
                batcher_kick(&d->batcher);
}

static void on_closed(uv_handle_t *h)
{
        struct dgram *g = h->data;

        close(g->fd);
        free(g->bufs);
        free(g);
}

void dgram_close(struct daemon *d)
{
        struct dgram *g = d->dgram;

        if (!g)
                return;
        dgram_drain(d);
        d->dgram = NULL;
        uv_poll_stop(&g->poll);
        uv_close((uv_handle_t *)&g->poll, on_closed);
}
