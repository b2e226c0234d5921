/* control.h - carrying out ops and writing their replies. */
#ifndef SEGOPSD_CONTROL_H
#define SEGOPSD_CONTROL_H

#include <stdint.h>

#include "proto.h"

struct daemon;

/* set_user / reset_session (either socket). */
void ctl_session_op(struct daemon *d, const struct proto_msg *msg);

/* Append the reply line (with its newline) of a synchronous op: ping,
 * stats, set_user, reset_session. 0 or -ENOMEM. */
int ctl_reply_sync(struct daemon *d, const struct proto_msg *msg, struct proto_buf *out);

/* {"ok":false,"error":REASON,"detail":...,"line":N}\n */
int ctl_reply_error(struct proto_buf *out, const struct proto_error *err, uint64_t line);

/* The reply to a finished flush (see batcher_flush_fn). */
int ctl_reply_flush(struct proto_buf *out, int result, uint64_t flushed, uint64_t dropped,
                    uint64_t pending);

#endif
