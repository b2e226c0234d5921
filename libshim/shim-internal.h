/* shim-internal.h - what libshim's files share: the handle (shim.c), the
 * encoder (encode.c), the ring (ring.c), the sender thread (sender.c),
 * large lines (memfd.c) and the control socket (control.c). Nothing here
 * is exported (hidden visibility plus the version script); the unit tests
 * link the static objects directly. */
#ifndef SEGOPS_SHIM_INTERNAL_H
#define SEGOPS_SHIM_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>

#include "segops/shim.h"

#define SHIM_DGRAM_BYTES 65536      /* lines packed per datagram */
#define SHIM_MAX_LINE (1024 * 1024) /* largest line, newline included */
/* Lines up to this are encoded on the caller's stack; longer ones take
 * one heap buffer per call (shim.h says so). Bigger would cover more
 * events but eats into small thread stacks (PTHREAD_STACK_MIN is 16 KiB)
 * in a library call that promises to be cheap. */
#define SHIM_STACK_LINE 4096
#define SHIM_BUFFER_DEFAULT (16u * 1024 * 1024)
/* At least the largest line, so that every line fits an empty ring. */
#define SHIM_BUFFER_MIN (2u * SHIM_MAX_LINE)
#define SHIM_BUFFER_MAX (1024u * 1024 * 1024)
#define SHIM_RECONNECT_MS 100 /* at most one connect per this */
#define SHIM_CLOSE_WAIT_MS 2000
#define SHIM_CLOSE_REPORT_MS 100 /* close's client_dropped report */
#define SHIM_REPLY_GRACE_MS 20   /* a control reply's trip to us */
#define SHIM_BUSY_RETRY_MS 10    /* again after "too_many_connections" */

/* ---- encode.c: one NDJSON line, no I/O ---- */

/* A line being built: in the caller's fixed buffer first, moved to the
 * heap only when it outgrows it (up to SHIM_MAX_LINE). */
/* Room for shim_encode_dropped()'s line. */
#define SHIM_DROPPED_LINE_MAX 96

struct shim_line {
        char *p;
        size_t len;
        size_t cap;
        char *heap; /* p when on the heap, else NULL */
        int err;    /* first error: -ENOMEM or -EMSGSIZE */
};

void shim_line_init(struct shim_line *l, char *buf, size_t cap);
void shim_line_free(struct shim_line *l);

/* Each builds one complete line ending in '\n'. 0, -EINVAL (bad
 * argument, see shim.h), -EMSGSIZE or -ENOMEM. On failure l is left
 * for shim_line_free() only. */
int shim_encode_track(struct shim_line *l, const char *user_id, const char *event_type,
                      int64_t occurred_at_ms, const char *payload_json);
int shim_encode_identify(struct shim_line *l, const char *user_id, int64_t occurred_at_ms,
                         const char *traits_json);
int shim_encode_set_user(struct shim_line *l, const char *user_id, const char *user_id_sig);
int shim_encode_reset_session(struct shim_line *l);
/* {"op":"client_dropped","count":N,"pid":P}\n into out (at least
 * SHIM_DROPPED_LINE_MAX bytes; "pid" left out when pid <= 0); returns its
 * length, or 0 when out is too small. The pid is for an older segopsd: one
 * with SO_PASSCRED on its datagram socket takes the kernel's instead. */
size_t shim_encode_dropped(char *out, size_t cap, uint64_t count, int32_t pid);
/* The decimal digits of v at out (at most 20); returns how many. */
size_t shim_put_decimal(char *out, uint64_t v);

/* ---- the handle (shim.c) ---- */
struct segops_shim {
        pthread_mutex_t lock;
        pthread_cond_t wake;    /* producers/close -> sender thread */
        pthread_cond_t drained; /* sender thread -> flush/close */

        struct sockaddr_un addr; /* events socket */
        socklen_t addr_len;
        struct sockaddr_un ctl_addr; /* control socket */
        socklen_t ctl_addr_len;

        int fd; /* events socket, -1 when none */
        bool connected;
        int down_err; /* why the last connect failed (negative) */
        int64_t next_connect_ms;

        char *ring; /* encoded lines, circular */
        size_t ring_size;
        size_t head; /* producers write here */
        size_t tail; /* the thread sends from here */
        size_t used;
        size_t sending; /* nonzero while the thread sends unlocked:
                              * the bytes it is sending from the tail */
        /* The sealed memfd made for the line at the tail when that line
         * is too long for a datagram, kept across retries; -1 if none. */
        int big_fd;

        bool thread_started;
        bool thread_idle; /* waiting on wake with nothing to do */
        bool stop;
        pthread_t thread;

        uint64_t dropped;    /* total since open; read with atomics */
        uint64_t unreported; /* not yet sent as client_dropped */

        struct segops_shim *next; /* registry of open handles, for fork */
};

/* ---- shim.c ---- */
/* Count n events as dropped (lock held). */
void shim_count_drop_locked(struct segops_shim *s, uint64_t n);

