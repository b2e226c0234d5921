/* status.c - the STATUS= line systemd shows under "systemctl status
 * segopsd", and the once-a-second tick that samples the counters for
 * the rates of stats (see status.h). */
#include "status.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "clock.h"
#include "daemon.h"
#include "spool.h"

void status_rate(double v, char *out, size_t outlen)
{
        if (v < 0.05)
                snprintf(out, outlen, "0");
        else if (v < 10)
                snprintf(out, outlen, "%.1f", v);
        else if (v < 999.5)
                snprintf(out, outlen, "%.0f", v);
        else if (v < 999.5e3)
                snprintf(out, outlen, "%.1fk", v / 1e3);
        else
                snprintf(out, outlen, "%.1fM", v / 1e6);
}

void status_count(uint64_t n, char *out, size_t outlen)
{
        char digits[24], grouped[32];
        int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)n);
        size_t k = 0;

        for (int i = 0; i < len; i++) {
                if (i && (len - i) % 3 == 0)
                        grouped[k++] = ',';
                grouped[k++] = digits[i];
        }
        grouped[k] = '\0';
        snprintf(out, outlen, "%s", grouped);
}

void status_duration(double secs, char *out, size_t outlen)
{
        uint64_t s = secs > 0 ? (uint64_t)secs : 0;

        if (s < 60)
                snprintf(out, outlen, "%llus", (unsigned long long)s);
        else if (s < 3600)
                snprintf(out, outlen, "%llum%02llus", (unsigned long long)(s / 60),
                         (unsigned long long)(s % 60));
        else if (s < 86400)
                snprintf(out, outlen, "%lluh%02llum", (unsigned long long)(s / 3600),
                         (unsigned long long)(s % 3600 / 60));
        else
                snprintf(out, outlen, "%llud%02lluh", (unsigned long long)(s / 86400),
                         (unsigned long long)(s % 86400 / 3600));
}

static const char *failing_phrase(enum upstream_state s)
{
        switch (s) {
        case UPSTREAM_RETRYING: return "upstream unreachable";
        case UPSTREAM_THROTTLED: return "upstream throttling";
        case UPSTREAM_AUTH_ERROR: return "upstream refusing the API key";
        case UPSTREAM_TLS_ERROR: return "TLS to the upstream failing";
        case UPSTREAM_REDIRECTED: return "upstream redirecting";
        case UPSTREAM_SEND_ERROR: return "requests failing to start";
        case UPSTREAM_NO_KEY: return "no API key yet";
        default: return "upstream failing";
        }
}

/* What an operator must do, where waiting will not help. */
static const char *failing_hint(enum upstream_state s)
{
        switch (s) {
        case UPSTREAM_AUTH_ERROR: return ": fix the key";
        case UPSTREAM_TLS_ERROR: return ": check api_url and ca_file";
        case UPSTREAM_REDIRECTED: return ": check api_url";
        case UPSTREAM_NO_KEY: return ": give segopsd its key";
        default: return "";
        }
}

size_t status_text(const struct status_in *in, char *out, size_t outlen)
{
        char held[32], rate[16], dur[16], next[16], wait[48] = "";
        int n;

        status_count(in->held, held, sizeof(held));
        status_rate(in->in_10s, rate, sizeof(rate));
        if (in->stopping)
                n = snprintf(out, outlen, "stopping, %s event%s held", held,
                             in->held == 1 ? "" : "s");
        else if (in->state == UPSTREAM_DRY_RUN)
                n = snprintf(out, outlen, "dry run, %s ev/s", rate);
        else if (!upstream_state_failing(in->state)) {
                if (!in->held && in->in_10s < 0.05)
                        n = snprintf(out, outlen, "idle, nothing held");
                else
                        n = snprintf(out, outlen, "delivering, %s ev/s in, %s queued", rate, held);
        } else {
                status_duration(in->failing_s, dur, sizeof(dur));
                /* Rounded up: "paused 0s" would be a lie. */
                if (in->paused_s > 0) {
                        status_duration(in->paused_s + 0.999, next, sizeof(next));
                        snprintf(wait, sizeof(wait), ", paused %s by Retry-After", next);
                } else if (in->retry_in_s > 0) {
                        status_duration(in->retry_in_s + 0.999, next, sizeof(next));
                        snprintf(wait, sizeof(wait), ", next try in %s", next);
                }
                n = snprintf(out, outlen, "%s for %s (%s%s)%s, %s event%s held",
                             failing_phrase(in->state), dur, upstream_state_name(in->state), wait,
                             failing_hint(in->state), held, in->held == 1 ? "" : "s");
        }
        if (n < 0)
                n = 0;
        return (size_t)n < outlen ? (size_t)n : outlen ? outlen - 1 : 0;
}

