/* dgram-message.c - what one datagram of the events socket holds.
 *
 * A datagram received (dgram.c reads them) is split into its
 * newline-separated messages, handed to ingest, which applies
 * max_message_bytes to each. A datagram larger than max_datagram_bytes
 * arrives truncated and is rejected whole (oversize); so is one with
 * unexpected file descriptors. A sealed memfd passed alone stands in
 * for a datagram too large to send, and is read like one. Only set_user
 * and reset_session ops are allowed here: there is no one to answer.
 * SO_PASSCRED gives each datagram its sender's pid and uid, for
 * client_dropped.
 *
 * The split stops where the slice's budget (dgram.c) runs out: the
 * cursor keeps the datagram where it was cut, for the next slice.
 */
#include "dgram-internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.h"
#include "daemon.h"
#include "framer.h"
#include "ingest.h"

#define MEMFD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

static void handle_op(struct daemon *d, struct proto_msg *msg, const struct client_id *peer)
{
        struct proto_error err = { .reason = PROTO_E_OP_NOT_ALLOWED };

        if (control_quiet_op(d, msg, peer))
                return;
        d->stats.ops--;
        snprintf(err.detail, sizeof(err.detail),
                 "this op needs a reply: send it on the control (stream) socket");
        ingest_reject(&d->ingest, INGEST_DGRAM, peer, &err);
}

static void reject(struct dgram *g, const struct client_id *peer, enum proto_reason why,
                   const char *detail)
{
        struct proto_error err = { .reason = why };

        snprintf(err.detail, sizeof(err.detail), "%s", detail);
        ingest_reject(&g->d->ingest, INGEST_DGRAM, peer, &err);
}

void dgram__read_meta(struct msghdr *h, struct dgram_meta *m)
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
                        /* pid 0: the kernel recorded no sender (the
                         * datagram was queued before SO_PASSCRED was on,
                         * e.g. on a socket passed by a unit without
                         * PassCredentials=): nothing is verified. */
                        if (uc.pid <= 0)
                                continue;
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

/* The datagram in the cursor is handled: on to the next. */
void dgram__cursor_end(struct dgram *g)
{
        struct dgram_cursor *c = &g->cur;

        if (c->map)
                munmap(c->map, c->len);
        memset(c, 0, sizeof(*c));
        dgram__handled(g);
}

static void cursor_start(struct dgram *g, const char *p, size_t len, void *map,
                         const struct client_id *peer)
{
        g->cur = (struct dgram_cursor){
                .p = p, .len = len, .map = map, .peer = *peer, .active = true
        };
}

/* Split the cursor's datagram into messages until it ends (true) or the
 * budget does (false: the rest waits for the next slice). */
bool dgram__split(struct dgram *g, struct dgram_budget *b)
{
        struct dgram_cursor *c = &g->cur;
        struct framer_line l;
        struct proto_msg msg;
        struct proto_error err;

        while (b->lines && b->bytes && framer_datagram_next(c->p, c->len, &c->pos, &l)) {
                b->lines--;
                b->bytes -= l.len + 1 < b->bytes ? l.len + 1 : b->bytes;
                if (!ingest_blank(l.data, l.len) &&
                    ingest_line(&g->d->ingest, INGEST_DGRAM, &c->peer, l.data, l.len, &msg, &err) ==
                            INGEST_OP)
                        handle_op(g->d, &msg, &c->peer);
        }
        if (c->pos < c->len)
                return false;
        dgram__cursor_end(g);
        return true;
}

/* A sealed memfd stands in for a datagram too large to send (see
 * proto/PROTOCOL.md). Its content is handled like a datagram's: true
 * with it in the cursor, false when it was rejected. */
static bool open_memfd(struct dgram *g, int fd, const struct client_id *peer)
{
        struct stat st;
        void *p;
        int seals = fcntl(fd, F_GET_SEALS);

        if (seals < 0 || (seals & MEMFD_SEALS) != MEMFD_SEALS) {
                reject(g, peer, PROTO_E_BAD_VALUE, "passed file is not a sealed memfd");
                return false;
        }
        if (fstat(fd, &st) < 0 || st.st_size <= 0) {
                reject(g, peer, PROTO_E_BAD_VALUE, "passed memfd is empty");
                return false;
        }
        if ((uint64_t)st.st_size > cfg_datagram_bytes(&g->d->cfg)) {
                g->d->stats.dgram_truncated++;
                reject(g, peer, PROTO_E_OVERSIZE, "memfd larger than max_datagram_bytes");
                return false;
        }
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
                reject(g, peer, PROTO_E_BAD_VALUE, "passed memfd cannot be read");
                return false;
        }
        g->d->stats.dgram_memfd++;
        cursor_start(g, p, (size_t)st.st_size, p, peer);
        return true;
}

/* Look at the next datagram received: rejected whole (one line of the
 * budget), or its messages in the cursor for dgram__split(). */
void dgram__start_one(struct dgram *g, struct dgram_budget *b)
{
        struct mmsghdr *mm = &g->msgs[g->next];
        struct dgram_meta m;
        size_t len = mm->msg_len;
        bool opened = false;

        dgram__read_meta(&mm->msg_hdr, &m);
        if (m.nfds == 0 && !(mm->msg_hdr.msg_flags & MSG_TRUNC) &&
            dgram__is_marker(g, g->iov[g->next].iov_base, len)) {
                g->next++; /* not a datagram of a client's, nor counted */
                return;
        }
        g->d->stats.dgram_received++;
        if (m.truncated || m.nfds > 1 || (m.nfds == 1 && len > 0)) {
                reject(g, &m.peer, PROTO_E_BAD_VALUE,
                       "unexpected file descriptors with a datagram");
        } else if ((mm->msg_hdr.msg_flags & MSG_TRUNC) || len >= g->slot) {
                char detail[96];
                snprintf(detail, sizeof(detail), "datagram larger than max_datagram_bytes (%zu)",
                         g->slot - 1);
                g->d->stats.dgram_truncated++;
                reject(g, &m.peer, PROTO_E_OVERSIZE, detail);
        } else if (m.nfds == 1) {
                opened = open_memfd(g, m.fds[0], &m.peer);
        } else {
                cursor_start(g, g->iov[g->next].iov_base, len, NULL, &m.peer);
                opened = true;
        }
        /* A mapping outlives its fd. */
        for (int i = 0; i < m.nfds; i++)
                close(m.fds[i]);
        if (!opened) {
                if (b->lines)
                        b->lines--;
                dgram__handled(g);
        }
}
