/* rawsink.c - the ceiling of the throughput benchmark: a receiver that
 * only reads the datagram socket.
 *
 * It binds a Unix datagram socket, reads with recvmmsg() bursts exactly
 * as segopsd does (epoll, then recvmmsg until EAGAIN), counts events
 * (newlines) and does nothing else. run-throughput.sh runs the sender
 * against it first, so every report shows what the socket itself allows
 * on that machine at that moment, beside what segopsd achieves. It exits
 * after N events, or after 30 s without any, and prints
 * "events E datagrams D elapsed_s S cpu_s C".
 */
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define VLEN 16
#define SLOT 65536
#define IDLE_LIMIT_MS 30000

int main(int argc, char **argv)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct epoll_event ev = { .events = EPOLLIN };
        static char bufs[VLEN][SLOT];
        struct mmsghdr m[VLEN];
        struct iovec iov[VLEN];
        uint64_t want, events = 0, dgrams = 0, t0 = 0;
        double cpu0 = 0;
        int fd, ep;

        if (argc != 3 || strlen(argv[1]) >= sizeof(sa.sun_path) ||
            bench_parse_u64(argv[2], 1, UINT64_MAX, &want) < 0) {
                fprintf(stderr, "usage: rawsink SOCKET EVENTS\n");
                return 2;
        }
        memcpy(sa.sun_path, argv[1], strlen(argv[1]) + 1);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "rawsink: %s: %s\n", argv[1], strerror(errno));
                return 2;
        }
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                fprintf(stderr, "rawsink: epoll: %s\n", strerror(errno));
                return 2;
        }
        while (events < want) {
                int n = epoll_wait(ep, &ev, 1, IDLE_LIMIT_MS);

                if (n == 0) {
                        fprintf(stderr, "rawsink: nothing for %d s\n", IDLE_LIMIT_MS / 1000);
                        break;
                }
                if (n < 0 && errno != EINTR)
                        return 2;
                if (t0 == 0) {
                        t0 = bench_now_ns();
                        cpu0 = bench_cpu_s();
                }
                for (;;) {
                        for (int i = 0; i < VLEN; i++) {
                                iov[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = SLOT };
                                memset(&m[i], 0, sizeof(m[i]));
                                m[i].msg_hdr.msg_iov = &iov[i];
                                m[i].msg_hdr.msg_iovlen = 1;
                        }
                        n = recvmmsg(fd, m, VLEN, MSG_DONTWAIT, NULL);
                        if (n <= 0)
                                break;
                        dgrams += (uint64_t)n;
                        for (int i = 0; i < n; i++) {
                                const char *p = bufs[i], *end = p + m[i].msg_len;
                                while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                                        events++;
                                        p++;
                                }
                        }
                }
        }
        printf("events %" PRIu64 " datagrams %" PRIu64 " elapsed_s %.3f cpu_s %.3f\n", events,
               dgrams, t0 ? (double)(bench_now_ns() - t0) / 1e9 : 0.0,
               t0 ? bench_cpu_s() - cpu0 : 0.0);
        unlink(argv[1]);
        return events >= want ? 0 : 1;
}
