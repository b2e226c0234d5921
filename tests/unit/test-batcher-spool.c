/* test-batcher-spool.c - review reproductions for the batcher's durable
 * path (batcher-spool.c) on a real spool directory, with the dry-run
 * forwarder (api_url = stdout, sent to /dev/null; delivery is counted in
 * stats.sent). "The upstream is down" is simply: the loop is not run.
 *
 * A failing disk is RLIMIT_FSIZE lowered to 0 (writes to regular files
 * fail with EFBIG, SIGXFSZ ignored): deterministic, no root, no mount.
 * While it is lowered no ck_assert runs (Check writes its own messages to
 * a temporary file). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "batcher-internal.h"
#include "daemon.h"
#include "spool.h"

struct fx {
        struct daemon d;
        uv_loop_t loop;
        int saved_stdout;
        char dir[64];
        bool closed;
};

static rlim_t saved_fsize;

static void disk_fails(bool on)
{
        struct rlimit rl;

        getrlimit(RLIMIT_FSIZE, &rl);
        if (on) {
                signal(SIGXFSZ, SIG_IGN);
                saved_fsize = rl.rlim_cur;
                rl.rlim_cur = 0;
        } else {
                rl.rlim_cur = saved_fsize;
        }
        setrlimit(RLIMIT_FSIZE, &rl);
}

static void setup_cfg(struct fx *f)
{
        memset(f, 0, sizeof(*f));
        ck_assert_int_eq(uv_loop_init(&f->loop), 0);
        f->d.loop = &f->loop;
        cfg_defaults(&f->d.cfg);
        f->d.cfg.api_url = strdup("stdout");
        f->d.cfg.flush_interval = 3600;
        f->d.cfg.max_batch_bytes = 64 * 1024;
        f->d.cfg.spool_sync = CFG_SYNC_NEVER;
        f->d.cfg.compression = CFG_COMPRESSION_NONE;
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-bspool-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(f->dir));
        f->d.cfg.spool_dir = strdup(f->dir);
}

static int post(void *ctx, const struct fwd_post *p, fwd_done_fn cb, void *ud)
{
        return fwd_start(ctx, p, cb, ud);
}

static void ready(void *ud)
{
        batcher_wake(ud);
}

static void start(struct fx *f)
{
        struct session_io io = { post, &f->d.fwd, ready, &f->d.batcher, NULL };
        char err[512];
        int fd = open("/dev/null", O_WRONLY);

        ck_assert_int_ge(fd, 0);
        fflush(stdout);
        f->saved_stdout = dup(STDOUT_FILENO);
        dup2(fd, STDOUT_FILENO);
        close(fd);
        ck_assert_msg(spool_open(&f->d.spool, &f->loop, &f->d.cfg, err, sizeof(err)) == 0, "%s",
                      err);
        ck_assert_int_eq(fwd_init(&f->d.fwd, &f->loop, &f->d.cfg), 0);
        session_init(&f->d.session, &f->loop, &f->d.cfg, &f->d.key, false, &io);
        batcher_init(&f->d.batcher, &f->loop, &f->d.cfg, &f->d.stats, &f->d.key, &f->d.fwd,
                     &f->d.session, f->d.spool);
}

/* main.c's finish_stop(): what batcher_close() says was lost. */
static uint64_t stop(struct fx *f)
{
        uint64_t lost;

        fwd_close(&f->d.fwd);
        batcher_commit(&f->d.batcher);
        lost = batcher_close(&f->d.batcher);
        spool_close(f->d.spool);
        f->d.spool = NULL;
        session_close(&f->d.session);
        f->closed = true;
        return lost;
}

static void teardown(struct fx *f)
{
        char cmd[128];

        if (!f->closed)
                stop(f);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        ck_assert_int_eq(uv_loop_close(&f->loop), 0);
        fflush(stdout);
        dup2(f->saved_stdout, STDOUT_FILENO);
        close(f->saved_stdout);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        ck_assert_int_eq(system(cmd), 0);
        cfg_free(&f->d.cfg);
}

/* Events of ~2000 bytes; a commit and a kick after every `every` pushes
 * (a burst), as dgram.c and conn.c do. */
