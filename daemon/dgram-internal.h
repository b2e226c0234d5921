/* dgram-internal.h - what dgram.c and dgram-message.c share. Not for
 * other modules: they use dgram.h. */
#ifndef SEGOPSD_DGRAM_INTERNAL_H
#define SEGOPSD_DGRAM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "clients.h"
#include "dgram.h"

#define DGRAM_VLEN 16   /* per recvmmsg; 64 measured no better with bench/ */
#define DGRAM_MAX_FDS 4 /* one is used (a memfd); more are closed */

union dgram_cmsg {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * DGRAM_MAX_FDS) + CMSG_SPACE(sizeof(struct ucred))];
};

/* The datagram being split into lines, where the last slice left it. */
struct dgram_cursor {
        const char *p;
        size_t len, pos;
        void *map;             /* a memfd's mapping, unmapped at the end; or NULL */
        struct client_id peer; /* its sender, for the ops in it */
        bool active;
};

struct dgram {
        struct daemon *d;
        uv_poll_t poll;
        uv_timer_t pause;   /* backpressure: checks when to read again */
        uv_idle_t more;     /* a slice left work: the next one, next turn */
        uint64_t paused_at; /* loop ms; 0 when reading */
        int open_handles;
        int fd;
        bool adopted; /* passed by systemd: not ours to shut down */
        bool closing; /* the stop's drain: closes when done */
        bool polling; /* poll started */
        size_t slot;  /* bytes per buffer: max_datagram_bytes + 1 */
        char *bufs;   /* DGRAM_VLEN slots */
        struct mmsghdr msgs[DGRAM_VLEN];
        struct iovec iov[DGRAM_VLEN];
        union dgram_cmsg cmsg[DGRAM_VLEN]; /* passed fds (memfds) */
        unsigned nmsgs, next;              /* received by the last recvmmsg; next to handle */
        struct dgram_cursor cur;
        unsigned qlen; /* most datagrams the kernel queues (+1) */
        /* Drains, numbered by ticket: the last one begun, the last one
         * done; the one that ends by count (its marker found the queue
         * full, or the stop's) when done reaches count_goal. */
        uint64_t ticket, reached;
        uint64_t count_ticket, count_goal;
        uint64_t done;                /* datagrams handled since the start */
        int mark_fd;                  /* sends the markers; -1: none (drains end by count) */
        struct sockaddr_storage addr; /* the socket's own, for the markers */
        socklen_t addrlen;
        uint8_t nonce[16];
};

/* One slice's allowance. */
struct dgram_budget {
        unsigned lines;
        size_t bytes;
        unsigned dgrams;
};

/* What a datagram's ancillary data says. */
struct dgram_meta {
        int fds[DGRAM_MAX_FDS];
        int nfds;
        bool truncated;
        struct client_id peer; /* SCM_CREDENTIALS (SO_PASSCRED), when given */
};

/* dgram-message.c */
/* Read a datagram's ancillary data: the fds passed (beyond
 * DGRAM_MAX_FDS closed), the sender's credentials. */
void dgram__read_meta(struct msghdr *h, struct dgram_meta *m);
/* Look at the next datagram received: rejected whole (one line of the
 * budget), or its messages in the cursor for dgram__split(). */
void dgram__start_one(struct dgram *g, struct dgram_budget *b);
/* Split the cursor's datagram into messages until it ends (true) or the
 * budget does (false: the rest waits for the next slice). */
bool dgram__split(struct dgram *g, struct dgram_budget *b);
/* The datagram in the cursor is handled: on to the next. */
void dgram__cursor_end(struct dgram *g);

/* dgram.c */
/* The next datagram received is handled. */
void dgram__handled(struct dgram *g);
/* Our marker (a drain's): true, and the drain of its ticket is done. */
bool dgram__is_marker(struct dgram *g, const char *p, size_t len);

#endif
