/* test-spool.c - the spool on a real directory: records written and
 * read back in order, acknowledged and reclaimed, replayed after a
 * reopen, damage reported as lost seqs, the lock, max_spool, and a
 * directory that cannot be used (memory-only, not a refusal). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "segfile.h"
#include "spool.h"

struct fx {
        uv_loop_t loop;
        struct cfg cfg;
        char dir[64];
        struct spool *s;
        /* what spool_load handed out */
        uint64_t seqs[4096];
        char first[64];
        int n, room;
        uint64_t lost_lo, lost_hi;
        int lost_calls;
};

static void setup(struct fx *f)
{
        memset(f, 0, sizeof(*f));
        ck_assert_int_eq(uv_loop_init(&f->loop), 0);
        cfg_defaults(&f->cfg);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-spool-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(f->dir));
        f->cfg.spool_dir = strdup(f->dir);
        f->cfg.spool_sync = CFG_SYNC_NEVER;
        f->room = 1 << 30;
}

static void open_spool(struct fx *f)
{
        char err[512];

        ck_assert_msg(spool_open(&f->s, &f->loop, &f->cfg, err, sizeof(err)) == 0, "%s", err);
}

static void close_spool(struct fx *f)
{
        spool_close(f->s);
        f->s = NULL;
        uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void teardown(struct fx *f)
{
        char cmd[128];

        if (f->s)
                close_spool(f);
        ck_assert_int_eq(uv_loop_close(&f->loop), 0);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        ck_assert_int_eq(system(cmd), 0);
        cfg_free(&f->cfg);
}

static void append(struct fx *f, uint64_t from, uint64_t to)
{
        char ev[64];

        for (uint64_t seq = from; seq <= to; seq++) {
                int len = snprintf(ev, sizeof(ev), "{\"event_id\":\"e%llu\"}",
                                   (unsigned long long)seq);

                ck_assert_int_eq(spool_append(f->s, seq, ev, (size_t)len), 0);
        }
}

static bool take(void *ud, uint64_t seq, const char *ev, size_t len)
{
        struct fx *f = ud;

        if (f->n >= f->room)
                return false;
        if (!f->n)
                snprintf(f->first, sizeof(f->first), "%.*s", (int)len, ev);
        f->seqs[f->n++] = seq;
        return true;
}

static void lost(void *ud, uint64_t lo, uint64_t hi)
{
        struct fx *f = ud;

        f->lost_calls++;
        f->lost_lo = lo;
        f->lost_hi = hi;
}

static uint64_t load(struct fx *f, uint64_t from)
{
        f->n = 0;
        static const struct spool_load_fns fns = { take, lost, NULL };

        return spool_load(f->s, from, &fns, f);
}

static int count_files(const struct fx *f, const char *suffix)
{
        DIR *d = opendir(f->dir);
        struct dirent *e;
        int n = 0;

        while ((e = readdir(d)))
                n += strlen(e->d_name) > strlen(suffix) &&
                     strcmp(e->d_name + strlen(e->d_name) - strlen(suffix), suffix) == 0;
        closedir(d);
        return n;
}

START_TEST(test_write_and_read_back)
{
        struct fx f;

        setup(&f);
        open_spool(&f);
        ck_assert_int_eq(spool_state(f.s), SPOOL_ON);
        ck_assert_uint_eq(spool_next_seq(f.s), 1);
        append(&f, 1, 100);
        ck_assert_uint_gt(spool_unwritten(f.s), 0);
        ck_assert_int_eq(spool_commit(f.s), SPOOL_ON);
        ck_assert_uint_eq(spool_unwritten(f.s), 0);
        /* Read back from 40 on, 10 at a time: no gaps, no repeats. */
        f.room = 10;
        ck_assert_uint_eq(load(&f, 40), 50);
        ck_assert_int_eq(f.n, 10);
        ck_assert_uint_eq(f.seqs[0], 40);
        ck_assert_str_eq(f.first, "{\"event_id\":\"e40\"}");
        f.room = 1000;
        ck_assert_uint_eq(load(&f, 50), 101);
        ck_assert_int_eq(f.n, 51);
        ck_assert_uint_eq(f.seqs[50], 100);
        ck_assert_int_eq(f.lost_calls, 0);
        teardown(&f);
}
END_TEST

START_TEST(test_reopen_replays_what_is_not_acked)
{
        struct fx f;

        setup(&f);
        open_spool(&f);
        append(&f, 1, 30);
        spool_commit(f.s);
        spool_ack(f.s, 12);
        close_spool(&f); /* the checkpoint is written at close */
        open_spool(&f);
        ck_assert_uint_eq(spool_acked(f.s), 12);
        ck_assert_uint_eq(spool_next_seq(f.s), 31);
        ck_assert_uint_eq(load(&f, 13), 31);
        ck_assert_int_eq(f.n, 18);
        ck_assert_uint_eq(f.seqs[0], 13);
        /* New records after a reopen go to a new segment and follow on. */
        append(&f, 31, 35);
        spool_commit(f.s);
        ck_assert_uint_eq(load(&f, 31), 36);
        ck_assert_int_eq(f.n, 5);
        ck_assert_int_eq(count_files(&f, ".seg"), 2);
        teardown(&f);
}
END_TEST

/* Small segments (max_spool 1M: 128 KiB each) are deleted once done. */
START_TEST(test_segments_reclaimed_when_acked)
{
        struct fx f;
        static char big[2000];
        uint64_t seq = 1;

        memset(big, 'x', sizeof(big));
        setup(&f);
        f.cfg.max_spool = 1024 * 1024;
        open_spool(&f);
        for (int burst = 0; burst < 200; burst++) {
                ck_assert_int_eq(spool_append(f.s, seq++, big, sizeof(big)), 0);
                spool_commit(f.s);
        }
        ck_assert_int_ge(count_files(&f, ".seg"), 3);
        spool_ack(f.s, seq - 1);
        ck_assert_int_eq(count_files(&f, ".seg"), 1); /* the one being written stays */
        teardown(&f);
}
END_TEST

START_TEST(test_max_spool_refuses_then_drop_oldest_makes_room)
{
        struct fx f;
        static char big[4000];
        uint64_t seq = 1, lo, hi;
        int r = 0;

        memset(big, 'y', sizeof(big));
        setup(&f);
        f.cfg.max_spool = 1024 * 1024;
        open_spool(&f);
        while ((r = spool_append(f.s, seq, big, sizeof(big))) == 0) {
                seq++;
                spool_commit(f.s);
        }
        ck_assert_int_eq(r, -ENOSPC);
        ck_assert(spool_drop_oldest(f.s, &lo, &hi));
        ck_assert_uint_eq(lo, 1);
        ck_assert_uint_gt(hi, 1);
        ck_assert_int_eq(spool_append(f.s, seq, big, sizeof(big)), 0);
        /* Reading starts after what was dropped. */
        ck_assert_uint_eq(load(&f, 1), seq);
        ck_assert_uint_eq(f.seqs[0], hi + 1);
        teardown(&f);
}
END_TEST

/* 16 bytes overwritten in the middle: the seqs they cost are reported
 * lost, the records after them are still read. */
START_TEST(test_damage_reported_as_lost_seqs)
{
        struct fx f;
        char path[128];
        struct stat st;
        int fd;

        setup(&f);
        open_spool(&f);
        append(&f, 1, 200);
        spool_commit(f.s);
        close_spool(&f);
        snprintf(path, sizeof(path), "%s/00000000000000000001.seg", f.dir);
        ck_assert_int_eq(stat(path, &st), 0);
        fd = open(path, O_WRONLY);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, "XXXXXXXXXXXXXXXX", 16, st.st_size / 2), 16);
        close(fd);
        open_spool(&f);
        ck_assert_uint_eq(load(&f, 1), 201);
        ck_assert_int_eq(f.lost_calls, 1);
        ck_assert_uint_le(f.lost_hi - f.lost_lo + 1, 2);
        ck_assert_int_eq(f.n + (int)(f.lost_hi - f.lost_lo + 1), 200);
        teardown(&f);
}
END_TEST

