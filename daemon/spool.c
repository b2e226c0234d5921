/* spool.c - the spool's directory: opening it (lock, checkpoint, the
 * segments left by an earlier run), acknowledgements and the checkpoint
 * file, deleting segments that are done, the sync policy, the retry
 * after a failure, stats, and the clean close. Writing records is
 * spool-write.c's, reading them back spool-read.c's.
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
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "crc32c.h"
#include "log.h"

#define ACK_FILE "acked"
#define LOCK_FILE "lock"
#define ACK_SLOT 40
static const char ack_magic[8] = { 'S', 'G', 'A', 'C', 'K', 'v', '2', '\0' };

static void close_fd(int *fd)
{
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* ---- the checkpoint ---- */

static uint32_t slot_crc(const char *slot)
{
        return crc32c(0, slot, 32);
}

/* The checkpoint's acked, written and generation; 0 when there is none. */
static void read_checkpoint(struct spool *s)
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

/* Segments wholly done go, the newest too once nothing is written to
 * it (after a failure, a full disk needs that room back); the one being
 * written stays. */
static void reclaim(struct spool *s)
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
        reclaim(s);
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

static void free_segs(struct spool *s)
{
        while (s->segs) {
                struct spool_seg *seg = s->segs;

                s->segs = seg->next;
                free(seg);
        }
        s->bytes = 0;
}

/* The segment files of an earlier run, oldest first; the last is read
 * now to find where its records end (the next seq). Files that are not
 * segments are left alone and named once. */
static int find_segments(struct spool *s)
{
        struct spool_seg **tail = &s->segs, *seg;
        struct dirent **names;
        int n = scandirat(s->dirfd, ".", &names, NULL, alphasort);

        if (n < 0)
                return -errno;
        for (int i = 0; i < n; i++) {
                const char *name = names[i]->d_name;
                uint64_t first;
                struct stat st;

                if (segfile_parse_name(name, &first) < 0) {
                        if (name[0] != '.' && strcmp(name, ACK_FILE) && strcmp(name, LOCK_FILE))
                                log_warn("spool: %s is not a spool file; it is left alone", name);
                        free(names[i]);
                        continue;
                }
                seg = calloc(1, sizeof(*seg));
                if (!seg || fstatat(s->dirfd, name, &st, 0) < 0) {
                        free(seg);
                        free(names[i]);
                        continue;
                }
                seg->first_seq = first;
                seg->size = (uint64_t)st.st_size;
                memcpy(seg->name, name, SEGFILE_NAME_LEN);
                s->bytes += seg->size;
                *tail = seg;
                tail = &seg->next;
                free(names[i]);
        }
        free(names);
        /* The last one's end says where new seqs start. */
        for (seg = s->segs; seg && seg->next; seg = seg->next)
                ;
        if (seg) {
                spool__scan_tail(s, seg);
                /* Its name is taken even when no record in it survived
                 * (a power loss after it was made): start after it. */
                if (seg->first_seq >= s->next_seq)
                        s->next_seq = seg->first_seq + 1;
                if (seg->last_seq >= s->next_seq)
                        s->next_seq = seg->last_seq + 1;
        }
        return 0;
}

/* Records the checkpoint says were written, beyond the last one found:
 * the newest segment lost its end (a torn or truncated file). Their seqs
 * are not given to new events, and the reader reports them lost. */
static void note_tail_loss(struct spool *s)
{
        uint64_t lo = s->next_seq > s->acked + 1 ? s->next_seq : s->acked + 1;

        if (s->written < lo)
                return;
        s->tail_lost_lo = lo;
        s->tail_lost_hi = s->written;
        s->next_seq = s->written + 1;
        log_warn("spool: the newest segment ends before event %llu, which was written there: "
                 "events %llu..%llu are missing (a torn or truncated file) and counted as lost",
                 (unsigned long long)s->written, (unsigned long long)lo,
                 (unsigned long long)s->written);
}

/* ---- opening ---- */

/* The lock: one segopsd per spool_dir; the file says who holds it. */
static int take_lock(struct spool *s, char *err, size_t errlen)
{
        char pid[32];
        int n;

        s->lockfd = openat(s->dirfd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->lockfd < 0)
                return -errno;
        if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
                int e = errno;

                n = (int)pread(s->lockfd, pid, sizeof(pid) - 1, 0);
                pid[n > 0 ? n : 0] = '\0';
                pid[strcspn(pid, "\n")] = '\0';
                close(s->lockfd);
                s->lockfd = -1;
                if (e != EWOULDBLOCK)
                        return -e;
                snprintf(err, errlen,
                         "[buffer] spool_dir %s is in use by another segopsd (pid %s); "
                         "give each segopsd its own spool_dir",
                         s->cfg->spool_dir, pid[0] ? pid : "unknown");
                return -EBUSY;
        }
        /* The pid only names the holder in another segopsd's error: a
         * full disk that cannot take it must not fail the open (after
         * the lock, a failure would leave the rest of it undone). */
        n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (ftruncate(s->lockfd, 0) == 0 && pwrite(s->lockfd, pid, (size_t)n, 0) != n)
                log_limited(LOG_WARNING, "spool_lock", "spool: cannot write the pid in %s/%s",
                            s->cfg->spool_dir, LOCK_FILE);
        return 0;
}

