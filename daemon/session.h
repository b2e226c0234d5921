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
 */
#ifndef SEGOPSD_SESSION_H
#define SEGOPSD_SESSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proto.h"

struct daemon;
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

struct session {
        struct daemon *d;
        enum session_state state;
        char *token;           /* never logged, never in stats */
        uint64_t generation;   /* bumped per token, to match 401s */
        uint64_t minted_at;    /* loop ms: when the mint was requested */
        uint64_t mint_sent_at; /* loop ms: the mint in flight's request */
        uint64_t expires_at;   /* loop ms */
        uint64_t not_before;   /* loop ms: no mint before (backoff) */
        unsigned attempts;     /* failed mints in a row */
        bool restart;          /* reset while a mint ran: mint again */
        uv_timer_t retry;
        struct usercmd *cmd;
        struct proto_buf body;               /* the mint request body, while in flight */
        char user_id[PROTO_USER_ID_MAX + 1]; /* identity of the last mint */
        /* stats */
        uint64_t mints, mint_failures, invalidated;
        long last_status;
        char last_error[256];
        const char *logged; /* problem last logged, to log once per change */
};

void session_init(struct session *s, struct daemon *d);
bool session_enabled(const struct session *s);

/* The token for an events request, or NULL when none is usable yet: a
 * mint is then started unless one runs or a backoff waits, and the
 * batcher is kicked when a token arrives. *generation identifies it. */
const char *session_token(struct session *s, uint64_t *generation);

/* The events endpoint answered 401 to the token of that generation:
 * forget it, so the next send mints a new one. */
void session_rejected(struct session *s, uint64_t generation);

/* reset_session: drop the token; the next send re-mints with the
 * current identity. */
void session_reset(struct session *s);
/* A reload replaced the key: as session_reset, and a backoff earned by
 * the old key is forgotten, so the new key is tried at once. */
void session_key_changed(struct session *s);

/* set_user: a new identity may unblock a session that had none. */
void session_identity_changed(struct session *s);

json_t *session_stats(const struct session *s);

void session_close(struct session *s);

#endif
