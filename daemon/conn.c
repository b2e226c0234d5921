/* conn.c - the control socket: a stream listener and its connections.
 *
 * Each connection reads NDJSON through its own framer (bounded buffer),
 * feeds lines to ingest in order, and writes one reply line per op and
 * per rejected line. A flush op makes the connection wait: it stops
 * reading and processing until the flush is answered, so replies stay
 * in order and "events, then ping" means what SPEC section 2 says.
 * Bounds: max_connections and, per peer uid (SO_PEERCRED),
 * max_connections_per_uid (one over either gets an error line and is
 * closed); reserved_connections of max_connections are kept for root
 * and segopsd's own uid, who get them when the rest are taken or their
 * uid is at its cap, so segopsctl works whoever holds the others.
 * Replies are flow-controlled: at max_reply_bytes unread, the
 * connection stops being read and its buffered lines wait, until the
 * client has read down to half of that (one line's reply may go over
 * the mark, never more). A connection whose replies make no progress
 * for reply_timeout is cut off. idle_timeout counts from the last
 * complete line (or the accept), so stray bytes do not keep it open.
 */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "daemon.h"
#include "dgram.h"
#include "framer.h"
#include "ingest.h"
#include "listen.h"
#include "log.h"

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
        bool draining;  /* drain_conn reads: no shutdown until it is done */
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

struct write_req {
        uv_write_t req;
        char data[];
};

static void conn_process(struct conn *c);
static void start_reading(struct conn *c);
static void drain_conn(struct conn *c);

/* ---- lifetime ---- */

static void srv_release(struct conn_server *s)
{
        if (--s->open_handles == 0) {
                if (s->d->conns == s)
                        s->d->conns = NULL;
                free(s);
        }
}

static void on_conn_closed(uv_handle_t *h)
{
        struct conn *c = h->data;
        struct conn_server *s = c->srv;

        framer_free(&c->fr);
        free(c);
        srv_release(s);
}

static void conn_close(struct conn *c)
{
        struct conn_server *s = c->srv;

        if (c->closing)
                return;
        c->closing = true;
        if (c->flush)
                batcher_flush_cancel(&s->d->batcher, c->flush);
        c->flush = NULL;
        for (struct conn **p = &s->conns; *p; p = &(*p)->next) {
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        }
        s->count--;
        s->reserved -= c->reserved;
        uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
        struct conn *c = req->data;

        free(req);
        conn_close(c);
}

/* Close once every reply is written. */
static void conn_finish(struct conn *c)
{
        uv_shutdown_t *req;

        if (c->finishing)
                return;
        c->finishing = true;
        /* Replies queued to a peer that is gone would hold the shutdown
         * back for good. */
        if (c->peer_gone) {
                conn_close(c);
                return;
        }
        req = malloc(sizeof(*req));
        if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) < 0) {
                free(req);
                conn_close(c);
                return;
        }
        req->data = c;
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = false;
}

/* ---- replies ---- */

static size_t unread(const struct conn *c)
{
        return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
}

/* Lines wait while a flush is answered or the replies are not read. */
static bool held(const struct conn *c)
{
        return c->flush != NULL || c->paused;
}

/* Go on with the lines that waited for the client to read. */
static void resume(struct conn *c)
{
        if (held(c) || c->closing)
                return;
        if (c->srv->stopping)
                drain_conn(c);
        else
                conn_process(c);
}

static void on_written(uv_write_t *req, int status)
{
        struct conn *c = req->handle->data;
        struct conn_server *s = c->srv;

        free(req);
        if (c->closing)
                return;
        if (status < 0) {
                /* The peer closed (EPIPE): what it sent is still taken
                 * in, its replies go nowhere. */
                c->peer_gone = true;
                c->paused = false;
                c->stalled_since = 0;
                if (c->finishing) /* its shutdown would never complete */
                        conn_close(c);
                else
                        resume(c);
                return;
        }
        c->stalled_since = unread(c) ? uv_now(s->d->loop) : 0;
        if (c->paused && unread(c) <= s->d->cfg.max_reply_bytes / 2) {
                c->paused = false;
                resume(c);
        }
}

