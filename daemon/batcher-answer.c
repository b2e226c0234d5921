/* batcher-answer.c - what an upstream answer does to a batch: the
 * response table (response.c) gives the verdict, this carries it out
 * (delivered, resent, backed off, paused, split, dropped), keeps the
 * upstream's health (its state, since when it fails, the next try: for
 * stats, status, health and the datagram backpressure), and logs what an operator should know,
 * once per change of state or at a limited rate.
 */
#include "batcher-internal.h"

#include <string.h>

#include "backoff.h"
#include "batch.h"
#include "forward.h"
#include "log.h"
#include "rng.h"
#include "scrub.h"
#include "session.h"
#include "urlshow.h"

#define BODY_EXCERPT 160 /* bytes of a rejecting answer's body logged */

/* Text from the upstream (a body, curl's message, which may quote what
 * the upstream sent) into out, for a log line or stats: without the
 * key, the credential this request carried, or the token held now. */
static size_t scrubbed(const struct batcher *b, const struct fwd_result *res, const char *text,
                       size_t len, char *out, size_t outsz)
{
        const char *secrets[] = { b->key->secret, res->bearer, session_secret(b->session) };

        return scrub_text(out, outsz, text, len, secrets, 3);
}

static void note_failure(struct batcher *b, const struct fwd_result *res)
{
        if (res->curl_code == 0)
                snprintf(b->up.last_error, sizeof(b->up.last_error), "HTTP %ld", res->status);
        else
                scrubbed(b, res, res->error, strlen(res->error), b->up.last_error,
                         sizeof(b->up.last_error));
}

static void retry_later(struct batcher *b, struct batch *x, const struct cfg *c)
{
        x->state = BATCH_READY;
        x->not_before = batcher__now(b) +
                        backoff_ms(c->backoff_initial, c->backoff_max, x->attempts, rng_unit());
}

/* Retry-After pauses every request to the upstream. */
static void pause_all(struct batcher *b, struct batch *x, double secs)
{
        uint64_t until = batcher__now(b) + backoff_retry_after_ms(secs, b->cfg->retry_after_max);

        if (until > b->paused_until)
                b->paused_until = until;
        x->state = BATCH_READY;
        x->not_before = until;
}

static void split(struct batcher *b, struct batch *x)
{
        struct batch *parts[2];

        if (batch_split(x, parts) < 0) {
                retry_later(b, x, b->cfg); /* keep the original, try later */
                return;
        }
        b->stats->splits++;
        batcher__free(b, x);
        for (int h = 0; h < 2; h++) {
                batcher__link(b, parts[h]);
                batch_ready(parts[h], &b->queue);
        }
}

static void delivered(struct batcher *b, struct batch *x, const struct fwd_result *res)
{
        int64_t accepted, dups;

        if (resp_parse_counts(res->body, res->body_len, x->n, &accepted, &dups))
                log_limited(LOG_WARNING, "partial",
                            "upstream accepted %lld and found %lld duplicates of the %u events "
                            "of batch %s; treating it as delivered",
                            (long long)accepted, (long long)dups, x->n, x->id);
        b->stats->sent += x->n;
        b->stats->duplicates += (uint64_t)dups;
        b->stats->batches_sent++;
        batcher__free(b, x);
        /* The upstream takes events again: what waits on a backoff goes
         * now, oldest first (an outage's backlog must not trickle in
         * over a minute of separate backoff timers). */
        batcher__release_backoffs(b);
}

/* What every failure line says besides the failure: where (the URL
 * without credentials), what is held (memory and disk), and when this
 * batch is tried again. Only built on the failure paths. */
struct held_note {
        char url[256];
        unsigned long long held;
        char next[32];
};

static void held_note(const struct batcher *b, const struct batch *x, struct held_note *h)
{
        uint64_t t = batcher__now(b);

        (void)urlshow_strip(b->cfg->api_url, h->url, sizeof(h->url));
        h->held = (unsigned long long)batcher_held(b);
        log_duration(x->not_before > t ? x->not_before - t : 0, h->next, sizeof(h->next));
}

/* One line per change of state (or rate-limited), saying what to do.
 * A batch to be retried has its not_before set by now. */
