/* conn.c - one connection of the control socket: reading, replies,
 * closing.
 *
 * Each connection reads NDJSON through its own framer (bounded buffer),
 * feeds lines to ingest in order, and writes one reply line per op and
 * per rejected line. A flush op makes the connection wait: it stops
 * reading and processing until the flush is answered, so replies stay
 * in order and "events, then ping" means what SPEC section 2 says.
 * Replies are flow-controlled: at max_reply_bytes unread, the
 * connection stops being read and its buffered lines wait, until the
 * client has read down to half of that (one line's reply may go over
 * the mark, never more). Accepting, the caps and the timeouts are
 * conn-server.c's.
 */
#include "conn-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "control.h"
#include "daemon.h"
#include "dgram.h"
#include "framer.h"
#include "ingest.h"

struct write_req {
        uv_write_t req;
        char data[];
};

static void conn_process(struct conn *c);

/* ---- lifetime ---- */

void conn__on_closed(uv_handle_t *h)
{
        struct conn *c = h->data;
        struct conn_server *s = c->srv;

        framer_free(&c->fr);
        free(c);
        conn__srv_release(s);
}

void conn__close(struct conn *c)
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
        uv_close((uv_handle_t *)&c->pipe, conn__on_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
        struct conn *c = req->data;

        free(req);
        conn__close(c);
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
                conn__close(c);
                return;
        }
        req = malloc(sizeof(*req));
        if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) < 0) {
                free(req);
                conn__close(c);
                return;
        }
        req->data = c;
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = false;
}

/* ---- replies ---- */

size_t conn__unread(const struct conn *c)
{
        return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
}

/* Lines wait while a flush is answered or the replies are not read. */
bool conn__held(const struct conn *c)
{
        return c->flush != NULL || c->paused;
}

/* Go on with the lines that waited for the client to read. */
static void resume(struct conn *c)
{
        if (conn__held(c) || c->closing)
                return;
        if (c->srv->stopping)
                conn__drain(c);
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
                        conn__close(c);
                else
                        resume(c);
                return;
        }
        c->stalled_since = conn__unread(c) ? uv_now(s->d->loop) : 0;
        if (c->paused && conn__unread(c) <= s->d->cfg.max_reply_bytes / 2) {
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
                conn__close(c);
                return;
        }
        memcpy(w->data, p, n);
        buf = uv_buf_init(w->data, (unsigned)n);
        if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_written) < 0) {
                free(w);
                conn__close(c);
                return;
        }
        if (conn__unread(c) && !c->stalled_since)
                c->stalled_since = uv_now(s->d->loop);
        /* Flow control: the lines after this one wait until the client
         * reads (on_written resumes them). */
        if (!c->paused && conn__unread(c) >= s->d->cfg.max_reply_bytes) {
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
        while (!c->closing && !conn__held(c) && framer_next(&c->fr, &l)) {
                c->last_line = uv_now(c->srv->d->loop);
                handle_line(c, &l);
                any = true;
        }
        if (c->closing)
                return;
        if (!conn__held(c) && c->eof) {
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
        if (c->closing || conn__held(c)) {
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
                conn__start_reading(c);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
        struct conn *c = st->data;

        if (n == 0)
                return;
        if (n < 0) {
                if (n != UV_EOF) {
                        conn__close(c);
                        return;
                }
                c->eof = true;
        } else {
                framer_commit(&c->fr, (size_t)n);
        }
        conn_process(c);
}

void conn__start_reading(struct conn *c)
{
        uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
        c->reading = true;
}

/* Read what the client already sent and is waiting in the kernel. */
void conn__drain(struct conn *c)
{
        uv_os_fd_t fd;

        if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0)
                return;
        /* The replies of each read are written after the one before:
         * the connection is shut (conn_finish) only after the last. */
        c->draining = true;
        for (int i = 0; i < 1024 && !c->closing && !conn__held(c) && !c->eof; i++) {
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
