/* dgram.c - reads the events datagram socket.
 *
 * The socket and its life on the loop: bound (or adopted from systemd)
 * with SO_PASSCRED on, read with recvmmsg() into a fixed set of buffers
 * (one syscall for many datagrams). The buffers are allocated once;
 * only the pages that big datagrams touch become resident. What each
 * datagram holds is dgram-message.c's.
 *
 * The work of one wakeup is bounded (issue 10): at most dgram_burst
 * datagrams, read_burst_lines lines and read_burst_bytes bytes of them.
 * A datagram cut by the bound is kept where it was cut and finished on
 * the next turn of the loop (from an idle handle, the socket's poll
 * stopped meanwhile), so one 256K datagram of "x\n" lines, or a sender
 * keeping the socket full of them, never holds the loop for long: the
 * control socket, the timers and the watchdog get a turn in between.
 *
 * A flush drains what the socket held when it began, in the same
 * bounded slices, however fast senders refill it: it sends the socket a
 * marker datagram of its own (a random nonce and a ticket number) and
 * the drain ends where the reader meets it, the queue being first in,
 * first out. When the marker finds the queue full, the queue holds the
 * most the kernel queues, max_dgram_qlen + 1 datagrams, and the drain
 * ends after that many instead. An empty socket ends every drain. The
 * stop refuses new datagrams (shutdown) and reads until the socket is
 * empty, or that many. Flushes wait for their drain (batcher_drain_*).
 */
#include "dgram-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "ingest.h"
#include "listen.h"
#include "log.h"
#include "rng.h"

/* Backpressure: with the upstream healthy but slower than the senders,
 * stop reading above 3/4 of max_memory until below 1/2 (senders then
 * wait in the kernel queue, libshim in its ring), for at most
 * PAUSE_MAX_MS at a time; after that, or with the upstream failing,
 * when_full decides. */
#define PAUSE_CHECK_MS 5
#define PAUSE_MAX_MS 1000
/* The kernel queues at most net.unix.max_dgram_qlen datagrams on a
 * datagram socket, whatever its buffer size. Below this, say so. */
#define QLEN_SYSCTL "/proc/sys/net/unix/max_dgram_qlen"
#define QLEN_LOW 64
/* The queue length a drain assumes when the sysctl cannot be read:
 * what systemd sets at boot. */
#define QLEN_UNKNOWN 512
/* A drain's marker: this, the nonce, the ticket (native byte order: it
 * never leaves the host, nor this process). */
#define MARK_MAGIC "\0segopsd drain\0"
#define MARK_MAGIC_LEN (sizeof(MARK_MAGIC) - 1)
#define MARK_LEN (MARK_MAGIC_LEN + 16 + sizeof(uint64_t))

static void reach(struct dgram *g, uint64_t ticket)
{
        if (ticket > g->reached)
                g->reached = ticket;
}

/* The next datagram received is handled. */
void dgram__handled(struct dgram *g)
{
        g->next++;
        g->done++;
        if (g->count_ticket > g->reached && g->done >= g->count_goal) {
                g->d->stats.dgram_drains_capped++; /* senders kept refilling it */
                reach(g, g->count_ticket);
        }
}

