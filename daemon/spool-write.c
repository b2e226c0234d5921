/* spool-write.c - appending records and writing them: one write() per
 * commit (a read burst), a new segment file past SPOOL_SEGMENT_MAX, and
 * what a failure does: the spool turns memory-only, says once what to
 * do about it, keeps the records it could not write, and tries again
 * (spool-open.c's retry timer).
 */
#include "spool-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

int spool__check_dir_mode(int dirfd, const char *dir, char *err, size_t errlen)
{
        struct stat st;

        if (fstat(dirfd, &st) < 0)
                return -errno;
        /* Anyone else who may write here could forge or delete events. */
        if ((st.st_mode & 0022) || (st.st_uid != geteuid() && st.st_uid != 0)) {
                snprintf(err, errlen,
                         "[buffer] spool_dir %s may be written by other users (owner uid %u, "
                         "mode %04o); make it belong to segopsd's user with mode 0700 (systemd's "
                         "StateDirectory does)",
                         dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
                return -EPERM;
        }
        return 0;
}

void spool__fail(struct spool *s, const char *what, int err)
{
        s->write_errors++;
        s->error = err;
        if (s->wfd >= 0) {
                /* A partial write must not leave a torn record behind. */
                if (s->wseg && ftruncate(s->wfd, (off_t)s->wseg->size) < 0)
                        (void)0;
                close(s->wfd);
                s->wfd = -1;
        }
        s->wseg = NULL; /* the next success starts a new segment */
        if (s->state == SPOOL_FAILED)
                return;
        s->state = SPOOL_FAILED;
        log_err("spool: cannot %s in %s: %s. segopsd goes on memory-only (events accepted "
                "now are lost if it stops before they are sent) and tries the disk again every "
                "%d s; %s",
                what, s->cfg->spool_dir, strerror(err), SPOOL_RETRY_MS / 1000,
                err == ENOSPC || err == EDQUOT ? "free some space on that filesystem"
                : err == EROFS                 ? "the filesystem is read-only: remount it"
                : err == EACCES || err == EPERM
                        ? "let segopsd's user write there (systemd: StateDirectory)"
                : err == ENOENT ? "create the directory (systemd: StateDirectory)"
                                : "check the disk and the kernel log");
        spool__start_retry(s);
}

int spool_append(struct spool *s, uint64_t seq, const char *ev, size_t len)
{
        size_t rec = segfile_record_size(len);
        int r;

        if (s->bytes + s->wbuf.len + rec + SEGFILE_HEADER_LEN > s->cfg->max_spool)
                return -ENOSPC;
        if (!s->wbuf.len)
                s->wbuf_first = seq;
        r = segfile_append(&s->wbuf, seq, ev, len);
        if (r < 0)
                return r;
        s->wbuf_records++;
        if (seq >= s->next_seq)
                s->next_seq = seq + 1;
        return 0;
}

size_t spool_unwritten(const struct spool *s)
{
        return s->wbuf.len;
}

uint64_t spool_unwritten_first(const struct spool *s)
{
        return s->wbuf.len ? s->wbuf_first : UINT64_MAX;
}

void spool_forget_unwritten(struct spool *s)
{
        s->wbuf_records = 0;
        proto_buf_reset(&s->wbuf);
        if (s->wbuf.cap > SPOOL_READ_CHUNK)
                proto_buf_free(&s->wbuf);
        s->wbuf_rpos = 0;
}

static size_t segment_max(const struct spool *s)
{
        size_t max = s->cfg->max_spool / 8;

        if (max > SPOOL_SEGMENT_MAX)
                max = SPOOL_SEGMENT_MAX;
        return max < SPOOL_SEGMENT_MIN ? SPOOL_SEGMENT_MIN : max;
}

/* A new segment file for records from first on, its header written. */
static int new_segment(struct spool *s, uint64_t first)
{
        struct spool_seg *seg = calloc(1, sizeof(*seg)), **tail;
        char header[SEGFILE_HEADER_LEN];
        int fd;

        if (!seg)
                return ENOMEM;
        seg->first_seq = first;
        seg->created_ms = clock_wall_ms();
        segfile_name(seg->name, first);
        fd = openat(s->dirfd, seg->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                    0600);
        if (fd < 0) {
                int e = errno;

                free(seg);
                return e;
        }
        segfile_header(header, first, seg->created_ms);
        if (write(fd, header, sizeof(header)) != (ssize_t)sizeof(header)) {
                int e = errno ? errno : ENOSPC;

                close(fd);
                unlinkat(s->dirfd, seg->name, 0);
                free(seg);
                return e;
        }
        seg->size = sizeof(header);
        s->bytes += seg->size;
        for (tail = &s->segs; *tail; tail = &(*tail)->next)
                ;
        *tail = seg;
        s->wseg = seg;
        s->wfd = fd;
        spool__dir_changed(s);
        return 0;
}

/* The segment being written is full: close it; it is done with once
 * every seq in it is acknowledged. Its last writes reach the disk as the
 * policy says: with always they already have; with interval the sync
 * timer would only see the next segment, so this one is synced now, on
 * the thread pool: on the loop, a segment's unsynced tail took 12-20 ms
 * of fdatasync, every 8 MiB, while no event was read (bench/README.md). */
static void end_segment(struct spool *s)
{
        if (s->cfg->spool_sync == CFG_SYNC_INTERVAL && s->data_dirty)
                spool__sync_async(s, s->wfd, false);
        s->data_dirty = false;
        close(s->wfd);
        s->wfd = -1;
        s->wseg = NULL;
}

enum spool_state spool_commit(struct spool *s)
{
        const char *p = s->wbuf.data;
        size_t left = s->wbuf.len;
        int r;

        if (!left || s->state != SPOOL_ON)
                return s->state;
        if (s->wseg && s->wseg->size >= segment_max(s))
                end_segment(s);
        if (!s->wseg && (r = new_segment(s, s->wbuf_first)) != 0) {
                spool__fail(s, "create a segment file", r);
                return s->state;
        }
        while (left) {
                ssize_t n = write(s->wfd, p, left);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        spool__fail(s, "write", n < 0 ? errno : ENOSPC);
                        return s->state;
                }
                p += n;
                left -= (size_t)n;
        }
        s->wseg->size += s->wbuf.len;
        s->wseg->last_seq = s->next_seq - 1;
        s->written = s->next_seq - 1;
        spool__checkpoint_soon(s);
        s->bytes += s->wbuf.len;
        s->records_written += s->wbuf_records;
        spool_forget_unwritten(s);
        spool__data_written(s);
        return s->state;
}
