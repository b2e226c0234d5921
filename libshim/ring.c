/* ring.c - libshim's ring of encoded lines, between the callers and the
 * sender thread.
 *
 * One fixed circular buffer per handle (SEGOPS_SHIM_BUFFER_BYTES, 16 MiB
 * by default, resident only as far as bursts reach) holds whole lines
 * as the calls encoded them, each ending in '\n'. Producers append at
 * the head under the handle's mutex; the sender thread takes from the
 * tail: as many whole lines as fit one datagram (SHIM_DGRAM_BYTES), or
 * one line too long for a datagram on its own, which then goes out as a
 * memfd (memfd.c). The ring only holds and measures lines: when to send
 * them is the sender's business (sender.c). Every function here runs
 * with the handle's mutex held. The producers' side, a room check and a
 * copy on every call, is inline in shim-internal.h.
 */
#include "shim-internal.h"

#include <errno.h>
#include <string.h>

/* The n bytes at the ring's tail as iov[0..1] (the ring may wrap);
 * returns how many iovecs are used. */
int shim_ring_span_locked(const struct segops_shim *s, size_t n, struct iovec iov[2])
{
        size_t first = s->ring_size - s->tail;
        size_t n1 = n < first ? n : first;

        iov[0].iov_base = s->ring + s->tail;
        iov[0].iov_len = n1;
        iov[1].iov_base = s->ring;
        iov[1].iov_len = n - n1;
        return n - n1 ? 2 : 1;
}

/* The length (newline included) of the line at the tail when it is too
 * long for a datagram, else 0: such a line goes out as a memfd. */
size_t shim_big_line_locked(const struct segops_shim *s)
{
        size_t first = s->ring_size - s->tail, n1, look;
        const char *nl;

        if (s->used <= SHIM_DGRAM_BYTES)
                return 0;
        look = SHIM_DGRAM_BYTES; /* a newline in there: the line fits */
        n1 = look < first ? look : first;
        if (memchr(s->ring + s->tail, '\n', n1) || (look > n1 && memchr(s->ring, '\n', look - n1)))
                return 0;
        /* Every line ends with a newline: find this one's. */
        nl = memchr(s->ring + s->tail, '\n', s->used < first ? s->used : first);
        if (nl)
                return (size_t)(nl - (s->ring + s->tail)) + 1;
        nl = memchr(s->ring, '\n', s->used - first);
        return nl ? first + (size_t)(nl - s->ring) + 1 : s->used;
}

/* Find the lines to send next: up to SHIM_DGRAM_BYTES from the tail,
 * whole lines only. Fills iov[0..1] (the ring may wrap) and returns the
 * byte count, 0 when the ring is empty. The caller has sent a line too
 * long for a datagram as a memfd first, so there is always one. */
size_t shim_next_chunk_locked(const struct segops_shim *s, struct iovec iov[2], int *ret_iovcnt)
{
        size_t want = s->used < SHIM_DGRAM_BYTES ? s->used : SHIM_DGRAM_BYTES;
        size_t first = s->ring_size - s->tail;
        size_t n1, n2, cut;
        const char *nl;

        if (want == 0)
                return 0;
        if (want < s->used) {
                /* Cut after the last newline within want bytes. */
                n1 = want < first ? want : first;
                n2 = want - n1;
                cut = 0;
                if (n2) {
                        nl = memrchr(s->ring, '\n', n2);
                        if (nl)
                                cut = n1 + (size_t)(nl - s->ring) + 1;
                }
                if (!cut) {
                        nl = memrchr(s->ring + s->tail, '\n', n1);
                        cut = nl ? (size_t)(nl - (s->ring + s->tail)) + 1 : 0;
                }
                want = cut;
        }
        *ret_iovcnt = shim_ring_span_locked(s, want, iov);
        return want;
}

static size_t count_nl(const char *p, size_t n)
{
        const char *end = p + n;
        size_t k = 0;

        while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                k++;
                p++;
        }
        return k;
}

size_t shim_count_lines_locked(const struct segops_shim *s, size_t n)
{
        size_t first = s->ring_size - s->tail;

        if (n > s->used)
                n = s->used;
        if (n <= first)
                return count_nl(s->ring + s->tail, n);
        return count_nl(s->ring + s->tail, first) + count_nl(s->ring, n - first);
}

void shim_consume_locked(struct segops_shim *s, size_t n)
{
        s->tail = (s->tail + n) % s->ring_size;
        s->used -= n;
        if (s->used == 0)
                s->head = s->tail = 0;
}
