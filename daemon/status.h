/* status.h - what segopsd tells systemd between READY and STOPPING: a
 * one-line STATUS= on each change of the upstream's state, and at most
 * every status_interval seconds otherwise when the text changed; and
 * the once-a-second tick that feeds the rates (rates.h) behind it and
 * behind stats.
 *
 * The wording is a pure function (status_text), tested on its own;
 * status_start() runs the tick on the loop. */
#ifndef SEGOPSD_STATUS_H
#define SEGOPSD_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rates.h"
#include "response.h"

#define STATUS_TICK_MS 1000
#define STATUS_TEXT_MAX 160

struct daemon;

/* What a STATUS= line says. */
struct status_in {
        enum upstream_state state;
        bool stopping;
        double failing_s;  /* since the first failure after the last success */
        double paused_s;   /* left of a Retry-After pause */
        double retry_in_s; /* until the next attempt */
        double in_10s;     /* events/s accepted, over the last 10 s */
        uint64_t held;     /* events held, memory and disk */
};

struct status {
        uv_timer_t tick;
        bool started;
        struct rates rates;
        char last[STATUS_TEXT_MAX]; /* the last text sent */
        enum upstream_state last_state;
        bool last_stopping;
        uint64_t last_sent_ms; /* loop ms */
        uint64_t sent;         /* STATUS= lines handed to sd_notify */
        uint64_t deferred;     /* ticks a changed text waited for status_interval */
};

/* The STATUS= text for in, e.g. "delivering, 1.2k ev/s in, 34 queued"
 * or "upstream unreachable for 2m13s (retrying), 45,012 events held".
 * Returns its length (cut to outlen - 1). */
size_t status_text(const struct status_in *in, char *out, size_t outlen);

/* Pieces of the text, for segopsd's other messages too: "1.2k", "45,012",
 * "2m13s". */
void status_rate(double per_s, char *out, size_t outlen);
void status_count(uint64_t n, char *out, size_t outlen);
void status_duration(double secs, char *out, size_t outlen);

/* Start the tick (after the batcher is initialised); it sends the first
 * STATUS= at once. The timer does not keep the loop alive. */
void status_start(struct daemon *d);
/* At the stop, before the batcher closes: no more samples or STATUS=. */
void status_stop(struct daemon *d);

/* The current sample of the counters (for stats' rates). */
void status_sample(const struct daemon *d, struct rates_sample *ret);

/* Age in seconds of the oldest event held (memory or spool), 0 if none. */
double status_oldest_age_s(const struct daemon *d);

#endif
