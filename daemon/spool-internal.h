/* spool-internal.h - what spool.c, spool-open.c, spool-sync.c,
 * spool-write.c and spool-read.c share. Not for other modules: they use
 * spool.h. */
#ifndef SEGOPSD_SPOOL_INTERNAL_H
#define SEGOPSD_SPOOL_INTERNAL_H

#include "proto.h"
#include "segfile.h"
#include "spool.h"

#include <unistd.h>

#define SPOOL_SEGMENT_MAX (8u * 1024 * 1024) /* a segment file is closed past this */
#define SPOOL_SEGMENT_MIN (64u * 1024)
#define SPOOL_READ_CHUNK (256u * 1024) /* bytes read from a segment at a time */
#define SPOOL_RETRY_MS 5000            /* a failed spool tries the disk again */
#define SPOOL_ACK_DELAY_MS 50          /* checkpoint writes are coalesced */

/* One segment file, oldest first in the spool's list. */
struct spool_seg {
        struct spool_seg *next;
        uint64_t first_seq; /* from its name */
        uint64_t last_seq;  /* the last record in it; 0 while unknown */
        uint64_t size;      /* bytes in the file */
        int64_t created_ms; /* wall clock, from its header; 0 while unknown */
        bool damage_logged; /* one log line per damaged file */
        char name[SEGFILE_NAME_LEN];
};

struct spool {
        uv_loop_t *loop;
        const struct cfg *cfg;
        int dirfd, lockfd, ackfd; /* -1 when not open */
        enum spool_state state;
        int error;              /* the errno that failed it */
        struct spool_seg *segs; /* oldest first */
        struct spool_seg *wseg; /* the one written to (the last), or NULL */
        int wfd;
        uint64_t bytes;                      /* in segment files */
        uint64_t next_seq;                   /* after every record appended or found */
        uint64_t first_new_seq;              /* seqs below it come from an earlier run */
        struct proto_buf wbuf;               /* appended, not yet written */
        uint64_t wbuf_first;                 /* seq of its first record */
        size_t wbuf_rpos;                    /* the reader's place in it */
        uint64_t acked;                      /* every seq <= acked is done */
        uint64_t acked_saved;                /* as the checkpoint file says */
        uint64_t written;                    /* the highest seq written to a segment */
        uint64_t written_saved;              /* as the checkpoint file says */
        uint64_t tail_lost_lo, tail_lost_hi; /* written, but missing at start */
        uint64_t ack_gen;
        /* the reader */
        struct spool_seg *rseg;
        int rfd;
        uint64_t rbuf_off; /* file offset of rbuf's first byte */
        struct proto_buf rbuf;
        size_t rpos;         /* next byte of rbuf to parse */
        bool damage_pending; /* bytes were skipped since the last record */
        /* timers: checkpoint, sync, retry */
        uv_timer_t ack_timer, sync_timer, retry_timer;
        int open_handles;
        bool data_dirty, ack_dirty, dir_dirty; /* written, not yet synced */
        bool unknown_segments;                 /* found on recovery, not read at start */
        bool closed;                           /* spool_close ran: freed once the syncs are done */
        unsigned syncs;                        /* on the thread pool */
        /* stats */
        uint64_t replayed, corrupt_records, corrupt_bytes, write_errors;
        uint64_t wbuf_records, records_written;
        uint64_t recoveries, segments_deleted, dropped_segments;
};

static inline void spool__close_fd(int *fd)
{
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* spool.c */
/* The checkpoint is written within SPOOL_ACK_DELAY_MS. */
void spool__checkpoint_soon(struct spool *s);
/* The checkpoint's acked, written and generation; 0 when there is none. */
void spool__read_checkpoint(struct spool *s);
/* Segments wholly done go, the newest too once nothing is written to
 * it (after a failure, a full disk needs that room back); the one being
 * written stays. */
void spool__reclaim(struct spool *s);
/* Frees s once spool_close has run and no handle or sync is left. */
void spool__maybe_free(struct spool *s);

/* spool-open.c */
/* Directory, lock, checkpoint, segments. 0, or a negative errno; with
 * *ret_refuse set when it must refuse the start (a directory other users
 * may write to, another segopsd's lock; err says which), else it leaves
 * the spool failed (memory-only, retrying). */
int spool__open_dir(struct spool *s, bool *ret_refuse, char *err, size_t errlen);
/* Failed: the retry timer tries the directory every SPOOL_RETRY_MS. */
void spool__start_retry(struct spool *s);

/* spool-sync.c */
/* With spool_sync = interval, the timer that syncs what changed. */
void spool__sync_timer_start(struct spool *s);
void spool__dir_changed(struct spool *s);
void spool__data_written(struct spool *s);
/* fdatasync fd (fsync: a directory) on the thread pool, on a copy of it,
 * so that the caller may close fd at once. */
void spool__sync_async(struct spool *s, int fd, bool dir);
/* The same, now, on the loop (spool_sync = always). 0, or -1 having
 * failed the spool. */
int spool__sync_now(struct spool *s, int fd, bool dir);

/* spool-write.c */
void spool__fail(struct spool *s, const char *what, int err);
int spool__check_dir_mode(int dirfd, const char *dir, char *err, size_t errlen);

/* spool-read.c */
void spool__reader_reset(struct spool *s);
/* Read seg wholly from disk to find its last record and its header. */
void spool__scan_tail(struct spool *s, struct spool_seg *seg);

#endif
