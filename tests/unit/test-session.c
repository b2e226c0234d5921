/* test-session.c - the pk_ session handshake (SPEC section 4) against a
 * fake transport: the test sees every mint request the session makes
 * and answers it as the upstream would, on a real libuv loop (the
 * backoff timer is real). Lazy single mint, caching, renewal before
 * expiry, 401 from the events endpoint, config errors with backoff,
 * Retry-After, reset while a mint runs, a new key, and an answer the
 * forwarder aborts at shutdown. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session.h"

struct fake {
        uv_loop_t loop;
        struct cfg cfg;
        struct apikey key;
        struct session s;
        int posts;      /* mint requests made */
        int readies;    /* io.ready calls */
        char body[512]; /* of the last request */
        char bearer[64];
        char path[64];
        fwd_done_fn cb; /* the request in flight */
        void *ud;
};

static int fake_post(void *ctx, const struct fwd_post *p, fwd_done_fn cb, void *ud)
{
        struct fake *f = ctx;

        ck_assert_ptr_null(f->cb); /* one mint at a time */
        f->posts++;
        snprintf(f->body, sizeof(f->body), "%.*s", (int)p->body_len, p->body);
        snprintf(f->bearer, sizeof(f->bearer), "%s", p->bearer);
        snprintf(f->path, sizeof(f->path), "%s", p->path);
        ck_assert(!p->gzip);
        ck_assert_ptr_null(p->idempotency_key);
        f->cb = cb;
        f->ud = ud;
        return 0;
}

static void fake_ready(void *ud)
{
        struct fake *f = ud;

        f->readies++;
}

static void setup(struct fake *f, const char *key, bool enabled)
{
        struct session_io io = { fake_post, f, fake_ready, f, NULL };

        memset(f, 0, sizeof(*f));
        ck_assert_int_eq(uv_loop_init(&f->loop), 0);
        cfg_defaults(&f->cfg);
        f->cfg.backoff_initial = 0.05;
        f->cfg.backoff_max = 0.2;
        f->cfg.retry_after_max = 300;
        f->key.secret = (char *)key;
        snprintf(f->key.redacted, sizeof(f->key.redacted), "pk_…test");
        session_init(&f->s, &f->loop, &f->cfg, &f->key, enabled, &io);
}

static void teardown(struct fake *f)
{
        session_close(&f->s);
        if (f->cb) {
                /* The forwarder closing aborts the request in flight. */
                struct fwd_result res = { .curl_code = 42,
                                          .aborted = true,
                                          .retry_after = -1,
                                          .error = "aborted",
                                          .body = "" };
                fwd_done_fn cb = f->cb;

                f->cb = NULL;
                cb(f->ud, &res);
        }
        uv_run(&f->loop, UV_RUN_DEFAULT);
        ck_assert_int_eq(uv_loop_close(&f->loop), 0);
        cfg_free(&f->cfg);
}

/* Answer the mint in flight with status and body. */
static void answer(struct fake *f, long status, const char *body, double retry_after)
{
        struct fwd_result res = {
                .status = status, .retry_after = retry_after, .body = body, .body_len = strlen(body)
        };
        fwd_done_fn cb = f->cb;

        ck_assert_ptr_nonnull(cb);
        f->cb = NULL;
        cb(f->ud, &res);
}

static const char *token(struct fake *f, uint64_t *gen)
{
        uv_update_time(&f->loop);
        return session_token(&f->s, gen);
}

START_TEST(test_sk_key_is_the_bearer)
{
        struct fake f;
        uint64_t gen = 9;

        setup(&f, "sk_test_key", false);
        ck_assert_str_eq(token(&f, &gen), "sk_test_key");
        ck_assert_uint_eq(gen, 0);
        ck_assert_int_eq(f.posts, 0);
        session_reset(&f.s); /* a no-op for sk_ */
        ck_assert_int_eq(f.readies, 0);
        teardown(&f);
}
END_TEST

