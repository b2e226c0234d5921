/* spool-sync.c - the sync policy ([buffer] spool_sync) and its syncs:
 * with always, fdatasync (fsync for the directory) on the loop after
 * each write; with interval, a timer that syncs what changed since its
 * last round (the segment being written, the checkpoint, the directory)
 * on libuv's thread pool, one round at a time; with never, none. A
 * failed sync fails the spool as a failed write does. The clean close's
 * last syncs are spool.c's.
 */
#include "spool-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

struct sync_req {
        uv_fs_t req;
        struct spool *s;
        int fd;
};

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
        spool__maybe_free(s);
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

void spool__sync_timer_start(struct spool *s)
{
        if (s->cfg->spool_sync == CFG_SYNC_INTERVAL) {
                uint64_t ms = (uint64_t)(s->cfg->spool_sync_interval * 1000.0);

                uv_timer_start(&s->sync_timer, on_sync, ms ? ms : 1, ms ? ms : 1);
        }
}
