/* sink-http.c - the sink's HTTP/1.1 server: just the part of the
 * protocol segopsd's curl speaks, and fast.
 *
 * One thread, level-triggered epoll in the caller's set and loop. It
 * accepts up to HTTP_MAX_CONNS connections on 127.0.0.1 (TCP_NODELAY),
 * reads requests with a Content-Length body (chunked ones get 411: the
 * daemon knows its body length, so the sink says so loudly instead of
 * coping), answers "Expect: 100-continue", keeps connections alive
 * unless told otherwise, and sends one response at a time. What a
 * request means is the handler's business (sink.c). Every resource is
 * bounded: 16 KiB of headers, 8 MiB of body, 1 KiB per response.
 */
#include "sink-http.h"
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEADER_BYTES (16u * 1024)
#define MAX_BODY_BYTES (8u * 1024 * 1024)
#define INITIAL_IN_CAP (64u * 1024)
#define OUT_CAP 1024
#define READ_ROUNDS 64

struct http_conn {
        int fd;
        char *in; /* bytes read, not yet consumed */
        size_t in_len;
        size_t in_cap;
        char out[OUT_CAP]; /* one response at a time */
        size_t out_len;
        size_t out_off;
        bool close_after;   /* close once out is sent */
        bool sent_continue; /* "100 Continue" already queued this request */
        bool want_out;      /* EPOLLOUT registered instead of EPOLLIN */
};

static void conn_set_events(struct http_server *srv, struct http_conn *c, bool want_out)
{
        struct epoll_event ev = { .events = want_out ? EPOLLOUT : EPOLLIN, .data.ptr = c };

        if (c->want_out == want_out)
                return;
        c->want_out = want_out;
        (void)epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(struct http_server *srv, struct http_conn *c)
{
        unsigned i;

        for (i = 0; i < srv->nconns; i++) {
                if (srv->conns[i] == c) {
                        srv->conns[i] = srv->conns[--srv->nconns];
                        break;
                }
        }
        close(c->fd); /* also removes it from the epoll set */
        free(c->in);
        free(c);
}

static int queue_response(struct http_conn *c, int status, const char *reason, const char *body)
{
        size_t blen = strlen(body);
        int r;

        assert(c->out_len == 0);
        r = snprintf(c->out, sizeof(c->out),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     status, reason, blen, c->close_after ? "Connection: close\r\n" : "", body);
        if (r < 0 || (size_t)r >= sizeof(c->out))
                return -ENOSPC;
        c->out_len = (size_t)r;
        c->out_off = 0;
        return 0;
}

/* Send what is pending. Returns 0 when all is out, 1 when the socket is
 * full, -errno to close. */
static int conn_flush(struct http_conn *c)
{
        unsigned rounds;

        for (rounds = 0; c->out_off < c->out_len && rounds < 16; rounds++) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 1;
                        return -errno;
                }
                c->out_off += (size_t)n;
        }
        if (c->out_off < c->out_len)
                return 1;
        c->out_len = c->out_off = 0;
        return c->close_after ? -ECONNRESET : 0;
}

