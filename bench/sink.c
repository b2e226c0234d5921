/* sink.c - a fast local stand-in for the upstream, for the throughput
 * benchmark.
 *
 * It answers HTTP/1.1 on 127.0.0.1 with keep-alive, one thread, epoll. For
 * POST /api/events/batch/ it reads the Content-Length body (gunzipping it
 * when Content-Encoding is gzip), scans it for every "event_id":"…" value
 * and records the ids of the form e<N>, N < --expect, in a bitmap, so the
 * benchmark can tell how many distinct events arrived and how many came
 * twice; other ids are only counted as "foreign". It replies 200
 * {"accepted":A,"duplicates":D} like the real upstream. GET /_count, and
 * SIGTERM/SIGINT (on stdout, then exit), report the totals with the
 * CLOCK_MONOTONIC times of the first and last event arrival. A scan rather
 * than a JSON parser is deliberate: the daemon writes compact JSON and the
 * sink must not be the bottleneck. Every resource is bounded: 256
 * connections, 16 KiB of headers, 8 MiB of body, 32 MiB gunzipped.
 */
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_CONNS 256
#define MAX_HEADER_BYTES (16u * 1024)
#define MAX_BODY_BYTES (8u * 1024 * 1024)
#define MAX_PLAIN_BYTES (32u * 1024 * 1024)
#define MAX_EXPECT UINT64_C(100000000)
#define INITIAL_IN_CAP (64u * 1024)
#define OUT_CAP 1024
#define READ_ROUNDS 64