START_TEST(test_lazy_single_mint_then_cached)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        ck_assert_int_eq(f.posts, 0); /* lazy: nothing until asked */
        ck_assert_ptr_null(token(&f, &gen));
        /* No identity yet: nothing is sent, it says so and waits. */
        ck_assert_int_eq(f.posts, 0);
        ck_assert_int_eq(f.s.state, SESSION_NO_IDENTITY);
        session_set_user(&f.s, "u1", "");
        ck_assert_int_eq(f.readies, 1);
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 1);
        ck_assert_str_eq(f.path, "/api/auth/session/");
        ck_assert_str_eq(f.bearer, "pk_test_key");
        ck_assert_str_eq(f.body, "{\"user_id\":\"u1\"}"); /* no sig: omitted */
        /* Concurrent asks wait for the same mint. */
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 1);
        answer(&f, 200, "{\"token\":\"tok-1\",\"expires_in\":3600}", -1);
        ck_assert_int_eq(f.readies, 2);
        ck_assert_str_eq(token(&f, &gen), "tok-1");
        ck_assert_uint_eq(gen, 1);
        ck_assert_str_eq(token(&f, &gen), "tok-1");
        ck_assert_int_eq(f.posts, 1);
        ck_assert_uint_eq(f.s.mints, 1);
        teardown(&f);
}
END_TEST

START_TEST(test_sig_is_sent_when_given)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        session_set_user(&f.s, "u\"2", "abcd");
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_str_eq(f.body, "{\"user_id\":\"u\\\"2\",\"user_id_sig\":\"abcd\"}");
        teardown(&f);
}
END_TEST

/* A token with less than min(60 s, half its lifetime) left is renewed
 * before use: with a 0.2 s token, after 0.1 s. */
START_TEST(test_renewed_before_expiry)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        session_set_user(&f.s, "u1", "");
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 200, "{\"token\":\"short\",\"expires_in\":0.2}", -1);
        ck_assert_str_eq(token(&f, &gen), "short");
        usleep(120 * 1000);
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 2);
        answer(&f, 200, "{\"token\":\"next\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "next");
        ck_assert_uint_eq(gen, 2);
        teardown(&f);
}
END_TEST

START_TEST(test_events_401_forgets_that_token_only)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        session_set_user(&f.s, "u1", "");
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 200, "{\"token\":\"t1\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "t1");
        session_rejected(&f.s, gen + 1); /* a 401 for some other token: ignored */
        ck_assert_str_eq(token(&f, &gen), "t1");
        session_rejected(&f.s, gen);
        ck_assert_uint_eq(f.s.invalidated, 1);
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 2);
        teardown(&f);
}
END_TEST

/* 400/401/403 from the mint: keep the events, back off (within the
 * policy's cap), log once; the backoff timer tells the owner to ask. */
START_TEST(test_refused_mint_backs_off)
{
        static const long codes[] = { 400, 401, 403 };

        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
                struct fake f;
                uint64_t gen, t;

                setup(&f, "pk_test_key", true);
                session_set_user(&f.s, "u1", "");
                ck_assert_ptr_null(token(&f, &gen));
                t = uv_now(&f.loop);
                answer(&f, codes[i], "{}", -1);
                ck_assert_int_eq(f.s.state, SESSION_WAITING);
                ck_assert_uint_eq(f.s.mint_failures, 1);
                ck_assert_uint_le(f.s.not_before, t + 50); /* first cap: backoff_initial */
                /* No new mint during the backoff. Full jitter can make it
                 * a millisecond or two, which a loaded machine lets pass
                 * before this line: then it is over, and a mint is due. */
                uv_update_time(&f.loop);
                if (uv_now(&f.loop) < f.s.not_before) {
                        ck_assert_ptr_null(session_token(&f.s, &gen));
                        ck_assert_int_eq(f.posts, 1);
                }
                ck_assert_int_eq(f.readies, 0);
                for (int k = 0; k < 1000 && f.readies < 1; k++)
                        uv_run(&f.loop, UV_RUN_ONCE);
                ck_assert_int_eq(f.readies, 1); /* the backoff timer */
                usleep(1000);
                ck_assert_ptr_null(token(&f, &gen));
                ck_assert_int_eq(f.posts, 2);
                teardown(&f);
        }
}
END_TEST

START_TEST(test_retry_after_on_the_mint)
{
        struct fake f;
        uint64_t gen, t;

        setup(&f, "pk_test_key", true);
        session_set_user(&f.s, "u1", "");
        ck_assert_ptr_null(token(&f, &gen));
        t = uv_now(&f.loop);
        answer(&f, 429, "", 30);
        ck_assert_uint_ge(f.s.not_before, t + 30000);
        ck_assert_uint_le(f.s.not_before, t + 30100);
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 1);
        teardown(&f);
}
END_TEST