/* The newest segment lost its end (power loss, truncation): the
 * checkpoint knows what was written, so the missing seqs are reported
 * lost, not reused for new events. */
START_TEST(test_truncated_newest_segment_counts_its_loss)
{
        struct fx f;
        char path[128];
        struct stat st;

        setup(&f);
        open_spool(&f);
        append(&f, 1, 50);
        spool_commit(f.s);
        close_spool(&f);
        snprintf(path, sizeof(path), "%s/00000000000000000001.seg", f.dir);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(truncate(path, st.st_size - 5), 0);
        open_spool(&f);
        ck_assert_uint_eq(spool_next_seq(f.s), 51);
        ck_assert_uint_eq(load(&f, 1), 51);
        ck_assert_int_eq(f.n, 49);
        ck_assert_int_eq(f.lost_calls, 1);
        ck_assert_uint_eq(f.lost_lo, 50);
        ck_assert_uint_eq(f.lost_hi, 50);
        teardown(&f);
}
END_TEST

START_TEST(test_lock_names_the_holder)
{
        struct fx f;
        struct spool *other;
        char err[512], want[64];

        setup(&f);
        open_spool(&f);
        /* The lock is per open file description: a second open in this
         * process is refused like another process would be. */
        ck_assert_int_eq(spool_open(&other, &f.loop, &f.cfg, err, sizeof(err)), -EBUSY);
        snprintf(want, sizeof(want), "(pid %d)", (int)getpid());
        ck_assert_msg(strstr(err, want) != NULL, "%s", err);
        teardown(&f);
}
END_TEST

