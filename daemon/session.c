/* session.c - mints, caches and renews the pk_ session token.
 *
 * States: IDLE -> (IDENTIFYING ->) MINTING -> READY, and WAITING after a
 * failure (backoff with full jitter, or the upstream's Retry-After).
 * Every transition that blocks delivery is logged once, with what the
 * operator should do. The batcher asks session_token() before each
 * events request; nothing here blocks: the identity command runs
 * through usercmd.c and the mint through the same curl multi handle as
 * the events (forward.c).
 *
 * reset_session and set_user may come from any process on the host, at
 * any rate (issue 10): a reset that finds the token in use sets remint
 * and the token stays in use until the new one comes; a reset during a
 * mint for the same identity is answered by that mint; the mint a reset
 * or set_user causes starts session_reset_min_interval after the last
 * one started at the earliest (not_before, and the retry timer when a
 * send is waiting). Only a set_user identity other than the token's
 * drops the token at once.
 */
#include "session.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"
#include "response.h"
#include "rng.h"
#include "scrub.h"
#include "urlshow.h"
#include "usercmd.h"

#define SESSION_PATH "/api/auth/session/"
#define FRESH_MARGIN_MS 60000 /* re-mint when less than this remains... */
                              /* ...or half the lifetime, if shorter */

static const char *state_name(enum session_state st)
{
        switch (st) {
        case SESSION_DISABLED: return "disabled";
        case SESSION_IDLE: return "idle";
        case SESSION_IDENTIFYING: return "identifying";
        case SESSION_MINTING: return "minting";
        case SESSION_READY: return "ready";
        case SESSION_WAITING: return "backing_off";
        case SESSION_NO_IDENTITY: return "no_identity";
        }
        return "unknown";
}

static uint64_t now(const struct session *s)
{
        return uv_now(s->loop);
}

static void tell_owner(struct session *s)
{
        s->io.ready(s->io.ud);
}

/* Log a problem once per change of problem, not once per attempt. */
static void tell(struct session *s, const char *problem, int prio, const char *text)
{
        if (s->logged == problem)
                return;
        s->logged = problem;
        log_msg(prio, "%s", text);
}

/* What the lines of a failed mint say after the failure: where, what
 * waits, and when the next attempt is (back_off() has set it). */
static const char *mint_note(const struct session *s, char *out, size_t outlen)
{
        char url[256], next[32];
        uint64_t t = now(s);

        (void)urlshow_strip(s->cfg->api_url, url, sizeof(url));
        snprintf(out, outlen, "upstream %s; %llu events held, next attempt in %s", url,
                 (unsigned long long)(s->io.held ? s->io.held(s->io.ud) : 0),
                 log_duration(s->not_before > t ? s->not_before - t : 0, next, sizeof(next)));
        return out;
}

/* Without a token there is nothing to keep in use: a mint is needed
 * anyway, so a pending re-mint is no longer one. */
static void drop_token(struct session *s)
{
        if (s->token) {
                explicit_bzero(s->token, strlen(s->token));
                free(s->token);
                s->token = NULL;
        }
        s->remint = false;
}

void session_init(struct session *s, uv_loop_t *loop, const struct cfg *cfg,
                  const struct apikey *key, bool enabled, const struct session_io *io)
{
        memset(s, 0, sizeof(*s));
        s->loop = loop;
        s->cfg = cfg;
        s->key = key;
        s->io = *io;
        uv_timer_init(loop, &s->retry);
        s->retry.data = s;
        s->state = enabled ? SESSION_IDLE : SESSION_DISABLED;
}

bool session_enabled(const struct session *s)
{
        return s->state != SESSION_DISABLED;
}

const char *session_secret(const struct session *s)
{
        return s->token;
}

static bool fresh(const struct session *s)
{
        uint64_t lifetime = s->expires_at - s->minted_at;
        uint64_t margin = lifetime / 2 < FRESH_MARGIN_MS ? lifetime / 2 : FRESH_MARGIN_MS;

        return s->token && now(s) + margin < s->expires_at;
}

static void start(struct session *s);

static void on_retry(uv_timer_t *t)
{
        struct session *s = t->data;

        /* A re-mint a reset asked for, beside the token in use: a send
         * came since the reset (it armed this timer), so it is due. */
        if (s->remint && s->token && (s->state == SESSION_READY || s->state == SESSION_WAITING)) {
                start(s);
                return;
        }
        /* The owner asks for a token again, which starts the mint. */
        tell_owner(s);
}

