/* spool-open.c - finding the spool on disk: the directory (made 0700 if
 * missing, refused when others may write to it), its lock, and the
 * segments an earlier run left there: where their records end (the next
 * seq) and what the checkpoint says went missing from the newest one.
 * At start, and again after a failure: the retry timer opens a directory
 * that was not there at start, checks that a file can be written with
 * room to spare, and turns the spool back on. The checkpoint's format is
 * spool.c's; writing records is spool-write.c's.
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

#include "log.h"

#define ACK_FILE "acked"
#define LOCK_FILE "lock"

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

/* Forget the segments found: they are not this run's (late_open). */
static void free_segs(struct spool *s)
{
        while (s->segs) {
                struct spool_seg *seg = s->segs;

                s->segs = seg->next;
                free(seg);
        }
        s->bytes = 0;
}

/* ---- at start ---- */

int spool__open_dir(struct spool *s, bool *ret_refuse, char *err, size_t errlen)
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
                spool__close_fd(&s->lockfd); /* on_retry() opens it all again */
                return r;
        }
        spool__read_checkpoint(s);
        s->next_seq = s->acked + 1;
        r = find_segments(s);
        if (r < 0) {
                spool__close_fd(&s->ackfd);
                spool__close_fd(&s->lockfd);
                return r;
        }
        note_tail_loss(s);
        spool__reclaim(s);
        return 0;
}

/* ---- after a failure ---- */

/* The directory could not be opened at start: open it now, as a fresh
 * one. A directory that holds segments by now (a mount that came back)
 * is not written to: its seqs may clash with this run's, and the next
 * start replays them. */
static int late_open(struct spool *s)
{
        char err[512];
        uint64_t next;
        int r;

        spool__close_fd(&s->dirfd);
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
                spool__close_fd(&s->dirfd);
                return r;
        }
        s->ackfd = openat(s->dirfd, ACK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->ackfd < 0) {
                r = -errno;
                spool__close_fd(&s->lockfd);
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
                spool__close_fd(&s->ackfd);
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
