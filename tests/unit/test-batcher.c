/* test-batcher.c - batching rules on a real libuv loop, with the
 * dry-run forwarder (api_url = stdout) whose output goes to a pipe we
 * read back: batch_size, max_batch_bytes, flush_interval, flush waiters,
 * draining, the memory account, and a clean close (uv_loop_close == 0). */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

struct fixture {
        struct daemon d;
        uv_loop_t loop;
        int saved_stdout;
        FILE *out; /* what the forwarder printed */
        char path[64];
};

/* The config with its defaults and these; setup_start() runs it. */
static void setup_cfg(struct fixture *fx, unsigned batch_size, size_t max_batch_bytes,
                      double flush_interval)
{
        memset(fx, 0, sizeof(*fx));
        ck_assert_int_eq(uv_loop_init(&fx->loop), 0);
        fx->d.loop = &fx->loop;
        cfg_defaults(&fx->d.cfg);
        fx->d.cfg.api_url = strdup("stdout");
        fx->d.cfg.batch_size = batch_size;
        fx->d.cfg.max_batch_bytes = max_batch_bytes;
        fx->d.cfg.flush_interval = flush_interval;
}

static int post(void *ctx, const struct fwd_post *p, fwd_done_fn cb, void *ud)
{
        return fwd_start(ctx, p, cb, ud);
}

static void ready(void *ud)
{
        batcher_wake(ud);
}

static void setup_start(struct fixture *fx)
{
        struct session_io io = { post, &fx->d.fwd, ready, &fx->d.batcher, NULL };
        int fd;

        /* Point stdout at a temp file so the batches can be read back. */
        snprintf(fx->path, sizeof(fx->path), "/tmp/test-batcher-XXXXXX");
        fd = mkstemp(fx->path);
        ck_assert_int_ge(fd, 0);
        fflush(stdout);
        fx->saved_stdout = dup(STDOUT_FILENO);
        dup2(fd, STDOUT_FILENO);
        close(fd);

        ck_assert_int_eq(fwd_init(&fx->d.fwd, &fx->loop, &fx->d.cfg), 0);
        session_init(&fx->d.session, &fx->loop, &fx->d.cfg, &fx->d.key, false, &io);
        batcher_init(&fx->d.batcher, &fx->loop, &fx->d.cfg, &fx->d.stats, &fx->d.key, &fx->d.fwd,
                     &fx->d.session, NULL);
}

static void setup(struct fixture *fx, unsigned batch_size, size_t max_batch_bytes,
                  double flush_interval)
{
        setup_cfg(fx, batch_size, max_batch_bytes, flush_interval);
        setup_start(fx);
}

static void close_modules(struct fixture *fx)
{
        fwd_close(&fx->d.fwd);
        batcher_close(&fx->d.batcher);
        session_close(&fx->d.session);
}

static void teardown(struct fixture *fx)
{
        if (!batcher_closed(&fx->d.batcher))
                close_modules(fx);
        uv_run(&fx->loop, UV_RUN_DEFAULT);
        ck_assert_int_eq(uv_loop_close(&fx->loop), 0);
        fflush(stdout);
        dup2(fx->saved_stdout, STDOUT_FILENO);
        close(fx->saved_stdout);
        unlink(fx->path);
        cfg_free(&fx->d.cfg);
}

static int push_ret(struct fixture *fx, int i)
{
        char ev[128];
        size_t evicted;
        int n = snprintf(ev, sizeof(ev),
                         "{\"event_id\":\"e%d\",\"user_id\":\"u\",\"event_type\":\"t\","
                         "\"occurred_at\":\"2026-01-01T00:00:00.000Z\",\"payload\":{}}",
                         i);

        return batcher_push(&fx->d.batcher, ev, (size_t)n, &evicted);
}

static void push(struct fixture *fx, int i)
{
        ck_assert_int_eq(push_ret(fx, i), 0);
}

/* One turn of the loop without blocking: UV_RUN_ONCE would sleep until
 * the next timer, which may be flush_interval away. */
static void turn(struct fixture *fx)
{
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        usleep(1000);
}