START_TEST(test_unusable_token_backs_off)
{
        static const char *bodies[] = {
                "not json",
                "{\"token\":\"\",\"expires_in\":60}",
                "{\"token\":\"t\"}",
                "{\"token\":\"a b\",\"expires_in\":60}",
                "{\"token\":\"t\",\"expires_in\":-1}",
        };

        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
                struct fake f;
                uint64_t gen;

                setup(&f, "pk_test_key", true);
                session_set_user(&f.s, "u1", "");
                ck_assert_ptr_null(token(&f, &gen));
                answer(&f, 200, bodies[i], -1);
                ck_assert_msg(f.s.state == SESSION_WAITING, "body %s", bodies[i]);
                ck_assert_ptr_null(f.s.token);
                teardown(&f);
        }
}
END_TEST

/* Run the loop until the session wakes its owner (a bounded number of
 * turns: the timers involved are tens of milliseconds). */
static void wait_ready(struct fake *f, int readies)
{
        for (int k = 0; k < 1000 && f->readies < readies; k++)
                uv_run(&f->loop, UV_RUN_ONCE);
        ck_assert_int_ge(f->readies, readies);
}

/* reset_session while a mint runs, after set_user named another
 * identity: the answer concerns the old identity and is not used; the
 * next mint, for the current one, starts session_reset_min_interval
 * after the last at the earliest, and the owner is woken then. */
START_TEST(test_reset_during_a_mint)
{
        struct fake f;
        uint64_t gen;
        int readies;

        setup(&f, "pk_test_key", true);
        f.cfg.session_reset_min_interval = 0.05;
        session_set_user(&f.s, "old", "");
        ck_assert_ptr_null(token(&f, &gen));
        session_set_user(&f.s, "new", "");
        session_reset(&f.s);
        answer(&f, 200, "{\"token\":\"for-old\",\"expires_in\":3600}", -1);
        ck_assert_ptr_null(f.s.token);
        readies = f.readies;
        uv_update_time(&f.loop);
        if (uv_now(&f.loop) < f.s.last_start + 50) {
                ck_assert_ptr_null(token(&f, &gen));
                ck_assert_int_eq(f.posts, 1); /* not yet: the reset limit */
                wait_ready(&f, readies + 1);
        }
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 2);
        ck_assert_str_eq(f.body, "{\"user_id\":\"new\"}");
        answer(&f, 200, "{\"token\":\"for-new\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "for-new");
        teardown(&f);
}
END_TEST

/* Issue 10, item 1: a storm of resets while a mint runs for the same
 * identity. The mint's answer is used (on the old code each reset threw
 * it away and minted again), and the resets that follow while the token
 * is fresh leave it in use: delivery never stops, no mint per reset. A
 * send after session_reset_min_interval starts one re-mint beside the
 * token, which stays in use until the new one arrives. */
START_TEST(test_reset_storm_during_a_mint)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        f.cfg.session_reset_min_interval = 0.1;
        session_set_user(&f.s, "u1", "");
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 1);
        for (int i = 0; i < 100; i++) {
                session_reset(&f.s);
                ck_assert_ptr_null(token(&f, &gen));
        }
        ck_assert_int_eq(f.posts, 1);
        answer(&f, 200, "{\"token\":\"tok-1\",\"expires_in\":3600}", -1);
        ck_assert_ptr_nonnull(token(&f, &gen));
        ck_assert_str_eq(token(&f, &gen), "tok-1");
        /* Within the interval of that mint's start: more resets are
         * coalesced into one re-mint, and the token stays in use. */
        for (int i = 0; i < 100; i++) {
                session_reset(&f.s);
                ck_assert_ptr_nonnull(token(&f, &gen));
                ck_assert_str_eq(token(&f, &gen), "tok-1");
        }
        ck_assert(f.s.remint);
        uv_update_time(&f.loop);
        if (uv_now(&f.loop) < f.s.last_start + 100)
                ck_assert_int_eq(f.posts, 1);
        /* The sends above armed the timer: the re-mint starts when the
         * interval is over, without waiting for another send. */
        for (int k = 0; k < 1000 && f.posts < 2; k++)
                uv_run(&f.loop, UV_RUN_ONCE);
        ck_assert_int_eq(f.posts, 2);
        ck_assert_str_eq(f.body, "{\"user_id\":\"u1\"}");
        for (int i = 0; i < 100; i++) {
                session_reset(&f.s);
                ck_assert_str_eq(token(&f, &gen), "tok-1");
        }
        ck_assert_int_eq(f.posts, 2);
        answer(&f, 200, "{\"token\":\"tok-2\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "tok-2");
        ck_assert(!f.s.remint);
        ck_assert_uint_eq(f.s.mints, 2);
        ck_assert_uint_eq(f.s.resets, 300);
        ck_assert_uint_eq(f.s.resets_coalesced, 299); /* one started the re-mint */
        teardown(&f);
}
END_TEST