static void log_verdict(struct batcher *b, const struct batch *x, const struct fwd_result *res,
                        const struct resp_verdict *v, enum upstream_state prev)
{
        long st = res->status;
        bool changed = v->set_state && v->state != prev;
        struct held_note h;

        switch (v->action) {
        case RESP_DROP_TOO_LARGE:
                held_note(b, x, &h);
                log_limited(LOG_ERR, "413",
                            "upstream %s refused a single event as too large (HTTP 413); "
                            "it is dropped",
                            h.url);
                return;
        case RESP_DROP_REJECTED: {
                /* The head of the body, scrubbed whole before it is cut:
                 * a secret across the cut goes too (scrub.h). */
                char head[BODY_EXCERPT + 1], excerpt[200];
                size_t n = scrubbed(b, res, res->body, res->body_len, head, sizeof(head));

                log_excerpt(head, n, excerpt, sizeof(excerpt));
                held_note(b, x, &h);
                log_limited(LOG_ERR, "rejected",
                            "upstream %s rejected batch %s of %u events with HTTP %ld (%s); the "
                            "events are dropped (dropped.upstream_rejected); fix what sends them",
                            h.url, x->id, x->n, st, excerpt);
                return;
        }
        default: break;
        }
        if (!v->set_state || v->state == UPSTREAM_OK || v->state == UPSTREAM_DRY_RUN ||
            (v->state == UPSTREAM_AUTH_ERROR && !changed))
                return;
        held_note(b, x, &h); /* a failure: not on the path of a success */
        switch (v->state) {
        case UPSTREAM_REDIRECTED:
                log_limited(LOG_ERR, "redirect",
                            "upstream %s answered HTTP %ld (a redirect): check api_url; %llu "
                            "events held, next attempt in %s",
                            h.url, st, h.held, h.next);
                break;
        case UPSTREAM_AUTH_ERROR:
                if (session_enabled(b->session))
                        log_err("upstream %s refused a fresh session token with HTTP %ld (%s): "
                                "%llu events held, next attempt in %s; check the pk_ key %s "
                                "and the identity",
                                h.url, st,
                                st == 401 ? "rejected right after a mint"
                                          : "the session lacks permission",
                                h.held, h.next, b->key->redacted);
                else
                        log_err("upstream %s refused the API key %s with HTTP %ld (%s): %llu "
                                "events held, next attempt in %s; fix the key (api_key_file "
                                "or the api_key credential) and restart segopsd",
                                h.url, b->key->redacted, st,
                                st == 401 ? "unknown, revoked or expired key"
                                          : "the key lacks permission to send events",
                                h.held, h.next);
                break;
        case UPSTREAM_THROTTLED:
                if (v->action == RESP_PAUSE)
                        log_limited(LOG_WARNING, "throttled",
                                    "upstream %s is overloaded (HTTP %ld), honouring "
                                    "Retry-After: every request paused for %s; %llu events held",
                                    h.url, st, h.next, h.held);
                else
                        log_limited(LOG_WARNING, "throttled",
                                    "upstream %s is overloaded (HTTP %ld), backing off: %llu "
                                    "events held, next attempt in %s",
                                    h.url, st, h.held, h.next);
                break;
        case UPSTREAM_TLS_ERROR:
                log_limited(LOG_ERR, "tls",
                            "TLS failure talking to upstream %s: %s; check api_url and ca_file: "
                            "%llu events held, next attempt in %s",
                            h.url, b->up.last_error, h.held, h.next);
                break;
        case UPSTREAM_RETRYING:
                log_limited(LOG_WARNING, "transient",
                            "upstream %s request failed (%s), retrying with backoff: %llu events "
                            "held, next attempt in %s",
                            h.url, b->up.last_error, h.held, h.next);
                break;
        default: break;
        }
}