/* The earliest a mint that a reset or set_user causes may start:
 * session_reset_min_interval after the last one started (at once when
 * none has, or a reload made it forget). */
static uint64_t reset_due(const struct session *s)
{
        if (!s->last_start)
                return 0;
        return s->last_start + (uint64_t)(s->cfg->session_reset_min_interval * 1000.0);
}

/* A mint is due at not_before: tell the owner now, or when it is. */
static void wake_at_not_before(struct session *s)
{
        uint64_t t = now(s);

        if (t >= s->not_before)
                tell_owner(s);
        else
                uv_timer_start(&s->retry, on_retry, s->not_before - t, 0);
}

/* A mint failed: wait (the upstream's Retry-After when it gave one,
 * else backoff with full jitter) before the next. */
static void back_off(struct session *s, double retry_after)
{
        const struct cfg *c = s->cfg;
        uint64_t delay;

        s->attempts++;
        s->mint_failures++;
        if (retry_after >= 0)
                delay = backoff_retry_after_ms(retry_after, c->retry_after_max);
        else
                delay = backoff_ms(c->backoff_initial, c->backoff_max, s->attempts, rng_unit());
        s->state = SESSION_WAITING;
        s->not_before = now(s) + delay;
        /* A re-mint for a reset, beside a token still in use: never
         * sooner than the reset limit either. */
        if (s->remint && reset_due(s) > s->not_before)
                s->not_before = reset_due(s);
        delay = s->not_before - now(s);
        uv_timer_start(&s->retry, on_retry, delay ? delay : 1, 0);
}

static int take_token(struct session *s, const struct fwd_result *res)
{
        double secs;
        char *tok;
        int r = resp_parse_mint(res->body, res->body_len, &tok, &secs);

        if (r < 0)
                return r;
        drop_token(s);
        s->token = tok;
        s->generation++;
        /* expires_in runs from when the upstream made the token, at the
         * latest when it answered; counting from the request, not the
         * answer, never takes the transit time for token life. */
        s->minted_at = s->mint_sent_at;
        s->expires_at = s->minted_at + (uint64_t)(secs * 1000.0);
        return 0;
}

/* 2xx: the token, or a backoff when the answer has none usable. */
static void took_answer(struct session *s, const struct fwd_result *res)
{
        char msg[768], note[400];

        if (take_token(s, res) == 0) {
                s->state = SESSION_READY;
                s->attempts = 0;
                s->mints++;
                s->last_error[0] = '\0';
                if (s->logged)
                        log_info("pk_ session minted for user '%s'; sending resumes", s->user_id);
                s->logged = NULL;
                tell_owner(s);
                return;
        }
        snprintf(s->last_error, sizeof(s->last_error),
                 "session answer lacks a usable token/expires_in");
        back_off(s, -1);
        snprintf(msg, sizeof(msg),
                 "the upstream's session answer has no usable token and expires_in; retrying "
                 "with backoff (%s)",
                 mint_note(s, note, sizeof(note)));
        tell(s, "mint_body", LOG_ERR, msg);
}

/* 400/401/403: a configuration problem; say what to fix, once. */
static void refused(struct session *s, long st)
{
        char msg[1024], note[400];

        snprintf(s->last_error, sizeof(s->last_error), "session mint: HTTP %ld", st);
        back_off(s, -1);
        snprintf(msg, sizeof(msg),
                 "minting a session for user '%s' with key %s failed with HTTP %ld: %s. "
                 "Events are kept and minting is retried with backoff (%s)",
                 s->user_id, s->key->redacted, st,
                 st == 401   ? "the pk_ key is unknown or revoked; fix api_key_file"
                 : st == 403 ? "the user_id_sig is missing or wrong; sign the user id "
                               "with 'segopsctl sign-user-id' and send set_user with it"
                             : "the upstream found the request malformed; check the "
                               "identity sent with set_user or user_context_command",
                 mint_note(s, note, sizeof(note)));
        tell(s, st == 401 ? "mint_401" : st == 403 ? "mint_403" : "mint_400", LOG_ERR, msg);
}

