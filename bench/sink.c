/* sink.c - a fast local stand-in for the upstream, for the throughput
 * benchmark: what it answers, its command line and its life.
 *
 * On 127.0.0.1 (sink-http.c serves HTTP/1.1 with keep-alive, one thread,
 * epoll) it answers POST /api/events/batch/ like the real upstream, 200
 * {"accepted":A,"duplicates":D}, after counting the batch's event ids
 * (sink-tally.c: a bitmap of e0..e<--expect - 1>, so the benchmark can
 * tell how many distinct events arrived and how many came twice), and
 * POST /api/auth/session/ with a token. GET /_count, and SIGTERM/SIGINT
 * (on stdout, then exit), report the totals with the CLOCK_MONOTONIC
 * times of the sink's start and of the first and last event arrival. Every resource is bounded:
 * 256 connections, 16 KiB of headers, 8 MiB of body, 32 MiB gunzipped.
 */
#include "sink-http.h"
#include "sink-tally.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

struct sink {
        int epfd;
        int sigfd;
        struct http_server http;
        struct tally tally;
};

struct options {
        uint64_t port; /* 0: any free port */
        const char *port_file;
        uint64_t expect;
};

static int reply_with(struct http_reply *reply, int status, const char *reason, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

/* Fill reply: status, reason and a JSON body from fmt. 0 or -ENOSPC. */
static int reply_with(struct http_reply *reply, int status, const char *reason, const char *fmt,
                      ...)
{
        va_list ap;
        int n;

        reply->status = status;
        reply->reason = reason;
        va_start(ap, fmt);
        n = vsnprintf(reply->body, sizeof(reply->body), fmt, ap);
        va_end(ap);
        return n < 0 || (size_t)n >= sizeof(reply->body) ? -ENOSPC : 0;
}

static int answer_batch(struct sink *s, const struct http_request *rq, const char *body,
                        struct http_reply *reply)
{
        uint64_t acc, dup;
        int r;

        r = tally_batch(&s->tally, body, rq->content_length, rq->gzip, &acc, &dup);
        if (r < 0) {
                fprintf(stderr, "sink: bad gzip body: %s\n", strerror(-r));
                return reply_with(reply, 400, "Bad Request", "{\"error\":\"bad gzip\"}");
        }
        return reply_with(reply, 200, "OK", "{\"accepted\":%" PRIu64 ",\"duplicates\":%" PRIu64 "}",
                          acc, dup);
}

/* The fake upstream's answers: sink-http.c's handler. */
static int answer(void *ctx, const struct http_request *rq, const char *body,
                  struct http_reply *reply)
{
        struct sink *s = ctx;
        char counts[HTTP_REPLY_BODY];

        if (strcmp(rq->method, "POST") == 0 && strcmp(rq->path, "/api/events/batch/") == 0)
                return answer_batch(s, rq, body, reply);
        if (strcmp(rq->method, "POST") == 0 && strcmp(rq->path, "/api/auth/session/") == 0)
                /* Only so a pk_ key also works; sk_ keys never mint. */
                return reply_with(reply, 200, "OK",
                                  "{\"token\":\"bench-token\",\"expires_in\":3600}");
        if (strcmp(rq->method, "GET") == 0 && strcmp(rq->path, "/_count") == 0) {
                if (tally_format(&s->tally, counts, sizeof(counts)) < 0)
                        return -ENOSPC;
                return reply_with(reply, 200, "OK", "%s", counts);
        }
        return reply_with(reply, 404, "Not Found", "{\"error\":\"not found\"}");
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

/* The epoll set, with SIGTERM/SIGINT in it through a signalfd, so the
 * report is written from normal context, after the current request.
 * Returns 0 or a negative errno. */
static int sink_open(struct sink *s)
{
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->sigfd };
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        s->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->sigfd < 0 || s->epfd < 0)
                return -errno;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sigfd, &ev) < 0)
                return -errno;
        return 0;
}

/* Listen, and say on which port: in port_file, else on stdout. */
static int sink_listen(struct sink *s, unsigned port, const char *port_file)
{
        unsigned bound;
        int r;

        r = http_listen(&s->http, s->epfd, port, &bound);
        if (r < 0)
                return r;
        if (port_file)
                return write_port_file(port_file, bound);
        printf("port %u\n", bound);
        fflush(stdout);
        return 0;
}

/* Serve until SIGTERM/SIGINT. 0 or a negative errno. */
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

                        if (p == (void *)&s->sigfd)
                                return 0;
                        http_on_event(&s->http, p, evs[i].events);
                }
        }
}

static void usage(FILE *f)
{
        fprintf(f, "usage: sink [--port N] [--port-file FILE] [--expect N]\n"
                   "  Fake upstream on 127.0.0.1. Counts event ids e0..e<N-1>.\n"
                   "  GET /_count or SIGTERM reports the totals as JSON.\n");
}

/* Returns -1 to go on, else the exit status after a message. */
static int parse_options(int argc, char **argv, struct options *o)
{
        static const struct option opts[] = {
                { "port", required_argument, NULL, 'p' },
                { "port-file", required_argument, NULL, 'f' },
                { "expect", required_argument, NULL, 'e' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        int opt;

        while ((opt = getopt_long(argc, argv, "p:f:e:h", opts, NULL)) != -1) {
                switch (opt) {
                case 'p':
                        if (bench_parse_u64(optarg, 0, 65535, &o->port) < 0) {
                                fprintf(stderr, "sink: bad --port\n");
                                return 2;
                        }
                        break;
                case 'f': o->port_file = optarg; break;
                case 'e':
                        if (bench_parse_u64(optarg, 1, TALLY_MAX_EXPECT, &o->expect) < 0) {
                                fprintf(stderr, "sink: bad --expect "
                                                "(1..100000000)\n");
                                return 2;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        return -1;
}

int main(int argc, char **argv)
{
        struct options opt = { .expect = 1000000 };
        struct sink s = { .epfd = -1, .sigfd = -1 };
        char report[512];
        int r;

        r = parse_options(argc, argv, &opt);
        if (r >= 0)
                return r;
        if (tally_init(&s.tally, opt.expect) < 0) {
                fprintf(stderr, "sink: out of memory\n");
                return 1;
        }
        http_init(&s.http, answer, &s);
        r = sink_open(&s);
        if (r < 0) {
                fprintf(stderr, "sink: %s\n", strerror(-r));
                goto out;
        }
        r = sink_listen(&s, (unsigned)opt.port, opt.port_file);
        if (r < 0) {
                fprintf(stderr, "sink: listen: %s\n", strerror(-r));
                goto out;
        }
        r = sink_run(&s);
        if (r < 0) {
                fprintf(stderr, "sink: %s\n", strerror(-r));
                goto out;
        }
        if (tally_format(&s.tally, report, sizeof(report)) >= 0)
                printf("%s\n", report);
        fflush(stdout);
out:
        http_close(&s.http);
        if (s.sigfd >= 0)
                close(s.sigfd);
        if (s.epfd >= 0)
                close(s.epfd);
        tally_free(&s.tally);
        return r < 0 ? 1 : 0;
}