void batcher__on_response(void *ud, const struct fwd_result *res)
{
        struct batch *x = ud;
        struct batcher *b = x->owner;
        enum upstream_state prev = b->up.state;
        struct resp_in in = {
                .status = res->status,
                .tls_error = res->tls_error,
                .retry_after = res->retry_after,
                .events = x->n,
                .session = session_enabled(b->session),
                .reminted = x->reminted,
                .key_replaced = x->key_gen != b->key->gen,
                .dry_run = fwd_dry_run(b->fwd),
        };
        struct resp_verdict v;

        if (res->aborted) {
                /* The forwarder is closing: no answer, and no verdict. */
                x->state = BATCH_READY;
                return;
        }
        b->stats->requests++;
        v = resp_judge(&in);
        if (!in.dry_run) {
                b->up.last_status = res->status;
                if (v.action != RESP_DELIVERED && v.action != RESP_SPLIT)
                        note_failure(b, res);
        }
        if (v.forget_token)
                session_rejected(b->session, x->token_gen);
        batcher__note_answer(b, &v, in.dry_run);
        /* The next attempt is set before the verdict is logged: the
         * line says when it is. */
        if (v.action == RESP_BACKOFF)
                retry_later(b, x, b->cfg);
        else if (v.action == RESP_PAUSE)
                pause_all(b, x, res->retry_after);
        log_verdict(b, x, res, &v, prev);
        switch (v.action) {
        case RESP_DELIVERED: delivered(b, x, res); break;
        case RESP_RESEND_NOW:
                x->reminted = x->reminted || v.forget_token;
                x->state = BATCH_READY;
                x->not_before = 0;
                break;
        case RESP_BACKOFF:
        case RESP_PAUSE: break; /* done above */
        case RESP_SPLIT: split(b, x); break;
        case RESP_DROP_REJECTED: batcher__drop(b, x, DROP_UPSTREAM_REJECTED); break;
        case RESP_DROP_TOO_LARGE: batcher__drop(b, x, DROP_TOO_LARGE); break;
        }
        batcher__pump(b);
}

/* ---- the upstream's health (stats, status, health, backpressure) ---- */

void batcher__upstream_start(struct batcher *b)
{
        b->up.state = fwd_dry_run(b->fwd) ? UPSTREAM_DRY_RUN : UPSTREAM_IDLE;
        b->up.since_ms = uv_now(b->loop);
        if (b->key->missing) { /* failing from the start, until a key comes */
                b->up.state = UPSTREAM_NO_KEY;
                b->up.failing = true;
                b->up.failing_since_ms = b->up.since_ms;
                snprintf(b->up.last_error, sizeof(b->up.last_error), "no API key yet");
        }
}

const struct upstream_health *batcher_upstream(const struct batcher *b)
{
        return &b->up;
}

bool upstream_state_failing(enum upstream_state s)
{
        return s != UPSTREAM_IDLE && s != UPSTREAM_OK && s != UPSTREAM_DRY_RUN;
}

void batcher__set_state(struct batcher *b, enum upstream_state s)
{
        if (s == b->up.state)
                return;
        b->up.state = s;
        b->up.since_ms = batcher__now(b);
}

void batcher__note_answer(struct batcher *b, const struct resp_verdict *v, bool dry_run)
{
        if (v->set_state)
                batcher__set_state(b, v->state);
        if (dry_run)
                return;
        if (v->action == RESP_DELIVERED) {
                b->up.failing = false;
                b->up.failures = 0;
        } else if (v->set_state && upstream_state_failing(v->state)) {
                /* A 400 or a 413 is an answer, not a failure to deliver. */
                if (!b->up.failing) {
                        b->up.failing = true;
                        b->up.failing_since_ms = batcher__now(b);
                }
                b->up.failures++;
        }
}

uint64_t batcher_retry_in(const struct batcher *b)
{
        uint64_t t = batcher__now(b), next = UINT64_MAX;

        for (const struct batch *x = b->batches; x; x = x->next) {
                uint64_t due = x->not_before > b->paused_until ? x->not_before : b->paused_until;

                if (x->state == BATCH_READY && due > t && due < next)
                        next = due;
        }
        return next == UINT64_MAX ? 0 : next - t;
}

uint64_t batcher_paused_for(const struct batcher *b)
{
        uint64_t t = batcher__now(b);

        return b->paused_until > t ? b->paused_until - t : 0;
}

bool batcher_upstream_healthy(const struct batcher *b)
{
        /* No answer yet is no evidence of failure: a flood at start-up
         * is paused like any other, not dropped. */
        return b->up.state == UPSTREAM_OK || b->up.state == UPSTREAM_DRY_RUN ||
               b->up.state == UPSTREAM_IDLE;
}

void batcher_key_given(struct batcher *b)
{
        if (b->up.state != UPSTREAM_NO_KEY)
                return;
        batcher__set_state(b, UPSTREAM_IDLE);
        b->up.failing = false;
        b->up.failures = 0;
        b->up.last_error[0] = '\0';
        batcher__pump(b);
}