static void conn_write(struct conn *c, const char *p, size_t n)
{
        struct conn_server *s = c->srv;
        struct write_req *w;
        uv_buf_t buf;

        if (c->closing || c->peer_gone)
                return;
        w = malloc(sizeof(*w) + n);
        if (!w) {
                conn_close(c);
                return;
        }
        memcpy(w->data, p, n);
        buf = uv_buf_init(w->data, (unsigned)n);
        if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_written) < 0) {
                free(w);
                conn_close(c);
                return;
        }
        if (unread(c) && !c->stalled_since)
                c->stalled_since = uv_now(s->d->loop);
        /* Flow control: the lines after this one wait until the client
         * reads (on_written resumes them). */
        if (!c->paused && unread(c) >= s->d->cfg.max_reply_bytes) {
                c->paused = true;
                s->d->stats.conn_paused++;
        }
}

#define REPLY_NOMEM "{\"ok\":false,\"error\":\"nomem\",\"detail\":\"out of memory\"}\n"

static void reply_buf(struct conn *c, struct proto_buf *b)
{
        if (b->len)
                conn_write(c, b->data, b->len);
        proto_buf_free(b);
}

static void reply_error(struct conn *c, const struct proto_error *err, uint64_t line)
{
        struct proto_buf b = { 0 };

        if (control_reply_error(&b, err, line) == 0)
                reply_buf(c, &b);
        else
                proto_buf_free(&b);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        struct conn *c = h->data;
        char *p;
        size_t n;

        framer_space(&c->fr, &p, &n);
        *buf = uv_buf_init(p, (unsigned)n);
}

static void reply_flush(struct conn *c, const struct flush_result *res)
{
        struct proto_buf b = { 0 };

        if (control_reply_flush(&b, res) == 0)
                reply_buf(c, &b);
        else
                proto_buf_free(&b);
}

/* Always from a fresh turn of the loop (batcher_flush never answers
 * before it returns), so going on with the next lines here cannot
 * recurse, however many flushes a client stacks up. */
static void on_flushed(void *ud, const struct flush_result *res)
{
        struct conn *c = ud;

        c->flush = NULL;
        /* The client waited on us: its idle time starts at the answer. */
        c->last_line = uv_now(c->srv->d->loop);
        reply_flush(c, res);
        /* During a stop, what the client sent after the flush is still
         * to be read before the connection closes. */
        resume(c);
}

static void run_op(struct conn *c, const struct proto_msg *msg)
{
        struct daemon *d = c->srv->d;
        struct proto_buf b = { 0 };

        /* The events before this op are on disk before it is answered
         * (SPEC section 2: "events, then ping"). */
        batcher_commit(&d->batcher);
        if (msg->op == PROTO_OP_FLUSH) {
                /* Datagrams sent before this flush count too. */
                dgram_drain(d);
                c->flush = batcher_flush(&d->batcher, (uint64_t)msg->timeout_ms, on_flushed, c);
                if (!c->flush) {
                        struct flush_result oom = { .result = -ENOMEM };

                        reply_flush(c, &oom);
                }
                return;
        }
        if (control_reply_sync(d, msg, c->pid, c->uid, &b) == 0) {
                reply_buf(c, &b);
                return;
        }
        proto_buf_free(&b);
        /* The reply could not be built (out of memory): the client still
         * gets a line, or it would wait for one forever. */
        conn_write(c, REPLY_NOMEM, sizeof(REPLY_NOMEM) - 1);
}

static void handle_line(struct conn *c, const struct framer_line *l)
{
        struct daemon *d = c->srv->d;
        struct proto_msg msg;
        struct proto_error err;

        if (l->oversize) {
                err.reason = PROTO_E_OVERSIZE;
                snprintf(err.detail, sizeof(err.detail), "line longer than max_message_bytes (%zu)",
                         d->cfg.max_message_bytes);
                d->stats.line_oversize++;
                ingest_reject(&d->ingest, INGEST_STREAM, NULL, &err);
                reply_error(c, &err, l->line_no);
                return;
        }
        if (ingest_blank(l->data, l->len))
                return;
        switch (ingest_line(&d->ingest, INGEST_STREAM, NULL, l->data, l->len, &msg, &err)) {
        case INGEST_EVENT: break;
        case INGEST_OP: run_op(c, &msg); break;
        case INGEST_REJECTED: reply_error(c, &err, l->line_no); break;
        }
}

