/* dgram.c - reads the events datagram socket.
 *
 * Each wakeup drains up to dgram_burst datagrams with recvmmsg() into a
 * fixed set of buffers (one syscall for many datagrams), splits each
 * datagram into its newline-separated messages, and hands them to
 * ingest, which applies max_message_bytes to each. A datagram larger
 * than max_datagram_bytes arrives truncated and is rejected whole
 * (oversize). The buffers are allocated once; only the pages that big
 * datagrams touch become resident. Only set_user and reset_session ops
 * are allowed here: there is no one to answer. SO_PASSCRED gives each
 * datagram its sender's pid and uid, for client_dropped.
 */
#include "dgram.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.h"
#include "daemon.h"
#include "framer.h"
#include "ingest.h"
#include "listen.h"
#include "log.h"

#define DGRAM_VLEN 16   /* per recvmmsg; 64 measured no better with bench/ */
#define DGRAM_MAX_FDS 4 /* one is used (a memfd); more are closed */
/* Backpressure: with the upstream healthy but slower than the senders,
 * stop reading above 3/4 of max_memory until below 1/2 (senders then
 * wait in the kernel queue, libshim in its ring), for at most
 * PAUSE_MAX_MS at a time; after that, or with the upstream failing,
 * when_full decides. */
#define PAUSE_CHECK_MS 5
#define DRAIN_ALL (1u << 20) /* flush and stop read everything queued */
#define PAUSE_MAX_MS 1000
#define MEMFD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
/* The kernel queues at most net.unix.max_dgram_qlen datagrams on a
 * datagram socket, whatever its buffer size. Below this, say so. */
#define QLEN_SYSCTL "/proc/sys/net/unix/max_dgram_qlen"
#define QLEN_LOW 64

union dgram_cmsg {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * DGRAM_MAX_FDS) + CMSG_SPACE(sizeof(struct ucred))];
};

struct dgram {
        struct daemon *d;
        uv_poll_t poll;
        uv_timer_t pause;   /* backpressure: checks when to read again */
        uint64_t paused_at; /* loop ms; 0 when reading */
        int open_handles;
        int fd;
        bool adopted; /* passed by systemd: not ours to shut down */
        size_t slot;  /* bytes per buffer: max_datagram_bytes + 1 */
        char *bufs;   /* DGRAM_VLEN slots */
        struct mmsghdr msgs[DGRAM_VLEN];
        struct iovec iov[DGRAM_VLEN];
        union dgram_cmsg cmsg[DGRAM_VLEN]; /* passed fds (memfds) */
};

/* What a datagram's ancillary data says. */
struct dgram_meta {
        int fds[DGRAM_MAX_FDS];
        int nfds;
        bool truncated;
        struct client_id peer; /* SCM_CREDENTIALS (SO_PASSCRED), when given */
};

static void handle_op(struct daemon *d, struct proto_msg *msg, const struct client_id *peer)
{
        struct proto_error err = { .reason = PROTO_E_OP_NOT_ALLOWED };

        if (control_quiet_op(d, msg, peer))
                return;
        d->stats.ops--;
        snprintf(err.detail, sizeof(err.detail),
                 "this op needs a reply: send it on the control (stream) socket");
        ingest_reject(&d->ingest, INGEST_DGRAM, &err);
}

static void handle_datagram(struct dgram *g, const char *p, size_t n, const struct client_id *peer)
{
        struct framer_line l;
        struct proto_msg msg;
        struct proto_error err;
        size_t pos = 0;

        while (framer_datagram_next(p, n, &pos, &l))
                if (!ingest_blank(l.data, l.len) && ingest_line(&g->d->ingest, INGEST_DGRAM, l.data,
                                                                l.len, &msg, &err) == INGEST_OP)
                        handle_op(g->d, &msg, peer);
}

static void reject(struct dgram *g, enum proto_reason why, const char *detail)
{
        struct proto_error err = { .reason = why };

        snprintf(err.detail, sizeof(err.detail), "%s", detail);
        ingest_reject(&g->d->ingest, INGEST_DGRAM, &err);
}

static void read_meta(struct msghdr *h, struct dgram_meta *m)
{
        memset(m, 0, sizeof(*m));
        m->truncated = (h->msg_flags & MSG_CTRUNC) != 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
                if (c->cmsg_level != SOL_SOCKET)
                        continue;
                if (c->cmsg_type == SCM_CREDENTIALS &&
                    c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
                        struct ucred uc;
                        memcpy(&uc, CMSG_DATA(c), sizeof(uc));
                        m->peer.pid = uc.pid;
                        m->peer.uid = uc.uid;
                        m->peer.verified = true;
                } else if (c->cmsg_type == SCM_RIGHTS) {
                        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; i < n; i++) {
                                int fd;
                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                if (m->nfds < DGRAM_MAX_FDS)
                                        m->fds[m->nfds++] = fd;
                                else
                                        close(fd);
                        }
                }
        }
}

