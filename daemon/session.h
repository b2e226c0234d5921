/* session.h - the pk_ session handshake (SPEC section 4), owned by the
 * daemon so no application ever holds a key.
 *
 * With a pk_ key, events requests carry a short-lived token minted at
 * /api/auth/session/ for an identity (the latest set_user op, else
 * user_context_command). Minting is lazy (first use), single (one mint
 * in flight; every batch waits for it), cached, and renewed when less
 * than min(60 s, half the token's lifetime) remains, so a token is never
 * sent expired. With an sk_ key the session is disabled and the key is
 * the bearer.
 *
 * reset_session and set_user come from any process that may write the
 * sockets, so they coalesce: a reset leaves the token in use while the
 * identity is the same (the re-mint runs beside it), a mint in flight
 * for the current identity answers every reset that comes during it,
 * and the mint (or identity command run) a reset or set_user causes
 * starts no sooner than session_reset_min_interval after the last one
 * started. A storm costs about one mint per interval; delivery stops
 * only for a set_user identity that differs from the token's, until
 * its mint answers.
 */
#ifndef SEGOPSD_SESSION_H
#define SEGOPSD_SESSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "apikey.h"
#include "config.h"
#include "forward.h"
#include "proto.h"

struct usercmd;

enum session_state {
        SESSION_DISABLED,    /* sk_ key or dry run */
        SESSION_IDLE,        /* no token, nothing running */
        SESSION_IDENTIFYING, /* user_context_command running */
        SESSION_MINTING,     /* mint request in flight */
        SESSION_READY,       /* a token is cached */
        SESSION_WAITING,     /* a mint failed: backing off */
        SESSION_NO_IDENTITY, /* neither set_user nor user_context_command */
};

/* How the session reaches the world: post() starts an HTTP POST (the
 * forwarder's fwd_start, or a test's fake), and ready() tells the owner
 * that a token may now be at hand (or a mint may start): ask again.
 * held() (optional) counts the events that wait, for the lines that log
 * a failed mint. */
struct session_io {
        int (*post)(void *ctx, const struct fwd_post *p, fwd_done_fn cb, void *ud);
        void *ctx;
        void (*ready)(void *ud);
        void *ud;
        uint64_t (*held)(void *ud);
};

struct session {
        uv_loop_t *loop;
        const struct cfg *cfg; /* replaced in place by a reload */
        const struct apikey *key;
        struct session_io io;
        enum session_state state;
        char *token;           /* never logged, never in stats */
        uint64_t generation;   /* bumped per token, to match 401s */
        uint64_t minted_at;    /* loop ms: when the mint was requested */
        uint64_t mint_sent_at; /* loop ms: the mint in flight's request */
        uint64_t expires_at;   /* loop ms */
        uint64_t not_before;   /* loop ms: no mint before (backoff, reset limit) */
        uint64_t last_start;   /* loop ms: the last mint (or command) started */
        unsigned attempts;     /* failed mints in a row */
        bool restart;          /* the identity or key changed while a mint
                                  ran: its answer is not used */
        bool remint;           /* a reset asked for a new token; the one
                                  at hand stays in use until it comes */
        bool reset_in_mint;    /* a reset came while this mint ran: it
                                  answers for the identity of then */
        uv_timer_t retry;
        struct usercmd *cmd;
        struct proto_buf body; /* the mint request body, while in flight */
        /* The identity set_user gave (the SDK's get_user); "" when none. */
        char set_user_id[PROTO_USER_ID_MAX + 1];
        char set_user_sig[PROTO_USER_ID_SIG_MAX + 1];
        char user_id[PROTO_USER_ID_MAX + 1]; /* identity of the last mint */
        /* stats */
        uint64_t mints, mint_failures, invalidated;
        uint64_t resets, resets_coalesced, commands;
        long last_status;
        char last_error[256];
        const char *logged; /* problem last logged, to log once per change */
};

/* enabled: a pk_ key and a real upstream; otherwise the session is
 * disabled and session_token() gives the key itself. */
void session_init(struct session *s, uv_loop_t *loop, const struct cfg *cfg,
                  const struct apikey *key, bool enabled, const struct session_io *io);
bool session_enabled(const struct session *s);
/* The token held now, or NULL: for scrubbing text from the upstream
 * (scrub.h), never to send (session_token() decides that). */
const char *session_secret(const struct session *s);

/* The bearer for an events request, or NULL when none is usable yet: a
 * mint is then started unless one runs or a backoff waits, and io.ready
 * runs when a token arrives. *generation identifies it. With the
 * session disabled: the key ("" in dry-run mode), or NULL while there
 * is no key yet (apikey.missing). */
const char *session_token(struct session *s, uint64_t *generation);

/* The events endpoint answered 401 to the token of that generation:
 * forget it, so the next send mints a new one. */
void session_rejected(struct session *s, uint64_t generation);

/* reset_session: the next send re-mints with the current identity.
 * Counted; coalesced as above. When set_user gave an identity other
 * than the token's, the token is dropped at once; otherwise (the same
 * identity, or user_context_command's, known once it has run) it stays
 * in use until the new one arrives. */
void session_reset(struct session *s);
/* The deployment changed (a reload's new api_url): drop the token, do
 * not use the answer of a mint in flight, mint afresh at the next send
 * without waiting for session_reset_min_interval. */
void session_forget(struct session *s);
/* A reload replaced the key: as session_forget, and a backoff earned by
 * the old key is forgotten, so the new key is tried at once. */
void session_key_changed(struct session *s);

/* set_user: the identity for the next mint (sig may be ""). A new
 * identity may unblock a session that had none, or was refused (no
 * sooner than session_reset_min_interval after the last mint started).
 * After a reset, a new identity drops the token kept in use for the old
 * one (or the answer of the mint in flight for it), as session_reset()
 * does when set_user came first. */
void session_set_user(struct session *s, const char *user_id, const char *sig);

json_t *session_stats(const struct session *s);

/* Cancel what runs and free the token. An answer to a mint that the
 * forwarder aborts after this is ignored. */
void session_close(struct session *s);

#endif