/* Handle buffered lines until one makes us wait or none are left. */
static void conn_process(struct conn *c)
{
        struct framer_line l;
        bool any = false;

        /* Once the batcher is closed, nothing more can be taken in. */
        if (batcher_closed(&c->srv->d->batcher)) {
                conn_finish(c);
                return;
        }
        ingest_clock(&c->srv->d->ingest);
        while (!c->closing && !held(c) && framer_next(&c->fr, &l)) {
                c->last_line = uv_now(c->srv->d->loop);
                handle_line(c, &l);
                any = true;
        }
        if (c->closing)
                return;
        if (!held(c) && c->eof) {
                if (framer_finish(&c->fr, &l)) {
                        c->last_line = uv_now(c->srv->d->loop);
                        handle_line(c, &l);
                        any = true;
                }
        }
        if (any) {
                batcher_commit(&c->srv->d->batcher); /* one spool write per read */
                batcher_kick(&c->srv->d->batcher);
        }
        if (c->closing || held(c)) {
                if (c->reading && !c->closing) {
                        uv_read_stop((uv_stream_t *)&c->pipe);
                        c->reading = false;
                }
                return;
        }
        if (c->eof || (c->srv->stopping && !c->draining)) {
                conn_finish(c);
                return;
        }
        if (!c->reading)
                start_reading(c);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
        struct conn *c = st->data;

        if (n == 0)
                return;
        if (n < 0) {
                if (n != UV_EOF) {
                        conn_close(c);
                        return;
                }
                c->eof = true;
        } else {
                framer_commit(&c->fr, (size_t)n);
        }
        conn_process(c);
}

static void start_reading(struct conn *c)
{
        uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
        c->reading = true;
}

/* ---- accepting ---- */

/* The peer's pid and uid (SO_PEERCRED); pid 0 and uid -1 when unknown. */
static void peer_cred(struct conn *c)
{
        struct ucred uc;
        socklen_t len = sizeof(uc);
        uv_os_fd_t fd;

        c->pid = 0;
        c->uid = (uid_t)-1;
        if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
                return;
        c->pid = uc.pid;
        c->uid = uc.uid;
}

/* The connections of one uid outside the reserve. */
static unsigned conns_of_uid(const struct conn_server *s, uid_t uid)
{
        unsigned n = 0;

        for (const struct conn *c = s->conns; c; c = c->next)
                n += c->uid == uid && !c->reserved;
        return n;
}

enum admit { ADMIT, ADMIT_RESERVED, REFUSE_UID, REFUSE_FULL };

/* Who gets in (s->count < max_connections already): anyone while the
 * connections outside the reserve have room and the uid is under its
 * cap; root and our own uid then into the reserve while it has room. */
static enum admit admit(const struct conn_server *s, uid_t uid)
{
        const struct cfg *cfg = &s->d->cfg;
        unsigned reserve = cfg->reserved_connections;
        bool full = s->count - s->reserved + reserve >= cfg->max_connections;
        bool uid_full = cfg->max_connections_per_uid &&
                        conns_of_uid(s, uid) >= cfg->max_connections_per_uid;

        if (!full && !uid_full)
                return ADMIT;
        if ((uid == 0 || uid == s->euid) && s->reserved < reserve)
                return ADMIT_RESERVED;
        return full ? REFUSE_FULL : REFUSE_UID;
}

#define REFUSED_FULL                                                                               \
        "{\"ok\":false,\"error\":\"too_many_connections\","                                        \
        "\"detail\":\"segopsd is at max_connections; try again later\"}\n"

/* Over a cap: the error line, then close; the connection never joined
 * the list. */