void status_sample(const struct daemon *d, struct rates_sample *ret)
{
        const struct stats *s = &d->stats;
        uint64_t dropped = s->client_dropped, rejected = 0;

        for (int i = 0; i < DROP_REASON_COUNT; i++)
                dropped += s->dropped[i];
        for (int i = 0; i < PROTO_REASON_COUNT; i++)
                rejected += s->rejected[i];
        *ret = (struct rates_sample){
                .t_ms = uv_now(d->loop),
                .in = s->accepted,
                .out = s->sent,
                .dropped = dropped,
                .rejected = rejected,
        };
}

double status_oldest_age_s(const struct daemon *d)
{
        uint64_t seq = batcher_oldest_seq(&d->batcher), t, now = uv_now(d->loop);
        double age = 0;
        json_t *j;

        if (!seq)
                return 0;
        if (rates_arrived(&d->status.rates, seq, &t))
                return t < now ? (double)(now - t) / 1000.0 : 0;
        /* An earlier run's event, read back from the spool: its
         * segment's creation dates it (at the earliest). */
        j = d->spool ? spool_stats(d->spool) : NULL;
        if (j)
                age = json_number_value(json_object_get(j, "oldest_pending_age_s"));
        json_decref(j);
        if (age <= 0) /* no better word: it was here when we started */
                age = (double)(clock_wall_ms() - d->start_ms) / 1000.0;
        return age;
}

static void update(struct daemon *d, bool first)
{
        struct status *st = &d->status;
        const struct upstream_health *up = batcher_upstream(&d->batcher);
        uint64_t now = uv_now(d->loop);
        struct rates_sample s;
        struct rates_view v;
        struct status_in in = {
                .state = up->state,
                .stopping = d->stopping,
                .failing_s = upstream_state_failing(up->state) && up->failing
                                     ? (double)(now - up->failing_since_ms) / 1000.0
                                     : 0,
                .paused_s = (double)batcher_paused_for(&d->batcher) / 1000.0,
                .retry_in_s = (double)batcher_retry_in(&d->batcher) / 1000.0,
                .held = batcher_held(&d->batcher),
        };
        char text[STATUS_TEXT_MAX];
        bool changed = first || up->state != st->last_state || d->stopping != st->last_stopping;

        status_sample(d, &s);
        rates_view(&st->rates, &s, &v);
        in.in_10s = v.in_10s;
        status_text(&in, text, sizeof(text));
        if (!first && strcmp(text, st->last) == 0)
                return;
        if (!changed && now - st->last_sent_ms < (uint64_t)(d->cfg.status_interval * 1000.0)) {
                st->deferred++;
                return;
        }
        if (sd_notifyf(0, "STATUS=%s", text) > 0)
                st->sent++;
        memcpy(st->last, text, sizeof(text));
        st->last_state = up->state;
        st->last_stopping = d->stopping;
        st->last_sent_ms = now;
}

static void on_tick(uv_timer_t *t)
{
        struct daemon *d = t->data;
        struct rates_sample s;

        status_sample(d, &s);
        rates_tick(&d->status.rates, &s, batcher_next_seq(&d->batcher),
                   batcher_oldest_seq(&d->batcher));
        update(d, false);
}

void status_start(struct daemon *d)
{
        struct status *st = &d->status;
        struct rates_sample s;

        status_sample(d, &s);
        rates_init(&st->rates, &s, batcher_next_seq(&d->batcher));
        uv_timer_init(d->loop, &st->tick);
        st->tick.data = d;
        uv_unref((uv_handle_t *)&st->tick);
        uv_timer_start(&st->tick, on_tick, STATUS_TICK_MS, STATUS_TICK_MS);
        st->started = true;
        update(d, true);
}

void status_stop(struct daemon *d)
{
        struct status *st = &d->status;

        if (!st->started)
                return;
        st->started = false;
        uv_close((uv_handle_t *)&st->tick, NULL);
}