static int push_n(struct fx *f, int from, int n, int every)
{
        static char pad[1900];
        char ev[2100];
        int bad = 0;

        memset(pad, 'p', sizeof(pad) - 1);
        for (int i = from; i < from + n; i++) {
                size_t evicted;
                int len = snprintf(ev, sizeof(ev),
                                   "{\"event_id\":\"e%d\",\"user_id\":\"u\",\"event_type\":\"t\","
                                   "\"occurred_at\":\"2026-01-01T00:00:00.000Z\","
                                   "\"payload\":{\"pad\":\"%s\"}}",
                                   i, pad);

                bad += batcher_push(&f->d.batcher, ev, (size_t)len, &evicted) != 0;
                if ((i - from + 1) % every == 0) {
                        batcher_commit(&f->d.batcher);
                        batcher_kick(&f->d.batcher);
                }
        }
        batcher_commit(&f->d.batcher);
        batcher_kick(&f->d.batcher);
        return bad;
}

static void run_ms(struct fx *f, int ms)
{
        for (int i = 0; i < ms; i++) {
                uv_run(&f->loop, UV_RUN_NOWAIT);
                usleep(1000);
        }
}

static uint64_t dropped(const struct fx *f)
{
        uint64_t n = 0;

        for (int i = 0; i < DROP_REASON_COUNT; i++)
                n += f->d.stats.dropped[i];
        return n;
}

/* ---- reading a spool back, as the next start would ---- */

struct replay {
        uint64_t n;
};

static bool take_all(void *ud, uint64_t seq, const char *ev, size_t len)
{
        (void)seq;
        (void)ev;
        (void)len;
        ((struct replay *)ud)->n++;
        return true;
}

static void lost_none(void *ud, uint64_t lo, uint64_t hi)
{
        (void)ud;
        (void)lo;
        (void)hi;
}

/* Records a restart would send again. */
static uint64_t replayable(struct fx *f)
{
        struct replay r = { 0 };
        struct spool *s;
        char err[512];

        ck_assert_int_eq(spool_open(&s, &f->loop, &f->d.cfg, err, sizeof(err)), 0);
        static const struct spool_load_fns fns = { take_all, lost_none, NULL };

        spool_load(s, spool_acked(s) + 1, &fns, &r);
        spool_close(s);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        return r.n;
}

/* ---- max_spool, when_full = drop_oldest ---- */

/* The upstream is down and every event fits in memory; max_spool fills
 * and drop_oldest deletes the oldest segment. Its events are still in
 * the queue, so they are not counted as dropped (fine), but they are no
 * longer on disk: at the stop batcher__lose_held() takes them for
 * durable (memonly spans know nothing of the deleted segment), counts
 * them as kept, and the next start cannot replay them. Every accepted
 * event must end up delivered, counted lost/dropped, or replayable. */
START_TEST(test_drop_oldest_segment_of_queued_events_is_not_silent)
{
        struct fx f;
        uint64_t lost, kept;
        const int n = 800;

        setup_cfg(&f);
        f.d.cfg.max_spool = 1024 * 1024; /* 128 KiB segments */
        f.d.cfg.when_full = CFG_DROP_OLDEST;
        start(&f);
        ck_assert_int_eq(push_n(&f, 0, n, 1), 0);
        ck_assert_uint_gt(f.d.spool ? 1 : 0, 0);
        lost = stop(&f);
        kept = replayable(&f);
        /* dropped() includes what the stop counted lost (shutdown). */
        ck_assert_msg(kept + dropped(&f) == (uint64_t)n,
                      "accepted %d: replayable %llu + dropped %llu (of which lost at stop "
                      "%llu); %lld vanished without a count",
                      n, (unsigned long long)kept, (unsigned long long)dropped(&f),
                      (unsigned long long)lost, (long long)n - (long long)(kept + dropped(&f)));
        teardown(&f);
}
END_TEST

/* ---- a failed disk while a backlog waits on disk ---- */

/* 700 events with max_memory 1 MiB: ~450 in the queue, the rest a
 * disk-only backlog. Then the disk fails and 2000 more arrive. */
static void backlog_then_failed_disk(struct fx *f)
{
        setup_cfg(f);
        f->d.cfg.max_memory = 1024 * 1024;
        f->d.cfg.flush_interval = 0.2; /* the last partial batch goes too */
        start(f);
        ck_assert_int_eq(push_n(f, 0, 700, 10), 0);
        ck_assert_uint_gt(batcher_disk_only(&f->d.batcher), 0);
        disk_fails(true);
        push_n(f, 700, 2000, 10);
}

