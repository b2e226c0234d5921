/* spool-read.c - reading records back: the backlog that outgrew memory,
 * and after a start what an earlier run left undone. Segments are read
 * in order in chunks; damage is passed over (segfile_next resyncs),
 * logged once per file with its offset, and the seqs it cost are
 * reported lost and counted. After the last segment, records that could
 * not be written yet (a failed disk) are read from memory.
 */
#include "spool-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

void spool__reader_reset(struct spool *s)
{
        if (s->rfd >= 0)
                close(s->rfd);
        s->rfd = -1;
        s->rseg = NULL;
        s->rbuf_off = 0;
        s->rpos = 0;
        proto_buf_reset(&s->rbuf);
        if (s->rbuf.cap > 2 * SPOOL_READ_CHUNK)
                proto_buf_free(&s->rbuf);
}

/* rbuf gets up to SPOOL_READ_CHUNK more bytes of the open segment, what
 * was parsed dropped first. Bytes read, 0 at the end of what the file
 * holds now, or a negative errno. */
static ssize_t read_more(struct spool *s)
{
        ssize_t n;
        int r;

        if (s->rpos) {
                memmove(s->rbuf.data, s->rbuf.data + s->rpos, s->rbuf.len - s->rpos);
                s->rbuf.len -= s->rpos;
                s->rbuf_off += s->rpos;
                s->rpos = 0;
        }
        r = proto_buf_reserve(&s->rbuf, SPOOL_READ_CHUNK);
        if (r < 0)
                return r;
        do
                n = pread(s->rfd, s->rbuf.data + s->rbuf.len, SPOOL_READ_CHUNK,
                          (off_t)(s->rbuf_off + s->rbuf.len));
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        s->rbuf.len += (size_t)n;
        return n;
}