struct conn {
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

struct counts {
        uint64_t unique;
        uint64_t duplicates;
        uint64_t foreign;  /* ids outside e0..e<expect-1> */
        uint64_t events;   /* every id seen */
        uint64_t requests; /* batch POSTs */
        uint64_t bytes;    /* batch bodies as received on the wire */
        uint64_t first_ns;
        uint64_t last_ns;
};

struct sink {
        int epfd;
        int lfd;
        int sigfd;
        uint64_t expect;
        uint8_t *seen; /* bitmap of expect bits */
        struct counts n;
        struct conn *conns[MAX_CONNS];
        unsigned nconns;
        uint64_t refused; /* connections closed at the cap */
        char *plain;      /* gunzip output, reused */
        size_t plain_cap;
};

struct request {
        char method[8];
        char path[64];
        size_t header_len; /* through the blank line */
        size_t content_length;
        bool gzip;
        bool expect_continue;
        bool close;
};

static int format_counts(const struct sink *s, char *buf, size_t len)
{
        int r = snprintf(buf, len,
                         "{\"unique\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"foreign\":%" PRIu64
                         ",\"events\":%" PRIu64 ",\"requests\":%" PRIu64 ",\"bytes\":%" PRIu64
                         ",\"expect\":%" PRIu64 ",\"first_ns\":%" PRIu64 ",\"last_ns\":%" PRIu64
                         "}",
                         s->n.unique, s->n.duplicates, s->n.foreign, s->n.events, s->n.requests,
                         s->n.bytes, s->expect, s->n.first_ns, s->n.last_ns);
        if (r < 0 || (size_t)r >= len)
                return -ENOSPC;
        return r;
}

/* Record one id. Returns true when it was new (or foreign: the upstream
 * would accept those too). */
static bool record_id(struct sink *s, const char *v, size_t len)
{
        uint64_t id = 0;
        size_t i;

        s->n.events++;
        if (len < 2 || len > 20 || v[0] != 'e')
                goto foreign;
        for (i = 1; i < len; i++) {
                if (v[i] < '0' || v[i] > '9')
                        goto foreign;
                id = id * 10 + (uint64_t)(v[i] - '0');
                if (id >= s->expect)
                        goto foreign;
        }
        if (s->seen[id >> 3] & (1u << (id & 7))) {
                s->n.duplicates++;
                return false;
        }
        s->seen[id >> 3] |= (uint8_t)(1u << (id & 7));
        s->n.unique++;
        return true;
foreign:
        s->n.foreign++;
        return true;
}

/* Find every "event_id" : "value" in body; count new ones and repeats. */
static void scan_ids(struct sink *s, const char *body, size_t len, uint64_t *ret_accepted,
                     uint64_t *ret_dups)
{
        static const char key[] = "\"event_id\"";
        const char *p = body, *end = body + len;
        uint64_t acc = 0, dup = 0;

        while (p < end) {
                const char *hit = memmem(p, (size_t)(end - p), key, sizeof(key) - 1);
                const char *v;

                if (!hit)
                        break;
                p = hit + sizeof(key) - 1;
                while (p < end && (*p == ' ' || *p == '\t'))
                        p++;
                if (p >= end || *p != ':')
                        continue; /* "event_id" as a value, not a key */
                p++;
                while (p < end && (*p == ' ' || *p == '\t'))
                        p++;
                if (p >= end || *p != '"')
                        continue;
                v = ++p;
                while (p < end && *p != '"' && *p != '\\')
                        p++;
                if (p >= end)
                        break;
                if (record_id(s, v, (size_t)(p - v)))
                        acc++;
                else
                        dup++;
        }
        *ret_accepted = acc;
        *ret_dups = dup;
}

/* Gunzip in into s->plain. Returns the length, or -EBADMSG / -EFBIG /
 * -ENOMEM. */
static long gunzip(struct sink *s, const char *in, size_t len)
{
        z_stream z;
        long r;
        int zr;

        memset(&z, 0, sizeof(z));
        if (inflateInit2(&z, 15 + 16) != Z_OK)
                return -ENOMEM;
        z.next_in = (Bytef *)(uintptr_t)in;
        z.avail_in = (uInt)len;
        for (;;) {
                if (z.total_out == s->plain_cap) {
                        size_t cap = s->plain_cap ? s->plain_cap * 2 : 1u << 20;
                        char *p;

                        if (s->plain_cap >= MAX_PLAIN_BYTES) {
                                r = -EFBIG;
                                goto out;
                        }
                        if (cap > MAX_PLAIN_BYTES)
                                cap = MAX_PLAIN_BYTES;
                        p = realloc(s->plain, cap);
                        if (!p) {
                                r = -ENOMEM;
                                goto out;
                        }
                        s->plain = p;
                        s->plain_cap = cap;
                }
                z.next_out = (Bytef *)s->plain + z.total_out;
                z.avail_out = (uInt)(s->plain_cap - z.total_out);
                zr = inflate(&z, Z_NO_FLUSH);
                if (zr == Z_STREAM_END)
                        break;
                if (zr != Z_OK && zr != Z_BUF_ERROR) {
                        r = -EBADMSG;
                        goto out;
                }
                if (zr == Z_BUF_ERROR && z.avail_in == 0) {
                        r = -EBADMSG; /* truncated */
                        goto out;
                }
        }
        r = (long)z.total_out;
out:
        inflateEnd(&z);
        return r;
}

static void conn_set_events(struct sink *s, struct conn *c, bool want_out)
{
        struct epoll_event ev = { .events = want_out ? EPOLLOUT : EPOLLIN, .data.ptr = c };

        if (c->want_out == want_out)
                return;
        c->want_out = want_out;
        (void)epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(struct sink *s, struct conn *c)
{
        unsigned i;

        for (i = 0; i < s->nconns; i++) {
                if (s->conns[i] == c) {
                        s->conns[i] = s->conns[--s->nconns];
                        break;
                }
        }
        close(c->fd); /* also removes it from the epoll set */
        free(c->in);
        free(c);
}

static int queue_response(struct conn *c, int status, const char *reason, const char *body)
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
static int conn_flush(struct conn *c)
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

static bool name_is(const char *line, size_t nlen, const char *name)
{
        return strlen(name) == nlen && strncasecmp(line, name, nlen) == 0;
}

/* Parse the head of the request at c->in. Returns 1 with *rq filled when
 * the head is complete, 0 when more bytes are needed, -errno (with an HTTP
 * status in *ret_status) when it is malformed. */
static int parse_head(const struct conn *c, struct request *rq, int *ret_status)
{
        const char *buf = c->in, *end, *line, *eol, *sp1, *sp2;
        size_t scan = c->in_len < MAX_HEADER_BYTES ? c->in_len : MAX_HEADER_BYTES;
        bool http10, has_length = false;

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

        /* Request line: METHOD SP PATH SP HTTP/1.x */
        eol = memmem(buf, rq->header_len, "\r\n", 2);
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
        http10 = sp2[8] == '0';
        rq->close = http10;

        for (line = eol + 2; line < end + 2; line = eol + 2) {
                const char *colon, *v;
                size_t nlen, vlen;

                eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
                if (!eol || eol == line)
                        break;
                colon = memchr(line, ':', (size_t)(eol - line));
                if (!colon)
                        return -EBADMSG;
                nlen = (size_t)(colon - line);
                for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
                        ;
                vlen = (size_t)(eol - v);
                while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                        vlen--;

                if (name_is(line, nlen, "content-length")) {
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
                        has_length = true;
                } else if (name_is(line, nlen, "content-encoding")) {
                        if (vlen == 4 && strncasecmp(v, "gzip", 4) == 0)
                                rq->gzip = true;
                        else if (!(vlen == 8 && strncasecmp(v, "identity", 8) == 0)) {
                                *ret_status = 415;
                                return -EPROTONOSUPPORT;
                        }
                } else if (name_is(line, nlen, "transfer-encoding")) {
                        /* The daemon knows its body length; chunked would
                         * only cost it. Say so loudly instead of coping. */
                        *ret_status = 411;
                        return -EPROTONOSUPPORT;
                } else if (name_is(line, nlen, "connection")) {
                        if (vlen == 5 && strncasecmp(v, "close", 5) == 0)
                                rq->close = true;
                        else if (vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0)
                                rq->close = false;
                } else if (name_is(line, nlen, "expect")) {
                        if (vlen == 12 && strncasecmp(v, "100-continue", 12) == 0)
                                rq->expect_continue = true;
                }
        }
        if (!has_length && strcmp(rq->method, "POST") == 0) {
                *ret_status = 411;
                return -EBADMSG;
        }
        return 1;
}

static int handle_batch(struct sink *s, struct conn *c, const struct request *rq)
{
        const char *body = c->in + rq->header_len;
        size_t len = rq->content_length;
        uint64_t acc, dup, t;
        char resp[96];

        s->n.requests++;
        s->n.bytes += len;
        if (rq->gzip) {
                long plain = gunzip(s, body, len);

                if (plain < 0) {
                        fprintf(stderr, "sink: bad gzip body: %s\n", strerror((int)-plain));
                        return queue_response(c, 400, "Bad Request", "{\"error\":\"bad gzip\"}");
                }
                body = s->plain;
                len = (size_t)plain;
        }
        scan_ids(s, body, len, &acc, &dup);
        if (acc + dup > 0) {
                t = bench_now_ns();
                if (s->n.first_ns == 0)
                        s->n.first_ns = t;
                s->n.last_ns = t;
        }
        snprintf(resp, sizeof(resp), "{\"accepted\":%" PRIu64 ",\"duplicates\":%" PRIu64 "}", acc,
                 dup);
        return queue_response(c, 200, "OK", resp);
}

static int handle_request(struct sink *s, struct conn *c, const struct request *rq)
{
        char body[512];

        if (strcmp(rq->method, "POST") == 0 && strcmp(rq->path, "/api/events/batch/") == 0)
                return handle_batch(s, c, rq);
        if (strcmp(rq->method, "POST") == 0 && strcmp(rq->path, "/api/auth/session/") == 0)
                /* Only so a pk_ key also works; sk_ keys never mint. */
                return queue_response(c, 200, "OK",
                                      "{\"token\":\"bench-token\","
                                      "\"expires_in\":3600}");
        if (strcmp(rq->method, "GET") == 0 && strcmp(rq->path, "/_count") == 0) {
                if (format_counts(s, body, sizeof(body)) < 0)
                        return -ENOSPC;
                return queue_response(c, 200, "OK", body);
        }
        return queue_response(c, 404, "Not Found", "{\"error\":\"not found\"}");
}

/* Drop the consumed request from the input; give back a grown buffer. */
static void conn_consume(struct conn *c, size_t used)
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
static int conn_process(struct sink *s, struct conn *c)
{
        unsigned rounds;

        for (rounds = 0; rounds < 64; rounds++) {
                struct request rq;
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
                r = handle_request(s, c, &rq);
                if (r < 0)
                        return r;
                conn_consume(c, need);
        }
        return c->out_len ? 1 : 0;
}

static void conn_on_event(struct sink *s, struct conn *c, uint32_t events)
{
        unsigned rounds;
        int r;

        if (events & EPOLLOUT) {
                r = conn_process(s, c);
                if (r < 0)
                        goto close;
                if (r == 1)
                        return;
                conn_set_events(s, c, false);
        }
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return;
        /* Level-triggered: reading a bounded number of rounds is enough,
         * epoll calls again for what is left. */
        for (rounds = 0; rounds < READ_ROUNDS; rounds++) {
                ssize_t n;

                r = conn_process(s, c);
                if (r < 0)
                        goto close;
                if (r == 1) {
                        conn_set_events(s, c, true);
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
        r = conn_process(s, c);
        if (r < 0)
                goto close;
        if (r == 1)
                conn_set_events(s, c, true);
        return;
close:
        conn_close(s, c);
}

static void on_accept(struct sink *s)
{
        unsigned rounds;

        for (rounds = 0; rounds < 64; rounds++) {
                struct epoll_event ev = { .events = EPOLLIN };
                struct conn *c;
                int one = 1;
                int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return; /* EAGAIN, or EMFILE: retried next wakeup */
                }
                if (s->nconns >= MAX_CONNS) {
                        s->refused++;
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
                if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        free(c->in);
                        free(c);
                        close(fd);
                        continue;
                }
                s->conns[s->nconns++] = c;
        }
}

static int write_port_file(const char *path, unsigned port)
{
        char tmp[4096];
        FILE *f;
        int r = 0;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
                return -ENAMETOOLONG;
        f = fopen(tmp, "we");
        if (!f)
                return -errno;
        fprintf(f, "%u\n", port);
        if (fclose(f) != 0)
                r = -errno;
        /* rename so a reader polling for the file never sees half of it */
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

static int sink_listen(struct sink *s, unsigned port, const char *port_file)
{
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                  .sin_port = htons((uint16_t)port) };
        socklen_t salen = sizeof(sa);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        int one = 1;

        s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->lfd < 0)
                return -errno;
        (void)setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->lfd, 128) < 0 ||
            getsockname(s->lfd, (struct sockaddr *)&sa, &salen) < 0)
                return -errno;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) < 0)
                return -errno;
        if (port_file)
                return write_port_file(port_file, ntohs(sa.sin_port));
        printf("port %u\n", ntohs(sa.sin_port));
        fflush(stdout);
        return 0;
}