/* A re-mint beside the token that fails leaves the token in use (and is
 * retried after its backoff); a 401 for that token still drops it. */
START_TEST(test_failed_remint_keeps_the_token)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        f.cfg.session_reset_min_interval = 0;
        session_set_user(&f.s, "u1", "");
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 200, "{\"token\":\"tok-1\",\"expires_in\":3600}", -1);
        session_reset(&f.s);
        ck_assert_str_eq(token(&f, &gen), "tok-1"); /* and the re-mint starts */
        ck_assert_int_eq(f.posts, 2);
        answer(&f, 503, "", -1);
        ck_assert_int_eq(f.s.state, SESSION_WAITING);
        ck_assert_str_eq(token(&f, &gen), "tok-1");
        for (int k = 0; k < 1000 && f.posts < 3; k++)
                uv_run(&f.loop, UV_RUN_ONCE);
        ck_assert_int_eq(f.posts, 3); /* retried after the backoff */
        ck_assert_str_eq(token(&f, &gen), "tok-1");
        session_rejected(&f.s, gen);
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 200, "{\"token\":\"tok-2\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "tok-2");
        teardown(&f);
}
END_TEST

/* Storms that change the identity each time (set_user A, reset, set_user
 * B, reset, ...): each change must take effect, but at most one mint
 * starts per session_reset_min_interval (on the old code: one per reset,
 * 60 here). The last identity set is the one minted in the end. */
START_TEST(test_identity_storm_is_rate_limited)
{
        struct fake f;
        uint64_t gen, t0, elapsed;

        setup(&f, "pk_test_key", true);
        f.cfg.session_reset_min_interval = 0.1;
        uv_update_time(&f.loop);
        t0 = uv_now(&f.loop);
        for (int i = 0; i < 60; i++) {
                session_set_user(&f.s, i % 2 ? "user-B" : "user-A", "");
                session_reset(&f.s);
                (void)token(&f, &gen);
                if (f.cb)
                        answer(&f, 200, "{\"token\":\"t\",\"expires_in\":3600}", -1);
                uv_run(&f.loop, UV_RUN_NOWAIT);
                usleep(5000);
        }
        uv_update_time(&f.loop);
        elapsed = uv_now(&f.loop) - t0;
        ck_assert_msg((uint64_t)f.posts <= elapsed / 100 + 2, "%d mints in %llu ms", f.posts,
                      (unsigned long long)elapsed);
        /* The last identity is minted once the interval allows (the
         * mint a send asks for, or the timer starts), if it is not yet. */
        for (int k = 0; k < 1000 && !(f.s.state == SESSION_READY && !f.s.remint); k++) {
                (void)token(&f, &gen);
                if (f.cb)
                        answer(&f, 200, "{\"token\":\"last\",\"expires_in\":3600}", -1);
                else
                        uv_run(&f.loop, UV_RUN_ONCE);
        }
        ck_assert_int_eq(f.s.state, SESSION_READY);
        ck_assert_str_eq(f.body, "{\"user_id\":\"user-B\"}");
        ck_assert_ptr_nonnull(token(&f, &gen));
        teardown(&f);
}
END_TEST

/* After a refused mint (403), a new set_user cuts the backoff short, but
 * a storm of them costs one mint per session_reset_min_interval, not one
 * each (the old code: 50 here). */
