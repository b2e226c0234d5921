/* forward.h - HTTP POSTs to the upstream, on the libuv loop.
 *
 * libcurl's multi interface driven by libuv (socket and timer
 * callbacks), the skeleton of curl's docs/examples/multi-uv.c done with
 * its edges mended: a per-socket poll context attached with
 * curl_multi_assign, per-transfer state in CURLOPT_PRIVATE, every handle
 * closed on shutdown. With api_url = "stdout" (dry run) each body is
 * written as one line on stdout and answered as a 200.
 *
 * The forwarder knows HTTP, not batches: batcher.c decides what a
 * response means.
 */
#ifndef SEGOPSD_FORWARD_H
#define SEGOPSD_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <curl/curl.h>
#include <uv.h>

#include "config.h"

#define FWD_RESP_MAX 8192 /* response body bytes kept */

struct fwd_result {
        long status;        /* HTTP status, 0 when there was no response */
        int curl_code;      /* CURLE_OK when the exchange completed */
        bool tls_error;     /* certificate or TLS failure: operator must fix */
        double retry_after; /* seconds from Retry-After, < 0 when absent */
        const char *body;   /* response body, NUL-terminated, may be cut */
        size_t body_len;
        const char *error; /* curl's message when curl_code != CURLE_OK */
        bool aborted;      /* fwd_close() ended it: there is no answer */
        /* The credential the request carried (Authorization: Bearer),
         * NULL in a dry run: for scrubbing what the answer echoes of it
         * (scrub.h). Valid only during the callback. */
        const char *bearer;
};

typedef void (*fwd_done_fn)(void *ud, const struct fwd_result *res);

struct fwd_req;
struct fwd_sock;

struct fwd {
        uv_loop_t *loop;
        CURLM *multi;
        uv_timer_t timer;
        bool stdout_mode;
        const struct cfg *cfg;     /* api_url has no trailing '/' (config.c) */
        struct fwd_req *active;    /* in flight */
        struct fwd_req *idle;      /* reusable, easy handle kept */
        struct fwd_req *done_list; /* stdout mode: finished, to report */
        struct fwd_sock *socks;    /* poll contexts, for shutdown */
        unsigned in_flight;
        bool closing;
};

/* 0, or a negative errno (curl could not be initialised). */
int fwd_init(struct fwd *f, uv_loop_t *loop, const struct cfg *cfg);

struct fwd_post {
        const char *path;            /* e.g. "/api/events/batch/" */
        const char *bearer;          /* Authorization: Bearer ... */
        const char *idempotency_key; /* NULL: no header */
        bool gzip;                   /* body is gzip: Content-Encoding */
        const char *body;            /* must stay valid until done */
        size_t body_len;
};

/* Start a POST; cb runs later on the loop, exactly once: with the
 * answer, or, when fwd_close() ends it first, with aborted set.
 * 0 or -ENOMEM / -EIO / -ESHUTDOWN. */
int fwd_start(struct fwd *f, const struct fwd_post *p, fwd_done_fn cb, void *ud);

/* Requests started and not yet called back. */
unsigned fwd_in_flight(const struct fwd *f);
/* api_url = stdout: bodies are printed, nothing is sent. */
bool fwd_dry_run(const struct fwd *f);

/* Abort everything in flight (callbacks run) and close every handle. */
void fwd_close(struct fwd *f);

#endif
