/* control.h - carrying out ops and writing their replies. */
#ifndef SEGOPSD_CONTROL_H
#define SEGOPSD_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

struct daemon;

/* The ops that need no answer, so the datagram socket takes them too:
 * set_user, reset_session, client_dropped. pid: the sender, from the
 * socket's credentials (stream), or 0 (datagram: then client_dropped's
 * self-declared pid is used). Returns false for other ops. */
bool ctl_quiet_op(struct daemon *d, const struct proto_msg *msg, pid_t pid);

/* Carry out a synchronous op (any but flush) and append its reply line
 * (with its newline). 0 or -ENOMEM. */
int ctl_reply_sync(struct daemon *d, const struct proto_msg *msg, pid_t pid, struct proto_buf *out);

/* {"ok":false,"error":REASON,"detail":...,"line":N}\n */
int ctl_reply_error(struct proto_buf *out, const struct proto_error *err, uint64_t line);

/* The reply to a finished flush (see batcher_flush_fn). */
int ctl_reply_flush(struct proto_buf *out, int result, uint64_t flushed, uint64_t dropped,
                    uint64_t pending);

#endif