/* ---- the clock (inline, every file uses it) ---- */
/* libshim's one clock: milliseconds on clock id, CLOCK_REALTIME for
 * occurred_at, CLOCK_MONOTONIC (shim_now_ms) for every deadline and wait.
 * The daemon has its own (daemon/clock.c); libshim keeps this copy rather
 * than link it, so that it needs libc only. */
static inline int64_t shim_clock_ms(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static inline int64_t shim_now_ms(void)
{
        return shim_clock_ms(CLOCK_MONOTONIC);
}

/* ---- ring.c: the ring of encoded lines (all with s->lock held) ---- */
/* Room for an n-byte line now: 0, -ENOBUFS (not now) or -EMSGSIZE
 * (longer than the whole ring). Inline, as is the next, because every
 * public call runs them: out of line they cost the hot path two calls. */
static inline int shim_ring_room_locked(const struct segops_shim *s, size_t n)
{
        if (n > s->ring_size)
                return -EMSGSIZE; /* could never fit */
        if (n > s->ring_size - s->used)
                return -ENOBUFS;
        return 0;
}
/* Append n bytes at the head; shim_ring_room_locked() said yes. */
static inline void shim_ring_put_locked(struct segops_shim *s, const char *line, size_t n)
{
        size_t first = s->ring_size - s->head;

        if (n <= first) {
                memcpy(s->ring + s->head, line, n);
        } else {
                memcpy(s->ring + s->head, line, first);
                memcpy(s->ring, line + first, n - first);
        }
        s->head = (s->head + n) % s->ring_size;
        s->used += n;
}
/* The n bytes at the tail as iov[0..1] (the ring may wrap); returns how
 * many iovecs are used. */
int shim_ring_span_locked(const struct segops_shim *s, size_t n, struct iovec iov[2]);
/* The length (newline included) of the line at the ring's tail when it
 * is longer than SHIM_DGRAM_BYTES (it goes out as a memfd), else 0. */
size_t shim_big_line_locked(const struct segops_shim *s);
/* With shim_big_line_locked() == 0: the whole lines from the tail that
 * fit one datagram, as iov[0..1] (*ret_iovcnt of them); their byte
 * count, never 0 while the ring holds anything. */
size_t shim_next_chunk_locked(const struct segops_shim *s, struct iovec iov[2], int *ret_iovcnt);
/* The newlines (lines) in the first n bytes of the ring from its tail. */
size_t shim_count_lines_locked(const struct segops_shim *s, size_t n);
/* Remove n sent (or lost) bytes from the tail. */
void shim_consume_locked(struct segops_shim *s, size_t n);

/* ---- sender.c: the sender thread and the events socket ---- */
/* With s->lock held: connect if not connected and the rate limit allows.
 * 0 or -ENOTCONN/-EACCES. */
int shim_connect_locked(struct segops_shim *s);
/* With s->lock held: append a line to the ring, start or wake the thread.
 * 0, -ENOBUFS (no room now), -EMSGSIZE (longer than the ring) or -EAGAIN.
 * Lines too long for a datagram are queued the same way. */
int shim_enqueue_locked(struct segops_shim *s, const char *line, size_t n);
/* With s->lock held: wait until the ring is empty or deadline_ms
 * passes. 0 or -ETIMEDOUT. */
int shim_wait_drained_locked(struct segops_shim *s, int64_t deadline_ms);
/* With s->lock held: stop the thread (drops the lock while joining). */
void shim_stop_thread_locked(struct segops_shim *s);
/* After a send on sock that returned k with errno e, without the lock:
 * when the daemon's queue was full (EAGAIN), wait for room, at most
 * SHIM_RECONNECT_MS, the bound should the peer go away without the
 * socket noticing. */
void shim_wait_if_full(int sock, ssize_t k, int e);
/* After a failed send, errno e (lock held): wait, reconnect or give up.
 * Returns true when the payload can never go (EMSGSIZE, EPERM from a
 * policy, ...) and the caller must drop and count it rather than spin
 * on it. */
bool shim_send_failed_locked(struct segops_shim *s, int e);

/* ---- memfd.c: a line too large for a datagram ---- */
/* With s->lock held and connected: send the n-byte line at the tail as
 * a sealed memfd (SCM_RIGHTS); the thread's step for a line that
 * shim_big_line_locked() found. Drops the lock while sending. */
void shim_send_big_locked(struct segops_shim *s, size_t n);
/* With s->lock held: close the memfd of a large line, if one was made
 * (for close and the fork child, whose ring is emptied). */
void shim_forget_big_locked(struct segops_shim *s);

/* ---- control.c: the control socket ---- */
/* Without the lock: on the control socket, report the unreported drops
 * (op client_dropped, when there are any) and, when flush, send op flush
 * with the time left until deadline_ms (minus SHIM_REPLY_GRACE_MS) and
 * wait for its reply until deadline_ms, or at least SHIM_REPLY_GRACE_MS.
 * Never blocks on connect or send. Drops count as reported only once the
 * daemon said ok to them. 0, -ETIMEDOUT, -ENOTCONN, -EACCES or -EIO. */
int shim_control(struct segops_shim *s, bool flush, int64_t deadline_ms);

#endif