/* Our marker: the drain of its ticket is done. */
bool dgram__is_marker(struct dgram *g, const char *p, size_t len)
{
        uint64_t ticket;

        if (len != MARK_LEN || g->mark_fd < 0 || memcmp(p, MARK_MAGIC, MARK_MAGIC_LEN) != 0 ||
            memcmp(p + MARK_MAGIC_LEN, g->nonce, sizeof(g->nonce)) != 0)
                return false;
        memcpy(&ticket, p + MARK_MAGIC_LEN + sizeof(g->nonce), sizeof(ticket));
        if (ticket <= g->ticket)
                reach(g, ticket);
        return true;
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

static bool draining(const struct dgram *g)
{
        return g->reached < g->ticket;
}

/* Received datagrams not yet handled (the cursor's included). */
static bool buffered(const struct dgram *g)
{
        return g->next < g->nmsgs;
}

/* Read up to want datagrams into the buffers; how many (0: none, the
 * socket is empty or failed). */
static unsigned receive(struct dgram *g, unsigned want)
{
        int n;

        if (want > DGRAM_VLEN)
                want = DGRAM_VLEN;
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
        do
                n = recvmmsg(g->fd, g->msgs, want, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                if (errno != EAGAIN)
                        log_limited(LOG_ERR, "recvmmsg", "reading the events socket: %s",
                                    strerror(errno));
                n = 0;
        }
        g->nmsgs = (unsigned)n;
        g->next = 0;
        if (n > 0)
                ingest_clock(&g->d->ingest);
        return (unsigned)n;
}

/* One wakeup's work, within the budget: finish the datagrams already
 * received, then read more (up to dgram_burst). True when anything was
 * handled. */
static bool slice(struct dgram *g)
{
        struct daemon *d = g->d;
        struct dgram_budget b = { d->cfg.read_burst_lines, d->cfg.read_burst_bytes,
                                  d->cfg.dgram_burst };
        bool any = false, empty = false;

        for (;;) {
                if (!b.lines || !b.bytes) {
                        d->stats.dgram_burst_limited++;
                        break;
                }
                if (g->cur.active) {
                        dgram__split(g, &b);
                        any = true;
                } else if (buffered(g)) {
                        dgram__start_one(g, &b);
                        any = true;
                } else if (!b.dgrams) {
                        break;
                } else if (!draining(g) && g->paused_at == 0 && any && over_high_water(d)) {
                        /* Checked per recvmmsg, not per slice: a slice
                         * of big datagrams would overshoot max_memory by
                         * far. */
                        break;
                } else {
                        /* Go round again even after a short read:
                         * senders blocked on the short kernel queue
                         * refill it while we parse, and another
                         * recvmmsg is far cheaper than a trip through
                         * epoll. An empty socket ends the slice. */
                        unsigned n = receive(g, b.dgrams);
                        if (!n) {
                                empty = true;
                                break;
                        }
                        b.dgrams -= n;
                }
        }
        /* One spool write per slice, not per datagram or event. */
        batcher_commit(&d->batcher);
        /* An empty socket: every drain so far has read all it owed. */
        if (empty)
                reach(g, g->ticket);
        if (d->batcher.drain_reached < g->reached)
                batcher_drain_reached(&d->batcher, g->reached);
        return any;
}

/* The kernel's default is 10, and systemd sets 512 at boot; a machine
 * or container without systemd keeps 10. Then a sender has to wait for
 * segopsd every 11 datagrams, and each wait costs both sides a wakeup:
 * bench/ measures fewer events/s and more CPU per event (bench/README.md).
 * Returns the length (QLEN_UNKNOWN when it cannot be read). */
static unsigned queue_length(void)
{
        FILE *f = fopen(QLEN_SYSCTL, "re");
        int qlen;

        if (!f)
                return QLEN_UNKNOWN;
        if (fscanf(f, "%d", &qlen) != 1 || qlen < 0)
                qlen = QLEN_UNKNOWN;
        else if (qlen < QLEN_LOW)
                log_warn("net.unix.max_dgram_qlen is %d: the events socket queues at most %d "
                         "datagrams, so busy senders wait on segopsd and throughput drops; "
                         "systemd sets 512 at boot (sysctl -w net.unix.max_dgram_qlen=512, "
                         "or docker run --sysctl net.unix.max_dgram_qlen=512)",
                         qlen, qlen + 1);
        fclose(f);
        return (unsigned)qlen;
}

static void on_readable(uv_poll_t *h, int status, int events);
static void on_more(uv_idle_t *h);
static void close_handles(struct dgram *g);

/* uv_poll_start() re-registers the fd even when it is on already:
 * only on a change, not after every slice. */
static void poll_set(struct dgram *g, bool on)
{
        if (on == g->polling)
                return;
        g->polling = on;
        if (on)
                uv_poll_start(&g->poll, UV_READABLE, on_readable);
        else
                uv_poll_stop(&g->poll);
}

/* What runs next: more slices from the idle handle while received
 * datagrams wait (unless paused) or a drain is owed; else the socket's
 * poll, unless paused (the pause timer resumes) or the stop's drain is
 * done (then the reader closes). */
static void schedule(struct dgram *g)
{
        if (draining(g) || (g->paused_at == 0 && buffered(g))) {
                uv_idle_start(&g->more, on_more);
                poll_set(g, false);
                return;
        }
        uv_idle_stop(&g->more);
        if (g->closing) {
                close_handles(g);
                return;
        }
        poll_set(g, g->paused_at == 0);
}

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
        schedule(g);
}

