/* conn-internal.h - what conn.c and conn-server.c share. Not for other
 * modules: they use conn.h. */
#ifndef SEGOPSD_CONN_INTERNAL_H
#define SEGOPSD_CONN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "conn.h"
#include "framer.h"

struct flush_waiter;

struct conn {
        uv_pipe_t pipe;
        struct conn_server *srv;
        struct conn *next;
        struct framer fr;
        struct flush_waiter *flush; /* a flush in progress */
        uint64_t last_line;         /* loop ms of the last complete line */
        uint64_t stalled_since;     /* loop ms replies last moved; 0: none queued */
        pid_t pid;                  /* the peer, from SO_PEERCRED (0: unknown) */
        uid_t uid;                  /* the peer's uid (max_connections_per_uid) */
        bool reserved;              /* holds one of reserved_connections */
        bool reading;
        bool paused;    /* max_reply_bytes unread: lines wait */
        bool peer_gone; /* a write failed: replies are thrown away */
        bool eof;       /* the client has finished sending */
        bool finishing; /* shutdown requested */
        bool draining;  /* conn__drain reads: no shutdown until it is done */
        bool closing;
};

struct conn_server {
        struct daemon *d;
        uv_pipe_t listener;
        uv_timer_t sweep;
        struct conn *conns;
        unsigned count;    /* connections open */
        unsigned reserved; /* of them, in reserved_connections */
        uid_t euid;        /* ours: it may use the reserve */
        int open_handles;  /* listener, sweep, connections */
        bool stopping;
        bool adopted; /* the listener came from systemd (socket activation) */
};

/* conn-server.c */
/* One of the server's handles (listener, sweep, a connection) is
 * closed: the last one frees the server. */
void conn__srv_release(struct conn_server *s);

/* conn.c */
/* A connection's pipe is closed (uv_close callback): free it. */
void conn__on_closed(uv_handle_t *h);
/* Close now, whatever is unwritten; leave the server's list. */
void conn__close(struct conn *c);
/* Bytes of replies the client has not read yet. */
size_t conn__unread(const struct conn *c);
/* Lines wait while a flush is answered or the replies are not read. */
bool conn__held(const struct conn *c);
void conn__start_reading(struct conn *c);
/* Read what the client already sent and is waiting in the kernel. */
void conn__drain(struct conn *c);

#endif
