/* sender.c - the load generator of the throughput benchmark.
 *
 * It sends N track events of about 200 bytes, one per datagram, into
 * segopsd's events socket, as fast as the daemon takes them: the socket
 * is blocking, so a full receive queue makes send() wait instead of
 * dropping. Event i carries event_id "e<i>" and user_id "user-<i%1000>",
 * which is what the sink counts; -o starts i elsewhere than 0, so that
 * two senders of one run send different ids. ENOBUFS/EAGAIN are retried after a short
 * sleep and EINTR at once, so no event is given up while the daemon is
 * alive; a daemon that takes nothing for 30 s, or a socket that is gone,
 * ends the run with an error. With -t the range is split between threads.
 * It prints how many events it sent, the seconds it took, and the
 * CLOCK_MONOTONIC start time so the runner can measure end to end.
 */
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EVENT_BYTES 200 /* target size of one message, newline included */
#define MAX_THREADS 64
#define MAX_EVENTS UINT64_C(100000000)
#define STALL_LIMIT_NS (UINT64_C(30) * 1000000000u)
#define RETRY_SLEEP_NS 50000 /* 50 us between retries on a full buffer */
#define DEFAULT_SOCKET "/run/segopsd/events.sock"
#define MAX_PACK 256 /* events per datagram: 256 x 200 B = 50 KiB */
#define VLEN 16      /* datagrams per sendmmsg() */

struct worker {
        pthread_t thread;
        const char *path;
        uint64_t first; /* first event index */
        uint64_t end;   /* one past the last */
        uint64_t sent;
        uint64_t retries;
        uint64_t pack; /* events per datagram */
        int err;       /* 0 or a negative errno */
};

/* Append the decimal digits of v at p; returns the end. */
static char *put_u64(char *p, uint64_t v)
{
        char tmp[20];
        int n = 0;

        do
                tmp[n++] = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        while (n > 0)
                *p++ = tmp[--n];
        return p;
}

static char *put_str(char *p, const char *s, size_t n)
{
        memcpy(p, s, n);
        return p + n;
}

#define PUT_LIT(p, s) put_str((p), (s), sizeof(s) - 1)

/* Write event i into buf (room for EVENT_BYTES + 64), padded to
 * EVENT_BYTES with the newline. Returns its length. Hand-rolled rather
 * than snprintf: the sender must cost far less than what it measures. */
static size_t format_event(char *buf, uint64_t i)
{
        char *p = buf, *pad_at;
        size_t base;

        p = PUT_LIT(p, "{\"user_id\":\"user-");
        p = put_u64(p, i % 1000);
        p = PUT_LIT(p, "\",\"event_type\":\"bench_event\",\"event_id\":\"e");
        p = put_u64(p, i);
        p = PUT_LIT(p, "\",\"payload\":{\"seq\":");
        p = put_u64(p, i);
        p = PUT_LIT(p, ",\"pad\":\"");
        pad_at = p;
        base = (size_t)(pad_at - buf) + sizeof("\"}}\n") - 1;
        if (base < EVENT_BYTES) {
                memset(p, 'x', EVENT_BYTES - base);
                p += EVENT_BYTES - base;
        }
        p = PUT_LIT(p, "\"}}\n");
        return (size_t)(p - buf);
}

static int open_socket(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* connect once so each send skips the address lookup */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

/* Send n datagrams with as few sendmmsg() calls as the socket allows;
 * wait out a full buffer. 0 or a negative errno. */
static int send_all(int fd, struct mmsghdr *m, unsigned n, uint64_t *retries)
{
        uint64_t stalled_since = 0;
        unsigned done = 0;

        while (done < n) {
                int r = sendmmsg(fd, m + done, n - done, MSG_NOSIGNAL);
                struct timespec ts = { 0, RETRY_SLEEP_NS };

                if (r > 0) {
                        for (unsigned k = done; k < done + (unsigned)r; k++)
                                if (m[k].msg_len != m[k].msg_hdr.msg_iov->iov_len)
                                        return -EMSGSIZE;
                        done += (unsigned)r;
                        stalled_since = 0;
                        continue;
                }
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EWOULDBLOCK)
                        return -errno;
                if (stalled_since == 0)
                        stalled_since = bench_now_ns();
                else if (bench_now_ns() - stalled_since > STALL_LIMIT_NS)
                        return -ETIMEDOUT;
                (*retries)++;
                nanosleep(&ts, NULL);
        }
        return 0;
}