static void refuse_conn(struct conn *c, enum admit why)
{
        static const char uid_msg[] =
                "{\"ok\":false,\"error\":\"too_many_connections\","
                "\"detail\":\"this user has max_connections_per_uid open; close some\"}\n";
        static const char full_msg[] = REFUSED_FULL;
        struct conn_server *s = c->srv;
        uv_buf_t buf;

        if (why == REFUSE_UID) {
                s->d->stats.conn_refused_uid++;
                log_limited(LOG_WARNING, "max_connections_per_uid",
                            "refused a control connection from uid %u (pid %d): "
                            "max_connections_per_uid (%u) reached",
                            (unsigned)c->uid, (int)c->pid, s->d->cfg.max_connections_per_uid);
                buf = uv_buf_init((char *)uid_msg, sizeof(uid_msg) - 1);
        } else {
                s->d->stats.conn_refused++;
                log_limited(LOG_WARNING, "max_connections",
                            "refused a control connection from uid %u (pid %d): "
                            "max_connections (%u) reached, of them "
                            "reserved_connections (%u) for root and segopsd's user",
                            (unsigned)c->uid, (int)c->pid, s->d->cfg.max_connections,
                            s->d->cfg.reserved_connections);
                buf = uv_buf_init((char *)full_msg, sizeof(full_msg) - 1);
        }
        uv_try_write((uv_stream_t *)&c->pipe, &buf, 1);
        uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

/* The table is full: nobody can get in, whoever it is. */
static void refuse(struct conn_server *s)
{
        static const char msg[] = REFUSED_FULL;
        uv_pipe_t *p = malloc(sizeof(*p));
        uv_buf_t buf = uv_buf_init((char *)msg, sizeof(msg) - 1);

        s->d->stats.conn_refused++;
        log_limited(LOG_WARNING, "max_connections",
                    "refused a control connection: "
                    "max_connections (%u) reached",
                    s->d->cfg.max_connections);
        if (!p)
                return;
        uv_pipe_init(s->d->loop, p, 0);
        if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)p) == 0)
                uv_try_write((uv_stream_t *)p, &buf, 1);
        uv_close((uv_handle_t *)p, (uv_close_cb)free);
}

static void on_connection(uv_stream_t *l, int status)
{
        struct conn_server *s = l->data;
        struct conn *c;
        enum admit why;

        if (status < 0) {
                log_limited(LOG_ERR, "accept", "control socket: %s", uv_strerror(status));
                return;
        }
        if (s->count >= s->d->cfg.max_connections) {
                refuse(s);
                return;
        }
        c = calloc(1, sizeof(*c));
        if (!c || framer_init(&c->fr, s->d->cfg.max_message_bytes) < 0) {
                free(c);
                refuse(s);
                return;
        }
        uv_pipe_init(s->d->loop, &c->pipe, 0);
        c->pipe.data = c;
        c->srv = s;
        s->open_handles++;
        if (uv_accept(l, (uv_stream_t *)&c->pipe) < 0) {
                uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
                return;
        }
        peer_cred(c);
        why = admit(s, c->uid);
        if (why == REFUSE_UID || why == REFUSE_FULL) {
                refuse_conn(c, why);
                return;
        }
        if (why == ADMIT_RESERVED) {
                c->reserved = true;
                s->reserved++;
                s->d->stats.conn_reserved++;
                log_limited(LOG_WARNING, "reserved_connections",
                            "control connection from uid %u (pid %d) admitted to "
                            "reserved_connections (%u of %u in use): the others are taken",
                            (unsigned)c->uid, (int)c->pid, s->reserved,
                            s->d->cfg.reserved_connections);
        }
        c->next = s->conns;
        s->conns = c;
        s->count++;
        s->d->stats.conn_accepted++;
        c->last_line = uv_now(s->d->loop);
        start_reading(c);
}

static uint64_t ms_of(double seconds)
{
        return (uint64_t)(seconds * 1000.0);
}

static void on_sweep(uv_timer_t *t)
{
        struct conn_server *s = t->data;
        const struct cfg *cfg = &s->d->cfg;
        uint64_t now = uv_now(s->d->loop), idle = ms_of(cfg->idle_timeout),
                 stuck = ms_of(cfg->reply_timeout);
        struct conn *c = s->conns;

        while (c) {
                struct conn *next = c->next;
                if (stuck && c->stalled_since && now - c->stalled_since >= stuck) {
                        s->d->stats.conn_slow_closed++;
                        log_limited(LOG_WARNING, "slow_client",
                                    "closing a control connection from uid %u (pid %d): "
                                    "%zu bytes of replies unread for reply_timeout (%g s)",
                                    (unsigned)c->uid, (int)c->pid, unread(c), cfg->reply_timeout);
                        conn_close(c);
                } else if (idle && !held(c) && now - c->last_line >= idle) {
                        s->d->stats.conn_idle_closed++;
                        conn_close(c);
                }
                c = next;
        }
}

