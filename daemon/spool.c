/* spool.c - the running spool's accounts, from spool_open to the clean
 * close: acknowledgements and the checkpoint file that keeps them,
 * deleting segments that are done (or the oldest, when max_spool is
 * full), queries and stats. Finding the directory and what an earlier
 * run left there is spool-open.c's (with the retry after a failure),
 * the sync policy spool-sync.c's, writing records spool-write.c's,
 * reading them back spool-read.c's.
 *
 * The checkpoint ("acked") holds two 40-byte slots written in turn:
 * "SGACKv2\0" | u64 generation | u64 acked | u64 written | u32 crc32c |
 * u32 0. A torn write spoils at most the slot being written; the valid
 * one with the higher generation wins. "written" is the highest seq
 * written to a segment when the slot was: a newest segment that ends
 * before it (torn or truncated) lost those records, and a start counts
 * them instead of handing their seqs to new events.
 */
#include "spool-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "crc32c.h"
#include "log.h"

#define ACK_SLOT 40
static const char ack_magic[8] = { 'S', 'G', 'A', 'C', 'K', 'v', '2', '\0' };

/* ---- the checkpoint ---- */

static uint32_t slot_crc(const char *slot)
{
        return crc32c(0, slot, 32);
}

void spool__read_checkpoint(struct spool *s)
{
        char buf[2 * ACK_SLOT];
        ssize_t n = pread(s->ackfd, buf, sizeof(buf), 0);

        for (int i = 0; n > 0 && i < 2; i++) {
                const char *slot = buf + i * ACK_SLOT;
                uint64_t gen;

                if ((size_t)n < (size_t)(i + 1) * ACK_SLOT ||
                    memcmp(slot, ack_magic, sizeof(ack_magic)) != 0 ||
                    le_get32(slot + 32) != slot_crc(slot))
                        continue;
                gen = le_get64(slot + 8);
                if (gen >= s->ack_gen) {
                        s->ack_gen = gen;
                        s->acked = le_get64(slot + 16);
                        s->written = le_get64(slot + 24);
                }
        }
        s->acked_saved = s->acked;
        s->written_saved = s->written;
}

static void write_checkpoint(struct spool *s)
{
        char slot[ACK_SLOT] = { 0 };
        uint64_t gen = s->ack_gen + 1;
        ssize_t n;

        if (s->ackfd < 0 || (s->acked == s->acked_saved && s->written == s->written_saved))
                return;
        memcpy(slot, ack_magic, sizeof(ack_magic));
        le_put64(slot + 8, gen);
        le_put64(slot + 16, s->acked);
        le_put64(slot + 24, s->written);
        le_put32(slot + 32, slot_crc(slot));
        n = pwrite(s->ackfd, slot, sizeof(slot), (off_t)((gen & 1) * ACK_SLOT));
        if (n != (ssize_t)sizeof(slot)) {
                spool__fail(s, "write the checkpoint", n < 0 ? errno : ENOSPC);
                return;
        }
        s->ack_gen = gen;
        s->acked_saved = s->acked;
        s->written_saved = s->written;
        s->ack_dirty = true;
        if (s->cfg->spool_sync == CFG_SYNC_ALWAYS) {
                spool__sync_now(s, s->ackfd, false);
                s->ack_dirty = false;
        }
}

static void on_ack_timer(uv_timer_t *t)
{
        write_checkpoint(t->data);
}

/* ---- segments ---- */

static void unlink_seg(struct spool *s, struct spool_seg *seg)
{
        if (unlinkat(s->dirfd, seg->name, 0) < 0 && errno != ENOENT)
                log_limited(LOG_WARNING, "spool_unlink", "spool: cannot delete %s: %s", seg->name,
                            strerror(errno));
        s->bytes -= seg->size;
        s->segments_deleted++;
        spool__dir_changed(s);
}

/* The last seq seg can hold: its own last record when known, else what
 * the next segment's name says, else (the newest) the last seq
 * appended. */
static uint64_t seg_upper(const struct spool *s, const struct spool_seg *seg)
{
        if (seg->last_seq)
                return seg->last_seq;
        if (!seg->next)
                return s->next_seq - 1;
        return seg->next->first_seq ? seg->next->first_seq - 1 : 0;
}

static void free_first_seg(struct spool *s)
{
        struct spool_seg *seg = s->segs;

        if (s->rseg == seg)
                spool__reader_reset(s);
        s->segs = seg->next;
        unlink_seg(s, seg);
        free(seg);
}

void spool__reclaim(struct spool *s)
{
        while (s->segs && s->segs != s->wseg && seg_upper(s, s->segs) <= s->acked)
                free_first_seg(s);
}

void spool__checkpoint_soon(struct spool *s)
{
        if (!uv_is_active((uv_handle_t *)&s->ack_timer))
                uv_timer_start(&s->ack_timer, on_ack_timer, SPOOL_ACK_DELAY_MS, 0);
}

void spool_ack(struct spool *s, uint64_t upto)
{
        if (upto <= s->acked)
                return;
        s->acked = upto;
        spool__reclaim(s);
        spool__checkpoint_soon(s);
}