static void *worker_run(void *arg)
{
        struct worker *w = arg;
        size_t slot = (EVENT_BYTES + 64) * w->pack;
        char *buf = malloc(slot * VLEN);
        struct mmsghdr m[VLEN];
        struct iovec iov[VLEN];
        uint64_t i = w->first;
        int fd = open_socket(w->path);

        if (fd < 0 || !buf) {
                w->err = fd < 0 ? fd : -ENOMEM;
                if (fd >= 0)
                        close(fd);
                free(buf);
                return NULL;
        }
        while (i < w->end) {
                unsigned d = 0;
                uint64_t k = 0;
                int r;

                /* Up to VLEN datagrams of w->pack events each (the last
                 * may hold fewer), then one sendmmsg(). */
                for (; d < VLEN && i + k < w->end; d++) {
                        char *p = buf + slot * d;
                        size_t len = 0;

                        for (uint64_t e = 0; e < w->pack && i + k < w->end; e++, k++)
                                len += format_event(p + len, i + k);
                        iov[d] = (struct iovec){ .iov_base = p, .iov_len = len };
                        memset(&m[d], 0, sizeof(m[d]));
                        m[d].msg_hdr.msg_iov = &iov[d];
                        m[d].msg_hdr.msg_iovlen = 1;
                }
                r = send_all(fd, m, d, &w->retries);
                if (r < 0) {
                        w->err = r;
                        break;
                }
                w->sent += k;
                i += k;
        }
        close(fd);
        free(buf);
        return NULL;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: sender [-n EVENTS] [-o FIRST] [-s SOCKET] [-t THREADS] [-p PACK]\n"
                "  -p PACK  events per datagram (default 1; up to 256)\n"
                "  -n  events to send (default 1000000)\n"
                "  -o  the first event's number: ids e<FIRST>.. (default 0)\n"
                "  -s  events socket (default $SEGOPS_SOCKET or " DEFAULT_SOCKET ")\n"
                "  -t  sending threads, 1..%d (default 1)\n",
                MAX_THREADS);
}

struct options {
        const char *path;
        uint64_t n;
        uint64_t first;
        uint64_t threads;
        uint64_t pack;
};

/* The number after -opt, from min to max; else says so and returns -1. */
static int take_number(const char *arg, uint64_t min, uint64_t max, int opt, uint64_t *ret)
{
        if (bench_parse_u64(arg, min, max, ret) == 0)
                return 0;
        fprintf(stderr, "sender: bad -%c\n", opt);
        return -1;
}

/* Returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, struct options *o)
{
        int opt, r = 0;

        while ((opt = getopt(argc, argv, "n:o:s:t:p:h")) != -1) {
                switch (opt) {
                case 'n': r = take_number(optarg, 1, MAX_EVENTS, opt, &o->n); break;
                case 'o': r = take_number(optarg, 0, MAX_EVENTS, opt, &o->first); break;
                case 's': o->path = optarg; break;
                case 't': r = take_number(optarg, 1, MAX_THREADS, opt, &o->threads); break;
                case 'p': r = take_number(optarg, 1, MAX_PACK, opt, &o->pack); break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
                if (r < 0)
                        return 2;
        }
        return -1;
}

/* Run every worker, each in its own thread when there are several. */
static void run_workers(struct worker *w, uint64_t threads)
{
        uint64_t k;

        if (threads == 1) {
                worker_run(&w[0]);
                return;
        }
        for (k = 0; k < threads; k++) {
                int e = pthread_create(&w[k].thread, NULL, worker_run, &w[k]);
                if (e) {
                        /* Run it here instead: every event still goes
                         * out. */
                        w[k].thread = pthread_self();
                        worker_run(&w[k]);
                }
        }
        for (k = 0; k < threads; k++)
                if (!pthread_equal(w[k].thread, pthread_self()))
                        pthread_join(w[k].thread, NULL);
}

int main(int argc, char **argv)
{
        struct options o = {
                .path = getenv("SEGOPS_SOCKET"), .n = 1000000, .threads = 1, .pack = 1
        };
        struct worker *w = NULL;
        uint64_t sent = 0, retries = 0, t0, t1, k;
        double secs;
        bool failed = false;
        int r;

        if (!o.path || !*o.path)
                o.path = DEFAULT_SOCKET;
        r = parse_options(argc, argv, &o);
        if (r >= 0)
                return r;
        if (o.threads > o.n)
                o.threads = o.n;
        w = calloc((size_t)o.threads, sizeof(*w));
        if (!w) {
                fprintf(stderr, "sender: out of memory\n");
                return 1;
        }
        for (k = 0; k < o.threads; k++) {
                w[k].path = o.path;
                w[k].first = o.first + o.n * k / o.threads;
                w[k].end = o.first + o.n * (k + 1) / o.threads;
                w[k].pack = o.pack;
        }

        t0 = bench_now_ns();
        run_workers(w, o.threads);
        t1 = bench_now_ns();

        for (k = 0; k < o.threads; k++) {
                sent += w[k].sent;
                retries += w[k].retries;
                if (w[k].err < 0 && !failed) {
                        fprintf(stderr, "sender: %s: %s\n", o.path, strerror(-w[k].err));
                        failed = true;
                }
        }
        secs = (double)(t1 - t0) / 1e9;
        printf("sent %" PRIu64 " events in %.3f s (%.0f events/s, %" PRIu64
               " retries) start_ns=%" PRIu64 " end_ns=%" PRIu64 " cpu_s=%.3f\n",
               sent, secs, secs > 0 ? (double)sent / secs : 0.0, retries, t0, t1, bench_cpu_s());
        fflush(stdout);
        free(w);
        return failed || sent != o.n ? 1 : 0;
}