static void maybe_pause(struct dgram *g)
{
        struct daemon *d = g->d;

        if (g->paused_at || g->closing || draining(g) || !over_high_water(d))
                return;
        d->stats.dgram_pauses++;
        g->paused_at = uv_now(d->loop);
        uv_timer_start(&g->pause, on_pause_check, PAUSE_CHECK_MS, PAUSE_CHECK_MS);
}

/* One slice, then what comes next. */
static void run(struct dgram *g)
{
        if (slice(g)) {
                batcher_kick(&g->d->batcher);
                maybe_pause(g);
        }
        schedule(g);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
        struct dgram *g = h->data;

        if (status < 0) {
                log_limited(LOG_ERR, "dgram_poll", "events socket: %s", uv_strerror(status));
                return;
        }
        run(g);
}

static void on_more(uv_idle_t *h)
{
        run(h->data);
}

/* Mark the end of what the socket holds now. 0, or -errno (-EAGAIN:
 * the queue is full). */
static int send_marker(struct dgram *g, uint64_t ticket)
{
        char m[MARK_LEN];

        if (g->mark_fd < 0)
                return -ENOTCONN;
        memcpy(m, MARK_MAGIC, MARK_MAGIC_LEN);
        memcpy(m + MARK_MAGIC_LEN, g->nonce, sizeof(g->nonce));
        memcpy(m + MARK_MAGIC_LEN + sizeof(g->nonce), &ticket, sizeof(ticket));
        if (sendto(g->mark_fd, m, sizeof(m), MSG_DONTWAIT | MSG_NOSIGNAL,
                   (struct sockaddr *)&g->addr, g->addrlen) < 0)
                return -errno;
        return 0;
}

/* Drain what the socket holds now: up to a marker, or (marker false, or
 * no room for one) the most it can hold. */
static void begin_drain(struct dgram *g, bool marker)
{
        uint64_t t = ++g->ticket;

        batcher_drain_goal(&g->d->batcher, t);
        if (marker && send_marker(g, t) == 0)
                return;
        g->count_ticket = t;
        g->count_goal = g->done + (g->nmsgs - g->next) + g->qlen;
}

/* The socket's own address, and a socket to send it markers. Without
 * them (an address we cannot reach), drains end by count. */
static void open_marker(struct dgram *g)
{
        g->addrlen = sizeof(g->addr);
        if (getsockname(g->fd, (struct sockaddr *)&g->addr, &g->addrlen) < 0 ||
            g->addrlen <= sizeof(sa_family_t) || g->addrlen > sizeof(g->addr)) {
                g->mark_fd = -1;
                return;
        }
        rng_bytes16(g->nonce);
        g->mark_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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
        g->mark_fd = -1;
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
        /* The kernel lets one more in than the sysctl says. */
        g->qlen = queue_length() + 1;
        open_marker(g);
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
        uv_idle_init(d->loop, &g->more);
        g->more.data = g;
        g->open_handles = 3;
        poll_set(g, true);
        d->dgram = g;
        return 0;
fail:
        if (g->fd >= 0)
                close(g->fd);
        if (g->mark_fd >= 0)
                close(g->mark_fd);
        free(g->bufs);
        free(g);
        return r;
}