bool spool_drop_oldest(struct spool *s, uint64_t *ret_lo, uint64_t *ret_hi)
{
        struct spool_seg *seg = s->segs;

        if (!seg || seg == s->wseg || !seg->next)
                return false;
        *ret_lo = seg->first_seq > s->acked ? seg->first_seq : s->acked + 1;
        *ret_hi = seg_upper(s, seg);
        s->dropped_segments++;
        free_first_seg(s);
        return true;
}

int spool_open(struct spool **ret, uv_loop_t *loop, const struct cfg *cfg, char *err, size_t errlen)
{
        struct spool *s = calloc(1, sizeof(*s));
        bool refuse;
        int r;

        if (!s)
                return -ENOMEM;
        s->loop = loop;
        s->cfg = cfg;
        s->dirfd = s->lockfd = s->ackfd = s->wfd = s->rfd = -1;
        s->state = SPOOL_ON;
        s->next_seq = 1;
        r = spool__open_dir(s, &refuse, err, errlen);
        if (refuse) {
                spool_close(s);
                return r;
        }
        s->first_new_seq = s->next_seq;
        uv_timer_init(loop, &s->ack_timer);
        uv_timer_init(loop, &s->sync_timer);
        uv_timer_init(loop, &s->retry_timer);
        s->ack_timer.data = s->sync_timer.data = s->retry_timer.data = s;
        s->open_handles = 3;
        spool__sync_timer_start(s);
        if (r < 0)
                spool__fail(s, "open", -r);
        *ret = s;
        return 0;
}

/* ---- queries, stats, close ---- */

void spool__maybe_free(struct spool *s)
{
        if (s->closed && !s->open_handles && !s->syncs)
                free(s);
}

enum spool_state spool_state(const struct spool *s)
{
        return s->state;
}

uint64_t spool_acked(const struct spool *s)
{
        return s->acked;
}

uint64_t spool_next_seq(const struct spool *s)
{
        return s->next_seq;
}

uint64_t spool_records(const struct spool *s)
{
        return s->records_written;
}

static unsigned count_segments(const struct spool *s)
{
        unsigned n = 0;

        for (const struct spool_seg *seg = s->segs; seg; seg = seg->next)
                n++;
        return n;
}

json_t *spool_stats(const struct spool *s)
{
        int64_t oldest = 0;
        json_t *j;

        for (const struct spool_seg *seg = s->segs; seg && !oldest; seg = seg->next)
                if (seg_upper(s, seg) > s->acked && seg->created_ms)
                        oldest = seg->created_ms;
        j = json_pack("{s:s s:s s:I s:I s:I s:I s:I s:I s:I s:I s:I s:I s:I}", "state",
                      s->state == SPOOL_ON ? "on" : "memory_only_after_error", "last_error",
                      s->state == SPOOL_ON ? "" : strerror(s->error), "bytes",
                      (json_int_t)(s->bytes + s->wbuf.len), "segments",
                      (json_int_t)count_segments(s), "acked_seq", (json_int_t)s->acked, "next_seq",
                      (json_int_t)s->next_seq, "replayed", (json_int_t)s->replayed,
                      "corrupt_records", (json_int_t)s->corrupt_records, "corrupt_bytes",
                      (json_int_t)s->corrupt_bytes, "write_errors", (json_int_t)s->write_errors,
                      "recoveries", (json_int_t)s->recoveries, "segments_deleted",
                      (json_int_t)s->segments_deleted, "segments_dropped",
                      (json_int_t)s->dropped_segments);
        if (j)
                json_object_set_new(
                        j, "oldest_pending_age_s",
                        json_real(oldest ? (double)(clock_wall_ms() - oldest) / 1000.0 : 0.0));
        return j;
}

static void on_handle_closed(uv_handle_t *h)
{
        struct spool *s = h->data;

        s->open_handles--;
        spool__maybe_free(s);
}

void spool_close(struct spool *s)
{
        if (!s)
                return;
        if (s->state == SPOOL_ON)
                spool_commit(s);
        s->closed = true; /* no more failures to report */
        write_checkpoint(s);
        if (s->cfg->spool_sync != CFG_SYNC_NEVER) {
                if (s->wfd >= 0)
                        fdatasync(s->wfd);
                if (s->ackfd >= 0)
                        fdatasync(s->ackfd);
                if (s->dirfd >= 0)
                        fsync(s->dirfd);
        }
        spool__reader_reset(s);
        spool__close_fd(&s->wfd);
        spool__close_fd(&s->ackfd);
        spool__close_fd(&s->lockfd); /* gives up the lock */
        spool__close_fd(&s->dirfd);
        while (s->segs) {
                struct spool_seg *seg = s->segs;

                s->segs = seg->next;
                free(seg);
        }
        proto_buf_free(&s->wbuf);
        proto_buf_free(&s->rbuf);
        if (!s->open_handles) {
                spool__maybe_free(s);
                return;
        }
        uv_close((uv_handle_t *)&s->ack_timer, on_handle_closed);
        uv_close((uv_handle_t *)&s->sync_timer, on_handle_closed);
        uv_close((uv_handle_t *)&s->retry_timer, on_handle_closed);
}