/* Directory, lock, checkpoint, segments. 0, or a negative errno; with
 * *ret_refuse set when it must refuse the start (a directory other users
 * may write to, another segopsd's lock; err says which), else it leaves
 * the spool failed (memory-only, retrying). */
static int open_dir(struct spool *s, bool *ret_refuse, char *err, size_t errlen)
{
        const char *dir = s->cfg->spool_dir;
        int r;

        *ret_refuse = false;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0)
                return -errno;
        r = spool__check_dir_mode(s->dirfd, dir, err, errlen);
        if (r == 0)
                r = take_lock(s, err, errlen);
        if (r == -EPERM || r == -EBUSY) {
                *ret_refuse = true;
                return r;
        }
        if (r < 0)
                return r;
        s->ackfd = openat(s->dirfd, ACK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->ackfd < 0) {
                r = -errno;
                close_fd(&s->lockfd); /* on_retry() opens it all again */
                return r;
        }
        read_checkpoint(s);
        s->next_seq = s->acked + 1;
        r = find_segments(s);
        if (r < 0) {
                close_fd(&s->ackfd);
                close_fd(&s->lockfd);
                return r;
        }
        note_tail_loss(s);
        reclaim(s);
        return 0;
}

static void on_sync(uv_timer_t *t);

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
        r = open_dir(s, &refuse, err, errlen);
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
        if (cfg->spool_sync == CFG_SYNC_INTERVAL) {
                uint64_t ms = (uint64_t)(cfg->spool_sync_interval * 1000.0);

                uv_timer_start(&s->sync_timer, on_sync, ms ? ms : 1, ms ? ms : 1);
        }
        if (r < 0)
                spool__fail(s, "open", -r);
        *ret = s;
        return 0;
}

/* ---- sync and retry ---- */

struct sync_req {
        uv_fs_t req;
        struct spool *s;
        int fd;
};

static void maybe_free(struct spool *s)
{
        if (s->closed && !s->open_handles && !s->syncs)
                free(s);
}

/* A failed sync is a failed write: the kernel may have dropped the
 * dirty pages it could not write (fsync(2)), so what they held may not
 * be on disk. */
static void on_synced(uv_fs_t *req)
{
        struct sync_req *sr = req->data;
        struct spool *s = sr->s;
        ssize_t r = req->result;

        uv_fs_req_cleanup(req);
        close(sr->fd);
        free(sr);
        s->syncs--;
        if (r < 0 && !s->closed)
                spool__fail(s, "sync", (int)-r);
        maybe_free(s);
}

/* fdatasync (fsync for a directory) on the thread pool, on a copy of
 * fd so that closing the original meanwhile is harmless. */
void spool__sync_async(struct spool *s, int fd, bool dir)
{
        struct sync_req *sr;

        if (fd < 0)
                return;
        sr = malloc(sizeof(*sr));
        if (!sr)
                return;
        sr->s = s;
        sr->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        sr->req.data = sr;
        if (sr->fd < 0 || (dir ? uv_fs_fsync(s->loop, &sr->req, sr->fd, on_synced)
                               : uv_fs_fdatasync(s->loop, &sr->req, sr->fd, on_synced)) < 0) {
                if (sr->fd >= 0)
                        close(sr->fd);
                free(sr);
                return;
        }
        s->syncs++;
}

static void on_sync(uv_timer_t *t)
{
        struct spool *s = t->data;

        /* One round at a time: a disk slower than the interval must not
         * pile syncs up on the thread pool (gzip runs there too). */
        if (s->syncs)
                return;
        if (s->data_dirty)
                spool__sync_async(s, s->wfd, false);
        if (s->ack_dirty)
                spool__sync_async(s, s->ackfd, false);
        if (s->dir_dirty)
                spool__sync_async(s, s->dirfd, true);
        s->data_dirty = s->ack_dirty = s->dir_dirty = false;
}

/* spool_sync = always: on the loop, now; its failure is a write's. */
int spool__sync_now(struct spool *s, int fd, bool dir)
{
        if (fd < 0 || (dir ? fsync(fd) : fdatasync(fd)) == 0)
                return 0;
        spool__fail(s, "sync", errno);
        return -1;
}

