/* proto.h - the segops local wire format: limits, parsing, encoding.
 *
 * Everything here is pure computation: no I/O and no clock. The caller
 * supplies the time of receipt and the random bytes a new event id needs,
 * so the functions are deterministic and testable. The one piece of state
 * is the fast path's per-thread cache of the last time it formatted
 * (proto/fast.c): a memo that never changes a result, and per thread, so
 * callers on several threads need no lock.
 *
 * Two halves:
 *   - proto_core, libc only, usable by libshim too: proto_buf, JSON and
 *     printable escaping, UTF-8 validation, uuid formatting, batch
 *     encoding (proto/encode.c); time formatting and parsing
 *     (proto/time.c);
 *   - proto_parse(): the allocation-free fast path (proto/fast.c), and
 *     validation with jansson for the rest (proto/parse.c, message.c,
 *     normalise.c).
 *
 * All functions returning int return 0 (or a count) on success and a
 * negative errno on failure, unless documented otherwise.
 */
#ifndef SEGOPS_PROTO_H
#define SEGOPS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits (SPEC section 2 and 4) ---- */
#define PROTO_MAX_MESSAGE_BYTES 65536 /* default max_message_bytes */
#define PROTO_MAX_DEPTH 64            /* deepest allowed nesting */
#define PROTO_USER_ID_MAX 256         /* bytes */
#define PROTO_EVENT_TYPE_MAX 128      /* bytes */
#define PROTO_EVENT_ID_MAX 64         /* characters of [A-Za-z0-9._:-] */
#define PROTO_USER_ID_SIG_MAX 256     /* bytes */
#define PROTO_UUID_LEN 36             /* 8-4-4-4-12, no NUL */
#define PROTO_TIME_LEN 24             /* YYYY-MM-DDTHH:MM:SS.mmmZ, no NUL */
#define PROTO_BATCH_MAX_EVENTS 500    /* upstream limit per request */
#define PROTO_PACKED_MAX                                                                           \
        65536 /* a client packs at most this many
                                         bytes of lines in one datagram
                                         (plus one client_dropped line) */
#define PROTO_DATAGRAM_MIN                                                                         \
        131072                        /* smallest max_datagram_bytes: one
                                         packed datagram always fits */
#define PROTO_BATCH_MAX_BYTES 1048576 /* upstream limit, uncompressed */
#define PROTO_FLUSH_TIMEOUT_MS 30000  /* default timeout_ms of op flush */
#define PROTO_FLUSH_TIMEOUT_MAX_MS 3600000
#define PROTO_DROP_COUNT_MAX 9007199254740991LL /* 2^53 - 1 */

/* ---- a growable byte buffer ---- */
struct proto_buf {
        char *data;
        size_t len;
        size_t cap;
};

/* Make room for n more bytes. 0 or -ENOMEM. */
int proto_buf_reserve(struct proto_buf *b, size_t n);
int proto_buf_append(struct proto_buf *b, const void *p, size_t n);
int proto_buf_append_str(struct proto_buf *b, const char *s);
void proto_buf_reset(struct proto_buf *b);  /* len = 0, keeps memory */
void proto_buf_free(struct proto_buf *b);   /* frees, zeroes; NULL ok */
void proto_buf_shrink(struct proto_buf *b); /* cap = len, when realloc allows */

/* Append s (n bytes, assumed valid UTF-8) as a JSON string literal,
 * quotes included. Escapes '"', '\\' and control characters; DEL and
 * non-ASCII bytes are copied as they are. 0 or -ENOMEM. */
int proto_json_escape(struct proto_buf *b, const char *s, size_t n);
/* The room proto_json_escape_to() may need for n bytes: each one as
 * \u00XX, and the quotes. */
#define PROTO_JSON_ESCAPED_MAX(n) (6 * (size_t)(n) + 2)
/* The same literal as proto_json_escape(), written to out, which has
 * room for PROTO_JSON_ESCAPED_MAX(n) bytes; returns its length. For a
 * caller that sizes its own buffer (libshim encodes on the stack). */
size_t proto_json_escape_to(char *out, const char *s, size_t n);