/* SPEC 5: "Memory use is bounded by configuration". With a backlog, the
 * records the failed disk did not take stay in the spool's wbuf and are
 * charged to the account with q_charge(), which has no bound: the
 * account (and the heap) grows to max_spool, not max_memory. */
START_TEST(test_failed_disk_with_backlog_stays_within_max_memory)
{
        struct fx f;
        size_t used, limit;
        enum spool_state st;

        backlog_then_failed_disk(&f);
        st = spool_state(f.d.spool);
        used = batcher_memory(&f.d.batcher);
        limit = batcher_memory_limit(&f.d.batcher);
        disk_fails(false);
        ck_assert_int_eq(st, SPOOL_FAILED);
        /* Slack: the burst whose write failed (appended before anyone
         * knew) is kept; 64 KiB covers these 10 events of 2 KB. */
        ck_assert_msg(used <= limit + 64 * 1024,
                      "memory account %zu > max_memory %zu (spool unwritten %zu)", used, limit,
                      spool_unwritten(f.d.spool));
        teardown(&f);
}
END_TEST

/* The upstream comes back while the disk is still full. What is on disk
 * (seqs 1..700) must go out; but the unwritten charge alone is over
 * max_memory, so batcher__refill() can never q_push() again: nothing is
 * delivered, nothing is acknowledged, no segment is reclaimed, and a
 * disk filled by the spool itself never frees up: a deadlock. */
START_TEST(test_failed_disk_with_backlog_still_delivers_what_is_on_disk)
{
        struct fx f;
        uint64_t sent;

        backlog_then_failed_disk(&f);
        run_ms(&f, 1500); /* the disk still fails */
        sent = f.d.stats.sent;
        /* (a fix may drop what the failed disk cannot take: counted) */
        disk_fails(false);
        ck_assert_msg(sent >= 700, "only %llu of the 700 events on disk were delivered",
                      (unsigned long long)sent);
        teardown(&f);
}
END_TEST

/* The disk works again: on_retry() writes the kept records itself
 * (spool_commit), but the batcher's unwritten_charged is only updated in
 * batcher_commit() when new events came in. With none coming, the stale
 * charge keeps the queue "full" and the backlog is never read back. */
START_TEST(test_disk_recovery_drains_backlog_without_new_events)
{
        struct fx f;

        backlog_then_failed_disk(&f);
        disk_fails(false);
        run_ms(&f, 7000); /* SPOOL_RETRY_MS is 5 s */
        ck_assert_int_eq(spool_state(f.d.spool), SPOOL_ON);
        /* Whatever was not counted dropped is delivered. */
        ck_assert_msg(f.d.stats.sent + dropped(&f) == 2700,
                      "%llu delivered + %llu dropped of 2700 after the disk recovered; memory "
                      "account %zu of %zu",
                      (unsigned long long)f.d.stats.sent, (unsigned long long)dropped(&f),
                      batcher_memory(&f.d.batcher), batcher_memory_limit(&f.d.batcher));
        teardown(&f);
}
END_TEST

/* ---- a replay with gaps ---- */

struct flush_seen {
        int calls;
        struct flush_result r;
};

static void on_flush(void *ud, const struct flush_result *r)
{
        struct flush_seen *s = ud;

        s->calls++;
        s->r = *r;
}

/* An earlier run left seqs 1..10 and 21..30 on disk (11..20 were a
 * memory-only spell: SPOOL.md says such a gap is not a loss found here).
 * A flush of the replay must report what it delivered: 20, not 30;
 * backlog_between() counts the missing seqs as held. */