START_TEST(test_directory_others_may_write)
{
        struct fx f;
        struct spool *s;
        char err[512];

        setup(&f);
        ck_assert_int_eq(chmod(f.dir, 0777), 0);
        ck_assert_int_eq(spool_open(&s, &f.loop, &f.cfg, err, sizeof(err)), -EPERM);
        ck_assert_msg(strstr(err, "may be written by other users") != NULL, "%s", err);
        ck_assert_int_eq(chmod(f.dir, 0700), 0);
        teardown(&f);
}
END_TEST

/* A directory that cannot be made is no refusal: memory-only, and the
 * records appended meanwhile are kept for whoever wants them. */
START_TEST(test_unusable_directory_fails_soft)
{
        struct fx f;
        char blocker[128];

        setup(&f);
        snprintf(blocker, sizeof(blocker), "%s/file", f.dir);
        close(open(blocker, O_WRONLY | O_CREAT, 0600));
        free(f.cfg.spool_dir);
        f.cfg.spool_dir = malloc(160);
        snprintf(f.cfg.spool_dir, 160, "%s/spool", blocker);
        open_spool(&f);
        ck_assert_int_eq(spool_state(f.s), SPOOL_FAILED);
        ck_assert_uint_eq(spool_next_seq(f.s), 1);
        append(&f, 1, 3);
        ck_assert_int_eq(spool_commit(f.s), SPOOL_FAILED);
        ck_assert_uint_eq(spool_unwritten_first(f.s), 1);
        ck_assert_uint_eq(load(&f, 1), 4); /* read from memory */
        ck_assert_int_eq(f.n, 3);
        spool_forget_unwritten(f.s);
        ck_assert_uint_eq(spool_unwritten(f.s), 0);
        teardown(&f);
}
END_TEST

/* ---- review reproductions ---- */

static void write_file(const struct fx *f, const char *name, const void *data, size_t len)
{
        char path[160];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
        close(fd);
}

/* Power loss (or kill -9 between openat and the header's write) leaves
 * the newest segment empty or header-only. find_segments() then sets
 * next_seq to that segment's first seq, and the first commit of the new
 * run asks new_segment() for the same name: O_EXCL says EEXIST and the
 * spool goes memory-only ("check the disk and the kernel log"). While a
 * backlog waits, the kept records still start at that seq, so every
 * retry (5 s) fails the same way for as long as the backlog lasts. */
START_TEST(test_empty_newest_segment_does_not_stop_spooling)
{
        struct fx f;
        char header[SEGFILE_HEADER_LEN], name[SEGFILE_NAME_LEN];

        setup(&f);
        open_spool(&f);
        append(&f, 1, 4);
        spool_commit(f.s);
        close_spool(&f);
        /* The next segment: created, header written, records lost. */
        segfile_header(header, 5, 0);
        segfile_name(name, 5);
        write_file(&f, name, header, sizeof(header));
        open_spool(&f);
        ck_assert_uint_ge(spool_next_seq(f.s), 5);
        append(&f, spool_next_seq(f.s), spool_next_seq(f.s) + 1);
        ck_assert_msg(spool_commit(f.s) == SPOOL_ON, "the spool failed: %s",
                      json_string_value(json_object_get(spool_stats(f.s), "last_error")));
        teardown(&f);
}
END_TEST

/* open_dir() fails *after* take_lock() succeeded partway (here: the pid
 * cannot be written, as on a full disk; the same for an `acked` that
 * cannot be opened): the error is positive (memory-only, retry), but the
 * checkpoint was never read and the segments never found. on_retry()
 * sees lockfd >= 0 and only probes, so the spool comes back ON knowing
 * nothing of the earlier run: it hands out seqs from 1 again (names
 * that clash with, or sort between, the earlier run's segments) and
 * never writes a checkpoint (ackfd < 0). */