static void on_mint(void *ud, const struct fwd_result *res)
{
        struct session *s = ud;
        long st = res->status;
        char note[400];

        proto_buf_free(&s->body);
        /* Aborted: the forwarder is closing, and there is no answer to
         * judge (nor a failure to count or log). */
        if (res->aborted || s->state != SESSION_MINTING)
                return;
        s->last_status = st;
        if (s->restart) {
                /* Another identity (set_user and reset_session), or a new
                 * key or URL, came while this mint ran: whatever it
                 * answered concerns a stale one, so mint again with the
                 * current ones (after the reset limit, for an identity). */
                s->restart = false;
                s->state = SESSION_IDLE;
                s->not_before = reset_due(s);
                wake_at_not_before(s);
                return;
        }
        switch (resp_judge_mint(st, res->retry_after)) {
        case MINT_TAKE_TOKEN: took_answer(s, res); return;
        case MINT_FIX_CONFIG: refused(s, st); return;
        case MINT_PAUSE:
        case MINT_BACKOFF: break;
        }
        if (res->curl_code) {
                /* curl's words may hold what the upstream sent back. */
                static const char head[] = "session mint: ";
                const char *secrets[] = { s->key->secret, res->bearer, s->token };
                size_t h = sizeof(head) - 1;

                memcpy(s->last_error, head, h);
                scrub_text(s->last_error + h, sizeof(s->last_error) - h, res->error,
                           strlen(res->error), secrets, 3);
        } else {
                snprintf(s->last_error, sizeof(s->last_error), "session mint: HTTP %ld", st);
        }
        back_off(s, (st == 429 || st == 503) ? res->retry_after : -1);
        log_limited(LOG_WARNING, "mint_transient", "%s; %s (%s)", s->last_error,
                    (st == 429 || st == 503) && res->retry_after >= 0 ? "honouring Retry-After"
                                                                      : "retrying with backoff",
                    mint_note(s, note, sizeof(note)));
}

static void mint(struct session *s, const char *user_id, const char *sig)
{
        struct fwd_post p = { .path = SESSION_PATH, .bearer = s->key->secret };
        int r;

        snprintf(s->user_id, sizeof(s->user_id), "%s", user_id);
        s->reset_in_mint = false;
        proto_buf_reset(&s->body);
        r = proto_buf_append_str(&s->body, "{\"user_id\":");
        if (r == 0)
                r = proto_json_escape(&s->body, user_id, strlen(user_id));
        if (r == 0 && sig[0]) {
                r = proto_buf_append_str(&s->body, ",\"user_id_sig\":");
                if (r == 0)
                        r = proto_json_escape(&s->body, sig, strlen(sig));
        }
        if (r == 0)
                r = proto_buf_append_str(&s->body, "}");
        if (r == 0) {
                p.body = s->body.data;
                p.body_len = s->body.len;
                s->state = SESSION_MINTING;
                s->mint_sent_at = now(s);
                r = s->io.post(s->io.ctx, &p, on_mint, s);
        }
        if (r < 0) {
                proto_buf_free(&s->body);
                snprintf(s->last_error, sizeof(s->last_error), "cannot start a mint: %s",
                         strerror(-r));
                back_off(s, -1);
        }
}

static void on_identity(void *ud, const struct usercmd_result *res)
{
        struct session *s = ud;
        char msg[512];

        s->cmd = NULL;
        if (res->error == 0) {
                const char *id = res->user_id, *sig = res->user_id_sig;

                /* set_user came while it ran: that identity wins. */
                if (s->set_user_id[0]) {
                        id = s->set_user_id;
                        sig = s->set_user_sig;
                }
                /* A token kept in use through a reset speaks for the
                 * identity it was minted for: not for another. */
                if (s->token && strcmp(id, s->user_id) != 0)
                        drop_token(s);
                mint(s, id, sig);
                return;
        }
        snprintf(s->last_error, sizeof(s->last_error), "user_context_command failed: %s", res->why);
        snprintf(msg, sizeof(msg),
                 "user_context_command failed: %s. pk_ events are kept; "
                 "fix the command or send {\"op\":\"set_user\",...}",
                 res->why);
        tell(s, "usercmd", LOG_ERR, msg);
        back_off(s, -1);
}