START_TEST(test_flush_of_a_replay_with_gaps_counts_real_events)
{
        struct fx f;
        struct flush_seen seen = { 0 };
        struct spool *s;
        char err[512], ev[64];

        setup_cfg(&f);
        ck_assert_int_eq(spool_open(&s, &f.loop, &f.d.cfg, err, sizeof(err)), 0);
        for (uint64_t seq = 1; seq <= 30; seq++) {
                int len = snprintf(ev, sizeof(ev), "{\"event_id\":\"e%llu\"}",
                                   (unsigned long long)seq);

                if (seq <= 10 || seq > 20)
                        ck_assert_int_eq(spool_append(s, seq, ev, (size_t)len), 0);
        }
        spool_commit(s);
        spool_close(s);
        uv_run(&f.loop, UV_RUN_DEFAULT);

        start(&f);
        ck_assert_ptr_nonnull(batcher_flush(&f.d.batcher, 10000, on_flush, &seen));
        for (int i = 0; i < 5000 && !seen.calls; i++)
                run_ms(&f, 1);
        ck_assert_int_eq(seen.calls, 1);
        ck_assert_uint_eq(f.d.stats.sent, 20);
        ck_assert_msg(seen.r.delivered == 20, "flush says %llu flushed; 20 were delivered",
                      (unsigned long long)seen.r.delivered);
        teardown(&f);
}
END_TEST

/* The same replay: stats' spool.pending_events and the stop's "N events
 * wait in the spool" (batcher_held) count the missing seqs too. */
/* A replay with a gap (an earlier run's memory-only spell): until it
 * is read back, what waits on disk is counted from seq ranges (gaps
 * included: docs/SPOOL.md); once read back, held counts real events. */
START_TEST(test_held_of_a_replay_with_gaps_counts_real_events)
{
        struct fx f;
        struct spool *s;
        char err[512], ev[64];
        uint64_t held;

        setup_cfg(&f);
        ck_assert_int_eq(spool_open(&s, &f.loop, &f.d.cfg, err, sizeof(err)), 0);
        for (uint64_t seq = 1; seq <= 30; seq++) {
                int len = snprintf(ev, sizeof(ev), "{\"event_id\":\"e%llu\"}",
                                   (unsigned long long)seq);

                if (seq <= 10 || seq > 20)
                        ck_assert_int_eq(spool_append(s, seq, ev, (size_t)len), 0);
        }
        spool_commit(s);
        spool_close(s);
        uv_run(&f.loop, UV_RUN_DEFAULT);

        start(&f);
        ck_assert_uint_le(batcher_held(&f.d.batcher), 30); /* an estimate, never less */
        ck_assert_uint_ge(batcher_held(&f.d.batcher), 20);
        f.d.batcher.paused_until = uv_now(&f.loop) + 60000; /* held, not sent */
        uv_run(&f.loop, UV_RUN_NOWAIT);                     /* the replay starts at once */
        held = batcher_held(&f.d.batcher);
        ck_assert_msg(held == 20, "batcher_held() says %llu events for 20 on disk",
                      (unsigned long long)held);
        teardown(&f);
}
END_TEST

/* ---- memory-only spans ---- */

/* batcher__memonly_add() assumes ascending spans and only ever raises
 * last->hi. batcher__refill() adds [spool_unwritten_first, next_seq - 1]
 * which can start below the last span added by batcher_commit()
 * ([first, backlog_from - 1], when a pump ran mid-burst: a datagram's
 * reset_session/set_user calls session tell_owner -> batcher_wake before
 * dgram.c commits). The part below last->lo is then forgotten: those
 * events are in memory only but a stop takes them for on disk. */
START_TEST(test_memonly_span_below_the_last_is_remembered)
{
        struct batcher b;

        memset(&b, 0, sizeof(b));
        b.spool = (struct spool *)&b; /* only tested for NULL */
        batcher__memonly_add(&b, 110, 115);
        batcher__memonly_add(&b, 100, 119);
        ck_assert(batcher__memonly(&b, 112));
        ck_assert_msg(batcher__memonly(&b, 105), "seq 105 was added as memory-only");
        free(b.memonly);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("batcher-spool");
        TCase *tc = tcase_create("review");

        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_drop_oldest_segment_of_queued_events_is_not_silent);
        tcase_add_test(tc, test_failed_disk_with_backlog_stays_within_max_memory);
        tcase_add_test(tc, test_failed_disk_with_backlog_still_delivers_what_is_on_disk);
        tcase_add_test(tc, test_disk_recovery_drains_backlog_without_new_events);
        tcase_add_test(tc, test_flush_of_a_replay_with_gaps_counts_real_events);
        tcase_add_test(tc, test_held_of_a_replay_with_gaps_counts_real_events);
        tcase_add_test(tc, test_memonly_span_below_the_last_is_remembered);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
