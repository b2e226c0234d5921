/* control.h - carrying out ops and writing their replies. */
#ifndef SEGOPSD_CONTROL_H
#define SEGOPSD_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "flush.h"
#include "proto.h"

struct daemon;

/* The ops that need no answer, so the datagram socket takes them too:
 * set_user, reset_session, client_dropped. peer: the sender, from the
 * socket's credentials, or NULL when the kernel gave none (then
 * client_dropped's self-declared pid is used, labelled "declared").
 * client_dropped adds at most max_client_dropped_report per report.
 * Returns false for other ops. */
struct client_id;
bool control_quiet_op(struct daemon *d, const struct proto_msg *msg, const struct client_id *peer);

/* Carry out a synchronous op (any but flush) and append its reply line
 * (with its newline). pid, uid: the peer's (SO_PEERCRED); uid
 * (uid_t)-1 when unknown. 0 or -ENOMEM. */
int control_reply_sync(struct daemon *d, const struct proto_msg *msg, pid_t pid, uid_t uid,
                       struct proto_buf *out);

/* {"ok":false,"error":REASON,"detail":...,"line":N}\n */
int control_reply_error(struct proto_buf *out, const struct proto_error *err, uint64_t line);

/* The reply line to a finished flush. */
int control_reply_flush(struct proto_buf *out, const struct flush_result *res);

#endif
