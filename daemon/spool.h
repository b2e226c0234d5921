/* spool.h - the write-ahead disk spool under spool_dir (SPEC section 5).
 *
 * Every accepted event is appended here as a record (segfile.h) and
 * written with one write() per read burst; the memory queue is a window
 * over it, refilled from disk when a backlog outgrows max_memory. What
 * the upstream took, or what was lost for good, is acknowledged by
 * sequence number: a checkpoint file remembers it, and a segment file is
 * deleted once everything in it is done. After a start, whatever the
 * checkpoint does not cover is read back and sent again, oldest first.
 *
 * The spool never stops the daemon: damage is skipped and counted, and
 * a directory that cannot be written (ENOSPC, EIO, EROFS, missing, not
 * writable) turns it to memory-only until writes succeed again (it
 * retries by itself). Only two things refuse a start: a spool_dir that
 * other users may write to, and another segopsd holding its lock.
 */
#ifndef SEGOPSD_SPOOL_H
#define SEGOPSD_SPOOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

struct spool;

enum spool_state {
        SPOOL_ON,     /* writing */
        SPOOL_FAILED, /* a write failed or the directory is unusable: retrying */
};

/* Open (or create, 0700) cfg->spool_dir, take its lock, read the
 * checkpoint and find where the records end. 0 with *ret set (its state
 * may be SPOOL_FAILED: the daemon runs memory-only until the directory
 * works); or -EPERM (the directory may be written by other users),
 * -EBUSY (another segopsd holds it), -ENOMEM, with err filled. */
int spool_open(struct spool **ret, uv_loop_t *loop, const struct cfg *cfg, char *err,
               size_t errlen);

enum spool_state spool_state(const struct spool *s);

/* Replay: every seq up to spool_acked() is done; records after it are
 * to be sent again; new events take seqs from spool_next_seq() on. */
uint64_t spool_acked(const struct spool *s);
uint64_t spool_next_seq(const struct spool *s);

/* Append seq's record (seqs ascending) to what the next spool_commit
 * writes. 0; -ENOSPC when max_spool has no room for it; -EMSGSIZE;
 * -ENOMEM. */
int spool_append(struct spool *s, uint64_t seq, const char *ev, size_t len);

/* Write what was appended since the last commit, in one write(). On a
 * failure the spool turns SPOOL_FAILED (logged once, counted) and keeps
 * the records: spool_load can still hand them out, and they are written
 * once the disk works again, unless spool_forget_unwritten drops them.
 * Returns the state after. */
enum spool_state spool_commit(struct spool *s);

/* Bytes appended and not yet written (charged to max_memory), and the
 * seq of the first of them. */
size_t spool_unwritten(const struct spool *s);
uint64_t spool_unwritten_first(const struct spool *s);

/* The unwritten records are in memory elsewhere already (the queue
 * took them): stop keeping a second copy. Their seqs will be missing on
 * disk, which a later replay takes as a gap, not as damage. */
void spool_forget_unwritten(struct spool *s);

/* Records from seq `from` on, oldest first, from disk (or the unwritten
 * tail), each handed to take() until it returns false (no room: that
 * record is offered again next time) or nothing is left. Seqs that
 * damage made unreadable are handed to lost(lo, hi) first, and counted
 * in the corrupt stats; seqs missing without damage (never written: an
 * earlier run's memory-only spell, an empty newest segment) to gap(lo,
 * hi), which may be NULL. Returns the seq of the next record to load
 * (spool_next_seq() when all is loaded). */
typedef bool (*spool_take_fn)(void *ud, uint64_t seq, const char *ev, size_t len);
typedef void (*spool_lost_fn)(void *ud, uint64_t lo, uint64_t hi);
typedef void (*spool_gap_fn)(void *ud, uint64_t lo, uint64_t hi);
struct spool_load_fns {
        spool_take_fn take;
        spool_lost_fn lost;
        spool_gap_fn gap;
};
uint64_t spool_load(struct spool *s, uint64_t from, const struct spool_load_fns *fns, void *ud);

/* Every seq up to upto is done (delivered, or lost and counted): the
 * checkpoint is brought up to date soon (at most SPOOL_ACK_DELAY_MS
 * later), and segment files wholly done are deleted. */
void spool_ack(struct spool *s, uint64_t upto);

/* When max_spool is full with when_full = drop_oldest: delete the oldest
 * segment file. *ret_lo..*ret_hi are the seqs it held that were not yet
 * done (their events are lost unless they are in memory). Returns false
 * when there is no segment to give up (only the one being written). */
bool spool_drop_oldest(struct spool *s, uint64_t *ret_lo, uint64_t *ret_hi);

/* Records written since start. */
uint64_t spool_records(const struct spool *s);

json_t *spool_stats(const struct spool *s);

/* Write what is left and the checkpoint, sync as the policy says, give
 * up the lock, free everything (NULL ok). */
void spool_close(struct spool *s);

#endif