/* s (len bytes) is word, in any case: a header's name or value. */
static bool word_is(const char *s, size_t len, const char *word)
{
        return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

/* The request line, buf up to eol: METHOD SP PATH SP HTTP/1.x. Returns
 * 0 or -EBADMSG. */
static int parse_request_line(const char *buf, const char *eol, struct http_request *rq)
{
        const char *sp1, *sp2;

        sp1 = memchr(buf, ' ', (size_t)(eol - buf));
        if (!sp1 || (size_t)(sp1 - buf) >= sizeof(rq->method))
                return -EBADMSG;
        sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
        if (!sp2 || (size_t)(sp2 - sp1 - 1) >= sizeof(rq->path))
                return -EBADMSG;
        memcpy(rq->method, buf, (size_t)(sp1 - buf));
        memcpy(rq->path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
        if (eol - sp2 - 1 != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
                return -EBADMSG;
        rq->close = sp2[8] == '0'; /* HTTP/1.0 closes unless told otherwise */
        return 0;
}

static int parse_content_length(const char *v, size_t vlen, struct http_request *rq,
                                int *ret_status)
{
        char num[24];
        uint64_t cl;

        if (vlen == 0 || vlen >= sizeof(num))
                return -EBADMSG;
        memcpy(num, v, vlen);
        num[vlen] = '\0';
        if (bench_parse_u64(num, 0, UINT64_MAX, &cl) < 0)
                return -EBADMSG;
        if (cl > MAX_BODY_BYTES) {
                *ret_status = 413;
                return -EFBIG;
        }
        rq->content_length = (size_t)cl;
        rq->has_length = true;
        return 0;
}

/* One header field, line up to eol: takes what the sink heeds of it into
 * rq. Returns 0, or a negative errno with an HTTP status in *ret_status. */
static int parse_field(const char *line, const char *eol, struct http_request *rq, int *ret_status)
{
        const char *colon = memchr(line, ':', (size_t)(eol - line)), *v;
        size_t nlen, vlen;

        if (!colon)
                return -EBADMSG;
        nlen = (size_t)(colon - line);
        for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
                ;
        vlen = (size_t)(eol - v);
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;

        if (word_is(line, nlen, "content-length"))
                return parse_content_length(v, vlen, rq, ret_status);
        if (word_is(line, nlen, "content-encoding")) {
                if (word_is(v, vlen, "gzip")) {
                        rq->gzip = true;
                } else if (!word_is(v, vlen, "identity")) {
                        *ret_status = 415;
                        return -EPROTONOSUPPORT;
                }
        } else if (word_is(line, nlen, "transfer-encoding")) {
                /* The daemon knows its body length; chunked would only
                 * cost it. Say so loudly instead of coping. */
                *ret_status = 411;
                return -EPROTONOSUPPORT;
        } else if (word_is(line, nlen, "connection")) {
                if (word_is(v, vlen, "close"))
                        rq->close = true;
                else if (word_is(v, vlen, "keep-alive"))
                        rq->close = false;
        } else if (word_is(line, nlen, "expect")) {
                if (word_is(v, vlen, "100-continue"))
                        rq->expect_continue = true;
        }
        return 0;
}

/* Parse the head of the request at c->in. Returns 1 with *rq filled when
 * the head is complete, 0 when more bytes are needed, -errno (with an HTTP
 * status in *ret_status) when it is malformed. */
static int parse_head(const struct http_conn *c, struct http_request *rq, int *ret_status)
{
        const char *buf = c->in, *end, *line, *eol;
        size_t scan = c->in_len < MAX_HEADER_BYTES ? c->in_len : MAX_HEADER_BYTES;
        int r;

        memset(rq, 0, sizeof(*rq));
        end = memmem(buf, scan, "\r\n\r\n", 4);
        if (!end) {
                if (c->in_len >= MAX_HEADER_BYTES) {
                        *ret_status = 431;
                        return -EMSGSIZE;
                }
                return 0;
        }
        rq->header_len = (size_t)(end - buf) + 4;
        *ret_status = 400;
        eol = memmem(buf, rq->header_len, "\r\n", 2);
        r = parse_request_line(buf, eol, rq);
        if (r < 0)
                return r;
        for (line = eol + 2; line < end + 2; line = eol + 2) {
                eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
                if (!eol || eol == line)
                        break;
                r = parse_field(line, eol, rq, ret_status);
                if (r < 0)
                        return r;
        }
        if (!rq->has_length && strcmp(rq->method, "POST") == 0) {
                *ret_status = 411;
                return -EBADMSG;
        }
        return 1;
}

/* Ask the handler, queue its answer. 0 or a negative errno (close). */
static int conn_answer(struct http_server *srv, struct http_conn *c, const struct http_request *rq)
{
        struct http_reply reply = { 0 };
        int r;

        r = srv->handler(srv->ctx, rq, c->in + rq->header_len, &reply);
        if (r < 0)
                return r;
        return queue_response(c, reply.status, reply.reason, reply.body);
}

/* Drop the consumed request from the input; give back a grown buffer. */
static void conn_consume(struct http_conn *c, size_t used)
{
        assert(used <= c->in_len);
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        c->sent_continue = false;
        if (c->in_cap > INITIAL_IN_CAP && c->in_len <= INITIAL_IN_CAP) {
                char *p = realloc(c->in, INITIAL_IN_CAP);

                if (p) {
                        c->in = p;
                        c->in_cap = INITIAL_IN_CAP;
                }
        }
}

/* Serve the complete requests in c->in, one response at a time. Returns 0
 * when more input is wanted, 1 when output is pending, -errno to close. */
static int conn_process(struct http_server *srv, struct http_conn *c)
{
        unsigned rounds;

        for (rounds = 0; rounds < 64; rounds++) {
                struct http_request rq;
                int status = 400, r;
                size_t need;

                if (c->out_len) {
                        r = conn_flush(c);
                        if (r != 0)
                                return r;
                }
                r = parse_head(c, &rq, &status);
                if (r < 0) {
                        c->close_after = true;
                        c->in_len = 0;
                        (void)queue_response(c, status, "Error", "{\"error\":\"bad request\"}");
                        return conn_flush(c) == 1 ? 1 : -ECONNRESET;
                }
                if (r == 0)
                        return 0;
                need = rq.header_len + rq.content_length;
                if (c->in_len < need) {
                        if (need > c->in_cap) {
                                char *p = realloc(c->in, need);

                                if (!p)
                                        return -ENOMEM;
                                c->in = p;
                                c->in_cap = need;
                        }
                        if (rq.expect_continue && !c->sent_continue) {
                                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

                                memcpy(c->out, cont, sizeof(cont) - 1);
                                c->out_len = sizeof(cont) - 1;
                                c->out_off = 0;
                                c->sent_continue = true;
                                continue;
                        }
                        return 0;
                }
                c->close_after = rq.close;
                r = conn_answer(srv, c, &rq);
                if (r < 0)
                        return r;
                conn_consume(c, need);
        }
        return c->out_len ? 1 : 0;
}

static void conn_on_event(struct http_server *srv, struct http_conn *c, uint32_t events)
{
        unsigned rounds;
        int r;

        if (events & EPOLLOUT) {
                r = conn_process(srv, c);
                if (r < 0)
                        goto close;
                if (r == 1)
                        return;
                conn_set_events(srv, c, false);
        }
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return;
        /* Level-triggered: reading a bounded number of rounds is enough,
         * epoll calls again for what is left. */
        for (rounds = 0; rounds < READ_ROUNDS; rounds++) {
                ssize_t n;

                r = conn_process(srv, c);
                if (r < 0)
                        goto close;
                if (r == 1) {
                        conn_set_events(srv, c, true);
                        return;
                }
                if (c->in_len == c->in_cap)
                        return; /* cannot happen: process grows or fails */
                n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        goto close;
                }
                if (n == 0)
                        goto close;
                c->in_len += (size_t)n;
        }
        r = conn_process(srv, c);
        if (r < 0)
                goto close;
        if (r == 1)
                conn_set_events(srv, c, true);
        return;
close:
        conn_close(srv, c);
}

static void accept_conns(struct http_server *srv)
{
        unsigned rounds;

        for (rounds = 0; rounds < 64; rounds++) {
                struct epoll_event ev = { .events = EPOLLIN };
                struct http_conn *c;
                int one = 1;
                int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return; /* EAGAIN, or EMFILE: retried next wakeup */
                }
                if (srv->nconns >= HTTP_MAX_CONNS) {
                        srv->refused++;
                        close(fd);
                        continue;
                }
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c = calloc(1, sizeof(*c));
                if (c)
                        c->in = malloc(INITIAL_IN_CAP);
                if (!c || !c->in) {
                        if (c)
                                free(c);
                        close(fd);
                        continue;
                }
                c->fd = fd;
                c->in_cap = INITIAL_IN_CAP;
                ev.data.ptr = c;
                if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        free(c->in);
                        free(c);
                        close(fd);
                        continue;
                }
                srv->conns[srv->nconns++] = c;
        }
}

void http_init(struct http_server *srv, http_handler_fn handler, void *ctx)
{
        *srv = (struct http_server){ .epfd = -1, .lfd = -1, .handler = handler, .ctx = ctx };
}

int http_listen(struct http_server *srv, int epfd, unsigned port, unsigned *ret_port)
{
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                  .sin_port = htons((uint16_t)port) };
        socklen_t salen = sizeof(sa);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = srv };
        int one = 1;

        srv->epfd = epfd;
        srv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (srv->lfd < 0)
                return -errno;
        (void)setsockopt(srv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(srv->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(srv->lfd, 128) < 0 ||
            getsockname(srv->lfd, (struct sockaddr *)&sa, &salen) < 0)
                return -errno;
        if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &ev) < 0)
                return -errno;
        *ret_port = ntohs(sa.sin_port);
        return 0;
}

void http_on_event(struct http_server *srv, void *ptr, uint32_t events)
{
        if (ptr == srv)
                accept_conns(srv);
        else
                conn_on_event(srv, ptr, events);
}

void http_close(struct http_server *srv)
{
        while (srv->nconns)
                conn_close(srv, srv->conns[0]);
        if (srv->lfd >= 0)
                close(srv->lfd);
        srv->lfd = -1;
}