void dgram_drain(struct daemon *d)
{
        struct dgram *g = d->dgram;

        /* A stop's drain is on already, and covers this. */
        if (!g || g->closing)
                return;
        begin_drain(g, true);
        /* The first slice now: often the socket holds a few datagrams
         * and the flush starts complete. */
        run(g);
}

static void on_closed(uv_handle_t *h)
{
        struct dgram *g = h->data;

        if (--g->open_handles > 0)
                return;
        close(g->fd);
        if (g->mark_fd >= 0)
                close(g->mark_fd);
        free(g->bufs);
        free(g);
}

/* Received but not handled, and (unless systemd keeps the socket for
 * the next start) still queued in the socket: read without their data
 * and counted. Bounded: after shutdown(SHUT_RD) no sender adds more,
 * and the loop stops at twice what the kernel queues anyway. */
static uint64_t discard_unread(struct dgram *g)
{
        uint64_t n = g->nmsgs - g->next;
        char byte;

        if (g->cur.active)
                dgram__cursor_end(g); /* counted above; unmapped here */
        g->nmsgs = g->next = 0;
        if (g->adopted)
                return n;
        for (unsigned i = 0; i < 2 * g->qlen; i++) {
                struct iovec iov = { .iov_base = &byte, .iov_len = sizeof(byte) };
                union dgram_cmsg cm;
                struct msghdr h = { .msg_iov = &iov,
                                    .msg_iovlen = 1,
                                    .msg_control = cm.buf,
                                    .msg_controllen = sizeof(cm.buf) };
                struct dgram_meta m;

                if (recvmsg(g->fd, &h, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                dgram__read_meta(&h, &m);
                for (int k = 0; k < m.nfds; k++)
                        close(m.fds[k]);
                n++;
        }
        return n;
}

static void close_handles(struct dgram *g)
{
        struct daemon *d = g->d;
        uint64_t unread = discard_unread(g);

        if (unread) {
                d->stats.dgram_unread_at_stop += unread;
                log_warn("stopping with %llu datagram%s on the events socket not read to the "
                         "end (stop_timeout): the events in them are lost",
                         (unsigned long long)unread, unread == 1 ? "" : "s");
        }
        /* Flushes that waited for the drain wait no more. */
        batcher_drain_reached(&d->batcher, UINT64_MAX);
        d->dgram = NULL;
        uv_poll_stop(&g->poll);
        uv_close((uv_handle_t *)&g->poll, on_closed);
        uv_close((uv_handle_t *)&g->pause, on_closed);
        uv_close((uv_handle_t *)&g->more, on_closed);
}

void dgram_close(struct daemon *d)
{
        struct dgram *g = d->dgram;

        if (!g || g->closing)
                return;
        /* Refuse new datagrams first (senders get EPIPE and keep them),
         * then read what is already queued, in slices: nothing accepted
         * by the kernel is dropped unread unless the stop times out. A
         * socket systemd passed stays open for the next start instead. */
        if (!g->adopted)
                shutdown(g->fd, SHUT_RD);
        g->closing = true;
        if (g->paused_at) {
                d->stats.dgram_paused_ms += uv_now(d->loop) - g->paused_at;
                g->paused_at = 0;
                uv_timer_stop(&g->pause);
        }
        /* No marker: none could join the queue now, and none must be
         * left in a socket systemd keeps for the next start. */
        begin_drain(g, false);
        schedule(g);
}

bool dgram_adopted(const struct daemon *d)
{
        return d->dgram && d->dgram->adopted;
}

bool dgram_closing(const struct daemon *d)
{
        return d->dgram && d->dgram->closing;
}

void dgram_close_now(struct daemon *d)
{
        if (d->dgram)
                close_handles(d->dgram);
}