START_TEST(test_open_that_fails_after_the_lock_still_knows_the_spool)
{
        struct fx f;
        struct rlimit rl, low;

        setup(&f);
        open_spool(&f);
        append(&f, 1, 30);
        spool_commit(f.s);
        spool_ack(f.s, 12);
        close_spool(&f);

        signal(SIGXFSZ, SIG_IGN);
        getrlimit(RLIMIT_FSIZE, &rl);
        low = rl;
        low.rlim_cur = 0; /* writes fail with EFBIG, like ENOSPC */
        setrlimit(RLIMIT_FSIZE, &low);
        open_spool(&f);
        setrlimit(RLIMIT_FSIZE, &rl);

        ck_assert_msg(spool_next_seq(f.s) == 31 && spool_acked(f.s) == 12,
                      "next_seq %llu, acked %llu: the earlier run's spool is ignored",
                      (unsigned long long)spool_next_seq(f.s),
                      (unsigned long long)spool_acked(f.s));
        teardown(&f);
}
END_TEST

static void on_tick(uv_timer_t *t)
{
        *(bool *)t->data = true;
}

/* The directory is unusable at start (here: its parent is a file; in
 * life a read-only /var, or EACCES, EIO) and later comes back holding an
 * earlier run's segments. late_open() finds them and marks them
 * unknown_segments, meaning "not ours, leave them to the next start".
 * But they are in s->segs, and this run's acknowledgements (its own seqs,
 * from 1) reach reclaim(): they are deleted; and the checkpoint file
 * (never read, ack_gen 0) is overwritten with this run's acked. */
START_TEST(test_late_open_leaves_an_earlier_runs_segments_alone)
{
        struct fx f;
        static char big[2000];
        char parent[128], spool[160], moved[160];
        uv_timer_t tick;
        bool ticked = false;
        int before;

        memset(big, 'z', sizeof(big));
        setup(&f);
        f.cfg.max_spool = 1024 * 1024; /* 128 KiB segments */
        open_spool(&f);
        for (uint64_t seq = 1; seq <= 200; seq++) {
                ck_assert_int_eq(spool_append(f.s, seq, big, sizeof(big)), 0);
                spool_commit(f.s);
        }
        spool_ack(f.s, 10);
        close_spool(&f);
        before = count_files(&f, ".seg");
        ck_assert_int_ge(before, 3);

        /* Start with spool_dir = DIR/parent/spool, parent a file. */
        snprintf(moved, sizeof(moved), "%s.old", f.dir);
        ck_assert_int_eq(rename(f.dir, moved), 0);
        ck_assert_int_eq(mkdir(f.dir, 0700), 0);
        snprintf(parent, sizeof(parent), "%s/parent", f.dir);
        close(open(parent, O_WRONLY | O_CREAT, 0600));
        snprintf(spool, sizeof(spool), "%s/spool", parent);
        free(f.cfg.spool_dir);
        f.cfg.spool_dir = strdup(spool);
        open_spool(&f);
        ck_assert_int_eq(spool_state(f.s), SPOOL_FAILED);
        /* This run delivers its own (memory-only) events 1..150. */
        spool_ack(f.s, 150);
        /* The earlier run's directory comes back. */
        ck_assert_int_eq(unlink(parent), 0);
        ck_assert_int_eq(mkdir(parent, 0700), 0);
        ck_assert_int_eq(rename(moved, spool), 0);
        uv_timer_init(&f.loop, &tick);
        tick.data = &ticked;
        uv_timer_start(&tick, on_tick, 5500, 0); /* past SPOOL_RETRY_MS */
        while (!ticked)
                uv_run(&f.loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *)&tick, NULL);
        spool_ack(f.s, 160);
        close_spool(&f);

        /* count_files() looks in f.dir: point it at the spool. */
        snprintf(f.dir, sizeof(f.dir), "%.63s", spool);
        ck_assert_msg(count_files(&f, ".seg") == before,
                      "%d of the earlier run's %d segments were deleted",
                      before - count_files(&f, ".seg"), before);
        open_spool(&f);
        ck_assert_msg(spool_acked(f.s) == 10, "the earlier run's checkpoint (10) is now %llu",
                      (unsigned long long)spool_acked(f.s));
        close_spool(&f);
        /* teardown removes f.dir: the spool and its parents. */
        snprintf(f.dir, sizeof(f.dir), "%.63s", parent);
        f.dir[strlen(f.dir) - strlen("/parent")] = '\0';
        teardown(&f);
}
END_TEST

/* Bytes this process has read with read()/pread() (/proc/self/io). */
static unsigned long long rchar(void)
{
        FILE *io = fopen("/proc/self/io", "r");
        unsigned long long v = 0;
        char line[128];

        ck_assert_ptr_nonnull(io);
        while (fgets(line, sizeof(line), io))
                if (sscanf(line, "rchar: %llu", &v) == 1)
                        break;
        fclose(io);
        return v;
}