/* Run the loop until nothing is held (bounded: 5 s). */
static void run_until_idle(struct fixture *fx)
{
        for (int i = 0; i < 5000 && !batcher_idle(&fx->d.batcher); i++)
                turn(fx);
        ck_assert(batcher_idle(&fx->d.batcher));
}

/* Read the printed batches: sizes[i] = events of batch i; returns count. */
static int read_batches(struct fixture *fx, int *sizes, int max, int *first_id)
{
        FILE *f;
        char *line = NULL;
        size_t cap = 0;
        int n = 0;

        fflush(stdout);
        f = fopen(fx->path, "r");
        ck_assert_ptr_nonnull(f);
        while (getline(&line, &cap, f) > 0 && n < max) {
                json_error_t err;
                json_t *j = json_loads(line, 0, &err);
                ck_assert_msg(j != NULL, "batch is not JSON: %s", err.text);
                json_t *evs = json_object_get(j, "events");
                ck_assert(json_is_array(evs));
                ck_assert(json_is_string(json_object_get(j, "batch_id")));
                ck_assert(json_is_string(json_object_get(j, "sent_at")));
                sizes[n] = (int)json_array_size(evs);
                if (first_id) {
                        const char *id = json_string_value(
                                json_object_get(json_array_get(evs, 0), "event_id"));
                        first_id[n] = atoi(id + 1);
                }
                n++;
                json_decref(j);
        }
        free(line);
        fclose(f);
        return n;
}

START_TEST(test_batch_size)
{
        struct fixture fx;
        int sizes[16], first[16], n;

        setup(&fx, 5, 1048576, 0.01);
        for (int i = 0; i < 23; i++)
                push(&fx, i);
        batcher_kick(&fx.d.batcher);
        run_until_idle(&fx);
        n = read_batches(&fx, sizes, 16, first);
        ck_assert_int_eq(n, 5);
        for (int i = 0; i < 4; i++) {
                ck_assert_int_eq(sizes[i], 5);
                ck_assert_int_eq(first[i], i * 5); /* in order */
        }
        ck_assert_int_eq(sizes[4], 3);
        ck_assert_uint_eq(batcher_memory(&fx.d.batcher), 0); /* the account returns to 0 */
        teardown(&fx);
}
END_TEST

START_TEST(test_max_batch_bytes)
{
        struct fixture fx;
        int sizes[64], n, total = 0;

        /* ~100-byte events, 1 KiB batches: about 8 per batch. */
        setup(&fx, 500, 1024, 0.01);
        for (int i = 0; i < 100; i++)
                push(&fx, i);
        batcher_kick(&fx.d.batcher);
        run_until_idle(&fx);
        n = read_batches(&fx, sizes, 64, NULL);
        for (int i = 0; i < n; i++) {
                ck_assert_int_le(sizes[i], 10);
                total += sizes[i];
        }
        ck_assert_int_eq(total, 100);
        ck_assert_int_ge(n, 10);
        teardown(&fx);
}
END_TEST

START_TEST(test_partial_batch_waits_for_interval)
{
        struct fixture fx;
        int sizes[4];
        uint64_t t0;

        setup(&fx, 20, 1048576, 0.2);
        for (int i = 0; i < 3; i++)
                push(&fx, i);
        batcher_kick(&fx.d.batcher);
        /* Not a full batch: nothing goes before flush_interval. */
        turn(&fx);
        ck_assert_int_eq(read_batches(&fx, sizes, 4, NULL), 0);
        uv_update_time(&fx.loop);
        t0 = uv_now(&fx.loop);
        run_until_idle(&fx);
        ck_assert_uint_ge(uv_now(&fx.loop) - t0, 100);
        ck_assert_int_eq(read_batches(&fx, sizes, 4, NULL), 1);
        ck_assert_int_eq(sizes[0], 3);
        teardown(&fx);
}
END_TEST

struct flush_seen {
        int calls;
        struct flush_result r;
};

static void on_flush(void *ud, const struct flush_result *res)
{
        struct flush_seen *f = ud;

        f->calls++;
        f->r = *res;
}