static void on_srv_handle_closed(uv_handle_t *h)
{
        srv_release(h->data);
}

static void srv_close_handles(struct conn_server *s)
{
        s->stopping = true;
        uv_close((uv_handle_t *)&s->listener, on_srv_handle_closed);
        uv_close((uv_handle_t *)&s->sweep, on_srv_handle_closed);
}

int conn_server_open(struct daemon *d)
{
        struct conn_server *s;
        char err[512];
        int fd, r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->d = d;
        s->euid = geteuid();
        fd = listen_unix(d->cfg.control_socket, SOCK_STREAM, d->cfg.socket_mode,
                         d->cfg.socket_group, &s->adopted, err, sizeof(err));
        if (fd < 0) {
                log_err("control socket %s", err);
                free(s);
                return fd;
        }
        uv_pipe_init(d->loop, &s->listener, 0);
        uv_timer_init(d->loop, &s->sweep);
        s->listener.data = s;
        s->sweep.data = s;
        s->open_handles = 2;
        r = uv_pipe_open(&s->listener, fd);
        if (r < 0)
                close(fd);
        else
                r = uv_listen((uv_stream_t *)&s->listener, SOMAXCONN, on_connection);
        if (r < 0) {
                log_err("control socket %s: %s", d->cfg.control_socket, uv_strerror(r));
                srv_close_handles(s);
                return r;
        }
        /* A quarter of the shorter timeout: each is kept to within a
         * quarter of its length. */
        if (d->cfg.idle_timeout > 0 || d->cfg.reply_timeout > 0) {
                uint64_t idle = ms_of(d->cfg.idle_timeout), stuck = ms_of(d->cfg.reply_timeout);
                uint64_t every = (!idle || (stuck && stuck < idle) ? stuck : idle) / 4;

                uv_timer_start(&s->sweep, on_sweep, every ? every : 1, every ? every : 1);
        }
        d->conns = s;
        return 0;
}

bool conn_server_adopted(const struct daemon *d)
{
        return d->conns && d->conns->adopted;
}

/* Read what the client already sent and is waiting in the kernel. */
static void drain_conn(struct conn *c)
{
        uv_os_fd_t fd;

        if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0)
                return;
        /* The replies of each read are written after the one before:
         * the connection is shut (conn_finish) only after the last. */
        c->draining = true;
        for (int i = 0; i < 1024 && !c->closing && !held(c) && !c->eof; i++) {
                char *p;
                size_t n;
                ssize_t r;

                framer_space(&c->fr, &p, &n);
                r = recv(fd, p, n, MSG_DONTWAIT);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        c->eof = r == 0;
                        break;
                }
                framer_commit(&c->fr, (size_t)r);
                conn_process(c);
        }
        c->draining = false;
        conn_process(c);
}

void conn_server_close(struct daemon *d)
{
        struct conn_server *s = d->conns;
        struct conn *c, *next;

        if (!s || s->stopping)
                return;
        s->stopping = true;
        /* A connection waiting for a flush stays open: the flush is
         * answered when the stop has sent everything (or gives up). */
        for (c = s->conns; c; c = next) {
                next = c->next;
                drain_conn(c);
        }
        srv_close_handles(s);
}

bool conn_server_flushing(const struct daemon *d)
{
        const struct conn *c;

        for (c = d->conns ? d->conns->conns : NULL; c; c = c->next)
                if (c->flush)
                        return true;
        return false;
}

unsigned conn_server_abort(struct daemon *d)
{
        struct conn_server *s = d->conns;
        unsigned n = 0;

        if (!s)
                return 0;
        /* A client that does not read would hold its shutdown (and so
         * the stop) forever: uv_close cancels what is still queued. */
        while (s->conns) {
                conn_close(s->conns);
                n++;
        }
        return n;
}
