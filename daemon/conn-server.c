/* conn-server.c - the control socket's listener: accepting, who may
 * connect, the idle and slow-reply sweep, and the server's life (one
 * connection's is conn.c's).
 *
 * Bounds: max_connections and, per peer uid (SO_PEERCRED),
 * max_connections_per_uid (one over either gets an error line and is
 * closed); reserved_connections of max_connections are kept for root
 * and segopsd's own uid, who get them when the rest are taken or their
 * uid is at its cap, so segopsctl works whoever holds the others.
 * A connection whose replies make no progress for reply_timeout is cut
 * off. idle_timeout counts from the last complete line (or the
 * accept), so stray bytes do not keep it open.
 */
#include "conn-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "listen.h"
#include "log.h"

/* ---- lifetime ---- */

void conn__srv_release(struct conn_server *s)
{
        if (--s->open_handles == 0) {
                if (s->d->conns == s)
                        s->d->conns = NULL;
                free(s);
        }
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
        uv_close((uv_handle_t *)&c->pipe, conn__on_closed);
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
                uv_close((uv_handle_t *)&c->pipe, conn__on_closed);
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
        conn__start_reading(c);
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
                                    (unsigned)c->uid, (int)c->pid, conn__unread(c),
                                    cfg->reply_timeout);
                        conn__close(c);
                } else if (idle && !conn__held(c) && now - c->last_line >= idle) {
                        s->d->stats.conn_idle_closed++;
                        conn__close(c);
                }
                c = next;
        }
}

static void on_srv_handle_closed(uv_handle_t *h)
{
        conn__srv_release(h->data);
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
                conn__drain(c);
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
                conn__close(s->conns);
                n++;
        }
        return n;
}