static int sink_run(struct sink *s)
{
        struct epoll_event evs[64];

        for (;;) {
                int n = epoll_wait(s->epfd, evs, 64, -1), i;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (i = 0; i < n; i++) {
                        void *p = evs[i].data.ptr;

                        if (p == NULL)
                                on_accept(s);
                        else if (p == (void *)&s->sigfd)
                                return 0;
                        else
                                conn_on_event(s, p, evs[i].events);
                }
        }
}

static void usage(FILE *f)
{
        fprintf(f, "usage: sink [--port N] [--port-file FILE] [--expect N]\n"
                   "  Fake upstream on 127.0.0.1. Counts event ids e0..e<N-1>.\n"
                   "  GET /_count or SIGTERM reports the totals as JSON.\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "port", required_argument, NULL, 'p' },
                { "port-file", required_argument, NULL, 'f' },
                { "expect", required_argument, NULL, 'e' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct sink s = { .epfd = -1, .lfd = -1, .sigfd = -1, .expect = 1000000 };
        const char *port_file = NULL;
        uint64_t port = 0;
        struct epoll_event ev = { .events = EPOLLIN };
        char report[512];
        sigset_t mask;
        int opt, r = 1;

        while ((opt = getopt_long(argc, argv, "p:f:e:h", opts, NULL)) != -1) {
                switch (opt) {
                case 'p':
                        if (bench_parse_u64(optarg, 0, 65535, &port) < 0) {
                                fprintf(stderr, "sink: bad --port\n");
                                return 2;
                        }
                        break;
                case 'f': port_file = optarg; break;
                case 'e':
                        if (bench_parse_u64(optarg, 1, MAX_EXPECT, &s.expect) < 0) {
                                fprintf(stderr, "sink: bad --expect "
                                                "(1..100000000)\n");
                                return 2;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }

        s.seen = calloc((size_t)(s.expect + 7) / 8, 1);
        if (!s.seen) {
                fprintf(stderr, "sink: out of memory\n");
                return 1;
        }
        /* SIGTERM/SIGINT arrive through a signalfd so the report is written
         * from normal context, after the current request. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        s.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        s.epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s.sigfd < 0 || s.epfd < 0) {
                fprintf(stderr, "sink: %s\n", strerror(errno));
                goto out;
        }
        ev.data.ptr = &s.sigfd;
        if (epoll_ctl(s.epfd, EPOLL_CTL_ADD, s.sigfd, &ev) < 0) {
                fprintf(stderr, "sink: %s\n", strerror(errno));
                goto out;
        }
        opt = sink_listen(&s, (unsigned)port, port_file);
        if (opt < 0) {
                fprintf(stderr, "sink: listen: %s\n", strerror(-opt));
                goto out;
        }
        opt = sink_run(&s);
        if (opt < 0) {
                fprintf(stderr, "sink: %s\n", strerror(-opt));
                goto out;
        }
        if (format_counts(&s, report, sizeof(report)) >= 0)
                printf("%s\n", report);
        fflush(stdout);
        r = 0;
out:
        while (s.nconns)
                conn_close(&s, s.conns[0]);
        if (s.lfd >= 0)
                close(s.lfd);
        if (s.sigfd >= 0)
                close(s.sigfd);
        if (s.epfd >= 0)
                close(s.epfd);
        free(s.plain);
        free(s.seen);
        return r;
}