void spool__data_written(struct spool *s)
{
        if (s->cfg->spool_sync == CFG_SYNC_ALWAYS)
                spool__sync_now(s, s->wfd, false);
        else
                s->data_dirty = true;
}

void spool__dir_changed(struct spool *s)
{
        if (s->cfg->spool_sync == CFG_SYNC_ALWAYS)
                spool__sync_now(s, s->dirfd, true);
        else
                s->dir_dirty = true;
}

/* The directory could not be opened at start: open it now, as a fresh
 * one. A directory that holds segments by now (a mount that came back)
 * is not written to: its seqs may clash with this run's, and the next
 * start replays them. */
static int late_open(struct spool *s)
{
        char err[512];
        uint64_t next;
        int r;

        close_fd(&s->dirfd);
        if (mkdir(s->cfg->spool_dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        s->dirfd = open(s->cfg->spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0)
                return -errno;
        r = spool__check_dir_mode(s->dirfd, s->cfg->spool_dir, err, sizeof(err));
        if (r == 0)
                r = take_lock(s, err, sizeof(err));
        if (r < 0) {
                if (r == -EPERM || r == -EBUSY)
                        log_limited(LOG_ERR, "spool_late", "spool: %s", err);
                close_fd(&s->dirfd);
                return r;
        }
        s->ackfd = openat(s->dirfd, ACK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->ackfd < 0) {
                r = -errno;
                close_fd(&s->lockfd);
                return r;
        }
        next = s->next_seq;
        if (find_segments(s) == 0 && s->segs) {
                /* Its seqs are not this run's: leave the files and their
                 * checkpoint to the next start. */
                log_warn("spool: %s now holds an earlier run's spool; it is left alone until the "
                         "next start (this run stays memory-only)",
                         s->cfg->spool_dir);
                free_segs(s);
                s->next_seq = next;
                close_fd(&s->ackfd);
                s->unknown_segments = true;
                return -EEXIST;
        }
        return 0;
}

/* Can a file be made and written in the directory now, with room for
 * what waits (at least a small segment's worth: a byte's room on a
 * nearly full disk would only fail the next write again)? 0 or -errno. */
static int probe(struct spool *s)
{
        static const char name[] = ".probe";
        static const char zeros[4096];
        size_t want = s->wbuf.len > SPOOL_SEGMENT_MIN ? s->wbuf.len : SPOOL_SEGMENT_MIN;
        int fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int r = 0;

        if (fd < 0)
                return -errno;
        if (want > SPOOL_SEGMENT_MAX)
                want = SPOOL_SEGMENT_MAX;
        for (size_t done = 0; r == 0 && done < want; done += sizeof(zeros))
                if (write(fd, zeros, sizeof(zeros)) != (ssize_t)sizeof(zeros))
                        r = -(errno ? errno : ENOSPC);
        close(fd);
        unlinkat(s->dirfd, name, 0);
        return r;
}
/* Failed: try the directory again. The next commit writes what waits. */
static void on_retry(uv_timer_t *t)
{
        struct spool *s = t->data;
        int r = 0;

        if (s->lockfd < 0)
                r = late_open(s);
        if (r == 0)
                r = probe(s);
        if (r < 0) {
                s->error = -r;
                if (s->unknown_segments) /* nothing to retry until a restart */
                        uv_timer_stop(&s->retry_timer);
                return;
        }
        uv_timer_stop(&s->retry_timer);
        s->state = SPOOL_ON;
        s->recoveries++;
        log_info("spool: %s is writable again; spooling resumed", s->cfg->spool_dir);
        spool_commit(s);
}

void spool__start_retry(struct spool *s)
{
        if (!uv_is_active((uv_handle_t *)&s->retry_timer))
                uv_timer_start(&s->retry_timer, on_retry, SPOOL_RETRY_MS, SPOOL_RETRY_MS);
}

/* ---- queries, stats, close ---- */

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
        maybe_free(s);
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
        close_fd(&s->wfd);
        close_fd(&s->ackfd);
        close_fd(&s->lockfd); /* gives up the lock */
        close_fd(&s->dirfd);
        while (s->segs) {
                struct spool_seg *seg = s->segs;

                s->segs = seg->next;
                free(seg);
        }
        proto_buf_free(&s->wbuf);
        proto_buf_free(&s->rbuf);
        if (!s->open_handles) {
                maybe_free(s);
                return;
        }
        uv_close((uv_handle_t *)&s->ack_timer, on_handle_closed);
        uv_close((uv_handle_t *)&s->sync_timer, on_handle_closed);
        uv_close((uv_handle_t *)&s->retry_timer, on_handle_closed);
}
