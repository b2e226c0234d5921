/* parse-internal.h - the two halves of proto_parse(), for proto/ and its
 * tests only (not installed, not part of any public interface).
 *
 * proto_parse() tries proto_parse_fast() first and falls back to
 * proto_parse_slow() when the fast path declines. Both take exactly the
 * arguments of proto_parse() (see proto.h). The tests run each half on
 * its own and require that whatever the fast path handles, it handles
 * byte for byte like the slow path.
 */
#ifndef SEGOPS_PROTO_PARSE_INTERNAL_H
#define SEGOPS_PROTO_PARSE_INTERNAL_H

#include "proto.h"

/* proto_parse_fast() returns this when it leaves the message to the
 * slow path; it has then touched none of out, msg and err. */
#define PROTO_FAST_UNHANDLED 1

/* The allocation-free path (proto/fast.c) for the common message: a
 * track or identify event with no escapes, integer-only numbers and a
 * string or absent occurred_at. Returns 0 (accepted, exactly as
 * proto_parse_slow() would have) or PROTO_FAST_UNHANDLED for anything
 * else, including every invalid message; it never rejects. */
int proto_parse_fast(const char *line, size_t len, size_t max_bytes, int64_t now_ms,
                     const uint8_t rnd[16], struct proto_buf *out, struct proto_msg *msg,
                     struct proto_error *err);

/* The complete jansson-based parser (proto/parse.c, with message.c and
 * normalise.c); same contract as proto_parse(). */
int proto_parse_slow(const char *line, size_t len, size_t max_bytes, int64_t now_ms,
                     const uint8_t rnd[16], struct proto_buf *out, struct proto_msg *msg,
                     struct proto_error *err);

/* Mark msg as an event; both halves end an accepted event this way. */
static inline void proto_msg_set_event(struct proto_msg *msg)
{
        msg->kind = PROTO_MSG_EVENT;
        msg->op = 0;
        msg->timeout_ms = 0;
        msg->count = 0;
        msg->client_pid = 0;
        msg->user_id[0] = '\0';
        msg->user_id_sig[0] = '\0';
        msg->has_sig = false;
}

#endif
