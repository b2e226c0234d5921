/* response.h - SPEC section 4's response tables as pure functions: what
 * an answer from the upstream means for a batch of events, and for a
 * session mint. The batcher and the session carry the verdicts out
 * (timers, logs, counters); nothing here has side effects, so every row
 * is tested on its own (tests/unit/test-response.c). */
#ifndef SEGOPSD_RESPONSE_H
#define SEGOPSD_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The upstream's health as the answers tell it (stats, backpressure,
 * logging once per change). */
enum upstream_state {
        UPSTREAM_IDLE,       /* nothing answered yet */
        UPSTREAM_OK,         /* the last batch was accepted */
        UPSTREAM_DRY_RUN,    /* api_url = stdout: nothing is sent */
        UPSTREAM_RETRYING,   /* 5xx, 408, timeout, no connection, unknown codes */
        UPSTREAM_THROTTLED,  /* 429 or 503 */
        UPSTREAM_AUTH_ERROR, /* 401 or 403: the key (or token) is refused */
        UPSTREAM_TLS_ERROR,  /* certificate or TLS failure: an operator must act */
        UPSTREAM_REDIRECTED, /* 3xx: api_url is wrong (redirects are not followed) */
        UPSTREAM_SEND_ERROR, /* a request could not even be started */
        UPSTREAM_NO_KEY,     /* no API key yet (an empty key file): nothing is sent */
};

/* The stable names used in stats ("ok", "retrying", ...). */
const char *upstream_state_name(enum upstream_state s);

/* What to do with a batch after an answer. */
enum resp_action {
        RESP_DELIVERED,      /* 2xx: done */
        RESP_RESEND_NOW,     /* pk_ 401 (first time), or sent with a key since replaced */
        RESP_BACKOFF,        /* keep it, try again after a backoff delay */
        RESP_PAUSE,          /* keep it; Retry-After pauses every request */
        RESP_SPLIT,          /* 413: two halves, new batch ids */
        RESP_DROP_REJECTED,  /* 400 or another permanent 4xx: never resent */
        RESP_DROP_TOO_LARGE, /* 413 for a single event */
};

struct resp_in {
        long status;        /* HTTP status; 0 when there was no answer */
        bool tls_error;     /* with status 0: the failure was TLS */
        double retry_after; /* seconds, < 0 when absent */
        uint32_t events;    /* in the batch */
        bool session;       /* pk_: the bearer was a session token */
        bool reminted;      /* pk_: already resent once after a 401 */
        bool key_replaced;  /* a reload replaced the key it was sent with */
        bool dry_run;       /* api_url = stdout */
};

struct resp_verdict {
        enum resp_action action;
        bool set_state; /* the upstream's state is now: */
        enum upstream_state state;
        bool forget_token; /* pk_: the session token was refused */
};

struct resp_verdict resp_judge(const struct resp_in *in);

/* What to do after a session mint's answer. */
enum mint_action {
        MINT_TAKE_TOKEN, /* 2xx: read the token from the body */
        MINT_FIX_CONFIG, /* 400/401/403: key, identity or signature; back off, say what to fix */
        MINT_BACKOFF,    /* transient: back off */
        MINT_PAUSE,      /* 429/503 with Retry-After: wait that long */
};

enum mint_action resp_judge_mint(long status, double retry_after);

/* ---- reading an answer: what the upstream sent, as parsed values ---- */

/* Retry-After seconds beyond this are all the same (the batcher caps
 * them at retry_after_max); the digits after it are not added up. */
#define RESP_RETRY_AFTER_MAX_S 1e9
/* Longest session token accepted. */
#define RESP_TOKEN_MAX 4096

/* Seconds a Retry-After header value asks for (RFC 9110 10.2.3:
 * delay-seconds, or an HTTP date counted from now; white space around
 * it is fine), or -1 when it is neither. A date in the past is 0. */
double resp_retry_after(const char *value, time_t now);

/* A session mint's answer body, {"token": "...", "expires_in": secs}:
 * 0 with *ret_token malloc'd (1 to RESP_TOKEN_MAX characters of visible
 * ASCII, nothing that could split a header) and *ret_expires_in in
 * (0, 1e7); -EINVAL when the body has no usable pair; -ENOMEM. */
int resp_parse_mint(const char *body, size_t len, char **ret_token, double *ret_expires_in);

/* An events answer's body, {"accepted": N, "duplicates": M} (both
 * optional): *accepted (-1 when absent, unreadable or negative) and
 * *duplicates (0 when absent, unreadable or negative); true when they add up to
 * fewer than the batch's events (a partial delivery, worth a log). */
bool resp_parse_counts(const char *body, size_t len, uint32_t events, int64_t *accepted,
                       int64_t *duplicates);

#endif