/* Start reading seg: open it, check its header. */
static int open_segment(struct spool *s, struct spool_seg *seg)
{
        uint64_t first;
        int64_t created;
        ssize_t n;

        s->rseg = seg;
        s->rfd = openat(s->dirfd, seg->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (s->rfd < 0)
                return -errno;
        n = read_more(s);
        if (n < 0)
                return (int)n;
        if (segfile_parse_header(s->rbuf.data, s->rbuf.len, &first, &created) == 0) {
                seg->created_ms = created;
                s->rpos = SEGFILE_HEADER_LEN;
        } else if (s->rbuf.len > 0) {
                /* Records may still be intact after a bad header. */
                s->damage_pending = true;
                if (!seg->damage_logged) {
                        seg->damage_logged = true;
                        log_warn("spool: %s has no valid segment header; reading what "
                                 "records it holds",
                                 seg->name);
                }
        }
        return 0;
}

/* Damage was passed over in rseg (bytes at file offset off). */
static void note_damage(struct spool *s, uint64_t skipped, uint64_t off)
{
        s->corrupt_bytes += skipped;
        s->damage_pending = true;
        if (s->rseg && !s->rseg->damage_logged) {
                s->rseg->damage_logged = true;
                log_warn("spool: %s is damaged at offset %llu (%llu bytes skipped); the records "
                         "after the damage are still read",
                         s->rseg->name, (unsigned long long)off, (unsigned long long)skipped);
        }
}

struct load {
        uint64_t from;
        spool_take_fn take;
        spool_lost_fn lost;
        spool_gap_fn gap;
        void *ud;
};

/* One intact record: offered, unless already done. False: take() had no
 * room; it is offered again next time. */
/* Seqs from .. hi - 1 are not where they should be. Damage (bytes
 * skipped before the next record), or the checkpoint's word that they
 * were written (a newest segment that lost its end), makes them lost;
 * otherwise they were never written (an earlier run's memory-only
 * spell, an empty newest segment): a gap. */
static void missing(struct spool *s, struct load *l, uint64_t hi)
{
        uint64_t lo = l->from;

        if (!s->damage_pending && s->tail_lost_hi >= lo && s->tail_lost_lo < hi) {
                uint64_t a = s->tail_lost_lo > lo ? s->tail_lost_lo : lo;
                uint64_t b = s->tail_lost_hi < hi - 1 ? s->tail_lost_hi : hi - 1;

                if (a > lo && l->gap)
                        l->gap(l->ud, lo, a - 1);
                s->corrupt_records += b - a + 1;
                l->lost(l->ud, a, b);
                lo = b + 1;
        }
        if (lo < hi && s->damage_pending) {
                s->corrupt_records += hi - lo;
                l->lost(l->ud, lo, hi - 1);
        } else if (lo < hi && l->gap) {
                l->gap(l->ud, lo, hi - 1);
        }
        l->from = hi; /* told: not to be loaded any more */
}

static bool offer(struct spool *s, struct load *l, const struct segfile_rec *rec)
{
        if (rec->seq < l->from) {
                s->damage_pending = false;
                return true;
        }
        if (rec->seq > l->from)
                missing(s, l, rec->seq);
        s->damage_pending = false;
        if (!l->take(l->ud, rec->seq, rec->data, rec->len))
                return false;
        if (rec->seq < s->first_new_seq)
                s->replayed++;
        l->from = rec->seq + 1;
        return true;
}

/* Records of buf from *pos on (eof: buf holds all there is). True when
 * buf ran out, false when take() had no room. */
static bool parse(struct spool *s, struct load *l, const char *buf, size_t len, bool eof,
                  size_t *pos, uint64_t base)
{
        struct segfile_rec rec;

        for (;;) {
                uint64_t skipped = 0;
                size_t at = *pos;
                enum segfile_next r = segfile_next(buf, len, eof, pos, &rec, &skipped);

                if (skipped)
                        note_damage(s, skipped, base + at);
                if (r != SEGFILE_RECORD)
                        return true;
                if (!offer(s, l, &rec)) {
                        *pos = rec.off;
                        return false;
                }
        }
}

/* Read rseg on. True when it is done (the next one may be read), false
 * when take() had no room or the segment being written has no more. */
static bool read_segment(struct spool *s, struct load *l)
{
        for (;;) {
                bool final = s->rseg != s->wseg;
                bool eof = final && s->rbuf_off + s->rbuf.len >= s->rseg->size;
                ssize_t n;

                if (!parse(s, l, s->rbuf.data, s->rbuf.len, eof, &s->rpos, s->rbuf_off))
                        return false;
                if (eof)
                        return true;
                n = read_more(s);
                if (n < 0) {
                        log_limited(LOG_ERR, "spool_read", "spool: cannot read %s: %s",
                                    s->rseg->name, strerror((int)-n));
                        s->damage_pending = true;
                        return true;
                }
                if (n == 0 && !final)
                        return false;
                if (n == 0) { /* shorter than it was: the rest is gone */
                        s->bytes -= s->rseg->size - (s->rbuf_off + s->rbuf.len);
                        s->rseg->size = s->rbuf_off + s->rbuf.len;
                }
        }
}

uint64_t spool_load(struct spool *s, uint64_t from, const struct spool_load_fns *fns, void *ud)
{
        struct load l = { from, fns->take, fns->lost, fns->gap, ud };

        /* Parked behind from (a backlog that ended, a new one far
         * later): segments wholly before from are skipped by name, not
         * read through. */
        if (s->rseg && s->rseg->next && s->rseg->next->first_seq <= from)
                spool__reader_reset(s);
        for (;;) {
                struct spool_seg *next;

                if (!s->rseg) {
                        next = s->segs;
                        while (next && next->next && next->next->first_seq <= l.from)
                                next = next->next; /* wholly before from */
                        if (!next)
                                break;
                        if (open_segment(s, next) < 0) {
                                log_limited(LOG_ERR, "spool_read", "spool: cannot open %s: %s",
                                            next->name, strerror(errno));
                                s->damage_pending = true;
                        }
                }
                if (s->rfd >= 0 && !read_segment(s, &l))
                        return l.from;
                next = s->rseg->next;
                if (!next)
                        break;
                spool__reader_reset(s);
                if (open_segment(s, next) < 0)
                        s->damage_pending = true;
        }
        /* What a failed disk has not taken yet. */
        if (s->wbuf.len && !parse(s, &l, s->wbuf.data, s->wbuf.len, true, &s->wbuf_rpos, 0))
                return l.from;
        /* All loaded: the seqs after the last record are not on disk.
         * Damage at the end is a loss only of what the checkpoint says
         * was written: a damaged file's name alone claims nothing. */
        if (l.from <= s->written && s->written < s->next_seq)
                missing(s, &l, s->written + 1);
        s->damage_pending = false;
        if (l.from < s->next_seq)
                missing(s, &l, s->next_seq);
        return l.from > s->next_seq ? l.from : s->next_seq;
}

void spool__scan_tail(struct spool *s, struct spool_seg *seg)
{
        struct segfile_rec rec;
        uint64_t skipped = 0, first;
        int64_t created;
        struct proto_buf b = { 0 };
        size_t pos = 0;
        int fd = openat(s->dirfd, seg->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0)
                return;
        while (proto_buf_reserve(&b, SPOOL_READ_CHUNK) == 0) {
                ssize_t n = read(fd, b.data + b.len, SPOOL_READ_CHUNK);

                if (n <= 0)
                        break;
                b.len += (size_t)n;
        }
        close(fd);
        if (segfile_parse_header(b.data, b.len, &first, &created) == 0) {
                seg->created_ms = created;
                pos = SEGFILE_HEADER_LEN;
        }
        while (segfile_next(b.data, b.len, true, &pos, &rec, &skipped) == SEGFILE_RECORD)
                if (rec.seq > seg->last_seq)
                        seg->last_seq = rec.seq;
        proto_buf_free(&b);
}