/* ---- printable text for logs and error details ---- */
/* Copy the n bytes at s (any bytes: client text, an upstream's body) to
 * out, which has room for outsz bytes, so that they cannot break or forge
 * a line: control characters and DEL become \xHH; bytes from 0x80 up,
 * '"' and '\\' are copied as they are unless flags say otherwise:
 *   PROTO_PRINTABLE_QUOTED: '"' and '\\' as \" and \\ (text shown
 *     between double quotes, as in an error detail);
 *   PROTO_PRINTABLE_ASCII: printable ASCII only, so bytes from 0x80 up as
 *     \xHH too, and '\\' escaped (as \x5c unless QUOTED) so that every
 *     backslash in the copy starts an escape;
 *   PROTO_PRINTABLE_ELLIPSIS: a cut copy ends in "...".
 * An escape is written whole or not at all: the copy stops at the first
 * byte whose form does not fit with the NUL (and, with ELLIPSIS, with
 * "..." after it). Returns the length written; out is NUL-terminated
 * whenever outsz > 0 (with ELLIPSIS, outsz < 4 gives ""). */
#define PROTO_PRINTABLE_QUOTED 0x1u
#define PROTO_PRINTABLE_ASCII 0x2u
#define PROTO_PRINTABLE_ELLIPSIS 0x4u
size_t proto_printable(char *out, size_t outsz, const char *s, size_t n, unsigned flags);

/* ---- UTF-8 ---- */
/* The length (2-4) of the valid UTF-8 sequence that starts at p (p <
 * end, *p >= 0x80), or 0 when none does: overlong forms, surrogates,
 * code points above U+10FFFF, stray continuation bytes and truncated
 * sequences are all 0 (RFC 3629 section 4; the set jansson rejects).
 * Inline because the daemon's fast path (fast.c) calls it for every
 * non-ASCII character. */
