/* usercmd.h - runs user_context_command to learn the identity for a pk_
 * session mint (the SDK's get_user), without ever blocking the loop. */
#ifndef SEGOPSD_USERCMD_H
#define SEGOPSD_USERCMD_H

#include <stddef.h>
#include <uv.h>

#include "proto.h"

struct usercmd_result {
        int error;       /* 0, or a negative errno */
        const char *why; /* when error: what went wrong, for the log */
        char user_id[PROTO_USER_ID_MAX + 1];
        char user_id_sig[PROTO_USER_ID_SIG_MAX + 1]; /* "" when absent */
};

typedef void (*usercmd_done_fn)(void *ud, const struct usercmd_result *res);

struct usercmd;

/* Split command into words (whitespace; '…' and "…" quote, \ escapes
 * inside "…" and outside quotes) and run it with no shell, stdin from
 * /dev/null, a scrubbed environment (PATH and LANG only), stdout read up
 * to max_output bytes, killed after timeout_s. cb runs once, later, on
 * the loop. Returns 0 with *ret set, or a negative errno (bad command
 * line, spawn failure) with why filled and cb not called. */
int usercmd_run(uv_loop_t *loop, const char *command, double timeout_s, size_t max_output,
                usercmd_done_fn cb, void *ud, struct usercmd **ret, char *why, size_t whylen);

/* Kill it and forget it: cb will not run. */
void usercmd_cancel(struct usercmd *u);

/* Exposed for tests: split a command line; returns argc or -EINVAL.
 * argv[] points into buf (a copy of command, modified). */
int usercmd_split(const char *command, char *buf, size_t buflen, char **argv, int max_args);
/* Exposed for tests: read the identity the command printed (len bytes
 * at buf). 0 with res's user_id and user_id_sig filled, or -EINVAL
 * with res->why set. */
int usercmd_parse_identity(const char *buf, size_t len, struct usercmd_result *res);

#endif