static void start(struct session *s)
{
        const struct cfg *c = s->cfg;
        char why[256];

        s->last_start = now(s);
        if (s->set_user_id[0]) {
                mint(s, s->set_user_id, s->set_user_sig);
                return;
        }
        if (!c->user_context_command) {
                s->state = SESSION_NO_IDENTITY;
                snprintf(s->last_error, sizeof(s->last_error), "no identity for the pk_ session");
                tell(s, "no_identity", LOG_WARNING,
                     "pk_ key: events are kept until segopsd knows who is sending: send "
                     "{\"op\":\"set_user\",\"user_id\":\"...\",\"user_id_sig\":\"...\"} on the "
                     "control socket (segopsctl set-user), or set user_context_command");
                return;
        }
        s->state = SESSION_IDENTIFYING;
        s->commands++;
        if (usercmd_run(s->loop, c->user_context_command, c->user_context_timeout,
                        c->user_context_max_output, on_identity, s, &s->cmd, why,
                        sizeof(why)) < 0) {
                snprintf(s->last_error, sizeof(s->last_error), "%s", why);
                tell(s, "usercmd_spawn", LOG_ERR, why);
                back_off(s, -1);
        }
}

const char *session_token(struct session *s, uint64_t *generation)
{
        if (s->state == SESSION_DISABLED) {
                *generation = 0;
                if (s->key->missing) /* no key yet: the events wait for one */
                        return NULL;
                return s->key->secret ? s->key->secret : ""; /* "": dry run */
        }
        if (s->token && !fresh(s)) {
                drop_token(s); /* about to expire: renew before use */
                if (s->state == SESSION_READY)
                        s->state = SESSION_IDLE;
        }
        if (s->token) {
                /* A reset asked for a new token: mint it beside this one
                 * once the reset limit allows (the timer, if not yet). */
                if (s->remint && (s->state == SESSION_READY || s->state == SESSION_WAITING)) {
                        if (now(s) >= s->not_before)
                                start(s);
                        else if (!uv_is_active((uv_handle_t *)&s->retry))
                                uv_timer_start(&s->retry, on_retry, s->not_before - now(s), 0);
                }
                if (s->token) {
                        *generation = s->generation;
                        return s->token;
                }
        }
        if (s->state == SESSION_IDLE || s->state == SESSION_NO_IDENTITY ||
            s->state == SESSION_WAITING) {
                if (now(s) >= s->not_before)
                        start(s);
                else if (!uv_is_active((uv_handle_t *)&s->retry))
                        /* The reset limit (a token dropped by a 401 or
                         * its expiry while a re-mint waited): the owner
                         * is told when it is over. */
                        uv_timer_start(&s->retry, on_retry, s->not_before - now(s), 0);
        }
        return NULL;
}

void session_rejected(struct session *s, uint64_t generation)
{
        /* A token kept through a reset may be refused while its
         * successor is minted (or the re-mint backs off). */
        if (s->token && generation == s->generation) {
                s->invalidated++;
                drop_token(s);
                if (s->state == SESSION_READY)
                        s->state = SESSION_IDLE;
        }
}

void session_reset(struct session *s)
{
        bool other;

        if (s->state == SESSION_DISABLED)
                return;
        s->resets++;
        /* set_user named an identity other than the token's (or the
         * mint's in flight): that session no longer speaks for the
         * sender. With user_context_command the identity is known only
         * once it has run (on_identity). */
        other = s->set_user_id[0] && strcmp(s->set_user_id, s->user_id) != 0;
        if (s->state == SESSION_READY && !other && !s->remint) {
                s->remint = true;
                if (reset_due(s) > s->not_before)
                        s->not_before = reset_due(s);
                log_limited(LOG_INFO, "session_reset",
                            "reset_session: a new pk_ session token is minted at the next send; "
                            "the current one stays in use until it arrives (%llu resets, %llu "
                            "coalesced)",
                            (unsigned long long)s->resets, (unsigned long long)s->resets_coalesced);
                return;
        }
        if (s->state == SESSION_READY && other) {
                log_limited(LOG_INFO, "session_reset",
                            "reset_session: the identity is now '%s', no longer '%s': its pk_ "
                            "session token is dropped and a new one minted (%llu resets, %llu "
                            "coalesced)",
                            s->set_user_id, s->user_id, (unsigned long long)s->resets,
                            (unsigned long long)s->resets_coalesced);
                drop_token(s);
                s->state = SESSION_IDLE;
                s->not_before = reset_due(s);
                wake_at_not_before(s);
                return;
        }
        /* A mint for the current identity is already pending, running or
         * due (or none can be made): this reset adds nothing of its own. */
        s->resets_coalesced++;
        if (other) {
                drop_token(s);
                if (s->state == SESSION_MINTING)
                        s->restart = true;
        } else if (s->state == SESSION_MINTING) {
                s->reset_in_mint = true; /* until set_user names another */
        }
        /* A key of its own: a storm of these cannot hide the lines above. */
        log_limited(LOG_INFO, "session_reset_coalesced",
                    "reset_session coalesced with the pk_ session mint already pending or "
                    "running (%llu resets, %llu coalesced)",
                    (unsigned long long)s->resets, (unsigned long long)s->resets_coalesced);
}