START_TEST(test_set_user_storm_after_403)
{
        struct fake f;
        uint64_t gen, t0, elapsed;
        int posts;

        setup(&f, "pk_test_key", true);
        f.cfg.backoff_initial = f.cfg.backoff_max = 60;
        f.cfg.session_reset_min_interval = 0.2;
        session_set_user(&f.s, "u1", "bad");
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 403, "{}", -1);
        t0 = uv_now(&f.loop);
        for (int i = 0; i < 50; i++) {
                session_set_user(&f.s, "u1", i % 2 ? "bad2" : "bad3");
                (void)token(&f, &gen);
                if (f.cb)
                        answer(&f, 403, "{}", -1);
        }
        uv_update_time(&f.loop);
        elapsed = uv_now(&f.loop) - t0;
        ck_assert_msg((uint64_t)f.posts <= elapsed / 200 + 2, "%d mints in %llu ms", f.posts,
                      (unsigned long long)elapsed);
        posts = f.posts;
        /* The interval over, the latest identity is tried. */
        session_set_user(&f.s, "u1", "good");
        wait_ready(&f, f.readies + 1);
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, posts + 1);
        ck_assert_str_eq(f.body, "{\"user_id\":\"u1\",\"user_id_sig\":\"good\"}");
        teardown(&f);
}
END_TEST

/* A new key forgets the backoff the old one earned. */
START_TEST(test_new_key_is_tried_at_once)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        f.cfg.backoff_initial = f.cfg.backoff_max = 60;
        session_set_user(&f.s, "u1", "");
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 401, "", -1);
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 1);
        f.key.secret = "pk_new_key";
        session_key_changed(&f.s);
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 2);
        ck_assert_str_eq(f.bearer, "pk_new_key");
        teardown(&f);
}
END_TEST

/* Issue 8, bug 4: the forwarder closes at stop with the mint in flight.
 * That is no answer: no failure is counted, nothing is logged, no retry
 * is scheduled (on the old code: "session mint ... retrying with
 * backoff" and mint_failures 1). */
START_TEST(test_aborted_mint_is_not_a_failure)
{
        struct fake f;
        uint64_t gen;
        struct fwd_result res = { .curl_code = 42,
                                  .aborted = true,
                                  .retry_after = -1,
                                  .error = "Callback aborted",
                                  .body = "" };
        fwd_done_fn cb;

        setup(&f, "pk_test_key", true);
        session_set_user(&f.s, "u1", "");
        ck_assert_ptr_null(token(&f, &gen));
        cb = f.cb;
        f.cb = NULL;
        cb(f.ud, &res); /* before session_close: the order main.c uses */
        ck_assert_uint_eq(f.s.mint_failures, 0);
        ck_assert_str_eq(f.s.last_error, "");
        ck_assert(!uv_is_active((uv_handle_t *)&f.s.retry));
        teardown(&f);
}
END_TEST

/* Review 10: reset_session and then set_user with another identity (the
 * Python client's order: reset_session(), then get_user() sent as
 * set_user before the next event). The token kept through the reset
 * speaks for the old identity: it must not carry the new identity's
 * events while that identity's mint is pending (on the old code it did,
 * until the new mint answered). */
START_TEST(test_set_user_after_reset_drops_the_old_token)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        f.cfg.session_reset_min_interval = 0.05;
        session_set_user(&f.s, "alice", "");
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 200, "{\"token\":\"for-alice\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "for-alice");
        session_reset(&f.s);
        session_set_user(&f.s, "bob", "");
        ck_assert_ptr_null(token(&f, &gen));
        /* Bob's mint starts once the reset limit allows, and until it
         * answers nothing is sent. */
        for (int k = 0; k < 1000 && f.posts < 2; k++) {
                uv_run(&f.loop, UV_RUN_ONCE);
                ck_assert_ptr_null(token(&f, &gen));
        }
        ck_assert_int_eq(f.posts, 2);
        ck_assert_str_eq(f.body, "{\"user_id\":\"bob\"}");
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 200, "{\"token\":\"for-bob\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "for-bob");
        teardown(&f);
}
END_TEST

/* Review 10: a 401 for the token kept through a reset, before any send
 * has armed the re-mint's timer (the request was in flight when the
 * reset came): the batcher asks again and is told to wait for the reset
 * limit, so the session must wake it when the limit is over (on the old
 * code nothing did: sending waited for the next flush_interval tick, or
 * for ever with no more events). */