static inline size_t proto_utf8_seq(const unsigned char *p, const unsigned char *end)
{
        unsigned char c = p[0], lo = 0x80, hi = 0xbf;
        size_t n;

        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4;
        else
                return 0;
        if ((size_t)(end - p) < n)
                return 0;
        if (c == 0xe0)
                lo = 0xa0; /* overlong below U+0800 */
        else if (c == 0xed)
                hi = 0x9f; /* surrogates U+D800..DFFF */
        else if (c == 0xf0)
                lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        if (p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}
/* True when the n bytes at s are valid UTF-8 (see proto_utf8_seq). */
bool proto_utf8_valid(const char *s, size_t n);

/* ---- time (proto/time.c) ---- */
/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z in Unix ms: the
 * range four year digits can express, and so the range of occurred_at. */
#define PROTO_TIME_MIN_MS INT64_C(-62167219200000)
#define PROTO_TIME_MAX_MS INT64_C(253402300799999)
/* Format Unix milliseconds as YYYY-MM-DDTHH:MM:SS.mmmZ plus a NUL.
 * Years outside 0000..9999 are clamped. */
void proto_time_format(int64_t ms, char out[PROTO_TIME_LEN + 1]);
/* Parse an RFC 3339 date-time ("2026-11-27T05:00:00Z",
 * "...T05:00:00.123456+02:00", 't'/'z'/' ' accepted as RFC 3339
 * allows) into Unix milliseconds, truncating extra fraction digits.
 * 0 or -EINVAL. */
int proto_time_parse(const char *s, size_t n, int64_t *ret_ms);

/* ---- ids ---- */
/* Format 16 random bytes as a version-4 UUID (lowercase) plus a NUL. */
void proto_uuid_format(const uint8_t rnd[16], char out[PROTO_UUID_LEN + 1]);
/* True when s is 1..64 characters of [A-Za-z0-9._:-]. */
bool proto_event_id_valid(const char *s, size_t n);

/* ---- parsing ---- */

/* Why a message was rejected. The names (proto_reason_name) are the
 * stable strings used in replies and in stats. */
enum proto_reason {
        PROTO_OK = 0,
        PROTO_E_BAD_JSON,       /* syntax error, trailing garbage, empty */
        PROTO_E_NOT_OBJECT,     /* valid JSON but not an object */
        PROTO_E_BAD_UTF8,       /* invalid UTF-8 */
        PROTO_E_NUL,            /* \u0000 or a raw NUL byte */
        PROTO_E_TOO_DEEP,       /* nesting deeper than PROTO_MAX_DEPTH */
        PROTO_E_BAD_NUMBER,     /* fits neither int64 nor a finite double */
        PROTO_E_DUPLICATE_KEY,  /* the same key twice in one object */
        PROTO_E_OVERSIZE,       /* longer than max_message_bytes */
        PROTO_E_MISSING_FIELD,  /* a required field is absent */
        PROTO_E_WRONG_TYPE,     /* a field has the wrong JSON type */
        PROTO_E_BAD_LENGTH,     /* a string field empty or too long */
        PROTO_E_UNKNOWN_FIELD,  /* a top-level field the message lacks */
        PROTO_E_BAD_TIMESTAMP,  /* occurred_at unparsable or out of range */
        PROTO_E_BAD_EVENT_ID,   /* event_id not 1-64 of [A-Za-z0-9._:-] */
        PROTO_E_BAD_TYPE,       /* "type" neither "track" nor "identify" */
        PROTO_E_UNKNOWN_OP,     /* "op" not one this protocol has */
        PROTO_E_BAD_VALUE,      /* e.g. timeout_ms out of range */
        PROTO_E_OP_NOT_ALLOWED, /* set by callers: op not on this socket */
        PROTO_E_NOMEM,          /* out of memory while parsing */
        PROTO_REASON_COUNT
};

const char *proto_reason_name(enum proto_reason r);

enum proto_kind {
        PROTO_MSG_EVENT = 1, /* track or identify, normalised */
        PROTO_MSG_OP,
};

enum proto_op {
        PROTO_OP_PING = 1,
        PROTO_OP_STATS,
        PROTO_OP_FLUSH,
        PROTO_OP_SET_USER,
        PROTO_OP_RESET_SESSION,
        PROTO_OP_CLIENT_DROPPED, /* a client reports events it had to drop */
        PROTO_OP_METRICS,        /* stats as Prometheus text */
};

struct proto_msg {
        enum proto_kind kind;
        enum proto_op op;                            /* PROTO_MSG_OP */
        int64_t timeout_ms;                          /* PROTO_OP_FLUSH */
        uint64_t count;                              /* PROTO_OP_CLIENT_DROPPED */
        int32_t client_pid;                          /* its optional self-declared "pid", or 0 */
        char user_id[PROTO_USER_ID_MAX + 1];         /* PROTO_OP_SET_USER */
        char user_id_sig[PROTO_USER_ID_SIG_MAX + 1]; /* "" when absent */
        bool has_sig;
};

struct proto_error {
        enum proto_reason reason;
        char detail[192]; /* human text, e.g. "unknown field \"properties\"";
                             names of user fields are cut, never raw bytes */
};

/* The bytes of a line that count against max_message_bytes: all but a
 * final \r (a CRLF line end is not part of the message). */
static inline size_t proto_message_len(const char *line, size_t len)
{
        return len > 0 && line[len - 1] == '\r' ? len - 1 : len;
}

/* Parse one message (one line, without its newline; surrounding
 * whitespace and a trailing '\r' are fine) of at most max_bytes bytes.
 *
 * now_ms is the receipt time (the default occurred_at); rnd is 16
 * random bytes for the event id when the message has none.
 *
 * For an event, the normalised upstream event is appended to out as one
 * compact JSON object with exactly the keys event_id, user_id,
 * event_type, occurred_at, payload (in that order); identify becomes
 * event_type "context_identified" with payload {"traits": ...}.
 * For an op, out is untouched and msg says which op.
 *
 * Returns 0, or -EINVAL with err filled (err->reason says why), or
 * -ENOMEM. On failure out->len is as it was on entry. */
int proto_parse(const char *line, size_t len, size_t max_bytes, int64_t now_ms,
                const uint8_t rnd[16], struct proto_buf *out, struct proto_msg *msg,
                struct proto_error *err);

/* ---- batch encoding (SPEC section 4) ---- */
/* {"batch_id":"<uuid>","sent_at":"<time>","events":[ */
int proto_batch_begin(struct proto_buf *b, const char *batch_id, int64_t sent_at_ms);
/* Rewrite the sent_at of a batch that proto_batch_begin started at the
 * front of body (its length does not change). 0, or -EINVAL when body
 * does not start with such an envelope. */
int proto_batch_set_sent_at(char *body, size_t len, int64_t sent_at_ms);
/* Append one encoded event (as produced by proto_parse); first says
 * whether it is the first of the batch (no comma before it). */
int proto_batch_add(struct proto_buf *b, const char *event, size_t n, bool first);
/* ]} */
int proto_batch_end(struct proto_buf *b);
/* Bytes the envelope adds around the events: begin + end, and 1 per
 * comma; lets callers size a batch before encoding it. */
#define PROTO_BATCH_OVERHEAD                                                                       \
        (sizeof("{\"batch_id\":\"\",\"sent_at\":\"\",\"events\":[]}") - 1 + PROTO_UUID_LEN +       \
         PROTO_TIME_LEN)

#endif