static void run_until_answered(struct fixture *fx, const struct flush_seen *f)
{
        for (int i = 0; i < 5000 && f->calls == 0; i++)
                turn(fx);
        ck_assert_int_eq(f->calls, 1);
}

START_TEST(test_flush_sends_partial_batch_now)
{
        struct fixture fx;
        struct flush_seen f = { 0 };
        int sizes[4];

        setup(&fx, 20, 1048576, 3600); /* the interval never fires */
        for (int i = 0; i < 7; i++)
                push(&fx, i);
        ck_assert_ptr_nonnull(batcher_flush(&fx.d.batcher, 5000, on_flush, &f));
        run_until_answered(&fx, &f);
        ck_assert_int_eq(f.r.result, 0);
        ck_assert_uint_eq(f.r.covered, 7);
        ck_assert_uint_eq(f.r.delivered, 7);
        ck_assert_int_eq(read_batches(&fx, sizes, 4, NULL), 1);
        ck_assert_int_eq(sizes[0], 7);
        ck_assert_uint_eq(fx.d.stats.sent, 7);
        teardown(&fx);
}
END_TEST

/* Even with nothing to wait for, the answer comes on a later turn of the
 * loop, never from inside batcher_flush(): its caller has no frame to
 * lose, and a client stacking flush lines cannot recurse. */
START_TEST(test_flush_answers_on_a_later_turn)
{
        struct fixture fx;
        struct flush_seen f = { 0 };

        setup(&fx, 20, 1048576, 3600);
        ck_assert_ptr_nonnull(batcher_flush(&fx.d.batcher, 5000, on_flush, &f));
        ck_assert_int_eq(f.calls, 0);
        run_until_answered(&fx, &f);
        ck_assert_int_eq(f.r.result, 0);
        ck_assert_uint_eq(f.r.covered, 0);
        /* timeout 0 with events held: a timeout, also on a later turn. */
        push(&fx, 1);
        fx.d.batcher.paused_until = uv_now(&fx.loop) + 60000; /* Retry-After: held */
        f.calls = 0;
        ck_assert_ptr_nonnull(batcher_flush(&fx.d.batcher, 0, on_flush, &f));
        ck_assert_int_eq(f.calls, 0);
        run_until_answered(&fx, &f);
        ck_assert_int_eq(f.r.result, -ETIMEDOUT);
        ck_assert_uint_eq(f.r.pending, 1);
        teardown(&fx);
}
END_TEST

/* A callback that starts another flush (a connection's next pipelined
 * line) gets its own answer later; nothing is lost or answered twice. */
struct nesting {
        struct fixture *fx;
        int calls;
        struct flush_seen inner;
        struct flush_waiter *inner_w;
};

static void on_flush_nesting(void *ud, const struct flush_result *res)
{
        struct nesting *n = ud;

        n->calls++;
        n->inner_w = batcher_flush(&n->fx->d.batcher, 60000, on_flush, &n->inner);
}

START_TEST(test_flush_started_from_a_flush_callback)
{
        struct fixture fx;
        struct nesting a = { .fx = &fx };

        setup(&fx, 20, 1048576, 3600);
        for (int i = 0; i < 3; i++)
                push(&fx, i);
        ck_assert_ptr_nonnull(batcher_flush(&fx.d.batcher, 5000, on_flush_nesting, &a));
        for (int i = 0; i < 5000 && !(a.calls && a.inner.calls); i++)
                turn(&fx);
        ck_assert_int_eq(a.calls, 1);
        ck_assert_ptr_nonnull(a.inner_w);
        ck_assert_int_eq(a.inner.calls, 1);
        ck_assert_int_eq(a.inner.r.result, 0);
        teardown(&fx);
}
END_TEST

/* Issue 8, bug 1: a flush counts only the losses of the events it
 * covers. Events refused for memory_full after it began are another
 * client's loss: this flush's events were all delivered (on the old
 * code it answered ok:false, "dropped": N, from the global counter). */