START_TEST(test_401_during_pending_remint_wakes_the_owner)
{
        struct fake f;
        uint64_t gen;
        int readies;

        setup(&f, "pk_test_key", true);
        f.cfg.session_reset_min_interval = 0.05;
        session_set_user(&f.s, "u1", "");
        ck_assert_ptr_null(token(&f, &gen));
        answer(&f, 200, "{\"token\":\"tok-1\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "tok-1"); /* a request goes out */
        session_reset(&f.s);
        session_rejected(&f.s, gen); /* its answer: 401 */
        readies = f.readies;
        uv_update_time(&f.loop);
        if (uv_now(&f.loop) < f.s.last_start + 50) {
                ck_assert_ptr_null(token(&f, &gen)); /* the batcher asks again */
                ck_assert_int_eq(f.posts, 1);
                ck_assert(uv_is_active((uv_handle_t *)&f.s.retry));
                wait_ready(&f, readies + 1);
        }
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 2);
        teardown(&f);
}
END_TEST

/* Review 10: as above, but the reset and the new identity come while
 * the first mint (for the old identity) is in flight. The reset is
 * answered by that mint only while the identity stays the same: once
 * set_user names another, the answer is not used (on the old code it
 * was, and the new identity's events went out under the old one's token
 * until the token's renewal, an hour later). */
START_TEST(test_set_user_after_reset_during_a_mint)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        f.cfg.session_reset_min_interval = 0.05;
        session_set_user(&f.s, "alice", "");
        ck_assert_ptr_null(token(&f, &gen));
        ck_assert_int_eq(f.posts, 1);
        session_reset(&f.s);
        session_set_user(&f.s, "bob", "");
        answer(&f, 200, "{\"token\":\"for-alice\",\"expires_in\":3600}", -1);
        ck_assert_ptr_null(token(&f, &gen));
        for (int k = 0; k < 1000 && f.posts < 2; k++) {
                uv_run(&f.loop, UV_RUN_ONCE);
                ck_assert_ptr_null(token(&f, &gen));
        }
        ck_assert_int_eq(f.posts, 2);
        ck_assert_str_eq(f.body, "{\"user_id\":\"bob\"}");
        answer(&f, 200, "{\"token\":\"for-bob\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "for-bob");
        teardown(&f);
}
END_TEST

/* set_user alone (no reset) while a mint runs: the identity for the
 * next mint (SPEC 2); the one in flight is used. */
START_TEST(test_set_user_alone_during_a_mint)
{
        struct fake f;
        uint64_t gen;

        setup(&f, "pk_test_key", true);
        session_set_user(&f.s, "alice", "");
        ck_assert_ptr_null(token(&f, &gen));
        session_set_user(&f.s, "bob", "");
        answer(&f, 200, "{\"token\":\"for-alice\",\"expires_in\":3600}", -1);
        ck_assert_str_eq(token(&f, &gen), "for-alice");
        ck_assert_int_eq(f.posts, 1);
        teardown(&f);
}
END_TEST

static Suite *session_suite(void)
{
        Suite *s = suite_create("session");
        TCase *tc = tcase_create("handshake");

        tcase_add_test(tc, test_sk_key_is_the_bearer);
        tcase_add_test(tc, test_lazy_single_mint_then_cached);
        tcase_add_test(tc, test_sig_is_sent_when_given);
        tcase_add_test(tc, test_renewed_before_expiry);
        tcase_add_test(tc, test_events_401_forgets_that_token_only);
        tcase_add_test(tc, test_refused_mint_backs_off);
        tcase_add_test(tc, test_retry_after_on_the_mint);
        tcase_add_test(tc, test_unusable_token_backs_off);
        tcase_add_test(tc, test_reset_during_a_mint);
        tcase_add_test(tc, test_reset_storm_during_a_mint);
        tcase_add_test(tc, test_failed_remint_keeps_the_token);
        tcase_add_test(tc, test_identity_storm_is_rate_limited);
        tcase_add_test(tc, test_set_user_storm_after_403);
        tcase_add_test(tc, test_new_key_is_tried_at_once);
        tcase_add_test(tc, test_aborted_mint_is_not_a_failure);
        tcase_add_test(tc, test_set_user_after_reset_drops_the_old_token);
        tcase_add_test(tc, test_401_during_pending_remint_wakes_the_owner);
        tcase_add_test(tc, test_set_user_after_reset_during_a_mint);
        tcase_add_test(tc, test_set_user_alone_during_a_mint);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(session_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