/* The batcher's backlog ends with the reader parked where it caught up;
 * events then go to the queue directly (and to disk). When a new backlog
 * starts at a much later seq, spool_load(from) goes on from the parked
 * position and reads, CRCs and skips every record in between (offer():
 * seq < from) in one call: not bounded by REFILL_BYTES_PER_TURN (which
 * counts only what take() accepted), nor by a segment: up to max_memory
 * plus a segment per loop turn, synchronously. Segments wholly before
 * from should be skipped by name, as they are for a fresh reader. */
START_TEST(test_load_far_ahead_skips_segments_by_name)
{
        struct fx f;
        static char big[2000];
        unsigned long long before, read;

        memset(big, 'k', sizeof(big));
        setup(&f);
        f.cfg.max_spool = 16 * 1024 * 1024; /* 2 MiB segments */
        open_spool(&f);
        for (uint64_t seq = 1; seq <= 5000; seq++) {
                ck_assert_int_eq(spool_append(f.s, seq, big, sizeof(big)), 0);
                if (seq % 100 == 0)
                        spool_commit(f.s);
        }
        ck_assert_int_ge(count_files(&f, ".seg"), 3);
        f.room = 1;
        ck_assert_uint_eq(load(&f, 1), 2); /* the reader parks in the first segment */
        before = rchar();
        ck_assert_uint_eq(load(&f, 4500), 4501);
        read = rchar() - before;
        ck_assert_msg(read <= 2u * 1024 * 1024 + 512 * 1024,
                      "one spool_load() read %llu bytes to hand out one record", read);
        teardown(&f);
}
END_TEST

/* Damage before a record that take() has no room for: offer() reports
 * the damaged seqs lost (lost(lo, hi), counted in dropped and in the
 * flushes) but leaves l->from below them, so spool_load() returns lo and
 * the batcher's backlog_from still covers seqs it was just told are
 * gone: held and dropped at once until the next refill (a flush settled
 * meanwhile computes delivered = covered - dropped - pending < 0, and
 * the uint64_t wraps). The next record to load is the one after them. */
START_TEST(test_load_after_reported_damage_starts_past_it)
{
        struct fx f;
        char path[128];
        struct stat st;
        uint64_t lo, hi, next;
        int fd;

        setup(&f);
        open_spool(&f);
        append(&f, 1, 200);
        spool_commit(f.s);
        close_spool(&f);
        snprintf(path, sizeof(path), "%s/00000000000000000001.seg", f.dir);
        ck_assert_int_eq(stat(path, &st), 0);
        fd = open(path, O_WRONLY);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, "XXXXXXXXXXXXXXXX", 16, st.st_size / 2), 16);
        close(fd);
        open_spool(&f);
        load(&f, 1);
        ck_assert_int_eq(f.lost_calls, 1);
        lo = f.lost_lo;
        hi = f.lost_hi;
        close_spool(&f);

        open_spool(&f);
        f.lost_calls = 0;
        f.room = (int)(lo - 1); /* no room for the record after the damage */
        next = load(&f, 1);
        ck_assert_int_eq(f.lost_calls, 1); /* lo..hi reported lost */
        ck_assert_msg(next == hi + 1,
                      "told %llu..%llu are lost, but the next seq to load is still %llu",
                      (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)next);
        teardown(&f);
}
END_TEST

static Suite *spool_suite(void)
{
        Suite *s = suite_create("spool");
        TCase *tc = tcase_create("directory");

        tcase_add_test(tc, test_write_and_read_back);
        tcase_add_test(tc, test_reopen_replays_what_is_not_acked);
        tcase_add_test(tc, test_segments_reclaimed_when_acked);
        tcase_add_test(tc, test_max_spool_refuses_then_drop_oldest_makes_room);
        tcase_add_test(tc, test_damage_reported_as_lost_seqs);
        tcase_add_test(tc, test_truncated_newest_segment_counts_its_loss);
        tcase_add_test(tc, test_lock_names_the_holder);
        tcase_add_test(tc, test_directory_others_may_write);
        tcase_add_test(tc, test_unusable_directory_fails_soft);
        suite_add_tcase(s, tc);
        tc = tcase_create("review");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_empty_newest_segment_does_not_stop_spooling);
        tcase_add_test(tc, test_open_that_fails_after_the_lock_still_knows_the_spool);
        tcase_add_test(tc, test_late_open_leaves_an_earlier_runs_segments_alone);
        tcase_add_test(tc, test_load_far_ahead_skips_segments_by_name);
        tcase_add_test(tc, test_load_after_reported_damage_starts_past_it);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(spool_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