START_TEST(test_flush_reports_only_its_own_drops)
{
        struct fixture fx;
        struct flush_seen f = { 0 };
        int refused = 0;

        setup_cfg(&fx, 20, 4096, 3600);
        fx.d.cfg.max_memory = 16 * 1024;
        setup_start(&fx);
        for (int i = 0; i < 3; i++)
                push(&fx, i);
        ck_assert_ptr_nonnull(batcher_flush(&fx.d.batcher, 5000, on_flush, &f));
        for (int i = 3; i < 1000; i++)
                refused += push_ret(&fx, i) == -ENOBUFS;
        ck_assert_int_gt(refused, 0);
        ck_assert_uint_eq(fx.d.stats.dropped[DROP_MEMORY_FULL], (uint64_t)refused);
        run_until_answered(&fx, &f);
        ck_assert_int_eq(f.r.result, 0);
        ck_assert_uint_eq(f.r.covered, 3);
        ck_assert_uint_eq(f.r.delivered, 3);
        ck_assert_uint_eq(f.r.dropped, 0);
        teardown(&fx);
}
END_TEST

/* With drop_oldest, the events a flush covers can be pushed out: those
 * are its own losses, by reason, and the rest still counts as delivered. */
START_TEST(test_flush_counts_evictions_of_its_events)
{
        struct fixture fx;
        struct flush_seen f = { 0 };
        uint64_t evicted;

        setup_cfg(&fx, 20, 4096, 3600);
        fx.d.cfg.max_memory = 16 * 1024;
        fx.d.cfg.max_in_flight = 1; /* one batch; the rest stays queued */
        fx.d.cfg.when_full = CFG_DROP_OLDEST;
        setup_start(&fx);
        fx.d.batcher.paused_until = uv_now(&fx.loop) + 60000; /* nothing leaves */
        for (int i = 0; i < 25; i++)
                push(&fx, i);
        batcher_kick(&fx.d.batcher);
        ck_assert_uint_eq(fx.d.batcher.nbatches, 1);
        ck_assert_ptr_nonnull(batcher_flush(&fx.d.batcher, 5000, on_flush, &f));
        /* Queued events 21, 22, ... are the oldest in the queue. */
        for (int i = 25; fx.d.stats.dropped[DROP_MEMORY_FULL] < 2 && i < 100000; i++)
                push(&fx, i);
        evicted = fx.d.stats.dropped[DROP_MEMORY_FULL];
        ck_assert_uint_ge(evicted, 2);
        ck_assert_uint_le(evicted, 5);
        fx.d.batcher.paused_until = 0;
        batcher_drain(&fx.d.batcher);
        run_until_answered(&fx, &f);
        ck_assert_int_eq(f.r.result, 0);
        ck_assert_uint_eq(f.r.covered, 25);
        ck_assert_uint_eq(f.r.dropped_by[DROP_MEMORY_FULL], evicted);
        ck_assert_uint_eq(f.r.dropped, evicted);
        ck_assert_uint_eq(f.r.delivered, 25 - evicted);
        teardown(&fx);
}
END_TEST

START_TEST(test_drain_sends_everything)
{
        struct fixture fx;
        int sizes[8], n, total = 0;

        setup(&fx, 20, 1048576, 3600);
        for (int i = 0; i < 45; i++)
                push(&fx, i);
        batcher_drain(&fx.d.batcher);
        run_until_idle(&fx);
        n = read_batches(&fx, sizes, 8, NULL);
        for (int i = 0; i < n; i++)
                total += sizes[i];
        ck_assert_int_eq(total, 45);
        ck_assert_uint_eq(fx.d.stats.dropped[DROP_SHUTDOWN], 0);
        teardown(&fx);
}
END_TEST