/* A sealed memfd stands in for a datagram too large to send (see
 * proto/PROTOCOL.md). Its content is handled like a datagram's. */
static void handle_memfd(struct dgram *g, int fd, const struct client_id *peer)
{
        struct stat st;
        void *p;
        int seals = fcntl(fd, F_GET_SEALS);

        if (seals < 0 || (seals & MEMFD_SEALS) != MEMFD_SEALS) {
                reject(g, PROTO_E_BAD_VALUE, "passed file is not a sealed memfd");
                return;
        }
        if (fstat(fd, &st) < 0 || st.st_size <= 0) {
                reject(g, PROTO_E_BAD_VALUE, "passed memfd is empty");
                return;
        }
        if ((uint64_t)st.st_size > cfg_datagram_bytes(&g->d->cfg)) {
                g->d->stats.dgram_truncated++;
                reject(g, PROTO_E_OVERSIZE, "memfd larger than max_datagram_bytes");
                return;
        }
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
                reject(g, PROTO_E_BAD_VALUE, "passed memfd cannot be read");
                return;
        }
        g->d->stats.dgram_memfd++;
        handle_datagram(g, p, (size_t)st.st_size, peer);
        munmap(p, (size_t)st.st_size);
}

static void handle_one(struct dgram *g, struct mmsghdr *mm, const char *data)
{
        struct dgram_meta m;
        size_t len = mm->msg_len;

        read_meta(&mm->msg_hdr, &m);
        g->d->stats.dgram_received++;
        if (m.truncated || m.nfds > 1 || (m.nfds == 1 && len > 0)) {
                reject(g, PROTO_E_BAD_VALUE, "unexpected file descriptors with a datagram");
        } else if ((mm->msg_hdr.msg_flags & MSG_TRUNC) || len >= g->slot) {
                char detail[96];
                snprintf(detail, sizeof(detail), "datagram larger than max_datagram_bytes (%zu)",
                         g->slot - 1);
                g->d->stats.dgram_truncated++;
                reject(g, PROTO_E_OVERSIZE, detail);
        } else if (m.nfds == 1) {
                handle_memfd(g, m.fds[0], &m.peer);
        } else {
                handle_datagram(g, data, len, &m.peer);
        }
        for (int i = 0; i < m.nfds; i++)
                close(m.fds[i]);
}

/* The memory account is over num/den of max_memory while the upstream
 * takes what it is sent: a pause lets it catch up. Not with a working
 * spool: there new events wait on disk, and memory is bounded anyway. */
static bool worth_pausing(const struct daemon *d, size_t num, size_t den)
{
        return batcher_memory(&d->batcher) > batcher_memory_limit(&d->batcher) / den * num &&
               batcher_upstream_healthy(&d->batcher) && !batcher_spooling(&d->batcher);
}

/* Time to stop reading (see PAUSE_MAX_MS)? */
static bool over_high_water(const struct daemon *d)
{
        return worth_pausing(d, 3, 4);
}

/* Read up to max datagrams; returns how many, or 0 when none waited. */
static unsigned read_burst(struct dgram *g, unsigned max)
{
        unsigned total = 0;

        while (total < max) {
                unsigned want = max - total < DGRAM_VLEN ? max - total : DGRAM_VLEN;
                int n;

                for (unsigned i = 0; i < want; i++) {
                        struct msghdr *h = &g->msgs[i].msg_hdr;
                        g->iov[i].iov_base = g->bufs + (size_t)i * g->slot;
                        g->iov[i].iov_len = g->slot;
                        memset(h, 0, sizeof(*h));
                        h->msg_iov = &g->iov[i];
                        h->msg_iovlen = 1;
                        h->msg_control = g->cmsg[i].buf;
                        h->msg_controllen = sizeof(g->cmsg[i].buf);
                }
                n = recvmmsg(g->fd, g->msgs, want, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                log_limited(LOG_ERR, "recvmmsg", "reading the events socket: %s",
                                            strerror(errno));
                        break;
                }
                ingest_clock(&g->d->ingest);
                for (int i = 0; i < n; i++)
                        handle_one(g, &g->msgs[i], g->iov[i].iov_base);
                /* Go round again even after a short read: senders blocked
                 * on the short kernel queue refill it while we parse,
                 * and another recvmmsg is far cheaper than a trip
                 * through epoll. EAGAIN ends the burst. */
                total += (unsigned)n;
                /* Checked per recvmmsg, not per burst: a burst of big
                 * datagrams would overshoot max_memory by far. */
                if (g->paused_at == 0 && max != DRAIN_ALL && over_high_water(g->d))
                        break;
        }
        /* One spool write per burst (up to dgram_burst datagrams), not
         * per datagram or event. */
        batcher_commit(&g->d->batcher);
        return total;
}