void session_forget(struct session *s)
{
        if (s->state == SESSION_DISABLED)
                return;
        drop_token(s);
        s->last_start = 0; /* nothing to rate-limit against: mint at once */
        if (s->state == SESSION_MINTING)
                s->restart = true;
        if (s->state == SESSION_READY || s->state == SESSION_NO_IDENTITY ||
            s->state == SESSION_IDLE) {
                s->state = SESSION_IDLE;
                s->not_before = 0;
        }
        tell_owner(s);
}

void session_key_changed(struct session *s)
{
        if (s->state == SESSION_DISABLED)
                return;
        if (s->state == SESSION_WAITING) {
                /* The backoff was earned by the old key: the new one
                 * is tried at once. */
                uv_timer_stop(&s->retry);
                s->state = SESSION_IDLE;
                s->not_before = 0;
                s->attempts = 0;
                s->logged = NULL;
        }
        session_forget(s);
}

void session_set_user(struct session *s, const char *user_id, const char *sig)
{
        snprintf(s->set_user_id, sizeof(s->set_user_id), "%s", user_id);
        snprintf(s->set_user_sig, sizeof(s->set_user_sig), "%s", sig);
        if (strcmp(s->set_user_id, s->user_id) != 0 &&
            ((s->remint && s->token) || (s->state == SESSION_MINTING && s->reset_in_mint))) {
                /* A reset asked for a token for the current identity,
                 * which is now another than the token kept in use
                 * meanwhile (or the mint in flight) speaks for: drop
                 * it, as a reset after this set_user would (the mint in
                 * flight, for the old identity, is not used). */
                drop_token(s);
                if (s->state == SESSION_MINTING) {
                        s->restart = true;
                } else if (s->state == SESSION_READY) {
                        s->state = SESSION_IDLE;
                        s->not_before = reset_due(s);
                        wake_at_not_before(s);
                }
                return;
        }
        if (s->state == SESSION_NO_IDENTITY) {
                s->state = SESSION_IDLE;
                tell_owner(s);
        } else if (s->state == SESSION_WAITING && s->logged &&
                   (!strcmp(s->logged, "mint_403") || !strcmp(s->logged, "mint_400")) &&
                   reset_due(s) < s->not_before) {
                /* A new identity is worth trying before the backoff ends,
                 * but no sooner than the reset limit: a storm of set_user
                 * costs one refused mint per interval. */
                s->not_before = reset_due(s);
                wake_at_not_before(s);
        }
}

json_t *session_stats(const struct session *s)
{
        uint64_t t = now(s);
        json_t *j = json_pack(
                "{s:b s:s s:I s:I s:I s:I s:s s:I s:I s:b s:I}", "enabled", session_enabled(s),
                "state", state_name(s->state), "mints", (json_int_t)s->mints, "mint_failures",
                (json_int_t)s->mint_failures, "tokens_rejected", (json_int_t)s->invalidated,
                "last_status", (json_int_t)s->last_status, "last_error", s->last_error, "resets",
                (json_int_t)s->resets, "resets_coalesced", (json_int_t)s->resets_coalesced,
                "remint_pending", s->remint, "user_context_runs", (json_int_t)s->commands);

        if (j && s->token) {
                json_object_set_new(j, "token_age_s",
                                    json_real((double)(t - s->minted_at) / 1000.0));
                json_object_set_new(j, "token_expires_in_s",
                                    json_real(((double)s->expires_at - (double)t) / 1000.0));
        }
        if (j && session_enabled(s))
                json_object_set_new(j, "identity_source",
                                    json_string(s->set_user_id[0] ? "set_user"
                                                : s->cfg->user_context_command
                                                        ? "user_context_command"
                                                        : "none"));
        return j;
}

void session_close(struct session *s)
{
        usercmd_cancel(s->cmd);
        s->cmd = NULL;
        drop_token(s);
        proto_buf_free(&s->body);
        if (s->state != SESSION_DISABLED)
                s->state = SESSION_IDLE;
        uv_close((uv_handle_t *)&s->retry, NULL);
}
