/* slow-internal.h - what the files of the jansson path share: parse.c
 * (a line to a jansson tree), message.c (the rules of each message kind)
 * and normalise.c (the upstream event written from the tree). For proto/
 * only; the rest of the tree sees proto_parse() and, for its tests,
 * parse-internal.h.
 */
#ifndef SEGOPS_PROTO_SLOW_INTERNAL_H
#define SEGOPS_PROTO_SLOW_INTERNAL_H

#include <jansson.h>

#include "parse-internal.h"

/* How a detail shows client-chosen text (a key, a type, jansson's quote of
 * the input): printable ASCII between quotes, cut with "..." to fit. */
#define PROTO__SHOWN (PROTO_PRINTABLE_QUOTED | PROTO_PRINTABLE_ASCII | PROTO_PRINTABLE_ELLIPSIS)

/* Fill err (when not NULL) with reason and a printf-style detail.
 * Returns -ENOMEM for PROTO_E_NOMEM, else -EINVAL. (parse.c) */
int proto__fail(struct proto_error *err, enum proto_reason reason, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* ---- message.c: the two message kinds, on the parsed object root ---- */
/* An op (root has "op", its value opv): msg filled, or err. 0 or -EINVAL. */
int proto__parse_op(json_t *root, json_t *opv, struct proto_msg *msg, struct proto_error *err);
/* A track or identify event (typev: root's "type", or NULL): the
 * normalised event appended to out and msg marked, or err. 0, -EINVAL or
 * -ENOMEM; out->len may have grown on failure (the caller restores it). */
int proto__parse_event(json_t *root, json_t *typev, int64_t now_ms, const uint8_t rnd[16],
                       struct proto_buf *out, struct proto_msg *msg, struct proto_error *err);

/* ---- normalise.c: the upstream event ---- */
/* An event that passed every rule: what goes upstream. */
struct proto__event {
        json_t *event_id;   /* a string, or NULL: a new UUID from rnd */
        json_t *user_id;    /* a string */
        json_t *event_type; /* a string; NULL for identify */
        json_t *object;     /* payload (track) or traits (identify), or NULL: {} */
        bool identify;
        int64_t at; /* occurred_at, Unix ms */
};
/* Append ev as one compact JSON object with exactly the keys event_id,
 * user_id, event_type, occurred_at, payload. 0 or -ENOMEM; the caller
 * restores out->len if this runs out of memory half way. */
int proto__emit_event(struct proto_buf *out, const struct proto__event *ev, const uint8_t rnd[16]);

#endif