START_TEST(test_close_counts_what_is_left)
{
        struct fixture fx;
        struct flush_seen f = { 0 };

        setup(&fx, 20, 1048576, 3600);
        for (int i = 0; i < 4; i++)
                push(&fx, i);
        ck_assert_ptr_nonnull(batcher_flush(&fx.d.batcher, 60000, on_flush, &f));
        fx.d.batcher.paused_until = uv_now(&fx.loop) + 60000; /* nothing leaves */
        close_modules(&fx);
        ck_assert_uint_eq(fx.d.stats.dropped[DROP_SHUTDOWN], 4);
        /* The flush is told at once, with its own losses. */
        ck_assert_int_eq(f.calls, 1);
        ck_assert_int_eq(f.r.result, -ESHUTDOWN);
        ck_assert_uint_eq(f.r.dropped_by[DROP_SHUTDOWN], 4);
        teardown(&fx);
}
END_TEST

/* max_memory bounds what the batches hold too: cutting a batch (its
 * envelope, a body grown by doubling) and compressing it (a second body)
 * must not take the account past the limit, even with the queue full to
 * the brim and every batch kept by an upstream that never answers. */
START_TEST(test_memory_account_holds_when_batches_are_cut_and_compressed)
{
        struct fixture fx;
        char ev[1200];
        unsigned seed = 1;
        int pushed = 0, ret;

        setup_cfg(&fx, 20, 65536, 0.01);
        fx.d.cfg.max_memory = 256 * 1024;
        fx.d.cfg.compression = CFG_COMPRESSION_GZIP;
        free(fx.d.cfg.api_url);
        fx.d.cfg.api_url = strdup("http://127.0.0.1:9/"); /* discard: refused */
        fx.d.key.secret = "sk_unit";
        setup_start(&fx);
        do {
                /* ~1 KB of payload that gzip shrinks only a little. */
                int n = snprintf(
                        ev, sizeof(ev),
                        "{\"event_id\":\"e%d\",\"user_id\":\"u\",\"event_type\":\"t\","
                        "\"occurred_at\":\"2026-01-01T00:00:00.000Z\",\"payload\":{\"r\":\"",
                        pushed);
                for (int i = 0; i < 1000; i++)
                        ev[n++] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
                                [rand_r(&seed) % 64];
                n += snprintf(ev + n, sizeof(ev) - (size_t)n, "\"}}");
                size_t evicted;

                ret = batcher_push(&fx.d.batcher, ev, (size_t)n, &evicted);
                if (ret == 0)
                        pushed++;
        } while (ret == 0 && pushed < 10000);
        ck_assert_int_eq(ret, -ENOBUFS);
        ck_assert_uint_le(batcher_memory(&fx.d.batcher), fx.d.cfg.max_memory);

        batcher_kick(&fx.d.batcher);
        ck_assert_uint_eq(fx.d.batcher.nbatches, fx.d.cfg.max_in_flight);
        for (int i = 0; i < 300; i++) {
                ck_assert_uint_le(batcher_memory(&fx.d.batcher), fx.d.cfg.max_memory);
                turn(&fx);
        }
        ck_assert_uint_le(batcher_memory(&fx.d.batcher), fx.d.cfg.max_memory);
        ck_assert_uint_eq(batcher_held(&fx.d.batcher), (uint64_t)pushed);
        /* No room for a second body: the batches go uncompressed, counted. */
        ck_assert_uint_gt(fx.d.stats.gzip_skipped, 0);
        fx.d.key.secret = NULL;
        teardown(&fx);
}
END_TEST

static Suite *batcher_suite(void)
{
        Suite *s = suite_create("batcher");
        TCase *tc = tcase_create("batching");

        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_batch_size);
        tcase_add_test(tc, test_max_batch_bytes);
        tcase_add_test(tc, test_partial_batch_waits_for_interval);
        tcase_add_test(tc, test_flush_sends_partial_batch_now);
        tcase_add_test(tc, test_flush_answers_on_a_later_turn);
        tcase_add_test(tc, test_flush_started_from_a_flush_callback);
        tcase_add_test(tc, test_flush_reports_only_its_own_drops);
        tcase_add_test(tc, test_flush_counts_evictions_of_its_events);
        tcase_add_test(tc, test_drain_sends_everything);
        tcase_add_test(tc, test_close_counts_what_is_left);
        tcase_add_test(tc, test_memory_account_holds_when_batches_are_cut_and_compressed);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(batcher_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