/* The kernel's default is 10, and systemd sets 512 at boot; a machine
 * or container without systemd keeps 10. Then a sender has to wait for
 * segopsd every 11 datagrams, and each wait costs both sides a wakeup:
 * bench/ measures fewer events/s and more CPU per event (bench/README.md). */
static void warn_short_queue(void)
{
        FILE *f = fopen(QLEN_SYSCTL, "re");
        int qlen;

        if (!f)
                return;
        if (fscanf(f, "%d", &qlen) == 1 && qlen < QLEN_LOW)
                log_warn("net.unix.max_dgram_qlen is %d: the events socket queues at most %d "
                         "datagrams, so busy senders wait on segopsd and throughput drops; "
                         "systemd sets 512 at boot (sysctl -w net.unix.max_dgram_qlen=512, "
                         "or docker run --sysctl net.unix.max_dgram_qlen=512)",
                         qlen, qlen + 1);
        fclose(f);
}

static void on_readable(uv_poll_t *h, int status, int events);

static void on_pause_check(uv_timer_t *t)
{
        struct dgram *g = t->data;
        struct daemon *d = g->d;
        uint64_t now = uv_now(d->loop);

        if (worth_pausing(d, 1, 2) && now - g->paused_at < PAUSE_MAX_MS)
                return;
        d->stats.dgram_paused_ms += now - g->paused_at;
        g->paused_at = 0;
        uv_timer_stop(&g->pause);
        uv_poll_start(&g->poll, UV_READABLE, on_readable);
}

static void maybe_pause(struct dgram *g)
{
        struct daemon *d = g->d;

        if (!over_high_water(d))
                return;
        d->stats.dgram_pauses++;
        g->paused_at = uv_now(d->loop);
        uv_poll_stop(&g->poll);
        uv_timer_start(&g->pause, on_pause_check, PAUSE_CHECK_MS, PAUSE_CHECK_MS);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
        struct dgram *g = h->data;

        if (status < 0) {
                log_limited(LOG_ERR, "dgram_poll", "events socket: %s", uv_strerror(status));
                return;
        }
        if (read_burst(g, g->d->cfg.dgram_burst) > 0) {
                batcher_kick(&g->d->batcher);
                maybe_pause(g);
        }
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
        g->slot = cfg_datagram_bytes(&d->cfg) + 1;
        g->bufs = malloc(g->slot * DGRAM_VLEN);
        if (!g->bufs) {
                r = -ENOMEM;
                goto fail;
        }
        r = listen_unix(d->cfg.events_socket, SOCK_DGRAM, d->cfg.socket_mode, d->cfg.socket_group,
                        &g->adopted, err, sizeof(err));
        if (r < 0) {
                log_err("events socket %s", err);
                goto fail;
        }
        g->fd = r;
        warn_short_queue();
        /* The kernel's pid and uid of each datagram's sender, so that a
         * client_dropped report cannot speak for another process (bench/
         * README.md: what it costs). Without them a report's pid is only
         * declared, and stats says so. */
        if (setsockopt(g->fd, SOL_SOCKET, SO_PASSCRED, &(int){ 1 }, sizeof(int)) < 0)
                log_warn("events socket: SO_PASSCRED: %s; client_dropped reports on it will "
                         "carry declared pids only",
                         strerror(errno));
        r = uv_poll_init(d->loop, &g->poll, g->fd);
        if (r < 0) {
                log_err("events socket: %s", uv_strerror(r));
                goto fail;
        }
        g->poll.data = g;
        uv_timer_init(d->loop, &g->pause);
        g->pause.data = g;
        g->open_handles = 2;
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
        if (d->dgram && read_burst(d->dgram, DRAIN_ALL) > 0)
                batcher_kick(&d->batcher);
}

static void on_closed(uv_handle_t *h)
{
        struct dgram *g = h->data;

        if (--g->open_handles > 0)
                return;
        close(g->fd);
        free(g->bufs);
        free(g);
}

void dgram_close(struct daemon *d)
{
        struct dgram *g = d->dgram;

        if (!g)
                return;
        /* Refuse new datagrams first (senders get EPIPE and keep them),
         * then read what is already queued: nothing accepted by the
         * kernel is dropped unread. A socket systemd passed stays open
         * for the next start instead. */
        if (!g->adopted)
                shutdown(g->fd, SHUT_RD);
        dgram_drain(d);
        d->dgram = NULL;
        uv_poll_stop(&g->poll);
        uv_close((uv_handle_t *)&g->poll, on_closed);
        uv_close((uv_handle_t *)&g->pause, on_closed);
}
